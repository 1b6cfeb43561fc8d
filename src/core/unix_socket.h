/*
 * UNIX socket paths a hyve listens on (the control socket, a VNC display):
 * a socket file left by a hyve that was killed would otherwise keep the
 * next one from starting ("Address already in use").
 */
#ifndef HYVE_UNIX_SOCKET_H
#define HYVE_UNIX_SOCKET_H

enum unix_path_state {
	UNIX_PATH_FREE,   /* nothing there now: a stale socket nobody accepted on was removed */
	UNIX_PATH_IN_USE, /* a process accepts connections there */
	UNIX_PATH_ERROR,  /* not a socket, or it cannot be checked or removed (logged) */
};

/*
 * Makes path free for bind() when nobody listens there. `what` names the
 * socket in messages ("control socket", "vnc"). Call with the path's folder
 * locked when two processes may race for the same path.
 */
enum unix_path_state unix_path_claim(const char *what, const char *path);

#endif
