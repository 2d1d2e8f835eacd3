/* gxp-sub: MQTT messages to NDJSON lines on stdout, in the envelope of
 * mosquitto_sub -F %J, but in UTC and keeping every payload.
 *
 * The main thread runs the network loop and never blocks on stdout: a
 * writer thread copies the lines out.  With a journal (-J), each message
 * is appended to it, stamped with its seq, inside the message callback,
 * and the writer streams the journal to stdout from where it is, starting
 * after the position gxp-upload committed: a slow or restarting pipeline
 * costs disk, not memory, and nothing received is lost to a crash.  A
 * third thread syncs the journal every JOURNAL_SYNC_MS.  Without one,
 * each message becomes a line in a bounded memory buffer, and when it is
 * full new messages are dropped and counted (gxp-sub(1), BUGS).  The
 * writer is woken when no more messages wait in the socket (or much is
 * pending), so a burst goes out in one write(2), not a wake-up and a
 * write per message. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "sub/sub.h"

struct queue q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { 0 }, 0, 0, 0, 0, 0, 0, 0, 0 };
struct jstate jn;
char **topics;
int ntopics, subscribed;
size_t max_message;

enum { CHECK_TIMEOUT_MS = 10000 };

struct gxp_counter counters[C_COUNT] = {
	{ "messages_total", "MQTT messages received", 0, 0 },
	{ "bytes_total", "payload bytes received", 0, 0 },
	{ "dropped_total", "messages dropped because the output buffer was full", 0, 0 },
	{ "buffered_bytes", "bytes waiting to be written to stdout", 1, 0 },
	{ "journal_bytes", "bytes in the journal's segment files", 1, 0 },
	{ "journal_full_total", "times reading stopped because the journal reached JOURNAL_MAX_BYTES", 0, 0 },
	{ "journal_window_p99_us", "99th percentile, microseconds from a message's callback to the end of its journal write", 1, 0 },
	{ "journal_window_max_us", "longest time from a message's callback to the end of its journal write", 1, 0 },
	{ "replayed_total", "journal lines after the committed position, written again at start", 0, 0 },
	{ "redelivered_total", "messages the broker sent again after a reconnect, already received", 0, 0 },
	{ "too_big_total", "messages dropped for a payload over SUB_MAX_MESSAGE_BYTES", 0, 0 },
	{ "cluster_dropped_total", "messages of devices another worker owns, dropped (GXP_CLUSTER)", 0, 0 },
	{ "cluster_workers", "live workers in the cluster, this one included", 1, 0 },
	{ "cluster_changes_total", "changes of the live set written downstream", 0, 0 },
	{ "cluster_scattered_total", "GXP_CLUSTER=shared: digests showing a device of this worker on another", 0, 0 },
};

static void
usage(int code)
{
	gxp_usage(code,
	    "gxp-sub [-c] [--check] [--env file] [-h host] [-i id] [-J dir] [-p port]\n"
	    "               [-t topic ...]\n",
	    "  -c           persistent session: the broker keeps messages while away\n"
	    "  --check      test the broker, the login and the subscription; one line\n"
	    "  --env file   read settings from file instead of ./.env\n"
	    "  -h host      the broker (MQTT_HOST), as for mosquitto_sub; --help is help\n"
	    "  -i id        the client id (default MQTT_CLIENT_ID-sub)\n"
	    "  -J dir       keep every message in the journal dir before passing it on\n"
	    "  -p port      the broker port (MQTT_PORT)\n"
	    "  -t topic     subscribe to topic instead of TOPIC_PATTERN_*; repeatable\n"
	    "  --help       print this and exit\n");
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

static pthread_t writer_tid, sync_tid;

static void
threads_start(void)
{
	sigset_t all, old;

	sigfillset(&all);	/* signals go to the main thread only */
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&writer_tid, NULL, jn.j ? writer_journal : writer_buffer, NULL) != 0 ||
	    (jn.j && pthread_create(&sync_tid, NULL, syncer, NULL) != 0))
		gxp_die(EXIT_TEMP, "cannot start a thread");
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* The writer writes out what is left; then the last sync. */
static void
threads_stop(void)
{
	pthread_mutex_lock(&q.mu);
	q.done = 1;
	pthread_cond_signal(&q.cv);
	pthread_mutex_unlock(&q.mu);
	pthread_join(writer_tid, NULL);
	if (jn.j) {
		jn.stop_sync = 1;
		pthread_join(sync_tid, NULL);
	}
}

static int
run(struct gxp_mqtt *m)
{
	int rc = EXIT_OK;

	while (!gxp_sig_term && !gxp_out_closed) {
		if (jn.j)
			journal_tick();
		if (jn.j && reading_paused()) {
			gxp_sleep_ms(200);
			gxp_metrics_tick(0);
			continue;
		}
		if ((rc = gxp_mqtt_step(m, 200)) != 0)
			break;
		cluster_tick(gxp_mqtt_handle(m));
		kick(m);
		gxp_metrics_tick(0);
	}
	return rc;
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
	int c, check = 0, rc = EXIT_OK;

	gxp_init(argv[0]);
	o.clean_session = 1;
	while ((c = getopt_long(argc, argv, ":ce:h:i:J:p:t:", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o.clean_session = 0; break;
		case 'C': check = 1; break;
		case 'e': envfile = optarg; break;
		case 'h': gxp_config_set("MQTT_HOST", optarg); break;
		case 'i': o.client_id = optarg; break;
		case 'J': jn.dir = optarg; break;
		case 'p': gxp_config_set("MQTT_PORT", optarg); break;
		case 't':
			topics = xrealloc(topics, (size_t)(ntopics + 1) * sizeof *topics);
			topics[ntopics++] = xstrdup(optarg);
			break;
		case 'H': usage(EXIT_OK); break;
		default:
			gxp_bad_option(c, argv);
			if (c == ':' && optopt == 'h')
				gxp_log(LOG_ERROR, "-h is the broker host, as for mosquitto_sub; "
				    "for help: gxp-sub --help");
			usage(EXIT_PERM);
		}
	}
	if (optind != argc) {
		gxp_log(LOG_ERROR, "unexpected argument %s", argv[optind]);
		usage(EXIT_PERM);
	}
	if (jn.dir && *jn.dir == '\0') {
		gxp_log(LOG_ERROR, "-J needs a directory");
		usage(EXIT_PERM);
	}
	o.check = check;
	gxp_config_common(envfile);
	q.max = (size_t)gxp_cfg_int("SUB_BUFFER_BYTES");
	max_message = (size_t)gxp_cfg_int("SUB_MAX_MESSAGE_BYTES");
	subscribe_defaults();
	gxp_signals_init();
	gxp_metrics_init(counters, sizeof counters / sizeof counters[0]);

	cluster_init(&o);
	o.on_connected = on_connected;
	o.on_message = on_message;
	o.on_subscribe = on_subscribe;
	o.userdata = &line;
	m = gxp_mqtt_new(&o);
	mosquitto_connect_with_flags_callback_set(gxp_mqtt_handle(m), on_connect_flags);
	if (check) {
		rc = gxp_mqtt_check(m, subscribe_granted, CHECK_TIMEOUT_MS);
		if (jn.dir && (c = check_journal()) != EXIT_OK && rc != EXIT_PERM)
			rc = c;
		gxp_mqtt_free(m);
		cluster_free();
		gxp_config_free();
		return rc;
	}
	if (jn.dir)
		journal_start();
	gxp_mqtt_banner();
	threads_start();
	rc = run(m);
	gxp_mqtt_disconnect(m);
	threads_stop();
	if (jn.failed && rc == EXIT_OK)
		rc = EXIT_TEMP;
	gxp_buf_free(&q.buf);
	gxp_metrics_tick(1);
	if (counters[C_DROPPED].v)
		gxp_log(LOG_WARN, "%llu messages were dropped while %s",
		    (unsigned long long)counters[C_DROPPED].v, jn.j ?
		    "the journal could not be written" : "the output buffer was full");
	if (jn.j)
		journal_end();
	gxp_mqtt_free(m);
	cluster_free();
	gxp_buf_free(&line);
	for (int i = 0; i < ntopics; i++)
		free(topics[i]);
	free(topics);
	gxp_config_free();
	return rc;
}
