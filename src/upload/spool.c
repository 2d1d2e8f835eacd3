/* spool.c: the work list (event hints and rescans of ready/, oldest
 * first), what a crash left (claimed sidecars in work/, rows not written
 * in rows/), and the spool's upload.lock. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "upload.h"

#define GONE_PREFIX ".gone."	/* the earlier layout's work/.gone.E */

struct name *todo;
static struct name **todo_tail = &todo;
int64_t next_rescan, rescan_ms;

void
todo_add(const char *name)
{
	struct name *n = xcalloc(1, sizeof *n);

	n->s = xstrdup(name);
	*todo_tail = n;
	todo_tail = &n->next;
}

/* Oldest first. */
void
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

void
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
void
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

/* Rows an earlier run could not write (rows/NAME.ndjson) are queued again;
 * the file goes only once they are written, or once what is left of them
 * is in the file this run leaves (rows_loaded_done()).  Before the first
 * of them is written, rows/NAME.at records where the local store's event
 * tables ended: a run killed after writing some of them tells the next one
 * which ids are there already (store_known_after), so none is written
 * twice; Supabase ignores a repeated event_id by itself. */
static char **loaded;
static long nloaded;

static void
offsets_recall(const char *at)
{
	char *text;
	size_t len;
	long long v;
	cJSON *j, *o;

	if (gxp_read_file(at, &text, &len, 1 << 16) == -1)
		return;
	/* offsets in the store this run writes to, not one used before */
	if ((j = cJSON_Parse(text)) != NULL &&
	    gxp_json_str(j, "store") && strcmp(gxp_json_str(j, "store"), st->url_base) == 0 &&
	    (o = cJSON_GetObjectItemCaseSensitive(j, "offsets")) != NULL)
		for (int i = 0; i < N_EVENT_TABLES; i++)
			if (gxp_json_int(o, rows_table_names[event_tables[i]], &v) == 1 && v >= 0)
				store_known_after(st, rows_table_names[event_tables[i]], v);
	cJSON_Delete(j);
	free(text);
}

static void
offsets_record(const char *at)
{
	cJSON *j = cJSON_CreateObject(), *o = cJSON_CreateObject();
	long long v;
	int any = 0;
	char *text;

	for (int i = 0; i < N_EVENT_TABLES; i++)
		if ((v = store_mark(st, rows_table_names[event_tables[i]])) >= 0) {
			cJSON_AddNumberToObject(o, rows_table_names[event_tables[i]], (double)v);
			any = 1;
		}
	cJSON_AddNumberToObject(j, "v", 1);
	cJSON_AddStringToObject(j, "store", st->url_base);
	cJSON_AddItemToObject(j, "offsets", o);
	text = cJSON_PrintUnformatted(j);
	if (any && gxp_write_atomic(at, text, strlen(text)) == -1)
		gxp_log(LOG_ERROR, "%s: %s", at, strerror(errno));
	free(text);
	cJSON_Delete(j);
}

void
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
			char *at = xasprintf("%.*s.at", (int)(strlen(path) - 7), path);

			if (access(at, F_OK) == 0)
				offsets_recall(at);
			else
				offsets_record(at);
			free(at);
			if ((got = rows_load(rows, path, &bad)) == -1)
				gxp_log(LOG_ERROR, "%s: %s", path, strerror(errno));
			else {
				gxp_log(LOG_INFO, "rows/%s: %ld row%s an earlier run did not "
				    "write, queued again", f, got, got == 1 ? "" : "s");
				if (bad)
					gxp_log(LOG_WARN, "rows/%s: %ld line%s not rows; left "
					    "out", f, bad, bad == 1 ? "" : "s");
				loaded = xrealloc(loaded, (size_t)(nloaded + 1) * sizeof *loaded);
				loaded[nloaded++] = path;
				path = NULL;
			}
		} else if (len > 3 && strcmp(f + len - 3, ".at") == 0) {
			char *rows_file = xasprintf("%.*s.ndjson", (int)(strlen(path) - 3), path);

			if (access(rows_file, F_OK) == -1 && errno == ENOENT)
				unlink(path);	/* its rows went; a crash kept it */
			free(rows_file);
		}
		free(path);
	}
	if (n >= 0)
		gxp_names_free(names, n);
	free(dir);
}

/* The files load_rows() queued go once nothing they held is waiting: every
 * row written (all: after rows_spill() kept the rest in a file of its own). */
void
rows_loaded_done(int all)
{
	struct rows_stats rs;

	if (nloaded == 0)
		return;
	rows_stats(rows, &rs);
	if (!all && (!rows_idle(rows) || rs.kept > 0))
		return;
	for (long i = 0; i < nloaded; i++) {
		size_t len = strlen(loaded[i]);
		char *at = xasprintf("%.*s.at", (int)(len - 7), loaded[i]);

		if (unlink(loaded[i]) == -1 && errno != ENOENT)
			gxp_log(LOG_ERROR, "%s: %s", loaded[i], strerror(errno));
		unlink(at);
		free(at);
		free(loaded[i]);
	}
	free(loaded);
	loaded = NULL;
	nloaded = 0;
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

void
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
