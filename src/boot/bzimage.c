#include "bzimage.h"

#include <string.h>

/* Offsets into the image (Documentation/arch/x86/boot.rst). */
#define OFF_SETUP_SECTS 0x1f1
#define OFF_BOOT_FLAG 0x1fe
#define OFF_HEADER 0x202
#define OFF_VERSION 0x206
#define OFF_LOADFLAGS 0x211
#define OFF_INITRD_ADDR_MAX 0x22c
#define OFF_KERNEL_ALIGNMENT 0x230
#define OFF_RELOCATABLE 0x234
#define OFF_XLOADFLAGS 0x236
#define OFF_CMDLINE_SIZE 0x238
#define OFF_INIT_SIZE 0x260
#define HEADER_END 0x268

#define LOADED_HIGH 0x01
#define XLF_KERNEL_64 0x01
#define MIN_VERSION 0x020c

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int bzimage_parse(const uint8_t *image, size_t len, struct bzimage *out, const char **why)
{
	unsigned setup_sects;

	memset(out, 0, sizeof(*out));
	if (len < HEADER_END || le16(image + OFF_BOOT_FLAG) != 0xaa55 || memcmp(image + OFF_HEADER, "HdrS", 4)) {
		*why = "not a Linux bzImage (no boot sector signature or HdrS header)";
		return -1;
	}
	out->version = le16(image + OFF_VERSION);
	if (out->version < MIN_VERSION) {
		*why = "boot protocol older than 2.12 (no 64-bit entry point)";
		return -1;
	}
	if (!(image[OFF_LOADFLAGS] & LOADED_HIGH)) {
		*why = "not a bzImage (zImage loaded low is not supported)";
		return -1;
	}
	if (!(le16(image + OFF_XLOADFLAGS) & XLF_KERNEL_64)) {
		*why = "kernel has no 64-bit entry point";
		return -1;
	}
	setup_sects = image[OFF_SETUP_SECTS] ? image[OFF_SETUP_SECTS] : 4;
	out->setup_size = (size_t)(setup_sects + 1) * 512;
	if (out->setup_size >= len) {
		*why = "truncated: no protected-mode kernel after the setup code";
		return -1;
	}
	out->kernel = image + out->setup_size;
	out->kernel_size = len - out->setup_size;
	out->init_size = le32(image + OFF_INIT_SIZE);
	out->initrd_addr_max = le32(image + OFF_INITRD_ADDR_MAX);
	out->cmdline_size = le32(image + OFF_CMDLINE_SIZE);
	out->kernel_alignment = le32(image + OFF_KERNEL_ALIGNMENT);
	out->relocatable = image[OFF_RELOCATABLE];
	if (out->init_size < out->kernel_size) {
		*why = "corrupt setup header: init_size is smaller than the kernel";
		return -1;
	}
	return 0;
}
