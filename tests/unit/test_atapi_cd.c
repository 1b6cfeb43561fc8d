/*
 * The ATAPI CD-ROM's packet commands against real image files: data, sense
 * and unit attentions, the tray and its lock, media changes through a
 * descriptor, save/restore, and hostile CDBs and buffers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "sata/atapi_cd.h"
#include "snapshot/state.h"

#define BLK ATAPI_CD_BLOCK
#define A_BLOCKS 100u
#define B_BLOCKS 37u
/* Beyond 80 minutes of CD, the drive calls it a DVD; beyond 255 minutes, MSF runs out (a sparse file). */
#define DVD_BLOCKS 1200000u

#define GUARD 64
#define GUARD_BYTE 0xe5

struct fixture {
	char dir[64];
	char a[96], b[96];
	struct atapi_cd *cd;
};

static uint8_t pattern(unsigned seed, uint64_t off)
{
	return (uint8_t)(off / BLK * 31 + off % BLK * 7 + seed);
}

static void make_image(const char *path, unsigned blocks, unsigned seed)
{
	uint8_t block[BLK];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	for (unsigned b = 0; b < blocks; b++) {
		for (unsigned j = 0; j < BLK; j++)
			block[j] = pattern(seed, (uint64_t)b * BLK + j);
		assert_int_equal(write(fd, block, BLK), BLK);
	}
	close(fd);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/hyve-atapi-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->a, sizeof(f->a), "%s/a.iso", f->dir);
	snprintf(f->b, sizeof(f->b), "%s/b.iso", f->dir);
	make_image(f->a, A_BLOCKS, 1);
	make_image(f->b, B_BLOCKS, 2);
	f->cd = atapi_cd_new("ahci.0:1", f->a, "CDSERIAL42");
	if (!f->cd)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];

	atapi_cd_free(f->cd);
	unlink(f->a);
	unlink(f->b);
	snprintf(path, sizeof(path), "%s/dvd.iso", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- guest buffers with guards: whatever the drive writes outside them is caught ---- */

struct buffers {
	struct iovec iov[256];
	uint8_t *mem[256];
	struct sata_sg sg;
};

static void buffers_init(struct buffers *b, const size_t *lens, unsigned n)
{
	assert_true(n <= 256);
	memset(b, 0, sizeof(*b));
	for (unsigned i = 0; i < n; i++) {
		b->mem[i] = malloc(lens[i] + 2 * GUARD);
		memset(b->mem[i], GUARD_BYTE, lens[i] + 2 * GUARD);
		b->iov[i] = (struct iovec){ .iov_base = b->mem[i] + GUARD, .iov_len = lens[i] };
		b->sg.len += lens[i];
	}
	b->sg.iov = b->iov;
	b->sg.n = n;
}

static void buffers_single(struct buffers *b, size_t len)
{
	buffers_init(b, &len, 1);
}

static void buffers_check_free(struct buffers *b)
{
	for (unsigned i = 0; i < b->sg.n; i++) {
		for (unsigned g = 0; g < GUARD; g++) {
			assert_int_equal(b->mem[i][g], GUARD_BYTE);
			assert_int_equal(b->mem[i][GUARD + b->iov[i].iov_len + g], GUARD_BYTE);
		}
		free(b->mem[i]);
	}
}

/* The buffers' bytes as one array (the test's view of what the guest received). */
static void buffers_flatten(const struct buffers *b, uint8_t *out, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < b->sg.n && done < len; i++) {
		size_t n = b->iov[i].iov_len < len - done ? b->iov[i].iov_len : len - done;
		memcpy(out + done, b->iov[i].iov_base, n);
		done += n;
	}
}

/* ---- commands ---- */

#define CHECK_CONDITION(key) ((uint8_t)((key) << 4 | ATA_ERROR_ABRT))

static struct sata_result packet(struct atapi_cd *cd, const uint8_t *cdb, size_t cdb_len, struct buffers *b)
{
	uint8_t full[16] = { 0 };
	struct sata_result res;
	struct sata_sg none = { 0 };

	memcpy(full, cdb, cdb_len);
	memset(&res, 0xcc, sizeof(res));
	atapi_cd_packet(cd, full, b ? &b->sg : &none, &res);
	assert_true(res.status & ATA_STATUS_DRDY);
	assert_false(res.status & (ATA_STATUS_BSY | ATA_STATUS_DRQ));
	if (res.status & ATA_STATUS_ERR)
		assert_int_equal(res.error & 0x0f, ATA_ERROR_ABRT);
	else
		assert_int_equal(res.error, 0);
	if (b)
		assert_true(res.transferred <= b->sg.len);
	else
		assert_int_equal(res.transferred, 0);
	return res;
}

#define PACKET(cd, b, ...) packet(cd, (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }), b)

/* Data-in command into one buffer of size len: the bytes it gave, in out. */
static struct sata_result data_in(struct atapi_cd *cd, const uint8_t *cdb, size_t cdb_len, size_t len, uint8_t *out)
{
	struct buffers b;
	struct sata_result res;

	buffers_single(&b, len);
	res = packet(cd, cdb, cdb_len, &b);
	if (out)
		buffers_flatten(&b, out, (size_t)res.transferred);
	buffers_check_free(&b);
	return res;
}

#define DATA_IN(cd, len, out, ...)                                                                                     \
	data_in(cd, (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ }), len, out)

static void assert_ok(struct sata_result res)
{
	assert_int_equal(res.status, ATA_STATUS_DRDY);
}

static void assert_fails(struct sata_result res, uint8_t key)
{
	assert_int_equal(res.status, ATA_STATUS_DRDY | ATA_STATUS_ERR);
	assert_int_equal(res.error, CHECK_CONDITION(key));
}

/* REQUEST SENSE: the fixed-format sense must be key/asc/ascq. */
static void assert_sense(struct atapi_cd *cd, uint8_t key, uint8_t asc, uint8_t ascq)
{
	uint8_t s[18];
	struct sata_result res = DATA_IN(cd, 252, s, 0x03, 0, 0, 0, 252, 0);

	assert_ok(res);
	assert_int_equal(res.transferred, 18);
	assert_int_equal(s[0], 0x70);
	assert_int_equal(s[7], 10);
	assert_int_equal(s[2] & 0x0f, key);
	assert_int_equal(s[12], asc);
	assert_int_equal(s[13], ascq);
}

/* A command fails with key/asc/ascq (and REQUEST SENSE says so). */
#define ASSERT_CHECK(cd, key, asc, ascq, ...)                                                                          \
	do {                                                                                                           \
		assert_fails(PACKET(cd, NULL, __VA_ARGS__), key);                                                      \
		assert_sense(cd, key, asc, ascq);                                                                      \
	} while (0)

static void consume_power_on(struct atapi_cd *cd)
{
	ASSERT_CHECK(cd, 6, 0x29, 0, 0x00);
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)be16(p) << 16 | be16(p + 2);
}

static void check_pattern(const uint8_t *data, size_t len, unsigned seed, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		if (data[i] != pattern(seed, off + i))
			fail_msg("byte %zu of the read (image offset %llu) is %#x", i, (unsigned long long)(off + i),
				 data[i]);
}

/* ---- unit attention and sense ---- */

static void test_power_on_unit_attention(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[96];

	/* INQUIRY, GET EVENT STATUS NOTIFICATION and GET CONFIGURATION leave it pending */
	assert_ok(DATA_IN(f->cd, 96, buf, 0x12, 0, 0, 0, 96, 0));
	assert_ok(DATA_IN(f->cd, 8, buf, 0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0));
	assert_ok(DATA_IN(f->cd, 8, buf, 0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0));
	assert_fails(PACKET(f->cd, NULL, 0x00), 6);
	assert_sense(f->cd, 6, 0x29, 0);
	assert_ok(PACKET(f->cd, NULL, 0x00));
	assert_sense(f->cd, 0, 0, 0);

	/* REQUEST SENSE itself reports (and clears) a pending unit attention */
	atapi_cd_reset(f->cd);
	assert_sense(f->cd, 6, 0x29, 0);
	assert_ok(PACKET(f->cd, NULL, 0x00));

	/* a reported unit attention keeps the command from running */
	atapi_cd_reset(f->cd);
	assert_fails(DATA_IN(f->cd, 8, buf, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), 6);
}

static void test_sense_lifetime(void **state)
{
	struct fixture *f = *state;

	consume_power_on(f->cd);
	ASSERT_CHECK(f->cd, 5, 0x20, 0, 0xff);
	/* read once, then gone */
	assert_sense(f->cd, 0, 0, 0);
	/* any other command clears it too (ATAPI hosts fetch it right away) */
	assert_fails(PACKET(f->cd, NULL, 0x55), 5);
	assert_ok(PACKET(f->cd, NULL, 0x00));
	assert_sense(f->cd, 0, 0, 0);
	/* descriptor format is not offered */
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x03, 0x01, 0, 0, 18, 0);
}

static void test_invalid_field_pointer(void **state)
{
	struct fixture *f = *state;
	uint8_t s[18];

	consume_power_on(f->cd);
	/* GET CONFIGURATION with RT 3: byte 1, bit 1 */
	assert_fails(PACKET(f->cd, NULL, 0x46, 0x03, 0, 0, 0, 0, 0, 0, 8, 0), 5);
	assert_ok(DATA_IN(f->cd, 18, s, 0x03, 0, 0, 0, 18, 0));
	assert_int_equal(s[12], 0x24);
	assert_int_equal(s[15], 0x80 | 0x40 | 0x08 | 1);
	assert_int_equal(be16(s + 16), 1);
}

static void test_unsupported_opcodes(void **state)
{
	struct fixture *f = *state;
	static const uint8_t unsupported[] = { 0x04, 0x0a, 0x15, 0x2a, 0x35, 0x55, 0xa1, 0xad, 0xbe, 0xff };

	consume_power_on(f->cd);
	for (size_t i = 0; i < sizeof(unsupported); i++) {
		uint8_t cdb[12] = { unsupported[i], 0, 0, 0, 0xff, 0, 0, 0xff, 0xff, 0xff };

		assert_fails(packet(f->cd, cdb, sizeof(cdb), NULL), 5);
		assert_sense(f->cd, 5, 0x20, 0);
	}
}

/* ---- INQUIRY ---- */

static void test_inquiry(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[255];
	struct sata_result res;

	res = DATA_IN(f->cd, 255, buf, 0x12, 0, 0, 0, 255, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 36);
	assert_int_equal(buf[0], 0x05);
	assert_int_equal(buf[1], 0x80);
	assert_int_equal(buf[4], 31);
	assert_memory_equal(buf + 8, "HYVE    ", 8);
	assert_memory_equal(buf + 16, "HYVE DVD-ROM    ", 16);

	/* the allocation length and the buffers both bound the transfer */
	assert_int_equal(DATA_IN(f->cd, 255, buf, 0x12, 0, 0, 0, 5, 0).transferred, 5);
	assert_int_equal(DATA_IN(f->cd, 7, buf, 0x12, 0, 0, 0, 255, 0).transferred, 7);
	assert_int_equal(DATA_IN(f->cd, 255, buf, 0x12, 0, 0, 0, 0, 0).transferred, 0);
	assert_int_equal(DATA_IN(f->cd, 255, buf, 0x12, 0, 0, 1, 0, 0).transferred, 36);

	res = DATA_IN(f->cd, 255, buf, 0x12, 1, 0x00, 0, 255, 0);
	assert_ok(res);
	assert_int_equal(buf[1], 0x00);
	assert_int_equal(be16(buf + 2), res.transferred - 4);
	assert_non_null(memchr(buf + 4, 0x80, be16(buf + 2)));

	res = DATA_IN(f->cd, 255, buf, 0x12, 1, 0x80, 0, 255, 0);
	assert_ok(res);
	assert_int_equal(be16(buf + 2), strlen("CDSERIAL42"));
	assert_memory_equal(buf + 4, "CDSERIAL42", 10);

	res = DATA_IN(f->cd, 255, buf, 0x12, 1, 0x83, 0, 255, 0);
	assert_ok(res);
	assert_int_equal(buf[5] & 0x0f, 1); /* T10 vendor identification */
	assert_memory_equal(buf + 8, "HYVE    ", 8);

	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x12, 1, 0xb0, 0, 255, 0); /* no such VPD page */
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x12, 0, 0x80, 0, 255, 0); /* a page without EVPD */
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x12, 2, 0, 0, 255, 0);    /* CMDDT */
}

/* ---- capacity and data ---- */

static void test_read_capacity(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[8];

	consume_power_on(f->cd);
	assert_ok(DATA_IN(f->cd, 8, buf, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0));
	assert_int_equal(be32(buf), A_BLOCKS - 1);
	assert_int_equal(be32(buf + 4), BLK);
	assert_int_equal(DATA_IN(f->cd, 3, buf, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0).transferred, 3);
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0);
	assert_ok(DATA_IN(f->cd, 8, buf, 0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0)); /* PMI */
}

static void test_read_scattered(void **state)
{
	struct fixture *f = *state;
	/* odd pieces, not block-aligned, as a PRD table may cut them */
	static const size_t lens[] = { 1000, 3000, 96, 4096, 10, 2086 };
	uint8_t data[5 * BLK];
	struct buffers b;
	struct sata_result res;

	consume_power_on(f->cd);
	buffers_init(&b, lens, 6);
	res = PACKET(f->cd, &b, 0x28, 0, 0, 0, 0, 7, 0, 0, 5, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 5 * BLK);
	buffers_flatten(&b, data, sizeof(data));
	check_pattern(data, sizeof(data), 1, 7 * BLK);
	buffers_check_free(&b);

	/* READ(12), to the last block */
	buffers_init(&b, lens, 6);
	res = PACKET(f->cd, &b, 0xa8, 0, 0, 0, 0, A_BLOCKS - 5, 0, 0, 0, 5, 0, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 5 * BLK);
	buffers_flatten(&b, data, sizeof(data));
	check_pattern(data, sizeof(data), 1, (A_BLOCKS - 5) * BLK);
	buffers_check_free(&b);
}

/* More buffers than one host read takes at once: read in batches, in order. */
static void test_read_many_buffers(void **state)
{
	struct fixture *f = *state;
	size_t lens[200];
	static uint8_t data[200 * 512];
	struct buffers b;
	struct sata_result res;

	consume_power_on(f->cd);
	for (unsigned i = 0; i < 200; i++)
		lens[i] = 512;
	buffers_init(&b, lens, 200);
	res = PACKET(f->cd, &b, 0x28, 0, 0, 0, 0, 3, 0, 0, 50, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 200 * 512);
	buffers_flatten(&b, data, sizeof(data));
	check_pattern(data, sizeof(data), 1, 3 * BLK);
	buffers_check_free(&b);
}

static void test_read_bounds(void **state)
{
	struct fixture *f = *state;
	uint8_t data[100];
	struct buffers b;
	struct sata_result res;

	consume_power_on(f->cd);
	/* buffers smaller than the transfer: filled, nothing beyond */
	res = DATA_IN(f->cd, 100, data, 0x28, 0, 0, 0, 0, 2, 0, 0, 4, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 100);
	check_pattern(data, 100, 1, 2 * BLK);
	/* no buffers at all */
	assert_ok(PACKET(f->cd, NULL, 0x28, 0, 0, 0, 0, 2, 0, 0, 4, 0));
	/* nothing asked */
	assert_int_equal(DATA_IN(f->cd, 4096, NULL, 0x28, 0, 0, 0, 0, 2, 0, 0, 0, 0).transferred, 0);
	assert_int_equal(DATA_IN(f->cd, 4096, NULL, 0x28, 0, 0, 0, 0, A_BLOCKS, 0, 0, 0, 0).transferred, 0);

	/* past the end, and ranges whose end wraps around */
	buffers_single(&b, 4096);
	assert_fails(PACKET(f->cd, &b, 0x28, 0, 0, 0, 0, A_BLOCKS - 1, 0, 0, 2, 0), 5);
	assert_sense(f->cd, 5, 0x21, 0);
	assert_fails(PACKET(f->cd, &b, 0x28, 0, 0, 0, 0, A_BLOCKS, 0, 0, 1, 0), 5);
	assert_fails(PACKET(f->cd, &b, 0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0), 5);
	assert_sense(f->cd, 5, 0x21, 0);
	assert_fails(PACKET(f->cd, &b, 0xa8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0), 5);
	assert_fails(PACKET(f->cd, &b, 0xa8, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0), 5);
	assert_sense(f->cd, 5, 0x21, 0);
	/* SEEK checks its LBA too */
	assert_ok(PACKET(f->cd, NULL, 0x2b, 0, 0, 0, 0, A_BLOCKS - 1, 0, 0, 0, 0));
	ASSERT_CHECK(f->cd, 5, 0x21, 0, 0x2b, 0, 0, 0, 0, A_BLOCKS, 0, 0, 0, 0);
	/* nothing was written to the buffers by refused reads */
	for (unsigned i = 0; i < 4096; i++)
		assert_int_equal(((uint8_t *)b.iov[0].iov_base)[i], GUARD_BYTE);
	buffers_check_free(&b);
}

/* ---- READ TOC ---- */

static void test_read_toc(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[64];
	struct sata_result res;

	consume_power_on(f->cd);
	/* format 0, LBA: track 1 at 0, lead-out at the end */
	res = DATA_IN(f->cd, 64, buf, 0x43, 0, 0, 0, 0, 0, 0, 0, 64, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 20);
	assert_int_equal(be16(buf), 18);
	assert_int_equal(buf[2], 1);
	assert_int_equal(buf[3], 1);
	assert_int_equal(buf[5], 0x14);
	assert_int_equal(buf[6], 1);
	assert_int_equal(be32(buf + 8), 0);
	assert_int_equal(buf[14], 0xaa);
	assert_int_equal(be32(buf + 16), A_BLOCKS);

	/* MSF: 00:02:00 and the lead-out 150 frames later than its LBA */
	assert_ok(DATA_IN(f->cd, 64, buf, 0x43, 0x02, 0, 0, 0, 0, 0, 0, 64, 0));
	assert_memory_equal(buf + 8, ((uint8_t[]){ 0, 0, 2, 0 }), 4);
	assert_memory_equal(buf + 16, ((uint8_t[]){ 0, (A_BLOCKS + 150) / 4500, (A_BLOCKS + 150) / 75 % 60,
						    (A_BLOCKS + 150) % 75 }),
			    4);

	/* from the lead-out on: just it; from track 2: there is none */
	res = DATA_IN(f->cd, 64, buf, 0x43, 0, 0, 0, 0, 0, 0xaa, 0, 64, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 12);
	assert_int_equal(buf[6], 0xaa);
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x43, 0, 0, 0, 0, 0, 2, 0, 64, 0);

	/* format 1: the session */
	res = DATA_IN(f->cd, 64, buf, 0x43, 0, 1, 0, 0, 0, 0, 0, 64, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 12);
	assert_int_equal(be16(buf), 10);
	assert_int_equal(buf[6], 1);
	/* ... asked the SFF-8020 way, in the control byte */
	assert_int_equal(DATA_IN(f->cd, 64, buf, 0x43, 0, 0, 0, 0, 0, 0, 0, 64, 0x40).transferred, 12);

	/* format 2: A0, A1, A2 and track 1 */
	res = DATA_IN(f->cd, 64, buf, 0x43, 0x02, 2, 0, 0, 0, 1, 0, 64, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 4 + 4 * 11);
	assert_int_equal(buf[4 + 3], 0xa0);
	assert_int_equal(buf[4 + 2 * 11 + 3], 0xa2);
	assert_int_equal(buf[4 + 2 * 11 + 9], (A_BLOCKS + 150) / 75 % 60);

	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x43, 0, 5, 0, 0, 0, 0, 0, 64, 0);
	assert_int_equal(DATA_IN(f->cd, 64, buf, 0x43, 0, 0, 0, 0, 0, 0, 0, 0, 0).transferred, 0);
	assert_int_equal(DATA_IN(f->cd, 64, buf, 0x43, 0, 0, 0, 0, 0, 0, 0, 2, 0).transferred, 2);
}

/* ---- GET CONFIGURATION ---- */

struct feature {
	uint16_t code;
	bool current;
	uint8_t len;
	const uint8_t *data;
};

/* The features of a GET CONFIGURATION response, checking their order and lengths. */
static unsigned parse_features(const uint8_t *buf, size_t len, struct feature *out, unsigned max)
{
	unsigned n = 0;
	size_t off = 8;

	assert_true(len >= 8);
	assert_int_equal(be32(buf), len - 4);
	while (off < len) {
		assert_true(off + 4 <= len && n < max);
		out[n] = (struct feature){ be16(buf + off), buf[off + 2] & 1, buf[off + 3], buf + off + 4 };
		assert_int_equal(out[n].len % 4, 0);
		if (n)
			assert_true(out[n].code > out[n - 1].code);
		off += 4u + out[n].len;
		n++;
	}
	assert_int_equal(off, len);
	return n;
}

static const struct feature *find_feature(const struct feature *fs, unsigned n, uint16_t code)
{
	for (unsigned i = 0; i < n; i++)
		if (fs[i].code == code)
			return &fs[i];
	return NULL;
}

static void test_get_configuration_cd(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[512];
	struct feature fs[32];
	struct sata_result res;
	unsigned n;

	res = DATA_IN(f->cd, 512, buf, 0x46, 0, 0, 0, 0, 0, 0, 0x02, 0, 0);
	assert_ok(res);
	assert_int_equal(be16(buf + 6), 0x0008); /* a 100-block image is a CD */
	n = parse_features(buf, (size_t)res.transferred, fs, 32);
	assert_int_equal(fs[0].code, 0x0000);
	assert_non_null(find_feature(fs, n, 0x0001));
	assert_non_null(find_feature(fs, n, 0x0002));
	assert_non_null(find_feature(fs, n, 0x0003));
	assert_true(find_feature(fs, n, 0x0010)->current);
	assert_int_equal(be32(find_feature(fs, n, 0x0010)->data), BLK);
	assert_true(find_feature(fs, n, 0x001e)->current);
	assert_false(find_feature(fs, n, 0x001f)->current);
	/* the profile list marks the CD profile current */
	assert_int_equal(be16(fs[0].data + 4), 0x0008);
	assert_int_equal(fs[0].data[6] & 1, 1);

	/* RT 1: current ones only, from 0x10 on */
	res = DATA_IN(f->cd, 512, buf, 0x46, 1, 0, 0x10, 0, 0, 0, 0x02, 0, 0);
	n = parse_features(buf, (size_t)res.transferred, fs, 32);
	assert_null(find_feature(fs, n, 0x001f));
	assert_null(find_feature(fs, n, 0x0003));
	assert_non_null(find_feature(fs, n, 0x001e));
	/* RT 2: that one feature, current or not; an unknown one: the header alone */
	res = DATA_IN(f->cd, 512, buf, 0x46, 2, 0, 0x1f, 0, 0, 0, 0x02, 0, 0);
	assert_int_equal(parse_features(buf, (size_t)res.transferred, fs, 32), 1);
	assert_int_equal(fs[0].code, 0x001f);
	assert_false(fs[0].current);
	res = DATA_IN(f->cd, 512, buf, 0x46, 2, 0, 0x2f, 0, 0, 0, 0x02, 0, 0);
	assert_int_equal(res.transferred, 8);
	/* a short allocation: the header still tells the full length */
	res = DATA_IN(f->cd, 512, buf, 0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0);
	assert_int_equal(res.transferred, 8);
	assert_true(be32(buf) > 4);
	assert_int_equal(DATA_IN(f->cd, 512, buf, 0x46, 0, 0, 0, 0, 0, 0, 0, 0, 0).transferred, 0);
	assert_int_equal(DATA_IN(f->cd, 3, buf, 0x46, 0, 0, 0, 0, 0, 0, 0x02, 0, 0).transferred, 3);
}

static void test_dvd_image(void **state)
{
	struct fixture *f = *state;
	char path[128];
	uint8_t buf[512], data[BLK];
	struct feature fs[32];
	struct sata_result res;
	struct atapi_cd *dvd;
	int fd;

	snprintf(path, sizeof(path), "%s/dvd.iso", f->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)DVD_BLOCKS * BLK), 0); /* sparse */
	memset(data, 0x5a, sizeof(data));
	assert_int_equal(pwrite(fd, data, BLK, (off_t)(DVD_BLOCKS - 1) * BLK), BLK);
	close(fd);
	dvd = atapi_cd_new("ahci.0:2", path, "DVD");
	assert_non_null(dvd);
	consume_power_on(dvd);

	res = DATA_IN(dvd, 512, buf, 0x46, 0, 0, 0, 0, 0, 0, 0x02, 0, 0);
	assert_int_equal(be16(buf + 6), 0x0010);
	parse_features(buf, (size_t)res.transferred, fs, 32);
	assert_int_equal(be16(fs[0].data), 0x0010);
	assert_int_equal(fs[0].data[2] & 1, 1);
	res = DATA_IN(dvd, 512, buf, 0x46, 2, 0, 0x1f, 0, 0, 0, 0x02, 0, 0);
	parse_features(buf, (size_t)res.transferred, fs, 32);
	assert_true(fs[0].current);

	assert_ok(DATA_IN(dvd, 8, buf, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0));
	assert_int_equal(be32(buf), DVD_BLOCKS - 1);
	res = DATA_IN(dvd, BLK, data, 0x28, 0, 0, (DVD_BLOCKS - 1) >> 16, (DVD_BLOCKS - 1) >> 8 & 0xff,
		      (DVD_BLOCKS - 1) & 0xff, 0, 0, 1, 0);
	assert_int_equal(res.transferred, BLK);
	assert_ok(res);
	assert_int_equal(data[0], 0x5a);
	assert_int_equal(data[BLK - 1], 0x5a);
	/* no full TOC on a DVD; the lead-out in MSF saturates rather than wraps */
	ASSERT_CHECK(dvd, 5, 0x24, 0, 0x43, 0x02, 2, 0, 0, 0, 1, 0, 64, 0);
	assert_ok(DATA_IN(dvd, 64, buf, 0x43, 0x02, 0, 0, 0, 0, 0, 0, 64, 0));
	assert_memory_equal(buf + 16, ((uint8_t[]){ 0, 0xff, 59, 74 }), 4);
	atapi_cd_free(dvd);
}

/* ---- MODE SENSE ---- */

/* Finds page in a MODE SENSE(10) response, checking the pages' lengths add up. */
static const uint8_t *mode_page_in(const uint8_t *buf, size_t len, uint8_t page)
{
	const uint8_t *found = NULL;
	size_t off = 8;

	assert_int_equal(be16(buf), len - 2);
	assert_int_equal(be16(buf + 6), 0); /* no block descriptors */
	while (off < len) {
		assert_true(off + 2 <= len && off + 2 + buf[off + 1] <= len);
		if ((buf[off] & 0x3f) == page)
			found = buf + off;
		off += 2u + buf[off + 1];
	}
	return found;
}

static void test_mode_sense(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[256];
	const uint8_t *p;
	struct sata_result res;

	consume_power_on(f->cd);
	res = DATA_IN(f->cd, 256, buf, 0x5a, 0, 0x2a, 0, 0, 0, 0, 1, 0, 0);
	assert_ok(res);
	p = mode_page_in(buf, (size_t)res.transferred, 0x2a);
	assert_non_null(p);
	assert_true(p[1] >= 20);
	assert_true(p[2] & 0x08);             /* reads DVD-ROM */
	assert_int_equal(p[6] & 0x0b, 0x09); /* can lock and eject; unlocked */
	assert_int_equal(p[6] >> 5, 1);       /* tray */
	assert_null(mode_page_in(buf, (size_t)res.transferred, 0x01));

	/* the lock state follows PREVENT ALLOW MEDIUM REMOVAL */
	assert_ok(PACKET(f->cd, NULL, 0x1e, 0, 0, 0, 1, 0));
	res = DATA_IN(f->cd, 256, buf, 0x5a, 0, 0x2a, 0, 0, 0, 0, 1, 0, 0);
	assert_int_equal(mode_page_in(buf, (size_t)res.transferred, 0x2a)[6] & 0x02, 0x02);
	assert_ok(PACKET(f->cd, NULL, 0x1e, 0, 0, 0, 0, 0));

	res = DATA_IN(f->cd, 256, buf, 0x5a, 0, 0x3f, 0, 0, 0, 0, 1, 0, 0);
	assert_non_null(mode_page_in(buf, (size_t)res.transferred, 0x01));
	assert_non_null(mode_page_in(buf, (size_t)res.transferred, 0x2a));
	/* changeable values: nothing */
	res = DATA_IN(f->cd, 256, buf, 0x5a, 0, 0x40 | 0x01, 0, 0, 0, 0, 1, 0, 0);
	p = mode_page_in(buf, (size_t)res.transferred, 0x01);
	for (unsigned i = 2; i < 12; i++)
		assert_int_equal(p[i], 0);

	ASSERT_CHECK(f->cd, 5, 0x39, 0, 0x5a, 0, 0xc0 | 0x2a, 0, 0, 0, 0, 1, 0, 0); /* saved values */
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x5a, 0, 0x05, 0, 0, 0, 0, 1, 0, 0);        /* no such page */
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x5a, 0, 0x2a, 1, 0, 0, 0, 1, 0, 0);        /* a subpage */
	assert_ok(DATA_IN(f->cd, 256, buf, 0x5a, 0, 0x3f, 0xff, 0, 0, 0, 1, 0, 0));
	assert_int_equal(DATA_IN(f->cd, 256, buf, 0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 0, 0).transferred, 0);

	/* MODE SENSE(6) */
	res = DATA_IN(f->cd, 256, buf, 0x1a, 0, 0x2a, 0, 255, 0);
	assert_ok(res);
	assert_int_equal(buf[0], res.transferred - 1);
	assert_int_equal(buf[3], 0);
	assert_int_equal(buf[4], 0x2a);
	assert_int_equal(DATA_IN(f->cd, 256, buf, 0x1a, 0, 0x2a, 0, 4, 0).transferred, 4);
}

/* ---- events, tray and lock ---- */

struct media_status {
	bool nea;
	uint8_t event;
	bool tray_open, present;
};

static struct media_status poll_media(struct atapi_cd *cd)
{
	uint8_t buf[8];
	struct sata_result res = DATA_IN(cd, 8, buf, 0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0);

	assert_ok(res);
	assert_int_equal(buf[3] & 0x10, 0x10);
	if (buf[2] & 0x80)
		return (struct media_status){ .nea = true };
	assert_int_equal(res.transferred, 8);
	assert_int_equal(be16(buf), 6);
	assert_int_equal(buf[2] & 7, 4);
	return (struct media_status){ false, buf[4] & 0x0f, buf[5] & 1, buf[5] & 2 };
}

static void test_event_status(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[8];
	struct sata_result res;
	struct media_status m;

	m = poll_media(f->cd);
	assert_false(m.nea);
	assert_int_equal(m.event, 0);
	assert_true(m.present);
	assert_false(m.tray_open);
	/* a class this drive does not report: NEA, with the supported classes */
	res = DATA_IN(f->cd, 8, buf, 0x4a, 1, 0, 0, 0x02, 0, 0, 0, 8, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 4);
	assert_int_equal(buf[2], 0x80);
	assert_int_equal(be16(buf), 2);
	res = DATA_IN(f->cd, 8, buf, 0x4a, 1, 0, 0, 0x00, 0, 0, 0, 8, 0);
	assert_int_equal(buf[2], 0x80);
	/* asynchronous notification is not offered */
	assert_fails(PACKET(f->cd, NULL, 0x4a, 0, 0, 0, 0x10, 0, 0, 8, 0), 5);
	assert_int_equal(DATA_IN(f->cd, 8, buf, 0x4a, 1, 0, 0, 0x10, 0, 0, 0, 2, 0).transferred, 2);
	/* GET EVENT STATUS NOTIFICATION never reported the power-on unit attention */
	consume_power_on(f->cd);
}

static void test_eject_and_load(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[8];

	consume_power_on(f->cd);
	/* locked: the guest cannot eject */
	assert_ok(PACKET(f->cd, NULL, 0x1e, 0, 0, 0, 1, 0));
	ASSERT_CHECK(f->cd, 5, 0x53, 0x02, 0x1b, 0, 0, 0, 0x02, 0);
	assert_ok(PACKET(f->cd, NULL, 0x00));
	assert_ok(PACKET(f->cd, NULL, 0x1e, 0, 0, 0, 0, 0));

	assert_ok(PACKET(f->cd, NULL, 0x1b, 0, 0, 0, 0x02, 0));
	ASSERT_CHECK(f->cd, 2, 0x3a, 0x02, 0x00);
	ASSERT_CHECK(f->cd, 2, 0x3a, 0x02, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	ASSERT_CHECK(f->cd, 2, 0x3a, 0x02, 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	assert_sense(f->cd, 2, 0x3a, 0x02); /* the condition, with nothing else to report */
	struct media_status m = poll_media(f->cd);
	assert_int_equal(m.event, 3);
	assert_true(m.tray_open);
	assert_false(m.present);
	assert_int_equal(poll_media(f->cd).event, 0);
	assert_ok(DATA_IN(f->cd, 8, buf, 0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0));
	assert_int_equal(buf[1] & 0x10, 0x10);
	/* the disc is still in the open tray */
	assert_string_equal(atapi_cd_path(f->cd), f->a);
	/* ejecting an open tray again is fine */
	assert_ok(PACKET(f->cd, NULL, 0x1b, 0, 0, 0, 0x02, 0));

	/* load: the disc is back, and the guest told once */
	assert_ok(PACKET(f->cd, NULL, 0x1b, 0, 0, 0, 0x03, 0));
	assert_int_equal(poll_media(f->cd).event, 2);
	ASSERT_CHECK(f->cd, 6, 0x28, 0, 0x00);
	assert_ok(PACKET(f->cd, NULL, 0x00));
	assert_ok(DATA_IN(f->cd, 8, buf, 0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0));
	assert_int_equal(buf[1] & 0x10, 0);
	/* loading a closed tray changes nothing */
	assert_ok(PACKET(f->cd, NULL, 0x1b, 0, 0, 0, 0x03, 0));
	assert_ok(PACKET(f->cd, NULL, 0x00));
	/* START/STOP without LoEj and power conditions are accepted; a reserved one is not */
	assert_ok(PACKET(f->cd, NULL, 0x1b, 0, 0, 0, 0x01, 0));
	assert_ok(PACKET(f->cd, NULL, 0x1b, 0, 0, 0, 0x00, 0));
	assert_ok(PACKET(f->cd, NULL, 0x1b, 0, 0, 0, 0x32, 0)); /* standby: LoEj ignored */
	assert_ok(PACKET(f->cd, NULL, 0x00));
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x1b, 0, 0, 0, 0x40, 0);
	assert_ok(PACKET(f->cd, NULL, 0xbb, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0));
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0xbb, 0x03, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0);

	/* reset unlocks and says so */
	assert_ok(PACKET(f->cd, NULL, 0x1e, 0, 0, 0, 1, 0));
	atapi_cd_reset(f->cd);
	consume_power_on(f->cd);
	assert_ok(PACKET(f->cd, NULL, 0x1b, 0, 0, 0, 0x02, 0));
}

static void test_media_change(void **state)
{
	struct fixture *f = *state;
	char err[200];
	uint8_t buf[BLK];
	int fd;

	consume_power_on(f->cd);
	fd = open(f->b, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(atapi_cd_change(f->cd, fd, f->b, false, err, sizeof(err)), 0);
	assert_string_equal(atapi_cd_path(f->cd), f->b);
	assert_int_equal(poll_media(f->cd).event, 2);
	ASSERT_CHECK(f->cd, 6, 0x28, 0, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	assert_ok(DATA_IN(f->cd, 8, buf, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0));
	assert_int_equal(be32(buf), B_BLOCKS - 1);
	assert_ok(DATA_IN(f->cd, BLK, buf, 0x28, 0, 0, 0, 0, 9, 0, 0, 1, 0));
	check_pattern(buf, BLK, 2, 9 * BLK);

	/* the host's eject: empty tray */
	assert_int_equal(atapi_cd_change(f->cd, -1, NULL, false, err, sizeof(err)), 0);
	assert_null(atapi_cd_path(f->cd));
	assert_int_equal(poll_media(f->cd).event, 3);
	ASSERT_CHECK(f->cd, 2, 0x3a, 0x02, 0x00);
	/* the guest closes the empty tray */
	assert_ok(PACKET(f->cd, NULL, 0x1b, 0, 0, 0, 0x03, 0));
	ASSERT_CHECK(f->cd, 2, 0x3a, 0x01, 0x00);
	assert_int_equal(poll_media(f->cd).event, 0);

	/* locked in: refused without force, and the guest is asked to let go */
	fd = open(f->a, O_RDONLY | O_CLOEXEC);
	assert_int_equal(atapi_cd_change(f->cd, fd, f->a, false, err, sizeof(err)), 0);
	ASSERT_CHECK(f->cd, 6, 0x28, 0, 0x00);
	assert_int_equal(poll_media(f->cd).event, 2);
	assert_ok(PACKET(f->cd, NULL, 0x1e, 0, 0, 0, 1, 0));
	fd = open(f->b, O_RDONLY | O_CLOEXEC);
	assert_int_equal(atapi_cd_change(f->cd, fd, f->b, false, err, sizeof(err)), -1);
	assert_true(strlen(err) > 0);
	assert_int_equal(fcntl(fd, F_GETFD), FD_CLOEXEC); /* still the caller's */
	assert_int_equal(atapi_cd_change(f->cd, -1, NULL, false, err, sizeof(err)), -1);
	assert_string_equal(atapi_cd_path(f->cd), f->a);
	assert_int_equal(poll_media(f->cd).event, 1);
	assert_ok(PACKET(f->cd, NULL, 0x00));
	assert_int_equal(atapi_cd_change(f->cd, fd, f->b, true, err, sizeof(err)), 0);
	assert_string_equal(atapi_cd_path(f->cd), f->b);
	ASSERT_CHECK(f->cd, 6, 0x28, 0, 0x00);
}

static void test_change_refuses_bad_images(void **state)
{
	struct fixture *f = *state;
	char err[200], path[128];
	int fd;

	consume_power_on(f->cd);
	fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(atapi_cd_change(f->cd, fd, f->dir, false, err, sizeof(err)), -1);
	assert_int_equal(fcntl(fd, F_GETFD), FD_CLOEXEC);
	close(fd);

	snprintf(path, sizeof(path), "%s/short.iso", f->dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(atapi_cd_change(f->cd, fd, path, false, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "block"));
	assert_int_equal(fcntl(fd, F_GETFD), FD_CLOEXEC);
	close(fd);
	unlink(path);
	assert_null(atapi_cd_new("ahci.0:3", path, NULL));
	assert_null(atapi_cd_new("ahci.0:3", f->dir, NULL));

	/* the old disc is still there, untouched */
	assert_string_equal(atapi_cd_path(f->cd), f->a);
	assert_ok(PACKET(f->cd, NULL, 0x00));
}

static void test_empty_drive(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[512];
	struct sata_result res;
	struct atapi_cd *cd = atapi_cd_new("ahci.0:4", NULL, NULL);
	char err[200];

	(void)f;
	assert_non_null(cd);
	assert_null(atapi_cd_path(cd));
	consume_power_on(cd);
	ASSERT_CHECK(cd, 2, 0x3a, 0x01, 0x00);
	ASSERT_CHECK(cd, 2, 0x3a, 0x01, 0x43, 0, 0, 0, 0, 0, 0, 0, 64, 0);
	ASSERT_CHECK(cd, 2, 0x3a, 0x01, 0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0);
	assert_ok(DATA_IN(cd, 64, buf, 0x12, 0, 0, 0, 64, 0));
	res = DATA_IN(cd, 512, buf, 0x46, 0, 0, 0, 0, 0, 0, 0x02, 0, 0);
	assert_ok(res);
	assert_int_equal(be16(buf + 6), 0);
	assert_ok(DATA_IN(cd, 64, buf, 0x12, 1, 0x80, 0, 64, 0));
	assert_memory_equal(buf + 4, "hyve-", 5); /* a serial made up for the drive */
	struct media_status m = poll_media(cd);
	assert_false(m.present);
	assert_int_equal(atapi_cd_change(cd, open(f->a, O_RDONLY | O_CLOEXEC), f->a, false, err, sizeof(err)), 0);
	ASSERT_CHECK(cd, 6, 0x28, 0, 0x00);
	assert_ok(PACKET(cd, NULL, 0x00));
	atapi_cd_free(cd);
}

static void test_disc_and_track_info(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[64];
	struct sata_result res;

	consume_power_on(f->cd);
	res = DATA_IN(f->cd, 64, buf, 0x51, 0, 0, 0, 0, 0, 0, 0, 64, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 34);
	assert_int_equal(be16(buf), 32);
	assert_int_equal(buf[2] & 0x03, 0x02); /* complete */
	assert_int_equal(buf[4], 1);
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x51, 1, 0, 0, 0, 0, 0, 0, 64, 0);

	res = DATA_IN(f->cd, 64, buf, 0x52, 1, 0, 0, 0, 1, 0, 0, 64, 0);
	assert_ok(res);
	assert_int_equal(buf[2], 1);
	assert_int_equal(be32(buf + 24), A_BLOCKS);
	assert_ok(DATA_IN(f->cd, 64, buf, 0x52, 0, 0, 0, 0, A_BLOCKS - 1, 0, 0, 64, 0));
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x52, 0, 0, 0, 0, A_BLOCKS, 0, 0, 64, 0);
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x52, 1, 0, 0, 0, 2, 0, 0, 64, 0);
	ASSERT_CHECK(f->cd, 5, 0x24, 0, 0x52, 3, 0, 0, 0, 1, 0, 0, 64, 0);
	assert_ok(DATA_IN(f->cd, 64, buf, 0x52, 2, 0, 0, 0, 1, 0, 0, 64, 0));

	res = DATA_IN(f->cd, 64, buf, 0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0);
	assert_ok(res);
	assert_int_equal(res.transferred, 8);
}

/* ---- IDENTIFY PACKET DEVICE ---- */

static void test_identify(void **state)
{
	struct fixture *f = *state;
	uint16_t id[256];
	uint8_t sum = 0;
	char model[41];

	atapi_cd_identify(f->cd, id);
	assert_int_equal(id[0], 0x85c0);
	for (unsigned i = 0; i < 20; i++) {
		model[2 * i] = (char)(id[27 + i] >> 8);
		model[2 * i + 1] = (char)id[27 + i];
	}
	model[40] = 0;
	assert_memory_equal(model, "HYVE DVD-ROM ", 13);
	assert_int_equal(id[10] >> 8, 'C');
	assert_int_equal(id[49] & 0x0300, 0x0300); /* DMA and LBA */
	assert_true(id[88] & 0x3f);
	assert_true(id[76] & 0x04);
	assert_int_equal(id[255] & 0xff, 0xa5);
	for (unsigned i = 0; i < 256; i++)
		sum = (uint8_t)(sum + (id[i] & 0xff) + (id[i] >> 8));
	assert_int_equal(sum, 0);
}

/* ---- snapshots ---- */

struct blob {
	uint8_t *buf;
	size_t len;
};

static struct blob save(struct atapi_cd *cd)
{
	struct state_writer *w = state_writer_new();
	struct blob b;

	atapi_cd_save(cd, w);
	assert_int_equal(state_writer_finish(w, &b.buf, &b.len), 0);
	state_writer_free(w);
	return b;
}

static int restore(struct atapi_cd *cd, struct blob b)
{
	struct state_reader *r = state_reader_new(b.buf, b.len);
	int ret;

	assert_non_null(r);
	ret = atapi_cd_restore(cd, r);
	state_reader_free(r);
	return ret;
}

static void test_save_restore(void **state)
{
	struct fixture *f = *state;
	struct atapi_cd *cd;
	struct blob b;
	char err[200];

	consume_power_on(f->cd);
	assert_ok(PACKET(f->cd, NULL, 0x1e, 0, 0, 0, 1, 0));
	assert_int_equal(atapi_cd_change(f->cd, -1, NULL, false, err, sizeof(err)), -1); /* eject request */
	assert_fails(PACKET(f->cd, NULL, 0x28, 0, 0, 0, 0x10, 0, 0, 0, 1, 0), 5); /* sense to fetch */
	b = save(f->cd);

	/* the same disc: the guest's view carries over, and no change is reported */
	cd = atapi_cd_new("ahci.0:1", f->a, "CDSERIAL42");
	assert_int_equal(restore(cd, b), 0);
	assert_sense(cd, 5, 0x21, 0);
	assert_int_equal(poll_media(cd).event, 1);
	assert_ok(PACKET(cd, NULL, 0x00));
	ASSERT_CHECK(cd, 5, 0x53, 0x02, 0x1b, 0, 0, 0, 0x02, 0);
	atapi_cd_free(cd);

	/* another disc: restored, and the guest told the disc changed */
	cd = atapi_cd_new("ahci.0:1", f->b, "CDSERIAL42");
	assert_int_equal(restore(cd, b), 0);
	assert_sense(cd, 5, 0x21, 0);
	assert_int_equal(poll_media(cd).event, 2);
	ASSERT_CHECK(cd, 6, 0x28, 0, 0x00);
	assert_ok(PACKET(cd, NULL, 0x00));
	atapi_cd_free(cd);

	/* no disc now */
	cd = atapi_cd_new("ahci.0:1", NULL, "CDSERIAL42");
	assert_int_equal(restore(cd, b), 0);
	assert_int_equal(poll_media(cd).event, 3);
	atapi_cd_free(cd);
	free(b.buf);

	/* a snapshot of an open tray with a disc in it, an unreported power-on and no sense */
	assert_ok(PACKET(f->cd, NULL, 0x1e, 0, 0, 0, 0, 0));
	assert_ok(PACKET(f->cd, NULL, 0x1b, 0, 0, 0, 0x02, 0));
	atapi_cd_reset(f->cd);
	b = save(f->cd);
	cd = atapi_cd_new("ahci.0:1", f->a, "CDSERIAL42");
	assert_int_equal(restore(cd, b), 0);
	ASSERT_CHECK(cd, 6, 0x29, 0, 0x00);
	ASSERT_CHECK(cd, 2, 0x3a, 0x02, 0x00);
	assert_ok(PACKET(cd, NULL, 0x1b, 0, 0, 0, 0x03, 0));
	ASSERT_CHECK(cd, 6, 0x28, 0, 0x00);
	assert_ok(PACKET(cd, NULL, 0x00));
	atapi_cd_free(cd);
	free(b.buf);
}

/* A valid state with field key set to value, or left out when not present ("disc": a map lacking fields). */
static struct blob state_with(const char *key, uint64_t value, bool present)
{
	static const char *const keys[] = { "sense_key", "sense_asc", "sense_ascq", "unit_attention", "media_event" };
	struct state_writer *w = state_writer_new();
	struct blob b;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strcmp(keys[i], key))
			state_put_u64(w, keys[i], 0);
		else if (present)
			state_put_u64(w, keys[i], value);
	}
	state_put_bytes(w, "sense_sks", "\0\0\0", 3);
	state_put_bool(w, "locked", false);
	if (strcmp(key, "tray_open"))
		state_put_bool(w, "tray_open", false);
	if (!strcmp(key, "disc")) {
		state_begin_map(w, "disc");
		state_put_str(w, "path", "/x.iso");
		state_end_map(w);
	}
	assert_int_equal(state_writer_finish(w, &b.buf, &b.len), 0);
	state_writer_free(w);
	return b;
}

static void test_restore_malformed(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *key;
		uint64_t value;
		bool present;
	} bad[] = {
		{ "sense_key", 0x10, true },      { "sense_key", 0, false },    { "unit_attention", 0x2a, true },
		{ "unit_attention", 256, true },  { "media_event", 4, true },   { "media_event", 0, false },
		{ "sense_asc", 0x100, true },     { "tray_open", 0, false },    { "disc", 0, true },
	};
	struct blob b;

	b = state_with("none", 0, false);
	assert_int_equal(restore(f->cd, b), 0);
	free(b.buf);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b = state_with(bad[i].key, bad[i].value, bad[i].present);
		assert_int_equal(restore(f->cd, b), -1);
		free(b.buf);
	}
}

/* ---- hostile input ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Any 16 bytes, any small buffers: a defined answer, nothing written outside the buffers. */
static void test_random_cdbs(void **state)
{
	struct fixture *f = *state;
	static const uint8_t known[] = { 0x00, 0x03, 0x12, 0x1a, 0x1b, 0x1e, 0x25, 0x28, 0x2b, 0x43,
					 0x46, 0x4a, 0x51, 0x52, 0x5a, 0xa8, 0xbb, 0xbd };
	char err[200];

	for (unsigned iter = 0; iter < 100000; iter++) {
		uint8_t cdb[16];
		size_t lens[4];
		unsigned n = (unsigned)(rng() % 5);
		struct buffers b;
		struct sata_result res;

		for (unsigned i = 0; i < 16; i++)
			cdb[i] = (uint8_t)rng();
		if (rng() % 4)
			cdb[0] = known[rng() % sizeof(known)];
		if (cdb[0] == 0x28 || cdb[0] == 0xa8) /* keep reads mostly in range, and small */
			cdb[2] = cdb[3] = cdb[4] = 0, cdb[5] %= A_BLOCKS + 2, cdb[6] = 0, cdb[7] = 0, cdb[9] = 0,
			cdb[8] %= 4;
		for (unsigned i = 0; i < n; i++)
			lens[i] = (size_t)(rng() % 3000);
		buffers_init(&b, lens, n);
		res = packet(f->cd, cdb, sizeof(cdb), &b);
		buffers_check_free(&b);
		if (res.status & ATA_STATUS_ERR)
			assert_true(res.error >> 4 == 2 || res.error >> 4 == 5 || res.error >> 4 == 6);
		if (iter % 1000 == 999) { /* now and then a new disc, or the same one back */
			int fd = open(f->a, O_RDONLY | O_CLOEXEC);

			if (atapi_cd_change(f->cd, fd, f->a, rng() & 1, err, sizeof(err)) < 0)
				close(fd);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_power_on_unit_attention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sense_lifetime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_field_pointer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsupported_opcodes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inquiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_capacity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_scattered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_many_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_toc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_configuration_cd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dvd_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode_sense, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eject_and_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_media_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_change_refuses_bad_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_drive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disc_and_track_info, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_cdbs, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
