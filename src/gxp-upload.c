/* gxp-upload: stores the photos gxp-assemble left in the spool's ready/
 * (object, then its captures row, then the ACK_OK publish event), and turns
 * the events it reads on stdin into rows; passes every other line through.
 *
 * One thread.  The loop waits on stdin and on the store's connections
 * together, so reading never waits for an upload; photos wait in the spool,
 * not in memory.  A photo E is ready/E.jpg with its sidecar ready/E.json;
 * it is claimed by renaming the sidecar to work/E.json; each step after
 * that is safe to repeat, and on start work/ goes back to ready/, so a
 * crash anywhere repeats what was left without duplicates.
 *
 * With a journal (-J), the marks gxp-assemble writes tell which lines'
 * rows have all been added; once they are durable too, journal/committed
 * says so (tmp + rename, at most every JOURNAL_COMMIT_MS), and gxp-sub
 * replays only the lines after it when the pipeline restarts.  Rows are
 * then never dropped nor spilled: the journal holds their lines. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/gxp.h"
#include "lib/store.h"

#define GONE_PREFIX ".gone."	/* the earlier layout's work/.gone.E */
#define MARKS "rows.at"		/* work/rows.at: where the captures rows ended */

struct photo {
	struct photo *next;
	char entry[GXP_ENTRY_MAX + 1];
	char dev[GXP_DEVICE_MAX + 1], cap[GXP_CAPTURE_NAME_MAX + 1];
	char image_name[GXP_NAME_MAX + 1], sha[65], path[256];
	long long bytes;
	cJSON *meta;
	int uploading, rows_left, code;
	int setup_error;	/* a row of its failure met one: it stays in ready/ */
	char *reason;
};

struct name {
	struct name *next;
	char *s;
};

/* A device's next_wake_time for its ACK_OKs, from gxp-control's schedule
 * events. */
struct wake {
	struct wake *next;
	char dev[GXP_DEVICE_MAX + 1];
	char clock[16];
};

enum { WAKE_BUCKETS = 4096 };

enum { LOCAL_BATCH = 256 };	/* photos per sync with the local store */

static const char *spool;
static struct store *st;
static struct rows *rows;
static struct photo *photos;
static struct name *todo, **todo_tail = &todo;
static int uploading, concurrency, once, eof, fatal, gaveup, publog, spool_fd = -1;
static int64_t next_rescan, rescan_ms;
static struct name *retiring;	/* photos stored, to retire at the turn's end */
static struct name *marks;	/* "<entry> <mark>" of the photos claimed */
static int marks_fd = -1;
static long marks_n, marks_written;	/* in memory; lines in work/rows.at */
static int restart;		/* journaled rows not written: end, to be replayed */

/* the journal's commit record (-J) */
static struct {
	const char *dir;
	struct marks *marks;
	uint64_t written;	/* the seq journal/committed holds */
	uint64_t head;		/* the journal's last line when this run began */
	long long base[T_COUNT];	/* the committed offsets this run began with */
	int64_t next_ms;
} jc;
static struct wake *wakes[WAKE_BUCKETS];

static struct gxp_counter counters[] = {
	{ "uploads_total", "photos stored (object and captures row)", 0, 0 },
	{ "upload_bytes_total", "bytes of the photos stored", 0, 0 },
	{ "failed_total", "photos moved to failed/", 0, 0 },
	{ "retries_total", "HTTP requests retried", 0, 0 },
	{ "http_requests_total", "HTTP requests sent, retries included", 0, 0 },
	{ "rows_total", "rows written", 0, 0 },
	{ "rows_failed_total", "rows the store refused or could not take", 0, 0 },
	{ "rows_dropped_total", "rows dropped because ROW_QUEUE_MAX rows waited", 0, 0 },
	{ "events_total", "events consumed", 0, 0 },
	{ "passed_total", "lines passed through", 0, 0 },
	{ "backlog", "photos waiting in ready/ and work/, not stored yet", 1, 0 },
	{ "oldest_waiting_seconds", "age of the oldest photo waiting", 1, 0 },
	{ "store_failing_seconds", "how long requests to the store have been failing", 1, 0 },
};
enum {
	C_UPLOADS, C_BYTES, C_FAILED, C_RETRIES, C_REQUESTS, C_ROWS, C_ROWS_FAILED,
	C_ROWS_DROPPED, C_EVENTS, C_PASSED, C_BACKLOG, C_OLDEST, C_FAILING
};
enum { PUBLOG_OFF, PUBLOG_NO_CHUNKS, PUBLOG_ALL };

static void
usage(int code)
{
	gxp_usage(code,
	    "gxp-upload [--check | --once] [--env file] [--spool dir] [-J dir]\n",
	    "  --check      test the store (key, bucket, tables, or the local store) and\n"
	    "               say how many photos wait in the spool; one line each\n"
	    "  --once       store what the spool holds, then exit (for cron)\n"
	    "  --env file   read settings from file instead of ./.env\n"
	    "  --spool dir  the spool (GXP_SPOOL)\n"
	    "  -J dir       commit in the journal dir what is durable (gxp-supervise)\n"
	    "  --help       print this and exit\n");
}

/* <spool>/<area>/<entry><ext>: gxp_spool_path(), gxp-spool(5). */
static char *
spool_path(const char *area, const char *entry, const char *ext)
{
	return gxp_spool_path(spool, area, entry, ext);
}

static void
now_utc(char buf[32])
{
	gxp_fmt_utc(buf, gxp_wall_us());
}

static cJSON *
event_new(const char *type)
{
	cJSON *e = gxp_event_new(type);
	char ts[32];

	now_utc(ts);
	cJSON_AddStringToObject(e, "ts", ts);
	return e;
}

static void
emit(cJSON *e)
{
	gxp_out_json(e);
	cJSON_Delete(e);
}

/* --- rows from events and photos --- */

static cJSON *
dup_or_null(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
}

static void
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
static cJSON *
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

static cJSON *
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

static void
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

static int
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
static int
photo_finished(const char *dev, const char *cap)
{
	return gxp_spool_finished(spool, dev, cap);
}

/* --- photos --- */

/* A stored photo's sidecar becomes its stored/ record: renamed there
 * (no new file), its time set to now, which STORED_RETENTION_DAYS counts
 * from.  0, or -1 (logged). */
static int
record_stored(const char *entry)
{
	char *from = spool_path("work", entry, ".json"), *to = spool_path("stored", entry, ".json");
	int rc = rename(from, to);

	if (rc == -1)
		gxp_log(LOG_ERROR, "%s: cannot move to stored/: %s", from, strerror(errno));
	else if (utimensat(AT_FDCWD, to, NULL, 0) == -1)
		gxp_log(LOG_WARN, "%s: %s", to, strerror(errno));
	free(from);
	free(to);
	return rc;
}

static void
remove_photo(const char *entry)
{
	char *jpg = spool_path("ready", entry, ".jpg");

	if (unlink(jpg) == -1 && errno != ENOENT)
		gxp_log(LOG_ERROR, "%s: cannot remove: %s", jpg, strerror(errno));
	free(jpg);
}

static void mark_forget(const char *entry);
static void marks_rewrite(void);

/* The photos stored in this turn of the loop: each sidecar renamed to
 * stored/, the directory synced once for all, then the photos removed.
 * A crash before the sync only repeats the end of the work; one after it
 * leaves photos without a sidecar, which gxp-assemble removes at its start
 * (gxp-upload(1), FILES). */
static void
retire(void)
{
	char *dir;
	int moved = 0, synced;

	if (retiring == NULL)
		return;
	for (struct name *n = retiring; n; n = n->next)
		if (record_stored(n->s) == 0)
			moved++;
	dir = spool_path("stored", NULL, NULL);
	if ((synced = moved ? gxp_fsync_dir(dir) : 0) == -1)
		gxp_log(LOG_ERROR, "%s: sync: %s; the photos stay in ready/ until the next start",
		    dir, strerror(errno));
	free(dir);
	while (retiring) {
		struct name *n = retiring;

		retiring = n->next;
		if (synced == 0)
			remove_photo(n->s);
		mark_forget(n->s);
		free(n->s);
		free(n);
	}
	if (marks_written > 2 * marks_n + 1000)
		marks_rewrite();
}

static void
retire_later(const char *entry)
{
	struct name *n = xcalloc(1, sizeof *n);

	n->s = xstrdup(entry);
	n->next = retiring;
	retiring = n;
}

static void
photo_free(struct photo *p)
{
	struct photo **pp = &photos;

	while (*pp && *pp != p)
		pp = &(*pp)->next;
	if (*pp)
		*pp = p->next;
	cJSON_Delete(p->meta);
	free(p->reason);
	free(p);
}

/* work/E.json back to ready/, for the next run or the next rescan. */
static void
put_back(struct photo *p)
{
	char *from = spool_path("work", p->entry, ".json");
	char *to = spool_path("ready", p->entry, ".json");

	if (rename(from, to) == -1)
		gxp_log(LOG_ERROR, "%s: cannot move back to ready/: %s", from, strerror(errno));
	free(from);
	free(to);
	photo_free(p);
}

static void
set_fatal(const char *msg)
{
	if (!fatal)
		gxp_log(LOG_ERROR, "stopping: %s", msg);
	fatal = 1;
}

static void
write_reason(struct photo *p, const char *dir)
{
	cJSON *r = cJSON_CreateObject();
	char *path = xasprintf("%s/reason.json", dir), *text, now[32];

	now_utc(now);
	cJSON_AddNumberToObject(r, "code", p->code);
	cJSON_AddStringToObject(r, "reason", p->reason);
	cJSON_AddStringToObject(r, "failed_at", now);
	text = gxp_json_print(r);
	if (gxp_write_atomic(path, text, strlen(text)) == -1)
		gxp_log(LOG_ERROR, "%s: %s", path, strerror(errno));
	free(text);
	free(path);
	cJSON_Delete(r);
}

/* failed/E.<seconds>/ made, reason.json, the photo (image.jpg) and its
 * sidecar (meta.json, last) moved in. */
static void
finish_failed(struct photo *p)
{
	char *name = NULL, *to = NULL, *from, *dest;
	long long secs = (long long)(gxp_wall_us() / 1000000);
	cJSON *e;

	for (int i = 0; i < 100; i++) {
		free(name);
		free(to);
		name = xasprintf("%s.%lld", p->entry, secs + i);
		to = spool_path("failed", name, NULL);
		if (mkdir(to, 0755) == 0)
			break;
	}
	write_reason(p, to);
	from = spool_path("ready", p->entry, ".jpg");
	dest = xasprintf("%s/image.jpg", to);
	if (rename(from, dest) == -1 && errno != ENOENT)
		gxp_log(LOG_ERROR, "%s: cannot move to failed/: %s", from, strerror(errno));
	free(from);
	free(dest);
	from = spool_path("work", p->entry, ".json");
	dest = xasprintf("%s/meta.json", to);
	if (rename(from, dest) == -1)
		gxp_log(LOG_ERROR, "%s: cannot move to failed/: %s", from, strerror(errno));
	free(from);
	free(dest);
	mark_forget(p->entry);
	e = event_new("capture_failed");
	cJSON_AddStringToObject(e, "device", p->dev);
	cJSON_AddStringToObject(e, "image_name", p->image_name);
	cJSON_AddStringToObject(e, "capture_name", p->cap);
	cJSON_AddNumberToObject(e, "code", p->code);
	cJSON_AddStringToObject(e, "severity", "error");
	cJSON_AddStringToObject(e, "reason", p->reason);
	cJSON_AddStringToObject(e, "entry", to + strlen(spool) + 1);
	emit(e);
	counters[C_FAILED].v++;
	free(name);
	free(to);
	photo_free(p);
}

static void
failed_row_done(void *arg, int rc, const char *msg)
{
	struct photo *p = arg;

	if (rc == ST_FATAL) {
		set_fatal(msg);
		p->setup_error = 1;
	}
	if (--p->rows_left > 0)
		return;
	/* the database has not heard of the failure: the next run fails it
	 * again, rows and all */
	if (p->setup_error)
		put_back(p);
	else
		finish_failed(p);
}

/* A photo the store refused: its captures row says so, device_errors gets
 * the reason, and the entry goes to failed/ once both rows are settled. */
static void
photo_failed(struct photo *p, int code, const char *what, const char *msg)
{
	char now[32];
	cJSON *details = cJSON_CreateObject(), *row;

	p->code = code;
	p->reason = xasprintf("%s: %s", what, msg);
	gxp_log(LOG_ERROR, "device %s image %s: %s", p->dev, p->cap, p->reason);
	now_utc(now);
	if (p->meta)
		row = capture_row(p->meta, p->cap, "failed", p->reason, NULL, NULL);
	else {
		row = cJSON_CreateObject();
		cJSON_AddStringToObject(row, "device_capture_id", p->cap);
		cJSON_AddStringToObject(row, "ingest_status", "failed");
		cJSON_AddStringToObject(row, "ingest_error", p->reason);
	}
	p->rows_left = 2;
	rows_add(rows, T_CAPTURES, row, p->dev, p->cap, CAP_NONE, failed_row_done, p);
	cJSON_AddStringToObject(details, "image_name", p->image_name);
	cJSON_AddStringToObject(details, "capture_name", p->cap);
	cJSON_AddStringToObject(details, "storage_path", p->path);
	rows_add(rows, T_ERRORS, error_row(code, "error", p->reason, details, now),
	    p->dev, p->cap, CAP_IF_KNOWN, failed_row_done, p);
}

static struct wake **
wake_slot(const char *dev)
{
	struct wake **pp;

	for (pp = &wakes[gxp_hash(dev) % WAKE_BUCKETS]; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->dev, dev) == 0)
			break;
	return pp;
}

static const char *
wake_clock(const char *dev)
{
	struct wake *w = *wake_slot(dev);

	return w ? w->clock : NULL;
}

static void
wakes_free(void)
{
	for (int i = 0; i < WAKE_BUCKETS; i++)
		while (wakes[i]) {
			struct wake *w = wakes[i];

			wakes[i] = w->next;
			free(w);
		}
}

/* Object and row are durable: tell the device, remember, retire. */
static void
finish_stored(struct photo *p)
{
	cJSON *e = event_new("stored");
	char now[32];

	cJSON_AddStringToObject(e, "device", p->dev);
	cJSON_AddStringToObject(e, "image_name", p->image_name);
	cJSON_AddStringToObject(e, "capture_name", p->cap);
	cJSON_AddStringToObject(e, "storage_path", p->path);
	cJSON_AddStringToObject(e, "sha256", p->sha);
	cJSON_AddNumberToObject(e, "image_bytes", (double)p->bytes);
	emit(e);
	e = gxp_ack_ok_event(p->dev, p->image_name, wake_clock(p->dev));
	now_utc(now);
	cJSON_AddStringToObject(e, "ts", now);
	gxp_out_json(e);
	publog_row(p->dev, gxp_json_str(e, "topic"), "out",
	    cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(e, "payload"), 1), now);
	cJSON_Delete(e);

	retire_later(p->entry);
	counters[C_UPLOADS].v++;
	counters[C_BYTES].v += (unsigned long long)p->bytes;
	gxp_log(LOG_INFO, "device %s image %s: stored as %s/%s (%lld bytes)", p->dev,
	    p->cap, st->bucket, p->path, p->bytes);
	photo_free(p);
}

static void
stored_row_done(void *arg, int rc, const char *msg)
{
	struct photo *p = arg;

	switch (rc) {
	case ST_OK:
		finish_stored(p);
		break;
	case ST_PERM:
		photo_failed(p, 2205, "capture DB update failed", msg);
		break;
	case ST_FATAL:
		set_fatal(msg);
		put_back(p);
		break;
	default:
		gaveup = 1;
		gxp_log(LOG_WARN, "device %s image %s: captures row not written (%s); "
		    "left in the spool", p->dev, p->cap, msg);
		put_back(p);
	}
}

/* The local store's line for this photo, if an earlier run wrote it. */
static int
row_written(struct photo *p, long long mark)
{
	char dev_id[37];
	char *n[5];
	int rc;

	gxp_uuid_of(dev_id, "gxp-device", p->dev, NULL);
	n[0] = xasprintf("\"device_id\":\"%s\"", dev_id);
	n[1] = xasprintf("\"device_capture_id\":\"%s\"", p->cap);
	n[2] = xasprintf("\"ingest_status\":\"stored\"");
	n[3] = xasprintf("\"image_sha256\":\"%s\"", p->sha);
	n[4] = NULL;
	rc = store_seen(st, "captures", mark, (const char *const *)n);
	for (int i = 0; i < 4; i++)
		free(n[i]);
	return rc;
}

/* ---- work/rows.at: where the captures table ended before a photo's row,
 * a line "<entry> <mark>" each, appended and not synced (losing one costs
 * a repeated line, never a photo); a run after a crash looks from there
 * for the row instead of writing it twice.  Read at start, and written
 * again with only the photos still in the spool when it has grown. ---- */

static void
mark_add(const char *entry, long long mark)
{
	struct name *n = xcalloc(1, sizeof *n);

	n->s = xasprintf("%s %lld", entry, mark);
	n->next = marks;
	marks = n;
	marks_n++;
}

static struct name **
mark_find(const char *entry)
{
	size_t len = strlen(entry);

	for (struct name **pp = &marks; *pp; pp = &(*pp)->next)
		if (strncmp((*pp)->s, entry, len) == 0 && (*pp)->s[len] == ' ')
			return pp;
	return NULL;
}

static void
mark_forget(const char *entry)
{
	struct name **pp = mark_find(entry), *n;

	if (pp == NULL)
		return;
	n = *pp;
	*pp = n->next;
	free(n->s);
	free(n);
	marks_n--;
}

/* work/rows.at written again with the marks in memory. */
static void
marks_rewrite(void)
{
	char *path = spool_path("work", MARKS, NULL);
	struct gxp_buf b = { 0 };

	for (struct name *n = marks; n; n = n->next)
		gxp_buf_addf(&b, "%s\n", n->s);
	marks_written = marks_n;
	if (marks_fd != -1)
		close(marks_fd);
	marks_fd = -1;
	if (syncset_write(NULL, path, b.p ? b.p : "", b.len) == -1)
		gxp_log(LOG_WARN, "%s: %s", path, strerror(errno));
	else if ((marks_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)) == -1)
		gxp_log(LOG_WARN, "%s: %s", path, strerror(errno));
	gxp_buf_free(&b);
	free(path);
}

/* The marks an earlier run left, and those of the earlier layout's
 * work/E/rows.at (taken over by gxp_spool_upgrade). */
static void
marks_load(void)
{
	char *path = spool_path("work", MARKS, NULL), *text, *line, *end;
	size_t len;

	if (gxp_read_file(path, &text, &len, 64 << 20) == 0) {
		for (line = text; (end = strchr(line, '\n')) != NULL; line = end + 1) {
			char entry[GXP_ENTRY_MAX + 1];
			long long mark;

			*end = '\0';
			if (sscanf(line, "%200s %lld", entry, &mark) == 2 && mark >= 0 &&
			    mark_find(entry) == NULL)
				mark_add(entry, mark);
		}
		free(text);
	}
	free(path);
}

static void
upgrade_mark(const char *entry, const char *dir, void *arg)
{
	char *path = xasprintf("%s/rows.at", dir), *text, *end;
	long long mark;
	size_t len;

	(void)arg;
	if (gxp_read_file(path, &text, &len, 64) == 0) {
		mark = strtoll(text, &end, 10);
		if (end != text && *end == '\n' && mark >= 0 && mark_find(entry) == NULL)
			mark_add(entry, mark);
		free(text);
	}
	free(path);
}

/* Where the captures table ended before this photo's row. */
static void
remember_mark(struct photo *p)
{
	long long mark = store_mark(st, "captures");
	char buf[GXP_ENTRY_MAX + 32];
	int n;

	if (mark < 0)
		return;
	mark_forget(p->entry);
	mark_add(p->entry, mark);
	n = snprintf(buf, sizeof buf, "%s %lld\n", p->entry, mark);
	if (marks_fd == -1 || gxp_write_all(marks_fd, buf, (size_t)n) == -1)
		gxp_log(LOG_WARN, "%s/work/%s: %s", spool, MARKS, strerror(errno));
	else
		marks_written++;
}

static long long
recall_mark(struct photo *p)
{
	struct name **pp = mark_find(p->entry);

	return pp ? strtoll((*pp)->s + strlen(p->entry) + 1, NULL, 10) : -1;
}

static void
queue_stored_row(struct photo *p)
{
	cJSON *row = capture_row(p->meta, p->cap, "stored", NULL, p->path, p->sha);
	char *url = store_object_url(st, p->path);

	cJSON_ReplaceItemInObjectCaseSensitive(row, "image_url", cJSON_CreateString(url));
	free(url);
	remember_mark(p);
	rows_add(rows, T_CAPTURES, row, p->dev, p->cap, CAP_NONE, stored_row_done, p);
}

static void
uploaded(void *arg, const struct st_result *r)
{
	struct photo *p = arg;

	uploading--;
	p->uploading = 0;
	switch (r->rc) {
	case ST_OK:
		queue_stored_row(p);
		break;
	case ST_PERM:
		photo_failed(p, 2204, "storage upload failed", r->msg);
		break;
	case ST_FATAL:
		set_fatal(r->msg);
		put_back(p);
		break;
	default:
		gaveup = 1;
		gxp_log(LOG_WARN, "device %s image %s: upload failed (%s); left in the "
		    "spool", p->dev, p->cap, r->msg);
		put_back(p);
	}
}

/* The sidecar and the bytes agree with the entry's name and each other. */
static const char *
check_entry(struct photo *p, const char *img, size_t len)
{
	const char *dev = gxp_json_str(p->meta, "device");
	const char *cap = gxp_json_str(p->meta, "capture_name");
	const char *name = gxp_json_str(p->meta, "image_name");
	const char *sha = gxp_json_str(p->meta, "sha256"), *at;
	int64_t us;
	char day[32];

	if (dev == NULL || strcmp(dev, p->dev) != 0 || cap == NULL || strcmp(cap, p->cap) != 0)
		return "the sidecar names another device or capture";
	if (name == NULL || !gxp_image_name_valid(name))
		return "the sidecar has no valid image_name";
	snprintf(p->image_name, sizeof p->image_name, "%s", name);
	if (gxp_json_int(p->meta, "image_bytes", &p->bytes) != 1 || p->bytes != (long long)len)
		return "the photo does not have the size its sidecar gives";
	gxp_sha256_hex(p->sha, img, len);
	if (sha == NULL || strcmp(sha, p->sha) != 0)
		return "the photo does not have the SHA-256 its sidecar gives";
	if ((at = gxp_json_str(p->meta, "captured_at")) == NULL || gxp_parse_time(at, &us) == -1)
		return "the sidecar has no valid captured_at";
	gxp_fmt_utc(day, us);
	snprintf(p->path, sizeof p->path, "captures/%s/%.4s/%.2s/%.2s/%s", p->dev,
	    day, day + 5, day + 8, p->cap);
	return NULL;
}

static void
seen_from_sidecar(struct photo *p)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(p->meta, "timings");
	const char *when = gxp_json_str(t, "completed_at");
	char now[32];
	int64_t us;

	if (when == NULL || gxp_parse_time(when, &us) == -1) {
		now_utc(now);
		when = now;
	}
	rows_device_seen(rows, p->dev, when);
}

static void
start_photo(struct photo *p)
{
	char *path = spool_path("ready", p->entry, ".jpg"), *img = NULL;
	const char *bad = NULL;
	long long mark;
	size_t len = 0;

	if (gxp_read_file(path, &img, &len, (size_t)gxp_cfg_int("MAX_IMAGE_BYTES")) == -1)
		bad = errno == EFBIG ? "the photo is larger than MAX_IMAGE_BYTES" :
		    "the photo cannot be read";
	else
		bad = check_entry(p, img, len);
	if (bad) {
		free(img);
		free(path);
		photo_failed(p, 2204, "bad spool entry", bad);
		return;
	}
	seen_from_sidecar(p);
	if ((mark = recall_mark(p)) >= 0 && row_written(p, mark)) {
		free(img);
		gxp_log(LOG_INFO, "device %s image %s: already stored before a restart",
		    p->dev, p->cap);
		finish_stored(p);
	} else {
		uploading++;
		p->uploading = 1;
		store_put(st, p->path, path, img, len, uploaded, p);
	}
	free(path);
}

/* ready/<name>.json that is not an entry's sidecar: to failed/ as it is. */
static void
not_an_entry(const char *name, const char *why)
{
	char *from = spool_path("ready", name, ".json"), *n, *to;

	n = xasprintf("%s.json.%lld", name, (long long)(gxp_wall_us() / 1000000));
	to = spool_path("failed", n, NULL);
	gxp_log(LOG_ERROR, "ready/%s.json: %s; moved to failed/", name, why);
	if (rename(from, to) == -1)
		gxp_log(LOG_ERROR, "%s: %s", from, strerror(errno));
	free(from);
	free(n);
	free(to);
}

/* Claims entry: ready/E.json renamed to work/E.json (the photo stays
 * ready/E.jpg), then stored. */
static void
claim(const char *name)
{
	struct photo *p = xcalloc(1, sizeof *p);
	char *from, *to;

	if (gxp_spool_entry_parse(name, p->dev, p->cap) == -1) {
		free(p);
		not_an_entry(name, "not a spool entry name");
		return;
	}
	snprintf(p->entry, sizeof p->entry, "%s", name);
	snprintf(p->image_name, sizeof p->image_name, "%.*s", GXP_NAME_MAX, p->cap);
	from = spool_path("ready", name, ".json");
	to = spool_path("work", name, ".json");
	if (rename(from, to) == -1) {
		if (errno != ENOENT)
			gxp_log(LOG_ERROR, "%s: cannot claim: %s", from, strerror(errno));
		free(p);
		free(from);
		free(to);
		return;
	}
	free(from);
	p->next = photos;
	photos = p;
	if ((p->meta = gxp_sidecar_read(to)) == NULL)
		photo_failed(p, 2204, "bad spool entry", "the sidecar is missing or not JSON");
	else
		start_photo(p);
	free(to);
}

/* --- the work list: event hints and rescans of ready/ --- */

static void
todo_add(const char *name)
{
	struct name *n = xcalloc(1, sizeof *n);

	n->s = xstrdup(name);
	*todo_tail = n;
	todo_tail = &n->next;
}

/* Oldest first. */
static void
rescan(void)
{
	char *dir = spool_path("ready", NULL, NULL);
	struct gxp_aged *list;
	long n = gxp_dir_aged(dir, &list);

	next_rescan = gxp_mono_ms() + rescan_ms;
	if (n == -1) {
		gxp_log(LOG_ERROR, "%s: %s", dir, strerror(errno));
		free(dir);
		return;
	}
	for (long i = 0; i < n; i++) {
		char entry[GXP_ENTRY_MAX + 1];

		/* a photo is ready/E.jpg and its sidecar ready/E.json */
		if (gxp_spool_sidecar_name(list[i].name, entry) == 0)
			todo_add(entry);
	}
	gxp_aged_free(list, n);
	free(dir);
}

static int
stopping(void)
{
	return gxp_sig_term || fatal || gxp_out_closed || restart;
}

static void
claim_more(void)
{
	while (todo && uploading < concurrency && !stopping()) {
		struct name *n = todo;

		if ((todo = n->next) == NULL)
			todo_tail = &todo;
		claim(n->s);
		free(n->s);
		free(n);
	}
	if (todo == NULL && !once && !eof && !stopping() && gxp_mono_ms() >= next_rescan)
		rescan();
}

/* A claimed sidecar a crash left in work/: back to ready/ beside its
 * photo; without its photo, stored already (a removal cut short): gone. */
static void
recover_one(const char *entry)
{
	char *json = spool_path("work", entry, ".json"), *jpg = spool_path("ready", entry, ".jpg");
	char *to = spool_path("ready", entry, ".json");
	char dev[GXP_DEVICE_MAX + 1], cap[GXP_CAPTURE_NAME_MAX + 1];

	if (access(jpg, F_OK) == -1 && gxp_spool_entry_parse(entry, dev, cap) == 0 &&
	    is_stored(dev, cap)) {
		if (unlink(json) == 0)
			gxp_log(LOG_INFO, "work/%s.json: stored already; removed", entry);
	} else if (rename(json, to) == 0)
		gxp_log(LOG_INFO, "work/%s.json: back to ready/", entry);
	else
		gxp_log(LOG_ERROR, "%s: cannot move back to ready/: %s", json, strerror(errno));
	free(json);
	free(jpg);
	free(to);
}

/* Moves every claimed sidecar back to ready/ (a crash left them in
 * work/), after taking over the earlier layout's work/ entries. */
static void
recover(void)
{
	char *dir = spool_path("work", NULL, NULL), entry[GXP_ENTRY_MAX + 1];
	DIR *d;
	struct dirent *e;

	marks_load();
	gxp_spool_upgrade(spool, "work", upgrade_mark, NULL);
	if ((d = opendir(dir)) == NULL)
		gxp_die_errno(EXIT_TEMP, "%s", dir);
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, GONE_PREFIX, sizeof GONE_PREFIX - 1) == 0) {
			if (gxp_rmtree_at(dirfd(d), e->d_name) == -1)
				gxp_log(LOG_WARN, "%s/%s: cannot remove: %s", dir, e->d_name,
				    strerror(errno));
			continue;
		}
		if (gxp_spool_sidecar_name(e->d_name, entry) == 0)
			recover_one(entry);
	}
	closedir(d);
	free(dir);
	marks_rewrite();
}

/* --- events --- */

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

		cJSON_DeleteItemFromObjectCaseSensitive(p, "payload");
		cJSON_AddNumberToObject(p, "payload_bytes", (double)(n / 4 * 3 - pad));
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
	static const int tables[] = { T_SENSOR, T_STATUS, T_ERRORS, T_PUBLOG };
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
		for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
			off[tables[i]] = store_mark(st, rows_table_names[tables[i]]);
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
static int
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

/* --- inbound events, the most frequent line, without a parse --- */

enum { R_EVENT, R_DEVICE, R_TOPIC, R_RECEIVED, R_TS, R_KIND, R_PAYLOAD, R_COUNT };

struct raw {
	const char *v[R_COUNT];
	size_t n[R_COUNT];
};

/* The members that matter of a well-formed object, each at most once;
 * -1 for anything else, which the parse then handles. */
static int
raw_members(const char *line, size_t len, struct raw *r)
{
	static const char *const keys[R_COUNT] = {
		"event", "device", "topic", "received_at", "ts", "kind", "payload"
	};
	const char *k, *v;
	size_t pos = 0, kl, vl;
	int rc;

	memset(r, 0, sizeof *r);
	while ((rc = gxp_json_next_member(line, len, &pos, 0, &k, &kl, &v, &vl)) == 1) {
		if (memchr(k, '\\', kl))
			return -1;
		for (int i = 0; i < R_COUNT; i++)
			if (strlen(keys[i]) == kl && memcmp(keys[i], k, kl) == 0) {
				if (r->v[i])
					return -1;
				r->v[i] = v;
				r->n[i] = vl;
			}
	}
	return rc;
}

/* A member's string without escapes into buf; -1 if it is not one. */
static int
raw_str(const struct raw *r, int i, char *buf, size_t cap)
{
	size_t n = r->n[i];

	if (r->v[i] == NULL || n < 2 || n - 2 >= cap || r->v[i][0] != '"' ||
	    memchr(r->v[i] + 1, '\\', n - 2))
		return -1;
	memcpy(buf, r->v[i] + 1, n - 2);
	buf[n - 2] = '\0';
	return 0;
}

static int
raw_is(const struct raw *r, int i, const char *lit)
{
	return r->v[i] && r->n[i] == strlen(lit) && memcmp(r->v[i], lit, r->n[i]) == 0;
}

/* What ev_inbound() makes of an inbound event, for the events gxp-assemble
 * writes; 0 leaves the line to the parse (odd devices or times, a chunk
 * payload that still holds its bytes, ...). */
static int
inbound_text(const char *line, size_t len)
{
	struct raw r;
	char dev[GXP_DEVICE_MAX + 2], at[64], when[32];
	int chunk, t = R_RECEIVED;
	const char *pv = "null", *dummy;
	size_t pn = 4, dn;
	struct gxp_buf row = { 0 };
	int64_t us;

	/* gxp-assemble writes "event" first; other layouts take the parse */
	if (len < 18 || memcmp(line, "{\"event\":\"inbound\"", 18) != 0 ||
	    raw_members(line, len, &r) == -1 || !raw_is(&r, R_EVENT, "\"inbound\"") ||
	    raw_str(&r, R_DEVICE, dev, sizeof dev) == -1 || !gxp_device_valid(dev))
		return 0;
	if (r.v[t] == NULL)
		t = R_TS;
	if (r.v[t] && (raw_str(&r, t, at, sizeof at) == -1 || gxp_parse_time(at, &us) == -1))
		return 0;
	/* escapes are the parse's: what cJSON makes of them is the row */
	for (int i = R_TOPIC; i < R_COUNT; i++)
		if (r.v[i] && memchr(r.v[i], '\\', r.n[i]))
			return 0;
	chunk = raw_is(&r, R_KIND, "\"chunk\"");
	if (r.v[R_PAYLOAD]) {
		pv = r.v[R_PAYLOAD];
		pn = r.n[R_PAYLOAD];
		if (chunk && gxp_json_raw_member(pv, pn, "payload", &dummy, &dn) == 0)
			return 0;	/* the bytes are to be left out */
	}
	if (r.v[t])
		gxp_fmt_utc(when, us);
	else
		now_utc(when);
	counters[C_EVENTS].v++;
	rows_device_seen(rows, dev, when);
	if (publog == PUBLOG_OFF || (chunk && publog == PUBLOG_NO_CHUNKS) ||
	    r.v[R_TOPIC] == NULL || r.v[R_TOPIC][0] != '"')
		return 1;
	gxp_buf_grow(&row, r.n[R_TOPIC] + pn + 96);
	gxp_buf_adds(&row, "{\"topic\":");
	gxp_buf_add(&row, r.v[R_TOPIC], r.n[R_TOPIC]);
	gxp_buf_adds(&row, ",\"direction\":\"in\",\"payload\":");
	gxp_buf_add(&row, pv, pn);
	gxp_buf_adds(&row, ",\"received_at\":\"");
	gxp_buf_adds(&row, when);
	gxp_buf_add(&row, "\"}", 2);
	rows_add_text(rows, T_PUBLOG, row.p, "topic,direction,payload,received_at", dev);
	return 1;
}

static void
line_in(char *line, size_t len)
{
	cJSON *j;

	if (inbound_text(line, len))
		return;
	j = gxp_json_parse(line, len);
	if (j == NULL || !cJSON_IsObject(j) || !event(j)) {
		counters[C_PASSED].v++;
		gxp_out_line(line, len);
	}
	cJSON_Delete(j);
}

static void
read_input(struct gxp_lines *in)
{
	char *line;
	size_t len;
	int rc;

	if (gxp_lines_fill(in) == -1 && errno != EINTR) {
		gxp_log(LOG_ERROR, "stdin: %s", strerror(errno));
		eof = 1;
		return;
	}
	while ((rc = gxp_lines_next(in, &line, &len)) != LINE_AGAIN) {
		if (rc == LINE_EOF) {
			eof = 1;
			break;
		}
		if (rc == LINE_TOO_LONG)
			gxp_log(LOG_ERROR, "line %lld: longer than MAX_LINE_BYTES; skipped",
			    gxp_lines_number(in));
		else
			line_in(line, len);
	}
}

/* --- the journal's commit record (-J) --- */

/* journal/committed: seq, the store it is about, and where the local
 * store's event tables ended when the rows of the lines up to seq had all
 * been added (gxp-spool(5)); tmp + fsync + rename. */
static int
commit_write(uint64_t seq, const long long off[T_COUNT])
{
	cJSON *c = cJSON_CreateObject(), *o = cJSON_CreateObject();
	char *path = xasprintf("%s/committed", jc.dir), *text, now[32];
	int rc;

	cJSON_AddNumberToObject(c, "v", 1);
	cJSON_AddNumberToObject(c, "seq", (double)seq);
	cJSON_AddStringToObject(c, "store", st->url_base);
	for (int t = 0; t < T_COUNT; t++)
		if (off[t] >= 0)
			cJSON_AddNumberToObject(o, rows_table_names[t], (double)off[t]);
	cJSON_AddItemToObject(c, "offsets", o);
	now_utc(now);
	cJSON_AddStringToObject(c, "at", now);
	text = gxp_json_print(c);
	if ((rc = gxp_write_atomic(path, text, strlen(text))) == -1)
		gxp_log(LOG_ERROR, "%s: %s", path, strerror(errno));
	free(text);
	free(path);
	cJSON_Delete(c);
	return rc;
}

/* A new commit when more lines are done, at most every JOURNAL_COMMIT_MS
 * (force: now). */
static void
commit_tick(int force)
{
	long long off[T_COUNT];
	uint64_t seq;

	if (jc.marks == NULL)
		return;
	seq = marks_done(jc.marks, off);
	if (seq <= jc.written || (!force && gxp_mono_ms() < jc.next_ms))
		return;
	if (commit_write(seq, off) == 0)
		jc.written = seq;
	jc.next_ms = gxp_mono_ms() + gxp_cfg_int("JOURNAL_COMMIT_MS");
}

/* -J at start: the rows written after the committed position may be made
 * again by the lines gxp-sub replays; the local store keeps them from
 * being written twice.  A record of another store (or none) is replaced
 * by one about this store, before any line is read, so that it always
 * tells where this store stood.  The offsets a commit records are where
 * every row of a later line is: for a line the journal had at start, a
 * row written before the restart may be anywhere after the offsets this
 * run began with, so those are kept until the marks pass the journal's
 * end at start (jc.head). */
static void
journal_begin(void)
{
	static const int tables[] = { T_SENSOR, T_STATUS, T_ERRORS, T_PUBLOG };
	char *path = xasprintf("%s/committed", jc.dir), *text = NULL;
	long long off[T_COUNT], seq = 0, v;
	const char *store = NULL;
	cJSON *c = NULL, *o;
	size_t len;

	if (gxp_mkdirs(jc.dir, 0755) == -1)
		gxp_die_errno(EXIT_TEMP, "journal %s", jc.dir);
	if (gxp_read_file(path, &text, &len, 1 << 16) == 0) {
		c = gxp_json_parse(text, len);
		store = gxp_json_str(c, "store");
		if (gxp_json_int(c, "seq", &seq) != 1 || seq < 0)
			seq = 0;
	}
	o = cJSON_GetObjectItemCaseSensitive(c, "offsets");
	for (int t = 0; t < T_COUNT; t++)
		off[t] = -1;
	jc.head = gxp_journal_last(jc.dir);
	if (store && strcmp(store, st->url_base) == 0) {
		for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
			if (gxp_json_int(o, rows_table_names[tables[i]], &v) == 1 && v >= 0) {
				store_known_after(st, rows_table_names[tables[i]], v);
				off[tables[i]] = v;
			}
	} else {
		for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
			off[tables[i]] = store_mark(st, rows_table_names[tables[i]]);
		if (commit_write((uint64_t)seq, off) == -1)
			gxp_die(EXIT_TEMP, "journal %s: cannot write its committed record", jc.dir);
	}
	memcpy(jc.base, off, sizeof jc.base);
	jc.written = (uint64_t)seq;
	jc.marks = marks_new();
	rows_journal(rows, jc.marks);
	cJSON_Delete(c);
	free(text);
	free(path);
}

/* --- the loop --- */

static void
update_counters(void)
{
	struct http_stats hs;
	struct rows_stats rs;

	store_stats(st, &hs);
	rows_stats(rows, &rs);
	counters[C_RETRIES].v = hs.retries;
	counters[C_REQUESTS].v = hs.requests;
	counters[C_ROWS].v = rs.written;
	counters[C_ROWS_FAILED].v = rs.failed;
	counters[C_ROWS_DROPPED].v = rs.dropped;
}

/* --- how far behind: the photos waiting, and a store that fails --- */

static long waiting = -1;	/* photos in ready/ and work/ at the last look */
static int64_t oldest_us;	/* when the oldest of them was finished */
static int64_t next_census;

static long long
oldest_age_s(void)
{
	return oldest_us ? (gxp_wall_us() - oldest_us) / 1000000 : 0;
}

/* Counts the photos waiting: every UPLOAD_RESCAN_MS, and for SIGUSR1. */
static void
census(int now)
{
	if (!now && gxp_mono_ms() < next_census)
		return;
	next_census = gxp_mono_ms() + rescan_ms;
	waiting = gxp_spool_waiting(spool, &oldest_us);
	counters[C_BACKLOG].v = waiting > 0 ? (unsigned long long)waiting : 0;
	counters[C_OLDEST].v = (unsigned long long)oldest_age_s();
}

/* While requests fail, says so within seconds and then every
 * UPLOAD_OUTAGE_REPORT_S, with what waits; and says when it is over. */
static void
watch_outage(void)
{
	static int64_t next_report;
	static int reported;
	int64_t every = gxp_cfg_int("UPLOAD_OUTAGE_REPORT_S") * 1000, now = gxp_mono_ms();
	struct http_stats hs;
	struct rows_stats rs;

	store_stats(st, &hs);
	counters[C_FAILING].v = (unsigned long long)hs.failing_ms / 1000;
	/* only Supabase's requests fail this way: the local store answers at once */
	if (hs.failing_ms == 0) {
		if (reported)
			gxp_log(LOG_INFO, "Supabase answers again; %ld photo%s waiting",
			    waiting, waiting == 1 ? "" : "s");
		reported = 0;
		next_report = 0;
		return;
	}
	if (hs.failing_ms < (every < 5000 ? every : 5000) || now < next_report)
		return;
	census(1);
	rows_stats(rows, &rs);
	gxp_log(LOG_WARN, hs.unreachable ? "Supabase unreachable for %lld s (%s): %ld "
	    "photo%s waiting, oldest %lld s; %zu row%s queued; retrying" : "Supabase failing "
	    "for %lld s (%s): %ld photo%s waiting, oldest %lld s; %zu row%s queued; retrying",
	    hs.failing_ms / 1000, hs.failure, waiting, waiting == 1 ? "" : "s",
	    oldest_age_s(), rs.queued, rs.queued == 1 ? "" : "s");
	reported = 1;
	next_report = now + every;
}

static int
finishing(void)
{
	return once || eof || stopping();
}

static int
settled(void)
{
	return finishing() && photos == NULL && rows_idle(rows) && !store_busy(st) &&
	    (todo == NULL || stopping());
}

static int
wait_ms(int64_t deadline)
{
	int64_t t = 1000, now = gxp_mono_ms(), d;

	if (todo && uploading < concurrency && !stopping())
		return 0;
	if (!finishing() && next_rescan - now < t)
		t = next_rescan - now;
	if ((d = rows_due_ms(rows)) >= 0 && d < t)
		t = d;
	if (deadline && deadline - now < t)
		t = deadline - now;
	return t < 0 ? 0 : (int)t;
}

static void
drain_deadline(int64_t *deadline)
{
	if (*deadline == 0 && stopping()) {
		*deadline = gxp_mono_ms() + gxp_cfg_int("UPLOAD_DRAIN_MS");
		if (gxp_sig_term)
			gxp_log(LOG_INFO, "SIGTERM: finishing %d photo%s in flight",
			    uploading, uploading == 1 ? "" : "s");
	}
}

/* With a journal, ROW_QUEUE_MAX rows waiting stop the reading (the
 * journal holds what follows) instead of dropping rows. */
static int
rows_waiting(void)
{
	struct rows_stats rs;

	if (jc.marks == NULL)
		return 0;
	rows_stats(rows, &rs);
	return (long long)rs.queued >= gxp_cfg_int("ROW_QUEUE_MAX");
}

/* With a journal: the commit, and a row the store gave up on ends the
 * run, so that the lines that made it are read again after the restart. */
static void
journal_check(void)
{
	struct rows_stats rs;

	if (jc.marks == NULL)
		return;
	commit_tick(0);
	rows_stats(rows, &rs);
	if (rs.kept > 0 && !restart) {
		gxp_log(LOG_WARN, "%zu row%s not written (above): ending, so that the journal "
		    "gives their lines again after the restart", rs.kept, rs.kept == 1 ? "" : "s");
		restart = gaveup = 1;
	}
}

static void
run(void)
{
	struct gxp_lines *in = once ? NULL : gxp_lines_open(0,
	    (size_t)gxp_cfg_int("MAX_LINE_BYTES"));
	int64_t deadline = 0;
	int was_eof = 0;

	rescan();
	for (;;) {
		short rev = 0;
		int reading = in && !eof && !stopping() && !rows_waiting();

		claim_more();
		/* at the end, nothing is gained by waiting for more rows */
		rows_flush(rows, stopping() || (finishing() && !uploading && !todo));
		retire();
		drain_deadline(&deadline);
		if (settled() || (deadline && gxp_mono_ms() >= deadline))
			break;
		store_wait(st, wait_ms(deadline), reading ? 0 : -1, &rev);
		if (reading && (rev & (POLLIN | POLLHUP | POLLERR)))
			read_input(in);
		if (rows_fatal(rows))
			set_fatal(rows_fatal(rows));
		journal_check();
		if (eof && !was_eof) {
			/* end of input: finish what the spool holds, like --once */
			was_eof = 1;
			store_attempts(st, (int)gxp_cfg_int("UPLOAD_ONCE_ATTEMPTS"));
			rescan();
		}
		update_counters();
		census(gxp_sig_usr1);
		watch_outage();
		gxp_metrics_tick(0);
	}
	gxp_lines_free(in);
}

/* Rows an earlier run could not write (rows/NAME.ndjson): queued again,
 * and the file removed; what this run cannot write either goes to a new
 * file when it ends. */
static void
load_rows(void)
{
	char *dir = spool_path("rows", NULL, NULL), *path, **names;
	long n = gxp_dir_names(dir, NULL, 0, &names), got, bad;

	if (n == -1)
		gxp_log(LOG_ERROR, "%s: %s", dir, strerror(errno));
	for (long i = 0; i < n; i++) {
		const char *f = names[i];
		size_t len = strlen(f);

		path = spool_path("rows", f, NULL);
		if (strstr(f, ".tmp."))
			unlink(path);	/* a write a crash cut short */
		else if (f[0] != '.' && len > 7 && strcmp(f + len - 7, ".ndjson") == 0) {
			if ((got = rows_load(rows, path, &bad)) == -1)
				gxp_log(LOG_ERROR, "%s: %s", path, strerror(errno));
			else {
				gxp_log(LOG_INFO, "rows/%s: %ld row%s an earlier run did not "
				    "write, queued again", f, got, got == 1 ? "" : "s");
				if (bad)
					gxp_log(LOG_WARN, "rows/%s: %ld line%s not rows; left "
					    "out", f, bad, bad == 1 ? "" : "s");
				if (unlink(path) == -1)
					gxp_log(LOG_ERROR, "%s: %s", path, strerror(errno));
			}
		}
		free(path);
	}
	if (n >= 0)
		gxp_names_free(names, n);
	free(dir);
}

/* What a drain cut short goes back to ready/; rows not written go to
 * rows/ for the next run. */
static void
leave(void)
{
	char name[64];
	char *path;
	long kept;

	retire();
	while (photos)
		put_back(photos);
	commit_tick(1);
	if (marks == NULL) {
		/* nothing claimed is left: no marks to keep */
		path = spool_path("work", MARKS, NULL);
		unlink(path);
		free(path);
	}
	snprintf(name, sizeof name, "%lld.%ld.ndjson", (long long)gxp_wall_us(),
	    (long)getpid());
	path = spool_path("rows", name, NULL);
	if ((kept = rows_spill(rows, path)) == -1)
		gxp_log(LOG_ERROR, "%s: %s; the rows not written are lost", path,
		    strerror(errno));
	else if (kept > 0) {
		gxp_log(LOG_WARN, "%ld row%s not written yet, kept in rows/%s for the "
		    "next run", kept, kept == 1 ? "" : "s", name);
		if (!stopping())
			gaveup = 1;
	}
	free(path);
	while (todo) {
		struct name *n = todo;

		todo = n->next;
		free(n->s);
		free(n);
	}
}

/* --check: what waits in the spool, and for how long. */
static void
check_spool(void)
{
	spool = gxp_cfg("GXP_SPOOL");
	if ((waiting = gxp_spool_waiting(spool, &oldest_us)) == -1)
		printf("gxp-upload: ok: spool %s: no ready/ yet (%s)\n", spool, strerror(errno));
	else if (waiting == 0)
		printf("gxp-upload: ok: spool %s: no photo waiting\n", spool);
	else
		printf("gxp-upload: ok: spool %s: %ld photo%s waiting, oldest %lld s\n", spool,
		    waiting, waiting == 1 ? "" : "s", oldest_age_s());
}

/* The spool's upload.lock, which names its holder ("<pid> once" or
 * "<pid> run").  Another gxp-upload of a pipeline on the same spool is a
 * mistake (exit 100); a --once run (cron's safety net) stores the same
 * photos and ends, so a pipeline's gxp-upload waits for it, and --once
 * leaves the work to whoever holds the lock. */
static int
lock_holder_runs(const char *lock)
{
	char *text = NULL;
	size_t len = 0;
	long pid = 0;
	int runs = 0;

	/* a holder that has just taken the lock may not have said who it is:
	 * the text left by an earlier holder, now gone, does not count */
	if (gxp_read_file(lock, &text, &len, 64) == 0 && len > 0 &&
	    sscanf(text, "%ld", &pid) == 1 && pid > 0 && kill((pid_t)pid, 0) == 0)
		runs = strstr(text, " run") != NULL;
	free(text);
	return runs;
}

static void
take_lock(const char *lock)
{
	int64_t next_say = 0;
	int fd;
	char who[32];

	while ((fd = gxp_lock_file(lock)) == -1) {
		if (errno != EWOULDBLOCK)
			gxp_die_errno(EXIT_TEMP, "%s", lock);
		if (once) {
			gxp_log(LOG_INFO, "%s: another gxp-upload is storing this spool's "
			    "photos; leaving them to it", lock);
			exit(EXIT_OK);
		}
		if (lock_holder_runs(lock))
			gxp_die(EXIT_PERM, "%s: another gxp-upload is using this spool", lock);
		if (gxp_mono_ms() >= next_say) {
			gxp_log(LOG_INFO, "%s: a gxp-upload --once is storing this spool's "
			    "photos; waiting for it to end", lock);
			next_say = gxp_mono_ms() + 30000;
		}
		if (gxp_sig_term)
			exit(EXIT_OK);
		gxp_sleep_ms(100);
	}
	snprintf(who, sizeof who, "%ld %s\n", (long)getpid(), once ? "once" : "run");
	if (ftruncate(fd, 0) == -1 || pwrite(fd, who, strlen(who), 0) == -1)
		gxp_log(LOG_WARN, "%s: %s", lock, strerror(errno));
}

static void
configure(void)
{
	const char *pl = gxp_cfg("PUBLISH_LOG");
	char *lock, *stored;

	if (strcmp(pl, "all") == 0)
		publog = PUBLOG_ALL;
	else if (strcmp(pl, "no-chunks") == 0)
		publog = PUBLOG_NO_CHUNKS;
	else if (strcmp(pl, "off") == 0)
		publog = PUBLOG_OFF;
	else
		gxp_die(EXIT_PERM, "PUBLISH_LOG=%s (%s): expected all, no-chunks or off",
		    pl, gxp_cfg_source("PUBLISH_LOG"));
	concurrency = (int)gxp_cfg_int("UPLOAD_CONCURRENCY");
	rescan_ms = gxp_cfg_int("UPLOAD_RESCAN_MS");
	spool = gxp_cfg("GXP_SPOOL");
	if (gxp_spool_init(spool) == -1)
		gxp_die_errno(gxp_path_error_permanent(errno) ? EXIT_PERM : EXIT_TEMP,
		    "spool %s", spool);
	lock = xasprintf("%s/upload.lock", spool);
	take_lock(lock);
	free(lock);
	/* stored/ records a killed predecessor moved but had not synced */
	gxp_spool_upgrade_stored(spool);
	stored = spool_path("stored", NULL, NULL);
	if ((spool_fd = open(spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    gxp_fsync_dir(stored) == -1)
		gxp_die_errno(EXIT_TEMP, "spool %s", spool);
	free(stored);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'C' },
		{ "env", required_argument, NULL, 'e' },
		{ "once", no_argument, NULL, 'o' },
		{ "spool", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *envfile = NULL;
	int c, rc, check = 0;

	gxp_init(argv[0]);
	while ((c = getopt_long(argc, argv, ":J:", longopts, NULL)) != -1) {
		switch (c) {
		case 'C': check = 1; break;
		case 'e': envfile = optarg; break;
		case 'J': jc.dir = optarg; break;
		case 'o': once = 1; break;
		case 's': gxp_config_set("GXP_SPOOL", optarg); break;
		case 'h': usage(EXIT_OK); break;
		default:
			gxp_bad_option(c, argv);
			usage(EXIT_PERM);
		}
	}
	if (optind != argc || (check && once) || (jc.dir && *jc.dir == '\0')) {
		gxp_log(LOG_ERROR, "%s", optind != argc ? "unexpected argument" :
		    check && once ? "--check and --once exclude each other" :
		    "-J needs a directory");
		usage(EXIT_PERM);
	}
	gxp_config_common(envfile);
	gxp_signals_init();
	if (check) {
		gxp_config_warnings();
		st = store_open();
		rc = store_check(st);
		check_spool();
		store_free(st);
		gxp_config_free();
		return rc;
	}
	configure();
	gxp_metrics_init(counters, sizeof counters / sizeof counters[0]);
	recover();
	st = store_open();
	/* the local store writes at once and syncs once per turn of the loop:
	 * the more photos a turn takes, the fewer syncs */
	if (strcmp(st->kind, "dir") == 0)
		concurrency = LOCAL_BATCH;
	rows = rows_new(st);
	if (once)
		store_attempts(st, (int)gxp_cfg_int("UPLOAD_ONCE_ATTEMPTS"));
	load_rows();
	if (jc.dir)
		journal_begin();
	run();
	leave();
	update_counters();
	gxp_metrics_tick(1);
	rc = fatal ? EXIT_PERM : gaveup ? EXIT_TEMP : EXIT_OK;
	rows_free(rows);
	marks_free(jc.marks);
	store_free(st);
	wakes_free();
	close(spool_fd);
	if (marks_fd != -1)
		close(marks_fd);
	while (marks) {
		struct name *n = marks;

		marks = n->next;
		free(n->s);
		free(n);
	}
	gxp_config_free();
	return rc;
}
