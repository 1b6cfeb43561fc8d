/*
 * The control protocol: request parsing and validation, dispatch to the
 * server's actions, reply formatting. See protocol.h and docs/hyvectl.md.
 */
#include "control/protocol.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

/* Builds a reply object; a failed allocation is remembered and turns the reply into a fixed error. */
struct reply {
	struct json_object *obj;
	bool failed;
};

static const char reply_overflow[] = "{\"ok\":false,\"error\":\"internal error: reply too long\"}\n";
static const char reply_nomem[] = "{\"ok\":false,\"error\":\"out of memory\"}\n";

/*
 * Copies text for a message: valid UTF-8 only (other bytes become '?'),
 * control characters become spaces, cut at a character boundary to fit
 * `size` bytes with the NUL. Returns the length.
 */
static size_t clean_text(char *dst, size_t size, const char *src, size_t len)
{
	size_t o = 0, i = 0;

	while (i < len) {
		const unsigned char c = (unsigned char)src[i];
		size_t n = 1;
		uint32_t cp = c;

		if (c >= 0x80) {
			/* The sequence length from the lead byte, and its payload bits. */
			if (c >= 0xC2 && c <= 0xDF) {
				n = 2;
				cp = c & 0x1F;
			} else if (c >= 0xE0 && c <= 0xEF) {
				n = 3;
				cp = c & 0x0F;
			} else if (c >= 0xF0 && c <= 0xF4) {
				n = 4;
				cp = c & 0x07;
			} else {
				n = 0;
			}
			for (size_t k = 1; n && k < n; k++) {
				if (i + k >= len || ((unsigned char)src[i + k] & 0xC0) != 0x80)
					n = 0;
				else
					cp = cp << 6 | ((unsigned char)src[i + k] & 0x3F);
			}
			/* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
			if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
			    (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
				n = 0;
		}
		if (n == 0) {
			if (o + 1 >= size)
				break;
			dst[o++] = '?';
			i++;
			continue;
		}
		if (o + n >= size)
			break;
		if (n == 1 && (c < 0x20 || c == 0x7F)) {
			dst[o++] = ' ';
		} else {
			memcpy(dst + o, src + i, n);
			o += n;
		}
		i += n;
	}
	if (size)
		dst[o] = '\0';
	return o;
}

static void reply_add(struct reply *r, const char *key, struct json_object *val)
{
	if (!r->obj || !val || json_object_object_add(r->obj, key, val) < 0) {
		json_object_put(val);
		r->failed = true;
	}
}

static void reply_add_text(struct reply *r, const char *key, const char *text, size_t max)
{
	char buf[CONTROL_PATH_MAX + 1];
	size_t n;

	if (max >= sizeof(buf))
		max = sizeof(buf) - 1;
	n = clean_text(buf, max + 1, text, strlen(text));
	reply_add(r, key, json_object_new_string_len(buf, (int)n));
}

static void reply_begin(struct reply *r, bool ok, const struct control_id *id)
{
	r->obj = json_object_new_object();
	r->failed = false;
	reply_add(r, "ok", json_object_new_boolean(ok));
	if (!id)
		return;
	if (id->kind == CONTROL_ID_INT)
		reply_add(r, "id", json_object_new_int64(id->num));
	else if (id->kind == CONTROL_ID_STRING)
		reply_add(r, "id", json_object_new_string(id->str));
}

/* Serialises the reply into out with its newline; returns the length. */
static size_t reply_end(struct reply *r, char *out)
{
	const char *text = NULL;
	size_t len = 0;

	if (r->obj && !r->failed) {
		text = json_object_to_json_string_ext(r->obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
		if (text)
			len = strlen(text);
	}
	if (!text) {
		text = reply_nomem;
		len = sizeof(reply_nomem) - 2;
	} else if (len + 2 > CONTROL_REPLY_MAX) {
		text = reply_overflow;
		len = sizeof(reply_overflow) - 2;
	}
	memcpy(out, text, len);
	out[len++] = '\n';
	out[len] = '\0';
	json_object_put(r->obj);
	r->obj = NULL;
	return len;
}

size_t control_reply_error(const struct control_id *id, const char *msg, char *out)
{
	struct reply r;

	reply_begin(&r, false, id);
	reply_add_text(&r, "error", msg && *msg ? msg : "failed", CONTROL_ERROR_MAX - 1);
	return reply_end(&r, out);
}

/* Milliseconds with three decimals, as uptime is written. */
static struct json_object *json_ms(double ms)
{
	char text[32];

	if (!(ms >= 0 && ms < 1e12))
		ms = 0;
	snprintf(text, sizeof(text), "%.3f", ms);
	return json_object_new_double_s(ms, text);
}

static struct json_object *live_report(const struct control_live_report *live, bool in_progress)
{
	struct json_object *o = json_object_new_object(), *passes = json_object_new_array();
	unsigned n = live->passes < CONTROL_LIVE_PASSES_MAX ? live->passes : CONTROL_LIVE_PASSES_MAX;

	for (unsigned i = 0; i < n; i++)
		json_object_array_add(passes, json_object_new_uint64(live->pass_bytes[i]));
	if (in_progress)
		json_object_object_add(o, "in_progress", json_object_new_boolean(true));
	json_object_object_add(o, "passes", json_object_new_int64(live->passes));
	json_object_object_add(o, "pass_bytes", passes);
	if (!in_progress) {
		json_object_object_add(o, "pause_pages", json_object_new_uint64(live->pause_pages));
		json_object_object_add(o, "pause_bytes", json_object_new_uint64(live->pause_bytes));
		json_object_object_add(o, "pause_ms", json_ms(live->pause_ms));
		json_object_object_add(o, "total_ms", json_ms(live->total_ms));
	}
	return o;
}

size_t control_reply_snapshot(const struct control_id *id, const char *path, const char *state,
			      const struct control_live_report *live, char *out)
{
	struct reply r;

	reply_begin(&r, true, id);
	reply_add_text(&r, "path", path, CONTROL_PATH_MAX);
	reply_add(&r, "state", json_object_new_string(state));
	if (live)
		reply_add(&r, "live", live_report(live, false));
	return reply_end(&r, out);
}

/* ---- requests ---- */

struct request {
	const struct control_ops *ops;
	void *opaque;
	int fd; /* the descriptor that came with the line, or -1 */
	struct json_object *obj;
	struct control_result *res;
	char *out;
	char err[CONTROL_ERROR_MAX];
};

__attribute__((format(printf, 2, 3))) static void fail(struct request *rq, const char *fmt, ...)
{
	char msg[CONTROL_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rq->res->len = control_reply_error(&rq->res->id, msg, rq->out);
}

/* An action failed: its reason, or a generic one. */
static void fail_action(struct request *rq)
{
	rq->res->len = control_reply_error(&rq->res->id, rq->err[0] ? rq->err : "failed", rq->out);
}

static void ok_state(struct request *rq, const char *state)
{
	struct reply r;

	reply_begin(&r, true, &rq->res->id);
	if (state)
		reply_add(&r, "state", json_object_new_string(state));
	rq->res->len = reply_end(&r, rq->out);
}

/* The VNC server's counters: the idle test watches bytes_compared stay put on a static screen. */
static struct json_object *vnc_status(const struct control_status *st)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "clients", json_object_new_int64(st->vnc.clients));
	json_object_object_add(o, "ticks", json_object_new_uint64(st->vnc.ticks));
	json_object_object_add(o, "dirty_pages", json_object_new_uint64(st->vnc.dirty_pages));
	json_object_object_add(o, "bytes_compared", json_object_new_uint64(st->vnc.bytes_compared));
	json_object_object_add(o, "tiles_sent", json_object_new_uint64(st->vnc.tiles_sent));
	json_object_object_add(o, "bytes_sent", json_object_new_uint64(st->vnc.bytes_sent));
	return o;
}

static void do_status(struct request *rq)
{
	struct control_status st = { .name = "", .state = "running" };
	char uptime[32];
	struct reply r;

	rq->ops->status(rq->opaque, &st);
	if (!(st.uptime >= 0 && st.uptime < 1e12))
		st.uptime = 0;
	snprintf(uptime, sizeof(uptime), "%.3f", st.uptime);
	reply_begin(&r, true, &rq->res->id);
	reply_add_text(&r, "name", st.name ? st.name : "", 255);
	reply_add(&r, "state", json_object_new_string(st.state ? st.state : "running"));
	reply_add(&r, "cpus", json_object_new_int64(st.cpus));
	reply_add(&r, "memory", json_object_new_uint64(st.memory));
	reply_add(&r, "uptime", json_object_new_double_s(st.uptime, uptime));
	reply_add(&r, "snapshot_in_progress", json_object_new_boolean(st.snapshot_in_progress));
	if (st.has_live)
		reply_add(&r, "live_snapshot", live_report(&st.live, st.live_in_progress));
	if (st.has_vnc)
		reply_add(&r, "vnc", vnc_status(&st));
	rq->res->len = reply_end(&r, rq->out);
}

static void do_pause(struct request *rq)
{
	if (rq->ops->pause(rq->opaque, rq->err, sizeof(rq->err)) < 0)
		fail_action(rq);
	else
		ok_state(rq, "paused");
}

static void do_resume(struct request *rq)
{
	if (rq->ops->resume(rq->opaque, rq->err, sizeof(rq->err)) < 0)
		fail_action(rq);
	else
		ok_state(rq, "running");
}

#define STR_(x) #x
#define STR(x) STR_(x)

/* Checks a command's "path" (absolute, no NULs); NULL when it is fine, else why not. */
static const char *path_argument(struct json_object *obj, const char *cmd, const char **path)
{
	static char why[64];
	struct json_object *v;
	size_t len;

	if (!json_object_object_get_ex(obj, "path", &v)) {
		snprintf(why, sizeof(why), "%s needs \"path\"", cmd);
		return why;
	}
	if (!json_object_is_type(v, json_type_string))
		return "\"path\" must be a string";
	*path = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (len == 0)
		return "\"path\" must not be empty";
	if (strlen(*path) != len)
		return "\"path\" must not contain NUL characters";
	if (len > CONTROL_PATH_MAX)
		return "\"path\" is longer than " STR(CONTROL_PATH_MAX) " bytes";
	if ((*path)[0] != '/')
		return "\"path\" must be absolute (the VM's working directory is not the client's)";
	return NULL;
}

/* Checks snapshot's arguments; NULL when they are fine, else why not. */
static const char *snapshot_arguments(struct json_object *obj, const char **path, bool *then_exit, bool *live,
				      bool *verify)
{
	struct json_object *v;
	const char *why = path_argument(obj, "snapshot", path);

	if (why)
		return why;
	*then_exit = false;
	if (json_object_object_get_ex(obj, "exit", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return "\"exit\" must be true or false";
		*then_exit = json_object_get_boolean(v);
	}
	*live = false;
	if (json_object_object_get_ex(obj, "live", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return "\"live\" must be true or false";
		*live = json_object_get_boolean(v);
	}
	*verify = false;
	if (json_object_object_get_ex(obj, "verify", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return "\"verify\" must be true or false";
		*verify = json_object_get_boolean(v);
	}
	if (*verify && !*live)
		return "\"verify\" goes with \"live\"";
	return NULL;
}

static void do_snapshot(struct request *rq)
{
	const char *path = NULL, *why;
	bool then_exit = false, live = false, verify = false;

	why = snapshot_arguments(rq->obj, &path, &then_exit, &live, &verify);
	if (why) {
		fail(rq, "%s", why);
	} else if (rq->ops->snapshot(rq->opaque, path, then_exit, live, verify, rq->err, sizeof(rq->err)) < 0) {
		fail_action(rq);
	} else {
		rq->res->action = CONTROL_PENDING;
		rq->res->len = 0;
		rq->out[0] = '\0';
	}
}

static void do_screenshot(struct request *rq)
{
	const char *path = NULL, *why = path_argument(rq->obj, "screenshot", &path);
	struct reply r;

	if (why) {
		fail(rq, "%s", why);
	} else if (rq->ops->screenshot(rq->opaque, path, rq->err, sizeof(rq->err)) < 0) {
		fail_action(rq);
	} else {
		reply_begin(&r, true, &rq->res->id);
		reply_add_text(&r, "path", path, CONTROL_PATH_MAX);
		rq->res->len = reply_end(&r, rq->out);
	}
}

/* An optional boolean argument; NULL when it is absent or fine, else why not. */
static const char *bool_argument(struct json_object *obj, const char *key, bool *value, const char *why)
{
	struct json_object *v;

	*value = false;
	if (!json_object_object_get_ex(obj, key, &v))
		return NULL;
	if (!json_object_is_type(v, json_type_boolean))
		return why;
	*value = json_object_get_boolean(v);
	return NULL;
}

/* Checks "drive" (a name media_drive_find() will judge); NULL when it is fine, else why not. */
static const char *drive_argument(struct json_object *obj, const char *cmd, const char **drive)
{
	static char why[64];
	struct json_object *v;
	size_t len;

	if (!json_object_object_get_ex(obj, "drive", &v)) {
		snprintf(why, sizeof(why), "%s needs \"drive\"", cmd);
		return why;
	}
	if (!json_object_is_type(v, json_type_string))
		return "\"drive\" must be a string";
	*drive = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (len == 0)
		return "\"drive\" must not be empty";
	if (len > CONTROL_DRIVE_MAX || strlen(*drive) != len)
		return "\"drive\" must be a drive name such as 3:0, 3.1:0 or 0";
	return NULL;
}

static void ok_medium(struct request *rq, const char *drive, const char *path)
{
	struct reply r;

	reply_begin(&r, true, &rq->res->id);
	reply_add_text(&r, "drive", drive, CONTROL_DRIVE_MAX);
	if (path)
		reply_add_text(&r, "medium", path, CONTROL_PATH_MAX);
	else if (r.obj && json_object_object_add(r.obj, "medium", NULL) < 0)
		r.failed = true;
	rq->res->len = reply_end(&r, rq->out);
}

/* cd-insert (with the image's descriptor and path) and cd-eject (neither). */
static void media_change(struct request *rq, const char *cmd, bool insert)
{
	const char *drive = NULL, *path = NULL, *why;
	bool force;

	why = drive_argument(rq->obj, cmd, &drive);
	if (!why && insert)
		why = path_argument(rq->obj, cmd, &path);
	if (!why)
		why = bool_argument(rq->obj, "force", &force, "\"force\" must be true or false");
	if (!why && insert && rq->fd < 0)
		why = "cd-insert needs the image's file descriptor sent with the request (SCM_RIGHTS), "
		      "as hyvectl cd-insert does";
	if (why) {
		fail(rq, "%s", why);
		return;
	}
	if (rq->ops->media_change(rq->opaque, drive, insert ? rq->fd : -1, path, force, rq->err, sizeof(rq->err)) < 0) {
		fail_action(rq);
		return;
	}
	rq->res->fd_taken = insert;
	ok_medium(rq, drive, path);
}

static void do_cd_insert(struct request *rq)
{
	media_change(rq, "cd-insert", true);
}

static void do_cd_eject(struct request *rq)
{
	media_change(rq, "cd-eject", false);
}

static void do_poweroff(struct request *rq)
{
	if (rq->ops->poweroff(rq->opaque, rq->err, sizeof(rq->err)) < 0)
		fail_action(rq);
	else
		ok_state(rq, NULL);
}

static void exit_with(struct request *rq, int status)
{
	struct reply r;

	if (rq->ops->may_exit(rq->opaque, rq->err, sizeof(rq->err)) < 0) {
		fail_action(rq);
		return;
	}
	reply_begin(&r, true, &rq->res->id);
	reply_add(&r, "exit_status", json_object_new_int(status));
	rq->res->len = reply_end(&r, rq->out);
	rq->res->action = CONTROL_EXIT;
	rq->res->exit_status = status;
}

static void do_reset(struct request *rq)
{
	exit_with(rq, HYVE_EXIT_REBOOT);
}

static void do_quit(struct request *rq)
{
	exit_with(rq, HYVE_EXIT_POWEROFF);
}

static const char *const no_args[] = { NULL };
static const char *const snapshot_args[] = { "path", "exit", "live", "verify", NULL };
static const char *const screenshot_args[] = { "path", NULL };
static const char *const cd_insert_args[] = { "drive", "path", "force", NULL };
static const char *const cd_eject_args[] = { "drive", "force", NULL };

static const struct command {
	const char *name;
	void (*run)(struct request *rq);
	const char *const *args;
} commands[] = {
	{ "status", do_status, no_args },
	{ "pause", do_pause, no_args },
	{ "resume", do_resume, no_args },
	{ "snapshot", do_snapshot, snapshot_args },
	{ "screenshot", do_screenshot, screenshot_args },
	{ "poweroff", do_poweroff, no_args },
	{ "reset", do_reset, no_args },
	{ "quit", do_quit, no_args },
	{ "cd-insert", do_cd_insert, cd_insert_args },
	{ "cd-eject", do_cd_eject, cd_eject_args },
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Takes "id" from the request into res->id; false when it is malformed. */
static bool take_id(struct json_object *obj, struct control_id *id)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, "id", &v))
		return true;
	if (json_object_is_type(v, json_type_int)) {
		int64_t n = json_object_get_int64(v);
		/* json-c keeps integers above INT64_MAX as unsigned and clamps them here. */
		if (n == INT64_MAX && json_object_get_uint64(v) != (uint64_t)INT64_MAX)
			return false;
		id->kind = CONTROL_ID_INT;
		id->num = n;
		return true;
	}
	if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);
		size_t len = (size_t)json_object_get_string_len(v);
		if (len > CONTROL_ID_MAX || strlen(s) != len)
			return false;
		id->kind = CONTROL_ID_STRING;
		memcpy(id->str, s, len + 1);
		return true;
	}
	return false;
}

/* Finds the command and checks the argument names; NULL after writing why not into msg. */
static const struct command *find_command(struct json_object *obj, char *msg, size_t size)
{
	const struct command *c = NULL;
	struct json_object *v;
	const char *cmd;
	size_t len;
	char name[65];

	if (!json_object_object_get_ex(obj, "cmd", &v)) {
		snprintf(msg, size, "missing \"cmd\"");
		return NULL;
	}
	if (!json_object_is_type(v, json_type_string)) {
		snprintf(msg, size, "\"cmd\" must be a string");
		return NULL;
	}
	cmd = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	for (size_t i = 0; !c && i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strlen(commands[i].name) == len && memcmp(cmd, commands[i].name, len) == 0)
			c = &commands[i];
	if (!c) {
		clean_text(name, sizeof(name), cmd, len);
		snprintf(msg, size, "unknown command '%s'", name);
		return NULL;
	}
	json_object_object_foreach(obj, key, val) {
		bool known = strcmp(key, "cmd") == 0 || strcmp(key, "id") == 0;
		(void)val;
		for (const char *const *a = c->args; !known && *a; a++)
			known = strcmp(key, *a) == 0;
		if (!known) {
			clean_text(name, sizeof(name), key, strlen(key));
			snprintf(msg, size, "unknown argument '%s' for %s", name, c->name);
			return NULL;
		}
	}
	return c;
}

static void dispatch(struct request *rq)
{
	const struct command *c;
	char msg[CONTROL_ERROR_MAX];

	if (!take_id(rq->obj, &rq->res->id)) {
		rq->res->id.kind = CONTROL_ID_NONE;
		fail(rq, "\"id\" must be an integer or a string of at most %d bytes", CONTROL_ID_MAX);
		return;
	}
	c = find_command(rq->obj, msg, sizeof(msg));
	if (c)
		c->run(rq);
	else
		fail(rq, "%s", msg);
}

/* Parses the line into rq->obj; false after replying with the reason. */
static bool parse(struct request *rq, const char *line, size_t len)
{
	struct json_tokener *tok;
	enum json_tokener_error e;
	size_t i, end;

	if (memchr(line, '\0', len)) {
		fail(rq, "malformed JSON: NUL byte in the request");
		return false;
	}
	for (i = 0; i < len && is_space(line[i]); i++)
		;
	if (i == len) {
		fail(rq, "empty request");
		return false;
	}
	tok = json_tokener_new();
	if (!tok) {
		fail(rq, "out of memory");
		return false;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	rq->obj = json_tokener_parse_ex(tok, line, (int)len);
	e = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!rq->obj) {
		if (e == json_tokener_success) /* the request was JSON null */
			fail(rq, "the request must be a JSON object");
		else if (e == json_tokener_continue)
			fail(rq, "malformed JSON: the request ends early");
		else
			fail(rq, "malformed JSON: %s at byte %zu", json_tokener_error_desc(e), end + 1);
		return false;
	}
	for (i = end; i < len && is_space(line[i]); i++)
		;
	if (i < len) {
		fail(rq, "malformed JSON: unexpected data after the object at byte %zu", i + 1);
		return false;
	}
	if (!json_object_is_type(rq->obj, json_type_object)) {
		fail(rq, "the request must be a JSON object");
		return false;
	}
	return true;
}

void control_handle_line(const struct control_ops *ops, void *opaque, const char *line, size_t len, int fd,
			 char *reply, struct control_result *res)
{
	struct request rq = { .ops = ops, .opaque = opaque, .fd = fd, .res = res, .out = reply };

	memset(res, 0, sizeof(*res));
	res->action = CONTROL_KEEP;
	if (len > CONTROL_LINE_MAX) {
		res->action = CONTROL_CLOSE;
		fail(&rq, "request longer than %d bytes", CONTROL_LINE_MAX);
		return;
	}
	if (len && line[len - 1] == '\r')
		len--;
	if (parse(&rq, line, len))
		dispatch(&rq);
	json_object_put(rq.obj);
}
