/* state.c: what a run leaves for the next, in <dir>/.gxp-report.state,
 * one JSON object a line, written tmp + fsync + rename after the pages:
 *
 *   {"v":1,"source":"...","full_at":"...","cursors":{...}}   the source's read position
 *   {"device":{...}}      a device: a gxp_report_devices row and its lists
 *   {"thumb":"KEY"}       thumbs/KEY.jpg is made and synced
 *   {"thumb":"KEY","bad":"why"}   that photo cannot be shown
 *   {"signed":"PATH","url":"...","exp":"..."}   a signed URL and its expiry
 *   {"page":"devices/ID.html","sum":"..."}   the sha256 of a page written
 *
 * A state that does not parse, is of another version or of another source
 * is set aside: the run reads everything again. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

#define STATE_MAX (1LL << 32)

void
signed_url_free(void *p)
{
	struct signed_url *s = p;

	if (s) {
		free(s->url);
		free(s);
	}
}

void
state_extra_free(struct state_extra *x)
{
	map_free(x->thumbs, free);
	map_free(x->signed_urls, signed_url_free);
	map_free(x->sums, free);
	x->thumbs = x->signed_urls = x->sums = NULL;
}

static int
header(const cJSON *j, struct source *src, struct state_extra *x)
{
	const char *source = gxp_json_str(j, "source"), *full = gxp_json_str(j, "full_at");
	long long v;

	if (gxp_json_int(j, "v", &v) != 1 || v != 1 || source == NULL)
		return -1;
	if (strcmp(source, src->id) != 0) {
		gxp_log(LOG_INFO, "state: made from %s, not %s: reading everything again",
		    source, src->id);
		return 0;
	}
	if (full == NULL || gxp_parse_time(full, &x->full_at) == -1)
		x->full_at = 0;
	src->set_cursors(src, cJSON_GetObjectItemCaseSensitive(j, "cursors"));
	return 1;
}

static int
line(const cJSON *j, struct fleet *f, struct state_extra *x)
{
	const cJSON *dev = cJSON_GetObjectItemCaseSensitive(j, "device");
	const char *thumb = gxp_json_str(j, "thumb"), *path = gxp_json_str(j, "signed");
	const char *page = gxp_json_str(j, "page"), *sum = gxp_json_str(j, "sum");

	if (cJSON_IsObject(dev))
		return model_device_load(f, dev);
	if (page && sum) {
		free(map_put(x->sums, page, xstrdup(sum)));
		return 0;
	}
	if (thumb) {
		const char *why = gxp_json_str(j, "bad");

		free(map_put(x->thumbs, thumb, xstrdup(why ? why : "")));
		return 0;
	}
	if (path) {
		const char *url = gxp_json_str(j, "url"), *exp = gxp_json_str(j, "exp");
		struct signed_url *s = xcalloc(1, sizeof *s);

		if (url == NULL || exp == NULL || gxp_parse_time(exp, &s->exp) == -1) {
			free(s);
			return -1;
		}
		s->url = xstrdup(url);
		signed_url_free(map_put(x->signed_urls, path, s));
		return 0;
	}
	return -1;
}

static void
forget(struct fleet *f, struct state_extra *x)
{
	fleet_clear(f);
	state_extra_free(x);
	x->thumbs = map_new();
	x->signed_urls = map_new();
	x->sums = map_new();
	x->full_at = 0;
}

/* 1: loaded; 0: none (or set aside), start afresh. */
int
state_load(const char *path, struct source *src, struct fleet *f, struct state_extra *x)
{
	char *buf, *p, *nl;
	size_t len;
	long n = 0;
	int rc = 1;

	forget(f, x);
	if (gxp_read_file(path, &buf, &len, (size_t)STATE_MAX) == -1) {
		if (errno != ENOENT)
			gxp_log(LOG_WARN, "%s: %s: reading everything again", path,
			    strerror(errno));
		return 0;
	}
	for (p = buf; rc == 1 && (nl = memchr(p, '\n', len - (size_t)(p - buf))); p = nl + 1) {
		cJSON *j = gxp_json_parse(p, (size_t)(nl - p));

		n++;
		if (j == NULL)
			rc = -1;
		else if (n == 1)
			rc = header(j, src, x);
		else if (line(j, f, x) == -1)
			rc = -1;
		cJSON_Delete(j);
	}
	if (rc == 1 && (n == 0 || p != buf + len))
		rc = -1;
	if (rc == -1)
		gxp_log(LOG_WARN, "%s: line %ld is damaged: reading everything again", path, n);
	if (rc != 1)
		forget(f, x);
	free(buf);
	return rc == 1;
}

static void
add_json_line(struct gxp_buf *b, cJSON *j)
{
	char *s = gxp_json_print(j);

	gxp_buf_adds(b, s);
	gxp_buf_add(b, "\n", 1);
	free(s);
	cJSON_Delete(j);
}

static void
save_thumb(const char *key, void *val, void *arg)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddStringToObject(j, "thumb", key);
	if (*(const char *)val)
		cJSON_AddStringToObject(j, "bad", val);
	add_json_line(arg, j);
}

static void
save_sum(const char *page, void *val, void *arg)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddStringToObject(j, "page", page);
	cJSON_AddStringToObject(j, "sum", val);
	add_json_line(arg, j);
}

static void
save_signed(const char *path, void *val, void *arg)
{
	const struct signed_url *s = val;
	cJSON *j = cJSON_CreateObject();
	char exp[32];

	gxp_fmt_utc(exp, s->exp);
	cJSON_AddStringToObject(j, "signed", path);
	cJSON_AddStringToObject(j, "url", s->url);
	cJSON_AddStringToObject(j, "exp", exp);
	add_json_line(arg, j);
}

int
state_save(const char *path, struct source *src, const struct fleet *f,
    const struct state_extra *x)
{
	struct gxp_buf b = { 0 };
	cJSON *h = cJSON_CreateObject();
	char full[32];
	int rc;

	cJSON_AddNumberToObject(h, "v", 1);
	cJSON_AddStringToObject(h, "source", src->id);
	gxp_fmt_utc(full, x->full_at);
	cJSON_AddStringToObject(h, "full_at", full);
	cJSON_AddItemToObject(h, "cursors", src->cursors(src));
	add_json_line(&b, h);
	for (size_t i = 0; i < f->ndevs; i++) {
		cJSON *j = cJSON_CreateObject();

		cJSON_AddItemToObject(j, "device", model_device_json(f->devs[i]));
		add_json_line(&b, j);
	}
	map_each(x->thumbs, save_thumb, &b);
	map_each(x->signed_urls, save_signed, &b);
	map_each(x->sums, save_sum, &b);
	if ((rc = gxp_write_atomic(path, b.p, b.len)) == -1)
		gxp_log(LOG_ERROR, "%s: %s", path, strerror(errno));
	gxp_buf_free(&b);
	return rc;
}
