#include "fw_cfg_loader.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void loader_init(struct fw_cfg_loader *l)
{
	memset(l, 0, sizeof(*l));
}

void loader_free(struct fw_cfg_loader *l)
{
	free(l->cmds);
	loader_init(l);
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Names go NUL-padded into their 56-byte fields; false when one does not fit. */
static bool put_name(uint8_t *field, const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= LOADER_NAME_SIZE)
		return false;
	memcpy(field, name, n);
	return true;
}

/* A zeroed command of type at the end of the script, or NULL after logging. */
static uint8_t *new_command(struct fw_cfg_loader *l, enum loader_command type)
{
	uint8_t *c;

	if (l->failed)
		return NULL;
	if (l->len == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16 * LOADER_CMD_SIZE;
		uint8_t *p = realloc(l->cmds, cap);
		if (!p) {
			log_error("table loader: out of memory");
			l->failed = true;
			return NULL;
		}
		l->cmds = p;
		l->cap = cap;
	}
	c = l->cmds + l->len;
	memset(c, 0, LOADER_CMD_SIZE);
	put_le(c + LOADER_TYPE, type, 4);
	l->len += LOADER_CMD_SIZE;
	return c;
}

static int bad_name(struct fw_cfg_loader *l, const char *name)
{
	log_error("table loader: blob name \"%.60s\" is empty or longer than %d bytes", name, LOADER_NAME_SIZE - 1);
	l->len -= LOADER_CMD_SIZE;
	l->failed = true;
	return -1;
}

int loader_allocate(struct fw_cfg_loader *l, const char *file, uint32_t align, enum loader_zone zone)
{
	uint8_t *c = new_command(l, LOADER_ALLOCATE);

	if (!c)
		return -1;
	if (!put_name(c + LOADER_FILE_NAME, file))
		return bad_name(l, file);
	put_le(c + LOADER_ALLOC_ALIGN, align, 4);
	c[LOADER_ALLOC_ZONE] = (uint8_t)zone;
	return 0;
}

int loader_add_pointer(struct fw_cfg_loader *l, const char *file, const char *pointee, uint32_t offset,
		       uint8_t size)
{
	uint8_t *c = new_command(l, LOADER_ADD_POINTER);

	if (!c)
		return -1;
	if (!put_name(c + LOADER_FILE_NAME, file))
		return bad_name(l, file);
	if (!put_name(c + LOADER_PTR_POINTEE, pointee))
		return bad_name(l, pointee);
	put_le(c + LOADER_PTR_OFFSET, offset, 4);
	c[LOADER_PTR_SIZE] = size;
	return 0;
}

int loader_add_checksum(struct fw_cfg_loader *l, const char *file, uint32_t result, uint32_t start, uint32_t len)
{
	uint8_t *c = new_command(l, LOADER_ADD_CHECKSUM);

	if (!c)
		return -1;
	if (!put_name(c + LOADER_FILE_NAME, file))
		return bad_name(l, file);
	put_le(c + LOADER_CSUM_RESULT, result, 4);
	put_le(c + LOADER_CSUM_START, start, 4);
	put_le(c + LOADER_CSUM_LENGTH, len, 4);
	return 0;
}
