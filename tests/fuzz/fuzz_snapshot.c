/*
 * libFuzzer harness for the snapshot reader: arbitrary bytes as a snapshot
 * file go through the same validation a restore does (header, record
 * headers, checksums, CBOR payloads, RAM verification), and every decoded
 * section is walked field by field.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/log.h"
#include "snapshot/format.h"
#include "snapshot/state.h"

/* Visits every field of the current map, entering nested maps. */
static void walk(struct state_reader *r, unsigned depth)
{
	char key[256], str[64];
	uint8_t bytes[64];
	uint64_t u;
	int64_t i;
	bool b;
	size_t len;

	for (size_t n = 0; n < state_map_size(r); n++) {
		if (state_key_at(r, n, key, sizeof(key)) < 0)
			continue;
		(void)(state_get_u64(r, key, &u) + state_get_i64(r, key, &i) + state_get_bool(r, key, &b) +
		       state_get_str(r, key, str, sizeof(str)) + state_get_bytes_var(r, key, bytes, sizeof(bytes), &len));
		if (depth < 20 && state_enter_map(r, key) == 0) {
			walk(r, depth + 1);
			state_leave_map(r);
		}
	}
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/*
 * Checksums would stop almost every mutation at the first record; on odd
 * inputs the harness recomputes them (file size, header, structured
 * payloads, record headers) so mutations reach the parsers behind them.
 */
static void fix_checksums(uint8_t *d, size_t size)
{
	uint64_t off = 64;

	if (size < 64)
		return;
	for (unsigned n = 0; n < 64 && off + 40 <= size; n++) {
		uint16_t flags, nlen;
		uint32_t poff;
		uint64_t len, sum;
		memcpy(&flags, d + off + 4, 2);
		memcpy(&nlen, d + off + 6, 2);
		memcpy(&poff, d + off + 12, 4);
		len = rd64(d + off + 16);
		if (off + 40 + nlen > size || off + poff > size || len > size - off - poff)
			break;
		if (!(flags & 2)) {
			sum = XXH3_64bits(d + off + poff, len);
			memcpy(d + off + 24, &sum, 8);
		}
		{
			uint8_t tmp[32 + 65535];
			memcpy(tmp, d + off, 32);
			memcpy(tmp + 32, d + off + 40, nlen);
			sum = XXH3_64bits(tmp, 32 + nlen);
			memcpy(d + off + 32, &sum, 8);
		}
		off = (off + poff + len + 7) & ~7ULL;
	}
	{
		uint64_t sz = size, sum;
		memcpy(d + 24, &sz, 8);
		sum = XXH3_64bits(d, 56);
		memcpy(d + 56, &sum, 8);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
	uint8_t *data = malloc(size ? size : 1);
	memcpy(data, input, size);
	if (size && (input[size - 1] & 1))
		fix_checksums(data, size);
	static int fd = -1;
	char path[64], err[512];
	struct snap_reader r;

	log_set_prefix("fuzz");
	if (fd < 0)
		fd = memfd_create("fuzz-snapshot", 0);
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
		free(data);
		return 0;
	}
	free(data);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (snapr_open(&r, path, err, sizeof(err)) == 0) {
		for (unsigned k = 0; k < r.count; k++) {
			const struct snap_record *rec = &r.records[k];
			if (rec->flags & SNAP_REC_RAW) {
				snapr_verify(&r, rec);
				continue;
			}
			uint8_t *buf = snapr_load(&r, rec);
			struct state_reader *sr = buf ? state_reader_new(buf, rec->len) : NULL;
			if (sr)
				walk(sr, 0);
			state_reader_free(sr);
			free(buf);
		}
	}
	snapr_close(&r);
	return 0;
}
