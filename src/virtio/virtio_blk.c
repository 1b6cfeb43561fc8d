/*
 * virtio block device ("virtio-blk", virtio 1.2 section 5.2) on a raw image
 * file or block device.
 *
 *   -s SLOT,virtio-blk,PATH[,ro][,nocache][,sectorsize=N][,serial=ID]
 *   pci.B.S.F.path, .ro, .nocache (bypass the host page cache with
 *   O_DIRECT, as bhyve's option), .sectorsize (logical block size,
 *   512..32768, power of 2), .serial (GET_ID; default derived from the path)
 *
 * One request queue, serviced on the device's I/O thread, on the image
 * layer of src/block/blockdev.h: reads and writes go straight between
 * guest buffers and the image, FLUSH is fdatasync, DISCARD punches holes,
 * WRITE_ZEROES zeroes ranges. A read-only disk offers
 * VIRTIO_BLK_F_RO and fails every modifying request with IOERR. Requests
 * complete before the next one starts, so a quiesced device has nothing
 * in flight (snapshots and resets need no request state).
 */
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "block/blockdev.h"
#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "boot/bootorder.h"
#include "core/options.h"
#include "core/vm.h"
#include "snapshot/state.h"
#include "virtio/virtio_pci.h"

/* Feature bits. */
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values. */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define SECTOR 512u
#define BLK_QUEUE_SIZE 256
#define BLK_SEG_MAX (BLK_QUEUE_SIZE - 2) /* header and status take one descriptor each */
#define BLK_MAX_RANGE_SEGS 16
#define BLK_MAX_RANGE_SECTORS 0x400000u /* 2 GiB per DISCARD / WRITE_ZEROES segment */

/* Device configuration (little-endian, virtio 1.2 5.2.4). */
struct blk_config {
	uint64_t capacity; /* 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	struct {
		uint16_t cylinders;
		uint8_t heads, sectors;
	} geometry;
	uint32_t blk_size;
	struct {
		uint8_t physical_block_exp, alignment_offset;
		uint16_t min_io_size;
		uint32_t opt_io_size;
	} topology;
	uint8_t writeback, unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors, max_discard_seg, discard_sector_alignment;
	uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap, unused1[3];
} __attribute__((packed));

struct req_header {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct range_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags; /* bit 0: unmap (WRITE_ZEROES) */
};

struct virtio_blk {
	struct virtio_dev vd;
	struct blockdev disk;
	char serial[VIRTIO_BLK_ID_BYTES + 1];
	struct blk_config cfg;
	struct iovec iov[VIRTQ_MAX_IOV];
	struct iovec data[VIRTQ_MAX_IOV];
};

static struct device_model virtio_blk_model;

/* ---- I/O ---- */

/*
 * The data part of a request as its own iovec list: readable bytes after
 * the header (OUT), or writable bytes before the status byte (IN, GET_ID).
 */
static unsigned data_iov(struct virtio_blk *s, const struct virtq_chain *ch, bool writable, uint64_t *len)
{
	unsigned n = 0, first = writable ? ch->n_out : 0, end = writable ? ch->n_out + ch->n_in : ch->n_out;
	size_t skip = writable ? 0 : sizeof(struct req_header);
	uint64_t total = writable ? (uint64_t)ch->in_len - 1 : (uint64_t)ch->out_len - sizeof(struct req_header);
	uint64_t left = total;

	for (unsigned i = first; i < end && left; i++) {
		size_t l = ch->iov[i].iov_len;
		uint8_t *p = ch->iov[i].iov_base;
		if (skip >= l) {
			skip -= l;
			continue;
		}
		p += skip, l -= skip, skip = 0;
		if (l > left)
			l = (size_t)left;
		s->data[n++] = (struct iovec){ .iov_base = p, .iov_len = l };
		left -= l;
	}
	*len = total;
	return n;
}

/* Inside the disk and aligned to its logical blocks (the guest was told blk_size). */
static bool in_range(const struct virtio_blk *s, uint64_t sector, uint64_t bytes)
{
	return sector <= UINT64_MAX / SECTOR && blockdev_in_range(&s->disk, sector * SECTOR, bytes);
}

static uint8_t do_rw(struct virtio_blk *s, const struct virtq_chain *ch, const struct req_header *h, bool write,
		     uint32_t *written)
{
	uint64_t len;
	unsigned n = data_iov(s, ch, !write, &len);
	int err;

	if (write && s->disk.ro)
		return VIRTIO_BLK_S_IOERR;
	if (!in_range(s, h->sector, len))
		return VIRTIO_BLK_S_IOERR;
	err = blockdev_rw(&s->disk, s->data, n, h->sector * SECTOR, write);
	if (err) {
		blockdev_io_error(&s->disk, write ? "write" : "read", err);
		return VIRTIO_BLK_S_IOERR;
	}
	if (!write)
		*written = (uint32_t)len;
	return VIRTIO_BLK_S_OK;
}

static uint8_t do_ranges(struct virtio_blk *s, const struct virtq_chain *ch, bool zeroes)
{
	uint64_t len = (uint64_t)ch->out_len - sizeof(struct req_header);
	struct range_seg seg;

	if (s->disk.ro)
		return VIRTIO_BLK_S_IOERR;
	if (len == 0 || len % sizeof(seg) || len / sizeof(seg) > BLK_MAX_RANGE_SEGS)
		return VIRTIO_BLK_S_UNSUPP;
	for (uint64_t i = 0; i < len / sizeof(seg); i++) {
		virtq_chain_read(ch, sizeof(struct req_header) + i * sizeof(seg), &seg, sizeof(seg));
		uint64_t bytes = (uint64_t)le32toh(seg.num_sectors) * SECTOR, off = le64toh(seg.sector) * SECTOR;
		uint32_t flags = le32toh(seg.flags);
		if ((flags & ~1u) || (!zeroes && flags) || le32toh(seg.num_sectors) > BLK_MAX_RANGE_SECTORS)
			return VIRTIO_BLK_S_UNSUPP;
		if (!in_range(s, le64toh(seg.sector), bytes))
			return VIRTIO_BLK_S_IOERR;
		if (!bytes)
			continue;
		if (!zeroes) {
			blockdev_discard(&s->disk, off, bytes);
			continue;
		}
		int err = blockdev_write_zeroes(&s->disk, off, bytes, flags & 1);
		if (err) {
			blockdev_io_error(&s->disk, "write zeroes", err);
			return VIRTIO_BLK_S_IOERR;
		}
	}
	return VIRTIO_BLK_S_OK;
}

static int handle_request(struct virtio_dev *vd, unsigned q, struct virtq_chain *ch)
{
	struct virtio_blk *s = vd->opaque;
	struct req_header h;
	uint32_t written = 0;
	uint8_t status;
	int err;

	(void)q;
	/* Without a header and a status byte the request cannot even be refused. */
	if (ch->out_len < sizeof(h) || ch->in_len < 1) {
		virtio_dev_fail(vd, "malformed request at head %u (%u readable, %u writable bytes)", ch->head,
				ch->out_len, ch->in_len);
		return 0;
	}
	virtq_chain_read(ch, 0, &h, sizeof(h));
	h.type = le32toh(h.type);
	h.sector = le64toh(h.sector);
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
		status = do_rw(s, ch, &h, false, &written);
		break;
	case VIRTIO_BLK_T_OUT:
		status = do_rw(s, ch, &h, true, &written);
		break;
	case VIRTIO_BLK_T_FLUSH:
		status = VIRTIO_BLK_S_OK;
		if ((err = blockdev_flush(&s->disk)) != 0) {
			blockdev_io_error(&s->disk, "flush", err);
			status = VIRTIO_BLK_S_IOERR;
		}
		break;
	case VIRTIO_BLK_T_GET_ID: {
		char id[VIRTIO_BLK_ID_BYTES] = { 0 };
		memcpy(id, s->serial, strnlen(s->serial, sizeof(id)));
		written = (uint32_t)virtq_chain_write(ch, 0, id, ch->in_len - 1 < sizeof(id) ? ch->in_len - 1 : sizeof(id));
		status = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
		status = do_ranges(s, ch, false);
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = do_ranges(s, ch, true);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	/* The status is the last writable byte. */
	virtq_chain_write(ch, ch->in_len - 1, &status, 1);
	return (int)(written + 1);
}

static void blk_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_blk *s = vd->opaque;

	virtio_service_queue(vd, q, s->iov, VIRTQ_MAX_IOV, handle_request);
}

/* ---- configuration ---- */

static int blk_parse_slot_options(struct config *cfg, const char *prefix, const char *opts)
{
	return virtio_parse_slot_options(cfg, prefix, opts, "path");
}

static int power_of_two(const char *value, char *err, size_t errlen)
{
	uint64_t v;

	if (parse_u64(value, &v) == 0 && (v & (v - 1)))
		return set_error(err, errlen, "must be a power of 2 from 512 to 32768");
	return 0;
}

static int serial_length(const char *value, char *err, size_t errlen)
{
	if (strlen(value) > VIRTIO_BLK_ID_BYTES)
		return set_error(err, errlen, "the serial is longer than %d characters", VIRTIO_BLK_ID_BYTES);
	return 0;
}

static const struct option_decl blk_options[] = {
	{ .name = "path", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING,
	  .help = "the raw disk image (-s SLOT,virtio-blk,PATH)" },
	{ .name = "ro", .type = OPTION_BOOL, .def = "false", .help = "read-only disk" },
	{ .name = "nocache", .type = OPTION_BOOL, .def = "false", .help = "open the image with O_DIRECT" },
	{ .name = "sectorsize", .type = OPTION_UINT, .def = "512", .min = 512, .max = 32768, .validate = power_of_two,
	  .help = "logical sector size, a power of 2" },
	{ .name = "serial", .type = OPTION_STRING, .validate = serial_length,
	  .help = "the disk's serial (GET_ID), at most 20 characters (default: derived from the path)" },
	{ .name = "bootindex", .type = OPTION_UINT, .max = BOOTORDER_MAX_INDEX,
	  .help = "the firmware's boot order: lower first (fw_cfg bootorder; firmware boot only)" },
	{ 0 },
};

static int open_disk(struct virtio_blk *s, struct device *dev)
{
	const char *path = dev_opt_str(dev, "path"), *serial = dev_opt_str(dev, "serial");

	if (!path) {
		log_error("%s: virtio-blk needs a disk image (-s SLOT,virtio-blk,PATH or %s.path=PATH)", dev->id,
			  dev->cfg_prefix);
		return -1;
	}
	if (blockdev_open(&s->disk, dev->id, "virtio-blk", path, dev_opt_bool(dev, "ro"), dev_opt_bool(dev, "nocache"),
			  (uint32_t)dev_opt_u64(dev, "sectorsize")) < 0)
		return -1;
	if (serial)
		strcpy(s->serial, serial);
	else
		blockdev_default_serial(path, s->serial, sizeof(s->serial));
	return 0;
}

static const struct virtio_ops blk_ops_rw = {
	.name = "virtio-blk",
	.type = VIRTIO_ID_BLOCK,
	.pci_class = 0x01, /* mass storage */
	.pci_subclass = 0x80,
	.nqueues = 1,
	.queue_size = BLK_QUEUE_SIZE,
	.features = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH) |
		    (1ULL << VIRTIO_BLK_F_TOPOLOGY) | (1ULL << VIRTIO_BLK_F_DISCARD) |
		    (1ULL << VIRTIO_BLK_F_WRITE_ZEROES),
	.queue_notify = blk_queue_notify,
};

static const struct virtio_ops blk_ops_ro = {
	.name = "virtio-blk",
	.type = VIRTIO_ID_BLOCK,
	.pci_class = 0x01,
	.pci_subclass = 0x80,
	.nqueues = 1,
	.queue_size = BLK_QUEUE_SIZE,
	.features = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH) |
		    (1ULL << VIRTIO_BLK_F_TOPOLOGY) | (1ULL << VIRTIO_BLK_F_RO),
	.queue_notify = blk_queue_notify,
};

static void fill_config(struct virtio_blk *s)
{
	struct blk_config *c = &s->cfg;
	unsigned exp = 0;

	memset(c, 0, sizeof(*c));
	c->capacity = htole64(s->disk.size / SECTOR);
	c->seg_max = htole32(BLK_SEG_MAX);
	c->blk_size = htole32(s->disk.sectorsize);
	while ((4096u >> exp) > s->disk.sectorsize)
		exp++;
	c->topology.physical_block_exp = (uint8_t)exp; /* physical blocks of at least 4 KiB */
	c->topology.min_io_size = htole16(1);
	c->num_queues = htole16(1);
	c->max_discard_sectors = htole32(BLK_MAX_RANGE_SECTORS);
	c->max_discard_seg = htole32(BLK_MAX_RANGE_SEGS);
	c->discard_sector_alignment = htole32(s->disk.sectorsize / SECTOR);
	c->max_write_zeroes_sectors = htole32(BLK_MAX_RANGE_SECTORS);
	c->max_write_zeroes_seg = htole32(BLK_MAX_RANGE_SEGS);
	c->write_zeroes_may_unmap = 1;
}

static void blk_free(struct virtio_blk *s)
{
	blockdev_close(&s->disk);
	free(s);
}

static int blk_create(struct device *dev)
{
	struct virtio_blk *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	blockdev_init(&s->disk);
	if (open_disk(s, dev) < 0) {
		blk_free(s);
		return -1;
	}
	fill_config(s);
	if (virtio_dev_init(&s->vd, dev, s->disk.ro ? &blk_ops_ro : &blk_ops_rw, s, &s->cfg, sizeof(s->cfg)) < 0) {
		blk_free(s);
		return -1;
	}
	dev->priv = s;
	return 0;
}

static void blk_destroy(struct device *dev)
{
	struct virtio_blk *s = dev->priv;

	virtio_dev_destroy(&s->vd);
	blk_free(s); /* flushes what the guest wrote, even if it never did */
}

static void blk_reset(struct device *dev)
{
	struct virtio_blk *s = dev->priv;

	virtio_dev_reset(&s->vd);
}

static void blk_run_state(struct device *dev, bool running)
{
	struct virtio_blk *s = dev->priv;

	if (!running)
		virtio_freeze(&s->vd);
}

static int blk_save(struct device *dev, struct state_writer *w)
{
	struct virtio_blk *s = dev->priv;

	virtio_save(&s->vd, w);
	/* Requests complete before the I/O thread parks; make them durable too. */
	blockdev_flush(&s->disk);
	state_put_u64(w, "capacity", s->disk.size / SECTOR);
	state_put_u64(w, "sectorsize", s->disk.sectorsize);
	blockdev_save_identity(&s->disk, w);
	return 0;
}

static int blk_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	(void)version;
	struct virtio_blk *s = dev->priv;
	uint64_t cap, ss;

	if (state_get_u64(r, "capacity", &cap) == 0 && cap != s->disk.size / SECTOR)
		log_warn("%s: disk image %s has %llu sectors, the snapshot was taken with %llu", dev->id, s->disk.path,
			 (unsigned long long)(s->disk.size / SECTOR), (unsigned long long)cap);
	if (state_get_u64(r, "sectorsize", &ss) == 0 && ss != s->disk.sectorsize) {
		log_error("%s: snapshot was taken with sectorsize=%llu, not %u", dev->id, (unsigned long long)ss,
			  s->disk.sectorsize);
		return -1;
	}
	blockdev_check_identity(&s->disk, r);
	return virtio_restore(&s->vd, r);
}

static struct device_model virtio_blk_model = {
	.name = "virtio-blk",
	.state_version = 1,
	.on_pci = true,
	.options = blk_options,
	.parse_slot_options = blk_parse_slot_options,
	/* OpenFirmware names as OVMF's boot order parser expects them */
	.ofw_name = "scsi",
	.ofw_child = "disk@0,0",
	.create = blk_create,
	.reset = blk_reset,
	.save = blk_save,
	.run_state = blk_run_state,
	.restore = blk_restore,
	.destroy = blk_destroy,
};

DEVICE_MODEL(virtio_blk_model)
