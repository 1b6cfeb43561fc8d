/*
 * PS/2 keyboard behind the i8042 (dev/i8042.c owns it and its lock, see
 * dev/ps2.h). Keys arrive as evdev codes through an input sink and leave
 * as scan code set 2 (or 1) bytes; commands from the guest arrive one
 * byte at a time.
 */
#ifndef HYVE_PS2KBD_H
#define HYVE_PS2KBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dev/ps2.h"

struct vm;
struct ps2kbd;
struct state_writer;
struct state_reader;

/* Registers the keyboard's input sink; NULL when out of memory. */
struct ps2kbd *ps2kbd_new(struct vm *vm, const struct ps2_host *host);
void ps2kbd_free(struct ps2kbd *k);

/* The following run with the host lock held. */
void ps2kbd_reset(struct ps2kbd *k);
/* A byte the controller sends to the keyboard. */
void ps2kbd_write(struct ps2kbd *k, uint8_t b);
/* The next byte the keyboard sends; false when it has none. */
bool ps2kbd_read(struct ps2kbd *k, uint8_t *b);
/* A key event (as the input sink receives it). */
void ps2kbd_key(struct ps2kbd *k, unsigned evdev_code, bool down);
/*
 * The LED state the guest set since the last call, to be reported with
 * input_set_leds() once the host lock is dropped; false when unchanged.
 */
bool ps2kbd_take_leds(struct ps2kbd *k, unsigned *leds);
/* Saves into / restores from the current map; restore: 0 or -1. */
void ps2kbd_save(struct ps2kbd *k, struct state_writer *w);
int ps2kbd_restore(struct ps2kbd *k, struct state_reader *r);

/*
 * The bytes for one key event in scan code set `set` (1 or 2); returns the
 * count (0 for an unknown key or a key without break codes being released).
 * `out` must hold 8 bytes.
 */
size_t ps2kbd_encode(unsigned set, unsigned evdev_code, bool down, uint8_t *out);
/* The i8042's set 2 to set 1 translation of one byte (F0 handled by the caller). */
uint8_t ps2kbd_translate(uint8_t set2);
/* Whether evdev_code is a key the keyboard has. */
bool ps2kbd_has_key(unsigned evdev_code);

#endif
