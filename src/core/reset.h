/*
 * What a guest reset does (the `reboot` key). By default, as bhyve does,
 * hyve ends with status 0 and leaves the restart to whoever started it.
 * With reboot=restart the same process starts the machine again: every
 * device and every vCPU goes back to its power-on state and the boot runs
 * again (firmware from its reset vector, or the Linux kernel loaded anew).
 *
 * Threads: a reset is asked for on a vCPU thread (the reset register, the
 * keyboard controller, KVM's system event); that vCPU parks at once, the
 * others are kicked out of KVM_RUN and park too, and the event loop does
 * the reset while they are parked (vm_pause() runs a pending reset once
 * every vCPU is parked, vm_resume() before they run again).
 */
#ifndef HYVE_RESET_H
#define HYVE_RESET_H

#include <stdbool.h>

struct vm;
struct config;

/* Loads what the boot needs into guest memory again after the devices and vCPUs were reset; 0 or -1. */
typedef int (*reset_boot_fn)(struct vm *vm);

/* Whether cfg asks for reboot=restart (read before anything is confined: core/sandbox.c). */
bool reset_restarts(const struct config *cfg);

/*
 * With reboot=restart: records the power-on state of every vCPU and of the
 * in-kernel interrupt controllers and PIT, right after the VM was created
 * (before any boot set-up or snapshot restore changes them), and watches
 * for reset requests on vm->loop. Without it, does nothing. 0 or -1.
 */
int reset_prepare(struct vm *vm, reset_boot_fn boot_again);
void reset_free(struct vm *vm);

/* Tells the event loop that vm->reset_pending was set (vm_request_reset()). */
void reset_notify(struct vm *vm);

/*
 * On the event-loop thread with every vCPU parked and the devices holding
 * still: if a reset is pending, does it. A reset that fails ends the VM
 * with status 4.
 */
void reset_run_pending(struct vm *vm);

#endif
