/*
 * What the i8042 controller (dev/i8042.c) and the PS/2 devices behind it
 * (dev/ps2kbd.c, dev/ps2mouse.c) share: byte queues and the controller's
 * lock.
 *
 * A PS/2 device has no lock of its own: the controller's mutex guards the
 * controller and both devices, since every byte crosses the controller.
 * Host input (the input router's sink callbacks) enters through
 * ps2_host.lock(), queues bytes, and leaves through ps2_host.unlock(),
 * which moves the next byte into the controller's output buffer and
 * raises the IRQ before dropping the mutex.
 */
#ifndef HYVE_PS2_H
#define HYVE_PS2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "snapshot/state.h"

#define PS2_QUEUE_SIZE 256

/* PS/2 protocol bytes both devices send. */
#define PS2_ACK 0xFA
#define PS2_RESEND 0xFE
#define PS2_BAT_OK 0xAA

struct ps2_queue {
	uint8_t buf[PS2_QUEUE_SIZE];
	unsigned head, count;
};

struct ps2_host {
	void (*lock)(void *ctx);
	void (*unlock)(void *ctx); /* delivers what was queued, then unlocks */
	void *ctx;
};

static inline unsigned ps2_queue_room(const struct ps2_queue *q)
{
	return PS2_QUEUE_SIZE - q->count;
}

/* False (and nothing queued) when full. */
static inline bool ps2_queue_push(struct ps2_queue *q, uint8_t b)
{
	if (q->count == PS2_QUEUE_SIZE)
		return false;
	q->buf[(q->head + q->count) % PS2_QUEUE_SIZE] = b;
	q->count++;
	return true;
}

static inline bool ps2_queue_pop(struct ps2_queue *q, uint8_t *b)
{
	if (!q->count)
		return false;
	*b = q->buf[q->head];
	q->head = (q->head + 1) % PS2_QUEUE_SIZE;
	q->count--;
	return true;
}

static inline void ps2_queue_clear(struct ps2_queue *q)
{
	q->head = q->count = 0;
}

/* The queued bytes in order, for snapshots; returns how many. */
static inline size_t ps2_queue_linear(const struct ps2_queue *q, uint8_t *out)
{
	for (unsigned i = 0; i < q->count; i++)
		out[i] = q->buf[(q->head + i) % PS2_QUEUE_SIZE];
	return q->count;
}

static inline void ps2_queue_load(struct ps2_queue *q, const uint8_t *in, size_t n)
{
	ps2_queue_clear(q);
	memcpy(q->buf, in, n < PS2_QUEUE_SIZE ? n : PS2_QUEUE_SIZE);
	q->count = (unsigned)(n < PS2_QUEUE_SIZE ? n : PS2_QUEUE_SIZE);
}

/* The queue saved under key (any length up to the queue's size); -1 when missing or longer. */
static inline int ps2_queue_restore(struct state_reader *r, const char *key, struct ps2_queue *q)
{
	uint8_t buf[PS2_QUEUE_SIZE];
	size_t n;

	if (state_get_bytes_var(r, key, buf, sizeof(buf), &n) < 0)
		return -1;
	ps2_queue_load(q, buf, n);
	return 0;
}

#endif
