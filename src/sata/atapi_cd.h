/*
 * An ATAPI CD-ROM (MMC-6 subset) on an AHCI port: the packet commands
 * Linux's sr, OVMF's AtaAtapiPassThru/ScsiDisk and installers use, on a
 * read-only image of 2048-byte blocks (an ISO), with removable media: the
 * control socket inserts and ejects discs (`hyvectl cd-insert/cd-eject`)
 * and the guest learns of it through a unit attention and media events.
 *
 * Called with the port's lock held: one command at a time; media changes
 * from the control thread take the same lock.
 */
#ifndef HYVE_ATAPI_CD_H
#define HYVE_ATAPI_CD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sata/sata.h"

struct atapi_cd;
struct state_writer;
struct state_reader;

#define ATAPI_CD_BLOCK 2048u

/*
 * A drive for owner (a device id, for messages) holding the image at path,
 * or an empty tray when path is NULL. NULL after logging one line naming
 * the problem (missing, unreadable, a directory, not a whole block).
 */
struct atapi_cd *atapi_cd_new(const char *owner, const char *path, const char *serial);
void atapi_cd_free(struct atapi_cd *cd);
/* Power-on state: media kept, sense cleared, a power-on unit attention, tray unlocked. */
void atapi_cd_reset(struct atapi_cd *cd);

/* IDENTIFY PACKET DEVICE (0xA1) data. */
void atapi_cd_identify(const struct atapi_cd *cd, uint16_t id[256]);
/*
 * Runs one packet command (the 12 or 16 command bytes) moving data through
 * sg, at most alloc_len bytes (the host's byte count limit; the buffers'
 * size otherwise). Fills res: DRDY (|ERR with sense key << 4 in error on
 * CHECK CONDITION), transferred bytes.
 */
void atapi_cd_packet(struct atapi_cd *cd, const uint8_t cdb[16], const struct sata_sg *sg, struct sata_result *res);

/*
 * Replaces the medium with the image open on fd (read-only; path names it
 * in messages and snapshots); fd -1 ejects. The caller opened the file:
 * hyve, confined, opens no existing file once the guest runs, so
 * `hyvectl cd-insert` passes the descriptor over the control socket. On
 * success the drive owns fd; on failure the caller still does. A medium
 * the guest locked (PREVENT ALLOW MEDIUM REMOVAL) is replaced or ejected
 * only with force. 0, or -1 with a one-line reason in err. The guest sees
 * a unit attention (MEDIUM MAY HAVE CHANGED) and GET EVENT STATUS
 * NOTIFICATION media events.
 */
int atapi_cd_change(struct atapi_cd *cd, int fd, const char *path, bool force, char *err, size_t errlen);
/* The image the drive holds, or NULL for an empty tray. */
const char *atapi_cd_path(const struct atapi_cd *cd);

/* Sense data, media state and events; the medium's identity (path, size, mtime). */
void atapi_cd_save(const struct atapi_cd *cd, struct state_writer *w);
/* 0, or -1 after logging when the snapshot's state cannot be taken over. */
int atapi_cd_restore(struct atapi_cd *cd, struct state_reader *r);

#endif
