/* Character-device backends: files, TCP and UNIX listeners, stdio on pipes, flow control. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pty.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/chardev.h"
#include "core/evloop.h"

/* A consumer with a small buffer, like a UART FIFO, that pauses its chardev when full. */
struct sink {
	pthread_mutex_t lock;
	struct chardev *cd;
	uint8_t buf[4096];
	size_t len, cap;
	bool paused;
};

struct fixture {
	struct evloop *loop;
	pthread_t thread;
	bool loop_stopped;
	char dir[64];
	char path[100];
	struct sink sink;
};

static void sink_input(void *opaque, const uint8_t *buf, size_t len)
{
	struct sink *s = opaque;

	pthread_mutex_lock(&s->lock);
	assert_true(s->len + len <= s->cap);
	memcpy(s->buf + s->len, buf, len);
	s->len += len;
	if (s->len == s->cap && !s->paused) {
		s->paused = true;
		chardev_set_input_paused(s->cd, true);
	}
	pthread_mutex_unlock(&s->lock);
}

static size_t sink_room(void *opaque)
{
	struct sink *s = opaque;
	size_t room;

	pthread_mutex_lock(&s->lock);
	room = s->cap - s->len;
	pthread_mutex_unlock(&s->lock);
	return room;
}

/* Takes everything received so far and resumes input. */
static size_t sink_take(struct sink *s, uint8_t *out)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->len;
	memcpy(out, s->buf, n);
	s->len = 0;
	if (s->paused) {
		s->paused = false;
		chardev_set_input_paused(s->cd, false);
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Collects `want` bytes through the sink within timeout_ms. */
static size_t sink_collect(struct sink *s, uint8_t *out, size_t want, int timeout_ms)
{
	size_t n = 0;

	for (int t = 0; t < timeout_ms && n < want; t++) {
		n += sink_take(s, out + n);
		if (n < want)
			sleep_ms(1);
	}
	return n;
}

static void *loop_main(void *opaque)
{
	evloop_run(opaque);
	return NULL;
}

static void stop_loop(struct fixture *f)
{
	if (f->loop_stopped)
		return;
	evloop_stop(f->loop);
	pthread_join(f->thread, NULL);
	f->loop_stopped = true;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/hyve-chardev-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/x", f->dir);
	pthread_mutex_init(&f->sink.lock, NULL);
	f->sink.cap = sizeof(f->sink.buf);
	f->loop = evloop_new();
	pthread_create(&f->thread, NULL, loop_main, f->loop);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	stop_loop(f);
	chardev_close(f->sink.cd);
	evloop_free(f->loop);
	unlink(f->path);
	rmdir(f->dir);
	pthread_mutex_destroy(&f->sink.lock);
	free(f);
	return 0;
}

static struct chardev *open_sink(struct fixture *f, const char *spec)
{
	f->sink.cd = chardev_open("test", spec, f->loop, sink_input, sink_room, &f->sink);
	return f->sink.cd;
}

/* A free TCP port on 127.0.0.1 (free a moment ago, at least). */
static unsigned free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static int connect_tcp_rcvbuf(unsigned port, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int connect_tcp(unsigned port)
{
	return connect_tcp_rcvbuf(port, 0);
}

/* Reads exactly len bytes or fails after timeout_ms. */
static void read_exactly(int fd, void *buf, size_t len)
{
	size_t n = 0;
	struct timeval tv = { 2, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (n < len) {
		ssize_t r = read(fd, (char *)buf + n, len - n);
		assert_true(r > 0);
		n += (size_t)r;
	}
}

/* ---- spec parsing ---- */

static void test_bad_specs(void **state)
{
	struct fixture *f = *state;
	const char *bad[] = { "", "serial", "file=", "tcp=", "tcp=0", "tcp=65536", "tcp=host:", "tcp=x:y",
			      "unix=", "stdio2", "FILE=/tmp/x" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(chardev_open("test", bad[i], f->loop, sink_input, sink_room, &f->sink));
}

/* ---- file ---- */

static void test_file_appends(void **state)
{
	struct fixture *f = *state;
	char spec[160], buf[64] = { 0 };
	int fd;

	snprintf(spec, sizeof(spec), "file=%s", f->path);
	fd = open(f->path, O_WRONLY | O_CREAT, 0644);
	assert_int_equal(write(fd, "old;", 4), 4);
	close(fd);
	assert_non_null(open_sink(f, spec));
	chardev_write(f->sink.cd, (const uint8_t *)"new", 3);
	fd = open(f->path, O_RDONLY);
	assert_int_equal(read(fd, buf, sizeof(buf)), 7);
	close(fd);
	assert_string_equal(buf, "old;new");
}

static void test_file_in_missing_dir_fails(void **state)
{
	struct fixture *f = *state;
	char spec[160];

	snprintf(spec, sizeof(spec), "file=%s/no/such/file", f->dir);
	assert_null(open_sink(f, spec));
}

/* ---- tcp ---- */

static void test_tcp_round_trip_and_one_client(void **state)
{
	struct fixture *f = *state;
	char spec[64];
	uint8_t buf[16];
	unsigned port = free_port();
	int c1, c2;

	snprintf(spec, sizeof(spec), "tcp=%u", port);
	assert_non_null(open_sink(f, spec));
	/* Without a client, output is dropped, not kept for later. */
	chardev_write(f->sink.cd, (const uint8_t *)"lost", 4);
	c1 = connect_tcp(port);
	assert_int_equal(write(c1, "hi", 2), 2);
	assert_int_equal(sink_collect(&f->sink, buf, 2, 2000), 2);
	assert_memory_equal(buf, "hi", 2);
	chardev_write(f->sink.cd, (const uint8_t *)"yo", 2);
	read_exactly(c1, buf, 2);
	assert_memory_equal(buf, "yo", 2);
	/* A second client waits in the backlog until the first leaves. */
	c2 = connect_tcp(port);
	assert_int_equal(write(c2, "2", 1), 1);
	sleep_ms(50);
	assert_int_equal(sink_take(&f->sink, buf), 0);
	close(c1);
	assert_int_equal(sink_collect(&f->sink, buf, 1, 2000), 1);
	assert_int_equal(buf[0], '2');
	chardev_write(f->sink.cd, (const uint8_t *)"!", 1);
	read_exactly(c2, buf, 1);
	assert_int_equal(buf[0], '!');
	close(c2);
}

static void test_tcp_port_in_use(void **state)
{
	struct fixture *f = *state;
	char spec[64];
	unsigned port = free_port();
	struct chardev *other;

	snprintf(spec, sizeof(spec), "tcp=127.0.0.1:%u", port);
	other = chardev_open("first", spec, NULL, NULL, NULL, NULL); /* no loop: closed while it runs */
	assert_non_null(other);
	assert_null(open_sink(f, spec));
	chardev_close(other);
}

static void test_tcp_slow_client_gets_everything_buffered(void **state)
{
	struct fixture *f = *state;
	char spec[64];
	static uint8_t out[48 * 1024], in[sizeof(out)];
	unsigned port = free_port();
	int c;

	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7);
	snprintf(spec, sizeof(spec), "tcp=localhost:%u", port);
	assert_non_null(open_sink(f, spec));
	/* A small receive buffer makes the backend queue what the socket cannot take. */
	c = connect_tcp_rcvbuf(port, 4096);
	sleep_ms(50); /* accepted */
	for (size_t i = 0; i < sizeof(out); i += 1024)
		chardev_write(f->sink.cd, out + i, 1024);
	read_exactly(c, in, sizeof(in));
	assert_memory_equal(in, out, sizeof(out));
	close(c);
}

/* ---- unix ---- */

static void test_unix_stale_socket_is_replaced(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char spec[160];
	uint8_t buf[4];
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), c;

	/* A socket file left by a process that is gone. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	snprintf(spec, sizeof(spec), "unix=%s", f->path);
	assert_non_null(open_sink(f, spec));
	c = connect_unix(f->path);
	assert_true(c >= 0);
	assert_int_equal(write(c, "u", 1), 1);
	assert_int_equal(sink_collect(&f->sink, buf, 1, 2000), 1);
	assert_int_equal(buf[0], 'u');
	close(c);
}

/* The socket is the serial console: only its owner may connect, whatever the umask. */
static void test_unix_socket_is_private(void **state)
{
	struct fixture *f = *state;
	mode_t old = umask(0);
	struct stat st;
	char spec[160];

	snprintf(spec, sizeof(spec), "unix=%s", f->path);
	assert_non_null(open_sink(f, spec));
	umask(old);
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
}

static void test_unix_live_socket_is_kept(void **state)
{
	struct fixture *f = *state;
	char spec[160];
	struct chardev *first;

	snprintf(spec, sizeof(spec), "unix=%s", f->path);
	first = chardev_open("first", spec, NULL, NULL, NULL, NULL); /* no loop: closed while it runs */
	assert_non_null(first);
	assert_null(open_sink(f, spec));
	chardev_close(first);
	/* Closing removes the socket file. */
	assert_int_equal(access(f->path, F_OK), -1);
}

static void test_unix_refuses_to_replace_a_file(void **state)
{
	struct fixture *f = *state;
	char spec[160];
	int fd = open(f->path, O_WRONLY | O_CREAT, 0644);

	close(fd);
	snprintf(spec, sizeof(spec), "unix=%s", f->path);
	assert_null(open_sink(f, spec));
	assert_int_equal(access(f->path, F_OK), 0);
}

/* ---- flow control ---- */

static void test_paused_input_is_not_lost(void **state)
{
	struct fixture *f = *state;
	char spec[160];
	uint8_t sent[3000], got[sizeof(sent)];
	size_t n = 0;
	int c;

	for (size_t i = 0; i < sizeof(sent); i++)
		sent[i] = (uint8_t)(i ^ (i >> 8));
	f->sink.cap = 10;
	snprintf(spec, sizeof(spec), "unix=%s", f->path);
	assert_non_null(open_sink(f, spec));
	c = connect_unix(f->path);
	assert_int_equal(write(c, sent, sizeof(sent)), (ssize_t)sizeof(sent));
	sleep_ms(50);
	pthread_mutex_lock(&f->sink.lock);
	assert_int_equal(f->sink.len, 10);
	assert_true(f->sink.paused);
	pthread_mutex_unlock(&f->sink.lock);
	n = sink_collect(&f->sink, got, sizeof(got), 5000);
	assert_int_equal(n, sizeof(sent));
	assert_memory_equal(got, sent, sizeof(sent));
	close(c);
}

/* ---- stdio (pipes, not a terminal) ---- */

static void test_stdio_on_pipes(void **state)
{
	struct fixture *f = *state;
	int in[2], out[2], saved_in = dup(0), saved_out = dup(1);
	uint8_t buf[8];
	struct chardev *second;
	size_t n;

	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	fflush(stdout);
	dup2(in[0], 0);
	dup2(out[1], 1);
	assert_non_null(open_sink(f, "stdio"));
	second = chardev_open("second", "stdio", f->loop, NULL, NULL, NULL);
	chardev_write(f->sink.cd, (const uint8_t *)"out", 3);
	assert_int_equal(write(in[1], "in", 2), 2);
	close(in[1]); /* end of input must not spin the loop */
	n = sink_collect(&f->sink, buf, 2, 2000);
	stop_loop(f);
	chardev_close(f->sink.cd);
	f->sink.cd = NULL;
	dup2(saved_in, 0);
	dup2(saved_out, 1);
	close(saved_in);
	close(saved_out);
	assert_null(second);
	assert_int_equal(n, 2);
	assert_memory_equal(buf, "in", 2);
	assert_int_equal(read(out[0], buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "out", 3);
	close(in[0]);
	close(out[0]);
	close(out[1]);
}

/* On a terminal stdio goes raw, and the terminal is put back on close and by the restore hook. */
static void test_stdio_terminal_raw_and_restored(void **state)
{
	struct fixture *f = *state;
	int master, slave, saved_in = dup(0);
	struct termios before, during, after;

	assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
	assert_int_equal(tcgetattr(slave, &before), 0);
	assert_true(before.c_lflag & ICANON);
	dup2(slave, 0);
	stop_loop(f); /* input is not the point here */
	f->sink.cd = chardev_open("tty", "stdio", f->loop, NULL, NULL, NULL);
	assert_non_null(f->sink.cd);
	tcgetattr(slave, &during);
	chardev_close(f->sink.cd);
	f->sink.cd = NULL;
	tcgetattr(slave, &after);
	chardev_restore_terminal(); /* again, as atexit would: harmless */
	dup2(saved_in, 0);
	close(saved_in);
	close(slave);
	close(master);
	assert_int_equal(during.c_lflag & (ICANON | ECHO | ISIG), 0);
	assert_int_equal(during.c_iflag & (ICRNL | IXON), 0);
	assert_int_equal(after.c_lflag, before.c_lflag);
	assert_int_equal(after.c_iflag, before.c_iflag);
	assert_int_equal(after.c_oflag, before.c_oflag);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_specs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_appends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_in_missing_dir_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_round_trip_and_one_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_port_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_slow_client_gets_everything_buffered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unix_stale_socket_is_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unix_live_socket_is_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unix_socket_is_private, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unix_refuses_to_replace_a_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paused_input_is_not_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stdio_on_pipes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stdio_terminal_raw_and_restored, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
