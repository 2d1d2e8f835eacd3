/* input.c: the lines read on stdin, each an event consumed (events.c) or
 * passed through; inbound events, the most frequent line, are made into
 * their rows without a parse. */
#include <errno.h>
#include <string.h>

#include "upload.h"

/* --- inbound events, the most frequent line, without a parse --- */

enum { R_EVENT, R_DEVICE, R_TOPIC, R_RECEIVED, R_TS, R_KIND, R_PAYLOAD, R_COUNT };

struct raw {
	const char *v[R_COUNT];
	size_t n[R_COUNT];
};

/* The members that matter of a well-formed object, each at most once;
 * -1 for anything else, which the parse then handles. */
static int
raw_members(const char *line, size_t len, struct raw *r)
{
	static const char *const keys[R_COUNT] = {
		"event", "device", "topic", "received_at", "ts", "kind", "payload"
	};
	const char *k, *v;
	size_t pos = 0, kl, vl;
	int rc;

	memset(r, 0, sizeof *r);
	while ((rc = gxp_json_next_member(line, len, &pos, 0, &k, &kl, &v, &vl)) == 1) {
		if (memchr(k, '\\', kl))
			return -1;
		for (int i = 0; i < R_COUNT; i++)
			if (strlen(keys[i]) == kl && memcmp(keys[i], k, kl) == 0) {
				if (r->v[i])
					return -1;
				r->v[i] = v;
				r->n[i] = vl;
			}
	}
	return rc;
}

/* A member's string without escapes into buf; -1 if it is not one. */
static int
raw_str(const struct raw *r, int i, char *buf, size_t cap)
{
	size_t n = r->n[i];

	if (r->v[i] == NULL || n < 2 || n - 2 >= cap || r->v[i][0] != '"' ||
	    memchr(r->v[i] + 1, '\\', n - 2))
		return -1;
	memcpy(buf, r->v[i] + 1, n - 2);
	buf[n - 2] = '\0';
	return 0;
}

static int
raw_is(const struct raw *r, int i, const char *lit)
{
	return r->v[i] && r->n[i] == strlen(lit) && memcmp(r->v[i], lit, r->n[i]) == 0;
}

/* What ev_inbound() makes of an inbound event, for the events gxp-assemble
 * writes; 0 leaves the line to the parse (odd devices or times, a chunk
 * payload that still holds its bytes, ...). */
static int
inbound_text(const char *line, size_t len)
{
	struct raw r;
	char dev[GXP_DEVICE_MAX + 2], at[64], when[32];
	int chunk, t = R_RECEIVED;
	const char *pv = "null", *dummy;
	size_t pn = 4, dn;
	struct gxp_buf row = { 0 };
	int64_t us;

	/* gxp-assemble writes "event" first; other layouts take the parse */
	if (len < 18 || memcmp(line, "{\"event\":\"inbound\"", 18) != 0 ||
	    raw_members(line, len, &r) == -1 || !raw_is(&r, R_EVENT, "\"inbound\"") ||
	    raw_str(&r, R_DEVICE, dev, sizeof dev) == -1 || !gxp_device_valid(dev))
		return 0;
	if (r.v[t] == NULL)
		t = R_TS;
	if (r.v[t] && (raw_str(&r, t, at, sizeof at) == -1 || gxp_parse_time(at, &us) == -1))
		return 0;
	/* escapes are the parse's: what cJSON makes of them is the row */
	for (int i = R_TOPIC; i < R_COUNT; i++)
		if (r.v[i] && memchr(r.v[i], '\\', r.n[i]))
			return 0;
	chunk = raw_is(&r, R_KIND, "\"chunk\"");
	if (r.v[R_PAYLOAD]) {
		pv = r.v[R_PAYLOAD];
		pn = r.n[R_PAYLOAD];
		if (chunk && gxp_json_raw_member(pv, pn, "payload", &dummy, &dn) == 0)
			return 0;	/* the bytes are to be left out */
	}
	if (r.v[t])
		gxp_fmt_utc(when, us);
	else
		now_utc(when);
	counters[C_EVENTS].v++;
	rows_device_seen(rows, dev, when);
	if (publog == PUBLOG_OFF || (chunk && publog == PUBLOG_NO_CHUNKS) ||
	    r.v[R_TOPIC] == NULL || r.v[R_TOPIC][0] != '"')
		return 1;
	gxp_buf_grow(&row, r.n[R_TOPIC] + pn + 96);
	gxp_buf_adds(&row, "{\"topic\":");
	gxp_buf_add(&row, r.v[R_TOPIC], r.n[R_TOPIC]);
	gxp_buf_adds(&row, ",\"direction\":\"in\",\"payload\":");
	gxp_buf_add(&row, pv, pn);
	gxp_buf_adds(&row, ",\"received_at\":\"");
	gxp_buf_adds(&row, when);
	gxp_buf_add(&row, "\"}", 2);
	rows_add_text(rows, T_PUBLOG, row.p, "topic,direction,payload,received_at", dev);
	return 1;
}

static void
line_in(char *line, size_t len)
{
	cJSON *j;

	if (inbound_text(line, len))
		return;
	j = gxp_json_parse(line, len);
	if (j == NULL || !cJSON_IsObject(j) || !event(j)) {
		counters[C_PASSED].v++;
		gxp_out_line(line, len);
	}
	cJSON_Delete(j);
}

void
read_input(struct gxp_lines *in)
{
	char *line;
	size_t len;
	int rc;

	if (gxp_lines_fill(in) == -1 && errno != EINTR) {
		gxp_log(LOG_ERROR, "stdin: %s", strerror(errno));
		eof = 1;
		return;
	}
	while ((rc = gxp_lines_next(in, &line, &len)) != LINE_AGAIN) {
		if (rc == LINE_EOF) {
			eof = 1;
			break;
		}
		if (rc == LINE_TOO_LONG)
			gxp_log(LOG_ERROR, "line %lld: longer than MAX_LINE_BYTES; skipped",
			    gxp_lines_number(in));
		else
			line_in(line, len);
	}
}
