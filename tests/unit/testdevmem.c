#include "testdevmem.h"

#include <string.h>

#include "core/devmem.h"

struct testdevmem testdevmem;

/* Slot DEVMEM_SLOT_BASE + i is testdevmem.slot[i]; the first is also gpa/maps/mapped (the framebuffer). */
int vm_devmem_slot_alloc(struct vm *vm)
{
	(void)vm;
	for (int i = 0; i < TESTDEVMEM_SLOTS; i++) {
		if (!testdevmem.slot[i].used) {
			testdevmem.slot[i] = (struct testdevmem_slot){ .used = true };
			return DEVMEM_SLOT_BASE + i;
		}
	}
	return -1;
}

void vm_devmem_slot_free(struct vm *vm, int slot)
{
	vm_unmap_device_memory(vm, slot);
	if (slot >= DEVMEM_SLOT_BASE && slot < DEVMEM_SLOT_BASE + TESTDEVMEM_SLOTS)
		testdevmem.slot[slot - DEVMEM_SLOT_BASE].used = false;
}

int vm_map_device_memory(struct vm *vm, int slot, uint64_t gpa, void *hva, uint64_t size, bool log_dirty)
{
	struct testdevmem_slot *s = &testdevmem.slot[slot - DEVMEM_SLOT_BASE];

	(void)vm;
	s->gpa = gpa, s->hva = hva, s->size = size, s->log_dirty = log_dirty, s->mapped = true;
	s->readonly = false;
	if (slot == DEVMEM_SLOT_BASE) {
		testdevmem.gpa = gpa;
		testdevmem.mapped = true;
		testdevmem.maps++;
	}
	return 0;
}

bool vm_can_map_readonly(struct vm *vm)
{
	(void)vm;
	return true;
}

int vm_map_readonly_memory(struct vm *vm, int slot, uint64_t gpa, void *hva, uint64_t size)
{
	if (vm_map_device_memory(vm, slot, gpa, hva, size, false) < 0)
		return -1;
	testdevmem.slot[slot - DEVMEM_SLOT_BASE].readonly = true;
	return 0;
}

void vm_unmap_device_memory(struct vm *vm, int slot)
{
	(void)vm;
	if (slot >= DEVMEM_SLOT_BASE && slot < DEVMEM_SLOT_BASE + TESTDEVMEM_SLOTS)
		testdevmem.slot[slot - DEVMEM_SLOT_BASE].mapped = false;
	if (slot == DEVMEM_SLOT_BASE)
		testdevmem.mapped = false;
}

int vm_devmem_dirty_log(struct vm *vm, int slot, uint64_t *bitmap)
{
	struct testdevmem_slot *s = &testdevmem.slot[slot - DEVMEM_SLOT_BASE];

	(void)vm;
	/* The flags are set by the test's thread while the VNC thread fetches. */
	if (slot == DEVMEM_SLOT_BASE && __atomic_exchange_n(&testdevmem.all_dirty_next, false, __ATOMIC_ACQ_REL))
		memset(bitmap, 0xff, (s->size / 4096 + 63) / 64 * 8);
	if (slot != DEVMEM_SLOT_BASE && __atomic_exchange_n(&s->dirty_next, false, __ATOMIC_ACQ_REL))
		bitmap[0] |= 1;
	s->dirty_fetches++;
	return 0;
}

int vm_ram_hole(struct vm *vm, uint64_t gpa, uint64_t size)
{
	(void)vm;
	testdevmem.hole_gpa = gpa;
	testdevmem.hole_size = size;
	return 0;
}
