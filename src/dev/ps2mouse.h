/*
 * PS/2 mouse behind the i8042's auxiliary port (dev/i8042.c owns it and
 * its lock, see dev/ps2.h): a standard mouse (ID 0) that becomes an
 * IntelliMouse (ID 3, wheel) or IntelliMouse Explorer (ID 4, wheel and
 * buttons 4/5) after the sample-rate knocks drivers use to detect them.
 */
#ifndef HYVE_PS2MOUSE_H
#define HYVE_PS2MOUSE_H

#include <stdbool.h>
#include <stdint.h>

#include "dev/ps2.h"

struct vm;
struct ps2mouse;
struct state_writer;
struct state_reader;
struct input_pointer_event;

/* Registers the mouse's relative pointer sink; NULL when out of memory. */
struct ps2mouse *ps2mouse_new(struct vm *vm, const struct ps2_host *host);
void ps2mouse_free(struct ps2mouse *m);

/* The following run with the host lock held. */
void ps2mouse_reset(struct ps2mouse *m);
void ps2mouse_write(struct ps2mouse *m, uint8_t b);
bool ps2mouse_read(struct ps2mouse *m, uint8_t *b);
/* A relative event (x, y: pixels, y growing downwards), as the sink receives it. */
void ps2mouse_event(struct ps2mouse *m, const struct input_pointer_event *ev);
void ps2mouse_save(struct ps2mouse *m, struct state_writer *w);
int ps2mouse_restore(struct ps2mouse *m, struct state_reader *r);

#endif
