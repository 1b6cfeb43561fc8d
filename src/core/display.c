#include "display.h"

#include <pthread.h>
#include <stddef.h>

#include "log.h"

static pthread_mutex_t display_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	struct vm *vm;
	display_screen_fn fn;
	void *opaque;
} provider;

int display_register(struct vm *vm, display_screen_fn fn, void *opaque)
{
	int rc = 0;

	pthread_mutex_lock(&display_lock);
	if (provider.vm == vm && provider.fn) {
		log_error("only one display device is supported");
		rc = -1;
	} else {
		provider.vm = vm;
		provider.fn = fn;
		provider.opaque = opaque;
	}
	pthread_mutex_unlock(&display_lock);
	return rc;
}

void display_unregister(struct vm *vm)
{
	pthread_mutex_lock(&display_lock);
	if (provider.vm == vm) {
		provider.vm = NULL;
		provider.fn = NULL;
		provider.opaque = NULL;
	}
	pthread_mutex_unlock(&display_lock);
}

int display_screen(struct vm *vm, struct display_screen *out)
{
	display_screen_fn fn = NULL;
	void *opaque = NULL;

	pthread_mutex_lock(&display_lock);
	if (provider.vm == vm) {
		fn = provider.fn;
		opaque = provider.opaque;
	}
	pthread_mutex_unlock(&display_lock);
	return fn ? fn(opaque, out) : -1;
}
