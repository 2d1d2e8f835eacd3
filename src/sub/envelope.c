/* envelope.c: a message as an NDJSON line, in the envelope of
 * mosquitto_sub -F %J but in UTC and keeping every payload; and the
 * fingerprints that recognise a message the broker sends again. */
#define _GNU_SOURCE	/* memmem(3) */
#include <string.h>

#include <mosquitto.h>

#include "sub/sub.h"

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

void
seen_line(const char *line, size_t len, void *arg)
{
	uint64_t fp;

	(void)arg;
	if (line_fingerprint(line, len, &fp) == 0)
		seen_add(fp);
}

void
on_connect_flags(struct mosquitto *mosq, void *arg, int rc, int flags)
{
	(void)mosq, (void)arg;
	seen.armed = rc == 0 && (flags & 1) && seen.n > 0;
}

/* Whether the envelope in b is a message received before, sent again
 * (QoS 0 never is: the broker does not keep it in flight). */
int
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
void
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
