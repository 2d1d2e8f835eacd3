/* fleet.c: the devices and their photos: the photo files, device ids and
 * the table that finds a device by its id, and a photo's life from its
 * plan (what the first pass loses, duplicates, reorders) to its end. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim.h"

struct source *srcs;
size_t nsrcs;
static struct device **table;	/* device id -> device, open addressing */
static size_t tmask;

/* splitmix64: small, fast, and good enough to draw losses and sensors. */
uint64_t
rnd_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

double
rnd_unit(uint64_t *s)
{
	return (double)(rnd_next(s) >> 11) * 0x1p-53;
}

static uint32_t
rnd_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rnd_unit(s) * n);
}

static uint64_t
photo_seed(unsigned dev, unsigned k)
{
	uint64_t s = ((uint64_t)dev << 32 | k) ^ 0x5851f42d4c957f2dULL;

	s = rnd_next(&s) ^ opt.seed;
	rnd_next(&s);
	return s;
}

static int
is_jpeg_name(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot && name[0] != '.' && (strcasecmp(dot, ".jpg") == 0 ||
	    strcasecmp(dot, ".jpeg") == 0);
}

static void
add_file(const char *path)
{
	struct source *s;
	char *buf;
	size_t len;

	if (gxp_read_file(path, &buf, &len, FILE_MAX) == -1)
		gxp_die_errno(EXIT_PERM, "%s", path);
	if (len == 0)
		gxp_die(EXIT_PERM, "%s: empty file", path);
	if (len < 2 || (unsigned char)buf[0] != 0xff || (unsigned char)buf[1] != 0xd8)
		gxp_log(LOG_WARN, "%s: not a JPEG (no FF D8 at the start); "
		    "the worker should reject it", path);
	srcs = xrealloc(srcs, (nsrcs + 1) * sizeof *srcs);
	s = &srcs[nsrcs++];
	s->path = xstrdup(path);
	s->data = (unsigned char *)buf;
	s->len = len;
}

/* The *.jpg and *.jpeg files of a directory, in name order. */
static void
add_dir(const char *dir)
{
	char **names;
	long n = gxp_dir_names(dir, is_jpeg_name, 1, &names);

	if (n == -1)
		gxp_die_errno(EXIT_PERM, "%s", dir);
	for (long i = 0; i < n; i++)
		add_file(names[i]);
	gxp_names_free(names, n);
	if (n == 0)
		gxp_die(EXIT_PERM, "%s: no *.jpg or *.jpeg files", dir);
}

void
add_path(const char *path)
{
	struct stat st;

	if (stat(path, &st) == -1)
		gxp_die_errno(EXIT_PERM, "%s", path);
	if (S_ISDIR(st.st_mode))
		add_dir(path);
	else
		add_file(path);
}

static int
is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* examples/ beside bin/ (the source tree), share/gxp/examples beside it
 * (an installation), or ./examples. */
void
add_default_photos(void)
{
	char exe[PATH_MAX], *slash, *cand[3];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	int found = 0;

	exe[n > 0 ? n : 0] = '\0';
	if ((slash = strrchr(exe, '/')) != NULL)
		*slash = '\0';
	cand[0] = xasprintf("%s/../examples", exe);
	cand[1] = xasprintf("%s/../share/gxp/examples", exe);
	cand[2] = xstrdup("examples");
	for (int i = 0; i < 3; i++) {
		if (!found && n > 0 && is_dir(cand[i])) {
			add_dir(cand[i]);
			found = 1;
		}
		free(cand[i]);
	}
	if (!found)
		gxp_die(EXIT_PERM, "no photos: give files or directories, or -S size");
}

static void
table_add(struct device *d)
{
	size_t i = gxp_hash(d->id) & tmask;

	while (table[i]) {
		if (strcmp(table[i]->id, d->id) == 0)
			gxp_die(EXIT_PERM, "device id %s twice", d->id);
		i = (i + 1) & tmask;
	}
	table[i] = d;
}

struct device *
table_find(const char *id)
{
	for (size_t i = gxp_hash(id) & tmask; table[i]; i = (i + 1) & tmask)
		if (strcmp(table[i]->id, id) == 0)
			return table[i];
	return NULL;
}

static void
device_id(struct device *d)
{
	uint64_t s = opt.seed;

	/* 7C:DF:A1 is one of Espressif's prefixes */
	if (opt.mac)
		snprintf(d->id, sizeof d->id, "7CDFA1%06X",
		    (unsigned)((rnd_next(&s) + d->idx) & 0xffffff));
	else if (snprintf(d->id, sizeof d->id, "%s%06u", opt.prefix, d->idx + 1) >=
	    (int)sizeof d->id || !gxp_device_valid(d->id))
		gxp_die(EXIT_PERM, "--prefix %s: device ids must match "
		    "[A-Za-z0-9_-]{1,64}", opt.prefix);
}

/* A photo on the device's flash, named image_<k+1>.jpg. */
struct photo *
photo_add(struct device *d)
{
	struct photo *p = xcalloc(1, sizeof *p);

	if (d->nphotos == d->photos_cap) {
		d->photos_cap = d->photos_cap ? 2 * d->photos_cap : 4;
		d->photos = xrealloc(d->photos, d->photos_cap * sizeof *d->photos);
	}
	p->dev = d;
	p->k = d->nphotos;
	snprintf(p->name, sizeof p->name, "image_%u.jpg", p->k + 1);
	d->photos[d->nphotos++] = p;
	return p;
}

void
fleet_new(void)
{
	size_t size = 2;

	while (size < 2 * (size_t)opt.devices)
		size *= 2;
	table = xcalloc(size, sizeof *table);
	tmask = size - 1;
	fleet = xcalloc(opt.devices, sizeof *fleet);
	for (unsigned i = 0; i < opt.devices; i++) {
		struct device *d = &fleet[i];

		d->idx = i;
		device_id(d);
		table_add(d);
		d->data_topic = gxp_topic_for("TOPIC_PATTERN_DATA", d->id);
		d->status_topic = gxp_topic_for("TOPIC_PATTERN_STATUS", d->id);
		for (unsigned k = 0; k < opt.photos; k++)
			photo_add(d);
	}
	/* with -W, the photos on flash go only when asked for */
	total = opt.wakes ? 0 : (unsigned long long)opt.devices * opt.photos;
}

void
fleet_free(void)
{
	for (unsigned i = 0; i < opt.devices; i++) {
		for (unsigned k = 0; k < fleet[i].nphotos; k++) {
			free(fleet[i].photos[k]->plan);
			free(fleet[i].photos[k]->resend);
			free(fleet[i].photos[k]->owned);
			free(fleet[i].photos[k]);
		}
		free(fleet[i].photos);
		free(fleet[i].data_topic);
		free(fleet[i].status_topic);
	}
	free(fleet);
	free(table);
	free(active);
	for (size_t i = 0; i < nsrcs; i++) {
		free(srcs[i].path);
		free(srcs[i].data);
	}
	free(srcs);
}

struct photo *
photo_find(struct device *d, const char *name)
{
	for (unsigned k = 0; k < d->nphotos; k++)
		if (strcmp(d->photos[k]->name, name) == 0)
			return d->photos[k];
	return NULL;
}

static void
shuffle(uint32_t *v, size_t n, uint64_t *rng)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = rnd_below(rng, (uint32_t)i);
		uint32_t t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* The first pass: every chunk once, some twice (-D), shuffled within
 * windows (-o), less the ones lost (-l), which only a NACK brings out. */
static void
plan_photo(struct photo *p)
{
	uint32_t n = p->nchunks, len = 0, kept = 0;
	unsigned char *lost = xcalloc(n, 1);
	uint32_t *v = xmalloc(2 * (size_t)n * sizeof *v);
	size_t w;

	for (uint32_t i = 0; i < n; i++) {
		lost[i] = opt.loss > 0 && rnd_unit(&p->rng) < opt.loss;
		v[len++] = i;
		if (opt.dup > 0 && rnd_unit(&p->rng) < opt.dup && !lost[i]) {
			v[len++] = i;
			counters[C_DUP].v++;
		}
		counters[C_WITHHELD].v += lost[i];
	}
	w = opt.window == WINDOW_ALL ? len : (size_t)opt.window;
	for (size_t at = 0; w > 1 && at < len; at += w)
		shuffle(v + at, len - at < w ? len - at : w, &p->rng);
	for (uint32_t i = 0; i < len; i++)
		if (!lost[v[i]])
			v[kept++] = v[i];
	free(lost);
	p->plan = v;
	p->plan_len = kept;
}

static void
photo_bytes(struct photo *p)
{
	if (opt.gen_size) {
		size_t n = opt.gen_size;

		p->owned = xmalloc(n);
		for (size_t i = 2; i < n - 2; i++)
			p->owned[i] = (unsigned char)rnd_next(&p->rng);
		p->owned[0] = 0xff, p->owned[1] = 0xd8;
		p->owned[n - 2] = 0xff, p->owned[n - 1] = 0xd9;
		p->data = p->owned;
		p->size = n;
	} else {
		const struct source *s = &srcs[((size_t)p->dev->idx * opt.photos + p->k) % nsrcs];

		p->data = s->data;
		p->size = s->len;
	}
	p->nchunks = (uint32_t)((p->size + opt.chunk - 1) / opt.chunk);
}

void
photo_start(struct photo *p, int64_t now)
{
	char utc[32];

	p->rng = photo_seed(p->dev->idx, p->k);
	p->state = P_ACTIVE;
	photo_bytes(p);
	/* sent again (send_image): the same capture, the same time */
	if (p->captured[0] == '\0') {
		gxp_fmt_utc(utc, gxp_wall_us());
		snprintf(p->captured, sizeof p->captured, "%.19sZ", utc);
	}
	p->cursor = 0;
	p->full = 0;
	p->resend_head = p->resend_len = 0;
	p->last_chunk_us = 0;
	p->temp = 18 + 12 * rnd_unit(&p->rng);
	p->hum = 30 + 40 * rnd_unit(&p->rng);
	p->pres = 990 + 40 * rnd_unit(&p->rng);
	p->gas = 5000 + 45000 * rnd_unit(&p->rng);
	plan_photo(p);
	p->meta_pending = 1;
	p->deadline_us = now + opt.deadline_ms * 1000;
	p->last_tx_us = now;
	if (nactive == active_cap) {
		active_cap = active_cap ? 2 * active_cap : (size_t)opt.devices * opt.in_flight;
		active = xrealloc(active, active_cap * sizeof *active);
	}
	p->active_ix = nactive;
	active[nactive++] = p;
	if (opt.wakes)
		total++;
	ready_push(p);
}

/* Starts the device's next photos, up to -k at a time. */
static void
device_next(struct device *d, int64_t now)
{
	while (d->inflight < opt.in_flight && d->next < opt.photos) {
		d->inflight++;
		photo_start(d->photos[d->next++], now);
	}
}

void
photo_done(struct photo *p, int state)
{
	struct device *d = p->dev;

	p->state = state;
	active[p->active_ix] = active[--nactive];
	active[p->active_ix]->active_ix = p->active_ix;
	free(p->plan);
	free(p->resend);
	free(p->owned);
	p->plan = p->resend = NULL;
	p->owned = NULL;
	p->data = NULL;
	d->inflight--;
	done++;
	if (opt.wakes)
		wake_photo_done(d);
	else {
		if (done == total)
			end_us = gxp_mono_us();
		device_next(d, gxp_mono_us());
	}
}

void
start_fleet(void)
{
	int64_t now = gxp_mono_us();

	start_us = now;
	send_start(now);
	for (unsigned i = 0; i < opt.devices; i++) {
		if (opt.wakes)
			wake_start(&fleet[i]);
		else {
			fleet[i].status_pending = 1;
			device_next(&fleet[i], now);
		}
	}
	started = 1;
}

