/* gxp-pub: publishes the publish requests among its NDJSON input lines and
 * passes every other line through, so it can end or sit inside a pipe.  At
 * end of input it waits for every QoS 1 and 2 acknowledgement.
 *
 * A network thread runs the broker connection; the main thread reads stdin
 * and publishes, waiting while the broker is away or too much is pending. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "lib/gxp.h"

static struct gxp_mqtt *m;
static _Atomic int pending, net_stop, net_rc;
static long long max_pending;

static struct gxp_counter counters[] = {
	{ "published_total", "messages handed to the broker", 0, 0 },
	{ "acknowledged_total", "messages the broker acknowledged (or sent, QoS 0)", 0, 0 },
	{ "passed_total", "lines passed through", 0, 0 },
	{ "malformed_total", "malformed lines skipped", 0, 0 },
	{ "pending", "messages not yet acknowledged", 1, 0 },
};
enum { C_PUBLISHED, C_ACKED, C_PASSED, C_MALFORMED, C_PENDING };

static void
usage(int code)
{
	gxp_usage(code,
	    "gxp-pub [--check] [--env file] [-h host] [-i id] [-p port]\n"
	    "       gxp-pub [--env file] [-h host] [-i id] [-p port] [-q qos] [-r]\n"
	    "               -t topic -m message\n",
	    "  --check      test the broker and the login; one line\n"
	    "  --env file   read settings from file instead of ./.env\n"
	    "  -h host      the broker (MQTT_HOST), as for mosquitto_pub\n"
	    "  -i id        the client id (default MQTT_CLIENT_ID-pub; with -t, random)\n"
	    "  -m message   the payload of the one message to send (with -t)\n"
	    "  -p port      the broker port (MQTT_PORT)\n"
	    "  -q qos       QoS of the one message: 0, 1 (default) or 2\n"
	    "  -r           retain the one message\n"
	    "  -t topic     send one message to topic, then exit\n"
	    "  --help       print this and exit\n"
	    "Without -t, publishes the publish requests among its input lines and\n"
	    "passes the rest through.\n");
}

static void
on_publish(struct mosquitto *mosq, void *arg, int mid)
{
	(void)mosq, (void)arg, (void)mid;
	pending--;
	counters[C_ACKED].v++;
	counters[C_PENDING].v = (unsigned long long)pending;
}

static void *
network(void *arg)
{
	(void)arg;
	while (!net_stop) {
		int rc = gxp_mqtt_step(m, 100);

		if (rc != 0) {
			net_rc = rc;
			break;
		}
		gxp_metrics_tick(0);	/* also while stdin is quiet */
	}
	return NULL;
}

static int64_t publish_deadline;	/* one-off mode: give up connecting */

/* Waits until fn() holds; -1 when the network gave up, the deadline (if
 * any) passed, or, unless draining, SIGTERM came. */
static int
wait_for(int (*fn)(void), int64_t deadline, int draining)
{
	while (!fn()) {
		if (net_rc || (deadline && gxp_mono_ms() >= deadline) ||
		    (!draining && gxp_sig_term))
			return -1;
		gxp_sleep_ms(20);
		gxp_metrics_tick(0);
	}
	return 0;
}

static int
can_publish(void)
{
	return gxp_mqtt_connected(m) && pending < max_pending;
}

static int
all_acked(void)
{
	return pending == 0;
}

static int
publish(const char *topic, const void *payload, size_t len, int qos, int retain,
    long long lineno)
{
	int rc;

	if (wait_for(can_publish, publish_deadline, 0) == -1)
		return -1;
	pending++;
	rc = mosquitto_publish(gxp_mqtt_handle(m), NULL, topic, (int)len, payload,
	    qos, retain);
	if (rc != MOSQ_ERR_SUCCESS && !(rc == MOSQ_ERR_NO_CONN && qos > 0)) {
		/* a QoS>0 message queued while the link dropped is resent later */
		pending--;
		gxp_log(LOG_ERROR, "line %lld: cannot publish to %s: %s", lineno, topic,
		    mosquitto_strerror(rc));
		return 0;
	}
	counters[C_PUBLISHED].v++;
	counters[C_PENDING].v = (unsigned long long)pending;
	return 0;
}

static int
malformed(long long lineno, const char *why)
{
	counters[C_MALFORMED].v++;
	gxp_log(LOG_ERROR, "line %lld: %s; skipped", lineno, why);
	return 0;
}

/* A publish request has a topic and a payload, no "payloadlen" (that marks
 * a received message), and no "event" other than "publish" (gxp(7)). */
static int
is_request(const cJSON *j)
{
	const char *ev = gxp_json_str(j, "event");
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "event");

	return cJSON_IsObject(j) && cJSON_HasObjectItem(j, "topic") &&
	    cJSON_HasObjectItem(j, "payload") && !cJSON_HasObjectItem(j, "payloadlen") &&
	    (e == NULL || (ev && strcmp(ev, "publish") == 0));
}

static int
flag(const cJSON *j, const char *key, long long lo, long long hi, long long def,
    long long *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);

	if (v == NULL) {
		*out = def;
		return 0;
	}
	if (cJSON_IsBool(v)) {
		*out = cJSON_IsTrue(v);
		return hi == 1 ? 0 : -1;
	}
	if (gxp_json_int(j, key, out) != 1 || *out < lo || *out > hi)
		return -1;
	return 0;
}

static int
request(const cJSON *j, const char *line, size_t linelen, long long lineno)
{
	const cJSON *payload = cJSON_GetObjectItemCaseSensitive(j, "payload");
	const char *topic = gxp_json_str(j, "topic"), *enc = gxp_json_str(j, "payload_encoding");
	long long qos, retain;
	char *text = NULL;
	unsigned char *bin = NULL;
	const void *data;
	size_t len;
	long n;
	int rc;

	if (topic == NULL || *topic == '\0' || strpbrk(topic, "+#"))
		return malformed(lineno, "\"topic\" must be a topic name without wildcards");
	if (flag(j, "qos", 0, 2, 1, &qos) == -1)
		return malformed(lineno, "\"qos\" must be 0, 1 or 2");
	if (flag(j, "retain", 0, 1, 0, &retain) == -1)
		return malformed(lineno, "\"retain\" must be true or false");
	if (cJSON_IsString(payload) && enc && strcmp(enc, "base64") == 0) {
		len = strlen(payload->valuestring);
		bin = xmalloc(len / 4 * 3 + 1);
		if ((n = gxp_b64_decode(payload->valuestring, len, bin, len / 4 * 3 + 1)) < 0) {
			free(bin);
			return malformed(lineno, "\"payload\" is not valid base64");
		}
		data = bin, len = (size_t)n;
	} else if (cJSON_IsString(payload)) {
		data = payload->valuestring, len = strlen(payload->valuestring);
	} else if (cJSON_IsObject(payload) || cJSON_IsArray(payload)) {
		/* the payload's own text, so numbers keep every digit */
		if (gxp_json_raw_member(line, linelen, "payload", (const char **)&data, &len) == -1) {
			text = gxp_json_print(payload);
			data = text, len = strlen(text);
		}
	} else
		return malformed(lineno, "\"payload\" must be an object, an array or a string");
	rc = publish(topic, data, len, (int)qos, (int)retain, lineno);
	free(text);
	free(bin);
	return rc;
}

static int
handle(char *line, size_t len, long long lineno, int truncated)
{
	cJSON *j = gxp_json_parse(line, len);
	int rc = 0;

	if (j == NULL)
		return malformed(lineno, truncated ? "truncated line" : "not JSON");
	if (is_request(j))
		rc = request(j, line, len, lineno);
	else {
		counters[C_PASSED].v++;
		gxp_out_line(line, len);
	}
	cJSON_Delete(j);
	return rc;
}

static int
read_input(void)
{
	struct gxp_lines *in = gxp_lines_open(0, (size_t)gxp_cfg_int("MAX_LINE_BYTES"));
	char *line;
	size_t len;
	int rc;

	while (!gxp_sig_term && !net_rc) {
		rc = gxp_lines_read(in, &line, &len);
		if (rc == LINE_EOF || rc == LINE_ERROR)
			break;
		if (rc == LINE_TOO_LONG)
			malformed(gxp_lines_number(in), "longer than MAX_LINE_BYTES");
		else if (handle(line, len, gxp_lines_number(in), rc == LINE_TRUNCATED) == -1)
			break;
		gxp_metrics_tick(0);
	}
	gxp_lines_free(in);
	return 0;
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
	const char *envfile = NULL, *topic = NULL, *message = NULL;
	int c, qos = 1, qos_set = 0, retain = 0, check = 0, rc = EXIT_OK;
	pthread_t tid;
	sigset_t all, old;

	gxp_init(argv[0]);
	o.clean_session = 1;
	while ((c = getopt_long(argc, argv, ":e:h:i:m:p:q:rt:", longopts, NULL)) != -1) {
		switch (c) {
		case 'C': check = 1; break;
		case 'e': envfile = optarg; break;
		case 'h': gxp_config_set("MQTT_HOST", optarg); break;
		case 'i': o.client_id = optarg; break;
		case 'm': message = optarg; break;
		case 'p': gxp_config_set("MQTT_PORT", optarg); break;
		case 'q':
			if (strlen(optarg) != 1 || optarg[0] < '0' || optarg[0] > '2') {
				gxp_log(LOG_ERROR, "-q %s: expected 0, 1 or 2", optarg);
				usage(EXIT_PERM);
			}
			qos = optarg[0] - '0';
			qos_set = 1;
			break;
		case 'r': retain = 1; break;
		case 't': topic = optarg; break;
		case 'H': usage(EXIT_OK); break;
		default:
			gxp_bad_option(c, argv);
			usage(EXIT_PERM);
		}
	}
	if (optind != argc || (topic == NULL) != (message == NULL) ||
	    (topic == NULL && (retain || qos_set)) || (check && topic)) {
		gxp_log(LOG_ERROR, "%s", optind != argc ? "unexpected argument" :
		    (topic == NULL) != (message == NULL) ? "-t and -m go together" :
		    check ? "--check sends nothing: no -t" : "-q and -r need -t and -m");
		usage(EXIT_PERM);
	}
	o.check = check;
	o.once = topic != NULL;	/* like mosquitto_pub: no broker, no waiting */
	if (topic && (*topic == '\0' || strpbrk(topic, "+#")))
		gxp_die(EXIT_PERM, "%s: not a topic name one can publish to", topic);
	gxp_config_common(envfile);
	max_pending = gxp_cfg_int("PUB_MAX_PENDING");
	gxp_signals_init();
	gxp_metrics_init(counters, sizeof counters / sizeof counters[0]);
	o.on_publish = on_publish;
	m = gxp_mqtt_new(&o);
	if (check) {
		rc = gxp_mqtt_check(m, NULL, 10000);
		gxp_mqtt_free(m);
		gxp_config_free();
		return rc;
	}

	sigfillset(&all);	/* signals go to the main thread only */
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&tid, NULL, network, NULL) != 0)
		gxp_die(EXIT_TEMP, "cannot start the network thread");
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	if (topic) {
		publish_deadline = gxp_mono_ms() + gxp_cfg_int("PUB_DRAIN_TIMEOUT_MS");
		if (publish(topic, message, strlen(message), qos, retain, 0) == -1 && !net_rc) {
			gxp_log(LOG_ERROR, "no broker connection within PUB_DRAIN_TIMEOUT_MS");
			rc = EXIT_TEMP;
		}
	} else
		read_input();
	wait_for(all_acked, gxp_mono_ms() + gxp_cfg_int("PUB_DRAIN_TIMEOUT_MS"), 1);
	if (net_rc)
		rc = net_rc;
	else if (pending > 0 && rc == EXIT_OK) {
		gxp_log(LOG_ERROR, "%d messages were not acknowledged within "
		    "PUB_DRAIN_TIMEOUT_MS", (int)pending);
		rc = EXIT_TEMP;
	}
	net_stop = 1;
	pthread_join(tid, NULL);
	gxp_mqtt_disconnect(m);
	gxp_metrics_tick(1);
	gxp_mqtt_free(m);
	gxp_config_free();
	return rc;
}
