/*
 * VNC server for a display device, on neatvnc. The server runs on hyve's
 * event loop: aml's fd is watched there, and a ~30 Hz timer asks the
 * device for its scanout and the pages the guest wrote since the last
 * tick (KVM dirty log), which are compared against a shadow copy so only
 * changed rows become damage. A static screen costs one dirty-log fetch
 * per tick and no pixel work.
 */
#ifndef HYVE_VNC_H
#define HYVE_VNC_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct vnc;

struct vnc_surface {
	const uint8_t *mem;  /* framebuffer memory (stays mapped while the server lives) */
	uint64_t mem_size;
	uint64_t offset;     /* first visible byte inside mem */
	uint32_t width, height, stride, bpp; /* bpp 0: nothing to show (display off or bad mode) */
};

struct vnc_source {
	/*
	 * Fills the current scanout and the dirty page bitmap of mem (one bit
	 * per 4 KiB page, cleared by the call). Returns false when the dirty
	 * log is unavailable: everything visible is then compared.
	 */
	bool (*scanout)(void *opaque, struct vnc_surface *s, uint64_t *dirty);
	void *opaque;
	uint64_t mem_size;   /* bytes of framebuffer memory the bitmap covers */
};

struct vnc_options {
	const char *unix_path; /* listen on this UNIX socket, or else on */
	const char *tcp_addr;  /* tcp_addr:tcp_port */
	uint16_t tcp_port;
	const char *name;      /* desktop name */
};

/* Listens and hooks into vm->loop; NULL after logging (address in use, ...). */
struct vnc *vnc_open(struct vm *vm, const struct vnc_options *o, const struct vnc_source *src);
/* Blocks until a client has connected (the `wait` option); 0 or -1. */
int vnc_wait_client(struct vnc *v);
void vnc_close(struct vnc *v);

struct vnc_stats {
	uint64_t ticks, dirty_pages, bytes_compared, damaged_rows, frames;
};
void vnc_get_stats(struct vnc *v, struct vnc_stats *out);

#endif
