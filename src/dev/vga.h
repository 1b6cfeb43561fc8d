/*
 * Legacy VGA for the fbuf display (`vga=io|on`): the register file behind
 * I/O ports 0x3B4/0x3B5 and 0x3C0-0x3DF (also BAR2 offsets 0x400-0x41F),
 * and 80x25 text mode rendered from the 0xB8000 text window with a console
 * font into an x8r8g8b8 picture.
 *
 * What is modelled: misc output, sequencer, graphics controller, attribute
 * controller (index/data flip-flop reset by reading input status 1),
 * CRTC (with the CR11 write protection of CR0-CR7), input status 1 with a
 * retrace bit that toggles on every read, and the DAC (pixel mask, read and
 * write indexes, three 6-bit components per entry). Reset leaves the state
 * BIOS mode 3 leaves behind (80x25 colour text, EGA palette in the DAC).
 * What is not: planar memory, graphics modes, fonts loaded into plane 2
 * (text always uses the font file), blinking, the 9th dot column.
 *
 * The caller serialises every call (fbuf's lock).
 */
#ifndef HYVE_VGA_H
#define HYVE_VGA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct state_writer;
struct state_reader;

#define VGA_TEXT_GPA 0xB8000u
#define VGA_TEXT_SIZE 0x8000u   /* 0xB8000-0xBFFFF */
#define VGA_COLS 80
#define VGA_ROWS 25
#define VGA_CELL_W 8
#define VGA_CELL_H 16
#define VGA_WIDTH (VGA_COLS * VGA_CELL_W)   /* 640 */
#define VGA_HEIGHT (VGA_ROWS * VGA_CELL_H)  /* 400 */

#define VGA_SEQ_N 5
#define VGA_GC_N 9
#define VGA_ATTR_N 21
#define VGA_CRTC_N 25

struct vga {
	uint8_t misc, feature;
	uint8_t seq_index, seq[VGA_SEQ_N];
	uint8_t gc_index, gc[VGA_GC_N];
	uint8_t attr_index, attr[VGA_ATTR_N];
	bool attr_data_next;       /* flip-flop: the next 0x3C0 write is data */
	uint8_t crtc_index, crtc[VGA_CRTC_N];
	uint8_t retrace;           /* toggled by each input status 1 read */
	uint8_t dac_mask, dac_read, dac_write, dac_step, dac_state;
	uint8_t dac_latch[3];
	uint8_t dac[256][3];       /* 6-bit components */
	bool changed;              /* a write that may change the picture since vga_take_changed() */
};

/* A console font: 256 glyphs in code page 437 order, 8 x height bits each. */
struct vga_font {
	unsigned height;           /* scanlines per glyph, 1..32 */
	uint8_t glyph[256][32];
};

/* BIOS mode 3 state. */
void vga_reset(struct vga *v);
/* One byte at port 0x3B0-0x3DF; other ports read 0xff and ignore writes. */
uint8_t vga_read(struct vga *v, uint16_t port);
void vga_write(struct vga *v, uint16_t port, uint8_t val);
/* Accesses of 1-4 bytes at port, split into bytes at consecutive ports (outw 0x3D4 = index and data). */
void vga_access(struct vga *v, uint16_t port, uint8_t *data, unsigned size, bool is_write);
/* Text mode as the attribute and graphics controllers say (not graphics). */
bool vga_text_mode(const struct vga *v);
/* true when a register write may have changed the picture since the last call; clears it. */
bool vga_take_changed(struct vga *v);

/* Cursor cell (column, row) relative to the screen start; false when off screen. */
bool vga_cursor_cell(const struct vga *v, unsigned *col, unsigned *row);
/*
 * Draws the 80x25 text screen from the text window (VGA_TEXT_SIZE bytes:
 * character, attribute) into out (VGA_WIDTH x VGA_HEIGHT x8r8g8b8, stride
 * VGA_WIDTH * 4).
 */
void vga_render_text(const struct vga *v, const uint8_t *text, const struct vga_font *font, uint32_t *out);
/* The x8r8g8b8 colour of attribute colour index 0-15 (attribute palette, colour select, DAC, pixel mask). */
uint32_t vga_color(const struct vga *v, unsigned index);

/*
 * Loads a PSF (version 1 or 2, optionally gzip'ed) console font with
 * 8-pixel glyphs, arranged in code page 437 order through the font's
 * Unicode table (or taken in file order when it has none). 0, or -1 with a
 * reason in err.
 */
int vga_font_load(const char *path, struct vga_font *font, char *err, size_t errlen);

/* Registers as a "vga" map in the device section; restore keeps defaults for missing fields. */
void vga_save(const struct vga *v, struct state_writer *w);
void vga_restore(struct vga *v, struct state_reader *r);

#endif
