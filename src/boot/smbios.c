/* SMBIOS 3.0 structures for fw_cfg (smbios.h). Offsets follow the DMTF SMBIOS 3.0 specification. */
#include "smbios.h"

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "core/memory.h"
#include "core/vm.h"

#define STRUCT_MAX 64   /* formatted areas here are at most 48 bytes */
#define STRINGS_MAX 8

/* Handles: the type in the high byte, an instance number in the low. */
#define HANDLE(type, n) ((uint16_t)((type) << 8 | (n)))

enum {
	T_SYSTEM = 1, T_CHASSIS = 3, T_PROCESSOR = 4, T_MEMORY_ARRAY = 16, T_MEMORY_DEVICE = 17,
	T_ARRAY_MAPPED = 19, T_BOOT_INFO = 32, T_END = 127,
};

/* A growing buffer of structures. */
struct tables {
	uint8_t *buf;
	size_t len, cap;
	bool failed;
};

/* One structure being built: its formatted area and its strings. */
struct record {
	uint8_t f[STRUCT_MAX];
	size_t len;
	const char *strings[STRINGS_MAX];
	unsigned nstrings;
};

static void begin(struct record *r, uint8_t type, uint8_t length, uint16_t handle)
{
	memset(r, 0, sizeof(*r));
	r->f[0] = type;
	r->f[1] = length;
	r->f[2] = (uint8_t)handle;
	r->f[3] = (uint8_t)(handle >> 8);
	r->len = length;
}

static void put(struct record *r, size_t off, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		r->f[off + i] = (uint8_t)(v >> (8 * i));
}

/* Adds a string and stores its number (from 1) at off; an empty string is "none" (0). */
static void str(struct record *r, size_t off, const char *s)
{
	if (!s || !*s || r->nstrings == STRINGS_MAX)
		return;
	r->strings[r->nstrings++] = s;
	r->f[off] = (uint8_t)r->nstrings;
}

static void append(struct tables *t, const void *data, size_t len)
{
	if (t->failed)
		return;
	if (t->len + len > t->cap) {
		size_t cap = (t->len + len) * 2;
		uint8_t *b = realloc(t->buf, cap);
		if (!b) {
			t->failed = true;
			return;
		}
		t->buf = b;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, data, len);
	t->len += len;
}

/* The formatted area, each string with its NUL, and the NUL that ends the set (two NULs without strings). */
static void end(struct tables *t, const struct record *r)
{
	static const uint8_t nul[2] = { 0, 0 };

	append(t, r->f, r->len);
	for (unsigned i = 0; i < r->nstrings; i++)
		append(t, r->strings[i], strlen(r->strings[i]) + 1);
	append(t, nul, r->nstrings ? 1 : 2);
}

static void system_info(struct tables *t)
{
	struct record r;

	begin(&r, T_SYSTEM, 27, HANDLE(T_SYSTEM, 0));
	str(&r, 4, "hyve");         /* manufacturer */
	str(&r, 5, "hyve");         /* product name */
	str(&r, 6, HYVE_VERSION);   /* version */
	/* serial (7) none; UUID (8-23) all zeros: "not present", hyve gives VMs none */
	r.f[24] = 0x06;             /* wake-up type: power switch */
	str(&r, 26, "Virtual Machine"); /* family */
	end(t, &r);
}

static void chassis(struct tables *t)
{
	struct record r;

	begin(&r, T_CHASSIS, 22, HANDLE(T_CHASSIS, 0));
	str(&r, 4, "hyve");
	r.f[5] = 0x01;              /* type: other */
	r.f[9] = r.f[10] = r.f[11] = 0x03; /* boot-up, power supply, thermal state: safe */
	r.f[12] = 0x02;             /* security status: unknown */
	/* OEM (13-16), height (17), power cords (18), contained elements (19, 20), SKU (21): none */
	end(t, &r);
}

/* One package: the vCPUs are its cores, one thread each (core/cpuid.c). */
static void processor(struct tables *t, const struct smbios_machine *m)
{
	unsigned n = m->ncpus;
	struct record r;

	begin(&r, T_PROCESSOR, 48, HANDLE(T_PROCESSOR, 0));
	str(&r, 4, "CPU 0");        /* socket designation */
	r.f[5] = 0x03;              /* central processor */
	r.f[6] = 0xFE;              /* family: see family 2 */
	str(&r, 7, m->cpu_vendor);
	put(&r, 8, m->cpuid_signature, 4); /* processor ID: CPUID 1 EAX, EDX */
	put(&r, 12, m->cpuid_features, 4);
	/* version (16), voltage (17), external clock, max and current speed (18-23): unknown */
	r.f[24] = 0x41;             /* socket populated, CPU enabled */
	r.f[25] = 0x01;             /* upgrade: other */
	put(&r, 26, 0xFFFF, 2);     /* no L1, L2, L3 cache structures */
	put(&r, 28, 0xFFFF, 2);
	put(&r, 30, 0xFFFF, 2);
	r.f[35] = r.f[36] = r.f[37] = (uint8_t)(n > 255 ? 0xFF : n); /* cores, enabled, threads */
	put(&r, 38, 0x0004, 2);     /* characteristics: 64-bit capable */
	put(&r, 40, 0x0001, 2);     /* family 2: other */
	put(&r, 42, n, 2);
	put(&r, 44, n, 2);
	put(&r, 46, n, 2);
	end(t, &r);
}

static uint64_t ram_bytes(const struct guest_memory *mem)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < mem->nregions; i++)
		total += mem->regions[i].size;
	return total;
}

static void memory_array(struct tables *t, const struct smbios_machine *m)
{
	uint64_t kib = ram_bytes(m->mem) >> 10;
	struct record r;

	begin(&r, T_MEMORY_ARRAY, 23, HANDLE(T_MEMORY_ARRAY, 0));
	r.f[4] = 0x03;              /* location: system board */
	r.f[5] = 0x03;              /* use: system memory */
	r.f[6] = 0x03;              /* error correction: none */
	if (kib < 0x80000000ULL)
		put(&r, 7, kib, 4);  /* maximum capacity: what the VM has */
	else {
		put(&r, 7, 0x80000000ULL, 4);
		put(&r, 15, kib << 10, 8);
	}
	put(&r, 11, 0xFFFE, 2);     /* no memory error information */
	put(&r, 13, 1, 2);          /* one device */
	end(t, &r);
}

static void memory_device(struct tables *t, const struct smbios_machine *m)
{
	uint64_t mib = ram_bytes(m->mem) >> 20;
	struct record r;

	begin(&r, T_MEMORY_DEVICE, 40, HANDLE(T_MEMORY_DEVICE, 0));
	put(&r, 4, HANDLE(T_MEMORY_ARRAY, 0), 2);
	put(&r, 6, 0xFFFE, 2);      /* no memory error information */
	put(&r, 8, 0xFFFF, 2);      /* total and data width: unknown */
	put(&r, 10, 0xFFFF, 2);
	if (mib < 0x7FFF)
		put(&r, 12, mib, 2);
	else {
		put(&r, 12, 0x7FFF, 2);
		put(&r, 28, mib, 4); /* extended size, MiB */
	}
	r.f[14] = 0x01;             /* form factor: other */
	str(&r, 16, "RAM");         /* device locator */
	r.f[18] = 0x07;             /* memory type: RAM */
	put(&r, 19, 0x0002, 2);     /* type detail: unknown */
	str(&r, 23, "hyve");        /* manufacturer */
	end(t, &r);
}

/* One per RAM region: below the PCI hole and from 4 GiB. */
static void array_mapped(struct tables *t, const struct smbios_machine *m)
{
	for (unsigned i = 0; i < m->mem->nregions; i++) {
		const struct mem_region *g = &m->mem->regions[i];
		uint64_t first = g->gpa, last = g->gpa + g->size - 1;
		struct record r;

		begin(&r, T_ARRAY_MAPPED, 31, HANDLE(T_ARRAY_MAPPED, i));
		if ((last >> 10) < 0xFFFFFFFFULL) {
			put(&r, 4, first >> 10, 4);
			put(&r, 8, last >> 10, 4);
		} else {
			put(&r, 4, 0xFFFFFFFFULL, 4);
			put(&r, 8, 0xFFFFFFFFULL, 4);
			put(&r, 15, first, 8);
			put(&r, 23, last, 8);
		}
		put(&r, 12, HANDLE(T_MEMORY_ARRAY, 0), 2);
		r.f[14] = 1;        /* partition width: one device */
		end(t, &r);
	}
}

static void boot_info(struct tables *t)
{
	struct record r;

	begin(&r, T_BOOT_INFO, 11, HANDLE(T_BOOT_INFO, 0));
	/* reserved (4-9) and boot status (10): 0, no errors detected */
	end(t, &r);
}

static void end_of_table(struct tables *t)
{
	struct record r;

	begin(&r, T_END, 4, HANDLE(T_END, 0));
	end(t, &r);
}

static void fill_anchor(uint8_t *a, size_t tables_len)
{
	memset(a, 0, SMBIOS_ANCHOR_SIZE);
	memcpy(a, "_SM3_", 5);
	a[6] = SMBIOS_ANCHOR_SIZE;  /* entry point length */
	a[7] = 3;                   /* SMBIOS 3.0 */
	a[8] = 0;
	a[9] = 0;                   /* docrev */
	a[10] = 1;                  /* entry point revision: 3.0 */
	for (unsigned i = 0; i < 4; i++)
		a[12 + i] = (uint8_t)(tables_len >> (8 * i)); /* table maximum size */
	/* table address (16-23): 0, the firmware places the tables and writes its own entry point */
	a[5] = table_checksum(a, SMBIOS_ANCHOR_SIZE);
}

int smbios_build(const struct smbios_machine *m, struct smbios_blobs *out)
{
	struct tables t = { 0 };

	system_info(&t);
	chassis(&t);
	processor(&t, m);
	memory_array(&t, m);
	memory_device(&t, m);
	array_mapped(&t, m);
	boot_info(&t);
	end_of_table(&t);
	if (t.failed) {
		free(t.buf);
		return -1;
	}
	out->tables = t.buf;
	out->tables_len = t.len;
	fill_anchor(out->anchor, t.len);
	return 0;
}

void smbios_blobs_free(struct smbios_blobs *b)
{
	free(b->tables);
	b->tables = NULL;
}

static const struct kvm_cpuid_entry2 *leaf(const struct kvm_cpuid2 *c, uint32_t function)
{
	for (uint32_t i = 0; c && i < c->nent; i++)
		if (c->entries[i].function == function && c->entries[i].index == 0)
			return &c->entries[i];
	return NULL;
}

void smbios_machine_of(struct vm *vm, struct smbios_machine *m)
{
	const struct kvm_cpuid_entry2 *l0 = leaf(vm->cpuid, 0), *l1 = leaf(vm->cpuid, 1);

	memset(m, 0, sizeof(*m));
	m->mem = &vm->mem;
	m->ncpus = vm->ncpus;
	if (l1) {
		m->cpuid_signature = l1->eax;
		m->cpuid_features = l1->edx;
	}
	if (l0) {
		memcpy(m->cpu_vendor, &l0->ebx, 4);
		memcpy(m->cpu_vendor + 4, &l0->edx, 4);
		memcpy(m->cpu_vendor + 8, &l0->ecx, 4);
	}
}
