#include "platform.h"

#include <linux/kvm.h>
#include <string.h>

#include "boot/layout.h"
#include "config.h"
#include "log.h"
#include "memory.h"
#include "options.h"

static const struct platform platforms[] = {
	{
		.name = "q35",
		.q35 = true,
		.lowmem_limit = 0xB0000000ULL,
		.ecam_base = 0xB0000000ULL, /* OVMF's PcdPciExpressBaseAddress, fixed in the image */
		.mmio32_base = 0xC0000000ULL,
		.mmio32_end = 0xFC000000ULL, /* what OVMF assigns on Q35; the I/O APIC and flash follow */
		.hostbridge_vendor = 0x8086, .hostbridge_device = 0x29C0,
		.lpc_vendor = 0x8086, .lpc_device = 0x2918,
	},
	{
		.name = "legacy",
		.lowmem_limit = 0xC0000000ULL,
		.ecam_base = 0xE0000000ULL,
		.mmio32_base = 0xC0000000ULL,
		.mmio32_end = 0xE0000000ULL,
		.hostbridge_vendor = 0x1275, .hostbridge_device = 0x1275,
		.lpc_vendor = 0x1275, .lpc_device = 0x1276,
	},
};

static const char *const layout_choices[] = { "q35", "legacy", NULL };

static const struct option_decl platform_options[] = {
	{ .name = PLATFORM_LAYOUT_KEY, .type = OPTION_ENUM, .choices = layout_choices,
	  .help = "memory map and chipset: q35 (Q35/ICH9 ids, RAM below 0xB0000000, ECAM at 0xB0000000) or legacy "
		  "(hyve's layout before q35; default: q35, legacy when restoring a snapshot without the key)" },
	{ 0 },
};
OPTIONS(platform_options)

const struct platform *platform_find(const char *name)
{
	for (size_t i = 0; i < sizeof(platforms) / sizeof(platforms[0]); i++)
		if (strcmp(platforms[i].name, name) == 0)
			return &platforms[i];
	return NULL;
}

const struct platform *platform_select(struct config *cfg)
{
	const char *name = opt_str(cfg, PLATFORM_LAYOUT_KEY);
	const struct platform *p;

	if (!name)
		name = opt_str(cfg, "snapshot.restore") ? "legacy" : "q35";
	p = platform_find(name);
	if (!p) {
		log_error("%s=%s: unknown platform layout (q35 or legacy)", PLATFORM_LAYOUT_KEY, name);
		return NULL;
	}
	if (config_set(cfg, PLATFORM_LAYOUT_KEY, p->name) < 0)
		return NULL;
	return p;
}

static const struct kvm_cpuid_entry2 *find_leaf(const struct kvm_cpuid2 *cpuid, uint32_t function)
{
	for (uint32_t i = 0; i < cpuid->nent; i++)
		if (cpuid->entries[i].function == function && cpuid->entries[i].index == 0)
			return &cpuid->entries[i];
	return NULL;
}

#define CPUID80000001_EDX_PDPE1GB (1u << 26)

void platform_cpu_from_cpuid(const struct kvm_cpuid2 *cpuid, struct platform_cpu *cpu)
{
	const struct kvm_cpuid_entry2 *e = find_leaf(cpuid, 0x80000000);
	uint32_t max = e ? e->eax : 0;

	memset(cpu, 0, sizeof(*cpu));
	if (e) {
		/* The firmware's order: EBX, EDX, ECX. */
		memcpy(cpu->vendor, &e->ebx, 4);
		memcpy(cpu->vendor + 4, &e->edx, 4);
		memcpy(cpu->vendor + 8, &e->ecx, 4);
	}
	e = max >= 0x80000001 ? find_leaf(cpuid, 0x80000001) : NULL;
	cpu->has_leaf_80000001 = e != NULL;
	cpu->gb_pages = e && (e->edx & CPUID80000001_EDX_PDPE1GB);
	e = max >= 0x80000008 ? find_leaf(cpuid, 0x80000008) : NULL;
	cpu->has_leaf_80000008 = e != NULL;
	cpu->phys_bits = e ? (e->eax & 0xFF) : 0;
}

/*
 * The physical address width OVMF believes, or 0 when it does not trust
 * CPUID (QEMU used to report 40 bits whatever the host had): 41 bits and
 * more are trusted, below that only Intel's usual 36/39 and AMD's 40.
 * Capped at 47 (no 5-level paging) and at 40 without 1 GiB pages.
 */
#define OVMF_MAX_PHYS_BITS 47
#define OVMF_NO_GB_PAGES_MAX_BITS 40
#define CPUID_DEFAULT_PHYS_BITS 36

static unsigned firmware_phys_bits(const struct platform_cpu *cpu)
{
	unsigned bits = cpu->has_leaf_80000008 ? cpu->phys_bits : CPUID_DEFAULT_PHYS_BITS;
	bool intel = strcmp(cpu->vendor, "GenuineIntel") == 0, amd = strcmp(cpu->vendor, "AuthenticAMD") == 0;
	bool trusted = bits >= 41 || (intel && (bits == 36 || bits == 39)) || (amd && bits == 40);

	if (!trusted)
		return 0;
	if (bits > OVMF_MAX_PHYS_BITS)
		bits = OVMF_MAX_PHYS_BITS;
	if (!cpu->gb_pages && bits > OVMF_NO_GB_PAGES_MAX_BITS)
		bits = OVMF_NO_GB_PAGES_MAX_BITS;
	return bits;
}

uint64_t platform_mmio64_end(const struct platform *p, uint64_t ram_end, const struct platform_cpu *cpu)
{
	uint64_t base = PCI_MMIO64_BASE(ram_end < MEM_4G ? MEM_4G : ram_end);
	unsigned bits = p->q35 ? firmware_phys_bits(cpu) : 0;
	uint64_t space, mmio;

	if (bits < 4)
		return base + PCI_MMIO64_SIZE;
	space = 1ULL << bits;
	mmio = 1ULL << (bits - 3);
	/* The firmware's dynamic window [space - mmio, space), when it is the larger one and fits. */
	if (PCI_MMIO64_SIZE < mmio && base + mmio < space)
		return space;
	return base + PCI_MMIO64_SIZE;
}
