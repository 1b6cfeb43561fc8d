/*
 * vncgrab: a test tool that captures a VNC server's screen exactly, through
 * libvncclient (a complete RFB client), as a binary PPM.
 *
 *   vncgrab [-e ENCODINGS] [-p PASSWORD] [-b 16|32] [-C CA.pem [-c CERT.pem -k KEY.pem]] [-a TYPES]
 *           HOST:PORT OUT.ppm                                             TCP
 *   vncgrab [...] /path/to/socket OUT.ppm                                 UNIX socket
 *
 * Requests Raw encoding unless -e names others (e.g. "zrle"; all lossless),
 * waits until every pixel of the screen has arrived in some update, and
 * writes it. -b 16 asks for an RGB565 pixel format (the server converts).
 * TLS (VeNCrypt) as libvncclient speaks it: anonymous TLS needs nothing;
 * X.509 needs -C, the CA the server's certificate must chain to (and match
 * HOST), and -c/-k present a client certificate. -a restricts the security
 * types the client accepts (comma-separated numbers, e.g. "1,2" for a
 * client without TLS).
 * Exit status 0, or 1 with a message (2 when the connection or the
 * authentication failed).
 */
#include <rfb/rfbclient.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static char *password, *ca_file, *cert_file, *key_file;

static char *get_password(rfbClient *cl)
{
	(void)cl;
	return strdup(password ? password : "");
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* X.509 credentials for VeNCrypt; libvncclient frees them (and every string in them). */
static rfbCredential *get_credential(rfbClient *cl, int type)
{
	rfbCredential *c;

	(void)cl;
	if (type != rfbCredentialTypeX509 || !(c = calloc(1, sizeof(*c))))
		return NULL;
	c->x509Credential.x509CACertFile = dup_or_null(ca_file);
	c->x509Credential.x509ClientCertFile = dup_or_null(cert_file);
	c->x509Credential.x509ClientKeyFile = dup_or_null(key_file);
	c->x509Credential.x509CrlVerifyMode = rfbX509CrlVerifyNone;
	return c;
}

/* "1,2,19" -> the zero-terminated list SetClientAuthSchemes() takes. */
static void restrict_auth(rfbClient *cl, const char *list)
{
	uint32_t types[32];
	int n = 0;
	char *end;

	for (const char *p = list; *p && n < 31; p = *end ? end + 1 : end) {
		types[n++] = (uint32_t)strtoul(p, &end, 10);
		if (end == p)
			break;
	}
	types[n] = 0;
	SetClientAuthSchemes(cl, types, n);
}

/* The pixel at i as 8-bit R, G, B whatever format was asked for. */
static void put_pixel(FILE *f, rfbClient *cl, int i)
{
	uint8_t rgb[3];

	if (cl->format.bitsPerPixel == 16) {
		uint16_t p = (uint16_t)(cl->frameBuffer[2 * i] | cl->frameBuffer[2 * i + 1] << 8);
		rgb[0] = (uint8_t)(((p >> 11) & 31) * 255 / 31);
		rgb[1] = (uint8_t)(((p >> 5) & 63) * 255 / 63);
		rgb[2] = (uint8_t)((p & 31) * 255 / 31);
	} else {
		memcpy(rgb, cl->frameBuffer + 4 * (size_t)i, 3);
	}
	fwrite(rgb, 1, 3, f);
}

int main(int argc, char **argv)
{
	rfbClient *cl;
	char *host, *colon, *encodings = "raw", *auth = NULL;
	int bpp = 32, opt;
	FILE *f;

	while ((opt = getopt(argc, argv, "e:p:b:C:c:k:a:")) != -1) {
		if (opt == 'e')
			encodings = optarg;
		else if (opt == 'p')
			password = optarg;
		else if (opt == 'b')
			bpp = atoi(optarg);
		else if (opt == 'C')
			ca_file = optarg;
		else if (opt == 'c')
			cert_file = optarg;
		else if (opt == 'k')
			key_file = optarg;
		else if (opt == 'a')
			auth = optarg;
		else
			return 1;
	}
	if (argc - optind != 2 || (bpp != 16 && bpp != 32)) {
		fprintf(stderr, "usage: vncgrab [-e ENCODINGS] [-p PASSWORD] [-b 16|32] [-C CA [-c CERT -k KEY]] [-a TYPES] "
				"HOST:PORT|SOCKET OUT.ppm\n");
		return 1;
	}
	argv += optind - 1;
	signal(SIGPIPE, SIG_IGN); /* a server that refuses us closes the socket under libvncclient's writes */
	rfbEnableClientLogging = getenv("VNCGRAB_VERBOSE") != NULL; /* libvncclient says why a connection failed */
	/* 32 bpp little endian: bytes R, G, B, unused; 16 bpp: RGB565 */
	cl = bpp == 16 ? rfbGetClient(5, 3, 2) : rfbGetClient(8, 3, 4);
	if (bpp == 16) {
		cl->format.redShift = 11, cl->format.greenShift = 5, cl->format.blueShift = 0;
		cl->format.redMax = 31, cl->format.greenMax = 63, cl->format.blueMax = 31;
	}
	cl->GetPassword = get_password;
	cl->GetCredential = get_credential;
	if (auth)
		restrict_auth(cl, auth);
	host = strdup(argv[1]);
	colon = host[0] == '/' ? NULL : strrchr(host, ':');
	if (colon) {
		*colon = 0;
		cl->serverPort = atoi(colon + 1);
	}
	cl->serverHost = host;
	cl->appData.encodingsString = encodings;
	cl->canHandleNewFBSize = TRUE;
	cl->GotFrameBufferUpdate = on_rect;
	if (!rfbInitClient(cl, NULL, NULL)) { /* frees cl on failure */
		fprintf(stderr, "vncgrab: cannot connect to %s or not authenticated\n", argv[1]);
		return 2;
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
		put_pixel(f, cl, i);
	fclose(f);
	rfbClientCleanup(cl);
	return 0;
}
