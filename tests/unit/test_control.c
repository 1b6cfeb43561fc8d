/* The control protocol (src/control/protocol.c) with recording stand-ins for the VM actions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "control/protocol.h"

/* ---- recording actions ---- */

static struct {
	unsigned status, pause, resume, snapshot, poweroff, may_exit;
	char path[CONTROL_PATH_MAX + 1];
	bool then_exit, live, verify;
	unsigned screenshot;
	unsigned media_change;
	char drive[CONTROL_DRIVE_MAX + 1];
	int fd;
	bool eject, force;
	const char *fail; /* when set, every action fails with this reason */
	const char *state;
	const char *name;
} calls;

static void op_status(void *opaque, struct control_status *st)
{
	(void)opaque;
	calls.status++;
	st->name = calls.name ? calls.name : "vm1";
	st->state = calls.state ? calls.state : "running";
	st->cpus = 2;
	st->memory = 512ULL << 20;
	st->uptime = 12.3456;
	st->snapshot_in_progress = false;
}

static int result(char *err, size_t errlen)
{
	if (!calls.fail)
		return 0;
	snprintf(err, errlen, "%s", calls.fail);
	return -1;
}

static int op_pause(void *opaque, char *err, size_t errlen)
{
	(void)opaque;
	calls.pause++;
	return result(err, errlen);
}

static int op_resume(void *opaque, char *err, size_t errlen)
{
	(void)opaque;
	calls.resume++;
	return result(err, errlen);
}

static int op_snapshot(void *opaque, const char *path, bool then_exit, bool live, bool verify, char *err,
		       size_t errlen)
{
	calls.verify = verify;
	(void)opaque;
	calls.snapshot++;
	snprintf(calls.path, sizeof(calls.path), "%s", path);
	calls.then_exit = then_exit;
	calls.live = live;
	return result(err, errlen);
}

static int op_poweroff(void *opaque, char *err, size_t errlen)
{
	(void)opaque;
	calls.poweroff++;
	return result(err, errlen);
}

static int op_may_exit(void *opaque, char *err, size_t errlen)
{
	(void)opaque;
	calls.may_exit++;
	return result(err, errlen);
}

static int op_screenshot(void *opaque, const char *path, char *err, size_t errlen)
{
	(void)opaque;
	calls.screenshot++;
	snprintf(calls.path, sizeof(calls.path), "%s", path);
	return result(err, errlen);
}

static int op_media_change(void *opaque, const char *drive, int fd, const char *path, bool force, char *err,
			   size_t errlen)
{
	(void)opaque;
	calls.media_change++;
	snprintf(calls.drive, sizeof(calls.drive), "%s", drive);
	calls.fd = fd;
	calls.eject = path == NULL;
	snprintf(calls.path, sizeof(calls.path), "%s", path ? path : "");
	calls.force = force;
	return result(err, errlen);
}

static int line_fd = -1; /* the descriptor the next lines come with (a number only: the protocol never uses it) */

static const struct control_ops ops = {
	.status = op_status,
	.pause = op_pause,
	.resume = op_resume,
	.snapshot = op_snapshot,
	.screenshot = op_screenshot,
	.poweroff = op_poweroff,
	.may_exit = op_may_exit,
	.media_change = op_media_change,
};

static int setup(void **state)
{
	(void)state;
	memset(&calls, 0, sizeof(calls));
	calls.fd = -2;
	line_fd = -1;
	return 0;
}

/* ---- helpers ---- */

static char reply[CONTROL_REPLY_MAX];
static struct control_result res;

/* Handles `len` bytes and checks the reply is one line of one JSON object; returns it parsed. */
static struct json_object *handle_n(const char *line, size_t len)
{
	struct json_object *obj;

	memset(reply, 'X', sizeof(reply));
	control_handle_line(&ops, NULL, line, len, line_fd, reply, &res);
	/* Only a cd-insert that reached the drive keeps the line's descriptor. */
	if (res.fd_taken)
		assert_true(line_fd >= 0 && calls.fd == line_fd && !calls.fail);
	if (res.action == CONTROL_PENDING) {
		assert_int_equal(res.len, 0);
		return NULL;
	}
	assert_true(res.len > 1 && res.len < CONTROL_REPLY_MAX);
	assert_int_equal(strlen(reply), res.len);
	assert_int_equal(reply[res.len - 1], '\n');
	assert_null(memchr(reply, '\n', res.len - 1));
	obj = json_tokener_parse(reply);
	assert_non_null(obj);
	assert_true(json_object_is_type(obj, json_type_object));
	return obj;
}

static struct json_object *handle(const char *line)
{
	return handle_n(line, strlen(line));
}

static struct json_object *field(struct json_object *obj, const char *key)
{
	struct json_object *v = NULL;

	assert_true(json_object_object_get_ex(obj, key, &v));
	return v;
}

static bool has(struct json_object *obj, const char *key)
{
	return json_object_object_get_ex(obj, key, NULL);
}

static void assert_ok(struct json_object *obj)
{
	assert_true(json_object_get_boolean(field(obj, "ok")));
	assert_false(has(obj, "error"));
}

/* An error reply whose message contains `fragment`; the connection stays unless said otherwise. */
static void assert_error(const char *line, const char *fragment)
{
	struct json_object *obj = handle(line);
	const char *msg;

	assert_false(json_object_get_boolean(field(obj, "ok")));
	msg = json_object_get_string(field(obj, "error"));
	if (!strstr(msg, fragment))
		fail_msg("request %.80s: error \"%s\" lacks \"%s\"", line, msg, fragment);
	assert_null(strchr(msg, '\n'));
	assert_int_equal(res.action, CONTROL_KEEP);
	json_object_put(obj);
}

static void assert_no_action(void)
{
	assert_int_equal(calls.pause + calls.resume + calls.snapshot + calls.poweroff + calls.may_exit + calls.media_change,
			 0);
}

/* ---- commands ---- */

static void test_status(void **state)
{
	struct json_object *obj = handle("{\"cmd\":\"status\"}");

	(void)state;
	assert_ok(obj);
	assert_int_equal(calls.status, 1);
	assert_string_equal(json_object_get_string(field(obj, "name")), "vm1");
	assert_string_equal(json_object_get_string(field(obj, "state")), "running");
	assert_int_equal(json_object_get_int64(field(obj, "cpus")), 2);
	assert_int_equal(json_object_get_int64(field(obj, "memory")), 512LL << 20);
	assert_true(json_object_is_type(field(obj, "uptime"), json_type_double));
	assert_true(strstr(reply, "\"uptime\":12.346") != NULL);
	assert_false(json_object_get_boolean(field(obj, "snapshot_in_progress")));
	assert_false(has(obj, "id"));
	assert_int_equal(res.action, CONTROL_KEEP);
	json_object_put(obj);
}

static void test_status_paused_and_odd_name(void **state)
{
	struct json_object *obj;

	(void)state;
	calls.state = "paused";
	calls.name = "bad\xff\nname";
	obj = handle("{\"cmd\":\"status\"}");
	assert_string_equal(json_object_get_string(field(obj, "state")), "paused");
	/* Invalid UTF-8 and control characters never reach the wire. */
	assert_string_equal(json_object_get_string(field(obj, "name")), "bad? name");
	json_object_put(obj);
}

static void test_id_echoed(void **state)
{
	struct json_object *obj;

	(void)state;
	obj = handle("{\"cmd\":\"status\",\"id\":42}");
	assert_int_equal(json_object_get_int64(field(obj, "id")), 42);
	json_object_put(obj);
	obj = handle("{\"id\":\"abc\\\"d\",\"cmd\":\"pause\"}");
	assert_string_equal(json_object_get_string(field(obj, "id")), "abc\"d");
	json_object_put(obj);
	obj = handle("{\"id\":-9223372036854775808,\"cmd\":\"resume\"}");
	assert_int_equal(json_object_get_int64(field(obj, "id")), INT64_MIN);
	json_object_put(obj);
	/* Errors after the id is known carry it too. */
	obj = handle("{\"id\":7,\"cmd\":\"nope\"}");
	assert_false(json_object_get_boolean(field(obj, "ok")));
	assert_int_equal(json_object_get_int64(field(obj, "id")), 7);
	json_object_put(obj);
}

static void test_bad_ids(void **state)
{
	char line[600];

	(void)state;
	assert_error("{\"cmd\":\"status\",\"id\":{}}", "\"id\"");
	assert_error("{\"cmd\":\"status\",\"id\":1.5}", "\"id\"");
	assert_error("{\"cmd\":\"status\",\"id\":null}", "\"id\"");
	assert_error("{\"cmd\":\"status\",\"id\":[1]}", "\"id\"");
	assert_error("{\"cmd\":\"status\",\"id\":9223372036854775808}", "\"id\"");
	assert_error("{\"cmd\":\"status\",\"id\":\"a\\u0000b\"}", "\"id\"");
	snprintf(line, sizeof(line), "{\"cmd\":\"status\",\"id\":\"%0*d\"}", CONTROL_ID_MAX + 1, 0);
	assert_error(line, "\"id\"");
	snprintf(line, sizeof(line), "{\"cmd\":\"status\",\"id\":\"%0*d\"}", CONTROL_ID_MAX, 0);
	json_object_put(handle(line));
	assert_int_equal(calls.status, 1);
}

static void test_pause_resume(void **state)
{
	struct json_object *obj;

	(void)state;
	obj = handle("{\"cmd\":\"pause\"}");
	assert_ok(obj);
	assert_string_equal(json_object_get_string(field(obj, "state")), "paused");
	assert_int_equal(calls.pause, 1);
	json_object_put(obj);
	obj = handle("{\"cmd\":\"resume\"}");
	assert_ok(obj);
	assert_string_equal(json_object_get_string(field(obj, "state")), "running");
	assert_int_equal(calls.resume, 1);
	json_object_put(obj);
}

static void test_action_failures(void **state)
{
	(void)state;
	calls.fail = "a snapshot is being written";
	assert_error("{\"cmd\":\"pause\"}", "a snapshot is being written");
	assert_error("{\"cmd\":\"resume\"}", "a snapshot is being written");
	assert_error("{\"cmd\":\"poweroff\"}", "a snapshot is being written");
	assert_error("{\"cmd\":\"snapshot\",\"path\":\"/x\"}", "a snapshot is being written");
	assert_error("{\"cmd\":\"reset\"}", "a snapshot is being written");
	assert_error("{\"cmd\":\"quit\"}", "a snapshot is being written");
	assert_int_equal(calls.may_exit, 2);
	calls.fail = "";
	assert_error("{\"cmd\":\"pause\"}", "failed");
}

static void test_failure_message_cleaned(void **state)
{
	char big[3 * CONTROL_ERROR_MAX];
	struct json_object *obj;
	const char *msg;

	(void)state;
	/* Multi-byte characters up to the limit: the cut must not split one. */
	for (size_t i = 0; i + 3 < sizeof(big); i += 3)
		memcpy(big + i, "\xe2\x82\xac", 3);
	big[sizeof(big) - 1 - (sizeof(big) - 1) % 3] = '\0';
	calls.fail = big;
	obj = handle("{\"cmd\":\"pause\"}");
	msg = json_object_get_string(field(obj, "error"));
	assert_true(strlen(msg) < CONTROL_ERROR_MAX);
	assert_true(strlen(msg) % 3 == 0);
	json_object_put(obj);
	calls.fail = "one\r\ntwo \xc3\x28";
	obj = handle("{\"cmd\":\"pause\"}");
	assert_string_equal(json_object_get_string(field(obj, "error")), "one  two ?(");
	json_object_put(obj);
}

static void test_snapshot(void **state)
{
	(void)state;
	assert_null(handle("{\"cmd\":\"snapshot\",\"path\":\"/tmp/vm.snap\",\"id\":\"s1\"}"));
	assert_int_equal(res.action, CONTROL_PENDING);
	assert_int_equal(calls.snapshot, 1);
	assert_string_equal(calls.path, "/tmp/vm.snap");
	assert_false(calls.then_exit);
	assert_int_equal(res.id.kind, CONTROL_ID_STRING);
	assert_string_equal(res.id.str, "s1");

	assert_null(handle("{\"cmd\":\"snapshot\",\"path\":\"/tmp/a b/\\u00e9\",\"exit\":true}"));
	assert_int_equal(calls.snapshot, 2);
	assert_string_equal(calls.path, "/tmp/a b/\xc3\xa9");
	assert_true(calls.then_exit);
	assert_int_equal(res.id.kind, CONTROL_ID_NONE);

	assert_null(handle("{\"cmd\":\"snapshot\",\"path\":\"/x\",\"exit\":false}"));
	assert_false(calls.then_exit);
	assert_false(calls.live);

	assert_null(handle("{\"cmd\":\"snapshot\",\"path\":\"/x\",\"live\":true,\"exit\":true}"));
	assert_true(calls.live);
	assert_true(calls.then_exit);
	assert_false(calls.verify);
	assert_null(handle("{\"cmd\":\"snapshot\",\"path\":\"/x\",\"live\":true,\"verify\":true}"));
	assert_true(calls.verify);
}

static void test_snapshot_bad_arguments(void **state)
{
	static char line[CONTROL_PATH_MAX + 64];

	(void)state;
	assert_error("{\"cmd\":\"snapshot\"}", "needs \"path\"");
	assert_error("{\"cmd\":\"snapshot\",\"path\":5}", "\"path\" must be a string");
	assert_error("{\"cmd\":\"snapshot\",\"path\":null}", "\"path\" must be a string");
	assert_error("{\"cmd\":\"snapshot\",\"path\":\"\"}", "must not be empty");
	assert_error("{\"cmd\":\"snapshot\",\"path\":\"rel/x\"}", "must be absolute");
	assert_error("{\"cmd\":\"snapshot\",\"path\":\"/a\\u0000b\"}", "NUL");
	assert_error("{\"cmd\":\"snapshot\",\"path\":\"/x\",\"exit\":1}", "\"exit\" must be true or false");
	assert_error("{\"cmd\":\"snapshot\",\"path\":\"/x\",\"exit\":\"yes\"}", "\"exit\" must be true or false");
	assert_error("{\"cmd\":\"snapshot\",\"path\":\"/x\",\"exti\":true}", "unknown argument 'exti'");
	assert_error("{\"cmd\":\"snapshot\",\"path\":\"/x\",\"live\":\"yes\"}", "\"live\" must be true or false");
	assert_error("{\"cmd\":\"snapshot\",\"path\":\"/x\",\"verify\":true}", "\"verify\" goes with \"live\"");
	sprintf(line, "{\"cmd\":\"snapshot\",\"path\":\"/%0*d\"}", CONTROL_PATH_MAX, 0);
	assert_error(line, "longer than 4095");
	sprintf(line, "{\"cmd\":\"snapshot\",\"path\":\"/%0*d\"}", CONTROL_PATH_MAX - 1, 0);
	assert_null(handle(line));
	assert_int_equal(calls.snapshot, 1);
}

static void test_screenshot(void **state)
{
	struct json_object *obj;

	(void)state;
	assert_error("{\"cmd\":\"screenshot\"}", "screenshot needs \"path\"");
	assert_error("{\"cmd\":\"screenshot\",\"path\":\"shot.png\"}", "must be absolute");
	assert_error("{\"cmd\":\"screenshot\",\"path\":\"/x\",\"exit\":true}", "unknown argument 'exit'");
	assert_int_equal(calls.screenshot, 0);
	obj = handle("{\"cmd\":\"screenshot\",\"path\":\"/tmp/s.png\"}");
	assert_true(json_object_get_boolean(field(obj, "ok")));
	assert_string_equal(json_object_get_string(field(obj, "path")), "/tmp/s.png");
	json_object_put(obj);
	assert_int_equal(calls.screenshot, 1);
	calls.fail = "the display is off";
	assert_error("{\"cmd\":\"screenshot\",\"path\":\"/tmp/s.png\"}", "the display is off");
}

static void test_snapshot_replies(void **state)
{
	struct control_id id = { .kind = CONTROL_ID_INT, .num = 3 };
	struct json_object *obj;
	size_t len;

	(void)state;
	control_reply_snapshot(&id, "/tmp/s", "running", NULL, reply);
	obj = json_tokener_parse(reply);
	assert_ok(obj);
	assert_int_equal(json_object_get_int64(field(obj, "id")), 3);
	assert_string_equal(json_object_get_string(field(obj, "path")), "/tmp/s");
	assert_string_equal(json_object_get_string(field(obj, "state")), "running");
	assert_false(json_object_object_get_ex(obj, "live", NULL));
	json_object_put(obj);

	struct control_live_report live = { .passes = 2, .pass_bytes = { 1 << 20, 8192 }, .pause_pages = 3,
					    .pause_bytes = 8192, .pause_ms = 1.5, .total_ms = 20.25 };
	struct json_object *l, *passes;
	control_reply_snapshot(&id, "/tmp/s", "exiting", &live, reply);
	obj = json_tokener_parse(reply);
	assert_ok(obj);
	l = field(obj, "live");
	assert_int_equal(json_object_get_int64(field(l, "passes")), 2);
	passes = field(l, "pass_bytes");
	assert_int_equal(json_object_array_length(passes), 2);
	assert_int_equal(json_object_get_int64(json_object_array_get_idx(passes, 0)), 1 << 20);
	assert_int_equal(json_object_get_int64(json_object_array_get_idx(passes, 1)), 8192);
	assert_int_equal(json_object_get_int64(field(l, "pause_pages")), 3);
	assert_int_equal(json_object_get_int64(field(l, "pause_bytes")), 8192);
	assert_true(json_object_get_double(field(l, "pause_ms")) == 1.5);
	assert_true(json_object_get_double(field(l, "total_ms")) == 20.25);
	json_object_put(obj);
	len = control_reply_error(NULL, "disk full", reply);
	assert_int_equal(len, strlen(reply));
	assert_string_equal(reply, "{\"ok\":false,\"error\":\"disk full\"}\n");
}

static void test_poweroff(void **state)
{
	struct json_object *obj = handle("{\"cmd\":\"poweroff\"}");

	(void)state;
	assert_ok(obj);
	assert_int_equal(calls.poweroff, 1);
	assert_int_equal(res.action, CONTROL_KEEP);
	json_object_put(obj);
}

static void test_reset_and_quit(void **state)
{
	struct json_object *obj;

	(void)state;
	obj = handle("{\"cmd\":\"reset\"}");
	assert_ok(obj);
	assert_int_equal(res.action, CONTROL_EXIT);
	assert_int_equal(res.exit_status, 0);
	assert_int_equal(json_object_get_int(field(obj, "exit_status")), 0);
	json_object_put(obj);
	obj = handle("{\"cmd\":\"quit\",\"id\":1}");
	assert_ok(obj);
	assert_int_equal(res.action, CONTROL_EXIT);
	assert_int_equal(res.exit_status, 1);
	assert_int_equal(json_object_get_int(field(obj, "exit_status")), 1);
	json_object_put(obj);
	assert_int_equal(calls.may_exit, 2);
}

/* ---- removable media ---- */

static void test_cd_insert(void **state)
{
	struct json_object *obj;

	(void)state;
	line_fd = 7;
	obj = handle("{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"/isos/d\u00e9bian.iso\",\"force\":false,\"id\":4}");
	assert_ok(obj);
	assert_int_equal(calls.media_change, 1);
	assert_string_equal(calls.drive, "3:0");
	assert_int_equal(calls.fd, 7);
	assert_false(calls.eject);
	assert_false(calls.force);
	assert_string_equal(calls.path, "/isos/d\xc3\xa9" "bian.iso");
	assert_true(res.fd_taken);
	assert_int_equal(res.action, CONTROL_KEEP);
	assert_string_equal(json_object_get_string(field(obj, "drive")), "3:0");
	assert_string_equal(json_object_get_string(field(obj, "medium")), "/isos/d\xc3\xa9" "bian.iso");
	assert_int_equal(json_object_get_int64(field(obj, "id")), 4);
	json_object_put(obj);
	/* "force" is optional and false by default. */
	obj = handle("{\"cmd\":\"cd-insert\",\"drive\":\"0\",\"path\":\"/a.iso\"}");
	assert_ok(obj);
	assert_false(calls.force);
	json_object_put(obj);
	obj = handle("{\"cmd\":\"cd-insert\",\"drive\":\"3.1:2\",\"path\":\"/a.iso\",\"force\":true}");
	assert_ok(obj);
	assert_true(calls.force);
	assert_string_equal(calls.drive, "3.1:2");
	json_object_put(obj);
	assert_int_equal(calls.media_change, 3);
}

static void test_cd_eject(void **state)
{
	struct json_object *obj;

	(void)state;
	obj = handle("{\"cmd\":\"cd-eject\",\"drive\":\"3:1\",\"force\":true}");
	assert_ok(obj);
	assert_int_equal(calls.media_change, 1);
	assert_true(calls.eject);
	assert_int_equal(calls.fd, -1);
	assert_true(calls.force);
	assert_false(res.fd_taken);
	assert_string_equal(json_object_get_string(field(obj, "drive")), "3:1");
	assert_true(json_object_is_type(field(obj, "medium"), json_type_null));
	assert_non_null(strstr(reply, "\"medium\":null"));
	json_object_put(obj);
	/* A descriptor sent with an eject is not the drive's: the caller keeps (and closes) it. */
	line_fd = 9;
	obj = handle("{\"cmd\":\"cd-eject\",\"drive\":\"3:1\"}");
	assert_ok(obj);
	assert_int_equal(calls.fd, -1);
	assert_false(calls.force);
	assert_false(res.fd_taken);
	json_object_put(obj);
}

static void test_cd_insert_needs_descriptor(void **state)
{
	(void)state;
	assert_error("{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"/a.iso\"}", "file descriptor");
	assert_false(res.fd_taken);
	assert_no_action();
}

static void test_media_bad_arguments(void **state)
{
	(void)state;
	line_fd = 5;
	assert_error("{\"cmd\":\"cd-insert\",\"path\":\"/a.iso\"}", "cd-insert needs \"drive\"");
	assert_error("{\"cmd\":\"cd-eject\"}", "cd-eject needs \"drive\"");
	assert_error("{\"cmd\":\"cd-eject\",\"drive\":0}", "\"drive\" must be a string");
	assert_error("{\"cmd\":\"cd-eject\",\"drive\":\"\"}", "\"drive\" must not be empty");
	assert_error("{\"cmd\":\"cd-eject\",\"drive\":\"3:0\\u0000\"}", "must be a drive name");
	assert_error("{\"cmd\":\"cd-eject\",\"drive\":\"00000000000000000000000000000003:0\"}", "must be a drive name");
	assert_error("{\"cmd\":\"cd-insert\",\"drive\":\"3:0\"}", "cd-insert needs \"path\"");
	assert_error("{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"a.iso\"}", "must be absolute");
	assert_error("{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"/a\",\"force\":1}", "\"force\" must be true or false");
	assert_error("{\"cmd\":\"cd-eject\",\"drive\":\"3:0\",\"force\":\"yes\"}", "\"force\" must be true or false");
	assert_error("{\"cmd\":\"cd-eject\",\"drive\":\"3:0\",\"path\":\"/a\"}", "unknown argument 'path' for cd-eject");
	assert_error("{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"/a\",\"exit\":true}",
		     "unknown argument 'exit' for cd-insert");
	assert_false(res.fd_taken);
	assert_no_action();
}

static void test_media_change_refused(void **state)
{
	(void)state;
	line_fd = 5;
	calls.fail = "no CD drive \"4:0\" (drives: 3:0, 3:1)";
	assert_error("{\"cmd\":\"cd-insert\",\"drive\":\"4:0\",\"path\":\"/a.iso\"}", "no CD drive \"4:0\" (drives: 3:0, 3:1)");
	/* Refused: the descriptor is still the caller's. */
	assert_false(res.fd_taken);
	assert_int_equal(calls.fd, 5);
	calls.fail = "the guest has locked the medium in";
	assert_error("{\"cmd\":\"cd-eject\",\"drive\":\"3:0\"}", "locked");
	assert_int_equal(calls.media_change, 2);
}

/* ---- malformed requests ---- */

static void test_bad_json(void **state)
{
	(void)state;
	assert_error("{", "malformed JSON");
	assert_error("{\"cmd\":}", "malformed JSON");
	assert_error("{\"cmd\":\"status\"", "malformed JSON");
	assert_error("{\"cmd\":\"status\",}", "malformed JSON");
	assert_error("status", "malformed JSON");
	assert_error("{\"cmd\":\"status\"} {\"cmd\":\"pause\"}", "malformed JSON");
	assert_error("{\"cmd\":\"status\"}x", "malformed JSON");
	assert_error("}", "malformed JSON");
	assert_error("{\"cmd\":\"st\xff\"}", "malformed JSON");
	assert_error("[{\"cmd\":\"status\"}]", "must be a JSON object");
	assert_error("\"status\"", "must be a JSON object");
	assert_error("12", "malformed JSON");
	assert_error("12 ", "must be a JSON object");
	assert_error("null ", "must be a JSON object");
	assert_error("", "empty request");
	assert_error(" \t ", "empty request");
	assert_error("\r", "empty request");
	assert_no_action();
	assert_int_equal(calls.status, 0);
}

static void test_nul_byte(void **state)
{
	static const char line[] = "{\"cmd\":\"status\"}\0junk";
	struct json_object *obj = handle_n(line, sizeof(line) - 1);

	(void)state;
	assert_false(json_object_get_boolean(field(obj, "ok")));
	assert_non_null(strstr(json_object_get_string(field(obj, "error")), "NUL"));
	json_object_put(obj);
	assert_int_equal(calls.status, 0);
}

static void test_bad_commands(void **state)
{
	char line[300];

	(void)state;
	assert_error("{}", "missing \"cmd\"");
	assert_error("{\"id\":1}", "missing \"cmd\"");
	assert_error("{\"cmd\":1}", "\"cmd\" must be a string");
	assert_error("{\"cmd\":null}", "\"cmd\" must be a string");
	assert_error("{\"cmd\":[\"status\"]}", "\"cmd\" must be a string");
	assert_error("{\"cmd\":\"STATUS\"}", "unknown command 'STATUS'");
	assert_error("{\"cmd\":\"\"}", "unknown command ''");
	assert_error("{\"cmd\":\"status\\u0000x\"}", "unknown command 'status x'");
	assert_error("{\"cmd\":\"status\",\"verbose\":true}", "unknown argument 'verbose' for status");
	assert_error("{\"cmd\":\"pause\",\"path\":\"/x\"}", "unknown argument 'path' for pause");
	/* A long unknown name is cut in the message. */
	snprintf(line, sizeof(line), "{\"cmd\":\"%0200d\"}", 0);
	assert_error(line, "unknown command '0000");
	assert_no_action();
}

static void test_whitespace_and_crlf(void **state)
{
	struct json_object *obj;

	(void)state;
	obj = handle("  {\"cmd\" : \"status\"}  \r");
	assert_ok(obj);
	json_object_put(obj);
	obj = handle("\t{\n\"cmd\":\"status\"}");
	assert_ok(obj);
	json_object_put(obj);
	assert_int_equal(calls.status, 2);
}

static void test_overlong_line(void **state)
{
	char *line = malloc(CONTROL_LINE_MAX + 2);
	struct json_object *obj;
	static const char req[] = "{\"cmd\":\"status\"}";

	(void)state;
	assert_non_null(line);
	/* Exactly the limit: answered. */
	memset(line, ' ', CONTROL_LINE_MAX);
	memcpy(line, req, sizeof(req) - 1);
	obj = handle_n(line, CONTROL_LINE_MAX);
	assert_ok(obj);
	assert_int_equal(res.action, CONTROL_KEEP);
	json_object_put(obj);
	/* One byte more: refused, and the connection is to be closed. */
	memset(line, ' ', CONTROL_LINE_MAX + 1);
	memcpy(line, req, sizeof(req) - 1);
	obj = handle_n(line, CONTROL_LINE_MAX + 1);
	assert_false(json_object_get_boolean(field(obj, "ok")));
	assert_non_null(strstr(json_object_get_string(field(obj, "error")), "longer than 65536 bytes"));
	assert_int_equal(res.action, CONTROL_CLOSE);
	json_object_put(obj);
	assert_int_equal(calls.status, 1);
	free(line);
}

static void test_deep_nesting(void **state)
{
	char line[4096];
	size_t n = 0;

	(void)state;
	n += (size_t)sprintf(line, "{\"cmd\":\"status\",\"x\":");
	for (int i = 0; i < 1000; i++)
		line[n++] = '[';
	line[n] = '\0';
	assert_error(line, "malformed JSON");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_status, setup),
		cmocka_unit_test_setup(test_status_paused_and_odd_name, setup),
		cmocka_unit_test_setup(test_id_echoed, setup),
		cmocka_unit_test_setup(test_bad_ids, setup),
		cmocka_unit_test_setup(test_pause_resume, setup),
		cmocka_unit_test_setup(test_action_failures, setup),
		cmocka_unit_test_setup(test_failure_message_cleaned, setup),
		cmocka_unit_test_setup(test_snapshot, setup),
		cmocka_unit_test_setup(test_snapshot_bad_arguments, setup),
		cmocka_unit_test_setup(test_snapshot_replies, setup),
		cmocka_unit_test_setup(test_screenshot, setup),
		cmocka_unit_test_setup(test_poweroff, setup),
		cmocka_unit_test_setup(test_reset_and_quit, setup),
		cmocka_unit_test_setup(test_cd_insert, setup),
		cmocka_unit_test_setup(test_cd_eject, setup),
		cmocka_unit_test_setup(test_cd_insert_needs_descriptor, setup),
		cmocka_unit_test_setup(test_media_bad_arguments, setup),
		cmocka_unit_test_setup(test_media_change_refused, setup),
		cmocka_unit_test_setup(test_bad_json, setup),
		cmocka_unit_test_setup(test_nul_byte, setup),
		cmocka_unit_test_setup(test_bad_commands, setup),
		cmocka_unit_test_setup(test_whitespace_and_crlf, setup),
		cmocka_unit_test_setup(test_overlong_line, setup),
		cmocka_unit_test_setup(test_deep_nesting, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
