#include "input.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "vm.h"

/* An event that arrived while the VM was paused, delivered when it resumes. */
struct held_event {
	bool is_key;
	bool down;
	unsigned code;
	uint32_t x, y, w, h, buttons;
	int32_t wheel_v, wheel_h;
};

#define MAX_HELD 256

/* The VM's router (vm->input), created with the VM and kept for its life. */
struct input_router {
	/* Recursive: a sink may report LEDs from inside its key callback. */
	pthread_mutex_t lock;
	struct input_sink *sinks;
	uint32_t last_x, last_y;   /* screen position, for relative sinks */
	bool have_last;
	unsigned leds;
	bool paused;               /* hold events: the VM is paused */
	unsigned nheld;
	bool overflow_logged;
	struct held_event held[MAX_HELD];
};

int input_init(struct vm *vm)
{
	struct input_router *r = calloc(1, sizeof(*r));
	pthread_mutexattr_t a;

	if (!r)
		return -1;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&r->lock, &a);
	pthread_mutexattr_destroy(&a);
	vm->input = r;
	return 0;
}

void input_fini(struct vm *vm)
{
	struct input_router *r = vm->input;

	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r);
	vm->input = NULL;
}

void input_register(struct vm *vm, struct input_sink *sink)
{
	struct input_router *r = vm->input;

	pthread_mutex_lock(&r->lock);
	sink->next = r->sinks;
	r->sinks = sink;
	log_debug("input: %s registered", sink->name);
	pthread_mutex_unlock(&r->lock);
}

void input_unregister(struct vm *vm, struct input_sink *sink)
{
	struct input_router *r = vm->input;

	pthread_mutex_lock(&r->lock);
	for (struct input_sink **pp = &r->sinks; *pp; pp = &(*pp)->next)
		if (*pp == sink) {
			*pp = sink->next;
			break;
		}
	pthread_mutex_unlock(&r->lock);
}

static bool sink_active(const struct input_sink *s)
{
	return !s->active || s->active(s->opaque);
}

/* Highest priority active sink of `kind`, else highest priority of any. */
static struct input_sink *pick(struct input_router *r, enum input_sink_kind kind)
{
	struct input_sink *best = NULL, *best_any = NULL;

	for (struct input_sink *s = r->sinks; s; s = s->next) {
		if (s->kind != kind)
			continue;
		if (!best_any || s->priority > best_any->priority)
			best_any = s;
		if (sink_active(s) && (!best || s->priority > best->priority))
			best = s;
	}
	return best ? best : best_any;
}

/*
 * While the VM is paused an event is kept, not dropped (a key released
 * during a snapshot must not stay down in the guest). Consecutive motions
 * with the same buttons collapse into the last one. Caller holds the lock.
 */
static bool hold(struct input_router *r, const struct held_event *ev)
{
	struct held_event *last = r->nheld ? &r->held[r->nheld - 1] : NULL;

	if (!r->paused)
		return false;
	if (last && !ev->is_key && !last->is_key && last->buttons == ev->buttons && !last->wheel_v &&
	    !last->wheel_h && !ev->wheel_v && !ev->wheel_h) {
		*last = *ev;
		return true;
	}
	if (r->nheld == MAX_HELD) {
		if (!r->overflow_logged)
			log_warn("input: more than %d events while the VM is paused; dropping the rest", MAX_HELD);
		r->overflow_logged = true;
		return true;
	}
	r->held[r->nheld++] = *ev;
	return true;
}

static void deliver_key(struct input_router *r, unsigned evdev_code, bool down)
{
	struct input_sink *s = pick(r, INPUT_SINK_KEYBOARD);

	if (s && s->key)
		s->key(s->opaque, evdev_code, down);
}

void input_key(struct vm *vm, unsigned evdev_code, bool down)
{
	struct input_router *r = vm->input;

	pthread_mutex_lock(&r->lock);
	if (!hold(r, &(struct held_event){ .is_key = true, .code = evdev_code, .down = down }))
		deliver_key(r, evdev_code, down);
	pthread_mutex_unlock(&r->lock);
}

static int32_t clamp_delta(int64_t d)
{
	return d > INT32_MAX ? INT32_MAX : d < INT32_MIN ? INT32_MIN : (int32_t)d;
}

static void deliver_pointer(struct input_router *r, const struct held_event *e)
{
	struct input_sink *s = pick(r, INPUT_SINK_POINTER);
	struct input_pointer_event ev = { .buttons = e->buttons, .wheel_v = e->wheel_v, .wheel_h = e->wheel_h };
	uint32_t x = e->x, y = e->y, w = e->w, h = e->h;

	if (s && s->pointer) {
		if (s->absolute) {
			/* Pixel centres: x=0 -> 0 and x=w-1 -> 0x7FFF exactly. */
			ev.x = w > 1 ? (int32_t)(((uint64_t)x * 0x7FFF + (w - 1) / 2) / (w - 1)) : 0;
			ev.y = h > 1 ? (int32_t)(((uint64_t)y * 0x7FFF + (h - 1) / 2) / (h - 1)) : 0;
		} else if (r->have_last) {
			ev.x = clamp_delta((int64_t)x - r->last_x);
			ev.y = clamp_delta((int64_t)y - r->last_y);
		}
		s->pointer(s->opaque, &ev);
	}
	r->last_x = x;
	r->last_y = y;
	r->have_last = true;
}

void input_pointer(struct vm *vm, uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t buttons,
		   int32_t wheel_v, int32_t wheel_h)
{
	struct input_router *r = vm->input;
	struct held_event ev = { .buttons = buttons, .w = w, .h = h, .wheel_v = wheel_v, .wheel_h = wheel_h };

	if (w == 0 || h == 0)
		return;
	ev.x = x < w ? x : w - 1;
	ev.y = y < h ? y : h - 1;
	pthread_mutex_lock(&r->lock);
	if (!hold(r, &ev))
		deliver_pointer(r, &ev);
	pthread_mutex_unlock(&r->lock);
}

void input_set_running(struct vm *vm, bool running)
{
	struct input_router *r = vm->input;

	pthread_mutex_lock(&r->lock);
	r->paused = !running;
	for (unsigned i = 0; running && i < r->nheld; i++) {
		const struct held_event *e = &r->held[i];
		if (e->is_key)
			deliver_key(r, e->code, e->down);
		else
			deliver_pointer(r, e);
	}
	if (running) {
		r->nheld = 0;
		r->overflow_logged = false;
	}
	pthread_mutex_unlock(&r->lock);
}

void input_set_leds(struct vm *vm, unsigned leds)
{
	struct input_router *r = vm->input;

	pthread_mutex_lock(&r->lock);
	r->leds = leds;
	pthread_mutex_unlock(&r->lock);
}

unsigned input_leds(struct vm *vm)
{
	struct input_router *r = vm->input;
	unsigned leds;

	pthread_mutex_lock(&r->lock);
	leds = r->leds;
	pthread_mutex_unlock(&r->lock);
	return leds;
}
