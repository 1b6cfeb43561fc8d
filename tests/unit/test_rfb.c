/*
 * The RFB message and handshake parsers, encoders, VNC authentication
 * (against libvncclient where it can judge) and the password back-off.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "ui/backoff.h"
#include "ui/rfb.h"
#include <sys/un.h>

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

/* ProtocolVersion: exactly "RFB ddd.ddd\n", never a byte past the 12. */
static void test_parse_version(void **state)
{
	static const char *const bad[] = {
		"RFB  03.008\n", "RFB 003.-08\n", "RFB 003.0x8\n", "RFB 003. 08\n", "RFB 003.008\r",
		"RFB 003,008\n", "rfb 003.008\n", "RFB 004.000\n", "RFB +03.008\n",
	};
	struct rfb_hs_msg m;
	const char *why = NULL;
	uint8_t *exact;

	(void)state;
	assert_int_equal(rfb_parse_handshake(RFB_HS_VERSION, (const uint8_t *)"RFB 003.008\n", 12, &m, &why), 12);
	assert_int_equal(m.u.version.major, 3);
	assert_int_equal(m.u.version.minor, 8);
	assert_int_equal(rfb_parse_handshake(RFB_HS_VERSION, (const uint8_t *)"RFB 003.889\nmore", 16, &m, &why), 12);
	assert_int_equal(m.u.version.minor, 889);
	for (size_t n = 0; n < 12; n++)
		assert_int_equal(rfb_parse_handshake(RFB_HS_VERSION, (const uint8_t *)"RFB 003.008\n", n, &m, &why), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		assert_int_equal(rfb_parse_handshake(RFB_HS_VERSION, (const uint8_t *)bad[i], 12, &m, &why), -1);
		assert_non_null(why);
	}
	/* Twelve bytes in a buffer of exactly that size (ASan would see a read past it). */
	exact = malloc(12);
	memcpy(exact, "RFB 003.   \n", 12);
	assert_int_equal(rfb_parse_handshake(RFB_HS_VERSION, exact, 12, &m, &why), -1);
	free(exact);
}

static void test_parse_handshake_steps(void **state)
{
	static const uint8_t sub[] = { 0, 0, 1, 5 }, resp[16] = { 1, 2, 3 };
	struct rfb_hs_msg m;
	const char *why;

	(void)state;
	assert_int_equal(rfb_parse_handshake(RFB_HS_SECURITY_TYPE, (const uint8_t *)"\x13", 1, &m, &why), 1);
	assert_int_equal(m.u.security_type, RFB_SEC_VENCRYPT);
	assert_int_equal(rfb_parse_handshake(RFB_HS_VENCRYPT_VERSION, (const uint8_t *)"\x00\x02", 2, &m, &why), 2);
	assert_int_equal(m.u.vencrypt.major, 0);
	assert_int_equal(m.u.vencrypt.minor, 2);
	assert_int_equal(rfb_parse_handshake(RFB_HS_VENCRYPT_SUBTYPE, sub, 3, &m, &why), 0);
	assert_int_equal(rfb_parse_handshake(RFB_HS_VENCRYPT_SUBTYPE, sub, 4, &m, &why), 4);
	assert_int_equal(m.u.subtype, RFB_VENCRYPT_X509_VNC);
	assert_int_equal(rfb_parse_handshake(RFB_HS_VNC_AUTH, resp, 15, &m, &why), 0);
	assert_int_equal(rfb_parse_handshake(RFB_HS_VNC_AUTH, resp, 16, &m, &why), 16);
	assert_ptr_equal(m.u.auth_response, resp);
	assert_int_equal(rfb_parse_handshake(RFB_HS_CLIENT_INIT, (const uint8_t *)"", 0, &m, &why), 0);
	assert_int_equal(rfb_parse_handshake(RFB_HS_CLIENT_INIT, (const uint8_t *)"\x01", 1, &m, &why), 1);
	assert_true(m.u.shared);
}

/* What the server sends: 3.3 gets a u32, later versions a list; failures carry their reason. */
static void test_put_handshake(void **state)
{
	static const uint32_t subs[] = { RFB_VENCRYPT_X509_NONE };
	uint8_t types[] = { RFB_SEC_VENCRYPT };
	struct rfb_buf b = { 0 };

	(void)state;
	rfb_put_security_types(&b, 3, types, 1);
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.data, "\0\0\0\x13", 4);
	b.len = 0;
	rfb_put_security_types(&b, 8, types, 1);
	assert_int_equal(b.len, 2);
	assert_memory_equal(b.data, "\x01\x13", 2);
	b.len = 0;
	rfb_put_connection_failed(&b, 7, "no");
	assert_int_equal(b.len, 7);
	assert_memory_equal(b.data, "\0\0\0\0\x02no", 7);
	b.len = 0;
	rfb_put_connection_failed(&b, 3, "no");
	assert_int_equal(b.len, 10);
	assert_memory_equal(b.data, "\0\0\0\0\0\0\0\x02no", 10);
	b.len = 0;
	rfb_put_security_result(&b, 7, false, "bad");
	assert_int_equal(b.len, 4); /* 3.7 has no reason */
	b.len = 0;
	rfb_put_security_result(&b, 8, false, "bad");
	assert_int_equal(b.len, 11);
	b.len = 0;
	rfb_put_vencrypt_version(&b);
	rfb_put_vencrypt_subtypes(&b, subs, 1);
	assert_int_equal(b.len, 7);
	assert_memory_equal(b.data, "\0\x02\x01\0\0\x01\x04", 7);
	rfb_buf_free(&b);
}

static void key_v4(const char *ip, struct backoff_key *k)
{
	struct sockaddr_in a = { .sin_family = AF_INET };

	assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	backoff_key_from_addr((struct sockaddr *)&a, sizeof(a), k);
}

static void key_v6(const char *ip, struct backoff_key *k)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6 };

	assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
	backoff_key_from_addr((struct sockaddr *)&a, sizeof(a), k);
}

/* Doubling waits from 1 s, capped at 60 s; a success forgets; so do 10 quiet minutes. */
static void test_backoff_delays(void **state)
{
	struct backoff *b = calloc(1, sizeof(*b));
	struct backoff_key k, other;
	static const uint64_t want[] = { 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000 };
	uint64_t t = 5000;

	(void)state;
	key_v4("192.0.2.1", &k);
	key_v4("192.0.2.2", &other);
	assert_int_equal(backoff_remaining(b, &k, t), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(backoff_failed(b, &k, t), want[i]);
		assert_int_equal(backoff_remaining(b, &k, t), want[i]);
		assert_int_equal(backoff_remaining(b, &k, t + want[i] - 1), 1);
		assert_int_equal(backoff_remaining(b, &other, t), 0);
		t += want[i];
		assert_int_equal(backoff_remaining(b, &k, t), 0);
	}
	backoff_succeeded(b, &k);
	assert_int_equal(backoff_failed(b, &k, t), 1000);
	t += BACKOFF_FORGET_MS;
	assert_int_equal(backoff_failed(b, &k, t), 1000); /* forgotten: starts over */
	free(b);
}

/* IPv6 by /64, IPv4-mapped as IPv4, every UNIX peer the same. */
static void test_backoff_keys(void **state)
{
	struct backoff *b = calloc(1, sizeof(*b));
	struct backoff_key a, c;
	struct sockaddr_un u = { .sun_family = AF_UNIX };

	(void)state;
	key_v6("2001:db8:1:2::1", &a);
	key_v6("2001:db8:1:2:ffff::9", &c);
	assert_memory_equal(&a, &c, sizeof(a));
	key_v6("2001:db8:1:3::1", &c);
	assert_memory_not_equal(&a, &c, sizeof(a));
	key_v4("198.51.100.7", &a);
	key_v6("::ffff:198.51.100.7", &c);
	assert_memory_equal(&a, &c, sizeof(a));
	backoff_key_from_addr((struct sockaddr *)&u, sizeof(sa_family_t), &a);
	strcpy(u.sun_path, "/x");
	backoff_key_from_addr((struct sockaddr *)&u, sizeof(u), &c);
	assert_memory_equal(&a, &c, sizeof(a));
	key_v4("0.0.0.1", &c); /* not confused with the UNIX key */
	assert_memory_not_equal(&a, &c, sizeof(a));
	free(b);
}

/* A full table: a new address takes the entry whose wait ends first, so long waits survive. */
static void test_backoff_table_full(void **state)
{
	struct backoff *b = calloc(1, sizeof(*b));
	struct backoff_key k, hot;
	char ip[32];

	(void)state;
	key_v4("203.0.113.1", &hot);
	for (int i = 0; i < 5; i++)
		backoff_failed(b, &hot, 100); /* 16 s */
	for (int i = 0; i < 3 * BACKOFF_SLOTS; i++) {
		snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 256, i % 256);
		key_v4(ip, &k);
		assert_int_equal(backoff_failed(b, &k, 200 + (uint64_t)i), 1000);
	}
	assert_int_equal(backoff_remaining(b, &hot, 1000), 15100);
	/* The newest addresses are in, the oldest of the many were pushed out. */
	key_v4("10.0.0.0", &k);
	assert_int_equal(backoff_remaining(b, &k, 1000), 0);
	snprintf(ip, sizeof(ip), "10.0.%d.%d", (3 * BACKOFF_SLOTS - 1) / 256, (3 * BACKOFF_SLOTS - 1) % 256);
	key_v4(ip, &k);
	assert_int_equal(backoff_remaining(b, &k, 1000), (200 + 3 * BACKOFF_SLOTS - 1) + 1000 - 1000); /* its failure + 1 s - now */
	free(b);
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
		cmocka_unit_test(test_parse_version),
		cmocka_unit_test(test_parse_handshake_steps),
		cmocka_unit_test(test_put_handshake),
		cmocka_unit_test(test_backoff_delays),
		cmocka_unit_test(test_backoff_keys),
		cmocka_unit_test(test_backoff_table_full),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
