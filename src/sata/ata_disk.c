/*
 * The SATA disk's ATA command set (see ata_disk.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/blockdev.h"
#include "core/log.h"
#include "sata/ata_disk.h"
#include "snapshot/state.h"

/* Command codes. */
#define CMD_DSM 0x06
#define CMD_READ_PIO 0x20
#define CMD_READ_PIO_EXT 0x24
#define CMD_READ_DMA_EXT 0x25
#define CMD_READ_MULTIPLE_EXT 0x29
#define CMD_READ_LOG_EXT 0x2F
#define CMD_WRITE_PIO 0x30
#define CMD_WRITE_PIO_EXT 0x34
#define CMD_WRITE_DMA_EXT 0x35
#define CMD_WRITE_MULTIPLE_EXT 0x39
#define CMD_READ_VERIFY 0x40
#define CMD_READ_VERIFY_EXT 0x42
#define CMD_READ_LOG_DMA_EXT 0x47
#define CMD_READ_FPDMA 0x60
#define CMD_WRITE_FPDMA 0x61
#define CMD_SEEK 0x70
#define CMD_EXEC_DIAG 0x90
#define CMD_INIT_PARAMS 0x91
#define CMD_SMART 0xB0
#define CMD_READ_MULTIPLE 0xC4
#define CMD_WRITE_MULTIPLE 0xC5
#define CMD_SET_MULTIPLE 0xC6
#define CMD_READ_DMA 0xC8
#define CMD_WRITE_DMA 0xCA
#define CMD_STANDBY_NOW 0xE0
#define CMD_IDLE_NOW 0xE1
#define CMD_STANDBY 0xE2
#define CMD_IDLE 0xE3
#define CMD_CHECK_POWER 0xE5
#define CMD_SLEEP 0xE6
#define CMD_FLUSH 0xE7
#define CMD_FLUSH_EXT 0xEA
#define CMD_IDENTIFY 0xEC
#define CMD_SET_FEATURES 0xEF

#define LOG_DIRECTORY 0x00
#define LOG_NCQ_ERROR 0x10
#define DSM_MAX_BLOCKS 8        /* 512-byte blocks of TRIM ranges per command (IDENTIFY word 105) */
#define DSM_RANGE_MAX 0xFFFFu   /* sectors per range entry */
#define MULTIPLE_MAX 16         /* sectors per DRQ block of READ/WRITE MULTIPLE */
#define NCQ_DEPTH 32

struct ata_disk {
	const char *owner;
	struct blockdev img;
	char serial[BLOCKDEV_SERIAL_MAX + 1];
	uint16_t rotation;
	bool direct;             /* every write reaches the disk before it completes */
	/* Settings the guest changes (SET FEATURES, SET MULTIPLE, SMART), back to defaults on reset. */
	bool write_cache;
	bool look_ahead;
	bool smart;
	uint8_t xfer_mode;       /* SET FEATURES 03h value; 0x45 (UDMA 5) at power-on */
	uint8_t multiple;        /* sectors per DRQ block, 0 when not set */
	/* The NCQ command error log (page 10h), valid after a queued command failed. */
	bool ncq_error;
	uint8_t ncq_tag, ncq_status, ncq_errreg;
	uint64_t ncq_lba;
	struct iovec *iov;       /* the data buffers as one request's list */
	unsigned iov_cap;
};

static void result_ok(struct sata_result *res)
{
	res->status = ATA_STATUS_DRDY | ATA_STATUS_DSC;
	res->error = 0;
}

static void result_error(struct sata_result *res, uint8_t error)
{
	res->status = ATA_STATUS_DRDY | ATA_STATUS_ERR;
	res->error = error;
}

static uint64_t nsectors(const struct ata_disk *d)
{
	return d->img.size / d->img.sectorsize;
}

static void put32w(uint16_t *id, unsigned w, uint32_t v)
{
	id[w] = (uint16_t)v;
	id[w + 1] = (uint16_t)(v >> 16);
}

/* Word 106 and 117-118: logical and physical sector sizes. */
static void identify_sector_size(const struct ata_disk *d, uint16_t *id)
{
	if (d->img.sectorsize == 512) {
		id[106] = 0x4000 | 0x2000 | 3; /* 8 logical sectors per 4 KiB physical one */
		return;
	}
	id[106] = 0x4000 | 0x1000;     /* logical sectors longer than 256 words */
	put32w(id, 117, d->img.sectorsize / 2);
}

static void identify_udma(const struct ata_disk *d, uint16_t *id)
{
	id[63] = 0x0007;                                   /* multiword DMA 0-2 supported */
	id[88] = 0x007F;                                   /* Ultra DMA 0-6 supported */
	if ((d->xfer_mode & 0xF8) == 0x40)
		id[88] |= (uint16_t)(0x100 << (d->xfer_mode & 7));
	else if ((d->xfer_mode & 0xF8) == 0x20)
		id[63] |= (uint16_t)(0x100 << (d->xfer_mode & 7));
}

void ata_disk_identify(const struct ata_disk *d, uint16_t id[256])
{
	uint64_t n = nsectors(d);
	uint8_t sum = 0;

	memset(id, 0, 512);
	id[0] = 0x0040;                                    /* fixed, not removable */
	id[1] = 16383, id[3] = 16, id[6] = 63;             /* the largest CHS geometry, as big disks report */
	sata_id_string(&id[10], 10, d->serial);
	sata_id_string(&id[23], 4, "1.0");
	sata_id_string(&id[27], 20, "HYVE SATA DISK");
	id[47] = 0x8000 | MULTIPLE_MAX;
	id[49] = 0x0B00;                                   /* LBA, DMA, IORDY */
	id[50] = 0x4000;
	id[53] = 0x0006;                                   /* words 64-70 and 88 valid */
	id[54] = 16383, id[55] = 16, id[56] = 63;
	put32w(id, 57, 16383u * 16 * 63);
	id[59] = (uint16_t)(d->multiple ? 0x100 | d->multiple : 0);
	put32w(id, 60, n > 0x0FFFFFFF ? 0x0FFFFFFF : (uint32_t)n);
	id[64] = 0x0003;                                   /* PIO 3 and 4 */
	id[65] = id[66] = id[67] = id[68] = 120;
	/* Reads after TRIM return zeroes where the image is a file (holes), not on a host block device. */
	id[69] = d->img.is_blockdev ? 0 : (1u << 14) | (1u << 5);
	id[75] = NCQ_DEPTH - 1;
	id[76] = 0x0106;                                   /* NCQ, SATA 1.5 and 3.0 Gb/s */
	id[80] = 0x03F0;                                   /* ATA-4 .. ACS-2 */
	id[82] = 0x0061;                                   /* SMART, write cache, look-ahead */
	id[83] = 0x4000 | 0x2000 | 0x1000 | 0x0400;        /* FLUSH CACHE (EXT), 48-bit addresses */
	id[84] = 0x4000;
	id[85] = (uint16_t)((d->smart ? 0x0001 : 0) | (d->write_cache ? 0x0020 : 0) | (d->look_ahead ? 0x0040 : 0));
	id[86] = 0x2000 | 0x1000 | 0x0400;
	id[87] = 0x4000;
	identify_udma(d, id);
	put32w(id, 100, (uint32_t)n);
	put32w(id, 102, (uint32_t)(n >> 32));
	id[105] = DSM_MAX_BLOCKS;
	identify_sector_size(d, id);
	id[169] = d->img.ro ? 0 : 0x0001;                  /* DATA SET MANAGEMENT: TRIM */
	id[217] = d->rotation;
	id[255] = 0x00A5;                                  /* integrity word: signature, then checksum */
	for (unsigned i = 0; i < 511; i++)
		sum = (uint8_t)(sum + ((const uint8_t *)id)[i]);
	id[255] |= (uint16_t)((uint8_t)-sum << 8);
}

/* A 512-byte structure (IDENTIFY, logs, SMART) into the guest buffers. */
static void reply_block(const void *data, const struct sata_sg *sg, struct sata_result *res)
{
	res->transferred = sata_sg_copy_to(sg, 0, data, 512);
	result_ok(res);
}

/* ---- reads and writes ---- */

/* Sector count of a read or write: 0 means 256 (28-bit) or 65536 (48-bit and queued). */
static uint32_t xfer_count(const struct ata_cmd *c, bool lba48)
{
	uint16_t v = c->command == CMD_READ_FPDMA || c->command == CMD_WRITE_FPDMA ? c->features : c->count;

	if (!lba48)
		v &= 0xFF;
	return v ? v : lba48 ? 65536u : 256u;
}

static bool is_lba48(uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_PIO:
	case CMD_WRITE_PIO:
	case CMD_READ_MULTIPLE:
	case CMD_WRITE_MULTIPLE:
	case CMD_READ_DMA:
	case CMD_WRITE_DMA:
	case CMD_READ_VERIFY:
		return false;
	default:
		return true;
	}
}

static bool iov_room(struct ata_disk *d, unsigned n)
{
	struct iovec *p;

	if (n <= d->iov_cap)
		return true;
	if (!(p = realloc(d->iov, n * sizeof(*p))))
		return false;
	d->iov = p;
	d->iov_cap = n;
	return true;
}

static void record_ncq_error(struct ata_disk *d, const struct ata_cmd *c, const struct sata_result *res)
{
	if (c->command != CMD_READ_FPDMA && c->command != CMD_WRITE_FPDMA)
		return;
	d->ncq_error = true;
	d->ncq_tag = (uint8_t)((c->count >> 3) & 0x1F);
	d->ncq_status = res->status;
	d->ncq_errreg = res->error;
	d->ncq_lba = c->lba;
}

static void read_write(struct ata_disk *d, const struct ata_cmd *c, const struct sata_sg *sg, bool write,
		       struct sata_result *res)
{
	bool lba48 = is_lba48(c->command);
	uint64_t lba = lba48 ? c->lba : c->lba & 0x0FFFFFFF, count = xfer_count(c, lba48);
	uint64_t bytes = count * d->img.sectorsize;
	int err;

	res->lba = lba;
	if (write && d->img.ro) {
		result_error(res, ATA_ERROR_ABRT);
	} else if (lba > nsectors(d) || count > nsectors(d) - lba) {
		result_error(res, ATA_ERROR_IDNF);
	} else if (sg->len < bytes || !iov_room(d, sg->n)) {
		result_error(res, ATA_ERROR_ABRT); /* the host's buffers cannot hold what it asked for */
	} else {
		unsigned n = sata_sg_slice(sg, 0, bytes, d->iov, d->iov_cap);
		err = blockdev_rw(&d->img, d->iov, n, lba * d->img.sectorsize, write);
		/* With its cache off the disk writes through, as the guest was told. */
		if (!err && write && (!d->write_cache || d->direct))
			err = blockdev_flush(&d->img);
		if (err) {
			blockdev_io_error(&d->img, write ? "write" : "read", err);
			result_error(res, write ? ATA_ERROR_ABRT : ATA_ERROR_UNC);
		} else {
			res->transferred = bytes;
			result_ok(res);
		}
	}
	if (res->status & ATA_STATUS_ERR)
		record_ncq_error(d, c, res);
}

static void verify(struct ata_disk *d, const struct ata_cmd *c, struct sata_result *res)
{
	bool lba48 = c->command == CMD_READ_VERIFY_EXT;
	uint64_t lba = lba48 ? c->lba : c->lba & 0x0FFFFFFF, count = xfer_count(c, lba48);

	res->lba = lba;
	if (lba > nsectors(d) || count > nsectors(d) - lba)
		result_error(res, ATA_ERROR_IDNF);
	else
		result_ok(res);
}

/* DATA SET MANAGEMENT with TRIM: 8-byte entries, LBA in bits 47:0 and a sector count in 63:48. */
static void trim(struct ata_disk *d, const struct ata_cmd *c, const struct sata_sg *sg, struct sata_result *res)
{
	uint8_t ranges[DSM_MAX_BLOCKS * 512];
	size_t len = (size_t)c->count * 512;

	if (!(c->features & 1) || d->img.ro || c->count == 0 || c->count > DSM_MAX_BLOCKS || sg->len < len) {
		result_error(res, ATA_ERROR_ABRT);
		return;
	}
	res->transferred = sata_sg_copy_from(sg, 0, ranges, len);
	for (size_t i = 0; i < len; i += 8) {
		uint64_t e = 0;
		for (unsigned b = 0; b < 8; b++)
			e |= (uint64_t)ranges[i + b] << (8 * b);
		uint64_t lba = e & 0xFFFFFFFFFFFFull, n = e >> 48;
		if (n == 0)
			continue;
		if (lba > nsectors(d) || n > nsectors(d) - lba) {
			res->lba = lba;
			result_error(res, ATA_ERROR_IDNF);
			return;
		}
		blockdev_discard(&d->img, lba * d->img.sectorsize, n * d->img.sectorsize);
	}
	result_ok(res);
}

static void flush(struct ata_disk *d, struct sata_result *res)
{
	int err = blockdev_flush(&d->img);

	if (err) {
		blockdev_io_error(&d->img, "flush", err);
		result_error(res, ATA_ERROR_ABRT);
		return;
	}
	result_ok(res);
}

/* ---- logs, SMART, features ---- */

static void checksum_block(uint8_t *b)
{
	uint8_t sum = 0;

	for (unsigned i = 0; i < 511; i++)
		sum = (uint8_t)(sum + b[i]);
	b[511] = (uint8_t)-sum;
}

static void read_log(struct ata_disk *d, const struct ata_cmd *c, const struct sata_sg *sg, struct sata_result *res)
{
	uint8_t page[512] = { 0 };
	uint8_t log = (uint8_t)c->lba;
	uint16_t pageno = (uint16_t)((c->lba >> 8) & 0xFF) | (uint16_t)(((c->lba >> 32) & 0xFF) << 8);

	if (c->count != 1 || pageno != 0) {
		result_error(res, ATA_ERROR_ABRT);
		return;
	}
	if (log == LOG_DIRECTORY) {
		page[0] = 0x01;                    /* General Purpose Logging version 1 */
		page[LOG_NCQ_ERROR * 2] = 1;       /* one page of NCQ command error log */
	} else if (log == LOG_NCQ_ERROR) {
		/* Reading the log clears the error (ACS-3 9.13); NQ says no queued command failed. */
		page[0] = d->ncq_error ? d->ncq_tag : 0x80;
		page[2] = d->ncq_status;
		page[3] = d->ncq_errreg;
		for (unsigned b = 0; b < 3; b++) {
			page[4 + b] = (uint8_t)(d->ncq_lba >> (8 * b));
			page[8 + b] = (uint8_t)(d->ncq_lba >> (24 + 8 * b));
		}
		checksum_block(page);
		d->ncq_error = false;
	} else {
		result_error(res, ATA_ERROR_ABRT);
		return;
	}
	reply_block(page, sg, res);
}

/* SMART: enabled and healthy, with no attributes to report and no self-tests. */
static void smart(struct ata_disk *d, const struct ata_cmd *c, const struct sata_sg *sg, struct sata_result *res)
{
	uint8_t data[512] = { 0 };
	uint8_t sub = (uint8_t)c->features;

	if (((c->lba >> 8) & 0xFFFF) != 0xC24F || (!d->smart && sub != 0xD8)) {
		result_error(res, ATA_ERROR_ABRT);
		return;
	}
	switch (sub) {
	case 0xD0: /* READ DATA */
	case 0xD1: /* READ THRESHOLDS */
		data[0] = 0x10;                    /* data structure revision */
		checksum_block(data);
		reply_block(data, sg, res);
		return;
	case 0xD8: /* ENABLE OPERATIONS */
	case 0xD9: /* DISABLE OPERATIONS */
		d->smart = sub == 0xD8;
		result_ok(res);
		return;
	case 0xD2: /* attribute autosave */
		result_ok(res);
		return;
	case 0xDA: /* RETURN STATUS: 4Fh/C2h means no threshold exceeded */
		res->lba = 0xC24F00;
		result_ok(res);
		return;
	default:
		result_error(res, ATA_ERROR_ABRT);
	}
}

static bool valid_xfer_mode(uint8_t mode)
{
	return (mode >= 0x08 && mode <= 0x0C) || mode <= 0x01 || (mode >= 0x20 && mode <= 0x22) ||
	       (mode >= 0x40 && mode <= 0x46);
}

static void set_features(struct ata_disk *d, const struct ata_cmd *c, struct sata_result *res)
{
	uint8_t sub = (uint8_t)c->features;

	switch (sub) {
	case 0x02: /* enable write cache */
	case 0x82: /* disable write cache: whatever the cache holds becomes durable now */
		if (sub == 0x82 && blockdev_flush(&d->img) != 0) {
			result_error(res, ATA_ERROR_ABRT);
			return;
		}
		d->write_cache = sub == 0x02;
		break;
	case 0x03:
		if (!valid_xfer_mode((uint8_t)c->count)) {
			result_error(res, ATA_ERROR_ABRT);
			return;
		}
		d->xfer_mode = (uint8_t)c->count;
		break;
	case 0xAA:
	case 0x55:
		d->look_ahead = sub == 0xAA;
		break;
	case 0x10: /* SATA features: accepted, none changes what the guest sees here */
	case 0x90:
	case 0x66: /* keep / revert to power-on defaults */
	case 0xCC:
		break;
	default:
		result_error(res, ATA_ERROR_ABRT);
		return;
	}
	result_ok(res);
}

/* ---- dispatch ---- */

static void rw_command(struct ata_disk *d, const struct ata_cmd *c, const struct sata_sg *sg, struct sata_result *res)
{
	switch (c->command) {
	case CMD_READ_PIO:
	case CMD_READ_PIO_EXT:
	case CMD_READ_MULTIPLE:
	case CMD_READ_MULTIPLE_EXT:
	case CMD_READ_DMA:
	case CMD_READ_DMA_EXT:
	case CMD_READ_FPDMA:
		read_write(d, c, sg, false, res);
		return;
	default:
		read_write(d, c, sg, true, res);
		return;
	}
}

void ata_disk_command(struct ata_disk *d, const struct ata_cmd *c, const struct sata_sg *sg, struct sata_result *res)
{
	memset(res, 0, sizeof(*res));
	switch (c->command) {
	case CMD_READ_PIO: case CMD_READ_PIO_EXT: case CMD_READ_MULTIPLE: case CMD_READ_MULTIPLE_EXT:
	case CMD_READ_DMA: case CMD_READ_DMA_EXT: case CMD_READ_FPDMA:
	case CMD_WRITE_PIO: case CMD_WRITE_PIO_EXT: case CMD_WRITE_MULTIPLE: case CMD_WRITE_MULTIPLE_EXT:
	case CMD_WRITE_DMA: case CMD_WRITE_DMA_EXT: case CMD_WRITE_FPDMA:
		if ((c->command == CMD_READ_MULTIPLE || c->command == CMD_WRITE_MULTIPLE ||
		     c->command == CMD_READ_MULTIPLE_EXT || c->command == CMD_WRITE_MULTIPLE_EXT) && !d->multiple)
			result_error(res, ATA_ERROR_ABRT);
		else
			rw_command(d, c, sg, res);
		return;
	case CMD_READ_VERIFY:
	case CMD_READ_VERIFY_EXT:
		verify(d, c, res);
		return;
	case CMD_DSM:
		trim(d, c, sg, res);
		return;
	case CMD_FLUSH:
	case CMD_FLUSH_EXT:
		flush(d, res);
		return;
	case CMD_IDENTIFY: {
		uint16_t id[256];
		ata_disk_identify(d, id);
		reply_block(id, sg, res);
		return;
	}
	case CMD_READ_LOG_EXT:
	case CMD_READ_LOG_DMA_EXT:
		read_log(d, c, sg, res);
		return;
	case CMD_SMART:
		smart(d, c, sg, res);
		return;
	case CMD_SET_FEATURES:
		set_features(d, c, res);
		return;
	case CMD_SET_MULTIPLE: {
		uint8_t n = (uint8_t)c->count;
		if (n > MULTIPLE_MAX || (n & (n - 1))) {
			result_error(res, ATA_ERROR_ABRT);
			return;
		}
		d->multiple = n;
		result_ok(res);
		return;
	}
	case CMD_CHECK_POWER:
		res->sector_count = 0xFF; /* active or idle */
		result_ok(res);
		return;
	case CMD_EXEC_DIAG:
		res->error = 0x01;        /* device 0 passed */
		res->status = ATA_STATUS_DRDY | ATA_STATUS_DSC;
		res->sector_count = 1;
		res->lba = 1;
		return;
	case CMD_STANDBY_NOW: case CMD_IDLE_NOW: case CMD_STANDBY: case CMD_IDLE: case CMD_SLEEP:
	case CMD_INIT_PARAMS: case CMD_SEEK:
		result_ok(res);
		return;
	default:
		/* IDENTIFY PACKET DEVICE, PACKET, DEVICE RESET and anything unknown: not an ATAPI device. */
		result_error(res, ATA_ERROR_ABRT);
		return;
	}
}

/* ---- life cycle ---- */

void ata_disk_reset(struct ata_disk *d)
{
	d->write_cache = true;
	d->look_ahead = true;
	d->smart = true;
	d->xfer_mode = 0x45;
	d->multiple = 0;
	d->ncq_error = false;
}

struct ata_disk *ata_disk_new(const char *owner, const struct ata_disk_config *cfg)
{
	struct ata_disk *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->owner = owner;
	if (blockdev_open(&d->img, owner, "ahci-hd", cfg->path, cfg->ro, cfg->nocache, cfg->sectorsize) < 0) {
		free(d);
		return NULL;
	}
	if (cfg->serial)
		snprintf(d->serial, sizeof(d->serial), "%s", cfg->serial);
	else
		blockdev_default_serial(cfg->path, d->serial, sizeof(d->serial));
	d->rotation = cfg->rotation;
	d->direct = cfg->direct;
	ata_disk_reset(d);
	return d;
}

void ata_disk_free(struct ata_disk *d)
{
	if (!d)
		return;
	blockdev_close(&d->img);
	free(d->iov);
	free(d);
}

int ata_disk_flush(struct ata_disk *d)
{
	return blockdev_flush(&d->img);
}

void ata_disk_save(const struct ata_disk *d, struct state_writer *w)
{
	state_put_u64(w, "sectors", nsectors(d));
	state_put_u64(w, "sectorsize", d->img.sectorsize);
	state_put_bool(w, "write_cache", d->write_cache);
	state_put_bool(w, "look_ahead", d->look_ahead);
	state_put_bool(w, "smart", d->smart);
	state_put_u64(w, "xfer_mode", d->xfer_mode);
	state_put_u64(w, "multiple", d->multiple);
	state_put_bool(w, "ncq_error", d->ncq_error);
	state_put_u64(w, "ncq_tag", d->ncq_tag);
	state_put_u64(w, "ncq_status", d->ncq_status);
	state_put_u64(w, "ncq_errreg", d->ncq_errreg);
	state_put_u64(w, "ncq_lba", d->ncq_lba);
	blockdev_save_identity(&d->img, w);
}

int ata_disk_restore(struct ata_disk *d, struct state_reader *r)
{
	uint64_t sectors, ss, lba = 0;
	uint8_t mode, multiple, tag = 0, st = 0, er = 0;

	if (state_get_u64(r, "sectorsize", &ss) < 0 || state_get_u8(r, "xfer_mode", 0xFF, &mode) < 0 ||
	    state_get_u8(r, "multiple", MULTIPLE_MAX, &multiple) < 0 || (multiple & (multiple - 1)) ||
	    state_get_bool(r, "write_cache", &d->write_cache) < 0) {
		log_error("%s: snapshot has an invalid SATA disk state", d->owner);
		return -1;
	}
	if (ss != d->img.sectorsize) {
		log_error("%s: snapshot was taken with sectorsize=%llu, not %u", d->owner, (unsigned long long)ss,
			  d->img.sectorsize);
		return -1;
	}
	if (state_get_u64(r, "sectors", &sectors) == 0 && sectors != nsectors(d))
		log_warn("%s: disk image %s has %llu sectors, the snapshot was taken with %llu", d->owner, d->img.path,
			 (unsigned long long)nsectors(d), (unsigned long long)sectors);
	state_get_bool(r, "look_ahead", &d->look_ahead);
	state_get_bool(r, "smart", &d->smart);
	state_get_bool(r, "ncq_error", &d->ncq_error);
	state_get_u8(r, "ncq_tag", NCQ_DEPTH - 1, &tag);
	state_get_u8(r, "ncq_status", 0xFF, &st);
	state_get_u8(r, "ncq_errreg", 0xFF, &er);
	state_get_u64(r, "ncq_lba", &lba);
	d->xfer_mode = valid_xfer_mode(mode) ? mode : 0x45;
	d->multiple = multiple;
	d->ncq_tag = tag, d->ncq_status = st, d->ncq_errreg = er;
	d->ncq_lba = lba & 0xFFFFFFFFFFFFull;
	blockdev_check_identity(&d->img, r);
	return 0;
}
