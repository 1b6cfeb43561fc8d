/*
 * A tiny AML encoder for the DSDT: just the named objects, devices and
 * resource templates a legacy PC platform needs. Callers append to one
 * growing buffer; nested constructs (Scope, Device, Package, resource
 * templates) are opened with a *_begin() that returns a mark and closed
 * with the matching end, which inserts the length prefix.
 *
 *	size_t sb = aml_scope_begin(b, "\\_SB");
 *	size_t dev = aml_device_begin(b, "COM1");
 *	aml_name(b, "_HID");
 *	aml_eisaid(b, "PNP0501");
 *	aml_end(b, dev);
 *	aml_end(b, sb);
 *
 * Errors (allocation failure, malformed names, bad marks) are sticky:
 * later calls do nothing and aml_failed() reports it.
 */
#ifndef HYVE_AML_H
#define HYVE_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml_buf {
	uint8_t *data;
	size_t len, cap;
	bool failed;
};

void aml_init(struct aml_buf *b);
void aml_free(struct aml_buf *b);
bool aml_failed(const struct aml_buf *b);

void aml_byte(struct aml_buf *b, uint8_t v);
void aml_bytes(struct aml_buf *b, const void *p, size_t n);

/*
 * A NameString: optional leading '\' or '^'s, then dot-separated segments
 * of 1-4 characters (padded with '_'), e.g. "\\_SB.COM1", "_HID".
 */
void aml_name_string(struct aml_buf *b, const char *name);

/* Data objects. */
void aml_integer(struct aml_buf *b, uint64_t v); /* shortest encoding */
void aml_string(struct aml_buf *b, const char *s);
/* "PNP0501" -> the 32-bit compressed EISA ID, as a DWordConst. */
void aml_eisaid(struct aml_buf *b, const char *id);

/* Name(name, <next data object>): the caller appends the value. */
void aml_name(struct aml_buf *b, const char *name);

size_t aml_scope_begin(struct aml_buf *b, const char *name);
size_t aml_device_begin(struct aml_buf *b, const char *name);
/* The caller appends exactly `count` data objects. */
size_t aml_package_begin(struct aml_buf *b, uint8_t count);
/* Closes a Scope, Device or Package. */
void aml_end(struct aml_buf *b, size_t mark);

/* ResourceTemplate() { ... }: a Buffer of descriptors plus the end tag. */
size_t aml_resource_begin(struct aml_buf *b);
void aml_resource_end(struct aml_buf *b, size_t mark);
/* IO(Decode16, base, base, 1, len): a fixed 16-bit decoded port range. */
void aml_res_io(struct aml_buf *b, uint16_t base, uint8_t len);
/* IRQNoFlags() { irq }: edge-triggered, active-high ISA interrupt. */
void aml_res_irq_noflags(struct aml_buf *b, uint8_t irq);

/*
 * Word/DWord/QWord address space descriptor (width 2, 4 or 8 bytes) for
 * [min, max] that a bridge produces: fixed minimum and maximum, positive
 * decode, granularity and translation 0. type_flags is the descriptor's
 * type-specific byte (AML_ADDR_IO_ENTIRE_RANGE, AML_ADDR_MEM_READWRITE).
 */
#define AML_ADDR_SPACE_MEMORY 0
#define AML_ADDR_SPACE_IO 1
#define AML_ADDR_SPACE_BUS 2
#define AML_ADDR_IO_ENTIRE_RANGE 0x03
#define AML_ADDR_MEM_READWRITE 0x01 /* non-cacheable, read-write */
void aml_res_address(struct aml_buf *b, unsigned width, uint8_t space, uint8_t type_flags, uint64_t min,
		     uint64_t max);
/* Memory32Fixed(ReadWrite, base, len). */
void aml_res_memory32_fixed(struct aml_buf *b, uint32_t base, uint32_t len);

/*
 * Device(name) { _HID EISAID(hid), _UID uid, _CRS { IO(port, len),
 * IRQNoFlags(irq) } }: a legacy ISA device with one fixed I/O range and
 * one interrupt (a UART, the RTC).
 */
void aml_isa_device(struct aml_buf *b, const char *name, const char *hid, unsigned uid, uint16_t port, uint8_t len,
		    uint8_t irq);

#endif
