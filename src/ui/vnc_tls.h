/*
 * TLS for the VNC server (VeNCrypt, RFB security type 19) with GnuTLS.
 *
 * Two modes: X.509 (the server's certificate and key; with a CA, clients
 * must present a certificate that CA signed for TLS client use) and
 * anonymous TLS (no certificates: encrypted but open to a man in the
 * middle, which is why the VNC server insists on a password with it).
 *
 * A session runs over a non-blocking socket that the event loop watches:
 * every call returns at once, and says when it must wait for the socket
 * (EAGAIN; vnc_tls_wants_write() tells which way). The RFB code never
 * sees a byte of TLS.
 */
#ifndef HYVE_VNC_TLS_H
#define HYVE_VNC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vnc_tls_config {
	const char *cert, *key; /* PEM files: X.509 mode */
	const char *ca;         /* PEM file: client certificates must chain to it (optional) */
	bool anon;              /* anonymous TLS instead (no files) */
};

struct vnc_tls;         /* credentials: read once at start */
struct vnc_tls_session; /* one client */

/* Reads the files; NULL after logging one line that names the problem. */
struct vnc_tls *vnc_tls_new(const struct vnc_tls_config *cfg);
void vnc_tls_free(struct vnc_tls *t);
bool vnc_tls_is_x509(const struct vnc_tls *t);

/*
 * Starts a server session on fd. early: bytes already read from the
 * socket past the plain-text handshake (a client that did not wait for
 * the server's go-ahead); TLS consumes them first.
 */
struct vnc_tls_session *vnc_tls_session_new(struct vnc_tls *t, int fd, const uint8_t *early, size_t early_len);
void vnc_tls_session_free(struct vnc_tls_session *s);

/* Advances the handshake: 1 done, 0 waiting for the socket, -1 failed (reason in *why). */
int vnc_tls_handshake(struct vnc_tls_session *s, const char **why);
/*
 * TLS has bytes the socket did not take: nothing goes on (not even
 * reading) until it takes them, so wait for EPOLLOUT alone.
 */
bool vnc_tls_wants_write(const struct vnc_tls_session *s);
/* What the client's certificate says it is (X.509 with a CA), for the log; "" otherwise. */
const char *vnc_tls_peer_name(const struct vnc_tls_session *s);

/*
 * Raw bytes the session may read from the socket before reads report
 * EAGAIN: the per-wakeup receive budget (SIZE_MAX: no limit).
 */
void vnc_tls_set_read_budget(struct vnc_tls_session *s, size_t bytes);

/*
 * Plain-text I/O, like recv()/send() on a non-blocking socket: bytes
 * moved, 0 for the peer's end (recv), or -1 with errno (EAGAIN: wait for
 * the socket; anything else: the connection failed, *why says why).
 * A send that reported EAGAIN must be repeated with the same bytes.
 */
ssize_t vnc_tls_recv(struct vnc_tls_session *s, void *buf, size_t len, const char **why);
ssize_t vnc_tls_send(struct vnc_tls_session *s, const void *buf, size_t len, const char **why);

#endif
