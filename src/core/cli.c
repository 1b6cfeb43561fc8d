#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "device.h"
#include "log.h"
#include "options.h"

/* Keys only the command line sets: which snapshot this process resumes, and how. */
static const struct option_decl restore_options[] = {
	{ .name = "snapshot.restore", .type = OPTION_PATH, .flags = OPTION_PROCESS,
	  .help = "resume from this snapshot file (-r)" },
	{ .name = "snapshot.eager", .type = OPTION_BOOL, .def = "false", .flags = OPTION_PROCESS,
	  .help = "with -r: read and verify all of RAM before resuming (--eager)" },
	{ 0 },
};
OPTIONS(restore_options)

enum long_only { OPT_KERNEL = 0x100, OPT_INITRD, OPT_CMDLINE, OPT_PRINT_CONFIG, OPT_EAGER };

static const struct option long_options[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "print-config", no_argument, NULL, OPT_PRINT_CONFIG },
	{ "restore", required_argument, NULL, 'r' },
	{ "eager", no_argument, NULL, OPT_EAGER },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

void cli_usage(FILE *out)
{
	fputs("usage: hyve [-h] [-c NCPUS] [-m SIZE] [-s SLOT,DEVICE[,OPTS]]... [-l comN,BACKEND]...\n"
	      "            [-o KEY=VALUE]... [-k CONFIG_FILE]\n"
	      "            [--kernel FILE [--initrd FILE] [--cmdline TEXT] | -l bootrom,CODE[,VARS]]\n"
	      "            [-u USER] [--print-config] VMNAME\n"
	      "       hyve -r SNAPSHOT [--eager] [-o KEY=VALUE]... [-s ...] [-l ...] [-u USER] [VMNAME]\n"
	      "  -c NCPUS        number of vCPUs (cpus=)\n"
	      "  -m SIZE         guest memory, e.g. 512M or 2G; a bare number is MiB (memory.size=)\n"
	      "  -s SLOT,DEV,..  PCI device in SLOT (S, S:F or B:S:F) (pci.B.S.F.device=DEV)\n"
	      "  -l comN,BACKEND serial port backend: stdio, file=PATH, tcp=[ADDR:]PORT, unix=PATH (lpc.comN.path=)\n"
	      "  -l bootrom,CODE[,VARS]\n"
	      "                  boot UEFI firmware CODE (OVMF_CODE_4M.fd) with VARS, a per-VM copy of its\n"
	      "                  variable store (OVMF_VARS_4M.fd); a combined OVMF.fd alone keeps variables\n"
	      "                  in memory (lpc.bootrom=, lpc.bootvars=)\n"
	      "  -o KEY=VALUE    set any configuration value\n"
	      "  -k FILE         read KEY=VALUE lines from FILE\n"
	      "  --kernel FILE   Linux bzImage to boot directly (boot.kernel=)\n"
	      "  --initrd FILE   initial ramdisk (boot.initrd=)\n"
	      "  --cmdline TEXT  kernel command line (boot.cmdline=)\n"
	      "  -u USER         started as root: switch to USER and its groups once set up (sandbox.user=)\n"
	      "  --print-config  print the resolved configuration and exit (config.dump=true)\n"
	      "  -r SNAPSHOT     resume the VM saved in SNAPSHOT; other options override its configuration\n"
	      "                  (snapshot.restore=)\n"
	      "  --eager         with -r: read and verify all of RAM before resuming (snapshot.eager=true)\n"
	      "exit status: 0 rebooted, 1 powered off, 2 halted, 3 triple fault, 4 error\n",
	      out);
}

static int parse_ncpus(struct config *cfg, const char *arg)
{
	uint64_t n;

	/* bhyve also accepts "cpus=N"; topology beyond a count is not modelled. */
	if (strncmp(arg, "cpus=", 5) == 0)
		arg += 5;
	if (parse_u64(arg, &n) < 0) {
		log_error("-c %s: expected a number of vCPUs", arg);
		return -1;
	}
	return config_set(cfg, "cpus", arg);
}

static int parse_memory(struct config *cfg, const char *arg)
{
	uint64_t bytes;
	char buf[32];

	if (parse_size(arg, 1ULL << 20, &bytes) < 0) {
		log_error("-m %s: expected a size such as 512M or 2G", arg);
		return -1;
	}
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)bytes);
	return config_set(cfg, "memory.size", buf);
}

/* "bootrom,CODE[,VARS]" (bhyve's syntax). */
static int parse_bootrom(struct config *cfg, const char *arg)
{
	const char *code = arg[7] ? arg + 8 : arg + 7; /* after "bootrom," */
	const char *comma = strchr(code, ',');
	char *copy;
	int rc;

	if (!*code || comma == code || (comma && (!comma[1] || strchr(comma + 1, ',')))) {
		log_error("-l %s: expected bootrom,CODE[,VARS]", arg);
		return -1;
	}
	if (!comma) {
		config_unset(cfg, "lpc.bootvars"); /* a later -l bootrom replaces an earlier one whole */
		return config_set(cfg, "lpc.bootrom", code);
	}
	copy = strndup(code, (size_t)(comma - code));
	if (!copy)
		return -1;
	rc = config_set(cfg, "lpc.bootrom", copy) < 0 || config_set(cfg, "lpc.bootvars", comma + 1) < 0 ? -1 : 0;
	free(copy);
	return rc;
}

static int parse_lpc(struct config *cfg, const char *arg)
{
	const char *comma = strchr(arg, ',');
	char key[64];
	size_t n = comma ? (size_t)(comma - arg) : 0;

	if (strncmp(arg, "bootrom", 7) == 0 && (arg[7] == ',' || !arg[7]))
		return parse_bootrom(cfg, arg);
	if (!comma || n == 0 || n > 16 || !comma[1]) {
		log_error("-l %s: expected comN,BACKEND", arg);
		return -1;
	}
	if (strncmp(arg, "com", 3) != 0 || n != 4 || arg[3] < '1' || arg[3] > '4') {
		log_error("-l %.*s: unknown LPC device (com1 to com4 and bootrom exist)", (int)n, arg);
		return -1;
	}
	snprintf(key, sizeof(key), "lpc.%.*s.path", (int)n, arg);
	return config_set(cfg, key, comma + 1);
}

/* "S", "S:F" or "B:S:F" into bus, slot, function. */
static int parse_pci_address(const char *text, unsigned *bus, unsigned *slot, unsigned *func)
{
	unsigned v[3];
	int n = 0;
	char tail;

	n = sscanf(text, "%u:%u:%u%c", &v[0], &v[1], &v[2], &tail);
	if (n == 3) {
		*bus = v[0], *slot = v[1], *func = v[2];
	} else if (sscanf(text, "%u:%u%c", &v[0], &v[1], &tail) == 2) {
		*bus = 0, *slot = v[0], *func = v[1];
	} else if (sscanf(text, "%u%c", &v[0], &tail) == 1) {
		*bus = 0, *slot = v[0], *func = 0;
	} else {
		return -1;
	}
	return (*bus > 255 || *slot > 31 || *func > 7) ? -1 : 0;
}

/* Options without a model-specific parser: "key=value" sets key, a bare word sets word=true. */
static int parse_generic_options(struct config *cfg, const char *prefix, const char *opts)
{
	char *copy = strdup(opts), *save = NULL;
	int rc = 0;

	for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
		char key[256], *eq = strchr(tok, '=');
		if (eq)
			*eq = '\0';
		snprintf(key, sizeof(key), "%s.%s", prefix, tok);
		rc = config_set(cfg, key, eq ? eq + 1 : "true");
	}
	free(copy);
	return rc;
}

static int parse_slot(struct config *cfg, const char *arg)
{
	char addr[32], name[64], prefix[64], key[80];
	const char *comma = strchr(arg, ','), *opts;
	const struct device_model *model;
	unsigned bus, slot, func;
	size_t n;

	if (!comma || (size_t)(comma - arg) >= sizeof(addr)) {
		log_error("-s %s: expected SLOT,DEVICE[,OPTIONS]", arg);
		return -1;
	}
	memcpy(addr, arg, comma - arg);
	addr[comma - arg] = '\0';
	if (parse_pci_address(addr, &bus, &slot, &func) < 0) {
		log_error("-s %s: bad PCI slot '%s' (use SLOT, SLOT:FUNC or BUS:SLOT:FUNC; slot 0-31, function 0-7)", arg, addr);
		return -1;
	}
	opts = strchr(comma + 1, ',');
	n = opts ? (size_t)(opts - comma - 1) : strlen(comma + 1);
	if (n == 0 || n >= sizeof(name)) {
		log_error("-s %s: missing device name", arg);
		return -1;
	}
	memcpy(name, comma + 1, n);
	name[n] = '\0';
	snprintf(prefix, sizeof(prefix), "pci.%u.%u.%u", bus, slot, func);
	if (config_has_node(cfg, prefix)) {
		log_error("-s %s: PCI slot %u:%u:%u already holds a device", arg, bus, slot, func);
		return -1;
	}
	model = device_model_find(name);
	snprintf(key, sizeof(key), "%s.device", prefix);
	if (config_set(cfg, key, name) < 0)
		return -1;
	if (!opts)
		return 0;
	if (model && model->parse_slot_options)
		return model->parse_slot_options(cfg, prefix, opts + 1);
	return parse_generic_options(cfg, prefix, opts + 1);
}

/* -o KEY=VALUE, KEY possibly an alias ("sandbox" for sandbox.enable). */
static int set_assignment(struct config *cfg, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char key[512];

	if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(key))
		return config_set_assignment(cfg, arg); /* says what is wrong */
	memcpy(key, arg, (size_t)(eq - arg));
	key[eq - arg] = '\0';
	return config_set(cfg, options_canonical_key(key), eq + 1);
}

static int handle_option(struct config *cfg, int opt, const char *arg)
{
	switch (opt) {
	case 'c': return parse_ncpus(cfg, arg);
	case 'm': return parse_memory(cfg, arg);
	case 's': return parse_slot(cfg, arg);
	case 'l': return parse_lpc(cfg, arg);
	case 'o': return set_assignment(cfg, arg);
	case 'u': return config_set(cfg, "sandbox.user", arg);
	case 'k': return config_load_file_mapped(cfg, arg, options_canonical_key);
	case OPT_KERNEL: return config_set(cfg, "boot.kernel", arg);
	case OPT_INITRD: return config_set(cfg, "boot.initrd", arg);
	case OPT_CMDLINE: return config_set(cfg, "boot.cmdline", arg);
	case OPT_PRINT_CONFIG: return config_set(cfg, "config.dump", "true");
	case 'r': return config_set(cfg, "snapshot.restore", arg);
	case OPT_EAGER: return config_set(cfg, "snapshot.eager", "true");
	}
	return -1;
}

/* A VM boots either firmware or a kernel; variables belong to firmware. */
static int check_boot_source(const struct config *cfg)
{
	if (config_get(cfg, "lpc.bootrom") && config_get(cfg, "boot.kernel")) {
		log_error("-l bootrom and --kernel exclude each other: the firmware boots the VM (lpc.bootrom, boot.kernel)");
		return -1;
	}
	if (config_get(cfg, "lpc.bootvars") && !config_get(cfg, "lpc.bootrom")) {
		log_error("lpc.bootvars without lpc.bootrom: give the firmware with -l bootrom,CODE,VARS");
		return -1;
	}
	return 0;
}

enum cli_result cli_parse(int argc, char **argv, struct config *cfg)
{
	int opt;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+c:m:s:l:o:k:r:u:h", long_options, NULL)) != -1) {
		if (opt == 'h') {
			cli_usage(stdout);
			return CLI_EXIT_OK;
		}
		if (opt == '?' || opt == ':') {
			if (optopt && optopt < 0x100)
				log_error("unknown option or missing argument: -%c (see hyve -h)", optopt);
			else
				log_error("unknown option or missing argument: %s (see hyve -h)", argv[optind - 1]);
			return CLI_ERROR;
		}
		if (handle_option(cfg, opt, optarg) < 0)
			return CLI_ERROR;
	}
	if (optind < argc) {
		if (optind + 1 < argc) {
			log_error("unexpected argument '%s' after the VM name", argv[optind + 1]);
			return CLI_ERROR;
		}
		if (config_set(cfg, "name", argv[optind]) < 0)
			return CLI_ERROR;
	}
	if (!config_get(cfg, "name") && !config_get(cfg, "snapshot.restore")) {
		log_error("no VM name given (see hyve -h)");
		return CLI_ERROR;
	}
	return check_boot_source(cfg) < 0 ? CLI_ERROR : CLI_RUN;
}

int cli_validate(const struct config *cfg)
{
	char err[512];

	if (options_validate(cfg, 0, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return -1;
	}
	return 0;
}
