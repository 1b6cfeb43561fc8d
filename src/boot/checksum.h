/*
 * The 8-bit checksum of the firmware tables (ACPI, MP, SMBIOS): the byte
 * that makes all bytes of the structure sum to zero.
 */
#ifndef HYVE_BOOT_CHECKSUM_H
#define HYVE_BOOT_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* The value of a checksum field over len bytes at p, computed with that field 0. */
static inline uint8_t table_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + b[i]);
	return (uint8_t)-sum;
}

#endif
