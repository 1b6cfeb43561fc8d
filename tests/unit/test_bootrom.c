/*
 * Firmware in flash (dev/bootrom.c, dev/pflash.c, boot/fwimage.c) against
 * Debian's own OVMF files (/usr/share/OVMF, /usr/share/ovmf: the ovmf
 * package) and the recording KVM stand-ins: which files are accepted and
 * why others are refused, where the slots go, the CFI command sequences
 * OVMF issues (its flash probe, program, erase, status), write-through to
 * the VARS file, hostile addresses, two vCPUs racing, snapshots, and the
 * command line.
 *
 * The guest's accesses go where KVM would send them: a read inside a
 * mapped slot is served from the slot's memory, anything else (and every
 * write: the slots are read-only) is an MMIO exit on the VM's bus.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/cli.h"
#include "core/config.h"
#include "core/devmem.h"
#include "core/device.h"
#include "core/iobus.h"
#include "core/options.h"
#include "core/vm.h"
#include "boot/fwimage.h"
#include "dev/bootrom.h"
#include "dev/pflash.h"
#include "snapshot/state.h"
#include "testdevmem.h"
#include "testvm.h"

#define OVMF_DIR "/usr/share/OVMF/"
#define CODE_4M OVMF_DIR "OVMF_CODE_4M.fd"
#define VARS_4M OVMF_DIR "OVMF_VARS_4M.fd"
#define CODE_2M OVMF_DIR "OVMF_CODE.fd"
#define VARS_2M OVMF_DIR "OVMF_VARS.fd"
#define SECBOOT_4M OVMF_DIR "OVMF_CODE_4M.secboot.fd"
#define SECBOOT_2M OVMF_DIR "OVMF_CODE.secboot.fd"
#define MS_4M OVMF_DIR "OVMF_CODE_4M.ms.fd"
#define COMBINED "/usr/share/ovmf/OVMF.fd"

#define VARS_4M_BASE 0xFFC00000ULL
#define VARS_4M_SIZE 0x84000ULL
#define CODE_4M_BASE 0xFFC84000ULL
#define CODE_4M_SIZE 0x37C000ULL
/* Free space of OVMF_VARS_4M.fd's variable store (all ones in the shipped file). */
#define FREE_OFFSET 0x20000ULL

/* ---- files ---- */

struct fx {
	struct vm *vm;
	struct device *dev;
	char dir[64];
	char vars[128];
};

static void copy_file(const char *from, const char *to, off_t cut)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	char buf[65536];
	size_t n;

	assert_non_null(in);
	assert_non_null(out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
	if (cut)
		assert_int_equal(truncate(to, cut), 0);
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static uint8_t file_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDONLY);
	uint8_t b = 0;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	close(fd);
	return b;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/hyve-bootrom-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->vars, sizeof(f->vars), "%s/vars.fd", f->dir);
	copy_file(VARS_4M, f->vars, 0);
	memset(&testdevmem, 0, sizeof(testdevmem));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	if (f->vm)
		testvm_free(f->vm);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* The device on a fresh test VM; NULL when it refuses the files. */
static struct device *create(struct fx *f, const char *code, const char *vars)
{
	f->vm = testvm_new(512ULL << 20);
	assert_int_equal(config_set(f->vm->cfg, "lpc.bootrom", code), 0);
	if (vars)
		assert_int_equal(config_set(f->vm->cfg, "lpc.bootvars", vars), 0);
	f->dev = device_create(f->vm, device_model_find("bootrom"), "bootrom", "lpc");
	return f->dev;
}

/* ---- the guest, as KVM would route its accesses ---- */

static struct testdevmem_slot *slot_at(uint64_t gpa, unsigned size)
{
	for (int i = 0; i < TESTDEVMEM_SLOTS; i++) {
		struct testdevmem_slot *s = &testdevmem.slot[i];
		if (s->used && s->mapped && gpa >= s->gpa && gpa + size <= s->gpa + s->size)
			return s;
	}
	return NULL;
}

static void guest_read(struct vm *vm, uint64_t gpa, void *data, unsigned size)
{
	struct testdevmem_slot *s = slot_at(gpa, size);

	if (s)
		memcpy(data, (uint8_t *)s->hva + (gpa - s->gpa), size);
	else
		iobus_access(&vm->mmio, gpa, data, size, false);
}

/* The device maps only read-only slots: every guest write exits (test_accepts_4m_pair checks they are). */
static void guest_write(struct vm *vm, uint64_t gpa, const void *data, unsigned size)
{
	uint8_t buf[8];

	memcpy(buf, data, size);
	iobus_access(&vm->mmio, gpa, buf, size, true);
}

static uint8_t rd8(struct vm *vm, uint64_t gpa)
{
	uint8_t v;

	guest_read(vm, gpa, &v, 1);
	return v;
}

static void wr8(struct vm *vm, uint64_t gpa, uint8_t v)
{
	guest_write(vm, gpa, &v, 1);
}

enum probe_result { PROBE_NONE, PROBE_ROM, PROBE_RAM, PROBE_FLASH };

/*
 * OVMF's flash detection (QemuFlashFvbServicesRuntimeDxe, QemuFlashDetected),
 * restated: find a byte in the first block that is none of 0x50, 0x70, 0x00;
 * write clear-status and read it back, then read-status and read it back.
 */
static enum probe_result ovmf_probe(struct vm *vm, uint64_t base, uint8_t (*rd)(struct vm *, uint64_t),
				    void (*wr)(struct vm *, uint64_t, uint8_t))
{
	uint64_t off;
	uint8_t orig, probe;

	for (off = 0; off < PFLASH_BLOCK; off++) {
		probe = rd(vm, base + off);
		if (probe != 0x50 && probe != 0x70 && probe != 0x00)
			break;
	}
	if (off == PFLASH_BLOCK)
		return PROBE_NONE;
	orig = rd(vm, base + off);
	wr(vm, base + off, 0x50);
	probe = rd(vm, base + off);
	if (orig != 0x50 && probe == 0x50) {
		wr(vm, base + off, orig);
		return PROBE_RAM;
	}
	wr(vm, base + off, 0x70);
	probe = rd(vm, base + off);
	if (probe == orig)
		return PROBE_ROM;
	if (probe == 0x70) {
		wr(vm, base + off, orig);
		return PROBE_RAM;
	}
	if (probe == 0x00) {
		wr(vm, base + off, 0xFF);
		return PROBE_FLASH;
	}
	return PROBE_NONE;
}

/* OVMF's QemuFlashWrite: program each byte (0x10, data), then read array once at the last byte. */
static void ovmf_write(struct vm *vm, uint64_t gpa, const uint8_t *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		wr8(vm, gpa + i, 0x10);
		wr8(vm, gpa + i, data[i]);
	}
	if (n)
		wr8(vm, gpa + n - 1, 0xFF);
}

/* OVMF's QemuFlashEraseBlock: erase setup and confirm at the block's address, nothing after. */
static void ovmf_erase(struct vm *vm, uint64_t block_gpa)
{
	wr8(vm, block_gpa, 0x20);
	wr8(vm, block_gpa, 0xD0);
}

/* ---- which files are accepted ---- */

static void test_accepts_4m_pair(void **state)
{
	struct fx *f = *state;
	struct testdevmem_slot *code, *vars;
	size_t len;
	uint8_t *file = read_file(CODE_4M, &len), tail[16], sig[4];

	assert_non_null(create(f, CODE_4M, f->vars));
	code = &testdevmem.slot[0], vars = &testdevmem.slot[1];
	assert_true(code->mapped && code->readonly);
	assert_int_equal(code->gpa, CODE_4M_BASE);
	assert_int_equal(code->size, CODE_4M_SIZE);
	assert_int_equal(code->gpa + code->size, MEM_4G);
	assert_true(vars->mapped && vars->readonly);
	assert_int_equal(vars->gpa, VARS_4M_BASE);
	assert_int_equal(vars->size, VARS_4M_SIZE);
	/* The reset vector is the file's last 16 bytes; the store's header is at the flash base. */
	guest_read(f->vm, 0xFFFFFFF0, tail, 8);
	guest_read(f->vm, 0xFFFFFFF8, tail + 8, 8);
	assert_memory_equal(tail, file + len - 16, 16);
	guest_read(f->vm, VARS_4M_BASE + 0x28, sig, 4);
	assert_memory_equal(sig, "_FVH", 4);
	free(file);
}

static void test_accepts_2m_pair(void **state)
{
	struct fx *f = *state;

	copy_file(VARS_2M, f->vars, 0);
	assert_non_null(create(f, CODE_2M, f->vars));
	assert_int_equal(testdevmem.slot[0].gpa, 0xFFE20000);
	assert_int_equal(testdevmem.slot[1].gpa, 0xFFE00000);
	assert_int_equal(testdevmem.slot[1].size, 0x20000);
}

/* OVMF.fd alone: its leading store is flash in memory; the file itself is never written. */
static void test_accepts_combined_alone(void **state)
{
	struct fx *f = *state;
	size_t before_len, after_len;
	uint8_t *before = read_file(COMBINED, &before_len), *after, byte = 0x5A;

	assert_non_null(create(f, COMBINED, NULL));
	assert_int_equal(testdevmem.slot[0].gpa, 0xFFE20000);
	assert_int_equal(testdevmem.slot[0].size, 0x1E0000);
	assert_int_equal(testdevmem.slot[1].gpa, 0xFFE00000);
	assert_int_equal(testdevmem.slot[1].size, 0x20000);
	assert_int_equal(ovmf_probe(f->vm, 0xFFE00000, rd8, wr8), PROBE_FLASH);
	ovmf_write(f->vm, 0xFFE00000 + 0x10000, &byte, 1);
	assert_int_equal(rd8(f->vm, 0xFFE00000 + 0x10000), 0x5A & before[0x10000]);
	after = read_file(COMBINED, &after_len);
	assert_int_equal(after_len, before_len);
	assert_memory_equal(after, before, before_len);
	free(before);
	free(after);
}

static void expect_refusal(const char *code, const char *vars, const char *why)
{
	struct bootrom_images img;
	char err[512] = "";

	assert_int_equal(bootrom_load(code, vars, &img, err, sizeof(err)), -1);
	if (!strstr(err, why))
		fail_msg("loading %s with %s: \"%s\" does not say \"%s\"", code, vars ? vars : "no VARS", err, why);
	assert_null(strchr(err, '\n'));
}

static void test_refuses_missing_and_truncated(void **state)
{
	struct fx *f = *state;
	char cut_block[128], cut_bytes[128], cut_vars[128];

	snprintf(cut_block, sizeof(cut_block), "%s/code-block.fd", f->dir);
	snprintf(cut_bytes, sizeof(cut_bytes), "%s/code-bytes.fd", f->dir);
	snprintf(cut_vars, sizeof(cut_vars), "%s/vars-cut.fd", f->dir);
	copy_file(CODE_4M, cut_block, (off_t)CODE_4M_SIZE - 4096);
	copy_file(CODE_4M, cut_bytes, (off_t)CODE_4M_SIZE - 100);
	copy_file(VARS_4M, cut_vars, (off_t)VARS_4M_SIZE - 4096);
	expect_refusal("/nonexistent/OVMF_CODE_4M.fd", f->vars, "No such file");
	expect_refusal(CODE_4M, "/nonexistent/vars.fd", "No such file");
	expect_refusal(cut_block, f->vars, "not a UEFI firmware image");
	expect_refusal(cut_bytes, f->vars, "not a whole number of 4 KiB blocks");
	expect_refusal(CODE_4M, cut_vars, "not a UEFI variable store");
	expect_refusal(OVMF_DIR, f->vars, "not a regular file");
}

static void test_refuses_non_firmware(void **state)
{
	struct fx *f = *state;
	char noise[128], zeros[128];
	uint8_t buf[4096 * 4];
	FILE *out;

	snprintf(noise, sizeof(noise), "%s/noise.fd", f->dir);
	snprintf(zeros, sizeof(zeros), "%s/zeros.fd", f->dir);
	srand(7);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rand();
	out = fopen(noise, "wb");
	fwrite(buf, 1, sizeof(buf), out);
	fclose(out);
	memset(buf, 0, sizeof(buf));
	out = fopen(zeros, "wb");
	fwrite(buf, 1, sizeof(buf), out);
	fclose(out);
	expect_refusal(noise, f->vars, "not a UEFI firmware image");
	expect_refusal(zeros, f->vars, "not a UEFI firmware image");
	expect_refusal(CODE_4M, noise, "not a UEFI variable store");
	expect_refusal(CODE_4M, CODE_4M, "not a UEFI variable store");
	expect_refusal(f->vars, NULL, "a variable store, not firmware code");
}

static void test_refuses_secure_boot_builds(void **state)
{
	struct fx *f = *state;
	char vars2m[128];
	size_t len;
	uint8_t *img;
	char err[256];

	snprintf(vars2m, sizeof(vars2m), "%s/vars2m.fd", f->dir);
	copy_file(VARS_2M, vars2m, 0);
	expect_refusal(SECBOOT_4M, f->vars, "Secure Boot build that needs SMM");
	expect_refusal(MS_4M, f->vars, "Secure Boot build that needs SMM");
	expect_refusal(SECBOOT_2M, vars2m, "Secure Boot build that needs SMM");
	/* The plain builds, looked at the same way, have no MM module. */
	img = read_file(CODE_4M, &len);
	assert_int_equal(fwimage_needs_smm(img, len, err, sizeof(err)), 0);
	free(img);
	img = read_file(COMBINED, &len);
	assert_int_equal(fwimage_needs_smm(img, len, err, sizeof(err)), 0);
	free(img);
	img = read_file(SECBOOT_4M, &len);
	assert_int_equal(fwimage_needs_smm(img, len, err, sizeof(err)), 1);
	/* A damaged compressed volume (its headers intact) is reported, not taken for "no SMM". */
	memset(img + 0x10000, 0x55, 0x1000);
	assert_int_equal(fwimage_needs_smm(img, len, err, sizeof(err)), -1);
	free(img);
}

static void test_refuses_read_only_vars(void **state)
{
	struct fx *f = *state;

	assert_int_equal(chmod(f->vars, 0444), 0);
	expect_refusal(CODE_4M, f->vars, "read-only");
	assert_null(create(f, CODE_4M, f->vars));
}

static void test_refuses_mismatched_files(void **state)
{
	struct fx *f = *state;
	char vars2m[128];

	snprintf(vars2m, sizeof(vars2m), "%s/vars2m.fd", f->dir);
	copy_file(VARS_2M, vars2m, 0);
	expect_refusal(CODE_2M, f->vars, "does not belong to");
	expect_refusal(CODE_4M, vars2m, "does not belong to");
	expect_refusal(COMBINED, f->vars, "combined image with its own variable store");
	expect_refusal(CODE_4M, NULL, "needs its variable store");
}

static void test_refuses_vars_in_use(void **state)
{
	struct fx *f = *state;
	int other = open(f->vars, O_RDWR);

	assert_true(other >= 0);
	assert_int_equal(flock(other, LOCK_EX | LOCK_NB), 0);
	expect_refusal(CODE_4M, f->vars, "in use by another VM");
	close(other);
	assert_non_null(create(f, CODE_4M, f->vars));
}

/* ---- CFI as OVMF speaks it ---- */

static void test_ovmf_probe_finds_flash(void **state)
{
	struct fx *f = *state;
	uint8_t header[64], after[64];

	assert_non_null(create(f, CODE_4M, f->vars));
	guest_read(f->vm, VARS_4M_BASE, header, 8);
	for (unsigned i = 8; i < sizeof(header); i += 8)
		guest_read(f->vm, VARS_4M_BASE + i, header + i, 8);
	assert_int_equal(ovmf_probe(f->vm, VARS_4M_BASE, rd8, wr8), PROBE_FLASH);
	/* Back in read-array mode, slot in place, nothing changed. */
	assert_true(testdevmem.slot[1].mapped);
	for (unsigned i = 0; i < sizeof(after); i += 8)
		guest_read(f->vm, VARS_4M_BASE + i, after + i, 8);
	assert_memory_equal(header, after, sizeof(header));
	assert_int_equal(file_byte(f->vars, 0x28), '_');
}

/* The probe itself tells the three apart: the code region is ROM to it. */
static void test_ovmf_probe_sees_code_as_rom(void **state)
{
	struct fx *f = *state;

	assert_non_null(create(f, CODE_4M, f->vars));
	assert_int_equal(ovmf_probe(f->vm, CODE_4M_BASE + 0x1000, rd8, wr8), PROBE_ROM);
}

static void test_program_writes_through(void **state)
{
	struct fx *f = *state;
	const uint8_t data[] = "hyve variable";
	uint64_t gpa = VARS_4M_BASE + FREE_OFFSET;
	uint8_t back[sizeof(data)];

	assert_non_null(create(f, CODE_4M, f->vars));
	assert_int_equal(rd8(f->vm, gpa), 0xFF);
	wr8(f->vm, gpa, 0x10);
	/* Out of read-array mode: the slot is gone, reads reach the device and see the status. */
	assert_false(testdevmem.slot[1].mapped);
	wr8(f->vm, gpa, data[0]);
	assert_int_equal(rd8(f->vm, gpa + 5), PFLASH_STATUS_READY);
	for (size_t i = 1; i < sizeof(data); i++) {
		wr8(f->vm, gpa + i, 0x40); /* the alternative program command */
		wr8(f->vm, gpa + i, data[i]);
	}
	wr8(f->vm, gpa, 0xFF);
	assert_true(testdevmem.slot[1].mapped);
	for (size_t i = 0; i < sizeof(data); i++) {
		back[i] = rd8(f->vm, gpa + i);
		assert_int_equal(file_byte(f->vars, FREE_OFFSET + i), data[i]);
	}
	assert_memory_equal(back, data, sizeof(data));
}

/* Programming only clears bits; only an erase sets them again. */
static void test_program_clears_bits_only(void **state)
{
	struct fx *f = *state;
	uint64_t gpa = VARS_4M_BASE + FREE_OFFSET;
	uint8_t v;

	assert_non_null(create(f, CODE_4M, f->vars));
	v = 0xF0;
	ovmf_write(f->vm, gpa, &v, 1);
	v = 0x3C;
	ovmf_write(f->vm, gpa, &v, 1);
	assert_int_equal(rd8(f->vm, gpa), 0x30);
	assert_int_equal(file_byte(f->vars, FREE_OFFSET), 0x30);
}

static void test_erase_block(void **state)
{
	struct fx *f = *state;
	uint64_t block = VARS_4M_BASE + FREE_OFFSET;
	uint8_t zeros[16] = { 0 }, before_next = 0, before_prev = 0;

	assert_non_null(create(f, CODE_4M, f->vars));
	before_prev = rd8(f->vm, block - 1);
	ovmf_write(f->vm, block + 100, zeros, sizeof(zeros));
	ovmf_write(f->vm, block + PFLASH_BLOCK, zeros, 1);
	before_next = rd8(f->vm, block + PFLASH_BLOCK);
	assert_int_equal(before_next, 0);
	ovmf_erase(f->vm, block);
	/* Erase leaves the flash in read-status mode, "ready". */
	assert_false(testdevmem.slot[1].mapped);
	assert_int_equal(rd8(f->vm, block + 100), PFLASH_STATUS_READY);
	wr8(f->vm, block, 0xFF);
	for (unsigned i = 0; i < PFLASH_BLOCK; i += 97)
		assert_int_equal(rd8(f->vm, block + i), 0xFF);
	assert_int_equal(rd8(f->vm, block + 100), 0xFF);
	assert_int_equal(file_byte(f->vars, FREE_OFFSET + 100), 0xFF);
	/* Neighbouring blocks keep their bytes. */
	assert_int_equal(rd8(f->vm, block + PFLASH_BLOCK), 0);
	assert_int_equal(rd8(f->vm, block - 1), before_prev);
	/* The confirm's address picks the block, wherever in it. */
	ovmf_write(f->vm, block + 7, zeros, 1);
	wr8(f->vm, block + 0x800, 0x20);
	wr8(f->vm, block + 0x801, 0xD0);
	wr8(f->vm, block, 0xFF);
	assert_int_equal(rd8(f->vm, block + 7), 0xFF);
}

static void test_status_register(void **state)
{
	struct fx *f = *state;
	uint64_t gpa = VARS_4M_BASE + FREE_OFFSET;
	uint8_t v = 0;

	assert_non_null(create(f, CODE_4M, f->vars));
	wr8(f->vm, gpa, 0x70);
	assert_int_equal(rd8(f->vm, gpa), PFLASH_STATUS_READY); /* power-on */
	wr8(f->vm, gpa, 0x50);
	assert_true(testdevmem.slot[1].mapped); /* clear status returns to read array */
	wr8(f->vm, gpa, 0x70);
	assert_int_equal(rd8(f->vm, gpa), 0x00);
	ovmf_write(f->vm, gpa, &v, 1);
	wr8(f->vm, gpa, 0x70);
	assert_int_equal(rd8(f->vm, gpa + 3), PFLASH_STATUS_READY);
	/* An erase not confirmed by 0xD0 is a command-sequence error and erases nothing. */
	wr8(f->vm, gpa, 0x20);
	wr8(f->vm, gpa, 0x00);
	assert_int_equal(rd8(f->vm, gpa) & 0x30, 0x30);
	wr8(f->vm, gpa, 0xFF);
	assert_int_equal(rd8(f->vm, gpa), 0x00);
	/* An unknown command: error bits, back to read array. */
	wr8(f->vm, gpa, 0x50);
	wr8(f->vm, gpa, 0x90);
	assert_true(testdevmem.slot[1].mapped);
	wr8(f->vm, gpa, 0x70);
	assert_int_equal(rd8(f->vm, gpa) & 0x30, 0x30);
	wr8(f->vm, gpa, 0xFF);
}

/* Variables written before the VM ends are in the file the next VM opens. */
static void test_written_variable_survives_restart(void **state)
{
	struct fx *f = *state;
	const uint8_t data[] = "BootOrder";
	uint64_t gpa = VARS_4M_BASE + FREE_OFFSET + 0x123;
	uint8_t back[sizeof(data)];

	assert_non_null(create(f, CODE_4M, f->vars));
	ovmf_write(f->vm, gpa, data, sizeof(data));
	testvm_free(f->vm);
	memset(&testdevmem, 0, sizeof(testdevmem));
	assert_non_null(create(f, CODE_4M, f->vars));
	assert_int_equal(ovmf_probe(f->vm, VARS_4M_BASE, rd8, wr8), PROBE_FLASH);
	for (size_t i = 0; i < sizeof(data); i++)
		back[i] = rd8(f->vm, gpa + i);
	assert_memory_equal(back, data, sizeof(data));
}

/* When the file is flushed: not per byte, but before the guest can see a write complete. */
static void test_flush_points(void **state)
{
	struct fx *f = *state;
	struct pflash fl;
	uint8_t *mem = malloc(2 * PFLASH_BLOCK);
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/flash.bin", f->dir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	memset(mem, 0xff, 2 * PFLASH_BLOCK);
	assert_int_equal(pwrite(fd, mem, 2 * PFLASH_BLOCK, 0), 2 * PFLASH_BLOCK);
	pflash_init(&fl, mem, 2 * PFLASH_BLOCK, fd, "test");
	pflash_write(&fl, 10, 0x10);
	pflash_write(&fl, 10, 0x00);
	assert_true(pflash_dirty(&fl));
	assert_int_equal(file_byte(path, 10), 0xFF); /* not yet: the guest cannot know it is done */
	pflash_write(&fl, 11, 0x10);
	pflash_write(&fl, 11, 0x00);
	assert_true(pflash_dirty(&fl));
	pflash_write(&fl, 11, 0xFF); /* read array: the guest may now read what it wrote */
	assert_false(pflash_dirty(&fl));
	assert_int_equal(file_byte(path, 10), 0x00);
	assert_int_equal(file_byte(path, 11), 0x00);
	pflash_write(&fl, PFLASH_BLOCK + 5, 0x10);
	pflash_write(&fl, PFLASH_BLOCK + 5, 0x00);
	pflash_write(&fl, PFLASH_BLOCK + 5, 0xFF);
	assert_int_equal(file_byte(path, PFLASH_BLOCK + 5), 0x00);
	pflash_write(&fl, PFLASH_BLOCK, 0x20);
	pflash_write(&fl, PFLASH_BLOCK, 0xD0);
	assert_true(pflash_dirty(&fl));
	assert_int_equal(file_byte(path, PFLASH_BLOCK + 5), 0x00);
	assert_int_equal(pflash_read(&fl, 0), PFLASH_STATUS_READY); /* status read: "done" */
	assert_false(pflash_dirty(&fl));
	assert_int_equal(file_byte(path, PFLASH_BLOCK + 5), 0xFF);
	pflash_write(&fl, 12, 0x40);
	pflash_write(&fl, 12, 0x00);
	pflash_write(&fl, 12, 0x50); /* clear status also returns to read array */
	assert_false(pflash_dirty(&fl));
	assert_int_equal(file_byte(path, 12), 0x00);
	assert_int_equal(file_byte(path, PFLASH_BLOCK + 5), 0xFF);
	close(fd);
	free(mem);
}

/* ---- hostile accesses ---- */

static void test_hostile_addresses(void **state)
{
	struct fx *f = *state;
	uint64_t end = VARS_4M_BASE + VARS_4M_SIZE;
	size_t len;
	uint8_t *code = read_file(CODE_4M, &len), buf[8], cmd[2] = { 0x10, 0x00 };
	uint64_t q = 0;

	assert_non_null(create(f, CODE_4M, f->vars));
	/* Straddling the store's end into the code: not delivered, so nothing is programmed. */
	for (int i = 0; i < 8; i++)
		buf[i] = i % 2 ? 0x00 : 0x10;
	guest_write(f->vm, end - 4, buf, 8);
	assert_true(testdevmem.slot[1].mapped);
	for (int i = 1; i <= 4; i++)
		assert_int_equal(rd8(f->vm, end - (uint64_t)i), 0xFF);
	memset(buf, 0xAA, sizeof(buf));
	/* Writes to the code are dropped. */
	guest_write(f->vm, CODE_4M_BASE, buf, 8);
	guest_write(f->vm, MEM_4G - 8, buf, 8);
	guest_read(f->vm, CODE_4M_BASE, &q, 8);
	assert_memory_equal(&q, code, 8);
	guest_read(f->vm, MEM_4G - 8, &q, 8);
	assert_memory_equal(&q, code + len - 8, 8);
	q = 0;
	iobus_access(&f->vm->mmio, MEM_4G - 8, (uint8_t *)&q, 8, false); /* as KVM's emulator would read it */
	assert_memory_equal(&q, code + len - 8, 8);
	/* Past 4 GiB and below the flash: nobody's. */
	q = 0;
	iobus_access(&f->vm->mmio, MEM_4G - 4, (uint8_t *)&q, 8, false);
	assert_int_equal(q, UINT64_MAX);
	iobus_access(&f->vm->mmio, VARS_4M_BASE - 4, (uint8_t *)&q, 8, false);
	assert_int_equal(q, UINT64_MAX);
	/* A 2-byte write is two byte writes: command, then data at the next address. */
	guest_write(f->vm, end - 2, cmd, 2);
	wr8(f->vm, end - 2, 0xFF);
	assert_int_equal(rd8(f->vm, end - 2), 0xFF);
	assert_int_equal(rd8(f->vm, end - 1), 0x00);
	assert_int_equal(file_byte(f->vars, VARS_4M_SIZE - 1), 0x00);
	free(code);
}

/* ---- two vCPUs ---- */

struct racer {
	struct vm *vm;
	uint64_t base;
	int id;
};

static void *race(void *opaque)
{
	struct racer *r = opaque;
	uint8_t v;

	for (int i = 0; i < 300; i++) {
		uint64_t gpa = r->base + (uint64_t)(i % 64);
		v = (uint8_t)(i * 7 + r->id);
		switch (i % 5) {
		case 0:
			ovmf_erase(r->vm, r->base);
			wr8(r->vm, r->base, 0xFF);
			break;
		case 1:
			/*
			 * Read through the device, never the slot: a read through
			 * the slot racing the other vCPU's program is a guest read
			 * of memory the host writes, as on hardware, which
			 * ThreadSanitizer would report against the test.
			 */
			wr8(r->vm, gpa, 0x70);
			iobus_access(&r->vm->mmio, gpa, &v, 1, false);
			wr8(r->vm, gpa, 0x50);
			break;
		default:
			ovmf_write(r->vm, gpa, &v, 1);
			break;
		}
	}
	return NULL;
}

static void test_two_vcpus_race(void **state)
{
	struct fx *f = *state;
	struct racer a = { .base = VARS_4M_BASE + FREE_OFFSET, .id = 1 };
	struct racer b = { .base = VARS_4M_BASE + FREE_OFFSET + PFLASH_BLOCK, .id = 2 };
	pthread_t ta, tb;
	size_t len;
	uint8_t *file, mem;

	assert_non_null(create(f, CODE_4M, f->vars));
	a.vm = b.vm = f->vm;
	pthread_create(&ta, NULL, race, &a);
	pthread_create(&tb, NULL, race, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	/*
	 * However the commands interleaved: the slot follows the mode, and the
	 * file is the array. (A first 0xFF may be taken as a program's data or
	 * an erase's confirm; the second is a command.)
	 */
	wr8(f->vm, VARS_4M_BASE, 0xFF);
	wr8(f->vm, VARS_4M_BASE, 0xFF);
	assert_true(testdevmem.slot[1].mapped);
	file = read_file(f->vars, &len);
	assert_int_equal(len, VARS_4M_SIZE);
	for (uint64_t off = FREE_OFFSET; off < FREE_OFFSET + 2 * PFLASH_BLOCK; off++) {
		mem = rd8(f->vm, VARS_4M_BASE + off);
		if (mem != file[off])
			fail_msg("offset 0x%llx: memory 0x%02x, file 0x%02x", (unsigned long long)off, mem, file[off]);
	}
	free(file);
}

/* ---- snapshots ---- */

static uint8_t *save_device(struct device *d, size_t *len)
{
	struct state_writer *w = state_writer_new();
	uint8_t *buf;

	assert_int_equal(d->model->save(d, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, len), 0);
	state_writer_free(w);
	return buf;
}

static int restore_device(struct device *d, const uint8_t *buf, size_t len)
{
	struct state_reader *r = state_reader_new(buf, len);
	int rc;

	assert_non_null(r);
	rc = d->model->restore(d, r, 1);
	state_reader_free(r);
	return rc;
}

static void test_save_restore(void **state)
{
	struct fx *f = *state;
	uint64_t gpa = VARS_4M_BASE + FREE_OFFSET;
	const uint8_t saved[] = "saved";
	uint8_t *snap, zero = 0, back[sizeof(saved)];
	size_t len;

	assert_non_null(create(f, CODE_4M, f->vars));
	ovmf_write(f->vm, gpa, saved, sizeof(saved));
	wr8(f->vm, gpa, 0x70); /* saved in read-status mode */
	snap = save_device(f->dev, &len);
	/* Afterwards the guest goes on writing: the snapshot's store must come back over it. */
	wr8(f->vm, gpa, 0xFF);
	ovmf_erase(f->vm, gpa);
	wr8(f->vm, gpa, 0xFF);
	ovmf_write(f->vm, gpa + 100, &zero, 1);
	assert_int_equal(file_byte(f->vars, FREE_OFFSET), 0xFF);

	assert_int_equal(restore_device(f->dev, snap, len), 0);
	assert_false(testdevmem.slot[1].mapped);
	assert_int_equal(rd8(f->vm, gpa), PFLASH_STATUS_READY);
	wr8(f->vm, gpa, 0xFF);
	for (size_t i = 0; i < sizeof(saved); i++) {
		back[i] = rd8(f->vm, gpa + i);
		assert_int_equal(file_byte(f->vars, FREE_OFFSET + i), saved[i]);
	}
	assert_memory_equal(back, saved, sizeof(saved));
	assert_int_equal(rd8(f->vm, gpa + 100), 0xFF);
	assert_int_equal(file_byte(f->vars, FREE_OFFSET + 100), 0xFF);
	free(snap);
}

/* A snapshot of a combined image (2 MiB layout) does not restore onto the 4 MiB one. */
static void test_restore_refuses_other_layout(void **state)
{
	struct fx *f = *state;
	uint8_t *snap;
	size_t len;

	assert_non_null(create(f, COMBINED, NULL));
	snap = save_device(f->dev, &len);
	testvm_free(f->vm);
	memset(&testdevmem, 0, sizeof(testdevmem));
	assert_non_null(create(f, CODE_4M, f->vars));
	assert_int_equal(restore_device(f->dev, snap, len), -1);
	/* Refused: the store and the file are as they were, in read-array mode. */
	assert_true(testdevmem.slot[1].mapped);
	assert_int_equal(file_byte(f->vars, 0x28), '_');
	free(snap);
}

static void test_restore_refuses_malformed(void **state)
{
	struct fx *f = *state;
	struct state_writer *w = state_writer_new();
	uint8_t *buf, small[16] = { 0 };
	size_t len;

	assert_non_null(create(f, CODE_4M, f->vars));
	state_put_u64(w, "code_size", CODE_4M_SIZE);
	state_put_bytes(w, "vars", small, sizeof(small));
	state_begin_map(w, "flash");
	state_put_u64(w, "mode", 1);
	state_put_u64(w, "status", 0x80);
	state_end_map(w);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	assert_int_equal(restore_device(f->dev, buf, len), -1);
	free(buf);

	w = state_writer_new();
	uint8_t *vars = malloc(VARS_4M_SIZE);
	memset(vars, 0xff, VARS_4M_SIZE);
	state_put_u64(w, "code_size", CODE_4M_SIZE);
	state_put_bytes(w, "vars", vars, VARS_4M_SIZE);
	state_begin_map(w, "flash");
	state_put_u64(w, "mode", 9); /* no such mode */
	state_put_u64(w, "status", 0x80);
	state_end_map(w);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	assert_int_equal(restore_device(f->dev, buf, len), -1);
	assert_true(testdevmem.slot[1].mapped);
	assert_int_equal(file_byte(f->vars, 0x28), '_');
	free(buf);
	free(vars);
}

/* ---- the platform the firmware needs ---- */

/* Firmware boot on a fresh test VM of `layout` with the extra settings: bootrom's attach() result. */
static int attach_firmware(struct fx *f, const char *layout, const char *const *settings)
{
	if (f->vm)
		testvm_free(f->vm);
	memset(&testdevmem, 0, sizeof(testdevmem));
	f->vm = testvm_new_platform(512ULL << 20, layout);
	assert_int_equal(config_set(f->vm->cfg, "lpc.bootrom", CODE_4M), 0);
	assert_int_equal(config_set(f->vm->cfg, "lpc.bootvars", f->vars), 0);
	for (; settings && *settings; settings++)
		assert_int_equal(config_set_assignment(f->vm->cfg, *settings), 0);
	return device_model_find("bootrom")->attach(f->vm);
}

/*
 * OVMF recognises Q35 by the host bridge's id and finds the PM block only
 * through the LPC bridge at 0:1f.0: the LPC bridge is added there, and what
 * would hide either is refused.
 */
static void test_firmware_platform(void **state)
{
	static const char *const lpc_at_31[] = { "pci.0.31.0.device=lpc", NULL };
	static const char *const lpc_at_30[] = { "pci.0.30.0.device=lpc", NULL };
	static const char *const other_at_31[] = { "pci.0.31.0.device=hostbridge", NULL };
	static const char *const lpc_function[] = { "pci.0.31.0.device=lpc", "pci.0.31.2.device=lpc", NULL };
	static const char *const bridge_ids[] = { "pci.0.0.0.device=hostbridge", "pci.0.0.0.devid=0x1237", NULL };
	static const char *const other_bridge[] = { "pci.0.0.0.device=lpc", NULL };
	struct fx *f = *state;

	assert_int_equal(attach_firmware(f, NULL, NULL), 0);
	assert_string_equal(config_get(f->vm->cfg, "pci.0.31.0.device"), "lpc");
	assert_int_equal(attach_firmware(f, "q35", lpc_at_31), 0);
	assert_int_equal(attach_firmware(f, "q35", lpc_at_30), -1);
	assert_int_equal(attach_firmware(f, "q35", other_at_31), -1);
	assert_int_equal(attach_firmware(f, "q35", lpc_function), -1);
	assert_int_equal(attach_firmware(f, "q35", bridge_ids), -1);
	assert_int_equal(attach_firmware(f, "q35", other_bridge), -1);
	assert_int_equal(attach_firmware(f, "legacy", NULL), -1);
	assert_null(config_get(f->vm->cfg, "pci.0.31.0.device"));
}

/* ---- the command line ---- */

static enum cli_result parse(struct config *cfg, int argc, const char **argv)
{
	return cli_parse(argc, (char **)argv, cfg);
}

static void test_command_line(void **state)
{
	struct config *cfg = config_new();
	(void)state;

	const char *both[] = { "hyve", "-l", "bootrom,/fw/CODE.fd,/vm/VARS.fd", "vm" };
	assert_int_equal(parse(cfg, 4, both), CLI_RUN);
	assert_string_equal(config_get(cfg, "lpc.bootrom"), "/fw/CODE.fd");
	assert_string_equal(config_get(cfg, "lpc.bootvars"), "/vm/VARS.fd");
	/* Host bindings: a snapshot that is not the user's own does not choose the files. */
	assert_int_equal(options_flags(cfg, "lpc.bootrom"), OPTION_HOST_BINDING);
	assert_int_equal(options_flags(cfg, "lpc.bootvars"), OPTION_HOST_BINDING);
	config_free(cfg);

	cfg = config_new();
	const char *code_only[] = { "hyve", "-l", "bootrom,/fw/CODE.fd,/vm/VARS.fd", "-l", "bootrom,/usr/share/ovmf/OVMF.fd",
				    "vm" };
	assert_int_equal(parse(cfg, 6, code_only), CLI_RUN);
	assert_string_equal(config_get(cfg, "lpc.bootrom"), "/usr/share/ovmf/OVMF.fd");
	assert_null(config_get(cfg, "lpc.bootvars"));
	config_free(cfg);

	const char *bad[][4] = {
		{ "hyve", "-l", "bootrom", "vm" },           { "hyve", "-l", "bootrom,", "vm" },
		{ "hyve", "-l", "bootrom,,VARS", "vm" },     { "hyve", "-l", "bootrom,CODE,", "vm" },
		{ "hyve", "-l", "bootrom,a,b,c", "vm" },     { "hyve", "-l", "bootromx,CODE", "vm" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg = config_new();
		if (parse(cfg, 4, bad[i]) != CLI_ERROR)
			fail_msg("-l %s was accepted", bad[i][2]);
		config_free(cfg);
	}

	cfg = config_new();
	const char *with_kernel[] = { "hyve", "-l", "bootrom,CODE", "--kernel", "bzImage", "vm" };
	assert_int_equal(parse(cfg, 6, with_kernel), CLI_ERROR);
	config_free(cfg);

	cfg = config_new();
	const char *by_keys[] = { "hyve", "-o", "lpc.bootrom=CODE", "-o", "boot.kernel=bzImage", "vm" };
	assert_int_equal(parse(cfg, 6, by_keys), CLI_ERROR);
	config_free(cfg);

	cfg = config_new();
	const char *vars_alone[] = { "hyve", "-o", "lpc.bootvars=VARS", "vm" };
	assert_int_equal(parse(cfg, 4, vars_alone), CLI_ERROR);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_accepts_4m_pair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accepts_2m_pair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accepts_combined_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_missing_and_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_non_firmware, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_secure_boot_builds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_read_only_vars, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_mismatched_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_vars_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ovmf_probe_finds_flash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ovmf_probe_sees_code_as_rom, setup, teardown),
		cmocka_unit_test_setup_teardown(test_program_writes_through, setup, teardown),
		cmocka_unit_test_setup_teardown(test_program_clears_bits_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_erase_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_register, setup, teardown),
		cmocka_unit_test_setup_teardown(test_written_variable_survives_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_points, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_vcpus_race, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_other_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firmware_platform, setup, teardown),
		cmocka_unit_test(test_command_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
