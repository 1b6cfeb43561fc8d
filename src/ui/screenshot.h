/*
 * Screenshots: the display's current picture written as a PNG file. The
 * file appears complete or not at all (temporary beside it, fsync, rename).
 */
#ifndef HYVE_SCREENSHOT_H
#define HYVE_SCREENSHOT_H

#include <stddef.h>

struct vm;

/* 0, or -1 with a one-line reason in err. */
int screenshot_png(struct vm *vm, const char *path, char *err, size_t errlen);

#endif
