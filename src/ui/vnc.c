#include "ui/vnc.h"

#include <aml.h>
#include <errno.h>
#include <neatvnc.h>
#include <pixman.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "core/evloop.h"
#include "core/input.h"
#include "core/log.h"
#include "core/vm.h"
#include "ui/keymap.h"

#define FOURCC_XRGB8888 ((uint32_t)'X' | ((uint32_t)'R' << 8) | ((uint32_t)'2' << 16) | ((uint32_t)'4' << 24))
#define TICK_NS (33 * 1000 * 1000L) /* ~30 Hz */
#define PAGE 4096u
#define CHUNK 64u                   /* bytes compared at a time when narrowing a row's damage */
#define MAX_FBS 3                   /* buffers handed to neatvnc: one being encoded, one shown, one to fill */
#define BLANK_W 640
#define BLANK_H 480

struct fbent {
	struct nvnc_fb *fb;
	bool held;                       /* neatvnc still reads it */
	struct pixman_region16 stale;    /* where it differs from the shadow */
};

struct vnc {
	struct vm *vm;
	struct vnc_source src;
	struct aml *aml;
	bool own_aml;                    /* created here and made aml's default */
	struct nvnc *server;
	struct nvnc_display *display;
	int aml_fd, timer_fd;
	char *unix_path;
	unsigned clients;

	bool have_mode, blank;
	struct vnc_surface cur;
	uint8_t *shadow;                 /* width*4 bytes per row: what clients have been given */
	uint64_t *dirty;
	size_t dirty_words;
	pixman_box16_t *boxes;           /* one per row */
	struct fbent fbs[MAX_FBS];
	unsigned nfbs;
	struct pixman_region16 pending;  /* damage not yet fed to neatvnc */
	bool warned_bpp;
	struct vnc_stats stats;
};

/* ---- input: one entry point, to the input router (core/input.h) ---- */

enum vnc_input_kind { VNC_INPUT_KEYSYM, VNC_INPUT_KEYCODE, VNC_INPUT_POINTER };

/*
 * KEYSYM: a = X keysym, b = down. KEYCODE: a = evdev code (neatvnc has
 * already converted the QEMU key number), b = down. POINTER: a, b = x, y,
 * c = RFB button mask: bits 0-2 left/middle/right, 3/4 wheel up/down,
 * 5/6 wheel left/right, 7/8 side/extra; a wheel click is a press of its bit.
 */
static void vnc_input(struct vnc *v, enum vnc_input_kind kind, uint32_t a, uint32_t b, uint32_t c)
{
	static uint32_t last_mask; /* one server per process */
	uint32_t press = c & ~last_mask;

	switch (kind) {
	case VNC_INPUT_KEYSYM:
		input_key(v->vm, keymap_keysym_to_evdev(a, NULL), b);
		break;
	case VNC_INPUT_KEYCODE:
		input_key(v->vm, a, b);
		break;
	case VNC_INPUT_POINTER:
		last_mask = c;
		input_pointer(v->vm, a, b, v->cur.width, v->cur.height, (c & 7) | (c >> 4 & 0x18),
			      !!(press & 8) - !!(press & 16), !!(press & 64) - !!(press & 32));
		break;
	}
}

static struct vnc *server_vnc(struct nvnc_client *client)
{
	return nvnc_get_userdata(nvnc_client_get_server(client));
}

static void on_key(struct nvnc_client *client, uint32_t keysym, bool pressed)
{
	vnc_input(server_vnc(client), VNC_INPUT_KEYSYM, keysym, pressed, 0);
}

static void on_key_code(struct nvnc_client *client, uint32_t code, bool pressed)
{
	vnc_input(server_vnc(client), VNC_INPUT_KEYCODE, code, pressed, 0);
}

static void on_pointer(struct nvnc_client *client, uint16_t x, uint16_t y, enum nvnc_button_mask buttons)
{
	vnc_input(server_vnc(client), VNC_INPUT_POINTER, x, y, (uint32_t)buttons);
}

static void on_client_gone(struct nvnc_client *client)
{
	struct vnc *v = server_vnc(client);

	v->clients--;
	log_info("vnc: client disconnected (%u left)", v->clients);
}

static void on_new_client(struct nvnc_client *client)
{
	struct vnc *v = server_vnc(client);

	v->clients++;
	nvnc_set_client_cleanup_fn(client, on_client_gone);
	log_info("vnc: client connected (%u)", v->clients);
}

static void on_nvnc_log(const struct nvnc_log_data *d, const char *msg)
{
	enum log_level l = d->level <= NVNC_LOG_ERROR ? LOG_ERROR : d->level == NVNC_LOG_WARNING ? LOG_WARN : LOG_DEBUG;

	log_msg(l, "vnc: %s", msg);
}

/* ---- buffers handed to neatvnc ---- */

static void on_fb_release(struct nvnc_fb *fb, void *context)
{
	struct vnc *v = context;

	for (unsigned i = 0; i < v->nfbs; i++)
		if (v->fbs[i].fb == fb)
			v->fbs[i].held = false;
}

static void drop_fbs(struct vnc *v)
{
	for (unsigned i = 0; i < v->nfbs; i++) {
		nvnc_fb_set_release_fn(v->fbs[i].fb, NULL, NULL);
		nvnc_fb_unref(v->fbs[i].fb);
		pixman_region_fini(&v->fbs[i].stale);
	}
	v->nfbs = 0;
}

static struct fbent *free_fb(struct vnc *v)
{
	struct fbent *e;

	for (unsigned i = 0; i < v->nfbs; i++)
		if (!v->fbs[i].held)
			return &v->fbs[i];
	if (v->nfbs == MAX_FBS)
		return NULL;
	e = &v->fbs[v->nfbs];
	e->fb = nvnc_fb_new((uint16_t)v->cur.width, (uint16_t)v->cur.height, FOURCC_XRGB8888, (uint16_t)v->cur.width);
	if (!e->fb)
		return NULL;
	nvnc_fb_set_release_fn(e->fb, on_fb_release, v);
	e->held = false;
	pixman_region_init_rect(&e->stale, 0, 0, v->cur.width, v->cur.height);
	v->nfbs++;
	return e;
}

/* Brings a free buffer up to date from the shadow and feeds it with the pending damage. */
static void feed(struct vnc *v)
{
	struct fbent *e;
	pixman_box16_t *b;
	int n;
	uint8_t *dst;
	size_t line = (size_t)v->cur.width * 4;

	if (!pixman_region_not_empty(&v->pending) || !(e = free_fb(v)))
		return;
	dst = nvnc_fb_get_addr(e->fb);
	b = pixman_region_rectangles(&e->stale, &n);
	for (int i = 0; i < n; i++)
		for (int y = b[i].y1; y < b[i].y2; y++)
			memcpy(dst + y * line + b[i].x1 * 4, v->shadow + y * line + b[i].x1 * 4,
			       (size_t)(b[i].x2 - b[i].x1) * 4);
	pixman_region_clear(&e->stale);
	e->held = true;
	nvnc_display_feed_buffer(v->display, e->fb, &v->pending);
	pixman_region_clear(&v->pending);
	v->stats.frames++;
}

static void add_damage(struct vnc *v, struct pixman_region16 *d)
{
	pixman_region_union(&v->pending, &v->pending, d);
	for (unsigned i = 0; i < v->nfbs; i++)
		pixman_region_union(&v->fbs[i].stale, &v->fbs[i].stale, d);
}

/* ---- change detection ---- */

static const uint8_t *row_ptr(const struct vnc_surface *s, uint32_t y)
{
	return s->mem + s->offset + (uint64_t)y * s->stride;
}

static int set_mode(struct vnc *v, const struct vnc_surface *s, bool blank)
{
	size_t line = (size_t)s->width * 4;
	uint8_t *shadow = realloc(v->shadow, line * s->height);
	pixman_box16_t *boxes = realloc(v->boxes, s->height * sizeof(*boxes));
	struct pixman_region16 all;

	if (shadow)
		v->shadow = shadow;
	if (boxes)
		v->boxes = boxes;
	if (!shadow || !boxes) {
		log_error("vnc: out of memory for a %ux%u screen", s->width, s->height);
		v->have_mode = false;
		return -1;
	}
	drop_fbs(v);
	v->cur = *s;
	v->blank = blank;
	v->have_mode = true;
	for (uint32_t y = 0; y < s->height; y++) {
		if (blank)
			memset(v->shadow + y * line, 0, line);
		else
			memcpy(v->shadow + y * line, row_ptr(s, y), line);
	}
	log_info("vnc: screen %ux%u%s", s->width, s->height, blank ? " (blank: display off or depth not shown)" : "");
	pixman_region_clear(&v->pending);
	pixman_region_init_rect(&all, 0, 0, s->width, s->height);
	add_damage(v, &all);
	pixman_region_fini(&all);
	return 0;
}

static bool page_dirty(const struct vnc *v, uint64_t page)
{
	return page / 64 < v->dirty_words && (v->dirty[page / 64] >> (page % 64)) & 1;
}

static bool range_dirty(const struct vnc *v, uint64_t start, uint64_t len)
{
	for (uint64_t p = start / PAGE; p <= (start + len - 1) / PAGE; p++)
		if (page_dirty(v, p))
			return true;
	return false;
}

/* Compares the dirty rows against the shadow; returns the number of damaged rows (boxes). */
static int find_damage(struct vnc *v, bool all_dirty)
{
	const struct vnc_surface *s = &v->cur;
	size_t line = (size_t)s->width * 4;
	uint64_t first = s->offset / PAGE, last = (s->offset + (uint64_t)s->stride * (s->height - 1) + line - 1) / PAGE;
	uint64_t ndirty = 0;
	int nbox = 0;

	for (uint64_t p = first; p <= last; p++)
		ndirty += page_dirty(v, p);
	if (all_dirty)
		ndirty = last - first + 1;
	v->stats.dirty_pages += ndirty;
	if (!ndirty)
		return 0;
	for (uint32_t y = 0; y < s->height; y++) {
		const uint8_t *g = row_ptr(s, y);
		uint8_t *sh = v->shadow + y * line;
		size_t lo = SIZE_MAX, hi = 0;

		if (!all_dirty && !range_dirty(v, s->offset + (uint64_t)y * s->stride, line))
			continue;
		v->stats.bytes_compared += line;
		for (size_t o = 0; o < line; o += CHUNK) {
			size_t n = line - o < CHUNK ? line - o : CHUNK;
			if (memcmp(g + o, sh + o, n) != 0) {
				if (lo == SIZE_MAX)
					lo = o;
				hi = o + n;
			}
		}
		if (lo == SIZE_MAX)
			continue;
		memcpy(sh + lo, g + lo, hi - lo);
		v->boxes[nbox++] = (pixman_box16_t){ (int16_t)(lo / 4), (int16_t)y, (int16_t)((hi + 3) / 4),
						     (int16_t)(y + 1) };
	}
	return nbox;
}

static bool same_mode(const struct vnc_surface *a, const struct vnc_surface *b)
{
	return a->width == b->width && a->height == b->height && a->stride == b->stride && a->bpp == b->bpp &&
	       a->offset == b->offset && a->mem == b->mem;
}

static void tick(struct vnc *v)
{
	struct vnc_surface s = { 0 };
	bool logged, blank;
	int nbox;

	memset(v->dirty, 0, v->dirty_words * sizeof(*v->dirty));
	logged = v->src.scanout(v->src.opaque, &s, v->dirty);
	v->stats.ticks++;
	blank = s.bpp != 32 || !s.mem || !s.width || !s.height || s.width > 0x7fff || s.height > 0x7fff ||
		s.stride < s.width * 4 || s.offset + (uint64_t)s.stride * (s.height - 1) + s.width * 4ull > s.mem_size;
	if (blank) {
		if (s.bpp && s.bpp != 32 && !v->warned_bpp) {
			log_warn("vnc: the guest chose %u bits per pixel; only 32 is shown", s.bpp);
			v->warned_bpp = true;
		}
		if (!s.width || !s.height || s.width > 0x7fff || s.height > 0x7fff)
			s.width = BLANK_W, s.height = BLANK_H;
		s = (struct vnc_surface){ .width = s.width, .height = s.height, .stride = s.width * 4 };
	}
	if (!v->have_mode || blank != v->blank || !same_mode(&s, &v->cur)) {
		if (set_mode(v, &s, blank) == 0)
			feed(v);
		return;
	}
	if (!blank && (nbox = find_damage(v, !logged)) > 0) {
		struct pixman_region16 d;
		pixman_region_init_rects(&d, v->boxes, nbox);
		add_damage(v, &d);
		pixman_region_fini(&d);
		v->stats.damaged_rows += (uint64_t)nbox;
		log_debug("vnc: %d rows changed (totals: %llu ticks, %llu dirty pages, %llu bytes compared)", nbox,
			  (unsigned long long)v->stats.ticks, (unsigned long long)v->stats.dirty_pages,
			  (unsigned long long)v->stats.bytes_compared);
	}
	feed(v);
}

/* ---- event loop glue ---- */

static void on_timer(void *opaque, uint32_t events)
{
	struct vnc *v = opaque;
	uint64_t n;

	(void)events;
	if (read(v->timer_fd, &n, sizeof(n)) != sizeof(n))
		return;
	tick(v);
}

static void on_aml(void *opaque, uint32_t events)
{
	struct vnc *v = opaque;

	(void)events;
	aml_poll(v->aml, 0);
	aml_dispatch(v->aml);
}

struct vnc *vnc_open(struct vm *vm, const struct vnc_options *o, const struct vnc_source *src)
{
	struct vnc *v = calloc(1, sizeof(*v));
	struct itimerspec its = { .it_interval = { 0, TICK_NS }, .it_value = { 0, TICK_NS } };

	if (!v)
		return NULL;
	v->vm = vm;
	v->src = *src;
	v->aml_fd = v->timer_fd = -1;
	pixman_region_init(&v->pending);
	v->dirty_words = (src->mem_size / PAGE + 63) / 64;
	v->dirty = calloc(v->dirty_words ? v->dirty_words : 1, sizeof(*v->dirty));
	if (!v->dirty)
		goto fail;
	nvnc_set_log_fn(on_nvnc_log);
	nvnc_set_log_level(NVNC_LOG_WARNING);
	v->aml = aml_get_default();
	if (!v->aml) {
		v->aml = aml_new();
		if (!v->aml) {
			log_error("vnc: cannot create the neatvnc event loop");
			goto fail;
		}
		aml_set_default(v->aml);
		v->own_aml = true;
	} else {
		aml_ref(v->aml);
	}
	if (o->unix_path) {
		v->server = nvnc_open_unix(o->unix_path);
		if (!v->server) {
			log_error("vnc: cannot listen on UNIX socket %s: %s", o->unix_path,
				  errno ? strerror(errno) : "failed");
			goto fail;
		}
		v->unix_path = strdup(o->unix_path);
	} else {
		v->server = nvnc_open(o->tcp_addr, o->tcp_port);
		if (!v->server) {
			log_error("vnc: cannot listen on %s:%u: %s", o->tcp_addr, o->tcp_port,
				  errno ? strerror(errno) : "failed");
			goto fail;
		}
	}
	nvnc_set_userdata(v->server, v, NULL);
	nvnc_set_name(v->server, o->name ? o->name : "hyve");
	nvnc_set_new_client_fn(v->server, on_new_client);
	nvnc_set_key_fn(v->server, on_key);
	nvnc_set_key_code_fn(v->server, on_key_code);
	nvnc_set_pointer_fn(v->server, on_pointer);
	v->display = nvnc_display_new(0, 0);
	if (!v->display)
		goto fail;
	nvnc_add_display(v->server, v->display);
	tick(v); /* the first picture, so clients always find a buffer */

	v->aml_fd = aml_get_fd(v->aml);
	v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (v->aml_fd < 0 || v->timer_fd < 0 || timerfd_settime(v->timer_fd, 0, &its, NULL) < 0 ||
	    evloop_add(vm->loop, v->aml_fd, EPOLLIN, on_aml, v) < 0) {
		log_error("vnc: cannot watch the server: %s", strerror(errno));
		v->aml_fd = -1;
		goto fail;
	}
	if (evloop_add(vm->loop, v->timer_fd, EPOLLIN, on_timer, v) < 0) {
		log_error("vnc: cannot start the refresh timer: %s", strerror(errno));
		goto fail;
	}
	return v;
fail:
	vnc_close(v);
	return NULL;
}

int vnc_wait_client(struct vnc *v)
{
	log_info("vnc: waiting for a client before starting the guest");
	while (v->clients == 0) {
		if (aml_poll(v->aml, -1) < 0 && errno != EINTR) {
			log_error("vnc: waiting for a client: %s", strerror(errno));
			return -1;
		}
		aml_dispatch(v->aml);
	}
	return 0;
}

void vnc_get_stats(struct vnc *v, struct vnc_stats *out)
{
	*out = v->stats;
}

void vnc_close(struct vnc *v)
{
	if (!v)
		return;
	if (v->timer_fd >= 0) {
		evloop_del(v->vm->loop, v->timer_fd);
		close(v->timer_fd);
	}
	if (v->aml_fd >= 0)
		evloop_del(v->vm->loop, v->aml_fd);
	if (v->stats.ticks)
		log_debug("vnc: %llu ticks, %llu dirty pages, %llu bytes compared, %llu rows damaged, %llu frames",
			  (unsigned long long)v->stats.ticks, (unsigned long long)v->stats.dirty_pages,
			  (unsigned long long)v->stats.bytes_compared, (unsigned long long)v->stats.damaged_rows,
			  (unsigned long long)v->stats.frames);
	if (v->server)
		nvnc_close(v->server);
	if (v->display)
		nvnc_display_unref(v->display);
	drop_fbs(v);
	if (v->own_aml)
		aml_set_default(NULL); /* drops the default's reference: the one aml_new() gave */
	else if (v->aml)
		aml_unref(v->aml);
	if (v->unix_path) {
		unlink(v->unix_path);
		free(v->unix_path);
	}
	pixman_region_fini(&v->pending);
	free(v->shadow);
	free(v->boxes);
	free(v->dirty);
	free(v);
}
