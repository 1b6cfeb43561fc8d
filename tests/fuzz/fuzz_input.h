/*
 * What the device and option harnesses share: reading operations out of the
 * fuzzer's bytes, the invariant check, and the snapshot moves every device
 * harness makes (its own state round trip, that state with fuzzer-chosen
 * bytes patched in, and fuzzer bytes taken as a section outright).
 */
#ifndef HYVE_FUZZ_INPUT_H
#define HYVE_FUZZ_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/state.h"

/* Names the broken invariant when run by hand on a finding (libFuzzer closes stderr while fuzzing with -close_fd_mask). */
#define CHECK(x)                                                                                 \
	do {                                                                                     \
		if (!(x)) {                                                                      \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #x); \
			__builtin_trap();                                                        \
		}                                                                                \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct cursor {
	const uint8_t *p;
	size_t n;
};

/* Little-endian value of `bytes` bytes (1-4); missing bytes read as 0. */
static inline uint32_t take(struct cursor *c, unsigned bytes)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < bytes; i++) {
		if (c->n) {
			v |= (uint32_t)c->p[0] << (8 * i);
			c->p++, c->n--;
		}
	}
	return v;
}

/* The next up to `max` bytes, length chosen by the input; *len receives it. */
static inline const uint8_t *take_bytes(struct cursor *c, size_t max, size_t *len)
{
	const uint8_t *p;
	size_t n = take(c, 2);

	n = n < max ? n : max;
	n = n < c->n ? n : c->n;
	p = c->p;
	c->p += n, c->n -= n;
	*len = n;
	return p;
}

/* Encodes what save() writes; NULL when the writer fails. *len receives the size. */
static inline uint8_t *fuzz_save(void (*save)(void *opaque, struct state_writer *w), void *opaque, size_t *len)
{
	struct state_writer *w = state_writer_new();
	uint8_t *buf = NULL;

	CHECK(w);
	save(opaque, w);
	if (state_writer_finish(w, &buf, len) < 0)
		buf = NULL;
	state_writer_free(w);
	return buf;
}

/* restore() on those bytes, or -2 when they are not a state map at all. */
static inline int fuzz_restore(int (*restore)(void *opaque, struct state_reader *r), void *opaque,
			       const uint8_t *buf, size_t len)
{
	struct state_reader *r = state_reader_new(buf, len);
	int rc;

	if (!r)
		return -2;
	rc = restore(opaque, r);
	state_reader_free(r);
	return rc;
}

/*
 * Saves, puts the device back to power-on (reset), restores what was saved
 * (which must succeed) and saves again: both encodings must be the same
 * bytes, or the restore lost or changed state. Then, when the input asks
 * for it, patches up to 8 bytes of the encoding at input-chosen places and
 * restores that: well-formed maps with values no guest could have
 * produced, which the restore must refuse or survive.
 */
static inline void fuzz_state_roundtrip(void (*save)(void *opaque, struct state_writer *w),
					int (*restore)(void *opaque, struct state_reader *r),
					void (*reset)(void *opaque), void *opaque, struct cursor *c)
{
	size_t len, len2;
	uint8_t *buf = fuzz_save(save, opaque, &len), *again;
	unsigned patches = take(c, 1);

	if (!buf)
		return;
	reset(opaque);
	CHECK(fuzz_restore(restore, opaque, buf, len) == 0);
	again = fuzz_save(save, opaque, &len2);
	CHECK(again && len2 == len && memcmp(again, buf, len) == 0);
	free(again);
	if (patches & 0x80) {
		for (unsigned i = 0; i < (patches & 7) + 1 && len; i++) {
			size_t at = take(c, 2) % len;
			buf[at] = (uint8_t)take(c, 1);
		}
		(void)fuzz_restore(restore, opaque, buf, len);
	}
	free(buf);
}

#endif
