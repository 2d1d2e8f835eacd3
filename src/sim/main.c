/* gxp-sim: a fleet of simulated ESP32-S3-CAM devices on one MQTT
 * connection, for testing the worker without devices and for load.
 *
 * Each device sends its status, then for each photo the metadata and the
 * chunks, resends the chunks a NACK lists, and waits for ACK_OK; with -W it
 * goes through the wake cycle instead (wake.c).  One thread does
 * everything: a round-robin queue of the photos that have something to
 * send, a token bucket for the rate, a window of messages the broker has
 * not acknowledged yet, and timers scanned every TICK_MS.  Every random
 * choice about a photo comes from a generator seeded with (seed, device,
 * photo), so a run repeats whatever the timing. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "sim.h"

struct sim_opt opt = { 1, 1, 1, 1024, 0, 0, 0, 0, 1, 0, 0, 0, 60000, 0, 0, 0, 0, "SIM",
	0, 10000, 1 };
struct device *fleet;
struct photo **active;
size_t nactive, active_cap;
unsigned long long total, done;
struct gxp_mqtt *m;
int subscribed, started;
long long pending, max_pending;
int64_t start_us, end_us;
static int interrupted;

#define CV(i) ((unsigned long long)counters[i].v)

struct gxp_counter counters[C_COUNT] = {
	{ "messages_total", "messages published", 0, 0 },
	{ "photos_sent_total", "photos whose metadata was sent", 0, 0 },
	{ "photos_acked_total", "photos acknowledged with ACK_OK", 0, 0 },
	{ "photos_failed_total", "photos not acknowledged by their deadline", 0, 0 },
	{ "chunks_sent_total", "chunk messages published, of every kind", 0, 0 },
	{ "chunks_first_total", "chunk messages of first passes, duplicates included", 0, 0 },
	{ "chunks_duplicated_total", "chunks planned twice in a first pass", 0, 0 },
	{ "chunks_withheld_total", "chunks left out of a first pass (loss)", 0, 0 },
	{ "chunks_nack_total", "chunks re-sent because a NACK listed them", 0, 0 },
	{ "chunks_retry_total", "chunks re-sent by a device retry", 0, 0 },
	{ "photo_retries_total", "whole photos re-sent for want of an ACK", 0, 0 },
	{ "nacks_answered_total", "NACKs answered", 0, 0 },
	{ "nacks_ignored_total", "NACKs for photos not in flight", 0, 0 },
	{ "acks_total", "first ACK_OK of a photo", 0, 0 },
	{ "acks_duplicate_total", "ACK_OK for a photo already acknowledged", 0, 0 },
	{ "acks_late_total", "ACK_OK after the photo's deadline", 0, 0 },
	{ "acks_unknown_total", "ACK_OK for a photo the device is not sending", 0, 0 },
	{ "bad_messages_total", "ack- or cmd-topic messages that could not be understood", 0, 0 },
	{ "pending", "messages not yet acknowledged by the broker", 1, 0 },
	{ "hellos_total", "hellos sent (-W)", 0, 0 },
	{ "hellos_answered_total", "hellos answered by a command within the deadline", 0, 0 },
	{ "hellos_unanswered_total", "hellos left without a command by the deadline", 0, 0 },
	{ "commands_capture_total", "capture_image commands taken", 0, 0 },
	{ "commands_send_image_total", "send_image commands taken", 0, 0 },
	{ "commands_next_wake_total", "next_wake commands taken", 0, 0 },
	{ "commands_repeated_total", "commands dropped: their command_id came before", 0, 0 },
	{ "commands_asleep_total", "commands that came while the device slept, lost", 0, 0 },
	{ "commands_no_photo_total", "send_image for a photo the device does not hold", 0, 0 },
	{ "wakes_total", "wakes begun", 0, 0 },
};

static void
usage(int code)
{
	gxp_usage(code,
	    "gxp-sim [-jM] [-c chunk-size] [-D fraction] [-d devices] [--env file]\n"
	    "               [-F seed | new] [-h host] [-i id] [-k in-flight] [-l fraction]\n"
	    "               [--linger ms] [-n photos] [-o window | all] [-p port]\n"
	    "               [--prefix prefix] [-q qos] [-R retry-ms] [-r rate] [-S size]\n"
	    "               [-s seed] [-t deadline-ms] [-W wakes [-A answer-ms] [-T speed]]\n"
	    "               [photo ...]\n",
	    "  -A answer-ms     with -W: how long a device waits for an order\n"
	    "  -c chunk-size    bytes per chunk (default 1024)\n"
	    "  -D fraction      chunks sent twice in the first pass\n"
	    "  -d devices       devices to simulate (default 1)\n"
	    "  --env file       read settings from file instead of ./.env\n"
	    "  -F seed | new    the firmware's message format (default seed)\n"
	    "  -h host          the broker (MQTT_HOST)\n"
	    "  -i id            the client id (default MQTT_CLIENT_ID-sim)\n"
	    "  -j               the summary as one JSON line\n"
	    "  -k in-flight     photos a device sends at once (default 1)\n"
	    "  -l fraction      chunks left out of the first pass, to be NACKed\n"
	    "  --linger ms      listen this long after the last photo\n"
	    "  -M               device ids that look like MAC addresses\n"
	    "  -n photos        photos per device (default 1)\n"
	    "  -o window | all  first pass out of order, within windows of chunks\n"
	    "  -p port          the broker port (MQTT_PORT)\n"
	    "  --prefix prefix  device ids prefix000001... (default SIM)\n"
	    "  -q qos           QoS of what devices send (default 1)\n"
	    "  -R retry-ms      a device sends a photo again after this long without ACK_OK\n"
	    "  -r rate          messages per second, all devices (default: as fast as it can)\n"
	    "  -S size          generated photos of this many bytes\n"
	    "  -s seed          the seed, for a repeatable run\n"
	    "  -T speed         with -W: sleeps last speed times less\n"
	    "  -t deadline-ms   a photo not acknowledged by then counts as failed\n"
	    "  -W wakes         play the wake cycle, this many wakes a device\n"
	    "  --help           print this and exit\n"
	    "photo ...: JPEG files to send (default: the photos in examples/)\n");
}

static long long
num_arg(const char *s, long long lo, long long hi, const char *what)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || end == s || *end || n < lo || n > hi)
		gxp_die(EXIT_PERM, "%s: %s must be an integer from %lld to %lld", s, what, lo, hi);
	return n;
}

static double
frac_arg(const char *s, double hi, const char *what)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(s, &end);
	if (errno || end == s || *end || !(d >= 0 && d <= hi))
		gxp_die(EXIT_PERM, "%s: %s must be a number from 0 to %g", s, what, hi);
	return d;
}

static void
format_arg(const char *s)
{
	if (strcmp(s, "seed") == 0)
		opt.newfw = 0;
	else if (strcmp(s, "new") == 0)
		opt.newfw = 1;
	else
		gxp_die(EXIT_PERM, "%s: the format is seed or new", s);
}

static void
window_arg(const char *s)
{
	opt.window = strcmp(s, "all") == 0 ? WINDOW_ALL :
	    (long)num_arg(s, 2, 1000000, "the reordering window");
}

static void
check_options(int argc, char **argv)
{
	if (opt.mac && strcmp(opt.prefix, "SIM") != 0)
		gxp_die(EXIT_PERM, "-M and --prefix exclude each other");
	if (opt.speed <= 0)
		gxp_die(EXIT_PERM, "-T 0: the speed must be more than 0");
	if (opt.photos == 0 && !opt.wakes)
		gxp_die(EXIT_PERM, "-n 0: without -W a device must have a photo to send");
	if (opt.gen_size && argc > 0)
		gxp_die(EXIT_PERM, "-S and photo files exclude each other");
	if ((unsigned long long)opt.devices * opt.photos > 100000000ULL)
		gxp_die(EXIT_PERM, "more than 100000000 photos in all");
	if (opt.gen_size == 0) {
		for (int i = 0; i < argc; i++)
			add_path(argv[i]);
		if (argc == 0)
			add_default_photos();
	}
}

static void
parse_options(int argc, char **argv, const char **envfile, const char **client_id)
{
	static const struct option longopts[] = {
		{ "env", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'H' },
		{ "linger", required_argument, NULL, 'L' },
		{ "prefix", required_argument, NULL, 'P' },
		{ NULL, 0, NULL, 0 }
	};
	int c, seeded = 0;

	while ((c = getopt_long(argc, argv, ":A:c:D:d:e:F:h:i:jk:l:Mn:o:p:q:R:r:S:s:T:t:W:",
	    longopts, NULL)) != -1) {
		switch (c) {
		case 'A': opt.answer_ms = num_arg(optarg, 1, 86400000, "the answer deadline"); break;
		case 'T': opt.speed = frac_arg(optarg, 1e9, "the speed"); break;
		case 'W': opt.wakes = (unsigned)num_arg(optarg, 1, 1000000, "wakes"); break;
		case 'c': opt.chunk = (unsigned)num_arg(optarg, 1, 1048576, "the chunk size"); break;
		case 'D': opt.dup = frac_arg(optarg, 1, "the duplicate fraction"); break;
		case 'd': opt.devices = (unsigned)num_arg(optarg, 1, 1000000, "devices"); break;
		case 'e': *envfile = optarg; break;
		case 'F': format_arg(optarg); break;
		case 'h': gxp_config_set("MQTT_HOST", optarg); break;
		case 'i': *client_id = optarg; break;
		case 'j': opt.json = 1; break;
		case 'k': opt.in_flight = (unsigned)num_arg(optarg, 1, 1000000, "in-flight"); break;
		case 'L': opt.linger_ms = num_arg(optarg, 0, 86400000, "--linger"); break;
		case 'l': opt.loss = frac_arg(optarg, 1, "the loss fraction"); break;
		case 'M': opt.mac = 1; break;
		case 'n': opt.photos = (unsigned)num_arg(optarg, 0, 1000000, "photos"); break;
		case 'o': window_arg(optarg); break;
		case 'P': opt.prefix = optarg; break;
		case 'p': gxp_config_set("MQTT_PORT", optarg); break;
		case 'q': opt.qos = (int)num_arg(optarg, 0, 2, "the QoS"); break;
		case 'R': opt.retry_ms = num_arg(optarg, 0, 86400000, "the retry interval"); break;
		case 'r': opt.rate = frac_arg(optarg, 1e9, "the rate"); break;
		case 'S': opt.gen_size = (size_t)num_arg(optarg, 4, 268435456, "the size"); break;
		case 's':
			opt.seed = (uint64_t)num_arg(optarg, 0, (long long)SEED_MAX, "the seed");
			seeded = 1;
			break;
		case 't': opt.deadline_ms = num_arg(optarg, 1, 86400000, "the deadline"); break;
		case 'H': usage(EXIT_OK); break;
		default:
			gxp_bad_option(c, argv);
			usage(EXIT_PERM);
		}
	}
	if (!seeded)
		opt.seed = ((uint64_t)gxp_wall_us() ^ (uint64_t)getpid() << 20) & SEED_MAX;
	check_options(argc - optind, argv + optind);
}

static int
run(void)
{
	int64_t connect_by = gxp_mono_us() + opt.deadline_ms * 1000, next_tick = 0;
	int64_t linger_until = 0;
	int rc;

	for (;;) {
		int64_t now = gxp_mono_us();

		if (gxp_sig_term) {
			interrupted = 1;
			return EXIT_OK;
		}
		if (!started && subscribed)
			start_fleet();
		if (!started && now >= connect_by) {
			gxp_log(LOG_ERROR, "no broker connection within the deadline (%lld ms)",
			    opt.deadline_ms);
			return EXIT_TEMP;
		}
		if (started && now >= next_tick) {
			check_timers(now);
			if (opt.wakes)
				wake_timers(now);
			next_tick = now + TICK_MS * 1000;
		}
		if (started && end_us == 0 && opt.wakes && wake_finished())
			end_us = now;
		if (started && (opt.wakes ? end_us != 0 : done == total)) {
			if (linger_until == 0)
				linger_until = now + opt.linger_ms * 1000;
			if (now >= linger_until)
				return EXIT_OK;
		}
		if ((rc = gxp_mqtt_step(m, send_some())) != 0)
			return rc;
		gxp_metrics_tick(0);
	}
}

static int
by_value(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* p50, p99 and max in ms of n latencies in us (sorted here): nearest rank. */
void
percentiles(int64_t *v, size_t n, double ms[3])
{
	qsort(v, n, sizeof *v, by_value);
	if (n > 0) {
		ms[0] = (double)v[(n * 50 + 99) / 100 - 1] / 1000;
		ms[1] = (double)v[(n * 99 + 99) / 100 - 1] / 1000;
		ms[2] = (double)v[n - 1] / 1000;
	}
}

/* Latencies to ACK_OK. */
static void
latencies(double ms[3], size_t *count)
{
	int64_t *v = xmalloc(((size_t)total + 1) * sizeof *v);
	size_t n = 0;

	for (unsigned i = 0; i < opt.devices; i++)
		for (unsigned k = 0; k < fleet[i].nphotos; k++)
			if (fleet[i].photos[k]->state == P_ACKED)
				v[n++] = fleet[i].photos[k]->latency_us;
	percentiles(v, n, ms);
	*count = n;
	free(v);
}

static void
line_out(struct gxp_buf *b)
{
	gxp_out_line(b->p, b->len);
	b->len = 0;
}

/* -W: the wake cycle's lines. */
static void
wake_text(struct gxp_buf *b)
{
	double ms[3] = { 0, 0, 0 };
	size_t n;

	wake_latencies(ms, &n);
	gxp_buf_addf(b, "wakes:    %llu, %llu hellos: %llu answered, %llu unanswered "
	    "(within %lld ms)", CV(C_WAKES), CV(C_HELLOS), CV(C_ANSWERED), CV(C_UNANSWERED),
	    opt.answer_ms);
	line_out(b);
	if (n)
		gxp_buf_addf(b, "answers:  p50 %.1f ms, p99 %.1f ms, max %.1f ms (hello sent "
		    "to its order)", ms[0], ms[1], ms[2]);
	else
		gxp_buf_adds(b, "answers:  none");
	line_out(b);
	gxp_buf_addf(b, "commands: %llu capture_image, %llu send_image, %llu next_wake; "
	    "%llu repeats dropped, %llu while asleep, %llu for photos not held",
	    CV(C_CMD_CAPTURE), CV(C_CMD_SEND), CV(C_CMD_WAKE), CV(C_REPEATS), CV(C_ASLEEP),
	    CV(C_NO_PHOTO));
	line_out(b);
}

static void
wake_json(struct gxp_buf *b)
{
	double ms[3] = { 0, 0, 0 };
	size_t n;

	wake_latencies(ms, &n);
	gxp_buf_addf(b, "\"wake\":{\"wakes\":%llu,\"hellos\":%llu,\"answered\":%llu,"
	    "\"unanswered\":%llu,\"answer_deadline_ms\":%lld,", CV(C_WAKES), CV(C_HELLOS),
	    CV(C_ANSWERED), CV(C_UNANSWERED), opt.answer_ms);
	if (n)
		gxp_buf_addf(b, "\"answer_latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},",
		    ms[0], ms[1], ms[2]);
	else
		gxp_buf_adds(b, "\"answer_latency_ms\":null,");
	gxp_buf_addf(b, "\"commands\":{\"capture_image\":%llu,\"send_image\":%llu,"
	    "\"next_wake\":%llu},\"repeats\":%llu,\"while_asleep\":%llu,\"no_photo\":%llu},",
	    CV(C_CMD_CAPTURE), CV(C_CMD_SEND), CV(C_CMD_WAKE), CV(C_REPEATS), CV(C_ASLEEP),
	    CV(C_NO_PHOTO));
}

static void
summary_text(const double lat[3], size_t nlat, double secs)
{
	struct gxp_buf b = { 0 };

	gxp_buf_addf(&b, "gxp-sim: %u devices x %u %s, seed %llu, %s firmware, "
	    "chunks of %u bytes, QoS %d%s", opt.devices, opt.wakes ? opt.wakes : opt.photos,
	    opt.wakes ? "wakes" : "photos", (unsigned long long)opt.seed,
	    opt.newfw ? "new" : "seed", opt.chunk, opt.qos, interrupted ? ", interrupted" : "");
	line_out(&b);
	gxp_buf_addf(&b, "photos:   %llu sent, %llu acknowledged, %llu not acknowledged",
	    CV(C_PHOTOS_SENT), CV(C_ACKED), total - CV(C_ACKED));
	line_out(&b);
	gxp_buf_addf(&b, "chunks:   %llu sent: %llu in first passes (%llu duplicates, "
	    "%llu withheld), %llu re-sent on NACK, %llu re-sent in %llu device retries",
	    CV(C_CHUNKS), CV(C_FIRST), CV(C_DUP), CV(C_WITHHELD), CV(C_NACK_CHUNKS),
	    CV(C_RETRY_CHUNKS), CV(C_RETRIES));
	line_out(&b);
	gxp_buf_addf(&b, "NACKs:    %llu answered, %llu ignored", CV(C_NACKS),
	    CV(C_NACKS_IGNORED));
	line_out(&b);
	gxp_buf_addf(&b, "ACK_OK:   %llu, %llu duplicate, %llu late, %llu unknown",
	    CV(C_ACKS), CV(C_ACKS_DUP), CV(C_ACKS_LATE), CV(C_ACKS_UNKNOWN));
	line_out(&b);
	if (nlat)
		gxp_buf_addf(&b, "latency:  p50 %.1f ms, p99 %.1f ms, max %.1f ms "
		    "(last chunk sent to ACK_OK)", lat[0], lat[1], lat[2]);
	else
		gxp_buf_adds(&b, "latency:  no ACK_OK");
	line_out(&b);
	if (opt.wakes)
		wake_text(&b);
	gxp_buf_addf(&b, "elapsed:  %.2f s, %llu messages, %.1f msgs/s", secs,
	    CV(C_MESSAGES), secs > 0 ? (double)CV(C_MESSAGES) / secs : 0);
	line_out(&b);
	gxp_buf_free(&b);
}

static void
summary_json(const double lat[3], size_t nlat, double secs)
{
	struct gxp_buf b = { 0 };

	gxp_buf_addf(&b, "{\"v\":1,\"devices\":%u,\"photos_per_device\":%u,\"seed\":%llu,"
	    "\"firmware\":\"%s\",\"chunk_size\":%u,\"qos\":%d,\"photos\":%llu,"
	    "\"photos_sent\":%llu,\"acknowledged\":%llu,\"not_acknowledged\":%llu,",
	    opt.devices, opt.photos, (unsigned long long)opt.seed, opt.newfw ? "new" : "seed",
	    opt.chunk, opt.qos, total, CV(C_PHOTOS_SENT), CV(C_ACKED), total - CV(C_ACKED));
	gxp_buf_addf(&b, "\"chunks_sent\":%llu,\"chunks_first_pass\":%llu,"
	    "\"duplicates_sent\":%llu,\"chunks_withheld\":%llu,\"chunks_resent_nack\":%llu,"
	    "\"chunks_resent_retry\":%llu,\"photo_retries\":%llu,", CV(C_CHUNKS),
	    CV(C_FIRST), CV(C_DUP), CV(C_WITHHELD), CV(C_NACK_CHUNKS), CV(C_RETRY_CHUNKS),
	    CV(C_RETRIES));
	gxp_buf_addf(&b, "\"nacks_answered\":%llu,\"nacks_ignored\":%llu,\"acks\":%llu,"
	    "\"duplicate_acks\":%llu,\"late_acks\":%llu,\"unknown_acks\":%llu,",
	    CV(C_NACKS), CV(C_NACKS_IGNORED), CV(C_ACKS), CV(C_ACKS_DUP), CV(C_ACKS_LATE),
	    CV(C_ACKS_UNKNOWN));
	if (nlat)
		gxp_buf_addf(&b, "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},",
		    lat[0], lat[1], lat[2]);
	else
		gxp_buf_adds(&b, "\"latency_ms\":null,");
	if (opt.wakes)
		wake_json(&b);
	gxp_buf_addf(&b, "\"elapsed_s\":%.3f,\"messages\":%llu,\"msgs_per_s\":%.1f,"
	    "\"interrupted\":%s}", secs, CV(C_MESSAGES),
	    secs > 0 ? (double)CV(C_MESSAGES) / secs : 0, interrupted ? "true" : "false");
	line_out(&b);
	gxp_buf_free(&b);
}

static void
summary(void)
{
	double lat[3] = { 0, 0, 0 }, secs;
	size_t nlat;

	if (!started)
		start_us = gxp_mono_us();
	if (end_us == 0)
		end_us = gxp_mono_us();
	secs = (double)(end_us - start_us) / 1e6;
	latencies(lat, &nlat);
	if (opt.json)
		summary_json(lat, nlat, secs);
	else
		summary_text(lat, nlat, secs);
}

int
main(int argc, char **argv)
{
	struct gxp_mqtt_opts o = { 0 };
	const char *envfile = NULL;
	int rc;

	gxp_init(argv[0]);
	parse_options(argc, argv, &envfile, &o.client_id);
	gxp_config_common(envfile);
	max_pending = gxp_cfg_int("SIM_MAX_PENDING");
	gxp_signals_init();
	gxp_metrics_init(counters, sizeof counters / sizeof counters[0]);
	fleet_new();
	o.clean_session = 1;
	o.nodelay = 1;		/* latencies are the worker's, not Nagle's */
	o.on_connected = on_connected;
	o.on_message = on_message;
	o.on_publish = on_publish;
	o.on_subscribe = on_subscribe;
	o.v311 = 1;	/* as devices do; and MQTT 5 would let the broker cap the window */
	m = gxp_mqtt_new(&o);
	mosquitto_int_option(gxp_mqtt_handle(m), MOSQ_OPT_SEND_MAXIMUM, (int)max_pending);
	gxp_mqtt_banner();

	rc = run();
	gxp_mqtt_disconnect(m);
	gxp_metrics_tick(1);
	if (rc != EXIT_PERM)
		summary();
	if (rc == EXIT_OK && (CV(C_ACKED) < total || CV(C_UNANSWERED) > 0))
		rc = EXIT_UNACKED;
	gxp_mqtt_free(m);
	send_free();
	wake_free();
	fleet_free();
	gxp_config_free();
	return rc;
}

