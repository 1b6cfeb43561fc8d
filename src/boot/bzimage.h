/* Validation of a bzImage's setup header (Linux x86 boot protocol). */
#ifndef HYVE_BZIMAGE_H
#define HYVE_BZIMAGE_H

#include <stddef.h>
#include <stdint.h>

struct bzimage {
	uint16_t version;        /* boot protocol version, e.g. 0x020f */
	size_t setup_size;       /* bytes of real-mode setup, including the boot sector */
	const uint8_t *kernel;   /* protected-mode kernel inside the image */
	size_t kernel_size;
	uint32_t init_size;      /* memory the kernel needs from its load address */
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;   /* maximum command line length, without the NUL */
	uint32_t kernel_alignment;
	uint8_t relocatable;
};

/*
 * Checks that image[0..len) is a bzImage hyve can boot through the 64-bit
 * entry point (boot protocol 2.12 or newer with XLF_KERNEL_64). Returns 0,
 * or -1 with a reason in *why.
 */
int bzimage_parse(const uint8_t *image, size_t len, struct bzimage *out, const char **why);

#endif
