/*
 * The fbuf display model against the recording KVM stand-in: DISPI
 * registers through I/O ports and BAR2, what boot code is told about the
 * screen, option errors. KVM memory slots are recorded by stand-ins below.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/platform.h"
#include "core/devmem.h"
#include "core/device.h"
#include "core/display.h"
#include "core/log.h"
#include "core/vm.h"
#include "boot/layout.h"
#include "core/iobus.h"
#include "pci/pci.h"
#include "snapshot/state.h"
#include "testdevmem.h"
#include "testvm.h"

#define SLOT 5

/* ---- fixture ---- */

struct fx {
	struct vm *vm;
	char dir[64], sock[96];
};

static uint32_t conf1(unsigned reg)
{
	return 0x80000000u | SLOT << 11 | (reg & 0xFC);
}

static uint32_t cfg_read(struct vm *vm, unsigned reg, unsigned size)
{
	outl(vm, 0xCF8, conf1(reg));
	return testvm_in(vm, (uint16_t)(0xCFC + (reg & 3)), size);
}

static void cfg_write(struct vm *vm, unsigned reg, unsigned size, uint32_t v)
{
	outl(vm, 0xCF8, conf1(reg));
	testvm_out(vm, (uint16_t)(0xCFC + (reg & 3)), size, v);
}

/* Options as "key=value" strings, NULL-terminated; returns the PCI attach status. */
static struct fx *fx_new(const char *const *opts, int *rc)
{
	struct fx *f = calloc(1, sizeof(*f));
	char key[96];

	log_set_level(LOG_ERROR);
	memset(&testdevmem, 0, sizeof(testdevmem)); /* a failed test may have left its slots behind */
	strcpy(f->dir, "/tmp/test-fbuf.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/vnc.sock", f->dir);
	f->vm = testvm_new(64ULL << 20);
	snprintf(key, sizeof(key), "pci.0.%d.0.device", SLOT);
	assert_int_equal(config_set(f->vm->cfg, key, "fbuf"), 0);
	snprintf(key, sizeof(key), "pci.0.%d.0.unix", SLOT);
	assert_int_equal(config_set(f->vm->cfg, key, f->sock), 0);
	for (; opts && *opts; opts++) {
		snprintf(key, sizeof(key), "pci.0.%d.0.%s", SLOT, *opts);
		assert_int_equal(config_set_assignment(f->vm->cfg, key), 0);
	}
	*rc = device_model_find("pci")->attach(f->vm);
	return f;
}

static void fx_free(struct fx *f)
{
	testvm_free(f->vm); /* stops the event loop before the devices go */
	unlink(f->sock);
	rmdir(f->dir);
	free(f);
}

static uint16_t dispi_in(struct vm *vm, uint16_t idx)
{
	outw(vm, 0x1CE, idx);
	return inw(vm, 0x1CF);
}

static void dispi_out(struct vm *vm, uint16_t idx, uint16_t v)
{
	outw(vm, 0x1CE, idx);
	outw(vm, 0x1CF, v);
}

/* A 32-bit config write through ECAM (each vCPU's own access: no shared CONFIG_ADDRESS). */
static void ecam_write32(struct vm *vm, unsigned reg, uint32_t v)
{
	uint8_t d[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	iobus_access(&vm->mmio, vm->platform->ecam_base + ((uint64_t)SLOT << 15) + reg, d, 4, true);
}

/* ---- tests ---- */

struct bar_mover {
	struct vm *vm;
	pthread_barrier_t *round;
	uint32_t addr;
};

#define MOVE_ROUNDS 2000

static void *move_bar0(void *opaque)
{
	struct bar_mover *m = opaque;

	for (unsigned i = 0; i < MOVE_ROUNDS; i++) {
		pthread_barrier_wait(m->round);
		ecam_write32(m->vm, PCI_BASE_ADDRESS_0, m->addr);
		pthread_barrier_wait(m->round);
	}
	return NULL;
}

/* Two vCPUs moving BAR0 at once: the framebuffer slot ends where the BAR is decoded. */
static void test_concurrent_bar0_moves(void **state)
{
	int rc;
	struct fx *f = fx_new(NULL, &rc);
	pthread_barrier_t round;
	struct bar_mover a = { f->vm, &round, 0xD0000000 }, b = { f->vm, &round, 0xD2000000 };
	pthread_t ta, tb;
	unsigned wrong = 0;
	struct pci_function *fn;

	(void)state;
	assert_int_equal(rc, 0);
	fn = device_find(f->vm, "pci.0.5.0")->priv; /* the model's state starts with its PCI function */
	pthread_barrier_init(&round, NULL, 3);
	pthread_create(&ta, NULL, move_bar0, &a);
	pthread_create(&tb, NULL, move_bar0, &b);
	for (unsigned i = 0; i < MOVE_ROUNDS; i++) {
		uint64_t where;
		pthread_barrier_wait(&round); /* both write */
		pthread_barrier_wait(&round); /* both done */
		assert_true(pci_bar_mapped(fn, 0, &where));
		wrong += !testdevmem.mapped || testdevmem.gpa != where;
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_barrier_destroy(&round);
	assert_int_equal(wrong, 0);
	fx_free(f);
}

static void test_pci_identity_and_slot(void **state)
{
	int rc;
	struct fx *f = fx_new(NULL, &rc);
	uint32_t bar0;

	(void)state;
	assert_int_equal(rc, 0);
	assert_int_equal(cfg_read(f->vm, PCI_VENDOR_ID, 2), 0x1234);
	assert_int_equal(cfg_read(f->vm, PCI_DEVICE_ID, 2), 0x1111);
	assert_int_equal(cfg_read(f->vm, PCI_CLASS_DEVICE, 2), 0x0300);
	bar0 = cfg_read(f->vm, PCI_BASE_ADDRESS_0, 4);
	assert_int_equal(bar0 & 0xF, 0x8); /* 32-bit prefetchable memory */
	assert_true(testdevmem.mapped);
	assert_int_equal(testdevmem.gpa, bar0 & ~0xFu);
	/* Sizing: 32 MiB. */
	cfg_write(f->vm, PCI_BASE_ADDRESS_0, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_read(f->vm, PCI_BASE_ADDRESS_0, 4) & ~0xFu, 0xFE000000u);
	/* A move takes the KVM slot along; memory decoding off removes it. */
	cfg_write(f->vm, PCI_BASE_ADDRESS_0, 4, 0xD0000000);
	assert_true(testdevmem.mapped);
	assert_int_equal(testdevmem.gpa, 0xD0000000);
	cfg_write(f->vm, PCI_COMMAND, 2, cfg_read(f->vm, PCI_COMMAND, 2) & ~PCI_COMMAND_MEMORY);
	assert_false(testdevmem.mapped);
	cfg_write(f->vm, PCI_COMMAND, 2, cfg_read(f->vm, PCI_COMMAND, 2) | PCI_COMMAND_MEMORY);
	assert_true(testdevmem.mapped);
	assert_int_equal(testdevmem.gpa, 0xD0000000);
	fx_free(f);
}

static void test_dispi_registers(void **state)
{
	int rc;
	struct fx *f = fx_new(NULL, &rc);

	(void)state;
	assert_int_equal(rc, 0);
	assert_int_equal(dispi_in(f->vm, 0), 0xB0C5);
	assert_int_equal(dispi_in(f->vm, 10), 512); /* 32 MiB in 64 KiB units */
	/* GETCAPS: maxima instead of the current values. */
	dispi_out(f->vm, 4, 0x02);
	assert_int_equal(dispi_in(f->vm, 1), 3840);
	assert_int_equal(dispi_in(f->vm, 2), 2160);
	assert_int_equal(dispi_in(f->vm, 3), 32);
	dispi_out(f->vm, 4, 0);
	/* A mode as the bochs DRM driver sets it. */
	dispi_out(f->vm, 3, 32);
	dispi_out(f->vm, 1, 800);
	dispi_out(f->vm, 2, 600);
	dispi_out(f->vm, 5, 0);
	dispi_out(f->vm, 4, 0x41);
	assert_int_equal(dispi_in(f->vm, 4), 0x41);
	assert_int_equal(dispi_in(f->vm, 6), 800);
	assert_int_equal(dispi_in(f->vm, 7), (32u << 20) / 3200);
	/* Resolution is fixed while enabled. */
	dispi_out(f->vm, 1, 1024);
	assert_int_equal(dispi_in(f->vm, 1), 800);
	dispi_out(f->vm, 6, 1024);
	assert_int_equal(dispi_in(f->vm, 7), (32u << 20) / 4096);
	dispi_out(f->vm, 9, 600);
	assert_int_equal(dispi_in(f->vm, 9), 600);
	/* Read-only registers. */
	dispi_out(f->vm, 10, 1);
	assert_int_equal(dispi_in(f->vm, 10), 512);
	/* A mode larger than the maximum stays off. */
	dispi_out(f->vm, 4, 0);
	dispi_out(f->vm, 1, 4000);
	dispi_out(f->vm, 4, 0x41);
	assert_int_equal(dispi_in(f->vm, 4) & 1, 0);
	/* The index port reads back. */
	outw(f->vm, 0x1CE, 3);
	assert_int_equal(inw(f->vm, 0x1CE), 3);
	fx_free(f);
}

static void test_dispi_mmio(void **state)
{
	int rc;
	struct fx *f = fx_new(NULL, &rc);
	uint64_t bar2;
	uint8_t d[2] = { 0 };

	(void)state;
	assert_int_equal(rc, 0);
	bar2 = cfg_read(f->vm, PCI_BASE_ADDRESS_0 + 8, 4) & ~0xFull;
	assert_true(bar2 != 0);
	iobus_access(&f->vm->mmio, bar2 + 0x500, d, 2, false);
	assert_int_equal(d[0] | d[1] << 8, 0xB0C5);
	d[0] = 0x20, d[1] = 0x03; /* XRES = 800 */
	iobus_access(&f->vm->mmio, bar2 + 0x502, d, 2, true);
	assert_int_equal(dispi_in(f->vm, 1), 800);
	iobus_access(&f->vm->mmio, bar2 + 0x400, d, 1, false); /* no VGA registers */
	assert_int_equal(d[0], 0xFF);
	fx_free(f);
}

static void test_screen_for_boot(void **state)
{
	static const char *const opts[] = { "w=800", "h=600", NULL };
	int rc;
	struct fx *f = fx_new(opts, &rc);
	struct display_screen s;

	(void)state;
	assert_int_equal(rc, 0);
	assert_int_equal(display_screen(f->vm, &s), 0);
	assert_int_equal(s.base, cfg_read(f->vm, PCI_BASE_ADDRESS_0, 4) & ~0xFu);
	assert_int_equal(s.size, 32u << 20);
	assert_int_equal(s.width, 800);
	assert_int_equal(s.height, 600);
	assert_int_equal(s.stride, 3200);
	assert_int_equal(s.bpp, 32);
	devices_destroy_all(f->vm); /* no event loop runs here */
	assert_int_equal(display_screen(f->vm, &s), -1); /* gone with the device */
	fx_free(f);
}

static void test_default_mode(void **state)
{
	int rc;
	struct fx *f = fx_new(NULL, &rc);
	struct display_screen s;

	(void)state;
	assert_int_equal(rc, 0);
	assert_int_equal(display_screen(f->vm, &s), 0);
	assert_int_equal(s.width, 1024);
	assert_int_equal(s.height, 768);
	fx_free(f);
}

static void test_bad_options(void **state)
{
	static const char *const bad[][3] = {
		{ "w=10", NULL }, { "h=abc", NULL }, { "w=639", NULL }, { "h=4000", NULL },
		{ "password=", NULL }, { "password=ninechars", NULL }, { "tcp=1234", NULL }, /* with unix= too */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc;
		struct fx *f = fx_new(bad[i], &rc);
		assert_int_equal(rc, -1);
		fx_free(f);
	}
}

static const char *grab_opts = ""; /* vncgrab options: encodings, password, pixel format */

/* Grabs the screen with build/vncgrab (libvncclient); returns pixel (x, y) as 0xRRGGBB, or -1. */
static long grab_pixel(const char *sock, unsigned x, unsigned y, unsigned *w, unsigned *h)
{
	char cmd[512], out[128];
	FILE *f;
	long px = -1;
	unsigned maxv;

	snprintf(out, sizeof(out), "%s.ppm", sock);
	snprintf(cmd, sizeof(cmd), "%s %s %s %s", VNCGRAB, grab_opts, sock, out);
	if (system(cmd) != 0)
		return -1;
	f = fopen(out, "rb");
	if (f && fscanf(f, "P6 %u %u %u", w, h, &maxv) == 3 && fgetc(f) != EOF && x < *w && y < *h) {
		uint8_t rgb[3];
		fseek(f, (long)(3 * ((size_t)y * *w + x)), SEEK_CUR);
		if (fread(rgb, 1, 3, f) == 3)
			px = rgb[0] << 16 | rgb[1] << 8 | rgb[2];
	}
	if (f)
		fclose(f);
	unlink(out);
	return px;
}

static long grab_until(const char *sock, unsigned x, unsigned y, long want)
{
	unsigned w = 0, h = 0;
	long px = -1;

	for (int i = 0; i < 50 && px != want; i++) {
		px = grab_pixel(sock, x, y, &w, &h);
		if (px != want)
			usleep(100 * 1000);
	}
	return px;
}

static void fb_write32(struct fx *f, uint64_t off, uint32_t v)
{
	uint64_t bar0 = cfg_read(f->vm, PCI_BASE_ADDRESS_0, 4) & ~0xFull;
	uint8_t d[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	iobus_access(&f->vm->mmio, bar0 + off, d, 4, true);
}

static void test_vnc_shows_framebuffer(void **state)
{
	int rc;
	struct fx *f = fx_new(NULL, &rc);

	(void)state;
	assert_int_equal(rc, 0);
	if (access(VNCGRAB, X_OK) != 0) {
		fx_free(f);
		skip();
	}
	testvm_start_loop(f->vm);
	/* Written by hyve itself (BAR0 without a KVM slot): compared in full. */
	fb_write32(f, (10 * 1024 + 20) * 4, 0x00FF8000);
	assert_int_equal(grab_until(f->sock, 20, 10, 0xFF8000), 0xFF8000);
	/* A DISPI mode: the screen follows, offsets included. */
	dispi_out(f->vm, 3, 32);
	dispi_out(f->vm, 1, 800);
	dispi_out(f->vm, 2, 600);
	dispi_out(f->vm, 4, 0x41);
	fb_write32(f, (5 * 800 + 7) * 4, 0x000000FF);
	assert_int_equal(grab_until(f->sock, 7, 5, 0x0000FF), 0x0000FF);
	fx_free(f);
}

/* ZRLE and a 16-bit pixel format through libvncclient's decoders; VNC authentication. */
static void test_vnc_encodings_and_password(void **state)
{
	static const char *const opts[] = { "password=hyve-pw", NULL };
	unsigned w, h;
	int rc;
	struct fx *f = fx_new(opts, &rc);

	(void)state;
	assert_int_equal(rc, 0);
	if (access(VNCGRAB, X_OK) != 0) {
		fx_free(f);
		skip();
	}
	testvm_start_loop(f->vm);
	fb_write32(f, (3 * 1024 + 100) * 4, 0x00FF0000);
	fb_write32(f, (3 * 1024 + 101) * 4, 0x000000FF);
	grab_opts = "-p hyve-pw -e zrle";
	assert_int_equal(grab_until(f->sock, 100, 3, 0xFF0000), 0xFF0000);
	assert_int_equal(grab_pixel(f->sock, 101, 3, &w, &h), 0x0000FF);
	assert_int_equal(grab_pixel(f->sock, 102, 3, &w, &h), 0);
	assert_int_equal(w, 1024);
	assert_int_equal(h, 768);
	grab_opts = "-p hyve-pw -e tight";
	assert_int_equal(grab_pixel(f->sock, 100, 3, &w, &h), 0xFF0000);
	assert_int_equal(grab_pixel(f->sock, 101, 3, &w, &h), 0x0000FF);
	grab_opts = "-p hyve-pw -e zrle -b 16";
	assert_int_equal(grab_pixel(f->sock, 100, 3, &w, &h), 0xFF0000);
	grab_opts = "-p hyve-pw -e raw -b 16";
	assert_int_equal(grab_pixel(f->sock, 101, 3, &w, &h), 0x0000FF);
	grab_opts = "-p wrong-pw";
	assert_int_equal(grab_pixel(f->sock, 100, 3, &w, &h), -1);
	grab_opts = "";
	assert_int_equal(grab_pixel(f->sock, 100, 3, &w, &h), -1);
	grab_opts = "";
	fx_free(f);
}

/* `wait`: the vCPUs are held (not hyve: its event loop serves) until a client is ready. */
static void test_vnc_wait_holds_start(void **state)
{
	static const char *const opts[] = { "password=hyve-pw", "wait=true", NULL };
	unsigned w, h;
	int rc;
	struct fx *f = fx_new(opts, &rc);

	(void)state;
	assert_int_equal(rc, 0);
	if (access(VNCGRAB, X_OK) != 0) {
		fx_free(f);
		skip();
	}
	assert_int_equal(f->vm->start_holds, 1);
	testvm_start_loop(f->vm);
	grab_opts = "-p wrong-pw";
	assert_int_equal(grab_pixel(f->sock, 0, 0, &w, &h), -1);
	pthread_mutex_lock(&f->vm->lock);
	assert_int_equal(f->vm->start_holds, 1);
	pthread_mutex_unlock(&f->vm->lock);
	/* After the failure the address waits a second (back-off): retried until accepted. */
	grab_opts = "-p hyve-pw";
	assert_int_equal(grab_until(f->sock, 0, 0, 0), 0);
	pthread_mutex_lock(&f->vm->lock);
	assert_int_equal(f->vm->start_holds, 0);
	pthread_mutex_unlock(&f->vm->lock);
	grab_opts = "";
	fx_free(f);
}

/* ---- legacy VGA (vga=io|on) ---- */

/* Glyph of 'X' in the test font: a diagonal, one lit pixel per row. */
static uint8_t test_glyph_row(unsigned y)
{
	return (uint8_t)(0x80 >> (y % 8));
}

/*
 * A PSF2 font with 8x16 glyphs and a Unicode table: glyph 0 is 'X' (the
 * diagonal), glyph 1 the full block U+2588 (code page 437 byte 0xDB), glyph
 * 2 blank for U+0020; written into the fixture's directory.
 */
static void write_test_font(const char *path)
{
	static const uint8_t table[] = { 'X', 0xFF, 0xE2, 0x96, 0x88, 0xFF, ' ', 0xFF };
	uint32_t hdr[8] = { 0x864AB572u, 0, 32, 1, 3, 16, 16, 8 };
	uint8_t glyphs[3][16];
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	for (unsigned y = 0; y < 16; y++)
		glyphs[0][y] = test_glyph_row(y), glyphs[1][y] = 0xFF, glyphs[2][y] = 0;
	assert_int_equal(fwrite(hdr, sizeof(hdr), 1, f), 1);
	assert_int_equal(fwrite(glyphs, sizeof(glyphs), 1, f), 1);
	assert_int_equal(fwrite(table, sizeof(table), 1, f), 1);
	fclose(f);
}

/*
 * A PSF1 font (16-bit Unicode table): glyph 5 (the diagonal) is 'A' and,
 * only inside a sequence, 'X'; glyph 7 (all lit) is U+2588; the rest have
 * no code points.
 */
static void write_psf1_font(const char *path)
{
	uint8_t glyphs[256][16] = { { 0 } }, hdr[4] = { 0x36, 0x04, 0x02, 16 };
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	for (unsigned y = 0; y < 16; y++)
		glyphs[5][y] = test_glyph_row(y), glyphs[7][y] = 0xFF;
	assert_int_equal(fwrite(hdr, sizeof(hdr), 1, f), 1);
	assert_int_equal(fwrite(glyphs, sizeof(glyphs), 1, f), 1);
	for (unsigned g = 0; g < 256; g++) {
		static const uint16_t five[] = { 'A', 0xFFFE, 'X', 0x0301, 0xFFFF }, seven[] = { 0x2588, 0xFFFF };
		const uint16_t end = 0xFFFF;
		if (g == 5)
			assert_int_equal(fwrite(five, sizeof(five), 1, f), 1);
		else if (g == 7)
			assert_int_equal(fwrite(seven, sizeof(seven), 1, f), 1);
		else
			assert_int_equal(fwrite(&end, sizeof(end), 1, f), 1);
	}
	fclose(f);
}

static struct fx *vga_fx_new_font(void (*write_font)(const char *path));

/* An fbuf with vga=on and the test font. */
static struct fx *vga_fx_new(void)
{
	return vga_fx_new_font(write_test_font);
}

static struct fx *vga_fx_new_font(void (*write_font)(const char *path))
{
	static char font[96], font_opt[128];
	const char *opts[] = { "vga=on", font_opt, NULL };
	int rc;
	struct fx *f;

	snprintf(font, sizeof(font), "/tmp/test-fbuf-font.%d.psf", (int)getpid());
	write_font(font);
	snprintf(font_opt, sizeof(font_opt), "font=%s", font);
	f = fx_new(opts, &rc);
	unlink(font);
	assert_int_equal(rc, 0);
	return f;
}

static uint8_t *text_window(void)
{
	assert_true(testdevmem.slot[1].used && testdevmem.slot[1].mapped);
	return testdevmem.slot[1].hva;
}

static void crtc_out(struct vm *vm, uint8_t idx, uint8_t v)
{
	outw(vm, 0x3D4, (uint16_t)(v << 8 | idx)); /* index and data in one access, as Linux does */
}

static uint8_t crtc_in(struct vm *vm, uint16_t base, uint8_t idx)
{
	outb(vm, base, idx);
	return inb(vm, (uint16_t)(base + 1));
}

static void attr_out(struct vm *vm, uint8_t idx, uint8_t v)
{
	(void)inb(vm, 0x3DA); /* resets the index/data flip-flop */
	outb(vm, 0x3C0, idx);
	outb(vm, 0x3C0, v);
	outb(vm, 0x3C0, 0x20); /* palette address source: display on */
}

static void test_vga_registers(void **state)
{
	static const char *const opts[] = { "vga=io", NULL };
	int rc;
	struct fx *f = fx_new(opts, &rc);
	uint64_t bar2;
	uint8_t d[2], a, b;

	(void)state;
	assert_int_equal(rc, 0);
	/* Mode 3 as a BIOS leaves it. */
	assert_int_equal(inb(f->vm, 0x3CC), 0x67);
	assert_int_equal(crtc_in(f->vm, 0x3D4, 0x13), 0x28);
	outb(f->vm, 0x3C2, 0x63);
	assert_int_equal(inb(f->vm, 0x3CC), 0x63);
	outb(f->vm, 0x3C4, 1), outb(f->vm, 0x3C5, 0x21);
	assert_int_equal(inb(f->vm, 0x3C4), 1);
	assert_int_equal(inb(f->vm, 0x3C5), 0x21);
	outb(f->vm, 0x3CE, 6), outb(f->vm, 0x3CF, 0x05);
	assert_int_equal(inb(f->vm, 0x3CF), 0x05);
	/* CRTC at 0x3D4 and 0x3B4; indexes past the end read 0xff and are not stored. */
	crtc_out(f->vm, 0x0E, 0x12);
	assert_int_equal(crtc_in(f->vm, 0x3D4, 0x0E), 0x12);
	assert_int_equal(crtc_in(f->vm, 0x3B4, 0x0E), 0x12);
	crtc_out(f->vm, 0xF0, 0x55);
	assert_int_equal(crtc_in(f->vm, 0x3D4, 0xF0), 0xFF);
	/* CR0-CR7 are write-protected while CR11 bit 7 is set. */
	crtc_out(f->vm, 0x01, 0x27);
	assert_int_equal(crtc_in(f->vm, 0x3D4, 0x01), 0x4F);
	crtc_out(f->vm, 0x11, 0x0E);
	crtc_out(f->vm, 0x01, 0x27);
	assert_int_equal(crtc_in(f->vm, 0x3D4, 0x01), 0x27);
	/* Attribute controller: index, then data; reading 0x3DA resets the flip-flop. */
	attr_out(f->vm, 0x06, 0x3A);
	(void)inb(f->vm, 0x3DA);
	outb(f->vm, 0x3C0, 0x06);
	assert_int_equal(inb(f->vm, 0x3C1), 0x3A);
	(void)inb(f->vm, 0x3DA);
	outb(f->vm, 0x3C0, 0x26);
	outb(f->vm, 0x3C0, 0xFF); /* palette entries keep 6 bits */
	outb(f->vm, 0x3C0, 0x06);
	assert_int_equal(inb(f->vm, 0x3C1), 0x3F);
	/* Input status 1: the retrace bit toggles from read to read. */
	a = inb(f->vm, 0x3DA), b = inb(f->vm, 0x3DA);
	assert_int_equal((a ^ b) & 0x08, 0x08);
	/* DAC: write entry 5, read it back; components keep 6 bits. */
	outb(f->vm, 0x3C8, 5);
	outb(f->vm, 0x3C9, 0x3F), outb(f->vm, 0x3C9, 0x41), outb(f->vm, 0x3C9, 0x01);
	assert_int_equal(inb(f->vm, 0x3C8), 6);
	outb(f->vm, 0x3C7, 5);
	assert_int_equal(inb(f->vm, 0x3C7), 0x03);
	assert_int_equal(inb(f->vm, 0x3C9), 0x3F);
	assert_int_equal(inb(f->vm, 0x3C9), 0x01);
	assert_int_equal(inb(f->vm, 0x3C9), 0x01);
	outb(f->vm, 0x3C6, 0x0F);
	assert_int_equal(inb(f->vm, 0x3C6), 0x0F);
	/* The same block through BAR2 at 0x400 (port 0x3C0 + offset - 0x400). */
	bar2 = cfg_read(f->vm, PCI_BASE_ADDRESS_0 + 8, 4) & ~0xFull;
	d[0] = 0x0F, d[1] = 0x34;
	iobus_access(&f->vm->mmio, bar2 + 0x414, d, 2, true); /* CRTC 0x0F = 0x34 */
	assert_int_equal(crtc_in(f->vm, 0x3D4, 0x0F), 0x34);
	iobus_access(&f->vm->mmio, bar2 + 0x40C, d, 1, false);
	assert_int_equal(d[0], 0x63);
	iobus_access(&f->vm->mmio, bar2 + 0x41E, d, 2, false); /* past the block: nothing */
	assert_int_equal(d[0], 0xFF);
	/* vga=io has no text window. */
	assert_false(testdevmem.slot[1].used);
	fx_free(f);
}

static void test_vga_off_ignores_ports(void **state)
{
	int rc;
	struct fx *f = fx_new(NULL, &rc);

	(void)state;
	assert_int_equal(rc, 0);
	outb(f->vm, 0x3C2, 0x63);
	assert_int_equal(inb(f->vm, 0x3CC), 0xFF);
	assert_int_equal(crtc_in(f->vm, 0x3D4, 0x0E), 0xFF);
	fx_free(f);
}

/* Pixel (x, y) of the current picture as 0xRRGGBB, through display_capture_rgb (hyvectl screenshot). */
static uint32_t shot_pixel(struct vm *vm, unsigned x, unsigned y, uint32_t *w, uint32_t *h)
{
	uint8_t *rgb = NULL;
	char err[128];
	uint32_t px;

	assert_int_equal(display_capture_rgb(vm, &rgb, w, h, err, sizeof(err)), 0);
	assert_true(x < *w && y < *h);
	px = (uint32_t)rgb[3 * ((size_t)y * *w + x)] << 16 | rgb[3 * ((size_t)y * *w + x) + 1] << 8 |
	     rgb[3 * ((size_t)y * *w + x) + 2];
	free(rgb);
	return px;
}

/* Writes n bytes at framebuffer offset off through BAR0. */
static void fb_write(struct fx *f, uint64_t off, const uint8_t *d, unsigned n)
{
	uint64_t bar0 = cfg_read(f->vm, PCI_BASE_ADDRESS_0, 4) & ~0xFull;

	iobus_access(&f->vm->mmio, bar0 + off, (uint8_t *)d, n, true);
}

/*
 * Modes below 32 bpp (GRUB's video_bochs chooses 24): screenshots and VNC
 * show them converted, each pixel in its format's colour, at the mode's
 * size and with the mode's stride; 8 bpp through the DAC.
 */
static void test_low_bpp_modes_shown(void **state)
{
	static const char *const opts[] = { "vga=io", NULL };
	static const struct {
		unsigned bpp;
		uint8_t px[3];
		uint32_t rgb;
	} modes[] = {
		{ 24, { 0x33, 0x66, 0x99 }, 0x996633 },     /* blue, green, red bytes */
		{ 16, { 0x1F, 0xF8 }, 0xFF00FF },           /* 5:6:5 red + blue */
		{ 16, { 0xE0, 0x07 }, 0x00FF00 },           /* all six green bits */
		{ 15, { 0x00, 0x7C }, 0xFF0000 },           /* 5:5:5 red */
		{ 15, { 0x10, 0x02 }, 0x008484 },           /* 0x0210: green 16, blue 16 */
		{ 8, { 0x05 }, 0x0C30FF },                  /* DAC entry 5 = (3, 12, 63) of 63 */
	};
	int rc;
	struct fx *f = fx_new(opts, &rc);
	uint32_t w, h;
	bool vnc;

	(void)state;
	assert_int_equal(rc, 0);
	vnc = access(VNCGRAB, X_OK) == 0;
	if (vnc)
		testvm_start_loop(f->vm);
	outb(f->vm, 0x3C8, 5);
	outb(f->vm, 0x3C9, 3);
	outb(f->vm, 0x3C9, 12);
	outb(f->vm, 0x3C9, 63);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		unsigned b = modes[i].bpp == 15 ? 2 : modes[i].bpp / 8;
		dispi_out(f->vm, 4, 0);
		dispi_out(f->vm, 3, (uint16_t)modes[i].bpp);
		dispi_out(f->vm, 1, 640);
		dispi_out(f->vm, 2, 480);
		dispi_out(f->vm, 4, 0x41);
		dispi_out(f->vm, 6, 700); /* a stride wider than the picture */
		fb_write(f, (9 * 700 + 31) * b, modes[i].px, b);
		assert_int_equal(shot_pixel(f->vm, 31, 9, &w, &h), modes[i].rgb);
		assert_int_equal(w, 640);
		assert_int_equal(h, 480);
		assert_int_equal(shot_pixel(f->vm, 30, 9, &w, &h), 0);
		if (vnc)
			assert_int_equal(grab_until(f->sock, 31, 9, modes[i].rgb), modes[i].rgb);
	}
	fx_free(f);
}

/* Every pixel of cell (col, row) is the glyph drawn in fg on bg. */
static void assert_cell(struct vm *vm, unsigned col, unsigned row, const uint8_t *glyph, uint32_t fg, uint32_t bg)
{
	uint8_t *rgb = NULL;
	uint32_t w, h;
	char err[128];

	assert_int_equal(display_capture_rgb(vm, &rgb, &w, &h, err, sizeof(err)), 0);
	for (unsigned y = 0; y < 16; y++) {
		for (unsigned x = 0; x < 8; x++) {
			const uint8_t *p = rgb + 3 * ((size_t)(row * 16 + y) * w + col * 8 + x);
			uint32_t want = (glyph[y] & (0x80 >> x)) ? fg : bg;
			assert_int_equal((uint32_t)(p[0] << 16 | p[1] << 8 | p[2]), want);
		}
	}
	free(rgb);
}

static void test_vga_text_render(void **state)
{
	struct fx *f = vga_fx_new();
	uint8_t *text = text_window(), x_glyph[16], block[16], blank[16] = { 0 };
	struct display_screen scr;
	uint32_t w, h;

	(void)state;
	for (unsigned y = 0; y < 16; y++)
		x_glyph[y] = test_glyph_row(y), block[y] = 0xFF;
	/* The window is a KVM slot at 0xB8000 with dirty logging, in a hole of the RAM slot. */
	assert_int_equal(testdevmem.slot[1].gpa, 0xB8000);
	assert_int_equal(testdevmem.slot[1].size, 0x8000);
	assert_true(testdevmem.slot[1].log_dirty);
	assert_int_equal(testdevmem.hole_gpa, 0xA0000);
	assert_int_equal(testdevmem.hole_size, 0x20000);
	/* Cleared as a BIOS leaves it; the cursor at the top left. */
	assert_int_equal(text[0], ' ');
	assert_int_equal(text[1], 0x07);
	crtc_out(f->vm, 0x0A, 0x20); /* cursor off for now */
	/* 'X' yellow on blue at column 5, row 3; a full block (code page 437 0xDB) light red on black next to it. */
	text[(3 * 80 + 5) * 2] = 'X', text[(3 * 80 + 5) * 2 + 1] = 0x1E;
	text[(3 * 80 + 6) * 2] = 0xDB, text[(3 * 80 + 6) * 2 + 1] = 0x0C;
	assert_int_equal(shot_pixel(f->vm, 0, 0, &w, &h), 0);
	assert_int_equal(w, 640);
	assert_int_equal(h, 400);
	assert_cell(f->vm, 5, 3, x_glyph, 0xFFFF55, 0x0000AA);
	assert_cell(f->vm, 6, 3, block, 0xFF5555, 0);
	assert_cell(f->vm, 4, 3, blank, 0xAAAAAA, 0);
	/* The attribute palette and the DAC: colour 1 -> DAC entry 0x3F (white). */
	attr_out(f->vm, 0x01, 0x3F);
	assert_cell(f->vm, 5, 3, x_glyph, 0xFFFF55, 0xFFFFFF);
	outb(f->vm, 0x3C8, 0x3F);
	outb(f->vm, 0x3C9, 0x10), outb(f->vm, 0x3C9, 0x20), outb(f->vm, 0x3C9, 0x30);
	assert_cell(f->vm, 5, 3, x_glyph, 0xFFFF55, 0x4182C3);
	/* Start address one row on: the cell moves up a row. */
	crtc_out(f->vm, 0x0C, 0), crtc_out(f->vm, 0x0D, 80);
	assert_cell(f->vm, 5, 2, x_glyph, 0xFFFF55, 0x4182C3);
	/* The cursor at column 7, row 10 of the screen (address start + 10 * 80 + 7), scanlines 14-15. */
	crtc_out(f->vm, 0x0E, (80 + 807) >> 8), crtc_out(f->vm, 0x0F, (80 + 807) & 0xFF);
	crtc_out(f->vm, 0x0A, 14), crtc_out(f->vm, 0x0B, 15);
	assert_int_equal(shot_pixel(f->vm, 7 * 8 + 3, 10 * 16 + 14, &w, &h), 0xAAAAAA);
	assert_int_equal(shot_pixel(f->vm, 7 * 8 + 7, 10 * 16 + 15, &w, &h), 0xAAAAAA);
	assert_int_equal(shot_pixel(f->vm, 7 * 8 + 3, 10 * 16 + 13, &w, &h), 0);
	assert_int_equal(display_screen(f->vm, &scr), 0);
	assert_true(scr.text);
	assert_int_equal(scr.cols, 80);
	assert_int_equal(scr.rows, 25);
	assert_int_equal(scr.font_height, 16);
	assert_int_equal(scr.cursor_x, 7);
	assert_int_equal(scr.cursor_y, 10);
	crtc_out(f->vm, 0x0A, 0x2E); /* bit 5: cursor off */
	assert_int_equal(shot_pixel(f->vm, 7 * 8 + 3, 10 * 16 + 14, &w, &h), 0);
	/* DISPI on: the framebuffer again, not the text. */
	dispi_out(f->vm, 3, 32), dispi_out(f->vm, 1, 800), dispi_out(f->vm, 2, 600), dispi_out(f->vm, 4, 0x41);
	shot_pixel(f->vm, 0, 0, &w, &h);
	assert_int_equal(w, 800);
	dispi_out(f->vm, 4, 0);
	shot_pixel(f->vm, 0, 0, &w, &h);
	assert_int_equal(w, 640);
	fx_free(f);
}

/* PSF1: code points from the 16-bit table, sequences left out. */
static void test_vga_psf1_font(void **state)
{
	struct fx *f = vga_fx_new_font(write_psf1_font);
	uint8_t *text = text_window(), diag[16], block[16], blank[16] = { 0 };

	(void)state;
	for (unsigned y = 0; y < 16; y++)
		diag[y] = test_glyph_row(y), block[y] = 0xFF;
	crtc_out(f->vm, 0x0A, 0x20);
	text[0] = 'A', text[1] = 0x07;
	text[2] = 'X', text[3] = 0x07;
	text[4] = 0xDB, text[5] = 0x07;
	assert_cell(f->vm, 0, 0, diag, 0xAAAAAA, 0);
	assert_cell(f->vm, 1, 0, blank, 0xAAAAAA, 0);
	assert_cell(f->vm, 2, 0, block, 0xAAAAAA, 0);
	fx_free(f);
}

/* VNC follows the text window's dirty log and register writes. */
static void test_vga_text_vnc(void **state)
{
	struct fx *f = vga_fx_new();
	uint8_t *text = text_window();
	unsigned w = 0, h = 0;

	(void)state;
	if (access(VNCGRAB, X_OK) != 0) {
		fx_free(f);
		skip();
	}
	testvm_start_loop(f->vm);
	/* Cell (10, 2): 'X' white on green; its pixel (10*8, 2*16) is lit (the diagonal starts top left). */
	text[(2 * 80 + 10) * 2] = 'X', text[(2 * 80 + 10) * 2 + 1] = 0x2F;
	/* As KVM's dirty log reports a guest write (read by the VNC thread). */
	__atomic_store_n(&testdevmem.slot[1].dirty_next, true, __ATOMIC_RELEASE);
	assert_int_equal(grab_until(f->sock, 80, 32, 0xFFFFFF), 0xFFFFFF);
	assert_int_equal(grab_pixel(f->sock, 81, 32, &w, &h), 0x00AA00);
	assert_int_equal(w, 640);
	assert_int_equal(h, 400);
	/* A register write alone: green (colour 2) becomes DAC entry 0x3C (light red). */
	attr_out(f->vm, 0x02, 0x3C);
	assert_int_equal(grab_until(f->sock, 81, 32, 0xFF5555), 0xFF5555);
	fx_free(f);
}

static struct device *fbuf_device(struct vm *vm)
{
	struct device *d = vm->devices;

	while (d && strcmp(d->model->name, "fbuf"))
		d = d->next;
	assert_non_null(d);
	return d;
}

static void test_vga_snapshot(void **state)
{
	struct fx *f = vga_fx_new(), *g;
	struct device *d = fbuf_device(f->vm);
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	uint8_t *buf, *text;
	size_t len;
	int rc;

	(void)state;
	text = text_window();
	text[100] = 'Q', text[101] = 0x4E;
	crtc_out(f->vm, 0x0E, 0x01), crtc_out(f->vm, 0x0F, 0x23);
	attr_out(f->vm, 0x03, 0x15);
	outb(f->vm, 0x3C8, 9), outb(f->vm, 0x3C9, 1), outb(f->vm, 0x3C9, 2), outb(f->vm, 0x3C9, 3);
	assert_int_equal(d->model->save(d, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	fx_free(f);

	g = vga_fx_new();
	d = fbuf_device(g->vm);
	assert_non_null(r = state_reader_new(buf, len));
	assert_int_equal(d->model->restore(d, r, 2), 0);
	state_reader_free(r);
	text = text_window();
	assert_int_equal(text[100], 'Q');
	assert_int_equal(text[101], 0x4E);
	assert_int_equal(crtc_in(g->vm, 0x3D4, 0x0E), 0x01);
	assert_int_equal(crtc_in(g->vm, 0x3D4, 0x0F), 0x23);
	(void)inb(g->vm, 0x3DA);
	outb(g->vm, 0x3C0, 0x03);
	assert_int_equal(inb(g->vm, 0x3C1), 0x15);
	outb(g->vm, 0x3C7, 9);
	assert_int_equal(inb(g->vm, 0x3C9), 1);
	assert_int_equal(inb(g->vm, 0x3C9), 2);
	assert_int_equal(inb(g->vm, 0x3C9), 3);
	fx_free(g);
	/* A version 1 section (before VGA: what vga=off still writes) restores with BIOS mode 3 and a blank window. */
	free(buf);
	f = fx_new(NULL, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(fbuf_device(f->vm)->model->save(fbuf_device(f->vm), w = state_writer_new()), 0);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	fx_free(f);
	g = vga_fx_new();
	d = fbuf_device(g->vm);
	text = text_window();
	text[100] = 'Q';
	crtc_out(g->vm, 0x0E, 0x01);
	assert_non_null(r = state_reader_new(buf, len));
	assert_int_equal(d->model->restore(d, r, 1), 0);
	state_reader_free(r);
	assert_int_equal(text[100], ' ');
	assert_int_equal(text[101], 0x07);
	assert_int_equal(crtc_in(g->vm, 0x3D4, 0x0E), 0x00);
	assert_int_equal(crtc_in(g->vm, 0x3D4, 0x13), 0x28);
	/* Versions 1 and 2 only: the snapshot reader refuses others before restore(). */
	assert_int_equal(device_model_oldest_state_version(d->model), 1);
	assert_int_equal(d->model->state_version, 2);
	free(buf);
	fx_free(g);
}

/* Encodes the device's snapshot section; *len receives its size. */
static uint8_t *save_section(struct device *d, size_t *len)
{
	struct state_writer *w = state_writer_new();
	uint8_t *buf;

	assert_int_equal(d->model->save(d, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, len), 0);
	state_writer_free(w);
	return buf;
}

/* Restored into a reset device, a snapshot gives back the same state: saving again writes the same bytes. */
static void test_snapshot_round_trip(void **state)
{
	struct fx *f = vga_fx_new();
	struct device *d = fbuf_device(f->vm);
	struct state_reader *r;
	uint8_t *before, *after;
	size_t len, len2;

	(void)state;
	dispi_out(f->vm, 1, 800);
	text_window()[10] = 'Z';
	before = save_section(d, &len);
	d->model->reset(d);
	assert_non_null(r = state_reader_new(before, len));
	assert_int_equal(d->model->restore(d, r, 2), 0);
	state_reader_free(r);
	after = save_section(d, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(after, before, len);
	free(before);
	free(after);
	fx_free(f);
}

/* A machine reset puts back what a BIOS leaves: mode 3 registers, a blank window. */
static void test_vga_reset(void **state)
{
	struct fx *f = vga_fx_new();
	struct device *d = fbuf_device(f->vm);
	uint8_t *text = text_window();

	(void)state;
	text[0] = 'Z', text[1] = 0x4F;
	crtc_out(f->vm, 0x0C, 0x07);
	outb(f->vm, 0x3C2, 0x01);
	d->model->reset(d);
	assert_int_equal(text[0], ' ');
	assert_int_equal(text[1], 0x07);
	assert_int_equal(crtc_in(f->vm, 0x3D4, 0x0C), 0);
	assert_int_equal(inb(f->vm, 0x3CC), 0x67);
	assert_true(testdevmem.slot[1].mapped);
	assert_int_equal(testdevmem.slot[1].gpa, 0xB8000);
	fx_free(f);
}

static void test_vga_bad_options(void **state)
{
	static const char *const bad[][3] = {
		{ "vga=maybe", NULL }, { "vga=", NULL }, { "vga=on", "font=/nonexistent/font.psf" },
		{ "vga=on", "font=/etc/hostname" }, /* not a PSF font */
		{ "vga=io", "font=/usr/share/consolefonts/Uni2-VGA16.psf.gz" }, /* no text mode to use it */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc;
		struct fx *f = fx_new(bad[i], &rc);
		assert_int_equal(rc, -1);
		fx_free(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pci_identity_and_slot),
		cmocka_unit_test(test_concurrent_bar0_moves),
		cmocka_unit_test(test_dispi_registers),
		cmocka_unit_test(test_dispi_mmio),
		cmocka_unit_test(test_screen_for_boot),
		cmocka_unit_test(test_default_mode),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_vnc_shows_framebuffer),
		cmocka_unit_test(test_vnc_encodings_and_password),
		cmocka_unit_test(test_low_bpp_modes_shown),
		cmocka_unit_test(test_vnc_wait_holds_start),
		cmocka_unit_test(test_vga_registers),
		cmocka_unit_test(test_vga_off_ignores_ports),
		cmocka_unit_test(test_vga_text_render),
		cmocka_unit_test(test_vga_psf1_font),
		cmocka_unit_test(test_vga_text_vnc),
		cmocka_unit_test(test_vga_snapshot),
		cmocka_unit_test(test_vga_reset),
		cmocka_unit_test(test_snapshot_round_trip),
		cmocka_unit_test(test_vga_bad_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
