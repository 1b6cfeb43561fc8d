/*
 * libFuzzer harness for the xHCI controller core (src/usb/xhci.c) with the
 * HID tablet and keyboard (src/usb/hid.c) on ports 1 and 2.
 *
 * Input: a little-endian u16 with the length of an operation stream, the
 * stream, then the contents of a 16 KiB RAM region at GPA 0 (a second 4 KiB
 * region sits at GPA 0x100000 behind a hole). Each region is its own heap
 * allocation of exactly its size, so AddressSanitizer reports any access
 * the controller lets through outside guest RAM. Operations: register
 * writes and reads anywhere in the register block, doorbells, a canned
 * driver start-up (DCBAA, command ring, event ring, run) with addresses
 * from the input so rings and contexts are reachable early, pointer and
 * key events (which complete interrupt transfers), HCRST, and snapshot
 * round trips. Invariants are checked with CHECK() (fuzz_input.h).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"

#include "core/input.h"
#include "core/log.h"
#include "core/memory.h"
#include "snapshot/state.h"
#include "usb/usb.h"
#include "usb/xhci.h"

#define RAM0_SIZE 0x4000u
#define RAM1_GPA 0x100000u
#define RAM1_SIZE 0x1000u
#define MAX_OPS 512

static int fake_vm; /* the input router only uses the VM pointer as a key */
#define VM ((struct vm *)&fake_vm)

static unsigned irqs, snapshots;

/* Odd calls act as MSI-X (the message clears IP), even ones as INTx. */
static bool on_irq(void *opaque, bool raise)
{
	(void)opaque;
	if (raise)
		irqs++;
	return raise && (irqs & 1);
}

static void mmio_write(struct xhci *x, pthread_mutex_t *lock, uint64_t off, uint64_t v, unsigned size)
{
	uint8_t d[8];

	for (unsigned i = 0; i < 8; i++)
		d[i] = (uint8_t)(v >> (8 * i));
	pthread_mutex_lock(lock);
	xhci_mmio(x, off, d, size, true);
	pthread_mutex_unlock(lock);
	xhci_flush_devices(x);
}

/* Registers as the Linux driver sets them up, with ring/table addresses from the input. */
static void driver_start(struct xhci *x, pthread_mutex_t *lock, struct cursor *c)
{
	uint64_t dcbaa = take(c, 2) & 0x3FC0, cmd = take(c, 2) & 0x3FF0, erst = take(c, 2) & 0x3FC0;
	uint64_t erdp = take(c, 2) & 0x3FF0;

	mmio_write(x, lock, XHCI_CAP_LEN + 0x00, 2, 4); /* HCRST */
	mmio_write(x, lock, XHCI_CAP_LEN + 0x38, XHCI_SLOTS, 4);
	mmio_write(x, lock, XHCI_CAP_LEN + 0x30, dcbaa, 8);
	mmio_write(x, lock, XHCI_CAP_LEN + 0x18, cmd | 1, 8);
	mmio_write(x, lock, XHCI_RTS + 0x28, 1 + (take(c, 1) & 3), 4);
	mmio_write(x, lock, XHCI_RTS + 0x30, erst, 8);
	mmio_write(x, lock, XHCI_RTS + 0x38, erdp, 8);
	mmio_write(x, lock, XHCI_RTS + 0x20, 2, 4);
	mmio_write(x, lock, XHCI_CAP_LEN + 0x00, 1 | 4, 4);
}

static void snapshot_roundtrip(struct xhci *x, pthread_mutex_t *lock)
{
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	uint8_t *buf;
	size_t len;

	if (!w)
		return;
	pthread_mutex_lock(lock);
	xhci_save(x, w);
	if (state_writer_finish(w, &buf, &len) == 0) {
		xhci_reset(x);
		r = state_reader_new(buf, len);
		CHECK(r);
		/* What we saved ourselves must restore. */
		CHECK(xhci_restore(x, r) == 0);
		state_reader_free(r);
		free(buf);
	}
	pthread_mutex_unlock(lock);
	state_writer_free(w);
}

static void run_op(struct xhci *x, pthread_mutex_t *lock, struct cursor *c)
{
	uint8_t op = (uint8_t)take(c, 1), d[8];

	switch (op % 9) {
	case 0: { /* 32-bit register write */
		uint32_t off = take(c, 2) % 0x3000;
		mmio_write(x, lock, off, take(c, 4), 4);
		break;
	}
	case 1: { /* 64-bit register write */
		uint32_t off = take(c, 2) % 0x3000;
		uint64_t v = take(c, 4);
		mmio_write(x, lock, off, v | (uint64_t)take(c, 4) << 32, 8);
		break;
	}
	case 2: { /* register read of any size */
		uint32_t off = take(c, 2) % 0x3000;
		unsigned size = 1u << (take(c, 1) & 3);
		pthread_mutex_lock(lock);
		xhci_mmio(x, off, d, size, false);
		pthread_mutex_unlock(lock);
		break;
	}
	case 3: { /* doorbell */
		uint32_t db = take(c, 1) % (XHCI_SLOTS + 2);
		mmio_write(x, lock, XHCI_DB + 4 * db, take(c, 1), 4);
		break;
	}
	case 4:
		driver_start(x, lock, c);
		break;
	case 5: { /* pointer */
		uint32_t px = take(c, 2), py = take(c, 2), b = take(c, 1);
		input_pointer(VM, px, py, 0x10000, 0x10000, b & 0x1f, (int8_t)take(c, 1), (int8_t)take(c, 1));
		break;
	}
	case 6: { /* key */
		uint32_t code = take(c, 2) % 0x300;
		input_key(VM, code, take(c, 1) & 1);
		break;
	}
	case 7: /* a few per input: encoding is slow next to everything else */
		if (snapshots++ < 4)
			snapshot_roundtrip(x, lock);
		break;
	case 8:
		pthread_mutex_lock(lock);
		xhci_reset(x);
		pthread_mutex_unlock(lock);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct guest_memory mem = { 0 };
	struct cursor ops;
	struct usb_device *tablet, *kbd;
	struct xhci *x;
	size_t ops_len, ram_len;

	if (size < 2)
		return 0;
	log_set_level(LOG_ERROR);
	ops_len = (size_t)(data[0] | data[1] << 8);
	if (ops_len > size - 2)
		ops_len = size - 2;
	ops = (struct cursor){ data + 2, ops_len };

	uint8_t *ram0 = calloc(1, RAM0_SIZE), *ram1 = malloc(RAM1_SIZE);
	if (!ram0 || !ram1)
		abort();
	memset(ram1, 0xC3, RAM1_SIZE);
	ram_len = size - 2 - ops_len < RAM0_SIZE ? size - 2 - ops_len : RAM0_SIZE;
	memcpy(ram0, data + 2 + ops_len, ram_len);
	mem.size = RAM0_SIZE + RAM1_SIZE;
	mem.nregions = 2;
	mem.regions[0] = (struct mem_region){ .gpa = 0, .size = RAM0_SIZE, .hva = ram0 };
	mem.regions[1] = (struct mem_region){ .gpa = RAM1_GPA, .size = RAM1_SIZE, .offset = RAM0_SIZE, .hva = ram1 };

	irqs = snapshots = 0;
	x = xhci_new(&mem, &lock, on_irq, NULL);
	tablet = usb_hid_tablet_new(VM);
	kbd = usb_hid_kbd_new(VM);
	CHECK(x && tablet && kbd);
	CHECK(xhci_attach(x, 1, tablet) == 0 && xhci_attach(x, 2, kbd) == 0);
	CHECK(xhci_attach(x, 3, kbd) == -1); /* USB 3 ports take no USB 2 devices */

	for (unsigned i = 0; i < MAX_OPS && ops.n; i++)
		run_op(x, &lock, &ops);

	xhci_free(x);
	free(ram0);
	free(ram1);
	return 0;
}
