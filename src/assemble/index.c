/* index.c: the captures gxp-assemble holds in memory, each an index of
 * where its records are in partial/ with its times and counts, found by
 * entry name in a hash table; the devices, with what their captures hold;
 * a capture's life from its first record to its end, and what it is
 * charged for it (budget.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assemble.h"

#define NEVER (INT64_MIN / 4)
#define NONE UINT32_MAX
#define ALLOC_COST 16	/* what malloc keeps beside each block */

/* ---- hash tables of captures and devices, keyed by strings ---- */

struct htab {
	struct hent **b;
	size_t mask, n;
};

static struct hent *
ht_get(const struct htab *t, const char *k, size_t n, uint32_t h)
{
	if (t->b == NULL)
		return NULL;
	for (struct hent *e = t->b[h & t->mask]; e; e = e->next)
		if (e->hash == h && e->klen == n && memcmp(e->key, k, n) == 0)
			return e;
	return NULL;
}

static void
ht_put(struct htab *t, struct hent *e)
{
	size_t size = t->b ? t->mask + 1 : 0;

	if (t->n >= size / 4 * 3) {
		size_t nsize = size ? size * 2 : 1024;
		struct hent **nb = xcalloc(nsize, sizeof *nb);

		for (size_t i = 0; i < size; i++)
			while (t->b[i]) {
				struct hent *x = t->b[i];

				t->b[i] = x->next;
				x->next = nb[x->hash & (nsize - 1)];
				nb[x->hash & (nsize - 1)] = x;
			}
		free(t->b);
		t->b = nb;
		t->mask = nsize - 1;
	}
	e->next = t->b[e->hash & t->mask];
	t->b[e->hash & t->mask] = e;
	t->n++;
}

static void
ht_del(struct htab *t, struct hent *e)
{
	struct hent **pp = &t->b[e->hash & t->mask];

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	t->n--;
}

static void
hent_init(struct hent *e, const char *key)
{
	e->key = xstrdup(key);
	e->klen = (uint32_t)strlen(key);
	e->hash = gxp_hash(key);
}

/* ---- captures and devices in memory ---- */

static struct htab captures, devices;
static struct asm *lists[3][2];		/* the orphans and the markers: first, last */
static uint64_t seqno;

void
asm_dev(const struct asm *a, char dev[GXP_DEVICE_MAX + 1])
{
	memcpy(dev, a->h.key, a->devlen);
	dev[a->devlen] = '\0';
}

const char *
asm_name(const struct asm *a)
{
	return a->h.key + a->devlen + 1;
}

struct device *
device_get(const char *dev, int create)
{
	size_t n = strlen(dev);
	uint32_t h = gxp_hash(dev);
	struct device *d = (struct device *)ht_get(&devices, dev, n, h);

	if (d == NULL && create) {
		d = xcalloc(1, sizeof *d);
		hent_init(&d->h, dev);
		for (int r = 0; r < B_COUNT; r++)
			d->heap[r] = -1;
		ht_put(&devices, &d->h);
	}
	return d;
}

static void
device_release(struct device *d)
{
	for (int r = 0; r < B_COUNT; r++)
		if (d->use[r] != 0)
			return;
	if (d->first || d->orphan_chunks || d->held)
		return;
	budget_remove(d);
	ht_del(&devices, &d->h);
	free(d->h.key);
	free(d);
}

struct asm *
asm_find(const char *key)
{
	size_t n = strlen(key);

	return (struct asm *)ht_get(&captures, key, n, gxp_hash(key));
}

/* What a capture costs in memory with ncap chunks indexed and norph
 * chunks that came before its metadata. */
long long
asm_memory(const struct asm *a, uint32_t ncap, uint32_t norph)
{
	long long m = (long long)sizeof *a + a->h.klen + 1 + 2 * ALLOC_COST + 2 * sizeof(void *);

	if (a->capture_name)
		m += (long long)strlen(a->capture_name) + 1 + ALLOC_COST;
	if (ncap)
		m += (long long)ncap * (long long)sizeof(struct span) + ALLOC_COST;
	if (norph)
		m += (long long)norph * (long long)sizeof(struct orphan) + ALLOC_COST;
	return m;
}

/* Charges a (and its device, and the budget) amount more of r. */
void
asm_charge(struct asm *a, int r, long long amount)
{
	if (amount == 0)
		return;
	a->use[r] += amount;
	a->dev->use[r] += amount;
	budget_update(a->dev, r, amount);
	counters[C_INFLIGHT].v = (unsigned long long)budget_used(B_CAPTURES);
	counters[C_MEMORY].v = (unsigned long long)budget_used(B_MEMORY);
	counters[C_PARTIAL].v = (unsigned long long)budget_used(B_DISK);
}

/* ---- the lists: a device's captures; the orphans; the markers ---- */

static void
dev_link(struct asm *a)
{
	struct device *d = a->dev;

	a->dprev = d->last;
	a->dnext = NULL;
	if (d->last)
		d->last->dnext = a;
	else
		d->first = a;
	d->last = a;
}

static void
dev_unlink(struct asm *a)
{
	struct device *d = a->dev;

	if (a->dprev)
		a->dprev->dnext = a->dnext;
	else if (d->first == a)
		d->first = a->dnext;
	else
		return;		/* not linked */
	if (a->dnext)
		a->dnext->dprev = a->dprev;
	else
		d->last = a->dprev;
	a->dprev = a->dnext = NULL;
}

/* Moves a to the end of list (L_ORPHANS, L_MARKERS), or off them (L_NONE). */
void
list_move(struct asm *a, int list)
{
	struct asm **l;

	if (a->list != L_NONE) {
		l = lists[a->list];
		if (a->lprev)
			a->lprev->lnext = a->lnext;
		else
			l[0] = a->lnext;
		if (a->lnext)
			a->lnext->lprev = a->lprev;
		else
			l[1] = a->lprev;
		a->lprev = a->lnext = NULL;
	}
	a->list = list;
	if (list == L_NONE)
		return;
	l = lists[list];
	a->lprev = l[1];
	if (l[1])
		l[1]->lnext = a;
	else
		l[0] = a;
	l[1] = a;
}

struct asm *
oldest(int list)
{
	return lists[list][0];
}

/* ---- capture lifetime ---- */

struct asm *
asm_alloc(const char *dev, const char *name, int state)
{
	struct asm *a = xcalloc(1, sizeof *a);
	char key[GXP_ENTRY_MAX + 1];

	gxp_spool_entry(key, sizeof key, dev, name);
	hent_init(&a->h, key);
	a->dev = device_get(dev, 1);
	a->devlen = (uint8_t)strlen(dev);
	a->seq = ++seqno;
	a->heap = -1;
	a->minseg = NONE;
	a->nacked = NEVER;
	a->state = (uint8_t)state;
	ht_put(&captures, &a->h);
	return a;
}

/* What a capture or a marker of dev@name costs before any chunk. */
static long long
key_memory(const char *dev, const char *name)
{
	struct asm probe = { 0 };

	probe.h.klen = (uint32_t)(strlen(dev) + 1 + strlen(name));
	return asm_memory(&probe, 0, 0);
}

/* A capture in flight, started at started_us (wall clock), when the
 * budgets let it in: NULL, with refusal and refusal_cause, when they do not. */
struct asm *
asm_new(const char *dev, const char *name, int meta, int64_t started_us)
{
	struct device *d = device_get(dev, 1);
	long long mem = key_memory(dev, name);
	struct asm *a;
	/* making room may end d's last capture: d stays */
	d->held++;
	if (budget_admit(d, NULL, B_CAPTURES, 1, meta) == -1 ||
	    budget_admit(d, NULL, B_MEMORY, mem, meta) == -1) {
		d->held--;
		device_release(d);
		return NULL;
	}
	d->held--;
	a = asm_alloc(dev, name, A_OPEN);
	asm_charge(a, B_CAPTURES, 1);
	asm_charge(a, B_MEMORY, asm_memory(a, 0, 0));
	dev_link(a);
	if (!meta)
		list_move(a, L_ORPHANS);
	a->started = a->active = clock_ms();
	a->started_us = started_us ? started_us : wall_us();
	return a;
}

void
asm_free(struct asm *a)
{
	struct device *d = a->dev;

	heap_del(a);
	seg_release(a);
	for (int r = 0; r < B_COUNT; r++)
		asm_charge(a, r, -a->use[r]);
	if (!a->has_meta)
		d->orphan_chunks -= a->norph;
	list_move(a, L_NONE);
	dev_unlink(a);
	ht_del(&captures, &a->h);
	free(a->idx);
	free(a->orph);
	free(a->capture_name);
	free(a->h.key);
	free(a);
	device_release(d);
}

/* The end of a capture's records, so that a restart does not take them up
 * again; a capture that wrote none needs none. */
void
asm_end(struct asm *a)
{
	if (a->minseg != NONE && seg_append(a, REC_END, 0, NULL, 0, NULL) == -1)
		gxp_log(LOG_WARN, "partial/: cannot end %s: %s; a restart takes it up again",
		    a->h.key, strerror(errno));
	seg_release(a);
}

/* Forgets a capture, and its records in partial/. */
void
asm_drop(struct asm *a)
{
	asm_end(a);
	asm_free(a);
}

/* A capture whose photo is in ready/ or failed/: its records ended, its
 * index freed, itself a marker (below) until CAPTURE_TIMEOUT_MS. */
void
asm_done(struct asm *a)
{
	asm_end(a);
	asm_charge(a, B_CAPTURES, -a->use[B_CAPTURES]);
	asm_charge(a, B_DISK, -a->use[B_DISK]);
	free(a->idx);
	free(a->orph);
	a->idx = NULL;
	a->orph = NULL;
	a->ncap = a->norph = 0;
	dev_unlink(a);
	a->state = A_DONE;
	asm_charge(a, B_MEMORY, asm_memory(a, 0, 0) - a->use[B_MEMORY]);
	list_move(a, L_MARKERS);
	heap_put(a, clock_ms() + cfg.timeout);
}

/* A marker in memory for a photo that is complete: the chunks a device
 * sends again for it are ignored for CAPTURE_TIMEOUT_MS.  Markers are the
 * first thing forgotten when memory runs short. */
struct asm *
mark_done(const char *dev, const char *name)
{
	struct device *d = device_get(dev, 1);
	long long mem = key_memory(dev, name);
	struct asm *a;
	d->held++;
	if (budget_admit(d, NULL, B_MEMORY, mem, 0) == -1) {
		d->held--;
		device_release(d);
		return NULL;
	}
	d->held--;
	a = asm_alloc(dev, name, A_DONE);
	asm_charge(a, B_MEMORY, asm_memory(a, 0, 0));
	list_move(a, L_MARKERS);
	heap_put(a, clock_ms() + cfg.timeout);
	return a;
}

/* The index by chunk_id, once the metadata gives the count: the chunks
 * that came before it move in (those beyond it go).  -1 (refusal set) when
 * the memory budget does not allow it. */
int
idx_set(struct asm *a, uint32_t total)
{
	struct span *idx;
	long long more = asm_memory(a, total, 0) - a->use[B_MEMORY];

	if (a->idx && a->ncap == total)
		return 0;
	if (more > 0 && budget_admit(a->dev, a, B_MEMORY, more, 1) == -1)
		return -1;
	idx = xcalloc(total, sizeof *idx);
	for (uint32_t i = 0; a->idx && i < a->ncap && i < total; i++)
		idx[i] = a->idx[i];
	for (uint32_t i = 0; i < a->norph; i++)
		if (a->orph[i].id < total && idx[a->orph[i].id].len == 0)
			idx[a->orph[i].id] = a->orph[i].at;
	if (!a->has_meta)
		a->dev->orphan_chunks -= a->norph;
	free(a->idx);
	free(a->orph);
	a->orph = NULL;
	a->norph = 0;
	a->idx = idx;
	a->ncap = total;
	asm_charge(a, B_MEMORY, asm_memory(a, total, 0) - a->use[B_MEMORY]);
	return 0;
}

/* Where chunk id of a is, or NULL if it has not come. */
struct span *
chunk_at(struct asm *a, uint32_t id)
{
	if (a->idx)
		return id < a->ncap && a->idx[id].len ? &a->idx[id] : NULL;
	for (uint32_t i = 0; i < a->norph; i++)
		if (a->orph[i].id == id)
			return &a->orph[i].at;
	return NULL;
}

/* Every capture (in no useful order); fn must not free any. */
void
asm_each(void (*fn)(struct asm *, void *), void *arg)
{
	for (size_t i = 0; captures.b && i <= captures.mask; i++)
		for (struct hent *e = captures.b[i]; e; e = e->next)
			fn((struct asm *)e, arg);
}

/* Frees every capture and puts the tables back as they were at start. */
void
captures_free(void)
{
	while (captures.n > 0)
		for (size_t i = 0; i <= captures.mask; i++)
			while (captures.b[i])
				asm_free((struct asm *)captures.b[i]);
	free(captures.b);
	free(devices.b);
	captures = devices = (struct htab){ 0 };
	memset(lists, 0, sizeof lists);
	seqno = 0;
}
