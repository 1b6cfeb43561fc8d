/*
 * What a VNC client can do to the VNC server before it is authenticated,
 * against the real server (an fbuf display on the test VM's event loop):
 * the ProtocolVersion is parsed strictly; connections that do not finish
 * the handshake are closed after 10 s and cannot crowd out others; wrong
 * passwords make their address wait; one client that floods input cannot
 * keep the event loop to itself. TLS (VeNCrypt) with certificates made by
 * certtool, checked with libvncclient (build/vncgrab) and, for what it
 * cannot do, a GnuTLS client written here.
 *
 * Every check waits for something the server does (a reply, a closed
 * connection, a log line); fixed bounds only guard against a hang.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/device.h"
#include "core/evloop.h"
#include "core/log.h"
#include "core/vm.h"
#include "testdevmem.h"
#include "testvm.h"
#include "ui/rfb.h"

#define SLOT 5
#define GUARD_MS 30000       /* only against a hang: every wait ends on an event */
#define HANDSHAKE_MS 10000   /* the server's deadline (src/ui/vnc.c) */
#define MAX_HANDSHAKES 4     /* the server's quota of connections in the handshake */
#define RECV_BUDGET (16 << 10)

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the server's log, captured from stderr (and passed on) ---- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char *text;
	size_t len, cap;
	int out; /* the real stderr */
} logcap = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, -1 };

static void *log_reader(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[4096];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (write(logcap.out, buf, (size_t)n) < 0) {
			/* the real stderr is gone: keep capturing */
		}
		pthread_mutex_lock(&logcap.lock);
		if (logcap.len + (size_t)n + 1 > logcap.cap) {
			logcap.cap = (logcap.len + (size_t)n + 1) * 2;
			logcap.text = realloc(logcap.text, logcap.cap);
		}
		memcpy(logcap.text + logcap.len, buf, (size_t)n);
		logcap.len += (size_t)n;
		logcap.text[logcap.len] = 0;
		pthread_cond_broadcast(&logcap.cond);
		pthread_mutex_unlock(&logcap.lock);
	}
	return NULL;
}

static void log_capture_start(void)
{
	int p[2];
	pthread_t t;

	if (pipe(p) < 0 || (logcap.out = dup(2)) < 0 || dup2(p[1], 2) < 0)
		abort();
	close(p[1]);
	if (pthread_create(&t, NULL, log_reader, (void *)(intptr_t)p[0]) != 0)
		abort();
	pthread_detach(t);
}

static long log_wait(size_t from, const char *needle, int timeout_ms);

/*
 * A place in the log after everything logged so far: a marker line goes
 * through the pipe behind whatever the server wrote before it.
 */
static size_t log_mark(void)
{
	static unsigned serial;
	char marker[48];
	long at;

	snprintf(marker, sizeof(marker), "test-vnc-security mark %u\n", ++serial);
	fputs(marker, stderr);
	at = log_wait(0, marker, GUARD_MS);
	assert_true(at >= 0);
	return (size_t)at + strlen(marker);
}

/* Offset of the first `needle` logged at or after `from`, waiting for it up to timeout_ms; -1 if none came. */
static long log_wait(size_t from, const char *needle, int timeout_ms)
{
	struct timespec until;
	long at = -1;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L)
		until.tv_sec++, until.tv_nsec -= 1000000000L;
	pthread_mutex_lock(&logcap.lock);
	for (;;) {
		const char *hit = logcap.len > from ? strstr(logcap.text + from, needle) : NULL;
		if (hit) {
			at = hit - logcap.text;
			break;
		}
		if (pthread_cond_timedwait(&logcap.cond, &logcap.lock, &until) != 0)
			break;
	}
	pthread_mutex_unlock(&logcap.lock);
	return at;
}

/* ---- certificates (certtool) ---- */

static char certdir[64];
static bool have_certs;

static void cert_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", certdir, name);
}

static int certtool(const char *args)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "cd %s && certtool %s >/dev/null 2>&1", certdir, args);
	return system(cmd);
}

static int write_text(const char *name, const char *text)
{
	char path[128];
	FILE *f;

	cert_path(path, sizeof(path), name);
	if (!(f = fopen(path, "w")))
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* A key (ECDSA: quick to make) and a certificate for it signed by ca (NULL: self-signed). */
static int make_cert(const char *name, const char *tmpl, const char *ca)
{
	char args[512];

	snprintf(args, sizeof(args), "--generate-privkey --key-type=ecdsa --outfile %s.key", name);
	if (certtool(args) != 0)
		return -1;
	if (ca)
		snprintf(args, sizeof(args),
			 "--generate-certificate --load-privkey %s.key --load-ca-certificate %s.pem "
			 "--load-ca-privkey %s.key --template %s --outfile %s.pem",
			 name, ca, ca, tmpl, name);
	else
		snprintf(args, sizeof(args), "--generate-self-signed --load-privkey %s.key --template %s --outfile %s.pem",
			 name, tmpl, name);
	return certtool(args);
}

/*
 * ca: the CA; server: 127.0.0.1 and localhost, signed by ca; client: a TLS
 * client certificate signed by ca; ca2 and client2: another CA and a client
 * certificate it signed; bad.pem: not PEM at all.
 */
static int setup_certs(void **state)
{
	(void)state;
	strcpy(certdir, "/tmp/test-vnc-tls.XXXXXX");
	if (!mkdtemp(certdir) || system("certtool --version >/dev/null 2>&1") != 0)
		return 0; /* the TLS tests skip */
	have_certs =
		write_text("ca.tmpl", "cn = \"hyve test CA\"\nca\ncert_signing_key\nexpiration_days = 2\n") == 0 &&
		write_text("server.tmpl", "cn = \"localhost\"\ndns_name = \"localhost\"\nip_address = \"127.0.0.1\"\n"
					  "tls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n") == 0 &&
		write_text("client.tmpl", "cn = \"hyve test client\"\ntls_www_client\nsigning_key\nexpiration_days = 2\n") == 0 &&
		write_text("bad.pem", "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n") == 0 &&
		make_cert("ca", "ca.tmpl", NULL) == 0 && make_cert("server", "server.tmpl", "ca") == 0 &&
		make_cert("client", "client.tmpl", "ca") == 0 && make_cert("ca2", "ca.tmpl", NULL) == 0 &&
		make_cert("client2", "client.tmpl", "ca2") == 0;
	return have_certs ? 0 : -1;
}

static int remove_certs(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", certdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- fixture: an fbuf whose VNC server listens on a UNIX socket or 127.0.0.1 ---- */

struct fx {
	struct vm *vm;
	char dir[64], sock[96];
	char target[128]; /* what vncgrab connects to */
	uint16_t port;    /* TCP; 0: the UNIX socket */
};

static uint16_t free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Options as "key=value" strings, NULL-terminated; *rc: the PCI attach status (the loop runs when 0). */
static struct fx *fx_new(const char *const *opts, bool tcp, int *rc)
{
	struct fx *f = calloc(1, sizeof(*f));
	char key[96], val[160];

	memset(&testdevmem, 0, sizeof(testdevmem));
	strcpy(f->dir, "/tmp/test-vnc-sec.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/vnc.sock", f->dir);
	f->vm = testvm_new(64ULL << 20);
	snprintf(key, sizeof(key), "pci.0.%d.0.device", SLOT);
	assert_int_equal(config_set(f->vm->cfg, key, "fbuf"), 0);
	if (tcp) {
		f->port = free_port();
		snprintf(key, sizeof(key), "pci.0.%d.0.tcp", SLOT);
		snprintf(val, sizeof(val), "127.0.0.1:%u", f->port);
		snprintf(f->target, sizeof(f->target), "127.0.0.1:%u", f->port);
	} else {
		snprintf(key, sizeof(key), "pci.0.%d.0.unix", SLOT);
		snprintf(val, sizeof(val), "%s", f->sock);
		snprintf(f->target, sizeof(f->target), "%s", f->sock);
	}
	assert_int_equal(config_set(f->vm->cfg, key, val), 0);
	for (; opts && *opts; opts++) {
		snprintf(key, sizeof(key), "pci.0.%d.0.%s", SLOT, *opts);
		assert_int_equal(config_set_assignment(f->vm->cfg, key), 0);
	}
	log_set_level(LOG_INFO);
	*rc = device_model_find("pci")->attach(f->vm);
	if (*rc == 0)
		testvm_start_loop(f->vm);
	return f;
}

static void fx_free(struct fx *f)
{
	testvm_free(f->vm);
	unlink(f->sock);
	rmdir(f->dir);
	free(f);
}

static uint32_t cfg_read32(struct vm *vm, unsigned reg)
{
	outl(vm, 0xCF8, 0x80000000u | SLOT << 11 | (reg & 0xFC));
	return inl(vm, 0xCFC);
}

/* A pixel written through BAR0, as a guest would without a KVM slot. */
static void fb_write32(struct fx *f, uint64_t off, uint32_t v)
{
	uint64_t bar0 = cfg_read32(f->vm, 0x10) & ~0xFull;
	uint8_t d[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	iobus_access(&f->vm->mmio, bar0 + off, d, 4, true);
}

/* ---- libvncclient: build/vncgrab ---- */

/* Pixel (x, y) of a capture as 0xRRGGBB, or -1 when vncgrab failed (refused, not authenticated...). */
static long grab(const struct fx *f, const char *opts, unsigned x, unsigned y)
{
	char cmd[1024], out[160];
	unsigned w, h, maxv;
	long px = -1;
	FILE *pf;

	snprintf(out, sizeof(out), "%s/grab.ppm", f->dir);
	snprintf(cmd, sizeof(cmd), "ASAN_OPTIONS=detect_leaks=0 %s %s %s %s", VNCGRAB, opts, f->target, out);
	if (system(cmd) != 0)
		return -1;
	pf = fopen(out, "rb");
	if (pf && fscanf(pf, "P6 %u %u %u", &w, &h, &maxv) == 3 && fgetc(pf) != EOF && x < w && y < h) {
		uint8_t rgb[3];
		fseek(pf, (long)(3 * ((size_t)y * w + x)), SEEK_CUR);
		if (fread(rgb, 1, 3, pf) == 3)
			px = rgb[0] << 16 | rgb[1] << 8 | rgb[2];
	}
	if (pf)
		fclose(pf);
	unlink(out);
	return px;
}

/* The screen reaches the server's copy on its next refresh: grab until the pixel shows (or a failure). */
static long grab_until(const struct fx *f, const char *opts, unsigned x, unsigned y, long want)
{
	long px = -1;

	for (int i = 0; i < 50; i++) {
		px = grab(f, opts, x, y);
		if (px == want || px < 0)
			return px;
		usleep(100 * 1000);
	}
	return px;
}

static bool have_vncgrab(void)
{
	return access(VNCGRAB, X_OK) == 0;
}

/* ---- a raw RFB client ---- */

static int connect_from(const struct fx *f, const char *source)
{
	int fd;

	if (!f->port) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		strcpy(a.sun_path, f->sock);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	} else {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(f->port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		if (source) {
			struct sockaddr_in s = { .sin_family = AF_INET };
			assert_int_equal(inet_pton(AF_INET, source, &s.sin_addr), 1);
			assert_int_equal(bind(fd, (struct sockaddr *)&s, sizeof(s)), 0);
		}
		assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	}
	return fd;
}

static int connect_to(const struct fx *f)
{
	return connect_from(f, NULL);
}

static void send_all(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* n bytes, or false when the server closed first (or nothing came within GUARD_MS). */
static bool recv_all(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t k;
		if (poll(&p, 1, GUARD_MS) <= 0)
			return false;
		k = recv(fd, (uint8_t *)buf + got, n - got, 0);
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

/* Bytes received until the server closed the connection, or -1 when it had not within timeout_ms. */
static long wait_eof(int fd, int timeout_ms)
{
	uint64_t until = now_ms() + (uint64_t)timeout_ms;
	long total = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ms();
		char buf[4096];
		ssize_t k;
		if (now >= until || poll(&p, 1, (int)(until - now)) <= 0)
			return -1;
		k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (k == 0 || (k < 0 && errno == ECONNRESET))
			return total;
		if (k > 0)
			total += k;
	}
}

/* The server already closed this connection (its EOF is waiting), without blocking. */
static bool closed_now(int fd)
{
	char buf[256];

	for (;;) {
		ssize_t k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (k == 0 || (k < 0 && errno == ECONNRESET))
			return true;
		if (k < 0)
			return false;
	}
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void read_reason(int fd, char *reason, size_t len)
{
	uint8_t n[4];
	uint32_t k;

	assert_true(recv_all(fd, n, 4));
	k = be32(n);
	assert_true(k < len);
	assert_true(recv_all(fd, reason, k));
	reason[k] = 0;
}

/* RFB 3.8 up to the security types: how many were offered (0: refused, with the reason). */
static int start_rfb(int fd, uint8_t types[256], char *reason, size_t len)
{
	char greeting[12];
	uint8_t n;

	assert_true(recv_all(fd, greeting, 12));
	assert_memory_equal(greeting, "RFB 003.008\n", 12);
	send_all(fd, "RFB 003.008\n", 12);
	assert_true(recv_all(fd, &n, 1));
	if (n == 0) {
		read_reason(fd, reason, len);
		return 0;
	}
	assert_true(recv_all(fd, types, n));
	return n;
}

/* VNC authentication (type 2): whether the server accepted the password. */
static bool vnc_auth(int fd, const char *password)
{
	uint8_t two = RFB_SEC_VNC_AUTH, challenge[16], response[16], result[4];
	char reason[256];

	send_all(fd, &two, 1);
	assert_true(recv_all(fd, challenge, 16));
	assert_int_equal(rfb_vnc_auth_response(password, challenge, response), 0);
	send_all(fd, response, 16);
	assert_true(recv_all(fd, result, 4));
	if (be32(result) == 0)
		return true;
	read_reason(fd, reason, sizeof(reason));
	return false;
}

/* ClientInit, and ServerInit read in full. */
static void client_init(int fd)
{
	uint8_t shared = 1, init[24], name[256];

	send_all(fd, &shared, 1);
	assert_true(recv_all(fd, init, 24));
	assert_true(be32(init + 20) < sizeof(name));
	assert_true(recv_all(fd, name, be32(init + 20)));
}

/* A client past the handshake, on a server without a password. */
static int ready_client(const struct fx *f)
{
	int fd = connect_to(f);
	uint8_t types[256], none = RFB_SEC_NONE, result[4];
	char reason[256];

	assert_int_equal(start_rfb(fd, types, reason, sizeof(reason)), 1);
	assert_int_equal(types[0], RFB_SEC_NONE);
	send_all(fd, &none, 1);
	assert_true(recv_all(fd, result, 4));
	assert_int_equal(be32(result), 0);
	client_init(fd);
	return fd;
}

/*
 * One attempt with a password from `source` (NULL: any): 1 accepted
 * (ServerInit read), 0 wrong password, -1 refused before authentication
 * (its reason in `reason`).
 */
static int try_password(const struct fx *f, const char *source, const char *password, char *reason, size_t len)
{
	int fd = connect_from(f, source), rc;
	uint8_t types[256];

	if (start_rfb(fd, types, reason, len) == 0) {
		close(fd);
		return -1;
	}
	assert_int_equal(types[0], RFB_SEC_VNC_AUTH);
	rc = vnc_auth(fd, password) ? 1 : 0;
	if (rc)
		client_init(fd);
	close(fd);
	return rc;
}

/* Tries until the server offers security types again (the back-off is over); false if it never did. */
static bool wait_admitted(const struct fx *f, const char *source)
{
	uint64_t until = now_ms() + GUARD_MS;

	while (now_ms() < until) {
		int fd = connect_from(f, source);
		uint8_t types[256];
		char reason[256];
		int n = start_rfb(fd, types, reason, sizeof(reason));
		close(fd);
		if (n > 0)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

/* ---- ProtocolVersion ---- */

static void test_version_strict(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
		{ "RFB 003.   \n\n8", 14 }, /* sscanf skipped the blanks and read on past the 12 bytes */
		{ "RFB  03.008\n", 12 },
		{ "RFB 003.-08\n", 12 },
		{ "RFB 003.0x8\n", 12 },
		{ "RFB 004.000\n", 12 },
		{ "RFB 003.008\r", 12 },
	};
	int rc, fd;
	struct fx *f = fx_new(NULL, false, &rc);
	uint8_t reply[12];

	(void)state;
	assert_int_equal(rc, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fd = connect_to(f);
		assert_true(recv_all(fd, reply, 12)); /* the server's version */
		send_all(fd, bad[i].bytes, bad[i].len);
		/* Closed without a byte of reply. */
		if (wait_eof(fd, GUARD_MS) != 0)
			fail_msg("ProtocolVersion %zu (\"%.12s\") was not refused", i, bad[i].bytes);
		close(fd);
	}
	/* 3.3 is answered with the one type the server chose; Apple's 3.889 is 3.8. */
	fd = connect_to(f);
	assert_true(recv_all(fd, reply, 12));
	send_all(fd, "RFB 003.003\n", 12);
	assert_true(recv_all(fd, reply, 4));
	assert_int_equal(be32(reply), RFB_SEC_NONE);
	close(fd);
	fd = connect_to(f);
	assert_true(recv_all(fd, reply, 12));
	send_all(fd, "RFB 003.889\n", 12);
	assert_true(recv_all(fd, reply, 2));
	assert_int_equal(reply[0], 1);
	assert_int_equal(reply[1], RFB_SEC_NONE);
	close(fd);
	fx_free(f);
}

/* ---- the handshake deadline and the quota of connections in the handshake ---- */

#define NIDLE 16

static void test_handshake_deadline_and_quota(void **state)
{
	int rc, idle[NIDLE], ready;
	struct fx *f = fx_new(NULL, false, &rc);
	size_t mark = log_mark();
	uint64_t t0;
	unsigned closed = 0;
	uint8_t req[10] = { RFB_UPDATE_REQUEST, 0, 0, 0, 0, 0, 0, 1, 0, 1 }, reply[4];

	(void)state;
	assert_int_equal(rc, 0);
	if (!have_vncgrab()) {
		fx_free(f);
		skip();
	}
	ready = ready_client(f);
	t0 = now_ms();
	for (int i = 0; i < NIDLE; i++)
		idle[i] = connect_to(f); /* and never a byte */
	/* Sixteen idle connections do not keep a client out... */
	fb_write32(f, (4 * 1024 + 9) * 4, 0x0000FF00);
	assert_int_equal(grab_until(f, "", 9, 4, 0x00FF00), 0x00FF00);
	/* ...because newcomers replaced the oldest: only the quota's worth were still open when it came. */
	for (int i = 0; i < NIDLE; i++)
		closed += closed_now(idle[i]);
	assert_true(closed >= NIDLE - MAX_HANDSHAKES + 1);
	assert_true(log_wait(mark, "connections in the handshake; closing the oldest", GUARD_MS) >= 0);
	/* The rest are closed by the deadline, and not before it. */
	for (int i = 0; i < NIDLE; i++) {
		if (wait_eof(idle[i], GUARD_MS) < 0)
			fail_msg("idle connection %d is still open", i);
		close(idle[i]);
	}
	assert_true(now_ms() - t0 >= HANDSHAKE_MS);
	assert_true(log_wait(mark, "no complete handshake within 10 s", GUARD_MS) >= 0);
	/* A client past the handshake is not subject to it: it still gets its update. */
	send_all(ready, req, sizeof(req));
	assert_true(recv_all(ready, reply, 4));
	assert_int_equal(reply[0], 0); /* FramebufferUpdate */
	close(ready);
	fx_free(f);
}

/* ---- the password back-off ---- */

static void test_password_backoff(void **state)
{
	static const char *const opts[] = { "password=good-pw", NULL };
	int rc;
	struct fx *f = fx_new(opts, false, &rc);
	char reason[256] = "";

	(void)state;
	assert_int_equal(rc, 0);
	/* A wrong password: the next attempt (every UNIX peer is one address) is refused at once. */
	assert_int_equal(try_password(f, NULL, "bad-pw", reason, sizeof(reason)), 0);
	assert_int_equal(try_password(f, NULL, "good-pw", reason, sizeof(reason)), -1);
	assert_non_null(strstr(reason, "try again in 1 s"));
	/* When the wait is over, another wrong password doubles it. */
	assert_true(wait_admitted(f, NULL));
	assert_int_equal(try_password(f, NULL, "bad-pw", reason, sizeof(reason)), 0);
	assert_int_equal(try_password(f, NULL, "good-pw", reason, sizeof(reason)), -1);
	assert_non_null(strstr(reason, "try again in 2 s"));
	/* The right password after the wait; it clears the record: the next failure waits 1 s again. */
	assert_true(wait_admitted(f, NULL));
	assert_int_equal(try_password(f, NULL, "good-pw", reason, sizeof(reason)), 1);
	assert_int_equal(try_password(f, NULL, "bad-pw", reason, sizeof(reason)), 0);
	assert_int_equal(try_password(f, NULL, "good-pw", reason, sizeof(reason)), -1);
	assert_non_null(strstr(reason, "try again in 1 s"));
	fx_free(f);
}

/* Over TCP each address has its own record: one address's failures do not lock another out. */
static void test_password_backoff_per_address(void **state)
{
	static const char *const opts[] = { "password=good-pw", NULL };
	int rc;
	struct fx *f = fx_new(opts, true, &rc);
	char reason[256] = "";

	(void)state;
	assert_int_equal(rc, 0);
	assert_int_equal(try_password(f, "127.0.0.2", "bad-pw", reason, sizeof(reason)), 0);
	assert_int_equal(try_password(f, "127.0.0.2", "good-pw", reason, sizeof(reason)), -1);
	assert_non_null(strstr(reason, "try again"));
	assert_int_equal(try_password(f, "127.0.0.3", "good-pw", reason, sizeof(reason)), 1);
	fx_free(f);
}

/* ---- the receive budget ---- */

/*
 * A gate on the event loop: while it is shut the loop thread waits in its
 * callback, so a test can queue input for several clients and let the
 * server find it all at once.
 */
struct gate {
	int efd;
	sem_t entered, release;
};

static void gate_event(void *opaque, uint32_t events)
{
	struct gate *g = opaque;
	uint64_t v;

	(void)events;
	if (read(g->efd, &v, sizeof(v)) == sizeof(v)) {
		sem_post(&g->entered);
		sem_wait(&g->release);
	}
}

static void gate_shut(struct vm *vm, struct gate *g)
{
	uint64_t one = 1;

	g->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(g->efd >= 0);
	sem_init(&g->entered, 0, 0);
	sem_init(&g->release, 0, 0);
	assert_int_equal(evloop_add(vm->loop, g->efd, EPOLLIN, gate_event, g), 0);
	assert_int_equal(write(g->efd, &one, sizeof(one)), sizeof(one));
	sem_wait(&g->entered);
}

static void gate_open(struct vm *vm, struct gate *g)
{
	sem_post(&g->release);
	evloop_del(vm->loop, g->efd);
	close(g->efd);
}

/* Room for `want` bytes queued on fd unread: the send buffer, as large as the system lets it be. */
static size_t big_send_buffer(int fd, size_t want)
{
	int size = (int)(4 * want), got = 0;
	socklen_t len = sizeof(got);

	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len), 0);
	/* The kernel counts its own overhead in the buffer too: leave it a third. */
	return (size_t)got / 3 < want ? (size_t)got / 3 : want;
}

#define FLOOD (1u << 20)
#define FLOOD_MIN (6 * RECV_BUDGET) /* so the flood takes several wakeups */

/* Pointer events, then a message of unknown type that makes the server drop the client. */
static uint8_t *flood_bytes(size_t len)
{
	uint8_t *p = calloc(1, len);

	assert_non_null(p);
	for (size_t i = 0; i + 6 <= len - 1; i += 6)
		p[i] = RFB_POINTER_EVENT;
	for (size_t i = (len - 1) / 6 * 6; i < len; i++)
		p[i] = 7;
	return p;
}

/*
 * With the loop held, a client queues a long flood ending in a bad message
 * and a second client queues its whole handshake. Let go: the second is
 * ready before the server reaches the end of the flood (without a budget
 * the server read the flood to its end, then served the second).
 */
static void test_receive_budget(void **state)
{
	int rc, flooder, second;
	struct fx *f = fx_new(NULL, false, &rc);
	struct gate g;
	size_t len, sent = 0, mark;
	uint8_t *flood;
	long ready_at, drop_at;

	(void)state;
	assert_int_equal(rc, 0);
	flooder = ready_client(f);
	len = big_send_buffer(flooder, FLOOD);
	assert_true(len >= FLOOD_MIN);
	flood = flood_bytes(len);
	mark = log_mark();
	gate_shut(f->vm, &g);
	while (sent < len) {
		ssize_t n = send(flooder, flood + sent, len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	second = connect_to(f); /* waits in the listen backlog */
	send_all(second, "RFB 003.008\n\x01\x01", 14);
	gate_open(f->vm, &g);
	free(flood);
	assert_int_equal(sent, len);
	ready_at = log_wait(mark, "ready (RFB 3.8", GUARD_MS);
	drop_at = log_wait(mark, "unknown message type", GUARD_MS);
	assert_true(ready_at >= 0 && drop_at >= 0);
	if (ready_at > drop_at)
		fail_msg("the second client was served only after the whole flood");
	close(second);
	close(flooder);
	fx_free(f);
}

/* ---- TLS (VeNCrypt) ---- */

/* fmt with the path of a file in certdir: an fbuf option or a vncgrab argument. */
static char *in_certdir(char *buf, size_t len, const char *fmt, const char *name)
{
	char path[128];

	cert_path(path, sizeof(path), name);
	snprintf(buf, len, fmt, path);
	return buf;
}

static bool tls_ready(void)
{
	return have_certs && have_vncgrab();
}

/* VeNCrypt in plain text up to the go-ahead for TLS; returns the subtype the server offers. */
static uint32_t vencrypt_until_tls(int fd)
{
	uint8_t types[256], b[4], nsub;
	uint8_t nineteen = RFB_SEC_VENCRYPT, v02[2] = { 0, 2 };
	char reason[256];
	uint32_t sub;

	assert_int_equal(start_rfb(fd, types, reason, sizeof(reason)), 1);
	assert_int_equal(types[0], RFB_SEC_VENCRYPT); /* and nothing without TLS */
	send_all(fd, &nineteen, 1);
	assert_true(recv_all(fd, b, 2));
	assert_int_equal(b[0], 0);
	assert_int_equal(b[1], 2);
	send_all(fd, v02, 2);
	assert_true(recv_all(fd, b, 1));
	assert_int_equal(b[0], 0); /* version accepted */
	assert_true(recv_all(fd, &nsub, 1));
	assert_int_equal(nsub, 1);
	assert_true(recv_all(fd, b, 4));
	sub = be32(b);
	send_all(fd, b, 4);
	assert_true(recv_all(fd, b, 1));
	assert_int_equal(b[0], 1); /* go ahead */
	return sub;
}

static void test_tls_x509_password(void **state)
{
	char cert[160], key[160], grab_ok[512], grab_bad[512], ca[160];
	const char *opts[] = { in_certdir(cert, sizeof(cert), "tls-cert=%s", "server.pem"),
			       in_certdir(key, sizeof(key), "tls-key=%s", "server.key"), "password=good-pw", NULL };
	struct fx *f;
	int rc, stalled;
	uint64_t t0;
	size_t mark;

	(void)state;
	if (!tls_ready())
		skip();
	f = fx_new(opts, true, &rc);
	assert_int_equal(rc, 0);
	mark = log_mark();
	/* A client that stops in the middle of the TLS handshake: the deadline applies there too. */
	t0 = now_ms();
	stalled = connect_to(f);
	assert_int_equal(vencrypt_until_tls(stalled), RFB_VENCRYPT_X509_VNC);
	/* libvncclient through X509Vnc: checks our certificate against the CA, then the password. */
	in_certdir(ca, sizeof(ca), "%s", "ca.pem");
	snprintf(grab_ok, sizeof(grab_ok), "-C %s -p good-pw", ca);
	fb_write32(f, (12 * 1024 + 34) * 4, 0x00123456);
	assert_int_equal(grab_until(f, grab_ok, 34, 12, 0x123456), 0x123456);
	/* A client without TLS finds nothing it can use. */
	assert_int_equal(grab(f, "-a 1,2 -p good-pw", 34, 12), -1);
	/* A wrong password inside TLS is refused (and starts the back-off). */
	snprintf(grab_bad, sizeof(grab_bad), "-C %s -p bad-pw", ca);
	assert_int_equal(grab(f, grab_bad, 34, 12), -1);
	assert_true(log_wait(mark, "gave a wrong password", GUARD_MS) >= 0);
	/* The stalled client is gone by now or soon, and not before its 10 s. */
	assert_true(wait_eof(stalled, GUARD_MS) >= 0);
	assert_true(now_ms() - t0 >= HANDSHAKE_MS);
	assert_true(log_wait(mark, "no complete handshake within 10 s", GUARD_MS) >= 0);
	close(stalled);
	fx_free(f);
}

/* tls-ca: only clients with a certificate from that CA; no password (X509None). */
static void test_tls_client_certificates(void **state)
{
	char cert[160], key[160], cafile[160], ca[160], cc[160], ck[160], c2[160], k2[160], opts_buf[1024];
	const char *opts[] = { in_certdir(cert, sizeof(cert), "tls-cert=%s", "server.pem"),
			       in_certdir(key, sizeof(key), "tls-key=%s", "server.key"),
			       in_certdir(cafile, sizeof(cafile), "tls-ca=%s", "ca.pem"), NULL };
	struct fx *f;
	int rc, fd;
	size_t mark;

	(void)state;
	if (!tls_ready())
		skip();
	f = fx_new(opts, true, &rc);
	assert_int_equal(rc, 0);
	in_certdir(ca, sizeof(ca), "%s", "ca.pem");
	in_certdir(cc, sizeof(cc), "%s", "client.pem");
	in_certdir(ck, sizeof(ck), "%s", "client.key");
	in_certdir(c2, sizeof(c2), "%s", "client2.pem");
	in_certdir(k2, sizeof(k2), "%s", "client2.key");
	fd = connect_to(f);
	assert_int_equal(vencrypt_until_tls(fd), RFB_VENCRYPT_X509_NONE);
	close(fd);
	fb_write32(f, (700 * 1024 + 1000) * 4, 0x00ABCDEF);
	mark = log_mark();
	snprintf(opts_buf, sizeof(opts_buf), "-C %s -c %s -k %s", ca, cc, ck);
	assert_int_equal(grab_until(f, opts_buf, 1000, 700, 0xABCDEF), 0xABCDEF);
	assert_true(log_wait(mark, "client certificate CN=hyve test client", GUARD_MS) >= 0);
	/* No client certificate, or one from another CA: refused in the TLS handshake. */
	snprintf(opts_buf, sizeof(opts_buf), "-C %s", ca);
	mark = log_mark();
	assert_int_equal(grab(f, opts_buf, 1000, 700), -1);
	assert_true(log_wait(mark, "TLS handshake failed: No certificate was found", GUARD_MS) >= 0);
	snprintf(opts_buf, sizeof(opts_buf), "-C %s -c %s -k %s", ca, c2, k2);
	mark = log_mark();
	assert_int_equal(grab(f, opts_buf, 1000, 700), -1);
	assert_true(log_wait(mark, "issuer is unknown", GUARD_MS) >= 0);
	/* A certificate from the right CA that is not for TLS clients (the server's own). */
	in_certdir(cc, sizeof(cc), "%s", "server.pem");
	in_certdir(ck, sizeof(ck), "%s", "server.key");
	snprintf(opts_buf, sizeof(opts_buf), "-C %s -c %s -k %s", ca, cc, ck);
	mark = log_mark();
	assert_int_equal(grab(f, opts_buf, 1000, 700), -1);
	assert_true(log_wait(mark, "intended purpose", GUARD_MS) >= 0);
	fx_free(f);
}

/* tls=anon: anonymous TLS, then the password (TLSVnc). */
static void test_tls_anon(void **state)
{
	static const char *const opts[] = { "tls=anon", "password=good-pw", NULL };
	struct fx *f;
	int rc, fd;

	(void)state;
	if (!tls_ready())
		skip();
	f = fx_new(opts, true, &rc);
	assert_int_equal(rc, 0);
	fd = connect_to(f);
	assert_int_equal(vencrypt_until_tls(fd), RFB_VENCRYPT_TLS_VNC);
	close(fd);
	fb_write32(f, (1 * 1024 + 2) * 4, 0x00FEDCBA);
	assert_int_equal(grab_until(f, "-p good-pw", 2, 1, 0xFEDCBA), 0xFEDCBA);
	assert_int_equal(grab(f, "-p bad-pw", 2, 1), -1);
	fx_free(f);
}

/* Blocking reads and writes through a GnuTLS client session. */
static void tls_recv_all(gnutls_session_t s, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = gnutls_record_recv(s, (uint8_t *)buf + got, n - got);
		if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
			continue;
		assert_true(k > 0);
		got += (size_t)k;
	}
}

static void tls_send_all(gnutls_session_t s, const void *buf, size_t n)
{
	size_t sent = 0;

	while (sent < n) {
		ssize_t k = gnutls_record_send(s, (const uint8_t *)buf + sent, n - sent);
		if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
			continue;
		assert_true(k > 0);
		sent += (size_t)k;
	}
}

/* An anonymous TLS client through TLSVnc and ClientInit, on a blocking socket. */
static gnutls_session_t tls_anon_client(int fd, gnutls_anon_client_credentials_t *cred, const char *password)
{
	gnutls_session_t s;
	uint8_t challenge[16], response[16], result[4], shared = 1, init[24], name[256];
	int rc;

	assert_int_equal(vencrypt_until_tls(fd), RFB_VENCRYPT_TLS_VNC);
	assert_int_equal(gnutls_anon_allocate_client_credentials(cred), 0);
	assert_int_equal(gnutls_init(&s, GNUTLS_CLIENT), 0);
	assert_int_equal(gnutls_priority_set_direct(s, "NORMAL:-VERS-TLS1.3:+ANON-ECDH:+ANON-DH", NULL), 0);
	assert_int_equal(gnutls_credentials_set(s, GNUTLS_CRD_ANON, *cred), 0);
	gnutls_transport_set_int(s, fd);
	do
		rc = gnutls_handshake(s);
	while (rc < 0 && !gnutls_error_is_fatal(rc));
	assert_int_equal(rc, 0);
	tls_recv_all(s, challenge, 16);
	assert_int_equal(rfb_vnc_auth_response(password, challenge, response), 0);
	tls_send_all(s, response, 16);
	tls_recv_all(s, result, 4);
	assert_int_equal(be32(result), 0);
	tls_send_all(s, &shared, 1);
	tls_recv_all(s, init, 24);
	assert_true(be32(init + 20) < sizeof(name));
	tls_recv_all(s, name, be32(init + 20));
	return s;
}

/*
 * The budget counts raw bytes under TLS too: a TLS flood queued while the
 * loop is held does not keep a second client (here: one that sends no RFB
 * at all) waiting until its end.
 */
static void test_tls_receive_budget(void **state)
{
	static const char *const opts[] = { "tls=anon", "password=good-pw", NULL };
	gnutls_anon_client_credentials_t cred;
	gnutls_session_t s;
	struct fx *f;
	struct gate g;
	int rc, flooder, second;
	size_t len, sent = 0, mark;
	uint8_t *flood, junk[12];
	long bad_at, drop_at;
	bool complete = true;

	(void)state;
	if (!tls_ready())
		skip();
	f = fx_new(opts, true, &rc);
	assert_int_equal(rc, 0);
	flooder = connect_to(f);
	s = tls_anon_client(flooder, &cred, "good-pw");
	len = big_send_buffer(flooder, FLOOD) * 15 / 16; /* room for the records' own bytes */
	assert_true(len >= FLOOD_MIN);
	flood = flood_bytes(len);
	assert_int_equal(fcntl(flooder, F_SETFL, fcntl(flooder, F_GETFL) | O_NONBLOCK), 0);
	mark = log_mark();
	gate_shut(f->vm, &g);
	while (sent < len && complete) {
		ssize_t n = gnutls_record_send(s, flood + sent, len - sent);
		if (n > 0)
			sent += (size_t)n;
		else
			complete = false; /* the socket is full: the test's sizing is wrong */
	}
	second = connect_to(f);
	memset(junk, 'x', sizeof(junk));
	send_all(second, junk, sizeof(junk));
	gate_open(f->vm, &g);
	free(flood);
	assert_true(complete);
	bad_at = log_wait(mark, "is not an RFB client", GUARD_MS);
	drop_at = log_wait(mark, "unknown message type", GUARD_MS);
	assert_true(bad_at >= 0 && drop_at >= 0);
	if (bad_at > drop_at)
		fail_msg("the second client was served only after the whole TLS flood");
	gnutls_deinit(s);
	gnutls_anon_free_client_credentials(cred);
	close(second);
	close(flooder);
	fx_free(f);
}

/* Bad TLS options and files: a one-line error, and no display. */
static void test_tls_bad_options(void **state)
{
	char cert[160], key[160], ca[160], bad[160], badkey[160], otherkey[160], missing[160], badca[160], keyca[160];
	struct {
		const char *opts[4];
		const char *message;
	} cases[] = {
		{ { cert, NULL }, "go together" },
		{ { key, NULL }, "go together" },
		{ { ca, NULL }, "tls-ca= needs both" },
		{ { "tls=anon", NULL }, "needs password=" },
		{ { "tls=anon", "password=x1", cert }, "excludes" },
		{ { "tls=x509", cert, key }, "tls=x509: expected anon" },
		{ { missing, key, NULL }, "No such file or directory" },
		{ { bad, key, NULL }, "tls-cert=" },
		{ { cert, badkey, NULL }, "tls-key=" },
		{ { cert, otherkey, NULL }, "is not the key of the certificate" },
		{ { cert, key, badca }, "tls-ca=" },
		{ { cert, key, keyca }, "no certificate in it" },
	};

	(void)state;
	if (!have_certs)
		skip();
	in_certdir(cert, sizeof(cert), "tls-cert=%s", "server.pem");
	in_certdir(key, sizeof(key), "tls-key=%s", "server.key");
	in_certdir(ca, sizeof(ca), "tls-ca=%s", "ca.pem");
	in_certdir(bad, sizeof(bad), "tls-cert=%s", "bad.pem");
	in_certdir(badkey, sizeof(badkey), "tls-key=%s", "bad.pem");
	in_certdir(otherkey, sizeof(otherkey), "tls-key=%s", "client.key");
	in_certdir(missing, sizeof(missing), "tls-cert=%s", "missing.pem");
	in_certdir(badca, sizeof(badca), "tls-ca=%s", "bad.pem");
	in_certdir(keyca, sizeof(keyca), "tls-ca=%s", "ca.key"); /* PEM, but no certificate */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t mark = log_mark();
		int rc;
		struct fx *f = fx_new(cases[i].opts, false, &rc);
		if (rc != -1)
			fail_msg("case %zu (%s ...) was accepted", i, cases[i].opts[0]);
		if (log_wait(mark, cases[i].message, GUARD_MS) < 0)
			fail_msg("case %zu: no \"%s\" in the error", i, cases[i].message);
		assert_int_equal(access(f->sock, F_OK), -1); /* nothing listens */
		fx_free(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_strict),
		cmocka_unit_test(test_handshake_deadline_and_quota),
		cmocka_unit_test(test_password_backoff),
		cmocka_unit_test(test_password_backoff_per_address),
		cmocka_unit_test(test_receive_budget),
		cmocka_unit_test(test_tls_x509_password),
		cmocka_unit_test(test_tls_client_certificates),
		cmocka_unit_test(test_tls_anon),
		cmocka_unit_test(test_tls_receive_budget),
		cmocka_unit_test(test_tls_bad_options),
	};

	log_capture_start();
	return cmocka_run_group_tests(tests, setup_certs, remove_certs);
}
