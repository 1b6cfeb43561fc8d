/*
 * Where firmware-like structures live in low guest memory for a direct
 * Linux boot. Everything below 1 MiB outside [LAYOUT_RAM_LOW_END, 1 MiB)
 * is ordinary RAM to the guest once it has read these structures.
 */
#ifndef HYVE_LAYOUT_H
#define HYVE_LAYOUT_H

#define LAYOUT_GDT 0x500ULL
#define LAYOUT_BOOT_PARAMS 0x7000ULL /* the "zero page" */
#define LAYOUT_PML4 0x9000ULL
#define LAYOUT_PDPT 0xA000ULL
#define LAYOUT_PD 0xB000ULL /* four pages: identity map of 4 GiB with 2 MiB pages */
#define LAYOUT_CMDLINE 0x20000ULL
#define LAYOUT_CMDLINE_MAX 0x10000ULL

/* Reserved in e820 from here to 1 MiB: EBDA, VGA hole, BIOS area. */
#define LAYOUT_RAM_LOW_END 0x9F000ULL
#define LAYOUT_MPTABLE 0x9F000ULL /* MP configuration table; floating pointer in its last 16 bytes */
#define LAYOUT_MPTABLE_MAX 0x1000ULL
#define LAYOUT_ACPI_TABLES 0xE0000ULL /* RSDT/XSDT/MADT/FADT/DSDT... up to 0xF0000 */
#define LAYOUT_ACPI_TABLES_MAX 0x10000ULL
#define LAYOUT_RSDP 0xF0000ULL /* 16-byte aligned, inside the legacy scan window */
#define LAYOUT_BIOS_END 0x100000ULL

#define LAYOUT_KERNEL_LOAD 0x100000ULL /* bzImage protected-mode code */

/* Platform I/O ports and IRQs shared by tables and devices. */
#define PORT_ACPI_PM1A_EVT 0x600 /* 4 bytes: PM1 status, PM1 enable */
#define PORT_ACPI_PM1A_CNT 0x604 /* 2 bytes */
#define PORT_ACPI_PM_TMR 0x608   /* 4 bytes, 3.579545 MHz */
#define PORT_RESET 0xCF9         /* reset control register; also the FADT reset register */
#define RESET_VALUE 0x06
#define IRQ_ACPI_SCI 9
#define ACPI_S5_SLP_TYP 5        /* value of SLP_TYP that means soft-off, announced in \_S5 */
#define FIRMWARE_S5_SLP_TYP 0    /* soft-off too: OVMF's shutdown writes it (SLP_EN with SLP_TYP 0) */

#define IOAPIC_BASE 0xFEC00000ULL
#define LAPIC_BASE 0xFEE00000ULL
#define IOAPIC_PINS 24

/*
 * PCI (src/pci). Below 4 GiB the hole above RAM holds ECAM for buses
 * 0-255 and the 32-bit BAR window, then the I/O APIC and LAPIC; where
 * exactly depends on the VM's platform layout (core/platform.h). 64-bit
 * BARs go to a window above all RAM, aligned to its size. I/O BARs are
 * placed from PCI_IO_BASE, above every legacy port.
 */
#define PCI_ECAM_SIZE 0x10000000ULL /* 1 MiB per bus, buses 0-255 */
#define PCI_ECAM_BUS_END 255
#define PCI_IO_BASE 0x1000ULL
#define PCI_IO_END 0x10000ULL /* exclusive */
#define PCI_MMIO64_SIZE (32ULL << 30)
/* Start of the 64-bit window for RAM ending at ram_end (exclusive, >= 4 GiB). */
#define PCI_MMIO64_BASE(ram_end) (((ram_end) + PCI_MMIO64_SIZE - 1) & ~(PCI_MMIO64_SIZE - 1))
#define PCI_INTX_GSI_BASE 16 /* INTx of (slot, pin) is GSI base + (slot + pin - 1) % count, level */
#define PCI_INTX_GSIS 8
#define PORT_PCI_CONFIG_ADDRESS 0xCF8 /* dword only; 0xCF9 is PORT_RESET */
#define PORT_PCI_CONFIG_DATA 0xCFC   /* 4 ports */

#endif
