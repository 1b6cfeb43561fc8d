/*
 * Test double for the KVM layer, for device-model unit tests: builds a
 * struct vm with real configuration, I/O buses, event loop and memory
 * layout but no KVM, and provides recording implementations of
 * vm_set_irq() and vm_request_exit() that tests assert on. Link it instead
 * of src/core/vm.c.
 */
#ifndef HYVE_TESTVM_H
#define HYVE_TESTVM_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

#define TESTVM_MAX_GSI 24

/* A VM of `mem_size` bytes laid out as vm_create() would (no RAM is allocated), on the default platform. */
struct vm *testvm_new(uint64_t mem_size);
/* The same on the platform layout of that name (core/platform.h); NULL: as vm_create() picks it. */
struct vm *testvm_new_platform(uint64_t mem_size, const char *layout);
/* Destroys devices first, as vm_destroy() does. */
void testvm_free(struct vm *vm);

/* Runs the VM's event loop on a thread until testvm_free(). */
void testvm_start_loop(struct vm *vm);

/* Port I/O as a vCPU would issue it. */
void testvm_out(struct vm *vm, uint16_t port, unsigned size, uint32_t value);
uint32_t testvm_in(struct vm *vm, uint16_t port, unsigned size);
/* A string instruction (rep insb...): count accesses of size bytes into buf, in one exit as KVM gives it. */
void testvm_in_string(struct vm *vm, uint16_t port, unsigned size, void *buf, uint32_t count);
#define outb(vm, port, v) testvm_out(vm, port, 1, v)
#define outw(vm, port, v) testvm_out(vm, port, 2, v)
#define outl(vm, port, v) testvm_out(vm, port, 4, v)
#define inb(vm, port) ((uint8_t)testvm_in(vm, port, 1))
#define inw(vm, port) ((uint16_t)testvm_in(vm, port, 2))
#define inl(vm, port) testvm_in(vm, port, 4)

/*
 * A fw_cfg file read as the firmware reads it, through the selector and data
 * ports (0x510, 0x511): its contents plus a NUL (malloc'd) and *size, or NULL
 * when the file directory has no such name.
 */
void *testvm_fw_cfg_file(struct vm *vm, const char *name, uint32_t *size);

/* What vm_set_irq() was told: the line's level, rising edges and calls so far. */
int testvm_irq_level(unsigned gsi);
unsigned testvm_irq_edges(unsigned gsi);
unsigned testvm_irq_calls(unsigned gsi);
/* Waits up to timeout_ms for the line to reach level; returns whether it did. */
bool testvm_wait_irq(unsigned gsi, int level, int timeout_ms);
/* First status passed to vm_request_exit(), or -1 when none was. */
int testvm_exit_status(void);
/* How many times vm_request_reset() was called. */
unsigned testvm_reset_requests(void);
/* Forgets all recorded calls. */
void testvm_clear_records(void);

#endif
