/*
 * The BIOS memory map handed to the guest kernel (boot_params.e820_table):
 * what is RAM, what the guest must leave alone.
 */
#ifndef HYVE_E820_H
#define HYVE_E820_H

#include <stdint.h>

#include "core/memory.h"

struct platform;

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3

#define E820_MAX 16

struct e820_entry {
	uint64_t addr, size;
	uint32_t type;
};

struct e820_map {
	struct e820_entry entries[E820_MAX];
	unsigned count;
};

/* Entries come out sorted by address and never overlap; ECAM is where platform p puts it. */
void e820_build(const struct guest_memory *mem, const struct platform *p, struct e820_map *map);

#endif
