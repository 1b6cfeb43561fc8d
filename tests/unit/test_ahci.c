/*
 * The AHCI controller (src/sata/ahci*.c, ata_disk.c) driven through its PCI
 * function as a guest driver does: command lists, command tables, PRD
 * tables and received-FIS areas built in the test VM's RAM, commands
 * issued through PxCI and PxSACT, results read back from the FIS area, the
 * registers, guest memory and the host's image file. Covers the HBA's
 * identity, port signatures and COMRESET, ST/FRE, IDENTIFY over PIO, DMA
 * and NCQ reads and writes, FLUSH, TRIM, failed commands and the port's
 * halt, buffers outside RAM, INTx and MSI, HBA reset (also with commands
 * running on two ports), an ATAPI CD's
 * IDENTIFY PACKET DEVICE and PACKET commands, and a snapshot taken with
 * issued commands that run after the restore.
 *
 * The I/O thread runs commands once vm->vcpus_started is set (the fixture
 * sets it); ahci_drain() waits until every issued command has run.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/device.h"
#include "core/irq.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/vm.h"
#include "pci/pci.h"
#include "sata/ahci.h"
#include "snapshot/state.h"
#include "testvm.h"

#define SLOT 4
#define DISK_PORT 0
#define CD_PORT 1
#define EMPTY_PORT 2
#define SECTOR 512u
#define DISK_SECTORS 65536u /* 32 MiB: a 1 MiB pattern, then a hole */
#define PATTERN_BYTES (1u << 20)
#define CD_BLOCKS 16u
#define CD_BLOCK 2048u
#define SERIAL "HYVETEST0042"

/* Registers (AHCI 1.3.1, 3.1 and 3.3). */
#define CAP 0x00
#define GHC 0x04
#define IS 0x08
#define PI 0x0C
#define VS 0x10
#define PX(p, r) (0x100u + (p) * 0x80u + (r))
#define PX_CLB 0x00
#define PX_CLBU 0x04
#define PX_FB 0x08
#define PX_FBU 0x0C
#define PX_IS 0x10
#define PX_IE 0x14
#define PX_CMD 0x18
#define PX_TFD 0x20
#define PX_SIG 0x24
#define PX_SSTS 0x28
#define PX_SCTL 0x2C
#define PX_SERR 0x30
#define PX_SACT 0x34
#define PX_CI 0x38

#define GHC_HR (1u << 0)
#define GHC_IE (1u << 1)
#define GHC_AE (1u << 31)
#define CMD_ST (1u << 0)
#define CMD_FRE (1u << 4)
#define CMD_FR (1u << 14)
#define CMD_CR (1u << 15)
#define IS_DHRS (1u << 0)
#define IS_PSS (1u << 1)
#define IS_SDBS (1u << 3)
#define IS_DPS (1u << 5)
#define IS_HBFS (1u << 29)
#define IS_TFES (1u << 30)

/* Command header flags (DW0). */
#define HDR_ATAPI (1u << 5)
#define HDR_WRITE (1u << 6)

/* ATA */
#define ST_ERR 0x01
#define ST_DRQ 0x08
#define ST_DSC 0x10
#define ST_DRDY 0x40
#define ST_BSY 0x80
#define ERR_ABRT 0x04
#define ERR_IDNF 0x10

/* Guest memory of the test driver. */
#define CLB(p) (0x100000u + (p) * 0x400u)
#define FB(p) (0x110000u + (p) * 0x100u)
#define CTBA(p, s) (0x120000u + (p) * 0x10000u + (s) * 0x800u)
#define DATA 0x400000u
#define DATA2 0x800000u
#define OUTSIDE_RAM 0xF0000000ull /* above the 64 MiB of RAM and below 4 GiB: MMIO, not RAM */

struct fx {
	struct vm *vm;
	struct device *dev;
	struct pci_function *fn;
	struct ahci *hba;
	uint64_t bar;
	char dir[64], img[96], iso[96];
};

struct prd {
	uint64_t addr;
	uint32_t len;
	bool irq;
};

/* ---- bus access ---- */

static uint32_t cfg_read(struct vm *vm, unsigned reg)
{
	outl(vm, 0xCF8, 0x80000000u | SLOT << 11 | (reg & 0xFC));
	return inl(vm, 0xCFC);
}

static void cfg_write(struct vm *vm, unsigned reg, unsigned size, uint32_t v)
{
	outl(vm, 0xCF8, 0x80000000u | SLOT << 11 | (reg & 0xFC));
	testvm_out(vm, (uint16_t)(0xCFC + (reg & 3)), size, v);
}

static uint32_t rd(struct fx *f, unsigned off)
{
	uint8_t d[4] = { 0 };

	iobus_access(&f->vm->mmio, f->bar + off, d, 4, false);
	return d[0] | d[1] << 8 | d[2] << 16 | (uint32_t)d[3] << 24;
}

static void wr(struct fx *f, unsigned off, uint32_t v)
{
	uint8_t d[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	iobus_access(&f->vm->mmio, f->bar + off, d, 4, true);
}

static uint8_t *gpa(struct fx *f, uint64_t a, uint64_t len)
{
	uint8_t *p = mem_gpa_to_hva(&f->vm->mem, a, len);

	assert_non_null(p);
	return p;
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

/* ---- images ---- */

static uint8_t disk_byte(uint64_t off)
{
	return (uint8_t)(off / SECTOR * 13 + off % SECTOR + 1);
}

static uint8_t cd_byte(uint64_t off)
{
	return (uint8_t)(off / CD_BLOCK * 29 + off % CD_BLOCK * 3 + 7);
}

/* size bytes: byte(offset) for the first pattern bytes, a hole after them. */
static void make_image(const char *path, uint64_t size, uint64_t pattern, uint8_t (*byte)(uint64_t))
{
	uint8_t buf[4096];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	for (uint64_t off = 0; off < pattern; off += sizeof(buf)) {
		for (unsigned i = 0; i < sizeof(buf); i++)
			buf[i] = byte(off + i);
		assert_int_equal(write(fd, buf, sizeof(buf)), sizeof(buf));
	}
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static void read_image(struct fx *f, uint64_t off, void *buf, size_t len)
{
	int fd = open(f->img, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* ---- fixture ---- */

/* A VM with the controller in SLOT: a disk on port 0 and a CD drive on port 1. */
static void fx_create(struct fx *f)
{
	const struct device_model *m = device_model_find("ahci");
	char opts[256];

	log_set_level(LOG_ERROR);
	assert_non_null(m);
	f->vm = testvm_new(64ULL << 20);
	assert_int_equal(mem_alloc(&f->vm->mem, "test-ahci"), 0);
	assert_int_equal(config_set(f->vm->cfg, "pci.0.4.0.device", "ahci"), 0);
	snprintf(opts, sizeof(opts), "hd:%s,ser=%s,cd:%s", f->img, SERIAL, f->iso);
	assert_int_equal(m->parse_slot_options(f->vm->cfg, "pci.0.4.0", opts), 0);
	assert_int_equal(device_model_find("pci")->attach(f->vm), 0);
	f->dev = device_find(f->vm, "pci.0.4.0");
	assert_non_null(f->dev);
	f->fn = pci_bus_function(pci_bus_of(f->vm), SLOT, 0);
	f->hba = ahci_of_device(f->dev);
	assert_non_null(f->hba);
	f->bar = cfg_read(f->vm, 0x24) & ~0xFull; /* BAR5: ABAR */
	assert_true(f->bar != 0);
	testvm_clear_records();
}

static void fx_start_vcpus(struct fx *f)
{
	__atomic_store_n(&f->vm->vcpus_started, true, __ATOMIC_RELEASE);
}

static void fx_destroy(struct fx *f)
{
	devices_destroy_all(f->vm);
	vm_irq_routing_free(f->vm);
	mem_free(&f->vm->mem);
	testvm_free(f->vm);
	f->vm = NULL;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/hyve-ahci-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->img, sizeof(f->img), "%s/disk.img", f->dir);
	snprintf(f->iso, sizeof(f->iso), "%s/cd.iso", f->dir);
	make_image(f->img, (uint64_t)DISK_SECTORS * SECTOR, PATTERN_BYTES, disk_byte);
	make_image(f->iso, (uint64_t)CD_BLOCKS * CD_BLOCK, (uint64_t)CD_BLOCKS * CD_BLOCK, cd_byte);
	fx_create(f);
	fx_start_vcpus(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->vm)
		fx_destroy(f);
	unlink(f->img);
	unlink(f->iso);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- the test driver ---- */

static uint32_t prd_rd(struct fx *f, unsigned p, unsigned r)
{
	return rd(f, PX(p, r));
}

static void prt_wr(struct fx *f, unsigned p, unsigned r, uint32_t v)
{
	wr(f, PX(p, r), v);
}

/* Stops the port, points it at its command list and FIS area, clears its errors, starts it. */
static void port_start(struct fx *f, unsigned p)
{
	prt_wr(f, p, PX_CMD, 0);
	prt_wr(f, p, PX_CLB, CLB(p));
	prt_wr(f, p, PX_CLBU, 0);
	prt_wr(f, p, PX_FB, FB(p));
	prt_wr(f, p, PX_FBU, 0);
	memset(gpa(f, CLB(p), 0x400), 0, 0x400);
	memset(gpa(f, FB(p), 0x100), 0, 0x100);
	prt_wr(f, p, PX_SERR, 0xFFFFFFFF);
	prt_wr(f, p, PX_IS, 0xFFFFFFFF);
	prt_wr(f, p, PX_CMD, CMD_FRE);
	prt_wr(f, p, PX_CMD, CMD_FRE | CMD_ST);
}

/* A Register FIS - Host to Device with the command bit set. */
static void h2d(uint8_t fis[20], uint8_t command, uint64_t lba, uint16_t count, uint16_t features)
{
	memset(fis, 0, 20);
	fis[0] = 0x27;
	fis[1] = 0x80;
	fis[2] = command;
	fis[3] = (uint8_t)features;
	fis[4] = (uint8_t)lba, fis[5] = (uint8_t)(lba >> 8), fis[6] = (uint8_t)(lba >> 16);
	fis[7] = 0x40; /* LBA */
	fis[8] = (uint8_t)(lba >> 24), fis[9] = (uint8_t)(lba >> 32), fis[10] = (uint8_t)(lba >> 40);
	fis[11] = (uint8_t)(features >> 8);
	fis[12] = (uint8_t)count, fis[13] = (uint8_t)(count >> 8);
}

/* Command header and table of slot: FIS, ATAPI command, PRD table. */
static void put_cmd(struct fx *f, unsigned p, unsigned slot, const uint8_t fis[20], const struct prd *prds, unsigned n,
		    uint32_t flags, const uint8_t acmd[16])
{
	uint8_t *hdr = gpa(f, CLB(p) + slot * 32u, 32), *tbl = gpa(f, CTBA(p, slot), 0x80 + 16u * n);

	assert_true(0x80 + 16u * n <= 0x800);
	put32(hdr, 5 | flags | n << 16);
	put32(hdr + 4, 0xDEADBEEF); /* PRDBC: the HBA writes what moved */
	put32(hdr + 8, CTBA(p, slot));
	put32(hdr + 12, 0);
	memset(tbl, 0, 0x80 + 16u * n);
	memcpy(tbl, fis, 20);
	if (acmd)
		memcpy(tbl + 0x40, acmd, 16);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = tbl + 0x80 + 16 * i;
		put32(e, (uint32_t)prds[i].addr);
		put32(e + 4, (uint32_t)(prds[i].addr >> 32));
		put32(e + 12, (prds[i].len - 1) | (prds[i].irq ? 1u << 31 : 0));
	}
}

static uint32_t prdbc(struct fx *f, unsigned p, unsigned slot)
{
	return get32(gpa(f, CLB(p) + slot * 32u + 4, 4));
}

/* Issues slots and waits until they ran. */
static void issue(struct fx *f, unsigned p, uint32_t slots)
{
	prt_wr(f, p, PX_CI, slots);
	ahci_drain(f->hba);
}

/* One non-queued command in slot 0 with one data buffer; returns PxTFD. */
static uint32_t run_cmd(struct fx *f, unsigned p, uint8_t command, uint64_t lba, uint16_t count, uint64_t buf,
			uint32_t len, bool write)
{
	uint8_t fis[20];
	struct prd prd = { buf, len, false };

	h2d(fis, command, lba, count, 0);
	put_cmd(f, p, 0, fis, &prd, len ? 1 : 0, write ? HDR_WRITE : 0, NULL);
	issue(f, p, 1);
	assert_int_equal(prd_rd(f, p, PX_CI), 0);
	return prd_rd(f, p, PX_TFD);
}

static void fill(struct fx *f, uint64_t a, size_t len, uint8_t seed)
{
	uint8_t *p = gpa(f, a, len);

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seed + i / 512);
}

/* ---- identity and link ---- */

static void test_pci_and_hba_identity(void **state)
{
	struct fx *f = *state;
	uint32_t cap = rd(f, CAP);

	assert_int_equal(cfg_read(f->vm, 0x00), 0x29228086);
	assert_int_equal(cfg_read(f->vm, 0x08) >> 8, 0x010601);
	assert_true(f->fn->msi.cap != 0);
	assert_true(f->fn->intx_pin != 0);
	assert_int_equal(cap & 0x1F, 1);                /* NP: ports 0 and 1, up to the last device */
	assert_int_equal((cap >> 8) & 0x1F, 31);        /* NCS: 32 slots */
	assert_true(cap & (1u << 31));                  /* S64A */
	assert_true(cap & (1u << 30));                  /* SNCQ */
	assert_true(cap & (1u << 18));                  /* SAM: AHCI only */
	assert_int_equal((cap >> 20) & 0xF, 2);         /* Gen 2 */
	assert_int_equal(rd(f, PI), 0x3);
	assert_int_equal(rd(f, VS), 0x00010301);
	assert_int_equal(rd(f, GHC), GHC_AE);
	assert_int_equal(rd(f, IS), 0);
}

static void test_port_signatures(void **state)
{
	struct fx *f = *state;

	assert_int_equal(prd_rd(f, DISK_PORT, PX_SIG), 0x00000101);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_SSTS), 0x123);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_TFD) & 0xFF, ST_DRDY | ST_DSC);
	assert_int_equal(prd_rd(f, CD_PORT, PX_SIG), 0xEB140101);
	assert_int_equal(prd_rd(f, CD_PORT, PX_SSTS), 0x123);
	assert_int_equal(prd_rd(f, CD_PORT, PX_TFD) & (ST_BSY | ST_DRQ), 0);
	/* Past the last device: not implemented, reads zero, takes nothing. */
	assert_int_equal(prd_rd(f, EMPTY_PORT, PX_SSTS) & 0xF, 0);
	port_start(f, EMPTY_PORT);
	assert_int_equal(prd_rd(f, EMPTY_PORT, PX_CMD), 0);
	assert_int_equal(prd_rd(f, EMPTY_PORT, PX_CLB), 0);
	prt_wr(f, EMPTY_PORT, PX_CI, 1);
	assert_int_equal(prd_rd(f, EMPTY_PORT, PX_CI), 0);
}

static void test_comreset(void **state)
{
	struct fx *f = *state;
	uint8_t *d2h = gpa(f, FB(DISK_PORT) + 0x40, 20);

	port_start(f, DISK_PORT);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE); /* FIS receive on, engine off, as for a reset */
	prt_wr(f, DISK_PORT, PX_SCTL, 1);      /* DET=1: COMRESET held */
	assert_int_equal(prd_rd(f, DISK_PORT, PX_SSTS) & 0xF, 0);
	assert_true(prd_rd(f, DISK_PORT, PX_TFD) & ST_BSY);
	prt_wr(f, DISK_PORT, PX_SCTL, 0);      /* released: the device sends its signature */
	assert_int_equal(prd_rd(f, DISK_PORT, PX_SSTS), 0x123);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_SIG), 0x101);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_TFD) & ST_BSY, 0);
	assert_int_equal(d2h[0], 0x34);
	assert_int_equal(d2h[4], 1);           /* LBA low, count: the signature */
	assert_int_equal(d2h[12], 1);
	/* The CD's signature after its COMRESET. */
	prt_wr(f, CD_PORT, PX_SCTL, 1);
	prt_wr(f, CD_PORT, PX_SCTL, 0);
	assert_int_equal(prd_rd(f, CD_PORT, PX_SIG), 0xEB140101);
}

static void test_start_stop(void **state)
{
	struct fx *f = *state;

	prt_wr(f, DISK_PORT, PX_CMD, 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CMD) & (CMD_ST | CMD_CR | CMD_FRE | CMD_FR), 0);
	prt_wr(f, DISK_PORT, PX_CLB, CLB(DISK_PORT) | 0x3FF); /* low bits reserved */
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CLB), CLB(DISK_PORT));
	prt_wr(f, DISK_PORT, PX_FB, FB(DISK_PORT) | 0xFF);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_FB), FB(DISK_PORT));
	/* Engine off: an issued command is not taken. */
	prt_wr(f, DISK_PORT, PX_CI, 1);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 0);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CMD) & (CMD_FRE | CMD_FR | CMD_ST | CMD_CR), CMD_FRE | CMD_FR);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE | CMD_ST);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CMD) & (CMD_FRE | CMD_FR | CMD_ST | CMD_CR),
			 CMD_FRE | CMD_FR | CMD_ST | CMD_CR);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CMD) & (CMD_ST | CMD_CR), 0);
	prt_wr(f, DISK_PORT, PX_CMD, 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CMD) & (CMD_FRE | CMD_FR), 0);
}

/* ---- ATA commands on the disk ---- */

static void test_identify_pio(void **state)
{
	struct fx *f = *state;
	const uint8_t *pio = gpa(f, FB(DISK_PORT) + 0x20, 20), *d2h = gpa(f, FB(DISK_PORT) + 0x40, 20);
	const uint8_t *raw = gpa(f, DATA, 512);
	uint16_t id[256];
	char serial[21];
	uint8_t sum = 0;

	port_start(f, DISK_PORT);
	memset(gpa(f, DATA, 1024), 0xCC, 1024);
	assert_int_equal(run_cmd(f, DISK_PORT, 0xEC, 0, 0, DATA, 1024, false) & (ST_ERR | ST_BSY | ST_DRQ), 0);
	assert_int_equal(prdbc(f, DISK_PORT, 0), 512);
	assert_int_equal(gpa(f, DATA + 512, 1)[0], 0xCC); /* nothing past the 512 bytes */
	assert_int_equal(pio[0], 0x5F);                     /* PIO Setup, device to host */
	assert_true(pio[1] & 0x20);
	assert_int_equal(pio[16] | pio[17] << 8, 512);
	assert_int_equal(d2h[0], 0x34);
	assert_int_equal(d2h[2] & (ST_ERR | ST_BSY), 0);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_DHRS);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_PSS);

	memcpy(id, raw, sizeof(id));
	assert_int_equal(id[0] & 0x8000, 0);                /* ATA device */
	assert_int_equal(id[100] | (uint32_t)id[101] << 16, DISK_SECTORS);
	assert_int_equal(id[102] | id[103], 0);
	assert_int_equal(id[60] | (uint32_t)id[61] << 16, DISK_SECTORS);
	assert_true(id[83] & (1u << 10));                   /* 48-bit */
	assert_true(id[76] & (1u << 8));                    /* NCQ */
	assert_int_equal(id[75] & 0x1F, 31);
	assert_true(id[169] & 1);                           /* TRIM */
	for (unsigned i = 0; i < 20; i++)                   /* byte-swapped within words, space padded */
		serial[i] = (char)(i % 2 ? id[10 + i / 2] & 0xFF : id[10 + i / 2] >> 8);
	serial[20] = '\0';
	assert_string_equal(serial, SERIAL "        ");
	assert_int_equal(id[255] & 0xFF, 0xA5);
	for (unsigned i = 0; i < 512; i++)
		sum = (uint8_t)(sum + raw[i]);
	assert_int_equal(sum, 0);
}

static void test_dma_write_read(void **state)
{
	struct fx *f = *state;
	const unsigned lba = 100, count = 8, len = 8 * SECTOR;
	uint8_t fis[20], host[8 * SECTOR];
	/* Uneven pieces: the data crosses PRD entries in the middle of sectors. */
	struct prd wp[2] = { { DATA, 1000, false }, { DATA + 0x10000, len - 1000, true } };
	struct prd rp[3] = {
		{ DATA2, 100, false }, { DATA2 + 0x2000, 3000, false }, { DATA2 + 0x8000, len - 3100, false },
	};
	uint8_t *out = gpa(f, DATA, 1000), *out2 = gpa(f, DATA + 0x10000, len - 1000);

	port_start(f, DISK_PORT);
	fill(f, DATA, 1000, 1);
	fill(f, DATA + 0x10000, len - 1000, 2);
	h2d(fis, 0x35, lba, count, 0); /* WRITE DMA EXT */
	put_cmd(f, DISK_PORT, 3, fis, wp, 2, HDR_WRITE, NULL);
	issue(f, DISK_PORT, 1u << 3);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_TFD) & ST_ERR, 0);
	assert_int_equal(prdbc(f, DISK_PORT, 3), len);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_DHRS);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_DPS); /* the second PRD asked for an interrupt */
	/* On the host: the data, and the sectors around it untouched. */
	read_image(f, (uint64_t)lba * SECTOR, host, len);
	assert_memory_equal(host, out, 1000);
	assert_memory_equal(host + 1000, out2, len - 1000);
	read_image(f, (uint64_t)(lba + count) * SECTOR, host, 1);
	assert_int_equal(host[0], disk_byte((uint64_t)(lba + count) * SECTOR));
	read_image(f, (uint64_t)lba * SECTOR - 1, host, 1);
	assert_int_equal(host[0], disk_byte((uint64_t)lba * SECTOR - 1));

	/* Back through READ DMA EXT into three other pieces. */
	memset(gpa(f, DATA2, 0x10000), 0, 0x10000);
	prt_wr(f, DISK_PORT, PX_IS, 0xFFFFFFFF);
	h2d(fis, 0x25, lba, count, 0);
	put_cmd(f, DISK_PORT, 5, fis, rp, 3, 0, NULL);
	issue(f, DISK_PORT, 1u << 5);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_TFD) & ST_ERR, 0);
	assert_int_equal(prdbc(f, DISK_PORT, 5), len);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_IS) & IS_PSS, 0); /* DMA: no PIO Setup */
	read_image(f, (uint64_t)lba * SECTOR, host, len);
	assert_memory_equal(gpa(f, DATA2, 100), host, 100);
	assert_memory_equal(gpa(f, DATA2 + 0x2000, 3000), host + 100, 3000);
	assert_memory_equal(gpa(f, DATA2 + 0x8000, len - 3100), host + 3100, len - 3100);
	assert_int_equal(gpa(f, DATA2 + 100, 1)[0], 0); /* nothing past a piece */

	/* A read of untouched sectors gives the image's bytes. */
	assert_int_equal(run_cmd(f, DISK_PORT, 0x25, 7, 1, DATA2, SECTOR, false) & ST_ERR, 0);
	for (unsigned i = 0; i < SECTOR; i++)
		assert_int_equal(gpa(f, DATA2 + i, 1)[0], disk_byte(7 * SECTOR + i));
}

/* A queued command: count holds the tag, features the sector count. */
static void put_ncq(struct fx *f, unsigned slot, bool write, uint64_t lba, uint16_t count, uint64_t buf)
{
	uint8_t fis[20];
	struct prd prd = { buf, count * SECTOR, false };

	h2d(fis, write ? 0x61 : 0x60, lba, (uint16_t)(slot << 3), count);
	put_cmd(f, DISK_PORT, slot, fis, &prd, 1, write ? HDR_WRITE : 0, NULL);
}

static void test_ncq(void **state)
{
	struct fx *f = *state;
	const uint8_t *sdb = gpa(f, FB(DISK_PORT) + 0x58, 8);
	const unsigned tags[] = { 0, 3, 7, 31 };
	uint8_t host[4 * SECTOR];

	port_start(f, DISK_PORT);
	prt_wr(f, DISK_PORT, PX_IE, IS_SDBS);
	wr(f, GHC, GHC_AE | GHC_IE);
	/* Four writes queued at once, each two sectors at its own place. */
	for (unsigned i = 0; i < 4; i++) {
		fill(f, DATA + tags[i] * 0x1000u, 2 * SECTOR, (uint8_t)(0x40 + i));
		put_ncq(f, tags[i], true, 200 + 10 * i, 2, DATA + tags[i] * 0x1000u);
	}
	uint32_t mask = 1u << 0 | 1u << 3 | 1u << 7 | 1u << 31;
	prt_wr(f, DISK_PORT, PX_SACT, mask);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_SACT), mask);
	issue(f, DISK_PORT, mask);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_SACT), 0);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_SDBS);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_IS) & (IS_TFES | IS_HBFS), 0);
	assert_true(rd(f, IS) & 1u << DISK_PORT);
	assert_int_equal(testvm_irq_level(f->fn->intx_gsi), 1);
	assert_int_equal(sdb[0], 0xA1);                     /* Set Device Bits */
	assert_int_equal(sdb[2] & ST_ERR, 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_TFD) & ST_ERR, 0);
	for (unsigned i = 0; i < 4; i++) {
		read_image(f, (200 + 10 * i) * SECTOR, host, 2 * SECTOR);
		assert_memory_equal(host, gpa(f, DATA + tags[i] * 0x1000u, 2 * SECTOR), 2 * SECTOR);
	}

	/* Three reads queued at once, back into other buffers. */
	prt_wr(f, DISK_PORT, PX_IS, 0xFFFFFFFF);
	wr(f, IS, 0xFFFFFFFF);
	memset(gpa(f, DATA2, 0x10000), 0, 0x10000);
	for (unsigned i = 0; i < 3; i++)
		put_ncq(f, 1 + i, false, 200 + 10 * i, 2, DATA2 + i * 0x1000u);
	prt_wr(f, DISK_PORT, PX_SACT, 0xE);
	issue(f, DISK_PORT, 0xE);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_SACT), 0);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_SDBS);
	for (unsigned i = 0; i < 3; i++)
		assert_memory_equal(gpa(f, DATA2 + i * 0x1000u, 2 * SECTOR),
				    gpa(f, DATA + tags[i] * 0x1000u, 2 * SECTOR), 2 * SECTOR);

	/* A queued read past the end: the SDB FIS carries ERR, the port halts with TFES. */
	put_ncq(f, 4, false, DISK_SECTORS - 1, 2, DATA2);
	prt_wr(f, DISK_PORT, PX_SACT, 1u << 4);
	issue(f, DISK_PORT, 1u << 4);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_TFES);
	assert_true(prd_rd(f, DISK_PORT, PX_TFD) & ST_ERR);
	assert_int_equal(sdb[2] & ST_ERR, ST_ERR);
	assert_int_equal(get32(sdb + 4), 0);                /* the failed tag is not reported done */
}

static void test_flush(void **state)
{
	struct fx *f = *state;
	const uint8_t *d2h = gpa(f, FB(DISK_PORT) + 0x40, 20);

	port_start(f, DISK_PORT);
	fill(f, DATA, SECTOR, 9);
	assert_int_equal(run_cmd(f, DISK_PORT, 0x35, 1, 1, DATA, SECTOR, true) & ST_ERR, 0);
	memset(gpa(f, FB(DISK_PORT), 0x100), 0, 0x100);
	assert_int_equal(run_cmd(f, DISK_PORT, 0xEA, 0, 0, 0, 0, false) & (ST_ERR | ST_BSY), 0); /* FLUSH CACHE EXT */
	assert_int_equal(d2h[0], 0x34);
	assert_int_equal(d2h[2] & ST_ERR, 0);
	assert_int_equal(prdbc(f, DISK_PORT, 0), 0);
	assert_int_equal(run_cmd(f, DISK_PORT, 0xE7, 0, 0, 0, 0, false) & ST_ERR, 0); /* FLUSH CACHE */
}

static void test_trim_punches_hole(void **state)
{
	struct fx *f = *state;
	uint8_t *ranges = gpa(f, DATA, SECTOR), fis[20];
	struct prd prd = { DATA, SECTOR, false };
	const uint64_t lba = 256, n = 256; /* 128 KiB from 128 KiB on: whole host pages */
	int fd;

	port_start(f, DISK_PORT);
	memset(ranges, 0, SECTOR);
	put32(ranges, (uint32_t)lba);
	put32(ranges + 4, (uint32_t)(n << 16));
	h2d(fis, 0x06, 0, 1, 1); /* DATA SET MANAGEMENT, TRIM, one block of ranges */
	put_cmd(f, DISK_PORT, 0, fis, &prd, 1, HDR_WRITE, NULL);
	issue(f, DISK_PORT, 1);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_TFD) & ST_ERR, 0);
	fd = open(f->img, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(lseek(fd, 0, SEEK_HOLE), (off_t)(lba * SECTOR));
	assert_int_equal(lseek(fd, (off_t)(lba * SECTOR), SEEK_DATA), (off_t)((lba + n) * SECTOR));
	close(fd);
	/* The guest reads zeroes there (IDENTIFY word 69 promises it). */
	memset(gpa(f, DATA2, SECTOR), 0xAA, SECTOR);
	assert_int_equal(run_cmd(f, DISK_PORT, 0x25, lba + 3, 1, DATA2, SECTOR, false) & ST_ERR, 0);
	for (unsigned i = 0; i < SECTOR; i++)
		assert_int_equal(gpa(f, DATA2 + i, 1)[0], 0);

	/* A range past the end fails (IDNF) and punches nothing more. */
	put32(ranges, DISK_SECTORS - 1);
	put32(ranges + 4, 2u << 16);
	put_cmd(f, DISK_PORT, 0, fis, &prd, 1, HDR_WRITE, NULL);
	issue(f, DISK_PORT, 1);
	assert_true(prd_rd(f, DISK_PORT, PX_TFD) & ST_ERR);
	assert_int_equal((prd_rd(f, DISK_PORT, PX_TFD) >> 8) & ERR_IDNF, ERR_IDNF);
}

static void test_error_halts_port(void **state)
{
	struct fx *f = *state;
	const uint8_t *d2h = gpa(f, FB(DISK_PORT) + 0x40, 20);
	uint8_t fis[20];
	struct prd prd = { DATA, SECTOR, false };
	uint32_t tfd;

	port_start(f, DISK_PORT);
	prt_wr(f, DISK_PORT, PX_IE, IS_TFES);
	wr(f, GHC, GHC_AE | GHC_IE);
	/* READ DMA EXT of the sector after the last. */
	tfd = run_cmd(f, DISK_PORT, 0x25, DISK_SECTORS, 1, DATA, SECTOR, false);
	assert_true(tfd & ST_ERR);
	assert_int_equal((tfd >> 8) & 0xFF, ERR_IDNF);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_TFES);
	assert_int_equal(d2h[2] & ST_ERR, ST_ERR);
	assert_int_equal(d2h[3], ERR_IDNF);
	assert_int_equal(testvm_irq_level(f->fn->intx_gsi), 1);
	/* Halted: a new command stays issued. */
	h2d(fis, 0x25, 0, 1, 0);
	put_cmd(f, DISK_PORT, 1, fis, &prd, 1, 0, NULL);
	issue(f, DISK_PORT, 1u << 1);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 1u << 1);
	/* Stopping the engine drops it; restarting lets the next one run. */
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 0);
	prt_wr(f, DISK_PORT, PX_IS, 0xFFFFFFFF);
	wr(f, IS, 0xFFFFFFFF);
	assert_int_equal(testvm_irq_level(f->fn->intx_gsi), 0);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE | CMD_ST);
	issue(f, DISK_PORT, 1u << 1);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_TFD) & ST_ERR, 0);
	assert_int_equal(prdbc(f, DISK_PORT, 1), SECTOR);

	/* A count larger than the buffers: aborted, nothing read. */
	tfd = run_cmd(f, DISK_PORT, 0x25, 0, 2, DATA, SECTOR, false);
	assert_true(tfd & ST_ERR);
	assert_int_equal((tfd >> 8) & 0xFF, ERR_ABRT);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE | CMD_ST);
	/* An unknown command: aborted. */
	tfd = run_cmd(f, DISK_PORT, 0xFF, 0, 0, 0, 0, false);
	assert_int_equal((tfd >> 8) & 0xFF, ERR_ABRT);
}

static void test_outside_ram(void **state)
{
	struct fx *f = *state;
	uint8_t fis[20];
	struct prd prd = { OUTSIDE_RAM, SECTOR, false };
	struct prd straddle = { (64ull << 20) - 256, SECTOR, false }; /* the last 256 bytes of RAM and beyond */

	port_start(f, DISK_PORT);
	prt_wr(f, DISK_PORT, PX_IE, IS_HBFS);
	wr(f, GHC, GHC_AE | GHC_IE);
	h2d(fis, 0x25, 0, 1, 0);
	put_cmd(f, DISK_PORT, 0, fis, &prd, 1, 0, NULL);
	issue(f, DISK_PORT, 1);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 0);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_HBFS);
	assert_true(prd_rd(f, DISK_PORT, PX_TFD) & ST_ERR);
	assert_int_equal(testvm_irq_level(f->fn->intx_gsi), 1);
	/* Halted until the engine restarts. */
	put_cmd(f, DISK_PORT, 1, fis, &straddle, 1, 0, NULL);
	issue(f, DISK_PORT, 2);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 2);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE);
	prt_wr(f, DISK_PORT, PX_IS, 0xFFFFFFFF);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE | CMD_ST);
	issue(f, DISK_PORT, 2);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_HBFS);

	/* A command table outside RAM, then a command list outside RAM. */
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE);
	prt_wr(f, DISK_PORT, PX_IS, 0xFFFFFFFF);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_FRE | CMD_ST);
	put_cmd(f, DISK_PORT, 2, fis, &prd, 0, 0, NULL);
	put32(gpa(f, CLB(DISK_PORT) + 2 * 32 + 8, 4), (uint32_t)OUTSIDE_RAM);
	issue(f, DISK_PORT, 4);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_HBFS);
	prt_wr(f, DISK_PORT, PX_CMD, 0);
	prt_wr(f, DISK_PORT, PX_IS, 0xFFFFFFFF);
	prt_wr(f, DISK_PORT, PX_CLB, (uint32_t)OUTSIDE_RAM);
	prt_wr(f, DISK_PORT, PX_CMD, CMD_ST);
	issue(f, DISK_PORT, 1);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_HBFS);

	/* The port works again once pointed back into RAM and restarted. */
	port_start(f, DISK_PORT);
	assert_int_equal(run_cmd(f, DISK_PORT, 0x25, 0, 1, DATA, SECTOR, false) & ST_ERR, 0);
	assert_int_equal(prdbc(f, DISK_PORT, 0), SECTOR);
}

/* ---- interrupts and reset ---- */

static void test_intx(void **state)
{
	struct fx *f = *state;
	unsigned gsi = f->fn->intx_gsi;

	port_start(f, DISK_PORT);
	/* Interrupts off in GHC: the port's status is set, the line stays low. */
	prt_wr(f, DISK_PORT, PX_IE, IS_DHRS);
	run_cmd(f, DISK_PORT, 0xE7, 0, 0, 0, 0, false);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_DHRS);
	assert_int_equal(testvm_irq_level(gsi), 0);
	/* GHC.IE with a pending enabled status raises it. */
	wr(f, GHC, GHC_AE | GHC_IE);
	assert_int_equal(testvm_irq_level(gsi), 1);
	assert_int_equal(rd(f, IS), 1u << DISK_PORT);
	/* PxIS first, then IS: the line falls only with IS clear. */
	prt_wr(f, DISK_PORT, PX_IS, IS_DHRS);
	assert_int_equal(testvm_irq_level(gsi), 1);
	wr(f, IS, 1u << DISK_PORT);
	assert_int_equal(testvm_irq_level(gsi), 0);
	/* A status not enabled in PxIE raises nothing. */
	prt_wr(f, DISK_PORT, PX_IE, IS_SDBS);
	run_cmd(f, DISK_PORT, 0xE7, 0, 0, 0, 0, false);
	assert_int_equal(testvm_irq_level(gsi), 0);
	assert_int_equal(rd(f, IS), 0);
	/* Enabling it afterwards does. */
	prt_wr(f, DISK_PORT, PX_IE, IS_DHRS);
	assert_int_equal(testvm_irq_level(gsi), 1);
	prt_wr(f, DISK_PORT, PX_IS, 0xFFFFFFFF);
	wr(f, IS, 0xFFFFFFFF);
	assert_int_equal(testvm_irq_level(gsi), 0);
}

static uint64_t efd_count(int fd)
{
	uint64_t n = 0;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

static void test_msi(void **state)
{
	struct fx *f = *state;
	unsigned cap = f->fn->msi.cap, gsi = f->fn->intx_gsi;
	int efd = f->fn->msi.vec[0].efd;
	uint64_t addr;
	uint32_t data;

	cfg_write(f->vm, cap + 4, 4, 0xFEE00000);
	cfg_write(f->vm, cap + 8, 4, 0);
	cfg_write(f->vm, cap + 12, 2, 0x4033);
	cfg_write(f->vm, cap + 2, 2, 1); /* enable, one vector */
	efd_count(efd);
	port_start(f, DISK_PORT);
	prt_wr(f, DISK_PORT, PX_IE, IS_DHRS);
	wr(f, GHC, GHC_AE | GHC_IE);
	run_cmd(f, DISK_PORT, 0xE7, 0, 0, 0, 0, false);
	assert_int_equal(efd_count(efd), 1);
	assert_int_equal(vm_irq_msi_get(f->vm, (unsigned)f->fn->msi.vec[0].gsi, &addr, &data), 0);
	assert_int_equal(addr, 0xFEE00000);
	assert_int_equal(data, 0x4033);
	assert_int_equal(testvm_irq_level(gsi), 0);
	/* One message per completion, even with the last one's status still set. */
	run_cmd(f, DISK_PORT, 0xE7, 0, 0, 0, 0, false);
	assert_int_equal(efd_count(efd), 1);
	/* Nothing with GHC.IE off. */
	prt_wr(f, DISK_PORT, PX_IS, 0xFFFFFFFF);
	wr(f, IS, 0xFFFFFFFF);
	wr(f, GHC, GHC_AE);
	run_cmd(f, DISK_PORT, 0xE7, 0, 0, 0, 0, false);
	assert_int_equal(efd_count(efd), 0);
	assert_int_equal(testvm_irq_level(gsi), 0);
}

static void test_hba_reset(void **state)
{
	struct fx *f = *state;
	unsigned gsi = f->fn->intx_gsi;

	port_start(f, DISK_PORT);
	prt_wr(f, DISK_PORT, PX_IE, IS_DHRS);
	wr(f, GHC, GHC_AE | GHC_IE);
	run_cmd(f, DISK_PORT, 0xE7, 0, 0, 0, 0, false);
	assert_int_equal(testvm_irq_level(gsi), 1);
	wr(f, GHC, GHC_AE | GHC_HR);
	assert_int_equal(rd(f, GHC), GHC_AE); /* HR done, IE off */
	assert_int_equal(rd(f, IS), 0);
	assert_int_equal(testvm_irq_level(gsi), 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CMD) & (CMD_ST | CMD_CR | CMD_FRE | CMD_FR), 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_IS), 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_IE), 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_SIG), 0x101);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_SSTS), 0x123);
	assert_int_equal(prd_rd(f, CD_PORT, PX_SIG), 0xEB140101);
	/* The disk works after it. */
	port_start(f, DISK_PORT);
	assert_int_equal(run_cmd(f, DISK_PORT, 0x25, 5, 1, DATA, SECTOR, false) & ST_ERR, 0);
	assert_int_equal(gpa(f, DATA, 1)[0], disk_byte(5 * SECTOR));
}

/*
 * GHC.HR while both ports have commands issued and one runs: the reset
 * waits for it, and no command runs or completes after the reset (the
 * ports come out of it stopped, with nothing issued and no status). The
 * disk's commands read 4 MiB each (of the image's hole), long enough for
 * the reset to come while the I/O thread goes from port to port; a few
 * rounds, since where it is when HR comes differs each time.
 */
static void test_hba_reset_while_busy(void **state)
{
	struct fx *f = *state;
	uint8_t fis[20], cdb[16] = { 0 };
	struct prd prd;

	/* The CD's power-on unit attention out of the way. */
	port_start(f, CD_PORT);
	h2d(fis, 0xA0, 0, 0, 0);
	put_cmd(f, CD_PORT, 0, fis, NULL, 0, HDR_ATAPI, cdb); /* TEST UNIT READY */
	issue(f, CD_PORT, 1);
	const uint64_t hole = PATTERN_BYTES / SECTOR, span = DISK_SECTORS - hole - 8192;

	for (unsigned round = 0; round < 10; round++) {
		port_start(f, DISK_PORT);
		port_start(f, CD_PORT);
		for (unsigned s = 0; s < 32; s++) {
			prd = (struct prd){ DATA, 4u << 20, false };
			h2d(fis, 0x25, hole + s * 8192u % span, 8192, 0);
			put_cmd(f, DISK_PORT, s, fis, &prd, 1, 0, NULL);
			prd = (struct prd){ DATA2 + s * 0x4000u, 0x4000, false };
			memset(cdb, 0, sizeof(cdb));
			cdb[0] = 0x28, cdb[5] = (uint8_t)(s % 8), cdb[8] = 8;
			h2d(fis, 0xA0, 0, 0, 1);
			put_cmd(f, CD_PORT, s, fis, &prd, 1, HDR_ATAPI, cdb);
		}
		prt_wr(f, DISK_PORT, PX_CI, 0xFFFFFFFF);
		prt_wr(f, CD_PORT, PX_CI, 0xFFFFFFFF);
		/* HR once the I/O thread is at work on them (a command has completed). */
		while (prd_rd(f, DISK_PORT, PX_CI) == 0xFFFFFFFF && prd_rd(f, CD_PORT, PX_CI) == 0xFFFFFFFF)
			;
		wr(f, GHC, GHC_AE | GHC_HR);
		ahci_drain(f->hba);
		for (unsigned p = DISK_PORT; p <= CD_PORT; p++) {
			assert_int_equal(prd_rd(f, p, PX_CI), 0);
			assert_int_equal(prd_rd(f, p, PX_IS), 0);
			assert_int_equal(prd_rd(f, p, PX_CMD) & (CMD_ST | CMD_CR), 0);
		}
		assert_int_equal(rd(f, IS), 0);
	}
}

/* ---- ATAPI ---- */

static void test_atapi(void **state)
{
	struct fx *f = *state;
	const uint8_t *raw = gpa(f, DATA, 512), *d2h = gpa(f, FB(CD_PORT) + 0x40, 20);
	uint8_t fis[20], cdb[16] = { 0 }, sum = 0;
	struct prd prd = { DATA2, 96, false };
	uint16_t id0;
	uint32_t tfd;

	port_start(f, CD_PORT);
	/* IDENTIFY DEVICE: aborted, with the packet device's signature in the D2H FIS. */
	tfd = run_cmd(f, CD_PORT, 0xEC, 0, 0, DATA, 512, false);
	assert_true(tfd & ST_ERR);
	assert_int_equal((tfd >> 8) & ERR_ABRT, ERR_ABRT);
	assert_int_equal(d2h[5], 0x14);
	assert_int_equal(d2h[6], 0xEB);
	prt_wr(f, CD_PORT, PX_CMD, CMD_FRE);
	prt_wr(f, CD_PORT, PX_CMD, CMD_FRE | CMD_ST);

	/* IDENTIFY PACKET DEVICE over PIO. */
	assert_int_equal(run_cmd(f, CD_PORT, 0xA1, 0, 0, DATA, 512, false) & ST_ERR, 0);
	assert_int_equal(prdbc(f, CD_PORT, 0), 512);
	assert_true(prd_rd(f, CD_PORT, PX_IS) & IS_PSS);
	id0 = (uint16_t)(raw[0] | raw[1] << 8);
	assert_int_equal(id0 >> 14, 2);                    /* ATAPI */
	assert_int_equal((id0 >> 8) & 0x1F, 5);            /* CD-ROM */
	assert_int_equal(raw[510], 0xA5);
	for (unsigned i = 0; i < 512; i++)
		sum = (uint8_t)(sum + raw[i]);
	assert_int_equal(sum, 0);

	/* PACKET with INQUIRY (allocation length 36) into a 96-byte buffer. */
	cdb[0] = 0x12;
	cdb[4] = 36;
	memset(gpa(f, DATA2, 96), 0xEE, 96);
	h2d(fis, 0xA0, 0, 0, 0);
	fis[5] = 96, fis[6] = 0;                           /* byte count limit */
	put_cmd(f, CD_PORT, 2, fis, &prd, 1, HDR_ATAPI, cdb);
	issue(f, CD_PORT, 1u << 2);
	assert_int_equal(prd_rd(f, CD_PORT, PX_TFD) & ST_ERR, 0);
	assert_int_equal(prdbc(f, CD_PORT, 2), 36);
	assert_int_equal(gpa(f, DATA2, 1)[0], 0x05);       /* peripheral device type: CD/DVD */
	assert_int_equal(gpa(f, DATA2 + 1, 1)[0] & 0x80, 0x80); /* removable */
	assert_int_equal(gpa(f, DATA2 + 36, 1)[0], 0xEE);

	/* The first medium access reports the power-on unit attention, then READ(10) reads the image. */
	memset(cdb, 0, sizeof(cdb));
	put_cmd(f, CD_PORT, 0, fis, NULL, 0, HDR_ATAPI, cdb); /* TEST UNIT READY */
	issue(f, CD_PORT, 1);
	tfd = prd_rd(f, CD_PORT, PX_TFD);
	assert_true(tfd & ST_ERR);
	assert_int_equal((tfd >> 12) & 0xF, 6);            /* sense key UNIT ATTENTION */
	prt_wr(f, CD_PORT, PX_CMD, CMD_FRE);
	prt_wr(f, CD_PORT, PX_CMD, CMD_FRE | CMD_ST);
	struct prd blk = { DATA2, 2 * CD_BLOCK, false };
	cdb[0] = 0x28;
	cdb[5] = 3;                                        /* LBA 3 */
	cdb[8] = 2;                                        /* two blocks */
	fis[3] = 1;                                        /* DMA */
	put_cmd(f, CD_PORT, 0, fis, &blk, 1, HDR_ATAPI, cdb);
	issue(f, CD_PORT, 1);
	assert_int_equal(prd_rd(f, CD_PORT, PX_TFD) & ST_ERR, 0);
	assert_int_equal(prdbc(f, CD_PORT, 0), 2 * CD_BLOCK);
	for (unsigned i = 0; i < 2 * CD_BLOCK; i++)
		assert_int_equal(gpa(f, DATA2 + i, 1)[0], cd_byte(3 * CD_BLOCK + i));
}

/* ---- snapshots ---- */

static void *save_device(struct fx *f, size_t *len)
{
	struct state_writer *w = state_writer_new();
	uint8_t *buf;

	assert_non_null(w);
	assert_int_equal(f->dev->model->save(f->dev, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, len), 0);
	state_writer_free(w);
	return buf;
}

static void test_save_restore_issued(void **state)
{
	struct fx *f = *state;
	const uint64_t lba = 500, ram = 16ull << 20;
	uint8_t fis[20], host[SECTOR], *ram_copy, *snap;
	struct prd prd = { DATA, SECTOR, false };
	struct state_reader *r;
	size_t len;

	port_start(f, DISK_PORT);
	prt_wr(f, DISK_PORT, PX_IE, IS_DHRS);
	wr(f, GHC, GHC_AE | GHC_IE);
	fill(f, DATA, SECTOR, 0x5A);
	/* Paused: a WRITE DMA EXT issued now does not run. */
	f->dev->model->run_state(f->dev, false);
	h2d(fis, 0x35, lba, 1, 0);
	put_cmd(f, DISK_PORT, 6, fis, &prd, 1, HDR_WRITE, NULL);
	prt_wr(f, DISK_PORT, PX_CI, 1u << 6);
	snap = save_device(f, &len);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 1u << 6);
	read_image(f, lba * SECTOR, host, SECTOR);
	assert_int_equal(host[0], disk_byte(lba * SECTOR));
	/* RAM travels with the snapshot; the first VM goes (and lets go of its image). */
	ram_copy = malloc(ram);
	assert_non_null(ram_copy);
	memcpy(ram_copy, gpa(f, 0, ram), ram);
	fx_destroy(f);
	read_image(f, lba * SECTOR, host, SECTOR);
	assert_int_equal(host[0], disk_byte(lba * SECTOR)); /* still not run */

	/* A second VM restores it before its vCPUs start. */
	fx_create(f);
	memcpy(gpa(f, 0, ram), ram_copy, ram);
	free(ram_copy);
	f->dev->model->run_state(f->dev, false);
	r = state_reader_new(snap, len);
	assert_non_null(r);
	assert_int_equal(f->dev->model->restore(f->dev, r, f->dev->model->state_version), 0);
	state_reader_free(r);
	free(snap);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 1u << 6);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CMD) & (CMD_ST | CMD_CR), CMD_ST | CMD_CR);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CLB), CLB(DISK_PORT));
	assert_int_equal(rd(f, GHC), GHC_AE | GHC_IE);
	f->dev->model->run_state(f->dev, true);
	read_image(f, lba * SECTOR, host, SECTOR);
	assert_int_equal(host[0], disk_byte(lba * SECTOR)); /* the vCPUs have not started */
	/* Started: it runs. */
	fx_start_vcpus(f);
	ahci_drain(f->hba);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_CI), 0);
	assert_int_equal(prd_rd(f, DISK_PORT, PX_TFD) & ST_ERR, 0);
	assert_true(prd_rd(f, DISK_PORT, PX_IS) & IS_DHRS);
	assert_int_equal(testvm_irq_level(f->fn->intx_gsi), 1);
	assert_int_equal(prdbc(f, DISK_PORT, 6), SECTOR);
	read_image(f, lba * SECTOR, host, SECTOR);
	assert_memory_equal(host, gpa(f, DATA, SECTOR), SECTOR);
	assert_int_equal(device_model_oldest_state_version(f->dev->model), f->dev->model->state_version);
}

/* ---- options ---- */

static void test_options(void **state)
{
	struct config *cfg = config_new();
	const struct device_model *m = device_model_find("ahci");

	(void)state;
	assert_int_equal(m->parse_slot_options(cfg, "pci.0.4.0", "hd:/a.img,ro,ser=X1,cd:/b.iso,cd:,hd:/c.img"), 0);
	assert_string_equal(config_get(cfg, "pci.0.4.0.port.0.type"), "hd");
	assert_string_equal(config_get(cfg, "pci.0.4.0.port.0.path"), "/a.img");
	assert_string_equal(config_get(cfg, "pci.0.4.0.port.0.ro"), "true");
	assert_string_equal(config_get(cfg, "pci.0.4.0.port.0.ser"), "X1");
	assert_string_equal(config_get(cfg, "pci.0.4.0.port.1.type"), "cd");
	assert_string_equal(config_get(cfg, "pci.0.4.0.port.1.path"), "/b.iso");
	assert_string_equal(config_get(cfg, "pci.0.4.0.port.2.type"), "cd");
	assert_null(config_get(cfg, "pci.0.4.0.port.2.path"));
	assert_string_equal(config_get(cfg, "pci.0.4.0.port.3.path"), "/c.img");
	/* An option before any port. */
	assert_int_equal(m->parse_slot_options(cfg, "pci.0.5.0", "ro,hd:/a.img"), -1);
	config_free(cfg);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_pci_and_hba_identity),
		T(test_port_signatures),
		T(test_comreset),
		T(test_start_stop),
		T(test_identify_pio),
		T(test_dma_write_read),
		T(test_ncq),
		T(test_flush),
		T(test_trim_punches_hole),
		T(test_error_halts_port),
		T(test_outside_ram),
		T(test_intx),
		T(test_msi),
		T(test_hba_reset),
		T(test_hba_reset_while_busy),
		T(test_atapi),
		T(test_save_restore_issued),
		cmocka_unit_test(test_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
