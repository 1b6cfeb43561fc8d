/*
 * UEFI firmware images ("flash device" files such as Debian's OVMF_CODE_4M.fd,
 * OVMF_VARS_4M.fd and OVMF.fd), checked before hyve maps them below 4 GiB.
 *
 * An image is a sequence of firmware volumes (UEFI PI specification,
 * volume 3: a header with "_FVH" at 0x28, a 16-bit checksum over the
 * header, the volume's length) that tile the file exactly. A variable
 * store is one volume whose file system GUID is the NV data GUID
 * (gEfiSystemNvDataFvGuid); a combined image (OVMF.fd) starts with one,
 * followed by the code volumes.
 *
 * Secure Boot builds of OVMF need SMM, which hyve does not provide: they
 * carry MM modules (FFS file types MM, MM core, ...) inside their
 * LZMA-compressed main volume, which plain builds do not. fwimage_needs_smm()
 * decompresses the volumes to find them.
 *
 * Pure functions over a buffer; the callers own the bytes.
 */
#ifndef HYVE_FWIMAGE_H
#define HYVE_FWIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Checks that img is a whole number of firmware volumes. 0, or -1 with a
 * reason in err ("no firmware volume at offset 0x...").
 */
int fwimage_check_volumes(const uint8_t *img, size_t size, char *err, size_t errlen);

/* Whether the (checked) volume at img is a variable store. */
bool fwimage_is_var_store(const uint8_t *img, size_t size);

/* Length of the (checked) volume at img. */
uint64_t fwimage_volume_length(const uint8_t *img);

/*
 * 1 when a checked image holds MM (SMM) modules, 0 when it holds none that
 * this reader can see, -1 with a reason in err when a compressed volume is
 * damaged.
 */
int fwimage_needs_smm(const uint8_t *img, size_t size, char *err, size_t errlen);

#endif
