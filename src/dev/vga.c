/* Legacy VGA registers and text mode rendering (vga.h). */
#include "vga.h"

#include <string.h>

#include "snapshot/state.h"

#define TEXT_CHARS (VGA_TEXT_SIZE / 2) /* character addresses wrap inside the text window */

/* CRTC registers used by text mode. */
#define CR_CURSOR_START 0x0A
#define CR_CURSOR_END 0x0B
#define CR_START_HI 0x0C
#define CR_START_LO 0x0D
#define CR_CURSOR_HI 0x0E
#define CR_CURSOR_LO 0x0F
#define CR_VSYNC_END 0x11
#define CR_OFFSET 0x13
#define CURSOR_OFF 0x20
#define CRTC_PROTECT 0x80

#define AR_MODE 0x10
#define AR_COLOR_SELECT 0x14
#define AR_MODE_BLINK 0x08
#define AR_MODE_P54S 0x80
#define AR_PAS 0x20

/* BIOS mode 3: 80x25 colour text, 720x400 timing. */
static const uint8_t mode3_seq[VGA_SEQ_N] = { 0x03, 0x00, 0x03, 0x00, 0x02 };
static const uint8_t mode3_gc[VGA_GC_N] = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF };
static const uint8_t mode3_attr[VGA_ATTR_N] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F,
	0x0C, 0x00, 0x0F, 0x08, 0x00,
};
static const uint8_t mode3_crtc[VGA_CRTC_N] = {
	0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00,
	0x00, 0x00, 0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF,
};

void vga_reset(struct vga *v)
{
	memset(v, 0, sizeof(*v));
	v->misc = 0x67;
	memcpy(v->seq, mode3_seq, sizeof(v->seq));
	memcpy(v->gc, mode3_gc, sizeof(v->gc));
	memcpy(v->attr, mode3_attr, sizeof(v->attr));
	memcpy(v->crtc, mode3_crtc, sizeof(v->crtc));
	v->attr_index = AR_PAS;
	v->dac_mask = 0xFF;
	/* The EGA colours in DAC entries 0-63: bits 0-2 add 2/3 of blue, green, red; bits 3-5 add 1/3. */
	for (unsigned i = 0; i < 64; i++)
		for (unsigned c = 0; c < 3; c++) /* c: red, green, blue */
			v->dac[i][c] = (uint8_t)(((i >> (2 - c)) & 1) * 0x2A + ((i >> (5 - c)) & 1) * 0x15);
	v->changed = true;
}

/* ---- register access ---- */

static uint8_t reg_get(const uint8_t *regs, unsigned n, uint8_t index)
{
	return index < n ? regs[index] : 0xFF;
}

static void crtc_write(struct vga *v, uint8_t val)
{
	uint8_t i = v->crtc_index;

	if (i >= VGA_CRTC_N)
		return;
	if (i < 8 && (v->crtc[CR_VSYNC_END] & CRTC_PROTECT)) {
		if (i == 7) /* only the line compare bit 8 stays writable */
			v->crtc[7] = (uint8_t)((v->crtc[7] & ~0x10) | (val & 0x10));
		return;
	}
	v->crtc[i] = val;
}

static void attr_write(struct vga *v, uint8_t val)
{
	uint8_t i = v->attr_index & 0x1F;

	if (!v->attr_data_next)
		v->attr_index = val & 0x3F;
	else if (i < VGA_ATTR_N)
		v->attr[i] = i < 16 ? (val & 0x3F) : val;
	v->attr_data_next = !v->attr_data_next;
}

static void dac_data_write(struct vga *v, uint8_t val)
{
	v->dac_latch[v->dac_step++] = val & 0x3F;
	if (v->dac_step == 3) {
		memcpy(v->dac[v->dac_write++], v->dac_latch, 3);
		v->dac_step = 0;
	}
}

static uint8_t dac_data_read(struct vga *v)
{
	uint8_t val = v->dac[v->dac_read][v->dac_step++];

	if (v->dac_step == 3) {
		v->dac_step = 0;
		v->dac_read++;
	}
	return val;
}

static uint8_t status1_read(struct vga *v)
{
	v->attr_data_next = false;
	v->retrace ^= 1;
	return v->retrace ? 0x09 : 0x00; /* vertical retrace and display disabled, every other read */
}

uint8_t vga_read(struct vga *v, uint16_t port)
{
	switch (port) {
	case 0x3C0: return v->attr_index;
	case 0x3C1: return reg_get(v->attr, VGA_ATTR_N, v->attr_index & 0x1F);
	case 0x3C2: return 0x10; /* input status 0: switch sense */
	case 0x3C3: return 0x01; /* video subsystem enabled */
	case 0x3C4: return v->seq_index;
	case 0x3C5: return reg_get(v->seq, VGA_SEQ_N, v->seq_index);
	case 0x3C6: return v->dac_mask;
	case 0x3C7: return v->dac_state;
	case 0x3C8: return v->dac_write;
	case 0x3C9: return dac_data_read(v);
	case 0x3CA: return v->feature;
	case 0x3CC: return v->misc;
	case 0x3CE: return v->gc_index;
	case 0x3CF: return reg_get(v->gc, VGA_GC_N, v->gc_index);
	case 0x3B4: case 0x3D4: return v->crtc_index;
	case 0x3B5: case 0x3D5: return reg_get(v->crtc, VGA_CRTC_N, v->crtc_index);
	case 0x3BA: case 0x3DA: return status1_read(v);
	default: return 0xFF;
	}
}

/* Index registers and DAC addressing: they do not change the picture. */
static bool index_write(struct vga *v, uint16_t port, uint8_t val)
{
	switch (port) {
	case 0x3C4: v->seq_index = val; return true;
	case 0x3CE: v->gc_index = val; return true;
	case 0x3B4: case 0x3D4: v->crtc_index = val; return true;
	case 0x3C7: v->dac_read = val, v->dac_step = 0, v->dac_state = 0x03; return true;
	case 0x3C8: v->dac_write = val, v->dac_step = 0, v->dac_state = 0x00; return true;
	case 0x3BA: case 0x3DA: v->feature = val; return true;
	default: return false;
	}
}

void vga_write(struct vga *v, uint16_t port, uint8_t val)
{
	if (index_write(v, port, val))
		return;
	switch (port) {
	case 0x3C0: attr_write(v, val); break;
	case 0x3C2: v->misc = val; break;
	case 0x3C5: if (v->seq_index < VGA_SEQ_N) v->seq[v->seq_index] = val; break;
	case 0x3C6: v->dac_mask = val; break;
	case 0x3C9: dac_data_write(v, val); break;
	case 0x3CF: if (v->gc_index < VGA_GC_N) v->gc[v->gc_index] = val; break;
	case 0x3B5: case 0x3D5: crtc_write(v, val); break;
	default: return;
	}
	v->changed = true;
}

void vga_access(struct vga *v, uint16_t port, uint8_t *data, unsigned size, bool is_write)
{
	for (unsigned i = 0; i < size && i < 4; i++) {
		if (is_write)
			vga_write(v, (uint16_t)(port + i), data[i]);
		else
			data[i] = vga_read(v, (uint16_t)(port + i));
	}
}

bool vga_take_changed(struct vga *v)
{
	bool c = v->changed;

	v->changed = false;
	return c;
}

/* ---- text mode ---- */

bool vga_text_mode(const struct vga *v)
{
	return !(v->attr[AR_MODE] & 0x01) && !(v->gc[6] & 0x01);
}

uint32_t vga_color(const struct vga *v, unsigned index)
{
	unsigned pal = v->attr[index & 0x0F] & 0x3F, cs = v->attr[AR_COLOR_SELECT], dac;
	const uint8_t *c;

	if (v->attr[AR_MODE] & AR_MODE_P54S)
		dac = (pal & 0x0F) | (cs & 0x03) << 4;
	else
		dac = pal;
	dac = (dac | (cs & 0x0C) << 4) & v->dac_mask;
	c = v->dac[dac];
	return (uint32_t)(c[0] << 2 | c[0] >> 4) << 16 | (uint32_t)(c[1] << 2 | c[1] >> 4) << 8 |
	       (uint32_t)(c[2] << 2 | c[2] >> 4);
}

static unsigned start_address(const struct vga *v)
{
	return (unsigned)(v->crtc[CR_START_HI] << 8 | v->crtc[CR_START_LO]);
}

/* Characters from one row to the next (CR13 counts words of two characters). */
static unsigned row_pitch(const struct vga *v)
{
	return v->crtc[CR_OFFSET] * 2u;
}

bool vga_cursor_cell(const struct vga *v, unsigned *col, unsigned *row)
{
	unsigned pos = (unsigned)(v->crtc[CR_CURSOR_HI] << 8 | v->crtc[CR_CURSOR_LO]);
	unsigned rel = (pos - start_address(v)) % TEXT_CHARS, pitch = row_pitch(v);

	*row = pitch ? rel / pitch : 0;
	*col = pitch ? rel % pitch : rel;
	return *row < VGA_ROWS && *col < VGA_COLS;
}

static void draw_cell(uint32_t *out, const uint8_t *glyph, unsigned height, uint32_t fg, uint32_t bg)
{
	for (unsigned y = 0; y < VGA_CELL_H; y++, out += VGA_WIDTH) {
		uint8_t bits = y < height ? glyph[y] : 0;
		for (unsigned x = 0; x < VGA_CELL_W; x++)
			out[x] = (bits & (0x80 >> x)) ? fg : bg;
	}
}

static void draw_cursor(const struct vga *v, const uint8_t *text, uint32_t *out)
{
	unsigned col, row, first = v->crtc[CR_CURSOR_START] & 0x1F, last = v->crtc[CR_CURSOR_END] & 0x1F;
	unsigned addr;
	uint32_t fg, *cell;

	if ((v->crtc[CR_CURSOR_START] & CURSOR_OFF) || first > last || !vga_cursor_cell(v, &col, &row))
		return;
	addr = (start_address(v) + row * row_pitch(v) + col) % TEXT_CHARS;
	fg = vga_color(v, text[addr * 2 + 1] & 0x0F);
	cell = out + row * VGA_CELL_H * VGA_WIDTH + col * VGA_CELL_W;
	for (unsigned y = first; y <= last && y < VGA_CELL_H; y++)
		for (unsigned x = 0; x < VGA_CELL_W; x++)
			cell[y * VGA_WIDTH + x] = fg;
}

void vga_render_text(const struct vga *v, const uint8_t *text, const struct vga_font *font, uint32_t *out)
{
	unsigned start = start_address(v), pitch = row_pitch(v);
	bool blink = v->attr[AR_MODE] & AR_MODE_BLINK;
	uint32_t colors[16];

	for (unsigned i = 0; i < 16; i++)
		colors[i] = vga_color(v, i);
	for (unsigned row = 0; row < VGA_ROWS; row++) {
		for (unsigned col = 0; col < VGA_COLS; col++) {
			unsigned addr = (start + row * pitch + col) % TEXT_CHARS;
			uint8_t ch = text[addr * 2], at = text[addr * 2 + 1];
			unsigned bg = blink ? (at >> 4) & 7 : at >> 4;
			draw_cell(out + row * VGA_CELL_H * VGA_WIDTH + col * VGA_CELL_W, font->glyph[ch], font->height,
				  colors[at & 0x0F], colors[bg]);
		}
	}
	draw_cursor(v, text, out);
}

/* ---- snapshots ---- */

void vga_save(const struct vga *v, struct state_writer *w)
{
	state_begin_map(w, "vga");
	state_put_u64(w, "misc", v->misc);
	state_put_u64(w, "feature", v->feature);
	state_put_u64(w, "seq_index", v->seq_index);
	state_put_bytes(w, "seq", v->seq, sizeof(v->seq));
	state_put_u64(w, "gc_index", v->gc_index);
	state_put_bytes(w, "gc", v->gc, sizeof(v->gc));
	state_put_u64(w, "attr_index", v->attr_index);
	state_put_bool(w, "attr_data_next", v->attr_data_next);
	state_put_bytes(w, "attr", v->attr, sizeof(v->attr));
	state_put_u64(w, "crtc_index", v->crtc_index);
	state_put_bytes(w, "crtc", v->crtc, sizeof(v->crtc));
	state_put_u64(w, "dac_mask", v->dac_mask);
	state_put_u64(w, "dac_read", v->dac_read);
	state_put_u64(w, "dac_write", v->dac_write);
	state_put_u64(w, "dac_step", v->dac_step);
	state_put_u64(w, "dac_state", v->dac_state);
	state_put_bytes(w, "dac_latch", v->dac_latch, sizeof(v->dac_latch));
	state_put_bytes(w, "dac", v->dac, sizeof(v->dac));
	state_end_map(w);
}

/* Lenient: a field that is missing or out of range keeps its power-on value. */
void vga_restore(struct vga *v, struct state_reader *r)
{
	vga_reset(v);
	if (state_enter_map(r, "vga") < 0)
		return;
	(void)state_get_u8(r, "misc", 0xFF, &v->misc);
	(void)state_get_u8(r, "feature", 0xFF, &v->feature);
	(void)state_get_u8(r, "seq_index", 0xFF, &v->seq_index);
	state_get_bytes(r, "seq", v->seq, sizeof(v->seq));
	(void)state_get_u8(r, "gc_index", 0xFF, &v->gc_index);
	state_get_bytes(r, "gc", v->gc, sizeof(v->gc));
	(void)state_get_u8(r, "attr_index", 0x3F, &v->attr_index);
	state_get_bool(r, "attr_data_next", &v->attr_data_next);
	state_get_bytes(r, "attr", v->attr, sizeof(v->attr));
	(void)state_get_u8(r, "crtc_index", 0xFF, &v->crtc_index);
	state_get_bytes(r, "crtc", v->crtc, sizeof(v->crtc));
	(void)state_get_u8(r, "dac_mask", 0xFF, &v->dac_mask);
	(void)state_get_u8(r, "dac_read", 0xFF, &v->dac_read);
	(void)state_get_u8(r, "dac_write", 0xFF, &v->dac_write);
	(void)state_get_u8(r, "dac_step", 2, &v->dac_step);
	(void)state_get_u8(r, "dac_state", 0xFF, &v->dac_state);
	state_get_bytes(r, "dac_latch", v->dac_latch, sizeof(v->dac_latch));
	state_get_bytes(r, "dac", v->dac, sizeof(v->dac));
	state_leave_map(r);
	for (unsigned i = 0; i < 16; i++)
		v->attr[i] &= 0x3F;
	for (unsigned i = 0; i < 3; i++)
		v->dac_latch[i] &= 0x3F;
	for (unsigned i = 0; i < 256; i++)
		for (unsigned c = 0; c < 3; c++)
			v->dac[i][c] &= 0x3F;
	v->changed = true;
}
