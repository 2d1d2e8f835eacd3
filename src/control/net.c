/* net.c: gxp-control's own broker connection (a clean session; client id
 * MQTT_CLIENT_ID with "-control").  It subscribes to TOPIC_PATTERN_STATUS
 * and takes the hellos it hears there, live: a clean session gets no
 * backlog, so a hello that waited in the broker while no gxp-control ran,
 * or a line of gxp-sub's replayed, is never taken for a device waiting
 * now.  A thread runs the connection, as in gxp-pub, so an answer goes
 * out the moment it is published whatever the main thread waits on;
 * hellos and the broker's acknowledgements (PUBACK) come to the main
 * thread through queues, and a byte on a pipe wakes it for them. */
#define _GNU_SOURCE	/* pipe2(2) */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "ctl.h"

static struct gxp_mqtt *m;
static pthread_t tid;
static int running;
static _Atomic int stopping, failed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int *acked;
static size_t nacked, ackcap;
static struct hello *hellos;
static size_t nhellos, hellocap;
static int wake[2] = { -1, -1 };

static void
poke(void)
{
	ssize_t n = write(wake[1], "", 1);

	(void)n;	/* a full pipe is awake enough */
}

static void
on_publish(struct mosquitto *mosq, void *arg, int mid)
{
	(void)mosq, (void)arg;
	pthread_mutex_lock(&lock);
	if (nacked == ackcap)
		acked = xrealloc(acked, (ackcap = ackcap ? 2 * ackcap : 64) * sizeof *acked);
	acked[nacked++] = mid;
	pthread_mutex_unlock(&lock);
	poke();
}

/* Whether a status payload is a hello: a JSON object with "status":"Alive"
 * (the firmware's word; the user's worker answers exactly those). */
static int
alive(const void *payload, int len)
{
	cJSON *j = payload ? gxp_json_parse(payload, (size_t)len) : NULL;
	const char *st = gxp_json_str(j, "status");
	int yes = cJSON_IsObject(j) && st && strcmp(st, "Alive") == 0;

	cJSON_Delete(j);
	return yes;
}

static void
on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *msg)
{
	struct hello h;

	(void)mosq, (void)arg;
	if (!gxp_topic_match("TOPIC_PATTERN_STATUS", msg->topic, h.dev) ||
	    !alive(msg->payload, msg->payloadlen))
		return;
	if (msg->retain) {
		/* kept by the broker: not a device waking now */
		counters[C_RETAINED].v++;
		gxp_log(LOG_DEBUG, "device %s: a retained status; not a hello", h.dev);
		return;
	}
	h.at = gxp_wall_us();
	pthread_mutex_lock(&lock);
	if (nhellos == hellocap)
		hellos = xrealloc(hellos, (hellocap = hellocap ? 2 * hellocap : 64) * sizeof *hellos);
	hellos[nhellos++] = h;
	pthread_mutex_unlock(&lock);
	poke();
}

/* TOPIC_PATTERN_STATUS; with GXP_CLUSTER=shared, one member of the
 * group <GXP_CLUSTER_GROUP>-control hears each hello. */
static char *
status_filter(void)
{
	static char buf[1024];

	if (gxp_cluster_mode_of(gxp_cfg("GXP_CLUSTER")) == GXP_CLUSTER_SHARED)
		snprintf(buf, sizeof buf, "$share/%s-control/%s", gxp_cfg("GXP_CLUSTER_GROUP"),
		    gxp_cfg("TOPIC_PATTERN_STATUS"));
	else
		snprintf(buf, sizeof buf, "%s", gxp_cfg("TOPIC_PATTERN_STATUS"));
	return buf;
}

static void
on_subscribe(struct mosquitto *mosq, void *arg, int mid, int n, const int *granted)
{
	(void)mosq, (void)arg, (void)mid;
	if (n < 1 || granted[0] > 2)
		gxp_log(LOG_ERROR, "the broker refused the subscription to %s; no hello "
		    "will be heard", status_filter());
	else
		gxp_log(LOG_INFO, "answering hellos on %s with %s", status_filter(),
		    gxp_cfg("TOPIC_PATTERN_CMD"));
}

/* After every (re)connection: a clean session has no subscription. */
static void
on_connected(struct mosquitto *mosq, void *arg)
{
	int rc = mosquitto_subscribe(mosq, NULL, status_filter(), 1);

	(void)arg;
	if (rc != MOSQ_ERR_SUCCESS)
		gxp_log(LOG_ERROR, "cannot subscribe to %s: %s", status_filter(),
		    mosquitto_strerror(rc));
}

static void *
network(void *arg)
{
	(void)arg;
	while (!stopping) {
		int rc = gxp_mqtt_step(m, 100);

		if (rc != 0) {
			failed = rc;
			poke();
			break;
		}
	}
	return NULL;
}

/* check: a connection of its own for --check (mqtt.c gives it an id of
 * its own and looks whether another client holds the worker's). */
static void
connect_broker(int check)
{
	struct gxp_mqtt_opts o = { 0 };

	o.check = check;
	o.clean_session = 1;
	o.nodelay = 1;		/* an answer is one small message: no Nagle wait */
	o.on_publish = on_publish;
	if (!check) {
		o.on_connected = on_connected;
		o.on_message = on_message;
		o.on_subscribe = on_subscribe;
	}
	m = gxp_mqtt_new(&o);
}

int
net_start(void)
{
	sigset_t all, old;

	if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) == -1)
		gxp_die_errno(EXIT_TEMP, "pipe");
	connect_broker(0);
	sigfillset(&all);	/* signals go to the main thread only */
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&tid, NULL, network, NULL) != 0)
		gxp_die(EXIT_TEMP, "cannot start the network thread");
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	running = 1;
	return 0;
}

/* QoS 1, not retained: a sleeping device must not find it at its next
 * connection, its answer then is another. */
int
net_publish(const char *topic, const char *payload, int *mid)
{
	int rc = mosquitto_publish(gxp_mqtt_handle(m), mid, topic, (int)strlen(payload),
	    payload, 1, false);

	/* a QoS 1 message queued while the link is down goes out on reconnect */
	if (rc == MOSQ_ERR_SUCCESS || rc == MOSQ_ERR_NO_CONN)
		return 0;
	gxp_log(LOG_ERROR, "cannot publish to %s: %s", topic, mosquitto_strerror(rc));
	return -1;
}

/* Moves up to max of a queue's items out; n: how many it holds. */
static int
take(void *out, void *q, size_t *n, size_t size, int max)
{
	int k = *n < (size_t)max ? (int)*n : max;

	if (k == 0)
		return 0;	/* q may still be NULL */
	memcpy(out, q, (size_t)k * size);
	memmove(q, (char *)q + (size_t)k * size, (*n - (size_t)k) * size);
	*n -= (size_t)k;
	return k;
}

/* The acknowledged message ids since the last call, up to max. */
int
net_take_acked(int *mids, int max)
{
	char buf[256];
	int k;

	while (wake[0] >= 0 && read(wake[0], buf, sizeof buf) > 0)
		;
	pthread_mutex_lock(&lock);
	k = take(mids, acked, &nacked, sizeof *acked, max);
	if (nacked + nhellos > 0)
		poke();
	pthread_mutex_unlock(&lock);
	return k;
}

/* The hellos heard since the last call, up to max. */
int
net_take_hellos(struct hello *h, int max)
{
	int k;

	pthread_mutex_lock(&lock);
	k = take(h, hellos, &nhellos, sizeof *hellos, max);
	pthread_mutex_unlock(&lock);
	return k;
}

int
net_wake_fd(void)
{
	return wake[0];
}

/* EXIT_PERM when the broker refused us for good, else 0. */
int
net_failed(void)
{
	return failed;
}

/* --check: a connection of its own, not the worker's. */
int
net_check(void)
{
	int rc;

	connect_broker(1);
	rc = gxp_mqtt_check(m, NULL, 10000);
	gxp_mqtt_free(m);
	m = NULL;
	return rc;
}

void
net_stop(void)
{
	if (running) {
		stopping = 1;
		pthread_join(tid, NULL);
		gxp_mqtt_disconnect(m);
		running = 0;
	}
	gxp_mqtt_free(m);
	m = NULL;
	free(acked);
	free(hellos);
	acked = NULL;
	hellos = NULL;
	nacked = ackcap = nhellos = hellocap = 0;
	for (int i = 0; i < 2; i++)
		if (wake[i] >= 0)
			close(wake[i]);
	wake[0] = wake[1] = -1;
}
