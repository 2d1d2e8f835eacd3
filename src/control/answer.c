/* answer.c: the answer to a hello, in order:
 *
 *   1. the device's queue is read: one request to the database, or a look
 *      at its directory in the local store;
 *   2. its oldest command still queued is the answer; on the way, one past
 *      its expires_at (or a next_wake past its time) is marked expired and
 *      one that cannot be sent (a type or payload the check refused) failed;
 *   3. without one, the schedule answers: capture_image when the device is
 *      due, next_wake with its next_wake_at otherwise;
 *   4. the answer is published, QoS 1, and when the broker has it (PUBACK)
 *      the command is marked sent (only if still queued), the new
 *      next_wake_at is stored, and command and schedule events go
 *      downstream.
 *
 * A queue not read within CONTROL_DB_WAIT_MS leaves the answer to the
 * schedule, and the log says so; the command then waits for the device's
 * next hello.  A device that got capture_image or a command stays awake
 * for its wakeup_window_sec after the hello; commands queued meanwhile are
 * found by a poll every CONTROL_POLL_MS and sent at once, one at a time.
 * The hello that follows such a command is answered from the schedule: it
 * may have crossed the command on its way, and then the device took that
 * command as its answer; a second command would reach it busy or asleep
 * (after a next_wake) and be lost.  A command left queued waits for the
 * poll or the next hello instead. */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#define BATCH 100		/* devices per request for their queues */

/* An answer published and not yet acknowledged, by message id. */
struct action {
	char dev[GXP_DEVICE_MAX + 1];
	char id[CTL_ID_LEN + 1];	/* a queued command's; "" for the schedule's */
	int type;			/* CMD_* */
	int64_t tst;			/* when the hello answered came; 0: sent by a poll */
	int64_t next_wake;		/* to store after the PUBACK; 0: none */
	char *message;
};

/* A device whose queue is to be read for a hello, and which read. */
struct read {
	struct dev *d;
	unsigned gen;
};

/* A request for the queues of several devices. */
struct batch {
	size_t n;
	struct read r[BATCH];
};

/* A mark for a command, for its message. */
struct mark {
	char dev[GXP_DEVICE_MAX + 1];
	char id[CTL_ID_LEN + 1];
	const char *status;
};

static struct action *by_mid[65536];
static int inflight;
static struct dev **waiting;	/* hellos whose queue is being read */
static size_t nwaiting, capwaiting;
static struct read *to_read;	/* ... and not asked for yet */
static size_t nto_read, capto_read;
static int reading;		/* requests for hellos' queues in flight */
static int polling;
static int64_t next_poll, poll_delay;

static void
mark_done(void *arg, int rc, const cJSON *rows, const char *msg)
{
	struct mark *m = arg;

	if (rc != ST_OK)
		gxp_log(LOG_ERROR, "device %s command %s: not marked %s: %s", m->dev, m->id,
		    m->status, msg);
	else if (cJSON_GetArraySize(rows) == 0)
		gxp_log(LOG_WARN, "device %s command %s: %s%s", m->dev, m->id, msg,
		    strcmp(m->status, "sent") == 0 ? "; the device got it all the same" : "");
	else
		gxp_log(LOG_INFO, "device %s command %s: %s", m->dev, m->id, m->status);
	free(m);
}

static void
mark(const char *dev, const char *id, const char *status, const char *why)
{
	struct mark *m = xcalloc(1, sizeof *m);

	snprintf(m->dev, sizeof m->dev, "%s", dev);
	snprintf(m->id, sizeof m->id, "%s", id);
	m->status = status;
	if (why)
		gxp_log(strcmp(status, "failed") == 0 ? LOG_ERROR : LOG_INFO,
		    "device %s command %s: %s; marking it %s", dev, id, why, status);
	counters[strcmp(status, "failed") == 0 ? C_FAILED : C_EXPIRED].v +=
	    strcmp(status, "sent") != 0;
	ctl_mark(store, id, dev, status, gxp_wall_us(), mark_done, m);
}

void
schedule_event(const struct dev *d)
{
	cJSON *e = gxp_event_new("schedule");
	char at[32], clock[16];

	gxp_fmt_utc(at, gxp_wall_us());
	cJSON_AddStringToObject(e, "ts", at);
	cJSON_AddStringToObject(e, "device", d->id);
	gxp_fmt_utc(at, d->next_wake);
	cJSON_AddStringToObject(e, "next_wake_at", at);
	sched_clock(clock, d->next_wake);
	cJSON_AddStringToObject(e, "next_wake_time", clock);
	out_event(e);
}

static void
command_event(const struct action *a, const char *topic)
{
	cJSON *e = gxp_event_new("command"), *payload = cJSON_Parse(a->message);
	char at[32];

	gxp_fmt_utc(at, gxp_wall_us());
	cJSON_AddStringToObject(e, "ts", at);
	cJSON_AddStringToObject(e, "device", a->dev);
	cJSON_AddStringToObject(e, "kind", ctl_types[a->type]);
	cJSON_AddStringToObject(e, "source", a->id[0] ? "queue" : "schedule");
	if (a->id[0])
		cJSON_AddStringToObject(e, "command_id", a->id);
	if (a->tst) {
		gxp_fmt_utc(at, a->tst);
		cJSON_AddStringToObject(e, "hello_tst", at);
	}
	cJSON_AddStringToObject(e, "topic", topic);
	cJSON_AddItemToObject(e, "payload", payload ? payload : cJSON_CreateNull());
	out_event(e);
}

/* Publishes an answer; type and payload as in a device_commands row. */
static void
publish(struct dev *d, int type, const cJSON *payload, const char *id, int64_t tst,
    int64_t next_wake)
{
	char *topic = gxp_topic_for("TOPIC_PATTERN_CMD", d->id);
	struct action *a = xcalloc(1, sizeof *a);
	int mid = 0;

	snprintf(a->dev, sizeof a->dev, "%s", d->id);
	snprintf(a->id, sizeof a->id, "%s", id ? id : "");
	a->type = type;
	a->tst = tst;
	a->next_wake = next_wake;
	a->message = ctl_message(d->id, ctl_types[type], payload, id);
	if (net_publish(topic, a->message, &mid) == -1 || by_mid[mid & 0xffff]) {
		gxp_log(LOG_ERROR, "device %s: its answer was not published", d->id);
		if (id)
			dev_forget_sent(d, id);
		free(a->message);
		free(a);
	} else {
		by_mid[mid & 0xffff] = a;
		inflight++;
		d->inflight++;
		if (id)
			dev_sent(d, id);
		counters[C_ANSWERED].v += tst != 0;
		counters[id ? C_COMMANDS : type == CMD_CAPTURE ? C_CAPTURE : C_NEXT_WAKE].v++;
		gxp_log(LOG_DEBUG, "device %s: %s", d->id, a->message);
	}
	free(topic);
}

/* A device that got capture_image or a command is awake for its window;
 * one told to sleep is not. */
static void
set_awake(struct dev *d, int type)
{
	d->awake_until = type == CMD_NEXT_WAKE ? 0 :
	    d->hello_at + (int64_t)dev_sched(d)->window_s * 1000;
}

static void
from_schedule(struct dev *d, int64_t tst)
{
	const struct sched *s = dev_sched(d);
	int64_t now = gxp_wall_us(), next = sched_after_capture(s, now), store_it = 0;
	cJSON *payload = cJSON_CreateObject();
	char at[32];
	int type = CMD_NEXT_WAKE;

	if (sched_due(s, d->next_wake, now)) {
		type = CMD_CAPTURE;
		store_it = next;
	} else if (next < d->next_wake) {
		gxp_log(LOG_INFO, "device %s: its schedule has a slot before its "
		    "next_wake_at; moving it there", d->id);
		store_it = next;
	}
	if (store_it) {
		d->next_wake = store_it;
		d->wake_changed = gxp_mono_ms();
	}
	gxp_fmt_utc(at, d->next_wake);
	cJSON_AddStringToObject(payload, "wake_time", at);
	set_awake(d, type);
	publish(d, type, payload, NULL, tst, store_it);
	cJSON_Delete(payload);
}

/* The first command of rows (the device's queue, oldest first) that can
 * be sent; the others on the way are marked expired or failed. */
static const cJSON *
pick(struct dev *d, const cJSON *rows)
{
	int64_t now = gxp_wall_us(), t;
	const cJSON *r;

	cJSON_ArrayForEach(r, rows) {
		const char *id = gxp_json_str(r, "command_id"), *why = ctl_check_row(r);
		const char *dev = gxp_json_str(r, "device_hw_id");

		if (dev == NULL || strcmp(dev, d->id) != 0 || (id && dev_was_sent(d, id)))
			continue;
		if (why) {
			if (id && ctl_id_valid(id))
				mark(d->id, id, "failed", why);
			else
				gxp_log(LOG_ERROR, "device %s: a queued command with %s; left alone",
				    d->id, why);
			dev_sent(d, id ? id : "");
		} else if (ctl_row_time(r, "expires_at", &t) == 1 && t <= now) {
			mark(d->id, id, "expired", "past its expires_at");
			dev_sent(d, id);
		} else if (ctl_type(gxp_json_str(r, "command_type")) == CMD_NEXT_WAKE &&
		    gxp_parse_time(gxp_json_str(cJSON_GetObjectItemCaseSensitive(r,
		    "command_payload"), "wake_time"), &t) == 0 && t <= now) {
			mark(d->id, id, "expired", "its wake_time has passed");
			dev_sent(d, id);
		} else
			return r;
	}
	return NULL;
}

static void
send_command(struct dev *d, const cJSON *r, int64_t tst)
{
	int type = ctl_type(gxp_json_str(r, "command_type"));

	gxp_log(LOG_INFO, "device %s: sending command %s (%s)%s", d->id,
	    gxp_json_str(r, "command_id"), ctl_types[type], tst ? "" : ", the device is awake");
	if (tst)
		set_awake(d, type);
	else {
		d->sent_awake = 1;
		if (type == CMD_NEXT_WAKE)
			d->awake_until = 0;
	}
	publish(d, type, cJSON_GetObjectItemCaseSensitive(r, "command_payload"),
	    gxp_json_str(r, "command_id"), tst, 0);
}

static void
unwait(struct dev *d)
{
	for (size_t i = 0; i < nwaiting; i++)
		if (waiting[i] == d) {
			waiting[i] = waiting[--nwaiting];
			break;
		}
	d->reading = 0;
}

static void
answer(struct dev *d, const cJSON *rows)
{
	const cJSON *r = rows && !d->sent_awake ? pick(d, rows) : NULL;
	int64_t tst = d->hello;

	unwait(d);
	if (rows && d->sent_awake)
		gxp_log(LOG_INFO, "device %s: a command went to it awake since its last "
		    "hello; this hello may have crossed it, so the schedule answers and "
		    "the queue waits", d->id);
	d->sent_awake = 0;
	if (r)
		send_command(d, r, tst);
	else
		from_schedule(d, tst);
}

/* One device's share of a batch's answer. */
static void
read_one(const struct read *rd, int rc, const cJSON *rows, const char *msg)
{
	struct dev *d = rd->d;
	const cJSON *r;

	if (!d->reading || d->read_gen != rd->gen) {
		/* answered already, from the schedule: a command found now is
		 * for a device still awake, as a poll would find it */
		if (rc == ST_OK && dev_awake(d, gxp_mono_ms()) && d->inflight == 0 &&
		    (r = pick(d, rows)) != NULL)
			send_command(d, r, 0);
	} else if (rc != ST_OK) {
		counters[C_FALLBACK].v++;
		gxp_log(LOG_WARN, "device %s: its queue could not be read (%s); answering "
		    "from the schedule", d->id, msg);
		answer(d, NULL);
	} else
		answer(d, rows);
}

static void
read_done(void *arg, int rc, const cJSON *rows, const char *msg)
{
	struct batch *b = arg;

	reading--;
	for (size_t i = 0; i < b->n; i++)
		read_one(&b->r[i], rc, rows, msg);
	free(b);
}

/* The hellos not asked for yet, BATCH devices a request, at most
 * CONTROL_DB_READS requests at once: a burst of hellos costs a few
 * requests, each hello at most the one its device is in. */
static void
read_queues(void)
{
	long long most = gxp_cfg_int("CONTROL_DB_READS");

	while (nto_read > 0 && reading < most) {
		struct batch *b = xcalloc(1, sizeof *b);
		const char *ids[BATCH];
		size_t k = 0;

		while (k < nto_read && b->n < BATCH) {
			struct read *rd = &to_read[k++];

			if (rd->d->reading && rd->d->read_gen == rd->gen) {
				ids[b->n] = rd->d->id;
				b->r[b->n++] = *rd;
			}
		}
		memmove(to_read, to_read + k, (nto_read - k) * sizeof *to_read);
		nto_read -= k;
		if (b->n == 0) {
			free(b);
			continue;
		}
		reading++;
		ctl_queued(store, ids, b->n, read_done, b);
	}
}

/* A hello heard at tst: the device's status, "Alive". */
void
answer_hello(const char *id, int64_t tst)
{
	struct dev *d = dev_get(id);

	counters[C_HELLOS].v++;
	d->hello = tst;
	if (d->reading)
		return;		/* one answer for the hellos of one wait */
	d->reading = 1;
	d->hello_at = gxp_mono_ms();
	if (nwaiting == capwaiting)
		waiting = xrealloc(waiting, (capwaiting = capwaiting ? 2 * capwaiting : 64) *
		    sizeof *waiting);
	waiting[nwaiting++] = d;
	if (nto_read == capto_read)
		to_read = xrealloc(to_read, (capto_read = capto_read ? 2 * capto_read : 64) *
		    sizeof *to_read);
	to_read[nto_read].d = d;
	to_read[nto_read++].gen = ++d->read_gen;
}

static void
poll_done(void *arg, int rc, const cJSON *rows, const char *msg)
{
	int64_t now = gxp_mono_ms();
	const cJSON *r, *c;

	(void)arg;
	polling--;
	if (rc != ST_OK) {
		poll_delay = poll_delay * 2 < gxp_cfg_int("CONTROL_POLL_MAX_MS") ?
		    poll_delay * 2 : gxp_cfg_int("CONTROL_POLL_MAX_MS");
		gxp_log(LOG_WARN, "the queue could not be read for the devices awake (%s); "
		    "again in %lld ms", msg, (long long)poll_delay);
		next_poll = now + poll_delay;
		return;
	}
	poll_delay = gxp_cfg_int("CONTROL_POLL_MS");
	cJSON_ArrayForEach(r, rows) {
		struct dev *d = dev_find(gxp_json_str(r, "device_hw_id"));

		if (d && !d->reading && d->inflight == 0 && dev_awake(d, now) &&
		    (c = pick(d, rows)) != NULL)
			send_command(d, c, 0);
	}
}

struct awake {
	const char **ids;
	size_t n, cap;
	int64_t now;
};

static void
add_awake(struct dev *d, void *arg)
{
	struct awake *w = arg;

	if (d->reading || d->inflight || !dev_awake(d, w->now))
		return;
	if (w->n == w->cap)
		w->ids = xrealloc(w->ids, (w->cap = w->cap ? 2 * w->cap : 64) * sizeof *w->ids);
	w->ids[w->n++] = d->id;
}

/* The queue of the devices awake, read every CONTROL_POLL_MS (doubling
 * to CONTROL_POLL_MAX_MS while it fails), and only while one is. */
static void
poll_awake(void)
{
	struct awake w = { NULL, 0, 0, gxp_mono_ms() };

	if (polling || w.now < next_poll)
		return;
	if (poll_delay == 0)
		poll_delay = gxp_cfg_int("CONTROL_POLL_MS");
	next_poll = w.now + poll_delay;
	dev_each(add_awake, &w);
	counters[C_AWAKE].v = w.n;
	for (size_t i = 0; i < w.n; i += BATCH) {
		polling++;
		ctl_queued(store, w.ids + i, w.n - i < BATCH ? w.n - i : BATCH, poll_done, NULL);
	}
	free(w.ids);
}

/* The queues to read, then the timers: hellos whose queue took too long,
 * and the poll. */
void
answer_tick(void)
{
	int64_t now = gxp_mono_ms(), wait = gxp_cfg_int("CONTROL_DB_WAIT_MS");

	read_queues();
	for (size_t i = 0; i < nwaiting; ) {
		struct dev *d = waiting[i];

		if (now - d->hello_at < wait) {
			i++;
			continue;
		}
		counters[C_FALLBACK].v++;
		gxp_log(LOG_WARN, "device %s: its queue was not read within "
		    "CONTROL_DB_WAIT_MS (%lld ms); answering from the schedule", d->id,
		    (long long)wait);
		answer(d, NULL);	/* takes it out of waiting[] */
	}
	poll_awake();
}

static void
wake_stored(void *arg, int rc, const cJSON *rows, const char *msg)
{
	(void)rows;
	if (rc != ST_OK)
		gxp_log(LOG_ERROR, "device %s: next_wake_at not stored (%s); a restart "
		    "before the next one is may take an extra photo", (char *)arg, msg);
	free(arg);
}

void
answer_acked(int mid)
{
	struct action *a = by_mid[mid & 0xffff];
	struct dev *d;
	char *topic;

	if (a == NULL)
		return;
	by_mid[mid & 0xffff] = NULL;
	inflight--;
	d = dev_get(a->dev);
	d->inflight--;
	if (a->id[0]) {
		struct mark *m = xcalloc(1, sizeof *m);

		snprintf(m->dev, sizeof m->dev, "%s", a->dev);
		snprintf(m->id, sizeof m->id, "%s", a->id);
		m->status = "sent";
		ctl_mark(store, a->id, a->dev, "sent", gxp_wall_us(), mark_done, m);
	}
	if (a->next_wake) {
		ctl_set_wake(store, a->dev, a->next_wake, wake_stored, xstrdup(a->dev));
		schedule_event(d);
	}
	topic = gxp_topic_for("TOPIC_PATTERN_CMD", a->dev);
	command_event(a, topic);
	free(topic);
	free(a->message);
	free(a);
}

int
answer_busy(void)
{
	return inflight + (int)nwaiting + polling + reading;
}

void
answer_free(void)
{
	for (size_t i = 0; i < sizeof by_mid / sizeof by_mid[0]; i++)
		if (by_mid[i]) {
			free(by_mid[i]->message);
			free(by_mid[i]);
			by_mid[i] = NULL;
		}
	free(waiting);
	free(to_read);
	waiting = NULL;
	to_read = NULL;
	nwaiting = capwaiting = nto_read = capto_read = 0;
}
