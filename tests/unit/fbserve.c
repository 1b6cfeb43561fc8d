/*
 * fbserve: the fbuf display and its VNC server without KVM (the test VM
 * stand-in), showing a fixed test pattern, for VNC clients that are too
 * heavy for the test host (noVNC in Chromium). The pattern is the one the
 * integration tests draw: eight 64x64 blocks at (256, 608) in red, green,
 * blue, white, yellow, cyan, magenta and grey on black, 1024x768.
 *
 *   fbserve FBUF-OPTION...     e.g. unix=/tmp/v.sock password=secret
 *
 * Prints READY once serving, and serves until stdin closes.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/device.h"
#include "core/iobus.h"
#include "core/vm.h"
#include "testdevmem.h"
#include "testvm.h"

#define SLOT 5
#define PAT_X 256
#define PAT_Y 608
#define BLOCK 64

static const uint32_t colors[] = { 0xFF0000, 0x00FF00, 0x0000FF, 0xFFFFFF, 0xFFFF00, 0x00FFFF, 0xFF00FF, 0x808080 };

static uint32_t bar0(struct vm *vm)
{
	outl(vm, 0xCF8, 0x80000000u | SLOT << 11 | 0x10);
	return inl(vm, 0xCFC) & ~0xFu;
}

/* Written through BAR0 as a guest without a KVM slot would: hyve compares it in full. */
static void draw(struct vm *vm)
{
	uint64_t base = bar0(vm);

	for (unsigned y = PAT_Y; y < PAT_Y + BLOCK; y++)
		for (unsigned i = 0; i < sizeof(colors) / sizeof(colors[0]); i++)
			for (unsigned x = PAT_X + i * BLOCK; x < PAT_X + (i + 1) * BLOCK; x++) {
				uint32_t c = colors[i];
				uint8_t d[4] = { (uint8_t)c, (uint8_t)(c >> 8), (uint8_t)(c >> 16), 0 };
				iobus_access(&vm->mmio, base + ((uint64_t)y * 1024 + x) * 4, d, 4, true);
			}
}

int main(int argc, char **argv)
{
	struct vm *vm = testvm_new(64ULL << 20);
	char key[128], buf[64];

	snprintf(key, sizeof(key), "pci.0.%d.0.device", SLOT);
	config_set(vm->cfg, key, "fbuf");
	for (int i = 1; i < argc; i++) {
		snprintf(key, sizeof(key), "pci.0.%d.0.%s", SLOT, argv[i]);
		if (config_set_assignment(vm->cfg, key) < 0) {
			fprintf(stderr, "fbserve: bad option %s\n", argv[i]);
			return 2;
		}
	}
	if (device_model_find("pci")->attach(vm) < 0)
		return 1;
	draw(vm);
	testvm_start_loop(vm);
	printf("READY\n");
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	testvm_free(vm);
	return 0;
}
