/* message.c: the message callback, from the broker to the journal or
 * the buffer; the subscriptions. */
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "sub/sub.h"

enum { TOO_BIG_LOG_MS = 60000 };	/* at most one line a minute about them */

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

void
on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *m)
{
	struct gxp_buf *b = arg;

	(void)mosq;
	jn.msg_us = gxp_mono_us();
	counters[C_MESSAGES].v++;
	counters[C_BYTES].v += (unsigned long long)m->payloadlen;
	if (cl && cluster_filter_message(m))
		return;
	message_take(b, m);
}

/* A message this worker takes: to the journal or the buffer. */
void
message_take(struct gxp_buf *b, const struct mosquitto_message *m)
{
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

/* The banner's last lines, once the broker has granted the subscriptions. */
void
on_subscribe(struct mosquitto *mosq, void *arg, int mid, int n, const int *granted)
{
	static int announced;

	(void)mosq;
	if (cluster_subscribed(arg, mid))
		return;
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

void
on_connected(struct mosquitto *mosq, void *arg)
{
	int rc;

	(void)arg;
	cluster_connected(mosq);
	rc = mosquitto_subscribe_multiple(mosq, NULL, ntopics, topics, 1, 0, NULL);
	if (rc != MOSQ_ERR_SUCCESS)
		gxp_log(LOG_ERROR, "cannot subscribe: %s", mosquitto_strerror(rc));
}
