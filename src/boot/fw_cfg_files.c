#include "fw_cfg_files.h"
#include "bootorder.h"
#include "smbios.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "boot/acpi.h"
#include "boot/e820.h"
#include "boot/fw_cfg_loader.h"
#include "core/device.h"
#include "core/log.h"
#include "core/vm.h"
#include "dev/fw_cfg.h"

static int add_acpi(struct vm *vm)
{
	struct acpi_machine m;
	struct acpi_blobs b;
	int ret;

	acpi_machine_of(vm, &m);
	if (acpi_build_blobs(&m, &b) < 0)
		return -1;
	ret = fw_cfg_add_file(vm->fw_cfg, ACPI_FILE_TABLES, b.tables, b.tables_len) < 0 ||
	      fw_cfg_add_file(vm->fw_cfg, ACPI_FILE_RSDP, b.rsdp, sizeof(b.rsdp)) < 0 ||
	      fw_cfg_add_file(vm->fw_cfg, LOADER_FILE, b.loader.cmds, b.loader.len) < 0;
	acpi_blobs_free(&b);
	return ret ? -1 : 0;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * The RAM regions of the memory layout, as QEMU offers them: firmware
 * makes its own map of what it reserves (OVMF reads only the RAM entries).
 */
static int add_e820(struct vm *vm)
{
	uint8_t entries[MEM_MAX_REGIONS * FW_CFG_E820_ENTRY_SIZE];
	const struct guest_memory *mem = &vm->mem;

	for (unsigned i = 0; i < mem->nregions; i++) {
		uint8_t *e = entries + i * FW_CFG_E820_ENTRY_SIZE;
		put_le(e, mem->regions[i].gpa, 8);
		put_le(e + 8, mem->regions[i].size, 8);
		put_le(e + 16, E820_RAM, 4);
	}
	return fw_cfg_add_file(vm->fw_cfg, FW_CFG_FILE_E820, entries, mem->nregions * FW_CFG_E820_ENTRY_SIZE);
}

/* Only when some device has a bootindex: without the file OVMF keeps its own order. */
static int add_bootorder(struct vm *vm)
{
	struct bootorder_entry *entries;
	size_t n, len;
	char err[256], *file;
	int rc;

	if (bootorder_collect(vm, &entries, &n, err, sizeof(err)) < 0 ||
	    (n && bootorder_file(entries, n, &file, &len, err, sizeof(err)) < 0)) {
		free(entries);
		log_error("%s", err);
		return -1;
	}
	free(entries);
	if (!n)
		return 0;
	rc = fw_cfg_add_file(vm->fw_cfg, BOOTORDER_FILE, file, len);
	free(file);
	return rc;
}

static int add_smbios(struct vm *vm)
{
	struct smbios_machine m;
	struct smbios_blobs b;
	int rc;

	smbios_machine_of(vm, &m);
	if (smbios_build(&m, &b) < 0) {
		log_error("cannot build the SMBIOS tables: out of memory");
		return -1;
	}
	rc = fw_cfg_add_file(vm->fw_cfg, SMBIOS_FILE_TABLES, b.tables, b.tables_len) < 0 ||
	     fw_cfg_add_file(vm->fw_cfg, SMBIOS_FILE_ANCHOR, b.anchor, sizeof(b.anchor)) < 0 ? -1 : 0;
	smbios_blobs_free(&b);
	return rc;
}

int fw_cfg_files_setup(struct vm *vm)
{
	if (!vm->fw_cfg) {
		log_error("firmware boot without the fw_cfg device");
		return -1;
	}
	return add_acpi(vm) < 0 || add_e820(vm) < 0 || add_bootorder(vm) < 0 || add_smbios(vm) < 0 ? -1 : 0;
}
