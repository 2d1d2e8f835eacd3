/* events.c: gxp-assemble's output, held in a buffer until the spool
 * changes it reports are durable (finish.c commits), and the events
 * (gxp(7)) and log lines written into it, naming the line, device and
 * image being processed; refused work and bad input reported at a bounded
 * rate. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assemble.h"

/* gxp_fmt_utc, remembering the last second's text: formatting two times a
 * chunk would otherwise cost as much as parsing it. */
void
fmt_time(char buf[32], int64_t us)
{
	static int64_t sec = INT64_MIN;
	static char last[32];
	int64_t s = us >= 0 ? us / 1000000 : (us - 999999) / 1000000;
	long frac = (long)(us - s * 1000000);

	if (s != sec) {
		gxp_fmt_utc(last, s * 1000000);
		sec = s;
	}
	memcpy(buf, last, 20);	/* "2026-11-27T05:04:21." */
	for (int i = 25; i >= 20; i--, frac /= 10)
		buf[i] = (char)('0' + frac % 10);
	buf[26] = 'Z';
	buf[27] = '\0';
}

/* When an event happened: a message's events, the message's tst, so
 * that the same message makes the same events (and rows) however often it
 * is read (a journal replayed after a crash); the timers' events, the
 * clock's time. */
int64_t
event_us(void)
{
	return cur.received_us ? cur.received_us : wall_us();
}

/* ---- output, held until the next commit ---- */

static struct gxp_buf outq;
static uint64_t seq_seen, seq_marked;

/* The line with this journal seq is processed: its output is in outq. */
void
seq_done(uint64_t seq)
{
	if (seq > seq_seen)
		seq_seen = seq;
}

void
out_add(const char *s, size_t n)
{
	gxp_buf_grow(&outq, n + 1);
	memcpy(outq.p + outq.len, s, n);
	outq.p[outq.len + n] = '\n';
	outq.len += n + 1;
}

void
out_flush(size_t upto)
{
	if (upto > 0 && !gxp_out_closed && gxp_write_all(1, outq.p, upto) == -1) {
		if (errno != EPIPE)
			gxp_log(LOG_ERROR, "stdout: %s", strerror(errno));
		gxp_out_closed = 1;
	}
	if (outq.len > upto)
		memmove(outq.p, outq.p + upto, outq.len - upto);
	outq.len -= upto;
}

size_t
out_len(void)
{
	return outq.len;
}

/* All the output, and after it a mark (gxp(7)): the output of every line
 * up to that seq is written, so gxp-upload may commit it once the rows
 * it made are durable. */
void
out_flush_all(void)
{
	char m[80];
	int n;

	if (seq_seen > seq_marked) {
		n = snprintf(m, sizeof m, "{\"event\":\"mark\",\"v\":%d,\"seq\":%llu}",
		    GXP_EVENT_VERSION, (unsigned long long)seq_seen);
		out_add(m, (size_t)n);
		seq_marked = seq_seen;
	}
	out_flush(out_len());
}

/* Every event's "ts" goes third, after "event" and "v" (which
 * gxp_event_new puts first). */
void
emit(cJSON *e)
{
	char *s = gxp_json_print(e), ts[32];
	const char *v = strstr(s, "\"v\":");
	size_t len = strlen(s), at = v ? (size_t)(v - s) + 4 + strcspn(v + 4, ",}") : len;

	fmt_time(ts, event_us());
	gxp_buf_grow(&outq, len + 48);
	gxp_buf_add(&outq, s, at);
	gxp_buf_addf(&outq, ",\"ts\":\"%s\"", ts);
	gxp_buf_add(&outq, s + at, len - at);
	gxp_buf_add(&outq, "\n", 1);
	free(s);
	cJSON_Delete(e);
}

/* ---- what is being processed, for error events and log lines ---- */

struct current cur;

/* A name fit for a log line: no control characters, not too long. */
static const char *
printable(const char *s, char buf[80])
{
	size_t i;

	if (s == NULL)
		return "-";
	for (i = 0; s[i] && i < 64; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	strcpy(buf + i, s[i] ? "..." : "");
	return buf;
}

void
log_at(int level, const char *dev, const char *image, const char *msg)
{
	char d[80], i[80], where[48] = "";

	if (cur.lineno)
		snprintf(where, sizeof where, "line %lld: ", cur.lineno);
	gxp_log(level, "%sdevice %s image %s: %s", where, printable(dev, d),
	    printable(image, i), msg);
}

const char *
severity(int code)
{
	return code == 2102 || code == 2202 || code == 2203 ? "warn" : "error";
}

/* ---- reports of refused work: once per sender, cause and interval ---- */

#define LIMITS 4096	/* senders and causes remembered at once */
#define PROBES 16

struct limit {
	char dev[GXP_DEVICE_MAX + 1];
	int8_t cause, used;
	unsigned long more;	/* refused since the last report */
	int64_t last;		/* clock ms of the last report */
};

static struct limit *limits, shared[RC_COUNT];
static size_t nlimits;

static size_t
limit_hash(const char *dev, int cause)
{
	return gxp_hash(dev) ^ (uint32_t)cause * 2654435761u;
}

/* Drops the entries whose interval has passed with nothing held back. */
static void
limits_purge(int64_t now)
{
	struct limit *old = limits;

	limits = xcalloc(LIMITS, sizeof *limits);
	nlimits = 0;
	for (size_t i = 0; i < LIMITS; i++) {
		struct limit *l = &old[i];
		size_t k = limit_hash(l->dev, l->cause);

		if (!l->used || (l->more == 0 && now - l->last >= cfg.report_ms))
			continue;
		while (limits[k % LIMITS].used)
			k++;
		limits[k % LIMITS] = *l;
		nlimits++;
	}
	free(old);
}

/* The entry of (dev, cause); when the table is full, one shared by every
 * sender, so that made-up senders cannot grow it. */
static struct limit *
limit_of(const char *dev, int cause, int64_t now)
{
	size_t h = limit_hash(dev, cause);

	if (limits == NULL) {
		limits = xcalloc(LIMITS, sizeof *limits);
		for (int i = 0; i < RC_COUNT; i++)
			shared[i].last = INT64_MIN / 4;
	}
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = h; k < h + PROBES; k++) {
			struct limit *l = &limits[k % LIMITS];

			if (l->used && l->cause == cause && strcmp(l->dev, dev) == 0)
				return l;
			if (!l->used) {
				snprintf(l->dev, sizeof l->dev, "%s", dev);
				l->cause = (int8_t)cause;
				l->used = 1;
				l->last = INT64_MIN / 4;
				nlimits++;
				return l;
			}
		}
		if (pass == 0)
			limits_purge(now);
	}
	return &shared[cause];
}

/* Whether a refusal of cause for dev is reported now; how many were not
 * since the last report, and when that was. */
static int
report_due(const char *dev, int cause, unsigned long *more, int64_t *since)
{
	int64_t now = clock_ms();
	struct limit *l;

	*more = 0;
	if (cfg.report_ms == 0)
		return 1;
	l = limit_of(dev ? dev : "", cause, now);
	if (l->last > INT64_MIN / 4 && now - l->last < cfg.report_ms) {
		l->more++;
		return 0;
	}
	*more = l->more;
	*since = l->last;
	l->more = 0;
	l->last = now;
	return 1;
}

/* An error event and a log line, for refused work or bad input: counted
 * always, reported once per sender and cause every
 * REFUSED_REPORT_INTERVAL_S (with how many more there were), so that a
 * flood makes no flood of events, rows or log lines. */
void
error_event(int cause, int code, const char *dev, const char *image, const char *fmt, ...)
{
	char reason[640];
	unsigned long more;
	int64_t since;
	va_list ap;
	cJSON *e;
	int n;

	counters[C_REFUSED + cause].v++;
	if (!report_due(dev, cause, &more, &since))
		return;
	va_start(ap, fmt);
	n = vsnprintf(reason, 512, fmt, ap);
	va_end(ap);
	if (more > 0 && n >= 0)
		snprintf(reason + (n < 512 ? n : 511), sizeof reason - 512, "; and %lu more "
		    "like it from this sender in the last %lld s", more,
		    (long long)((clock_ms() - since) / 1000));
	e = gxp_event_new("error");
	cJSON_AddNumberToObject(e, "code", code);
	cJSON_AddStringToObject(e, "severity", severity(code));
	cJSON_AddStringToObject(e, "reason", reason);
	if (dev)
		cJSON_AddStringToObject(e, "device", dev);
	if (image)
		cJSON_AddStringToObject(e, "image_name", image);
	if (cur.topic)
		cJSON_AddStringToObject(e, "topic", cur.topic);
	/* a journal line is named by its seq, the same in a replay, where its
	 * line number is not */
	if (cur.seq)
		cJSON_AddNumberToObject(e, "seq", (double)cur.seq);
	else if (cur.lineno)
		cJSON_AddNumberToObject(e, "line", (double)cur.lineno);
	emit(e);
	counters[C_ERRORS].v++;
	log_at(code == 2102 ? LOG_WARN : LOG_ERROR, dev, image, reason);
}

void
pass_line(void)
{
	counters[C_PASSED].v++;
	out_add(cur.line, cur.len);
}

/* more: members to add at the end (taken), or NULL. */
void
failed_event(const char *dev, const char *image, const char *cname, int code,
    const char *entry, const char *reason, cJSON *more)
{
	cJSON *e = gxp_event_new("capture_failed");

	cJSON_AddStringToObject(e, "device", dev);
	cJSON_AddStringToObject(e, "image_name", image);
	if (cname)
		cJSON_AddStringToObject(e, "capture_name", cname);
	else
		cJSON_AddNullToObject(e, "capture_name");
	cJSON_AddNumberToObject(e, "code", code);
	cJSON_AddStringToObject(e, "severity", severity(code));
	cJSON_AddStringToObject(e, "reason", reason);
	if (entry)
		cJSON_AddStringToObject(e, "entry", entry);
	while (more && more->child) {
		cJSON *m = cJSON_DetachItemViaPointer(more, more->child);

		cJSON_AddItemToObject(e, m->string, m);
	}
	cJSON_Delete(more);
	emit(e);
	counters[C_FAILED].v++;
	log_at(code == 2202 || code == 2203 ? LOG_WARN : LOG_ERROR, dev, image, reason);
}

void
capture_failed(struct asm *a, int code, const char *entry, const char *fmt, ...)
{
	char dev[GXP_DEVICE_MAX + 1], reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	asm_dev(a, dev);
	failed_event(dev, asm_name(a), a->capture_name, code, entry, reason, NULL);
}

void
add_time(cJSON *obj, const char *key, int64_t us)
{
	char buf[32];

	gxp_fmt_utc(buf, us);
	cJSON_AddStringToObject(obj, key, buf);
}

void
inbound(const char *dev, const char *kind, const char *raw)
{
	cJSON *e;

	if (cfg.publog == PUBLOG_OFF)
		return;
	e = gxp_event_new("inbound");
	cJSON_AddStringToObject(e, "device", dev);
	cJSON_AddStringToObject(e, "topic", cur.topic);
	add_time(e, "received_at", cur.received_us);
	cJSON_AddStringToObject(e, "kind", kind);
	cJSON_AddRawToObject(e, "payload", raw);
	emit(e);
}

void
events_free(void)
{
	gxp_buf_free(&outq);
	seq_seen = seq_marked = 0;
	free(limits);
	limits = NULL;
	nlimits = 0;
	memset(shared, 0, sizeof shared);
}
