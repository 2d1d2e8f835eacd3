/* mqtt.c: the broker connection shared by every MQTT tool: settings, TLS,
 * login, and a network loop that reconnects with backoff and tells a
 * refusal that will not go away (bad login, bad certificate) from one that
 * may (broker down, network gone). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "gxp.h"

struct gxp_mqtt {
	struct mosquitto *mosq;
	struct gxp_mqtt_opts o;
	const char *host;
	int port, keepalive, ever_connected, tried;
	_Atomic int connected;
	int refused;		/* CONNACK code of a refusal, 0 if none */
	int64_t backoff_ms, retry_at;
	char last_error[256];	/* the library's last error log line (TLS) */
	char why[256];		/* why the last attempt failed */
};

static int lib_users;

static void
on_connect(struct mosquitto *mosq, void *arg, int rc)
{
	struct gxp_mqtt *m = arg;

	if (rc != 0) {
		m->refused = rc;
		gxp_log(LOG_ERROR, "broker %s:%d refused the connection: %s",
		    m->host, m->port, mosquitto_connack_string(rc));
		return;
	}
	m->refused = 0;
	m->backoff_ms = 0;
	m->connected = 1;
	if (m->ever_connected)
		gxp_log(LOG_INFO, "reconnected to %s:%d", m->host, m->port);
	else
		gxp_log(LOG_INFO, "\u2713 MQTT connected successfully");
	m->ever_connected = 1;
	if (m->o.on_connected)
		m->o.on_connected(mosq, m->o.userdata);
}

static void
on_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
	struct gxp_mqtt *m = arg;

	(void)mosq;
	if (m->connected && rc != 0)
		gxp_log(LOG_WARN, "lost the connection to %s:%d: %s", m->host,
		    m->port, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
	m->connected = 0;
}

static void
on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *msg)
{
	struct gxp_mqtt *m = arg;

	if (m->o.on_message)
		m->o.on_message(mosq, m->o.userdata, msg);
}

static void
on_publish(struct mosquitto *mosq, void *arg, int mid)
{
	struct gxp_mqtt *m = arg;

	if (m->o.on_publish)
		m->o.on_publish(mosq, m->o.userdata, mid);
}

static void
on_log(struct mosquitto *mosq, void *arg, int level, const char *str)
{
	struct gxp_mqtt *m = arg;

	(void)mosq;
	if (level == MOSQ_LOG_ERR) {
		snprintf(m->last_error, sizeof m->last_error, "%s", str);
		gxp_log(LOG_DEBUG, "libmosquitto: %s", str);
	}
}

static void
setup_tls(struct gxp_mqtt *m)
{
	const char *cafile = gxp_cfg("MQTT_CAFILE"), *capath = gxp_cfg("MQTT_CAPATH");
	int rc;

	if (cafile && access(cafile, R_OK) == -1)
		gxp_die(EXIT_PERM, "MQTT_CAFILE=%s: %s", cafile, strerror(errno));
	if (capath && access(capath, R_OK | X_OK) == -1)
		gxp_die(EXIT_PERM, "MQTT_CAPATH=%s: %s", capath, strerror(errno));
	if (cafile || capath)
		rc = mosquitto_tls_set(m->mosq, cafile, capath, NULL, NULL, NULL);
	else
		rc = mosquitto_int_option(m->mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
	if (rc == MOSQ_ERR_SUCCESS)
		rc = mosquitto_tls_opts_set(m->mosq, 1, NULL, NULL);	/* verify peer */
	if (rc != MOSQ_ERR_SUCCESS)
		gxp_die(EXIT_PERM, "TLS setup failed: %s", mosquitto_strerror(rc));
}

static char *
client_id(const struct gxp_mqtt_opts *o)
{
	const char *prefix = gxp_cfg("MQTT_CLIENT_ID");
	const char *role = strncmp(gxp_progname, "gxp-", 4) == 0 ?
	    gxp_progname + 4 : gxp_progname;

	if (o->client_id)
		return xstrdup(o->client_id);
	if (prefix)
		return xasprintf("%s-%s", prefix, role);
	if (!o->clean_session)
		gxp_die(EXIT_PERM, "a persistent session needs a client id (-i ID or MQTT_CLIENT_ID)");
	return NULL;
}

struct gxp_mqtt *
gxp_mqtt_new(const struct gxp_mqtt_opts *o)
{
	struct gxp_mqtt *m = xcalloc(1, sizeof *m);
	const char *user = gxp_cfg("MQTT_USERNAME"), *pass = gxp_cfg("MQTT_PASSWORD");
	int tls = gxp_cfg_bool("MQTT_TLS");
	char *id;

	if (pass && !user)
		gxp_die(EXIT_PERM, "MQTT_PASSWORD is set but MQTT_USERNAME is not");
	if (lib_users++ == 0) {
		mosquitto_lib_init();
		srand((unsigned)getpid() ^ (unsigned)gxp_wall_us());
	}
	m->o = *o;
	m->host = gxp_cfg("MQTT_HOST");
	m->port = gxp_cfg("MQTT_PORT") ? (int)gxp_cfg_int("MQTT_PORT") : tls ? 8883 : 1883;
	m->keepalive = (int)gxp_cfg_int("MQTT_KEEPALIVE");
	id = client_id(o);
	m->mosq = mosquitto_new(id, o->clean_session, m);
	free(id);
	if (m->mosq == NULL)
		gxp_die(EXIT_PERM, "cannot create the MQTT client: %s", strerror(errno));
	mosquitto_threaded_set(m->mosq, 1);
	if (o->nodelay)
		mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_callback_set(m->mosq, on_connect);
	mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
	mosquitto_message_callback_set(m->mosq, on_message);
	mosquitto_publish_callback_set(m->mosq, on_publish);
	mosquitto_log_callback_set(m->mosq, on_log);
	if (user && mosquitto_username_pw_set(m->mosq, user, pass) != MOSQ_ERR_SUCCESS)
		gxp_die(EXIT_PERM, "cannot set the MQTT login");
	if (tls)
		setup_tls(m);
	return m;
}

struct mosquitto *
gxp_mqtt_handle(struct gxp_mqtt *m)
{
	return m->mosq;
}

int
gxp_mqtt_connected(struct gxp_mqtt *m)
{
	return m->connected;
}

/* The seed's start-up banner, first lines. */
void
gxp_mqtt_banner(void)
{
	int tls = gxp_cfg_bool("MQTT_TLS");
	int port = gxp_cfg("MQTT_PORT") ? (int)gxp_cfg_int("MQTT_PORT") : tls ? 8883 : 1883;

	gxp_log(LOG_INFO, "MQTT Broker: %s:%d (TLS: %s)", gxp_cfg("MQTT_HOST"),
	    port, tls ? "True" : "False");
}

/* A CONNACK refusal or TLS failure that retrying will not mend. */
static int
permanent(struct gxp_mqtt *m, int rc)
{
	if (m->refused == 1 || m->refused == 2 || m->refused == 4 || m->refused == 5)
		return 1;
	if (rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_AUTH || rc == MOSQ_ERR_NOT_SUPPORTED) {
		gxp_log(LOG_ERROR, "TLS connection to %s:%d failed: %s", m->host,
		    m->port, m->last_error[0] ? m->last_error : mosquitto_strerror(rc));
		return 1;
	}
	return 0;
}

static void
schedule_retry(struct gxp_mqtt *m, int rc, int err)
{
	int64_t max = gxp_cfg_int("MQTT_RECONNECT_MAX_S") * 1000, delay;
	const char *why = rc == MOSQ_ERR_ERRNO ? strerror(err) : mosquitto_strerror(rc);

	m->backoff_ms = m->backoff_ms ? m->backoff_ms * 2 : 1000;
	if (m->backoff_ms > max)
		m->backoff_ms = max;
	/* up to a quarter more, so a fleet of workers does not retry in step */
	snprintf(m->why, sizeof m->why, "%s", m->refused ?
	    mosquitto_connack_string(m->refused) : why);
	delay = m->backoff_ms + rand() % (m->backoff_ms / 4 + 1);
	m->retry_at = gxp_mono_ms() + delay;
	if (m->refused == 0)
		gxp_log(LOG_WARN, "cannot reach %s:%d: %s; retrying in %.1fs", m->host,
		    m->port, why, (double)delay / 1000);
}

static int
try_connect(struct gxp_mqtt *m)
{
	int rc;

	m->last_error[0] = '\0';
	m->refused = 0;
	rc = m->tried ? mosquitto_reconnect(m->mosq) :
	    mosquitto_connect(m->mosq, m->host, m->port, m->keepalive);
	m->tried = 1;
	return rc;
}

/* One turn of the network loop: services the socket for up to timeout_ms,
 * or, while the connection is down, reconnects once the backoff is over.
 * Returns 0, or EXIT_PERM when the broker refuses us for good. */
int
gxp_mqtt_step(struct gxp_mqtt *m, int timeout_ms)
{
	int64_t now = gxp_mono_ms();
	int rc, err;

	if (m->retry_at) {
		if (now < m->retry_at) {
			gxp_sleep_ms(m->retry_at - now < timeout_ms ? m->retry_at - now : timeout_ms);
			return 0;
		}
		m->retry_at = 0;
		rc = try_connect(m);
	} else if (!m->tried)
		rc = try_connect(m);
	else
		rc = mosquitto_loop(m->mosq, timeout_ms, 1);
	err = errno;
	if (rc == MOSQ_ERR_SUCCESS && m->refused == 0)
		return 0;
	if (permanent(m, rc))
		return EXIT_PERM;
	m->connected = 0;
	schedule_retry(m, rc, err);
	return 0;
}

void
gxp_mqtt_disconnect(struct gxp_mqtt *m)
{
	if (m->connected) {
		mosquitto_disconnect(m->mosq);
		for (int i = 0; i < 10 && mosquitto_loop(m->mosq, 50, 1) == MOSQ_ERR_SUCCESS; i++)
			;
	}
	m->connected = 0;
}

void
gxp_mqtt_free(struct gxp_mqtt *m)
{
	if (m == NULL)
		return;
	mosquitto_destroy(m->mosq);
	free(m);
	if (--lib_users == 0)
		mosquitto_lib_cleanup();
}

/* For --check: waits up to timeout_ms for a connection the broker accepts
 * (and for done() to hold, when given), prints one line on stdout, and
 * returns the exit code: 0, 100 (refused for good) or 111 (unreachable). */
int
gxp_mqtt_check(struct gxp_mqtt *m, int (*done)(void), int timeout_ms)
{
	int64_t deadline = gxp_mono_ms() + timeout_ms;
	int rc = 0;

	while (!(m->connected && (done == NULL || done())) && !gxp_sig_term) {
		if ((rc = gxp_mqtt_step(m, 100)) != 0 || m->retry_at ||
		    gxp_mono_ms() >= deadline)
			break;
	}
	if (m->connected && (done == NULL || done())) {
		printf("%s: ok: broker %s:%d (TLS %s) accepted the connection%s\n",
		    gxp_progname, m->host, m->port, gxp_cfg_bool("MQTT_TLS") ? "on" : "off",
		    gxp_cfg("MQTT_USERNAME") ? " and the login" : "");
		gxp_mqtt_disconnect(m);
		return EXIT_OK;
	}
	printf("%s: FAIL: broker %s:%d: %s\n", gxp_progname, m->host, m->port,
	    rc ? (m->refused ? mosquitto_connack_string(m->refused) : m->last_error) :
	    m->why[0] ? m->why : "no answer in time");
	return rc ? rc : EXIT_TEMP;
}
