/*
 * MC146818 RTC and CMOS memory ("rtc"), the one instance "lpc.rtc" at
 * ports 0x70 (index; bit 7 masks NMI) and 0x71 (data), IRQ 8.
 *
 * Time is never stored: the time registers are computed on each read from
 * the host's UTC clock plus `offset`, the whole seconds the guest has moved
 * its clock by. Setting the time (with or without register B's SET bit)
 * only changes that offset, so the clock keeps running with the host's.
 *
 * Register C's flags are computed lazily from the time that passed since
 * they were last looked at; a timerfd on the event loop is armed only
 * while an enabled interrupt can next fire, to raise IRQ 8 on time.
 *
 * Not modelled: register A's divider bits (the clock always runs), B's
 * daylight-saving and square-wave bits (stored only), and the guest's own
 * weekday (it always follows from the date).
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "boot/aml.h"
#include "core/device.h"
#include "core/evloop.h"
#include "core/log.h"
#include "core/vm.h"
#include "snapshot/state.h"

#define RTC_PORT 0x70
#define RTC_IRQ 8
#define CMOS_SIZE 128
#define NS_PER_SEC 1000000000LL
#define SEC_PER_DAY 86400
#define UIP_WINDOW_NS 244000 /* UIP rises this long before each update */

enum {
	REG_SEC = 0x00,
	REG_SEC_ALARM = 0x01,
	REG_MIN = 0x02,
	REG_MIN_ALARM = 0x03,
	REG_HOUR = 0x04,
	REG_HOUR_ALARM = 0x05,
	REG_WDAY = 0x06,
	REG_MDAY = 0x07,
	REG_MON = 0x08,
	REG_YEAR = 0x09,
	REG_A = 0x0A,
	REG_B = 0x0B,
	REG_C = 0x0C,
	REG_D = 0x0D,
	REG_CENTURY = 0x32,
};

#define A_UIP 0x80
#define A_RS 0x0F
#define B_SET 0x80
#define B_PIE 0x40
#define B_AIE 0x20
#define B_UIE 0x10
#define B_SQWE 0x08
#define B_DM_BINARY 0x04
#define B_24H 0x02
#define C_IRQF 0x80
#define C_PF 0x40
#define C_AF 0x20
#define C_UF 0x10
#define D_VRT 0x80
#define HOUR_PM 0x80
#define ALARM_DONT_CARE 0xC0

/* Calendar fields in binary: hour 0-23, wday 1-7 (Sunday 1), mon 1-12, year 0-99. */
struct rtc_time {
	int sec, min, hour, wday, mday, mon, year, century;
};

struct rtc {
	pthread_mutex_t lock; /* vCPU threads (ports) and the loop thread (timer) */
	struct vm *vm;
	struct evloop *loop;
	int timerfd;

	uint8_t cmos[CMOS_SIZE]; /* time registers 0x00-0x09 and 0x32 unused: computed */
	uint8_t index;           /* as last written to port 0x70, NMI mask bit included */
	int64_t offset;          /* guest time minus host UTC, in seconds */
	bool staging;            /* B.SET: reads and writes go to `staged`, committed on clear */
	struct rtc_time staged;
	int64_t flags_ns;        /* host time up to which register C is accounted for */
	int64_t timer_ns;        /* deadline the timerfd is armed for; 0 when disarmed */
	bool irq_level;
	bool vm_paused;          /* flags and line stay as at the pause (device.h) */
};

static struct device_model rtc_model;

static int64_t host_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b < 0);
}

/* ---- time and format ---- */

static struct rtc_time guest_time(const struct rtc *s, int64_t now_ns)
{
	time_t g = (time_t)(floor_div(now_ns, NS_PER_SEC) + s->offset);
	struct tm tm;
	struct rtc_time t;
	int year;

	gmtime_r(&g, &tm);
	year = tm.tm_year + 1900;
	t = (struct rtc_time){ tm.tm_sec, tm.tm_min, tm.tm_hour, tm.tm_wday + 1, tm.tm_mday, tm.tm_mon + 1,
			       year % 100, year / 100 };
	return t;
}

/* The weekday written by the guest is not kept: it follows from the date. */
static void commit_time(struct rtc *s, const struct rtc_time *t, int64_t now_ns)
{
	struct tm tm = {
		.tm_sec = t->sec,
		.tm_min = t->min,
		.tm_hour = t->hour,
		.tm_mday = t->mday,
		.tm_mon = t->mon - 1,
		.tm_year = t->century * 100 + t->year - 1900,
	};

	s->offset = (int64_t)timegm(&tm) - floor_div(now_ns, NS_PER_SEC);
}

static bool binary_mode(const struct rtc *s)
{
	return s->cmos[REG_B] & B_DM_BINARY;
}

static uint8_t encode(const struct rtc *s, int v)
{
	return binary_mode(s) ? (uint8_t)v : (uint8_t)((v / 10) << 4 | v % 10);
}

static int decode(const struct rtc *s, uint8_t v)
{
	return binary_mode(s) ? v : (v >> 4) * 10 + (v & 0x0F);
}

static uint8_t encode_hour(const struct rtc *s, int hour)
{
	int h12 = hour % 12 ? hour % 12 : 12;

	if (s->cmos[REG_B] & B_24H)
		return encode(s, hour);
	return encode(s, h12) | (hour >= 12 ? HOUR_PM : 0);
}

static int decode_hour(const struct rtc *s, uint8_t v)
{
	if (s->cmos[REG_B] & B_24H)
		return decode(s, v);
	return decode(s, v & ~HOUR_PM) % 12 + (v & HOUR_PM ? 12 : 0);
}

static int *time_field(struct rtc_time *t, unsigned reg)
{
	switch (reg) {
	case REG_SEC: return &t->sec;
	case REG_MIN: return &t->min;
	case REG_HOUR: return &t->hour;
	case REG_WDAY: return &t->wday;
	case REG_MDAY: return &t->mday;
	case REG_MON: return &t->mon;
	case REG_YEAR: return &t->year;
	case REG_CENTURY: return &t->century;
	default: return NULL;
	}
}

static bool is_time_reg(unsigned reg)
{
	return reg == REG_CENTURY || (reg <= REG_YEAR && reg != REG_SEC_ALARM && reg != REG_MIN_ALARM &&
				      reg != REG_HOUR_ALARM);
}

static uint8_t read_time_reg(struct rtc *s, unsigned reg, int64_t now_ns)
{
	struct rtc_time t = s->staging ? s->staged : guest_time(s, now_ns);

	if (reg == REG_HOUR)
		return encode_hour(s, t.hour);
	return encode(s, *time_field(&t, reg));
}

static void write_time_reg(struct rtc *s, unsigned reg, uint8_t v, int64_t now_ns)
{
	struct rtc_time t = s->staging ? s->staged : guest_time(s, now_ns);

	*time_field(&t, reg) = reg == REG_HOUR ? decode_hour(s, v) : decode(s, v);
	if (s->staging)
		s->staged = t;
	else
		commit_time(s, &t, now_ns);
}

/* ---- register C: flags, IRQ and timer ---- */

static bool alarm_field_matches(const struct rtc *s, unsigned reg, int value)
{
	uint8_t raw = s->cmos[reg];

	if ((raw & ALARM_DONT_CARE) == ALARM_DONT_CARE)
		return true;
	return (reg == REG_HOUR_ALARM ? decode_hour(s, raw) : decode(s, raw)) == value;
}

/* Whether the alarm matches any guest second in [first, last]; a day covers every h:m:s. */
static bool alarm_in(const struct rtc *s, int64_t first, int64_t last)
{
	if (last - first >= SEC_PER_DAY)
		last = first + SEC_PER_DAY - 1;
	for (int64_t g = first; g <= last; g++) {
		int64_t sod = g % SEC_PER_DAY;
		if (sod < 0)
			sod += SEC_PER_DAY;
		if (alarm_field_matches(s, REG_SEC_ALARM, (int)(sod % 60)) &&
		    alarm_field_matches(s, REG_MIN_ALARM, (int)(sod / 60 % 60)) &&
		    alarm_field_matches(s, REG_HOUR_ALARM, (int)(sod / 3600)))
			return true;
	}
	return false;
}

/* Period selected by register A's rate bits on the 32.768 kHz time base; 0 when off. */
static int64_t periodic_ns(const struct rtc *s)
{
	unsigned rs = s->cmos[REG_A] & A_RS;

	if (rs == 0)
		return 0;
	if (rs < 3)
		rs += 7; /* rates 1 and 2 repeat 8 and 9 */
	return (NS_PER_SEC << (rs - 1)) / 32768;
}

/* Sets the flags for whatever happened between flags_ns and now. */
static void account_flags(struct rtc *s, int64_t now_ns)
{
	int64_t last = s->flags_ns, period = periodic_ns(s);
	uint8_t c = s->cmos[REG_C], b = s->cmos[REG_B];

	s->flags_ns = now_ns;
	/* Nothing happens while time stands still or the host clock went back. */
	if (now_ns > last && !(b & B_SET)) {
		int64_t s0 = floor_div(last, NS_PER_SEC), s1 = floor_div(now_ns, NS_PER_SEC);
		if (s1 > s0) {
			c |= C_UF;
			if (alarm_in(s, s0 + 1 + s->offset, s1 + s->offset))
				c |= C_AF;
		}
	}
	if (now_ns > last && period && floor_div(last, period) != floor_div(now_ns, period))
		c |= C_PF;
	/* IRQF is a function of flags and enables, so disabling an interrupt drops the line. */
	c &= ~C_IRQF;
	if (((c & C_PF) && (b & B_PIE)) || ((c & C_AF) && (b & B_AIE)) || ((c & C_UF) && (b & B_UIE)))
		c |= C_IRQF;
	s->cmos[REG_C] = c;
}

static void update_irq(struct rtc *s)
{
	bool level = s->cmos[REG_C] & C_IRQF;

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	vm_set_irq(s->vm, RTC_IRQ, level);
}

/* Wakes the loop when an enabled interrupt can next fire; IRQF stays up until C is read anyway. */
static void arm_timer(struct rtc *s, int64_t now_ns)
{
	struct itimerspec its = { 0 };
	uint8_t b = s->cmos[REG_B];
	int64_t period = periodic_ns(s), next = 0;

	if (s->timerfd < 0)
		return;
	if (!s->vm_paused && !(s->cmos[REG_C] & C_IRQF)) {
		if ((b & B_PIE) && period)
			next = (floor_div(now_ns, period) + 1) * period;
		if ((b & (B_UIE | B_AIE)) && !(b & B_SET)) {
			int64_t tick = (floor_div(now_ns, NS_PER_SEC) + 1) * NS_PER_SEC;
			if (!next || tick < next)
				next = tick;
		}
	}
	if (next == s->timer_ns)
		return;
	s->timer_ns = next;
	its.it_value.tv_sec = (time_t)(next / NS_PER_SEC);
	its.it_value.tv_nsec = (long)(next % NS_PER_SEC);
	timerfd_settime(s->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* After any change: catch up on flags, then drive the line and the timer. */
static void refresh(struct rtc *s, int64_t now_ns)
{
	account_flags(s, now_ns);
	update_irq(s);
	arm_timer(s, now_ns);
}

static void timer_event(void *opaque, uint32_t events)
{
	struct rtc *s = opaque;
	uint64_t expirations;

	(void)events;
	if (read(s->timerfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&s->lock);
	s->timer_ns = 0; /* a one-shot timer that fired is disarmed */
	if (!s->vm_paused)
		refresh(s, host_now_ns());
	pthread_mutex_unlock(&s->lock);
}

/* ---- registers ---- */

static void write_b(struct rtc *s, uint8_t v, int64_t now_ns)
{
	bool was_set = s->cmos[REG_B] & B_SET;

	account_flags(s, now_ns); /* what happened so far counts under the old settings */
	if (v & B_SET)
		v &= ~B_UIE; /* SET forces UIE off */
	if ((v & B_SET) && !was_set) {
		s->staged = guest_time(s, now_ns);
		s->staging = true;
	}
	if (!(v & B_SET) && was_set) {
		commit_time(s, &s->staged, now_ns);
		s->staging = false;
	}
	s->cmos[REG_B] = v;
	/* An enable bit set over an already-raised flag requests the interrupt at once. */
	account_flags(s, now_ns);
}

static uint8_t read_c(struct rtc *s, int64_t now_ns)
{
	uint8_t v;

	account_flags(s, now_ns);
	v = s->cmos[REG_C];
	s->cmos[REG_C] = 0;
	return v;
}

static bool uip(const struct rtc *s, int64_t now_ns)
{
	if (s->cmos[REG_B] & B_SET)
		return false;
	return now_ns - floor_div(now_ns, NS_PER_SEC) * NS_PER_SEC >= NS_PER_SEC - UIP_WINDOW_NS;
}

static uint8_t cmos_read(struct rtc *s, unsigned reg, int64_t now_ns)
{
	if (is_time_reg(reg))
		return read_time_reg(s, reg, now_ns);
	switch (reg) {
	case REG_A:
		return (s->cmos[REG_A] & ~A_UIP) | (uip(s, now_ns) ? A_UIP : 0);
	case REG_C:
		return read_c(s, now_ns);
	case REG_D:
		return D_VRT;
	default:
		return s->cmos[reg];
	}
}

static void cmos_write(struct rtc *s, unsigned reg, uint8_t v, int64_t now_ns)
{
	if (is_time_reg(reg)) {
		write_time_reg(s, reg, v, now_ns);
		return;
	}
	switch (reg) {
	case REG_A:
		account_flags(s, now_ns);
		s->cmos[REG_A] = v & ~A_UIP;
		break;
	case REG_B:
		write_b(s, v, now_ns);
		break;
	case REG_C:
	case REG_D:
		break; /* read-only */
	default:
		s->cmos[reg] = v;
		break;
	}
}

static void rtc_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct rtc *s = opaque;
	int64_t now = host_now_ns();

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < size; i++) {
		if ((offset + i) % 2 == 0) {
			if (is_write)
				s->index = data[i];
			else
				data[i] = s->index;
		} else if (is_write) {
			cmos_write(s, s->index & 0x7F, data[i], now);
		} else {
			data[i] = cmos_read(s, s->index & 0x7F, now);
		}
	}
	refresh(s, now);
	pthread_mutex_unlock(&s->lock);
}

/* ---- life cycle ---- */

static void put16(uint8_t *cmos, unsigned reg, uint64_t v, uint64_t max)
{
	if (v > max)
		v = max;
	cmos[reg] = (uint8_t)v;
	cmos[reg + 1] = (uint8_t)(v >> 8);
}

/* The PC/AT memory-size bytes firmware and loaders read, and their checksum over 0x10-0x2D. */
static void set_memory_bytes(struct rtc *s)
{
	uint64_t low = mem_lowmem_size(&s->vm->mem), high = mem_highmem_size(&s->vm->mem);
	uint64_t above4g = high >> 16;
	unsigned sum = 0;

	put16(s->cmos, 0x15, 640, 640); /* base memory, KiB */
	put16(s->cmos, 0x17, low > (1 << 20) ? (low - (1 << 20)) >> 10 : 0, 0xFFFF); /* above 1 MiB, KiB */
	put16(s->cmos, 0x30, low > (1 << 20) ? (low - (1 << 20)) >> 10 : 0, 0xFFFF);
	put16(s->cmos, 0x34, low > (16 << 20) ? (low - (16 << 20)) >> 16 : 0, 0xFFFF); /* 64 KiB units */
	if (above4g > 0xFFFFFF)
		above4g = 0xFFFFFF;
	s->cmos[0x5B] = (uint8_t)above4g;
	s->cmos[0x5C] = (uint8_t)(above4g >> 8);
	s->cmos[0x5D] = (uint8_t)(above4g >> 16);
	for (unsigned r = 0x10; r <= 0x2D; r++)
		sum += s->cmos[r];
	s->cmos[0x2E] = (uint8_t)(sum >> 8);
	s->cmos[0x2F] = (uint8_t)sum;
}

/* What the RESET pin does: interrupts off and flags clear; time, format and NVRAM stay. */
static void rtc_reset(struct device *dev)
{
	struct rtc *s = dev->priv;
	int64_t now = host_now_ns();

	pthread_mutex_lock(&s->lock);
	s->cmos[REG_B] &= ~(B_PIE | B_AIE | B_UIE | B_SQWE);
	s->cmos[REG_C] = 0;
	s->flags_ns = now;
	set_memory_bytes(s);
	refresh(s, now);
	pthread_mutex_unlock(&s->lock);
}

static void rtc_free(struct rtc *s)
{
	if (s->timerfd >= 0) {
		if (s->loop)
			evloop_del(s->loop, s->timerfd);
		close(s->timerfd);
	}
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int rtc_create(struct device *dev)
{
	struct rtc *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	pthread_mutex_init(&s->lock, NULL);
	s->vm = dev->vm;
	s->loop = dev->vm->loop;
	s->timerfd = -1;
	s->cmos[REG_A] = 0x26; /* 32.768 kHz time base, 1024 Hz periodic rate */
	s->cmos[REG_B] = B_24H;
	s->flags_ns = host_now_ns();
	set_memory_bytes(s);
	if (s->loop) {
		s->timerfd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
		if (s->timerfd < 0 || evloop_add(s->loop, s->timerfd, EPOLLIN, timer_event, s) < 0) {
			log_error("rtc: cannot create its timer: %s", strerror(errno));
			rtc_free(s);
			return -1;
		}
	}
	if (iobus_register(&dev->vm->pio, RTC_PORT, 2, rtc_io, s) < 0) {
		rtc_free(s);
		return -1;
	}
	dev->priv = s;
	return 0;
}

static void rtc_destroy(struct device *dev)
{
	struct rtc *s = dev->priv;

	if (!s)
		return;
	iobus_unregister(&dev->vm->pio, RTC_PORT);
	rtc_free(s);
	dev->priv = NULL;
}

static int rtc_attach(struct vm *vm)
{
	return device_create(vm, &rtc_model, "lpc.rtc", "lpc.rtc") ? 0 : -1;
}

/* ---- snapshot ---- */

static const struct {
	const char *key;
	size_t off;
} staged_fields[] = {
	{ "sec", offsetof(struct rtc_time, sec) },   { "min", offsetof(struct rtc_time, min) },
	{ "hour", offsetof(struct rtc_time, hour) }, { "wday", offsetof(struct rtc_time, wday) },
	{ "mday", offsetof(struct rtc_time, mday) }, { "mon", offsetof(struct rtc_time, mon) },
	{ "year", offsetof(struct rtc_time, year) }, { "century", offsetof(struct rtc_time, century) },
};
#define N_STAGED (sizeof(staged_fields) / sizeof(staged_fields[0]))

static int *staged_field(struct rtc_time *t, unsigned i)
{
	return (int *)((char *)t + staged_fields[i].off);
}

static int rtc_save(struct device *dev, struct state_writer *w)
{
	struct rtc *s = dev->priv;
	int64_t now = host_now_ns();

	pthread_mutex_lock(&s->lock);
	/* Paused (as for every snapshot): register C as the interrupt line last showed it. */
	if (!s->vm_paused)
		account_flags(s, now);
	state_put_bytes(w, "cmos", s->cmos, sizeof(s->cmos));
	state_put_u64(w, "index", s->index);
	state_put_i64(w, "offset", s->offset);
	state_put_bool(w, "staging", s->staging);
	if (s->staging) {
		state_begin_map(w, "staged");
		for (unsigned i = 0; i < N_STAGED; i++)
			state_put_i64(w, staged_fields[i].key, *staged_field(&s->staged, i));
		state_end_map(w);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int read_staged(struct rtc *s, struct state_reader *r)
{
	int rc = 0;

	if (state_enter_map(r, "staged") < 0)
		return -1;
	for (unsigned i = 0; i < N_STAGED && rc == 0; i++) {
		int64_t v = 0;
		rc = state_get_i64(r, staged_fields[i].key, &v);
		if (rc == 0 && (v < 0 || v > 99))
			rc = -1;
		*staged_field(&s->staged, i) = (int)v;
	}
	state_leave_map(r);
	return rc;
}

/*
 * The registers hold years 0 to 9999, so the guest can never move its clock
 * further than that from the host's; a snapshot's offset beyond it is
 * forged (and would overflow the clock arithmetic).
 */
#define RTC_MAX_OFFSET (10000LL * 366 * 86400)

static int read_state(struct rtc *s, struct state_reader *r)
{
	uint64_t index;
	int64_t offset;

	if (state_get_bytes(r, "cmos", s->cmos, sizeof(s->cmos)) < 0 || state_get_u64(r, "index", &index) < 0 ||
	    index > 0xFF || state_get_i64(r, "offset", &offset) < 0 || offset < -RTC_MAX_OFFSET ||
	    offset > RTC_MAX_OFFSET || state_get_bool(r, "staging", &s->staging) < 0)
		return -1;
	s->offset = offset;
	s->index = (uint8_t)index;
	if (s->staging != ((s->cmos[REG_B] & B_SET) != 0))
		return -1;
	return s->staging ? read_staged(s, r) : 0;
}

static int rtc_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	struct rtc *s = dev->priv;
	int64_t now = host_now_ns();
	int rc;

	(void)version;
	pthread_mutex_lock(&s->lock);
	rc = read_state(s, r);
	s->flags_ns = now; /* the time spent in the snapshot raises no flags */
	refresh(s, now);
	pthread_mutex_unlock(&s->lock);
	if (rc < 0)
		log_error("rtc: snapshot section is missing a field or holds a bad value");
	return rc;
}

/*
 * Pausing: flags and line are settled as of now and the timer is disarmed;
 * resuming: the paused time is caught up on and the timer re-armed.
 */
static void rtc_run_state(struct device *dev, bool running)
{
	struct rtc *s = dev->priv;

	pthread_mutex_lock(&s->lock);
	s->vm_paused = !running;
	refresh(s, host_now_ns());
	pthread_mutex_unlock(&s->lock);
}

/* Device(RTC): the AT clock (PNP0B00), ports 0x70-0x71 and IRQ 8. */
static void rtc_acpi_dsdt(struct device *dev, struct aml_buf *b)
{
	(void)dev;
	aml_isa_device(b, "RTC", "PNP0B00", 0, RTC_PORT, 2, RTC_IRQ);
}

static struct device_model rtc_model = {
	.name = "rtc",
	.state_version = 1,
	.attach_order = 10,
	.attach = rtc_attach,
	.create = rtc_create,
	.reset = rtc_reset,
	.save = rtc_save,
	.restore = rtc_restore,
	.destroy = rtc_destroy,
	.run_state = rtc_run_state,
	.acpi_dsdt = rtc_acpi_dsdt,
};
DEVICE_MODEL(rtc_model);
