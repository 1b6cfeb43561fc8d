/*
 * PS/2 mouse. Packets are 3 bytes (ID 0) or 4 (ID 3: wheel in byte 4;
 * ID 4: 4-bit wheel and buttons 4/5 in byte 4, horizontal wheel as
 * IntelliMouse Explorer 4.0 packets with bits 7:6 = 01).
 *
 * Stream mode sends a packet per host event at once (no sample-rate
 * pacing: the UI already paces its events); deltas beyond what a packet
 * holds are split over several packets rather than flagged as overflow,
 * so nothing the user moved is lost. Remote mode accumulates movement
 * until the guest reads it (EB). Resolution and scaling are kept and
 * reported; host pixels are taken as counts whatever the resolution.
 */
#include "dev/ps2mouse.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "core/input.h"
#include "snapshot/state.h"

#define MAX_DELTA 255 /* the 9-bit field's positive limit; splitting keeps within it */
#define MAX_WHEEL 7   /* 4-bit signed wheel field */
#define MAX_HWHEEL 31 /* 6-bit signed horizontal field of Explorer 4.0 packets */
#define DEFAULT_RATE 100
#define DEFAULT_RESOLUTION 2 /* 4 counts/mm */

/* Packet byte 0. */
#define P0_LEFT 0x01
#define P0_RIGHT 0x02
#define P0_MIDDLE 0x04
#define P0_ALWAYS 0x08
#define P0_XSIGN 0x10
#define P0_YSIGN 0x20
#define P0_XOVF 0x40
#define P0_YOVF 0x80
/* Byte 3 of ID 4 packets. */
#define P3_BTN4 0x10
#define P3_BTN5 0x20
#define P3_HWHEEL 0x40

/* Status byte 0 (E9). */
#define ST_REMOTE 0x40
#define ST_ENABLED 0x20
#define ST_SCALING 0x10
#define ST_LEFT 0x04
#define ST_MIDDLE 0x02
#define ST_RIGHT 0x01

enum {
	CMD_SCALING_1_1 = 0xE6,
	CMD_SCALING_2_1 = 0xE7,
	CMD_RESOLUTION = 0xE8,
	CMD_STATUS = 0xE9,
	CMD_STREAM = 0xEA,
	CMD_READ_DATA = 0xEB,
	CMD_WRAP_OFF = 0xEC,
	CMD_WRAP_ON = 0xEE,
	CMD_REMOTE = 0xF0,
	CMD_IDENTIFY = 0xF2,
	CMD_RATE = 0xF3,
	CMD_ENABLE = 0xF4,
	CMD_DISABLE = 0xF5,
	CMD_DEFAULTS = 0xF6,
	CMD_RESEND = 0xFE,
	CMD_RESET = 0xFF,
};

struct ps2mouse {
	struct vm *vm;
	struct ps2_host host;
	struct input_sink sink;
	struct ps2_queue reply, data;
	atomic_bool enabled;	/* reporting on; read by the router without the host lock */
	bool remote, wrap, scaling21;
	uint8_t id, rate, resolution;
	uint8_t rates[3];	/* the last three sample rates set, newest last */
	uint8_t param_cmd;
	uint8_t last_sent;
	uint32_t buttons;	/* INPUT_BTN_* held */
	int32_t acc_x, acc_y;	/* remote mode: movement not read yet (PS/2 sense: y up) */
};

static bool rates_were(const struct ps2mouse *m, uint8_t a, uint8_t b, uint8_t c)
{
	return m->rates[0] == a && m->rates[1] == b && m->rates[2] == c;
}

static void set_rate(struct ps2mouse *m, uint8_t rate)
{
	m->rate = rate;
	m->rates[0] = m->rates[1];
	m->rates[1] = m->rates[2];
	m->rates[2] = rate;
	/* The knocks of the IntelliMouse (200, 100, 80) and, once that, the Explorer (200, 200, 80). */
	if (m->id == 0 && rates_were(m, 200, 100, 80))
		m->id = 3;
	else if (m->id == 3 && rates_were(m, 200, 200, 80))
		m->id = 4;
}

/* ---- packets ---- */

static int32_t clamp(int64_t v, int32_t lim)
{
	return v > lim ? lim : v < -lim ? -lim : (int32_t)v;
}

/* 2:1 scaling as the mouse applies it to small movements; larger ones double. */
static int32_t scale21(int32_t d)
{
	static const int32_t small[6] = { 0, 1, 1, 3, 6, 9 };
	int32_t a = d < 0 ? -d : d;
	int32_t s = a <= 5 ? small[a] : (a > INT32_MAX / 2 ? INT32_MAX : 2 * a);

	return d < 0 ? -s : s;
}

static uint8_t byte0(const struct ps2mouse *m, int32_t dx, int32_t dy, bool ovf_x, bool ovf_y)
{
	uint8_t b = P0_ALWAYS;

	b |= m->buttons & INPUT_BTN_LEFT ? P0_LEFT : 0;
	b |= m->buttons & INPUT_BTN_RIGHT ? P0_RIGHT : 0;
	b |= m->buttons & INPUT_BTN_MIDDLE ? P0_MIDDLE : 0;
	b |= dx < 0 ? P0_XSIGN : 0;
	b |= dy < 0 ? P0_YSIGN : 0;
	b |= ovf_x ? P0_XOVF : 0;
	b |= ovf_y ? P0_YOVF : 0;
	return b;
}

/* Byte 3 for a wheel movement of z clicks up (|z| <= MAX_WHEEL). */
static uint8_t byte3(const struct ps2mouse *m, int32_t z)
{
	uint8_t b = (uint8_t)(-z) & 0x0F; /* the field counts towards the user */

	if (m->id == 3)
		return (uint8_t)(-z);
	b |= m->buttons & INPUT_BTN_SIDE ? P3_BTN4 : 0;
	b |= m->buttons & INPUT_BTN_EXTRA ? P3_BTN5 : 0;
	return b;
}

static unsigned packet_size(const struct ps2mouse *m)
{
	return m->id == 0 ? 3 : 4;
}

static void queue_packet(struct ps2mouse *m, struct ps2_queue *q, const uint8_t *p)
{
	if (ps2_queue_room(q) < packet_size(m))
		return; /* dropped whole; the next packet carries the buttons again */
	for (unsigned i = 0; i < packet_size(m); i++)
		ps2_queue_push(q, p[i]);
}

static void send_motion(struct ps2mouse *m, int32_t dx, int32_t dy, int32_t z)
{
	uint8_t p[4] = { byte0(m, dx, dy, false, false), (uint8_t)dx, (uint8_t)dy, 0 };

	if (m->id != 0)
		p[3] = byte3(m, z);
	queue_packet(m, &m->data, p);
}

/* Explorer 4.0 horizontal packet: no motion, bits 5:0 the clicks to the left. */
static void send_hwheel(struct ps2mouse *m, int32_t h)
{
	uint8_t p[4] = { byte0(m, 0, 0, false, false), 0, 0, (uint8_t)(P3_HWHEEL | ((uint8_t)(-h) & 0x3F)) };

	queue_packet(m, &m->data, p);
}

/* Splits a movement into packets; `force`: send one even without movement (buttons changed). */
static void stream(struct ps2mouse *m, int64_t dx, int64_t dy, int64_t z, int64_t h, bool force)
{
	if (m->id == 0)
		z = 0;
	if (m->id != 4)
		h = 0;
	while ((force || dx || dy || z) && ps2_queue_room(&m->data) >= packet_size(m)) {
		int32_t px = clamp(dx, MAX_DELTA), py = clamp(dy, MAX_DELTA), pz = clamp(z, MAX_WHEEL);

		send_motion(m, px, py, pz);
		dx -= px, dy -= py, z -= pz;
		force = false;
	}
	while (h && ps2_queue_room(&m->data) >= 4) {
		int32_t ph = clamp(h, MAX_HWHEEL);
		send_hwheel(m, ph);
		h -= ph;
	}
}

void ps2mouse_event(struct ps2mouse *m, const struct input_pointer_event *ev)
{
	int64_t dx = ev->x, dy = -(int64_t)ev->y; /* PS/2 y grows upwards */
	bool buttons_changed = ev->buttons != m->buttons;

	m->buttons = ev->buttons;
	if (!atomic_load(&m->enabled))
		return;
	if (m->remote) {
		m->acc_x = clamp(m->acc_x + dx, INT32_MAX / 2);
		m->acc_y = clamp(m->acc_y + dy, INT32_MAX / 2);
		return;
	}
	if (m->scaling21) {
		dx = scale21((int32_t)dx);
		dy = scale21(clamp(dy, INT32_MAX));
	}
	stream(m, dx, dy, ev->wheel_v, ev->wheel_h, buttons_changed);
}

/* The 9-bit field of a remote-mode packet: -256..255. */
static int32_t field9(int32_t v)
{
	return v > 255 ? 255 : v < -256 ? -256 : v;
}

/* EB: one packet with what accumulated; movement beyond the field sets the overflow bits. */
static void read_data(struct ps2mouse *m)
{
	int32_t dx = field9(m->acc_x), dy = field9(m->acc_y);
	bool ox = m->acc_x > 255 || m->acc_x < -256, oy = m->acc_y > 255 || m->acc_y < -256;
	uint8_t p[4] = { byte0(m, m->acc_x, m->acc_y, ox, oy), (uint8_t)dx, (uint8_t)dy, 0 };

	if (m->id != 0)
		p[3] = byte3(m, 0);
	queue_packet(m, &m->reply, p);
	m->acc_x = m->acc_y = 0;
}

/* ---- commands ---- */

static void reply(struct ps2mouse *m, uint8_t b)
{
	ps2_queue_push(&m->reply, b);
}

bool ps2mouse_read(struct ps2mouse *m, uint8_t *b)
{
	if (!ps2_queue_pop(&m->reply, b) && !ps2_queue_pop(&m->data, b))
		return false;
	m->last_sent = *b;
	return true;
}

static void defaults(struct ps2mouse *m)
{
	m->rate = DEFAULT_RATE;
	m->resolution = DEFAULT_RESOLUTION;
	m->scaling21 = false;
	m->remote = false;
	atomic_store(&m->enabled, false);
	m->acc_x = m->acc_y = 0;
	ps2_queue_clear(&m->data);
}

void ps2mouse_reset(struct ps2mouse *m)
{
	defaults(m);
	ps2_queue_clear(&m->reply);
	m->wrap = false;
	m->id = 0;
	memset(m->rates, 0, sizeof(m->rates));
	m->param_cmd = 0;
	m->last_sent = 0;
}

static void status(struct ps2mouse *m)
{
	uint8_t s = (m->remote ? ST_REMOTE : 0) | (atomic_load(&m->enabled) ? ST_ENABLED : 0) |
		    (m->scaling21 ? ST_SCALING : 0) | (m->buttons & INPUT_BTN_LEFT ? ST_LEFT : 0) |
		    (m->buttons & INPUT_BTN_MIDDLE ? ST_MIDDLE : 0) | (m->buttons & INPUT_BTN_RIGHT ? ST_RIGHT : 0);

	reply(m, PS2_ACK);
	reply(m, s);
	reply(m, m->resolution);
	reply(m, m->rate);
}

static void parameter(struct ps2mouse *m, uint8_t cmd, uint8_t v)
{
	if (cmd == CMD_RESOLUTION && v <= 3) {
		m->resolution = v;
		reply(m, PS2_ACK);
	} else if (cmd == CMD_RATE && v != 0) {
		set_rate(m, v);
		reply(m, PS2_ACK);
	} else {
		reply(m, PS2_RESEND);
	}
}

/* Commands that only change a mode (and stop streaming: the stream restarts from empty). */
static bool simple_command(struct ps2mouse *m, uint8_t cmd)
{
	switch (cmd) {
	case CMD_SCALING_1_1:
	case CMD_SCALING_2_1:
		m->scaling21 = cmd == CMD_SCALING_2_1;
		break;
	case CMD_STREAM:
	case CMD_REMOTE:
		m->remote = cmd == CMD_REMOTE;
		m->acc_x = m->acc_y = 0;
		break;
	case CMD_WRAP_ON:
		m->wrap = true;
		break;
	case CMD_WRAP_OFF:
		m->wrap = false;
		break;
	case CMD_ENABLE:
		atomic_store(&m->enabled, true);
		break;
	case CMD_DISABLE:
	case CMD_DEFAULTS:
		defaults(m);
		break;
	default:
		return false;
	}
	ps2_queue_clear(&m->data);
	reply(m, PS2_ACK);
	return true;
}

static void command(struct ps2mouse *m, uint8_t cmd)
{
	if (simple_command(m, cmd))
		return;
	switch (cmd) {
	case CMD_RESOLUTION:
	case CMD_RATE:
		m->param_cmd = cmd;
		reply(m, PS2_ACK);
		break;
	case CMD_STATUS:
		status(m);
		break;
	case CMD_READ_DATA:
		reply(m, PS2_ACK);
		read_data(m);
		break;
	case CMD_IDENTIFY:
		reply(m, PS2_ACK);
		reply(m, m->id);
		break;
	case CMD_RESEND:
		reply(m, m->last_sent);
		break;
	case CMD_RESET:
		ps2mouse_reset(m);
		reply(m, PS2_ACK);
		reply(m, PS2_BAT_OK);
		reply(m, 0x00); /* the ID follows the self-test result */
		break;
	default:
		reply(m, PS2_RESEND);
		break;
	}
}

void ps2mouse_write(struct ps2mouse *m, uint8_t b)
{
	uint8_t cmd = m->param_cmd;

	m->param_cmd = 0;
	/* In wrap mode everything is echoed but the two commands that end it. */
	if (m->wrap && b != CMD_WRAP_OFF && b != CMD_RESET) {
		reply(m, b);
		return;
	}
	if (cmd) {
		parameter(m, cmd, b);
		return;
	}
	command(m, b);
}

/* ---- input sink ---- */

static bool sink_active(void *opaque)
{
	struct ps2mouse *m = opaque;

	return atomic_load(&m->enabled);
}

static void sink_pointer(void *opaque, const struct input_pointer_event *ev)
{
	struct ps2mouse *m = opaque;

	m->host.lock(m->host.ctx);
	ps2mouse_event(m, ev);
	m->host.unlock(m->host.ctx);
}

struct ps2mouse *ps2mouse_new(struct vm *vm, const struct ps2_host *host)
{
	struct ps2mouse *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->vm = vm;
	m->host = *host;
	ps2mouse_reset(m);
	m->sink = (struct input_sink){ .name = "ps2-mouse",
				       .kind = INPUT_SINK_POINTER,
				       .absolute = false,
				       .priority = 10,
				       .opaque = m,
				       .active = sink_active,
				       .pointer = sink_pointer };
	input_register(vm, &m->sink);
	return m;
}

void ps2mouse_free(struct ps2mouse *m)
{
	if (!m)
		return;
	input_unregister(m->vm, &m->sink);
	free(m);
}

/* ---- snapshot ---- */

void ps2mouse_save(struct ps2mouse *m, struct state_writer *w)
{
	uint8_t buf[PS2_QUEUE_SIZE];

	state_put_bytes(w, "reply", buf, ps2_queue_linear(&m->reply, buf));
	state_put_bytes(w, "data", buf, ps2_queue_linear(&m->data, buf));
	state_put_bool(w, "enabled", atomic_load(&m->enabled));
	state_put_bool(w, "remote", m->remote);
	state_put_bool(w, "wrap", m->wrap);
	state_put_bool(w, "scaling21", m->scaling21);
	state_put_u64(w, "id", m->id);
	state_put_u64(w, "rate", m->rate);
	state_put_u64(w, "resolution", m->resolution);
	state_put_bytes(w, "rates", m->rates, sizeof(m->rates));
	state_put_u64(w, "param_cmd", m->param_cmd);
	state_put_u64(w, "last_sent", m->last_sent);
	state_put_u64(w, "buttons", m->buttons);
	state_put_i64(w, "acc_x", m->acc_x);
	state_put_i64(w, "acc_y", m->acc_y);
}

static int get_acc(struct state_reader *r, const char *key, int32_t *out)
{
	int64_t v;

	if (state_get_i64(r, key, &v) < 0 || v > INT32_MAX / 2 || v < -(INT32_MAX / 2))
		return -1;
	*out = (int32_t)v;
	return 0;
}

int ps2mouse_restore(struct ps2mouse *m, struct state_reader *r)
{
	uint64_t buttons;
	bool enabled;

	if (ps2_queue_restore(r, "reply", &m->reply) < 0 || ps2_queue_restore(r, "data", &m->data) < 0 ||
	    state_get_bool(r, "enabled", &enabled) < 0 || state_get_bool(r, "remote", &m->remote) < 0 ||
	    state_get_bool(r, "wrap", &m->wrap) < 0 || state_get_bool(r, "scaling21", &m->scaling21) < 0 ||
	    state_get_u8(r, "id", 4, &m->id) < 0 || (m->id != 0 && m->id != 3 && m->id != 4) ||
	    state_get_u8(r, "rate", 0xFF, &m->rate) < 0 || state_get_u8(r, "resolution", 3, &m->resolution) < 0 ||
	    state_get_bytes(r, "rates", m->rates, sizeof(m->rates)) < 0 ||
	    state_get_u8(r, "param_cmd", 0xFF, &m->param_cmd) < 0 || state_get_u8(r, "last_sent", 0xFF, &m->last_sent) < 0 ||
	    state_get_u64(r, "buttons", &buttons) < 0 || get_acc(r, "acc_x", &m->acc_x) < 0 ||
	    get_acc(r, "acc_y", &m->acc_y) < 0)
		return -1;
	if (m->param_cmd != 0 && m->param_cmd != CMD_RATE && m->param_cmd != CMD_RESOLUTION)
		return -1;
	m->buttons = (uint32_t)(buttons & 0x1F);
	atomic_store(&m->enabled, enabled);
	return 0;
}
