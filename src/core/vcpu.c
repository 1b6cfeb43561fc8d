#include "vcpu.h"

#include <asm/kvm.h>
#include <asm/processor-flags.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"
#include "vm.h"

#define SIG_VCPU_KICK SIGUSR1

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI 0x4

static void set_lvt_mode(struct kvm_lapic_state *lapic, unsigned reg, unsigned mode)
{
	uint32_t v;

	memcpy(&v, &lapic->regs[reg], 4);
	v = (v & ~0x700u) | (mode << 8);
	memcpy(&lapic->regs[reg], &v, 4);
}

/* Virtual-wire mode: PIC interrupts reach the BSP before the guest programs the IOAPIC. */
static int setup_lapic(struct vcpu *vcpu)
{
	struct kvm_lapic_state lapic;

	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -1;
	set_lvt_mode(&lapic, APIC_LVT_LINT0, APIC_MODE_EXTINT);
	set_lvt_mode(&lapic, APIC_LVT_LINT1, APIC_MODE_NMI);
	return ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic);
}

static int setup_fpu(struct vcpu *vcpu)
{
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };

	return ioctl(vcpu->fd, KVM_SET_FPU, &fpu);
}

int vcpu_init(struct vcpu *vcpu, struct vm *vm, unsigned id)
{
	struct kvm_cpuid2 *cpuid;
	int rc;

	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (vcpu->fd < 0) {
		log_error("cannot create vCPU %u: %s", id, strerror(errno));
		return -1;
	}
	vcpu->run = mmap(NULL, vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		vcpu->run = NULL;
		log_error("cannot map vCPU %u state: %s", id, strerror(errno));
		return -1;
	}
	cpuid = cpuid_for_vcpu(vm->cpuid, id, vm->ncpus);
	if (!cpuid)
		return -1;
	rc = ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid);
	free(cpuid);
	if (rc < 0 || setup_lapic(vcpu) < 0 || setup_fpu(vcpu) < 0) {
		log_error("cannot set up vCPU %u: %s", id, strerror(errno));
		return -1;
	}
	return 0;
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, vcpu->vm->vcpu_mmap_size);
	if (vcpu->fd > 0)
		close(vcpu->fd);
}

static void handle_pio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

	/* KVM bounds data_offset/count to the run page. */
	iobus_access_string(&vcpu->vm->pio, run->io.port, data, run->io.size, run->io.count, is_write);
}

static void handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	if (run->mmio.len > sizeof(run->mmio.data))
		return;
	iobus_access(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len, run->mmio.is_write);
}

/* Returns false when the vCPU must stop: the VM was asked to end. */
static bool handle_exit(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct vm *vm = vcpu->vm;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_pio(vcpu);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(vcpu);
		return true;
	case KVM_EXIT_HLT:
		vm_request_exit(vm, HYVE_EXIT_HALT);
		return false;
	case KVM_EXIT_SHUTDOWN:
		log_info("vCPU %u: triple fault", vcpu->id);
		vm_request_exit(vm, HYVE_EXIT_TRIPLEFAULT);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
			vm_request_reset(vm);
			return true; /* parks until the reset is done (or the VM ends) */
		}
		vm_request_exit(vm, HYVE_EXIT_POWEROFF);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		log_error("vCPU %u: entry failed, hardware reason 0x%llx", vcpu->id,
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		log_error("vCPU %u: KVM internal error, suberror %u", vcpu->id, run->internal.suberror);
		break;
	default:
		log_error("vCPU %u: unexpected exit reason %u", vcpu->id, run->exit_reason);
		break;
	}
	vm_request_exit(vm, HYVE_EXIT_ERROR);
	return false;
}

static bool is_io_exit(const struct kvm_run *run)
{
	return run->exit_reason == KVM_EXIT_IO || run->exit_reason == KVM_EXIT_MMIO;
}

/*
 * KVM_RUN with immediate_exit completes an I/O exit in progress without
 * entering the guest. A string or page-crossing access may exit to us again
 * before its instruction is whole, so this repeats until KVM has nothing left.
 */
static void complete_pending_io(struct vcpu *vcpu)
{
	vcpu->run->immediate_exit = 1;
	while (ioctl(vcpu->fd, KVM_RUN, 0) == 0 && is_io_exit(vcpu->run))
		handle_exit(vcpu);
}

/*
 * Parks the vCPU while the VM is paused or a guest reset is pending, with
 * its I/O completed so the saved register state is whole (and a reset's
 * registers are not overwritten by an access KVM completes later).
 * Returns false when the VM is exiting.
 */
static bool wait_while_paused(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	bool running;

	pthread_mutex_lock(&vm->lock);
	if (vm_vcpus_must_park_locked(vm)) {
		pthread_mutex_unlock(&vm->lock);
		complete_pending_io(vcpu);
		pthread_mutex_lock(&vm->lock);
		vm->vcpus_paused++;
		pthread_cond_broadcast(&vm->cond);
		while (vm_vcpus_must_park_locked(vm))
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->vcpus_paused--;
	}
	running = vm->state == VM_RUNNING;
	__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&vm->lock);
	return running;
}

/*
 * A vCPU is stopped for good when it waits in HLT with interrupts disabled
 * (only an NMI or INIT could wake it: Linux's halt ends so) or still waits
 * for its start-up IPI. Runs on the vCPU's own thread, outside KVM_RUN.
 */
static void take_sample(struct vcpu *vcpu, unsigned gen)
{
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	bool stopped = false, halted = false;

	if (ioctl(vcpu->fd, KVM_GET_MP_STATE, &mp) == 0) {
		if (mp.mp_state == KVM_MP_STATE_HALTED && ioctl(vcpu->fd, KVM_GET_REGS, &regs) == 0)
			stopped = halted = !(regs.rflags & X86_EFLAGS_IF);
		else
			stopped = mp.mp_state == KVM_MP_STATE_UNINITIALIZED ||
				  mp.mp_state == KVM_MP_STATE_INIT_RECEIVED;
	}
	atomic_store(&vcpu->sample_stopped, stopped);
	atomic_store(&vcpu->sample_halted, halted);
	atomic_store(&vcpu->sample_gen, gen);
}

/*
 * Takes an asked-for sample; true if it did (the vCPU then re-checks its run
 * state). An I/O exit still in progress is completed first, as for a pause,
 * so the sample never sees an instruction half done.
 */
static bool serve_sample(struct vcpu *vcpu, bool *io_pending)
{
	unsigned gen;

	if (!atomic_load(&vcpu->sample_asked))
		return false;
	if (*io_pending)
		complete_pending_io(vcpu);
	*io_pending = false;
	gen = atomic_exchange(&vcpu->sample_asked, 0);
	if (gen)
		take_sample(vcpu, gen);
	return gen != 0;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	bool io_pending = false; /* the last exit was I/O that the next KVM_RUN completes */
	sigset_t unblock;
	char name[16];

	sigemptyset(&unblock);
	sigaddset(&unblock, SIG_VCPU_KICK);
	pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
	snprintf(name, sizeof(name), "vcpu%u", vcpu->id);
	pthread_setname_np(pthread_self(), name); /* for ps and the kernel's seccomp log */
	/* Before the guest runs a single instruction on this vCPU. */
	if (sandbox_enter(SANDBOX_VCPU) < 0) {
		vm_request_exit(vcpu->vm, HYVE_EXIT_ERROR);
		return NULL;
	}
	if (!vm_wait_for_start(vcpu->vm))
		return NULL;

	while (wait_while_paused(vcpu)) {
		/* After immediate_exit was cleared: a sample asked before that is seen here. */
		if (serve_sample(vcpu, &io_pending))
			continue;
		io_pending = false; /* any return from KVM_RUN has completed the last I/O exit */
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			log_error("vCPU %u: KVM_RUN: %s", vcpu->id, strerror(errno));
			vm_request_exit(vcpu->vm, HYVE_EXIT_ERROR);
			break;
		}
		io_pending = is_io_exit(vcpu->run);
		if (!handle_exit(vcpu))
			break;
	}
	return NULL;
}

/* The kick only needs to interrupt KVM_RUN with EINTR; the handler does nothing. */
static void kick_handler(int sig)
{
	(void)sig;
}

/*
 * SA_RESTART: a kick that lands while the vCPU thread is in a device
 * handler (writing serial output, say) restarts that system call instead
 * of failing it; KVM_RUN itself returns EINTR and is never restarted.
 */
static void install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = kick_handler, .sa_flags = SA_RESTART };

	sigemptyset(&sa.sa_mask);
	sigaction(SIG_VCPU_KICK, &sa, NULL);
}

int vcpu_start_thread(struct vcpu *vcpu)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	int rc;

	pthread_once(&once, install_kick_handler);
	rc = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
	if (rc) {
		log_error("cannot start vCPU %u thread: %s", vcpu->id, strerror(rc));
		return -1;
	}
	vcpu->thread_started = true;
	return 0;
}

void vcpu_kick(struct vcpu *vcpu)
{
	if (!vcpu->thread_started)
		return;
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(vcpu->thread, SIG_VCPU_KICK);
}

void vcpu_ask_sample(struct vcpu *vcpu, unsigned gen)
{
	atomic_store(&vcpu->sample_asked, gen);
	vcpu_kick(vcpu);
}
