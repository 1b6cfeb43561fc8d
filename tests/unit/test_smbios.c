/*
 * SMBIOS through fw_cfg (src/boot/smbios.c): the two files as OVMF reads
 * them, decoded here from the DMTF SMBIOS 3.0 layout (offsets spelt out
 * again below, not taken from hyve's code), and checked against what the VM
 * is: its vCPU count, its RAM size and where the RAM is mapped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "boot/fw_cfg_files.h"
#include "boot/smbios.h"
#include "core/config.h"
#include "core/device.h"
#include "core/memory.h"
#include "core/vm.h"
#include "testvm.h"

/* ---- an independent decoder ---- */

struct structure {
	uint8_t type, length;
	uint16_t handle;
	const uint8_t *f;       /* the formatted area */
	const char *strings[16];
	unsigned nstrings;
};

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Splits the tables into structures; every one must be whole, the last type 127, nothing after it. */
static unsigned decode(const uint8_t *t, size_t len, struct structure *out, unsigned max)
{
	size_t at = 0;
	unsigned n = 0;

	for (;;) {
		struct structure *s = &out[n];
		assert_true(n < max);
		assert_true(at + 4 <= len);
		s->type = t[at];
		s->length = t[at + 1];
		s->handle = (uint16_t)le(t + at + 2, 2);
		assert_true(s->length >= 4 && at + s->length + 2 <= len);
		s->f = t + at;
		at += s->length;
		s->nstrings = 0;
		if (t[at] == 0) {
			assert_int_equal(t[at + 1], 0); /* no strings: two NULs */
			at += 2;
		} else {
			while (t[at] != 0) {
				const char *str = (const char *)t + at;
				size_t l = strnlen(str, len - at);
				assert_true(at + l < len);
				assert_true(s->nstrings < 16);
				s->strings[s->nstrings++] = str;
				at += l + 1;
			}
			at++;
		}
		n++;
		if (s->type == 127) {
			assert_int_equal(at, len);
			return n;
		}
	}
}

/* String number f[off] of s ("" for 0); a number past the strings fails the test. */
static const char *string_at(const struct structure *s, unsigned off)
{
	uint8_t i = s->f[off];

	if (i == 0)
		return "";
	assert_true(i <= s->nstrings);
	return s->strings[i - 1];
}

static const struct structure *find(const struct structure *s, unsigned n, uint8_t type, unsigned nth)
{
	for (unsigned i = 0; i < n; i++)
		if (s[i].type == type && nth-- == 0)
			return &s[i];
	return NULL;
}

/* ---- the tables of a machine ---- */

static struct guest_memory layout(uint64_t bytes)
{
	struct guest_memory mem;

	memset(&mem, 0, sizeof(mem));
	mem_layout(&mem, bytes, 0xB0000000ULL); /* q35: RAM below 4 GiB ends at 2.75 GiB */
	return mem;
}

static void check_machine(unsigned ncpus, uint64_t ram)
{
	struct guest_memory mem = layout(ram);
	struct smbios_machine m = { .mem = &mem, .ncpus = ncpus, .cpuid_signature = 0x00a50f00,
				    .cpuid_features = 0x178bfbff, .cpu_vendor = "AuthenticAMD" };
	struct smbios_blobs b;
	struct structure s[32];
	const struct structure *t;
	unsigned n;
	uint8_t sum = 0;

	assert_int_equal(smbios_build(&m, &b), 0);

	/* The 3.0 entry point OVMF checks: anchor, version, size of the tables file. */
	assert_memory_equal(b.anchor, "_SM3_", 5);
	for (int i = 0; i < SMBIOS_ANCHOR_SIZE; i++)
		sum += b.anchor[i];
	assert_int_equal(sum, 0);
	assert_int_equal(b.anchor[6], 24);
	assert_int_equal(b.anchor[7], 3);
	assert_int_equal(b.anchor[8], 0);
	assert_int_equal(b.anchor[10], 1);
	assert_int_equal(le(b.anchor + 12, 4), b.tables_len);

	n = decode(b.tables, b.tables_len, s, 32);
	/* Types present, handles unique, no BIOS information (the firmware's own). */
	assert_null(find(s, n, 0, 0));
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = i + 1; j < n; j++)
			assert_int_not_equal(s[i].handle, s[j].handle);

	t = find(s, n, 1, 0);
	assert_non_null(t);
	assert_true(t->length >= 27);
	assert_string_equal(string_at(t, 4), "hyve");
	assert_string_equal(string_at(t, 5), "hyve");
	assert_string_equal(string_at(t, 6), HYVE_VERSION);
	for (int i = 8; i < 24; i++)
		assert_int_equal(t->f[i], 0); /* UUID not present */

	t = find(s, n, 3, 0);
	assert_non_null(t);
	assert_string_equal(string_at(t, 4), "hyve");

	/* One package holding every vCPU as a core. */
	t = find(s, n, 4, 0);
	assert_non_null(t);
	assert_null(find(s, n, 4, 1));
	assert_int_equal(t->length, 48);
	assert_int_equal(t->f[5], 3);
	assert_string_equal(string_at(t, 7), "AuthenticAMD");
	assert_int_equal(le(t->f + 8, 4), 0x00a50f00);
	assert_int_equal(le(t->f + 12, 4), 0x178bfbff);
	assert_int_equal(t->f[24] & 0x47, 0x41); /* populated, enabled */
	assert_int_equal(t->f[35], ncpus > 255 ? 255 : ncpus);
	assert_int_equal(t->f[36], ncpus > 255 ? 255 : ncpus);
	assert_int_equal(t->f[37], ncpus > 255 ? 255 : ncpus);
	assert_int_equal(le(t->f + 42, 2), ncpus);
	assert_int_equal(le(t->f + 44, 2), ncpus);
	assert_int_equal(le(t->f + 46, 2), ncpus);

	/* The RAM: one array, one device of the configured size. */
	{
		const struct structure *arr = find(s, n, 16, 0), *dev = find(s, n, 17, 0);
		uint64_t max_kib, size_mib;

		assert_non_null(arr);
		assert_non_null(dev);
		assert_int_equal(arr->f[5], 3); /* system memory */
		max_kib = le(arr->f + 7, 4);
		if (max_kib == 0x80000000ULL)
			max_kib = le(arr->f + 15, 8) >> 10;
		assert_int_equal(max_kib, ram >> 10);
		assert_int_equal(le(arr->f + 13, 2), 1);
		assert_int_equal(le(dev->f + 4, 2), arr->handle);
		size_mib = le(dev->f + 12, 2);
		if (size_mib == 0x7FFF)
			size_mib = le(dev->f + 28, 4);
		assert_int_equal(size_mib, ram >> 20);
		assert_null(find(s, n, 17, 1));

		/* Mapped addresses: one per RAM region, exactly the memory map's, adding up to the size. */
		uint64_t mapped = 0;
		for (unsigned i = 0; i < mem.nregions; i++) {
			const struct structure *map = find(s, n, 19, i);
			uint64_t first, last;
			assert_non_null(map);
			assert_int_equal(le(map->f + 12, 2), arr->handle);
			first = le(map->f + 4, 4);
			last = le(map->f + 8, 4);
			if (first == 0xFFFFFFFFULL) {
				first = le(map->f + 15, 8);
				last = le(map->f + 23, 8);
			} else {
				first <<= 10;
				last = (last << 10) | 0x3FF;
			}
			assert_int_equal(first, mem.regions[i].gpa);
			assert_int_equal(last + 1, mem.regions[i].gpa + mem.regions[i].size);
			mapped += last + 1 - first;
		}
		assert_null(find(s, n, 19, mem.nregions));
		assert_int_equal(mapped, ram);
	}

	t = find(s, n, 32, 0);
	assert_non_null(t);
	assert_int_equal(t->f[10], 0); /* no errors */
	assert_int_equal(s[n - 1].type, 127);
	smbios_blobs_free(&b);
}

static void small_machine(void **state)
{
	(void)state;
	check_machine(1, 256ULL << 20); /* below 4 GiB only */
}

static void machine_above_4g(void **state)
{
	(void)state;
	check_machine(4, 6ULL << 30); /* two regions */
}

static void big_machine(void **state)
{
	(void)state;
	check_machine(64, 40ULL << 30); /* past the 16-bit MiB size: the extended field */
}

/* ---- through fw_cfg ---- */

static void offered_through_fw_cfg(void **state)
{
	struct vm *vm = testvm_new(512ULL << 20);
	struct structure s[32];
	uint32_t anchor_size, tables_size;
	uint8_t *anchor, *tables;
	unsigned n;
	(void)state;

	vm->ncpus = 3;
	assert_int_equal(config_set(vm->cfg, "lpc.bootrom", "/usr/share/OVMF/OVMF_CODE_4M.fd"), 0);
	assert_int_equal(device_model_find("fw-cfg")->attach(vm), 0);
	assert_int_equal(fw_cfg_files_setup(vm), 0);
	anchor = testvm_fw_cfg_file(vm, "etc/smbios/smbios-anchor", &anchor_size);
	tables = testvm_fw_cfg_file(vm, "etc/smbios/smbios-tables", &tables_size);
	assert_non_null(anchor);
	assert_non_null(tables);
	/* What OVMF's DetectSmbiosVersionLib requires before it installs anything. */
	assert_int_equal(anchor_size, 24);
	assert_memory_equal(anchor, "_SM3_", 5);
	assert_int_equal(anchor[7], 3);
	assert_int_equal(le(anchor + 12, 4), tables_size);
	n = decode(tables, tables_size, s, 32);
	assert_int_equal(le(find(s, n, 4, 0)->f + 42, 2), 3);
	assert_int_equal(le(find(s, n, 17, 0)->f + 12, 2), 512);
	free(anchor);
	free(tables);
	testvm_free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(small_machine),
		cmocka_unit_test(machine_above_4g),
		cmocka_unit_test(big_machine),
		cmocka_unit_test(offered_through_fw_cfg),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
