/*
 * Declared options (src/core/options.c) and what a snapshot file may choose
 * (src/snapshot/trust.c), against the real declarations of hyve's models.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/cli.h"
#include "core/config.h"
#include "core/device.h"
#include "core/options.h"
#include "core/reset.h"
#include "core/vm.h"
#include "snapshot/trust.h"

static struct config *tree(const char *const *settings)
{
	struct config *cfg = config_new();

	for (; *settings; settings++)
		assert_int_equal(config_set_assignment(cfg, *settings), 0);
	return cfg;
}

/* Validates settings; returns the error text ("" when valid) in a static buffer. */
static const char *validate(const char *const *settings, unsigned mode)
{
	static char err[512];
	struct config *cfg = tree(settings);

	err[0] = '\0';
	if (options_validate(cfg, mode, err, sizeof(err)) == 0)
		assert_string_equal(err, "");
	else
		assert_true(err[0] != '\0');
	config_free(cfg);
	return err;
}

#define VALIDATE(...) validate((const char *const[]){ __VA_ARGS__, NULL }, 0)

static void known_keys_validate(void **state)
{
	(void)state;
	assert_string_equal(VALIDATE("cpus=2", "memory.size=1G", "name=vm", "boot.kernel=/k", "lpc.com1.path=stdio",
				     "lpc.com4.path=tcp=127.0.0.1:4444", "lpc.i8042=off", "control.socket=off",
				     "pci.0.3.0.device=fbuf", "pci.0.3.0.tcp=5901", "pci.0.3.0.password=s3cret",
				     "pci.0.3.0.vga=on", "pci.0.4.0.device=virtio-blk", "pci.0.4.0.path=/d.img",
				     "pci.0.4.0.ro=yes", "pci.0.5.0.device=xhci", "pci.0.5.0.tablet=1",
				     "sandbox.enable=off", "sandbox.user=nobody", "snapshot.eager=on"),
			    "");
}

static void unknown_key_names_it_and_suggests(void **state)
{
	(void)state;
	assert_string_equal(VALIDATE("pci.0.3.0.device=fbuf", "pci.0.3.0.tcp=5901", "pci.0.3.0.pasword=x"),
			    "pci.0.3.0.pasword: unknown option of fbuf (did you mean 'password'?)");
	assert_string_equal(VALIDATE("memroy.size=1G"), "memroy.size: unknown option (did you mean 'memory.size'?)");
	assert_string_equal(VALIDATE("lpc.com2.pth=stdio"), "lpc.com2.pth: unknown option of uart (did you mean 'path'?)");
	assert_string_equal(VALIDATE("pci.0.3.0.devcie=fbuf"), "pci.0.3.0.devcie: unknown option (did you mean 'device'?)");
	/* Nothing close: no suggestion. */
	assert_string_equal(VALIDATE("frobnicate=1"), "frobnicate: unknown option");
	assert_string_equal(VALIDATE("pci.0.3.0.device=xhci", "pci.0.3.0.mouse=1"), "pci.0.3.0.mouse: unknown option of xhci");
	/* Instance numbers out of the declared pattern are unknown keys, not silently ignored. */
	assert_string_equal(VALIDATE("lpc.com5.path=stdio"), "lpc.com5.path: unknown option");
	assert_string_equal(VALIDATE("pci.0.03.0.device=fbuf"), "pci.0.03.0.device: unknown option");
	/* A leaf where the tree has nodes. */
	assert_string_equal(VALIDATE("lpc=x"), "lpc: unknown option");
	/* ... unless a leaf of that name is near: boot=x is one letter from reboot=. */
	assert_string_equal(VALIDATE("boot=x"), "boot: unknown option (did you mean 'reboot'?)");
}

static void device_nodes(void **state)
{
	(void)state;
	assert_string_equal(VALIDATE("pci.0.5.0.foo=1"), "pci.0.5.0: settings given but no device (pci.0.5.0.device)");
	assert_string_equal(VALIDATE("pci.0.5.0.device=no-such"), "pci.0.5.0: unknown device 'no-such'");
	/* uart is a model, but not one the PCI bus can hold. */
	assert_string_equal(VALIDATE("pci.0.5.0.device=uart"), "pci.0.5.0: unknown device 'uart'");
	assert_string_equal(VALIDATE("pci.1.3.0.device=lpc"), "pci.1.3.0: only PCI bus 0 exists");
	assert_string_equal(VALIDATE("pci.0.40.0.device=lpc"), "pci.0.40.0: slot must be 0-31 and function 0-7");
	/* A restore's command line may set options of a device only the snapshot names. */
	assert_string_equal(validate((const char *const[]){ "pci.0.3.0.path=/x", "cpus=2", NULL }, OPTIONS_DEFER_UNRESOLVED),
			    "");
	assert_string_equal(validate((const char *const[]){ "pci.0.3.0.path=/x", "cpu=2", NULL }, OPTIONS_DEFER_UNRESOLVED),
			    "cpu: unknown option (did you mean 'cpus'?)");
}

static void malformed_values(void **state)
{
	(void)state;
	assert_string_equal(VALIDATE("pci.0.3.0.device=fbuf", "pci.0.3.0.wait=maybe"),
			    "pci.0.3.0.wait=maybe: expected true or false");
	assert_string_equal(VALIDATE("cpus=two"), "cpus=two: expected a number (number of vCPUs)");
	assert_string_equal(VALIDATE("cpus=-1"), "cpus=-1: expected a number (number of vCPUs)");
	assert_string_equal(VALIDATE("pci.0.3.0.device=fbuf", "pci.0.3.0.vga=yes"),
			    "pci.0.3.0.vga=yes: expected off, io or on");
	assert_string_equal(VALIDATE("memory.size=lots"), "memory.size=lots: expected a size such as 512M (guest memory)");
	assert_string_equal(VALIDATE("memory.size=1000000"), "memory.size=1000000: expected a size from 32M to 1T (guest memory)");
	assert_string_equal(VALIDATE("memory.size=33554433"), "memory.size=33554433: guest memory must be a multiple of 4 KiB");
	assert_string_equal(VALIDATE("lpc.com1.path=carrier-pigeon"),
			    "lpc.com1.path=carrier-pigeon: unknown backend 'carrier-pigeon' (accepted: stdio, "
			    "file=PATH, tcp=[ADDR:]PORT or unix=PATH)");
	assert_string_equal(VALIDATE("lpc.com1.path=tcp=0"),
			    "lpc.com1.path=tcp=0: expected tcp=[ADDR:]PORT with PORT 1-65535");
	assert_string_equal(VALIDATE("pci.0.4.0.device=virtio-net", "pci.0.4.0.mac=01:00:5e:00:00:01"),
			    "pci.0.4.0.mac=01:00:5e:00:00:01: not a unicast MAC address (xx:xx:xx:xx:xx:xx)");
	assert_string_equal(VALIDATE("pci.0.4.0.device=virtio-blk", "pci.0.4.0.path="), "pci.0.4.0.path=: expected a path");
}

static void ranges(void **state)
{
	(void)state;
	assert_string_equal(VALIDATE("cpus=0"), "cpus=0: expected a number from 1 to 64 (number of vCPUs)");
	assert_string_equal(VALIDATE("cpus=65"), "cpus=65: expected a number from 1 to 64 (number of vCPUs)");
	assert_string_equal(VALIDATE("cpus=64"), "");
	assert_string_equal(VALIDATE("pci.0.3.0.device=fbuf", "pci.0.3.0.w=639"),
			    "pci.0.3.0.w=639: expected a number from 640 to 3840 (boot mode width)");
	assert_string_equal(VALIDATE("pci.0.3.0.device=fbuf", "pci.0.3.0.w=3840"), "");
	assert_string_equal(VALIDATE("pci.0.0.0.device=hostbridge", "pci.0.0.0.vendor=0x10000"),
			    "pci.0.0.0.vendor=0x10000: expected a number from 0 to 65535 (PCI vendor ID, 16-bit)");
	assert_string_equal(VALIDATE("pci.0.4.0.device=virtio-blk", "pci.0.4.0.sectorsize=65536"),
			    "pci.0.4.0.sectorsize=65536: expected a number from 512 to 32768 (logical sector size, a power of 2)");
	assert_string_equal(VALIDATE("pci.0.4.0.device=virtio-blk", "pci.0.4.0.sectorsize=1000"),
			    "pci.0.4.0.sectorsize=1000: must be a power of 2 from 512 to 32768");
	assert_string_equal(VALIDATE("pci.0.3.0.device=fbuf", "pci.0.3.0.tcp=70000"),
			    "pci.0.3.0.tcp=70000: the port must be 1-65535");
}

static void aliases(void **state)
{
	struct config *cfg = config_new();
	char path[] = "/tmp/hyve-options-XXXXXX";
	int fd = mkstemp(path);
	const char *argv[] = { "hyve", "-o", "sandbox=off", "vm" }, *argk[] = { "hyve", "-k", path, "vm" };
	(void)state;

	assert_string_equal(options_canonical_key("sandbox"), "sandbox.enable");
	assert_string_equal(options_canonical_key("cpus"), "cpus");
	assert_int_equal(cli_parse(4, (char **)argv, cfg), CLI_RUN);
	assert_string_equal(config_get(cfg, "sandbox.enable"), "off");
	assert_null(config_get(cfg, "sandbox"));
	assert_int_equal(cli_validate(cfg), 0);
	config_free(cfg);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "sandbox = no\n", 13), 13);
	close(fd);
	cfg = config_new();
	assert_int_equal(cli_parse(4, (char **)argk, cfg), CLI_RUN);
	assert_string_equal(config_get(cfg, "sandbox.enable"), "no");
	assert_int_equal(cli_validate(cfg), 0);
	config_free(cfg);
	unlink(path);
	/* The alias is for assignments that enter; the tree itself holds only declared keys. */
	assert_string_equal(VALIDATE("sandbox=off"), "sandbox: unknown option");
}

static char *dump(struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	options_dump(cfg, f);
	fclose(f);
	return buf;
}

static void secrets_are_never_printed(void **state)
{
	const char *settings[] = { "pci.0.3.0.device=fbuf", "pci.0.3.0.password=s3cret", "cpus=2", NULL };
	struct config *cfg = tree(settings);
	char *text = dump(cfg), err[512];
	(void)state;

	assert_non_null(strstr(text, "cpus=2\n"));
	assert_non_null(strstr(text, "pci.0.3.0.device=fbuf\n"));
	assert_non_null(strstr(text, "# pci.0.3.0.password=<secret, not shown>\n"));
	assert_null(strstr(text, "s3cret"));
	free(text);
	assert_int_equal(options_flags(cfg, "pci.0.3.0.password"), OPTION_HOST_BINDING | OPTION_SECRET);
	config_free(cfg);
	/* Nor in an error about them. */
	assert_string_equal(VALIDATE("pci.0.3.0.device=fbuf", "pci.0.3.0.password=toolongpass"),
			    "pci.0.3.0.password: must have 1 to 8 characters (VNC authentication uses 8)");
	cfg = tree((const char *const[]){ "pci.0.3.0.device=fbuf", "pci.0.3.0.password=toolongpass", NULL });
	assert_int_equal(options_validate(cfg, 0, err, sizeof(err)), -1);
	assert_null(strstr(err, "toolongpass"));
	config_free(cfg);
}

static void check_default(void *opaque, const char *prefix, const struct device_model *model,
			  const struct option_decl *decl)
{
	char err[512];
	(void)prefix;

	(*(unsigned *)opaque)++;
	assert_non_null(decl->help);
	assert_true(decl->type != OPTION_ENUM || decl->choices);
	assert_true(!(decl->flags & OPTION_SECRET) || (decl->flags & OPTION_HOST_BINDING));
	if (decl->def && options_check_value(decl, decl->name, decl->def, err, sizeof(err)) < 0)
		fail_msg("%s%s%s: default does not pass its own check: %s", model ? model->name : "",
			 model ? " option " : "", decl->name, err);
}

static void every_default_is_valid(void **state)
{
	unsigned count = 0;
	(void)state;

	options_for_each(check_default, &count);
	assert_true(count > 20);
}

static void patterns(void **state)
{
	(void)state;
	assert_true(options_name_matches("lpc.com[1-4]", "lpc.com1"));
	assert_true(options_name_matches("lpc.com[1-4]", "lpc.com4"));
	assert_false(options_name_matches("lpc.com[1-4]", "lpc.com5"));
	assert_false(options_name_matches("lpc.com[1-4]", "lpc.com10"));
	assert_true(options_name_matches("pci.#.#.#", "pci.0.31.7"));
	assert_false(options_name_matches("pci.#.#.#", "pci.0.031.7"));
	assert_false(options_name_matches("pci.#.#.#", "pci.0.x.7"));
	assert_false(options_name_matches("pci.#.#.#", "pci.0.3"));
	assert_int_equal(options_edit_distance("pasword", "password"), 1);
	assert_int_equal(options_edit_distance("", "abc"), 3);
	assert_int_equal(options_edit_distance("kitten", "sitting"), 3);
}

static void loopback(void **state)
{
	(void)state;
	assert_true(option_addr_is_loopback("127.0.0.1"));
	assert_true(option_addr_is_loopback("127.1.2.3"));
	assert_true(option_addr_is_loopback("::1"));
	assert_true(option_addr_is_loopback("[::1]"));
	assert_true(option_addr_is_loopback("::ffff:127.0.0.1"));
	assert_true(option_addr_is_loopback("localhost"));
	assert_false(option_addr_is_loopback("0.0.0.0"));
	assert_false(option_addr_is_loopback("::"));
	assert_false(option_addr_is_loopback("192.168.1.1"));
	assert_false(option_addr_is_loopback("example.org"));
	assert_false(option_addr_is_loopback(""));
}

/* ---- device readers ---- */

static void device_readers(void **state)
{
	struct config *cfg = tree((const char *const[]){ "pci.0.3.0.device=fbuf", "pci.0.3.0.w=800",
							  "pci.0.3.0.wait=on", "pci.0.3.0.vga=io", NULL });
	struct vm vm = { .cfg = cfg };
	const struct device_model *fbuf = device_model_find("fbuf");
	struct device dev = { .model = fbuf, .vm = &vm, .cfg_prefix = "pci.0.3.0" };
	(void)state;

	assert_non_null(fbuf);
	assert_int_equal(options_check_device(cfg, fbuf, "pci.0.3.0"), 0);
	assert_int_equal(dev_opt_u64(&dev, "w"), 800);
	assert_int_equal(dev_opt_u64(&dev, "h"), 768); /* the declared default */
	assert_true(dev_opt_bool(&dev, "wait"));
	assert_int_equal(dev_opt_enum(&dev, "vga"), 1);
	assert_null(dev_opt_str(&dev, "password"));
	assert_false(dev_opt_is_set(&dev, "tcp"));
	/* device_create() refuses a malformed declared value before create() runs. */
	config_set(cfg, "pci.0.3.0.h", "tall");
	assert_int_equal(options_check_device(cfg, fbuf, "pci.0.3.0"), -1);
	config_free(cfg);
}

static void top_level_readers(void **state)
{
	struct config *cfg = tree((const char *const[]){ "cpus=3", "lpc.i8042=maybe", NULL });
	uint64_t v;
	bool b;
	(void)state;

	assert_int_equal(opt_u64(cfg, "cpus", &v), 0);
	assert_int_equal(v, 3);
	assert_int_equal(opt_u64(cfg, "memory.size", &v), 0);
	assert_int_equal(v, 256ULL << 20);
	assert_string_equal(opt_str(cfg, "name"), "hyve");
	assert_null(opt_str(cfg, "boot.kernel"));
	assert_int_equal(opt_bool(cfg, "sandbox.enable", &b), 0);
	assert_true(b);
	assert_int_equal(opt_bool(cfg, "lpc.i8042", &b), -1);
	config_free(cfg);
}

/* ---- snapshot trust ---- */

static void file_trust(void **state)
{
	struct stat st = { .st_uid = 1000, .st_mode = S_IFREG | 0600 };
	char why[128];
	(void)state;

	assert_true(snapshot_file_trusted(&st, 1000, why, sizeof(why)));
	st.st_mode = S_IFREG | 0644;
	assert_true(snapshot_file_trusted(&st, 1000, why, sizeof(why)));
	st.st_mode = S_IFREG | 0664;
	assert_false(snapshot_file_trusted(&st, 1000, why, sizeof(why)));
	assert_string_equal(why, "is writable by its group (mode 0664)");
	st.st_mode = S_IFREG | 0602;
	assert_false(snapshot_file_trusted(&st, 1000, why, sizeof(why)));
	assert_string_equal(why, "is writable by others (mode 0602)");
	st.st_mode = S_IFREG | 0600;
	assert_false(snapshot_file_trusted(&st, 1001, why, sizeof(why)));
	assert_string_equal(why, "is owned by uid 1000, not by you");
	st.st_uid = 0; /* root's files are trusted, as ssh does */
	assert_true(snapshot_file_trusted(&st, 1001, why, sizeof(why)));
}

struct merge {
	char err[512];
	struct config *out;
	int rc;
};

static struct merge *merge(const char *const *file, const char *const *omitted, const char *const *cli,
			   const char *distrust)
{
	static struct merge m;
	struct config *f = tree(file), *o = tree(omitted), *c = tree(cli);

	config_free(m.out);
	m.out = config_new();
	m.err[0] = '\0';
	m.rc = snapshot_merge_config(f, o, c, distrust, m.out, m.err, sizeof(m.err));
	config_free(f);
	config_free(o);
	config_free(c);
	return &m;
}

#define LIST(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define NONE ((const char *const[]){ NULL })

static const char *const machine[] = { "cpus=2", "name=vm", "boot.kernel=/k", "boot.cmdline=quiet",
				       "control.socket=/run/x.sock", "lpc.com1.path=file=/home/u/.bashrc",
				       "pci.0.3.0.device=virtio-blk", "pci.0.3.0.path=/etc/shadow",
				       "pci.0.3.0.ro=true", "sandbox.enable=off", NULL };

static void trusted_file_keeps_its_bindings(void **state)
{
	struct merge *m = merge(machine, NONE, LIST("lpc.com1.path=stdio"), NULL);
	(void)state;

	assert_int_equal(m->rc, 0);
	assert_string_equal(config_get(m->out, "pci.0.3.0.path"), "/etc/shadow");
	assert_string_equal(config_get(m->out, "control.socket"), "/run/x.sock");
	assert_string_equal(config_get(m->out, "lpc.com1.path"), "stdio"); /* the command line wins */
	assert_string_equal(config_get(m->out, "boot.kernel"), "/k");
	assert_string_equal(config_get(m->out, "cpus"), "2");
}

static void untrusted_file_lists_its_bindings(void **state)
{
	struct merge *m = merge(machine, NONE, LIST("lpc.com1.path=stdio"), "is writable by others (mode 0666)");
	(void)state;

	assert_int_equal(m->rc, -1);
	assert_string_equal(m->err, "the file is writable by others (mode 0666), so its host bindings are not used: "
				    "give them on the command line: -o control.socket=..., -o pci.0.3.0.path=...");
	m = merge(machine, NONE, NONE, "is owned by uid 7, not by you");
	assert_int_equal(m->rc, -1);
	assert_non_null(strstr(m->err, "-l com1,..."));
	assert_null(strstr(m->err, "boot.kernel")); /* a restore does not boot a kernel */
}

static void untrusted_file_with_bindings_given(void **state)
{
	struct merge *m = merge(machine, NONE,
				LIST("lpc.com1.path=stdio", "control.socket=off", "pci.0.3.0.path=/srv/disk.img"),
				"is owned by uid 7, not by you");
	(void)state;

	assert_int_equal(m->rc, 0);
	assert_string_equal(config_get(m->out, "pci.0.3.0.path"), "/srv/disk.img");
	assert_string_equal(config_get(m->out, "lpc.com1.path"), "stdio");
	assert_string_equal(config_get(m->out, "control.socket"), "off");
	assert_null(config_get(m->out, "boot.kernel"));	/* the file's host bindings are dropped */
	assert_string_equal(config_get(m->out, "boot.cmdline"), "quiet"); /* guest-visible: kept */
	assert_string_equal(config_get(m->out, "pci.0.3.0.ro"), "true");
	assert_string_equal(config_get(m->out, "cpus"), "2");
	assert_null(config_get(m->out, "sandbox.enable")); /* process settings never come from a file */
}

static void alternatives_satisfy_a_binding(void **state)
{
	const char *const *vnc = LIST("pci.0.6.0.device=fbuf", "pci.0.6.0.tcp=5901", "pci.0.6.0.w=800");
	struct merge *m = merge(vnc, NONE, LIST("pci.0.6.0.unix=/run/vm.vnc"), "is owned by uid 7, not by you");
	(void)state;

	assert_int_equal(m->rc, 0);
	assert_string_equal(config_get(m->out, "pci.0.6.0.unix"), "/run/vm.vnc");
	assert_null(config_get(m->out, "pci.0.6.0.tcp"));
	assert_string_equal(config_get(m->out, "pci.0.6.0.w"), "800");
	/* Trusted too: the command line's unix= replaces the file's tcp=, not both. */
	m = merge(vnc, NONE, LIST("pci.0.6.0.unix=/run/vm.vnc"), NULL);
	assert_int_equal(m->rc, 0);
	assert_null(config_get(m->out, "pci.0.6.0.tcp"));
	m = merge(vnc, NONE, NONE, "is owned by uid 7, not by you");
	assert_int_equal(m->rc, -1);
	assert_non_null(strstr(m->err, "-o pci.0.6.0.tcp=..."));
}

static void omitted_secrets_must_be_given(void **state)
{
	const char *const *vnc = LIST("pci.0.6.0.device=fbuf", "pci.0.6.0.unix=/run/vm.vnc");
	struct merge *m = merge(vnc, LIST("pci.0.6.0.password=secret"), NONE, NULL);
	(void)state;

	assert_int_equal(m->rc, -1);
	assert_string_equal(m->err, "pci.0.6.0.password was not saved in the snapshot (secrets never are): give it again "
				    "with -o pci.0.6.0.password=...");
	m = merge(vnc, LIST("pci.0.6.0.password=secret"), LIST("pci.0.6.0.password=n3w"), NULL);
	assert_int_equal(m->rc, 0);
	assert_string_equal(config_get(m->out, "pci.0.6.0.password"), "n3w");
}

static void listeners_beyond_loopback(void **state)
{
	(void)state;
	/* Whatever the file says (trusted or not): no open serial listener... */
	struct merge *m = merge(LIST("lpc.com1.path=tcp=0.0.0.0:4444"), NONE, NONE, NULL);
	assert_int_equal(m->rc, -1);
	assert_string_equal(m->err, "lpc.com1.path=tcp=0.0.0.0:4444 would listen on 0.0.0.0 without a password; a "
				    "restore does that only when the command line asks for it (-l com1,...)");
	assert_int_equal(merge(LIST("lpc.com1.path=tcp=4444"), NONE, NONE, NULL)->rc, 0);
	assert_int_equal(merge(LIST("lpc.com1.path=tcp=[::1]:4444"), NONE, NONE, NULL)->rc, 0);
	assert_int_equal(merge(LIST("lpc.com1.path=tcp=0.0.0.0:4444"), NONE, LIST("lpc.com1.path=tcp=0.0.0.0:4444"),
			       NULL)->rc,
			 0);
	/* ...and no VNC beyond loopback without a password. */
	m = merge(LIST("pci.0.6.0.device=fbuf", "pci.0.6.0.tcp=0.0.0.0:5901"), NONE, NONE, NULL);
	assert_int_equal(m->rc, -1);
	assert_non_null(strstr(m->err, "pci.0.6.0.tcp=0.0.0.0:5901 would listen on 0.0.0.0 without a password"));
	m = merge(LIST("pci.0.6.0.device=fbuf", "pci.0.6.0.tcp=0.0.0.0:5901"), LIST("pci.0.6.0.password=secret"),
		  LIST("pci.0.6.0.password=s3cret"), NULL);
	assert_int_equal(m->rc, 0);
	assert_int_equal(merge(LIST("pci.0.6.0.device=fbuf", "pci.0.6.0.tcp=5901"), NONE, NONE, NULL)->rc, 0);
}

static void file_configuration_is_validated(void **state)
{
	struct merge *m = merge(LIST("cpus=2", "pci.0.3.0.device=fbuf", "pci.0.3.0.pasword=x"), NONE, NONE, NULL);
	(void)state;

	assert_int_equal(m->rc, -1);
	assert_string_equal(m->err, "its configuration: pci.0.3.0.pasword: unknown option of fbuf (did you mean 'password'?)");
	m = merge(LIST("cpus=2", "sandbox.enable=off"), NONE, NONE, NULL);
	assert_int_equal(m->rc, 0);
	assert_null(config_get(m->out, "sandbox.enable")); /* a file never turns the sandbox off */
	config_free(m->out);
	m->out = NULL;
}

/* reboot: what a guest reset does is this process's choice (core/reset.h), never a snapshot file's. */
static void reboot_policy(void **state)
{
	struct config *cfg = tree(LIST("cpus=1"));
	struct merge *m;
	(void)state;

	assert_string_equal(VALIDATE("reboot=restart"), "");
	assert_string_equal(VALIDATE("reboot=exit"), "");
	assert_string_equal(VALIDATE("reboot=reboot"), "reboot=reboot: expected exit or restart");
	assert_false(reset_restarts(cfg)); /* the default keeps bhyve's behaviour: exit with status 0 */
	assert_int_equal(config_set(cfg, "reboot", "restart"), 0);
	assert_true(reset_restarts(cfg));
	config_free(cfg);
	assert_true(options_flags(NULL, "reboot") & OPTION_PROCESS);
	m = merge(LIST("cpus=2", "reboot=restart"), NONE, NONE, NULL);
	assert_int_equal(m->rc, 0);
	assert_null(config_get(m->out, "reboot"));
	m = merge(LIST("cpus=2"), NONE, LIST("reboot=restart"), NULL);
	assert_int_equal(m->rc, 0);
	assert_string_equal(config_get(m->out, "reboot"), "restart");
	config_free(m->out);
	m->out = NULL;
}

/* bootindex= on the models that have a boot path, a number up to 65535. */
static void bootindex_option(void **state)
{
	(void)state;
	assert_string_equal(VALIDATE("pci.0.4.0.device=virtio-blk", "pci.0.4.0.path=/d.img", "pci.0.4.0.bootindex=0",
				     "pci.0.5.0.device=virtio-net", "pci.0.5.0.tap=tap0", "pci.0.5.0.bootindex=65535"),
			    "");
	assert_string_equal(VALIDATE("pci.0.4.0.device=virtio-blk", "pci.0.4.0.bootindex=65536"),
			    "pci.0.4.0.bootindex=65536: expected a number from 0 to 65535 (the firmware's boot order: "
			    "lower first (fw_cfg bootorder; firmware boot only))");
	assert_string_equal(VALIDATE("pci.0.4.0.device=virtio-rnd", "pci.0.4.0.bootindex=1"),
			    "pci.0.4.0.bootindex: unknown option of virtio-rnd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bootindex_option),
		cmocka_unit_test(reboot_policy),
		cmocka_unit_test(known_keys_validate),
		cmocka_unit_test(unknown_key_names_it_and_suggests),
		cmocka_unit_test(device_nodes),
		cmocka_unit_test(malformed_values),
		cmocka_unit_test(ranges),
		cmocka_unit_test(aliases),
		cmocka_unit_test(secrets_are_never_printed),
		cmocka_unit_test(every_default_is_valid),
		cmocka_unit_test(patterns),
		cmocka_unit_test(loopback),
		cmocka_unit_test(device_readers),
		cmocka_unit_test(top_level_readers),
		cmocka_unit_test(file_trust),
		cmocka_unit_test(trusted_file_keeps_its_bindings),
		cmocka_unit_test(untrusted_file_lists_its_bindings),
		cmocka_unit_test(untrusted_file_with_bindings_given),
		cmocka_unit_test(alternatives_satisfy_a_binding),
		cmocka_unit_test(omitted_secrets_must_be_given),
		cmocka_unit_test(listeners_beyond_loopback),
		cmocka_unit_test(file_configuration_is_validated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
