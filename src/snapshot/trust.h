/*
 * What a snapshot file may choose. The machine it describes (devices, sizes,
 * CPU count) is the file's business; the host bindings (paths, taps,
 * listeners, sockets, fonts, passwords: OPTION_HOST_BINDING) are taken from
 * it only when the file is the user's own, as ssh treats its configuration.
 * Secrets are never in the file: the command line gives them again. And
 * whatever the file says, a restore listens beyond loopback without a
 * password only when the command line asks for that listener.
 */
#ifndef HYVE_SNAPSHOT_TRUST_H
#define HYVE_SNAPSHOT_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

struct config;

/*
 * The file is trusted when it is owned by euid (or by root) and neither its
 * group nor others may write it. Otherwise false with the reason in why
 * ("owned by uid 1001", "writable by group or others (mode 0664)").
 */
bool snapshot_file_trusted(const struct stat *st, uid_t euid, char *why, size_t whylen);

/*
 * Builds in `out` the configuration a restore runs with, from `file` (the
 * configuration the snapshot embeds), `omitted` (the keys its writer left
 * out because they are secret; may be NULL) and `cli` (the command line,
 * applied on top). `distrust` is NULL for a trusted file, or why it is not
 * trusted. 0, or -1 with a one-line reason in err.
 */
int snapshot_merge_config(const struct config *file, const struct config *omitted, const struct config *cli,
			  const char *distrust, struct config *out, char *err, size_t errlen);

#endif
