/*
 * libFuzzer harness for the split virtqueue walker (src/virtio/virtq.c).
 *
 * The input is a small guest: a header choosing the queue size, features
 * and ring addresses, then the contents of a 16 KiB RAM region at GPA 0
 * (rings, descriptors, indirect tables and data all come from the input).
 * A second 4 KiB region sits at GPA 0x100000 behind a hole. Each region is
 * its own heap allocation of exactly its size, so AddressSanitizer reports
 * any host access the walker lets through outside guest RAM.
 *
 * The harness pops chains until the ring is empty or broken, touches every
 * byte of every buffer (reads the readable part, writes the writable part),
 * completes chains (some out of order, some given back with unpop), plays
 * with notification suppression, moves the avail index on the guest's
 * behalf from the tail of the input, and round-trips the queue through a
 * snapshot. Invariants are checked with __builtin_trap().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/memory.h"
#include "snapshot/state.h"
#include "virtio/virtq.h"

#define RAM0_SIZE 0x4000u
#define RAM1_GPA 0x100000u
#define RAM1_SIZE 0x1000u
#define MAX_QSIZE 256u
#define HEADER 12u

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

static unsigned errors;

static void on_error(struct virtq *vq, const char *msg, void *opaque)
{
	(void)opaque;
	CHECK(vq->broken);
	CHECK(msg && msg[0]);
	errors++;
}

static void touch(const struct virtq_chain *ch)
{
	volatile uint8_t sink = 0;
	uint64_t out = 0, in = 0;

	CHECK(ch->n_out + ch->n_in <= ch->max_iov);
	for (unsigned i = 0; i < ch->n_out; i++) {
		const uint8_t *p = ch->iov[i].iov_base;
		for (size_t j = 0; j < ch->iov[i].iov_len; j++)
			sink ^= p[j];
		out += ch->iov[i].iov_len;
	}
	for (unsigned i = ch->n_out; i < ch->n_out + ch->n_in; i++) {
		memset(ch->iov[i].iov_base, 0x5A, ch->iov[i].iov_len);
		in += ch->iov[i].iov_len;
	}
	CHECK(out == ch->out_len && in == ch->in_len);
	CHECK(out <= VIRTQ_MAX_CHAIN_BYTES && in <= VIRTQ_MAX_CHAIN_BYTES);
	(void)sink;
}

static void snapshot_roundtrip(struct virtq *vq, const struct virtq_layout *layout, struct guest_memory *mem)
{
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	struct virtq copy;
	struct virtq_layout reg;
	uint8_t *buf;
	size_t len;

	if (!w)
		return;
	virtq_save(vq, layout, w);
	if (state_writer_finish(w, &buf, &len) < 0) {
		state_writer_free(w);
		return;
	}
	state_writer_free(w);
	CHECK(virtq_init(&copy, mem, vq->index, vq->max_size, on_error, NULL) == 0);
	r = state_reader_new(buf, len);
	CHECK(r);
	/* What we saved ourselves must restore, and to the same progress. */
	CHECK(virtq_restore(&copy, r, &reg) == 0);
	CHECK(reg.size == vq->ring.size && reg.desc_gpa == vq->ring.desc_gpa);
	CHECK(copy.last_avail_idx == vq->last_avail_idx && copy.used_idx == vq->used_idx);
	CHECK(copy.ninflight == vq->ninflight && copy.broken == vq->broken);
	state_reader_free(r);
	free(buf);
	virtq_destroy(&copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct iovec iov[VIRTQ_MAX_IOV];
	struct guest_memory mem = { 0 };
	struct virtq vq;
	struct virtq_layout layout;
	struct virtq_chain ch = { .iov = iov };
	uint16_t pending[MAX_QSIZE];
	unsigned npending = 0, pops = 0;
	const uint8_t *tail;
	size_t tail_len, ram_len;

	if (size < HEADER)
		return 0;
	log_set_level(LOG_ERROR);
	errors = 0;

	uint8_t *ram0 = calloc(1, RAM0_SIZE), *ram1 = malloc(RAM1_SIZE);
	if (!ram0 || !ram1)
		abort();
	memset(ram1, 0xC3, RAM1_SIZE);
	ram_len = size - HEADER < RAM0_SIZE ? size - HEADER : RAM0_SIZE;
	memcpy(ram0, data + HEADER, ram_len);
	tail = data + HEADER + ram_len;
	tail_len = size - HEADER - ram_len;

	mem.size = RAM0_SIZE + RAM1_SIZE;
	mem.nregions = 2;
	mem.regions[0] = (struct mem_region){ .gpa = 0, .size = RAM0_SIZE, .hva = ram0 };
	mem.regions[1] = (struct mem_region){ .gpa = RAM1_GPA, .size = RAM1_SIZE, .offset = RAM0_SIZE, .hva = ram1 };

	CHECK(virtq_init(&vq, &mem, 0, MAX_QSIZE, on_error, NULL) == 0);
	/* Sizes 1..512 (512 is above what the device offers), 0, or not a power of 2. */
	layout.size = data[0] == 0xFF ? (uint16_t)(data[1] | 0x100)
		: data[0] % 11 == 10 ? 0 : (uint16_t)(1u << (data[0] % 11));
	vq.event_idx = data[1] & 1;
	vq.indirect = data[1] & 2;
	ch.max_iov = (data[1] & 4) ? 4 : VIRTQ_MAX_IOV;
	/* Ring addresses: mostly inside RAM 0, sometimes in RAM 1 or anywhere. */
	uint64_t addr[3];
	for (unsigned i = 0; i < 3; i++) {
		uint16_t v = (uint16_t)(data[2 + 2 * i] | data[3 + 2 * i] << 8);
		addr[i] = (data[8] >> (2 * i)) & 1 ? RAM1_GPA + (v & 0xFFF)
			: (data[8] >> (2 * i)) & 2 ? (uint64_t)v << 20 : (uint64_t)(v & 0x3FFF);
	}
	layout.desc_gpa = addr[0];
	layout.avail_gpa = addr[1];
	layout.used_gpa = addr[2];
	unsigned max_pops = 1 + data[9];
	uint8_t ops = data[10], ops2 = data[11];

	if (virtq_enable(&vq, &layout) == 0) {
		CHECK(vq.enabled && !vq.broken);
		if (ops & 1)
			virtq_notify_disable(&vq);
		for (;;) {
			int rc = virtq_pop(&vq, &ch);
			if (rc <= 0) {
				CHECK(rc == 0 || vq.broken);
				/* Guest moves on: take the next avail index from the input tail. */
				if (rc == 0 && tail_len >= 2 && !vq.broken && pops < max_pops) {
					uint16_t *idx = &vq.avail->idx;
					uint16_t v = (uint16_t)(tail[0] | tail[1] << 8);
					tail += 2, tail_len -= 2;
					__atomic_store_n(idx, v, __ATOMIC_RELAXED);
					continue;
				}
				break;
			}
			CHECK(ch.head < vq.ring.size);
			touch(&ch);
			pops++;
			if ((ops >> (pops % 8)) & 2) {
				virtq_unpop(&vq, ch.head);
				if (pops >= max_pops)
					break;
				if (virtq_pop(&vq, &ch) <= 0)
					break;
				touch(&ch);
			}
			if ((ops2 >> (pops % 8)) & 1) {
				pending[npending++ % MAX_QSIZE] = ch.head; /* complete later, out of order */
			} else {
				virtq_push(&vq, ch.head, ch.in_len);
				(void)virtq_need_interrupt(&vq);
			}
			if (pops >= max_pops)
				break;
			if ((ops & 0x80) && !virtq_notify_enable(&vq))
				virtq_notify_disable(&vq);
		}
		CHECK(vq.ninflight <= vq.ring.size);
		if (ops & 0x40)
			snapshot_roundtrip(&vq, &layout, &mem);
		for (unsigned i = npending < MAX_QSIZE ? npending : MAX_QSIZE; i-- > 0;)
			virtq_push(&vq, pending[i], 0);
		(void)virtq_need_interrupt(&vq);
		(void)virtq_notify_enable(&vq);
	} else {
		CHECK(vq.broken && !vq.enabled && errors == 1);
		CHECK(virtq_pop(&vq, &ch) == -1);
	}
	CHECK(errors <= 1);
	virtq_reset(&vq);
	CHECK(!vq.broken && vq.ninflight == 0);
	virtq_destroy(&vq);
	free(ram0);
	free(ram1);
	return 0;
}
