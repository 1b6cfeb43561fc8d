/*
 * The AHCI host bus adapter: registers, command engine and I/O thread (see
 * ahci.h). References are to the AHCI 1.3.1 specification.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/memory.h"
#include "core/sandbox.h"
#include "core/vm.h"
#include "sata/ahci.h"
#include "sata/ata_disk.h"
#include "sata/atapi_cd.h"
#include "sata/sata.h"
#include "snapshot/state.h"

/* Generic host control (3.1). */
#define REG_CAP 0x00
#define REG_GHC 0x04
#define REG_IS 0x08
#define REG_PI 0x0C
#define REG_VS 0x10
#define REG_CAP2 0x24
#define PORT_BASE 0x100
#define PORT_SIZE 0x80

#define CAP_S64A (1u << 31)
#define CAP_SNCQ (1u << 30)
#define CAP_SAM (1u << 18)     /* AHCI only, no legacy IDE mode */
#define CAP_SCLO (1u << 24)
#define CAP_ISS_GEN2 (2u << 20)
#define CAP_NCS_32 (31u << 8)
#define GHC_HR (1u << 0)
#define GHC_IE (1u << 1)
#define GHC_AE (1u << 31)
#define AHCI_VERSION 0x00010301

/* Port registers (3.3), offsets inside the port's 0x80 bytes. */
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
#define PX_SNTF 0x3C

#define IS_DHRS (1u << 0)
#define IS_PSS (1u << 1)
#define IS_SDBS (1u << 3)
#define IS_DPS (1u << 5)
#define IS_HBFS (1u << 29)
#define IS_TFES (1u << 30)
#define IS_VALID 0xFDC000FFu

#define CMD_ST (1u << 0)
#define CMD_SUD (1u << 1)
#define CMD_POD (1u << 2)
#define CMD_CLO (1u << 3)
#define CMD_FRE (1u << 4)
#define CMD_FR (1u << 14)
#define CMD_CR (1u << 15)
#define CMD_CCS_SHIFT 8
#define CMD_WRITABLE (CMD_ST | CMD_SUD | CMD_POD | CMD_FRE | (1u << 24) | (1u << 25) | (1u << 26) | (1u << 27))

#define SSTS_UP 0x123          /* device present and communicating, Gen 2, interface active */
#define SIG_DISK 0x00000101u
#define SIG_ATAPI 0xEB140101u

/* Command list and table (4.2). */
#define HDR_SIZE 32
#define HDR_ATAPI (1u << 5)
#define TBL_CFIS 0x00
#define TBL_ACMD 0x40
#define TBL_PRDT 0x80
#define PRD_SIZE 16
#define PRD_DBC_MASK 0x3FFFFFu
#define PRD_IRQ (1u << 31)
/* Received FIS area. */
#define RFIS_PIO 0x20
#define RFIS_D2H 0x40
#define RFIS_SDB 0x58
#define RFIS_SIZE 0x100

#define FIS_H2D 0x27
#define FIS_D2H 0x34
#define FIS_SDB 0xA1
#define FIS_PIO 0x5F
#define ATA_CONTROL_SRST 0x04
#define ATA_CMD_PACKET 0xA0

enum port_kind { PORT_EMPTY, PORT_DISK, PORT_CD };

struct ahci_port {
	enum port_kind kind;
	struct ata_disk *disk;
	struct atapi_cd *cd;
	uint64_t clb, fb;
	uint32_t is, ie, cmd, tfd, sig, ssts, sctl, serr, sact, ci, sntf;
	/* A command failed (TFES, HBFS): nothing more runs until the guest restarts the port (ST 0, then 1). */
	bool halted;
	int running_slot;        /* the slot the I/O thread runs, or -1 */
	struct iovec *iov;       /* the running command's buffers */
	unsigned iov_cap;
};

struct ahci {
	struct vm *vm;
	const char *owner;
	ahci_irq_fn irq;
	void *irq_opaque;
	pthread_mutex_t lock;
	pthread_cond_t cond;     /* work for the I/O thread, and the end of a command */
	uint32_t ghc, is, pi;
	unsigned nports;         /* ports 0 .. nports-1 are implemented (PI) */
	struct ahci_port ports[AHCI_MAX_PORTS];
	unsigned next_port;      /* round robin among ports with work */
	pthread_t thread;
	bool thread_started, stop, paused;
	unsigned hold;           /* threads waiting for the command in progress: start no other */
	bool warned_memory;
};

/* ---- interrupts ---- */

/* Recomputes IS from the ports and tells the PCI side; event: a new condition arose. Locked. */
static void update_irq(struct ahci *h, bool event)
{
	for (unsigned p = 0; p < AHCI_MAX_PORTS; p++)
		if (h->ports[p].is & h->ports[p].ie)
			h->is |= 1u << p;
	bool level = (h->ghc & GHC_IE) && h->is;
	h->irq(h->irq_opaque, level, event && level);
}

/* ---- guest memory ---- */

static bool guest_read(struct ahci *h, uint64_t gpa, void *dst, size_t len)
{
	const void *src = mem_gpa_to_hva(&h->vm->mem, gpa, len);

	if (!src)
		return false;
	memcpy(dst, src, len);
	return true;
}

static void guest_write(struct ahci *h, uint64_t gpa, const void *src, size_t len)
{
	void *dst = mem_gpa_to_hva(&h->vm->mem, gpa, len);

	if (dst) {
		memcpy(dst, src, len);
		mem_mark_dirty(&h->vm->mem, dst, len);
	}
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- FISes the device sends ---- */

static void fis_put_lba(uint8_t *fis, uint64_t lba)
{
	fis[4] = (uint8_t)lba, fis[5] = (uint8_t)(lba >> 8), fis[6] = (uint8_t)(lba >> 16);
	fis[8] = (uint8_t)(lba >> 24), fis[9] = (uint8_t)(lba >> 32), fis[10] = (uint8_t)(lba >> 40);
}

/* A received FIS lands in the port's FIS area only while FIS receive is on. Locked. */
static void post_fis(struct ahci *h, struct ahci_port *pt, unsigned off, const uint8_t *fis, size_t len)
{
	if (pt->cmd & CMD_FRE)
		guest_write(h, pt->fb + off, fis, len);
}

static void post_d2h(struct ahci *h, struct ahci_port *pt, const struct sata_result *r, bool irq)
{
	uint8_t fis[20] = { FIS_D2H, irq ? 0x40 : 0, r->status, r->error };

	fis_put_lba(fis, r->lba);
	fis[12] = r->sector_count;
	pt->tfd = (uint32_t)r->error << 8 | r->status;
	post_fis(h, pt, RFIS_D2H, fis, sizeof(fis));
	if (irq)
		pt->is |= IS_DHRS;
}

static void post_pio_setup(struct ahci *h, struct ahci_port *pt, const struct sata_result *r)
{
	uint8_t fis[20] = { FIS_PIO, 0x20 | 0x40, ATA_STATUS_DRDY | ATA_STATUS_DRQ, r->error };
	uint16_t count = r->transferred > 0xFFFF ? 0xFFFF : (uint16_t)r->transferred;

	fis_put_lba(fis, r->lba);
	fis[12] = r->sector_count;
	fis[15] = r->status;              /* E_Status: the status once the transfer is done */
	fis[16] = (uint8_t)count, fis[17] = (uint8_t)(count >> 8);
	post_fis(h, pt, RFIS_PIO, fis, sizeof(fis));
	pt->is |= IS_PSS;
}

/* A queued command ended: Set Device Bits with its tag in SActive. */
static void post_sdb(struct ahci *h, struct ahci_port *pt, const struct sata_result *r, unsigned tag)
{
	uint8_t fis[8] = { FIS_SDB, 0x40, (uint8_t)(r->status & 0x77), r->error };
	uint32_t done = (r->status & ATA_STATUS_ERR) ? 0 : 1u << tag;

	fis[4] = (uint8_t)done, fis[5] = (uint8_t)(done >> 8), fis[6] = (uint8_t)(done >> 16);
	fis[7] = (uint8_t)(done >> 24);
	pt->tfd = (pt->tfd & ~0x77u & ~0xFF00u) | (r->status & 0x77) | (uint32_t)r->error << 8;
	post_fis(h, pt, RFIS_SDB, fis, sizeof(fis));
	pt->sact &= ~(1u << tag);
	pt->is |= IS_SDBS;
}

/* ---- port state ---- */

static uint32_t signature_of(const struct ahci_port *pt)
{
	return pt->kind == PORT_CD ? SIG_ATAPI : SIG_DISK;
}

/* The device's answer to a reset: its signature in the registers (and the FIS area). Locked. */
static void device_signature(struct ahci *h, struct ahci_port *pt)
{
	struct sata_result r = { .status = pt->kind == PORT_CD ? 0 : ATA_STATUS_DRDY | ATA_STATUS_DSC,
				 .error = 0x01, .sector_count = 1 };

	if (pt->kind == PORT_EMPTY)
		return;
	r.lba = signature_of(pt) >> 8;
	pt->sig = signature_of(pt);
	pt->ssts = SSTS_UP;
	post_d2h(h, pt, &r, false);
}

/* Power-on values of a port's registers; the command list and FIS area addresses are kept (10.4.3). */
static void port_reset_registers(struct ahci *h, struct ahci_port *pt)
{
	pt->is = pt->ie = pt->serr = pt->sact = pt->ci = pt->sntf = pt->sctl = 0;
	pt->cmd = pt->kind == PORT_EMPTY ? 0 : CMD_SUD | CMD_POD;
	pt->halted = false;
	pt->tfd = 0x7F;
	pt->sig = 0xFFFFFFFF;
	pt->ssts = 0;
	device_signature(h, pt);
}

/*
 * Waits until the I/O thread is not running a command on pt. Locked (the
 * wait drops the lock). `hold` keeps the thread from starting another one
 * meanwhile: the waiter runs as soon as the command in progress ends, however
 * many more the guest has issued.
 */
static void wait_port_idle(struct ahci *h, struct ahci_port *pt)
{
	h->hold++;
	while (pt->running_slot >= 0)
		pthread_cond_wait(&h->cond, &h->lock);
	h->hold--;
	pthread_cond_broadcast(&h->cond); /* the I/O thread may go on once the lock is free */
}

static bool any_running(const struct ahci *h)
{
	for (unsigned p = 0; p < AHCI_MAX_PORTS; p++)
		if (h->ports[p].running_slot >= 0)
			return true;
	return false;
}

static void wait_all_idle(struct ahci *h)
{
	h->hold++;
	while (any_running(h))
		pthread_cond_wait(&h->cond, &h->lock);
	h->hold--;
	pthread_cond_broadcast(&h->cond);
}

static void reset_locked(struct ahci *h)
{
	wait_all_idle(h);
	h->ghc = GHC_AE;
	h->is = 0;
	for (unsigned p = 0; p < AHCI_MAX_PORTS; p++) {
		struct ahci_port *pt = &h->ports[p];
		if (pt->disk)
			ata_disk_reset(pt->disk);
		if (pt->cd)
			atapi_cd_reset(pt->cd);
		port_reset_registers(h, pt);
	}
	update_irq(h, false);
}

/* ---- register access ---- */

static uint32_t cap_value(const struct ahci *h)
{
	return CAP_S64A | CAP_SNCQ | CAP_SAM | CAP_SCLO | CAP_ISS_GEN2 | CAP_NCS_32 | (h->nports - 1);
}

static uint32_t port_read(struct ahci_port *pt, unsigned reg)
{
	switch (reg) {
	case PX_CLB: return (uint32_t)pt->clb;
	case PX_CLBU: return (uint32_t)(pt->clb >> 32);
	case PX_FB: return (uint32_t)pt->fb;
	case PX_FBU: return (uint32_t)(pt->fb >> 32);
	case PX_IS: return pt->is;
	case PX_IE: return pt->ie;
	case PX_CMD: {
		uint32_t slot = pt->running_slot >= 0 ? (uint32_t)pt->running_slot : 0;
		return pt->cmd | slot << CMD_CCS_SHIFT;
	}
	case PX_TFD: return pt->tfd;
	case PX_SIG: return pt->sig;
	case PX_SSTS: return pt->ssts;
	case PX_SCTL: return pt->sctl;
	case PX_SERR: return pt->serr;
	case PX_SACT: return pt->sact;
	case PX_CI: return pt->ci;
	case PX_SNTF: return pt->sntf;
	default: return 0;
	}
}

static uint32_t reg_read(struct ahci *h, unsigned off)
{
	if (off >= PORT_BASE) {
		unsigned p = (off - PORT_BASE) / PORT_SIZE;
		return p < AHCI_MAX_PORTS && (h->pi & (1u << p)) ? port_read(&h->ports[p], (off - PORT_BASE) % PORT_SIZE)
								 : 0;
	}
	switch (off) {
	case REG_CAP: return cap_value(h);
	case REG_GHC: return h->ghc;
	case REG_IS: return h->is;
	case REG_PI: return h->pi;
	case REG_VS: return AHCI_VERSION;
	default: return 0;
	}
}

static void port_write_cmd(struct ahci *h, struct ahci_port *pt, uint32_t v)
{
	uint32_t old = pt->cmd;

	if ((old & CMD_ST) && !(v & CMD_ST)) {
		/* Stopping: the command in progress ends first; what was issued is dropped (3.3.7). */
		wait_port_idle(h, pt);
		pt->ci = pt->sact = 0;
		pt->halted = false;
	}
	pt->cmd = (old & ~CMD_WRITABLE) | (v & CMD_WRITABLE);
	pt->cmd = (pt->cmd & ~(CMD_CR | CMD_FR)) | ((pt->cmd & CMD_ST) ? CMD_CR : 0) | ((pt->cmd & CMD_FRE) ? CMD_FR : 0);
	if (v & CMD_CLO)
		pt->tfd &= ~(uint32_t)(ATA_STATUS_BSY | ATA_STATUS_DRQ);
	if (pt->kind == PORT_EMPTY)
		pt->cmd &= ~(CMD_SUD | CMD_POD);
}

/* SControl.DET: 1 holds the link in COMRESET, 0 lets the device come up with its signature. */
static void port_write_sctl(struct ahci *h, struct ahci_port *pt, uint32_t v)
{
	uint32_t old_det = pt->sctl & 0xF, det = v & 0xF;

	pt->sctl = v & 0xFFF;
	if (det == 1) {
		wait_port_idle(h, pt);
		pt->ssts = 0;
		pt->tfd = ATA_STATUS_BSY;
		pt->ci = pt->sact = 0;
		if (pt->disk)
			ata_disk_reset(pt->disk);
		if (pt->cd)
			atapi_cd_reset(pt->cd);
	} else if (det == 0 && old_det == 1) {
		device_signature(h, pt);
	}
}

static void port_write(struct ahci *h, unsigned p, unsigned reg, uint32_t v)
{
	struct ahci_port *pt = &h->ports[p];

	switch (reg) {
	case PX_CLB: pt->clb = (pt->clb & ~0xFFFFFFFFull) | (v & ~0x3FFu); break;
	case PX_CLBU: pt->clb = (pt->clb & 0xFFFFFFFFull) | (uint64_t)v << 32; break;
	case PX_FB: pt->fb = (pt->fb & ~0xFFFFFFFFull) | (v & ~0xFFu); break;
	case PX_FBU: pt->fb = (pt->fb & 0xFFFFFFFFull) | (uint64_t)v << 32; break;
	case PX_IS: pt->is &= ~v; break;
	case PX_IE: pt->ie = v & IS_VALID; break;
	case PX_CMD: port_write_cmd(h, pt, v); break;
	case PX_SCTL: port_write_sctl(h, pt, v); break;
	case PX_SERR: pt->serr &= ~v; break;
	case PX_SNTF: pt->sntf &= ~v; break;
	case PX_SACT:
		if (pt->cmd & CMD_ST)
			pt->sact |= v;
		break;
	case PX_CI:
		if ((pt->cmd & CMD_ST) && pt->kind != PORT_EMPTY) {
			pt->ci |= v;
			pthread_cond_broadcast(&h->cond);
		}
		break;
	default: break;
	}
}

static void reg_write(struct ahci *h, unsigned off, uint32_t v)
{
	if (off >= PORT_BASE) {
		unsigned p = (off - PORT_BASE) / PORT_SIZE;
		if (p < AHCI_MAX_PORTS && (h->pi & (1u << p)))
			port_write(h, p, (off - PORT_BASE) % PORT_SIZE, v);
		update_irq(h, (off - PORT_BASE) % PORT_SIZE == PX_IE);
		return;
	}
	switch (off) {
	case REG_GHC:
		if (v & GHC_HR) {
			reset_locked(h); /* HR reads back 0: the reset is done */
			return;
		}
		h->ghc = GHC_AE | (v & GHC_IE);
		update_irq(h, true);
		break;
	case REG_IS:
		h->is &= ~v;
		update_irq(h, false);
		break;
	default:
		break;
	}
}

void ahci_mmio(struct ahci *h, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	/* Registers are dwords; wider accesses are split, narrower ones see or change part of one. */
	if (size == 8) {
		ahci_mmio(h, off, data, 4, is_write);
		ahci_mmio(h, off + 4, data + 4, 4, is_write);
		return;
	}
	if (off >= AHCI_MMIO_SIZE || size > 4)
		return;
	unsigned reg = (unsigned)off & ~3u, shift = ((unsigned)off & 3) * 8;
	pthread_mutex_lock(&h->lock);
	uint32_t cur = reg_read(h, reg);
	if (!is_write) {
		uint32_t v = cur >> shift;
		memcpy(data, &v, size);
	} else {
		uint32_t v = 0, mask = size == 4 ? 0xFFFFFFFFu : ((1u << (size * 8)) - 1) << shift;
		memcpy(&v, data, size);
		/* Write-1-to-clear registers must not clear the bytes the guest did not write. */
		bool w1c = reg == REG_IS || (reg >= PORT_BASE && ((reg - PORT_BASE) % PORT_SIZE == PX_IS ||
							  (reg - PORT_BASE) % PORT_SIZE == PX_SERR ||
							  (reg - PORT_BASE) % PORT_SIZE == PX_SNTF ||
							  (reg - PORT_BASE) % PORT_SIZE == PX_CI ||
							  (reg - PORT_BASE) % PORT_SIZE == PX_SACT));
		uint32_t full = w1c ? (v << shift) & mask : (cur & ~mask) | ((v << shift) & mask);
		reg_write(h, reg, full);
	}
	pthread_mutex_unlock(&h->lock);
}

/* ---- commands ---- */

struct command {
	unsigned slot;
	uint32_t flags;          /* header DW0 */
	uint64_t table;
	uint8_t cfis[20];
	uint8_t acmd[16];
	struct ata_cmd ata;
	struct sata_sg sg;
	bool prd_irq;            /* a PRD entry asked for an interrupt when done */
	bool bad_memory;         /* the command list, table or a buffer lies outside RAM */
};

static bool iov_room(struct ahci_port *pt, unsigned n)
{
	struct iovec *p;

	if (n <= pt->iov_cap)
		return true;
	if (!(p = realloc(pt->iov, n * sizeof(*p))))
		return false;
	pt->iov = p;
	pt->iov_cap = n;
	return true;
}

/* The PRD table as host buffers; false when an entry lies outside RAM. */
static bool load_prdt(struct ahci *h, struct ahci_port *pt, struct command *c)
{
	unsigned n = c->flags >> 16;

	c->sg = (struct sata_sg){ .iov = pt->iov, .n = 0, .len = 0 };
	if (!n)
		return true;
	if (!iov_room(pt, n))
		return false;
	c->sg.iov = pt->iov;
	for (unsigned i = 0; i < n; i++) {
		uint8_t e[PRD_SIZE];
		if (!guest_read(h, c->table + TBL_PRDT + (uint64_t)i * PRD_SIZE, e, sizeof(e)))
			return false;
		uint64_t dba = ((uint64_t)le32(e + 4) << 32 | le32(e)) & ~1ull;
		uint32_t dw3 = le32(e + 12), len = (dw3 & PRD_DBC_MASK) + 1;
		void *hva = mem_gpa_to_hva(&h->vm->mem, dba, len);
		if (!hva)
			return false;
		pt->iov[i] = (struct iovec){ .iov_base = hva, .iov_len = len };
		c->sg.len += len;
		c->prd_irq |= (dw3 & PRD_IRQ) != 0;
	}
	c->sg.n = n;
	return true;
}

/* Reads slot's header, FIS and PRD table once, so what is checked is what is used. */
static void load_command(struct ahci *h, struct ahci_port *pt, uint64_t clb, struct command *c)
{
	uint8_t hdr[16];

	if (!guest_read(h, clb + (uint64_t)c->slot * HDR_SIZE, hdr, sizeof(hdr))) {
		c->bad_memory = true;
		return;
	}
	c->flags = le32(hdr);
	c->table = ((uint64_t)le32(hdr + 12) << 32 | le32(hdr + 8)) & ~0x7Full;
	if (!guest_read(h, c->table + TBL_CFIS, c->cfis, sizeof(c->cfis)) ||
	    !guest_read(h, c->table + TBL_ACMD, c->acmd, sizeof(c->acmd)) || !load_prdt(h, pt, c)) {
		c->bad_memory = true;
		return;
	}
	sata_cmd_from_fis(c->cfis, &c->ata);
}

static void cd_command(struct atapi_cd *cd, const struct command *c, struct sata_result *r)
{
	uint16_t id[256];

	memset(r, 0, sizeof(*r));
	switch (c->ata.command) {
	case ATA_CMD_PACKET:
		atapi_cd_packet(cd, c->acmd, &c->sg, r);
		return;
	case 0xA1: /* IDENTIFY PACKET DEVICE */
		atapi_cd_identify(cd, id);
		r->transferred = sata_sg_copy_to(&c->sg, 0, id, sizeof(id));
		r->status = ATA_STATUS_DRDY | ATA_STATUS_DSC;
		return;
	case 0xEF: /* SET FEATURES: transfer modes, accepted */
	case 0xE5: /* CHECK POWER MODE */
		r->sector_count = 0xFF;
		r->status = ATA_STATUS_DRDY | ATA_STATUS_DSC;
		return;
	case 0x08: /* DEVICE RESET */
	case 0x90: /* EXECUTE DEVICE DIAGNOSTIC */
		r->error = 0x01;
		r->sector_count = 1;
		r->lba = SIG_ATAPI >> 8;
		return;
	default:
		/* IDENTIFY DEVICE and the rest: aborted, with the signature that says "packet device" (ACS-3 7.12). */
		r->status = ATA_STATUS_DRDY | ATA_STATUS_ERR;
		r->error = ATA_ERROR_ABRT;
		r->sector_count = 1;
		r->lba = SIG_ATAPI >> 8;
		return;
	}
}

/* Runs the command on the port's device, without the HBA's lock. */
static void execute(struct ahci_port *pt, struct command *c, struct sata_result *r)
{
	if (pt->kind == PORT_CD)
		cd_command(pt->cd, c, r);
	else
		ata_disk_command(pt->disk, &c->ata, &c->sg, r);
}

/* Software reset through a control FIS (SRST set, then cleared: 10.4.1). */
static void control_fis(struct ahci *h, struct ahci_port *pt, const struct command *c)
{
	if (c->cfis[15] & ATA_CONTROL_SRST) {
		pt->tfd = ATA_STATUS_BSY;
		return;
	}
	if (pt->disk)
		ata_disk_reset(pt->disk);
	device_signature(h, pt);
}

/* Posts what a command left (locked): FISes, PRDBC, PxIS, PxCI/PxSACT. */
static void complete(struct ahci *h, struct ahci_port *pt, uint64_t clb, const struct command *c,
		     const struct sata_result *r)
{
	enum ata_protocol prot = sata_protocol_of(c->ata.command);
	bool failed = r->status & ATA_STATUS_ERR;

	if (prot == ATA_PROT_NCQ && pt->kind == PORT_DISK) {
		unsigned tag = (c->ata.count >> 3) & 0x1F;
		post_sdb(h, pt, r, tag);
		if (failed)
			pt->sact &= ~(1u << tag);
	} else {
		uint8_t prdbc[4] = { (uint8_t)r->transferred, (uint8_t)(r->transferred >> 8),
				     (uint8_t)(r->transferred >> 16), (uint8_t)(r->transferred >> 24) };
		guest_write(h, clb + (uint64_t)c->slot * HDR_SIZE + 4, prdbc, sizeof(prdbc));
		bool data_in = prot == ATA_PROT_PIO_IN || (prot == ATA_PROT_PACKET && !(c->ata.features & 1) &&
							   !(c->flags & (1u << 6)));
		if (data_in && !failed && r->transferred)
			post_pio_setup(h, pt, r);
		post_d2h(h, pt, r, true);
	}
	if (failed) {
		pt->is |= IS_TFES;
		pt->halted = true;
	} else if (c->prd_irq) {
		pt->is |= IS_DPS;
	}
	pt->ci &= ~(1u << c->slot);
}

/* Command list bad: the guest's memory cannot be read or written where it points (HBFS, 6.1.1). */
static void fail_memory(struct ahci *h, struct ahci_port *pt, const struct command *c)
{
	if (!h->warned_memory)
		log_warn("%s: a command (slot %u) points outside guest RAM: host bus fatal error", h->owner, c->slot);
	h->warned_memory = true;
	pt->is |= IS_HBFS;
	pt->tfd |= ATA_STATUS_ERR;
	pt->halted = true;
	pt->ci &= ~(1u << c->slot);
}

/* The lowest issued slot of a port that may run, or -1. Locked. */
static int next_slot(struct ahci_port *pt)
{
	if (pt->kind == PORT_EMPTY || !(pt->cmd & CMD_ST) || pt->halted || pt->running_slot >= 0 || !pt->ci)
		return -1;
	return __builtin_ctz(pt->ci);
}

/* A port with a command to run, round robin; -1 when none. Locked. */
static int pick_port(struct ahci *h)
{
	for (unsigned i = 0; i < AHCI_MAX_PORTS; i++) {
		unsigned p = (h->next_port + i) % AHCI_MAX_PORTS;
		if (next_slot(&h->ports[p]) >= 0) {
			h->next_port = (p + 1) % AHCI_MAX_PORTS;
			return (int)p;
		}
	}
	return -1;
}

static void run_one(struct ahci *h, struct ahci_port *pt)
{
	struct command c = { .slot = (unsigned)next_slot(pt) };
	struct sata_result r;
	uint64_t clb = pt->clb;

	pt->running_slot = (int)c.slot;
	pthread_mutex_unlock(&h->lock);
	load_command(h, pt, clb, &c);
	bool is_command = !c.bad_memory && c.cfis[0] == FIS_H2D && (c.cfis[1] & 0x80);
	if (is_command)
		execute(pt, &c, &r);
	/* A live snapshot copies what the command may have written (core/memory.h); before a pause can begin. */
	for (unsigned i = 0; is_command && i < c.sg.n && mem_tracking(&h->vm->mem); i++)
		mem_mark_dirty(&h->vm->mem, c.sg.iov[i].iov_base, c.sg.iov[i].iov_len);
	pthread_mutex_lock(&h->lock);
	if (c.bad_memory)
		fail_memory(h, pt, &c);
	else if (!is_command && c.cfis[0] == FIS_H2D)
		control_fis(h, pt, &c), pt->ci &= ~(1u << c.slot);
	else if (!is_command)
		pt->ci &= ~(1u << c.slot); /* not a FIS a device takes: nothing happens */
	else
		complete(h, pt, clb, &c, &r);
	pt->running_slot = -1;
	update_irq(h, true);
	pthread_cond_broadcast(&h->cond);
}

/* ---- the I/O thread ---- */

static bool vcpus_started(struct ahci *h)
{
	return __atomic_load_n(&h->vm->vcpus_started, __ATOMIC_ACQUIRE);
}

static void wait_for_work(struct ahci *h, bool have_work)
{
	if (have_work) {
		/*
		 * Issued commands restored from a snapshot wait for the vCPUs (their
		 * interrupts would land in interrupt controllers not restored yet):
		 * look again shortly. Only between a restore and the start.
		 */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000000;
		if (ts.tv_nsec >= 1000000000)
			ts.tv_sec++, ts.tv_nsec -= 1000000000;
		pthread_cond_timedwait(&h->cond, &h->lock, &ts);
		return;
	}
	pthread_cond_wait(&h->cond, &h->lock);
}

static void *io_main(void *opaque)
{
	struct ahci *h = opaque;
	bool confined = sandbox_enter(SANDBOX_IO) == 0;

	if (!confined)
		vm_request_exit(h->vm, HYVE_EXIT_ERROR);
	pthread_mutex_lock(&h->lock);
	while (confined && !h->stop) {
		int p = h->paused || h->hold ? -1 : pick_port(h);
		if (p < 0 || !vcpus_started(h)) {
			wait_for_work(h, p >= 0);
			continue;
		}
		run_one(h, &h->ports[p]);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* ---- life cycle ---- */

struct ahci *ahci_new(struct vm *vm, const char *owner, ahci_irq_fn irq, void *opaque)
{
	struct ahci *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->vm = vm;
	h->owner = owner;
	h->irq = irq;
	h->irq_opaque = opaque;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	for (unsigned p = 0; p < AHCI_MAX_PORTS; p++)
		h->ports[p].running_slot = -1;
	h->pi = 0;
	return h;
}

int ahci_attach(struct ahci *h, unsigned port, struct ata_disk *disk, struct atapi_cd *cd)
{
	struct ahci_port *pt;

	if (port >= AHCI_MAX_PORTS || h->ports[port].kind != PORT_EMPTY || (!disk == !cd)) {
		log_error("%s: ahci: port %u cannot take this device", h->owner, port);
		return -1;
	}
	pt = &h->ports[port];
	pt->kind = disk ? PORT_DISK : PORT_CD;
	pt->disk = disk;
	pt->cd = cd;
	return 0;
}

int ahci_start(struct ahci *h)
{
	/*
	 * Ports up to the last one with a device are implemented (PI); empty ones
	 * among them report no device. Not all 32: firmware waits for a link on
	 * each implemented port before it gives up on it.
	 */
	h->nports = 1;
	for (unsigned p = 0; p < AHCI_MAX_PORTS; p++)
		if (h->ports[p].kind != PORT_EMPTY)
			h->nports = p + 1;
	h->pi = h->nports == 32 ? 0xFFFFFFFFu : (1u << h->nports) - 1;
	pthread_mutex_lock(&h->lock);
	reset_locked(h);
	pthread_mutex_unlock(&h->lock);
	if (pthread_create(&h->thread, NULL, io_main, h) != 0) {
		log_error("%s: ahci: cannot start its I/O thread", h->owner);
		return -1;
	}
	h->thread_started = true;
	return 0;
}

void ahci_free(struct ahci *h)
{
	if (!h)
		return;
	if (h->thread_started) {
		pthread_mutex_lock(&h->lock);
		h->stop = true;
		pthread_cond_broadcast(&h->cond);
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->thread, NULL);
	}
	for (unsigned p = 0; p < AHCI_MAX_PORTS; p++) {
		ata_disk_free(h->ports[p].disk);
		atapi_cd_free(h->ports[p].cd);
		free(h->ports[p].iov);
	}
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

void ahci_reset(struct ahci *h)
{
	pthread_mutex_lock(&h->lock);
	reset_locked(h);
	pthread_mutex_unlock(&h->lock);
}

void ahci_set_running(struct ahci *h, bool running)
{
	pthread_mutex_lock(&h->lock);
	h->paused = !running;
	if (!running)
		wait_all_idle(h);
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

void ahci_drain(struct ahci *h)
{
	pthread_mutex_lock(&h->lock);
	for (;;) {
		wait_all_idle(h);
		if (pick_port(h) < 0)
			break;
		pthread_cond_wait(&h->cond, &h->lock);
	}
	pthread_mutex_unlock(&h->lock);
}

struct atapi_cd *ahci_cd(struct ahci *h, unsigned port)
{
	return port < AHCI_MAX_PORTS ? h->ports[port].cd : NULL;
}

int ahci_cd_change(struct ahci *h, unsigned port, int fd, const char *path, bool force, char *err, size_t errlen)
{
	struct ahci_port *pt;
	int rc;

	if (port >= AHCI_MAX_PORTS || !h->ports[port].cd) {
		snprintf(err, errlen, "port %u has no CD drive", port);
		return -1;
	}
	pt = &h->ports[port];
	pthread_mutex_lock(&h->lock);
	wait_port_idle(h, pt);
	rc = atapi_cd_change(pt->cd, fd, path, force, err, errlen);
	if (rc == 0) {
		/* Asynchronous notification for guests that enabled it; others poll (GET EVENT STATUS). */
		pt->sntf |= 1;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/* ---- snapshots ---- */

static void save_port(struct ahci_port *pt, struct state_writer *w)
{
	state_put_u64(w, "kind", pt->kind);
	state_put_u64(w, "clb", pt->clb);
	state_put_u64(w, "fb", pt->fb);
	state_put_u64(w, "is", pt->is);
	state_put_u64(w, "ie", pt->ie);
	state_put_u64(w, "cmd", pt->cmd);
	state_put_u64(w, "tfd", pt->tfd);
	state_put_u64(w, "sig", pt->sig);
	state_put_u64(w, "ssts", pt->ssts);
	state_put_u64(w, "sctl", pt->sctl);
	state_put_u64(w, "serr", pt->serr);
	state_put_u64(w, "sact", pt->sact);
	state_put_u64(w, "ci", pt->ci);
	state_put_u64(w, "sntf", pt->sntf);
	state_put_bool(w, "halted", pt->halted);
	if (pt->disk) {
		ata_disk_flush(pt->disk);
		state_begin_map(w, "disk");
		ata_disk_save(pt->disk, w);
		state_end_map(w);
	}
	if (pt->cd) {
		state_begin_map(w, "cd");
		atapi_cd_save(pt->cd, w);
		state_end_map(w);
	}
}

void ahci_save(struct ahci *h, struct state_writer *w)
{
	char key[16];

	pthread_mutex_lock(&h->lock);
	wait_all_idle(h);
	state_put_u64(w, "ghc", h->ghc);
	state_put_u64(w, "is", h->is);
	for (unsigned p = 0; p < AHCI_MAX_PORTS; p++) {
		if (h->ports[p].kind == PORT_EMPTY && !h->ports[p].clb && !h->ports[p].fb && !h->ports[p].cmd)
			continue;
		snprintf(key, sizeof(key), "port%u", p);
		state_begin_map(w, key);
		save_port(&h->ports[p], w);
		state_end_map(w);
	}
	pthread_mutex_unlock(&h->lock);
}

static int get_u32(struct state_reader *r, const char *key, uint32_t *out)
{
	uint64_t v;

	if (state_get_u64(r, key, &v) < 0 || v > 0xFFFFFFFFu)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int restore_port_device(struct ahci *h, struct ahci_port *pt, struct state_reader *r)
{
	int rc = 0;

	if (pt->disk) {
		if (state_enter_map(r, "disk") < 0) {
			log_error("%s: snapshot lacks the state of a SATA disk", h->owner);
			return -1;
		}
		rc = ata_disk_restore(pt->disk, r);
		state_leave_map(r);
	}
	if (pt->cd) {
		if (state_enter_map(r, "cd") < 0) {
			log_error("%s: snapshot lacks the state of a CD drive", h->owner);
			return -1;
		}
		rc = atapi_cd_restore(pt->cd, r);
		state_leave_map(r);
	}
	return rc;
}

static int restore_port(struct ahci *h, unsigned p, struct state_reader *r)
{
	struct ahci_port *pt = &h->ports[p];
	uint64_t kind;
	int bad = 0;

	if (state_get_u64(r, "kind", &kind) < 0 || kind != pt->kind) {
		log_error("%s: snapshot has a different device on AHCI port %u", h->owner, p);
		return -1;
	}
	bad |= state_get_u64(r, "clb", &pt->clb) | state_get_u64(r, "fb", &pt->fb);
	bad |= get_u32(r, "is", &pt->is) | get_u32(r, "ie", &pt->ie) | get_u32(r, "cmd", &pt->cmd);
	bad |= get_u32(r, "tfd", &pt->tfd) | get_u32(r, "sig", &pt->sig) | get_u32(r, "ssts", &pt->ssts);
	bad |= get_u32(r, "sctl", &pt->sctl) | get_u32(r, "serr", &pt->serr) | get_u32(r, "sact", &pt->sact);
	bad |= get_u32(r, "ci", &pt->ci) | get_u32(r, "sntf", &pt->sntf) | state_get_bool(r, "halted", &pt->halted);
	if (bad) {
		log_error("%s: snapshot has an invalid state for AHCI port %u", h->owner, p);
		return -1;
	}
	pt->clb &= ~0x3FFull;
	pt->fb &= ~0xFFull;
	pt->is &= IS_VALID;
	pt->ie &= IS_VALID;
	/* As the guest's writes leave them: CR and FR follow ST and FRE, nothing issued on a stopped port. */
	pt->cmd = (pt->cmd & CMD_WRITABLE) | ((pt->cmd & CMD_ST) ? CMD_CR : 0) | ((pt->cmd & CMD_FRE) ? CMD_FR : 0);
	if (!(pt->cmd & CMD_ST))
		pt->ci = pt->sact = 0;
	return restore_port_device(h, pt, r);
}

int ahci_restore(struct ahci *h, struct state_reader *r)
{
	char key[16];
	uint32_t ghc, is;
	int rc = 0;

	if (get_u32(r, "ghc", &ghc) < 0 || get_u32(r, "is", &is) < 0) {
		log_error("%s: snapshot lacks the AHCI registers", h->owner);
		return -1;
	}
	pthread_mutex_lock(&h->lock);
	reset_locked(h);
	h->ghc = GHC_AE | (ghc & GHC_IE);
	h->is = is & h->pi;
	for (unsigned p = 0; p < AHCI_MAX_PORTS && rc == 0; p++) {
		snprintf(key, sizeof(key), "port%u", p);
		if (state_enter_map(r, key) < 0) {
			if (h->ports[p].kind != PORT_EMPTY) {
				log_error("%s: snapshot has no device on AHCI port %u", h->owner, p);
				rc = -1;
			}
			continue;
		}
		rc = restore_port(h, p, r);
		state_leave_map(r);
	}
	/* Commands issued before the snapshot run once the vCPUs do (io_main). */
	update_irq(h, false);
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	return rc;
}
