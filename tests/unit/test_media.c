/* The removable media registry (src/core/media.c): registration and lookup by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/media.h"
#include "core/vm.h"

static struct vm vm;
static struct media_drive d30, d31, d40, d3f1;
static char err[256];

static int no_change(struct media_drive *d, int fd, const char *path, bool force, char *msg, size_t msglen)
{
	(void)d;
	(void)fd;
	(void)path;
	(void)force;
	snprintf(msg, msglen, "not used here");
	return -1;
}

static void init_drive(struct media_drive *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->change = no_change;
}

static int setup(void **state)
{
	(void)state;
	memset(&vm, 0, sizeof(vm));
	init_drive(&d30, "3:0");
	init_drive(&d31, "3:1");
	init_drive(&d40, "4:0");
	init_drive(&d3f1, "3.1:5");
	err[0] = '\0';
	return 0;
}

static struct media_drive *find(const char *name)
{
	err[0] = '\0';
	return media_drive_find(&vm, name, err, sizeof(err));
}

static void assert_not_found(const char *name, const char *message)
{
	assert_null(find(name));
	assert_string_equal(err, message);
}

static void test_full_names(void **state)
{
	(void)state;
	media_drive_register(&vm, &d30);
	media_drive_register(&vm, &d31);
	media_drive_register(&vm, &d3f1);
	assert_ptr_equal(find("3:0"), &d30);
	assert_ptr_equal(find("3:1"), &d31);
	assert_ptr_equal(find("3.1:5"), &d3f1);
	/* Numbers, not text: function 0 spelt out and leading zeros name the same drive. */
	assert_ptr_equal(find("3.0:1"), &d31);
	assert_ptr_equal(find("03:01"), &d31);
	assert_ptr_equal(find("3.1:05"), &d3f1);
	assert_string_equal(err, "");
}

static void test_bare_port(void **state)
{
	(void)state;
	media_drive_register(&vm, &d30);
	media_drive_register(&vm, &d31);
	media_drive_register(&vm, &d3f1);
	assert_ptr_equal(find("1"), &d31);
	assert_ptr_equal(find("5"), &d3f1);
	/* Port 0 is on two controllers once slot 4 has a drive. */
	assert_ptr_equal(find("0"), &d30);
	media_drive_register(&vm, &d40);
	assert_not_found("0", "CD drive \"0\" is ambiguous: 3:0, 4:0 (name it SLOT:PORT)");
	assert_ptr_equal(find("4:0"), &d40);
}

static void test_not_found(void **state)
{
	(void)state;
	assert_not_found("3:0", "no CD drive \"3:0\" (the VM has no CD drives)");
	media_drive_register(&vm, &d30);
	media_drive_register(&vm, &d31);
	assert_not_found("4:0", "no CD drive \"4:0\" (drives: 3:0, 3:1)");
	assert_not_found("2", "no CD drive \"2\" (drives: 3:0, 3:1)");
	assert_not_found("3.1:0", "no CD drive \"3.1:0\" (drives: 3:0, 3:1)");
}

static void test_malformed_names(void **state)
{
	static const char *const bad[] = {
		"", ":0", "3:", "3:0:0", "3.:0", ".1:0", "3.1", "a:0", "3:0x", " 3:0", "3:0 ", "-3:0", "+3:0",
		"3:-0", "3..1:0", "256:0", "3:256", "99999999999999999999:0",
	};

	(void)state;
	media_drive_register(&vm, &d30);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (find(bad[i]))
			fail_msg("\"%s\" found a drive", bad[i]);
		assert_non_null(strstr(err, "no CD drive"));
		assert_non_null(strstr(err, "(drives: 3:0)"));
	}
	/* A bare port: there is none on port 3. */
	assert_null(find("3"));
}

static void test_long_name_cut(void **state)
{
	char name[200];

	(void)state;
	memset(name, '7', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	assert_null(find(name));
	/* The caller's text is cut; the message stays one short line. */
	assert_true(strlen(err) < 100);
	assert_non_null(strstr(err, "no CD drive \"7777"));
}

static void test_unregister(void **state)
{
	(void)state;
	media_drive_register(&vm, &d30);
	media_drive_register(&vm, &d31);
	media_drive_register(&vm, &d40);
	media_drive_unregister(&vm, &d31);
	assert_null(find("3:1"));
	assert_string_equal(err, "no CD drive \"3:1\" (drives: 3:0, 4:0)");
	assert_null(d31.next);
	media_drive_unregister(&vm, &d30);
	media_drive_unregister(&vm, &d40);
	assert_null(vm.media_drives);
	/* Unregistering a drive that is not there changes nothing. */
	media_drive_unregister(&vm, &d40);
	assert_null(vm.media_drives);
	media_drive_register(&vm, &d31);
	assert_ptr_equal(find("1"), &d31);
}

static void test_many_drives_listed_within_bounds(void **state)
{
	static struct media_drive many[64];

	(void)state;
	for (unsigned i = 0; i < 64; i++) {
		init_drive(&many[i], "");
		snprintf(many[i].name, sizeof(many[i].name), "%u.%u:%u", 10 + i / 8, i % 8, i % 30);
		media_drive_register(&vm, &many[i]);
	}
	assert_null(find("31:0"));
	assert_non_null(strstr(err, "(drives: 10.0:0, 10.1:1"));
	/* Cut after a whole name, and said so. */
	assert_non_null(strstr(err, ", ...)"));
	assert_string_equal(err + strlen(err) - 6, ", ...)");
	assert_ptr_equal(find("17.7:3"), &many[63]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_full_names, setup),
		cmocka_unit_test_setup(test_bare_port, setup),
		cmocka_unit_test_setup(test_not_found, setup),
		cmocka_unit_test_setup(test_malformed_names, setup),
		cmocka_unit_test_setup(test_long_name_cut, setup),
		cmocka_unit_test_setup(test_unregister, setup),
		cmocka_unit_test_setup(test_many_drives_listed_within_bounds, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
