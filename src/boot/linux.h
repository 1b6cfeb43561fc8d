/*
 * Direct boot of a Linux bzImage through the 64-bit boot protocol: loads
 * kernel, initrd and command line from the configuration (boot.kernel,
 * boot.initrd, boot.cmdline), writes boot_params, e820, ACPI and MP tables,
 * and puts the boot vCPU in long mode at the kernel's 64-bit entry.
 */
#ifndef HYVE_LINUX_H
#define HYVE_LINUX_H

struct vm;

/* 0, or -1 after a one-line error naming the file or setting at fault. */
int linux_boot_setup(struct vm *vm);

#endif
