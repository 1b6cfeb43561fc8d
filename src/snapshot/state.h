/*
 * Self-describing state payloads: each device section is a map of named
 * fields (encoded as CBOR). Writers add fields; readers look fields up by
 * name, so added fields do not break older readers and missing fields let
 * the device choose a default.
 */
#ifndef HYVE_STATE_H
#define HYVE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct state_writer;
struct state_reader;

struct state_writer *state_writer_new(void);
void state_writer_free(struct state_writer *w);
/* Encodes the map; *buf is malloc'ed. 0 or -1. */
int state_writer_finish(struct state_writer *w, uint8_t **buf, size_t *len);

void state_put_u64(struct state_writer *w, const char *key, uint64_t v);
void state_put_i64(struct state_writer *w, const char *key, int64_t v);
void state_put_bool(struct state_writer *w, const char *key, bool v);
void state_put_str(struct state_writer *w, const char *key, const char *v);
void state_put_bytes(struct state_writer *w, const char *key, const void *data, size_t len);
/* Nested map: fields put until state_end_map() go inside it. */
void state_begin_map(struct state_writer *w, const char *key);
void state_end_map(struct state_writer *w);

/*
 * Is buf one well-formed, definite CBOR map within the reader's limits
 * (nesting depth, lengths within the buffer)? Anything that decodes
 * outside input with libcbor checks this first: libcbor itself recurses
 * once per nesting level.
 */
bool state_payload_well_formed(const uint8_t *buf, size_t len);
/* Parses a section payload; NULL when it is not a well-formed map. */
struct state_reader *state_reader_new(const uint8_t *buf, size_t len);
void state_reader_free(struct state_reader *r);

/* 0 found, -1 missing or of another type (the caller picks a default or fails). */
int state_get_u64(struct state_reader *r, const char *key, uint64_t *out);
int state_get_i64(struct state_reader *r, const char *key, int64_t *out);
/* An unsigned integer no larger than max (a register, an index): -1 when missing or larger. */
int state_get_u8(struct state_reader *r, const char *key, uint8_t max, uint8_t *out);
int state_get_bool(struct state_reader *r, const char *key, bool *out);
/* Copies a string into out (NUL-terminated); -1 when missing or too long. */
int state_get_str(struct state_reader *r, const char *key, char *out, size_t size);
/* Requires exactly `len` bytes. */
int state_get_bytes(struct state_reader *r, const char *key, void *out, size_t len);
/* Any length up to max; *len receives it. */
int state_get_bytes_var(struct state_reader *r, const char *key, void *out, size_t max, size_t *len);
/* Number of fields in the current map, and the key of field i (copied into out). */
size_t state_map_size(struct state_reader *r);
int state_key_at(struct state_reader *r, size_t i, char *out, size_t size);
/* Enters a nested map (0) until state_leave_map(). */
int state_enter_map(struct state_reader *r, const char *key);
void state_leave_map(struct state_reader *r);

#endif
