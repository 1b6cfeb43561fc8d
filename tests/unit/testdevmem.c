#include "testdevmem.h"

#include <string.h>

#include "core/devmem.h"

struct testdevmem testdevmem;

int vm_devmem_slot_alloc(struct vm *vm)
{
	(void)vm;
	return DEVMEM_SLOT_BASE;
}

void vm_devmem_slot_free(struct vm *vm, int slot)
{
	vm_unmap_device_memory(vm, slot);
}

int vm_map_device_memory(struct vm *vm, int slot, uint64_t gpa, void *hva, uint64_t size, bool log_dirty)
{
	(void)vm, (void)slot, (void)hva, (void)size, (void)log_dirty;
	testdevmem.gpa = gpa;
	testdevmem.mapped = true;
	testdevmem.maps++;
	return 0;
}

void vm_unmap_device_memory(struct vm *vm, int slot)
{
	(void)vm, (void)slot;
	testdevmem.mapped = false;
}

int vm_devmem_dirty_log(struct vm *vm, int slot, uint64_t *bitmap)
{
	(void)vm, (void)slot;
	if (testdevmem.all_dirty_next)
		memset(bitmap, 0xff, ((32u << 20) / 4096 / 64) * 8);
	testdevmem.all_dirty_next = false;
	return 0;
}
