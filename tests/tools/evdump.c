/*
 * evdump: guest-side reader of every /dev/input/event* for the input
 * tests, built statically into the test initramfs (scripts/build-initramfs).
 *
 * Prints, one line each, flushed at once:
 *   DEV <eventN> <name>                      a device appeared
 *   EV <name> <type> <code> <value>          an event (EV_SYN reports are left out)
 * with the device name from EVIOCGNAME, spaces replaced by '_'. The folder
 * is scanned again every 0.5 s, so devices bound later (psmouse after its
 * protocol probe) are picked up.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/input.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_DEVS 64
#define RESCAN_MS 500

struct dev {
	char node[NAME_MAX + 1];
	char name[128];
};

static struct dev devs[MAX_DEVS];
static struct pollfd fds[MAX_DEVS];
static int ndevs;

static int known(const char *node)
{
	for (int i = 0; i < ndevs; i++)
		if (strcmp(devs[i].node, node) == 0)
			return 1;
	return 0;
}

static void add(const char *node)
{
	char path[sizeof("/dev/input/") + NAME_MAX];
	struct dev *d = &devs[ndevs];
	int fd;

	snprintf(path, sizeof(path), "/dev/input/%s", node);
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	snprintf(d->node, sizeof(d->node), "%s", node);
	if (ioctl(fd, EVIOCGNAME(sizeof(d->name)), d->name) < 0)
		snprintf(d->name, sizeof(d->name), "unknown");
	d->name[sizeof(d->name) - 1] = '\0';
	for (char *p = d->name; *p; p++)
		if (*p == ' ')
			*p = '_';
	fds[ndevs].fd = fd;
	fds[ndevs].events = POLLIN;
	ndevs++;
	printf("DEV %s %s\n", d->node, d->name);
	fflush(stdout);
}

static void scan(void)
{
	DIR *dir = opendir("/dev/input");
	struct dirent *e;

	if (!dir)
		return;
	while ((e = readdir(dir)) && ndevs < MAX_DEVS)
		if (strncmp(e->d_name, "event", 5) == 0 && !known(e->d_name))
			add(e->d_name);
	closedir(dir);
}

static void drop(int i)
{
	close(fds[i].fd);
	ndevs--;
	devs[i] = devs[ndevs];
	fds[i] = fds[ndevs];
}

/* Returns 0, or -1 when the device is gone. */
static int dump(int i)
{
	struct input_event ev[64];
	ssize_t n;

	while ((n = read(fds[i].fd, ev, sizeof(ev))) > 0) {
		for (size_t k = 0; k < (size_t)n / sizeof(ev[0]); k++)
			if (ev[k].type != EV_SYN)
				printf("EV %s %u %u %d\n", devs[i].name, ev[k].type, ev[k].code, ev[k].value);
		fflush(stdout);
	}
	return n < 0 && errno != EAGAIN && errno != EINTR ? -1 : 0;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		scan();
		if (poll(fds, (nfds_t)ndevs, RESCAN_MS) < 0 && errno != EINTR)
			return 1;
		for (int i = ndevs - 1; i >= 0; i--)
			if (fds[i].revents && dump(i) < 0)
				drop(i);
	}
}
