/*
 * CPUID the guest sees: KVM's supported set, with a topology that is
 * consistent for ncpus single-threaded cores in one package, on both
 * Intel-style (leaves 4, 0xB) and AMD-style (0x80000008, 0x8000001E)
 * enumeration, so Linux counts the CPUs the MADT announces.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"
#include "vcpu.h"

#define CPUID_MAX_ENTRIES 256
#define CPUID1_ECX_HYPERVISOR (1u << 31)
#define CPUID1_EDX_HTT (1u << 28)
#define CPUID1_ECX_OSXSAVE (1u << 27)
#define CPUID7_ECX_OSPKE (1u << 4)
#define CPUID80000001_ECX_CMP_LEGACY (1u << 1)

struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));

	if (!c)
		return NULL;
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		log_error("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		free(c);
		return NULL;
	}
	return c;
}

/* Bits needed to number n things (0 for n == 1). */
static unsigned id_bits(unsigned n)
{
	unsigned bits = 0;

	while ((1u << bits) < n)
		bits++;
	return bits;
}

static void set_topology(struct kvm_cpuid_entry2 *e, unsigned id, unsigned ncpus)
{
	unsigned core_bits = id_bits(ncpus);

	switch (e->function) {
	case 1:
		e->ebx = (e->ebx & 0x0000ffff) | (id << 24) | ((ncpus > 1 ? ncpus : 1) << 16);
		e->ecx |= CPUID1_ECX_HYPERVISOR;
		if (ncpus > 1)
			e->edx |= CPUID1_EDX_HTT;
		else
			e->edx &= ~CPUID1_EDX_HTT;
		break;
	case 4: /* cores per package - 1 in EAX[31:26]; one thread per cache */
		if (e->eax & 0x1f)
			e->eax = (e->eax & 0x3ff) | ((ncpus - 1) << 26);
		break;
	case 0xb:
	case 0x1f:
		/* Level 0: SMT (1 thread), level 1: core (ncpus), then invalid. */
		e->edx = id;
		if (e->index == 0) {
			e->eax = 0;
			e->ebx = 1;
			e->ecx = (1u << 8) | 0;
		} else if (e->index == 1) {
			e->eax = core_bits;
			e->ebx = ncpus;
			e->ecx = (2u << 8) | 1;
		} else {
			e->eax = 0;
			e->ebx = 0;
			e->ecx = e->index;
		}
		break;
	case 0x80000001:
		if (ncpus > 1)
			e->ecx |= CPUID80000001_ECX_CMP_LEGACY;
		break;
	case 0x80000008:
		e->ecx = (e->ecx & ~0xf0ffu) | (core_bits << 12) | (ncpus - 1);
		break;
	case 0x8000001e:
		e->eax = id;
		e->ebx = id & 0xff; /* compute unit = core; threads per unit - 1 = 0 */
		e->ecx = 0;         /* node 0, one node */
		break;
	}
}

struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *supported, unsigned id, unsigned ncpus)
{
	size_t size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *c = malloc(size);

	if (!c)
		return NULL;
	memcpy(c, supported, size);
	for (unsigned i = 0; i < c->nent; i++)
		set_topology(&c->entries[i], id, ncpus);
	return c;
}

/*
 * Leaf 1's EBX holds APIC ID and counts, HTT and CmpLegacy follow the vCPU
 * count hyve chose, the hypervisor bit is hyve's, and OSXSAVE/OSPKE mirror
 * the guest OS's own CR4: none of them says what the host can do.
 */
struct cpuid_flags cpuid_feature_mask(uint32_t function)
{
	switch (function) {
	case 1:
		return (struct cpuid_flags){ 0, ~(CPUID1_ECX_HYPERVISOR | CPUID1_ECX_OSXSAVE), ~CPUID1_EDX_HTT };
	case 7:
		return (struct cpuid_flags){ ~0u, ~CPUID7_ECX_OSPKE, ~0u };
	case 0x80000001:
		return (struct cpuid_flags){ 0, ~CPUID80000001_ECX_CMP_LEGACY, ~0u };
	default:
		return (struct cpuid_flags){ 0, ~0u, ~0u };
	}
}
