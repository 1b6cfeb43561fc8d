#include "devmem.h"

#include <errno.h>
#include <stdlib.h>
#include <linux/kvm.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"
#include "vm.h"

int vm_devmem_slot_alloc(struct vm *vm)
{
	unsigned used = atomic_load(&vm->devmem_slots);

	for (;;) {
		int i = 0;

		while (i < DEVMEM_MAX_SLOTS && (used & (1u << i)))
			i++;
		if (i == DEVMEM_MAX_SLOTS)
			break;
		if (atomic_compare_exchange_weak(&vm->devmem_slots, &used, used | (1u << i)))
			return DEVMEM_SLOT_BASE + i;
	}
	log_error("no KVM memory slot left for device memory");
	return -1;
}

void vm_devmem_slot_free(struct vm *vm, int slot)
{
	if (slot < DEVMEM_SLOT_BASE || slot >= DEVMEM_SLOT_BASE + DEVMEM_MAX_SLOTS)
		return;
	vm_unmap_device_memory(vm, slot);
	atomic_fetch_and(&vm->devmem_slots, ~(1u << (slot - DEVMEM_SLOT_BASE)));
}

static int set_slot(struct vm *vm, int slot, uint64_t gpa, void *hva, uint64_t size, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = (uint32_t)slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};

	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
}

int vm_map_device_memory(struct vm *vm, int slot, uint64_t gpa, void *hva, uint64_t size, bool log_dirty)
{
	/* KVM cannot move a slot: delete it, then create it at the new place. */
	set_slot(vm, slot, 0, NULL, 0, 0);
	if (set_slot(vm, slot, gpa, hva, size, log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0) < 0) {
		log_error("cannot map %llu bytes of device memory at 0x%llx: %s", (unsigned long long)size,
			  (unsigned long long)gpa, strerror(errno));
		return -1;
	}
	return 0;
}

bool vm_can_map_readonly(struct vm *vm)
{
	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) > 0)
		return true;
	log_error("this host's KVM cannot map read-only memory (KVM_CAP_READONLY_MEM), which firmware needs");
	return false;
}

int vm_map_readonly_memory(struct vm *vm, int slot, uint64_t gpa, void *hva, uint64_t size)
{
	set_slot(vm, slot, 0, NULL, 0, 0);
	if (set_slot(vm, slot, gpa, hva, size, KVM_MEM_READONLY) < 0) {
		log_error("cannot map %llu bytes of read-only memory at 0x%llx: %s", (unsigned long long)size,
			  (unsigned long long)gpa, strerror(errno));
		return -1;
	}
	return 0;
}

void vm_unmap_device_memory(struct vm *vm, int slot)
{
	set_slot(vm, slot, 0, NULL, 0, 0);
}

int vm_devmem_dirty_log(struct vm *vm, int slot, uint64_t *bitmap)
{
	struct kvm_dirty_log log = { .slot = (uint32_t)slot, .dirty_bitmap = bitmap };

	return ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log);
}

/* The RAM above a hole gets this slot: after the RAM slots, before the device slots. */
#define RAM_TAIL_SLOT MEM_MAX_REGIONS

int vm_ram_hole(struct vm *vm, uint64_t gpa, uint64_t size)
{
	const struct mem_region *r = &vm->mem.regions[0];
	uint64_t end = gpa + size;

	if (((gpa | size) & 4095) || !size || gpa <= r->gpa || end >= r->gpa + r->size) {
		log_error("cannot take 0x%llx+0x%llx out of guest RAM", (unsigned long long)gpa, (unsigned long long)size);
		return -1;
	}
	set_slot(vm, 0, 0, NULL, 0, 0);
	if (set_slot(vm, 0, r->gpa, r->hva, gpa - r->gpa, 0) < 0 ||
	    set_slot(vm, RAM_TAIL_SLOT, end, r->hva + (end - r->gpa), r->gpa + r->size - end, 0) < 0) {
		log_error("cannot leave 0x%llx+0x%llx out of guest RAM: %s", (unsigned long long)gpa,
			  (unsigned long long)size, strerror(errno));
		return -1;
	}
	vm->ram_slots[0].size = gpa - r->gpa;
	vm->ram_slots[vm->nram_slots++] = (struct vm_ram_slot){ .slot = RAM_TAIL_SLOT, .gpa = end,
								 .size = r->gpa + r->size - end,
								 .hva = r->hva + (end - r->gpa) };
	return 0;
}

int vm_ram_track_dirty(struct vm *vm, bool on)
{
	int rc = 0;

	/* Device writes first on, last off: no write falls between the two logs. */
	if (on && mem_track_dirty(&vm->mem, true) < 0) {
		log_error("out of memory for the dirty page bitmap");
		return -1;
	}
	for (unsigned i = 0; i < vm->nram_slots; i++) {
		const struct vm_ram_slot *s = &vm->ram_slots[i];
		if (set_slot(vm, (int)s->slot, s->gpa, s->hva, s->size, on ? KVM_MEM_LOG_DIRTY_PAGES : 0) < 0) {
			log_error("cannot %s dirty logging of guest RAM at 0x%llx: %s", on ? "start" : "stop",
				  (unsigned long long)s->gpa, strerror(errno));
			rc = -1;
		}
	}
	if (!on || rc < 0)
		mem_track_dirty(&vm->mem, false);
	return rc;
}

int vm_ram_take_dirty(struct vm *vm, uint64_t *bitmap)
{
	uint64_t *log = NULL;
	size_t cap = 0;

	mem_take_dirty(&vm->mem, bitmap);
	for (unsigned i = 0; i < vm->nram_slots; i++) {
		const struct vm_ram_slot *s = &vm->ram_slots[i];
		uint64_t pages = s->size / 4096, words = (pages + 63) / 64, first = (uint64_t)(s->hva - vm->mem.base) / 4096;
		struct kvm_dirty_log dl = { .slot = s->slot };
		if (words * sizeof(*log) > cap) {
			free(log);
			cap = words * sizeof(*log);
			log = malloc(cap);
			if (!log) {
				log_error("out of memory for the dirty log");
				return -1;
			}
		}
		memset(log, 0, words * sizeof(*log));
		dl.dirty_bitmap = log;
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &dl) < 0) {
			log_error("cannot read the dirty log of guest RAM at 0x%llx: %s", (unsigned long long)s->gpa,
				  strerror(errno));
			free(log);
			return -1;
		}
		for (uint64_t w = 0; w < words; w++) {
			for (uint64_t bits = log[w]; bits; bits &= bits - 1) {
				uint64_t page = first + w * 64 + (uint64_t)__builtin_ctzll(bits);
				bitmap[page / 64] |= 1ULL << (page % 64);
			}
		}
	}
	free(log);
	return 0;
}
