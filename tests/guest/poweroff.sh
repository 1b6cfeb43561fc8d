#!/bin/sh
# Power off through the kernel, which on x86 uses ACPI (the VMM must see the S5 sleep request).
echo "POWEROFF-NOW"
sync
poweroff -f
