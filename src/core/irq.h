/*
 * KVM GSI routing and irqfds. KVM takes the routing table only whole
 * (KVM_SET_GSI_ROUTING), so one manager per VM keeps it: the fixed
 * IRQCHIP routes of the PC platform (GSIs 0-15 to both PICs and the I/O
 * APIC, the PIT's GSI 0 to I/O APIC pin 2, GSIs 16-23 to their I/O APIC
 * pins) plus the MSI routes devices add, and re-sends it on every change.
 *
 * MSI routes get GSIs from IRQ_MSI_GSI_BASE up. A device attaches an
 * eventfd to such a GSI (irqfd) so any thread raises the interrupt by
 * writing the eventfd, without entering hyve's code. All functions are
 * thread-safe.
 *
 * Without a KVM VM (vm_fd < 0, as in unit tests) the table is kept but not
 * sent, irqfds are accepted but not attached and vm_signal_msi() does
 * nothing; the manager is then created on first use, and the test frees
 * it with vm_irq_routing_free().
 */
#ifndef HYVE_IRQ_H
#define HYVE_IRQ_H

#include <stdint.h>

struct vm;

#define IRQ_MSI_GSI_BASE 24
#define IRQ_MAX_GSI 4096 /* KVM's KVM_MAX_IRQ_ROUTES */

/* Creates the manager and installs the platform routes; 0, or -1 after logging. */
int vm_irq_routing_init(struct vm *vm);
void vm_irq_routing_free(struct vm *vm);

/* Reserves a GSI for an MSI route (not routed until vm_irq_msi_set()); the GSI, or -1 after logging. */
int vm_irq_msi_alloc(struct vm *vm);
/* Points the GSI at an MSI message and commits the table; 0 or -1 after logging. */
int vm_irq_msi_set(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data);
/* Drops the route (if any) and frees the GSI. */
void vm_irq_msi_free(struct vm *vm, unsigned gsi);

/* The MSI message a GSI is routed to; 0, or -1 when it has no MSI route. */
int vm_irq_msi_get(struct vm *vm, unsigned gsi, uint64_t *addr, uint32_t *data);

/* Attaches/detaches eventfd fd to/from gsi (KVM_IRQFD); 0 or -1 after logging. */
int vm_irqfd_attach(struct vm *vm, int fd, unsigned gsi);
int vm_irqfd_detach(struct vm *vm, int fd, unsigned gsi);

/* Sends one MSI message directly (KVM_SIGNAL_MSI); 0 or -1. */
int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data);

#endif
