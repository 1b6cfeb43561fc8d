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
#include <xxhash.h>

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

/* The checksum a plain (paused) save gives RAM holding mem. */
static uint64_t paused_checksum(const uint8_t *mem, uint64_t len)
{
	char path[] = "/tmp/hyve-format-paused-XXXXXX", err[256];
	struct snap_writer w;
	struct snap_reader r;
	uint64_t sum;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	snapw_init(&w, fd, err, sizeof(err));
	assert_int_equal(snapw_record(&w, "manifest", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_ram(&w, "ram.0", mem, len, false), 0);
	assert_int_equal(snapw_record(&w, "end", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_finish(&w), 0);
	close(fd);
	assert_int_equal(snapr_open(&r, path, err, sizeof(err)), 0);
	sum = snapr_find(&r, "ram.0")->checksum;
	snapr_close(&r);
	unlink(path);
	return sum;
}

static bool is_hole(int fd, uint64_t off)
{
	off_t data = lseek(fd, (off_t)off, SEEK_DATA);

	return data < 0 || (uint64_t)data >= off + SNAP_PAGE_SIZE;
}

/*
 * A live save: RAM records reserved and filled first, pages written again
 * in place as they change (a page that became zero becomes a hole again),
 * state records after the RAM, checksums taken from the file last. The
 * reader finds and verifies every record, and the checksum is the one a
 * paused save of the same memory gives.
 */
static void test_live_rewrite_in_place(void **state)
{
	struct fx *f = *state;
	uint64_t len = 48 * SNAP_PAGE_SIZE, len1 = 8 * SNAP_PAGE_SIZE;
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *back;
	uint8_t mem1[8 * SNAP_PAGE_SIZE] = { 0 };
	struct snap_ram_record ram0, ram1;
	const struct snap_record *rec;
	struct snap_writer w;
	struct snap_reader r;
	int fd = mkstemp(f->path);

	assert_true(fd >= 0 && mem != MAP_FAILED);
	for (uint64_t p = 0; p < 40; p++)
		memset(mem + p * SNAP_PAGE_SIZE, (int)(p + 1), SNAP_PAGE_SIZE);
	mem1[5 * SNAP_PAGE_SIZE + 7] = 0x5a;
	snapw_init(&w, fd, f->err, sizeof(f->err));
	assert_int_equal(snapw_record(&w, "manifest", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_ram_reserve(&w, "ram.0", len, &ram0), 0);
	assert_int_equal(snapw_ram_reserve(&w, "ram.1", len1, &ram1), 0);
	assert_int_equal(ram0.payload_off % SNAP_PAGE_SIZE, 0);
	assert_true(ram1.header_off >= ram0.payload_off + len);
	assert_int_equal(snapw_ram_fill(&w, &ram0, mem, true), 0);
	assert_int_equal(snapw_ram_fill(&w, &ram1, mem1, false), 0);
	assert_int_equal(w.ram_written, 41 * SNAP_PAGE_SIZE);

	/* The guest runs on: pages change, some become zero, zero ones get data. */
	memset(mem + 3 * SNAP_PAGE_SIZE, 0xee, 100);
	memset(mem + 10 * SNAP_PAGE_SIZE, 0, 3 * SNAP_PAGE_SIZE);
	mem[44 * SNAP_PAGE_SIZE + 9] = 1;
	assert_int_equal(snapw_ram_update(&w, &ram0, mem, 3, 1), 0);
	assert_int_equal(snapw_ram_update(&w, &ram0, mem, 9, 6), 0);
	assert_int_equal(snapw_ram_update(&w, &ram0, mem, 44, 1), 0);
	mem1[5 * SNAP_PAGE_SIZE + 7] = 0;
	assert_int_equal(snapw_ram_update(&w, &ram1, mem1, 5, 1), 0);
	assert_int_equal(snapw_ram_update(&w, &ram0, mem, 47, 2), -1); /* past the record */
	assert_non_null(strstr(f->err, "outside ram.0"));

	/* The state, then the headers. */
	assert_int_equal(snapw_record(&w, "vcpu.0", 1, 0, "\xa1\x61x\x01", 4), 0);
	assert_int_equal(snapw_ram_seal(&w, &ram0), 0);
	assert_int_equal(snapw_ram_seal(&w, &ram1), 0);
	assert_int_equal(snapw_record(&w, "end", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_finish(&w), 0);

	if (snapr_open(&r, f->path, f->err, sizeof(f->err)) < 0)
		fail_msg("%s", f->err);
	assert_int_equal(r.count, 5);
	assert_string_equal(r.records[1].name, "ram.0");
	assert_string_equal(r.records[3].name, "vcpu.0");
	assert_non_null(snapr_find(&r, "vcpu.0"));
	free(snapr_load(&r, snapr_find(&r, "vcpu.0")));
	rec = snapr_find(&r, "ram.0");
	assert_int_equal(rec->payload_offset, ram0.payload_off);
	assert_int_equal(snapr_verify(&r, rec), 0);
	assert_int_equal(rec->checksum, paused_checksum(mem, len));
	back = malloc(len);
	assert_int_equal(snapr_read_payload(&r, rec, back), 0);
	assert_memory_equal(back, mem, len);
	for (uint64_t p = 10; p < 13; p++)
		assert_true(is_hole(fd, rec->payload_offset + p * SNAP_PAGE_SIZE));
	assert_false(is_hole(fd, rec->payload_offset + 44 * SNAP_PAGE_SIZE));
	rec = snapr_find(&r, "ram.1");
	assert_int_equal(snapr_verify(&r, rec), 0);
	assert_true(is_hole(fd, rec->payload_offset + 5 * SNAP_PAGE_SIZE));
	assert_int_equal(rec->checksum, XXH3_64bits("", 0));
	snapr_close(&r);
	free(back);
	close(fd);
	munmap(mem, len);
}

/* The checksum is of what the file holds: RAM changed after its last write is not what the record promises. */
static void test_live_checksum_from_file(void **state)
{
	struct fx *f = *state;
	uint64_t len = 4 * SNAP_PAGE_SIZE;
	uint8_t *mem = calloc(1, len);
	struct snap_ram_record ram;
	struct snap_writer w;
	struct snap_reader r;
	int fd = mkstemp(f->path);

	assert_true(fd >= 0 && mem);
	mem[SNAP_PAGE_SIZE] = 1;
	snapw_init(&w, fd, f->err, sizeof(f->err));
	assert_int_equal(snapw_record(&w, "manifest", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_ram_reserve(&w, "ram.0", len, &ram), 0);
	assert_int_equal(snapw_ram_fill(&w, &ram, mem, false), 0);
	mem[SNAP_PAGE_SIZE] = 2; /* not written again */
	assert_int_equal(snapw_ram_seal(&w, &ram), 0);
	assert_int_equal(snapw_record(&w, "end", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_finish(&w), 0);
	assert_int_equal(snapr_open(&r, f->path, f->err, sizeof(f->err)), 0);
	assert_int_equal(snapr_verify(&r, snapr_find(&r, "ram.0")), 0);
	assert_true(snapr_find(&r, "ram.0")->checksum != paused_checksum(mem, len));
	mem[SNAP_PAGE_SIZE] = 1;
	assert_int_equal(snapr_find(&r, "ram.0")->checksum, paused_checksum(mem, len));
	snapr_close(&r);
	close(fd);
	free(mem);
}

/* snapshot-info reads a file whose RAM comes before the state records. */
static void test_live_order_info(void **state)
{
	struct fx *f = *state;
	uint8_t mem[2 * SNAP_PAGE_SIZE] = { 1 };
	struct snap_ram_record ram;
	struct snap_writer w;
	FILE *out = tmpfile();
	char text[8192];
	size_t n;
	int fd = mkstemp(f->path);

	assert_true(fd >= 0 && out);
	snapw_init(&w, fd, f->err, sizeof(f->err));
	assert_int_equal(snapw_record(&w, "manifest", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_ram_reserve(&w, "ram.0", sizeof(mem), &ram), 0);
	assert_int_equal(snapw_ram_fill(&w, &ram, mem, false), 0);
	assert_int_equal(snapw_record(&w, "vm.clock", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_ram_seal(&w, &ram), 0);
	assert_int_equal(snapw_record(&w, "end", 1, 0, "\xa0", 1), 0);
	assert_int_equal(snapw_finish(&w), 0);
	close(fd);
	assert_int_equal(snapshot_info(f->path, out), 0);
	rewind(out);
	n = fread(text, 1, sizeof(text) - 1, out);
	text[n] = '\0';
	fclose(out);
	assert_non_null(strstr(text, "\"valid\":true"));
	assert_true(strstr(text, "\"ram.0\"") < strstr(text, "\"vm.clock\""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_small_payload_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_payload_beyond_one_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_info_refuses_implausible_manifest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_rewrite_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_checksum_from_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_order_info, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
