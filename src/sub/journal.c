/* journal.c: with -J, each message is appended to the journal, stamped
 * with its seq, inside the message callback; a writer streams the journal
 * to stdout from after the position gxp-upload committed, and a syncer
 * makes it durable every JOURNAL_SYNC_MS. */
#define _GNU_SOURCE	/* sendfile(2) */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mosquitto.h>

#include "sub/sub.h"

/* The message goes to the journal before the callback returns: from the
 * PUBACK libmosquitto sent just before the callback to the end of this
 * write, a SIGKILL loses it (the window, measured here). */
void
journal_line(const struct gxp_buf *b)
{
	long long end;
	uint64_t seg;

	if (gxp_journal_append(jn.j, b->p, b->len) == -1) {
		gxp_log(LOG_ERROR, "journal %s: cannot append: %s; the message is lost, and "
		    "reading stops for a second", jn.dir, strerror(errno));
		counters[C_DROPPED].v++;
		jn.broken_until = gxp_mono_ms() + 1000;
		return;
	}
	gxp_hist_add(jn.window, gxp_mono_us() - jn.msg_us);
	gxp_journal_head(jn.j, &seg, &end);
	pthread_mutex_lock(&q.mu);
	q.head_seg = seg;
	q.head_end = end;
	q.appended += b->len;
	counters[C_BUFFERED].v = q.appended - q.sent;
	if (q.waiting && q.appended - q.sent >= WAKE_BYTES)
		pthread_cond_signal(&q.cv);
	pthread_mutex_unlock(&q.mu);
}

/* Bytes [*off, end) of fd to stdout: sendfile(2), or read and write when
 * stdout does not take it (a file opened for appending).  -1 when stdout
 * is closed or fd cannot be read. */
static int
copy_out(int fd, long long *off, long long end)
{
	static int plain;
	static char buf[65536];

	while (*off < end && !gxp_out_closed) {
		size_t want = end - *off > (long long)sizeof buf ? sizeof buf : (size_t)(end - *off);
		off_t o = (off_t)*off;
		ssize_t n;

		if (!plain) {
			n = sendfile(1, fd, &o, want);
			if (n == -1 && (errno == EINVAL || errno == ENOSYS)) {
				plain = 1;
				continue;
			}
		} else if ((n = pread(fd, buf, want, o)) > 0 && gxp_write_all(1, buf, (size_t)n) == -1)
			n = -2;
		if (n == -1 && errno == EINTR)
			continue;
		if (n == 0 || n == -1 || n == -2) {
			if (n == -2 || errno == EPIPE)
				gxp_out_closed = 1;
			else
				gxp_log(LOG_ERROR, "journal: %s", n == 0 ? "a segment is shorter "
				    "than it was" : strerror(errno));
			return -1;
		}
		*off += n;
		pthread_mutex_lock(&q.mu);
		q.sent += (unsigned long long)n;
		counters[C_BUFFERED].v = q.appended - q.sent;
		pthread_mutex_unlock(&q.mu);
	}
	return gxp_out_closed ? -1 : 0;
}

/* A segment that ended without a newline (a torn line that a power cut
 * left before a later segment) gets one, so the next line stays whole. */
static void
end_segment(int fd, long long size)
{
	char c;

	if (size > 0 && pread(fd, &c, 1, (off_t)(size - 1)) == 1 && c != '\n' &&
	    gxp_write_all(1, "\n", 1) == -1)
		gxp_out_closed = 1;
}

static int
open_segment(uint64_t seg)
{
	char *path = gxp_journal_path(jn.j, seg);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		gxp_log(LOG_ERROR, "journal: %s: %s", path, strerror(errno));
	free(path);
	return fd;
}

/* With a journal: streams it to stdout from the start position, segment
 * after segment, to its end; then waits for more.  Stops when stdout is
 * closed, or when told the input is done and all is out; when it cannot
 * read the journal, it stops gxp-sub too (exit 111: a restart reads it
 * again from the committed position). */
void *
writer_journal(void *arg)
{
	uint64_t seg = jn.start_seg, hseg, next;
	long long off = jn.start_off, hend;
	int fd = open_segment(seg), done = 0;
	struct stat sb;

	(void)arg;
	while (fd != -1 && !gxp_out_closed) {
		pthread_mutex_lock(&q.mu);
		while (!q.done && q.head_seg == seg && q.head_end <= off) {
			q.waiting = 1;
			pthread_cond_wait(&q.cv, &q.mu);
			q.waiting = 0;
		}
		hseg = q.head_seg;
		hend = q.head_end;
		done = q.done;
		pthread_mutex_unlock(&q.mu);
		if (hseg == seg) {
			if (copy_out(fd, &off, hend) == -1)
				break;
			if (done && off >= hend) {
				close(fd);
				return NULL;
			}
			continue;
		}
		/* a segment before the last one: whole, not growing any more */
		if (fstat(fd, &sb) == -1 || copy_out(fd, &off, (long long)sb.st_size) == -1)
			break;
		end_segment(fd, (long long)sb.st_size);
		close(fd);
		if ((next = gxp_journal_after(jn.j, seg)) == 0)
			next = hseg;
		seg = next;
		off = 0;
		fd = open_segment(seg);
	}
	if (fd != -1)
		close(fd);
	if (!gxp_out_closed) {
		jn.failed = 1;
		gxp_out_closed = 1;
	}
	return NULL;
}

/* The group commit: every JOURNAL_SYNC_MS, what was appended since is
 * made durable (a power cut loses at most that much). */
void *
syncer(void *arg)
{
	int64_t next = gxp_mono_ms() + jn.sync_ms;
	int failing = 0;

	(void)arg;
	while (!jn.stop_sync) {
		int64_t now = gxp_mono_ms();

		if (now < next) {
			gxp_sleep_ms(next - now < 50 ? next - now : 50);
			continue;
		}
		next = now + jn.sync_ms;
		if (gxp_journal_sync(jn.j) == -1) {
			if (!failing++)
				gxp_log(LOG_ERROR, "journal %s: sync: %s", jn.dir, strerror(errno));
		} else
			failing = 0;
	}
	return NULL;
}

/* Once a second: segments wholly committed are removed; the gauges. */
void
journal_tick(void)
{
	static int64_t next;
	int64_t now = gxp_mono_ms();

	if (now < next)
		return;
	next = now + 1000;
	counters[C_JBYTES].v = (unsigned long long)gxp_journal_trim(jn.j,
	    gxp_journal_committed(jn.dir));
	counters[C_JP99].v = (unsigned long long)gxp_hist_quantile(jn.window, 0.99);
	counters[C_JMAX].v = (unsigned long long)gxp_hist_max(jn.window);
}

/* Whether to leave the broker's messages in the socket for now: the
 * journal is full (the broker keeps them for the session), or cannot be
 * written.  Said once each time it starts. */
int
reading_paused(void)
{
	static int paused;
	int full;

	counters[C_JBYTES].v = (unsigned long long)gxp_journal_bytes(jn.j);
	full = (long long)counters[C_JBYTES].v >= jn.max_bytes;

	if (full && !paused) {
		counters[C_JFULL].v++;
		gxp_log(LOG_WARN, "journal %s holds %llu bytes (JOURNAL_MAX_BYTES %lld): "
		    "not reading from the broker until gxp-upload commits", jn.dir,
		    counters[C_JBYTES].v, jn.max_bytes);
	} else if (!full && paused == 1)
		gxp_log(LOG_INFO, "journal below JOURNAL_MAX_BYTES again: reading");
	paused = full ? 1 : gxp_mono_ms() < jn.broken_until ? 2 : 0;
	return paused;
}

/* -J: the journal opened, and where the replay starts. */
void
journal_start(void)
{
	long long seg_bytes = gxp_cfg_int("JOURNAL_SEGMENT_BYTES");
	uint64_t committed = gxp_journal_committed(jn.dir), next;

	jn.max_bytes = gxp_cfg_int("JOURNAL_MAX_BYTES");
	jn.sync_ms = gxp_cfg_int("JOURNAL_SYNC_MS");
	if (jn.max_bytes < 2 * seg_bytes)
		gxp_die(EXIT_PERM, "JOURNAL_MAX_BYTES (%lld) must be at least twice "
		    "JOURNAL_SEGMENT_BYTES (%lld)", jn.max_bytes, seg_bytes);
	if ((jn.j = gxp_journal_open(jn.dir, seg_bytes)) == NULL) {
		if (errno == EWOULDBLOCK)
			gxp_die(EXIT_TEMP, "journal %s is held by another gxp-sub", jn.dir);
		gxp_die_errno(errno == EACCES || errno == EROFS ? EXIT_PERM : EXIT_TEMP,
		    "journal %s", jn.dir);
	}
	if (gxp_journal_find(jn.j, committed, &jn.start_seg, &jn.start_off) == -1)
		gxp_die_errno(EXIT_TEMP, "journal %s", jn.dir);
	gxp_journal_head(jn.j, &q.head_seg, &q.head_end);
	gxp_journal_tail(jn.j, TAIL_BYTES, seen_line, NULL);
	q.appended = (unsigned long long)gxp_journal_since(jn.j, jn.start_seg, jn.start_off);
	jn.window = gxp_hist_new();
	next = gxp_journal_next(jn.j);
	counters[C_JBYTES].v = (unsigned long long)gxp_journal_bytes(jn.j);
	if (q.appended > 0) {
		counters[C_REPLAYED].v = next - 1 - committed;
		gxp_log(LOG_INFO, "journal %s: replaying seq %" PRIu64 " to %" PRIu64
		    " (%llu bytes), received before a restart and not committed", jn.dir,
		    committed + 1, next - 1, q.appended);
	} else
		gxp_log(LOG_INFO, "journal %s: the next seq is %" PRIu64, jn.dir, next);
}

void
journal_end(void)
{
	gxp_log(LOG_INFO, "journal: %llu messages; from the message callback (just after "
	    "libmosquitto's PUBACK) to the end of its journal write: p50 %" PRId64 " us, "
	    "p99 %" PRId64 " us, max %" PRId64 " us, one message at a time",
	    gxp_hist_count(jn.window), gxp_hist_quantile(jn.window, 0.5),
	    gxp_hist_quantile(jn.window, 0.99), gxp_hist_max(jn.window));
	gxp_journal_close(jn.j);
	gxp_hist_free(jn.window);
}

/* --check with -J: the journal's directory takes a file; one line. */
int
check_journal(void)
{
	char *probe = xasprintf("%s/.check.%ld", jn.dir, (long)getpid());
	int rc = EXIT_OK;

	if (gxp_mkdirs(jn.dir, 0755) == -1 || gxp_write_atomic(probe, "gxp\n", 4) == -1) {
		printf("gxp-sub: FAIL: journal %s: %s\n", jn.dir, strerror(errno));
		rc = errno == EACCES || errno == EROFS ? EXIT_PERM : EXIT_TEMP;
	} else
		printf("gxp-sub: ok: journal %s writable; committed up to seq %" PRIu64 "\n",
		    jn.dir, gxp_journal_committed(jn.dir));
	unlink(probe);
	free(probe);
	return rc;
}
