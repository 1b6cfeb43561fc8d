/*
 * Removable media drives (the AHCI CD-ROMs), found by name for the control
 * socket's cd-insert and cd-eject. A drive registers itself with its VM
 * when created and unregisters when destroyed; the list lives in struct vm.
 * Registration, lookup and change() all run on the main thread (device
 * creation and the control socket's event loop).
 */
#ifndef HYVE_MEDIA_H
#define HYVE_MEDIA_H

#include <stdbool.h>
#include <stddef.h>

struct vm;

#define MEDIA_NAME_MAX 32

struct media_drive {
	/* "S:P": PCI slot S, port P of the controller at function 0; "S.F:P" on another function. */
	char name[MEDIA_NAME_MAX];
	/*
	 * Puts the image open on fd (read-only) in the drive, path naming it in
	 * messages and snapshots; fd -1 ejects. On success the drive owns fd.
	 * force: even when the guest locked the medium in. 0, or -1 with a
	 * one-line reason in err.
	 */
	int (*change)(struct media_drive *d, int fd, const char *path, bool force, char *err, size_t errlen);
	void *opaque;
	struct media_drive *next;
};

void media_drive_register(struct vm *vm, struct media_drive *d);
void media_drive_unregister(struct vm *vm, struct media_drive *d);
/*
 * The drive called name; a bare port number "P" names the one drive on
 * port P when there is exactly one. NULL with a one-line reason in err
 * (no such drive, ambiguous).
 */
struct media_drive *media_drive_find(struct vm *vm, const char *name, char *err, size_t errlen);

#endif
