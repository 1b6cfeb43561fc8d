#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "snapshot/state.h"

struct blob {
	uint8_t *buf;
	size_t len;
};

static struct blob finish(struct state_writer *w)
{
	struct blob b = { 0 };

	assert_int_equal(state_writer_finish(w, &b.buf, &b.len), 0);
	state_writer_free(w);
	return b;
}

static void assert_finish_fails(struct state_writer *w)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(state_writer_finish(w, &buf, &len), -1);
	assert_null(buf);
	state_writer_free(w);
}

static const uint64_t u64s[] = { 0, 1, 23, 24, 255, 256, 65535, 65536, UINT32_MAX, (uint64_t)UINT32_MAX + 1,
				 UINT64_MAX };
static const int64_t i64s[] = { 0, 1, -1, -24, -25, -256, -257, -65537, INT32_MIN, (int64_t)INT32_MIN - 1,
				INT64_MAX, INT64_MIN };

static void put_numbers(struct state_writer *w)
{
	char key[16];

	for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]); i++) {
		snprintf(key, sizeof(key), "u%zu", i);
		state_put_u64(w, key, u64s[i]);
	}
	for (size_t i = 0; i < sizeof(i64s) / sizeof(i64s[0]); i++) {
		snprintf(key, sizeof(key), "i%zu", i);
		state_put_i64(w, key, i64s[i]);
	}
}

static void check_numbers(struct state_reader *r)
{
	char key[16];

	for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]); i++) {
		uint64_t v;
		snprintf(key, sizeof(key), "u%zu", i);
		assert_int_equal(state_get_u64(r, key, &v), 0);
		assert_true(v == u64s[i]);
	}
	for (size_t i = 0; i < sizeof(i64s) / sizeof(i64s[0]); i++) {
		int64_t v;
		snprintf(key, sizeof(key), "i%zu", i);
		assert_int_equal(state_get_i64(r, key, &v), 0);
		assert_true(v == i64s[i]);
	}
}

static struct blob sample(void)
{
	static uint8_t big[1000];
	struct state_writer *w = state_writer_new();

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	assert_non_null(w);
	put_numbers(w);
	state_put_bool(w, "t", true);
	state_put_bool(w, "f", false);
	state_put_str(w, "empty", "");
	state_put_str(w, "name", "com1");
	state_put_bytes(w, "nothing", NULL, 0);
	state_put_bytes(w, "big", big, sizeof(big));
	state_begin_map(w, "inner");
	state_put_u64(w, "name", 7); /* same key as outside, other type */
	state_begin_map(w, "deeper");
	state_put_str(w, "leaf", "yes");
	state_end_map(w);
	state_put_bool(w, "after", true);
	state_end_map(w);
	state_begin_map(w, "empty_map");
	state_end_map(w);
	state_put_u64(w, "last", 42);
	return finish(w);
}

static void test_round_trip(void **state)
{
	struct blob b = sample();
	struct state_reader *r = state_reader_new(b.buf, b.len);
	uint8_t big[1000], small[4];
	char s[16];
	bool flag;
	size_t len;
	uint64_t u;

	(void)state;
	assert_non_null(r);
	check_numbers(r);
	assert_int_equal(state_get_bool(r, "t", &flag), 0);
	assert_true(flag);
	assert_int_equal(state_get_bool(r, "f", &flag), 0);
	assert_false(flag);
	assert_int_equal(state_get_str(r, "empty", s, sizeof(s)), 0);
	assert_string_equal(s, "");
	assert_int_equal(state_get_str(r, "name", s, sizeof(s)), 0);
	assert_string_equal(s, "com1");
	assert_int_equal(state_get_bytes(r, "nothing", small, 0), 0);
	assert_int_equal(state_get_bytes_var(r, "nothing", small, sizeof(small), &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(state_get_bytes(r, "big", big, sizeof(big)), 0);
	for (size_t i = 0; i < sizeof(big); i++)
		assert_int_equal(big[i], (uint8_t)(i * 7));
	assert_int_equal(state_get_bytes_var(r, "big", big, sizeof(big), &len), 0);
	assert_int_equal(len, sizeof(big));

	assert_int_equal(state_enter_map(r, "inner"), 0);
	assert_int_equal(state_get_u64(r, "name", &u), 0);
	assert_int_equal(u, 7);
	assert_int_equal(state_get_u64(r, "last", &u), -1); /* outer keys are not visible inside */
	assert_int_equal(state_enter_map(r, "deeper"), 0);
	assert_int_equal(state_get_str(r, "leaf", s, sizeof(s)), 0);
	assert_string_equal(s, "yes");
	state_leave_map(r);
	assert_int_equal(state_get_bool(r, "after", &flag), 0);
	assert_true(flag);
	state_leave_map(r);
	assert_int_equal(state_get_str(r, "name", s, sizeof(s)), 0);
	assert_string_equal(s, "com1");
	assert_int_equal(state_enter_map(r, "empty_map"), 0);
	assert_int_equal(state_get_u64(r, "last", &u), -1);
	state_leave_map(r);
	state_leave_map(r); /* extra leaves stay at the top level */
	assert_int_equal(state_get_u64(r, "last", &u), 0);
	assert_int_equal(u, 42);

	state_reader_free(r);
	free(b.buf);
}

static void test_empty_map(void **state)
{
	struct blob b = finish(state_writer_new());
	struct state_reader *r;
	uint64_t u;

	(void)state;
	assert_int_equal(b.len, 1);
	assert_int_equal(b.buf[0], 0xA0);
	r = state_reader_new(b.buf, b.len);
	assert_non_null(r);
	assert_int_equal(state_get_u64(r, "x", &u), -1);
	state_reader_free(r);
	free(b.buf);
}

static void test_missing_and_wrong_types(void **state)
{
	struct blob b = sample();
	struct state_reader *r = state_reader_new(b.buf, b.len);
	uint8_t buf[1000];
	char s[4];
	uint64_t u = 99;
	int64_t i = 99;
	bool flag;
	size_t len;

	(void)state;
	assert_non_null(r);
	assert_int_equal(state_get_u64(r, "absent", &u), -1);
	assert_int_equal(u, 99);
	assert_int_equal(state_get_u64(r, "name", &u), -1);
	assert_int_equal(state_get_u64(r, "i2", &u), -1);      /* negative */
	assert_int_equal(state_get_u64(r, "t", &u), -1);
	assert_int_equal(state_get_i64(r, "u10", &i), -1);     /* UINT64_MAX does not fit */
	assert_int_equal(state_get_i64(r, "big", &i), -1);
	assert_int_equal(state_get_bool(r, "u1", &flag), -1);
	assert_int_equal(state_get_bool(r, "inner", &flag), -1);
	assert_int_equal(state_get_str(r, "big", s, sizeof(s)), -1);
	assert_int_equal(state_get_str(r, "name", s, 4), -1);   /* no room for the NUL */
	assert_int_equal(state_get_str(r, "name", s, 0), -1);
	assert_int_equal(state_get_bytes(r, "name", buf, 4), -1);
	assert_int_equal(state_get_bytes(r, "big", buf, 999), -1);
	assert_int_equal(state_get_bytes_var(r, "big", buf, 999, &len), -1);
	assert_int_equal(state_enter_map(r, "name"), -1);
	assert_int_equal(state_enter_map(r, "absent"), -1);
	assert_int_equal(state_get_u64(r, "u1", &u), 0);        /* still at the top level */
	state_reader_free(r);
	free(b.buf);
}

static void test_writer_misuse(void **state)
{
	struct state_writer *w;

	(void)state;
	w = state_writer_new();
	state_end_map(w);
	assert_finish_fails(w);

	w = state_writer_new();
	state_begin_map(w, "open");
	assert_finish_fails(w);

	w = state_writer_new();
	state_put_u64(w, "k", 1);
	state_put_bool(w, "k", true);
	assert_finish_fails(w);

	w = state_writer_new();
	state_put_str(w, "s", NULL);
	assert_finish_fails(w);

	w = state_writer_new();
	state_put_u64(w, "", 1);
	assert_finish_fails(w);

	w = state_writer_new();
	state_put_bytes(w, "b", NULL, 3);
	assert_finish_fails(w);

	/* The error is sticky: later good puts do not clear it. */
	w = state_writer_new();
	state_put_u64(w, NULL, 1);
	state_put_u64(w, "ok", 1);
	assert_finish_fails(w);

	/* Freeing with maps still open must not leak or crash. */
	w = state_writer_new();
	state_begin_map(w, "a");
	state_begin_map(w, "b");
	state_put_u64(w, "c", 1);
	state_writer_free(w);

	state_put_u64(NULL, "k", 1);
	state_writer_free(NULL);
	assert_int_equal(state_writer_finish(NULL, NULL, NULL), -1);
}

static void test_nesting_limit(void **state)
{
	struct state_writer *w = state_writer_new();
	char key[8];
	unsigned depth = 0;

	(void)state;
	/* 16 levels including the root are fine... */
	for (depth = 1; depth < 16; depth++) {
		snprintf(key, sizeof(key), "m%u", depth);
		state_begin_map(w, key);
	}
	state_put_u64(w, "bottom", 1);
	for (depth = 1; depth < 16; depth++)
		state_end_map(w);
	struct blob b = finish(w);
	struct state_reader *r = state_reader_new(b.buf, b.len);
	assert_non_null(r);
	for (depth = 1; depth < 16; depth++) {
		snprintf(key, sizeof(key), "m%u", depth);
		assert_int_equal(state_enter_map(r, key), 0);
	}
	uint64_t u;
	assert_int_equal(state_get_u64(r, "bottom", &u), 0);
	state_reader_free(r);
	free(b.buf);

	/* ...a 17th is refused. */
	w = state_writer_new();
	for (depth = 1; depth <= 16; depth++) {
		snprintf(key, sizeof(key), "m%u", depth);
		state_begin_map(w, key);
	}
	for (depth = 1; depth <= 16; depth++)
		state_end_map(w);
	assert_finish_fails(w);
}

/* Exercises every getter; on hostile input they must fail or succeed, never crash. */
static void poke(struct state_reader *r)
{
	static const char *const keys[] = { "", "a", "b", "name", "u1", "inner", "big", "t" };
	uint8_t buf[64];
	char s[64];
	uint64_t u;
	int64_t i;
	bool flag;
	size_t len;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			state_get_u64(r, keys[k], &u);
			state_get_i64(r, keys[k], &i);
			state_get_bool(r, keys[k], &flag);
			state_get_str(r, keys[k], s, sizeof(s));
			state_get_bytes(r, keys[k], buf, 4);
			state_get_bytes_var(r, keys[k], buf, sizeof(buf), &len);
			if (pass == 0 && state_enter_map(r, keys[k]) == 0) {
				poke(r);
				state_leave_map(r);
			}
		}
	}
}

static void try_parse(const uint8_t *buf, size_t len)
{
	struct state_reader *r = state_reader_new(buf, len);

	if (r) {
		poke(r);
		state_reader_free(r);
	}
}

static void test_truncated(void **state)
{
	struct blob b = sample();

	(void)state;
	/* Copies, so that any overread hits the end of a malloc'ed block (valgrind/ASan). */
	for (size_t n = 0; n < b.len; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		memcpy(copy, b.buf, n);
		assert_null(state_reader_new(copy, n));
		free(copy);
	}
	assert_null(state_reader_new(NULL, 10));
	/* Trailing garbage is not a well-formed payload either. */
	uint8_t *longer = malloc(b.len + 1);
	memcpy(longer, b.buf, b.len);
	longer[b.len] = 0;
	assert_null(state_reader_new(longer, b.len + 1));
	free(longer);
	free(b.buf);
}

static void test_rejected_shapes(void **state)
{
	static const struct {
		const char *what;
		uint8_t bytes[16];
		size_t len;
	} bad[] = {
		{ "integer", { 0x01 }, 1 },
		{ "array", { 0x80 }, 1 },
		{ "text", { 0x61, 'a' }, 2 },
		{ "integer key", { 0xA1, 0x01, 0x02 }, 3 },
		{ "byte-string key", { 0xA1, 0x41, 'a', 0x02 }, 4 },
		{ "indefinite map", { 0xBF, 0x61, 'a', 0x01, 0xFF }, 5 },
		{ "indefinite value", { 0xA1, 0x61, 'a', 0x5F, 0x41, 'x', 0xFF }, 7 },
		{ "indefinite key", { 0xA1, 0x7F, 0x61, 'a', 0xFF, 0x01 }, 6 },
		{ "reserved info", { 0xA1, 0x61, 'a', 0x1C }, 4 },
		{ "break alone", { 0xA1, 0x61, 'a', 0xFF }, 4 },
		{ "huge map", { 0xBB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, 9 },
		{ "huge string", { 0xA1, 0x7B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, 10 },
		{ "huge array", { 0xA1, 0x61, 'a', 0x9A, 0xFF, 0xFF, 0xFF, 0xFF }, 8 },
		{ "map with a missing value", { 0xA1, 0x61, 'a' }, 3 },
		{ "unassigned simple value", { 0xA1, 0x61, 'a', 0xE0 }, 4 },
		{ "one-byte simple value", { 0xA1, 0x61, 'a', 0xF8, 0x20 }, 5 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (state_reader_new(bad[i].bytes, bad[i].len))
			fail_msg("accepted %s", bad[i].what);
}

/* Foreign but well-formed values must be skipped by type checks, not trusted. */
static void test_foreign_values(void **state)
{
	/* {"f": 1.5 (half float), "t": tag 1(5), "a": [1, [2]], "n": null, "s": undefined} */
	static const uint8_t buf[] = { 0xA5, 0x61, 'f', 0xF9, 0x3E, 0x00, 0x61, 't', 0xC1, 0x05, 0x61, 'a',
				       0x82, 0x01, 0x81, 0x02, 0x61, 'n', 0xF6, 0x61, 's', 0xF7 };
	struct state_reader *r = state_reader_new(buf, sizeof(buf));
	bool flag;
	uint64_t u;

	(void)state;
	assert_non_null(r);
	assert_int_equal(state_get_bool(r, "f", &flag), -1);
	assert_int_equal(state_get_bool(r, "n", &flag), -1);
	assert_int_equal(state_get_u64(r, "t", &u), -1);
	assert_int_equal(state_enter_map(r, "a"), -1);
	assert_int_equal(state_get_bool(r, "s", &flag), -1);
	state_reader_free(r);
}

static void test_deep_nesting_rejected(void **state)
{
	enum { DEPTH = 100000 };
	uint8_t *buf = malloc(3 * DEPTH + 1);
	size_t n = 0;

	(void)state;
	/* {"a": {"a": ... {} }} */
	for (int i = 0; i < DEPTH; i++) {
		buf[n++] = 0xA1;
		buf[n++] = 0x61;
		buf[n++] = 'a';
	}
	buf[n++] = 0xA0;
	assert_null(state_reader_new(buf, n));

	/* {"a": [[[[...]]]]} */
	n = 0;
	buf[n++] = 0xA1;
	buf[n++] = 0x61;
	buf[n++] = 'a';
	for (int i = 0; i < DEPTH; i++)
		buf[n++] = 0x81;
	buf[n++] = 0x00;
	assert_null(state_reader_new(buf, n));

	/* {"a": tag(tag(tag(... 0)))} */
	n = 3;
	for (int i = 0; i < DEPTH; i++)
		buf[n++] = 0xC1;
	buf[n++] = 0x00;
	assert_null(state_reader_new(buf, n));
	free(buf);
}

/* A small deterministic generator, so failures reproduce. */
static uint32_t rng(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void test_random_garbage(void **state)
{
	uint32_t seed = 0x1234567;

	(void)state;
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = rng(&seed) % 48;
		uint8_t *buf = malloc(len ? len : 1);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rng(&seed);
		/* Half the time start with a map header, to get past the first check. */
		if (len && iter % 2)
			buf[0] = (uint8_t)(0xA0 | (rng(&seed) % 4));
		try_parse(buf, len);
		free(buf);
	}
}

static void test_bit_flips(void **state)
{
	struct blob b = sample();
	uint8_t *copy = malloc(b.len);

	(void)state;
	for (size_t i = 0; i < b.len; i++)
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, b.buf, b.len);
			copy[i] ^= (uint8_t)(1u << bit);
			try_parse(copy, b.len);
		}
	free(copy);
	free(b.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_empty_map),
		cmocka_unit_test(test_missing_and_wrong_types),
		cmocka_unit_test(test_writer_misuse),
		cmocka_unit_test(test_nesting_limit),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_rejected_shapes),
		cmocka_unit_test(test_foreign_values),
		cmocka_unit_test(test_deep_nesting_rejected),
		cmocka_unit_test(test_random_garbage),
		cmocka_unit_test(test_bit_flips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
