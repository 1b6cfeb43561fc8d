/*
 * libFuzzer harness for what a VNC client sends (src/ui/rfb.c) and what it
 * steers in the encoders (src/ui/rfb_encode.c).
 *
 * The input is a client's byte stream after the handshake: it is consumed
 * message by message exactly as the server does (a parse that needs more
 * bytes waits, an error ends the stream). Every SetPixelFormat the parser
 * accepts is then used to encode a small picture, chosen from the input,
 * in Raw, ZRLE and Tight, and every UpdateRequest's rectangle, clipped as the
 * server clips it, is encoded too. Invariants (__builtin_trap): a parse
 * never claims more bytes than it was given; a SetEncodings list lies
 * inside the input; Raw output has exactly the size the pixel format
 * implies; ZRLE's length field matches the bytes written.
 *
 * The same bytes are also walked as a client's handshake, step by step as
 * the server takes it (ProtocolVersion, security type, VeNCrypt version
 * and subtype, the VNC authentication response, ClientInit), the path
 * chosen by what each step parsed; a parsed version is always 3.ddd, a
 * response points inside the input. And their first bytes, as a peer
 * address of any length, give the password back-off a key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ui/backoff.h"
#include "ui/rfb.h"

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)
#define W 70
#define H 67

static uint8_t pixels[W * H * 4];

static void make_picture(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < sizeof(pixels); i++)
		pixels[i] = size ? data[(i * 7) % size] & (i % 3 ? 0x0f : 0xff) : 0;
}

static void encode(const struct rfb_pixel_format *pf, uint16_t x, uint16_t y, uint16_t w, uint16_t h)
{
	struct rfb_image img = { pixels, W, H, W * 4 };
	struct rfb_buf b = { 0 };
	z_stream zs = { 0 };
	uint32_t len;

	if (x >= W || y >= H)
		return;
	if (w > W - x)
		w = (uint16_t)(W - x);
	if (h > H - y)
		h = (uint16_t)(H - y);
	rfb_encode_raw(&b, &img, pf, x, y, w, h);
	CHECK(b.failed || b.len == 12 + (size_t)w * h * (pf->bpp / 8));
	b.len = 0;
	CHECK(deflateInit(&zs, 1) == Z_OK);
	if (rfb_encode_zrle(&b, &zs, &img, pf, x, y, w, h) == 0) {
		len = (uint32_t)b.data[12] << 24 | b.data[13] << 16 | b.data[14] << 8 | b.data[15];
		CHECK(len == b.len - 16);
	}
	deflateEnd(&zs);
	b.len = 0;
	{
		z_stream tz[3] = { { 0 } };
		for (int i = 0; i < 3; i++)
			CHECK(deflateInit(&tz[i], 1) == Z_OK);
		CHECK(rfb_encode_tight(&b, tz, &img, pf, x, y, w, h) >= (w && h ? 1 : 0) || b.failed);
		for (int i = 0; i < 3; i++)
			deflateEnd(&tz[i]);
	}
	rfb_buf_free(&b);
}

static enum rfb_hs_step next_step(enum rfb_hs_step step, const struct rfb_hs_msg *m)
{
	switch (step) {
	case RFB_HS_VERSION:
		return RFB_HS_SECURITY_TYPE;
	case RFB_HS_SECURITY_TYPE:
		if (m->u.security_type == RFB_SEC_VENCRYPT)
			return RFB_HS_VENCRYPT_VERSION;
		return m->u.security_type == RFB_SEC_VNC_AUTH ? RFB_HS_VNC_AUTH : RFB_HS_CLIENT_INIT;
	case RFB_HS_VENCRYPT_VERSION:
		return RFB_HS_VENCRYPT_SUBTYPE;
	case RFB_HS_VENCRYPT_SUBTYPE:
		return m->u.subtype == RFB_VENCRYPT_X509_NONE ? RFB_HS_CLIENT_INIT : RFB_HS_VNC_AUTH;
	default:
		return RFB_HS_CLIENT_INIT;
	}
}

static void walk_handshake(const uint8_t *data, size_t size)
{
	enum rfb_hs_step step = RFB_HS_VERSION;
	size_t at = 0;

	while (at < size) {
		struct rfb_hs_msg m;
		const char *why = NULL;
		long n = rfb_parse_handshake(step, data + at, size - at, &m, &why);

		if (n <= 0) {
			CHECK(n == 0 || why);
			return;
		}
		CHECK((size_t)n <= size - at);
		if (step == RFB_HS_VERSION)
			CHECK(n == RFB_VERSION_LEN && m.u.version.major == 3 && m.u.version.minor <= 999);
		if (step == RFB_HS_VNC_AUTH) {
			uint8_t expect[16];
			CHECK(m.u.auth_response == data + at);
			CHECK(rfb_vnc_auth_response("hyve-pw", m.u.auth_response, expect) == 0);
		}
		at += (size_t)n;
		if (step == RFB_HS_CLIENT_INIT)
			return;
		step = next_step(step, &m);
	}
}

static void peer_key(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss = { 0 };
	struct backoff_key k;
	size_t len = size < sizeof(ss) ? size : sizeof(ss);

	memcpy(&ss, data, len);
	backoff_key_from_addr((const struct sockaddr *)&ss, (socklen_t)len, &k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rfb_pixel_format pf = rfb_native_format;
	size_t at = 0;

	walk_handshake(data, size);
	peer_key(data, size);
	make_picture(data, size);
	while (at < size) {
		struct rfb_msg m;
		const char *why = NULL;
		long n = rfb_parse_client_msg(data + at, size - at, &m, &why);

		if (n <= 0) {
			CHECK(n == 0 || why);
			break;
		}
		CHECK((size_t)n <= size - at);
		if (m.type == RFB_SET_ENCODINGS) {
			CHECK(m.u.encodings.list == data + at + 4);
			for (unsigned i = 0; i < m.u.encodings.count; i++)
				(void)rfb_encoding_at(&m, i);
		} else if (m.type == RFB_SET_PIXEL_FORMAT) {
			pf = m.u.pf;
			encode(&pf, 0, 0, W, H);
		} else if (m.type == RFB_UPDATE_REQUEST) {
			encode(&pf, m.u.update.x, m.u.update.y, m.u.update.w, m.u.update.h);
		}
		at += (size_t)n;
	}
	return 0;
}
