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
 * then never dropped nor spilled: the journal holds their lines.
 *
 * This file holds the options, the start, the loop and the end; the rest
 * is in the files upload.h lists. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "upload.h"

enum { LOCAL_BATCH = 256 };	/* photos per sync with the local store */

const char *spool;
struct store *st;
struct rows *rows;
int concurrency, once, eof, gaveup, publog;
static int fatal, spool_fd = -1;

struct gxp_counter counters[] = {
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
char *
spool_path(const char *area, const char *entry, const char *ext)
{
	return gxp_spool_path(spool, area, entry, ext);
}

void
now_utc(char buf[32])
{
	gxp_fmt_utc(buf, gxp_wall_us());
}

cJSON *
event_new(const char *type)
{
	cJSON *e = gxp_event_new(type);
	char ts[32];

	now_utc(ts);
	cJSON_AddStringToObject(e, "ts", ts);
	return e;
}

void
emit(cJSON *e)
{
	gxp_out_json(e);
	cJSON_Delete(e);
}

/* A list of names, freed and emptied. */
void
names_free(struct name **list)
{
	while (*list) {
		struct name *n = *list;

		*list = n->next;
		free(n->s);
		free(n);
	}
}

void
set_fatal(const char *msg)
{
	if (!fatal)
		gxp_log(LOG_ERROR, "stopping: %s", msg);
	fatal = 1;
}

int
stopping(void)
{
	return gxp_sig_term || fatal || gxp_out_closed || restart;
}

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
		rows_loaded_done(0);
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
	else {
		if (kept > 0) {
			gxp_log(LOG_WARN, "%ld row%s not written yet, kept in rows/%s for "
			    "the next run", kept, kept == 1 ? "" : "s", name);
			if (!stopping())
				gaveup = 1;
		}
		rows_loaded_done(1);	/* what they held is written or in name */
	}
	free(path);
	names_free(&todo);
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
	names_free(&marks);
	gxp_config_free();
	return rc;
}
