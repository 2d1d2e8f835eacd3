/* gxp-cmd: queues a command for a device in the configured store (the
 * device_commands table, or the local store's files), lists the queue,
 * cancels a command still queued.  gxp-control delivers what is queued at
 * the device's next hello, or at once while the device is awake.
 * Everything is checked before anything is written. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/control.h"
#include "lib/store.h"

static struct {
	int done, rc;
	char *msg;
	cJSON *rows;
} result;

static void
usage(int code)
{
	gxp_usage(code,
	    "gxp-cmd [--env file] [-x expires] device capture_image\n"
	    "       gxp-cmd [--env file] [-x expires] device send_image image_name\n"
	    "       gxp-cmd [--env file] [-x expires] device next_wake time\n"
	    "       gxp-cmd [--env file] -l [device]\n"
	    "       gxp-cmd [--env file] -c id\n",
	    "  -c id        cancel the queued command id\n"
	    "  --env file   read settings from file instead of ./.env\n"
	    "  -l           list the commands (of device), newest first\n"
	    "  -x expires   the command expires then (ISO 8601, or +N s, m, h or d)\n"
	    "  --help       print this and exit\n");
}

/* An ISO 8601 time, or +N with s, m, h or d from now; in the future. */
static int64_t
future_time(const char *s, const char *what)
{
	int64_t now = gxp_wall_us(), t;
	char *end;
	long long n;

	if (*s == '+') {
		static const char units[] = "smhd";
		static const long long secs[] = { 1, 60, 3600, 86400 };
		const char *u;

		errno = 0;
		n = strtoll(s + 1, &end, 10);
		if (errno || end == s + 1 || n <= 0 || n > 3650LL * 86400 || end[0] == '\0' ||
		    end[1] != '\0' || (u = strchr(units, end[0])) == NULL)
			gxp_die(EXIT_PERM, "%s %s: expected an ISO 8601 time or +N followed by "
			    "s, m, h or d", what, s);
		t = now + n * secs[u - units] * 1000000;
	} else if (gxp_parse_time(s, &t) == -1)
		gxp_die(EXIT_PERM, "%s %s: expected an ISO 8601 time (such as "
		    "2026-12-01T17:30:00Z) or +N followed by s, m, h or d", what, s);
	if (t <= now)
		gxp_die(EXIT_PERM, "%s %s: that time has passed", what, s);
	return t;
}

static void
done(void *arg, int rc, const cJSON *rows, const char *msg)
{
	(void)arg;
	result.done = 1;
	result.rc = rc;
	result.msg = xstrdup(msg ? msg : "");
	result.rows = cJSON_Duplicate(rows, 1);
}

static int
exit_code(int rc)
{
	return rc == ST_OK ? EXIT_OK : rc == ST_GAVEUP ? EXIT_TEMP : EXIT_PERM;
}

/* Waits for the one operation there is. */
static int
finish(struct ctl *c)
{
	while (!result.done && !gxp_sig_term)
		ctl_wait(c, 200, NULL, 0);
	if (!result.done)
		gxp_die(EXIT_TEMP, "interrupted");
	if (result.rc != ST_OK)
		gxp_log(LOG_ERROR, "%s", result.msg);
	return exit_code(result.rc);
}

static cJSON *
command_row(const char *dev, const char *type, const char *arg, int64_t expires)
{
	cJSON *row = cJSON_CreateObject(), *payload = cJSON_CreateObject();
	const char *why;
	char at[32];

	cJSON_AddStringToObject(row, "device_hw_id", dev);
	cJSON_AddStringToObject(row, "command_type", type);
	if (ctl_type(type) == CMD_SEND_IMAGE)
		cJSON_AddStringToObject(payload, "image_name", arg);
	else if (ctl_type(type) == CMD_NEXT_WAKE) {
		gxp_fmt_utc(at, future_time(arg, "next_wake"));
		cJSON_AddStringToObject(payload, "wake_time", at);
	}
	if ((why = ctl_check_command(type, payload)) != NULL)
		gxp_die(EXIT_PERM, "%s %s: %s", type, arg ? arg : "", why);
	cJSON_AddItemToObject(row, "command_payload", payload);
	if (expires) {
		gxp_fmt_utc(at, expires);
		cJSON_AddStringToObject(row, "expires_at", at);
	} else
		cJSON_AddNullToObject(row, "expires_at");
	return row;
}

static void
device_arg(const char *dev)
{
	if (!gxp_device_valid(dev))
		gxp_die(EXIT_PERM, "%s: not a device id ([A-Za-z0-9_-], 1 to 64)", dev);
}

/* The row to queue, from the operands, every one checked. */
static cJSON *
checked_row(char **args, int n, const char *expires)
{
	const char *dev = args[0], *type = n > 1 ? args[1] : NULL;

	device_arg(dev);
	if (type == NULL || ctl_type(type) == -1)
		gxp_die(EXIT_PERM, "%s: unknown command (capture_image, send_image or next_wake)",
		    type ? type : "(none)");
	if (n != (ctl_type(type) == CMD_CAPTURE ? 2 : 3))
		usage(EXIT_PERM);
	return command_row(dev, type, n > 2 ? args[2] : NULL,
	    expires ? future_time(expires, "-x") : 0);
}

static int
queue(struct ctl *c, cJSON *row)
{
	int rc;

	ctl_add(c, row, done, NULL);
	if ((rc = finish(c)) == EXIT_OK)
		printf("%s\n", gxp_json_str(cJSON_GetArrayItem(result.rows, 0), "command_id"));
	return rc;
}

static const char *
text_of(const cJSON *r, const char *key)
{
	const char *s = gxp_json_str(r, key);

	return s ? s : "-";
}

/* A table when stdout is a terminal, NDJSON otherwise. */
static void
print_rows(const cJSON *rows)
{
	static const char *const cols[] = { "command_id", "device_hw_id", "command_type",
		"command_payload", "status", "requested_at", "sent_at", "expires_at" };
	int tty = isatty(1);
	const cJSON *r;

	if (tty)
		printf("%-36s  %-16s  %-13s  %-9s  %-19s  %-19s  %s\n", "COMMAND", "DEVICE",
		    "TYPE", "STATUS", "REQUESTED (UTC)", "SENT (UTC)", "PAYLOAD");
	cJSON_ArrayForEach(r, rows) {
		cJSON *o = cJSON_CreateObject();
		char *text;

		for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, cols[i]);

			cJSON_AddItemToObject(o, cols[i], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
		}
		if (tty) {
			text = gxp_json_print(cJSON_GetObjectItemCaseSensitive(o, "command_payload"));
			printf("%-36s  %-16s  %-13s  %-9s  %-19.19s  %-19.19s  %s\n",
			    text_of(o, "command_id"), text_of(o, "device_hw_id"),
			    text_of(o, "command_type"), text_of(o, "status"),
			    text_of(o, "requested_at"), text_of(o, "sent_at"), text);
		} else {
			text = gxp_json_print(o);
			printf("%s\n", text);
		}
		free(text);
		cJSON_Delete(o);
	}
}

static int
list(struct ctl *c, const char *dev)
{
	int rc;

	ctl_list(c, dev, done, NULL);
	if ((rc = finish(c)) == EXIT_OK)
		print_rows(result.rows);
	return rc;
}

static int
cancel(struct ctl *c, const char *id)
{
	int rc;

	ctl_mark(c, id, NULL, "cancelled", gxp_wall_us(), done, NULL);
	if ((rc = finish(c)) != EXIT_OK)
		return rc;
	if (cJSON_GetArraySize(result.rows) == 0) {
		gxp_log(LOG_ERROR, "%s; not cancelled", result.msg);
		return EXIT_PERM;
	}
	printf("%s\n", id);
	return EXIT_OK;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "env", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *envfile = NULL, *expires = NULL, *cancel_id = NULL;
	int c, listing = 0, rc;
	cJSON *row = NULL;
	struct ctl *q;

	gxp_init(argv[0]);
	while ((c = getopt_long(argc, argv, "+:c:lx:", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': cancel_id = optarg; break;
		case 'e': envfile = optarg; break;
		case 'l': listing = 1; break;
		case 'x': expires = optarg; break;
		case 'h': usage(EXIT_OK); break;
		default:
			gxp_bad_option(c, argv);
			usage(EXIT_PERM);
		}
	}
	argc -= optind;
	argv += optind;
	if ((listing && (cancel_id || expires || argc > 1)) ||
	    (cancel_id && (expires || argc > 0)) || (!listing && !cancel_id && argc < 2))
		usage(EXIT_PERM);
	gxp_config_common(envfile);
	if (strcmp(gxp_cfg_source("LOG_LEVEL"), "default") == 0)
		gxp_log_level_set(LOG_WARN);	/* a command line tool: no chatter */
	gxp_signals_init();
	/* everything checked before the store is touched */
	if (listing && argc)
		device_arg(argv[0]);
	else if (cancel_id && !ctl_id_valid(cancel_id))
		gxp_die(EXIT_PERM, "%s: not a command id (a UUID)", cancel_id);
	else if (!listing && !cancel_id)
		row = checked_row(argv, argc, expires);
	q = ctl_open();
	ctl_attempts(q, (int)gxp_cfg_int("UPLOAD_ONCE_ATTEMPTS"));
	if (listing)
		rc = list(q, argc ? argv[0] : NULL);
	else if (cancel_id)
		rc = cancel(q, cancel_id);
	else
		rc = queue(q, row);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		gxp_log(LOG_ERROR, "stdout: %s", strerror(errno));
		rc = rc ? rc : EXIT_TEMP;
	}
	ctl_free(q);
	cJSON_Delete(result.rows);
	free(result.msg);
	gxp_config_free();
	return rc;
}
