/* index.c: the captures gxp-assemble holds in memory, each an index into
 * its chunk log in partial/ with its times and counts, found by entry name
 * in a hash table; the devices with their count of captures in flight; a
 * capture's life from its partial/ entry made to its removal. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assemble.h"

#define NEVER (INT64_MIN / 4)

/* ---- hash tables of captures and devices, keyed by strings ---- */

struct htab {
	struct hent **b;
	size_t mask, n;
};

static uint32_t
hash_bytes(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--) {
		h ^= (unsigned char)*s++;
		h *= 16777619u;
	}
	return h;
}

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
	e->hash = hash_bytes(key, e->klen);
}

/* ---- captures and devices in memory ---- */

struct device {
	struct hent h;
	long long n;		/* captures in flight */
};

static struct htab captures, devices;
static long long inflight;
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

static struct device *
device_get(const char *dev, int create)
{
	size_t n = strlen(dev);
	uint32_t h = hash_bytes(dev, n);
	struct device *d = (struct device *)ht_get(&devices, dev, n, h);

	if (d == NULL && create) {
		d = xcalloc(1, sizeof *d);
		hent_init(&d->h, dev);
		ht_put(&devices, &d->h);
	}
	return d;
}

void
inflight_add(struct asm *a, int delta)
{
	char dev[GXP_DEVICE_MAX + 1];
	struct device *d;

	asm_dev(a, dev);
	d = device_get(dev, 1);
	d->n += delta;
	inflight += delta;
	counters[C_INFLIGHT].v = (unsigned long long)inflight;
	if (d->n == 0) {
		ht_del(&devices, &d->h);
		free(d->h.key);
		free(d);
	}
}

struct asm *
asm_find(const char *key)
{
	size_t n = strlen(key);

	return (struct asm *)ht_get(&captures, key, n, hash_bytes(key, n));
}

/* ---- capture lifetime ---- */

struct asm *
asm_alloc(const char *dev, const char *name, int state)
{
	struct asm *a = xcalloc(1, sizeof *a);
	char key[GXP_ENTRY_MAX + 1];

	gxp_spool_entry(key, sizeof key, dev, name);
	hent_init(&a->h, key);
	a->devlen = (uint8_t)strlen(dev);
	a->seq = ++seqno;
	a->heap = a->slot = -1;
	a->nacked = NEVER;
	a->state = (uint8_t)state;
	ht_put(&captures, &a->h);
	if (state != A_DONE)
		inflight_add(a, 1);
	return a;
}

void
asm_free(struct asm *a)
{
	heap_del(a);
	log_close(a);
	if (a->state != A_DONE)
		inflight_add(a, -1);
	ht_del(&captures, &a->h);
	free(a->idx);
	free(a->capture_name);
	free(a->h.key);
	free(a);
}

/* A capture in flight, refused when a limit is reached. */
struct asm *
asm_new(const char *dev, const char *name, const char **why)
{
	static char buf[160];
	struct device *d = device_get(dev, 0);
	struct asm *a;

	if (inflight >= cfg.max_asm) {
		snprintf(buf, sizeof buf, "refused: %lld captures in flight (MAX_ASSEMBLIES)",
		    inflight);
		*why = buf;
		return NULL;
	}
	if (d && d->n >= cfg.max_asm_dev) {
		snprintf(buf, sizeof buf, "refused: %lld captures in flight for this device "
		    "(MAX_ASSEMBLIES_PER_DEVICE)", d->n);
		*why = buf;
		return NULL;
	}
	a = asm_alloc(dev, name, A_OPEN);
	if (mkdirat(partial_fd, a->h.key, 0755) == -1 && (errno != EEXIST ||
	    gxp_rmtree_at(partial_fd, a->h.key) == -1 ||
	    mkdirat(partial_fd, a->h.key, 0755) == -1)) {
		snprintf(buf, sizeof buf, "spool: partial/%s: %s", a->h.key, strerror(errno));
		*why = buf;
		asm_free(a);
		return NULL;
	}
	a->started = a->active = clock_ms();
	a->started_us = wall_us();
	return a;
}

/* Removes partial/<entry>: what it normally holds, then anything else. */
void
partial_remove(struct asm *a)
{
	char path[GXP_ENTRY_MAX + 32];

	log_close(a);
	snprintf(path, sizeof path, "%s/chunks", a->h.key);
	unlinkat(partial_fd, path, 0);
	snprintf(path, sizeof path, "%s/meta.json", a->h.key);
	unlinkat(partial_fd, path, 0);
	if (unlinkat(partial_fd, a->h.key, AT_REMOVEDIR) == -1 && errno != ENOENT &&
	    gxp_rmtree_at(partial_fd, a->h.key) == -1)
		gxp_log(LOG_WARN, "cannot remove %s/partial/%s: %s", cfg.spool, a->h.key,
		    strerror(errno));
}

/* Forgets a capture and removes its partial/ entry. */
void
asm_drop(struct asm *a)
{
	partial_remove(a);
	asm_free(a);
}

/* A marker in memory for a photo that is complete: the chunks a device
 * sends again for it are ignored for CAPTURE_TIMEOUT_MS. */
void
mark_done(const char *dev, const char *name)
{
	heap_put(asm_alloc(dev, name, A_DONE), clock_ms() + cfg.timeout);
}

void
idx_grow(struct asm *a, uint32_t n)
{
	uint32_t cap = a->ncap ? a->ncap : 16;

	if (n <= a->ncap)
		return;
	while (cap < n)
		cap = cap * 2 > (uint32_t)cfg.max_chunks ? (uint32_t)cfg.max_chunks : cap * 2;
	a->idx = xrealloc(a->idx, cap * sizeof *a->idx);
	memset(a->idx + a->ncap, 0, (cap - a->ncap) * sizeof *a->idx);
	a->ncap = cap;
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
	seqno = 0;
}
