/*
 * The platform layouts (core/platform.h): which one a VM gets, and the
 * 64-bit PCI window the DSDT announces against the window OVMF computes
 * from the same CPUID (edk2-stable202211, PlatformInitLib/MemDetect.c).
 */
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "boot/layout.h"
#include "core/config.h"
#include "core/memory.h"
#include "core/platform.h"

#define GiB (1ULL << 30)
#define TiB (1ULL << 40)

static const struct platform *q35(void)
{
	const struct platform *p = platform_find("q35");

	assert_non_null(p);
	return p;
}

static struct platform_cpu cpu(const char *vendor, unsigned bits, bool gb_pages)
{
	struct platform_cpu c = { .has_leaf_80000001 = true, .has_leaf_80000008 = true, .phys_bits = bits,
				  .gb_pages = gb_pages };

	strcpy(c.vendor, vendor);
	return c;
}

/* The examples of the design note (RAM ending at 4 GiB + 1 GiB: classic window [32 GiB, 64 GiB)). */
static void test_dynamic_window(void **state)
{
	uint64_t ram_end = MEM_4G + GiB, classic_end = 64 * GiB;
	struct platform_cpu c;

	(void)state;
	assert_int_equal(PCI_MMIO64_BASE(ram_end), 32 * GiB);
	c = cpu("GenuineIntel", 39, true);
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), 512 * GiB); /* [448 GiB, 512 GiB) */
	c = cpu("GenuineIntel", 46, true);
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), 64 * TiB); /* [56 TiB, 64 TiB) */
	c = cpu("AuthenticAMD", 48, true);
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), 128 * TiB); /* capped at 47 bits */
	c = cpu("AuthenticAMD", 40, true);
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), 1 * TiB);
	/* No 1 GiB pages: at most 40 bits. */
	c = cpu("GenuineIntel", 46, false);
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), 1 * TiB);
	/* Widths the firmware does not trust keep the classic window. */
	c = cpu("GenuineIntel", 40, true);
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), classic_end);
	c = cpu("AuthenticAMD", 39, true);
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), classic_end);
	c = cpu("", 39, true); /* Intel CPUs leave leaf 0x80000000's vendor empty */
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), classic_end);
	/* 36 bits: an 8 GiB dynamic window is smaller than the classic one. */
	c = cpu("GenuineIntel", 36, true);
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), classic_end);
	/* No leaf 0x80000008: 36 bits assumed. */
	c = cpu("GenuineIntel", 0, true);
	c.has_leaf_80000008 = false;
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), classic_end);
}

/* The dynamic window must lie above the classic base; with RAM up there, the classic window stays. */
static void test_large_ram(void **state)
{
	struct platform_cpu c = cpu("AuthenticAMD", 40, true);
	uint64_t ram_end = 900 * GiB;

	(void)state;
	assert_int_equal(platform_mmio64_end(q35(), ram_end, &c), PCI_MMIO64_BASE(ram_end) + PCI_MMIO64_SIZE);
	/* RAM below 4 GiB only: the window starts at 32 GiB like OVMF's classic one. */
	c = cpu("GenuineIntel", 36, true);
	assert_int_equal(platform_mmio64_end(q35(), 3 * GiB, &c), 64 * GiB);
}

/* The legacy layout's DSDT never changed: the classic window whatever the CPU. */
static void test_legacy_window(void **state)
{
	struct platform_cpu c = cpu("GenuineIntel", 46, true);
	const struct platform *p = platform_find("legacy");

	(void)state;
	assert_non_null(p);
	assert_int_equal(platform_mmio64_end(p, MEM_4G + GiB, &c), 64 * GiB);
}

static struct kvm_cpuid2 *table(unsigned n)
{
	struct kvm_cpuid2 *t = calloc(1, sizeof(*t) + n * sizeof(t->entries[0]));

	assert_non_null(t);
	t->nent = n;
	return t;
}

/* Vendor from leaf 0x80000000 in EBX, EDX, ECX order; leaves above its maximum do not exist. */
static void test_cpu_from_cpuid(void **state)
{
	struct kvm_cpuid2 *t = table(3);
	struct platform_cpu c;

	(void)state;
	t->entries[0] = (struct kvm_cpuid_entry2){ .function = 0x80000000, .eax = 0x80000008 };
	memcpy(&t->entries[0].ebx, "Auth", 4);
	memcpy(&t->entries[0].edx, "enti", 4);
	memcpy(&t->entries[0].ecx, "cAMD", 4);
	t->entries[1] = (struct kvm_cpuid_entry2){ .function = 0x80000001, .edx = 1u << 26 };
	t->entries[2] = (struct kvm_cpuid_entry2){ .function = 0x80000008, .eax = 0x3030 };
	platform_cpu_from_cpuid(t, &c);
	assert_string_equal(c.vendor, "AuthenticAMD");
	assert_true(c.has_leaf_80000001 && c.has_leaf_80000008 && c.gb_pages);
	assert_int_equal(c.phys_bits, 0x30);
	t->entries[0].eax = 0x80000001;
	platform_cpu_from_cpuid(t, &c);
	assert_false(c.has_leaf_80000008);
	assert_true(c.gb_pages);
	t->nent = 0;
	platform_cpu_from_cpuid(t, &c);
	assert_string_equal(c.vendor, "");
	assert_false(c.has_leaf_80000001 || c.gb_pages);
	free(t);
}

/* A new VM gets q35, a restored snapshot without the key legacy; the choice is recorded for snapshots. */
static void test_select(void **state)
{
	struct config *cfg = config_new();

	(void)state;
	assert_ptr_equal(platform_select(cfg), q35());
	assert_string_equal(config_get(cfg, PLATFORM_LAYOUT_KEY), "q35");
	config_free(cfg);

	cfg = config_new();
	assert_int_equal(config_set(cfg, "snapshot.restore", "/tmp/x.snap"), 0);
	assert_ptr_equal(platform_select(cfg), platform_find("legacy"));
	assert_string_equal(config_get(cfg, PLATFORM_LAYOUT_KEY), "legacy");
	config_free(cfg);

	/* A snapshot that recorded q35 restores with q35. */
	cfg = config_new();
	assert_int_equal(config_set(cfg, "snapshot.restore", "/tmp/x.snap"), 0);
	assert_int_equal(config_set(cfg, PLATFORM_LAYOUT_KEY, "q35"), 0);
	assert_ptr_equal(platform_select(cfg), q35());
	config_free(cfg);

	cfg = config_new();
	assert_int_equal(config_set(cfg, PLATFORM_LAYOUT_KEY, "i440fx"), 0);
	assert_null(platform_select(cfg));
	config_free(cfg);
	assert_null(platform_find("i440fx"));
}

/* The q35 map: RAM, ECAM, the 32-bit window, then what hyve maps below 4 GiB, without overlap. */
static void test_q35_map(void **state)
{
	const struct platform *p = q35();

	(void)state;
	assert_int_equal(p->lowmem_limit, 0xB0000000ULL);
	assert_int_equal(p->ecam_base, 0xB0000000ULL);
	assert_int_equal(p->mmio32_base, p->ecam_base + PCI_ECAM_SIZE);
	assert_int_equal(p->mmio32_end, 0xFC000000ULL);
	assert_true(p->mmio32_end <= IOAPIC_BASE);
	assert_true(p->mmio32_end <= 0xFEFFC000ULL); /* KVM's identity map and TSS */
	assert_true(p->mmio32_end <= 0xFFC00000ULL); /* the 4 MiB firmware flash */
	assert_int_equal(p->hostbridge_vendor, 0x8086);
	assert_int_equal(p->hostbridge_device, 0x29C0);
	assert_int_equal(p->lpc_device, 0x2918);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dynamic_window),
		cmocka_unit_test(test_large_ram),
		cmocka_unit_test(test_legacy_window),
		cmocka_unit_test(test_cpu_from_cpuid),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_q35_map),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
