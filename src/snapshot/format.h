/*
 * The snapshot file's framing (docs/snapshot-format.md): header, records
 * with names, versions, flags and XXH3 checksums, page-aligned raw RAM.
 */
#ifndef HYVE_SNAPSHOT_FORMAT_H
#define HYVE_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC "HYVESNAP"
#define SNAP_MAJOR 1
#define SNAP_MINOR 1
#define SNAP_HEADER_SIZE 64
#define SNAP_PAGE_SIZE 4096
#define SNAP_REC_OPTIONAL 0x1
#define SNAP_REC_RAW 0x2
#define SNAP_MAX_CBOR_PAYLOAD (64u << 20) /* larger structured records are refused as corrupt */

struct snap_writer {
	int fd;
	uint64_t offset; /* where the next record goes */
	uint64_t ram_written; /* bytes of RAM payload written so far (non-zero pages) */
	char *err;
	size_t errlen;
};

/* The writer owns fd (an empty file). Errors are written to err. */
void snapw_init(struct snap_writer *w, int fd, char *err, size_t errlen);
int snapw_record(struct snap_writer *w, const char *name, uint32_t version, uint16_t flags, const void *payload,
		 uint64_t len);
/*
 * A RAW record holding guest RAM: zero pages become holes. With
 * anonymous_ram (mem is anonymous memory of this process), pages the
 * kernel reports never touched are taken as zero without being read.
 */
int snapw_ram(struct snap_writer *w, const char *name, const uint8_t *mem, uint64_t len, bool anonymous_ram);
/*
 * Opens /proc/self/pagemap for later snapw_ram() calls and keeps it: once
 * hyve has switched users it is no longer dumpable and could not open it
 * again, and a confined snapshot writer may not open existing files.
 */
void snapw_keep_pagemap(void);
/*
 * Live writing (a guest that runs while its RAM is written): each RAM
 * record is reserved first (its place and size fixed, the payload all
 * holes), its payload written once whole and then again page by page as
 * the guest dirties it, and sealed last: the checksum is computed from
 * what the file holds and the record header written in front of it.
 * Other records may go before or after (readers find records by name).
 */
struct snap_ram_record {
	char name[16];
	uint64_t header_off, payload_off, len;
};
/* Places a RAW record of len bytes (whole pages) at the writer's offset and moves past it. */
int snapw_ram_reserve(struct snap_writer *w, const char *name, uint64_t len, struct snap_ram_record *rec);
/* Writes mem's non-zero pages into the payload (anonymous_ram: as in snapw_ram()). */
int snapw_ram_fill(struct snap_writer *w, const struct snap_ram_record *rec, const uint8_t *mem, bool anonymous_ram);
/* Writes pages [first, first+count) of mem again: non-zero ones written, zero ones made holes. */
int snapw_ram_update(struct snap_writer *w, const struct snap_ram_record *rec, const uint8_t *mem, uint64_t first,
		     uint64_t count);
/*
 * Compares the payload with mem (holes read as zeros): 0 when equal, 1
 * with the number of differing pages and the first in *differ and *first,
 * -1 with err set when it cannot be read.
 */
int snapw_ram_compare(struct snap_writer *w, const struct snap_ram_record *rec, const uint8_t *mem, uint64_t *differ,
		      uint64_t *first);
/* Checksums the payload as the file holds it and writes the record's header. */
int snapw_ram_seal(struct snap_writer *w, const struct snap_ram_record *rec);
/* Writes the header (last, so a complete header means a complete file) and fsyncs. */
int snapw_finish(struct snap_writer *w);

struct snap_record {
	char name[256];
	uint16_t flags;
	uint32_t version;
	uint64_t offset;         /* of the record header */
	uint64_t payload_offset; /* absolute */
	uint64_t len;
	uint64_t checksum;
};

struct snap_reader {
	int fd;
	uint64_t size;
	uint16_t major, minor;
	uint32_t page_size;
	struct snap_record *records;
	unsigned count;
	char *err;
	size_t errlen;
	const volatile bool *cancel; /* snapr_verify() gives up when this becomes true */
};

/*
 * Opens path, validates the header and every record header (not payloads).
 * 0, or -1 with a one-line reason in err.
 */
int snapr_open(struct snap_reader *r, const char *path, char *err, size_t errlen);
void snapr_close(struct snap_reader *r);
const struct snap_record *snapr_find(const struct snap_reader *r, const char *name);
/* Reads a structured record's payload and checks its checksum; malloc'ed, NULL with err set. */
uint8_t *snapr_load(struct snap_reader *r, const struct snap_record *rec);
/*
 * Reads a record's whole payload (rec->len bytes, any size: as many reads
 * as it takes) into buf, without checking it. 0, or -1 with err set.
 */
int snapr_read_payload(struct snap_reader *r, const struct snap_record *rec, void *buf);
/* Streams a payload through XXH3 (holes are cheap); 0 when it matches. */
int snapr_verify(struct snap_reader *r, const struct snap_record *rec);

#endif
