/*
 * A raw disk image (regular file or host block device) as the storage
 * models see it: virtio-blk, and the AHCI disks and CD-ROMs.
 *
 * Reads and writes go straight between guest buffers and the image with
 * preadv/pwritev. With nocache, transfers whose buffers and offsets suit
 * O_DIRECT use a second, O_DIRECT descriptor (the kernel keeps it coherent
 * with the page cache); others, and images that refuse O_DIRECT, stay
 * buffered. Writable images are locked exclusively (flock), read-only ones
 * shared, so two VMs never write one image.
 *
 * Not thread-safe: each image belongs to one device, which serialises its
 * use (its I/O thread or its lock).
 */
#ifndef HYVE_BLOCKDEV_H
#define HYVE_BLOCKDEV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct state_writer;
struct state_reader;

#define BLOCKDEV_SERIAL_MAX 20

struct blockdev {
	const char *owner;   /* device id for messages ("pci.0.4.0") */
	const char *kind;    /* model name for messages ("virtio-blk") */
	char path[4096];
	int fd;
	int dfd;             /* O_DIRECT descriptor (nocache), or -1 */
	unsigned dio_align;  /* memory/offset/length alignment tried for O_DIRECT */
	bool ro;
	bool is_blockdev;
	uint32_t sectorsize; /* logical block size */
	uint64_t size;       /* usable bytes: a whole number of logical blocks */
	bool warned_io;      /* one host I/O error message per image */
	struct iovec *spare; /* the caller's list again, for a buffered retry */
	unsigned spare_cap;
	uint8_t *zeroes;     /* write-zeroes fallback buffer */
};

/*
 * Opens path for owner/kind (used in messages); size is cut to a multiple
 * of sectorsize. 0, or -1 after logging one line naming the problem.
 */
int blockdev_open(struct blockdev *bd, const char *owner, const char *kind, const char *path, bool ro, bool nocache,
		  uint32_t sectorsize);
/*
 * Takes over fd, already open on path (media changes: the control client
 * opened it, hyve may not); no O_DIRECT descriptor. On success bd owns fd,
 * on failure the caller still does. 0, or -1 after logging.
 */
int blockdev_open_fd(struct blockdev *bd, const char *owner, const char *kind, const char *path, int fd, bool ro,
		     uint32_t sectorsize);
/* Flushes a writable image and closes it; safe on a closed or never-opened one (fd -1). */
void blockdev_close(struct blockdev *bd);
/* Marks bd as holding nothing (fds -1), before blockdev_open() or for an empty drive. */
void blockdev_init(struct blockdev *bd);
static inline bool blockdev_is_open(const struct blockdev *bd) { return bd->fd >= 0; }

/* Is [off, off+len) inside the image and aligned to its logical blocks? */
bool blockdev_in_range(const struct blockdev *bd, uint64_t off, uint64_t len);
/*
 * Transfers the whole of iov[0..n) (advanced in place) at byte offset off.
 * 0 or an errno (EROFS on a read-only image); the caller checked the range.
 * A read past the end of a shrunk image leaves the rest as it was.
 */
int blockdev_rw(struct blockdev *bd, struct iovec *iov, unsigned n, uint64_t off, bool write);
/* Makes every completed write durable (fdatasync). 0 or an errno. */
int blockdev_flush(struct blockdev *bd);
/* Advisory: punches a hole where the image can have one (files); never fails. */
void blockdev_discard(struct blockdev *bd, uint64_t off, uint64_t len);
/* Zeroes the range, unmapping it when unmap and possible. 0 or an errno. */
int blockdev_write_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool unmap);
/* Logs the first host I/O error of the image (the guest is told through its device). */
void blockdev_io_error(struct blockdev *bd, const char *what, int err);

/* A serial stable for a path and different for different paths: "hyve-" and 15 hex digits. */
void blockdev_default_serial(const char *path, char *out, unsigned outlen);

/*
 * Images are not copied into snapshots: save records the image's identity
 * (path, size, mtime) in a nested map "disk", and check warns when the
 * image restored with is not the one the guest last saw.
 */
void blockdev_save_identity(const struct blockdev *bd, struct state_writer *w);
void blockdev_check_identity(const struct blockdev *bd, struct state_reader *r);

#endif
