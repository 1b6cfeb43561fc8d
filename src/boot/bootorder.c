/* fw_cfg "bootorder" from bootindex= (bootorder.h). */
#include "bootorder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/device.h"
#include "core/log.h"
#include "core/options.h"
#include "core/vm.h"

/* OVMF translates paths under the PCI root it knows by its config port: PciRoot(0x0). */
#define PCI_ROOT_NODE "/pci@i0cf8"

int bootorder_path(const struct bootorder_entry *e, char *buf, size_t len)
{
	char unit[16];
	int n;

	if (e->function)
		snprintf(unit, sizeof(unit), "%x,%x", e->slot, e->function);
	else
		snprintf(unit, sizeof(unit), "%x", e->slot);
	n = snprintf(buf, len, PCI_ROOT_NODE "/%s@%s%s%s", e->node, unit, e->child ? "/" : "",
		     e->child ? e->child : "");
	return n < 0 || (size_t)n >= len ? -1 : n;
}

static int by_index(const void *a, const void *b)
{
	const struct bootorder_entry *x = a, *y = b;

	return x->index < y->index ? -1 : x->index > y->index;
}

int bootorder_file(struct bootorder_entry *entries, size_t n, char **out, size_t *outlen, char *err, size_t errlen)
{
	char path[128];
	size_t used = 0, cap = n * sizeof(path) + 1;
	char *buf;

	qsort(entries, n, sizeof(*entries), by_index);
	for (size_t i = 1; i < n; i++)
		if (entries[i].index == entries[i - 1].index)
			return set_error(err, errlen, "%s and %s have the same bootindex=%llu", entries[i - 1].id,
					 entries[i].id, (unsigned long long)entries[i].index);
	buf = malloc(cap);
	if (!buf)
		return set_error(err, errlen, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int len = bootorder_path(&entries[i], path, sizeof(path));
		if (len < 0) {
			free(buf);
			return set_error(err, errlen, "%s: its boot path is too long", entries[i].id);
		}
		if (i)
			buf[used++] = '\n';
		memcpy(buf + used, path, (size_t)len);
		used += (size_t)len;
	}
	buf[used++] = '\0';
	*out = buf;
	*outlen = used;
	return 0;
}

/* "pci.0.S.F" -> slot and function; false for a device that is not on PCI bus 0. */
static bool pci_address(const char *id, unsigned *slot, unsigned *function)
{
	char tail;

	return sscanf(id, "pci.0.%u.%u%c", slot, function, &tail) == 2 && *slot < 32 && *function < 8;
}

int bootorder_collect(struct vm *vm, struct bootorder_entry **entries, size_t *n, char *err, size_t errlen)
{
	size_t count = 0;

	*entries = NULL;
	*n = 0;
	for (struct device *d = vm->devices; d; d = d->next)
		count++;
	if (!count)
		return 0;
	*entries = calloc(count, sizeof(**entries));
	if (!*entries)
		return set_error(err, errlen, "out of memory");
	for (struct device *d = vm->devices; d; d = d->next) {
		struct bootorder_entry *e = &(*entries)[*n];
		char key[96];

		snprintf(key, sizeof(key), "%s.bootindex", d->cfg_prefix);
		if (!d->model->ofw_name || !config_get(vm->cfg, key))
			continue;
		if (!pci_address(d->id, &e->slot, &e->function))
			return set_error(err, errlen, "%s: bootindex= needs a device on PCI bus 0", d->id);
		e->index = dev_opt_u64(d, "bootindex");
		e->id = d->id;
		e->node = d->model->ofw_name;
		e->child = d->model->ofw_child;
		(*n)++;
	}
	return 0;
}
