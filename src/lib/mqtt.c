/* mqtt.c: the broker connection shared by every MQTT tool: settings, TLS,
 * login, and a network loop that reconnects with backoff and tells a
 * refusal that will not go away (bad login, bad certificate) from one that
 * may (broker down, network gone).  When it fails it says what the usual
 * cause is: TLS on against a plain port or the reverse, a login the broker
 * wanted or refused, another client using the same id. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "gxp.h"

enum {
	STABLE_MS = 10000,	/* a connection this old resets the backoff */
	WHY_MAX = 512
};

struct gxp_mqtt {
	struct mosquitto *mosq;
	struct gxp_mqtt_opts o;
	const char *host;
	char *id;		/* NULL: the library's random one */
	char *check_of;		/* --check: the id the tool would use */
	int port, keepalive, ever_connected, tried, v5, tls;
	_Atomic int connected;
	int refused;		/* CONNACK code of a refusal, 0 if none */
	int awaiting_connack;	/* connected at TCP level, no CONNACK yet */
	int conflict;		/* another client holds our id */
	int leaving;		/* gxp_mqtt_disconnect: our record is being cleared */
	int64_t backoff_ms, retry_at, connected_at;
	mosquitto_property *props;	/* MQTT 5 CONNECT properties */
	struct gxp_presence *presence;
	const char *held, *held_setting;	/* the id the record is of, its setting */
	int presence_mid, presence_done, presence_kind;
	int own_mid;		/* our last publish of the record, kept from the tool */
	char presence_who[WHY_MAX];
	char last_error[256];	/* the library's last error log line (TLS) */
	char why[WHY_MAX];	/* why the last attempt failed */
};

static int lib_users;

/* ---- what a refusal means ---- */

static int
auth_refusal(const struct gxp_mqtt *m)
{
	return m->v5 ? m->refused == MQTT_RC_BAD_USERNAME_OR_PASSWORD ||
	    m->refused == MQTT_RC_NOT_AUTHORIZED || m->refused == MQTT_RC_BAD_AUTHENTICATION_METHOD :
	    m->refused == CONNACK_REFUSED_BAD_USERNAME_PASSWORD ||
	    m->refused == CONNACK_REFUSED_NOT_AUTHORIZED;
}

/* A refusal that retrying will not mend: the login, the id, the protocol. */
static int
refusal_permanent(const struct gxp_mqtt *m)
{
	if (!m->v5)
		return m->refused == 1 || m->refused == 2 || m->refused == 4 || m->refused == 5;
	switch (m->refused) {
	case MQTT_RC_UNSPECIFIED: case MQTT_RC_IMPLEMENTATION_SPECIFIC:
	case MQTT_RC_SERVER_UNAVAILABLE: case MQTT_RC_SERVER_BUSY:
	case MQTT_RC_QUOTA_EXCEEDED: case MQTT_RC_CONNECTION_RATE_EXCEEDED:
		return 0;
	default:
		return m->refused >= 0x80;
	}
}

static void
explain_refusal(struct gxp_mqtt *m)
{
	const char *user = gxp_cfg("MQTT_USERNAME");
	const char *text = m->v5 ? mosquitto_reason_string(m->refused) :
	    mosquitto_connack_string(m->refused);
	char hint[256] = "";

	if (auth_refusal(m) && user)
		snprintf(hint, sizeof hint, " (the login as user %s was refused: check "
		    "MQTT_USERNAME and MQTT_PASSWORD)", user);
	else if (auth_refusal(m))
		snprintf(hint, sizeof hint, " (no login was sent and the broker wants "
		    "one: set MQTT_USERNAME and MQTT_PASSWORD)");
	else if (m->refused == (m->v5 ? MQTT_RC_CLIENTID_NOT_VALID : 2))
		snprintf(hint, sizeof hint, " (the client id %s: set MQTT_CLIENT_ID or -i)",
		    m->id ? m->id : "(random)");
	snprintf(m->why, sizeof m->why, "refused the connection: %s%s", text, hint);
}

/* The usual cause of a connection that ended before the broker answered:
 * TLS against a plain port, or plain MQTT against a TLS port. */
static const char *
tls_hint(const struct gxp_mqtt *m)
{
	static const char *const plain_signs[] = { "unexpected eof", "wrong version number",
		"packet length too long", "record layer failure", "http request", NULL };

	if (!m->tls)
		return m->awaiting_connack ? "; the broker closed the connection without "
		    "answering the login: if this is a TLS port (8883?), set MQTT_TLS=true" : "";
	for (const char *const *s = plain_signs; *s; s++)
		if (strstr(m->last_error, *s))
			return "; the broker does not speak TLS there: if this is a plain "
			    "MQTT port (1883?), set MQTT_TLS=false";
	return "";
}

/* ---- callbacks ---- */

static void
announce_conflict(struct gxp_mqtt *m, const char *id, const char *setting, const char *how)
{
	m->conflict = 1;
	gxp_log(LOG_ERROR, "another client is using the id %s: %s; every worker "
	    "needs %s of its own (%s)", id, how, strcmp(setting, "GXP_WORKER_ID") == 0 ?
	    "a worker id" : "a client id", setting);
}

static void
presence_publish(struct gxp_mqtt *m)
{
	/* QoS 0: no resend after a reconnect, one mid to keep from the tool */
	char *rec = gxp_presence_record(m->presence);

	mosquitto_publish(m->mosq, &m->own_mid, gxp_presence_topic(m->presence),
	    (int)strlen(rec), rec, 0, true);
	free(rec);
}

static void
presence_start(struct gxp_mqtt *m)
{
	const char *topic;

	if (m->presence == NULL)
		return;
	topic = gxp_presence_topic(m->presence);
	mosquitto_subscribe(m->mosq, &m->presence_mid, topic, 1);
	if (m->o.check) {
		/* a second SUBACK says the retained record, if any, has arrived */
		mosquitto_subscribe(m->mosq, &m->presence_mid, topic, 1);
		return;
	}
	presence_publish(m);
}

static void
on_connect(struct mosquitto *mosq, void *arg, int rc)
{
	struct gxp_mqtt *m = arg;

	m->awaiting_connack = 0;
	if (rc != 0) {
		m->refused = rc;
		if (!(m->v5 && rc == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION)) {
			explain_refusal(m);
			if (!m->o.check)
				gxp_log(LOG_ERROR, "broker %s:%d %s", m->host, m->port, m->why);
		}
		return;
	}
	m->refused = 0;
	m->conflict = 0;
	m->connected = 1;
	m->connected_at = gxp_mono_ms();
	if (m->ever_connected)
		gxp_log(LOG_INFO, "reconnected to %s:%d", m->host, m->port);
	else
		gxp_log(LOG_INFO, "\u2713 MQTT connected successfully");
	m->ever_connected = 1;
	presence_start(m);
	if (m->o.on_connected)
		m->o.on_connected(mosq, m->o.userdata);
}

static void
on_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
	struct gxp_mqtt *m = arg;

	(void)mosq;
	if (m->connected && m->v5 && rc == MQTT_RC_SESSION_TAKEN_OVER)
		announce_conflict(m, m->id, "MQTT_CLIENT_ID",
		    "the broker handed our session to it (session taken over)");
	else if (m->connected && m->v5 && rc >= 0x80)
		gxp_log(LOG_WARN, "the broker %s:%d closed the connection: %s", m->host,
		    m->port, mosquitto_reason_string(rc));
	else if (m->connected && rc != 0)
		gxp_log(LOG_WARN, "lost the connection to %s:%d: %s", m->host,
		    m->port, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
	m->connected = 0;
}

static void
on_presence(struct gxp_mqtt *m, const struct mosquitto_message *msg)
{
	int kind = gxp_presence_judge(m->presence, msg->payload, msg->payloadlen,
	    m->presence_who, sizeof m->presence_who);

	m->presence_kind = kind;
	if (!m->o.check && (kind == GXP_PRESENCE_OTHER || kind == GXP_PRESENCE_HERE))
		announce_conflict(m, m->held, m->held_setting, m->presence_who);
	/* cleared under us (the Last Will of an earlier process of this id,
	 * come late): a worker's record says it is alive, so it goes back */
	else if (!m->o.check && kind == GXP_PRESENCE_NONE && m->o.presence_topic &&
	    m->connected && !m->leaving && !m->conflict) {
		gxp_log(LOG_INFO, "our record at %s was cleared; published again",
		    gxp_presence_topic(m->presence));
		presence_publish(m);
	}
}

static void
on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *msg)
{
	struct gxp_mqtt *m = arg;

	if (m->presence && strcmp(msg->topic, gxp_presence_topic(m->presence)) == 0)
		on_presence(m, msg);
	else if (m->o.on_message)
		m->o.on_message(mosq, m->o.userdata, msg);
}

static void
on_subscribe(struct mosquitto *mosq, void *arg, int mid, int n, const int *granted)
{
	struct gxp_mqtt *m = arg;

	if (m->presence && mid == m->presence_mid)
		m->presence_done = 1;
	else if (m->presence == NULL || !m->o.check || m->presence_done) {
		if (m->o.on_subscribe)
			m->o.on_subscribe(mosq, m->o.userdata, mid, n, granted);
	}
}

static void
on_publish(struct mosquitto *mosq, void *arg, int mid)
{
	struct gxp_mqtt *m = arg;

	if (m->o.on_publish && !(m->own_mid && mid == m->own_mid))
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

/* ---- setting up ---- */

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

/* The id the tool uses: -i, else MQTT_CLIENT_ID with the tool's role
 * appended (gxp-sub -> PREFIX-sub), else none (the library makes one up). */
static char *
client_id(const struct gxp_mqtt_opts *o)
{
	const char *prefix = gxp_cfg("MQTT_CLIENT_ID");
	const char *role = strncmp(gxp_progname, "gxp-", 4) == 0 ?
	    gxp_progname + 4 : gxp_progname;

	if (o->client_id)
		return xstrdup(o->client_id);
	if (prefix && !o->once)
		return xasprintf("%s-%s", prefix, role);
	if (!o->clean_session && !o->check)
		gxp_die(EXIT_PERM, "a persistent session needs a client id (-i ID or MQTT_CLIENT_ID)");
	return NULL;
}

/* MQTT 5: a persistent session must say how long it outlives the
 * connection (3.1.1 keeps it until the broker's own limit). */
static void
setup_v5(struct gxp_mqtt *m)
{
	mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(m->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, 65535);
	if (!m->o.clean_session)
		mosquitto_property_add_int32(&m->props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
		    UINT32_MAX);
	m->v5 = 1;
}

static void
setup_presence(struct gxp_mqtt *m)
{
	const char *id = m->o.check ? m->check_of : m->id;

	if (id == NULL || (m->presence = gxp_presence_new(id, m->o.presence_topic)) == NULL)
		return;
	/* a worker's record (GXP_CLUSTER_TOPIC/<worker id>) is of its worker id */
	m->held = m->o.presence_topic ? strrchr(m->o.presence_topic, '/') + 1 : id;
	m->held_setting = m->o.presence_topic ? "GXP_WORKER_ID" : "MQTT_CLIENT_ID";
	if (!m->o.check)	/* dying without a word clears our record */
		mosquitto_will_set(m->mosq, gxp_presence_topic(m->presence), 0, NULL, 1, true);
}

struct gxp_mqtt *
gxp_mqtt_new(const struct gxp_mqtt_opts *o)
{
	struct gxp_mqtt *m = xcalloc(1, sizeof *m);
	const char *user = gxp_cfg("MQTT_USERNAME"), *pass = gxp_cfg("MQTT_PASSWORD");

	if (pass && !user)
		gxp_die(EXIT_PERM, "MQTT_PASSWORD is set but MQTT_USERNAME is not");
	if (lib_users++ == 0) {
		mosquitto_lib_init();
		srand((unsigned)getpid() ^ (unsigned)gxp_wall_us());
	}
	m->o = *o;
	m->tls = gxp_cfg_bool("MQTT_TLS");
	m->host = gxp_cfg("MQTT_HOST");
	m->port = gxp_cfg("MQTT_PORT") ? (int)gxp_cfg_int("MQTT_PORT") : m->tls ? 8883 : 1883;
	m->keepalive = (int)gxp_cfg_int("MQTT_KEEPALIVE");
	m->id = client_id(o);
	if (o->check) {
		/* a session of its own: never take over or wipe the worker's */
		m->check_of = m->id;
		m->id = xasprintf("gxp-check-%ld", (long)getpid());
		m->o.clean_session = 1;
	}
	m->mosq = mosquitto_new(m->id, m->o.clean_session, m);
	if (m->mosq == NULL)
		gxp_die(EXIT_PERM, "cannot create the MQTT client: %s", strerror(errno));
	if (!o->v311)
		setup_v5(m);
	mosquitto_threaded_set(m->mosq, 1);
	if (o->nodelay)
		mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_callback_set(m->mosq, on_connect);
	mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
	mosquitto_message_callback_set(m->mosq, on_message);
	mosquitto_publish_callback_set(m->mosq, on_publish);
	mosquitto_subscribe_callback_set(m->mosq, on_subscribe);
	mosquitto_log_callback_set(m->mosq, on_log);
	if (user && mosquitto_username_pw_set(m->mosq, user, pass) != MOSQ_ERR_SUCCESS)
		gxp_die(EXIT_PERM, "cannot set the MQTT login");
	if (m->tls)
		setup_tls(m);
	setup_presence(m);
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

/* ---- the network loop ---- */

/* A CONNACK refusal or TLS failure that retrying will not mend. */
static int
permanent(struct gxp_mqtt *m, int rc)
{
	if (m->refused)
		return refusal_permanent(m);
	if (rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_AUTH || rc == MOSQ_ERR_NOT_SUPPORTED) {
		snprintf(m->why, sizeof m->why, "TLS connection failed: %s%s",
		    m->last_error[0] ? m->last_error : mosquitto_strerror(rc), tls_hint(m));
		if (!m->o.check)
			gxp_log(LOG_ERROR, "TLS connection to %s:%d failed: %s%s", m->host,
			    m->port, m->last_error[0] ? m->last_error : mosquitto_strerror(rc),
			    tls_hint(m));
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
	if (!m->refused)
		snprintf(m->why, sizeof m->why, "%.*s%s", (int)strcspn(why, "."), why,
		    tls_hint(m));
	m->awaiting_connack = 0;
	delay = m->backoff_ms + rand() % (m->backoff_ms / 4 + 1);
	m->retry_at = gxp_mono_ms() + delay;
	if (m->refused == 0 && !m->o.check && !m->o.once)
		gxp_log(LOG_WARN, "cannot reach %s:%d: %s; retrying in %.1fs", m->host,
		    m->port, m->why, (double)delay / 1000);
}

static int
try_connect(struct gxp_mqtt *m)
{
	int rc;

	m->last_error[0] = '\0';
	m->refused = 0;
	if (m->tried)
		rc = mosquitto_reconnect(m->mosq);
	else if (m->v5 && !m->o.clean_session)
		rc = mosquitto_connect_bind_v5(m->mosq, m->host, m->port, m->keepalive,
		    NULL, m->props);
	else	/* also drops the MQTT 5 properties after a fall back */
		rc = mosquitto_connect_bind_v5(m->mosq, m->host, m->port, m->keepalive,
		    NULL, NULL);
	m->tried = 1;
	m->awaiting_connack = rc == MOSQ_ERR_SUCCESS;
	return rc;
}

/* A broker that only speaks 3.1.1 answers MQTT 5 with "unsupported
 * protocol version": speak 3.1.1 to it from then on. */
static int
fall_back(struct gxp_mqtt *m)
{
	if (!m->v5 || m->refused != MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION)
		return 0;
	gxp_log(LOG_INFO, "broker %s:%d does not speak MQTT 5; using 3.1.1", m->host, m->port);
	mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
	m->v5 = 0;
	m->refused = 0;
	m->tried = 0;
	m->retry_at = gxp_mono_ms();
	return 1;
}

/* One turn of the network loop: services the socket for up to timeout_ms,
 * or, while the connection is down, reconnects once the backoff is over.
 * Returns 0, or EXIT_PERM when the broker refuses us for good (with once,
 * EXIT_TEMP when it cannot be reached). */
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
	if (m->connected && !m->conflict && now - m->connected_at >= STABLE_MS)
		m->backoff_ms = 0;
	if (rc == MOSQ_ERR_SUCCESS && m->refused == 0)
		return 0;
	if (fall_back(m))
		return 0;
	if (permanent(m, rc))
		return EXIT_PERM;
	m->connected = 0;
	schedule_retry(m, rc, err);
	if (m->o.once && !m->ever_connected) {
		gxp_log(LOG_ERROR, "cannot reach %s:%d: %s", m->host, m->port, m->why);
		return EXIT_TEMP;
	}
	return 0;
}

/* Clears our presence record, unless another client's has replaced it. */
static void
presence_clear(struct gxp_mqtt *m)
{
	if (m->presence && !m->o.check && gxp_presence_mine(m->presence))
		mosquitto_publish(m->mosq, &m->own_mid, gxp_presence_topic(m->presence), 0,
		    NULL, 0, true);
}

void
gxp_mqtt_disconnect(struct gxp_mqtt *m)
{
	if (m->connected) {
		m->leaving = 1;
		presence_clear(m);
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
	mosquitto_property_free_all(&m->props);
	gxp_presence_free(m->presence);
	free(m->id);
	free(m->check_of);
	free(m);
	if (--lib_users == 0)
		mosquitto_lib_cleanup();
}

/* ---- --check ---- */

static int
check_ready(struct gxp_mqtt *m, int (*done)(void))
{
	return m->connected && (done == NULL || done()) &&
	    (m->presence == NULL || m->presence_done);
}

/* What the presence record of the id the tool would use says, for the ok
 * line; EXIT_PERM with a FAIL line when another client holds the id. */
static int
check_presence(struct gxp_mqtt *m, char *note, size_t cap)
{
	note[0] = '\0';
	if (m->presence_kind == GXP_PRESENCE_HERE)
		snprintf(note, cap, "; the id %s is in use by the worker on this spool (%s)",
		    m->held, m->presence_who);
	if (m->presence_kind != GXP_PRESENCE_OTHER)
		return EXIT_OK;
	printf("%s: FAIL: another client is using the id %s: %s; give each worker "
	    "its own %s (or clear a stale record: mosquitto_pub -r -n -t %s)\n",
	    gxp_progname, m->held, m->presence_who, m->held_setting,
	    gxp_presence_topic(m->presence));
	return EXIT_PERM;
}

/* For --check: waits up to timeout_ms for a connection the broker accepts
 * (and for done() to hold, when given), prints one line on stdout (two
 * when the client id is taken), and returns the exit code: 0, 100
 * (refused for good, or the id taken) or 111 (unreachable). */
int
gxp_mqtt_check(struct gxp_mqtt *m, int (*done)(void), int timeout_ms)
{
	int64_t deadline = gxp_mono_ms() + timeout_ms;
	char note[WHY_MAX + 128];
	int rc = 0;

	gxp_config_warnings();
	while (!check_ready(m, done) && !gxp_sig_term) {
		if ((rc = gxp_mqtt_step(m, 100)) != 0 || m->retry_at ||
		    gxp_mono_ms() >= deadline)
			break;
	}
	if (check_ready(m, done)) {
		rc = check_presence(m, note, sizeof note);
		printf("%s: ok: broker %s:%d (TLS %s) accepted the connection%s%s\n",
		    gxp_progname, m->host, m->port, m->tls ? "on" : "off",
		    gxp_cfg("MQTT_USERNAME") ? " and the login" : "", note);
		gxp_mqtt_disconnect(m);
		return rc;
	}
	printf("%s: FAIL: broker %s:%d: %s\n", gxp_progname, m->host, m->port,
	    m->why[0] ? m->why : "no answer in time");
	return rc ? rc : EXIT_TEMP;
}
