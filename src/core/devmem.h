/*
 * Device memory: RAM-like guest memory that a device owns (a display's
 * framebuffer) given to KVM as its own memory slot at a guest physical
 * address the device chooses (a BAR), so guest accesses do not exit.
 * Slots come after the RAM slots (DEVMEM_SLOT_BASE up). Dirty logging
 * lets the device find what the guest wrote.
 *
 * Threads: any thread; each slot is used by one device, which serialises
 * its own calls.
 */
#ifndef HYVE_DEVMEM_H
#define HYVE_DEVMEM_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

#define DEVMEM_SLOT_BASE 16
#define DEVMEM_MAX_SLOTS 16

/* Reserves a slot number; -1 after logging when none is left. */
int vm_devmem_slot_alloc(struct vm *vm);
void vm_devmem_slot_free(struct vm *vm, int slot);

/*
 * Maps [gpa, gpa+size) to host memory hva (page aligned, size a multiple
 * of 4 KiB) in `slot`, replacing any earlier mapping of that slot. With
 * log_dirty, KVM records written pages (vm_devmem_dirty_log). 0, or -1
 * after logging.
 */
int vm_map_device_memory(struct vm *vm, int slot, uint64_t gpa, void *hva, uint64_t size, bool log_dirty);
/*
 * Whether this host's KVM can map read-only memory (KVM_CAP_READONLY_MEM);
 * logs when it cannot. Ask at set-up: the vCPU threads' sandbox does not
 * let them ask.
 */
bool vm_can_map_readonly(struct vm *vm);
/*
 * Like vm_map_device_memory(), read-only for the guest (KVM_MEM_READONLY):
 * reads are served from hva without an exit, writes exit as MMIO writes to
 * whatever is registered on the MMIO bus there (firmware ROM and flash).
 * 0, or -1 after logging.
 */
int vm_map_readonly_memory(struct vm *vm, int slot, uint64_t gpa, void *hva, uint64_t size);
/* Removes the slot's mapping (no-op when unmapped). */
void vm_unmap_device_memory(struct vm *vm, int slot);
/*
 * Takes [gpa, gpa+size) (page aligned, inside the RAM below 4 GiB) out of
 * the RAM slot as KVM sees it, so device memory can be mapped there (KVM
 * slots may not overlap): the legacy VGA window. The bytes stay in the
 * RAM mapping, so the RAM layout and snapshots are unchanged; the guest just
 * no longer reaches them. Before the vCPUs run; 0, or -1 after logging.
 */
int vm_ram_hole(struct vm *vm, uint64_t gpa, uint64_t size);
/*
 * Fetches and clears the slot's dirty page bitmap (one bit per 4 KiB page,
 * size/4096 bits rounded up to 64). 0, or -1 (errno set).
 */
int vm_devmem_dirty_log(struct vm *vm, int slot, uint64_t *bitmap);

/*
 * Live snapshots (src/snapshot/snapshot.c): KVM's dirty log on every RAM
 * slot (vCPU writes) and the device-write marks of mem_mark_dirty()
 * (core/memory.h), on or off together. 0, or -1 after logging.
 */
int vm_ram_track_dirty(struct vm *vm, bool on);
/*
 * ORs into bitmap (a bit per 4 KiB page of the one RAM mapping,
 * vm->mem.base up: mem_page_words() words) every page written since the
 * last call or since tracking began, and starts over. KVM reads and clears
 * its log in one step, and device marks are taken by exchange, so a write
 * racing with the call lands in this call's set or the next. 0, or -1
 * after logging.
 */
int vm_ram_take_dirty(struct vm *vm, uint64_t *bitmap);

#endif
