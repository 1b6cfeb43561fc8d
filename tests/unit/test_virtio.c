/*
 * The virtio PCI transport and the rnd and blk models against the KVM
 * stand-in: identification and capabilities, feature negotiation, the
 * status state machine and reset, queue setup, notification (the MMIO
 * fallback path: the stand-in has no KVM for ioeventfds) to the I/O thread,
 * completion with INTx and ISR, NEEDS_RESET on a bad chain or queue,
 * save/restore, and virtio-blk requests on a temporary image.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/device.h"
#include "core/irq.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/vm.h"
#include "pci/pci.h"
#include "snapshot/state.h"
#include "testvm.h"
#include "virtio/virtio_pci.h"

#define SLOT 4
#define INTX_GSI (16 + (SLOT + 1 - 1) % 8) /* INTA of slot 4 */
#define QSIZE 16
#define DESC 0x10000
#define AVAIL 0x11000
#define USED 0x12000
#define DATA 0x20000
#define RAM_SIZE (64ULL << 20)

struct fx {
	struct vm *vm;
	uint64_t bar;
	char img[64];
};

/* ---- bus access ---- */

static uint32_t conf1(unsigned reg)
{
	return 0x80000000u | SLOT << 11 | (reg & 0xFC);
}

static uint32_t cfg_read(struct vm *vm, unsigned reg, unsigned size)
{
	outl(vm, 0xCF8, conf1(reg));
	return testvm_in(vm, (uint16_t)(0xCFC + (reg & 3)), size);
}

static void cfg_write(struct vm *vm, unsigned reg, unsigned size, uint32_t v)
{
	outl(vm, 0xCF8, conf1(reg));
	testvm_out(vm, (uint16_t)(0xCFC + (reg & 3)), size, v);
}

static uint64_t rd(struct fx *f, uint64_t off, unsigned size)
{
	uint8_t data[8] = { 0 };
	uint64_t v = 0;

	iobus_access(&f->vm->mmio, f->bar + off, data, size, false);
	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)data[i] << (8 * i);
	return v;
}

static void wr(struct fx *f, uint64_t off, unsigned size, uint64_t v)
{
	uint8_t data[8];

	for (unsigned i = 0; i < size; i++)
		data[i] = (uint8_t)(v >> (8 * i));
	iobus_access(&f->vm->mmio, f->bar + off, data, size, true);
}

static uint8_t *gpa(struct fx *f, uint64_t a)
{
	return mem_gpa_to_hva(&f->vm->mem, a, 1);
}

/* ---- fixture ---- */

/* A VM with RAM and `model` in SLOT configured from "-s SLOT,model,opts"-style options. */
static struct fx *fx_new(const char *model, const char *opts)
{
	struct fx *f = calloc(1, sizeof(*f));
	const struct device_model *m = device_model_find(model);
	char key[64];

	log_set_level(LOG_ERROR);
	assert_non_null(m);
	f->vm = testvm_new(RAM_SIZE);
	assert_int_equal(mem_alloc(&f->vm->mem, "test-virtio"), 0);
	snprintf(key, sizeof(key), "pci.0.%d.0.device", SLOT);
	assert_int_equal(config_set(f->vm->cfg, key, model), 0);
	if (opts && m->parse_slot_options)
		assert_int_equal(m->parse_slot_options(f->vm->cfg, "pci.0.4.0", opts), 0);
	return f;
}

static int fx_attach(struct fx *f)
{
	int rc = device_model_find("pci")->attach(f->vm);

	if (rc == 0) {
		uint32_t lo = cfg_read(f->vm, PCI_BASE_ADDRESS_0 + 4 * VIRTIO_BAR, 4);
		f->bar = (lo & ~0xFull) | (uint64_t)cfg_read(f->vm, PCI_BASE_ADDRESS_0 + 4 * VIRTIO_BAR + 4, 4) << 32;
	}
	return rc;
}

static void fx_free(struct fx *f)
{
	devices_destroy_all(f->vm);
	vm_irq_routing_free(f->vm);
	mem_free(&f->vm->mem);
	testvm_free(f->vm);
	if (f->img[0])
		unlink(f->img);
	free(f);
}

static int setup_rnd(void **state)
{
	struct fx *f = fx_new("virtio-rnd", NULL);

	assert_int_equal(fx_attach(f), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* ---- driver steps ---- */

enum { CC_DFSEL = 0, CC_DF = 4, CC_GFSEL = 8, CC_GF = 12, CC_MSIX = 0x10, CC_NUMQ = 0x12, CC_STATUS = 0x14,
       CC_QSEL = 0x16, CC_QSIZE = 0x18, CC_QMSIX = 0x1A, CC_QEN = 0x1C, CC_QNOFF = 0x1E, CC_QDESC = 0x20,
       CC_QAVAIL = 0x28, CC_QUSED = 0x30 };

static uint64_t device_features(struct fx *f)
{
	wr(f, CC_DFSEL, 4, 0);
	uint64_t lo = rd(f, CC_DF, 4);
	wr(f, CC_DFSEL, 4, 1);
	return lo | rd(f, CC_DF, 4) << 32;
}

static uint8_t negotiate(struct fx *f, uint64_t features)
{
	wr(f, CC_STATUS, 1, 0);
	wr(f, CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(f, CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(f, CC_GFSEL, 4, 0);
	wr(f, CC_GF, 4, (uint32_t)features);
	wr(f, CC_GFSEL, 4, 1);
	wr(f, CC_GF, 4, (uint32_t)(features >> 32));
	wr(f, CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	return (uint8_t)rd(f, CC_STATUS, 1);
}

static void setup_queue(struct fx *f, unsigned q, uint16_t size)
{
	memset(gpa(f, AVAIL), 0, 0x1000);
	memset(gpa(f, USED), 0, 0x1000);
	wr(f, CC_QSEL, 2, q);
	assert_int_equal(rd(f, CC_QNOFF, 2), q);
	wr(f, CC_QSIZE, 2, size);
	wr(f, CC_QDESC, 4, DESC);
	wr(f, CC_QDESC + 4, 4, 0);
	wr(f, CC_QAVAIL, 8, AVAIL); /* 64-bit write in one go is accepted too */
	wr(f, CC_QUSED, 4, USED);
	wr(f, CC_QUSED + 4, 4, 0);
	wr(f, CC_QEN, 2, 1);
}

static void driver_ok(struct fx *f)
{
	wr(f, CC_STATUS, 1,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static void set_desc(struct fx *f, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };

	memcpy(gpa(f, DESC + 16 * i), &d, sizeof(d));
}

static void offer_and_notify(struct fx *f, unsigned q, uint16_t head)
{
	struct virtq_avail *a = (struct virtq_avail *)gpa(f, AVAIL);

	a->ring[a->idx % QSIZE] = head;
	__atomic_store_n(&a->idx, (uint16_t)(a->idx + 1), __ATOMIC_RELEASE);
	wr(f, VIRTIO_NOTIFY_OFF + VIRTIO_NOTIFY_MULT * q, 2, q);
}

static struct virtq_used *used(struct fx *f)
{
	return (struct virtq_used *)gpa(f, USED);
}

static bool wait_used(struct fx *f, uint16_t idx)
{
	for (int i = 0; i < 5000; i++) {
		if (__atomic_load_n(&used(f)->idx, __ATOMIC_ACQUIRE) == idx)
			return true;
		usleep(1000);
	}
	return false;
}

static bool wait_status(struct fx *f, uint8_t bits)
{
	for (int i = 0; i < 5000; i++) {
		if ((rd(f, CC_STATUS, 1) & bits) == bits)
			return true;
		usleep(1000);
	}
	return false;
}

static const uint64_t F_VERSION_1 = 1ULL << VIRTIO_F_VERSION_1;

/* ---- identification ---- */

static void test_identity_and_capabilities(void **state)
{
	struct fx *f = *state;
	unsigned types = 0, cap;

	assert_int_equal(cfg_read(f->vm, PCI_VENDOR_ID, 2), 0x1AF4);
	assert_int_equal(cfg_read(f->vm, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_RNG);
	assert_int_equal(cfg_read(f->vm, PCI_REVISION_ID, 1), 1);
	assert_true(f->bar != 0);
	assert_true(cfg_read(f->vm, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	for (cap = cfg_read(f->vm, PCI_CAPABILITY_LIST, 1); cap; cap = cfg_read(f->vm, cap + 1, 1)) {
		if (cfg_read(f->vm, cap, 1) != PCI_CAP_ID_VNDR)
			continue;
		unsigned type = cfg_read(f->vm, cap + 3, 1);
		assert_int_equal(cfg_read(f->vm, cap + 4, 1), VIRTIO_BAR);
		types |= 1u << type;
		if (type == 2) /* notify: multiplier after the common fields */
			assert_int_equal(cfg_read(f->vm, cap + 16, 4), VIRTIO_NOTIFY_MULT);
	}
	/* common, notify, ISR and the PCI_CFG window (rnd has no device configuration) */
	assert_int_equal(types, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 5));
	assert_int_equal(rd(f, CC_NUMQ, 2), 1);
	uint64_t df = device_features(f);
	assert_true(df & F_VERSION_1);
	assert_true(df & (1ULL << VIRTIO_F_RING_EVENT_IDX));
	assert_true(df & (1ULL << VIRTIO_F_INDIRECT_DESC));
	assert_false(df & (1ULL << VIRTIO_F_RING_PACKED));
	/* Reads of the feature window beyond bit 63 are zero. */
	wr(f, CC_DFSEL, 4, 7);
	assert_int_equal(rd(f, CC_DF, 4), 0);
}

/* Offset of the VIRTIO_PCI_CAP_PCI_CFG capability. */
static unsigned pci_cfg_cap(struct fx *f)
{
	for (unsigned cap = cfg_read(f->vm, PCI_CAPABILITY_LIST, 1); cap; cap = cfg_read(f->vm, cap + 1, 1))
		if (cfg_read(f->vm, cap, 1) == PCI_CAP_ID_VNDR && cfg_read(f->vm, cap + 3, 1) == 5)
			return cap;
	fail_msg("no PCI_CFG capability");
	return 0;
}

/*
 * The PCI_CFG window: BAR accesses through config space. A window whose
 * offset + length wraps around 32 bits is refused (it once passed the
 * check), and its data register keeps what was written.
 */
static void test_pci_cfg_window(void **state)
{
	struct fx *f = *state;
	unsigned cap = pci_cfg_cap(f);

	/* A good window: 2 bytes at Q_SELECT, written and read through DATA. */
	cfg_write(f->vm, cap + 4, 1, VIRTIO_BAR);
	cfg_write(f->vm, cap + 8, 4, CC_QSEL);
	cfg_write(f->vm, cap + 12, 4, 2);
	cfg_write(f->vm, cap + 16, 4, 3);
	assert_int_equal(rd(f, CC_QSEL, 2), 3);
	wr(f, CC_QSEL, 2, 0);
	assert_int_equal(cfg_read(f->vm, cap + 16, 2), 0);
	/* Offset 0xFFFFFFFC, length 4: past the BAR. */
	cfg_write(f->vm, cap + 4, 1, 0);
	cfg_write(f->vm, cap + 16, 4, 0xAABBCCDD);
	cfg_write(f->vm, cap + 4, 1, VIRTIO_BAR);
	cfg_write(f->vm, cap + 8, 4, 0xFFFFFFFC);
	cfg_write(f->vm, cap + 12, 4, 4);
	assert_int_equal(cfg_read(f->vm, cap + 16, 4), 0xAABBCCDD);
}

/* ---- negotiation and status ---- */

static void test_features_ok_needs_version_1(void **state)
{
	struct fx *f = *state;

	assert_false(negotiate(f, 0) & VIRTIO_STATUS_FEATURES_OK);
	/* A feature the device did not offer is refused too. */
	assert_false(negotiate(f, F_VERSION_1 | (1ULL << 40)) & VIRTIO_STATUS_FEATURES_OK);
	assert_true(negotiate(f, F_VERSION_1) & VIRTIO_STATUS_FEATURES_OK);
	/* Features are frozen once accepted. */
	wr(f, CC_GFSEL, 4, 0);
	wr(f, CC_GF, 4, 1u << VIRTIO_F_RING_EVENT_IDX);
	assert_int_equal(rd(f, CC_GF, 4), 0);
	wr(f, CC_STATUS, 1, 0);
	assert_int_equal(rd(f, CC_STATUS, 1), 0);
	wr(f, CC_GFSEL, 4, 1);
	assert_int_equal(rd(f, CC_GF, 4), 0); /* reset forgot them */
}

static void test_queue_registers(void **state)
{
	struct fx *f = *state;

	negotiate(f, F_VERSION_1);
	wr(f, CC_QSEL, 2, 0);
	assert_int_equal(rd(f, CC_QSIZE, 2), 64); /* the rnd queue size */
	wr(f, CC_QSIZE, 2, QSIZE);
	wr(f, CC_QMSIX, 2, 1);
	assert_int_equal(rd(f, CC_QMSIX, 2), 1);
	wr(f, CC_QMSIX, 2, 9); /* no such vector: NO_VECTOR */
	assert_int_equal(rd(f, CC_QMSIX, 2), VIRTIO_MSI_NO_VECTOR);
	wr(f, CC_MSIX, 2, 0);
	assert_int_equal(rd(f, CC_MSIX, 2), 0);
	setup_queue(f, 0, QSIZE);
	assert_int_equal(rd(f, CC_QEN, 2), 1);
	assert_int_equal(rd(f, CC_QDESC, 8), DESC);
	assert_int_equal(rd(f, CC_QAVAIL, 4), AVAIL);
	/* An enabled queue's registers are frozen. */
	wr(f, CC_QSIZE, 2, 4);
	assert_int_equal(rd(f, CC_QSIZE, 2), QSIZE);
	/* A queue beyond num_queues reads as size 0. */
	wr(f, CC_QSEL, 2, 5);
	assert_int_equal(rd(f, CC_QSIZE, 2), 0);
	/* Reset disables queues and restores the maximum size. */
	wr(f, CC_STATUS, 1, 0);
	wr(f, CC_QSEL, 2, 0);
	assert_int_equal(rd(f, CC_QEN, 2), 0);
	assert_int_equal(rd(f, CC_QSIZE, 2), 64);
	assert_int_equal(rd(f, CC_QMSIX, 2), VIRTIO_MSI_NO_VECTOR);
}

/* ---- requests ---- */

static void test_rnd_request_intx_and_isr(void **state)
{
	struct fx *f = *state;

	assert_true(negotiate(f, F_VERSION_1) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(f, 0, QSIZE);
	driver_ok(f);
	memset(gpa(f, DATA), 0, 256);
	set_desc(f, 3, DATA, 200, VIRTQ_DESC_F_WRITE, 0);
	offer_and_notify(f, 0, 3);
	assert_true(wait_used(f, 1));
	assert_int_equal(used(f)->ring[0].id, 3);
	assert_int_equal(used(f)->ring[0].len, 200);
	unsigned zeros = 0;
	for (int i = 0; i < 200; i++)
		zeros += gpa(f, DATA)[i] == 0;
	assert_true(zeros < 20);
	assert_int_equal(gpa(f, DATA)[200], 0); /* nothing past the buffer */
	/* No MSI-X enabled: INTx, cause in ISR; reading ISR clears it and lowers the line. */
	assert_true(testvm_wait_irq(INTX_GSI, 1, 2000));
	assert_int_equal(rd(f, VIRTIO_ISR_OFF, 1), VIRTIO_ISR_QUEUE);
	assert_int_equal(testvm_irq_level(INTX_GSI), 0);
	assert_int_equal(rd(f, VIRTIO_ISR_OFF, 1), 0);
	assert_int_equal(rd(f, CC_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static void test_requests_before_driver_ok_wait(void **state)
{
	struct fx *f = *state;

	negotiate(f, F_VERSION_1);
	setup_queue(f, 0, QSIZE);
	set_desc(f, 0, DATA, 16, VIRTQ_DESC_F_WRITE, 0);
	offer_and_notify(f, 0, 0);
	usleep(50000);
	assert_int_equal(used(f)->idx, 0);
	driver_ok(f); /* DRIVER_OK services what is already there */
	assert_true(wait_used(f, 1));
}

static void test_bad_chain_needs_reset(void **state)
{
	struct fx *f = *state;

	negotiate(f, F_VERSION_1);
	setup_queue(f, 0, QSIZE);
	driver_ok(f);
	set_desc(f, 0, DATA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, DATA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0); /* loop */
	offer_and_notify(f, 0, 0);
	assert_true(wait_status(f, VIRTIO_STATUS_NEEDS_RESET));
	assert_true(testvm_wait_irq(INTX_GSI, 1, 2000));
	assert_int_equal(rd(f, VIRTIO_ISR_OFF, 1), VIRTIO_ISR_CONFIG);
	/* The driver cannot clear NEEDS_RESET except by resetting. */
	driver_ok(f);
	assert_true(rd(f, CC_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	wr(f, CC_STATUS, 1, 0);
	assert_int_equal(rd(f, CC_STATUS, 1), 0);
	/* After reset the device works again. */
	negotiate(f, F_VERSION_1);
	setup_queue(f, 0, QSIZE);
	driver_ok(f);
	set_desc(f, 0, DATA, 16, VIRTQ_DESC_F_WRITE, 0);
	offer_and_notify(f, 0, 0);
	assert_true(wait_used(f, 1));
}

static void test_bad_queue_size_needs_reset(void **state)
{
	struct fx *f = *state;

	negotiate(f, F_VERSION_1);
	setup_queue(f, 0, 12);
	assert_int_equal(rd(f, CC_QEN, 2), 0);
	assert_true(rd(f, CC_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_ring_outside_ram_needs_reset(void **state)
{
	struct fx *f = *state;

	negotiate(f, F_VERSION_1);
	wr(f, CC_QSEL, 2, 0);
	wr(f, CC_QSIZE, 2, QSIZE);
	wr(f, CC_QDESC, 8, 0xFEE00000); /* LAPIC, not RAM */
	wr(f, CC_QAVAIL, 8, AVAIL);
	wr(f, CC_QUSED, 8, USED);
	wr(f, CC_QEN, 2, 1);
	assert_int_equal(rd(f, CC_QEN, 2), 0);
	assert_true(rd(f, CC_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_save_restore(void **state)
{
	struct fx *f = *state;
	struct device *dev = device_find(f->vm, "pci.0.4.0");
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	uint8_t *buf;
	size_t len;

	negotiate(f, F_VERSION_1 | (1ULL << VIRTIO_F_RING_EVENT_IDX));
	setup_queue(f, 0, QSIZE);
	wr(f, CC_MSIX, 2, 0);
	driver_ok(f);
	set_desc(f, 0, DATA, 16, VIRTQ_DESC_F_WRITE, 0);
	offer_and_notify(f, 0, 0);
	assert_true(wait_used(f, 1));
	assert_int_equal(dev->model->save(dev, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);

	/* Reset everything, then bring the saved state back. */
	wr(f, CC_STATUS, 1, 0);
	assert_int_equal(rd(f, CC_STATUS, 1), 0);
	r = state_reader_new(buf, len);
	assert_non_null(r);
	assert_int_equal(dev->model->restore(dev, r, dev->model->state_version), 0);
	state_reader_free(r);
	free(buf);
	assert_int_equal(rd(f, CC_STATUS, 1), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
						   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(rd(f, CC_MSIX, 2), 0);
	wr(f, CC_QSEL, 2, 0);
	assert_int_equal(rd(f, CC_QEN, 2), 1);
	assert_int_equal(rd(f, CC_QSIZE, 2), QSIZE);
	wr(f, CC_GFSEL, 4, 0);
	assert_int_equal(rd(f, CC_GF, 4), 1u << VIRTIO_F_RING_EVENT_IDX);
	/* The queue goes on from where it was: the next chain lands in used entry 1. */
	offer_and_notify(f, 0, 0);
	assert_true(wait_used(f, 2));
	assert_int_equal(used(f)->ring[1].id, 0);

	/* Only its one section version: the snapshot reader refuses others before restore(). */
	assert_int_equal(device_model_oldest_state_version(dev->model), dev->model->state_version);
}

/* ---- virtio-blk ---- */

struct blk_req {
	uint32_t type, reserved;
	uint64_t sector;
};

/* A virtio-blk on a fresh image whose every byte is its sector number (mod 256). */
static struct fx *blk_fx(const char *opts, size_t image_size)
{
	char img[64], spec[256];
	struct fx *f;
	FILE *fp;

	snprintf(img, sizeof(img), "/tmp/hyve-test-virtio-%d.img", getpid());
	fp = fopen(img, "wb");
	assert_non_null(fp);
	for (size_t i = 0; i < image_size; i++)
		fputc((int)(i / 512) & 0xFF, fp);
	fclose(fp);
	snprintf(spec, sizeof(spec), "%s%s", img, opts);
	f = fx_new("virtio-blk", spec);
	snprintf(f->img, sizeof(f->img), "%s", img);
	return f;
}

/* Sends one request: header, optional data (readable or writable), status; returns the status byte. */
static uint8_t blk_request(struct fx *f, uint32_t type, uint64_t sector, uint64_t data, uint32_t len, bool data_in,
			   uint32_t *used_len)
{
	static uint16_t done;
	struct blk_req h = { .type = type, .sector = sector };
	unsigned d = 0;

	memcpy(gpa(f, DATA), &h, sizeof(h));
	gpa(f, DATA + 0x100)[0] = 0xEE;
	set_desc(f, d, DATA, sizeof(h), VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1)), d++;
	if (len)
		set_desc(f, d, data, len, (uint16_t)(VIRTQ_DESC_F_NEXT | (data_in ? VIRTQ_DESC_F_WRITE : 0)),
			 (uint16_t)(d + 1)), d++;
	set_desc(f, d, DATA + 0x100, 1, VIRTQ_DESC_F_WRITE, 0);
	if (used(f)->idx == 0)
		done = 0;
	offer_and_notify(f, 0, 0);
	done++;
	assert_true(wait_used(f, done));
	if (used_len)
		*used_len = used(f)->ring[(done - 1) % QSIZE].len;
	return gpa(f, DATA + 0x100)[0];
}

static void blk_start(struct fx *f)
{
	assert_true(negotiate(f, F_VERSION_1) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(f, 0, QSIZE);
	driver_ok(f);
}

static void test_blk_requests(void **state)
{
	(void)state;
	struct fx *f = blk_fx(",serial=TESTSERIAL", 64 * 1024);
	uint32_t n;

	assert_int_equal(fx_attach(f), 0);
	assert_int_equal(cfg_read(f->vm, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_BLOCK);
	assert_int_equal(rd(f, VIRTIO_DEVCFG_OFF, 8), 128); /* capacity in sectors */
	assert_int_equal(rd(f, VIRTIO_DEVCFG_OFF + 20, 4), 512); /* blk_size */
	blk_start(f);

	/* Read sector 5: its bytes are 5. */
	memset(gpa(f, DATA + 0x1000), 0, 1024);
	assert_int_equal(blk_request(f, 0, 5, DATA + 0x1000, 1024, true, &n), 0);
	assert_int_equal(n, 1025);
	assert_int_equal(gpa(f, DATA + 0x1000)[0], 5);
	assert_int_equal(gpa(f, DATA + 0x1000)[1023], 6);
	/* Write sector 7, read it back. */
	memset(gpa(f, DATA + 0x2000), 0xAB, 512);
	assert_int_equal(blk_request(f, 1, 7, DATA + 0x2000, 512, false, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(blk_request(f, 0, 7, DATA + 0x1000, 512, true, NULL), 0);
	assert_int_equal(gpa(f, DATA + 0x1000)[100], 0xAB);
	/* Flush. */
	assert_int_equal(blk_request(f, 4, 0, 0, 0, false, NULL), 0);
	/* GET_ID. */
	memset(gpa(f, DATA + 0x3000), 0xFF, 20);
	assert_int_equal(blk_request(f, 8, 0, DATA + 0x3000, 20, true, NULL), 0);
	assert_memory_equal(gpa(f, DATA + 0x3000), "TESTSERIAL\0", 11);
	/* Beyond the end, partially beyond, and not a whole sector: IOERR. */
	assert_int_equal(blk_request(f, 0, 128, DATA + 0x1000, 512, true, NULL), 1);
	assert_int_equal(blk_request(f, 0, 127, DATA + 0x1000, 1024, true, NULL), 1);
	assert_int_equal(blk_request(f, 0, UINT64_MAX / 256, DATA + 0x1000, 512, true, NULL), 1);
	assert_int_equal(blk_request(f, 0, 0, DATA + 0x1000, 100, true, NULL), 1);
	/* Unknown type: UNSUPP. */
	assert_int_equal(blk_request(f, 99, 0, 0, 0, false, NULL), 2);
	/* WRITE_ZEROES on sector 9, DISCARD on sectors 10-11 (range segments). */
	struct range { uint64_t sector; uint32_t num, flags; } seg = { 9, 1, 0 };
	memcpy(gpa(f, DATA + 0x4000), &seg, sizeof(seg));
	assert_int_equal(blk_request(f, 13, 0, DATA + 0x4000, sizeof(seg), false, NULL), 0);
	assert_int_equal(blk_request(f, 0, 9, DATA + 0x1000, 512, true, NULL), 0);
	for (int i = 0; i < 512; i++)
		assert_int_equal(gpa(f, DATA + 0x1000)[i], 0);
	seg = (struct range){ 10, 2, 0 };
	memcpy(gpa(f, DATA + 0x4000), &seg, sizeof(seg));
	assert_int_equal(blk_request(f, 11, 0, DATA + 0x4000, sizeof(seg), false, NULL), 0);
	seg = (struct range){ 10, 2, 0x80 }; /* unknown flag */
	memcpy(gpa(f, DATA + 0x4000), &seg, sizeof(seg));
	assert_int_equal(blk_request(f, 11, 0, DATA + 0x4000, sizeof(seg), false, NULL), 2);
	assert_int_equal(rd(f, CC_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET, 0);

	/* A request without room for a status byte cannot be answered: NEEDS_RESET. */
	set_desc(f, 0, DATA, 16, 0, 0);
	offer_and_notify(f, 0, 0);
	assert_true(wait_status(f, VIRTIO_STATUS_NEEDS_RESET));
	fx_free(f);
}

static void test_blk_read_only(void **state)
{
	(void)state;
	struct fx *f = blk_fx(",ro", 8192);

	assert_int_equal(fx_attach(f), 0);
	assert_true(device_features(f) & (1ULL << 5)); /* VIRTIO_BLK_F_RO */
	assert_false(device_features(f) & (1ULL << 13)); /* no DISCARD */
	blk_start(f);
	memset(gpa(f, DATA + 0x2000), 0xAB, 512);
	assert_int_equal(blk_request(f, 1, 1, DATA + 0x2000, 512, false, NULL), 1);
	assert_int_equal(blk_request(f, 0, 1, DATA + 0x1000, 512, true, NULL), 0);
	assert_int_equal(gpa(f, DATA + 0x1000)[0], 1); /* unchanged */
	assert_int_equal(blk_request(f, 4, 0, 0, 0, false, NULL), 0);
	fx_free(f);
}

static void test_blk_bad_options(void **state)
{
	(void)state;
	static const char *const bad[] = { ",sectorsize=1000", ",sectorsize=65536", ",serial=123456789012345678901",
					   ",ro=maybe" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fx *f = blk_fx(bad[i], 4096);
		assert_int_equal(fx_attach(f), -1);
		fx_free(f);
	}
	struct fx *f = fx_new("virtio-blk", "/nonexistent/disk.img");
	assert_int_equal(fx_attach(f), -1);
	fx_free(f);
	f = fx_new("virtio-blk", "/tmp");
	assert_int_equal(fx_attach(f), -1);
	fx_free(f);
}

static void test_slot_option_parsing(void **state)
{
	(void)state;
	struct config *cfg = config_new();

	assert_int_equal(virtio_parse_slot_options(cfg, "pci.0.4.0", "/x/y.img,ro,sectorsize=4096", "path"), 0);
	assert_string_equal(config_get(cfg, "pci.0.4.0.path"), "/x/y.img");
	assert_string_equal(config_get(cfg, "pci.0.4.0.ro"), "true");
	assert_string_equal(config_get(cfg, "pci.0.4.0.sectorsize"), "4096");
	assert_int_equal(virtio_parse_slot_options(cfg, "pci.0.5.0", "path=/z.img,nocache", "path"), 0);
	assert_string_equal(config_get(cfg, "pci.0.5.0.path"), "/z.img");
	assert_string_equal(config_get(cfg, "pci.0.5.0.nocache"), "true");
	assert_int_equal(virtio_parse_slot_options(cfg, "pci.0.6.0", "tap0,mac=02:00:00:00:00:01", "tap"), 0);
	assert_string_equal(config_get(cfg, "pci.0.6.0.tap"), "tap0");
	assert_int_equal(virtio_parse_slot_options(cfg, "pci.0.7.0", "a,=b", NULL), -1);
	config_free(cfg);
}


/* ---- two vCPUs racing on the queue registers ---- */

/*
 * Rings placed so that QSIZE entries fit in RAM and RACE_SIZE do not: the
 * used ring ends 8 bytes before the end of RAM. A queue that ran with a
 * size other than the one checked at enable would write past RAM (and its
 * in-flight bitmap, sized for the device's 64 entries, past its heap
 * block).
 */
#define RACE_USED (RAM_SIZE - 8 - (6 + 8 * QSIZE + 2))
#define RACE_SIZE 1024
#define RACE_ROUNDS 3000

struct racer {
	struct fx *f;
	bool reset_too; /* also write status 0, not only Q_SIZE */
	bool stop;
	unsigned enabled_with_wrong_size;
};

/* The second vCPU: keeps rewriting queue 0's size (and resetting the device). */
static void *race_writer(void *opaque)
{
	struct racer *r = opaque;

	for (unsigned i = 0; !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE); i++) {
		wr(r->f, CC_QSEL, 2, 0);
		wr(r->f, CC_QSIZE, 2, RACE_SIZE);
		if (r->reset_too && i % 4 == 0)
			wr(r->f, CC_STATUS, 1, 0);
	}
	return NULL;
}

/* The first vCPU: sets the queue up with QSIZE entries and uses it. */
static void race_enable_round(struct racer *r)
{
	struct fx *f = r->f;

	/* After the reset (negotiate) the device leaves the rings alone until this thread enables the queue. */
	negotiate(f, F_VERSION_1);
	memset(gpa(f, AVAIL), 0, 0x1000);
	set_desc(f, 0, DATA, 16, VIRTQ_DESC_F_WRITE, 0);
	wr(f, CC_QSEL, 2, 0);
	wr(f, CC_QSIZE, 2, QSIZE);
	wr(f, CC_QDESC, 8, DESC);
	wr(f, CC_QAVAIL, 8, AVAIL);
	wr(f, CC_QUSED, 8, RACE_USED);
	wr(f, CC_QEN, 2, 1);
	/* Without resets from the other vCPU, an enabled queue's size is the one checked. */
	if (!r->reset_too && rd(f, CC_QEN, 2) == 1 && rd(f, CC_QSIZE, 2) != QSIZE)
		r->enabled_with_wrong_size++;
	driver_ok(f);
	offer_and_notify(f, 0, 0);
}

static void race_queue_registers(bool reset_too)
{
	struct fx *f = fx_new("virtio-rnd", NULL);
	struct racer r = { .f = f, .reset_too = reset_too };
	pthread_t writer;

	assert_int_equal(fx_attach(f), 0);
	assert_int_equal(pthread_create(&writer, NULL, race_writer, &r), 0);
	for (unsigned round = 0; round < RACE_ROUNDS; round++)
		race_enable_round(&r);
	__atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
	pthread_join(writer, NULL);
	assert_int_equal(r.enabled_with_wrong_size, 0);
	/* Still a working device: a clean setup serves a request (reset first: the rings are rewritten). */
	wr(f, CC_STATUS, 1, 0);
	memset(gpa(f, USED), 0, 0x1000);
	memset(gpa(f, AVAIL), 0, 0x1000);
	assert_true(negotiate(f, F_VERSION_1) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(f, 0, QSIZE);
	driver_ok(f);
	set_desc(f, 0, DATA, 16, VIRTQ_DESC_F_WRITE, 0);
	offer_and_notify(f, 0, 0);
	assert_true(wait_used(f, 1));
	fx_free(f);
}

/* Q_SIZE written on one vCPU while another enables the queue. */
static void test_race_queue_size_against_enable(void **state)
{
	(void)state;
	race_queue_registers(false);
}

/* The same with device resets (status 0) from the second vCPU. */
static void test_race_reset_against_enable(void **state)
{
	(void)state;
	race_queue_registers(true);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_rnd, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_identity_and_capabilities),
		T(test_pci_cfg_window),
		T(test_features_ok_needs_version_1),
		T(test_queue_registers),
		T(test_rnd_request_intx_and_isr),
		T(test_requests_before_driver_ok_wait),
		T(test_bad_chain_needs_reset),
		T(test_bad_queue_size_needs_reset),
		T(test_ring_outside_ram_needs_reset),
		T(test_save_restore),
		cmocka_unit_test(test_blk_requests),
		cmocka_unit_test(test_blk_read_only),
		cmocka_unit_test(test_blk_bad_options),
		cmocka_unit_test(test_slot_option_parsing),
		cmocka_unit_test(test_race_queue_size_against_enable),
		cmocka_unit_test(test_race_reset_against_enable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
