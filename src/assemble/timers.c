/* timers.c: the clock (monotonic when live, the messages' tst in replay)
 * and the timers on it: one heap entry per capture, checked lazily, which
 * sends NACK rounds for missing chunks, times a capture out, retries a
 * postponed finalization, and forgets a finished photo's marker. */
#include <stdlib.h>
#include <string.h>

#include "assemble.h"

/* ---- the clock: monotonic when live, the messages' tst in replay ---- */

static int64_t replay_us;
static int clock_valid;

int64_t
clock_ms(void)
{
	return cfg.replay ? replay_us / 1000 : gxp_mono_ms();
}

int64_t
wall_us(void)
{
	return cfg.replay ? replay_us : gxp_wall_us();
}

/* ---- timers: one heap entry per capture, checked lazily ---- */

static struct asm **heap;
static size_t nheap, heapcap;

static int
before(const struct asm *x, const struct asm *y)
{
	return x->due < y->due || (x->due == y->due && x->seq < y->seq);
}

static void
heap_set(size_t i, struct asm *a)
{
	heap[i] = a;
	a->heap = (int)i;
}

static void
sift_up(size_t i)
{
	struct asm *a = heap[i];

	while (i > 0 && before(a, heap[(i - 1) / 2])) {
		heap_set(i, heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(i, a);
}

static void
sift_down(size_t i)
{
	struct asm *a = heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= nheap)
			break;
		if (c + 1 < nheap && before(heap[c + 1], heap[c]))
			c++;
		if (!before(heap[c], a))
			break;
		heap_set(i, heap[c]);
		i = c;
	}
	heap_set(i, a);
}

void
heap_put(struct asm *a, int64_t due)
{
	a->due = due;
	if (a->heap >= 0) {
		sift_up((size_t)a->heap);
		sift_down((size_t)a->heap);
		return;
	}
	if (nheap == heapcap) {
		heapcap = heapcap ? heapcap * 2 : 1024;
		heap = xrealloc(heap, heapcap * sizeof *heap);
	}
	heap_set(nheap++, a);
	sift_up(nheap - 1);
}

void
heap_del(struct asm *a)
{
	size_t i = (size_t)a->heap;
	struct asm *last;

	if (a->heap < 0)
		return;
	a->heap = -1;
	last = heap[--nheap];
	if (i < nheap) {
		heap_set(i, last);
		sift_up(i);
		sift_down((size_t)last->heap);
	}
}

void
schedule(struct asm *a)
{
	int64_t due = a->started + cfg.timeout;

	if (a->has_meta && a->nacks < cfg.nack_max) {
		int64_t last = a->active > a->nacked ? a->active : a->nacked;

		if (last + cfg.delay < due)
			due = last + cfg.delay;
	}
	heap_put(a, due);
}

/* ---- timers: NACK rounds and the capture timeout ---- */

static uint32_t *nack_ids;
static size_t nack_cap;

static void
send_nack(struct asm *a, int64_t now)
{
	char dev[GXP_DEVICE_MAX + 1], msg[128];
	uint32_t *ids;
	size_t n = 0;

	if (nack_cap < a->total) {
		nack_cap = a->total;
		nack_ids = xrealloc(nack_ids, nack_cap * sizeof *nack_ids);
	}
	ids = nack_ids;
	for (uint32_t i = 0; i < a->total; i++)
		if (a->idx[i].len == 0)
			ids[n++] = i;
	asm_dev(a, dev);
	for (size_t off = 0; off < n; off += (size_t)cfg.nack_ids) {
		size_t k = n - off < (size_t)cfg.nack_ids ? n - off : (size_t)cfg.nack_ids;

		emit(gxp_nack_event(dev, asm_name(a), ids + off, k));
	}
	a->nacks++;
	a->nacked = now;
	counters[C_NACKS].v++;
	snprintf(msg, sizeof msg, "NACK %d of %lld: %zu of %u chunks missing", a->nacks,
	    cfg.nack_max, n, a->total);
	log_at(LOG_INFO, dev, asm_name(a), msg);
}

static void
expire(struct asm *a)
{
	char dev[GXP_DEVICE_MAX + 1];

	asm_dev(a, dev);
	if (a->has_meta)
		capture_failed(a, 2201, NULL, "timeout: %u of %u chunks missing after %lld ms",
		    a->total - a->received, a->total, cfg.timeout);
	else if (gxp_spool_finished(cfg.spool, dev, asm_name(a))) {
		counters[C_DUPS].v += a->received;
		log_at(LOG_INFO, dev, asm_name(a), "late chunks of a finished photo dropped");
	} else
		error_event(RC_ORPHANS, 2201, dev, asm_name(a), "no metadata within %lld ms; "
		    "%u chunks dropped", cfg.timeout, a->received);
	asm_drop(a);
}

static void
fire(struct asm *a, int64_t now)
{
	heap_del(a);
	if (a->state == A_DONE) {
		asm_free(a);
		return;
	}
	if (a->postponed) {
		finalize(a);
		return;
	}
	if (now >= a->started + cfg.timeout) {
		expire(a);
		return;
	}
	if (a->has_meta && a->nacks < cfg.nack_max && a->received < a->total &&
	    now >= (a->active > a->nacked ? a->active : a->nacked) + cfg.delay)
		send_nack(a, now);
	schedule(a);
}

void
fire_live(void)
{
	int64_t now = gxp_mono_ms();

	while (nheap > 0 && heap[0]->due <= now)
		fire(heap[0], now);
}

/* Replay: runs every timer due by to_us at its own time, then moves the
 * clock to to_us (never backwards). */
void
advance(int64_t to_us)
{
	const char *line = cur.line, *topic = cur.topic;
	long long lineno = cur.lineno;
	int64_t received = cur.received_us;
	uint64_t seq = cur.seq;

	cur.lineno = 0;
	cur.topic = NULL;
	cur.received_us = 0;
	cur.seq = 0;
	if (!clock_valid) {
		replay_us = to_us;
		clock_valid = 1;
		stamp_recovered();
	}
	while (nheap > 0 && heap[0]->due * 1000 <= to_us) {
		if (heap[0]->due * 1000 > replay_us)
			replay_us = heap[0]->due * 1000;
		fire(heap[0], replay_us / 1000);
	}
	if (to_us > replay_us)
		replay_us = to_us;
	cur.line = line;
	cur.topic = topic;
	cur.lineno = lineno;
	cur.received_us = received;
	cur.seq = seq;
}

/* --flush-at-eof: replay time runs on until every timer has fired. */
void
flush_timers(void)
{
	while (nheap > 0) {
		if (heap[0]->due * 1000 > replay_us)
			replay_us = heap[0]->due * 1000;
		fire(heap[0], replay_us / 1000);
	}
}

/* Live: how long to wait for input before the next timer, at most max. */
int
timer_wait_ms(int max)
{
	int64_t t;

	if (nheap == 0)
		return max;
	t = heap[0]->due - gxp_mono_ms();
	return t < 0 ? 0 : t < max ? (int)t : max;
}

void
timers_free(void)
{
	free(heap);
	heap = NULL;
	nheap = heapcap = 0;
	free(nack_ids);
	nack_ids = NULL;
	nack_cap = 0;
	replay_us = 0;
	clock_valid = 0;
}
