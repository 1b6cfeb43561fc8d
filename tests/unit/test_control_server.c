/*
 * The control socket server (src/control/control.c) over real UNIX sockets,
 * against a stand-in VM: this file provides the few VM functions the server
 * calls (run state, exit, power button) and a scripted snapshot_save()
 * double, and runs the server's event loop on a thread. Never linked into
 * hyve.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control/control.h"
#include "control/protocol.h"
#include "core/config.h"
#include "core/display.h"
#include "core/evloop.h"
#include "core/log.h"
#include "core/media.h"
#include "core/vm.h"
#include "dev/acpi_pm.h"
#include "snapshot/snapshot.h"

/* ---- the stand-in VM ---- */

static struct {
	pthread_mutex_t lock;
	int exit_status;          /* first vm_request_exit() status, -1 before */
	unsigned pauses, resumes, power_buttons;
	/* snapshot_save() double */
	pthread_cond_t cond;      /* saves started, gate opened */
	unsigned saves;
	bool hold;                /* a save waits until the test opens the gate */
	const char *save_error;   /* fail with this, or succeed and create the file */
	bool paused_while_saving;
	/* snapshot_save_live() double */
	bool live_started_running, live_paused_in_pause, live_pause_failed;
} rec = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

void vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_RUNNING)
		vm->state = VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_lock(&rec.lock);
	rec.pauses++;
	pthread_mutex_unlock(&rec.lock);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_PAUSED)
		vm->state = VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_lock(&rec.lock);
	rec.resumes++;
	pthread_mutex_unlock(&rec.lock);
}

void vm_request_exit(struct vm *vm, int status)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_EXITING) {
		vm->state = VM_EXITING;
		vm->exit_status = status;
		pthread_mutex_lock(&rec.lock);
		rec.exit_status = status;
		pthread_mutex_unlock(&rec.lock);
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	evloop_stop(vm->loop);
}

void acpi_pm_power_button(struct vm *vm)
{
	(void)vm;
	pthread_mutex_lock(&rec.lock);
	rec.power_buttons++;
	pthread_mutex_unlock(&rec.lock);
}

/* Test double: the unit test links the server without the snapshot code. */
int snapshot_save(struct vm *vm, const char *path, char *err, size_t errlen)
{
	int fd;

	pthread_mutex_lock(&vm->lock);
	rec.paused_while_saving = vm->state == VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_lock(&rec.lock);
	rec.saves++;
	pthread_cond_broadcast(&rec.cond);
	while (rec.hold)
		pthread_cond_wait(&rec.cond, &rec.lock);
	pthread_mutex_unlock(&rec.lock);
	if (rec.save_error) {
		snprintf(err, errlen, "%s", rec.save_error);
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * Test double: reports a pass, waits at the gate (the VM still running),
 * then has the server pause and resume the VM as the real writer does.
 */
int snapshot_save_live(struct vm *vm, const char *path, bool then_exit, const struct snapshot_live_ops *ops,
		       struct snapshot_live_report *rep, char *err, size_t errlen)
{
	int fd;

	memset(rep, 0, sizeof(*rep));
	rep->passes = 2;
	rep->pass_bytes[0] = 1 << 20;
	rep->pass_bytes[1] = 3 * 4096;
	pthread_mutex_lock(&vm->lock);
	rec.live_started_running = vm->state == VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	ops->progress(ops->opaque, rep);
	pthread_mutex_lock(&rec.lock);
	rec.saves++;
	pthread_cond_broadcast(&rec.cond);
	while (rec.hold)
		pthread_cond_wait(&rec.cond, &rec.lock);
	pthread_mutex_unlock(&rec.lock);
	if (ops->pause(ops->opaque) < 0) {
		rec.live_pause_failed = true;
		snprintf(err, errlen, "the VM is shutting down");
		return -1;
	}
	pthread_mutex_lock(&vm->lock);
	rec.live_paused_in_pause = vm->state == VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	rep->pause_pages = 2;
	rep->pause_bytes = 8192;
	if (!then_exit)
		ops->resume(ops->opaque);
	rep->pause_ns = 1500000;
	rep->total_ns = 20000000;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

/* Holds the next saves until release_saves(). */
static void hold_saves(void)
{
	pthread_mutex_lock(&rec.lock);
	rec.hold = true;
	pthread_mutex_unlock(&rec.lock);
}

static void release_saves(void)
{
	pthread_mutex_lock(&rec.lock);
	rec.hold = false;
	pthread_cond_broadcast(&rec.cond);
	pthread_mutex_unlock(&rec.lock);
}

/* Waits until n saves have started. */
static void wait_saves(unsigned n)
{
	pthread_mutex_lock(&rec.lock);
	while (rec.saves < n)
		pthread_cond_wait(&rec.cond, &rec.lock);
	pthread_mutex_unlock(&rec.lock);
}

/* ---- CD drives, standing in for the AHCI device's (core/media.h) ---- */

static struct cd {
	struct media_drive drive;
	unsigned changes;
	int fd;            /* the medium's descriptor, kept as a drive keeps it; -1: empty */
	int last_fd;       /* what the last change() got */
	char path[CONTROL_PATH_MAX + 1]; /* "" after an eject */
	bool force;
	const char *refuse; /* every change fails with this */
} cds[2];

static int cd_change(struct media_drive *d, int fd, const char *path, bool force, char *err, size_t errlen)
{
	struct cd *cd = d->opaque;

	pthread_mutex_lock(&rec.lock);
	cd->changes++;
	cd->last_fd = fd;
	cd->force = force;
	if (cd->refuse) {
		snprintf(err, errlen, "%s", cd->refuse);
		pthread_mutex_unlock(&rec.lock);
		return -1;
	}
	snprintf(cd->path, sizeof(cd->path), "%s", path ? path : "");
	if (cd->fd >= 0)
		close(cd->fd);
	cd->fd = fd;
	pthread_mutex_unlock(&rec.lock);
	return 0;
}

static void add_cds(struct vm *v)
{
	for (int i = 0; i < 2; i++) {
		struct cd *cd = &cds[i];
		memset(cd, 0, sizeof(*cd));
		cd->fd = cd->last_fd = -1;
		snprintf(cd->drive.name, sizeof(cd->drive.name), "3:%d", i);
		cd->drive.change = cd_change;
		cd->drive.opaque = cd;
		media_drive_register(v, &cd->drive);
	}
}

static void remove_cds(struct vm *v)
{
	for (int i = 0; i < 2; i++) {
		media_drive_unregister(v, &cds[i].drive);
		if (cds[i].fd >= 0)
			close(cds[i].fd);
		cds[i].fd = -1;
	}
}

/* ---- fixture ---- */

static char dir[64];
static char sock[100];
static struct vm *vm;
static struct control *ctl;
static pthread_t loop_thread;
static bool loop_running;

static void *loop_main(void *arg)
{
	evloop_run(arg);
	return NULL;
}

static struct vm *new_vm(const char *name, const char *socket_spec)
{
	struct vm *v = calloc(1, sizeof(*v));

	assert_non_null(v);
	v->cfg = config_new();
	assert_non_null(v->cfg);
	assert_int_equal(config_set(v->cfg, "name", name), 0);
	if (socket_spec)
		assert_int_equal(config_set(v->cfg, "control.socket", socket_spec), 0);
	v->name = config_get(v->cfg, "name");
	v->loop = evloop_new();
	assert_non_null(v->loop);
	v->ncpus = 2;
	v->mem.size = 256ULL << 20;
	v->state = VM_RUNNING;
	v->vcpus_started = true;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	assert_int_equal(display_init(v), 0);
	return v;
}

static void free_vm(struct vm *v)
{
	display_fini(v);
	evloop_free(v->loop);
	config_free(v->cfg);
	free(v);
}

static void start_loop(void)
{
	assert_int_equal(pthread_create(&loop_thread, NULL, loop_main, vm->loop), 0);
	loop_running = true;
}

/* Waits for the loop to end by itself (the VM was told to exit). */
static void join_loop(void)
{
	if (loop_running) {
		pthread_join(loop_thread, NULL);
		loop_running = false;
	}
}

static int setup(void **state)
{
	(void)state;
	pthread_mutex_lock(&rec.lock);
	rec.exit_status = -1;
	rec.pauses = rec.resumes = rec.power_buttons = rec.saves = 0;
	rec.hold = false;
	rec.save_error = NULL;
	rec.paused_while_saving = false;
	rec.live_started_running = rec.live_paused_in_pause = rec.live_pause_failed = false;
	pthread_mutex_unlock(&rec.lock);
	snprintf(dir, sizeof(dir), "/tmp/hyve-ctl-test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/run/vm.sock", dir);
	vm = new_vm("vm1", sock);
	add_cds(vm);
	assert_int_equal(control_start(vm, &ctl), 0);
	assert_non_null(ctl);
	start_loop();
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	release_saves();
	if (loop_running) {
		evloop_stop(vm->loop);
		join_loop();
	}
	control_stop(ctl);
	ctl = NULL;
	remove_cds(vm);
	free_vm(vm);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* ---- client helpers ---- */

static int client(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_str(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		assert_true(n > 0);
		s += n;
		len -= (size_t)n;
	}
}

static void say(int fd, const char *s)
{
	send_str(fd, s, strlen(s));
}

/* Reads one line (up to timeout_ms); returns its length without the newline, -1 on EOF/timeout. */
static ssize_t read_line_timeout(int fd, char *buf, size_t size, int timeout_ms)
{
	size_t len = 0;

	while (len + 1 < size) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		if (poll(&p, 1, timeout_ms) <= 0)
			return -1;
		n = recv(fd, buf + len, 1, 0);
		if (n <= 0)
			return -1;
		if (buf[len] == '\n') {
			buf[len] = '\0';
			return (ssize_t)len;
		}
		len++;
	}
	return -1;
}

static char line[CONTROL_REPLY_MAX];

static const char *reply(int fd)
{
	ssize_t n = read_line_timeout(fd, line, sizeof(line), 5000);

	if (n < 0)
		fail_msg("no reply line");
	return line;
}

static void assert_reply(int fd, const char *fragment)
{
	const char *r = reply(fd);

	if (!strstr(r, fragment))
		fail_msg("reply %s lacks %s", r, fragment);
}

/*
 * True when the server has closed the connection within a second: end of
 * input, or a reset when it closed with our unread request bytes.
 */
static bool closed_by_server(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;
	char c;

	if (poll(&p, 1, 1000) != 1)
		return false;
	n = recv(fd, &c, 1, 0);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* Sends s in one sendmsg() with the descriptors fds, as hyvectl sends cd-insert. */
static void send_with_fds(int fd, const char *s, const int *fds, size_t nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(8 * sizeof(int))];
	} control;
	struct iovec iov = { .iov_base = (void *)s, .iov_len = strlen(s) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			      .msg_controllen = CMSG_SPACE(nfds * sizeof(int)) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	assert_true(nfds >= 1 && nfds <= 8);
	memset(&control, 0, sizeof(control));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	assert_int_equal(sendmsg(fd, &msg, MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/*
 * A pipe whose write end is sent to the server, then closed here: its read
 * end sees the end of file once the server has closed its copy too.
 */
struct probe {
	int rd, wr;
};

static struct probe new_probe(void)
{
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	return (struct probe){ .rd = p[0], .wr = p[1] };
}

/* Closes our write end and waits (up to 5 s) until no copy of it is left open. */
static void assert_probe_closed(struct probe *pr)
{
	struct pollfd p = { .fd = pr->rd, .events = POLLIN };
	char c;

	if (pr->wr >= 0)
		close(pr->wr);
	pr->wr = -1;
	if (poll(&p, 1, 5000) != 1 || read(pr->rd, &c, 1) != 0)
		fail_msg("the server kept a descriptor it was sent");
	close(pr->rd);
}

/* A file in the test folder, open read-only: what hyvectl sends. */
static int open_image(const char *name, char *path, size_t size)
{
	int fd;

	snprintf(path, size, "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "CD001", 5), 5);
	close(fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/* The drive's medium is the file behind fd (the same open file, not merely the same name). */
static void assert_medium_is(const struct cd *cd, int fd)
{
	struct stat a, b;

	pthread_mutex_lock(&rec.lock);
	assert_true(cd->fd >= 0);
	assert_int_equal(fstat(cd->fd, &a), 0);
	assert_int_equal(fstat(fd, &b), 0);
	assert_true(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
	/* Received with MSG_CMSG_CLOEXEC. */
	assert_true(fcntl(cd->fd, F_GETFD) & FD_CLOEXEC);
	pthread_mutex_unlock(&rec.lock);
}

static unsigned cd_changes(const struct cd *cd)
{
	unsigned n;

	pthread_mutex_lock(&rec.lock);
	n = cd->changes;
	pthread_mutex_unlock(&rec.lock);
	return n;
}

static enum vm_run_state vm_state(void)
{
	enum vm_run_state s;

	pthread_mutex_lock(&vm->lock);
	s = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

/* ---- tests ---- */

static void test_socket_modes(void **state)
{
	struct stat st;
	char run[128];

	(void)state;
	assert_int_equal(lstat(sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	snprintf(run, sizeof(run), "%s/run", dir);
	assert_int_equal(stat(run, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
}

static void test_status(void **state)
{
	int fd = client();

	(void)state;
	say(fd, "{\"cmd\":\"status\",\"id\":\"q\"}\n");
	assert_reply(fd, "\"ok\":true,\"id\":\"q\",\"name\":\"vm1\",\"state\":\"running\",\"cpus\":2,\"memory\":268435456,");
	assert_true(strstr(line, "\"snapshot_in_progress\":false}") != NULL);
	close(fd);
}

static void test_pause_resume(void **state)
{
	int fd = client();

	(void)state;
	say(fd, "{\"cmd\":\"pause\"}\n");
	assert_reply(fd, "{\"ok\":true,\"state\":\"paused\"}");
	assert_int_equal(vm_state(), VM_PAUSED);
	say(fd, "{\"cmd\":\"pause\"}\n");
	assert_reply(fd, "\"ok\":true");
	say(fd, "{\"cmd\":\"status\"}\n");
	assert_reply(fd, "\"state\":\"paused\"");
	say(fd, "{\"cmd\":\"resume\"}\n");
	assert_reply(fd, "{\"ok\":true,\"state\":\"running\"}");
	assert_int_equal(vm_state(), VM_RUNNING);
	close(fd);
}

static void test_pipelined_and_split(void **state)
{
	int fd = client();

	(void)state;
	say(fd, "{\"cmd\":\"status\",\"id\":1}\n{\"cmd\":\"bogus\",\"id\":2}\nnot json\n{\"cmd\":\"sta");
	assert_reply(fd, "\"id\":1,");
	assert_reply(fd, "{\"ok\":false,\"id\":2,\"error\":\"unknown command 'bogus'\"}");
	assert_reply(fd, "malformed JSON");
	usleep(50000);
	say(fd, "tus\",\"id\":3}\r\n");
	assert_reply(fd, "\"id\":3,");
	close(fd);
}

static void test_several_clients(void **state)
{
	int fds[5];

	(void)state;
	for (int i = 0; i < 5; i++)
		fds[i] = client();
	for (int i = 4; i >= 0; i--) {
		char req[64];
		snprintf(req, sizeof(req), "{\"cmd\":\"status\",\"id\":%d}\n", i);
		say(fds[i], req);
	}
	for (int i = 0; i < 5; i++) {
		char want[16];
		snprintf(want, sizeof(want), "\"id\":%d,", i);
		assert_reply(fds[i], want);
		close(fds[i]);
	}
}

static void test_overlong_line_closes(void **state)
{
	size_t len = CONTROL_LINE_MAX + 100;
	char *big = malloc(len);
	int fd = client(), other = client();

	(void)state;
	assert_non_null(big);
	memset(big, ' ', len);
	send_str(fd, big, len);
	assert_reply(fd, "longer than 65536 bytes");
	assert_true(closed_by_server(fd));
	close(fd);
	/* Others are unaffected. */
	say(other, "{\"cmd\":\"status\"}\n");
	assert_reply(other, "\"ok\":true");
	close(other);
	free(big);
}

static void test_longest_line_accepted(void **state)
{
	char *big = malloc(CONTROL_LINE_MAX + 1);
	static const char req[] = "{\"cmd\":\"status\"}";
	int fd = client();

	(void)state;
	assert_non_null(big);
	memset(big, ' ', CONTROL_LINE_MAX);
	memcpy(big + CONTROL_LINE_MAX - (sizeof(req) - 1), req, sizeof(req) - 1);
	big[CONTROL_LINE_MAX] = '\n';
	send_str(fd, big, CONTROL_LINE_MAX + 1);
	assert_reply(fd, "\"ok\":true");
	say(fd, "{\"cmd\":\"status\"}\n");
	assert_reply(fd, "\"ok\":true");
	close(fd);
	free(big);
}

static void test_half_close_gets_replies(void **state)
{
	int fd = client();

	(void)state;
	/* The last request has no newline: the end of input finishes it. */
	say(fd, "{\"cmd\":\"status\",\"id\":1}\n{\"cmd\":\"status\",\"id\":2}");
	shutdown(fd, SHUT_WR);
	assert_reply(fd, "\"id\":1,");
	assert_reply(fd, "\"id\":2,");
	assert_true(closed_by_server(fd));
	close(fd);
}

static void test_client_gone_mid_request(void **state)
{
	int fd = client();

	(void)state;
	say(fd, "{\"cmd\":\"sta");
	close(fd);
	usleep(50000);
	fd = client();
	say(fd, "{\"cmd\":\"status\"}\n");
	assert_reply(fd, "\"ok\":true");
	close(fd);
}

static void test_poweroff(void **state)
{
	int fd = client();

	(void)state;
	say(fd, "{\"cmd\":\"poweroff\"}\n");
	assert_reply(fd, "{\"ok\":true}");
	assert_int_equal(rec.power_buttons, 1);
	assert_int_equal(rec.exit_status, -1);
	close(fd);
}

static void check_exit(const char *cmd, int status)
{
	char req[64], want[64];
	int fd = client();

	snprintf(req, sizeof(req), "{\"cmd\":\"%s\"}\n", cmd);
	say(fd, req);
	snprintf(want, sizeof(want), "{\"ok\":true,\"exit_status\":%d}", status);
	assert_reply(fd, want);
	join_loop();
	assert_int_equal(rec.exit_status, status);
	close(fd);
}

static void test_reset(void **state)
{
	(void)state;
	check_exit("reset", 0);
}

static void test_quit(void **state)
{
	(void)state;
	check_exit("quit", 1);
}

static void snapshot_path(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", dir, name);
}

static void test_snapshot_keeps_running(void **state)
{
	char path[128], req[256], want[256];
	int fd = client(), other = client();
	struct stat st;

	(void)state;
	hold_saves();
	snapshot_path(path, sizeof(path), "a.snap");
	snprintf(req, sizeof(req), "{\"cmd\":\"snapshot\",\"path\":\"%s\",\"id\":9}\n", path);
	say(fd, req);
	wait_saves(1);
	/* The loop keeps serving others while the snapshot is written, and refuses what would disturb it. */
	say(other, "{\"cmd\":\"status\"}\n");
	assert_reply(other, "\"state\":\"paused\"");
	assert_true(strstr(line, "\"snapshot_in_progress\":true") != NULL);
	say(other, "{\"cmd\":\"resume\"}\n");
	assert_reply(other, "a snapshot is being written");
	say(other, "{\"cmd\":\"quit\"}\n");
	assert_reply(other, "a snapshot is being written");
	say(other, "{\"cmd\":\"snapshot\",\"path\":\"/tmp/x\"}\n");
	assert_reply(other, "a snapshot is being written");
	/* Requests pipelined behind the snapshot wait for its reply. */
	say(fd, "{\"cmd\":\"status\",\"id\":10}\n");
	usleep(100000);
	release_saves();
	snprintf(want, sizeof(want), "{\"ok\":true,\"id\":9,\"path\":\"%s\",\"state\":\"running\"}", path);
	assert_reply(fd, want);
	assert_reply(fd, "\"id\":10,\"name\"");
	assert_true(strstr(line, "\"state\":\"running\"") != NULL);
	assert_true(rec.paused_while_saving);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(vm_state(), VM_RUNNING);
	assert_int_equal(rec.exit_status, -1);
	close(fd);
	close(other);
}

static void test_snapshot_of_paused_vm_stays_paused(void **state)
{
	char path[128], req[256];
	int fd = client();

	(void)state;
	say(fd, "{\"cmd\":\"pause\"}\n");
	assert_reply(fd, "\"ok\":true");
	snapshot_path(path, sizeof(path), "b.snap");
	snprintf(req, sizeof(req), "{\"cmd\":\"snapshot\",\"path\":\"%s\"}\n", path);
	say(fd, req);
	assert_reply(fd, "\"state\":\"paused\"");
	assert_int_equal(vm_state(), VM_PAUSED);
	close(fd);
}

static void test_snapshot_failure_resumes(void **state)
{
	int fd = client();

	(void)state;
	rec.save_error = "cannot create /proc/x.tmp: No such file or directory";
	say(fd, "{\"cmd\":\"snapshot\",\"path\":\"/proc/x\",\"id\":\"f\"}\n");
	assert_reply(fd, "{\"ok\":false,\"id\":\"f\",\"error\":\"cannot create /proc/x.tmp: No such file or directory\"}");
	assert_int_equal(vm_state(), VM_RUNNING);
	assert_int_equal(rec.exit_status, -1);
	say(fd, "{\"cmd\":\"status\"}\n");
	assert_reply(fd, "\"snapshot_in_progress\":false");
	close(fd);
}

static void test_snapshot_then_exit(void **state)
{
	char path[128], req[256];
	int fd = client();

	(void)state;
	snapshot_path(path, sizeof(path), "c.snap");
	snprintf(req, sizeof(req), "{\"cmd\":\"snapshot\",\"path\":\"%s\",\"exit\":true}\n", path);
	say(fd, req);
	assert_reply(fd, "\"state\":\"exiting\"");
	join_loop();
	assert_int_equal(rec.exit_status, 1);
	/* Never resumed: nothing ran after the saved state. */
	assert_int_equal(rec.resumes, 0);
	close(fd);
}

static void test_snapshot_client_gone(void **state)
{
	char path[128], req[256];
	int fd = client();
	struct stat st;

	(void)state;
	hold_saves();
	snapshot_path(path, sizeof(path), "d.snap");
	snprintf(req, sizeof(req), "{\"cmd\":\"snapshot\",\"path\":\"%s\"}\n", path);
	say(fd, req);
	wait_saves(1);
	close(fd);
	usleep(50000); /* the server sees the hang-up while the save goes on */
	release_saves();
	fd = client();
	for (int i = 0; i < 500; i++) {
		say(fd, "{\"cmd\":\"status\"}\n");
		if (strstr(reply(fd), "\"snapshot_in_progress\":false"))
			break;
		usleep(10000);
	}
	assert_true(strstr(line, "\"snapshot_in_progress\":false") != NULL);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(vm_state(), VM_RUNNING);
	close(fd);
}

static void test_live_snapshot(void **state)
{
	char path[128], req[256];
	int fd = client(), other = client();
	struct stat st;

	(void)state;
	hold_saves();
	snapshot_path(path, sizeof(path), "live.snap");
	snprintf(req, sizeof(req), "{\"cmd\":\"snapshot\",\"path\":\"%s\",\"live\":true,\"id\":4}\n", path);
	say(fd, req);
	wait_saves(1);
	/* The guest runs while RAM is written; status shows the passes so far. */
	say(other, "{\"cmd\":\"status\"}\n");
	assert_reply(other, "\"state\":\"running\"");
	assert_true(strstr(line, "\"live_snapshot\":{\"in_progress\":true,\"passes\":2,\"pass_bytes\":[1048576,12288]}") != NULL);
	say(other, "{\"cmd\":\"pause\"}\n");
	assert_reply(other, "a snapshot is being written");
	release_saves();
	assert_reply(fd, "\"id\":4");
	assert_true(strstr(line, "\"state\":\"running\"") != NULL);
	assert_true(strstr(line, "\"live\":{\"passes\":2,\"pass_bytes\":[1048576,12288],\"pause_pages\":2,\"pause_bytes\":8192,\"pause_ms\":1.500,\"total_ms\":20.000}") != NULL);
	assert_true(rec.live_started_running);
	assert_true(rec.live_paused_in_pause);
	assert_int_equal(rec.pauses, 1);
	assert_int_equal(rec.resumes, 1);
	assert_int_equal(vm_state(), VM_RUNNING);
	assert_int_equal(stat(path, &st), 0);
	/* The last live snapshot stays in status. */
	say(other, "{\"cmd\":\"status\"}\n");
	assert_reply(other, "\"live_snapshot\":{\"passes\":2,");
	close(fd);
	close(other);
}

static void test_live_snapshot_then_exit(void **state)
{
	char path[128], req[256];
	int fd = client();

	(void)state;
	snapshot_path(path, sizeof(path), "live-exit.snap");
	snprintf(req, sizeof(req), "{\"cmd\":\"snapshot\",\"path\":\"%s\",\"live\":true,\"exit\":true}\n", path);
	say(fd, req);
	assert_reply(fd, "\"state\":\"exiting\"");
	assert_true(strstr(line, "\"live\":{\"passes\":2,") != NULL);
	join_loop();
	assert_int_equal(rec.exit_status, 1);
	assert_int_equal(rec.pauses, 1);
	assert_int_equal(rec.resumes, 0);
	close(fd);
}

/* The VM ends while the writer is still in its passes: its pause request fails instead of waiting forever. */
static void test_live_snapshot_vm_ends_first(void **state)
{
	char path[128], req[256];
	int fd = client();
	struct stat st;

	(void)state;
	hold_saves();
	snapshot_path(path, sizeof(path), "live-gone.snap");
	snprintf(req, sizeof(req), "{\"cmd\":\"snapshot\",\"path\":\"%s\",\"live\":true}\n", path);
	say(fd, req);
	wait_saves(1);
	vm_request_exit(vm, 3);
	join_loop();
	release_saves();
	control_stop(ctl); /* joins the writer */
	ctl = NULL;
	assert_true(rec.live_pause_failed);
	assert_int_equal(stat(path, &st), -1);
	close(fd);
}

/* A paused VM is saved at once, as without live, and stays paused. */
static void test_live_snapshot_of_paused_vm(void **state)
{
	char path[128], req[256];
	int fd = client();

	(void)state;
	say(fd, "{\"cmd\":\"pause\"}\n");
	assert_reply(fd, "\"ok\":true");
	snapshot_path(path, sizeof(path), "live-paused.snap");
	snprintf(req, sizeof(req), "{\"cmd\":\"snapshot\",\"path\":\"%s\",\"live\":true}\n", path);
	say(fd, req);
	assert_reply(fd, "\"state\":\"paused\"");
	assert_true(strstr(line, "\"live\"") == NULL);
	assert_true(rec.paused_while_saving);
	assert_int_equal(vm_state(), VM_PAUSED);
	close(fd);
}

/* ---- removable media ---- */

static void test_cd_insert_and_eject(void **state)
{
	char path[128], req[512], want[512];
	int fd = client(), image = open_image("a.iso", path, sizeof(path));

	(void)state;
	snprintf(req, sizeof(req), "{\"cmd\":\"cd-insert\",\"drive\":\"3:1\",\"path\":\"%s\",\"force\":false,\"id\":1}\n",
		 path);
	send_with_fds(fd, req, &image, 1);
	snprintf(want, sizeof(want), "{\"ok\":true,\"id\":1,\"drive\":\"3:1\",\"medium\":\"%s\"}", path);
	assert_string_equal(reply(fd), want);
	assert_medium_is(&cds[1], image);
	pthread_mutex_lock(&rec.lock);
	assert_string_equal(cds[1].path, path);
	assert_false(cds[1].force);
	pthread_mutex_unlock(&rec.lock);
	assert_int_equal(cd_changes(&cds[0]), 0);
	/* A bare port names the drive when only one has it; force reaches the drive. */
	say(fd, "{\"cmd\":\"cd-eject\",\"drive\":\"1\",\"force\":true}\n");
	assert_string_equal(reply(fd), "{\"ok\":true,\"drive\":\"1\",\"medium\":null}");
	pthread_mutex_lock(&rec.lock);
	assert_int_equal(cds[1].changes, 2);
	assert_int_equal(cds[1].last_fd, -1);
	assert_string_equal(cds[1].path, "");
	assert_true(cds[1].force);
	pthread_mutex_unlock(&rec.lock);
	close(image);
	close(fd);
}

static void test_cd_insert_without_descriptor(void **state)
{
	int fd = client();

	(void)state;
	say(fd, "{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"/x.iso\"}\n");
	assert_reply(fd, "cd-insert needs the image's file descriptor");
	assert_int_equal(cd_changes(&cds[0]), 0);
	close(fd);
}

static void test_unused_descriptors_closed(void **state)
{
	struct probe pr[5];
	int fd = client(), two[2];
	char path[128], req[512];

	(void)state;
	for (int i = 0; i < 5; i++)
		pr[i] = new_probe();
	/* With a request that takes none. */
	send_with_fds(fd, "{\"cmd\":\"status\"}\n", &pr[0].wr, 1);
	assert_reply(fd, "\"ok\":true");
	assert_probe_closed(&pr[0]);
	send_with_fds(fd, "{\"cmd\":\"cd-eject\",\"drive\":\"3:0\"}\n", &pr[1].wr, 1);
	assert_reply(fd, "\"medium\":null");
	assert_probe_closed(&pr[1]);
	/* With a cd-insert that is refused: no such drive, or the drive says no. */
	send_with_fds(fd, "{\"cmd\":\"cd-insert\",\"drive\":\"4:0\",\"path\":\"/x.iso\"}\n", &pr[2].wr, 1);
	assert_string_equal(reply(fd), "{\"ok\":false,\"error\":\"no CD drive \\\"4:0\\\" (drives: 3:0, 3:1)\"}");
	assert_probe_closed(&pr[2]);
	pthread_mutex_lock(&rec.lock);
	cds[0].refuse = "the guest has locked the medium in";
	pthread_mutex_unlock(&rec.lock);
	send_with_fds(fd, "{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"/x.iso\"}\n", &pr[3].wr, 1);
	assert_reply(fd, "the guest has locked the medium in");
	assert_probe_closed(&pr[3]);
	pthread_mutex_lock(&rec.lock);
	cds[0].refuse = NULL;
	pthread_mutex_unlock(&rec.lock);
	/* Two with one cd-insert: the first is the image, the second is closed. */
	two[0] = open_image("b.iso", path, sizeof(path));
	two[1] = pr[4].wr;
	snprintf(req, sizeof(req), "{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"%s\"}\n", path);
	send_with_fds(fd, req, two, 2);
	assert_reply(fd, "\"ok\":true");
	assert_medium_is(&cds[0], two[0]);
	assert_probe_closed(&pr[4]);
	close(two[0]);
	close(fd);
}

static void test_descriptor_goes_with_its_line(void **state)
{
	char path[128], req[512];
	int fd = client(), image = open_image("c.iso", path, sizeof(path));
	struct probe pr = new_probe();
	char *first;
	size_t half;

	(void)state;
	/* Behind a request without one, unanswered yet: the descriptor is the cd-insert's. */
	snprintf(req, sizeof(req), "{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"%s\",\"id\":2}\n", path);
	say(fd, "{\"cmd\":\"status\",\"id\":1}\n");
	send_with_fds(fd, req, &image, 1);
	assert_reply(fd, "\"id\":1,\"name\"");
	assert_reply(fd, "{\"ok\":true,\"id\":2,\"drive\":\"3:0\"");
	assert_medium_is(&cds[0], image);
	/* A line sent in two parts, the descriptor with the first. */
	snprintf(req, sizeof(req), "{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"%s\",\"id\":3}\n", path);
	half = strlen(req) / 2;
	first = strndup(req, half);
	assert_non_null(first);
	send_with_fds(fd, first, &pr.wr, 1);
	free(first);
	say(fd, req + half);
	assert_reply(fd, "{\"ok\":true,\"id\":3,");
	pthread_mutex_lock(&rec.lock);
	assert_int_equal(cds[0].changes, 2);
	assert_int_equal(cds[0].last_fd, cds[0].fd);
	pthread_mutex_unlock(&rec.lock);
	/* The drive holds the pipe now; ejecting lets it go. */
	say(fd, "{\"cmd\":\"cd-eject\",\"drive\":\"3:0\"}\n");
	assert_reply(fd, "\"ok\":true");
	assert_probe_closed(&pr);
	/* A descriptor sent with one line is not kept for the next. */
	pr = new_probe();
	send_with_fds(fd, "{\"cmd\":\"status\"}\n", &pr.wr, 1);
	say(fd, req);
	assert_reply(fd, "\"name\"");
	assert_reply(fd, "cd-insert needs the image's file descriptor");
	assert_probe_closed(&pr);
	close(image);
	close(fd);
}

static void test_descriptor_closed_with_client(void **state)
{
	struct probe pr = new_probe();
	int fd = client();

	(void)state;
	send_with_fds(fd, "{\"cmd\":\"cd-insert\",\"dri", &pr.wr, 1);
	close(fd);
	assert_probe_closed(&pr);
	assert_int_equal(cd_changes(&cds[0]), 0);
}

static void test_media_refused_during_snapshot(void **state)
{
	char path[128], req[256];
	int fd = client(), other = client();
	struct probe pr = new_probe();

	(void)state;
	hold_saves();
	snapshot_path(path, sizeof(path), "m.snap");
	snprintf(req, sizeof(req), "{\"cmd\":\"snapshot\",\"path\":\"%s\"}\n", path);
	say(fd, req);
	wait_saves(1);
	send_with_fds(other, "{\"cmd\":\"cd-insert\",\"drive\":\"3:0\",\"path\":\"/x.iso\"}\n", &pr.wr, 1);
	assert_reply(other, "a snapshot is being written");
	assert_probe_closed(&pr);
	say(other, "{\"cmd\":\"cd-eject\",\"drive\":\"3:0\"}\n");
	assert_reply(other, "a snapshot is being written");
	assert_int_equal(cd_changes(&cds[0]), 0);
	release_saves();
	assert_reply(fd, "\"ok\":true");
	close(fd);
	close(other);
}

static void test_too_many_clients(void **state)
{
	int fds[40];

	(void)state;
	for (int i = 0; i < 32; i++)
		fds[i] = client();
	fds[32] = client();
	assert_reply(fds[32], "too many control clients");
	assert_true(closed_by_server(fds[32]));
	close(fds[32]);
	/* A slot frees up once the server has seen a client go. */
	close(fds[0]);
	for (int i = 0; i < 500; i++) {
		fds[0] = client();
		say(fds[0], "{\"cmd\":\"status\"}\n");
		if (!strstr(reply(fds[0]), "too many"))
			break;
		close(fds[0]);
		usleep(10000);
	}
	assert_true(strstr(line, "\"ok\":true") != NULL);
	for (int i = 0; i < 32; i++)
		close(fds[i]);
}

static void test_second_vm_refused(void **state)
{
	struct vm *second = new_vm("vm1", sock);
	struct control *c2 = NULL;
	int fd;

	(void)state;
	assert_int_equal(control_start(second, &c2), -1);
	assert_null(c2);
	free_vm(second);
	/* The first one still answers. */
	fd = client();
	say(fd, "{\"cmd\":\"status\"}\n");
	assert_reply(fd, "\"ok\":true");
	close(fd);
}

static void test_socket_removed_on_stop(void **state)
{
	struct stat st;

	(void)state;
	evloop_stop(vm->loop);
	join_loop();
	control_stop(ctl);
	ctl = NULL;
	assert_int_equal(lstat(sock, &st), -1);
	assert_int_equal(errno, ENOENT);
}

/* ---- start-up cases without the fixture ---- */

static void with_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/hyve-ctl-test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/vm.sock", dir);
}

static void without_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_stale_socket_replaced(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct control *c = NULL;
	struct vm *v;
	int fd;

	(void)state;
	with_dir();
	/* A socket file nobody listens on any more, as a killed VM leaves behind. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	v = new_vm("vm1", sock);
	assert_int_equal(control_start(v, &c), 0);
	assert_non_null(c);
	control_stop(c);
	free_vm(v);
	without_dir();
}

static void test_non_socket_file_refused(void **state)
{
	struct control *c = NULL;
	struct vm *v;
	int fd;

	(void)state;
	with_dir();
	fd = open(sock, O_WRONLY | O_CREAT, 0600);
	close(fd);
	v = new_vm("vm1", sock);
	assert_int_equal(control_start(v, &c), -1);
	assert_null(c);
	free_vm(v);
	without_dir();
}

static void test_disabled(void **state)
{
	struct control *c = (struct control *)1;
	struct vm *v;

	(void)state;
	v = new_vm("vm1", "off");
	assert_int_equal(control_start(v, &c), 0);
	assert_null(c);
	free_vm(v);
	v = new_vm("vm1", "none");
	c = (struct control *)1;
	assert_int_equal(control_start(v, &c), 0);
	assert_null(c);
	control_stop(c);
	free_vm(v);
}

static void test_path_too_long(void **state)
{
	char path[200];
	struct control *c = NULL;
	struct vm *v;

	(void)state;
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	v = new_vm("vm1", path);
	assert_int_equal(control_start(v, &c), -1);
	free_vm(v);
}

static void test_name_with_slash(void **state)
{
	struct control *c = NULL;
	struct vm *v;

	(void)state;
	v = new_vm("a/b", NULL);
	assert_int_equal(control_start(v, &c), -1);
	free_vm(v);
}

/* ---- who may connect (SO_PEERCRED) ---- */

static bool find_nobody(uid_t *uid, gid_t *gid)
{
	struct passwd *pw = getpwnam("nobody");

	if (!pw || pw->pw_uid == 0)
		return false;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return true;
}

/* Lets any user reach the socket by its path, as a careless folder or a handed-on socket would. */
static void open_up_socket_path(void)
{
	char run[128];

	snprintf(run, sizeof(run), "%s/run", dir);
	assert_int_equal(chmod(dir, 0711), 0);
	assert_int_equal(chmod(run, 0711), 0);
	assert_int_equal(chmod(sock, 0666), 0);
}

/*
 * Exit codes of a client child running as uid:gid: 0 served, 1 refused
 * with the error line and disconnected, 2 or 3 anything else.
 */
static int client_as(uid_t uid, gid_t gid)
{
	pid_t pid = fork();
	int wstatus;

	assert_true(pid >= 0);
	if (pid == 0) {
		char buf[CONTROL_REPLY_MAX];
		ssize_t n;
		int fd;
		/* root again first, if the test process had set its effective ids to the user's */
		if (seteuid(0) < 0 || setegid(0) < 0 || setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
			_exit(2);
		/* No cmocka in the child: a failed assertion would carry on with the parent's tests. */
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		static const char req[] = "{\"cmd\":\"status\"}\n";
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(3);
		/* A refused client may find the connection closed before or after its request. */
		if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) < 0 && errno != EPIPE && errno != ECONNRESET)
			_exit(3);
		n = read_line_timeout(fd, buf, sizeof(buf), 5000);
		if (n > 0 && strstr(buf, "\"ok\":true"))
			_exit(0);
		if (n > 0 && strstr(buf, "permission denied") && closed_by_server(fd))
			_exit(1);
		_exit(2);
	}
	assert_int_equal(waitpid(pid, &wstatus, 0), pid);
	assert_true(WIFEXITED(wstatus));
	return WEXITSTATUS(wstatus);
}

static void test_other_users_refused(void **state)
{
	uid_t uid = 0;
	gid_t gid = 0;
	int fd;

	(void)state;
	if (geteuid() != 0 || !find_nobody(&uid, &gid)) {
		print_message("not root or no user nobody: cannot connect as another user here\n");
		skip();
	}
	open_up_socket_path();
	assert_int_equal(client_as(uid, gid), 1);
	/* root is still served, and so are later clients */
	assert_int_equal(client_as(0, 0), 0);
	fd = client();
	say(fd, "{\"cmd\":\"status\"}\n");
	assert_reply(fd, "\"ok\":true");
	close(fd);
}

/* A VM that switched to a user (sandbox.user) serves that user's clients. */
static void test_vm_user_served(void **state)
{
	uid_t uid = 0;
	gid_t gid = 0;
	struct stat st;
	int rc;

	(void)state;
	if (geteuid() != 0 || !find_nobody(&uid, &gid)) {
		print_message("not root or no user nobody: cannot connect as another user here\n");
		skip();
	}
	assert_int_equal(control_set_owner(ctl, uid, gid), 0);
	assert_int_equal(lstat(sock, &st), 0);
	assert_int_equal(st.st_uid, uid);
	assert_int_equal(st.st_gid, gid);
	open_up_socket_path();
	/* The server runs as that user now (as hyve does after the switch): its clients are served. */
	assert_int_equal(setegid(gid), 0);
	assert_int_equal(seteuid(uid), 0);
	rc = client_as(uid, gid);
	assert_int_equal(seteuid(0), 0);
	assert_int_equal(setegid(0), 0);
	assert_int_equal(rc, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_socket_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_and_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_several_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlong_line_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_longest_line_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_close_gets_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_gone_mid_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poweroff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_keeps_running, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_of_paused_vm_stays_paused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_failure_resumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_then_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_client_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_snapshot_then_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_snapshot_vm_ends_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_snapshot_of_paused_vm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cd_insert_and_eject, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cd_insert_without_descriptor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unused_descriptors_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_descriptor_goes_with_its_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_descriptor_closed_with_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_media_refused_during_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_vm_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_removed_on_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_users_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vm_user_served, setup, teardown),
		cmocka_unit_test(test_stale_socket_replaced),
		cmocka_unit_test(test_non_socket_file_refused),
		cmocka_unit_test(test_disabled),
		cmocka_unit_test(test_path_too_long),
		cmocka_unit_test(test_name_with_slash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
