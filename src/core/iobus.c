#include "iobus.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

void iobus_init(struct iobus *bus)
{
	memset(bus, 0, sizeof(*bus));
	pthread_rwlock_init(&bus->lock, NULL);
}

void iobus_destroy(struct iobus *bus)
{
	free(bus->ranges);
	pthread_rwlock_destroy(&bus->lock);
}

/* Index of the first range whose end is above addr. */
static unsigned find(const struct iobus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->count;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		const struct io_range *r = &bus->ranges[mid];
		if (r->base + r->len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int iobus_register(struct iobus *bus, uint64_t base, uint64_t len, io_handler_fn fn, void *opaque)
{
	unsigned i;
	int rc = -1;

	if (len == 0 || base + len < base)
		return -1;
	pthread_rwlock_wrlock(&bus->lock);
	i = find(bus, base);
	if (i < bus->count && bus->ranges[i].base < base + len) {
		log_error("I/O range 0x%llx+0x%llx overlaps 0x%llx+0x%llx", (unsigned long long)base,
			  (unsigned long long)len, (unsigned long long)bus->ranges[i].base,
			  (unsigned long long)bus->ranges[i].len);
		goto out;
	}
	if (bus->count == bus->cap) {
		unsigned cap = bus->cap ? bus->cap * 2 : 16;
		struct io_range *r = realloc(bus->ranges, cap * sizeof(*r));
		if (!r)
			goto out;
		bus->ranges = r;
		bus->cap = cap;
	}
	memmove(&bus->ranges[i + 1], &bus->ranges[i], (bus->count - i) * sizeof(*bus->ranges));
	bus->ranges[i] = (struct io_range){ base, len, fn, opaque };
	bus->count++;
	rc = 0;
out:
	pthread_rwlock_unlock(&bus->lock);
	return rc;
}

int iobus_unregister(struct iobus *bus, uint64_t base)
{
	unsigned i;
	int rc = -1;

	pthread_rwlock_wrlock(&bus->lock);
	i = find(bus, base);
	if (i < bus->count && bus->ranges[i].base == base) {
		memmove(&bus->ranges[i], &bus->ranges[i + 1], (bus->count - i - 1) * sizeof(*bus->ranges));
		bus->count--;
		rc = 0;
	}
	pthread_rwlock_unlock(&bus->lock);
	return rc;
}

int iobus_register_all(struct iobus *bus, const struct iobus_claim *claims, size_t n, void *opaque)
{
	for (size_t i = 0; i < n; i++) {
		if (iobus_register(bus, claims[i].base, claims[i].len, claims[i].fn, opaque) < 0) {
			iobus_unregister_all(bus, claims, i);
			return -1;
		}
	}
	return 0;
}

void iobus_unregister_all(struct iobus *bus, const struct iobus_claim *claims, size_t n)
{
	for (size_t i = 0; i < n; i++)
		iobus_unregister(bus, claims[i].base);
}

bool iobus_access(struct iobus *bus, uint64_t addr, uint8_t *data, unsigned size, bool is_write)
{
	struct io_range r = { 0 };
	unsigned i;

	pthread_rwlock_rdlock(&bus->lock);
	i = find(bus, addr);
	if (i < bus->count && bus->ranges[i].base <= addr)
		r = bus->ranges[i];
	pthread_rwlock_unlock(&bus->lock);

	/* An access must lie wholly inside the range it starts in. */
	if (!r.fn || addr + size > r.base + r.len) {
		if (!is_write)
			memset(data, 0xff, size);
		return false;
	}
	r.fn(r.opaque, addr - r.base, data, size, is_write);
	return true;
}

void iobus_access_string(struct iobus *bus, uint64_t addr, uint8_t *data, unsigned size, uint32_t count,
			 bool is_write)
{
	for (uint32_t i = 0; i < count; i++)
		iobus_access(bus, addr, data + (size_t)i * size, size, is_write);
}
