/* finish.c: a photo's end.  Stored: the events and the ACK_OK out, then
 * retired at the turn's end (its sidecar to stored/, one directory sync
 * for all, the photo removed).  Failed: its rows, then failed/E.<seconds>/.
 * Neither: its sidecar put back in ready/ for the next run or rescan. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "upload.h"

static struct name *retiring;	/* photos stored, to retire at the turn's end */

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

/* The photos stored in this turn of the loop: each sidecar renamed to
 * stored/, the directory synced once for all, then the photos removed.
 * A crash before the sync only repeats the end of the work; one after it
 * leaves photos without a sidecar, which gxp-assemble removes at its start
 * (gxp-upload(1), FILES). */
void
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
void
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

	for (int i = 0, made = 0; !made; i++) {
		free(name);
		free(to);
		name = xasprintf("%s.%lld", p->entry, secs + i);
		to = spool_path("failed", name, NULL);
		if (mkdir(to, 0755) == 0)
			made = 1;
		else if (errno != EEXIST || i == 99) {
			gxp_log(LOG_ERROR, "%s: %s; the photo waits in ready/ for the next try",
			    to, strerror(errno));
			free(name);
			free(to);
			put_back(p);
			return;
		}
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
void
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

/* Object and row are durable: tell the device, remember, retire. */
void
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

void
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
