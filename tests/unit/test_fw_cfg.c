/*
 * The fw_cfg device (src/dev/fw_cfg.c) through its ports and DMA register,
 * as OVMF drives it, and the ACPI table-loader script (src/boot/acpi.c,
 * fw_cfg_loader.c, fw_cfg_files.c) run by an interpreter written here from
 * the interface's description (QEMU's docs/specs/fw_cfg.rst and OVMF's
 * AcpiPlatformDxe), not from hyve's headers: register numbers, directory and
 * command layouts are spelt out again below.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "boot/acpi.h"
#include "boot/fw_cfg_loader.h"
#include "boot/fw_cfg_files.h"
#include "boot/layout.h"
#include "core/config.h"
#include "core/device.h"
#include "core/memory.h"
#include "core/platform.h"
#include "core/vm.h"
#include "dev/fw_cfg.h"
#include "snapshot/state.h"
#include "testvm.h"

/* The interface, as the firmware knows it. */
#define P_SELECTOR 0x510
#define P_DATA 0x511
#define P_DMA_HIGH 0x514
#define P_DMA_LOW 0x518
#define K_SIGNATURE 0x0000
#define K_ID 0x0001
#define K_NB_CPUS 0x0005
#define K_FILE_DIR 0x0019
#define C_ERROR 0x01
#define C_READ 0x02
#define C_SKIP 0x04
#define C_SELECT 0x08
#define C_WRITE 0x10
#define NAME_LEN 56

#define RAM (16ULL << 20)
#define DESC_GPA 0x1000ULL  /* a DMA descriptor */
#define BUF_GPA 0x100000ULL /* a DMA buffer */

static struct vm *new_vm(uint64_t ram, unsigned ncpus, bool allocate)
{
	struct vm *vm = testvm_new(ram);

	vm->ncpus = ncpus;
	assert_int_equal(config_set(vm->cfg, "lpc.bootrom", "/usr/share/OVMF/OVMF_CODE_4M.fd"), 0);
	assert_int_equal(device_model_find("fw-cfg")->attach(vm), 0);
	assert_non_null(vm->fw_cfg);
	if (allocate)
		assert_int_equal(mem_alloc(&vm->mem, "test-fw-cfg"), 0);
	return vm;
}

static void free_vm(struct vm *vm)
{
	mem_free(&vm->mem);
	testvm_free(vm);
}

static int setup(void **state)
{
	*state = new_vm(RAM, 2, true);
	return 0;
}

static int teardown(void **state)
{
	free_vm(*state);
	return 0;
}

static uint8_t *ram(struct vm *vm, uint64_t gpa, uint64_t len)
{
	uint8_t *p = mem_gpa_to_hva(&vm->mem, gpa, len);

	assert_non_null(p);
	return p;
}

static void pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 8));
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void select_key(struct vm *vm, uint16_t key)
{
	outw(vm, P_SELECTOR, key);
}

static void read_port(struct vm *vm, void *buf, size_t n)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < n; i++)
		p[i] = inb(vm, P_DATA);
}

/* Writes the descriptor address as OVMF does: byte-swapped 32-bit halves, high first. */
static void dma_kick(struct vm *vm, uint64_t desc)
{
	outl(vm, P_DMA_HIGH, __builtin_bswap32((uint32_t)(desc >> 32)));
	outl(vm, P_DMA_LOW, __builtin_bswap32((uint32_t)desc));
}

/* One DMA request through a descriptor at desc_gpa; returns the control word written back. */
static uint32_t dma_at(struct vm *vm, uint64_t desc_gpa, uint32_t control, uint32_t length, uint64_t addr)
{
	uint8_t *d = ram(vm, desc_gpa, 16);

	put_be(d, control, 4);
	put_be(d + 4, length, 4);
	put_be(d + 8, addr, 8);
	dma_kick(vm, desc_gpa);
	return be32(d);
}

static uint32_t dma(struct vm *vm, uint32_t control, uint32_t length, uint64_t addr)
{
	return dma_at(vm, DESC_GPA, control, length, addr);
}

static uint32_t select_control(uint16_t key)
{
	return (uint32_t)key << 16 | C_SELECT;
}

/* ---- an independent directory reader ---- */

struct dir_entry {
	uint32_t size;
	uint16_t select;
	char name[NAME_LEN];
};

/* Reads the directory by port I/O; returns the entry count. */
static unsigned read_dir(struct vm *vm, struct dir_entry *out, unsigned max)
{
	uint8_t hdr[4], e[64];
	unsigned n;

	select_key(vm, K_FILE_DIR);
	read_port(vm, hdr, 4);
	n = be32(hdr);
	assert_true(n <= max);
	for (unsigned i = 0; i < n; i++) {
		read_port(vm, e, sizeof(e));
		out[i].size = be32(e);
		out[i].select = (uint16_t)(e[4] << 8 | e[5]);
		assert_int_equal(e[6] | e[7], 0); /* reserved */
		memcpy(out[i].name, e + 8, NAME_LEN);
		assert_int_equal(out[i].name[NAME_LEN - 1], 0);
	}
	return n;
}

static bool find_file(struct vm *vm, const char *name, struct dir_entry *found)
{
	struct dir_entry d[80];
	unsigned n = read_dir(vm, d, 80);

	for (unsigned i = 0; i < n; i++) {
		if (strcmp(d[i].name, name) == 0) {
			*found = d[i];
			return true;
		}
	}
	return false;
}

/* ---- identification ---- */

static void test_signature_and_id(void **state)
{
	struct vm *vm = *state;
	uint8_t sig[4], id[4], dma_sig[8];

	select_key(vm, K_SIGNATURE);
	read_port(vm, sig, 4);
	assert_memory_equal(sig, "QEMU", 4);
	select_key(vm, K_ID);
	read_port(vm, id, 4);
	assert_true(le(id, 4) & 0x01);
	assert_true(le(id, 4) & 0x02); /* DMA */
	/* The DMA register reads as "QEMU CFG". */
	put_le(dma_sig, inl(vm, P_DMA_HIGH), 4);
	put_le(dma_sig + 4, inl(vm, P_DMA_LOW), 4);
	assert_memory_equal(dma_sig, "QEMU CFG", 8);
	/* A signature read by DMA, as the library re-reads items once DMA is known. */
	memset(ram(vm, BUF_GPA, 8), 0xAA, 8);
	assert_int_equal(dma(vm, select_control(K_SIGNATURE) | C_READ, 4, BUF_GPA), 0);
	assert_memory_equal(ram(vm, BUF_GPA, 4), "QEMU", 4);
	assert_int_equal(ram(vm, BUF_GPA, 8)[4], 0xAA);
}

static void test_cpu_count(void **state)
{
	struct vm *vm = new_vm(RAM, 3, false);
	uint8_t n[2];

	(void)state;
	select_key(vm, K_NB_CPUS);
	read_port(vm, n, 2);
	assert_int_equal(le(n, 2), 3);
	free_vm(vm);
}

static void test_absent_without_bootrom(void **state)
{
	struct vm *vm = testvm_new(RAM);

	(void)state;
	assert_int_equal(device_model_find("fw-cfg")->attach(vm), 0);
	assert_null(vm->fw_cfg);
	assert_null(device_find(vm, "platform.fw-cfg"));
	assert_int_equal(inb(vm, P_DATA), 0xFF);
	testvm_free(vm);
}

/* ---- files ---- */

static void test_directory_and_files(void **state)
{
	struct vm *vm = *state;
	static uint8_t a[300], b[5000], scratch[300];
	struct dir_entry d[8];
	uint8_t got[5000];

	pattern(a, sizeof(a), 1);
	pattern(b, sizeof(b), 2);
	memcpy(scratch, a, sizeof(a));
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/a", scratch, sizeof(scratch)), 0);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "opt/empty", NULL, 0), 0);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/b", b, sizeof(b)), 0);
	memset(scratch, 0, sizeof(scratch)); /* the device keeps its own copy */

	assert_int_equal(read_dir(vm, d, 8), 3);
	assert_string_equal(d[0].name, "etc/a");
	assert_int_equal(d[0].size, sizeof(a));
	assert_string_equal(d[1].name, "opt/empty");
	assert_int_equal(d[1].size, 0);
	assert_string_equal(d[2].name, "etc/b");
	assert_int_equal(d[2].size, sizeof(b));
	assert_true(d[0].select >= 0x20 && d[1].select >= 0x20 && d[2].select >= 0x20);
	assert_true(d[0].select != d[1].select && d[1].select != d[2].select && d[0].select != d[2].select);

	/* By port. */
	select_key(vm, d[0].select);
	read_port(vm, got, sizeof(a));
	assert_memory_equal(got, a, sizeof(a));
	/* By DMA, in two requests that continue where the first stopped. */
	assert_int_equal(dma(vm, select_control(d[2].select) | C_READ, 1000, BUF_GPA), 0);
	assert_int_equal(dma(vm, C_READ, sizeof(b) - 1000, BUF_GPA + 1000), 0);
	assert_memory_equal(ram(vm, BUF_GPA, sizeof(b)), b, sizeof(b));
	/* The empty file reads as zeros. */
	select_key(vm, d[1].select);
	assert_int_equal(inb(vm, P_DATA), 0);
}

static void test_rep_insb(void **state)
{
	struct vm *vm = *state;
	static uint8_t f[4096], got[4096 + 16];
	struct dir_entry e;

	pattern(f, sizeof(f), 3);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/rep", f, sizeof(f)), 0);
	assert_true(find_file(vm, "etc/rep", &e));
	select_key(vm, e.select);
	/* One exit with count 4096 + 16: the file, then zeros past its end. */
	memset(got, 0xAA, sizeof(got));
	testvm_in_string(vm, P_DATA, 1, got, sizeof(got));
	assert_memory_equal(got, f, sizeof(f));
	for (size_t i = sizeof(f); i < sizeof(got); i++)
		assert_int_equal(got[i], 0);
}

static void test_read_past_end(void **state)
{
	struct vm *vm = *state;
	uint8_t f[10], *buf = ram(vm, BUF_GPA, 32);
	struct dir_entry e;

	pattern(f, sizeof(f), 4);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/short", f, sizeof(f)), 0);
	assert_true(find_file(vm, "etc/short", &e));
	memset(buf, 0xAA, 32);
	assert_int_equal(dma(vm, select_control(e.select) | C_READ, 24, BUF_GPA), 0);
	assert_memory_equal(buf, f, 10);
	for (int i = 10; i < 24; i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(buf[24], 0xAA);
	/* At the end now: more reads give zeros, by port and by DMA. */
	assert_int_equal(inb(vm, P_DATA), 0);
	memset(buf, 0xAA, 4);
	assert_int_equal(dma(vm, C_READ, 4, BUF_GPA), 0);
	assert_int_equal(le(buf, 4), 0);
}

static void test_skip_and_select(void **state)
{
	struct vm *vm = *state;
	uint8_t f[100];
	struct dir_entry e;

	pattern(f, sizeof(f), 5);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/skip", f, sizeof(f)), 0);
	assert_true(find_file(vm, "etc/skip", &e));
	select_key(vm, K_SIGNATURE);
	/* Select and skip in one request, then read on by port. */
	assert_int_equal(dma(vm, select_control(e.select) | C_SKIP, 10, 0), 0);
	assert_int_equal(inb(vm, P_DATA), f[10]);
	assert_int_equal(dma(vm, C_SKIP, 20, 0), 0);
	assert_int_equal(inb(vm, P_DATA), f[31]);
	/* Skipping past the end stops there. */
	assert_int_equal(dma(vm, C_SKIP, 0xFFFFFFFF, 0), 0);
	assert_int_equal(inb(vm, P_DATA), 0);
	/* Select alone rewinds. */
	assert_int_equal(dma(vm, select_control(e.select), 0, 0), 0);
	assert_int_equal(inb(vm, P_DATA), f[0]);
	/* A port select rewinds too. */
	select_key(vm, e.select);
	assert_int_equal(inb(vm, P_DATA), f[0]);
	/* Unknown items, also with the architecture bit, read as zeros without error. */
	memset(ram(vm, BUF_GPA, 8), 0xAA, 8);
	assert_int_equal(dma(vm, select_control(0x8001) | C_READ, 8, BUF_GPA), 0);
	assert_int_equal(le(ram(vm, BUF_GPA, 8), 8), 0);
	select_key(vm, 0x7FFF);
	assert_int_equal(inb(vm, P_DATA), 0);
}

static void test_writes_refused(void **state)
{
	struct vm *vm = *state;
	uint8_t f[16], got[16];
	struct dir_entry e;

	pattern(f, sizeof(f), 6);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/ro", f, sizeof(f)), 0);
	assert_true(find_file(vm, "etc/ro", &e));
	memset(ram(vm, BUF_GPA, 16), 0x55, 16);
	assert_int_equal(dma(vm, select_control(e.select) | C_WRITE, 16, BUF_GPA), C_ERROR);
	select_key(vm, e.select);
	outb(vm, P_DATA, 0x55); /* the data port ignores writes */
	read_port(vm, got, sizeof(got));
	assert_memory_equal(got, f, sizeof(f));
}

/* ---- hostile DMA ---- */

static void test_hostile_dma(void **state)
{
	struct vm *vm = *state;
	uint8_t f[64];
	struct dir_entry e;
	uint8_t *end = ram(vm, RAM - 16, 16);

	pattern(f, sizeof(f), 7);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/h", f, sizeof(f)), 0);
	assert_true(find_file(vm, "etc/h", &e));
	select_key(vm, e.select);

	/* Destination outside RAM, wrapping past 2^64, longer than RAM: error, nothing moves. */
	assert_int_equal(dma(vm, C_READ, 16, RAM), C_ERROR);
	assert_int_equal(dma(vm, C_READ, 16, 0xFFFFFFFFFFFFFFF8ULL), C_ERROR);
	assert_int_equal(dma(vm, C_READ, 0xFFFFFFFF, BUF_GPA), C_ERROR);
	assert_int_equal(dma(vm, C_READ, 32, RAM - 16), C_ERROR);
	assert_int_equal(dma(vm, C_READ, 16, vm->platform->lowmem_limit), C_ERROR);
	assert_int_equal(inb(vm, P_DATA), f[0]); /* the read position did not move */

	/* Ending exactly at the end of RAM is fine. */
	assert_int_equal(dma(vm, C_READ, 16, RAM - 16), 0);
	assert_memory_equal(end, f + 1, 16);

	/* A descriptor outside RAM or crossing its end: ignored, nothing written or moved. */
	memset(end, 0xAA, 16);
	dma_kick(vm, RAM);
	dma_kick(vm, RAM - 8);
	dma_kick(vm, 0xFFFFFFFFFFFFFFF8ULL);
	for (int i = 0; i < 16; i++)
		assert_int_equal(end[i], 0xAA);
	assert_int_equal(inb(vm, P_DATA), f[17]);

	/* A descriptor the request overwrites: the values read first are the ones used. */
	select_key(vm, e.select);
	assert_int_equal(dma(vm, C_READ, 16, DESC_GPA), 0);
	assert_memory_equal(ram(vm, DESC_GPA + 4, 12), f + 4, 12);
	assert_int_equal(be32(ram(vm, DESC_GPA, 4)), 0);
}

static void test_dma_high_half(void **state)
{
	struct vm *vm = *state;
	uint8_t *d = ram(vm, DESC_GPA, 16);

	/* The high half is latched until the low half is written, then cleared. */
	put_be(d, select_control(K_SIGNATURE) | C_READ, 4);
	put_be(d + 4, 4, 4);
	put_be(d + 8, BUF_GPA, 8);
	outl(vm, P_DMA_HIGH, __builtin_bswap32(1));
	outl(vm, P_DMA_LOW, __builtin_bswap32((uint32_t)DESC_GPA)); /* at 4 GiB + DESC_GPA: no RAM, ignored */
	assert_int_equal(be32(d), select_control(K_SIGNATURE) | C_READ);
	outl(vm, P_DMA_LOW, __builtin_bswap32((uint32_t)DESC_GPA)); /* high half 0 again */
	assert_int_equal(be32(d), 0);
	assert_memory_equal(ram(vm, BUF_GPA, 4), "QEMU", 4);
	/* Byte and word writes to the register do nothing. */
	put_be(d, select_control(K_SIGNATURE) | C_READ, 4);
	outb(vm, P_DMA_LOW, 0);
	outw(vm, P_DMA_LOW, 0);
	assert_int_equal(be32(d), select_control(K_SIGNATURE) | C_READ);
}

/* ---- adding files ---- */

static void test_add_file_refusals(void **state)
{
	struct vm *vm = *state;
	char name[80];
	uint8_t *big;

	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/x", "x", 1), 0);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/x", "y", 1), -1);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "", "y", 1), -1);
	memset(name, 'n', NAME_LEN);
	name[NAME_LEN] = 0; /* 56 characters: no room for the NUL */
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, name, "y", 1), -1);
	name[NAME_LEN - 1] = 0; /* 55: fits */
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, name, "y", 1), 0);
	big = calloc(1, FW_CFG_FILE_MAX + 1);
	assert_non_null(big);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/big", big, FW_CFG_FILE_MAX + 1), -1);
	free(big);
	for (unsigned i = 2; i < FW_CFG_MAX_FILES; i++) {
		snprintf(name, sizeof(name), "opt/f%u", i);
		assert_int_equal(fw_cfg_add_file(vm->fw_cfg, name, &i, sizeof(i)), 0);
	}
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "opt/one-too-many", "z", 1), -1);
	{
		struct dir_entry d[80];
		assert_int_equal(read_dir(vm, d, 80), FW_CFG_MAX_FILES);
		assert_string_equal(d[0].name, "etc/x");
		select_key(vm, d[0].select);
		assert_int_equal(inb(vm, P_DATA), 'x');
	}
}

/* ---- several vCPUs ---- */

#define RACE_ROUNDS 3000

struct racer {
	struct vm *vm;
	uint16_t select;
	const uint8_t *expect;
	size_t len;
	uint64_t desc, buf;
	unsigned bad;
};

/* Select-and-read in one descriptor is atomic: it always returns the whole file. */
static void *dma_racer(void *opaque)
{
	struct racer *r = opaque;

	for (int i = 0; i < RACE_ROUNDS; i++) {
		uint32_t c = dma_at(r->vm, r->desc, select_control(r->select) | C_READ, (uint32_t)r->len, r->buf);
		if (c != 0 || memcmp(mem_gpa_to_hva(&r->vm->mem, r->buf, r->len), r->expect, r->len) != 0)
			r->bad++;
	}
	return NULL;
}

/* Port I/O from another vCPU: selector writes and reads interleave with the DMA. */
static void *port_racer(void *opaque)
{
	struct racer *r = opaque;
	uint8_t got[8];

	for (int i = 0; i < RACE_ROUNDS; i++) {
		select_key(r->vm, r->select);
		read_port(r->vm, got, sizeof(got));
	}
	return NULL;
}

static void test_racing_vcpus(void **state)
{
	struct vm *vm = *state;
	static uint8_t a[512], b[700];
	struct dir_entry ea, eb;
	pthread_t t[3];

	pattern(a, sizeof(a), 10);
	pattern(b, sizeof(b), 11);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/race-a", a, sizeof(a)), 0);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/race-b", b, sizeof(b)), 0);
	assert_true(find_file(vm, "etc/race-a", &ea));
	assert_true(find_file(vm, "etc/race-b", &eb));
	struct racer ra = { vm, ea.select, a, sizeof(a), 0x2000, 0x200000, 0 };
	struct racer rb = { vm, eb.select, b, sizeof(b), 0x3000, 0x300000, 0 };
	struct racer rp = { vm, K_FILE_DIR, NULL, 0, 0, 0, 0 };
	assert_int_equal(pthread_create(&t[0], NULL, dma_racer, &ra), 0);
	assert_int_equal(pthread_create(&t[1], NULL, dma_racer, &rb), 0);
	assert_int_equal(pthread_create(&t[2], NULL, port_racer, &rp), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(ra.bad, 0);
	assert_int_equal(rb.bad, 0);
}

/* ---- reset and snapshots ---- */

static void test_reset(void **state)
{
	struct vm *vm = *state;
	struct device *dev = device_find(vm, "platform.fw-cfg");
	uint8_t sig[4];
	struct dir_entry e;

	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/kept", "abc", 3), 0);
	select_key(vm, K_ID);
	assert_int_equal(inb(vm, P_DATA) & 0x02, 0x02);
	dev->model->reset(dev);
	read_port(vm, sig, 4);
	assert_memory_equal(sig, "QEMU", 4);
	assert_true(find_file(vm, "etc/kept", &e));
}

static uint8_t *save(struct vm *vm, size_t *len)
{
	struct device *dev = device_find(vm, "platform.fw-cfg");
	struct state_writer *w = state_writer_new();
	uint8_t *buf;

	assert_int_equal(dev->model->save(dev, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, len), 0);
	state_writer_free(w);
	return buf;
}

static int restore(struct vm *vm, const uint8_t *buf, size_t len)
{
	struct device *dev = device_find(vm, "platform.fw-cfg");
	struct state_reader *r = state_reader_new(buf, len);
	int ret;

	assert_non_null(r);
	ret = dev->model->restore(dev, r, 1);
	state_reader_free(r);
	return ret;
}

static void test_save_restore(void **state)
{
	struct vm *vm = *state, *vm2 = new_vm(RAM, 2, true);
	static uint8_t f[3000];
	uint8_t got[3000], *buf, *buf2;
	struct dir_entry e, d1[4], d2[4];
	size_t len, len2;

	pattern(f, sizeof(f), 12);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/one", "1", 1), 0);
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/two", f, sizeof(f)), 0);
	assert_int_equal(fw_cfg_add_file(vm2->fw_cfg, "etc/other", "2", 1), 0);
	assert_true(find_file(vm, "etc/two", &e));
	select_key(vm, e.select);
	read_port(vm, got, 1234);
	outl(vm, P_DMA_HIGH, __builtin_bswap32(7));

	buf = save(vm, &len);
	assert_int_equal(restore(vm2, buf, len), 0);
	/* The reading goes on where it stopped, in the same content. */
	read_port(vm2, got + 1234, sizeof(f) - 1234);
	assert_memory_equal(got, f, sizeof(f));
	/* The restored device saves what it was given; the files replaced vm2's own. */
	select_key(vm, e.select);
	read_port(vm, got, 1234);
	select_key(vm2, e.select);
	read_port(vm2, got, 1234);
	buf2 = save(vm2, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(buf2, buf, len);
	assert_int_equal(read_dir(vm, d1, 4), 2);
	assert_int_equal(read_dir(vm2, d2, 4), 2);
	assert_memory_equal(d1, d2, sizeof(d1[0]) * 2);
	free(buf);
	free(buf2);
	free_vm(vm2);
}

/* A section as a hostile or damaged snapshot could hold it. */
struct bad_section {
	uint64_t selector, offset, files;
	const char *name0, *name1;
	uint64_t size1;
	size_t data1;
};

static uint8_t *section(const struct bad_section *b, size_t *len)
{
	struct state_writer *w = state_writer_new();
	static const uint8_t data[64];
	uint8_t *buf;

	state_put_u64(w, "selector", b->selector);
	state_put_u64(w, "offset", b->offset);
	state_put_u64(w, "dma_high", 0);
	state_put_u64(w, "files", b->files);
	state_begin_map(w, "file0");
	state_put_str(w, "name", b->name0);
	state_put_u64(w, "size", 4);
	state_put_bytes(w, "data", data, 4);
	state_end_map(w);
	state_begin_map(w, "file1");
	state_put_str(w, "name", b->name1);
	state_put_u64(w, "size", b->size1);
	state_put_bytes(w, "data", data, b->data1);
	state_end_map(w);
	assert_int_equal(state_writer_finish(w, &buf, len), 0);
	state_writer_free(w);
	return buf;
}

static void test_restore_refusals(void **state)
{
	struct vm *vm = *state;
	char longname[80];
	const struct bad_section good = { 0x21, 8, 2, "etc/a", "etc/b", 8, 8 };
	struct bad_section bad[] = {
		{ 0x21, 9, 2, "etc/a", "etc/b", 8, 8 },             /* offset beyond the selected file */
		{ 0x10000, 0, 2, "etc/a", "etc/b", 8, 8 },          /* selector wider than 16 bits */
		{ 0x21, 0, 2, "etc/a", "etc/a", 8, 8 },             /* the same name twice */
		{ 0x21, 0, 2, "etc/a", "", 8, 8 },                  /* an empty name */
		{ 0x21, 0, 2, "etc/a", longname, 8, 8 },            /* a name too long */
		{ 0x21, 0, 2, "etc/a", "etc/b", 8, 7 },             /* data shorter than its size */
		{ 0x21, 0, 2, "etc/a", "etc/b", FW_CFG_FILE_MAX + 1, 8 }, /* a size too large */
		{ 0x21, 0, 3, "etc/a", "etc/b", 8, 8 },             /* a file missing */
		{ 0x21, 0, FW_CFG_MAX_FILES + 1, "etc/a", "etc/b", 8, 8 }, /* too many files */
	};
	uint8_t *buf;
	size_t len;

	memset(longname, 'l', NAME_LEN);
	longname[NAME_LEN] = 0;
	assert_int_equal(fw_cfg_add_file(vm->fw_cfg, "etc/mine", "mine", 4), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		select_key(vm, FW_CFG_FILE_FIRST);
		assert_int_equal(inb(vm, P_DATA), 'm');
		buf = section(&bad[i], &len);
		assert_int_equal(restore(vm, buf, len), -1);
		free(buf);
		/* Refused whole: the device is as it was, read position included. */
		assert_int_equal(inb(vm, P_DATA), 'i');
	}
	buf = section(&good, &len);
	assert_int_equal(restore(vm, buf, len), 0);
	free(buf);
	assert_int_equal(inb(vm, P_DATA), 0); /* at the end of etc/b (8 bytes) */
}

/* ---- the table loader, run as OVMF's AcpiPlatformDxe runs it ---- */

#define CMD_SIZE 128
#define CMD_ALLOCATE 1
#define CMD_ADD_POINTER 2
#define CMD_ADD_CHECKSUM 3
#define ZONE_HIGH 1
#define ZONE_FSEG 2
#define MAX_BLOBS 8
#define MAX_POINTERS 64

struct blob {
	char name[NAME_LEN];
	uint64_t gpa;
	uint32_t size;
};

struct loader_run {
	struct vm *vm;
	uint64_t high_gpa, fseg_gpa; /* where this "firmware" places each zone's blob */
	struct blob blobs[MAX_BLOBS];
	unsigned nblobs;
	uint64_t pointers[MAX_POINTERS]; /* the address each ADD_POINTER left in its field */
	unsigned npointers;
};

static struct blob *blob_named(struct loader_run *lr, const uint8_t *field)
{
	assert_int_equal(field[NAME_LEN - 1], 0);
	for (unsigned i = 0; i < lr->nblobs; i++)
		if (strcmp(lr->blobs[i].name, (const char *)field) == 0)
			return &lr->blobs[i];
	fail_msg("loader names blob \"%s\" before allocating it", (const char *)field);
	return NULL;
}

static void run_allocate(struct loader_run *lr, const uint8_t *c)
{
	uint32_t align = (uint32_t)le(c + 60, 4);
	uint8_t zone = c[64];
	struct dir_entry e;
	struct blob *b = &lr->blobs[lr->nblobs];

	assert_true(lr->nblobs < MAX_BLOBS);
	assert_int_equal(c[4 + NAME_LEN - 1], 0);
	assert_true(align && (align & (align - 1)) == 0 && align <= 4096);
	assert_true(zone == ZONE_HIGH || zone == ZONE_FSEG);
	assert_true(find_file(lr->vm, (const char *)c + 4, &e));
	memcpy(b->name, c + 4, NAME_LEN);
	b->gpa = zone == ZONE_FSEG ? lr->fseg_gpa : lr->high_gpa;
	b->size = e.size;
	assert_int_equal(b->gpa % align, 0);
	for (unsigned i = 0; i < lr->nblobs; i++)
		assert_string_not_equal(lr->blobs[i].name, b->name);
	assert_int_equal(dma(lr->vm, select_control(e.select) | C_READ, e.size, b->gpa), 0);
	lr->nblobs++;
}

static void run_add_pointer(struct loader_run *lr, const uint8_t *c)
{
	struct blob *from = blob_named(lr, c + 4), *to = blob_named(lr, c + 60);
	uint32_t offset = (uint32_t)le(c + 116, 4);
	uint8_t size = c[120];
	uint8_t *field;
	uint64_t v;

	assert_true(size == 1 || size == 2 || size == 4 || size == 8);
	assert_true(size <= from->size && offset <= from->size - size);
	field = ram(lr->vm, from->gpa + offset, size);
	v = le(field, size);
	assert_true(v < to->size);
	v += to->gpa;
	if (size < 8)
		assert_int_equal(v >> (size * 8), 0);
	put_le(field, v, size);
	assert_true(lr->npointers < MAX_POINTERS);
	lr->pointers[lr->npointers++] = v;
}

static void run_add_checksum(struct loader_run *lr, const uint8_t *c)
{
	struct blob *b = blob_named(lr, c + 4);
	uint32_t result = (uint32_t)le(c + 60, 4), start = (uint32_t)le(c + 64, 4), length = (uint32_t)le(c + 68, 4);
	uint8_t sum = 0, *p;

	assert_true(result < b->size && length <= b->size && start <= b->size - length);
	p = ram(lr->vm, b->gpa, b->size);
	for (uint32_t i = 0; i < length; i++)
		sum = (uint8_t)(sum + p[start + i]);
	p[result] = (uint8_t)-sum;
}

static uint8_t sum_of(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

/*
 * OVMF's second pass: what each pointer points at is installed as an ACPI
 * table when it is a FACS or a checksummed table that fits its blob, except
 * RSDT and XSDT. Returns the installed signatures, concatenated.
 */
static void second_pass(struct loader_run *lr, char *installed, size_t size)
{
	installed[0] = 0;
	for (unsigned i = 0; i < lr->npointers; i++) {
		uint64_t at = lr->pointers[i];
		bool seen = false;
		for (unsigned j = 0; j < i; j++)
			seen |= lr->pointers[j] == at;
		if (seen)
			continue;
		const struct blob *b = NULL;
		for (unsigned j = 0; j < lr->nblobs; j++)
			if (at >= lr->blobs[j].gpa && at < lr->blobs[j].gpa + lr->blobs[j].size)
				b = &lr->blobs[j];
		assert_non_null(b);
		uint64_t left = b->gpa + b->size - at;
		const uint8_t *t = ram(lr->vm, at, 8);
		uint32_t length = (uint32_t)le(t + 4, 4);
		assert_true(length >= 36 && length <= left); /* every target is a table: nothing opaque */
		t = ram(lr->vm, at, length);
		if (memcmp(t, "FACS", 4) != 0) {
			assert_int_equal(sum_of(t, length), 0);
			if (memcmp(t, "RSDT", 4) == 0 || memcmp(t, "XSDT", 4) == 0)
				continue;
		}
		strncat(installed, (const char *)t, 4);
		assert_true(strlen(installed) < size - 4);
	}
}

static void run_loader(struct loader_run *lr)
{
	struct dir_entry e;
	uint8_t *script;

	assert_true(find_file(lr->vm, "etc/table-loader", &e));
	assert_int_equal(e.size % CMD_SIZE, 0);
	assert_true(e.size > 0);
	script = malloc(e.size);
	assert_non_null(script);
	select_key(lr->vm, e.select);
	read_port(lr->vm, script, e.size);
	for (uint32_t off = 0; off < e.size; off += CMD_SIZE) {
		const uint8_t *c = script + off;
		switch (le(c, 4)) {
		case CMD_ALLOCATE:
			run_allocate(lr, c);
			break;
		case CMD_ADD_POINTER:
			run_add_pointer(lr, c);
			break;
		case CMD_ADD_CHECKSUM:
			run_add_checksum(lr, c);
			break;
		default:
			fail_msg("unexpected loader command %u", (unsigned)le(c, 4));
		}
	}
	free(script);
}

/* A table at gpa with a valid checksum and this signature; returns it. */
static const uint8_t *table_at(struct vm *vm, uint64_t gpa, const char *sig)
{
	const uint8_t *t = ram(vm, gpa, 36);
	uint32_t length = (uint32_t)le(t + 4, 4);

	assert_memory_equal(t, sig, 4);
	t = ram(vm, gpa, length);
	assert_int_equal(sum_of(t, length), 0);
	return t;
}

/*
 * RSDP -> XSDT -> FADT -> DSDT and FACS; the RSDT lists what the XSDT
 * lists; the DSDT holds the attached devices' entries.
 */
static void check_chain(struct vm *vm, uint64_t rsdp_gpa)
{
	const uint8_t *rsdp = ram(vm, rsdp_gpa, 36);
	const uint8_t *xsdt, *rsdt, *fadt = NULL;
	unsigned n;
	char sigs[64] = "";

	assert_memory_equal(rsdp, "RSD PTR ", 8);
	assert_int_equal(rsdp[15], 2);
	assert_int_equal(sum_of(rsdp, 20), 0);
	assert_int_equal(le(rsdp + 20, 4), 36);
	assert_int_equal(sum_of(rsdp, 36), 0);
	xsdt = table_at(vm, le(rsdp + 24, 8), "XSDT");
	rsdt = table_at(vm, le(rsdp + 16, 4), "RSDT");
	n = ((uint32_t)le(xsdt + 4, 4) - 36) / 8;
	assert_int_equal(((uint32_t)le(rsdt + 4, 4) - 36) / 4, n);
	for (unsigned i = 0; i < n; i++) {
		uint64_t at = le(xsdt + 36 + 8 * i, 8);
		assert_int_equal(le(rsdt + 36 + 4 * i, 4), at);
		const uint8_t *t = ram(vm, at, 4);
		strncat(sigs, (const char *)t, 4);
		table_at(vm, at, (const char *)t);
		if (memcmp(t, "FACP", 4) == 0)
			fadt = table_at(vm, at, "FACP");
	}
	assert_string_equal(sigs, "FACPAPICMCFG");
	assert_non_null(fadt);
	assert_int_equal(le(fadt + 40, 4), le(fadt + 140, 8)); /* DSDT and X_DSDT */
	const uint8_t *dsdt = table_at(vm, le(fadt + 140, 8), "DSDT");
	static const char *const devices[] = { "_S5_", "RTC_", "KBD_", "MOU_", "COM1", "PCI0", "MRES" };
	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++)
		if (!memmem(dsdt, le(dsdt + 4, 4), devices[i], 4))
			fail_msg("no %s in the DSDT the firmware installed", devices[i]);
	assert_memory_equal(ram(vm, le(fadt + 36, 4), 4), "FACS", 4);
	assert_int_equal(le(ram(vm, le(fadt + 36, 4), 8) + 4, 4), 64);
}

static struct vm *firmware_vm(unsigned ncpus)
{
	struct vm *vm = new_vm(RAM, ncpus, true);
	/* The platform devices with DSDT entries, as devices_attach_all() would attach them. */
	static const char *const models[] = { "acpi-pm", "rtc", "i8042", "uart", "pci" };

	assert_int_equal(config_set(vm->cfg, "lpc.com1.path", "file=/dev/null"), 0);
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
		assert_int_equal(device_model_find(models[i])->attach(vm), 0);
	assert_int_equal(fw_cfg_files_setup(vm), 0);
	return vm;
}

static void test_table_loader_relocates(void **state)
{
	struct vm *vm = firmware_vm(4);
	struct loader_run lr = { .vm = vm, .high_gpa = 0x7FF000, .fseg_gpa = 0x3F0010 };
	char installed[64];

	(void)state;
	run_loader(&lr);
	assert_int_equal(lr.nblobs, 2);
	check_chain(vm, lr.fseg_gpa);
	second_pass(&lr, installed, sizeof(installed));
	assert_string_equal(installed, "FACSDSDTFACPAPICMCFG");
	free_vm(vm);
}

/* Placed where direct boot puts them, the loaded tables are byte for byte the direct-boot tables. */
static void test_table_loader_matches_direct_boot(void **state)
{
	struct vm *vm = firmware_vm(3);
	struct loader_run lr = { .vm = vm, .high_gpa = LAYOUT_ACPI_TABLES, .fseg_gpa = LAYOUT_RSDP };
	struct guest_memory direct;
	struct acpi_machine m;
	uint64_t rsdp;

	(void)state;
	run_loader(&lr);
	mem_layout(&direct, RAM, vm->platform->lowmem_limit);
	assert_int_equal(mem_alloc(&direct, "test-direct"), 0);
	acpi_machine_of(vm, &m);
	m.mem = &direct;
	assert_int_equal(acpi_build(&m, &rsdp), 0);
	assert_int_equal(rsdp, LAYOUT_RSDP);
	assert_memory_equal(ram(vm, LAYOUT_ACPI_TABLES, LAYOUT_ACPI_TABLES_MAX),
			    mem_gpa_to_hva(&direct, LAYOUT_ACPI_TABLES, LAYOUT_ACPI_TABLES_MAX), lr.blobs[0].size);
	assert_memory_equal(ram(vm, LAYOUT_RSDP, 36), mem_gpa_to_hva(&direct, LAYOUT_RSDP, 36), 36);
	check_chain(vm, LAYOUT_RSDP);
	mem_free(&direct);
	free_vm(vm);
}

/* The builder's own records, read with the layout spelt out above; a name that cannot fit spoils the script. */
static void test_loader_records(void **state)
{
	struct fw_cfg_loader l;
	char longname[80];

	(void)state;
	loader_init(&l);
	assert_int_equal(loader_allocate(&l, "etc/x", 64, LOADER_ZONE_HIGH), 0);
	assert_int_equal(loader_add_pointer(&l, "etc/x", "etc/y", 0x1234, 8), 0);
	assert_int_equal(loader_add_checksum(&l, "etc/x", 9, 0, 36), 0);
	assert_int_equal(l.len, 3 * CMD_SIZE);
	assert_int_equal(le(l.cmds, 4), CMD_ALLOCATE);
	assert_string_equal((const char *)l.cmds + 4, "etc/x");
	assert_int_equal(le(l.cmds + 60, 4), 64);
	assert_int_equal(l.cmds[64], ZONE_HIGH);
	assert_int_equal(le(l.cmds + CMD_SIZE, 4), CMD_ADD_POINTER);
	assert_string_equal((const char *)l.cmds + CMD_SIZE + 60, "etc/y");
	assert_int_equal(le(l.cmds + CMD_SIZE + 116, 4), 0x1234);
	assert_int_equal(l.cmds[CMD_SIZE + 120], 8);
	assert_int_equal(le(l.cmds + 2 * CMD_SIZE, 4), CMD_ADD_CHECKSUM);
	assert_int_equal(le(l.cmds + 2 * CMD_SIZE + 60, 4), 9);
	assert_int_equal(le(l.cmds + 2 * CMD_SIZE + 64, 4), 0);
	assert_int_equal(le(l.cmds + 2 * CMD_SIZE + 68, 4), 36);
	for (size_t i = 0; i < 3 * CMD_SIZE; i += CMD_SIZE)
		for (size_t j = 0; j < CMD_SIZE; j++)
			if (j >= 72 && !(le(l.cmds + i, 4) == CMD_ADD_POINTER && j < 121))
				assert_int_equal(l.cmds[i + j], 0); /* padding */
	memset(longname, 'l', NAME_LEN);
	longname[NAME_LEN] = 0;
	assert_int_equal(loader_add_pointer(&l, "etc/x", longname, 0, 4), -1);
	assert_true(l.failed);
	assert_int_equal(l.len, 3 * CMD_SIZE);
	assert_int_equal(loader_add_checksum(&l, "etc/x", 9, 0, 36), -1);
	loader_free(&l);
}

static void test_e820(void **state)
{
	struct vm *vm = new_vm(5ULL << 30, 1, false); /* layout only: the files are read by port */
	struct dir_entry e;
	uint8_t map[40];

	(void)state;
	assert_int_equal(fw_cfg_files_setup(vm), 0);
	assert_true(find_file(vm, "etc/e820", &e));
	assert_int_equal(e.size, 40);
	select_key(vm, e.select);
	read_port(vm, map, sizeof(map));
	assert_int_equal(le(map, 8), 0);
	assert_int_equal(le(map + 8, 8), 0xB0000000ULL); /* q35: RAM below 4 GiB ends where ECAM begins */
	assert_int_equal(le(map + 16, 4), 1);
	assert_int_equal(le(map + 20, 8), 4ULL << 30);
	assert_int_equal(le(map + 28, 8), (5ULL << 30) - 0xB0000000ULL);
	assert_int_equal(le(map + 36, 4), 1);
	free_vm(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_signature_and_id, setup, teardown),
		cmocka_unit_test(test_cpu_count),
		cmocka_unit_test(test_absent_without_bootrom),
		cmocka_unit_test_setup_teardown(test_directory_and_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rep_insb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_past_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_skip_and_select, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writes_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_dma, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_high_half, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_file_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_racing_vcpus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refusals, setup, teardown),
		cmocka_unit_test(test_table_loader_relocates),
		cmocka_unit_test(test_table_loader_matches_direct_boot),
		cmocka_unit_test(test_loader_records),
		cmocka_unit_test(test_e820),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
