/* Split virtqueue: good chains, hostile chains, notification suppression, save/restore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/memory.h"
#include "core/platform.h"
#include "snapshot/state.h"
#include "virtio/virtq.h"

#define MEM_SIZE (256u << 20) /* memfd, MAP_NORESERVE: only touched pages cost */
#define QSIZE 16
#define DESC_GPA 0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA 0x3000
#define DATA_GPA 0x10000

struct fixture {
	struct guest_memory mem;
	struct virtq vq;
	struct virtq_layout layout; /* what the driver wrote to the registers */
	struct iovec iov[64];
	struct virtq_chain ch;
	unsigned errors;
	char last_error[200];
};

static void on_error(struct virtq *vq, const char *msg, void *opaque)
{
	struct fixture *f = opaque;

	(void)vq;
	f->errors++;
	snprintf(f->last_error, sizeof(f->last_error), "%s", msg);
}

static uint8_t *gpa(struct fixture *f, uint64_t addr)
{
	return mem_gpa_to_hva(&f->mem, addr, 1);
}

static void set_desc_at(struct fixture *f, uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
			uint16_t next)
{
	struct virtq_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };

	memcpy(gpa(f, table + 16 * i), &d, sizeof(d));
}

static void set_desc(struct fixture *f, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	set_desc_at(f, DESC_GPA, i, addr, len, flags, next);
}

static struct virtq_avail *avail(struct fixture *f)
{
	return (struct virtq_avail *)gpa(f, AVAIL_GPA);
}

static struct virtq_used *used(struct fixture *f)
{
	return (struct virtq_used *)gpa(f, USED_GPA);
}

static void offer(struct fixture *f, uint16_t head)
{
	struct virtq_avail *a = avail(f);

	a->ring[a->idx % QSIZE] = head;
	a->idx++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	mem_layout(&f->mem, MEM_SIZE, platform_find("q35")->lowmem_limit);
	assert_int_equal(mem_alloc(&f->mem, "test-virtq"), 0);
	assert_int_equal(virtq_init(&f->vq, &f->mem, 0, QSIZE, on_error, f), 0);
	f->layout = (struct virtq_layout){ .size = QSIZE, .desc_gpa = DESC_GPA, .avail_gpa = AVAIL_GPA, .used_gpa = USED_GPA };
	f->ch.iov = f->iov;
	f->ch.max_iov = 64;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	virtq_destroy(&f->vq);
	mem_free(&f->mem);
	free(f);
	return 0;
}

static void enable(struct fixture *f)
{
	assert_int_equal(virtq_enable(&f->vq, &f->layout), 0);
}

static void assert_broken(struct fixture *f, const char *what)
{
	assert_int_equal(virtq_pop(&f->vq, &f->ch), -1);
	assert_true(f->vq.broken);
	assert_int_equal(f->errors, 1);
	if (!strstr(f->last_error, what))
		fail_msg("error '%s' does not mention '%s'", f->last_error, what);
	/* Broken stays broken, and reports only once. */
	assert_int_equal(virtq_pop(&f->vq, &f->ch), -1);
	assert_false(virtq_has_avail(&f->vq));
	assert_int_equal(f->errors, 1);
}

/* ---- good chains ---- */

static void test_empty_ring(void **state)
{
	struct fixture *f = *state;

	enable(f);
	assert_false(virtq_has_avail(&f->vq));
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 0);
	assert_int_equal(f->errors, 0);
}

static void test_disabled_queue_yields_nothing(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 0, DATA_GPA, 8, 0, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 0);
	assert_int_equal(f->errors, 0);
}

static void test_good_chain(void **state)
{
	struct fixture *f = *state;

	enable(f);
	memcpy(gpa(f, DATA_GPA), "hello, ", 7);
	memcpy(gpa(f, DATA_GPA + 0x100), "world", 5);
	set_desc(f, 3, DATA_GPA, 7, VIRTQ_DESC_F_NEXT, 7);
	set_desc(f, 7, DATA_GPA + 0x100, 5, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 2, DATA_GPA + 0x200, 100, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 5);
	set_desc(f, 5, DATA_GPA + 0x400, 28, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 3);
	assert_true(virtq_has_avail(&f->vq));
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.head, 3);
	assert_int_equal(f->ch.n_out, 2);
	assert_int_equal(f->ch.n_in, 2);
	assert_int_equal(f->ch.out_len, 12);
	assert_int_equal(f->ch.in_len, 128);
	assert_ptr_equal(f->iov[0].iov_base, gpa(f, DATA_GPA));
	assert_int_equal(f->iov[3].iov_len, 28);

	char buf[32] = { 0 };
	assert_int_equal(virtq_chain_read(&f->ch, 0, buf, sizeof(buf)), 12);
	assert_string_equal(buf, "hello, world");
	assert_int_equal(virtq_chain_read(&f->ch, 5, buf, 4), 4);
	assert_memory_equal(buf, ", wo", 4);
	/* A write that spans both writable buffers. */
	uint8_t pattern[120];
	memset(pattern, 0xAB, sizeof(pattern));
	assert_int_equal(virtq_chain_write(&f->ch, 10, pattern, sizeof(pattern)), 118);
	assert_int_equal(gpa(f, DATA_GPA + 0x200)[9], 0);
	assert_int_equal(gpa(f, DATA_GPA + 0x200)[10], 0xAB);
	assert_int_equal(gpa(f, DATA_GPA + 0x400)[27], 0xAB);

	assert_int_equal(f->vq.ninflight, 1);
	virtq_push(&f->vq, 3, 128);
	assert_int_equal(f->vq.ninflight, 0);
	assert_int_equal(used(f)->idx, 1);
	assert_int_equal(used(f)->ring[0].id, 3);
	assert_int_equal(used(f)->ring[0].len, 128);
	assert_true(virtq_need_interrupt(&f->vq));
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 0);
	assert_int_equal(f->errors, 0);
}

static void test_ring_wraps(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 1, DATA_GPA, 4, VIRTQ_DESC_F_WRITE, 0);
	for (unsigned round = 0; round < 3 * QSIZE + 5; round++) {
		offer(f, 1);
		assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
		virtq_push(&f->vq, 1, 4);
	}
	assert_int_equal(used(f)->idx, 3 * QSIZE + 5);
	/* Index arithmetic across the 16-bit wrap. */
	virtq_reset(&f->vq);
	memset(avail(f), 0, 64);
	memset(used(f), 0, 256);
	f->layout = (struct virtq_layout){ .size = QSIZE, .desc_gpa = DESC_GPA, .avail_gpa = AVAIL_GPA, .used_gpa = USED_GPA };
	enable(f);
	f->vq.last_avail_idx = f->vq.used_idx = 65534;
	avail(f)->idx = 65534;
	for (unsigned i = 0; i < 4; i++)
		offer(f, 1), assert_int_equal(virtq_pop(&f->vq, &f->ch), 1), virtq_push(&f->vq, 1, 0);
	assert_int_equal(used(f)->idx, 2);
	assert_int_equal(f->errors, 0);
}

static void test_several_in_flight(void **state)
{
	struct fixture *f = *state;
	uint16_t heads[4];

	enable(f);
	for (unsigned i = 0; i < 4; i++) {
		set_desc(f, i, DATA_GPA + 0x1000 * i, 512, VIRTQ_DESC_F_WRITE, 0);
		offer(f, (uint16_t)i);
	}
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(virtq_inflight_heads(&f->vq, heads, 4), 4);
	/* Completion out of order. */
	virtq_push(&f->vq, 2, 1);
	virtq_push(&f->vq, 0, 2);
	assert_int_equal(virtq_inflight_heads(&f->vq, heads, 4), 2);
	assert_int_equal(heads[0], 1);
	assert_int_equal(heads[1], 3);
	assert_int_equal(used(f)->ring[0].id, 2);
	assert_int_equal(used(f)->ring[1].id, 0);
	/* Pushing a head not in flight is ignored. */
	virtq_push(&f->vq, 2, 1);
	assert_int_equal(used(f)->idx, 2);
}

static void test_unpop(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 4, DATA_GPA, 64, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 4);
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	virtq_unpop(&f->vq, 4);
	assert_int_equal(f->vq.ninflight, 0);
	assert_true(virtq_has_avail(&f->vq));
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.head, 4);
}

static void test_indirect_chain(void **state)
{
	struct fixture *f = *state;
	const uint64_t table = 0x8000;

	f->vq.indirect = true;
	enable(f);
	set_desc_at(f, table, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc_at(f, table, 2, DATA_GPA + 0x100, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	set_desc_at(f, table, 1, DATA_GPA + 0x2000, 1, VIRTQ_DESC_F_WRITE, 0);
	/* A direct descriptor may precede the indirect one. */
	set_desc(f, 6, DATA_GPA + 0x3000, 8, VIRTQ_DESC_F_NEXT, 9);
	set_desc(f, 9, table, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 6);
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.n_out, 2);
	assert_int_equal(f->ch.n_in, 2);
	assert_int_equal(f->ch.out_len, 24);
	assert_int_equal(f->ch.in_len, 4097);
	assert_int_equal(f->errors, 0);
}

static bool page_marked(const uint64_t *bitmap, uint64_t page)
{
	return bitmap[page / 64] & (1ULL << (page % 64));
}

/*
 * While a live snapshot tracks device writes (core/memory.h), returning a
 * chain marks its writable buffers, through an indirect table too, and
 * the used ring; readable buffers and the tables are not marked.
 */
static void test_push_marks_device_writes(void **state)
{
	struct fixture *f = *state;
	const uint64_t table = 0x8000;
	uint64_t *bitmap = calloc(mem_page_words(&f->mem), sizeof(*bitmap));

	f->vq.indirect = true;
	enable(f);
	set_desc_at(f, table, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc_at(f, table, 2, DATA_GPA + 0x100, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	set_desc_at(f, table, 1, DATA_GPA + 0x2000, 1, VIRTQ_DESC_F_WRITE, 0);
	set_desc(f, 6, DATA_GPA + 0x3000, 8, VIRTQ_DESC_F_NEXT, 9);
	set_desc(f, 9, table, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 6);
	offer(f, 6);
	/* Not tracking: nothing is marked. */
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	virtq_push(&f->vq, 6, 4097);
	assert_int_equal(mem_track_dirty(&f->mem, true), 0);
	assert_int_equal(mem_take_dirty(&f->mem, bitmap), 0);
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	virtq_push(&f->vq, 6, 4097);
	assert_int_equal(mem_take_dirty(&f->mem, bitmap), 4);
	assert_true(page_marked(bitmap, DATA_GPA / 4096));       /* the first writable buffer's two pages */
	assert_true(page_marked(bitmap, DATA_GPA / 4096 + 1));
	assert_true(page_marked(bitmap, DATA_GPA / 4096 + 2));   /* the second */
	assert_true(page_marked(bitmap, USED_GPA / 4096));       /* the used ring */
	assert_false(page_marked(bitmap, DATA_GPA / 4096 + 3));  /* readable only */
	assert_false(page_marked(bitmap, table / 4096));
	assert_false(page_marked(bitmap, DESC_GPA / 4096));
	/* Taken means cleared. */
	memset(bitmap, 0, mem_page_words(&f->mem) * sizeof(*bitmap));
	assert_int_equal(mem_take_dirty(&f->mem, bitmap), 0);
	/* Re-arming notifications writes the used ring too. */
	virtq_notify_enable(&f->vq);
	assert_int_equal(mem_take_dirty(&f->mem, bitmap), 1);
	assert_true(page_marked(bitmap, USED_GPA / 4096));
	assert_int_equal(mem_track_dirty(&f->mem, false), 0);
	free(bitmap);
}

static void test_zero_length_buffers_skipped(void **state)
{
	struct fixture *f = *state;

	enable(f);
	/* Zero-length descriptors carry no buffer, whatever their address. */
	set_desc(f, 0, 0xFFFFFFFFFFFF0000ULL, 0, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, DATA_GPA, 10, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	assert_int_equal(f->ch.n_out, 0);
	assert_int_equal(f->ch.n_in, 1);
}

/* ---- hostile chains ---- */

static void test_loop(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 2, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	offer(f, 0);
	assert_broken(f, "loop");
}

static void test_self_loop(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 5, DATA_GPA, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 5);
	offer(f, 5);
	assert_broken(f, "loop");
}

static void test_loop_inside_indirect_table(void **state)
{
	struct fixture *f = *state;
	const uint64_t table = 0x8000;

	f->vq.indirect = true;
	enable(f);
	set_desc_at(f, table, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc_at(f, table, 1, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	set_desc(f, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_broken(f, "loop");
}

static void test_buffer_outside_ram(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 0, MEM_SIZE - 4, 8, VIRTQ_DESC_F_WRITE, 0); /* straddles the end of RAM */
	offer(f, 0);
	assert_broken(f, "outside guest RAM");
}

static void test_buffer_in_pci_hole(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 0, 0xFEE00000, 4, 0, 0);
	offer(f, 0);
	assert_broken(f, "outside guest RAM");
}

static void test_address_wraps_around(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 0, 0xFFFFFFFFFFFFFFF0ULL, 0x20, 0, 0);
	offer(f, 0);
	assert_broken(f, "outside guest RAM");
}

static void test_total_length_capped(void **state)
{
	struct fixture *f = *state;

	enable(f);
	/* Each buffer is valid RAM; together they exceed the per-chain cap. */
	set_desc(f, 0, 0, 100u << 20, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, 0, 100u << 20, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_broken(f, "writable bytes");
}

static void test_max_length_u32(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 0, 0, UINT32_MAX, 0, 0);
	offer(f, 0);
	assert_broken(f, "readable bytes");
}

static void test_nested_indirect(void **state)
{
	struct fixture *f = *state;
	const uint64_t table = 0x8000;

	f->vq.indirect = true;
	enable(f);
	set_desc_at(f, table, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(f, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_broken(f, "nested indirect");
}

static void test_indirect_not_negotiated(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc_at(f, 0x8000, 0, DATA_GPA, 16, 0, 0);
	set_desc(f, 0, 0x8000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_broken(f, "INDIRECT_DESC");
}

static void test_indirect_bad_length(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	enable(f);
	set_desc(f, 0, 0x8000, 24, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_broken(f, "multiple of 16");
}

static void test_indirect_zero_length(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	enable(f);
	set_desc(f, 0, 0x8000, 0, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_broken(f, "indirect table length");
}

static void test_indirect_too_large(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	enable(f);
	set_desc(f, 0, 0x8000, 16 * (VIRTQ_MAX_INDIRECT + 1), VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_broken(f, "indirect table length");
}

static void test_indirect_table_outside_ram(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	enable(f);
	set_desc(f, 0, MEM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_broken(f, "outside guest RAM");
}

static void test_indirect_with_next(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	enable(f);
	set_desc_at(f, 0x8000, 0, DATA_GPA, 16, 0, 0);
	set_desc(f, 0, 0x8000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, DATA_GPA, 16, 0, 0);
	offer(f, 0);
	assert_broken(f, "with NEXT");
}

static void test_indirect_next_out_of_table(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	enable(f);
	set_desc_at(f, 0x8000, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 2); /* table holds 2 */
	set_desc(f, 0, 0x8000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_broken(f, "out of range");
}

static void test_next_out_of_range(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, QSIZE);
	offer(f, 0);
	assert_broken(f, "out of range");
}

static void test_readable_after_writable(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 0, DATA_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, DATA_GPA, 8, 0, 0);
	offer(f, 0);
	assert_broken(f, "readable descriptor");
}

static void test_readable_after_empty_writable(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 0, DATA_GPA, 0, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, DATA_GPA, 8, 0, 0);
	offer(f, 0);
	assert_broken(f, "readable descriptor");
}

static void test_head_out_of_range(void **state)
{
	struct fixture *f = *state;

	enable(f);
	offer(f, QSIZE + 3);
	assert_broken(f, "out of range");
}

static void test_head_reused_while_in_flight(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 0, DATA_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	assert_broken(f, "already in use");
}

static void test_avail_index_runs_ahead(void **state)
{
	struct fixture *f = *state;

	enable(f);
	avail(f)->idx = QSIZE + 1;
	assert_broken(f, "ahead");
}

static void test_too_many_buffers(void **state)
{
	struct fixture *f = *state;

	f->ch.max_iov = 2;
	enable(f);
	set_desc(f, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 2, DATA_GPA, 8, 0, 0);
	offer(f, 0);
	assert_broken(f, "buffers");
}

static void test_reset_clears_broken(void **state)
{
	struct fixture *f = *state;

	enable(f);
	offer(f, 99);
	assert_broken(f, "out of range");
	virtq_reset(&f->vq);
	assert_false(f->vq.broken);
	memset(avail(f), 0, 64);
	memset(used(f), 0, 256);
	f->layout = (struct virtq_layout){ .size = QSIZE, .desc_gpa = DESC_GPA, .avail_gpa = AVAIL_GPA, .used_gpa = USED_GPA };
	enable(f);
	set_desc(f, 0, DATA_GPA, 8, 0, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
}

/* ---- queue setup ---- */

static void expect_enable_fails(struct fixture *f, const char *what)
{
	assert_int_equal(virtq_enable(&f->vq, &f->layout), -1);
	assert_false(f->vq.enabled);
	assert_true(f->vq.broken);
	assert_int_equal(f->errors, 1);
	if (!strstr(f->last_error, what))
		fail_msg("error '%s' does not mention '%s'", f->last_error, what);
	assert_int_equal(virtq_pop(&f->vq, &f->ch), -1);
}

static void test_zero_size_queue(void **state)
{
	struct fixture *f = *state;

	f->layout.size = 0;
	expect_enable_fails(f, "size 0");
}

static void test_size_not_power_of_2(void **state)
{
	struct fixture *f = *state;

	f->layout.size = 12;
	expect_enable_fails(f, "size 12");
}

static void test_size_above_max(void **state)
{
	struct fixture *f = *state;

	f->layout.size = 2 * QSIZE;
	expect_enable_fails(f, "size 32");
}

static void test_misaligned_rings(void **state)
{
	struct fixture *f = *state;

	f->layout.desc_gpa = DESC_GPA + 8;
	expect_enable_fails(f, "misaligned");
}

static void test_rings_outside_ram(void **state)
{
	struct fixture *f = *state;

	f->layout.used_gpa = MEM_SIZE - 64; /* the used ring needs 6 + 8 * 16 bytes */
	expect_enable_fails(f, "outside guest RAM");
}

static void test_smaller_queue_size(void **state)
{
	struct fixture *f = *state;

	f->layout.size = 4;
	enable(f);
	set_desc(f, 3, DATA_GPA, 8, 0, 0);
	offer(f, 3); /* offer() indexes modulo 16: fine for the first entry */
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	set_desc(f, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 4); /* valid in a 16-entry table, not in 4 */
	avail(f)->ring[1] = 0;
	avail(f)->idx++;
	assert_broken(f, "out of range");
}

/* ---- notification suppression ---- */

static void test_no_interrupt_flag(void **state)
{
	struct fixture *f = *state;

	enable(f);
	set_desc(f, 0, DATA_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	avail(f)->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	virtq_push(&f->vq, 0, 8);
	assert_false(virtq_need_interrupt(&f->vq));
	avail(f)->flags = 0;
	assert_true(virtq_need_interrupt(&f->vq));
}

static void test_no_notify_flag(void **state)
{
	struct fixture *f = *state;

	enable(f);
	virtq_notify_disable(&f->vq);
	assert_int_equal(used(f)->flags, VIRTQ_USED_F_NO_NOTIFY);
	assert_false(virtq_notify_enable(&f->vq));
	assert_int_equal(used(f)->flags, 0);
	set_desc(f, 0, DATA_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_true(virtq_notify_enable(&f->vq));
}

static void test_event_idx(void **state)
{
	struct fixture *f = *state;
	uint16_t *used_event = &avail(f)->ring[QSIZE];
	uint16_t *avail_event = (uint16_t *)&used(f)->ring[QSIZE];

	f->vq.event_idx = true;
	enable(f);
	for (unsigned i = 0; i < 8; i++)
		set_desc(f, i, DATA_GPA + 64 * i, 8, VIRTQ_DESC_F_WRITE, 0), offer(f, (uint16_t)i);

	/* The first completion always interrupts. */
	*used_event = 0;
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	virtq_push(&f->vq, f->ch.head, 1);
	assert_true(virtq_need_interrupt(&f->vq));

	/* Driver wants an interrupt once used idx passes 3 (i.e. after entry 3 is used). */
	*used_event = 3;
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	virtq_push(&f->vq, f->ch.head, 1); /* used idx 2 */
	assert_false(virtq_need_interrupt(&f->vq));
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	virtq_push(&f->vq, f->ch.head, 1); /* used idx 3 */
	assert_false(virtq_need_interrupt(&f->vq));
	assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	virtq_push(&f->vq, f->ch.head, 1); /* used idx 4: crosses used_event 3 */
	assert_true(virtq_need_interrupt(&f->vq));
	/* Nothing new: no interrupt. */
	assert_false(virtq_need_interrupt(&f->vq));

	/* A batch that jumps over used_event still interrupts once. */
	*used_event = 5;
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
		virtq_push(&f->vq, f->ch.head, 1);
	}
	assert_true(virtq_need_interrupt(&f->vq));

	/* Re-arming publishes avail_event = next entry the device will read. */
	assert_true(virtq_notify_enable(&f->vq)); /* entry 7 is still waiting */
	assert_int_equal(*avail_event, 7);
	/* NO_NOTIFY is not used with EVENT_IDX. */
	virtq_notify_disable(&f->vq);
	assert_int_equal(used(f)->flags, 0);
	assert_int_equal(f->errors, 0);
}

/* ---- save / restore ---- */

static void test_save_restore(void **state)
{
	struct fixture *f = *state;
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	struct virtq copy;
	struct virtq_layout reg;
	uint16_t heads[4];
	uint8_t *buf;
	size_t len;

	f->vq.event_idx = true;
	f->vq.indirect = true;
	enable(f);
	for (unsigned i = 0; i < 5; i++)
		set_desc(f, i, DATA_GPA + 64 * i, 8, VIRTQ_DESC_F_WRITE, 0), offer(f, (uint16_t)i);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(virtq_pop(&f->vq, &f->ch), 1);
	virtq_push(&f->vq, 1, 8);
	assert_true(virtq_need_interrupt(&f->vq));

	state_begin_map(w, "q0");
	virtq_save(&f->vq, &f->layout, w);
	state_end_map(w);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);

	assert_int_equal(virtq_init(&copy, &f->mem, 0, QSIZE, on_error, f), 0);
	r = state_reader_new(buf, len);
	assert_non_null(r);
	assert_int_equal(state_enter_map(r, "q0"), 0);
	assert_int_equal(virtq_restore(&copy, r, &reg), 0);
	state_reader_free(r);
	free(buf);

	assert_true(copy.enabled);
	assert_true(copy.event_idx && copy.indirect);
	assert_int_equal(copy.ring.size, QSIZE);
	assert_int_equal(reg.size, QSIZE);
	assert_int_equal(reg.used_gpa, USED_GPA);
	assert_int_equal(copy.last_avail_idx, 4);
	assert_int_equal(copy.used_idx, 1);
	assert_int_equal(copy.signalled_used, 1);
	assert_true(copy.signalled_valid);
	assert_int_equal(virtq_inflight_heads(&copy, heads, 4), 3);
	assert_int_equal(heads[0], 0);
	assert_int_equal(heads[1], 2);
	assert_int_equal(heads[2], 3);
	/* In-flight chains can be walked again for resubmission. */
	assert_int_equal(virtq_walk(&copy, 2, &f->ch), 1);
	assert_ptr_equal(f->iov[0].iov_base, gpa(f, DATA_GPA + 128));
	/* The restored queue goes on where the original stopped. */
	assert_int_equal(virtq_pop(&copy, &f->ch), 1);
	assert_int_equal(f->ch.head, 4);
	virtq_push(&copy, 0, 8);
	assert_int_equal(used(f)->idx, 2);
	virtq_destroy(&copy);
}

static void test_restore_rejects_bad_state(void **state)
{
	struct fixture *f = *state;
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	struct virtq copy;
	struct virtq_layout reg;
	uint8_t *buf;
	size_t len;

	enable(f);
	f->vq.ring.used_gpa = MEM_SIZE; /* forged: rings outside RAM */
	virtq_save(&f->vq, &f->layout, w);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	assert_int_equal(virtq_init(&copy, &f->mem, 0, QSIZE, on_error, f), 0);
	r = state_reader_new(buf, len);
	assert_int_equal(virtq_restore(&copy, r, &reg), -1);
	state_reader_free(r);
	free(buf);
	virtq_destroy(&copy);

	/* Size above what the device offers. */
	assert_int_equal(virtq_init(&copy, &f->mem, 0, 8, on_error, f), 0);
	w = state_writer_new();
	f->vq.ring.used_gpa = USED_GPA;
	virtq_save(&f->vq, &f->layout, w);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	r = state_reader_new(buf, len);
	assert_int_equal(virtq_restore(&copy, r, &reg), -1);
	state_reader_free(r);
	free(buf);
	virtq_destroy(&copy);
}

static void test_init_rejects_bad_max_size(void **state)
{
	struct virtq vq;

	(void)state;
	assert_int_equal(virtq_init(&vq, NULL, 0, 0, NULL, NULL), -1);
	assert_int_equal(virtq_init(&vq, NULL, 0, 100, NULL, NULL), -1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_empty_ring),
		T(test_disabled_queue_yields_nothing),
		T(test_good_chain),
		T(test_push_marks_device_writes),
		T(test_ring_wraps),
		T(test_several_in_flight),
		T(test_unpop),
		T(test_indirect_chain),
		T(test_zero_length_buffers_skipped),
		T(test_loop),
		T(test_self_loop),
		T(test_loop_inside_indirect_table),
		T(test_buffer_outside_ram),
		T(test_buffer_in_pci_hole),
		T(test_address_wraps_around),
		T(test_total_length_capped),
		T(test_max_length_u32),
		T(test_nested_indirect),
		T(test_indirect_not_negotiated),
		T(test_indirect_bad_length),
		T(test_indirect_zero_length),
		T(test_indirect_too_large),
		T(test_indirect_table_outside_ram),
		T(test_indirect_with_next),
		T(test_indirect_next_out_of_table),
		T(test_next_out_of_range),
		T(test_readable_after_writable),
		T(test_readable_after_empty_writable),
		T(test_head_out_of_range),
		T(test_head_reused_while_in_flight),
		T(test_avail_index_runs_ahead),
		T(test_too_many_buffers),
		T(test_reset_clears_broken),
		T(test_zero_size_queue),
		T(test_size_not_power_of_2),
		T(test_size_above_max),
		T(test_misaligned_rings),
		T(test_rings_outside_ram),
		T(test_smaller_queue_size),
		T(test_no_interrupt_flag),
		T(test_no_notify_flag),
		T(test_event_idx),
		T(test_save_restore),
		T(test_restore_rejects_bad_state),
		cmocka_unit_test(test_init_rejects_bad_max_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
