/*
 * The VM's removable media drives, by name (media.h). Names are compared
 * as numbers, so "3.0:0" and "03:0" find the drive registered as "3:0".
 */
#include "core/media.h"

#include <stdio.h>
#include <string.h>

#include "core/vm.h"

/* Largest slot, function or port a name may carry: PCI has 32 slots and 8 functions, AHCI 32 ports. */
#define PART_MAX 255

struct media_name {
	unsigned slot, func, port;
	bool bare_port; /* "P" alone */
};

/* A decimal number at *s, at most PART_MAX; advances *s. */
static bool parse_number(const char **s, unsigned *out)
{
	unsigned v = 0;
	const char *p = *s;

	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > PART_MAX)
			return false;
	}
	*s = p;
	*out = v;
	return true;
}

/* "S:P", "S.F:P" or "P"; false for anything else. */
static bool parse_name(const char *s, struct media_name *n)
{
	unsigned first;

	memset(n, 0, sizeof(*n));
	if (!parse_number(&s, &first))
		return false;
	if (*s == '\0') {
		n->port = first;
		n->bare_port = true;
		return true;
	}
	n->slot = first;
	if (*s == '.') {
		s++;
		if (!parse_number(&s, &n->func))
			return false;
	}
	if (*s != ':')
		return false;
	s++;
	return parse_number(&s, &n->port) && *s == '\0';
}

static bool same_drive(const struct media_name *a, const struct media_name *b)
{
	if (a->bare_port || b->bare_port)
		return a->port == b->port;
	return a->slot == b->slot && a->func == b->func && a->port == b->port;
}

void media_drive_register(struct vm *vm, struct media_drive *d)
{
	struct media_drive **pp = &vm->media_drives;

	/* At the end: messages list the drives in the order they were created. */
	while (*pp)
		pp = &(*pp)->next;
	d->next = NULL;
	*pp = d;
}

void media_drive_unregister(struct vm *vm, struct media_drive *d)
{
	for (struct media_drive **pp = &vm->media_drives; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			d->next = NULL;
			return;
		}
	}
}

/*
 * The names of the drives that match (all of them when want is NULL) as
 * "a, b, c"; a list too long for buf ends in ", ..." after whole names.
 */
static void list_names(struct vm *vm, const struct media_name *want, char *buf, size_t size)
{
	static const char more[] = ", ...";
	size_t used = 0;
	struct media_name n;

	buf[0] = '\0';
	for (const struct media_drive *d = vm->media_drives; d; d = d->next) {
		int w;
		if (want && !(parse_name(d->name, &n) && same_drive(want, &n)))
			continue;
		w = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", d->name);
		if (w < 0 || (size_t)w >= size - used - (sizeof(more) - 1)) {
			/* Room for the marker is kept: used + sizeof(more) <= size. */
			memcpy(buf + used, more, sizeof(more));
			return;
		}
		used += (size_t)w;
	}
}

struct media_drive *media_drive_find(struct vm *vm, const char *name, char *err, size_t errlen)
{
	struct media_drive *found = NULL;
	struct media_name want, n;
	unsigned matches = 0;
	char names[160]; /* with the rest, a message fits in 256 bytes */

	if (parse_name(name, &want)) {
		for (struct media_drive *d = vm->media_drives; d; d = d->next) {
			if (parse_name(d->name, &n) && same_drive(&want, &n)) {
				found = found ? found : d;
				matches++;
			}
		}
	}
	if (matches == 1)
		return found;
	if (matches > 1) {
		list_names(vm, &want, names, sizeof(names));
		snprintf(err, errlen, "CD drive \"%.*s\" is ambiguous: %s (name it SLOT:PORT)", MEDIA_NAME_MAX, name,
			 names);
		return NULL;
	}
	list_names(vm, NULL, names, sizeof(names));
	if (names[0])
		snprintf(err, errlen, "no CD drive \"%.*s\" (drives: %s)", MEDIA_NAME_MAX, name, names);
	else
		snprintf(err, errlen, "no CD drive \"%.*s\" (the VM has no CD drives)", MEDIA_NAME_MAX, name);
	return NULL;
}
