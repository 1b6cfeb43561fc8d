/*
 * The control socket server: listening socket, clients, and the VM actions
 * behind the protocol of protocol.c.
 *
 * Everything here runs on the event-loop thread except snapshot_save(),
 * which runs on a worker thread so the loop stays responsive while guest
 * memory is written: the loop pauses the VM, the worker saves, and the loop
 * resumes (or ends) the VM when the worker reports through an eventfd.
 * A live snapshot's worker starts with the VM running and has the loop
 * pause and resume it when it is ready (another eventfd, answered on
 * vm->cond): only the loop may pause, and a VM that ends meanwhile wakes
 * the worker through the same condition, so it never waits for a loop that
 * has stopped.
 *
 * Each client gets one reply per request line, in order. While a reply is
 * owed (a snapshot in progress) or too much output is queued, the client's
 * further requests wait in its buffer and in the socket.
 *
 * Descriptors (SCM_RIGHTS) come with cd-insert: hyve, confined, cannot open
 * the image itself, so hyvectl opens it and sends the descriptor in the
 * same sendmsg() as the request line. The kernel ends a read after the
 * bytes a descriptor came with, so the descriptor belongs to the line that
 * holds the read's last byte. One is kept per connection at a time, for
 * that line; any other, and one its line does not use, is closed.
 */
#include "control/control.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control/protocol.h"
#include "core/config.h"
#include "core/options.h"
#include "core/display.h"
#include "core/evloop.h"
#include "core/log.h"
#include "core/media.h"
#include "core/sandbox.h"
#include "core/unix_socket.h"
#include "core/vm.h"
#include "dev/acpi_pm.h"
#include "snapshot/snapshot.h"
#include "ui/screenshot.h"

#define DEFAULT_DIR "/run/hyve"
#define MAX_CLIENTS 32
#define OUT_HIGH (64 * 1024)    /* no new requests are read while this much output waits */
#define IN_CAP (CONTROL_LINE_MAX + 1) /* the longest line and its newline */
#define EXIT_FLUSH_MS 2000      /* how long a reply may take to leave before the VM ends anyway */
#define RX_FDS_MAX 4            /* descriptors taken from one read; the kernel closes those past it */

_Static_assert(CONTROL_DRIVE_MAX == MEDIA_NAME_MAX - 1, "the protocol's drive names fit media_drive names");

struct conn {
	struct control *ctl;
	int fd;
	char *in;
	size_t inlen, incap;
	char *out;
	size_t outlen, outcap;
	uint32_t events;  /* what the loop watches now */
	bool eof;         /* the client has sent everything */
	bool closing;     /* close once the output has left */
	bool pending;     /* a snapshot reply is owed */
	int rx_fd;        /* a descriptor that came with the input, or -1 */
	size_t rx_fd_at;  /* offset in `in` of the last byte read with it: it belongs to that byte's line */
	struct conn *next;
};

struct control {
	struct vm *vm;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	dev_t dev;
	ino_t ino;
	int done_fd; /* eventfd: the snapshot worker has finished */
	int live_fd; /* eventfd: a live snapshot's worker asks for a pause or resume (snap.want) */
	struct conn *conns;
	unsigned nconns;
	struct timespec started;
	bool exiting; /* an exit is under way: no more requests are read */
	char reply[CONTROL_REPLY_MAX];

	/* The snapshot being written (at most one); fields are the loop's except rc and err. */
	struct {
		bool running;
		pthread_t thread;
		struct conn *conn; /* who asked; NULL once it is gone */
		struct control_id id;
		char path[CONTROL_PATH_MAX + 1];
		bool then_exit;
		bool was_paused;
		bool live, verify;
		int rc;
		char err[CONTROL_ERROR_MAX];
		/* Under vm->lock, signalled on vm->cond: the worker's request and the loop's answer. */
		enum { LIVE_NONE, LIVE_PAUSE, LIVE_RESUME } want;
		bool answered, answer_ok;
		/* The live snapshot under way or the last one (report_lock): for status and the reply. */
		pthread_mutex_t report_lock;
		bool has_report;
		struct snapshot_live_report report;
	} snap;
};

static void conn_event(void *opaque, uint32_t events);

/* ---- connections ---- */

static void close_conn(struct conn *c)
{
	struct control *ctl = c->ctl;

	for (struct conn **pp = &ctl->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	ctl->nconns--;
	if (ctl->snap.conn == c)
		ctl->snap.conn = NULL;
	evloop_del(ctl->vm->loop, c->fd);
	close(c->fd);
	if (c->rx_fd >= 0)
		close(c->rx_fd);
	free(c->in);
	free(c->out);
	free(c);
}

static int queue(struct conn *c, const char *data, size_t len)
{
	if (c->outlen + len > c->outcap) {
		size_t cap = c->outcap ? c->outcap : 4096;
		char *p;
		while (cap < c->outlen + len)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p)
			return -1;
		c->out = p;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, data, len);
	c->outlen += len;
	return 0;
}

/* Sends what the socket takes now; -1 when the client is gone. */
static int flush(struct conn *c)
{
	size_t done = 0;
	int rc = 0;

	while (done < c->outlen) {
		ssize_t n = send(c->fd, c->out + done, c->outlen - done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			done += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
				rc = -1;
			break;
		}
	}
	memmove(c->out, c->out + done, c->outlen - done);
	c->outlen -= done;
	return rc;
}

/*
 * The reply to a request that ends the VM must reach the client first: wait
 * for it (bounded, it is one short line), then end the VM.
 */
static void exit_after_reply(struct control *ctl, struct conn *c, int status)
{
	struct timespec start, now;

	ctl->exiting = true;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (c && c->outlen && flush(c) == 0 && c->outlen) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		long waited;
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (waited >= EXIT_FLUSH_MS || poll(&p, 1, (int)(EXIT_FLUSH_MS - waited)) <= 0)
			break;
	}
	vm_request_exit(ctl->vm, status);
}

static bool can_read(const struct conn *c)
{
	return !c->eof && !c->closing && !c->pending && !c->ctl->exiting && c->outlen < OUT_HIGH &&
	       c->inlen < IN_CAP;
}

static void update_watch(struct conn *c)
{
	uint32_t want = (can_read(c) ? EPOLLIN : 0) | (c->outlen ? EPOLLOUT : 0);

	if (want != c->events && evloop_modify(c->ctl->vm->loop, c->fd, want) == 0)
		c->events = want;
}

static void handle_line(struct conn *c, const char *line, size_t len, int fd);

/* The received descriptor if it belongs to the line at [start, start + used) of the input, else -1. */
static int take_rx_fd(struct conn *c, size_t start, size_t used)
{
	int fd = c->rx_fd;

	if (fd < 0 || c->rx_fd_at < start || c->rx_fd_at - start >= used)
		return -1;
	c->rx_fd = -1;
	return fd;
}

/*
 * Answers the complete lines in the buffer while the client may be
 * answered, sends what it can, and closes the connection when it is done.
 * Returns false when the connection was closed.
 */
static bool process(struct conn *c)
{
	struct control *ctl = c->ctl;
	size_t start = 0; /* lines before it are answered */

	while (!c->pending && !c->closing && !ctl->exiting && c->outlen < OUT_HIGH && start < c->inlen) {
		char *line = c->in + start;
		size_t left = c->inlen - start, len, used;
		char *nl = memchr(line, '\n', left);

		if (nl) {
			len = (size_t)(nl - line);
			used = len + 1;
		} else if (left > CONTROL_LINE_MAX || c->eof) {
			/* Too long (refused, then closed), or the last line of a client that has finished. */
			len = used = left;
		} else {
			break;
		}
		handle_line(c, line, len, take_rx_fd(c, start, used));
		start += used;
	}
	if (c->closing) {
		start = c->inlen;
		if (c->rx_fd >= 0) {
			close(c->rx_fd);
			c->rx_fd = -1;
		}
	}
	if (start) {
		memmove(c->in, c->in + start, c->inlen - start);
		c->inlen -= start;
		if (c->rx_fd >= 0)
			c->rx_fd_at -= start; /* it belongs to a line after those answered */
	}
	if (ctl->exiting)
		return true; /* the loop is stopping; control_stop() cleans up */
	if (c->outlen && flush(c) < 0) {
		close_conn(c);
		return false;
	}
	if (!c->outlen && !c->pending && (c->closing || (c->eof && !c->inlen))) {
		close_conn(c);
		return false;
	}
	update_watch(c);
	return true;
}

/*
 * Keeps the first descriptor of a read for the line its last byte is in
 * (when none is kept yet) and closes the others.
 */
static void keep_rx_fds(struct conn *c, struct msghdr *msg, size_t last)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
		size_t nfds;
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len < CMSG_LEN(0))
			continue;
		nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfds; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
			if (c->rx_fd < 0) {
				c->rx_fd = fd;
				c->rx_fd_at = last;
			} else {
				close(fd);
			}
		}
	}
}

/* Reads what is there (once per event, for fairness between clients), with any descriptors sent along. */
static int read_input(struct conn *c)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(RX_FDS_MAX * sizeof(int))];
	} control;
	struct iovec iov;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	ssize_t n;

	if (c->incap < IN_CAP && c->incap - c->inlen < 4096) {
		size_t cap = c->incap ? c->incap * 2 : 8192;
		char *p;
		if (cap > IN_CAP)
			cap = IN_CAP;
		p = realloc(c->in, cap);
		if (!p)
			return -1;
		c->in = p;
		c->incap = cap;
	}
	if (c->inlen == c->incap)
		return 0;
	iov.iov_base = c->in + c->inlen;
	iov.iov_len = c->incap - c->inlen;
	/* CLOEXEC at once: a descriptor must never reach a program hyve starts (none now, but cheap to keep so). */
	n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n > 0) {
		c->inlen += (size_t)n;
		/* With MSG_CTRUNC the kernel has closed the descriptors past RX_FDS_MAX; those here are ours. */
		keep_rx_fds(c, &msg, c->inlen - 1);
	} else if (n == 0)
		c->eof = true;
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return -1;
	return 0;
}

static void conn_event(void *opaque, uint32_t events)
{
	struct conn *c = opaque;

	if (events & EPOLLOUT) {
		if (flush(c) < 0) {
			close_conn(c);
			return;
		}
	}
	if (events & EPOLLIN) {
		if (read_input(c) < 0) {
			close_conn(c);
			return;
		}
	} else if (events & (EPOLLHUP | EPOLLERR)) {
		/* Gone, and nothing left to read: whatever it was owed cannot be delivered. */
		close_conn(c);
		return;
	}
	process(c);
}

/* A one-line error for a client that will not be served, then the end of it. */
static void turn_away(int fd, const char *line, size_t len)
{
	if (send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* It was a courtesy. */
	}
	close(fd);
}

/*
 * Only the VM's own (effective) user and root are served: the socket's
 * mode already says so, but a socket handed on, or a folder with looser
 * rights, must not open the VM to anybody else.
 */
static bool peer_allowed(struct control *ctl, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uid_t self = geteuid();

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred)) {
		log_warn("control socket %s: cannot tell who connected (%s); refused", ctl->path, strerror(errno));
		return false;
	}
	if (cred.uid == 0 || cred.uid == self)
		return true;
	log_warn("control socket %s: refused a client running as uid %u (pid %d): only uid %u and root are served",
		 ctl->path, (unsigned)cred.uid, (int)cred.pid, (unsigned)self);
	return false;
}

static void accept_event(void *opaque, uint32_t events)
{
	static const char too_many[] = "{\"ok\":false,\"error\":\"too many control clients\"}\n";
	static const char refused[] = "{\"ok\":false,\"error\":\"permission denied: only the VM's user and root are served\"}\n";
	struct control *ctl = opaque;

	if (!(events & EPOLLIN))
		return;
	for (;;) {
		int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("control socket %s: accept: %s", ctl->path, strerror(errno));
			return;
		}
		if (!peer_allowed(ctl, fd)) {
			turn_away(fd, refused, sizeof(refused) - 1);
			continue;
		}
		c = ctl->nconns < MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			turn_away(fd, too_many, sizeof(too_many) - 1);
			continue;
		}
		c->ctl = ctl;
		c->fd = fd;
		c->rx_fd = -1;
		c->events = EPOLLIN;
		if (evloop_add(ctl->vm->loop, fd, EPOLLIN, conn_event, c) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = ctl->conns;
		ctl->conns = c;
		ctl->nconns++;
	}
}

/* ---- actions ---- */

/* Common refusals; 0 when the VM can take a command now. */
static int busy(struct control *ctl, char *err, size_t errlen)
{
	if (ctl->exiting || vm_state_is(ctl->vm, VM_EXITING)) {
		snprintf(err, errlen, "the VM is shutting down");
		return -1;
	}
	if (ctl->snap.running) {
		snprintf(err, errlen, "a snapshot is being written");
		return -1;
	}
	return 0;
}

static void live_to_control(const struct snapshot_live_report *r, struct control_live_report *c)
{
	_Static_assert(SNAPSHOT_LIVE_MAX_PASSES <= CONTROL_LIVE_PASSES_MAX, "every pass fits the reply");
	memset(c, 0, sizeof(*c));
	c->passes = r->passes;
	for (unsigned i = 0; i < r->passes && i < SNAPSHOT_LIVE_MAX_PASSES; i++)
		c->pass_bytes[i] = r->pass_bytes[i];
	c->pause_pages = r->pause_pages;
	c->pause_bytes = r->pause_bytes;
	c->pause_ms = (double)r->pause_ns / 1e6;
	c->total_ms = (double)r->total_ns / 1e6;
}

static void op_status(void *opaque, struct control_status *st)
{
	struct conn *c = opaque;
	struct control *ctl = c->ctl;
	struct vm *vm = ctl->vm;
	struct timespec now;
	struct display_vnc_stats vs;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&vm->lock);
	st->state = vm->state == VM_EXITING ? "exiting" : vm->state == VM_PAUSED ? "paused"
		    : !vm->vcpus_started ? "waiting" : "running";
	pthread_mutex_unlock(&vm->lock);
	st->name = vm->name;
	st->cpus = vm->ncpus;
	st->memory = vm->mem.size;
	st->uptime = (double)(now.tv_sec - ctl->started.tv_sec) + (double)(now.tv_nsec - ctl->started.tv_nsec) / 1e9;
	st->snapshot_in_progress = ctl->snap.running;
	pthread_mutex_lock(&ctl->snap.report_lock);
	if (ctl->snap.has_report) {
		st->has_live = true;
		st->live_in_progress = ctl->snap.running && ctl->snap.live;
		live_to_control(&ctl->snap.report, &st->live);
	}
	pthread_mutex_unlock(&ctl->snap.report_lock);
	if (display_vnc_stats(vm, &vs)) {
		st->has_vnc = true;
		st->vnc.clients = vs.clients;
		st->vnc.ticks = vs.ticks;
		st->vnc.dirty_pages = vs.dirty_pages;
		st->vnc.bytes_compared = vs.bytes_compared;
		st->vnc.tiles_sent = vs.tiles_sent;
		st->vnc.bytes_sent = vs.bytes_sent;
	}
}

static int op_pause(void *opaque, char *err, size_t errlen)
{
	struct conn *c = opaque;

	if (busy(c->ctl, err, errlen) < 0)
		return -1;
	vm_pause(c->ctl->vm);
	return 0;
}

static int op_resume(void *opaque, char *err, size_t errlen)
{
	struct conn *c = opaque;

	if (busy(c->ctl, err, errlen) < 0)
		return -1;
	vm_resume(c->ctl->vm);
	return 0;
}

/* On the worker: has the loop pause or resume the VM and waits for it; -1 when the VM ends instead. */
static int live_ask(struct control *ctl, int want)
{
	struct vm *vm = ctl->vm;
	uint64_t one = 1;
	int rc;

	pthread_mutex_lock(&vm->lock);
	ctl->snap.want = want;
	ctl->snap.answered = false;
	pthread_mutex_unlock(&vm->lock);
	if (write(ctl->live_fd, &one, sizeof(one)) < 0)
		return -1;
	pthread_mutex_lock(&vm->lock);
	while (!ctl->snap.answered && vm->state != VM_EXITING)
		pthread_cond_wait(&vm->cond, &vm->lock);
	rc = ctl->snap.answered && ctl->snap.answer_ok ? 0 : -1;
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

static int live_pause(void *opaque)
{
	return live_ask(opaque, LIVE_PAUSE);
}

static void live_resume(void *opaque)
{
	live_ask(opaque, LIVE_RESUME);
}

static void live_progress(void *opaque, const struct snapshot_live_report *rep)
{
	struct control *ctl = opaque;

	pthread_mutex_lock(&ctl->snap.report_lock);
	ctl->snap.report = *rep;
	ctl->snap.has_report = true;
	pthread_mutex_unlock(&ctl->snap.report_lock);
}

/* On the loop: what the live worker asked for. */
static void live_request_event(void *opaque, uint32_t events)
{
	struct control *ctl = opaque;
	struct vm *vm = ctl->vm;
	uint64_t count;
	int want;
	bool ok = true;

	(void)events;
	if (read(ctl->live_fd, &count, sizeof(count)) < 0)
		return;
	pthread_mutex_lock(&vm->lock);
	want = ctl->snap.want;
	ctl->snap.want = LIVE_NONE;
	pthread_mutex_unlock(&vm->lock);
	if (want == LIVE_PAUSE) {
		vm_pause(vm);
		ok = vm_state_is(vm, VM_PAUSED);
	} else if (want == LIVE_RESUME) {
		vm_resume(vm);
	} else {
		return;
	}
	pthread_mutex_lock(&vm->lock);
	ctl->snap.answered = true;
	ctl->snap.answer_ok = ok;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static int save(struct control *ctl)
{
	struct snapshot_live_ops ops = { .pause = live_pause, .resume = live_resume, .progress = live_progress,
					 .opaque = ctl, .verify = ctl->snap.verify };
	struct snapshot_live_report rep;
	int rc;

	if (!ctl->snap.live)
		return snapshot_save(ctl->vm, ctl->snap.path, ctl->snap.err, sizeof(ctl->snap.err));
	rc = snapshot_save_live(ctl->vm, ctl->snap.path, ctl->snap.then_exit, &ops, &rep, ctl->snap.err,
				sizeof(ctl->snap.err));
	live_progress(ctl, &rep);
	return rc;
}

static void *snapshot_worker(void *arg)
{
	struct control *ctl = arg;
	uint64_t one = 1;

	pthread_setname_np(pthread_self(), "snapshot");
	/* Created by the confined loop, the writer narrows its rights further to its own list. */
	if (sandbox_enter(SANDBOX_SNAPSHOT) < 0) {
		ctl->snap.rc = -1;
		snprintf(ctl->snap.err, sizeof(ctl->snap.err), "cannot confine the snapshot writer");
	} else {
		ctl->snap.rc = save(ctl);
	}
	if (ctl->snap.rc < 0 && !ctl->snap.err[0])
		snprintf(ctl->snap.err, sizeof(ctl->snap.err), "cannot write the snapshot");
	/* The eventfd write is the release: the loop reads rc and err after it. */
	if (write(ctl->done_fd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow with one write per snapshot. */
	}
	return NULL;
}

static int op_snapshot(void *opaque, const char *path, bool then_exit, bool live, bool verify, char *err,
		       size_t errlen)
{
	struct conn *c = opaque;
	struct control *ctl = c->ctl;
	int rc;

	if (busy(ctl, err, errlen) < 0)
		return -1;
	ctl->snap.was_paused = vm_state_is(ctl->vm, VM_PAUSED);
	/* A paused guest writes nothing: it is saved at once, as without live. */
	ctl->snap.live = live && !ctl->snap.was_paused;
	ctl->snap.verify = verify;
	pthread_mutex_lock(&ctl->snap.report_lock);
	ctl->snap.has_report = ctl->snap.live;
	memset(&ctl->snap.report, 0, sizeof(ctl->snap.report));
	pthread_mutex_unlock(&ctl->snap.report_lock);
	/*
	 * Paused here, not on the worker: vm_pause() kicks vCPU threads, which
	 * is only safe while the loop runs (they are joined after it stops).
	 * A live snapshot's worker has the loop pause later (live_ask()).
	 */
	if (!ctl->snap.live)
		vm_pause(ctl->vm);
	if (vm_state_is(ctl->vm, VM_EXITING)) {
		snprintf(err, errlen, "the VM is shutting down");
		return -1;
	}
	snprintf(ctl->snap.path, sizeof(ctl->snap.path), "%s", path);
	ctl->snap.then_exit = then_exit;
	ctl->snap.conn = c;
	ctl->snap.rc = 0;
	ctl->snap.err[0] = '\0';
	rc = pthread_create(&ctl->snap.thread, NULL, snapshot_worker, ctl);
	if (rc != 0) {
		if (!ctl->snap.was_paused)
			vm_resume(ctl->vm);
		snprintf(err, errlen, "cannot start writing the snapshot: %s", strerror(rc));
		return -1;
	}
	ctl->snap.running = true;
	return 0;
}

/* The live snapshot's report for the reply and the log; NULL for an ordinary snapshot. */
static const struct control_live_report *finished_live(struct control *ctl, struct control_live_report *out)
{
	char passes[CONTROL_LIVE_PASSES_MAX * 24] = "";
	size_t used = 0;

	if (!ctl->snap.live)
		return NULL;
	pthread_mutex_lock(&ctl->snap.report_lock);
	live_to_control(&ctl->snap.report, out);
	pthread_mutex_unlock(&ctl->snap.report_lock);
	for (unsigned i = 0; i < out->passes && i < CONTROL_LIVE_PASSES_MAX && used < sizeof(passes); i++)
		used += (size_t)snprintf(passes + used, sizeof(passes) - used, "%s%llu", i ? " " : "",
					 (unsigned long long)(out->pass_bytes[i] >> 10));
	if (ctl->snap.rc == 0)
		log_info("live snapshot %s: %u passes while running (KiB: %s), pause %.3f ms for %llu dirty pages (%llu KiB) and the devices, %.3f ms in all",
			 ctl->snap.path, out->passes, passes, out->pause_ms, (unsigned long long)out->pause_pages,
			 (unsigned long long)(out->pause_bytes >> 10), out->total_ms);
	return out;
}

static void snapshot_done_event(void *opaque, uint32_t events)
{
	struct control *ctl = opaque;
	struct conn *c = ctl->snap.conn;
	struct control_live_report report;
	const struct control_live_report *live;
	uint64_t count;
	size_t len;

	(void)events;
	if (read(ctl->done_fd, &count, sizeof(count)) < 0 || !ctl->snap.running)
		return;
	pthread_join(ctl->snap.thread, NULL);
	ctl->snap.running = false;
	ctl->snap.conn = NULL;
	live = finished_live(ctl, &report);
	if (ctl->snap.rc == 0 && ctl->snap.then_exit) {
		/* The VM stays paused until it ends, so nothing happens after the saved state. */
		if (c) {
			len = control_reply_snapshot(&ctl->snap.id, ctl->snap.path, "exiting", live, ctl->reply);
			c->pending = false;
			if (queue(c, ctl->reply, len) < 0)
				c = NULL;
		}
		exit_after_reply(ctl, c, HYVE_EXIT_POWEROFF);
		return;
	}
	/* A live snapshot's writer has resumed the VM itself, unless it failed while the VM was paused. */
	if (!ctl->snap.was_paused && vm_state_is(ctl->vm, VM_PAUSED))
		vm_resume(ctl->vm);
	if (ctl->snap.rc < 0)
		log_warn("snapshot to %s failed: %s", ctl->snap.path, ctl->snap.err);
	if (!c)
		return;
	c->pending = false;
	if (ctl->snap.rc == 0)
		len = control_reply_snapshot(&ctl->snap.id, ctl->snap.path, ctl->snap.was_paused ? "paused" : "running",
					     live, ctl->reply);
	else
		len = control_reply_error(&ctl->snap.id, ctl->snap.err, ctl->reply);
	if (queue(c, ctl->reply, len) < 0) {
		close_conn(c);
		return;
	}
	process(c);
}

static int op_poweroff(void *opaque, char *err, size_t errlen)
{
	struct conn *c = opaque;

	if (busy(c->ctl, err, errlen) < 0)
		return -1;
	acpi_pm_power_button(c->ctl->vm);
	return 0;
}

static int op_may_exit(void *opaque, char *err, size_t errlen)
{
	struct conn *c = opaque;

	return busy(c->ctl, err, errlen);
}

static int op_screenshot(void *opaque, const char *path, char *err, size_t errlen)
{
	struct conn *c = opaque;

	return screenshot_png(c->ctl->vm, path, err, errlen);
}

static int op_media_change(void *opaque, const char *name, int fd, const char *path, bool force, char *err,
			   size_t errlen)
{
	struct conn *c = opaque;
	struct media_drive *d;

	/* Not while a snapshot is written: the medium is part of the saved state. */
	if (busy(c->ctl, err, errlen) < 0)
		return -1;
	d = media_drive_find(c->ctl->vm, name, err, errlen);
	if (!d)
		return -1;
	return d->change(d, fd, path, force, err, errlen);
}

static const struct control_ops vm_ops = {
	.status = op_status,
	.pause = op_pause,
	.resume = op_resume,
	.snapshot = op_snapshot,
	.screenshot = op_screenshot,
	.poweroff = op_poweroff,
	.may_exit = op_may_exit,
	.media_change = op_media_change,
};

/* fd: the descriptor that came with the line, or -1; closed here unless a drive kept it. */
static void handle_line(struct conn *c, const char *line, size_t len, int fd)
{
	struct control *ctl = c->ctl;
	struct control_result res;

	control_handle_line(&vm_ops, c, line, len, fd, ctl->reply, &res);
	if (fd >= 0 && !res.fd_taken)
		close(fd);
	if (res.action == CONTROL_PENDING) {
		c->pending = true;
		ctl->snap.id = res.id;
		return;
	}
	if (queue(c, ctl->reply, res.len) < 0) {
		c->closing = true;
		return;
	}
	if (res.action == CONTROL_CLOSE)
		c->closing = true;
	else if (res.action == CONTROL_EXIT)
		exit_after_reply(ctl, c, res.exit_status);
}

/* ---- the listening socket ---- */

/* The folder of path ("." when it has no slash). */
static void parent_of(const char *path, char *dir, size_t len)
{
	char *slash;

	snprintf(dir, len, "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, len, ".");
}

/* Failures creating the default socket only disable it: a user without /run/hyve can still run VMs. */
static bool only_warn(bool is_default, int err)
{
	return is_default && (err == EACCES || err == EPERM || err == EROFS || err == ENOENT);
}

/*
 * Removes a socket file nobody accepts on (left by a VM that died); one
 * somebody accepts on belongs to a running VM. 0, or -1 after logging.
 */
static int claim_path(struct control *ctl)
{
	switch (unix_path_claim("control socket", ctl->path)) {
	case UNIX_PATH_FREE:
		return 0;
	case UNIX_PATH_IN_USE:
		log_error("VM %s already running (control socket %s)", ctl->vm->name, ctl->path);
		return -1;
	default:
		return -1;
	}
}

/* Binds and listens; 0, 1 when only a warning was due, -1 after logging. */
static int open_socket(struct control *ctl, bool is_default)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(ctl->path)];
	struct stat st;
	mode_t old;
	int dfd, rc = -1;

	parent_of(ctl->path, dir, sizeof(dir));
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		if (only_warn(is_default, errno)) {
			log_warn("no control socket: cannot create %s: %s", dir, strerror(errno));
			return 1;
		}
		log_error("control socket %s: cannot create %s: %s", ctl->path, dir, strerror(errno));
		return -1;
	}
	/* The folder's lock makes check-remove-bind one step against another hyve starting. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		flock(dfd, LOCK_EX);
	if (claim_path(ctl) < 0)
		goto out;
	ctl->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->listen_fd < 0) {
		log_error("control socket %s: %s", ctl->path, strerror(errno));
		goto out;
	}
	memcpy(sa.sun_path, ctl->path, strlen(ctl->path) + 1);
	old = umask(0177);
	rc = bind(ctl->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0) {
		rc = only_warn(is_default, errno) ? 1 : -1;
		if (rc > 0)
			log_warn("no control socket: cannot create %s: %s", ctl->path, strerror(errno));
		else
			log_error("control socket %s: %s", ctl->path, strerror(errno));
		goto out;
	}
	rc = -1;
	if (chmod(ctl->path, 0600) < 0 || listen(ctl->listen_fd, 16) < 0 || stat(ctl->path, &st) < 0) {
		log_error("control socket %s: %s", ctl->path, strerror(errno));
		unlink(ctl->path);
		goto out;
	}
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	rc = 0;
out:
	if (dfd >= 0)
		close(dfd); /* drops the lock */
	return rc;
}

static void free_control(struct control *ctl)
{
	if (ctl->listen_fd >= 0)
		close(ctl->listen_fd);
	if (ctl->done_fd >= 0)
		close(ctl->done_fd);
	if (ctl->live_fd >= 0)
		close(ctl->live_fd);
	pthread_mutex_destroy(&ctl->snap.report_lock);
	free(ctl);
}

static const struct option_decl control_options[] = {
	{ .name = "control.socket", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING,
	  .help = "control socket path (default " DEFAULT_DIR "/NAME.sock), or off" },
	{ 0 },
};
OPTIONS(control_options)

int control_start(struct vm *vm, struct control **out)
{
	const char *spec = opt_str(vm->cfg, "control.socket");
	bool is_default = spec == NULL;
	struct control *ctl;
	int n, rc;

	*out = NULL;
	if (spec && (strcmp(spec, "off") == 0 || strcmp(spec, "none") == 0))
		return 0;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl) {
		log_error("control socket: out of memory");
		return -1;
	}
	ctl->vm = vm;
	ctl->listen_fd = ctl->done_fd = ctl->live_fd = -1;
	pthread_mutex_init(&ctl->snap.report_lock, NULL);
	if (is_default) {
		if (!*vm->name || strchr(vm->name, '/')) {
			log_error("VM name '%s' cannot name a control socket: set control.socket", vm->name);
			free_control(ctl);
			return -1;
		}
		n = snprintf(ctl->path, sizeof(ctl->path), DEFAULT_DIR "/%s.sock", vm->name);
	} else {
		n = snprintf(ctl->path, sizeof(ctl->path), "%s", spec);
	}
	if (n <= 0 || (size_t)n >= sizeof(ctl->path)) {
		log_error("control socket %s%s: the path is empty or longer than %zu bytes",
			  is_default ? DEFAULT_DIR "/" : "", is_default ? vm->name : spec, sizeof(ctl->path) - 1);
		free_control(ctl);
		return -1;
	}
	rc = open_socket(ctl, is_default);
	if (rc != 0) {
		free_control(ctl);
		return rc > 0 ? 0 : -1;
	}
	ctl->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ctl->live_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ctl->done_fd < 0 || evloop_add(vm->loop, ctl->done_fd, EPOLLIN, snapshot_done_event, ctl) < 0 ||
	    ctl->live_fd < 0 || evloop_add(vm->loop, ctl->live_fd, EPOLLIN, live_request_event, ctl) < 0 ||
	    evloop_add(vm->loop, ctl->listen_fd, EPOLLIN, accept_event, ctl) < 0) {
		log_error("control socket %s: %s", ctl->path, strerror(errno));
		control_stop(ctl);
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &ctl->started);
	*out = ctl;
	return 0;
}

int control_set_owner(struct control *ctl, uid_t uid, gid_t gid)
{
	char dir[sizeof(ctl->path)];
	struct stat st;

	if (!ctl)
		return 0;
	if (lchown(ctl->path, uid, gid) < 0) {
		log_error("control socket %s: cannot give it to uid %u: %s", ctl->path, (unsigned)uid, strerror(errno));
		return -1;
	}
	parent_of(ctl->path, dir, sizeof(dir));
	/* The default folder is hyve's own: others may pass through it, not list it. */
	if (strcmp(dir, DEFAULT_DIR) == 0 && stat(dir, &st) == 0 && st.st_uid == geteuid() &&
	    (st.st_mode & 0111) != 0111 && chmod(dir, (st.st_mode & 07777) | 0111) < 0) {
		log_error("control socket %s: cannot make %s searchable: %s", ctl->path, dir, strerror(errno));
		return -1;
	}
	return 0;
}

void control_stop(struct control *ctl)
{
	struct stat st;

	if (!ctl)
		return;
	if (ctl->snap.running)
		pthread_join(ctl->snap.thread, NULL);
	while (ctl->conns)
		close_conn(ctl->conns);
	if (ctl->done_fd >= 0)
		evloop_del(ctl->vm->loop, ctl->done_fd);
	if (ctl->live_fd >= 0)
		evloop_del(ctl->vm->loop, ctl->live_fd);
	if (ctl->listen_fd >= 0) {
		evloop_del(ctl->vm->loop, ctl->listen_fd);
		/* Only our own socket: another VM may have replaced a file we lost. */
		if (lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
			unlink(ctl->path);
	}
	free_control(ctl);
}
