#include "options.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "device.h"
#include "log.h"
#include "vm.h"

/* Filled by constructors before main(); read-only afterwards. */
static struct option_table *tables;
static struct option_node *nodes;
static struct option_alias *aliases;

void options_register(struct option_table *table)
{
	table->next = tables;
	tables = table;
}

void options_register_node(struct option_node *node)
{
	node->next = nodes;
	nodes = node;
}

void options_register_alias(struct option_alias *alias)
{
	alias->next = aliases;
	aliases = alias;
}

const char *options_canonical_key(const char *key)
{
	for (const struct option_alias *a = aliases; a; a = a->next)
		if (strcmp(a->alias, key) == 0)
			return a->key;
	return key;
}

/* ---- names and patterns ---- */

/* "#": a decimal number without leading zeros; "[a-b]": one character from a to b. */
static bool pattern_matches(const char *p, const char *s, size_t slen)
{
	const char *end = s + slen;

	while (*p) {
		if (*p == '#') {
			if (s == end || !isdigit((unsigned char)*s))
				return false;
			if (*s == '0' && s + 1 < end && isdigit((unsigned char)s[1]))
				return false;
			while (s < end && isdigit((unsigned char)*s))
				s++;
			p++;
			continue;
		}
		if (p[0] == '[' && p[1] && p[2] == '-' && p[3] && p[4] == ']') {
			if (s == end || *s < p[1] || *s > p[3])
				return false;
			s++;
			p += 5;
			continue;
		}
		if (s == end || *p != *s)
			return false;
		p++;
		s++;
	}
	return s == end;
}

bool options_name_matches(const char *pattern, const char *name)
{
	return pattern_matches(pattern, name, strlen(name));
}

static size_t count_components(const char *name)
{
	size_t n = 1;

	for (; *name; name++)
		n += *name == '.';
	return n;
}

/* Length of key's first n components, or 0 when key has no more than n. */
static size_t prefix_length(const char *key, size_t n)
{
	const char *p = key;

	for (size_t i = 0; i < n; i++) {
		p = strchr(p, '.');
		if (!p)
			return 0;
		if (i + 1 < n)
			p++;
	}
	return (size_t)(p - key);
}

static const struct option_decl *find_in(const struct option_decl *decls, const char *name)
{
	for (const struct option_decl *d = decls; d && d->name; d++)
		if (options_name_matches(d->name, name))
			return d;
	return NULL;
}

static const struct option_decl *find_top(const char *key)
{
	for (const struct option_table *t = tables; t; t = t->next) {
		const struct option_decl *d = find_in(t->decls, key);
		if (d)
			return d;
	}
	return NULL;
}

/* ---- suggestions ---- */

size_t options_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[512], cur[512];

	if (la >= 512 || lb >= 512)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (lb + 1) * sizeof(prev[0]));
	}
	return prev[lb];
}

/*
 * The pattern spelt with key's own components where they fit ("lpc.com#.path"
 * against "lpc.com2.pth" gives "lpc.com2.path"), so that only the part that
 * differs counts.
 */
static void instantiate(const char *pattern, const char *key, char *out, size_t outlen)
{
	size_t n = 0;

	while (*pattern && n + 1 < outlen) {
		const char *pend = strchr(pattern, '.'), *kend = key ? strchr(key, '.') : NULL;
		size_t plen = pend ? (size_t)(pend - pattern) : strlen(pattern);
		size_t klen = key ? (kend ? (size_t)(kend - key) : strlen(key)) : 0;
		char comp[128];
		bool use_key;
		snprintf(comp, sizeof(comp), "%.*s", (int)plen, pattern);
		use_key = key && *key && strpbrk(comp, "#[") && pattern_matches(comp, key, klen);
		n += (size_t)snprintf(out + n, outlen - n, "%s%.*s", n ? "." : "", (int)(use_key ? klen : plen),
				      use_key ? key : pattern);
		pattern = pend ? pend + 1 : pattern + plen;
		key = key && kend ? kend + 1 : NULL;
		if (!pend)
			break;
	}
	out[n < outlen ? n : outlen - 1] = '\0';
}

struct suggestion {
	char best[128];
	size_t distance;
};

static void consider(struct suggestion *s, const char *typed, const char *candidate)
{
	size_t d = options_edit_distance(typed, candidate), len = strlen(candidate);
	size_t limit = len <= 4 ? 1 : len <= 10 ? 2 : 3;

	if (d == 0 || d > limit || d >= len || d >= s->distance)
		return;
	s->distance = d;
	snprintf(s->best, sizeof(s->best), "%s", candidate);
}

static const char *did_you_mean(const struct suggestion *s, char *buf, size_t len)
{
	if (s->distance == SIZE_MAX)
		return "";
	snprintf(buf, len, " (did you mean '%s'?)", s->best);
	return buf;
}

static void suggest_top(struct suggestion *s, const char *key)
{
	char name[256];

	for (const struct option_table *t = tables; t; t = t->next)
		for (const struct option_decl *d = t->decls; d->name; d++) {
			instantiate(d->name, key, name, sizeof(name));
			consider(s, key, name);
		}
}

static void suggest_in(struct suggestion *s, const char *typed, const struct option_decl *decls)
{
	char name[256];

	for (const struct option_decl *d = decls; d && d->name; d++) {
		instantiate(d->name, typed, name, sizeof(name));
		consider(s, typed, name);
	}
}

/* ---- resolution ---- */

static int resolve_node(const struct config *cfg, const char *key, const struct option_node *node, size_t plen,
			bool defer, struct option_ref *ref, char *err, size_t errlen)
{
	const char *rest = key + plen + 1, *name;
	struct suggestion s = { .distance = SIZE_MAX };
	char reason[256], hint[160];

	if (plen >= sizeof(ref->node_prefix))
		return set_error(err, errlen, "%s: unknown option", key);
	memcpy(ref->node_prefix, key, plen);
	ref->node_prefix[plen] = '\0';
	ref->node = node;
	if (node->check && node->check(ref->node_prefix, reason, sizeof(reason)) < 0)
		return set_error(err, errlen, "%s", reason);
	if (node->model_key && strcmp(rest, node->model_key) == 0) {
		const char *value = config_get(cfg, key);
		ref->is_model_key = true;
		ref->model = value ? device_model_find(value) : NULL;
		if (!ref->model || (node->model_ok && !node->model_ok(ref->model)))
			return set_error(err, errlen, "%s: unknown device '%s'", ref->node_prefix, value ? value : "");
		return 0;
	}
	name = node->model ? node->model : config_getf(cfg, "%s.%s", ref->node_prefix, node->model_key);
	if (!name) {
		if (defer)
			return 1;
		consider(&s, rest, node->model_key);
		if (s.distance != SIZE_MAX)
			return set_error(err, errlen, "%s: unknown option%s", key, did_you_mean(&s, hint, sizeof(hint)));
		return set_error(err, errlen, "%s: settings given but no device (%s.%s)", ref->node_prefix,
				 ref->node_prefix, node->model_key);
	}
	ref->model = device_model_find(name);
	if (!ref->model || (node->model_ok && !node->model_ok(ref->model)))
		return set_error(err, errlen, "%s: unknown device '%s'", ref->node_prefix, name);
	ref->decl = find_in(ref->model->options, rest);
	if (ref->decl)
		return 0;
	suggest_in(&s, rest, ref->model->options);
	if (node->model_key)
		consider(&s, rest, node->model_key);
	return set_error(err, errlen, "%s: unknown option of %s%s", key, ref->model->name,
			 did_you_mean(&s, hint, sizeof(hint)));
}

int options_resolve(const struct config *cfg, const char *key, bool defer_unresolved, struct option_ref *ref,
		    char *err, size_t errlen)
{
	struct suggestion s = { .distance = SIZE_MAX };
	char hint[160];

	memset(ref, 0, sizeof(*ref));
	ref->decl = find_top(key);
	if (ref->decl)
		return 0;
	for (const struct option_node *n = nodes; n; n = n->next) {
		size_t plen = prefix_length(key, count_components(n->pattern));
		if (plen && pattern_matches(n->pattern, key, plen))
			return resolve_node(cfg, key, n, plen, defer_unresolved, ref, err, errlen);
	}
	suggest_top(&s, key);
	return set_error(err, errlen, "%s: unknown option%s", key, did_you_mean(&s, hint, sizeof(hint)));
}

/* ---- values ---- */

int option_parse_bool(const char *value, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(value, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(value, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int malformed(const struct option_decl *decl, const char *key, const char *value, char *err, size_t errlen,
		     const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int malformed(const struct option_decl *decl, const char *key, const char *value, char *err, size_t errlen,
		     const char *fmt, ...)
{
	char reason[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (decl->flags & OPTION_SECRET)
		return set_error(err, errlen, "%s: %s", key, reason);
	return set_error(err, errlen, "%s=%s: %s", key, value, reason);
}

/* 32M, 1T, or bytes. */
static const char *size_text(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int unit = -1;

	while (unit < 3 && v && v % 1024 == 0) {
		v /= 1024;
		unit++;
	}
	if (unit < 0)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, units[unit]);
	return buf;
}

static int check_range(const struct option_decl *d, const char *key, const char *value, uint64_t v, char *err,
		       size_t errlen)
{
	uint64_t max = d->max ? d->max : UINT64_MAX;
	char lo[32], hi[32];

	if (v >= d->min && v <= max)
		return 0;
	if (d->type == OPTION_SIZE)
		return malformed(d, key, value, err, errlen, "expected a size from %s to %s (%s)",
				 size_text(d->min, lo, sizeof(lo)), size_text(max, hi, sizeof(hi)), d->help);
	return malformed(d, key, value, err, errlen, "expected a number from %llu to %llu (%s)",
			 (unsigned long long)d->min, (unsigned long long)max, d->help);
}

static int check_choice(const struct option_decl *d, const char *key, const char *value, char *err, size_t errlen)
{
	char list[256];
	size_t n = 0, count = 0;

	for (const char *const *c = d->choices; *c; c++) {
		if (strcmp(*c, value) == 0)
			return 0;
		count++;
	}
	for (size_t i = 0; i < count && n < sizeof(list); i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i == 0 ? "" : i + 1 == count ? " or " : ", ",
				      d->choices[i]);
	return malformed(d, key, value, err, errlen, "expected %s", list);
}

int options_check_value(const struct option_decl *d, const char *key, const char *value, char *err, size_t errlen)
{
	char reason[256];
	uint64_t v;
	bool b;

	switch (d->type) {
	case OPTION_STRING:
		break;
	case OPTION_PATH:
		if (!*value)
			return malformed(d, key, value, err, errlen, "expected a path");
		break;
	case OPTION_BOOL:
		if (option_parse_bool(value, &b) < 0)
			return malformed(d, key, value, err, errlen, "expected true or false");
		break;
	case OPTION_UINT:
		if (parse_u64(value, &v) < 0)
			return malformed(d, key, value, err, errlen, "expected a number (%s)", d->help);
		if (check_range(d, key, value, v, err, errlen) < 0)
			return -1;
		break;
	case OPTION_SIZE:
		if (parse_size(value, 1, &v) < 0)
			return malformed(d, key, value, err, errlen, "expected a size such as 512M (%s)", d->help);
		if (check_range(d, key, value, v, err, errlen) < 0)
			return -1;
		break;
	case OPTION_ENUM:
		if (check_choice(d, key, value, err, errlen) < 0)
			return -1;
		break;
	case OPTION_CUSTOM:
		break;
	}
	if (d->validate && d->validate(value, reason, sizeof(reason)) < 0)
		return malformed(d, key, value, err, errlen, "%s", reason);
	return 0;
}

int options_validate(const struct config *cfg, unsigned mode, char *err, size_t errlen)
{
	for (size_t i = 0; i < config_count(cfg); i++) {
		const char *key = config_key_at(cfg, i);
		struct option_ref ref;
		int rc = options_resolve(cfg, key, mode & OPTIONS_DEFER_UNRESOLVED, &ref, err, errlen);
		if (rc < 0)
			return -1;
		if (rc > 0 || ref.is_model_key)
			continue;
		if (options_check_value(ref.decl, key, config_value_at(cfg, i), err, errlen) < 0)
			return -1;
	}
	return 0;
}

const char *options_node_model(const struct config *cfg, const char *node_prefix)
{
	for (const struct option_node *n = nodes; n; n = n->next) {
		if (!options_name_matches(n->pattern, node_prefix))
			continue;
		return n->model ? n->model : config_getf(cfg, "%s.%s", node_prefix, n->model_key);
	}
	return NULL;
}

unsigned options_flags(const struct config *cfg, const char *key)
{
	struct option_ref ref;
	char err[8];

	if (options_resolve(cfg, key, false, &ref, err, sizeof(err)) != 0 || !ref.decl)
		return 0;
	return ref.decl->flags;
}

void options_dump(const struct config *cfg, FILE *out)
{
	for (size_t i = 0; i < config_count(cfg); i++) {
		const char *key = config_key_at(cfg, i);
		if (options_flags(cfg, key) & OPTION_SECRET)
			fprintf(out, "# %s=<secret, not shown>\n", key);
		else
			fprintf(out, "%s=%s\n", key, config_value_at(cfg, i));
	}
}

void options_for_each(void (*fn)(void *opaque, const char *prefix, const struct device_model *model,
				 const struct option_decl *decl),
		      void *opaque)
{
	for (const struct option_table *t = tables; t; t = t->next)
		for (const struct option_decl *d = t->decls; d->name; d++)
			fn(opaque, "", NULL, d);
	for (const struct option_node *n = nodes; n; n = n->next)
		for (const struct device_model *m = device_model_first(); m; m = m->next_registered) {
			if (n->model ? strcmp(n->model, m->name) != 0 : (n->model_ok && !n->model_ok(m)))
				continue;
			for (const struct option_decl *d = m->options; d && d->name; d++)
				fn(opaque, n->pattern, m, d);
		}
}

bool option_addr_is_loopback(const char *addr)
{
	char buf[64];
	size_t len = strlen(addr);
	struct in_addr a4;
	struct in6_addr a6;

	if (len >= 2 && addr[0] == '[' && addr[len - 1] == ']') {
		if (len - 2 >= sizeof(buf))
			return false;
		memcpy(buf, addr + 1, len - 2);
		buf[len - 2] = '\0';
		addr = buf;
	}
	if (strcasecmp(addr, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, addr, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr, &a6) != 1)
		return false;
	if (IN6_IS_ADDR_LOOPBACK(&a6))
		return true;
	return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/* ---- reading ---- */

static const struct option_decl *declared(const struct option_decl *d, const char *owner, const char *name)
{
	if (!d) {
		/* A reader asking for what nobody declared is a bug in hyve, not bad input. */
		log_error("internal error: %s%s%s is not a declared option", owner, *owner ? " option " : "", name);
		abort();
	}
	return d;
}

static const char *value_or_default(const struct option_decl *d, const char *value)
{
	return value ? value : d->def;
}

/* Parses a checked value (or default) of a numeric or bool declaration. */
static int parse_checked(const struct option_decl *d, const char *key, const char *v, uint64_t *out)
{
	char err[512];
	bool b;

	*out = 0;
	if (!v)
		return 0;
	if (options_check_value(d, key, v, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return -1;
	}
	if (d->type == OPTION_BOOL) {
		option_parse_bool(v, &b);
		*out = b;
		return 0;
	}
	if (d->type == OPTION_SIZE)
		return parse_size(v, 1, out);
	if (d->type == OPTION_ENUM) {
		for (uint64_t i = 0; d->choices[i]; i++)
			if (strcmp(d->choices[i], v) == 0)
				*out = i;
		return 0;
	}
	return parse_u64(v, out);
}

const char *opt_str(const struct config *cfg, const char *key)
{
	const struct option_decl *d = declared(find_top(key), "", key);

	return value_or_default(d, config_get(cfg, key));
}

int opt_bool(const struct config *cfg, const char *key, bool *out)
{
	const struct option_decl *d = declared(find_top(key), "", key);
	uint64_t v;
	int rc = parse_checked(d, key, value_or_default(d, config_get(cfg, key)), &v);

	*out = v != 0;
	return rc;
}

int opt_u64(const struct config *cfg, const char *key, uint64_t *out)
{
	const struct option_decl *d = declared(find_top(key), "", key);

	return parse_checked(d, key, value_or_default(d, config_get(cfg, key)), out);
}

int opt_enum(const struct config *cfg, const char *key)
{
	const struct option_decl *d = declared(find_top(key), "", key);
	uint64_t v;

	if (parse_checked(d, key, value_or_default(d, config_get(cfg, key)), &v) < 0)
		return -1;
	return (int)v;
}

static const char *dev_value(const struct device *dev, const char *name, const struct option_decl **d)
{
	*d = declared(find_in(dev->model->options, name), dev->model->name, name);
	return config_getf(dev->vm->cfg, "%s.%s", dev->cfg_prefix, name);
}

/* Values were checked by device_create(); a failure here is reported and the default used. */
static uint64_t dev_parse(const struct device *dev, const char *name)
{
	const struct option_decl *d;
	const char *v = dev_value(dev, name, &d);
	char key[256];
	uint64_t out;

	snprintf(key, sizeof(key), "%s.%s", dev->cfg_prefix, name);
	if (parse_checked(d, key, value_or_default(d, v), &out) < 0 && parse_checked(d, key, d->def, &out) < 0)
		out = 0;
	return out;
}

const char *dev_opt_str(const struct device *dev, const char *name)
{
	const struct option_decl *d;
	const char *v = dev_value(dev, name, &d);

	return value_or_default(d, v);
}

bool dev_opt_is_set(const struct device *dev, const char *name)
{
	const struct option_decl *d;

	return dev_value(dev, name, &d) != NULL;
}

bool dev_opt_bool(const struct device *dev, const char *name)
{
	return dev_parse(dev, name) != 0;
}

uint64_t dev_opt_u64(const struct device *dev, const char *name)
{
	return dev_parse(dev, name);
}

unsigned dev_opt_enum(const struct device *dev, const char *name)
{
	return (unsigned)dev_parse(dev, name);
}

int options_check_device(const struct config *cfg, const struct device_model *model, const char *prefix)
{
	size_t plen = strlen(prefix);
	char err[512];

	for (size_t i = 0; model->options && i < config_count(cfg); i++) {
		const char *key = config_key_at(cfg, i);
		const struct option_decl *d;
		if (strncmp(key, prefix, plen) != 0 || key[plen] != '.')
			continue;
		d = find_in(model->options, key + plen + 1);
		if (d && options_check_value(d, key, config_value_at(cfg, i), err, sizeof(err)) < 0) {
			log_error("%s", err);
			return -1;
		}
	}
	return 0;
}
