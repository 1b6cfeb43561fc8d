#include "input.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"

/*
 * One router per VM, kept beside the VM rather than in it so that this
 * file stays free of KVM (unit tests use a bare struct vm pointer as key).
 */
struct input_router {
	struct vm *vm;
	struct input_sink *sinks;
	uint32_t last_x, last_y;   /* screen position, for relative sinks */
	bool have_last;
	unsigned leds;
	struct input_router *next;
};

/* Recursive: a sink may report LEDs from inside its key callback. */
static pthread_mutex_t input_lock;
static pthread_once_t input_once = PTHREAD_ONCE_INIT;
static struct input_router *routers;

static void init_lock(void)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&input_lock, &a);
	pthread_mutexattr_destroy(&a);
}

static void lock(void)
{
	pthread_once(&input_once, init_lock);
	pthread_mutex_lock(&input_lock);
}

static void unlock(void)
{
	pthread_mutex_unlock(&input_lock);
}

/* Caller holds the lock. create: allocate when missing (NULL if out of memory). */
static struct input_router *router(struct vm *vm, bool create)
{
	struct input_router *r;

	for (r = routers; r; r = r->next)
		if (r->vm == vm)
			return r;
	if (!create || !(r = calloc(1, sizeof(*r))))
		return NULL;
	r->vm = vm;
	r->next = routers;
	routers = r;
	return r;
}

static void drop_if_empty(struct input_router *r)
{
	struct input_router **pp;

	if (r->sinks)
		return;
	for (pp = &routers; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			free(r);
			return;
		}
}

void input_register(struct vm *vm, struct input_sink *sink)
{
	struct input_router *r;

	lock();
	if ((r = router(vm, true))) {
		sink->next = r->sinks;
		r->sinks = sink;
		log_debug("input: %s registered", sink->name);
	} else {
		log_error("input: out of memory registering %s", sink->name);
	}
	unlock();
}

void input_unregister(struct vm *vm, struct input_sink *sink)
{
	struct input_router *r;
	struct input_sink **pp;

	lock();
	if ((r = router(vm, false))) {
		for (pp = &r->sinks; *pp; pp = &(*pp)->next)
			if (*pp == sink) {
				*pp = sink->next;
				break;
			}
		drop_if_empty(r);
	}
	unlock();
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

void input_key(struct vm *vm, unsigned evdev_code, bool down)
{
	struct input_router *r;
	struct input_sink *s;

	lock();
	if ((r = router(vm, false)) && (s = pick(r, INPUT_SINK_KEYBOARD)) && s->key)
		s->key(s->opaque, evdev_code, down);
	unlock();
}

static int32_t clamp_delta(int64_t d)
{
	return d > INT32_MAX ? INT32_MAX : d < INT32_MIN ? INT32_MIN : (int32_t)d;
}

void input_pointer(struct vm *vm, uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t buttons,
		   int32_t wheel_v, int32_t wheel_h)
{
	struct input_router *r;
	struct input_sink *s;
	struct input_pointer_event ev = { .buttons = buttons, .wheel_v = wheel_v, .wheel_h = wheel_h };

	if (w == 0 || h == 0)
		return;
	if (x >= w)
		x = w - 1;
	if (y >= h)
		y = h - 1;
	lock();
	if ((r = router(vm, false)) && (s = pick(r, INPUT_SINK_POINTER)) && s->pointer) {
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
	if (r) {
		r->last_x = x;
		r->last_y = y;
		r->have_last = true;
	}
	unlock();
}

void input_set_leds(struct vm *vm, unsigned leds)
{
	struct input_router *r;

	lock();
	if ((r = router(vm, true)))
		r->leds = leds;
	unlock();
}

unsigned input_leds(struct vm *vm)
{
	struct input_router *r;
	unsigned leds = 0;

	lock();
	if ((r = router(vm, false)))
		leds = r->leds;
	unlock();
	return leds;
}
