#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "options.h"
#include "vm.h"

/* Filled by constructors before main(); read-only afterwards. */
static const struct device_model *registered;

void device_model_register(struct device_model *model)
{
	/* Keep the list sorted by attach order so attach runs deterministically. */
	const struct device_model **pp = &registered;

	while (*pp && ((*pp)->attach_order < model->attach_order ||
		       ((*pp)->attach_order == model->attach_order && strcmp((*pp)->name, model->name) < 0)))
		pp = (const struct device_model **)&(*pp)->next_registered;
	model->next_registered = *pp;
	*pp = model;
}

unsigned device_model_oldest_state_version(const struct device_model *model)
{
	return model->min_state_version ? model->min_state_version : model->state_version;
}

const struct device_model *device_model_find(const char *name)
{
	for (const struct device_model *m = registered; m; m = m->next_registered)
		if (strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

const struct device_model *device_model_first(void)
{
	return registered;
}

struct device *device_create(struct vm *vm, const struct device_model *model, const char *id,
			     const char *cfg_prefix)
{
	struct device *dev, **tail;

	if (device_find(vm, id)) {
		log_error("%s: more than one device at this address", id);
		return NULL;
	}
	/* The option readers (dev_opt_*) rely on every declared value parsing. */
	if (options_check_device(vm->cfg, model, cfg_prefix) < 0)
		return NULL;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return NULL;
	dev->model = model;
	dev->vm = vm;
	snprintf(dev->id, sizeof(dev->id), "%s", id);
	snprintf(dev->cfg_prefix, sizeof(dev->cfg_prefix), "%s", cfg_prefix);
	if (model->create(dev) < 0) {
		free(dev);
		return NULL;
	}
	/* Append: save order and reset order follow creation order. */
	for (tail = &vm->devices; *tail; tail = &(*tail)->next)
		;
	*tail = dev;
	return dev;
}

int devices_attach_all(struct vm *vm)
{
	for (const struct device_model *m = registered; m; m = m->next_registered)
		if (m->attach && m->attach(vm) < 0)
			return -1;
	return 0;
}

void devices_reset_all(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (d->model->reset)
			d->model->reset(d);
}

void devices_set_running(struct vm *vm, bool running)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (d->model->run_state)
			d->model->run_state(d, running);
}

void devices_destroy_all(struct vm *vm)
{
	while (vm->devices) {
		struct device *d = vm->devices;
		vm->devices = d->next;
		if (d->model->destroy)
			d->model->destroy(d);
		free(d);
	}
}

struct device *device_find(struct vm *vm, const char *id)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (strcmp(d->id, id) == 0)
			return d;
	return NULL;
}
