/* ctl.c: the control plane's store, whichever it is (Supabase when
 * SUPABASE_URL is set, the local store otherwise), and what both sides
 * agree a command is: its type, its payload, its id and the message it
 * becomes on the device's cmd topic. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "control.h"

const char *const ctl_types[CMD_TYPES] = { "capture_image", "send_image", "next_wake" };

int
ctl_type(const char *name)
{
	for (int i = 0; name && i < CMD_TYPES; i++)
		if (strcmp(name, ctl_types[i]) == 0)
			return i;
	return -1;
}

/* Why a command cannot be sent, or NULL: the type is one of ctl_types and
 * the payload an object with what the type needs. */
const char *
ctl_check_command(const char *type, const cJSON *payload)
{
	const char *v;
	int64_t t;

	switch (ctl_type(type)) {
	case -1:
		return "unknown command type (capture_image, send_image or next_wake)";
	case CMD_SEND_IMAGE:
		if (!cJSON_IsObject(payload) || (v = gxp_json_str(payload, "image_name")) == NULL)
			return "send_image needs {\"image_name\": NAME}";
		if (!gxp_image_name_valid(v))
			return "image_name must be 1 to 128 of A-Z a-z 0-9 . _ - (not starting with a dot)";
		return NULL;
	case CMD_NEXT_WAKE:
		if (!cJSON_IsObject(payload) || (v = gxp_json_str(payload, "wake_time")) == NULL)
			return "next_wake needs {\"wake_time\": TIME}";
		if (gxp_parse_time(v, &t) == -1)
			return "wake_time must be an ISO 8601 time, such as 2026-12-01T17:30:00Z";
		return NULL;
	default:
		return cJSON_IsObject(payload) ? NULL : "command_payload must be a JSON object";
	}
}

/* A device_commands row as the store gave it: why it cannot be sent. */
const char *
ctl_check_row(const cJSON *row)
{
	const char *id = gxp_json_str(row, "command_id"), *dev = gxp_json_str(row, "device_hw_id");

	if (id == NULL || !ctl_id_valid(id))
		return "no valid command_id";
	if (dev == NULL || !gxp_device_valid(dev))
		return "no valid device";
	return ctl_check_command(gxp_json_str(row, "command_type"),
	    cJSON_GetObjectItemCaseSensitive(row, "command_payload"));
}

/* A UUID as text: 8-4-4-4-12 hexadecimal digits. */
int
ctl_id_valid(const char *id)
{
	if (strlen(id) != CTL_ID_LEN)
		return 0;
	for (int i = 0; i < CTL_ID_LEN; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? id[i] != '-' : !strchr("0123456789abcdefABCDEF", id[i]))
			return 0;
	}
	return 1;
}

/* A random (version 4) UUID, as gen_random_uuid() makes. */
void
ctl_new_id(char id[CTL_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[16];
	int o = 0;

	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		gxp_die_errno(EXIT_TEMP, "getrandom");
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			id[o++] = '-';
		id[o++] = hex[r[i] >> 4];
		id[o++] = hex[r[i] & 15];
	}
	id[o] = '\0';
}

/* The wire's time: "2026-12-01T17:30:00+00:00", to the second. */
void
ctl_fmt_time(char buf[32], int64_t t)
{
	char utc[32];

	gxp_fmt_utc(utc, t);
	snprintf(buf, 32, "%.19s+00:00", utc);
}

/* A time column: 1 with *t, 0 when null or absent, -1 when not a time. */
int
ctl_row_time(const cJSON *row, const char *key, int64_t *t)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);

	if (v == NULL || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v) || gxp_parse_time(v->valuestring, t) == -1)
		return -1;
	return 1;
}

/* {"device_id":MAC,"capture_image":true,"command_id":ID}, or the
 * send_image or next_wake order; id NULL: a schedule's answer. */
char *
ctl_message(const char *dev, const char *type, const cJSON *payload, const char *id)
{
	cJSON *m = cJSON_CreateObject();
	char *text, when[32];
	int64_t t;

	cJSON_AddStringToObject(m, "device_id", dev);
	switch (ctl_type(type)) {
	case CMD_CAPTURE:
		cJSON_AddTrueToObject(m, "capture_image");
		break;
	case CMD_SEND_IMAGE:
		cJSON_AddStringToObject(m, "send_image", gxp_json_str(payload, "image_name"));
		break;
	default:
		gxp_parse_time(gxp_json_str(payload, "wake_time"), &t);
		ctl_fmt_time(when, t);
		cJSON_AddStringToObject(m, "next_wake", when);
	}
	if (id)
		cJSON_AddStringToObject(m, "command_id", id);
	text = gxp_json_print(m);
	cJSON_Delete(m);
	return text;
}

static int newest;

static int
by_request(const void *a, const void *b)
{
	const cJSON *x = *(cJSON *const *)a, *y = *(cJSON *const *)b;
	int64_t tx = 0, ty = 0;
	const char *ix = gxp_json_str(x, "command_id"), *iy = gxp_json_str(y, "command_id");
	int c;

	ctl_row_time(x, "requested_at", &tx);
	ctl_row_time(y, "requested_at", &ty);
	c = tx < ty ? -1 : tx > ty;
	if (c == 0)
		c = strcmp(ix ? ix : "", iy ? iy : "");
	return newest ? -c : c;
}

/* Orders command rows by requested_at (then command_id), the oldest first
 * or the newest.  Returns how many. */
int
ctl_sort_rows(cJSON *rows, int newest_first)
{
	int n = cJSON_GetArraySize(rows);
	cJSON **v = xcalloc((size_t)n, sizeof *v);

	for (int i = 0; i < n; i++)
		v[i] = cJSON_DetachItemFromArray(rows, 0);
	newest = newest_first;
	qsort(v, (size_t)n, sizeof *v, by_request);
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(rows, v[i]);
	free(v);
	return n;
}

struct ctl *
ctl_open(void)
{
	if (gxp_cfg("SUPABASE_URL"))
		return ctl_supabase_open();
	return ctl_dir_open(gxp_cfg("GXP_STORE"));
}

void
ctl_queued(struct ctl *c, const char *const *devs, size_t n, ctl_rows_fn *fn, void *arg)
{
	c->ops->queued(c, devs, n, fn, arg);
}

void
ctl_list(struct ctl *c, const char *dev, ctl_rows_fn *fn, void *arg)
{
	c->ops->list(c, dev, fn, arg);
}

/* Takes row: device_hw_id, command_type, command_payload, expires_at. */
void
ctl_add(struct ctl *c, cJSON *row, ctl_rows_fn *fn, void *arg)
{
	c->ops->add(c, row, fn, arg);
}

/* status (sent, expired, cancelled or failed) for a command still queued;
 * the rows: the command as it is now, or none when it was not queued. */
void
ctl_mark(struct ctl *c, const char *id, const char *dev, const char *status,
    int64_t when, ctl_rows_fn *fn, void *arg)
{
	c->ops->mark(c, id, dev, status, when, fn, arg);
}

void
ctl_expire(struct ctl *c, int64_t now, ctl_rows_fn *fn, void *arg)
{
	c->ops->expire(c, now, fn, arg);
}

void
ctl_wakes(struct ctl *c, ctl_rows_fn *fn, void *arg)
{
	c->ops->wakes(c, fn, arg);
}

void
ctl_set_wake(struct ctl *c, const char *dev, int64_t at, ctl_rows_fn *fn, void *arg)
{
	c->ops->set_wake(c, dev, at, fn, arg);
}

void
ctl_configs(struct ctl *c, ctl_rows_fn *fn, void *arg)
{
	c->ops->configs(c, fn, arg);
}

int
ctl_wait(struct ctl *c, int timeout_ms, struct pollfd *fds, int nfds)
{
	return c->ops->wait(c, timeout_ms, fds, nfds);
}

int
ctl_busy(const struct ctl *c)
{
	return c->ops->busy(c);
}

/* Tries per request before it gives up (ST_GAVEUP); 0: no end. */
void
ctl_attempts(struct ctl *c, int max)
{
	c->ops->attempts(c, max);
}

int
ctl_check(struct ctl *c)
{
	return c->ops->check(c);
}

void
ctl_free(struct ctl *c)
{
	if (c)
		c->ops->free(c);
}
