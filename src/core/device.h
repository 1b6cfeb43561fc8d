/*
 * The one interface every device model implements. A model registers
 * itself with DEVICE_MODEL(); the core never lists devices.
 *
 * Life cycle: attach() (optional, for models not enumerated by a bus) reads
 * the configuration and calls device_create() once per instance; create()
 * initialises an instance from its declared options (dev_opt_*()) and
 * registers its I/O ranges; reset() returns it to power-on state; save() and
 * restore() move its full state to and from a snapshot section; destroy()
 * releases it. acpi_dsdt() describes it to the guest's OS in the DSDT, so
 * adding a device never touches the ACPI table code.
 *
 * Pausing: vCPUs are the only callers of I/O handlers, but some models also
 * act on their own (timers, host input, I/O threads). run_state() tells
 * them when the VM pauses and resumes; while paused they hold still
 * (defer, never drop), so a snapshot sees every device consistent with the
 * vCPUs, the interrupt controllers and guest memory.
 */
#ifndef HYVE_DEVICE_H
#define HYVE_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct config;
struct device;
struct state_writer;
struct state_reader;
struct option_decl;
struct aml_buf;

struct device_model {
	const char *name;        /* as used in configuration ("uart", "rtc", ...) */
	unsigned state_version;  /* version of the snapshot section save() writes */
	/* Oldest section version restore() reads; 0: state_version only. */
	unsigned min_state_version;
	bool on_pci;             /* placed with -s SLOT,NAME; created by the PCI bus */
	int attach_order;        /* attach() runs in increasing order */
	/*
	 * The options an instance reads under its node (src/core/options.h),
	 * ending with an entry whose name is NULL; NULL when it reads none.
	 * Every key under the node must be one of them.
	 */
	const struct option_decl *options;
	int (*attach)(struct vm *vm);
	/*
	 * Turns the OPTS of "-s SLOT,NAME,OPTS" into configuration under
	 * prefix; NULL means the generic form (key=value or flag tokens).
	 */
	int (*parse_slot_options)(struct config *cfg, const char *prefix, const char *opts);
	int (*create)(struct device *dev);
	void (*reset)(struct device *dev);
	/* NULL save means the model cannot be snapshotted: snapshots are refused. */
	int (*save)(struct device *dev, struct state_writer *w);
	/*
	 * `version` is the section version found in the snapshot, already
	 * checked by the snapshot reader to lie between min_state_version and
	 * state_version.
	 */
	int (*restore)(struct device *dev, struct state_reader *r, unsigned version);
	void (*destroy)(struct device *dev);
	/*
	 * Optional. running false: the vCPUs are parked; stop touching guest
	 * memory and interrupt lines until called with true (before the vCPUs
	 * run again). Called on the event-loop thread, once per change.
	 */
	void (*run_state)(struct device *dev, bool running);
	/*
	 * Optional, for a PCI model that takes bootindex=: its OpenFirmware
	 * node name ("scsi", "ethernet") and a node below it or NULL, for the
	 * firmware's boot order (boot/bootorder.h).
	 */
	const char *ofw_name;
	const char *ofw_child;
	/*
	 * Optional: the instance's own entry in the DSDT (src/boot/aml.h), how
	 * the guest's OS finds it. Called for every device, in creation order,
	 * each time the ACPI tables are built (direct boot and fw_cfg alike),
	 * inside Scope(\_SB): relative names land in \_SB, absolute ones
	 * (\_S5) where they say. Encoding errors are sticky in the buffer,
	 * which the table builder checks once at the end. Describe only what
	 * the instance really decodes: the guest trusts it.
	 */
	void (*acpi_dsdt)(struct device *dev, struct aml_buf *b);
	const struct device_model *next_registered;
};

struct device {
	const struct device_model *model;
	struct vm *vm;
	char id[64];         /* unique bus address, e.g. "lpc.com1", "pci.0.3.0" */
	char cfg_prefix[64]; /* configuration node the instance reads */
	void *priv;          /* model state */
	struct device *next;
};

void device_model_register(struct device_model *model);
const struct device_model *device_model_find(const char *name);
const struct device_model *device_model_first(void);
/* The oldest snapshot section version the model's restore() reads. */
unsigned device_model_oldest_state_version(const struct device_model *model);

#define DEVICE_MODEL(var)                                                              \
	static void __attribute__((constructor)) register_##var(void)                 \
	{                                                                              \
		device_model_register(&var);                                           \
	}

/* Creates an instance and adds it to vm's device list; NULL after logging. */
struct device *device_create(struct vm *vm, const struct device_model *model, const char *id,
			     const char *cfg_prefix);
/* Runs every registered model's attach() in order; 0 or -1. */
int devices_attach_all(struct vm *vm);
void devices_reset_all(struct vm *vm);
/* Calls every device's run_state(): the VM paused (false) or resumes (true). */
void devices_set_running(struct vm *vm, bool running);
void devices_destroy_all(struct vm *vm);
struct device *device_find(struct vm *vm, const char *id);

#endif
