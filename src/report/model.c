/* model.c: the fleet as the report shows it, built from rows of the
 * store's tables (the Supabase column names, from either store), merged so
 * that the same row read twice, or rows read in any order, give the same
 * model: a device's latest status, reading and error are the ones with the
 * newest time; a capture's outcome only moves forward (assembling, failed,
 * stored), as gxp-upload writes it; lists are keyed by the row's id.
 *
 * A device keeps every capture of the last 24 h (the counts and the chart
 * need them all), and of the older ones within REPORT_RECENT_H the newest
 * REPORT_DEVICE_PHOTOS; the newest REPORT_DEVICE_ERRORS errors within
 * REPORT_RECENT_H; and its latest stored photo and latest error of any age. */
#include <stdlib.h>
#include <string.h>

#include "report.h"

#define ID_MAX 200		/* longer ids make a row unusable */
#define TEXT_MAX 1000		/* longer texts are cut */

const char *const r_table_names[R_COUNT] = {
	"devices", "captures", "sensor_readings", "device_status", "device_errors"
};
static const char *const reading_cols[4] = {
	"temperature_c", "humidity_pct", "pressure_hpa", "gas_kohm"
};

struct fleet *
fleet_new(int64_t now)
{
	struct fleet *f = xcalloc(1, sizeof *f);

	f->by_uuid = map_new();
	f->now = now;
	f->recent_photos = gxp_cfg_int("REPORT_DEVICE_PHOTOS");
	f->recent_errors = gxp_cfg_int("REPORT_DEVICE_ERRORS");
	f->recent_us = gxp_cfg_int("REPORT_RECENT_H") * HOUR_US;
	return f;
}

static void
rcap_free(struct rcap *c)
{
	free(c->id);
	free(c->name);
	free(c->path);
	free(c->sha);
	free(c->error);
	free(c->url);
	memset(c, 0, sizeof *c);
}

static void
rerr_free(struct rerr *e)
{
	free(e->id);
	free(e->severity);
	free(e->message);
	memset(e, 0, sizeof *e);
}

static void
rdev_free(void *p)
{
	struct rdev *d = p;

	free(d->uuid);
	free(d->hw);
	free(d->model);
	free(d->ip);
	free(d->status);
	free(d->page);
	rerr_free(&d->err);
	rcap_free(&d->photo);
	for (size_t i = 0; i < d->ncaps; i++)
		rcap_free(&d->caps[i]);
	for (size_t i = 0; i < d->nerrs; i++)
		rerr_free(&d->errs[i]);
	free(d->caps);
	free(d->errs);
	free(d);
}

void
fleet_clear(struct fleet *f)
{
	map_free(f->by_uuid, rdev_free);
	f->by_uuid = map_new();
	free(f->devs);
	f->devs = NULL;
	f->ndevs = 0;
	memset(f->max_t, 0, sizeof f->max_t);
}

void
fleet_free(struct fleet *f)
{
	if (f == NULL)
		return;
	map_free(f->by_uuid, rdev_free);
	free(f->devs);
	free(f);
}

/* A copy of s cut to at most max bytes, at a character boundary. */
static char *
dup_cut(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	return memcpy(xcalloc(1, n + 1), s, n);
}

/* Replaces *dst with the row's string member key when the row has it
 * (null, or another type: NULL).  Returns whether the row has it. */
static int
take_str(char **dst, const cJSON *row, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);

	if (v == NULL)
		return 0;
	free(*dst);
	*dst = cJSON_IsString(v) ? dup_cut(v->valuestring, TEXT_MAX) : NULL;
	return 1;
}

/* A time member: its microseconds, or 0 when absent, null or unusable. */
static int64_t
row_time(const cJSON *row, const char *key)
{
	const char *s = gxp_json_str(row, key);
	int64_t t;

	return s && gxp_parse_time(s, &t) == 0 ? t : 0;
}

static void
saw(struct fleet *f, int table, int64_t t)
{
	if (t > f->max_t[table])
		f->max_t[table] = t;
}

struct rdev *
model_device(struct fleet *f, const char *uuid)
{
	struct rdev *d = map_get(f->by_uuid, uuid);

	if (d == NULL) {
		d = xcalloc(1, sizeof *d);
		d->uuid = xstrdup(uuid);
		d->pending = -1;
		map_put(f->by_uuid, uuid, d);
	}
	return d;
}

static void
device_row(struct fleet *f, struct rdev *d, const cJSON *row)
{
	const cJSON *nw = cJSON_GetObjectItemCaseSensitive(row, "next_wake_at");
	int64_t t = row_time(row, "last_seen_at");

	take_str(&d->hw, row, "device_hw_id");
	take_str(&d->model, row, "model");
	take_str(&d->ip, row, "last_ip");
	if (t > d->seen)
		d->seen = t;
	saw(f, R_DEVICES, t);
	if (nw) {
		d->has_next_wake = 1;
		d->next_wake = row_time(row, "next_wake_at");
	}
}

static void
status_row(struct fleet *f, struct rdev *d, const cJSON *row)
{
	int64_t t = row_time(row, "created_at");
	long long n;

	saw(f, R_STATUS, t);
	if (d->status_t > t)
		return;
	d->status_t = t;
	take_str(&d->status, row, "status");
	d->pending = gxp_json_int(row, "pending_count", &n) == 1 && n >= 0 ? n : -1;
}

static void
reading_row(struct fleet *f, struct rdev *d, const cJSON *row)
{
	int64_t t = row_time(row, "created_at");

	saw(f, R_READINGS, t);
	if (d->reading_t > t)
		return;
	d->reading_t = t;
	for (int i = 0; i < 4; i++)
		d->has_reading[i] = gxp_json_num(row, reading_cols[i], &d->reading[i]) == 1;
}

static void
rerr_set(struct rerr *e, const char *id, int64_t t, long code, const cJSON *row)
{
	rerr_free(e);
	e->id = xstrdup(id);
	e->t = t;
	e->code = code;
	take_str(&e->severity, row, "severity");
	take_str(&e->message, row, "message");
}

/* Newest first; an equal time goes after the ones already there. */
static size_t
err_slot(const struct rdev *d, int64_t t)
{
	size_t i = 0;

	while (i < d->nerrs && d->errs[i].t >= t)
		i++;
	return i;
}

static void prune(struct fleet *f, struct rdev *d);

static int
error_row(struct fleet *f, struct rdev *d, const cJSON *row)
{
	long long code;
	int64_t t = row_time(row, "occurred_at");
	const char *id = gxp_json_str(row, "id");
	char synth[64];
	size_t at;

	if (gxp_json_int(row, "error_code", &code) != 1 || code < -2147483648LL ||
	    code > 2147483647LL)
		return -1;
	if (id == NULL)		/* the local store's rows: gxp-upload's row identity */
		id = gxp_json_str(row, "event_id");
	if (id == NULL) {	/* rows of an older store: the time and code */
		snprintf(synth, sizeof synth, "%lld/%lld", (long long)t, code);
		id = synth;
	}
	if (strlen(id) > ID_MAX)
		return -1;
	saw(f, R_ERRORS, t);
	if (!d->has_err || t >= d->err.t) {
		rerr_set(&d->err, id, t, (long)code, row);
		d->has_err = 1;
	}
	if (d->nerrs > (size_t)f->recent_errors * 4 + 64)
		prune(f, d);
	for (size_t i = 0; i < d->nerrs; i++)
		if (strcmp(d->errs[i].id, id) == 0)
			return 0;
	if (d->nerrs == d->errcap) {
		d->errcap = d->errcap ? d->errcap * 2 : 4;
		d->errs = xrealloc(d->errs, d->errcap * sizeof *d->errs);
	}
	at = err_slot(d, t);
	memmove(&d->errs[at + 1], &d->errs[at], (d->nerrs - at) * sizeof *d->errs);
	memset(&d->errs[at], 0, sizeof *d->errs);
	rerr_set(&d->errs[at], id, t, (long)code, row);
	d->nerrs++;
	return 0;
}

static int
status_rank(const char *s)
{
	return s == NULL ? CAP_ASSEMBLING : strcmp(s, "stored") == 0 ? CAP_STORED :
	    strcmp(s, "failed") == 0 ? CAP_FAILED : CAP_ASSEMBLING;
}

const char *
cap_status_name(int status)
{
	return status == CAP_STORED ? "stored" : status == CAP_FAILED ? "failed" :
	    "assembling";
}

/* Merges a captures row into c: the outcome (status, error, path, sha,
 * url) only when it does not move the capture back. */
static void
cap_merge(struct rcap *c, const cJSON *row)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(row, "ingest_status");
	int64_t t;
	long long n;

	if (!c->name || cJSON_IsString(cJSON_GetObjectItemCaseSensitive(row,
	    "device_capture_id")))
		take_str(&c->name, row, "device_capture_id");
	if ((t = row_time(row, "created_at")) != 0)
		c->created_at = t;
	if ((t = row_time(row, "captured_at")) != 0)
		c->captured_at = t;
	if (gxp_json_int(row, "image_bytes", &n) == 1 && n >= 0)
		c->bytes = n;
	c->t = c->created_at ? c->created_at : c->captured_at;
	if (st == NULL || (cJSON_IsString(st) ? status_rank(st->valuestring) :
	    CAP_ASSEMBLING) < c->status)
		return;
	c->status = status_rank(cJSON_IsString(st) ? st->valuestring : NULL);
	take_str(&c->error, row, "ingest_error");
	take_str(&c->path, row, "storage_path");
	take_str(&c->sha, row, "image_sha256");
	take_str(&c->url, row, "image_url");
}

static void
rcap_copy(struct rcap *dst, const struct rcap *src)
{
	rcap_free(dst);
	*dst = *src;
	dst->id = xstrdup(src->id);
#define DUP(m) dst->m = src->m ? xstrdup(src->m) : NULL
	DUP(name);
	DUP(path);
	DUP(sha);
	DUP(error);
	DUP(url);
#undef DUP
	dst->href = NULL;
}

static struct rcap *
cap_find(struct fleet *f, struct rdev *d, const char *id)
{
	for (size_t i = 0; i < d->ncaps; i++)
		if (strcmp(d->caps[i].id, id) == 0)
			return &d->caps[i];
	if (d->ncaps == d->capcap) {
		d->capcap = d->capcap ? d->capcap * 2 : 4;
		d->caps = xrealloc(d->caps, d->capcap * sizeof *d->caps);
	}
	memset(&d->caps[d->ncaps], 0, sizeof *d->caps);
	d->caps[d->ncaps].id = xstrdup(id);
	d->caps[d->ncaps].bytes = -1;
	d->caps[d->ncaps].seq = ++f->seq;
	return &d->caps[d->ncaps++];
}

static int
newer_photo(const struct rcap *a, const struct rcap *b)
{
	return a->captured_at != b->captured_at ? a->captured_at > b->captured_at :
	    a->created_at >= b->created_at;
}

static int
capture_row(struct fleet *f, struct rdev *d, const cJSON *row)
{
	const char *id = gxp_json_str(row, "capture_id");
	struct rcap *c;

	if (id == NULL || strlen(id) > ID_MAX)
		return -1;
	c = cap_find(f, d, id);
	cap_merge(c, row);
	saw(f, R_CAPTURES, c->created_at);
	if (c->status == CAP_STORED && c->captured_at != 0 && (!d->has_photo ||
	    strcmp(d->photo.id, c->id) == 0 || newer_photo(c, &d->photo))) {
		rcap_copy(&d->photo, c);
		d->has_photo = 1;
	}
	/* bounded while a long history is read; exact in model_finish() */
	if (d->ncaps > (size_t)f->recent_photos * 4 + 64)
		prune(f, d);
	return 0;
}

int
model_row(struct fleet *f, int table, const cJSON *row)
{
	const char *uuid = cJSON_IsObject(row) ? gxp_json_str(row, "device_id") : NULL;
	struct rdev *d;
	int rc = 0;

	f->rows++;
	/* an error no device can be named for (a message on no device's
	 * topic) is the worker's, not a device's: not for this report */
	if (table == R_ERRORS && cJSON_IsObject(row) && (uuid == NULL ||
	    cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(row, "device_id"))))
		return 0;
	if (uuid == NULL || *uuid == '\0' || strlen(uuid) > ID_MAX) {
		f->bad_rows++;
		return -1;
	}
	d = model_device(f, uuid);
	switch (table) {
	case R_DEVICES: device_row(f, d, row); break;
	case R_STATUS: status_row(f, d, row); break;
	case R_READINGS: reading_row(f, d, row); break;
	case R_ERRORS: rc = error_row(f, d, row); break;
	case R_CAPTURES: rc = capture_row(f, d, row); break;
	}
	if (rc == -1)
		f->bad_rows++;
	return rc;
}

static const char *const latest_keys[] = {
	NULL, "latest_photo", "latest_reading", "latest_status", "latest_error"
};

/* A gxp_report_devices row (sql/report.sql: the devices row in "device"),
 * or a device of the state (the devices columns at the top); each latest_*
 * member a row of its table. */
int
model_view_row(struct fleet *f, const cJSON *row)
{
	const cJSON *dev = cJSON_GetObjectItemCaseSensitive(row, "device");

	if (model_row(f, R_DEVICES, cJSON_IsObject(dev) ? dev : row) == -1)
		return -1;
	for (int t = R_CAPTURES; t < R_COUNT; t++) {
		const cJSON *sub = cJSON_GetObjectItemCaseSensitive(row, latest_keys[t]);

		if (cJSON_IsObject(sub))
			model_row(f, t, sub);
	}
	return 0;
}

/* What the pages need: every capture of the last 24 h, then the newest
 * recent_photos within recent_us; the newest recent_errors errors. */
static void
prune(struct fleet *f, struct rdev *d)
{
	int64_t day = f->now - DAY_US, recent = f->now - f->recent_us;
	size_t keep = 0, older = 0;

	for (size_t i = 1; i < d->ncaps; i++) {	/* newest first; a tie: read last */
		struct rcap c = d->caps[i];
		size_t j = i;

		for (; j > 0 && (d->caps[j - 1].t < c.t || (d->caps[j - 1].t == c.t &&
		    d->caps[j - 1].seq < c.seq)); j--)
			d->caps[j] = d->caps[j - 1];
		d->caps[j] = c;
	}
	for (size_t i = 0; i < d->ncaps; i++) {
		struct rcap *c = &d->caps[i];

		if (c->t >= day || (c->t >= recent && older++ < (size_t)f->recent_photos))
			d->caps[keep++] = *c;
		else
			rcap_free(c);
	}
	d->ncaps = keep;
	keep = 0;
	for (size_t i = 0; i < d->nerrs; i++) {
		if (keep < (size_t)f->recent_errors && d->errs[i].t >= recent)
			d->errs[keep++] = d->errs[i];
		else
			rerr_free(&d->errs[i]);
	}
	d->nerrs = keep;
}

static void
count(struct fleet *f, struct rdev *d)
{
	for (size_t i = 0; i < d->ncaps; i++) {
		int64_t age = f->now - d->caps[i].t;
		int h;

		if (d->caps[i].t == 0 || age >= DAY_US || age < -HOUR_US)
			continue;
		h = age < 0 ? 23 : 23 - (int)(age / HOUR_US);
		if (d->caps[i].status == CAP_STORED) {
			d->stored24++;
			f->stored[h]++;
		} else if (d->caps[i].status == CAP_FAILED) {
			d->failed24++;
			f->failed[h]++;
		}
	}
	f->total_stored += d->stored24;
	f->total_failed += d->failed24;
}

static void
flag(struct fleet *f, struct rdev *d, int64_t offline_us, int64_t late_us)
{
	int64_t day = f->now - DAY_US;

	if (d->failed24 > 0 || (d->has_err && d->err.t >= day))
		d->flags |= F_ERRORS;
	if (d->seen == 0 || f->now - d->seen > offline_us)
		d->flags |= F_OFFLINE;
	if (d->next_wake != 0 && f->now - d->next_wake > late_us)
		d->flags |= F_LATE;
	if (d->stored24 == 0)
		d->flags |= F_NOPHOTO;
	if (d->pending > 0)
		d->flags |= F_PENDING;
	for (int i = 0; i < 5; i++)
		if (d->flags & (1 << i))
			f->nflag[i]++;
	if (d->flags > F_PENDING)
		f->attention++;
	if (d->seen >= day)
		f->seen24++;
	if (d->pending > 0)
		f->total_pending += d->pending;
}

/* The page's file name: the id when it is a valid device id and not taken,
 * else "x." and a hash (a name no valid id has). */
static void
name_page(struct rdev *d, struct map *taken)
{
	char hex[65];

	if (d->hw && gxp_device_valid(d->hw) && map_get(taken, d->hw) == NULL) {
		d->page = xstrdup(d->hw);
	} else {
		gxp_sha256_hex(hex, d->uuid, strlen(d->uuid));
		d->page = xasprintf("x.%.16s", hex);
		if (d->hw) {
			char safe[96];

			gxp_log(LOG_WARN, "device %s (device_id %s): not a valid device id; "
			    "its page is devices/%s.html", log_safe(d->hw, safe),
			    d->uuid, d->page);
		}
	}
	map_put(taken, d->page, d);
}

static int
by_attention(const void *a, const void *b)
{
	const struct rdev *x = *(struct rdev *const *)a, *y = *(struct rdev *const *)b;

	if (x->flags != y->flags)
		return x->flags > y->flags ? -1 : 1;
	return strcmp(x->label, y->label);
}

static void
collect(const char *key, void *val, void *arg)
{
	struct fleet *f = arg;

	(void)key;
	f->devs[f->ndevs++] = val;
}

void
model_finish(struct fleet *f)
{
	int64_t offline_us = gxp_cfg_int("REPORT_OFFLINE_S") * 1000000LL;
	int64_t late_us = gxp_cfg_int("REPORT_LATE_S") * 1000000LL;
	struct map *taken = map_new();

	free(f->devs);
	f->devs = xcalloc(map_count(f->by_uuid) + 1, sizeof *f->devs);
	f->ndevs = 0;
	memset(f->stored, 0, sizeof f->stored);
	memset(f->failed, 0, sizeof f->failed);
	memset(f->nflag, 0, sizeof f->nflag);
	f->total_stored = f->total_failed = f->seen24 = f->attention = 0;
	f->total_pending = 0;
	map_each(f->by_uuid, collect, f);
	/* a stable order of the file names, whatever the map's */
	for (size_t i = 0; i < f->ndevs; i++)
		f->devs[i]->label = f->devs[i]->uuid;
	qsort(f->devs, f->ndevs, sizeof *f->devs, by_attention);
	for (size_t i = 0; i < f->ndevs; i++) {
		struct rdev *d = f->devs[i];

		d->stored24 = d->failed24 = d->flags = 0;
		prune(f, d);
		count(f, d);
		flag(f, d, offline_us, late_us);
		free(d->page);
		d->page = NULL;
		d->label = d->hw ? d->hw : d->uuid;
	}
	for (size_t i = 0; i < f->ndevs; i++)
		if (f->devs[i]->hw && gxp_device_valid(f->devs[i]->hw))
			name_page(f->devs[i], taken);
	for (size_t i = 0; i < f->ndevs; i++)
		if (f->devs[i]->page == NULL)
			name_page(f->devs[i], taken);
	map_free(taken, NULL);
	qsort(f->devs, f->ndevs, sizeof *f->devs, by_attention);
}

/* --- the state: a device as a gxp_report_devices row plus its lists --- */

static void
add_time(cJSON *o, const char *key, int64_t t)
{
	char buf[32];

	if (t == 0) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	gxp_fmt_utc(buf, t);
	cJSON_AddStringToObject(o, key, buf);
}

static void
add_str(cJSON *o, const char *key, const char *s)
{
	if (s)
		cJSON_AddStringToObject(o, key, s);
	else
		cJSON_AddNullToObject(o, key);
}

static cJSON *
sub_row(const struct rdev *d)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "device_id", d->uuid);
	return o;
}

static cJSON *
cap_json(const struct rdev *d, const struct rcap *c)
{
	cJSON *o = sub_row(d);

	cJSON_AddStringToObject(o, "capture_id", c->id);
	add_str(o, "device_capture_id", c->name);
	add_time(o, "created_at", c->created_at);
	add_time(o, "captured_at", c->captured_at);
	cJSON_AddStringToObject(o, "ingest_status", cap_status_name(c->status));
	if (c->bytes >= 0)
		cJSON_AddNumberToObject(o, "image_bytes", (double)c->bytes);
	add_str(o, "ingest_error", c->error);
	add_str(o, "storage_path", c->path);
	add_str(o, "image_sha256", c->sha);
	add_str(o, "image_url", c->url);
	return o;
}

static cJSON *
err_json(const struct rdev *d, const struct rerr *e)
{
	cJSON *o = sub_row(d);

	cJSON_AddStringToObject(o, "id", e->id);
	add_time(o, "occurred_at", e->t);
	cJSON_AddNumberToObject(o, "error_code", (double)e->code);
	add_str(o, "severity", e->severity);
	add_str(o, "message", e->message);
	return o;
}

static void
add_latest(cJSON *o, const struct rdev *d)
{
	cJSON *s = sub_row(d), *r = sub_row(d);

	add_time(s, "created_at", d->status_t);
	add_str(s, "status", d->status);
	if (d->pending >= 0)
		cJSON_AddNumberToObject(s, "pending_count", (double)d->pending);
	cJSON_AddItemToObject(o, "latest_status", s);
	add_time(r, "created_at", d->reading_t);
	for (int i = 0; i < 4; i++)
		if (d->has_reading[i])
			cJSON_AddNumberToObject(r, reading_cols[i], d->reading[i]);
	cJSON_AddItemToObject(o, "latest_reading", r);
	if (d->has_err)
		cJSON_AddItemToObject(o, "latest_error", err_json(d, &d->err));
	if (d->has_photo)
		cJSON_AddItemToObject(o, "latest_photo", cap_json(d, &d->photo));
}

cJSON *
model_device_json(const struct rdev *d)
{
	cJSON *o = sub_row(d), *caps = cJSON_CreateArray(), *errs = cJSON_CreateArray();

	add_str(o, "device_hw_id", d->hw);
	add_str(o, "model", d->model);
	add_time(o, "last_seen_at", d->seen);
	add_str(o, "last_ip", d->ip);
	if (d->has_next_wake)
		add_time(o, "next_wake_at", d->next_wake);
	add_latest(o, d);
	for (size_t i = d->ncaps; i > 0; i--)	/* oldest first, as they were read */
		cJSON_AddItemToArray(caps, cap_json(d, &d->caps[i - 1]));
	for (size_t i = 0; i < d->nerrs; i++)
		cJSON_AddItemToArray(errs, err_json(d, &d->errs[i]));
	cJSON_AddItemToObject(o, "captures", caps);
	cJSON_AddItemToObject(o, "errors", errs);
	return o;
}

/* The lists first, oldest first, so that captures of the same time are
 * read in the order the last run read them. */
int
model_device_load(struct fleet *f, const cJSON *j)
{
	const cJSON *r;

	cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(j, "captures"))
		model_row(f, R_CAPTURES, r);
	cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(j, "errors"))
		model_row(f, R_ERRORS, r);
	return model_view_row(f, j);
}
