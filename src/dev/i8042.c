/*
 * i8042 keyboard controller ("i8042"), the one instance "lpc.i8042":
 * data port 0x60, command/status port 0x64, the PS/2 keyboard on IRQ 1
 * and the PS/2 mouse (auxiliary port) on IRQ 12. Always present, as on a
 * PC (the FADT's IA-PC boot flags announce it).
 *
 * One output buffer takes a byte at a time from, in order: the keyboard,
 * then the mouse, each only while its port is enabled in the command
 * byte. Replies to controller commands are put straight into the buffer,
 * as the 8042 does. With command-byte bit 6 the keyboard's set 2 codes
 * are translated to set 1 on their way in.
 *
 * The IRQ lines follow "buffer full with a byte from that port and its
 * interrupt enabled", driven only on changes, like the UART's: reading
 * 0x60 drops the line and loading the next byte raises it again, so each
 * byte is a fresh edge on the edge-triggered ISA lines.
 *
 * Output port: bit 0 (reset) pulsed low, by command 0xFE/0xF0-0xFF or a
 * write through 0xD1, reboots the VM; bit 1 (A20) is kept and reported
 * but masks nothing: KVM runs guests with A20 always enabled.
 */
#include <pthread.h>
#include <stdlib.h>

#include "boot/aml.h"
#include "core/config.h"
#include "core/device.h"
#include "core/input.h"
#include "core/log.h"
#include "core/options.h"
#include "core/vm.h"
#include "dev/ps2kbd.h"
#include "dev/ps2mouse.h"
#include "snapshot/state.h"

#define DATA_PORT 0x60
#define CMD_PORT 0x64
#define KBD_IRQ 1
#define AUX_IRQ 12
#define RAM_SIZE 32 /* internal RAM as commands 20-3F/60-7F reach it; byte 0 is the command byte */

/* Status register. */
#define ST_OBF 0x01
#define ST_SYS 0x04
#define ST_CMD 0x08   /* last write went to the command port */
#define ST_UNLOCK 0x10 /* keyboard not inhibited by the key lock */
#define ST_AUXB 0x20

/* Command byte. */
#define CB_KBD_INT 0x01
#define CB_AUX_INT 0x02
#define CB_SYS 0x04
#define CB_KBD_DIS 0x10
#define CB_AUX_DIS 0x20
#define CB_XLATE 0x40
#define CB_POWER_ON (CB_KBD_INT | CB_SYS | CB_XLATE) /* what a PC BIOS leaves */

/* Output port. */
#define OP_RESET 0x01 /* active low */
#define OP_A20 0x02
#define OP_KBD_OBF 0x10
#define OP_AUX_OBF 0x20

enum {
	CMD_READ_RAM = 0x20, /* 20-3F */
	CMD_WRITE_RAM = 0x60, /* 60-7F */
	CMD_PASSWORD_CHECK = 0xA4,
	CMD_AUX_DISABLE = 0xA7,
	CMD_AUX_ENABLE = 0xA8,
	CMD_AUX_TEST = 0xA9,
	CMD_SELF_TEST = 0xAA,
	CMD_KBD_TEST = 0xAB,
	CMD_KBD_DISABLE = 0xAD,
	CMD_KBD_ENABLE = 0xAE,
	CMD_READ_INPUT = 0xC0,
	CMD_READ_OUTPUT = 0xD0,
	CMD_WRITE_OUTPUT = 0xD1,
	CMD_WRITE_KBD_OBUF = 0xD2,
	CMD_WRITE_AUX_OBUF = 0xD3,
	CMD_WRITE_AUX = 0xD4,
	CMD_A20_OFF = 0xDD,
	CMD_A20_ON = 0xDF,
	CMD_READ_TEST = 0xE0,
	CMD_PULSE_FIRST = 0xF0, /* F0-FF: pulse output port bits 3:0 low for each 0 bit */
};

#define SELF_TEST_OK 0x55
#define NO_PASSWORD 0xF1

struct i8042 {
	pthread_mutex_t lock; /* vCPU threads (ports), input sinks (loop thread) */
	struct vm *vm;
	struct ps2kbd *kbd;
	struct ps2mouse *mouse;
	uint8_t ram[RAM_SIZE];
	uint8_t outport;
	uint8_t out;	       /* output buffer; kept after being read, as hardware does */
	bool out_full, out_aux;
	bool last_was_cmd;     /* status bit 3 */
	uint8_t pending;       /* command waiting for its data byte, or 0 */
	bool xlate_break;      /* translating: an F0 was swallowed, the next code is a break */
	bool irq1, irq12;      /* what the lines were last driven to */
	bool reset_requested;  /* acted on outside the lock */
};

static struct device_model i8042_model;

/* ---- output buffer and interrupts ---- */

static void update_irqs(struct i8042 *s)
{
	bool kbd = s->out_full && !s->out_aux && (s->ram[0] & CB_KBD_INT);
	bool aux = s->out_full && s->out_aux && (s->ram[0] & CB_AUX_INT);

	if (kbd != s->irq1)
		vm_set_irq(s->vm, KBD_IRQ, s->irq1 = kbd);
	if (aux != s->irq12)
		vm_set_irq(s->vm, AUX_IRQ, s->irq12 = aux);
}

static void load(struct i8042 *s, uint8_t b, bool aux)
{
	s->out = b;
	s->out_full = true;
	s->out_aux = aux;
}

/* The next keyboard byte as the controller passes it on; false when there is none. */
static bool kbd_byte(struct i8042 *s, uint8_t *b)
{
	while (ps2kbd_read(s->kbd, b)) {
		if (!(s->ram[0] & CB_XLATE))
			return true;
		if (*b == 0xF0) {
			s->xlate_break = true;
			continue;
		}
		*b = ps2kbd_translate(*b) | (s->xlate_break ? 0x80 : 0);
		s->xlate_break = false;
		return true;
	}
	return false;
}

static bool take_kbd(struct i8042 *s)
{
	uint8_t b;

	if ((s->ram[0] & CB_KBD_DIS) || !kbd_byte(s, &b))
		return false;
	load(s, b, false);
	return true;
}

static bool take_aux(struct i8042 *s)
{
	uint8_t b;

	if ((s->ram[0] & CB_AUX_DIS) || !ps2mouse_read(s->mouse, &b))
		return false;
	load(s, b, true);
	return true;
}

/*
 * Fills an empty output buffer from the enabled ports, the one that did not
 * send the last byte first, so that neither device's stream starves the
 * other's; then drives the lines.
 */
static void deliver(struct i8042 *s)
{
	if (!s->out_full) {
		if (s->out_aux)
			(void)(take_kbd(s) || take_aux(s));
		else
			(void)(take_aux(s) || take_kbd(s));
	}
	update_irqs(s);
}

static uint8_t read_data(struct i8042 *s)
{
	s->out_full = false;
	update_irqs(s); /* the line drops, so the next byte is a new edge */
	return s->out;
}

static uint8_t read_status(struct i8042 *s)
{
	return (s->out_full ? ST_OBF : 0) | (s->ram[0] & CB_SYS ? ST_SYS : 0) | (s->last_was_cmd ? ST_CMD : 0) |
	       ST_UNLOCK | (s->out_full && s->out_aux ? ST_AUXB : 0);
}

/* ---- commands ---- */

static void write_output_port(struct i8042 *s, uint8_t v)
{
	s->outport = v | OP_RESET;
	if (!(v & OP_RESET))
		s->reset_requested = true;
}

static uint8_t output_port(const struct i8042 *s)
{
	return (s->outport & ~(OP_KBD_OBF | OP_AUX_OBF)) | (s->out_full && !s->out_aux ? OP_KBD_OBF : 0) |
	       (s->out_full && s->out_aux ? OP_AUX_OBF : 0);
}

/* Commands taking a data byte through port 0x60. */
static bool takes_data(uint8_t cmd)
{
	return (cmd >= CMD_WRITE_RAM && cmd < CMD_WRITE_RAM + RAM_SIZE) || cmd == CMD_WRITE_OUTPUT ||
	       cmd == CMD_WRITE_KBD_OBUF || cmd == CMD_WRITE_AUX_OBUF || cmd == CMD_WRITE_AUX;
}

static void set_cb_bits(struct i8042 *s, uint8_t set, uint8_t clear)
{
	s->ram[0] = (uint8_t)((s->ram[0] | set) & ~clear);
}

static void command(struct i8042 *s, uint8_t cmd)
{
	if (takes_data(cmd)) {
		s->pending = cmd;
		return;
	}
	if (cmd >= CMD_READ_RAM && cmd < CMD_READ_RAM + RAM_SIZE) {
		load(s, s->ram[cmd - CMD_READ_RAM], false);
		return;
	}
	if (cmd >= CMD_PULSE_FIRST) {
		if (!(cmd & OP_RESET))
			s->reset_requested = true;
		return;
	}
	switch (cmd) {
	case CMD_PASSWORD_CHECK: load(s, NO_PASSWORD, false); break;
	case CMD_AUX_DISABLE: set_cb_bits(s, CB_AUX_DIS, 0); break;
	case CMD_AUX_ENABLE: set_cb_bits(s, 0, CB_AUX_DIS); break;
	case CMD_AUX_TEST: load(s, 0x00, false); break;
	case CMD_SELF_TEST: load(s, SELF_TEST_OK, false); break;
	case CMD_KBD_TEST: load(s, 0x00, false); break;
	case CMD_KBD_DISABLE: set_cb_bits(s, CB_KBD_DIS, 0); break;
	case CMD_KBD_ENABLE: set_cb_bits(s, 0, CB_KBD_DIS); break;
	case CMD_READ_INPUT: load(s, 0x80, false); break; /* bit 7: keyboard not locked */
	case CMD_READ_OUTPUT: load(s, output_port(s), false); break;
	case CMD_A20_OFF: s->outport &= (uint8_t)~OP_A20; break;
	case CMD_A20_ON: s->outport |= OP_A20; break;
	case CMD_READ_TEST: load(s, 0x00, false); break;
	default: log_debug("i8042: command 0x%02x ignored", cmd); break;
	}
}

static void data_for_command(struct i8042 *s, uint8_t cmd, uint8_t v)
{
	if (cmd >= CMD_WRITE_RAM && cmd < CMD_WRITE_RAM + RAM_SIZE) {
		s->ram[cmd - CMD_WRITE_RAM] = v;
		if (cmd == CMD_WRITE_RAM && !(v & CB_XLATE))
			s->xlate_break = false; /* a swallowed F0 must not mark a byte after translation returns */
		return;
	}
	switch (cmd) {
	case CMD_WRITE_OUTPUT: write_output_port(s, v); break;
	case CMD_WRITE_KBD_OBUF: load(s, v, false); break;
	case CMD_WRITE_AUX_OBUF: load(s, v, true); break;
	case CMD_WRITE_AUX: ps2mouse_write(s->mouse, v); break;
	default: break;
	}
}

static void write_data(struct i8042 *s, uint8_t v)
{
	uint8_t cmd = s->pending;

	s->last_was_cmd = false;
	s->pending = 0;
	if (cmd)
		data_for_command(s, cmd, v);
	else
		ps2kbd_write(s->kbd, v);
}

/* After a port access or host input: deliver; then, unlocked, what must not run under the lock. */
static void finish_unlock(struct i8042 *s)
{
	unsigned leds;
	bool leds_changed, reset;

	deliver(s);
	leds_changed = ps2kbd_take_leds(s->kbd, &leds);
	reset = s->reset_requested;
	s->reset_requested = false;
	pthread_mutex_unlock(&s->lock);
	/* The router's lock is taken before ours on the input path: report outside ours. */
	if (leds_changed) {
		log_debug("i8042: keyboard LEDs 0x%x", leds);
		input_set_leds(s->vm, leds);
	}
	if (reset) {
		log_info("i8042: reset pulse: rebooting");
		vm_request_reset(s->vm);
	}
}

static void data_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct i8042 *s = opaque;

	(void)offset;
	pthread_mutex_lock(&s->lock);
	if (is_write)
		write_data(s, data[0]);
	else
		data[0] = read_data(s);
	for (unsigned i = 1; i < size; i++)
		if (!is_write)
			data[i] = 0xFF; /* nothing decodes 0x61-0x63 here */
	finish_unlock(s);
}

static void cmd_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct i8042 *s = opaque;

	(void)offset;
	pthread_mutex_lock(&s->lock);
	if (is_write) {
		s->last_was_cmd = true;
		s->pending = 0;
		command(s, data[0]);
	} else {
		data[0] = read_status(s);
	}
	for (unsigned i = 1; i < size; i++)
		if (!is_write)
			data[i] = 0xFF;
	finish_unlock(s);
}

/* ---- host side: the PS/2 devices' input sinks enter here ---- */

static void host_lock(void *ctx)
{
	struct i8042 *s = ctx;

	pthread_mutex_lock(&s->lock);
}

static void host_unlock(void *ctx)
{
	finish_unlock(ctx);
}

/* ---- life cycle ---- */

static void power_on(struct i8042 *s)
{
	memset(s->ram, 0, sizeof(s->ram));
	s->ram[0] = CB_POWER_ON;
	s->outport = OP_RESET | OP_A20;
	s->out = 0;
	s->out_full = s->out_aux = false;
	s->last_was_cmd = false;
	s->pending = 0;
	s->xlate_break = false;
	ps2kbd_reset(s->kbd);
	ps2mouse_reset(s->mouse);
}

static void i8042_reset(struct device *dev)
{
	struct i8042 *s = dev->priv;

	pthread_mutex_lock(&s->lock);
	power_on(s);
	finish_unlock(s);
}

static void i8042_free(struct i8042 *s)
{
	ps2kbd_free(s->kbd);
	ps2mouse_free(s->mouse);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct iobus_claim i8042_ports[] = {
	{ DATA_PORT, 1, data_io },
	{ CMD_PORT, 1, cmd_io },
};
#define N_I8042_PORTS (sizeof(i8042_ports) / sizeof(i8042_ports[0]))

static int i8042_create(struct device *dev)
{
	struct i8042 *s = calloc(1, sizeof(*s));
	struct ps2_host host = { host_lock, host_unlock, s };

	if (!s)
		return -1;
	pthread_mutex_init(&s->lock, NULL);
	s->vm = dev->vm;
	s->kbd = ps2kbd_new(dev->vm, &host);
	s->mouse = ps2mouse_new(dev->vm, &host);
	if (!s->kbd || !s->mouse) {
		i8042_free(s);
		return -1;
	}
	power_on(s);
	ps2kbd_take_leds(s->kbd, &(unsigned){ 0 });
	if (iobus_register_all(&dev->vm->pio, i8042_ports, N_I8042_PORTS, s) < 0) {
		i8042_free(s);
		return -1;
	}
	dev->priv = s;
	return 0;
}

static void i8042_destroy(struct device *dev)
{
	struct i8042 *s = dev->priv;

	if (!s)
		return;
	iobus_unregister_all(&dev->vm->pio, i8042_ports, N_I8042_PORTS);
	i8042_free(s);
	dev->priv = NULL;
}

/*
 * lpc.i8042 (bool) turns the controller off. Unset, it is on for a new VM
 * but off for a restored one: a snapshot of a VM that had the controller
 * carries lpc.i8042=true, recorded here, while one taken before hyve had
 * an i8042 holds no state for it and must restore without it.
 */
static const struct option_decl i8042_options[] = {
	{ .name = "lpc.i8042", .type = OPTION_BOOL,
	  .help = "the i8042 keyboard controller with PS/2 keyboard and mouse (default: on, off when restoring a "
		  "snapshot without one)" },
	{ 0 },
};
OPTIONS(i8042_options)

static int i8042_attach(struct vm *vm)
{
	bool on = opt_str(vm->cfg, "snapshot.restore") == NULL;

	if (opt_str(vm->cfg, "lpc.i8042") && opt_bool(vm->cfg, "lpc.i8042", &on) < 0)
		return -1; /* logged */
	if (!on)
		return 0;
	if (config_set(vm->cfg, "lpc.i8042", "true") < 0)
		return -1;
	return device_create(vm, &i8042_model, "lpc.i8042", "lpc.i8042") ? 0 : -1;
}

/* ---- snapshot ---- */

static int i8042_save(struct device *dev, struct state_writer *w)
{
	struct i8042 *s = dev->priv;

	pthread_mutex_lock(&s->lock);
	state_put_bytes(w, "ram", s->ram, sizeof(s->ram));
	state_put_u64(w, "outport", s->outport);
	state_put_u64(w, "out", s->out);
	state_put_bool(w, "out_full", s->out_full);
	state_put_bool(w, "out_aux", s->out_aux);
	state_put_bool(w, "last_was_cmd", s->last_was_cmd);
	state_put_u64(w, "pending", s->pending);
	state_put_bool(w, "xlate_break", s->xlate_break);
	state_begin_map(w, "kbd");
	ps2kbd_save(s->kbd, w);
	state_end_map(w);
	state_begin_map(w, "mouse");
	ps2mouse_save(s->mouse, w);
	state_end_map(w);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int restore_child(struct state_reader *r, const char *key, void *dev,
			 int (*fn)(void *dev, struct state_reader *r))
{
	int rc;

	if (state_enter_map(r, key) < 0)
		return -1;
	rc = fn(dev, r);
	state_leave_map(r);
	return rc;
}

static int kbd_restore(void *k, struct state_reader *r)
{
	return ps2kbd_restore(k, r);
}

static int mouse_restore(void *m, struct state_reader *r)
{
	return ps2mouse_restore(m, r);
}

static int read_state(struct i8042 *s, struct state_reader *r)
{
	if (state_get_bytes(r, "ram", s->ram, sizeof(s->ram)) < 0 || state_get_u8(r, "outport", 0xFF, &s->outport) < 0 ||
	    state_get_u8(r, "out", 0xFF, &s->out) < 0 || state_get_bool(r, "out_full", &s->out_full) < 0 ||
	    state_get_bool(r, "out_aux", &s->out_aux) < 0 || state_get_bool(r, "last_was_cmd", &s->last_was_cmd) < 0 ||
	    state_get_u8(r, "pending", 0xFF, &s->pending) < 0 || state_get_bool(r, "xlate_break", &s->xlate_break) < 0)
		return -1;
	if (s->pending && !takes_data(s->pending))
		return -1;
	s->outport |= OP_RESET;
	if (restore_child(r, "kbd", s->kbd, kbd_restore) < 0 || restore_child(r, "mouse", s->mouse, mouse_restore) < 0)
		return -1;
	return 0;
}

static int i8042_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	struct i8042 *s = dev->priv;
	int rc;

	(void)version;
	pthread_mutex_lock(&s->lock);
	rc = read_state(s, r);
	if (rc < 0)
		power_on(s);
	/* Lines as the state says: a restored full buffer raises its IRQ anew. */
	s->irq1 = s->irq12 = false;
	vm_set_irq(s->vm, KBD_IRQ, 0);
	vm_set_irq(s->vm, AUX_IRQ, 0);
	finish_unlock(s);
	if (rc < 0)
		log_error("i8042: snapshot section is missing a field or holds a bad value");
	return rc;
}

/*
 * The keyboard port (PNP0303: the data and command ports, IRQ 1) and the
 * mouse port (PNP0F13: IRQ 12): Linux finds them by probing anyway,
 * Windows only through these.
 */
static void i8042_acpi_dsdt(struct device *dev, struct aml_buf *b)
{
	(void)dev;
	size_t kbd = aml_device_begin(b, "KBD");
	aml_name(b, "_HID");
	aml_eisaid(b, "PNP0303");
	aml_name(b, "_CRS");
	size_t crs = aml_resource_begin(b);
	aml_res_io(b, DATA_PORT, 1);
	aml_res_io(b, CMD_PORT, 1);
	aml_res_irq_noflags(b, KBD_IRQ);
	aml_resource_end(b, crs);
	aml_end(b, kbd);

	size_t mou = aml_device_begin(b, "MOU");
	aml_name(b, "_HID");
	aml_eisaid(b, "PNP0F13");
	aml_name(b, "_CRS");
	crs = aml_resource_begin(b);
	aml_res_irq_noflags(b, AUX_IRQ);
	aml_resource_end(b, crs);
	aml_end(b, mou);
}

static struct device_model i8042_model = {
	.name = "i8042",
	.state_version = 1,
	.attach_order = 15,
	.attach = i8042_attach,
	.create = i8042_create,
	.reset = i8042_reset,
	.save = i8042_save,
	.restore = i8042_restore,
	.destroy = i8042_destroy,
	.acpi_dsdt = i8042_acpi_dsdt,
};
DEVICE_MODEL(i8042_model);
