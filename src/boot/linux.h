/*
 * Direct boot of a Linux bzImage through the 64-bit boot protocol: loads
 * kernel, initrd and command line from the configuration (boot.kernel,
 * boot.initrd, boot.cmdline), writes boot_params, e820, ACPI and MP tables,
 * and puts the boot vCPU in long mode at the kernel's 64-bit entry.
 */
#ifndef HYVE_LINUX_H
#define HYVE_LINUX_H

struct vm;

/*
 * Opens the files and loads them (linux_boot_open() then linux_boot_load());
 * with reboot=restart (vm->reset) the files stay open for the next reset.
 * 0, or -1 after a one-line error naming the file or setting at fault.
 */
int linux_boot_setup(struct vm *vm);
/* Opens boot.kernel and boot.initrd into vm->linux_boot; 0 or -1 after logging. */
int linux_boot_open(struct vm *vm);
/*
 * Loads the open files, the command line and the tables into guest memory
 * and sets the boot vCPU's registers, again on every call (a reset's
 * fresh boot): it only reads the files it holds open.
 */
int linux_boot_load(struct vm *vm);
/* Closes what linux_boot_open() opened. */
void linux_boot_free(struct vm *vm);

#endif
