/*
 * Finds the MP tables the way an OS does (a 16-byte-step scan of the last
 * KiB below 640 KiB and of the BIOS segment) and checks them against the
 * MP specification 1.4 layouts, by raw offsets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "boot/acpi.h"
#include "boot/layout.h"
#include "boot/mptable.h"
#include "core/memory.h"
#include "core/platform.h"
#include "core/vm.h"

#define MiB (1ULL << 20)

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	for (size_t i = 0; i < len; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

static const uint8_t *scan(const struct guest_memory *mem, uint64_t start, uint64_t len)
{
	const uint8_t *p = mem_gpa_to_hva(mem, start, len);

	assert_non_null(p);
	for (uint64_t off = 0; off + 16 <= len; off += 16)
		if (!memcmp(p + off, "_MP_", 4) && sum(p + off, 16) == 0)
			return p + off;
	return NULL;
}

static const uint8_t *floating_pointer(const struct guest_memory *mem)
{
	const uint8_t *mpf = scan(mem, 639 * 1024, 1024);

	if (!mpf)
		mpf = scan(mem, 0xF0000, 0x10000);
	assert_non_null(mpf);
	assert_int_equal(mpf[8], 1); /* length in paragraphs */
	assert_int_equal(mpf[9], 4); /* spec 1.4 */
	assert_int_equal(mpf[11], 0); /* a configuration table, not a default configuration */
	return mpf;
}

struct counts {
	unsigned cpus, buses, ioapics, ioints, localints;
	int pin_of_irq[16];
};

static void check_entries(const uint8_t *t, unsigned ncpus, struct counts *c)
{
	const uint8_t *p = t + 44;
	const uint8_t *end = t + le(t + 4, 2);
	uint8_t ioapic_id = acpi_ioapic_id(ncpus);

	for (unsigned i = 0; i < le(t + 34, 2); i++) {
		size_t len = p[0] == 0 ? 20 : 8;
		assert_true(p[0] <= 4);
		assert_true(p + len <= end);
		switch (p[0]) {
		case 0:
			assert_int_equal(p[1], c->cpus); /* APIC IDs 0..n-1 in order */
			assert_int_equal(p[3] & 1, 1); /* enabled */
			assert_int_equal(!!(p[3] & 2), c->cpus == 0); /* only vCPU 0 is the BSP */
			c->cpus++;
			break;
		case 1:
			assert_memory_equal(p + 2, "ISA   ", 6);
			c->buses++;
			break;
		case 2:
			assert_int_equal(p[1], ioapic_id);
			assert_int_equal(p[3] & 1, 1);
			assert_int_equal(le(p + 4, 4), IOAPIC_BASE);
			c->ioapics++;
			break;
		case 3:
			assert_int_equal(p[1], 0); /* vectored */
			assert_true(p[5] < 16);
			assert_int_equal(p[6], ioapic_id);
			assert_true(p[7] < IOAPIC_PINS);
			c->pin_of_irq[p[5]] = p[7];
			if (p[5] == IRQ_ACPI_SCI)
				assert_int_equal(le(p + 2, 2), 0xD); /* level, active-high as in the MADT */
			c->ioints++;
			break;
		case 4:
			assert_int_equal(p[6], 0xFF);
			/* ExtINT on LINT0, NMI on LINT1 */
			assert_int_equal(p[7], p[1] == 3 ? 0 : 1);
			assert_true(p[1] == 3 || p[1] == 1);
			c->localints++;
			break;
		}
		p += len;
	}
	assert_ptr_equal(p, end);
}

static void check(unsigned ncpus)
{
	struct guest_memory mem;
	struct counts c = { 0 };

	mem_layout(&mem, 128 * MiB, platform_find("q35")->lowmem_limit);
	assert_int_equal(mem_alloc(&mem, "test-mptable"), 0);
	assert_int_equal(mptable_build(&mem, ncpus), 0);

	const uint8_t *mpf = floating_pointer(&mem);
	uint64_t gpa = le(mpf + 4, 4);
	const uint8_t *t = mem_gpa_to_hva(&mem, gpa, 44);
	assert_non_null(t);
	uint64_t len = le(t + 4, 2);
	/* The whole table lies in the area the e820 map reserves. */
	assert_true(gpa >= LAYOUT_MPTABLE && gpa + len <= LAYOUT_MPTABLE + LAYOUT_MPTABLE_MAX);
	assert_memory_equal(t, "PCMP", 4);
	assert_int_equal(t[6], 4);
	assert_int_equal(sum(t, len), 0);
	assert_int_equal(le(t + 36, 4), LAPIC_BASE);

	for (int i = 0; i < 16; i++)
		c.pin_of_irq[i] = -1;
	check_entries(t, ncpus, &c);
	assert_int_equal(c.cpus, ncpus);
	assert_int_equal(c.buses, 1);
	assert_int_equal(c.ioapics, 1);
	assert_int_equal(c.localints, 2);
	assert_int_equal(c.pin_of_irq[0], 2);
	for (int irq = 1; irq < 16; irq++)
		assert_int_equal(c.pin_of_irq[irq], irq == 2 ? -1 : irq);
	mem_free(&mem);
}

static void test_1(void **state)
{
	(void)state;
	check(1);
}

static void test_2(void **state)
{
	(void)state;
	check(2);
}

static void test_8(void **state)
{
	(void)state;
	check(8);
}

/* Every vCPU count the VM accepts must have its table. */
static void test_vm_max_vcpus(void **state)
{
	(void)state;
	check(VM_MAX_VCPUS);
}

static void test_failures(void **state)
{
	struct guest_memory mem;

	(void)state;
	mem_layout(&mem, 128 * MiB, platform_find("q35")->lowmem_limit);
	assert_int_equal(mem_alloc(&mem, "test-mptable"), 0);
	assert_int_equal(mptable_build(&mem, 0), -1);
	assert_int_equal(mptable_build(&mem, MPTABLE_MAX_CPUS + 1), -1);
	mem_free(&mem);

	mem_layout(&mem, 512 * 1024, platform_find("q35")->lowmem_limit);
	assert_int_equal(mem_alloc(&mem, "test-mptable"), 0);
	assert_int_equal(mptable_build(&mem, 1), -1);
	mem_free(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_1),
		cmocka_unit_test(test_2),
		cmocka_unit_test(test_8),
		cmocka_unit_test(test_vm_max_vcpus),
		cmocka_unit_test(test_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
