/*
 * 16550A UART ("uart"): com1..com4 on the LPC bus, each backed by a chardev.
 *
 * Transmission is instantaneous: a byte written to THR goes to the backend
 * at once, so THR and the transmitter are always empty by the time the
 * guest looks again (LSR.THRE and LSR.TEMT read 1). Reception goes through
 * a real 16-byte FIFO (1 byte in 16450 mode); backend input is paused while
 * it is full, so nothing typed or pasted is lost.
 *
 * The IRQ line is driven to "an interrupt is pending && MCR.OUT2", and only
 * on changes, so each new interrupt after the guest consumed the previous
 * one gives the edge-triggered ISA line a fresh rising edge.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/aml.h"
#include "core/chardev.h"
#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "core/options.h"
#include "core/vm.h"
#include "snapshot/state.h"

#define UART_NREGS 8
#define FIFO_SIZE 16

/* Register offsets. */
enum { REG_DATA, REG_IER, REG_IIR_FCR, REG_LCR, REG_MCR, REG_LSR, REG_MSR, REG_SCR };

#define IER_ERBFI 0x01 /* received data available */
#define IER_ETBEI 0x02 /* THR empty */
#define IER_ELSI 0x04  /* receiver line status */
#define IER_EDSSI 0x08 /* modem status */
#define IER_MASK 0x0F

#define IIR_NONE 0x01
#define IIR_MSR 0x00
#define IIR_THRE 0x02
#define IIR_RDA 0x04
#define IIR_RLS 0x06
#define IIR_RXTO 0x0C
#define IIR_FIFOS_ON 0xC0

#define FCR_ENABLE 0x01
#define FCR_RX_RESET 0x02
#define FCR_TX_RESET 0x04
#define FCR_KEPT 0xC9 /* enable, DMA mode, trigger level; the reset bits self-clear */

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1F

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_DELTAS 0x0F
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

/* With nothing attached to the modem lines the port looks like a ready null-modem link. */
#define MSR_IDLE_LINES (MSR_CTS | MSR_DSR | MSR_DCD)
#define DEFAULT_DIVISOR 12 /* 9600 baud from the 1.8432 MHz clock */

struct rx_fifo {
	uint8_t buf[FIFO_SIZE];
	unsigned head, count;
};

struct uart {
	pthread_mutex_t lock; /* registers: vCPU threads; input: the loop thread */
	struct vm *vm;
	struct chardev *cd;
	char name[8];
	uint16_t base;
	unsigned irq;

	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	uint8_t lsr_err;   /* sticky LSR error bits (OE), cleared by reading LSR */
	uint8_t msr;       /* line states and delta bits */
	bool thre_pending; /* THR-empty interrupt latched, not yet acknowledged */
	struct rx_fifo rx;

	bool irq_level;    /* what the line was last driven to */
	bool input_paused; /* what the chardev was last told */
	bool vm_paused;    /* input waits in the backend while the VM is paused (device.h) */
};

static const struct {
	const char *name;
	uint16_t base;
	unsigned irq;
} ports[] = {
	{ "com1", 0x3F8, 4 },
	{ "com2", 0x2F8, 3 },
	{ "com3", 0x3E8, 4 },
	{ "com4", 0x2E8, 3 },
};

static struct device_model uart_model;

/* ---- FIFO ---- */

static bool fifo_on(const struct uart *s)
{
	return s->fcr & FCR_ENABLE;
}

static unsigned rx_capacity(const struct uart *s)
{
	return fifo_on(s) ? FIFO_SIZE : 1;
}

static unsigned rx_trigger(const struct uart *s)
{
	static const unsigned levels[4] = { 1, 4, 8, 14 };

	return levels[s->fcr >> 6];
}

static void rx_push(struct uart *s, uint8_t c)
{
	if (s->rx.count == rx_capacity(s)) {
		s->lsr_err |= LSR_OE;
		if (fifo_on(s))
			return; /* a full FIFO keeps its contents; the new character is lost */
		s->rx.count = 0; /* the 16450 holding register is overwritten */
	}
	s->rx.buf[(s->rx.head + s->rx.count) % FIFO_SIZE] = c;
	s->rx.count++;
}

static uint8_t rx_pop(struct uart *s)
{
	uint8_t c;

	if (!s->rx.count)
		return 0;
	c = s->rx.buf[s->rx.head];
	s->rx.head = (s->rx.head + 1) % FIFO_SIZE;
	s->rx.count--;
	return c;
}

static void rx_reset(struct uart *s)
{
	s->rx.head = s->rx.count = 0;
}

/* ---- interrupts and flow control ---- */

/* Highest-priority pending source, as IIR bits 0-3. */
static uint8_t pending_iid(const struct uart *s)
{
	if ((s->ier & IER_ELSI) && s->lsr_err)
		return IIR_RLS;
	if ((s->ier & IER_ERBFI) && s->rx.count)
		return fifo_on(s) && s->rx.count < rx_trigger(s) ? IIR_RXTO : IIR_RDA;
	if ((s->ier & IER_ETBEI) && s->thre_pending)
		return IIR_THRE;
	if ((s->ier & IER_EDSSI) && (s->msr & MSR_DELTAS))
		return IIR_MSR;
	return IIR_NONE;
}

/*
 * In loopback the OUT2 pin is forced inactive, which on a PC disconnects
 * the interrupt output from the IRQ line.
 */
static void update_irq(struct uart *s)
{
	bool level = pending_iid(s) != IIR_NONE && (s->mcr & MCR_OUT2) && !(s->mcr & MCR_LOOP);

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	vm_set_irq(s->vm, s->irq, level);
}

/* Backend input waits while the FIFO is full or the receiver is looped back. */
static void update_flow(struct uart *s)
{
	bool pause = s->vm_paused || (s->mcr & MCR_LOOP) || s->rx.count >= rx_capacity(s);

	if (pause == s->input_paused)
		return;
	s->input_paused = pause;
	chardev_set_input_paused(s->cd, pause);
}

static void set_modem_lines(struct uart *s, uint8_t lines)
{
	uint8_t changed = (s->msr ^ lines) & 0xF0;
	uint8_t deltas = s->msr & MSR_DELTAS;

	if (changed & MSR_CTS)
		deltas |= MSR_DCTS;
	if (changed & MSR_DSR)
		deltas |= MSR_DDSR;
	if ((changed & MSR_RI) && !(lines & MSR_RI))
		deltas |= MSR_TERI; /* trailing edge only */
	if (changed & MSR_DCD)
		deltas |= MSR_DDCD;
	s->msr = lines | deltas;
}

/* In loopback the modem outputs feed the modem inputs. */
static uint8_t modem_lines_for(uint8_t mcr)
{
	if (!(mcr & MCR_LOOP))
		return MSR_IDLE_LINES;
	return (mcr & MCR_RTS ? MSR_CTS : 0) | (mcr & MCR_DTR ? MSR_DSR : 0) | (mcr & MCR_OUT1 ? MSR_RI : 0) |
	       (mcr & MCR_OUT2 ? MSR_DCD : 0);
}

/* ---- registers ---- */

static void write_thr(struct uart *s, uint8_t v)
{
	if (s->mcr & MCR_LOOP)
		rx_push(s, v);
	else
		chardev_write(s->cd, &v, 1);
	/* The byte left at once: THR is empty again, which is a new THRE interrupt. */
	s->thre_pending = true;
}

static void write_ier(struct uart *s, uint8_t v)
{
	/* Enabling ETBEI while THR is empty (always, here) raises THRE, as the 8250 driver tests. */
	if ((v & IER_ETBEI) && !(s->ier & IER_ETBEI))
		s->thre_pending = true;
	s->ier = v & IER_MASK;
}

static void write_fcr(struct uart *s, uint8_t v)
{
	if ((v ^ s->fcr) & FCR_ENABLE)
		rx_reset(s); /* changing the mode empties both FIFOs */
	if (!(v & FCR_ENABLE)) {
		s->fcr = 0;
		return;
	}
	if (v & FCR_RX_RESET)
		rx_reset(s);
	/* FCR_TX_RESET: the transmit FIFO is always empty already. */
	s->fcr = v & FCR_KEPT;
}

static void write_mcr(struct uart *s, uint8_t v)
{
	s->mcr = v & MCR_MASK;
	set_modem_lines(s, modem_lines_for(s->mcr));
}

static void reg_write(struct uart *s, unsigned reg, uint8_t v)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (reg) {
	case REG_DATA:
		if (dlab)
			s->dll = v;
		else
			write_thr(s, v);
		break;
	case REG_IER:
		if (dlab)
			s->dlm = v;
		else
			write_ier(s, v);
		break;
	case REG_IIR_FCR:
		write_fcr(s, v);
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR:
		write_mcr(s, v);
		break;
	case REG_SCR:
		s->scr = v;
		break;
	default:
		break; /* LSR and MSR are read-only here (factory test writes are not modelled) */
	}
}

static uint8_t read_iir(struct uart *s)
{
	uint8_t iid = pending_iid(s);

	/* Reading IIR acknowledges THRE when THRE is what it reports. */
	if (iid == IIR_THRE)
		s->thre_pending = false;
	return iid | (fifo_on(s) ? IIR_FIFOS_ON : 0);
}

static uint8_t read_lsr(struct uart *s)
{
	uint8_t v = LSR_THRE | LSR_TEMT | s->lsr_err | (s->rx.count ? LSR_DR : 0);

	s->lsr_err = 0;
	return v;
}

static uint8_t read_msr(struct uart *s)
{
	uint8_t v = s->msr;

	s->msr &= ~MSR_DELTAS;
	return v;
}

static uint8_t reg_read(struct uart *s, unsigned reg)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (reg) {
	case REG_DATA:
		return dlab ? s->dll : rx_pop(s);
	case REG_IER:
		return dlab ? s->dlm : s->ier;
	case REG_IIR_FCR:
		return read_iir(s);
	case REG_LCR:
		return s->lcr;
	case REG_MCR:
		return s->mcr;
	case REG_LSR:
		return read_lsr(s);
	case REG_MSR:
		return read_msr(s);
	default:
		return s->scr;
	}
}

/* Wider accesses are taken as consecutive byte accesses, as an 8-bit ISA device sees them. */
static void uart_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct uart *s = opaque;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < size; i++) {
		unsigned reg = (unsigned)(offset + i) % UART_NREGS;
		if (is_write)
			reg_write(s, reg, data[i]);
		else
			data[i] = reg_read(s, reg);
	}
	update_irq(s);
	update_flow(s);
	pthread_mutex_unlock(&s->lock);
}

/* ---- backend input (loop thread) ---- */

static size_t uart_room(void *opaque)
{
	struct uart *s = opaque;
	size_t room = 0;

	pthread_mutex_lock(&s->lock);
	if (!s->vm_paused && !(s->mcr & MCR_LOOP))
		room = rx_capacity(s) - s->rx.count;
	pthread_mutex_unlock(&s->lock);
	return room;
}

static void uart_input(void *opaque, const uint8_t *buf, size_t len)
{
	struct uart *s = opaque;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < len; i++)
		rx_push(s, buf[i]);
	update_irq(s);
	update_flow(s);
	pthread_mutex_unlock(&s->lock);
}

/* ---- life cycle ---- */

static void power_on_values(struct uart *s)
{
	s->ier = s->lcr = s->mcr = s->scr = s->fcr = s->lsr_err = 0;
	s->dll = DEFAULT_DIVISOR;
	s->dlm = 0;
	s->msr = MSR_IDLE_LINES;
	s->thre_pending = false;
	rx_reset(s);
}

static void uart_reset(struct device *dev)
{
	struct uart *s = dev->priv;

	pthread_mutex_lock(&s->lock);
	power_on_values(s);
	update_irq(s);
	update_flow(s);
	pthread_mutex_unlock(&s->lock);
}

static void uart_free(struct uart *s)
{
	chardev_close(s->cd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int uart_create(struct device *dev)
{
	const char *leaf = strrchr(dev->cfg_prefix, '.');
	const char *spec = dev_opt_str(dev, "path");
	struct uart *s;
	unsigned i;

	leaf = leaf ? leaf + 1 : dev->cfg_prefix;
	for (i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
		if (strcmp(leaf, ports[i].name) == 0)
			break;
	if (i == sizeof(ports) / sizeof(ports[0])) {
		log_error("%s: not a serial port name (com1 to com4 exist)", dev->id);
		return -1;
	}
	if (!spec) {
		log_error("%s: %s.path is not set", ports[i].name, dev->cfg_prefix);
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	pthread_mutex_init(&s->lock, NULL);
	s->vm = dev->vm;
	snprintf(s->name, sizeof(s->name), "%s", ports[i].name);
	s->base = ports[i].base;
	s->irq = ports[i].irq;
	power_on_values(s);
	/* Input is not delivered before the port exists: the loop is not running yet. */
	s->cd = chardev_open(s->name, spec, dev->vm->loop, uart_input, uart_room, s);
	if (!s->cd) {
		uart_free(s);
		return -1;
	}
	if (iobus_register(&dev->vm->pio, s->base, UART_NREGS, uart_io, s) < 0) {
		uart_free(s);
		return -1;
	}
	dev->priv = s;
	return 0;
}

static void uart_destroy(struct device *dev)
{
	struct uart *s = dev->priv;

	if (!s)
		return;
	iobus_unregister(&dev->vm->pio, s->base);
	uart_free(s);
	dev->priv = NULL;
}

static int uart_attach(struct vm *vm)
{
	for (unsigned i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		char id[16];
		snprintf(id, sizeof(id), "lpc.%s", ports[i].name);
		if (!config_has_node(vm->cfg, id))
			continue;
		if (!device_create(vm, &uart_model, id, id))
			return -1;
	}
	return 0;
}

/* ---- snapshot ---- */

static int uart_save(struct device *dev, struct state_writer *w)
{
	struct uart *s = dev->priv;
	uint8_t rx[FIFO_SIZE];

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->rx.count; i++)
		rx[i] = s->rx.buf[(s->rx.head + i) % FIFO_SIZE];
	state_put_u64(w, "ier", s->ier);
	state_put_u64(w, "lcr", s->lcr);
	state_put_u64(w, "mcr", s->mcr);
	state_put_u64(w, "fcr", s->fcr);
	state_put_u64(w, "scr", s->scr);
	state_put_u64(w, "dll", s->dll);
	state_put_u64(w, "dlm", s->dlm);
	state_put_u64(w, "lsr_err", s->lsr_err);
	state_put_u64(w, "msr", s->msr);
	state_put_bool(w, "thre_pending", s->thre_pending);
	/* Transmission is instantaneous: the transmit FIFO never holds a byte at a save point. */
	state_put_bytes(w, "rx_fifo", rx, s->rx.count);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int read_registers(struct uart *s, struct state_reader *r)
{
	uint8_t rx[FIFO_SIZE];
	size_t n = 0;

	if (state_get_u8(r, "ier", 0xFF, &s->ier) < 0 || state_get_u8(r, "lcr", 0xFF, &s->lcr) < 0 ||
	    state_get_u8(r, "mcr", 0xFF, &s->mcr) < 0 || state_get_u8(r, "fcr", 0xFF, &s->fcr) < 0 ||
	    state_get_u8(r, "scr", 0xFF, &s->scr) < 0 || state_get_u8(r, "dll", 0xFF, &s->dll) < 0 ||
	    state_get_u8(r, "dlm", 0xFF, &s->dlm) < 0 || state_get_u8(r, "lsr_err", 0xFF, &s->lsr_err) < 0 ||
	    state_get_u8(r, "msr", 0xFF, &s->msr) < 0 || state_get_bool(r, "thre_pending", &s->thre_pending) < 0 ||
	    state_get_bytes_var(r, "rx_fifo", rx, sizeof(rx), &n) < 0)
		return -1;
	s->ier &= IER_MASK;
	s->mcr &= MCR_MASK;
	s->fcr &= FCR_KEPT;
	s->lsr_err &= LSR_OE;
	rx_reset(s);
	if (n > rx_capacity(s))
		return -1;
	memcpy(s->rx.buf, rx, n);
	s->rx.count = (unsigned)n;
	return 0;
}

static int uart_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	struct uart *s = dev->priv;
	int rc;

	(void)version;
	pthread_mutex_lock(&s->lock);
	rc = read_registers(s, r);
	if (rc < 0)
		power_on_values(s);
	update_irq(s);
	update_flow(s);
	pthread_mutex_unlock(&s->lock);
	if (rc < 0)
		log_error("%s: snapshot section is missing a register or holds a bad value", s->name);
	return rc;
}

static void uart_run_state(struct device *dev, bool running)
{
	struct uart *s = dev->priv;

	pthread_mutex_lock(&s->lock);
	s->vm_paused = !running;
	update_flow(s);
	pthread_mutex_unlock(&s->lock);
}

/*
 * Device(COMn): a 16550A (PNP0501) with _UID n, its eight ports and its
 * IRQ, so the OS's serial driver takes the port from ACPI. Only the ports
 * that exist are described.
 */
static void uart_acpi_dsdt(struct device *dev, struct aml_buf *b)
{
	const struct uart *s = dev->priv;
	char name[5] = { 'C', 'O', 'M', s->name[3], 0 };

	aml_isa_device(b, name, "PNP0501", (unsigned)(s->name[3] - '0'), s->base, UART_NREGS, (uint8_t)s->irq);
}

static const struct option_decl uart_options[] = {
	{ .name = "path", .type = OPTION_CUSTOM, .flags = OPTION_HOST_BINDING, .validate = chardev_spec_check,
	  .tcp_listener = chardev_spec_tcp_address, .cli_hint = "-l %s,...",
	  .help = "backend: stdio, file=PATH, tcp=[ADDR:]PORT or unix=PATH" },
	{ 0 },
};

/* lpc.com1 to lpc.com4: serial ports, whatever is under them is the UART's. */
static struct option_node uart_node = { .pattern = "lpc.com[1-4]", .model = "uart" };
OPTION_NODE(uart_node)

static struct device_model uart_model = {
	.name = "uart",
	.options = uart_options,
	.state_version = 1,
	.attach_order = 20,
	.attach = uart_attach,
	.create = uart_create,
	.reset = uart_reset,
	.save = uart_save,
	.restore = uart_restore,
	.destroy = uart_destroy,
	.run_state = uart_run_state,
	.acpi_dsdt = uart_acpi_dsdt,
};
DEVICE_MODEL(uart_model);
