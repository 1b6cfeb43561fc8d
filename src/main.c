/* hyve(8): command line, configuration, and the VM's life from start to exit status. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "boot/fw_cfg_files.h"
#include "boot/linux.h"
#include "control/control.h"
#include "core/chardev.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/device.h"
#include "core/evloop.h"
#include "core/log.h"
#include "core/options.h"
#include "core/platform.h"
#include "core/reset.h"
#include "core/sandbox.h"
#include "core/vm.h"
#include "dev/acpi_pm.h"
#include "snapshot/snapshot.h"

struct signal_watch {
	struct vm *vm;
	int fd;
	bool power_button_pressed;
};

/*
 * SIGTERM presses the ACPI power button, as bhyve does: the guest shuts
 * down cleanly and hyve exits 1. A second SIGTERM (a guest that ignores
 * the button), SIGINT and SIGHUP power off at once.
 */
static void on_signal(void *opaque, uint32_t events)
{
	struct signal_watch *sw = opaque;
	struct signalfd_siginfo si;
	(void)events;

	while (read(sw->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM && !sw->power_button_pressed) {
			sw->power_button_pressed = true;
			acpi_pm_power_button(sw->vm);
		} else
			vm_request_exit(sw->vm, HYVE_EXIT_POWEROFF);
	}
}

/* Blocks the signals hyve handles, before any thread exists, so that only the signalfd sees them. */
static int watch_signals(struct vm *vm, struct signal_watch *sw)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sw->vm = vm;
	sw->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sw->fd < 0 || evloop_add(vm->loop, sw->fd, EPOLLIN, on_signal, sw) < 0) {
		log_error("cannot watch signals");
		return -1;
	}
	return 0;
}

/*
 * A fresh boot: the devices, then either a Linux kernel loaded directly or
 * firmware (lpc.bootrom), which finds what it needs in fw_cfg and starts
 * from the vCPUs' reset state at 0xFFFFFFF0 (KVM's; the other vCPUs wait
 * for INIT-SIPI).
 */
static int prepare_boot(struct vm *vm)
{
	if (devices_attach_all(vm) < 0)
		return -1;
	if (opt_str(vm->cfg, "lpc.bootrom"))
		return fw_cfg_files_setup(vm);
	return linux_boot_setup(vm);
}

/*
 * After a guest reset with reboot=restart (core/reset.h), once devices and
 * vCPUs are back in their power-on state: firmware needs nothing more (its
 * code is read-only, fw_cfg's files do not change, the BSP starts at the
 * reset vector); a direct boot loads kernel, initrd and tables again.
 */
static int boot_again(struct vm *vm)
{
	if (opt_str(vm->cfg, "lpc.bootrom"))
		return 0;
	return linux_boot_load(vm);
}

/* A restored VM that restarts in this process needs its kernel to boot again (firmware needs nothing). */
static int prepare_restart_after_restore(struct vm *vm)
{
	if (!vm->reset || opt_str(vm->cfg, "lpc.bootrom"))
		return 0;
	if (!opt_str(vm->cfg, "boot.kernel")) {
		log_error("reboot=restart: this restored VM boots a kernel directly and the snapshot names none it may use: give it with --kernel FILE");
		return -1;
	}
	return linux_boot_open(vm);
}

static int attach_and_restore(struct vm *vm, struct snapshot_file *snap)
{
	if (devices_attach_all(vm) < 0 || snapshot_restore_vm(snap, vm) < 0)
		return -1;
	return prepare_restart_after_restore(vm);
}

/*
 * Builds the configuration from a snapshot and the command line (which
 * host bindings the file may choose is the snapshot code's decision), and
 * checks the result. Returns the snapshot handle.
 */
static struct snapshot_file *open_snapshot(struct config *cli, struct config **cfg)
{
	struct snapshot_file *snap;
	bool eager;

	if (opt_bool(cli, "snapshot.eager", &eager) < 0)
		return NULL;
	*cfg = config_new();
	if (!*cfg)
		return NULL;
	snap = snapshot_open(opt_str(cli, "snapshot.restore"), eager, *cfg, cli);
	if (snap && cli_validate(*cfg) < 0) {
		snapshot_close(snap);
		return NULL;
	}
	return snap;
}

/*
 * Everything privileged is opened first (devices, listeners, the control
 * socket, what snapshots will need), then the user is switched (-u).
 * Confinement follows (core/sandbox.h): I/O threads confined themselves
 * when devices started them, vCPU threads do as they start, and the main
 * thread last, before its loop. 0, or -1 after logging.
 */
static int set_up_and_start(struct vm *vm, struct snapshot_file *snap, struct signal_watch *sw,
			    struct control **ctl)
{
	uid_t uid;
	gid_t gid;

	if (watch_signals(vm, sw) < 0)
		return -1;
	/* The vCPUs' power-on state, before a boot or a restore changes it. */
	if (reset_prepare(vm, boot_again) < 0)
		return -1;
	if (snap ? attach_and_restore(vm, snap) < 0 : prepare_boot(vm) < 0)
		return -1;
	if (control_start(vm, ctl) < 0)
		return -1;
	/* With -u, the control socket becomes the user's, so that user's hyvectl can reach it. */
	if (sandbox_user(&uid, &gid) && control_set_owner(*ctl, uid, gid) < 0)
		return -1;
	snapshot_prepare_saves();
	if (sandbox_drop_privileges() < 0 || vm_start(vm) < 0)
		return -1;
	return sandbox_enter(SANDBOX_MAIN);
}

static int run(struct config *cfg, struct snapshot_file *snap)
{
	struct signal_watch sw = { .fd = -1 };
	struct control *ctl = NULL;
	struct vm *vm = vm_create(cfg);
	int status = HYVE_EXIT_ERROR;

	if (!vm)
		return HYVE_EXIT_ERROR;
	if (set_up_and_start(vm, snap, &sw, &ctl) == 0)
		status = vm_wait(vm);
	else {
		vm_request_exit(vm, HYVE_EXIT_ERROR);
		vm_wait(vm);
	}
	control_stop(ctl);
	snapshot_close(snap);
	vm_destroy(vm);
	if (sw.fd >= 0)
		close(sw.fd);
	chardev_restore_terminal();
	return status;
}

/* Blocks the signals hyve handles, before any thread exists, so that only the signalfd sees them. */
static void block_handled_signals(void)
{
	sigset_t handled;

	signal(SIGPIPE, SIG_IGN); /* a closed client or pipe is an error return, not a reason to die */
	sigemptyset(&handled);
	sigaddset(&handled, SIGTERM);
	sigaddset(&handled, SIGINT);
	sigaddset(&handled, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &handled, NULL);
}

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };

static const struct option_decl process_options[] = {
	{ .name = "log.level", .type = OPTION_ENUM, .def = "warn", .flags = OPTION_PROCESS, .choices = log_levels,
	  .help = "what hyve writes to its standard error" },
	{ .name = "config.dump", .type = OPTION_BOOL, .def = "false", .flags = OPTION_PROCESS,
	  .help = "print the resolved configuration and exit (--print-config)" },
	{ 0 },
};
OPTIONS(process_options)

/*
 * The command line alone, before anything is opened. A restore's command
 * line may set options of devices only the snapshot names: those are
 * checked once the two are merged.
 */
static int validate_command_line(const struct config *cli, bool restoring)
{
	char err[512];

	if (options_validate(cli, restoring ? OPTIONS_DEFER_UNRESOLVED : 0, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return -1;
	}
	return 0;
}

/* Everything after the command line; cfg is the tree the VM is built from. */
static int configure_and_run(struct config *cli)
{
	bool restoring = opt_str(cli, "snapshot.restore") != NULL;
	struct config *cfg = cli;
	struct snapshot_file *snap = NULL;
	bool dump = false;
	int status;

	if (validate_command_line(cli, restoring) < 0)
		return HYVE_EXIT_ERROR;
	log_set_level((enum log_level)opt_enum(cli, "log.level"));
	if (restoring) {
		snap = open_snapshot(cli, &cfg);
		if (!snap) {
			if (cfg != cli)
				config_free(cfg);
			return HYVE_EXIT_ERROR;
		}
	}
	/* The platform layout is part of the resolved configuration (and of what --print-config shows). */
	if (opt_bool(cfg, "config.dump", &dump) < 0 || !platform_select(cfg)) {
		status = HYVE_EXIT_ERROR;
		snapshot_close(snap);
	} else if (dump) {
		options_dump(cfg, stdout);
		snapshot_close(snap);
		status = 0;
	} else if (sandbox_prepare(cfg) < 0) {
		snapshot_close(snap);
		status = HYVE_EXIT_ERROR;
	} else {
		status = run(cfg, snap);
	}
	if (cfg != cli)
		config_free(cfg);
	return status;
}

int main(int argc, char **argv)
{
	struct config *cli = config_new();
	int status;

	if (!cli)
		return HYVE_EXIT_ERROR;
	block_handled_signals();
	switch (cli_parse(argc, argv, cli)) {
	case CLI_EXIT_OK:
		status = 0;
		break;
	case CLI_ERROR:
		status = HYVE_EXIT_ERROR;
		break;
	default:
		status = configure_and_run(cli);
		break;
	}
	config_free(cli);
	return status;
}
