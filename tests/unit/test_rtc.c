/* The MC146818 RTC/CMOS model through ports 0x70/0x71, against the host clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/device.h"
#include "core/vm.h"
#include "snapshot/state.h"
#include "testvm.h"

#define RTC_IRQ 8
#define REG_A 0x0A
#define REG_B 0x0B
#define REG_C 0x0C
#define REG_D 0x0D

static struct vm *new_rtc_vm_on(uint64_t mem, const char *layout)
{
	struct vm *vm = testvm_new_platform(mem, layout);

	assert_int_equal(device_model_find("rtc")->attach(vm), 0);
	return vm;
}

static struct vm *new_rtc_vm(uint64_t mem)
{
	return new_rtc_vm_on(mem, NULL);
}

static int setup(void **state)
{
	*state = new_rtc_vm(512ULL << 20);
	return 0;
}

static int setup_with_loop(void **state)
{
	struct vm *vm = new_rtc_vm(512ULL << 20);

	testvm_start_loop(vm);
	*state = vm;
	return 0;
}

static int teardown(void **state)
{
	testvm_free(*state);
	return 0;
}

static uint8_t cmos_read(struct vm *vm, uint8_t reg)
{
	outb(vm, 0x70, reg);
	return inb(vm, 0x71);
}

static void cmos_write(struct vm *vm, uint8_t reg, uint8_t v)
{
	outb(vm, 0x70, reg);
	outb(vm, 0x71, v);
}

static int bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0x0F);
}

static uint8_t to_bcd(int v)
{
	return (uint8_t)((v / 10) << 4 | v % 10);
}

/* Waits out an update in progress, as guests do, then reads the clock as seconds since the epoch. */
static time_t read_clock(struct vm *vm)
{
	uint8_t b = cmos_read(vm, REG_B);
	int (*conv)(uint8_t) = b & 0x04 ? NULL : bcd;
	uint8_t raw[8];
	int v[8];
	struct tm tm = { 0 };
	static const uint8_t regs[8] = { 0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32, 0x06 };

	while (cmos_read(vm, REG_A) & 0x80)
		;
	for (int i = 0; i < 8; i++)
		raw[i] = cmos_read(vm, regs[i]);
	for (int i = 0; i < 8; i++)
		v[i] = conv ? conv(raw[i]) : raw[i];
	if (!(b & 0x02)) { /* 12-hour clock: PM in bit 7 */
		int h = conv ? conv(raw[2] & 0x7F) : raw[2] & 0x7F;
		v[2] = h % 12 + (raw[2] & 0x80 ? 12 : 0);
	}
	tm.tm_sec = v[0];
	tm.tm_min = v[1];
	tm.tm_hour = v[2];
	tm.tm_mday = v[3];
	tm.tm_mon = v[4] - 1;
	tm.tm_year = v[6] * 100 + v[5] - 1900;
	{
		time_t t = timegm(&tm);
		struct tm check;
		gmtime_r(&t, &check);
		assert_int_equal(v[7], check.tm_wday + 1);
		return t;
	}
}

static void assert_near_host(time_t t, time_t host, int slack)
{
	assert_true(t >= host - slack && t <= host + slack);
}

/* ---- time ---- */

static void test_time_matches_host_bcd(void **state)
{
	struct vm *vm = *state;

	assert_int_equal(cmos_read(vm, REG_B), 0x02); /* 24-hour, BCD */
	assert_near_host(read_clock(vm), time(NULL), 2);
}

static void test_time_binary_and_12_hour(void **state)
{
	struct vm *vm = *state;
	time_t host = time(NULL);
	struct tm now;

	cmos_write(vm, REG_B, 0x06); /* binary, 24-hour */
	assert_near_host(read_clock(vm), time(NULL), 2);
	gmtime_r(&host, &now);
	assert_int_equal(cmos_read(vm, 0x32), (now.tm_year + 1900) / 100); /* century, binary */
	cmos_write(vm, REG_B, 0x04); /* binary, 12-hour */
	assert_near_host(read_clock(vm), time(NULL), 2);
	cmos_write(vm, REG_B, 0x00); /* BCD, 12-hour */
	assert_near_host(read_clock(vm), time(NULL), 2);
	{
		uint8_t h = cmos_read(vm, 0x04);
		assert_true(bcd(h & 0x7F) >= 1 && bcd(h & 0x7F) <= 12);
	}
}

/* Setting the clock moves it by an offset; it keeps running with the host's. */
static void test_set_time_with_set_bit(void **state)
{
	struct vm *vm = *state;
	time_t t;
	struct tm want;

	cmos_write(vm, REG_B, 0x82); /* SET: updates stop, the time can be written */
	cmos_write(vm, 0x00, to_bcd(30));
	cmos_write(vm, 0x02, to_bcd(59));
	cmos_write(vm, 0x04, to_bcd(23));
	cmos_write(vm, 0x07, to_bcd(31)); /* day 31 before the month: must not be normalised yet */
	cmos_write(vm, 0x08, to_bcd(12));
	cmos_write(vm, 0x09, to_bcd(99));
	cmos_write(vm, 0x32, to_bcd(19));
	assert_int_equal(cmos_read(vm, 0x07), 0x31);
	assert_int_equal(cmos_read(vm, 0x00), 0x30); /* frozen while SET */
	cmos_write(vm, REG_B, 0x02);
	t = read_clock(vm);
	want = (struct tm){ .tm_sec = 30, .tm_min = 59, .tm_hour = 23, .tm_mday = 31, .tm_mon = 11, .tm_year = 99 };
	assert_true(t >= timegm(&want) && t <= timegm(&want) + 2);
	/* The clock runs on from there. */
	{
		struct timespec ts = { 1, 100000000L };
		nanosleep(&ts, NULL);
	}
	assert_true(read_clock(vm) > t);
}

static void test_set_time_without_set_bit(void **state)
{
	struct vm *vm = *state;
	time_t host = time(NULL);
	long diff;
	struct tm now;

	gmtime_r(&host, &now);
	cmos_write(vm, 0x09, to_bcd((now.tm_year + 1) % 100)); /* one year on */
	diff = (long)(read_clock(vm) - time(NULL));
	assert_true(diff >= 365L * 86400 - 2 && diff <= 366L * 86400 + 2);
}

/* UIP goes up shortly before each update, and software waiting for update-end sees it fall. */
static void test_uip_tracks_updates(void **state)
{
	struct vm *vm = *state;
	bool seen_high = false;
	uint8_t before, after;
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		seen_high = cmos_read(vm, REG_A) & 0x80;
		clock_gettime(CLOCK_MONOTONIC, &now);
		/* The window is 244 us a second: on a loaded machine a poll may miss a few of them. */
	} while (!seen_high && now.tv_sec - start.tv_sec < 15);
	assert_true(seen_high);
	before = cmos_read(vm, 0x00);
	while (cmos_read(vm, REG_A) & 0x80)
		;
	after = cmos_read(vm, 0x00);
	assert_int_not_equal(before, after);
	assert_int_equal(cmos_read(vm, REG_A) & 0x7F, 0x26);
	assert_int_equal(cmos_read(vm, REG_D), 0x80);
}

/* ---- interrupts ---- */

static void test_update_interrupt_and_c_clears(void **state)
{
	struct vm *vm = *state;
	uint8_t c;

	cmos_read(vm, REG_C);
	cmos_write(vm, REG_B, 0x12); /* UIE */
	assert_true(testvm_wait_irq(RTC_IRQ, 1, 2000));
	c = cmos_read(vm, REG_C);
	assert_int_equal(c & 0x90, 0x90); /* IRQF, UF */
	assert_int_equal(testvm_irq_level(RTC_IRQ), 0);
	assert_int_equal(cmos_read(vm, REG_C) & 0x80, 0);
	/* And again one second later: a fresh edge. */
	assert_true(testvm_wait_irq(RTC_IRQ, 1, 2000));
	assert_int_equal(testvm_irq_edges(RTC_IRQ), 2);
	cmos_write(vm, REG_B, 0x02);
	assert_int_equal(testvm_irq_level(RTC_IRQ), 0); /* disabling the source drops the line */
}

static void test_periodic_interrupt(void **state)
{
	struct vm *vm = *state;
	uint8_t c;

	cmos_write(vm, REG_A, 0x26); /* 1024 Hz */
	cmos_read(vm, REG_C);
	cmos_write(vm, REG_B, 0x42); /* PIE */
	for (int i = 0; i < 5; i++) {
		assert_true(testvm_wait_irq(RTC_IRQ, 1, 1000));
		c = cmos_read(vm, REG_C);
		assert_int_equal(c & 0xC0, 0xC0); /* IRQF, PF */
		assert_int_equal(testvm_irq_level(RTC_IRQ), 0);
	}
	/* Rate 0 stops it. */
	cmos_write(vm, REG_A, 0x20);
	cmos_read(vm, REG_C);
	assert_false(testvm_wait_irq(RTC_IRQ, 1, 100));
}

/* While the VM is paused (a snapshot) the line holds still; on resume the lost time raises the flag. */
static void test_paused_vm_gets_no_interrupt(void **state)
{
	struct vm *vm = *state;

	cmos_write(vm, REG_A, 0x26); /* 1024 Hz */
	cmos_read(vm, REG_C);
	cmos_write(vm, REG_B, 0x42); /* PIE */
	assert_true(testvm_wait_irq(RTC_IRQ, 1, 1000));
	devices_set_running(vm, false);
	cmos_read(vm, REG_C); /* lowers the line; no timer may raise it again */
	assert_false(testvm_wait_irq(RTC_IRQ, 1, 200));
	devices_set_running(vm, true);
	assert_true(testvm_wait_irq(RTC_IRQ, 1, 1000));
	assert_int_equal(cmos_read(vm, REG_C) & 0xC0, 0xC0);
	cmos_write(vm, REG_B, 0x02);
}

static void test_alarm_interrupt(void **state)
{
	struct vm *vm = *state;
	time_t t = time(NULL) + 2;
	struct tm tm;

	gmtime_r(&t, &tm);
	cmos_write(vm, 0x01, to_bcd(tm.tm_sec));
	cmos_write(vm, 0x03, 0xC0); /* any minute */
	cmos_write(vm, 0x05, to_bcd(tm.tm_hour));
	cmos_read(vm, REG_C);
	cmos_write(vm, REG_B, 0x22); /* AIE */
	assert_true(testvm_wait_irq(RTC_IRQ, 1, 4000));
	assert_int_equal(cmos_read(vm, REG_C) & 0xA0, 0xA0); /* IRQF, AF */
}

/* Flags are raised even with their interrupts off, for software that polls C. */
static void test_flags_without_interrupts(void **state)
{
	struct vm *vm = *state;
	struct timespec ts = { 1, 100000000L };

	cmos_read(vm, REG_C);
	nanosleep(&ts, NULL);
	assert_int_equal(cmos_read(vm, REG_C), 0x50); /* UF and PF (1024 Hz), no IRQF */
	assert_int_equal(testvm_irq_calls(RTC_IRQ), 0);
}

/* ---- CMOS memory ---- */

static void test_nvram_persists_over_reset(void **state)
{
	struct vm *vm = *state;
	struct device *d = device_find(vm, "lpc.rtc");

	/* Everything but the memory-size bytes, which reset derives from the VM again. */
	for (unsigned r = 0x40; r < 0x80; r++)
		cmos_write(vm, (uint8_t)r, (uint8_t)(r * 3));
	cmos_write(vm, 0x34, 0xEE);
	cmos_write(vm, REG_B, 0x76); /* interrupts on, binary */
	d->model->reset(d);
	for (unsigned r = 0x40; r < 0x80; r++)
		if (r < 0x5B || r > 0x5D)
			assert_int_equal(cmos_read(vm, (uint8_t)r), (uint8_t)(r * 3));
	assert_int_equal(cmos_read(vm, 0x5B), 0);
	assert_int_equal(cmos_read(vm, 0x34) | cmos_read(vm, 0x35) << 8, (512 - 16) * 16);
	assert_int_equal(cmos_read(vm, REG_B), 0x06); /* reset clears the enables, keeps the format */
	assert_int_equal(cmos_read(vm, REG_C) & 0x80, 0x00);
	assert_int_equal(testvm_irq_level(RTC_IRQ), 0);
}

static void test_memory_bytes_512m(void **state)
{
	struct vm *vm = *state;
	unsigned sum = 0;

	assert_int_equal(cmos_read(vm, 0x15) | cmos_read(vm, 0x16) << 8, 640);
	assert_int_equal(cmos_read(vm, 0x17) | cmos_read(vm, 0x18) << 8, 0xFFFF); /* capped */
	assert_int_equal(cmos_read(vm, 0x34) | cmos_read(vm, 0x35) << 8, (512 - 16) * 16);
	assert_int_equal(cmos_read(vm, 0x5B) | cmos_read(vm, 0x5C) << 8 | cmos_read(vm, 0x5D) << 16, 0);
	for (unsigned r = 0x10; r <= 0x2D; r++)
		sum += cmos_read(vm, (uint8_t)r);
	assert_int_equal(cmos_read(vm, 0x2E) << 8 | cmos_read(vm, 0x2F), sum);
}

static void test_memory_bytes_above_4g(void **state)
{
	struct vm *vm = new_rtc_vm(5ULL << 30);

	(void)state;
	/* q35: 2.75 GiB below ECAM at 0xB0000000, 2.25 GiB above 4 GiB. */
	assert_int_equal(cmos_read(vm, 0x34) | cmos_read(vm, 0x35) << 8, 0xAF00);
	assert_int_equal(cmos_read(vm, 0x5B) | cmos_read(vm, 0x5C) << 8 | cmos_read(vm, 0x5D) << 16, 2304 * 16);
	testvm_free(vm);
	/* The legacy layout: 3 GiB below the PCI hole, 2 GiB above 4 GiB. */
	vm = new_rtc_vm_on(5ULL << 30, "legacy");
	assert_int_equal(cmos_read(vm, 0x34) | cmos_read(vm, 0x35) << 8, (3072 - 16) * 16);
	assert_int_equal(cmos_read(vm, 0x5B) | cmos_read(vm, 0x5C) << 8 | cmos_read(vm, 0x5D) << 16, 2048 * 16);
	testvm_free(vm);
}

static void test_index_port_and_nmi_bit(void **state)
{
	struct vm *vm = *state;

	outb(vm, 0x70, 0x80 | 0x45); /* NMI masked, register 0x45 */
	outb(vm, 0x71, 0xA5);
	assert_int_equal(inb(vm, 0x70), 0xC5);
	outb(vm, 0x70, 0x45);
	assert_int_equal(inb(vm, 0x71), 0xA5);
	/* C and D are read-only. */
	cmos_write(vm, REG_D, 0x00);
	assert_int_equal(cmos_read(vm, REG_D), 0x80);
}

/* ---- snapshot ---- */

static void test_save_restore(void **state)
{
	struct vm *vm = *state, *vm2 = new_rtc_vm(512ULL << 20);
	struct device *a = device_find(vm, "lpc.rtc"), *b = device_find(vm2, "lpc.rtc");
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	uint8_t *buf;
	size_t len;
	struct tm want = { .tm_mday = 1, .tm_mon = 0, .tm_year = 150 };

	cmos_write(vm, REG_B, 0x86); /* SET, binary */
	cmos_write(vm, 0x09, 50);
	cmos_write(vm, 0x32, 20);
	cmos_write(vm, 0x08, 1);
	cmos_write(vm, 0x07, 1);
	cmos_write(vm, 0x04, 0);
	cmos_write(vm, 0x02, 0);
	cmos_write(vm, 0x00, 0);
	cmos_write(vm, REG_B, 0x06);
	for (unsigned i = 0x40; i < 0x80; i++)
		cmos_write(vm, (uint8_t)i, (uint8_t)~i);
	outb(vm, 0x70, 0x8E);

	assert_int_equal(a->model->save(a, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	r = state_reader_new(buf, len);
	assert_int_equal(b->model->restore(b, r, 1), 0);
	state_reader_free(r);
	free(buf);

	assert_int_equal(inb(vm2, 0x70), 0x8E);
	for (unsigned i = 0x0E; i < 0x80; i++)
		if (i != 0x32)
			assert_int_equal(cmos_read(vm2, (uint8_t)i), cmos_read(vm, (uint8_t)i));
	assert_near_host(read_clock(vm2), timegm(&want), 2);
	assert_near_host(read_clock(vm2), read_clock(vm), 1);
	testvm_free(vm2);
}

/* A snapshot's offset is outside input: one beyond the years the registers can hold is refused. */
static void test_restore_refuses_huge_offset(void **state)
{
	struct vm *vm = *state;
	struct device *d = device_find(vm, "lpc.rtc");
	const int64_t offsets[] = { INT64_MAX, INT64_MIN, 400000000000LL };

	for (unsigned i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		struct state_writer *w = state_writer_new();
		struct state_reader *r;
		uint8_t cmos[128] = { [REG_B] = 0x02, [REG_D] = 0x80 };
		uint8_t *buf;
		size_t len;

		state_put_bytes(w, "cmos", cmos, sizeof(cmos));
		state_put_u64(w, "index", 0);
		state_put_i64(w, "offset", offsets[i]);
		state_put_bool(w, "staging", false);
		assert_int_equal(state_writer_finish(w, &buf, &len), 0);
		state_writer_free(w);
		r = state_reader_new(buf, len);
		assert_int_equal(d->model->restore(d, r, 1), -1);
		state_reader_free(r);
		free(buf);
	}
	/* The clock still reads sanely. */
	assert_true(cmos_read(vm, 0x09) <= 0x99);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_time_matches_host_bcd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_time_binary_and_12_hour, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_time_with_set_bit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_time_without_set_bit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uip_tracks_updates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_interrupt_and_c_clears, setup_with_loop, teardown),
		cmocka_unit_test_setup_teardown(test_periodic_interrupt, setup_with_loop, teardown),
		cmocka_unit_test_setup_teardown(test_paused_vm_gets_no_interrupt, setup_with_loop, teardown),
		cmocka_unit_test_setup_teardown(test_alarm_interrupt, setup_with_loop, teardown),
		cmocka_unit_test_setup_teardown(test_flags_without_interrupts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nvram_persists_over_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_bytes_512m, setup, teardown),
		cmocka_unit_test(test_memory_bytes_above_4g),
		cmocka_unit_test_setup_teardown(test_index_port_and_nmi_bit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_huge_offset, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
