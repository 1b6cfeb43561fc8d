/*
 * The VM's control socket: a UNIX stream socket on which hyvectl (or any
 * client) sends the JSON requests of docs/hyvectl.md. Clients are served on
 * the VM's event loop; several may be connected at once.
 *
 * Configuration:
 *   control.socket   socket path; default /run/hyve/NAME.sock; "off" or
 *                    "none" disables the socket
 */
#ifndef HYVE_CONTROL_H
#define HYVE_CONTROL_H

#include <sys/types.h>

struct vm;
struct control;

/*
 * Creates the socket (its folder 0700 if missing, the socket 0600) and
 * watches it on vm->loop; call after the VM is built, before vm_start().
 * A socket file nobody listens on is replaced; one somebody listens on
 * means the VM is already running: "VM NAME already running".
 * Returns 0 with *out set (NULL when the socket is disabled, or when the
 * default path cannot be created: that is a warning only), or -1 after one
 * log_error line.
 */
int control_start(struct vm *vm, struct control **out);

/*
 * For a VM that switches to another user (sandbox.user): gives the socket
 * to uid:gid and makes the default folder /run/hyve searchable (0711) so
 * that user's clients can reach it. Call while still privileged. NULL is
 * fine. 0, or -1 after logging.
 *
 * Whoever runs hyve, only clients running as the VM's effective user or
 * as root are served (SO_PEERCRED); others get one error line and are
 * disconnected.
 */
int control_set_owner(struct control *ctl, uid_t uid, gid_t gid);

/*
 * After the event loop has stopped, before vm_destroy(): waits for a
 * snapshot being written, closes clients, removes the socket file.
 * NULL is fine.
 */
void control_stop(struct control *ctl);

#endif
