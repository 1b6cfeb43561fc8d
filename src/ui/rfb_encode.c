/*
 * Server-to-client pixel data: conversion from the x8r8g8b8 picture to the
 * client's pixel format, and the Raw and ZRLE encodings (RFC 6143 7.7).
 */
#include "ui/rfb.h"

#include <string.h>

#define ZRLE_TILE 64
#define ZRLE_MAX_PALETTE 16

static bool is_native(const struct rfb_pixel_format *pf)
{
	return pf->bpp == 32 && !pf->big_endian && pf->red_max == 255 && pf->green_max == 255 &&
	       pf->blue_max == 255 && pf->red_shift == 16 && pf->green_shift == 8 && pf->blue_shift == 0;
}

/* A native pixel as the client's pixel value. */
static uint32_t convert(uint32_t p, const struct rfb_pixel_format *pf)
{
	uint32_t r = (p >> 16) & 0xff, g = (p >> 8) & 0xff, b = p & 0xff;

	r = (r * pf->red_max + 127) / 255;
	g = (g * pf->green_max + 127) / 255;
	b = (b * pf->blue_max + 127) / 255;
	return r << pf->red_shift | g << pf->green_shift | b << pf->blue_shift;
}

/* Writes the pixel value v as pf->bpp/8 bytes in the client's byte order. */
static size_t store(uint8_t *out, uint32_t v, const struct rfb_pixel_format *pf)
{
	size_t n = pf->bpp / 8;

	for (size_t i = 0; i < n; i++)
		out[i] = (uint8_t)(pf->big_endian ? v >> (8 * (n - 1 - i)) : v >> (8 * i));
	return n;
}

static uint32_t pixel_at(const struct rfb_image *img, uint32_t x, uint32_t y)
{
	const uint8_t *p = img->pixels + (size_t)y * img->stride + (size_t)x * 4;

	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

void rfb_put_rect_header(struct rfb_buf *b, uint16_t x, uint16_t y, uint16_t w, uint16_t h, int32_t enc)
{
	rfb_buf_u16(b, x);
	rfb_buf_u16(b, y);
	rfb_buf_u16(b, w);
	rfb_buf_u16(b, h);
	rfb_buf_u32(b, (uint32_t)enc);
}

void rfb_encode_raw(struct rfb_buf *b, const struct rfb_image *img, const struct rfb_pixel_format *pf,
		    uint16_t x, uint16_t y, uint16_t w, uint16_t h)
{
	size_t bytes_pp = pf->bpp / 8, row = (size_t)w * bytes_pp;
	bool native = is_native(pf);

	rfb_put_rect_header(b, x, y, w, h, RFB_ENC_RAW);
	for (uint32_t j = 0; j < h; j++) {
		const uint8_t *src = img->pixels + (size_t)(y + j) * img->stride + (size_t)x * 4;
		size_t at = b->len;

		rfb_buf_put(b, src, row); /* grows the buffer; native rows are then already right */
		if (b->failed)
			return;
		if (native)
			continue;
		for (uint32_t i = 0; i < w; i++)
			at += store(b->data + at, convert(pixel_at(img, x + i, y + j), pf), pf);
	}
}

/* ---- ZRLE ---- */

/*
 * ZRLE's compact pixel: a 32 bpp true-colour pixel whose colour bits fit in
 * three bytes drops the unused byte.
 */
struct cpixel_format {
	const struct rfb_pixel_format *pf;
	size_t bytes;
	size_t skip;   /* index of the dropped byte in the 4-byte representation */
};

static void cpixel_setup(struct cpixel_format *c, const struct rfb_pixel_format *pf)
{
	uint32_t used = (uint32_t)pf->red_max << pf->red_shift | (uint32_t)pf->green_max << pf->green_shift |
			(uint32_t)pf->blue_max << pf->blue_shift;

	c->pf = pf;
	c->bytes = pf->bpp / 8;
	c->skip = SIZE_MAX;
	if (pf->bpp != 32 || pf->depth > 24)
		return;
	if (!(used & 0xff000000u))
		c->skip = pf->big_endian ? 0 : 3;
	else if (!(used & 0xffu))
		c->skip = pf->big_endian ? 3 : 0;
	if (c->skip != SIZE_MAX)
		c->bytes = 3;
}

static size_t cpixel_store(uint8_t *out, uint32_t native, const struct cpixel_format *c)
{
	uint8_t full[4];
	size_t n = 0;

	if (c->skip == SIZE_MAX)
		return store(out, convert(native, c->pf), c->pf);
	store(full, convert(native, c->pf), c->pf);
	for (size_t i = 0; i < 4; i++)
		if (i != c->skip)
			out[n++] = full[i];
	return n;
}

/* Collects up to ZRLE_MAX_PALETTE + 1 distinct colours of a tile; returns how many. */
static unsigned tile_palette(const struct rfb_image *img, uint32_t x, uint32_t y, uint32_t w, uint32_t h,
			     uint32_t pal[ZRLE_MAX_PALETTE + 1])
{
	unsigned n = 0;
	uint32_t last = 0;

	for (uint32_t j = 0; j < h; j++)
		for (uint32_t i = 0; i < w; i++) {
			uint32_t p = pixel_at(img, x + i, y + j);
			unsigned k;

			if (n && p == last)
				continue;
			last = p;
			for (k = 0; k < n && pal[k] != p; k++)
				;
			if (k < n)
				continue;
			pal[n++] = p;
			if (n > ZRLE_MAX_PALETTE)
				return n;
		}
	return n;
}

static unsigned palette_index(const uint32_t *pal, unsigned n, uint32_t p)
{
	unsigned k = 0;

	while (k < n - 1 && pal[k] != p)
		k++;
	return k;
}

/* Packed palette tile: indices of 1, 2 or 4 bits, each row starting on a byte. */
static void tile_packed(struct rfb_buf *t, const struct rfb_image *img, uint32_t x, uint32_t y, uint32_t w,
			uint32_t h, const uint32_t *pal, unsigned n, const struct cpixel_format *c)
{
	unsigned bits = n <= 2 ? 1 : n <= 4 ? 2 : 4;
	uint8_t px[4];

	rfb_buf_u8(t, (uint8_t)n);
	for (unsigned k = 0; k < n; k++)
		rfb_buf_put(t, px, cpixel_store(px, pal[k], c));
	for (uint32_t j = 0; j < h; j++) {
		uint8_t acc = 0;
		unsigned used = 0;

		for (uint32_t i = 0; i < w; i++) {
			acc = (uint8_t)(acc << bits | palette_index(pal, n, pixel_at(img, x + i, y + j)));
			used += bits;
			if (used == 8) {
				rfb_buf_u8(t, acc);
				acc = 0;
				used = 0;
			}
		}
		if (used)
			rfb_buf_u8(t, (uint8_t)(acc << (8 - used)));
	}
}

/* Plain RLE tile: runs of one colour, lengths as 255-sums. Good for photos and gradients. */
static void tile_rle(struct rfb_buf *t, const struct rfb_image *img, uint32_t x, uint32_t y, uint32_t w,
		     uint32_t h, const struct cpixel_format *c)
{
	uint32_t total = w * h, i = 0;
	uint8_t px[4];

	rfb_buf_u8(t, 128);
	while (i < total) {
		uint32_t p = pixel_at(img, x + i % w, y + i / w), run = 1;

		while (i + run < total && pixel_at(img, x + (i + run) % w, y + (i + run) / w) == p)
			run++;
		rfb_buf_put(t, px, cpixel_store(px, p, c));
		for (uint32_t left = run - 1; ; left -= 255) {
			if (left < 255) {
				rfb_buf_u8(t, (uint8_t)left);
				break;
			}
			rfb_buf_u8(t, 255);
		}
		i += run;
	}
}

static void tile_raw(struct rfb_buf *t, const struct rfb_image *img, uint32_t x, uint32_t y, uint32_t w,
		     uint32_t h, const struct cpixel_format *c)
{
	uint8_t px[4];

	rfb_buf_u8(t, 0);
	for (uint32_t j = 0; j < h; j++)
		for (uint32_t i = 0; i < w; i++)
			rfb_buf_put(t, px, cpixel_store(px, pixel_at(img, x + i, y + j), c));
}

/* Counts runs, to choose between RLE and raw for a many-coloured tile. */
static uint32_t tile_runs(const struct rfb_image *img, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
	uint32_t runs = 0, last = 0;

	for (uint32_t j = 0; j < h; j++)
		for (uint32_t i = 0; i < w; i++) {
			uint32_t p = pixel_at(img, x + i, y + j);
			if (!runs || p != last)
				runs++;
			last = p;
		}
	return runs;
}

static void zrle_tile(struct rfb_buf *t, const struct rfb_image *img, uint32_t x, uint32_t y, uint32_t w,
		      uint32_t h, const struct cpixel_format *c)
{
	uint32_t pal[ZRLE_MAX_PALETTE + 1];
	unsigned n = tile_palette(img, x, y, w, h, pal);
	uint8_t px[4];

	if (n == 1) {
		rfb_buf_u8(t, 1);
		rfb_buf_put(t, px, cpixel_store(px, pal[0], c));
	} else if (n <= ZRLE_MAX_PALETTE) {
		tile_packed(t, img, x, y, w, h, pal, n, c);
	} else if (tile_runs(img, x, y, w, h) * (c->bytes + 1) < w * h * c->bytes) {
		tile_rle(t, img, x, y, w, h, c);
	} else {
		tile_raw(t, img, x, y, w, h, c);
	}
}

/* Appends u32 length + the zlib output of `in` (sync-flushed, so the client can decode it now). */
static int deflate_into(struct rfb_buf *b, z_stream *zs, const struct rfb_buf *in)
{
	size_t at = b->len;
	uint32_t n;
	int rc;

	rfb_buf_u32(b, 0); /* patched below */
	zs->next_in = in->data;
	zs->avail_in = (uInt)in->len;
	do {
		if (!rfb_buf_reserve(b, deflateBound(zs, zs->avail_in) + 64))
			return -1;
		zs->next_out = b->data + b->len;
		zs->avail_out = (uInt)(b->cap - b->len);
		rc = deflate(zs, Z_SYNC_FLUSH);
		b->len = b->cap - zs->avail_out;
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return -1;
	} while (zs->avail_in > 0 || zs->avail_out == 0);
	n = (uint32_t)(b->len - at - 4);
	b->data[at] = (uint8_t)(n >> 24);
	b->data[at + 1] = (uint8_t)(n >> 16);
	b->data[at + 2] = (uint8_t)(n >> 8);
	b->data[at + 3] = (uint8_t)n;
	return 0;
}

int rfb_encode_zrle(struct rfb_buf *b, z_stream *zs, const struct rfb_image *img, const struct rfb_pixel_format *pf,
		    uint16_t x, uint16_t y, uint16_t w, uint16_t h)
{
	struct rfb_buf tiles = { 0 };
	struct cpixel_format c;
	int rc;

	cpixel_setup(&c, pf);
	rfb_put_rect_header(b, x, y, w, h, RFB_ENC_ZRLE);
	for (uint32_t ty = 0; ty < h; ty += ZRLE_TILE)
		for (uint32_t tx = 0; tx < w; tx += ZRLE_TILE) {
			uint32_t tw = w - tx < ZRLE_TILE ? w - tx : ZRLE_TILE;
			uint32_t th = h - ty < ZRLE_TILE ? h - ty : ZRLE_TILE;
			zrle_tile(&tiles, img, x + tx, y + ty, tw, th, &c);
		}
	rc = tiles.failed ? -1 : deflate_into(b, zs, &tiles);
	rfb_buf_free(&tiles);
	return rc;
}

/* ---- Tight (basic compression and fill; no JPEG, so lossless) ---- */

#define TIGHT_MIN_TO_COMPRESS 12
#define TIGHT_FILL 0x80
#define TIGHT_EXPLICIT_FILTER 0x40
#define TIGHT_FILTER_PALETTE 1

/* TPIXEL: 24-bit true colour as R, G, B bytes; other formats as whole pixels. */
static size_t tpixel_store(uint8_t *out, uint32_t native, const struct rfb_pixel_format *pf)
{
	if (pf->bpp == 32 && pf->depth == 24 && pf->red_max == 255 && pf->green_max == 255 && pf->blue_max == 255) {
		uint32_t v = convert(native, pf);
		out[0] = (uint8_t)(v >> pf->red_shift);
		out[1] = (uint8_t)(v >> pf->green_shift);
		out[2] = (uint8_t)(v >> pf->blue_shift);
		return 3;
	}
	return store(out, convert(native, pf), pf);
}

static void put_compact_length(struct rfb_buf *b, size_t n)
{
	rfb_buf_u8(b, (uint8_t)((n & 0x7f) | (n > 0x7f ? 0x80 : 0)));
	if (n > 0x7f) {
		rfb_buf_u8(b, (uint8_t)(((n >> 7) & 0x7f) | (n > 0x3fff ? 0x80 : 0)));
		if (n > 0x3fff)
			rfb_buf_u8(b, (uint8_t)(n >> 14));
	}
}

/* Data of a basic-compression rectangle: raw when short, else compact length + zlib. */
static int tight_data(struct rfb_buf *b, z_stream *zs, const struct rfb_buf *data)
{
	struct rfb_buf z = { 0 };
	size_t at;
	int rc;

	if (data->len < TIGHT_MIN_TO_COMPRESS) {
		rfb_buf_put(b, data->data, data->len);
		return b->failed ? -1 : 0;
	}
	/* deflate_into writes a u32 length first; Tight wants a compact one instead */
	rc = deflate_into(&z, zs, data);
	if (rc == 0 && !z.failed) {
		at = z.len - 4;
		put_compact_length(b, at);
		rfb_buf_put(b, z.data + 4, at);
	}
	rfb_buf_free(&z);
	return rc < 0 || b->failed ? -1 : 0;
}

static int tight_tile(struct rfb_buf *b, z_stream zs[3], const struct rfb_image *img, const struct rfb_pixel_format *pf,
		      uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
	uint32_t pal[ZRLE_MAX_PALETTE + 1];
	unsigned n = tile_palette(img, x, y, w, h, pal);
	struct rfb_buf data = { 0 };
	uint8_t px[4];
	int rc;

	rfb_put_rect_header(b, (uint16_t)x, (uint16_t)y, (uint16_t)w, (uint16_t)h, RFB_ENC_TIGHT);
	if (n == 1) {
		rfb_buf_u8(b, TIGHT_FILL);
		rfb_buf_put(b, px, tpixel_store(px, pal[0], pf));
		return b->failed ? -1 : 0;
	}
	if (n <= ZRLE_MAX_PALETTE) {
		unsigned stream = n == 2 ? 1 : 2;
		rfb_buf_u8(b, (uint8_t)((stream << 4) | TIGHT_EXPLICIT_FILTER));
		rfb_buf_u8(b, TIGHT_FILTER_PALETTE);
		rfb_buf_u8(b, (uint8_t)(n - 1));
		for (unsigned k = 0; k < n; k++)
			rfb_buf_put(b, px, tpixel_store(px, pal[k], pf));
		for (uint32_t j = 0; j < h; j++) {
			uint8_t acc = 0;
			unsigned used = 0;
			for (uint32_t i = 0; i < w; i++) {
				unsigned k = palette_index(pal, n, pixel_at(img, x + i, y + j));
				if (n > 2) {
					rfb_buf_u8(&data, (uint8_t)k);
					continue;
				}
				acc = (uint8_t)(acc << 1 | k);
				if (++used == 8) {
					rfb_buf_u8(&data, acc);
					acc = 0;
					used = 0;
				}
			}
			if (used)
				rfb_buf_u8(&data, (uint8_t)(acc << (8 - used)));
		}
		rc = data.failed ? -1 : tight_data(b, &zs[stream], &data);
	} else {
		rfb_buf_u8(b, 0); /* stream 0, copy filter */
		for (uint32_t j = 0; j < h; j++)
			for (uint32_t i = 0; i < w; i++)
				rfb_buf_put(&data, px, tpixel_store(px, pixel_at(img, x + i, y + j), pf));
		rc = data.failed ? -1 : tight_data(b, &zs[0], &data);
	}
	rfb_buf_free(&data);
	return rc;
}

int rfb_encode_tight(struct rfb_buf *b, z_stream zs[3], const struct rfb_image *img, const struct rfb_pixel_format *pf,
		     uint16_t x, uint16_t y, uint16_t w, uint16_t h)
{
	int rects = 0;

	for (uint32_t ty = 0; ty < h; ty += ZRLE_TILE)
		for (uint32_t tx = 0; tx < w; tx += ZRLE_TILE) {
			uint32_t tw = w - tx < ZRLE_TILE ? w - tx : ZRLE_TILE;
			uint32_t th = h - ty < ZRLE_TILE ? h - ty : ZRLE_TILE;
			if (tight_tile(b, zs, img, pf, x + tx, y + ty, tw, th) < 0)
				return -1;
			rects++;
		}
	return rects;
}
