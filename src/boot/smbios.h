/*
 * SMBIOS tables for firmware boot, offered through fw_cfg the way OVMF
 * reads them (its DetectSmbiosVersionLib and SmbiosPlatformDxe):
 * "etc/smbios/smbios-anchor" is an SMBIOS 3.0 entry point (24 bytes,
 * "_SM3_") whose version the firmware adopts and whose maximum table size
 * must equal the size of "etc/smbios/smbios-tables", the structures one
 * after the other, each with its strings, ending with type 127. The
 * firmware installs every structure with the handle given and publishes
 * its own entry point to the OS.
 *
 * What is described is what hyve knows to be true: hyve as system and
 * chassis maker and product; one processor package with the vCPUs as
 * single-threaded cores (the topology hyve's CPUID gives), its CPUID
 * signature and vendor; the guest's RAM as one memory device in one array,
 * mapped where the memory map puts it. No type 0 (BIOS information): the
 * firmware is not hyve's, and OVMF adds its own when none is given.
 */
#ifndef HYVE_SMBIOS_H
#define HYVE_SMBIOS_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct guest_memory;

#define SMBIOS_FILE_ANCHOR "etc/smbios/smbios-anchor"
#define SMBIOS_FILE_TABLES "etc/smbios/smbios-tables"
#define SMBIOS_ANCHOR_SIZE 24

struct smbios_machine {
	const struct guest_memory *mem;
	unsigned ncpus;
	uint32_t cpuid_signature; /* CPUID leaf 1 EAX */
	uint32_t cpuid_features;  /* CPUID leaf 1 EDX */
	char cpu_vendor[13];      /* CPUID leaf 0, "" when unknown */
};

struct smbios_blobs {
	uint8_t anchor[SMBIOS_ANCHOR_SIZE];
	uint8_t *tables; /* malloc'ed */
	size_t tables_len;
};

/* Builds both files; 0, or -1 (out of memory). */
int smbios_build(const struct smbios_machine *m, struct smbios_blobs *out);
void smbios_blobs_free(struct smbios_blobs *b);
/* The machine of a VM. */
void smbios_machine_of(struct vm *vm, struct smbios_machine *m);

#endif
