/* store_supabase.c: objects through the Storage API, rows through PostgREST,
 * with the service-role key as apikey and bearer token.  The key goes into
 * request headers only; every message from a server is scrubbed of it
 * before anyone logs it. */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "store.h"

struct supa {
	struct store base;
	struct http *http;
	char *storage, *rest, *key;
};

struct op {
	struct supa *s;
	int object;
	char *what;	/* the bucket or the table, for messages */
	st_done_fn *fn;
	void *arg;
};

static char *
base_url(const char *override, const char *url, const char *suffix)
{
	char *u = override ? xstrdup(override) : xasprintf("%s%s", url, suffix);
	size_t n = strlen(u);

	while (n > 0 && u[n - 1] == '/')
		u[--n] = '\0';
	if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)
		gxp_die(EXIT_PERM, "%s: expected an http:// or https:// URL", u);
	return u;
}

/* Replaces each copy of the key in s with "***". */
static void
redact(const struct supa *s, struct gxp_buf *b)
{
	size_t klen = strlen(s->key);
	char *p;

	if (klen < 4 || b->p == NULL)
		return;
	while ((p = strstr(b->p, s->key)) != NULL) {
		memcpy(p, "***", 3);
		memmove(p + 3, p + klen, strlen(p + klen) + 1);
		b->len -= klen - 3;
	}
}

static void
add_member(struct gxp_buf *b, const cJSON *j, const char *key, const char *pre,
    const char *post)
{
	const char *v = gxp_json_str(j, key);

	if (v && *v)
		gxp_buf_addf(b, "%s%s%s", pre, v, post);
}

/* "HTTP 400 (statusCode 409, Duplicate): The resource already exists" or
 * "HTTP 409 (23505): duplicate key value ... (Key ...)", at most 400 bytes. */
static void
describe(struct gxp_buf *b, const struct http_res *r)
{
	cJSON *j = r->len ? gxp_json_parse(r->body, r->len) : NULL;

	gxp_buf_addf(b, "HTTP %ld", r->http_status);
	if (r->status != r->http_status)
		gxp_buf_addf(b, " (statusCode %d)", r->status);
	if (j && cJSON_IsObject(j)) {
		add_member(b, j, "code", " (", ")");
		add_member(b, j, "error", " ", "");
		add_member(b, j, "message", ": ", "");
		add_member(b, j, "details", " (", ")");
		add_member(b, j, "hint", " hint: ", "");
	} else if (r->len) {
		gxp_buf_adds(b, ": ");
		gxp_buf_add(b, r->body, r->len < 200 ? r->len : 200);
	}
	cJSON_Delete(j);
	if (b->len > 400) {
		b->len = 400;
		b->p[400] = '\0';
	}
	for (char *p = b->p; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}

static int
classify(const struct http_res *r)
{
	if (r->curl_code)
		return r->gave_up ? ST_GAVEUP : r->curl_code == CURLE_WRITE_ERROR ?
		    ST_PERM : ST_FATAL;
	if (r->status >= 200 && r->status < 300)
		return ST_OK;
	if (r->gave_up)
		return ST_GAVEUP;
	/* a bad key, a missing bucket, table or policy: no photo is at fault */
	if (r->status == 401 || r->status == 403 || r->status == 404)
		return ST_FATAL;
	return ST_PERM;
}

static void
done(void *arg, const struct http_res *r)
{
	struct op *o = arg;
	struct st_result res = { 0 };
	struct gxp_buf msg = { 0 };

	if (r->cancelled)
		goto out;
	res.rc = classify(r);
	res.status = r->status;
	res.body = r->body;
	res.len = r->len;
	if (r->curl_code)
		gxp_buf_addf(&msg, "%s", r->err);
	else if (res.rc != ST_OK)
		describe(&msg, r);
	if (res.rc == ST_FATAL && (r->status == 401 || r->status == 403))
		gxp_buf_adds(&msg, "; check SUPABASE_SERVICE_ROLE and the RLS policies");
	else if (res.rc == ST_FATAL && r->status == 404)
		gxp_buf_addf(&msg, "; check that %s %s exists", o->object ? "bucket" :
		    "table", o->what);
	redact(o->s, &msg);
	res.msg = msg.p ? msg.p : "";
	o->fn(o->arg, &res);
	gxp_buf_free(&msg);
out:
	free(o->what);
	free(o);
}

static struct curl_slist *
auth_headers(const struct supa *s, const char *content_type)
{
	struct curl_slist *h = NULL;
	char *v;

	v = xasprintf("apikey: %s", s->key);
	h = curl_slist_append(h, v);
	free(v);
	v = xasprintf("Authorization: Bearer %s", s->key);
	h = curl_slist_append(h, v);
	free(v);
	v = xasprintf("Content-Type: %s", content_type);
	h = curl_slist_append(h, v);
	free(v);
	return h;
}

static struct op *
op_new(struct supa *s, int object, const char *what, st_done_fn *fn, void *arg)
{
	struct op *o = xcalloc(1, sizeof *o);

	o->s = s;
	o->object = object;
	o->what = xstrdup(what);
	o->fn = fn;
	o->arg = arg;
	return o;
}

static void
supa_put(struct store *st, const char *path, const char *src, char *data,
    size_t len, st_done_fn *fn, void *arg)
{
	struct supa *s = (struct supa *)st;
	struct curl_slist *h = auth_headers(s, "image/jpeg");
	char *url = xasprintf("%s/object/%s/%s", s->storage, st->bucket, path);

	(void)src;
	h = curl_slist_append(h, "x-upsert: true");
	h = curl_slist_append(h, "Cache-Control: max-age=3600");
	http_send(s->http, "POST", url, h, data, len, done, op_new(s, 1, st->bucket, fn, arg));
	free(url);
}

static void
supa_rows(struct store *st, const char *table, const char *query, int want_rows,
    char *json, size_t len, st_done_fn *fn, void *arg)
{
	struct supa *s = (struct supa *)st;
	struct curl_slist *h = auth_headers(s, "application/json");
	char *url = xasprintf("%s/%s%s%s", s->rest, table, query ? "?" : "",
	    query ? query : "");
	char *prefer = xasprintf("Prefer: return=%s%s", want_rows ? "representation" :
	    "minimal", query && strstr(query, "on_conflict=") ?
	    ",resolution=merge-duplicates" : "");

	h = curl_slist_append(h, prefer);
	http_send(s->http, "POST", url, h, json, len, done, op_new(s, 0, table, fn, arg));
	free(prefer);
	free(url);
}

static int
supa_wait(struct store *st, int timeout_ms, int fd, short *revents)
{
	return http_wait(((struct supa *)st)->http, timeout_ms, fd, revents);
}

static int
supa_busy(const struct store *st)
{
	struct http_stats hs;

	http_stats(((const struct supa *)st)->http, &hs);
	return hs.active + hs.waiting;
}

static void
supa_attempts(struct store *st, int max)
{
	http_attempts(((struct supa *)st)->http, max);
}

static long long
supa_mark(struct store *st, const char *table)
{
	(void)st, (void)table;
	return -1;
}

static int
supa_seen(struct store *st, const char *table, long long mark, const char *const *n)
{
	(void)st, (void)table, (void)mark, (void)n;
	return 0;	/* upserts make repeating harmless */
}

static void
supa_stats(const struct store *st, struct http_stats *hs)
{
	http_stats(((const struct supa *)st)->http, hs);
}

static void
supa_free(struct store *st)
{
	struct supa *s = (struct supa *)st;

	http_free(s->http);
	free(s->storage);
	free(s->rest);
	free(s->base.url_base);
	free(s->key);
	free(s);
}

struct probe {
	struct supa *s;
	const char *what;
	int done, rc;
	struct gxp_buf msg;
};

static void
probe_done(void *arg, const struct http_res *r)
{
	struct probe *p = arg;

	p->done = 1;
	if (r->cancelled)
		return;
	if (r->curl_code) {
		gxp_buf_addf(&p->msg, "%s", r->err);
		p->rc = EXIT_TEMP;
	} else if (r->status < 200 || r->status >= 300) {
		describe(&p->msg, r);
		p->rc = r->status == 401 || r->status == 403 || r->status == 404 ?
		    EXIT_PERM : EXIT_TEMP;
	}
	redact(p->s, &p->msg);
}

/* --check: the key, the bucket and each table, one request each, once. */
static int
supa_check(struct store *st)
{
	struct supa *s = (struct supa *)st;
	struct probe p[1 + T_COUNT];
	int worst = EXIT_OK, pending;

	http_attempts(s->http, 1);
	memset(p, 0, sizeof p);
	for (int i = 0; i <= T_COUNT; i++) {
		char *url = i == 0 ? xasprintf("%s/bucket/%s", s->storage, st->bucket) :
		    xasprintf("%s/%s?select=*&limit=0", s->rest, rows_table_names[i - 1]);

		p[i].s = s;
		p[i].what = i == 0 ? st->bucket : rows_table_names[i - 1];
		http_send(s->http, "GET", url, auth_headers(s, "application/json"), NULL,
		    0, probe_done, &p[i]);
		free(url);
	}
	do {
		http_wait(s->http, 200, -1, NULL);
		pending = 0;
		for (int i = 0; i <= T_COUNT; i++)
			pending += !p[i].done;
	} while (pending > 0 && !gxp_sig_term);
	for (int i = 0; i <= T_COUNT; i++) {
		if (p[i].rc == EXIT_OK)
			printf("gxp-upload: ok: %s %s readable with the service key\n",
			    i == 0 ? "bucket" : "table", p[i].what);
		else
			printf("gxp-upload: FAIL: %s %s: %s\n", i == 0 ? "bucket" : "table",
			    p[i].what, p[i].msg.p ? p[i].msg.p : "no answer");
		if (p[i].rc == EXIT_PERM || (p[i].rc && worst == EXIT_OK))
			worst = p[i].rc;
		gxp_buf_free(&p[i].msg);
	}
	return worst;
}

static const struct store_ops supa_ops = {
	supa_put, supa_rows, supa_wait, supa_busy, supa_attempts, supa_mark,
	supa_seen, supa_stats, supa_free, supa_check
};

struct store *
store_supabase_open(const char *bucket)
{
	struct supa *s = xcalloc(1, sizeof *s);
	const char *url = gxp_cfg("SUPABASE_URL"), *key = gxp_cfg("SUPABASE_SERVICE_ROLE");
	struct http_opts o = { 0 };

	if (key == NULL)
		gxp_die(EXIT_PERM, "SUPABASE_URL is set but SUPABASE_SERVICE_ROLE is not");
	if (strpbrk(key, "\r\n"))
		gxp_die(EXIT_PERM, "SUPABASE_SERVICE_ROLE contains a line break");
	s->base.ops = &supa_ops;
	s->base.kind = "supabase";
	s->base.bucket = bucket;
	s->storage = base_url(gxp_cfg("SUPABASE_STORAGE_URL"), url, "/storage/v1");
	s->rest = base_url(gxp_cfg("SUPABASE_REST_URL"), url, "/rest/v1");
	s->base.url_base = xasprintf("%s/object", s->storage);
	s->key = xstrdup(key);
	o.cafile = gxp_cfg("SUPABASE_CAFILE");
	o.timeout_ms = gxp_cfg_int("UPLOAD_TIMEOUT_MS");
	o.retry_base_ms = gxp_cfg_int("UPLOAD_RETRY_BASE_MS");
	o.retry_max_ms = gxp_cfg_int("UPLOAD_RETRY_MAX_MS");
	if (o.retry_base_ms > o.retry_max_ms)
		o.retry_base_ms = o.retry_max_ms;
	/* the uploads, plus one request per table for the rows */
	o.max_conns = (int)gxp_cfg_int("UPLOAD_CONCURRENCY") + T_COUNT;
	s->http = http_new(&o);
	gxp_log(LOG_INFO, "Supabase: %s", url);
	gxp_log(LOG_INFO, "Storage Bucket: %s", bucket);
	return &s->base;
}
