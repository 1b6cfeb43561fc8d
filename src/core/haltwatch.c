/*
 * Halt detection: a guest whose every vCPU has stopped for good (HLT with
 * interrupts disabled, or never started) can do nothing more, so hyve ends
 * with status 2 ("halted") as bhyve does. With the in-kernel LAPIC such a
 * HLT never leaves KVM_RUN, so once a second the watcher asks each vCPU
 * thread to look at its own state (haltwatch samples in vcpu.c) and decides
 * on the previous round's answers. Two stopped rounds in a row are needed:
 * a sample is a moment, and an NMI can still wake a halted vCPU.
 */
#include "haltwatch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "evloop.h"
#include "log.h"
#include "vcpu.h"
#include "vm.h"

#define ROUNDS_TO_HALT 2

struct haltwatch {
	struct vm *vm;
	int timer_fd;
	unsigned gen;           /* generation of the round asked last */
	unsigned stopped_rounds;
};

/* Whether every vCPU answered round gen stopped, at least one halted with interrupts off. */
static bool round_says_halted(struct vm *vm, unsigned gen)
{
	bool halted = false;

	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (!v->thread_started || atomic_load(&v->sample_gen) != gen || !atomic_load(&v->sample_stopped))
			return false;
		halted |= atomic_load(&v->sample_halted);
	}
	return halted;
}

static void on_tick(void *opaque, uint32_t events)
{
	struct haltwatch *w = opaque;
	uint64_t expirations;

	(void)events;
	if (read(w->timer_fd, &expirations, sizeof(expirations)) < 0)
		return;
	if (!vm_state_is(w->vm, VM_RUNNING)) {
		w->stopped_rounds = 0; /* a paused VM answers nothing; start again after resume */
		return;
	}
	w->stopped_rounds = w->gen && round_says_halted(w->vm, w->gen) ? w->stopped_rounds + 1 : 0;
	if (w->stopped_rounds >= ROUNDS_TO_HALT) {
		log_info("every vCPU halted with interrupts disabled: the guest halted");
		vm_request_exit(w->vm, HYVE_EXIT_HALT);
		return;
	}
	if (++w->gen == 0)
		w->gen = 1;
	for (unsigned i = 0; i < w->vm->ncpus; i++)
		vcpu_ask_sample(&w->vm->vcpus[i], w->gen);
}

struct haltwatch *haltwatch_start(struct vm *vm)
{
	struct itimerspec every_second = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	struct haltwatch *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->vm = vm;
	w->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (w->timer_fd < 0 || timerfd_settime(w->timer_fd, 0, &every_second, NULL) < 0 ||
	    evloop_add(vm->loop, w->timer_fd, EPOLLIN, on_tick, w) < 0) {
		log_error("cannot start halt detection: %s", strerror(errno));
		haltwatch_stop(w);
		return NULL;
	}
	return w;
}

void haltwatch_stop(struct haltwatch *w)
{
	if (!w)
		return;
	if (w->timer_fd >= 0) {
		evloop_del(w->vm->loop, w->timer_fd);
		close(w->timer_fd);
	}
	free(w);
}
