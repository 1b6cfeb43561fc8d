/*
 * The LPC (ISA) bridge function ("-s 31,lpc"), class 06/01. It is only
 * the PCI face of the legacy platform: the serial ports, RTC and ACPI
 * registers are platform devices at their fixed ports whatever slot (or
 * whether) the bridge is placed. One per VM.
 */
#include <stdlib.h>

#include "core/device.h"
#include "core/log.h"
#include "core/vm.h"
#include "pci/pci.h"

#define LPC_VENDOR 0x1275
#define LPC_DEVICE 0x1276

struct lpc {
	struct pci_function fn;
};

static struct device_model lpc_model;

static int lpc_create(struct device *dev)
{
	struct lpc *s;

	for (struct device *d = dev->vm->devices; d; d = d->next) {
		if (d->model == &lpc_model) {
			log_error("%s: there is already an LPC bridge at %s", dev->id, d->id);
			return -1;
		}
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	if (pci_function_init(&s->fn, dev, LPC_VENDOR, LPC_DEVICE, PCI_CLASS_BRIDGE, PCI_SUBCLASS_BRIDGE_ISA, 0) < 0) {
		free(s);
		return -1;
	}
	pci_set_subsystem(&s->fn, LPC_VENDOR, LPC_DEVICE);
	dev->priv = s;
	return 0;
}

static void lpc_reset(struct device *dev)
{
	struct lpc *s = dev->priv;

	pci_function_reset(&s->fn);
}

static void lpc_destroy(struct device *dev)
{
	struct lpc *s = dev->priv;

	if (!s)
		return;
	pci_function_destroy(&s->fn);
	free(s);
	dev->priv = NULL;
}

static int lpc_save(struct device *dev, struct state_writer *w)
{
	struct lpc *s = dev->priv;

	pci_function_save(&s->fn, w);
	return 0;
}

static int lpc_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	struct lpc *s = dev->priv;

	if (version != 1) {
		log_error("%s: snapshot section version %u is not supported (1 is)", dev->id, version);
		return -1;
	}
	return pci_function_restore(&s->fn, r);
}

static struct device_model lpc_model = {
	.name = "lpc",
	.state_version = 1,
	.on_pci = true,
	.create = lpc_create,
	.reset = lpc_reset,
	.save = lpc_save,
	.restore = lpc_restore,
	.destroy = lpc_destroy,
};
DEVICE_MODEL(lpc_model);
