/*
 * The host bridge at 0:0.0 ("-s 0,hostbridge"): a configuration header
 * only, class 06/00. Its IDs are not Intel's, so no chipset quirk of the
 * guest applies; `vendor` and `devid` options override them. The PCI bus
 * adds one at 0:0.0 when nothing else is configured there.
 *
 * With `pcie` it is a PCI Express root complex integrated endpoint: a PCI
 * Express capability and a 4 KiB configuration space, whose extended part
 * (offsets 0x100 and up) only ECAM reaches.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "core/options.h"
#include "core/vm.h"
#include "pci/pci.h"

/* Not Intel's IDs: no chipset quirk of the guest applies. */
static const struct option_decl hostbridge_options[] = {
	{ .name = "vendor", .type = OPTION_UINT, .def = "0x1275", .max = 0xFFFF, .help = "PCI vendor ID, 16-bit" },
	{ .name = "devid", .type = OPTION_UINT, .def = "0x1275", .max = 0xFFFF, .help = "PCI device ID, 16-bit" },
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

struct hostbridge {
	struct pci_function fn;
};

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
	struct hostbridge *s;
	uint16_t vendor = (uint16_t)dev_opt_u64(dev, "vendor"), devid = (uint16_t)dev_opt_u64(dev, "devid");
	bool pcie = dev_opt_bool(dev, "pcie");

	s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	if (pci_function_init(&s->fn, dev, vendor, devid, PCI_CLASS_BRIDGE, PCI_SUBCLASS_BRIDGE_HOST, 0) < 0) {
		free(s);
		return -1;
	}
	pci_set_subsystem(&s->fn, vendor, devid);
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

	if (version != 1) {
		log_error("%s: snapshot section version %u is not supported (1 is)", dev->id, version);
		return -1;
	}
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
