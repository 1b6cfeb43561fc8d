/*
 * hyvectl(8): controls a running hyve through its control socket
 * (docs/hyvectl.md), and describes snapshot files.
 *
 * Exit status: 0 done; 1 the VM refused the command (its message is
 * printed), snapshot-info failed or cd-insert's FILE cannot be opened; 2 the VM could not be reached or did
 * not answer properly; 64 bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "snapshot/snapshot.h"

#define EXIT_REFUSED 1
#define EXIT_UNREACHABLE 2
#define EXIT_USAGE 64
#define DEFAULT_DIR "/run/hyve"
#define REPLY_MAX (1024 * 1024)

static void usage(FILE *out)
{
	fprintf(out,
		"usage: hyvectl --vm=NAME [--socket=PATH] [--json] COMMAND [ARGS]\n"
		"       hyvectl --vm=NAME --checkpoint=FILE | --suspend=FILE | --force-reset | --force-poweroff\n"
		"       hyvectl snapshot-info FILE\n"
		"\n"
		"commands:\n"
		"  status             name, state, vCPUs, memory and uptime, as JSON\n"
		"  pause              stop the vCPUs\n"
		"  resume             run them again\n"
		"  snapshot FILE      save the VM to FILE and keep it running (--checkpoint=FILE)\n"
		"  snapshot FILE --exit\n"
		"                     save the VM to FILE, then end it with status 1 (--suspend=FILE)\n"
		"  snapshot FILE --live [--exit]\n"
		"                     write RAM while the guest runs, pause only for the rest; prints the\n"
		"                     passes and the pause as JSON\n"
		"  poweroff           press the ACPI power button: the guest shuts down\n"
		"  reset              end the VM at once with status 0, to be restarted (--force-reset)\n"
		"  quit               end the VM at once with status 1 (--force-poweroff)\n"
		"  screenshot FILE    write the display's current picture to FILE as PNG\n"
		"  cd-insert DRIVE FILE [--force]\n"
		"                     put the image FILE in CD drive DRIVE (SLOT:PORT, SLOT.FUNCTION:PORT or PORT)\n"
		"  cd-eject DRIVE [--force]\n"
		"                     take the medium out of CD drive DRIVE\n"
		"                     --force: even when the guest has locked the medium in\n"
		"  snapshot-info FILE describe a snapshot file, as JSON (no VM needed)\n"
		"\n"
		"options:\n"
		"  --vm=NAME          the VM; its socket is " DEFAULT_DIR "/NAME.sock\n"
		"  --socket=PATH      the VM's control socket (its control.socket setting)\n"
		"  --json             print the VM's whole reply\n"
		"\n"
		"exit status: 0 done, 1 refused (the reason is printed) or FILE unusable, 2 VM unreachable, 64 usage\n");
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("hyvectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (hyvectl -h for help)\n", stderr);
	return EXIT_USAGE;
}

struct args {
	const char *vm;
	const char *socket;
	const char *cmd;
	const char *file;
	const char *drive; /* cd-insert, cd-eject */
	bool then_exit;
	bool live;
	bool force;
	bool json;
};

/* Sets the command once; false when another was already given. */
static bool set_cmd(struct args *a, const char *cmd, const char *file, bool then_exit)
{
	if (a->cmd)
		return false;
	a->cmd = cmd;
	a->file = file;
	a->then_exit = then_exit;
	return true;
}

static int parse_args(int argc, char **argv, struct args *a)
{
	enum { OPT_VM = 256, OPT_SOCKET, OPT_JSON, OPT_EXIT, OPT_LIVE, OPT_FORCE, OPT_CHECKPOINT, OPT_SUSPEND,
	       OPT_RESET, OPT_POWEROFF };
	static const struct option longopts[] = {
		{ "vm", required_argument, NULL, OPT_VM },
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "exit", no_argument, NULL, OPT_EXIT },
		{ "live", no_argument, NULL, OPT_LIVE },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "checkpoint", required_argument, NULL, OPT_CHECKPOINT },
		{ "suspend", required_argument, NULL, OPT_SUSPEND },
		{ "force-reset", no_argument, NULL, OPT_RESET },
		{ "force-poweroff", no_argument, NULL, OPT_POWEROFF },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const simple[] = { "status", "pause", "resume", "poweroff", "reset", "quit" };
	bool exit_flag = false, live_flag = false, force_flag = false, known = false;
	int opt, nargs;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		bool ok = true;
		switch (opt) {
		case OPT_VM:
			a->vm = optarg;
			break;
		case OPT_SOCKET:
			a->socket = optarg;
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_EXIT:
			exit_flag = true;
			break;
		case OPT_LIVE:
			live_flag = true;
			break;
		case OPT_FORCE:
			force_flag = true;
			break;
		case OPT_CHECKPOINT:
			ok = set_cmd(a, "snapshot", optarg, false);
			break;
		case OPT_SUSPEND:
			ok = set_cmd(a, "snapshot", optarg, true);
			break;
		case OPT_RESET:
			ok = set_cmd(a, "reset", NULL, false);
			break;
		case OPT_POWEROFF:
			ok = set_cmd(a, "quit", NULL, false);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			return usage_error("%s needs an argument", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
		if (!ok)
			return usage_error("give one command");
	}
	nargs = argc - optind;
	if (nargs > 0) {
		const char *cmd = argv[optind];
		if (a->cmd)
			return usage_error("give one command");
		if (strcmp(cmd, "snapshot") == 0 || strcmp(cmd, "snapshot-info") == 0 || strcmp(cmd, "screenshot") == 0) {
			if (nargs != 2)
				return usage_error("%s needs one FILE", cmd);
			set_cmd(a, cmd, argv[optind + 1], false);
			known = true;
		} else if (strcmp(cmd, "cd-insert") == 0) {
			if (nargs != 3)
				return usage_error("cd-insert needs DRIVE and FILE");
			set_cmd(a, cmd, argv[optind + 2], false);
			a->drive = argv[optind + 1];
			known = true;
		} else if (strcmp(cmd, "cd-eject") == 0) {
			if (nargs != 2)
				return usage_error("cd-eject needs one DRIVE");
			set_cmd(a, cmd, NULL, false);
			a->drive = argv[optind + 1];
			known = true;
		}
		for (size_t i = 0; !known && i < sizeof(simple) / sizeof(simple[0]); i++) {
			if (strcmp(cmd, simple[i]) == 0) {
				if (nargs != 1)
					return usage_error("unexpected argument '%s' after %s", argv[optind + 1], cmd);
				set_cmd(a, simple[i], NULL, false);
				known = true;
			}
		}
		if (!known)
			return usage_error("unknown command '%s'", cmd);
	}
	if (!a->cmd)
		return usage_error("no command given");
	if (exit_flag) {
		if (strcmp(a->cmd, "snapshot") != 0)
			return usage_error("--exit goes with snapshot only");
		a->then_exit = true;
	}
	if (live_flag) {
		if (strcmp(a->cmd, "snapshot") != 0)
			return usage_error("--live goes with snapshot only");
		a->live = true;
	}
	if (force_flag) {
		if (!a->drive)
			return usage_error("--force goes with cd-insert and cd-eject only");
		a->force = true;
	}
	if (a->drive && !*a->drive)
		return usage_error("empty %s DRIVE", a->cmd);
	if (strcmp(a->cmd, "snapshot-info") == 0)
		return 0;
	if (!a->socket && !a->vm)
		return usage_error("which VM? give --vm=NAME or --socket=PATH");
	if (!a->socket && (!*a->vm || strchr(a->vm, '/')))
		return usage_error("--vm=%s: not a VM name (use --socket=PATH)", a->vm);
	if (a->file && !*a->file)
		return usage_error("empty %s FILE", a->cmd);
	return 0;
}

static int snapshot_info_cmd(const char *path)
{
	return snapshot_info(path, stdout) == 0 && fflush(stdout) == 0 ? 0 : EXIT_REFUSED;
}

/* FILE as the VM will see it: its working directory is not ours. */
static char *absolute(const char *file)
{
	char cwd[PATH_MAX];
	char *abs;

	if (file[0] == '/')
		return strdup(file);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	while (file[0] == '.' && file[1] == '/')
		for (file += 2; *file == '/'; file++)
			;
	if (asprintf(&abs, "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", file) < 0)
		return NULL;
	return abs;
}

static char *request_line(const struct args *a)
{
	struct json_object *req = json_object_new_object();
	const char *text;
	char *line = NULL, *path;

	if (!req)
		return NULL;
	json_object_object_add(req, "cmd", json_object_new_string(a->cmd));
	if (a->file) {
		path = absolute(a->file);
		if (!path) {
			fprintf(stderr, "hyvectl: %s: cannot make the path absolute: %s\n", a->file, strerror(errno));
			json_object_put(req);
			exit(EXIT_USAGE);
		}
		json_object_object_add(req, "path", json_object_new_string(path));
		free(path);
		if (a->then_exit)
			json_object_object_add(req, "exit", json_object_new_boolean(true));
		if (a->live)
			json_object_object_add(req, "live", json_object_new_boolean(true));
	}
	if (a->drive) {
		json_object_object_add(req, "drive", json_object_new_string(a->drive));
		json_object_object_add(req, "force", json_object_new_boolean(a->force));
	}
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text && asprintf(&line, "%s\n", text) < 0)
		line = NULL;
	json_object_put(req);
	return line;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "hyvectl: %s: socket path longer than %zu bytes\n", path, sizeof(sa.sun_path) - 1);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		fprintf(stderr, "hyvectl: cannot connect to %s: %s%s\n", path, strerror(e),
			e == ENOENT || e == ECONNREFUSED ? " (is the VM running?)" : "");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * cd-insert's FILE, opened here because the confined VM cannot open it:
 * read-only, and a file or block device (not blocking on a FIFO). -1 after
 * a message.
 */
static int open_medium(const char *file)
{
	struct stat st;
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0) {
		fprintf(stderr, "hyvectl: %s: %s\n", file, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "hyvectl: %s: %s\n", file, strerror(errno));
	} else if (S_ISDIR(st.st_mode)) {
		fprintf(stderr, "hyvectl: %s: is a directory, not a disc image\n", file);
	} else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		fprintf(stderr, "hyvectl: %s: not a disc image (neither a file nor a block device)\n", file);
	} else if (fcntl(fd, F_SETFL, 0) < 0) {
		fprintf(stderr, "hyvectl: %s: %s\n", file, strerror(errno));
	} else {
		return fd;
	}
	close(fd);
	return -1;
}

/* Sends the request line; pass_fd (-1: none) goes with its first bytes, as the VM expects (docs/hyvectl.md). */
static int send_all(int fd, const char *buf, size_t len, int pass_fd)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;

	while (len) {
		struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;
		if (pass_fd >= 0) {
			struct cmsghdr *cm;
			memset(&control, 0, sizeof(control));
			msg.msg_control = control.buf;
			msg.msg_controllen = sizeof(control.buf);
			cm = CMSG_FIRSTHDR(&msg);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
		}
		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		pass_fd = -1; /* it went with the bytes sent */
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one reply line (NUL-terminated, newline removed); NULL after a message (unless quiet). */
static char *read_reply(int fd, const char *path, bool quiet)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	while (buf) {
		char *nl = len ? memchr(buf, '\n', len) : NULL;
		ssize_t n;
		if (nl) {
			*nl = '\0';
			return buf;
		}
		if (len + 1 >= cap) {
			char *p = cap < REPLY_MAX ? realloc(buf, cap * 2) : NULL;
			if (!p) {
				fprintf(stderr, "hyvectl: %s: reply too long\n", path);
				break;
			}
			buf = p;
			cap *= 2;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (!quiet)
				fprintf(stderr, "hyvectl: %s: %s before the VM replied\n", path,
					n == 0 ? "connection closed" : strerror(errno));
			break;
		}
		len += (size_t)n;
	}
	free(buf);
	return NULL;
}

/* Prints what the reply says; returns the exit status. */
static int show_reply(const struct args *a, const char *path, const char *line)
{
	struct json_object *reply = json_tokener_parse(line), *ok, *err;
	int rc = 0;

	if (!reply || !json_object_is_type(reply, json_type_object) || !json_object_object_get_ex(reply, "ok", &ok) ||
	    !json_object_is_type(ok, json_type_boolean)) {
		fprintf(stderr, "hyvectl: %s: malformed reply: %.200s\n", path, line);
		json_object_put(reply);
		return EXIT_UNREACHABLE;
	}
	if (a->json) {
		printf("%s\n", line);
		if (!json_object_get_boolean(ok))
			rc = EXIT_REFUSED;
	} else if (!json_object_get_boolean(ok)) {
		fprintf(stderr, "hyvectl: %s\n",
			json_object_object_get_ex(reply, "error", &err) && json_object_is_type(err, json_type_string)
				? json_object_get_string(err)
				: "the VM refused the command");
		rc = EXIT_REFUSED;
	} else if (strcmp(a->cmd, "status") == 0) {
		json_object_object_del(reply, "ok");
		json_object_object_del(reply, "id");
		printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
								     JSON_C_TO_STRING_NOSLASHESCAPE));
	} else if (a->live && json_object_object_get_ex(reply, "live", &err)) {
		/* The passes and the pause: what a live snapshot is for. */
		printf("%s\n", json_object_to_json_string_ext(err, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
	}
	json_object_put(reply);
	if (fflush(stdout) != 0)
		rc = EXIT_REFUSED;
	return rc;
}

int main(int argc, char **argv)
{
	struct args a = { 0 };
	char *default_path = NULL;
	const char *path;
	char *line, *reply;
	int rc, fd, medium = -1, send_err;

	log_set_prefix("hyvectl");
	rc = parse_args(argc, argv, &a);
	if (rc)
		return rc;
	if (strcmp(a.cmd, "snapshot-info") == 0)
		return snapshot_info_cmd(a.file);
	path = a.socket;
	if (!path) {
		if (asprintf(&default_path, DEFAULT_DIR "/%s.sock", a.vm) < 0)
			default_path = NULL;
		path = default_path;
	}
	line = request_line(&a);
	if (!line || !path) {
		fprintf(stderr, "hyvectl: out of memory\n");
		return EXIT_UNREACHABLE;
	}
	if (strcmp(a.cmd, "cd-insert") == 0) {
		medium = open_medium(a.file);
		if (medium < 0) {
			free(line);
			return EXIT_REFUSED;
		}
	}
	fd = connect_to(path);
	if (fd < 0) {
		free(line);
		if (medium >= 0)
			close(medium);
		return EXIT_UNREACHABLE;
	}
	rc = send_all(fd, line, strlen(line), medium);
	send_err = errno;
	/* The VM has its own copy now (or none): ours is not needed either way. */
	if (medium >= 0)
		close(medium);
	if (rc < 0) {
		/* A VM that turns clients away (not its user, too many clients) has said why before closing. */
		reply = read_reply(fd, path, true);
		if (!reply) {
			fprintf(stderr, "hyvectl: %s: cannot send the request: %s\n", path, strerror(send_err));
			close(fd);
			free(line);
			return EXIT_UNREACHABLE;
		}
	} else {
		reply = read_reply(fd, path, false);
	}
	free(line);
	close(fd);
	if (!reply)
		return EXIT_UNREACHABLE;
	rc = show_reply(&a, path, reply);
	free(reply);
	free(default_path);
	return rc;
}
