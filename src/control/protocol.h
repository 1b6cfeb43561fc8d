/*
 * The control protocol (docs/hyvectl.md), without sockets or a VM: one
 * request line in, one reply line out. The server (control.c) supplies the
 * actions through control_ops, so tests and the fuzzer can drive the whole
 * parser and dispatcher with stand-ins.
 *
 * Requests are JSON objects, one per line: {"cmd":"NAME", ...arguments,
 * "id":ID}. Replies are one line each: {"ok":true, ...} or
 * {"ok":false,"error":"message"}, with the request's "id" echoed when it
 * had a valid one.
 */
#ifndef HYVE_CONTROL_PROTOCOL_H
#define HYVE_CONTROL_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest request line, not counting its newline. */
#define CONTROL_LINE_MAX 65536
/* A buffer of this size holds any reply line, newline included. */
#define CONTROL_REPLY_MAX 32768
/* Error messages are cut to this many bytes (at a character boundary). */
#define CONTROL_ERROR_MAX 1024
/* Longest string "id". */
#define CONTROL_ID_MAX 256
/* Longest snapshot, screenshot or medium path, in bytes. */
#define CONTROL_PATH_MAX 4095
/* Longest drive name ("3:0", "3.1:0", "0"): core/media.h's MEDIA_NAME_MAX less its NUL. */
#define CONTROL_DRIVE_MAX 31

/* A request's "id", echoed in its reply: none, an integer or a string. */
struct control_id {
	enum { CONTROL_ID_NONE, CONTROL_ID_INT, CONTROL_ID_STRING } kind;
	int64_t num;
	char str[CONTROL_ID_MAX + 1];
};

/* What a live snapshot reports (docs/hyvectl.md): its passes while the guest ran, then the pause. */
#define CONTROL_LIVE_PASSES_MAX 16
struct control_live_report {
	unsigned passes;
	uint64_t pass_bytes[CONTROL_LIVE_PASSES_MAX]; /* RAM bytes written by each pass */
	uint64_t pause_pages, pause_bytes;            /* pages written again in the pause, and their bytes */
	double pause_ms, total_ms;
};

struct control_status {
	const char *name;
	const char *state;     /* "running", "paused", "waiting" (vCPUs held, vm_hold_start()) or "exiting" */
	unsigned cpus;
	uint64_t memory;       /* guest RAM bytes */
	double uptime;         /* seconds since the VM started */
	bool snapshot_in_progress;
	/* The live snapshot under way (in progress: passes so far, no pause yet) or the last one. */
	bool has_live;
	bool live_in_progress;
	struct control_live_report live;
	bool has_vnc;          /* the display's VNC server counters follow */
	struct {
		unsigned clients;
		uint64_t ticks, dirty_pages, bytes_compared, tiles_sent, bytes_sent;
	} vnc;
};

/*
 * Actions; each returns 0, or -1 with a one-line reason in err. They run on
 * the caller's thread (the server's event loop) and must not block long.
 */
struct control_ops {
	void (*status)(void *opaque, struct control_status *st);
	int (*pause)(void *opaque, char *err, size_t errlen);
	int (*resume)(void *opaque, char *err, size_t errlen);
	/*
	 * Starts saving the VM to `path` (absolute); live: while it runs,
	 * verify: checking the file against RAM in the pause (docs/hyvectl.md). On 0 the reply is deferred:
	 * the caller answers later with control_reply_snapshot() or
	 * control_reply_error().
	 */
	int (*snapshot)(void *opaque, const char *path, bool exit, bool live, bool verify, char *err, size_t errlen);
	/* Writes the display's picture to `path` (absolute) as PNG. */
	int (*screenshot)(void *opaque, const char *path, char *err, size_t errlen);
	/* Presses the ACPI power button. */
	int (*poweroff)(void *opaque, char *err, size_t errlen);
	/*
	 * Whether the VM may end now (reset, quit); the server ends it after
	 * sending the reply (CONTROL_EXIT).
	 */
	int (*may_exit)(void *opaque, char *err, size_t errlen);
	/*
	 * Puts the image open on fd (read-only, `path` naming it) in the
	 * removable media drive called `drive`, or ejects its medium when fd is
	 * -1 (path NULL); force: even when the guest locked the medium in. On 0
	 * the fd belongs to the drive; on -1 it is still the caller's.
	 */
	int (*media_change)(void *opaque, const char *drive, int fd, const char *path, bool force, char *err,
			    size_t errlen);
};

/* What the server does with a handled line. */
enum control_action {
	CONTROL_KEEP,    /* send the reply, read on */
	CONTROL_CLOSE,   /* send the reply, then close the connection */
	CONTROL_EXIT,    /* send the reply, then end the VM with exit_status */
	CONTROL_PENDING, /* no reply yet (a snapshot is being written) */
};

struct control_result {
	enum control_action action;
	int exit_status;       /* CONTROL_EXIT: an enum hyve_exit value */
	struct control_id id;  /* the request's id, for a deferred reply */
	size_t len;            /* reply bytes, newline included; 0 when PENDING */
	bool fd_taken;         /* the line's fd was handed to media_change(), which kept it */
};

/*
 * Handles one request line (without its newline; a trailing '\r' is
 * ignored) of any bytes: parses and validates it, calls at most one action,
 * and writes the reply line into reply (CONTROL_REPLY_MAX bytes, NUL
 * terminated). Pure apart from the actions: no I/O, no global state.
 *
 * fd is the descriptor that came with the line (SCM_RIGHTS), or -1; only
 * cd-insert uses one, and refuses to run without. The function never closes
 * it: when res->fd_taken is set, media_change() kept it; otherwise the
 * caller still owns it and closes it.
 */
void control_handle_line(const struct control_ops *ops, void *opaque, const char *line, size_t len, int fd,
			 char *reply, struct control_result *res);

/* Reply lines for deferred commands and for the server's own errors; return the length. */
size_t control_reply_error(const struct control_id *id, const char *msg, char *reply);
/*
 * A finished snapshot: state is what the VM does next ("running", "paused"
 * or "exiting"); live: the live snapshot's report, or NULL.
 */
size_t control_reply_snapshot(const struct control_id *id, const char *path, const char *state,
			      const struct control_live_report *live, char *reply);

#endif
