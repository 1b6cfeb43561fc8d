/*
 * The host bridge at 0:0.0 ("-s 0,hostbridge"), class 06/00, with the ids
 * of the VM's platform (core/platform.h); `vendor` and `devid` override
 * them. The PCI bus adds one at 0:0.0 when nothing else is configured there.
 *
 * On the q35 platform it is the Q35 MCH (8086:29C0), which is how OVMF
 * recognises the platform, with the registers OVMF writes: PCIEXBAR
 * (0x60/0x64) stores what is written and reads 0xB0000001/0 from power-on,
 * matching where ECAM decodes; ECAM stays at the platform's base whatever
 * is written (a write enabling another base or size is logged once). PAM0-6
 * (0x90-0x96) are writable bytes with no effect (RAM below 1 MiB stays RAM;
 * OVMF's VBE shim sets them). Linux reads neither: it takes ECAM from the
 * MCFG table. Legacy-layout VMs keep hyve's old 1275:1275 header only.
 *
 * With `pcie` it is a PCI Express root complex integrated endpoint: a PCI
 * Express capability and a 4 KiB configuration space, whose extended part
 * (offsets 0x100 and up) only ECAM reaches.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "core/options.h"
#include "core/platform.h"
#include "core/vm.h"
#include "pci/pci.h"

/* Unset, the ids are the platform's (8086:29C0 on q35). */
static const struct option_decl hostbridge_options[] = {
	{ .name = "vendor", .type = OPTION_UINT, .max = 0xFFFF, .help = "PCI vendor ID, 16-bit" },
	{ .name = "devid", .type = OPTION_UINT, .max = 0xFFFF, .help = "PCI device ID, 16-bit" },
	{ .name = "pcie", .type = OPTION_BOOL, .def = "false",
	  .help = "a PCI Express root complex integrated endpoint (extended configuration space)" },
	{ 0 },
};

/* PCI Express capability, version 2: 60 bytes with the ID and next pointer. */
#define PCIE_CAP_BODY_LEN 58
#define PCIE_CAP_VERSION 2
#define PCIE_TYPE_RC_INTEGRATED_EP 9
#define PCIE_DEVCTL 0x08   /* from the capability start */
#define PCIE_DEVCTL2 0x28

/* Q35 MCH registers (Intel 3 Series Express Chipset datasheet). */
#define PCIEXBAR 0x60          /* low dword; the high one at 0x64 holds base bits 35:32 */
#define PCIEXBAR_HI 0x64
#define PCIEXBAR_EN 0x1u
#define PCIEXBAR_LENGTH 0x6u   /* bits 2:1; 00 = 256 MiB, buses 0-255 */
#define PCIEXBAR_BASE 0xFC000000u /* bits 31:26 of the base */
#define PCIEXBAR_HI_BASE 0xFu  /* bits 35:32 of the base */
#define PAM0 0x90
#define PAM_COUNT 7
/* Capabilities (`pcie`) go above the registers, in 0xA0-0xDF, which hyve does not implement. */
#define Q35_CAP_START 0xA0

struct hostbridge {
	struct pci_function fn;
	uint64_t ecam_base;        /* where ECAM decodes (the platform's) */
	atomic_bool warned_pciexbar;
};

/*
 * The guest moved or resized ECAM through PCIEXBAR: hyve keeps decoding
 * it at the platform's base (firmware and tables agree on that), so say
 * once that the new value has no effect.
 */
static void pciexbar_written(struct pci_function *fn, unsigned off, unsigned size, uint32_t val)
{
	struct hostbridge *s = fn->opaque;
	uint32_t lo, hi;

	(void)val;
	if (off + size <= PCIEXBAR || off >= PCIEXBAR_HI + 4)
		return;
	lo = pci_cfg_get(fn, PCIEXBAR, 4);
	hi = pci_cfg_get(fn, PCIEXBAR_HI, 4);
	if (!(lo & PCIEXBAR_EN))
		return;
	if ((lo & PCIEXBAR_LENGTH) == 0 && ((uint64_t)hi << 32 | (lo & PCIEXBAR_BASE)) == s->ecam_base)
		return;
	if (!atomic_exchange(&s->warned_pciexbar, true))
		log_warn("%s: PCIEXBAR 0x%08x%08x asks for another ECAM base or size, which is not supported; "
			 "ECAM stays at 0x%llx", fn->dev->id, hi, lo, (unsigned long long)s->ecam_base);
}

/* The Q35 MCH registers OVMF programs; see the file comment. */
static void add_q35_registers(struct hostbridge *s, uint64_t ecam_base)
{
	struct pci_function *fn = &s->fn;

	s->ecam_base = ecam_base;
	pci_cfg_set32(fn, PCIEXBAR, (uint32_t)ecam_base | PCIEXBAR_EN);
	pci_cfg_set32(fn, PCIEXBAR_HI, (uint32_t)(ecam_base >> 32));
	pci_cfg_set_wmask(fn, PCIEXBAR, 4, PCIEXBAR_BASE | PCIEXBAR_LENGTH | PCIEXBAR_EN);
	pci_cfg_set_wmask(fn, PCIEXBAR_HI, 4, PCIEXBAR_HI_BASE);
	for (unsigned i = 0; i < PAM_COUNT; i++)
		pci_cfg_set_wmask(fn, PAM0 + i, 1, 0xFF);
	fn->opaque = s;
	fn->cfg_write = pciexbar_written;
	fn->cap_next = Q35_CAP_START;
}

/* PCI Express capability of a root complex integrated endpoint; 0 or -1. */
static int add_pcie(struct pci_function *fn)
{
	uint8_t body[PCIE_CAP_BODY_LEN] = { PCIE_CAP_VERSION | PCIE_TYPE_RC_INTEGRATED_EP << 4 };
	int cap;

	pci_function_set_extended(fn);
	cap = pci_cap_add(fn, PCI_CAP_ID_EXP, body, sizeof(body));
	if (cap < 0)
		return -1;
	/* Device control (payload sizes, error reporting...) is the guest's to set; it changes nothing here. */
	pci_cfg_set_wmask(fn, (unsigned)cap + PCIE_DEVCTL, 2, 0x7FFF);
	pci_cfg_set_wmask(fn, (unsigned)cap + PCIE_DEVCTL2, 2, 0xFFFF);
	return 0;
}

static int hostbridge_create(struct device *dev)
{
	const struct platform *p = dev->vm->platform;
	struct hostbridge *s;
	uint16_t vendor = dev_opt_is_set(dev, "vendor") ? (uint16_t)dev_opt_u64(dev, "vendor") : p->hostbridge_vendor;
	uint16_t devid = dev_opt_is_set(dev, "devid") ? (uint16_t)dev_opt_u64(dev, "devid") : p->hostbridge_device;
	bool pcie = dev_opt_bool(dev, "pcie");

	s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	if (pci_function_init(&s->fn, dev, vendor, devid, PCI_CLASS_BRIDGE, PCI_SUBCLASS_BRIDGE_HOST, 0) < 0) {
		free(s);
		return -1;
	}
	pci_set_subsystem(&s->fn, vendor, devid);
	if (p->q35)
		add_q35_registers(s, p->ecam_base);
	if (pcie && add_pcie(&s->fn) < 0) {
		pci_function_destroy(&s->fn);
		free(s);
		return -1;
	}
	dev->priv = s;
	return 0;
}

static void hostbridge_reset(struct device *dev)
{
	struct hostbridge *s = dev->priv;

	pci_function_reset(&s->fn);
}

static void hostbridge_destroy(struct device *dev)
{
	struct hostbridge *s = dev->priv;

	if (!s)
		return;
	pci_function_destroy(&s->fn);
	free(s);
	dev->priv = NULL;
}

static int hostbridge_save(struct device *dev, struct state_writer *w)
{
	struct hostbridge *s = dev->priv;

	pci_function_save(&s->fn, w);
	return 0;
}

static int hostbridge_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	struct hostbridge *s = dev->priv;

	(void)version;
	return pci_function_restore(&s->fn, r);
}

static struct device_model hostbridge_model = {
	.name = "hostbridge",
	.state_version = 1,
	.on_pci = true,
	.options = hostbridge_options,
	.create = hostbridge_create,
	.reset = hostbridge_reset,
	.save = hostbridge_save,
	.restore = hostbridge_restore,
	.destroy = hostbridge_destroy,
};
DEVICE_MODEL(hostbridge_model);
