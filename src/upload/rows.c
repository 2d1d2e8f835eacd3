/* rows.c: the rows gxp-upload builds from events and photos (captures,
 * device_errors, the publish log), and what the spool says of a capture's
 * photo. */
#include <stdlib.h>
#include <unistd.h>

#include "upload.h"

const int event_tables[N_EVENT_TABLES] = { T_SENSOR, T_STATUS, T_ERRORS, T_PUBLOG };

cJSON *
dup_or_null(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
}

void
copy_num(cJSON *row, const char *col, const cJSON *src, const char *key)
{
	double d;

	if (gxp_json_num(src, key, &d) == 1)
		cJSON_AddNumberToObject(row, col, d);
	else
		cJSON_AddNullToObject(row, col);
}

/* A captures row from a capture_started event or a sidecar (the same
 * fields, except image_size there and image_bytes here). */
cJSON *
capture_row(const cJSON *src, const char *cap, const char *status,
    const char *error, const char *path, const char *sha)
{
	cJSON *row = cJSON_CreateObject(), *meta = cJSON_CreateObject();
	const char *at = gxp_json_str(src, "captured_at");
	static const char *const meta_keys[] = {
		"image_name", "captured_at_raw", "location", "image_id", "meta", "timings"
	};

	cJSON_AddStringToObject(row, "device_capture_id", cap);
	cJSON_AddItemToObject(row, "captured_at", at ? cJSON_CreateString(at) :
	    cJSON_CreateNull());
	copy_num(row, "image_bytes", src, cJSON_HasObjectItem(src, "image_bytes") ?
	    "image_bytes" : "image_size");
	copy_num(row, "chunk_size_bytes", src, "chunk_size");
	copy_num(row, "total_chunks", src, "total_chunks");
	cJSON_AddStringToObject(row, "img_format", "jpeg");
	cJSON_AddStringToObject(row, "ingest_status", status);
	for (size_t i = 0; i < sizeof meta_keys / sizeof meta_keys[0]; i++)
		if (cJSON_HasObjectItem(src, meta_keys[i]))
			cJSON_AddItemToObject(meta, meta_keys[i], dup_or_null(src, meta_keys[i]));
	cJSON_AddItemToObject(row, "ingest_meta", meta);
	cJSON_AddItemToObject(row, "ingest_error", error ? cJSON_CreateString(error) :
	    cJSON_CreateNull());
	cJSON_AddItemToObject(row, "storage_path", path ? cJSON_CreateString(path) :
	    cJSON_CreateNull());
	cJSON_AddItemToObject(row, "image_sha256", sha ? cJSON_CreateString(sha) :
	    cJSON_CreateNull());
	cJSON_AddItemToObject(row, "sensor_data", dup_or_null(src, "sensor"));
	cJSON_AddNullToObject(row, "image_url");	/* the stored row's: the object's URL */
	return row;
}

cJSON *
error_row(long long code, const char *severity, const char *message,
    cJSON *details, const char *when)
{
	cJSON *row = cJSON_CreateObject();

	cJSON_AddNumberToObject(row, "error_code", (double)code);
	cJSON_AddStringToObject(row, "severity", severity ? severity : "error");
	cJSON_AddStringToObject(row, "message", message ? message : "");
	cJSON_AddItemToObject(row, "details", details ? details : cJSON_CreateObject());
	cJSON_AddStringToObject(row, "occurred_at", when);
	return row;
}

void
publog_row(const char *dev, const char *topic, const char *dir, cJSON *payload,
    const char *when)
{
	cJSON *row;

	if (publog == PUBLOG_OFF || dev == NULL || topic == NULL) {
		cJSON_Delete(payload);
		return;
	}
	row = cJSON_CreateObject();
	cJSON_AddStringToObject(row, "topic", topic);
	cJSON_AddStringToObject(row, "direction", dir);
	cJSON_AddItemToObject(row, "payload", payload ? payload : cJSON_CreateNull());
	cJSON_AddStringToObject(row, "received_at", when);
	rows_add(rows, T_PUBLOG, row, dev, NULL, CAP_NONE, NULL, NULL);
}

int
is_stored(const char *dev, const char *cap)
{
	char entry[GXP_ENTRY_MAX + 1], *f;
	int rc;

	gxp_spool_entry(entry, sizeof entry, dev, cap);
	f = spool_path("stored", entry, ".json");
	rc = access(f, F_OK) == 0;
	free(f);
	return rc;
}

/* The capture's photo is complete: in ready/ or work/, or stored. */
int
photo_finished(const char *dev, const char *cap)
{
	return gxp_spool_finished(spool, dev, cap);
}
