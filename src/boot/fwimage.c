#include "fwimage.h"

#include <lzma.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* EFI_FIRMWARE_VOLUME_HEADER */
#define FV_GUID 0x10
#define FV_LENGTH 0x20
#define FV_SIGNATURE 0x28
#define FV_HEADER_LENGTH 0x30
#define FV_MIN_HEADER 0x48 /* the fixed part, one block map entry and its terminator */

/* EFI_FFS_FILE_HEADER(2) */
#define FFS_HEADER 24
#define FFS_HEADER2 32
#define FFS_TYPE 18
#define FFS_ATTRIBUTES 19
#define FFS_SIZE 20
#define FFS_LARGE_FILE 0x01

/* EFI_COMMON_SECTION_HEADER(2) */
#define SECTION_GUID_DEFINED 0x02
#define SECTION_FV_IMAGE 0x17
#define GUID_SECTION_DATA_OFFSET 16

/* How deep volumes nest in sections in files in volumes (OVMF: 2). */
#define MAX_DEPTH 4
/* Largest compressed volume we expand (OVMF's is 13 MB). */
#define MAX_EXPANDED (64u << 20)

/* gEfiSystemNvDataFvGuid FFF12B8D-7696-4C8B-A985-2747075B4F50, in memory order. */
static const uint8_t nv_data_guid[16] = { 0x8d, 0x2b, 0xf1, 0xff, 0x96, 0x76, 0x8b, 0x4c,
					  0xa9, 0x85, 0x27, 0x47, 0x07, 0x5b, 0x4f, 0x50 };
/* gLzmaCustomDecompressGuid EE4E5898-3914-4259-9D6E-DC7BD79403CF: how edk2 marks LZMA sections. */
static const uint8_t lzma_guid[16] = { 0x98, 0x58, 0x4e, 0xee, 0x14, 0x39, 0x59, 0x42,
				       0x9d, 0x6e, 0xdc, 0x7b, 0xd7, 0x94, 0x03, 0xcf };

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le24(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

uint64_t fwimage_volume_length(const uint8_t *img)
{
	return le64(img + FV_LENGTH);
}

/* A volume header at fv with `room` bytes from there to the end of its container. */
static bool volume_ok(const uint8_t *fv, size_t room)
{
	uint64_t length;
	uint16_t hlen, sum = 0;

	if (room < FV_MIN_HEADER || memcmp(fv + FV_SIGNATURE, "_FVH", 4) != 0)
		return false;
	length = le64(fv + FV_LENGTH);
	hlen = le16(fv + FV_HEADER_LENGTH);
	if (hlen < FV_MIN_HEADER || hlen % 2 || length < hlen || length > room)
		return false;
	for (unsigned i = 0; i < hlen; i += 2)
		sum = (uint16_t)(sum + le16(fv + i));
	return sum == 0;
}

int fwimage_check_volumes(const uint8_t *img, size_t size, char *err, size_t errlen)
{
	size_t off = 0;

	if (size == 0)
		return set_error(err, errlen, "empty file");
	while (off < size) {
		if (!volume_ok(img + off, size - off))
			return set_error(err, errlen, "no valid UEFI firmware volume at offset 0x%zx", off);
		off += (size_t)fwimage_volume_length(img + off);
	}
	return 0;
}

bool fwimage_is_var_store(const uint8_t *img, size_t size)
{
	return volume_ok(img, size) && memcmp(img + FV_GUID, nv_data_guid, sizeof(nv_data_guid)) == 0;
}

/* ---- looking for MM modules ---- */

struct smm_search {
	bool found;
	char *err;
	size_t errlen;
	int rc; /* -1 once a compressed volume failed to expand */
};

static void walk_volume(struct smm_search *s, const uint8_t *fv, size_t room, int depth);

/* EFI_FV_FILETYPE_MM, COMBINED_MM_DXE, MM_CORE, MM_STANDALONE, MM_CORE_STANDALONE. */
static bool is_mm_type(uint8_t type)
{
	return type == 0x0A || (type >= 0x0C && type <= 0x0F);
}

/* An edk2 LZMA section body: 13-byte header (properties, 64-bit size), then the stream ("lzma alone"). */
static uint8_t *lzma_expand(struct smm_search *s, const uint8_t *in, size_t len, size_t *out_len)
{
	lzma_stream strm = LZMA_STREAM_INIT;
	uint64_t declared;
	uint8_t *out;
	lzma_ret ret;

	if (len < 13 || (declared = le64(in + 5)) > MAX_EXPANDED) {
		s->rc = set_error(s->err, s->errlen, "a compressed firmware volume is damaged or too large");
		return NULL;
	}
	out = malloc(declared ? (size_t)declared : 1);
	if (!out || lzma_alone_decoder(&strm, 4 * (uint64_t)MAX_EXPANDED) != LZMA_OK) {
		free(out);
		s->rc = set_error(s->err, s->errlen, "cannot expand a compressed firmware volume");
		return NULL;
	}
	strm.next_in = in;
	strm.avail_in = len;
	strm.next_out = out;
	strm.avail_out = (size_t)declared;
	ret = lzma_code(&strm, LZMA_FINISH);
	*out_len = (size_t)declared - strm.avail_out;
	lzma_end(&strm);
	if (ret != LZMA_STREAM_END || *out_len != declared) {
		free(out);
		s->rc = set_error(s->err, s->errlen, "a compressed firmware volume is damaged");
		return NULL;
	}
	return out;
}

static void walk_sections(struct smm_search *s, const uint8_t *p, size_t len, int depth);

static void walk_guided(struct smm_search *s, const uint8_t *sec, size_t hdr, size_t size, int depth)
{
	size_t data, out_len;
	uint8_t *out;

	if (size < hdr + GUID_SECTION_DATA_OFFSET + 4 || memcmp(sec + hdr, lzma_guid, 16) != 0)
		return; /* other encodings (none in OVMF) stay unread */
	data = le16(sec + hdr + GUID_SECTION_DATA_OFFSET);
	if (data < hdr + GUID_SECTION_DATA_OFFSET + 4 || data > size)
		return;
	out = lzma_expand(s, sec + data, size - data, &out_len);
	if (!out)
		return;
	walk_sections(s, out, out_len, depth + 1);
	free(out);
}

static void walk_sections(struct smm_search *s, const uint8_t *p, size_t len, int depth)
{
	size_t off = 0;

	if (depth > MAX_DEPTH)
		return;
	while (!s->found && s->rc == 0 && off + 4 <= len) {
		size_t size = le24(p + off), hdr = 4;
		uint8_t type = p[off + 3];

		if (size == 0xFFFFFF) {
			if (off + 8 > len)
				return;
			size = le32(p + off + 4), hdr = 8;
		}
		if (size < hdr || size > len - off)
			return;
		if (type == SECTION_FV_IMAGE)
			walk_volume(s, p + off + hdr, size - hdr, depth + 1);
		else if (type == SECTION_GUID_DEFINED)
			walk_guided(s, p + off, hdr, size, depth);
		off = align_up(off + size, 4);
	}
}

static bool all_ones(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0xff)
			return false;
	return true;
}

/* Files start after the header, 8-byte aligned; free space (all ones) ends the list. */
static void walk_volume(struct smm_search *s, const uint8_t *fv, size_t room, int depth)
{
	size_t off, end;

	if (depth > MAX_DEPTH || !volume_ok(fv, room))
		return;
	end = (size_t)fwimage_volume_length(fv);
	off = align_up(le16(fv + FV_HEADER_LENGTH), 8);
	while (!s->found && s->rc == 0 && off + FFS_HEADER <= end && !all_ones(fv + off, FFS_HEADER)) {
		const uint8_t *f = fv + off;
		size_t size = le24(f + FFS_SIZE), hdr = FFS_HEADER;

		if (f[FFS_ATTRIBUTES] & FFS_LARGE_FILE) {
			if (off + FFS_HEADER2 > end)
				return;
			size = (size_t)le64(f + FFS_HEADER), hdr = FFS_HEADER2;
		}
		if (size < hdr || size > end - off)
			return;
		if (is_mm_type(f[FFS_TYPE])) {
			s->found = true;
			return;
		}
		walk_sections(s, f + hdr, size - hdr, depth);
		off = align_up(off + size, 8);
	}
}

int fwimage_needs_smm(const uint8_t *img, size_t size, char *err, size_t errlen)
{
	struct smm_search s = { .err = err, .errlen = errlen };

	for (size_t off = 0; off < size && volume_ok(img + off, size - off) && !s.found && s.rc == 0;
	     off += (size_t)fwimage_volume_length(img + off))
		walk_volume(&s, img + off, size - off, 0);
	if (s.rc < 0)
		return -1;
	return s.found ? 1 : 0;
}
