/* gxp-sub: MQTT messages to NDJSON lines on stdout, in the envelope of
 * mosquitto_sub -F %J, but in UTC and keeping every payload.
 *
 * The main thread runs the network loop and never blocks on stdout: a
 * writer thread copies the lines out.  With a journal (-J), each message
 * is appended to it, stamped with its seq, inside the message callback,
 * and the writer streams the journal to stdout from where it is, starting
 * after the position gxp-upload committed: a slow or restarting pipeline
 * costs disk, not memory, and nothing received is lost to a crash.  A
 * third thread syncs the journal every JOURNAL_SYNC_MS.  Without one,
 * each message becomes a line in a bounded memory buffer, and when it is
 * full new messages are dropped and counted (gxp-sub(1), BUGS).  The
 * writer is woken when no more messages wait in the socket (or much is
 * pending), so a burst goes out in one write(2), not a wake-up and a
 * write per message. */
#define _GNU_SOURCE	/* sendfile(2) */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mosquitto.h>

#include "lib/gxp.h"

#define WAKE_BYTES 65536	/* buffered bytes that wake the writer anyway */
#define KEEP_BYTES (1 << 20)	/* a writer's buffer larger than this is let go */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct gxp_buf buf;	/* without a journal: lines for the writer */
	size_t writing, max;	/* bytes being written; the bound */
	uint64_t head_seg;	/* with one: where the journal ends */
	long long head_end;
	unsigned long long appended, sent;	/* journal bytes to write, written */
	int done, waiting;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { 0 }, 0, 0, 0, 0, 0, 0, 0, 0 };

/* the journal, when there is one */
static struct {
	const char *dir;
	struct gxp_journal *j;
	struct gxp_hist *window;	/* callback entry to the end of the append */
	uint64_t start_seg;		/* where the writer starts */
	long long start_off, max_bytes, sync_ms;
	int64_t msg_us;			/* when the current callback began */
	int64_t broken_until;		/* an append failed: no reading until then */
	_Atomic int stop_sync;
	_Atomic int failed;		/* the writer could not read the journal */
} jn;

static char **topics;
static int ntopics, subscribed;
static size_t max_message;	/* SUB_MAX_MESSAGE_BYTES */

enum { CHECK_TIMEOUT_MS = 10000 };

static struct gxp_counter counters[] = {
	{ "messages_total", "MQTT messages received", 0, 0 },
	{ "bytes_total", "payload bytes received", 0, 0 },
	{ "dropped_total", "messages dropped because the output buffer was full", 0, 0 },
	{ "buffered_bytes", "bytes waiting to be written to stdout", 1, 0 },
	{ "journal_bytes", "bytes in the journal's segment files", 1, 0 },
	{ "journal_full_total", "times reading stopped because the journal reached JOURNAL_MAX_BYTES", 0, 0 },
	{ "journal_window_p99_us", "99th percentile, microseconds from a message's callback to the end of its journal write", 1, 0 },
	{ "journal_window_max_us", "longest time from a message's callback to the end of its journal write", 1, 0 },
	{ "replayed_total", "journal lines after the committed position, written again at start", 0, 0 },
	{ "redelivered_total", "messages the broker sent again after a reconnect, already received", 0, 0 },
	{ "too_big_total", "messages dropped for a payload over SUB_MAX_MESSAGE_BYTES", 0, 0 },
};
enum { C_MESSAGES, C_BYTES, C_DROPPED, C_BUFFERED, C_JBYTES, C_JFULL, C_JP99, C_JMAX,
	C_REPLAYED, C_REDELIVERED, C_TOO_BIG };

enum { TOO_BIG_LOG_MS = 60000 };	/* at most one line a minute about them */

static void
usage(int code)
{
	gxp_usage(code,
	    "gxp-sub [-c] [--check] [--env file] [-h host] [-i id] [-J dir] [-p port]\n"
	    "               [-t topic ...]\n",
	    "  -c           persistent session: the broker keeps messages while away\n"
	    "  --check      test the broker, the login and the subscription; one line\n"
	    "  --env file   read settings from file instead of ./.env\n"
	    "  -h host      the broker (MQTT_HOST), as for mosquitto_sub; --help is help\n"
	    "  -i id        the client id (default MQTT_CLIENT_ID-sub)\n"
	    "  -J dir       keep every message in the journal dir before passing it on\n"
	    "  -p port      the broker port (MQTT_PORT)\n"
	    "  -t topic     subscribe to topic instead of TOPIC_PATTERN_*; repeatable\n"
	    "  --help       print this and exit\n");
}

/* tst, in the format of gxp_fmt_utc(), whose date and time to the second
 * are made once a second.  Each tst is later than the one before, by 1 us
 * if the clock has not moved (or went back less than a second): a row's
 * identity comes from its message's time (gxp-upload(1), row identity),
 * and two messages must not share one. */
static void
stamp(char buf[32])
{
	static char last[32];
	static int64_t last_s = -1, prev = INT64_MIN;
	int64_t us = gxp_wall_us(), s;
	unsigned frac;

	if (us <= prev && prev - us < 1000000)
		us = prev + 1;
	prev = us;
	s = us / 1000000;
	frac = (unsigned)(us % 1000000);

	if (s != last_s) {
		gxp_fmt_utc(last, us);
		last_s = s;
	}
	memcpy(buf, last, 28);
	for (int i = 25; i >= 20; i--, frac /= 10)
		buf[i] = (char)('0' + frac % 10);
}

/* ---- messages the broker sends again ----
 *
 * QoS 1 is at least once: a message whose PUBACK the broker did not get
 * (gxp-sub killed, or its connection reset, just after the message came)
 * is sent again, with the same packet id, when the session resumes, before
 * anything new.  The fingerprints of the last RECENT messages (their
 * envelope from "topic" on: topic, qos, retain, payloadlen, mid, payload;
 * at start, the journal's last lines) recognise them: after a CONNACK that
 * says the session was kept, the messages that match are dropped, until
 * the first one that does not. */
#define RECENT 1024
#define TAIL_BYTES (1 << 20)	/* of the journal read for them at start */

static struct {
	uint64_t fp[RECENT];
	size_t n, at;
	int armed;
} seen;

static uint64_t
fingerprint(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h;
}

static void
seen_add(uint64_t fp)
{
	seen.fp[seen.at] = fp;
	seen.at = (seen.at + 1) % RECENT;
	if (seen.n < RECENT)
		seen.n++;
}

static int
seen_has(uint64_t fp)
{
	for (size_t i = 0; i < seen.n; i++)
		if (seen.fp[i] == fp)
			return 1;
	return 0;
}

/* The fingerprint of an envelope line (no newline): from its topic on. */
static int
line_fingerprint(const char *line, size_t len, uint64_t *fp)
{
	const char *t = memmem(line, len, "\",\"topic\":", 10);

	if (t == NULL)
		return -1;
	t++;
	*fp = fingerprint(t, len - (size_t)(t - line));
	return 0;
}

static void
seen_line(const char *line, size_t len, void *arg)
{
	uint64_t fp;

	(void)arg;
	if (line_fingerprint(line, len, &fp) == 0)
		seen_add(fp);
}

static void
on_connect_flags(struct mosquitto *mosq, void *arg, int rc, int flags)
{
	(void)mosq, (void)arg;
	seen.armed = rc == 0 && (flags & 1) && seen.n > 0;
}

/* Whether the envelope in b is a message received before, sent again
 * (QoS 0 never is: the broker does not keep it in flight). */
static int
redelivered(const struct gxp_buf *b, int qos)
{
	uint64_t fp;

	if (line_fingerprint(b->p, b->len - 1, &fp) == -1)
		return 0;
	if (seen.armed && qos > 0 && seen_has(fp)) {
		if (counters[C_REDELIVERED].v++ % 1000 == 0)
			gxp_log(LOG_INFO, "the broker sent again a message received before the "
			    "reconnect (%.*s): not written twice", (int)(b->len > 120 ? 120 : b->len - 1),
			    b->p);
		return 1;
	}
	seen.armed = 0;
	seen_add(fp);
	return 0;
}

static void
add_num(struct gxp_buf *b, const char *key, long long v)
{
	char d[24];
	int n = 0;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do
		d[sizeof d - 1 - n++] = (char)('0' + u % 10);
	while ((u /= 10) > 0);
	if (v < 0)
		d[sizeof d - 1 - n++] = '-';
	gxp_buf_adds(b, key);
	gxp_buf_add(b, d + sizeof d - n, (size_t)n);
}

/* The envelope: seq (with a journal), tst, topic, qos, retain,
 * payloadlen, mid, payload.  The
 * payload is copied as it is when it is JSON, as a string with
 * "payload_encoding":"utf8" when it is other text, and in base64 with
 * "payload_encoding":"base64" when it is not text. */
static void
envelope(struct gxp_buf *b, const struct mosquitto_message *m)
{
	const char *p = m->payload ? m->payload : "";
	size_t len = (size_t)m->payloadlen;
	char tst[32];

	stamp(tst);
	gxp_buf_grow(b, len + strlen(m->topic) + 192);
	if (jn.j)
		add_num(b, "{\"seq\":", (long long)gxp_journal_next(jn.j));
	gxp_buf_adds(b, jn.j ? ",\"tst\":\"" : "{\"tst\":\"");
	gxp_buf_add(b, tst, 27);
	gxp_buf_adds(b, "\",\"topic\":");
	gxp_buf_add_jstr(b, m->topic, strlen(m->topic));
	add_num(b, ",\"qos\":", m->qos);
	add_num(b, ",\"retain\":", m->retain ? 1 : 0);
	add_num(b, ",\"payloadlen\":", m->payloadlen);
	if (m->qos > 0)
		add_num(b, ",\"mid\":", m->mid);
	if (len > 0 && gxp_json_valid(p, len)) {
		size_t at = b->len + 11;

		gxp_buf_add(b, ",\"payload\":", 11);
		gxp_buf_add(b, p, len);
		if (memchr(p, '\n', len) || memchr(p, '\r', len))
			b->len = at + gxp_json_minify(b->p + at, len);
	} else if (gxp_utf8_valid((const unsigned char *)p, len)) {
		gxp_buf_adds(b, ",\"payload_encoding\":\"utf8\",\"payload\":");
		gxp_buf_add_jstr(b, p, len);
	} else {
		gxp_buf_adds(b, ",\"payload_encoding\":\"base64\",\"payload\":\"");
		gxp_buf_grow(b, gxp_b64_encoded_len(len));
		b->len += gxp_b64_encode((const unsigned char *)p, len, b->p + b->len);
		gxp_buf_add(b, "\"", 1);
	}
	gxp_buf_add(b, "}\n", 2);
}

/* A payload over SUB_MAX_MESSAGE_BYTES goes no further (not to the
 * journal either): counted, and said at once, then at most once a minute
 * with how many since. */
static void
too_big(const struct mosquitto_message *m)
{
	static int64_t next_log;
	static unsigned long long logged;
	int64_t now = gxp_mono_ms();

	counters[C_TOO_BIG].v++;
	if (now < next_log)
		return;
	next_log = now + TOO_BIG_LOG_MS;
	gxp_log(LOG_WARN, "dropped %llu message%s over SUB_MAX_MESSAGE_BYTES (%zu) "
	    "since the last report; the last: %d bytes on %s",
	    counters[C_TOO_BIG].v - logged, counters[C_TOO_BIG].v - logged > 1 ? "s" : "",
	    max_message, m->payloadlen, m->topic);
	logged = counters[C_TOO_BIG].v;
}

static void
buffer_line(const struct gxp_buf *b)
{
	pthread_mutex_lock(&q.mu);
	if (q.buf.len + q.writing + b->len > q.max) {
		pthread_mutex_unlock(&q.mu);
		if (counters[C_DROPPED].v++ == 0)
			gxp_log(LOG_WARN, "output buffer full (%zu bytes, SUB_BUFFER_BYTES): "
			    "dropping messages until the reader catches up", q.max);
		return;
	}
	gxp_buf_add(&q.buf, b->p, b->len);
	counters[C_BUFFERED].v = q.buf.len + q.writing;
	if (q.waiting && q.buf.len >= WAKE_BYTES)
		pthread_cond_signal(&q.cv);
	pthread_mutex_unlock(&q.mu);
}

/* The message goes to the journal before the callback returns: from the
 * PUBACK libmosquitto sent just before the callback to the end of this
 * write, a SIGKILL loses it (the window, measured here). */
static void
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

static void
on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *m)
{
	struct gxp_buf *b = arg;

	(void)mosq;
	jn.msg_us = gxp_mono_us();
	counters[C_MESSAGES].v++;
	counters[C_BYTES].v += (unsigned long long)m->payloadlen;
	if ((size_t)m->payloadlen > max_message) {
		too_big(m);
		return;
	}
	b->len = 0;
	envelope(b, m);
	if (!redelivered(b, m->qos)) {
		if (jn.j)
			journal_line(b);
		else
			buffer_line(b);
	}
	if (b->cap > KEEP_BYTES)	/* a big message's memory goes back */
		gxp_buf_free(b);
}

/* After a turn of the network loop: the writer gets what is buffered,
 * unless more messages are in the socket already. */
static void
kick(struct gxp_mqtt *m)
{
	struct pollfd p = { mosquitto_socket(gxp_mqtt_handle(m)), POLLIN, 0 };
	int idle;

	pthread_mutex_lock(&q.mu);
	idle = q.waiting && (q.buf.len > 0 || q.appended > q.sent);
	pthread_mutex_unlock(&q.mu);
	if (!idle || (p.fd >= 0 && poll(&p, 1, 0) > 0 && !(p.revents & (POLLERR | POLLHUP))))
		return;
	pthread_mutex_lock(&q.mu);
	pthread_cond_signal(&q.cv);
	pthread_mutex_unlock(&q.mu);
}

/* The banner's last lines, once the broker has granted the subscriptions. */
static void
on_subscribe(struct mosquitto *mosq, void *arg, int mid, int n, const int *granted)
{
	static int announced;

	(void)mosq, (void)arg, (void)mid;
	subscribed = 1;
	for (int i = 0; i < n && i < ntopics; i++)
		if (granted[i] > 2)
			gxp_log(LOG_ERROR, "the broker refused the subscription to %s", topics[i]);
	if (!announced++) {
		gxp_log(LOG_INFO, "\u2713 Subscribed to topics:");
		for (int i = 0; i < ntopics; i++)
			gxp_log(LOG_INFO, "  - %s", topics[i]);
	} else
		gxp_log(LOG_INFO, "subscriptions renewed");
}

static void
on_connected(struct mosquitto *mosq, void *arg)
{
	int rc;

	(void)arg;
	rc = mosquitto_subscribe_multiple(mosq, NULL, ntopics, topics, 1, 0, NULL);
	if (rc != MOSQ_ERR_SUCCESS)
		gxp_log(LOG_ERROR, "cannot subscribe: %s", mosquitto_strerror(rc));
}

/* Without a journal: writes everything buffered, one write(2) for all
 * (the buffers swap, so the network loop goes on filling the other);
 * stops at a write error (the reader went away) or when told the input is
 * done and all is out. */
static void *
writer_buffer(void *arg)
{
	struct gxp_buf b = { 0 }, t;

	(void)arg;
	for (;;) {
		pthread_mutex_lock(&q.mu);
		while (q.buf.len == 0 && !q.done) {
			q.waiting = 1;
			pthread_cond_wait(&q.cv, &q.mu);
			q.waiting = 0;
		}
		t = q.buf;
		q.buf = b;
		b = t;
		q.writing = b.len;
		pthread_mutex_unlock(&q.mu);
		if (b.len == 0)
			break;
		if (!gxp_out_closed && gxp_write_all(1, b.p, b.len) == -1)
			gxp_out_closed = 1;
		b.len = 0;
		if (b.cap > KEEP_BYTES)	/* a backlog's memory goes back */
			gxp_buf_free(&b);
		pthread_mutex_lock(&q.mu);
		q.writing = 0;
		counters[C_BUFFERED].v = q.buf.len;
		pthread_mutex_unlock(&q.mu);
	}
	gxp_buf_free(&b);
	return NULL;
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
static void *
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
static void *
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
static void
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
static int
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
static void
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

static void
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

static int
subscribe_granted(void)
{
	return subscribed;
}

static void
subscribe_defaults(void)
{
	static const char *const names[] = {
		"TOPIC_PATTERN_STATUS", "TOPIC_PATTERN_DATA", "TOPIC_PATTERN_ACK"
	};

	if (ntopics > 0)
		return;
	topics = xcalloc(3, sizeof *topics);
	for (int i = 0; i < 3; i++)
		topics[ntopics++] = xstrdup(gxp_cfg(names[i]));
}

/* --check with -J: the journal's directory takes a file; one line. */
static int
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

static pthread_t writer_tid, sync_tid;

static void
threads_start(void)
{
	sigset_t all, old;

	sigfillset(&all);	/* signals go to the main thread only */
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&writer_tid, NULL, jn.j ? writer_journal : writer_buffer, NULL) != 0 ||
	    (jn.j && pthread_create(&sync_tid, NULL, syncer, NULL) != 0))
		gxp_die(EXIT_TEMP, "cannot start a thread");
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* The writer writes out what is left; then the last sync. */
static void
threads_stop(void)
{
	pthread_mutex_lock(&q.mu);
	q.done = 1;
	pthread_cond_signal(&q.cv);
	pthread_mutex_unlock(&q.mu);
	pthread_join(writer_tid, NULL);
	if (jn.j) {
		jn.stop_sync = 1;
		pthread_join(sync_tid, NULL);
	}
}

static int
run(struct gxp_mqtt *m)
{
	int rc = EXIT_OK;

	while (!gxp_sig_term && !gxp_out_closed) {
		if (jn.j)
			journal_tick();
		if (jn.j && reading_paused()) {
			gxp_sleep_ms(200);
			gxp_metrics_tick(0);
			continue;
		}
		if ((rc = gxp_mqtt_step(m, 200)) != 0)
			break;
		kick(m);
		gxp_metrics_tick(0);
	}
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'C' },
		{ "env", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 }
	};
	struct gxp_mqtt_opts o = { 0 };
	struct gxp_buf line = { 0 };
	const char *envfile = NULL;
	struct gxp_mqtt *m;
	int c, check = 0, rc = EXIT_OK;

	gxp_init(argv[0]);
	o.clean_session = 1;
	while ((c = getopt_long(argc, argv, ":ce:h:i:J:p:t:", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o.clean_session = 0; break;
		case 'C': check = 1; break;
		case 'e': envfile = optarg; break;
		case 'h': gxp_config_set("MQTT_HOST", optarg); break;
		case 'i': o.client_id = optarg; break;
		case 'J': jn.dir = optarg; break;
		case 'p': gxp_config_set("MQTT_PORT", optarg); break;
		case 't':
			topics = xrealloc(topics, (size_t)(ntopics + 1) * sizeof *topics);
			topics[ntopics++] = xstrdup(optarg);
			break;
		case 'H': usage(EXIT_OK); break;
		default:
			gxp_bad_option(c, argv);
			if (c == ':' && optopt == 'h')
				gxp_log(LOG_ERROR, "-h is the broker host, as for mosquitto_sub; "
				    "for help: gxp-sub --help");
			usage(EXIT_PERM);
		}
	}
	if (optind != argc) {
		gxp_log(LOG_ERROR, "unexpected argument %s", argv[optind]);
		usage(EXIT_PERM);
	}
	if (jn.dir && *jn.dir == '\0') {
		gxp_log(LOG_ERROR, "-J needs a directory");
		usage(EXIT_PERM);
	}
	o.check = check;
	gxp_config_common(envfile);
	q.max = (size_t)gxp_cfg_int("SUB_BUFFER_BYTES");
	max_message = (size_t)gxp_cfg_int("SUB_MAX_MESSAGE_BYTES");
	subscribe_defaults();
	gxp_signals_init();
	gxp_metrics_init(counters, sizeof counters / sizeof counters[0]);

	o.on_connected = on_connected;
	o.on_message = on_message;
	o.on_subscribe = on_subscribe;
	o.userdata = &line;
	m = gxp_mqtt_new(&o);
	mosquitto_connect_with_flags_callback_set(gxp_mqtt_handle(m), on_connect_flags);
	if (check) {
		rc = gxp_mqtt_check(m, subscribe_granted, CHECK_TIMEOUT_MS);
		if (jn.dir && (c = check_journal()) != EXIT_OK && rc != EXIT_PERM)
			rc = c;
		gxp_mqtt_free(m);
		gxp_config_free();
		return rc;
	}
	if (jn.dir)
		journal_start();
	gxp_mqtt_banner();
	threads_start();
	rc = run(m);
	gxp_mqtt_disconnect(m);
	threads_stop();
	if (jn.failed && rc == EXIT_OK)
		rc = EXIT_TEMP;
	gxp_buf_free(&q.buf);
	gxp_metrics_tick(1);
	if (counters[C_DROPPED].v)
		gxp_log(LOG_WARN, "%llu messages were dropped while %s",
		    (unsigned long long)counters[C_DROPPED].v, jn.j ?
		    "the journal could not be written" : "the output buffer was full");
	if (jn.j)
		journal_end();
	gxp_mqtt_free(m);
	gxp_buf_free(&line);
	for (int i = 0; i < ntopics; i++)
		free(topics[i]);
	free(topics);
	gxp_config_free();
	return rc;
}
