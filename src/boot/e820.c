#include "e820.h"

#include <string.h>

#include "core/platform.h"
#include "layout.h"

static void add(struct e820_map *map, uint64_t start, uint64_t end, uint32_t type)
{
	if (end <= start || map->count == E820_MAX)
		return;
	map->entries[map->count++] = (struct e820_entry){ .addr = start, .size = end - start, .type = type };
}

void e820_build(const struct guest_memory *mem, const struct platform *p, struct e820_map *map)
{
	uint64_t low = mem_lowmem_size(mem);
	uint64_t high = mem_highmem_size(mem);

	memset(map, 0, sizeof(*map));
	add(map, 0, low < LAYOUT_RAM_LOW_END ? low : LAYOUT_RAM_LOW_END, E820_RAM);
	/*
	 * The firmware area is reserved even where it is backed by RAM: the
	 * MP and ACPI tables live there and must survive the kernel's boot.
	 */
	add(map, LAYOUT_RAM_LOW_END, LAYOUT_BIOS_END, E820_RESERVED);
	add(map, LAYOUT_BIOS_END, low, E820_RAM);
	/* Linux uses ECAM from the start only when the e820 map reserves it. */
	add(map, p->ecam_base, p->ecam_base + PCI_ECAM_SIZE, E820_RESERVED);
	if (high)
		add(map, MEM_4G, MEM_4G + high, E820_RAM);
}
