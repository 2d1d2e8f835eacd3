/* input.c: one input line: a device message's envelope (topic, tst,
 * payload as an object or a string), its topic's device and kind, then a
 * status, metadata or chunk message; every other line passes through. */
#include <stdio.h>
#include <string.h>

#include "assemble.h"

struct envelope {
	const char *topic, *tst, *payload, *enc;
	size_t topiclen, tstlen, plen, enclen;
	uint64_t seq;		/* gxp-sub's journal seq, 0 if none */
	int event;
};

/* A seq: a whole number, 1 or more, that fits. */
static uint64_t
seq_value(const char *v, size_t n)
{
	uint64_t x = 0;

	if (n == 0 || n > 19 || strspn(v, "0123456789") < n)
		return 0;
	for (size_t i = 0; i < n; i++)
		x = x * 10 + (uint64_t)(v[i] - '0');
	return x;
}

enum { ENV_PASS, ENV_BAD, ENV_OK };

static int
envelope(const char *line, size_t len, struct envelope *e)
{
	const char *k, *v;
	size_t pos = 0, klen, vlen;
	int rc;

	memset(e, 0, sizeof *e);
	while ((rc = gxp_json_next_member(line, len, &pos, GXP_JSON_SHALLOW, &k, &klen, &v,
	    &vlen)) == 1) {
		if (key_is(k, klen, "topic") && *v == '"')
			e->topic = v + 1, e->topiclen = vlen - 2;
		else if (key_is(k, klen, "tst") && *v == '"')
			e->tst = v + 1, e->tstlen = vlen - 2;
		else if (key_is(k, klen, "payload"))
			e->payload = v, e->plen = vlen;
		else if (key_is(k, klen, "payload_encoding") && *v == '"')
			e->enc = v + 1, e->enclen = vlen - 2;
		else if (key_is(k, klen, "event"))
			e->event = 1;
		else if (key_is(k, klen, "seq"))
			e->seq = seq_value(v, vlen);
	}
	if (rc == -1) {
		size_t i = strspn(line, " \t\r");

		if (i == len || (line[i] != '{' && gxp_json_valid(line, len)))
			return ENV_PASS;
		return ENV_BAD;
	}
	return e->topic && e->payload && !e->event ? ENV_OK : ENV_PASS;
}

/* Does topic have a pattern's shape but a device id that is not valid? */
static int
bad_device_topic(const char *topic)
{
	static const char *const names[] = {
		"TOPIC_PATTERN_DATA", "TOPIC_PATTERN_STATUS", "TOPIC_PATTERN_ACK"
	};
	size_t tlen = strlen(topic);

	for (size_t i = 0; i < 3; i++) {
		const char *p = gxp_cfg(names[i]), *plus = strchr(p, '+');
		size_t pre, post;

		if (plus == NULL)
			continue;
		pre = (size_t)(plus - p);
		post = strlen(plus + 1);
		if (tlen > pre + post && strncmp(topic, p, pre) == 0 &&
		    strcmp(topic + tlen - post, plus + 1) == 0)
			return 1;
	}
	return 0;
}

static struct gxp_buf topicbuf, ptext;

static const char *
json_string(const char *s, size_t n, struct gxp_buf *b)
{
	long got;

	gxp_buf_grow(b, n);
	if ((got = gxp_json_unescape(s, n, b->p)) < 0 || strlen(b->p) != (size_t)got)
		return NULL;
	b->len = (size_t)got;
	return b->p;
}

/* The payload as JSON text in ptext: the object itself (-F %J, gxp-sub),
 * or the text of a string (-F %j); -1 for anything else. */
static int
payload_text(const struct envelope *e)
{
	long got;

	if (e->enc && e->enclen == 6 && memcmp(e->enc, "base64", 6) == 0)
		return -1;
	ptext.len = 0;
	if (*e->payload == '{')
		gxp_buf_add(&ptext, e->payload, e->plen);
	else if (*e->payload == '"') {
		gxp_buf_grow(&ptext, e->plen);
		if ((got = gxp_json_unescape(e->payload + 1, e->plen - 2, ptext.p)) < 0)
			return -1;
		ptext.len = (size_t)got;
	} else
		return -1;
	if (memchr(ptext.p, '\n', ptext.len) || memchr(ptext.p, '\r', ptext.len))
		ptext.len = gxp_json_minify(ptext.p, ptext.len);
	ptext.p[ptext.len] = '\0';
	return 0;
}

static void
on_status(const char *dev)
{
	cJSON *j = gxp_json_parse(ptext.p, ptext.len), *e;
	const cJSON *list;
	long long n;

	/* strictly: cJSON takes control characters and NULs, the raw copy in
	 * the events would not be JSON */
	if (!cJSON_IsObject(j) || !gxp_json_valid(ptext.p, ptext.len)) {
		error_event(RC_MALFORMED, 2101, dev, NULL, "status: payload is not a JSON object");
		cJSON_Delete(j);
		return;
	}
	inbound(dev, "status", ptext.p);
	e = gxp_event_new("status");
	cJSON_AddStringToObject(e, "device", dev);
	cJSON_AddStringToObject(e, "topic", cur.topic);
	if (gxp_json_str(j, "status"))
		cJSON_AddStringToObject(e, "status", gxp_json_str(j, "status"));
	else
		cJSON_AddNullToObject(e, "status");
	list = cJSON_GetObjectItemCaseSensitive(j, "pending_list");
	if (gxp_json_int(j, "pendingImg", &n) == 1 || gxp_json_int(j, "pending_count", &n) == 1)
		cJSON_AddNumberToObject(e, "pending_count", (double)n);
	else if (cJSON_IsArray(list))
		cJSON_AddNumberToObject(e, "pending_count", cJSON_GetArraySize(list));
	else
		cJSON_AddNullToObject(e, "pending_count");
	if (cJSON_IsArray(list))
		cJSON_AddItemToObject(e, "pending_list", cJSON_Duplicate(list, 1));
	cJSON_AddRawToObject(e, "raw", ptext.p);
	emit(e);
	cJSON_Delete(j);
}

/* Chunk, metadata, or neither: then the line passes through (0). */
static int
on_data(const char *dev)
{
	struct chunk c;

	if (chunk_scan(ptext.p, ptext.len, &c) == -1)
		error_event(RC_MALFORMED, 2101, dev, NULL, "data: payload is not a JSON object");
	else if (c.has_id)
		on_chunk(dev, ptext.p, ptext.len, &c);
	else if (c.has_name)
		on_metadata(dev, ptext.p, ptext.len);
	else
		return 0;
	return 1;
}

static void
received_at(const struct envelope *e)
{
	char buf[64];
	int64_t us;

	if (e->tst && e->tstlen < sizeof buf) {
		memcpy(buf, e->tst, e->tstlen);
		buf[e->tstlen] = '\0';
		if (gxp_parse_time(buf, &us) == 0) {
			if (cfg.replay)
				advance(us);
			cur.received_us = us;
			return;
		}
	}
	cur.received_us = wall_us();
}

/* UTF-8, checked eight bytes at a time while it is plain ASCII. */
int
text_valid(const char *s, size_t n)
{
	uint64_t w, acc = 0;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		acc |= w;
	}
	for (; i < n; i++)
		acc |= (unsigned char)s[i];
	return (acc & 0x8080808080808080ULL) == 0 ||
	    gxp_utf8_valid((const unsigned char *)s, n);
}

static void
message(const struct envelope *e)
{
	char dev[GXP_DEVICE_MAX + 1];
	int kind;

	received_at(e);
	if (!text_valid(cur.line, cur.len)) {
		error_event(RC_MALFORMED, 2101, NULL, NULL, "not valid UTF-8");
		return;
	}
	if ((cur.topic = json_string(e->topic, e->topiclen, &topicbuf)) == NULL) {
		error_event(RC_MALFORMED, 2101, NULL, NULL, "topic is not a valid string");
		return;
	}
	if ((kind = gxp_topic_parse(cur.topic, dev)) == TOPIC_OTHER) {
		if (bad_device_topic(cur.topic))
			error_event(RC_MALFORMED, 2101, NULL, NULL, "invalid device id in topic");
		else
			pass_line();
		return;
	}
	if (kind == TOPIC_ACK)
		;
	else if (payload_text(e) == -1)
		error_event(RC_MALFORMED, 2101, dev, NULL, "%s: payload is not JSON",
		    kind == TOPIC_DATA ? "data" : "status");
	else if (kind == TOPIC_STATUS)
		on_status(dev);
	else if (!on_data(dev)) {
		pass_line();
		return;
	}
	counters[C_MESSAGES].v++;
}

void
handle_line(char *line, size_t len, long long lineno, int truncated)
{
	struct envelope e;
	int rc;

	cur.line = line;
	cur.len = len;
	cur.lineno = lineno;
	cur.topic = NULL;
	cur.received_us = 0;
	rc = envelope(line, len, &e);
	cur.seq = e.seq;
	switch (rc) {
	case ENV_PASS:
		if (e.event)
			cluster_line(line, len);
		pass_line();
		break;
	case ENV_BAD:
		if (truncated && e.seq) {
			/* a journal line cut in the pipe (its writer died): it comes
			 * again whole from the journal, so it is not done */
			gxp_log(LOG_INFO, "line %lld: the last line (seq %llu) was cut short; "
			    "the journal has it", lineno, (unsigned long long)e.seq);
			e.seq = 0;
		} else
			error_event(RC_MALFORMED, 2101, NULL, NULL, truncated ? "truncated last line" : "not JSON");
		break;
	default:
		message(&e);
	}
	seq_done(e.seq);
	cur.topic = NULL;
	cur.lineno = 0;
	cur.received_us = 0;
	cur.seq = 0;
}

void
input_free(void)
{
	gxp_buf_free(&topicbuf);
	gxp_buf_free(&ptext);
}
