/*
 * VNC input end to end without KVM: a real RFB client (build/vncinput,
 * libvncclient) types and points at the VNC server of an fbuf display;
 * the bytes the guest would read arrive at the i8042's ports.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/devmem.h"
#include "core/device.h"
#include "core/log.h"
#include "core/vm.h"
#include "testvm.h"

/* ---- KVM memory slot stand-ins (the display's framebuffer slot) ---- */

int vm_devmem_slot_alloc(struct vm *vm)
{
	(void)vm;
	return DEVMEM_SLOT_BASE;
}

void vm_devmem_slot_free(struct vm *vm, int slot)
{
	(void)vm, (void)slot;
}

int vm_map_device_memory(struct vm *vm, int slot, uint64_t gpa, void *hva, uint64_t size, bool log_dirty)
{
	(void)vm, (void)slot, (void)gpa, (void)hva, (void)size, (void)log_dirty;
	return 0;
}

void vm_unmap_device_memory(struct vm *vm, int slot)
{
	(void)vm, (void)slot;
}

int vm_devmem_dirty_log(struct vm *vm, int slot, uint64_t *bitmap)
{
	(void)vm, (void)slot, (void)bitmap;
	return 0;
}

/* ---- fixture ---- */

struct fx {
	struct vm *vm;
	char dir[64], sock[96];
	pid_t client;     /* vncinput, connected for the whole test */
	FILE *to, *from;  /* its stdin and stdout */
};

/* Starts vncinput on the server's socket; it stays connected until the server goes away. */
static void start_client(struct fx *f)
{
	int in[2], out[2];

	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	f->client = fork();
	assert_true(f->client >= 0);
	if (f->client == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		/* Leak checking (ASan builds) is for hyve, not for the client library. */
		setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
		execl(VNCINPUT, VNCINPUT, f->sock, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	f->to = fdopen(in[1], "w");
	f->from = fdopen(out[0], "r");
	assert_non_null(f->to);
	assert_non_null(f->from);
}

/* After the server closed: the client sees the end of its connection, or of its input, and exits. */
static void stop_client(struct fx *f)
{
	int status;

	fclose(f->to);
	waitpid(f->client, &status, 0);
	fclose(f->from);
}

static int setup(void **state)
{
	struct fx *f;

	*state = NULL;
	if (access(VNCINPUT, X_OK) != 0)
		return 0; /* built only with libvncserver-dev: the tests skip */
	f = calloc(1, sizeof(*f));
	log_set_level(LOG_ERROR);
	strcpy(f->dir, "/tmp/test-vnc-input.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/vnc.sock", f->dir);
	f->vm = testvm_new(64ULL << 20);
	assert_int_equal(config_set(f->vm->cfg, "pci.0.5.0.device", "fbuf"), 0);
	assert_int_equal(config_set(f->vm->cfg, "pci.0.5.0.unix", f->sock), 0);
	assert_int_equal(device_model_find("i8042")->attach(f->vm), 0);
	assert_int_equal(device_model_find("pci")->attach(f->vm), 0);
	testvm_start_loop(f->vm);
	/* Command byte: interrupts on, no translation (set 2 as the keyboard sends it). */
	outb(f->vm, 0x64, 0x60);
	outb(f->vm, 0x60, 0x07);
	start_client(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (!f)
		return 0;
	testvm_free(f->vm);
	stop_client(f);
	unlink(f->sock);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Sends command lines to the client; every one must be answered "ok". */
static void vncinput(struct fx *f, const char *commands)
{
	char line[128];

	fputs(commands, f->to);
	fflush(f->to);
	for (const char *p = commands; *p; p++) {
		if (*p != '\n')
			continue;
		assert_non_null(fgets(line, sizeof(line), f->from));
		assert_string_equal(line, "ok\n");
	}
}

/* Reads what the controller delivers until `want` bytes came (the server runs on the loop thread). */
static void expect_bytes(struct vm *vm, const uint8_t *want, size_t len)
{
	uint8_t got[64];
	size_t n = 0;
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		while (n < sizeof(got) && (inb(vm, 0x64) & 1))
			got[n++] = inb(vm, 0x60);
		if (n >= len)
			break;
		usleep(10 * 1000);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec < 20);
	usleep(100 * 1000); /* nothing more may follow */
	while (n < sizeof(got) && (inb(vm, 0x64) & 1))
		got[n++] = inb(vm, 0x60);
	assert_int_equal(n, len);
	if (len)
		assert_memory_equal(got, want, len);
}

#define EXPECT(vm, ...)                                                                        \
	do {                                                                                   \
		const uint8_t w_[] = { __VA_ARGS__ };                                          \
		expect_bytes(vm, w_, sizeof(w_));                                              \
	} while (0)

static void test_keys(void **state)
{
	struct fx *f = *state;

	if (!f)
		skip();
	/* Extended key events: QEMU key numbers. */
	vncinput(f, "xkey 0x9c 0xff8d 1\nxkey 0x9c 0xff8d 0\nxkey 0xc6 0xff13 1\nxkey 0xc6 0xff13 0\n");
	EXPECT(f->vm, 0xE0, 0x5A, 0xE0, 0xF0, 0x5A, 0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77);
	/* Plain key events: keysyms; 'A' is the A key (the client sends Shift itself). */
	vncinput(f, "key 0x41 1\nkey 0x41 0\nkey 0xffe4 1\nkey 0xffe4 0\nkey 0x1008ff12 1\nkey 0x1008ff12 0\n");
	EXPECT(f->vm, 0x1C, 0xF0, 0x1C, 0xE0, 0x14, 0xE0, 0xF0, 0x14, 0xE0, 0x23, 0xE0, 0xF0, 0x23);
	/* Unknown keysyms type nothing. */
	vncinput(f, "key 0x12345 1\nkey 0x12345 0\n");
	expect_bytes(f->vm, NULL, 0);
}

static void aux(struct vm *vm, uint8_t b)
{
	outb(vm, 0x64, 0xD4);
	outb(vm, 0x60, b);
}

static void test_pointer(void **state)
{
	struct fx *f = *state;
	static const uint8_t knock[] = { 200, 100, 80, 200, 200, 80 };

	if (!f)
		skip();
	for (size_t i = 0; i < sizeof(knock); i++) {
		aux(f->vm, 0xF3);
		aux(f->vm, knock[i]);
	}
	aux(f->vm, 0xF4);
	EXPECT(f->vm, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA);
	/* Motion, buttons (left, then side = RFB bit 7), wheel up (bit 3) and right (bit 6). */
	vncinput(f, "ptr 10 10 0\nptr 30 5 0\nptr 30 5 1\nptr 30 5 128\nptr 30 5 0\n"
		    "ptr 30 5 8\nptr 30 5 0\nptr 30 5 64\nptr 30 5 0\n");
	EXPECT(f->vm, 0x08, 20, 5, 0x00,  /* +20 right, +5 up */
	       0x09, 0, 0, 0x00,	  /* left down */
	       0x08, 0, 0, 0x10,	  /* left up, side down */
	       0x08, 0, 0, 0x00,	  /* side up */
	       0x08, 0, 0, 0x0F,	  /* one click up */
	       0x08, 0, 0, 0x7F);	  /* one click right */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pointer, setup, teardown),
	};

	/* hyve ignores SIGPIPE (a client leaving mid-update); so must its stand-in. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
