/*
 * VNC server for a display device: hyve's own RFB 3.3/3.7/3.8 server
 * (src/ui/rfb.[ch] for the protocol) on hyve's event loop. Why not
 * neatvnc: it offers no classic VNC authentication (needed for password=
 * with TigerVNC and noVNC) and no RFB 3.3 (needed by vncsnapshot).
 *
 * A ~30 Hz timer asks the device for its scanout and the pages the guest
 * wrote since the last tick (KVM dirty log); only those pages' rows are
 * compared against a shadow copy, so a static screen costs one dirty-log
 * fetch per tick and no pixel work, and only changed 64x64 tiles are sent.
 *
 * Threads: everything runs on the event loop thread. The keyboard LEDs a
 * guest sets reach clients (QEMU LED-state pseudo-encoding) on the next
 * tick.
 *
 * Clients that are not yet past the handshake are held on a short leash:
 * 10 s from accept to ClientInit (password and TLS included), at most 4
 * at a time apart from the 16 clients past it (a newcomer replaces the
 * oldest), and an address that gave a wrong password waits 1 s, 2 s, 4 s
 * ... up to 60 s before it may try again (src/ui/backoff.c). Every client
 * is read at most 16 KiB per wakeup. With TLS (src/ui/vnc_tls.c) only
 * VeNCrypt is offered.
 */
#ifndef HYVE_VNC_H
#define HYVE_VNC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/display.h"
#include "ui/vnc_tls.h"

struct vm;
struct vnc;

struct vnc_source {
	/*
	 * Fills the current scanout and, when dirty is not NULL, the dirty
	 * page bitmap of the memory (one bit per 4 KiB page, cleared by the
	 * call). Returns false when the dirty log is unavailable: everything
	 * visible is then compared.
	 */
	bool (*scanout)(void *opaque, struct display_surface *s, uint64_t *dirty);
	void *opaque;
	uint64_t mem_size;   /* bytes of framebuffer memory the bitmap covers */
};

struct vnc_options {
	const char *unix_path; /* listen on this UNIX socket, or else on */
	const char *tcp_addr;  /* tcp_addr:tcp_port */
	uint16_t tcp_port;
	const char *name;      /* desktop name */
	const char *password;  /* VNC authentication (at most 8 characters count); NULL: none */
	const struct vnc_tls_config *tls; /* NULL: no TLS; else only VeNCrypt, and anonymous TLS needs a password */
};

/* Listens and hooks into vm->loop; NULL after logging (address in use, ...). */
struct vnc *vnc_open(struct vm *vm, const struct vnc_options *o, const struct vnc_source *src);
/*
 * The `wait` option: the guest's vCPUs start only once a client is ready
 * (authenticated, ClientInit done). hyve runs meanwhile: signals, the
 * control socket and the listener are served (vm_hold_start()).
 */
void vnc_hold_start(struct vnc *v);
void vnc_close(struct vnc *v);

/*
 * Counters: ticks (refresh timer runs with a client connected),
 * dirty_pages (framebuffer pages the dirty log reported), bytes_compared
 * (against the shadow), tiles_sent (64x64 tiles), bytes_sent, clients.
 */
void vnc_get_stats(struct vnc *v, struct display_vnc_stats *out);

#endif
