/*
 * Save and restore of a whole VM (docs/snapshot-format.md): the manifest,
 * KVM-held state, every device's section and guest RAM.
 */
#include "snapshot.h"

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/devmem.h"
#include "core/device.h"
#include "core/log.h"
#include "core/options.h"
#include "core/platform.h"
#include "core/sandbox.h"
#include "core/vcpu.h"
#include "core/vm.h"
#include "snapshot/format.h"
#include "snapshot/kvm_state.h"
#include "snapshot/state.h"
#include "snapshot/trust.h"

#define MANIFEST_VERSION 1
#define VCPU_VERSION 1
#define VM_STATE_VERSION 1
#define OMITTED_VERSION 1
/* The keys a snapshot leaves out of its configuration because they are secret. */
#define OMITTED_RECORD "config.omitted"

struct snapshot_file {
	struct snap_reader reader;
	bool eager;
	char err[512];
	pthread_t verifier;
	bool verifier_started;
	volatile bool cancel_verifier;
	struct vm *vm;
};

struct kvm_cpuid2 *kvm_state_read_cpuid(struct state_reader *r, char *err, size_t errlen);

static void host_vendor(char out[13])
{
	unsigned a, b, c, d;

	__cpuid(0, a, b, c, d);
	memcpy(out, &b, 4);
	memcpy(out + 4, &d, 4);
	memcpy(out + 8, &c, 4);
	out[12] = '\0';
}

/* Finishes a CBOR section and writes it as a record. */
static int emit(struct snap_writer *sw, struct state_writer *w, const char *name, uint32_t version)
{
	uint8_t *buf;
	size_t len;
	int rc;

	if (state_writer_finish(w, &buf, &len) < 0) {
		state_writer_free(w);
		return set_error(sw->err, sw->errlen, "cannot encode record %s", name);
	}
	state_writer_free(w);
	rc = snapw_record(sw, name, version, 0, buf, len);
	free(buf);
	return rc;
}

static void put_cpu(struct vm *vm, struct state_writer *w)
{
	struct kvm_cpuid2 *c = cpuid_for_vcpu(vm->cpuid, 0, vm->ncpus);
	char vendor[13], key[32];

	host_vendor(vendor);
	state_begin_map(w, "cpu");
	state_put_str(w, "vendor", vendor);
	state_begin_map(w, "cpuid");
	for (unsigned i = 0; c && i < c->nent; i++) {
		bool dup = false;
		for (unsigned j = 0; j < i; j++)
			dup |= c->entries[j].function == c->entries[i].function && c->entries[j].index == c->entries[i].index;
		if (dup)
			continue;
		snprintf(key, sizeof(key), "0x%08x.%u", c->entries[i].function, c->entries[i].index);
		state_begin_map(w, key);
		state_put_u64(w, "eax", c->entries[i].eax);
		state_put_u64(w, "ebx", c->entries[i].ebx);
		state_put_u64(w, "ecx", c->entries[i].ecx);
		state_put_u64(w, "edx", c->entries[i].edx);
		state_put_u64(w, "flags", c->entries[i].flags);
		state_end_map(w);
	}
	state_end_map(w);
	state_end_map(w);
	free(c);
}

static int write_manifest(struct vm *vm, struct snap_writer *sw)
{
	struct state_writer *w = state_writer_new();
	char key[80];

	if (!w)
		return set_error(sw->err, sw->errlen, "out of memory");
	state_put_str(w, "hyve-version", HYVE_VERSION);
	state_put_u64(w, "created", (uint64_t)time(NULL));
	state_begin_map(w, "config");
	for (size_t i = 0; i < config_count(vm->cfg); i++) {
		const char *key = config_key_at(vm->cfg, i);
		/* How this process runs is not part of the machine; secrets never reach a file. */
		if (options_flags(vm->cfg, key) & (OPTION_PROCESS | OPTION_SECRET))
			continue;
		state_put_str(w, key, config_value_at(vm->cfg, i));
	}
	state_end_map(w);
	state_put_u64(w, "vcpus", vm->ncpus);
	state_begin_map(w, "memory");
	state_put_u64(w, "size", vm->mem.size);
	state_begin_map(w, "regions");
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		snprintf(key, sizeof(key), "ram.%u", i);
		state_begin_map(w, key);
		state_put_u64(w, "gpa", vm->mem.regions[i].gpa);
		state_put_u64(w, "size", vm->mem.regions[i].size);
		state_end_map(w);
	}
	state_end_map(w);
	state_end_map(w);
	put_cpu(vm, w);
	state_begin_map(w, "devices");
	for (struct device *d = vm->devices; d; d = d->next) {
		state_begin_map(w, d->id);
		state_put_str(w, "model", d->model->name);
		state_put_u64(w, "version", d->model->state_version);
		snprintf(key, sizeof(key), "dev.%s", d->id);
		state_put_str(w, "record", key);
		state_end_map(w);
	}
	state_end_map(w);
	return emit(sw, w, "manifest", MANIFEST_VERSION);
}

/*
 * Which secrets were left out, so that a restore asks for them instead of
 * running without (a VNC server without its password). Mandatory: a reader
 * that does not know the record must refuse the file rather than do that.
 */
static int write_omitted(struct vm *vm, struct snap_writer *sw)
{
	struct state_writer *w;
	bool any = false;

	for (size_t i = 0; i < config_count(vm->cfg); i++)
		any |= (options_flags(vm->cfg, config_key_at(vm->cfg, i)) & OPTION_SECRET) != 0;
	if (!any)
		return 0;
	w = state_writer_new();
	if (!w)
		return set_error(sw->err, sw->errlen, "out of memory");
	for (size_t i = 0; i < config_count(vm->cfg); i++) {
		const char *key = config_key_at(vm->cfg, i);
		if (options_flags(vm->cfg, key) & OPTION_SECRET)
			state_put_str(w, key, "secret");
	}
	return emit(sw, w, OMITTED_RECORD, OMITTED_VERSION);
}

typedef int (*vm_saver)(struct vm *vm, struct state_writer *w, char *err, size_t errlen);

static int write_vm_section(struct vm *vm, struct snap_writer *sw, const char *name, vm_saver save)
{
	struct state_writer *w = state_writer_new();

	if (!w)
		return set_error(sw->err, sw->errlen, "out of memory");
	if (save(vm, w, sw->err, sw->errlen) < 0) {
		state_writer_free(w);
		return -1;
	}
	return emit(sw, w, name, VM_STATE_VERSION);
}

static int write_state(struct vm *vm, struct snap_writer *sw)
{
	char name[80];

	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct state_writer *w = state_writer_new();
		if (!w || kvm_state_save_vcpu(&vm->vcpus[i], w, sw->err, sw->errlen) < 0) {
			state_writer_free(w);
			return -1;
		}
		snprintf(name, sizeof(name), "vcpu.%u", i);
		if (emit(sw, w, name, VCPU_VERSION) < 0)
			return -1;
	}
	if (write_vm_section(vm, sw, "vm.irqchip", kvm_state_save_irqchip) < 0 ||
	    write_vm_section(vm, sw, "vm.pit", kvm_state_save_pit) < 0 ||
	    write_vm_section(vm, sw, "vm.clock", kvm_state_save_clock) < 0)
		return -1;
	for (struct device *d = vm->devices; d; d = d->next) {
		struct state_writer *w = state_writer_new();
		if (!w || d->model->save(d, w) < 0) {
			state_writer_free(w);
			return set_error(sw->err, sw->errlen, "device %s (%s) failed to save its state", d->id, d->model->name);
		}
		snprintf(name, sizeof(name), "dev.%s", d->id);
		if (emit(sw, w, name, d->model->state_version) < 0)
			return -1;
	}
	return 0;
}

static int write_ram(struct vm *vm, struct snap_writer *sw)
{
	char name[16];
	/* A restored VM's RAM maps the snapshot file, whose residency says nothing of what the guest used. */
	bool anonymous_ram = !vm->mem.file_backed;

	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		struct mem_region *r = &vm->mem.regions[i];
		snprintf(name, sizeof(name), "ram.%u", i);
		if (snapw_ram(sw, name, r->hva, r->size, anonymous_ram) < 0)
			return -1;
	}
	return 0;
}

static int check_savable(struct vm *vm, char *err, size_t errlen)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (!d->model->save)
			return set_error(err, errlen, "device %s (%s) does not support snapshots", d->id, d->model->name);
	return 0;
}

/* Creates an empty temporary file beside path: same file system, so rename() is atomic. */
static int open_temporary(const char *path, char *tmp, size_t tmplen, char *err, size_t errlen)
{
	char *copy = strdup(path), *dir;
	int fd;

	if (!copy)
		return set_error(err, errlen, "out of memory");
	dir = dirname(copy);
	snprintf(tmp, tmplen, "%s/.hyve-snapshot-XXXXXX", dir);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		set_error(err, errlen, "cannot create a snapshot file in %s: %s", dir, strerror(errno));
	free(copy);
	return fd;
}

static void sync_directory(const char *path)
{
	char *copy = strdup(path);
	int fd;

	if (!copy)
		return;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(copy);
}

void snapshot_prepare_saves(void)
{
	snapw_keep_pagemap();
}

/* The temporary file a save writes, beside the snapshot's path. */
struct save {
	struct snap_writer sw;
	char tmp[4096];
	int fd;
};

/* Checks, creates the temporary file and writes what comes first: the manifest and the omitted secrets. */
static int begin_save(struct save *s, struct vm *vm, const char *path, char *err, size_t errlen)
{
	s->fd = -1;
	if (!path || !*path)
		return set_error(err, errlen, "no snapshot path given");
	if (check_savable(vm, err, errlen) < 0)
		return -1;
	s->fd = open_temporary(path, s->tmp, sizeof(s->tmp), err, errlen);
	if (s->fd < 0)
		return -1;
	snapw_init(&s->sw, s->fd, err, errlen);
	if (write_manifest(vm, &s->sw) < 0 || write_omitted(vm, &s->sw) < 0)
		return -1;
	return 0;
}

/* Writes "end" and the header after rc == 0 and moves the file into place; on any failure nothing is left. */
static int end_save(struct save *s, const char *path, int rc)
{
	if (s->fd < 0)
		return -1;
	if (rc == 0)
		rc = snapw_record(&s->sw, "end", 1, 0, "\xa0", 1);
	if (rc == 0)
		rc = snapw_finish(&s->sw);
	close(s->fd);
	s->fd = -1;
	if (rc == 0 && rename(s->tmp, path) < 0)
		rc = set_error(s->sw.err, s->sw.errlen, "cannot move the snapshot to %s: %s", path, strerror(errno));
	if (rc < 0) {
		unlink(s->tmp);
		return -1;
	}
	sync_directory(path);
	return 0;
}

int snapshot_save(struct vm *vm, const char *path, char *err, size_t errlen)
{
	struct save s;
	int rc = begin_save(&s, vm, path, err, errlen);

	if (rc == 0)
		rc = write_state(vm, &s.sw);
	if (rc == 0)
		rc = write_ram(vm, &s.sw);
	return end_save(&s, path, rc);
}

/* ---- live ---- */

struct live {
	struct vm *vm;
	struct snap_writer *sw;
	struct snap_ram_record ram[MEM_MAX_REGIONS];
	uint64_t *dirty; /* a bit per page of the RAM mapping */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t count_dirty(const struct live *l)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < mem_page_words(&l->vm->mem); i++)
		n += (uint64_t)__builtin_popcountll(l->dirty[i]);
	return n;
}

static bool dirty_at(const struct live *l, uint64_t page)
{
	return l->dirty[page / 64] & (1ULL << (page % 64));
}

/* Writes every page marked in l->dirty again, run by run, and clears the marks. */
static int write_dirty(struct live *l)
{
	for (unsigned i = 0; i < l->vm->mem.nregions; i++) {
		const struct mem_region *r = &l->vm->mem.regions[i];
		uint64_t base = r->offset / SNAP_PAGE_SIZE, pages = r->size / SNAP_PAGE_SIZE;
		for (uint64_t p = 0; p < pages;) {
			uint64_t q;
			if (!l->dirty[(base + p) / 64]) {
				p = ((base + p) / 64 + 1) * 64 - base; /* a word with no mark */
				continue;
			}
			if (!dirty_at(l, base + p)) {
				p++;
				continue;
			}
			for (q = p + 1; q < pages && dirty_at(l, base + q);)
				q++;
			if (snapw_ram_update(l->sw, &l->ram[i], r->hva, p, q - p) < 0)
				return -1;
			for (uint64_t c = p; c < q; c++)
				l->dirty[(base + c) / 64] &= ~(1ULL << ((base + c) % 64));
			p = q;
		}
	}
	return 0;
}

/*
 * The passes while the guest runs: all of RAM, then the pages written
 * meanwhile, until few are left, a pass finds no fewer than the one before
 * (the guest writes as fast as we do), or SNAPSHOT_LIVE_MAX_PASSES. The
 * pages found last stay marked for the pause.
 */
static int live_passes(struct live *l, const struct snapshot_live_ops *ops, struct snapshot_live_report *rep)
{
	/* A restored VM's RAM maps the snapshot file, whose residency says nothing of what the guest used. */
	bool anonymous_ram = !l->vm->mem.file_backed;
	uint64_t before = l->sw->ram_written, previous = UINT64_MAX;

	for (unsigned i = 0; i < l->vm->mem.nregions; i++)
		if (snapw_ram_fill(l->sw, &l->ram[i], l->vm->mem.regions[i].hva, anonymous_ram) < 0)
			return -1;
	rep->pass_bytes[0] = l->sw->ram_written - before;
	rep->passes = 1;
	for (;;) {
		uint64_t n;
		if (ops->progress)
			ops->progress(ops->opaque, rep);
		if (rep->passes >= SNAPSHOT_LIVE_MAX_PASSES)
			return 0;
		if (vm_ram_take_dirty(l->vm, l->dirty) < 0)
			return set_error(l->sw->err, l->sw->errlen, "cannot read which pages the guest wrote");
		n = count_dirty(l);
		if (n <= SNAPSHOT_LIVE_FEW_PAGES || n >= previous)
			return 0;
		previous = n;
		before = l->sw->ram_written;
		if (write_dirty(l) < 0)
			return -1;
		rep->pass_bytes[rep->passes++] = l->sw->ram_written - before;
	}
}

/* snapshot_live_ops.verify: RAM, still, against the file. */
static int verify_live_ram(struct live *l)
{
	for (unsigned i = 0; i < l->vm->mem.nregions; i++) {
		uint64_t differ, first;
		int rc = snapw_ram_compare(l->sw, &l->ram[i], l->vm->mem.regions[i].hva, &differ, &first);
		if (rc < 0)
			return -1;
		if (rc > 0)
			return set_error(l->sw->err, l->sw->errlen,
					 "live snapshot verification: %llu pages of %s differ from guest memory, the first at page %llu",
					 (unsigned long long)differ, l->ram[i].name, (unsigned long long)first);
	}
	return 0;
}

/* Paused: the last pages, then the state of every vCPU, the VM and every device. */
static int live_pause(struct live *l, const struct snapshot_live_ops *ops, struct snapshot_live_report *rep)
{
	uint64_t before = l->sw->ram_written;

	if (vm_ram_take_dirty(l->vm, l->dirty) < 0)
		return set_error(l->sw->err, l->sw->errlen, "cannot read which pages the guest wrote");
	rep->pause_pages = count_dirty(l);
	if (write_dirty(l) < 0)
		return -1;
	rep->pause_bytes = l->sw->ram_written - before;
	if (ops->verify && verify_live_ram(l) < 0)
		return -1;
	return write_state(l->vm, l->sw);
}

int snapshot_save_live(struct vm *vm, const char *path, bool then_exit, const struct snapshot_live_ops *ops,
		       struct snapshot_live_report *rep, char *err, size_t errlen)
{
	struct live l = { .vm = vm };
	struct save s;
	char name[16];
	bool tracking = false;
	uint64_t start = now_ns(), paused_at = 0;
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = begin_save(&s, vm, path, err, errlen);
	l.sw = &s.sw;
	if (rc == 0 && !(l.dirty = calloc(mem_page_words(&vm->mem), sizeof(*l.dirty))))
		rc = set_error(err, errlen, "out of memory");
	for (unsigned i = 0; rc == 0 && i < vm->mem.nregions; i++) {
		snprintf(name, sizeof(name), "ram.%u", i);
		rc = snapw_ram_reserve(&s.sw, name, vm->mem.regions[i].size, &l.ram[i]);
	}
	if (rc == 0) {
		rc = vm_ram_track_dirty(vm, true);
		tracking = rc == 0;
		if (rc < 0)
			set_error(err, errlen, "cannot track the pages the guest writes");
	}
	if (rc == 0)
		rc = live_passes(&l, ops, rep);
	if (rc == 0) {
		paused_at = now_ns();
		rc = ops->pause(ops->opaque);
		if (rc < 0)
			set_error(err, errlen, "the VM is shutting down");
	}
	if (rc == 0)
		rc = live_pause(&l, ops, rep);
	if (rc == 0) {
		/* Written in the pause: the guest may run on while the checksums are taken from the file. */
		if (!then_exit)
			ops->resume(ops->opaque);
		rep->pause_ns = now_ns() - paused_at;
	}
	if (tracking)
		vm_ram_track_dirty(vm, false);
	for (unsigned i = 0; rc == 0 && i < vm->mem.nregions; i++)
		rc = snapw_ram_seal(&s.sw, &l.ram[i]);
	free(l.dirty);
	rc = end_save(&s, path, rc);
	rep->total_ns = now_ns() - start;
	return rc;
}

/* ---- restore ---- */

static struct state_reader *load_section(struct snapshot_file *s, const char *name)
{
	const struct snap_record *rec = snapr_find(&s->reader, name);
	struct state_reader *r;
	uint8_t *buf;

	if (!rec) {
		set_error(s->err, sizeof(s->err), "record %s missing", name);
		return NULL;
	}
	buf = snapr_load(&s->reader, rec);
	if (!buf)
		return NULL;
	r = state_reader_new(buf, rec->len);
	free(buf);
	if (!r)
		set_error(s->err, sizeof(s->err), "record %s: payload is not a well-formed CBOR map", name);
	return r;
}

static int read_config(struct snapshot_file *s, struct state_reader *m, struct config *cfg)
{
	char key[512], value[4096];

	if (state_enter_map(m, "config") < 0)
		return set_error(s->err, sizeof(s->err), "manifest: config missing");
	for (size_t i = 0; i < state_map_size(m); i++) {
		if (state_key_at(m, i, key, sizeof(key)) < 0 || state_get_str(m, key, value, sizeof(value)) < 0 ||
		    config_set(cfg, key, value) < 0)
			return set_error(s->err, sizeof(s->err), "manifest: malformed configuration entry");
	}
	state_leave_map(m);
	return 0;
}

/* The secrets the writer left out, into omitted (absent record: none). */
static int read_omitted(struct snapshot_file *s, struct config *omitted)
{
	struct state_reader *r;
	char key[512];
	int rc = 0;

	if (!snapr_find(&s->reader, OMITTED_RECORD))
		return 0;
	r = load_section(s, OMITTED_RECORD);
	if (!r)
		return -1;
	for (size_t i = 0; rc == 0 && i < state_map_size(r); i++)
		if (state_key_at(r, i, key, sizeof(key)) < 0 || config_set(omitted, key, "secret") < 0)
			rc = set_error(s->err, sizeof(s->err), "record %s: malformed entry", OMITTED_RECORD);
	state_reader_free(r);
	return rc;
}

/*
 * The configuration the restore runs with: the file's, as far as the file
 * may choose (src/snapshot/trust.h), with the command line on top.
 */
/*
 * A snapshot restores into the platform layout it was taken with (RAM,
 * ECAM and the chipset are under the running guest): the one it recorded,
 * or "legacy" for a file from before the key. Recorded in cfg; another
 * value from the command line is refused.
 */
static int keep_platform_layout(struct snapshot_file *s, const struct config *file, struct config *cfg)
{
	const char *taken = config_get(file, PLATFORM_LAYOUT_KEY), *asked = config_get(cfg, PLATFORM_LAYOUT_KEY);

	if (!taken)
		taken = "legacy";
	if (asked && strcmp(asked, taken) != 0)
		return set_error(s->err, sizeof(s->err),
				 "%s=%s: the snapshot was taken with the %s layout and restores only with it",
				 PLATFORM_LAYOUT_KEY, asked, taken);
	if (config_set(cfg, PLATFORM_LAYOUT_KEY, taken) < 0)
		return set_error(s->err, sizeof(s->err), "out of memory");
	return 0;
}

static int build_config(struct snapshot_file *s, struct state_reader *m, struct config *cfg,
			const struct config *cli)
{
	struct config *file = config_new(), *omitted = config_new(), *none = cli ? NULL : config_new();
	struct stat st;
	char why[128];
	bool trusted;
	int rc = -1;

	if (!file || !omitted || (!cli && !none)) {
		set_error(s->err, sizeof(s->err), "out of memory");
		goto out;
	}
	/* The descriptor the file is read through, not its path: what was checked is what is read. */
	if (fstat(s->reader.fd, &st) < 0) {
		set_error(s->err, sizeof(s->err), "cannot stat: %s", strerror(errno));
		goto out;
	}
	trusted = snapshot_file_trusted(&st, geteuid(), why, sizeof(why));
	if (read_config(s, m, file) == 0 && read_omitted(s, omitted) == 0)
		rc = snapshot_merge_config(file, omitted, cli ? cli : none, trusted ? NULL : why, cfg, s->err,
					   sizeof(s->err));
	if (rc == 0)
		rc = keep_platform_layout(s, file, cfg);
out:
	config_free(file);
	config_free(omitted);
	config_free(none);
	return rc;
}

static int check_vendor(struct snapshot_file *s, struct state_reader *m)
{
	char saved[64], host[13];

	host_vendor(host);
	if (state_enter_map(m, "cpu") < 0 || state_get_str(m, "vendor", saved, sizeof(saved)) < 0)
		return set_error(s->err, sizeof(s->err), "manifest: cpu vendor missing");
	state_leave_map(m);
	if (strcmp(saved, host) != 0)
		return set_error(s->err, sizeof(s->err), "CPU vendor mismatch: the snapshot was taken on %s, this host is %s",
			         saved, host);
	return 0;
}

/* Every mandatory record must be one this reader knows how to use. */
static int check_records(struct snapshot_file *s, unsigned ncpus, struct state_reader *m)
{
	for (unsigned i = 0; i < s->reader.count; i++) {
		const struct snap_record *rec = &s->reader.records[i];
		unsigned n;
		char tail;
		bool known = !strcmp(rec->name, "manifest") || !strcmp(rec->name, "end") ||
			     !strcmp(rec->name, OMITTED_RECORD) ||
			     !strcmp(rec->name, "vm.irqchip") || !strcmp(rec->name, "vm.pit") ||
			     !strcmp(rec->name, "vm.clock") ||
			     (sscanf(rec->name, "vcpu.%u%c", &n, &tail) == 1 && n < ncpus) ||
			     (sscanf(rec->name, "ram.%u%c", &n, &tail) == 1 && n < MEM_MAX_REGIONS);
		if (!known && !strncmp(rec->name, "dev.", 4) && state_enter_map(m, "devices") == 0) {
			char want[128];
			known = state_enter_map(m, rec->name + 4) == 0 &&
				state_get_str(m, "record", want, sizeof(want)) == 0 && !strcmp(want, rec->name);
			state_leave_map(m);
			state_leave_map(m);
			if (known)
				state_leave_map(m);
		}
		if (known && (rec->flags & SNAP_REC_RAW) != (strncmp(rec->name, "ram.", 4) == 0 ? SNAP_REC_RAW : 0))
			return set_error(s->err, sizeof(s->err), "record %s has the wrong kind of payload", rec->name);
		if (!known && !(rec->flags & SNAP_REC_OPTIONAL))
			return set_error(s->err, sizeof(s->err), "unknown mandatory record '%s' (written by a newer hyve?)",
				         rec->name);
		if (!known)
			log_info("skipping unknown optional record '%s'", rec->name);
		else if (!(rec->flags & SNAP_REC_RAW) && rec->len > SNAP_MAX_CBOR_PAYLOAD)
			return set_error(s->err, sizeof(s->err), "record %s: implausible size", rec->name);
	}
	return 0;
}

/* Loads every structured record once so that a corrupt one is found before anything starts. */
static int verify_structured(struct snapshot_file *s)
{
	for (unsigned i = 0; i < s->reader.count; i++) {
		const struct snap_record *rec = &s->reader.records[i];
		uint8_t *buf;
		if (rec->flags & (SNAP_REC_RAW | SNAP_REC_OPTIONAL))
			continue;
		buf = snapr_load(&s->reader, rec);
		if (!buf)
			return -1;
		free(buf);
	}
	return 0;
}

static int check_memory(struct snapshot_file *s, struct state_reader *m, struct config *cfg)
{
	uint64_t saved, wanted, size, total = 0;
	char name[16];

	if (state_enter_map(m, "memory") < 0 || state_get_u64(m, "size", &saved) < 0 ||
	    state_enter_map(m, "regions") < 0)
		return set_error(s->err, sizeof(s->err), "manifest: memory layout missing");
	if (config_get_size(cfg, "memory.size", saved, &wanted) < 0)
		return set_error(s->err, sizeof(s->err), "memory.size is malformed");
	if (wanted != saved)
		return set_error(s->err, sizeof(s->err), "memory size mismatch: the snapshot holds %llu bytes, the configuration asks for %llu",
			         (unsigned long long)saved, (unsigned long long)wanted);
	for (unsigned i = 0; i < MEM_MAX_REGIONS; i++) {
		const struct snap_record *rec;
		snprintf(name, sizeof(name), "ram.%u", i);
		if (state_enter_map(m, name) < 0)
			break;
		rec = snapr_find(&s->reader, name);
		if (state_get_u64(m, "size", &size) < 0 || !rec || rec->len != size)
			return set_error(s->err, sizeof(s->err), "record %s missing or not the size the manifest gives", name);
		state_leave_map(m);
		total += size;
	}
	state_leave_map(m);
	state_leave_map(m);
	if (total != saved)
		return set_error(s->err, sizeof(s->err), "memory size mismatch: RAM records hold %llu bytes, the manifest says %llu",
			         (unsigned long long)total, (unsigned long long)saved);
	return 0;
}

struct snapshot_file *snapshot_open(const char *path, bool eager, struct config *cfg, const struct config *overrides)
{
	struct snapshot_file *s = calloc(1, sizeof(*s));
	struct state_reader *m = NULL;
	uint64_t ncpus = 0;

	if (!s)
		return NULL;
	s->eager = eager;
	s->reader.fd = -1;
	if (snapr_open(&s->reader, path, s->err, sizeof(s->err)) < 0)
		goto fail;
	m = load_section(s, "manifest");
	if (!m || state_get_u64(m, "vcpus", &ncpus) < 0) {
		if (m)
			set_error(s->err, sizeof(s->err), "manifest: vcpus missing");
		goto fail;
	}
	if (build_config(s, m, cfg, overrides) < 0 || check_vendor(s, m) < 0 ||
	    check_records(s, (unsigned)ncpus, m) < 0 || verify_structured(s) < 0 || check_memory(s, m, cfg) < 0)
		goto fail;
	if (eager) {
		for (unsigned i = 0; i < s->reader.count; i++)
			if ((s->reader.records[i].flags & SNAP_REC_RAW) && snapr_verify(&s->reader, &s->reader.records[i]) < 0)
				goto fail;
	}
	state_reader_free(m);
	return s;
fail:
	log_error("snapshot %s: %s", path, s->err);
	state_reader_free(m);
	snapshot_close(s);
	return NULL;
}

/* Checks that every CPUID feature bit the guest saw is one this host's KVM offers. */
static int check_features(struct snapshot_file *s, struct vm *vm, struct state_reader *vcpu0)
{
	static const struct { uint32_t fn, idx; } leaves[] = { { 1, 0 }, { 7, 0 }, { 0xd, 1 }, { 0x80000001, 0 } };
	struct kvm_cpuid2 *saved;

	if (state_enter_map(vcpu0, "cpuid") < 0)
		return set_error(s->err, sizeof(s->err), "vcpu.0: cpuid missing");
	saved = kvm_state_read_cpuid(vcpu0, s->err, sizeof(s->err));
	state_leave_map(vcpu0);
	if (!saved)
		return -1;
	for (unsigned i = 0; i < saved->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &saved->entries[i];
		for (size_t l = 0; l < sizeof(leaves) / sizeof(leaves[0]); l++) {
			if (e->function != leaves[l].fn || e->index != leaves[l].idx)
				continue;
			for (unsigned j = 0; j < vm->cpuid->nent; j++) {
				const struct kvm_cpuid_entry2 *h = &vm->cpuid->entries[j];
				struct cpuid_flags mask = cpuid_feature_mask(e->function);
				uint32_t missing_ecx, missing_edx, missing_ebx;
				if (h->function != e->function || h->index != e->index)
					continue;
				missing_ebx = e->ebx & ~h->ebx & mask.ebx;
				missing_ecx = e->ecx & ~h->ecx & mask.ecx;
				missing_edx = e->edx & ~h->edx & mask.edx;
				if (missing_ebx | missing_ecx | missing_edx) {
					set_error(s->err, sizeof(s->err),
					          "CPU feature mismatch: the guest saw CPUID 0x%x features this host lacks (ebx 0x%x ecx 0x%x edx 0x%x)",
					          e->function, missing_ebx, missing_ecx, missing_edx);
					free(saved);
					return -1;
				}
			}
		}
	}
	free(saved);
	return 0;
}

static int map_ram(struct snapshot_file *s, struct vm *vm)
{
	char name[16];

	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		struct mem_region *r = &vm->mem.regions[i];
		const struct snap_record *rec;
		snprintf(name, sizeof(name), "ram.%u", i);
		rec = snapr_find(&s->reader, name);
		if (!rec || rec->len != r->size)
			return set_error(s->err, sizeof(s->err), "record %s does not match guest memory", name);
		if (s->eager) {
			/* One pread() moves at most 2 GiB - 4 KiB: RAM regions are larger. */
			if (snapr_read_payload(&s->reader, rec, r->hva) < 0)
				return -1;
			continue;
		}
		/* Replace the anonymous pages under the same address: KVM's slot keeps pointing here. */
		if (mmap(r->hva, r->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, s->reader.fd,
			 (off_t)rec->payload_offset) == MAP_FAILED)
			return set_error(s->err, sizeof(s->err), "record %s: cannot map: %s", name, strerror(errno));
		vm->mem.file_backed = true;
	}
	return 0;
}

static int restore_devices(struct snapshot_file *s, struct vm *vm)
{
	char name[80];

	for (struct device *d = vm->devices; d; d = d->next) {
		const struct snap_record *rec;
		struct state_reader *r;
		int rc;
		snprintf(name, sizeof(name), "dev.%s", d->id);
		rec = snapr_find(&s->reader, name);
		if (!rec)
			return set_error(s->err, sizeof(s->err), "the snapshot has no state for device %s (%s)", d->id, d->model->name);
		if (rec->version > d->model->state_version)
			return set_error(s->err, sizeof(s->err), "record %s: section version %u is newer than this hyve reads (%u)",
				         name, rec->version, d->model->state_version);
		if (rec->version < device_model_oldest_state_version(d->model))
			return set_error(s->err, sizeof(s->err), "record %s: section version %u is older than this hyve reads (%u)",
				         name, rec->version, device_model_oldest_state_version(d->model));
		r = load_section(s, name);
		if (!r)
			return -1;
		rc = d->model->restore ? d->model->restore(d, r, rec->version) : -1;
		state_reader_free(r);
		if (rc < 0)
			return set_error(s->err, sizeof(s->err), "device %s (%s) could not restore its state", d->id, d->model->name);
	}
	return 0;
}

typedef int (*vm_loader)(struct vm *vm, struct state_reader *r, char *err, size_t errlen);

static int restore_vm_section(struct snapshot_file *s, struct vm *vm, const char *name, vm_loader load)
{
	struct state_reader *r = load_section(s, name);
	int rc;

	if (!r)
		return -1;
	rc = load(vm, r, s->err, sizeof(s->err));
	state_reader_free(r);
	return rc;
}

static int restore_vcpus(struct snapshot_file *s, struct vm *vm)
{
	char name[16];

	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct state_reader *r;
		int rc;
		snprintf(name, sizeof(name), "vcpu.%u", i);
		r = load_section(s, name);
		if (!r)
			return -1;
		rc = (i == 0 ? check_features(s, vm, r) : 0);
		if (rc == 0)
			rc = kvm_state_restore_vcpu(&vm->vcpus[i], r, s->err, sizeof(s->err));
		state_reader_free(r);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* Lazy restore verifies RAM after the guest has started; a mismatch stops the VM. */
static void *verify_ram(void *arg)
{
	struct snapshot_file *s = arg;
	char err[512];

	pthread_setname_np(pthread_self(), "verify-ram");
	if (sandbox_enter(SANDBOX_VERIFIER) < 0) {
		vm_request_exit(s->vm, HYVE_EXIT_ERROR);
		return NULL;
	}
	for (unsigned i = 0; i < s->reader.count; i++) {
		const struct snap_record *rec = &s->reader.records[i];
		struct snap_reader r = s->reader;
		r.err = err;
		r.errlen = sizeof(err);
		r.cancel = &s->cancel_verifier;
		if (!(rec->flags & SNAP_REC_RAW) || snapr_verify(&r, rec) == 0)
			continue;
		if (s->cancel_verifier)
			break;
		log_error("snapshot: %s; stopping the guest", err);
		vm_request_exit(s->vm, HYVE_EXIT_ERROR);
		break;
	}
	return NULL;
}

int snapshot_restore_vm(struct snapshot_file *s, struct vm *vm)
{
	s->vm = vm;
	if (map_ram(s, vm) < 0 || restore_devices(s, vm) < 0 ||
	    restore_vm_section(s, vm, "vm.irqchip", kvm_state_restore_irqchip) < 0 ||
	    restore_vm_section(s, vm, "vm.pit", kvm_state_restore_pit) < 0 || restore_vcpus(s, vm) < 0 ||
	    restore_vm_section(s, vm, "vm.clock", kvm_state_restore_clock) < 0) {
		log_error("snapshot restore: %s", s->err);
		return -1;
	}
	if (!s->eager && pthread_create(&s->verifier, NULL, verify_ram, s) == 0)
		s->verifier_started = true;
	return 0;
}

void snapshot_close(struct snapshot_file *s)
{
	if (!s)
		return;
	if (s->verifier_started) {
		s->cancel_verifier = true;
		pthread_join(s->verifier, NULL);
	}
	snapr_close(&s->reader);
	free(s);
}
