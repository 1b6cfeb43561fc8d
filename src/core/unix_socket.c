/*
 * Claiming UNIX socket paths (see unix_socket.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/unix_socket.h"

/* Does anybody accept on the socket at path? 1 yes, 0 no (refused), -1 after logging. */
static int somebody_listens(const char *what, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, rc, err;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("%s %s: the path is too long for a UNIX socket", what, path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	err = errno;
	close(fd);
	/* A full backlog (EAGAIN) still means a listener. */
	if (rc == 0 || err == EAGAIN || err == EINPROGRESS)
		return 1;
	if (err == ECONNREFUSED)
		return 0;
	log_error("%s %s: %s", what, path, strerror(err));
	return -1;
}

enum unix_path_state unix_path_claim(const char *what, const char *path)
{
	struct stat st;
	int listening;

	if (lstat(path, &st) < 0)
		return UNIX_PATH_FREE;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s %s: the file exists and is not a socket", what, path);
		return UNIX_PATH_ERROR;
	}
	listening = somebody_listens(what, path);
	if (listening < 0)
		return UNIX_PATH_ERROR;
	if (listening)
		return UNIX_PATH_IN_USE;
	if (unlink(path) < 0 && errno != ENOENT) {
		log_error("%s %s: cannot remove the stale socket: %s", what, path, strerror(errno));
		return UNIX_PATH_ERROR;
	}
	return UNIX_PATH_FREE;
}
