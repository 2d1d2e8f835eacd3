/* budget.c: what gxp-assemble holds is shared out under three budgets:
 * captures in flight (MAX_ASSEMBLIES), the memory their indexes take
 * (ASSEMBLE_MEMORY_BYTES), and the bytes of their records in partial/
 * (what SPOOL_MAX_BYTES leaves after ready/, work/ and failed/).  Captures
 * and bytes have a limit per device too (MAX_ASSEMBLIES_PER_DEVICE,
 * ASSEMBLE_DEVICE_BYTES), and captures without metadata a tiny allowance
 * (ASSEMBLE_ORPHAN_CHUNKS, checked by chunk.c).
 *
 * When a budget is full, room is made for what asks: finished photos'
 * markers are forgotten first (memory), then captures without metadata
 * are dropped, oldest first.  Past that, only work with metadata gets in,
 * and only for a sender that would then hold no more than the sender
 * holding the most, whose oldest capture goes (max-min fairness).  So one
 * sender, or many made-up ones, can fill a budget but never keep the
 * others out.  A heap per budget finds the sender holding the most. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assemble.h"

struct bheap {
	struct device **v;
	size_t n, cap;
};

static struct bheap heaps[B_COUNT];
static long long used[B_COUNT];
long long spool_ready_bytes;
int budget_replaying;

static const char *const what[B_COUNT] = {
	"captures in flight (MAX_ASSEMBLIES)",
	"bytes of memory for captures (ASSEMBLE_MEMORY_BYTES)",
	"bytes in partial/ (SPOOL_MAX_BYTES)",
};

/* ---- the heap of senders by what they hold, one per budget ---- */

static int
heavier(const struct device *x, const struct device *y, int r)
{
	return x->use[r] > y->use[r];
}

static void
hset(struct bheap *h, size_t i, struct device *d, int r)
{
	h->v[i] = d;
	d->heap[r] = (int)i;
}

static void
hup(int r, size_t i)
{
	struct bheap *h = &heaps[r];
	struct device *d = h->v[i];

	while (i > 0 && heavier(d, h->v[(i - 1) / 2], r)) {
		hset(h, i, h->v[(i - 1) / 2], r);
		i = (i - 1) / 2;
	}
	hset(h, i, d, r);
}

static void
hdown(int r, size_t i)
{
	struct bheap *h = &heaps[r];
	struct device *d = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && heavier(h->v[c + 1], h->v[c], r))
			c++;
		if (!heavier(h->v[c], d, r))
			break;
		hset(h, i, h->v[c], r);
		i = c;
	}
	hset(h, i, d, r);
}

static void
hdel(int r, struct device *d)
{
	struct bheap *h = &heaps[r];
	size_t i = (size_t)d->heap[r];
	struct device *last = h->v[--h->n];

	d->heap[r] = -1;
	if (i < h->n) {
		hset(h, i, last, r);
		hup(r, i);
		hdown(r, (size_t)last->heap[r]);
	}
}

/* d holds delta more of r: the total and its place in the heap follow. */
void
budget_update(struct device *d, int r, long long delta)
{
	struct bheap *h = &heaps[r];

	used[r] += delta;
	if (d->use[r] > 0 && d->heap[r] < 0) {
		if (h->n == h->cap) {
			h->cap = h->cap ? h->cap * 2 : 256;
			h->v = xrealloc(h->v, h->cap * sizeof *h->v);
		}
		hset(h, h->n++, d, r);
		hup(r, h->n - 1);
	} else if (d->use[r] <= 0 && d->heap[r] >= 0)
		hdel(r, d);
	else if (d->heap[r] >= 0) {
		hup(r, (size_t)d->heap[r]);
		hdown(r, (size_t)d->heap[r]);
	}
}

void
budget_remove(struct device *d)
{
	for (int r = 0; r < B_COUNT; r++)
		if (d->heap[r] >= 0)
			hdel(r, d);
}

/* ---- the limits ---- */

long long
budget_used(int r)
{
	return used[r];
}

/* The disk of partial/: four fifths of what SPOOL_MAX_BYTES leaves after
 * the finished photos, less room for three segments; the rest is where
 * segments are reclaimed (segment.c keeps their dead bytes under a quarter
 * of the live ones, and two segments), so that the spool stays under
 * SPOOL_MAX_BYTES. */
long long
budget_limit(int r)
{
	long long room;

	switch (r) {
	case B_CAPTURES:
		return cfg.max_asm;
	case B_MEMORY:
		return cfg.memory;
	}
	room = (cfg.spool_max - spool_ready_bytes) / 5 * 4 - 3 * (long long)seg_size();
	return room > 0 ? room : 0;
}

static long long
device_limit(int r)
{
	return r == B_CAPTURES ? cfg.max_asm_dev : r == B_DISK ? cfg.dev_bytes : LLONG_MAX;
}

/* ---- making room ---- */

static int
evictable(const struct asm *a, const struct asm *self)
{
	return a != self && a->state == A_OPEN;
}

static struct asm *
oldest_in(int list, const struct asm *self)
{
	struct asm *a = oldest(list);

	while (a && !evictable(a, self))
		a = a->lnext;
	return a;
}

/* What goes to make room for amount more of r for d: a marker, a capture
 * without metadata, or, when d would then hold no more than the sender
 * holding the most, that sender's oldest capture.  So the senders holding
 * the least get in and the one holding the most gives way: no sender, nor
 * any number of made-up ones, can keep the others out. */
static struct asm *
victim(struct device *d, const struct asm *self, int r, long long amount, int meta)
{
	struct bheap *h = &heaps[r];
	struct device *top;
	struct asm *a;

	if (budget_replaying)
		return NULL;	/* what holds room may end further on */
	if (r == B_MEMORY && (a = oldest(L_MARKERS)) != NULL)
		return a;
	if ((a = oldest_in(L_ORPHANS, self)) != NULL)
		return a;
	if (!meta || h->n == 0)
		return NULL;
	top = h->v[0];
	if (top == d || d->use[r] + amount > top->use[r])
		return NULL;
	for (a = top->first; a && !evictable(a, self); a = a->dnext)
		;
	return a;
}

static void
evict(struct asm *a, int r)
{
	char dev[GXP_DEVICE_MAX + 1];

	if (a->state == A_DONE) {
		asm_free(a);
		return;
	}
	asm_dev(a, dev);
	if (a->has_meta) {
		counters[C_REFUSED + RC_EVICTED].v++;
		capture_failed(a, 2200, NULL, "evicted: the %s are full and this sender "
		    "holds the most", what[r]);
	} else
		error_event(RC_EVICTED, 2200, dev, asm_name(a), "dropped %u chunks that "
		    "came without metadata: the %s are full", a->norph, what[r]);
	asm_drop(a);
}

static int
refuse(int cause)
{
	refusal_cause = cause;
	return -1;
}

/* Whether d may have amount more of r: 0, making room if need be, or -1
 * with refusal and refusal_cause.  self (which may be NULL) is never
 * dropped; meta: what asks is a capture with metadata. */
int
budget_admit(struct device *d, struct asm *self, int r, long long amount, int meta)
{
	struct asm *a;

	if (d->use[r] + amount > device_limit(r)) {
		snprintf(refusal, sizeof refusal, r == B_CAPTURES ? "refused: %lld captures "
		    "in flight for this device (MAX_ASSEMBLIES_PER_DEVICE)" : "refused: this "
		    "device has %lld bytes in partial/ (ASSEMBLE_DEVICE_BYTES)", d->use[r]);
		return refuse(r == B_CAPTURES ? RC_DEVICE_CAPTURES : RC_DEVICE_BYTES);
	}
	if (r == B_DISK && used[r] + amount > budget_limit(r))
		ready_bytes_scan(0);
	while (used[r] + amount > budget_limit(r)) {
		if ((a = victim(d, self, r, amount, meta)) == NULL)
			break;
		evict(a, r);
	}
	if (used[r] + amount <= budget_limit(r))
		return 0;
	switch (r) {
	case B_CAPTURES:
		snprintf(refusal, sizeof refusal, "refused: %lld captures in flight "
		    "(MAX_ASSEMBLIES)", used[r]);
		return refuse(RC_CAPTURES);
	case B_MEMORY:
		snprintf(refusal, sizeof refusal, "refused: captures hold %lld bytes of "
		    "memory (ASSEMBLE_MEMORY_BYTES)", used[r]);
		return refuse(RC_MEMORY);
	}
	snprintf(refusal, sizeof refusal, "refused: the spool is full: %lld bytes in "
	    "partial/ beside %lld in ready/, work/ and failed/ (SPOOL_MAX_BYTES)", used[r],
	    spool_ready_bytes);
	return refuse(RC_SPOOL_FULL);
}

void
budget_free(void)
{
	for (int r = 0; r < B_COUNT; r++) {
		free(heaps[r].v);
		heaps[r] = (struct bheap){ 0 };
		used[r] = 0;
	}
	spool_ready_bytes = 0;
}
