/*
 * The small interface between a USB host controller model (xhci.c) and the
 * USB device models (hid.c). A device answers control requests on its
 * default pipe, hands out interrupt IN data when it has some, and resets.
 *
 * Locking: the controller guards its devices with its own mutex and sets
 * `lock` to it before the guest runs. Device code entered from elsewhere
 * (input events) takes that lock, and calls notify() with it held when new
 * interrupt IN data is waiting. Side effects that must not run under the
 * controller lock (reporting keyboard LEDs to the input router, whose lock
 * is taken before ours on the input path) are left for flush(), which the
 * controller calls after unlocking.
 */
#ifndef HYVE_USB_H
#define HYVE_USB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;
struct state_writer;
struct state_reader;

/* Speed IDs as in the xHCI PORTSC register (default protocol speed IDs). */
#define USB_SPEED_FULL 1
#define USB_SPEED_LOW 2
#define USB_SPEED_HIGH 3
#define USB_SPEED_SUPER 4

/* Largest data stage a device is given or may return (control requests). */
#define USB_CTRL_MAX 4096

/* Results of control(). */
#define USB_OK 0
#define USB_STALL (-1)

/* Standard requests and descriptor types (USB 2.0 chapter 9). */
#define USB_DIR_IN 0x80
#define USB_TYPE_MASK 0x60
#define USB_TYPE_STANDARD 0x00
#define USB_TYPE_CLASS 0x20
#define USB_RECIP_MASK 0x1f
#define USB_RECIP_DEVICE 0
#define USB_RECIP_INTERFACE 1
#define USB_RECIP_ENDPOINT 2

#define USB_REQ_GET_STATUS 0
#define USB_REQ_CLEAR_FEATURE 1
#define USB_REQ_SET_FEATURE 3
#define USB_REQ_SET_ADDRESS 5
#define USB_REQ_GET_DESCRIPTOR 6
#define USB_REQ_GET_CONFIGURATION 8
#define USB_REQ_SET_CONFIGURATION 9
#define USB_REQ_GET_INTERFACE 10
#define USB_REQ_SET_INTERFACE 11

#define USB_DT_DEVICE 1
#define USB_DT_CONFIG 2
#define USB_DT_STRING 3
#define USB_DT_INTERFACE 4
#define USB_DT_ENDPOINT 5

struct usb_setup {
	uint8_t type;      /* bmRequestType */
	uint8_t request;   /* bRequest */
	uint16_t value, index, length;
};

struct usb_device {
	const char *name;
	unsigned speed;     /* USB_SPEED_* */
	void *opaque;       /* the model's state */

	/*
	 * A control transfer. IN (type & USB_DIR_IN): write at most
	 * min(setup->length, USB_CTRL_MAX) bytes to data and set *len. OUT:
	 * data holds the *len bytes the host sent. USB_OK or USB_STALL.
	 */
	int (*control)(struct usb_device *d, const struct usb_setup *setup, uint8_t *data, unsigned *len);
	/* Interrupt IN on endpoint `ep` (1-15): bytes written (<= max), 0 when nothing is waiting. */
	unsigned (*interrupt_in)(struct usb_device *d, unsigned ep, uint8_t *buf, unsigned max);
	/* Bus reset: unconfigured, default state. */
	void (*reset)(struct usb_device *d);
	/* Runs without the controller lock after the controller handled guest work. */
	void (*flush)(struct usb_device *d);
	void (*save)(struct usb_device *d, struct state_writer *w);
	int (*restore)(struct usb_device *d, struct state_reader *r);
	void (*destroy)(struct usb_device *d);
	/* The controller has set lock/notify/host: the device may now take input from other threads. */
	void (*attached)(struct usb_device *d);

	/* Set by the controller. */
	pthread_mutex_t *lock;
	void (*notify)(void *host, struct usb_device *d);
	void *host;
};

/* HID models (hid.c); their input sinks join vm's router once attached. NULL when out of memory. */
struct usb_device *usb_hid_tablet_new(struct vm *vm);
struct usb_device *usb_hid_kbd_new(struct vm *vm);

#endif
