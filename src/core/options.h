/*
 * Declared options: every configuration key hyve accepts is declared by the
 * code that reads it, with a type, a default, flags and a one-line help.
 *
 * - Top-level keys ("cpus", "boot.kernel", "control.socket") are declared
 *   in tables registered with OPTIONS(table) by the file that reads them.
 * - Device options live under a device node ("pci.0.3.0.password"); the
 *   node pattern is registered by the bus that owns it with OPTION_NODE()
 *   ("pci.#.#.#", whose model is named by its "device" key; "lpc.com[1-4]",
 *   always a "uart"), and the keys under it are declared by the model in
 *   struct device_model's `options`.
 *
 * Names may hold patterns for instance numbers: '#' matches a decimal
 * number (no leading zeros) and "[a-b]" one character from a to b.
 *
 * Before anything is created, options_validate() checks every key of the
 * tree: it must be declared and its value must parse. Device code then
 * reads its options with dev_opt_*() by declared name; top-level code with
 * opt_*(). Both return the value or the declared default.
 */
#ifndef HYVE_OPTIONS_H
#define HYVE_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;
struct device;
struct device_model;

enum option_type {
	OPTION_STRING,
	OPTION_PATH,   /* a host file or socket path: not empty */
	OPTION_BOOL,   /* true/false, on/off, yes/no, 1/0 */
	OPTION_UINT,   /* decimal or 0x hex, from min to max */
	OPTION_SIZE,   /* 512M, 2G, or bytes; from min to max */
	OPTION_ENUM,   /* one of choices */
	OPTION_CUSTOM, /* validate() decides: structured values */
};

enum option_flag {
	/*
	 * What the host provides rather than what the guest sees: file paths,
	 * tap names, listen addresses, sockets, fonts, passwords. A snapshot
	 * file that is not the user's own does not get to choose them.
	 */
	OPTION_HOST_BINDING = 1u << 0,
	/* Never printed, never written into a snapshot file. */
	OPTION_SECRET = 1u << 1,
	/*
	 * How this process runs (logging, sandbox, what to restore), not part of
	 * the machine: not written into snapshot files, ignored when found there.
	 */
	OPTION_PROCESS = 1u << 2,
	/* Read only when booting afresh; a restore neither uses nor needs it. */
	OPTION_BOOT_ONLY = 1u << 3,
};

struct option_decl {
	const char *name;       /* relative to the device node for device options */
	enum option_type type;
	const char *def;        /* the default, as text; NULL: none (absent means off/unset) */
	unsigned flags;         /* enum option_flag */
	uint64_t min, max;      /* OPTION_UINT, OPTION_SIZE; max 0 means no limit */
	const char *const *choices; /* OPTION_ENUM: NULL-terminated */
	/*
	 * OPTION_CUSTOM, or an extra check for any other type: 0, or -1 with a
	 * short reason in err (the caller names the key).
	 */
	int (*validate)(const char *value, char *err, size_t errlen);
	/*
	 * Listeners: 1 when this value makes hyve listen on TCP, with the
	 * address in addr; 0 when it does not (UNIX sockets, files, stdio).
	 */
	int (*tcp_listener)(const char *value, char *addr, size_t addrlen);
	/* For listeners: the sibling option (a password) that protects it, or NULL. */
	const char *guarded_by;
	/* Options of one group are alternatives for the same binding (tcp= or unix=). */
	const char *group;
	/* How the command line gives it, "%s" standing for the node's last component ("-l %s,..."). */
	const char *cli_hint;
	const char *help;
};

struct option_table {
	const struct option_decl *decls; /* ends with an entry whose name is NULL */
	struct option_table *next;
};

/* A device node: the keys under it are the options of one device model. */
struct option_node {
	const char *pattern;   /* "pci.#.#.#", "lpc.com[1-4]" */
	const char *model;     /* the model of every node, or NULL: named by model_key */
	const char *model_key; /* with model NULL: the key under the node naming the model */
	bool (*model_ok)(const struct device_model *model); /* which models model_key may name */
	/* Optional check of the node's address: 0, or -1 with a reason in err. */
	int (*check)(const char *node, char *err, size_t errlen);
	struct option_node *next;
};

/* Another name for a key, applied where KEY=VALUE assignments enter (-o, -k). */
struct option_alias {
	const char *alias, *key;
	struct option_alias *next;
};

void options_register(struct option_table *table);
void options_register_node(struct option_node *node);
void options_register_alias(struct option_alias *alias);

#define OPTIONS(decls)                                                                 \
	static struct option_table decls##_table = { decls, NULL };                    \
	static void __attribute__((constructor)) register_options_##decls(void)        \
	{                                                                              \
		options_register(&decls##_table);                                       \
	}
#define OPTION_NODE(var)                                                               \
	static void __attribute__((constructor)) register_node_##var(void)            \
	{                                                                              \
		options_register_node(&var);                                           \
	}
#define OPTION_ALIAS(var)                                                              \
	static void __attribute__((constructor)) register_alias_##var(void)           \
	{                                                                              \
		options_register_alias(&var);                                          \
	}

/* The key an alias stands for, or key itself. */
const char *options_canonical_key(const char *key);

/*
 * What a key is: its declaration, the device node ("pci.0.3.0", "" for a
 * top-level key) and the owning model (NULL for top-level keys and for a
 * node's model key, whose decl is then NULL).
 */
struct option_ref {
	const struct option_decl *decl;
	const struct device_model *model;
	const struct option_node *node;
	char node_prefix[64];
	bool is_model_key;
};

/*
 * Resolves key within cfg (which names the models of device nodes). 0, or
 * -1 with a one-line reason in err naming the key and, where a declared key
 * is close, the spelling it resembles. With defer_unresolved, a device
 * option whose node names no model in cfg resolves to 1 (decl NULL): a
 * restore's command line refers to devices that only the snapshot names.
 */
int options_resolve(const struct config *cfg, const char *key, bool defer_unresolved, struct option_ref *ref,
		    char *err, size_t errlen);

/* Checks value against decl; 0, or -1 with "KEY=VALUE: reason" in err (no value for secrets). */
int options_check_value(const struct option_decl *decl, const char *key, const char *value, char *err,
			size_t errlen);

enum { OPTIONS_DEFER_UNRESOLVED = 1 };
/* Every key declared, every value parses. 0, or -1 with a one-line reason in err. */
int options_validate(const struct config *cfg, unsigned mode, char *err, size_t errlen);

/* The model name of a device node ("pci.0.3.0"), or NULL when it names none. */
const char *options_node_model(const struct config *cfg, const char *node_prefix);

/* Flags of key (0 when it resolves to nothing, or to a node's model key). */
unsigned options_flags(const struct config *cfg, const char *key);

/* The tree as KEY=VALUE lines; secrets appear as "# KEY=<secret> (not shown)". */
void options_dump(const struct config *cfg, FILE *out);

/* Calls fn for every declared option: top-level ones (model NULL), then each node's. */
void options_for_each(void (*fn)(void *opaque, const char *prefix, const struct device_model *model,
				 const struct option_decl *decl),
		      void *opaque);

/* Edit distance, for suggestions (exposed for tests). */
size_t options_edit_distance(const char *a, const char *b);
/* Pattern match of a whole name ('#', "[a-b]"). */
bool options_name_matches(const char *pattern, const char *name);

/* ---- reading ---- */

/*
 * Top-level keys: the value or the declared default. The numeric and bool
 * forms return -1 after logging when the value is malformed (code that runs
 * before or without options_validate()).
 */
const char *opt_str(const struct config *cfg, const char *key);
int opt_bool(const struct config *cfg, const char *key, bool *out);
int opt_u64(const struct config *cfg, const char *key, uint64_t *out);
/* OPTION_ENUM: index into choices; -1 after logging. */
int opt_enum(const struct config *cfg, const char *key);

/*
 * A device's own options, by declared name: the value under the device's
 * node or the declared default. device_create() has checked every declared
 * value of the model before create() runs, so these cannot fail.
 */
const char *dev_opt_str(const struct device *dev, const char *name);
bool dev_opt_bool(const struct device *dev, const char *name);
uint64_t dev_opt_u64(const struct device *dev, const char *name);
unsigned dev_opt_enum(const struct device *dev, const char *name);
bool dev_opt_is_set(const struct device *dev, const char *name);
/* Checks the values of every option model declares under prefix; 0, or -1 after logging. */
int options_check_device(const struct config *cfg, const struct device_model *model, const char *prefix);

/* Parsing shared with validators. */
int option_parse_bool(const char *value, bool *out);
/* True for 127.0.0.0/8, ::1 (bracketed or not), v4-mapped loopback and "localhost". */
bool option_addr_is_loopback(const char *addr);

#endif
