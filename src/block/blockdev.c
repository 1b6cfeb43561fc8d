/*
 * Raw disk images for the storage models (see blockdev.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/blockdev.h"
#include "core/log.h"
#include "snapshot/state.h"

void blockdev_init(struct blockdev *bd)
{
	memset(bd, 0, sizeof(*bd));
	bd->fd = bd->dfd = -1;
	bd->dio_align = 512;
}

/* Size and kind of the image on bd->fd, and the lock that keeps two writers apart. */
static int examine(struct blockdev *bd)
{
	struct stat st;

	if (fstat(bd->fd, &st) < 0) {
		log_error("%s: %s: cannot stat disk image %s: %s", bd->owner, bd->kind, bd->path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		log_error("%s: %s: disk image %s is a directory", bd->owner, bd->kind, bd->path);
		return -1;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;
		if (ioctl(bd->fd, BLKGETSIZE64, &bytes) < 0) {
			log_error("%s: %s: cannot size block device %s: %s", bd->owner, bd->kind, bd->path,
				  strerror(errno));
			return -1;
		}
		bd->is_blockdev = true;
		bd->size = bytes;
	} else if (S_ISREG(st.st_mode)) {
		bd->size = (uint64_t)st.st_size;
	} else {
		log_error("%s: %s: disk image %s is not a regular file or block device", bd->owner, bd->kind,
			  bd->path);
		return -1;
	}
	/* Two VMs writing one image corrupt it; readers may share. */
	if (flock(bd->fd, (bd->ro ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		log_error("%s: %s: disk image %s is in use by another process", bd->owner, bd->kind, bd->path);
		return -1;
	}
	bd->size -= bd->size % bd->sectorsize;
	return 0;
}

static int set_identity(struct blockdev *bd, const char *owner, const char *kind, const char *path, bool ro,
			uint32_t sectorsize)
{
	blockdev_init(bd);
	bd->owner = owner;
	bd->kind = kind;
	bd->ro = ro;
	bd->sectorsize = sectorsize;
	if (strlen(path) >= sizeof(bd->path)) {
		log_error("%s: %s: disk image path too long", owner, kind);
		return -1;
	}
	strcpy(bd->path, path);
	return 0;
}

int blockdev_open(struct blockdev *bd, const char *owner, const char *kind, const char *path, bool ro, bool nocache,
		  uint32_t sectorsize)
{
	if (set_identity(bd, owner, kind, path, ro, sectorsize) < 0)
		return -1;
	bd->fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (bd->fd < 0) {
		if (errno == EISDIR)
			log_error("%s: %s: disk image %s is a directory", owner, kind, path);
		else
			log_error("%s: %s: cannot open disk image %s: %s", owner, kind, path, strerror(errno));
		return -1;
	}
	if (examine(bd) < 0) {
		blockdev_close(bd);
		return -1;
	}
	if (nocache) {
		bd->dfd = open(path, (ro ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
		if (bd->dfd < 0)
			log_warn("%s: %s: %s cannot be opened with O_DIRECT (%s); nocache is off", owner, kind, path,
				 strerror(errno));
	}
	return 0;
}

int blockdev_open_fd(struct blockdev *bd, const char *owner, const char *kind, const char *path, int fd, bool ro,
		     uint32_t sectorsize)
{
	if (set_identity(bd, owner, kind, path, ro, sectorsize) < 0)
		return -1;
	bd->fd = fd;
	if (examine(bd) < 0) {
		bd->fd = -1; /* still the caller's */
		blockdev_close(bd);
		return -1;
	}
	return 0;
}

void blockdev_close(struct blockdev *bd)
{
	/* Whatever the guest wrote reaches the disk even if it never flushed. */
	if (bd->fd >= 0 && !bd->ro)
		fdatasync(bd->fd);
	if (bd->fd >= 0)
		close(bd->fd);
	if (bd->dfd >= 0)
		close(bd->dfd);
	bd->fd = bd->dfd = -1;
	free(bd->spare);
	free(bd->zeroes);
	bd->spare = NULL;
	bd->spare_cap = 0;
	bd->zeroes = NULL;
}

bool blockdev_in_range(const struct blockdev *bd, uint64_t off, uint64_t len)
{
	if (off % bd->sectorsize || len % bd->sectorsize)
		return false;
	return off <= bd->size && len <= bd->size - off;
}

void blockdev_io_error(struct blockdev *bd, const char *what, int err)
{
	if (!bd->warned_io)
		log_warn("%s: %s on %s: %s (reported to the guest as an I/O error)", bd->owner, what, bd->path,
			 strerror(err));
	bd->warned_io = true;
}

/* Whole transfer of iov (advanced in place) at off through fd; 0 or an errno. */
static int rw_fd(int fd, struct iovec *iov, unsigned n, off_t off, bool write)
{
	while (n) {
		ssize_t r = write ? pwritev(fd, iov, (int)(n > IOV_MAX ? IOV_MAX : n), off)
				  : preadv(fd, iov, (int)(n > IOV_MAX ? IOV_MAX : n), off);
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

static bool dio_suits(const struct blockdev *bd, const struct iovec *iov, unsigned n, uint64_t off)
{
	uintptr_t a = (uintptr_t)off;

	for (unsigned i = 0; i < n; i++)
		a |= (uintptr_t)iov[i].iov_base | iov[i].iov_len;
	return n && !(a & (bd->dio_align - 1));
}

/* Room for a copy of an n-entry list, kept for the next transfer. */
static bool spare_room(struct blockdev *bd, unsigned n)
{
	struct iovec *p;

	if (n <= bd->spare_cap)
		return true;
	if (!(p = realloc(bd->spare, n * sizeof(*p))))
		return false;
	bd->spare = p;
	bd->spare_cap = n;
	return true;
}

int blockdev_rw(struct blockdev *bd, struct iovec *iov, unsigned n, uint64_t off, bool write)
{
	if (write && bd->ro)
		return EROFS;
	if (bd->fd < 0)
		return ENOMEDIUM;
	if (bd->dfd >= 0 && dio_suits(bd, iov, n, off) && spare_room(bd, n)) {
		memcpy(bd->spare, iov, n * sizeof(*iov));
		int err = rw_fd(bd->dfd, bd->spare, n, (off_t)off, write);
		if (err != EINVAL)
			return err;
		/* The image wants coarser alignment (or none at all): retry buffered, adapt. */
		if (bd->dio_align < 4096) {
			bd->dio_align = 4096;
		} else {
			log_warn("%s: %s refuses O_DIRECT transfers; nocache is off", bd->owner, bd->path);
			close(bd->dfd);
			bd->dfd = -1;
		}
	}
	return rw_fd(bd->fd, iov, n, (off_t)off, write);
}

int blockdev_flush(struct blockdev *bd)
{
	if (bd->fd < 0 || bd->ro)
		return 0;
	return fdatasync(bd->fd) < 0 ? errno : 0;
}

void blockdev_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	/* Discard is advisory: a file system that cannot punch holes keeps the data. */
	if (bd->fd >= 0 && !bd->ro && !bd->is_blockdev && len)
		(void)fallocate(bd->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

static int zero_fill(struct blockdev *bd, uint64_t off, uint64_t len)
{
	const size_t chunk = 1u << 20;

	if (!bd->zeroes && !(bd->zeroes = calloc(1, chunk)))
		return ENOMEM;
	while (len) {
		size_t l = len < chunk ? (size_t)len : chunk;
		struct iovec iov = { .iov_base = bd->zeroes, .iov_len = l };
		int err = rw_fd(bd->fd, &iov, 1, (off_t)off, true);
		if (err)
			return err;
		off += l, len -= l;
	}
	return 0;
}

int blockdev_write_zeroes(struct blockdev *bd, uint64_t off, uint64_t len, bool unmap)
{
	int mode = unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;

	if (bd->ro)
		return EROFS;
	if (bd->fd < 0)
		return ENOMEDIUM;
	if (!len)
		return 0;
	if (!bd->is_blockdev && fallocate(bd->fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	return zero_fill(bd, off, len);
}

/* FNV-1a of the absolute path. */
void blockdev_default_serial(const char *path, char *out, unsigned outlen)
{
	char abs[4096];
	uint64_t h = 0xcbf29ce484222325ULL;
	const char *p = realpath(path, abs) ? abs : path;

	for (; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	snprintf(out, outlen, "hyve-%015llx", (unsigned long long)(h >> 4));
}

static uint64_t mtime_ns(const struct stat *st)
{
	return (uint64_t)st->st_mtim.tv_sec * 1000000000ULL + (uint64_t)st->st_mtim.tv_nsec;
}

void blockdev_save_identity(const struct blockdev *bd, struct state_writer *w)
{
	struct stat st;

	if (bd->fd < 0 || fstat(bd->fd, &st) < 0)
		return;
	state_begin_map(w, "disk");
	state_put_str(w, "path", bd->path);
	state_put_u64(w, "size", (uint64_t)st.st_size);
	state_put_u64(w, "mtime_ns", mtime_ns(&st));
	state_end_map(w);
}

void blockdev_check_identity(const struct blockdev *bd, struct state_reader *r)
{
	char path[4096];
	uint64_t size, mtime;
	struct stat st;

	if (state_enter_map(r, "disk") < 0)
		return;
	if (bd->fd >= 0 && state_get_str(r, "path", path, sizeof(path)) == 0 && state_get_u64(r, "size", &size) == 0 &&
	    state_get_u64(r, "mtime_ns", &mtime) == 0 && fstat(bd->fd, &st) == 0 &&
	    ((uint64_t)st.st_size != size || mtime_ns(&st) != mtime))
		log_warn("%s: disk image %s changed since the snapshot was taken (saved as %s); the guest's "
			 "cached view of it may be stale", bd->owner, bd->path, path);
	state_leave_map(r);
}
