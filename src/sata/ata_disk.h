/*
 * A SATA disk (ATA/ATAPI Command Set, ACS-3 subset) on an AHCI port: the
 * commands Linux's libata, OVMF's AtaAtapiPassThru and Windows' storahci
 * use, on a raw image (src/block/blockdev.h). Writes go to the host's page
 * cache (write-back, as a disk with its cache enabled); FLUSH CACHE makes
 * them durable, and so does a snapshot or the end of hyve.
 *
 * Commands run on the controller's I/O thread, one at a time.
 */
#ifndef HYVE_ATA_DISK_H
#define HYVE_ATA_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "sata/sata.h"

struct ata_disk;
struct state_writer;
struct state_reader;

struct ata_disk_config {
	const char *path;
	bool ro;
	bool nocache;
	bool direct;           /* write through: every write is flushed before it completes */
	uint32_t sectorsize;   /* logical sector: 512 or 4096 */
	const char *serial;    /* NULL: derived from the path */
	uint16_t rotation;     /* nominal media rotation rate (IDENTIFY word 217): 1 = solid state, else RPM */
};

/* NULL after logging one line naming the problem. */
struct ata_disk *ata_disk_new(const char *owner, const struct ata_disk_config *cfg);
/* Flushes and closes. */
void ata_disk_free(struct ata_disk *d);
/* Power-on settings (write cache on, transfer mode), no pending error log. */
void ata_disk_reset(struct ata_disk *d);
void ata_disk_identify(const struct ata_disk *d, uint16_t id[256]);
/* Runs one command; the data moves through sg (the command's own length bounds it). */
void ata_disk_command(struct ata_disk *d, const struct ata_cmd *c, const struct sata_sg *sg, struct sata_result *res);
/* Makes completed writes durable (snapshots). 0 or an errno. */
int ata_disk_flush(struct ata_disk *d);
void ata_disk_save(const struct ata_disk *d, struct state_writer *w);
int ata_disk_restore(struct ata_disk *d, struct state_reader *r);

#endif
