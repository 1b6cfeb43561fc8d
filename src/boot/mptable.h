/*
 * Intel MultiProcessor Specification 1.4 tables, for guests booted with
 * ACPI disabled (Linux ignores them when the MADT is usable). The same
 * interrupt model as the MADT: ISA IRQ n on I/O APIC pin n, except IRQ0 on
 * pin 2; the 8259s behind LINT0 (ExtINT) and NMI on LINT1.
 *
 * The configuration table starts at LAYOUT_MPTABLE; the 16-byte floating
 * pointer takes the last 16 bytes of the area, so it lies in the last KiB
 * below 640 KiB, where OSes look for it.
 */
#ifndef HYVE_MPTABLE_H
#define HYVE_MPTABLE_H

#include "core/memory.h"

/* MP entries hold 8-bit APIC IDs, and 0xFF means "all". */
#define MPTABLE_MAX_CPUS 254

/* 0, or -1 after logging (e.g. too many vCPUs for LAYOUT_MPTABLE_MAX). */
int mptable_build(const struct guest_memory *mem, unsigned ncpus);

#endif
