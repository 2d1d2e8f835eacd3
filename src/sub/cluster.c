/* cluster.c: gxp-sub in a cluster (GXP_CLUSTER).  The worker's presence
 * record (src/lib/presence.c) is at GXP_CLUSTER_TOPIC/<worker id>, with a
 * Last Will that clears it; gxp-sub reads GXP_CLUSTER_TOPIC/+ for the live
 * set, and drops the messages of devices another worker owns in the
 * message callback, from the topic alone: before the envelope, the
 * journal and any JSON.  Each change of the set is written downstream as
 * a cluster line, in its place among the messages, for gxp-control and
 * gxp-assemble.
 *
 * At a connection the retained records come again after the SUBACK of
 * the presence filter: a second SUBACK of the same filter says they all
 * have.  Until the first such burst is complete this worker does not know
 * the set, and device messages (a persistent session delivers its queue
 * at once) are held in memory, then decided: up to SUB_BUFFER_BYTES, past
 * which they are taken undecided.  Held messages are not in the journal
 * yet: a SIGKILL in those milliseconds loses them, as it does a message
 * between its PUBACK and the journal's write (README, Reliability).
 *
 * With GXP_CLUSTER=shared the broker chooses: the device topics are
 * subscribed to as $share/GXP_CLUSTER_GROUP/..., every message received is
 * taken, and the digests below check the broker's choice. */
#include <stdlib.h>
#include <string.h>

#include "sub/sub.h"

struct gxp_cluster *cl;

static struct {
	char *own, *filter;	/* GXP_CLUSTER_TOPIC/<self>, .../+ */
	int mid1, mid2;
	int known;		/* the set was read once */
	int burst;		/* reading the retained records after a connection */
	char **seen;		/* the workers of this burst */
	size_t nseen, capseen;
	struct mosquitto_message **held;	/* until the set is known */
	int64_t *held_us;			/* when each came */
	size_t nheld, capheld, heldbytes;
	int overheld;		/* SUB_BUFFER_BYTES held: the rest is taken */
	/* GXP_CLUSTER=shared: the devices received this period and the last */
	char *digests;		/* GXP_CLUSTER_TOPIC/+/seen */
	struct seen_set { uint32_t *h; char **dev; size_t n, cap; } now, before;
	int64_t period_ms, next_ms, warned_ms;
} cs;

enum { SCATTER_LOG_MS = 60000 };	/* at most one warning a minute */

/* GXP_CLUSTER: the worker's presence record goes to the cluster's topic. */
void
cluster_init(struct gxp_mqtt_opts *o)
{
	char *own;

	if ((cl = gxp_cluster_new()) == NULL)
		return;
	own = cs.own = gxp_cluster_topic(cl, gxp_cluster_self(cl));
	cs.filter = gxp_cluster_topic(cl, "+");
	cs.digests = gxp_cluster_topic(cl, "+/seen");
	cs.period_ms = gxp_cfg_int("GXP_CLUSTER_DIGEST_S") * 1000;
	cs.next_ms = gxp_mono_ms() + cs.period_ms;
	o->presence_topic = own;
	if (gxp_cluster_mode(cl) == GXP_CLUSTER_SHARED)
		for (int i = 0; i < ntopics; i++) {
			char *t = xasprintf("$share/%s/%s", gxp_cluster_group(cl), topics[i]);

			free(topics[i]);
			topics[i] = t;
		}
	gxp_log(LOG_INFO, "cluster (%s): worker %s, presence at %s", gxp_cluster_mode(cl) ==
	    GXP_CLUSTER_SHARED ? "shared" : "presence", gxp_cluster_self(cl), own);
}

/* The set, as a line in the output (and the journal), and in the log. */
static void
emit(int joined)
{
	struct gxp_buf b = { 0 };
	char ts[32];

	gxp_fmt_utc(ts, gxp_wall_us());
	if (jn.j) {
		gxp_buf_adds(&b, "{\"seq\":");
		gxp_buf_addf(&b, "%llu", (unsigned long long)gxp_journal_next(jn.j));
		gxp_buf_adds(&b, ",\"ts\":\"");
	} else
		gxp_buf_adds(&b, "{\"ts\":\"");
	gxp_buf_adds(&b, ts);
	gxp_buf_adds(&b, "\",");
	gxp_cluster_line(cl, joined, &b);
	counters[C_CL_WORKERS].v = gxp_cluster_size(cl);
	counters[C_CL_CHANGES].v++;
	gxp_log(LOG_INFO, "cluster: %zu worker%s live: %.*s", gxp_cluster_size(cl),
	    gxp_cluster_size(cl) == 1 ? "" : "s", (int)b.len - 1, b.p);
	if (jn.j)
		journal_line(&b);
	else
		buffer_line(&b);
	gxp_buf_free(&b);
}

/* At each connection: the retained records again, then a second SUBACK. */
void
cluster_connected(struct mosquitto *mosq)
{
	if (cl == NULL)
		return;
	cs.burst = 1;
	for (size_t i = 0; i < cs.nseen; i++)
		free(cs.seen[i]);
	cs.nseen = 0;
	mosquitto_subscribe(mosq, &cs.mid1, cs.filter, 1);
	mosquitto_subscribe(mosq, &cs.mid2, cs.filter, 1);
	if (gxp_cluster_mode(cl) == GXP_CLUSTER_SHARED)
		mosquitto_subscribe(mosq, NULL, cs.digests, 0);
}

/* ---- GXP_CLUSTER=shared: does the broker keep a device on one worker?
 *
 * Each worker publishes, every GXP_CLUSTER_DIGEST_S, the hashes of the
 * devices it received messages of (GXP_CLUSTER_TOPIC/<worker>/seen, QoS 0,
 * not retained); a worker that finds one of its own devices of this period
 * or the last in another's digest says loudly that the broker scatters a
 * device's messages over several workers (mosquitto does, per message),
 * and counts it.  Periods are not aligned between workers: the last one
 * covers the overlap. */

static int
set_has(const struct seen_set *s, uint32_t h, const char **dev)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->h[i] == h) {
			*dev = s->dev[i];
			return 1;
		}
	return 0;
}

static void
set_clear(struct seen_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->dev[i]);
	s->n = 0;
}

static void
set_free(struct seen_set *s)
{
	set_clear(s);
	free(s->h);
	free(s->dev);
}

/* A device received this period (a linear set: one worker's devices in
 * a few seconds; the set is cleared each period). */
static void
saw(const char *dev)
{
	uint32_t h = gxp_hash(dev);
	const char *d;

	if (set_has(&cs.now, h, &d))
		return;
	if (cs.now.n == cs.now.cap) {
		cs.now.cap = cs.now.cap ? 2 * cs.now.cap : 64;
		cs.now.h = xrealloc(cs.now.h, cs.now.cap * sizeof *cs.now.h);
		cs.now.dev = xrealloc(cs.now.dev, cs.now.cap * sizeof *cs.now.dev);
	}
	cs.now.h[cs.now.n] = h;
	cs.now.dev[cs.now.n++] = xstrdup(dev);
}

static void
publish_digest(struct mosquitto *mosq)
{
	struct gxp_buf b = { 0 };
	char *topic;

	if (cs.now.n == 0)
		return;
	topic = xasprintf("%s/seen", cs.own);
	gxp_buf_adds(&b, "{\"v\":1,\"devices\":[");
	for (size_t i = 0; i < cs.now.n; i++)
		gxp_buf_addf(&b, "%s%u", i ? "," : "", cs.now.h[i]);
	gxp_buf_adds(&b, "]}");
	mosquitto_publish(mosq, NULL, topic, (int)b.len, b.p, 0, false);
	free(topic);
	gxp_buf_free(&b);
}

/* Once a period: the digest out, this period becomes the last. */
void
cluster_tick(struct mosquitto *mosq)
{
	struct seen_set t;
	int64_t now = gxp_mono_ms();

	if (cl == NULL || gxp_cluster_mode(cl) != GXP_CLUSTER_SHARED || now < cs.next_ms)
		return;
	cs.next_ms = now + cs.period_ms;
	publish_digest(mosq);
	set_clear(&cs.before);
	t = cs.before;
	cs.before = cs.now;
	cs.now = t;
}

static void
digest(const char *w, const struct mosquitto_message *m)
{
	const cJSON *ds, *d;
	const char *dev = NULL;
	cJSON *o;

	if (strcmp(w, gxp_cluster_self(cl)) == 0 ||
	    (o = gxp_json_parse(m->payload, (size_t)m->payloadlen)) == NULL)
		return;
	ds = cJSON_GetObjectItemCaseSensitive(o, "devices");
	cJSON_ArrayForEach(d, ds) {
		uint32_t h;

		if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > UINT32_MAX)
			continue;
		h = (uint32_t)d->valuedouble;
		if (set_has(&cs.now, h, &dev) || set_has(&cs.before, h, &dev))
			break;
	}
	if (dev) {
		counters[C_CL_SCATTERED].v++;
		if (cs.warned_ms == 0 || gxp_mono_ms() - cs.warned_ms >= SCATTER_LOG_MS) {
			cs.warned_ms = gxp_mono_ms();
			gxp_log(LOG_ERROR, "GXP_CLUSTER=shared: the broker gave messages of device "
			    "%s to this worker and to worker %s within %lld s: it scatters one "
			    "device's messages over the group (mosquitto picks a member per "
			    "message), so photos are split between spools and never complete; "
			    "use GXP_CLUSTER=presence, or a broker that routes shared "
			    "subscriptions by topic (EMQX: the hash_topic strategy)", dev, w,
			    (long long)(2 * cs.period_ms / 1000));
		}
	}
	cJSON_Delete(o);
}

static void
seen_add(const char *w)
{
	if (cs.nseen == cs.capseen)
		cs.seen = xrealloc(cs.seen, (cs.capseen = cs.capseen ? 2 * cs.capseen : 8) *
		    sizeof *cs.seen);
	cs.seen[cs.nseen++] = xstrdup(w);
}

static int
seen_in(const char *w)
{
	for (size_t i = 0; i < cs.nseen; i++)
		if (strcmp(cs.seen[i], w) == 0)
			return 1;
	return 0;
}

/* The burst is over: the set is what it held, and this worker. */
static void
burst_end(void)
{
	gxp_cluster_update(cl, gxp_cluster_self(cl), 1);
	for (size_t i = gxp_cluster_size(cl); i-- > 0;) {
		const char *w = gxp_cluster_worker(cl, i);

		if (strcmp(w, gxp_cluster_self(cl)) != 0 && !seen_in(w))
			gxp_cluster_update(cl, w, 0);
	}
	for (size_t i = 0; i < cs.nseen; i++)
		gxp_cluster_update(cl, cs.seen[i], 1);
	cs.burst = 0;
}

/* A SUBACK of ours: 1 (and the device topics are subscribed to at the
 * first), else 0. */
int
cluster_subscribed(void *arg, int mid)
{
	int first;

	if (cl == NULL || (mid != cs.mid1 && mid != cs.mid2))
		return 0;
	if (mid == cs.mid1)
		return 1;
	first = !cs.known;
	cs.known = 1;
	burst_end();
	emit(1);	/* after every connection: what changed while away is unknown */
	if (first) {
		for (size_t i = 0; i < cs.nheld; i++) {
			jn.msg_us = cs.held_us[i];	/* its journal window from then */
			if (!cluster_filter_message(cs.held[i]))
				message_take(arg, cs.held[i]);
			mosquitto_message_free(&cs.held[i]);
		}
		free(cs.held);
		free(cs.held_us);
		cs.held = NULL;
		cs.held_us = NULL;
		cs.nheld = cs.capheld = cs.heldbytes = 0;
	}
	return 1;
}

/* A worker's record: live when it has a body, gone when empty. */
static void
presence(const char *w, const struct mosquitto_message *m)
{
	int live = m->payloadlen > 0;

	if (strcmp(w, gxp_cluster_self(cl)) == 0)
		return;		/* ours is mqtt.c's; we are live while connected */
	if (cs.burst && live && m->retain)
		seen_add(w);
	if (cs.known && gxp_cluster_update(cl, w, live))
		emit(0);
}

static void
hold(const struct mosquitto_message *m)
{
	if (cs.nheld == cs.capheld) {
		cs.capheld = cs.capheld ? 2 * cs.capheld : 64;
		cs.held = xrealloc(cs.held, cs.capheld * sizeof *cs.held);
		cs.held_us = xrealloc(cs.held_us, cs.capheld * sizeof *cs.held_us);
	}
	cs.heldbytes += (size_t)m->payloadlen + strlen(m->topic) + sizeof **cs.held;
	cs.held_us[cs.nheld] = jn.msg_us;
	cs.held[cs.nheld] = xcalloc(1, sizeof **cs.held);
	if (mosquitto_message_copy(cs.held[cs.nheld], m) != MOSQ_ERR_SUCCESS)
		gxp_die(EXIT_TEMP, "out of memory");
	cs.nheld++;
}

/* The worker of GXP_CLUSTER_TOPIC/<worker>/seen, in a static buffer. */
static const char *
digest_worker(const char *topic)
{
	static char w[GXP_DEVICE_MAX + 1];
	size_t n = strlen(topic), p = strlen(cs.own) - strlen(gxp_cluster_self(cl));

	if (n < p + 6 || strcmp(topic + n - 5, "/seen") != 0 || strncmp(topic, cs.own, p) != 0 ||
	    n - 5 - p > GXP_DEVICE_MAX)
		return NULL;
	memcpy(w, topic + p, n - 5 - p);
	w[n - 5 - p] = '\0';
	return gxp_device_valid(w) ? w : NULL;
}

/* Whether the message goes no further: a presence record, a device of
 * another worker (counted), or one held until the set is known. */
int
cluster_filter_message(const struct mosquitto_message *m)
{
	char dev[GXP_DEVICE_MAX + 1];
	const char *w;

	if ((w = gxp_cluster_topic_worker(cl, m->topic)) != NULL) {
		presence(w, m);
		return 1;
	}
	if (gxp_cluster_mode(cl) == GXP_CLUSTER_SHARED && (w = digest_worker(m->topic)) != NULL) {
		digest(w, m);
		return 1;
	}
	if (gxp_topic_parse(m->topic, dev) == TOPIC_OTHER)
		return 0;
	if (gxp_cluster_mode(cl) == GXP_CLUSTER_SHARED) {
		saw(dev);
		return 0;
	}
	if (!cs.known) {
		/* a bound on memory: past it the device's messages are taken, as
		 * without a cluster, rather than lost or held without end */
		if (cs.heldbytes < (size_t)gxp_cfg_int("SUB_BUFFER_BYTES")) {
			hold(m);
			return 1;
		}
		if (!cs.overheld++)
			gxp_log(LOG_WARN, "cluster: %zu messages (SUB_BUFFER_BYTES) held while "
			    "the workers' presence records have not come; taking the next ones "
			    "without asking whose they are", cs.nheld);
		return 0;
	}
	if (gxp_cluster_owns(cl, dev))
		return 0;
	counters[C_CL_DROPPED].v++;
	return 1;
}

void
cluster_free(void)
{
	for (size_t i = 0; i < cs.nseen; i++)
		free(cs.seen[i]);
	free(cs.seen);
	for (size_t i = 0; i < cs.nheld; i++)
		mosquitto_message_free(&cs.held[i]);
	free(cs.held);
	free(cs.held_us);
	free(cs.filter);
	free(cs.own);
	free(cs.digests);
	set_free(&cs.now);
	set_free(&cs.before);
	gxp_cluster_free(cl);
}
