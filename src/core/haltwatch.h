/* Ends the VM with status 2 when the guest has halted for good (haltwatch.c). */
#ifndef HYVE_HALTWATCH_H
#define HYVE_HALTWATCH_H

struct vm;
struct haltwatch;

/* Watches from vm's event loop; NULL after logging. */
struct haltwatch *haltwatch_start(struct vm *vm);
void haltwatch_stop(struct haltwatch *w);

#endif
