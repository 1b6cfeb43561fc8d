#include "aml.h"

#include <stdlib.h>
#include <string.h>

#define AML_ZERO_OP 0x00
#define AML_ONE_OP 0x01
#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0A
#define AML_WORD_PREFIX 0x0B
#define AML_DWORD_PREFIX 0x0C
#define AML_STRING_PREFIX 0x0D
#define AML_QWORD_PREFIX 0x0E
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_DUAL_NAME_PREFIX 0x2E
#define AML_MULTI_NAME_PREFIX 0x2F
#define AML_EXT_OP_PREFIX 0x5B
#define AML_DEVICE_OP 0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR '\\'
#define AML_PARENT_PREFIX '^'

/* Small resource descriptor tags (type and length in one byte). */
#define RES_IRQ_NOFLAGS 0x22
#define RES_IO 0x47
#define RES_END_TAG 0x79
#define RES_IO_DECODE16 0x01

/* Large resource descriptors (ACPI 6.4.3). */
#define RES_MEMORY32_FIXED 0x86
#define RES_DWORD_ADDRESS 0x87
#define RES_WORD_ADDRESS 0x88
#define RES_QWORD_ADDRESS 0x8A
#define ADDR_PRODUCER_FIXED 0x0C /* producer, positive decode, _MIF and _MAF set */

/* A PkgLength is at most 4 bytes and covers at most 2^28 - 1 bytes. */
#define PKG_LENGTH_MAX ((1u << 28) - 1)

void aml_init(struct aml_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void aml_free(struct aml_buf *b)
{
	free(b->data);
	aml_init(b);
}

bool aml_failed(const struct aml_buf *b)
{
	return b->failed;
}

static bool reserve(struct aml_buf *b, size_t extra)
{
	if (b->failed)
		return false;
	if (extra <= b->cap - b->len)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < extra) {
		if (cap > SIZE_MAX / 2) {
			b->failed = true;
			return false;
		}
		cap *= 2;
	}
	uint8_t *p = realloc(b->data, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void aml_bytes(struct aml_buf *b, const void *p, size_t n)
{
	if (!n || !reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void aml_byte(struct aml_buf *b, uint8_t v)
{
	aml_bytes(b, &v, 1);
}

/* Opens a hole of n bytes at off, for length prefixes known only at the end. */
static uint8_t *insert(struct aml_buf *b, size_t off, size_t n)
{
	if (!reserve(b, n))
		return NULL;
	memmove(b->data + off + n, b->data + off, b->len - off);
	b->len += n;
	return b->data + off;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void fail(struct aml_buf *b)
{
	b->failed = true;
}

static bool lead_name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool name_char(char c)
{
	return lead_name_char(c) || (c >= '0' && c <= '9');
}

/* One 1-4 character segment of `name`, padded to 4; returns its length or 0. */
static size_t name_seg(const char *name, char seg[4])
{
	size_t n = 0;

	while (name[n] && name[n] != '.') {
		if (n == 4 || !name_char(name[n]) || (n == 0 && !lead_name_char(name[n])))
			return 0;
		seg[n] = name[n];
		n++;
	}
	for (size_t i = n; i < 4; i++)
		seg[i] = '_';
	return n;
}

void aml_name_string(struct aml_buf *b, const char *name)
{
	char segs[255][4];
	size_t count = 0;

	if (!name) {
		fail(b);
		return;
	}
	if (*name == AML_ROOT_CHAR)
		aml_byte(b, (uint8_t)*name++);
	else
		while (*name == AML_PARENT_PREFIX)
			aml_byte(b, (uint8_t)*name++);
	for (;;) {
		size_t n = count < 255 ? name_seg(name, segs[count]) : 0;
		if (!n) {
			fail(b);
			return;
		}
		count++;
		name += n;
		if (!*name)
			break;
		name++; /* the '.' */
	}
	if (count == 2)
		aml_byte(b, AML_DUAL_NAME_PREFIX);
	else if (count > 2) {
		aml_byte(b, AML_MULTI_NAME_PREFIX);
		aml_byte(b, (uint8_t)count);
	}
	aml_bytes(b, segs, count * 4);
}

void aml_integer(struct aml_buf *b, uint64_t v)
{
	uint8_t enc[9];
	unsigned n;

	if (v == 0 || v == 1) {
		aml_byte(b, v ? AML_ONE_OP : AML_ZERO_OP);
		return;
	}
	if (v <= UINT8_MAX) {
		enc[0] = AML_BYTE_PREFIX;
		n = 1;
	} else if (v <= UINT16_MAX) {
		enc[0] = AML_WORD_PREFIX;
		n = 2;
	} else if (v <= UINT32_MAX) {
		enc[0] = AML_DWORD_PREFIX;
		n = 4;
	} else {
		enc[0] = AML_QWORD_PREFIX;
		n = 8;
	}
	put_le(enc + 1, v, n);
	aml_bytes(b, enc, n + 1);
}

void aml_string(struct aml_buf *b, const char *s)
{
	if (!s) {
		fail(b);
		return;
	}
	/* AML strings are 7-bit ASCII without NUL. */
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p > 0x7F) {
			fail(b);
			return;
		}
	aml_byte(b, AML_STRING_PREFIX);
	aml_bytes(b, s, strlen(s) + 1);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void aml_eisaid(struct aml_buf *b, const char *id)
{
	uint16_t vendor = 0, product = 0;

	if (!id || strlen(id) != 7) {
		fail(b);
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			fail(b);
			return;
		}
		vendor = (uint16_t)(vendor << 5 | (id[i] - 'A' + 1));
	}
	for (int i = 3; i < 7; i++) {
		int d = hex_digit(id[i]);
		if (d < 0) {
			fail(b);
			return;
		}
		product = (uint16_t)(product << 4 | d);
	}
	/* The compressed ID is stored big-endian, unlike every other AML integer. */
	uint8_t enc[5] = { AML_DWORD_PREFIX, (uint8_t)(vendor >> 8), (uint8_t)vendor, (uint8_t)(product >> 8),
			   (uint8_t)product };
	aml_bytes(b, enc, sizeof(enc));
}

void aml_name(struct aml_buf *b, const char *name)
{
	aml_byte(b, AML_NAME_OP);
	aml_name_string(b, name);
}

size_t aml_scope_begin(struct aml_buf *b, const char *name)
{
	aml_byte(b, AML_SCOPE_OP);
	size_t mark = b->len;
	aml_name_string(b, name);
	return mark;
}

size_t aml_device_begin(struct aml_buf *b, const char *name)
{
	aml_byte(b, AML_EXT_OP_PREFIX);
	aml_byte(b, AML_DEVICE_OP);
	size_t mark = b->len;
	aml_name_string(b, name);
	return mark;
}

size_t aml_package_begin(struct aml_buf *b, uint8_t count)
{
	aml_byte(b, AML_PACKAGE_OP);
	size_t mark = b->len;
	aml_byte(b, count);
	return mark;
}

/* Inserts at mark the PkgLength covering itself and everything after it. */
void aml_end(struct aml_buf *b, size_t mark)
{
	if (b->failed)
		return;
	if (mark == 0 || mark > b->len) {
		fail(b);
		return;
	}
	size_t body = b->len - mark;
	unsigned n = 1;
	while (n < 4 && body + n >= (n == 1 ? 0x40u : 1u << (4 + 8 * (n - 1))))
		n++;
	size_t total = body + n;
	if (total > PKG_LENGTH_MAX) {
		fail(b);
		return;
	}
	uint8_t *p = insert(b, mark, n);
	if (!p)
		return;
	if (n == 1) {
		p[0] = (uint8_t)total;
		return;
	}
	/* Lead byte: count of following bytes in bits 7:6, the low nibble in 3:0. */
	p[0] = (uint8_t)((n - 1) << 6 | (total & 0xF));
	put_le(p + 1, total >> 4, n - 1);
}

size_t aml_resource_begin(struct aml_buf *b)
{
	aml_byte(b, AML_BUFFER_OP);
	return b->len;
}

void aml_resource_end(struct aml_buf *b, size_t mark)
{
	struct aml_buf size = { 0 };

	/* End tag with a zero checksum, which means "not checksummed". */
	aml_byte(b, RES_END_TAG);
	aml_byte(b, 0);
	if (b->failed)
		return;
	if (mark == 0 || mark > b->len) {
		fail(b);
		return;
	}
	aml_integer(&size, b->len - mark);
	uint8_t *p = size.failed ? NULL : insert(b, mark, size.len);
	if (p)
		memcpy(p, size.data, size.len);
	else
		fail(b);
	aml_free(&size);
	aml_end(b, mark);
}

void aml_res_io(struct aml_buf *b, uint16_t base, uint8_t len)
{
	uint8_t d[8] = { RES_IO, RES_IO_DECODE16, 0, 0, 0, 0, 1, len };

	put_le(d + 2, base, 2);
	put_le(d + 4, base, 2);
	aml_bytes(b, d, sizeof(d));
}

void aml_res_irq_noflags(struct aml_buf *b, uint8_t irq)
{
	if (irq > 15) {
		fail(b);
		return;
	}
	uint8_t d[3] = { RES_IRQ_NOFLAGS, (uint8_t)(1u << irq), (uint8_t)(1u << irq >> 8) };
	aml_bytes(b, d, sizeof(d));
}

void aml_res_address(struct aml_buf *b, unsigned width, uint8_t space, uint8_t type_flags, uint64_t min,
		     uint64_t max)
{
	uint8_t d[3 + 3 + 5 * 8] = { 0 };
	unsigned len = 3 + 5 * width;

	if ((width != 2 && width != 4 && width != 8) || max < min || (width < 8 && max >> (8 * width))) {
		fail(b);
		return;
	}
	d[0] = width == 2 ? RES_WORD_ADDRESS : width == 4 ? RES_DWORD_ADDRESS : RES_QWORD_ADDRESS;
	put_le(d + 1, len, 2);
	d[3] = space;
	d[4] = ADDR_PRODUCER_FIXED;
	d[5] = type_flags;
	/* granularity 0, then minimum, maximum, translation 0, length */
	put_le(d + 6 + width, min, width);
	put_le(d + 6 + 2 * width, max, width);
	put_le(d + 6 + 4 * width, max - min + 1, width);
	aml_bytes(b, d, 3 + len);
}

void aml_res_memory32_fixed(struct aml_buf *b, uint32_t base, uint32_t len)
{
	uint8_t d[12] = { RES_MEMORY32_FIXED, 9, 0, AML_ADDR_MEM_READWRITE };

	put_le(d + 4, base, 4);
	put_le(d + 8, len, 4);
	aml_bytes(b, d, sizeof(d));
}

void aml_isa_device(struct aml_buf *b, const char *name, const char *hid, unsigned uid, uint16_t port, uint8_t len,
		    uint8_t irq)
{
	size_t dev = aml_device_begin(b, name);
	aml_name(b, "_HID");
	aml_eisaid(b, hid);
	aml_name(b, "_UID");
	aml_integer(b, uid);
	aml_name(b, "_CRS");
	size_t crs = aml_resource_begin(b);
	aml_res_io(b, port, len);
	aml_res_irq_noflags(b, irq);
	aml_resource_end(b, crs);
	aml_end(b, dev);
}
