#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "boot/bzimage.h"

#define IMAGE_SIZE (64 * 1024)

static uint8_t image[IMAGE_SIZE];

static void put16(size_t off, uint16_t v)
{
	image[off] = v & 0xff;
	image[off + 1] = v >> 8;
}

static void put32(size_t off, uint32_t v)
{
	put16(off, v & 0xffff);
	put16(off + 2, v >> 16);
}

/* A minimal well-formed header: protocol 2.15, 64-bit entry, 4 setup sectors. */
static int make_image(void **state)
{
	(void)state;
	memset(image, 0, sizeof(image));
	image[0x1f1] = 4;
	put16(0x1fe, 0xaa55);
	memcpy(image + 0x202, "HdrS", 4);
	put16(0x206, 0x020f);
	image[0x211] = 0x01;           /* LOADED_HIGH */
	put32(0x22c, 0x7fffffff);      /* initrd_addr_max */
	put32(0x230, 0x200000);        /* kernel_alignment */
	image[0x234] = 1;              /* relocatable */
	put16(0x236, 0x0001);          /* XLF_KERNEL_64 */
	put32(0x238, 2047);            /* cmdline_size */
	put32(0x260, 0x100000);        /* init_size */
	return 0;
}

static void accepts_valid(void **state)
{
	struct bzimage bz;
	const char *why = NULL;
	(void)state;

	assert_int_equal(bzimage_parse(image, sizeof(image), &bz, &why), 0);
	assert_int_equal(bz.version, 0x020f);
	assert_int_equal(bz.setup_size, 5 * 512);
	assert_ptr_equal(bz.kernel, image + 5 * 512);
	assert_int_equal(bz.kernel_size, sizeof(image) - 5 * 512);
	assert_int_equal(bz.cmdline_size, 2047);
	assert_int_equal(bz.initrd_addr_max, 0x7fffffff);
	assert_int_equal(bz.init_size, 0x100000);
	assert_int_equal(bz.relocatable, 1);
}

static void zero_setup_sects_means_four(void **state)
{
	struct bzimage bz;
	const char *why;
	(void)state;

	image[0x1f1] = 0;
	assert_int_equal(bzimage_parse(image, sizeof(image), &bz, &why), 0);
	assert_int_equal(bz.setup_size, 5 * 512);
}

static void expect_reject(size_t len, const char *fragment)
{
	struct bzimage bz;
	const char *why = NULL;

	assert_int_equal(bzimage_parse(image, len, &bz, &why), -1);
	assert_non_null(why);
	assert_non_null(strstr(why, fragment));
}

static void rejects_non_kernel(void **state)
{
	(void)state;
	memset(image, 'x', sizeof(image));
	expect_reject(sizeof(image), "not a Linux bzImage");
}

static void rejects_short_file(void **state)
{
	(void)state;
	expect_reject(0x100, "not a Linux bzImage");
	expect_reject(0, "not a Linux bzImage");
}

static void rejects_missing_hdrs(void **state)
{
	(void)state;
	image[0x202] = 'X';
	expect_reject(sizeof(image), "HdrS");
}

static void rejects_old_protocol(void **state)
{
	(void)state;
	put16(0x206, 0x0202);
	expect_reject(sizeof(image), "older than 2.12");
}

static void rejects_no_64bit_entry(void **state)
{
	(void)state;
	put16(0x236, 0);
	expect_reject(sizeof(image), "64-bit");
}

static void rejects_zimage(void **state)
{
	(void)state;
	image[0x211] = 0;
	expect_reject(sizeof(image), "zImage");
}

static void rejects_truncated(void **state)
{
	(void)state;
	expect_reject(5 * 512, "truncated");
}

static void rejects_small_init_size(void **state)
{
	(void)state;
	put32(0x260, 16);
	expect_reject(sizeof(image), "init_size");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(accepts_valid, make_image),
		cmocka_unit_test_setup(zero_setup_sects_means_four, make_image),
		cmocka_unit_test_setup(rejects_non_kernel, make_image),
		cmocka_unit_test_setup(rejects_short_file, make_image),
		cmocka_unit_test_setup(rejects_missing_hdrs, make_image),
		cmocka_unit_test_setup(rejects_old_protocol, make_image),
		cmocka_unit_test_setup(rejects_no_64bit_entry, make_image),
		cmocka_unit_test_setup(rejects_zimage, make_image),
		cmocka_unit_test_setup(rejects_truncated, make_image),
		cmocka_unit_test_setup(rejects_small_init_size, make_image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
