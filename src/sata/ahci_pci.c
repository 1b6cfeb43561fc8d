/*
 * The AHCI controller as a PCI function, with bhyve's command line:
 *
 *   -s SLOT,ahci,hd:PATH[,opt...],cd:[PATH][,opt...],...   ports 0, 1, ... in order
 *   -s SLOT,ahci-hd,PATH[,opt...]                           one disk on port 0
 *   -s SLOT,ahci-cd,PATH[,opt...]                           one CD-ROM on port 0
 *
 *   pci.B.S.F.port.N.type (hd, cd), .path, .ro, .nocache, .direct,
 *   .sectorsize, .ser, .nmrr; options after a port apply to that port.
 *
 * PCI 8086:2922 (the ICH9's AHCI function, what Q35 firmware and every
 * guest driver know), class 0x010601. BAR5 (ABAR) holds the registers.
 * One MSI vector, INTx (pin A) otherwise. CD drives register with the VM
 * as "S:N" (slot, port) for `hyvectl cd-insert` and `cd-eject`.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "core/media.h"
#include "core/options.h"
#include "core/vm.h"
#include "pci/pci.h"
#include "sata/ahci.h"
#include "sata/ata_disk.h"
#include "sata/atapi_cd.h"
#include "snapshot/state.h"

#define ABAR 5
#define SERIAL_MAX 20

struct ahci_dev {
	struct pci_function fn;
	struct device *dev;
	struct ahci *hba;
	struct media_drive media[AHCI_MAX_PORTS];
	bool media_registered[AHCI_MAX_PORTS];
	unsigned media_port[AHCI_MAX_PORTS];
};

/* Called with the HBA's lock held; the PCI layer allows that. */
static void ahci_dev_irq(void *opaque, bool level, bool event)
{
	struct ahci_dev *s = opaque;

	if (event && pci_msi_notify(&s->fn, 0) == 0)
		return;
	if (!pci_msi_enabled(&s->fn))
		pci_intx_set(&s->fn, level);
}

static void ahci_dev_mmio(void *opaque, uint64_t off, uint8_t *data, unsigned size, bool is_write)
{
	struct ahci_dev *s = opaque;

	ahci_mmio(s->hba, off, data, size, is_write);
}

/* ---- configuration ---- */

static int set_port_key(struct config *cfg, const char *prefix, int port, const char *key, const char *value)
{
	char k[256];

	snprintf(k, sizeof(k), "%s.port.%d.%s", prefix, port, key);
	return config_set(cfg, k, value);
}

/* One token of an option list: key=value or a flag, for the port being described. */
static int port_option(struct config *cfg, const char *prefix, int port, char *tok, const char *opts)
{
	char *eq = strchr(tok, '=');

	if (port < 0) {
		log_error("%s: ahci: '%s' comes before any hd:PATH or cd:PATH port", prefix, tok);
		return -1;
	}
	if (eq)
		*eq = '\0';
	if (!*tok) {
		log_error("%s: empty option in '%s'", prefix, opts);
		return -1;
	}
	return set_port_key(cfg, prefix, port, tok, eq ? eq + 1 : "true");
}

static int ahci_parse_options(struct config *cfg, const char *prefix, const char *opts)
{
	char *copy = strdup(opts), *save = NULL;
	int port = -1, rc = 0;

	if (!copy)
		return -1;
	for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
		bool hd = strncmp(tok, "hd:", 3) == 0, cd = strncmp(tok, "cd:", 3) == 0;
		if (!hd && !cd) {
			rc = port_option(cfg, prefix, port, tok, opts);
			continue;
		}
		if (++port >= AHCI_MAX_PORTS) {
			log_error("%s: ahci: more than %d ports", prefix, AHCI_MAX_PORTS);
			rc = -1;
			break;
		}
		rc = set_port_key(cfg, prefix, port, "type", hd ? "hd" : "cd");
		if (rc == 0 && tok[3])
			rc = set_port_key(cfg, prefix, port, "path", tok + 3);
	}
	free(copy);
	return rc;
}

/* ahci-hd,PATH,opts and ahci-cd,PATH,opts: port 0 of the given type. */
static int single_port(struct config *cfg, const char *prefix, const char *opts, const char *type)
{
	char *copy = strdup(opts), *save = NULL;
	int rc;

	if (!copy)
		return -1;
	rc = set_port_key(cfg, prefix, 0, "type", type);
	char *tok = strtok_r(copy, ",", &save);
	if (rc == 0 && tok)
		rc = set_port_key(cfg, prefix, 0, "path", tok);
	while (rc == 0 && (tok = strtok_r(NULL, ",", &save)))
		rc = port_option(cfg, prefix, 0, tok, opts);
	free(copy);
	return rc;
}

static int ahci_hd_parse_options(struct config *cfg, const char *prefix, const char *opts)
{
	return single_port(cfg, prefix, opts, "hd");
}

static int ahci_cd_parse_options(struct config *cfg, const char *prefix, const char *opts)
{
	return single_port(cfg, prefix, opts, "cd");
}

static int sector_size(const char *value, char *err, size_t errlen)
{
	if (strcmp(value, "512") != 0 && strcmp(value, "4096") != 0)
		return set_error(err, errlen, "must be 512 or 4096");
	return 0;
}

static int serial_length(const char *value, char *err, size_t errlen)
{
	if (strlen(value) > SERIAL_MAX)
		return set_error(err, errlen, "the serial is longer than %d characters", SERIAL_MAX);
	return 0;
}

static const char *const port_types[] = { "hd", "cd", NULL };

static const struct option_decl ahci_options[] = {
	{ .name = "port.#.type", .type = OPTION_ENUM, .choices = port_types,
	  .help = "what port N holds: hd (SATA disk) or cd (ATAPI CD-ROM)" },
	{ .name = "port.#.path", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING,
	  .help = "the raw disk image or ISO of port N (a CD drive without one starts empty)" },
	{ .name = "port.#.ro", .type = OPTION_BOOL, .def = "false", .help = "read-only disk" },
	{ .name = "port.#.nocache", .type = OPTION_BOOL, .def = "false", .help = "open the image with O_DIRECT" },
	{ .name = "port.#.direct", .type = OPTION_BOOL, .def = "false",
	  .help = "write through: every write is on the host's disk before it completes" },
	{ .name = "port.#.sectorsize", .type = OPTION_UINT, .def = "512", .min = 512, .max = 4096,
	  .validate = sector_size, .help = "the disk's logical sector size: 512 or 4096" },
	{ .name = "port.#.ser", .type = OPTION_STRING, .validate = serial_length,
	  .help = "the drive's serial number, at most 20 characters (default: derived from the path)" },
	{ .name = "port.#.nmrr", .type = OPTION_UINT, .def = "0", .max = 65534,
	  .help = "nominal media rotation rate: 0 not reported, 1 solid state, else RPM" },
	{ 0 },
};

/* Port numbers are 0-31; the pattern "port.#" takes any number, so look. */
static int check_port_numbers(struct device *dev)
{
	const struct config *cfg = dev->vm->cfg;
	size_t plen = strlen(dev->cfg_prefix);

	for (size_t i = 0; i < config_count(cfg); i++) {
		const char *k = config_key_at(cfg, i);
		unsigned long n;
		if (strncmp(k, dev->cfg_prefix, plen) != 0 || strncmp(k + plen, ".port.", 6) != 0)
			continue;
		n = strtoul(k + plen + 6, NULL, 10);
		if (n >= AHCI_MAX_PORTS) {
			log_error("%s: ahci: port %lu does not exist (ports 0-%d)", dev->id, n, AHCI_MAX_PORTS - 1);
			return -1;
		}
	}
	return 0;
}

/* Port N's option `name` ("port.N.name"). */
static const char *port_str(struct device *dev, unsigned port, const char *name)
{
	char key[64];

	snprintf(key, sizeof(key), "port.%u.%s", port, name);
	return dev_opt_str(dev, key);
}

static bool port_bool(struct device *dev, unsigned port, const char *name)
{
	char key[64];

	snprintf(key, sizeof(key), "port.%u.%s", port, name);
	return dev_opt_bool(dev, key);
}

static uint64_t port_u64(struct device *dev, unsigned port, const char *name)
{
	char key[64];

	snprintf(key, sizeof(key), "port.%u.%s", port, name);
	return dev_opt_u64(dev, key);
}

static bool port_is_set(struct device *dev, unsigned port, const char *name)
{
	char key[64];

	snprintf(key, sizeof(key), "port.%u.%s", port, name);
	return dev_opt_is_set(dev, key);
}

static int add_disk(struct ahci_dev *s, unsigned port)
{
	struct device *dev = s->dev;
	struct ata_disk_config cfg = {
		.path = port_str(dev, port, "path"),
		.ro = port_bool(dev, port, "ro"),
		.nocache = port_bool(dev, port, "nocache"),
		.direct = port_bool(dev, port, "direct"),
		.sectorsize = (uint32_t)port_u64(dev, port, "sectorsize"),
		.serial = port_str(dev, port, "ser"),
		.rotation = (uint16_t)port_u64(dev, port, "nmrr"),
	};
	struct ata_disk *d;

	if (!cfg.path) {
		log_error("%s: ahci: the disk on port %u needs an image (hd:PATH or %s.port.%u.path=PATH)", dev->id, port,
			  dev->cfg_prefix, port);
		return -1;
	}
	if (!(d = ata_disk_new(dev->id, &cfg)))
		return -1;
	if (ahci_attach(s->hba, port, d, NULL) < 0) {
		ata_disk_free(d);
		return -1;
	}
	return 0;
}

/*
 * On the main thread (control socket). The configuration follows the disc:
 * it is the one description of the machine, so a snapshot taken later, and
 * the restore of it, have the disc that is in the drive.
 */
static int media_change(struct media_drive *m, int fd, const char *path, bool force, char *err, size_t errlen)
{
	struct ahci_dev *s = m->opaque;
	unsigned port = s->media_port[m - s->media];
	char key[128];

	if (ahci_cd_change(s->hba, port, fd, path, force, err, errlen) < 0)
		return -1;
	snprintf(key, sizeof(key), "%s.port.%u.path", s->dev->cfg_prefix, port);
	if (fd < 0)
		config_unset(s->dev->vm->cfg, key);
	else if (config_set(s->dev->vm->cfg, key, path) < 0)
		log_warn("%s: the configuration could not record %s in drive %s", s->dev->id, path, m->name);
	return 0;
}

static int add_cd(struct ahci_dev *s, unsigned port)
{
	struct device *dev = s->dev;
	const char *path = port_str(dev, port, "path"), *ser = port_str(dev, port, "ser");
	char serial[SERIAL_MAX + 1];
	struct atapi_cd *cd;
	struct media_drive *m = &s->media[port];

	if (ser)
		snprintf(serial, sizeof(serial), "%s", ser);
	else
		snprintf(serial, sizeof(serial), "HYVE-CD-%02u-%02u-%u", s->fn.slot, s->fn.func, port);
	if (!(cd = atapi_cd_new(dev->id, path, serial)))
		return -1;
	if (ahci_attach(s->hba, port, NULL, cd) < 0) {
		atapi_cd_free(cd);
		return -1;
	}
	if (s->fn.func)
		snprintf(m->name, sizeof(m->name), "%u.%u:%u", s->fn.slot, s->fn.func, port);
	else
		snprintf(m->name, sizeof(m->name), "%u:%u", s->fn.slot, port);
	m->change = media_change;
	m->opaque = s;
	s->media_port[port] = port;
	media_drive_register(dev->vm, m);
	s->media_registered[port] = true;
	return 0;
}

static int add_ports(struct ahci_dev *s)
{
	if (check_port_numbers(s->dev) < 0)
		return -1;
	/* The shorthands always describe port 0, also when -s gave no options at all. */
	if (strcmp(s->dev->model->name, "ahci") != 0 && !port_is_set(s->dev, 0, "type")) {
		bool cd = strcmp(s->dev->model->name, "ahci-cd") == 0;
		if (!cd) {
			log_error("%s: ahci-hd needs a disk image (-s SLOT,ahci-hd,PATH)", s->dev->id);
			return -1;
		}
		return add_cd(s, 0); /* an empty drive */
	}
	for (unsigned p = 0; p < AHCI_MAX_PORTS; p++) {
		if (!port_is_set(s->dev, p, "type")) {
			if (port_is_set(s->dev, p, "path")) {
				log_error("%s: ahci: port %u has a path but no type (hd or cd)", s->dev->id, p);
				return -1;
			}
			continue;
		}
		bool cd = strcmp(port_str(s->dev, p, "type"), "cd") == 0;
		if ((cd ? add_cd(s, p) : add_disk(s, p)) < 0)
			return -1;
	}
	return 0;
}

/* ---- the device ---- */

static void ahci_dev_destroy(struct device *dev)
{
	struct ahci_dev *s = dev->priv;

	if (!s)
		return;
	for (unsigned p = 0; p < AHCI_MAX_PORTS; p++)
		if (s->media_registered[p])
			media_drive_unregister(dev->vm, &s->media[p]);
	if (s->fn.dev)
		pci_function_destroy(&s->fn);
	ahci_free(s->hba); /* stops the I/O thread first, then flushes and closes the images */
	free(s);
	dev->priv = NULL;
}

static int ahci_dev_create(struct device *dev)
{
	struct ahci_dev *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	dev->priv = s;
	s->dev = dev;
	if (pci_function_init(&s->fn, dev, 0x8086, 0x2922, 0x01, 0x06, 0x01) < 0)
		goto fail;
	pci_set_subsystem(&s->fn, 0x1af4, 0x1100);
	pci_set_revision(&s->fn, 0x02);
	if (!(s->hba = ahci_new(dev->vm, dev->id, ahci_dev_irq, s)) || add_ports(s) < 0)
		goto fail;
	if (pci_bar_add(&s->fn, ABAR, PCI_BAR_MEM32, AHCI_MMIO_SIZE, ahci_dev_mmio, s) < 0 ||
	    pci_msi_init(&s->fn, 1) < 0 || pci_intx_request(&s->fn) < 0 || ahci_start(s->hba) < 0)
		goto fail;
	return 0;
fail:
	ahci_dev_destroy(dev);
	return -1;
}

static void ahci_dev_reset(struct device *dev)
{
	struct ahci_dev *s = dev->priv;

	pci_function_reset(&s->fn);
	ahci_reset(s->hba);
}

static void ahci_dev_run_state(struct device *dev, bool running)
{
	struct ahci_dev *s = dev->priv;

	ahci_set_running(s->hba, running);
}

static int ahci_dev_save(struct device *dev, struct state_writer *w)
{
	struct ahci_dev *s = dev->priv;

	pci_function_save(&s->fn, w);
	ahci_save(s->hba, w);
	return 0;
}

static int ahci_dev_restore(struct device *dev, struct state_reader *r, unsigned version)
{
	struct ahci_dev *s = dev->priv;

	(void)version;
	if (pci_function_restore(&s->fn, r) < 0)
		return -1;
	return ahci_restore(s->hba, r);
}

static bool is_ahci_model(const struct device_model *m);

struct ahci *ahci_of_device(struct device *dev)
{
	struct ahci_dev *s = dev->priv;

	return s && is_ahci_model(dev->model) ? s->hba : NULL;
}

#define AHCI_MODEL(var, model_name, parse)                                                \
	static struct device_model var = {                                                \
		.name = model_name,                                                       \
		.state_version = 1,                                                       \
		.on_pci = true,                                                           \
		.options = ahci_options,                                                  \
		.parse_slot_options = parse,                                              \
		.create = ahci_dev_create,                                                \
		.reset = ahci_dev_reset,                                                  \
		.save = ahci_dev_save,                                                    \
		.restore = ahci_dev_restore,                                              \
		.run_state = ahci_dev_run_state,                                          \
		.destroy = ahci_dev_destroy,                                              \
	};                                                                                \
	DEVICE_MODEL(var)

AHCI_MODEL(ahci_model, "ahci", ahci_parse_options);
AHCI_MODEL(ahci_hd_model, "ahci-hd", ahci_hd_parse_options);
AHCI_MODEL(ahci_cd_model, "ahci-cd", ahci_cd_parse_options);

static bool is_ahci_model(const struct device_model *m)
{
	return m == &ahci_model || m == &ahci_hd_model || m == &ahci_cd_model;
}
