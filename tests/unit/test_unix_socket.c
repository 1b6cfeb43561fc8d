/*
 * Claiming a UNIX socket path (src/core/unix_socket.c): a socket left by a
 * killed process is removed, one somebody listens on is left alone, and
 * other files are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/unix_socket.h"

static char dir[64], path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/hyve-unix-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

/* A socket bound at path; listening or not. */
static int bound_socket(bool listening)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (listening)
		assert_int_equal(listen(fd, 1), 0);
	return fd;
}

static bool exists(void)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static void test_nothing_there(void **state)
{
	(void)state;
	assert_int_equal(unix_path_claim("test", path), UNIX_PATH_FREE);
}

static void test_stale_socket_removed(void **state)
{
	(void)state;
	/* What a killed process leaves: the file, and nobody accepting on it. */
	close(bound_socket(false));
	assert_true(exists());
	assert_int_equal(unix_path_claim("test", path), UNIX_PATH_FREE);
	assert_false(exists());
}

static void test_live_socket_kept(void **state)
{
	int fd = bound_socket(true);

	(void)state;
	assert_int_equal(unix_path_claim("test", path), UNIX_PATH_IN_USE);
	assert_true(exists());
	close(fd);
	/* Once its listener has gone it is stale. */
	assert_int_equal(unix_path_claim("test", path), UNIX_PATH_FREE);
	assert_false(exists());
}

static void test_other_file_refused(void **state)
{
	FILE *f = fopen(path, "w");

	(void)state;
	assert_non_null(f);
	fclose(f);
	assert_int_equal(unix_path_claim("test", path), UNIX_PATH_ERROR);
	assert_true(exists());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nothing_there, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_socket_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_file_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
