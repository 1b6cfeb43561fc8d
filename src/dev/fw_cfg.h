/*
 * The QEMU firmware configuration interface (fw_cfg) as OVMF reads it: a
 * selector port, a data port, and DMA requests through a descriptor in
 * guest memory. Created when the VM boots firmware (lpc.bootrom); the rest
 * of hyve reaches it through vm->fw_cfg and hands it named files before the
 * guest starts (ACPI tables and their loader script, the memory map).
 */
#ifndef HYVE_FW_CFG_H
#define HYVE_FW_CFG_H

#include <stddef.h>
#include <stdint.h>

struct fw_cfg;

/* I/O ports (x86). The selector is 16 bits wide; the data port 8. */
#define FW_CFG_PORT_SELECTOR 0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_PORT_DMA 0x514 /* high half (big-endian); the low half at +4 starts the request */

/* Items with fixed numbers. */
#define FW_CFG_SIGNATURE 0x00  /* "QEMU" */
#define FW_CFG_ID 0x01         /* little-endian u32 feature bits */
#define FW_CFG_NB_CPUS 0x05    /* little-endian u16: vCPUs running at power-on */
#define FW_CFG_FILE_DIR 0x19   /* the file directory, big-endian */
#define FW_CFG_FILE_FIRST 0x20 /* the first file's item */

#define FW_CFG_ID_TRADITIONAL 0x01 /* selector and data ports */
#define FW_CFG_ID_DMA 0x02

/* The DMA descriptor: be32 control, be32 length, be64 address. */
#define FW_CFG_DMA_ERROR 0x01
#define FW_CFG_DMA_READ 0x02
#define FW_CFG_DMA_SKIP 0x04
#define FW_CFG_DMA_SELECT 0x08 /* the item to select first is in bits 31:16 */
#define FW_CFG_DMA_WRITE 0x10
#define FW_CFG_DMA_DESC_SIZE 16

/* File directory entries: be32 size, be16 select, be16 reserved, the name (NUL-padded). */
#define FW_CFG_NAME_SIZE 56 /* including the terminating NUL */
#define FW_CFG_DIR_ENTRY_SIZE 64
#define FW_CFG_MAX_FILES 64
#define FW_CFG_FILE_MAX (16u << 20) /* bytes per file */

/*
 * Adds a file the guest can read (data is copied). Names are unique and
 * shorter than FW_CFG_NAME_SIZE. 0, or -1 after logging.
 */
int fw_cfg_add_file(struct fw_cfg *fc, const char *name, const void *data, size_t len);

#endif
