/*
 * vncinput: a test tool that drives a VNC server's keyboard and pointer
 * through libvncclient, one command per line on stdin:
 *
 *   key KEYSYM 0|1          KeyEvent (X keysym, decimal or 0x hex)
 *   xkey QNUM KEYSYM 0|1    QEMU extended key event (QEMU key number and keysym)
 *   ptr X Y BUTTONMASK      PointerEvent
 *   sleep MS
 *
 * and answering each with a line "ok" once the message is sent (or
 * "error: ..." and exit status 1), so a test can keep in step.
 *
 *   vncinput HOST:PORT | /path/to/socket
 */
#include <poll.h>
#include <rfb/rfbclient.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_EXT_MS 10000

static bool pump(rfbClient *cl, int timeout_us)
{
	int n = WaitForMessage(cl, (unsigned)timeout_us);

	return n >= 0 && (n == 0 || HandleRFBServerMessage(cl));
}

/* The server announces extended key events in an update; wait for it (or give up: plain servers). */
static bool wait_ext_keys(rfbClient *cl)
{
	for (int waited = 0; waited < WAIT_EXT_MS; waited += 100) {
		if (SupportsClient2Server(cl, rfbQemuEvent))
			return true;
		if (!pump(cl, 100 * 1000))
			return false;
	}
	return SupportsClient2Server(cl, rfbQemuEvent);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Runs one command line; returns NULL or an error message. */
static const char *run(rfbClient *cl, const char *line)
{
	char cmd[16];
	unsigned long a, b, c;
	int n = sscanf(line, "%15s %li %li %li", cmd, (long *)&a, (long *)&b, (long *)&c);

	if (n >= 3 && strcmp(cmd, "key") == 0)
		return SendKeyEvent(cl, (uint32_t)a, b != 0) ? NULL : "cannot send";
	if (n >= 4 && strcmp(cmd, "xkey") == 0) {
		if (!wait_ext_keys(cl))
			return "the server does not take extended key events";
		return SendExtendedKeyEvent(cl, (uint32_t)b, (uint32_t)a, c != 0) ? NULL : "cannot send";
	}
	if (n >= 4 && strcmp(cmd, "ptr") == 0)
		return SendPointerEvent(cl, (int)a, (int)b, (int)c) ? NULL : "cannot send";
	if (n >= 2 && strcmp(cmd, "sleep") == 0) {
		sleep_ms((long)a);
		return NULL;
	}
	return "unknown command";
}

static rfbClient *connect_to(const char *target)
{
	rfbClient *cl = rfbGetClient(8, 3, 4);
	char *host = strdup(target), *colon = host[0] == '/' ? NULL : strrchr(host, ':');

	if (colon) {
		*colon = 0;
		cl->serverPort = atoi(colon + 1);
	}
	cl->serverHost = host;
	cl->appData.encodingsString = "raw";
	cl->canHandleNewFBSize = TRUE;
	return rfbInitClient(cl, NULL, NULL) ? cl : NULL; /* rfbInitClient frees cl on failure */
}

/* Runs every complete line in buf (len bytes); returns the bytes left over, or -1 on an error. */
static long run_lines(rfbClient *cl, char *buf, size_t len)
{
	char *start = buf, *nl;

	while ((nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
		const char *err;
		*nl = '\0';
		if ((err = run(cl, start))) {
			printf("error: %s\n", err);
			return -1;
		}
		printf("ok\n");
		start = nl + 1;
	}
	memmove(buf, start, len - (size_t)(start - buf));
	return (long)(len - (size_t)(start - buf));
}

int main(int argc, char **argv)
{
	struct pollfd p[2] = { { .fd = 0, .events = POLLIN } };
	char buf[4096];
	size_t len = 0;
	rfbClient *cl;

	if (argc != 2) {
		fprintf(stderr, "usage: vncinput HOST:PORT|SOCKET < commands\n");
		return 1;
	}
	rfbEnableClientLogging = FALSE;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!(cl = connect_to(argv[1]))) {
		fprintf(stderr, "vncinput: cannot connect to %s\n", argv[1]);
		return 1;
	}
	p[1] = (struct pollfd){ .fd = cl->sock, .events = POLLIN };
	for (;;) {
		ssize_t n;
		long left;

		if (poll(p, 2, -1) < 0)
			return 1;
		/* Keep reading updates so the server never stalls on a full socket. */
		if ((p[1].revents & POLLIN) && !HandleRFBServerMessage(cl)) {
			fprintf(stderr, "vncinput: connection lost\n");
			return 1;
		}
		if (!(p[0].revents & (POLLIN | POLLHUP)))
			continue;
		if ((n = read(0, buf + len, sizeof(buf) - 1 - len)) <= 0)
			break;
		if ((left = run_lines(cl, buf, len + (size_t)n)) < 0)
			return 1;
		len = (size_t)left;
		if (len == sizeof(buf) - 1)
			len = 0; /* a line longer than the buffer is dropped */
	}
	rfbClientCleanup(cl);
	return 0;
}
