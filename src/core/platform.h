/*
 * The platform a VM presents to its guest: where RAM below 4 GiB ends,
 * where ECAM and the PCI windows lie, and which chipset the host bridge
 * (0:0.0) and the LPC bridge claim to be. Chosen once per VM by the
 * `platform.layout` key (vm->platform) and read from there by every user
 * of the memory map; nothing here is mutable.
 *
 * - "q35" (the default for a new VM): Intel Q35/ICH9 ids (8086:29C0 host
 *   bridge with PCIEXBAR, 8086:2918 LPC with PMBASE/ACPI_CNTL), RAM below
 *   4 GiB up to 0xB0000000, ECAM at 0xB0000000, 32-bit PCI window
 *   0xC0000000-0xFBFFFFFF: what Debian's stock OVMF expects.
 * - "legacy": the layout of hyve before the Q35 identity (RAM up to
 *   0xC0000000, ECAM at 0xE0000000, window 0xC0000000-0xDFFFFFFF, ids
 *   1275:1275 and 1275:1276). A snapshot without the key was taken with it
 *   and restores with it.
 */
#ifndef HYVE_PLATFORM_H
#define HYVE_PLATFORM_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct kvm_cpuid2;

struct platform {
	const char *name;         /* the platform.layout value */
	bool q35;                 /* Q35/ICH9 ids and chipset registers */
	uint64_t lowmem_limit;    /* RAM below 4 GiB ends here at most */
	uint64_t ecam_base;       /* PCI_ECAM_SIZE bytes, buses 0-255 */
	uint64_t mmio32_base;     /* 32-bit PCI BAR window [base, end) */
	uint64_t mmio32_end;
	uint16_t hostbridge_vendor, hostbridge_device;
	uint16_t lpc_vendor, lpc_device;
};

#define PLATFORM_LAYOUT_KEY "platform.layout"

/*
 * The layout vm->cfg names; unset, "q35" for a new VM and "legacy" when
 * restoring a snapshot (which then predates the key). The choice is
 * written back into cfg so snapshots record it. NULL after logging.
 */
const struct platform *platform_select(struct config *cfg);
/* The layout of that name, or NULL. */
const struct platform *platform_find(const char *name);

/*
 * What the firmware learns about the address space from CPUID: the
 * vendor string of leaf 0x80000000, whether leaves 0x80000001/0x80000008
 * exist, the physical address width and 1 GiB page support.
 */
struct platform_cpu {
	char vendor[13];
	bool has_leaf_80000001, has_leaf_80000008;
	unsigned phys_bits;  /* leaf 0x80000008 EAX[7:0] */
	bool gb_pages;       /* leaf 0x80000001 EDX bit 26 */
};

/* Fills cpu from the CPUID table the vCPUs are given (KVM's supported set). */
void platform_cpu_from_cpuid(const struct kvm_cpuid2 *cpuid, struct platform_cpu *cpu);

/*
 * End (exclusive) of the 64-bit PCI window the DSDT announces for RAM
 * ending at ram_end (>= 4 GiB): it starts at PCI_MMIO64_BASE(ram_end),
 * where hyve places 64-bit BARs itself, and reaches the end of the window
 * OVMF computes from the same CPUID (a window at the top of the physical
 * address space when it trusts the CPU's address width and that window is
 * larger than the classic 32 GiB), so BARs either of them placed stay
 * inside a root bridge window. The legacy layout keeps the classic window.
 */
uint64_t platform_mmio64_end(const struct platform *p, uint64_t ram_end, const struct platform_cpu *cpu);

#endif
