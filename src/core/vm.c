#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "config.h"
#include "device.h"
#include "display.h"
#include "boot/layout.h"
#include "evloop.h"
#include "haltwatch.h"
#include "input.h"
#include "irq.h"
#include "log.h"
#include "options.h"
#include "platform.h"
#include "reset.h"
#include "boot/linux.h"
#include "vcpu.h"

/*
 * Pages KVM keeps for itself (real-mode emulation on Intel): below the
 * 16 MiB under 4 GiB where firmware flash lives (dev/bootrom.h), which KVM
 * would otherwise refuse to map over them.
 */
#define KVM_TSS_ADDR 0xfeffd000UL
#define KVM_IDENTITY_MAP_ADDR 0xfeffc000ULL
#define MIN_MEMORY (32ULL << 20)
#define MAX_MEMORY (1ULL << 40)

/* Guest memory is mapped to KVM in pages. */
static int whole_pages(const char *value, char *err, size_t errlen)
{
	uint64_t bytes;

	if (parse_size(value, 1, &bytes) == 0 && bytes % 4096)
		return set_error(err, errlen, "guest memory must be a multiple of 4 KiB");
	return 0;
}

static const struct option_decl vm_options[] = {
	{ .name = "cpus", .type = OPTION_UINT, .def = "1", .min = 1, .max = VM_MAX_VCPUS,
	  .help = "number of vCPUs" },
	{ .name = "memory.size", .type = OPTION_SIZE, .def = "256M", .min = MIN_MEMORY, .max = MAX_MEMORY,
	  .validate = whole_pages, .help = "guest memory" },
	{ .name = "name", .type = OPTION_STRING, .def = "hyve", .help = "the VM's name (control socket, VNC title)" },
	{ 0 },
};
OPTIONS(vm_options)

static int read_vm_shape(struct vm *vm)
{
	uint64_t ncpus, mem;

	if (opt_u64(vm->cfg, "cpus", &ncpus) < 0 || opt_u64(vm->cfg, "memory.size", &mem) < 0)
		return -1; /* logged */
	vm->ncpus = (unsigned)ncpus;
	vm->platform = platform_select(vm->cfg);
	if (!vm->platform)
		return -1;
	mem_layout(&vm->mem, mem, vm->platform->lowmem_limit);
	return 0;
}

static int open_kvm(struct vm *vm)
{
	int max_vcpus;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		log_error("cannot open /dev/kvm: %s", strerror(errno));
		return -1;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		log_error("/dev/kvm: unsupported KVM API version");
		return -1;
	}
	max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_vcpus > 0 && vm->ncpus > (unsigned)max_vcpus) {
		log_error("cpus=%u: this host's KVM allows at most %d vCPUs", vm->ncpus, max_vcpus);
		return -1;
	}
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vcpu_mmap_size <= 0 || vm->vm_fd < 0) {
		log_error("cannot create a KVM virtual machine: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int setup_platform(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = 0 };

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ KVM_IDENTITY_MAP_ADDR }) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 || vm_irq_routing_init(vm) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		log_error("cannot create the in-kernel interrupt controllers and PIT: %s", strerror(errno));
		return -1;
	}
	vm->cpuid = cpuid_get_supported(vm->kvm_fd);
	return vm->cpuid ? 0 : -1;
}

static int setup_memory(struct vm *vm)
{
	if (mem_alloc(&vm->mem, vm->name) < 0)
		return -1;
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		struct mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region slot = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uintptr_t)r->hva,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
			log_error("cannot give guest memory to KVM: %s", strerror(errno));
			return -1;
		}
		vm->ram_slots[vm->nram_slots++] = (struct vm_ram_slot){ .slot = i, .gpa = r->gpa, .size = r->size,
									 .hva = r->hva };
	}
	return 0;
}

static int create_vcpus(struct vm *vm)
{
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -1;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vcpu_init(&vm->vcpus[i], vm, i) < 0)
			return -1;
	return 0;
}

struct vm *vm_create(struct config *cfg)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return NULL;
	vm->cfg = cfg;
	vm->kvm_fd = vm->vm_fd = -1;
	vm->name = opt_str(cfg, "name");
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	iobus_init(&vm->pio);
	iobus_init(&vm->mmio);
	vm->loop = evloop_new();
	if (!vm->loop || display_init(vm) < 0 || input_init(vm) < 0 || read_vm_shape(vm) < 0 || open_kvm(vm) < 0 ||
	    setup_platform(vm) < 0 || setup_memory(vm) < 0 || create_vcpus(vm) < 0) {
		vm_destroy(vm);
		return NULL;
	}
	return vm;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	haltwatch_stop(vm->haltwatch);
	reset_free(vm);
	linux_boot_free(vm);
	devices_destroy_all(vm);
	for (unsigned i = 0; vm->vcpus && i < vm->ncpus; i++)
		if (vm->vcpus[i].vm)
			vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	free(vm->cpuid);
	vm_irq_routing_free(vm);
	mem_free(&vm->mem);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	evloop_free(vm->loop);
	input_fini(vm);
	display_fini(vm);
	iobus_destroy(&vm->pio);
	iobus_destroy(&vm->mmio);
	free(vm);
}

void vm_set_irq(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		log_warn("cannot set interrupt line %u: %s", gsi, strerror(errno));
}

/*
 * The vCPU threads are created by vm_start(), before the main thread
 * confines itself (a thread inherits its creator's filter), and each waits
 * here until no start hold is left. A held vCPU has run no instruction: it
 * counts as paused, so a pause or snapshot meanwhile does not wait for it.
 * False when the VM exits before it starts.
 */
bool vm_wait_for_start(struct vm *vm)
{
	bool run;

	pthread_mutex_lock(&vm->lock);
	vm->vcpus_paused++;
	pthread_cond_broadcast(&vm->cond);
	while (vm->start_holds && vm->state != VM_EXITING)
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->vcpus_paused--;
	run = vm->state != VM_EXITING;
	pthread_mutex_unlock(&vm->lock);
	return run;
}

/* Records that the vCPUs may run (status "running" from now on); call with vm->lock held. */
static void open_start_gate_locked(struct vm *vm)
{
	if (vm->start_requested && !vm->start_holds) {
		__atomic_store_n(&vm->vcpus_started, true, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&vm->cond);
	}
}

int vm_start(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->start_requested = true;
	open_start_gate_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vcpu_start_thread(&vm->vcpus[i]) < 0)
			return -1;
	vm->haltwatch = haltwatch_start(vm);
	return vm->haltwatch ? 0 : -1;
}

void vm_hold_start(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->start_holds++;
	pthread_mutex_unlock(&vm->lock);
}

void vm_release_start(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->start_holds)
		vm->start_holds--;
	open_start_gate_locked(vm);
	pthread_mutex_unlock(&vm->lock);
}

static void kick_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

void vm_request_exit(struct vm *vm, int status)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_EXITING) {
		vm->state = VM_EXITING;
		vm->exit_status = status;
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
	evloop_stop(vm->loop);
}

void vm_request_reset(struct vm *vm)
{
	bool notify;

	if (!vm->reset) {
		vm_request_exit(vm, HYVE_EXIT_REBOOT);
		return;
	}
	pthread_mutex_lock(&vm->lock);
	notify = vm->state != VM_EXITING && !vm->reset_pending;
	if (vm->state != VM_EXITING)
		vm->reset_pending = true;
	pthread_mutex_unlock(&vm->lock);
	/* The guest asked for a reset: no vCPU runs another instruction before it. */
	kick_all(vm);
	if (notify)
		reset_notify(vm);
}

static unsigned started_vcpus(struct vm *vm)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->ncpus; i++)
		n += vm->vcpus[i].thread_started;
	return n;
}

void vm_pause(struct vm *vm)
{
	bool paused_now;

	pthread_mutex_lock(&vm->lock);
	paused_now = vm->state == VM_RUNNING;
	if (paused_now)
		vm->state = VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
	pthread_mutex_lock(&vm->lock);
	while (vm->state == VM_PAUSED && vm->vcpus_paused < started_vcpus(vm))
		pthread_cond_wait(&vm->cond, &vm->lock);
	paused_now = paused_now && vm->state == VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	if (paused_now) {
		/* Whatever acts besides the vCPUs holds still too (device.h, input.h). */
		devices_set_running(vm, false);
		input_set_running(vm, false);
	}
	/* A snapshot taken now sees the machine after a reset the guest asked for, not halfway. */
	if (vm_state_is(vm, VM_PAUSED))
		reset_run_pending(vm);
}

void vm_resume(struct vm *vm)
{
	bool paused;

	pthread_mutex_lock(&vm->lock);
	paused = vm->state == VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	if (paused) {
		reset_run_pending(vm);
		devices_set_running(vm, true);
		input_set_running(vm, true);
	}
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_PAUSED)
		vm->state = VM_RUNNING;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

int vm_wait(struct vm *vm)
{
	if (evloop_run(vm->loop) < 0)
		vm_request_exit(vm, HYVE_EXIT_ERROR);
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].thread_started)
			pthread_join(vm->vcpus[i].thread, NULL);
	return vm->exit_status;
}
