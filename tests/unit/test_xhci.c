/*
 * The xHCI controller with its HID tablet and keyboard, driven through the
 * PCI BAR as a guest driver would, with rings and contexts built in the
 * test VM's RAM: capabilities, start-up port events, port reset, Enable
 * Slot, Address Device, GET_DESCRIPTOR, SET_CONFIGURATION, Configure
 * Endpoint, interrupt IN transfers completed by input events, keyboard LED
 * output reports, save/restore, and the guest's mistakes (pointers outside
 * RAM, Link TRB loops, commands in the wrong state).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <linux/input-event-codes.h>

#include "core/config.h"
#include "core/device.h"
#include "core/input.h"
#include "core/irq.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/vm.h"
#include "pci/pci.h"
#include "snapshot/state.h"
#include "testvm.h"
#include "usb/usb.h"

#define SLOT 4
#define INTX_GSI (16 + (SLOT + 1 - 1) % 8)

/* Guest memory layout of the test driver. */
#define DCBAA 0x10000
#define CMD_RING 0x11000
#define ERST 0x12000
#define EV_RING 0x13000
#define EV_TRBS 32
#define IN_CTX 0x14000
#define OUT_CTX 0x15000
#define EP0_RING 0x16000
#define INT_RING 0x17000
#define DATA 0x18000
#define RING_TRBS 16   /* command and transfer rings: 15 TRBs and a Link back */

#define OP 0x40
#define RT 0x1000
#define DB 0x2000

struct trb {
	uint64_t param;
	uint32_t status, control;
};

struct fx {
	struct vm *vm;
	uint64_t bar;
	unsigned ev_idx;
	bool ev_ccs;
	unsigned cmd_idx;
	bool cmd_ccs;
	unsigned ep0_idx, int_idx;
	bool ep0_ccs, int_ccs;
};

/* ---- bus access ---- */

static uint32_t cfg_read(struct vm *vm, unsigned reg)
{
	outl(vm, 0xCF8, 0x80000000u | SLOT << 11 | (reg & 0xFC));
	return inl(vm, 0xCFC);
}

static uint32_t rd(struct fx *f, uint64_t off)
{
	uint8_t d[4] = { 0 };

	iobus_access(&f->vm->mmio, f->bar + off, d, 4, false);
	return d[0] | d[1] << 8 | d[2] << 16 | (uint32_t)d[3] << 24;
}

static void wr(struct fx *f, uint64_t off, uint32_t v)
{
	uint8_t d[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	iobus_access(&f->vm->mmio, f->bar + off, d, 4, true);
}

static void wr64(struct fx *f, uint64_t off, uint64_t v)
{
	wr(f, off, (uint32_t)v);
	wr(f, off + 4, (uint32_t)(v >> 32));
}

static void *gpa(struct fx *f, uint64_t a)
{
	void *p = mem_gpa_to_hva(&f->vm->mem, a, 1);

	assert_non_null(p);
	return p;
}

static void put_trb(struct fx *f, uint64_t at, uint64_t param, uint32_t status, uint32_t control)
{
	struct trb t = { param, status, control };

	memcpy(gpa(f, at), &t, 16);
}

/* ---- rings ---- */

#define TYPE(t) ((uint32_t)(t) << 10)
#define CYCLE(b) ((b) ? 1u : 0u)

/* Appends a TRB to a ring of RING_TRBS, wrapping through the Link TRB at its end. */
static uint64_t ring_put(struct fx *f, uint64_t base, unsigned *idx, bool *ccs, uint64_t param, uint32_t status,
			 uint32_t control)
{
	uint64_t at = base + 16ull * *idx;

	put_trb(f, at, param, status, control | CYCLE(*ccs));
	if (++*idx == RING_TRBS - 1) {
		put_trb(f, base + 16ull * *idx, base, 0, TYPE(6) | 2 /* toggle cycle */ | CYCLE(*ccs));
		*idx = 0;
		*ccs = !*ccs;
	}
	return at;
}

/* The next event, or false when the ring holds none; consumes it and updates ERDP. */
static bool next_event(struct fx *f, struct trb *t)
{
	memcpy(t, gpa(f, EV_RING + 16ull * f->ev_idx), 16);
	if ((t->control & 1) != CYCLE(f->ev_ccs))
		return false;
	if (++f->ev_idx == EV_TRBS) {
		f->ev_idx = 0;
		f->ev_ccs = !f->ev_ccs;
	}
	wr64(f, RT + 0x38, (EV_RING + 16ull * f->ev_idx) | 8 /* EHB */);
	return true;
}

static struct trb expect_event(struct fx *f, unsigned type)
{
	struct trb t;

	assert_true(next_event(f, &t));
	assert_int_equal((t.control >> 10) & 0x3f, type);
	return t;
}

static unsigned cc(const struct trb *t)
{
	return t->status >> 24;
}

/* Runs one command; returns its completion event. */
static struct trb command(struct fx *f, uint64_t param, uint32_t status, uint32_t control)
{
	uint64_t at = ring_put(f, CMD_RING, &f->cmd_idx, &f->cmd_ccs, param, status, control);
	struct trb ev;

	wr(f, DB, 0);
	ev = expect_event(f, 33);
	assert_int_equal(ev.param, at);
	return ev;
}

/* Completion code of one command. */
static unsigned cmd_cc(struct fx *f, uint64_t param, uint32_t control)
{
	return command(f, param, 0, control).status >> 24;
}

/* ---- fixture ---- */

static struct fx *fx_new(const char *opts)
{
	struct fx *f = calloc(1, sizeof(*f));
	const struct device_model *m = device_model_find("xhci");
	uint32_t lo;

	log_set_level(LOG_ERROR);
	assert_non_null(m);
	f->vm = testvm_new(64ULL << 20);
	assert_int_equal(mem_alloc(&f->vm->mem, "test-xhci"), 0);
	assert_int_equal(config_set(f->vm->cfg, "pci.0.4.0.device", "xhci"), 0);
	assert_int_equal(m->parse_slot_options(f->vm->cfg, "pci.0.4.0", opts), 0);
	assert_int_equal(device_model_find("pci")->attach(f->vm), 0);
	lo = cfg_read(f->vm, PCI_BASE_ADDRESS_0);
	f->bar = (lo & ~0xFull) | (uint64_t)cfg_read(f->vm, PCI_BASE_ADDRESS_0 + 4) << 32;
	testvm_clear_records();
	return f;
}

/* Starts the controller as a driver does: reset, tables, event ring, run. */
static void start(struct fx *f)
{
	struct { uint64_t base; uint32_t size, rsvd; } erst = { EV_RING, EV_TRBS, 0 };

	wr(f, OP + 0x00, 2); /* HCRST */
	assert_int_equal(rd(f, OP + 0x04) & 1, 1); /* halted */
	memset(gpa(f, DCBAA), 0, 0x10000);
	wr(f, OP + 0x38, 8);
	wr64(f, OP + 0x30, DCBAA);
	wr64(f, OP + 0x18, CMD_RING | 1);
	memcpy(gpa(f, ERST), &erst, sizeof(erst));
	wr(f, RT + 0x28, 1);
	wr64(f, RT + 0x38, EV_RING);
	wr64(f, RT + 0x30, ERST);
	wr(f, RT + 0x20, 2); /* IE */
	wr(f, OP + 0x00, 1 | 4); /* RUN, INTE */
	assert_int_equal(rd(f, OP + 0x04) & 1, 0);
	f->ev_idx = 0;
	f->ev_ccs = true;
	f->cmd_idx = 0;
	f->cmd_ccs = true;
	f->ep0_idx = f->int_idx = 0;
	f->ep0_ccs = f->int_ccs = true;
}

static void fx_free(struct fx *f)
{
	devices_destroy_all(f->vm);
	vm_irq_routing_free(f->vm);
	mem_free(&f->vm->mem);
	testvm_free(f->vm);
	free(f);
}

static int setup(void **state)
{
	struct fx *f = fx_new("tablet,kbd");

	start(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* ---- device bring-up ---- */

static uint32_t portsc(struct fx *f, unsigned port)
{
	return rd(f, OP + 0x400 + 0x10 * (port - 1));
}

/* Consumes the start-up port events and resets `port`; returns its PORTSC. */
static void reset_port(struct fx *f, unsigned port)
{
	struct trb ev;

	while (next_event(f, &ev))
		assert_int_equal((ev.control >> 10) & 0x3f, 34);
	wr(f, OP + 0x400 + 0x10 * (port - 1), (1u << 9) | (1u << 4)); /* PP, PR */
	ev = expect_event(f, 34);
	assert_int_equal(ev.param >> 24, port);
	assert_int_equal(portsc(f, port) & 0x00200013, 0x00200003); /* PRC, PED, CCS; PR clear */
	wr(f, OP + 0x400 + 0x10 * (port - 1), (1u << 9) | (1u << 21) | (1u << 17)); /* clear PRC, CSC */
	assert_int_equal(portsc(f, port) & 0x00fe0000, 0);
}

static uint32_t *in_ctx(struct fx *f, unsigned idx)
{
	return (uint32_t *)gpa(f, IN_CTX + 32ull * idx);
}

static uint32_t *out_ctx(struct fx *f, unsigned idx)
{
	return (uint32_t *)gpa(f, OUT_CTX + 32ull * idx);
}

static unsigned enable_slot(struct fx *f)
{
	struct trb ev = command(f, 0, 0, TYPE(9));

	assert_int_equal(cc(&ev), 1);
	return ev.control >> 24;
}

static unsigned address_device(struct fx *f, unsigned slot, unsigned port, uint64_t ep0_ring)
{
	memset(gpa(f, IN_CTX), 0, 33 * 32);
	in_ctx(f, 0)[1] = 3;                               /* add slot, ep0 */
	in_ctx(f, 1)[0] = 1u << 27 | 3u << 20;             /* one context entry, high speed */
	in_ctx(f, 1)[1] = port << 16;
	in_ctx(f, 2)[1] = 64u << 16 | 4u << 3 | 3u << 1;   /* control, mps 64, CErr 3 */
	in_ctx(f, 2)[2] = (uint32_t)ep0_ring | 1;
	in_ctx(f, 2)[3] = (uint32_t)(ep0_ring >> 32);
	memcpy(gpa(f, DCBAA + 8 * slot), &(uint64_t){ OUT_CTX }, 8);
	return cmd_cc(f, IN_CTX, TYPE(11) | slot << 24);
}

/* A control transfer on ep0 of `slot`; returns the completion code of the last event. */
static unsigned control(struct fx *f, unsigned slot, uint8_t type, uint8_t req, uint16_t value, uint16_t index,
			uint16_t len, uint8_t *data)
{
	uint64_t setup = type | req << 8 | (uint64_t)value << 16 | (uint64_t)index << 32 | (uint64_t)len << 48;
	bool in = type & 0x80;
	struct trb ev;
	unsigned code;

	ring_put(f, EP0_RING, &f->ep0_idx, &f->ep0_ccs, setup, 8, TYPE(2) | 1u << 6 | (len ? (in ? 3u : 2u) << 16 : 0));
	if (len) {
		if (!in)
			memcpy(gpa(f, DATA), data, len);
		ring_put(f, EP0_RING, &f->ep0_idx, &f->ep0_ccs, DATA, len, TYPE(3) | 1u << 2 | (in ? 1u << 16 : 0));
	}
	ring_put(f, EP0_RING, &f->ep0_idx, &f->ep0_ccs, 0, 0, TYPE(4) | 1u << 5 | (in && len ? 0 : 1u << 16));
	wr(f, DB + 4 * slot, 1);
	ev = expect_event(f, 32);
	code = cc(&ev);
	if (code == 13) { /* short data stage, then the status stage */
		assert_int_equal(ev.control >> 24, slot);
		ev = expect_event(f, 32);
		assert_int_equal(cc(&ev), 1);
	}
	if (in && data && len)
		memcpy(data, gpa(f, DATA), len);
	return code;
}

/* Enable slot, address device on `port`, SET_CONFIGURATION 1, configure interrupt IN ep 1. */
static unsigned bring_up(struct fx *f, unsigned port)
{
	unsigned slot;

	reset_port(f, port);
	slot = enable_slot(f);
	assert_int_equal(slot, 1);
	assert_int_equal(address_device(f, slot, port, EP0_RING), 1);
	assert_int_equal(control(f, slot, 0x00, 9, 1, 0, 0, NULL), 1);
	memset(gpa(f, IN_CTX), 0, 33 * 32);
	in_ctx(f, 0)[1] = 1u | 1u << 3;                    /* slot, DCI 3 */
	in_ctx(f, 1)[0] = 3u << 27;
	in_ctx(f, 4)[0] = 4u << 16;                        /* interval */
	in_ctx(f, 4)[1] = 8u << 16 | 7u << 3 | 3u << 1;    /* interrupt IN, mps 8 */
	in_ctx(f, 4)[2] = INT_RING | 1;
	assert_int_equal(cmd_cc(f, IN_CTX, TYPE(12) | slot << 24), 1);
	assert_int_equal(out_ctx(f, 0)[3] >> 27, 3); /* configured */
	assert_int_equal(out_ctx(f, 3)[0] & 7, 1);   /* DCI 3 running */
	return slot;
}

/* Queues one 8-byte interrupt IN transfer and rings its doorbell. */
static uint64_t queue_int_in(struct fx *f, unsigned slot, uint64_t buf)
{
	uint64_t at = ring_put(f, INT_RING, &f->int_idx, &f->int_ccs, buf, 8, TYPE(1) | 1u << 2 | 1u << 5);

	wr(f, DB + 4 * slot, 3);
	return at;
}

/* ---- tests ---- */

static void test_identity_and_capabilities(void **state)
{
	struct fx *f = *state;

	assert_int_equal(cfg_read(f->vm, 0), 0x000d1b36);
	assert_int_equal(cfg_read(f->vm, 8) >> 8, 0x0C0330);
	assert_int_equal(rd(f, 0) & 0xff, 0x40);
	assert_int_equal(rd(f, 0) >> 16, 0x100);
	assert_int_equal(rd(f, 4) >> 24, 4);       /* ports */
	assert_int_equal(rd(f, 0x10) & 1, 1);      /* 64-bit addressing */
	unsigned xecp = (rd(f, 0x10) >> 16) * 4;
	assert_int_equal(rd(f, xecp) & 0xff, 2);   /* Supported Protocol */
	assert_int_equal(rd(f, xecp) >> 24, 2);
	assert_int_equal(rd(f, xecp + 4), 0x20425355);
	assert_int_equal(rd(f, xecp + 8) & 0xffff, 0x0201);
	unsigned next = xecp + ((rd(f, xecp) >> 8) & 0xff) * 4;
	assert_int_equal(rd(f, next) >> 24, 3);
	assert_int_equal(rd(f, next + 8) & 0xffff, 0x0203);
	assert_int_equal((rd(f, next) >> 8) & 0xff, 0); /* last */
	/* Connected ports 1 and 2 at high speed, 3 and 4 empty, all powered. */
	assert_int_equal(portsc(f, 1) & 0x3e01, 0x0e01);
	assert_int_equal(portsc(f, 2) & 0x3e01, 0x0e01);
	assert_int_equal(portsc(f, 3) & 0x201, 0x200);
}

static void test_startup_port_events_and_interrupt(void **state)
{
	struct fx *f = *state;
	struct trb ev;
	unsigned ports = 0;

	assert_true(testvm_irq_level(INTX_GSI) == 1);
	assert_int_equal(rd(f, RT + 0x20) & 1, 1); /* IP */
	while (next_event(f, &ev)) {
		assert_int_equal((ev.control >> 10) & 0x3f, 34);
		ports |= 1u << (ev.param >> 24);
	}
	assert_int_equal(ports, 0x6);
	wr(f, RT + 0x20, 3); /* clear IP */
	assert_true(testvm_irq_level(INTX_GSI) == 0);
	/* A No Op command raises it again. */
	assert_int_equal(cmd_cc(f, 0, TYPE(23)), 1);
	assert_true(testvm_irq_level(INTX_GSI) == 1);
}

static void test_enumerate_tablet(void **state)
{
	struct fx *f = *state;
	uint8_t d[256];
	unsigned slot;

	reset_port(f, 1);
	slot = enable_slot(f);
	assert_int_equal(address_device(f, slot, 1, EP0_RING), 1);
	assert_int_equal(out_ctx(f, 0)[3] >> 27, 2);          /* addressed */
	assert_int_equal(out_ctx(f, 0)[3] & 0xff, slot);
	assert_int_equal(out_ctx(f, 1)[0] & 7, 1);            /* ep0 running */
	memset(d, 0, sizeof(d));
	assert_int_equal(control(f, slot, 0x80, 6, 0x0100, 0, 64, d), 13); /* 18 of 64 bytes */
	assert_int_equal(d[0], 18);
	assert_int_equal(d[1], 1);
	assert_int_equal(d[2] | d[3] << 8, 0x0200);
	assert_int_equal(d[7], 64);
	/* Exact length: no short packet. */
	assert_int_equal(control(f, slot, 0x80, 6, 0x0100, 0, 18, d), 1);
	assert_int_equal(control(f, slot, 0x80, 6, 0x0200, 0, 34, d), 1);
	assert_int_equal(d[9 + 5], 3);        /* interface class HID */
	assert_int_equal(d[9 + 6], 0);        /* subclass 0: no boot protocol */
	assert_int_equal(d[18 + 1], 0x21);    /* HID descriptor */
	assert_int_equal(d[18 + 2], 0x11);    /* bcdHID 0x0111, little-endian */
	assert_int_equal(d[18 + 3], 0x01);
	unsigned rlen = d[18 + 7] | d[18 + 8] << 8;
	assert_int_equal(d[27 + 2], 0x81);    /* endpoint 1 IN */
	/* Report descriptor, string descriptor. */
	assert_int_equal(control(f, slot, 0x81, 6, 0x2200, 0, (uint16_t)rlen, d), 1);
	assert_true(rlen > 60 && rlen < sizeof(d));
	assert_int_equal(d[0], 0x05);
	assert_int_equal(d[rlen - 1], 0xC0);          /* End Collection */
	assert_int_equal(control(f, slot, 0x80, 6, 0x0302, 0x0409, 64, d), 13);
	assert_int_equal(d[1], 3);
	assert_memory_equal(d + 2, "U\0S\0B\0 \0t\0", 10); /* product: "USB tablet" */
	/* An unknown request stalls and halts ep0; Reset Endpoint + Set TR Dequeue recover it. */
	assert_int_equal(control(f, slot, 0x80, 6, 0x0600, 0, 10, d), 6);
	assert_int_equal(out_ctx(f, 1)[0] & 7, 2);
	assert_int_equal(cmd_cc(f, 0, TYPE(14) | slot << 24 | 1u << 16), 1);
	uint64_t deq = (EP0_RING + 16ull * f->ep0_idx) | CYCLE(f->ep0_ccs);
	assert_int_equal(cmd_cc(f, deq, TYPE(16) | slot << 24 | 1u << 16), 1);
	assert_int_equal(control(f, slot, 0x80, 6, 0x0100, 0, 18, d), 1);
}

/*
 * A Setup TRB with IOC, as UEFI's XhciDxe queues every control transfer
 * (Setup IOC, Data ISP|IOC, Status IOC): an event for each stage, in order,
 * the Setup stage's first with nothing left to transfer.
 */
static void test_setup_stage_event(void **state)
{
	struct fx *f = *state;
	uint64_t setup = 0x80 | 6u << 8 | 0x0100ull << 16 | 18ull << 48, at[3];
	unsigned slot;
	struct trb ev;

	reset_port(f, 1);
	slot = enable_slot(f);
	assert_int_equal(address_device(f, slot, 1, EP0_RING), 1);
	at[0] = ring_put(f, EP0_RING, &f->ep0_idx, &f->ep0_ccs, setup, 8, TYPE(2) | 1u << 6 | 1u << 5 | 3u << 16);
	at[1] = ring_put(f, EP0_RING, &f->ep0_idx, &f->ep0_ccs, DATA, 18, TYPE(3) | 1u << 2 | 1u << 5 | 1u << 16);
	at[2] = ring_put(f, EP0_RING, &f->ep0_idx, &f->ep0_ccs, 0, 0, TYPE(4) | 1u << 5);
	wr(f, DB + 4 * slot, 1);
	for (unsigned i = 0; i < 3; i++) {
		ev = expect_event(f, 32);
		assert_int_equal(ev.param, at[i]);
		assert_int_equal(cc(&ev), 1);
		assert_int_equal(ev.status & 0xffffff, 0);
		assert_int_equal(ev.control >> 24, slot);
		assert_int_equal((ev.control >> 16) & 0x1f, 1);
	}
	assert_false(next_event(f, &ev));
	assert_int_equal(((uint8_t *)gpa(f, DATA))[0], 18);
}

static void test_tablet_report(void **state)
{
	struct fx *f = *state;
	unsigned slot = bring_up(f, 1);
	struct trb ev;
	uint8_t *buf = gpa(f, DATA + 0x100);
	uint64_t at;

	memset(buf, 0xEE, 8);
	at = queue_int_in(f, slot, DATA + 0x100);
	assert_false(next_event(f, &ev)); /* no report yet: the transfer waits */
	input_pointer(f->vm, 799, 0, 800, 600, INPUT_BTN_LEFT | INPUT_BTN_EXTRA, 1, -1);
	ev = expect_event(f, 32);
	assert_int_equal(ev.param, at);
	assert_int_equal(cc(&ev), 13);           /* 7-byte report in an 8-byte buffer */
	assert_int_equal(ev.status & 0xffffff, 1);
	assert_int_equal((ev.control >> 16) & 0x1f, 3);
	const uint8_t want[8] = { 0x11, 0xFF, 0x7F, 0, 0, 1, 0xFF, 0xEE };
	assert_memory_equal(buf, want, 8);
	/* The next report waits in the device until the guest queues a transfer. */
	input_pointer(f->vm, 0, 599, 800, 600, 0, 0, 0);
	assert_false(next_event(f, &ev));
	queue_int_in(f, slot, DATA + 0x100);
	ev = expect_event(f, 32);
	const uint8_t want2[7] = { 0, 0, 0, 0xFF, 0x7F, 0, 0 };
	assert_memory_equal(buf, want2, 7);
}

static void test_keyboard_keys_and_leds(void **state)
{
	struct fx *f = *state;
	unsigned slot = bring_up(f, 2);
	uint8_t *buf = gpa(f, DATA + 0x100), d[8];
	struct trb ev;

	queue_int_in(f, slot, DATA + 0x100);
	input_key(f->vm, KEY_LEFTSHIFT, true);
	ev = expect_event(f, 32);
	assert_int_equal(cc(&ev), 1);
	const uint8_t shift[8] = { 0x02, 0, 0, 0, 0, 0, 0, 0 };
	assert_memory_equal(buf, shift, 8);
	queue_int_in(f, slot, DATA + 0x100);
	input_key(f->vm, KEY_F24, true);
	expect_event(f, 32);
	const uint8_t f24[8] = { 0x02, 0, 0x73, 0, 0, 0, 0, 0 };
	assert_memory_equal(buf, f24, 8);
	/* Boot protocol switch and idle rate round trip. */
	assert_int_equal(control(f, slot, 0x21, 0x0B, 0, 0, 0, NULL), 1);
	assert_int_equal(control(f, slot, 0xA1, 0x03, 0, 0, 1, d), 1);
	assert_int_equal(d[0], 0);
	assert_int_equal(control(f, slot, 0x21, 0x0A, 0x7D00, 0, 0, NULL), 1);
	assert_int_equal(control(f, slot, 0xA1, 0x02, 0, 0, 1, d), 1);
	assert_int_equal(d[0], 0x7D);
	/* SET_REPORT output: Caps Lock LED reaches the input router. */
	d[0] = 0x02;
	assert_int_equal(control(f, slot, 0x21, 0x09, 0x0200, 0, 1, d), 1);
	assert_int_equal(input_leds(f->vm), INPUT_LED_CAPS);
	d[0] = 0x05;
	assert_int_equal(control(f, slot, 0x21, 0x09, 0x0200, 0, 1, d), 1);
	assert_int_equal(input_leds(f->vm), INPUT_LED_NUM | INPUT_LED_SCROLL);
	/* An OUT data stage of exactly USB_CTRL_MAX bytes is gathered whole (it once gathered nothing). */
	uint8_t *big = calloc(1, USB_CTRL_MAX);
	big[0] = 0x02;
	assert_int_equal(control(f, slot, 0x21, 0x09, 0x0200, 0, USB_CTRL_MAX, big), 1);
	assert_int_equal(input_leds(f->vm), INPUT_LED_CAPS);
	free(big);
}

static void test_command_errors(void **state)
{
	struct fx *f = *state;
	unsigned slot;

	reset_port(f, 1);
	/* Commands on a slot that is not enabled. */
	assert_int_equal(cmd_cc(f, IN_CTX, TYPE(11) | 3u << 24), 11);
	slot = enable_slot(f);
	/* Input context outside RAM, ep0 ring outside RAM, port without a device. */
	assert_int_equal(cmd_cc(f, 0x7FFFFFF0, TYPE(11) | slot << 24), 17);
	assert_int_equal(address_device(f, slot, 1, 0x80000000ull), 17);
	assert_int_equal(address_device(f, slot, 3, EP0_RING), 4);
	/* Configure Endpoint before Address Device: Context State Error. */
	assert_int_equal(cmd_cc(f, IN_CTX, TYPE(12) | slot << 24), 19);
	assert_int_equal(address_device(f, slot, 1, EP0_RING), 1);
	assert_int_equal(address_device(f, slot, 1, EP0_RING), 19);
	/* Reset Endpoint of a running endpoint, Set TR Dequeue outside RAM. */
	assert_int_equal(cmd_cc(f, 0, TYPE(14) | slot << 24 | 1u << 16), 19);
	assert_int_equal(cmd_cc(f, 0, TYPE(15) | slot << 24 | 1u << 16), 1);
	assert_int_equal(cmd_cc(f, 0x90000001ull, TYPE(16) | slot << 24 | 1u << 16), 17);
	/* Unknown command type. */
	assert_int_equal(cmd_cc(f, 0, TYPE(40)), 5);
	assert_int_equal(cmd_cc(f, 0, TYPE(10) | slot << 24), 1);
	assert_int_equal(cmd_cc(f, 0, TYPE(10) | slot << 24), 11);
}

static void test_evaluate_deconfigure_reset_device(void **state)
{
	struct fx *f = *state;
	unsigned slot = bring_up(f, 1);
	uint8_t d[18];

	/* Evaluate Context: a new ep0 max packet size and max exit latency. */
	memset(gpa(f, IN_CTX), 0, 33 * 32);
	in_ctx(f, 0)[1] = 3;
	in_ctx(f, 1)[1] = 1u << 16 | 0x55;
	in_ctx(f, 2)[1] = 8u << 16 | 4u << 3;
	assert_int_equal(cmd_cc(f, IN_CTX, TYPE(13) | slot << 24), 1);
	assert_int_equal(out_ctx(f, 1)[1] >> 16, 8);
	assert_int_equal(out_ctx(f, 0)[1] & 0xffff, 0x55);
	assert_int_equal((out_ctx(f, 0)[1] >> 16) & 0xff, 1); /* the root port is not changed */
	/* An invalid max packet size is refused. */
	in_ctx(f, 2)[1] = 0;
	assert_int_equal(cmd_cc(f, IN_CTX, TYPE(13) | slot << 24), 17);
	/* Deconfigure: endpoints other than ep0 go, the slot is addressed again. */
	assert_int_equal(cmd_cc(f, 0, TYPE(12) | 1u << 9 | slot << 24), 1);
	assert_int_equal(out_ctx(f, 0)[3] >> 27, 2);
	assert_int_equal(out_ctx(f, 0)[0] >> 27, 1);
	assert_int_equal(out_ctx(f, 3)[0] & 7, 0);
	/* Reset Device: default state, address 0; a second one finds the slot in the wrong state. */
	assert_int_equal(cmd_cc(f, 0, TYPE(17) | slot << 24), 1);
	assert_int_equal(out_ctx(f, 0)[3], 1u << 27);
	assert_int_equal(cmd_cc(f, 0, TYPE(17) | slot << 24), 19);
	/* ep0 still works in the default state. */
	assert_int_equal(control(f, slot, 0x80, 6, 0x0100, 0, 18, d), 1);
	assert_int_equal(d[1], 1);
}

static void test_transfer_ring_outside_ram(void **state)
{
	struct fx *f = *state;
	unsigned slot = bring_up(f, 1);
	struct trb ev;

	/* A Link TRB into the PCI hole: TRB Error, endpoint halted, no crash. */
	ring_put(f, INT_RING, &f->int_idx, &f->int_ccs, 0xD0000000ull, 0, TYPE(6));
	wr(f, DB + 4 * slot, 3);
	ev = expect_event(f, 32);
	assert_int_equal(cc(&ev), 5);
	assert_int_equal(out_ctx(f, 3)[0] & 7, 2);
	/* A data buffer outside RAM is a TRB Error too, once the endpoint is reset. */
	assert_int_equal(cmd_cc(f, 0, TYPE(14) | slot << 24 | 3u << 16), 1);
	assert_int_equal(cmd_cc(f, (INT_RING + 0x400) | 1, TYPE(16) | slot << 24 | 3u << 16), 1);
	put_trb(f, INT_RING + 0x400, 0xFFFFFFFFF000ull, 8, TYPE(1) | 1u << 5 | 1);
	wr(f, DB + 4 * slot, 3);
	assert_false(next_event(f, &ev)); /* waits for a report first */
	input_pointer(f->vm, 1, 1, 2, 2, 0, 0, 0);
	ev = expect_event(f, 32);
	assert_int_equal(cc(&ev), 5);
	assert_int_equal(ev.param, INT_RING + 0x400);
}

static void test_link_loops(void **state)
{
	struct fx *f = *state;
	unsigned slot = bring_up(f, 1);
	struct trb ev;

	/* A transfer ring whose Link TRB points at itself. */
	assert_int_equal(cmd_cc(f, 0, TYPE(15) | slot << 24 | 1u << 16), 1);
	put_trb(f, EP0_RING + 0x800, EP0_RING + 0x800, 0, TYPE(6) | 1);
	assert_int_equal(cmd_cc(f, (EP0_RING + 0x800) | 1, TYPE(16) | slot << 24 | 1u << 16), 1);
	wr(f, DB + 4 * slot, 1);
	ev = expect_event(f, 32);
	assert_int_equal(cc(&ev), 5);
	/* A chain of 40 Link TRBs in a row is refused as a loop too. */
	for (unsigned i = 0; i < 40; i++)
		put_trb(f, EP0_RING + 0x900 + 16 * i, EP0_RING + 0x900 + 16 * (i + 1), 0, TYPE(6) | 1);
	assert_int_equal(cmd_cc(f, 0, TYPE(14) | slot << 24 | 1u << 16), 1);
	assert_int_equal(cmd_cc(f, (EP0_RING + 0x900) | 1, TYPE(16) | slot << 24 | 1u << 16), 1);
	wr(f, DB + 4 * slot, 1);
	ev = expect_event(f, 32);
	assert_int_equal(cc(&ev), 5);
	/* The command ring looping on itself halts the controller with Host System Error. */
	put_trb(f, CMD_RING + 16 * f->cmd_idx, CMD_RING + 16 * f->cmd_idx, 0, TYPE(6) | CYCLE(f->cmd_ccs));
	wr(f, DB, 0);
	assert_int_equal(rd(f, OP + 0x04) & 5, 5); /* HSE, HCH */
	assert_false(next_event(f, &ev));
}

static void test_event_ring_full(void **state)
{
	struct fx *f = *state;
	struct trb ev;
	unsigned n = 0;

	while (next_event(f, &ev))
		;
	/* No ERDP updates: the ring fills; the last slot says so and nothing is overwritten. */
	for (unsigned i = 0; i < EV_TRBS + 4; i++) {
		ring_put(f, CMD_RING, &f->cmd_idx, &f->cmd_ccs, 0, 0, TYPE(23));
		wr(f, DB, 0);
	}
	for (;;) {
		memcpy(&ev, gpa(f, EV_RING + 16ull * ((f->ev_idx + n) % EV_TRBS)), 16);
		if ((ev.control & 1) != CYCLE(f->ev_ccs ^ ((f->ev_idx + n) >= EV_TRBS)))
			break;
		n++;
		if ((ev.control >> 10 & 0x3f) == 37) {
			assert_int_equal(cc(&ev), 21);
			break;
		}
	}
	assert_int_equal(n, EV_TRBS);
}

static void test_event_data_trb(void **state)
{
	struct fx *f = *state;
	unsigned slot = bring_up(f, 1);
	struct trb ev;

	/* Normal (chained, ISP) + Event Data (IOC): one event with ED set, the data and the TD's length. */
	ring_put(f, INT_RING, &f->int_idx, &f->int_ccs, DATA + 0x100, 16, TYPE(1) | 1u << 4 | 1u << 2);
	ring_put(f, INT_RING, &f->int_idx, &f->int_ccs, 0xABCDEF0123ull, 0, TYPE(7) | 1u << 5);
	wr(f, DB + 4 * slot, 3);
	input_pointer(f->vm, 0, 0, 10, 10, 0, 0, 0);
	ev = expect_event(f, 32);
	assert_int_equal(cc(&ev), 13);             /* short: 7 of 16 bytes, reported on the ISP TRB */
	assert_int_equal(ev.status & 0xffffff, 9);
	assert_int_equal(ev.control & 4, 0);
	ev = expect_event(f, 32);
	assert_int_equal(ev.param, 0xABCDEF0123ull);
	assert_int_equal(ev.control & 4, 4);       /* ED */
	assert_int_equal(cc(&ev), 13);
	assert_int_equal(ev.status & 0xffffff, 7); /* bytes of the TD so far */
	assert_false(next_event(f, &ev));
}

/* Two event ring segments of 4 TRBs: the producer moves between them and flips its cycle after the last. */
static void test_event_ring_segments(void **state)
{
	struct fx *f = *state;
	struct { uint64_t base; uint32_t size, rsvd; } erst[2] = { { EV_RING + 0x400, 4, 0 }, { EV_RING + 0x800, 4, 0 } };
	uint64_t seg[2] = { EV_RING + 0x400, EV_RING + 0x800 };
	struct trb ev;
	bool ccs = true;

	wr(f, OP + 0x00, 0);
	memcpy(gpa(f, ERST), erst, sizeof(erst));
	memset(gpa(f, EV_RING + 0x400), 0, 0x800);
	wr(f, RT + 0x28, 2);
	wr64(f, RT + 0x30, ERST);
	wr64(f, RT + 0x38, seg[0]);
	wr(f, OP + 0x00, 1 | 4);
	/* Drop the port events the restart posted: they went to segment 0. */
	for (unsigned i = 0; i < 2; i++) {
		memcpy(&ev, gpa(f, seg[0] + 16 * i), 16);
		assert_int_equal((ev.control >> 10) & 0x3f, 34);
	}
	unsigned pos = 2;
	for (unsigned n = 0; n < 14; n++) {
		uint64_t at = ring_put(f, CMD_RING, &f->cmd_idx, &f->cmd_ccs, 0, 0, TYPE(23));
		wr(f, DB, 0);
		unsigned idx = pos % 8;
		memcpy(&ev, gpa(f, seg[idx / 4] + 16 * (idx % 4)), 16);
		assert_int_equal(ev.control & 1, CYCLE(ccs));
		assert_int_equal(ev.param, at);
		if (++pos % 8 == 0)
			ccs = !ccs;
		wr64(f, RT + 0x38, (seg[(pos % 8) / 4] + 16 * (pos % 4)) | 8);
	}
}

/*
 * The segment table's entry for the next segment is read once per step: here
 * it sits in the last slot of segment 0, so the event written there
 * overwrites it. The producer must still go where the ring-full check
 * looked (it once re-read the entry, took the event for a segment of size
 * 0 and stopped with a host system error).
 */
static void test_erst_entry_read_once(void **state)
{
	struct fx *f = *state;
	/* ERSTBA is 64-byte aligned: a 6-slot segment 0 ends with slots 4 and 5 at seg0 + 0x40. */
	const uint64_t seg0 = EV_RING + 0x400, seg1 = EV_RING + 0x800, erst_at = seg0 + 0x40;
	struct { uint64_t base; uint32_t size, rsvd; } erst[2] = { { seg0, 6, 0 }, { seg1, 4, 0 } };
	struct trb ev;
	uint64_t at = 0;

	wr(f, OP + 0x00, 0);
	memset(gpa(f, seg0), 0, 0x800);
	memcpy(gpa(f, erst_at), erst, sizeof(erst)); /* entries 0 and 1 are slots 4 and 5 of segment 0 */
	wr(f, RT + 0x28, 2);
	wr64(f, RT + 0x30, erst_at);
	wr64(f, RT + 0x38, seg0);
	wr(f, OP + 0x00, 1 | 4);
	/* The restart's two port events fill slots 0 and 1, four commands slots 2 to 5, the fifth goes on. */
	for (unsigned n = 0; n < 5; n++) {
		at = ring_put(f, CMD_RING, &f->cmd_idx, &f->cmd_ccs, 0, 0, TYPE(23));
		wr(f, DB, 0);
	}
	assert_int_equal(rd(f, OP + 0x04) & 4, 0); /* no host system error */
	memcpy(&ev, gpa(f, seg1), 16);
	assert_int_equal(ev.param, at);
	assert_int_equal(ev.control & 1, 1);
}

static void test_save_restore(void **state)
{
	struct fx *f = *state;
	unsigned slot = bring_up(f, 1);
	struct device *dev = device_find(f->vm, "pci.0.4.0");
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	uint8_t *buf, *data = gpa(f, DATA + 0x100);
	size_t len;
	struct trb ev;

	input_pointer(f->vm, 10, 20, 100, 100, INPUT_BTN_RIGHT, 0, 0); /* a report waits in the tablet */
	assert_int_equal(dev->model->save(dev, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	dev->model->reset(dev);
	assert_int_equal(rd(f, OP + 0x00) & 1, 0);
	r = state_reader_new(buf, len);
	assert_non_null(r);
	assert_int_equal(dev->model->restore(dev, r, dev->model->state_version), 0);
	state_reader_free(r);
	assert_int_equal(rd(f, OP + 0x00) & 1, 1);
	queue_int_in(f, slot, DATA + 0x100);
	ev = expect_event(f, 32);
	assert_int_equal(cc(&ev), 13);
	assert_int_equal(data[0], 0x02); /* HID button 2: right */
	/* Only its one section version: the snapshot reader refuses others before restore(). */
	assert_int_equal(device_model_oldest_state_version(dev->model), dev->model->state_version);
	free(buf);
}

static void test_options(void **state)
{
	struct config *cfg = config_new();
	const struct device_model *m = device_model_find("xhci");

	(void)state;
	assert_int_equal(m->parse_slot_options(cfg, "pci.0.4.0", "kbd"), 0);
	assert_string_equal(config_get(cfg, "pci.0.4.0.kbd"), "true");
	assert_int_equal(m->parse_slot_options(cfg, "pci.0.4.0", "tablet,foo"), -1);
	config_free(cfg);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_identity_and_capabilities),
		T(test_startup_port_events_and_interrupt),
		T(test_enumerate_tablet),
		T(test_setup_stage_event),
		T(test_tablet_report),
		T(test_keyboard_keys_and_leds),
		T(test_command_errors),
		T(test_evaluate_deconfigure_reset_device),
		T(test_transfer_ring_outside_ram),
		T(test_link_loops),
		T(test_event_ring_full),
		T(test_event_data_trb),
		T(test_event_ring_segments),
		T(test_erst_entry_read_once),
		T(test_save_restore),
		cmocka_unit_test(test_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
