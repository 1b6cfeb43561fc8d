/*
 * ACPI tables for a legacy PC: RSDP, XSDT/RSDT, FADT (with FACS and DSDT)
 * and MADT, written into the firmware area of guest RAM so the kernel finds
 * them through boot_params.acpi_rsdp_addr or its scan of 0xE0000-0xFFFFF.
 *
 * Interrupt model the tables announce (devices must match it):
 *  - one I/O APIC, ID acpi_ioapic_id(ncpus), GSI base 0, IOAPIC_PINS pins;
 *  - ISA IRQ n is GSI n, except IRQ0 (PIT), which is GSI 2, edge/high
 *    (KVM's default routing sends GSI 0 to pin 0: the VM must route the
 *    PIT's GSI 0 to I/O APIC pin 2, as PC chipsets wire it);
 *  - the SCI is IRQ_ACPI_SCI = GSI 9, level-triggered, active-high: the
 *    PM device holds the line at 1 while an enabled event is pending;
 *  - the PM timer is 32 bits wide (FADT TMR_VAL_EXT set).
 */
#ifndef HYVE_ACPI_H
#define HYVE_ACPI_H

#include <stdbool.h>
#include <stdint.h>

#include "boot/fw_cfg_loader.h"
#include "core/memory.h"

struct platform;

/* Bounded by LAYOUT_ACPI_TABLES_MAX: each vCPU costs a MADT entry and a DSDT device. */
#define ACPI_MAX_CPUS 1024

/*
 * The I/O APIC ID used by both the MADT and the MP table: just above the
 * vCPUs' APIC IDs 0..ncpus-1 so the two never collide on an APIC bus.
 * With 255 or more vCPUs no free 8-bit ID is left, but such guests run in
 * x2APIC mode, where I/O APIC IDs no longer share a bus with CPUs.
 */
static inline uint8_t acpi_ioapic_id(unsigned ncpus)
{
	return ncpus < 0xFF ? (uint8_t)ncpus : 0xFE;
}

/*
 * What the tables describe: the platform (ECAM for the MCFG), the vCPUs,
 * and the devices, each of which writes its own DSDT entry through its
 * model's acpi_dsdt() (core/device.h). mem is where acpi_build() writes.
 */
struct device;
struct acpi_machine {
	const struct guest_memory *mem;
	const struct platform *platform;
	unsigned ncpus;
	struct device *devices; /* the VM's device list */
};

struct vm;
/* The machine of a VM, for acpi_build() and acpi_build_blobs(). */
void acpi_machine_of(struct vm *vm, struct acpi_machine *m);

/* Writes every table. *rsdp_gpa receives LAYOUT_RSDP. 0, or -1 after logging. */
int acpi_build(const struct acpi_machine *m, uint64_t *rsdp_gpa);

/*
 * The same tables for firmware, which places them itself (fw_cfg): every
 * table but the RSDP in one blob, the RSDP in another, their pointers
 * holding offsets into the tables blob and their checksums 0, and the
 * loader script that allocates both, patches the pointers and computes the
 * checksums. Placed at LAYOUT_ACPI_TABLES and LAYOUT_RSDP, the result is
 * byte for byte what acpi_build() writes.
 */
#define ACPI_FILE_TABLES "etc/acpi/tables"
#define ACPI_FILE_RSDP "etc/acpi/rsdp"
#define ACPI_RSDP_SIZE 36

struct acpi_blobs {
	uint8_t *tables;
	size_t tables_len;
	uint8_t rsdp[ACPI_RSDP_SIZE];
	struct fw_cfg_loader loader;
};

/* 0, or -1 after logging; acpi_blobs_free() releases what 0 gave. */
int acpi_build_blobs(const struct acpi_machine *m, struct acpi_blobs *out);
void acpi_blobs_free(struct acpi_blobs *b);

#endif
