/*
 * Saving a running VM to a snapshot file and starting a VM from one.
 * The format is specified in docs/snapshot-format.md.
 */
#ifndef HYVE_SNAPSHOT_H
#define HYVE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
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
