/*
 * hyvectl snapshot-info: the header, every record (name, version, flags,
 * size, checksum status) and the decoded manifest, as JSON. It reads with
 * the same validating reader as a restore, but reports instead of stopping
 * at the first bad payload.
 */
#include <cbor.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/options.h"
#include "snapshot/format.h"
#include "snapshot/snapshot.h"
#include "snapshot/state.h"

#define MAX_DEPTH 16

static json_object *cbor_to_json(const cbor_item_t *item, unsigned depth);

static json_object *map_to_json(const cbor_item_t *item, unsigned depth)
{
	json_object *obj = json_object_new_object();
	struct cbor_pair *pairs = cbor_map_handle(item);

	for (size_t i = 0; i < cbor_map_size(item); i++) {
		char key[256];
		const cbor_item_t *k = pairs[i].key;
		size_t len;
		if (!cbor_isa_string(k) || !cbor_string_is_definite(k))
			continue;
		len = cbor_string_length(k) < sizeof(key) - 1 ? cbor_string_length(k) : sizeof(key) - 1;
		memcpy(key, cbor_string_handle(k), len);
		key[len] = '\0';
		json_object_object_add(obj, key, cbor_to_json(pairs[i].value, depth + 1));
	}
	return obj;
}

static json_object *cbor_to_json(const cbor_item_t *item, unsigned depth)
{
	if (depth > MAX_DEPTH)
		return NULL;
	switch (cbor_typeof(item)) {
	case CBOR_TYPE_UINT:
		return json_object_new_uint64(cbor_get_int(item));
	case CBOR_TYPE_NEGINT:
		return json_object_new_int64(-1 - (int64_t)cbor_get_int(item));
	case CBOR_TYPE_STRING:
		if (!cbor_string_is_definite(item))
			return NULL;
		return json_object_new_string_len((const char *)cbor_string_handle(item), (int)cbor_string_length(item));
	case CBOR_TYPE_BYTESTRING: {
		char note[64];
		snprintf(note, sizeof(note), "<%zu bytes>", cbor_bytestring_is_definite(item) ? cbor_bytestring_length(item) : 0);
		return json_object_new_string(note);
	}
	case CBOR_TYPE_MAP:
		return cbor_map_is_definite(item) ? map_to_json(item, depth) : NULL;
	case CBOR_TYPE_FLOAT_CTRL:
		if (cbor_float_get_width(item) == CBOR_FLOAT_0 && cbor_is_bool(item))
			return json_object_new_boolean(cbor_get_bool(item));
		return NULL;
	default:
		return NULL;
	}
}

/*
 * Files written before secrets were left out may hold a VNC password in
 * their configuration: its value is never printed.
 */
static void hide_secrets(json_object *manifest)
{
	json_object *config = manifest ? json_object_object_get(manifest, "config") : NULL;
	struct config *tree;

	if (!config || !json_object_is_type(config, json_type_object))
		return;
	tree = config_new();
	if (!tree)
		return;
	json_object_object_foreach(config, key, value)
		if (json_object_is_type(value, json_type_string))
			config_set(tree, key, json_object_get_string(value));
	for (size_t i = 0; i < config_count(tree); i++) {
		const char *key = config_key_at(tree, i);
		if (options_flags(tree, key) & OPTION_SECRET)
			json_object_object_add(config, key, json_object_new_string("<secret, not shown>"));
	}
	config_free(tree);
}

static json_object *header_json(const struct snap_reader *r)
{
	json_object *h = json_object_new_object();

	json_object_object_add(h, "magic", json_object_new_string(SNAP_MAGIC));
	json_object_object_add(h, "major", json_object_new_int(r->major));
	json_object_object_add(h, "minor", json_object_new_int(r->minor));
	json_object_object_add(h, "byte_order", json_object_new_string("little-endian"));
	json_object_object_add(h, "page_size", json_object_new_int((int)r->page_size));
	json_object_object_add(h, "file_size", json_object_new_uint64(r->size));
	return h;
}

static json_object *record_json(struct snap_reader *r, const struct snap_record *rec, json_object **manifest)
{
	json_object *o = json_object_new_object();
	char sum[20];
	bool ok;

	snprintf(sum, sizeof(sum), "%016llx", (unsigned long long)rec->checksum);
	json_object_object_add(o, "name", json_object_new_string(rec->name));
	json_object_object_add(o, "version", json_object_new_int((int)rec->version));
	json_object_object_add(o, "optional", json_object_new_boolean(rec->flags & SNAP_REC_OPTIONAL));
	json_object_object_add(o, "raw", json_object_new_boolean(rec->flags & SNAP_REC_RAW));
	json_object_object_add(o, "offset", json_object_new_uint64(rec->offset));
	json_object_object_add(o, "payload_offset", json_object_new_uint64(rec->payload_offset));
	json_object_object_add(o, "size", json_object_new_uint64(rec->len));
	json_object_object_add(o, "checksum", json_object_new_string(sum));
	if (rec->flags & SNAP_REC_RAW) {
		ok = snapr_verify(r, rec) == 0;
	} else {
		uint8_t *buf = snapr_load(r, rec);
		ok = buf != NULL;
		/* The same limits as hyve's own reader: libcbor recurses once per nesting level. */
		if (buf && !strcmp(rec->name, "manifest") && state_payload_well_formed(buf, rec->len)) {
			struct cbor_load_result res;
			cbor_item_t *item = cbor_load(buf, rec->len, &res);
			if (item) {
				*manifest = cbor_to_json(item, 0);
				cbor_decref(&item);
			}
		}
		free(buf);
	}
	json_object_object_add(o, "checksum_status", json_object_new_string(ok ? "ok" : "mismatch"));
	return o;
}

int snapshot_info(const char *path, FILE *out)
{
	struct snap_reader r;
	char err[512];
	json_object *root, *records, *manifest = NULL;
	bool all_ok = true;

	if (snapr_open(&r, path, err, sizeof(err)) < 0) {
		log_error("snapshot %s: %s", path, err);
		snapr_close(&r);
		return -1;
	}
	root = json_object_new_object();
	records = json_object_new_array();
	json_object_object_add(root, "file", json_object_new_string(path));
	json_object_object_add(root, "header", header_json(&r));
	for (unsigned i = 0; i < r.count; i++) {
		json_object *rec = record_json(&r, &r.records[i], &manifest);
		all_ok &= !strcmp(json_object_get_string(json_object_object_get(rec, "checksum_status")), "ok");
		json_object_array_add(records, rec);
	}
	hide_secrets(manifest);
	json_object_object_add(root, "manifest", manifest);
	json_object_object_add(root, "records", records);
	json_object_object_add(root, "valid", json_object_new_boolean(all_ok));
	fprintf(out, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
	snapr_close(&r);
	return all_ok ? 0 : -1;
}
