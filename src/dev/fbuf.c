/*
 * Linear framebuffer display ("fbuf") with the Bochs/QEMU standard VGA
 * programming interface, so stock drivers work (Linux bochs DRM, OVMF's
 * QemuVideoDxe), shown over VNC:
 *
 *   -s SLOT,fbuf,tcp=[ADDR:]PORT|unix=PATH[,w=W][,h=H][,wait][,password=SECRET]
 *                    [,tls-cert=PEM,tls-key=PEM[,tls-ca=PEM]|,tls=anon]
 *                    [,vga=off|io|on][,font=PSF]
 *
 * TLS (VeNCrypt, src/ui/vnc_tls.c): tls-cert/tls-key make the server
 * offer X509Vnc (with password=) or X509None; tls-ca also requires a
 * client certificate signed by that CA. tls=anon offers TLSVnc
 * (anonymous TLS, password= required). The files are read here, when
 * hyve starts.
 *
 * PCI 1234:1111, class 0x0300. BAR0: 32 MiB prefetchable framebuffer, a
 * memfd given to KVM as its own memory slot wherever the guest places the
 * BAR (guest writes never exit; dirty logging tells VNC what changed).
 * BAR2: 4 KiB MMIO with the DISPI registers at 0x500 (16-bit, index =
 * (offset - 0x500) / 2). DISPI is also reachable through I/O ports
 * 0x1CE (index) and 0x1CF (data). While DISPI is disabled the screen is
 * the boot mode W x H x 32 at the start of the framebuffer, which direct
 * Linux boot describes in boot_params.screen_info (vesafb).
 *
 * Legacy VGA (dev/vga.h): vga=off (default) leaves it out: BAR2 0x400-0x41F
 * reads 0xff. vga=io answers the VGA registers at ports 0x3B4/0x3B5,
 * 0x3BA and 0x3C0-0x3DF, and at BAR2 0x400-0x41F (port 0x3C0 + offset -
 * 0x400). vga=on adds the text window 0xB8000-0xBFFFF, a second KVM
 * memory slot (anonymous memory) with dirty logging (the legacy window 0xA0000-0xBFFFF is
 * taken out of the RAM slot; 0xA0000-0xB7FFF stays unbacked), and while
 * DISPI is off and the registers say text mode, the screen is the 80x25
 * text rendered at 640x400 with the font= PSF file; direct Linux boot then
 * describes VGA text mode (vgacon) instead of the framebuffer. The text is
 * re-rendered only when the window's dirty log or a register write says
 * it may have changed, so an idle text screen costs one dirty-log fetch.
 * Why a KVM slot rather than MMIO exits: the console writes each cell
 * as a 16-bit store and scrolls by rewriting the screen, 2000 exits for
 * every scrolled line.
 *
 * Snapshots: DISPI registers, and the framebuffer bytes up to the last
 * non-zero page (at most 32 MiB) in the device section; from version 2 the
 * VGA registers ("vga" map) and the text window ("text"). Version 1
 * sections (no VGA) still restore.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/config.h"
#include "core/devmem.h"
#include "core/device.h"
#include "core/display.h"
#include "core/log.h"
#include "core/options.h"
#include "core/vm.h"
#include "pci/pci.h"
#include "snapshot/state.h"
#include "ui/rfb.h"
#include "ui/vnc.h"
#include "pixel_convert.h"
#include "vga.h"

/*
 * 32 MiB. tests/fuzz builds this file with less (FBUF_SIZE_MIB): clearing
 * the framebuffer and scanning it for a snapshot cost per byte, and would
 * take most of the fuzzer's time.
 */
#ifndef FBUF_SIZE_MIB
#define FBUF_SIZE_MIB 32
#endif
#define FB_SIZE ((uint32_t)FBUF_SIZE_MIB << 20)
#define FB_PAGE 4096u
#define MMIO_SIZE 4096u
#define DISPI_MMIO 0x500u
#define DISPI_PORT 0x1CE

#define DISPI_ID 0
#define DISPI_XRES 1
#define DISPI_YRES 2
#define DISPI_BPP 3
#define DISPI_ENABLE 4
#define DISPI_BANK 5
#define DISPI_VIRT_WIDTH 6
#define DISPI_VIRT_HEIGHT 7
#define DISPI_X_OFFSET 8
#define DISPI_Y_OFFSET 9
#define DISPI_VIDEO_MEMORY_64K 10
#define DISPI_NREGS 11

#define DISPI_ID0 0xB0C0
#define DISPI_ID5 0xB0C5
#define ENABLE_ON 0x01
#define ENABLE_GETCAPS 0x02
#define ENABLE_8BIT_DAC 0x20
#define ENABLE_LFB 0x40
#define ENABLE_NOCLEARMEM 0x80

#define MAX_XRES 3840
#define MAX_YRES 2160
#define MIN_W 640
#define MIN_H 480
#define DEF_W "1024" /* the boot mode unless w=, h= say otherwise */
#define DEF_H "768"

#define VGA_PORTS 0x3C0
#define VGA_NPORTS 0x20
#define VGA_CRTC_MONO 0x3B4
#define VGA_STATUS_MONO 0x3BA
#define VGA_MMIO 0x400u
#define LEGACY_WINDOW 0xA0000u
#define LEGACY_WINDOW_SIZE 0x20000u
#define DEFAULT_FONT "/usr/share/consolefonts/Uni2-VGA16.psf.gz"

enum vga_option { VGA_OFF, VGA_IO, VGA_ON };

struct fbuf {
	struct pci_function fn;
	struct device *dev;
	pthread_mutex_t lock;   /* registers and the slot */
	int memfd;
	uint8_t *mem;
	int slot;
	bool slot_mapped;
	uint64_t slot_gpa;
	uint32_t w, h;          /* boot mode */
	uint16_t index;         /* selected DISPI register */
	uint16_t reg[DISPI_NREGS];
	bool host_wrote;        /* hyve changed the memory itself: not in KVM's dirty log */
	bool have_ports, have_display;
	struct vnc *vnc;
	/* Legacy VGA (vga=io|on) */
	enum vga_option vga_opt;
	struct vga vga;
	bool have_vga_ports;
	/* vga=on: the text window in its own slot, and the picture drawn from it */
	uint8_t *text;
	int text_slot;
	struct vga_font *font;
	uint32_t *pixels;       /* VGA_WIDTH x VGA_HEIGHT x8r8g8b8 */
	bool text_valid;        /* pixels show the text as of the last VNC render */
	bool text_host_wrote;   /* hyve changed the text window (reset, restore) */
	/*
	 * DISPI modes below 32 bpp, converted to x8r8g8b8 (the mode's width x
	 * height): one buffer for VNC, which reads it after fbuf_scanout()
	 * returns, and one for screenshots, so neither rewrites (or moves) the
	 * picture the other is reading.
	 */
	struct rgb_buffer { uint32_t *px; size_t size; } converted, shot;
	bool converted_valid;   /* converted shows the picture as of the last VNC render */
	uint16_t converted_reg[DISPI_NREGS]; /* the DISPI registers it was converted with */
	struct display_surface converted_out;
};

static struct device_model fbuf_model;

/* ---- DISPI ---- */

static unsigned bytes_pp(unsigned bpp)
{
	return bpp == 15 ? 2 : (bpp + 7) / 8;
}

/* Recomputes VIRT_HEIGHT from the memory that VIRT_WIDTH leaves (s->lock held). */
static void update_virt_height(struct fbuf *s)
{
	uint32_t line = s->reg[DISPI_VIRT_WIDTH] * bytes_pp(s->reg[DISPI_BPP]);
	uint32_t h = line ? FB_SIZE / line : 0;

	s->reg[DISPI_VIRT_HEIGHT] = (uint16_t)(h > 0xffff ? 0xffff : h);
}

static uint16_t dispi_read(struct fbuf *s, unsigned idx)
{
	bool caps = s->reg[DISPI_ENABLE] & ENABLE_GETCAPS;

	switch (idx) {
	case DISPI_XRES:
		return caps ? MAX_XRES : s->reg[idx];
	case DISPI_YRES:
		return caps ? MAX_YRES : s->reg[idx];
	case DISPI_BPP:
		return caps ? 32 : s->reg[idx];
	case DISPI_VIDEO_MEMORY_64K:
		return FB_SIZE >> 16;
	default:
		return idx < DISPI_NREGS ? s->reg[idx] : 0;
	}
}

static void dispi_write(struct fbuf *s, unsigned idx, uint16_t val)
{
	bool on = s->reg[DISPI_ENABLE] & ENABLE_ON;

	log_debug("%s: DISPI register %u = 0x%x", s->dev->id, idx, val);
	switch (idx) {
	case DISPI_ID:
		if (val >= DISPI_ID0 && val <= DISPI_ID5)
			s->reg[idx] = val;
		break;
	case DISPI_XRES:
	case DISPI_YRES:
		if (!on)
			s->reg[idx] = val;
		break;
	case DISPI_BPP:
		if (!on && (val == 0 || val == 8 || val == 15 || val == 16 || val == 24 || val == 32))
			s->reg[idx] = val ? val : 8;
		break;
	case DISPI_ENABLE:
		if ((val & ENABLE_ON) && !on) {
			uint32_t x = s->reg[DISPI_XRES], y = s->reg[DISPI_YRES];
			if (!x || !y || x > MAX_XRES || y > MAX_YRES ||
			    (uint64_t)x * y * bytes_pp(s->reg[DISPI_BPP]) > FB_SIZE) {
				log_warn("%s: guest asked for mode %ux%ux%u, which does not fit; display stays off",
					 s->dev->id, x, y, s->reg[DISPI_BPP]);
				val &= (uint16_t)~ENABLE_ON;
			} else {
				s->reg[DISPI_VIRT_WIDTH] = (uint16_t)x;
				s->reg[DISPI_X_OFFSET] = s->reg[DISPI_Y_OFFSET] = 0;
				update_virt_height(s);
				if (!(val & ENABLE_NOCLEARMEM)) {
					memset(s->mem, 0, FB_SIZE);
					s->host_wrote = true;
				}
			}
		}
		s->reg[idx] = val & (ENABLE_ON | ENABLE_GETCAPS | ENABLE_8BIT_DAC | ENABLE_LFB | ENABLE_NOCLEARMEM);
		break;
	case DISPI_BANK:
		s->reg[idx] = val & 0x1ff; /* 64 KiB banks of 32 MiB (no legacy window to map them into) */
		break;
	case DISPI_VIRT_WIDTH:
		if (val >= s->reg[DISPI_XRES] && (uint32_t)val * bytes_pp(s->reg[DISPI_BPP]) <= FB_SIZE) {
			s->reg[idx] = val;
			update_virt_height(s);
		}
		break;
	case DISPI_X_OFFSET:
	case DISPI_Y_OFFSET:
		s->reg[idx] = val;
		break;
	default: /* VIRT_HEIGHT and VIDEO_MEMORY_64K are read-only */
		break;
	}
}

static void dispi_access(struct fbuf *s, unsigned idx, uint8_t *data, unsigned size, bool is_write)
{
	uint16_t v;

	if (is_write) {
		v = data[0] | (size > 1 ? (uint16_t)(data[1] << 8) : 0);
		dispi_write(s, idx, v);
	} else {
		v = dispi_read(s, idx);
		memset(data, 0, size);
		data[0] = (uint8_t)v;
		if (size > 1)
			data[1] = (uint8_t)(v >> 8);
	}
}

static void fbuf_mmio(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	struct fbuf *s = opaque;

	pthread_mutex_lock(&s->lock);
	if (off >= DISPI_MMIO && off < DISPI_MMIO + 2 * DISPI_NREGS && !(off & 1) && size <= 2)
		dispi_access(s, (unsigned)(off - DISPI_MMIO) / 2, data, size, is_write);
	else if (s->vga_opt != VGA_OFF && off >= VGA_MMIO && off + size <= VGA_MMIO + VGA_NPORTS)
		vga_access(&s->vga, (uint16_t)(VGA_PORTS + off - VGA_MMIO), data, size, is_write);
	else if (!is_write)
		memset(data, 0xff, size);
	pthread_mutex_unlock(&s->lock);
}

/* Port 0x1CE: index; 0x1CF (and 0x1D0, as on Bochs): data. */
static void fbuf_pio(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	struct fbuf *s = opaque;

	pthread_mutex_lock(&s->lock);
	if (off == 0) {
		if (is_write)
			s->index = data[0] | (size > 1 ? (uint16_t)(data[1] << 8) : 0);
		else {
			memset(data, 0, size);
			data[0] = (uint8_t)s->index;
			if (size > 1)
				data[1] = (uint8_t)(s->index >> 8);
		}
	} else {
		dispi_access(s, s->index, data, size, is_write);
	}
	pthread_mutex_unlock(&s->lock);
}

/* ---- legacy VGA ports (vga=io|on) ---- */

static void vga_pio(struct fbuf *s, uint16_t port, uint8_t *data, unsigned size, bool is_write)
{
	pthread_mutex_lock(&s->lock);
	vga_access(&s->vga, port, data, size, is_write);
	pthread_mutex_unlock(&s->lock);
}

static void vga_pio_main(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	vga_pio(opaque, (uint16_t)(VGA_PORTS + off), data, size, is_write);
}

static void vga_pio_crtc_mono(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	vga_pio(opaque, (uint16_t)(VGA_CRTC_MONO + off), data, size, is_write);
}

static void vga_pio_status_mono(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	vga_pio(opaque, (uint16_t)(VGA_STATUS_MONO + off), data, size, is_write);
}

static const struct iobus_claim vga_ranges[] = {
	{ VGA_PORTS, VGA_NPORTS, vga_pio_main },
	{ VGA_CRTC_MONO, 2, vga_pio_crtc_mono },
	{ VGA_STATUS_MONO, 1, vga_pio_status_mono },
};
#define N_VGA_RANGES (sizeof(vga_ranges) / sizeof(vga_ranges[0]))

static void vga_ports_unregister(struct fbuf *s)
{
	if (s->have_vga_ports)
		iobus_unregister_all(&s->dev->vm->pio, vga_ranges, N_VGA_RANGES);
	s->have_vga_ports = false;
}

static int vga_ports_register(struct fbuf *s)
{
	if (iobus_register_all(&s->dev->vm->pio, vga_ranges, N_VGA_RANGES, s) < 0) {
		log_error("%s: the VGA ports 0x3b4-0x3df are taken (one fbuf with vga= per VM)", s->dev->id);
		return -1;
	}
	s->have_vga_ports = true;
	return 0;
}

/* ---- the framebuffer slot follows BAR0 ---- */

/*
 * The BAR's placement is read inside s->lock: two vCPUs moving BAR0 at once
 * must not map the slot where the first one found it after the second moved
 * it (reading it before taking the lock left that window).
 */
static void sync_slot(struct fbuf *s)
{
	bool mapped;
	uint64_t gpa;

	pthread_mutex_lock(&s->lock);
	mapped = pci_bar_mapped(&s->fn, 0, &gpa);
	if (mapped != s->slot_mapped || gpa != s->slot_gpa) {
		if (mapped) {
			mapped = vm_map_device_memory(s->dev->vm, s->slot, gpa, s->mem, FB_SIZE, true) == 0;
		} else {
			vm_unmap_device_memory(s->dev->vm, s->slot);
		}
		s->slot_mapped = mapped;
		s->slot_gpa = mapped ? gpa : 0;
	}
	pthread_mutex_unlock(&s->lock);
}

static void fbuf_cfg_write(struct pci_function *fn, unsigned off, unsigned size, uint32_t val)
{
	(void)val;
	if (off < PCI_BASE_ADDRESS_0 + 8 && off + size > PCI_COMMAND)
		sync_slot(fn->opaque);
}

/* BAR0 accesses only arrive while the slot is not in place (never, once mapped). */
static void fbuf_bar0(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	struct fbuf *s = opaque;

	if (off + size > FB_SIZE)
		return;
	if (is_write) {
		memcpy(s->mem + off, data, size);
		pthread_mutex_lock(&s->lock);
		s->host_wrote = true;
		pthread_mutex_unlock(&s->lock);
	} else
		memcpy(data, s->mem + off, size);
}

/* ---- what the screen shows ---- */

/* vga=on, DISPI off and the VGA registers in text mode (s->lock held). */
static bool text_shown(const struct fbuf *s)
{
	return s->vga_opt == VGA_ON && !(s->reg[DISPI_ENABLE] & ENABLE_ON) && vga_text_mode(&s->vga);
}

static void text_surface(struct fbuf *s, struct display_surface *out)
{
	*out = (struct display_surface){ .mem = (const uint8_t *)s->pixels, .mem_size = VGA_WIDTH * VGA_HEIGHT * 4,
					 .width = VGA_WIDTH, .height = VGA_HEIGHT, .stride = VGA_WIDTH * 4, .bpp = 32 };
}

static void render_text(struct fbuf *s)
{
	vga_render_text(&s->vga, s->text, s->font, s->pixels);
}

/*
 * The text screen for VNC: redrawn only when the window's dirty log, a
 * register write or hyve itself says it may have changed; then everything
 * is compared (false), else nothing is (true, empty bitmap).
 */
static bool text_scanout(struct fbuf *s, struct display_surface *out)
{
	uint64_t log[(VGA_TEXT_SIZE / FB_PAGE + 63) / 64] = { 0 };
	bool redraw = !s->text_valid || s->text_host_wrote;

	if (vm_devmem_dirty_log(s->dev->vm, s->text_slot, log) < 0 || log[0])
		redraw = true;
	if (vga_take_changed(&s->vga))
		redraw = true;
	s->text_host_wrote = false;
	s->text_valid = true;
	if (redraw)
		render_text(s);
	text_surface(s, out);
	return !redraw;
}

static void scanout_locked(struct fbuf *s, struct display_surface *out)
{
	*out = (struct display_surface){ .mem = s->mem, .mem_size = FB_SIZE };
	if (s->reg[DISPI_ENABLE] & ENABLE_ON) {
		unsigned bpp = s->reg[DISPI_BPP], b = bytes_pp(bpp);
		out->width = s->reg[DISPI_XRES];
		out->height = s->reg[DISPI_YRES];
		out->bpp = bpp;
		out->stride = s->reg[DISPI_VIRT_WIDTH] * b;
		out->offset = (uint64_t)s->reg[DISPI_Y_OFFSET] * out->stride + (uint64_t)s->reg[DISPI_X_OFFSET] * b;
	} else {
		out->width = s->w;
		out->height = s->h;
		out->bpp = 32;
		out->stride = s->w * 4;
	}
}

/* ---- modes below 32 bpp ---- */

/* DISPI on in a mode that is converted for display (s->lock held). */
static bool converted_shown(const struct fbuf *s)
{
	return (s->reg[DISPI_ENABLE] & ENABLE_ON) && pixel_convert_supported(s->reg[DISPI_BPP]);
}

/* The DAC as x8r8g8b8 (6-bit components unless the guest chose the 8-bit DAC). */
static void dac_palette(const struct fbuf *s, uint32_t palette[256])
{
	bool dac8 = s->reg[DISPI_ENABLE] & ENABLE_8BIT_DAC;

	for (unsigned i = 0; i < 256; i++) {
		uint32_t rgb = 0;
		for (unsigned c = 0; c < 3; c++) {
			uint32_t v = s->vga.dac[i][c];
			rgb = rgb << 8 | (dac8 ? v : (v << 2 | v >> 4));
		}
		palette[i] = rgb;
	}
}

/*
 * Converts the DISPI picture into buf and describes it in out (bpp 0 when
 * the mode's rows do not lie in the framebuffer; s->lock held, so the
 * registers checked are the registers used).
 */
static void convert_surface(struct fbuf *s, struct rgb_buffer *buf, struct display_surface *out)
{
	struct display_surface src;
	uint32_t palette[256];
	uint64_t row;
	size_t need;

	scanout_locked(s, &src);
	*out = (struct display_surface){ .width = src.width, .height = src.height };
	row = (uint64_t)src.width * bytes_pp(src.bpp);
	if (!src.width || !src.height || src.stride < row ||
	    src.offset + (uint64_t)src.stride * (src.height - 1) + row > FB_SIZE)
		return;
	need = (size_t)src.width * src.height * 4;
	if (need > buf->size) {
		uint32_t *p = realloc(buf->px, need);
		if (!p)
			return;
		buf->px = p;
		buf->size = need;
	}
	dac_palette(s, palette);
	pixel_convert(src.mem + src.offset, src.stride, src.bpp, src.width, src.height, palette, buf->px);
	out->mem = (const uint8_t *)buf->px;
	out->mem_size = need;
	out->stride = src.width * 4;
	out->bpp = 32;
}

/*
 * The converted picture for VNC, redone only when the framebuffer's dirty
 * log, a register write or hyve itself says it may have changed; then
 * everything is compared (false), else nothing is (true, empty bitmap).
 */
static bool converted_scanout(struct fbuf *s, struct display_surface *out)
{
	uint64_t log[FB_SIZE / FB_PAGE / 64] = { 0 };
	bool redraw = !s->converted_valid || s->host_wrote || vga_take_changed(&s->vga) ||
		      memcmp(s->converted_reg, s->reg, sizeof(s->reg)) != 0;

	if (!s->slot_mapped || vm_devmem_dirty_log(s->dev->vm, s->slot, log) < 0)
		redraw = true;
	for (size_t i = 0; i < sizeof(log) / sizeof(log[0]) && !redraw; i++)
		redraw = log[i] != 0;
	s->host_wrote = false;
	if (redraw) {
		convert_surface(s, &s->converted, &s->converted_out);
		memcpy(s->converted_reg, s->reg, sizeof(s->reg));
		s->converted_valid = true;
	}
	*out = s->converted_out;
	return !redraw;
}

static bool fbuf_scanout(void *opaque, struct display_surface *out, uint64_t *dirty)
{
	struct fbuf *s = opaque;
	bool logged = true;

	pthread_mutex_lock(&s->lock);
	if (text_shown(s)) {
		logged = text_scanout(s, out);
		pthread_mutex_unlock(&s->lock);
		return logged;
	}
	s->text_valid = false;
	if (converted_shown(s)) {
		logged = converted_scanout(s, out);
		pthread_mutex_unlock(&s->lock);
		return logged;
	}
	s->converted_valid = false;
	scanout_locked(s, out);
	if (dirty && s->slot_mapped && vm_devmem_dirty_log(s->dev->vm, s->slot, dirty) < 0)
		logged = false;
	if (s->host_wrote)
		logged = false;
	s->host_wrote = false;
	pthread_mutex_unlock(&s->lock);
	return logged;
}

static void fbuf_surface(void *opaque, struct display_surface *out)
{
	struct fbuf *s = opaque;

	pthread_mutex_lock(&s->lock);
	if (text_shown(s)) {
		/* The VNC refresh's change tracking is left alone: it redraws on its own. */
		render_text(s);
		text_surface(s, out);
	} else if (converted_shown(s)) {
		/* Converted afresh; the VNC refresh still redraws from its own dirty log. */
		convert_surface(s, &s->shot, out);
	} else {
		scanout_locked(s, out);
	}
	pthread_mutex_unlock(&s->lock);
}

static void fbuf_vnc_stats(void *opaque, struct display_vnc_stats *out)
{
	struct fbuf *s = opaque;

	vnc_get_stats(s->vnc, out);
}

static int fbuf_screen(void *opaque, struct display_screen *out)
{
	struct fbuf *s = opaque;

	*out = (struct display_screen){
		.base = pci_bar_addr(&s->fn, 0),
		.size = FB_SIZE,
		.width = s->w,
		.height = s->h,
		.stride = s->w * 4,
		.bpp = 32,
	};
	if (s->vga_opt == VGA_ON) {
		unsigned col = 0, row = 0;
		pthread_mutex_lock(&s->lock);
		if (!vga_cursor_cell(&s->vga, &col, &row))
			col = row = 0;
		pthread_mutex_unlock(&s->lock);
		out->text = true;
		out->cols = VGA_COLS, out->rows = VGA_ROWS, out->font_height = VGA_CELL_H;
		out->cursor_x = col, out->cursor_y = row;
	}
	return 0;
}

/* ---- options ---- */

/* "[ADDR:]PORT": ADDR before the last colon (default 127.0.0.1), PORT 1-65535. */
static int split_listen(const char *tcp, char *addr, size_t addrlen, uint16_t *port)
{
	const char *colon = strrchr(tcp, ':');
	uint64_t n;

	if (colon) {
		if (colon == tcp || (size_t)(colon - tcp) >= addrlen)
			return -1;
		memcpy(addr, tcp, (size_t)(colon - tcp));
		addr[colon - tcp] = '\0';
	} else {
		snprintf(addr, addrlen, "127.0.0.1");
	}
	if (parse_u64(colon ? colon + 1 : tcp, &n) < 0 || n == 0 || n > 65535)
		return -2;
	*port = (uint16_t)n;
	return 0;
}

static int valid_listen(const char *value, char *err, size_t errlen)
{
	char addr[256];
	uint16_t port;
	int rc = split_listen(value, addr, sizeof(addr), &port);

	if (rc == -1)
		return set_error(err, errlen, "bad address");
	if (rc == -2)
		return set_error(err, errlen, "the port must be 1-65535");
	return 0;
}

static int tcp_listener(const char *value, char *addr, size_t addrlen)
{
	uint16_t port;

	if (split_listen(value, addr, addrlen, &port) < 0)
		snprintf(addr, addrlen, "%s", value); /* malformed: never called a loopback */
	return 1;
}

/*
 * VNC authentication uses the first 8 characters only; longer passwords are
 * refused rather than silently cut, and so are keys DES calls weak.
 */
static int valid_password(const char *value, char *err, size_t errlen)
{
	uint8_t probe[16] = { 0 };

	if (!*value || strlen(value) > 8)
		return set_error(err, errlen, "must have 1 to 8 characters (VNC authentication uses 8)");
	if (rfb_vnc_auth_response(value, probe, probe) < 0)
		return set_error(err, errlen, "gives a weak DES key; choose another");
	return 0;
}

static const char *const vga_choices[] = { [VGA_OFF] = "off", [VGA_IO] = "io", [VGA_ON] = "on", NULL };

static const char *const tls_choices[] = { "anon", NULL };

static const struct option_decl fbuf_options[] = {
	{ .name = "tcp", .type = OPTION_CUSTOM, .flags = OPTION_HOST_BINDING, .validate = valid_listen,
	  .tcp_listener = tcp_listener, .guarded_by = "password", .group = "listen",
	  .help = "VNC listens on [ADDR:]PORT (default 127.0.0.1:5900)" },
	{ .name = "unix", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING, .group = "listen",
	  .help = "VNC listens on this UNIX socket (mode 0600) instead" },
	{ .name = "w", .type = OPTION_UINT, .def = DEF_W, .min = MIN_W, .max = MAX_XRES,
	  .help = "boot mode width" },
	{ .name = "h", .type = OPTION_UINT, .def = DEF_H, .min = MIN_H, .max = MAX_YRES,
	  .help = "boot mode height" },
	{ .name = "wait", .type = OPTION_BOOL, .def = "false",
	  .help = "start the vCPUs only once a VNC client has connected" },
	{ .name = "password", .type = OPTION_CUSTOM, .flags = OPTION_HOST_BINDING | OPTION_SECRET,
	  .validate = valid_password, .help = "VNC authentication password, 1 to 8 characters" },
	{ .name = "vga", .type = OPTION_ENUM, .def = "off", .choices = vga_choices,
	  .help = "legacy VGA: off, io (registers) or on (also 80x25 text mode)" },
	{ .name = "font", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING,
	  .help = "PSF console font for vga=on (default " DEFAULT_FONT ")" },
	{ .name = "tls-cert", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING,
	  .help = "VNC over TLS (VeNCrypt X.509): the server's certificate chain, PEM" },
	{ .name = "tls-key", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING,
	  .help = "the private key of tls-cert=, PEM" },
	{ .name = "tls-ca", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING,
	  .help = "clients must present a certificate signed by this CA, PEM" },
	{ .name = "tls", .type = OPTION_ENUM, .flags = OPTION_HOST_BINDING, .choices = tls_choices,
	  .help = "anon: anonymous TLS (VeNCrypt TLSVnc), needs password=" },
	{ 0 },
};

static int get_listen(struct device *dev, struct vnc_options *o, char *buf, size_t len)
{
	const char *tcp = dev_opt_str(dev, "tcp"), *unx = dev_opt_str(dev, "unix");

	if (tcp && unx) {
		log_error("%s: fbuf takes tcp= or unix=, not both", dev->id);
		return -1;
	}
	if (unx) {
		o->unix_path = unx;
		return 0;
	}
	/* bhyve's default: 127.0.0.1:5900; the form was checked before the device was created. */
	split_listen(tcp ? tcp : "5900", buf, len, &o->tcp_port);
	o->tcp_addr = buf;
	return 0;
}

/*
 * TLS: certificates (X.509) or tls=anon, never both (an anonymous
 * choice next to a certificate would let a man in the middle pick it).
 * Anonymous TLS without a password would authenticate nobody.
 */
static int get_tls(struct device *dev, const char *password, struct vnc_tls_config *out, bool *use)
{
	bool mode = dev_opt_is_set(dev, "tls"); /* the only mode, anon, was checked with the options */

	*out = (struct vnc_tls_config){ .cert = dev_opt_str(dev, "tls-cert"), .key = dev_opt_str(dev, "tls-key"),
					.ca = dev_opt_str(dev, "tls-ca") };
	*use = mode || out->cert || out->key || out->ca;
	if (mode && (out->cert || out->key || out->ca)) {
		log_error("%s: fbuf tls=anon excludes tls-cert=, tls-key= and tls-ca=", dev->id);
		return -1;
	}
	if (mode && !password) {
		log_error("%s: fbuf tls=anon needs password= (anonymous TLS alone authenticates nobody)", dev->id);
		return -1;
	}
	if (!mode && *use && (!out->cert || !out->key || !*out->cert || !*out->key)) {
		log_error("%s: fbuf tls-cert= and tls-key= go together, each naming a PEM file%s", dev->id,
			  out->ca ? " (tls-ca= needs both)" : "");
		return -1;
	}
	if (out->ca && !*out->ca) {
		log_error("%s: fbuf tls-ca= needs a file", dev->id);
		return -1;
	}
	out->anon = mode;
	return 0;
}

static int get_vga(struct device *dev, enum vga_option *out)
{
	*out = (enum vga_option)dev_opt_enum(dev, "vga");
	if (*out != VGA_ON && dev_opt_is_set(dev, "font")) {
		log_error("%s: fbuf font= is for the text mode of vga=on", dev->id);
		return -1;
	}
	return 0;
}

/* vga=on: the console font, the text window and its slot, the picture. */
static int text_init(struct fbuf *s)
{
	struct device *dev = s->dev;
	const char *path = dev_opt_str(dev, "font");
	char err[512];

	s->font = malloc(sizeof(*s->font));
	s->pixels = calloc(VGA_WIDTH * VGA_HEIGHT, 4);
	if (!s->font || !s->pixels)
		return -1;
	if (vga_font_load(path ? path : DEFAULT_FONT, s->font, err, sizeof(err)) < 0) {
		log_error("%s: fbuf vga=on: %s%s", dev->id, err,
			  path ? "" : " (install console-setup-linux, or give font=FILE.psf)");
		return -1;
	}
	s->text = mmap(NULL, VGA_TEXT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->text == MAP_FAILED) {
		s->text = NULL;
		return -1;
	}
	if ((s->text_slot = vm_devmem_slot_alloc(dev->vm)) < 0 ||
	    vm_ram_hole(dev->vm, LEGACY_WINDOW, LEGACY_WINDOW_SIZE) < 0 ||
	    vm_map_device_memory(dev->vm, s->text_slot, VGA_TEXT_GPA, s->text, VGA_TEXT_SIZE, true) < 0)
		return -1;
	return 0;
}

/* What a BIOS leaves in the text window: blanks, light grey on black. */
static void text_clear(struct fbuf *s)
{
	for (unsigned i = 0; s->text && i < VGA_TEXT_SIZE; i += 2)
		s->text[i] = ' ', s->text[i + 1] = 0x07;
	s->text_host_wrote = true;
}

/* ---- device model ---- */

static void fbuf_regs_reset(struct fbuf *s)
{
	memset(s->reg, 0, sizeof(s->reg));
	s->reg[DISPI_ID] = DISPI_ID5;
	s->reg[DISPI_BPP] = 8;
	s->reg[DISPI_VIDEO_MEMORY_64K] = FB_SIZE >> 16; /* what reads return, and snapshots record */
	s->index = 0;
}

static void fbuf_destroy(struct device *dev)
{
	struct fbuf *s = dev->priv;

	if (!s)
		return;
	if (s->have_display)
		display_unregister(dev->vm);
	vnc_close(s->vnc);
	if (s->fn.dev)
		pci_function_destroy(&s->fn);
	if (s->have_ports)
		iobus_unregister(&dev->vm->pio, DISPI_PORT);
	vga_ports_unregister(s);
	if (s->text_slot >= 0)
		vm_devmem_slot_free(dev->vm, s->text_slot);
	if (s->text)
		munmap(s->text, VGA_TEXT_SIZE);
	free(s->font);
	free(s->pixels);
	free(s->converted.px);
	free(s->shot.px);
	if (s->slot >= 0)
		vm_devmem_slot_free(dev->vm, s->slot);
	if (s->mem)
		munmap(s->mem, FB_SIZE);
	if (s->memfd >= 0)
		close(s->memfd);
	pthread_mutex_destroy(&s->lock);
	free(s);
	dev->priv = NULL;
}

static int fbuf_create(struct device *dev)
{
	struct fbuf *s = calloc(1, sizeof(*s));
	struct vnc_options o = { .name = dev->vm->name };
	struct vnc_tls_config tls;
	struct vnc_source src;
	struct display_provider provider;
	char addr[256];
	bool use_tls = false;

	if (!s)
		return -1;
	dev->priv = s;
	s->dev = dev;
	s->memfd = s->slot = s->text_slot = -1;
	pthread_mutex_init(&s->lock, NULL);
	fbuf_regs_reset(s);
	vga_reset(&s->vga);
	o.password = dev_opt_str(dev, "password");
	s->w = (uint32_t)dev_opt_u64(dev, "w");
	s->h = (uint32_t)dev_opt_u64(dev, "h");
	if (get_tls(dev, o.password, &tls, &use_tls) < 0 || get_vga(dev, &s->vga_opt) < 0 ||
	    get_listen(dev, &o, addr, sizeof(addr)) < 0)
		goto fail;
	o.tls = use_tls ? &tls : NULL;

	s->memfd = memfd_create("hyve-fbuf", MFD_CLOEXEC);
	if (s->memfd < 0 || ftruncate(s->memfd, FB_SIZE) < 0 ||
	    (s->mem = mmap(NULL, FB_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd, 0)) == MAP_FAILED) {
		s->mem = NULL;
		log_error("%s: cannot allocate the framebuffer: %s", dev->id, strerror(errno));
		goto fail;
	}
	if ((s->slot = vm_devmem_slot_alloc(dev->vm)) < 0)
		goto fail;
	if (pci_function_init(&s->fn, dev, 0x1234, 0x1111, 0x03, 0x00, 0x00) < 0)
		goto fail;
	s->fn.opaque = s;
	s->fn.cfg_write = fbuf_cfg_write;
	pci_set_subsystem(&s->fn, 0x1AF4, 0x1100);
	pci_set_revision(&s->fn, 2);
	if (pci_bar_add(&s->fn, 0, PCI_BAR_MEM32 | PCI_BAR_PREFETCH, FB_SIZE, fbuf_bar0, s) < 0 ||
	    pci_bar_add(&s->fn, 2, PCI_BAR_MEM32, MMIO_SIZE, fbuf_mmio, s) < 0)
		goto fail;
	if (iobus_register(&dev->vm->pio, DISPI_PORT, 3, fbuf_pio, s) < 0) {
		log_error("%s: DISPI ports 0x1ce-0x1d0 are taken (one fbuf per VM)", dev->id);
		goto fail;
	}
	s->have_ports = true;
	if (s->vga_opt != VGA_OFF && vga_ports_register(s) < 0)
		goto fail;
	if (s->vga_opt == VGA_ON && text_init(s) < 0)
		goto fail;
	text_clear(s);
	sync_slot(s);
	src = (struct vnc_source){ .scanout = fbuf_scanout, .opaque = s, .mem_size = FB_SIZE };
	s->vnc = vnc_open(dev->vm, &o, &src);
	if (!s->vnc)
		goto fail;
	provider = (struct display_provider){ .screen = fbuf_screen, .surface = fbuf_surface,
					      .vnc_stats = fbuf_vnc_stats, .opaque = s };
	if (display_register(dev->vm, &provider) < 0)
		goto fail;
	s->have_display = true;
	if (dev_opt_bool(dev, "wait"))
		vnc_hold_start(s->vnc);
	return 0;
fail:
	fbuf_destroy(dev);
	return -1;
}

static void fbuf_reset(struct device *dev)
{
	struct fbuf *s = dev->priv;

	pci_function_reset(&s->fn);
	sync_slot(s);
	pthread_mutex_lock(&s->lock);
	fbuf_regs_reset(s);
	vga_reset(&s->vga);
	text_clear(s);
	s->host_wrote = true;
	pthread_mutex_unlock(&s->lock);
}

/* End of the last page holding a non-zero byte: what a snapshot must keep. */
static size_t used_bytes(const struct fbuf *s)
{
	static const uint8_t zero[FB_PAGE];
	size_t end = FB_SIZE;

	while (end && memcmp(s->mem + end - FB_PAGE, zero, FB_PAGE) == 0)
		end -= FB_PAGE;
	return end;
}

static const char *const reg_names[DISPI_NREGS] = {
	"id", "xres", "yres", "bpp", "enable", "bank", "virt_width", "virt_height", "x_offset", "y_offset", "video_memory_64k",
};

static int fbuf_save(struct device *dev, struct state_writer *w)
{
	struct fbuf *s = dev->priv;

	pci_function_save(&s->fn, w);
	pthread_mutex_lock(&s->lock);
	state_put_u64(w, "index", s->index);
	state_begin_map(w, "dispi");
	for (unsigned i = 0; i < DISPI_NREGS; i++)
		state_put_u64(w, reg_names[i], s->reg[i]);
	state_end_map(w);
	state_put_u64(w, "width", s->w);
	state_put_u64(w, "height", s->h);
	state_put_bytes(w, "framebuffer", s->mem, used_bytes(s));
	if (s->vga_opt != VGA_OFF)
		vga_save(&s->vga, w);
	if (s->text)
		state_put_bytes(w, "text", s->text, VGA_TEXT_SIZE);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int fbuf_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	struct fbuf *s = dev->priv;
	uint64_t v;
	size_t len = 0;
	int rc = 0;

	(void)version; /* 1 and 2 read alike: what version 1 lacks (the "vga" map) keeps its power-on value */
	if (pci_function_restore(&s->fn, r) < 0)
		return -1;
	sync_slot(s);
	pthread_mutex_lock(&s->lock);
	fbuf_regs_reset(s);
	if (state_get_u64(r, "index", &v) == 0)
		s->index = (uint16_t)v;
	if (state_enter_map(r, "dispi") == 0) {
		for (unsigned i = 0; i < DISPI_NREGS; i++)
			if (state_get_u64(r, reg_names[i], &v) == 0)
				s->reg[i] = (uint16_t)v;
		state_leave_map(r);
	}
	s->reg[DISPI_VIDEO_MEMORY_64K] = FB_SIZE >> 16;
	if ((state_get_u64(r, "width", &v) == 0 && v != s->w) || (state_get_u64(r, "height", &v) == 0 && v != s->h))
		log_warn("%s: the snapshot's boot mode differs from w=/h=; the guest keeps its own mode", dev->id);
	memset(s->mem, 0, FB_SIZE);
	s->host_wrote = true;
	if (state_get_bytes_var(r, "framebuffer", s->mem, FB_SIZE, &len) < 0) {
		log_error("%s: snapshot has no framebuffer contents", dev->id);
		rc = -1;
	}
	vga_restore(&s->vga, r); /* version 1 has none: BIOS mode 3 */
	text_clear(s);
	if (s->text)
		state_get_bytes(r, "text", s->text, VGA_TEXT_SIZE);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static struct device_model fbuf_model = {
	.name = "fbuf",
	.state_version = 2,
	.min_state_version = 1,
	.on_pci = true,
	.options = fbuf_options,
	.create = fbuf_create,
	.reset = fbuf_reset,
	.save = fbuf_save,
	.restore = fbuf_restore,
	.destroy = fbuf_destroy,
};

DEVICE_MODEL(fbuf_model)
