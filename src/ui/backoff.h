/*
 * Per-address back-off after failed authentication (the VNC password):
 * after n failures in a row an address must wait BACKOFF_FIRST_MS << (n-1),
 * at most BACKOFF_MAX_MS, before it may try again. A success forgets the
 * address; so do BACKOFF_FORGET_MS without a failure.
 *
 * Addresses: an IPv4 address; an IPv6 address by its /64 prefix (one
 * host usually owns the whole prefix); every UNIX-socket peer is one
 * address. The table has BACKOFF_SLOTS entries: when it is full a new
 * address takes the entry whose wait ends first, so the addresses that
 * failed most keep theirs. No I/O and no clock: callers pass the time.
 */
#ifndef HYVE_BACKOFF_H
#define HYVE_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define BACKOFF_SLOTS 64
#define BACKOFF_FIRST_MS 1000ull
#define BACKOFF_MAX_MS 60000ull
#define BACKOFF_FORGET_MS (10 * 60 * 1000ull)

struct backoff_key {
	uint8_t bytes[9]; /* family tag, then up to 8 address bytes */
};

struct backoff_entry {
	struct backoff_key key;
	bool used;
	unsigned failures;
	uint64_t last_ms;  /* time of the last failure */
	uint64_t until_ms; /* no attempt before this */
};

struct backoff {
	struct backoff_entry e[BACKOFF_SLOTS];
};

/* The key of a peer address as accept() returned it. */
void backoff_key_from_addr(const struct sockaddr *sa, socklen_t len, struct backoff_key *out);
/* Milliseconds the address must still wait; 0 when it may try now. */
uint64_t backoff_remaining(const struct backoff *b, const struct backoff_key *k, uint64_t now_ms);
/* Records a failure; returns the wait it imposes. */
uint64_t backoff_failed(struct backoff *b, const struct backoff_key *k, uint64_t now_ms);
void backoff_succeeded(struct backoff *b, const struct backoff_key *k);

#endif
