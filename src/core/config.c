#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct config_entry {
	char *key;
	char *value;
};

struct config {
	struct config_entry *entries; /* sorted by key */
	size_t count, cap;
};

struct config *config_new(void)
{
	return calloc(1, sizeof(struct config));
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->count; i++) {
		free(cfg->entries[i].key);
		free(cfg->entries[i].value);
	}
	free(cfg->entries);
	free(cfg);
}

static bool key_is_valid(const char *key)
{
	bool component_start = true;

	if (!*key)
		return false;
	for (const char *p = key; *p; p++) {
		if (*p == '.') {
			if (component_start)
				return false;
			component_start = true;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
			return false;
		component_start = false;
	}
	return !component_start;
}

/* Index of the first entry whose key is >= key. */
static size_t lower_bound(const struct config *cfg, const char *key)
{
	size_t lo = 0, hi = cfg->count;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(cfg->entries[mid].key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool is_under(const char *key, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(key, prefix, n) == 0 && key[n] == '.';
}

/* First entry strictly under "prefix.", or NULL. */
static const char *first_descendant(const struct config *cfg, const char *prefix)
{
	char buf[520];
	size_t i;

	snprintf(buf, sizeof(buf), "%s.", prefix);
	i = lower_bound(cfg, buf);
	if (i < cfg->count && is_under(cfg->entries[i].key, prefix))
		return cfg->entries[i].key;
	return NULL;
}

/* Finds an existing key that would make `key` both a leaf and a node. */
static const char *find_clash(const struct config *cfg, const char *key)
{
	char buf[512];
	const char *desc = first_descendant(cfg, key);

	if (desc)
		return desc;
	snprintf(buf, sizeof(buf), "%s", key);
	for (char *dot = strrchr(buf, '.'); dot; dot = strrchr(buf, '.')) {
		size_t i;
		*dot = '\0';
		i = lower_bound(cfg, buf);
		if (i < cfg->count && strcmp(cfg->entries[i].key, buf) == 0)
			return cfg->entries[i].key;
	}
	return NULL;
}

int config_set(struct config *cfg, const char *key, const char *value)
{
	const char *clash;
	size_t i;

	if (strlen(key) >= 512 || !key_is_valid(key)) {
		log_error("invalid configuration key '%s'", key);
		return -1;
	}
	i = lower_bound(cfg, key);
	if (i < cfg->count && strcmp(cfg->entries[i].key, key) == 0) {
		char *v = strdup(value);
		if (!v)
			return -1;
		free(cfg->entries[i].value);
		cfg->entries[i].value = v;
		return 0;
	}
	clash = find_clash(cfg, key);
	if (clash) {
		log_error("configuration key '%s' conflicts with '%s'", key, clash);
		return -1;
	}
	if (cfg->count == cfg->cap) {
		size_t cap = cfg->cap ? cfg->cap * 2 : 32;
		struct config_entry *e = realloc(cfg->entries, cap * sizeof(*e));
		if (!e)
			return -1;
		cfg->entries = e;
		cfg->cap = cap;
	}
	memmove(&cfg->entries[i + 1], &cfg->entries[i], (cfg->count - i) * sizeof(cfg->entries[0]));
	cfg->entries[i].key = strdup(key);
	cfg->entries[i].value = strdup(value);
	cfg->count++;
	if (!cfg->entries[i].key || !cfg->entries[i].value)
		return -1;
	return 0;
}

int config_unset(struct config *cfg, const char *key)
{
	size_t i = lower_bound(cfg, key);

	if (i >= cfg->count || strcmp(cfg->entries[i].key, key) != 0)
		return -1;
	free(cfg->entries[i].key);
	free(cfg->entries[i].value);
	memmove(&cfg->entries[i], &cfg->entries[i + 1], (cfg->count - i - 1) * sizeof(cfg->entries[0]));
	cfg->count--;
	return 0;
}

int config_set_assignment(struct config *cfg, const char *assignment)
{
	const char *eq = strchr(assignment, '=');
	char key[512];

	if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof(key)) {
		log_error("configuration setting '%s' is not key=value", assignment);
		return -1;
	}
	memcpy(key, assignment, eq - assignment);
	key[eq - assignment] = '\0';
	return config_set(cfg, key, eq + 1);
}

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

int config_load_file(struct config *cfg, const char *path)
{
	return config_load_file_mapped(cfg, path, NULL);
}

int config_load_file_mapped(struct config *cfg, const char *path, const char *(*map_key)(const char *key))
{
	FILE *f = fopen(path, "r");
	char line[4096];
	unsigned lineno = 0;
	int rc = 0;

	if (!f) {
		log_error("cannot open configuration file %s: %s", path, strerror(errno));
		return -1;
	}
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		char *hash = strchr(line, '#'), *s, *key, *value;
		lineno++;
		if (hash)
			*hash = '\0';
		s = trim(line);
		if (!*s)
			continue;
		if (!strchr(s, '=')) {
			log_error("%s:%u: expected key=value", path, lineno);
			rc = -1;
			break;
		}
		*strchr(s, '=') = '\0';
		/* The value is found before the key is trimmed: trimming writes into the line. */
		value = trim(s + strlen(s) + 1);
		key = trim(s);
		rc = config_set(cfg, map_key ? map_key(key) : key, value);
		if (rc)
			log_error("%s:%u: invalid setting", path, lineno);
	}
	fclose(f);
	return rc;
}

const char *config_get(const struct config *cfg, const char *key)
{
	size_t i = lower_bound(cfg, key);

	if (i < cfg->count && strcmp(cfg->entries[i].key, key) == 0)
		return cfg->entries[i].value;
	return NULL;
}

const char *config_getf(const struct config *cfg, const char *fmt, ...)
{
	char key[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	return config_get(cfg, key);
}

/*
 * Decimal, or hexadecimal after "0x". Not strtoull's base 0: that reads a
 * leading zero as octal, so "010" would be 8 and "09" an error.
 */
int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int base = 10;

	if (!s)
		return -1;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	/* strtoull would also take a sign or leading blanks. */
	if (!(base == 16 ? isxdigit((unsigned char)*s) : isdigit((unsigned char)*s)))
		return -1;
	errno = 0;
	v = strtoull(s, &end, base);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

int parse_size(const char *s, uint64_t default_unit, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t unit = default_unit;
	int shift = -1;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case '\0': break;
	case 'B': shift = 0; break;
	case 'K': shift = 10; break;
	case 'M': shift = 20; break;
	case 'G': shift = 30; break;
	case 'T': shift = 40; break;
	default: return -1;
	}
	if (shift >= 0) {
		unit = 1ULL << shift;
		end++;
		/* Accept "512MB"/"512MiB" spellings too. */
		if (shift > 0 && toupper((unsigned char)*end) == 'I')
			end++;
		if (shift > 0 && toupper((unsigned char)*end) == 'B')
			end++;
	}
	if (*end || (unit && v > UINT64_MAX / unit))
		return -1;
	*out = v * unit;
	return 0;
}

static int malformed(const char *key, const char *value, const char *what)
{
	log_error("configuration '%s=%s': expected %s", key, value, what);
	return -1;
}

int config_get_u64(const struct config *cfg, const char *key, uint64_t def, uint64_t *out)
{
	const char *v = config_get(cfg, key);

	*out = def;
	if (!v)
		return 0;
	if (parse_u64(v, out))
		return malformed(key, v, "an unsigned number");
	return 0;
}

int config_get_size(const struct config *cfg, const char *key, uint64_t def, uint64_t *out)
{
	const char *v = config_get(cfg, key);

	*out = def;
	if (!v)
		return 0;
	if (parse_size(v, 1, out))
		return malformed(key, v, "a size such as 512M");
	return 0;
}

int config_get_bool(const struct config *cfg, const char *key, bool def, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	const char *v = config_get(cfg, key);

	*out = def;
	if (!v)
		return 0;
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return malformed(key, v, "true or false");
}

size_t config_count(const struct config *cfg)
{
	return cfg->count;
}

const char *config_key_at(const struct config *cfg, size_t i)
{
	return i < cfg->count ? cfg->entries[i].key : NULL;
}

const char *config_value_at(const struct config *cfg, size_t i)
{
	return i < cfg->count ? cfg->entries[i].value : NULL;
}

bool config_has_node(const struct config *cfg, const char *prefix)
{
	return config_get(cfg, prefix) || first_descendant(cfg, prefix);
}

void config_dump(const struct config *cfg, FILE *out)
{
	for (size_t i = 0; i < cfg->count; i++)
		fprintf(out, "%s=%s\n", cfg->entries[i].key, cfg->entries[i].value);
}
