/*
 * virtio 1.x modern PCI transport (virtio 1.2, 4.1) and shared device
 * machinery. See virtio_pci.h for the structure and the threading rules.
 */
#include "virtio_pci.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "core/sandbox.h"
#include "core/vcpu.h"
#include "core/vm.h"
#include "snapshot/state.h"

#define VIRTIO_PCI_VENDOR 0x1AF4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VIRTIO_PCI_SUBSYS_DEVICE 0x1100

/* virtio_pci_cap cfg_type values. */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

/* Common configuration fields. */
enum {
	CC_DFSELECT = 0x00,
	CC_DF = 0x04,
	CC_GFSELECT = 0x08,
	CC_GF = 0x0C,
	CC_MSIX_CONFIG = 0x10,
	CC_NUM_QUEUES = 0x12,
	CC_STATUS = 0x14,
	CC_CFG_GENERATION = 0x15,
	CC_Q_SELECT = 0x16,
	CC_Q_SIZE = 0x18,
	CC_Q_MSIX = 0x1A,
	CC_Q_ENABLE = 0x1C,
	CC_Q_NOFF = 0x1E,
	CC_Q_DESCLO = 0x20,
	CC_Q_DESCHI = 0x24,
	CC_Q_AVAILLO = 0x28,
	CC_Q_AVAILHI = 0x2C,
	CC_Q_USEDLO = 0x30,
	CC_Q_USEDHI = 0x34,
};

/* Layout of the capability bodies handed to pci_cap_add (after ID and next). */
struct cap_body {
	uint8_t cap_len, cfg_type, bar, id, pad[2];
	uint32_t offset, length;
} __attribute__((packed));

struct cap_body_ext {
	struct cap_body cap;
	uint32_t extra; /* notify_off_multiplier, or pci_cfg_data */
} __attribute__((packed));

/* Offsets inside the VIRTIO_PCI_CAP_PCI_CFG capability (from its start). */
#define PCICFG_BAR 4
#define PCICFG_OFFSET 8
#define PCICFG_LENGTH 12
#define PCICFG_DATA 16

static const uint64_t transport_features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_RING_EVENT_IDX) |
					   (1ULL << VIRTIO_F_INDIRECT_DESC);

static unsigned nvectors(const struct virtio_dev *vd)
{
	return vd->nqueues + 1;
}

bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit)
{
	return bit < 64 && (vd->guest_features & (1ULL << bit));
}

static uint8_t status_of(struct virtio_dev *vd)
{
	uint8_t s;

	pthread_mutex_lock(&vd->lock);
	s = vd->status;
	pthread_mutex_unlock(&vd->lock);
	return s;
}

/* ---- interrupts ---- */

/*
 * The MSI-X attempt decides whether MSI-X is on (one critical section in the
 * PCI layer): a separate check before it lost the interrupt when another
 * vCPU turned MSI-X off in between. Without MSI-X: ISR and INTx.
 */
static void raise_irq(struct virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
	if (vector != VIRTIO_MSI_NO_VECTOR && pci_msix_notify(&vd->fn, vector) == 0)
		return;
	/* MSI-X without a vector for this source: the driver wants no interrupt. */
	if (vector == VIRTIO_MSI_NO_VECTOR && pci_msix_enabled(&vd->fn))
		return;
	pthread_mutex_lock(&vd->lock);
	vd->isr |= isr_bit;
	pci_intx_assert(&vd->fn);
	pthread_mutex_unlock(&vd->lock);
}

void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	if (q >= vd->nqueues || !virtq_need_interrupt(&vd->queues[q].vq))
		return;
	raise_irq(vd, __atomic_load_n(&vd->queues[q].vector, __ATOMIC_RELAXED), VIRTIO_ISR_QUEUE);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	uint16_t vector;
	bool ok;

	pthread_mutex_lock(&vd->lock);
	vd->config_generation++;
	vector = vd->config_vector;
	ok = vd->status & VIRTIO_STATUS_DRIVER_OK;
	pthread_mutex_unlock(&vd->lock);
	if (ok)
		raise_irq(vd, vector, VIRTIO_ISR_CONFIG);
}

void virtio_dev_fail(struct virtio_dev *vd, const char *fmt, ...)
{
	char msg[256];
	bool first, notify;
	uint16_t vector;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&vd->lock);
	first = !vd->error_logged;
	vd->error_logged = true;
	notify = !(vd->status & VIRTIO_STATUS_NEEDS_RESET) && (vd->status & VIRTIO_STATUS_DRIVER_OK);
	vd->status |= VIRTIO_STATUS_NEEDS_RESET;
	vector = vd->config_vector;
	pthread_mutex_unlock(&vd->lock);
	if (first)
		log_warn("%s (%s): %s; the device needs a reset", vd->dev->id, vd->ops->name, msg);
	if (notify)
		raise_irq(vd, vector, VIRTIO_ISR_CONFIG);
}

static void on_vq_error(struct virtq *vq, const char *msg, void *opaque)
{
	(void)vq;
	virtio_dev_fail(opaque, "%s", msg);
}

/* ---- the I/O thread ---- */

/* Parks while asked to (or frozen for a snapshot); false when the thread must end. */
static bool io_checkpoint(struct virtio_dev *vd)
{
	struct vm *vm = vd->dev->vm;
	bool run;

	pthread_mutex_lock(&vm->lock);
	for (;;) {
		if (vd->stop)
			break;
		if (vd->frozen && vm->state != VM_PAUSED)
			vd->frozen = false;
		if (vd->pause_req == 0 && !vd->frozen)
			break;
		if (!vd->parked) {
			vd->parked = true;
			pthread_cond_broadcast(&vm->cond);
		}
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	vd->parked = false;
	run = !vd->stop;
	pthread_mutex_unlock(&vm->lock);
	return run;
}

/*
 * After a restore, once the VM runs (vCPU threads start only after the
 * whole restore; earlier, interrupts would land in interrupt controllers
 * whose state is restored after the devices'):
 * - chains the driver made available before the snapshot still wait for
 *   the device and no notification will come for them: kick every queue;
 * - completions made while the VM was being saved may have raised
 *   interrupts after the vCPUs' interrupt state was saved (snapshots save
 *   vCPUs first): interrupt every queue once. A driver finding nothing new
 *   in the used ring ignores it.
 */
static bool restore_kick_due(struct virtio_dev *vd)
{
	struct vm *vm = vd->dev->vm;

	if (!vd->restore_kick)
		return false;
	if (!vm->vcpus || !vm->ncpus || !__atomic_load_n(&vm->vcpus_started, __ATOMIC_ACQUIRE))
		return false;
	vd->restore_kick = false;
	for (unsigned q = 0; q < vd->nqueues; q++) {
		if (!virtq_is_enabled(&vd->queues[q].vq))
			continue;
		virtio_kick(vd, q);
		raise_irq(vd, __atomic_load_n(&vd->queues[q].vector, __ATOMIC_RELAXED), VIRTIO_ISR_QUEUE);
	}
	return true;
}

static void *io_main(void *opaque)
{
	struct virtio_dev *vd = opaque;
	struct epoll_event ev[16];

	/* Confined before it can see any guest request (the guest has not started yet). */
	bool confined = sandbox_enter(SANDBOX_IO) == 0;

	if (!confined)
		vm_request_exit(vd->dev->vm, HYVE_EXIT_ERROR);
	while (confined && io_checkpoint(vd)) {
		restore_kick_due(vd);
		/* Only while a restored VM has not started: look again shortly. */
		int n = epoll_wait(vd->epfd, ev, 16, vd->restore_kick ? 10 : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("%s: I/O thread: epoll_wait: %s", vd->dev->id, strerror(errno));
			break;
		}
		if (!io_checkpoint(vd))
			break;
		for (int i = 0; i < n; i++) {
			struct virtio_io_source *src = ev[i].data.ptr;
			src->fn(src->opaque, ev[i].events);
		}
	}
	/* Whoever waits for a park must not wait forever. */
	pthread_mutex_lock(&vd->dev->vm->lock);
	vd->parked = true;
	pthread_cond_broadcast(&vd->dev->vm->cond);
	pthread_mutex_unlock(&vd->dev->vm->lock);
	return NULL;
}

static void drain_eventfd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
}

static void ctl_ready(void *opaque, uint32_t events)
{
	struct virtio_dev *vd = opaque;

	(void)events;
	drain_eventfd(vd->ctl_fd);
}

static void kick_ready(void *opaque, uint32_t events)
{
	struct virtio_queue *q = opaque;
	struct virtio_dev *vd = q->vd;
	uint8_t status;

	(void)events;
	drain_eventfd(q->kick_fd);
	status = status_of(vd);
	if ((status & VIRTIO_STATUS_DRIVER_OK) && !(status & VIRTIO_STATUS_NEEDS_RESET) && virtq_is_enabled(&q->vq))
		vd->ops->queue_notify(vd, q->vq.index);
}

int virtio_io_add(struct virtio_dev *vd, int fd, uint32_t events, struct virtio_io_source *src)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	if (epoll_ctl(vd->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_error("%s: cannot watch fd %d: %s", vd->dev->id, fd, strerror(errno));
		return -1;
	}
	return 0;
}

int virtio_io_modify(struct virtio_dev *vd, int fd, uint32_t events, struct virtio_io_source *src)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return epoll_ctl(vd->epfd, EPOLL_CTL_MOD, fd, &ev);
}

void virtio_io_del(struct virtio_dev *vd, int fd)
{
	epoll_ctl(vd->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void virtio_kick(struct virtio_dev *vd, unsigned q)
{
	uint64_t one = 1;

	if (q < vd->nqueues && write(vd->queues[q].kick_fd, &one, sizeof(one)) < 0)
		log_warn("%s: cannot kick queue %u: %s", vd->dev->id, q, strerror(errno));
}

void virtio_quiesce(struct virtio_dev *vd)
{
	struct vm *vm = vd->dev->vm;
	uint64_t one = 1;

	if (!vd->thread_started || pthread_equal(pthread_self(), vd->thread))
		return;
	pthread_mutex_lock(&vm->lock);
	vd->pause_req++;
	pthread_mutex_unlock(&vm->lock);
	if (write(vd->ctl_fd, &one, sizeof(one)) < 0)
		log_warn("%s: cannot wake the I/O thread: %s", vd->dev->id, strerror(errno));
	pthread_mutex_lock(&vm->lock);
	while (!vd->parked)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

void virtio_resume(struct virtio_dev *vd)
{
	struct vm *vm = vd->dev->vm;

	if (!vd->thread_started || pthread_equal(pthread_self(), vd->thread))
		return;
	pthread_mutex_lock(&vm->lock);
	if (vd->pause_req)
		vd->pause_req--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void virtio_service_queue(struct virtio_dev *vd, unsigned q, struct iovec *iov, unsigned max_iov,
			  virtio_chain_fn handle)
{
	struct virtq *vq = &vd->queues[q].vq;
	struct virtq_chain ch = { .iov = iov, .max_iov = max_iov };
	bool pushed = false;

	do {
		virtq_notify_disable(vq);
		for (;;) {
			int n, rc = virtq_pop(vq, &ch);
			if (rc <= 0)
				break;
			n = handle(vd, q, &ch);
			if (n < 0) {
				virtq_unpop(vq, ch.head);
				virtq_notify_enable(vq);
				goto out;
			}
			virtq_push(vq, ch.head, (uint32_t)n);
			pushed = true;
		}
	} while (virtq_notify_enable(vq));
out:
	if (pushed)
		virtio_queue_interrupt(vd, q);
}

/* ---- ioeventfds ---- */

static int ioeventfd_set(struct virtio_dev *vd, uint64_t base, bool assign)
{
	int vm_fd = vd->dev->vm->vm_fd;

	for (unsigned q = 0; q < vd->nqueues; q++) {
		struct kvm_ioeventfd io = {
			.addr = base + q * VIRTIO_NOTIFY_MULT,
			.len = 2,
			.fd = vd->queues[q].kick_fd,
			.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
		};
		if (ioctl(vm_fd, KVM_IOEVENTFD, &io) < 0 && assign) {
			log_warn("%s: no ioeventfd for queue %u (%s): notifications will exit to hyve", vd->dev->id,
				 q, strerror(errno));
			while (q-- > 0) {
				io.addr = base + q * VIRTIO_NOTIFY_MULT;
				io.fd = vd->queues[q].kick_fd;
				io.flags = KVM_IOEVENTFD_FLAG_DEASSIGN;
				ioctl(vm_fd, KVM_IOEVENTFD, &io);
			}
			return -1;
		}
	}
	return 0;
}

/* Follows the BAR: notifications are caught by KVM wherever the guest put it. Caller holds vd->lock. */
static void ioeventfd_update(struct virtio_dev *vd)
{
	uint64_t bar;
	/* Where the BAR is decoded: a placement the bus refused must not catch writes to another device. */
	uint64_t want = pci_bar_mapped(&vd->fn, VIRTIO_BAR, &bar) ? bar + VIRTIO_NOTIFY_OFF : 0;

	if (vd->dev->vm->vm_fd < 0 || (vd->ioeventfds && vd->ioeventfd_base == want))
		return;
	if (vd->ioeventfds)
		ioeventfd_set(vd, vd->ioeventfd_base, false);
	vd->ioeventfds = false;
	if (want && ioeventfd_set(vd, want, true) == 0) {
		vd->ioeventfds = true;
		vd->ioeventfd_base = want;
	}
}

/* ---- reset ---- */

static void reset_locked_state(struct virtio_dev *vd)
{
	vd->status = 0;
	vd->guest_features = 0;
	vd->dfselect = vd->gfselect = 0;
	vd->config_vector = VIRTIO_MSI_NO_VECTOR;
	vd->queue_select = 0;
	vd->isr = 0;
	/* error_logged stays: a guest that breaks the device again and again is reported once. */
	pci_intx_deassert(&vd->fn);
}

/* Device reset (status 0): no request survives it. Caller holds vd->cfg_lock, not vd->lock. */
static void device_reset(struct virtio_dev *vd)
{
	virtio_quiesce(vd);
	for (unsigned q = 0; q < vd->nqueues; q++) {
		virtq_reset(&vd->queues[q].vq);
		__atomic_store_n(&vd->queues[q].vector, VIRTIO_MSI_NO_VECTOR, __ATOMIC_RELAXED);
		drain_eventfd(vd->queues[q].kick_fd);
	}
	if (vd->ops->reset)
		vd->ops->reset(vd);
	pthread_mutex_lock(&vd->lock);
	reset_locked_state(vd);
	for (unsigned q = 0; q < vd->nqueues; q++)
		vd->queues[q].reg = virtq_reset_layout(&vd->queues[q].vq);
	pthread_mutex_unlock(&vd->lock);
	virtio_resume(vd);
}

void virtio_dev_reset(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->cfg_lock);
	device_reset(vd);
	pthread_mutex_unlock(&vd->cfg_lock);
	pci_function_reset(&vd->fn);
	pthread_mutex_lock(&vd->lock);
	ioeventfd_update(vd);
	pthread_mutex_unlock(&vd->lock);
}

/* ---- common configuration ---- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v), put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v), put32(p + 4, (uint32_t)(v >> 32));
}

/* The common configuration as the driver would read it. Caller holds vd->lock. */
static void common_image(struct virtio_dev *vd, uint8_t *img)
{
	memset(img, 0, VIRTIO_COMMON_LEN);
	put32(img + CC_DFSELECT, vd->dfselect);
	put32(img + CC_DF, vd->dfselect < 2 ? (uint32_t)(vd->host_features >> (32 * vd->dfselect)) : 0);
	put32(img + CC_GFSELECT, vd->gfselect);
	put32(img + CC_GF, vd->gfselect < 2 ? (uint32_t)(vd->guest_features >> (32 * vd->gfselect)) : 0);
	put16(img + CC_MSIX_CONFIG, vd->config_vector);
	put16(img + CC_NUM_QUEUES, (uint16_t)vd->nqueues);
	img[CC_STATUS] = vd->status;
	img[CC_CFG_GENERATION] = vd->config_generation;
	put16(img + CC_Q_SELECT, vd->queue_select);
	if (vd->queue_select < vd->nqueues) {
		struct virtio_queue *q = &vd->queues[vd->queue_select];
		put16(img + CC_Q_SIZE, q->reg.size);
		put16(img + CC_Q_MSIX, __atomic_load_n(&q->vector, __ATOMIC_RELAXED));
		put16(img + CC_Q_ENABLE, virtq_is_enabled(&q->vq));
		put16(img + CC_Q_NOFF, vd->queue_select);
		put64(img + CC_Q_DESCLO, q->reg.desc_gpa);
		put64(img + CC_Q_AVAILLO, q->reg.avail_gpa);
		put64(img + CC_Q_USEDLO, q->reg.used_gpa);
	}
}

static uint16_t valid_vector(const struct virtio_dev *vd, uint64_t v)
{
	return v < nvectors(vd) ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

static void set_half(uint64_t *field, unsigned hi, unsigned size, uint64_t v)
{
	if (size == 8 && !hi) {
		*field = v;
		return;
	}
	if (hi)
		*field = (*field & 0xFFFFFFFFULL) | (v << 32);
	else
		*field = (*field & ~0xFFFFFFFFULL) | (v & 0xFFFFFFFFULL);
}

/* FEATURES_OK: only offered features, VERSION_1 required, and whatever the model checks. */
static bool features_acceptable(struct virtio_dev *vd)
{
	uint64_t f = vd->guest_features;

	if (!(f & (1ULL << VIRTIO_F_VERSION_1)) || (f & ~vd->host_features))
		return false;
	return !vd->ops->features_ok || vd->ops->features_ok(vd, f) == 0;
}

/* Status writes; caller holds vd->cfg_lock, not vd->lock. */
static void write_status(struct virtio_dev *vd, uint8_t val)
{
	uint8_t old, new;

	if (val == 0) {
		device_reset(vd);
		return;
	}
	pthread_mutex_lock(&vd->lock);
	old = vd->status;
	new = (uint8_t)((val & ~VIRTIO_STATUS_NEEDS_RESET) | (old & VIRTIO_STATUS_NEEDS_RESET));
	if ((new & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(vd))
		new &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	vd->status = new;
	pthread_mutex_unlock(&vd->lock);
	if ((new & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (vd->ops->activate) {
			virtio_quiesce(vd);
			vd->ops->activate(vd);
			virtio_resume(vd);
		}
		/* Buffers made available before DRIVER_OK are serviced now. */
		for (unsigned q = 0; q < vd->nqueues; q++)
			if (virtq_is_enabled(&vd->queues[q].vq))
				virtio_kick(vd, q);
	}
}

/*
 * Q_ENABLE. Caller holds vd->cfg_lock, so no other vCPU changes the queue's
 * registers or resets the device until the queue runs with the layout
 * checked here.
 */
static void enable_queue(struct virtio_dev *vd, unsigned qi)
{
	struct virtio_queue *q = &vd->queues[qi];
	struct virtq_layout layout;

	virtio_quiesce(vd);
	if (!virtq_is_enabled(&q->vq)) {
		pthread_mutex_lock(&vd->lock);
		layout = q->reg;
		pthread_mutex_unlock(&vd->lock);
		q->vq.event_idx = virtio_has_feature(vd, VIRTIO_F_RING_EVENT_IDX);
		q->vq.indirect = virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC);
		virtq_enable(&q->vq, &layout); /* failure: NEEDS_RESET via on_vq_error */
	}
	virtio_resume(vd);
}

/* Caller holds vd->cfg_lock. */
static void common_write_locked(struct virtio_dev *vd, unsigned off, unsigned size, uint64_t v)
{
	struct virtio_queue *q;
	bool queue_ok;

	/* Writes that wait for the I/O thread run without vd->lock. */
	if (off == CC_STATUS && size == 1) {
		write_status(vd, (uint8_t)v);
		return;
	}
	pthread_mutex_lock(&vd->lock);
	q = vd->queue_select < vd->nqueues ? &vd->queues[vd->queue_select] : NULL;
	/* Queue registers are frozen once the queue is enabled (until reset). */
	queue_ok = q && !virtq_is_enabled(&q->vq);
	switch (off) {
	case CC_DFSELECT:
		if (size == 4)
			vd->dfselect = (uint32_t)v;
		break;
	case CC_GFSELECT:
		if (size == 4)
			vd->gfselect = (uint32_t)v;
		break;
	case CC_GF:
		if (size == 4 && vd->gfselect < 2 && !(vd->status & VIRTIO_STATUS_FEATURES_OK))
			set_half(&vd->guest_features, vd->gfselect, 4, v);
		break;
	case CC_MSIX_CONFIG:
		if (size == 2)
			vd->config_vector = valid_vector(vd, v);
		break;
	case CC_Q_SELECT:
		if (size == 2)
			vd->queue_select = (uint16_t)v;
		break;
	case CC_Q_SIZE:
		if (size == 2 && queue_ok)
			q->reg.size = (uint16_t)v;
		break;
	case CC_Q_MSIX:
		if (size == 2 && q)
			__atomic_store_n(&q->vector, valid_vector(vd, v), __ATOMIC_RELAXED);
		break;
	case CC_Q_ENABLE:
		if (size == 2 && v == 1 && queue_ok) {
			unsigned qi = vd->queue_select;
			pthread_mutex_unlock(&vd->lock);
			enable_queue(vd, qi);
			return;
		}
		break;
	case CC_Q_DESCLO:
	case CC_Q_DESCHI:
		if (queue_ok && (size == 4 || (size == 8 && off == CC_Q_DESCLO)))
			set_half(&q->reg.desc_gpa, off == CC_Q_DESCHI, size, v);
		break;
	case CC_Q_AVAILLO:
	case CC_Q_AVAILHI:
		if (queue_ok && (size == 4 || (size == 8 && off == CC_Q_AVAILLO)))
			set_half(&q->reg.avail_gpa, off == CC_Q_AVAILHI, size, v);
		break;
	case CC_Q_USEDLO:
	case CC_Q_USEDHI:
		if (queue_ok && (size == 4 || (size == 8 && off == CC_Q_USEDLO)))
			set_half(&q->reg.used_gpa, off == CC_Q_USEDHI, size, v);
		break;
	default:
		break; /* read-only or unknown: ignored */
	}
	pthread_mutex_unlock(&vd->lock);
}

static void common_write(struct virtio_dev *vd, unsigned off, unsigned size, uint64_t v)
{
	pthread_mutex_lock(&vd->cfg_lock);
	common_write_locked(vd, off, size, v);
	pthread_mutex_unlock(&vd->cfg_lock);
}

/* ---- the BAR ---- */

static uint64_t get_le(const uint8_t *data, unsigned size)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)data[i] << (8 * i);
	return v;
}

static void bar_access(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	struct virtio_dev *vd = opaque;

	if (!is_write)
		memset(data, 0, size);
	if (off + size <= VIRTIO_COMMON_OFF + VIRTIO_COMMON_LEN) { /* common config starts the BAR */
		unsigned o = (unsigned)(off - VIRTIO_COMMON_OFF);
		if (is_write) {
			common_write(vd, o, size, get_le(data, size));
		} else {
			uint8_t img[VIRTIO_COMMON_LEN];
			pthread_mutex_lock(&vd->lock);
			common_image(vd, img);
			pthread_mutex_unlock(&vd->lock);
			memcpy(data, img + o, size);
		}
	} else if (off == VIRTIO_ISR_OFF && !is_write) {
		/* Reading ISR acknowledges it and lowers INTx. */
		pthread_mutex_lock(&vd->lock);
		data[0] = vd->isr;
		vd->isr = 0;
		pci_intx_deassert(&vd->fn);
		pthread_mutex_unlock(&vd->lock);
	} else if (off >= VIRTIO_DEVCFG_OFF && off + size <= VIRTIO_DEVCFG_OFF + VIRTIO_DEVCFG_MAX) {
		unsigned o = (unsigned)(off - VIRTIO_DEVCFG_OFF);
		pthread_mutex_lock(&vd->lock);
		if (is_write) {
			if (vd->ops->config_write && o + size <= vd->config_size)
				vd->ops->config_write(vd, o, data, size);
		} else {
			for (unsigned i = 0; i < size; i++)
				data[i] = o + i < vd->config_size ? vd->config[o + i] : 0;
		}
		pthread_mutex_unlock(&vd->lock);
	} else if (off >= VIRTIO_NOTIFY_OFF && off < VIRTIO_NOTIFY_OFF + VIRTIO_NOTIFY_MULT * vd->nqueues) {
		/* Reaches here only when KVM did not take it (no ioeventfd, or another access size). */
		if (is_write)
			virtio_kick(vd, (unsigned)(off - VIRTIO_NOTIFY_OFF) / VIRTIO_NOTIFY_MULT);
	}
}

/* ---- PCI configuration hooks: BAR moves and the VIRTIO_PCI_CAP_PCI_CFG window ---- */

static bool overlaps(unsigned off, unsigned size, unsigned start, unsigned len)
{
	return off < start + len && start < off + size;
}

/* The window's target: BAR access of 1, 2 or 4 bytes; false when the driver set it up wrongly. */
static bool pci_cfg_window(struct virtio_dev *vd, uint64_t *boff, unsigned *len)
{
	unsigned c = vd->pci_cfg_cap;
	uint8_t bar = (uint8_t)pci_cfg_get(&vd->fn, c + PCICFG_BAR, 1);
	uint32_t o = pci_cfg_get(&vd->fn, c + PCICFG_OFFSET, 4);
	uint32_t l = pci_cfg_get(&vd->fn, c + PCICFG_LENGTH, 4);

	if (bar != VIRTIO_BAR || (l != 1 && l != 2 && l != 4) || o % l || o > VIRTIO_BAR_SIZE - l)
		return false;
	*boff = o;
	*len = l;
	return true;
}

static void cfg_read_hook(struct pci_function *fn, unsigned off, unsigned size, uint32_t *val)
{
	struct virtio_dev *vd = fn->opaque;
	unsigned data_off = vd->pci_cfg_cap + PCICFG_DATA;
	uint8_t buf[4] = { 0 };
	uint64_t boff;
	unsigned len;

	if (!vd->pci_cfg_cap || !overlaps(off, size, data_off, 4) || !pci_cfg_window(vd, &boff, &len))
		return;
	bar_access(vd, boff, buf, len, false);
	/* Place the window's bytes where this config read sees them. */
	for (unsigned i = 0; i < size; i++) {
		unsigned c = off + i;
		if (c >= data_off && c < data_off + 4) {
			*val &= ~(0xFFu << (8 * i));
			*val |= (uint32_t)buf[c - data_off] << (8 * i);
		}
	}
}

static void cfg_write_hook(struct pci_function *fn, unsigned off, unsigned size, uint32_t val)
{
	struct virtio_dev *vd = fn->opaque;
	uint64_t boff;
	unsigned len;

	if (off < 0x40) {
		/* COMMAND or a BAR may have changed. */
		pthread_mutex_lock(&vd->lock);
		ioeventfd_update(vd);
		pthread_mutex_unlock(&vd->lock);
		return;
	}
	if (vd->pci_cfg_cap && off == vd->pci_cfg_cap + PCICFG_DATA && pci_cfg_window(vd, &boff, &len) &&
	    size >= len) {
		/* This write's value: re-reading the register could see another vCPU's write. */
		uint8_t buf[4];
		put32(buf, val);
		bar_access(vd, boff, buf, len, true);
	}
}

/* ---- creation ---- */

static int add_cap(struct virtio_dev *vd, uint8_t type, uint32_t offset, uint32_t length, bool ext, uint32_t extra)
{
	struct cap_body_ext b = {
		.cap = {
			.cap_len = (uint8_t)(2 + (ext ? sizeof(struct cap_body_ext) : sizeof(struct cap_body))),
			.cfg_type = type,
			.bar = VIRTIO_BAR,
			.offset = offset,
			.length = length,
		},
		.extra = extra,
	};

	return pci_cap_add(&vd->fn, PCI_CAP_ID_VNDR, &b, ext ? sizeof(b) : sizeof(b.cap));
}

int virtio_dev_init(struct virtio_dev *vd, struct device *dev, const struct virtio_ops *ops, void *opaque,
		    void *config, unsigned config_size)
{
	int cap;

	vd->dev = dev;
	vd->ops = ops;
	vd->opaque = opaque;
	vd->config = config;
	vd->config_size = config_size;
	vd->nqueues = ops->nqueues;
	vd->host_features = ops->features | transport_features;
	vd->epfd = vd->ctl_fd = -1;
	pthread_mutex_init(&vd->cfg_lock, NULL);
	pthread_mutex_init(&vd->lock, NULL);
	if (ops->nqueues == 0 || ops->nqueues > VIRTIO_MAX_QUEUES || config_size > VIRTIO_DEVCFG_MAX)
		return -1;

	if (pci_function_init(&vd->fn, dev, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->type),
			      ops->pci_class, ops->pci_subclass, 0) < 0)
		return -1;
	vd->fn.opaque = vd;
	pci_set_revision(&vd->fn, 1);
	pci_set_subsystem(&vd->fn, VIRTIO_PCI_VENDOR, VIRTIO_PCI_SUBSYS_DEVICE);
	if (pci_bar_add(&vd->fn, VIRTIO_BAR, PCI_BAR_MEM64 | PCI_BAR_PREFETCH, VIRTIO_BAR_SIZE, bar_access, vd) < 0 ||
	    pci_msix_init(&vd->fn, nvectors(vd), VIRTIO_BAR, VIRTIO_MSIX_TABLE_OFF, VIRTIO_MSIX_PBA_OFF) < 0 ||
	    pci_intx_request(&vd->fn) < 0)
		goto fail_pci;
	if (add_cap(vd, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_COMMON_OFF, VIRTIO_COMMON_LEN, false, 0) < 0 ||
	    add_cap(vd, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_ISR_OFF, 1, false, 0) < 0 ||
	    (config_size && add_cap(vd, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_DEVCFG_OFF, config_size, false, 0) < 0) ||
	    add_cap(vd, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_NOTIFY_OFF, VIRTIO_NOTIFY_MULT * vd->nqueues, true,
		    VIRTIO_NOTIFY_MULT) < 0 ||
	    (cap = add_cap(vd, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, true, 0)) < 0) {
		log_error("%s: no room for the virtio capabilities", dev->id);
		goto fail_pci;
	}
	vd->pci_cfg_cap = (unsigned)cap;
	pci_cfg_set_wmask(&vd->fn, cap + PCICFG_BAR, 1, 0xFF);
	pci_cfg_set_wmask(&vd->fn, cap + PCICFG_OFFSET, 4, 0xFFFFFFFF);
	pci_cfg_set_wmask(&vd->fn, cap + PCICFG_LENGTH, 4, 0xFFFFFFFF);
	pci_cfg_set_wmask(&vd->fn, cap + PCICFG_DATA, 4, 0xFFFFFFFF);
	vd->fn.cfg_read = cfg_read_hook;
	vd->fn.cfg_write = cfg_write_hook;

	vd->queues = calloc(vd->nqueues, sizeof(*vd->queues));
	vd->kick_sources = calloc(vd->nqueues, sizeof(*vd->kick_sources));
	vd->epfd = epoll_create1(EPOLL_CLOEXEC);
	vd->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (unsigned q = 0; vd->queues && q < vd->nqueues; q++)
		vd->queues[q].kick_fd = -1;
	if (!vd->queues || !vd->kick_sources || vd->epfd < 0 || vd->ctl_fd < 0) {
		log_error("%s: cannot set up the I/O thread: %s", dev->id, strerror(errno));
		goto fail;
	}
	vd->ctl_source = (struct virtio_io_source){ ctl_ready, vd };
	if (virtio_io_add(vd, vd->ctl_fd, EPOLLIN, &vd->ctl_source) < 0)
		goto fail;
	for (unsigned q = 0; q < vd->nqueues; q++) {
		struct virtio_queue *vq = &vd->queues[q];
		vq->vd = vd;
		vq->vector = VIRTIO_MSI_NO_VECTOR;
		if (virtq_init(&vq->vq, &dev->vm->mem, (uint16_t)q, ops->queue_size, on_vq_error, vd) < 0)
			goto fail;
		vq->reg = virtq_reset_layout(&vq->vq);
		vq->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		vd->kick_sources[q] = (struct virtio_io_source){ kick_ready, vq };
		if (vq->kick_fd < 0 || virtio_io_add(vd, vq->kick_fd, EPOLLIN, &vd->kick_sources[q]) < 0)
			goto fail;
	}
	reset_locked_state(vd);
	ioeventfd_update(vd);
	if (pthread_create(&vd->thread, NULL, io_main, vd) != 0) {
		log_error("%s: cannot start the I/O thread", dev->id);
		goto fail;
	}
	vd->thread_started = true;
	{
		char name[16];
		snprintf(name, sizeof(name), "io-%s", ops->name + (strncmp(ops->name, "virtio-", 7) ? 0 : 7));
		pthread_setname_np(vd->thread, name);
	}
	return 0;

fail:
	virtio_dev_destroy(vd);
	return -1;
fail_pci:
	pci_function_destroy(&vd->fn);
	pthread_mutex_destroy(&vd->lock);
	pthread_mutex_destroy(&vd->cfg_lock);
	return -1;
}

void virtio_dev_destroy(struct virtio_dev *vd)
{
	if (vd->thread_started) {
		struct vm *vm = vd->dev->vm;
		uint64_t one = 1;
		pthread_mutex_lock(&vm->lock);
		vd->stop = true;
		pthread_cond_broadcast(&vm->cond);
		pthread_mutex_unlock(&vm->lock);
		if (write(vd->ctl_fd, &one, sizeof(one)) < 0)
			log_warn("%s: cannot wake the I/O thread", vd->dev->id);
		pthread_join(vd->thread, NULL);
		vd->thread_started = false;
	}
	if (vd->ioeventfds)
		ioeventfd_set(vd, vd->ioeventfd_base, false);
	vd->ioeventfds = false;
	for (unsigned q = 0; vd->queues && q < vd->nqueues; q++) {
		virtq_destroy(&vd->queues[q].vq);
		if (vd->queues[q].kick_fd >= 0)
			close(vd->queues[q].kick_fd);
	}
	free(vd->queues);
	free(vd->kick_sources);
	vd->queues = NULL;
	vd->kick_sources = NULL;
	if (vd->epfd >= 0)
		close(vd->epfd);
	if (vd->ctl_fd >= 0)
		close(vd->ctl_fd);
	vd->epfd = vd->ctl_fd = -1;
	pci_function_destroy(&vd->fn);
	pthread_mutex_destroy(&vd->lock);
	pthread_mutex_destroy(&vd->cfg_lock);
}

/* ---- snapshots ---- */

void virtio_freeze(struct virtio_dev *vd)
{
	struct vm *vm = vd->dev->vm;

	virtio_quiesce(vd);
	pthread_mutex_lock(&vm->lock);
	vd->frozen = vd->thread_started;
	pthread_mutex_unlock(&vm->lock);
	virtio_resume(vd); /* drops the quiesce request; `frozen` keeps it parked */
}

void virtio_save(struct virtio_dev *vd, struct state_writer *w)
{
	char key[16];

	virtio_freeze(vd);
	pci_function_save(&vd->fn, w);
	pthread_mutex_lock(&vd->lock);
	state_put_u64(w, "host_features", vd->host_features);
	state_put_u64(w, "guest_features", vd->guest_features);
	state_put_u64(w, "dfselect", vd->dfselect);
	state_put_u64(w, "gfselect", vd->gfselect);
	state_put_u64(w, "status", vd->status);
	state_put_u64(w, "config_generation", vd->config_generation);
	state_put_u64(w, "config_vector", vd->config_vector);
	state_put_u64(w, "queue_select", vd->queue_select);
	state_put_u64(w, "isr", vd->isr);
	state_put_bool(w, "error_logged", vd->error_logged);
	state_put_u64(w, "nqueues", vd->nqueues);
	for (unsigned q = 0; q < vd->nqueues; q++) {
		snprintf(key, sizeof(key), "q%u", q);
		state_begin_map(w, key);
		state_put_u64(w, "vector", vd->queues[q].vector);
		virtq_save(&vd->queues[q].vq, &vd->queues[q].reg, w);
		state_end_map(w);
	}
	pthread_mutex_unlock(&vd->lock);
}

int virtio_restore(struct virtio_dev *vd, struct state_reader *r)
{
	uint64_t hf, gf, dfs = 0, gfs = 0, status, gen = 0, cvec = VIRTIO_MSI_NO_VECTOR, qsel = 0, isr = 0, nq, vec;
	bool logged = false;
	char key[16];
	int rc = -1;

	if (state_get_u64(r, "host_features", &hf) < 0 || state_get_u64(r, "guest_features", &gf) < 0 ||
	    state_get_u64(r, "status", &status) < 0 || state_get_u64(r, "nqueues", &nq) < 0) {
		log_error("%s: snapshot lacks virtio fields", vd->dev->id);
		return -1;
	}
	state_get_u64(r, "dfselect", &dfs);
	state_get_u64(r, "gfselect", &gfs);
	state_get_u64(r, "config_generation", &gen);
	state_get_u64(r, "config_vector", &cvec);
	state_get_u64(r, "queue_select", &qsel);
	state_get_u64(r, "isr", &isr);
	state_get_bool(r, "error_logged", &logged);
	if (hf != vd->host_features) {
		log_error("%s: snapshot was taken with device features 0x%llx, this %s offers 0x%llx (different options?)",
			  vd->dev->id, (unsigned long long)hf, vd->ops->name, (unsigned long long)vd->host_features);
		return -1;
	}
	if (nq != vd->nqueues || (gf & ~hf) || status > 0xFF || qsel > 0xFFFF) {
		log_error("%s: snapshot has an invalid virtio state", vd->dev->id);
		return -1;
	}
	pthread_mutex_lock(&vd->cfg_lock);
	virtio_quiesce(vd);
	if (pci_function_restore(&vd->fn, r) < 0)
		goto out;
	for (unsigned q = 0; q < vd->nqueues; q++) {
		struct virtq_layout reg;
		snprintf(key, sizeof(key), "q%u", q);
		if (state_enter_map(r, key) < 0) {
			log_error("%s: snapshot lacks queue %u", vd->dev->id, q);
			goto out;
		}
		vec = VIRTIO_MSI_NO_VECTOR;
		state_get_u64(r, "vector", &vec);
		vd->queues[q].vector = valid_vector(vd, vec);
		if (virtq_restore(&vd->queues[q].vq, r, &reg) < 0) {
			state_leave_map(r);
			goto out;
		}
		state_leave_map(r);
		pthread_mutex_lock(&vd->lock);
		vd->queues[q].reg = reg;
		pthread_mutex_unlock(&vd->lock);
	}
	pthread_mutex_lock(&vd->lock);
	vd->guest_features = gf;
	vd->dfselect = (uint32_t)dfs;
	vd->gfselect = (uint32_t)gfs;
	vd->status = (uint8_t)status;
	vd->config_generation = (uint8_t)gen;
	vd->config_vector = valid_vector(vd, cvec);
	vd->queue_select = (uint16_t)qsel;
	vd->isr = (uint8_t)isr;
	vd->error_logged = logged;
	ioeventfd_update(vd);
	pthread_mutex_unlock(&vd->lock);
	/* Service what was made available before the snapshot once the VM runs (see restore_kick_due). */
	vd->restore_kick = (status & VIRTIO_STATUS_DRIVER_OK) != 0;
	rc = 0;
out:
	virtio_resume(vd);
	pthread_mutex_unlock(&vd->cfg_lock);
	return rc;
}

/* ---- command line ---- */

int virtio_parse_slot_options(struct config *cfg, const char *prefix, const char *opts, const char *positional)
{
	char *copy = strdup(opts), *save = NULL;
	bool first = true;
	int rc = 0;

	if (!copy)
		return -1;
	for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save), first = false) {
		char key[256], *eq = strchr(tok, '=');
		if (first && positional && !eq) {
			snprintf(key, sizeof(key), "%s.%s", prefix, positional);
			rc = config_set(cfg, key, tok);
			continue;
		}
		if (eq)
			*eq = '\0';
		if (!*tok) {
			log_error("%s: empty option in '%s'", prefix, opts);
			rc = -1;
			break;
		}
		snprintf(key, sizeof(key), "%s.%s", prefix, tok);
		rc = config_set(cfg, key, eq ? eq + 1 : "true");
	}
	free(copy);
	return rc;
}
