#include "pflash.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "snapshot/state.h"

#define CMD_PROGRAM 0x10
#define CMD_PROGRAM_ALT 0x40
#define CMD_ERASE 0x20
#define CMD_CLEAR_STATUS 0x50
#define CMD_READ_STATUS 0x70
#define CMD_ERASE_CONFIRM 0xD0
#define CMD_READ_ARRAY 0xFF
#define STATUS_SEQUENCE_ERROR (PFLASH_STATUS_ERASE_ERROR | PFLASH_STATUS_PROGRAM_ERROR)

void pflash_init(struct pflash *f, uint8_t *mem, uint64_t size, int fd, const char *name)
{
	*f = (struct pflash){ .mem = mem, .size = size, .fd = fd, .name = name };
	pflash_reset(f);
}

void pflash_reset(struct pflash *f)
{
	f->mode = PFLASH_READ_ARRAY;
	f->status = PFLASH_STATUS_READY;
}

/* A failed write or flush is said once; the status register reports each. */
static void io_failed(struct pflash *f, const char *what, uint8_t status_bit)
{
	f->status |= status_bit;
	if (f->io_error_logged)
		return;
	f->io_error_logged = true;
	log_error("%s: cannot %s: %s; firmware variables may not persist", f->name, what, strerror(errno));
}

/* What the file lacks: one range covering everything changed since the last flush. */
static void mark_dirty(struct pflash *f, uint64_t off, uint64_t len)
{
	if (f->fd < 0)
		return;
	if (f->dirty_lo == f->dirty_hi) {
		f->dirty_lo = off, f->dirty_hi = off + len;
		return;
	}
	if (off < f->dirty_lo)
		f->dirty_lo = off;
	if (off + len > f->dirty_hi)
		f->dirty_hi = off + len;
}

/* Puts the dirty range into the file; 0 or -1 (said once, and in the status). */
static int write_dirty(struct pflash *f)
{
	while (f->dirty_lo < f->dirty_hi) {
		ssize_t n = pwrite(f->fd, f->mem + f->dirty_lo, (size_t)(f->dirty_hi - f->dirty_lo), (off_t)f->dirty_lo);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			io_failed(f, "write", PFLASH_STATUS_PROGRAM_ERROR);
			return -1;
		}
		f->dirty_lo += (uint64_t)n;
	}
	f->dirty_lo = f->dirty_hi = 0;
	return 0;
}

int pflash_sync(struct pflash *f)
{
	if (!pflash_dirty(f))
		return 0;
	if (write_dirty(f) < 0)
		return -1;
	if (fdatasync(f->fd) < 0) {
		io_failed(f, "flush", PFLASH_STATUS_PROGRAM_ERROR);
		return -1;
	}
	return 0;
}

static void program(struct pflash *f, uint64_t off, uint8_t value)
{
	f->mem[off] &= value; /* programming only clears bits */
	mark_dirty(f, off, 1);
	f->status |= PFLASH_STATUS_READY;
	f->mode = PFLASH_READ_STATUS;
}

static void erase(struct pflash *f, uint64_t off, uint8_t confirm)
{
	uint64_t block = off & ~(uint64_t)(PFLASH_BLOCK - 1);

	f->mode = PFLASH_READ_STATUS;
	if (confirm != CMD_ERASE_CONFIRM) {
		f->status |= STATUS_SEQUENCE_ERROR;
		return;
	}
	memset(f->mem + block, 0xff, PFLASH_BLOCK);
	mark_dirty(f, block, PFLASH_BLOCK);
	f->status |= PFLASH_STATUS_READY;
}

static void command(struct pflash *f, uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_ARRAY:
		f->mode = PFLASH_READ_ARRAY;
		pflash_sync(f);
		break;
	case CMD_CLEAR_STATUS:
		f->status = 0;
		f->mode = PFLASH_READ_ARRAY;
		pflash_sync(f);
		break;
	case CMD_READ_STATUS:
		f->mode = PFLASH_READ_STATUS;
		break;
	case CMD_PROGRAM:
	case CMD_PROGRAM_ALT:
		f->mode = PFLASH_PROGRAM_SETUP;
		break;
	case CMD_ERASE:
		f->mode = PFLASH_ERASE_SETUP;
		break;
	default:
		log_debug("%s: unsupported flash command 0x%02x", f->name, cmd);
		f->status |= STATUS_SEQUENCE_ERROR;
		f->mode = PFLASH_READ_ARRAY;
		break;
	}
}

void pflash_write(struct pflash *f, uint64_t offset, uint8_t value)
{
	switch (f->mode) {
	case PFLASH_PROGRAM_SETUP:
		program(f, offset, value);
		break;
	case PFLASH_ERASE_SETUP:
		erase(f, offset, value);
		break;
	default:
		command(f, value);
		break;
	}
}

uint8_t pflash_read(struct pflash *f, uint64_t offset)
{
	if (f->mode == PFLASH_READ_ARRAY)
		return f->mem[offset];
	/* The status says "done": what it reports done must be durable by now. */
	pflash_sync(f);
	return f->status;
}

int pflash_replace(struct pflash *f, const uint8_t *contents)
{
	if (memcmp(f->mem, contents, (size_t)f->size) == 0)
		return 0;
	memcpy(f->mem, contents, (size_t)f->size);
	mark_dirty(f, 0, f->size);
	return pflash_sync(f);
}

void pflash_save(const struct pflash *f, struct state_writer *w)
{
	state_put_u64(w, "mode", (uint64_t)f->mode);
	state_put_u64(w, "status", f->status);
}

int pflash_restore(struct pflash *f, struct state_reader *r)
{
	uint64_t mode, status;

	if (state_get_u64(r, "mode", &mode) < 0 || state_get_u64(r, "status", &status) < 0 ||
	    mode > PFLASH_ERASE_SETUP || status > 0xFF) {
		pflash_reset(f);
		return -1;
	}
	f->mode = (enum pflash_mode)mode;
	f->status = (uint8_t)status;
	return 0;
}
