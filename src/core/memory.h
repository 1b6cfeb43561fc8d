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
	/*
	 * Pages hyve itself wrote (device DMA) while a live snapshot tracks
	 * them (mem_mark_dirty()): a bit per 4 KiB page of `base`, allocated
	 * the first time tracking starts and kept until mem_free().
	 */
	bool tracking;
	uint64_t *dirty;
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
/*
 * Device writes to guest RAM: every path that writes guest memory from
 * host code (virtqueue buffers and rings, AHCI, xHCI, fw_cfg DMA, a
 * reset's reload) calls this after the write, with the host range it
 * wrote. KVM's dirty log sees only what vCPUs write in guest mode; a live
 * snapshot (snapshot_save_live(), src/snapshot/snapshot.c) takes these marks with it. Ranges outside
 * RAM are ignored; a no-op unless a live snapshot is tracking.
 */
void mem_mark_dirty(const struct guest_memory *mem, const void *hva, uint64_t len);
/* Whether a live snapshot tracks device writes (after a fence: call it after the write, as mem_mark_dirty()). */
bool mem_tracking(const struct guest_memory *mem);
/* Starts (allocating the bitmap once) or stops tracking; 0, or -1 when out of memory. */
int mem_track_dirty(struct guest_memory *mem, bool on);
/* Words (uint64_t) of a bitmap with a bit per 4 KiB page of RAM. */
static inline uint64_t mem_page_words(const struct guest_memory *mem)
{
	return ((mem->size >> 12) + 63) / 64;
}
/*
 * ORs the marked pages into bitmap (a bit per page of the RAM mapping) and
 * clears them; returns how many were marked.
 */
uint64_t mem_take_dirty(struct guest_memory *mem, uint64_t *bitmap);

/* RAM bytes below 4 GiB / above it. */
uint64_t mem_lowmem_size(const struct guest_memory *mem);
uint64_t mem_highmem_size(const struct guest_memory *mem);

#endif
