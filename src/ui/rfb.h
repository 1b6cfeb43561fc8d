/*
 * The RFB (VNC) protocol, RFC 6143 plus the QEMU and pseudo-encoding
 * extensions hyve speaks: message layouts, the parser for what clients
 * send (every length checked; fuzzed by tests/fuzz/fuzz_rfb.c) and the
 * encoders for what the server sends. No I/O here.
 */
#ifndef HYVE_RFB_H
#define HYVE_RFB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* Client-to-server message types. */
enum {
	RFB_SET_PIXEL_FORMAT = 0,
	RFB_SET_ENCODINGS = 2,
	RFB_UPDATE_REQUEST = 3,
	RFB_KEY_EVENT = 4,
	RFB_POINTER_EVENT = 5,
	RFB_CLIENT_CUT_TEXT = 6,
	RFB_QEMU_CLIENT = 255,
};

/* Encodings and pseudo-encodings. */
enum {
	RFB_ENC_RAW = 0,
	RFB_ENC_TIGHT = 7,
	RFB_ENC_ZRLE = 16,
	RFB_ENC_DESKTOP_SIZE = -223,
	RFB_ENC_QEMU_EXT_KEY = -258,
	RFB_ENC_QEMU_LED_STATE = -261,
};

/* Security types, and the VeNCrypt (type 19) subtypes hyve offers. */
enum { RFB_SEC_INVALID = 0, RFB_SEC_NONE = 1, RFB_SEC_VNC_AUTH = 2, RFB_SEC_VENCRYPT = 19 };
enum {
	RFB_VENCRYPT_TLS_VNC = 258,   /* anonymous TLS, then VNC authentication */
	RFB_VENCRYPT_X509_NONE = 260, /* TLS with the server's certificate, no password */
	RFB_VENCRYPT_X509_VNC = 261,  /* TLS with the server's certificate, then VNC authentication */
};

#define RFB_MAX_ENCODINGS 512        /* more in one SetEncodings is a hostile client */
#define RFB_MAX_CUT_TEXT (1u << 20)  /* clipboard text we are willing to buffer (and drop) */
#define RFB_MAX_MSG (RFB_MAX_CUT_TEXT + 8)

struct rfb_pixel_format {
	uint8_t bpp, depth;
	bool big_endian, true_color;
	uint16_t red_max, green_max, blue_max;
	uint8_t red_shift, green_shift, blue_shift;
};

/* x8r8g8b8 little endian: what the framebuffer holds and what we offer. */
extern const struct rfb_pixel_format rfb_native_format;

struct rfb_msg {
	uint8_t type;
	union {
		struct rfb_pixel_format pf;
		struct {
			uint16_t count;
			const uint8_t *list;  /* count big-endian s32 values, inside the input */
		} encodings;
		struct {
			bool incremental;
			uint16_t x, y, w, h;
		} update;
		struct {
			bool down;
			uint32_t keysym;
			uint32_t qnum;        /* QEMU extended key event; 0 for plain key events */
		} key;
		struct {
			uint8_t buttons;
			uint16_t x, y;
		} pointer;
	} u;
};

/*
 * Parses one client message from buf[0..len). Returns the bytes it takes
 * (message filled), 0 when more bytes are needed, or -1 on a protocol
 * error (unknown type, bad pixel format, oversized lengths) with a reason
 * in *why.
 */
long rfb_parse_client_msg(const uint8_t *buf, size_t len, struct rfb_msg *out, const char **why);

/*
 * What a client sends before the normal protocol, one step at a time (the
 * server knows which step comes next). Each parse returns the bytes it
 * takes, 0 when more are needed, or -1 with a reason in *why; it never
 * reads past buf[len).
 */
enum rfb_hs_step {
	RFB_HS_VERSION,          /* ProtocolVersion: exactly "RFB xxx.yyy\n", decimal digits */
	RFB_HS_SECURITY_TYPE,    /* the type chosen from the server's list (RFB 3.7 and later) */
	RFB_HS_VENCRYPT_VERSION, /* VeNCrypt: the version the client takes (major, minor) */
	RFB_HS_VENCRYPT_SUBTYPE, /* VeNCrypt: the subtype chosen (u32) */
	RFB_HS_VNC_AUTH,         /* the 16-byte response to the VNC authentication challenge */
	RFB_HS_CLIENT_INIT,      /* ClientInit: the shared flag */
};

#define RFB_VERSION_LEN 12

struct rfb_hs_msg {
	union {
		struct {
			unsigned major, minor;
		} version;
		uint8_t security_type;
		struct {
			uint8_t major, minor;
		} vencrypt;
		uint32_t subtype;
		const uint8_t *auth_response; /* 16 bytes inside the input */
		bool shared;
	} u;
};

long rfb_parse_handshake(enum rfb_hs_step step, const uint8_t *buf, size_t len, struct rfb_hs_msg *out,
			 const char **why);

/* Encoding value i of a parsed SetEncodings. */
int32_t rfb_encoding_at(const struct rfb_msg *m, unsigned i);

/* A growable output buffer. */
struct rfb_buf {
	uint8_t *data;
	size_t len, cap;
	bool failed;     /* allocation failed: the client is dropped */
};
/* Makes room for n more bytes (false and b->failed when out of memory). */
bool rfb_buf_reserve(struct rfb_buf *b, size_t n);
void rfb_buf_put(struct rfb_buf *b, const void *p, size_t n);
void rfb_buf_u8(struct rfb_buf *b, uint8_t v);
void rfb_buf_u16(struct rfb_buf *b, uint16_t v);
void rfb_buf_u32(struct rfb_buf *b, uint32_t v);
void rfb_buf_consume(struct rfb_buf *b, size_t n);
void rfb_buf_free(struct rfb_buf *b);

void rfb_put_pixel_format(struct rfb_buf *b, const struct rfb_pixel_format *pf);

/*
 * The server's side of the handshake for a client speaking RFB 3.minor
 * (3, 7 or 8). Security types: RFB 3.3 gets the one type the server
 * chose (n must be 1), later versions the list to choose from.
 */
void rfb_put_security_types(struct rfb_buf *b, unsigned minor, const uint8_t *types, unsigned n);
/* Refuses the connection before any security type: the reason is sent in every version. */
void rfb_put_connection_failed(struct rfb_buf *b, unsigned minor, const char *reason);
/* SecurityResult; RFB 3.8 also sends the reason of a failure. */
void rfb_put_security_result(struct rfb_buf *b, unsigned minor, bool ok, const char *reason);
/* VeNCrypt: the server's version (0.2), its verdict on the client's, the subtype list. */
void rfb_put_vencrypt_version(struct rfb_buf *b);
void rfb_put_vencrypt_subtypes(struct rfb_buf *b, const uint32_t *types, unsigned n);

/* The picture an encoder reads: x8r8g8b8 rows. */
struct rfb_image {
	const uint8_t *pixels;
	uint32_t width, height, stride;
};

/* Rectangle header: x, y, w, h, encoding. */
void rfb_put_rect_header(struct rfb_buf *b, uint16_t x, uint16_t y, uint16_t w, uint16_t h, int32_t enc);
/* Raw encoding of a rectangle (header included) in the client's pixel format. */
void rfb_encode_raw(struct rfb_buf *b, const struct rfb_image *img, const struct rfb_pixel_format *pf,
		    uint16_t x, uint16_t y, uint16_t w, uint16_t h);
/*
 * ZRLE encoding of a rectangle (header included) through the client's
 * zlib stream zs (one stream for the whole connection, as RFC 6143 says).
 * Returns 0, or -1 when zlib fails (the client is dropped).
 */
int rfb_encode_zrle(struct rfb_buf *b, z_stream *zs, const struct rfb_image *img, const struct rfb_pixel_format *pf,
		    uint16_t x, uint16_t y, uint16_t w, uint16_t h);

/*
 * Tight encoding (lossless: fill and basic compression with the palette
 * and copy filters; zlib streams 0-2 of the connection) of a rectangle,
 * sent as one Tight rectangle per 64x64 tile. Returns the number of
 * rectangles written, or -1 when zlib fails.
 */
int rfb_encode_tight(struct rfb_buf *b, z_stream zs[3], const struct rfb_image *img, const struct rfb_pixel_format *pf,
		     uint16_t x, uint16_t y, uint16_t w, uint16_t h);

/* VNC authentication: the response a client with `password` gives to challenge. */
int rfb_vnc_auth_response(const char *password, const uint8_t challenge[16], uint8_t response[16]);

#endif
