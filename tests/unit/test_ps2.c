/*
 * The i8042 controller with its PS/2 keyboard and mouse, driven through
 * ports 0x60/0x64 as a guest driver does and fed through the input router
 * as the VNC server does; and the VNC key maps.
 */
#include <linux/input-event-codes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/device.h"
#include "core/input.h"
#include "core/log.h"
#include "core/vm.h"
#include "dev/ps2kbd.h"
#include "snapshot/state.h"
#include "testvm.h"
#include "ui/keymap.h"

#define DATA 0x60
#define CMD 0x64
#define ST_OBF 0x01
#define ST_AUXB 0x20

static struct vm *new_vm(void)
{
	struct vm *vm = testvm_new(64ULL << 20);

	assert_int_equal(device_model_find("i8042")->attach(vm), 0);
	return vm;
}

/* Reads every byte the controller has; returns the count. */
static size_t drain(struct vm *vm, uint8_t *buf, size_t max)
{
	size_t n = 0;

	while (n < max && (inb(vm, CMD) & ST_OBF))
		buf[n++] = inb(vm, DATA);
	return n;
}

#define assert_bytes(vm, ...)                                                                  \
	do {                                                                                   \
		const uint8_t want_[] = { __VA_ARGS__ };                                       \
		uint8_t got_[512];                                                             \
		size_t n_ = drain(vm, got_, sizeof(got_));                                     \
		assert_int_equal(n_, sizeof(want_));                                           \
		assert_memory_equal(got_, want_, sizeof(want_));                               \
	} while (0)

#define assert_nothing(vm) assert_int_equal(inb(vm, CMD) & ST_OBF, 0)

static void ctl(struct vm *vm, uint8_t cmd)
{
	outb(vm, CMD, cmd);
}

static void ctl_data(struct vm *vm, uint8_t cmd, uint8_t v)
{
	outb(vm, CMD, cmd);
	outb(vm, DATA, v);
}

static uint8_t read_cb(struct vm *vm)
{
	ctl(vm, 0x20);
	assert_true(inb(vm, CMD) & ST_OBF);
	return inb(vm, DATA);
}

/* Command byte: both interrupts on, translation as asked. */
static void setup_cb(struct vm *vm, bool translate)
{
	ctl_data(vm, 0x60, 0x07 | (translate ? 0x40 : 0));
}

static void aux(struct vm *vm, uint8_t b)
{
	ctl_data(vm, 0xD4, b);
}

/* ---- controller ---- */

static void test_controller_commands(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	assert_int_equal(inb(vm, CMD), 0x14); /* system flag, not inhibited, empty */
	assert_int_equal(read_cb(vm), 0x45);
	assert_int_equal(inb(vm, CMD) & 0x08, 0x08); /* last write: command */
	ctl_data(vm, 0x60, 0x47);
	assert_int_equal(inb(vm, CMD) & 0x08, 0);
	assert_int_equal(read_cb(vm), 0x47);
	ctl(vm, 0xAA);
	assert_bytes(vm, 0x55);
	ctl(vm, 0xAB);
	assert_bytes(vm, 0x00);
	ctl(vm, 0xA9);
	assert_bytes(vm, 0x00);
	ctl(vm, 0xAD);
	ctl(vm, 0xA7);
	assert_int_equal(read_cb(vm), 0x47 | 0x30);
	ctl(vm, 0xAE);
	ctl(vm, 0xA8);
	assert_int_equal(read_cb(vm), 0x47);
	/* Internal RAM beyond the command byte. */
	ctl_data(vm, 0x65, 0x5A);
	ctl(vm, 0x25);
	assert_bytes(vm, 0x5A);
	/* Output port: A20 and reset bits. */
	ctl(vm, 0xD0);
	assert_bytes(vm, 0x03);
	ctl_data(vm, 0xD1, 0x01);
	ctl(vm, 0xD0);
	assert_bytes(vm, 0x01);
	ctl(vm, 0xDF);
	ctl(vm, 0xD0);
	assert_bytes(vm, 0x03);
	ctl(vm, 0xDD);
	ctl(vm, 0xD0);
	assert_bytes(vm, 0x01);
	assert_int_equal(testvm_exit_status(), -1);
	testvm_free(vm);
}

static void test_reset_pulse_reboots(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	ctl(vm, 0xFF); /* pulses nothing */
	assert_int_equal(testvm_exit_status(), -1);
	ctl(vm, 0xFE);
	assert_int_equal(testvm_exit_status(), HYVE_EXIT_REBOOT);
	testvm_free(vm);

	vm = new_vm();
	ctl_data(vm, 0xD1, 0x02); /* reset line low through the output port */
	assert_int_equal(testvm_exit_status(), HYVE_EXIT_REBOOT);
	testvm_free(vm);
}

static void test_write_output_buffers_and_irqs(void **state)
{
	struct vm *vm = new_vm();
	unsigned e1, e12;

	(void)state;
	setup_cb(vm, false);
	e1 = testvm_irq_edges(1);
	e12 = testvm_irq_edges(12);
	ctl_data(vm, 0xD2, 0x42);
	assert_int_equal(inb(vm, CMD) & (ST_OBF | ST_AUXB), ST_OBF);
	assert_int_equal(testvm_irq_edges(1), e1 + 1);
	assert_int_equal(testvm_irq_level(1), 1);
	assert_int_equal(inb(vm, DATA), 0x42);
	assert_int_equal(testvm_irq_level(1), 0);
	ctl_data(vm, 0xD3, 0x5A);
	assert_int_equal(inb(vm, CMD) & (ST_OBF | ST_AUXB), ST_OBF | ST_AUXB);
	assert_int_equal(testvm_irq_edges(12), e12 + 1);
	assert_int_equal(testvm_irq_edges(1), e1 + 1);
	assert_int_equal(inb(vm, DATA), 0x5A);
	assert_int_equal(testvm_irq_level(12), 0);
	/* With the aux interrupt off, no IRQ 12. */
	ctl_data(vm, 0x60, 0x05);
	ctl_data(vm, 0xD3, 0x5A);
	assert_int_equal(testvm_irq_edges(12), e12 + 1);
	assert_bytes(vm, 0x5A);
	testvm_free(vm);
}

/* Every byte of a multi-byte sequence is its own IRQ 1 edge. */
static void test_each_byte_is_an_edge(void **state)
{
	struct vm *vm = new_vm();
	unsigned e1;

	(void)state;
	setup_cb(vm, false);
	e1 = testvm_irq_edges(1);
	input_key(vm, KEY_RIGHTCTRL, false); /* E0 F0 14 */
	for (unsigned i = 1; i <= 3; i++) {
		assert_int_equal(testvm_irq_edges(1), e1 + i);
		(void)inb(vm, DATA);
	}
	assert_int_equal(testvm_irq_edges(1), e1 + 3);
	assert_nothing(vm);
	testvm_free(vm);
}

/* ---- keyboard ---- */

static void test_keyboard_commands(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	setup_cb(vm, false);
	outb(vm, DATA, 0xF2);
	assert_bytes(vm, 0xFA, 0xAB, 0x83);
	outb(vm, DATA, 0xFF);
	assert_bytes(vm, 0xFA, 0xAA);
	outb(vm, DATA, 0xEE);
	assert_bytes(vm, 0xEE);
	outb(vm, DATA, 0xFE);
	assert_bytes(vm, 0xEE);
	outb(vm, DATA, 0xF3);
	outb(vm, DATA, 0x20);
	assert_bytes(vm, 0xFA, 0xFA);
	outb(vm, DATA, 0xAB); /* not a command */
	assert_bytes(vm, 0xFE);
	/* Scan code sets: query, select 1, refuse 3. */
	outb(vm, DATA, 0xF0);
	outb(vm, DATA, 0x00);
	assert_bytes(vm, 0xFA, 0xFA, 0x02);
	outb(vm, DATA, 0xF0);
	outb(vm, DATA, 0x01);
	outb(vm, DATA, 0xF0);
	outb(vm, DATA, 0x00);
	assert_bytes(vm, 0xFA, 0xFA, 0xFA, 0xFA, 0x01);
	outb(vm, DATA, 0xF0);
	outb(vm, DATA, 0x03);
	assert_bytes(vm, 0xFA, 0xFE);
	/* Translated, the ID's second byte is the set 1 one. */
	setup_cb(vm, true);
	outb(vm, DATA, 0xF2);
	assert_bytes(vm, 0xFA, 0xAB, 0x41);
	testvm_free(vm);
}

static void test_leds_reach_the_router(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	setup_cb(vm, false);
	outb(vm, DATA, 0xED);
	assert_bytes(vm, 0xFA);
	outb(vm, DATA, 0x04);
	assert_bytes(vm, 0xFA);
	assert_int_equal(input_leds(vm), INPUT_LED_CAPS);
	outb(vm, DATA, 0xED);
	outb(vm, DATA, 0x03);
	assert_bytes(vm, 0xFA, 0xFA);
	assert_int_equal(input_leds(vm), INPUT_LED_SCROLL | INPUT_LED_NUM);
	/* A command in place of the parameter cancels the LED command. */
	outb(vm, DATA, 0xED);
	outb(vm, DATA, 0xEE);
	assert_bytes(vm, 0xFA, 0xEE);
	assert_int_equal(input_leds(vm), INPUT_LED_SCROLL | INPUT_LED_NUM);
	/* Reset turns them off. */
	outb(vm, DATA, 0xFF);
	assert_bytes(vm, 0xFA, 0xAA);
	assert_int_equal(input_leds(vm), 0);
	testvm_free(vm);
}

static void press(struct vm *vm, unsigned code)
{
	input_key(vm, code, true);
	input_key(vm, code, false);
}

static void test_set2_sequences(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	setup_cb(vm, false);
	press(vm, KEY_A);
	assert_bytes(vm, 0x1C, 0xF0, 0x1C);
	press(vm, KEY_PAUSE);
	assert_bytes(vm, 0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77);
	press(vm, KEY_SYSRQ);
	assert_bytes(vm, 0xE0, 0x12, 0xE0, 0x7C, 0xE0, 0xF0, 0x7C, 0xE0, 0xF0, 0x12);
	press(vm, KEY_RIGHTCTRL);
	assert_bytes(vm, 0xE0, 0x14, 0xE0, 0xF0, 0x14);
	press(vm, KEY_KPENTER);
	assert_bytes(vm, 0xE0, 0x5A, 0xE0, 0xF0, 0x5A);
	press(vm, KEY_LEFTMETA);
	assert_bytes(vm, 0xE0, 0x1F, 0xE0, 0xF0, 0x1F);
	press(vm, KEY_RIGHTMETA);
	assert_bytes(vm, 0xE0, 0x27, 0xE0, 0xF0, 0x27);
	press(vm, KEY_COMPOSE);
	assert_bytes(vm, 0xE0, 0x2F, 0xE0, 0xF0, 0x2F);
	press(vm, KEY_F7);
	assert_bytes(vm, 0x83, 0xF0, 0x83);
	press(vm, KEY_MUTE);
	assert_bytes(vm, 0xE0, 0x23, 0xE0, 0xF0, 0x23);
	press(vm, KEY_VOLUMEUP);
	assert_bytes(vm, 0xE0, 0x32, 0xE0, 0xF0, 0x32);
	press(vm, KEY_HOMEPAGE);
	assert_bytes(vm, 0xE0, 0x3A, 0xE0, 0xF0, 0x3A);
	press(vm, KEY_UNKNOWN);
	assert_nothing(vm);
	testvm_free(vm);
}

static void test_translation_and_set1(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	setup_cb(vm, true);
	press(vm, KEY_A);
	assert_bytes(vm, 0x1E, 0x9E);
	press(vm, KEY_PAUSE);
	assert_bytes(vm, 0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5);
	press(vm, KEY_SYSRQ);
	assert_bytes(vm, 0xE0, 0x2A, 0xE0, 0x37, 0xE0, 0xB7, 0xE0, 0xAA);
	press(vm, KEY_KPENTER);
	assert_bytes(vm, 0xE0, 0x1C, 0xE0, 0x9C);
	press(vm, KEY_F7);
	assert_bytes(vm, 0x41, 0xC1);
	/* Set 1 selected in the keyboard itself, untranslated. */
	setup_cb(vm, false);
	outb(vm, DATA, 0xF0);
	outb(vm, DATA, 0x01);
	assert_bytes(vm, 0xFA, 0xFA);
	press(vm, KEY_RIGHTALT);
	assert_bytes(vm, 0xE0, 0x38, 0xE0, 0xB8);
	press(vm, KEY_PAUSE);
	assert_bytes(vm, 0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5);
	testvm_free(vm);
}

/* For every key: set 2 translated by the 8042 is exactly the set 1 sequence. */
static void test_translation_matches_set1_for_every_key(void **state)
{
	unsigned nkeys = 0;

	(void)state;
	for (unsigned code = 1; code < KEY_MAX; code++) {
		if (!ps2kbd_has_key(code))
			continue;
		nkeys++;
		for (int down = 0; down < 2; down++) {
			uint8_t s1[8], s2[8], t[8];
			size_t n1 = ps2kbd_encode(1, code, down, s1), n2 = ps2kbd_encode(2, code, down, s2), nt = 0;
			bool brk = false;
			for (size_t i = 0; i < n2; i++) {
				if (s2[i] == 0xF0) {
					brk = true;
					continue;
				}
				t[nt++] = ps2kbd_translate(s2[i]) | (brk ? 0x80 : 0);
				brk = false;
			}
			assert_int_equal(nt, n1);
			if (memcmp(t, s1, n1) != 0)
				fail_msg("key %u %s: translated set 2 differs from set 1", code, down ? "down" : "up");
		}
	}
	assert_true(nkeys >= 105 + 8);
}

static void test_scanning_disabled_and_kbd_port_disabled(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	setup_cb(vm, false);
	outb(vm, DATA, 0xF5);
	assert_bytes(vm, 0xFA);
	press(vm, KEY_A);
	assert_nothing(vm);
	outb(vm, DATA, 0xF4);
	assert_bytes(vm, 0xFA);
	/* The port disabled in the controller: keys wait in the keyboard. */
	ctl(vm, 0xAD);
	press(vm, KEY_B);
	assert_nothing(vm);
	ctl(vm, 0xAE);
	assert_bytes(vm, 0x32, 0xF0, 0x32);
	testvm_free(vm);
}

static void test_keyboard_overrun(void **state)
{
	struct vm *vm = new_vm();
	uint8_t buf[600];
	size_t n;

	(void)state;
	setup_cb(vm, false);
	for (int i = 0; i < 200; i++)
		input_key(vm, KEY_RIGHTCTRL, true); /* E0 14 each */
	n = drain(vm, buf, sizeof(buf));
	assert_true(n <= 1 + 256);
	assert_int_equal(buf[n - 1], 0x00); /* the overrun code ends it */
	/* Only whole sequences before it. */
	assert_int_equal((n - 1) % 2, 0);
	for (size_t i = 0; i + 1 < n; i += 2) {
		assert_int_equal(buf[i], 0xE0);
		assert_int_equal(buf[i + 1], 0x14);
	}
	/* Typing works again once read. */
	press(vm, KEY_A);
	assert_bytes(vm, 0x1C, 0xF0, 0x1C);
	testvm_free(vm);
}

/* A reply to a command goes before key bytes already queued, which are kept. */
static void test_reply_before_queued_keys(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	setup_cb(vm, false);
	ctl(vm, 0xAD);
	press(vm, KEY_A);
	outb(vm, DATA, 0xED);
	ctl(vm, 0xAE);
	assert_bytes(vm, 0xFA, 0x1C, 0xF0, 0x1C);
	testvm_free(vm);
}

/* With both devices sending, the output buffer takes their bytes in turn. */
static void test_ports_take_turns(void **state)
{
	struct vm *vm = new_vm();
	const uint8_t want[] = { 0x1C, 0x08, 0xF0, 0x0A, 0x1C, 0x05 };

	(void)state;
	setup_cb(vm, false);
	aux(vm, 0xF4);
	assert_bytes(vm, 0xFA);
	input_pointer(vm, 100, 100, 1024, 768, 0, 0, 0);
	ctl(vm, 0xAD);
	ctl(vm, 0xA7);
	press(vm, KEY_A);
	input_pointer(vm, 110, 95, 1024, 768, 0, 0, 0);
	ctl(vm, 0xAE);
	ctl(vm, 0xA8);
	for (size_t i = 0; i < sizeof(want); i++) {
		uint8_t st = inb(vm, CMD);
		assert_int_equal(st & ST_OBF, ST_OBF);
		assert_int_equal(!!(st & ST_AUXB), i % 2);
		assert_int_equal(inb(vm, DATA), want[i]);
	}
	assert_nothing(vm);
	testvm_free(vm);
}

/* ---- mouse ---- */

static void set_rates(struct vm *vm, uint8_t a, uint8_t b, uint8_t c)
{
	const uint8_t r[3] = { a, b, c };

	for (int i = 0; i < 3; i++) {
		aux(vm, 0xF3);
		aux(vm, r[i]);
		assert_bytes(vm, 0xFA, 0xFA);
	}
}

static void test_mouse_identify_sequences(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	setup_cb(vm, false);
	aux(vm, 0xFF);
	assert_int_equal(inb(vm, CMD) & ST_AUXB, ST_AUXB);
	assert_bytes(vm, 0xFA, 0xAA, 0x00);
	aux(vm, 0xF2);
	assert_bytes(vm, 0xFA, 0x00);
	set_rates(vm, 200, 200, 80); /* Explorer knock first: nothing */
	aux(vm, 0xF2);
	assert_bytes(vm, 0xFA, 0x00);
	set_rates(vm, 200, 100, 80);
	aux(vm, 0xF2);
	assert_bytes(vm, 0xFA, 0x03);
	set_rates(vm, 200, 200, 80);
	aux(vm, 0xF2);
	assert_bytes(vm, 0xFA, 0x04);
	/* Status: stream, disabled, 1:1, resolution 2, rate 80. */
	aux(vm, 0xE9);
	assert_bytes(vm, 0xFA, 0x00, 0x02, 80);
	aux(vm, 0xE8);
	aux(vm, 0x03);
	aux(vm, 0xE7);
	aux(vm, 0xF4);
	aux(vm, 0xE9);
	assert_bytes(vm, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0x30, 0x03, 80);
	aux(vm, 0xE8);
	aux(vm, 0x09); /* out of range */
	assert_bytes(vm, 0xFA, 0xFE);
	aux(vm, 0xFF);
	aux(vm, 0xF2);
	assert_bytes(vm, 0xFA, 0xAA, 0x00, 0xFA, 0x00);
	testvm_free(vm);
}

static void mouse_enable(struct vm *vm, uint8_t id)
{
	setup_cb(vm, false);
	if (id == 3)
		set_rates(vm, 200, 100, 80);
	if (id == 4) {
		set_rates(vm, 200, 100, 80);
		set_rates(vm, 200, 200, 80);
	}
	aux(vm, 0xF4);
	assert_bytes(vm, 0xFA);
	input_pointer(vm, 100, 100, 1024, 768, 0, 0, 0); /* the starting point: no packet */
	assert_nothing(vm);
}

static void test_mouse_packets(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	mouse_enable(vm, 0);
	input_pointer(vm, 110, 95, 1024, 768, 0, 0, 0);
	assert_bytes(vm, 0x08, 10, 5); /* up on screen is positive */
	input_pointer(vm, 100, 105, 1024, 768, INPUT_BTN_LEFT | INPUT_BTN_RIGHT, 0, 0);
	assert_bytes(vm, 0x08 | 0x03 | 0x10 | 0x20, 0xF6, 0xF6);
	input_pointer(vm, 100, 105, 1024, 768, INPUT_BTN_MIDDLE, 0, 0);
	assert_bytes(vm, 0x0C, 0, 0);
	input_pointer(vm, 100, 105, 1024, 768, INPUT_BTN_MIDDLE, 0, 0); /* nothing changed */
	assert_nothing(vm);
	/* A long move is split; no overflow bits. */
	input_pointer(vm, 700, 105, 1024, 768, 0, 0, 0);
	assert_bytes(vm, 0x08, 255, 0, 0x08, 255, 0, 0x08, 90, 0);
	input_pointer(vm, 100, 105, 1024, 768, 0, 0, 0);
	assert_bytes(vm, 0x18, 1, 0, 0x18, 1, 0, 0x18, 0xA6, 0);
	/* A standard mouse has no wheel: a wheel-only event sends nothing. */
	input_pointer(vm, 100, 105, 1024, 768, 0, 1, 0);
	assert_nothing(vm);
	testvm_free(vm);
}

/* While the VM is paused (a snapshot) input waits in the router, in order; motions collapse. */
static void test_input_held_while_paused(void **state)
{
	struct vm *vm = new_vm();
	uint8_t kbd[16], mouse[16];
	size_t nk = 0, nm = 0;
	const uint8_t want_kbd[] = { 0x1C, 0xF0, 0x1C }, want_mouse[] = { 0x08, 20, 10, 0x09, 0, 0 };

	(void)state;
	mouse_enable(vm, 0);
	input_set_running(vm, false);
	input_key(vm, KEY_A, true);
	input_pointer(vm, 110, 95, 1024, 768, 0, 0, 0);
	input_pointer(vm, 120, 90, 1024, 768, 0, 0, 0); /* replaces the motion before */
	input_pointer(vm, 120, 90, 1024, 768, INPUT_BTN_LEFT, 0, 0);
	input_key(vm, KEY_A, false);
	assert_nothing(vm);
	input_set_running(vm, true);
	while (inb(vm, CMD) & ST_OBF) {
		bool from_mouse = inb(vm, CMD) & ST_AUXB;
		uint8_t b = inb(vm, DATA);
		if (from_mouse && nm < sizeof(mouse))
			mouse[nm++] = b;
		else if (!from_mouse && nk < sizeof(kbd))
			kbd[nk++] = b;
	}
	assert_int_equal(nk, sizeof(want_kbd));
	assert_memory_equal(kbd, want_kbd, sizeof(want_kbd));
	assert_int_equal(nm, sizeof(want_mouse));
	assert_memory_equal(mouse, want_mouse, sizeof(want_mouse));
	/* Running again: events go straight through. */
	input_key(vm, KEY_A, true);
	assert_bytes(vm, 0x1C);
	testvm_free(vm);
}

static void test_wheel_packets(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	mouse_enable(vm, 3);
	input_pointer(vm, 100, 100, 1024, 768, 0, 1, 0);
	assert_bytes(vm, 0x08, 0, 0, 0xFF);
	input_pointer(vm, 100, 100, 1024, 768, 0, -2, 0);
	assert_bytes(vm, 0x08, 0, 0, 0x02);
	input_pointer(vm, 100, 100, 1024, 768, 0, 10, 0); /* beyond one packet's range */
	assert_bytes(vm, 0x08, 0, 0, 0xF9, 0x08, 0, 0, 0xFD);
	testvm_free(vm);

	vm = new_vm();
	mouse_enable(vm, 4);
	input_pointer(vm, 100, 100, 1024, 768, INPUT_BTN_SIDE, 1, 0);
	assert_bytes(vm, 0x08, 0, 0, 0x1F);
	input_pointer(vm, 100, 100, 1024, 768, INPUT_BTN_EXTRA, -1, 0);
	assert_bytes(vm, 0x08, 0, 0, 0x21);
	input_pointer(vm, 100, 100, 1024, 768, INPUT_BTN_EXTRA, 0, 1); /* horizontal: Explorer 4.0 packet */
	assert_bytes(vm, 0x08, 0, 0, 0x7F);
	input_pointer(vm, 100, 100, 1024, 768, INPUT_BTN_EXTRA, 0, -1);
	assert_bytes(vm, 0x08, 0, 0, 0x41);
	testvm_free(vm);
}

static void test_mouse_remote_mode(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	mouse_enable(vm, 0);
	aux(vm, 0xF0);
	assert_bytes(vm, 0xFA);
	input_pointer(vm, 400, 90, 1024, 768, INPUT_BTN_LEFT, 0, 0);
	input_pointer(vm, 420, 90, 1024, 768, INPUT_BTN_LEFT, 0, 0);
	assert_nothing(vm);
	aux(vm, 0xEB);
	assert_bytes(vm, 0xFA, 0x09 | 0x40, 0xFF, 10); /* x beyond 255: overflow, clamped */
	aux(vm, 0xEB);
	assert_bytes(vm, 0xFA, 0x09, 0, 0);
	aux(vm, 0xE9);
	assert_bytes(vm, 0xFA, 0x64, 0x02, 100);
	testvm_free(vm);
}

static void test_mouse_disabled_sends_nothing(void **state)
{
	struct vm *vm = new_vm();

	(void)state;
	setup_cb(vm, false);
	input_pointer(vm, 100, 100, 1024, 768, 0, 0, 0);
	input_pointer(vm, 200, 100, 1024, 768, INPUT_BTN_LEFT, 1, 0);
	assert_nothing(vm);
	/* Wrap mode echoes until EC. */
	aux(vm, 0xEE);
	aux(vm, 0x12);
	aux(vm, 0xEC);
	aux(vm, 0x12);
	assert_bytes(vm, 0xFA, 0x12, 0xFA, 0xFE);
	testvm_free(vm);
}

/*
 * A hostile guest: random port accesses mixed with host input. Nothing may
 * break (the sanitizer builds watch memory), and afterwards the controller
 * and both devices still answer a reset exactly.
 */
static void test_random_port_traffic(void **state)
{
	struct vm *vm = new_vm();
	uint8_t buf[1024];
	unsigned seed = 12345;

	(void)state;
	for (int i = 0; i < 50000; i++) {
		unsigned r = (unsigned)rand_r(&seed);
		switch (r % 8) {
		case 0: outb(vm, CMD, (uint8_t)(r >> 8)); break;
		case 1:
		case 2: outb(vm, DATA, (uint8_t)(r >> 8)); break;
		case 3: (void)inb(vm, DATA); break;
		case 4: (void)inb(vm, CMD); break;
		case 5: input_key(vm, (r >> 8) % 300, (r >> 20) & 1); break;
		default:
			input_pointer(vm, (r >> 8) % 2000, (r >> 16) % 1500, 1024, 768, (r >> 4) & 0x1F,
				      (int)((r >> 24) % 9) - 4, (int)((r >> 28) % 3) - 1);
			break;
		}
	}
	setup_cb(vm, false);
	assert_true(drain(vm, buf, sizeof(buf)) < sizeof(buf));
	outb(vm, DATA, 0xFF);
	assert_bytes(vm, 0xFA, 0xAA);
	aux(vm, 0xFF);
	assert_bytes(vm, 0xFA, 0xAA, 0x00);
	aux(vm, 0xF2);
	assert_bytes(vm, 0xFA, 0x00);
	testvm_free(vm);
}

/* ---- snapshot ---- */

static void test_save_restore(void **state)
{
	struct vm *vm = new_vm(), *vm2;
	struct device *d = device_find(vm, "lpc.i8042"), *d2;
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	uint8_t *buf;
	size_t len;

	(void)state;
	mouse_enable(vm, 4);
	setup_cb(vm, true);
	outb(vm, DATA, 0xED);
	outb(vm, DATA, 0x02);
	assert_bytes(vm, 0xFA, 0xFA);
	ctl(vm, 0xAD);
	ctl(vm, 0xA7);
	press(vm, KEY_KPENTER);
	input_pointer(vm, 120, 100, 1024, 768, 0, 1, 0);
	assert_int_equal(d->model->save(d, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	testvm_free(vm);

	vm2 = new_vm();
	d2 = device_find(vm2, "lpc.i8042");
	assert_non_null(r = state_reader_new(buf, len));
	assert_int_equal(d2->model->restore(d2, r, 1), 0);
	state_reader_free(r);
	assert_int_equal(input_leds(vm2), INPUT_LED_NUM);
	assert_int_equal(read_cb(vm2), 0x77);
	ctl(vm2, 0xAE);
	assert_bytes(vm2, 0xE0, 0x1C, 0xE0, 0x9C);
	ctl(vm2, 0xA8);
	assert_bytes(vm2, 0x08, 20, 0, 0x0F);
	aux(vm2, 0xF2);
	assert_bytes(vm2, 0xFA, 0x04);
	testvm_free(vm2);
	free(buf);
}

static void test_restore_refuses_bad_values(void **state)
{
	struct vm *vm = new_vm();
	struct device *d = device_find(vm, "lpc.i8042");
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	uint8_t *buf, ram[32] = { 0x45 };
	size_t len;

	(void)state;
	state_put_bytes(w, "ram", ram, sizeof(ram));
	state_put_u64(w, "outport", 3);
	state_put_u64(w, "out", 0);
	state_put_bool(w, "out_full", false);
	state_put_bool(w, "out_aux", false);
	state_put_bool(w, "last_was_cmd", false);
	state_put_u64(w, "pending", 0xAA); /* takes no data byte */
	state_put_bool(w, "xlate_break", false);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	assert_non_null(r = state_reader_new(buf, len));
	assert_int_equal(d->model->restore(d, r, 1), -1);
	state_reader_free(r);
	assert_int_equal(d->model->restore(d, NULL, 2), -1);
	/* Back at power-on state, and working. */
	assert_int_equal(read_cb(vm), 0x45);
	free(buf);
	testvm_free(vm);
}

/* lpc.i8042: on for new VMs (and recorded), off for snapshots that predate the controller. */
static void test_attach_config(void **state)
{
	static const struct {
		const char *restore, *value;
		int rc;
		bool present;
	} cases[] = {
		{ NULL, NULL, 0, true },
		{ NULL, "false", 0, false },
		{ "/x.snap", NULL, 0, false },
		{ "/x.snap", "true", 0, true },
		{ NULL, "maybe", -1, false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vm *vm = testvm_new(64ULL << 20);
		if (cases[i].restore)
			assert_int_equal(config_set(vm->cfg, "snapshot.restore", cases[i].restore), 0);
		if (cases[i].value)
			assert_int_equal(config_set(vm->cfg, "lpc.i8042", cases[i].value), 0);
		assert_int_equal(device_model_find("i8042")->attach(vm), cases[i].rc);
		assert_int_equal(device_find(vm, "lpc.i8042") != NULL, cases[i].present);
		if (cases[i].present)
			assert_string_equal(config_get(vm->cfg, "lpc.i8042"), "true");
		assert_int_equal(inb(vm, CMD), cases[i].present ? 0x14 : 0xFF);
		testvm_free(vm);
	}
}

/* ---- key maps ---- */

static void test_keymap_qnum(void **state)
{
	(void)state;
	assert_int_equal(keymap_qnum_to_evdev(0x01), KEY_ESC);
	assert_int_equal(keymap_qnum_to_evdev(0x1c), KEY_ENTER);
	assert_int_equal(keymap_qnum_to_evdev(0x9c), KEY_KPENTER);
	assert_int_equal(keymap_qnum_to_evdev(0xb8), KEY_RIGHTALT);
	assert_int_equal(keymap_qnum_to_evdev(0x9d), KEY_RIGHTCTRL);
	assert_int_equal(keymap_qnum_to_evdev(0xc6), KEY_PAUSE);
	assert_int_equal(keymap_qnum_to_evdev(0xb7), KEY_SYSRQ);
	assert_int_equal(keymap_qnum_to_evdev(0x54), KEY_SYSRQ);
	assert_int_equal(keymap_qnum_to_evdev(0xdb), KEY_LEFTMETA);
	assert_int_equal(keymap_qnum_to_evdev(0xdd), KEY_COMPOSE);
	assert_int_equal(keymap_qnum_to_evdev(0x53), KEY_KPDOT);
	assert_int_equal(keymap_qnum_to_evdev(0x56), KEY_102ND);
	assert_int_equal(keymap_qnum_to_evdev(0x57), KEY_F11);
	assert_int_equal(keymap_qnum_to_evdev(0xa0), KEY_MUTE);
	assert_int_equal(keymap_qnum_to_evdev(0xb0), KEY_VOLUMEUP);
	assert_int_equal(keymap_qnum_to_evdev(0xc8), KEY_UP);
	assert_int_equal(keymap_qnum_to_evdev(0), 0);
	assert_int_equal(keymap_qnum_to_evdev(0x80), 0);
	assert_int_equal(keymap_qnum_to_evdev(0x1c + 0x100), 0);
	assert_int_equal(keymap_qnum_to_evdev(0xFFFFFFFFu), 0);
}

static void assert_keysym(uint32_t keysym, unsigned code, bool shift)
{
	bool s = !shift;

	assert_int_equal(keymap_keysym_to_evdev(keysym, &s), code);
	assert_int_equal(s, shift);
}

static void test_keymap_keysym(void **state)
{
	(void)state;
	assert_keysym('a', KEY_A, false);
	assert_keysym('A', KEY_A, true);
	assert_keysym('q', KEY_Q, false);
	assert_keysym('Z', KEY_Z, true);
	assert_keysym('0', KEY_0, false);
	assert_keysym(')', KEY_0, true);
	assert_keysym('!', KEY_1, true);
	assert_keysym('@', KEY_2, true);
	assert_keysym('~', KEY_GRAVE, true);
	assert_keysym('|', KEY_BACKSLASH, true);
	assert_keysym(' ', KEY_SPACE, false);
	assert_keysym('/', KEY_SLASH, false);
	assert_keysym('?', KEY_SLASH, true);
	assert_keysym(0xFFBE, KEY_F1, false);
	assert_keysym(0xFFC9, KEY_F12, false);
	assert_keysym(0xFFD5, KEY_F24, false);
	assert_keysym(0xFF0D, KEY_ENTER, false);
	assert_keysym(0xFF8D, KEY_KPENTER, false);
	assert_keysym(0xFFB5, KEY_KP5, false);
	assert_keysym(0xFF13, KEY_PAUSE, false);
	assert_keysym(0xFF61, KEY_SYSRQ, false);
	assert_keysym(0xFFEB, KEY_LEFTMETA, false);
	assert_keysym(0xFFE4, KEY_RIGHTCTRL, false);
	assert_keysym(0xFE03, KEY_RIGHTALT, false);
	assert_keysym(0xFE20, KEY_TAB, true);
	assert_keysym(0xFFFF, KEY_DELETE, false);
	assert_keysym(0x1008FF12, KEY_MUTE, false);
	assert_keysym(0x1008FF13, KEY_VOLUMEUP, false);
	assert_keysym(0x1008FF14, KEY_PLAYPAUSE, false);
	assert_keysym(0x1008FF18, KEY_HOMEPAGE, false);
	assert_keysym(0x12345, 0, false);
	assert_keysym(0xE9, 0, false); /* e acute: not on a US layout */
	assert_int_equal(keymap_keysym_to_evdev('x', NULL), KEY_X);
}

/* Every key the maps produce for the 105-key layout is one the keyboard has. */
static void test_keymaps_reach_the_keyboard(void **state)
{
	(void)state;
	for (uint32_t q = 1; q < 0x100; q++) {
		unsigned code = keymap_qnum_to_evdev(q);
		if (code && code <= KEY_KPDOT && !ps2kbd_has_key(code))
			fail_msg("qnum 0x%x: evdev %u has no scan code", q, code);
	}
	for (uint32_t k = 0x20; k < 0x7F; k++)
		assert_true(ps2kbd_has_key(keymap_keysym_to_evdev(k, NULL)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_controller_commands),
		cmocka_unit_test(test_reset_pulse_reboots),
		cmocka_unit_test(test_write_output_buffers_and_irqs),
		cmocka_unit_test(test_each_byte_is_an_edge),
		cmocka_unit_test(test_keyboard_commands),
		cmocka_unit_test(test_leds_reach_the_router),
		cmocka_unit_test(test_set2_sequences),
		cmocka_unit_test(test_translation_and_set1),
		cmocka_unit_test(test_translation_matches_set1_for_every_key),
		cmocka_unit_test(test_scanning_disabled_and_kbd_port_disabled),
		cmocka_unit_test(test_keyboard_overrun),
		cmocka_unit_test(test_reply_before_queued_keys),
		cmocka_unit_test(test_ports_take_turns),
		cmocka_unit_test(test_mouse_identify_sequences),
		cmocka_unit_test(test_mouse_packets),
		cmocka_unit_test(test_input_held_while_paused),
		cmocka_unit_test(test_wheel_packets),
		cmocka_unit_test(test_mouse_remote_mode),
		cmocka_unit_test(test_mouse_disabled_sends_nothing),
		cmocka_unit_test(test_random_port_traffic),
		cmocka_unit_test(test_save_restore),
		cmocka_unit_test(test_restore_refuses_bad_values),
		cmocka_unit_test(test_attach_config),
		cmocka_unit_test(test_keymap_qnum),
		cmocka_unit_test(test_keymap_keysym),
		cmocka_unit_test(test_keymaps_reach_the_keyboard),
	};

	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
