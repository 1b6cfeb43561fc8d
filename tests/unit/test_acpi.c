/*
 * Checks the ACPI tables against the ACPI 6 layouts, reading raw bytes at
 * the specification's offsets rather than through acpi.c's structures.
 * The tables are built for a VM (the recording stand-in, tests/unit/testvm.c)
 * with real device models attached, whose DSDT entries come from the
 * models themselves; ACPICA's iasl decodes and compiles AML independently.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, asprintf; the build defines it too */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <linux/kvm.h>

#include "boot/acpi.h"
#include "boot/aml.h"
#include "boot/layout.h"
#include "core/config.h"
#include "core/device.h"
#include "core/memory.h"
#include "core/platform.h"
#include "core/vm.h"
#include "testvm.h"

#define MiB (1ULL << 20)

/* FADT field offsets (ACPI 6.0, table 5-33). */
#define FADT_FIRMWARE_CTRL 36
#define FADT_DSDT 40
#define FADT_SCI_INT 46
#define FADT_SMI_CMD 48
#define FADT_PM1A_EVT_BLK 56
#define FADT_PM1A_CNT_BLK 64
#define FADT_PM_TMR_BLK 76
#define FADT_PM1_EVT_LEN 88
#define FADT_PM1_CNT_LEN 89
#define FADT_PM_TMR_LEN 91
#define FADT_CENTURY 108
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS 112
#define FADT_RESET_REG 116
#define FADT_RESET_VALUE 128
#define FADT_X_FIRMWARE_CTRL 132
#define FADT_X_DSDT 140
#define FADT_X_PM1A_EVT_BLK 148
#define FADT_X_PM1A_CNT_BLK 172
#define FADT_X_PM_TMR_BLK 208

#define FLAG_PWR_BUTTON (1u << 4)
#define FLAG_SLP_BUTTON (1u << 5)
#define FLAG_TMR_VAL_EXT (1u << 8)
#define FLAG_RESET_REG_SUP (1u << 10)
#define FLAG_HW_REDUCED (1u << 20)

struct fixture {
	struct vm *vm;
	uint64_t rsdp;
};

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

static const uint8_t *at(const struct fixture *f, uint64_t gpa, uint64_t len)
{
	const uint8_t *p = mem_gpa_to_hva(&f->vm->mem, gpa, len);

	assert_non_null(p);
	/* Every table must lie in the firmware area the e820 map reserves. */
	assert_true(gpa >= LAYOUT_ACPI_TABLES && gpa + len <= LAYOUT_RSDP + 36);
	return p;
}

/* A checksummed table with header: signature, sane length, zero byte sum. */
static const uint8_t *table(const struct fixture *f, uint64_t gpa, const char *sig)
{
	const uint8_t *h = at(f, gpa, 36);
	uint32_t len = (uint32_t)le(h + 4, 4);

	assert_memory_equal(h, sig, 4);
	assert_true(len >= 36);
	assert_true(gpa + len <= LAYOUT_ACPI_TABLES + LAYOUT_ACPI_TABLES_MAX);
	const uint8_t *t = at(f, gpa, len);
	assert_int_equal(sum(t, len), 0);
	return t;
}

/*
 * What a VM is given besides the vCPUs: configuration settings (NULL-ended)
 * made before every model's attach() runs, and a CPUID table (NULL: none,
 * so the classic 64-bit PCI window).
 */
struct machine_spec {
	const char *layout;
	unsigned ncpus;
	const char *const *settings;
	struct kvm_cpuid2 *cpuid;
};

/* The serial ports a plain VM has here: com1 and com2, as the DSDT once listed unconditionally. */
static const char *const two_ports[] = { "lpc.com1.path=file=/dev/null", "lpc.com2.path=file=/dev/null", NULL };

/* A VM with its devices attached as hyve attaches them (devices_attach_all()), RAM allocated. */
static struct vm *machine_vm(const struct machine_spec *spec, uint64_t ram)
{
	struct vm *vm = testvm_new_platform(ram, spec->layout);

	vm->ncpus = spec->ncpus;
	vm->cpuid = spec->cpuid;
	for (const char *const *s = spec->settings; s && *s; s++)
		assert_int_equal(config_set_assignment(vm->cfg, *s), 0);
	assert_int_equal(devices_attach_all(vm), 0);
	assert_int_equal(mem_alloc(&vm->mem, "test-acpi"), 0);
	return vm;
}

static void free_machine_vm(struct vm *vm)
{
	mem_free(&vm->mem);
	vm->cpuid = NULL; /* the spec's */
	testvm_free(vm);
}

static struct fixture *setup_spec(const struct machine_spec *spec)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct acpi_machine m;

	assert_non_null(f);
	f->vm = machine_vm(spec, 256 * MiB);
	acpi_machine_of(f->vm, &m);
	assert_int_equal(acpi_build(&m, &f->rsdp), 0);
	assert_int_equal(f->rsdp, LAYOUT_RSDP);
	return f;
}

static struct fixture *setup_machine(const char *layout, unsigned ncpus)
{
	return setup_spec(&(struct machine_spec){ .layout = layout, .ncpus = ncpus, .settings = two_ports });
}

static struct fixture *setup_with(unsigned ncpus)
{
	return setup_machine("q35", ncpus);
}

static void teardown_fixture(struct fixture *f)
{
	free_machine_vm(f->vm);
	free(f);
}

static const uint8_t *rsdp(const struct fixture *f)
{
	const uint8_t *r = at(f, f->rsdp, 36);

	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum(r, 20), 0);
	assert_int_equal(r[15], 2);
	assert_int_equal(le(r + 20, 4), 36);
	assert_int_equal(sum(r, 36), 0);
	assert_int_equal(f->rsdp % 16, 0);
	return r;
}

/* The table with signature sig, found through the XSDT as an OS would. */
static const uint8_t *find(const struct fixture *f, const char *sig)
{
	const uint8_t *x = table(f, le(rsdp(f) + 24, 8), "XSDT");
	uint32_t n = ((uint32_t)le(x + 4, 4) - 36) / 8;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t gpa = le(x + 36 + 8 * i, 8);
		const uint8_t *h = at(f, gpa, 36);
		if (!memcmp(h, sig, 4))
			return table(f, gpa, sig);
	}
	fail_msg("no %s table in the XSDT", sig);
	return NULL;
}

static void test_rsdp_and_roots(void **state)
{
	struct fixture *f = setup_with(2);
	const uint8_t *r = rsdp(f);
	const uint8_t *x = table(f, le(r + 24, 8), "XSDT");
	const uint8_t *rs = table(f, le(r + 16, 4), "RSDT");

	(void)state;
	/* Both roots list the same tables, FADT, MADT and MCFG. */
	uint32_t n = ((uint32_t)le(x + 4, 4) - 36) / 8;
	assert_int_equal(n, 3);
	assert_int_equal(le(rs + 4, 4), 36 + 4 * n);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(le(x + 36 + 8 * i, 8), le(rs + 36 + 4 * i, 4));
	find(f, "FACP");
	find(f, "APIC");
	find(f, "MCFG");
	teardown_fixture(f);
}

/* MCFG: one ECAM allocation, segment 0, buses 0-255 at the platform's base (OVMF's 0xB0000000 on q35). */
static void check_mcfg(const char *layout, uint64_t ecam)
{
	struct fixture *f = setup_machine(layout, 1);
	const uint8_t *m = find(f, "MCFG");

	assert_int_equal(le(m + 4, 4), 60);
	assert_int_equal(le(m + 44, 8), ecam);
	assert_int_equal(le(m + 52, 2), 0);
	assert_int_equal(m[54], 0);
	assert_int_equal(m[55], PCI_ECAM_BUS_END);
	teardown_fixture(f);
}

static void test_mcfg(void **state)
{
	(void)state;
	check_mcfg("q35", 0xB0000000);
	check_mcfg("legacy", 0xE0000000);
}

static void test_fadt(void **state)
{
	struct fixture *f = setup_with(1);
	const uint8_t *fadt = find(f, "FACP");

	(void)state;
	assert_int_equal(le(fadt + 4, 4), 276);
	assert_int_equal(fadt[8], 6);
	assert_int_equal(le(fadt + FADT_SCI_INT, 2), IRQ_ACPI_SCI);
	assert_int_equal(le(fadt + FADT_SMI_CMD, 4), 0);
	assert_int_equal(le(fadt + FADT_PM1A_EVT_BLK, 4), PORT_ACPI_PM1A_EVT);
	assert_int_equal(le(fadt + FADT_PM1A_CNT_BLK, 4), PORT_ACPI_PM1A_CNT);
	assert_int_equal(le(fadt + FADT_PM_TMR_BLK, 4), PORT_ACPI_PM_TMR);
	assert_int_equal(fadt[FADT_PM1_EVT_LEN], 4);
	assert_int_equal(fadt[FADT_PM1_CNT_LEN], 2);
	assert_int_equal(fadt[FADT_PM_TMR_LEN], 4);
	assert_int_equal(fadt[FADT_CENTURY], 0x32);
	assert_int_equal(le(fadt + FADT_IAPC_BOOT_ARCH, 2), 0x3); /* LEGACY_DEVICES | 8042 */

	uint32_t flags = (uint32_t)le(fadt + FADT_FLAGS, 4);
	assert_true(flags & FLAG_RESET_REG_SUP);
	assert_true(flags & FLAG_SLP_BUTTON);
	assert_true(flags & FLAG_TMR_VAL_EXT);
	assert_false(flags & FLAG_PWR_BUTTON);
	assert_false(flags & FLAG_HW_REDUCED);

	/* Reset register: one byte in system I/O space. */
	const uint8_t *reset = fadt + FADT_RESET_REG;
	assert_int_equal(reset[0], 1);
	assert_int_equal(reset[1], 8);
	assert_int_equal(reset[2], 0);
	assert_int_equal(le(reset + 4, 8), PORT_RESET);
	assert_int_equal(fadt[FADT_RESET_VALUE], RESET_VALUE);

	/* The 64-bit PM blocks must agree with the legacy ones, or ACPICA complains. */
	static const struct {
		unsigned off;
		uint16_t port;
		uint8_t bits;
	} gas[] = {
		{ FADT_X_PM1A_EVT_BLK, PORT_ACPI_PM1A_EVT, 32 },
		{ FADT_X_PM1A_CNT_BLK, PORT_ACPI_PM1A_CNT, 16 },
		{ FADT_X_PM_TMR_BLK, PORT_ACPI_PM_TMR, 32 },
	};
	for (size_t i = 0; i < sizeof(gas) / sizeof(gas[0]); i++) {
		assert_int_equal(fadt[gas[i].off], 1);
		assert_int_equal(fadt[gas[i].off + 1], gas[i].bits);
		assert_int_equal(le(fadt + gas[i].off + 4, 8), gas[i].port);
	}

	/* FACS: 64-byte aligned, named through the 32-bit field only. */
	uint64_t facs = le(fadt + FADT_FIRMWARE_CTRL, 4);
	assert_int_equal(facs % 64, 0);
	assert_int_equal(le(fadt + FADT_X_FIRMWARE_CTRL, 8), 0);
	const uint8_t *fc = at(f, facs, 64);
	assert_memory_equal(fc, "FACS", 4);
	assert_int_equal(le(fc + 4, 4), 64);

	uint64_t dsdt = le(fadt + FADT_DSDT, 4);
	assert_int_equal(le(fadt + FADT_X_DSDT, 8), dsdt);
	table(f, dsdt, "DSDT");
	teardown_fixture(f);
}

struct madt_counts {
	unsigned lapics, x2apics, ioapics, isos, nmis;
};

static void check_madt(unsigned ncpus)
{
	struct fixture *f = setup_with(ncpus);
	const uint8_t *m = find(f, "APIC");
	uint32_t len = (uint32_t)le(m + 4, 4);
	struct madt_counts c = { 0 };
	bool irq0 = false, sci = false;

	assert_int_equal(le(m + 36, 4), LAPIC_BASE);
	assert_int_equal(le(m + 40, 4) & 1, 1); /* PCAT_COMPAT */
	for (uint32_t off = 44; off < len;) {
		const uint8_t *e = m + off;
		assert_true(e[1] >= 2 && off + e[1] <= len);
		switch (e[0]) {
		case 0: /* Processor Local APIC, in vCPU order */
			assert_int_equal(e[1], 8);
			assert_int_equal(e[2], c.lapics);
			assert_int_equal(e[3], c.lapics);
			assert_int_equal(le(e + 4, 4) & 1, 1);
			c.lapics++;
			break;
		case 1:
			assert_int_equal(e[1], 12);
			assert_true(e[2] >= ncpus || ncpus >= 255);
			assert_int_equal(le(e + 4, 4), IOAPIC_BASE);
			assert_int_equal(le(e + 8, 4), 0);
			c.ioapics++;
			break;
		case 2:
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0);
			if (e[3] == 0) {
				assert_int_equal(le(e + 4, 4), 2);
				assert_int_equal(le(e + 8, 2) & 0xC, 0x4); /* edge */
				irq0 = true;
			} else if (e[3] == IRQ_ACPI_SCI) {
				assert_int_equal(le(e + 4, 4), IRQ_ACPI_SCI);
				assert_int_equal(le(e + 8, 2), 0xD); /* level, active-high */
				sci = true;
			}
			c.isos++;
			break;
		case 4:
			assert_int_equal(e[1], 6);
			assert_int_equal(e[2], 0xFF);
			assert_int_equal(e[5], 1);
			c.nmis++;
			break;
		case 9: /* x2APIC, for IDs past the 8-bit range */
			assert_int_equal(e[1], 16);
			assert_int_equal(le(e + 4, 4), 255 + c.x2apics);
			assert_int_equal(le(e + 12, 4), 255 + c.x2apics);
			c.x2apics++;
			break;
		}
		off += e[1];
	}
	assert_int_equal(c.lapics + c.x2apics, ncpus);
	assert_int_equal(c.lapics, ncpus < 255 ? ncpus : 255);
	assert_int_equal(c.ioapics, 1);
	assert_int_equal(c.isos, 2);
	assert_int_equal(c.nmis, 1);
	assert_true(irq0);
	assert_true(sci);
	teardown_fixture(f);
}

static void test_madt_1(void **state)
{
	(void)state;
	check_madt(1);
}

static void test_madt_2(void **state)
{
	(void)state;
	check_madt(2);
}

static void test_madt_8(void **state)
{
	(void)state;
	check_madt(8);
}

static void test_madt_64(void **state)
{
	(void)state;
	check_madt(64);
}

static void test_madt_x2apic(void **state)
{
	(void)state;
	check_madt(300);
}

static const uint8_t *dsdt(const struct fixture *f)
{
	return table(f, le(find(f, "FACP") + FADT_X_DSDT, 8), "DSDT");
}

static void test_dsdt_contents(void **state)
{
	struct fixture *f = setup_with(2);
	const uint8_t *d = dsdt(f);
	size_t len = le(d + 4, 4);
	/* Name(\_S5, Package(4) { 5, 5, 0, 0 }) */
	static const uint8_t s5[] = { 0x08, '\\', '_', 'S', '5', '_', 0x12, 0x08, 0x04,
				      0x0A, ACPI_S5_SLP_TYP, 0x0A, ACPI_S5_SLP_TYP, 0x00, 0x00 };
	/* EISAID("PNP0501") and EISAID("PNP0B00") as DWordConsts. */
	static const uint8_t com[] = { 0x0C, 0x41, 0xD0, 0x05, 0x01 };
	static const uint8_t rtc[] = { 0x0C, 0x41, 0xD0, 0x0B, 0x00 };
	/* IO(Decode16, 0x3F8, 0x3F8, 1, 8), IRQNoFlags() { 4 } */
	static const uint8_t com1_crs[] = { 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00 };

	(void)state;
	assert_int_equal(d[8], 2);
	assert_non_null(memmem(d, len, s5, sizeof(s5)));
	assert_non_null(memmem(d, len, "_SB_", 4));
	assert_non_null(memmem(d, len, "COM1", 4));
	assert_non_null(memmem(d, len, "COM2", 4));
	assert_non_null(memmem(d, len, "RTC_", 4));
	assert_non_null(memmem(d, len, com, sizeof(com)));
	assert_non_null(memmem(d, len, rtc, sizeof(rtc)));
	assert_non_null(memmem(d, len, com1_crs, sizeof(com1_crs)));
	assert_non_null(memmem(d, len, "C001", 4));
	assert_null(memmem(d, len, "C002", 4));
	/* The i8042: PNP0303 with IO 0x60 and 0x64 and IRQ 1; PNP0F13 with IRQ 12. */
	static const uint8_t kbd[] = { 0x0C, 0x41, 0xD0, 0x03, 0x03 }, mou[] = { 0x0C, 0x41, 0xD0, 0x0F, 0x13 };
	static const uint8_t kbd_crs[] = { 0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01,
					   0x47, 0x01, 0x64, 0x00, 0x64, 0x00, 0x01, 0x01, 0x22, 0x02, 0x00 };
	static const uint8_t mou_crs[] = { 0x22, 0x00, 0x10, 0x79 };
	assert_non_null(memmem(d, len, kbd, sizeof(kbd)));
	assert_non_null(memmem(d, len, mou, sizeof(mou)));
	assert_non_null(memmem(d, len, kbd_crs, sizeof(kbd_crs)));
	assert_non_null(memmem(d, len, mou_crs, sizeof(mou_crs)));
	/* The PCI root bridge, its interrupt routing and the ECAM reservation. */
	static const uint8_t pnp0a03[] = { 0x0C, 0x41, 0xD0, 0x0A, 0x03 };
	static const uint8_t pnp0c02[] = { 0x0C, 0x41, 0xD0, 0x0C, 0x02 };
	/* Memory32Fixed(ReadWrite, 0xB0000000, 0x10000000) */
	static const uint8_t ecam[] = { 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xB0, 0x00, 0x00, 0x00, 0x10 };
	/* Package(4) { 0x1FFFF, 3, 0, 20 }: slot 1 INTD -> GSI 16 + (1 + 3) % 8 */
	static const uint8_t prt[] = { 0x12, 0x0C, 0x04, 0x0C, 0xFF, 0xFF, 0x01, 0x00, 0x0A, 0x03, 0x00, 0x0A, 0x14 };
	assert_non_null(memmem(d, len, "PCI0", 4));
	assert_non_null(memmem(d, len, "_PRT", 4));
	assert_non_null(memmem(d, len, pnp0a03, sizeof(pnp0a03)));
	assert_non_null(memmem(d, len, pnp0c02, sizeof(pnp0c02)));
	assert_non_null(memmem(d, len, ecam, sizeof(ecam)));
	assert_non_null(memmem(d, len, prt, sizeof(prt)));
	teardown_fixture(f);
}

/*
 * The root bridge's memory windows: DWordMemory's and QWordMemory's
 * minimum and maximum (after the 0x87/0x8A tag, length, three flag bytes
 * and the granularity), and the ECAM reservation, for each layout.
 */
static void check_windows(const char *layout, uint32_t ecam, uint32_t min32, uint32_t max32, struct kvm_cpuid2 *cpuid,
			  uint64_t mmio64_end)
{
	struct fixture *f = setup_spec(&(struct machine_spec){ .layout = layout, .ncpus = 1, .cpuid = cpuid });
	const uint8_t *d = dsdt(f);
	size_t len = le(d + 4, 4);
	uint8_t dword[8], qword[24] = { 0 }, fixed[12] = { 0x86, 0x09, 0x00, 0x01 };
	uint64_t base64 = PCI_MMIO64_BASE(MEM_4G);
	const uint8_t *p;

	for (unsigned i = 0; i < 4; i++) {
		dword[i] = (uint8_t)(min32 >> (8 * i));
		dword[4 + i] = (uint8_t)(max32 >> (8 * i));
		fixed[4 + i] = (uint8_t)(ecam >> (8 * i));
		fixed[8 + i] = (uint8_t)(PCI_ECAM_SIZE >> (8 * i));
	}
	for (unsigned i = 0; i < 8; i++) {
		qword[i] = (uint8_t)(base64 >> (8 * i));
		qword[8 + i] = (uint8_t)((mmio64_end - 1) >> (8 * i)); /* then translation 0 */
	}
	p = memmem(d, len, dword, sizeof(dword));
	assert_non_null(p);
	assert_int_equal(p[-10], 0x87);
	p = memmem(d, len, qword, sizeof(qword));
	assert_non_null(p);
	assert_int_equal(p[-14], 0x8A);
	assert_non_null(memmem(d, len, fixed, sizeof(fixed)));
	teardown_fixture(f);
}

/*
 * The CPUID leaves OVMF sizes its 64-bit PCI window from (platform.h):
 * an Intel CPU with 1 GiB pages and phys_bits address bits.
 */
static struct kvm_cpuid2 *intel_cpuid(unsigned phys_bits)
{
	struct kvm_cpuid2 *t = calloc(1, sizeof(*t) + 3 * sizeof(t->entries[0]));

	assert_non_null(t);
	t->nent = 3;
	/* "GenuineIntel" in EBX, EDX, ECX */
	t->entries[0] = (struct kvm_cpuid_entry2){ .function = 0x80000000, .eax = 0x80000008, .ebx = 0x756E6547,
						   .edx = 0x49656E69, .ecx = 0x6C65746E };
	t->entries[1] = (struct kvm_cpuid_entry2){ .function = 0x80000001, .edx = 1u << 26 };
	t->entries[2] = (struct kvm_cpuid_entry2){ .function = 0x80000008, .eax = phys_bits };
	return t;
}

static void test_dsdt_windows(void **state)
{
	struct kvm_cpuid2 *cpu39 = intel_cpuid(39);

	(void)state;
	check_windows("q35", 0xB0000000, 0xC0000000, 0xFBFFFFFF, NULL, PCI_MMIO64_BASE(MEM_4G) + PCI_MMIO64_SIZE);
	/* OVMF trusts 39 bits and takes the top eighth of the space, [2^39 - 2^36, 2^39): announced up to 2^39. */
	check_windows("q35", 0xB0000000, 0xC0000000, 0xFBFFFFFF, cpu39, 1ULL << 39);
	/* The legacy layout keeps the classic window whatever the CPU says. */
	check_windows("legacy", 0xE0000000, 0xC0000000, 0xDFFFFFFF, cpu39, PCI_MMIO64_BASE(MEM_4G) + PCI_MMIO64_SIZE);
	free(cpu39);
}

/* iasl on PATH, or NULL. */
static char *find_iasl(void)
{
	const char *path = getenv("PATH");
	char *copy = strdup(path ? path : "/usr/bin:/bin");
	char *found = NULL;

	for (char *save, *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
		char *cand;
		if (asprintf(&cand, "%s/iasl", dir) < 0)
			break;
		if (access(cand, X_OK) == 0)
			found = cand;
		else
			free(cand);
	}
	free(copy);
	return found;
}

/* Runs an iasl command line in dir; fails the test with the log's location on error. */
static void run_iasl(const char *dir, const char *iasl, const char *args)
{
	char *cmd;

	assert_true(asprintf(&cmd, "cd '%s' && '%s' %s >>iasl.log 2>&1", dir, iasl, args) > 0);
	int status = system(cmd);
	free(cmd);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("iasl %s failed (status %d); see %s/iasl.log", args, status, dir);
}

/* A whole small file, NUL-terminated; *len excludes the NUL. */
static char *slurp(const char *dir, const char *name, size_t *len)
{
	static char data[1 << 18];
	char *path;

	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	FILE *fp = fopen(path, "rb");
	if (!fp)
		fail_msg("iasl produced no %s", path);
	*len = fread(data, 1, sizeof(data) - 1, fp);
	fclose(fp);
	free(path);
	data[*len] = '\0';
	return data;
}

/*
 * The real ACPICA tools must accept our AML: the disassembly must show
 * what we put in, and recompiling it without optimizations must give back
 * exactly our bytes (the header aside, which names the compiler).
 */
static void iasl_round_trip(const uint8_t *table, size_t len, const char *expect)
{
	char dir[] = "/tmp/hyve-acpi-XXXXXX";
	char *iasl = find_iasl();
	char *path;
	size_t n;

	if (!iasl)
		fail_msg("iasl not found on PATH: install acpica-tools (scripts/install-deps)");
	assert_non_null(mkdtemp(dir));
	assert_true(asprintf(&path, "%s/table.dat", dir) > 0);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(table, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	free(path);

	run_iasl(dir, iasl, "-d table.dat");
	const char *dsl = slurp(dir, "table.dsl", &n);
	if (!strstr(dsl, expect))
		fail_msg("%s/table.dsl: no \"%s\" in the disassembly", dir, expect);
	run_iasl(dir, iasl, "-oa -p again table.dsl");
	const char *aml = slurp(dir, "again.aml", &n);
	if (n != len || memcmp(aml + 36, table + 36, len - 36))
		fail_msg("%s: recompiled AML differs from ours (%zu vs %zu bytes)", dir, n, len);

	assert_true(asprintf(&path, "rm -rf '%s'", dir) > 0);
	assert_int_equal(system(path), 0);
	free(path);
	free(iasl);
}

static void test_dsdt_iasl(void **state)
{
	/* PkgLengths of every size in use: 1 byte (devices), 2 and 3 (\_SB with 64 and 300 vCPUs). */
	static const unsigned counts[] = { 1, 64, 300 };

	(void)state;
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		struct fixture *f = setup_with(counts[i]);
		const uint8_t *d = dsdt(f);
		iasl_round_trip(d, le(d + 4, 4), "EisaId (\"PNP0501\")");
		teardown_fixture(f);
	}
}

/* ---- each device's entry, against ASL compiled by iasl ---- */

/*
 * The AML iasl makes of ASL `body` (the objects of a DefinitionBlock),
 * without the table header: what our DSDT must hold for those objects.
 * -oa: no optimizations, so iasl keeps names and constants as written.
 */
static uint8_t *compile_asl(const char *body, size_t *len)
{
	char dir[] = "/tmp/hyve-asl-XXXXXX";
	char *iasl = find_iasl(), *path;
	size_t n;

	if (!iasl)
		fail_msg("iasl not found on PATH: install acpica-tools (scripts/install-deps)");
	assert_non_null(mkdtemp(dir));
	assert_true(asprintf(&path, "%s/entry.asl", dir) > 0);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp, "DefinitionBlock (\"\", \"DSDT\", 2, \"HYVE  \", \"ENTRY\", 1)\n{\n%s\n}\n", body);
	assert_int_equal(fclose(fp), 0);
	free(path);
	run_iasl(dir, iasl, "-oa -p entry entry.asl");
	const char *aml = slurp(dir, "entry.aml", &n);
	assert_true(n > 36);
	*len = n - 36;
	uint8_t *out = malloc(*len);
	assert_non_null(out);
	memcpy(out, aml + 36, *len);
	assert_true(asprintf(&path, "rm -rf '%s'", dir) > 0);
	assert_int_equal(system(path), 0);
	free(path);
	free(iasl);
	return out;
}

/* The DSDT holds exactly what iasl compiles `asl` to; `what` names it in the failure. */
static void assert_entry(const uint8_t *d, const char *what, const char *asl)
{
	size_t n;
	uint8_t *want = compile_asl(asl, &n);

	if (!memmem(d + 36, le(d + 4, 4) - 36, want, n))
		fail_msg("the DSDT lacks %s as iasl compiles it:\n%s", what, asl);
	free(want);
}

static void assert_no_device(const uint8_t *d, const char *seg)
{
	/* A Device's name follows ExtOpPrefix, DeviceOp and a 1-byte PkgLength. */
	size_t len = le(d + 4, 4);

	for (const uint8_t *p = d + 36; (p = memmem(p, len - (size_t)(p - d), seg, 4)); p++)
		if (p - d >= 39 && p[-3] == 0x5B && p[-2] == 0x82)
			fail_msg("the DSDT has a device %.4s", seg);
}

static char *isa_asl(const char *name, const char *hid, const char *uid, unsigned port, unsigned len, unsigned irq)
{
	char *asl;

	assert_true(asprintf(&asl,
			     "Device (%s) { Name (_HID, EisaId (\"%s\")) Name (_UID, %s)\n"
			     "  Name (_CRS, ResourceTemplate () { IO (Decode16, 0x%X, 0x%X, 0x01, 0x%02X, ) "
			     "IRQNoFlags () {%u} }) }",
			     name, hid, uid, port, port, len, irq) > 0);
	return asl;
}

static void assert_isa_entry(const uint8_t *d, const char *name, const char *hid, const char *uid, unsigned port,
			     unsigned len, unsigned irq)
{
	char *asl = isa_asl(name, hid, uid, port, len, irq);

	assert_entry(d, name, asl);
	free(asl);
}

static const char i8042_asl[] =
	"Device (KBD) { Name (_HID, EisaId (\"PNP0303\"))\n"
	"  Name (_CRS, ResourceTemplate () { IO (Decode16, 0x60, 0x60, 0x01, 0x01, ) "
	"IO (Decode16, 0x64, 0x64, 0x01, 0x01, ) IRQNoFlags () {1} }) }\n"
	"Device (MOU) { Name (_HID, EisaId (\"PNP0F13\")) Name (_CRS, ResourceTemplate () { IRQNoFlags () {12} }) }";

static const char s5_asl[] = "Name (\\_S5, Package (0x04) { 0x05, 0x05, Zero, Zero })";

/*
 * PCI0 as ASL: the bus numbers, the configuration ports and the I/O
 * around them, the 32-bit window [min32, max32] and the 64-bit one from
 * the first 32 GiB boundary above RAM to max64, and a _PRT entry per slot
 * and pin to GSI 16 + (slot + pin) % 8; then MRES holding ECAM.
 */
static char *pci_asl(uint32_t min32, uint32_t max32, uint64_t min64, uint64_t max64, uint32_t ecam)
{
	char *prt = NULL, *asl;
	size_t prt_len = 0;
	FILE *fp = open_memstream(&prt, &prt_len);

	assert_non_null(fp);
	for (unsigned slot = 0; slot < 32; slot++)
		for (unsigned pin = 0; pin < 4; pin++)
			fprintf(fp, "%sPackage (0x04) { 0x%X, %s, Zero, 0x%X }", slot || pin ? ", " : "",
				slot << 16 | 0xFFFF, pin == 0 ? "Zero" : pin == 1 ? "One" : pin == 2 ? "0x02" : "0x03",
				16 + (slot + pin) % 8);
	assert_int_equal(fclose(fp), 0);
	assert_true(asprintf(&asl,
			     "Device (PCI0) { Name (_HID, EisaId (\"PNP0A03\")) Name (_UID, Zero) Name (_SEG, Zero)\n"
			     "  Name (_BBN, Zero)\n"
			     "  Name (_CRS, ResourceTemplate () {\n"
			     "    WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, 0, 0xFF, 0, 0x100,,,)\n"
			     "    IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08, )\n"
			     "    WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, 0, 0x0CF7, 0, "
			     "0x0CF8,,,, TypeStatic, DenseTranslation)\n"
			     "    WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, 0x0D00, 0xFFFF, "
			     "0, 0xF300,,,, TypeStatic, DenseTranslation)\n"
			     "    DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, "
			     "0x%X, 0x%X, 0, 0x%X,,,, AddressRangeMemory, TypeStatic)\n"
			     "    QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, "
			     "0x%llX, 0x%llX, 0, 0x%llX,,,, AddressRangeMemory, TypeStatic)\n"
			     "  })\n"
			     "  Name (_PRT, Package (0x80) { %s })\n"
			     "}\n"
			     "Device (MRES) { Name (_HID, EisaId (\"PNP0C02\")) Name (_UID, Zero)\n"
			     "  Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, 0x%X, 0x10000000, ) }) }",
			     min32, max32, max32 - min32 + 1, (unsigned long long)min64, (unsigned long long)max64,
			     (unsigned long long)(max64 - min64 + 1), prt, ecam) > 0);
	free(prt);
	return asl;
}

/*
 * The representative device set (the ACPI PM device, the RTC, the i8042,
 * com1 and com2, the PCI bus) on each layout: every device's entry is in
 * the DSDT exactly as iasl compiles its ASL, the processors are there, and
 * every table's checksum holds (table() checks it on the way).
 */
static void check_device_entries(const char *layout, uint32_t ecam, uint32_t max32)
{
	struct fixture *f = setup_machine(layout, 2);
	const uint8_t *d = dsdt(f);
	uint64_t min64 = PCI_MMIO64_BASE(MEM_4G);
	char *pci = pci_asl(0xC0000000, max32, min64, min64 + PCI_MMIO64_SIZE - 1, ecam);

	find(f, "APIC");
	find(f, "MCFG");
	assert_entry(d, "\\_S5", s5_asl);
	assert_isa_entry(d, "RTC", "PNP0B00", "Zero", 0x70, 2, 8);
	assert_entry(d, "KBD and MOU", i8042_asl);
	assert_isa_entry(d, "COM1", "PNP0501", "One", 0x3F8, 8, 4);
	assert_isa_entry(d, "COM2", "PNP0501", "0x02", 0x2F8, 8, 3);
	assert_entry(d, "PCI0 and MRES", pci);
	assert_entry(d, "the processors",
		     "Device (C000) { Name (_HID, \"ACPI0007\") Name (_UID, Zero) }\n"
		     "Device (C001) { Name (_HID, \"ACPI0007\") Name (_UID, One) }");
	assert_no_device(d, "COM3");
	free(pci);
	teardown_fixture(f);
}

static void test_dsdt_device_entries(void **state)
{
	(void)state;
	check_device_entries("q35", 0xB0000000, 0xFBFFFFFF);
	check_device_entries("legacy", 0xE0000000, 0xDFFFFFFF);
}

/* ---- the DSDT follows the devices ---- */

/*
 * A device model only this test knows: acpi.c has never heard of it, yet
 * its entry is in the DSDT, because its model has an acpi_dsdt().
 */
static int probe_create(struct device *dev)
{
	(void)dev;
	return 0;
}

static void probe_acpi_dsdt(struct device *dev, struct aml_buf *b)
{
	(void)dev;
	size_t mark = aml_device_begin(b, "PRBE");
	aml_name(b, "_HID");
	aml_string(b, "HYV0001");
	aml_end(b, mark);
}

static struct device_model probe_model = {
	.name = "test-acpi-probe",
	.create = probe_create,
	.acpi_dsdt = probe_acpi_dsdt,
};
DEVICE_MODEL(probe_model)

/*
 * Only what exists is described: com1, com3 and com4 without com2, no
 * i8042, and the test's own device; in the tables built for direct boot
 * and in the ones firmware gets through fw_cfg alike.
 */
static void test_dsdt_follows_devices(void **state)
{
	static const char *const settings[] = { "lpc.com1.path=file=/dev/null", "lpc.com3.path=file=/dev/null",
						"lpc.com4.path=file=/dev/null", "lpc.i8042=false", NULL };
	struct fixture *f = calloc(1, sizeof(*f));
	struct acpi_machine m;
	struct acpi_blobs blobs;

	(void)state;
	assert_non_null(f);
	f->vm = machine_vm(&(struct machine_spec){ .layout = "q35", .ncpus = 1, .settings = settings }, 256 * MiB);
	assert_non_null(device_create(f->vm, &probe_model, "test.probe", "test.probe"));
	acpi_machine_of(f->vm, &m);
	assert_int_equal(acpi_build(&m, &f->rsdp), 0);
	const uint8_t *d = dsdt(f);

	assert_isa_entry(d, "COM1", "PNP0501", "One", 0x3F8, 8, 4);
	assert_isa_entry(d, "COM3", "PNP0501", "0x03", 0x3E8, 8, 4);
	assert_isa_entry(d, "COM4", "PNP0501", "0x04", 0x2E8, 8, 3);
	assert_entry(d, "the test's device", "Device (PRBE) { Name (_HID, \"HYV0001\") }");
	assert_isa_entry(d, "RTC", "PNP0B00", "Zero", 0x70, 2, 8);
	assert_entry(d, "\\_S5", s5_asl);
	assert_no_device(d, "COM2");
	assert_no_device(d, "KBD_");
	assert_no_device(d, "MOU_");
	iasl_round_trip(d, le(d + 4, 4), "Device (PRBE)");

	/* The firmware's copy (fw_cfg's etc/acpi/tables) holds the same DSDT. */
	assert_int_equal(acpi_build_blobs(&m, &blobs), 0);
	const uint8_t *bd = memmem(blobs.tables, blobs.tables_len, "DSDT", 4);
	assert_non_null(bd);
	assert_true((size_t)(bd - blobs.tables) + le(d + 4, 4) <= blobs.tables_len);
	/* Only the checksum byte differs: the firmware computes it (table-loader ADD_CHECKSUM). */
	assert_memory_equal(bd, d, 9);
	assert_memory_equal(bd + 10, d + 10, le(d + 4, 4) - 10);
	acpi_blobs_free(&blobs);
	teardown_fixture(f);
}

/* Scope(\\ABCD) with a body of n zero bytes; returns the PkgLength's size in bytes. */
static unsigned pkg_length_bytes(size_t body, size_t *total)
{
	struct aml_buf b;
	uint8_t zero[5000] = { 0 };

	aml_init(&b);
	size_t mark = aml_scope_begin(&b, "ABCD");
	aml_bytes(&b, zero, body);
	aml_end(&b, mark);
	assert_false(aml_failed(&b));
	assert_int_equal(b.data[0], 0x10);
	unsigned n = (b.data[1] >> 6) + 1;
	*total = n == 1 ? b.data[1] : (b.data[1] & 0xF) | (size_t)le(b.data + 2, n - 1) << 4;
	assert_int_equal(b.len, 1 + *total);
	assert_memory_equal(b.data + 1 + n, "ABCD", 4);
	aml_free(&b);
	return n;
}

static void test_aml_pkg_length(void **state)
{
	size_t total;

	(void)state;
	/* PkgLength counts itself: 4-byte name + body + its own encoding. */
	assert_int_equal(pkg_length_bytes(58, &total), 1);
	assert_int_equal(total, 63);
	assert_int_equal(pkg_length_bytes(59, &total), 2);
	assert_int_equal(total, 65);
	assert_int_equal(pkg_length_bytes(4089, &total), 2);
	assert_int_equal(total, 4095);
	assert_int_equal(pkg_length_bytes(4090, &total), 3);
	assert_int_equal(total, 4097);
}

static void test_aml_names(void **state)
{
	static const uint8_t multi[] = { '\\', 0x2F, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'I', 'S', 'A', '_' };
	static const uint8_t dual[] = { '^', '^', 0x2E, 'A', '_', '_', '_', 'B', '1', '_', '_' };
	static const char *const bad[] = { "", "\\", "ABCDE", "1ABC", "a", "A..B", "A.", "A-B" };
	struct aml_buf b;

	(void)state;
	aml_init(&b);
	aml_name_string(&b, "\\_SB.PCI0.ISA");
	assert_false(aml_failed(&b));
	assert_int_equal(b.len, sizeof(multi));
	assert_memory_equal(b.data, multi, sizeof(multi));
	aml_free(&b);

	aml_name_string(&b, "^^A.B1");
	assert_int_equal(b.len, sizeof(dual));
	assert_memory_equal(b.data, dual, sizeof(dual));
	aml_free(&b);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aml_name_string(&b, bad[i]);
		if (!aml_failed(&b))
			fail_msg("accepted the name \"%s\"", bad[i]);
		aml_free(&b);
	}
}

static void test_aml_data(void **state)
{
	static const uint8_t ints[] = { 0x00, 0x01, 0x0A, 0xFF, 0x0B, 0x00, 0x01, 0x0C, 0x00, 0x00, 0x01, 0x00,
					0x0E, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00 };
	struct aml_buf b;

	(void)state;
	aml_init(&b);
	aml_integer(&b, 0);
	aml_integer(&b, 1);
	aml_integer(&b, 0xFF);
	aml_integer(&b, 0x100);
	aml_integer(&b, 0x10000);
	aml_integer(&b, 0x100000000ULL);
	assert_int_equal(b.len, sizeof(ints));
	assert_memory_equal(b.data, ints, sizeof(ints));
	aml_free(&b);

	aml_string(&b, "AB");
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.data, "\x0D" "AB", 4);
	aml_free(&b);

	static const char *const bad_ids[] = { "PNP050", "pnp0501", "PNP05G1", "PNP05011" };
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		aml_eisaid(&b, bad_ids[i]);
		assert_true(aml_failed(&b));
		aml_free(&b);
	}
	aml_res_irq_noflags(&b, 16);
	assert_true(aml_failed(&b));
	/* Sticky: nothing more is appended. */
	aml_byte(&b, 1);
	assert_int_equal(b.len, 0);
	aml_free(&b);
}

static void test_tables_fit(void **state)
{
	struct fixture *f = setup_with(ACPI_MAX_CPUS);

	(void)state;
	find(f, "APIC");
	dsdt(f);
	teardown_fixture(f);
}

static void test_failures(void **state)
{
	struct vm *vm;
	struct acpi_machine m;
	uint64_t rsdp = 0;

	(void)state;
	vm = machine_vm(&(struct machine_spec){ .layout = "q35", .ncpus = 1, .settings = two_ports }, 64 * MiB);
	acpi_machine_of(vm, &m);
	m.ncpus = 0;
	assert_int_equal(acpi_build(&m, &rsdp), -1);
	m.ncpus = ACPI_MAX_CPUS + 1;
	assert_int_equal(acpi_build(&m, &rsdp), -1);
	free_machine_vm(vm);

	/* Too little RAM to hold the firmware area. */
	vm = machine_vm(&(struct machine_spec){ .layout = "q35", .ncpus = 1 }, 512 * 1024);
	acpi_machine_of(vm, &m);
	assert_int_equal(acpi_build(&m, &rsdp), -1);
	free_machine_vm(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsdp_and_roots),
		cmocka_unit_test(test_fadt),
		cmocka_unit_test(test_madt_1),
		cmocka_unit_test(test_madt_2),
		cmocka_unit_test(test_madt_8),
		cmocka_unit_test(test_madt_64),
		cmocka_unit_test(test_madt_x2apic),
		cmocka_unit_test(test_dsdt_contents),
		cmocka_unit_test(test_mcfg),
		cmocka_unit_test(test_dsdt_windows),
		cmocka_unit_test(test_dsdt_iasl),
		cmocka_unit_test(test_dsdt_device_entries),
		cmocka_unit_test(test_dsdt_follows_devices),
		cmocka_unit_test(test_aml_pkg_length),
		cmocka_unit_test(test_aml_names),
		cmocka_unit_test(test_aml_data),
		cmocka_unit_test(test_tables_fit),
		cmocka_unit_test(test_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
