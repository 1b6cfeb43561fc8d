/*
 * vncgrab: a test tool that captures a VNC server's screen exactly, through
 * libvncclient (a complete RFB client), as a binary PPM.
 *
 *   vncgrab HOST:PORT OUT.ppm     TCP
 *   vncgrab /path/to/socket OUT.ppm   UNIX socket
 *
 * Requests Raw encoding so the picture is lossless, waits until every
 * pixel of the screen has arrived in some update, and writes it. Exit status 0, or 1 with a
 * message.
 */
#include <rfb/rfbclient.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *seen;     /* one byte per pixel: received */
static long seen_count, seen_w, seen_h;

static void on_rect(rfbClient *cl, int x, int y, int w, int h)
{
	if (cl->width != seen_w || cl->height != seen_h) { /* new size: start over */
		free(seen);
		seen_w = cl->width, seen_h = cl->height;
		seen = calloc((size_t)(seen_w * seen_h), 1);
		seen_count = 0;
	}
	if (!seen)
		return;
	for (int j = y; j < y + h && j < seen_h; j++)
		for (int i = x; i < x + w && i < seen_w; i++)
			if (!seen[j * seen_w + i]) {
				seen[j * seen_w + i] = 1;
				seen_count++;
			}
}

static bool complete(rfbClient *cl)
{
	return seen && cl->width == seen_w && cl->height == seen_h && seen_count == seen_w * seen_h;
}

int main(int argc, char **argv)
{
	rfbClient *cl;
	char *host, *colon;
	FILE *f;

	if (argc != 3) {
		fprintf(stderr, "usage: vncgrab HOST:PORT|SOCKET OUT.ppm\n");
		return 1;
	}
	rfbEnableClientLogging = FALSE;
	cl = rfbGetClient(8, 3, 4); /* 32 bpp, little endian: bytes R, G, B, unused */
	host = strdup(argv[1]);
	colon = host[0] == '/' ? NULL : strrchr(host, ':');
	if (colon) {
		*colon = 0;
		cl->serverPort = atoi(colon + 1);
	}
	cl->serverHost = host;
	cl->appData.encodingsString = "raw";
	cl->canHandleNewFBSize = TRUE;
	cl->GotFrameBufferUpdate = on_rect;
	if (!rfbInitClient(cl, NULL, NULL)) { /* frees cl on failure */
		fprintf(stderr, "vncgrab: cannot connect to %s\n", argv[1]);
		return 1;
	}
	while (!complete(cl)) {
		int n = WaitForMessage(cl, 10 * 1000 * 1000);
		if (n <= 0 || !HandleRFBServerMessage(cl)) {
			fprintf(stderr, "vncgrab: no complete update from %s\n", argv[1]);
			rfbClientCleanup(cl);
			return 1;
		}
	}
	f = fopen(argv[2], "wb");
	if (!f) {
		perror(argv[2]);
		return 1;
	}
	fprintf(f, "P6\n%d %d\n255\n", cl->width, cl->height);
	for (int i = 0; i < cl->width * cl->height; i++)
		fwrite(cl->frameBuffer + 4 * (size_t)i, 1, 3, f);
	fclose(f);
	rfbClientCleanup(cl);
	return 0;
}
