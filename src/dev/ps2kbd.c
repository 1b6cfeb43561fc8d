/*
 * PS/2 keyboard: an MF2 keyboard (ID AB 83) speaking scan code set 2, or
 * set 1 when the guest selects it (F0 01). Set 3 is refused with a resend
 * request, as keyboards without it do. Scan codes follow Microsoft's
 * "Keyboard Scan Code Specification" for the 105-key layout, F13-F24, the
 * Japanese/Brazilian extras and the consumer keys of its set 2 table.
 *
 * Replies to commands go ahead of queued scan codes (a guest waiting for
 * its ACK must not find key bytes first), but queued keys are kept: a
 * keyboard that dropped them on every LED command would lose the release
 * of the Caps Lock that caused it.
 *
 * Typematic repeat is left to the user interface, which repeats key-down
 * events itself; the rate the guest sets is only stored.
 */
#include "dev/ps2kbd.h"

#include <linux/input-event-codes.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/input.h"
#include "core/log.h"
#include "snapshot/state.h"

#define E0 0x01 /* the key's codes have the E0 prefix (both sets) */

struct scancode {
	uint16_t evdev;
	uint8_t set1, set2, flags;
};

/* Pause and PrintScreen have sequences of their own (encode_special). */
static const struct scancode keys[] = {
	{ KEY_ESC, 0x01, 0x76, 0 },	    { KEY_1, 0x02, 0x16, 0 },
	{ KEY_2, 0x03, 0x1E, 0 },	    { KEY_3, 0x04, 0x26, 0 },
	{ KEY_4, 0x05, 0x25, 0 },	    { KEY_5, 0x06, 0x2E, 0 },
	{ KEY_6, 0x07, 0x36, 0 },	    { KEY_7, 0x08, 0x3D, 0 },
	{ KEY_8, 0x09, 0x3E, 0 },	    { KEY_9, 0x0A, 0x46, 0 },
	{ KEY_0, 0x0B, 0x45, 0 },	    { KEY_MINUS, 0x0C, 0x4E, 0 },
	{ KEY_EQUAL, 0x0D, 0x55, 0 },	    { KEY_BACKSPACE, 0x0E, 0x66, 0 },
	{ KEY_TAB, 0x0F, 0x0D, 0 },	    { KEY_Q, 0x10, 0x15, 0 },
	{ KEY_W, 0x11, 0x1D, 0 },	    { KEY_E, 0x12, 0x24, 0 },
	{ KEY_R, 0x13, 0x2D, 0 },	    { KEY_T, 0x14, 0x2C, 0 },
	{ KEY_Y, 0x15, 0x35, 0 },	    { KEY_U, 0x16, 0x3C, 0 },
	{ KEY_I, 0x17, 0x43, 0 },	    { KEY_O, 0x18, 0x44, 0 },
	{ KEY_P, 0x19, 0x4D, 0 },	    { KEY_LEFTBRACE, 0x1A, 0x54, 0 },
	{ KEY_RIGHTBRACE, 0x1B, 0x5B, 0 },  { KEY_ENTER, 0x1C, 0x5A, 0 },
	{ KEY_LEFTCTRL, 0x1D, 0x14, 0 },    { KEY_A, 0x1E, 0x1C, 0 },
	{ KEY_S, 0x1F, 0x1B, 0 },	    { KEY_D, 0x20, 0x23, 0 },
	{ KEY_F, 0x21, 0x2B, 0 },	    { KEY_G, 0x22, 0x34, 0 },
	{ KEY_H, 0x23, 0x33, 0 },	    { KEY_J, 0x24, 0x3B, 0 },
	{ KEY_K, 0x25, 0x42, 0 },	    { KEY_L, 0x26, 0x4B, 0 },
	{ KEY_SEMICOLON, 0x27, 0x4C, 0 },   { KEY_APOSTROPHE, 0x28, 0x52, 0 },
	{ KEY_GRAVE, 0x29, 0x0E, 0 },	    { KEY_LEFTSHIFT, 0x2A, 0x12, 0 },
	{ KEY_BACKSLASH, 0x2B, 0x5D, 0 },   { KEY_Z, 0x2C, 0x1A, 0 },
	{ KEY_X, 0x2D, 0x22, 0 },	    { KEY_C, 0x2E, 0x21, 0 },
	{ KEY_V, 0x2F, 0x2A, 0 },	    { KEY_B, 0x30, 0x32, 0 },
	{ KEY_N, 0x31, 0x31, 0 },	    { KEY_M, 0x32, 0x3A, 0 },
	{ KEY_COMMA, 0x33, 0x41, 0 },	    { KEY_DOT, 0x34, 0x49, 0 },
	{ KEY_SLASH, 0x35, 0x4A, 0 },	    { KEY_RIGHTSHIFT, 0x36, 0x59, 0 },
	{ KEY_KPASTERISK, 0x37, 0x7C, 0 },  { KEY_LEFTALT, 0x38, 0x11, 0 },
	{ KEY_SPACE, 0x39, 0x29, 0 },	    { KEY_CAPSLOCK, 0x3A, 0x58, 0 },
	{ KEY_F1, 0x3B, 0x05, 0 },	    { KEY_F2, 0x3C, 0x06, 0 },
	{ KEY_F3, 0x3D, 0x04, 0 },	    { KEY_F4, 0x3E, 0x0C, 0 },
	{ KEY_F5, 0x3F, 0x03, 0 },	    { KEY_F6, 0x40, 0x0B, 0 },
	{ KEY_F7, 0x41, 0x83, 0 },	    { KEY_F8, 0x42, 0x0A, 0 },
	{ KEY_F9, 0x43, 0x01, 0 },	    { KEY_F10, 0x44, 0x09, 0 },
	{ KEY_NUMLOCK, 0x45, 0x77, 0 },	    { KEY_SCROLLLOCK, 0x46, 0x7E, 0 },
	{ KEY_KP7, 0x47, 0x6C, 0 },	    { KEY_KP8, 0x48, 0x75, 0 },
	{ KEY_KP9, 0x49, 0x7D, 0 },	    { KEY_KPMINUS, 0x4A, 0x7B, 0 },
	{ KEY_KP4, 0x4B, 0x6B, 0 },	    { KEY_KP5, 0x4C, 0x73, 0 },
	{ KEY_KP6, 0x4D, 0x74, 0 },	    { KEY_KPPLUS, 0x4E, 0x79, 0 },
	{ KEY_KP1, 0x4F, 0x69, 0 },	    { KEY_KP2, 0x50, 0x72, 0 },
	{ KEY_KP3, 0x51, 0x7A, 0 },	    { KEY_KP0, 0x52, 0x70, 0 },
	{ KEY_KPDOT, 0x53, 0x71, 0 },	    { KEY_102ND, 0x56, 0x61, 0 },
	{ KEY_F11, 0x57, 0x78, 0 },	    { KEY_F12, 0x58, 0x07, 0 },
	{ KEY_KPEQUAL, 0x59, 0x0F, 0 },	    { KEY_F13, 0x64, 0x08, 0 },
	{ KEY_F14, 0x65, 0x10, 0 },	    { KEY_F15, 0x66, 0x18, 0 },
	{ KEY_F16, 0x67, 0x20, 0 },	    { KEY_F17, 0x68, 0x28, 0 },
	{ KEY_F18, 0x69, 0x30, 0 },	    { KEY_F19, 0x6A, 0x38, 0 },
	{ KEY_F20, 0x6B, 0x40, 0 },	    { KEY_F21, 0x6C, 0x48, 0 },
	{ KEY_F22, 0x6D, 0x50, 0 },	    { KEY_F23, 0x6E, 0x57, 0 },
	{ KEY_F24, 0x76, 0x5F, 0 },	    { KEY_KATAKANAHIRAGANA, 0x70, 0x13, 0 },
	{ KEY_RO, 0x73, 0x51, 0 },	    { KEY_HENKAN, 0x79, 0x64, 0 },
	{ KEY_MUHENKAN, 0x7B, 0x67, 0 },    { KEY_YEN, 0x7D, 0x6A, 0 },
	{ KEY_KPCOMMA, 0x7E, 0x6D, 0 },
	/* E0 keys of the 105-key layout */
	{ KEY_KPENTER, 0x1C, 0x5A, E0 },    { KEY_RIGHTCTRL, 0x1D, 0x14, E0 },
	{ KEY_KPSLASH, 0x35, 0x4A, E0 },    { KEY_RIGHTALT, 0x38, 0x11, E0 },
	{ KEY_HOME, 0x47, 0x6C, E0 },	    { KEY_UP, 0x48, 0x75, E0 },
	{ KEY_PAGEUP, 0x49, 0x7D, E0 },	    { KEY_LEFT, 0x4B, 0x6B, E0 },
	{ KEY_RIGHT, 0x4D, 0x74, E0 },	    { KEY_END, 0x4F, 0x69, E0 },
	{ KEY_DOWN, 0x50, 0x72, E0 },	    { KEY_PAGEDOWN, 0x51, 0x7A, E0 },
	{ KEY_INSERT, 0x52, 0x70, E0 },	    { KEY_DELETE, 0x53, 0x71, E0 },
	{ KEY_LEFTMETA, 0x5B, 0x1F, E0 },   { KEY_RIGHTMETA, 0x5C, 0x27, E0 },
	{ KEY_COMPOSE, 0x5D, 0x2F, E0 },    { KEY_MENU, 0x5D, 0x2F, E0 },
	/* consumer and ACPI keys */
	{ KEY_PREVIOUSSONG, 0x10, 0x15, E0 }, { KEY_NEXTSONG, 0x19, 0x4D, E0 },
	{ KEY_MUTE, 0x20, 0x23, E0 },	      { KEY_CALC, 0x21, 0x2B, E0 },
	{ KEY_PLAYPAUSE, 0x22, 0x34, E0 },    { KEY_STOPCD, 0x24, 0x3B, E0 },
	{ KEY_VOLUMEDOWN, 0x2E, 0x21, E0 },   { KEY_VOLUMEUP, 0x30, 0x32, E0 },
	{ KEY_HOMEPAGE, 0x32, 0x3A, E0 },     { KEY_POWER, 0x5E, 0x37, E0 },
	{ KEY_SLEEP, 0x5F, 0x3F, E0 },	      { KEY_WAKEUP, 0x63, 0x5E, E0 },
	{ KEY_SEARCH, 0x65, 0x10, E0 },	      { KEY_BOOKMARKS, 0x66, 0x18, E0 },
	{ KEY_REFRESH, 0x67, 0x20, E0 },      { KEY_STOP, 0x68, 0x28, E0 },
	{ KEY_FORWARD, 0x69, 0x30, E0 },      { KEY_BACK, 0x6A, 0x38, E0 },
	{ KEY_COMPUTER, 0x6B, 0x40, E0 },     { KEY_MAIL, 0x6C, 0x48, E0 },
	{ KEY_MEDIA, 0x6D, 0x50, E0 },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

#define SET1_BREAK 0x80
#define SET2_BREAK 0xF0
#define OVERRUN_SET1 0xFF
#define OVERRUN_SET2 0x00
#define KBD_ID1 0xAB
#define KBD_ID2 0x83
#define ECHO 0xEE
#define DEFAULT_TYPEMATIC 0x2B /* 10.9 characters/s after 500 ms */

enum {
	CMD_SET_LEDS = 0xED,
	CMD_ECHO = 0xEE,
	CMD_SCANCODE_SET = 0xF0,
	CMD_IDENTIFY = 0xF2,
	CMD_TYPEMATIC = 0xF3,
	CMD_ENABLE = 0xF4,
	CMD_DISABLE = 0xF5,
	CMD_DEFAULTS = 0xF6,
	CMD_SET3_FIRST = 0xF7, /* F7-FD: set 3 key types */
	CMD_SET3_LAST = 0xFD,
	CMD_RESEND = 0xFE,
	CMD_RESET = 0xFF,
};

struct ps2kbd {
	struct vm *vm;
	struct ps2_host host;
	struct input_sink sink;
	struct ps2_queue reply;	 /* answers to commands: sent first */
	struct ps2_queue data;	 /* scan codes */
	atomic_bool scanning;	 /* read by the router without the host lock */
	unsigned set;		 /* 1 or 2 */
	uint8_t param_cmd;	 /* command waiting for its parameter byte, or 0 */
	uint8_t leds, typematic;
	uint8_t last_sent;	 /* for CMD_RESEND */
	bool overrun;		 /* an overrun code is queued: no second one */
	bool leds_changed;
};

/* ---- scan codes ---- */

static const struct scancode *find_key(unsigned evdev)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].evdev == evdev)
			return &keys[i];
	return NULL;
}

bool ps2kbd_has_key(unsigned evdev)
{
	return evdev == KEY_PAUSE || evdev == KEY_SYSRQ || find_key(evdev);
}

static size_t put(uint8_t *out, size_t n, const uint8_t *bytes, size_t len)
{
	memcpy(out + n, bytes, len);
	return n + len;
}

/* Pause (make only: it has no break code) and PrintScreen, as a keyboard sends them unshifted. */
static size_t encode_special(unsigned set, unsigned evdev, bool down, uint8_t *out)
{
	static const uint8_t pause1[] = { 0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5 };
	static const uint8_t pause2[] = { 0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77 };
	static const uint8_t prt1_make[] = { 0xE0, 0x2A, 0xE0, 0x37 }, prt1_break[] = { 0xE0, 0xB7, 0xE0, 0xAA };
	static const uint8_t prt2_make[] = { 0xE0, 0x12, 0xE0, 0x7C };
	static const uint8_t prt2_break[] = { 0xE0, 0xF0, 0x7C, 0xE0, 0xF0, 0x12 };

	if (evdev == KEY_PAUSE) {
		if (!down)
			return 0;
		return set == 1 ? put(out, 0, pause1, sizeof(pause1)) : put(out, 0, pause2, sizeof(pause2));
	}
	if (set == 1)
		return down ? put(out, 0, prt1_make, 4) : put(out, 0, prt1_break, 4);
	return down ? put(out, 0, prt2_make, 4) : put(out, 0, prt2_break, 6);
}

size_t ps2kbd_encode(unsigned set, unsigned evdev, bool down, uint8_t *out)
{
	const struct scancode *k;
	size_t n = 0;

	if (evdev == KEY_PAUSE || evdev == KEY_SYSRQ)
		return encode_special(set, evdev, down, out);
	if (!(k = find_key(evdev)))
		return 0;
	if (k->flags & E0)
		out[n++] = 0xE0;
	if (set == 1) {
		out[n++] = down ? k->set1 : k->set1 | SET1_BREAK;
		return n;
	}
	if (!down)
		out[n++] = SET2_BREAK;
	out[n++] = k->set2;
	return n;
}

/*
 * The 8042 maps each set 2 code to the set 1 code of the same key, so the
 * translation follows from the key table. Prefixes and replies (>= 0x80)
 * pass unchanged, except F7's 0x83; codes no key uses pass unchanged too
 * (this keyboard never sends them), but for the set 2 overrun code and
 * the set number 2 that F0 00 reports.
 */
uint8_t ps2kbd_translate(uint8_t b)
{
	if (b == OVERRUN_SET2)
		return OVERRUN_SET1;
	if (b == 0x02)
		return 0x41;
	if (b >= 0x80 && b != 0x83)
		return b;
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].set2 == b)
			return keys[i].set1;
	return b;
}

/* ---- queues ---- */

static void reply(struct ps2kbd *k, uint8_t b)
{
	ps2_queue_push(&k->reply, b);
}

bool ps2kbd_read(struct ps2kbd *k, uint8_t *b)
{
	if (!ps2_queue_pop(&k->reply, b) && !ps2_queue_pop(&k->data, b))
		return false;
	if (!k->data.count)
		k->overrun = false;
	k->last_sent = *b;
	return true;
}

void ps2kbd_key(struct ps2kbd *k, unsigned evdev, bool down)
{
	uint8_t seq[8];
	size_t n;

	if (!atomic_load(&k->scanning))
		return;
	n = ps2kbd_encode(k->set, evdev, down, seq);
	if (!n)
		return;
	/* A sequence goes whole or not at all; a full buffer ends with one overrun code. */
	if (ps2_queue_room(&k->data) < n + 1) {
		if (!k->overrun && ps2_queue_room(&k->data) >= 1)
			ps2_queue_push(&k->data, k->set == 1 ? OVERRUN_SET1 : OVERRUN_SET2);
		k->overrun = true;
		return;
	}
	for (size_t i = 0; i < n; i++)
		ps2_queue_push(&k->data, seq[i]);
}

/* ---- commands ---- */

static void set_leds(struct ps2kbd *k, uint8_t leds)
{
	if (leds != k->leds)
		k->leds_changed = true;
	k->leds = leds;
}

static void defaults(struct ps2kbd *k)
{
	k->typematic = DEFAULT_TYPEMATIC;
	ps2_queue_clear(&k->data);
	k->overrun = false;
}

void ps2kbd_reset(struct ps2kbd *k)
{
	defaults(k);
	ps2_queue_clear(&k->reply);
	k->set = 2;
	k->param_cmd = 0;
	k->last_sent = 0;
	set_leds(k, 0);
	atomic_store(&k->scanning, true);
}

static void parameter(struct ps2kbd *k, uint8_t cmd, uint8_t v)
{
	switch (cmd) {
	case CMD_SET_LEDS:
		set_leds(k, v & 0x07);
		reply(k, PS2_ACK);
		break;
	case CMD_TYPEMATIC:
		k->typematic = v & 0x7F;
		reply(k, PS2_ACK);
		break;
	case CMD_SCANCODE_SET:
		if (v == 0) {
			reply(k, PS2_ACK);
			reply(k, (uint8_t)k->set);
		} else if (v == 1 || v == 2) {
			k->set = v;
			ps2_queue_clear(&k->data); /* codes of the old set would be misread */
			reply(k, PS2_ACK);
		} else {
			reply(k, PS2_RESEND);
		}
		break;
	default:
		break;
	}
}

static void command(struct ps2kbd *k, uint8_t cmd)
{
	switch (cmd) {
	case CMD_SET_LEDS:
	case CMD_TYPEMATIC:
	case CMD_SCANCODE_SET:
		k->param_cmd = cmd;
		reply(k, PS2_ACK);
		break;
	case CMD_ECHO:
		reply(k, ECHO);
		break;
	case CMD_IDENTIFY:
		reply(k, PS2_ACK);
		reply(k, KBD_ID1);
		reply(k, KBD_ID2);
		break;
	case CMD_ENABLE:
		ps2_queue_clear(&k->data);
		k->overrun = false;
		atomic_store(&k->scanning, true);
		reply(k, PS2_ACK);
		break;
	case CMD_DISABLE:
	case CMD_DEFAULTS:
		defaults(k);
		atomic_store(&k->scanning, cmd == CMD_DEFAULTS);
		reply(k, PS2_ACK);
		break;
	case CMD_RESEND:
		reply(k, k->last_sent);
		break;
	case CMD_RESET:
		ps2kbd_reset(k);
		reply(k, PS2_ACK);
		reply(k, PS2_BAT_OK);
		break;
	default:
		/* F7-FD (set 3 key types) are acknowledged and have no effect in sets 1 and 2. */
		reply(k, cmd >= CMD_SET3_FIRST && cmd <= CMD_SET3_LAST ? PS2_ACK : PS2_RESEND);
		break;
	}
}

/* A byte >= 0x80 is always a command: it also cancels a command waiting for its parameter. */
void ps2kbd_write(struct ps2kbd *k, uint8_t b)
{
	uint8_t cmd = k->param_cmd;

	k->param_cmd = 0;
	if (cmd && b < 0x80) {
		parameter(k, cmd, b);
		return;
	}
	if (cmd == 0 && b < 0x80) {
		reply(k, PS2_RESEND);
		return;
	}
	command(k, b);
}

bool ps2kbd_take_leds(struct ps2kbd *k, unsigned *leds)
{
	bool changed = k->leds_changed;

	k->leds_changed = false;
	/* PS/2 LED bits (scroll 0, num 1, caps 2) are the INPUT_LED_* bits. */
	*leds = k->leds;
	return changed;
}

/* ---- input sink ---- */

static bool sink_active(void *opaque)
{
	struct ps2kbd *k = opaque;

	return atomic_load(&k->scanning);
}

static void sink_key(void *opaque, unsigned evdev, bool down)
{
	struct ps2kbd *k = opaque;

	k->host.lock(k->host.ctx);
	ps2kbd_key(k, evdev, down);
	k->host.unlock(k->host.ctx);
}

struct ps2kbd *ps2kbd_new(struct vm *vm, const struct ps2_host *host)
{
	struct ps2kbd *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	k->vm = vm;
	k->host = *host;
	ps2kbd_reset(k);
	k->leds_changed = false;
	k->sink = (struct input_sink){ .name = "ps2-kbd",
				       .kind = INPUT_SINK_KEYBOARD,
				       .priority = 10,
				       .opaque = k,
				       .active = sink_active,
				       .key = sink_key };
	input_register(vm, &k->sink);
	return k;
}

void ps2kbd_free(struct ps2kbd *k)
{
	if (!k)
		return;
	input_unregister(k->vm, &k->sink);
	free(k);
}

/* ---- snapshot ---- */

void ps2kbd_save(struct ps2kbd *k, struct state_writer *w)
{
	uint8_t buf[PS2_QUEUE_SIZE];

	state_put_bytes(w, "reply", buf, ps2_queue_linear(&k->reply, buf));
	state_put_bytes(w, "data", buf, ps2_queue_linear(&k->data, buf));
	state_put_bool(w, "scanning", atomic_load(&k->scanning));
	state_put_u64(w, "set", k->set);
	state_put_u64(w, "param_cmd", k->param_cmd);
	state_put_u64(w, "leds", k->leds);
	state_put_u64(w, "typematic", k->typematic);
	state_put_u64(w, "last_sent", k->last_sent);
	state_put_bool(w, "overrun", k->overrun);
}

int ps2kbd_restore(struct ps2kbd *k, struct state_reader *r)
{
	uint8_t set, param;
	bool scanning;

	if (ps2_queue_restore(r, "reply", &k->reply) < 0 || ps2_queue_restore(r, "data", &k->data) < 0 ||
	    state_get_bool(r, "scanning", &scanning) < 0 || state_get_u8(r, "set", 2, &set) < 0 || set < 1 ||
	    state_get_u8(r, "param_cmd", 0xFF, &param) < 0 || state_get_u8(r, "leds", 7, &k->leds) < 0 ||
	    state_get_u8(r, "typematic", 0x7F, &k->typematic) < 0 || state_get_u8(r, "last_sent", 0xFF, &k->last_sent) < 0 ||
	    state_get_bool(r, "overrun", &k->overrun) < 0)
		return -1;
	if (param != 0 && param != CMD_SET_LEDS && param != CMD_TYPEMATIC && param != CMD_SCANCODE_SET)
		return -1;
	k->set = set;
	k->param_cmd = param;
	atomic_store(&k->scanning, scanning);
	k->leds_changed = true; /* the UI learns the restored LEDs */
	return 0;
}
