/*
 * Input routing: the single entry point for keyboard and pointer events
 * from the user interface (VNC), and the registry of the guest-facing input
 * devices that consume them (PS/2 keyboard and mouse, USB keyboard and
 * tablet).
 *
 * Keys travel as Linux evdev key codes (KEY_A = 30, ... from
 * <linux/input-event-codes.h>): layout-independent, and exactly what the
 * tests read back from the guest's /dev/input/event*. The UI converts its
 * own codes (QEMU extended key event scancodes, X keysyms) with
 * ui/keymap.h before calling in.
 *
 * Routing: keys go to the highest-priority keyboard sink whose guest
 * driver is bound (sink->active() true), else to the highest-priority
 * keyboard sink. Pointer events go the same way among pointer sinks; a sink
 * marked absolute receives the position scaled to 0..0x7FFF, a relative
 * one receives deltas from the last position.
 *
 * Pausing: while the VM is paused (input_set_running(vm, false), from
 * vm_pause) events are held, up to 256 with motions collapsed, and
 * delivered in order when it resumes, so no sink changes guest-visible
 * state while a snapshot is written and no key is lost or left down.
 *
 * Threads: sinks are registered while devices are created (before vCPUs
 * run); events may come from any thread and are serialised here, so a sink
 * callback is never entered twice at once. Sinks lock their own state
 * against their vCPU-side I/O handlers.
 */
#ifndef HYVE_INPUT_H
#define HYVE_INPUT_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

/* Pointer buttons (bit mask), as VNC numbers them. */
enum {
	INPUT_BTN_LEFT = 1u << 0,
	INPUT_BTN_MIDDLE = 1u << 1,
	INPUT_BTN_RIGHT = 1u << 2,
	INPUT_BTN_SIDE = 1u << 3,   /* "back" */
	INPUT_BTN_EXTRA = 1u << 4,  /* "forward" */
};

/* Keyboard LEDs, as the guest sets them. */
enum {
	INPUT_LED_SCROLL = 1u << 0,
	INPUT_LED_NUM = 1u << 1,
	INPUT_LED_CAPS = 1u << 2,
};

enum input_sink_kind { INPUT_SINK_KEYBOARD, INPUT_SINK_POINTER };

struct input_pointer_event {
	int32_t x, y;           /* absolute sinks: 0..0x7FFF; relative sinks: delta in pixels */
	uint32_t buttons;       /* INPUT_BTN_* currently held */
	int32_t wheel_v;        /* clicks; positive = away from the user (up) */
	int32_t wheel_h;        /* clicks; positive = right */
};

struct input_sink {
	const char *name;       /* for logs: "ps2-kbd", "usb-tablet", ... */
	enum input_sink_kind kind;
	bool absolute;          /* pointer sinks: wants 0..0x7FFF positions */
	int priority;           /* higher wins among active sinks (USB 20, PS/2 10) */
	void *opaque;
	/* True when the guest has a driver bound and enabled (NULL: always). */
	bool (*active)(void *opaque);
	void (*key)(void *opaque, unsigned evdev_code, bool down);
	void (*pointer)(void *opaque, const struct input_pointer_event *ev);
	struct input_sink *next;  /* owned by the router */
};

/* The VM's input router, created with the VM (vm_create) before any device; 0 or -1. */
int input_init(struct vm *vm);
void input_fini(struct vm *vm);
/* Registers/unregisters a sink (the struct stays owned by the caller). */
void input_register(struct vm *vm, struct input_sink *sink);
void input_unregister(struct vm *vm, struct input_sink *sink);

/* A key press (down) or release by evdev code. */
void input_key(struct vm *vm, unsigned evdev_code, bool down);
/*
 * The pointer at (x, y) on a screen of w x h pixels with `buttons` held;
 * wheel_v/wheel_h are clicks turned since the last event.
 */
void input_pointer(struct vm *vm, uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t buttons,
		   int32_t wheel_v, int32_t wheel_h);

/* The VM paused (false: hold events) or resumes (true: deliver what was held). */
void input_set_running(struct vm *vm, bool running);

/* Keyboard models report the guest's LED state; the UI polls it (INPUT_LED_*). */
void input_set_leds(struct vm *vm, unsigned leds);
unsigned input_leds(struct vm *vm);

#endif
