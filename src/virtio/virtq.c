/*
 * Split virtqueue processing. See virtq.h for the model; the notes here are
 * about guest-shared memory.
 *
 * Ring fields are loaded with __atomic operations so the compiler reads each
 * one exactly once, and stored likewise; descriptors are copied into a local
 * structure before any field is examined, so a guest rewriting a descriptor
 * while it is walked can only make the chain wrong, never make a check and
 * its use see different values. Ordering follows the spec (2.7.13, 2.7.7):
 * the avail index is read with acquire before the entries it covers; used
 * entries are written before the used index (release); a full fence
 * separates publishing the used index from reading the driver's
 * suppression fields, and re-arming notifications from re-reading the
 * avail index.
 */
#include "virtq.h"

#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/memory.h"
#include "snapshot/state.h"

static uint16_t ld16(const uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static uint16_t ld16_acquire(const uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static void st16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELAXED);
}

static void st16_release(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELEASE);
}

static void st32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, htole32(v), __ATOMIC_RELAXED);
}

/* One copy of a descriptor the guest may be rewriting; tables need not be aligned. */
static void load_desc(const struct virtq_desc *src, struct virtq_desc *d)
{
	struct virtq_desc raw;

	memcpy(&raw, (const void *)src, sizeof(raw));
	__atomic_signal_fence(__ATOMIC_SEQ_CST); /* the copy is taken before any field is used */
	d->addr = le64toh(raw.addr);
	d->len = le32toh(raw.len);
	d->flags = le16toh(raw.flags);
	d->next = le16toh(raw.next);
}

static uint16_t *used_event_ptr(const struct virtq *vq)
{
	return &vq->avail->ring[vq->ring.size];
}

static uint16_t *avail_event_ptr(const struct virtq *vq)
{
	return (uint16_t *)&vq->used->ring[vq->ring.size];
}

/* Marks the queue broken; the first failure reaches the error callback (or the log). */
static int __attribute__((format(printf, 2, 3))) fail(struct virtq *vq, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (vq->broken)
		return -1;
	vq->broken = true;
	n = snprintf(vq->error, sizeof(vq->error), "queue %u: ", vq->index);
	va_start(ap, fmt);
	vsnprintf(vq->error + n, sizeof(vq->error) - (size_t)n, fmt, ap);
	va_end(ap);
	if (vq->on_error)
		vq->on_error(vq, vq->error, vq->opaque);
	else
		log_warn("virtqueue %s", vq->error);
	return -1;
}

/* ---- setup ---- */

int virtq_init(struct virtq *vq, const struct guest_memory *mem, uint16_t index, uint16_t max_size,
	       virtq_error_fn on_error, void *opaque)
{
	memset(vq, 0, sizeof(*vq));
	if (max_size == 0 || max_size > VIRTQ_MAX_SIZE || (max_size & (max_size - 1)))
		return -1;
	vq->mem = mem;
	vq->index = index;
	vq->max_size = max_size;
	vq->on_error = on_error;
	vq->opaque = opaque;
	vq->inflight = calloc((max_size + 63) / 64, sizeof(uint64_t));
	if (!vq->inflight)
		return -1;
	virtq_reset(vq);
	return 0;
}

void virtq_destroy(struct virtq *vq)
{
	free(vq->inflight);
	vq->inflight = NULL;
}

struct virtq_layout virtq_reset_layout(const struct virtq *vq)
{
	return (struct virtq_layout){ .size = vq->max_size };
}

void virtq_reset(struct virtq *vq)
{
	vq->ring = (struct virtq_layout){ 0 };
	__atomic_store_n(&vq->enabled, false, __ATOMIC_RELEASE);
	vq->event_idx = vq->indirect = false;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	vq->last_avail_idx = vq->used_idx = vq->signalled_used = 0;
	vq->signalled_valid = false;
	vq->broken = false;
	vq->error[0] = '\0';
	if (vq->inflight)
		memset(vq->inflight, 0, (vq->max_size + 63) / 64 * sizeof(uint64_t));
	vq->ninflight = 0;
}

/*
 * Validates the layout l (a private copy: nobody else writes it) and maps
 * its three rings as the queue's run-time rings; 0, or -1 with the reason
 * in why and nothing mapped.
 */
static int map_rings(struct virtq *vq, const struct virtq_layout *l, char *why, size_t why_size)
{
	uint64_t n = l->size;

	vq->ring = (struct virtq_layout){ 0 };
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	if (n == 0 || n > vq->max_size || (n & (n - 1))) {
		snprintf(why, why_size, "size %u is not a power of 2 between 1 and %u", l->size, vq->max_size);
		return -1;
	}
	if ((l->desc_gpa & 15) || (l->avail_gpa & 1) || (l->used_gpa & 3)) {
		snprintf(why, why_size, "misaligned rings (descriptors 0x%llx, avail 0x%llx, used 0x%llx)",
			 (unsigned long long)l->desc_gpa, (unsigned long long)l->avail_gpa,
			 (unsigned long long)l->used_gpa);
		return -1;
	}
	struct virtq_desc *desc = mem_gpa_to_hva(vq->mem, l->desc_gpa, 16 * n);
	struct virtq_avail *avail = mem_gpa_to_hva(vq->mem, l->avail_gpa, 6 + 2 * n);
	struct virtq_used *used = mem_gpa_to_hva(vq->mem, l->used_gpa, 6 + 8 * n);
	if (!desc || !avail || !used) {
		snprintf(why, why_size, "rings outside guest RAM (size %u, descriptors 0x%llx, avail 0x%llx, used 0x%llx)",
			 l->size, (unsigned long long)l->desc_gpa, (unsigned long long)l->avail_gpa,
			 (unsigned long long)l->used_gpa);
		return -1;
	}
	vq->ring = *l;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	return 0;
}

int virtq_enable(struct virtq *vq, const struct virtq_layout *layout)
{
	char why[sizeof(vq->error)];
	/* One read of what the caller's registers held: the check and the rings use this copy. */
	struct virtq_layout l = *layout;

	if (vq->broken)
		return -1;
	if (map_rings(vq, &l, why, sizeof(why)) < 0)
		return fail(vq, "%s", why);
	vq->signalled_valid = false;
	vq->used_idx = vq->last_avail_idx = 0;
	__atomic_store_n(&vq->enabled, true, __ATOMIC_RELEASE);
	return 0;
}

bool virtq_is_enabled(const struct virtq *vq)
{
	return __atomic_load_n(&vq->enabled, __ATOMIC_ACQUIRE);
}

/* ---- consuming the avail ring ---- */

static bool usable(const struct virtq *vq)
{
	return vq->enabled && !vq->broken && vq->avail;
}

bool virtq_has_avail(struct virtq *vq)
{
	return usable(vq) && ld16_acquire(&vq->avail->idx) != vq->last_avail_idx;
}

static bool inflight_test(const struct virtq *vq, uint16_t head)
{
	return vq->inflight[head / 64] & (1ULL << (head % 64));
}

static void inflight_set(struct virtq *vq, uint16_t head, bool on)
{
	if (on)
		vq->inflight[head / 64] |= 1ULL << (head % 64);
	else
		vq->inflight[head / 64] &= ~(1ULL << (head % 64));
}

static int add_buffer(struct virtq *vq, struct virtq_chain *ch, const struct virtq_desc *d)
{
	void *p;

	if (d->flags & VIRTQ_DESC_F_WRITE) {
		if (d->len > VIRTQ_MAX_CHAIN_BYTES - ch->in_len)
			return fail(vq, "chain at head %u: more than %u writable bytes", ch->head,
				    VIRTQ_MAX_CHAIN_BYTES);
		ch->in_len += d->len;
	} else {
		if (d->len > VIRTQ_MAX_CHAIN_BYTES - ch->out_len)
			return fail(vq, "chain at head %u: more than %u readable bytes", ch->head,
				    VIRTQ_MAX_CHAIN_BYTES);
		ch->out_len += d->len;
	}
	if (d->len == 0)
		return 0; /* nothing to transfer */
	p = mem_gpa_to_hva(vq->mem, d->addr, d->len);
	if (!p)
		return fail(vq, "chain at head %u: buffer 0x%llx+0x%x outside guest RAM", ch->head,
			    (unsigned long long)d->addr, d->len);
	if (ch->n_out + ch->n_in >= ch->max_iov)
		return fail(vq, "chain at head %u: more than %u buffers", ch->head, ch->max_iov);
	ch->iov[ch->n_out + ch->n_in] = (struct iovec){ .iov_base = p, .iov_len = d->len };
	if (d->flags & VIRTQ_DESC_F_WRITE)
		ch->n_in++;
	else
		ch->n_out++;
	return 0;
}

int virtq_walk(struct virtq *vq, uint16_t head, struct virtq_chain *ch)
{
	const struct virtq_desc *table;
	unsigned table_size, count = 0;
	bool indirect = false, seen_write = false;
	uint16_t i = head;
	struct virtq_desc d;

	ch->head = head;
	ch->n_out = ch->n_in = 0;
	ch->out_len = ch->in_len = 0;
	if (!usable(vq))
		return -1;
	table = vq->desc;
	table_size = vq->ring.size;
	if (head >= table_size)
		return fail(vq, "head %u out of range (size %u)", head, table_size);
	for (;;) {
		/* A chain never visits more descriptors than its table holds: more means a loop. */
		if (++count > table_size)
			return fail(vq, "chain at head %u: longer than its %s table (%u): loop?", head,
				    indirect ? "indirect" : "descriptor", table_size);
		load_desc(&table[i], &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!vq->indirect)
				return fail(vq, "chain at head %u: indirect descriptor without INDIRECT_DESC", head);
			if (indirect)
				return fail(vq, "chain at head %u: nested indirect descriptor", head);
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return fail(vq, "chain at head %u: indirect descriptor with NEXT", head);
			if (d.len == 0 || d.len % sizeof(struct virtq_desc) ||
			    d.len / sizeof(struct virtq_desc) > VIRTQ_MAX_INDIRECT)
				return fail(vq, "chain at head %u: indirect table length %u (must be a multiple of 16, at most %u entries)",
					    head, d.len, VIRTQ_MAX_INDIRECT);
			table = mem_gpa_to_hva(vq->mem, d.addr, d.len);
			if (!table)
				return fail(vq, "chain at head %u: indirect table 0x%llx+0x%x outside guest RAM", head,
					    (unsigned long long)d.addr, d.len);
			table_size = d.len / sizeof(struct virtq_desc);
			indirect = true;
			count = 0;
			i = 0;
			continue;
		}
		if (!(d.flags & VIRTQ_DESC_F_WRITE) && seen_write)
			return fail(vq, "chain at head %u: readable descriptor %u after a writable one", head, i);
		seen_write |= (d.flags & VIRTQ_DESC_F_WRITE) != 0;
		if (add_buffer(vq, ch, &d) < 0)
			return -1;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 1;
		if (d.next >= table_size)
			return fail(vq, "chain at head %u: next %u out of range (%u)", head, d.next, table_size);
		i = d.next;
	}
}

int virtq_pop(struct virtq *vq, struct virtq_chain *ch)
{
	uint16_t avail_idx, head;

	ch->n_out = ch->n_in = 0;
	ch->out_len = ch->in_len = 0;
	if (!usable(vq))
		return vq->broken ? -1 : 0;
	avail_idx = ld16_acquire(&vq->avail->idx);
	if (avail_idx == vq->last_avail_idx)
		return 0;
	if ((uint16_t)(avail_idx - vq->last_avail_idx) > vq->ring.size)
		return fail(vq, "avail index %u is more than %u ahead of %u", avail_idx, vq->ring.size,
			    vq->last_avail_idx);
	head = ld16(&vq->avail->ring[vq->last_avail_idx & (vq->ring.size - 1)]);
	if (head >= vq->ring.size)
		return fail(vq, "avail entry %u: head %u out of range (size %u)", vq->last_avail_idx, head,
			    vq->ring.size);
	if (inflight_test(vq, head))
		return fail(vq, "avail entry %u: head %u is already in use", vq->last_avail_idx, head);
	if (virtq_walk(vq, head, ch) < 0)
		return -1;
	vq->last_avail_idx++;
	inflight_set(vq, head, true);
	vq->ninflight++;
	return 1;
}

void virtq_unpop(struct virtq *vq, uint16_t head)
{
	if (head < vq->max_size && inflight_test(vq, head)) {
		inflight_set(vq, head, false);
		vq->ninflight--;
		vq->last_avail_idx--;
	}
}

/* ---- the used ring ---- */

/*
 * What the device wrote into a chain's writable buffers, for a live
 * snapshot (core/memory.h): the chain is walked again at completion with
 * virtq_walk()'s bounds but no verdict. A chain the guest changed while it
 * was in flight is marked as far as it still makes sense: only the guest's
 * own data is at stake.
 */
static void mark_chain_written(struct virtq *vq, uint16_t head)
{
	const struct virtq_desc *table = vq->desc;
	unsigned table_size = vq->ring.size, count = 0;
	bool indirect = false;
	uint16_t i = head;
	struct virtq_desc d;

	if (head >= table_size)
		return;
	for (;;) {
		if (++count > table_size)
			return;
		load_desc(&table[i], &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (indirect || !vq->indirect || d.len == 0 || d.len % sizeof(struct virtq_desc) ||
			    d.len / sizeof(struct virtq_desc) > VIRTQ_MAX_INDIRECT)
				return;
			table = mem_gpa_to_hva(vq->mem, d.addr, d.len);
			if (!table)
				return;
			table_size = d.len / sizeof(struct virtq_desc);
			indirect = true;
			count = 0;
			i = 0;
			continue;
		}
		if ((d.flags & VIRTQ_DESC_F_WRITE) && d.len) {
			void *p = mem_gpa_to_hva(vq->mem, d.addr, d.len);
			if (p)
				mem_mark_dirty(vq->mem, p, d.len);
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT) || d.next >= table_size)
			return;
		i = d.next;
	}
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t written)
{
	struct virtq_used_elem *e;

	if (head >= vq->max_size || !inflight_test(vq, head)) {
		log_warn("virtqueue %u: completion of head %u that is not in use (ignored)", vq->index, head);
		return;
	}
	inflight_set(vq, head, false);
	vq->ninflight--;
	if (!vq->enabled || !vq->used)
		return; /* reset meanwhile: the driver forgot the request */
	e = &vq->used->ring[vq->used_idx & (vq->ring.size - 1)];
	st32(&e->id, head);
	st32(&e->len, written);
	vq->used_idx++;
	st16_release(&vq->used->idx, vq->used_idx);
	if (mem_tracking(vq->mem)) {
		mark_chain_written(vq, head);
		mem_mark_dirty(vq->mem, e, sizeof(*e));
		mem_mark_dirty(vq->mem, &vq->used->idx, sizeof(vq->used->idx));
	}
}

/* ---- notification suppression ---- */

void virtq_notify_disable(struct virtq *vq)
{
	if (!usable(vq) || vq->event_idx)
		return; /* with EVENT_IDX the driver only notifies past avail_event, which stays put */
	st16(&vq->used->flags, VIRTQ_USED_F_NO_NOTIFY);
	mem_mark_dirty(vq->mem, &vq->used->flags, sizeof(vq->used->flags));
}

bool virtq_notify_enable(struct virtq *vq)
{
	if (!usable(vq))
		return false;
	if (vq->event_idx) {
		st16(avail_event_ptr(vq), vq->last_avail_idx);
		mem_mark_dirty(vq->mem, avail_event_ptr(vq), sizeof(uint16_t));
	} else {
		st16(&vq->used->flags, 0);
		mem_mark_dirty(vq->mem, &vq->used->flags, sizeof(vq->used->flags));
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return ld16_acquire(&vq->avail->idx) != vq->last_avail_idx;
}

bool virtq_need_interrupt(struct virtq *vq)
{
	uint16_t old, new, event;
	bool valid;

	if (!vq->enabled || !vq->avail)
		return false;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(ld16(&vq->avail->flags) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	old = vq->signalled_used;
	new = vq->used_idx;
	valid = vq->signalled_valid;
	event = ld16(used_event_ptr(vq));
	vq->signalled_used = new;
	vq->signalled_valid = true;
	if (!valid)
		return true;
	/* Interrupt when used_event lies in (old, new]. */
	return (uint16_t)(new - event - 1) < (uint16_t)(new - old);
}

/* ---- chain data ---- */

size_t virtq_chain_read(const struct virtq_chain *ch, size_t offset, void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < ch->n_out && done < len; i++) {
		size_t l = ch->iov[i].iov_len;
		if (offset >= l) {
			offset -= l;
			continue;
		}
		l -= offset;
		if (l > len - done)
			l = len - done;
		memcpy((uint8_t *)buf + done, (uint8_t *)ch->iov[i].iov_base + offset, l);
		done += l;
		offset = 0;
	}
	return done;
}

size_t virtq_chain_write(const struct virtq_chain *ch, size_t offset, const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = ch->n_out; i < ch->n_out + ch->n_in && done < len; i++) {
		size_t l = ch->iov[i].iov_len;
		if (offset >= l) {
			offset -= l;
			continue;
		}
		l -= offset;
		if (l > len - done)
			l = len - done;
		memcpy((uint8_t *)ch->iov[i].iov_base + offset, (const uint8_t *)buf + done, l);
		done += l;
		offset = 0;
	}
	return done;
}

/* ---- snapshots ---- */

unsigned virtq_inflight_heads(const struct virtq *vq, uint16_t *heads, unsigned max)
{
	unsigned n = 0;

	for (unsigned h = 0; h < vq->max_size; h++) {
		if (!inflight_test(vq, (uint16_t)h))
			continue;
		if (n < max)
			heads[n] = (uint16_t)h;
		n++;
	}
	return n;
}

void virtq_save(const struct virtq *vq, const struct virtq_layout *reg, struct state_writer *w)
{
	const struct virtq_layout *l = vq->enabled ? &vq->ring : reg;
	uint16_t *heads = NULL;
	unsigned n = 0;

	state_put_u64(w, "size", l->size);
	state_put_u64(w, "desc", l->desc_gpa);
	state_put_u64(w, "avail", l->avail_gpa);
	state_put_u64(w, "used", l->used_gpa);
	state_put_bool(w, "enabled", vq->enabled);
	state_put_bool(w, "event_idx", vq->event_idx);
	state_put_bool(w, "indirect", vq->indirect);
	state_put_u64(w, "last_avail_idx", vq->last_avail_idx);
	state_put_u64(w, "used_idx", vq->used_idx);
	state_put_u64(w, "signalled_used", vq->signalled_used);
	state_put_bool(w, "signalled_valid", vq->signalled_valid);
	state_put_bool(w, "broken", vq->broken);
	if (vq->ninflight) {
		heads = malloc(vq->ninflight * sizeof(*heads));
		if (heads)
			n = virtq_inflight_heads(vq, heads, vq->ninflight);
		for (unsigned i = 0; i < n; i++)
			heads[i] = htole16(heads[i]);
	}
	state_put_bytes(w, "inflight", heads ? (const void *)heads : (const void *)"", n * sizeof(uint16_t));
	free(heads);
}

int virtq_restore(struct virtq *vq, struct state_reader *r, struct virtq_layout *reg)
{
	uint64_t size, desc, avail, used, last, uidx, sig = 0;
	bool enabled, event_idx = false, indirect = false, sig_valid = false, broken = false;
	size_t len = 0;
	uint16_t *heads;
	int rc = 0;

	if (state_get_u64(r, "size", &size) < 0 || state_get_u64(r, "desc", &desc) < 0 ||
	    state_get_u64(r, "avail", &avail) < 0 || state_get_u64(r, "used", &used) < 0 ||
	    state_get_bool(r, "enabled", &enabled) < 0 || state_get_u64(r, "last_avail_idx", &last) < 0 ||
	    state_get_u64(r, "used_idx", &uidx) < 0) {
		log_error("virtqueue %u: snapshot lacks queue fields", vq->index);
		return -1;
	}
	state_get_bool(r, "event_idx", &event_idx);
	state_get_bool(r, "indirect", &indirect);
	state_get_u64(r, "signalled_used", &sig);
	state_get_bool(r, "signalled_valid", &sig_valid);
	state_get_bool(r, "broken", &broken);
	if (size > vq->max_size || last > UINT16_MAX || uidx > UINT16_MAX || sig > UINT16_MAX) {
		log_error("virtqueue %u: snapshot has an invalid queue (size %llu, max %u)", vq->index,
			  (unsigned long long)size, vq->max_size);
		return -1;
	}
	virtq_reset(vq);
	*reg = (struct virtq_layout){ .size = (uint16_t)size, .desc_gpa = desc, .avail_gpa = avail, .used_gpa = used };
	vq->event_idx = event_idx;
	vq->indirect = indirect;
	heads = malloc(vq->max_size * sizeof(*heads));
	if (!heads)
		return -1;
	if (state_get_bytes_var(r, "inflight", heads, vq->max_size * sizeof(*heads), &len) < 0)
		len = 0;
	for (size_t i = 0; i < len / sizeof(*heads); i++) {
		uint16_t h = le16toh(heads[i]);
		if (h >= vq->max_size || inflight_test(vq, h)) {
			log_error("virtqueue %u: snapshot has an invalid in-flight head %u", vq->index, h);
			rc = -1;
			break;
		}
		inflight_set(vq, h, true);
		vq->ninflight++;
	}
	free(heads);
	if (rc < 0)
		return -1;
	if (broken) {
		vq->broken = true;
		snprintf(vq->error, sizeof(vq->error), "queue %u: broken before the snapshot", vq->index);
	} else if (enabled) {
		char why[sizeof(vq->error)];
		if (map_rings(vq, reg, why, sizeof(why)) < 0) {
			log_error("virtqueue %u: snapshot rings are invalid: %s", vq->index, why);
			return -1;
		}
	}
	__atomic_store_n(&vq->enabled, enabled, __ATOMIC_RELEASE);
	vq->last_avail_idx = (uint16_t)last;
	vq->used_idx = (uint16_t)uidx;
	vq->signalled_used = (uint16_t)sig;
	vq->signalled_valid = sig_valid;
	return 0;
}
