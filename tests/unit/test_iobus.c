#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/iobus.h"

struct recorder {
	uint64_t offset;
	unsigned size, calls;
	bool is_write;
	uint8_t data[8];
};

static void record(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct recorder *r = opaque;

	r->offset = offset;
	r->size = size;
	r->is_write = is_write;
	r->calls++;
	if (is_write)
		memcpy(r->data, data, size);
	else
		memset(data, 0xab, size);
}

static void dispatches_by_range(void **state)
{
	struct iobus bus;
	struct recorder a = { 0 }, b = { 0 };
	uint8_t data[4] = { 1, 2, 3, 4 };
	(void)state;

	iobus_init(&bus);
	assert_int_equal(iobus_register(&bus, 0x3f8, 8, record, &a), 0);
	assert_int_equal(iobus_register(&bus, 0x70, 2, record, &b), 0);
	assert_true(iobus_access(&bus, 0x3fb, data, 1, true));
	assert_int_equal(a.offset, 3);
	assert_int_equal(a.data[0], 1);
	assert_true(iobus_access(&bus, 0x71, data, 1, false));
	assert_int_equal(b.offset, 1);
	assert_int_equal(data[0], 0xab);
	iobus_destroy(&bus);
}

static void unclaimed_reads_all_ones(void **state)
{
	struct iobus bus;
	struct recorder a = { 0 };
	uint8_t data[4] = { 0 };
	(void)state;

	iobus_init(&bus);
	iobus_register(&bus, 0x100, 4, record, &a);
	assert_false(iobus_access(&bus, 0x104, data, 4, false));
	assert_memory_equal(data, "\xff\xff\xff\xff", 4);
	/* Straddling the end of a range is not claimed either. */
	assert_false(iobus_access(&bus, 0x102, data, 4, true));
	assert_int_equal(a.calls, 0);
	iobus_destroy(&bus);
}

static void refuses_overlap_and_unregisters(void **state)
{
	struct iobus bus;
	struct recorder a = { 0 };
	uint8_t data[1];
	(void)state;

	iobus_init(&bus);
	assert_int_equal(iobus_register(&bus, 0x100, 0x10, record, &a), 0);
	assert_int_equal(iobus_register(&bus, 0x10f, 1, record, &a), -1);
	assert_int_equal(iobus_register(&bus, 0xf0, 0x11, record, &a), -1);
	assert_int_equal(iobus_register(&bus, 0xf0, 0x10, record, &a), 0);
	assert_int_equal(iobus_register(&bus, 0, 0, record, &a), -1);
	assert_int_equal(iobus_register(&bus, UINT64_MAX, 2, record, &a), -1);
	assert_int_equal(iobus_unregister(&bus, 0x100), 0);
	assert_int_equal(iobus_unregister(&bus, 0x100), -1);
	assert_false(iobus_access(&bus, 0x105, data, 1, false));
	assert_true(iobus_access(&bus, 0xf5, data, 1, false));
	iobus_destroy(&bus);
}

static void registers_all_claims_or_none(void **state)
{
	struct iobus bus;
	struct recorder a = { 0 }, taken = { 0 };
	uint8_t data[1];
	const struct iobus_claim claims[] = { { 0x60, 1, record }, { 0x64, 1, record }, { 0x70, 2, record } };
	(void)state;

	iobus_init(&bus);
	assert_int_equal(iobus_register_all(&bus, claims, 3, &a), 0);
	assert_true(iobus_access(&bus, 0x64, data, 1, false));
	assert_true(iobus_access(&bus, 0x71, data, 1, false));
	assert_int_equal(a.calls, 2);
	iobus_unregister_all(&bus, claims, 3);
	assert_false(iobus_access(&bus, 0x60, data, 1, false));

	/* The third range is taken: the first two are not left behind. */
	assert_int_equal(iobus_register(&bus, 0x71, 1, record, &taken), 0);
	assert_int_equal(iobus_register_all(&bus, claims, 3, &a), -1);
	assert_false(iobus_access(&bus, 0x60, data, 1, false));
	assert_false(iobus_access(&bus, 0x64, data, 1, false));
	assert_true(iobus_access(&bus, 0x71, data, 1, false));
	assert_int_equal(taken.calls, 1);
	iobus_destroy(&bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dispatches_by_range),
		cmocka_unit_test(unclaimed_reads_all_ones),
		cmocka_unit_test(refuses_overlap_and_unregisters),
		cmocka_unit_test(registers_all_claims_or_none),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
