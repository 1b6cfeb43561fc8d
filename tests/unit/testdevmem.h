/*
 * Test double for the KVM device-memory slots (core/devmem.h), for display
 * tests that run without KVM: records where each slot is mapped (the first
 * one, the framebuffer, also in gpa/maps/mapped); the dirty log reports
 * nothing, or once when asked: every page of the framebuffer, the first
 * page of another slot. vm_ram_hole() records the hole. Read-only slots
 * (vm_map_readonly_memory) are recorded with readonly set.
 */
#ifndef HYVE_TESTDEVMEM_H
#define HYVE_TESTDEVMEM_H

#include <stdbool.h>
#include <stdint.h>

#define TESTDEVMEM_SLOTS 4

struct testdevmem_slot {
	bool used, mapped, log_dirty, readonly;
	uint64_t gpa, size;
	void *hva;
	bool dirty_next;      /* the next dirty log reports the first page */
	unsigned dirty_fetches;
};

extern struct testdevmem {
	uint64_t gpa;         /* where the first slot was last mapped */
	int maps;             /* vm_map_device_memory() calls for the first slot */
	bool mapped;
	bool all_dirty_next;  /* the next dirty log of the first slot reports every page */
	uint64_t hole_gpa, hole_size;
	struct testdevmem_slot slot[TESTDEVMEM_SLOTS];
} testdevmem;

#endif
