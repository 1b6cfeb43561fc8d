#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "boot/e820.h"
#include "boot/layout.h"
#include "core/memory.h"
#include "core/platform.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* The two layouts, spelled out: a change of either is a change of what guests see. */
#define Q35_LOWMEM_END 0xB0000000ULL
#define Q35_ECAM 0xB0000000ULL
#define LEGACY_LOWMEM_END 0xC0000000ULL
#define LEGACY_ECAM 0xE0000000ULL

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

static void build(const char *layout, uint64_t size, struct guest_memory *mem, struct e820_map *map)
{
	const struct platform *p = platform_find(layout);

	assert_non_null(p);
	mem_layout(mem, size, p->lowmem_limit);
	e820_build(mem, p, map);
}

static void test_lowmem_only(void **state)
{
	struct guest_memory mem;
	struct e820_map map;

	(void)state;
	build("q35", 256 * MiB, &mem, &map);
	assert_int_equal(mem_alloc(&mem, "test-e820"), 0);
	assert_int_equal(map.count, 4);
	assert_entry(&map, 0, 0, LAYOUT_RAM_LOW_END, E820_RAM);
	assert_entry(&map, 1, LAYOUT_RAM_LOW_END, 1 * MiB, E820_RESERVED);
	assert_entry(&map, 2, 1 * MiB, 256 * MiB, E820_RAM);
	assert_entry(&map, 3, Q35_ECAM, Q35_ECAM + 256 * MiB, E820_RESERVED);
	assert_sorted(&map);
	mem_free(&mem);
}

/* On q35 RAM below 4 GiB ends exactly where ECAM begins. */
static void test_exactly_lowmem_limit(void **state)
{
	struct guest_memory mem;
	struct e820_map map;

	(void)state;
	build("q35", Q35_LOWMEM_END, &mem, &map);
	assert_int_equal(mem.nregions, 1);
	assert_int_equal(map.count, 4);
	assert_entry(&map, 2, 1 * MiB, Q35_LOWMEM_END, E820_RAM);
	assert_entry(&map, 3, Q35_ECAM, Q35_ECAM + 256 * MiB, E820_RESERVED);
	assert_sorted(&map);
}

static void test_highmem(void **state)
{
	struct guest_memory mem;
	struct e820_map map;

	(void)state;
	build("q35", 8 * GiB, &mem, &map);
	assert_int_equal(map.count, 5);
	assert_entry(&map, 0, 0, LAYOUT_RAM_LOW_END, E820_RAM);
	assert_entry(&map, 1, LAYOUT_RAM_LOW_END, 1 * MiB, E820_RESERVED);
	assert_entry(&map, 2, 1 * MiB, Q35_LOWMEM_END, E820_RAM);
	assert_entry(&map, 3, Q35_ECAM, Q35_ECAM + 256 * MiB, E820_RESERVED);
	assert_entry(&map, 4, MEM_4G, MEM_4G + 8 * GiB - Q35_LOWMEM_END, E820_RAM);
	assert_sorted(&map);
}

/* Snapshots taken before q35 restore into the layout they were taken with. */
static void test_legacy_layout(void **state)
{
	struct guest_memory mem;
	struct e820_map map;

	(void)state;
	build("legacy", 8 * GiB, &mem, &map);
	assert_int_equal(map.count, 5);
	assert_entry(&map, 2, 1 * MiB, LEGACY_LOWMEM_END, E820_RAM);
	assert_entry(&map, 3, LEGACY_ECAM, LEGACY_ECAM + 256 * MiB, E820_RESERVED);
	assert_entry(&map, 4, MEM_4G, MEM_4G + 8 * GiB - LEGACY_LOWMEM_END, E820_RAM);
	assert_sorted(&map);
}

/* RAM totals must match what the VM really has, minus only the firmware hole. */
static void test_ram_total(void **state)
{
	static const uint64_t sizes[] = { 2 * MiB, 128 * MiB, 3 * GiB + 1 * MiB, 16 * GiB };
	static const char *const layouts[] = { "q35", "legacy" };

	(void)state;
	for (size_t l = 0; l < 2; l++) {
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			struct guest_memory mem;
			struct e820_map map;
			uint64_t ram = 0;
			build(layouts[l], sizes[s], &mem, &map);
			for (unsigned i = 0; i < map.count; i++)
				if (map.entries[i].type == E820_RAM)
					ram += map.entries[i].size;
			assert_int_equal(ram, sizes[s] - (1 * MiB - LAYOUT_RAM_LOW_END));
			assert_sorted(&map);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lowmem_only),
		cmocka_unit_test(test_exactly_lowmem_limit),
		cmocka_unit_test(test_highmem),
		cmocka_unit_test(test_legacy_layout),
		cmocka_unit_test(test_ram_total),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
