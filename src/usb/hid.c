/*
 * USB HID devices behind the xHCI controller: an absolute-pointer tablet
 * and a boot-protocol keyboard (HID 1.11), both high-speed USB 2.0 devices
 * with one configuration, one interface and one interrupt IN endpoint
 * (0x81). Both register input sinks (priority 20) that are active once the
 * guest has set a configuration.
 *
 * Tablet report (7 bytes): buttons 1-5 (bits 0-4), X and Y as 16-bit
 * little-endian 0..0x7FFF, vertical wheel and AC Pan (horizontal wheel) as
 * signed 8-bit clicks. Interface subclass 0: the tablet has no boot
 * protocol, so guest drivers always parse its report descriptor.
 *
 * Keyboard report: the 8-byte boot report (modifiers, reserved, six key
 * usages) in both protocols, so SET_PROTOCOL only changes what
 * GET_PROTOCOL answers. LEDs arrive as SET_REPORT output reports.
 * Keys without a Keyboard/Keypad page usage (media keys on the Consumer
 * page, power/sleep on the Generic Desktop page) are not reported.
 */
#include <stdlib.h>
#include <string.h>

#include <linux/input-event-codes.h>

#include "core/input.h"
#include "core/log.h"
#include "snapshot/state.h"
#include "usb/usb.h"

#define HID_DT_HID 0x21
#define HID_DT_REPORT 0x22
#define HID_GET_REPORT 0x01
#define HID_GET_IDLE 0x02
#define HID_GET_PROTOCOL 0x03
#define HID_SET_REPORT 0x09
#define HID_SET_IDLE 0x0A
#define HID_SET_PROTOCOL 0x0B

#define REPORT_MAX 8
#define QUEUE_LEN 16  /* reports waiting for the guest to poll */
#define EP_IN 1

struct hid_info {
	const char *product;
	uint16_t product_id;
	uint8_t subclass, protocol;
	const uint8_t *report_desc;
	unsigned report_desc_len;
	unsigned report_len;
};

struct hid {
	struct usb_device usb;
	struct vm *vm;
	const struct hid_info *info;
	struct input_sink sink;
	bool configured;       /* read locklessly by active() */
	bool halted;           /* interrupt endpoint halted by SET_FEATURE */
	uint8_t idle, protocol;
	/* Queue of reports not yet fetched; the newest is also the current state. */
	uint8_t queue[QUEUE_LEN][REPORT_MAX];
	unsigned q_head, q_count;
	uint8_t state[REPORT_MAX];
	/* keyboard */
	uint8_t leds;
	bool leds_dirty;
	uint8_t keys[6];
};

/* ---- descriptors ---- */

static const uint8_t tablet_report_desc[] = {
	0x05, 0x01, 0x09, 0x02, 0xA1, 0x01,       /* Generic Desktop, Mouse, Application */
	0x09, 0x01, 0xA1, 0x00,                   /* Pointer, Physical */
	0x05, 0x09, 0x19, 0x01, 0x29, 0x05,       /* Buttons 1..5 */
	0x15, 0x00, 0x25, 0x01, 0x95, 0x05, 0x75, 0x01, 0x81, 0x02,
	0x95, 0x01, 0x75, 0x03, 0x81, 0x01,       /* padding */
	0x05, 0x01, 0x09, 0x30, 0x09, 0x31,       /* X, Y */
	0x15, 0x00, 0x26, 0xFF, 0x7F, 0x35, 0x00, 0x46, 0xFF, 0x7F,
	0x75, 0x10, 0x95, 0x02, 0x81, 0x02,       /* absolute */
	0x09, 0x38,                               /* Wheel */
	0x15, 0x81, 0x25, 0x7F, 0x35, 0x00, 0x45, 0x00,
	0x75, 0x08, 0x95, 0x01, 0x81, 0x06,       /* relative */
	0x05, 0x0C, 0x0A, 0x38, 0x02,             /* Consumer, AC Pan */
	0x15, 0x81, 0x25, 0x7F, 0x75, 0x08, 0x95, 0x01, 0x81, 0x06,
	0xC0, 0xC0,
};

static const uint8_t kbd_report_desc[] = {
	0x05, 0x01, 0x09, 0x06, 0xA1, 0x01,       /* Generic Desktop, Keyboard, Application */
	0x05, 0x07, 0x19, 0xE0, 0x29, 0xE7,       /* modifiers */
	0x15, 0x00, 0x25, 0x01, 0x75, 0x01, 0x95, 0x08, 0x81, 0x02,
	0x95, 0x01, 0x75, 0x08, 0x81, 0x01,       /* reserved byte */
	0x05, 0x08, 0x19, 0x01, 0x29, 0x05,       /* LEDs: Num, Caps, Scroll, Compose, Kana */
	0x95, 0x05, 0x75, 0x01, 0x91, 0x02,
	0x95, 0x01, 0x75, 0x03, 0x91, 0x01,       /* LED padding */
	0x05, 0x07, 0x19, 0x00, 0x2A, 0xFF, 0x00, /* key array */
	0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08, 0x95, 0x06, 0x81, 0x00,
	0xC0,
};

static const struct hid_info tablet_info = {
	.product = "USB tablet", .product_id = 0x0001, .subclass = 0, .protocol = 0,
	.report_desc = tablet_report_desc, .report_desc_len = sizeof(tablet_report_desc), .report_len = 7,
};

static const struct hid_info kbd_info = {
	.product = "USB keyboard", .product_id = 0x0002, .subclass = 1, .protocol = 1,
	.report_desc = kbd_report_desc, .report_desc_len = sizeof(kbd_report_desc), .report_len = 8,
};

/*
 * pid.codes (open hardware vendor 0x1209) test product IDs: no driver has
 * quirks for them, unlike reused IDs of real devices or of Linux's root hubs.
 */
#define VENDOR_ID 0x1209
#define CONFIG_LEN (9 + 9 + 9 + 7)

static unsigned device_desc(const struct hid_info *in, uint8_t *b)
{
	const uint8_t d[18] = {
		18, USB_DT_DEVICE, 0x00, 0x02, /* bcdUSB 2.00 */
		0, 0, 0, 64,                   /* class per interface, EP0 max packet 64 */
		VENDOR_ID & 0xff, VENDOR_ID >> 8, in->product_id & 0xff, in->product_id >> 8,
		0x00, 0x01,                    /* bcdDevice 1.00 */
		1, 2, 3, 1,                    /* strings, one configuration */
	};
	memcpy(b, d, sizeof(d));
	return sizeof(d);
}

static unsigned config_desc(const struct hid_info *in, uint8_t *b)
{
	const uint8_t d[CONFIG_LEN] = {
		9, USB_DT_CONFIG, CONFIG_LEN, 0, 1, 1, 4, 0xA0, 50,   /* remote wakeup, 100 mA */
		9, USB_DT_INTERFACE, 0, 0, 1, 3, in->subclass, in->protocol, 0,
		/* HID descriptor: bcdHID 1.11 little-endian, one report descriptor */
		9, HID_DT_HID, 0x11, 0x01, 0, 1, HID_DT_REPORT,
		(uint8_t)(in->report_desc_len & 0xff), (uint8_t)(in->report_desc_len >> 8),
		/* interrupt IN 0x81, 8 bytes, 2^(4-1) microframes = 1 ms */
		7, USB_DT_ENDPOINT, 0x80 | EP_IN, 3, 8, 0, 4,
	};
	memcpy(b, d, sizeof(d));
	return sizeof(d);
}

/* String descriptor `idx` as UTF-16LE (ASCII sources); 0 when there is none. */
static unsigned string_desc(const struct hid_info *in, unsigned idx, uint8_t *b)
{
	const char *s;
	unsigned n;

	if (idx == 0) {
		const uint8_t langs[4] = { 4, USB_DT_STRING, 0x09, 0x04 }; /* en-US */
		memcpy(b, langs, sizeof(langs));
		return sizeof(langs);
	}
	s = idx == 1 ? "hyve" : idx == 2 ? in->product : idx == 3 ? "1" : idx == 4 ? "HID" : NULL;
	if (!s)
		return 0;
	n = (unsigned)strlen(s);
	b[0] = (uint8_t)(2 + 2 * n);
	b[1] = USB_DT_STRING;
	for (unsigned i = 0; i < n; i++) {
		b[2 + 2 * i] = (uint8_t)s[i];
		b[3 + 2 * i] = 0;
	}
	return 2 + 2 * n;
}

/* ---- reports ---- */

/* Queues the current state for the guest (lock held). A full queue drops its oldest report. */
static void push_report(struct hid *h)
{
	unsigned tail;

	if (h->q_count == QUEUE_LEN) {
		h->q_head = (h->q_head + 1) % QUEUE_LEN;
		h->q_count--;
	}
	tail = (h->q_head + h->q_count) % QUEUE_LEN;
	memcpy(h->queue[tail], h->state, REPORT_MAX);
	h->q_count++;
	if (h->usb.notify)
		h->usb.notify(h->usb.host, &h->usb);
}

static unsigned hid_interrupt_in(struct usb_device *d, unsigned ep, uint8_t *buf, unsigned max)
{
	struct hid *h = d->opaque;
	unsigned n = h->info->report_len;

	if (ep != EP_IN || !h->configured || h->halted || h->q_count == 0 || max == 0)
		return 0;
	if (n > max)
		n = max;
	memcpy(buf, h->queue[h->q_head], n);
	h->q_head = (h->q_head + 1) % QUEUE_LEN;
	h->q_count--;
	/* Wheel clicks are deltas: they must not repeat in the state GET_REPORT returns. */
	if (h->info == &tablet_info)
		h->state[5] = h->state[6] = 0;
	return n;
}

static int8_t clicks(int32_t v)
{
	return (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
}

static void tablet_pointer(void *opaque, const struct input_pointer_event *ev)
{
	struct hid *h = opaque;
	uint16_t x = (uint16_t)(ev->x < 0 ? 0 : ev->x > 0x7FFF ? 0x7FFF : ev->x);
	uint16_t y = (uint16_t)(ev->y < 0 ? 0 : ev->y > 0x7FFF ? 0x7FFF : ev->y);

	pthread_mutex_lock(h->usb.lock);
	/* HID buttons 1-5 are left, right, middle, side, extra (Linux: BTN_LEFT + n - 1). */
	h->state[0] = (uint8_t)((ev->buttons & INPUT_BTN_LEFT ? 0x01 : 0) | (ev->buttons & INPUT_BTN_RIGHT ? 0x02 : 0) |
				(ev->buttons & INPUT_BTN_MIDDLE ? 0x04 : 0) | (ev->buttons & INPUT_BTN_SIDE ? 0x08 : 0) |
				(ev->buttons & INPUT_BTN_EXTRA ? 0x10 : 0));
	h->state[1] = (uint8_t)x;
	h->state[2] = (uint8_t)(x >> 8);
	h->state[3] = (uint8_t)y;
	h->state[4] = (uint8_t)(y >> 8);
	h->state[5] = (uint8_t)clicks(ev->wheel_v);
	h->state[6] = (uint8_t)clicks(ev->wheel_h);
	push_report(h);
	pthread_mutex_unlock(h->usb.lock);
}

/* evdev key code -> HID Keyboard/Keypad usage (HID Usage Tables, page 0x07). */
static const uint8_t key_usage[KEY_MAX + 1] = {
	[KEY_A] = 0x04, [KEY_B] = 0x05, [KEY_C] = 0x06, [KEY_D] = 0x07, [KEY_E] = 0x08, [KEY_F] = 0x09,
	[KEY_G] = 0x0A, [KEY_H] = 0x0B, [KEY_I] = 0x0C, [KEY_J] = 0x0D, [KEY_K] = 0x0E, [KEY_L] = 0x0F,
	[KEY_M] = 0x10, [KEY_N] = 0x11, [KEY_O] = 0x12, [KEY_P] = 0x13, [KEY_Q] = 0x14, [KEY_R] = 0x15,
	[KEY_S] = 0x16, [KEY_T] = 0x17, [KEY_U] = 0x18, [KEY_V] = 0x19, [KEY_W] = 0x1A, [KEY_X] = 0x1B,
	[KEY_Y] = 0x1C, [KEY_Z] = 0x1D,
	[KEY_1] = 0x1E, [KEY_2] = 0x1F, [KEY_3] = 0x20, [KEY_4] = 0x21, [KEY_5] = 0x22,
	[KEY_6] = 0x23, [KEY_7] = 0x24, [KEY_8] = 0x25, [KEY_9] = 0x26, [KEY_0] = 0x27,
	[KEY_ENTER] = 0x28, [KEY_ESC] = 0x29, [KEY_BACKSPACE] = 0x2A, [KEY_TAB] = 0x2B, [KEY_SPACE] = 0x2C,
	[KEY_MINUS] = 0x2D, [KEY_EQUAL] = 0x2E, [KEY_LEFTBRACE] = 0x2F, [KEY_RIGHTBRACE] = 0x30,
	[KEY_BACKSLASH] = 0x31, [KEY_SEMICOLON] = 0x33, [KEY_APOSTROPHE] = 0x34, [KEY_GRAVE] = 0x35,
	[KEY_COMMA] = 0x36, [KEY_DOT] = 0x37, [KEY_SLASH] = 0x38, [KEY_CAPSLOCK] = 0x39,
	[KEY_F1] = 0x3A, [KEY_F2] = 0x3B, [KEY_F3] = 0x3C, [KEY_F4] = 0x3D, [KEY_F5] = 0x3E, [KEY_F6] = 0x3F,
	[KEY_F7] = 0x40, [KEY_F8] = 0x41, [KEY_F9] = 0x42, [KEY_F10] = 0x43, [KEY_F11] = 0x44, [KEY_F12] = 0x45,
	[KEY_SYSRQ] = 0x46, [KEY_SCROLLLOCK] = 0x47, [KEY_PAUSE] = 0x48, [KEY_INSERT] = 0x49,
	[KEY_HOME] = 0x4A, [KEY_PAGEUP] = 0x4B, [KEY_DELETE] = 0x4C, [KEY_END] = 0x4D, [KEY_PAGEDOWN] = 0x4E,
	[KEY_RIGHT] = 0x4F, [KEY_LEFT] = 0x50, [KEY_DOWN] = 0x51, [KEY_UP] = 0x52, [KEY_NUMLOCK] = 0x53,
	[KEY_KPSLASH] = 0x54, [KEY_KPASTERISK] = 0x55, [KEY_KPMINUS] = 0x56, [KEY_KPPLUS] = 0x57,
	[KEY_KPENTER] = 0x58, [KEY_KP1] = 0x59, [KEY_KP2] = 0x5A, [KEY_KP3] = 0x5B, [KEY_KP4] = 0x5C,
	[KEY_KP5] = 0x5D, [KEY_KP6] = 0x5E, [KEY_KP7] = 0x5F, [KEY_KP8] = 0x60, [KEY_KP9] = 0x61,
	[KEY_KP0] = 0x62, [KEY_KPDOT] = 0x63, [KEY_102ND] = 0x64, [KEY_COMPOSE] = 0x65, [KEY_POWER] = 0x66,
	[KEY_KPEQUAL] = 0x67,
	[KEY_F13] = 0x68, [KEY_F14] = 0x69, [KEY_F15] = 0x6A, [KEY_F16] = 0x6B, [KEY_F17] = 0x6C,
	[KEY_F18] = 0x6D, [KEY_F19] = 0x6E, [KEY_F20] = 0x6F, [KEY_F21] = 0x70, [KEY_F22] = 0x71,
	[KEY_F23] = 0x72, [KEY_F24] = 0x73,
	[KEY_OPEN] = 0x74, [KEY_HELP] = 0x75, [KEY_PROPS] = 0x76, [KEY_FRONT] = 0x77, [KEY_STOP] = 0x78,
	[KEY_AGAIN] = 0x79, [KEY_UNDO] = 0x7A, [KEY_CUT] = 0x7B, [KEY_COPY] = 0x7C, [KEY_PASTE] = 0x7D,
	[KEY_FIND] = 0x7E, [KEY_MUTE] = 0x7F, [KEY_VOLUMEUP] = 0x80, [KEY_VOLUMEDOWN] = 0x81,
	[KEY_KPCOMMA] = 0x85, [KEY_RO] = 0x87, [KEY_KATAKANAHIRAGANA] = 0x88, [KEY_YEN] = 0x89,
	[KEY_HENKAN] = 0x8A, [KEY_MUHENKAN] = 0x8B, [KEY_KPJPCOMMA] = 0x8C, [KEY_HANGEUL] = 0x90,
	[KEY_HANJA] = 0x91, [KEY_KATAKANA] = 0x92, [KEY_HIRAGANA] = 0x93, [KEY_ZENKAKUHANKAKU] = 0x94,
	[KEY_KPLEFTPAREN] = 0xB6, [KEY_KPRIGHTPAREN] = 0xB7,
	[KEY_LEFTCTRL] = 0xE0, [KEY_LEFTSHIFT] = 0xE1, [KEY_LEFTALT] = 0xE2, [KEY_LEFTMETA] = 0xE3,
	[KEY_RIGHTCTRL] = 0xE4, [KEY_RIGHTSHIFT] = 0xE5, [KEY_RIGHTALT] = 0xE6, [KEY_RIGHTMETA] = 0xE7,
};

/* Rebuilds the boot report from the modifier byte and the key array (lock held). */
static void kbd_state(struct hid *h)
{
	memset(h->state + 1, 0, REPORT_MAX - 1);
	memcpy(h->state + 2, h->keys, sizeof(h->keys));
}

static void kbd_key_locked(struct hid *h, uint8_t usage, bool down)
{
	unsigned i, n = 0;

	if (usage >= 0xE0) {
		uint8_t bit = (uint8_t)(1u << (usage - 0xE0));
		h->state[0] = down ? (h->state[0] | bit) : (h->state[0] & (uint8_t)~bit);
	} else {
		uint8_t keep[6] = { 0 };
		for (i = 0; i < 6; i++)
			if (h->keys[i] && h->keys[i] != usage)
				keep[n++] = h->keys[i];
		/* A seventh key is dropped, not reported as rollover: the others stay correct. */
		if (down && n < 6)
			keep[n++] = usage;
		memcpy(h->keys, keep, sizeof(keep));
	}
	kbd_state(h);
	push_report(h);
}

static void kbd_key(void *opaque, unsigned code, bool down)
{
	struct hid *h = opaque;
	uint8_t usage = code <= KEY_MAX ? key_usage[code] : 0;

	if (!usage)
		return;
	pthread_mutex_lock(h->usb.lock);
	kbd_key_locked(h, usage, down);
	pthread_mutex_unlock(h->usb.lock);
}

/* HID LED bits (Num, Caps, Scroll) -> INPUT_LED_*. */
static unsigned leds_to_input(uint8_t v)
{
	return (v & 1 ? INPUT_LED_NUM : 0) | (v & 2 ? INPUT_LED_CAPS : 0) | (v & 4 ? INPUT_LED_SCROLL : 0);
}

static void hid_flush(struct usb_device *d)
{
	struct hid *h = d->opaque;
	bool dirty;
	uint8_t leds;

	pthread_mutex_lock(d->lock);
	dirty = h->leds_dirty;
	leds = h->leds;
	h->leds_dirty = false;
	pthread_mutex_unlock(d->lock);
	if (dirty)
		input_set_leds(h->vm, leds_to_input(leds));
}

/* ---- control requests ---- */

static int get_descriptor(struct hid *h, const struct usb_setup *s, uint8_t *data, unsigned *len)
{
	uint8_t buf[256];
	unsigned n = 0, type = s->value >> 8, idx = s->value & 0xff;

	if ((s->type & USB_RECIP_MASK) == USB_RECIP_INTERFACE) {
		if (type == HID_DT_REPORT && s->index == 0) {
			n = h->info->report_desc_len;
			memcpy(buf, h->info->report_desc, n);
		} else if (type == HID_DT_HID && s->index == 0) {
			config_desc(h->info, buf);
			memmove(buf, buf + 18, 9);
			n = 9;
		}
	} else if (type == USB_DT_DEVICE && idx == 0) {
		n = device_desc(h->info, buf);
	} else if (type == USB_DT_CONFIG && idx == 0) {
		n = config_desc(h->info, buf);
	} else if (type == USB_DT_STRING) {
		n = string_desc(h->info, idx, buf);
	}
	if (!n)
		return USB_STALL;
	*len = n < s->length ? n : s->length;
	memcpy(data, buf, *len);
	return USB_OK;
}

static void set_configured(struct hid *h, bool on)
{
	__atomic_store_n(&h->configured, on, __ATOMIC_RELEASE);
}

static int standard_request(struct hid *h, const struct usb_setup *s, uint8_t *data, unsigned *len)
{
	switch (s->request) {
	case USB_REQ_GET_DESCRIPTOR:
		return s->type & USB_DIR_IN ? get_descriptor(h, s, data, len) : USB_STALL;
	case USB_REQ_SET_ADDRESS:
		return USB_OK;
	case USB_REQ_SET_CONFIGURATION:
		if (s->value > 1)
			return USB_STALL;
		set_configured(h, s->value == 1);
		h->halted = false;
		return USB_OK;
	case USB_REQ_GET_CONFIGURATION:
		data[0] = h->configured;
		*len = s->length ? 1 : 0;
		return USB_OK;
	case USB_REQ_GET_STATUS:
		data[0] = (uint8_t)((s->type & USB_RECIP_MASK) == USB_RECIP_ENDPOINT ? h->halted : 0);
		data[1] = 0;
		*len = s->length < 2 ? s->length : 2;
		return USB_OK;
	case USB_REQ_CLEAR_FEATURE:
	case USB_REQ_SET_FEATURE:
		/* ENDPOINT_HALT on 0x81, or DEVICE_REMOTE_WAKEUP (accepted, nothing to do). */
		if ((s->type & USB_RECIP_MASK) == USB_RECIP_ENDPOINT && s->value == 0 && (s->index & 0x7f) == EP_IN)
			h->halted = s->request == USB_REQ_SET_FEATURE;
		return USB_OK;
	case USB_REQ_GET_INTERFACE:
		data[0] = 0;
		*len = s->length ? 1 : 0;
		return s->index == 0 ? USB_OK : USB_STALL;
	case USB_REQ_SET_INTERFACE:
		return s->index == 0 && s->value == 0 ? USB_OK : USB_STALL;
	default:
		return USB_STALL;
	}
}

static int class_request(struct hid *h, const struct usb_setup *s, uint8_t *data, unsigned *len)
{
	bool is_kbd = h->info == &kbd_info;

	if (s->index != 0)
		return USB_STALL;
	switch (s->request) {
	case HID_GET_REPORT:
		*len = h->info->report_len < s->length ? h->info->report_len : s->length;
		memcpy(data, h->state, *len);
		return USB_OK;
	case HID_SET_REPORT:
		/* Output report 0 (no report IDs): the keyboard LEDs. */
		if (!is_kbd || (s->value >> 8) != 2 || *len < 1)
			return USB_STALL;
		h->leds = data[0] & 0x1f;
		h->leds_dirty = true;
		return USB_OK;
	case HID_GET_IDLE:
		data[0] = h->idle;
		*len = s->length ? 1 : 0;
		return USB_OK;
	case HID_SET_IDLE:
		h->idle = (uint8_t)(s->value >> 8);
		return USB_OK;
	case HID_GET_PROTOCOL:
		data[0] = h->protocol;
		*len = s->length ? 1 : 0;
		return USB_OK;
	case HID_SET_PROTOCOL:
		if (!h->info->subclass || s->value > 1)
			return USB_STALL;
		h->protocol = (uint8_t)s->value;
		return USB_OK;
	default:
		return USB_STALL;
	}
}

static int hid_control(struct usb_device *d, const struct usb_setup *s, uint8_t *data, unsigned *len)
{
	struct hid *h = d->opaque;

	if (s->type & USB_DIR_IN)
		*len = 0;
	switch (s->type & USB_TYPE_MASK) {
	case USB_TYPE_STANDARD:
		return standard_request(h, s, data, len);
	case USB_TYPE_CLASS:
		return (s->type & USB_RECIP_MASK) == USB_RECIP_INTERFACE ? class_request(h, s, data, len) : USB_STALL;
	default:
		return USB_STALL;
	}
}

/* ---- life cycle ---- */

static void hid_reset(struct usb_device *d)
{
	struct hid *h = d->opaque;

	set_configured(h, false);
	h->halted = false;
	h->idle = 0;
	h->protocol = 1; /* report protocol after reset (HID 1.11, 7.2.6) */
	h->q_head = h->q_count = 0;
	memset(h->state, 0, sizeof(h->state));
	memset(h->keys, 0, sizeof(h->keys));
	/* The LED state stays: it belongs to the host side's view until the guest sets it. */
}

static void hid_save(struct usb_device *d, struct state_writer *w)
{
	struct hid *h = d->opaque;

	state_put_bool(w, "configured", h->configured);
	state_put_bool(w, "halted", h->halted);
	state_put_u64(w, "idle", h->idle);
	state_put_u64(w, "protocol", h->protocol);
	state_put_bytes(w, "queue", h->queue, sizeof(h->queue));
	state_put_u64(w, "q_head", h->q_head);
	state_put_u64(w, "q_count", h->q_count);
	state_put_bytes(w, "state", h->state, sizeof(h->state));
	state_put_bytes(w, "keys", h->keys, sizeof(h->keys));
	state_put_u64(w, "leds", h->leds);
}

static int hid_restore(struct usb_device *d, struct state_reader *r)
{
	struct hid *h = d->opaque;
	uint64_t idle, protocol, head, count, leds;
	bool configured, halted;

	if (state_get_bool(r, "configured", &configured) < 0 || state_get_bool(r, "halted", &halted) < 0 ||
	    state_get_u64(r, "idle", &idle) < 0 || state_get_u64(r, "protocol", &protocol) < 0 ||
	    state_get_bytes(r, "queue", h->queue, sizeof(h->queue)) < 0 ||
	    state_get_u64(r, "q_head", &head) < 0 || state_get_u64(r, "q_count", &count) < 0 ||
	    state_get_bytes(r, "state", h->state, sizeof(h->state)) < 0 ||
	    state_get_bytes(r, "keys", h->keys, sizeof(h->keys)) < 0 || state_get_u64(r, "leds", &leds) < 0 ||
	    idle > 0xff || protocol > 1 || head >= QUEUE_LEN || count > QUEUE_LEN || leds > 0x1f) {
		log_error("usb %s: bad snapshot state", d->name);
		return -1;
	}
	set_configured(h, configured);
	h->halted = halted;
	h->idle = (uint8_t)idle;
	h->protocol = (uint8_t)protocol;
	h->q_head = (unsigned)head;
	h->q_count = (unsigned)count;
	h->leds = (uint8_t)leds;
	h->leds_dirty = true;
	return 0;
}

static void hid_destroy(struct usb_device *d)
{
	struct hid *h = d->opaque;

	input_unregister(h->vm, &h->sink);
	free(h);
}

/* Input may arrive from now on: the controller's lock is in place. */
static void hid_attached(struct usb_device *d)
{
	struct hid *h = d->opaque;

	input_register(h->vm, &h->sink);
}

static bool hid_active(void *opaque)
{
	struct hid *h = opaque;

	return __atomic_load_n(&h->configured, __ATOMIC_ACQUIRE);
}

static struct usb_device *hid_new(struct vm *vm, const struct hid_info *info, const char *name)
{
	struct hid *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->vm = vm;
	h->info = info;
	h->usb = (struct usb_device){
		.name = name, .speed = USB_SPEED_HIGH, .opaque = h,
		.control = hid_control, .interrupt_in = hid_interrupt_in, .reset = hid_reset,
		.flush = hid_flush, .save = hid_save, .restore = hid_restore, .destroy = hid_destroy,
		.attached = hid_attached,
	};
	h->sink = (struct input_sink){ .name = name, .priority = 20, .opaque = h, .active = hid_active };
	hid_reset(&h->usb);
	return &h->usb;
}

struct usb_device *usb_hid_tablet_new(struct vm *vm)
{
	struct usb_device *d = hid_new(vm, &tablet_info, "usb-tablet");
	struct hid *h;

	if (!d)
		return NULL;
	h = d->opaque;
	h->sink.kind = INPUT_SINK_POINTER;
	h->sink.absolute = true;
	h->sink.pointer = tablet_pointer;
	return d;
}

struct usb_device *usb_hid_kbd_new(struct vm *vm)
{
	struct usb_device *d = hid_new(vm, &kbd_info, "usb-kbd");
	struct hid *h;

	if (!d)
		return NULL;
	h = d->opaque;
	h->sink.kind = INPUT_SINK_KEYBOARD;
	h->sink.key = kbd_key;
	return d;
}
