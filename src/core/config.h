/*
 * The configuration tree: dotted keys ("lpc.com1.path") holding string
 * values, as in bhyve_config(5). The command line, -o options and -k files
 * all fill it; devices read it; snapshots embed it. A key is either a leaf
 * (has a value) or a node (has children), never both.
 */
#ifndef HYVE_CONFIG_H
#define HYVE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;

struct config *config_new(void);
void config_free(struct config *cfg);

/* Returns 0, or -1 after logging why (bad key syntax, leaf/node clash). */
int config_set(struct config *cfg, const char *key, const char *value);
/* "key=value"; returns 0 or -1 after logging. */
int config_set_assignment(struct config *cfg, const char *assignment);
/* Reads "key=value" lines; '#' starts a comment; blank lines are ignored. */
int config_load_file(struct config *cfg, const char *path);
/* The same, with every key passed through map_key (aliases). */
int config_load_file_mapped(struct config *cfg, const char *path, const char *(*map_key)(const char *key));
int config_unset(struct config *cfg, const char *key);

/* NULL when absent. */
const char *config_get(const struct config *cfg, const char *key);
/* printf-style key, for per-instance prefixes. */
const char *config_getf(const struct config *cfg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Typed getters: absent key gives def and 0; a malformed value logs an
 * error naming the key and returns -1.
 */
int config_get_u64(const struct config *cfg, const char *key, uint64_t def, uint64_t *out);
int config_get_bool(const struct config *cfg, const char *key, bool def, bool *out);
int config_get_size(const struct config *cfg, const char *key, uint64_t def, uint64_t *out);

/* Entries in key order; index < config_count(). */
size_t config_count(const struct config *cfg);
const char *config_key_at(const struct config *cfg, size_t i);
const char *config_value_at(const struct config *cfg, size_t i);
/* True when some key is under "prefix." (or equals prefix). */
bool config_has_node(const struct config *cfg, const char *prefix);

void config_dump(const struct config *cfg, FILE *out);

/*
 * Parses "256M", "2G", "1048576" (bare numbers are MiB when default_unit
 * is 1 << 20, as bhyve's -m). Returns 0 or -1 (no logging).
 */
int parse_size(const char *s, uint64_t default_unit, uint64_t *out);
/* Strict unsigned decimal/hex parse of the whole string; 0 or -1. */
int parse_u64(const char *s, uint64_t *out);

#endif
