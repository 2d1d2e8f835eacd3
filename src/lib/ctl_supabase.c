/* ctl_supabase.c: the control plane's tables in Supabase, through
 * PostgREST with the service key (store_rest: the same HTTP engine, key
 * handling and messages as gxp-upload's).  A command's device is named by
 * embedding its devices row (devices!inner(device_hw_id)); a state change
 * is one PATCH that only matches a command still queued, and the
 * database's trigger writes its device_command_logs row (sql/schema.sql).
 * Long answers come in pages of PAGE rows, the max-rows Supabase sets by
 * default. */
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "store.h"

#define PAGE 1000
#define COMMAND_COLUMNS "command_id,command_type,command_payload,status," \
	"requested_at,sent_at,expires_at,devices!inner(device_hw_id)"

struct csup {
	struct ctl base;
	struct store *st;
};

enum { STEP_ROWS, STEP_DEVICE, STEP_STATUS };

struct req {
	struct csup *s;
	ctl_rows_fn *fn;
	void *arg;
	int step;
	char *path;		/* a paged GET: its path without limit and offset */
	long offset;
	cJSON *rows;		/* what came so far */
	cJSON *insert;		/* ctl_add: the row, once its device is known */
	char *id;		/* ctl_mark: the command */
};

/* "devices":{"device_hw_id":X} (or a list of one) becomes "device_hw_id":X. */
static void
flatten(cJSON *rows)
{
	cJSON *r;

	cJSON_ArrayForEach(r, rows) {
		cJSON *d = cJSON_GetObjectItemCaseSensitive(r, "devices");
		const char *hw;

		if (cJSON_IsArray(d))
			d = cJSON_GetArrayItem(d, 0);
		if ((hw = gxp_json_str(d, "device_hw_id")) != NULL &&
		    !cJSON_HasObjectItem(r, "device_hw_id"))
			cJSON_AddStringToObject(r, "device_hw_id", hw);
		cJSON_DeleteItemFromObjectCaseSensitive(r, "devices");
	}
}

static struct req *
req_new(struct csup *s, ctl_rows_fn *fn, void *arg)
{
	struct req *q = xcalloc(1, sizeof *q);

	q->s = s;
	q->fn = fn;
	q->arg = arg;
	q->rows = cJSON_CreateArray();
	return q;
}

static void
req_end(struct req *q, int rc, const char *msg)
{
	if (rc == ST_OK)
		flatten(q->rows);
	q->fn(q->arg, rc, q->rows, msg);
	cJSON_Delete(q->rows);
	cJSON_Delete(q->insert);
	free(q->path);
	free(q->id);
	free(q);
}

static void answered(void *arg, const struct st_result *r);

static void
rest_send(struct req *q, const char *method, const char *path, const char *prefer, cJSON *body)
{
	char *json = body ? gxp_json_print(body) : NULL;

	store_rest(q->s->st, method, path, prefer, json, json ? strlen(json) : 0, answered, q);
	cJSON_Delete(body);
}

static void
next_page(struct req *q)
{
	char *p = xasprintf("%s&limit=%d&offset=%ld", q->path, PAGE, q->offset);

	rest_send(q, "GET", p, NULL, NULL);
	free(p);
}

static void
get_paged(struct csup *s, char *path, ctl_rows_fn *fn, void *arg)
{
	struct req *q = req_new(s, fn, arg);

	q->path = path;
	next_page(q);
}

/* The rows of an answer; -1 when it is not a JSON array. */
static int
take_rows(struct req *q, const struct st_result *r, int *n)
{
	cJSON *a = r->len ? gxp_json_parse(r->body, r->len) : cJSON_CreateArray();

	if (!cJSON_IsArray(a)) {
		cJSON_Delete(a);
		return -1;
	}
	*n = cJSON_GetArraySize(a);
	while (a->child)
		cJSON_AddItemToArray(q->rows, cJSON_DetachItemViaPointer(a, a->child));
	cJSON_Delete(a);
	return 0;
}

static void
device_found(struct req *q)
{
	const char *uuid = gxp_json_str(cJSON_GetArrayItem(q->rows, 0), "device_id");
	const char *dev = gxp_json_str(q->insert, "device_hw_id");
	cJSON *body = q->insert;
	char *msg;

	if (uuid == NULL) {
		msg = xasprintf("device %s is not known: no devices row", dev ? dev : "?");
		req_end(q, ST_PERM, msg);
		free(msg);
		return;
	}
	q->insert = cJSON_CreateObject();
	cJSON_AddStringToObject(q->insert, "device_hw_id", dev);
	cJSON_DeleteItemFromObjectCaseSensitive(body, "device_hw_id");
	cJSON_AddStringToObject(body, "device_id", uuid);
	cJSON_Delete(q->rows);
	q->rows = cJSON_CreateArray();
	q->step = STEP_ROWS;
	rest_send(q, "POST", "device_commands?select=" COMMAND_COLUMNS, "return=representation",
	    body);
}

/* A mark that matched nothing: what the command is instead. */
static void
status_found(struct req *q)
{
	const char *st = gxp_json_str(cJSON_GetArrayItem(q->rows, 0), "status");
	char *msg = st ? xasprintf("command %s is %s, not queued", q->id, st) :
	    xasprintf("no command %s", q->id);

	cJSON_Delete(q->rows);
	q->rows = cJSON_CreateArray();
	req_end(q, ST_OK, msg);
	free(msg);
}

static void
answered(void *arg, const struct st_result *r)
{
	struct req *q = arg;
	int n = 0;
	char *p;

	if (r->rc != ST_OK) {
		req_end(q, r->rc, r->msg);
		return;
	}
	if (take_rows(q, r, &n) == -1) {
		req_end(q, ST_PERM, "the answer is not a JSON array");
		return;
	}
	if (q->path && n == PAGE) {
		q->offset += PAGE;
		next_page(q);
	} else if (q->step == STEP_DEVICE)
		device_found(q);
	else if (q->step == STEP_STATUS)
		status_found(q);
	else if (q->id && n == 0) {
		q->step = STEP_STATUS;
		p = xasprintf("device_commands?command_id=eq.%s&select=status", q->id);
		rest_send(q, "GET", p, NULL, NULL);
		free(p);
	} else
		req_end(q, ST_OK, NULL);
}

/* "&devices.device_hw_id=eq.A" or "=in.(A,B)": ids are [A-Za-z0-9_-]. */
static void
device_filter(struct gxp_buf *b, const char *const *devs, size_t n)
{
	if (n == 1)
		gxp_buf_addf(b, "&devices.device_hw_id=eq.%s", devs[0]);
	else if (n > 1) {
		gxp_buf_adds(b, "&devices.device_hw_id=in.(");
		for (size_t i = 0; i < n; i++)
			gxp_buf_addf(b, "%s%s", i ? "," : "", devs[i]);
		gxp_buf_adds(b, ")");
	}
}

static void
supa_queued(struct ctl *c, const char *const *devs, size_t n, ctl_rows_fn *fn, void *arg)
{
	struct gxp_buf b = { 0 };

	gxp_buf_adds(&b, "device_commands?select=" COMMAND_COLUMNS "&status=eq.queued");
	device_filter(&b, devs, n);
	gxp_buf_adds(&b, "&order=requested_at.asc,command_id.asc");
	get_paged((struct csup *)c, b.p, fn, arg);
}

static void
supa_list(struct ctl *c, const char *dev, ctl_rows_fn *fn, void *arg)
{
	struct gxp_buf b = { 0 };

	gxp_buf_adds(&b, "device_commands?select=" COMMAND_COLUMNS);
	device_filter(&b, &dev, dev ? 1 : 0);
	gxp_buf_adds(&b, "&order=requested_at.desc,command_id.desc");
	get_paged((struct csup *)c, b.p, fn, arg);
}

/* The device's uuid first (a command names its devices row), then the
 * insert; the database fills in the id, the status and requested_at. */
static void
supa_add(struct ctl *c, cJSON *row, ctl_rows_fn *fn, void *arg)
{
	struct req *q = req_new((struct csup *)c, fn, arg);
	char *p = xasprintf("devices?device_hw_id=eq.%s&select=device_id",
	    gxp_json_str(row, "device_hw_id"));

	q->insert = row;
	q->step = STEP_DEVICE;
	rest_send(q, "GET", p, NULL, NULL);
	free(p);
}

static void
supa_mark(struct ctl *c, const char *id, const char *dev, const char *status,
    int64_t when, ctl_rows_fn *fn, void *arg)
{
	struct req *q = req_new((struct csup *)c, fn, arg);
	cJSON *body = cJSON_CreateObject();
	char *p = xasprintf("device_commands?command_id=eq.%s&status=eq.queued&select="
	    COMMAND_COLUMNS, id), at[32];

	(void)dev;
	q->id = xstrdup(id);
	cJSON_AddStringToObject(body, "status", status);
	if (strcmp(status, "sent") == 0) {
		gxp_fmt_utc(at, when);
		cJSON_AddStringToObject(body, "sent_at", at);
	}
	rest_send(q, "PATCH", p, "return=representation", body);
	free(p);
}

static void
supa_expire(struct ctl *c, int64_t now, ctl_rows_fn *fn, void *arg)
{
	struct req *q = req_new((struct csup *)c, fn, arg);
	cJSON *body = cJSON_CreateObject();
	char at[32], *p;

	gxp_fmt_utc(at, now);
	p = xasprintf("device_commands?status=eq.queued&expires_at=lt.%s&select="
	    COMMAND_COLUMNS, at);
	cJSON_AddStringToObject(body, "status", "expired");
	rest_send(q, "PATCH", p, "return=representation", body);
	free(p);
}

static void
supa_wakes(struct ctl *c, ctl_rows_fn *fn, void *arg)
{
	get_paged((struct csup *)c, xstrdup("devices?select=device_hw_id,next_wake_at"
	    "&next_wake_at=not.is.null&order=device_hw_id.asc"), fn, arg);
}

/* An upsert on device_hw_id: a device gxp-upload has not written yet
 * gets its row now, which gxp-upload's own upsert then completes. */
static void
supa_set_wake(struct ctl *c, const char *dev, int64_t at, ctl_rows_fn *fn, void *arg)
{
	struct req *q = req_new((struct csup *)c, fn, arg);
	cJSON *body = cJSON_CreateArray(), *row = cJSON_CreateObject();
	char when[32];

	gxp_fmt_utc(when, at);
	cJSON_AddStringToObject(row, "device_hw_id", dev);
	cJSON_AddStringToObject(row, "next_wake_at", when);
	cJSON_AddItemToArray(body, row);
	rest_send(q, "POST", "devices?on_conflict=device_hw_id&columns=device_hw_id,next_wake_at",
	    "resolution=merge-duplicates,return=minimal", body);
}

static void
supa_configs(struct ctl *c, ctl_rows_fn *fn, void *arg)
{
	get_paged((struct csup *)c, xstrdup("device_configs?select=*,devices!inner(device_hw_id)"
	    "&order=device_id.asc"), fn, arg);
}

static int
supa_wait(struct ctl *c, int timeout_ms, struct pollfd *fds, int nfds)
{
	return store_poll(((struct csup *)c)->st, timeout_ms, fds, nfds);
}

static int
supa_busy(const struct ctl *c)
{
	return store_busy(((const struct csup *)c)->st);
}

struct probe {
	const char *table;
	int done, rc;
	char *msg;
};

static void
probed(void *arg, int rc, const cJSON *rows, const char *msg)
{
	struct probe *p = arg;

	(void)rows;
	p->done = 1;
	p->rc = rc;
	p->msg = xstrdup(msg ? msg : "");
}

/* --check: each table the control plane reads, with the columns it uses. */
static int
supa_check(struct ctl *c)
{
	static const char *const paths[] = {
		"devices?select=device_hw_id,next_wake_at&limit=0",
		"device_configs?select=*&limit=0",
		"device_commands?select=" COMMAND_COLUMNS "&limit=0",
		"device_command_logs?select=*&limit=0",
	};
	struct csup *s = (struct csup *)c;
	struct probe p[4];
	int worst = EXIT_OK, left = 4;

	store_attempts(s->st, 1);
	memset(p, 0, sizeof p);
	for (int i = 0; i < 4; i++) {
		struct req *q = req_new(s, probed, &p[i]);

		p[i].table = paths[i];
		rest_send(q, "GET", paths[i], NULL, NULL);
	}
	while (left > 0 && !gxp_sig_term) {
		supa_wait(c, 200, NULL, 0);
		left = !p[0].done + !p[1].done + !p[2].done + !p[3].done;
	}
	for (int i = 0; i < 4; i++) {
		int rc = p[i].rc == ST_OK ? EXIT_OK : p[i].rc == ST_FATAL || p[i].rc == ST_PERM ?
		    EXIT_PERM : EXIT_TEMP;

		if (rc == EXIT_OK)
			printf("%s: ok: table %.*s readable with the service key\n", gxp_progname,
			    (int)strcspn(paths[i], "?"), paths[i]);
		else
			gxp_check_fail("table %.*s: %s",
			    (int)strcspn(paths[i], "?"), paths[i], p[i].msg ? p[i].msg : "no answer");
		if (rc == EXIT_PERM || (rc && worst == EXIT_OK))
			worst = rc;
		free(p[i].msg);
	}
	return worst;
}

static void
supa_attempts(struct ctl *c, int max)
{
	store_attempts(((struct csup *)c)->st, max);
}

static void
supa_free(struct ctl *c)
{
	struct csup *s = (struct csup *)c;

	store_free(s->st);
	free(s);
}

static const struct ctl_ops supa_ops = {
	supa_queued, supa_list, supa_add, supa_mark, supa_expire, supa_wakes,
	supa_set_wake, supa_configs, supa_wait, supa_busy, supa_attempts, supa_check,
	supa_free
};

struct ctl *
ctl_supabase_open(void)
{
	struct csup *s = xcalloc(1, sizeof *s);

	s->base.ops = &supa_ops;
	s->base.kind = "supabase";
	/* the hellos' reads, and a few for marks, writes, polls and refreshes */
	s->st = store_supabase_open(gxp_cfg("SUPABASE_STORAGE_BUCKET"),
	    (int)gxp_cfg_int("CONTROL_DB_READS") + 4);
	return &s->base;
}
