/* rows.c: the rows gxp-upload writes, batched per table.
 *
 * A row that names a device waits until the device's uuid is known; the
 * first row for an unknown device queues a devices upsert whose returned
 * representation fills the cache.  A row that names a capture waits in the
 * same way for the captures upsert of that capture.  So a devices row is
 * always written before the rows that reference it, and a captures row
 * before its sensor_readings.  Each table has at most one request in
 * flight, which keeps upserts of one key in the order they were made.
 *
 * A batch is the longest run at the head of a table's queue whose rows have
 * the same columns and different keys, at most ROW_BATCH_MAX rows.  While
 * no request for its table is in flight, it is sent at once when a row in
 * the queue is urgent (someone waits for it: a photo for its captures row
 * before its ACK, the other rows for a new device's uuid), else when it is full,
 * when its oldest row has waited ROW_FLUSH_MS, or when the caller says
 * nothing else is coming.  So a photo never waits for a timer, and rows
 * pile up into batches while a request is in flight.  A batch the server
 * refuses is sent again in halves, and a half it refuses in halves again,
 * down to the single rows at fault: one bad row does not sink the others,
 * and k bad rows among n cost about 2k log2(n) requests.  A batch that ran
 * out of time (a statement timeout) is split in halves the same way, down
 * to single rows, which are then retried as any row is.  A number a jsonb
 * cannot hold, in a row given as text, is made a string first
 * (gxp_jsonb_safe): such a row goes in.
 *
 * Row identity: every row of the event tables (sensor_readings,
 * device_status, device_errors, device_publish_log) gets an event_id when
 * it is added, a name-based UUID of the table, the device (and capture)
 * and the row's own text, before device_id and capture_id are filled in.
 * A row is a function of the event that caused it, so the same event gives
 * the same id in every run and in both stores, and the database keeps one
 * row per id (on_conflict=event_id, resolution=ignore-duplicates): a batch
 * sent again after a lost answer, a spilled row or a replay change nothing.
 *
 * The columns an upsert may write are the row's keys (columns=), except
 * that a captures row written at metadata time (ROW_KEEP_OUTCOME) leaves
 * out the outcome: ingest_status, ingest_error, storage_path,
 * image_sha256 and image_url.  A new row gets the table's defaults ('assembling'); an
 * existing one keeps its outcome.  So such an upsert landing after the
 * photo's own (a request of a killed run, the same metadata read again)
 * never sets a stored capture back.  The local store writes the row whole.
 *
 * Rows outlive the process that has them when they must: a row the store
 * gave up on (ST_GAVEUP: its attempts ran out, or the local store could
 * not write) is kept instead of dropped, and rows_spill() writes the kept
 * rows with every row still queued, waiting or in flight to a file that
 * rows_load() reads back in the next run; so is a row that failed because
 * of the setup (ST_FATAL: a key, a table or a column), which also stops
 * the caller (rows_fatal()).  Left out are the rows someone
 * waits for (a photo's: the photo, still in the spool, makes them again)
 * and captures rows, whose late arrival could undo a photo's stored row
 * in the local store; a row that would have waited for one is written
 * without its capture_id unless the next run knows it.  A loaded row
 * whose device is not known makes a devices row that says nothing of when
 * the device was seen. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define NBUCKETS 4096

const char *const rows_table_names[T_COUNT] = {
	"devices", "captures", "sensor_readings", "device_status",
	"device_errors", "device_publish_log"
};

enum { E_UNKNOWN, E_PENDING, E_KNOWN };

struct prow {
	struct prow *next;
	int table, need, keep, urgent, lookup;
	uint64_t epoch;		/* with a journal: its epoch (marks.c); 0: none */
	int most;		/* the largest batch it may go in; 0: ROW_BATCH_MAX */
	cJSON *row;
	char dev[GXP_DEVICE_MAX + 1], cap[GXP_CAPTURE_NAME_MAX + 1];
	char *json, *cols;
	size_t own_json, own_cols;	/* a text row: its own text, before device_id */
	int64_t since;
	row_done_fn *fn;
	void *arg;
};

struct ent {
	struct ent *next;
	char *key;
	char uuid[37];
	int state;
	int64_t seen_ms;	/* devices: when last_seen_at was last sent */
	struct prow *queued;	/* devices: its row waiting in the queue */
	struct prow *waiters, **wtail;
};

struct rows {
	struct store *st;
	struct prow *q[T_COUNT], **qtail[T_COUNT];
	size_t qlen[T_COUNT], urgent[T_COUNT];
	struct batch *inflight[T_COUNT];
	struct ent *devs[NBUCKETS], *caps[NBUCKETS];
	size_t ncaps, live;
	struct prow *kept, **ktail;	/* given up on, for rows_spill() */
	size_t nkept;
	int loading;		/* in rows_load() */
	struct marks *marks;	/* with a journal: the epochs of the rows */
	char *fatal;		/* the first setup error, for rows_fatal() */
	long long batch_max, flush_ms, seen_ms, queue_max, caps_max;
	unsigned long long written, failed, dropped, requests;
};

struct batch {
	struct rows *r;
	int table, n;
	struct prow *rows;
};

static void resolve(struct rows *r, struct prow *p);
static void fail_row(struct rows *r, struct prow *p, int rc, const char *msg);

struct rows *
rows_new(struct store *st)
{
	struct rows *r = xcalloc(1, sizeof *r);

	r->st = st;
	for (int t = 0; t < T_COUNT; t++)
		r->qtail[t] = &r->q[t];
	r->ktail = &r->kept;
	r->batch_max = gxp_cfg_int("ROW_BATCH_MAX");
	r->flush_ms = gxp_cfg_int("ROW_FLUSH_MS");
	r->seen_ms = gxp_cfg_int("DEVICE_SEEN_INTERVAL_S") * 1000;
	r->queue_max = gxp_cfg_int("ROW_QUEUE_MAX");
	/* captures in progress are bounded by what gxp-assemble allows */
	r->caps_max = gxp_cfg_int("MAX_ASSEMBLIES") * 2;
	return r;
}

static unsigned
hash(const char *s)
{
	return gxp_hash(s) % NBUCKETS;
}

static struct ent **
slot(struct ent **tab, const char *key)
{
	struct ent **pp = &tab[hash(key)];

	while (*pp && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	return pp;
}

static struct ent *
ent_get(struct ent **tab, const char *key, size_t *count)
{
	struct ent **pp = slot(tab, key);

	if (*pp == NULL) {
		*pp = xcalloc(1, sizeof **pp);
		(*pp)->key = xstrdup(key);
		(*pp)->wtail = &(*pp)->waiters;
		if (count)
			++*count;
	}
	return *pp;
}

static char *
cap_key(const char *dev, const char *cap)
{
	return xasprintf("%s/%s", dev, cap);	/* ids never hold a '/' */
}

static struct ent *
cap_get(struct rows *r, const char *dev, const char *cap, int create)
{
	char *k = cap_key(dev, cap);
	struct ent *e = create ? ent_get(r->caps, k, &r->ncaps) : *slot(r->caps, k);

	free(k);
	return e;
}

/* Forgets settled captures once the cache outgrows its bound. */
static void
caps_trim(struct rows *r)
{
	if ((long long)r->ncaps <= r->caps_max)
		return;
	for (int i = 0; i < NBUCKETS && (long long)r->ncaps > r->caps_max / 2; i++) {
		struct ent **pp = &r->caps[i];

		while (*pp) {
			struct ent *e = *pp;

			if (e->state == E_PENDING || e->waiters) {
				pp = &e->next;
				continue;
			}
			*pp = e->next;
			free(e->key);
			free(e);
			r->ncaps--;
		}
	}
}

static void
park(struct ent *e, struct prow *p)
{
	p->next = NULL;
	*e->wtail = p;
	e->wtail = &p->next;
}

/* Runs the rows that waited for e, in the order they came. */
static void
release(struct rows *r, struct ent *e, int rc, const char *msg)
{
	struct prow *p = e->waiters;

	e->waiters = NULL;
	e->wtail = &e->waiters;
	while (p) {
		struct prow *next = p->next;

		if (rc == ST_OK)
			resolve(r, p);
		else
			fail_row(r, p, rc, msg);
		p = next;
	}
}

static void
prow_destroy(struct prow *p)
{
	cJSON_Delete(p->row);
	free(p->json);
	free(p->cols);
	free(p);
}

static void
prow_free(struct rows *r, struct prow *p)
{
	if (r->marks)
		marks_settled(r->marks, p->epoch);
	prow_destroy(p);
	r->live--;
}

/* The journal's epoch of a new row: a row loaded back has none. */
static uint64_t
row_epoch(struct rows *r)
{
	return r->marks && !r->loading ? marks_row(r->marks) : 0;
}

/* With a journal (gxp-upload -J), rows are counted into epochs between
 * marks (marks.c), none is dropped (the caller stops reading at
 * ROW_QUEUE_MAX), and none is spilled: the journal has their lines. */
void
rows_journal(struct rows *r, struct marks *m)
{
	r->marks = m;
}

static int
spillable(const struct prow *p)
{
	return p->fn == NULL && p->table != T_CAPTURES;
}

static void
fail_row(struct rows *r, struct prow *p, int rc, const char *msg)
{
	struct ent *e = NULL;

	if (p->table == T_DEVICES)
		e = *slot(r->devs, p->dev);
	else if (p->table == T_CAPTURES)
		e = cap_get(r, p->dev, p->cap, 0);
	/* first the rows that waited for this one, then its owner, who may
	 * queue new rows for the same key */
	if (e && e->state == E_PENDING) {
		e->state = E_UNKNOWN;
		release(r, e, rc, msg);
	}
	if (rc == ST_FATAL && r->fatal == NULL)
		r->fatal = xstrdup(msg ? msg : "setup error");
	if ((rc == ST_GAVEUP || rc == ST_FATAL) && spillable(p)) {
		p->next = NULL;
		*r->ktail = p;
		r->ktail = &p->next;
		r->live--;
		r->nkept++;
		return;
	}
	r->failed++;
	if (p->fn)
		p->fn(p->arg, rc, msg);
	prow_free(r, p);
}

static int
outcome_column(const char *name)
{
	static const char *const outcome[] = {
		"ingest_status", "ingest_error", "storage_path", "image_sha256",
		"image_url"
	};

	for (size_t i = 0; i < sizeof outcome / sizeof outcome[0]; i++)
		if (strcmp(name, outcome[i]) == 0)
			return 1;
	return 0;
}

static void
columns(struct prow *p)
{
	struct gxp_buf b = { 0 };
	const cJSON *c;

	cJSON_ArrayForEach(c, p->row)
		if (!p->keep || !outcome_column(c->string))
			gxp_buf_addf(&b, "%s%s", b.len ? "," : "", c->string);
	p->cols = b.p ? b.p : xstrdup("");
}

/* A queued row that someone waits for: the photo for its captures row,
 * the other rows for a new device's uuid. */
static void
mark_urgent(struct rows *r, struct prow *p)
{
	if (!p->urgent) {
		p->urgent = 1;
		r->urgent[p->table]++;
	}
}

/* A row given as text (rows_add_text) gets its device_id as the last
 * column, as a cJSON row would. */
static void
add_device_id(struct prow *p, const char *dev_uuid)
{
	struct gxp_buf b = { 0 };
	size_t n = strlen(p->json);
	char *cols = xasprintf("%s%sdevice_id", p->cols, *p->cols ? "," : "");

	p->own_json = n - 1;
	p->own_cols = strlen(p->cols);
	gxp_buf_grow(&b, n + 64);
	gxp_buf_add(&b, p->json, n - 1);
	gxp_buf_adds(&b, n > 2 ? ",\"device_id\":" : "\"device_id\":");
	if (dev_uuid) {
		gxp_buf_add(&b, "\"", 1);
		gxp_buf_adds(&b, dev_uuid);
		gxp_buf_add(&b, "\"}", 2);
	} else
		gxp_buf_adds(&b, "null}");
	free(p->json);
	free(p->cols);
	p->json = b.p;
	p->cols = cols;
}

static void
enqueue(struct rows *r, struct prow *p, const char *dev_uuid, const char *cap_uuid)
{
	int t = p->table;

	if (t != T_DEVICES && p->row) {
		cJSON_DeleteItemFromObjectCaseSensitive(p->row, "device_id");
		cJSON_AddItemToObject(p->row, "device_id", dev_uuid ?
		    cJSON_CreateString(dev_uuid) : cJSON_CreateNull());
	}
	/* a row from a spill file may have it already */
	if ((t == T_SENSOR || t == T_ERRORS) && !cJSON_HasObjectItem(p->row, "capture_id"))
		cJSON_AddItemToObject(p->row, "capture_id", cap_uuid ?
		    cJSON_CreateString(cap_uuid) : cJSON_CreateNull());
	if (p->row) {
		columns(p);
		p->json = gxp_json_print(p->row);
	} else
		add_device_id(p, dev_uuid);
	p->since = gxp_mono_ms();
	p->next = NULL;
	*r->qtail[t] = p;
	r->qtail[t] = &p->next;
	r->qlen[t]++;
	if (p->fn)
		mark_urgent(r, p);
}

/* when: the device was seen then, or NULL: only its id is wanted (the
 * row leaves last_seen_at alone). */
static void
queue_device(struct rows *r, struct ent *d, const char *when)
{
	struct prow *p = d->queued;

	if (when)
		d->seen_ms = gxp_mono_ms();
	if (p) {
		/* one row per device in a batch: update the one waiting */
		if (when == NULL)
			return;
		if (cJSON_HasObjectItem(p->row, "last_seen_at"))
			cJSON_ReplaceItemInObjectCaseSensitive(p->row, "last_seen_at",
			    cJSON_CreateString(when));
		else {
			cJSON_AddStringToObject(p->row, "last_seen_at", when);
			free(p->cols);
			columns(p);
		}
		free(p->json);
		p->json = gxp_json_print(p->row);
		return;
	}
	d->queued = p = xcalloc(1, sizeof *p);
	p->table = T_DEVICES;
	p->epoch = row_epoch(r);
	snprintf(p->dev, sizeof p->dev, "%s", d->key);
	p->row = cJSON_CreateObject();
	cJSON_AddStringToObject(p->row, "device_hw_id", d->key);
	if (when)
		cJSON_AddStringToObject(p->row, "last_seen_at", when);
	r->live++;
	if (d->state == E_UNKNOWN)
		d->state = E_PENDING;
	enqueue(r, p, NULL, NULL);
	if (d->state == E_PENDING)
		mark_urgent(r, p);
}

static void
resolve(struct rows *r, struct prow *p)
{
	struct ent *d = NULL, *c = NULL;

	if (p->dev[0] && p->table != T_DEVICES) {
		d = ent_get(r->devs, p->dev, NULL);
		if (d->state == E_UNKNOWN) {
			char now[32];

			gxp_fmt_utc(now, gxp_wall_us());
			queue_device(r, d, r->loading ? NULL : now);
		}
		if (d->state != E_KNOWN) {
			park(d, p);
			return;
		}
	}
	if (p->need != CAP_NONE && p->cap[0]) {
		c = cap_get(r, p->dev, p->cap, 0);
		if (c && c->state == E_PENDING) {
			park(c, p);
			return;
		}
		if ((c == NULL || c->state != E_KNOWN) && p->need == CAP_REQUIRED) {
			fail_row(r, p, ST_PERM, "its captures row was not written");
			return;
		}
	}
	enqueue(r, p, d ? d->uuid : NULL, c && c->state == E_KNOWN ? c->uuid : NULL);
}

/* The device was seen at when (RFC 3339): its devices row is upserted
 * unless one went out less than DEVICE_SEEN_INTERVAL_S ago. */
void
rows_device_seen(struct rows *r, const char *dev, const char *when)
{
	struct ent *d = ent_get(r->devs, dev, NULL);

	if (d->state != E_UNKNOWN && gxp_mono_ms() - d->seen_ms < r->seen_ms)
		return;
	queue_device(r, d, when);
}

static int
full(struct rows *r, int table, int urgent)
{
	if (urgent || r->marks || (long long)(r->live + r->nkept) < r->queue_max)
		return 0;
	if (r->dropped++ % 1000 == 0)
		gxp_log(LOG_WARN, "more than ROW_QUEUE_MAX=%lld rows wait for the "
		    "database; dropping %s rows (%llu so far)", r->queue_max,
		    rows_table_names[table], r->dropped);
	return 1;
}

static struct prow *
prow_new(struct rows *r, int table, const char *dev, const char *cap)
{
	struct prow *p = xcalloc(1, sizeof *p);

	p->table = table;
	snprintf(p->dev, sizeof p->dev, "%s", dev ? dev : "");
	snprintf(p->cap, sizeof p->cap, "%s", cap ? cap : "");
	p->epoch = row_epoch(r);
	r->live++;
	return p;
}

static int
event_table(int t)
{
	return t == T_SENSOR || t == T_STATUS || t == T_ERRORS || t == T_PUBLOG;
}

/* The row's event_id (see the top). */
static void
event_id(char out[37], int t, const char *dev, const char *cap, const char *text)
{
	char *who = xasprintf("%s/%s", dev ? dev : "", cap ? cap : "");

	gxp_uuid_of(out, rows_table_names[t], who, text);
	free(who);
}

static void
add_event_id(int t, cJSON *row, const char *dev, const char *cap)
{
	char id[37], *text;

	if (!event_table(t) || cJSON_HasObjectItem(row, "event_id"))
		return;		/* a row from a spill file has it */
	text = gxp_json_print(row);
	event_id(id, t, dev, cap, text);
	free(text);
	cJSON_AddStringToObject(row, "event_id", id);
}

/* The same for a text row: the last member, and the last column. */
static void
add_event_id_text(int t, struct prow *p, const char *dev)
{
	size_t n = strlen(p->json), c = strlen(p->cols);
	char id[37], *json, *cols;

	if (!event_table(t) || (c >= 8 && strcmp(p->cols + c - 8, "event_id") == 0 &&
	    (c == 8 || p->cols[c - 9] == ',')))
		return;
	event_id(id, t, dev, NULL, p->json);
	json = xasprintf("%.*s%s\"event_id\":\"%s\"}", (int)(n - 1), p->json,
	    n > 2 ? "," : "", id);
	cols = xasprintf("%s%sevent_id", p->cols, c ? "," : "");
	free(p->json);
	free(p->cols);
	p->json = json;
	p->cols = cols;
}

/* Takes row.  dev: the MAC the row belongs to, or NULL; cap: the capture
 * (capture_name) it belongs to, or NULL; need: whether capture_id must be
 * known (CAP_REQUIRED), is added when known (CAP_IF_KNOWN) or is none of
 * this row's business, or'ed with ROW_KEEP_OUTCOME for a captures row
 * that must not overwrite a capture's outcome.  fn (may be NULL) hears how
 * it ended. */
void
rows_add(struct rows *r, int table, cJSON *row, const char *dev, const char *cap,
    int need, row_done_fn *fn, void *arg)
{
	struct prow *p;

	if (full(r, table, fn != NULL)) {
		cJSON_Delete(row);
		return;
	}
	add_event_id(table, row, dev, cap);
	p = prow_new(r, table, dev, cap);
	p->row = row;
	p->need = need & CAP_MASK;
	p->lookup = table == T_CAPTURES && (need & ROW_LOOKUP);
	p->keep = table == T_CAPTURES && (need & (ROW_KEEP_OUTCOME | ROW_LOOKUP));
	p->fn = fn;
	p->arg = arg;
	if (table == T_CAPTURES) {
		struct ent *c = cap_get(r, p->dev, p->cap, 1);

		if (c->state == E_UNKNOWN)
			c->state = E_PENDING;
		caps_trim(r);
	}
	resolve(r, p);
}

/* A row of an event table that names no capture, already printed: json (a
 * JSON object, taken) has the columns cols, in order, and device_id is
 * added.  Saves the parse and print of rows that come by the thousand. */
void
rows_add_text(struct rows *r, int table, char *json, const char *cols, const char *dev)
{
	struct gxp_buf safe = { 0 };
	struct prow *p;

	if (full(r, table, 0)) {
		free(json);
		return;
	}
	p = prow_new(r, table, dev, NULL);
	p->json = json;
	if (gxp_jsonb_safe(json, strlen(json), &safe) > 0) {
		free(json);
		p->json = safe.p;
	}
	p->cols = xstrdup(cols);
	add_event_id_text(table, p, dev);
	resolve(r, p);
}

static const char *
conflict_key(const struct prow *p)
{
	return p->table == T_DEVICES || p->table == T_CAPTURES ? p->cap[0] ? p->cap :
	    p->dev : NULL;
}

static int
duplicate(const struct prow *head, const struct prow *p)
{
	const char *k = conflict_key(p);

	if (k == NULL)
		return 0;
	for (; head != p; head = head->next)
		if (strcmp(head->dev, p->dev) == 0 && strcmp(conflict_key(head), k) == 0)
			return 1;
	return 0;
}

static const char *
query(int t, const char *cols, struct gxp_buf *b)
{
	static const char *const conflict[T_COUNT] = {
		"device_hw_id", "device_id,device_capture_id", "event_id", "event_id",
		"event_id", "event_id"
	};
	static const char *const select[T_COUNT] = {
		"device_id,device_hw_id", "capture_id,device_id,device_capture_id"
	};

	if (conflict[t])
		gxp_buf_addf(b, "on_conflict=%s&", conflict[t]);
	gxp_buf_addf(b, "columns=%s", cols);
	if (select[t])
		gxp_buf_addf(b, "&select=%s", select[t]);
	return b->p;
}

static void batch_done(void *arg, const struct st_result *res);

static void
send_batch(struct rows *r, int t)
{
	struct batch *b = xcalloc(1, sizeof *b);
	struct prow *p = r->q[t], *last = NULL;
	struct gxp_buf json = { 0 }, q = { 0 };
	int most = r->batch_max > INT_MAX ? INT_MAX : (int)r->batch_max, flags;

	b->r = r;
	b->table = t;
	gxp_buf_add(&json, "[", 1);
	do {
		if (b->n)
			gxp_buf_add(&json, ",", 1);
		gxp_buf_adds(&json, p->json);
		r->urgent[t] -= (size_t)p->urgent;
		if (p->most && p->most < most)
			most = p->most;
		last = p;
		b->n++;
		p = p->next;
	} while (p && b->n < most && (!p->most || b->n < p->most) &&
	    strcmp(p->cols, r->q[t]->cols) == 0 && p->lookup == r->q[t]->lookup &&
	    !duplicate(r->q[t], p));
	gxp_buf_add(&json, "]", 1);
	b->rows = r->q[t];
	r->q[t] = p;
	last->next = NULL;
	for (p = b->rows; t == T_DEVICES && p; p = p->next) {
		struct ent *d = *slot(r->devs, p->dev);

		if (d && d->queued == p)
			d->queued = NULL;
	}
	if (r->q[t] == NULL)
		r->qtail[t] = &r->q[t];
	r->qlen[t] -= (size_t)b->n;
	r->inflight[t] = b;
	r->requests++;
	flags = (t == T_DEVICES || t == T_CAPTURES ? ROWS_WANT : ROWS_IGNORE_DUPLICATES) |
	    (b->n > 1 ? ROWS_SPLITTABLE : 0) | (b->rows->lookup ? ROWS_LOOKUP : 0);
	store_rows(r->st, rows_table_names[t], query(t, b->rows->cols, &q), flags,
	    json.p, json.len, batch_done, b);
	gxp_buf_free(&q);
}

static struct prow *
find_capture(struct rows *r, struct prow *list, const char *dev_uuid, const char *cap)
{
	for (; list; list = list->next) {
		struct ent *d = *slot(r->devs, list->dev);

		if (d && strcmp(d->uuid, dev_uuid) == 0 && strcmp(list->cap, cap) == 0)
			return list;
	}
	return NULL;
}

/* The representation of an upsert: learn the ids it holds. */
static void
learn(struct rows *r, struct batch *b, const char *body, size_t len)
{
	cJSON *a = gxp_json_parse(body, len), *o;

	cJSON_ArrayForEach(o, a) {
		const char *id = gxp_json_str(o, b->table == T_DEVICES ? "device_id" : "capture_id");
		const char *dev = gxp_json_str(o, "device_id"), *hw = gxp_json_str(o, "device_hw_id");
		const char *cap = gxp_json_str(o, "device_capture_id");
		struct prow *p;
		struct ent *e = NULL;

		if (id == NULL || strlen(id) != 36)
			continue;
		if (b->table == T_DEVICES && hw)
			e = *slot(r->devs, hw);
		else if (b->table == T_CAPTURES && dev && cap &&
		    (p = find_capture(r, b->rows, dev, cap)) != NULL)
			e = cap_get(r, p->dev, p->cap, 1);
		if (e == NULL)
			continue;
		memcpy(e->uuid, id, 37);
		e->state = E_KNOWN;
		release(r, e, ST_OK, NULL);
	}
	cJSON_Delete(a);
}

/* The batch's rows back at the head of the queue, each to go in batches of
 * at most most rows. */
static void
requeue(struct rows *r, struct batch *b, int most)
{
	struct prow *last = b->rows;

	for (struct prow *p = b->rows; p; p = p->next) {
		p->most = most;
		r->urgent[b->table] += (size_t)p->urgent;
		last = p;
	}
	last->next = r->q[b->table];
	if (r->q[b->table] == NULL)
		r->qtail[b->table] = &last->next;
	r->q[b->table] = b->rows;
	r->qlen[b->table] += (size_t)b->n;
}

static void
batch_failed(struct rows *r, struct batch *b, const struct st_result *res)
{
	const char *name = rows_table_names[b->table];

	gxp_log(res->rc == ST_FATAL ? LOG_ERROR : LOG_WARN, "%s: %d row%s not "
	    "written: %s", name, b->n, b->n == 1 ? "" : "s", res->msg);
	while (b->rows) {
		struct prow *p = b->rows;

		b->rows = p->next;
		if (b->n == 1 && p->dev[0])
			gxp_log(LOG_WARN, "%s row for device %s%s%s lost", name, p->dev,
			    p->cap[0] ? " image " : "", p->cap);
		fail_row(r, p, res->rc, res->msg);
	}
}

static void
batch_done(void *arg, const struct st_result *res)
{
	struct batch *b = arg;
	struct rows *r = b->r;

	r->inflight[b->table] = NULL;
	if (res->rc == ST_PERM && b->n > 1) {
		/* halves, and halves of the halves that are refused: k bad rows
		 * among n cost about 2k log2(n) requests, not n */
		gxp_log(LOG_WARN, "%s: a batch of %d rows was refused (%s); sending "
		    "it in halves to find the rows at fault", rows_table_names[b->table],
		    b->n, res->msg);
		requeue(r, b, (b->n + 1) / 2);
	} else if (res->rc == ST_SPLIT && b->n > 1) {
		gxp_log(LOG_WARN, "%s: a batch of %d rows ran out of time (%s); sending "
		    "it in halves", rows_table_names[b->table], b->n, res->msg);
		requeue(r, b, (b->n + 1) / 2);
	} else if (res->rc != ST_OK) {
		struct st_result kept = *res;

		/* a row alone is retried by the store, not split */
		if (kept.rc == ST_SPLIT)
			kept.rc = ST_GAVEUP;
		batch_failed(r, b, &kept);
	}
	else {
		if (b->table == T_DEVICES || b->table == T_CAPTURES)
			learn(r, b, res->body, res->len);
		while (b->rows) {
			struct prow *p = b->rows;
			struct ent *e = p->table == T_CAPTURES ? cap_get(r, p->dev, p->cap, 0) :
			    p->table == T_DEVICES ? *slot(r->devs, p->dev) : NULL;

			b->rows = p->next;
			r->written++;
			if (e && e->state == E_PENDING) {
				/* no id came back for it */
				e->state = E_UNKNOWN;
				release(r, e, ST_PERM, "the upsert returned no id");
			}
			if (p->fn)
				p->fn(p->arg, ST_OK, NULL);
			prow_free(r, p);
		}
	}
	free(b);
}

/* Sends the batches that are due; all: every queued row is due. */
void
rows_flush(struct rows *r, int all)
{
	int64_t now = gxp_mono_ms();

	for (int t = 0; t < T_COUNT; t++)
		if (!r->inflight[t] && r->q[t] && (all || r->urgent[t] ||
		    (long long)r->qlen[t] >= r->batch_max ||
		    now - r->q[t]->since >= r->flush_ms))
			send_batch(r, t);
}

/* Milliseconds until a queued batch is due; -1: none waits. */
int64_t
rows_due_ms(const struct rows *r)
{
	int64_t now = gxp_mono_ms(), due = -1;

	for (int t = 0; t < T_COUNT; t++) {
		int64_t d;

		if (r->inflight[t] || r->q[t] == NULL)
			continue;
		d = r->urgent[t] ? 0 : r->q[t]->since + r->flush_ms - now;
		if (d < 0)
			d = 0;
		if (due == -1 || d < due)
			due = d;
	}
	return due;
}

int
rows_idle(const struct rows *r)
{
	return r->live == 0;
}

/* The first setup error a row met (the store said ST_FATAL), or NULL. */
const char *
rows_fatal(const struct rows *r)
{
	return r->fatal;
}

/* Whether a captures row for the capture was queued or written in this run. */
int
rows_capture_seen(struct rows *r, const char *dev, const char *cap)
{
	struct ent *e = cap_get(r, dev, cap, 0);

	return e && e->state != E_UNKNOWN;
}

void
rows_stats(const struct rows *r, struct rows_stats *s)
{
	s->written = r->written;
	s->failed = r->failed;
	s->dropped = r->dropped;
	s->requests = r->requests;
	s->queued = r->live;
	s->kept = r->nkept;
}

static void
free_table(struct ent **tab)
{
	for (int i = 0; i < NBUCKETS; i++)
		while (tab[i]) {
			struct ent *e = tab[i];

			tab[i] = e->next;
			free(e->key);
			free(e);
		}
}

static void
free_list(struct rows *r, struct prow *p)
{
	while (p) {
		struct prow *next = p->next;

		prow_free(r, p);
		p = next;
	}
}

/* A text row as it came, without the device_id add_device_id() gave it. */
static void
spill_text(struct gxp_buf *b, const struct prow *p)
{
	gxp_buf_adds(b, ",\"cols\":");
	gxp_buf_add_jstr(b, p->cols, p->own_json ? p->own_cols : strlen(p->cols));
	gxp_buf_adds(b, ",\"json\":");
	if (p->own_json) {
		gxp_buf_add(b, p->json, p->own_json);
		gxp_buf_add(b, "}", 1);
	} else
		gxp_buf_adds(b, p->json);
	gxp_buf_adds(b, "}");
}

static void
spill_one(struct gxp_buf *b, const struct prow *p, long *n)
{
	const char *seen = p->table == T_DEVICES ? gxp_json_str(p->row, "last_seen_at") : NULL;

	if (!spillable(p) || (p->table == T_DEVICES && seen == NULL) || p->epoch)
		return;
	gxp_buf_adds(b, "{\"table\":\"");
	gxp_buf_adds(b, rows_table_names[p->table]);
	gxp_buf_adds(b, "\",\"dev\":");
	gxp_buf_add_jstr(b, p->dev, strlen(p->dev));
	if (seen) {
		/* made again by rows_device_seen() */
		gxp_buf_adds(b, ",\"seen\":");
		gxp_buf_add_jstr(b, seen, strlen(seen));
		gxp_buf_adds(b, "}");
	} else if (p->row) {
		cJSON *row = cJSON_Duplicate(p->row, 1);
		int need = p->need;
		char *text;

		/* the device's id is the next run's to find; the capture's is
		 * kept when it was found, else taken if the next run knows it
		 * (its row may never come again) */
		cJSON_DeleteItemFromObjectCaseSensitive(row, "device_id");
		if (gxp_json_str(row, "capture_id"))
			need = CAP_NONE;
		else {
			cJSON_DeleteItemFromObjectCaseSensitive(row, "capture_id");
			if (need == CAP_REQUIRED)
				need = CAP_IF_KNOWN;
		}
		text = gxp_json_print(row);
		gxp_buf_adds(b, ",\"cap\":");
		gxp_buf_add_jstr(b, p->cap, strlen(p->cap));
		gxp_buf_addf(b, ",\"need\":%d,\"row\":%s}", need, text);
		free(text);
		cJSON_Delete(row);
	} else
		spill_text(b, p);
	gxp_buf_add(b, "\n", 1);
	++*n;
}

static void
spill_list(struct gxp_buf *b, const struct prow *p, long *n)
{
	for (; p; p = p->next)
		spill_one(b, p, n);
}

/* Writes the rows not written (see the top) to path, tmp + fsync +
 * rename, in the order they came as far as each table goes; how many, or
 * -1 (errno).  Nothing is written when there are none. */
long
rows_spill(struct rows *r, const char *path)
{
	struct gxp_buf b = { 0 };
	long n = 0;
	int rc = 0;

	for (int t = 0; t < T_COUNT; t++) {
		if (r->inflight[t])
			spill_list(&b, r->inflight[t]->rows, &n);
		spill_list(&b, r->q[t], &n);
	}
	for (int i = 0; i < NBUCKETS; i++) {
		for (struct ent *e = r->devs[i]; e; e = e->next)
			spill_list(&b, e->waiters, &n);
		for (struct ent *e = r->caps[i]; e; e = e->next)
			spill_list(&b, e->waiters, &n);
	}
	spill_list(&b, r->kept, &n);
	if (n > 0)
		rc = gxp_write_atomic(path, b.p, b.len);
	gxp_buf_free(&b);
	return rc == -1 ? -1 : n;
}

static int
table_index(const char *name)
{
	for (int t = 0; name && t < T_COUNT; t++)
		if (strcmp(name, rows_table_names[t]) == 0)
			return t;
	return -1;
}

/* One line of a spill file: 1 taken, 0 not (bad). */
static int
load_one(struct rows *r, const char *line, size_t len)
{
	cJSON *j = gxp_json_parse(line, len), *row;
	const char *dev = gxp_json_str(j, "dev"), *cap = gxp_json_str(j, "cap");
	const char *cols = gxp_json_str(j, "cols"), *seen = gxp_json_str(j, "seen"), *text;
	int t = table_index(gxp_json_str(j, "table"));
	long long need = 0;
	size_t tlen;
	int64_t us;
	int ok = 0;

	if (t < 0 || t == T_CAPTURES || dev == NULL || (*dev && !gxp_device_valid(dev)) ||
	    (cap && *cap && !gxp_capture_name_valid(cap)))
		goto out;
	row = cJSON_GetObjectItemCaseSensitive(j, "row");
	if (t == T_DEVICES) {
		if ((ok = *dev && seen && gxp_parse_time(seen, &us) == 0))
			rows_device_seen(r, dev, seen);
	} else if (cJSON_IsObject(row) && gxp_json_int(j, "need", &need) == 1 &&
	    need >= CAP_NONE && need <= CAP_REQUIRED) {
		rows_add(r, t, cJSON_DetachItemViaPointer(j, row), *dev ? dev : NULL,
		    cap && *cap ? cap : NULL, (int)need, NULL, NULL);
		ok = 1;
	} else if (cols && *cols && strspn(cols, "abcdefghijklmnopqrstuvwxyz_,") ==
	    strlen(cols) && gxp_json_raw_member(line, len, "json", &text, &tlen) == 0 &&
	    *text == '{') {
		char *copy = xmalloc(tlen + 1);

		memcpy(copy, text, tlen);
		copy[tlen] = '\0';
		rows_add_text(r, t, copy, cols, *dev ? dev : NULL);
		ok = 1;
	}
out:
	cJSON_Delete(j);
	return ok;
}

/* Takes back the rows of a file rows_spill() wrote; how many, or -1
 * (errno).  *bad: lines that were not such rows. */
long
rows_load(struct rows *r, const char *path, long *bad)
{
	char *buf, *line, *nl;
	size_t len;
	long n = 0;

	*bad = 0;
	if (gxp_read_file(path, &buf, &len, (size_t)1 << 30) == -1)
		return -1;
	r->loading = 1;
	for (line = buf; line < buf + len; line = nl + 1) {
		if ((nl = memchr(line, '\n', (size_t)(buf + len - line))) == NULL)
			nl = buf + len;
		if (nl > line) {
			if (load_one(r, line, (size_t)(nl - line)))
				n++;
			else
				++*bad;
		}
	}
	r->loading = 0;
	free(buf);
	return n;
}

/* Rows still queued, waiting or in flight are lost (the caller flushed
 * or spilled first); free the store after this, which cancels the
 * requests. */
void
rows_free(struct rows *r)
{
	if (r == NULL)
		return;
	while (r->kept) {
		struct prow *p = r->kept;

		r->kept = p->next;
		prow_destroy(p);
	}
	for (int t = 0; t < T_COUNT; t++) {
		free_list(r, r->q[t]);
		if (r->inflight[t]) {
			free_list(r, r->inflight[t]->rows);
			free(r->inflight[t]);
		}
	}
	for (int i = 0; i < NBUCKETS; i++) {
		for (struct ent *e = r->devs[i]; e; e = e->next)
			free_list(r, e->waiters);
		for (struct ent *e = r->caps[i]; e; e = e->next)
			free_list(r, e->waiters);
	}
	free_table(r->devs);
	free_table(r->caps);
	free(r->fatal);
	free(r);
}
