/*
 * xHCI host controller core (xHCI 1.0 register interface, version 0x100).
 *
 * Register map in the MMIO region (XHCI_MMIO_SIZE): capability registers
 * at 0, operational registers at XHCI_CAP_LEN (ports from +0x400),
 * extended capabilities (Supported Protocol: USB 2 ports 1-2, USB 3 ports
 * 3-4) at XHCI_XECP, runtime registers (MFINDEX, interrupter 0) at
 * XHCI_RTS, doorbells at XHCI_DB. 32-byte contexts, 64-bit addressing,
 * one interrupter, no scratchpad buffers, no streams, no isochrony.
 *
 * All guest work happens synchronously on the doorbell write: commands,
 * control transfers and interrupt IN transfers (those wait on the ring
 * until their device has a report; the device then calls notify()).
 *
 * The guest is not trusted: every TRB, context and buffer goes through
 * mem_gpa_to_hva() with its full length; a doorbell processes at most
 * RING_BUDGET TRBs and at most MAX_LINKS Link TRBs in a row; malformed TDs
 * complete with TRB Error and halt their endpoint, bad contexts give
 * Parameter or Context State Error, and an unreadable command ring or
 * event ring stops the controller with Host System Error.
 */
#include "usb/xhci.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/memory.h"
#include "snapshot/state.h"
#include "usb/usb.h"

/* ---- register bits ---- */

#define CMD_RUN (1u << 0)
#define CMD_HCRST (1u << 1)
#define CMD_INTE (1u << 2)
#define CMD_HSEE (1u << 3)
#define CMD_WMASK 0x00002F0Du  /* RUN INTE HSEE LHCRST(0) CSS CRS EWE EU3S */

#define STS_HCH (1u << 0)
#define STS_HSE (1u << 2)
#define STS_EINT (1u << 3)
#define STS_PCD (1u << 4)
#define STS_W1C (STS_HSE | STS_EINT | STS_PCD | (1u << 10))

#define CRCR_RCS (1u << 0)
#define CRCR_CS (1u << 1)
#define CRCR_CA (1u << 2)
#define CRCR_CRR (1u << 3)

#define PORT_CCS (1u << 0)
#define PORT_PED (1u << 1)
#define PORT_PR (1u << 4)
#define PORT_PLS_SHIFT 5
#define PORT_PLS_MASK (0xFu << PORT_PLS_SHIFT)
#define PORT_PP (1u << 9)
#define PORT_SPEED_SHIFT 10
#define PORT_LWS (1u << 16)
#define PORT_CSC (1u << 17)
#define PORT_PEC (1u << 18)
#define PORT_WRC (1u << 19)
#define PORT_PRC (1u << 21)
#define PORT_PLC (1u << 22)
#define PORT_CHANGE (0x7Fu << 17)
#define PORT_WAKE (7u << 25)  /* WCE WDE WOE */
#define PORT_PIC (3u << 14)
#define PORT_WPR (1u << 31)

#define PLS_U0 0
#define PLS_U3 3
#define PLS_RXDETECT 5
#define PLS_POLLING 7
#define PLS_RESUME 15

#define IMAN_IP (1u << 0)
#define IMAN_IE (1u << 1)
#define ERDP_EHB (1ull << 3)

/* ---- TRBs ---- */

struct trb {
	uint64_t param;
	uint32_t status, control;
};

#define TRB_C (1u << 0)
#define TRB_TC (1u << 1)   /* Link: toggle cycle */
#define TRB_ISP (1u << 2)
#define TRB_CH (1u << 4)
#define TRB_IOC (1u << 5)
#define TRB_IDT (1u << 6)
#define TRB_BSR (1u << 9)  /* Address Device: block SET_ADDRESS */
#define TRB_DC (1u << 9)   /* Configure Endpoint: deconfigure */
#define TRB_TYPE(t) (((t)->control >> 10) & 0x3f)
#define TRB_SLOT(t) ((t)->control >> 24)
#define TRB_EP(t) (((t)->control >> 16) & 0x1f)
#define TRB_LEN(t) ((t)->status & 0x1ffff)

enum {
	TRB_NORMAL = 1, TRB_SETUP = 2, TRB_DATA = 3, TRB_STATUS = 4, TRB_LINK = 6, TRB_EVENT_DATA = 7,
	TRB_NOOP = 8, TRB_ENABLE_SLOT = 9, TRB_DISABLE_SLOT = 10, TRB_ADDRESS_DEVICE = 11,
	TRB_CONFIGURE_EP = 12, TRB_EVALUATE_CTX = 13, TRB_RESET_EP = 14, TRB_STOP_EP = 15,
	TRB_SET_TR_DEQ = 16, TRB_RESET_DEVICE = 17, TRB_NOOP_CMD = 23,
	TRB_EV_TRANSFER = 32, TRB_EV_CMD = 33, TRB_EV_PORT = 34, TRB_EV_HOST = 37,
};

enum {
	CC_SUCCESS = 1, CC_TRANSACTION = 4, CC_TRB = 5, CC_STALL = 6, CC_NO_SLOTS = 9,
	CC_SLOT_NOT_ENABLED = 11, CC_EP_NOT_ENABLED = 12, CC_SHORT = 13, CC_PARAMETER = 17,
	CC_CONTEXT_STATE = 19, CC_EVENT_RING_FULL = 21, CC_CMD_RING_STOPPED = 24,
};

/* Slot and endpoint states as in the contexts. */
enum { SLOT_DISABLED = 0, SLOT_DEFAULT = 1, SLOT_ADDRESSED = 2, SLOT_CONFIGURED = 3 };
enum { EP_DISABLED = 0, EP_RUNNING = 1, EP_HALTED = 2, EP_STOPPED = 3, EP_ERROR = 4 };
enum { EPT_CONTROL = 4, EPT_INT_IN = 7 };

#define CTX_SIZE 32
#define NCTX 32           /* slot context + 31 endpoint contexts */
#define RING_BUDGET 256   /* TRBs one doorbell may process */
#define MAX_LINKS 16      /* Link TRBs in a row before the ring counts as looping */
#define TD_MAX 64         /* TRBs in one TD */
#define ERST_MAX_LOG2 4   /* up to 16 event ring segments */

struct ring {
	uint64_t deq;
	bool ccs;
};

struct slot {
	bool enabled;
	uint32_t ctx[NCTX][8]; /* our copy of the output device context */
	struct ring ring[NCTX]; /* transfer rings by DCI */
};

struct port {
	uint32_t sc;
	struct usb_device *dev;
};

struct td {
	unsigned n;
	struct trb t[TD_MAX];
	uint64_t at[TD_MAX];
	struct ring end;   /* ring position after the TD */
};

struct xhci {
	struct guest_memory *mem;
	pthread_mutex_t *lock;
	xhci_irq_fn irq;
	void *opaque;

	uint32_t usbcmd, usbsts, dnctrl, config;
	uint32_t crcr_lo, crcr_hi;
	bool crr;
	struct ring cmd;
	uint64_t dcbaap;
	struct port port[XHCI_PORTS];
	struct slot slot[XHCI_SLOTS + 1];

	/* interrupter 0 */
	uint32_t iman, imod, erstsz;
	uint64_t erstba, erdp;
	/* event ring producer */
	uint32_t er_seg, er_idx;
	bool er_pcs, er_full;
	uint64_t er_base;
	uint32_t er_size;   /* 0: no usable segment */

	/* Scratch space of the transfer path (too large for the stack). */
	struct td td;
	uint8_t ctrl_buf[USB_CTRL_MAX];
};

/* ---- guest memory ---- */

static bool mem_read(struct xhci *x, uint64_t gpa, void *buf, uint64_t len)
{
	void *p = mem_gpa_to_hva(x->mem, gpa, len);

	if (!p)
		return false;
	memcpy(buf, p, len);
	return true;
}

static bool mem_write(struct xhci *x, uint64_t gpa, const void *buf, uint64_t len)
{
	void *p = mem_gpa_to_hva(x->mem, gpa, len);

	if (!p)
		return false;
	memcpy(p, buf, len);
	mem_mark_dirty(x->mem, p, len);
	return true;
}

static bool read_trb(struct xhci *x, uint64_t gpa, struct trb *t)
{
	uint8_t b[16];

	if ((gpa & 15) || !mem_read(x, gpa, b, 16))
		return false;
	memcpy(&t->param, b, 8);
	memcpy(&t->status, b + 8, 4);
	memcpy(&t->control, b + 12, 4);
	return true;
}

static bool write_trb(struct xhci *x, uint64_t gpa, const struct trb *t)
{
	uint8_t b[16];

	memcpy(b, &t->param, 8);
	memcpy(b + 8, &t->status, 4);
	memcpy(b + 12, &t->control, 4);
	return mem_write(x, gpa, b, 16);
}

/* ---- interrupts and events ---- */

bool xhci_irq_level(struct xhci *x)
{
	return (x->iman & IMAN_IP) && (x->iman & IMAN_IE) && (x->usbcmd & CMD_INTE);
}

/* Sets IP and asks for an interrupt, unless one is already pending. */
/*
 * Sets IP (and EHB) and asks for an interrupt, unless one is pending or the
 * driver is still handling the last one (EHB; writing ERDP re-checks).
 * IP clears itself once an MSI-X message went out (xHCI 5.5.2.1).
 */
static void interrupt(struct xhci *x)
{
	x->usbsts |= STS_EINT;
	if ((x->iman & IMAN_IP) || (x->erdp & ERDP_EHB))
		return;
	x->iman |= IMAN_IP;
	x->erdp |= ERDP_EHB;
	if (xhci_irq_level(x) && x->irq(x->opaque, true))
		x->iman &= ~IMAN_IP;
}

/* A DMA failure: Host System Error halts the controller (xHCI 4.10.2.6). */
static void host_error(struct xhci *x, const char *why)
{
	if (!(x->usbsts & STS_HSE))
		log_warn("xhci: host system error: %s", why);
	x->usbsts |= STS_HSE | STS_HCH;
	x->usbcmd &= ~CMD_RUN;
	x->crr = false;
	if (x->usbcmd & CMD_HSEE)
		(void)x->irq(x->opaque, true);
}

/* Base and size of event ring segment `seg` from the ERST; false when unusable. */
static bool erst_entry(struct xhci *x, uint32_t seg, uint64_t *base, uint32_t *size)
{
	uint8_t e[16];

	if (seg >= x->erstsz || !mem_read(x, x->erstba + 16ull * seg, e, 16))
		return false;
	memcpy(base, e, 8);
	memcpy(size, e + 8, 4);
	*size &= 0xffff;
	*base &= ~63ull;
	return *size >= 1 && *size <= 4096 && mem_gpa_to_hva(x->mem, *base, 16ull * *size);
}

static void er_load(struct xhci *x)
{
	if (!erst_entry(x, x->er_seg, &x->er_base, &x->er_size))
		x->er_size = 0;
}

/* Restarts the producer at segment 0 (ERSTBA written). */
static void er_init(struct xhci *x)
{
	x->er_seg = x->er_idx = 0;
	x->er_pcs = true;
	x->er_full = false;
	er_load(x);
}

static uint64_t er_enqueue_addr(struct xhci *x)
{
	return x->er_base + 16ull * x->er_idx;
}

/*
 * Where the producer goes after one more event: the next slot of this
 * segment, or the start of the next segment. The next segment's ERST entry
 * is read once, here: the ring-full check and the move both use this copy
 * (the guest may rewrite the entry meanwhile, even with the event itself).
 */
struct er_step {
	bool new_segment;
	uint64_t base; /* of the next segment */
	uint32_t size;
};

/* false when the next segment is not usable. */
static bool er_next(struct xhci *x, struct er_step *st)
{
	st->new_segment = x->er_idx + 1 >= x->er_size;
	if (!st->new_segment)
		return true;
	return erst_entry(x, x->er_seg + 1 < x->erstsz ? x->er_seg + 1 : 0, &st->base, &st->size);
}

static uint64_t er_step_addr(struct xhci *x, const struct er_step *st)
{
	return st->new_segment ? st->base : er_enqueue_addr(x) + 16;
}

static void er_advance(struct xhci *x, const struct er_step *st)
{
	if (!st->new_segment) {
		x->er_idx++;
		return;
	}
	x->er_idx = 0;
	if (++x->er_seg >= x->erstsz) {
		x->er_seg = 0;
		x->er_pcs = !x->er_pcs;
	}
	x->er_base = st->base;
	x->er_size = st->size;
}

static void post_event(struct xhci *x, uint64_t param, uint32_t status, uint32_t control)
{
	struct trb t = { .param = param, .status = status, .control = control };
	struct er_step step;

	if (!(x->usbcmd & CMD_RUN) || x->er_full)
		return;
	if (!x->er_size) {
		host_error(x, "event ring not usable");
		return;
	}
	if (!er_next(x, &step)) {
		host_error(x, "next event ring segment not usable");
		return;
	}
	if (er_step_addr(x, &step) == (x->erdp & ~15ull)) {
		/* One slot left: it tells the guest the ring filled up; later events are lost. */
		t = (struct trb){ .status = (uint32_t)CC_EVENT_RING_FULL << 24, .control = TRB_EV_HOST << 10 };
		x->er_full = true;
	}
	t.control = (t.control & ~TRB_C) | (x->er_pcs ? TRB_C : 0);
	if (!write_trb(x, er_enqueue_addr(x), &t)) {
		host_error(x, "event ring write failed");
		return;
	}
	er_advance(x, &step);
	interrupt(x);
}

static void cmd_event(struct xhci *x, uint64_t at, unsigned cc, unsigned slot)
{
	post_event(x, at, (uint32_t)cc << 24, TRB_EV_CMD << 10 | (uint32_t)slot << 24);
}

static void transfer_event(struct xhci *x, uint64_t at, unsigned cc, uint32_t len, unsigned slot,
			   unsigned dci, bool ed)
{
	post_event(x, at, (uint32_t)cc << 24 | (len & 0xffffff),
		   TRB_EV_TRANSFER << 10 | (ed ? 1u << 2 : 0) | dci << 16 | (uint32_t)slot << 24);
}

static void port_event(struct xhci *x, unsigned i)
{
	x->usbsts |= STS_PCD;
	post_event(x, (uint64_t)(i + 1) << 24, (uint32_t)CC_SUCCESS << 24, TRB_EV_PORT << 10);
}

/* ---- rings ---- */

enum { R_OK, R_EMPTY, R_BAD };

/*
 * The TRB at the ring's dequeue pointer, following Link TRBs (which moves
 * the pointer past them). R_EMPTY when the guest does not own it yet,
 * R_BAD for an unreadable address or a loop of Link TRBs.
 */
static int ring_peek(struct xhci *x, struct ring *r, struct trb *t, uint64_t *at)
{
	for (unsigned links = 0; links <= MAX_LINKS; links++) {
		if (!read_trb(x, r->deq, t))
			return R_BAD;
		if (!!(t->control & TRB_C) != r->ccs)
			return R_EMPTY;
		if (TRB_TYPE(t) != TRB_LINK) {
			*at = r->deq;
			return R_OK;
		}
		r->deq = t->param & ~15ull;
		if (t->control & TRB_TC)
			r->ccs = !r->ccs;
	}
	return R_BAD;
}

/*
 * Collects one TD without consuming it: a chain of TRBs ending with one
 * whose CH bit is clear; for control TDs, from the Setup TRB through the
 * Status TRB and whatever is chained to it.
 */
static int td_scan(struct xhci *x, const struct ring *ring, bool control, struct td *td, uint64_t *bad)
{
	struct ring c = *ring;
	bool status_seen = !control;
	int rc;

	td->n = 0;
	for (;;) {
		struct trb *t = &td->t[td->n];
		if (td->n == TD_MAX) {
			*bad = c.deq;
			return R_BAD;
		}
		rc = ring_peek(x, &c, t, &td->at[td->n]);
		if (rc != R_OK) {
			*bad = c.deq;
			return rc;
		}
		c.deq += 16;
		td->n++;
		if (control && TRB_TYPE(t) == TRB_STATUS)
			status_seen = true;
		if (status_seen && !(t->control & TRB_CH))
			break;
	}
	td->end = c;
	return R_OK;
}

/* ---- contexts ---- */

static uint32_t ep_state(struct slot *s, unsigned dci)
{
	return s->ctx[dci][0] & 7;
}

static void set_ep_state(struct slot *s, unsigned dci, uint32_t st)
{
	s->ctx[dci][0] = (s->ctx[dci][0] & ~7u) | st;
}

static uint32_t slot_state(struct slot *s)
{
	return s->ctx[0][3] >> 27;
}

static void set_slot_state(struct slot *s, uint32_t st, uint32_t addr)
{
	s->ctx[0][3] = st << 27 | (addr & 0xff);
}

static unsigned slot_port(struct slot *s)
{
	return (s->ctx[0][1] >> 16) & 0xff;
}

static struct usb_device *slot_dev(struct xhci *x, struct slot *s)
{
	unsigned p = slot_port(s);

	return p >= 1 && p <= XHCI_PORTS ? x->port[p - 1].dev : NULL;
}

/* Address of the slot's output device context from the DCBAA; 0 when unusable. */
static uint64_t out_ctx_addr(struct xhci *x, unsigned sid)
{
	uint64_t a;

	if (!mem_read(x, x->dcbaap + 8ull * sid, &a, 8))
		return 0;
	a &= ~63ull;
	return mem_gpa_to_hva(x->mem, a, NCTX * CTX_SIZE) ? a : 0;
}

/* Writes our copy of the device context (with current dequeue pointers) to the guest's output context. */
static void ctx_flush(struct xhci *x, unsigned sid)
{
	struct slot *s = &x->slot[sid];
	uint64_t a = out_ctx_addr(x, sid);

	for (unsigned i = 1; i < NCTX; i++) {
		if (ep_state(s, i) == EP_DISABLED)
			continue;
		s->ctx[i][2] = (uint32_t)(s->ring[i].deq & ~15ull) | s->ring[i].ccs;
		s->ctx[i][3] = (uint32_t)(s->ring[i].deq >> 32);
	}
	if (a)
		mem_write(x, a, s->ctx, sizeof(s->ctx));
}

/* The input context: input control context + slot + 31 endpoints. */
struct input_ctx {
	uint32_t icc[8];
	uint32_t ctx[NCTX][8];
};

static bool read_input_ctx(struct xhci *x, const struct trb *t, struct input_ctx *in)
{
	uint64_t a = t->param & ~15ull;

	return mem_read(x, a, in, sizeof(*in));
}

/* The slot a command names: enabled and within MaxSlotsEn, else NULL. */
static struct slot *cmd_slot(struct xhci *x, const struct trb *t)
{
	unsigned sid = TRB_SLOT(t);

	if (sid < 1 || sid > XHCI_SLOTS || sid > (x->config & 0xff) || !x->slot[sid].enabled)
		return NULL;
	return &x->slot[sid];
}

static bool ring_ptr_ok(struct xhci *x, uint64_t deq)
{
	return (deq & ~15ull) != 0 && mem_gpa_to_hva(x->mem, deq & ~15ull, 16);
}

/* Takes endpoint context `ctx` for DCI `dci` (validated by the caller), running. */
static void ep_enable(struct slot *s, unsigned dci, const uint32_t *ctx)
{
	uint64_t deq = ctx[2] | (uint64_t)ctx[3] << 32;

	memcpy(s->ctx[dci], ctx, CTX_SIZE);
	set_ep_state(s, dci, EP_RUNNING);
	s->ring[dci].deq = deq & ~15ull;
	s->ring[dci].ccs = deq & 1;
}

static void ep_disable(struct slot *s, unsigned dci)
{
	memset(s->ctx[dci], 0, CTX_SIZE);
	s->ring[dci] = (struct ring){ 0 };
}

static bool ep_ctx_ok(struct xhci *x, const uint32_t *ctx, bool ep0)
{
	unsigned type = (ctx[1] >> 3) & 7, mps = ctx[1] >> 16;
	uint64_t deq = ctx[2] | (uint64_t)ctx[3] << 32;

	if (ep0 ? type != EPT_CONTROL : type == 0)
		return false;
	return mps != 0 && ring_ptr_ok(x, deq);
}

/* Context Entries = the highest enabled DCI. */
static void update_ctx_entries(struct slot *s)
{
	unsigned last = 1;

	for (unsigned i = 2; i < NCTX; i++)
		if (ep_state(s, i) != EP_DISABLED)
			last = i;
	s->ctx[0][0] = (s->ctx[0][0] & ~(0x1fu << 27)) | last << 27;
}

/* ---- commands ---- */

static unsigned cmd_enable_slot(struct xhci *x, unsigned *sid)
{
	for (unsigned i = 1; i <= XHCI_SLOTS && i <= (x->config & 0xff); i++) {
		if (!x->slot[i].enabled) {
			memset(&x->slot[i], 0, sizeof(x->slot[i]));
			x->slot[i].enabled = true;
			*sid = i;
			return CC_SUCCESS;
		}
	}
	return CC_NO_SLOTS;
}

static unsigned cmd_disable_slot(struct xhci *x, const struct trb *t)
{
	struct slot *s = cmd_slot(x, t);

	if (!s)
		return CC_SLOT_NOT_ENABLED;
	memset(s, 0, sizeof(*s));
	return CC_SUCCESS;
}

static unsigned cmd_address_device(struct xhci *x, const struct trb *t)
{
	struct slot *s = cmd_slot(x, t);
	struct input_ctx in;
	bool bsr = t->control & TRB_BSR;
	unsigned port, sid = TRB_SLOT(t);

	if (!s)
		return CC_SLOT_NOT_ENABLED;
	if (slot_state(s) >= SLOT_ADDRESSED || (bsr && slot_state(s) == SLOT_DEFAULT))
		return CC_CONTEXT_STATE;
	if (!read_input_ctx(x, t, &in) || (in.icc[1] & 3) != 3 || !ep_ctx_ok(x, in.ctx[1], true) ||
	    !out_ctx_addr(x, sid))
		return CC_PARAMETER;
	port = (in.ctx[0][1] >> 16) & 0xff;
	if (port < 1 || port > XHCI_PORTS)
		return CC_PARAMETER;
	if (!x->port[port - 1].dev || !(x->port[port - 1].sc & PORT_PED))
		return CC_TRANSACTION;
	memset(s->ctx, 0, sizeof(s->ctx));
	memset(s->ring, 0, sizeof(s->ring));
	memcpy(s->ctx[0], in.ctx[0], CTX_SIZE);
	s->ctx[0][0] = (s->ctx[0][0] & ~(0xfu << 20)) | x->port[port - 1].dev->speed << 20;
	set_slot_state(s, bsr ? SLOT_DEFAULT : SLOT_ADDRESSED, bsr ? 0 : sid);
	ep_enable(s, 1, in.ctx[1]);
	update_ctx_entries(s);
	ctx_flush(x, sid);
	return CC_SUCCESS;
}

static void deconfigure(struct slot *s)
{
	for (unsigned i = 2; i < NCTX; i++)
		ep_disable(s, i);
}

static unsigned cmd_configure_ep(struct xhci *x, const struct trb *t)
{
	struct slot *s = cmd_slot(x, t);
	struct input_ctx in;
	uint32_t drop, add;

	if (!s)
		return CC_SLOT_NOT_ENABLED;
	if (slot_state(s) != SLOT_ADDRESSED && slot_state(s) != SLOT_CONFIGURED)
		return CC_CONTEXT_STATE;
	if (t->control & TRB_DC) {
		deconfigure(s);
	} else {
		if (!read_input_ctx(x, t, &in))
			return CC_PARAMETER;
		drop = in.icc[0] & ~3u;
		add = in.icc[1] & ~3u;
		for (unsigned i = 2; i < NCTX; i++)
			if ((add & (1u << i)) && !ep_ctx_ok(x, in.ctx[i], false))
				return CC_PARAMETER;
		for (unsigned i = 2; i < NCTX; i++) {
			if (drop & (1u << i))
				ep_disable(s, i);
			if (add & (1u << i))
				ep_enable(s, i, in.ctx[i]);
		}
	}
	update_ctx_entries(s);
	set_slot_state(s, (s->ctx[0][0] >> 27) > 1 ? SLOT_CONFIGURED : SLOT_ADDRESSED, s->ctx[0][3] & 0xff);
	ctx_flush(x, TRB_SLOT(t));
	return CC_SUCCESS;
}

static unsigned cmd_evaluate_ctx(struct xhci *x, const struct trb *t)
{
	struct slot *s = cmd_slot(x, t);
	struct input_ctx in;

	if (!s)
		return CC_SLOT_NOT_ENABLED;
	if (slot_state(s) == SLOT_DISABLED)
		return CC_CONTEXT_STATE;
	if (!read_input_ctx(x, t, &in))
		return CC_PARAMETER;
	if (in.icc[1] & 1) {
		/* Max Exit Latency and Interrupter Target only. */
		s->ctx[0][1] = (s->ctx[0][1] & ~0xffffu) | (in.ctx[0][1] & 0xffff);
		s->ctx[0][2] = (s->ctx[0][2] & 0x3fffff) | (in.ctx[0][2] & ~0x3fffffu);
	}
	if (in.icc[1] & 2) {
		if (!(in.ctx[1][1] >> 16))
			return CC_PARAMETER;
		s->ctx[1][1] = (s->ctx[1][1] & 0xffff) | (in.ctx[1][1] & 0xffff0000u);
	}
	ctx_flush(x, TRB_SLOT(t));
	return CC_SUCCESS;
}

/* The endpoint an endpoint command names; *cc set when there is none. */
static struct slot *cmd_ep(struct xhci *x, const struct trb *t, unsigned *dci, unsigned *cc)
{
	struct slot *s = cmd_slot(x, t);

	*dci = TRB_EP(t);
	if (!s) {
		*cc = CC_SLOT_NOT_ENABLED;
		return NULL;
	}
	if (*dci < 1 || ep_state(s, *dci) == EP_DISABLED) {
		*cc = CC_EP_NOT_ENABLED;
		return NULL;
	}
	return s;
}

/* Reset Endpoint (halted -> stopped), Stop Endpoint (running -> stopped). */
static unsigned cmd_ep_state(struct xhci *x, const struct trb *t, uint32_t from)
{
	unsigned dci, cc;
	struct slot *s = cmd_ep(x, t, &dci, &cc);

	if (!s)
		return cc;
	if (ep_state(s, dci) != from && !(from == EP_RUNNING && ep_state(s, dci) == EP_STOPPED))
		return CC_CONTEXT_STATE;
	set_ep_state(s, dci, EP_STOPPED);
	ctx_flush(x, TRB_SLOT(t));
	return CC_SUCCESS;
}

static unsigned cmd_set_tr_deq(struct xhci *x, const struct trb *t)
{
	unsigned dci, cc;
	struct slot *s = cmd_ep(x, t, &dci, &cc);

	if (!s)
		return cc;
	if (ep_state(s, dci) != EP_STOPPED && ep_state(s, dci) != EP_ERROR)
		return CC_CONTEXT_STATE;
	if (!ring_ptr_ok(x, t->param))
		return CC_PARAMETER;
	s->ring[dci].deq = t->param & ~15ull;
	s->ring[dci].ccs = t->param & 1;
	ctx_flush(x, TRB_SLOT(t));
	return CC_SUCCESS;
}

static unsigned cmd_reset_device(struct xhci *x, const struct trb *t)
{
	struct slot *s = cmd_slot(x, t);
	struct usb_device *d;

	if (!s)
		return CC_SLOT_NOT_ENABLED;
	if (slot_state(s) != SLOT_ADDRESSED && slot_state(s) != SLOT_CONFIGURED)
		return CC_CONTEXT_STATE;
	deconfigure(s);
	update_ctx_entries(s);
	set_slot_state(s, SLOT_DEFAULT, 0);
	if ((d = slot_dev(x, s)))
		d->reset(d);
	ctx_flush(x, TRB_SLOT(t));
	return CC_SUCCESS;
}

static void run_command(struct xhci *x, const struct trb *t, uint64_t at)
{
	unsigned cc, sid = TRB_SLOT(t);

	switch (TRB_TYPE(t)) {
	case TRB_ENABLE_SLOT: sid = 0; cc = cmd_enable_slot(x, &sid); break;
	case TRB_DISABLE_SLOT: cc = cmd_disable_slot(x, t); break;
	case TRB_ADDRESS_DEVICE: cc = cmd_address_device(x, t); break;
	case TRB_CONFIGURE_EP: cc = cmd_configure_ep(x, t); break;
	case TRB_EVALUATE_CTX: cc = cmd_evaluate_ctx(x, t); break;
	case TRB_RESET_EP: cc = cmd_ep_state(x, t, EP_HALTED); break;
	case TRB_STOP_EP: cc = cmd_ep_state(x, t, EP_RUNNING); break;
	case TRB_SET_TR_DEQ: cc = cmd_set_tr_deq(x, t); break;
	case TRB_RESET_DEVICE: cc = cmd_reset_device(x, t); break;
	case TRB_NOOP_CMD: sid = 0; cc = CC_SUCCESS; break;
	default: sid = 0; cc = CC_TRB; break;
	}
	cmd_event(x, at, cc, sid > XHCI_SLOTS ? 0 : sid);
}

static void process_commands(struct xhci *x)
{
	struct trb t;
	uint64_t at;

	x->crr = true;
	for (unsigned n = 0; n < RING_BUDGET && (x->usbcmd & CMD_RUN); n++) {
		int rc = ring_peek(x, &x->cmd, &t, &at);
		if (rc == R_EMPTY)
			return;
		if (rc == R_BAD) {
			host_error(x, "command ring unreadable or looping");
			return;
		}
		x->cmd.deq += 16;
		run_command(x, &t, at);
	}
}

/* ---- transfers ---- */

struct xfer {
	unsigned sid, dci;
	uint8_t *data;    /* IN: what the device returned; OUT: gathered here */
	uint32_t len;     /* IN: bytes available; OUT: capacity */
	uint32_t done;    /* bytes moved so far */
	bool in, events;  /* direction; post events (false for the OUT gathering pass) */
	bool shortp;      /* a short packet ended the data */
	uint32_t edtla;   /* bytes since the last Event Data TRB */
};

/* One Normal/Data TRB: moves bytes, posts its event; false on a bad buffer (TRB Error). */
static bool xfer_data_trb(struct xhci *x, struct xfer *xf, const struct trb *t, uint64_t at)
{
	uint32_t want = TRB_LEN(t), n = xf->len - xf->done;
	bool ok = true;

	if (xf->shortp)
		return true;
	if (n > want)
		n = want;
	if (xf->in && (t->control & TRB_IDT))
		return false;
	if (n && xf->data) {
		if (!xf->in && (t->control & TRB_IDT))
			ok = n <= 8 && (memcpy(xf->data + xf->done, &t->param, n), true);
		else if (xf->in)
			ok = mem_write(x, t->param, xf->data + xf->done, n);
		else
			ok = mem_read(x, t->param, xf->data + xf->done, n);
	}
	if (!ok)
		return false;
	xf->done += n;
	xf->edtla += n;
	if (n < want && xf->in) {
		xf->shortp = true;
		if (xf->events && (t->control & (TRB_ISP | TRB_IOC)))
			transfer_event(x, at, CC_SHORT, want - n, xf->sid, xf->dci, false);
	} else if (xf->events && (t->control & TRB_IOC)) {
		transfer_event(x, at, CC_SUCCESS, want - n, xf->sid, xf->dci, false);
	}
	return true;
}

/* Runs TRBs [first, td->n) of a TD; returns the index of a bad TRB, or -1 when all went well. */
static int xfer_run(struct xhci *x, struct xfer *xf, const struct td *td, unsigned first)
{
	for (unsigned i = first; i < td->n; i++) {
		const struct trb *t = &td->t[i];
		switch (TRB_TYPE(t)) {
		case TRB_NORMAL:
		case TRB_DATA:
			if (!xfer_data_trb(x, xf, t, td->at[i]))
				return (int)i;
			break;
		case TRB_EVENT_DATA:
			if (xf->events && (t->control & TRB_IOC))
				transfer_event(x, t->param, xf->shortp ? CC_SHORT : CC_SUCCESS, xf->edtla, xf->sid,
					       xf->dci, true);
			xf->edtla = 0;
			break;
		case TRB_STATUS:
		case TRB_NOOP:
			if (xf->events && (t->control & TRB_IOC))
				transfer_event(x, td->at[i], CC_SUCCESS, 0, xf->sid, xf->dci, false);
			break;
		default:
			return (int)i;
		}
	}
	return -1;
}

/* Halts an endpoint after a failed TD, reporting `cc` for the TRB at `at`. */
static void ep_halt(struct xhci *x, unsigned sid, unsigned dci, uint64_t at, unsigned cc, uint32_t len)
{
	set_ep_state(&x->slot[sid], dci, EP_HALTED);
	transfer_event(x, at, cc, len, sid, dci, false);
	ctx_flush(x, sid);
}

static uint32_t td_data_len(const struct td *td)
{
	uint32_t n = 0;

	for (unsigned i = 0; i < td->n; i++)
		if (TRB_TYPE(&td->t[i]) == TRB_NORMAL || TRB_TYPE(&td->t[i]) == TRB_DATA)
			n += TRB_LEN(&td->t[i]);
	return n;
}

/* Index of the first Data TRB, else of the Status TRB: where a stall is reported. */
static unsigned stall_trb(const struct td *td)
{
	for (unsigned i = 1; i < td->n; i++)
		if (TRB_TYPE(&td->t[i]) == TRB_DATA || TRB_TYPE(&td->t[i]) == TRB_STATUS)
			return i;
	return td->n - 1;
}

static void setup_packet(const struct trb *t, struct usb_setup *s)
{
	s->type = (uint8_t)t->param;
	s->request = (uint8_t)(t->param >> 8);
	s->value = (uint16_t)(t->param >> 16);
	s->index = (uint16_t)(t->param >> 32);
	s->length = (uint16_t)(t->param >> 48);
}

/* One control TD; false when the endpoint halted. */
static bool control_td(struct xhci *x, struct usb_device *d, struct xfer *xf, const struct td *td)
{
	uint8_t *buf = x->ctrl_buf;
	struct usb_setup s;
	unsigned len = 0;
	int bad = 0;

	if (TRB_TYPE(&td->t[0]) != TRB_SETUP || !(td->t[0].control & TRB_IDT) || TRB_LEN(&td->t[0]) != 8) {
		ep_halt(x, xf->sid, xf->dci, td->at[0], CC_TRB, 0);
		return false;
	}
	setup_packet(&td->t[0], &s);
	xf->in = s.type & USB_DIR_IN;
	xf->data = buf;
	if (!xf->in) {
		/* Gather the OUT data stage first: the device sees the whole request at once. */
		xf->len = s.length <= USB_CTRL_MAX ? s.length : 0;
		xf->events = false;
		if (s.length > USB_CTRL_MAX || (bad = xfer_run(x, xf, td, 1)) >= 0) {
			ep_halt(x, xf->sid, xf->dci, td->at[s.length > USB_CTRL_MAX ? 0 : bad], CC_TRB, 0);
			return false;
		}
		len = xf->done;
		/* The event pass moves nothing (data NULL) but counts what was sent, for residues. */
		*xf = (struct xfer){ .sid = xf->sid, .dci = xf->dci, .events = true, .len = len };
	}
	/*
	 * The device has taken the setup packet: its stage is complete, and a
	 * Setup TRB with IOC gets its own event. UEFI's XhciDxe asks for one
	 * and counts a control transfer done only when it has seen it.
	 */
	if (td->t[0].control & TRB_IOC)
		transfer_event(x, td->at[0], CC_SUCCESS, 0, xf->sid, xf->dci, false);
	if (d->control(d, &s, buf, &len) != USB_OK) {
		unsigned i = stall_trb(td);
		ep_halt(x, xf->sid, xf->dci, td->at[i], CC_STALL, TRB_TYPE(&td->t[i]) == TRB_DATA ? TRB_LEN(&td->t[i]) : 0);
		return false;
	}
	if (xf->in) {
		uint32_t cap = s.length < td_data_len(td) ? s.length : td_data_len(td);
		xf->len = len < cap ? len : cap;
		xf->events = true;
	}
	if ((bad = xfer_run(x, xf, td, 1)) >= 0) {
		ep_halt(x, xf->sid, xf->dci, td->at[bad], CC_TRB, 0);
		return false;
	}
	return true;
}

/* One interrupt IN TD, if the device has a report; false when nothing was done. */
static bool int_in_td(struct xhci *x, struct usb_device *d, struct xfer *xf, const struct td *td)
{
	uint8_t buf[64];
	uint32_t cap = td_data_len(td);
	int bad;

	xf->data = buf;
	xf->in = xf->events = true;
	/* A TD without data buffers completes at once: no report fits, none is taken. */
	xf->len = cap ? d->interrupt_in(d, xf->dci / 2, buf, cap < sizeof(buf) ? cap : sizeof(buf)) : 0;
	if (!xf->len && cap)
		return false;
	if ((bad = xfer_run(x, xf, td, 0)) >= 0) {
		ep_halt(x, xf->sid, xf->dci, td->at[bad], CC_TRB, 0);
		return false;
	}
	return true;
}

/* Works through the endpoint's ring until it is empty, waits for data, or halts. */
static void ep_process(struct xhci *x, unsigned sid, unsigned dci)
{
	struct slot *s = &x->slot[sid];
	struct usb_device *d = slot_dev(x, s);
	unsigned type = (s->ctx[dci][1] >> 3) & 7, budget = RING_BUDGET;
	struct td *td = &x->td;
	uint64_t bad;
	int rc;

	if (!d || (dci != 1 && type != EPT_INT_IN))
		return;
	while (ep_state(s, dci) == EP_RUNNING && (x->usbcmd & CMD_RUN) && budget) {
		struct xfer xf = { .sid = sid, .dci = dci };
		rc = td_scan(x, &s->ring[dci], dci == 1, td, &bad);
		if (rc == R_EMPTY)
			break;
		if (rc == R_BAD) {
			ep_halt(x, sid, dci, bad, CC_TRB, 0);
			return;
		}
		budget = td->n < budget ? budget - td->n : 0;
		if (!(dci == 1 ? control_td(x, d, &xf, td) : int_in_td(x, d, &xf, td)))
			break;
		s->ring[dci] = td->end;
	}
	ctx_flush(x, sid);
}

static void ring_doorbell(struct xhci *x, unsigned db, uint32_t v)
{
	unsigned target = v & 0xff;
	struct slot *s;

	if (!(x->usbcmd & CMD_RUN))
		return;
	if (db == 0) {
		if (target == 0)
			process_commands(x);
		return;
	}
	if (db > XHCI_SLOTS || !x->slot[db].enabled || target < 1 || target >= NCTX)
		return;
	s = &x->slot[db];
	if (slot_state(s) == SLOT_DISABLED)
		return;
	/* A doorbell restarts a stopped endpoint (xHCI 4.6.9). */
	if (ep_state(s, target) == EP_STOPPED)
		set_ep_state(s, target, EP_RUNNING);
	ep_process(x, db, target);
}

/* A device has interrupt IN data: complete transfers waiting on its endpoints. */
static void device_notify(void *host, struct usb_device *d)
{
	struct xhci *x = host;

	for (unsigned sid = 1; sid <= XHCI_SLOTS; sid++) {
		struct slot *s = &x->slot[sid];
		if (!s->enabled || slot_dev(x, s) != d || slot_state(s) != SLOT_CONFIGURED)
			continue;
		for (unsigned dci = 3; dci < NCTX; dci += 2)
			if (ep_state(s, dci) == EP_RUNNING)
				ep_process(x, sid, dci);
	}
}

/* ---- ports ---- */

static bool port_is_usb3(unsigned i)
{
	return i >= XHCI_USB2_PORTS;
}

/* The port as after power-on or HCRST: powered, connected if a device is plugged in. */
static void port_power_on(struct xhci *x, unsigned i)
{
	struct port *p = &x->port[i];

	p->sc = PORT_PP;
	if (p->dev)
		p->sc |= PORT_CCS | PORT_CSC | PLS_POLLING << PORT_PLS_SHIFT | p->dev->speed << PORT_SPEED_SHIFT;
	else
		p->sc |= PLS_RXDETECT << PORT_PLS_SHIFT;
}

/* Port reset completes at once: enabled in U0 with PRC (and WRC for a warm reset). */
static void port_reset(struct xhci *x, unsigned i, bool warm)
{
	struct port *p = &x->port[i];

	p->sc &= ~(PORT_PR | PORT_WPR | PORT_PLS_MASK);
	if (p->dev) {
		p->dev->reset(p->dev);
		p->sc |= PORT_PED | PLS_U0 << PORT_PLS_SHIFT;
	} else {
		p->sc |= PLS_RXDETECT << PORT_PLS_SHIFT;
	}
	p->sc |= PORT_PRC | (warm ? PORT_WRC : 0);
	port_event(x, i);
}

/* Link state writes: suspend (U3) and resume (U0, or Resume on USB 2) complete at once. */
static void port_link_state(struct xhci *x, unsigned i, unsigned pls)
{
	struct port *p = &x->port[i];

	if (!(p->sc & PORT_PED) || (pls != PLS_U0 && pls != PLS_U3 && pls != PLS_RESUME))
		return;
	if (pls == PLS_RESUME)
		pls = PLS_U0;
	if (((p->sc & PORT_PLS_MASK) >> PORT_PLS_SHIFT) == PLS_U3 && pls == PLS_U0) {
		p->sc = (p->sc & ~PORT_PLS_MASK) | PLS_U0 << PORT_PLS_SHIFT | PORT_PLC;
		port_event(x, i);
		return;
	}
	p->sc = (p->sc & ~PORT_PLS_MASK) | pls << PORT_PLS_SHIFT;
}

static void port_write(struct xhci *x, unsigned i, uint32_t v)
{
	struct port *p = &x->port[i];

	p->sc &= ~(v & PORT_CHANGE);
	if (v & PORT_PED)
		p->sc &= ~PORT_PED;
	p->sc = (p->sc & ~(PORT_WAKE | PORT_PIC)) | (v & (PORT_WAKE | PORT_PIC));
	if (v & PORT_LWS)
		port_link_state(x, i, (v & PORT_PLS_MASK) >> PORT_PLS_SHIFT);
	if (v & PORT_PR)
		port_reset(x, i, false);
	else if ((v & PORT_WPR) && port_is_usb3(i))
		port_reset(x, i, true);
}

/* ---- registers ---- */

static uint32_t cap_read(uint64_t off)
{
	switch (off) {
	case 0x00: return 0x01000000u | XHCI_CAP_LEN;                     /* HCIVERSION 1.0, CAPLENGTH */
	case 0x04: return (uint32_t)XHCI_PORTS << 24 | 1u << 8 | XHCI_SLOTS; /* HCSPARAMS1 */
	case 0x08: return ERST_MAX_LOG2 << 4 | 1;                          /* HCSPARAMS2: IST 1 frame */
	case 0x0C: return 0;                                               /* HCSPARAMS3 */
	case 0x10: return (XHCI_XECP / 4) << 16 | 1u << 7 | 1u << 0;       /* HCCPARAMS1: xECP, NSS, AC64 */
	case 0x14: return XHCI_DB;                                         /* DBOFF */
	case 0x18: return XHCI_RTS;                                        /* RTSOFF */
	default: return 0;
	}
}

/* Supported Protocol capabilities: USB 2.0 for ports 1-2, USB 3.0 for ports 3-4. */
static uint32_t xecp_read(uint64_t off)
{
	static const uint32_t caps[8] = {
		0x02000402u, 0x20425355u, XHCI_USB2_PORTS << 8 | 1, 0,
		0x03000002u, 0x20425355u, XHCI_USB3_PORTS << 8 | (XHCI_USB2_PORTS + 1), 0,
	};
	return off < sizeof(caps) ? caps[off / 4] : 0;
}

static uint32_t op_read(struct xhci *x, uint64_t off)
{
	if (off >= 0x400 && off < 0x400 + 0x10u * XHCI_PORTS)
		return (off & 15) == 0 ? x->port[(off - 0x400) / 16].sc : 0;
	switch (off) {
	case 0x00: return x->usbcmd;
	case 0x04: return x->usbsts;
	case 0x08: return 1; /* 4 KiB pages */
	case 0x14: return x->dnctrl;
	case 0x18: return x->crr ? CRCR_CRR : 0; /* the pointer reads as zero */
	case 0x30: return (uint32_t)x->dcbaap;
	case 0x34: return (uint32_t)(x->dcbaap >> 32);
	case 0x38: return x->config;
	default: return 0;
	}
}

static void usbcmd_write(struct xhci *x, uint32_t v)
{
	uint32_t old = x->usbcmd;

	if (v & CMD_HCRST) {
		xhci_reset(x);
		return;
	}
	x->usbcmd = v & CMD_WMASK;
	if ((v & CMD_RUN) && !(old & CMD_RUN) && !(x->usbsts & STS_HSE)) {
		x->usbsts &= ~STS_HCH;
		/* Tell the driver about devices connected before it started. */
		for (unsigned i = 0; i < XHCI_PORTS; i++)
			if (x->port[i].sc & PORT_CSC)
				port_event(x, i);
	} else if (!(v & CMD_RUN)) {
		x->usbcmd &= ~CMD_RUN;
		x->usbsts |= STS_HCH;
		x->crr = false;
	}
	if (((old ^ x->usbcmd) & CMD_INTE) && x->irq(x->opaque, xhci_irq_level(x)))
		x->iman &= ~IMAN_IP;
}

static void crcr_write(struct xhci *x, uint64_t off, uint32_t v)
{
	if (x->crr) {
		/* Only Command Stop / Abort act while the ring runs; both complete at once. */
		if (off == 0x18 && (v & (CRCR_CS | CRCR_CA))) {
			x->crr = false;
			cmd_event(x, x->cmd.deq, CC_CMD_RING_STOPPED, 0);
		}
		return;
	}
	/*
	 * Each half moves only its part of the pointer: a driver that aborts the
	 * ring writes the high half right after the (stopping) low half, and the
	 * ring must go on where it stopped.
	 */
	if (off == 0x18) {
		x->crcr_lo = v;
		x->cmd.deq = (x->cmd.deq & ~0xffffffffull) | (v & ~63u);
		x->cmd.ccs = v & CRCR_RCS;
	} else {
		x->crcr_hi = v;
		x->cmd.deq = (x->cmd.deq & 0xffffffffull) | (uint64_t)v << 32;
	}
}

static void op_write(struct xhci *x, uint64_t off, uint32_t v)
{
	if (off >= 0x400 && off < 0x400 + 0x10u * XHCI_PORTS) {
		if ((off & 15) == 0)
			port_write(x, (unsigned)(off - 0x400) / 16, v);
		return;
	}
	switch (off) {
	case 0x00: usbcmd_write(x, v); break;
	case 0x04: x->usbsts &= ~(v & STS_W1C); break;
	case 0x14: x->dnctrl = v & 0xffff; break;
	case 0x18: case 0x1C: crcr_write(x, off, v); break;
	case 0x30: x->dcbaap = (x->dcbaap & ~0xffffffffull) | (v & ~63u); break;
	case 0x34: x->dcbaap = (x->dcbaap & 0xffffffffull) | (uint64_t)v << 32; break;
	case 0x38: x->config = (v & 0xff) > XHCI_SLOTS ? XHCI_SLOTS : (v & 0xff); break;
	default: break;
	}
}

static uint32_t mfindex(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)(((uint64_t)ts.tv_sec * 8000 + (uint64_t)ts.tv_nsec / 125000) & 0x3fff);
}

static uint32_t rt_read(struct xhci *x, uint64_t off)
{
	switch (off) {
	case 0x00: return mfindex();
	case 0x20: return x->iman;
	case 0x24: return x->imod;
	case 0x28: return x->erstsz;
	case 0x30: return (uint32_t)x->erstba;
	case 0x34: return (uint32_t)(x->erstba >> 32);
	case 0x38: return (uint32_t)x->erdp;
	case 0x3C: return (uint32_t)(x->erdp >> 32);
	default: return 0;
	}
}

static void iman_write(struct xhci *x, uint32_t v)
{
	bool before = xhci_irq_level(x);

	if (v & IMAN_IP)
		x->iman &= ~IMAN_IP;
	x->iman = (x->iman & ~IMAN_IE) | (v & IMAN_IE);
	if (before != xhci_irq_level(x) && x->irq(x->opaque, xhci_irq_level(x)))
		x->iman &= ~IMAN_IP;
}

/* The guest consumed events: clear EHB and interrupt again if more are waiting. */
static void erdp_write(struct xhci *x, uint64_t off, uint32_t v)
{
	if (off == 0x38) {
		if (v & ERDP_EHB)
			x->erdp &= ~ERDP_EHB;
		x->erdp = (x->erdp & (~0xffffffffull | ERDP_EHB)) | (v & ~15u) | (v & 7);
	} else {
		x->erdp = (x->erdp & 0xffffffffull) | (uint64_t)v << 32;
	}
	/* Writing ERDP acknowledges the events before it, the Event Ring Full one included. */
	x->er_full = false;
	if (!(x->erdp & ERDP_EHB) && x->er_size && (x->erdp & ~15ull) != er_enqueue_addr(x))
		interrupt(x);
}

static void rt_write(struct xhci *x, uint64_t off, uint32_t v)
{
	switch (off) {
	case 0x20: iman_write(x, v); break;
	case 0x24: x->imod = v; break;
	case 0x28: x->erstsz = (v & 0xffff) > (1u << ERST_MAX_LOG2) ? 1u << ERST_MAX_LOG2 : (v & 0xffff); break;
	case 0x30: x->erstba = (x->erstba & ~0xffffffffull) | (v & ~63u); er_init(x); break;
	case 0x34: x->erstba = (x->erstba & 0xffffffffull) | (uint64_t)v << 32; er_init(x); break;
	case 0x38: case 0x3C: erdp_write(x, off, v); break;
	default: break;
	}
}

static uint32_t reg_read(struct xhci *x, uint64_t off)
{
	if (off < XHCI_CAP_LEN)
		return cap_read(off);
	if (off >= XHCI_XECP && off < XHCI_RTS)
		return xecp_read(off - XHCI_XECP);
	if (off < XHCI_XECP)
		return op_read(x, off - XHCI_CAP_LEN);
	if (off < XHCI_DB)
		return rt_read(x, off - XHCI_RTS);
	return 0; /* doorbells read as zero */
}

static void reg_write(struct xhci *x, uint64_t off, uint32_t v)
{
	if (off >= XHCI_CAP_LEN && off < XHCI_XECP)
		op_write(x, off - XHCI_CAP_LEN, v);
	else if (off >= XHCI_RTS && off < XHCI_DB)
		rt_write(x, off - XHCI_RTS, v);
	else if (off >= XHCI_DB && off < XHCI_DB + 4 * (XHCI_SLOTS + 1))
		ring_doorbell(x, (unsigned)(off - XHCI_DB) / 4, v);
}

/*
 * Registers are dwords: 8-byte accesses are split in two, smaller reads
 * take bytes of the dword, smaller writes are ignored (the spec requires
 * dword writes).
 */
void xhci_mmio(struct xhci *x, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	if (size == 8 && !(off & 7)) {
		xhci_mmio(x, off, data, 4, is_write);
		xhci_mmio(x, off + 4, data + 4, 4, is_write);
		return;
	}
	if (is_write) {
		uint32_t v;
		if (size == 4 && !(off & 3)) {
			memcpy(&v, data, 4);
			reg_write(x, off, v);
		}
		return;
	}
	uint32_t v = reg_read(x, off & ~3ull);
	for (unsigned i = 0; i < size; i++)
		data[i] = (off & 3) + i < 4 ? (uint8_t)(v >> (8 * ((off & 3) + i))) : 0;
}

/* ---- life cycle ---- */

void xhci_reset(struct xhci *x)
{
	bool level = xhci_irq_level(x);

	x->usbcmd = 0;
	x->usbsts = STS_HCH;
	x->dnctrl = x->config = 0;
	x->crcr_lo = x->crcr_hi = 0;
	x->crr = false;
	x->cmd = (struct ring){ 0 };
	x->dcbaap = 0;
	memset(x->slot, 0, sizeof(x->slot));
	x->iman = 0;
	x->imod = 4000; /* 1 ms, the reset value */
	x->erstsz = 0;
	x->erstba = x->erdp = 0;
	x->er_seg = x->er_idx = 0;
	x->er_pcs = true;
	x->er_full = false;
	x->er_base = 0;
	x->er_size = 0;
	for (unsigned i = 0; i < XHCI_PORTS; i++) {
		if (x->port[i].dev)
			x->port[i].dev->reset(x->port[i].dev);
		port_power_on(x, i);
	}
	if (level)
		(void)x->irq(x->opaque, false);
}

struct xhci *xhci_new(struct guest_memory *mem, pthread_mutex_t *lock, xhci_irq_fn irq, void *opaque)
{
	struct xhci *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->mem = mem;
	x->lock = lock;
	x->irq = irq;
	x->opaque = opaque;
	xhci_reset(x);
	return x;
}

void xhci_free(struct xhci *x)
{
	if (!x)
		return;
	for (unsigned i = 0; i < XHCI_PORTS; i++)
		if (x->port[i].dev)
			x->port[i].dev->destroy(x->port[i].dev);
	free(x);
}

int xhci_attach(struct xhci *x, unsigned port, struct usb_device *dev)
{
	if (port < 1 || port > XHCI_USB2_PORTS || x->port[port - 1].dev)
		return -1;
	dev->lock = x->lock;
	dev->notify = device_notify;
	dev->host = x;
	x->port[port - 1].dev = dev;
	port_power_on(x, port - 1);
	if (dev->attached)
		dev->attached(dev);
	return 0;
}

void xhci_flush_devices(struct xhci *x)
{
	for (unsigned i = 0; i < XHCI_PORTS; i++)
		if (x->port[i].dev && x->port[i].dev->flush)
			x->port[i].dev->flush(x->port[i].dev);
}

/* ---- snapshots ---- */

void xhci_save(struct xhci *x, struct state_writer *w)
{
	char key[16];

	state_put_u64(w, "usbcmd", x->usbcmd);
	state_put_u64(w, "usbsts", x->usbsts);
	state_put_u64(w, "dnctrl", x->dnctrl);
	state_put_u64(w, "config", x->config);
	state_put_u64(w, "crcr", (uint64_t)x->crcr_hi << 32 | x->crcr_lo);
	state_put_bool(w, "crr", x->crr);
	state_put_u64(w, "cmd_deq", x->cmd.deq);
	state_put_bool(w, "cmd_ccs", x->cmd.ccs);
	state_put_u64(w, "dcbaap", x->dcbaap);
	state_put_u64(w, "iman", x->iman);
	state_put_u64(w, "imod", x->imod);
	state_put_u64(w, "erstsz", x->erstsz);
	state_put_u64(w, "erstba", x->erstba);
	state_put_u64(w, "erdp", x->erdp);
	state_put_u64(w, "er_seg", x->er_seg);
	state_put_u64(w, "er_idx", x->er_idx);
	state_put_bool(w, "er_pcs", x->er_pcs);
	state_put_bool(w, "er_full", x->er_full);
	for (unsigned i = 0; i < XHCI_PORTS; i++) {
		snprintf(key, sizeof(key), "port%u", i + 1);
		state_begin_map(w, key);
		state_put_u64(w, "portsc", x->port[i].sc);
		if (x->port[i].dev)
			x->port[i].dev->save(x->port[i].dev, w);
		state_end_map(w);
	}
	for (unsigned i = 1; i <= XHCI_SLOTS; i++) {
		uint64_t rings[NCTX];
		if (!x->slot[i].enabled)
			continue;
		for (unsigned j = 0; j < NCTX; j++)
			rings[j] = x->slot[i].ring[j].deq | x->slot[i].ring[j].ccs;
		snprintf(key, sizeof(key), "slot%u", i);
		state_begin_map(w, key);
		state_put_bytes(w, "ctx", x->slot[i].ctx, sizeof(x->slot[i].ctx));
		state_put_bytes(w, "rings", rings, sizeof(rings));
		state_end_map(w);
	}
}

static int restore_slots(struct xhci *x, struct state_reader *r)
{
	char key[16];

	for (unsigned i = 1; i <= XHCI_SLOTS; i++) {
		uint64_t rings[NCTX];
		struct slot *s = &x->slot[i];
		snprintf(key, sizeof(key), "slot%u", i);
		memset(s, 0, sizeof(*s));
		if (state_enter_map(r, key) < 0)
			continue;
		int rc = state_get_bytes(r, "ctx", s->ctx, sizeof(s->ctx)) | state_get_bytes(r, "rings", rings, sizeof(rings));
		state_leave_map(r);
		if (rc < 0)
			return -1;
		s->enabled = true;
		for (unsigned j = 0; j < NCTX; j++)
			s->ring[j] = (struct ring){ .deq = rings[j] & ~15ull, .ccs = rings[j] & 1 };
	}
	return 0;
}

static int restore_ports(struct xhci *x, struct state_reader *r)
{
	char key[16];
	uint64_t sc;

	for (unsigned i = 0; i < XHCI_PORTS; i++) {
		snprintf(key, sizeof(key), "port%u", i + 1);
		if (state_enter_map(r, key) < 0)
			return -1;
		int rc = state_get_u64(r, "portsc", &sc);
		if (rc == 0 && x->port[i].dev)
			rc = x->port[i].dev->restore(x->port[i].dev, r);
		state_leave_map(r);
		if (rc < 0 || sc > 0xffffffffu)
			return -1;
		x->port[i].sc = (uint32_t)sc;
	}
	return 0;
}

int xhci_restore(struct xhci *x, struct state_reader *r)
{
	uint64_t v[15];
	bool crr, ccs, pcs, full;
	static const char *const keys[] = { "usbcmd", "usbsts", "dnctrl", "config", "crcr", "cmd_deq", "dcbaap",
					    "iman", "imod", "erstsz", "erstba", "erdp", "er_seg", "er_idx" };

	for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (state_get_u64(r, keys[i], &v[i]) < 0)
			goto bad;
	if (state_get_bool(r, "crr", &crr) < 0 || state_get_bool(r, "cmd_ccs", &ccs) < 0 ||
	    state_get_bool(r, "er_pcs", &pcs) < 0 || state_get_bool(r, "er_full", &full) < 0 ||
	    v[3] > XHCI_SLOTS || v[9] > (1u << ERST_MAX_LOG2) || v[12] >= 16 || v[13] >= 4096)
		goto bad;
	x->usbcmd = (uint32_t)v[0] & CMD_WMASK;
	x->usbsts = (uint32_t)v[1];
	x->dnctrl = (uint32_t)v[2];
	x->config = (uint32_t)v[3];
	x->crcr_lo = (uint32_t)v[4];
	x->crcr_hi = (uint32_t)(v[4] >> 32);
	x->crr = crr;
	x->cmd = (struct ring){ .deq = v[5] & ~15ull, .ccs = ccs };
	x->dcbaap = v[6] & ~63ull;
	x->iman = (uint32_t)v[7] & 3;
	x->imod = (uint32_t)v[8];
	x->erstsz = (uint32_t)v[9];
	x->erstba = v[10] & ~63ull;
	x->erdp = v[11];
	x->er_seg = (uint32_t)v[12];
	x->er_idx = (uint32_t)v[13];
	x->er_pcs = pcs;
	x->er_full = full;
	er_load(x);
	if (x->er_idx >= x->er_size)
		x->er_idx = 0;
	if (restore_ports(x, r) < 0 || restore_slots(x, r) < 0)
		goto bad;
	return 0;
bad:
	log_error("xhci: bad snapshot state");
	return -1;
}
