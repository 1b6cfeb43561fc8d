/*
 * ACPI fixed hardware ("acpi-pm"), the one instance "platform.acpi-pm":
 * the PM1a event block (status and enable), the PM1a control block, the
 * 32-bit PM timer and the reset control register, at the ports the FADT
 * announces (boot/layout.h).
 *
 * The FADT has no SMI command port, so ACPI is always on and SCI_EN reads
 * as 1. A sleep request for S5 (the DSDT's \_S5 type, or type 0 as firmware
 * writes it) powers the VM off; the reset register's
 * RST_CPU reboots it. The SCI (level) is high while an enabled status bit
 * is set. TMR_STS (timer carry) is never raised: no guest we target enables
 * it, and it would need a timer of its own.
 */
#include "dev/acpi_pm.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "boot/aml.h"
#include "boot/layout.h"
#include "core/device.h"
#include "core/log.h"
#include "core/vm.h"
#include "snapshot/state.h"

#define DEVICE_ID "platform.acpi-pm"
#define PM_TIMER_HZ 3579545ULL
#define NS_PER_SEC 1000000000ULL

/* PM1 status and enable bits. */
#define PM1_TMR 0x0001
#define PM1_BM_STS 0x0010
#define PM1_GBL 0x0020
#define PM1_PWRBTN 0x0100
#define PM1_SLPBTN 0x0200
#define PM1_RTC 0x0400
#define PM1_PCIEXP_WAKE 0x4000
#define PM1_WAK_STS 0x8000
#define PM1_STS_MASK (PM1_TMR | PM1_BM_STS | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC | PM1_PCIEXP_WAKE | PM1_WAK_STS)
#define PM1_EN_MASK (PM1_TMR | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC | PM1_PCIEXP_WAKE)
#define PM1_SCI_SOURCES (PM1_TMR | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC)

/* PM1 control bits. */
#define CNT_SCI_EN 0x0001
#define CNT_KEPT 0x1C03 /* SCI_EN, BM_RLD, SLP_TYP; GBL_RLS and SLP_EN are write-only */
#define CNT_SLP_TYP_SHIFT 10
#define CNT_SLP_EN 0x2000

/* Reset control register bits. */
#define RST_SYS 0x02
#define RST_CPU 0x04
#define RST_FULL 0x08

struct acpi_pm {
	pthread_mutex_t lock; /* vCPU threads (ports) and the control socket (power button) */
	struct vm *vm;
	uint16_t sts, en, cnt;
	uint8_t rst;
	uint32_t tmr_bias; /* added to the clock's count, so a restored timer carries on */
	bool sci_level;
	bool warned_sleep;
};

static struct device_model acpi_pm_model;

static uint32_t clock_ticks(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* Split so the product cannot overflow however long the host has been up. */
	return (uint32_t)((uint64_t)ts.tv_sec * PM_TIMER_HZ + (uint64_t)ts.tv_nsec * PM_TIMER_HZ / NS_PER_SEC);
}

static uint32_t timer_value(const struct acpi_pm *s)
{
	return clock_ticks() + s->tmr_bias;
}

static void update_sci(struct acpi_pm *s)
{
	bool level = (s->sts & s->en & PM1_SCI_SOURCES) != 0;

	if (level == s->sci_level)
		return;
	s->sci_level = level;
	vm_set_irq(s->vm, IRQ_ACPI_SCI, level);
}

/*
 * Returns the exit status the request means, or -1 when it is ignored.
 * Soft-off is the \_S5 value the DSDT announces (what an OS writes) or
 * 0, which firmware writes without reading the DSDT: OVMF's shutdown on
 * Q35 sets SLP_EN with SLP_TYP 0 (QEMU's own DSDTs announce 0 for S5).
 * Nothing else means S0 here, as the DSDT has no other sleep state.
 */
static int sleep_request(struct acpi_pm *s, unsigned slp_typ)
{
	if (slp_typ == ACPI_S5_SLP_TYP || slp_typ == FIRMWARE_S5_SLP_TYP)
		return HYVE_EXIT_POWEROFF;
	if (!s->warned_sleep)
		log_warn("acpi-pm: the guest asked for sleep type %u, which is not supported; ignored", slp_typ);
	s->warned_sleep = true;
	return -1;
}

/* PM1a_EVT: status (write 1 to clear) then enable, 16 bits each, any access width. */
static void evt_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct acpi_pm *s = opaque;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < size; i++) {
		unsigned byte = (unsigned)(offset + i);
		unsigned shift = (byte & 1) * 8;
		uint16_t *reg = byte < 2 ? &s->sts : &s->en;
		if (!is_write)
			data[i] = (uint8_t)(*reg >> shift);
		else if (byte < 2)
			s->sts &= (uint16_t)~(data[i] << shift);
		else
			s->en = (uint16_t)((s->en & ~(0xFF << shift)) | (data[i] << shift)) & PM1_EN_MASK;
	}
	update_sci(s);
	pthread_mutex_unlock(&s->lock);
}

/* PM1a_CNT. SLP_TYP and SLP_EN share the high byte, so a byte write can request sleep. */
static void cnt_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct acpi_pm *s = opaque;
	int exit_status = -1;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < size; i++) {
		unsigned shift = (unsigned)((offset + i) & 1) * 8;
		uint16_t v = (uint16_t)(data[i] << shift);
		if (!is_write) {
			data[i] = (uint8_t)((s->cnt | CNT_SCI_EN) >> shift);
			continue;
		}
		s->cnt = (uint16_t)((s->cnt & ~(0xFF << shift)) | v) & CNT_KEPT;
		if (v & CNT_SLP_EN)
			exit_status = sleep_request(s, (v >> CNT_SLP_TYP_SHIFT) & 7);
	}
	pthread_mutex_unlock(&s->lock);
	/* Outside our lock: ending the VM takes the VM's lock and kicks every vCPU. */
	if (exit_status >= 0)
		vm_request_exit(s->vm, exit_status);
}

/* PM_TMR: read-only; one sample per access so a 32-bit read is consistent. */
static void tmr_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct acpi_pm *s = opaque;
	uint32_t v;

	if (is_write)
		return;
	pthread_mutex_lock(&s->lock);
	v = timer_value(s);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < size; i++)
		data[i] = (uint8_t)(v >> (8 * ((offset + i) & 3)));
}

static void reset_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct acpi_pm *s = opaque;

	(void)offset;
	(void)size;
	pthread_mutex_lock(&s->lock);
	if (is_write)
		s->rst = data[0] & (RST_SYS | RST_FULL); /* RST_CPU is a self-clearing trigger */
	else
		data[0] = s->rst;
	pthread_mutex_unlock(&s->lock);
	if (is_write && (data[0] & RST_CPU))
		vm_request_reset(s->vm);
}

void acpi_pm_power_button(struct vm *vm)
{
	struct device *dev = device_find(vm, DEVICE_ID);
	struct acpi_pm *s = dev ? dev->priv : NULL;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->sts |= PM1_PWRBTN;
	update_sci(s);
	pthread_mutex_unlock(&s->lock);
}

/* ---- life cycle ---- */

static void acpi_pm_reset(struct device *dev)
{
	struct acpi_pm *s = dev->priv;

	pthread_mutex_lock(&s->lock);
	s->sts = s->en = s->cnt = 0;
	s->rst = 0;
	update_sci(s);
	pthread_mutex_unlock(&s->lock);
}

static const struct iobus_claim regions[] = {
	{ PORT_ACPI_PM1A_EVT, 4, evt_io },
	{ PORT_ACPI_PM1A_CNT, 2, cnt_io },
	{ PORT_ACPI_PM_TMR, 4, tmr_io },
	{ PORT_RESET, 1, reset_io },
};
#define N_REGIONS (sizeof(regions) / sizeof(regions[0]))

static int acpi_pm_create(struct device *dev)
{
	struct acpi_pm *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	pthread_mutex_init(&s->lock, NULL);
	s->vm = dev->vm;
	if (iobus_register_all(&dev->vm->pio, regions, N_REGIONS, s) < 0) {
		pthread_mutex_destroy(&s->lock);
		free(s);
		return -1;
	}
	dev->priv = s;
	return 0;
}

static void acpi_pm_destroy(struct device *dev)
{
	struct acpi_pm *s = dev->priv;

	if (!s)
		return;
	iobus_unregister_all(&dev->vm->pio, regions, N_REGIONS);
	pthread_mutex_destroy(&s->lock);
	free(s);
	dev->priv = NULL;
}

static int acpi_pm_attach(struct vm *vm)
{
	return device_create(vm, &acpi_pm_model, DEVICE_ID, DEVICE_ID) ? 0 : -1;
}

/* ---- snapshot ---- */

static int acpi_pm_save(struct device *dev, struct state_writer *w)
{
	struct acpi_pm *s = dev->priv;

	pthread_mutex_lock(&s->lock);
	state_put_u64(w, "pm1_sts", s->sts);
	state_put_u64(w, "pm1_en", s->en);
	state_put_u64(w, "pm1_cnt", s->cnt);
	state_put_u64(w, "reset", s->rst);
	state_put_u64(w, "pm_tmr", timer_value(s));
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int acpi_pm_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	(void)version;
	struct acpi_pm *s = dev->priv;
	uint64_t sts, en, cnt, rst, tmr;

	if (state_get_u64(r, "pm1_sts", &sts) < 0 || state_get_u64(r, "pm1_en", &en) < 0 ||
	    state_get_u64(r, "pm1_cnt", &cnt) < 0) {
		log_error("acpi-pm: snapshot section lacks pm1_sts, pm1_en or pm1_cnt");
		return -1;
	}
	pthread_mutex_lock(&s->lock);
	s->sts = (uint16_t)sts & PM1_STS_MASK;
	s->en = (uint16_t)en & PM1_EN_MASK;
	s->cnt = (uint16_t)cnt & CNT_KEPT;
	s->rst = state_get_u64(r, "reset", &rst) == 0 ? (uint8_t)rst & (RST_SYS | RST_FULL) : 0;
	/* Without a saved count the timer just keeps the host's; both are valid free-running values. */
	if (state_get_u64(r, "pm_tmr", &tmr) == 0)
		s->tmr_bias = (uint32_t)tmr - clock_ticks();
	update_sci(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/*
 * \_S5 (SLP_TYPa, SLP_TYPb, two reserved bytes): the PM1_CNT sleep type
 * this device takes as soft-off, which is how the OS powers the VM off.
 * The fixed registers themselves are the FADT's.
 */
static void acpi_pm_acpi_dsdt(struct device *dev, struct aml_buf *b)
{
	(void)dev;
	aml_name(b, "\\_S5");
	size_t pkg = aml_package_begin(b, 4);
	aml_integer(b, ACPI_S5_SLP_TYP);
	aml_integer(b, ACPI_S5_SLP_TYP);
	aml_integer(b, 0);
	aml_integer(b, 0);
	aml_end(b, pkg);
}

static struct device_model acpi_pm_model = {
	.name = "acpi-pm",
	.state_version = 1,
	.attach_order = 10,
	.attach = acpi_pm_attach,
	.create = acpi_pm_create,
	.reset = acpi_pm_reset,
	.save = acpi_pm_save,
	.restore = acpi_pm_restore,
	.destroy = acpi_pm_destroy,
	.acpi_dsdt = acpi_pm_acpi_dsdt,
};
DEVICE_MODEL(acpi_pm_model);
