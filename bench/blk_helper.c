/*
 * bench/blk_helper: in-guest block benchmark for bench/blk.py, built
 * static on the host and carried into the guest on the benchmarked disk
 * itself (so hyve and QEMU guests run the same binary).
 *
 *   blk_helper seqwrite DEV OFFSET_MIB SIZE_MIB     1 MiB O_DIRECT writes, then fdatasync
 *   blk_helper seqread  DEV OFFSET_MIB SIZE_MIB     1 MiB O_DIRECT reads
 *   blk_helper randread DEV OFFSET_MIB SIZE_MIB N   N random 4 KiB O_DIRECT reads
 *
 * Prints one line "RESULT <mode> <bytes> <seconds> <MiB/s> <IOPS>".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t next_rand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s seqwrite|seqread|randread DEV OFFSET_MIB SIZE_MIB [N]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	int write_mode = strcmp(mode, "seqwrite") == 0;
	int rand_mode = strcmp(mode, "randread") == 0;
	off_t base = (off_t)strtoull(argv[3], NULL, 0) << 20;
	uint64_t size = strtoull(argv[4], NULL, 0) << 20;
	long count = rand_mode && argc > 5 ? strtol(argv[5], NULL, 0) : 0;
	size_t bs = rand_mode ? 4096 : 1 << 20;
	void *buf;
	uint64_t bytes = 0, ops = 0;
	double t0, t;

	int fd = open(argv[2], (write_mode ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	if (posix_memalign(&buf, 4096, bs))
		return 1;
	memset(buf, 0xA5, bs);
	t0 = now();
	if (rand_mode) {
		uint64_t blocks = size / bs;
		for (long i = 0; i < count; i++) {
			off_t off = base + (off_t)((next_rand() % blocks) * bs);
			if (pread(fd, buf, bs, off) != (ssize_t)bs) {
				perror("pread");
				return 1;
			}
			bytes += bs, ops++;
		}
	} else {
		for (uint64_t done = 0; done < size; done += bs) {
			ssize_t n = write_mode ? pwrite(fd, buf, bs, base + (off_t)done) : pread(fd, buf, bs, base + (off_t)done);
			if (n != (ssize_t)bs) {
				perror(write_mode ? "pwrite" : "pread");
				return 1;
			}
			bytes += bs, ops++;
		}
		if (write_mode && fdatasync(fd) < 0) {
			perror("fdatasync");
			return 1;
		}
	}
	t = now() - t0;
	printf("RESULT %s %llu %.6f %.2f %.1f\n", mode, (unsigned long long)bytes, t, bytes / t / (1 << 20), ops / t);
	return 0;
}
