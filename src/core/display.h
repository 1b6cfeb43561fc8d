/*
 * The guest's display as boot code sees it: a display device registers a
 * provider, and direct Linux boot asks it for the linear framebuffer to
 * describe in boot_params.screen_info, without knowing the device.
 */
#ifndef HYVE_DISPLAY_H
#define HYVE_DISPLAY_H

#include <stdint.h>

struct vm;

struct display_screen {
	uint64_t base;      /* guest physical address of the linear framebuffer */
	uint64_t size;      /* bytes of framebuffer memory */
	uint32_t width, height;
	uint32_t stride;    /* bytes per line */
	uint32_t bpp;       /* 32: x8r8g8b8 little endian */
};

typedef int (*display_screen_fn)(void *opaque, struct display_screen *out);

/* One display per VM: a second registration fails (-1 after logging). */
int display_register(struct vm *vm, display_screen_fn fn, void *opaque);
void display_unregister(struct vm *vm);
/* 0 and *out filled when the VM has a display, else -1. */
int display_screen(struct vm *vm, struct display_screen *out);

#endif
