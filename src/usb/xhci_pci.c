/*
 * The xHCI controller as a PCI function:
 *
 *   -s SLOT,xhci[,tablet][,kbd]
 *
 * PCI 1b36:000d (Red Hat "QEMU XHCI Host Controller"), class 0x0C0330.
 * These IDs are bound by Linux's xhci-pci without any quirk, and by the
 * other stock drivers (Windows, the BSDs) as a generic xHCI. BAR0: the
 * registers (xhci.c) with the MSI-X table and PBA in its upper 4 KiB; one
 * MSI-X vector, INTx (pin A) when MSI-X is off. The tablet sits on USB 2
 * port 1, the keyboard on port 2 (port 1 when there is no tablet).
 *
 * One mutex guards the controller and its devices; input events take it
 * too (usb/usb.h).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "core/options.h"
#include "core/vm.h"
#include "pci/pci.h"
#include "snapshot/state.h"
#include "usb/usb.h"
#include "usb/xhci.h"

struct xhci_dev {
	struct pci_function fn;
	pthread_mutex_t lock;
	struct xhci *x;
};

/*
 * Interrupter 0 wants an interrupt (raise) or dropped its pending bit; true
 * when sent as MSI-X. The MSI-X attempt itself decides (one critical section
 * in the PCI layer): checking first and sending after lost the interrupt
 * when another vCPU turned MSI-X off in between. Otherwise INTx follows the
 * interrupter; the PCI layer keeps the pin low while MSI or MSI-X is on.
 */
static bool xhci_dev_irq(void *opaque, bool raise)
{
	struct xhci_dev *s = opaque;

	if (raise && pci_msix_notify(&s->fn, 0) == 0) {
		pci_intx_set(&s->fn, false);
		return true;
	}
	pci_intx_set(&s->fn, xhci_irq_level(s->x));
	return false;
}

static void xhci_dev_mmio(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	struct xhci_dev *s = opaque;

	pthread_mutex_lock(&s->lock);
	xhci_mmio(s->x, off, data, size, is_write);
	pthread_mutex_unlock(&s->lock);
	if (is_write)
		xhci_flush_devices(s->x);
}

/* Only the device names are options; anything else is refused before the VM starts. */
static int xhci_parse_options(struct config *cfg, const char *prefix, const char *opts)
{
	char *copy = strdup(opts), *save = NULL;
	char key[256];
	int rc = 0;

	if (!copy)
		return -1;
	for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "tablet") != 0 && strcmp(tok, "kbd") != 0) {
			log_error("%s: xhci: unknown option '%s' (devices: tablet, kbd)", prefix, tok);
			rc = -1;
			break;
		}
		snprintf(key, sizeof(key), "%s.%s", prefix, tok);
		rc = config_set(cfg, key, "true");
	}
	free(copy);
	return rc;
}

static const struct option_decl xhci_options[] = {
	{ .name = "tablet", .type = OPTION_BOOL, .def = "false", .help = "a USB tablet (absolute pointer)" },
	{ .name = "kbd", .type = OPTION_BOOL, .def = "false", .help = "a USB boot keyboard" },
	{ 0 },
};

static int attach_devices(struct device *dev, struct xhci_dev *s)
{
	unsigned port = 1;
	struct usb_device *d;

	if (dev_opt_bool(dev, "tablet")) {
		if (!(d = usb_hid_tablet_new(dev->vm)) || xhci_attach(s->x, port++, d) < 0)
			return -1;
	}
	if (dev_opt_bool(dev, "kbd")) {
		if (!(d = usb_hid_kbd_new(dev->vm)) || xhci_attach(s->x, port++, d) < 0)
			return -1;
	}
	return 0;
}

static void xhci_dev_destroy(struct device *dev)
{
	struct xhci_dev *s = dev->priv;

	if (!s)
		return;
	if (s->fn.dev)
		pci_function_destroy(&s->fn);
	xhci_free(s->x);
	pthread_mutex_destroy(&s->lock);
	free(s);
	dev->priv = NULL;
}

static int xhci_dev_create(struct device *dev)
{
	struct xhci_dev *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	dev->priv = s;
	pthread_mutex_init(&s->lock, NULL);
	s->x = xhci_new(&dev->vm->mem, &s->lock, xhci_dev_irq, s);
	if (!s->x || attach_devices(dev, s) < 0)
		goto fail;
	if (pci_function_init(&s->fn, dev, 0x1b36, 0x000d, 0x0C, 0x03, 0x30) < 0)
		goto fail;
	pci_set_subsystem(&s->fn, 0x1af4, 0x1100);
	pci_cfg_set8(&s->fn, 0x60, 0x30); /* SBRN: USB 3.0 */
	pci_cfg_set8(&s->fn, 0x61, 0x20); /* FLADJ: the default 60000-bit frame */
	if (pci_bar_add(&s->fn, 0, PCI_BAR_MEM64, XHCI_MMIO_SIZE, xhci_dev_mmio, s) < 0 ||
	    pci_msix_init(&s->fn, 1, 0, XHCI_MSIX_TABLE, XHCI_MSIX_PBA) < 0 || pci_intx_request(&s->fn) < 0)
		goto fail;
	return 0;
fail:
	xhci_dev_destroy(dev);
	return -1;
}

static void xhci_dev_reset(struct device *dev)
{
	struct xhci_dev *s = dev->priv;

	pci_function_reset(&s->fn);
	pthread_mutex_lock(&s->lock);
	xhci_reset(s->x);
	pthread_mutex_unlock(&s->lock);
}

static int xhci_dev_save(struct device *dev, struct state_writer *w)
{
	struct xhci_dev *s = dev->priv;

	pci_function_save(&s->fn, w);
	pthread_mutex_lock(&s->lock);
	xhci_save(s->x, w);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int xhci_dev_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	struct xhci_dev *s = dev->priv;
	int rc;

	(void)version;
	if (pci_function_restore(&s->fn, r) < 0)
		return -1;
	pthread_mutex_lock(&s->lock);
	rc = xhci_restore(s->x, r);
	pthread_mutex_unlock(&s->lock);
	xhci_flush_devices(s->x);
	return rc;
}

static struct device_model xhci_model = {
	.name = "xhci",
	.state_version = 1,
	.on_pci = true,
	.options = xhci_options,
	.parse_slot_options = xhci_parse_options,
	.create = xhci_dev_create,
	.reset = xhci_dev_reset,
	.save = xhci_dev_save,
	.restore = xhci_dev_restore,
	.destroy = xhci_dev_destroy,
};
DEVICE_MODEL(xhci_model);
