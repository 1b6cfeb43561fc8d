/*
 * libFuzzer harness for the AHCI host bus adapter (src/sata/ahci.c) with
 * its devices (ata_disk.c, atapi_cd.c, over src/block/blockdev.c): a fresh
 * HBA per input, with its I/O thread, holding
 *
 *   port 0  a disk of 128 512-byte sectors      port 1  a CD drive with an 8-block disc
 *   port 2  a disk of 16 4096-byte sectors      port 3  a CD drive with an empty tray
 *
 * on unlinked image files, in /dev/shm where it can, opened by the models
 * through /proc/self/fd (the disks are emptied before each input, so an
 * input always sees the same bytes).
 *
 * Input: a little-endian u16 with the length of an operation stream, the
 * stream, then the contents of a 32 KiB RAM region at GPA 0 (a second 8 KiB
 * region sits at GPA 0x100000 behind a hole). Each region is its own heap
 * allocation of exactly its size, so AddressSanitizer reports any access
 * the HBA lets through outside guest RAM. Guest addresses in operations are
 * u16: below 0x8000 in the first region, otherwise 0x100000 + the low 14
 * bits (half of them past the second region's end). Operations (op byte
 * modulo 14, see make_ahci_seeds.py):
 *   0 32-bit register write (u16 offset, u32)   1 register access of any size, offset, direction
 *   2 driver start of a port (as Linux's ahci does): port, command list and FIS area addresses
 *   3 a command in guest RAM: port, slot, header flags, table address, FIS fields, ACMD, PRD entries
 *   4 issue: port, PxSACT value, PxCI value    5 store bytes in guest RAM (u16 address, u8 length)
 *   6 COMRESET (PxSCTL.DET 1, then 0)           7 HBA reset (GHC.HR, or ahci_reset)
 *   8 pause / resume (ahci_set_running)         9 snapshot round trip, then maybe a patched restore
 *  10 input bytes restored as the section      11 CD media change (eject, insert) on port 1 or 3
 *     (9 and 10: a restore that fails is followed by ahci_reset(), as hyve never runs that state)
 *  12 a control FIS (SRST set or clear)
 *  13 commands issued on every port, then at once GHC.HR or one port stopped (ST 0), racing
 *     the I/O thread: afterwards nothing runs or completes on the ports reset or stopped
 * Every operation but a pause ends with ahci_drain(): commands run on the I/O
 * thread as they would for a guest, and but for operation 13 an input
 * replays the same.
 *
 * FUZZ_AHCI_TRACE=1 in the environment prints the ports' registers after
 * each operation (to follow a finding).
 *
 * Invariants (__builtin_trap), also after restoring snapshots with bytes
 * from the input: GHC.AE set and HR clear; PI and IS only the four ports;
 * PxCMD.CR follows ST and FR follows FRE; PxIS holds only defined bits;
 * after GHC.HR or ST cleared nothing is issued and nothing completes
 * (operation 13); an interrupt event only with the level up; a save restores and
 * saves again to the same bytes; nothing outside the RAM regions is touched
 * (ASan).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/memory.h"
#include "core/vm.h"
#include "fuzz_input.h"
#include "sata/ahci.h"
#include "sata/ata_disk.h"
#include "sata/atapi_cd.h"

#define RAM0_SIZE 0x8000u
#define RAM1_GPA 0x100000u
#define RAM1_SIZE 0x2000u
#define MAX_OPS 512
#define MAX_SNAPSHOTS 4
#define NPORTS 4
#define DISK0_SIZE (128u * 512u)
#define DISK2_SIZE (16u * 4096u)
#define CD_SIZE (8u * 2048u)

#define PX(p, r) (0x100u + (p) * 0x80u + (r))
#define PX_CLB 0x00
#define PX_FB 0x08
#define PX_IS 0x10
#define PX_IE 0x14
#define PX_CMD 0x18
#define PX_SCTL 0x2C
#define PX_SERR 0x30
#define PX_SACT 0x34
#define PX_CI 0x38

static struct vm vm;
static char disk0[32], disk2[32], cd[32];
static int disk0_fd = -1, disk2_fd = -1;
static bool paused, trace;
static unsigned snapshots;
static uint64_t clb[NPORTS]; /* where each port's command list was put (op 2), for op 3 */

/* ---- set-up ---- */

/* A file of size bytes, already unlinked; its path is /proc/self/fd/N (nothing is left behind, however the run ends). */
static int make_file(const char *dir_path, const char *name, size_t size, uint8_t seed, char *path, size_t pathlen)
{
	char tmp[128];
	uint8_t buf[2048];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s/%s", dir_path, name);
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0);
	unlink(tmp);
	for (size_t off = 0; off < size; off += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)(off / 2048 * 31 + i + seed);
		CHECK(write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
	}
	snprintf(path, pathlen, "/proc/self/fd/%d", fd);
	return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[64];

	(void)argc, (void)argv;
	trace = getenv("FUZZ_AHCI_TRACE") != NULL; /* registers after each operation, for findings */
	/* tmpfs where there is one: punching holes and fdatasync cost nothing there. */
	snprintf(dir, sizeof(dir), "%s/hyve-fuzz-ahci-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	CHECK(mkdtemp(dir));
	make_file(dir, "cd.iso", CD_SIZE, 3, cd, sizeof(cd));
	disk0_fd = make_file(dir, "disk0.img", 0, 0, disk0, sizeof(disk0));
	disk2_fd = make_file(dir, "disk2.img", 0, 0, disk2, sizeof(disk2));
	rmdir(dir);
	return 0;
}

/* The disks back to all zeroes at their sizes (what a previous input wrote is gone). */
static void blank_disks(void)
{
	CHECK(ftruncate(disk0_fd, 0) == 0 && ftruncate(disk0_fd, DISK0_SIZE) == 0);
	CHECK(ftruncate(disk2_fd, 0) == 0 && ftruncate(disk2_fd, DISK2_SIZE) == 0);
}

static void on_irq(void *opaque, bool level, bool event)
{
	(void)opaque;
	CHECK(!event || level);
}

static struct ahci *hba_new(void)
{
	struct ahci *h = ahci_new(&vm, "fuzz-ahci", on_irq, NULL);
	struct ata_disk_config d0 = { .path = disk0, .sectorsize = 512, .serial = "FUZZ0" };
	struct ata_disk_config d2 = { .path = disk2, .sectorsize = 4096, .rotation = 1 };
	struct ata_disk *a, *b;
	struct atapi_cd *c1, *c3;

	CHECK(h);
	a = ata_disk_new("fuzz-ahci", &d0);
	b = ata_disk_new("fuzz-ahci", &d2);
	c1 = atapi_cd_new("fuzz-ahci", cd, "FUZZCD1");
	c3 = atapi_cd_new("fuzz-ahci", NULL, "FUZZCD3");
	CHECK(a && b && c1 && c3);
	CHECK(ahci_attach(h, 0, a, NULL) == 0 && ahci_attach(h, 1, NULL, c1) == 0);
	CHECK(ahci_attach(h, 2, b, NULL) == 0 && ahci_attach(h, 3, NULL, c3) == 0);
	CHECK(ahci_start(h) == 0);
	return h;
}

/* ---- register access ---- */

static void mmio(struct ahci *h, uint32_t off, uint64_t v, unsigned size, bool write)
{
	uint8_t d[8];

	for (unsigned i = 0; i < 8; i++)
		d[i] = (uint8_t)(v >> (8 * i));
	ahci_mmio(h, off, d, size, write);
}

static uint32_t rd(struct ahci *h, uint32_t off)
{
	uint8_t d[4] = { 0 };

	ahci_mmio(h, off, d, 4, false);
	return d[0] | d[1] << 8 | d[2] << 16 | (uint32_t)d[3] << 24;
}

static void wr(struct ahci *h, uint32_t off, uint32_t v)
{
	mmio(h, off, v, 4, true);
}

static void check_registers(struct ahci *h)
{
	uint32_t ghc = rd(h, 0x04);

	CHECK(ghc & (1u << 31));
	CHECK(!(ghc & 1));
	CHECK((rd(h, 0x0C) & ~((1u << NPORTS) - 1)) == 0);
	CHECK((rd(h, 0x08) & ~((1u << NPORTS) - 1)) == 0);
	for (unsigned p = 0; p < NPORTS; p++) {
		uint32_t cmd = rd(h, PX(p, PX_CMD));
		CHECK(!(cmd & (1u << 15)) == !(cmd & 1));
		CHECK(!(cmd & (1u << 14)) == !(cmd & (1u << 4)));
		CHECK((rd(h, PX(p, PX_IS)) & ~0xFDC000FFu) == 0);
	}
}

/* ---- guest memory ---- */

static uint64_t guest_addr(uint16_t v)
{
	return v & 0x8000 ? RAM1_GPA + (v & 0x3FFF) : v;
}

static void *host_of(uint64_t gpa, size_t len)
{
	return mem_gpa_to_hva(&vm.mem, gpa, len);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

/* Command codes the devices know, so that most commands reach them (others come raw). */
static const uint8_t ata_commands[] = {
	0xEC, 0xA1, 0xA0, 0x25, 0x35, 0xC8, 0xCA, 0x20, 0x24, 0x30, 0x34, 0xC4, 0xC5, 0x29, 0x39, 0x60,
	0x61, 0x06, 0xE7, 0xEA, 0x2F, 0x47, 0xB0, 0xEF, 0xC6, 0xE5, 0x40, 0x42, 0x90, 0x91, 0x70, 0xE0,
	0xE1, 0xE2, 0xE3, 0xE6, 0x08,
};

static const uint8_t packet_commands[] = {
	0x00, 0x03, 0x12, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2B, 0x43, 0x46, 0x4A, 0x51, 0x52, 0x5A, 0xA8, 0xBB, 0xBD,
};

/*
 * Header in slot of the port's command list, its table with an H2D FIS,
 * ACMD and PRD entries. Field bytes come from the input; the command code
 * and packet opcode mostly from the lists above.
 */
static void put_command(struct cursor *c)
{
	unsigned p = take(c, 1) % NPORTS, slot = take(c, 1) & 31, flags = take(c, 2), nprd = take(c, 1) % 9;
	uint64_t table = guest_addr((uint16_t)take(c, 2)) & ~0x7Full;
	uint8_t cmd[0x80 + 16 * 8] = { 0x27, 0x80 }, *hdr, *tbl;
	unsigned sel = take(c, 1), op;

	/* Everything is taken from the input first: what follows does not depend on where the table is. */
	cmd[2] = sel < 2 * sizeof(ata_commands) ? ata_commands[sel % sizeof(ata_commands)] : (uint8_t)take(c, 1);
	for (unsigned i = 3; i < 16; i++)
		cmd[i] = (uint8_t)take(c, 1);
	if (flags & 0x8000)
		cmd[1] = 0; /* a control FIS */
	op = take(c, 1);
	cmd[0x40] = op < 2 * sizeof(packet_commands) ? packet_commands[op % sizeof(packet_commands)] : (uint8_t)op;
	for (unsigned i = 1; i < 16; i++)
		cmd[0x40 + i] = (uint8_t)take(c, 1);
	for (unsigned i = 0; i < nprd; i++) {
		uint8_t *e = cmd + 0x80 + 16 * i;
		uint32_t len = take(c, 2), dw3 = take(c, 1);
		put32(e, (uint32_t)guest_addr((uint16_t)take(c, 2)));
		put32(e + 4, dw3 & 0x40 ? 1 : 0);
		/* Mostly lengths that fit RAM, now and then the 22-bit maximum. */
		put32(e + 12, (dw3 & 0x20 ? 0x3FFFFF : len) | (dw3 & 0x80 ? 1u << 31 : 0));
	}
	if ((hdr = host_of(clb[p] + slot * 32u, 32))) {
		/* CFL 5; A, W, P, R, B, C from the input; PRDTL; PRDBC garbage. */
		put32(hdr, 5 | (flags & 0x7E0) | (uint32_t)nprd << 16);
		put32(hdr + 4, 0xA5A5A5A5);
		put32(hdr + 8, (uint32_t)table);
		put32(hdr + 12, flags & 0x4000 ? 1 : 0); /* now and then a table above 4 GiB */
	}
	if ((tbl = host_of(table, 0x80 + 16u * nprd)))
		memcpy(tbl, cmd, 0x80 + 16u * nprd);
}

/* What Linux's ahci_port_start and ahci_start_engine write. */
static void driver_start(struct ahci *h, struct cursor *c)
{
	unsigned p = take(c, 1) % NPORTS;
	uint64_t list = guest_addr((uint16_t)take(c, 2)) & ~0x3FFull, fis = guest_addr((uint16_t)take(c, 2)) & ~0xFFull;

	wr(h, PX(p, PX_CMD), 0);
	wr(h, PX(p, PX_CLB), (uint32_t)list);
	wr(h, PX(p, PX_CLB + 4), 0);
	wr(h, PX(p, PX_FB), (uint32_t)fis);
	wr(h, PX(p, PX_FB + 4), 0);
	wr(h, PX(p, PX_SERR), 0xFFFFFFFF);
	wr(h, PX(p, PX_IS), 0xFFFFFFFF);
	wr(h, PX(p, PX_IE), take(c, 4));
	wr(h, PX(p, PX_CMD), 1u << 4);
	wr(h, PX(p, PX_CMD), 1u << 4 | 1);
	wr(h, 0x04, 1u << 31 | 1u << 1);
	clb[p] = list;
}

/* ---- snapshots ---- */

static void save_hba(void *opaque, struct state_writer *w)
{
	ahci_save(opaque, w);
}

static int restore_hba(void *opaque, struct state_reader *r)
{
	return ahci_restore(opaque, r);
}

static void reset_hba(void *opaque)
{
	ahci_reset(opaque);
}

/*
 * fuzz_state_roundtrip() (save, reset, restore, save the same bytes again),
 * then, when the input asks, up to 8 bytes of the save patched and that
 * restored. A refused restore leaves the HBA as it stopped, which hyve
 * never runs (the VM does not start): back to power-on then.
 */
static void snapshot_roundtrip(struct ahci *h, struct cursor *c)
{
	struct cursor none = { 0 };
	unsigned patches = take(c, 1);
	size_t len;
	uint8_t *buf;

	fuzz_state_roundtrip(save_hba, restore_hba, reset_hba, h, &none);
	if (!(patches & 0x80) || !(buf = fuzz_save(save_hba, h, &len)))
		return;
	for (unsigned i = 0; i < (patches & 7) + 1 && len; i++) {
		size_t at = take(c, 2) % len;
		buf[at] = (uint8_t)take(c, 1);
	}
	if (fuzz_restore(restore_hba, h, buf, len) != 0)
		ahci_reset(h);
	free(buf);
}

/* ---- operations ---- */

static void media_change(struct ahci *h, struct cursor *c)
{
	unsigned v = take(c, 1), port = v & 1 ? 3 : 1;
	char err[128];
	int fd = -1;

	if (v & 2 && (fd = open(cd, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	if (ahci_cd_change(h, port, fd, fd >= 0 ? cd : NULL, v & 4, err, sizeof(err)) < 0 && fd >= 0)
		close(fd);
}

/*
 * Commands issued on every port, then, while the I/O thread runs them, the
 * HBA reset or one port stopped: what runs is waited for, what was issued
 * is dropped, and nothing completes afterwards.
 */
static void interrupt_commands(struct ahci *h, struct cursor *c)
{
	unsigned how = take(c, 1), p = how % NPORTS;
	uint32_t ci[NPORTS], is;

	for (unsigned q = 0; q < NPORTS; q++)
		ci[q] = take(c, 4);
	for (unsigned q = 0; q < NPORTS; q++)
		wr(h, PX(q, PX_CI), ci[q]);
	if (how & 4) {
		wr(h, 0x04, 1u << 31 | 1);
		if (paused)
			return;
		ahci_drain(h);
		for (unsigned q = 0; q < NPORTS; q++)
			CHECK(rd(h, PX(q, PX_IS)) == 0 && rd(h, PX(q, PX_CI)) == 0);
		return;
	}
	wr(h, PX(p, PX_CMD), rd(h, PX(p, PX_CMD)) & ~1u);
	CHECK(rd(h, PX(p, PX_CI)) == 0 && rd(h, PX(p, PX_SACT)) == 0);
	is = rd(h, PX(p, PX_IS));
	if (!paused)
		ahci_drain(h);
	CHECK(rd(h, PX(p, PX_IS)) == is);
}

static void run_op(struct ahci *h, struct cursor *c)
{
	uint8_t op = (uint8_t)take(c, 1);

	switch (op % 14) {
	case 0: {
		uint32_t off = take(c, 2) % 0x400;
		wr(h, off, take(c, 4));
		break;
	}
	case 1: {
		uint32_t off = take(c, 2) % (AHCI_MMIO_SIZE + 8), how = take(c, 1);
		uint64_t v = take(c, 4);
		mmio(h, off, v | (uint64_t)take(c, 4) << 32, 1u << (how & 3), how & 4);
		break;
	}
	case 2:
		driver_start(h, c);
		break;
	case 3:
		put_command(c);
		break;
	case 4: {
		unsigned p = take(c, 1) % NPORTS;
		uint32_t sact = take(c, 4), ci = take(c, 4);
		if (sact)
			wr(h, PX(p, PX_SACT), sact);
		wr(h, PX(p, PX_CI), ci);
		break;
	}
	case 5: {
		uint64_t at = guest_addr((uint16_t)take(c, 2));
		size_t len = take(c, 1);
		uint8_t *dst = host_of(at, len);
		for (size_t i = 0; dst && i < len; i++)
			dst[i] = (uint8_t)take(c, 1);
		break;
	}
	case 6: {
		unsigned p = take(c, 1) % NPORTS;
		wr(h, PX(p, PX_SCTL), 1);
		wr(h, PX(p, PX_SCTL), take(c, 1) & 0xF0);
		break;
	}
	case 7:
		if (take(c, 1) & 1)
			ahci_reset(h);
		else
			wr(h, 0x04, 1u << 31 | 1);
		break;
	case 8:
		paused = !paused;
		ahci_set_running(h, !paused);
		break;
	case 9:
		if (snapshots++ < MAX_SNAPSHOTS)
			snapshot_roundtrip(h, c);
		break;
	case 10: {
		size_t len;
		const uint8_t *p = take_bytes(c, 2048, &len);
		if (snapshots++ < MAX_SNAPSHOTS && fuzz_restore(restore_hba, h, p, len) != 0)
			ahci_reset(h); /* hyve does not run a VM whose restore failed: start from power-on */
		break;
	}
	case 11:
		media_change(h, c);
		break;
	case 13:
		interrupt_commands(h, c);
		break;
	case 12: { /* SRST in a control FIS, at slot 0 of the port */
		unsigned p = take(c, 1) % NPORTS;
		uint8_t *hdr = host_of(clb[p], 32), *tbl = host_of(0x7F00, 0x80);
		if (hdr && tbl) {
			put32(hdr, 5 | 1u << 8 | 1u << 9); /* reset, BIST clear */
			put32(hdr + 8, 0x7F00);
			put32(hdr + 12, 0);
			memset(tbl, 0, 20);
			tbl[0] = 0x27;
			tbl[15] = take(c, 1) & 1 ? 0x04 : 0;
			wr(h, PX(p, PX_CI), 1);
		}
		break;
	}
	}
	if (!paused)
		ahci_drain(h);
	check_registers(h);
	for (unsigned p = 0; trace && p < NPORTS; p++)
		fprintf(stderr, "%sop %u port %u: CMD %08x CI %08x SACT %08x IS %08x TFD %04x%s", p ? "" : "\n",
			op % 14, p, rd(h, PX(p, PX_CMD)), rd(h, PX(p, PX_CI)), rd(h, PX(p, PX_SACT)),
			rd(h, PX(p, PX_IS)), rd(h, PX(p, 0x20)), p + 1 < NPORTS ? " | " : "\n");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor ops;
	size_t ops_len, ram_len;
	struct ahci *h;

	if (size < 2)
		return 0;
	log_set_level(LOG_ERROR);
	ops_len = (size_t)(data[0] | data[1] << 8);
	if (ops_len > size - 2)
		ops_len = size - 2;
	ops = (struct cursor){ data + 2, ops_len };

	uint8_t *ram0 = calloc(1, RAM0_SIZE), *ram1 = malloc(RAM1_SIZE);
	CHECK(ram0 && ram1);
	memset(ram1, 0xC3, RAM1_SIZE);
	ram_len = size - 2 - ops_len < RAM0_SIZE ? size - 2 - ops_len : RAM0_SIZE;
	memcpy(ram0, data + 2 + ops_len, ram_len);
	memset(&vm.mem, 0, sizeof(vm.mem));
	vm.mem.size = RAM0_SIZE + RAM1_SIZE;
	vm.mem.nregions = 2;
	vm.mem.regions[0] = (struct mem_region){ .gpa = 0, .size = RAM0_SIZE, .hva = ram0 };
	vm.mem.regions[1] = (struct mem_region){ .gpa = RAM1_GPA, .size = RAM1_SIZE, .offset = RAM0_SIZE, .hva = ram1 };
	__atomic_store_n(&vm.vcpus_started, true, __ATOMIC_RELEASE);

	blank_disks();
	paused = false;
	snapshots = 0;
	memset(clb, 0, sizeof(clb));
	h = hba_new();
	check_registers(h);
	for (unsigned i = 0; i < MAX_OPS && ops.n; i++)
		run_op(h, &ops);
	if (paused)
		ahci_set_running(h, true);
	ahci_drain(h);
	ahci_free(h);
	free(ram0);
	free(ram1);
	return 0;
}
