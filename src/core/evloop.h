/*
 * The host-side event loop: one epoll set serviced by the main thread for
 * every host fd (serial backends, control socket, VNC). Callbacks run on
 * the loop thread; they must not block.
 */
#ifndef HYVE_EVLOOP_H
#define HYVE_EVLOOP_H

#include <stdint.h>

struct evloop;

/* events: EPOLLIN / EPOLLOUT / EPOLLHUP / EPOLLERR bits as reported. */
typedef void (*evloop_fn)(void *opaque, uint32_t events);

struct evloop *evloop_new(void);
void evloop_free(struct evloop *loop);
/* Watches fd for `events` (EPOLLIN, EPOLLOUT); 0 or -1. Safe from any thread. */
int evloop_add(struct evloop *loop, int fd, uint32_t events, evloop_fn fn, void *opaque);
int evloop_modify(struct evloop *loop, int fd, uint32_t events);
void evloop_del(struct evloop *loop, int fd);
/* Runs callbacks until evloop_stop(); returns 0 or -1 on a loop failure. */
int evloop_run(struct evloop *loop);
/* Makes evloop_run() return; safe from any thread and from signal handlers. */
void evloop_stop(struct evloop *loop);

#endif
