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
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "core/unix_socket.h"
#include "core/evloop.h"
#include "core/input.h"
#include "core/log.h"
#include "core/vm.h"
#include "ui/backoff.h"
#include "ui/keymap.h"
#include "ui/rfb.h"
#include "ui/vnc_tls.h"

#define TICK_NS (33 * 1000 * 1000L) /* ~30 Hz while the screen changes */
#define IDLE_TICK_MAX_NS (500 * 1000 * 1000L) /* a static screen is looked at twice a second */
#define PAGE 4096u
#define TILE 64u                    /* damage granularity, also ZRLE's tile */
#define BLANK_W 640
#define BLANK_H 480
#define OUT_HIGH (2u << 20)         /* queued bytes above which a client gets no new update */
#define MAX_CLIENTS 16              /* clients past the handshake */
#define MAX_HANDSHAKES 4            /* connections still in the handshake (they cannot take the above) */
#define HANDSHAKE_MS 10000          /* from accept until ClientInit, TLS and password included */
#define RECV_BUDGET (16u << 10)     /* bytes read from one client per wakeup (raw, TLS records included) */

/*
 * The handshake: ProtocolVersion, the security type (VeNCrypt: its version,
 * the subtype, the TLS handshake), VNC authentication, ClientInit.
 */
enum client_state {
	ST_VERSION,
	ST_SECURITY,
	ST_VENCRYPT_VERSION,
	ST_VENCRYPT_SUBTYPE,
	ST_TLS_HANDSHAKE,
	ST_AUTH,
	ST_INIT,
	ST_NORMAL,
};

struct client {
	struct vnc *v;
	int fd;
	enum client_state state;
	unsigned minor;                  /* RFB 3.minor */
	struct rfb_buf in, out;
	uint8_t challenge[16];
	struct backoff_key peer;         /* the address, as the password back-off knows it */
	char peer_name[64];              /* the address, for the log */
	uint64_t deadline_ms;            /* the handshake must be over by then (CLOCK_MONOTONIC) */
	struct vnc_tls_session *tls;     /* from the VeNCrypt subtype on; NULL: plain */
	uint32_t events;                 /* what the event loop watches for */

	struct rfb_pixel_format pf;
	int32_t encoding;                /* RFB_ENC_RAW, _ZRLE or _TIGHT */
	bool desktop_size, ext_key, led_state;
	bool ext_key_acked;
	unsigned leds_sent;              /* ~0u: never sent */
	uint32_t fb_w, fb_h;             /* the size this client knows */
	bool update_requested, need_resize;
	uint8_t *dirty;                  /* one byte per tile of the current mode */
	z_stream zs[3];                  /* ZRLE uses the first; Tight streams 0-2 */
	bool zs_ready;
	uint8_t buttons;
	struct client *next;
};

struct vnc {
	struct vm *vm;
	struct vnc_source src;
	char *name, *password, *unix_path;
	int listen_fd, timer_fd;
	int deadline_fd;                 /* fires at the earliest handshake deadline */
	struct vnc_tls *tls;             /* TLS credentials: only VeNCrypt is offered; NULL: no TLS */
	struct backoff backoff;          /* addresses that gave wrong passwords */
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
	bool holding_start;              /* `wait`: the vCPUs start once a client is ready */
	struct display_vnc_stats stats;
};

static void client_close(struct client *c, const char *why);
static void try_update(struct client *c);
static void set_tick(struct vnc *v, long ns);

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- transport: the socket, or TLS over it ---- */

static ssize_t client_send(struct client *c, const void *p, size_t len, const char **why)
{
	ssize_t n;

	if (c->tls)
		return vnc_tls_send(c->tls, p, len, why);
	n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		*why = strerror(errno);
	return n;
}

static ssize_t client_recv(struct client *c, void *p, size_t len, const char **why)
{
	ssize_t n;

	if (c->tls)
		return vnc_tls_recv(c->tls, p, len, why);
	n = recv(c->fd, p, len, MSG_DONTWAIT);
	if (n < 0)
		*why = strerror(errno);
	return n;
}

/*
 * Input always, output while some waits; but while TLS waits for the
 * socket to take its bytes only that (the session cannot read meanwhile,
 * and unread input would wake the loop in vain).
 */
static void update_events(struct client *c)
{
	uint32_t events = EPOLLIN | (c->out.len ? EPOLLOUT : 0);

	if (c->tls && vnc_tls_wants_write(c->tls))
		events = EPOLLOUT;
	if (events != c->events && evloop_modify(c->v->vm->loop, c->fd, events) == 0)
		c->events = events;
}

static void flush(struct client *c)
{
	while (c->out.len) {
		const char *why = "connection closed";
		ssize_t n = client_send(c, c->out.data, c->out.len, &why);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			client_close(c, why);
			return;
		}
		c->v->stats.bytes_sent += (uint64_t)n;
		rfb_buf_consume(&c->out, (size_t)n);
	}
	if (c->out.failed) {
		client_close(c, "out of memory");
		return;
	}
	update_events(c);
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

/* What the server offers: one security type, and with VeNCrypt one subtype. */
static uint8_t offered_type(const struct vnc *v)
{
	if (v->tls)
		return RFB_SEC_VENCRYPT;
	return v->password ? RFB_SEC_VNC_AUTH : RFB_SEC_NONE;
}

static uint32_t offered_subtype(const struct vnc *v)
{
	if (!vnc_tls_is_x509(v->tls))
		return RFB_VENCRYPT_TLS_VNC; /* anonymous TLS always comes with a password */
	return v->password ? RFB_VENCRYPT_X509_VNC : RFB_VENCRYPT_X509_NONE;
}

/* Sends what is queued (a failure's reason), then closes; -1 for the message handlers. */
static long reject(struct client *c, const char *why)
{
	flush(c);
	client_close(c, why);
	return -1;
}

static unsigned long long seconds_up(uint64_t ms)
{
	return (unsigned long long)((ms + 999) / 1000);
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

/* An address that gave wrong passwords is refused before anything else until its wait is over. */
static bool backing_off(struct client *c)
{
	uint64_t wait = backoff_remaining(&c->v->backoff, &c->peer, now_ms());
	char reason[96];

	if (!wait)
		return false;
	snprintf(reason, sizeof(reason), "too many failed authentication attempts: try again in %llu s",
		 seconds_up(wait));
	rfb_put_connection_failed(&c->out, c->minor, reason);
	log_warn("vnc: refusing %s for %llu s more: it gave wrong passwords", c->peer_name, seconds_up(wait));
	return true;
}

static long on_version(struct client *c, const uint8_t *p, size_t len)
{
	uint8_t sec = offered_type(c->v);
	struct rfb_hs_msg m;
	const char *why = NULL;
	long n = rfb_parse_handshake(RFB_HS_VERSION, p, len, &m, &why);

	if (n < 0) {
		log_warn("vnc: %s is not an RFB client: %s", c->peer_name, why);
		return reject(c, "bad ProtocolVersion");
	}
	if (n == 0)
		return 0;
	c->minor = m.u.version.minor >= 8 ? 8 : m.u.version.minor == 7 ? 7 : 3;
	if (backing_off(c))
		return reject(c, "password back-off");
	if (sec == RFB_SEC_VENCRYPT && c->minor == 3) {
		rfb_put_connection_failed(&c->out, c->minor, "this server requires TLS (VeNCrypt): RFB 3.7 or later");
		return reject(c, "RFB 3.3 cannot negotiate TLS");
	}
	rfb_put_security_types(&c->out, c->minor, &sec, 1);
	if (c->minor == 3 && sec == RFB_SEC_VNC_AUTH) /* RFB 3.3: the server decides */
		start_auth(c);
	else
		c->state = c->minor == 3 ? ST_INIT : ST_SECURITY;
	return n;
}

static long on_security(struct client *c, const uint8_t *p, size_t len)
{
	uint8_t offered = offered_type(c->v);
	struct rfb_hs_msg m;
	const char *why = NULL;
	long n = rfb_parse_handshake(RFB_HS_SECURITY_TYPE, p, len, &m, &why);

	if (n <= 0)
		return n;
	if (m.u.security_type != offered) {
		rfb_put_security_result(&c->out, c->minor, false, "security type not offered");
		return reject(c, "it chose a security type that was not offered");
	}
	if (offered == RFB_SEC_VNC_AUTH) {
		start_auth(c);
	} else if (offered == RFB_SEC_VENCRYPT) {
		rfb_put_vencrypt_version(&c->out);
		c->state = ST_VENCRYPT_VERSION;
	} else {
		if (c->minor >= 8)
			rfb_put_security_result(&c->out, c->minor, true, NULL);
		c->state = ST_INIT;
	}
	return n;
}

static long on_vencrypt_version(struct client *c, const uint8_t *p, size_t len)
{
	uint32_t sub = offered_subtype(c->v);
	struct rfb_hs_msg m;
	const char *why = NULL;
	long n = rfb_parse_handshake(RFB_HS_VENCRYPT_VERSION, p, len, &m, &why);

	if (n <= 0)
		return n;
	if (m.u.vencrypt.major != 0 || m.u.vencrypt.minor != 2) {
		rfb_buf_u8(&c->out, 1); /* not accepted */
		return reject(c, "it wants a VeNCrypt version other than 0.2");
	}
	rfb_buf_u8(&c->out, 0);
	rfb_put_vencrypt_subtypes(&c->out, &sub, 1);
	c->state = ST_VENCRYPT_SUBTYPE;
	return n;
}

/*
 * The plain-text go-ahead must reach the socket before any TLS byte;
 * bytes the client sent after its choice already belong to TLS.
 */
static int start_tls(struct client *c, const uint8_t *early, size_t early_len)
{
	flush(c);
	if (c->fd < 0)
		return -1;
	if (c->out.len) {
		client_close(c, "the socket does not take the VeNCrypt go-ahead");
		return -1;
	}
	if (!(c->tls = vnc_tls_session_new(c->v->tls, c->fd, early, early_len))) {
		client_close(c, "cannot start a TLS session");
		return -1;
	}
	c->state = ST_TLS_HANDSHAKE;
	return 0;
}

static long on_vencrypt_subtype(struct client *c, const uint8_t *p, size_t len)
{
	struct rfb_hs_msg m;
	const char *why = NULL;
	long n = rfb_parse_handshake(RFB_HS_VENCRYPT_SUBTYPE, p, len, &m, &why);

	if (n <= 0)
		return n;
	if (m.u.subtype != offered_subtype(c->v)) {
		rfb_buf_u8(&c->out, 0); /* not accepted */
		return reject(c, "it chose a VeNCrypt subtype that was not offered");
	}
	rfb_buf_u8(&c->out, 1);
	if (start_tls(c, p + n, len - (size_t)n) < 0)
		return -1;
	return (long)len; /* the rest went to TLS */
}

/* TLS is up: the subtype's authentication follows inside it. */
static void tls_established(struct client *c)
{
	const char *cert = vnc_tls_peer_name(c->tls);

	log_info("vnc: %s: TLS established%s%s", c->peer_name, *cert ? "; client certificate " : "", cert);
	if (c->v->password) {
		start_auth(c);
	} else {
		rfb_put_security_result(&c->out, c->minor, true, NULL); /* VeNCrypt sends it in every version */
		c->state = ST_INIT;
	}
}

static void continue_tls(struct client *c)
{
	const char *why = "";
	int rc;

	vnc_tls_set_read_budget(c->tls, RECV_BUDGET);
	rc = vnc_tls_handshake(c->tls, &why);
	if (rc < 0) {
		log_warn("vnc: %s: TLS handshake failed: %s", c->peer_name, why);
		client_close(c, "TLS handshake failed");
		return;
	}
	if (rc > 0)
		tls_established(c);
	if (c->fd >= 0)
		flush(c);
}

/* Compares all 16 bytes whatever differs (no timing hint). */
static bool same16(const uint8_t *a, const uint8_t *b)
{
	uint8_t d = 0;

	for (int i = 0; i < 16; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

static long on_auth(struct client *c, const uint8_t *p, size_t len)
{
	struct vnc *v = c->v;
	struct rfb_hs_msg m;
	const char *why = NULL;
	uint8_t expect[16];
	long n = rfb_parse_handshake(RFB_HS_VNC_AUTH, p, len, &m, &why);

	if (n <= 0)
		return n;
	if (rfb_vnc_auth_response(v->password, c->challenge, expect) < 0 || !same16(expect, m.u.auth_response)) {
		uint64_t wait = backoff_failed(&v->backoff, &c->peer, now_ms());
		log_warn("vnc: %s gave a wrong password; it may try again in %llu s", c->peer_name, seconds_up(wait));
		rfb_put_security_result(&c->out, c->minor, false, "authentication failed");
		return reject(c, "wrong password");
	}
	backoff_succeeded(&v->backoff, &c->peer);
	rfb_put_security_result(&c->out, c->minor, true, NULL);
	c->state = ST_INIT;
	return n;
}

static unsigned count_ready(const struct vnc *v)
{
	unsigned n = 0;

	for (const struct client *c = v->clients; c; c = c->next)
		n += c->state == ST_NORMAL;
	return n;
}

static long on_client_init(struct client *c, const uint8_t *p, size_t len)
{
	struct vnc *v = c->v;
	struct rfb_hs_msg m;
	const char *why = NULL;
	long n = rfb_parse_handshake(RFB_HS_CLIENT_INIT, p, len, &m, &why);

	if (n <= 0)
		return n;
	/* The shared flag is ignored: every client shares the display. */
	if (count_ready(v) >= MAX_CLIENTS) {
		log_warn("vnc: refusing %s: %d clients already connected", c->peer_name, MAX_CLIENTS);
		return reject(c, "too many clients");
	}
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
	log_info("vnc: client %s ready (RFB 3.%u%s)", c->peer_name, c->minor, c->tls ? ", TLS" : "");
	if (c->v->holding_start) {
		c->v->holding_start = false;
		log_info("vnc: a client is ready: the guest starts");
		vm_release_start(c->v->vm);
	}
	return n;
}

static long on_message(struct client *c, const uint8_t *p, size_t len)
{
	struct rfb_msg m;
	const char *why = NULL;
	long n = rfb_parse_client_msg(p, len, &m, &why);

	if (n < 0)
		log_warn("vnc: dropping client %s: %s", c->peer_name, why);
	else if (n > 0)
		handle_msg(c, &m);
	return n;
}

/* Consumes whole messages from the input buffer; -1 when the client is closed. */
static int process_input(struct client *c)
{
	while (c->in.len && c->state != ST_TLS_HANDSHAKE) {
		const uint8_t *p = c->in.data;
		long n;

		switch (c->state) {
		case ST_VERSION: n = on_version(c, p, c->in.len); break;
		case ST_SECURITY: n = on_security(c, p, c->in.len); break;
		case ST_VENCRYPT_VERSION: n = on_vencrypt_version(c, p, c->in.len); break;
		case ST_VENCRYPT_SUBTYPE: n = on_vencrypt_subtype(c, p, c->in.len); break;
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

/*
 * Reads at most RECV_BUDGET bytes (TLS: raw bytes, records included) and
 * handles the messages they complete, then goes back to the event loop so
 * one busy client cannot starve the others, the serial ports or the
 * control socket. What is left stays in the socket; the loop is
 * level-triggered and calls again.
 */
static void read_input(struct client *c)
{
	size_t budget = RECV_BUDGET;

	if (c->tls)
		vnc_tls_set_read_budget(c->tls, RECV_BUDGET);
	while (budget) {
		const char *why = "disconnected";
		size_t room;
		ssize_t n;

		if (!rfb_buf_reserve(&c->in, 65536)) {
			client_close(c, "out of memory");
			return;
		}
		room = c->in.cap - c->in.len;
		if (!c->tls && room > budget)
			room = budget;
		n = client_recv(c, c->in.data + c->in.len, room, &why);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			client_close(c, why);
			return;
		}
		if (!c->tls)
			budget -= (size_t)n;
		c->in.len += (size_t)n;
		if (c->in.len > RFB_MAX_MSG + 65536) {
			client_close(c, "client sends faster than it is read");
			return;
		}
		if (process_input(c) < 0)
			return;
		if (c->state == ST_TLS_HANDSHAKE) {
			continue_tls(c);
			return;
		}
	}
}

static void on_client_io(void *opaque, uint32_t events)
{
	struct client *c = opaque;

	if (c->state == ST_TLS_HANDSHAKE) {
		continue_tls(c);
		return;
	}
	if (events & EPOLLOUT) {
		flush(c);
		if (c->fd < 0)
			return;
		try_update(c);
		if (c->fd < 0)
			return;
	}
	/* TLS: bytes GnuTLS held back for a full socket may have been all a read was waiting for. */
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->tls)
		return;
	read_input(c);
	if (c->fd >= 0)
		flush(c);
}

/* ---- clients ---- */

static void client_free(struct client *c)
{
	for (int i = 0; c->zs_ready && i < 3; i++)
		deflateEnd(&c->zs[i]);
	vnc_tls_session_free(c->tls);
	rfb_buf_free(&c->in);
	rfb_buf_free(&c->out);
	free(c->dirty);
	free(c);
}

/*
 * Closing unlinks the client and parks it on v->closed: callers up the
 * stack may still hold it (they check c->fd < 0); free_closed() runs from
 * the timers and the listener, never inside a client's own callback.
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
	log_info("vnc: client %s gone (%s); %u left", c->peer_name, why, v->nclients);
}

static void free_closed(struct vnc *v)
{
	while (v->closed) {
		struct client *c = v->closed;
		v->closed = c->next;
		client_free(c);
	}
}

/* ---- the handshake deadline ---- */

/* Arms the timer for the earliest deadline of a connection still in the handshake (or disarms it). */
static void arm_deadline(struct vnc *v)
{
	struct itimerspec its = { 0 };
	uint64_t first = UINT64_MAX;

	for (const struct client *c = v->clients; c; c = c->next)
		if (c->state != ST_NORMAL && c->deadline_ms < first)
			first = c->deadline_ms;
	if (first != UINT64_MAX) {
		its.it_value.tv_sec = (time_t)(first / 1000);
		its.it_value.tv_nsec = (long)(first % 1000) * 1000000 + 1; /* never all zero: that disarms */
	}
	timerfd_settime(v->deadline_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void close_expired(struct vnc *v)
{
	uint64_t now = now_ms();

	for (struct client *c = v->clients, *next; c; c = next) {
		next = c->next;
		if (c->state == ST_NORMAL || c->deadline_ms > now)
			continue;
		log_warn("vnc: closing %s: no complete handshake within %d s of connecting", c->peer_name,
			 HANDSHAKE_MS / 1000);
		client_close(c, "handshake deadline");
	}
	arm_deadline(v);
}

static void on_deadline(void *opaque, uint32_t events)
{
	struct vnc *v = opaque;
	uint64_t n;

	(void)events;
	if (read(v->deadline_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("vnc: handshake timer: %s", strerror(errno));
	free_closed(v);
	close_expired(v);
}

/* ---- accepting ---- */

static unsigned count_handshakes(const struct vnc *v)
{
	unsigned n = 0;

	for (const struct client *c = v->clients; c; c = c->next)
		n += c->state != ST_NORMAL;
	return n;
}

/*
 * Connections still in the handshake have a small quota of their own:
 * when it is full a newcomer replaces the oldest, so idle or slow
 * connections can neither crowd out clients that authenticate nor keep a
 * new one out.
 */
static void make_room_for_handshake(struct vnc *v)
{
	struct client *oldest = NULL;

	if (count_handshakes(v) < MAX_HANDSHAKES)
		return;
	for (struct client *c = v->clients; c; c = c->next) /* newest first */
		if (c->state != ST_NORMAL)
			oldest = c;
	log_warn("vnc: %d connections in the handshake; closing the oldest, %s", MAX_HANDSHAKES, oldest->peer_name);
	client_close(oldest, "replaced by a newer connection in the handshake");
}

static void describe_peer(struct client *c, int fd, const struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN] = "?";
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(c->peer_name, sizeof(c->peer_name), "%s:%u", host, ntohs(a->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(c->peer_name, sizeof(c->peer_name), "[%s]:%u", host, ntohs(a->sin6_port));
	} else if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		snprintf(c->peer_name, sizeof(c->peer_name), "unix:pid %d", (int)cred.pid);
	} else {
		snprintf(c->peer_name, sizeof(c->peer_name), "unix");
	}
}

static void add_client(struct vnc *v, int fd, const struct sockaddr_storage *ss, socklen_t sslen)
{
	struct client *c;
	int one = 1;

	if (count_ready(v) >= MAX_CLIENTS) {
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
	c->events = EPOLLIN;
	c->deadline_ms = now_ms() + HANDSHAKE_MS;
	backoff_key_from_addr((const struct sockaddr *)ss, sslen, &c->peer);
	describe_peer(c, fd, ss);
	if (evloop_add(v->vm->loop, fd, EPOLLIN, on_client_io, c) < 0) {
		close(fd);
		free(c);
		return;
	}
	make_room_for_handshake(v);
	c->next = v->clients;
	v->clients = c;
	v->nclients++;
	log_info("vnc: client %s connected (%u)", c->peer_name, v->nclients);
	arm_deadline(v);
	rfb_buf_put(&c->out, "RFB 003.008\n", 12);
	flush(c);
}

static void accept_clients(struct vnc *v)
{
	for (;;) {
		struct sockaddr_storage ss = { 0 };
		socklen_t sslen = sizeof(ss);
		int fd = accept4(v->listen_fd, (struct sockaddr *)&ss, &sslen, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("vnc: accept: %s", strerror(errno));
			if (errno != EINTR)
				return;
			continue;
		}
		add_client(v, fd, &ss, sslen);
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
	/* A socket left by a hyve that was killed is removed; one somebody serves is not taken over. */
	switch (unix_path_claim("vnc: UNIX socket", path)) {
	case UNIX_PATH_FREE:
		break;
	case UNIX_PATH_IN_USE:
		log_error("vnc: UNIX socket %s is in use by another process", path);
		return -1;
	default:
		return -1;
	}
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

/* Everything vnc_open() set up, in reverse; what it did not get is -1 or NULL. */
static void vnc_release(struct vnc *v)
{
	if (v->deadline_fd >= 0) {
		evloop_del(v->vm->loop, v->deadline_fd);
		close(v->deadline_fd);
	}
	if (v->timer_fd >= 0) {
		evloop_del(v->vm->loop, v->timer_fd);
		close(v->timer_fd);
	}
	if (v->listen_fd >= 0) {
		evloop_del(v->vm->loop, v->listen_fd);
		close(v->listen_fd);
	}
	if (v->unix_path)
		unlink(v->unix_path);
	vnc_tls_free(v->tls);
	free(v->unix_path);
	free(v->name);
	free(v->password);
	free(v->shadow);
	free(v->dirty_log);
	free(v);
}

static int start_timers(struct vnc *v)
{
	struct itimerspec its = { .it_interval = { 0, TICK_NS }, .it_value = { 0, TICK_NS } };

	v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	v->deadline_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	v->tick_ns = TICK_NS;
	if (v->timer_fd < 0 || v->deadline_fd < 0 || timerfd_settime(v->timer_fd, 0, &its, NULL) < 0) {
		log_error("vnc: cannot create timers: %s", strerror(errno));
		return -1;
	}
	if (evloop_add(v->vm->loop, v->timer_fd, EPOLLIN, on_timer, v) < 0 ||
	    evloop_add(v->vm->loop, v->deadline_fd, EPOLLIN, on_deadline, v) < 0) {
		log_error("vnc: cannot start the timers: %s", strerror(errno));
		return -1;
	}
	return 0;
}

struct vnc *vnc_open(struct vm *vm, const struct vnc_options *o, const struct vnc_source *src)
{
	struct vnc *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->vm = vm;
	v->src = *src;
	v->listen_fd = v->timer_fd = v->deadline_fd = -1;
	v->dirty_words = (src->mem_size / PAGE + 63) / 64;
	v->dirty_log = calloc(v->dirty_words ? v->dirty_words : 1, sizeof(*v->dirty_log));
	v->name = strdup(o->name ? o->name : "hyve");
	if (!v->dirty_log || !v->name || (o->password && !(v->password = strdup(o->password))))
		goto fail;
	/* Certificates first: a bad file is an error before anything listens. */
	if (o->tls && !(v->tls = vnc_tls_new(o->tls)))
		goto fail;
	if (o->unix_path) {
		if ((v->listen_fd = listen_unix(o->unix_path)) < 0)
			goto fail;
		if (!(v->unix_path = strdup(o->unix_path))) {
			unlink(o->unix_path);
			goto fail;
		}
	} else if ((v->listen_fd = listen_tcp(o->tcp_addr, o->tcp_port)) < 0) {
		goto fail;
	}
	if (start_timers(v) < 0)
		goto fail;
	if (evloop_add(vm->loop, v->listen_fd, EPOLLIN, on_listen, v) < 0) {
		log_error("vnc: cannot watch the listener: %s", strerror(errno));
		goto fail;
	}
	return v;
fail:
	vnc_release(v);
	return NULL;
}

/*
 * Before the event loop runs: serves the listener, the clients and the
 * handshake deadline with poll() until one client has passed the
 * handshake (and the password, if any).
 */
void vnc_hold_start(struct vnc *v)
{
	log_info("vnc: waiting for a client before starting the guest");
	v->holding_start = true;
	vm_hold_start(v->vm);
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
	log_debug("vnc: %llu ticks, %llu dirty pages, %llu bytes compared, %llu tiles and %llu bytes sent",
		  (unsigned long long)v->stats.ticks, (unsigned long long)v->stats.dirty_pages,
		  (unsigned long long)v->stats.bytes_compared, (unsigned long long)v->stats.tiles_sent,
		  (unsigned long long)v->stats.bytes_sent);
	vnc_release(v);
}
