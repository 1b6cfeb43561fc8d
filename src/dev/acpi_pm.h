/* ACPI fixed-hardware power management ("acpi-pm"): PM1 event/control blocks, PM timer, reset register. */
#ifndef HYVE_ACPI_PM_H
#define HYVE_ACPI_PM_H

struct vm;

/*
 * Presses the ACPI power button: sets PWRBTN_STS and raises the SCI while
 * the guest has the event enabled. The guest decides what to do (normally
 * an orderly shutdown ending in an S5 request). Callable from any thread;
 * does nothing when the VM has no acpi-pm device.
 */
void acpi_pm_power_button(struct vm *vm);

#endif
