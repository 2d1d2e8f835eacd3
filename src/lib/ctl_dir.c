/* ctl_dir.c: the control plane's tables in the local store, below
 * <store>/control/ (gxp-control(1), FILES), files of its own beside the
 * <table>.ndjson files gxp-upload appends to:
 *
 *   commands/queued/MAC/ID.json   a queued command: its device_commands row
 *   commands/done/MAC/ID.json     the same once sent, expired, cancelled or failed
 *   commands.lock                 flock(2) held around every change of state
 *   device_command_logs.ndjson    one line for each change of state
 *   next_wake.ndjson              devices.next_wake_at, a line per change; the
 *                                 last line of a device is its value
 *   device_configs.ndjson         device_configs rows, written by the operator;
 *                                 the last line of a device is its row
 *
 * Command files are written tmp + fsync + rename.  A change of state writes
 * done/ first and then removes the queued/ file: a crash in between leaves
 * both, done/ wins, and the next open removes the queued/ one.  Its log
 * line is appended after that, so a crash can lose a log line, never a
 * command's state.  next_wake lines are appended without a sync each and
 * synced together before their callbacks run, once per ctl_wait(). */
#define _GNU_SOURCE	/* memmem(3) */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.h"
#include "store.h"

#define FILE_MAX ((size_t)1 << 30)

struct done {
	struct done *next;
	ctl_rows_fn *fn;
	void *arg;
	int rc;
	char *msg;
	cJSON *rows;
};

struct cdir {
	struct ctl base;
	char *store, *dir;
	int wake_fd, wake_dirty;
	struct done *head, **tail;
	int queued;
};

static char *
path_of(const struct cdir *d, const char *a, const char *b, const char *c)
{
	return xasprintf("%s/%s%s%s%s%s", d->dir, a, b ? "/" : "", b ? b : "",
	    c ? "/" : "", c ? c : "");
}

static void
complete(struct cdir *d, ctl_rows_fn *fn, void *arg, int rc, const char *msg, cJSON *rows)
{
	struct done *c = xcalloc(1, sizeof *c);

	c->fn = fn;
	c->arg = arg;
	c->rc = rc;
	c->msg = xstrdup(msg ? msg : "");
	c->rows = rows ? rows : cJSON_CreateArray();
	*d->tail = c;
	d->tail = &c->next;
	d->queued++;
}

static void
fail(struct cdir *d, ctl_rows_fn *fn, void *arg, const char *what)
{
	char *msg = xasprintf("%s: %s", what, strerror(errno));

	gxp_log(LOG_ERROR, "local store: %s", msg);
	complete(d, fn, arg, errno == EACCES || errno == EROFS ? ST_FATAL : ST_GAVEUP, msg, NULL);
	free(msg);
}

static int
lock(struct cdir *d)
{
	char *p = path_of(d, "commands.lock", NULL, NULL);
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd >= 0 && flock(fd, LOCK_EX) == -1) {
		close(fd);
		fd = -1;
	}
	free(p);
	return fd;
}

static int
command_file(const char *name)
{
	size_t n = strlen(name);

	return n == CTL_ID_LEN + 5 && strcmp(name + CTL_ID_LEN, ".json") == 0;
}

static int
device_dir(const char *name)
{
	return gxp_device_valid(name);
}

/* A command file; a file that is not one becomes a row that says so, for
 * the caller to fail. */
static cJSON *
read_command(const char *path, const char *dev, const char *name)
{
	cJSON *row = gxp_sidecar_read(path);

	if (row)
		return row;
	if (errno == ENOENT)
		return NULL;
	gxp_log(LOG_ERROR, "local store: %s: %s", path, errno == EINVAL ?
	    "not a command row (a JSON object)" : strerror(errno));
	row = cJSON_CreateObject();
	cJSON_AddStringToObject(row, "command_id", name);
	cJSON_AddStringToObject(row, "device_hw_id", dev);
	cJSON_AddStringToObject(row, "status", "queued");
	return row;
}

static int
exists(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0;
}

/* The rows of one device's directory in area (queued, done); queued/
 * files with a done/ twin (a crash between the two steps) are left out. */
static void
device_rows(struct cdir *d, const char *area, const char *dev, cJSON *rows)
{
	char *dir = path_of(d, "commands", area, dev), **names;
	long n = gxp_dir_names(dir, command_file, 0, &names);

	for (long i = 0; i < n; i++) {
		char *p = xasprintf("%s/%s", dir, names[i]), *twin = NULL;
		char id[CTL_ID_LEN + 1];
		cJSON *row;

		snprintf(id, sizeof id, "%.*s", CTL_ID_LEN, names[i]);
		if (strcmp(area, "queued") == 0) {
			twin = xasprintf("%s/commands/done/%s/%s", d->dir, dev, names[i]);
			if (exists(twin)) {
				free(twin);
				free(p);
				continue;
			}
		}
		if ((row = read_command(p, dev, id)) != NULL) {
			cJSON_DeleteItemFromObjectCaseSensitive(row, "command_id");
			cJSON_AddStringToObject(row, "command_id", id);
			cJSON_DeleteItemFromObjectCaseSensitive(row, "device_hw_id");
			cJSON_AddStringToObject(row, "device_hw_id", dev);
			cJSON_AddItemToArray(rows, row);
		}
		free(twin);
		free(p);
	}
	if (n > 0)
		gxp_names_free(names, n);
	free(dir);
}

static void
area_rows(struct cdir *d, const char *area, const char *const *devs, size_t ndev,
    cJSON *rows)
{
	char *dir, **names;
	long n;

	if (ndev > 0) {
		for (size_t i = 0; i < ndev; i++)
			device_rows(d, area, devs[i], rows);
		return;
	}
	dir = path_of(d, "commands", area, NULL);
	n = gxp_dir_names(dir, device_dir, 0, &names);
	for (long i = 0; i < n; i++)
		device_rows(d, area, names[i], rows);
	if (n > 0)
		gxp_names_free(names, n);
	free(dir);
}

static void
dir_queued(struct ctl *c, const char *const *devs, size_t n, ctl_rows_fn *fn, void *arg)
{
	struct cdir *d = (struct cdir *)c;
	cJSON *rows = cJSON_CreateArray();

	area_rows(d, "queued", devs, n, rows);
	ctl_sort_rows(rows, 0);
	complete(d, fn, arg, ST_OK, NULL, rows);
}

static void
dir_list(struct ctl *c, const char *dev, ctl_rows_fn *fn, void *arg)
{
	struct cdir *d = (struct cdir *)c;
	cJSON *rows = cJSON_CreateArray();

	area_rows(d, "queued", &dev, dev ? 1 : 0, rows);
	area_rows(d, "done", &dev, dev ? 1 : 0, rows);
	ctl_sort_rows(rows, 1);
	complete(d, fn, arg, ST_OK, NULL, rows);
}

/* Appends one line to an NDJSON file of the control directory, under an
 * flock(2), after cutting a line a crash tore; synced when sync is set. */
static int
append_line(struct cdir *d, const char *name, const cJSON *obj, int sync, int *keep_fd)
{
	char *p = path_of(d, name, NULL, NULL), *text = gxp_json_print(obj);
	int fd = keep_fd && *keep_fd >= 0 ? *keep_fd :
	    open(p, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644), rc = -1, e;
	size_t len = strlen(text);

	text[len++] = '\n';	/* over the NUL: the text is written by length */
	if (fd >= 0 && flock(fd, LOCK_EX) == 0) {
		if (gxp_repair_lines(fd, p) == 0 && gxp_write_all(fd, text, len) == 0 &&
		    (!sync || fsync(fd) == 0))
			rc = 0;
		flock(fd, LOCK_UN);
	}
	e = errno;
	if (keep_fd && fd >= 0)
		*keep_fd = fd;
	else if (fd >= 0)
		close(fd);
	free(text);
	free(p);
	errno = e;
	return rc;
}

static void
log_event(struct cdir *d, const cJSON *row, const char *event, const char *from)
{
	cJSON *l = cJSON_CreateObject(), *payload = cJSON_CreateObject();
	const char *id = gxp_json_str(row, "command_id"), *dev = gxp_json_str(row, "device_hw_id");
	char uuid[37], now[32];

	gxp_fmt_utc(now, gxp_wall_us());
	gxp_uuid_of(uuid, "gxp-command-log", id ? id : "", event);
	cJSON_AddStringToObject(l, "id", uuid);
	cJSON_AddStringToObject(l, "command_id", id ? id : "");
	gxp_uuid_of(uuid, "gxp-device", dev ? dev : "", NULL);
	cJSON_AddStringToObject(l, "device_id", uuid);
	cJSON_AddStringToObject(l, "device_hw_id", dev ? dev : "");
	cJSON_AddStringToObject(l, "event_type", event);
	if (from)
		cJSON_AddStringToObject(payload, "from", from);
	else {
		cJSON_AddItemToObject(payload, "command_type", cJSON_Duplicate(
		    cJSON_GetObjectItemCaseSensitive(row, "command_type"), 1));
		cJSON_AddItemToObject(payload, "command_payload", cJSON_Duplicate(
		    cJSON_GetObjectItemCaseSensitive(row, "command_payload"), 1));
	}
	cJSON_AddItemToObject(l, "event_payload", payload);
	cJSON_AddStringToObject(l, "created_at", now);
	if (append_line(d, "device_command_logs.ndjson", l, 1, NULL) == -1)
		gxp_log(LOG_ERROR, "local store: %s/device_command_logs.ndjson: %s; the "
		    "%s line of command %s is missing", d->dir, strerror(errno), event,
		    id ? id : "?");
	cJSON_Delete(l);
}

/* A file written whole into a directory that may be new: the directory's
 * own entry is synced as well. */
static int
write_command(struct cdir *d, const char *area, const char *dev, const cJSON *row)
{
	char *dir = path_of(d, "commands", area, dev), *p, *text;
	int made = !exists(dir), rc;

	if (gxp_mkdirs(dir, 0755) == -1) {
		free(dir);
		return -1;
	}
	p = xasprintf("%s/%s.json", dir, gxp_json_str(row, "command_id"));
	text = gxp_json_print(row);
	rc = gxp_write_atomic(p, text, strlen(text));
	if (rc == 0 && made) {
		*strrchr(dir, '/') = '\0';
		rc = gxp_fsync_dir(dir);
	}
	free(text);
	free(p);
	free(dir);
	return rc;
}

/* Whether the local store has seen the device (gxp-upload's devices.ndjson). */
static int
device_known(struct cdir *d, const char *dev)
{
	char *p = xasprintf("%s/devices.ndjson", d->store), *needle, *buf;
	size_t len;
	int found;

	needle = xasprintf("\"device_hw_id\":\"%s\"", dev);
	if (gxp_read_file(p, &buf, &len, FILE_MAX) == -1)
		found = 0;
	else {
		found = memmem(buf, len, needle, strlen(needle)) != NULL;
		free(buf);
	}
	free(needle);
	free(p);
	return found;
}

static void
dir_add(struct ctl *c, cJSON *row, ctl_rows_fn *fn, void *arg)
{
	struct cdir *d = (struct cdir *)c;
	const char *dev = gxp_json_str(row, "device_hw_id");
	char id[CTL_ID_LEN + 1], uuid[37], now[32], *msg;
	cJSON *rows;
	int lk;

	if (dev == NULL || !device_known(d, dev)) {
		msg = xasprintf("device %s is not known: no devices row in %s/devices.ndjson",
		    dev ? dev : "?", d->store);
		complete(d, fn, arg, ST_PERM, msg, NULL);
		free(msg);
		cJSON_Delete(row);
		return;
	}
	ctl_new_id(id);
	gxp_uuid_of(uuid, "gxp-device", dev, NULL);
	gxp_fmt_utc(now, gxp_wall_us());
	cJSON_AddStringToObject(row, "command_id", id);
	cJSON_AddStringToObject(row, "device_id", uuid);
	cJSON_AddStringToObject(row, "status", "queued");
	cJSON_AddStringToObject(row, "requested_at", now);
	cJSON_AddNullToObject(row, "sent_at");
	if ((lk = lock(d)) == -1 || write_command(d, "queued", dev, row) == -1) {
		fail(d, fn, arg, d->dir);
		cJSON_Delete(row);
		if (lk >= 0)
			close(lk);
		return;
	}
	close(lk);
	log_event(d, row, "queued", NULL);
	rows = cJSON_CreateArray();
	cJSON_AddItemToArray(rows, row);
	complete(d, fn, arg, ST_OK, NULL, rows);
}

/* Finds the device of a command given by id alone. */
static char *
find_device(struct cdir *d, const char *id)
{
	static const char *const areas[] = { "queued", "done" };
	char *found = NULL;

	for (int a = 0; a < 2 && found == NULL; a++) {
		char *dir = path_of(d, "commands", areas[a], NULL), **names;
		long n = gxp_dir_names(dir, device_dir, 0, &names);

		for (long i = 0; i < n && found == NULL; i++) {
			char *p = xasprintf("%s/%s/%s.json", dir, names[i], id);

			if (exists(p))
				found = xstrdup(names[i]);
			free(p);
		}
		if (n > 0)
			gxp_names_free(names, n);
		free(dir);
	}
	return found;
}

/* What a command that is not queued is: its status, or why not known. */
static char *
not_queued(struct cdir *d, const char *dev, const char *id)
{
	char *p = xasprintf("%s/commands/done/%s/%s.json", d->dir, dev, id);
	cJSON *row = gxp_sidecar_read(p);
	const char *st = gxp_json_str(row, "status");
	char *msg = st ? xasprintf("command %s is %s, not queued", id, st) :
	    xasprintf("no command %s", id);

	cJSON_Delete(row);
	free(p);
	return msg;
}

/* Under the lock: queued/ to done/ with status; the row, or NULL (*msg). */
static cJSON *
change(struct cdir *d, const char *id, const char *dev, const char *status,
    int64_t when, char **msg)
{
	char *q = xasprintf("%s/commands/queued/%s/%s.json", d->dir, dev, id);
	char *twin = xasprintf("%s/commands/done/%s/%s.json", d->dir, dev, id), at[32];
	cJSON *row = NULL;

	if (!exists(q) || exists(twin))
		*msg = not_queued(d, dev, id);
	else if ((row = read_command(q, dev, id)) != NULL) {
		cJSON_DeleteItemFromObjectCaseSensitive(row, "status");
		cJSON_AddStringToObject(row, "status", status);
		if (strcmp(status, "sent") == 0) {
			gxp_fmt_utc(at, when);
			cJSON_DeleteItemFromObjectCaseSensitive(row, "sent_at");
			cJSON_AddStringToObject(row, "sent_at", at);
		}
		if (write_command(d, "done", dev, row) == -1 ||
		    (unlink(q) == -1 && errno != ENOENT)) {
			*msg = xasprintf("%s: %s", q, strerror(errno));
			cJSON_Delete(row);
			row = NULL;
		} else {
			*strrchr(q, '/') = '\0';
			gxp_fsync_dir(q);
		}
	}
	free(q);
	free(twin);
	return row;
}

static void
dir_mark(struct ctl *c, const char *id, const char *dev, const char *status,
    int64_t when, ctl_rows_fn *fn, void *arg)
{
	struct cdir *d = (struct cdir *)c;
	char *found = dev ? NULL : find_device(d, id), *msg = NULL;
	cJSON *rows = cJSON_CreateArray(), *row = NULL;
	int lk;

	if (!dev && !found)
		msg = xasprintf("no command %s", id);
	else if ((lk = lock(d)) == -1) {
		fail(d, fn, arg, d->dir);
		cJSON_Delete(rows);
		free(found);
		return;
	} else {
		row = change(d, id, dev ? dev : found, status, when, &msg);
		close(lk);
	}
	if (row) {
		log_event(d, row, status, "queued");
		cJSON_AddItemToArray(rows, row);
	}
	complete(d, fn, arg, ST_OK, msg, rows);
	free(msg);
	free(found);
}

static void
dir_expire(struct ctl *c, int64_t now, ctl_rows_fn *fn, void *arg)
{
	struct cdir *d = (struct cdir *)c;
	cJSON *all = cJSON_CreateArray(), *gone = cJSON_CreateArray(), *r;
	int lk = lock(d);

	if (lk == -1) {
		fail(d, fn, arg, d->dir);
		cJSON_Delete(all);
		cJSON_Delete(gone);
		return;
	}
	area_rows(d, "queued", NULL, 0, all);
	cJSON_ArrayForEach(r, all) {
		const char *id = gxp_json_str(r, "command_id");
		int64_t t;
		char *msg = NULL;
		cJSON *row;

		if (ctl_row_time(r, "expires_at", &t) != 1 || t > now || !ctl_id_valid(id))
			continue;
		if ((row = change(d, id, gxp_json_str(r, "device_hw_id"), "expired", now,
		    &msg)) != NULL)
			cJSON_AddItemToArray(gone, row);
		free(msg);
	}
	close(lk);
	cJSON_ArrayForEach(r, gone)
		log_event(d, r, "expired", "queued");
	cJSON_Delete(all);
	complete(d, fn, arg, ST_OK, NULL, gone);
}

/* The last line of each device in an NDJSON file of the control
 * directory, as rows; *lines: how many lines it has. */
static cJSON *
last_lines(struct cdir *d, const char *name, long *lines)
{
	char *p = path_of(d, name, NULL, NULL), *buf, *line, *nl;
	cJSON *by_dev = cJSON_CreateObject(), *rows = cJSON_CreateArray(), *o;
	size_t len;

	*lines = 0;
	if (gxp_read_file(p, &buf, &len, FILE_MAX) == -1) {
		if (errno != ENOENT)
			gxp_log(LOG_ERROR, "local store: %s: %s", p, strerror(errno));
		buf = NULL;
		len = 0;
	}
	for (line = buf; line && line < buf + len; line = nl + 1) {
		const char *dev;

		if ((nl = memchr(line, '\n', (size_t)(buf + len - line))) == NULL)
			break;		/* torn: the next append cuts it */
		++*lines;
		o = gxp_json_parse(line, (size_t)(nl - line));
		if (!cJSON_IsObject(o) || (dev = gxp_json_str(o, "device_hw_id")) == NULL ||
		    !gxp_device_valid(dev)) {
			gxp_log(LOG_WARN, "local store: %s line %ld: not a row with a valid "
			    "device_hw_id; skipped", p, *lines);
			cJSON_Delete(o);
			continue;
		}
		cJSON_DeleteItemFromObjectCaseSensitive(by_dev, dev);
		cJSON_AddItemToObject(by_dev, dev, o);
	}
	while (by_dev->child)
		cJSON_AddItemToArray(rows, cJSON_DetachItemViaPointer(by_dev, by_dev->child));
	cJSON_Delete(by_dev);
	free(buf);
	free(p);
	return rows;
}

/* next_wake.ndjson rewritten with one line a device when it has grown to
 * many more; the append descriptor then follows the new file. */
static void
compact_wakes(struct cdir *d, const cJSON *rows, long lines)
{
	char *p;
	struct gxp_buf b = { 0 };
	const cJSON *r;

	if (lines < 1000 || lines < 4 * cJSON_GetArraySize(rows))
		return;
	cJSON_ArrayForEach(r, rows) {
		char *text = gxp_json_print(r);

		gxp_buf_adds(&b, text);
		gxp_buf_add(&b, "\n", 1);
		free(text);
	}
	p = path_of(d, "next_wake.ndjson", NULL, NULL);
	if (gxp_write_atomic(p, b.p ? b.p : "", b.len) == -1)
		gxp_log(LOG_WARN, "local store: %s: %s", p, strerror(errno));
	else if (d->wake_fd >= 0) {
		close(d->wake_fd);
		d->wake_fd = -1;
	}
	gxp_buf_free(&b);
	free(p);
}

static void
dir_wakes(struct ctl *c, ctl_rows_fn *fn, void *arg)
{
	struct cdir *d = (struct cdir *)c;
	long lines;
	cJSON *rows = last_lines(d, "next_wake.ndjson", &lines);

	compact_wakes(d, rows, lines);
	complete(d, fn, arg, ST_OK, NULL, rows);
}

static void
dir_set_wake(struct ctl *c, const char *dev, int64_t at, ctl_rows_fn *fn, void *arg)
{
	struct cdir *d = (struct cdir *)c;
	cJSON *o = cJSON_CreateObject();
	char when[32];

	gxp_fmt_utc(when, at);
	cJSON_AddStringToObject(o, "device_hw_id", dev);
	cJSON_AddStringToObject(o, "next_wake_at", when);
	if (append_line(d, "next_wake.ndjson", o, 0, &d->wake_fd) == -1)
		fail(d, fn, arg, "next_wake.ndjson");
	else {
		d->wake_dirty = 1;
		complete(d, fn, arg, ST_OK, NULL, NULL);
	}
	cJSON_Delete(o);
}

static void
dir_configs(struct ctl *c, ctl_rows_fn *fn, void *arg)
{
	struct cdir *d = (struct cdir *)c;
	long lines;

	complete(d, fn, arg, ST_OK, NULL, last_lines(d, "device_configs.ndjson", &lines));
}

static int
dir_wait(struct ctl *c, int timeout_ms, struct pollfd *fds, int nfds)
{
	struct cdir *d = (struct cdir *)c;
	struct done *x = d->head;
	char *err = NULL;

	if (poll(fds, (nfds_t)nfds, d->queued ? 0 : timeout_ms) == -1 && errno != EINTR)
		gxp_die_errno(EXIT_TEMP, "poll");
	if (d->wake_dirty && d->wake_fd >= 0 && fsync(d->wake_fd) == -1) {
		err = xasprintf("%s/next_wake.ndjson: sync: %s", d->dir, strerror(errno));
		gxp_log(LOG_ERROR, "local store: %s", err);
	}
	d->wake_dirty = 0;
	d->head = NULL;
	d->tail = &d->head;
	d->queued = 0;
	while (x) {
		struct done *next = x->next;
		int rc = err && x->rc == ST_OK ? ST_GAVEUP : x->rc;

		x->fn(x->arg, rc, x->rows, rc != x->rc ? err : x->msg);
		cJSON_Delete(x->rows);
		free(x->msg);
		free(x);
		x = next;
	}
	free(err);
	return 0;
}

static int
dir_busy(const struct ctl *c)
{
	return ((const struct cdir *)c)->queued;
}

static void
dir_attempts(struct ctl *c, int max)
{
	(void)c, (void)max;
}

static int
dir_check(struct ctl *c)
{
	struct cdir *d = (struct cdir *)c;
	char *probe = path_of(d, ".check", NULL, NULL);
	int rc = gxp_write_atomic(probe, "gxp\n", 4);

	if (rc == 0) {
		unlink(probe);
		printf("%s: ok: local store %s writable\n", gxp_progname, d->dir);
	} else
		printf("%s: FAIL: local store %s: %s\n", gxp_progname, d->dir, strerror(errno));
	free(probe);
	return rc == 0 ? EXIT_OK : errno == EACCES || errno == EROFS ? EXIT_PERM : EXIT_TEMP;
}

static void
dir_free(struct ctl *c)
{
	struct cdir *d = (struct cdir *)c;

	while (d->head) {
		struct done *x = d->head;

		d->head = x->next;
		cJSON_Delete(x->rows);
		free(x->msg);
		free(x);
	}
	if (d->wake_fd >= 0)
		close(d->wake_fd);
	free(d->store);
	free(d->dir);
	free(d);
}

/* What a crash between the two steps of a change left: queued/ files
 * whose done/ twin exists go. */
static void
recover(struct cdir *d)
{
	char *dir = path_of(d, "commands", "queued", NULL), **names;
	long n = gxp_dir_names(dir, device_dir, 0, &names);
	int lk = lock(d);

	for (long i = 0; lk >= 0 && i < n; i++) {
		char *q = xasprintf("%s/%s", dir, names[i]), **files;
		long m = gxp_dir_names(q, NULL, 0, &files);

		for (long j = 0; j < m; j++) {
			char *f = xasprintf("%s/%s", q, files[j]);
			char *twin = xasprintf("%s/commands/done/%s/%s", d->dir, names[i], files[j]);

			if ((strstr(files[j], ".tmp.") || exists(twin)) && unlink(f) == 0)
				gxp_log(LOG_INFO, "local store: removed %s, left by a crash", f);
			free(f);
			free(twin);
		}
		if (m > 0)
			gxp_names_free(files, m);
		free(q);
	}
	if (lk >= 0)
		close(lk);
	if (n > 0)
		gxp_names_free(names, n);
	free(dir);
}

static const struct ctl_ops dir_ops = {
	dir_queued, dir_list, dir_add, dir_mark, dir_expire, dir_wakes, dir_set_wake,
	dir_configs, dir_wait, dir_busy, dir_attempts, dir_check, dir_free
};

struct ctl *
ctl_dir_open(const char *store)
{
	struct cdir *d = xcalloc(1, sizeof *d);

	d->base.ops = &dir_ops;
	d->base.kind = "dir";
	d->store = xstrdup(store);
	d->dir = xasprintf("%s/control", store);
	d->wake_fd = -1;
	d->tail = &d->head;
	if (gxp_mkdirs(d->dir, 0755) == -1)
		gxp_die_errno(errno == EACCES || errno == EROFS ? EXIT_PERM : EXIT_TEMP,
		    "local store %s", d->dir);
	recover(d);
	return &d->base;
}
