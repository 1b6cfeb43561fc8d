/*
 * Test double for the KVM device-memory slots (core/devmem.h), for display
 * tests that run without KVM: records where the slot is mapped; the dirty
 * log reports nothing, or every page once when asked.
 */
#ifndef HYVE_TESTDEVMEM_H
#define HYVE_TESTDEVMEM_H

#include <stdbool.h>
#include <stdint.h>

extern struct testdevmem {
	uint64_t gpa;         /* where the slot was last mapped */
	int maps;             /* vm_map_device_memory() calls */
	bool mapped;
	bool all_dirty_next;  /* the next dirty log reports every page */
} testdevmem;

#endif
