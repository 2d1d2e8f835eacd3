/* cluster.c: several workers on one fleet (GXP_CLUSTER).  Each device is
 * owned by one live worker, chosen by rendezvous hashing: the owner is the
 * worker with the highest score(worker, device), so a worker that comes or
 * goes moves only its own share.  gxp-sub keeps the live set from the
 * workers' retained presence records and writes it downstream as a line
 * (gxp(7), "cluster"); gxp-control and gxp-assemble take the set from that
 * line, so all stages of a worker decide with the same set and the same
 * function.  Asking who owns a device is cached per device until the set
 * changes: gxp-sub asks for every message it receives. */
#define _GNU_SOURCE	/* memmem(3) */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gxp.h"

#define CACHE_MAX (1u << 20)	/* devices remembered; then it starts over */

struct worker {
	char *id;
	uint64_t seed;		/* FNV-1a state after the id and a separator */
};

struct slot {
	char *dev;
	uint32_t hash, gen;
	int owned;
};

struct gxp_cluster {
	int mode;
	char *self, *group, *prefix;
	struct worker *w;
	size_t n, cap;
	uint32_t gen;		/* bumped when the set changes */
	int joined;		/* the set as read after gxp-sub connected */
	struct slot *cache;
	size_t ncache, capcache;
};

static uint64_t
fnv64(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h;
}

/* FNV's low bits mix poorly: a finaliser (splitmix64's) before comparing */
static uint64_t
mix(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t
seed_of(const char *id)
{
	return fnv64(fnv64(14695981039346656037ULL, id, strlen(id)), "\n", 1);
}

/* GXP_WORKER_ID, else MQTT_CLIENT_ID (gxp-supervise makes it unique per
 * host and spool), else the host name and a hash of the spool's path. */
static char *
worker_id(void)
{
	const char *id = gxp_cfg("GXP_WORKER_ID"), *cid = gxp_cfg("MQTT_CLIENT_ID");
	char host[256] = "worker", *spool;
	char *s;

	if (id && *id)
		return xstrdup(id);
	if (cid && *cid)
		return xstrdup(cid);
	gethostname(host, sizeof host - 1);
	host[strcspn(host, ".")] = '\0';
	spool = realpath(gxp_cfg("GXP_SPOOL"), NULL);
	s = xasprintf("%s-%08x", host, gxp_hash(spool ? spool : gxp_cfg("GXP_SPOOL")));
	free(spool);
	return s;
}

/* The mode of GXP_CLUSTER; -1 when it is none of them. */
int
gxp_cluster_mode_of(const char *v)
{
	if (v == NULL || strcmp(v, "off") == 0)
		return GXP_CLUSTER_OFF;
	if (strcmp(v, "presence") == 0)
		return GXP_CLUSTER_PRESENCE;
	if (strcmp(v, "shared") == 0)
		return GXP_CLUSTER_SHARED;
	return -1;
}

/* NULL when GXP_CLUSTER is off; dies (EXIT_PERM) when it is not a mode,
 * or the worker id cannot be a topic level. */
struct gxp_cluster *
gxp_cluster_new(void)
{
	int mode = gxp_cluster_mode_of(gxp_cfg("GXP_CLUSTER"));
	struct gxp_cluster *c;

	if (mode == -1)
		gxp_die(EXIT_PERM, "GXP_CLUSTER=%s: expected off, presence or shared",
		    gxp_cfg("GXP_CLUSTER"));
	if (mode == GXP_CLUSTER_OFF)
		return NULL;
	c = xcalloc(1, sizeof *c);
	c->mode = mode;
	c->self = worker_id();
	c->group = xstrdup(gxp_cfg("GXP_CLUSTER_GROUP"));
	c->prefix = xstrdup(gxp_cfg("GXP_CLUSTER_TOPIC"));
	if (!gxp_device_valid(c->self) || !gxp_device_valid(c->group)) {
		gxp_log(LOG_ERROR, "GXP_WORKER_ID %s and GXP_CLUSTER_GROUP %s: each 1 to %d "
		    "of A-Z a-z 0-9 _ -", c->self, c->group, GXP_DEVICE_MAX);
		gxp_cluster_free(c);
		gxp_die(EXIT_PERM, "the cluster settings are not usable");
	}
	return c;
}

/* Downstream stages: the set comes from gxp-sub's lines, self included. */
struct gxp_cluster *
gxp_cluster_follower(void)
{
	struct gxp_cluster *c = xcalloc(1, sizeof *c);

	c->mode = gxp_cluster_mode_of(gxp_cfg("GXP_CLUSTER"));
	c->self = xstrdup("");
	return c;
}

int
gxp_cluster_mode(const struct gxp_cluster *c)
{
	return c ? c->mode : GXP_CLUSTER_OFF;
}

const char *
gxp_cluster_self(const struct gxp_cluster *c)
{
	return c->self;
}

const char *
gxp_cluster_group(const struct gxp_cluster *c)
{
	return c->group;
}

/* <GXP_CLUSTER_TOPIC>/<worker> (free it); worker "+" gives the filter. */
char *
gxp_cluster_topic(const struct gxp_cluster *c, const char *worker)
{
	return xasprintf("%s/%s", c->prefix, worker);
}

/* The worker id of a presence topic, or NULL when it is not one. */
const char *
gxp_cluster_topic_worker(const struct gxp_cluster *c, const char *topic)
{
	size_t n = strlen(c->prefix);

	if (strncmp(topic, c->prefix, n) != 0 || topic[n] != '/' || !gxp_device_valid(topic + n + 1))
		return NULL;
	return topic + n + 1;
}

size_t
gxp_cluster_size(const struct gxp_cluster *c)
{
	return c->n;
}

const char *
gxp_cluster_worker(const struct gxp_cluster *c, size_t i)
{
	return c->w[i].id;
}

static int
by_id(const void *a, const void *b)
{
	return strcmp(((const struct worker *)a)->id, ((const struct worker *)b)->id);
}

/* Adds (live) or removes a worker; 1 when the set changed. */
int
gxp_cluster_update(struct gxp_cluster *c, const char *worker, int live)
{
	size_t i;

	for (i = 0; i < c->n && strcmp(c->w[i].id, worker) != 0; i++)
		;
	if ((i < c->n) == !!live)
		return 0;
	if (live) {
		if (c->n == c->cap)
			c->w = xrealloc(c->w, (c->cap = c->cap ? 2 * c->cap : 8) * sizeof *c->w);
		c->w[c->n].id = xstrdup(worker);
		c->w[c->n++].seed = seed_of(worker);
		qsort(c->w, c->n, sizeof *c->w, by_id);
	} else {
		free(c->w[i].id);
		memmove(c->w + i, c->w + i + 1, (c->n - i - 1) * sizeof *c->w);
		c->n--;
	}
	c->gen++;
	return 1;
}

/* The owner of dev among the live workers; NULL when there are none. */
const char *
gxp_cluster_owner(const struct gxp_cluster *c, const char *dev)
{
	size_t len = strlen(dev), best = 0;
	uint64_t top = 0;

	if (c->n == 0)
		return NULL;
	for (size_t i = 0; i < c->n; i++) {
		uint64_t s = mix(fnv64(c->w[i].seed, dev, len));

		if (i == 0 || s > top)
			top = s, best = i;
	}
	return c->w[best].id;
}

static struct slot *
slot_for(struct gxp_cluster *c, const char *dev, uint32_t h)
{
	size_t mask = c->capcache - 1, i = h & mask;

	while (c->cache[i].dev && (c->cache[i].hash != h || strcmp(c->cache[i].dev, dev) != 0))
		i = (i + 1) & mask;
	return &c->cache[i];
}

static void
cache_clear(struct gxp_cluster *c, size_t cap)
{
	for (size_t i = 0; i < c->capcache; i++)
		free(c->cache[i].dev);
	free(c->cache);
	c->cache = xcalloc(cap, sizeof *c->cache);
	c->capcache = cap;
	c->ncache = 0;
}

static void
cache_grow(struct gxp_cluster *c)
{
	struct slot *old = c->cache;
	size_t oldcap = c->capcache;

	c->cache = xcalloc(2 * oldcap, sizeof *c->cache);
	c->capcache = 2 * oldcap;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].dev)
			*slot_for(c, old[i].dev, old[i].hash) = old[i];
	free(old);
}

/* Whether this worker owns dev: before the set is known (it has no
 * workers), nobody does. */
int
gxp_cluster_owns(struct gxp_cluster *c, const char *dev)
{
	uint32_t h = gxp_hash(dev);
	struct slot *s;
	const char *o;

	if (c->capcache == 0)
		cache_clear(c, 1024);
	s = slot_for(c, dev, h);
	if (s->dev && s->gen == c->gen)
		return s->owned;
	o = gxp_cluster_owner(c, dev);
	if (s->dev == NULL) {
		if (c->ncache >= CACHE_MAX) {
			cache_clear(c, 1024);
			s = slot_for(c, dev, h);
		} else if (2 * (c->ncache + 1) > c->capcache) {
			cache_grow(c);
			s = slot_for(c, dev, h);
		}
		s->dev = xstrdup(dev);
		s->hash = h;
		c->ncache++;
	}
	s->gen = c->gen;
	s->owned = o != NULL && strcmp(o, c->self) == 0;
	return s->owned;
}

/* The line gxp-sub writes when the set changes (gxp(7)), without its
 * opening brace and seq: "event":"cluster",...}\n */
void
gxp_cluster_line(const struct gxp_cluster *c, int joined, struct gxp_buf *b)
{
	gxp_buf_adds(b, "\"event\":\"cluster\",\"v\":1,\"mode\":");
	gxp_buf_adds(b, c->mode == GXP_CLUSTER_SHARED ? "\"shared\"" : "\"presence\"");
	if (joined)	/* what came before it may have changed unseen */
		gxp_buf_adds(b, ",\"joined\":true");
	gxp_buf_adds(b, ",\"self\":");
	gxp_buf_add_jstr(b, c->self, strlen(c->self));
	gxp_buf_adds(b, ",\"workers\":[");
	for (size_t i = 0; i < c->n; i++) {
		if (i > 0)
			gxp_buf_add(b, ",", 1);
		gxp_buf_add_jstr(b, c->w[i].id, strlen(c->w[i].id));
	}
	gxp_buf_adds(b, "]}\n");
}

/* A line that may be gxp-sub's cluster line: its set replaces ours.
 * 1 when it was one (and the set is now its), 0 when not, -1 when it was
 * one but unreadable (said). */
int
gxp_cluster_from_line(struct gxp_cluster *c, const char *line, size_t len)
{
	const cJSON *ws, *w;
	const char *self;
	cJSON *o;

	if (memmem(line, len, "\"event\":\"cluster\"", 17) == NULL)
		return 0;
	/* the words may be in a device's payload, nested: the line's own event */
	if ((o = gxp_json_parse(line, len)) == NULL || gxp_json_str(o, "event") == NULL ||
	    strcmp(gxp_json_str(o, "event"), "cluster") != 0) {
		cJSON_Delete(o);
		return 0;
	}
	if ((self = gxp_json_str(o, "self")) == NULL ||
	    !cJSON_IsArray(ws = cJSON_GetObjectItemCaseSensitive(o, "workers"))) {
		cJSON_Delete(o);
		gxp_log(LOG_ERROR, "a cluster line that cannot be read: %.200s", line);
		return -1;
	}
	c->joined = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "joined"));
	c->mode = strcmp(gxp_json_str(o, "mode") ? gxp_json_str(o, "mode") : "", "shared") == 0 ?
	    GXP_CLUSTER_SHARED : GXP_CLUSTER_PRESENCE;
	while (c->n > 0)
		gxp_cluster_update(c, c->w[c->n - 1].id, 0);
	free(c->self);
	c->self = xstrdup(self);
	cJSON_ArrayForEach(w, ws)
		if (cJSON_IsString(w) && gxp_device_valid(w->valuestring))
			gxp_cluster_update(c, w->valuestring, 1);
	c->gen++;
	cJSON_Delete(o);
	return 1;
}

/* Whether the last line read was the first after gxp-sub connected. */
int
gxp_cluster_joined(const struct gxp_cluster *c)
{
	return c->joined;
}

void
gxp_cluster_free(struct gxp_cluster *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->w[i].id);
	for (size_t i = 0; i < c->capcache; i++)
		free(c->cache[i].dev);
	free(c->cache);
	free(c->w);
	free(c->self);
	free(c->group);
	free(c->prefix);
	free(c);
}
