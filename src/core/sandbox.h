/*
 * Confinement (docs/security.md, "Confinement"): a seccomp allow-list for
 * each kind of thread, the switch to an unprivileged user (-u), and the
 * report of a forbidden system call.
 *
 * The order in a run (main.c):
 *   sandbox_prepare()          before any thread exists: reads sandbox.*, resolves
 *                              the user, sets no_new_privs, installs the SIGSYS
 *                              reporter and compiles every kind's filter;
 *   device set-up              virtio I/O threads and the restore-time RAM verifier
 *                              start and confine themselves at once;
 *   sandbox_drop_privileges()  once /dev/kvm, taps, disks, files, listeners and the
 *                              control socket are open;
 *   vm_start()                 each vCPU thread confines itself before its first KVM_RUN;
 *   sandbox_enter(MAIN)        then the event loop runs;
 *   snapshot writers           created by the confined main thread, they add their own filter.
 *
 * Without sandbox_prepare() (unit tests) or with sandbox.enable=false,
 * sandbox_enter() does nothing.
 */
#ifndef HYVE_SANDBOX_H
#define HYVE_SANDBOX_H

#include <stdbool.h>
#include <sys/types.h>

struct config;

enum sandbox_kind {
	SANDBOX_MAIN,     /* event loop: serial backends, VNC, control socket, halt watch, signals */
	SANDBOX_VCPU,     /* KVM_RUN and the device handlers it calls */
	SANDBOX_IO,       /* virtio device I/O threads */
	SANDBOX_SNAPSHOT, /* the control socket's snapshot writer */
	SANDBOX_VERIFIER, /* a lazy restore's RAM checksum verifier */
	SANDBOX_KINDS
};

/* The kind's name as messages and sandbox.selftest spell it ("main", "vcpu", ...). */
const char *sandbox_kind_name(enum sandbox_kind kind);

/*
 * Reads sandbox.enable (default true; `sandbox` is accepted too for now),
 * sandbox.user and sandbox.selftest from cfg and gets everything ready.
 * Call before any thread is created. 0, or -1 after logging.
 */
int sandbox_prepare(const struct config *cfg);

/* Whether sandbox.user names a user to switch to; its ids then. */
bool sandbox_user(uid_t *uid, gid_t *gid);

/*
 * Switches the whole process to sandbox.user and its groups (no-op without
 * one), and checks that root cannot be regained. 0, or -1 after logging.
 */
int sandbox_drop_privileges(void);

/*
 * Confines the calling thread to the allow-list of kind (stacked on any
 * filter it inherited). With sandbox.selftest=KIND it then makes a
 * forbidden call, which ends hyve. 0, or -1 after logging.
 */
int sandbox_enter(enum sandbox_kind kind);

/* Forgets what sandbox_prepare() set up (tests). Threads keep their filters. */
void sandbox_reset(void);

#endif
