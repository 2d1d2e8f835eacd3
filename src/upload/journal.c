/* journal.c: the journal's commit record (-J), journal/committed, and
 * what a journal changes in the loop: rows that wait stop the reading,
 * and a row the store gave up on ends the run. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "upload.h"

struct journal_commit jc;
int restart;		/* journaled rows not written: end, to be replayed */

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
void
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
void
journal_begin(void)
{
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
		for (int i = 0; i < N_EVENT_TABLES; i++)
			if (gxp_json_int(o, rows_table_names[event_tables[i]], &v) == 1 && v >= 0) {
				store_known_after(st, rows_table_names[event_tables[i]], v);
				off[event_tables[i]] = v;
			}
	} else {
		for (int i = 0; i < N_EVENT_TABLES; i++)
			off[event_tables[i]] = store_mark(st, rows_table_names[event_tables[i]]);
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

/* With a journal, ROW_QUEUE_MAX rows waiting stop the reading (the
 * journal holds what follows) instead of dropping rows. */
int
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
void
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
