/*
 * The snapshot framing (src/snapshot/format.c): records written with the
 * writer come back through the reader, and payloads larger than one read
 * system call moves (Linux: 2 GiB - 4 KiB) are read whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"
#include "snapshot/format.h"
#include "snapshot/snapshot.h"

struct fx {
	char path[64];
	char err[256];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	snprintf(f->path, sizeof(f->path), "/tmp/hyve-format-XXXXXX");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	unlink(f->path);
	free(f);
	return 0;
}

/* Writes one RAW record "ram.0" of len bytes from mem; the file's path is in f->path. */
static void write_ram_snapshot(struct fx *f, const uint8_t *mem, uint64_t len)
{
	struct snap_writer w;
	int fd = mkstemp(f->path);

	assert_true(fd >= 0);
	snapw_init(&w, fd, f->err, sizeof(f->err));
	assert_int_equal(snapw_record(&w, "manifest", 1, 0, "\xa0", 1), 0); /* an empty CBOR map */
	assert_int_equal(snapw_ram(&w, "ram.0", mem, len, true), 0);
	assert_int_equal(snapw_record(&w, "end", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_finish(&w), 0);
}

static void test_small_payload_round_trip(void **state)
{
	struct fx *f = *state;
	uint64_t len = 64 * SNAP_PAGE_SIZE;
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *back;
	struct snap_reader r;
	const struct snap_record *rec;

	assert_true(mem != MAP_FAILED);
	for (uint64_t i = 0; i < len; i += 3 * SNAP_PAGE_SIZE + 17)
		mem[i] = (uint8_t)(i >> 12 | 1);
	write_ram_snapshot(f, mem, len);
	if (snapr_open(&r, f->path, f->err, sizeof(f->err)) < 0)
		fail_msg("%s", f->err);
	rec = snapr_find(&r, "ram.0");
	assert_non_null(rec);
	assert_int_equal(rec->len, len);
	assert_int_equal(snapr_verify(&r, rec), 0);
	back = malloc(len);
	assert_int_equal(snapr_read_payload(&r, rec, back), 0);
	assert_memory_equal(back, mem, len);
	free(back);
	snapr_close(&r);
	munmap(mem, len);
}

/* --eager restores of guests with 2 GiB of RAM or more once failed here (one short pread()). */
static void test_payload_beyond_one_read(void **state)
{
	struct fx *f = *state;
	uint64_t len = (2ULL << 30) + 2 * SNAP_PAGE_SIZE;
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *back = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct snap_reader r;
	const struct snap_record *rec;

	assert_true(mem != MAP_FAILED && back != MAP_FAILED);
	madvise(back, len, MADV_HUGEPAGE); /* reading 2 GiB into 4 KiB pages costs half a million faults */
	/* Data at both ends; the rest stays untouched (holes in the file, zero pages here). */
	memset(mem, 0x5A, SNAP_PAGE_SIZE);
	memset(mem + len - SNAP_PAGE_SIZE, 0xA5, SNAP_PAGE_SIZE);
	write_ram_snapshot(f, mem, len);
	if (snapr_open(&r, f->path, f->err, sizeof(f->err)) < 0)
		fail_msg("%s", f->err);
	rec = snapr_find(&r, "ram.0");
	assert_non_null(rec);
	assert_int_equal(snapr_read_payload(&r, rec, back), 0);
	assert_int_equal(back[0], 0x5A);
	assert_int_equal(back[SNAP_PAGE_SIZE], 0);
	assert_int_equal(back[len - SNAP_PAGE_SIZE - 1], 0);
	assert_int_equal(back[len - 1], 0xA5);
	snapr_close(&r);
	munmap(mem, len);
	munmap(back, len);
}

/* Writes a snapshot whose manifest is the given bytes (valid checksums: only the content is hostile). */
static void write_manifest_snapshot(struct fx *f, const uint8_t *manifest, size_t len)
{
	struct snap_writer w;
	int fd = mkstemp(f->path);

	assert_true(fd >= 0);
	snapw_init(&w, fd, f->err, sizeof(f->err));
	assert_int_equal(snapw_record(&w, "manifest", 1, 0, manifest, len), 0);
	assert_int_equal(snapw_record(&w, "end", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_finish(&w), 0);
}

/* Peak RSS growth in KiB while a child runs snapshot_info() on f->path; the JSON goes to /dev/null. */
static long info_peak_rss_growth(struct fx *f)
{
	int pipefd[2];
	long growth = -1;
	pid_t pid;

	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rusage before, after;
		FILE *out = fopen("/dev/null", "w");
		getrusage(RUSAGE_SELF, &before);
		log_set_level(LOG_ERROR);
		snapshot_info(f->path, out);
		getrusage(RUSAGE_SELF, &after);
		growth = after.ru_maxrss - before.ru_maxrss;
		_exit(write(pipefd[1], &growth, sizeof(growth)) == sizeof(growth) ? 0 : 1);
	}
	close(pipefd[1]);
	assert_int_equal(read(pipefd[0], &growth, sizeof(growth)), sizeof(growth));
	close(pipefd[0]);
	waitpid(pid, NULL, 0);
	return growth;
}

/*
 * hyvectl snapshot-info decodes the manifest of any file it is given. A
 * 13-byte manifest declaring an array of 2^25 items once made libcbor
 * allocate and clear 256 MiB for it; the same pre-scan hyve's reader
 * applies (lengths within the payload, nesting depth) now refuses it first.
 */
static void test_info_refuses_implausible_manifest(void **state)
{
	struct fx *f = *state;
	/* {"a": [ 2^25 items follow ]} */
	const uint8_t manifest[] = { 0xA1, 0x61, 'a', 0x9A, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
	long growth;

	write_manifest_snapshot(f, manifest, sizeof(manifest));
	growth = info_peak_rss_growth(f);
	if (growth > 32 * 1024)
		fail_msg("snapshot-info grew by %ld KiB on a 13-byte manifest", growth);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_small_payload_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_payload_beyond_one_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_info_refuses_implausible_manifest, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
