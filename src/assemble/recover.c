/* recover.c: partial/ read back after a restart.  Its records are replayed
 * through the same checks and budgets as live messages, so recovery never
 * holds more than the live path would; a capture keeps the time it
 * started, so one already past CAPTURE_TIMEOUT_MS fails once (its end is
 * recorded) instead of coming back at every start.  A spool written by an
 * earlier gxp (a directory per capture in partial/, per photo in ready/)
 * is taken over here too. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assemble.h"

static struct asm **recovered;
static size_t nrecovered;
static int waiting;	/* recovered captures wait for the clock */

struct replay {
	long refused;
	char first[sizeof refusal];	/* why the first was */
};

static void
replay_refused(struct replay *rp)
{
	if (rp->refused++ == 0)
		snprintf(rp->first, sizeof rp->first, "%s", refusal);
}

/* The capture a record of key belongs to: the one in memory if it is the
 * same (same start), else a new one when the budgets let it in.  A capture
 * of the same name that started at another time is an earlier one whose
 * end was not recorded: it goes. */
static struct asm *
replay_capture(const struct rec *r, int meta, struct replay *rp)
{
	char dev[GXP_DEVICE_MAX + 1], name[GXP_CAPTURE_NAME_MAX + 1];
	struct asm *a = asm_find(r->key);

	if (a && a->started_us == r->started_us)
		return a->state == A_OPEN ? a : NULL;
	if (a && a->state == A_DONE)
		asm_free(a);
	else if (a)
		asm_drop(a);
	if (gxp_spool_entry_parse(r->key, dev, name) == -1 || !gxp_image_name_valid(name))
		return NULL;
	if ((a = asm_new(dev, name, meta, r->started_us)) == NULL)
		replay_refused(rp);
	return a;
}

/* The metadata of a record (or an earlier layout's meta.json) checked as
 * the live path checks it, and where its photo is: GXP_SPOOL_NEW when
 * still to be assembled, another GXP_SPOOL_* when finished, -1 when it is
 * not usable. */
static int
meta_state(const struct asm *a, const cJSON *pm, const char *raw, struct meta *m,
    const char **cn)
{
	char dev[GXP_DEVICE_MAX + 1], tk[32], cname[GXP_CAPTURE_NAME_MAX + 1], msg[256];

	asm_dev(a, dev);
	*cn = gxp_json_str(pm, "capture_name");
	if (pm == NULL || meta_parse(cJSON_GetObjectItemCaseSensitive(pm, "meta"), raw,
	    strlen(raw), m, msg, sizeof msg) != 0 || m->err_code ||
	    strcmp(m->image, asm_name(a)) != 0 || *cn == NULL || !gxp_capture_name_valid(*cn))
		return -1;
	timekey(tk, m);
	return gxp_spool_lookup(cfg.spool, dev, m->image, m->size, tk, cname);
}

/* A capture whose metadata says its photo is finished, or is not usable:
 * ended, and (finished) a marker so that its chunks are not taken up. */
static void
meta_end(struct asm *a, int state, int64_t started_us)
{
	char dev[GXP_DEVICE_MAX + 1], name[GXP_NAME_MAX + 1];
	struct asm *m;

	asm_dev(a, dev);
	snprintf(name, sizeof name, "%s", asm_name(a));
	if (state != -1)
		gxp_log(LOG_INFO, "partial/: %s: already complete; ended", a->h.key);
	else
		gxp_log(LOG_WARN, "partial/: %s: its metadata is not usable; ended", a->h.key);
	asm_drop(a);
	if (state != -1 && (m = mark_done(dev, name)) != NULL)
		m->started_us = started_us;
}

/* A metadata record: the capture as the live path had it. */
static void
replay_meta(struct asm *a, const struct rec *r, const struct span *at, struct replay *rp)
{
	const char *cn;
	char *raw;
	cJSON *pm = partial_meta_parse((const char *)r->data, r->len, &raw);
	struct meta m;
	int state = meta_state(a, pm, raw, &m, &cn);

	if (state != GXP_SPOOL_NEW)
		meta_end(a, state, r->started_us);
	else if (a->has_meta)
		;	/* a copy of one replayed already */
	else if (meta_apply(a, &m, cn) == -1 ||
	    budget_admit(a->dev, a, B_DISK, rec_size(a, r->len), 1) == -1) {
		replay_refused(rp);
		asm_drop(a);
	} else {
		a->meta = *at;
		a->received_us = json_time(pm, "received_at", 0);
		seg_pin(a, at->seg);
		asm_charge(a, B_DISK, rec_size(a, r->len));
	}
	cJSON_Delete(pm);
	free(raw);
}

static void
replay_record(const struct rec *r, const struct span *at, void *arg)
{
	struct replay *rp = arg;
	struct asm *a;

	if (r->type == REC_END) {
		if ((a = asm_find(r->key)) && a->started_us == r->started_us)
			asm_free(a);
		return;
	}
	if ((a = replay_capture(r, r->type == REC_META, rp)) == NULL)
		return;
	if (r->type == REC_META)
		replay_meta(a, r, at, rp);
	else if (chunk_add(a, r->id, NULL, r->len, -1, at) == -1) {
		replay_refused(rp);
		if (!a->has_meta && a->norph == 0)
			asm_drop(a);
	}
}

/* Reads partial/ back: every capture in progress, as the live path left
 * it, within the budgets.  In the order of the records the live path made
 * room before taking a capture in, so the same budgets take up the same
 * captures; smaller ones leave the later captures out (nothing is dropped
 * to make room: what holds it may end further on).  When records were left
 * out, the captures kept are copied to the new segment and the old ones
 * removed, so that what was left out does not come back at the next
 * start. */
void
recover(void)
{
	struct replay rp = { 0 };

	seg_open();
	budget_replaying = 1;
	seg_replay(replay_record, &rp);
	budget_replaying = 0;
	if (rp.refused) {
		gxp_log(LOG_WARN, "partial/: %ld records beyond the budgets left out (the "
		    "first: %s); their devices send them again", rp.refused, rp.first);
		seg_collect(1);
	}
	waiting = 1;
}

/* ---- the earlier layout: partial/<dev>@<image_name>/{meta.json,chunks} ---- */

/* A small file below dfd, NUL-terminated; NULL with errno. */
static char *
read_below(int dfd, const char *name, size_t max, size_t *len)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC), e;
	struct stat st;
	char *buf = NULL;
	ssize_t n = -1;

	if (fd == -1)
		return NULL;
	if (fstat(fd, &st) == 0 && (size_t)st.st_size <= max) {
		buf = xmalloc((size_t)st.st_size + 1);
		n = pread(fd, buf, (size_t)st.st_size, 0);
	} else
		errno = EFBIG;
	e = errno;
	close(fd);
	if (n < 0) {
		free(buf);
		errno = e;
		return NULL;
	}
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* The metadata of an earlier capture: 0 when it is in, 1 when it had
 * none, -1 when the capture is to go (finished, unusable, refused). */
static int
legacy_meta(struct asm *a, const cJSON *pm, const char *raw)
{
	const char *cn;
	struct meta m;
	int state;

	if (pm == NULL)
		return 1;
	if ((state = meta_state(a, pm, raw, &m, &cn)) != GXP_SPOOL_NEW) {
		meta_end(a, state, a->started_us);
		return -1;
	}
	a->received_us = json_time(pm, "received_at", a->started_us);
	if (!a->has_meta && (meta_apply(a, &m, cn) == -1 || meta_record(a, raw) == -1)) {
		gxp_log(LOG_WARN, "partial/: %s: %s", a->h.key, refusal);
		asm_drop(a);
		return -1;
	}
	return 0;
}

/* The chunks of an earlier chunk log, up to its torn tail. */
static void
legacy_chunks(struct asm *a, int dfd)
{
	unsigned char h[GXP_CHUNK_HDR], *data = (unsigned char *)record.p;
	uint32_t id, len, sum;
	off_t off = 0;
	int fd = openat(dfd, "chunks", O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		return;
	while (pread(fd, h, sizeof h, off) == (ssize_t)sizeof h &&
	    gxp_chunk_header_parse(h, &id, &len, &sum) == 0 && len > 0 &&
	    len <= cfg.max_chunk && pread(fd, data, len, off + GXP_CHUNK_HDR) == (ssize_t)len &&
	    gxp_chunk_sum(id, len, data) == sum) {
		if (id < cfg.max_chunks && chunk_add(a, id, data, len, -1, NULL) == -1)
			gxp_log(LOG_WARN, "partial/%s: chunk %u: %s", a->h.key, id, refusal);
		off += GXP_CHUNK_HDR + len;
	}
	close(fd);
}

/* One capture of the earlier layout, taken into the segments as if its
 * messages came again (it keeps the start its meta.json gives; without
 * one, it starts now), then its directory removed.  A crash in between
 * takes it again at the next start; what is there twice counts once. */
static void
legacy_take(const char *entry)
{
	char dev[GXP_DEVICE_MAX + 1], name[GXP_CAPTURE_NAME_MAX + 1], *text, *raw = NULL;
	int dfd = openat(partial_fd, entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	cJSON *pm = NULL;
	struct asm *a;
	int64_t started;
	size_t len;

	if (dfd != -1 && gxp_spool_entry_parse(entry, dev, name) == 0 &&
	    gxp_image_name_valid(name)) {
		if ((text = read_below(dfd, "meta.json", 1 << 20, &len)) != NULL)
			pm = partial_meta_parse(text, len, &raw);
		free(text);
		started = pm ? json_time(pm, "started_at", 0) : 0;
		if ((a = asm_find(entry)) && (a->state != A_OPEN || a->started_us != started)) {
			if (a->state == A_DONE)
				asm_free(a);
			else
				asm_drop(a);
			a = NULL;
		}
		if (a == NULL && (a = asm_new(dev, name, pm != NULL, started)) == NULL)
			gxp_log(LOG_WARN, "partial/%s: %s; left out", entry, refusal);
		else if (legacy_meta(a, pm, raw) != -1) {
			legacy_chunks(a, dfd);
			if (a->minseg == UINT32_MAX)
				asm_free(a);
		}
		cJSON_Delete(pm);
		free(raw);
	}
	if (dfd != -1)
		close(dfd);
	if (gxp_rmtree_at(partial_fd, entry) == -1)
		gxp_log(LOG_WARN, "partial/%s: cannot remove: %s", entry, strerror(errno));
	else
		gxp_log(LOG_INFO, "partial/%s: taken over from the earlier layout", entry);
}

/* The directories an earlier gxp left in partial/ (its segments are
 * files): taken over. */
void
recover_legacy(void)
{
	DIR *d = fdopendir(dup(partial_fd));
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;
	struct stat st;

	if (d == NULL)
		gxp_die_errno(EXIT_TEMP, "%s/partial", cfg.spool);
	rewinddir(d);	/* the descriptor's offset is shared with its dup */
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && fstatat(partial_fd, e->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
			names = xrealloc(names, (n + 1) * sizeof *names);
			names[n++] = xstrdup(e->d_name);
		}
	closedir(d);
	for (size_t i = 0; i < n; i++) {
		legacy_take(names[i]);
		free(names[i]);
	}
	free(names);
}

/* ---- the timers of what was recovered ---- */

static void
collect_open(struct asm *a, void *arg)
{
	(void)arg;
	if (a->state != A_OPEN)
		return;
	recovered = xrealloc(recovered, (nrecovered + 1) * sizeof *recovered);
	recovered[nrecovered++] = a;
}

static int
by_seq(const void *x, const void *y)
{
	const struct asm *a = *(struct asm *const *)x, *b = *(struct asm *const *)y;

	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Once the clock runs (at start, or at the first line of a replay): the
 * earlier layout is taken over, captures without metadata whose photo is
 * finished are ended quietly, and every capture's timers start from the
 * time it started, so one past CAPTURE_TIMEOUT_MS fails now, once. */
void
stamp_recovered(void)
{
	char dev[GXP_DEVICE_MAX + 1];
	int64_t now = clock_ms(), wall = wall_us(), age;

	waiting = 0;
	recover_legacy();
	asm_each(collect_open, NULL);
	if (nrecovered > 1)
		qsort(recovered, nrecovered, sizeof *recovered, by_seq);
	if (nrecovered)
		gxp_log(LOG_INFO, "carrying on with %zu partial captures from %s/partial",
		    nrecovered, cfg.spool);
	for (size_t i = 0; i < nrecovered; i++) {
		struct asm *a = recovered[i];

		asm_dev(a, dev);
		if (!a->has_meta && gxp_spool_finished(cfg.spool, dev, asm_name(a))) {
			counters[C_DUPS].v += a->received;
			asm_drop(a);
			continue;
		}
		if (a->started_us == 0)
			a->started_us = wall;
		age = (wall - a->started_us) / 1000;
		a->started = now - (age > 0 ? age : 0);
		a->active = now;
		if (a->has_meta && a->received == a->total)
			finalize(a);
		else
			schedule(a);
	}
	free(recovered);
	recovered = NULL;
	nrecovered = 0;
}

static void
count_open(struct asm *a, void *arg)
{
	*(size_t *)arg += a->state == A_OPEN;
}

/* Recovered captures whose timers wait for the clock to start (replay). */
size_t
recovered_waiting(void)
{
	size_t n = 0;

	if (waiting)
		asm_each(count_open, &n);
	return n;
}

void
recover_free(void)
{
	waiting = 0;
	free(recovered);
	recovered = NULL;
	nrecovered = 0;
}
