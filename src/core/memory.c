#include "memory.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

void mem_layout(struct guest_memory *mem, uint64_t size, uint64_t lowmem_limit)
{
	uint64_t low = size < lowmem_limit ? size : lowmem_limit;

	memset(mem, 0, sizeof(*mem));
	mem->size = size;
	mem->regions[0] = (struct mem_region){ .gpa = 0, .size = low, .offset = 0 };
	mem->nregions = 1;
	if (size > low) {
		mem->regions[1] = (struct mem_region){ .gpa = MEM_4G, .size = size - low, .offset = low };
		mem->nregions = 2;
	}
}

/*
 * Anonymous memory, 2 MiB aligned and advised for transparent huge pages:
 * Linux's default policy gives huge pages to anonymous memory on request but
 * never to memfd/shmem, and they save the guest most of its nested page
 * faults (booting the test kernel took 15-20% less time with them).
 * MAP_NORESERVE: RAM the guest never touches costs the host nothing.
 */
int mem_alloc(struct guest_memory *mem, const char *name)
{
	size_t len = mem->size + MEM_HUGE_PAGE;
	uint8_t *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *base;

	if (raw == MAP_FAILED) {
		log_error("cannot map %llu bytes of guest memory for %s: %s", (unsigned long long)mem->size, name,
			  strerror(errno));
		return -1;
	}
	base = (uint8_t *)(((uintptr_t)raw + MEM_HUGE_PAGE - 1) & ~(uintptr_t)(MEM_HUGE_PAGE - 1));
	if (base > raw)
		munmap(raw, (size_t)(base - raw));
	if (base + mem->size < raw + len)
		munmap(base + mem->size, (size_t)(raw + len - (base + mem->size)));
	mem->base = base;
	madvise(mem->base, mem->size, MADV_HUGEPAGE);
	madvise(mem->base, mem->size, MADV_MERGEABLE);
	for (unsigned i = 0; i < mem->nregions; i++)
		mem->regions[i].hva = mem->base + mem->regions[i].offset;
	return 0;
}

void mem_free(struct guest_memory *mem)
{
	if (mem->base)
		munmap(mem->base, mem->size);
	mem->base = NULL;
	free(mem->dirty);
	mem->dirty = NULL;
}

#define PAGE_SHIFT 12

bool mem_tracking(const struct guest_memory *mem)
{
	/*
	 * The write came first: the fence keeps it from passing the load below,
	 * so a writer that finds tracking off wrote before tracking began, and
	 * the snapshot's first pass, which starts after, copies it.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&mem->tracking, __ATOMIC_ACQUIRE);
}

void mem_mark_dirty(const struct guest_memory *mem, const void *hva, uint64_t len)
{
	const uint8_t *p = hva;
	uint64_t first, last;

	if (!mem_tracking(mem) || !len || !mem->base || p < mem->base ||
	    (uint64_t)(p - mem->base) >= mem->size)
		return;
	first = (uint64_t)(p - mem->base) >> PAGE_SHIFT;
	last = ((uint64_t)(p - mem->base) + (len < mem->size ? len : mem->size) - 1) >> PAGE_SHIFT;
	if (last >= mem->size >> PAGE_SHIFT)
		last = (mem->size >> PAGE_SHIFT) - 1;
	for (uint64_t page = first; page <= last; page++)
		__atomic_fetch_or(&mem->dirty[page / 64], 1ULL << (page % 64), __ATOMIC_RELAXED);
}

int mem_track_dirty(struct guest_memory *mem, bool on)
{
	if (on && !mem->dirty) {
		mem->dirty = calloc(mem_page_words(mem), sizeof(*mem->dirty));
		if (!mem->dirty)
			return -1;
	}
	/* Seq-cst, paired with mem_mark_dirty()'s fence: see there. */
	__atomic_store_n(&mem->tracking, on, __ATOMIC_SEQ_CST);
	return 0;
}

uint64_t mem_take_dirty(struct guest_memory *mem, uint64_t *bitmap)
{
	uint64_t n = 0;

	if (!mem->dirty)
		return 0;
	for (uint64_t i = 0; i < mem_page_words(mem); i++) {
		uint64_t bits = __atomic_exchange_n(&mem->dirty[i], 0, __ATOMIC_ACQ_REL);
		bitmap[i] |= bits;
		n += (uint64_t)__builtin_popcountll(bits);
	}
	return n;
}

void *mem_gpa_to_hva(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct mem_region *r = &mem->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return r->hva ? r->hva + (gpa - r->gpa) : NULL;
	}
	return NULL;
}

uint64_t mem_lowmem_size(const struct guest_memory *mem)
{
	return mem->regions[0].size;
}

uint64_t mem_highmem_size(const struct guest_memory *mem)
{
	return mem->nregions > 1 ? mem->regions[1].size : 0;
}
