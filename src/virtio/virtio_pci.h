/*
 * The virtio 1.x modern PCI transport and the machinery every virtio device
 * model shares: feature negotiation, the device status state machine,
 * queues, notifications, interrupts, reset, the per-device I/O thread and
 * snapshots. A model (virtio_rnd.c, virtio_blk.c, virtio_net.c) embeds a
 * struct virtio_dev, fills a struct virtio_ops and implements only its
 * request processing and configuration layout.
 *
 * PCI function: vendor 0x1AF4, device 0x1040 + type, revision 1, one 64-bit
 * memory BAR (VIRTIO_BAR) holding the common configuration, ISR status,
 * device configuration and notification structures, the MSI-X table and
 * PBA; the virtio vendor capabilities point into it (plus the
 * VIRTIO_PCI_CAP_PCI_CFG access window). MSI-X vector 0.. are free for the
 * driver to assign to configuration changes and queues; without MSI-X the
 * device raises INTx and reports the cause in the ISR register.
 *
 * Threads:
 * - vCPU threads access the registers (device lock `lock`).
 * - Each device has one I/O thread (its own epoll set) that services queue
 *   notifications and device fds (e.g. a tap). Driver notifications reach
 *   it through one eventfd per queue, registered with KVM_IOEVENTFD at the
 *   queue's notify address so the vCPU does not even exit; blocking work
 *   (file I/O, fdatasync) only ever runs there. Interrupts go out through
 *   the MSI-X vectors' irqfds, or INTx.
 * - Queue state (struct virtq) belongs to the I/O thread while it runs.
 *   Whoever changes it from outside (queue enable, reset, snapshots) first
 *   quiesces the I/O thread (virtio_quiesce): it finishes the request in
 *   progress and parks, so no request is ever in flight across a reset or
 *   snapshot.
 * - Pausing (device run_state, virtio_freeze) and snapshots (save())
 *   quiesce the device and leave it frozen until the VM leaves the paused
 *   state, so nothing (e.g. an incoming packet) touches guest memory or
 *   raises an interrupt while the VM is paused and saved.
 */
#ifndef HYVE_VIRTIO_PCI_H
#define HYVE_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pci/pci.h"
#include "virtio/virtq.h"

struct config;
struct device;
struct state_writer;
struct state_reader;

/* Device types (virtio 1.2, 5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* Transport feature bits. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED 34

#define VIRTIO_MSI_NO_VECTOR 0xFFFF

/* ISR status bits. */
#define VIRTIO_ISR_QUEUE 0x1
#define VIRTIO_ISR_CONFIG 0x2

/* BAR layout. */
#define VIRTIO_BAR 4
#define VIRTIO_BAR_SIZE 0x8000u
#define VIRTIO_COMMON_OFF 0x0000u
#define VIRTIO_COMMON_LEN 0x40u
#define VIRTIO_ISR_OFF 0x1000u
#define VIRTIO_DEVCFG_OFF 0x2000u
#define VIRTIO_DEVCFG_MAX 0x1000u
#define VIRTIO_NOTIFY_OFF 0x3000u
#define VIRTIO_NOTIFY_MULT 4u
#define VIRTIO_MSIX_TABLE_OFF 0x4000u
#define VIRTIO_MSIX_PBA_OFF 0x6000u
#define VIRTIO_MAX_QUEUES 64u

struct virtio_dev;

struct virtio_ops {
	const char *name;      /* model name, for messages */
	uint16_t type;         /* VIRTIO_ID_* */
	uint8_t pci_class, pci_subclass;
	uint16_t nqueues;
	uint16_t queue_size;   /* power of 2 */
	uint64_t features;     /* device-specific bits offered (transport bits are added) */
	/*
	 * Queue q was notified (or kicked after a restore). Runs on the I/O
	 * thread, only while the device is DRIVER_OK and not NEEDS_RESET.
	 */
	void (*queue_notify)(struct virtio_dev *vd, unsigned q);
	/* Optional: FEATURES_OK with these driver features (vd->lock held); -1 refuses them. */
	int (*features_ok)(struct virtio_dev *vd, uint64_t features);
	/* Optional: DRIVER_OK was set (I/O thread quiesced). */
	void (*activate)(struct virtio_dev *vd);
	/* Optional: device reset by the driver or the platform (I/O thread quiesced). */
	void (*reset)(struct virtio_dev *vd);
	/*
	 * Optional: the driver wrote `size` bytes at `off` of the device
	 * configuration (vCPU thread, vd->lock held); the model updates
	 * vd->config as it sees fit. Without it, writes are ignored.
	 */
	void (*config_write)(struct virtio_dev *vd, unsigned off, const uint8_t *data, unsigned size);
};

struct virtio_queue {
	struct virtq vq;      /* run-time state: belongs to the I/O thread (see the file comment) */
	struct virtq_layout reg; /* the driver's queue registers (vd->lock); copied and checked at enable */
	uint16_t vector;      /* MSI-X vector or VIRTIO_MSI_NO_VECTOR */
	int kick_fd;          /* eventfd the driver's notifications land on */
	struct virtio_dev *vd;
};

/* An fd the I/O thread watches: fn(opaque, epoll events) runs on the I/O thread. */
struct virtio_io_source {
	void (*fn)(void *opaque, uint32_t events);
	void *opaque;
};

struct virtio_dev {
	struct pci_function fn;  /* first: the PCI layer's view */
	struct device *dev;
	const struct virtio_ops *ops;
	void *opaque;            /* the model's state */

	/*
	 * Serialises the driver's writes to the common configuration, including
	 * those that wait for the I/O thread (status, queue enable) and so
	 * cannot hold `lock` throughout: checking a queue's registers and
	 * enabling or resetting it are one critical section, whichever vCPUs
	 * write. Taken before `lock`; never taken by the I/O thread.
	 */
	pthread_mutex_t cfg_lock;
	pthread_mutex_t lock;    /* registers below, queue registers, config, ISR */
	uint64_t host_features;
	uint64_t guest_features;
	uint32_t dfselect, gfselect;
	uint8_t status;
	uint8_t config_generation;
	uint16_t config_vector;
	uint16_t queue_select;
	uint8_t isr;
	bool error_logged;       /* an error was logged (once per device, across resets) */
	uint8_t *config;         /* device configuration (model-owned layout) */
	unsigned config_size;

	unsigned nqueues;
	struct virtio_queue *queues;
	struct virtio_io_source *kick_sources;

	/* KVM_IOEVENTFD registration of the notify addresses. */
	bool ioeventfds;          /* registered at ioeventfd_base */
	uint64_t ioeventfd_base;

	/* VIRTIO_PCI_CAP_PCI_CFG window. */
	unsigned pci_cfg_cap;

	/* The I/O thread; pause/park state is guarded by vm->lock and signalled on vm->cond. */
	pthread_t thread;
	bool thread_started;
	int epfd, ctl_fd;
	unsigned pause_req;
	bool parked, stop, frozen;
	bool restore_kick;       /* restored: kick the queues once the vCPUs run (I/O thread) */
	struct virtio_io_source ctl_source;
};

/*
 * Creates the PCI function, BAR, capabilities, MSI-X (1 + nqueues
 * vectors), INTx, queues and the I/O thread. config/config_size: the
 * model's device configuration bytes (kept by the model, read under
 * vd->lock). 0, or -1 after logging (everything undone).
 */
int virtio_dev_init(struct virtio_dev *vd, struct device *dev, const struct virtio_ops *ops, void *opaque,
		    void *config, unsigned config_size);
void virtio_dev_destroy(struct virtio_dev *vd);
/* Platform reset: as a driver write of status 0, plus PCI power-on state. */
void virtio_dev_reset(struct virtio_dev *vd);

/* Feature negotiated? (bit numbers as in the spec). */
bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit);

/* I/O thread: watch a device fd; events as for epoll. 0 or -1. */
int virtio_io_add(struct virtio_dev *vd, int fd, uint32_t events, struct virtio_io_source *src);
int virtio_io_modify(struct virtio_dev *vd, int fd, uint32_t events, struct virtio_io_source *src);
void virtio_io_del(struct virtio_dev *vd, int fd);
/* Makes the I/O thread run queue_notify(q) (from any thread). */
void virtio_kick(struct virtio_dev *vd, unsigned q);

/* Stops the I/O thread at a safe point (from any thread but the I/O thread); nests. */
void virtio_quiesce(struct virtio_dev *vd);
void virtio_resume(struct virtio_dev *vd);

/*
 * For models on the I/O thread: interrupt the driver for queue q if the
 * used ring changed and the driver asked for it (EVENT_IDX /
 * NO_INTERRUPT).
 */
void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q);
/* Configuration change interrupt (bumps config_generation). */
void virtio_config_changed(struct virtio_dev *vd);
/*
 * The device has hit an error it cannot continue from (bad chain, bad
 * request): sets NEEDS_RESET, raises a configuration interrupt, logs once.
 */
void virtio_dev_fail(struct virtio_dev *vd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Standard queue service loop for models that complete each chain at once:
 * pops every available chain, calls handle(vd, q, chain) which returns the
 * bytes written (or -1 to stop: chain given back, e.g. no data yet), pushes,
 * interrupts. Suppresses notifications while working.
 */
typedef int (*virtio_chain_fn)(struct virtio_dev *vd, unsigned q, struct virtq_chain *ch);
void virtio_service_queue(struct virtio_dev *vd, unsigned q, struct iovec *iov, unsigned max_iov,
			  virtio_chain_fn handle);

/*
 * Snapshots of the transport part: PCI function, registers, queues. The
 * model calls these from its save()/restore() and adds its own fields.
 * virtio_save quiesces and freezes the device (see the file comment).
 */
/* The VM paused: finish the request in progress and park until it runs again. */
void virtio_freeze(struct virtio_dev *vd);
void virtio_save(struct virtio_dev *vd, struct state_writer *w);
int virtio_restore(struct virtio_dev *vd, struct state_reader *r);

/*
 * "-s SLOT,virtio-xxx,OPTS" helper: the first option may be a bare value
 * stored under `positional` (e.g. "path"); later ones are key=value or
 * flags (flag=true).
 */
int virtio_parse_slot_options(struct config *cfg, const char *prefix, const char *opts, const char *positional);

#endif
