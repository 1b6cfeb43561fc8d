#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "boot/e820.h"
#include "boot/layout.h"
#include "core/memory.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static void assert_entry(const struct e820_map *map, unsigned i, uint64_t addr, uint64_t end, uint32_t type)
{
	assert_true(i < map->count);
	assert_int_equal(map->entries[i].addr, addr);
	assert_int_equal(map->entries[i].size, end - addr);
	assert_int_equal(map->entries[i].type, type);
}

/* Entries must be sorted and must not overlap: the kernel sanitizes, but we should not rely on it. */
static void assert_sorted(const struct e820_map *map)
{
	for (unsigned i = 1; i < map->count; i++)
		assert_true(map->entries[i - 1].addr + map->entries[i - 1].size <= map->entries[i].addr);
	for (unsigned i = 0; i < map->count; i++)
		assert_true(map->entries[i].size > 0);
}

static void test_lowmem_only(void **state)
{
	struct guest_memory mem;
	struct e820_map map;

	(void)state;
	mem_layout(&mem, 256 * MiB);
	assert_int_equal(mem_alloc(&mem, "test-e820"), 0);
	e820_build(&mem, &map);
	assert_int_equal(map.count, 4);
	assert_entry(&map, 0, 0, LAYOUT_RAM_LOW_END, E820_RAM);
	assert_entry(&map, 1, LAYOUT_RAM_LOW_END, 1 * MiB, E820_RESERVED);
	assert_entry(&map, 2, 1 * MiB, 256 * MiB, E820_RAM);
	assert_entry(&map, 3, PCI_ECAM_BASE, PCI_ECAM_BASE + PCI_ECAM_SIZE, E820_RESERVED);
	assert_sorted(&map);
	mem_free(&mem);
}

static void test_exactly_lowmem_limit(void **state)
{
	struct guest_memory mem;
	struct e820_map map;

	(void)state;
	mem_layout(&mem, MEM_LOWMEM_LIMIT);
	e820_build(&mem, &map);
	assert_int_equal(map.count, 4);
	assert_entry(&map, 2, 1 * MiB, MEM_LOWMEM_LIMIT, E820_RAM);
	assert_entry(&map, 3, PCI_ECAM_BASE, PCI_ECAM_BASE + PCI_ECAM_SIZE, E820_RESERVED);
}

static void test_highmem(void **state)
{
	struct guest_memory mem;
	struct e820_map map;

	(void)state;
	mem_layout(&mem, 8 * GiB);
	e820_build(&mem, &map);
	assert_int_equal(map.count, 5);
	assert_entry(&map, 0, 0, LAYOUT_RAM_LOW_END, E820_RAM);
	assert_entry(&map, 1, LAYOUT_RAM_LOW_END, 1 * MiB, E820_RESERVED);
	assert_entry(&map, 2, 1 * MiB, MEM_LOWMEM_LIMIT, E820_RAM);
	assert_entry(&map, 3, PCI_ECAM_BASE, PCI_ECAM_BASE + PCI_ECAM_SIZE, E820_RESERVED);
	assert_entry(&map, 4, MEM_4G, MEM_4G + 8 * GiB - MEM_LOWMEM_LIMIT, E820_RAM);
	assert_sorted(&map);
}

/* RAM totals must match what the VM really has, minus only the firmware hole. */
static void test_ram_total(void **state)
{
	static const uint64_t sizes[] = { 2 * MiB, 128 * MiB, 3 * GiB + 1 * MiB, 16 * GiB };

	(void)state;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct guest_memory mem;
		struct e820_map map;
		uint64_t ram = 0;
		mem_layout(&mem, sizes[s]);
		e820_build(&mem, &map);
		for (unsigned i = 0; i < map.count; i++)
			if (map.entries[i].type == E820_RAM)
				ram += map.entries[i].size;
		assert_int_equal(ram, sizes[s] - (1 * MiB - LAYOUT_RAM_LOW_END));
		assert_sorted(&map);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lowmem_only),
		cmocka_unit_test(test_exactly_lowmem_limit),
		cmocka_unit_test(test_highmem),
		cmocka_unit_test(test_ram_total),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
