#include "display.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "vm.h"

/* A VM's display provider (at most one). Capture runs under the lock so the device cannot go away meanwhile. */
struct display_registry {
	pthread_mutex_t lock;
	bool registered;
	struct display_provider provider;
};

int display_init(struct vm *vm)
{
	struct display_registry *d = calloc(1, sizeof(*d));

	if (!d)
		return -1;
	pthread_mutex_init(&d->lock, NULL);
	vm->display = d;
	return 0;
}

void display_fini(struct vm *vm)
{
	struct display_registry *d = vm->display;

	if (!d)
		return;
	pthread_mutex_destroy(&d->lock);
	free(d);
	vm->display = NULL;
}

int display_register(struct vm *vm, const struct display_provider *p)
{
	struct display_registry *d = vm->display;
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	if (d->registered) {
		log_error("only one display device is supported");
		rc = -1;
	} else {
		d->registered = true;
		d->provider = *p;
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

void display_unregister(struct vm *vm)
{
	struct display_registry *d = vm->display;

	pthread_mutex_lock(&d->lock);
	d->registered = false;
	d->provider = (struct display_provider){ 0 };
	pthread_mutex_unlock(&d->lock);
}

int display_screen(struct vm *vm, struct display_screen *out)
{
	struct display_registry *d = vm->display;
	int rc = -1;

	pthread_mutex_lock(&d->lock);
	if (d->registered && d->provider.screen)
		rc = d->provider.screen(d->provider.opaque, out);
	pthread_mutex_unlock(&d->lock);
	return rc;
}

bool display_vnc_stats(struct vm *vm, struct display_vnc_stats *out)
{
	struct display_registry *d = vm->display;
	bool have = false;

	pthread_mutex_lock(&d->lock);
	if (d->registered && d->provider.vnc_stats) {
		d->provider.vnc_stats(d->provider.opaque, out);
		have = true;
	}
	pthread_mutex_unlock(&d->lock);
	return have;
}

static bool surface_ok(const struct display_surface *s)
{
	return s->mem && s->bpp == 32 && s->width && s->height && s->stride >= (uint64_t)s->width * 4 &&
	       s->offset + (uint64_t)s->stride * (s->height - 1) + (uint64_t)s->width * 4 <= s->mem_size;
}

static void to_rgb(const struct display_surface *s, uint8_t *rgb)
{
	for (uint32_t y = 0; y < s->height; y++) {
		const uint8_t *src = s->mem + s->offset + (uint64_t)y * s->stride;
		for (uint32_t x = 0; x < s->width; x++, src += 4, rgb += 3) {
			rgb[0] = src[2];
			rgb[1] = src[1];
			rgb[2] = src[0];
		}
	}
}

int display_capture_rgb(struct vm *vm, uint8_t **rgb, uint32_t *w, uint32_t *h, char *err, size_t errlen)
{
	struct display_registry *d = vm->display;
	struct display_surface s = { 0 };
	int rc = -1;

	pthread_mutex_lock(&d->lock);
	if (!d->registered || !d->provider.surface) {
		snprintf(err, errlen, "the VM has no display device");
		goto out;
	}
	d->provider.surface(d->provider.opaque, &s);
	if (!surface_ok(&s)) {
		snprintf(err, errlen, s.bpp && s.bpp != 32 ? "the guest's display mode (%u bits per pixel) cannot be captured"
							   : "the display is off",
			 s.bpp);
		goto out;
	}
	if (!(*rgb = malloc((size_t)s.width * s.height * 3))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	to_rgb(&s, *rgb);
	*w = s.width;
	*h = s.height;
	rc = 0;
out:
	pthread_mutex_unlock(&d->lock);
	return rc;
}
