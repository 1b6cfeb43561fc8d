#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/log.h"

#define REC_MAGIC "HREC"
#define REC_HEADER_SIZE 40
#define IO_CHUNK (1u << 20)


static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v & 0xffff);
	put16(p + 2, v >> 16);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v & 0xffffffff);
	put32(p + 4, v >> 32);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return get16(p) | (uint32_t)get16(p + 2) << 16;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static int write_all(struct snap_writer *w, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(w->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return set_error(w->err, w->errlen, "cannot write snapshot: %s", n < 0 ? strerror(errno) : "short write");
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

void snapw_init(struct snap_writer *w, int fd, char *err, size_t errlen)
{
	*w = (struct snap_writer){ .fd = fd, .offset = SNAP_HEADER_SIZE, .err = err, .errlen = errlen };
}

/* Offset of the payload of a record whose header starts at start. */
static uint64_t payload_offset(uint64_t start, const char *name, uint16_t flags)
{
	return align_up(start + REC_HEADER_SIZE + strlen(name), (flags & SNAP_REC_RAW) ? SNAP_PAGE_SIZE : 8);
}

/* Writes the header of a record at start for a payload of len bytes; returns the payload's absolute offset. */
static int write_header_at(struct snap_writer *w, uint64_t start, const char *name, uint32_t version, uint16_t flags,
			   uint64_t len, uint64_t checksum, uint64_t *payload_off)
{
	uint8_t hdr[REC_HEADER_SIZE + 256] = { 0 };
	size_t nlen = strlen(name);

	if (nlen == 0 || nlen > 255)
		return set_error(w->err, w->errlen, "invalid record name '%s'", name);
	*payload_off = payload_offset(start, name, flags);
	memcpy(hdr, REC_MAGIC, 4);
	put16(hdr + 4, flags);
	put16(hdr + 6, (uint16_t)nlen);
	put32(hdr + 8, version);
	put32(hdr + 12, (uint32_t)(*payload_off - start));
	put64(hdr + 16, len);
	put64(hdr + 24, checksum);
	memcpy(hdr + REC_HEADER_SIZE, name, nlen);
	{
		XXH3_state_t *st = XXH3_createState();
		if (!st)
			return set_error(w->err, w->errlen, "out of memory");
		XXH3_64bits_reset(st);
		XXH3_64bits_update(st, hdr, 32);
		XXH3_64bits_update(st, name, nlen);
		put64(hdr + 32, XXH3_64bits_digest(st));
		XXH3_freeState(st);
	}
	/* Zero padding up to the payload is written explicitly for 8-byte records; page padding stays a hole. */
	return write_all(w, hdr, REC_HEADER_SIZE + nlen, start);
}

static int write_record_header(struct snap_writer *w, const char *name, uint32_t version, uint16_t flags,
			       uint64_t len, uint64_t checksum, uint64_t *payload_off)
{
	return write_header_at(w, w->offset, name, version, flags, len, checksum, payload_off);
}

int snapw_record(struct snap_writer *w, const char *name, uint32_t version, uint16_t flags, const void *payload,
		 uint64_t len)
{
	static const uint8_t pad[8];
	uint64_t payload_off, end;

	if (write_record_header(w, name, version, flags, len, XXH3_64bits(payload, len), &payload_off) < 0)
		return -1;
	if (len && write_all(w, payload, len, payload_off) < 0)
		return -1;
	end = align_up(payload_off + len, 8);
	if (end > payload_off + len && write_all(w, pad, end - payload_off - len, payload_off + len) < 0)
		return -1;
	w->offset = end;
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	uint64_t acc = 0;

	for (size_t i = 0; i < SNAP_PAGE_SIZE / 8; i++)
		acc |= q[i];
	return acc == 0;
}

/*
 * RAM checksums cover the non-zero pages only, each prefixed by its page
 * index, so zero pages (holes) cost nothing to save or verify while a
 * page moved or zeroed is still detected.
 */
static void hash_page(XXH3_state_t *st, uint64_t index, const uint8_t *page)
{
	uint8_t le[8];

	put64(le, index);
	XXH3_64bits_update(st, le, sizeof(le));
	XXH3_64bits_update(st, page, SNAP_PAGE_SIZE);
}

/*
 * Writes non-zero runs of pages at their fixed offsets; zero runs are left
 * as holes. Returns 0 or -1.
 */
static int write_nonzero_runs(struct snap_writer *w, const uint8_t *mem, uint64_t start, uint64_t end,
			      uint64_t payload_off, XXH3_state_t *st)
{
	uint64_t run = UINT64_MAX;

	for (uint64_t p = start; p < end; p += SNAP_PAGE_SIZE) {
		bool zero = page_is_zero(mem + p);
		if (!zero && st)
			hash_page(st, p / SNAP_PAGE_SIZE, mem + p);
		if (!zero && run == UINT64_MAX)
			run = p;
		if ((zero || p + SNAP_PAGE_SIZE == end || p + SNAP_PAGE_SIZE - run >= IO_CHUNK) && run != UINT64_MAX) {
			uint64_t stop = zero ? p : p + SNAP_PAGE_SIZE;
			if (write_all(w, mem + run, stop - run, payload_off + run) < 0)
				return -1;
			w->ram_written += stop - run;
			run = UINT64_MAX;
		}
	}
	return 0;
}


/* Pages looked up per read of /proc/self/pagemap (8 bytes each). */
#define PAGEMAP_CHUNK_PAGES (1u << 16)
#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_SWAPPED (1ULL << 62)

/*
 * Anonymous guest RAM the guest never touched is neither present nor
 * swapped out (/proc/self/pagemap; mincore() would not do: it calls
 * swapped-out pages absent). Such pages are hashed as nothing and never
 * read, so untouched RAM costs a save nothing.
 */
static int kept_pagemap = -1;

void snapw_keep_pagemap(void)
{
	if (kept_pagemap < 0)
		kept_pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

static int write_touched_runs(struct snap_writer *w, const uint8_t *mem, uint64_t len, uint64_t payload_off,
			      XXH3_state_t *st)
{
	uint64_t *entries = malloc(PAGEMAP_CHUNK_PAGES * sizeof(*entries));
	int fd = kept_pagemap >= 0 ? kept_pagemap : open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC), rc = 0;

	if (!entries || fd < 0) {
		free(entries);
		if (fd >= 0 && fd != kept_pagemap)
			close(fd);
		return write_nonzero_runs(w, mem, 0, len, payload_off, st); /* unknown: read it all */
	}
	for (uint64_t chunk = 0; rc == 0 && chunk < len; chunk += (uint64_t)PAGEMAP_CHUNK_PAGES * SNAP_PAGE_SIZE) {
		uint64_t pages = (len - chunk) / SNAP_PAGE_SIZE;
		off_t at = (off_t)((uintptr_t)(mem + chunk) / SNAP_PAGE_SIZE * sizeof(*entries));
		if (pages > PAGEMAP_CHUNK_PAGES)
			pages = PAGEMAP_CHUNK_PAGES;
		if (pread(fd, entries, pages * sizeof(*entries), at) != (ssize_t)(pages * sizeof(*entries)))
			for (uint64_t p = 0; p < pages; p++)
				entries[p] = PAGEMAP_PRESENT; /* unknown: read them all */
		for (uint64_t p = 0; p < pages;) {
			uint64_t q = p;
			while (q < pages && (entries[q] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED)))
				q++;
			if (q > p && write_nonzero_runs(w, mem, chunk + p * SNAP_PAGE_SIZE, chunk + q * SNAP_PAGE_SIZE,
							payload_off, st) < 0) {
				rc = -1;
				break;
			}
			p = q + 1;
		}
	}
	free(entries);
	if (fd != kept_pagemap)
		close(fd);
	return rc;
}

int snapw_ram(struct snap_writer *w, const char *name, const uint8_t *mem, uint64_t len, bool anonymous_ram)
{
	XXH3_state_t *st;
	uint64_t payload_off, end, header_off = w->offset;
	int rc;

	if (len % SNAP_PAGE_SIZE)
		return set_error(w->err, w->errlen, "RAM region %s is not page-sized", name);
	st = XXH3_createState();
	if (!st)
		return set_error(w->err, w->errlen, "out of memory");
	XXH3_64bits_reset(st);
	/* The checksum is only known after the payload: write the payload first, then the header. */
	payload_off = align_up(header_off + REC_HEADER_SIZE + strlen(name), SNAP_PAGE_SIZE);
	rc = anonymous_ram ? write_touched_runs(w, mem, len, payload_off, st)
			     : write_nonzero_runs(w, mem, 0, len, payload_off, st);
	if (rc == 0) {
		uint64_t check_off;
		rc = write_record_header(w, name, 1, SNAP_REC_RAW, len, XXH3_64bits_digest(st), &check_off);
		if (rc == 0 && check_off != payload_off)
			rc = set_error(w->err, w->errlen, "internal error: RAM payload offset moved");
	}
	XXH3_freeState(st);
	end = align_up(payload_off + len, 8);
	/* Trailing zero pages are holes too: extend the file to cover them. */
	if (rc == 0 && ftruncate(w->fd, (off_t)end) < 0)
		rc = set_error(w->err, w->errlen, "cannot extend snapshot: %s", strerror(errno));
	w->offset = end;
	return rc;
}

/* ---- live writing ---- */

int snapw_ram_reserve(struct snap_writer *w, const char *name, uint64_t len, struct snap_ram_record *rec)
{
	if (len % SNAP_PAGE_SIZE)
		return set_error(w->err, w->errlen, "RAM region %s is not page-sized", name);
	if (strlen(name) == 0 || strlen(name) >= sizeof(rec->name))
		return set_error(w->err, w->errlen, "invalid record name '%s'", name);
	snprintf(rec->name, sizeof(rec->name), "%s", name);
	rec->header_off = w->offset;
	rec->payload_off = payload_offset(w->offset, name, SNAP_REC_RAW);
	rec->len = len;
	w->offset = align_up(rec->payload_off + len, 8);
	/* The payload is all holes until written: zero pages need never be. */
	if (ftruncate(w->fd, (off_t)w->offset) < 0)
		return set_error(w->err, w->errlen, "cannot extend snapshot: %s", strerror(errno));
	return 0;
}

int snapw_ram_fill(struct snap_writer *w, const struct snap_ram_record *rec, const uint8_t *mem, bool anonymous_ram)
{
	return anonymous_ram ? write_touched_runs(w, mem, rec->len, rec->payload_off, NULL)
			     : write_nonzero_runs(w, mem, 0, rec->len, rec->payload_off, NULL);
}

/* Makes [off, off+len) of the file read as zeros: a hole where the file system punches one, else zeros. */
static int zero_range(struct snap_writer *w, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[SNAP_PAGE_SIZE];

	if (fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return set_error(w->err, w->errlen, "cannot clear snapshot pages: %s", strerror(errno));
	for (uint64_t done = 0; done < len; done += sizeof(zeros))
		if (write_all(w, zeros, sizeof(zeros), off + done) < 0)
			return -1;
	return 0;
}

int snapw_ram_update(struct snap_writer *w, const struct snap_ram_record *rec, const uint8_t *mem, uint64_t first,
		     uint64_t count)
{
	uint64_t end = (first + count) * SNAP_PAGE_SIZE;

	if (first > rec->len / SNAP_PAGE_SIZE || count > rec->len / SNAP_PAGE_SIZE - first)
		return set_error(w->err, w->errlen, "internal error: pages %llu+%llu outside %s",
				 (unsigned long long)first, (unsigned long long)count, rec->name);
	/* Non-zero pages are written where they belong; pages that became zero become holes again. */
	for (uint64_t p = first * SNAP_PAGE_SIZE, q; p < end; p = q) {
		bool zero = page_is_zero(mem + p);
		for (q = p + SNAP_PAGE_SIZE; q < end && q - p < IO_CHUNK && page_is_zero(mem + q) == zero;)
			q += SNAP_PAGE_SIZE;
		if (zero ? zero_range(w, rec->payload_off + p, q - p) < 0
			 : write_all(w, mem + p, q - p, rec->payload_off + p) < 0)
			return -1;
		if (!zero)
			w->ram_written += q - p;
	}
	return 0;
}

static int hash_file_pages(int fd, uint64_t payload_off, uint64_t len, XXH3_state_t *st, uint8_t *buf,
			   const volatile bool *cancel);
static int read_exact(int fd, void *buf, size_t len, uint64_t off);

int snapw_ram_compare(struct snap_writer *w, const struct snap_ram_record *rec, const uint8_t *mem, uint64_t *differ,
		      uint64_t *first)
{
	uint8_t *buf = malloc(IO_CHUNK);

	*differ = 0;
	*first = UINT64_MAX;
	if (!buf)
		return set_error(w->err, w->errlen, "out of memory");
	for (uint64_t pos = 0; pos < rec->len; pos += IO_CHUNK) {
		size_t n = rec->len - pos < IO_CHUNK ? rec->len - pos : IO_CHUNK;
		if (read_exact(w->fd, buf, n, rec->payload_off + pos) < 0) {
			free(buf);
			return set_error(w->err, w->errlen, "cannot read back %s: %s", rec->name, strerror(errno));
		}
		for (size_t p = 0; p < n; p += SNAP_PAGE_SIZE) {
			if (memcmp(buf + p, mem + pos + p, SNAP_PAGE_SIZE) == 0)
				continue;
			if (*first == UINT64_MAX)
				*first = (pos + p) / SNAP_PAGE_SIZE;
			(*differ)++;
		}
	}
	free(buf);
	return *differ ? 1 : 0;
}

int snapw_ram_seal(struct snap_writer *w, const struct snap_ram_record *rec)
{
	XXH3_state_t *st = XXH3_createState();
	uint8_t *buf = malloc(IO_CHUNK);
	uint64_t payload_off;
	int rc;

	if (!st || !buf) {
		rc = set_error(w->err, w->errlen, "out of memory");
	} else {
		/* What the file holds, not the RAM, which the guest has changed since. */
		XXH3_64bits_reset(st);
		rc = hash_file_pages(w->fd, rec->payload_off, rec->len, st, buf, NULL);
		if (rc < 0)
			set_error(w->err, w->errlen, "cannot read back %s: %s", rec->name, strerror(errno));
		else
			rc = write_header_at(w, rec->header_off, rec->name, 1, SNAP_REC_RAW, rec->len,
					     XXH3_64bits_digest(st), &payload_off);
		if (rc == 0 && payload_off != rec->payload_off)
			rc = set_error(w->err, w->errlen, "internal error: RAM payload offset moved");
	}
	XXH3_freeState(st);
	free(buf);
	return rc;
}

int snapw_finish(struct snap_writer *w)
{
	uint8_t hdr[SNAP_HEADER_SIZE] = { 0 };

	memcpy(hdr, SNAP_MAGIC, 8);
	put16(hdr + 8, SNAP_MAJOR);
	put16(hdr + 10, SNAP_MINOR);
	hdr[12] = 1;
	put16(hdr + 14, SNAP_HEADER_SIZE);
	put32(hdr + 16, SNAP_PAGE_SIZE);
	put64(hdr + 24, w->offset);
	put64(hdr + 56, XXH3_64bits(hdr, 56));
	if (ftruncate(w->fd, (off_t)w->offset) < 0)
		return set_error(w->err, w->errlen, "cannot size snapshot: %s", strerror(errno));
	if (fdatasync(w->fd) < 0)
		return set_error(w->err, w->errlen, "cannot flush snapshot: %s", strerror(errno));
	if (write_all(w, hdr, sizeof(hdr), 0) < 0)
		return -1;
	if (fsync(w->fd) < 0)
		return set_error(w->err, w->errlen, "cannot flush snapshot: %s", strerror(errno));
	return 0;
}

/* ---- reader ---- */

static int read_exact(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = 0; /* end of file */
		if (n <= 0)
			return -1;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int snapr_read_payload(struct snap_reader *r, const struct snap_record *rec, void *buf)
{
	if (read_exact(r->fd, buf, rec->len, rec->payload_offset) < 0)
		return set_error(r->err, r->errlen, "record %s: cannot read its payload: %s", rec->name,
				 errno ? strerror(errno) : "file too short");
	return 0;
}

static int read_header(struct snap_reader *r)
{
	uint8_t hdr[SNAP_HEADER_SIZE];
	uint64_t declared;

	if (r->size < SNAP_HEADER_SIZE || read_exact(r->fd, hdr, sizeof(hdr), 0) < 0)
		return set_error(r->err, r->errlen, "truncated: no complete header");
	if (memcmp(hdr, SNAP_MAGIC, 8) != 0)
		return set_error(r->err, r->errlen, "not a hyve snapshot (bad magic)");
	if (get64(hdr + 56) != XXH3_64bits(hdr, 56))
		return set_error(r->err, r->errlen, "header checksum mismatch (corrupt or incompletely written file)");
	r->major = get16(hdr + 8);
	r->minor = get16(hdr + 10);
	r->page_size = get32(hdr + 16);
	declared = get64(hdr + 24);
	if (r->major > SNAP_MAJOR)
		return set_error(r->err, r->errlen, "snapshot format %u.%u is newer than this hyve reads (%u.x)", r->major,
			         r->minor, SNAP_MAJOR);
	if (r->major == 0)
		return set_error(r->err, r->errlen, "invalid format version 0.%u", r->minor);
	if (hdr[12] != 1)
		return set_error(r->err, r->errlen, "unsupported byte order %u", hdr[12]);
	if (get16(hdr + 14) != SNAP_HEADER_SIZE || r->page_size != SNAP_PAGE_SIZE)
		return set_error(r->err, r->errlen, "unsupported header size %u or page size %u", get16(hdr + 14),
			         r->page_size);
	if (declared != r->size)
		return set_error(r->err, r->errlen, "truncated or extended: file is %llu bytes, header says %llu",
			         (unsigned long long)r->size, (unsigned long long)declared);
	return 0;
}

static int read_record(struct snap_reader *r, uint64_t off, struct snap_record *rec, uint64_t *next)
{
	uint8_t hdr[REC_HEADER_SIZE + 256];
	unsigned nlen;
	uint32_t poff;
	XXH3_state_t *st;
	uint64_t sum;

	if (off + REC_HEADER_SIZE > r->size || read_exact(r->fd, hdr, REC_HEADER_SIZE, off) < 0)
		return set_error(r->err, r->errlen, "truncated record header at offset %llu", (unsigned long long)off);
	if (memcmp(hdr, REC_MAGIC, 4) != 0)
		return set_error(r->err, r->errlen, "corrupt record header at offset %llu (bad magic)", (unsigned long long)off);
	nlen = get16(hdr + 6);
	if (nlen == 0 || nlen > 255 || off + REC_HEADER_SIZE + nlen > r->size ||
	    read_exact(r->fd, hdr + REC_HEADER_SIZE, nlen, off + REC_HEADER_SIZE) < 0)
		return set_error(r->err, r->errlen, "corrupt record header at offset %llu (name)", (unsigned long long)off);
	st = XXH3_createState();
	if (!st)
		return set_error(r->err, r->errlen, "out of memory");
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, hdr, 32);
	XXH3_64bits_update(st, hdr + REC_HEADER_SIZE, nlen);
	sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	memcpy(rec->name, hdr + REC_HEADER_SIZE, nlen);
	rec->name[nlen] = '\0';
	for (unsigned i = 0; i < nlen; i++)
		if (rec->name[i] < 0x21 || rec->name[i] > 0x7e)
			rec->name[i] = '?';
	if (sum != get64(hdr + 32))
		return set_error(r->err, r->errlen, "record header checksum mismatch at offset %llu",
			         (unsigned long long)off);
	rec->flags = get16(hdr + 4);
	rec->version = get32(hdr + 8);
	poff = get32(hdr + 12);
	rec->len = get64(hdr + 16);
	rec->checksum = get64(hdr + 24);
	rec->offset = off;
	rec->payload_offset = off + poff;
	if (rec->flags & ~(SNAP_REC_OPTIONAL | SNAP_REC_RAW))
		return set_error(r->err, r->errlen, "record %s: unknown flags 0x%x", rec->name, rec->flags);
	if (poff < REC_HEADER_SIZE + nlen || rec->payload_offset > r->size || rec->len > r->size - rec->payload_offset)
		return set_error(r->err, r->errlen, "record %s: truncated (payload runs past the end of the file)", rec->name);
	*next = align_up(rec->payload_offset + rec->len, 8);
	return 0;
}

static int read_records(struct snap_reader *r)
{
	uint64_t off = SNAP_HEADER_SIZE;
	unsigned cap = 0;

	for (;;) {
		struct snap_record rec;
		uint64_t next = 0;
		if (read_record(r, off, &rec, &next) < 0)
			return -1;
		if (r->count == cap) {
			cap = cap ? cap * 2 : 32;
			struct snap_record *n = realloc(r->records, cap * sizeof(*n));
			if (!n)
				return set_error(r->err, r->errlen, "out of memory");
			r->records = n;
		}
		r->records[r->count++] = rec;
		if (strcmp(rec.name, "end") == 0)
			break;
		off = next;
	}
	if (r->count < 2 || strcmp(r->records[0].name, "manifest") != 0)
		return set_error(r->err, r->errlen, "the first record is not the manifest");
	return 0;
}

int snapr_open(struct snap_reader *r, const char *path, char *err, size_t errlen)
{
	struct stat st;

	memset(r, 0, sizeof(*r));
	r->err = err;
	r->errlen = errlen;
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0)
		return set_error(err, errlen, "cannot open %s: %s", path, strerror(errno));
	if (fstat(r->fd, &st) < 0 || !S_ISREG(st.st_mode))
		return set_error(err, errlen, "%s is not a regular file", path);
	r->size = (uint64_t)st.st_size;
	if (read_header(r) < 0 || read_records(r) < 0)
		return -1;
	return 0;
}

void snapr_close(struct snap_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	free(r->records);
	r->records = NULL;
	r->fd = -1;
}

const struct snap_record *snapr_find(const struct snap_reader *r, const char *name)
{
	for (unsigned i = 0; i < r->count; i++)
		if (strcmp(r->records[i].name, name) == 0)
			return &r->records[i];
	return NULL;
}

uint8_t *snapr_load(struct snap_reader *r, const struct snap_record *rec)
{
	uint8_t *buf;

	if (rec->len > SNAP_MAX_CBOR_PAYLOAD) {
		set_error(r->err, r->errlen, "record %s: implausible size %llu", rec->name, (unsigned long long)rec->len);
		return NULL;
	}
	buf = malloc(rec->len ? rec->len : 1);
	if (!buf || read_exact(r->fd, buf, rec->len, rec->payload_offset) < 0) {
		set_error(r->err, r->errlen, "record %s: cannot read payload", rec->name);
		free(buf);
		return NULL;
	}
	if (XXH3_64bits(buf, rec->len) != rec->checksum) {
		set_error(r->err, r->errlen, "record %s: checksum mismatch", rec->name);
		free(buf);
		return NULL;
	}
	return buf;
}

/*
 * Hashes the data extents of a RAW payload the way the writer did; holes
 * are skipped. 0, or -1 with errno set (0: cancelled or a short file).
 */
static int hash_file_pages(int fd, uint64_t payload_off, uint64_t len, XXH3_state_t *st, uint8_t *buf,
			   const volatile bool *cancel)
{
	uint64_t pos = 0;

	while (pos < len) {
		off_t data = lseek(fd, (off_t)(payload_off + pos), SEEK_DATA);
		size_t n;
		if (cancel && *cancel) {
			errno = 0;
			return -1;
		}
		if (data < 0)
			break; /* only holes remain */
		if ((uint64_t)data >= payload_off + len)
			break;
		pos = ((uint64_t)data - payload_off) & ~(uint64_t)(SNAP_PAGE_SIZE - 1);
		n = len - pos < IO_CHUNK ? len - pos : IO_CHUNK;
		if (read_exact(fd, buf, n, payload_off + pos) < 0)
			return -1;
		for (size_t p = 0; p < n; p += SNAP_PAGE_SIZE)
			if (!page_is_zero(buf + p))
				hash_page(st, (pos + p) / SNAP_PAGE_SIZE, buf + p);
		pos += n;
	}
	return 0;
}

static int hash_raw_payload(struct snap_reader *r, const struct snap_record *rec, XXH3_state_t *st, uint8_t *buf)
{
	if (rec->len % SNAP_PAGE_SIZE)
		return set_error(r->err, r->errlen, "record %s: RAM payload is not whole pages", rec->name);
	if (hash_file_pages(r->fd, rec->payload_offset, rec->len, st, buf, r->cancel) < 0) {
		if (r->cancel && *r->cancel)
			return -1;
		return set_error(r->err, r->errlen, "record %s: cannot read payload", rec->name);
	}
	return 0;
}

int snapr_verify(struct snap_reader *r, const struct snap_record *rec)
{
	XXH3_state_t *st = XXH3_createState();
	uint8_t *buf = malloc(IO_CHUNK);
	int rc = 0;

	if (!st || !buf) {
		rc = set_error(r->err, r->errlen, "out of memory");
	} else if (!(rec->flags & SNAP_REC_RAW)) {
		uint8_t *payload = snapr_load(r, rec);
		rc = payload ? 0 : -1;
		free(payload);
	} else {
		XXH3_64bits_reset(st);
		rc = hash_raw_payload(r, rec, st, buf);
		if (rc == 0 && XXH3_64bits_digest(st) != rec->checksum)
			rc = set_error(r->err, r->errlen, "record %s: checksum mismatch", rec->name);
	}
	XXH3_freeState(st);
	free(buf);
	return rc;
}
