/*
 * The firmware's configuration keys (bhyve_config(5)): `-l bootrom,CODE[,VARS]`
 * sets lpc.bootrom and lpc.bootvars. Declared on their own so that code
 * other than the flash device (the firmware configuration interface, the
 * boot path) can link them without the device. Both are host bindings: a
 * snapshot that is not the user's own does not get to choose the files.
 * Read by dev/bootrom.c.
 */
#include "core/options.h"

static const struct option_decl bootrom_options[] = {
	{ .name = "lpc.bootrom", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING, .cli_hint = "-l bootrom,CODE[,VARS]",
	  .help = "UEFI firmware image mapped to end at 4 GiB; the VM boots it instead of a kernel" },
	{ .name = "lpc.bootvars", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING, .cli_hint = "-l bootrom,CODE,VARS",
	  .help = "the firmware's variable store (a per-VM copy of OVMF_VARS_4M.fd), flash written through" },
	{ 0 },
};
OPTIONS(bootrom_options)
