/*
 * What an AHCI port hands its device (src/sata/ahci.c to ata_disk.c and
 * atapi_cd.c): the data buffers of one command, already resolved from the
 * guest's PRD table into host memory, every entry bounds-checked against
 * guest RAM, and the ATA register values a command ends with.
 */
#ifndef HYVE_SATA_H
#define HYVE_SATA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* ATA status register. */
#define ATA_STATUS_ERR 0x01
#define ATA_STATUS_DRQ 0x08
#define ATA_STATUS_DSC 0x10 /* device seek complete / deferred write error: set when ready */
#define ATA_STATUS_DF 0x20
#define ATA_STATUS_DRDY 0x40
#define ATA_STATUS_BSY 0x80
/* ATA error register. */
#define ATA_ERROR_ABRT 0x04
#define ATA_ERROR_IDNF 0x10
#define ATA_ERROR_UNC 0x40

/* The data part of a command: guest buffers in PRD order. */
struct sata_sg {
	struct iovec *iov;
	unsigned n;
	uint64_t len; /* sum of iov[].iov_len */
};

/* Copies up to len bytes into the guest buffers from byte off on; returns how many fit. */
size_t sata_sg_copy_to(const struct sata_sg *sg, uint64_t off, const void *src, size_t len);
/* Copies up to len bytes out of the guest buffers from byte off on; returns how many there were. */
size_t sata_sg_copy_from(const struct sata_sg *sg, uint64_t off, void *dst, size_t len);
/*
 * The buffers' bytes [off, off+len) as an iovec list in out (at most max
 * entries, the list is cut where it ends); returns the entry count, 0 when
 * the range is empty or lies outside the buffers.
 */
unsigned sata_sg_slice(const struct sata_sg *sg, uint64_t off, uint64_t len, struct iovec *out, unsigned max);

/* What a command leaves in the shadow registers (Task File Data, D2H Register FIS). */
struct sata_result {
	uint8_t status;        /* ATA_STATUS_* */
	uint8_t error;         /* ATA_ERROR_*; for ATAPI: sense key << 4 | ABRT on CHECK CONDITION */
	uint8_t sector_count;  /* ATAPI: interrupt reason (CoD 0x01, IO 0x02) */
	uint64_t lba;          /* returned LBA where the command reports one (error position) */
	uint64_t transferred;  /* bytes moved to or from the guest buffers (PRDBC) */
};

/* A command as the host's Register FIS (H2D) gives it. */
struct ata_cmd {
	uint8_t command;
	uint8_t device;
	uint8_t control;
	uint16_t features;     /* 15:0 (48-bit commands use both bytes) */
	uint16_t count;        /* 15:0 */
	uint64_t lba;          /* 47:0 */
};

/* How the command moves data: the HBA posts a PIO Setup FIS for PIO data-in, and completes NCQ with a Set Device Bits FIS. */
enum ata_protocol {
	ATA_PROT_NODATA,
	ATA_PROT_PIO_IN,
	ATA_PROT_PIO_OUT,
	ATA_PROT_DMA,
	ATA_PROT_NCQ,
	ATA_PROT_PACKET,
};

/* Decodes the 20 bytes of a Register FIS - Host to Device (type 0x27). */
void sata_cmd_from_fis(const uint8_t fis[20], struct ata_cmd *c);
/* The protocol of an ATA command code (the ones hyve's devices implement; others are non-data). */
enum ata_protocol sata_protocol_of(uint8_t command);

/* IDENTIFY strings are space-padded and byte-swapped within each word. */
void sata_id_string(uint16_t *words, unsigned nwords, const char *s);

#endif
