/*
 * The table-loader script ("etc/table-loader") that tells firmware how to
 * place fw_cfg blobs in guest memory and link them: a sequence of 128-byte
 * little-endian commands, which OVMF's AcpiPlatformDxe and SeaBIOS run in
 * order.
 *
 *  ALLOCATE     copy blob FILE to memory aligned to ALIGN, in ZONE
 *  ADD_POINTER  the SIZE-byte value at OFFSET in blob FILE is an offset into
 *               blob POINTEE: add the address where POINTEE was placed
 *  ADD_CHECKSUM store at RESULT in FILE the byte that makes [START,
 *               START+LEN) sum to zero (the byte at RESULT counts as it is)
 *
 * A blob must be allocated before a command names it, and a checksum must
 * follow the pointers inside its range. Firmware installs as ACPI tables
 * exactly what ADD_POINTER commands point at (except RSDT and XSDT, which
 * it builds itself), so every table must be the target of some pointer.
 * WRITE_POINTER (an address written back into a writable fw_cfg file) is
 * not offered: hyve has no writable files.
 */
#ifndef HYVE_FW_CFG_LOADER_H
#define HYVE_FW_CFG_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOADER_FILE "etc/table-loader"
#define LOADER_CMD_SIZE 128
#define LOADER_NAME_SIZE 56 /* fw_cfg file names, NUL included */

enum loader_command {
	LOADER_ALLOCATE = 1,
	LOADER_ADD_POINTER = 2,
	LOADER_ADD_CHECKSUM = 3,
};

enum loader_zone {
	LOADER_ZONE_HIGH = 1, /* anywhere (below 4 GiB when a 32-bit pointer targets it) */
	LOADER_ZONE_FSEG = 2, /* the BIOS F segment, for an RSDP legacy OSes scan for */
};

/* Field offsets within a command. */
#define LOADER_TYPE 0
#define LOADER_FILE_NAME 4       /* every command: the blob it works on */
#define LOADER_ALLOC_ALIGN 60
#define LOADER_ALLOC_ZONE 64
#define LOADER_PTR_POINTEE 60
#define LOADER_PTR_OFFSET 116
#define LOADER_PTR_SIZE 120
#define LOADER_CSUM_RESULT 60
#define LOADER_CSUM_START 64
#define LOADER_CSUM_LENGTH 68

struct fw_cfg_loader {
	uint8_t *cmds;   /* LOADER_CMD_SIZE bytes each */
	size_t len, cap; /* bytes */
	bool failed;     /* a command could not be added; the script is unusable */
};

void loader_init(struct fw_cfg_loader *l);
void loader_free(struct fw_cfg_loader *l);
/* Each returns 0, or -1 after logging (and marks the script failed). */
int loader_allocate(struct fw_cfg_loader *l, const char *file, uint32_t align, enum loader_zone zone);
int loader_add_pointer(struct fw_cfg_loader *l, const char *file, const char *pointee, uint32_t offset,
		       uint8_t size);
int loader_add_checksum(struct fw_cfg_loader *l, const char *file, uint32_t result, uint32_t start, uint32_t len);

#endif
