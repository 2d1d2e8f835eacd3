/* src_supa.c: Supabase as a source: rows through PostgREST, photos and
 * signed URLs through Storage, over gxp-upload's HTTP engine (http.c:
 * keep-alive connections, retries with backoff), with gxp-upload's
 * settings.
 *
 * A full read takes a row per device from the view gxp_report_devices
 * (sql/report.sql: the device with its latest status, reading, error and
 * stored photo), page by page on device_id, and the captures and errors
 * of the last REPORT_RECENT_H.  Later runs read only rows whose time is at
 * or after the newest one seen, less REPORT_OVERLAP_S (rows are written
 * with the worker's or the database's clock, and may arrive a little
 * late), plus, by id, the captures whose outcome was still open and the
 * devices not known yet.  What no time shows (a row changed in place) is
 * picked up by the full read every REPORT_REFRESH_S.  Pages are read until
 * one comes back empty, so a server whose max-rows is below
 * REPORT_PAGE_ROWS loses nothing. */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "report.h"

#define SIGN_BATCH 1000		/* Storage's MAX_OBJECTS_PER_REQUEST */
#define ID_BATCH 40		/* ids per in.(...) filter, for the URL's length */

struct ssrc {
	struct source base;
	struct http *http;
	char *storage, *rest, *key, *bucket;
	struct gxp_apikey k;
	int64_t wm[R_COUNT];	/* the newest row time seen, per table */
	int64_t overlap_us;
	long long page_rows, signed_s, max_image;
	int64_t now;
};

/* What each table is read by: its time column and its id column. */
static const struct {
	const char *what, *time, *id, *select;
} tables[R_COUNT] = {
	{ "devices", "last_seen_at", "device_id", "*" },
	{ "gxp_report_captures", "created_at", "capture_id", "*" },
	{ "sensor_readings", "created_at", "id",
	    "id,device_id,capture_id,temperature_c,humidity_pct,pressure_hpa,gas_kohm,created_at" },
	{ "device_status", "created_at", "id", "id,device_id,status,pending_count,created_at" },
	{ "device_errors", "occurred_at", "id",
	    "id,device_id,capture_id,error_code,severity,message,occurred_at" },
};

/* The key as gxp-upload sends it (store_supabase.c): in apikey, and as
 * the bearer token when it is a legacy JWT key. */
static struct curl_slist *
request_headers(const struct ssrc *s, const char *content_type)
{
	return supabase_headers(&s->k, content_type);
}

static char *
describe(const struct ssrc *s, const struct http_res *r)
{
	struct gxp_buf b = { 0 };

	if (r->curl_code)
		gxp_buf_adds(&b, r->err);
	else
		supabase_describe(s->key, &b, r);
	return b.p ? b.p : xstrdup("");
}

struct call {
	struct ssrc *s;
	int done, rc;
	long status;
	char *msg;
	cJSON *json;
	fetch_fn *fn;		/* a photo's fetch */
	void *arg;
};

/* EXIT_OK, EXIT_PERM (the key, a missing view or table, a request the
 * server refuses) or EXIT_TEMP (the network, the server's trouble). */
static int
outcome(const struct http_res *r)
{
	if (r->curl_code || r->gave_up)
		return EXIT_TEMP;
	if (r->status >= 200 && r->status < 300)
		return EXIT_OK;
	return r->status >= 500 || r->status == 408 || r->status == 429 ? EXIT_TEMP :
	    EXIT_PERM;
}

static void
call_done(void *arg, const struct http_res *r)
{
	struct call *c = arg;

	c->done = 1;
	if (r->cancelled)
		return;
	c->status = r->status;
	if ((c->rc = outcome(r)) != EXIT_OK)
		c->msg = describe(c->s, r);
	else if ((c->json = gxp_json_parse(r->body, r->len)) == NULL) {
		c->rc = EXIT_TEMP;
		c->msg = xstrdup("the answer is not JSON");
	}
}

/* One request, waited for; its JSON answer in c->json. */
static int
call(struct ssrc *s, struct call *c, const char *method, const char *url, char *body)
{
	memset(c, 0, sizeof *c);
	c->s = s;
	s->base.requests++;
	http_send(s->http, method, url, request_headers(s, body ? "application/json" : NULL),
	    body, body ? strlen(body) : 0, 0, call_done, c);
	while (!c->done && !gxp_sig_term)
		http_wait(s->http, 200, -1, NULL);
	if (!c->done) {
		c->rc = EXIT_TEMP;
		c->msg = xstrdup("stopped by a signal");
	}
	return c->rc;
}

static void
call_free(struct call *c)
{
	free(c->msg);
	cJSON_Delete(c->json);
}

static int
failed(struct call *c, const char *what)
{
	int rc = c->rc;

	gxp_log(LOG_ERROR, "Supabase: reading %s: %s%s%s%s", what, c->msg, c->status == 401 ||
	    c->status == 403 ? "; check " : "", c->status == 401 || c->status == 403 ?
	    c->s->k.setting : "", c->status == 401 || c->status == 403 ? " and the RLS policies" :
	    c->status == 404 && strncmp(what, "gxp_report_", 11) == 0 ?
	    "; run sql/report.sql in the project" : "");
	call_free(c);
	return rc;
}

typedef int row_fn(struct fleet *, const cJSON *);

static int
table_row(struct fleet *f, int t, const cJSON *row)
{
	return model_row(f, t, row);
}

/* GET rest/<what>?<query>&limit&offset page by page until an empty one;
 * each row to fn (or to model_row for table t when fn is NULL). */
static int
list(struct ssrc *s, struct fleet *f, int t, const char *what, const char *query,
    row_fn *fn)
{
	struct call c;
	long long offset = 0;
	int n;

	do {
		char *url = xasprintf("%s/%s?%s&limit=%lld&offset=%lld", s->rest, what, query,
		    s->page_rows, offset);
		const cJSON *row;

		call(s, &c, "GET", url, NULL);
		free(url);
		if (c.rc != EXIT_OK)
			return failed(&c, what);
		n = cJSON_GetArraySize(c.json);
		cJSON_ArrayForEach(row, c.json)
			if ((fn ? fn(f, row) : table_row(f, t, row)) == -1)
				gxp_log(LOG_DEBUG, "Supabase: %s: a row without what it needs", what);
		offset += n;
		call_free(&c);
	} while (n > 0);
	return EXIT_OK;
}

/* The view, page by page on device_id (keyset: the lateral lookups of a
 * page are made for that page's devices only). */
static int
read_devices(struct ssrc *s, struct fleet *f)
{
	struct call c;
	char *after = NULL;
	int n;

	do {
		struct gxp_buf u = { 0 };
		const cJSON *row;

		gxp_buf_addf(&u, "%s/gxp_report_devices?select=*&order=device_id.asc&limit=%lld",
		    s->rest, s->page_rows);
		if (after)
			gxp_buf_addf(&u, "&device_id=gt.%s", after);
		call(s, &c, "GET", u.p, NULL);
		gxp_buf_free(&u);
		if (c.rc != EXIT_OK) {
			free(after);
			return failed(&c, "gxp_report_devices");
		}
		n = cJSON_GetArraySize(c.json);
		cJSON_ArrayForEach(row, c.json) {
			const char *id = gxp_json_str(row, "device_id");

			model_view_row(f, row);
			if (id && strspn(id, "0123456789abcdefABCDEF-") == strlen(id)) {
				free(after);
				after = xstrdup(id);
			}
		}
		call_free(&c);
	} while (n > 0 && after);
	free(after);
	return EXIT_OK;
}

/* Rows of table t whose time is at or after since. */
static int
read_since(struct ssrc *s, struct fleet *f, int t, int64_t since)
{
	char when[32], *q;
	int rc;

	gxp_fmt_utc(when, since > 0 ? since : 0);
	q = xasprintf("select=%s&%s=gte.%s&order=%s.asc,%s.asc", tables[t].select,
	    tables[t].time, when, tables[t].time, tables[t].id);
	rc = list(s, f, t, tables[t].what, q, NULL);
	free(q);
	return rc;
}

/* Rows of table t whose id column is one of ids, ID_BATCH at a time. */
static int
read_ids(struct ssrc *s, struct fleet *f, int t, char **ids, size_t n)
{
	for (size_t i = 0; i < n; i += ID_BATCH) {
		struct gxp_buf q = { 0 };
		int rc;

		gxp_buf_addf(&q, "select=%s&%s=in.(", tables[t].select, tables[t].id);
		for (size_t k = i; k < n && k < i + ID_BATCH; k++)
			gxp_buf_addf(&q, "%s%s", k > i ? "," : "", ids[k]);
		gxp_buf_addf(&q, ")&order=%s.asc", tables[t].id);
		rc = list(s, f, t, tables[t].what, q.p, NULL);
		gxp_buf_free(&q);
		if (rc != EXIT_OK)
			return rc;
	}
	return EXIT_OK;
}

static int
uuid_like(const char *s)
{
	return strlen(s) == 36 && strspn(s, "0123456789abcdefABCDEF-") == 36;
}

struct ids {
	char **v;
	size_t n;
	int64_t since;
};

static void
add_id(struct ids *ids, const char *id)
{
	if (!uuid_like(id))
		return;
	ids->v = xrealloc(ids->v, (ids->n + 1) * sizeof *ids->v);
	ids->v[ids->n++] = xstrdup(id);
}

static void
ids_free(struct ids *ids)
{
	for (size_t i = 0; i < ids->n; i++)
		free(ids->v[i]);
	free(ids->v);
	memset(ids, 0, sizeof *ids);
}

static void
open_capture(const char *key, void *val, void *arg)
{
	const struct rdev *d = val;
	struct ids *ids = arg;

	(void)key;
	for (size_t i = 0; i < d->ncaps; i++)
		if (d->caps[i].status != CAP_STORED && d->caps[i].t >= ids->since)
			add_id(ids, d->caps[i].id);
}

static void
unknown_device(const char *key, void *val, void *arg)
{
	const struct rdev *d = val;

	(void)key;
	if (d->hw == NULL)
		add_id(arg, d->uuid);
}

/* What times cannot show: captures of the last 24 h whose outcome was
 * still open (or failed: a resent photo can still be stored), and the
 * devices other rows name that are not known yet. */
static int
read_open(struct ssrc *s, struct fleet *f)
{
	struct ids ids = { 0 };
	int rc;

	ids.since = f->now - DAY_US;
	map_each(f->by_uuid, open_capture, &ids);
	rc = read_ids(s, f, R_CAPTURES, ids.v, ids.n);
	ids_free(&ids);
	if (rc == EXIT_OK) {
		map_each(f->by_uuid, unknown_device, &ids);
		rc = read_ids(s, f, R_DEVICES, ids.v, ids.n);
		ids_free(&ids);
	}
	return rc;
}

static int
supa_read(struct source *src, struct fleet *f, int full)
{
	struct ssrc *s = (struct ssrc *)src;
	int64_t recent = f->now - f->recent_us;
	int rc = EXIT_OK;

	s->now = f->now;
	if (full) {
		fleet_clear(f);
		memset(s->wm, 0, sizeof s->wm);
		if ((rc = read_devices(s, f)) == EXIT_OK &&
		    (rc = read_since(s, f, R_CAPTURES, recent)) == EXIT_OK)
			rc = read_since(s, f, R_ERRORS, recent);
	} else {
		for (int t = 0; t < R_COUNT && rc == EXIT_OK; t++) {
			int64_t since = s->wm[t] ? s->wm[t] - s->overlap_us : 0;

			if ((t == R_CAPTURES || t == R_ERRORS) && since < recent)
				since = recent;
			rc = read_since(s, f, t, since);
		}
	}
	if (rc == EXIT_OK && !full)	/* a full read is fresh already */
		rc = read_open(s, f);
	for (int t = 0; t < R_COUNT; t++)
		if (f->max_t[t] > s->wm[t])
			s->wm[t] = f->max_t[t];
	return rc;
}

static void
fetched(void *arg, const struct http_res *r)
{
	struct call *c = arg;
	char *why = NULL;
	int rc;

	if (r->cancelled) {
		free(c);
		return;
	}
	rc = outcome(r);
	if (rc == EXIT_OK && r->len > (size_t)c->s->max_image)
		why = xstrdup("larger than MAX_IMAGE_BYTES");
	else if (rc != EXIT_OK)
		why = describe(c->s, r);
	if (r->curl_code == CURLE_WRITE_ERROR)
		c->fn(c->arg, ST_PERM, NULL, 0, "larger than the 16 MiB a response may have");
	else if (why)
		c->fn(c->arg, rc == EXIT_TEMP || r->status == 401 || r->status == 403 ?
		    ST_GAVEUP : ST_PERM, NULL, 0, why);
	else
		c->fn(c->arg, ST_OK, r->body, r->len, NULL);
	free(why);
	free(c);
}

static void
supa_fetch(struct source *src, const char *path, fetch_fn *fn, void *arg)
{
	struct ssrc *s = (struct ssrc *)src;
	struct call *c = xcalloc(1, sizeof *c);
	char *url = xasprintf("%s/object/authenticated/%s/%s", s->storage, s->bucket, path);

	c->s = s;
	c->fn = fn;
	c->arg = arg;
	src->downloads++;
	src->requests++;
	http_send(s->http, "GET", url, request_headers(s, NULL), NULL, 0, 0, fetched, c);
	free(url);
}

static void
supa_wait(struct source *src, int timeout_ms)
{
	http_wait(((struct ssrc *)src)->http, timeout_ms, -1, NULL);
}

struct signing {
	struct ssrc *s;
	struct map *old, *now;		/* storage_path -> struct signed_url */
	struct map *asked;		/* storage_path -> the path, to be signed */
	char **todo;
	size_t ntodo;
	int64_t t;
};

static void
want_url(struct signing *g, struct rcap *c)
{
	struct signed_url *u;

	if (c->status != CAP_STORED || c->path == NULL || !storage_path_safe(c->path) ||
	    map_get(g->now, c->path) || map_get(g->asked, c->path))
		return;
	u = map_del(g->old, c->path);
	if (u && u->exp - g->t > g->s->signed_s * 1000000 / 2) {
		map_put(g->now, c->path, u);
		return;
	}
	signed_url_free(u);
	map_put(g->asked, c->path, c->path);
	g->todo = xrealloc(g->todo, (g->ntodo + 1) * sizeof *g->todo);
	g->todo[g->ntodo++] = c->path;
}

/* POST /object/sign/<bucket> {"expiresIn":S,"paths":[...]}: the answer is
 * [{"error":null,"path":P,"signedURL":"/object/sign/...?token=..."}]. */
static int
sign_batch(struct signing *g, size_t from, size_t to)
{
	cJSON *body = cJSON_CreateObject(), *paths = cJSON_AddArrayToObject(body, "paths");
	char *url = xasprintf("%s/object/sign/%s", g->s->storage, g->s->bucket);
	const cJSON *e;
	struct call c;

	cJSON_AddNumberToObject(body, "expiresIn", (double)g->s->signed_s);
	for (size_t i = from; i < to; i++)
		cJSON_AddItemToArray(paths, cJSON_CreateString(g->todo[i]));
	call(g->s, &c, "POST", url, gxp_json_print(body));
	cJSON_Delete(body);
	free(url);
	if (c.rc != EXIT_OK) {
		gxp_log(LOG_WARN, "Supabase: signing URLs for the full photos: %s; the pages "
		    "link them after the next run", c.msg);
		call_free(&c);
		return -1;
	}
	cJSON_ArrayForEach(e, c.json) {
		const char *p = gxp_json_str(e, "path"), *u = gxp_json_str(e, "signedURL");
		struct signed_url *su;

		if (p == NULL || u == NULL || u[0] != '/' || map_get(g->asked, p) == NULL ||
		    map_get(g->now, p))
			continue;
		su = xcalloc(1, sizeof *su);
		su->url = xasprintf("%s%s", g->s->storage, u);
		su->exp = g->t + g->s->signed_s * 1000000;
		map_put(g->now, p, su);
		g->s->base.signed_urls++;
	}
	call_free(&c);
	return 0;
}

static void
set_href(struct signing *g, struct rcap *c)
{
	struct signed_url *u = c->path ? map_get(g->now, c->path) : NULL;

	c->href = u ? u->url : c->url && (strncmp(c->url, "https://", 8) == 0 ||
	    strncmp(c->url, "http://", 7) == 0) ? c->url : NULL;
}

/* A signed URL for each photo shown, made again when less than half its
 * lifetime is left; with REPORT_SIGNED_URL_S=0 none, and the row's
 * image_url (if any) is the link. */
static int
supa_links(struct source *src, struct fleet *f, const char *outdir, struct state_extra *x)
{
	struct signing g = { (struct ssrc *)src, x->signed_urls, map_new(), map_new(),
		NULL, 0, f->now };
	int rc = 0;

	(void)outdir;
	for (size_t i = 0; g.s->signed_s > 0 && i < f->ndevs; i++) {
		struct rdev *d = f->devs[i];

		if (d->has_photo)
			want_url(&g, &d->photo);
		for (size_t k = 0; k < d->ncaps && k < (size_t)f->recent_photos; k++)
			want_url(&g, &d->caps[k]);
	}
	for (size_t i = 0; i < g.ntodo && rc == 0; i += SIGN_BATCH)
		rc = sign_batch(&g, i, i + SIGN_BATCH < g.ntodo ? i + SIGN_BATCH : g.ntodo);
	for (size_t i = 0; i < f->ndevs; i++) {
		set_href(&g, &f->devs[i]->photo);
		for (size_t k = 0; k < f->devs[i]->ncaps; k++)
			set_href(&g, &f->devs[i]->caps[k]);
	}
	free(g.todo);
	map_free(g.asked, NULL);
	map_free(g.old, signed_url_free);
	x->signed_urls = g.now;
	return rc;
}

static cJSON *
supa_cursors(struct source *src)
{
	struct ssrc *s = (struct ssrc *)src;
	cJSON *o = cJSON_CreateObject();
	char when[32];

	for (int t = 0; t < R_COUNT; t++) {
		if (s->wm[t] == 0) {
			cJSON_AddNullToObject(o, r_table_names[t]);
			continue;
		}
		gxp_fmt_utc(when, s->wm[t]);
		cJSON_AddStringToObject(o, r_table_names[t], when);
	}
	return o;
}

static void
supa_set_cursors(struct source *src, const cJSON *o)
{
	struct ssrc *s = (struct ssrc *)src;

	for (int t = 0; t < R_COUNT; t++) {
		const char *v = gxp_json_str(o, r_table_names[t]);

		if (v == NULL || gxp_parse_time(v, &s->wm[t]) == -1)
			s->wm[t] = 0;
	}
}

/* --check: the key, the two views of sql/report.sql and the bucket. */
static int
supa_check(struct source *src)
{
	struct ssrc *s = (struct ssrc *)src;
	static const char *const what[] = { "gxp_report_devices", "gxp_report_captures",
		"bucket" };
	int worst = EXIT_OK;

	http_attempts(s->http, 1);
	printf("gxp-report: key: %s, from %s\n", gxp_apikey_kind(&s->k), s->k.setting);
	for (int i = 0; i < 3; i++) {
		char *url = i < 2 ? xasprintf("%s/%s?select=*&limit=1", s->rest, what[i]) :
		    xasprintf("%s/bucket/%s", s->storage, s->bucket);
		struct call c;

		call(s, &c, "GET", url, NULL);
		free(url);
		if (c.rc == EXIT_OK)
			printf("gxp-report: ok: %s %s readable with the key\n", i < 2 ? "view" :
			    "bucket", i < 2 ? what[i] : s->bucket);
		else
			gxp_check_fail("%s %s: %s%s", i < 2 ? "view" : "bucket",
			    i < 2 ? what[i] : s->bucket, c.msg, i < 2 && c.status == 404 ?
			    "; run sql/report.sql" : "");
		if (c.rc == EXIT_PERM || (c.rc && worst == EXIT_OK))
			worst = c.rc;
		call_free(&c);
	}
	return worst;
}

static void
supa_free(struct source *src)
{
	struct ssrc *s = (struct ssrc *)src;

	http_free(s->http);
	free(s->storage);
	free(s->rest);
	free(s->key);
	free(s->bucket);
	free(src->id);
	free(src->label);
	free(s);
}

struct source *
src_supa_open(const char *bucket)
{
	struct ssrc *s = xcalloc(1, sizeof *s);
	const char *url = gxp_cfg("SUPABASE_URL");

	supabase_key(&s->k);
	s->base.kind = "supabase";
	s->base.read = supa_read;
	s->base.fetch = supa_fetch;
	s->base.wait = supa_wait;
	s->base.links = supa_links;
	s->base.cursors = supa_cursors;
	s->base.set_cursors = supa_set_cursors;
	s->base.check = supa_check;
	s->base.free = supa_free;
	s->base.refresh_us = gxp_cfg_int("REPORT_REFRESH_S") * 1000000LL;
	s->storage = supabase_base_url(gxp_cfg("SUPABASE_STORAGE_URL"), url, "/storage/v1");
	s->rest = supabase_base_url(gxp_cfg("SUPABASE_REST_URL"), url, "/rest/v1");
	s->base.id = xasprintf("Supabase %s, storage %s, bucket %s", s->rest, s->storage,
	    bucket);
	s->base.label = xasprintf("Supabase %s, bucket %s", url, bucket);
	s->key = xstrdup(s->k.value);
	s->bucket = xstrdup(bucket);
	s->overlap_us = gxp_cfg_int("REPORT_OVERLAP_S") * 1000000LL;
	s->page_rows = gxp_cfg_int("REPORT_PAGE_ROWS");
	s->signed_s = gxp_cfg_int("REPORT_SIGNED_URL_S");
	s->max_image = gxp_cfg_int("MAX_IMAGE_BYTES");
	s->http = supabase_http((int)gxp_cfg_int("REPORT_CONCURRENCY"));
	http_attempts(s->http, (int)gxp_cfg_int("UPLOAD_ONCE_ATTEMPTS"));
	return &s->base;
}
