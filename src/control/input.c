/* input.c: every line read goes out unchanged, and at once: lines are
 * copied to an output buffer as they are read, and the buffer is written
 * whenever stdout takes it.  When stdout is a pipe its writes do not
 * block, so a slow next stage (gxp-assemble waits for its syncs) never
 * holds up an answer; up to CONTROL_BUFFER_BYTES wait here, and past that
 * no input is read until they have gone.
 *
 * A hello is a message on a TOPIC_PATTERN_STATUS topic, not retained,
 * whose payload is a JSON object with "status":"Alive" (the firmware's
 * word; the user's worker answers exactly those); its tst is when it
 * reached the worker.  Envelopes of gxp-sub, mosquitto_sub -F %J and -F %j
 * are understood. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"

static struct gxp_lines *in;
static struct gxp_buf out;
static size_t out_off;
static int nonblock;
static long long limit;

void
input_open(int fd)
{
	struct stat st;
	int fl;

	in = gxp_lines_open(fd, (size_t)gxp_cfg_int("MAX_LINE_BYTES"));
	limit = gxp_cfg_int("CONTROL_BUFFER_BYTES");
	/* a pipe is ours alone; a file or a terminal is left blocking */
	if (fstat(1, &st) == 0 && S_ISFIFO(st.st_mode) && (fl = fcntl(1, F_GETFL)) != -1 &&
	    fcntl(1, F_SETFL, fl | O_NONBLOCK) != -1)
		nonblock = 1;
}

int
input_fd(void)
{
	return gxp_lines_fd(in);
}

int
input_paused(void)
{
	return (long long)(out.len - out_off) >= limit;
}

void
out_line(const char *line, size_t len)
{
	if (gxp_out_closed)
		return;
	gxp_buf_add(&out, line, len);
	gxp_buf_add(&out, "\n", 1);
}

void
out_event(cJSON *e)
{
	char *s = gxp_json_print(e);

	out_line(s, strlen(s));
	free(s);
	cJSON_Delete(e);
}

int
out_pending(void)
{
	return out.len > out_off && !gxp_out_closed;
}

/* Writes what stdout takes now; -1 when it is closed. */
int
out_flush(void)
{
	while (out_pending()) {
		ssize_t n = write(1, out.p + out_off, out.len - out_off);

		if (n > 0) {
			out_off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return 0;
		if (errno != EPIPE)
			gxp_log(LOG_ERROR, "stdout: %s", strerror(errno));
		gxp_out_closed = 1;
		return -1;
	}
	out.len = out_off = 0;
	return gxp_out_closed ? -1 : 0;
}

/* A JSON string member's text without escapes, into b; NULL if not one. */
static const char *
string_of(const char *v, size_t n, struct gxp_buf *b)
{
	long got;

	if (n < 2 || v[0] != '"')
		return NULL;
	b->len = 0;
	gxp_buf_grow(b, n);
	if ((got = gxp_json_unescape(v + 1, n - 2, b->p)) < 0)
		return NULL;
	b->p[got] = '\0';
	return memchr(b->p, '\0', (size_t)got) ? NULL : b->p;
}

static int
key_is(const char *k, size_t n, const char *name)
{
	return strlen(name) == n && memcmp(k, name, n) == 0;
}

/* Whether a payload (an object, or a string holding one) says "Alive". */
static int
says_alive(const char *v, size_t n)
{
	struct gxp_buf b = { 0 };
	const char *text = v;
	cJSON *j;
	int alive;

	if (*v == '"') {
		if ((text = string_of(v, n, &b)) == NULL) {
			gxp_buf_free(&b);
			return 0;
		}
		n = strlen(text);
	}
	j = gxp_json_parse(text, n);
	alive = cJSON_IsObject(j) && gxp_json_str(j, "status") &&
	    strcmp(gxp_json_str(j, "status"), "Alive") == 0;
	cJSON_Delete(j);
	gxp_buf_free(&b);
	return alive;
}

struct envelope {
	const char *tst, *payload, *retain;
	size_t tstlen, plen, rlen;
	char dev[GXP_DEVICE_MAX + 1];
};

/* A status message's members, or -1 as soon as the line is not one. */
static int
status_message(const char *line, size_t len, struct envelope *e, struct gxp_buf *b)
{
	const char *k, *v, *topic;
	size_t pos = 0, kl, vl;
	int rc, status = 0;

	memset(e, 0, sizeof *e);
	while ((rc = gxp_json_next_member(line, len, &pos, GXP_JSON_SHALLOW, &k, &kl, &v,
	    &vl)) == 1) {
		if (key_is(k, kl, "topic")) {
			if ((topic = string_of(v, vl, b)) == NULL ||
			    gxp_topic_parse(topic, e->dev) != TOPIC_STATUS)
				return -1;
			status = 1;
		} else if (key_is(k, kl, "tst"))
			e->tst = v, e->tstlen = vl;
		else if (key_is(k, kl, "payload"))
			e->payload = v, e->plen = vl;
		else if (key_is(k, kl, "retain"))
			e->retain = v, e->rlen = vl;
		else if (key_is(k, kl, "event"))
			return -1;	/* an event, not a message */
	}
	return rc == 0 && status && e->payload ? 0 : -1;
}

static void
hello_check(const char *line, size_t len)
{
	static struct gxp_buf b;
	struct envelope e;
	const char *tst;
	int64_t us;

	if (status_message(line, len, &e, &b) == -1)
		return;
	if (e.retain && (key_is(e.retain, e.rlen, "1") || key_is(e.retain, e.rlen, "true")))
		return;		/* kept by the broker: not a device waking now */
	if (!says_alive(e.payload, e.plen))
		return;
	if (replay) {
		counters[C_HELLOS].v++;
		counters[C_NOT_ANSWERED].v++;
		gxp_log(LOG_DEBUG, "device %s: a hello in a replay; not answered", e.dev);
		return;
	}
	if (e.tst == NULL || (tst = string_of(e.tst, e.tstlen, &b)) == NULL ||
	    gxp_parse_time(tst, &us) == -1) {
		counters[C_HELLOS].v++;
		counters[C_NOT_ANSWERED].v++;
		gxp_log(LOG_WARN, "device %s: a hello without a receive time (tst); not "
		    "answered", e.dev);
		return;
	}
	answer_hello(e.dev, us);
}

/* Reads what there is; -1 at the end of input. */
int
input_read(void)
{
	char *line;
	size_t len;
	int rc;

	if (gxp_lines_fill(in) == -1) {
		if (errno == EINTR)
			return 0;
		gxp_log(LOG_ERROR, "stdin: %s", strerror(errno));
		return -1;
	}
	while ((rc = gxp_lines_next(in, &line, &len)) != LINE_AGAIN) {
		switch (rc) {
		case LINE_EOF:
			return -1;
		case LINE_TOO_LONG:
			gxp_log(LOG_ERROR, "line %lld: longer than MAX_LINE_BYTES; skipped",
			    gxp_lines_number(in));
			break;
		case LINE_TRUNCATED:
			/* as it came, without the newline it lacks */
			gxp_buf_add(&out, line, len);
			break;
		default:
			counters[C_PASSED].v++;
			out_line(line, len);
			hello_check(line, len);
		}
	}
	return 0;
}

void
input_close(void)
{
	int fl;

	if (nonblock && (fl = fcntl(1, F_GETFL)) != -1)
		fcntl(1, F_SETFL, fl & ~O_NONBLOCK);
	nonblock = 0;
	out_flush();
	gxp_lines_free(in);
	in = NULL;
	gxp_buf_free(&out);
	out_off = 0;
}
