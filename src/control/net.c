/* net.c: gxp-control's own broker connection (a clean session; client id
 * MQTT_CLIENT_ID with "-control").  A thread runs it, as in gxp-pub, so an
 * answer goes out the moment it is published whatever the main thread
 * waits on; the broker's acknowledgements (PUBACK) come back through a
 * queue, and a byte on a pipe wakes the main thread for them. */
#define _GNU_SOURCE	/* pipe2(2) */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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
static size_t nacked, cap;
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
	if (nacked == cap)
		acked = xrealloc(acked, (cap = cap ? 2 * cap : 64) * sizeof *acked);
	acked[nacked++] = mid;
	pthread_mutex_unlock(&lock);
	poke();
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

static void
connect_broker(const char *client_id)
{
	struct gxp_mqtt_opts o = { 0 };

	o.client_id = client_id;
	o.clean_session = 1;
	o.nodelay = 1;		/* an answer is one small message: no Nagle wait */
	o.on_publish = on_publish;
	m = gxp_mqtt_new(&o);
}

int
net_start(void)
{
	sigset_t all, old;

	if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) == -1)
		gxp_die_errno(EXIT_TEMP, "pipe");
	connect_broker(NULL);
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

/* The acknowledged message ids since the last call, up to max. */
int
net_take_acked(int *mids, int max)
{
	char buf[256];
	size_t left;
	int n = 0;

	while (read(wake[0], buf, sizeof buf) > 0)
		;
	pthread_mutex_lock(&lock);
	while (n < max && (size_t)n < nacked) {
		mids[n] = acked[n];
		n++;
	}
	memmove(acked, acked + n, (nacked - (size_t)n) * sizeof *acked);
	left = nacked -= (size_t)n;
	pthread_mutex_unlock(&lock);
	if (left > 0)
		poke();
	return n;
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

/* --check: a connection of its own, not the worker's session. */
int
net_check(void)
{
	char *id = xasprintf("gxp-check-%ld", (long)getpid());
	int rc;

	connect_broker(id);
	rc = gxp_mqtt_check(m, NULL, 10000);
	gxp_mqtt_free(m);
	m = NULL;
	free(id);
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
	acked = NULL;
	nacked = cap = 0;
	for (int i = 0; i < 2; i++)
		if (wake[i] >= 0)
			close(wake[i]);
	wake[0] = wake[1] = -1;
}
