/* store_dir.c: the local store.  Objects live at <dir>/<bucket>/<path>,
 * written to a temporary file and renamed; rows are appended to
 * <dir>/<table>.ndjson, one JSON object a line with the Supabase column
 * names, each batch built whole and appended with one write(2) on an
 * O_APPEND descriptor under an flock(2).  A line torn by a crash is cut
 * off before the next append.
 *
 * Nothing is reported done before it is synced, but the syncs are shared:
 * what was written since the last turn of the caller's loop is synced at
 * once before the completions are delivered (a few files one by one, more
 * with one syncfs(2)), so a burst of photos costs one sync, not one each.
 *
 * Every line carries its row's key, chosen so that the same row always gets
 * the same key: devices.device_id and captures.capture_id are name-based
 * UUIDs of the MAC and of (device_id, device_capture_id); the other tables'
 * rows carry the event_id rows.c gave them, as in Supabase.  devices and
 * captures are upsert logs (as in the database, the last line for a key is
 * the row);
 * see gxp-upload(1), FILES, for how a restart avoids writing a line twice.
 * After a crash in a journaled pipeline, the lines read again make their
 * rows again: the event_ids of the rows written after the committed
 * position (store_known_after) are kept in a set, and a row whose id is in
 * it is not appended again, as Supabase ignores it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

struct done {
	struct done *next;
	st_done_fn *fn;
	void *arg;
	int rc;
	char *msg, *body;
	size_t len;
};

/* event_ids, 16 bytes each, in an open-addressing table (all zero: empty) */
static const unsigned char zero_id[16];

struct idset {
	unsigned char (*id)[16];
	size_t n, cap;
};

struct dirst {
	struct store base;
	struct idset known[T_COUNT];	/* written before a restart, may come again */
	unsigned long long skipped;
	char *dir;
	int dirfd;
	int fd[T_COUNT], dirty[T_COUNT];
	struct syncset objects;		/* written since the last sync */
	struct done *head, **tail;
	int queued;
	unsigned long long ops, bytes;
};

static void
complete(struct dirst *d, st_done_fn *fn, void *arg, int rc, const char *msg,
    char *body, size_t len)
{
	struct done *c = xcalloc(1, sizeof *c);

	c->fn = fn;
	c->arg = arg;
	c->rc = rc;
	c->msg = xstrdup(msg ? msg : "");
	c->body = body;
	c->len = len;
	*d->tail = c;
	d->tail = &c->next;
	d->queued++;
	d->ops++;
}

/* A link to src when there is one on the same file system (the spool's
 * synced image.jpg: nothing to copy or sync but a directory), else a copy. */
static void
dir_put(struct store *st, const char *path, const char *src, char *data,
    size_t len, st_done_fn *fn, void *arg)
{
	struct dirst *d = (struct dirst *)st;
	char *full = xasprintf("%s/%s/%s", d->dir, st->bucket, path), *msg = NULL;

	if ((src == NULL || syncset_link(&d->objects, src, full) == -1) &&
	    syncset_write(&d->objects, full, data, len) == -1) {
		msg = xasprintf("%s: %s", full, strerror(errno));
		gxp_log(LOG_ERROR, "local store: %s", msg);
	} else
		d->bytes += len;
	complete(d, fn, arg, msg ? ST_GAVEUP : ST_OK, msg, NULL, 0);
	free(msg);
	free(full);
	free(data);
}

static int
table_index(const char *table)
{
	for (int i = 0; i < T_COUNT; i++)
		if (strcmp(rows_table_names[i], table) == 0)
			return i;
	gxp_die(EXIT_PERM, "internal error: no table %s", table);
}

static int
table_fd(struct dirst *d, int t)
{
	char *path;
	int fd;

	if (d->fd[t] >= 0)
		return d->fd[t];
	path = xasprintf("%s/%s.ndjson", d->dir, rows_table_names[t]);
	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0 && (flock(fd, LOCK_EX) == -1 || gxp_repair_lines(fd, path) == -1 ||
	    flock(fd, LOCK_UN) == -1)) {
		close(fd);
		fd = -1;
	}
	if (fd >= 0 && lseek(fd, 0, SEEK_END) == 0)
		d->objects.made_dirs = 1;	/* maybe new: its name wants a sync too */
	if (fd == -1)
		gxp_log(LOG_ERROR, "local store: %s: %s", path, strerror(errno));
	free(path);
	return d->fd[t] = fd;
}

/* The key that makes a repeated row recognisable (see the top). */
static void
add_key(int t, cJSON *o)
{
	char id[37];
	const char *dev, *cap;

	switch (t) {
	case T_DEVICES:
		if (!cJSON_HasObjectItem(o, "device_id") &&
		    (dev = gxp_json_str(o, "device_hw_id"))) {
			gxp_uuid_of(id, "gxp-device", dev, NULL);
			cJSON_AddStringToObject(o, "device_id", id);
		}
		break;
	case T_CAPTURES:
		dev = gxp_json_str(o, "device_id");
		cap = gxp_json_str(o, "device_capture_id");
		if (!cJSON_HasObjectItem(o, "capture_id") && dev && cap) {
			gxp_uuid_of(id, "gxp-capture", dev, cap);
			cJSON_AddStringToObject(o, "capture_id", id);
		}
		break;
	default:
		break;	/* event_id: rows.c's */
	}
}

/* A failed append (a full disk) is cut off, so that the next one does not
 * continue its torn line; when even that fails, the table is closed, and
 * opening it again repairs it. */
static void
untear(struct dirst *d, off_t size, int t)
{
	int e = errno;

	if (ftruncate(d->fd[t], size) == -1) {
		gxp_log(LOG_WARN, "local store: %s.ndjson: %s", rows_table_names[t],
		    strerror(errno));
		close(d->fd[t]);
		d->fd[t] = -1;
	}
	errno = e;
}

static int
append(struct dirst *d, int t, const char *buf, size_t len)
{
	int fd = table_fd(d, t), rc = -1;

	if (fd == -1)
		return -1;
	if (flock(fd, LOCK_EX) == 0) {
		struct stat sb;

		if (fstat(fd, &sb) == 0 && (rc = gxp_write_all(fd, buf, len)) == -1)
			untear(d, sb.st_size, t);
		if (d->fd[t] == fd)
			flock(fd, LOCK_UN);
	}
	if (rc == 0) {
		d->bytes += len;
		d->dirty[t] = 1;
	}
	return rc;
}

/* ---- rows written before a restart, which a replay makes again ---- */

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A uuid's text (36 characters) as 16 bytes; -1 if it is not one. */
static int
uuid_bytes(const char *s, size_t n, unsigned char out[16])
{
	int k = 0;

	if (n != 36)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
			continue;
		}
		if ((hi = hexval(s[i])) < 0 || i + 1 >= n || (lo = hexval(s[i + 1])) < 0)
			return -1;
		out[k++] = (unsigned char)(hi << 4 | lo);
		i++;
	}
	return k == 16 ? 0 : -1;
}

/* The event_id of a row's line, as 16 bytes. */
static int
line_event_id(const char *line, size_t len, unsigned char id[16])
{
	const char *v;
	size_t vlen;

	if (gxp_json_raw_member(line, len, "event_id", &v, &vlen) == -1 || vlen < 2 ||
	    *v != '"')
		return -1;
	return uuid_bytes(v + 1, vlen - 2, id);
}

static size_t
id_slot(const struct idset *s, const unsigned char id[16])
{
	uint64_t h;
	size_t i;

	memcpy(&h, id, sizeof h);	/* a uuid's bytes are random enough */
	for (i = (size_t)(h % s->cap); ; i = (i + 1) % s->cap)
		if (memcmp(s->id[i], zero_id, 16) == 0 || memcmp(s->id[i], id, 16) == 0)
			return i;
}

static int
id_known(const struct idset *s, const unsigned char id[16])
{
	return s->n > 0 && memcmp(s->id[id_slot(s, id)], id, 16) == 0;
}

static void
id_add(struct idset *s, const unsigned char id[16])
{
	size_t i;

	if (2 * (s->n + 1) > s->cap) {
		struct idset bigger = { NULL, 0, s->cap ? 2 * s->cap : 1024 };

		bigger.id = xcalloc(bigger.cap, 16);
		for (size_t k = 0; k < s->cap; k++)
			if (memcmp(s->id[k], zero_id, 16) != 0)
				id_add(&bigger, s->id[k]);
		free(s->id);
		*s = bigger;
	}
	i = id_slot(s, id);
	if (memcmp(s->id[i], id, 16) != 0) {
		memcpy(s->id[i], id, 16);
		s->n++;
	}
}

/* The rows of table after offset may be made again by lines read again:
 * their event_ids are kept, and a row with one of them is not appended. */
static void
dir_known_after(struct store *st, const char *table, long long offset)
{
	struct dirst *d = (struct dirst *)st;
	int t = table_index(table), fd = table_fd(d, t);
	struct stat sb;
	unsigned char id[16];
	char *buf, *line, *nl;
	size_t len;

	if (offset < 0 || fd == -1 || fstat(fd, &sb) == -1 || sb.st_size <= offset)
		return;
	len = (size_t)(sb.st_size - offset);
	buf = xmalloc(len + 1);
	if (pread(fd, buf, len, (off_t)offset) == (ssize_t)len) {
		buf[len] = '\0';
		for (line = buf; (nl = strchr(line, '\n')) != NULL; line = nl + 1)
			if (line_event_id(line, (size_t)(nl - line), id) == 0)
				id_add(&d->known[t], id);
	}
	free(buf);
	if (d->known[t].n)
		gxp_log(LOG_INFO, "local store: %s: %zu rows written after the committed "
		    "position; the same rows made again are not written twice", table,
		    d->known[t].n);
}

/* The lines of rows already written (see above) left out. */
static void
drop_known(struct dirst *d, int t, struct gxp_buf *lines)
{
	unsigned char id[16];
	size_t at = 0, keep = 0;

	if (d->known[t].n == 0)
		return;
	while (at < lines->len) {
		char *nl = memchr(lines->p + at, '\n', lines->len - at);
		size_t n = (size_t)(nl - (lines->p + at)) + 1;

		if (line_event_id(lines->p + at, n - 1, id) == 0 && id_known(&d->known[t], id))
			d->skipped++;
		else {
			memmove(lines->p + keep, lines->p + at, n);
			keep += n;
		}
		at += n;
	}
	lines->len = keep;
}

/* Rows whose key comes from their own columns (devices, captures), or
 * the caller wants back: parsed, keyed, printed. */
static char *
lines_parsed(int t, const char *json, size_t len, struct gxp_buf *lines, int want_rows)
{
	cJSON *a = gxp_json_parse(json, len), *o;
	char *body = NULL;

	if (!cJSON_IsArray(a))
		gxp_die(EXIT_TEMP, "internal error: rows for %s are not an array",
		    rows_table_names[t]);
	cJSON_ArrayForEach(o, a) {
		char *line;

		add_key(t, o);
		line = gxp_json_print(o);
		gxp_buf_adds(lines, line);
		gxp_buf_add(lines, "\n", 1);
		free(line);
	}
	if (want_rows)
		body = gxp_json_print(a);
	cJSON_Delete(a);
	return body;
}

/* Where the array element (an object) starting at at ends. */
static size_t
element_end(const char *s, size_t len, size_t at)
{
	int depth = 0, str = 0;

	for (size_t i = at; i < len; i++) {
		if (str) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				str = 0;
		} else if (s[i] == '"')
			str = 1;
		else if (s[i] == '{' || s[i] == '[')
			depth++;
		else if ((s[i] == '}' || s[i] == ']') && --depth == 0)
			return i + 1;
	}
	return len;
}

/* The other tables' rows (rows.c's own printing, keyed by their event_id)
 * become lines as they are, without a parse. */
static void
lines_by_content(int t, const char *json, size_t len, struct gxp_buf *lines)
{
	size_t at = 1;

	while (at < len && json[at] == '{') {
		size_t end = element_end(json, len, at);

		gxp_buf_add(lines, json + at, end - at);
		gxp_buf_add(lines, "\n", 1);
		at = end + (end < len && json[end] == ',');
	}
	if (at >= len || json[at] != ']')
		gxp_die(EXIT_TEMP, "internal error: rows for %s are not an array of "
		    "objects", rows_table_names[t]);
}

static void
dir_rows(struct store *st, const char *table, const char *query, int flags,
    char *json, size_t len, st_done_fn *fn, void *arg)
{
	int want_rows = flags & ROWS_WANT;
	struct dirst *d = (struct dirst *)st;
	int t = table_index(table);
	struct gxp_buf lines = { 0 };
	char *body = NULL, *msg = NULL;

	(void)query;
	if (t == T_DEVICES || t == T_CAPTURES || want_rows)
		body = lines_parsed(t, json, len, &lines, want_rows);
	else
		lines_by_content(t, json, len, &lines);
	free(json);
	drop_known(d, t, &lines);
	/* a lookup wants the capture's id, a function of its key: nothing new */
	if (!(flags & ROWS_LOOKUP) && lines.len > 0 && append(d, t, lines.p, lines.len) == -1) {
		msg = xasprintf("%s/%s.ndjson: %s", d->dir, table, strerror(errno));
		gxp_log(LOG_ERROR, "local store: %s", msg);
		free(body);
		body = NULL;
	}
	complete(d, fn, arg, msg ? ST_GAVEUP : ST_OK, msg, body, body ? strlen(body) : 0);
	free(msg);
	gxp_buf_free(&lines);
}

/* Makes durable what was written since the last time; NULL, or why not.
 * A syncfs(2) for the objects covers the tables as well. */
static char *
sync_written(struct dirst *d)
{
	int whole = syncset_whole(&d->objects), rc;

	rc = syncset_sync(&d->objects, d->dirfd);
	for (int t = 0; t < T_COUNT; t++) {
		if (d->dirty[t] && !whole && rc == 0)
			rc = fsync(d->fd[t]);
		d->dirty[t] = 0;
	}
	if (rc == 0)
		return NULL;
	gxp_log(LOG_ERROR, "local store: %s: sync: %s", d->dir, strerror(errno));
	return xasprintf("%s: sync: %s", d->dir, strerror(errno));
}

static void
dispatch(struct dirst *d)
{
	struct done *c = d->head;
	char *err = sync_written(d);

	d->head = NULL;
	d->tail = &d->head;
	d->queued = 0;
	while (c) {
		struct done *next = c->next;
		int rc = err && c->rc == ST_OK ? ST_GAVEUP : c->rc;
		struct st_result r = { rc, rc == ST_OK ? 201 : 0, rc == c->rc ? c->msg : err,
		    c->body && rc == ST_OK ? c->body : "", rc == ST_OK ? c->len : 0 };

		c->fn(c->arg, &r);
		free(c->msg);
		free(c->body);
		free(c);
		c = next;
	}
	free(err);
}

static int
dir_wait(struct store *st, int timeout_ms, struct pollfd *fds, int nfds)
{
	struct dirst *d = (struct dirst *)st;

	if (d->queued)
		timeout_ms = 0;
	if (poll(fds, (nfds_t)nfds, timeout_ms) == -1 && errno != EINTR)
		gxp_die_errno(EXIT_TEMP, "poll");
	dispatch(d);
	return 0;
}

static int
dir_busy(const struct store *st)
{
	return ((const struct dirst *)st)->queued;
}

static void
dir_attempts(struct store *st, int max)
{
	(void)st, (void)max;
}

static long long
dir_mark(struct store *st, const char *table)
{
	struct dirst *d = (struct dirst *)st;
	int fd = table_fd(d, table_index(table));
	struct stat sb;

	if (fd == -1 || fstat(fd, &sb) == -1)
		return -1;
	return (long long)sb.st_size;
}

static int
line_has(const char *line, const char *const *needles)
{
	for (; *needles; needles++)
		if (strstr(line, *needles) == NULL)
			return 0;
	return 1;
}

/* Whether a line written at or after mark holds every one of needles. */
static int
dir_seen(struct store *st, const char *table, long long mark,
    const char *const *needles)
{
	struct dirst *d = (struct dirst *)st;
	int fd = table_fd(d, table_index(table)), found = 0;
	struct stat sb;
	char *buf, *line, *nl;
	size_t len;

	if (mark < 0 || fd == -1 || fstat(fd, &sb) == -1 || sb.st_size <= mark)
		return 0;
	len = (size_t)(sb.st_size - mark);
	buf = xmalloc(len + 1);
	if (pread(fd, buf, len, (off_t)mark) != (ssize_t)len) {
		free(buf);
		return 0;
	}
	buf[len] = '\0';
	for (line = buf; !found && (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
		*nl = '\0';
		found = line_has(line, needles);
	}
	free(buf);
	return found;
}

static void
dir_stats(const struct store *st, struct http_stats *hs)
{
	const struct dirst *d = (const struct dirst *)st;

	memset(hs, 0, sizeof *hs);
	hs->requests = d->ops;
	hs->bytes_sent = d->bytes;
	hs->active = d->queued;
}

/* Completions not yet delivered are dropped: their owners are gone. */
static void
dir_free(struct store *st)
{
	struct dirst *d = (struct dirst *)st;

	while (d->head) {
		struct done *c = d->head;

		d->head = c->next;
		free(c->msg);
		free(c->body);
		free(c);
	}
	for (int i = 0; i < T_COUNT; i++) {
		if (d->fd[i] >= 0)
			close(d->fd[i]);
		free(d->known[i].id);
	}
	if (d->skipped)
		gxp_log(LOG_INFO, "local store: %llu rows made again by lines read again after "
		    "a restart were already written: not written twice", d->skipped);
	if (d->dirfd >= 0)
		close(d->dirfd);
	syncset_free(&d->objects);
	free(d->dir);
	free(d->base.url_base);
	free(d);
}

/* --check: the store directory takes a file, synced, and lets it go. */
static int
dir_check(struct store *st)
{
	struct dirst *d = (struct dirst *)st;
	char *probe = xasprintf("%s/.check.%ld", d->dir, (long)getpid());
	int rc = gxp_write_atomic(probe, "gxp\n", 4);

	if (rc == 0)
		unlink(probe);
	if (rc == 0)
		printf("gxp-upload: ok: local store %s writable (bucket %s)\n", d->dir,
		    st->bucket);
	else
		printf("gxp-upload: FAIL: local store %s: %s\n", d->dir, strerror(errno));
	free(probe);
	return rc == 0 ? EXIT_OK : errno == EACCES || errno == EROFS ? EXIT_PERM : EXIT_TEMP;
}

static const struct store_ops dir_ops = {
	dir_put, dir_rows, dir_wait, dir_busy, dir_attempts, dir_mark, dir_seen,
	dir_known_after, dir_stats, dir_free, dir_check, NULL
};

struct store *
store_dir_open(const char *dir, const char *bucket)
{
	struct dirst *d = xcalloc(1, sizeof *d);

	if (gxp_mkdirs(dir, 0755) == -1)
		gxp_die_errno(EXIT_TEMP, "local store %s", dir);
	d->base.ops = &dir_ops;
	d->base.kind = "dir";
	d->base.bucket = bucket;
	d->dir = xstrdup(dir);
	d->base.url_base = store_file_url(dir);
	/* what a killed predecessor wrote but had not synced yet counts as
	 * stored from now on (a row found there is not written again) */
	if ((d->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    syncset_all(d->dirfd) == -1)
		gxp_die_errno(EXIT_TEMP, "local store %s", dir);
	d->tail = &d->head;
	for (int i = 0; i < T_COUNT; i++)
		d->fd[i] = -1;
	gxp_log(LOG_INFO, "local store: %s (bucket %s)", dir, bucket);
	return &d->base;
}
