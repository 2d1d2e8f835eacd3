/* gxp-sub: MQTT messages to NDJSON lines on stdout, in the envelope of
 * mosquitto_sub -F %J, but in UTC and keeping every payload.
 *
 * The main thread runs the network loop and never blocks on stdout: each
 * message becomes a line in a bounded buffer that a writer thread drains,
 * so a slow reader cannot make the broker drop us.  When the buffer is
 * full, new messages are dropped and counted (gxp-sub(1), BUGS).  The
 * writer is woken when no more messages wait in the socket (or much is
 * buffered), so a burst goes out in one write(2), not a wake-up and a
 * write per message. */
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "lib/gxp.h"

#define WAKE_BYTES 65536	/* buffered bytes that wake the writer anyway */
#define KEEP_BYTES (1 << 20)	/* a writer's buffer larger than this is let go */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct gxp_buf buf;	/* lines for the writer */
	size_t writing, max;	/* bytes being written; the bound */
	int done, waiting;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { 0 }, 0, 0, 0, 0 };

static char **topics;
static int ntopics, subscribed;

enum { CHECK_TIMEOUT_MS = 10000 };

static struct gxp_counter counters[] = {
	{ "messages_total", "MQTT messages received", 0, 0 },
	{ "bytes_total", "payload bytes received", 0, 0 },
	{ "dropped_total", "messages dropped because the output buffer was full", 0, 0 },
	{ "buffered_bytes", "bytes waiting to be written to stdout", 1, 0 },
};
enum { C_MESSAGES, C_BYTES, C_DROPPED, C_BUFFERED };

static void
usage(int code)
{
	fprintf(code ? stderr : stdout,
	    "usage: gxp-sub [-c] [--check] [--env file] [-h host] [-i id] [-p port]\n"
	    "               [-t topic ...]\n");
	exit(code);
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

/* The envelope: tst, topic, qos, retain, payloadlen, mid, payload.  The
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
	gxp_buf_grow(b, len + strlen(m->topic) + 160);
	gxp_buf_adds(b, "{\"tst\":\"");
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

static void
on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *m)
{
	struct gxp_buf *b = arg;

	(void)mosq;
	counters[C_MESSAGES].v++;
	counters[C_BYTES].v += (unsigned long long)m->payloadlen;
	b->len = 0;
	envelope(b, m);
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

/* After a turn of the network loop: the writer gets what is buffered,
 * unless more messages are in the socket already. */
static void
kick(struct gxp_mqtt *m)
{
	struct pollfd p = { mosquitto_socket(gxp_mqtt_handle(m)), POLLIN, 0 };
	int idle;

	pthread_mutex_lock(&q.mu);
	idle = q.waiting && q.buf.len > 0;
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

/* Writes everything buffered, one write(2) for all (the buffers swap, so
 * the network loop goes on filling the other); stops at a write error
 * (the reader went away) or when told the input is done and all is out. */
static void *
writer(void *arg)
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
	pthread_t tid;
	sigset_t all, old;
	int c, check = 0, rc = EXIT_OK;
	char *check_id = NULL;

	gxp_init(argv[0]);
	o.clean_session = 1;
	while ((c = getopt_long(argc, argv, "ce:h:i:p:t:", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o.clean_session = 0; break;
		case 'C': check = 1; break;
		case 'e': envfile = optarg; break;
		case 'h': gxp_config_set("MQTT_HOST", optarg); break;
		case 'i': o.client_id = optarg; break;
		case 'p': gxp_config_set("MQTT_PORT", optarg); break;
		case 't':
			topics = xrealloc(topics, (size_t)(ntopics + 1) * sizeof *topics);
			topics[ntopics++] = xstrdup(optarg);
			break;
		case 'H': usage(EXIT_OK); break;
		default: usage(EXIT_PERM);
		}
	}
	if (optind != argc)
		usage(EXIT_PERM);
	if (check) {
		/* a session of its own: never take over or wipe the worker's */
		o.client_id = check_id = xasprintf("gxp-check-%ld", (long)getpid());
		o.clean_session = 1;
	}
	gxp_config_common(envfile);
	q.max = (size_t)gxp_cfg_int("SUB_BUFFER_BYTES");
	subscribe_defaults();
	gxp_signals_init();
	gxp_metrics_init(counters, sizeof counters / sizeof counters[0]);

	o.on_connected = on_connected;
	o.on_message = on_message;
	o.userdata = &line;
	m = gxp_mqtt_new(&o);
	mosquitto_subscribe_callback_set(gxp_mqtt_handle(m), on_subscribe);
	if (check) {
		rc = gxp_mqtt_check(m, subscribe_granted, CHECK_TIMEOUT_MS);
		gxp_mqtt_free(m);
		free(check_id);
		gxp_config_free();
		return rc;
	}
	gxp_mqtt_banner();

	sigfillset(&all);	/* signals go to the main thread only */
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&tid, NULL, writer, NULL) != 0)
		gxp_die(EXIT_TEMP, "cannot start the writer thread");
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	while (!gxp_sig_term && !gxp_out_closed) {
		if ((rc = gxp_mqtt_step(m, 200)) != 0)
			break;
		kick(m);
		gxp_metrics_tick(0);
	}
	gxp_mqtt_disconnect(m);
	pthread_mutex_lock(&q.mu);
	q.done = 1;
	pthread_cond_signal(&q.cv);
	pthread_mutex_unlock(&q.mu);
	pthread_join(tid, NULL);
	gxp_buf_free(&q.buf);
	gxp_metrics_tick(1);
	if (counters[C_DROPPED].v)
		gxp_log(LOG_WARN, "%llu messages were dropped while the output buffer was full",
		    (unsigned long long)counters[C_DROPPED].v);
	gxp_mqtt_free(m);
	gxp_buf_free(&line);
	for (int i = 0; i < ntopics; i++)
		free(topics[i]);
	free(topics);
	gxp_config_free();
	return rc;
}
