#include "ui/vnc_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

#define MAX_PEM (1u << 20) /* a certificate chain or key larger than this is not one */
#define MAX_RETRIES 16     /* non-fatal GnuTLS results in a row before waiting for the socket */

/*
 * Anonymous key exchange exists up to TLS 1.2 only; X.509 sessions take
 * GnuTLS's (and the system's) defaults, TLS 1.3 included.
 */
#define ANON_PRIORITY "NORMAL:-VERS-TLS1.3:+ANON-ECDH:+ANON-DH"

struct vnc_tls {
	bool anon, verify_clients;
	gnutls_anon_server_credentials_t anon_cred;
	gnutls_certificate_credentials_t x509_cred;
	gnutls_priority_t priority;
};

struct vnc_tls_session {
	gnutls_session_t session;
	int fd;
	uint8_t *early;         /* bytes read before TLS started, consumed first */
	size_t early_len, early_at;
	size_t budget;          /* raw bytes reads may still take */
	size_t send_pending;    /* a send that reported EAGAIN: its size */
	bool write_blocked;     /* the socket did not take the last bytes TLS pushed */
	char peer[256];         /* the client certificate's subject */
	char verify_error[160]; /* why the client certificate was refused */
};

/* ---- credentials ---- */

/* The whole file, or a one-line error naming the option and the file. */
static int read_pem(const char *what, const char *path, gnutls_datum_t *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n = -1;

	out->data = NULL;
	if (fd < 0 || fstat(fd, &st) < 0) {
		log_error("vnc: %s=%s: %s", what, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0 || st.st_size > MAX_PEM) {
		log_error("vnc: %s=%s: not a PEM file (a regular file of at most %u bytes)", what, path, MAX_PEM);
		close(fd);
		return -1;
	}
	out->data = gnutls_malloc((size_t)st.st_size);
	if (out->data)
		n = read(fd, out->data, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		log_error("vnc: %s=%s: cannot read it", what, path);
		gnutls_free(out->data);
		out->data = NULL;
		return -1;
	}
	out->size = (unsigned)n;
	if (!memmem(out->data, out->size, "-----BEGIN ", 11)) {
		log_error("vnc: %s=%s: not a PEM file (no -----BEGIN line)", what, path);
		gnutls_free(out->data);
		out->data = NULL;
		return -1;
	}
	return 0;
}

/*
 * Client certificates (tls-ca=): chained to the CA, valid now, and meant
 * for TLS clients. A failure ends the handshake with an alert.
 */
static int verify_client(gnutls_session_t session)
{
	struct vnc_tls_session *s = gnutls_session_get_ptr(session);
	gnutls_typed_vdata_st purpose = { .type = GNUTLS_DT_KEY_PURPOSE_OID,
					  .data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT };
	gnutls_datum_t text = { 0 };
	unsigned status = 0;
	int rc = gnutls_certificate_verify_peers(session, &purpose, 1, &status);

	if (rc < 0) {
		snprintf(s->verify_error, sizeof(s->verify_error), "%s", gnutls_strerror(rc));
		return -1;
	}
	if (status == 0)
		return 0;
	if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0) {
		snprintf(s->verify_error, sizeof(s->verify_error), "%s", (const char *)text.data);
		gnutls_free(text.data);
	} else {
		snprintf(s->verify_error, sizeof(s->verify_error), "verification status 0x%x", status);
	}
	return -1;
}

/*
 * The certificate chain and the key parse, and the key is the first
 * certificate's. GnuTLS checks this too, but leaks what it parsed when
 * either is bad (3.7): it gets only a pair known to be good.
 */
static int check_pair(const struct vnc_tls_config *cfg, const gnutls_datum_t *cert, const gnutls_datum_t *key)
{
	gnutls_x509_crt_t *crts = NULL;
	gnutls_x509_privkey_t pk = NULL;
	unsigned ncrts = 0;
	unsigned char a[64], b[64];
	size_t alen = sizeof(a), blen = sizeof(b);
	int rc = -1, n;

	if ((n = gnutls_x509_crt_list_import2(&crts, &ncrts, cert, GNUTLS_X509_FMT_PEM, 0)) < 0 || !ncrts) {
		log_error("vnc: tls-cert=%s: %s", cfg->cert, n < 0 ? gnutls_strerror(n) : "no certificate in it");
		goto out;
	}
	if ((n = gnutls_x509_privkey_init(&pk)) < 0 || (n = gnutls_x509_privkey_import2(pk, key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		log_error("vnc: tls-key=%s: %s", cfg->key, gnutls_strerror(n));
		goto out;
	}
	if (gnutls_x509_crt_get_key_id(crts[0], GNUTLS_KEYID_USE_SHA256, a, &alen) < 0 ||
	    gnutls_x509_privkey_get_key_id(pk, GNUTLS_KEYID_USE_SHA256, b, &blen) < 0 || alen != blen ||
	    memcmp(a, b, alen) != 0) {
		log_error("vnc: tls-key=%s is not the key of the certificate in tls-cert=%s", cfg->key, cfg->cert);
		goto out;
	}
	rc = 0;
out:
	if (pk)
		gnutls_x509_privkey_deinit(pk);
	for (unsigned i = 0; i < ncrts; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(crts);
	return rc;
}

static int load_x509(struct vnc_tls *t, const struct vnc_tls_config *cfg)
{
	gnutls_datum_t cert = { 0 }, key = { 0 }, ca = { 0 };
	int rc = -1, n;

	if (gnutls_certificate_allocate_credentials(&t->x509_cred) < 0) {
		t->x509_cred = NULL;
		log_error("vnc: cannot allocate TLS credentials");
		return -1;
	}
	if (read_pem("tls-cert", cfg->cert, &cert) < 0 || read_pem("tls-key", cfg->key, &key) < 0 ||
	    (cfg->ca && read_pem("tls-ca", cfg->ca, &ca) < 0))
		goto out;
	if (check_pair(cfg, &cert, &key) < 0)
		goto out;
	if ((n = gnutls_certificate_set_x509_key_mem2(t->x509_cred, &cert, &key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		log_error("vnc: tls-cert=%s, tls-key=%s: %s", cfg->cert, cfg->key, gnutls_strerror(n));
		goto out;
	}
	if (cfg->ca) {
		n = gnutls_certificate_set_x509_trust_mem(t->x509_cred, &ca, GNUTLS_X509_FMT_PEM);
		if (n <= 0) {
			log_error("vnc: tls-ca=%s: %s", cfg->ca, n < 0 ? gnutls_strerror(n) : "no certificate in it");
			goto out;
		}
		gnutls_certificate_set_verify_function(t->x509_cred, verify_client);
		t->verify_clients = true;
	}
	rc = 0;
out:
	gnutls_free(cert.data);
	if (key.data)
		gnutls_memset(key.data, 0, key.size);
	gnutls_free(key.data);
	gnutls_free(ca.data);
	return rc;
}

static int load_anon(struct vnc_tls *t)
{
	if (gnutls_anon_allocate_server_credentials(&t->anon_cred) < 0) {
		t->anon_cred = NULL;
		log_error("vnc: cannot allocate anonymous TLS credentials");
		return -1;
	}
	/* ANON-DH needs a group; ANON-ECDH (what current clients pick) does not. */
	if (gnutls_anon_set_server_known_dh_params(t->anon_cred, GNUTLS_SEC_PARAM_MEDIUM) < 0) {
		log_error("vnc: cannot set the Diffie-Hellman group for anonymous TLS");
		return -1;
	}
	return 0;
}

struct vnc_tls *vnc_tls_new(const struct vnc_tls_config *cfg)
{
	struct vnc_tls *t = calloc(1, sizeof(*t));
	const char *where = NULL;
	int rc;

	if (!t)
		return NULL;
	t->anon = cfg->anon;
	if (t->anon ? load_anon(t) < 0 : load_x509(t, cfg) < 0)
		goto fail;
	rc = t->anon ? gnutls_priority_init(&t->priority, ANON_PRIORITY, &where)
		     : gnutls_priority_init(&t->priority, NULL, &where); /* the defaults */
	if (rc < 0) {
		t->priority = NULL;
		log_error("vnc: TLS priorities: %s", gnutls_strerror(rc));
		goto fail;
	}
	return t;
fail:
	vnc_tls_free(t);
	return NULL;
}

void vnc_tls_free(struct vnc_tls *t)
{
	if (!t)
		return;
	if (t->priority)
		gnutls_priority_deinit(t->priority);
	if (t->x509_cred)
		gnutls_certificate_free_credentials(t->x509_cred);
	if (t->anon_cred)
		gnutls_anon_free_server_credentials(t->anon_cred);
	free(t);
}

bool vnc_tls_is_x509(const struct vnc_tls *t)
{
	return !t->anon;
}

/* ---- transport: the non-blocking socket, with the early bytes first and the read budget ---- */

static ssize_t pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct vnc_tls_session *s = p;
	ssize_t n;

	if (s->early_at < s->early_len) {
		size_t k = s->early_len - s->early_at < len ? s->early_len - s->early_at : len;
		memcpy(buf, s->early + s->early_at, k);
		s->early_at += k;
		return (ssize_t)k;
	}
	if (s->budget == 0) {
		gnutls_transport_set_errno(s->session, EAGAIN);
		return -1;
	}
	if (len > s->budget)
		len = s->budget;
	n = recv(s->fd, buf, len, MSG_DONTWAIT);
	if (n < 0) {
		gnutls_transport_set_errno(s->session, errno);
		return -1;
	}
	s->budget -= (size_t)n;
	return n;
}

static ssize_t push(gnutls_transport_ptr_t p, const void *buf, size_t len)
{
	struct vnc_tls_session *s = p;
	ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

	s->write_blocked = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
	if (n < 0)
		gnutls_transport_set_errno(s->session, errno);
	return n;
}

struct vnc_tls_session *vnc_tls_session_new(struct vnc_tls *t, int fd, const uint8_t *early, size_t early_len)
{
	struct vnc_tls_session *s = calloc(1, sizeof(*s));
	gnutls_credentials_type_t type = t->anon ? GNUTLS_CRD_ANON : GNUTLS_CRD_CERTIFICATE;
	void *cred = t->anon ? (void *)t->anon_cred : (void *)t->x509_cred;

	if (!s)
		return NULL;
	s->fd = fd;
	s->budget = SIZE_MAX;
	if (early_len && !(s->early = malloc(early_len))) {
		free(s);
		return NULL;
	}
	if (early_len)
		memcpy(s->early, early, early_len);
	s->early_len = early_len;
	if (gnutls_init(&s->session, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_TICKETS) < 0) {
		free(s->early);
		free(s);
		return NULL;
	}
	if (gnutls_priority_set(s->session, t->priority) < 0 || gnutls_credentials_set(s->session, type, cred) < 0) {
		vnc_tls_session_free(s);
		return NULL;
	}
	if (t->verify_clients)
		gnutls_certificate_server_set_request(s->session, GNUTLS_CERT_REQUIRE);
	gnutls_session_set_ptr(s->session, s);
	gnutls_transport_set_ptr(s->session, s);
	gnutls_transport_set_pull_function(s->session, pull);
	gnutls_transport_set_push_function(s->session, push);
	return s;
}

void vnc_tls_session_free(struct vnc_tls_session *s)
{
	if (!s)
		return;
	gnutls_deinit(s->session);
	free(s->early);
	free(s);
}

/* The client certificate's subject, once the handshake has checked it. */
static void note_peer(struct vnc_tls_session *s)
{
	unsigned n = 0;
	const gnutls_datum_t *certs = gnutls_certificate_get_peers(s->session, &n);
	gnutls_x509_crt_t crt;
	gnutls_datum_t dn = { 0 };

	if (!certs || !n || gnutls_x509_crt_init(&crt) < 0)
		return;
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 && gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0) {
		snprintf(s->peer, sizeof(s->peer), "%s", (const char *)dn.data);
		gnutls_free(dn.data);
	}
	gnutls_x509_crt_deinit(crt);
}

int vnc_tls_handshake(struct vnc_tls_session *s, const char **why)
{
	int rc = GNUTLS_E_AGAIN;

	/* Interruptions and warning alerts: go on, a bounded number of times. */
	for (int tries = 0; tries < MAX_RETRIES; tries++) {
		rc = gnutls_handshake(s->session);
		if (rc >= 0 || rc == GNUTLS_E_AGAIN || gnutls_error_is_fatal(rc))
			break;
	}
	if (rc == GNUTLS_E_AGAIN || (rc < 0 && !gnutls_error_is_fatal(rc)))
		return 0;
	if (rc < 0) {
		*why = s->verify_error[0] ? s->verify_error : gnutls_strerror(rc);
		return -1;
	}
	note_peer(s);
	return 1;
}

bool vnc_tls_wants_write(const struct vnc_tls_session *s)
{
	return s->write_blocked;
}

const char *vnc_tls_peer_name(const struct vnc_tls_session *s)
{
	return s->peer;
}

void vnc_tls_set_read_budget(struct vnc_tls_session *s, size_t bytes)
{
	s->budget = bytes;
}

static ssize_t tls_error(ssize_t rc, const char **why)
{
	if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
		errno = EAGAIN;
		return -1;
	}
	*why = gnutls_strerror((int)rc);
	errno = EPROTO;
	return -1;
}

ssize_t vnc_tls_recv(struct vnc_tls_session *s, void *buf, size_t len, const char **why)
{
	ssize_t n = GNUTLS_E_AGAIN;

	/* Warning alerts and the like are skipped, a bounded number of times. */
	for (int tries = 0; tries < MAX_RETRIES; tries++) {
		n = gnutls_record_recv(s->session, buf, len);
		if (n >= 0 || n == GNUTLS_E_AGAIN || n == GNUTLS_E_REHANDSHAKE || gnutls_error_is_fatal((int)n))
			break;
	}
	if (n >= 0)
		return n;
	if (n == GNUTLS_E_REHANDSHAKE) {
		*why = "the client asked for a renegotiation";
		errno = EPROTO;
		return -1;
	}
	return gnutls_error_is_fatal((int)n) ? tls_error(n, why) : tls_error(GNUTLS_E_AGAIN, why);
}

ssize_t vnc_tls_send(struct vnc_tls_session *s, const void *buf, size_t len, const char **why)
{
	ssize_t n;

	if (s->send_pending) /* GnuTLS holds the record already: flush it */
		n = gnutls_record_send(s->session, NULL, 0);
	else
		n = gnutls_record_send(s->session, buf, len);
	if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
		if (!s->send_pending)
			s->send_pending = len;
		return tls_error(n, why);
	}
	s->send_pending = 0;
	return n < 0 ? tls_error(n, why) : n;
}
