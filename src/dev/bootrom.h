/*
 * UEFI firmware in flash below 4 GiB (dev/bootrom.c), bhyve's
 * `-l bootrom,CODE[,VARS]` (lpc.bootrom, lpc.bootvars):
 *
 *   CODE  firmware code (OVMF_CODE_4M.fd, OVMF_CODE.fd) mapped read-only so
 *         that it ends at 4 GiB (the reset vector is at 0xFFFFFFF0)
 *   VARS  a per-VM copy of the matching variable store (OVMF_VARS_4M.fd),
 *         directly below CODE, as CFI flash (dev/pflash.h) written
 *         through to the file
 *
 * A combined image (OVMF.fd: a variable store followed by the code) is
 * given alone: its store becomes the flash, kept in memory for the VM's
 * lifetime (the file is only read).
 *
 * The loader is exposed for tests; the device reads the configuration.
 */
#ifndef HYVE_BOOTROM_H
#define HYVE_BOOTROM_H

#include <stddef.h>
#include <stdint.h>

/* The whole flash device may not exceed this (the space between the LAPIC page and 4 GiB is 18 MiB). */
#define BOOTROM_MAX_SIZE (16u << 20)

struct bootrom_images {
	uint8_t *code;      /* page-aligned private copy */
	uint64_t code_size;
	uint8_t *vars;      /* page-aligned private copy of the variable store */
	uint64_t vars_size;
	int vars_fd;        /* the VARS file, open read-write and locked; -1 for a combined image */
};

/*
 * Reads and checks the images (see docs/hyve.md "Firmware"): 0, or -1
 * with a one-line reason naming the file in err.
 */
int bootrom_load(const char *code_path, const char *vars_path, struct bootrom_images *out, char *err,
		 size_t errlen);
void bootrom_images_free(struct bootrom_images *img);

#endif
