/* send.c: what the devices send: a round-robin queue of the photos with
 * something to send, one message each in turn, within the rate (a token
 * bucket) and the window of messages the broker has not acknowledged; and
 * the photos' timers: deadlines and device retries. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "sim.h"

static struct photo *ready_head, *ready_tail;
static struct gxp_buf msg;
static double tokens;
static int64_t refilled_us;

void
send_start(int64_t now)
{
	refilled_us = now;
	tokens = 1;
}

void
send_free(void)
{
	gxp_buf_free(&msg);
}

static int
has_work(const struct photo *p)
{
	return p->state == P_ACTIVE && (p->dev->status_pending || p->meta_pending ||
	    p->resend_head < p->resend_len ||
	    p->cursor < (p->full ? p->nchunks : p->plan_len));
}

void
ready_push(struct photo *p)
{
	if (p->queued)
		return;
	p->queued = 1;
	p->next_ready = NULL;
	if (ready_tail)
		ready_tail->next_ready = p;
	else
		ready_head = p;
	ready_tail = p;
}

static struct photo *
ready_pop(void)
{
	while (ready_head) {
		struct photo *p = ready_head;

		if ((ready_head = p->next_ready) == NULL)
			ready_tail = NULL;
		p->queued = 0;
		if (has_work(p))
			return p;
	}
	return NULL;
}

int
publish(const char *topic)
{
	int rc = mosquitto_publish(gxp_mqtt_handle(m), NULL, topic, (int)msg.len,
	    msg.p, opt.qos, false);

	/* a QoS>0 message queued while the link is down goes out on reconnect */
	if (rc != MOSQ_ERR_SUCCESS && !(rc == MOSQ_ERR_NO_CONN && opt.qos > 0)) {
		gxp_log(LOG_ERROR, "cannot publish to %s: %s", topic, mosquitto_strerror(rc));
		return -1;
	}
	pending++;
	counters[C_PENDING].v = (unsigned long long)pending;
	counters[C_MESSAGES].v++;
	return 0;
}

/* The hello: "Alive" and the photos not acknowledged yet. */
void
send_status(struct device *d)
{
	unsigned n = 0;

	msg.len = 0;
	gxp_buf_addf(&msg, "{\"device_id\":\"%s\",\"status\":\"Alive\",", d->id);
	if (opt.newfw)
		gxp_buf_adds(&msg, "\"pending_list\":[");
	for (unsigned k = 0; k < d->nphotos; k++)
		if (d->photos[k]->state != P_ACKED && opt.newfw)
			gxp_buf_addf(&msg, "%s\"%s\"", n++ ? "," : "", d->photos[k]->name);
		else if (d->photos[k]->state != P_ACKED)
			n++;
	if (opt.newfw)
		gxp_buf_adds(&msg, "]}");
	else
		gxp_buf_addf(&msg, "\"pendingImg\":%u}", n);
	publish(d->status_topic);
}

/* The firmware's metadata; note its spelling max_chunks_size. */
static void
send_meta(struct photo *p)
{
	const struct device *d = p->dev;

	msg.len = 0;
	gxp_buf_addf(&msg, "{\"device_id\":\"%s\",", d->id);
	if (opt.newfw)
		gxp_buf_addf(&msg, "\"image_id\":%u,\"image_name\":\"%s\",\"timestamp\":\"%s\",",
		    p->k + 1, p->name, p->captured);
	else
		gxp_buf_addf(&msg, "\"capture_timeStamp\":\"%s\",\"image_name\":\"%s\",",
		    p->captured, p->name);
	gxp_buf_addf(&msg, "\"image_size\":%zu,\"max_chunks_size\":%u,"
	    "\"total_chunk_count\":%u,\"location\":\"lab_%03u\",\"error\":0,",
	    p->size, opt.chunk, p->nchunks, d->idx % 1000);
	gxp_buf_addf(&msg, "%s\"temperature\":%.1f,\"humidity\":%.1f,\"pressure\":%.2f,"
	    "\"gas_resistance\":%.2f%s", opt.newfw ? "\"sensor_data\":{" : "",
	    p->temp, p->hum, p->pres, p->gas, opt.newfw ? "}}" : "}");
	if (publish(d->data_topic) == 0 && !p->meta_sent++)
		counters[C_PHOTOS_SENT].v++;
}

static void
send_chunk(struct photo *p, uint32_t id, int kind)
{
	static const int counter[] = { C_FIRST, C_NACK_CHUNKS, C_RETRY_CHUNKS };
	size_t off = (size_t)id * opt.chunk;
	size_t n = p->size - off < opt.chunk ? p->size - off : opt.chunk;

	msg.len = 0;
	gxp_buf_addf(&msg, "{\"device_id\":\"%s\",\"image_name\":\"%s\",\"chunk_id\":%u,"
	    "\"max_chunk_size\":%u,\"payload\":\"", p->dev->id, p->name, id, opt.chunk);
	gxp_buf_grow(&msg, gxp_b64_encoded_len(n) + 2);
	msg.len += gxp_b64_encode(p->data + off, n, msg.p + msg.len);
	gxp_buf_add(&msg, "\"}", 2);
	if (publish(p->dev->data_topic) == 0) {
		counters[C_CHUNKS].v++;
		counters[counter[kind]].v++;
		p->last_chunk_us = gxp_mono_us();
	}
}

/* One message of a photo: its device's status first, then the metadata,
 * then chunks a NACK asked for, then the rest of the pass. */
static void
send_one(struct photo *p)
{
	if (p->dev->status_pending) {
		p->dev->status_pending = 0;
		send_status(p->dev);
	} else if (p->meta_pending) {
		p->meta_pending = 0;
		send_meta(p);
	} else if (p->resend_head < p->resend_len) {
		send_chunk(p, p->resend[p->resend_head++], K_NACK);
		if (p->resend_head == p->resend_len)
			p->resend_head = p->resend_len = 0;
	} else if (p->full)
		send_chunk(p, p->cursor++, K_RETRY);
	else
		send_chunk(p, p->plan[p->cursor++], K_FIRST);
	p->last_tx_us = gxp_mono_us();
}

static int
token_wait_ms(void)
{
	int ms = (int)((1 - tokens) * 1000 / opt.rate) + 1;

	return ms < TICK_MS ? ms : TICK_MS;
}

/* Sends what the rate, the broker window and the batch allow; returns how
 * long the network loop may wait for input, in milliseconds. */
int
send_some(void)
{
	int64_t now = gxp_mono_us();
	struct photo *p;

	if (!started || !subscribed || !gxp_mqtt_connected(m))
		return TICK_MS;
	if (opt.rate > 0) {
		double cap = opt.rate * TICK_MS / 1000 > 1 ? opt.rate * TICK_MS / 1000 : 1;

		tokens += (double)(now - refilled_us) * opt.rate / 1e6;
		if (tokens > cap)
			tokens = cap;
		refilled_us = now;
	}
	for (int sent = 0; sent < BATCH; sent++) {
		if (pending >= max_pending)
			return TICK_MS;
		if (opt.rate > 0 && tokens < 1)
			return token_wait_ms();
		tokens -= 1;
		/* a device waiting for its order first: it is not sending */
		if (opt.wakes && wake_send_hello())
			continue;
		if ((p = ready_pop()) == NULL) {
			tokens += 1;
			return TICK_MS;
		}
		send_one(p);
		if (has_work(p))
			ready_push(p);
	}
	return 0;
}

/* As a device with the photo still on flash does: everything once more. */
static void
device_retry(struct photo *p)
{
	gxp_log(LOG_DEBUG, "%s %s: no ACK_OK within %lld ms: sending the photo again",
	    p->dev->id, p->name, opt.retry_ms);
	counters[C_RETRIES].v++;
	p->retries++;
	p->full = 1;
	p->cursor = 0;
	p->meta_pending = 1;
	p->resend_head = p->resend_len = 0;
	ready_push(p);
}

void
check_timers(int64_t now)
{
	for (size_t i = 0; i < nactive; ) {
		struct photo *p = active[i];

		if (now >= p->deadline_us) {
			gxp_log(LOG_WARN, "%s %s: no ACK_OK within the deadline (%lld ms); "
			    "%u NACKs answered, %u device retries", p->dev->id, p->name,
			    opt.deadline_ms, p->nacks, p->retries);
			counters[C_FAILED].v++;
			photo_done(p, P_FAILED);
			continue;	/* another photo took slot i */
		}
		if (opt.retry_ms && !has_work(p) && now - p->last_tx_us >= opt.retry_ms * 1000)
			device_retry(p);
		i++;
	}
}

