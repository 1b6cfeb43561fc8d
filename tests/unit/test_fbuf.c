/*
 * The fbuf display model against the recording KVM stand-in: DISPI
 * registers through I/O ports and BAR2, what boot code is told about the
 * screen, option errors. KVM memory slots are recorded by stand-ins below.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/devmem.h"
#include "core/device.h"
#include "core/display.h"
#include "core/log.h"
#include "core/vm.h"
#include "pci/pci.h"
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
	devices_destroy_all(f->vm);
	testvm_free(f->vm);
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

/* ---- tests ---- */

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
	struct vm *vm;

	(void)state;
	assert_int_equal(rc, 0);
	assert_int_equal(display_screen(f->vm, &s), 0);
	assert_int_equal(s.base, cfg_read(f->vm, PCI_BASE_ADDRESS_0, 4) & ~0xFu);
	assert_int_equal(s.size, 32u << 20);
	assert_int_equal(s.width, 800);
	assert_int_equal(s.height, 600);
	assert_int_equal(s.stride, 3200);
	assert_int_equal(s.bpp, 32);
	vm = f->vm;
	fx_free(f);
	assert_int_equal(display_screen(vm, &s), -1); /* gone with the device (vm is only a key here) */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pci_identity_and_slot),
		cmocka_unit_test(test_dispi_registers),
		cmocka_unit_test(test_dispi_mmio),
		cmocka_unit_test(test_screen_for_boot),
		cmocka_unit_test(test_default_mode),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_vnc_shows_framebuffer),
		cmocka_unit_test(test_vnc_encodings_and_password),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
