/*
 * The sandbox's configuration keys, declared so that they validate; the
 * sandbox reads them. `-o sandbox=off` is short for sandbox.enable=off (a key
 * cannot be both a leaf and a node, so "sandbox" itself is an alias).
 * Both are process settings: a snapshot file neither records nor chooses them.
 */
#include "options.h"

/* The thread kinds, as sandbox.c names them. */
static const char *const selftest_kinds[] = { "main", "vcpu", "io", "snapshot", "verifier", NULL };

static const struct option_decl sandbox_options[] = {
	{ .name = "sandbox.enable", .type = OPTION_BOOL, .def = "on", .flags = OPTION_PROCESS,
	  .help = "confine hyve's threads with seccomp filters (off: for debugging)" },
	{ .name = "sandbox.user", .type = OPTION_STRING, .flags = OPTION_HOST_BINDING | OPTION_PROCESS,
	  .help = "started as root: the user (and its groups) hyve runs as once set up (-u)" },
	{ .name = "sandbox.selftest", .type = OPTION_ENUM, .flags = OPTION_PROCESS, .choices = selftest_kinds,
	  .help = "for tests: this thread kind makes a forbidden call once confined (hyve ends, status 4)" },
	{ 0 },
};
OPTIONS(sandbox_options)

static struct option_alias sandbox_alias = { .alias = "sandbox", .key = "sandbox.enable" };
OPTION_ALIAS(sandbox_alias)
