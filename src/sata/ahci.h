/*
 * An AHCI 1.3 host bus adapter without PCI (ahci_pci.c puts it on the bus):
 * the generic host registers, up to 32 ports with their command lists,
 * received-FIS areas and PRD tables in guest memory, and the I/O thread
 * that runs the commands on the ports' devices (ata_disk.c, atapi_cd.c).
 *
 * Threads: registers are read and written on vCPU threads (ahci_mmio); a
 * write to PxCI wakes the I/O thread, which takes one issued command at a
 * time, reads its header, FIS and PRD table from guest memory once (the
 * values used are the values checked), runs it without the lock, and
 * posts its result. Whatever must not overlap a running command (a port
 * stopped, a reset, a media change, a pause for a snapshot) waits for it
 * to end first, so no command is ever half done: a snapshot holds only
 * commands not started yet (PxCI bits), which run after the restore.
 */
#ifndef HYVE_AHCI_H
#define HYVE_AHCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ahci;
struct vm;
struct ata_disk;
struct atapi_cd;
struct state_writer;
struct state_reader;

#define AHCI_MAX_PORTS 32
#define AHCI_MMIO_SIZE 0x2000 /* generic registers, then 0x80 bytes per port from 0x100 */

/*
 * The interrupt line's level changed or, with event, a new interrupt
 * condition arose (MSI sends a message per event). Called with the HBA's
 * lock held, from any thread.
 */
typedef void (*ahci_irq_fn)(void *opaque, bool level, bool event);

struct ahci *ahci_new(struct vm *vm, const char *owner, ahci_irq_fn irq, void *opaque);
/* Puts a disk or a CD drive (not both) on port; the HBA owns it from then on. 0 or -1 after logging. */
int ahci_attach(struct ahci *h, unsigned port, struct ata_disk *disk, struct atapi_cd *cd);
/* Starts the I/O thread (before the sandbox is entered: the thread confines itself). 0 or -1. */
int ahci_start(struct ahci *h);
void ahci_free(struct ahci *h);

void ahci_mmio(struct ahci *h, uint64_t off, uint8_t *data, unsigned size, bool is_write);
/* Power-on state (waits for a command in progress). */
void ahci_reset(struct ahci *h);
/* false: finish the command in progress and start no other until true. */
void ahci_set_running(struct ahci *h, bool running);
/* Waits until every issued command has run (tests). */
void ahci_drain(struct ahci *h);

/* The CD drive on port, or NULL. */
struct atapi_cd *ahci_cd(struct ahci *h, unsigned port);
/* Media change on port's CD drive, between commands (see atapi_cd_change()). */
int ahci_cd_change(struct ahci *h, unsigned port, int fd, const char *path, bool force, char *err, size_t errlen);

/* The controller of an ahci, ahci-hd or ahci-cd device (ahci_pci.c), or NULL for another model. */
struct device;
struct ahci *ahci_of_device(struct device *dev);

/* Registers and every port's device; the devices' images are flushed. */
void ahci_save(struct ahci *h, struct state_writer *w);
int ahci_restore(struct ahci *h, struct state_reader *r);

#endif
