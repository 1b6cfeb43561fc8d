#include "trust.h"

#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/options.h"

bool snapshot_file_trusted(const struct stat *st, uid_t euid, char *why, size_t whylen)
{
	/* ssh's rule for its configuration: the user's own (or root's), and nobody else may change it. */
	if (st->st_uid != euid && st->st_uid != 0) {
		snprintf(why, whylen, "is owned by uid %u, not by you", (unsigned)st->st_uid);
		return false;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, whylen, "is writable by %s (mode %04o)",
			 (st->st_mode & S_IWGRP) && (st->st_mode & S_IWOTH) ? "group and others"
			 : (st->st_mode & S_IWGRP)			    ? "its group"
									    : "others",
			 (unsigned)(st->st_mode & 07777));
		return false;
	}
	return true;
}

/*
 * The declaration of key and its node, resolved in the first tree that
 * names the node's device (the command line may set options of a device
 * only the file names). NULL for model keys and what does not resolve.
 */
static const struct option_decl *decl_of(const struct config *first, const struct config *second, const char *key,
					  char *node, size_t nodelen)
{
	const struct config *trees[2] = { first, second };
	struct option_ref ref;
	char err[8];

	for (int i = 0; i < 2; i++) {
		if (!trees[i] || options_resolve(trees[i], key, false, &ref, err, sizeof(err)) != 0 || !ref.decl)
			continue;
		snprintf(node, nodelen, "%s", ref.node_prefix);
		return ref.decl;
	}
	return NULL;
}

static bool in_node(const char *key, const char *node)
{
	size_t n = strlen(node);

	return n == 0 || (strncmp(key, node, n) == 0 && key[n] == '.');
}

/* The command line gives another option of decl's group in the same node (unix= for tcp=). */
static bool cli_gives_alternative(const struct config *file, const struct config *cli, const char *key,
				  const struct option_decl *decl, const char *node)
{
	char other_node[64];

	if (!decl->group)
		return false;
	for (size_t i = 0; i < config_count(cli); i++) {
		const char *k = config_key_at(cli, i);
		const struct option_decl *d;
		if (strcmp(k, key) == 0 || !in_node(k, node))
			continue;
		d = decl_of(cli, file, k, other_node, sizeof(other_node));
		if (d && d->group && strcmp(d->group, decl->group) == 0 && strcmp(other_node, node) == 0)
			return true;
	}
	return false;
}

static bool cli_gives(const struct config *file, const struct config *cli, const char *key,
		      const struct option_decl *decl, const char *node)
{
	return config_get(cli, key) || cli_gives_alternative(file, cli, key, decl, node);
}

/* "-l com1,..." or "-o KEY=...": how the command line gives key. */
static void hint(const struct option_decl *decl, const char *key, const char *node, char *out, size_t len)
{
	const char *leaf = strrchr(node, '.');

	if (decl->cli_hint)
		snprintf(out, len, decl->cli_hint, leaf ? leaf + 1 : node);
	else
		snprintf(out, len, "-o %s=...", key);
}

static bool needs_binding(unsigned flags)
{
	return (flags & OPTION_HOST_BINDING) && !(flags & (OPTION_PROCESS | OPTION_BOOT_ONLY));
}

/* An untrusted file: every host binding it uses must come from the command line. */
static int check_bindings_given(const struct config *file, const struct config *cli, const char *distrust, char *err,
				size_t errlen)
{
	char list[1024] = "", node[64], one[300];
	size_t n = 0;

	for (size_t i = 0; i < config_count(file); i++) {
		const char *key = config_key_at(file, i);
		const struct option_decl *d = decl_of(file, NULL, key, node, sizeof(node));
		if (!d || !needs_binding(d->flags) || cli_gives(file, cli, key, d, node))
			continue;
		hint(d, key, node, one, sizeof(one));
		if (n < sizeof(list))
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "", one);
	}
	if (!n)
		return 0;
	return set_error(err, errlen,
			 "the file %s, so its host bindings are not used: give them on the command line: %s", distrust,
			 list);
}

/* The file's settings that stand: not process settings, not host bindings of an untrusted file. */
static int copy_file_settings(const struct config *file, const struct config *cli, bool trusted, struct config *out)
{
	char node[64];

	for (size_t i = 0; i < config_count(file); i++) {
		const char *key = config_key_at(file, i);
		const struct option_decl *d = decl_of(file, NULL, key, node, sizeof(node));
		unsigned flags = d ? d->flags : 0;
		if ((flags & OPTION_PROCESS) || (!trusted && (flags & OPTION_HOST_BINDING)))
			continue;
		if (d && cli_gives_alternative(file, cli, key, d, node))
			continue;
		if (config_set(out, key, config_value_at(file, i)) < 0)
			return -1;
	}
	return 0;
}

static int apply_command_line(struct config *out, const struct config *cli, char *err, size_t errlen)
{
	for (size_t i = 0; i < config_count(cli); i++) {
		const char *key = config_key_at(cli, i);
		/* A node given on the command line replaces the snapshot's (e.g. a whole -s slot). */
		if (config_get(out, key) == NULL && config_has_node(out, key))
			continue;
		if (config_set(out, key, config_value_at(cli, i)) < 0)
			return set_error(err, errlen, "%s from the command line does not fit the snapshot's configuration", key);
	}
	return 0;
}

static int check_secrets_given(const struct config *out, const struct config *omitted, char *err, size_t errlen)
{
	for (size_t i = 0; omitted && i < config_count(omitted); i++) {
		const char *key = config_key_at(omitted, i);
		if (!config_get(out, key))
			return set_error(err, errlen,
					 "%s was not saved in the snapshot (secrets never are): give it again with -o %s=...",
					 key, key);
	}
	return 0;
}

/* A listener the file chose, beyond loopback, with nothing guarding it, is refused. */
static int check_listeners(const struct config *out, const struct config *cli, char *err, size_t errlen)
{
	char node[64], addr[256], guard[128], how[300];

	for (size_t i = 0; i < config_count(out); i++) {
		const char *key = config_key_at(out, i), *value = config_value_at(out, i);
		const struct option_decl *d = decl_of(out, NULL, key, node, sizeof(node));
		if (!d || !d->tcp_listener || config_get(cli, key))
			continue;
		if (!d->tcp_listener(value, addr, sizeof(addr)) || option_addr_is_loopback(addr))
			continue;
		if (d->guarded_by) {
			snprintf(guard, sizeof(guard), "%s%s%s", node, *node ? "." : "", d->guarded_by);
			if (config_get(out, guard))
				continue;
		}
		hint(d, key, node, how, sizeof(how));
		return set_error(err, errlen,
				 "%s=%s would listen on %s without a password; a restore does that only when the command "
				 "line asks for it (%s)",
				 key, value, addr, how);
	}
	return 0;
}

int snapshot_merge_config(const struct config *file, const struct config *omitted, const struct config *cli,
			  const char *distrust, struct config *out, char *err, size_t errlen)
{
	char reason[512];

	if (options_validate(file, 0, reason, sizeof(reason)) < 0)
		return set_error(err, errlen, "its configuration: %s", reason);
	if (distrust && check_bindings_given(file, cli, distrust, err, errlen) < 0)
		return -1;
	if (copy_file_settings(file, cli, distrust == NULL, out) < 0)
		return set_error(err, errlen, "cannot rebuild its configuration");
	if (apply_command_line(out, cli, err, errlen) < 0 || check_secrets_given(out, omitted, err, errlen) < 0)
		return -1;
	return check_listeners(out, cli, err, errlen);
}
