/* out.c: without a journal, each message becomes a line in a bounded
 * memory buffer that a writer thread copies out; when it is full new
 * messages are dropped and counted.  The writer is woken when no more
 * messages wait in the socket (or much is pending). */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "sub/sub.h"

void
buffer_line(const struct gxp_buf *b)
{
	pthread_mutex_lock(&q.mu);
	if (q.buf.len + q.writing + b->len > q.max) {
		pthread_mutex_unlock(&q.mu);
		if (counters[C_DROPPED].v++ == 0)
			gxp_log(LOG_WARN, "output buffer full (%zu bytes, SUB_BUFFER_BYTES): "
			    "dropping messages until the reader catches up", q.max);
		return;
	}
	gxp_buf_add(&q.buf, b->p, b->len);
	counters[C_BUFFERED].v = q.buf.len + q.writing;
	if (q.waiting && q.buf.len >= WAKE_BYTES)
		pthread_cond_signal(&q.cv);
	pthread_mutex_unlock(&q.mu);
}

/* After a turn of the network loop: the writer gets what is buffered,
 * unless more messages are in the socket already. */
void
kick(struct gxp_mqtt *m)
{
	struct pollfd p = { mosquitto_socket(gxp_mqtt_handle(m)), POLLIN, 0 };
	int idle;

	pthread_mutex_lock(&q.mu);
	idle = q.waiting && (q.buf.len > 0 || q.appended > q.sent);
	pthread_mutex_unlock(&q.mu);
	if (!idle || (p.fd >= 0 && poll(&p, 1, 0) > 0 && !(p.revents & (POLLERR | POLLHUP))))
		return;
	pthread_mutex_lock(&q.mu);
	pthread_cond_signal(&q.cv);
	pthread_mutex_unlock(&q.mu);
}

/* Without a journal: writes everything buffered, one write(2) for all
 * (the buffers swap, so the network loop goes on filling the other);
 * stops at a write error (the reader went away) or when told the input is
 * done and all is out. */
void *
writer_buffer(void *arg)
{
	struct gxp_buf b = { 0 }, t;

	(void)arg;
	for (;;) {
		pthread_mutex_lock(&q.mu);
		while (q.buf.len == 0 && !q.done) {
			q.waiting = 1;
			pthread_cond_wait(&q.cv, &q.mu);
			q.waiting = 0;
		}
		t = q.buf;
		q.buf = b;
		b = t;
		q.writing = b.len;
		pthread_mutex_unlock(&q.mu);
		if (b.len == 0)
			break;
		if (!gxp_out_closed && gxp_write_all(1, b.p, b.len) == -1)
			gxp_out_closed = 1;
		b.len = 0;
		if (b.cap > KEEP_BYTES)	/* a backlog's memory goes back */
			gxp_buf_free(&b);
		pthread_mutex_lock(&q.mu);
		q.writing = 0;
		counters[C_BUFFERED].v = q.buf.len;
		pthread_mutex_unlock(&q.mu);
	}
	gxp_buf_free(&b);
	return NULL;
}
