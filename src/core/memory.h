/*
 * Guest physical memory. RAM is one host mapping (anonymous, or a snapshot
 * file's RAM records after a restore) split into at most two KVM slots
 * around the PCI hole.
 */
#ifndef HYVE_MEMORY_H
#define HYVE_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Guest physical layout (x86-64 PC); where RAM below 4 GiB ends is the platform's (core/platform.h). */
#define MEM_4G 0x100000000ULL
#define MEM_MAX_REGIONS 2
#define MEM_HUGE_PAGE (2ULL << 20)

struct mem_region {
	uint64_t gpa;       /* guest physical start */
	uint64_t size;
	uint64_t offset;    /* offset of this region inside the one RAM mapping */
	uint8_t *hva;       /* host mapping */
};

struct guest_memory {
	uint64_t size;       /* total RAM bytes */
	uint8_t *base;       /* one host mapping of all guest RAM */
	bool file_backed;    /* RAM was mapped from a snapshot file, not anonymous memory */
	unsigned nregions;
	struct mem_region regions[MEM_MAX_REGIONS];
};

/*
 * Lays out `size` bytes around the PCI hole (no allocation): up to
 * lowmem_limit from 0, the rest from 4 GiB.
 */
void mem_layout(struct guest_memory *mem, uint64_t size, uint64_t lowmem_limit);
/* Maps anonymous memory for all of RAM; 0 or -1 after logging. */
int mem_alloc(struct guest_memory *mem, const char *name);
void mem_free(struct guest_memory *mem);

/*
 * Host pointer for [gpa, gpa+len) when the whole range lies inside one RAM
 * region, else NULL. Every guest-supplied address goes through here.
 */
void *mem_gpa_to_hva(const struct guest_memory *mem, uint64_t gpa, uint64_t len);
/* RAM bytes below 4 GiB / above it. */
uint64_t mem_lowmem_size(const struct guest_memory *mem);
uint64_t mem_highmem_size(const struct guest_memory *mem);

#endif
