/* wake.c: the wake cycle (-W), as the newer firmware runs it.  A device
 * wakes, says hello (its status, "Alive") and waits for an order on its
 * cmd topic:
 *
 *   capture_image  it takes a photo (a new one on its flash), sends it,
 *                  and after its ACK_OK (or its deadline) says hello again;
 *   send_image     it sends that photo from its flash, then says hello again;
 *   next_wake      it sleeps until then; the next wake begins there.
 *
 * An order that comes while the device is busy waits its turn.  One whose
 * command_id it took before is dropped, as the firmware drops a repeat.
 * One that comes while it sleeps is lost, as on a real device, and counted.
 * A hello left without an order for -A ms is counted as unanswered and
 * ends that wake: the device sleeps -A ms and wakes again.  Sleeps take
 * 1/-T of real time; after -W wakes a device stays asleep. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static struct device *hello_head, *hello_tail;
static int64_t *lat;			/* answer latencies, us */
static size_t nlat, latcap;

static void
hello_queue(struct device *d)
{
	d->wstate = W_HELLO;
	if (d->hello_queued)
		return;
	d->hello_queued = 1;
	d->next_hello = NULL;
	if (hello_tail)
		hello_tail->next_hello = d;
	else
		hello_head = d;
	hello_tail = d;
}

void
wake_start(struct device *d)
{
	d->orders_tail = &d->orders;
	d->wakes = 1;
	counters[C_WAKES].v++;
	hello_queue(d);
}

/* Says the next hello that is due; 0 when none is. */
int
wake_send_hello(void)
{
	struct device *d;

	while ((d = hello_head) != NULL) {
		if ((hello_head = d->next_hello) == NULL)
			hello_tail = NULL;
		d->hello_queued = 0;
		if (d->wstate != W_HELLO)
			continue;	/* an order came first */
		send_status(d);
		d->hello_us = gxp_mono_us();
		d->timer_us = d->hello_us + opt.answer_ms * 1000;
		d->wstate = W_WAIT;
		counters[C_HELLOS].v++;
		return 1;
	}
	return 0;
}

/* The end of a wake: asleep for delay_us of real time, or for good. */
static void
sleep_for(struct device *d, int64_t delay_us)
{
	if (d->wakes >= opt.wakes) {
		d->wstate = W_DONE;
		return;
	}
	d->wstate = W_SLEEP;
	d->timer_us = gxp_mono_us() + (delay_us > 0 ? delay_us : 0);
}

static void
send_photo(struct device *d, struct photo *p)
{
	d->wstate = W_BUSY;
	if (p->state == P_ACTIVE)
		return;		/* on its way already: its end ends this order */
	d->inflight++;
	photo_start(p, gxp_mono_us());
}

static void
run_order(struct device *d, const struct order *o)
{
	struct photo *p;

	switch (o->type) {
	case O_CAPTURE:
		send_photo(d, photo_add(d));
		break;
	case O_SEND_IMAGE:
		if ((p = photo_find(d, o->arg)) != NULL) {
			send_photo(d, p);
			break;
		}
		counters[C_NO_PHOTO].v++;
		gxp_log(LOG_WARN, "%s: send_image %s: no such photo on the device", d->id,
		    o->arg);
		hello_queue(d);
		break;
	default:
		sleep_for(d, (int64_t)((double)(o->wake - gxp_wall_us()) / opt.speed));
	}
}

/* Busy no more: the next order that waited, or a hello. */
static void
next_order(struct device *d)
{
	struct order *o = d->orders;

	if (o == NULL) {
		hello_queue(d);
		return;
	}
	if ((d->orders = o->next) == NULL)
		d->orders_tail = &d->orders;
	run_order(d, o);
	free(o);
}

void
wake_photo_done(struct device *d)
{
	if (d->inflight == 0 && d->wstate == W_BUSY)
		next_order(d);
}

/* A command_id taken before: 1 (a repeat); else it is remembered. */
static int
repeated(struct device *d, const char *id)
{
	for (size_t i = 0; i < d->nseen; i++)
		if (strcmp(d->seen_ids[i], id) == 0)
			return 1;
	d->seen_ids = xrealloc(d->seen_ids, (d->nseen + 1) * sizeof *d->seen_ids);
	d->seen_ids[d->nseen++] = xstrdup(id);
	return 0;
}

/* The order in a cmd-topic message; -1 (counted) when there is none. */
static int
parse_order(struct device *d, const cJSON *j, struct order *o)
{
	const char *v;

	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "capture_image")))
		o->type = O_CAPTURE;
	else if ((v = gxp_json_str(j, "send_image")) != NULL && gxp_image_name_valid(v)) {
		o->type = O_SEND_IMAGE;
		snprintf(o->arg, sizeof o->arg, "%s", v);
	} else if ((v = gxp_json_str(j, "next_wake")) != NULL && gxp_parse_time(v, &o->wake) == 0)
		o->type = O_NEXT_WAKE;
	else {
		counters[C_BAD].v++;
		gxp_log(LOG_WARN, "%s: a cmd-topic message without an order this device "
		    "knows; ignored", d->id);
		return -1;
	}
	v = gxp_json_str(j, "device_id");
	if (v && strcmp(v, d->id) != 0)
		gxp_log(LOG_WARN, "%s: an order that names device %s", d->id, v);
	return 0;
}

void
wake_command(struct device *d, const char *payload, int len)
{
	static const int counter[O_TYPES] = { C_CMD_CAPTURE, C_CMD_SEND, C_CMD_WAKE };
	cJSON *j = gxp_json_parse(payload, (size_t)len);
	const char *v = gxp_json_str(j, "command_id");
	char id[80] = "";
	struct order o = { 0 }, *q;
	int ok;

	if (!cJSON_IsObject(j)) {
		counters[C_BAD].v++;
		gxp_log(LOG_WARN, "%s: a cmd-topic message that is not a JSON object; ignored",
		    d->id);
		cJSON_Delete(j);
		return;
	}
	snprintf(id, sizeof id, "%s", v ? v : "");
	ok = parse_order(d, j, &o) == 0;
	cJSON_Delete(j);
	if (!ok)
		return;
	if (*id && repeated(d, id)) {
		counters[C_REPEATS].v++;
		gxp_log(LOG_INFO, "%s: command %s came again; dropped", d->id, id);
		return;
	}
	counters[counter[o.type]].v++;
	if (d->wstate == W_SLEEP || d->wstate == W_DONE) {
		counters[C_ASLEEP].v++;
		gxp_log(LOG_WARN, "%s: an order came while the device slept; it is lost%s%s",
		    d->id, *id ? ": command " : "", id);
		return;
	}
	if (*id)
		gxp_log(LOG_INFO, "%s: took command %s", d->id, id);
	if (d->wstate == W_WAIT) {
		if (nlat == latcap)
			lat = xrealloc(lat, (latcap = latcap ? 2 * latcap : 1024) * sizeof *lat);
		lat[nlat++] = gxp_mono_us() - d->hello_us;
		counters[C_ANSWERED].v++;
	}
	if (d->wstate != W_BUSY) {
		run_order(d, &o);
		return;
	}
	q = xmalloc(sizeof *q);
	*q = o;
	q->next = NULL;
	*d->orders_tail = q;
	d->orders_tail = &q->next;
}

void
wake_timers(int64_t now)
{
	for (unsigned i = 0; i < opt.devices; i++) {
		struct device *d = &fleet[i];

		if (d->wstate == W_WAIT && now >= d->timer_us) {
			counters[C_UNANSWERED].v++;
			gxp_log(LOG_WARN, "%s: no order within %lld ms of its hello", d->id,
			    opt.answer_ms);
			sleep_for(d, opt.answer_ms * 1000);
		} else if (d->wstate == W_SLEEP && now >= d->timer_us) {
			d->wakes++;
			counters[C_WAKES].v++;
			hello_queue(d);
		}
	}
}

/* Every device has had its wakes and sleeps, no photo is on its way. */
int
wake_finished(void)
{
	if (nactive > 0)
		return 0;
	for (unsigned i = 0; i < opt.devices; i++)
		if (fleet[i].wstate != W_DONE)
			return 0;
	return 1;
}

/* From a hello to its order. */
void
wake_latencies(double ms[3], size_t *count)
{
	percentiles(lat, nlat, ms);
	*count = nlat;
}

void
wake_free(void)
{
	for (unsigned i = 0; fleet && i < opt.devices; i++) {
		struct device *d = &fleet[i];

		while (d->orders) {
			struct order *o = d->orders;

			d->orders = o->next;
			free(o);
		}
		for (size_t k = 0; k < d->nseen; k++)
			free(d->seen_ids[k]);
		free(d->seen_ids);
	}
	free(lat);
	lat = NULL;
	nlat = latcap = 0;
}
