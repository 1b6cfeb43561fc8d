/*
 * Host backends for character devices (serial ports), chosen by a spec
 * string:
 *
 *   stdio               the terminal (raw mode while hyve runs) or whatever
 *                       stdin/stdout are when they are not a terminal
 *   file=PATH           output appended to PATH (created 0644); no input
 *   tcp=[ADDR:]PORT     listening TCP socket, 127.0.0.1 unless ADDR says
 *                       otherwise; one client at a time
 *   unix=PATH           listening UNIX stream socket; one client at a time
 *
 * Output to a socket without a client is dropped; output a slow client
 * cannot take is buffered up to 64 KiB, then dropped, so a vCPU never waits
 * on a network peer.
 *
 * Threads: input is read and delivered on the event-loop thread, never with
 * a chardev lock held, so the consumer may take its own lock in on_input and
 * may call chardev_write() and chardev_set_input_paused() with that lock held.
 */
#ifndef HYVE_CHARDEV_H
#define HYVE_CHARDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chardev;
struct evloop;

/* Delivers input bytes (loop thread); len never exceeds what room() allowed. */
typedef void (*chardev_input_fn)(void *opaque, const uint8_t *buf, size_t len);
/*
 * How many bytes the consumer can take now; the chardev reads no further,
 * so nothing is lost while the consumer is full. A consumer returning 0
 * must have paused input with chardev_set_input_paused(), or the loop
 * would spin on the readable fd. NULL means "anything".
 */
typedef size_t (*chardev_room_fn)(void *opaque);

/*
 * Opens the backend `spec` for the device called `name` (used in messages).
 * Input is watched on `loop` (may be NULL: no input). Returns NULL after one
 * log_error line naming the problem.
 */
struct chardev *chardev_open(const char *name, const char *spec, struct evloop *loop,
			     chardev_input_fn on_input, chardev_room_fn room, void *opaque);
/* Checks the form of spec without opening anything: 0, or -1 with a reason in err. */
int chardev_spec_check(const char *spec, char *err, size_t errlen);
/* 1 and the address it would listen on when spec is a tcp= backend, else 0. */
int chardev_spec_tcp_address(const char *spec, char *addr, size_t addrlen);
/* Best effort: never blocks on a socket; stdio and files get plain writes. */
void chardev_write(struct chardev *cd, const uint8_t *buf, size_t len);
/* Flow control: while paused no input is read, so none is lost. */
void chardev_set_input_paused(struct chardev *cd, bool paused);
/* Only while the loop is not running, or from the loop thread: callbacks may be in flight. */
void chardev_close(struct chardev *cd);

/*
 * Puts the terminal back as it was before stdio went raw. Idempotent and
 * async-signal-safe, for atexit and fatal-signal paths; also registered with
 * atexit() when stdio is opened on a terminal.
 */
void chardev_restore_terminal(void);

#endif
