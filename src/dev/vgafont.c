/*
 * Console fonts for VGA text mode (vga_font_load in vga.h).
 *
 * Why a font file read at run time rather than glyphs compiled into hyve:
 * the glyphs are data with their own authors and licences, and hyve does
 * not redistribute any. The default is Debian's console-setup-linux
 * Uni2-VGA16 (/usr/share/consolefonts, converted by console-setup from
 * Dmitry Bolkhovityanov's u_vga16 BDF font, MIT-style licence; Debian's
 * copyright file also states console fonts are public domain by nature),
 * chosen because it looks like the VGA ROM font and covers code page 437
 * but for five block characters, which stay blank. (Debian 12's `kbd`
 * ships no fonts; console-setup-linux does.) Any PSF font with 8-pixel
 * glyphs can be configured instead.
 */
#include "vga.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/log.h"

#define MAX_FILE (4u << 20)
#define PSF1_MAGIC 0x0436
#define PSF1_MODE512 0x01
#define PSF1_MODEHASTAB 0x02
#define PSF1_MODESEQ 0x04
#define PSF2_MAGIC 0x864AB572u
#define PSF2_HAS_UNICODE_TABLE 0x01

/* Unicode of each code page 437 byte, as the VGA ROM font draws them. */
static const uint16_t cp437[256] = {
	0x0000, 0x263A, 0x263B, 0x2665, 0x2666, 0x2663, 0x2660, 0x2022,
	0x25D8, 0x25CB, 0x25D9, 0x2642, 0x2640, 0x266A, 0x266B, 0x263C,
	0x25BA, 0x25C4, 0x2195, 0x203C, 0x00B6, 0x00A7, 0x25AC, 0x21A8,
	0x2191, 0x2193, 0x2192, 0x2190, 0x221F, 0x2194, 0x25B2, 0x25BC,
	[0x20] = 0x0020, /* 0x20-0x7E: ASCII, filled in by cp437_unicode() */
	[0x7F] = 0x2302,
	0x00C7, 0x00FC, 0x00E9, 0x00E2, 0x00E4, 0x00E0, 0x00E5, 0x00E7,
	0x00EA, 0x00EB, 0x00E8, 0x00EF, 0x00EE, 0x00EC, 0x00C4, 0x00C5,
	0x00C9, 0x00E6, 0x00C6, 0x00F4, 0x00F6, 0x00F2, 0x00FB, 0x00F9,
	0x00FF, 0x00D6, 0x00DC, 0x00A2, 0x00A3, 0x00A5, 0x20A7, 0x0192,
	0x00E1, 0x00ED, 0x00F3, 0x00FA, 0x00F1, 0x00D1, 0x00AA, 0x00BA,
	0x00BF, 0x2310, 0x00AC, 0x00BD, 0x00BC, 0x00A1, 0x00AB, 0x00BB,
	0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x2561, 0x2562, 0x2556,
	0x2555, 0x2563, 0x2551, 0x2557, 0x255D, 0x255C, 0x255B, 0x2510,
	0x2514, 0x2534, 0x252C, 0x251C, 0x2500, 0x253C, 0x255E, 0x255F,
	0x255A, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256C, 0x2567,
	0x2568, 0x2564, 0x2565, 0x2559, 0x2558, 0x2552, 0x2553, 0x256B,
	0x256A, 0x2518, 0x250C, 0x2588, 0x2584, 0x258C, 0x2590, 0x2580,
	0x03B1, 0x00DF, 0x0393, 0x03C0, 0x03A3, 0x03C3, 0x00B5, 0x03C4,
	0x03A6, 0x0398, 0x03A9, 0x03B4, 0x221E, 0x03C6, 0x03B5, 0x2229,
	0x2261, 0x00B1, 0x2265, 0x2264, 0x2320, 0x2321, 0x00F7, 0x2248,
	0x00B0, 0x2219, 0x00B7, 0x221A, 0x207F, 0x00B2, 0x25A0, 0x00A0,
};

static unsigned cp437_unicode(unsigned b)
{
	return b >= 0x20 && b < 0x7F ? b : cp437[b];
}

struct psf {
	const uint8_t *glyphs;
	unsigned count, charsize, height, row_bytes;
	const uint8_t *table, *end; /* Unicode table, NULL when absent */
	bool utf8;                  /* PSF2 tables are UTF-8; PSF1 tables 16-bit little endian */
};

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int parse_psf(const uint8_t *buf, size_t len, struct psf *p)
{
	uint64_t need;

	memset(p, 0, sizeof(*p));
	if (len >= 4 && (buf[0] | buf[1] << 8) == PSF1_MAGIC) {
		p->count = buf[2] & PSF1_MODE512 ? 512 : 256;
		p->charsize = p->height = buf[3];
		p->row_bytes = 1;
		p->glyphs = buf + 4;
		if (buf[2] & (PSF1_MODEHASTAB | PSF1_MODESEQ))
			p->table = buf + 4 + (size_t)p->count * p->charsize;
	} else if (len >= 32 && le32(buf) == PSF2_MAGIC) {
		uint32_t hdr = le32(buf + 8), width = le32(buf + 28);
		p->count = le32(buf + 16);
		p->charsize = le32(buf + 20);
		p->height = le32(buf + 24);
		if (hdr < 32 || hdr > len || !p->count || p->count > 0x10000 || width < 1 || width > 8 ||
		    p->charsize > 64)
			return -1;
		p->row_bytes = 1;
		p->glyphs = buf + hdr;
		p->utf8 = true;
		if (le32(buf + 12) & PSF2_HAS_UNICODE_TABLE)
			p->table = p->glyphs + (size_t)p->count * p->charsize;
	} else {
		return -1;
	}
	need = (uint64_t)(p->glyphs - buf) + (uint64_t)p->count * p->charsize;
	if (!p->height || p->height > 32 || p->charsize < p->height * p->row_bytes || need > len)
		return -1;
	p->end = buf + len;
	return 0;
}

/* Next code point of a table entry, or 0xFFFF (end of glyph) / 0xFFFE (sequences follow); -1 at the end. */
static long next_code(const struct psf *p, const uint8_t **at)
{
	const uint8_t *s = *at;
	unsigned n, cp;

	if (!p->utf8) {
		if (p->end - s < 2)
			return -1;
		*at = s + 2;
		return s[0] | s[1] << 8;
	}
	if (s >= p->end)
		return -1;
	if (*s == 0xFF || *s == 0xFE) {
		*at = s + 1;
		return 0xFF00 | *s;
	}
	n = *s >= 0xF0 ? 3 : *s >= 0xE0 ? 2 : *s >= 0xC0 ? 1 : 0;
	cp = n ? *s & (0x3F >> n) : *s;
	if (p->end - s <= n)
		return -1;
	for (unsigned i = 1; i <= n; i++)
		cp = cp << 6 | (s[i] & 0x3F);
	*at = s + n + 1;
	return cp == 0xFFFF || cp == 0xFFFE ? 0 : (long)cp;
}

static void put_glyph(struct vga_font *f, unsigned b, const struct psf *p, unsigned g)
{
	memcpy(f->glyph[b], p->glyphs + (size_t)g * p->charsize, p->height);
}

/* Glyph of each code page 437 byte through the font's Unicode table. */
static void map_table(const struct psf *p, struct vga_font *f)
{
	const uint8_t *at = p->table;
	bool done[256] = { false }, seq = false;
	unsigned g = 0;
	long cp;

	while (g < p->count && (cp = next_code(p, &at)) >= 0) {
		if (cp == 0xFFFF) {
			g++, seq = false;
			continue;
		}
		if (cp == 0xFFFE || seq) {
			seq = true;
			continue;
		}
		for (unsigned b = 1; b < 256; b++) {
			if (!done[b] && cp437_unicode(b) == (unsigned long)cp) {
				put_glyph(f, b, p, g);
				done[b] = true;
			}
		}
	}
}

static uint8_t *read_all(const char *path, size_t *len, char *err, size_t errlen)
{
	gzFile gz = gzopen(path, "rb");
	uint8_t *buf;
	int n;

	if (!gz) {
		set_error(err, errlen, "cannot open font %s: %s", path, strerror(errno ? errno : ENOENT));
		return NULL;
	}
	buf = malloc(MAX_FILE);
	n = buf ? gzread(gz, buf, MAX_FILE) : -1;
	gzclose(gz);
	if (n <= 0) {
		free(buf);
		set_error(err, errlen, "cannot read font %s", path);
		return NULL;
	}
	*len = (size_t)n;
	return buf;
}

int vga_font_load(const char *path, struct vga_font *font, char *err, size_t errlen)
{
	size_t len;
	uint8_t *buf = read_all(path, &len, err, errlen);
	struct psf p;

	if (!buf)
		return -1;
	if (parse_psf(buf, len, &p) < 0) {
		free(buf);
		return set_error(err, errlen, "font %s is not a PSF font with glyphs at most 8 pixels wide and 32 high", path);
	}
	memset(font, 0, sizeof(*font));
	font->height = p.height;
	if (p.table) {
		map_table(&p, font);
	} else {
		for (unsigned b = 0; b < 256 && b < p.count; b++)
			put_glyph(font, b, &p, b);
	}
	free(buf);
	return 0;
}
