/*
 * The LPC (ISA) bridge function ("-s 31,lpc"), class 06/01, with the ids
 * of the VM's platform (core/platform.h). It is the PCI face of the
 * legacy platform: the serial ports, RTC and ACPI registers are platform
 * devices at their fixed ports whatever slot (or whether) the bridge is
 * placed. One per VM; firmware boot needs it at 0:1f.0 (dev/bootrom.c).
 *
 * On the q35 platform it is the ICH9 LPC bridge (8086:2918), whose
 * registers OVMF reads to find the ACPI PM block: PMBASE (0x40, bits 15:7
 * writable, bit 0 reads 1) and ACPI_CNTL (0x44: ACPI_EN and the SCI
 * select) come up as 0x601 and 0x80, "already enabled at 0x600", in every
 * boot mode, so OVMF keeps them and Linux's ICH quirk sees the block the
 * FADT announces. The PM ports stay at 0x600 whatever is written (a write
 * of another base is logged once). PIRQA-H_ROUT (0x60-0x63, 0x68-0x6B)
 * are writable and change nothing: interrupts follow the DSDT's _PRT.
 * RCBA (0xF0) reads 0, so drivers look for no chipset registers behind it.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "boot/layout.h"
#include "core/device.h"
#include "core/log.h"
#include "core/platform.h"
#include "core/vm.h"
#include "pci/pci.h"

/* ICH9 LPC registers (Intel I/O Controller Hub 9 datasheet). */
#define PMBASE 0x40
#define PMBASE_IO 0x1u           /* hard-wired: an I/O space base */
#define PMBASE_ADDR 0xFF80u      /* bits 15:7, a 128-byte block */
#define ACPI_CNTL 0x44
#define ACPI_CNTL_EN 0x80u
#define ACPI_CNTL_SCI_SEL 0x07u  /* 0 = IRQ 9 */
#define PIRQA_ROUT 0x60
#define PIRQE_ROUT 0x68
#define PIRQ_ROUT_COUNT 4        /* each of the two groups */
#define PIRQ_ROUT_DISABLED 0x80u /* IRQEN: routing off, the power-on value */
#define PIRQ_ROUT_WRITABLE 0x8Fu

struct lpc {
	struct pci_function fn;
	atomic_bool warned_pmbase;
};

static struct device_model lpc_model;

/* PMBASE moved: the PM block stays at the ports the FADT names; say so once. */
static void pmbase_written(struct pci_function *fn, unsigned off, unsigned size, uint32_t val)
{
	struct lpc *s = fn->opaque;
	uint32_t base;

	(void)val;
	if (off + size <= PMBASE || off >= PMBASE + 4)
		return;
	base = pci_cfg_get(fn, PMBASE, 4) & PMBASE_ADDR;
	if (base != PORT_ACPI_PM1A_EVT && !atomic_exchange(&s->warned_pmbase, true))
		log_warn("%s: PMBASE 0x%x is not supported; the ACPI PM block stays at 0x%x", fn->dev->id, base,
			 PORT_ACPI_PM1A_EVT);
}

/* The ICH9 registers of the file comment. */
static void add_ich9_registers(struct lpc *s)
{
	struct pci_function *fn = &s->fn;

	pci_cfg_set32(fn, PMBASE, PORT_ACPI_PM1A_EVT | PMBASE_IO);
	pci_cfg_set_wmask(fn, PMBASE, 4, PMBASE_ADDR);
	pci_cfg_set8(fn, ACPI_CNTL, ACPI_CNTL_EN);
	pci_cfg_set_wmask(fn, ACPI_CNTL, 1, ACPI_CNTL_EN | ACPI_CNTL_SCI_SEL);
	for (unsigned i = 0; i < PIRQ_ROUT_COUNT; i++) {
		pci_cfg_set8(fn, PIRQA_ROUT + i, PIRQ_ROUT_DISABLED);
		pci_cfg_set8(fn, PIRQE_ROUT + i, PIRQ_ROUT_DISABLED);
		pci_cfg_set_wmask(fn, PIRQA_ROUT + i, 1, PIRQ_ROUT_WRITABLE);
		pci_cfg_set_wmask(fn, PIRQE_ROUT + i, 1, PIRQ_ROUT_WRITABLE);
	}
	fn->opaque = s;
	fn->cfg_write = pmbase_written;
}

static int lpc_create(struct device *dev)
{
	const struct platform *p = dev->vm->platform;
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
	if (pci_function_init(&s->fn, dev, p->lpc_vendor, p->lpc_device, PCI_CLASS_BRIDGE, PCI_SUBCLASS_BRIDGE_ISA,
			      0) < 0) {
		free(s);
		return -1;
	}
	pci_set_subsystem(&s->fn, p->lpc_vendor, p->lpc_device);
	if (p->q35)
		add_ich9_registers(s);
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

	(void)version;
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
