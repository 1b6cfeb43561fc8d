#include "testvm.h"
#include "core/irq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/device.h"
#include "core/display.h"
#include "core/evloop.h"
#include "core/input.h"
#include "core/log.h"
#include "core/platform.h"
#include "core/vm.h"

static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rec_cond = PTHREAD_COND_INITIALIZER;
static int irq_level[TESTVM_MAX_GSI];
static unsigned irq_edges[TESTVM_MAX_GSI], irq_calls[TESTVM_MAX_GSI];
static int exit_status = -1;
static unsigned reset_requests;

static pthread_t loop_thread;
static bool loop_running;
static struct vm *loop_vm; /* whose loop loop_thread runs */

/* ---- the recording KVM layer ---- */

void vm_set_irq(struct vm *vm, unsigned gsi, int level)
{
	(void)vm;
	if (gsi >= TESTVM_MAX_GSI)
		abort();
	pthread_mutex_lock(&rec_lock);
	if (level && !irq_level[gsi])
		irq_edges[gsi]++;
	irq_level[gsi] = level;
	irq_calls[gsi]++;
	pthread_cond_broadcast(&rec_cond);
	pthread_mutex_unlock(&rec_lock);
}

void vm_request_exit(struct vm *vm, int status)
{
	(void)vm;
	pthread_mutex_lock(&rec_lock);
	if (exit_status < 0)
		exit_status = status;
	pthread_mutex_unlock(&rec_lock);
}

/* As vm.c without reboot=restart: a reset ends the VM with status 0; counted as well. */
void vm_request_reset(struct vm *vm)
{
	pthread_mutex_lock(&rec_lock);
	reset_requests++;
	pthread_mutex_unlock(&rec_lock);
	vm_request_exit(vm, HYVE_EXIT_REBOOT);
}

/* The start hold as vm.c keeps it; tests read vm->start_holds (no vCPUs to start here). */
void vm_hold_start(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->start_holds++;
	pthread_mutex_unlock(&vm->lock);
}

void vm_release_start(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->start_holds)
		vm->start_holds--;
	pthread_mutex_unlock(&vm->lock);
}

int testvm_irq_level(unsigned gsi)
{
	int v;

	pthread_mutex_lock(&rec_lock);
	v = irq_level[gsi];
	pthread_mutex_unlock(&rec_lock);
	return v;
}

unsigned testvm_irq_edges(unsigned gsi)
{
	unsigned v;

	pthread_mutex_lock(&rec_lock);
	v = irq_edges[gsi];
	pthread_mutex_unlock(&rec_lock);
	return v;
}

unsigned testvm_irq_calls(unsigned gsi)
{
	unsigned v;

	pthread_mutex_lock(&rec_lock);
	v = irq_calls[gsi];
	pthread_mutex_unlock(&rec_lock);
	return v;
}

bool testvm_wait_irq(unsigned gsi, int level, int timeout_ms)
{
	struct timespec deadline;
	bool reached;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&rec_lock);
	while (irq_level[gsi] != level)
		if (pthread_cond_timedwait(&rec_cond, &rec_lock, &deadline) != 0)
			break;
	reached = irq_level[gsi] == level;
	pthread_mutex_unlock(&rec_lock);
	return reached;
}

int testvm_exit_status(void)
{
	int v;

	pthread_mutex_lock(&rec_lock);
	v = exit_status;
	pthread_mutex_unlock(&rec_lock);
	return v;
}

unsigned testvm_reset_requests(void)
{
	unsigned n;

	pthread_mutex_lock(&rec_lock);
	n = reset_requests;
	pthread_mutex_unlock(&rec_lock);
	return n;
}

void testvm_clear_records(void)
{
	pthread_mutex_lock(&rec_lock);
	reset_requests = 0;
	memset(irq_level, 0, sizeof(irq_level));
	memset(irq_edges, 0, sizeof(irq_edges));
	memset(irq_calls, 0, sizeof(irq_calls));
	exit_status = -1;
	pthread_mutex_unlock(&rec_lock);
}

/* ---- the VM ---- */

/*
 * A failed cmocka assertion leaves its test without testvm_free(); the loop
 * it started would then run on beside the next test's. Stop it here (the
 * failed test's VM is leaked: the run is failing anyway).
 */
static void stop_loop_thread(void)
{
	if (!loop_running)
		return;
	evloop_stop(loop_vm->loop);
	pthread_join(loop_thread, NULL);
	loop_running = false;
}

struct vm *testvm_new(uint64_t mem_size)
{
	return testvm_new_platform(mem_size, NULL);
}

struct vm *testvm_new_platform(uint64_t mem_size, const char *layout)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		abort();
	stop_loop_thread();
	vm->name = "test";
	vm->cfg = config_new();
	vm->kvm_fd = vm->vm_fd = -1;
	vm->ncpus = 1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	iobus_init(&vm->pio);
	iobus_init(&vm->mmio);
	vm->loop = evloop_new();
	if (!vm->cfg || !vm->loop || (layout && config_set(vm->cfg, PLATFORM_LAYOUT_KEY, layout) < 0))
		abort();
	vm->platform = platform_select(vm->cfg);
	if (!vm->platform || display_init(vm) < 0 || input_init(vm) < 0 || vm_irq_routing_init(vm) < 0)
		abort();
	mem_layout(&vm->mem, mem_size, vm->platform->lowmem_limit);
	testvm_clear_records();
	return vm;
}

static void *loop_main(void *opaque)
{
	evloop_run(opaque);
	return NULL;
}

void testvm_start_loop(struct vm *vm)
{
	if (pthread_create(&loop_thread, NULL, loop_main, vm->loop) != 0)
		abort();
	loop_vm = vm;
	loop_running = true;
}

void testvm_free(struct vm *vm)
{
	if (loop_running && loop_vm == vm)
		stop_loop_thread();
	devices_destroy_all(vm);
	vm_irq_routing_free(vm);
	input_fini(vm);
	display_fini(vm);
	evloop_free(vm->loop);
	iobus_destroy(&vm->pio);
	iobus_destroy(&vm->mmio);
	config_free(vm->cfg);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
}

void testvm_out(struct vm *vm, uint16_t port, unsigned size, uint32_t value)
{
	uint8_t data[4];

	for (unsigned i = 0; i < size; i++)
		data[i] = (uint8_t)(value >> (8 * i));
	iobus_access(&vm->pio, port, data, size, true);
}

uint32_t testvm_in(struct vm *vm, uint16_t port, unsigned size)
{
	uint8_t data[4] = { 0 };
	uint32_t v = 0;

	iobus_access(&vm->pio, port, data, size, false);
	for (unsigned i = 0; i < size; i++)
		v |= (uint32_t)data[i] << (8 * i);
	return v;
}

void testvm_in_string(struct vm *vm, uint16_t port, unsigned size, void *buf, uint32_t count)
{
	iobus_access_string(&vm->pio, port, buf, size, count, false);
}

/* ---- fw_cfg through its ports ---- */

#define FW_CFG_SELECTOR 0x510
#define FW_CFG_DATA 0x511
#define FW_CFG_FILE_DIR 0x0019

static void fw_cfg_read(struct vm *vm, void *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		((uint8_t *)buf)[i] = inb(vm, FW_CFG_DATA);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void *testvm_fw_cfg_file(struct vm *vm, const char *name, uint32_t *size)
{
	uint8_t hdr[4], e[64]; /* an entry: size, selector, reserved, 56-byte name */
	uint32_t n;

	outw(vm, FW_CFG_SELECTOR, FW_CFG_FILE_DIR);
	fw_cfg_read(vm, hdr, sizeof(hdr));
	n = be32(hdr);
	for (uint32_t i = 0; i < n; i++) {
		char *data;

		fw_cfg_read(vm, e, sizeof(e));
		if (strncmp((const char *)e + 8, name, 56) != 0)
			continue;
		*size = be32(e);
		if (!(data = calloc(1, (size_t)*size + 1)))
			return NULL;
		outw(vm, FW_CFG_SELECTOR, (uint16_t)(e[4] << 8 | e[5]));
		fw_cfg_read(vm, data, *size);
		return data;
	}
	return NULL;
}
