#include "memory.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

void mem_layout(struct guest_memory *mem, uint64_t size)
{
	uint64_t low = size < MEM_LOWMEM_LIMIT ? size : MEM_LOWMEM_LIMIT;

	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	mem->size = size;
	mem->regions[0] = (struct mem_region){ .gpa = 0, .size = low, .fd_offset = 0 };
	mem->nregions = 1;
	if (size > low) {
		mem->regions[1] = (struct mem_region){ .gpa = MEM_4G, .size = size - low, .fd_offset = low };
		mem->nregions = 2;
	}
}

int mem_alloc(struct guest_memory *mem, const char *name)
{
	mem->fd = memfd_create(name, MFD_CLOEXEC);
	if (mem->fd < 0) {
		log_error("cannot create guest memory: %s", strerror(errno));
		return -1;
	}
	if (ftruncate(mem->fd, (off_t)mem->size) < 0) {
		log_error("cannot size guest memory to %llu bytes: %s", (unsigned long long)mem->size,
			  strerror(errno));
		return -1;
	}
	/* MAP_NORESERVE: RAM the guest never touches costs the host nothing. */
	mem->base = mmap(NULL, mem->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mem->fd, 0);
	if (mem->base == MAP_FAILED) {
		mem->base = NULL;
		log_error("cannot map guest memory: %s", strerror(errno));
		return -1;
	}
	madvise(mem->base, mem->size, MADV_MERGEABLE);
	for (unsigned i = 0; i < mem->nregions; i++)
		mem->regions[i].hva = mem->base + mem->regions[i].fd_offset;
	return 0;
}

void mem_free(struct guest_memory *mem)
{
	if (mem->base)
		munmap(mem->base, mem->size);
	if (mem->fd >= 0)
		close(mem->fd);
	mem->base = NULL;
	mem->fd = -1;
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
