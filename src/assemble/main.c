/* gxp-assemble: rebuilds the devices' photos from their chunk messages.
 *
 * NDJSON envelopes come in on stdin (gxp-sub, mosquitto_sub -F %j or %J).
 * Each chunk is appended to its capture's log in the spool as it arrives
 * (gxp-spool(5)), so memory holds only an index per capture and a SIGKILL
 * loses nothing; a complete capture is validated, built in tmp/ and renamed
 * into ready/ (or failed/).  Events (gxp(7)) go to stdout, with every line
 * that is not a device message passed through unchanged.
 *
 * Output waits in a buffer until the spool changes it reports are durable.
 * A commit (one sync for every photo finished since the last) comes before
 * waiting for input, at the end, and whenever enough is pending.  Output
 * keeps the order of processing wherever the commits fall, so a replay
 * writes the same bytes every time.
 *
 * This file holds the options, --check and the main loop; the rest is in
 * the files assemble.h lists. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assemble.h"

static void
usage(int code)
{
	gxp_usage(code,
	    "gxp-assemble [--check | --list] [--flush-at-eof] [--replay] [--env file]\n"
	    "                    [--spool dir]\n",
	    "  --check         test that the spool can be written; one line\n"
	    "  --list          print the captures in progress as NDJSON and exit\n"
	    "  --flush-at-eof  at the end of input, let every NACK and timeout fire\n"
	    "                  (for a replay; implies --replay)\n"
	    "  --replay        the clock is the messages' tst, even from a pipe\n"
	    "  --env file      read settings from file instead of ./.env\n"
	    "  --spool dir     the spool (GXP_SPOOL)\n"
	    "  --help          print this and exit\n");
}


/* --check: the spool can be created, written and synced; one line. */
static int
check_spool(void)
{
	char *probe = xasprintf("%s/tmp/check.%ld", cfg.spool, (long)getpid());
	char *lock = xasprintf("%s/assemble.lock", cfg.spool);
	int fd, rc = EXIT_OK, busy = 0;

	if (gxp_spool_init(cfg.spool) == -1 ||
	    (fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) == -1 ||
	    gxp_write_all(fd, "gxp\n", 4) == -1 || fsync(fd) == -1 || close(fd) == -1) {
		printf("gxp-assemble: FAIL: spool %s: %s\n", cfg.spool, strerror(errno));
		rc = gxp_path_error_permanent(errno) ? EXIT_PERM : EXIT_TEMP;
	} else {
		unlink(probe);
		if ((fd = gxp_lock_file(lock)) == -1)
			busy = errno == EWOULDBLOCK;
		else
			close(fd);
		printf("gxp-assemble: ok: spool %s writable; %ld photos in progress, "
		    "%ld ready for upload%s\n", cfg.spool, list_partial(cfg.spool, 0),
		    gxp_spool_count(cfg.spool, "ready") + gxp_spool_count(cfg.spool, "work"),
		    busy ? "; a gxp-assemble is running on it" : "");
	}
	free(probe);
	free(lock);
	return rc;
}

/* When stderr is a terminal and a file is replayed: how far it has got. */
static void
progress(struct gxp_lines *in, int done)
{
	static int64_t next;
	static off_t size = -1;
	struct stat st;
	char buf[96];
	off_t at;
	int n;

	static int tty = -1;

	if (tty == -1)
		tty = cfg.replay && isatty(2);
	if (!tty)
		return;
	if (size == -1)
		size = fstat(0, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : 0;
	if (!done && ((gxp_lines_number(in) & 4095) || gxp_mono_ms() < next))
		return;
	next = gxp_mono_ms() + 500;
	at = lseek(0, 0, SEEK_CUR);
	n = snprintf(buf, sizeof buf, "\r%s: %lld lines", gxp_progname, gxp_lines_number(in));
	if (size > 0 && at >= 0)
		n += snprintf(buf + n, sizeof buf - (size_t)n, ", %d%%", (int)(at * 100 / size));
	n += snprintf(buf + n, sizeof buf - (size_t)n, done ? "\n" : "   ");
	gxp_write_all(2, buf, (size_t)n);
}

static int
input_ready(int fd, int timeout)
{
	struct pollfd p = { fd, POLLIN, 0 };

	return poll(&p, 1, timeout) > 0;
}

/* Reads more input.  Before it would have to wait (a pipe with nothing in
 * it, or, live, until the next timer), the pending photos are committed
 * and the output written; a file is read on without waiting.  -1 at a
 * read error. */
static int
wait_input(struct gxp_lines *in, int regular)
{
	int fd = gxp_lines_fd(in), timeout = 1000;

	if (!regular && !input_ready(fd, 0)) {
		commit();
		prune_stored();
		if (!cfg.replay)
			timeout = timer_wait_ms(timeout);
		if (!input_ready(fd, cfg.replay ? -1 : timeout))
			return 0;
	}
	if (gxp_lines_fill(in) == -1 && !gxp_sig_term) {
		gxp_log(LOG_ERROR, "stdin: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int
run(struct gxp_lines *in)
{
	struct stat st;
	char *line;
	size_t len;
	int rc, regular = fstat(gxp_lines_fd(in), &st) == 0 && S_ISREG(st.st_mode);

	while (!gxp_sig_term && !gxp_out_closed) {
		gxp_metrics_tick(0);
		if (!cfg.replay)
			fire_live();
		switch ((rc = gxp_lines_next(in, &line, &len))) {
		case LINE_AGAIN:
			if (wait_input(in, regular) == -1)
				return EXIT_TEMP;
			continue;
		case LINE_EOF:
			return EXIT_OK;
		default:
			assemble_line(rc, line, len, gxp_lines_number(in));
		}
		progress(in, 0);
	}
	return EXIT_OK;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'C' },
		{ "list", no_argument, NULL, 'L' },
		{ "env", required_argument, NULL, 'e' },
		{ "flush-at-eof", no_argument, NULL, 'F' },
		{ "replay", no_argument, NULL, 'R' },
		{ "spool", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 }
	};
	const char *envfile = NULL, *spool = NULL;
	struct gxp_lines *in;
	struct stat st;
	int c, rc, check = 0, list = 0;

	gxp_init(argv[0]);
	while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		switch (c) {
		case 'C': check = 1; break;
		case 'L': list = 1; break;
		case 'e': envfile = optarg; break;
		case 'F': cfg.flush_at_eof = cfg.replay = 1; break;
		case 'R': cfg.replay = 1; break;
		case 's': spool = optarg; break;
		case 'H': usage(EXIT_OK); break;
		default:
			gxp_bad_option(c, argv);
			usage(EXIT_PERM);
		}
	}
	if (optind != argc || (spool && *spool == '\0') || (check && list)) {
		gxp_log(LOG_ERROR, "%s", optind != argc ? "unexpected argument" :
		    check && list ? "--check and --list exclude each other" :
		    "--spool needs a directory");
		usage(EXIT_PERM);
	}
	gxp_config_common(envfile);
	if (spool)
		gxp_config_set("GXP_SPOOL", spool);
	assemble_config();
	if (check || list) {
		if (check)
			gxp_config_warnings();
		rc = check ? check_spool() : list_partial(cfg.spool, 1) == -1 ? EXIT_TEMP : EXIT_OK;
		if (list && rc != EXIT_OK)
			gxp_log(LOG_ERROR, "%s/partial: %s", cfg.spool, strerror(errno));
		if (list && gxp_out_closed == 0 && fflush(stdout) != 0)
			rc = EXIT_TEMP;
		gxp_config_free();
		return rc;
	}
	if (fstat(0, &st) == 0 && S_ISREG(st.st_mode))
		cfg.replay = 1;
	gxp_signals_init();
	gxp_metrics_init(counters, C_COUNT);
	assemble_begin();
	in = gxp_lines_open(0, (size_t)cfg.max_line);
	if (!cfg.replay)
		stamp_recovered();
	rc = run(in);
	if (rc == EXIT_OK && cfg.flush_at_eof && !gxp_sig_term && !gxp_out_closed) {
		commit();
		flush_timers();
	}
	commit();
	seg_tidy();
	progress(in, 1);
	gxp_metrics_tick(1);
	gxp_log(LOG_INFO, "%llu messages, %llu photos complete, %llu failed, "
	    "%llu NACK rounds, %lld captures left in flight",
	    counters[C_MESSAGES].v, counters[C_COMPLETED].v, counters[C_FAILED].v,
	    counters[C_NACKS].v, (long long)counters[C_INFLIGHT].v);
	gxp_lines_free(in);
	assemble_free();
	gxp_config_free();
	return rc;
}
