/*
 * What firmware boot offers through fw_cfg (dev/fw_cfg.h): the ACPI tables
 * as relocatable blobs with their loader script (etc/acpi/tables,
 * etc/acpi/rsdp, etc/table-loader), and the RAM map (etc/e820).
 */
#ifndef HYVE_FW_CFG_FILES_H
#define HYVE_FW_CFG_FILES_H

struct vm;

#define FW_CFG_FILE_E820 "etc/e820"
#define FW_CFG_E820_ENTRY_SIZE 20 /* le64 address, le64 length, le32 type */

/*
 * Adds the files to vm->fw_cfg, after the devices are attached (the DSDT
 * describes some of them) and before the guest starts. Not on a restore:
 * the snapshot holds the files the guest was offered. 0, or -1 after logging.
 */
int fw_cfg_files_setup(struct vm *vm);

#endif
