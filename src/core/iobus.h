/*
 * Dispatch of guest port I/O and MMIO exits to device handlers. Ranges may
 * be added and removed while vCPUs run (PCI BAR moves), so lookups take a
 * read lock; handlers run on the vCPU thread and do their own locking.
 */
#ifndef HYVE_IOBUS_H
#define HYVE_IOBUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum io_space { IO_SPACE_PIO, IO_SPACE_MMIO };

/*
 * offset is relative to the registered base; data holds `size` bytes
 * (1, 2, 4 or 8) in guest byte order. Reads fill data.
 */
typedef void (*io_handler_fn)(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write);

struct io_range {
	uint64_t base, len;
	io_handler_fn fn;
	void *opaque;
};

struct iobus {
	pthread_rwlock_t lock;
	struct io_range *ranges; /* sorted by base, non-overlapping */
	unsigned count, cap;
};

void iobus_init(struct iobus *bus);
void iobus_destroy(struct iobus *bus);
/* 0, or -1 after logging when the range overlaps another. */
int iobus_register(struct iobus *bus, uint64_t base, uint64_t len, io_handler_fn fn, void *opaque);
/* Removes the range registered at exactly `base`; 0 or -1 when absent. */
int iobus_unregister(struct iobus *bus, uint64_t base);

/* One of the fixed port (or address) ranges a device claims, all with the same opaque. */
struct iobus_claim {
	uint64_t base, len;
	io_handler_fn fn;
};
/* Registers all n ranges, or none: -1 (after logging) when one is taken. */
int iobus_register_all(struct iobus *bus, const struct iobus_claim *claims, size_t n, void *opaque);
void iobus_unregister_all(struct iobus *bus, const struct iobus_claim *claims, size_t n);
/* Unclaimed reads return all ones and unclaimed writes are dropped, as on a PC. Returns whether claimed. */
bool iobus_access(struct iobus *bus, uint64_t addr, uint8_t *data, unsigned size, bool is_write);
/*
 * A string instruction (rep ins/outs) that KVM hands over as one exit:
 * `count` accesses of `size` bytes to the same address, each from (or into)
 * the next `size` bytes of data.
 */
void iobus_access_string(struct iobus *bus, uint64_t addr, uint8_t *data, unsigned size, uint32_t count,
			 bool is_write);

#endif
