#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/cli.h"
#include "core/config.h"

static void set_get_and_overwrite(void **state)
{
	struct config *cfg = config_new();
	(void)state;

	assert_int_equal(config_set(cfg, "lpc.com1.path", "stdio"), 0);
	assert_string_equal(config_get(cfg, "lpc.com1.path"), "stdio");
	assert_int_equal(config_set(cfg, "lpc.com1.path", "file=/tmp/x"), 0);
	assert_string_equal(config_get(cfg, "lpc.com1.path"), "file=/tmp/x");
	assert_null(config_get(cfg, "lpc.com2.path"));
	assert_int_equal(config_count(cfg), 1);
	assert_true(config_has_node(cfg, "lpc"));
	assert_true(config_has_node(cfg, "lpc.com1"));
	assert_false(config_has_node(cfg, "lpc.com"));
	config_free(cfg);
}

static void leaf_and_node_clash(void **state)
{
	struct config *cfg = config_new();
	(void)state;

	assert_int_equal(config_set(cfg, "a.b", "1"), 0);
	assert_int_equal(config_set(cfg, "a.b.c", "2"), -1);
	assert_int_equal(config_set(cfg, "a", "3"), -1);
	assert_int_equal(config_set(cfg, "a.b-x", "4"), 0);
	assert_int_equal(config_set(cfg, "x.y.z", "5"), 0);
	assert_int_equal(config_set(cfg, "x.y", "6"), -1);
	config_free(cfg);
}

static void rejects_bad_keys(void **state)
{
	struct config *cfg = config_new();
	(void)state;

	assert_int_equal(config_set(cfg, "", "1"), -1);
	assert_int_equal(config_set(cfg, ".a", "1"), -1);
	assert_int_equal(config_set(cfg, "a.", "1"), -1);
	assert_int_equal(config_set(cfg, "a..b", "1"), -1);
	assert_int_equal(config_set(cfg, "a b", "1"), -1);
	assert_int_equal(config_set_assignment(cfg, "novalue"), -1);
	assert_int_equal(config_set_assignment(cfg, "=x"), -1);
	assert_int_equal(config_set_assignment(cfg, "k=v=w"), 0);
	assert_string_equal(config_get(cfg, "k"), "v=w");
	config_free(cfg);
}

static void typed_getters(void **state)
{
	struct config *cfg = config_new();
	uint64_t u;
	bool b;
	(void)state;

	config_set(cfg, "n", "42");
	config_set(cfg, "h", "0x10");
	config_set(cfg, "bad", "4x");
	config_set(cfg, "neg", "-1");
	config_set(cfg, "t", "yes");
	config_set(cfg, "f", "off");
	config_set(cfg, "s", "2G");
	assert_int_equal(config_get_u64(cfg, "n", 0, &u), 0);
	assert_int_equal(u, 42);
	assert_int_equal(config_get_u64(cfg, "h", 0, &u), 0);
	assert_int_equal(u, 16);
	assert_int_equal(config_get_u64(cfg, "absent", 7, &u), 0);
	assert_int_equal(u, 7);
	assert_int_equal(config_get_u64(cfg, "bad", 0, &u), -1);
	assert_int_equal(config_get_u64(cfg, "neg", 0, &u), -1);
	assert_int_equal(config_get_bool(cfg, "t", false, &b), 0);
	assert_true(b);
	assert_int_equal(config_get_bool(cfg, "f", true, &b), 0);
	assert_false(b);
	assert_int_equal(config_get_bool(cfg, "n", true, &b), -1);
	assert_int_equal(config_get_size(cfg, "s", 0, &u), 0);
	assert_int_equal(u, 2ULL << 30);
	config_free(cfg);
}

/* Decimal, leading zeros and all, or hexadecimal after 0x; nothing else. */
static void numbers(void **state)
{
	uint64_t v;
	(void)state;

	assert_int_equal(parse_u64("010", &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(parse_u64("09", &v), 0);
	assert_int_equal(v, 9);
	assert_int_equal(parse_u64("0x1F", &v), 0);
	assert_int_equal(v, 31);
	assert_int_equal(parse_u64("0X10", &v), 0);
	assert_int_equal(v, 16);
	assert_int_equal(parse_u64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_u64("18446744073709551615", &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(parse_u64("18446744073709551616", &v), -1);
	assert_int_equal(parse_u64("0x", &v), -1);
	assert_int_equal(parse_u64("0x-1", &v), -1);
	assert_int_equal(parse_u64("+5", &v), -1);
	assert_int_equal(parse_u64("-5", &v), -1);
	assert_int_equal(parse_u64(" 5", &v), -1);
	assert_int_equal(parse_u64("5 ", &v), -1);
	assert_int_equal(parse_u64("12ab", &v), -1);
	assert_int_equal(parse_u64("", &v), -1);
}

static void sizes(void **state)
{
	uint64_t v;
	(void)state;

	assert_int_equal(parse_size("512", 1 << 20, &v), 0);
	assert_int_equal(v, 512ULL << 20);
	assert_int_equal(parse_size("512M", 1 << 20, &v), 0);
	assert_int_equal(v, 512ULL << 20);
	assert_int_equal(parse_size("1g", 1 << 20, &v), 0);
	assert_int_equal(v, 1ULL << 30);
	assert_int_equal(parse_size("64KiB", 1, &v), 0);
	assert_int_equal(v, 64ULL << 10);
	assert_int_equal(parse_size("0", 1 << 20, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_size("", 1, &v), -1);
	assert_int_equal(parse_size("M", 1, &v), -1);
	assert_int_equal(parse_size("12Q", 1, &v), -1);
	assert_int_equal(parse_size("-1", 1, &v), -1);
	assert_int_equal(parse_size("99999999999999999999", 1, &v), -1);
	assert_int_equal(parse_size("17179869184T", 1, &v), -1);
}

static void load_file(void **state)
{
	char path[] = "/tmp/hyve-config-XXXXXX";
	int fd = mkstemp(path);
	struct config *cfg = config_new();
	const char text[] = "# a comment\n\n cpus = 2 \nmemory.size=1G # trailing\nlpc.com1.path=stdio\n";
	(void)state;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	assert_int_equal(config_load_file(cfg, path), 0);
	assert_string_equal(config_get(cfg, "cpus"), "2");
	assert_string_equal(config_get(cfg, "memory.size"), "1G");
	assert_string_equal(config_get(cfg, "lpc.com1.path"), "stdio");
	assert_int_equal(config_load_file(cfg, "/nonexistent/hyve.conf"), -1);
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "no equals sign\n", 15), 15);
	close(fd);
	assert_int_equal(config_load_file(cfg, path), -1);
	unlink(path);
	config_free(cfg);
}

static int parse_args(struct config *cfg, int argc, const char **argv)
{
	return cli_parse(argc, (char **)argv, cfg);
}

static void command_line_fills_tree(void **state)
{
	struct config *cfg = config_new();
	const char *argv[] = { "hyve", "-c", "2", "-m", "512", "-l", "com1,stdio", "-o", "x.y=z",
			       "--kernel", "/k", "--initrd", "/i", "--cmdline", "console=ttyS0", "vm1" };
	(void)state;

	assert_int_equal(parse_args(cfg, 16, argv), CLI_RUN);
	assert_string_equal(config_get(cfg, "cpus"), "2");
	assert_string_equal(config_get(cfg, "memory.size"), "536870912");
	assert_string_equal(config_get(cfg, "lpc.com1.path"), "stdio");
	assert_string_equal(config_get(cfg, "x.y"), "z");
	assert_string_equal(config_get(cfg, "boot.kernel"), "/k");
	assert_string_equal(config_get(cfg, "boot.initrd"), "/i");
	assert_string_equal(config_get(cfg, "boot.cmdline"), "console=ttyS0");
	assert_string_equal(config_get(cfg, "name"), "vm1");
	config_free(cfg);
}

static void command_line_later_options_win(void **state)
{
	struct config *cfg = config_new();
	const char *argv[] = { "hyve", "-c", "2", "-o", "cpus=3", "vm" };
	(void)state;

	assert_int_equal(parse_args(cfg, 6, argv), CLI_RUN);
	assert_string_equal(config_get(cfg, "cpus"), "3");
	config_free(cfg);
}

static void command_line_slots(void **state)
{
	struct config *cfg = config_new();
	const char *argv[] = { "hyve", "-s", "3,foo,ro,path=/x", "-s", "0:4:1,bar", "-s", "1:2:3,baz", "vm" };
	(void)state;

	assert_int_equal(parse_args(cfg, 8, argv), CLI_RUN);
	assert_string_equal(config_get(cfg, "pci.0.3.0.device"), "foo");
	assert_string_equal(config_get(cfg, "pci.0.3.0.ro"), "true");
	assert_string_equal(config_get(cfg, "pci.0.3.0.path"), "/x");
	assert_string_equal(config_get(cfg, "pci.0.4.1.device"), "bar");
	assert_string_equal(config_get(cfg, "pci.1.2.3.device"), "baz");
	/* Not registered models: validation refuses them. */
	assert_int_equal(cli_validate(cfg), -1);
	config_free(cfg);
}

static void command_line_errors(void **state)
{
	const char *bad[][4] = {
		{ "hyve", "-m", "lots", "vm" },
		{ "hyve", "-c", "two", "vm" },
		{ "hyve", "-l", "com9,stdio", "vm" },
		{ "hyve", "-l", "com1", "vm" },
		{ "hyve", "-s", "32,foo", "vm" },
		{ "hyve", "-s", "3", "vm" },
		{ "hyve", "-o", "novalue", "vm" },
		{ "hyve", "-Z", "x", "vm" },
		{ "hyve", "--bogus", "x", "vm" },
		{ "hyve", "-c", "1", "" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config *cfg = config_new();
		int argc = bad[i][3][0] ? 4 : 3;
		assert_int_equal(parse_args(cfg, argc, bad[i]), CLI_ERROR);
		config_free(cfg);
	}
}

static void command_line_duplicate_slot(void **state)
{
	struct config *cfg = config_new();
	const char *argv[] = { "hyve", "-s", "3,foo", "-s", "3:0,bar", "vm" };
	(void)state;

	assert_int_equal(parse_args(cfg, 6, argv), CLI_ERROR);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(set_get_and_overwrite),
		cmocka_unit_test(leaf_and_node_clash),
		cmocka_unit_test(rejects_bad_keys),
		cmocka_unit_test(typed_getters),
		cmocka_unit_test(numbers),
		cmocka_unit_test(sizes),
		cmocka_unit_test(load_file),
		cmocka_unit_test(command_line_fills_tree),
		cmocka_unit_test(command_line_later_options_win),
		cmocka_unit_test(command_line_slots),
		cmocka_unit_test(command_line_errors),
		cmocka_unit_test(command_line_duplicate_slot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
