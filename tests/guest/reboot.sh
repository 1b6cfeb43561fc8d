#!/bin/sh
# Reboot through the kernel (ACPI reset register, keyboard controller, ... as the VMM offers).
echo "REBOOT-NOW"
sync
reboot -f
