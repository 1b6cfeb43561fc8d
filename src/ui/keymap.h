/*
 * Key code conversions for the VNC server: what RFB clients send, to the
 * Linux evdev codes core/input.h routes. 0 means "no such key".
 */
#ifndef HYVE_KEYMAP_H
#define HYVE_KEYMAP_H

#include <stdbool.h>
#include <stdint.h>

/*
 * A QEMU extended key event code ("qnum", as QEMU's keycodemapdb numbers
 * them): the XT set 1 make code, with 0x80 added for E0-prefixed keys
 * (0x9c KP Enter, 0xb8 Right Alt, 0xc6 Pause).
 */
unsigned keymap_qnum_to_evdev(uint32_t qnum);

/*
 * An X11 keysym, for a US layout. *needs_shift (may be NULL) tells
 * whether the character needs Shift on that layout ('A', '!', ...).
 */
unsigned keymap_keysym_to_evdev(uint32_t keysym, bool *needs_shift);

#endif
