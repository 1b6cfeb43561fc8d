/*
 * libFuzzer harness for the display device's guest-visible side: the
 * fbuf model (src/dev/fbuf.c) with legacy VGA (src/dev/vga.c, vga=on),
 * its DISPI registers at ports 0x1CE/0x1CF/0x1D0 and BAR2 0x500, the VGA
 * registers at ports 0x3B0-0x3DF and BAR2 0x400, its PCI configuration
 * space, guest stores into the framebuffer and the text window, the
 * scan-out the VNC server makes of them (src/ui/vnc.c's refresh: mode
 * change, damage search), screenshots (display_capture_rgb) and the screen
 * boot code is told about, snapshot save/restore, and the console font
 * parser (src/dev/vgafont.c) on input bytes.
 *
 * One device for the whole run, on the recording KVM stand-in of the unit
 * tests (testvm.c, testdevmem.c): creating one costs a framebuffer memfd
 * whose pages would all fault in again on every clear. The framebuffer is
 * 4 MiB here instead of 32 (FBUF_SIZE_MIB, see meson.build): the code is
 * the same, and clears and snapshot scans cost an eighth. Each input starts from a
 * machine reset of it, the framebuffer bytes earlier inputs stored zeroed
 * again, and the VNC server's picture forgotten, so inputs do not see each
 * other. vnc.c is compiled into this file to reach its refresh() (which a
 * real server runs on its timer with a client connected); vnc_open() is
 * wrapped to learn which server the device opened.
 *
 * The input is a stream of operations (low nibble of the op byte; the high
 * nibble is its parameter; see make_display_seeds.py):
 *   0 DISPI index write      1 DISPI data write    2 DISPI port read
 *   3 DISPI register write by index (index, then data)
 *   4 BAR2 MMIO write        5 BAR2 MMIO read (DISPI, VGA or anywhere)
 *   6 VGA port write         7 VGA port read
 *   8 mode set: xres, yres, bpp, enable, virtual width, offsets
 *   9 store into the framebuffer (KVM slot, or BAR0 MMIO when unmapped)
 *   10 store into the text window
 *   11 scan-out and boot screen (parameter bit 0: a screenshot too)
 *   12 snapshot round trip   13 restore of input bytes as the section
 *   14 PCI configuration write
 *   15 device reset, configuration read or font parse (by parameter)
 *
 * Cost control: clearing the framebuffer (DISPI enable without
 * NOCLEARMEM, and every restore), scanning it for a save and going over
 * every pixel of a scan-out dominate everything else, so each input gets
 * MAX_CLEARS clearing enables (later ones get NOCLEARMEM added),
 * MAX_SNAPSHOTS snapshot operations and MAX_SCANOUTS scan-outs, and
 * screenshots are taken of pictures up to MAX_CAPTURE_PIXELS (the bounds
 * check before the copy is the same for every size).
 *
 * Invariants (__builtin_trap): a snapshot of the device restores and saves
 * the same bytes again; a scan-out VNC takes as a picture lies inside the
 * framebuffer; a screenshot has the size of a mode the device allows; the
 * text cursor boot code is told about lies on the 80x25 screen. The
 * framebuffer and text window are mmap'ed, outside AddressSanitizer's
 * view, so inaccessible guard pages are put right after them where the
 * address space allows: a read past their end faults.
 */
#define vnc_open vnc_open_real
#include "../../src/ui/vnc.c"
#undef vnc_open

#include <sys/mman.h>
#include <unistd.h>

#include "core/config.h"
#include "core/devmem.h"
#include "core/device.h"
#include "core/display.h"
#include "dev/vga.h"
#include "fuzz_input.h"
#include "pci/pci.h"
#include "testdevmem.h"
#include "testvm.h"

#define SLOT 5
#define FB_SIZE ((uint32_t)FBUF_SIZE_MIB << 20) /* as fbuf.c has it (meson.build sets the size) */
#define DISPI_INDEX 0x1CE
#define DISPI_DATA 0x1CF
#define DISPI_ENABLE 4
#define ENABLE_ON 0x01
#define ENABLE_NOCLEARMEM 0x80
#define MAX_XRES 3840
#define MAX_YRES 2160
#define MAX_OPS 1024
#define MAX_CLEARS 1
#define MAX_SNAPSHOTS 1
#define MAX_SCANOUTS 2
#define MAX_CAPTURE_PIXELS (VGA_WIDTH * VGA_HEIGHT)

struct vnc *vnc_open(struct vm *vm, const struct vnc_options *o, const struct vnc_source *src);

static struct {
	struct vm *vm;
	struct device *dev;
	struct vnc *vnc;
	uint8_t *fb, *text;
	char dir[64], sock[96], font[96], fontin[64];
	int font_fd;
	size_t fb_dirty_end;  /* framebuffer bytes stored into since the last input began */
	unsigned clears, snapshots, scanouts;
	unsigned restore_version;
} fx;

struct vnc *vnc_open(struct vm *vm, const struct vnc_options *o, const struct vnc_source *src)
{
	return fx.vnc = vnc_open_real(vm, o, src);
}

/* ---- guest accesses ---- */

static uint32_t conf1(unsigned reg)
{
	return 0x80000000u | SLOT << 11 | (reg & 0xFC);
}

static uint32_t cfg_read(unsigned reg, unsigned size)
{
	outl(fx.vm, 0xCF8, conf1(reg));
	return testvm_in(fx.vm, (uint16_t)(0xCFC + (reg & 3)), size);
}

static void cfg_write(unsigned reg, unsigned size, uint32_t v)
{
	outl(fx.vm, 0xCF8, conf1(reg));
	testvm_out(fx.vm, (uint16_t)(0xCFC + (reg & 3)), size, v);
}

static uint64_t bar_addr(unsigned bar)
{
	return cfg_read(PCI_BASE_ADDRESS_0 + 4 * bar, 4) & ~0xFull;
}

static void mmio(uint64_t addr, uint64_t *v, unsigned size, bool is_write)
{
	uint8_t d[8];

	for (unsigned i = 0; i < 8; i++)
		d[i] = (uint8_t)(*v >> (8 * i));
	iobus_access(&fx.vm->mmio, addr, d, size, is_write);
	*v = 0;
	for (unsigned i = 0; i < 8; i++)
		*v |= (uint64_t)d[i] << (8 * i);
}

static unsigned pick_size(unsigned sel)
{
	static const unsigned sizes[4] = { 1, 2, 4, 2 };

	return sizes[sel & 3];
}

/* A write of v to DISPI register idx that would clear the framebuffer once too often gets NOCLEARMEM. */
static uint32_t throttle_clear(unsigned idx, uint32_t v)
{
	if (idx != DISPI_ENABLE || !(v & ENABLE_ON) || (v & ENABLE_NOCLEARMEM))
		return v;
	return fx.clears++ < MAX_CLEARS ? v : v | ENABLE_NOCLEARMEM;
}

static void dispi_data_write(uint16_t port, unsigned size, uint32_t v)
{
	testvm_out(fx.vm, port, size, throttle_clear(inw(fx.vm, DISPI_INDEX), v));
}

static void dispi_set(unsigned idx, uint32_t v)
{
	outw(fx.vm, DISPI_INDEX, (uint16_t)idx);
	dispi_data_write(DISPI_DATA, 2, v);
}

/* BAR2 offsets: mostly the DISPI and VGA windows, sometimes anywhere in the 4 KiB. */
static uint64_t bar2_offset(uint8_t op, struct cursor *c)
{
	switch ((op >> 4) & 3) {
	case 0: return 0x500 + take(c, 1) % 0x20;
	case 1: return 0x400 + take(c, 1) % 0x20;
	default: return take(c, 2) % 0x1000;
	}
}

static void bar2_access(uint8_t op, struct cursor *c, bool is_write)
{
	uint64_t off = bar2_offset(op, c), v;
	unsigned size = 1u << (take(c, 1) & 3);

	v = take(c, 4);
	v |= (uint64_t)take(c, 4) << 32;
	if (is_write && off >= 0x500 && off < 0x516 && !(off & 1))
		v = throttle_clear((unsigned)(off - 0x500) / 2, (uint32_t)v);
	mmio(bar_addr(2) + off, &v, size, is_write);
}

static void mode_set(struct cursor *c)
{
	static const uint16_t bpps[8] = { 0, 8, 15, 16, 24, 32, 32, 4 };
	uint16_t xres = (uint16_t)take(c, 2), yres = (uint16_t)take(c, 2), bpp = bpps[take(c, 1) & 7];
	uint16_t enable = (uint16_t)(take(c, 1) | ENABLE_ON);

	dispi_set(DISPI_ENABLE, 0);
	dispi_set(1, xres % (MAX_XRES + 64));
	dispi_set(2, yres % (MAX_YRES + 64));
	dispi_set(3, bpp);
	dispi_set(DISPI_ENABLE, enable);
	dispi_set(6, take(c, 2));
	dispi_set(8, take(c, 2));
	dispi_set(9, take(c, 2));
}

/* A guest store into the framebuffer: straight into the KVM slot, or through BAR0 while it is not mapped. */
static void fb_store(uint8_t op, struct cursor *c)
{
	uint64_t off = (op & 0x10) ? (uint64_t)take(c, 2) * 64 : take(c, 4) % FB_SIZE;
	size_t len;
	const uint8_t *p = take_bytes(c, 512, &len);

	if (off >= FB_SIZE)
		off %= FB_SIZE;
	if (len > FB_SIZE - off)
		len = FB_SIZE - off;
	if (testdevmem.slot[0].mapped) {
		memcpy(fx.fb + off, p, len);
	} else {
		for (size_t i = 0; i < len; i++) {
			uint64_t v = p[i];
			mmio(bar_addr(0) + off + i, &v, 1, true);
		}
	}
	if (off + len > fx.fb_dirty_end)
		fx.fb_dirty_end = off + len;
	testdevmem.all_dirty_next = (op & 0x20) != 0;
}

static void text_store(uint8_t op, struct cursor *c)
{
	size_t off = take(c, 2) % VGA_TEXT_SIZE, len;
	const uint8_t *p = take_bytes(c, 512, &len);

	if (len > VGA_TEXT_SIZE - off)
		len = VGA_TEXT_SIZE - off;
	memcpy(fx.text + off, p, len);
	testdevmem.slot[1].dirty_next = (op & 0x10) == 0;
}

/* ---- what is shown ---- */

static void check_vnc_picture(void)
{
	const struct display_surface *s = &fx.vnc->cur;

	CHECK(fx.vnc->have_mode);
	if (fx.vnc->blank)
		return;
	CHECK(s->bpp == 32 && s->width && s->height && s->stride >= (uint64_t)s->width * 4);
	CHECK(s->offset + (uint64_t)s->stride * (s->height - 1) + (uint64_t)s->width * 4 <= s->mem_size);
	CHECK((s->mem == fx.fb && s->mem_size == FB_SIZE) || (s->width == VGA_WIDTH && s->height == VGA_HEIGHT));
}

/* capture: a screenshot as well (its bounds check, then a copy of every pixel). */
static void scan_out(bool capture)
{
	struct display_screen scr;
	uint8_t *rgb = NULL;
	uint32_t w = 0, h = 0;
	char err[128];

	refresh(fx.vnc);
	check_vnc_picture();
	if (capture && fx.vnc->cur.width * fx.vnc->cur.height <= MAX_CAPTURE_PIXELS &&
	    display_capture_rgb(fx.vm, &rgb, &w, &h, err, sizeof(err)) == 0) {
		CHECK(w && h && ((w <= MAX_XRES && h <= MAX_YRES) || (w == VGA_WIDTH && h == VGA_HEIGHT)));
		free(rgb);
	}
	CHECK(display_screen(fx.vm, &scr) == 0);
	CHECK(scr.text && scr.cursor_x < scr.cols && scr.cursor_y < scr.rows);
}

/* ---- snapshots ---- */

static void save_dev(void *opaque, struct state_writer *w)
{
	struct device *d = opaque;

	CHECK(d->model->save(d, w) == 0);
}

static void reset_dev(void *opaque)
{
	struct device *d = opaque;

	d->model->reset(d);
}

static int restore_dev(void *opaque, struct state_reader *r)
{
	struct device *d = opaque;

	return d->model->restore(d, r, fx.restore_version);
}

static void restore_bytes(uint8_t op, struct cursor *c)
{
	size_t len;
	const uint8_t *p = take_bytes(c, 65535, &len);

	fx.restore_version = (op >> 4) & 3;
	(void)fuzz_restore(restore_dev, fx.dev, p, len);
	fx.restore_version = 2;
	/* The framebuffer now holds at most the input's bytes. */
	if (len > fx.fb_dirty_end)
		fx.fb_dirty_end = len;
}

/* ---- the console font parser ---- */

static void font_parse(struct cursor *c)
{
	struct vga_font *font = malloc(sizeof(*font));
	char err[256];
	size_t len;
	const uint8_t *p = take_bytes(c, 65535, &len);

	CHECK(font);
	if (ftruncate(fx.font_fd, 0) == 0 && pwrite(fx.font_fd, p, len, 0) == (ssize_t)len &&
	    vga_font_load(fx.fontin, font, err, sizeof(err)) == 0)
		CHECK(font->height >= 1 && font->height <= 32);
	free(font);
}

static void run_op(struct cursor *c)
{
	uint8_t op = (uint8_t)take(c, 1);

	switch (op & 0x0F) {
	case 0: testvm_out(fx.vm, DISPI_INDEX, pick_size(op >> 4), take(c, 2)); break;
	case 1: dispi_data_write((op & 0x40) ? DISPI_DATA + 1 : DISPI_DATA, pick_size(op >> 4), take(c, 2)); break;
	case 2: (void)testvm_in(fx.vm, (uint16_t)(DISPI_INDEX + ((op >> 4) % 3)), pick_size(op >> 6)); break;
	case 3: dispi_set(op >> 4, take(c, 2)); break;
	case 4: bar2_access(op, c, true); break;
	case 5: bar2_access(op, c, false); break;
	case 6: testvm_out(fx.vm, (uint16_t)(0x3B0 + take(c, 1) % 0x30), pick_size(op >> 4), take(c, 4)); break;
	case 7: (void)testvm_in(fx.vm, (uint16_t)(0x3B0 + take(c, 1) % 0x30), pick_size(op >> 4)); break;
	case 8: mode_set(c); break;
	case 9: fb_store(op, c); break;
	case 10: text_store(op, c); break;
	case 11:
		if (fx.scanouts++ < MAX_SCANOUTS)
			scan_out(op & 0x10);
		break;
	case 12:
		if (fx.snapshots++ < MAX_SNAPSHOTS) {
			fuzz_state_roundtrip(save_dev, restore_dev, reset_dev, fx.dev, c);
			/*
			 * A patched encoding's framebuffer field can take in
			 * bytes of the fields after it (text window, registers).
			 */
			fx.fb_dirty_end = (fx.fb_dirty_end + 4095) / 4096 * 4096 + 2 * VGA_TEXT_SIZE;
		}
		break;
	case 13:
		if (fx.snapshots++ < MAX_SNAPSHOTS)
			restore_bytes(op, c);
		break;
	case 14: {
		unsigned reg = take(c, 1), size = pick_size(op >> 4);
		cfg_write(reg & ~(size - 1), size, take(c, 4));
		break;
	}
	case 15:
		switch ((op >> 4) & 3) {
		case 0: fx.dev->model->reset(fx.dev); break;
		case 1: (void)cfg_read(take(c, 1) & 0xFC, 4); break;
		case 2: font_parse(c); break;
		default: break;
		}
		break;
	}
}

/* ---- set-up ---- */

/* A PSF2 font of 256 8x16 glyphs without a Unicode table, each glyph different. */
static void write_font(const char *path)
{
	uint32_t hdr[8] = { 0x864AB572u, 0, 32, 0, 256, 16, 16, 8 };
	uint8_t glyphs[256][16];
	FILE *f = fopen(path, "wb");

	CHECK(f);
	for (unsigned g = 0; g < 256; g++)
		for (unsigned y = 0; y < 16; y++)
			glyphs[g][y] = (uint8_t)(g ^ (y * 0x11));
	CHECK(fwrite(hdr, sizeof(hdr), 1, f) == 1 && fwrite(glyphs, sizeof(glyphs), 1, f) == 1);
	fclose(f);
}

/* An inaccessible page right after [p, p + len), when nothing is mapped there yet. */
static void guard_after(void *p, size_t len)
{
	void *g = mmap((uint8_t *)p + len, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (g != MAP_FAILED && g != (uint8_t *)p + len)
		munmap(g, 4096); /* an old kernel placed it elsewhere: no guard */
}

static void cleanup(void)
{
	testvm_free(fx.vm); /* closes the VNC listener and removes its socket */
	unlink(fx.font);
	rmdir(fx.dir);
	close(fx.font_fd);
}

static void set(const char *key, const char *value)
{
	char k[96];

	snprintf(k, sizeof(k), "pci.0.%d.0.%s", SLOT, key);
	CHECK(config_set(fx.vm->cfg, k, value) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	strcpy(fx.dir, "/tmp/fuzz-display.XXXXXX");
	CHECK(mkdtemp(fx.dir));
	snprintf(fx.sock, sizeof(fx.sock), "%s/vnc.sock", fx.dir);
	snprintf(fx.font, sizeof(fx.font), "%s/font.psf", fx.dir);
	write_font(fx.font);
	fx.font_fd = memfd_create("fuzz-font", MFD_CLOEXEC);
	CHECK(fx.font_fd >= 0);
	snprintf(fx.fontin, sizeof(fx.fontin), "/proc/self/fd/%d", fx.font_fd);

	fx.vm = testvm_new(64ULL << 20);
	set("device", "fbuf");
	set("unix", fx.sock);
	set("vga", "on");
	set("font", fx.font);
	CHECK(device_model_find("pci")->attach(fx.vm) == 0);
	for (struct device *d = fx.vm->devices; d; d = d->next)
		if (!strcmp(d->model->name, "fbuf"))
			fx.dev = d;
	CHECK(fx.dev && fx.vnc && testdevmem.slot[0].used && testdevmem.slot[1].used);
	fx.fb = testdevmem.slot[0].hva;
	fx.text = testdevmem.slot[1].hva;
	CHECK(fx.fb && fx.text);
	guard_after(fx.fb, FB_SIZE);
	guard_after(fx.text, VGA_TEXT_SIZE);
	fx.restore_version = 2;
	atexit(cleanup);
	return 0;
}

/* What earlier inputs left: a machine reset, their framebuffer stores, the VNC picture, the dirty logs. */
static void start_input(void)
{
	devices_reset_all(fx.vm);
	memset(fx.fb, 0, fx.fb_dirty_end);
	fx.fb_dirty_end = 0;
	fx.vnc->have_mode = fx.vnc->blank = fx.vnc->changed = false;
	memset(&fx.vnc->stats, 0, sizeof(fx.vnc->stats));
	testdevmem.all_dirty_next = false;
	for (unsigned i = 0; i < TESTDEVMEM_SLOTS; i++)
		testdevmem.slot[i].dirty_next = false;
	testvm_clear_records();
	fx.clears = fx.snapshots = fx.scanouts = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor c = { data, size };

	start_input();
	for (unsigned i = 0; i < MAX_OPS && c.n; i++)
		run_op(&c);
	return 0;
}
