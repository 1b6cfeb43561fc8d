/*
 * The xHCI 1.0 controller core (xhci.c): registers, command ring, event
 * ring and transfer rings over guest memory, independent of PCI so the
 * fuzzer and unit tests can drive it directly. xhci_pci.c puts it behind a
 * PCI function (BAR0, MSI-X, INTx).
 *
 * The caller serialises every call with its own lock (xhci_lock(x) gives
 * it to the devices, see usb/usb.h).
 */
#ifndef HYVE_XHCI_H
#define HYVE_XHCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct guest_memory;
struct usb_device;
struct state_writer;
struct state_reader;

#define XHCI_MMIO_SIZE 0x4000u   /* capability, operational, runtime, doorbells; MSI-X above 0x3000 */
#define XHCI_MSIX_TABLE 0x3000u
#define XHCI_MSIX_PBA 0x3800u
#define XHCI_USB2_PORTS 2        /* ports 1-2: USB 2.0 */
#define XHCI_USB3_PORTS 2        /* ports 3-4: USB 3.0 */
#define XHCI_PORTS (XHCI_USB2_PORTS + XHCI_USB3_PORTS)
#define XHCI_SLOTS 8

/* Register block offsets inside the MMIO region. */
#define XHCI_CAP_LEN 0x40u
#define XHCI_XECP 0x500u
#define XHCI_RTS 0x1000u
#define XHCI_DB 0x2000u

/*
 * Interrupt callback: `raise` true when interrupter 0 asks for an
 * interrupt (an MSI-X message or INTx asserted), false when its pending
 * bit was cleared (INTx deasserted). Returns true when the interrupt went
 * out as a message (MSI-X), which clears the pending bit by itself.
 */
typedef bool (*xhci_irq_fn)(void *opaque, bool raise);

struct xhci;

/* Lock must outlive the controller; the devices use it from input threads. */
struct xhci *xhci_new(struct guest_memory *mem, pthread_mutex_t *lock, xhci_irq_fn irq, void *opaque);
/* Destroys the attached devices too. */
void xhci_free(struct xhci *x);
/* Plugs dev into USB 2 port `port` (1-based) before the guest runs; 0 or -1. */
int xhci_attach(struct xhci *x, unsigned port, struct usb_device *dev);
/* A register access at `off` in the MMIO region (lock held). */
void xhci_mmio(struct xhci *x, uint64_t off, uint8_t *data, unsigned size, bool is_write);
/* Runs the attached devices' flush() (lock NOT held). */
void xhci_flush_devices(struct xhci *x);
/* Power-on state (lock held). */
void xhci_reset(struct xhci *x);
/* The whole controller and device state (lock held). */
void xhci_save(struct xhci *x, struct state_writer *w);
int xhci_restore(struct xhci *x, struct state_reader *r);
/* Whether interrupter 0 currently asks for an interrupt (INTx level). */
bool xhci_irq_level(struct xhci *x);

#endif
