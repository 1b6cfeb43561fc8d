/*
 * libFuzzer harness for the firmware flash (src/dev/bootrom.c with
 * src/dev/pflash.c): the MMIO command stream a guest sends to the variable
 * store and the firmware code, on the recording KVM stand-ins of the unit
 * tests (tests/unit/testvm.c, testdevmem.c). Accesses go where KVM would
 * send them: reads inside a mapped slot come from the slot's memory,
 * everything else (every write: the slots are read-only) is an MMIO exit.
 *
 * One VM for the whole run, built once from Debian's OVMF_CODE.fd and a
 * copy of OVMF_VARS.fd in /dev/shm (written through; tmpfs makes the
 * flushes cheap). Each input starts from the pristine store by restoring a
 * snapshot section taken at start-up, so nothing carries over.
 *
 * The input is a stream of operations (low nibble of the op byte; the high
 * nibble picks an access size of 1, 2, 4 or 8 where one is needed):
 *   0 write bytes      1 read       at a 3-byte offset from just below the
 *                                   store to just past the code's start
 *   2 program (0x10 or 0x40, data)  3 erase (0x20, confirm byte)
 *   4 a command byte from the set OVMF and others use
 *   5 snapshot round trip (fuzz_input.h)  6 input bytes restored as the section
 *   7 device reset     8 write to the code region
 *
 * Invariants (__builtin_trap): while the store's slot is mapped, a trapped
 * read returns the slot's byte (the slot is only there in read-array mode);
 * the code never changes; restoring the device's own state succeeds and
 * saves the same bytes; and at the end, after two read-array commands, the
 * slot is mapped and the VARS file holds exactly the store's bytes.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/config.h"
#include "core/device.h"
#include "core/iobus.h"
#include "core/log.h"
#include "core/vm.h"
#include "dev/pflash.h"
#include "fuzz_input.h"
#include "testdevmem.h"
#include "testvm.h"

#define CODE_FILE "/usr/share/OVMF/OVMF_CODE.fd"
#define VARS_FILE "/usr/share/OVMF/OVMF_VARS.fd"
#define MAX_OPS 4096
#define MAX_SNAPSHOTS 4 /* per input: each carries the whole store */

static struct vm *vm;
static struct device *dev;
static struct testdevmem_slot *code_slot, *vars_slot;
static uint64_t code_gpa, vars_gpa, vars_size, code_size;
static uint8_t *code_copy, *pristine;
static size_t pristine_len;
static char vars_path[64];
static unsigned snapshots;

static void save_dev(void *opaque, struct state_writer *w)
{
	struct device *d = opaque;

	CHECK(d->model->save(d, w) == 0);
}

static int restore_dev(void *opaque, struct state_reader *r)
{
	struct device *d = opaque;

	return d->model->restore(d, r, 1);
}

static void reset_dev(void *opaque)
{
	struct device *d = opaque;

	d->model->reset(d);
}

static void guest_access(uint64_t gpa, uint8_t *data, unsigned size, bool is_write)
{
	struct testdevmem_slot *s = NULL;

	if (vars_slot->mapped && gpa >= vars_gpa && gpa + size <= vars_gpa + vars_size)
		s = vars_slot;
	else if (gpa >= code_gpa && gpa + size <= code_gpa + code_size)
		s = code_slot;
	if (s && !is_write)
		memcpy(data, (uint8_t *)s->hva + (gpa - s->gpa), size);
	else
		iobus_access(&vm->mmio, gpa, data, size, is_write);
}

static void write8(uint64_t gpa, uint8_t v)
{
	guest_access(gpa, &v, 1, true);
}

/* Anywhere from 16 bytes below the store to 16 bytes into the code. */
static uint64_t take_gpa(struct cursor *c)
{
	return vars_gpa - 16 + take(c, 3) % (vars_size + 32);
}

static unsigned size_of(uint8_t op)
{
	return 1u << ((op >> 4) & 3);
}

/* The slot is in place only while reads may bypass the device: then both agree. */
static void check_slot(struct cursor *c)
{
	uint64_t off = take(c, 3) % vars_size;
	uint8_t trapped;

	if (!vars_slot->mapped)
		return;
	iobus_access(&vm->mmio, vars_gpa + off, &trapped, 1, false);
	CHECK(trapped == ((uint8_t *)vars_slot->hva)[off]);
}

static void restore_bytes(struct cursor *c)
{
	size_t len;
	const uint8_t *p = take_bytes(c, 4096, &len);

	(void)fuzz_restore(restore_dev, dev, p, len);
}

static void run_op(struct cursor *c)
{
	static const uint8_t commands[] = { 0xFF, 0x50, 0x70, 0x10, 0x40, 0x20, 0xD0, 0x90, 0x98, 0x00 };
	uint8_t op = (uint8_t)take(c, 1), data[8];
	unsigned size = size_of(op);
	uint64_t gpa;

	switch (op & 0x0F) {
	case 0:
		gpa = take_gpa(c);
		for (unsigned i = 0; i < size; i++)
			data[i] = (uint8_t)take(c, 1);
		guest_access(gpa, data, size, true);
		break;
	case 1:
		guest_access(take_gpa(c), data, size, false);
		break;
	case 2:
		gpa = take_gpa(c);
		write8(gpa, (op & 0x10) ? 0x40 : 0x10);
		write8(gpa, (uint8_t)take(c, 1));
		break;
	case 3:
		gpa = take_gpa(c);
		write8(gpa, 0x20);
		write8(gpa, (op & 0x10) ? (uint8_t)take(c, 1) : 0xD0);
		break;
	case 4:
		write8(take_gpa(c), commands[take(c, 1) % sizeof(commands)]);
		break;
	case 5:
		if (snapshots++ < MAX_SNAPSHOTS)
			fuzz_state_roundtrip(save_dev, restore_dev, reset_dev, dev, c);
		break;
	case 6:
		if (snapshots++ < MAX_SNAPSHOTS)
			restore_bytes(c);
		break;
	case 7:
		reset_dev(dev);
		break;
	case 8:
		gpa = code_gpa + take(c, 3) % code_size;
		for (unsigned i = 0; i < size; i++)
			data[i] = (uint8_t)take(c, 1);
		guest_access(gpa, data, size, true);
		break;
	}
}

/* Whatever the input did: back in read-array mode, the file is the store, the code unchanged. */
static void check_end(void)
{
	uint8_t *file = malloc(vars_size);
	int fd = open(vars_path, O_RDONLY);

	write8(vars_gpa, 0xFF);
	write8(vars_gpa, 0xFF);
	CHECK(vars_slot->mapped);
	CHECK(file && fd >= 0 && pread(fd, file, vars_size, 0) == (ssize_t)vars_size);
	CHECK(memcmp(file, vars_slot->hva, vars_size) == 0);
	CHECK(memcmp(code_copy, code_slot->hva, code_size) == 0);
	close(fd);
	free(file);
}

static void copy_vars(void)
{
	int in = open(VARS_FILE, O_RDONLY), out;
	uint8_t buf[65536];
	ssize_t n;

	snprintf(vars_path, sizeof(vars_path), "/dev/shm/hyve-fuzz-flash-%d.fd", (int)getpid());
	out = open(vars_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		CHECK(write(out, buf, (size_t)n) == n);
	close(in);
	close(out);
}

static void remove_vars(void)
{
	unlink(vars_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	copy_vars();
	atexit(remove_vars);
	vm = testvm_new(64ULL << 20);
	CHECK(config_set(vm->cfg, "lpc.bootrom", CODE_FILE) == 0 && config_set(vm->cfg, "lpc.bootvars", vars_path) == 0);
	dev = device_create(vm, device_model_find("bootrom"), "bootrom", "lpc");
	CHECK(dev);
	code_slot = &testdevmem.slot[0], vars_slot = &testdevmem.slot[1];
	code_gpa = code_slot->gpa, code_size = code_slot->size;
	vars_gpa = vars_slot->gpa, vars_size = vars_slot->size;
	code_copy = malloc(code_size);
	CHECK(code_copy);
	memcpy(code_copy, code_slot->hva, code_size);
	pristine = fuzz_save(save_dev, dev, &pristine_len);
	CHECK(pristine);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor c = { data, size };

	snapshots = 0;
	CHECK(fuzz_restore(restore_dev, dev, pristine, pristine_len) == 0);
	for (unsigned i = 0; i < MAX_OPS && c.n; i++) {
		run_op(&c);
		check_slot(&c);
	}
	check_end();
	return 0;
}
