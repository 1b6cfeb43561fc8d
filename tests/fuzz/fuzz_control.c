/*
 * libFuzzer harness for the control protocol (src/control/protocol.c).
 *
 * The input is a stream a client could send: it is split at newlines like
 * the server does, and every line (of any bytes, including NULs, invalid
 * UTF-8 and lines past the length limit) goes through control_handle_line()
 * with stand-in actions whose outcome (success or a hostile failure
 * message) is chosen from the input. Invariants, checked with
 * __builtin_trap():
 *   - every handled line gets exactly one reply, unless the command is
 *     deferred (then nothing), and the reply is one line ending in '\n',
 *     NUL-terminated at its length, under CONTROL_REPLY_MAX;
 *   - the reply is a JSON object with a boolean "ok", valid UTF-8;
 *   - an error reply has a string "error" shorter than CONTROL_ERROR_MAX;
 *   - at most one action runs per line, and CONTROL_EXIT comes only from
 *     reset (status 0) or quit (status 1) after may_exit agreed;
 *   - deferred snapshot replies are well formed too;
 *   - the line's descriptor (a made-up number: the protocol must never touch
 *     it) reaches media_change() for cd-insert only, and res.fd_taken says
 *     so exactly when media_change() succeeded with it; cd-insert without
 *     one never runs.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/protocol.h"

#define CHECK(x) do { if (!(x)) __builtin_trap(); } while (0)

static struct {
	unsigned actions;
	bool fail;
	bool may_exit_ok;
	int fd;             /* the descriptor that comes with every line, or -1 */
	bool media_took_fd; /* media_change() succeeded with the line's descriptor */
	char path[CONTROL_PATH_MAX + 1];
	const uint8_t *msg; /* failure message bytes from the input */
	size_t msglen;
} fz;

static int outcome(char *err, size_t errlen)
{
	fz.actions++;
	if (!fz.fail)
		return 0;
	if (errlen) {
		size_t n = fz.msglen < errlen - 1 ? fz.msglen : errlen - 1;
		memcpy(err, fz.msg, n);
		err[n] = '\0';
	}
	return -1;
}

static void op_status(void *opaque, struct control_status *st)
{
	(void)opaque;
	fz.actions++;
	st->name = fz.msglen ? (const char *)fz.path : "fuzz";
	st->state = fz.fail ? "paused" : "running";
	st->cpus = (unsigned)fz.msglen;
	st->memory = UINT64_MAX;
	st->uptime = fz.fail ? -1.0 : 1e300;
	st->snapshot_in_progress = fz.fail;
}

static int op_pause(void *opaque, char *err, size_t errlen)
{
	(void)opaque;
	return outcome(err, errlen);
}

static int op_snapshot(void *opaque, const char *path, bool then_exit, bool live, bool verify, char *err,
		       size_t errlen)
{
	(void)opaque;
	(void)verify;
	(void)then_exit;
	(void)live;
	CHECK(path[0] == '/');
	CHECK(strlen(path) <= CONTROL_PATH_MAX);
	snprintf(fz.path, sizeof(fz.path), "%s", path);
	return outcome(err, errlen);
}

static int op_may_exit(void *opaque, char *err, size_t errlen)
{
	(void)opaque;
	fz.may_exit_ok = !fz.fail;
	return outcome(err, errlen);
}

static int op_screenshot(void *opaque, const char *path, char *err, size_t errlen)
{
	(void)opaque;
	CHECK(path[0] == '/');
	CHECK(strlen(path) <= CONTROL_PATH_MAX);
	return outcome(err, errlen);
}

static int op_media_change(void *opaque, const char *drive, int fd, const char *path, bool force, char *err,
			   size_t errlen)
{
	int rc;

	(void)opaque;
	(void)force;
	CHECK(drive[0] != '\0' && strlen(drive) <= CONTROL_DRIVE_MAX);
	if (path) {
		/* cd-insert: always with the line's descriptor. */
		CHECK(fd >= 0 && fd == fz.fd);
		CHECK(path[0] == '/');
		CHECK(strlen(path) <= CONTROL_PATH_MAX);
	} else {
		CHECK(fd == -1);
	}
	rc = outcome(err, errlen);
	fz.media_took_fd = rc == 0 && fd >= 0;
	return rc;
}

static const struct control_ops ops = {
	.status = op_status,
	.pause = op_pause,
	.resume = op_pause,
	.snapshot = op_snapshot,
	.screenshot = op_screenshot,
	.poweroff = op_pause,
	.may_exit = op_may_exit,
	.media_change = op_media_change,
};

static bool valid_utf8(const char *s, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;
	char *quoted = malloc(len + 3);
	bool ok;

	/* Let json-c's own validator judge the reply's bytes as a whole. */
	CHECK(tok && quoted);
	json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
	quoted[0] = '[';
	memcpy(quoted + 1, s, len);
	quoted[len + 1] = ']';
	o = json_tokener_parse_ex(tok, quoted, (int)len + 2);
	ok = o != NULL;
	json_object_put(o);
	json_tokener_free(tok);
	free(quoted);
	return ok;
}

static void check_reply(const char *reply, size_t len)
{
	struct json_object *obj, *ok, *err;

	CHECK(len >= 2 && len < CONTROL_REPLY_MAX);
	CHECK(reply[len - 1] == '\n' && reply[len] == '\0');
	CHECK(memchr(reply, '\n', len - 1) == NULL);
	CHECK(strlen(reply) == len);
	obj = json_tokener_parse(reply);
	CHECK(obj && json_object_is_type(obj, json_type_object));
	CHECK(json_object_object_get_ex(obj, "ok", &ok) && json_object_is_type(ok, json_type_boolean));
	if (!json_object_get_boolean(ok)) {
		CHECK(json_object_object_get_ex(obj, "error", &err) && json_object_is_type(err, json_type_string));
		CHECK((size_t)json_object_get_string_len(err) < CONTROL_ERROR_MAX);
	}
	CHECK(valid_utf8(reply, len - 1));
	json_object_put(obj);
}

static char reply[CONTROL_REPLY_MAX];

static void one_line(const char *line, size_t len)
{
	struct control_result res;

	fz.actions = 0;
	fz.may_exit_ok = false;
	fz.media_took_fd = false;
	control_handle_line(&ops, NULL, line, len, fz.fd, reply, &res);
	CHECK(fz.actions <= 1);
	CHECK(res.fd_taken == fz.media_took_fd);
	switch (res.action) {
	case CONTROL_PENDING:
		CHECK(res.len == 0 && fz.actions == 1 && !fz.fail);
		/* The deferred reply, as the server would send it later. */
		if (fz.msglen & 1)
			res.len = control_reply_snapshot(&res.id, fz.path, "running", NULL, reply);
		else
			res.len = control_reply_error(&res.id, (const char *)fz.msg, reply);
		check_reply(reply, res.len);
		return;
	case CONTROL_EXIT:
		CHECK(fz.may_exit_ok);
		CHECK(res.exit_status == 0 || res.exit_status == 1);
		break;
	case CONTROL_CLOSE:
		CHECK(len > CONTROL_LINE_MAX);
		break;
	case CONTROL_KEEP:
		break;
	default:
		CHECK(0);
	}
	check_reply(reply, res.len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char msg[CONTROL_ERROR_MAX * 2];
	const char *p, *end;

	/*
	 * First byte: the actions' behaviour (bit 0: they fail), and in bits
	 * 1-7 a number n: n % 65 bytes of failure message follow; with n >= 65
	 * every line comes with a descriptor.
	 */
	if (size < 1)
		return 0;
	fz.fail = data[0] & 1;
	fz.msglen = (data[0] >> 1) % 65;
	fz.fd = (data[0] >> 1) >= 65 ? 1000 : -1;
	if (fz.msglen > size - 1)
		fz.msglen = size - 1;
	memcpy(msg, data + 1, fz.msglen);
	msg[fz.msglen] = '\0';
	fz.msg = (const uint8_t *)msg;
	fz.path[0] = '\0';
	memcpy(fz.path, msg, fz.msglen + 1);
	p = (const char *)data + 1;
	end = (const char *)data + size;
	/* Lines as the server frames them; a last line without newline is handled too. */
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		one_line(p, len);
		p += len + 1;
	}
	return 0;
}
