/*
 * Saving a running VM to a snapshot file and starting a VM from one.
 * The format is specified in docs/snapshot-format.md.
 */
#ifndef HYVE_SNAPSHOT_H
#define HYVE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct vm;
struct config;

/*
 * Writes the paused VM's full state to `path` (through a temporary file
 * beside it, fsync'ed and renamed). The caller pauses the VM first and
 * resumes it (or exits) afterwards. Returns 0, or -1 with a one-line reason
 * in err (the VM is untouched and nothing is left at path).
 */
int snapshot_save(struct vm *vm, const char *path, char *err, size_t errlen);

/*
 * Live snapshot (docs/snapshot-format.md, "Live snapshots"): RAM is written
 * while the guest runs, in passes, then the VM is paused for the pages
 * written last and the state of every vCPU and device.
 */
#define SNAPSHOT_LIVE_MAX_PASSES 8    /* passes while the guest runs, the first (all of RAM) included */
#define SNAPSHOT_LIVE_FEW_PAGES 1024  /* this few dirty pages (4 MiB) are left for the pause */

struct snapshot_live_report {
	unsigned passes;                                /* written while the guest ran */
	uint64_t pass_bytes[SNAPSHOT_LIVE_MAX_PASSES];  /* RAM bytes each pass wrote (zero pages are holes) */
	uint64_t pause_pages, pause_bytes;              /* dirty pages the pause wrote again, and their bytes */
	uint64_t pause_ns;                              /* from asking for the pause until the VM runs again */
	uint64_t total_ns;
};

/* How the writer, on its own thread, has the VM paused and resumed (by the thread that may: control.c). */
struct snapshot_live_ops {
	/* Pauses the VM and waits until it is: 0, or -1 when the VM ends instead. */
	int (*pause)(void *opaque);
	/* Lets it run again (not called for a snapshot that ends the VM). */
	void (*resume)(void *opaque);
	/* Optional: the report so far, after each pass. */
	void (*progress)(void *opaque, const struct snapshot_live_report *rep);
	void *opaque;
	/*
	 * A testing aid: in the pause, compare all of RAM with the file and fail
	 * the snapshot naming the first page that differs (a write the dirty
	 * tracking missed). It reads the whole file while the guest is paused.
	 */
	bool verify;
};

/*
 * Writes the running VM to `path` as snapshot_save() does, with the pause
 * only for what changed last. Called on a thread other than the event
 * loop's, with the VM running. On failure nothing is left at path; if the
 * VM was paused, the caller resumes it. With then_exit the VM stays paused
 * after the pause (the caller ends it). 0, or -1 with a one-line reason.
 */
int snapshot_save_live(struct vm *vm, const char *path, bool then_exit, const struct snapshot_live_ops *ops,
		       struct snapshot_live_report *rep, char *err, size_t errlen);

/* Opens what later saves need while hyve still may (before the sandbox and the switch of user). */
void snapshot_prepare_saves(void);

/*
 * Reads and validates `path` and fills cfg with the configuration the
 * snapshot embeds, with `overrides` (the command line; may be NULL) on top.
 * The file's host bindings are used only when the file is the user's own,
 * secrets it left out must be in overrides, and a listener the file chose
 * beyond loopback needs a password (src/snapshot/trust.h). Returns an
 * opaque handle for snapshot_restore_vm(), or NULL after a one-line error.
 */
struct snapshot_file;
struct snapshot_file *snapshot_open(const char *path, bool eager, struct config *cfg,
				    const struct config *overrides);
/* Loads memory, vCPUs, interrupt controllers and devices into vm (built from cfg). 0 or -1 after logging. */
int snapshot_restore_vm(struct snapshot_file *snap, struct vm *vm);
void snapshot_close(struct snapshot_file *snap);

/* hyvectl snapshot-info: header, manifest and every record as JSON on out. 0, or -1 after logging. */
int snapshot_info(const char *path, FILE *out);

#endif
