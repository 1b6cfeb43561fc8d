/*
 * libFuzzer harness for hyve's command line and configuration parsing:
 * cli_parse() on a fuzzer-made argv (src/core/cli.c, with every PCI
 * model's -s option parser behind it), config_load_file() on fuzzer-made
 * file contents, config_set_assignment() and the -s option parsers called
 * directly, and the typed getters, parse_size() and parse_u64() on every
 * value that got into the tree (src/core/config.c).
 *
 * Input: byte 0 picks the entry point (low 2 bits) and flags, bytes 1-2
 * (little-endian) give the length of a -k file's contents, which are the
 * last bytes of the input; what lies between is a list of NUL-separated
 * strings (make_options_seeds.py writes examples, fuzz_options.dict lists
 * the words the parsers know):
 *   0, 1  argv for cli_parse (argv[0] is "hyve"); -k FILE reads the file
 *         contents from the input whatever FILE says (config_load_file is
 *         wrapped at link time: the parser opens nothing of the host's)
 *   2     each string through config_set_assignment()
 *   3     each string as the options of -s SLOT,MODEL,OPTIONS for every
 *         model that has its own parser (flag bits pick the model)
 * Then every key in the tree goes through the getters.
 *
 * The entry points are parse_argv(), load_file() and slot_options():
 * when option parsing changes (declared options), those are what to adapt.
 *
 * Invariants (__builtin_trap): the tree stays sorted with unique, valid
 * keys, none both a leaf and a node; every key reads back the value it
 * holds and can be set again; a successful cli_parse leaves a VM name or a
 * snapshot to restore; parse_u64() of a plain decimal number is that
 * number; parse_size() of a number with a unit is the number times it.
 *
 * Nothing is kept between inputs: a fresh configuration each time, getopt
 * reinitialised (glibc keeps a pointer into the previous argv otherwise).
 */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "fuzz_input.h"

#define MAX_ARGS 64

static int kfile_fd = -1;
static char kfile_path[64];

int __real_config_load_file(struct config *cfg, const char *path);
int __wrap_config_load_file(struct config *cfg, const char *path);

/* -k FILE: the input's file contents stand in for whatever FILE names. */
int __wrap_config_load_file(struct config *cfg, const char *path)
{
	(void)path;
	return __real_config_load_file(cfg, kfile_path);
}

/* ---- entry points ---- */

static enum cli_result parse_argv(struct config *cfg, int argc, char **argv)
{
	static char dummy0[] = "hyve";
	char *dummy[] = { dummy0, NULL };

	/* optind 0 makes glibc forget its position inside the previous input's argv. */
	optind = 0;
	(void)getopt(1, dummy, "");
	return cli_parse(argc, argv, cfg);
}

static void load_file(struct config *cfg)
{
	(void)__wrap_config_load_file(cfg, "fuzz.conf");
}

static void slot_options(struct config *cfg, unsigned pick, const char *opts)
{
	unsigned n = 0;

	for (const struct device_model *m = device_model_first(); m; m = m->next_registered) {
		if (!m->parse_slot_options || n++ != pick % 8)
			continue;
		(void)m->parse_slot_options(cfg, "pci.0.3.0", opts);
	}
}

/* ---- checks ---- */

static bool key_ok(const char *k)
{
	bool start = true;

	if (!*k)
		return false;
	for (; *k; k++) {
		if (*k == '.') {
			if (start)
				return false;
			start = true;
		} else if (isalnum((unsigned char)*k) || *k == '_' || *k == '-') {
			start = false;
		} else {
			return false;
		}
	}
	return !start;
}

static void check_numbers(const char *v)
{
	uint64_t a, b;
	bool decimal = *v != '\0' && strlen(v) < 20;

	for (const char *p = v; *p && decimal; p++)
		decimal = isdigit((unsigned char)*p);
	if (decimal) {
		/* Plain digits are a decimal number, leading zeros or not. */
		CHECK(parse_u64(v, &a) == 0 && a == strtoull(v, NULL, 10));
		CHECK(parse_size(v, 1, &b) == 0 && b == a);
	}
	if (parse_size(v, 1, &a) == 0 && parse_size(v, 1u << 10, &b) == 0) {
		size_t n = strlen(v);
		/* A unit given wins over the default one; without one, the default multiplies. */
		CHECK(isdigit((unsigned char)v[n - 1]) ? (a == 0 || b / a == 1024) : a == b);
	}
}

static void check_tree(struct config *cfg)
{
	size_t n = config_count(cfg);
	uint64_t u;
	bool b;

	for (size_t i = 0; i < n; i++) {
		const char *k = config_key_at(cfg, i), *v = config_value_at(cfg, i);
		size_t klen = strlen(k);
		char *copy = strdup(v);

		CHECK(copy && key_ok(k) && klen < 512);
		if (i)
			CHECK(strcmp(config_key_at(cfg, i - 1), k) < 0);
		for (size_t j = 0; j < n; j++)
			CHECK(j == i || strncmp(config_key_at(cfg, j), k, klen) || config_key_at(cfg, j)[klen] != '.');
		CHECK(config_get(cfg, k) == v);
		CHECK(config_has_node(cfg, k));
		(void)config_get_u64(cfg, k, 0, &u);
		(void)config_get_size(cfg, k, 0, &u);
		(void)config_get_bool(cfg, k, false, &b);
		check_numbers(v);
		CHECK(config_set(cfg, k, copy) == 0 && config_count(cfg) == n && !strcmp(config_value_at(cfg, i), copy));
		free(copy);
	}
}

/* ---- input ---- */

/* Splits s[0..len) at NULs into argv[first..]; returns the new argc. */
static int split(char *s, size_t len, char **argv, int first)
{
	int argc = first;
	size_t start = 0;

	for (size_t i = 0; i <= len && argc < MAX_ARGS; i++) {
		if (i == len || s[i] == '\0') {
			s[i] = '\0';
			argv[argc++] = s + start;
			start = i + 1;
		}
	}
	argv[argc] = NULL;
	return argc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	kfile_fd = memfd_create("fuzz-options", MFD_CLOEXEC);
	CHECK(kfile_fd >= 0);
	snprintf(kfile_path, sizeof(kfile_path), "/proc/self/fd/%d", kfile_fd);
	CHECK(freopen("/dev/null", "w", stdout)); /* -h prints the usage there */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char argv0[] = "hyve";
	char *argv[MAX_ARGS + 1], *strings;
	struct config *cfg;
	size_t klen, slen;
	int argc;
	enum cli_result rc;

	if (size < 3)
		return 0;
	klen = (size_t)(data[1] | data[2] << 8);
	klen = klen < size - 3 ? klen : size - 3;
	slen = size - 3 - klen;
	if (ftruncate(kfile_fd, 0) < 0 || pwrite(kfile_fd, data + 3 + slen, klen, 0) != (ssize_t)klen)
		return 0;
	strings = malloc(slen + 1);
	cfg = config_new();
	CHECK(strings && cfg);
	memcpy(strings, data + 3, slen);

	switch (data[0] & 3) {
	case 0:
	case 1:
		argv[0] = argv0;
		argc = split(strings, slen, argv, 1);
		rc = parse_argv(cfg, argc, argv);
		CHECK(rc == CLI_RUN || rc == CLI_EXIT_OK || rc == CLI_ERROR);
		if (rc == CLI_RUN) {
			CHECK(config_get(cfg, "name") || config_get(cfg, "snapshot.restore"));
			(void)cli_validate(cfg);
		}
		break;
	case 2:
		argc = split(strings, slen, argv, 0);
		for (int i = 0; i < argc; i++)
			(void)config_set_assignment(cfg, argv[i]);
		load_file(cfg);
		break;
	case 3:
		argc = split(strings, slen, argv, 0);
		for (int i = 0; i < argc; i++)
			slot_options(cfg, data[0] >> 2, argv[i]);
		break;
	}
	check_tree(cfg);
	config_free(cfg);
	free(strings);
	return 0;
}
