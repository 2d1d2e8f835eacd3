/* photos.c: a thumbnail for every photo the pages show, made once.  A
 * thumbnail's name is a hash of the photo's storage_path, its sha256 (its
 * size when the row has none) and the thumbnail size, so an unchanged
 * photo maps to the same file run after run and is never fetched or
 * decoded again; the state remembers which ones were made (and synced)
 * and which photos could not be read, with the reason, so that a bad
 * photo is not fetched again either.  A photo that could not be fetched
 * for a passing reason (the network) is tried again next run. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "report.h"

struct job {
	char key[33];
	const char *path, *sha, *dev, *name;
	struct rcap **caps;		/* the rows showing this photo */
	size_t ncaps;
	int state;			/* THUMB_NONE until it is known */
	struct ctx *ctx;
};

struct ctx {
	struct source *src;
	struct out *out;
	struct state_extra *x;
	struct map *keep;		/* the thumbs entries still shown */
	struct map *jobs;
	struct job **list;
	size_t njobs;
	int inflight;
	struct thumb_opts topts;
	struct photo_stats *st;
};

void
thumb_key(char out[33], const char *path, const char *sha, long long bytes)
{
	char *in = sha ? xasprintf("gxp-thumb/%lld/%s/%s",
	    gxp_cfg_int("REPORT_THUMB_PX"), path, sha) : xasprintf("gxp-thumb/%lld/%s/%lld",
	    gxp_cfg_int("REPORT_THUMB_PX"), path, bytes);
	char hex[65];

	gxp_sha256_hex(hex, in, strlen(in));
	memcpy(out, hex, 32);
	out[32] = '\0';
	free(in);
}

static void
set_state(struct job *j, int state)
{
	j->state = state;
	for (size_t i = 0; i < j->ncaps; i++)
		j->caps[i]->thumb_state = state;
}

static void
keep(struct ctx *c, const char *key, const char *val)
{
	free(map_put(c->keep, key, xstrdup(val)));
}

static void
bad(struct job *j, const char *why)
{
	char safe[96];

	gxp_log(LOG_WARN, "device %s, photo %s (%s): %s; shown as a placeholder",
	    log_safe(j->dev, safe), j->name ? j->name : "?", j->path, why);
	keep(j->ctx, j->key, why);
	set_state(j, THUMB_BAD);
	j->ctx->st->bad++;
}

static void
made(struct job *j, const unsigned char *jpeg, unsigned long len)
{
	char *rel = xasprintf("thumbs/%s.jpg", j->key);

	out_file(j->ctx->out, rel, jpeg, len);
	free(rel);
	if (j->ctx->out->failed) {
		set_state(j, THUMB_LATER);
		return;
	}
	keep(j->ctx, j->key, "");
	set_state(j, THUMB_OK);
	j->ctx->st->made++;
}

static void
fetched(void *arg, int rc, const char *data, size_t len, const char *why)
{
	struct job *j = arg;
	struct ctx *c = j->ctx;
	unsigned char *t = NULL;
	unsigned long tlen = 0;
	char hex[65], msg[160];
	int r;

	c->inflight--;
	if (rc != ST_OK) {
		if (rc == ST_PERM) {
			bad(j, why);
			return;
		}
		gxp_log(LOG_WARN, "photo %s: %s; trying again next run", j->path, why);
		set_state(j, THUMB_LATER);
		c->st->later++;
		return;
	}
	c->st->fetched_bytes += len;
	if (j->sha && (gxp_sha256_hex(hex, data, len), strcmp(hex, j->sha) != 0)) {
		bad(j, "its bytes are not the ones the row's image_sha256 names");
		return;
	}
	r = thumb_make((const unsigned char *)data, len, &c->topts, &t, &tlen, msg);
	if (r == -1) {
		bad(j, msg);
		return;
	}
	if (r == 1)
		gxp_log(LOG_WARN, "photo %s: %s", j->path, msg);
	made(j, t, tlen);
	thumb_release(t);
}

static struct job *
job_for(struct ctx *c, const char *key, const struct rdev *d, const struct rcap *cap)
{
	struct job *j = map_get(c->jobs, key);

	if (j == NULL) {
		j = xcalloc(1, sizeof *j);
		memcpy(j->key, key, 33);
		j->path = cap->path;
		j->sha = cap->sha;
		j->dev = d->label;
		j->name = cap->name;
		j->ctx = c;
		map_put(c->jobs, key, j);
		c->list = xrealloc(c->list, (c->njobs + 1) * sizeof *c->list);
		c->list[c->njobs++] = j;
	}
	return j;
}

static int
made_before(struct ctx *c, const char *key)
{
	const char *v = map_get(c->x->thumbs, key);
	char *file;
	struct stat sb;
	int ok;

	if (v == NULL || *v != '\0')
		return 0;
	file = xasprintf("%s/thumbs/%s.jpg", c->out->dir, key);
	ok = stat(file, &sb) == 0 && sb.st_size > 0;
	free(file);
	return ok;
}

/* What one shown photo needs: nothing (made before, or known bad), or a
 * job that fetches it. */
static void
need(struct ctx *c, const struct rdev *d, struct rcap *cap)
{
	const char *old;
	struct job *j;

	cap->thumb_state = THUMB_NONE;
	if (cap->status != CAP_STORED || cap->path == NULL)
		return;
	thumb_key(cap->thumb, cap->path, cap->sha, cap->bytes);
	if (made_before(c, cap->thumb)) {
		if (map_get(c->keep, cap->thumb) == NULL)
			c->st->cached++;
		keep(c, cap->thumb, "");
		cap->thumb_state = THUMB_OK;
		return;
	}
	if ((old = map_get(c->x->thumbs, cap->thumb)) != NULL && *old != '\0') {
		if (map_get(c->keep, cap->thumb) == NULL)
			c->st->bad++;
		keep(c, cap->thumb, old);
		cap->thumb_state = THUMB_BAD;
		return;
	}
	j = job_for(c, cap->thumb, d, cap);
	j->caps = xrealloc(j->caps, (j->ncaps + 1) * sizeof *j->caps);
	j->caps[j->ncaps++] = cap;
	cap->thumb_state = j->state;
	if (j->ncaps == 1 && !storage_path_safe(cap->path))
		bad(j, "storage_path is not a path below the bucket");
}

static void
run_jobs(struct ctx *c)
{
	int max = (int)gxp_cfg_int("REPORT_CONCURRENCY");

	for (size_t i = 0; i < c->njobs; i++) {
		struct job *j = c->list[i];

		if (j->state != THUMB_NONE)
			continue;
		while (c->inflight >= max)
			c->src->wait(c->src, 1000);
		c->inflight++;
		c->src->fetch(c->src, j->path, fetched, j);
	}
	while (c->inflight > 0)
		c->src->wait(c->src, 1000);
}

static void
free_job(void *p)
{
	struct job *j = p;

	free(j->caps);
	free(j);
}

int
photos_update(struct source *src, struct fleet *f, struct out *o,
    struct state_extra *x, struct photo_stats *st)
{
	struct ctx c = { 0 };

	c.src = src;
	c.out = o;
	c.x = x;
	c.st = st;
	c.keep = map_new();
	c.jobs = map_new();
	c.topts.px = (int)gxp_cfg_int("REPORT_THUMB_PX");
	c.topts.max_pixels = gxp_cfg_int("REPORT_MAX_PIXELS");
	for (size_t i = 0; i < f->ndevs; i++) {
		struct rdev *d = f->devs[i];

		if (d->has_photo)
			need(&c, d, &d->photo);
		for (size_t k = 0; k < d->ncaps && k < (size_t)f->recent_photos; k++)
			need(&c, d, &d->caps[k]);
	}
	run_jobs(&c);
	map_free(c.jobs, free_job);
	free(c.list);
	map_free(x->thumbs, free);
	x->thumbs = c.keep;
	return st->later > 0 || o->failed ? -1 : 0;
}
