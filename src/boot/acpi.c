#include "acpi.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "aml.h"
#include "checksum.h"
#include "core/device.h"
#include "core/log.h"
#include "core/platform.h"
#include "core/vm.h"
#include "fw_cfg_loader.h"
#include "layout.h"

#define PACKED __attribute__((packed))

#define ACPI_OEM_ID "HYVE  "
#define ACPI_OEM_TABLE_PREFIX "HYVE"
#define ACPI_CREATOR_ID "HYVE"
#define ACPI_OEM_REVISION 1

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} PACKED;
_Static_assert(sizeof(struct acpi_header) == 36, "SDT header");

struct acpi_rsdp {
	char signature[8];
	uint8_t checksum; /* over the first 20 bytes (the ACPI 1.0 part) */
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum; /* over all 36 bytes */
	uint8_t reserved[3];
} PACKED;
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP");
#define RSDP_V1_LENGTH 20

/* Generic Address Structure. */
struct acpi_gas {
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
} PACKED;
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS");

#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1
#define GAS_ACCESS_WORD 2
#define GAS_ACCESS_DWORD 3

/* FADT, revision 6 (ACPI 6.0 layout). */
struct acpi_fadt {
	struct acpi_header header;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	uint32_t pm1a_evt_blk;
	uint32_t pm1b_evt_blk;
	uint32_t pm1a_cnt_blk;
	uint32_t pm1b_cnt_blk;
	uint32_t pm2_cnt_blk;
	uint32_t pm_tmr_blk;
	uint32_t gpe0_blk;
	uint32_t gpe1_blk;
	uint8_t pm1_evt_len;
	uint8_t pm1_cnt_len;
	uint8_t pm2_cnt_len;
	uint8_t pm_tmr_len;
	uint8_t gpe0_blk_len;
	uint8_t gpe1_blk_len;
	uint8_t gpe1_base;
	uint8_t cst_cnt;
	uint16_t p_lvl2_lat;
	uint16_t p_lvl3_lat;
	uint16_t flush_size;
	uint16_t flush_stride;
	uint8_t duty_offset;
	uint8_t duty_width;
	uint8_t day_alrm;
	uint8_t mon_alrm;
	uint8_t century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk;
	struct acpi_gas x_pm1b_evt_blk;
	struct acpi_gas x_pm1a_cnt_blk;
	struct acpi_gas x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk;
	struct acpi_gas x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk;
	struct acpi_gas x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	uint64_t hypervisor_vendor_id;
} PACKED;
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT");
_Static_assert(offsetof(struct acpi_fadt, reset_reg) == 116, "FADT reset_reg");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT x_dsdt");

#define FADT_REVISION 6
#define FADT_WBINVD (1u << 0)
#define FADT_PROC_C1 (1u << 2)
#define FADT_SLP_BUTTON (1u << 5)
#define FADT_TMR_VAL_EXT (1u << 8)
#define FADT_RESET_REG_SUP (1u << 10)
#define BOOT_ARCH_LEGACY_DEVICES (1u << 0)
#define BOOT_ARCH_8042 (1u << 1)
/* Latencies above these limits tell the OS that C2 and C3 do not exist. */
#define P_LVL2_LAT_NONE 101
#define P_LVL3_LAT_NONE 1001
#define CMOS_CENTURY 0x32

struct acpi_facs {
	char signature[4];
	uint32_t length;
	uint32_t hardware_signature;
	uint32_t firmware_waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_firmware_waking_vector;
	uint8_t version;
	uint8_t reserved0[3];
	uint32_t ospm_flags;
	uint8_t reserved1[24];
} PACKED;
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS");
#define FACS_VERSION 2
#define FACS_ALIGN 64

struct madt_header {
	struct acpi_header header;
	uint32_t lapic_address;
	uint32_t flags;
} PACKED;
#define MADT_REVISION 5
#define MADT_PCAT_COMPAT (1u << 0)

enum madt_type {
	MADT_LAPIC = 0,
	MADT_IOAPIC = 1,
	MADT_ISO = 2,
	MADT_LAPIC_NMI = 4,
	MADT_X2APIC = 9,
	MADT_X2APIC_NMI = 10,
};

struct madt_lapic {
	uint8_t type, length;
	uint8_t uid;
	uint8_t apic_id;
	uint32_t flags;
} PACKED;

struct madt_ioapic {
	uint8_t type, length;
	uint8_t id;
	uint8_t reserved;
	uint32_t address;
	uint32_t gsi_base;
} PACKED;

struct madt_iso {
	uint8_t type, length;
	uint8_t bus;
	uint8_t source;
	uint32_t gsi;
	uint16_t flags;
} PACKED;

struct madt_lapic_nmi {
	uint8_t type, length;
	uint8_t uid;
	uint16_t flags;
	uint8_t lint;
} PACKED;

struct madt_x2apic {
	uint8_t type, length;
	uint16_t reserved;
	uint32_t x2apic_id;
	uint32_t flags;
	uint32_t uid;
} PACKED;

struct madt_x2apic_nmi {
	uint8_t type, length;
	uint16_t flags;
	uint32_t uid;
	uint8_t lint;
	uint8_t reserved[3];
} PACKED;

#define MADT_ENABLED (1u << 0)
/* MPS INTI flags: polarity in bits 1:0, trigger mode in bits 3:2. */
#define INTI_ACTIVE_HIGH 0x1
#define INTI_EDGE (0x1 << 2)
#define INTI_LEVEL (0x3 << 2)
#define MADT_ALL_CPUS_UID 0xFF
#define MADT_ALL_CPUS_X2UID 0xFFFFFFFFu
/* Below this APIC ID a CPU is described by a plain Local APIC entry. */
#define XAPIC_ID_LIMIT 0xFF
#define ISA_IRQ_PIT 0
#define GSI_PIT 2
#define LAPIC_LINT1 1

/*
 * Where the tables go, with a bump allocator over it: guest RAM at a fixed
 * address (direct boot), or a relocatable blob for firmware (gpa 0: the
 * "addresses" are offsets in the blob), whose pointers and checksums the
 * firmware completes from the loader's commands once it has placed it.
 */
struct area {
	uint8_t *hva;
	uint64_t gpa;
	size_t used, size;
	struct fw_cfg_loader *loader; /* NULL: fixed addresses, checksums computed here */
};

#define TABLES_BLOB_ALIGN 64 /* FACS_ALIGN: the FACS is the blob's first table */
#define RSDP_BLOB_ALIGN 16

static void *area_alloc(struct area *a, size_t len, size_t align, uint32_t *gpa)
{
	size_t off = (a->used + align - 1) & ~(align - 1);

	if (off > a->size || len > a->size - off) {
		log_error("ACPI tables do not fit in %zu bytes", a->size);
		return NULL;
	}
	a->used = off + len;
	*gpa = (uint32_t)(a->gpa + off);
	return a->hva + off;
}

static void header_init(struct acpi_header *h, const char *sig, uint32_t len, uint8_t revision)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = revision;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, ACPI_OEM_TABLE_PREFIX, 4);
	memcpy(h->oem_table_id + 4, sig, 4);
	h->oem_revision = ACPI_OEM_REVISION;
	memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
	h->creator_revision = ACPI_OEM_REVISION;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Stores the address of a table (target, as area_alloc() gave it) in the
 * size-byte pointer field at `field` bytes into table. In a blob the value
 * is an offset and the loader adds the blob's address to it. Loader
 * failures are sticky and checked once at the end.
 */
static void link_table(struct area *a, void *table, size_t field, unsigned size, uint32_t target)
{
	uint8_t *p = (uint8_t *)table + field;

	put_le(p, target, size);
	if (a->loader)
		loader_add_pointer(a->loader, ACPI_FILE_TABLES, ACPI_FILE_TABLES, (uint32_t)(p - a->hva), (uint8_t)size);
}

/* Call last, once every byte of the table is final (its pointers linked). */
static void header_checksum(struct area *a, void *table)
{
	struct acpi_header *h = table;
	uint32_t at = (uint32_t)((uint8_t *)table - a->hva);

	h->checksum = 0;
	/* In a blob the byte stays 0: the firmware sums the table after patching its pointers. */
	if (a->loader)
		loader_add_checksum(a->loader, ACPI_FILE_TABLES, at + offsetof(struct acpi_header, checksum), at,
				    h->length);
	else
		h->checksum = table_checksum(table, h->length);
}

static int build_facs(struct area *a, uint32_t *gpa)
{
	struct acpi_facs *facs = area_alloc(a, sizeof(*facs), FACS_ALIGN, gpa);

	if (!facs)
		return -1;
	memcpy(facs->signature, "FACS", 4);
	facs->length = sizeof(*facs);
	facs->version = FACS_VERSION;
	return 0;
}

/*
 * Processor devices let the OS bind its ACPI processor driver; each _UID
 * matches the ACPI processor UID of the vCPU's MADT entry.
 */
static void dsdt_cpus(struct aml_buf *b, unsigned ncpus)
{
	static const char hex[] = "0123456789ABCDEF";

	for (unsigned i = 0; i < ncpus; i++) {
		char name[5] = { 'C', hex[(i >> 8) & 0xF], hex[(i >> 4) & 0xF], hex[i & 0xF], 0 };
		size_t dev = aml_device_begin(b, name);
		aml_name(b, "_HID");
		aml_string(b, "ACPI0007");
		aml_name(b, "_UID");
		aml_integer(b, i);
		aml_end(b, dev);
	}
}

/*
 * \_SB holds the processors (vCPUs are not device models) and then
 * whatever each device says about itself, in creation order: the ACPI PM
 * device's \_S5, the RTC, the i8042, the UARTs, the PCI root bridge...
 * Nothing here names a device.
 */
static void dsdt_body(struct aml_buf *b, const struct acpi_machine *m)
{
	size_t sb = aml_scope_begin(b, "\\_SB");
	dsdt_cpus(b, m->ncpus);
	for (struct device *d = m->devices; d; d = d->next)
		if (d->model->acpi_dsdt)
			d->model->acpi_dsdt(d, b);
	aml_end(b, sb);
}

/* DSDT revision 2 makes AML integers 64 bits wide. */
#define DSDT_REVISION 2

static int build_dsdt(struct area *a, const struct acpi_machine *m, uint32_t *gpa)
{
	struct aml_buf b;
	int ret = -1;

	aml_init(&b);
	dsdt_body(&b, m);
	if (aml_failed(&b)) {
		log_error("cannot encode the DSDT");
		goto out;
	}
	size_t len = sizeof(struct acpi_header) + b.len;
	uint8_t *t = area_alloc(a, len, 16, gpa);
	if (!t)
		goto out;
	header_init((struct acpi_header *)t, "DSDT", (uint32_t)len, DSDT_REVISION);
	memcpy(t + sizeof(struct acpi_header), b.data, b.len);
	header_checksum(a, t);
	ret = 0;
out:
	aml_free(&b);
	return ret;
}

static struct acpi_gas gas_io(uint16_t port, uint8_t bytes, uint8_t access)
{
	return (struct acpi_gas){
		.space_id = GAS_SYSTEM_IO,
		.bit_width = (uint8_t)(bytes * 8),
		.access_size = access,
		.address = port,
	};
}

static int build_fadt(struct area *a, uint32_t facs, uint32_t dsdt, uint32_t *gpa)
{
	struct acpi_fadt *f = area_alloc(a, sizeof(*f), 16, gpa);

	if (!f)
		return -1;
	header_init(&f->header, "FACP", sizeof(*f), FADT_REVISION);
	link_table(a, f, offsetof(struct acpi_fadt, firmware_ctrl), 4, facs);
	link_table(a, f, offsetof(struct acpi_fadt, dsdt), 4, dsdt);
	link_table(a, f, offsetof(struct acpi_fadt, x_dsdt), 8, dsdt);
	f->sci_int = IRQ_ACPI_SCI;
	/* SMI_CMD 0: the platform is always in ACPI mode, there is nothing to switch. */
	f->smi_cmd = 0;
	f->pm1a_evt_blk = PORT_ACPI_PM1A_EVT;
	f->pm1a_cnt_blk = PORT_ACPI_PM1A_CNT;
	f->pm_tmr_blk = PORT_ACPI_PM_TMR;
	f->pm1_evt_len = 4;
	f->pm1_cnt_len = 2;
	f->pm_tmr_len = 4;
	/* The status and enable halves of PM1_EVT are 16-bit registers each. */
	f->x_pm1a_evt_blk = gas_io(PORT_ACPI_PM1A_EVT, 4, GAS_ACCESS_WORD);
	f->x_pm1a_cnt_blk = gas_io(PORT_ACPI_PM1A_CNT, 2, GAS_ACCESS_WORD);
	f->x_pm_tmr_blk = gas_io(PORT_ACPI_PM_TMR, 4, GAS_ACCESS_DWORD);
	f->p_lvl2_lat = P_LVL2_LAT_NONE;
	f->p_lvl3_lat = P_LVL3_LAT_NONE;
	f->century = CMOS_CENTURY;
	f->iapc_boot_arch = BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_8042;
	/*
	 * No PWR_BUTTON flag: the power button is the fixed-feature one in
	 * PM1. SLP_BUTTON set: there is no sleep button. TMR_VAL_EXT: the PM
	 * timer counts in 32 bits.
	 */
	f->flags = FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_TMR_VAL_EXT | FADT_RESET_REG_SUP;
	f->reset_reg = gas_io(PORT_RESET, 1, GAS_ACCESS_BYTE);
	f->reset_value = RESET_VALUE;
	header_checksum(a, f);
	return 0;
}

/* Appends one MADT entry after the ones already in the table. */
static int madt_add(struct area *a, struct madt_header *madt, const void *entry, size_t len)
{
	uint32_t gpa;
	uint8_t *p = area_alloc(a, len, 1, &gpa);

	if (!p)
		return -1;
	memcpy(p, entry, len);
	madt->header.length += (uint32_t)len;
	return 0;
}

static int madt_add_cpu(struct area *a, struct madt_header *madt, unsigned cpu)
{
	if (cpu < XAPIC_ID_LIMIT) {
		struct madt_lapic e = { .type = MADT_LAPIC, .length = sizeof(e), .uid = (uint8_t)cpu,
					.apic_id = (uint8_t)cpu, .flags = MADT_ENABLED };
		return madt_add(a, madt, &e, sizeof(e));
	}
	struct madt_x2apic e = { .type = MADT_X2APIC, .length = sizeof(e), .x2apic_id = cpu,
				 .flags = MADT_ENABLED, .uid = cpu };
	return madt_add(a, madt, &e, sizeof(e));
}

/* LINT1 of every CPU is the NMI input, as on every PC. */
static int madt_add_nmis(struct area *a, struct madt_header *madt, unsigned ncpus)
{
	struct madt_lapic_nmi nmi = { .type = MADT_LAPIC_NMI, .length = sizeof(nmi), .uid = MADT_ALL_CPUS_UID,
				      .flags = 0, .lint = LAPIC_LINT1 };
	if (madt_add(a, madt, &nmi, sizeof(nmi)) < 0)
		return -1;
	if (ncpus <= XAPIC_ID_LIMIT)
		return 0;
	struct madt_x2apic_nmi x2nmi = { .type = MADT_X2APIC_NMI, .length = sizeof(x2nmi),
					 .uid = MADT_ALL_CPUS_X2UID, .lint = LAPIC_LINT1 };
	return madt_add(a, madt, &x2nmi, sizeof(x2nmi));
}

static int madt_add_irqs(struct area *a, struct madt_header *madt, unsigned ncpus)
{
	struct madt_ioapic io = { .type = MADT_IOAPIC, .length = sizeof(io), .id = acpi_ioapic_id(ncpus),
				  .address = (uint32_t)IOAPIC_BASE, .gsi_base = 0 };
	struct madt_iso pit = { .type = MADT_ISO, .length = sizeof(pit), .source = ISA_IRQ_PIT,
				.gsi = GSI_PIT, .flags = INTI_EDGE | INTI_ACTIVE_HIGH };
	/*
	 * The SCI is not the ISA default (edge): the PM device holds the line
	 * high while an event is pending, and KVM's I/O APIC takes level 1 as
	 * asserted, so it is level-triggered and active-high.
	 */
	struct madt_iso sci = { .type = MADT_ISO, .length = sizeof(sci), .source = IRQ_ACPI_SCI,
				.gsi = IRQ_ACPI_SCI, .flags = INTI_LEVEL | INTI_ACTIVE_HIGH };

	if (madt_add(a, madt, &io, sizeof(io)) < 0 || madt_add(a, madt, &pit, sizeof(pit)) < 0)
		return -1;
	return madt_add(a, madt, &sci, sizeof(sci));
}

static int build_madt(struct area *a, unsigned ncpus, uint32_t *gpa)
{
	struct madt_header *madt = area_alloc(a, sizeof(*madt), 16, gpa);

	if (!madt)
		return -1;
	header_init(&madt->header, "APIC", sizeof(*madt), MADT_REVISION);
	madt->lapic_address = (uint32_t)LAPIC_BASE;
	/* PCAT_COMPAT: there are 8259s too, which the OS must mask. */
	madt->flags = MADT_PCAT_COMPAT;
	for (unsigned cpu = 0; cpu < ncpus; cpu++)
		if (madt_add_cpu(a, madt, cpu) < 0)
			return -1;
	if (madt_add_irqs(a, madt, ncpus) < 0 || madt_add_nmis(a, madt, ncpus) < 0)
		return -1;
	header_checksum(a, madt);
	return 0;
}

/* MCFG: one ECAM allocation for segment 0, buses 0-PCI_ECAM_BUS_END. */
struct mcfg_allocation {
	uint64_t base;
	uint16_t segment;
	uint8_t start_bus, end_bus;
	uint32_t reserved;
} PACKED;

struct acpi_mcfg {
	struct acpi_header header;
	uint64_t reserved;
	struct mcfg_allocation alloc[1];
} PACKED;
_Static_assert(sizeof(struct acpi_mcfg) == 60, "MCFG");
#define MCFG_REVISION 1

static int build_mcfg(struct area *a, uint64_t ecam_base, uint32_t *gpa)
{
	struct acpi_mcfg *m = area_alloc(a, sizeof(*m), 16, gpa);

	if (!m)
		return -1;
	header_init(&m->header, "MCFG", sizeof(*m), MCFG_REVISION);
	m->alloc[0] = (struct mcfg_allocation){ .base = ecam_base, .segment = 0, .start_bus = 0,
						.end_bus = PCI_ECAM_BUS_END };
	header_checksum(a, m);
	return 0;
}

#define XSDT_REVISION 1
#define RSDT_REVISION 1

/* The XSDT (64-bit entries) for current OSes, the RSDT for ACPI 1.0 ones. */
static int build_roots(struct area *a, const uint32_t *tables, unsigned n, uint32_t *xsdt_gpa,
		       uint32_t *rsdt_gpa)
{
	size_t xlen = sizeof(struct acpi_header) + 8 * n;
	size_t rlen = sizeof(struct acpi_header) + 4 * n;
	uint8_t *x = area_alloc(a, xlen, 16, xsdt_gpa);
	uint8_t *r = x ? area_alloc(a, rlen, 16, rsdt_gpa) : NULL;

	if (!r)
		return -1;
	header_init((struct acpi_header *)x, "XSDT", (uint32_t)xlen, XSDT_REVISION);
	header_init((struct acpi_header *)r, "RSDT", (uint32_t)rlen, RSDT_REVISION);
	for (unsigned i = 0; i < n; i++) {
		link_table(a, x, sizeof(struct acpi_header) + 8 * i, 8, tables[i]);
		link_table(a, r, sizeof(struct acpi_header) + 4 * i, 4, tables[i]);
	}
	header_checksum(a, x);
	header_checksum(a, r);
	return 0;
}

#define RSDP_REVISION 2

_Static_assert(sizeof(struct acpi_rsdp) == ACPI_RSDP_SIZE, "RSDP blob");

/* The RSDP's fields but its two checksums. */
static void rsdp_init(struct acpi_rsdp *rsdp, uint32_t xsdt, uint32_t rsdt)
{
	memset(rsdp, 0, sizeof(*rsdp));
	memcpy(rsdp->signature, "RSD PTR ", 8);
	memcpy(rsdp->oem_id, ACPI_OEM_ID, 6);
	rsdp->revision = RSDP_REVISION;
	rsdp->rsdt_address = rsdt;
	rsdp->length = sizeof(*rsdp);
	rsdp->xsdt_address = xsdt;
}

static int build_rsdp(const struct guest_memory *mem, uint32_t xsdt, uint32_t rsdt)
{
	struct acpi_rsdp *rsdp = mem_gpa_to_hva(mem, LAYOUT_RSDP, sizeof(*rsdp));

	if (!rsdp) {
		log_error("no guest RAM for the ACPI RSDP at 0x%llx", LAYOUT_RSDP);
		return -1;
	}
	rsdp_init(rsdp, xsdt, rsdt);
	rsdp->checksum = table_checksum(rsdp, RSDP_V1_LENGTH);
	rsdp->extended_checksum = table_checksum(rsdp, sizeof(*rsdp));
	return 0;
}

/*
 * The RSDP as its own blob, pointing into the tables blob. The ACPI 1.0
 * checksum goes first: the extended one covers its byte.
 */
static void build_rsdp_blob(struct fw_cfg_loader *l, uint8_t *blob, uint32_t xsdt, uint32_t rsdt)
{
	struct acpi_rsdp *rsdp = (struct acpi_rsdp *)blob;

	rsdp_init(rsdp, xsdt, rsdt);
	loader_allocate(l, ACPI_FILE_RSDP, RSDP_BLOB_ALIGN, LOADER_ZONE_FSEG);
	loader_add_pointer(l, ACPI_FILE_RSDP, ACPI_FILE_TABLES, offsetof(struct acpi_rsdp, rsdt_address), 4);
	loader_add_pointer(l, ACPI_FILE_RSDP, ACPI_FILE_TABLES, offsetof(struct acpi_rsdp, xsdt_address), 8);
	loader_add_checksum(l, ACPI_FILE_RSDP, offsetof(struct acpi_rsdp, checksum), 0, RSDP_V1_LENGTH);
	loader_add_checksum(l, ACPI_FILE_RSDP, offsetof(struct acpi_rsdp, extended_checksum), 0, sizeof(*rsdp));
}

/* Every table but the RSDP, into a; the roots' addresses in *xsdt and *rsdt. */
static int build_tables(struct area *a, const struct acpi_machine *m, uint32_t *xsdt, uint32_t *rsdt)
{
	uint32_t facs, dsdt, tables[3];

	if (m->ncpus == 0 || m->ncpus > ACPI_MAX_CPUS) {
		log_error("ACPI tables: unsupported vCPU count %u (1-%u)", m->ncpus, ACPI_MAX_CPUS);
		return -1;
	}
	if (build_facs(a, &facs) < 0 || build_dsdt(a, m, &dsdt) < 0 ||
	    build_fadt(a, facs, dsdt, &tables[0]) < 0 || build_madt(a, m->ncpus, &tables[1]) < 0 ||
	    build_mcfg(a, m->platform->ecam_base, &tables[2]) < 0 || build_roots(a, tables, 3, xsdt, rsdt) < 0)
		return -1;
	return 0;
}

void acpi_machine_of(struct vm *vm, struct acpi_machine *m)
{
	*m = (struct acpi_machine){
		.mem = &vm->mem,
		.platform = vm->platform,
		.ncpus = vm->ncpus,
		.devices = vm->devices,
	};
}

int acpi_build(const struct acpi_machine *m, uint64_t *rsdp_gpa)
{
	const struct guest_memory *mem = m->mem;
	struct area a = { .gpa = LAYOUT_ACPI_TABLES, .size = LAYOUT_ACPI_TABLES_MAX };
	uint32_t xsdt, rsdt;

	a.hva = mem_gpa_to_hva(mem, LAYOUT_ACPI_TABLES, LAYOUT_ACPI_TABLES_MAX);
	if (!a.hva) {
		log_error("no guest RAM for the ACPI tables at 0x%llx", LAYOUT_ACPI_TABLES);
		return -1;
	}
	memset(a.hva, 0, a.size);
	if (build_tables(&a, m, &xsdt, &rsdt) < 0 || build_rsdp(mem, xsdt, rsdt) < 0)
		return -1;
	*rsdp_gpa = LAYOUT_RSDP;
	return 0;
}

void acpi_blobs_free(struct acpi_blobs *b)
{
	free(b->tables);
	loader_free(&b->loader);
	memset(b, 0, sizeof(*b));
}

int acpi_build_blobs(const struct acpi_machine *m, struct acpi_blobs *out)
{
	struct area a = { .gpa = 0, .size = LAYOUT_ACPI_TABLES_MAX, .loader = &out->loader };
	uint32_t xsdt, rsdt;

	memset(out, 0, sizeof(*out));
	loader_init(&out->loader);
	a.hva = calloc(1, a.size);
	if (!a.hva)
		return -1;
	out->tables = a.hva;
	loader_allocate(&out->loader, ACPI_FILE_TABLES, TABLES_BLOB_ALIGN, LOADER_ZONE_HIGH);
	if (build_tables(&a, m, &xsdt, &rsdt) < 0)
		goto fail;
	build_rsdp_blob(&out->loader, out->rsdp, xsdt, rsdt);
	if (out->loader.failed)
		goto fail;
	out->tables_len = a.used;
	return 0;
fail:
	acpi_blobs_free(out);
	return -1;
}
