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

enum { RFB_SEC_NONE = 1, RFB_SEC_VNC_AUTH = 2 };

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
