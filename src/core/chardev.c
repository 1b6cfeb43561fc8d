#include "chardev.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "config.h"
#include "evloop.h"
#include "log.h"

#define OUTBUF_MAX (64 * 1024)
#define READ_CHUNK 512

enum chardev_kind { CD_STDIO, CD_FILE, CD_TCP, CD_UNIX };

struct chardev {
	/*
	 * Guards the client fd (replaced by the loop thread, written by vCPU
	 * threads), `paused` and the output buffer. Never held while calling
	 * the consumer back.
	 */
	pthread_mutex_t lock;
	char name[32];
	enum chardev_kind kind;
	struct evloop *loop;
	chardev_input_fn on_input;
	chardev_room_fn room;
	void *opaque;

	int in_fd;        /* read for input; -1 when there is none */
	int out_fd;       /* written; for sockets the client, -1 without one */
	int listen_fd;    /* sockets only */
	bool in_watched;  /* in_fd is registered with the loop */
	bool paused;
	char *unix_path;  /* unlinked on close */

	uint8_t *obuf;    /* sockets: output the client has not taken yet */
	size_t olen;
};

static const char accepted_forms[] = "stdio, file=PATH, tcp=[ADDR:]PORT or unix=PATH";

/* ---- terminal ---- */

static struct termios saved_tio;
static volatile sig_atomic_t tio_saved;
static bool stdio_in_use;

void chardev_restore_terminal(void)
{
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
}

/* Raw mode: the guest, not the host tty, handles echo, line editing and ^C. */
static void enter_raw_mode(void)
{
	static bool atexit_done;
	struct termios tio;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio) < 0)
		return;
	tio = saved_tio;
	tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
	tio.c_oflag &= ~(tcflag_t)OPOST;
	tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
	tio.c_cflag |= CS8;
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	tio_saved = 1;
	if (!atexit_done) {
		atexit(chardev_restore_terminal);
		atexit_done = true;
	}
	tcsetattr(STDIN_FILENO, TCSANOW, &tio);
}

/* ---- helpers ---- */

static uint32_t client_events(const struct chardev *cd)
{
	return (cd->paused ? 0 : EPOLLIN) | (cd->olen ? EPOLLOUT : 0);
}

/* Called with cd->lock held after `paused` or `olen` changed. */
static void update_watch(struct chardev *cd)
{
	if (!cd->loop)
		return;
	if (cd->kind == CD_STDIO) {
		if (cd->in_fd >= 0 && cd->in_watched)
			evloop_modify(cd->loop, cd->in_fd, cd->paused ? 0 : EPOLLIN);
		return;
	}
	if (cd->out_fd >= 0)
		evloop_modify(cd->loop, cd->out_fd, client_events(cd));
}

/*
 * Reads as much input as the consumer has room for and hands it over.
 * Returns -1 at end of input or on a read error, else 0.
 */
static int deliver_input(struct chardev *cd, int fd)
{
	uint8_t buf[READ_CHUNK];
	size_t want = sizeof(buf);
	bool paused;
	ssize_t n;

	pthread_mutex_lock(&cd->lock);
	paused = cd->paused;
	pthread_mutex_unlock(&cd->lock);
	if (paused)
		return 0;
	if (cd->room) {
		size_t room = cd->room(cd->opaque);
		if (room == 0)
			return 0;
		if (room < want)
			want = room;
	}
	n = read(fd, buf, want);
	if (n > 0) {
		if (cd->on_input)
			cd->on_input(cd->opaque, buf, (size_t)n);
		return 0;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	return -1;
}

/* Plain write of everything, for stdio and files: the guest's output must not be lost. */
static void write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			/* Someone made the fd non-blocking (a shared tty): wait, briefly. */
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			if (poll(&p, 1, 1000) > 0)
				continue;
		}
		return;
	}
}

/* ---- stdio ---- */

static void stdin_event(void *opaque, uint32_t events)
{
	struct chardev *cd = opaque;

	if (cd->in_fd < 0)
		return;
	if (events & EPOLLIN) {
		if (deliver_input(cd, cd->in_fd) == 0)
			return;
	} else if (!(events & (EPOLLHUP | EPOLLERR))) {
		return;
	}
	pthread_mutex_lock(&cd->lock);
	evloop_del(cd->loop, cd->in_fd);
	cd->in_watched = false;
	/*
	 * A hang-up seen while paused may still leave data to read: watch
	 * again on resume. Otherwise input has ended for good.
	 */
	if (!(cd->paused && !(events & EPOLLIN)))
		cd->in_fd = -1;
	pthread_mutex_unlock(&cd->lock);
}

static int open_stdio(struct chardev *cd)
{
	if (stdio_in_use) {
		log_error("%s: stdio is already the backend of another device", cd->name);
		return -1;
	}
	stdio_in_use = true;
	cd->out_fd = STDOUT_FILENO;
	if (!cd->loop || fcntl(STDIN_FILENO, F_GETFD) < 0)
		return 0;
	enter_raw_mode();
	/* Set before watching: the loop may call back at once. */
	cd->in_fd = STDIN_FILENO;
	cd->in_watched = true;
	/* stdin may be a regular file or /dev/null, which epoll refuses: then there is no input. */
	if (evloop_add(cd->loop, STDIN_FILENO, EPOLLIN, stdin_event, cd) < 0) {
		log_debug("%s: stdin cannot be watched (%s); serial input disabled", cd->name, strerror(errno));
		cd->in_fd = -1;
		cd->in_watched = false;
	}
	return 0;
}

/* ---- file ---- */

static int open_file(struct chardev *cd, const char *path)
{
	if (!*path) {
		log_error("%s: file= needs a path", cd->name);
		return -1;
	}
	cd->out_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (cd->out_fd < 0) {
		log_error("%s: cannot open %s: %s", cd->name, path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- sockets ---- */

static void client_event(void *opaque, uint32_t events);

/* Loop thread. The listener is silenced while a client is connected, so the next one waits in the backlog. */
static void drop_client(struct chardev *cd)
{
	pthread_mutex_lock(&cd->lock);
	if (cd->out_fd >= 0) {
		evloop_del(cd->loop, cd->out_fd);
		close(cd->out_fd);
	}
	cd->out_fd = cd->in_fd = -1;
	cd->olen = 0;
	pthread_mutex_unlock(&cd->lock);
	evloop_modify(cd->loop, cd->listen_fd, EPOLLIN);
}

static void flush_output(struct chardev *cd)
{
	pthread_mutex_lock(&cd->lock);
	if (cd->out_fd >= 0 && cd->olen) {
		ssize_t n = send(cd->out_fd, cd->obuf, cd->olen, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			memmove(cd->obuf, cd->obuf + n, cd->olen - (size_t)n);
			cd->olen -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			cd->olen = 0; /* the peer is gone; the hang-up event follows */
		}
		if (!cd->olen)
			update_watch(cd);
	}
	pthread_mutex_unlock(&cd->lock);
}

static void client_event(void *opaque, uint32_t events)
{
	struct chardev *cd = opaque;

	if (cd->out_fd < 0)
		return;
	if (events & EPOLLOUT)
		flush_output(cd);
	if (events & EPOLLIN) {
		if (deliver_input(cd, cd->out_fd) < 0)
			drop_client(cd);
		return;
	}
	if (events & (EPOLLHUP | EPOLLERR))
		drop_client(cd);
}

static void listen_event(void *opaque, uint32_t events)
{
	struct chardev *cd = opaque;
	int fd;

	if (!(events & EPOLLIN) || cd->out_fd >= 0)
		return;
	fd = accept4(cd->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (cd->kind == CD_TCP)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	pthread_mutex_lock(&cd->lock);
	cd->out_fd = cd->in_fd = fd;
	cd->olen = 0;
	if (evloop_add(cd->loop, fd, client_events(cd), client_event, cd) < 0) {
		close(fd);
		cd->out_fd = cd->in_fd = -1;
		pthread_mutex_unlock(&cd->lock);
		return;
	}
	pthread_mutex_unlock(&cd->lock);
	evloop_modify(cd->loop, cd->listen_fd, 0);
}

static int start_listening(struct chardev *cd, const char *what)
{
	if (listen(cd->listen_fd, 1) < 0) {
		log_error("%s: cannot listen on %s: %s", cd->name, what, strerror(errno));
		return -1;
	}
	cd->obuf = malloc(OUTBUF_MAX);
	if (!cd->obuf) {
		log_error("%s: out of memory", cd->name);
		return -1;
	}
	if (cd->loop && evloop_add(cd->loop, cd->listen_fd, EPOLLIN, listen_event, cd) < 0) {
		log_error("%s: cannot watch %s: %s", cd->name, what, strerror(errno));
		return -1;
	}
	return 0;
}

/* "[ADDR:]PORT" with ADDR a host name, an IPv4 address or a bracketed IPv6 one. */
static int split_host_port(const char *arg, char *host, size_t hsize, char *port, size_t psize)
{
	const char *colon = strrchr(arg, ':');
	const char *h = "127.0.0.1";
	size_t hlen = strlen(h);
	uint64_t num;

	if (colon) {
		h = arg;
		hlen = (size_t)(colon - arg);
		if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
			h++;
			hlen -= 2;
		}
		arg = colon + 1;
	}
	if (hlen == 0 || hlen >= hsize || strlen(arg) >= psize)
		return -1;
	if (parse_u64(arg, &num) < 0 || num == 0 || num > 65535)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	snprintf(port, psize, "%u", (unsigned)num);
	return 0;
}

static int open_tcp(struct chardev *cd, const char *arg)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char host[256], port[16], what[300];
	int rc;

	if (split_host_port(arg, host, sizeof(host), port, sizeof(port)) < 0) {
		log_error("%s: tcp=%s: expected tcp=[ADDR:]PORT with PORT 1-65535", cd->name, arg);
		return -1;
	}
	snprintf(what, sizeof(what), "tcp %s:%s", host, port);
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		log_error("%s: cannot listen on %s: %s", cd->name, what, gai_strerror(rc));
		return -1;
	}
	cd->listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (cd->listen_fd >= 0)
		setsockopt(cd->listen_fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int));
	if (cd->listen_fd < 0 || bind(cd->listen_fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		log_error("%s: cannot listen on %s: %s", cd->name, what, strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	return start_listening(cd, what);
}

/* A socket file nobody accepts on is a leftover from a previous run and may be replaced. */
static int remove_stale_socket(struct chardev *cd, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, rc;

	if (lstat(sa->sun_path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s: cannot listen on unix %s: exists and is not a socket", cd->name, sa->sun_path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (rc == 0) {
		log_error("%s: cannot listen on unix %s: %s", cd->name, sa->sun_path, strerror(EADDRINUSE));
		return -1;
	}
	unlink(sa->sun_path);
	return 0;
}

static int open_unix(struct chardev *cd, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char what[sizeof(sa.sun_path) + 8];

	if (!*path || strlen(path) >= sizeof(sa.sun_path)) {
		log_error("%s: unix=%s: expected a socket path of 1 to %zu bytes", cd->name, path,
			  sizeof(sa.sun_path) - 1);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	snprintf(what, sizeof(what), "unix %s", path);
	if (remove_stale_socket(cd, &sa) < 0)
		return -1;
	cd->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* The serial console is its owner's alone, whatever the umask; nobody can connect before listen(). */
	if (cd->listen_fd < 0 || bind(cd->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0) {
		log_error("%s: cannot listen on %s: %s", cd->name, what, strerror(errno));
		return -1;
	}
	cd->unix_path = strdup(path);
	return start_listening(cd, what);
}

/* ---- checking a spec without opening it ---- */

int chardev_spec_check(const char *spec, char *err, size_t errlen)
{
	char host[256], port[16];

	if (strcmp(spec, "stdio") == 0)
		return 0;
	if (strncmp(spec, "file=", 5) == 0)
		return spec[5] ? 0 : set_error(err, errlen, "file= needs a path");
	if (strncmp(spec, "tcp=", 4) == 0)
		return split_host_port(spec + 4, host, sizeof(host), port, sizeof(port)) == 0
			       ? 0
			       : set_error(err, errlen, "expected tcp=[ADDR:]PORT with PORT 1-65535");
	if (strncmp(spec, "unix=", 5) == 0) {
		size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
		return spec[5] && strlen(spec + 5) <= max
			       ? 0
			       : set_error(err, errlen, "expected unix=PATH with a path of 1 to %zu bytes", max);
	}
	return set_error(err, errlen, "unknown backend '%s' (accepted: %s)", spec, accepted_forms);
}

int chardev_spec_tcp_address(const char *spec, char *addr, size_t addrlen)
{
	char port[16];

	if (strncmp(spec, "tcp=", 4) != 0)
		return 0;
	if (split_host_port(spec + 4, addr, addrlen, port, sizeof(port)) < 0)
		snprintf(addr, addrlen, "%s", spec + 4); /* malformed: never called a loopback */
	return 1;
}

/* ---- public ---- */

static int open_backend(struct chardev *cd, const char *spec)
{
	if (strcmp(spec, "stdio") == 0) {
		cd->kind = CD_STDIO;
		return open_stdio(cd);
	}
	if (strncmp(spec, "file=", 5) == 0) {
		cd->kind = CD_FILE;
		return open_file(cd, spec + 5);
	}
	if (strncmp(spec, "tcp=", 4) == 0) {
		cd->kind = CD_TCP;
		return open_tcp(cd, spec + 4);
	}
	if (strncmp(spec, "unix=", 5) == 0) {
		cd->kind = CD_UNIX;
		return open_unix(cd, spec + 5);
	}
	log_error("%s: unknown backend '%s' (accepted: %s)", cd->name, spec, accepted_forms);
	return -1;
}

struct chardev *chardev_open(const char *name, const char *spec, struct evloop *loop,
			     chardev_input_fn on_input, chardev_room_fn room, void *opaque)
{
	struct chardev *cd = calloc(1, sizeof(*cd));

	if (!cd) {
		log_error("%s: out of memory", name);
		return NULL;
	}
	pthread_mutex_init(&cd->lock, NULL);
	snprintf(cd->name, sizeof(cd->name), "%s", name);
	cd->loop = loop;
	cd->on_input = on_input;
	cd->room = room;
	cd->opaque = opaque;
	cd->in_fd = cd->out_fd = cd->listen_fd = -1;
	cd->kind = CD_FILE; /* nothing to undo until a backend says otherwise */
	if (open_backend(cd, spec) < 0) {
		chardev_close(cd);
		return NULL;
	}
	return cd;
}

static void write_socket(struct chardev *cd, const uint8_t *buf, size_t len)
{
	size_t room;

	if (cd->out_fd < 0)
		return; /* no client: output is dropped */
	if (cd->olen == 0) {
		ssize_t n = send(cd->out_fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return; /* the peer is gone; the loop sees the hang-up */
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		}
	}
	room = OUTBUF_MAX - cd->olen;
	if (len > room)
		len = room;
	if (len == 0)
		return;
	memcpy(cd->obuf + cd->olen, buf, len);
	cd->olen += len;
	update_watch(cd);
}

void chardev_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	if (!cd || len == 0)
		return;
	pthread_mutex_lock(&cd->lock);
	if (cd->kind == CD_TCP || cd->kind == CD_UNIX)
		write_socket(cd, buf, len);
	else if (cd->out_fd >= 0)
		write_all(cd->out_fd, buf, len);
	pthread_mutex_unlock(&cd->lock);
}

void chardev_set_input_paused(struct chardev *cd, bool paused)
{
	if (!cd)
		return;
	pthread_mutex_lock(&cd->lock);
	if (cd->paused != paused) {
		cd->paused = paused;
		if (!paused && cd->kind == CD_STDIO && cd->in_fd >= 0 && !cd->in_watched && cd->loop) {
			/* Re-watch after a hang-up seen while paused: what is left is still read. */
			cd->in_watched = evloop_add(cd->loop, cd->in_fd, EPOLLIN, stdin_event, cd) == 0;
			if (!cd->in_watched)
				cd->in_fd = -1;
		} else {
			update_watch(cd);
		}
	}
	pthread_mutex_unlock(&cd->lock);
}

void chardev_close(struct chardev *cd)
{
	if (!cd)
		return;
	if (cd->kind == CD_STDIO) {
		if (cd->in_fd >= 0 && cd->in_watched)
			evloop_del(cd->loop, cd->in_fd);
		chardev_restore_terminal();
		stdio_in_use = false;
	} else if (cd->kind == CD_FILE) {
		if (cd->out_fd >= 0)
			close(cd->out_fd);
	} else {
		if (cd->out_fd >= 0) {
			if (cd->loop)
				evloop_del(cd->loop, cd->out_fd);
			close(cd->out_fd);
		}
		if (cd->listen_fd >= 0) {
			if (cd->loop)
				evloop_del(cd->loop, cd->listen_fd);
			close(cd->listen_fd);
		}
		if (cd->unix_path)
			unlink(cd->unix_path);
	}
	free(cd->unix_path);
	free(cd->obuf);
	pthread_mutex_destroy(&cd->lock);
	free(cd);
}
