/*
 * The guest's display as the rest of hyve sees it: a display device
 * registers a provider; direct Linux boot asks it for the linear
 * framebuffer to describe in boot_params.screen_info, and the control
 * socket asks for the current picture (screenshots) and the VNC server's
 * counters, without knowing the device.
 */
#ifndef HYVE_DISPLAY_H
#define HYVE_DISPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

struct display_screen {
	uint64_t base;      /* guest physical address of the linear framebuffer */
	uint64_t size;      /* bytes of framebuffer memory */
	uint32_t width, height;
	uint32_t stride;    /* bytes per line */
	uint32_t bpp;       /* 32: x8r8g8b8 little endian */
	/* VGA text mode instead (fbuf vga=on): cells, font height, cursor cell. */
	bool text;
	uint32_t cols, rows, font_height, cursor_x, cursor_y;
};

/* What the display shows now. */
struct display_surface {
	const uint8_t *mem;  /* framebuffer memory (stays mapped while the device lives) */
	uint64_t mem_size;
	uint64_t offset;     /* first visible byte inside mem */
	uint32_t width, height, stride, bpp; /* bpp 0: nothing to show (display off or bad mode) */
};

/* The VNC server's counters (ui/vnc.c documents them). */
struct display_vnc_stats {
	uint64_t ticks, dirty_pages, bytes_compared, tiles_sent, bytes_sent;
	unsigned clients;
};

struct display_provider {
	int (*screen)(void *opaque, struct display_screen *out);
	/* The current scanout, without touching any dirty log. */
	void (*surface)(void *opaque, struct display_surface *out);
	void *opaque;
	/* The device's VNC server counters; NULL when it has none. */
	void (*vnc_stats)(void *opaque, struct display_vnc_stats *out);
};

/* The VM's display registry, created with the VM (vm_create) before any device; 0 or -1. */
int display_init(struct vm *vm);
void display_fini(struct vm *vm);
/* One display per VM: a second registration fails (-1 after logging). */
int display_register(struct vm *vm, const struct display_provider *p);
void display_unregister(struct vm *vm);
/* 0 and *out filled when the VM has a display, else -1. */
int display_screen(struct vm *vm, struct display_screen *out);
/*
 * Copies the visible picture as 8-bit RGB rows (w*h*3 bytes, malloc'd into
 * *rgb). 0, or -1 with a reason in err (no display, display off, ...).
 */
int display_capture_rgb(struct vm *vm, uint8_t **rgb, uint32_t *w, uint32_t *h, char *err, size_t errlen);
/* true and *out filled when the VM's display has a VNC server. */
bool display_vnc_stats(struct vm *vm, struct display_vnc_stats *out);

#endif
