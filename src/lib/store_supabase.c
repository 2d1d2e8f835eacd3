/* store_supabase.c: objects through the Storage API, rows through PostgREST,
 * with the secret key as apikey (and as the bearer token too when it is a
 * legacy JWT key).  The key goes into request headers only; every message
 * from a server is scrubbed of it before it is cut short, and before anyone
 * logs it.  An error that says the schema is not what gxp writes (a table,
 * a column or a unique key missing, or not yet in PostgREST's schema
 * cache) is a setup error, not a bad row: it stops gxp-upload. */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "store.h"

#define MSG_MAX 400		/* bytes of a server's message kept */
#define KEY_PREFIX_MIN 12	/* a run of the key's first bytes this long is masked */

struct supa {
	struct store base;
	struct http *http;
	char *storage, *rest, *key;
	struct gxp_apikey k;
};

struct op {
	struct supa *s;
	int object;
	char *what;	/* the bucket or the table, for messages */
	char *conflict;	/* on_conflict=, for messages */
	st_done_fn *fn;
	void *arg;
};

/* An API's base URL: override, or url and suffix; no trailing slash. */
char *
supabase_base_url(const char *override, const char *url, const char *suffix)
{
	char *u = override ? xstrdup(override) : xasprintf("%s%s", url, suffix);
	size_t n = strlen(u);

	while (n > 0 && u[n - 1] == '/')
		u[--n] = '\0';
	if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)
		gxp_die(EXIT_PERM, "%s: expected an http:// or https:// URL", u);
	return u;
}

/* Replaces with "***" each copy of the key in b, and each run of its
 * first KEY_PREFIX_MIN bytes or more: a server may have cut the key short
 * itself.  Runs before the message is cut, so that no cut can leave a
 * piece of the key behind. */
static void
scrub(const char *key, struct gxp_buf *b)
{
	size_t klen = strlen(key), min = klen < KEY_PREFIX_MIN ? klen : KEY_PREFIX_MIN;
	char head[KEY_PREFIX_MIN + 1], *p = b->p;

	if (klen < 4 || b->p == NULL)
		return;
	memcpy(head, key, min);
	head[min] = '\0';
	while ((p = strstr(p, head)) != NULL) {
		size_t n = min;

		while (n < klen && p[n] == key[n])
			n++;
		memcpy(p, "***", 3);
		memmove(p + 3, p + n, strlen(p + n) + 1);
		b->len -= n - 3;
		p += 3;
	}
}

/* Cuts b to at most max bytes, not inside a UTF-8 sequence. */
static void
cut(struct gxp_buf *b, size_t max)
{
	size_t n = max;

	if (b->len <= max)
		return;
	while (n > 0 && ((unsigned char)b->p[n] & 0xC0) == 0x80)
		n--;
	b->len = n;
	b->p[n] = '\0';
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
 * "HTTP 409 (23505): duplicate key value ... (Key ...)": scrubbed of the
 * key, then cut to MSG_MAX bytes. */
void
supabase_describe(const char *key, struct gxp_buf *b, const struct http_res *r)
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
		gxp_buf_add(b, r->body, r->len);
	}
	cJSON_Delete(j);
	/* NULs too: nothing may hide the rest of the text from scrub() */
	for (size_t i = 0; i < b->len; i++)
		if ((unsigned char)b->p[i] < 0x20)
			b->p[i] = ' ';
	scrub(key, b);
	cut(b, MSG_MAX);
}

/* The PostgREST error code of a response ("PGRST204", "42703"), or "". */
static void
body_code(const struct http_res *r, char out[16])
{
	cJSON *j = r->len ? gxp_json_parse(r->body, r->len) : NULL;
	const char *c = gxp_json_str(j, "code");

	snprintf(out, 16, "%s", c ? c : "");
	cJSON_Delete(j);
}

/* The schema is not what gxp writes: a table, a column or the unique key
 * of an upsert missing in the database or in PostgREST's schema cache. */
static int
setup_error(const struct op *o, int status, const char *code)
{
	static const char *const codes[] = {
		"PGRST204", "PGRST205", "42703", "42P10", "42P01",
		"55000"	/* a deferrable unique key as ON CONFLICT's arbiter */
	};

	if (o->object)
		return 0;
	if (status == 404)
		return 1;
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
		if (strcmp(code, codes[i]) == 0)
			return 1;
	return 0;
}

static int
classify(const struct op *o, const struct http_res *r, const char *code)
{
	if (r->curl_code)
		return r->gave_up ? ST_GAVEUP : r->curl_code == CURLE_WRITE_ERROR ?
		    ST_PERM : ST_FATAL;
	if (r->status >= 200 && r->status < 300)
		return ST_OK;
	if (r->gave_up)
		return ST_GAVEUP;
	/* only a batch is sent so that a statement timeout comes back */
	if (r->status == 500 && strcmp(code, "57014") == 0)
		return ST_SPLIT;
	/* a bad key, a missing bucket, table or policy: no photo is at fault */
	if (r->status == 401 || r->status == 403 || r->status == 404 ||
	    setup_error(o, r->status, code))
		return ST_FATAL;
	return ST_PERM;
}

/* What to do about a failure that is not the data's fault. */
static void
advise(const struct op *o, struct gxp_buf *msg, int status, const char *code)
{
	const struct supa *s = o->s;

	if (status == 401 || status == 403)
		gxp_buf_addf(msg, "; check %s (%s) and the RLS policies", s->k.setting,
		    gxp_apikey_kind(&s->k));
	else if (o->object && status == 404)
		gxp_buf_addf(msg, "; check that bucket %s exists (sql/rls.sql makes "
		    "it)", o->what);
	else if (strcmp(code, "42P10") == 0)
		gxp_buf_addf(msg, "; table %s has no unique key on (%s) for the upsert: "
		    "run sql/schema.sql", o->what, o->conflict ? o->conflict : "?");
	else if (strcmp(code, "55000") == 0)
		gxp_buf_addf(msg, "; the unique key of table %s on (%s) cannot serve the "
		    "upsert: run sql/schema.sql, which says how to mend it", o->what,
		    o->conflict ? o->conflict : "?");
	else
		gxp_buf_addf(msg, "; table %s or a column gxp writes is missing, or "
		    "PostgREST's schema cache does not know it yet: run sql/schema.sql, "
		    "then reload the cache (NOTIFY pgrst, 'reload schema')", o->what);
}

static void
done(void *arg, const struct http_res *r)
{
	struct op *o = arg;
	struct st_result res = { 0 };
	struct gxp_buf msg = { 0 };
	char code[16];

	if (r->cancelled)
		goto out;
	body_code(r, code);
	res.rc = classify(o, r, code);
	res.status = r->status;
	res.body = r->body;
	res.len = r->len;
	if (r->curl_code)
		gxp_buf_addf(&msg, "%s", r->err);
	else if (res.rc != ST_OK)
		supabase_describe(o->s->key, &msg, r);
	if (res.rc == ST_FATAL && !r->curl_code)
		advise(o, &msg, r->status, code);
	res.msg = msg.p ? msg.p : "";
	o->fn(o->arg, &res);
	gxp_buf_free(&msg);
out:
	free(o->what);
	free(o->conflict);
	free(o);
}

/* The headers of a request with key k: apikey, the bearer token too when
 * the key is a JWT (apikey.c), and Content-Type when one is given. */
struct curl_slist *
supabase_headers(const struct gxp_apikey *k, const char *content_type)
{
	struct curl_slist *h = NULL;
	char *v;

	v = xasprintf("apikey: %s", k->value);
	h = curl_slist_append(h, v);
	free(v);
	if (gxp_apikey_bearer(k)) {
		v = xasprintf("Authorization: Bearer %s", k->value);
		h = curl_slist_append(h, v);
		free(v);
	}
	if (content_type) {
		v = xasprintf("Content-Type: %s", content_type);
		h = curl_slist_append(h, v);
		free(v);
	}
	return h;
}

static struct curl_slist *
auth_headers(const struct supa *s, const char *content_type)
{
	return supabase_headers(&s->k, content_type);
}

static struct op *
op_new(struct supa *s, int object, const char *what, st_done_fn *fn, void *arg)
{
	struct op *o = xcalloc(1, sizeof *o);

	o->s = s;
	o->object = object;
	o->what = xstrdup(what);
	o->conflict = NULL;
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
	http_send(s->http, "POST", url, h, data, len, 0, done, op_new(s, 1, st->bucket,
	    fn, arg));
	free(url);
}

/* The on_conflict= of a query, or NULL. */
static char *
conflict_of(const char *query)
{
	const char *c = query ? strstr(query, "on_conflict=") : NULL;

	return c ? xasprintf("%.*s", (int)strcspn(c + 12, "&"), c + 12) : NULL;
}

static void
supa_rows(struct store *st, const char *table, const char *query, int flags,
    char *json, size_t len, st_done_fn *fn, void *arg)
{
	struct supa *s = (struct supa *)st;
	struct curl_slist *h = auth_headers(s, "application/json");
	struct op *o = op_new(s, 0, table, fn, arg);
	char *url = xasprintf("%s/%s%s%s", s->rest, table, query ? "?" : "",
	    query ? query : "");
	char *prefer;

	o->conflict = conflict_of(query);
	prefer = xasprintf("Prefer: return=%s%s", flags & ROWS_WANT ?
	    "representation" : "minimal", o->conflict == NULL ? "" :
	    flags & ROWS_IGNORE_DUPLICATES ? ",resolution=ignore-duplicates" :
	    ",resolution=merge-duplicates");
	h = curl_slist_append(h, prefer);
	http_send(s->http, "POST", url, h, json, len, flags & ROWS_SPLITTABLE ?
	    HTTP_FINAL_TIMEOUT : 0, done, o);
	free(prefer);
	free(url);
}

static int
supa_wait(struct store *st, int timeout_ms, struct pollfd *fds, int nfds)
{
	return http_poll(((struct supa *)st)->http, timeout_ms, fds, nfds);
}

/* What the table of a path (table?query) is called, for messages. */
static char *
table_of(const char *path)
{
	return xasprintf("%.*s", (int)strcspn(path, "?"), path);
}

static void
supa_rest(struct store *st, const char *method, const char *path, const char *prefer,
    char *json, size_t len, st_done_fn *fn, void *arg)
{
	struct supa *s = (struct supa *)st;
	struct curl_slist *h = auth_headers(s, "application/json");
	char *url = xasprintf("%s/%s", s->rest, path), *table = table_of(path);
	struct op *o = op_new(s, 0, table, fn, arg);

	o->conflict = conflict_of(strchr(path, '?'));
	if (prefer) {
		char *v = xasprintf("Prefer: %s", prefer);

		h = curl_slist_append(h, v);
		free(v);
	}
	http_send(s->http, method, url, h, json, len, 0, done, o);
	free(table);
	free(url);
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

/* Supabase ignores a row whose event_id it has (on_conflict=event_id,
 * ignore-duplicates): nothing to remember. */
static void
supa_known_after(struct store *st, const char *table, long long offset)
{
	(void)st, (void)table, (void)offset;
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
	int object, done, rc;
	struct gxp_buf msg;
};

static void
probe_done(void *arg, const struct http_res *r)
{
	struct probe *p = arg;
	struct op o = { p->s, p->object, (char *)p->what, NULL, NULL, NULL };
	char code[16];

	p->done = 1;
	if (r->cancelled)
		return;
	if (r->curl_code) {
		gxp_buf_addf(&p->msg, "%s", r->err);
		p->rc = EXIT_TEMP;
	} else if (r->status < 200 || r->status >= 300) {
		supabase_describe(p->s->key, &p->msg, r);
		body_code(r, code);
		p->rc = EXIT_TEMP;
		if (classify(&o, r, code) == ST_FATAL) {
			advise(&o, &p->msg, r->status, code);
			p->rc = EXIT_PERM;
		}
	}
}

/* --check: which key and its kind, then the bucket and each table, one
 * request each, once. */
static int
supa_check(struct store *st)
{
	struct supa *s = (struct supa *)st;
	struct probe p[1 + T_COUNT];
	int worst = EXIT_OK, pending;

	printf("gxp-upload: ok: key: %s from %s, sent as apikey%s%s%s\n",
	    gxp_apikey_kind(&s->k), s->k.setting, gxp_apikey_bearer(&s->k) ?
	    " and bearer token" : " only", s->k.both ? "; SUPABASE_SERVICE_ROLE is set "
	    "too and not used" : "", s->k.kind == KEY_JWT && strcmp(s->k.role,
	    "service_role") != 0 ? "; gxp writes with the service_role key" : "");
	http_attempts(s->http, 1);
	memset(p, 0, sizeof p);
	for (int i = 0; i <= T_COUNT; i++) {
		char *url = i == 0 ? xasprintf("%s/bucket/%s", s->storage, st->bucket) :
		    xasprintf("%s/%s?select=*&limit=0", s->rest, rows_table_names[i - 1]);

		p[i].s = s;
		p[i].object = i == 0;
		p[i].what = i == 0 ? st->bucket : rows_table_names[i - 1];
		http_send(s->http, "GET", url, auth_headers(s, "application/json"), NULL,
		    0, 0, probe_done, &p[i]);
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
			printf("gxp-upload: ok: %s %s readable with the key\n",
			    i == 0 ? "bucket" : "table", p[i].what);
		else
			gxp_check_fail("%s %s: %s", i == 0 ? "bucket" : "table",
			    p[i].what, p[i].msg.p ? p[i].msg.p : "no answer");
		if (p[i].rc == EXIT_PERM || (p[i].rc && worst == EXIT_OK))
			worst = p[i].rc;
		gxp_buf_free(&p[i].msg);
	}
	return worst;
}

static const struct store_ops supa_ops = {
	supa_put, supa_rows, supa_wait, supa_busy, supa_attempts, supa_mark,
	supa_seen, supa_known_after, supa_stats, supa_free, supa_check, supa_rest
};

/* The key from the settings, the one way every Supabase client takes it. */
void
supabase_key(struct gxp_apikey *k)
{
	/* gxp_config_problems() refused a missing or publishable key */
	gxp_apikey(k);
	if (k->value == NULL || gxp_apikey_refused(k))
		gxp_die(EXIT_PERM, "SUPABASE_URL is set but SUPABASE_SECRET_KEY is not");
	if (strpbrk(k->value, "\r\n"))
		gxp_die(EXIT_PERM, "%s contains a line break", k->setting);
}

/* An HTTP engine for Supabase: SUPABASE_CAFILE, gxp-upload's time limit
 * and retries, max_conns connections. */
struct http *
supabase_http(int max_conns)
{
	struct http_opts o = { 0 };

	o.cafile = gxp_cfg("SUPABASE_CAFILE");
	o.timeout_ms = gxp_cfg_int("UPLOAD_TIMEOUT_MS");
	o.retry_base_ms = gxp_cfg_int("UPLOAD_RETRY_BASE_MS");
	o.retry_max_ms = gxp_cfg_int("UPLOAD_RETRY_MAX_MS");
	if (o.retry_base_ms > o.retry_max_ms)
		o.retry_base_ms = o.retry_max_ms;
	o.max_conns = max_conns;
	return http_new(&o);
}

/* conns: connections at once; 0: the uploads and one per table, as
 * gxp-upload uses them. */
struct store *
store_supabase_open(const char *bucket, int conns)
{
	struct supa *s = xcalloc(1, sizeof *s);
	const char *url = gxp_cfg("SUPABASE_URL");

	supabase_key(&s->k);
	s->base.ops = &supa_ops;
	s->base.kind = "supabase";
	s->base.bucket = bucket;
	s->storage = supabase_base_url(gxp_cfg("SUPABASE_STORAGE_URL"), url, "/storage/v1");
	s->rest = supabase_base_url(gxp_cfg("SUPABASE_REST_URL"), url, "/rest/v1");
	s->base.url_base = xasprintf("%s/object", s->storage);
	s->key = xstrdup(s->k.value);
	s->http = supabase_http(conns ? conns : (int)gxp_cfg_int("UPLOAD_CONCURRENCY") + T_COUNT);
	gxp_log(LOG_INFO, "Supabase: %s", url);
	gxp_log(LOG_INFO, "Storage Bucket: %s", bucket);
	gxp_log(LOG_INFO, "Supabase key: %s from %s", gxp_apikey_kind(&s->k), s->k.setting);
	if (s->k.both)
		gxp_log(LOG_WARN, "SUPABASE_SECRET_KEY and SUPABASE_SERVICE_ROLE are both "
		    "set; using SUPABASE_SECRET_KEY");
	return &s->base;
}
