/*
 * Split virtqueues (virtio 1.x, section 2.7), independent of the transport.
 *
 * The driver places three rings in guest RAM (descriptor table, available
 * ring, used ring) and tells the transport their addresses and the queue
 * size (struct virtq_layout, kept by the transport with its registers);
 * virtq_enable() checks a copy of that layout and maps it. The queue keeps
 * only the validated copy: whatever the driver writes to the registers
 * later (from another vCPU, while or after the queue is enabled) never
 * reaches the ring size or addresses the run-time paths use. Devices then
 * take descriptor chains with virtq_pop(), which walks and validates the
 * whole chain before handing out host buffers, and return them with
 * virtq_push().
 *
 * Everything in the rings is written by the guest at any time, so every
 * value is read once into a local copy and checked before use; every
 * guest address goes through mem_gpa_to_hva(). A malformed chain or ring
 * makes the queue "broken": the error callback runs once (the transport
 * then sets DEVICE_NEEDS_RESET) and the queue yields nothing more until it
 * is reset.
 *
 * Threads: a queue is used by one thread at a time (the thread servicing
 * it); the transport serialises configuration against servicing.
 */
#ifndef HYVE_VIRTQ_H
#define HYVE_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct guest_memory;
struct state_writer;
struct state_reader;

#define VIRTQ_MAX_SIZE 32768u       /* largest split queue (queue sizes are powers of 2) */
#define VIRTQ_MAX_IOV 1024u         /* buffers in one chain, as UIO_MAXIOV */
#define VIRTQ_MAX_INDIRECT 1024u    /* descriptors in one indirect table */
#define VIRTQ_MAX_CHAIN_BYTES (128u << 20) /* readable or writable bytes in one chain */

/* Descriptor flags. */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
/* Ring flags. */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Guest-visible layout (little-endian). */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[]; /* [size], then used_event */
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[]; /* [size], then avail_event */
};

/* What the driver writes to the transport's queue registers. */
struct virtq_layout {
	uint16_t size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
};

struct virtq;
typedef void (*virtq_error_fn)(struct virtq *vq, const char *msg, void *opaque);

struct virtq {
	/* Set once by the owner. */
	const struct guest_memory *mem;
	uint16_t index;      /* queue number within the device */
	uint16_t max_size;   /* what the device offers (power of 2) */
	virtq_error_fn on_error;
	void *opaque;

	/*
	 * Set by virtq_enable()/virtq_restore() from a validated copy of the
	 * driver's layout, cleared by virtq_reset(); every run-time path uses
	 * these. `enabled` is also read by the transport's other threads
	 * (atomically, virtq_is_enabled()).
	 */
	struct virtq_layout ring; /* ring.size: entries in each ring (0 while disabled) */
	bool enabled;
	bool event_idx;      /* VIRTIO_F_RING_EVENT_IDX negotiated */
	bool indirect;       /* VIRTIO_F_INDIRECT_DESC negotiated */

	/* Mapped rings, valid while enabled. */
	struct virtq_desc *desc;
	struct virtq_avail *avail;
	struct virtq_used *used;

	/* Device-side progress. */
	uint16_t last_avail_idx; /* next avail ring entry to consume */
	uint16_t used_idx;       /* next used ring entry to fill (= used->idx) */
	uint16_t signalled_used; /* used_idx when the driver was last interrupted */
	bool signalled_valid;
	bool broken;
	char error[160];         /* why it broke */

	/* Heads popped but not yet pushed: one bit per descriptor index. */
	uint64_t *inflight;
	unsigned ninflight;
};

/* A chain from virtq_pop(): readable buffers iov[0..n_out), then writable ones. */
struct virtq_chain {
	uint16_t head;
	unsigned n_out, n_in;
	uint32_t out_len, in_len; /* byte totals */
	struct iovec *iov;        /* supplied by the caller */
	unsigned max_iov;
};

/* Sets up an unconfigured queue; 0 or -1 (allocation). */
int virtq_init(struct virtq *vq, const struct guest_memory *mem, uint16_t index, uint16_t max_size,
	       virtq_error_fn on_error, void *opaque);
void virtq_destroy(struct virtq *vq);
/* Back to the power-on state: disabled, no rings, not broken. */
void virtq_reset(struct virtq *vq);
/* The registers' power-on values for this queue: size max_size, addresses 0. */
struct virtq_layout virtq_reset_layout(const struct virtq *vq);

/*
 * Validates a copy of *layout (size a power of 2 up to max_size, alignment,
 * all three rings inside RAM) and maps the rings; the queue must be set up
 * with features already chosen. 0, or -1 with the queue broken (the error
 * callback has run).
 */
int virtq_enable(struct virtq *vq, const struct virtq_layout *layout);
/* Is the queue enabled? Safe from any thread. */
bool virtq_is_enabled(const struct virtq *vq);

/* Is there a chain to pop? false for a disabled or broken queue. */
bool virtq_has_avail(struct virtq *vq);
/*
 * Takes the next chain. 1: *ch describes it (and the head is in flight
 * until pushed); 0: the ring is empty; -1: the queue is (now) broken.
 */
int virtq_pop(struct virtq *vq, struct virtq_chain *ch);
/*
 * Walks the chain starting at `head` without consuming the avail ring (to
 * resubmit requests that were in flight at a snapshot); 1 or -1.
 */
int virtq_walk(struct virtq *vq, uint16_t head, struct virtq_chain *ch);
/* Returns a chain with `written` bytes of its writable part filled. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t written);
/* Gives back the last popped chain unconsumed (e.g. RX without a packet to fill it). */
void virtq_unpop(struct virtq *vq, uint16_t head);

/*
 * Notification suppression while the device works through the ring.
 * virtq_notify_enable() re-arms driver notifications and returns whether
 * more chains arrived meanwhile (the caller then keeps processing).
 */
void virtq_notify_disable(struct virtq *vq);
bool virtq_notify_enable(struct virtq *vq);
/* After pushes: does the driver want an interrupt (EVENT_IDX or NO_INTERRUPT)? */
bool virtq_need_interrupt(struct virtq *vq);

/* Copies up to len bytes between the chain's buffers and a flat buffer; returns bytes copied. */
size_t virtq_chain_read(const struct virtq_chain *ch, size_t offset, void *buf, size_t len);
size_t virtq_chain_write(const struct virtq_chain *ch, size_t offset, const void *buf, size_t len);

/*
 * Queue state as fields of the current map; reg: the driver's register
 * values (the same as the validated copy while the queue is enabled, and
 * what the driver has written so far while it is not).
 */
void virtq_save(const struct virtq *vq, const struct virtq_layout *reg, struct state_writer *w);
/*
 * Restores the queue and the register values into *reg; when enabled,
 * re-validates and maps the rings; 0 or -1 after logging.
 */
int virtq_restore(struct virtq *vq, struct state_reader *r, struct virtq_layout *reg);

/* Heads in flight, ascending, up to max; returns how many are in flight. */
unsigned virtq_inflight_heads(const struct virtq *vq, uint16_t *heads, unsigned max);

#endif
