/*
 * The firmware's boot order (fw_cfg file "bootorder"), from the devices'
 * `bootindex=` option: one OpenFirmware device path per line, lowest index
 * first, the whole file ending with a NUL, the form OVMF's QemuBootOrderLib
 * parses and translates into UEFI device path prefixes (PciRoot(0x0)/
 * Pci(S,F)...) that it matches against its boot options:
 *
 *   /pci@i0cf8/scsi@4/disk@0,0            virtio-blk in slot 4, function 0
 *   /pci@i0cf8/ethernet@5,1/ethernet-phy@0 virtio-net in slot 5, function 1
 *
 * Unit addresses are hexadecimal without 0x; the function is written only
 * when it is not 0. A device model names its nodes in struct device_model
 * (ofw_name, ofw_child).
 */
#ifndef HYVE_BOOTORDER_H
#define HYVE_BOOTORDER_H

#include <stddef.h>
#include <stdint.h>

struct vm;

#define BOOTORDER_FILE "bootorder"
#define BOOTORDER_MAX_INDEX 65535

struct bootorder_entry {
	uint64_t index;          /* bootindex= */
	const char *id;          /* the device ("pci.0.4.0"), for messages and to break no ties */
	unsigned slot, function; /* on PCI bus 0 */
	const char *node;        /* the function's node name: "scsi", "ethernet" */
	const char *child;       /* a node below it ("disk@0,0"), or NULL */
};

/* One device's path (no newline); its length, or -1 when it does not fit in len. */
int bootorder_path(const struct bootorder_entry *e, char *buf, size_t len);

/*
 * Sorts entries by index and writes the file into a new buffer (*out,
 * *outlen, including the final NUL). Two devices with the same index are
 * an error naming both. 0, or -1 with a one-line reason in err.
 */
int bootorder_file(struct bootorder_entry *entries, size_t n, char **out, size_t *outlen, char *err, size_t errlen);

/*
 * The devices of vm with a bootindex and OpenFirmware names, as entries
 * (*entries freed by the caller). 0 or -1 with a reason in err.
 */
int bootorder_collect(struct vm *vm, struct bootorder_entry **entries, size_t *n, char *err, size_t errlen);

#endif
