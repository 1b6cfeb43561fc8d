/*
 * QEMU's firmware configuration interface ("fw-cfg"), the one instance
 * "platform.fw-cfg", present when the VM boots firmware (lpc.bootrom).
 *
 * The guest writes an item number to the selector port (16 bits) and reads
 * the item byte by byte from the data port, or writes the guest-physical
 * address of a DMA descriptor (be32 control, be32 length, be64 address) to
 * the DMA register, high half then low half; the low half starts the
 * request and the device writes the descriptor's control word back: 0 when
 * done, the error bit when not. Items: the signature, the feature bits
 * (traditional and DMA), the vCPU count, the file directory and the named
 * files other code adds (fw_cfg_add_file()).
 *
 * No item is writable: OVMF writes to fw_cfg only for loader WRITE_POINTER
 * commands, QEMU's ramfb, SMM feature negotiation and S3, none of which
 * hyve offers. Data-port writes are ignored and DMA writes fail.
 *
 * Locking: one mutex for the selector, the read position, the DMA address
 * latch and the items, taken by every port access, by fw_cfg_add_file()
 * and by snapshots. A DMA request runs whole under it, so a select and
 * read in one descriptor is never split by another vCPU's selector write.
 */
#include "dev/fw_cfg.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/options.h"
#include "core/vm.h"
#include "snapshot/state.h"

#define DEVICE_ID "platform.fw-cfg"
#define SELECTOR_PORTS 2 /* selector at 0x510 (16-bit writes), data at 0x511 */
#define DMA_PORTS 8
#define DIR_SIZE (4 + FW_CFG_MAX_FILES * FW_CFG_DIR_ENTRY_SIZE)

static const uint8_t signature[4] = { 'Q', 'E', 'M', 'U' };
/* What reads of the DMA register return: the interface's DMA signature, big-endian. */
static const uint8_t dma_signature[DMA_PORTS] = { 'Q', 'E', 'M', 'U', ' ', 'C', 'F', 'G' };

struct fw_cfg_file {
	char name[FW_CFG_NAME_SIZE];
	uint8_t *data;
	uint32_t len;
};

struct fw_cfg {
	pthread_mutex_t lock; /* vCPU threads (ports, DMA); the main thread (files, snapshots) */
	struct vm *vm;
	uint16_t selector;
	uint32_t offset;   /* read position in the selected item, never beyond its end */
	uint32_t dma_high; /* the DMA address's high half, until the low half is written */
	uint8_t id[4];
	uint8_t nb_cpus[2];
	struct fw_cfg_file files[FW_CFG_MAX_FILES];
	unsigned nfiles;
	uint8_t dir[DIR_SIZE];
	uint32_t dir_len;
};

struct item {
	const uint8_t *data;
	uint32_t len;
};

static struct device_model fw_cfg_model;

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* The item a selector value names; length 0 and no data when it names none. */
static struct item item_of(const struct fw_cfg *s, uint16_t key)
{
	switch (key) {
	case FW_CFG_SIGNATURE:
		return (struct item){ signature, sizeof(signature) };
	case FW_CFG_ID:
		return (struct item){ s->id, sizeof(s->id) };
	case FW_CFG_NB_CPUS:
		return (struct item){ s->nb_cpus, sizeof(s->nb_cpus) };
	case FW_CFG_FILE_DIR:
		return (struct item){ s->dir, s->dir_len };
	default:
		break;
	}
	if (key >= FW_CFG_FILE_FIRST && key - FW_CFG_FILE_FIRST < (int)s->nfiles) {
		const struct fw_cfg_file *f = &s->files[key - FW_CFG_FILE_FIRST];
		return (struct item){ f->data, f->len };
	}
	return (struct item){ NULL, 0 };
}

static void rebuild_dir(struct fw_cfg *s)
{
	put_be(s->dir, s->nfiles, 4);
	for (unsigned i = 0; i < s->nfiles; i++) {
		uint8_t *e = s->dir + 4 + i * FW_CFG_DIR_ENTRY_SIZE;
		memset(e, 0, FW_CFG_DIR_ENTRY_SIZE);
		put_be(e, s->files[i].len, 4);
		put_be(e + 4, FW_CFG_FILE_FIRST + i, 2);
		memcpy(e + 8, s->files[i].name, strlen(s->files[i].name));
	}
	s->dir_len = 4 + s->nfiles * FW_CFG_DIR_ENTRY_SIZE;
}

static bool has_file(const struct fw_cfg *s, const char *name)
{
	for (unsigned i = 0; i < s->nfiles; i++)
		if (strcmp(s->files[i].name, name) == 0)
			return true;
	return false;
}

static void select_item(struct fw_cfg *s, uint16_t key)
{
	s->selector = key;
	s->offset = 0;
}

/* One data-port byte: the next byte of the item, 0 past its end (as QEMU). */
static uint8_t next_byte(struct fw_cfg *s)
{
	struct item it = item_of(s, s->selector);

	if (s->offset >= it.len)
		return 0;
	return it.data[s->offset++];
}

/* Moves the read position up to n bytes on, stopping at the item's end; returns how far it moved. */
static uint32_t advance(struct fw_cfg *s, uint32_t n)
{
	uint32_t left = item_of(s, s->selector).len - s->offset;
	uint32_t step = n < left ? n : left;

	s->offset += step;
	return step;
}

/*
 * A DMA read of `length` bytes to guest address `gpa`: the rest of the
 * item, then zeros past its end (as QEMU). The whole destination must be
 * RAM, checked before anything moves.
 */
static bool dma_read(struct fw_cfg *s, uint64_t gpa, uint32_t length)
{
	struct item it = item_of(s, s->selector);
	uint32_t start = s->offset;
	uint8_t *dst;
	uint32_t n;

	if (length == 0)
		return true;
	dst = mem_gpa_to_hva(&s->vm->mem, gpa, length);
	if (!dst)
		return false;
	n = advance(s, length);
	if (n)
		memcpy(dst, it.data + start, n);
	memset(dst + n, 0, length - n);
	mem_mark_dirty(&s->vm->mem, dst, length);
	return true;
}

/* Carries out a descriptor's request (values already copied out of guest memory); false: error. */
static bool dma_run(struct fw_cfg *s, uint32_t control, uint32_t length, uint64_t gpa)
{
	if (control & FW_CFG_DMA_SELECT)
		select_item(s, (uint16_t)(control >> 16));
	if (control & FW_CFG_DMA_READ)
		return dma_read(s, gpa, length);
	if (control & FW_CFG_DMA_WRITE)
		return false; /* no item is writable */
	if (control & FW_CFG_DMA_SKIP)
		advance(s, length);
	return true;
}

/*
 * The descriptor is copied out of guest memory once; the copy is what is
 * checked and used, whatever another vCPU writes there meanwhile. A
 * descriptor outside RAM has nowhere to report to and is ignored.
 */
static void dma_request(struct fw_cfg *s, uint64_t desc_gpa)
{
	uint8_t *desc = mem_gpa_to_hva(&s->vm->mem, desc_gpa, FW_CFG_DMA_DESC_SIZE);
	uint8_t copy[FW_CFG_DMA_DESC_SIZE];
	bool ok;

	if (!desc)
		return;
	memcpy(copy, desc, sizeof(copy));
	ok = dma_run(s, get_be32(copy), get_be32(copy + 4), get_be64(copy + 8));
	put_be(desc, ok ? 0 : FW_CFG_DMA_ERROR, 4);
	mem_mark_dirty(&s->vm->mem, desc, 4);
}

/* 0x510: selector (16-bit writes); 0x511: data (byte reads). Other accesses do nothing. */
static void selector_data_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct fw_cfg *s = opaque;

	if (is_write && offset == 0 && size == 2) {
		pthread_mutex_lock(&s->lock);
		select_item(s, (uint16_t)(data[0] | data[1] << 8));
		pthread_mutex_unlock(&s->lock);
	} else if (!is_write && offset == 1 && size == 1) {
		pthread_mutex_lock(&s->lock);
		data[0] = next_byte(s);
		pthread_mutex_unlock(&s->lock);
	} else if (!is_write) {
		memset(data, 0xff, size);
	}
}

/* 0x514-0x51B: the DMA address, big-endian 32-bit halves; reads give the DMA signature. */
static void dma_io(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct fw_cfg *s = opaque;
	uint32_t v;

	if (!is_write) {
		/* iobus keeps offset + size within the 8 registered ports. */
		memcpy(data, dma_signature + offset, size);
		return;
	}
	if (size != 4 || (offset != 0 && offset != 4))
		return;
	v = get_be32(data);
	pthread_mutex_lock(&s->lock);
	if (offset == 0) {
		s->dma_high = v;
	} else {
		uint64_t desc = (uint64_t)s->dma_high << 32 | v;
		s->dma_high = 0;
		dma_request(s, desc);
	}
	pthread_mutex_unlock(&s->lock);
}

/* ---- files ---- */

static const char *file_name_problem(const char *name)
{
	size_t n = strlen(name);

	if (n == 0)
		return "an empty name";
	if (n >= FW_CFG_NAME_SIZE)
		return "a name too long";
	return NULL;
}

int fw_cfg_add_file(struct fw_cfg *fc, const char *name, const void *data, size_t len)
{
	const char *problem = file_name_problem(name);
	uint8_t *copy;

	if (problem) {
		log_error("fw_cfg: file \"%.60s\" has %s (at most %d bytes)", name, problem, FW_CFG_NAME_SIZE - 1);
		return -1;
	}
	if (len > FW_CFG_FILE_MAX) {
		log_error("fw_cfg: file %s is %zu bytes, more than %u", name, len, FW_CFG_FILE_MAX);
		return -1;
	}
	copy = malloc(len ? len : 1);
	if (!copy)
		return -1;
	if (len)
		memcpy(copy, data, len);
	pthread_mutex_lock(&fc->lock);
	if (has_file(fc, name))
		problem = "exists already";
	else if (fc->nfiles == FW_CFG_MAX_FILES)
		problem = "does not fit: the directory is full";
	if (!problem) {
		struct fw_cfg_file *f = &fc->files[fc->nfiles++];
		snprintf(f->name, sizeof(f->name), "%s", name);
		f->data = copy;
		f->len = (uint32_t)len;
		rebuild_dir(fc);
	}
	pthread_mutex_unlock(&fc->lock);
	if (problem) {
		log_error("fw_cfg: file %s %s", name, problem);
		free(copy);
		return -1;
	}
	return 0;
}

static void free_files(struct fw_cfg_file *files, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(files[i].data);
}

/* ---- life cycle ---- */

static void fw_cfg_reset(struct device *dev)
{
	struct fw_cfg *s = dev->priv;

	pthread_mutex_lock(&s->lock);
	select_item(s, FW_CFG_SIGNATURE);
	s->dma_high = 0;
	pthread_mutex_unlock(&s->lock);
}

static const struct iobus_claim fw_cfg_ports[] = {
	{ FW_CFG_PORT_SELECTOR, SELECTOR_PORTS, selector_data_io },
	{ FW_CFG_PORT_DMA, DMA_PORTS, dma_io },
};
#define N_FW_CFG_PORTS (sizeof(fw_cfg_ports) / sizeof(fw_cfg_ports[0]))

static int fw_cfg_create(struct device *dev)
{
	struct vm *vm = dev->vm;
	struct fw_cfg *s;

	if (vm->fw_cfg) {
		log_error("%s: the VM has a firmware configuration device already", dev->id);
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	pthread_mutex_init(&s->lock, NULL);
	s->vm = vm;
	s->id[0] = FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA;
	s->nb_cpus[0] = (uint8_t)vm->ncpus;
	s->nb_cpus[1] = (uint8_t)(vm->ncpus >> 8);
	rebuild_dir(s);
	if (iobus_register_all(&vm->pio, fw_cfg_ports, N_FW_CFG_PORTS, s) < 0)
		goto fail;
	dev->priv = s;
	vm->fw_cfg = s;
	return 0;
fail:
	pthread_mutex_destroy(&s->lock);
	free(s);
	return -1;
}

static void fw_cfg_destroy(struct device *dev)
{
	struct fw_cfg *s = dev->priv;

	if (!s)
		return;
	iobus_unregister_all(&dev->vm->pio, fw_cfg_ports, N_FW_CFG_PORTS);
	if (dev->vm->fw_cfg == s)
		dev->vm->fw_cfg = NULL;
	free_files(s->files, s->nfiles);
	pthread_mutex_destroy(&s->lock);
	free(s);
	dev->priv = NULL;
}

static int fw_cfg_attach(struct vm *vm)
{
	if (!opt_str(vm->cfg, "lpc.bootrom"))
		return 0;
	return device_create(vm, &fw_cfg_model, DEVICE_ID, DEVICE_ID) ? 0 : -1;
}

/* ---- snapshot ---- */

/*
 * The files are saved with the registers rather than rebuilt from the
 * configuration on restore: the guest may be in the middle of reading one
 * (the firmware copies ACPI tables byte by byte or by DMA), and after an
 * in-process reset the firmware reads them again. Either way it must get
 * exactly the bytes it was offered before, also when the restoring hyve
 * would build its tables differently. They are small (tens of KiB).
 */
static int fw_cfg_save(struct device *dev, struct state_writer *w)
{
	struct fw_cfg *s = dev->priv;
	char key[16];

	pthread_mutex_lock(&s->lock);
	state_put_u64(w, "selector", s->selector);
	state_put_u64(w, "offset", s->offset);
	state_put_u64(w, "dma_high", s->dma_high);
	state_put_u64(w, "files", s->nfiles);
	for (unsigned i = 0; i < s->nfiles; i++) {
		snprintf(key, sizeof(key), "file%u", i);
		state_begin_map(w, key);
		state_put_str(w, "name", s->files[i].name);
		state_put_u64(w, "size", s->files[i].len);
		state_put_bytes(w, "data", s->files[i].data, s->files[i].len);
		state_end_map(w);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* One saved file into f; 0, or -1 with the reason in *why. */
static int restore_file(struct state_reader *r, const struct fw_cfg *into, struct fw_cfg_file *f,
			const char **why)
{
	uint64_t size;

	if (state_get_str(r, "name", f->name, sizeof(f->name)) < 0 || file_name_problem(f->name)) {
		*why = "a file name is missing, empty or too long";
		return -1;
	}
	if (has_file(into, f->name)) {
		*why = "a file name appears twice";
		return -1;
	}
	if (state_get_u64(r, "size", &size) < 0 || size > FW_CFG_FILE_MAX) {
		*why = "a file size is missing or too large";
		return -1;
	}
	f->data = malloc(size ? size : 1);
	if (!f->data || state_get_bytes(r, "data", f->data, size) < 0) {
		free(f->data);
		f->data = NULL;
		*why = "a file's data is missing or not of its size";
		return -1;
	}
	f->len = (uint32_t)size;
	return 0;
}

/* The saved files into t (a scratch device); 0, or -1 with the reason in *why. */
static int restore_files(struct state_reader *r, struct fw_cfg *t, const char **why)
{
	uint64_t count;
	char key[16];

	if (state_get_u64(r, "files", &count) < 0 || count > FW_CFG_MAX_FILES) {
		*why = "the file count is missing or too large";
		return -1;
	}
	for (unsigned i = 0; i < count; i++) {
		snprintf(key, sizeof(key), "file%u", i);
		if (state_enter_map(r, key) < 0) {
			*why = "a file is missing";
			return -1;
		}
		int ret = restore_file(r, t, &t->files[i], why);
		state_leave_map(r);
		if (ret < 0)
			return -1;
		t->nfiles = i + 1;
	}
	rebuild_dir(t);
	return 0;
}

static int restore_registers(struct state_reader *r, struct fw_cfg *t, const char **why)
{
	uint64_t selector, offset, dma_high;

	if (state_get_u64(r, "selector", &selector) < 0 || selector > UINT16_MAX ||
	    state_get_u64(r, "offset", &offset) < 0 || state_get_u64(r, "dma_high", &dma_high) < 0 ||
	    dma_high > UINT32_MAX) {
		*why = "selector, offset or dma_high is missing or out of range";
		return -1;
	}
	t->selector = (uint16_t)selector;
	if (offset > item_of(t, t->selector).len) {
		*why = "the read position lies beyond the selected item";
		return -1;
	}
	t->offset = (uint32_t)offset;
	t->dma_high = (uint32_t)dma_high;
	return 0;
}

static int fw_cfg_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	struct fw_cfg *s = dev->priv;
	struct fw_cfg *t;
	const char *why = NULL;

	(void)version;
	/* Built aside and checked whole; the device changes only if all of it is valid. */
	t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	memcpy(t->id, s->id, sizeof(t->id));
	memcpy(t->nb_cpus, s->nb_cpus, sizeof(t->nb_cpus));
	if (restore_files(r, t, &why) < 0 || restore_registers(r, t, &why) < 0) {
		log_error("%s: snapshot section: %s", dev->id, why);
		free_files(t->files, FW_CFG_MAX_FILES);
		free(t);
		return -1;
	}
	pthread_mutex_lock(&s->lock);
	free_files(s->files, s->nfiles);
	memcpy(s->files, t->files, sizeof(s->files));
	s->nfiles = t->nfiles;
	memcpy(s->dir, t->dir, sizeof(s->dir));
	s->dir_len = t->dir_len;
	s->selector = t->selector;
	s->offset = t->offset;
	s->dma_high = t->dma_high;
	pthread_mutex_unlock(&s->lock);
	free(t);
	return 0;
}

static struct device_model fw_cfg_model = {
	.name = "fw-cfg",
	.state_version = 1,
	.attach_order = 10,
	.attach = fw_cfg_attach,
	.create = fw_cfg_create,
	.reset = fw_cfg_reset,
	.save = fw_cfg_save,
	.restore = fw_cfg_restore,
	.destroy = fw_cfg_destroy,
};
DEVICE_MODEL(fw_cfg_model);
