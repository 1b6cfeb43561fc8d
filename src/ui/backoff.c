#include "ui/backoff.h"

#include <netinet/in.h>
#include <string.h>

enum { KEY_OTHER, KEY_UNIX, KEY_INET, KEY_INET6 };

void backoff_key_from_addr(const struct sockaddr *sa, socklen_t len, struct backoff_key *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		out->bytes[0] = KEY_INET;
		memcpy(out->bytes + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) { /* an IPv4 peer of a dual-stack listener */
			out->bytes[0] = KEY_INET;
			memcpy(out->bytes + 1, a->s6_addr + 12, 4);
		} else {
			out->bytes[0] = KEY_INET6;
			memcpy(out->bytes + 1, a->s6_addr, 8);
		}
	} else {
		out->bytes[0] = sa->sa_family == AF_UNIX ? KEY_UNIX : KEY_OTHER;
	}
}

static bool live(const struct backoff_entry *e, uint64_t now_ms)
{
	return e->used && (now_ms < e->last_ms || now_ms - e->last_ms < BACKOFF_FORGET_MS);
}

static int find(const struct backoff *b, const struct backoff_key *k, uint64_t now_ms)
{
	for (int i = 0; i < BACKOFF_SLOTS; i++)
		if (live(&b->e[i], now_ms) && !memcmp(&b->e[i].key, k, sizeof(*k)))
			return i;
	return -1;
}

uint64_t backoff_remaining(const struct backoff *b, const struct backoff_key *k, uint64_t now_ms)
{
	int i = find(b, k, now_ms);
	const struct backoff_entry *e = i >= 0 ? &b->e[i] : NULL;

	return e && e->until_ms > now_ms ? e->until_ms - now_ms : 0;
}

/* A free or forgotten entry, else the one whose wait ends first. */
static struct backoff_entry *take_slot(struct backoff *b, uint64_t now_ms)
{
	struct backoff_entry *best = &b->e[0];

	for (unsigned i = 0; i < BACKOFF_SLOTS; i++) {
		if (!live(&b->e[i], now_ms))
			return &b->e[i];
		if (b->e[i].until_ms < best->until_ms)
			best = &b->e[i];
	}
	return best;
}

/* The wait after `failures` failures in a row: doubling from the first, capped. */
static uint64_t delay(unsigned failures)
{
	uint64_t d = BACKOFF_FIRST_MS;

	for (unsigned i = 1; i < failures && d < BACKOFF_MAX_MS; i++)
		d *= 2;
	return d < BACKOFF_MAX_MS ? d : BACKOFF_MAX_MS;
}

uint64_t backoff_failed(struct backoff *b, const struct backoff_key *k, uint64_t now_ms)
{
	int i = find(b, k, now_ms);
	struct backoff_entry *e = i >= 0 ? &b->e[i] : NULL;

	if (!e) {
		e = take_slot(b, now_ms);
		*e = (struct backoff_entry){ .key = *k, .used = true };
	}
	if (e->failures < 1000)
		e->failures++;
	e->last_ms = now_ms;
	e->until_ms = now_ms + delay(e->failures);
	return e->until_ms - now_ms;
}

void backoff_succeeded(struct backoff *b, const struct backoff_key *k)
{
	for (unsigned i = 0; i < BACKOFF_SLOTS; i++)
		if (b->e[i].used && !memcmp(&b->e[i].key, k, sizeof(*k)))
			b->e[i].used = false;
}
