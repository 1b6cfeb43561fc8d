/*
 * libFuzzer harness for the i8042 controller with its PS/2 keyboard and
 * mouse (src/dev/i8042.c, ps2kbd.c, ps2mouse.c), on the recording KVM
 * stand-in of the unit tests (tests/unit/testvm.c): a fresh VM and
 * controller per input, so nothing carries over between inputs.
 *
 * The input is a stream of operations (the low nibble of each op byte picks
 * it, the high nibble is its parameter; see make_i8042_seeds.py):
 *   0/14/15 write port 0x60   1 write port 0x64   (size 1, 2 or 4)
 *   2 read port 0x60          3 read port 0x64
 *   4 write, 5 read, one of ports 0x60-0x67
 *   6 key press or release    7 pointer event (input router: VNC's path)
 *   8 VM paused/running (the router holds events while paused)
 *   9 snapshot round trip (fuzz_input.h: own state, then patched bytes)
 *   10 restore of input bytes as the section, at section version 0-3
 *      (9 and 10: the first MAX_SNAPSHOTS of an input)
 *   11 device reset           12 controller command + data byte
 *   13 byte to the mouse (command 0xD4 + data)
 *
 * Invariants (__builtin_trap): after every operation an IRQ line that is
 * high matches the status register (buffer full, from that port); restore
 * of the device's own state succeeds and saves the same bytes again; and at
 * the end, whatever happened, the controller drains in bounded time and
 * both devices answer a reset exactly as at power-on.
 */
#include <stdint.h>
#include <stdlib.h>

#include "core/device.h"
#include "core/input.h"
#include "core/log.h"
#include "core/vm.h"
#include "fuzz_input.h"
#include "testvm.h"

#define DATA 0x60
#define CMD 0x64
#define ST_OBF 0x01
#define ST_AUXB 0x20
#define KBD_IRQ 1
#define AUX_IRQ 12
#define MAX_OPS 2048
#define DRAIN_MAX 4096 /* far above what both devices' queues and the output buffer hold */
#define MAX_SNAPSHOTS 8 /* per input: encoding and decoding cost more than everything else */

static struct device *i8042(struct vm *vm)
{
	return device_find(vm, "lpc.i8042");
}

static void save_dev(void *opaque, struct state_writer *w)
{
	struct device *d = opaque;

	CHECK(d->model->save(d, w) == 0);
}

static unsigned restore_version = 1, snapshots;

static void reset_dev(void *opaque)
{
	struct device *d = opaque;

	d->model->reset(d);
}

static int restore_dev(void *opaque, struct state_reader *r)
{
	struct device *d = opaque;

	return d->model->restore(d, r, restore_version);
}

static unsigned access_size(uint8_t op)
{
	static const unsigned sizes[4] = { 1, 2, 4, 1 };

	return sizes[(op >> 4) & 3];
}

/* Buttons as the router's contract has them: INPUT_BTN_* bits only (VNC sends no others). */
static void pointer(struct vm *vm, struct cursor *c)
{
	uint32_t x = take(c, 2), y = take(c, 2), w = take(c, 2), h = take(c, 2), buttons = take(c, 1) & 0x1F;
	int8_t wv = (int8_t)take(c, 1), wh = (int8_t)take(c, 1);

	input_pointer(vm, x, y, w, h, buttons, wv, wh);
}

static void restore_bytes(struct vm *vm, uint8_t op, struct cursor *c)
{
	size_t len;
	const uint8_t *p = take_bytes(c, 4096, &len);

	restore_version = (op >> 4) & 3;
	(void)fuzz_restore(restore_dev, i8042(vm), p, len);
	restore_version = 1;
}

static void run_op(struct vm *vm, struct cursor *c)
{
	uint8_t op = (uint8_t)take(c, 1);
	struct device *d = i8042(vm);

	switch (op & 0x0F) {
	case 0: case 14: case 15: testvm_out(vm, DATA, access_size(op), take(c, access_size(op))); break;
	case 1: testvm_out(vm, CMD, access_size(op), take(c, access_size(op))); break;
	case 2: (void)testvm_in(vm, DATA, access_size(op)); break;
	case 3: (void)testvm_in(vm, CMD, access_size(op)); break;
	case 4: outb(vm, (uint16_t)(DATA + ((op >> 4) & 7)), take(c, 1)); break;
	case 5: (void)inb(vm, (uint16_t)(DATA + ((op >> 4) & 7))); break;
	case 6: input_key(vm, take(c, 2) % 0x300, (op >> 4) & 1); break;
	case 7: pointer(vm, c); break;
	case 8: input_set_running(vm, (op >> 4) & 1); break;
	case 9:
		if (snapshots++ < MAX_SNAPSHOTS)
			fuzz_state_roundtrip(save_dev, restore_dev, reset_dev, d, c);
		break;
	case 10:
		if (snapshots++ < MAX_SNAPSHOTS)
			restore_bytes(vm, op, c);
		break;
	case 11: d->model->reset(d); break;
	case 12: outb(vm, CMD, take(c, 1)); outb(vm, DATA, take(c, 1)); break;
	case 13: outb(vm, CMD, 0xD4); outb(vm, DATA, take(c, 1)); break;
	}
}

/* A high line means a full buffer holding that port's byte; never both lines. */
static void check_lines(struct vm *vm)
{
	uint8_t st = inb(vm, CMD);
	int kbd = testvm_irq_level(KBD_IRQ), aux = testvm_irq_level(AUX_IRQ);

	CHECK(!(kbd && aux));
	if (kbd)
		CHECK((st & ST_OBF) && !(st & ST_AUXB));
	if (aux)
		CHECK((st & ST_OBF) && (st & ST_AUXB));
}

static size_t drain(struct vm *vm, uint8_t *buf, size_t max)
{
	size_t n = 0;

	while (n < max && (inb(vm, CMD) & ST_OBF)) {
		uint8_t b = inb(vm, DATA);
		if (buf)
			buf[n] = b;
		n++;
	}
	return n;
}

/*
 * Sends a reset to the keyboard (aux false) or the mouse and reads the
 * answer; tries again when the answer is not a reset's, as a driver whose
 * command failed does: a device waiting for a command's parameter takes the
 * first 0xFF as that parameter (a sample rate of 255, say).
 */
static size_t reset_device(struct vm *vm, bool aux, uint8_t *got, size_t max)
{
	size_t n = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (aux)
			outb(vm, CMD, 0xD4);
		outb(vm, DATA, 0xFF);
		n = drain(vm, got, max);
		if (n >= 2 && got[0] == 0xFA && got[1] == 0xAA)
			break;
	}
	return n;
}

/* Whatever the input did, a guest driver can take both devices back to power-on. */
static void check_recovers(struct vm *vm)
{
	uint8_t got[8];

	input_set_running(vm, true);
	outb(vm, CMD, 0x60);
	outb(vm, DATA, 0x07); /* both ports on, both interrupts, no translation */
	CHECK(drain(vm, NULL, DRAIN_MAX) < DRAIN_MAX);
	CHECK(reset_device(vm, false, got, sizeof(got)) == 2 && got[0] == 0xFA && got[1] == 0xAA);
	CHECK(reset_device(vm, true, got, sizeof(got)) == 3 && got[0] == 0xFA && got[1] == 0xAA && got[2] == 0x00);
	CHECK(!testvm_irq_level(KBD_IRQ) && !testvm_irq_level(AUX_IRQ));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm *vm = testvm_new(64ULL << 20);
	struct cursor c = { data, size };

	snapshots = 0;
	CHECK(device_model_find("i8042")->attach(vm) == 0 && i8042(vm));
	for (unsigned i = 0; i < MAX_OPS && c.n; i++) {
		run_op(vm, &c);
		check_lines(vm);
	}
	check_recovers(vm);
	testvm_free(vm);
	return 0;
}
