/*
 * UEFI firmware below 4 GiB ("-l bootrom,CODE[,VARS]", dev/bootrom.h).
 *
 * Layout: CODE ends at 4 GiB, the variable store lies directly below it
 * (OVMF's 4 MiB build: store 0xFFC00000-0xFFC83FFF, code
 * 0xFFC84000-0xFFFFFFFF). OVMF finds both from its own build-time layout,
 * which is why CODE and VARS must come from the same build (together a
 * whole flash device: a power of two).
 *
 * CODE is a private copy in a read-only KVM memory slot: the guest reads
 * and executes it without exits; its writes exit and are ignored (said
 * once in the log). The range is also registered on the MMIO bus so that
 * nothing else claims it.
 *
 * VARS is flash (dev/pflash.h) behind trapped MMIO. While the flash is in
 * read-array mode -- nearly always: OVMF returns it there after every
 * write -- a read-only slot over the private copy serves reads without
 * exits (OVMF reads the whole store at every boot, 8 bytes per exit
 * otherwise); a guest write still exits, and the first command that
 * leaves read-array mode removes the slot (under the device lock, before
 * the write returns) so that status reads reach the device. The copy is the
 * slot's memory, so reads through the slot always see what was programmed.
 *
 * Snapshots: the store's contents and the flash command state are in the
 * device section; on restore they replace the VARS file's contents. Why not
 * only check the file as disks are checked: the firmware keeps a cache of
 * the store and the fault-tolerant-write state in guest RAM, and a store
 * that disagrees with them is corrupted by the next write (programming
 * only clears bits); the store is small (528 KiB); and a combined image's
 * store exists nowhere else. CODE is checked instead: a different size is
 * a different layout (refused), different bytes of the same size (a
 * package update) are reported.
 *
 * Threads: vCPU threads call the MMIO handlers; `lock` serialises the
 * flash and the slot's mapping.
 */
#include "bootrom.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "boot/fwimage.h"
#include "core/config.h"
#include "core/devmem.h"
#include "core/device.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/options.h"
#include "core/platform.h"
#include "core/vm.h"
#include "dev/pflash.h"
#include "snapshot/state.h"

#define DEVICE_ID "bootrom"
#define RESET_VECTOR_BYTES 16

struct bootrom {
	struct device *dev;
	struct bootrom_images img;
	uint64_t code_gpa, vars_gpa;
	uint64_t code_hash;
	int code_slot, vars_slot;
	char vars_name[256];         /* for messages */
	pthread_mutex_t lock;        /* flash and vars_mapped */
	struct pflash flash;
	bool vars_mapped;
	bool vars_map_failed;        /* KVM refused the slot once: reads stay trapped (correct, slower) */
	bool code_registered, vars_registered; /* on the MMIO bus */
	bool code_write_logged;      /* atomic */
};

static struct device_model bootrom_model;

/* ---- loading and checking the files ---- */

static uint8_t *alloc_pages(uint64_t size)
{
	void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Reads all of fd (size bytes) into fresh pages. */
static uint8_t *read_all(int fd, uint64_t size)
{
	uint8_t *buf = alloc_pages(size);
	uint64_t off = 0;

	while (buf && off < size) {
		ssize_t n = pread(fd, buf + off, (size_t)(size - off), (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			munmap(buf, (size_t)size);
			return NULL;
		}
		off += (uint64_t)n;
	}
	return buf;
}

/* Size checks shared by both files: a regular file, whole 4 KiB blocks, not too large. */
static int check_size(const char *what, const char *path, int fd, uint64_t *size, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return set_error(err, errlen, "%s %s: not a regular file", what, path);
	*size = (uint64_t)st.st_size;
	if (*size == 0 || *size % PFLASH_BLOCK)
		return set_error(err, errlen, "%s %s: %llu bytes is not a whole number of 4 KiB blocks (truncated?)", what,
				 path, (unsigned long long)*size);
	if (*size > BOOTROM_MAX_SIZE)
		return set_error(err, errlen, "%s %s: larger than 16 MiB", what, path);
	return 0;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* What OVMF needs to find in CODE; *vars_size is the store a combined image begins with (0: none). */
static int check_code(const char *path, const uint8_t *code, uint64_t size, uint64_t *vars_size, char *err,
		      size_t errlen)
{
	char why[160];
	const uint8_t *tail = code + size - RESET_VECTOR_BYTES;
	int smm;

	if (fwimage_check_volumes(code, (size_t)size, why, sizeof(why)) < 0)
		return set_error(err, errlen, "bootrom %s: not a UEFI firmware image (%s)", path, why);
	*vars_size = fwimage_is_var_store(code, (size_t)size) ? fwimage_volume_length(code) : 0;
	if (*vars_size == size)
		return set_error(err, errlen, "bootrom %s: a variable store, not firmware code (give it as VARS: -l bootrom,CODE,VARS)", path);
	if (all_bytes(tail, RESET_VECTOR_BYTES, 0) || all_bytes(tail, RESET_VECTOR_BYTES, 0xff))
		return set_error(err, errlen, "bootrom %s: no reset vector in its last 16 bytes", path);
	smm = fwimage_needs_smm(code, (size_t)size, why, sizeof(why));
	if (smm < 0)
		return set_error(err, errlen, "bootrom %s: %s", path, why);
	if (smm)
		return set_error(err, errlen, "bootrom %s: a Secure Boot build that needs SMM, which hyve does not provide "
				 "(use OVMF_CODE_4M.fd)", path);
	return 0;
}

static int load_code(const char *path, struct bootrom_images *img, uint64_t *vars_size, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = -1;

	if (fd < 0)
		return set_error(err, errlen, "bootrom %s: %s", path, strerror(errno));
	if (check_size("bootrom", path, fd, &img->code_size, err, errlen) == 0) {
		img->code = read_all(fd, img->code_size);
		if (!img->code)
			set_error(err, errlen, "bootrom %s: cannot read: %s", path, strerror(errno));
		else
			rc = check_code(path, img->code, img->code_size, vars_size, err, errlen);
	}
	close(fd);
	return rc;
}

/* Opens VARS for writing through; refuses a file the user made read-only, and one another VM uses. */
static int open_vars(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
		return set_error(err, errlen, "bootrom VARS %s: read-only (%s); hyve writes firmware variables to it: "
				 "give a writable per-VM copy", path, strerror(errno));
	if (fd < 0)
		return set_error(err, errlen, "bootrom VARS %s: %s", path, strerror(errno));
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && !(st.st_mode & 0222)) {
		close(fd);
		return set_error(err, errlen, "bootrom VARS %s: read-only (mode %04o); hyve writes firmware variables to "
				 "it: give a writable per-VM copy", path, (unsigned)(st.st_mode & 07777));
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return set_error(err, errlen, "bootrom VARS %s: in use by another VM (each VM needs its own copy)", path);
	}
	return fd;
}

static bool power_of_two(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int load_vars(const char *code_path, const char *path, struct bootrom_images *img, char *err, size_t errlen)
{
	img->vars_fd = open_vars(path, err, errlen);
	if (img->vars_fd < 0)
		return -1;
	if (check_size("bootrom VARS", path, img->vars_fd, &img->vars_size, err, errlen) < 0)
		return -1;
	img->vars = read_all(img->vars_fd, img->vars_size);
	if (!img->vars)
		return set_error(err, errlen, "bootrom VARS %s: cannot read: %s", path, strerror(errno));
	if (!fwimage_is_var_store(img->vars, (size_t)img->vars_size) ||
	    fwimage_volume_length(img->vars) != img->vars_size)
		return set_error(err, errlen, "bootrom VARS %s: not a UEFI variable store (such as OVMF_VARS_4M.fd)", path);
	if (!power_of_two(img->vars_size + img->code_size) || img->vars_size + img->code_size > BOOTROM_MAX_SIZE)
		return set_error(err, errlen, "bootrom VARS %s does not belong to %s: together %llu bytes, not one flash "
				 "device of a firmware build (OVMF_VARS_4M.fd goes with OVMF_CODE_4M.fd)", path, code_path,
				 (unsigned long long)(img->vars_size + img->code_size));
	return 0;
}

/* A combined image: its leading store becomes the flash; the rest is the code. */
static int split_combined(struct bootrom_images *img, uint64_t vars_size, char *err, size_t errlen)
{
	uint8_t *code = alloc_pages(img->code_size - vars_size);

	img->vars = alloc_pages(vars_size);
	if (!code || !img->vars) {
		if (code)
			munmap(code, (size_t)(img->code_size - vars_size));
		return set_error(err, errlen, "bootrom: out of memory");
	}
	memcpy(img->vars, img->code, (size_t)vars_size);
	memcpy(code, img->code + vars_size, (size_t)(img->code_size - vars_size));
	munmap(img->code, (size_t)img->code_size);
	img->code = code;
	img->code_size -= vars_size;
	img->vars_size = vars_size;
	return 0;
}

int bootrom_load(const char *code_path, const char *vars_path, struct bootrom_images *out, char *err,
		 size_t errlen)
{
	struct bootrom_images img = { .vars_fd = -1 };
	uint64_t combined_vars = 0;
	int rc;

	if (load_code(code_path, &img, &combined_vars, err, errlen) < 0)
		rc = -1;
	else if (combined_vars && vars_path)
		rc = set_error(err, errlen, "bootrom %s: a combined image with its own variable store (such as OVMF.fd): "
			       "give it without VARS, or use OVMF_CODE_4M.fd with VARS", code_path);
	else if (combined_vars)
		rc = split_combined(&img, combined_vars, err, errlen);
	else if (!vars_path)
		rc = set_error(err, errlen, "bootrom %s: firmware code needs its variable store: -l bootrom,%s,VARS with a "
			       "per-VM copy of the matching OVMF_VARS file", code_path, code_path);
	else
		rc = load_vars(code_path, vars_path, &img, err, errlen);
	if (rc < 0) {
		bootrom_images_free(&img);
		return -1;
	}
	/* Nothing in hyve writes the code: make that a fault rather than a convention. */
	mprotect(img.code, (size_t)img.code_size, PROT_READ);
	*out = img;
	return 0;
}

void bootrom_images_free(struct bootrom_images *img)
{
	if (img->code)
		munmap(img->code, (size_t)img->code_size);
	if (img->vars)
		munmap(img->vars, (size_t)img->vars_size);
	if (img->vars_fd >= 0)
		close(img->vars_fd);
	*img = (struct bootrom_images){ .vars_fd = -1 };
}

/* ---- guest accesses ---- */

/* Reads arrive only when KVM emulates an instruction on the slot; writes always (the slot is read-only). */
static void code_mmio(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct bootrom *s = opaque;

	if (offset >= s->img.code_size || size > s->img.code_size - offset) {
		if (!is_write)
			memset(data, 0xff, size);
		return;
	}
	if (!is_write) {
		memcpy(data, s->img.code + offset, size);
		return;
	}
	if (!__atomic_exchange_n(&s->code_write_logged, true, __ATOMIC_RELAXED))
		log_info("%s: the guest wrote to the read-only firmware code at 0x%llx; such writes are ignored",
			 s->dev->id, (unsigned long long)(s->code_gpa + offset));
}

/* Maps the store's slot exactly while reads may bypass the device (lock held). */
static void follow_mode(struct bootrom *s)
{
	bool want = pflash_reads_array(&s->flash);

	if (want == s->vars_mapped || (want && s->vars_map_failed))
		return;
	if (want) {
		s->vars_mapped = vm_map_readonly_memory(s->dev->vm, s->vars_slot, s->vars_gpa, s->img.vars,
							 s->img.vars_size) == 0;
		s->vars_map_failed = !s->vars_mapped;
	} else {
		vm_unmap_device_memory(s->dev->vm, s->vars_slot);
		s->vars_mapped = false;
	}
}

/* Byte-wide flash: a wider access is that many byte accesses at consecutive addresses. */
static void vars_mmio(void *opaque, uint64_t offset, uint8_t *data, unsigned size, bool is_write)
{
	struct bootrom *s = opaque;

	if (offset >= s->img.vars_size || size > s->img.vars_size - offset) {
		if (!is_write)
			memset(data, 0xff, size);
		return;
	}
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < size; i++) {
		if (is_write)
			pflash_write(&s->flash, offset + i, data[i]);
		else
			data[i] = pflash_read(&s->flash, offset + i);
	}
	follow_mode(s);
	pthread_mutex_unlock(&s->lock);
}

/* ---- the device ---- */

static int map_images(struct bootrom *s)
{
	struct vm *vm = s->dev->vm;

	s->code_gpa = MEM_4G - s->img.code_size;
	s->vars_gpa = s->code_gpa - s->img.vars_size;
	if (!vm_can_map_readonly(vm))
		return -1;
	if ((s->code_slot = vm_devmem_slot_alloc(vm)) < 0 || (s->vars_slot = vm_devmem_slot_alloc(vm)) < 0)
		return -1;
	if (vm_map_readonly_memory(vm, s->code_slot, s->code_gpa, s->img.code, s->img.code_size) < 0)
		return -1;
	if (iobus_register(&vm->mmio, s->code_gpa, s->img.code_size, code_mmio, s) < 0)
		return -1;
	s->code_registered = true;
	if (iobus_register(&vm->mmio, s->vars_gpa, s->img.vars_size, vars_mmio, s) < 0)
		return -1;
	s->vars_registered = true;
	pthread_mutex_lock(&s->lock);
	follow_mode(s);
	pthread_mutex_unlock(&s->lock);
	return s->vars_mapped ? 0 : -1;
}

static void bootrom_destroy(struct device *dev)
{
	struct bootrom *s = dev->priv;

	if (!s)
		return;
	if (s->code_registered)
		iobus_unregister(&dev->vm->mmio, s->code_gpa);
	if (s->vars_registered)
		iobus_unregister(&dev->vm->mmio, s->vars_gpa);
	if (s->vars_slot >= 0)
		vm_devmem_slot_free(dev->vm, s->vars_slot);
	if (s->code_slot >= 0)
		vm_devmem_slot_free(dev->vm, s->code_slot);
	pflash_sync(&s->flash);
	bootrom_images_free(&s->img);
	pthread_mutex_destroy(&s->lock);
	free(s);
	dev->priv = NULL;
}

static int bootrom_create(struct device *dev)
{
	const char *code = opt_str(dev->vm->cfg, "lpc.bootrom");
	const char *vars = opt_str(dev->vm->cfg, "lpc.bootvars");
	struct bootrom *s = calloc(1, sizeof(*s));
	char err[512];

	if (!s)
		return -1;
	s->dev = dev;
	s->code_slot = s->vars_slot = -1;
	s->img.vars_fd = s->flash.fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	dev->priv = s;
	if (bootrom_load(code, vars, &s->img, err, sizeof(err)) < 0) {
		log_error("%s", err);
		bootrom_destroy(dev);
		return -1;
	}
	snprintf(s->vars_name, sizeof(s->vars_name), "bootrom VARS %s", vars ? vars : "(in memory)");
	pflash_init(&s->flash, s->img.vars, s->img.vars_size, s->img.vars_fd, s->vars_name);
	s->code_hash = XXH3_64bits(s->img.code, (size_t)s->img.code_size);
	if (map_images(s) < 0) {
		bootrom_destroy(dev);
		return -1;
	}
	if (!vars)
		log_info("bootrom %s: firmware variables live in memory for this VM's lifetime", code);
	return 0;
}

static void bootrom_reset(struct device *dev)
{
	struct bootrom *s = dev->priv;

	pthread_mutex_lock(&s->lock);
	pflash_sync(&s->flash);
	pflash_reset(&s->flash);
	follow_mode(s);
	pthread_mutex_unlock(&s->lock);
}

/*
 * OVMF recognises the platform by the host bridge's id at 0:0.0 (Q35's
 * 8086:29C0) and reaches the ACPI PM registers only through the ICH9 LPC
 * bridge at exactly 0:1f.0. So firmware boot needs the q35 layout, the
 * default host bridge with its ids, and the LPC bridge in slot 31: added
 * there when the configuration has none. 0, or -1 after logging.
 */
#define LPC_NODE "pci.0.31.0"
#define FIRMWARE_LPC_SLOT 31

static int lpc_elsewhere(const struct config *cfg)
{
	for (size_t i = 0; i < config_count(cfg); i++) {
		const char *key = config_key_at(cfg, i), *value;
		unsigned s, f;
		int n = 0;

		if (sscanf(key, "pci.0.%u.%u.device%n", &s, &f, &n) != 2 || key[n] != '\0')
			continue;
		value = config_get(cfg, key);
		if (value && strcmp(value, "lpc") == 0 && (s != FIRMWARE_LPC_SLOT || f != 0)) {
			log_error("lpc.bootrom: the LPC bridge must be at slot 31 function 0 for the firmware "
				  "(-s 31,lpc), not at pci.0.%u.%u", s, f);
			return -1;
		}
	}
	return 0;
}

static int firmware_platform_check(struct vm *vm)
{
	const char *bridge = config_get(vm->cfg, "pci.0.0.0.device");
	const char *lpc = config_get(vm->cfg, LPC_NODE ".device");

	if (!vm->platform->q35) {
		log_error("lpc.bootrom: the firmware needs platform.layout=q35, not %s", vm->platform->name);
		return -1;
	}
	if ((bridge && strcmp(bridge, "hostbridge") != 0) || config_get(vm->cfg, "pci.0.0.0.vendor") ||
	    config_get(vm->cfg, "pci.0.0.0.devid")) {
		log_error("lpc.bootrom: the firmware needs the Q35 host bridge at slot 0 with its own ids "
			  "(-s 0,hostbridge without vendor or devid)");
		return -1;
	}
	if (lpc && strcmp(lpc, "lpc") != 0) {
		log_error("lpc.bootrom: slot 31 holds '%s', but the firmware needs the LPC bridge there (-s 31,lpc)",
			  lpc);
		return -1;
	}
	if (lpc_elsewhere(vm->cfg) < 0)
		return -1;
	return lpc ? 0 : config_set(vm->cfg, LPC_NODE ".device", "lpc");
}

static int bootrom_attach(struct vm *vm)
{
	if (!opt_str(vm->cfg, "lpc.bootrom"))
		return 0;
	if (firmware_platform_check(vm) < 0)
		return -1;
	return device_create(vm, &bootrom_model, DEVICE_ID, "lpc") ? 0 : -1;
}

/* ---- snapshot ---- */

static int bootrom_save(struct device *dev, struct state_writer *w)
{
	struct bootrom *s = dev->priv;

	pthread_mutex_lock(&s->lock);
	pflash_sync(&s->flash);
	state_put_u64(w, "code_size", s->img.code_size);
	state_put_u64(w, "code_xxh3", s->code_hash);
	state_put_bytes(w, "vars", s->img.vars, (size_t)s->img.vars_size);
	state_begin_map(w, "flash");
	pflash_save(&s->flash, w);
	state_end_map(w);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* The same firmware layout, its store's contents and the command state (lock held). */
static int restore_locked(struct bootrom *s, struct state_reader *r, uint8_t *vars)
{
	uint64_t code_size, hash;

	if (state_get_u64(r, "code_size", &code_size) < 0 || code_size != s->img.code_size) {
		log_error("%s: the snapshot was taken with firmware code of another size than %s's %llu bytes",
			  s->dev->id, opt_str(s->dev->vm->cfg, "lpc.bootrom"), (unsigned long long)s->img.code_size);
		return -1;
	}
	if (state_get_u64(r, "code_xxh3", &hash) == 0 && hash != s->code_hash)
		log_warn("%s: firmware code %s changed since the snapshot was taken; it runs at the guest's next reset",
			 s->dev->id, opt_str(s->dev->vm->cfg, "lpc.bootrom"));
	if (state_get_bytes(r, "vars", vars, (size_t)s->img.vars_size) < 0) {
		log_error("%s: the snapshot's variable store is missing or not %llu bytes like this VM's", s->dev->id,
			  (unsigned long long)s->img.vars_size);
		return -1;
	}
	if (state_enter_map(r, "flash") < 0 || pflash_restore(&s->flash, r) < 0) {
		log_error("%s: the snapshot's flash state is missing or malformed", s->dev->id);
		return -1;
	}
	state_leave_map(r);
	return pflash_replace(&s->flash, vars);
}

static int bootrom_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	(void)version;
	struct bootrom *s = dev->priv;
	uint8_t *vars;
	int rc;

	vars = malloc((size_t)s->img.vars_size);
	if (!vars)
		return -1;
	pthread_mutex_lock(&s->lock);
	rc = restore_locked(s, r, vars);
	if (rc < 0)
		pflash_reset(&s->flash);
	follow_mode(s);
	pthread_mutex_unlock(&s->lock);
	free(vars);
	return rc;
}

static struct device_model bootrom_model = {
	.name = "bootrom",
	.state_version = 1,
	.attach_order = 5,
	.attach = bootrom_attach,
	.create = bootrom_create,
	.reset = bootrom_reset,
	.save = bootrom_save,
	.restore = bootrom_restore,
	.destroy = bootrom_destroy,
};
DEVICE_MODEL(bootrom_model);
