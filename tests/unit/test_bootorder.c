/*
 * The firmware boot order (src/boot/bootorder.c): the OpenFirmware paths,
 * the "bootorder" file, and the file as the firmware reads it through
 * fw_cfg after devices with bootindex= were created. The paths are checked
 * by a parser written here after OVMF's QemuBootOrderLib grammar
 * (/driver-name@unit-address[:args] nodes; unit addresses are comma
 * separated hexadecimal numbers without 0x; a path ends at a newline or
 * at the NUL that ends the file), which also translates them into the
 * UEFI device path prefix OVMF matches its boot options against.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "boot/bootorder.h"
#include "boot/fw_cfg_files.h"
#include "core/config.h"
#include "core/device.h"
#include "core/irq.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/vm.h"
#include "testvm.h"

/* ---- an independent reader of the file, after QemuBootOrderLib's grammar ---- */

struct ofw_node {
	char name[33];
	char unit[64]; /* printable, without '/', '@' and ':' */
};

static bool name_char(char c)
{
	return isalnum((unsigned char)c) || strchr(",._+-", c);
}

static bool unit_char(char c)
{
	return c >= 32 && c <= 126 && c != '/' && c != '@' && c != ':';
}

/* Parses one node at *p (a leading '/'); false on a grammar error. Sets *final at a newline or NUL. */
static bool parse_node(const char **p, struct ofw_node *n, bool *final)
{
	size_t len = 0;

	if (**p != '/')
		return false;
	(*p)++;
	while (name_char(**p) && len < 32)
		n->name[len++] = *(*p)++;
	n->name[len] = '\0';
	if (len == 0 || len == 32 || **p != '@')
		return false;
	(*p)++;
	for (len = 0; unit_char(**p) && len < sizeof(n->unit) - 1;)
		n->unit[len++] = *(*p)++;
	n->unit[len] = '\0';
	if (len == 0 || **p == ':') /* hyve writes no device arguments */
		return false;
	if (**p == '\n') {
		(*p)++;
		*final = true;
		return true;
	}
	*final = **p == '\0';
	return *final || **p == '/';
}

/* A unit address as a list of hexadecimal numbers: no 0x, no empty members; the count, or -1. */
static int hex_list(const char *s, unsigned long long *out, int max)
{
	int n = 0;

	for (;;) {
		unsigned long long v = 0;
		int digits = 0;
		for (; isxdigit((unsigned char)*s); s++, digits++)
			v = v * 16 + (unsigned long long)(isdigit((unsigned char)*s) ? *s - '0' : tolower(*s) - 'a' + 10);
		if (!digits || n == max)
			return -1;
		out[n++] = v;
		if (*s == '\0')
			return n;
		if (*s++ != ',')
			return -1;
	}
}

/*
 * Reads one path from *p and translates it as OVMF does for a device on the
 * main PCI root (/pci@i0cf8, no extra root after a comma):
 * "PciRoot(0x0)/Pci(0xS,0xF)". Returns false on any error.
 */
static bool translate(const char **p, char *out, size_t len, char *first_below, size_t below_len)
{
	struct ofw_node nodes[6];
	unsigned long long devfun[2] = { 0, 0 };
	int n = 0;
	bool final = false;

	while (!final) {
		if (n == 6 || !parse_node(p, &nodes[n], &final))
			return false;
		n++;
	}
	if (n < 2 || strcmp(nodes[0].name, "pci") || strcmp(nodes[0].unit, "i0cf8") ||
	    hex_list(nodes[1].unit, devfun, 2) < 0)
		return false;
	snprintf(first_below, below_len, "%s", n > 2 ? nodes[2].name : "");
	snprintf(out, len, "PciRoot(0x0)/Pci(0x%llx,0x%llx)", devfun[0], devfun[1]);
	return true;
}

/* ---- paths ---- */

static void paths(void **state)
{
	struct bootorder_entry disk = { .slot = 4, .node = "scsi", .child = "disk@0,0" };
	struct bootorder_entry nic = { .slot = 0x1a, .function = 3, .node = "ethernet", .child = "ethernet-phy@0" };
	struct bootorder_entry bare = { .slot = 31, .node = "display" };
	char buf[128];
	(void)state;

	assert_int_equal(bootorder_path(&disk, buf, sizeof(buf)), (int)strlen("/pci@i0cf8/scsi@4/disk@0,0"));
	assert_string_equal(buf, "/pci@i0cf8/scsi@4/disk@0,0");
	bootorder_path(&nic, buf, sizeof(buf));
	assert_string_equal(buf, "/pci@i0cf8/ethernet@1a,3/ethernet-phy@0"); /* hexadecimal, the function when not 0 */
	bootorder_path(&bare, buf, sizeof(buf));
	assert_string_equal(buf, "/pci@i0cf8/display@1f");
	assert_int_equal(bootorder_path(&nic, buf, 10), -1); /* never cut short */
}

/* ---- the file ---- */

static void file_sorted_newline_separated_nul_terminated(void **state)
{
	struct bootorder_entry e[] = {
		{ .index = 7, .id = "pci.0.5.0", .slot = 5, .node = "ethernet", .child = "ethernet-phy@0" },
		{ .index = 0, .id = "pci.0.17.2", .slot = 17, .function = 2, .node = "scsi", .child = "disk@0,0" },
		{ .index = 3, .id = "pci.0.4.0", .slot = 4, .node = "scsi", .child = "disk@0,0" },
	};
	const char *want[] = { "PciRoot(0x0)/Pci(0x11,0x2)", "PciRoot(0x0)/Pci(0x4,0x0)", "PciRoot(0x0)/Pci(0x5,0x0)" };
	const char *below[] = { "disk", "disk", "ethernet-phy" };
	char err[128], uefi[64], child[40], *file;
	const char *p;
	size_t len;
	(void)state;

	assert_int_equal(bootorder_file(e, 3, &file, &len, err, sizeof(err)), 0);
	assert_string_equal(file, "/pci@i0cf8/scsi@11,2/disk@0,0\n/pci@i0cf8/scsi@4/disk@0,0\n"
				  "/pci@i0cf8/ethernet@5/ethernet-phy@0");
	assert_int_equal(len, strlen(file) + 1);
	assert_int_equal(file[len - 1], '\0'); /* OVMF refuses a file whose last byte is not NUL */
	p = file;
	for (int i = 0; i < 3; i++) {
		assert_true(translate(&p, uefi, sizeof(uefi), child, sizeof(child)));
		assert_string_equal(uefi, want[i]);
		assert_string_equal(child, below[i]);
	}
	assert_int_equal(*p, '\0');
	free(file);
}

static void same_index_twice_is_refused(void **state)
{
	struct bootorder_entry e[] = {
		{ .index = 1, .id = "pci.0.4.0", .slot = 4, .node = "scsi" },
		{ .index = 2, .id = "pci.0.6.0", .slot = 6, .node = "scsi" },
		{ .index = 1, .id = "pci.0.5.0", .slot = 5, .node = "scsi" },
	};
	char err[128], *file = NULL;
	size_t len;
	(void)state;

	assert_int_equal(bootorder_file(e, 3, &file, &len, err, sizeof(err)), -1);
	assert_null(file);
	assert_true(strstr(err, "have the same bootindex=1"));
	assert_true(strstr(err, "pci.0.4.0") && strstr(err, "pci.0.5.0"));
}

/* ---- through fw_cfg, from the devices' options ---- */

static char images[3][64]; /* IMAGE1..IMAGE3: a disk image each (images are locked by their user) */

static struct vm *vm_with_disks(const char *const *settings)
{
	struct vm *vm = testvm_new(64ULL << 20);
	FILE *fp;

	log_set_level(LOG_ERROR);
	for (int i = 0; i < 3; i++) {
		snprintf(images[i], sizeof(images[i]), "/tmp/hyve-test-bootorder-%d-%d.img", getpid(), i + 1);
		fp = fopen(images[i], "wb");
		assert_non_null(fp);
		for (int b = 0; b < 4096; b++)
			fputc(0, fp);
		fclose(fp);
	}
	vm->ncpus = 1;
	assert_int_equal(mem_alloc(&vm->mem, "test-bootorder"), 0);
	assert_int_equal(config_set(vm->cfg, "lpc.bootrom", "/usr/share/OVMF/OVMF_CODE_4M.fd"), 0);
	for (; *settings; settings++) {
		char key[64], value[128];
		assert_int_equal(sscanf(*settings, "%63[^=]=%127s", key, value), 2);
		if (strncmp(value, "IMAGE", 5) == 0)
			snprintf(value, sizeof(value), "%s", images[value[5] - '1']);
		assert_int_equal(config_set(vm->cfg, key, value), 0);
	}
	assert_int_equal(device_model_find("fw-cfg")->attach(vm), 0);
	return vm;
}

static void free_vm(struct vm *vm)
{
	devices_destroy_all(vm);
	vm_irq_routing_free(vm);
	mem_free(&vm->mem);
	testvm_free(vm);
	for (int i = 0; i < 3; i++)
		unlink(images[i]);
}

static void devices_with_bootindex_reach_the_firmware(void **state)
{
	static const char *const settings[] = {
		"pci.0.4.0.device=virtio-blk", "pci.0.4.0.path=IMAGE1", "pci.0.4.0.bootindex=5",
		"pci.0.6.0.device=virtio-blk", "pci.0.6.0.path=IMAGE2",
		"pci.0.12.0.device=virtio-blk", "pci.0.12.0.path=IMAGE3", "pci.0.12.0.bootindex=1",
		"pci.0.7.0.device=virtio-rnd", NULL,
	};
	struct vm *vm = vm_with_disks(settings);
	uint32_t size;
	char *file;
	(void)state;

	assert_int_equal(device_model_find("pci")->attach(vm), 0);
	assert_int_equal(fw_cfg_files_setup(vm), 0);
	file = testvm_fw_cfg_file(vm, "bootorder", &size);
	assert_non_null(file);
	/* slot 12 (index 1) first; slot 6 has no bootindex and the rng no boot path */
	assert_int_equal(size, sizeof("/pci@i0cf8/scsi@c/disk@0,0\n/pci@i0cf8/scsi@4/disk@0,0"));
	assert_string_equal(file, "/pci@i0cf8/scsi@c/disk@0,0\n/pci@i0cf8/scsi@4/disk@0,0");
	free(file);
	free_vm(vm);
}

static void without_bootindex_there_is_no_file(void **state)
{
	static const char *const settings[] = { "pci.0.4.0.device=virtio-blk", "pci.0.4.0.path=IMAGE1", NULL };
	struct vm *vm = vm_with_disks(settings);
	uint32_t size;
	(void)state;

	assert_int_equal(device_model_find("pci")->attach(vm), 0);
	assert_int_equal(fw_cfg_files_setup(vm), 0);
	assert_null(testvm_fw_cfg_file(vm, "bootorder", &size)); /* OVMF keeps its own order */
	free_vm(vm);
}

static void duplicate_bootindex_fails_the_setup(void **state)
{
	static const char *const settings[] = {
		"pci.0.4.0.device=virtio-blk", "pci.0.4.0.path=IMAGE1", "pci.0.4.0.bootindex=2",
		"pci.0.5.0.device=virtio-blk", "pci.0.5.0.path=IMAGE2", "pci.0.5.0.bootindex=2", NULL,
	};
	struct vm *vm = vm_with_disks(settings);
	(void)state;

	assert_int_equal(device_model_find("pci")->attach(vm), 0);
	assert_int_equal(fw_cfg_files_setup(vm), -1);
	free_vm(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(paths),
		cmocka_unit_test(file_sorted_newline_separated_nul_terminated),
		cmocka_unit_test(same_index_twice_is_refused),
		cmocka_unit_test(devices_with_bootindex_reach_the_firmware),
		cmocka_unit_test(without_bootindex_there_is_no_file),
		cmocka_unit_test(duplicate_bootindex_fails_the_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
