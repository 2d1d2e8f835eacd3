/* devices.c: what gxp-control knows of each device: its next_wake_at and
 * device_configs row, read from the store at start and again every
 * CONTROL_REFRESH_S seconds (sooner after a failed read); the hello it is
 * answering; whether it is awake; the commands this run sent it.
 *
 * A refresh takes the store's next_wake_at for a device unless this run
 * set the device's own since the refresh began: an operator's change in
 * the database is seen, and a write of ours still on its way is not undone.
 * Every change goes downstream as a schedule event.  A refresh also marks
 * expired the queued commands past their expires_at. */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#define SENT_KEEP_MS (3600 * 1000)	/* how long a sent command's id is kept */

static struct dev **tab;
static size_t mask, count;
static int refreshing, failed;
static int64_t next_refresh, refresh_started, backoff;
static unsigned wake_gen, config_gen;

struct dev *
dev_find(const char *id)
{
	if (tab == NULL || id == NULL)
		return NULL;
	for (struct dev *d = tab[gxp_hash(id) & mask]; d; d = d->next)
		if (strcmp(d->id, id) == 0)
			return d;
	return NULL;
}

static void
grow(void)
{
	size_t size = tab ? (mask + 1) * 2 : 1024;
	struct dev **nt = xcalloc(size, sizeof *nt);

	for (size_t i = 0; tab && i <= mask; i++)
		while (tab[i]) {
			struct dev *d = tab[i];

			tab[i] = d->next;
			d->next = nt[gxp_hash(d->id) & (size - 1)];
			nt[gxp_hash(d->id) & (size - 1)] = d;
		}
	free(tab);
	tab = nt;
	mask = size - 1;
}

struct dev *
dev_get(const char *id)
{
	struct dev *d = dev_find(id);

	if (d)
		return d;
	if (tab == NULL || count >= (mask + 1) / 4 * 3)
		grow();
	d = xcalloc(1, sizeof *d);
	snprintf(d->id, sizeof d->id, "%s", id);
	d->next = tab[gxp_hash(id) & mask];
	tab[gxp_hash(id) & mask] = d;
	count++;
	return d;
}

void
dev_each(void (*fn)(struct dev *, void *), void *arg)
{
	for (size_t i = 0; tab && i <= mask; i++)
		for (struct dev *d = tab[i]; d; d = d->next)
			fn(d, arg);
}

const struct sched *
dev_sched(const struct dev *d)
{
	return d->has_config ? &d->config : &default_sched;
}

int
dev_awake(const struct dev *d, int64_t now_ms)
{
	return d->awake_until > now_ms;
}

/* Whether this run published the command (or marked it) already. */
int
dev_was_sent(struct dev *d, const char *id)
{
	int64_t now = gxp_mono_ms();
	struct sent **pp = &d->sent;

	while (*pp) {
		struct sent *s = *pp;

		if (now - s->at > SENT_KEEP_MS) {
			*pp = s->next;
			free(s);
			continue;
		}
		if (strcmp(s->id, id) == 0)
			return 1;
		pp = &s->next;
	}
	return 0;
}

void
dev_sent(struct dev *d, const char *id)
{
	struct sent *s;

	if (dev_was_sent(d, id))
		return;
	s = xcalloc(1, sizeof *s);
	snprintf(s->id, sizeof s->id, "%s", id);
	s->at = gxp_mono_ms();
	s->next = d->sent;
	d->sent = s;
}

void
dev_forget_sent(struct dev *d, const char *id)
{
	for (struct sent **pp = &d->sent; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->id, id) == 0) {
			struct sent *s = *pp;

			*pp = s->next;
			free(s);
			return;
		}
}

/* --- reading the store --- */

/* When the last of a refresh's reads is in: when the next one is due. */
static void
read_end(void)
{
	int64_t max = gxp_cfg_int("CONTROL_POLL_MAX_MS"), delay;

	if (--refreshing > 0)
		return;
	if (failed) {
		backoff = backoff ? backoff * 2 : gxp_cfg_int("CONTROL_POLL_MS");
		delay = backoff = backoff < max ? backoff : max;
	} else {
		backoff = 0;
		delay = gxp_cfg_int("CONTROL_REFRESH_S") * 1000;
	}
	next_refresh = gxp_mono_ms() + delay;
}

static void
read_failed(const char *what, const char *msg)
{
	failed = 1;
	gxp_log(LOG_WARN, "%s could not be read (%s); going on with what is known", what,
	    msg);
}

/* A device the store has no next_wake_at for: an operator cleared it. */
static void
wake_unseen(struct dev *d, void *arg)
{
	(void)arg;
	if (d->wake_seen != wake_gen && d->next_wake && d->wake_changed < refresh_started) {
		d->next_wake = 0;
		gxp_log(LOG_INFO, "device %s: next_wake_at cleared in the store", d->id);
	}
}

static void
wakes_read(void *arg, int rc, const cJSON *rows, const char *msg)
{
	const cJSON *r;

	(void)arg;
	if (rc != ST_OK) {
		read_failed("next_wake_at", msg);
		read_end();
		return;
	}
	wake_gen++;
	cJSON_ArrayForEach(r, rows) {
		const char *id = gxp_json_str(r, "device_hw_id");
		struct dev *d;
		int64_t t = 0;

		if (id == NULL || !gxp_device_valid(id))
			continue;
		d = dev_get(id);
		d->wake_seen = wake_gen;
		if (ctl_row_time(r, "next_wake_at", &t) == -1) {
			gxp_log(LOG_WARN, "device %s: next_wake_at is not a time; taken as "
			    "none", id);
			t = 0;
		}
		if (d->wake_changed >= refresh_started || t == d->next_wake)
			continue;
		d->next_wake = t;
		if (t)
			schedule_event(d);
	}
	dev_each(wake_unseen, NULL);
	read_end();
}

static void
config_unseen(struct dev *d, void *arg)
{
	(void)arg;
	if (d->config_seen != config_gen)
		d->has_config = 0;
}

static void
configs_read(void *arg, int rc, const cJSON *rows, const char *msg)
{
	const cJSON *r;

	(void)arg;
	if (rc != ST_OK) {
		read_failed("device_configs", msg);
		read_end();
		return;
	}
	config_gen++;
	cJSON_ArrayForEach(r, rows) {
		const char *id = gxp_json_str(r, "device_hw_id"), *bad;
		struct dev *d;

		if (id == NULL || !gxp_device_valid(id))
			continue;
		d = dev_get(id);
		d->config_seen = config_gen;
		if ((bad = sched_from_json(r, &d->config)) != NULL) {
			gxp_log(LOG_WARN, "device %s: device_configs.%s is not valid; the "
			    "default schedule is used", id, bad);
			d->has_config = 0;
		} else
			d->has_config = 1;
	}
	dev_each(config_unseen, NULL);
	read_end();
}

static void
expired(void *arg, int rc, const cJSON *rows, const char *msg)
{
	const cJSON *r;

	(void)arg;
	if (rc != ST_OK) {
		read_failed("the queue", msg);
		read_end();
		return;
	}
	cJSON_ArrayForEach(r, rows) {
		counters[C_EXPIRED].v++;
		gxp_log(LOG_INFO, "device %s command %s: expired (past its expires_at)",
		    gxp_json_str(r, "device_hw_id"), gxp_json_str(r, "command_id"));
	}
	read_end();
}

static void
refresh(void)
{
	refresh_started = gxp_mono_ms();
	failed = 0;
	refreshing = 3;
	ctl_wakes(store, wakes_read, NULL);
	ctl_configs(store, configs_read, NULL);
	ctl_expire(store, gxp_wall_us(), expired, NULL);
}

/* Reads every CONTROL_REFRESH_S; after a failure sooner, from
 * CONTROL_POLL_MS doubling to CONTROL_POLL_MAX_MS. */
void
devices_refresh_due(void)
{
	if (!refreshing && gxp_mono_ms() >= next_refresh)
		refresh();
}

/* The first read, before any hello is answered: waits for it up to
 * UPLOAD_TIMEOUT_MS; a store that does not answer leaves the devices to
 * the default schedule until a later read works. */
void
devices_load(void)
{
	int64_t deadline = gxp_mono_ms() + gxp_cfg_int("UPLOAD_TIMEOUT_MS");

	refresh();
	while (refreshing && gxp_mono_ms() < deadline && !gxp_sig_term)
		ctl_wait(store, 100, NULL, 0);
	if (refreshing)
		gxp_log(LOG_WARN, "the store has not answered yet; the default schedule "
		    "answers devices whose next_wake_at is not known");
	gxp_log(LOG_INFO, "%zu devices known", count);
}

void
devices_free(void)
{
	for (size_t i = 0; tab && i <= mask; i++)
		while (tab[i]) {
			struct dev *d = tab[i];

			tab[i] = d->next;
			while (d->sent) {
				struct sent *s = d->sent;

				d->sent = s->next;
				free(s);
			}
			free(d);
		}
	free(tab);
	tab = NULL;
	mask = count = 0;
}
