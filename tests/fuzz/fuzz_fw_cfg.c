/*
 * libFuzzer harness for the fw_cfg device (src/dev/fw_cfg.c) with the files
 * firmware boot offers (src/boot/fw_cfg_files.c: ACPI blobs, the table
 * loader, etc/e820) and two of its own, over 64 KiB of guest RAM, on the
 * recording KVM stand-in of the unit tests (tests/unit/testvm.c): a fresh VM
 * and device per input; the RAM buffer is reused and zeroed.
 *
 * The input is a stream of operations (the low nibble of each op byte picks
 * it, the high nibble is its parameter; see make_fw_cfg_seeds.py):
 *   0 select (u16) by port        1 read N (u8) data bytes by port
 *   2 rep insb of N (u8) bytes    3 store bytes in guest RAM (u16 offset, u16 length, bytes)
 *   4 write the DMA high half (u32, as the guest writes it)
 *   5 write the DMA low half (u32): starts a request
 *   6 a DMA request: descriptor at a u16 offset with be32 control, be32
 *     length and an address (u16 when the parameter's bit 0 is clear, u64
 *     when set), then the register writes
 *   7 any access to 0x50E-0x51D: parameter bits 0-1 size (1, 2, 4),
 *     bit 2 write; u8 port offset, u32 value
 *   8 device reset
 *   9 snapshot round trip (fuzz_input.h)  10 input bytes restored as the section
 *     (9 and 10: the first MAX_SNAPSHOTS of an input)
 *
 * Invariants (__builtin_trap): a descriptor wholly in RAM gets its control
 * word back as 0 or the error bit alone; nothing outside the RAM buffer is
 * touched (ASan); a save restores and saves again to the same bytes; and at
 * the end the signature, the ID's DMA bit and a consistent directory (each
 * file reads back as many bytes as the directory says, then zeros) are
 * still there.
 */
#include <stdint.h>
#include <stdlib.h>

#include "boot/fw_cfg_files.h"
#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/vm.h"
#include "dev/fw_cfg.h"
#include "fuzz_input.h"
#include "testvm.h"

#define RAM_SIZE (64u << 10)
#define MAX_OPS 1024
#define MAX_SNAPSHOTS 8 /* per input: the ACPI files make each save tens of KiB */
#define PORT_FIRST 0x50E
#define PORT_SPAN 16

static uint8_t ram[RAM_SIZE];
static unsigned snapshots;

static struct device *fw_cfg_dev(struct vm *vm)
{
	return device_find(vm, "platform.fw-cfg");
}

static void save_dev(void *opaque, struct state_writer *w)
{
	struct device *d = opaque;

	CHECK(d->model->save(d, w) == 0);
}

static void reset_dev(void *opaque)
{
	struct device *d = opaque;

	d->model->reset(d);
}

static int restore_dev(void *opaque, struct state_reader *r)
{
	struct device *d = opaque;

	return d->model->restore(d, r, 1);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static void read_bytes(struct vm *vm, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		(void)inb(vm, FW_CFG_PORT_DATA);
}

static void rep_insb(struct vm *vm, unsigned n)
{
	uint8_t buf[256];

	testvm_in_string(vm, FW_CFG_PORT_DATA, 1, buf, n);
}

static void store(struct cursor *c)
{
	uint32_t at = take(c, 2);
	size_t len;
	const uint8_t *p = take_bytes(c, RAM_SIZE, &len);

	if (len > RAM_SIZE - at)
		len = RAM_SIZE - at;
	memcpy(ram + at, p, len);
}

static void dma_request(struct vm *vm, uint8_t op, struct cursor *c)
{
	uint32_t desc = take(c, 2);
	uint32_t control = take(c, 4), length = take(c, 4);
	uint64_t addr = op & 0x10 ? (uint64_t)take(c, 4) | (uint64_t)take(c, 4) << 32 : take(c, 2);
	bool in_ram = desc + FW_CFG_DMA_DESC_SIZE <= RAM_SIZE;

	if (in_ram) {
		put_be(ram + desc, control, 4);
		put_be(ram + desc + 4, length, 4);
		put_be(ram + desc + 8, addr, 8);
	}
	outl(vm, FW_CFG_PORT_DMA, 0);
	outl(vm, FW_CFG_PORT_DMA + 4, __builtin_bswap32(desc));
	/* Written last, also when the request's data landed on the descriptor. */
	if (in_ram)
		CHECK(get_be32(ram + desc) == 0 || get_be32(ram + desc) == FW_CFG_DMA_ERROR);
}

static void any_access(struct vm *vm, uint8_t op, struct cursor *c)
{
	static const unsigned sizes[4] = { 1, 2, 4, 1 };
	unsigned size = sizes[(op >> 4) & 3];
	uint16_t port = (uint16_t)(PORT_FIRST + take(c, 1) % PORT_SPAN);
	uint32_t value = take(c, 4);

	if (op & 0x40)
		testvm_out(vm, port, size, value);
	else
		(void)testvm_in(vm, port, size);
}

static void restore_bytes(struct vm *vm, struct cursor *c)
{
	size_t len;
	const uint8_t *p = take_bytes(c, 8192, &len);

	(void)fuzz_restore(restore_dev, fw_cfg_dev(vm), p, len);
}

static void run_op(struct vm *vm, struct cursor *c)
{
	uint8_t op = (uint8_t)take(c, 1);

	switch (op & 0x0F) {
	case 0: outw(vm, FW_CFG_PORT_SELECTOR, take(c, 2)); break;
	case 1: read_bytes(vm, take(c, 1)); break;
	case 2: rep_insb(vm, take(c, 1)); break;
	case 3: store(c); break;
	case 4: outl(vm, FW_CFG_PORT_DMA, take(c, 4)); break;
	case 5: outl(vm, FW_CFG_PORT_DMA + 4, take(c, 4)); break;
	case 6: dma_request(vm, op, c); break;
	case 7: any_access(vm, op, c); break;
	case 8: reset_dev(fw_cfg_dev(vm)); break;
	case 9:
		if (snapshots++ < MAX_SNAPSHOTS)
			fuzz_state_roundtrip(save_dev, restore_dev, reset_dev, fw_cfg_dev(vm), c);
		break;
	case 10:
		if (snapshots++ < MAX_SNAPSHOTS)
			restore_bytes(vm, c);
		break;
	}
}

static uint32_t read_be32_port(struct vm *vm)
{
	uint8_t b[4];

	for (int i = 0; i < 4; i++)
		b[i] = inb(vm, FW_CFG_PORT_DATA);
	return get_be32(b);
}

/* Whatever happened, the device still answers as fw_cfg, with a directory that matches its files. */
static void check_device(struct vm *vm)
{
	uint32_t count, sizes[FW_CFG_MAX_FILES];
	uint16_t selects[FW_CFG_MAX_FILES];

	outw(vm, FW_CFG_PORT_SELECTOR, FW_CFG_SIGNATURE);
	CHECK(read_be32_port(vm) == 0x51454D55); /* "QEMU" */
	outw(vm, FW_CFG_PORT_SELECTOR, FW_CFG_ID);
	CHECK(inb(vm, FW_CFG_PORT_DATA) & FW_CFG_ID_DMA);
	outw(vm, FW_CFG_PORT_SELECTOR, FW_CFG_FILE_DIR);
	count = read_be32_port(vm);
	CHECK(count <= FW_CFG_MAX_FILES);
	for (uint32_t i = 0; i < count; i++) {
		sizes[i] = read_be32_port(vm);
		selects[i] = (uint16_t)(inb(vm, FW_CFG_PORT_DATA) << 8);
		selects[i] |= inb(vm, FW_CFG_PORT_DATA);
		read_bytes(vm, FW_CFG_DIR_ENTRY_SIZE - 6);
	}
	for (uint32_t i = 0; i < count; i++) {
		/* Skip to the last byte by DMA, then the port gives zeros past it. */
		uint8_t *desc = ram;
		put_be(desc, (uint32_t)selects[i] << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 4);
		put_be(desc + 4, sizes[i], 4);
		put_be(desc + 8, 0, 8);
		outl(vm, FW_CFG_PORT_DMA, 0);
		outl(vm, FW_CFG_PORT_DMA + 4, 0);
		CHECK(get_be32(desc) == 0);
		CHECK(inb(vm, FW_CFG_PORT_DATA) == 0);
	}
}

static struct vm *new_vm(void)
{
	static const uint8_t small[] = "fw_cfg fuzz";
	struct vm *vm = testvm_new(RAM_SIZE);

	memset(ram, 0, sizeof(ram));
	vm->mem.base = ram;
	vm->mem.regions[0].hva = ram;
	CHECK(config_set(vm->cfg, "lpc.bootrom", "OVMF_CODE_4M.fd") == 0);
	CHECK(device_model_find("fw-cfg")->attach(vm) == 0 && vm->fw_cfg);
	CHECK(fw_cfg_files_setup(vm) == 0);
	CHECK(fw_cfg_add_file(vm->fw_cfg, "opt/fuzz/small", small, sizeof(small)) == 0);
	CHECK(fw_cfg_add_file(vm->fw_cfg, "opt/fuzz/empty", NULL, 0) == 0);
	return vm;
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
	struct vm *vm = new_vm();
	struct cursor c = { data, size };

	snapshots = 0;
	for (unsigned i = 0; i < MAX_OPS && c.n; i++)
		run_op(vm, &c);
	check_device(vm);
	testvm_free(vm);
	return 0;
}
