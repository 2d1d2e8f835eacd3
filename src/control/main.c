/* gxp-control: the devices' controller.  It sits right after gxp-sub,
 * passes every line on unchanged, and answers each hello on the device's
 * cmd topic with its oldest queued command or what its wake schedule says
 * (answer.c); gxp-control(1) has the rules.
 *
 * One thread waits on stdin, on the store's connections and on the
 * broker's acknowledgements together (the broker connection has a thread
 * of its own, net.c), so an answer never waits for a slow next stage or
 * for the store's writes. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"

#define TICK_MS 50

struct ctl *store;
struct sched default_sched;
int replay;

struct gxp_counter counters[C_COUNT] = {
	{ "hellos_total", "hellos seen", 0, 0 },
	{ "answered_total", "hellos answered", 0, 0 },
	{ "capture_total", "capture_image answers from the schedule", 0, 0 },
	{ "next_wake_total", "next_wake answers from the schedule", 0, 0 },
	{ "commands_total", "queued commands sent", 0, 0 },
	{ "retained_total", "retained status messages, not taken for hellos", 0, 0 },
	{ "fallback_total", "hellos answered from the schedule: the queue was not read in time", 0, 0 },
	{ "expired_total", "queued commands marked expired", 0, 0 },
	{ "failed_total", "queued commands marked failed (cannot be sent)", 0, 0 },
	{ "passed_total", "lines passed on", 0, 0 },
	{ "awake", "devices awake at the last poll", 1, 0 },
	{ "elsewhere_total", "hellos of devices another worker owns, left to it (GXP_CLUSTER)", 0, 0 },
};

static void
usage(int code)
{
	gxp_usage(code, "gxp-control [--check | --replay] [--env file]\n",
	    "  --check      test the broker, the login and the store; one line each\n"
	    "  --replay     pass lines on without the broker: nothing is answered\n"
	    "               (implied when standard input is a regular file)\n"
	    "  --env file   read settings from file instead of ./.env\n"
	    "  --help       print this and exit\n");
}

static int
worst(int a, int b)
{
	return a == EXIT_PERM || b == EXIT_PERM ? EXIT_PERM : a ? a : b;
}

/* --check: the broker and the store. */
static int
check(void)
{
	int rc = net_check();

	store = ctl_open();
	rc = worst(rc, ctl_check(store));
	ctl_free(store);
	return rc;
}

/* What the broker connection brought: acknowledgements, then hellos. */
static void
take_net(void)
{
	struct hello h[64];
	int mids[256], n;

	while ((n = net_take_acked(mids, 256)) > 0)
		for (int i = 0; i < n; i++)
			answer_acked(mids[i]);
	while ((n = net_take_hellos(h, 64)) > 0)
		for (int i = 0; i < n; i++)
			if (cluster_hello(&h[i]))
				answer_hello(h[i].dev, h[i].at);
}

/* One turn: wait for input, acknowledgements, the store or a timer. */
static int
turn(int reading, int timeout)
{
	struct pollfd p[3];
	int n = 0, in = -1, rc = 0;

	if (reading && !input_paused()) {
		in = n;
		p[n++] = (struct pollfd){ input_fd(), POLLIN, 0 };
	}
	p[n++] = (struct pollfd){ net_wake_fd(), POLLIN, 0 };
	if (out_pending())
		p[n++] = (struct pollfd){ 1, POLLOUT, 0 };
	ctl_wait(store, timeout, p, n);
	if (in >= 0 && (p[in].revents & (POLLIN | POLLHUP | POLLERR)))
		rc = input_read();
	take_net();
	answer_tick();
	devices_refresh_due();
	out_flush();
	gxp_metrics_tick(0);
	return rc;
}

static int
settled(void)
{
	return answer_busy() == 0 && !ctl_busy(store) && !out_pending();
}

static int
run(void)
{
	int64_t deadline;

	while (!gxp_sig_term && !gxp_out_closed && !net_failed())
		if (turn(1, TICK_MS) == -1)
			break;
	if (net_failed())
		return net_failed();
	/* the end: answers in flight get their PUBACK, marks their write */
	deadline = gxp_mono_ms() + gxp_cfg_int("CONTROL_DRAIN_MS");
	while (!settled() && !gxp_out_closed && !net_failed() && gxp_mono_ms() < deadline)
		turn(0, TICK_MS);
	if (!settled())
		gxp_log(LOG_WARN, "stopping with %d answers not acknowledged or store writes "
		    "not done (CONTROL_DRAIN_MS); their commands stay queued",
		    answer_busy() + ctl_busy(store));
	return EXIT_OK;
}

static void
start(void)
{
	const char *tz = gxp_cfg("SCHEDULE_TZ");
	struct stat st;

	if (sched_zone(tz) == -1)
		gxp_die(EXIT_PERM, "SCHEDULE_TZ=%s: not a zone of the TZ database", tz);
	sched_from_settings(&default_sched);
	if (fstat(0, &st) == 0 && S_ISREG(st.st_mode))
		replay = 1;
	store = ctl_open();
	cluster_start();
	devices_load();
	gxp_log(LOG_INFO, "default schedule: %s, zone %s", default_sched.test_mode ?
	    "test mode" : gxp_cfg("SCHEDULE_WAKE_TIMES") ? gxp_cfg("SCHEDULE_WAKE_TIMES") :
	    "evenly spaced", tz);
	/* hellos are heard once the schedules are known */
	if (replay)
		gxp_log(LOG_INFO, "replay: lines pass through; no broker, no hello answered");
	else
		net_start();
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'C' },
		{ "env", required_argument, NULL, 'e' },
		{ "replay", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 }
	};
	const char *envfile = NULL;
	int c, rc, checking = 0;

	gxp_init(argv[0]);
	while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		switch (c) {
		case 'C': checking = 1; break;
		case 'e': envfile = optarg; break;
		case 'R': replay = 1; break;
		case 'H': usage(EXIT_OK); break;
		default:
			gxp_bad_option(c, argv);
			usage(EXIT_PERM);
		}
	}
	if (optind != argc || (checking && replay)) {
		gxp_log(LOG_ERROR, "%s", optind != argc ? "unexpected argument" :
		    "--check and --replay exclude each other");
		usage(EXIT_PERM);
	}
	gxp_config_common(envfile);
	gxp_signals_init();
	if (checking) {
		rc = check();
		gxp_config_free();
		return rc;
	}
	gxp_metrics_init(counters, C_COUNT);
	start();
	input_open(0);
	rc = run();
	input_close();
	gxp_metrics_tick(1);
	net_stop();
	answer_free();
	cluster_stop();
	ctl_free(store);
	devices_free();
	gxp_config_free();
	return rc;
}
