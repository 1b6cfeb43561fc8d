/* hyve(8): command line, configuration, and the VM's life from start to exit status. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/linux.h"
#include "core/chardev.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "core/vm.h"

int main(int argc, char **argv)
{
	struct config *cfg = config_new();
	struct vm *vm;
	bool dump = false;
	int status;

	if (!cfg)
		return HYVE_EXIT_ERROR;
	switch (cli_parse(argc, argv, cfg)) {
	case CLI_EXIT_OK:
		return 0;
	case CLI_ERROR:
		return HYVE_EXIT_ERROR;
	default:
		break;
	}
	if (config_get_bool(cfg, "config.dump", false, &dump) < 0 || cli_validate(cfg) < 0)
		return HYVE_EXIT_ERROR;
	if (dump) {
		config_dump(cfg, stdout);
		return 0;
	}
	vm = vm_create(cfg);
	if (!vm)
		return HYVE_EXIT_ERROR;
	if (devices_attach_all(vm) < 0 || linux_boot_setup(vm) < 0 || vm_start(vm) < 0) {
		vm_request_exit(vm, HYVE_EXIT_ERROR);
		vm_wait(vm);
		vm_destroy(vm);
		chardev_restore_terminal();
		return HYVE_EXIT_ERROR;
	}
	status = vm_wait(vm);
	vm_destroy(vm);
	chardev_restore_terminal();
	config_free(cfg);
	return status;
}
