/* src_dir.c: the local store as a source.  Its tables are append-only
 * files, so a run reads each one from where the last run stopped (the
 * offset after the last whole line, kept with the file's inode): a file
 * replaced or cut shorter is read again from the start, with the rest.
 * A line gxp-upload is still writing (no newline yet) waits for the next
 * run.  Photos are the files below <store>/<bucket>/, linked from the
 * pages by a relative path. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report.h"

#define CHUNK (1 << 20)

struct cursor {
	long long ino, off;
};

struct dsrc {
	struct source base;
	char *dir, *bucket;
	struct cursor cur[R_COUNT];
	long long max_line, max_image;
	char **hrefs;
	size_t nhrefs;
};

struct reader {
	struct dsrc *s;
	struct fleet *f;
	int table;
	struct gxp_buf line;
	long long skipped, first_bad;
	int wakes;			/* control/next_wake.ndjson's lines */
};

/* A line of gxp-control's control/next_wake.ndjson, {"device_hw_id":..,
 * "next_wake_at":..}, as the devices row it stands for: the local store
 * keeps devices.next_wake_at there, since devices.ndjson is gxp-upload's. */
static cJSON *
wake_row(cJSON *j)
{
	const char *hw = gxp_json_str(j, "device_hw_id");
	const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "next_wake_at");
	cJSON *row = NULL;
	char id[37];

	if (hw && gxp_device_valid(hw) && at) {
		gxp_uuid_of(id, "gxp-device", hw, NULL);
		row = cJSON_CreateObject();
		cJSON_AddStringToObject(row, "device_id", id);
		cJSON_AddItemToObject(row, "next_wake_at", cJSON_Duplicate(at, 0));
	}
	cJSON_Delete(j);
	return row;
}

static void
take_line(struct reader *r, long long at)
{
	cJSON *j;

	if (r->line.len > (size_t)r->s->max_line ||
	    (j = gxp_json_parse(r->line.p, r->line.len)) == NULL ||
	    (r->wakes && (j = wake_row(j)) == NULL)) {
		if (r->skipped++ == 0)
			r->first_bad = at;
		r->f->rows++;
		r->f->bad_rows++;
		return;
	}
	if (r->wakes) {
		/* read whole every run, so not counted as rows read; a
		 * schedule counts for a device the devices table has */
		if (map_get(r->f->by_uuid, gxp_json_str(j, "device_id")) != NULL) {
			model_row(r->f, r->table, j);
			r->f->rows--;
		}
	} else if (model_row(r->f, r->table, j) == -1 && r->skipped++ == 0)
		r->first_bad = at;
	cJSON_Delete(j);
}

/* The lines of buf; a partial last line stays in r->line.  Returns how
 * many bytes ended a line. */
static long long
split(struct reader *r, const char *buf, size_t n, long long at)
{
	long long done = 0;

	for (size_t i = 0; i < n; ) {
		const char *nl = memchr(buf + i, '\n', n - i);
		size_t len = nl ? (size_t)(nl - (buf + i)) : n - i;

		/* an over-long line is not kept, only its length */
		if (r->line.len <= (size_t)r->s->max_line)
			gxp_buf_add(&r->line, buf + i, len);
		else
			r->line.len += len;
		if (nl == NULL)
			break;
		take_line(r, at + (long long)i);
		r->line.len = 0;
		i += len + 1;
		done = (long long)i;
	}
	return done;
}

/* Table t from its cursor; t == R_COUNT: control/next_wake.ndjson, whole
 * (gxp-control rewrites it, one line a device, when it grows). */
static int
read_table(struct dsrc *s, struct fleet *f, int t)
{
	char *path = t == R_COUNT ? xasprintf("%s/control/next_wake.ndjson", s->dir) :
	    xasprintf("%s/%s.ndjson", s->dir, r_table_names[t]);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct reader r = { s, f, t == R_COUNT ? R_DEVICES : t, { 0 }, 0, 0, t == R_COUNT };
	struct cursor whole = { 0, 0 }, *cur = t == R_COUNT ? &whole : &s->cur[t];
	char *buf;
	long long off = cur->off, end = off;
	ssize_t n;

	if (fd == -1) {
		free(path);
		cur->off = cur->ino = 0;
		return errno == ENOENT ? 0 : -1;
	}
	buf = xmalloc(CHUNK);
	while ((n = pread(fd, buf, CHUNK, (off_t)off)) > 0) {
		long long done = split(&r, buf, (size_t)n, off);

		if (done > 0)
			end = off + done;
		off += n;
	}
	if (r.skipped)
		gxp_log(LOG_WARN, "%s: %lld lines skipped (not a row: not JSON, no device_id, "
		    "or longer than MAX_LINE_BYTES), the first at byte %lld", path,
		    r.skipped, r.first_bad);
	cur->off = end;
	free(buf);
	gxp_buf_free(&r.line);
	close(fd);
	free(path);
	return n == -1 ? -1 : 0;
}

/* Whether every table is still the file the cursors were taken on and at
 * least as long. */
static int
cursors_valid(struct dsrc *s)
{
	for (int t = 0; t < R_COUNT; t++) {
		char *path = xasprintf("%s/%s.ndjson", s->dir, r_table_names[t]);
		struct stat sb;
		int ok = stat(path, &sb) == 0 ? s->cur[t].off == 0 ||
		    ((long long)sb.st_ino == s->cur[t].ino && sb.st_size >= s->cur[t].off) :
		    s->cur[t].off == 0;

		if (ok && stat(path, &sb) == 0)
			s->cur[t].ino = (long long)sb.st_ino;
		free(path);
		if (!ok) {
			gxp_log(LOG_INFO, "local store: %s.ndjson was replaced or cut: "
			    "reading every table again", r_table_names[t]);
			return 0;
		}
	}
	return 1;
}

static int
dir_read(struct source *src, struct fleet *f, int full)
{
	struct dsrc *s = (struct dsrc *)src;

	if (full || !cursors_valid(s)) {
		fleet_clear(f);
		memset(s->cur, 0, sizeof s->cur);
		cursors_valid(s);
	}
	for (int t = 0; t <= R_COUNT; t++)
		if (read_table(s, f, t) == -1) {
			gxp_log(LOG_ERROR, "local store: %s/%s.ndjson: %s", s->dir,
			    t == R_COUNT ? "control/next_wake" : r_table_names[t], strerror(errno));
			return EXIT_TEMP;
		}
	return EXIT_OK;
}

static void
dir_fetch(struct source *src, const char *path, fetch_fn *fn, void *arg)
{
	struct dsrc *s = (struct dsrc *)src;
	char *full = xasprintf("%s/%s/%s", s->dir, s->bucket, path), *data, *why;
	size_t len;

	src->downloads++;
	if (gxp_read_file(full, &data, &len, (size_t)s->max_image) == 0) {
		fn(arg, ST_OK, data, len, NULL);
		free(data);
	} else {
		int e = errno;

		why = e == EFBIG ? xasprintf("%s: larger than MAX_IMAGE_BYTES", full) :
		    xasprintf("%s: %s", full, strerror(e));
		fn(arg, e == EIO || e == ENOMEM || e == EMFILE || e == ENFILE ? ST_GAVEUP :
		    ST_PERM, NULL, 0, why);
		free(why);
	}
	free(full);
}

static void
dir_wait(struct source *src, int timeout_ms)
{
	(void)src, (void)timeout_ms;
}

/* The way from directory from to directory to, both absolute and
 * without "." or ".." (realpath(3)). */
static char *
relpath(const char *from, const char *to)
{
	struct gxp_buf b = { 0 };
	size_t common = 0, i;

	/* the longest common prefix that ends at a component's end */
	for (i = 0; from[i] && from[i] == to[i]; i++)
		if (from[i + 1] == '\0' || from[i + 1] == '/')
			if (to[i + 1] == '\0' || to[i + 1] == '/')
				common = i + 1;
	for (const char *p = from + common; *p; p++)
		if (*p == '/')
			gxp_buf_adds(&b, "../");
	gxp_buf_adds(&b, to[common] == '/' ? to + common + 1 : to + common);
	if (b.len == 0)
		gxp_buf_adds(&b, ".");
	else if (b.p[b.len - 1] == '/')
		b.p[--b.len] = '\0';
	return b.p;
}

static void
set_href(struct dsrc *s, struct rcap *c, const char *root)
{
	struct gxp_buf b = { 0 };

	if (c->status != CAP_STORED || c->path == NULL || !storage_path_safe(c->path))
		return;
	url_path_esc(&b, root);		/* the store's path may hold a # or a % */
	gxp_buf_adds(&b, "/");
	url_path_esc(&b, c->path);
	s->hrefs = xrealloc(s->hrefs, (s->nhrefs + 1) * sizeof *s->hrefs);
	s->hrefs[s->nhrefs++] = b.p;
	c->href = b.p;
}

static int
dir_links(struct source *src, struct fleet *f, const char *outdir, struct state_extra *x)
{
	struct dsrc *s = (struct dsrc *)src;
	char from[PATH_MAX], to[PATH_MAX], *objects = xasprintf("%s/%s", s->dir, s->bucket);
	char *pages = xasprintf("%s/devices", outdir), *root;

	(void)x;
	if (realpath(pages, from) == NULL || realpath(objects, to) == NULL) {
		free(pages);
		free(objects);
		return 0;	/* no photo stored yet: nothing to link */
	}
	root = relpath(from, to);
	for (size_t i = 0; i < f->ndevs; i++) {
		struct rdev *d = f->devs[i];

		if (d->has_photo)
			set_href(s, &d->photo, root);
		for (size_t k = 0; k < d->ncaps && k < (size_t)f->recent_photos; k++)
			set_href(s, &d->caps[k], root);
	}
	free(root);
	free(pages);
	free(objects);
	return 0;
}

static cJSON *
dir_cursors(struct source *src)
{
	struct dsrc *s = (struct dsrc *)src;
	cJSON *o = cJSON_CreateObject();

	for (int t = 0; t < R_COUNT; t++) {
		cJSON *c = cJSON_CreateObject();

		cJSON_AddNumberToObject(c, "ino", (double)s->cur[t].ino);
		cJSON_AddNumberToObject(c, "off", (double)s->cur[t].off);
		cJSON_AddItemToObject(o, r_table_names[t], c);
	}
	return o;
}

static void
dir_set_cursors(struct source *src, const cJSON *o)
{
	struct dsrc *s = (struct dsrc *)src;

	for (int t = 0; t < R_COUNT; t++) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, r_table_names[t]);
		long long ino, off;

		if (gxp_json_int(c, "ino", &ino) == 1 && gxp_json_int(c, "off", &off) == 1 &&
		    off >= 0) {
			s->cur[t].ino = ino;
			s->cur[t].off = off;
		}
	}
}

static int
dir_check(struct source *src)
{
	struct dsrc *s = (struct dsrc *)src;

	if (access(s->dir, R_OK | X_OK) == -1) {
		printf("gxp-report: FAIL: local store %s: %s\n", s->dir, strerror(errno));
		return EXIT_PERM;
	}
	for (int t = 0; t < R_COUNT; t++) {
		char *path = xasprintf("%s/%s.ndjson", s->dir, r_table_names[t]);
		int bad = access(path, R_OK) == -1 && errno != ENOENT;

		if (bad)
			printf("gxp-report: FAIL: %s: %s\n", path, strerror(errno));
		free(path);
		if (bad)
			return EXIT_PERM;
	}
	printf("gxp-report: ok: local store %s readable (bucket %s)\n", s->dir, s->bucket);
	return EXIT_OK;
}

static void
dir_free(struct source *src)
{
	struct dsrc *s = (struct dsrc *)src;

	for (size_t i = 0; i < s->nhrefs; i++)
		free(s->hrefs[i]);
	free(s->hrefs);
	free(s->dir);
	free(s->bucket);
	free(src->id);
	free(src->label);
	free(s);
}

struct source *
src_dir_open(const char *dir, const char *bucket)
{
	struct dsrc *s = xcalloc(1, sizeof *s);
	char real[PATH_MAX];

	if (realpath(dir, real) == NULL)
		gxp_die(EXIT_PERM, "local store %s: %s (GXP_STORE)", dir, strerror(errno));
	s->base.kind = "dir";
	s->base.id = xasprintf("local store %s, bucket %s", real, bucket);
	s->base.label = xstrdup(s->base.id);
	s->base.read = dir_read;
	s->base.fetch = dir_fetch;
	s->base.wait = dir_wait;
	s->base.links = dir_links;
	s->base.cursors = dir_cursors;
	s->base.set_cursors = dir_set_cursors;
	s->base.check = dir_check;
	s->base.free = dir_free;
	s->dir = xstrdup(real);
	s->bucket = xstrdup(bucket);
	s->max_line = gxp_cfg_int("MAX_LINE_BYTES");
	s->max_image = gxp_cfg_int("MAX_IMAGE_BYTES");
	return &s->base;
}
