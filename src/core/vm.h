/*
 * The one VM object: KVM handles, memory, I/O buses, devices, vCPUs and
 * run state. Everything mutable that is shared between threads lives here
 * and is guarded by `lock` unless a field says otherwise.
 *
 * Threads: the main thread builds the VM, then runs the event loop (host
 * fds: serial input, control socket, VNC); one thread per vCPU runs
 * KVM_RUN and handles exits synchronously.
 */
#ifndef HYVE_VM_H
#define HYVE_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "iobus.h"
#include "memory.h"

struct config;
struct device;
struct vcpu;
struct evloop;
struct irq_routing;
struct haltwatch;
struct fw_cfg;
struct platform;
struct vm_reset;
struct linux_boot;
struct display_registry;
struct input_router;
struct media_drive;

#define VM_MAX_VCPUS 64

enum vm_run_state { VM_RUNNING, VM_PAUSED, VM_EXITING };

struct vm {
	const char *name;
	struct config *cfg;
	int kvm_fd, vm_fd;
	int vcpu_mmap_size;

	const struct platform *platform; /* memory map and chipset (core/platform.h), fixed for the VM's life */
	struct guest_memory mem;
	struct iobus pio, mmio;
	struct device *devices;
	struct evloop *loop;

	unsigned ncpus;
	struct vcpu *vcpus;
	struct kvm_cpuid2 *cpuid; /* what KVM supports; vCPUs derive theirs */
	struct irq_routing *irq_routing; /* GSI routes and MSI GSIs (core/irq.h) */
	struct haltwatch *haltwatch;     /* exit status 2 once the guest halted (core/haltwatch.h) */
	struct fw_cfg *fw_cfg;           /* firmware configuration (dev/fw_cfg.h); NULL without a bootrom */
	struct vm_reset *reset;          /* reboot=restart (core/reset.h); NULL: a guest reset ends hyve (status 0) */
	struct linux_boot *linux_boot;   /* direct boot's kernel and initrd kept open to load again (boot/linux.h) */
	struct display_registry *display; /* the display device's provider (core/display.h) */
	struct input_router *input;      /* keyboard and pointer sinks (core/input.h) */
	struct media_drive *media_drives; /* removable media drives by name, main thread only (core/media.h) */
	atomic_uint devmem_slots;        /* KVM slots in use for device memory, a bit each (core/devmem.h) */
	/* The KVM slots that hold RAM (a region each; two for region 0 around a hole, vm_ram_hole()). */
	struct vm_ram_slot {
		uint32_t slot;
		uint64_t gpa, size;
		uint8_t *hva;
	} ram_slots[MEM_MAX_REGIONS + 1];
	unsigned nram_slots;

	pthread_mutex_t lock;
	pthread_cond_t cond;         /* signalled on run-state and pause changes */
	enum vm_run_state state;     /* requested state */
	unsigned vcpus_paused;       /* vCPUs parked while state != RUNNING */
	int exit_status;             /* enum hyve_exit, valid once EXITING */
	unsigned start_holds;        /* vm_hold_start() calls not yet released */
	bool start_requested;        /* vm_start() ran; the vCPUs run once no hold is left */
	bool vcpus_started;          /* the start gate is open: the vCPUs may run guest code */
	bool reset_pending;          /* a guest reset waits for the event loop (core/reset.h); vCPUs park meanwhile */
};

/* Creates the KVM VM, memory and irqchip from cfg; NULL after logging. */
struct vm *vm_create(struct config *cfg);
void vm_destroy(struct vm *vm);

/* Asserts (level 1) or deasserts an interrupt line (GSI) on the in-kernel irqchip. */
void vm_set_irq(struct vm *vm, unsigned gsi, int level);

/*
 * Starts halt detection and the vCPU threads; the vCPUs run guest code only
 * once every vm_hold_start() has been released (vm_wait_for_start()). 0 or -1.
 */
int vm_start(struct vm *vm);
/* On a vCPU thread before its first KVM_RUN: false when the VM exits first. */
bool vm_wait_for_start(struct vm *vm);
/*
 * Holds the vCPUs back (e.g. the display's `wait`: until a VNC client is
 * ready). Signals, the control socket and the devices' hosts keep working
 * meanwhile. The last release after vm_start() lets the vCPUs run.
 */
void vm_hold_start(struct vm *vm);
void vm_release_start(struct vm *vm);
/* Blocks until some thread asks the VM to end; returns the exit status. */
int vm_wait(struct vm *vm);
/* Ends the VM with status (first caller wins); callable from any thread. */
void vm_request_exit(struct vm *vm, int status);
/*
 * The guest reset the machine; callable from any thread. Without
 * reboot=restart the VM ends with status 0; with it, the vCPUs park and
 * the event loop restarts the machine (core/reset.h).
 */
void vm_request_reset(struct vm *vm);
/*
 * Stops every vCPU outside KVM_RUN and waits until they are parked, then
 * tells the devices and the input router to hold still (device.h). Both
 * only on the event-loop thread (or before it runs).
 */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/* Whether a vCPU must stay parked now; call with vm->lock held. */
static inline bool vm_vcpus_must_park_locked(const struct vm *vm)
{
	return vm->state == VM_PAUSED || (vm->state == VM_RUNNING && vm->reset_pending);
}

/* Whether the VM is in `state` now (inline: callers that stand in for vm.c in tests use it too). */
static inline bool vm_state_is(struct vm *vm, enum vm_run_state state)
{
	bool is;

	pthread_mutex_lock(&vm->lock);
	is = vm->state == state;
	pthread_mutex_unlock(&vm->lock);
	return is;
}

#endif
