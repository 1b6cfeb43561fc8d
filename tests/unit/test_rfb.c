/* The RFB message parser, encoders and VNC authentication, against libvncclient where it can judge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "ui/rfb.h"

#ifdef HAVE_LIBVNCCLIENT
#include <rfb/rfbclient.h>
/* exported by libvncclient, not declared in its headers */
void rfbClientEncryptBytes(unsigned char *bytes, char *passwd);
#endif

static void test_parse_messages(void **state)
{
	static const uint8_t key[] = { 4, 1, 0, 0, 0, 0, 0xff, 0x0d };
	static const uint8_t ptr[] = { 5, 0x09, 0x01, 0x02, 0x00, 0x30 };
	static const uint8_t req[] = { 3, 1, 0, 1, 0, 2, 0x04, 0x00, 0x03, 0x00 };
	static const uint8_t qkey[] = { 255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e };
	static const uint8_t enc[] = { 2, 0, 0, 2, 0, 0, 0, 16, 0xff, 0xff, 0xff, 0x21 };
	struct rfb_msg m;
	const char *why;

	(void)state;
	assert_int_equal(rfb_parse_client_msg(key, sizeof(key), &m, &why), 8);
	assert_true(m.u.key.down);
	assert_int_equal(m.u.key.keysym, 0xff0d);
	assert_int_equal(rfb_parse_client_msg(ptr, sizeof(ptr), &m, &why), 6);
	assert_int_equal(m.u.pointer.buttons, 9);
	assert_int_equal(m.u.pointer.x, 0x102);
	assert_int_equal(m.u.pointer.y, 0x30);
	assert_int_equal(rfb_parse_client_msg(req, sizeof(req), &m, &why), 10);
	assert_true(m.u.update.incremental);
	assert_int_equal(m.u.update.w, 1024);
	assert_int_equal(m.u.update.h, 768);
	assert_int_equal(rfb_parse_client_msg(qkey, sizeof(qkey), &m, &why), 12);
	assert_int_equal(m.u.key.qnum, 0x1e);
	assert_int_equal(m.u.key.keysym, 0x61);
	assert_false(m.u.key.down == false);
	assert_int_equal(rfb_parse_client_msg(enc, sizeof(enc), &m, &why), 12);
	assert_int_equal(rfb_encoding_at(&m, 0), RFB_ENC_ZRLE);
	assert_int_equal(rfb_encoding_at(&m, 1), RFB_ENC_DESKTOP_SIZE);
}

/* Every proper prefix of a message asks for more bytes. */
static void test_parse_needs_more(void **state)
{
	static const uint8_t qkey[] = { 255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e };
	static const uint8_t cut[] = { 6, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c' };
	struct rfb_msg m;
	const char *why;

	(void)state;
	for (size_t n = 0; n < sizeof(qkey); n++)
		assert_int_equal(rfb_parse_client_msg(qkey, n, &m, &why), 0);
	for (size_t n = 0; n < sizeof(cut); n++)
		assert_int_equal(rfb_parse_client_msg(cut, n, &m, &why), 0);
	assert_int_equal(rfb_parse_client_msg(cut, sizeof(cut), &m, &why), sizeof(cut));
}

static void test_parse_refuses(void **state)
{
	static const uint8_t unknown[] = { 7, 0, 0, 0 };
	static const uint8_t huge_cut[] = { 6, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0 };
	static const uint8_t many_enc[] = { 2, 0, 0xff, 0xff };
	static const uint8_t cmap_pf[20] = { 0, 0, 0, 0, 8, 8, 0, 0 /* true colour off */ };
	static const uint8_t bad_bpp[20] = { 0, 0, 0, 0, 24, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0 };
	static const uint8_t bad_shift[20] = { 0, 0, 0, 0, 16, 16, 0, 1, 0, 31, 0, 63, 0, 31, 40, 5, 0 };
	static const uint8_t audio[] = { 255, 1, 0, 0 };
	struct rfb_msg m;
	const char *why = NULL;

	(void)state;
	assert_int_equal(rfb_parse_client_msg(unknown, sizeof(unknown), &m, &why), -1);
	assert_non_null(why);
	assert_int_equal(rfb_parse_client_msg(huge_cut, sizeof(huge_cut), &m, &why), -1);
	assert_int_equal(rfb_parse_client_msg(many_enc, sizeof(many_enc), &m, &why), -1);
	assert_int_equal(rfb_parse_client_msg(cmap_pf, sizeof(cmap_pf), &m, &why), -1);
	assert_int_equal(rfb_parse_client_msg(bad_bpp, sizeof(bad_bpp), &m, &why), -1);
	assert_int_equal(rfb_parse_client_msg(bad_shift, sizeof(bad_shift), &m, &why), -1);
	assert_int_equal(rfb_parse_client_msg(audio, sizeof(audio), &m, &why), -1);
}

/* Raw in the native format is the picture itself; in a 16-bit format, converted. */
static void test_encode_raw(void **state)
{
	uint8_t px[2 * 2 * 4] = { 0x00, 0x00, 0xff, 0, 0xff, 0x00, 0x00, 0, 0x00, 0xff, 0x00, 0, 1, 2, 3, 0 };
	struct rfb_image img = { px, 2, 2, 8 };
	struct rfb_pixel_format pf16 = { 16, 16, false, true, 31, 63, 31, 11, 5, 0 };
	struct rfb_buf b = { 0 };

	(void)state;
	rfb_encode_raw(&b, &img, &rfb_native_format, 0, 0, 2, 2);
	assert_int_equal(b.len, 12 + sizeof(px));
	assert_memory_equal(b.data + 12, px, sizeof(px));
	b.len = 0;
	rfb_encode_raw(&b, &img, &pf16, 1, 0, 1, 1);
	assert_int_equal(b.len, 12 + 2);
	assert_int_equal(b.data[12] | b.data[13] << 8, 0x001f); /* blue */
	rfb_buf_free(&b);
}

/* A solid tile is 1 subencoding byte and a 3-byte CPIXEL before compression. */
static void test_encode_zrle_solid(void **state)
{
	uint8_t *px = malloc(70 * 3 * 4);
	struct rfb_image img = { px, 70, 3, 70 * 4 };
	struct rfb_buf b = { 0 };
	z_stream zs = { 0 }, in = { 0 };
	uint8_t out[64];
	uint32_t len;

	(void)state;
	for (int i = 0; i < 70 * 3; i++)
		memcpy(px + 4 * i, "\x10\x20\x30\x00", 4);
	assert_int_equal(deflateInit(&zs, 6), Z_OK);
	assert_int_equal(rfb_encode_zrle(&b, &zs, &img, &rfb_native_format, 0, 0, 70, 3), 0);
	len = (uint32_t)b.data[12] << 24 | b.data[13] << 16 | b.data[14] << 8 | b.data[15];
	assert_int_equal(len, b.len - 16);
	assert_int_equal(inflateInit(&in), Z_OK);
	in.next_in = b.data + 16;
	in.avail_in = len;
	in.next_out = out;
	in.avail_out = sizeof(out);
	assert_true(inflate(&in, Z_SYNC_FLUSH) == Z_OK);
	assert_int_equal(sizeof(out) - in.avail_out, 8); /* two tiles: 64x3 and 6x3 */
	assert_memory_equal(out, "\x01\x10\x20\x30\x01\x10\x20\x30", 8);
	inflateEnd(&in);
	deflateEnd(&zs);
	rfb_buf_free(&b);
	free(px);
}

static void test_vnc_auth(void **state)
{
	uint8_t challenge[16], ours[16];

	(void)state;
	for (int i = 0; i < 16; i++)
		challenge[i] = (uint8_t)(i * 17 + 3);
	assert_int_equal(rfb_vnc_auth_response("secret", challenge, ours), 0);
#ifdef HAVE_LIBVNCCLIENT
	{
		uint8_t theirs[16];
		char pw[] = "secret";
		memcpy(theirs, challenge, 16);
		rfbClientEncryptBytes(theirs, pw);
		assert_memory_equal(ours, theirs, 16);
	}
#endif
	assert_int_equal(rfb_vnc_auth_response("", challenge, ours), -1); /* all-zero key is weak */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_messages),
		cmocka_unit_test(test_parse_needs_more),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_encode_raw),
		cmocka_unit_test(test_encode_zrle_solid),
		cmocka_unit_test(test_vnc_auth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
