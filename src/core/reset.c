/* In-process reset (reboot=restart): see reset.h. */
#include "reset.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "config.h"
#include "device.h"
#include "evloop.h"
#include "log.h"
#include "options.h"
#include "vcpu.h"
#include "vm.h"
#include "snapshot/kvm_state.h"
#include "snapshot/state.h"

static const char *const reboot_choices[] = { "exit", "restart", NULL };

static const struct option_decl reset_options[] = {
	{ .name = "reboot", .type = OPTION_ENUM, .def = "exit", .flags = OPTION_PROCESS, .choices = reboot_choices,
	  .help = "on a guest reset: exit (status 0, the caller restarts) or restart in this process" },
	{ 0 },
};
OPTIONS(reset_options)

/* One recorded power-on state, encoded as the snapshot code encodes it (kvm_state.c). */
struct saved_state {
	uint8_t *buf;
	size_t len;
};

struct vm_reset {
	struct vm *vm;
	reset_boot_fn boot_again;
	int event_fd;                  /* written by reset_notify(), read on the event loop */
	struct saved_state *vcpus;     /* one per vCPU */
	struct saved_state irqchip, pit;
	unsigned count;                /* resets done, for the log */
};

bool reset_restarts(const struct config *cfg)
{
	const char *v = config_get(cfg, "reboot");

	return v && strcmp(v, "restart") == 0;
}

typedef int (*vm_saver)(struct vm *vm, struct state_writer *w, char *err, size_t errlen);

static int finish(struct state_writer *w, struct saved_state *out, char *err, size_t errlen)
{
	int rc = state_writer_finish(w, &out->buf, &out->len);

	state_writer_free(w);
	return rc < 0 ? set_error(err, errlen, "out of memory") : 0;
}

static int record_vm(struct vm *vm, vm_saver save, struct saved_state *out, char *err, size_t errlen)
{
	struct state_writer *w = state_writer_new();

	if (!w)
		return set_error(err, errlen, "out of memory");
	if (save(vm, w, err, errlen) < 0) {
		state_writer_free(w);
		return -1;
	}
	return finish(w, out, err, errlen);
}

static int record_vcpu(struct vcpu *vcpu, struct saved_state *out, char *err, size_t errlen)
{
	struct state_writer *w = state_writer_new();

	if (!w)
		return set_error(err, errlen, "out of memory");
	if (kvm_state_save_vcpu(vcpu, w, err, errlen) < 0) {
		state_writer_free(w);
		return -1;
	}
	return finish(w, out, err, errlen);
}

static int record_power_on(struct vm_reset *rs, char *err, size_t errlen)
{
	struct vm *vm = rs->vm;

	rs->vcpus = calloc(vm->ncpus, sizeof(*rs->vcpus));
	if (!rs->vcpus)
		return set_error(err, errlen, "out of memory");
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (record_vcpu(&vm->vcpus[i], &rs->vcpus[i], err, errlen) < 0)
			return -1;
	if (record_vm(vm, kvm_state_save_irqchip, &rs->irqchip, err, errlen) < 0 ||
	    record_vm(vm, kvm_state_save_pit, &rs->pit, err, errlen) < 0)
		return -1;
	return 0;
}

static void on_reset_event(void *opaque, uint32_t events)
{
	struct vm_reset *rs = opaque;
	uint64_t n;

	(void)events;
	if (read(rs->event_fd, &n, sizeof(n)) < 0)
		return;
	/* A paused VM (hyvectl pause, a snapshot being written) resets when it resumes. */
	if (!vm_state_is(rs->vm, VM_RUNNING))
		return;
	vm_pause(rs->vm);
	vm_resume(rs->vm);
}

int reset_prepare(struct vm *vm, reset_boot_fn boot_again)
{
	struct vm_reset *rs;
	char err[256];

	if (!reset_restarts(vm->cfg))
		return 0;
	rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -1;
	rs->vm = vm;
	rs->boot_again = boot_again;
	vm->reset = rs;
	rs->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (rs->event_fd < 0 || evloop_add(vm->loop, rs->event_fd, EPOLLIN, on_reset_event, rs) < 0) {
		log_error("reboot=restart: cannot watch for resets: %s", strerror(errno));
		return -1;
	}
	if (record_power_on(rs, err, sizeof(err)) < 0) {
		log_error("reboot=restart: cannot record the power-on state: %s", err);
		return -1;
	}
	return 0;
}

void reset_free(struct vm *vm)
{
	struct vm_reset *rs = vm->reset;

	if (!rs)
		return;
	if (rs->event_fd >= 0) {
		evloop_del(vm->loop, rs->event_fd);
		close(rs->event_fd);
	}
	for (unsigned i = 0; rs->vcpus && i < vm->ncpus; i++)
		free(rs->vcpus[i].buf);
	free(rs->vcpus);
	free(rs->irqchip.buf);
	free(rs->pit.buf);
	free(rs);
	vm->reset = NULL;
}

void reset_notify(struct vm *vm)
{
	uint64_t one = 1;

	if (vm->reset && write(vm->reset->event_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("cannot signal a reset: %s", strerror(errno));
}

typedef int (*vm_loader)(struct vm *vm, struct state_reader *r, char *err, size_t errlen);

static int load_vm(struct vm *vm, vm_loader load, const struct saved_state *s, char *err, size_t errlen)
{
	struct state_reader *r = state_reader_new(s->buf, s->len);
	int rc;

	if (!r)
		return set_error(err, errlen, "out of memory");
	rc = load(vm, r, err, errlen);
	state_reader_free(r);
	return rc;
}

static int load_vcpu(struct vcpu *vcpu, const struct saved_state *s, char *err, size_t errlen)
{
	struct state_reader *r = state_reader_new(s->buf, s->len);
	int rc;

	if (!r)
		return set_error(err, errlen, "out of memory");
	rc = kvm_state_load_vcpu(vcpu, r, err, errlen);
	state_reader_free(r);
	return rc;
}

/*
 * MSRs whose power-on values the firmware relies on: the MTRRs disabled
 * and cleared (OVMF programs them from scratch) and PAT at its default.
 * The recorded state holds them too (kvm_state.c saves the MTRRs by name,
 * as snapshots need them), but a reset must not depend on the record
 * having been taken before anything programmed them: set them explicitly,
 * after the record is loaded.
 */
#define MSR_MTRR_PHYS_FIRST 0x200 /* 8 base/mask pairs: KVM's MTRRcap VCNT */
#define MSR_MTRR_PHYS_LAST 0x20f
#define MSR_PAT 0x277
#define PAT_POWER_ON 0x0007040600070406ULL
#define MSR_MTRR_DEF_TYPE 0x2ff

static const uint32_t fixed_mtrrs[] = { 0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f };

static int reset_msrs(struct vcpu *vcpu, char *err, size_t errlen)
{
	enum { N = (MSR_MTRR_PHYS_LAST - MSR_MTRR_PHYS_FIRST + 1) + sizeof(fixed_mtrrs) / sizeof(fixed_mtrrs[0]) + 2 };
	_Alignas(struct kvm_msrs) uint8_t buf[sizeof(struct kvm_msrs) + N * sizeof(struct kvm_msr_entry)];
	struct kvm_msrs *m = (struct kvm_msrs *)buf;
	unsigned n = 0;
	int rc;

	memset(buf, 0, sizeof(buf));
	m->entries[n++].index = MSR_MTRR_DEF_TYPE; /* first: MTRRs off while the rest change */
	for (uint32_t i = MSR_MTRR_PHYS_FIRST; i <= MSR_MTRR_PHYS_LAST; i++)
		m->entries[n++].index = i;
	for (size_t i = 0; i < sizeof(fixed_mtrrs) / sizeof(fixed_mtrrs[0]); i++)
		m->entries[n++].index = fixed_mtrrs[i];
	m->entries[n].index = MSR_PAT;
	m->entries[n++].data = PAT_POWER_ON;
	m->nmsrs = n;
	rc = ioctl(vcpu->fd, KVM_SET_MSRS, m);
	if (rc != (int)n)
		return set_error(err, errlen, "vCPU %u: cannot reset MTRRs and PAT (%d of %u set)", vcpu->id, rc, n);
	return 0;
}

/*
 * Devices first (they lower their interrupt lines and drop their MSI
 * routes), then the interrupt controllers and the PIT, then the vCPUs
 * (the BSP at the reset vector, the others waiting for INIT-SIPI), then
 * the boot's own set-up.
 */
static int do_reset(struct vm_reset *rs, char *err, size_t errlen)
{
	struct vm *vm = rs->vm;

	devices_reset_all(vm);
	if (load_vm(vm, kvm_state_restore_irqchip, &rs->irqchip, err, errlen) < 0 ||
	    load_vm(vm, kvm_state_restore_pit, &rs->pit, err, errlen) < 0)
		return -1;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (load_vcpu(&vm->vcpus[i], &rs->vcpus[i], err, errlen) < 0 ||
		    reset_msrs(&vm->vcpus[i], err, errlen) < 0)
			return -1;
	if (rs->boot_again && rs->boot_again(vm) < 0)
		return set_error(err, errlen, "cannot load the boot again");
	/* The boot loaders write guest RAM from here: a live snapshot under way copies all of it again. */
	mem_mark_dirty(&vm->mem, vm->mem.base, vm->mem.size);
	return 0;
}

void reset_run_pending(struct vm *vm)
{
	struct vm_reset *rs = vm->reset;
	char err[256];
	bool pending;

	pthread_mutex_lock(&vm->lock);
	pending = vm->reset_pending && vm->state != VM_EXITING;
	pthread_mutex_unlock(&vm->lock);
	if (!pending || !rs)
		return;
	rs->count++;
	log_info("guest reset %u: restarting the machine", rs->count);
	if (do_reset(rs, err, sizeof(err)) < 0) {
		log_error("guest reset: %s", err);
		vm_request_exit(vm, HYVE_EXIT_ERROR);
	}
	pthread_mutex_lock(&vm->lock);
	vm->reset_pending = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}
