/* events.c: the events gxp-upload consumes (gxp(7)): rows from status,
 * capture, error and message events, photo_complete as a hint for the
 * work list, marks for the journal's commit, and gxp-control's wake times
 * for the ACK_OKs. */
#include <stdlib.h>
#include <string.h>

#include "upload.h"

/* A device's next_wake_time for its ACK_OKs, from gxp-control's schedule
 * events. */
struct wake {
	struct wake *next;
	char dev[GXP_DEVICE_MAX + 1];
	char clock[16];
};

enum { WAKE_BUCKETS = 4096 };

static struct wake *wakes[WAKE_BUCKETS];

static struct wake **
wake_slot(const char *dev)
{
	struct wake **pp;

	for (pp = &wakes[gxp_hash(dev) % WAKE_BUCKETS]; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->dev, dev) == 0)
			break;
	return pp;
}

const char *
wake_clock(const char *dev)
{
	struct wake *w = *wake_slot(dev);

	return w ? w->clock : NULL;
}

void
wakes_free(void)
{
	for (int i = 0; i < WAKE_BUCKETS; i++)
		while (wakes[i]) {
			struct wake *w = wakes[i];

			wakes[i] = w->next;
			free(w);
		}
}

static void
event_time(const cJSON *j, const char *key, char out[32])
{
	const char *s = gxp_json_str(j, key);
	int64_t us;

	if (s && gxp_parse_time(s, &us) == 0)
		gxp_fmt_utc(out, us);
	else
		now_utc(out);
}

/* The event's device, or NULL (logged) when it has none or a bad one. */
static const char *
event_device(const cJSON *j, const char *type, int required)
{
	const char *dev = gxp_json_str(j, "device");

	if (dev && gxp_device_valid(dev))
		return dev;
	if (dev || required)
		gxp_log(LOG_ERROR, "%s event without a valid device; no row written", type);
	return NULL;
}

static void
ev_status(const cJSON *j, const char *ts)
{
	const char *dev = event_device(j, "status", 1);
	long long pending;
	cJSON *row;

	if (dev == NULL)
		return;
	rows_device_seen(rows, dev, ts);
	row = cJSON_CreateObject();
	cJSON_AddItemToObject(row, "status", dup_or_null(j, "status"));
	/* an integer column: anything else (1e10, 1.5) would fail the batch;
	 * raw keeps what the device sent */
	if (gxp_json_int(j, "pending_count", &pending) == 1 && pending >= 0 &&
	    pending <= INT32_MAX)
		cJSON_AddNumberToObject(row, "pending_count", (double)pending);
	else
		cJSON_AddNullToObject(row, "pending_count");
	cJSON_AddItemToObject(row, "raw", dup_or_null(j, "raw"));
	cJSON_AddStringToObject(row, "created_at", ts);
	rows_add(rows, T_STATUS, row, dev, NULL, CAP_NONE, NULL, NULL);
}

static int
has_reading(const cJSON *s)
{
	static const char *const keys[] = {
		"temperature_c", "humidity_pct", "pressure_hpa", "gas_kohm"
	};
	double d;

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (gxp_json_num(s, keys[i], &d) == 1)
			return 1;
	return 0;
}

static void
ev_capture_started(const cJSON *j, const char *ts)
{
	const char *dev = event_device(j, "capture_started", 1);
	const char *cap = gxp_json_str(j, "capture_name");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "sensor");
	cJSON *row;

	if (dev == NULL)
		return;
	if (cap == NULL || !gxp_capture_name_valid(cap)) {
		gxp_log(LOG_ERROR, "device %s: capture_started without a valid "
		    "capture_name; no row written", dev);
		return;
	}
	rows_device_seen(rows, dev, ts);
	if (!photo_finished(dev, cap))
		rows_add(rows, T_CAPTURES, capture_row(j, cap, "assembling", NULL,
		    NULL, NULL), dev, cap, CAP_NONE | ROW_KEEP_OUTCOME, NULL, NULL);
	else if (!rows_capture_seen(rows, dev, cap)) {
		/* read after the photo was complete: "assembling" would undo
		 * "stored".  A log replayed: its rows were written before; the
		 * journal's lines read again after a crash: they may not have
		 * been (those that were are stored once: row identity).  The
		 * sensor row gets the capture's id from a captures upsert of its
		 * keys alone, which changes nothing. */
		cJSON *id;

		if (jc.marks == NULL && is_stored(dev, cap))
			return;
		id = cJSON_CreateObject();
		cJSON_AddStringToObject(id, "device_capture_id", cap);
		rows_add(rows, T_CAPTURES, id, dev, cap, CAP_NONE | ROW_LOOKUP, NULL, NULL);
	}
	if (!cJSON_IsObject(s) || !has_reading(s))
		return;
	row = cJSON_CreateObject();
	copy_num(row, "temperature_c", s, "temperature_c");
	copy_num(row, "humidity_pct", s, "humidity_pct");
	copy_num(row, "pressure_hpa", s, "pressure_hpa");
	copy_num(row, "gas_kohm", s, "gas_kohm");
	cJSON_AddStringToObject(row, "created_at", ts);
	rows_add(rows, T_SENSOR, row, dev, cap, CAP_REQUIRED, NULL, NULL);
}

static void
ev_photo_complete(const cJSON *j)
{
	const char *entry = gxp_json_str(j, "entry");

	if (entry && strncmp(entry, "ready/", 6) == 0 && !strchr(entry + 6, '/') &&
	    entry[6] != '.' && entry[6] != '\0')
		todo_add(entry + 6);
	else
		gxp_log(LOG_WARN, "photo_complete event without a ready/ entry; the "
		    "next rescan will find it");
}

static cJSON *
error_details(const cJSON *j)
{
	static const char *const keys[] = {
		"event", "image_name", "capture_name", "entry", "topic", "line", "seq"
	};
	cJSON *d = cJSON_CreateObject();

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (cJSON_HasObjectItem(j, keys[i]))
			cJSON_AddItemToObject(d, keys[i], dup_or_null(j, keys[i]));
	return d;
}

static void
ev_error(const cJSON *j, const char *ts, int capture_failed)
{
	const char *type = capture_failed ? "capture_failed" : "error";
	const char *dev = event_device(j, type, capture_failed);
	const char *cap = gxp_json_str(j, capture_failed ? "capture_name" : "image_name");
	const char *reason = gxp_json_str(j, "reason");
	long long code = 0;
	const cJSON *details;
	cJSON *row;

	if (capture_failed && dev == NULL)
		return;
	if (gxp_json_int(j, "code", &code) != 1)
		gxp_log(LOG_WARN, "%s event without a numeric code", type);
	if (cap && !gxp_capture_name_valid(cap))
		cap = NULL;
	if (dev)
		rows_device_seen(rows, dev, ts);
	/* a complete photo's capture has not failed: a copy of it assembled
	 * again (the device sent it again) did, and "failed" would undo
	 * "stored" */
	if (capture_failed && cap && !photo_finished(dev, cap)) {
		row = cJSON_CreateObject();
		cJSON_AddStringToObject(row, "device_capture_id", cap);
		cJSON_AddStringToObject(row, "ingest_status", "failed");
		cJSON_AddItemToObject(row, "ingest_error", dup_or_null(j, "reason"));
		rows_add(rows, T_CAPTURES, row, dev, cap, CAP_NONE, NULL, NULL);
	}
	/* a device-reported error brings its row's message and details */
	details = cJSON_GetObjectItemCaseSensitive(j, "details");
	rows_add(rows, T_ERRORS, error_row(code, gxp_json_str(j, "severity"),
	    gxp_json_str(j, "message") ? gxp_json_str(j, "message") : reason,
	    cJSON_IsObject(details) ? cJSON_Duplicate(details, 1) : error_details(j), ts),
	    dev, cap, cap ? CAP_IF_KNOWN : CAP_NONE, NULL, NULL);
}

/* A chunk's bytes stay out of the log: "payload" becomes "payload_bytes". */
static cJSON *
strip_chunk(const cJSON *payload)
{
	cJSON *p = cJSON_Duplicate(payload, 1);
	const char *b64 = gxp_json_str(p, "payload");

	if (b64) {
		size_t n = strlen(b64), pad = (n && b64[n - 1] == '=') + (n > 1 && b64[n - 2] == '=');
		size_t bytes = n / 4 * 3;

		cJSON_DeleteItemFromObjectCaseSensitive(p, "payload");
		cJSON_AddNumberToObject(p, "payload_bytes", (double)(bytes > pad ? bytes - pad : 0));
	}
	return p;
}

static void
ev_inbound(const cJSON *j)
{
	const char *dev = event_device(j, "inbound", 1), *kind = gxp_json_str(j, "kind");
	const cJSON *payload = cJSON_GetObjectItemCaseSensitive(j, "payload");
	int chunk = kind && strcmp(kind, "chunk") == 0;
	char when[32];

	if (dev == NULL)
		return;
	event_time(j, cJSON_HasObjectItem(j, "received_at") ? "received_at" : "ts", when);
	rows_device_seen(rows, dev, when);
	if (publog == PUBLOG_OFF || (chunk && publog == PUBLOG_NO_CHUNKS))
		return;
	publog_row(dev, gxp_json_str(j, "topic"), "in", chunk ? strip_chunk(payload) :
	    cJSON_Duplicate(payload, 1), when);
}

static void
ev_publish(const cJSON *j, const char *ts)
{
	const char *dev = gxp_json_str(j, "device"), *topic = gxp_json_str(j, "topic");
	const char *kind = gxp_json_str(j, "kind"), *img = gxp_json_str(j, "image_name");

	gxp_log(LOG_INFO, "publish %s to %s (device %s image %s)", kind ? kind : "?",
	    topic ? topic : "?", dev ? dev : "?", img ? img : "?");
	if (dev && gxp_device_valid(dev))
		publog_row(dev, topic, "out", dup_or_null(j, "payload"), ts);
}

/* A mark: the rows of every line up to its seq have been added.  With -J,
 * its epoch closes, with where the local store's event tables end now. */
static void
ev_mark(const cJSON *j)
{
	long long seq, off[T_COUNT];

	if (gxp_json_int(j, "seq", &seq) != 1 || seq < 1) {
		gxp_log(LOG_WARN, "mark event without a seq; ignored");
		return;
	}
	if (jc.marks == NULL)
		return;
	/* lines up to the journal's end at start may have rows from before
	 * the restart anywhere after the offsets this run began with */
	memcpy(off, jc.base, sizeof off);
	if ((uint64_t)seq >= jc.head)
		for (int i = 0; i < N_EVENT_TABLES; i++)
			off[event_tables[i]] = store_mark(st, rows_table_names[event_tables[i]]);
	marks_mark(jc.marks, (uint64_t)seq, off);
}

/* gxp-control told a device when to wake: its ACK_OKs say so too. */
static void
ev_schedule(const cJSON *j)
{
	const char *dev = event_device(j, "schedule", 1);
	const char *clock = gxp_json_str(j, "next_wake_time");
	struct wake **pp;

	if (dev == NULL)
		return;
	if (clock == NULL || strlen(clock) >= sizeof (*pp)->clock) {
		gxp_log(LOG_ERROR, "device %s: schedule event without a valid next_wake_time",
		    dev);
		return;
	}
	if (*(pp = wake_slot(dev)) == NULL) {
		*pp = xcalloc(1, sizeof **pp);
		snprintf((*pp)->dev, sizeof (*pp)->dev, "%s", dev);
	}
	snprintf((*pp)->clock, sizeof (*pp)->clock, "%s", clock);
}

/* gxp-control's message to a device, for the publish log. */
static void
ev_command(const cJSON *j, const char *ts)
{
	const char *dev = event_device(j, "command", 1);

	if (dev)
		publog_row(dev, gxp_json_str(j, "topic"), "out", dup_or_null(j, "payload"), ts);
}

/* Returns 1 when the line was an event this stage consumes. */
int
event(const cJSON *j)
{
	const char *type = gxp_json_str(j, "event");
	char ts[32];

	if (type == NULL)
		return 0;
	event_time(j, "ts", ts);
	if (strcmp(type, "publish") == 0)
		ev_publish(j, ts);
	else if (strcmp(type, "status") == 0)
		ev_status(j, ts);
	else if (strcmp(type, "capture_started") == 0)
		ev_capture_started(j, ts);
	else if (strcmp(type, "photo_complete") == 0)
		ev_photo_complete(j);
	else if (strcmp(type, "capture_failed") == 0)
		ev_error(j, ts, 1);
	else if (strcmp(type, "error") == 0)
		ev_error(j, ts, 0);
	else if (strcmp(type, "inbound") == 0)
		ev_inbound(j);
	else if (strcmp(type, "mark") == 0)
		ev_mark(j);
	else if (strcmp(type, "schedule") == 0)
		ev_schedule(j);
	else if (strcmp(type, "command") == 0)
		ev_command(j, ts);
	else
		return 0;
	if (strcmp(type, "publish") == 0)
		return 0;
	counters[C_EVENTS].v++;
	return 1;
}
