/*
 * State payloads as CBOR via libcbor. The writer keeps one indefinite map
 * per open nesting level (they grow as fields arrive) and turns each into
 * a definite map when it closes: the output has definite lengths only,
 * which is all the reader accepts.
 *
 * The reader runs on snapshot files, i.e. untrusted input: before libcbor
 * sees a buffer, a bounded scan checks that it is exactly one well-formed,
 * definite-length item, nested at most STATE_MAX_DEPTH deep, whose maps all
 * have text keys and whose declared counts fit in the remaining bytes (so a
 * forged header cannot make libcbor allocate gigabytes or recurse deeply).
 */
#include "state.h"

#include <cbor.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define STATE_MAX_DEPTH 16

struct state_writer {
	cbor_item_t *maps[STATE_MAX_DEPTH]; /* open maps; [0] is the root */
	cbor_item_t *keys[STATE_MAX_DEPTH]; /* key of each nested map in its parent */
	unsigned depth;
	const char *error; /* sticky: the first failure */
};

struct state_reader {
	cbor_item_t *root;
	cbor_item_t *maps[STATE_MAX_DEPTH]; /* entered maps; [0] is the root */
	unsigned depth;
};

/* ---- writer ---- */

static void writer_fail(struct state_writer *w, const char *why)
{
	if (!w->error)
		w->error = why;
}

struct state_writer *state_writer_new(void)
{
	struct state_writer *w = calloc(1, sizeof(*w));

	if (!w) {
		log_error("out of memory for a state writer");
		return NULL;
	}
	w->maps[0] = cbor_new_indefinite_map();
	if (!w->maps[0]) {
		free(w);
		log_error("out of memory for a state writer");
		return NULL;
	}
	w->depth = 1;
	return w;
}

void state_writer_free(struct state_writer *w)
{
	if (!w)
		return;
	for (unsigned i = 0; i < w->depth; i++) {
		cbor_decref(&w->maps[i]);
		if (w->keys[i])
			cbor_decref(&w->keys[i]);
	}
	free(w);
}

static bool has_key(const cbor_item_t *map, const char *key, size_t len)
{
	struct cbor_pair *pairs = cbor_map_handle(map);

	for (size_t i = 0; i < cbor_map_size(map); i++)
		if (cbor_string_length(pairs[i].key) == len && !memcmp(cbor_string_handle(pairs[i].key), key, len))
			return true;
	return false;
}

/* Checks key before a put; false after recording why the put cannot happen. */
static bool writer_ready(struct state_writer *w, const char *key)
{
	if (!w || w->error)
		return false;
	if (!key || !*key) {
		writer_fail(w, "empty state key");
		return false;
	}
	if (has_key(w->maps[w->depth - 1], key, strlen(key))) {
		writer_fail(w, "duplicate state key");
		return false;
	}
	return true;
}

/* Adds key: value to the innermost open map; takes the reference on value. */
static void put_item(struct state_writer *w, const char *key, cbor_item_t *value)
{
	cbor_item_t *k = value ? cbor_build_string(key) : NULL;

	if (!k || !cbor_map_add(w->maps[w->depth - 1], (struct cbor_pair){ .key = k, .value = value }))
		writer_fail(w, "out of memory");
	if (k)
		cbor_decref(&k);
	if (value)
		cbor_decref(&value);
}

/* The smallest encoding of an unsigned or negative (-1 - n) integer. */
static cbor_item_t *build_int(uint64_t n, bool negative)
{
	if (n <= UINT8_MAX)
		return negative ? cbor_build_negint8((uint8_t)n) : cbor_build_uint8((uint8_t)n);
	if (n <= UINT16_MAX)
		return negative ? cbor_build_negint16((uint16_t)n) : cbor_build_uint16((uint16_t)n);
	if (n <= UINT32_MAX)
		return negative ? cbor_build_negint32((uint32_t)n) : cbor_build_uint32((uint32_t)n);
	return negative ? cbor_build_negint64(n) : cbor_build_uint64(n);
}

void state_put_u64(struct state_writer *w, const char *key, uint64_t v)
{
	if (writer_ready(w, key))
		put_item(w, key, build_int(v, false));
}

void state_put_i64(struct state_writer *w, const char *key, int64_t v)
{
	if (!writer_ready(w, key))
		return;
	/* CBOR negative integers store -1 - v, which fits in 63 bits even for INT64_MIN. */
	if (v < 0)
		put_item(w, key, build_int((uint64_t)(-(v + 1)), true));
	else
		put_item(w, key, build_int((uint64_t)v, false));
}

void state_put_bool(struct state_writer *w, const char *key, bool v)
{
	if (writer_ready(w, key))
		put_item(w, key, cbor_build_bool(v));
}

void state_put_str(struct state_writer *w, const char *key, const char *v)
{
	if (!writer_ready(w, key))
		return;
	if (!v) {
		writer_fail(w, "NULL state string");
		return;
	}
	put_item(w, key, cbor_build_stringn(v, strlen(v)));
}

void state_put_bytes(struct state_writer *w, const char *key, const void *data, size_t len)
{
	static const uint8_t empty;

	if (!writer_ready(w, key))
		return;
	if (!data && len) {
		writer_fail(w, "NULL state bytes");
		return;
	}
	put_item(w, key, cbor_build_bytestring(len ? data : &empty, len));
}

void state_begin_map(struct state_writer *w, const char *key)
{
	if (!writer_ready(w, key))
		return;
	if (w->depth == STATE_MAX_DEPTH) {
		writer_fail(w, "state maps nested too deep");
		return;
	}
	cbor_item_t *k = cbor_build_string(key);
	cbor_item_t *map = k ? cbor_new_indefinite_map() : NULL;
	if (!map) {
		if (k)
			cbor_decref(&k);
		writer_fail(w, "out of memory");
		return;
	}
	w->keys[w->depth] = k;
	w->maps[w->depth] = map;
	w->depth++;
}

/* A definite-length copy of a map built as an indefinite one; NULL on failure. */
static cbor_item_t *definite_map(const cbor_item_t *map)
{
	size_t n = cbor_map_size(map);
	struct cbor_pair *pairs = cbor_map_handle(map);
	cbor_item_t *out = cbor_new_definite_map(n);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!cbor_map_add(out, pairs[i])) {
			cbor_decref(&out);
			return NULL;
		}
	return out;
}

void state_end_map(struct state_writer *w)
{
	if (!w || w->error)
		return;
	if (w->depth <= 1) {
		writer_fail(w, "state_end_map without state_begin_map");
		return;
	}
	w->depth--;
	cbor_item_t *map = w->maps[w->depth];
	cbor_item_t *key = w->keys[w->depth];
	w->maps[w->depth] = NULL;
	w->keys[w->depth] = NULL;
	cbor_item_t *def = definite_map(map);
	if (!def || !cbor_map_add(w->maps[w->depth - 1], (struct cbor_pair){ .key = key, .value = def }))
		writer_fail(w, "out of memory");
	if (def)
		cbor_decref(&def);
	cbor_decref(&map);
	cbor_decref(&key);
}

int state_writer_finish(struct state_writer *w, uint8_t **buf, size_t *len)
{
	if (!w)
		return -1;
	if (!w->error && w->depth != 1)
		writer_fail(w, "state map left open");
	cbor_item_t *root = w->error ? NULL : definite_map(w->maps[0]);
	if (!root)
		writer_fail(w, "out of memory");
	unsigned char *out = NULL;
	size_t cap = 0;
	size_t n = root ? cbor_serialize_alloc(root, &out, &cap) : 0;
	if (root)
		cbor_decref(&root);
	if (!n) {
		writer_fail(w, "out of memory");
		free(out);
		log_error("cannot encode state: %s", w->error);
		return -1;
	}
	*buf = out;
	*len = n;
	return 0;
}

/* ---- reader: pre-validation ---- */

struct scan {
	const uint8_t *p;
	size_t len, pos;
};

enum { MAJOR_UINT, MAJOR_NEGINT, MAJOR_BYTES, MAJOR_TEXT, MAJOR_ARRAY, MAJOR_MAP, MAJOR_TAG, MAJOR_SIMPLE };

static size_t remaining(const struct scan *s)
{
	return s->len - s->pos;
}

struct head {
	unsigned major, info;
	uint64_t arg;
};

/* Reads an initial byte and its argument; rejects reserved and indefinite forms. */
static int scan_head(struct scan *s, struct head *h)
{
	if (!remaining(s))
		return -1;
	uint8_t b = s->p[s->pos++];
	h->major = b >> 5;
	h->info = b & 0x1F;
	if (h->info < 24) {
		h->arg = h->info;
		return 0;
	}
	if (h->info > 27)
		return -1;
	size_t n = (size_t)1 << (h->info - 24);
	if (n > remaining(s))
		return -1;
	h->arg = 0;
	for (size_t i = 0; i < n; i++)
		h->arg = h->arg << 8 | s->p[s->pos++];
	return 0;
}

static int scan_skip(struct scan *s, uint64_t n)
{
	if (n > remaining(s))
		return -1;
	s->pos += (size_t)n;
	return 0;
}

/*
 * Of major type 7, false/true/null/undefined and the three float widths:
 * libcbor refuses the unassigned simple values anyway.
 */
static bool simple_known(unsigned info)
{
	return (info >= 20 && info <= 23) || (info >= 25 && info <= 27);
}

static int scan_item(struct scan *s, unsigned depth);

static int scan_map(struct scan *s, uint64_t pairs, unsigned depth)
{
	/* Each pair takes at least two bytes. */
	if (pairs > remaining(s) / 2)
		return -1;
	for (uint64_t i = 0; i < pairs; i++) {
		struct head key;
		if (scan_head(s, &key) < 0 || key.major != MAJOR_TEXT || scan_skip(s, key.arg) < 0)
			return -1;
		if (scan_item(s, depth) < 0)
			return -1;
	}
	return 0;
}

static int scan_array(struct scan *s, uint64_t count, unsigned depth)
{
	/* Each element takes at least one byte. */
	if (count > remaining(s))
		return -1;
	for (uint64_t i = 0; i < count; i++)
		if (scan_item(s, depth) < 0)
			return -1;
	return 0;
}

static int scan_item(struct scan *s, unsigned depth)
{
	struct head h;

	if (scan_head(s, &h) < 0)
		return -1;
	switch (h.major) {
	case MAJOR_UINT:
	case MAJOR_NEGINT:
		return 0;
	case MAJOR_SIMPLE:
		return simple_known(h.info) ? 0 : -1;
	case MAJOR_BYTES:
	case MAJOR_TEXT:
		return scan_skip(s, h.arg);
	default:
		break;
	}
	/* Containers: each level costs libcbor a recursion when it frees the tree. */
	if (depth == STATE_MAX_DEPTH)
		return -1;
	if (h.major == MAJOR_MAP)
		return scan_map(s, h.arg, depth + 1);
	if (h.major == MAJOR_ARRAY)
		return scan_array(s, h.arg, depth + 1);
	return scan_item(s, depth + 1); /* a tag and its content */
}

bool state_payload_well_formed(const uint8_t *buf, size_t len)
{
	struct scan s = { .p = buf, .len = len };

	if (!buf || !len || buf[0] >> 5 != MAJOR_MAP)
		return false;
	return scan_item(&s, 0) == 0 && s.pos == len;
}

/* ---- reader ---- */

struct state_reader *state_reader_new(const uint8_t *buf, size_t len)
{
	struct cbor_load_result res;

	if (!state_payload_well_formed(buf, len)) {
		log_debug("state payload is not a well-formed CBOR map");
		return NULL;
	}
	cbor_item_t *root = cbor_load(buf, len, &res);
	if (!root || res.error.code != CBOR_ERR_NONE || res.read != len || !cbor_isa_map(root) ||
	    !cbor_map_is_definite(root)) {
		log_debug("state payload rejected by the CBOR decoder at byte %zu", res.error.position);
		if (root)
			cbor_decref(&root);
		return NULL;
	}
	struct state_reader *r = calloc(1, sizeof(*r));
	if (!r) {
		cbor_decref(&root);
		return NULL;
	}
	r->root = root;
	r->maps[0] = root;
	r->depth = 1;
	return r;
}

void state_reader_free(struct state_reader *r)
{
	if (!r)
		return;
	cbor_decref(&r->root);
	free(r);
}

/* The value under key in the current map, or NULL; the first of duplicates wins. */
static cbor_item_t *lookup(struct state_reader *r, const char *key)
{
	if (!r || !key)
		return NULL;
	const cbor_item_t *map = r->maps[r->depth - 1];
	struct cbor_pair *pairs = cbor_map_handle(map);
	size_t klen = strlen(key);

	for (size_t i = 0; i < cbor_map_size(map); i++) {
		cbor_item_t *k = pairs[i].key;
		if (cbor_isa_string(k) && cbor_string_is_definite(k) && cbor_string_length(k) == klen &&
		    !memcmp(cbor_string_handle(k), key, klen))
			return pairs[i].value;
	}
	return NULL;
}

int state_get_u64(struct state_reader *r, const char *key, uint64_t *out)
{
	cbor_item_t *v = lookup(r, key);

	if (!v || !cbor_isa_uint(v))
		return -1;
	*out = cbor_get_int(v);
	return 0;
}

int state_get_u8(struct state_reader *r, const char *key, uint8_t max, uint8_t *out)
{
	uint64_t v;

	if (state_get_u64(r, key, &v) < 0 || v > max)
		return -1;
	*out = (uint8_t)v;
	return 0;
}

int state_get_i64(struct state_reader *r, const char *key, int64_t *out)
{
	cbor_item_t *v = lookup(r, key);

	if (!v || !(cbor_isa_uint(v) || cbor_isa_negint(v)))
		return -1;
	uint64_t n = cbor_get_int(v);
	if (n > INT64_MAX)
		return -1;
	*out = cbor_isa_negint(v) ? -1 - (int64_t)n : (int64_t)n;
	return 0;
}

int state_get_bool(struct state_reader *r, const char *key, bool *out)
{
	cbor_item_t *v = lookup(r, key);

	/* Check the width first: libcbor asserts on control queries of floats. */
	if (!v || !cbor_isa_float_ctrl(v) || cbor_float_get_width(v) != CBOR_FLOAT_0 || !cbor_is_bool(v))
		return -1;
	*out = cbor_get_bool(v);
	return 0;
}

int state_get_str(struct state_reader *r, const char *key, char *out, size_t size)
{
	cbor_item_t *v = lookup(r, key);

	if (!v || !cbor_isa_string(v) || !cbor_string_is_definite(v))
		return -1;
	size_t len = cbor_string_length(v);
	const unsigned char *s = cbor_string_handle(v);
	if (len >= size || (len && memchr(s, 0, len)))
		return -1;
	if (len)
		memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

static cbor_item_t *lookup_bytes(struct state_reader *r, const char *key)
{
	cbor_item_t *v = lookup(r, key);

	return v && cbor_isa_bytestring(v) && cbor_bytestring_is_definite(v) ? v : NULL;
}

int state_get_bytes(struct state_reader *r, const char *key, void *out, size_t len)
{
	cbor_item_t *v = lookup_bytes(r, key);

	if (!v || cbor_bytestring_length(v) != len)
		return -1;
	if (len)
		memcpy(out, cbor_bytestring_handle(v), len);
	return 0;
}

int state_get_bytes_var(struct state_reader *r, const char *key, void *out, size_t max, size_t *len)
{
	cbor_item_t *v = lookup_bytes(r, key);

	if (!v || cbor_bytestring_length(v) > max)
		return -1;
	*len = cbor_bytestring_length(v);
	if (*len)
		memcpy(out, cbor_bytestring_handle(v), *len);
	return 0;
}

size_t state_map_size(struct state_reader *r)
{
	return cbor_map_size(r->maps[r->depth - 1]);
}

int state_key_at(struct state_reader *r, size_t i, char *out, size_t size)
{
	const cbor_item_t *map = r->maps[r->depth - 1];
	cbor_item_t *k;
	size_t len;

	if (i >= cbor_map_size(map))
		return -1;
	k = cbor_map_handle(map)[i].key;
	if (!cbor_isa_string(k) || !cbor_string_is_definite(k))
		return -1;
	len = cbor_string_length(k);
	if (len >= size || (len && memchr(cbor_string_handle(k), 0, len)))
		return -1;
	memcpy(out, cbor_string_handle(k), len);
	out[len] = '\0';
	return 0;
}

int state_enter_map(struct state_reader *r, const char *key)
{
	cbor_item_t *v = lookup(r, key);

	if (!v || !cbor_isa_map(v) || !cbor_map_is_definite(v) || r->depth == STATE_MAX_DEPTH)
		return -1;
	r->maps[r->depth++] = v;
	return 0;
}

void state_leave_map(struct state_reader *r)
{
	if (r && r->depth > 1)
		r->depth--;
}
