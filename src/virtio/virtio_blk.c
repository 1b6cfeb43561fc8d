/*
 * virtio block device ("virtio-blk", virtio 1.2 section 5.2) on a raw image
 * file or block device.
 *
 *   -s SLOT,virtio-blk,PATH[,ro][,nocache][,sectorsize=N][,serial=ID]
 *   pci.B.S.F.path, .ro, .nocache (bypass the host page cache with
 *   O_DIRECT, as bhyve's option), .sectorsize (logical block size,
 *   512..32768, power of 2), .serial (GET_ID; default derived from the path)
 *
 * One request queue, serviced on the device's I/O thread: reads and writes
 * go straight between guest buffers and the image with preadv/pwritev,
 * FLUSH is fdatasync, DISCARD punches holes, WRITE_ZEROES zeroes ranges
 * (fallocate, with a plain write as fallback). With nocache, reads and
 * writes whose buffers and offsets suit O_DIRECT use a second, O_DIRECT
 * descriptor (the kernel keeps it coherent with the page cache); others,
 * and images that refuse O_DIRECT, stay buffered. A read-only disk offers
 * VIRTIO_BLK_F_RO and fails every modifying request with IOERR. Requests
 * complete before the next one starts, so a quiesced device has nothing
 * in flight (snapshots and resets need no request state).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

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
	int fd;
	int dfd;                /* O_DIRECT descriptor (nocache), or -1 */
	unsigned dio_align;     /* memory/offset/length alignment tried for O_DIRECT */
	char path[4096];
	bool ro;
	bool nocache;
	bool is_blockdev;
	uint32_t sectorsize;
	uint64_t size;          /* bytes usable: a whole number of logical blocks */
	char serial[VIRTIO_BLK_ID_BYTES + 1];
	struct blk_config cfg;
	bool warned_io;         /* one host I/O error message per device */
	struct iovec iov[VIRTQ_MAX_IOV];
	struct iovec data[VIRTQ_MAX_IOV];
	struct iovec spare[VIRTQ_MAX_IOV]; /* the data list again, for a buffered retry */
	uint8_t *zeroes;        /* WRITE_ZEROES fallback buffer */
};

static struct device_model virtio_blk_model;

/* ---- I/O ---- */

static void io_error(struct virtio_blk *s, const char *what, int err)
{
	if (!s->warned_io)
		log_warn("%s: %s on %s: %s (reported to the guest as an I/O error)", s->vd.dev->id, what, s->path,
			 strerror(err));
	s->warned_io = true;
}

/* Whole transfer of iov (advanced in place) at off through fd; 0 or an errno. */
static int rw_fd(int fd, struct iovec *iov, unsigned n, off_t off, bool write)
{
	while (n) {
		ssize_t r = write ? pwritev(fd, iov, (int)n, off) : preadv(fd, iov, (int)n, off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)
			return write ? EIO : 0; /* past the end of a shrunk image: leave the rest as is */
		off += r;
		while (n && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++, n--;
		}
		if (n) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

static bool dio_suits(const struct virtio_blk *s, const struct iovec *iov, unsigned n, off_t off)
{
	uintptr_t a = (uintptr_t)off;

	for (unsigned i = 0; i < n; i++)
		a |= (uintptr_t)iov[i].iov_base | iov[i].iov_len;
	return n && !(a & (s->dio_align - 1));
}

/* Transfers s->data[0..n): O_DIRECT when asked for and possible, else buffered. */
static int rw_all(struct virtio_blk *s, unsigned n, off_t off, bool write)
{
	if (s->dfd >= 0 && dio_suits(s, s->data, n, off)) {
		memcpy(s->spare, s->data, n * sizeof(*s->data));
		int err = rw_fd(s->dfd, s->spare, n, off, write);
		if (err != EINVAL)
			return err;
		/* The image wants coarser alignment (or none at all): retry buffered, adapt. */
		if (s->dio_align < 4096) {
			s->dio_align = 4096;
		} else {
			log_warn("%s: %s refuses O_DIRECT transfers; nocache is off", s->vd.dev->id, s->path);
			close(s->dfd);
			s->dfd = -1;
		}
	}
	return rw_fd(s->fd, s->data, n, off, write);
}

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

static bool in_range(const struct virtio_blk *s, uint64_t sector, uint64_t bytes)
{
	uint64_t off;

	if (sector > UINT64_MAX / SECTOR)
		return false;
	off = sector * SECTOR;
	/* Logical-block alignment: the guest was told blk_size. */
	if (off % s->sectorsize || bytes % s->sectorsize)
		return false;
	return off <= s->size && bytes <= s->size - off;
}

static uint8_t do_rw(struct virtio_blk *s, const struct virtq_chain *ch, const struct req_header *h, bool write,
		     uint32_t *written)
{
	uint64_t len;
	unsigned n = data_iov(s, ch, !write, &len);
	int err;

	if (write && s->ro)
		return VIRTIO_BLK_S_IOERR;
	if (!in_range(s, h->sector, len))
		return VIRTIO_BLK_S_IOERR;
	err = rw_all(s, n, (off_t)(h->sector * SECTOR), write);
	if (err) {
		io_error(s, write ? "write" : "read", err);
		return VIRTIO_BLK_S_IOERR;
	}
	if (!write)
		*written = (uint32_t)len;
	return VIRTIO_BLK_S_OK;
}

static int zero_fill(struct virtio_blk *s, uint64_t off, uint64_t len)
{
	const size_t chunk = 1u << 20;

	if (!s->zeroes && !(s->zeroes = calloc(1, chunk)))
		return ENOMEM;
	while (len) {
		size_t l = len < chunk ? (size_t)len : chunk;
		struct iovec iov = { .iov_base = s->zeroes, .iov_len = l };
		int err = rw_fd(s->fd, &iov, 1, (off_t)off, true);
		if (err)
			return err;
		off += l, len -= l;
	}
	return 0;
}

static uint8_t do_ranges(struct virtio_blk *s, const struct virtq_chain *ch, bool zeroes)
{
	uint64_t len = (uint64_t)ch->out_len - sizeof(struct req_header);
	struct range_seg seg;

	if (s->ro)
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
			/* Discard is advisory: a file system that cannot punch holes keeps the data. */
			if (!s->is_blockdev)
				fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)bytes);
			continue;
		}
		int mode = (flags & 1) ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
		if (s->is_blockdev || fallocate(s->fd, mode, (off_t)off, (off_t)bytes) < 0) {
			int err = zero_fill(s, off, bytes);
			if (err) {
				io_error(s, "write zeroes", err);
				return VIRTIO_BLK_S_IOERR;
			}
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
		if (!s->ro && fdatasync(s->fd) < 0) {
			io_error(s, "flush", errno);
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

/* GET_ID default: stable for a path, different for different paths (FNV-1a of the absolute path). */
static void derive_serial(struct virtio_blk *s)
{
	char abs[4096];
	uint64_t h = 0xcbf29ce484222325ULL;
	const char *p = realpath(s->path, abs) ? abs : s->path;

	for (; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	snprintf(s->serial, sizeof(s->serial), "hyve-%015llx", (unsigned long long)(h >> 4));
}

static int open_image(struct virtio_blk *s, const char *id)
{
	struct stat st;

	s->fd = open(s->path, (s->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (s->fd < 0) {
		if (errno == EISDIR)
			log_error("%s: virtio-blk: disk image %s is a directory", id, s->path);
		else
			log_error("%s: virtio-blk: cannot open disk image %s: %s", id, s->path, strerror(errno));
		return -1;
	}
	if (fstat(s->fd, &st) < 0) {
		log_error("%s: virtio-blk: cannot stat disk image %s: %s", id, s->path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		log_error("%s: virtio-blk: disk image %s is a directory", id, s->path);
		return -1;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;
		if (ioctl(s->fd, BLKGETSIZE64, &bytes) < 0) {
			log_error("%s: virtio-blk: cannot size block device %s: %s", id, s->path, strerror(errno));
			return -1;
		}
		s->is_blockdev = true;
		s->size = bytes;
	} else if (S_ISREG(st.st_mode)) {
		s->size = (uint64_t)st.st_size;
	} else {
		log_error("%s: virtio-blk: disk image %s is not a regular file or block device", id, s->path);
		return -1;
	}
	/* Two VMs writing one image corrupt it; readers may share. */
	if (flock(s->fd, (s->ro ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		log_error("%s: virtio-blk: disk image %s is in use by another process", id, s->path);
		return -1;
	}
	s->size -= s->size % s->sectorsize;
	if (s->nocache) {
		s->dfd = open(s->path, (s->ro ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
		if (s->dfd < 0)
			log_warn("%s: virtio-blk: %s cannot be opened with O_DIRECT (%s); nocache is off", id, s->path,
				 strerror(errno));
	}
	return 0;
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

static int read_options(struct virtio_blk *s, struct device *dev)
{
	const char *path = dev_opt_str(dev, "path"), *serial = dev_opt_str(dev, "serial");

	if (!path) {
		log_error("%s: virtio-blk needs a disk image (-s SLOT,virtio-blk,PATH or %s.path=PATH)", dev->id,
			  dev->cfg_prefix);
		return -1;
	}
	if (strlen(path) >= sizeof(s->path)) {
		log_error("%s: virtio-blk: disk image path too long", dev->id);
		return -1;
	}
	strcpy(s->path, path);
	s->ro = dev_opt_bool(dev, "ro");
	s->nocache = dev_opt_bool(dev, "nocache");
	s->sectorsize = (uint32_t)dev_opt_u64(dev, "sectorsize");
	if (serial)
		strcpy(s->serial, serial);
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
	c->capacity = htole64(s->size / SECTOR);
	c->seg_max = htole32(BLK_SEG_MAX);
	c->blk_size = htole32(s->sectorsize);
	while ((4096u >> exp) > s->sectorsize)
		exp++;
	c->topology.physical_block_exp = (uint8_t)exp; /* physical blocks of at least 4 KiB */
	c->topology.min_io_size = htole16(1);
	c->num_queues = htole16(1);
	c->max_discard_sectors = htole32(BLK_MAX_RANGE_SECTORS);
	c->max_discard_seg = htole32(BLK_MAX_RANGE_SEGS);
	c->discard_sector_alignment = htole32(s->sectorsize / SECTOR);
	c->max_write_zeroes_sectors = htole32(BLK_MAX_RANGE_SECTORS);
	c->max_write_zeroes_seg = htole32(BLK_MAX_RANGE_SEGS);
	c->write_zeroes_may_unmap = 1;
}

static void blk_free(struct virtio_blk *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->dfd >= 0)
		close(s->dfd);
	free(s->zeroes);
	free(s);
}

static int blk_create(struct device *dev)
{
	struct virtio_blk *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	s->fd = s->dfd = -1;
	s->dio_align = 512;
	if (read_options(s, dev) < 0 || open_image(s, dev->id) < 0) {
		blk_free(s);
		return -1;
	}
	if (!s->serial[0])
		derive_serial(s);
	fill_config(s);
	if (virtio_dev_init(&s->vd, dev, s->ro ? &blk_ops_ro : &blk_ops_rw, s, &s->cfg, sizeof(s->cfg)) < 0) {
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
	/* Whatever the guest wrote reaches the disk even if it never flushed. */
	if (!s->ro)
		fdatasync(s->fd);
	blk_free(s);
}

static void blk_reset(struct device *dev)
{
	struct virtio_blk *s = dev->priv;

	virtio_dev_reset(&s->vd);
}

/*
 * Disks are not copied into snapshots: the image's identity is recorded so
 * that a restore can tell the user when the disk is no longer the one the
 * guest last saw.
 */
static void save_disk_identity(struct virtio_blk *s, struct state_writer *w)
{
	struct stat st;

	if (fstat(s->fd, &st) < 0)
		return;
	state_begin_map(w, "disk");
	state_put_str(w, "path", s->path);
	state_put_u64(w, "size", (uint64_t)st.st_size);
	state_put_u64(w, "mtime_ns", (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec);
	state_end_map(w);
}

static void check_disk_identity(struct virtio_blk *s, struct state_reader *r)
{
	char path[4096];
	uint64_t size, mtime;
	struct stat st;

	if (state_enter_map(r, "disk") < 0)
		return;
	if (state_get_str(r, "path", path, sizeof(path)) == 0 && state_get_u64(r, "size", &size) == 0 &&
	    state_get_u64(r, "mtime_ns", &mtime) == 0 && fstat(s->fd, &st) == 0 &&
	    ((uint64_t)st.st_size != size ||
	     (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec != mtime))
		log_warn("%s: disk image %s changed since the snapshot was taken (saved as %s); the guest's "
			 "cached view of it may be stale", s->vd.dev->id, s->path, path);
	state_leave_map(r);
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
	if (!s->ro)
		fdatasync(s->fd);
	state_put_u64(w, "capacity", s->size / SECTOR);
	state_put_u64(w, "sectorsize", s->sectorsize);
	save_disk_identity(s, w);
	return 0;
}

static int blk_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	(void)version;
	struct virtio_blk *s = dev->priv;
	uint64_t cap, ss;

	if (state_get_u64(r, "capacity", &cap) == 0 && cap != s->size / SECTOR)
		log_warn("%s: disk image %s has %llu sectors, the snapshot was taken with %llu", dev->id, s->path,
			 (unsigned long long)(s->size / SECTOR), (unsigned long long)cap);
	if (state_get_u64(r, "sectorsize", &ss) == 0 && ss != s->sectorsize) {
		log_error("%s: snapshot was taken with sectorsize=%llu, not %u", dev->id, (unsigned long long)ss,
			  s->sectorsize);
		return -1;
	}
	check_disk_identity(s, r);
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
