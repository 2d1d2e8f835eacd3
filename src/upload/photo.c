/* photo.c: a photo claimed (ready/E.json renamed to work/E.json), its
 * photo read and checked against its sidecar, sent to the store, then its
 * captures row queued; a row an earlier run wrote is found instead of
 * written twice (marks.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upload.h"

struct photo *photos;
int uploading;

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
void
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
