/*
 * The variable store's flash: a byte-wide (x8) NOR flash array that speaks
 * the Intel/Sharp command set (CFI "command set 1") as far as OVMF's
 * QemuFlashFvbServicesRuntimeDxe uses it:
 *
 *   0xFF          read array: reads return the contents
 *   0x50          clear status (status = 0), back to read array
 *   0x70          read status: every byte read returns the status register
 *   0x10 or 0x40  program: the next write stores its byte at its address
 *   0x20, 0xD0    erase the 4 KiB block holding the second write's address
 *
 * Flash semantics: programming only clears bits (new = old AND data);
 * only an erase sets them, a whole block at a time. After a program or an
 * erase the flash stays in read-status mode (status bit 7, "ready", set)
 * until the guest writes 0xFF, as real parts and QEMU's pflash do. An
 * erase whose second write is not 0xD0, and any unknown command, set the
 * command-sequence error bits (0x30); an unknown command also returns to
 * read array. OVMF probes with 0x50 and then 0x70 and takes a status of
 * exactly 0x00 to mean flash (0x80 would make it fall back to RAM-only
 * variables), so the status reads 0x00 after a clear; 0x80 is the
 * power-on value.
 *
 * Write-through (fd >= 0): what programs and erases changed is written to
 * the file (one pwrite of the changed range) and flushed to stable storage
 * (fdatasync) when the guest can first observe that an operation
 * completed: when it returns the flash to read array (0xFF, 0x50; OVMF does
 * so at the end of every FVB write) or reads the status. Before that the
 * guest cannot tell a program from one still in progress, as with a power
 * cut in the middle of a write, which the firmware's fault-tolerant write
 * is built to survive. So once the firmware's SetVariable() has returned,
 * the variable is on disk; and a variable write costs one pwrite and one
 * fdatasync, not one per byte. With fd -1 the contents live in memory only
 * (the VM's lifetime).
 *
 * No locking: the owner (dev/bootrom.c) serialises every call.
 */
#ifndef HYVE_PFLASH_H
#define HYVE_PFLASH_H

#include <stdbool.h>
#include <stdint.h>

struct state_writer;
struct state_reader;

#define PFLASH_BLOCK 4096u
#define PFLASH_STATUS_READY 0x80
#define PFLASH_STATUS_ERASE_ERROR 0x20
#define PFLASH_STATUS_PROGRAM_ERROR 0x10

enum pflash_mode {
	PFLASH_READ_ARRAY,
	PFLASH_READ_STATUS,
	PFLASH_PROGRAM_SETUP, /* 0x10/0x40 seen: the next write is data */
	PFLASH_ERASE_SETUP,   /* 0x20 seen: the next write should be 0xD0 */
};

struct pflash {
	uint8_t *mem;          /* the array, size bytes */
	uint64_t size;         /* a multiple of PFLASH_BLOCK */
	int fd;                /* file written through, or -1 */
	enum pflash_mode mode;
	uint8_t status;
	uint64_t dirty_lo, dirty_hi; /* changed since the last flush (empty: equal) */
	bool io_error_logged;
	const char *name;      /* for messages: the file, or "variable store" */
};

void pflash_init(struct pflash *f, uint8_t *mem, uint64_t size, int fd, const char *name);
/* Power-on state: read array, status ready. The contents stay (flash is non-volatile). */
void pflash_reset(struct pflash *f);
/* One byte write at offset (< size, checked by the caller). */
void pflash_write(struct pflash *f, uint64_t offset, uint8_t value);
/* One byte read at offset (< size, checked by the caller). */
uint8_t pflash_read(struct pflash *f, uint64_t offset);
/* Whether reads return the array (so they may be served from memory without the device). */
static inline bool pflash_reads_array(const struct pflash *f)
{
	return f->mode == PFLASH_READ_ARRAY;
}
/* Whether the file lacks changes the array has. */
static inline bool pflash_dirty(const struct pflash *f)
{
	return f->dirty_lo != f->dirty_hi;
}
/* Writes the changes to the file and flushes it to stable storage; 0 or -1 after logging. */
int pflash_sync(struct pflash *f);
/*
 * Replaces the whole contents (a snapshot's), writing them through and
 * flushing them; 0, or -1 after logging.
 */
int pflash_replace(struct pflash *f, const uint8_t *contents);

/* The command state (mode, status); the contents are the owner's to save. */
void pflash_save(const struct pflash *f, struct state_writer *w);
/* 0, or -1 when a field is missing or out of range (the state is then power-on). */
int pflash_restore(struct pflash *f, struct state_reader *r);

#endif
