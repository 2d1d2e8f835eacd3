/* recv.c: what comes back: ACK_OK and NACKs on the ack topic, commands on
 * the cmd topic (-W), and the connection's subscription. */
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "sim.h"

static void
on_ack(struct device *d, struct photo *p, const char *name)
{
	if (p == NULL || p->state == P_WAITING) {
		counters[C_ACKS_UNKNOWN].v++;
		gxp_log(LOG_WARN, "%s %s: ACK_OK for a photo the device is not sending; ignored",
		    d->id, name);
		return;
	}
	if (p->state != P_ACTIVE) {
		counters[p->state == P_ACKED ? C_ACKS_DUP : C_ACKS_LATE].v++;
		gxp_log(LOG_DEBUG, "%s %s: %s ACK_OK", d->id, name,
		    p->state == P_ACKED ? "duplicate" : "late");
		return;
	}
	p->latency_us = gxp_mono_us() - (p->last_chunk_us ? p->last_chunk_us : p->last_tx_us);
	counters[C_ACKS].v++;
	counters[C_ACKED].v++;
	gxp_log(LOG_DEBUG, "%s %s: ACK_OK after %.1f ms", d->id, name,
	    (double)p->latency_us / 1000);
	photo_done(p, P_ACKED);
}

static void
resend_add(struct photo *p, uint32_t id)
{
	if (p->resend_len == p->resend_cap) {
		p->resend_cap = p->resend_cap ? 2 * p->resend_cap : 16;
		p->resend = xrealloc(p->resend, p->resend_cap * sizeof *p->resend);
	}
	p->resend[p->resend_len++] = id;
}

/* Resends exactly the chunks listed, in the order listed. */
static void
on_nack(struct device *d, struct photo *p, const char *name, const cJSON *list)
{
	const cJSON *v;
	size_t bad = 0, good = 0;

	if (p == NULL || p->state != P_ACTIVE) {
		counters[C_NACKS_IGNORED].v++;
		gxp_log(LOG_DEBUG, "%s %s: NACK for a photo not in flight; ignored", d->id, name);
		return;
	}
	cJSON_ArrayForEach(v, list) {
		if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < p->nchunks &&
		    v->valuedouble == (double)(uint32_t)v->valuedouble) {
			resend_add(p, (uint32_t)v->valuedouble);
			good++;
		} else
			bad++;
	}
	if (bad)
		gxp_log(LOG_WARN, "%s %s: NACK lists %zu ids that are not chunks 0-%u; "
		    "skipped them", d->id, name, bad, p->nchunks - 1);
	counters[C_NACKS].v++;
	p->nacks++;
	gxp_log(LOG_DEBUG, "%s %s: NACK for %zu chunks", d->id, name, good);
	ready_push(p);
}

static void
bad_message(const char *dev, const char *name, const char *why)
{
	counters[C_BAD].v++;
	gxp_log(LOG_WARN, "%s %s: ack-topic message %s; ignored", dev,
	    name ? name : "-", why);
}

void
on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *mm)
{
	char id[GXP_DEVICE_MAX + 1];
	struct device *d;
	const char *name;
	const cJSON *list;
	cJSON *j;

	(void)mosq, (void)arg;
	if (opt.wakes && gxp_topic_match("TOPIC_PATTERN_CMD", mm->topic, id) &&
	    (d = table_find(id)) != NULL) {
		wake_command(d, mm->payload ? mm->payload : "", mm->payloadlen);
		return;
	}
	if (gxp_topic_parse(mm->topic, id) != TOPIC_ACK || (d = table_find(id)) == NULL)
		return;		/* another fleet's */
	j = gxp_json_parse(mm->payload ? mm->payload : "", (size_t)mm->payloadlen);
	if (j == NULL) {
		bad_message(id, NULL, "is not JSON");
		return;
	}
	list = cJSON_GetObjectItemCaseSensitive(j, "missing_chunks");
	if ((name = gxp_json_str(j, "image_name")) == NULL)
		bad_message(id, NULL, "has no image_name");
	else if (cJSON_HasObjectItem(j, "ACK_OK"))
		on_ack(d, photo_find(d, name), name);
	else if (cJSON_IsArray(list))
		on_nack(d, photo_find(d, name), name, list);
	else
		bad_message(id, name, "has neither ACK_OK nor a missing_chunks list");
	cJSON_Delete(j);
}

void
on_publish(struct mosquitto *mosq, void *arg, int mid)
{
	(void)mosq, (void)arg, (void)mid;
	pending--;
	counters[C_PENDING].v = (unsigned long long)pending;
}

void
on_subscribe(struct mosquitto *mosq, void *arg, int mid, int n, const int *granted)
{
	(void)mosq, (void)arg, (void)mid;
	for (int i = 0; i < n; i++)
		if (granted[i] > 2) {
			gxp_log(LOG_ERROR, "the broker refused the subscription to %s",
			    gxp_cfg(i ? "TOPIC_PATTERN_CMD" : "TOPIC_PATTERN_ACK"));
			return;
		}
	subscribed = n > 0;
}

/* Nothing is sent before the ack topic (and with -W the cmd topic) is
 * subscribed, after every (re)connection: an answer must not slip past. */
void
on_connected(struct mosquitto *mosq, void *arg)
{
	char *topics[2] = { (char *)gxp_cfg("TOPIC_PATTERN_ACK"),
		(char *)gxp_cfg("TOPIC_PATTERN_CMD") };
	int rc;

	(void)arg;
	subscribed = 0;
	if (opt.qos == 0)
		pending = 0;	/* QoS 0 messages queued at the disconnection are gone */
	rc = mosquitto_subscribe_multiple(mosq, NULL, opt.wakes ? 2 : 1, topics, 1, 0, NULL);
	if (rc != MOSQ_ERR_SUCCESS)
		gxp_log(LOG_ERROR, "cannot subscribe: %s", mosquitto_strerror(rc));
}

