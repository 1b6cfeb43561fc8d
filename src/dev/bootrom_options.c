/*
 * The firmware keys, bhyve's `-l bootrom,CODE[,VARS]` (bhyve_config(5)):
 * declared in this one place for every part of firmware boot that reads
 * them (the flash and boot code, fw_cfg). Setting lpc.bootrom selects
 * firmware boot. Both are host files: a snapshot file does not choose them.
 */
#include "core/options.h"

static const struct option_decl bootrom_options[] = {
	{ .name = "lpc.bootrom", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING, .cli_hint = "-l bootrom,...",
	  .help = "UEFI firmware code (OVMF_CODE_4M.fd or the combined OVMF.fd), mapped to end at 4 GiB" },
	{ .name = "lpc.bootvars", .type = OPTION_PATH, .flags = OPTION_HOST_BINDING, .cli_hint = "-l bootrom,CODE,...",
	  .help = "the VM's own copy of the firmware variables (OVMF_VARS_4M.fd), written through" },
	{ 0 },
};
OPTIONS(bootrom_options)
