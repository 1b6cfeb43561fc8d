#include "ui/vnc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/evloop.h"
#include "core/input.h"
#include "core/log.h"
#include "core/vm.h"
#include "ui/keymap.h"
#include "ui/rfb.h"

#define TICK_NS (33 * 1000 * 1000L) /* ~30 Hz while the screen changes */
#define IDLE_TICK_MAX_NS (500 * 1000 * 1000L) /* a static screen is looked at twice a second */
#define PAGE 4096u
#define TILE 64u                    /* damage granularity, also ZRLE's tile */
#define BLANK_W 640
#define BLANK_H 480
#define OUT_HIGH (2u << 20)         /* queued bytes above which a client gets no new update */
#define MAX_CLIENTS 16

enum client_state { ST_VERSION, ST_SECURITY, ST_AUTH, ST_INIT, ST_NORMAL };

struct client {
	struct vnc *v;
	int fd;
	enum client_state state;
	unsigned minor;                  /* RFB 3.minor */
	struct rfb_buf in, out;
	uint8_t challenge[16];

	struct rfb_pixel_format pf;
	int32_t encoding;                /* RFB_ENC_RAW, _ZRLE or _TIGHT */
	bool desktop_size, ext_key, led_state;
	bool ext_key_acked;
	unsigned leds_sent;              /* ~0u: never sent */
	uint32_t fb_w, fb_h;             /* the size this client knows */
	bool update_requested, need_resize;
	uint8_t *dirty;                  /* one byte per tile of the current mode */
	z_stream zs[3];                  /* ZRLE uses the first; Tight streams 0-2 */
	bool zs_ready, writing;
	uint8_t buttons;
	struct client *next;
};

struct vnc {
	struct vm *vm;
	struct vnc_source src;
	char *name, *password, *unix_path;
	int listen_fd, timer_fd;
	struct client *clients;
	struct client *closed;           /* freed outside their own callbacks */
	unsigned nclients;

	bool have_mode, blank;
	struct display_surface cur;
	uint8_t *shadow;                 /* width*4 bytes per row: the picture clients are sent */
	uint32_t tiles_w, tiles_h;
	uint64_t *dirty_log;
	size_t dirty_words;
	long tick_ns;                    /* the refresh timer's current period */
	bool changed;                    /* the last refresh found damage */
	struct display_vnc_stats stats;
};

static void client_close(struct client *c, const char *why);
static void try_update(struct client *c);
static void set_tick(struct vnc *v, long ns);

/* ---- output ---- */

static void flush(struct client *c)
{
	while (c->out.len) {
		ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			client_close(c, n < 0 ? strerror(errno) : "connection closed");
			return;
		}
		c->v->stats.bytes_sent += (uint64_t)n;
		rfb_buf_consume(&c->out, (size_t)n);
	}
	if (c->out.failed) {
		client_close(c, "out of memory");
		return;
	}
	if (!!c->out.len != c->writing) {
		c->writing = c->out.len != 0;
		evloop_modify(c->v->vm->loop, c->fd, EPOLLIN | (c->writing ? EPOLLOUT : 0));
	}
}

/* ---- the picture ---- */

static struct rfb_image image(const struct vnc *v)
{
	return (struct rfb_image){ .pixels = v->shadow, .width = v->cur.width, .height = v->cur.height,
				   .stride = v->cur.width * 4 };
}

static size_t ntiles(const struct vnc *v)
{
	return (size_t)v->tiles_w * v->tiles_h;
}

static int client_resize(struct client *c)
{
	uint8_t *d = realloc(c->dirty, ntiles(c->v) ? ntiles(c->v) : 1);

	if (!d)
		return -1;
	c->dirty = d;
	memset(c->dirty, 1, ntiles(c->v));
	c->need_resize = c->fb_w != c->v->cur.width || c->fb_h != c->v->cur.height;
	return 0;
}

static const uint8_t *guest_row(const struct display_surface *s, uint32_t y)
{
	return s->mem + s->offset + (uint64_t)y * s->stride;
}

static int set_mode(struct vnc *v, const struct display_surface *s, bool blank)
{
	size_t line = (size_t)s->width * 4;
	uint8_t *shadow = realloc(v->shadow, line * s->height);

	if (!shadow) {
		log_error("vnc: out of memory for a %ux%u screen", s->width, s->height);
		v->have_mode = false;
		return -1;
	}
	v->shadow = shadow;
	v->cur = *s;
	v->blank = blank;
	v->have_mode = true;
	v->changed = true;
	v->tiles_w = (s->width + TILE - 1) / TILE;
	v->tiles_h = (s->height + TILE - 1) / TILE;
	for (uint32_t y = 0; y < s->height; y++) {
		if (blank)
			memset(v->shadow + y * line, 0, line);
		else
			memcpy(v->shadow + y * line, guest_row(s, y), line);
	}
	log_info("vnc: screen %ux%u%s", s->width, s->height, blank ? " (blank: display off or depth not shown)" : "");
	for (struct client *c = v->clients, *next; c; c = next) {
		next = c->next;
		if (c->state == ST_NORMAL && client_resize(c) < 0)
			client_close(c, "out of memory");
	}
	return 0;
}

static bool page_dirty(const struct vnc *v, uint64_t page)
{
	return page / 64 < v->dirty_words && (v->dirty_log[page / 64] >> (page % 64)) & 1;
}

static bool range_dirty(const struct vnc *v, uint64_t start, uint64_t len)
{
	for (uint64_t p = start / PAGE; p <= (start + len - 1) / PAGE; p++)
		if (page_dirty(v, p))
			return true;
	return false;
}

static void mark_tiles(struct vnc *v, uint32_t x0, uint32_t x1, uint32_t y)
{
	v->changed = true;
	for (uint32_t t = x0 / TILE; t <= (x1 - 1) / TILE; t++)
		for (struct client *c = v->clients; c; c = c->next)
			if (c->state == ST_NORMAL)
				c->dirty[(size_t)(y / TILE) * v->tiles_w + t] = 1;
}

/* Compares one row against the shadow in 64-byte chunks; marks the changed span's tiles. */
static void compare_row(struct vnc *v, uint32_t y)
{
	const size_t line = (size_t)v->cur.width * 4, chunk = 64;
	const uint8_t *g = guest_row(&v->cur, y);
	uint8_t *sh = v->shadow + y * line;
	size_t lo = SIZE_MAX, hi = 0;

	v->stats.bytes_compared += line;
	for (size_t o = 0; o < line; o += chunk) {
		size_t n = line - o < chunk ? line - o : chunk;
		if (memcmp(g + o, sh + o, n) != 0) {
			if (lo == SIZE_MAX)
				lo = o;
			hi = o + n;
		}
	}
	if (lo == SIZE_MAX)
		return;
	memcpy(sh + lo, g + lo, hi - lo);
	mark_tiles(v, (uint32_t)(lo / 4), (uint32_t)((hi + 3) / 4), y);
}

static void find_damage(struct vnc *v, bool all_dirty)
{
	const struct display_surface *s = &v->cur;
	size_t line = (size_t)s->width * 4;
	uint64_t first = s->offset / PAGE, last = (s->offset + (uint64_t)s->stride * (s->height - 1) + line - 1) / PAGE;
	uint64_t ndirty = 0;

	for (uint64_t p = first; p <= last; p++)
		ndirty += page_dirty(v, p);
	if (all_dirty)
		ndirty = last - first + 1;
	v->stats.dirty_pages += ndirty;
	if (!ndirty)
		return;
	log_debug("vnc: %llu dirty pages in [%llu, %llu]%s", (unsigned long long)ndirty, (unsigned long long)first,
		  (unsigned long long)last, all_dirty ? " (no dirty log)" : "");
	for (uint32_t y = 0; y < s->height; y++)
		if (all_dirty || range_dirty(v, s->offset + (uint64_t)y * s->stride, line))
			compare_row(v, y);
}

static bool same_mode(const struct display_surface *a, const struct display_surface *b)
{
	return a->width == b->width && a->height == b->height && a->stride == b->stride && a->bpp == b->bpp &&
	       a->offset == b->offset && a->mem == b->mem;
}

static bool surface_blank(struct display_surface *s)
{
	bool blank = s->bpp != 32 || !s->mem || !s->width || !s->height || s->width > 0x7fff ||
		     s->height > 0x7fff || s->stride < s->width * 4 ||
		     s->offset + (uint64_t)s->stride * (s->height - 1) + s->width * 4ull > s->mem_size;

	if (!blank)
		return false;
	if (!s->width || !s->height || s->width > 0x7fff || s->height > 0x7fff)
		s->width = BLANK_W, s->height = BLANK_H;
	*s = (struct display_surface){ .width = s->width, .height = s->height, .stride = s->width * 4 };
	return true;
}

static bool have_active_clients(const struct vnc *v)
{
	for (const struct client *c = v->clients; c; c = c->next)
		if (c->state == ST_NORMAL)
			return true;
	return false;
}

/* Brings the shadow up to date with the guest; clients' dirty tiles follow. */
static void refresh(struct vnc *v)
{
	struct display_surface s = { 0 };
	bool logged, blank;

	memset(v->dirty_log, 0, v->dirty_words * sizeof(*v->dirty_log));
	logged = v->src.scanout(v->src.opaque, &s, v->dirty_log);
	blank = surface_blank(&s);
	if (!v->have_mode || blank != v->blank || !same_mode(&s, &v->cur)) {
		set_mode(v, &s, blank);
		return;
	}
	if (!blank)
		find_damage(v, !logged);
}

/* ---- updates ---- */

static void put_update_header(struct client *c, size_t *count_at)
{
	rfb_buf_u8(&c->out, 0);
	rfb_buf_u8(&c->out, 0);
	*count_at = c->out.len;
	rfb_buf_u16(&c->out, 0);
}

static int put_tiles_rect(struct client *c, uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
	struct rfb_image img = image(c->v);

	if (x >= c->fb_w || y >= c->fb_h)
		return 0;
	if (x + w > c->fb_w)
		w = c->fb_w - x;
	if (y + h > c->fb_h)
		h = c->fb_h - y;
	if (c->encoding == RFB_ENC_ZRLE)
		return rfb_encode_zrle(&c->out, &c->zs[0], &img, &c->pf, (uint16_t)x, (uint16_t)y, (uint16_t)w,
				       (uint16_t)h) < 0 ? -1 : 1;
	if (c->encoding == RFB_ENC_TIGHT)
		return rfb_encode_tight(&c->out, c->zs, &img, &c->pf, (uint16_t)x, (uint16_t)y, (uint16_t)w, (uint16_t)h);
	rfb_encode_raw(&c->out, &img, &c->pf, (uint16_t)x, (uint16_t)y, (uint16_t)w, (uint16_t)h);
	return 1;
}

/* Dirty tiles as rectangles: runs of tiles in each tile row. Returns rectangles written, or -1. */
static int put_dirty(struct client *c)
{
	struct vnc *v = c->v;
	int rects = 0;

	for (uint32_t ty = 0; ty < v->tiles_h; ty++) {
		uint8_t *row = c->dirty + (size_t)ty * v->tiles_w;
		for (uint32_t tx = 0; tx < v->tiles_w;) {
			uint32_t end = tx, x, w, h;
			int rc;

			if (!row[tx]) {
				tx++;
				continue;
			}
			while (end < v->tiles_w && row[end])
				row[end++] = 0;
			x = tx * TILE;
			w = (end * TILE > v->cur.width ? v->cur.width : end * TILE) - x;
			h = ((ty + 1) * TILE > v->cur.height ? v->cur.height : (ty + 1) * TILE) - ty * TILE;
			if ((rc = put_tiles_rect(c, x, ty * TILE, w, h)) < 0)
				return -1;
			rects += rc;
			v->stats.tiles_sent += end - tx;
			tx = end;
		}
	}
	return rects;
}

static bool has_dirty(const struct client *c)
{
	return memchr(c->dirty, 1, ntiles(c->v)) != NULL;
}

static void try_update(struct client *c)
{
	struct vnc *v = c->v;
	unsigned leds = input_leds(v->vm);
	bool leds_due = c->led_state && leds != c->leds_sent;
	bool ack_due = c->ext_key && !c->ext_key_acked;
	bool resize_due = c->need_resize && c->desktop_size;
	size_t count_at;
	int rects = 0, n;

	if (c->state != ST_NORMAL || !c->update_requested || c->out.len > OUT_HIGH)
		return;
	if (!leds_due && !ack_due && !resize_due && !has_dirty(c))
		return;
	put_update_header(c, &count_at);
	if (ack_due) {
		rfb_put_rect_header(&c->out, 0, 0, 0, 0, RFB_ENC_QEMU_EXT_KEY);
		c->ext_key_acked = true;
		rects++;
	}
	if (leds_due) {
		rfb_put_rect_header(&c->out, 0, 0, 0, 0, RFB_ENC_QEMU_LED_STATE);
		rfb_buf_u8(&c->out, (uint8_t)leds);
		c->leds_sent = leds;
		rects++;
	}
	if (resize_due) {
		c->fb_w = v->cur.width;
		c->fb_h = v->cur.height;
		rfb_put_rect_header(&c->out, 0, 0, (uint16_t)c->fb_w, (uint16_t)c->fb_h, RFB_ENC_DESKTOP_SIZE);
		c->need_resize = false;
		rects++;
	}
	if ((n = put_dirty(c)) < 0) {
		client_close(c, "compression failed");
		return;
	}
	rects += n;
	if (c->out.failed) {
		client_close(c, "out of memory");
		return;
	}
	c->out.data[count_at] = (uint8_t)(rects >> 8);
	c->out.data[count_at + 1] = (uint8_t)rects;
	c->update_requested = false;
	flush(c);
}

static void update_all(struct vnc *v)
{
	for (struct client *c = v->clients, *next; c; c = next) {
		next = c->next;
		try_update(c);
	}
}

/* ---- client messages ---- */

/* Initialises the zlib streams once: RFC 6143 keeps them for the whole connection. */
static int start_zlib(struct client *c)
{
	for (int i = 0; !c->zs_ready && i < 3; i++)
		if (deflateInit(&c->zs[i], Z_BEST_COMPRESSION) != Z_OK) { /* updates are small: bytes matter more */
			while (i-- > 0)
				deflateEnd(&c->zs[i]);
			return -1;
		}
	c->zs_ready = true;
	return 0;
}

/* The first of ZRLE, Tight and Raw in the client's order of preference. */
static void set_encodings(struct client *c, const struct rfb_msg *m)
{
	bool chose = false;

	c->encoding = RFB_ENC_RAW;
	c->desktop_size = c->ext_key = c->led_state = false;
	for (unsigned i = 0; i < m->u.encodings.count; i++) {
		int32_t e = rfb_encoding_at(m, i);
		if ((e == RFB_ENC_ZRLE || e == RFB_ENC_TIGHT || e == RFB_ENC_RAW) && !chose) {
			c->encoding = e;
			chose = true;
		} else if (e == RFB_ENC_DESKTOP_SIZE)
			c->desktop_size = true;
		else if (e == RFB_ENC_QEMU_EXT_KEY)
			c->ext_key = true;
		else if (e == RFB_ENC_QEMU_LED_STATE)
			c->led_state = true;
	}
	if (c->encoding != RFB_ENC_RAW && start_zlib(c) < 0) {
		client_close(c, "zlib initialisation failed");
		return;
	}
	c->ext_key_acked = false;
	c->leds_sent = ~0u;
}

static void update_request(struct client *c, const struct rfb_msg *m)
{
	struct vnc *v = c->v;
	uint32_t x0 = m->u.update.x, y0 = m->u.update.y;
	uint32_t x1 = x0 + m->u.update.w, y1 = y0 + m->u.update.h;

	c->update_requested = true;
	if (m->u.update.incremental)
		return;
	if (x1 > v->cur.width)
		x1 = v->cur.width;
	if (y1 > v->cur.height)
		y1 = v->cur.height;
	for (uint32_t ty = y0 / TILE; x0 < x1 && y0 < y1 && ty <= (y1 - 1) / TILE; ty++)
		for (uint32_t tx = x0 / TILE; tx <= (x1 - 1) / TILE; tx++)
			c->dirty[(size_t)ty * v->tiles_w + tx] = 1;
}

/*
 * Pointer buttons: VNC's mask has buttons 1-3 in bits 0-2, wheel up/down in
 * 3/4, wheel left/right in 5/6 and back/forward in 7 (and 8, which RFB's
 * byte cannot carry). A wheel "click" is a press; the release is ignored.
 */
static void pointer_event(struct client *c, const struct rfb_msg *m)
{
	uint8_t b = m->u.pointer.buttons, pressed = (uint8_t)(b & ~c->buttons);
	uint32_t held = (b & 7) | (b & 0x80 ? INPUT_BTN_SIDE : 0);
	int32_t wv = (pressed & 0x08 ? 1 : 0) - (pressed & 0x10 ? 1 : 0);
	int32_t wh = (pressed & 0x40 ? 1 : 0) - (pressed & 0x20 ? 1 : 0);

	c->buttons = b;
	set_tick(c->v, TICK_NS);
	input_pointer(c->v->vm, m->u.pointer.x, m->u.pointer.y, c->v->cur.width, c->v->cur.height, held, wv, wh);
}

/*
 * Keys: the scancode of a QEMU extended key event names the key itself,
 * whatever the client's layout; plain key events carry a keysym, mapped
 * for a US layout. The client sends Shift itself, so a keysym's shift
 * state is not added.
 */
static void key_event(struct client *c, const struct rfb_msg *m)
{
	unsigned code = m->u.key.qnum ? keymap_qnum_to_evdev(m->u.key.qnum) : 0;

	if (!code)
		code = keymap_keysym_to_evdev(m->u.key.keysym, NULL);
	if (!code) {
		log_debug("vnc: no key for keysym 0x%x / scancode 0x%x", m->u.key.keysym, m->u.key.qnum);
		return;
	}
	set_tick(c->v, TICK_NS);
	input_key(c->v->vm, code, m->u.key.down);
}

static void handle_msg(struct client *c, const struct rfb_msg *m)
{
	switch (m->type) {
	case RFB_SET_PIXEL_FORMAT:
		c->pf = m->u.pf;
		break;
	case RFB_SET_ENCODINGS:
		set_encodings(c, m);
		break;
	case RFB_UPDATE_REQUEST:
		update_request(c, m);
		try_update(c);
		break;
	case RFB_KEY_EVENT:
	case RFB_QEMU_CLIENT:
		key_event(c, m);
		break;
	case RFB_POINTER_EVENT:
		pointer_event(c, m);
		break;
	default:
		break; /* clipboard text: dropped */
	}
}

/* ---- handshake ---- */

static void send_security_result(struct client *c, bool ok, const char *reason)
{
	rfb_buf_u32(&c->out, ok ? 0 : 1);
	if (!ok && c->minor >= 8) {
		rfb_buf_u32(&c->out, (uint32_t)strlen(reason));
		rfb_buf_put(&c->out, reason, strlen(reason));
	}
}

static void start_auth(struct client *c)
{
	if (getrandom(c->challenge, sizeof(c->challenge), 0) != sizeof(c->challenge)) {
		client_close(c, "no random bytes for the challenge");
		return;
	}
	rfb_buf_put(&c->out, c->challenge, sizeof(c->challenge));
	c->state = ST_AUTH;
}

static long on_version(struct client *c, const uint8_t *p, size_t len)
{
	unsigned major, minor;
	uint8_t sec = c->v->password ? RFB_SEC_VNC_AUTH : RFB_SEC_NONE;

	if (len < 12)
		return 0;
	if (memcmp(p, "RFB ", 4) != 0 || p[7] != '.' || p[11] != '\n' || sscanf((const char *)p + 4, "%3u.%3u", &major, &minor) != 2 ||
	    major != 3)
		return -1;
	c->minor = minor >= 8 ? 8 : minor == 7 ? 7 : 3;
	if (c->minor == 3) { /* the server decides */
		rfb_buf_u32(&c->out, sec);
		if (sec == RFB_SEC_VNC_AUTH)
			start_auth(c);
		else
			c->state = ST_INIT;
	} else {
		rfb_buf_u8(&c->out, 1);
		rfb_buf_u8(&c->out, sec);
		c->state = ST_SECURITY;
	}
	return 12;
}

static long on_security(struct client *c, const uint8_t *p, size_t len)
{
	uint8_t offered = c->v->password ? RFB_SEC_VNC_AUTH : RFB_SEC_NONE;

	if (len < 1)
		return 0;
	if (p[0] != offered) {
		send_security_result(c, false, "security type not offered");
		return -1;
	}
	if (offered == RFB_SEC_VNC_AUTH) {
		start_auth(c);
	} else {
		if (c->minor >= 8)
			send_security_result(c, true, NULL);
		c->state = ST_INIT;
	}
	return 1;
}

static long on_auth(struct client *c, const uint8_t *p, size_t len)
{
	uint8_t expect[16];

	if (len < 16)
		return 0;
	if (rfb_vnc_auth_response(c->v->password, c->challenge, expect) < 0 || memcmp(expect, p, 16) != 0) {
		log_warn("vnc: a client gave a wrong password");
		send_security_result(c, false, "authentication failed");
		return -1;
	}
	send_security_result(c, true, NULL);
	c->state = ST_INIT;
	return 16;
}

static long on_client_init(struct client *c, const uint8_t *p, size_t len)
{
	struct vnc *v = c->v;

	(void)p;
	if (len < 1)
		return 0;
	/* The shared flag is ignored: every client shares the display. */
	if (!v->have_mode)
		refresh(v);
	c->pf = rfb_native_format;
	c->fb_w = v->cur.width;
	c->fb_h = v->cur.height;
	if (client_resize(c) < 0)
		return -1;
	rfb_buf_u16(&c->out, (uint16_t)c->fb_w);
	rfb_buf_u16(&c->out, (uint16_t)c->fb_h);
	rfb_put_pixel_format(&c->out, &c->pf);
	rfb_buf_u32(&c->out, (uint32_t)strlen(v->name));
	rfb_buf_put(&c->out, v->name, strlen(v->name));
	c->state = ST_NORMAL;
	log_info("vnc: client ready (RFB 3.%u)", c->minor);
	return 1;
}

static long on_message(struct client *c, const uint8_t *p, size_t len)
{
	struct rfb_msg m;
	const char *why = NULL;
	long n = rfb_parse_client_msg(p, len, &m, &why);

	if (n < 0)
		log_warn("vnc: dropping a client: %s", why);
	else if (n > 0)
		handle_msg(c, &m);
	return n;
}

/* Consumes whole messages from the input buffer; -1 when the client is closed. */
static int process_input(struct client *c)
{
	while (c->in.len) {
		const uint8_t *p = c->in.data;
		long n;

		switch (c->state) {
		case ST_VERSION: n = on_version(c, p, c->in.len); break;
		case ST_SECURITY: n = on_security(c, p, c->in.len); break;
		case ST_AUTH: n = on_auth(c, p, c->in.len); break;
		case ST_INIT: n = on_client_init(c, p, c->in.len); break;
		default: n = on_message(c, p, c->in.len); break;
		}
		if (c->fd < 0)
			return -1;
		if (n < 0) {
			flush(c); /* a security failure reason, if any */
			client_close(c, "protocol error");
			return -1;
		}
		if (n == 0)
			break;
		rfb_buf_consume(&c->in, (size_t)n);
	}
	return 0;
}

static void on_client_io(void *opaque, uint32_t events)
{
	struct client *c = opaque;

	if (events & EPOLLOUT) {
		flush(c);
		if (c->fd < 0)
			return;
		try_update(c);
		if (c->fd < 0)
			return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	for (;;) {
		ssize_t n;

		if (!rfb_buf_reserve(&c->in, 65536)) {
			client_close(c, "out of memory");
			return;
		}
		n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			client_close(c, n < 0 ? strerror(errno) : "disconnected");
			return;
		}
		c->in.len += (size_t)n;
		if (c->in.len > RFB_MAX_MSG + 65536) {
			client_close(c, "client sends faster than it is read");
			return;
		}
		if (process_input(c) < 0)
			return;
	}
	if (c->fd >= 0)
		flush(c);
}

/* ---- clients ---- */

static void client_free(struct client *c)
{
	for (int i = 0; c->zs_ready && i < 3; i++)
		deflateEnd(&c->zs[i]);
	rfb_buf_free(&c->in);
	rfb_buf_free(&c->out);
	free(c->dirty);
	free(c);
}

/*
 * Closing unlinks the client and parks it on v->closed: callers up the
 * stack may still hold it (they check c->fd < 0); free_closed() runs from
 * the timer and the listener, never inside a client's own callback.
 */
static void client_close(struct client *c, const char *why)
{
	struct vnc *v = c->v;
	struct client **pp;

	if (c->fd < 0)
		return;
	for (pp = &v->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	v->nclients--;
	evloop_del(v->vm->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	c->next = v->closed;
	v->closed = c;
	log_info("vnc: client gone (%s); %u left", why, v->nclients);
}

static void free_closed(struct vnc *v)
{
	while (v->closed) {
		struct client *c = v->closed;
		v->closed = c->next;
		client_free(c);
	}
}

static void add_client(struct vnc *v, int fd)
{
	struct client *c;
	int one = 1;

	if (v->nclients >= MAX_CLIENTS) {
		log_warn("vnc: refusing a client: %d already connected", MAX_CLIENTS);
		close(fd);
		return;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails harmlessly on UNIX sockets */
	c->v = v;
	c->fd = fd;
	c->leds_sent = ~0u;
	c->pf = rfb_native_format;
	if (evloop_add(v->vm->loop, fd, EPOLLIN, on_client_io, c) < 0) {
		close(fd);
		free(c);
		return;
	}
	c->next = v->clients;
	v->clients = c;
	v->nclients++;
	log_info("vnc: client connected (%u)", v->nclients);
	rfb_buf_put(&c->out, "RFB 003.008\n", 12);
	flush(c);
}

static void accept_clients(struct vnc *v)
{
	for (;;) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("vnc: accept: %s", strerror(errno));
			if (errno != EINTR)
				return;
			continue;
		}
		add_client(v, fd);
	}
}

static void on_listen(void *opaque, uint32_t events)
{
	(void)events;
	free_closed(opaque);
	accept_clients(opaque);
}

static void set_tick(struct vnc *v, long ns)
{
	struct itimerspec its = { .it_interval = { 0, ns }, .it_value = { 0, ns } };

	if (ns == v->tick_ns || timerfd_settime(v->timer_fd, 0, &its, NULL) < 0)
		return;
	v->tick_ns = ns;
}

/*
 * The refresh slows down while nothing changes (by one fast period per
 * quiet tick, up to IDLE_TICK_MAX_NS) and is fast again as soon as the
 * screen changes or a client sends input the guest will answer.
 */
static void adapt_tick(struct vnc *v)
{
	if (v->changed)
		set_tick(v, TICK_NS);
	else if (v->tick_ns < IDLE_TICK_MAX_NS)
		set_tick(v, v->tick_ns + TICK_NS > IDLE_TICK_MAX_NS ? IDLE_TICK_MAX_NS : v->tick_ns + TICK_NS);
}

static void on_timer(void *opaque, uint32_t events)
{
	struct vnc *v = opaque;
	uint64_t n;

	(void)events;
	free_closed(v);
	if (read(v->timer_fd, &n, sizeof(n)) != sizeof(n) || !have_active_clients(v))
		return;
	v->stats.ticks++;
	v->changed = false;
	refresh(v);
	adapt_tick(v);
	update_all(v);
}

/* ---- listening ---- */

static int listen_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(a.sun_path)) {
		log_error("vnc: UNIX socket path too long: %s", path);
		return -1;
	}
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || chmod(path, 0600) < 0 || listen(fd, 8) < 0) {
		log_error("vnc: cannot listen on UNIX socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int listen_tcp(const char *addr, uint16_t port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char ports[8];
	int fd = -1, one = 1, rc;

	snprintf(ports, sizeof(ports), "%u", port);
	if ((rc = getaddrinfo(addr, ports, &hints, &res)) != 0) {
		log_error("vnc: bad listen address %s: %s", addr, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 8) < 0) {
		log_error("vnc: cannot listen on %s:%u: %s", addr, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

struct vnc *vnc_open(struct vm *vm, const struct vnc_options *o, const struct vnc_source *src)
{
	struct vnc *v = calloc(1, sizeof(*v));
	struct itimerspec its = { .it_interval = { 0, TICK_NS }, .it_value = { 0, TICK_NS } };

	if (!v)
		return NULL;
	v->vm = vm;
	v->src = *src;
	v->listen_fd = v->timer_fd = -1;
	v->dirty_words = (src->mem_size / PAGE + 63) / 64;
	v->dirty_log = calloc(v->dirty_words ? v->dirty_words : 1, sizeof(*v->dirty_log));
	v->name = strdup(o->name ? o->name : "hyve");
	if (!v->dirty_log || !v->name || (o->password && !(v->password = strdup(o->password))))
		goto fail;
	if (o->unix_path) {
		if ((v->listen_fd = listen_unix(o->unix_path)) < 0)
			goto fail;
		v->unix_path = strdup(o->unix_path);
	} else if ((v->listen_fd = listen_tcp(o->tcp_addr, o->tcp_port)) < 0) {
		goto fail;
	}
	v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	v->tick_ns = TICK_NS;
	if (v->timer_fd < 0 || timerfd_settime(v->timer_fd, 0, &its, NULL) < 0 ||
	    evloop_add(vm->loop, v->listen_fd, EPOLLIN, on_listen, v) < 0) {
		log_error("vnc: cannot watch the listener: %s", strerror(errno));
		goto fail;
	}
	if (evloop_add(vm->loop, v->timer_fd, EPOLLIN, on_timer, v) < 0) {
		evloop_del(vm->loop, v->listen_fd);
		log_error("vnc: cannot start the refresh timer: %s", strerror(errno));
		goto fail;
	}
	return v;
fail:
	if (v->listen_fd >= 0)
		close(v->listen_fd);
	if (v->timer_fd >= 0)
		close(v->timer_fd);
	if (v->unix_path)
		unlink(v->unix_path);
	free(v->unix_path);
	free(v->name);
	free(v->password);
	free(v->dirty_log);
	free(v);
	return NULL;
}

/*
 * Before the event loop runs: serves the listener and the clients with
 * poll() until one has passed the handshake (and the password, if any).
 */
int vnc_wait_client(struct vnc *v)
{
	struct pollfd p[1 + MAX_CLIENTS];
	struct client *cs[MAX_CLIENTS];

	log_info("vnc: waiting for a client before starting the guest");
	while (!have_active_clients(v)) {
		nfds_t n = 0;

		free_closed(v);
		if (vm_is_exiting(v->vm))
			return -1;
		p[0] = (struct pollfd){ .fd = v->listen_fd, .events = POLLIN };
		for (struct client *c = v->clients; c && n < MAX_CLIENTS; c = c->next, n++) {
			p[n + 1] = (struct pollfd){ .fd = c->fd, .events = POLLIN | (c->writing ? POLLOUT : 0) };
			cs[n] = c;
		}
		if (poll(p, n + 1, 1000) < 0) {
			if (errno == EINTR)
				continue;
			log_error("vnc: waiting for a client: %s", strerror(errno));
			return -1;
		}
		for (nfds_t i = 0; i < n; i++)
			if (p[i + 1].revents && cs[i]->fd >= 0)
				on_client_io(cs[i], (uint32_t)p[i + 1].revents); /* poll and epoll bits agree */
		if (p[0].revents)
			accept_clients(v);
	}
	return 0;
}

void vnc_get_stats(struct vnc *v, struct display_vnc_stats *out)
{
	*out = v->stats;
	out->clients = v->nclients;
}

void vnc_close(struct vnc *v)
{
	if (!v)
		return;
	while (v->clients)
		client_close(v->clients, "server closing");
	free_closed(v);
	evloop_del(v->vm->loop, v->timer_fd);
	evloop_del(v->vm->loop, v->listen_fd);
	close(v->timer_fd);
	close(v->listen_fd);
	log_debug("vnc: %llu ticks, %llu dirty pages, %llu bytes compared, %llu tiles and %llu bytes sent",
		  (unsigned long long)v->stats.ticks, (unsigned long long)v->stats.dirty_pages,
		  (unsigned long long)v->stats.bytes_compared, (unsigned long long)v->stats.tiles_sent,
		  (unsigned long long)v->stats.bytes_sent);
	if (v->unix_path)
		unlink(v->unix_path);
	free(v->unix_path);
	free(v->name);
	free(v->password);
	free(v->shadow);
	free(v->dirty_log);
	free(v);
}
