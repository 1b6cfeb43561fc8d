#include "ui/rfb.h"

#include <nettle/des.h>
#include <stdlib.h>
#include <string.h>

const struct rfb_pixel_format rfb_native_format = {
	.bpp = 32, .depth = 24, .big_endian = false, .true_color = true,
	.red_max = 255, .green_max = 255, .blue_max = 255,
	.red_shift = 16, .green_shift = 8, .blue_shift = 0,
};

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Colour-mapped formats are refused: every client we know of speaks true colour. */
static bool pixel_format_ok(const struct rfb_pixel_format *pf)
{
	unsigned bits = pf->bpp;

	if (bits != 8 && bits != 16 && bits != 32)
		return false;
	if (!pf->true_color || !pf->red_max || !pf->green_max || !pf->blue_max)
		return false;
	return pf->red_shift < bits && pf->green_shift < bits && pf->blue_shift < bits;
}

static void parse_pixel_format(const uint8_t *p, struct rfb_pixel_format *pf)
{
	pf->bpp = p[0];
	pf->depth = p[1];
	pf->big_endian = p[2] != 0;
	pf->true_color = p[3] != 0;
	pf->red_max = be16(p + 4);
	pf->green_max = be16(p + 6);
	pf->blue_max = be16(p + 8);
	pf->red_shift = p[10];
	pf->green_shift = p[11];
	pf->blue_shift = p[12];
}

static long fail(const char **why, const char *reason)
{
	*why = reason;
	return -1;
}

static long parse_qemu(const uint8_t *buf, size_t len, struct rfb_msg *out, const char **why)
{
	if (len < 2)
		return 0;
	if (buf[1] != 0) /* 0: extended key event; audio (1) is never offered */
		return fail(why, "unsupported QEMU client message");
	if (len < 12)
		return 0;
	out->u.key.down = be16(buf + 2) != 0;
	out->u.key.keysym = be32(buf + 4);
	out->u.key.qnum = be32(buf + 8);
	if (!out->u.key.qnum && !out->u.key.keysym)
		return fail(why, "extended key event without key");
	return 12;
}

long rfb_parse_client_msg(const uint8_t *buf, size_t len, struct rfb_msg *out, const char **why)
{
	uint32_t n;

	if (len < 1)
		return 0;
	memset(out, 0, sizeof(*out));
	out->type = buf[0];
	switch (buf[0]) {
	case RFB_SET_PIXEL_FORMAT:
		if (len < 20)
			return 0;
		parse_pixel_format(buf + 4, &out->u.pf);
		return pixel_format_ok(&out->u.pf) ? 20 : fail(why, "unsupported pixel format");
	case RFB_SET_ENCODINGS:
		if (len < 4)
			return 0;
		n = be16(buf + 2);
		if (n > RFB_MAX_ENCODINGS)
			return fail(why, "too many encodings");
		if (len < 4 + 4 * (size_t)n)
			return 0;
		out->u.encodings.count = (uint16_t)n;
		out->u.encodings.list = buf + 4;
		return 4 + 4 * (long)n;
	case RFB_UPDATE_REQUEST:
		if (len < 10)
			return 0;
		out->u.update.incremental = buf[1] != 0;
		out->u.update.x = be16(buf + 2);
		out->u.update.y = be16(buf + 4);
		out->u.update.w = be16(buf + 6);
		out->u.update.h = be16(buf + 8);
		return 10;
	case RFB_KEY_EVENT:
		if (len < 8)
			return 0;
		out->u.key.down = buf[1] != 0;
		out->u.key.keysym = be32(buf + 4);
		return 8;
	case RFB_POINTER_EVENT:
		if (len < 6)
			return 0;
		out->u.pointer.buttons = buf[1];
		out->u.pointer.x = be16(buf + 2);
		out->u.pointer.y = be16(buf + 4);
		return 6;
	case RFB_CLIENT_CUT_TEXT:
		if (len < 8)
			return 0;
		n = be32(buf + 4);
		if (n > RFB_MAX_CUT_TEXT) /* also refuses the extended (negative length) form */
			return fail(why, "clipboard text too long");
		return len < 8 + (size_t)n ? 0 : 8 + (long)n;
	case RFB_QEMU_CLIENT:
		return parse_qemu(buf, len, out, why);
	default:
		return fail(why, "unknown message type");
	}
}

/* ---- the handshake ---- */

/* Three decimal digits, nothing else (sscanf would take spaces, signs and read on). */
static bool three_digits(const uint8_t *p, unsigned *out)
{
	*out = 0;
	for (int i = 0; i < 3; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		*out = *out * 10 + (unsigned)(p[i] - '0');
	}
	return true;
}

static long parse_version(const uint8_t *buf, size_t len, struct rfb_hs_msg *out, const char **why)
{
	if (len < RFB_VERSION_LEN)
		return 0;
	if (memcmp(buf, "RFB ", 4) != 0 || buf[7] != '.' || buf[11] != '\n' ||
	    !three_digits(buf + 4, &out->u.version.major) || !three_digits(buf + 8, &out->u.version.minor))
		return fail(why, "malformed ProtocolVersion");
	if (out->u.version.major != 3)
		return fail(why, "not RFB version 3");
	return RFB_VERSION_LEN;
}

long rfb_parse_handshake(enum rfb_hs_step step, const uint8_t *buf, size_t len, struct rfb_hs_msg *out,
			 const char **why)
{
	memset(out, 0, sizeof(*out));
	switch (step) {
	case RFB_HS_VERSION:
		return parse_version(buf, len, out, why);
	case RFB_HS_SECURITY_TYPE:
		if (len < 1)
			return 0;
		out->u.security_type = buf[0];
		return 1;
	case RFB_HS_VENCRYPT_VERSION:
		if (len < 2)
			return 0;
		out->u.vencrypt.major = buf[0];
		out->u.vencrypt.minor = buf[1];
		return 2;
	case RFB_HS_VENCRYPT_SUBTYPE:
		if (len < 4)
			return 0;
		out->u.subtype = be32(buf);
		return 4;
	case RFB_HS_VNC_AUTH:
		if (len < 16)
			return 0;
		out->u.auth_response = buf;
		return 16;
	case RFB_HS_CLIENT_INIT:
		if (len < 1)
			return 0;
		out->u.shared = buf[0] != 0;
		return 1;
	}
	return fail(why, "unknown handshake step");
}

int32_t rfb_encoding_at(const struct rfb_msg *m, unsigned i)
{
	return (int32_t)be32(m->u.encodings.list + 4 * (size_t)i);
}

/* ---- output buffer ---- */

bool rfb_buf_reserve(struct rfb_buf *b, size_t n)
{
	size_t cap;
	uint8_t *d;

	if (b->failed)
		return false;
	if (b->cap - b->len >= n)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap - b->len < n)
		cap *= 2;
	if (!(d = realloc(b->data, cap))) {
		b->failed = true;
		return false;
	}
	b->data = d;
	b->cap = cap;
	return true;
}

void rfb_buf_put(struct rfb_buf *b, const void *p, size_t n)
{
	if (!rfb_buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void rfb_buf_u8(struct rfb_buf *b, uint8_t v)
{
	rfb_buf_put(b, &v, 1);
}

void rfb_buf_u16(struct rfb_buf *b, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	rfb_buf_put(b, p, 2);
}

void rfb_buf_u32(struct rfb_buf *b, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	rfb_buf_put(b, p, 4);
}

void rfb_buf_consume(struct rfb_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void rfb_buf_free(struct rfb_buf *b)
{
	free(b->data);
	*b = (struct rfb_buf){ 0 };
}

void rfb_put_pixel_format(struct rfb_buf *b, const struct rfb_pixel_format *pf)
{
	rfb_buf_u8(b, pf->bpp);
	rfb_buf_u8(b, pf->depth);
	rfb_buf_u8(b, pf->big_endian);
	rfb_buf_u8(b, pf->true_color);
	rfb_buf_u16(b, pf->red_max);
	rfb_buf_u16(b, pf->green_max);
	rfb_buf_u16(b, pf->blue_max);
	rfb_buf_u8(b, pf->red_shift);
	rfb_buf_u8(b, pf->green_shift);
	rfb_buf_u8(b, pf->blue_shift);
	rfb_buf_put(b, "\0\0\0", 3);
}

static void put_reason(struct rfb_buf *b, const char *reason)
{
	rfb_buf_u32(b, (uint32_t)strlen(reason));
	rfb_buf_put(b, reason, strlen(reason));
}

void rfb_put_security_types(struct rfb_buf *b, unsigned minor, const uint8_t *types, unsigned n)
{
	if (minor < 7) {
		rfb_buf_u32(b, types[0]);
		return;
	}
	rfb_buf_u8(b, (uint8_t)n);
	rfb_buf_put(b, types, n);
}

void rfb_put_connection_failed(struct rfb_buf *b, unsigned minor, const char *reason)
{
	if (minor < 7)
		rfb_buf_u32(b, RFB_SEC_INVALID);
	else
		rfb_buf_u8(b, 0);
	put_reason(b, reason);
}

void rfb_put_security_result(struct rfb_buf *b, unsigned minor, bool ok, const char *reason)
{
	rfb_buf_u32(b, ok ? 0 : 1);
	if (!ok && minor >= 8)
		put_reason(b, reason);
}

void rfb_put_vencrypt_version(struct rfb_buf *b)
{
	rfb_buf_u8(b, 0);
	rfb_buf_u8(b, 2);
}

void rfb_put_vencrypt_subtypes(struct rfb_buf *b, const uint32_t *types, unsigned n)
{
	rfb_buf_u8(b, (uint8_t)n);
	for (unsigned i = 0; i < n; i++)
		rfb_buf_u32(b, types[i]);
}

/* ---- VNC authentication ---- */

/* The protocol's DES key is the password (8 bytes, zero padded) with each byte's bits mirrored. */
int rfb_vnc_auth_response(const char *password, const uint8_t challenge[16], uint8_t response[16])
{
	uint8_t key[DES_KEY_SIZE] = { 0 };
	struct des_ctx ctx;
	size_t n = strlen(password);

	for (size_t i = 0; i < DES_KEY_SIZE && i < n; i++) {
		uint8_t c = (uint8_t)password[i], r = 0;
		for (int bit = 0; bit < 8; bit++)
			r |= (uint8_t)(((c >> bit) & 1) << (7 - bit));
		key[i] = r;
	}
	if (!des_set_key(&ctx, key))
		return -1; /* a weak key: refused when the password is configured */
	des_encrypt(&ctx, 16, response, challenge);
	return 0;
}
