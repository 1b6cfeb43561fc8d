#include "mptable.h"

#include <stddef.h>
#include <string.h>

#include "acpi.h"
#include "checksum.h"
#include "core/log.h"
#include "layout.h"

#define PACKED __attribute__((packed))

#define MP_SPEC_REV 4

_Static_assert((LAYOUT_MPTABLE + LAYOUT_MPTABLE_MAX) % 16 == 0, "the floating pointer must be 16-byte aligned");

struct mpf {
	char signature[4];
	uint32_t config_address;
	uint8_t length; /* in 16-byte units */
	uint8_t spec_rev;
	uint8_t checksum;
	uint8_t features[5]; /* all 0: a configuration table exists; virtual-wire mode, no IMCR */
} PACKED;
_Static_assert(sizeof(struct mpf) == 16, "MP floating pointer");

struct mpc_header {
	char signature[4];
	uint16_t length;
	uint8_t spec_rev;
	uint8_t checksum;
	char oem_id[8];
	char product_id[12];
	uint32_t oem_table;
	uint16_t oem_table_size;
	uint16_t entry_count;
	uint32_t lapic_address;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} PACKED;
_Static_assert(sizeof(struct mpc_header) == 44, "MP configuration table header");

enum mpc_type { MPC_PROCESSOR = 0, MPC_BUS = 1, MPC_IOAPIC = 2, MPC_IOINT = 3, MPC_LOCALINT = 4 };

struct mpc_processor {
	uint8_t type;
	uint8_t apic_id;
	uint8_t apic_version;
	uint8_t flags;
	uint32_t signature;
	uint32_t features;
	uint32_t reserved[2];
} PACKED;
_Static_assert(sizeof(struct mpc_processor) == 20, "MP processor entry");

struct mpc_bus {
	uint8_t type;
	uint8_t id;
	char bus_type[6];
} PACKED;

struct mpc_ioapic {
	uint8_t type;
	uint8_t id;
	uint8_t version;
	uint8_t flags;
	uint32_t address;
} PACKED;

/* Shared layout of I/O and local interrupt assignment entries. */
struct mpc_int {
	uint8_t type;
	uint8_t int_type;
	uint16_t flags;
	uint8_t src_bus;
	uint8_t src_irq;
	uint8_t dst_id;
	uint8_t dst_pin;
} PACKED;

#define CPU_ENABLED 0x1
#define CPU_BSP 0x2
/* Family 6, and CPUID.1:EDX with FPU and APIC: what the OS expects of an APIC system. */
#define CPU_SIGNATURE 0x600
#define CPU_FEATURES ((1u << 0) | (1u << 9))
/* The versions KVM's local and I/O APICs report. */
#define LAPIC_VERSION 0x14
#define IOAPIC_VERSION 0x11
#define IOAPIC_ENABLED 0x1

#define ISA_BUS_ID 0
#define ISA_IRQS 16
#define ISA_IRQ_PIT 0
#define ISA_IRQ_CASCADE 2
#define PIT_PIN 2
#define ALL_LAPICS 0xFF

enum mpc_int_type { INT_VECTORED = 0, INT_NMI = 1, INT_EXTINT = 3 };
/* Polarity in bits 1:0, trigger mode in bits 3:2; 0 conforms to the bus. */
#define INT_CONFORMS 0x0
#define INT_EDGE_HIGH 0x5
#define INT_LEVEL_HIGH 0xD

/* ISA IRQs with I/O APIC entries: every one but the cascade, whose pin the PIT takes. */
#define IOINT_ENTRIES (ISA_IRQS - 1)
#define LOCALINT_ENTRIES 2

struct cursor {
	uint8_t *p;
	uint16_t entries;
};

static void put(struct cursor *c, const void *entry, size_t len)
{
	memcpy(c->p, entry, len);
	c->p += len;
	c->entries++;
}

static size_t config_size(unsigned ncpus)
{
	return sizeof(struct mpc_header) + ncpus * sizeof(struct mpc_processor) + sizeof(struct mpc_bus) +
	       sizeof(struct mpc_ioapic) + (IOINT_ENTRIES + LOCALINT_ENTRIES) * sizeof(struct mpc_int);
}

static void put_cpus(struct cursor *c, unsigned ncpus)
{
	for (unsigned i = 0; i < ncpus; i++) {
		struct mpc_processor e = {
			.type = MPC_PROCESSOR,
			.apic_id = (uint8_t)i,
			.apic_version = LAPIC_VERSION,
			.flags = CPU_ENABLED | (i == 0 ? CPU_BSP : 0),
			.signature = CPU_SIGNATURE,
			.features = CPU_FEATURES,
		};
		put(c, &e, sizeof(e));
	}
}

static uint16_t isa_irq_flags(unsigned irq)
{
	if (irq == ISA_IRQ_PIT)
		return INT_EDGE_HIGH;
	/* Must agree with the MADT override: the PM device drives the SCI level-high. */
	if (irq == IRQ_ACPI_SCI)
		return INT_LEVEL_HIGH;
	return INT_CONFORMS;
}

static void put_irqs(struct cursor *c, uint8_t ioapic_id)
{
	struct mpc_bus bus = { .type = MPC_BUS, .id = ISA_BUS_ID };
	struct mpc_ioapic ioapic = { .type = MPC_IOAPIC, .id = ioapic_id, .version = IOAPIC_VERSION,
				     .flags = IOAPIC_ENABLED, .address = (uint32_t)IOAPIC_BASE };

	memcpy(bus.bus_type, "ISA   ", 6);
	put(c, &bus, sizeof(bus));
	put(c, &ioapic, sizeof(ioapic));
	for (unsigned irq = 0; irq < ISA_IRQS; irq++) {
		if (irq == ISA_IRQ_CASCADE)
			continue;
		struct mpc_int e = { .type = MPC_IOINT, .int_type = INT_VECTORED, .flags = isa_irq_flags(irq),
				     .src_bus = ISA_BUS_ID, .src_irq = (uint8_t)irq, .dst_id = ioapic_id,
				     .dst_pin = (uint8_t)(irq == ISA_IRQ_PIT ? PIT_PIN : irq) };
		put(c, &e, sizeof(e));
	}
	/* The 8259s reach every CPU through LINT0; LINT1 is NMI. */
	struct mpc_int extint = { .type = MPC_LOCALINT, .int_type = INT_EXTINT, .src_bus = ISA_BUS_ID,
				  .dst_id = ALL_LAPICS, .dst_pin = 0 };
	struct mpc_int nmi = { .type = MPC_LOCALINT, .int_type = INT_NMI, .src_bus = ISA_BUS_ID,
			       .dst_id = ALL_LAPICS, .dst_pin = 1 };
	put(c, &extint, sizeof(extint));
	put(c, &nmi, sizeof(nmi));
}

static void put_header(uint8_t *table, size_t len, uint16_t entries)
{
	struct mpc_header h = {
		.length = (uint16_t)len,
		.spec_rev = MP_SPEC_REV,
		.entry_count = entries,
		.lapic_address = (uint32_t)LAPIC_BASE,
	};

	memcpy(h.signature, "PCMP", 4);
	memcpy(h.oem_id, "HYVE    ", 8);
	memcpy(h.product_id, "HYVE        ", 12);
	memcpy(table, &h, sizeof(h));
	table[offsetof(struct mpc_header, checksum)] = table_checksum(table, len);
}

static void put_floating_pointer(uint8_t *p, uint32_t config_gpa)
{
	struct mpf f = { .config_address = config_gpa, .length = 1, .spec_rev = MP_SPEC_REV };

	memcpy(f.signature, "_MP_", 4);
	f.checksum = table_checksum(&f, sizeof(f));
	memcpy(p, &f, sizeof(f));
}

int mptable_build(const struct guest_memory *mem, unsigned ncpus)
{
	size_t avail = LAYOUT_MPTABLE_MAX - sizeof(struct mpf);
	size_t len = config_size(ncpus);
	uint8_t *area = mem_gpa_to_hva(mem, LAYOUT_MPTABLE, LAYOUT_MPTABLE_MAX);

	if (ncpus == 0 || ncpus > MPTABLE_MAX_CPUS) {
		log_error("MP table: unsupported vCPU count %u (1-%u)", ncpus, MPTABLE_MAX_CPUS);
		return -1;
	}
	if (len > avail) {
		log_error("MP table for %u vCPUs needs %zu bytes, only %zu fit at 0x%llx", ncpus, len, avail,
			  LAYOUT_MPTABLE);
		return -1;
	}
	if (!area) {
		log_error("no guest RAM for the MP table at 0x%llx", LAYOUT_MPTABLE);
		return -1;
	}
	memset(area, 0, LAYOUT_MPTABLE_MAX);
	struct cursor c = { .p = area + sizeof(struct mpc_header) };
	put_cpus(&c, ncpus);
	put_irqs(&c, acpi_ioapic_id(ncpus));
	put_header(area, len, c.entries);
	put_floating_pointer(area + avail, (uint32_t)LAYOUT_MPTABLE);
	return 0;
}
