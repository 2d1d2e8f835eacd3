/* gxp-assemble: rebuilds the devices' photos from their chunk messages.
 *
 * NDJSON envelopes come in on stdin (gxp-sub, mosquitto_sub -F %j or %J).
 * Each chunk is appended to its capture's log in the spool as it arrives
 * (gxp-spool(5)), so memory holds only an index per capture and a SIGKILL
 * loses nothing; a complete capture is validated, built in tmp/ and renamed
 * into ready/ (or failed/).  Events (gxp(7)) go to stdout, with every line
 * that is not a device message passed through unchanged.
 *
 * Output waits in a buffer until the spool changes it reports are durable.
 * A commit (one sync for every photo finished since the last) comes before
 * waiting for input, at the end, and whenever enough is pending.  Output
 * keeps the order of processing wherever the commits fall, so a replay
 * writes the same bytes every time. */
#define _GNU_SOURCE	/* syncfs(2) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lib/gxp.h"

#define COMMIT_MAX 256		/* photos per sync */
#define OUT_MAX (1 << 20)	/* output bytes held back before a commit */
#define NEVER (INT64_MIN / 4)

enum { PUBLOG_OFF, PUBLOG_NO_CHUNKS, PUBLOG_ALL };
enum { A_OPEN, A_FINAL, A_DONE };

static struct {
	const char *spool;
	long long max_line, max_image, max_chunks, max_chunk, max_asm, max_asm_dev;
	long long nack_ids, timeout, delay, nack_max, open_files;
	int publog, replay, flush_at_eof;
} cfg;

static struct gxp_counter counters[] = {
	{ "messages_total", "device messages consumed", 0, 0 },
	{ "chunks_total", "chunks written to the spool", 0, 0 },
	{ "duplicates_total", "chunks ignored: seen before, or for a finished photo", 0, 0 },
	{ "photos_completed_total", "photos renamed into ready/", 0, 0 },
	{ "photos_failed_total", "captures that failed", 0, 0 },
	{ "nacks_sent_total", "NACK rounds (one or more messages each)", 0, 0 },
	{ "bytes_written_total", "JPEG bytes renamed into ready/", 0, 0 },
	{ "errors_total", "error events", 0, 0 },
	{ "passed_total", "lines passed through", 0, 0 },
	{ "assemblies_in_flight", "captures being assembled", 1, 0 },
};
enum { C_MESSAGES, C_CHUNKS, C_DUPS, C_COMPLETED, C_FAILED, C_NACKS, C_BYTES,
	C_ERRORS, C_PASSED, C_INFLIGHT };

/* ---- hash tables of captures and devices, keyed by strings ---- */

struct hent {
	struct hent *next;
	char *key;
	uint32_t hash, klen;
};

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

/* ---- captures in memory: an index into the chunk log, times, counts ---- */

struct span {
	uint32_t off, len;	/* len 0: not received */
};

struct asm {
	struct hent h;		/* "<dev>@<image_name>", the partial/ entry */
	struct span *idx;	/* by chunk_id */
	char *capture_name;	/* NULL until the metadata came */
	uint64_t seq, logsize, bytes;
	int64_t started, active, nacked, due;		/* clock ms */
	int64_t started_us, received_us, captured_us;	/* wall clock */
	uint32_t ncap, total, received, dups, image_size, chunk_size;
	int heap, slot;
	uint8_t devlen, state, has_meta, has_time, nacks, postponed;
};

struct device {
	struct hent h;
	long long n;		/* captures in flight */
};

static struct htab captures, devices;
static long long inflight;
static uint64_t seqno;
static struct asm **recovered;
static size_t nrecovered;

static void
asm_dev(const struct asm *a, char dev[GXP_DEVICE_MAX + 1])
{
	memcpy(dev, a->h.key, a->devlen);
	dev[a->devlen] = '\0';
}

static const char *
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

static void
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

static struct asm *
asm_find(const char *key)
{
	size_t n = strlen(key);

	return (struct asm *)ht_get(&captures, key, n, hash_bytes(key, n));
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

static void
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

static void
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

/* ---- the clock: monotonic when live, the messages' tst in replay ---- */

static int64_t replay_us;
static int clock_valid;

static int64_t
clock_ms(void)
{
	return cfg.replay ? replay_us / 1000 : gxp_mono_ms();
}

static int64_t
wall_us(void)
{
	return cfg.replay ? replay_us : gxp_wall_us();
}

/* gxp_fmt_utc, remembering the last second's text: formatting two times a
 * chunk would otherwise cost as much as parsing it. */
static void
fmt_time(char buf[32], int64_t us)
{
	static int64_t sec = INT64_MIN;
	static char last[32];
	int64_t s = us >= 0 ? us / 1000000 : (us - 999999) / 1000000;
	long frac = (long)(us - s * 1000000);

	if (s != sec) {
		gxp_fmt_utc(last, s * 1000000);
		sec = s;
	}
	memcpy(buf, last, 20);	/* "2026-11-27T05:04:21." */
	for (int i = 25; i >= 20; i--, frac /= 10)
		buf[i] = (char)('0' + frac % 10);
	buf[26] = 'Z';
	buf[27] = '\0';
}

/* ---- output, held until the next commit ---- */

static struct gxp_buf outq;

static void
out_add(const char *s, size_t n)
{
	gxp_buf_grow(&outq, n + 1);
	memcpy(outq.p + outq.len, s, n);
	outq.p[outq.len + n] = '\n';
	outq.len += n + 1;
}

static void
out_flush(size_t upto)
{
	if (upto > 0 && !gxp_out_closed && gxp_write_all(1, outq.p, upto) == -1) {
		if (errno != EPIPE)
			gxp_log(LOG_ERROR, "stdout: %s", strerror(errno));
		gxp_out_closed = 1;
	}
	if (outq.len > upto)
		memmove(outq.p, outq.p + upto, outq.len - upto);
	outq.len -= upto;
}

/* Every event's "ts" goes third, after "event" and "v" (which
 * gxp_event_new puts first). */
static void
emit(cJSON *e)
{
	char *s = gxp_json_print(e), ts[32];
	const char *v = strstr(s, "\"v\":");
	size_t len = strlen(s), at = v ? (size_t)(v - s) + 4 + strcspn(v + 4, ",}") : len;

	fmt_time(ts, wall_us());
	gxp_buf_grow(&outq, len + 48);
	gxp_buf_add(&outq, s, at);
	gxp_buf_addf(&outq, ",\"ts\":\"%s\"", ts);
	gxp_buf_add(&outq, s + at, len - at);
	gxp_buf_add(&outq, "\n", 1);
	free(s);
	cJSON_Delete(e);
}

/* ---- what is being processed, for error events and log lines ---- */

static struct {
	const char *line, *topic;
	size_t len;
	long long lineno;
	int64_t received_us;
} cur;

/* A name fit for a log line: no control characters, not too long. */
static const char *
printable(const char *s, char buf[80])
{
	size_t i;

	if (s == NULL)
		return "-";
	for (i = 0; s[i] && i < 64; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	strcpy(buf + i, s[i] ? "..." : "");
	return buf;
}

static void
log_at(int level, const char *dev, const char *image, const char *msg)
{
	char d[80], i[80], where[48] = "";

	if (cur.lineno)
		snprintf(where, sizeof where, "line %lld: ", cur.lineno);
	gxp_log(level, "%sdevice %s image %s: %s", where, printable(dev, d),
	    printable(image, i), msg);
}

static const char *
severity(int code)
{
	return code == 2102 || code == 2202 || code == 2203 ? "warn" : "error";
}

static void
error_event(int code, const char *dev, const char *image, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
error_event(int code, const char *dev, const char *image, const char *fmt, ...)
{
	cJSON *e = gxp_event_new("error");
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	cJSON_AddNumberToObject(e, "code", code);
	cJSON_AddStringToObject(e, "severity", severity(code));
	cJSON_AddStringToObject(e, "reason", reason);
	if (dev)
		cJSON_AddStringToObject(e, "device", dev);
	if (image)
		cJSON_AddStringToObject(e, "image_name", image);
	if (cur.topic)
		cJSON_AddStringToObject(e, "topic", cur.topic);
	if (cur.lineno)
		cJSON_AddNumberToObject(e, "line", (double)cur.lineno);
	emit(e);
	counters[C_ERRORS].v++;
	log_at(code == 2102 ? LOG_WARN : LOG_ERROR, dev, image, reason);
}

static void
pass_line(void)
{
	counters[C_PASSED].v++;
	out_add(cur.line, cur.len);
}

/* ---- the spool's directories ---- */

static int spool_fd, tmp_fd, partial_fd, ready_fd, failed_fd, lock_fd = -1;

static int
open_dir(const char *name)
{
	int fd = openat(spool_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd == -1)
		gxp_die_errno(EXIT_TEMP, "%s/%s", cfg.spool, name);
	return fd;
}

static int
write_file_at(int dfd, const char *name, const char *data, size_t len)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), e;

	if (fd == -1)
		return -1;
	if (gxp_write_all(fd, data, len) == -1) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return close(fd);
}

/* A small file below dfd, NUL-terminated in *buf. */
static int
read_at(int dfd, const char *name, char **buf, size_t *len)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC), e;
	struct stat st;
	ssize_t n = -1;

	if (fd == -1)
		return -1;
	if (fstat(fd, &st) == 0 && st.st_size < (1 << 20)) {
		*buf = xmalloc((size_t)st.st_size + 1);
		n = pread(fd, *buf, (size_t)st.st_size, 0);
		if (n >= 0) {
			(*buf)[n] = '\0';
			*len = (size_t)n;
		} else
			free(*buf);
	} else if (errno == 0)
		errno = EFBIG;
	e = errno;
	close(fd);
	errno = e;
	return n >= 0 ? 0 : -1;
}

static int
write_json_at(int dfd, const char *name, const cJSON *j)
{
	char *s = gxp_json_print(j);
	int rc = write_file_at(dfd, name, s, strlen(s));

	free(s);
	return rc;
}

/* ---- open chunk logs: a small LRU cache of descriptors ---- */

struct slot {
	struct asm *a;
	int fd, prev, next;
};

static struct slot *slots;
static int mru = -1, lru = -1, freeslot = -1;

static void
slot_unlink(int i)
{
	if (slots[i].prev >= 0)
		slots[slots[i].prev].next = slots[i].next;
	else
		mru = slots[i].next;
	if (slots[i].next >= 0)
		slots[slots[i].next].prev = slots[i].prev;
	else
		lru = slots[i].prev;
}

static void
slot_front(int i)
{
	slots[i].prev = -1;
	slots[i].next = mru;
	if (mru >= 0)
		slots[mru].prev = i;
	mru = i;
	if (lru < 0)
		lru = i;
}

/* The cache holds ASSEMBLE_OPEN_FILES descriptors; the soft limit is
 * raised to make room, or the cache made smaller. */
static void
slots_init(void)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)cfg.open_files + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < need) {
			cfg.open_files = rl.rlim_cur > 68 ? (long long)rl.rlim_cur - 64 : 4;
			gxp_log(LOG_WARN, "open file limit %llu: keeping %lld chunk logs open "
			    "(ASSEMBLE_OPEN_FILES)", (unsigned long long)rl.rlim_cur, cfg.open_files);
		}
	}
	slots = xcalloc((size_t)cfg.open_files, sizeof *slots);
	for (int i = (int)cfg.open_files - 1; i >= 0; i--) {
		slots[i].next = freeslot;
		freeslot = i;
	}
}

static void
log_close(struct asm *a)
{
	int i = a->slot;

	if (i < 0)
		return;
	slot_unlink(i);
	close(slots[i].fd);
	slots[i].a = NULL;
	slots[i].next = freeslot;
	freeslot = i;
	a->slot = -1;
}

static int
log_fd(struct asm *a)
{
	char path[GXP_ENTRY_MAX + 16];
	int i, fd;

	if ((i = a->slot) >= 0) {
		if (mru != i) {
			slot_unlink(i);
			slot_front(i);
		}
		return slots[i].fd;
	}
	snprintf(path, sizeof path, "%s/chunks", a->h.key);
	if ((fd = openat(partial_fd, path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) == -1)
		return -1;
	if (freeslot < 0)
		log_close(slots[lru].a);
	i = freeslot;
	freeslot = slots[i].next;
	slots[i].a = a;
	slots[i].fd = fd;
	a->slot = i;
	slot_front(i);
	return fd;
}

/* ---- capture lifetime ---- */

static struct asm *
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

static void
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
static struct asm *
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
static void
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
static void
asm_drop(struct asm *a)
{
	partial_remove(a);
	asm_free(a);
}

static void
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

static void
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

static void
failed_event(const char *dev, const char *image, const char *cname, int code,
    const char *entry, const char *reason)
{
	cJSON *e = gxp_event_new("capture_failed");

	cJSON_AddStringToObject(e, "device", dev);
	cJSON_AddStringToObject(e, "image_name", image);
	if (cname)
		cJSON_AddStringToObject(e, "capture_name", cname);
	else
		cJSON_AddNullToObject(e, "capture_name");
	cJSON_AddNumberToObject(e, "code", code);
	cJSON_AddStringToObject(e, "severity", severity(code));
	cJSON_AddStringToObject(e, "reason", reason);
	if (entry)
		cJSON_AddStringToObject(e, "entry", entry);
	emit(e);
	counters[C_FAILED].v++;
	log_at(code == 2202 || code == 2203 ? LOG_WARN : LOG_ERROR, dev, image, reason);
}

static void
capture_failed(struct asm *a, int code, const char *entry, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
capture_failed(struct asm *a, int code, const char *entry, const char *fmt, ...)
{
	char dev[GXP_DEVICE_MAX + 1], reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	asm_dev(a, dev);
	failed_event(dev, asm_name(a), a->capture_name, code, entry, reason);
}

/* ---- metadata ---- */

struct meta {
	char image[GXP_NAME_MAX + 1];
	long long size, chunk, total;
	int64_t captured_us;
	int has_time;
	char err[96];		/* what the device reported, "" if nothing */
};

/* A string member decoded from the object's text: 1, 0 if absent, -1 if
 * not a string, too long, or holding a NUL. */
static int
str_member(const char *text, size_t len, const char *key, char *out, size_t cap)
{
	const char *v;
	size_t vlen;
	char *tmp;
	long n;

	if (gxp_json_raw_member(text, len, key, &v, &vlen) == -1)
		return 0;
	if (*v != '"' || vlen - 2 >= cap)
		return -1;
	tmp = xmalloc(vlen);
	n = gxp_json_unescape(v + 1, vlen - 2, tmp);
	if (n >= 0 && (size_t)n < cap && strlen(tmp) == (size_t)n)
		memcpy(out, tmp, (size_t)n + 1);
	else
		n = -1;
	free(tmp);
	return n >= 0 ? 1 : -1;
}

static void
device_error(const cJSON *j, char err[96])
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "error");

	err[0] = '\0';
	if (cJSON_IsNumber(v) && v->valuedouble != 0)
		snprintf(err, 96, "device reported error %.15g", v->valuedouble);
	else if (cJSON_IsTrue(v))
		snprintf(err, 96, "device reported error true");
	else if (cJSON_IsString(v) && *v->valuestring)
		snprintf(err, 96, "device reported error %.60s", v->valuestring);
}

/* A count from the metadata: 0, or 2101 (missing, wrong type) or 2200
 * (beyond the limit) with the reason in why. */
static int
meta_count(const cJSON *j, const char *key, long long max, const char *limit,
    long long *out, char *why, size_t wlen)
{
	if (gxp_json_int(j, key, out) != 1 || *out < 1) {
		snprintf(why, wlen, "metadata: %s must be a positive whole number", key);
		return 2101;
	}
	if (*out > max) {
		snprintf(why, wlen, "refused: %s %lld exceeds %s (%lld)", key, *out, limit, max);
		return 2200;
	}
	return 0;
}

static int
meta_parse(const cJSON *j, const char *raw, size_t rlen, struct meta *m, char *why,
    size_t wlen)
{
	const cJSON *traw;
	int code;

	memset(m, 0, sizeof *m);
	if (str_member(raw, rlen, "image_name", m->image, sizeof m->image) != 1 ||
	    !gxp_image_name_valid(m->image)) {
		snprintf(why, wlen, "metadata: missing or invalid image_name");
		return 2101;
	}
	m->has_time = gxp_meta_captured_at(j, &m->captured_us, &traw);
	device_error(j, m->err);
	if (m->err[0]) {
		gxp_json_int(j, "image_size", &m->size);
		return 0;
	}
	if ((code = meta_count(j, "image_size", cfg.max_image, "MAX_IMAGE_BYTES",
	    &m->size, why, wlen)) || (code = meta_count(j, "total_chunk_count",
	    cfg.max_chunks, "MAX_CHUNKS", &m->total, why, wlen)))
		return code;
	if (cJSON_HasObjectItem(j, "max_chunks_size"))
		return meta_count(j, "max_chunks_size", cfg.max_chunk, "MAX_CHUNK_BYTES",
		    &m->chunk, why, wlen);
	if (cJSON_HasObjectItem(j, "max_chunk_size"))
		return meta_count(j, "max_chunk_size", cfg.max_chunk, "MAX_CHUNK_BYTES",
		    &m->chunk, why, wlen);
	return 0;
}

static void
meta_apply(struct asm *a, const struct meta *m, const char *capture_name)
{
	a->has_meta = 1;
	a->image_size = (uint32_t)m->size;
	a->chunk_size = (uint32_t)m->chunk;
	a->total = (uint32_t)m->total;
	a->has_time = (uint8_t)m->has_time;
	a->captured_us = m->captured_us;
	free(a->capture_name);
	a->capture_name = xstrdup(capture_name);
	idx_grow(a, a->total);
	a->received = 0;
	for (uint32_t i = 0; i < a->total; i++)
		a->received += a->idx[i].len > 0;
}

static int
same_capture(const struct asm *a, const struct meta *m)
{
	return a->image_size == m->size && a->has_time == m->has_time &&
	    (!m->has_time || a->captured_us == m->captured_us);
}

static void
timekey(char buf[32], const struct meta *m)
{
	gxp_capture_timekey(buf, m->has_time, m->captured_us);
}

static void
add_time(cJSON *obj, const char *key, int64_t us)
{
	char buf[32];

	gxp_fmt_utc(buf, us);
	cJSON_AddStringToObject(obj, key, buf);
}

/* partial/<entry>/meta.json: the metadata message and when it came.  It
 * only has to survive the process (renamed into place), not a power cut. */
static int
partial_meta_write(struct asm *a, const char *raw)
{
	char dev[GXP_DEVICE_MAX + 1], tmp[GXP_ENTRY_MAX + 32], path[GXP_ENTRY_MAX + 32];
	cJSON *j = cJSON_CreateObject();
	int rc;

	asm_dev(a, dev);
	cJSON_AddNumberToObject(j, "v", 1);
	cJSON_AddStringToObject(j, "device", dev);
	cJSON_AddStringToObject(j, "image_name", asm_name(a));
	cJSON_AddStringToObject(j, "capture_name", a->capture_name);
	add_time(j, "received_at", a->received_us);
	add_time(j, "started_at", a->started_us);
	cJSON_AddRawToObject(j, "meta", raw);
	snprintf(tmp, sizeof tmp, "%s/meta.json.tmp", a->h.key);
	snprintf(path, sizeof path, "%s/meta.json", a->h.key);
	rc = write_json_at(partial_fd, tmp, j);
	cJSON_Delete(j);
	if (rc == 0 && (rc = renameat(partial_fd, tmp, partial_fd, path)) == -1)
		unlinkat(partial_fd, tmp, 0);
	return rc;
}

static void
inbound(const char *dev, const char *kind, const char *raw)
{
	cJSON *e;

	if (cfg.publog == PUBLOG_OFF)
		return;
	e = gxp_event_new("inbound");
	cJSON_AddStringToObject(e, "device", dev);
	cJSON_AddStringToObject(e, "topic", cur.topic);
	add_time(e, "received_at", cur.received_us);
	cJSON_AddStringToObject(e, "kind", kind);
	cJSON_AddRawToObject(e, "payload", raw);
	emit(e);
}

static void
capture_started(const char *dev, const struct meta *m, const char *capture_name,
    const cJSON *j, const char *raw)
{
	cJSON *e = gxp_event_new("capture_started");

	cJSON_AddStringToObject(e, "device", dev);
	cJSON_AddStringToObject(e, "image_name", m->image);
	cJSON_AddStringToObject(e, "capture_name", capture_name);
	gxp_meta_add_time(e, j, cur.received_us);
	cJSON_AddNumberToObject(e, "image_size", (double)m->size);
	if (m->chunk)
		cJSON_AddNumberToObject(e, "chunk_size", (double)m->chunk);
	else
		cJSON_AddNullToObject(e, "chunk_size");
	cJSON_AddNumberToObject(e, "total_chunks", (double)m->total);
	gxp_meta_add_extra(e, j);
	cJSON_AddRawToObject(e, "meta", raw);
	emit(e);
}

static void finalize(struct asm *a);
static void commit(void);

/* The device says the capture failed: reported, never assembled. */
static void
meta_device_error(const char *dev, const struct meta *m, struct asm *a,
    const cJSON *j, const char *raw)
{
	char tk[32], cname[GXP_CAPTURE_NAME_MAX + 1];

	if (a)
		asm_drop(a);
	timekey(tk, m);
	gxp_spool_lookup(cfg.spool, dev, m->image, m->size, tk, cname);
	capture_started(dev, m, cname, j, raw);
	failed_event(dev, m->image, cname, 2200, NULL, m->err);
}

static void
meta_start(const char *dev, struct asm *a, const struct meta *m,
    const char *capture_name, const cJSON *j, const char *raw)
{
	const char *why;

	if (a == NULL && (a = asm_new(dev, m->image, &why)) == NULL) {
		error_event(2200, dev, m->image, "%s", why);
		return;
	}
	meta_apply(a, m, capture_name);
	a->received_us = cur.received_us;
	a->active = clock_ms();
	if (partial_meta_write(a, raw) == -1) {
		error_event(2200, dev, m->image, "spool: partial/%s/meta.json: %s",
		    a->h.key, strerror(errno));
		asm_drop(a);
		return;
	}
	capture_started(dev, m, capture_name, j, raw);
	if (a->received == a->total)
		finalize(a);
	else
		schedule(a);
}

/* A marker in memory for a photo that is complete: the chunks a device
 * sends again for it are ignored for CAPTURE_TIMEOUT_MS. */
static void
mark_done(const char *dev, const char *name)
{
	heap_put(asm_alloc(dev, name, A_DONE), clock_ms() + cfg.timeout);
}

/* Metadata for a capture that is already complete: ignored while it waits
 * for gxp-upload, answered with ACK_OK again once it is stored. */
static void
meta_known(const char *dev, const struct meta *m, int state, struct asm *a)
{
	char msg[128];

	if (a) {
		counters[C_DUPS].v += a->received;
		asm_drop(a);
	}
	/* the chunks sent after this metadata are ignored for a while */
	mark_done(dev, m->image);
	if (state == GXP_SPOOL_STORED) {
		emit(gxp_ack_ok_event(dev, m->image));
		log_at(LOG_INFO, dev, m->image, "metadata again for a stored photo: ACK_OK again");
		return;
	}
	snprintf(msg, sizeof msg, "metadata again for a photo in %s/: ignored",
	    state == GXP_SPOOL_READY ? "ready" : "work");
	log_at(LOG_INFO, dev, m->image, msg);
}

static void
on_metadata(const char *dev, const char *raw, size_t len)
{
	char key[GXP_ENTRY_MAX + 1], tk[32], cname[GXP_CAPTURE_NAME_MAX + 1], why[256];
	cJSON *j = gxp_json_parse(raw, len);
	struct meta m;
	struct asm *a;
	int code, state;

	inbound(dev, "metadata", raw);
	if ((code = meta_parse(j, raw, len, &m, why, sizeof why)) != 0) {
		const char *name = gxp_json_str(j, "image_name");

		error_event(code, dev, m.image[0] ? m.image : name, "%s", why);
		cJSON_Delete(j);
		return;
	}
	gxp_spool_entry(key, sizeof key, dev, m.image);
	if ((a = asm_find(key)) && a->state == A_FINAL)
		commit();
	if (a && a->state == A_DONE) {
		asm_free(a);
		a = NULL;
	}
	if (m.err[0])
		meta_device_error(dev, &m, a, j, raw);
	else if (a && a->has_meta && same_capture(a, &m)) {
		a->active = clock_ms();
		log_at(LOG_INFO, dev, m.image, "metadata again for a capture in progress");
	} else {
		if (a && a->has_meta) {
			capture_failed(a, 2200, NULL, "superseded by a new capture of the same name");
			asm_drop(a);
			a = NULL;
		}
		timekey(tk, &m);
		state = gxp_spool_lookup(cfg.spool, dev, m.image, m.size, tk, cname);
		if (state != GXP_SPOOL_NEW)
			meta_known(dev, &m, state, a);
		else
			meta_start(dev, a, &m, cname, j, raw);
	}
	cJSON_Delete(j);
}

/* ---- chunks ---- */

struct chunk {
	const char *name, *id, *max, *b64, *pay_key, *pay_end;
	size_t nlen, idlen, maxlen, b64len;
	int has_id, has_name, pay;	/* pay: 0 absent or null, 1 string, 2 other */
};

static int
key_is(const char *k, size_t klen, const char *s)
{
	return strlen(s) == klen && memcmp(k, s, klen) == 0;
}

/* The members of a data message that matter; -1 if it is not an object. */
static int
chunk_scan(const char *t, size_t len, struct chunk *c)
{
	const char *k, *v;
	size_t pos = 0, klen, vlen;
	int rc;

	memset(c, 0, sizeof *c);
	while ((rc = gxp_json_next_member(t, len, &pos, 0, &k, &klen, &v, &vlen)) == 1) {
		if (key_is(k, klen, "payload")) {
			c->pay = *v == '"' ? 1 : *v == 'n' ? 0 : 2;
			c->b64 = v + 1;
			c->b64len = vlen - 2;
			c->pay_key = k - 1;
			c->pay_end = v + vlen;
		} else if (key_is(k, klen, "chunk_id")) {
			c->has_id = 1;
			c->id = v;
			c->idlen = vlen;
		} else if (key_is(k, klen, "image_name")) {
			c->has_name = 1;
			c->name = v;
			c->nlen = vlen;
		} else if (key_is(k, klen, "max_chunk_size")) {
			c->max = v;
			c->maxlen = vlen;
		}
	}
	return rc;
}

/* A whole number from JSON text: plain digits, or anything strtod reads
 * that is whole (1.0, 1e3); -1 if negative, fractional or not a number. */
static long long
whole_number(const char *v, size_t n)
{
	long long x = 0;
	char buf[64], *end;
	double d;

	if (n > 0 && n <= 15 && strspn(v, "0123456789") >= n) {
		for (size_t i = 0; i < n; i++)
			x = x * 10 + (v[i] - '0');
		return x;
	}
	if (n == 0 || n >= sizeof buf || !strchr("-0123456789", *v))
		return -1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	d = strtod(buf, &end);
	if (*end || d < 0)
		return -1;
	if (d > 9007199254740992.0)
		return LLONG_MAX;
	if (d != (double)(long long)d)
		return -1;
	return (long long)d;
}

static struct gxp_buf scratch, record, evbuf;

/* Decodes the chunk's payload into record (after room for the header):
 * the length, or -1 (missing: 2102), -2 (bad base64: 2103), -3 (too large). */
static long
chunk_decode(const struct chunk *c)
{
	const char *b64 = c->b64;
	size_t n = c->b64len;
	long got;

	if (c->pay == 0 || (c->pay == 1 && n == 0))
		return -1;
	if (c->pay != 1)
		return -2;
	if (memchr(b64, '\\', n)) {
		gxp_buf_grow(&scratch, n);
		if ((got = gxp_json_unescape(b64, n, scratch.p)) < 0)
			return -2;
		b64 = scratch.p;
		n = (size_t)got;
	}
	if (n / 4 * 3 > (size_t)cfg.max_chunk + 2)
		return -3;
	got = gxp_b64_decode(b64, n, (unsigned char *)record.p + GXP_CHUNK_HDR,
	    (size_t)cfg.max_chunk + 2);
	if (got < 0)
		return -2;
	return got > cfg.max_chunk ? -3 : got;
}

/* The inbound event of a chunk, built by hand (it is the hot path): the
 * payload as received with its "payload" member replaced by payload_bytes. */
static void
inbound_chunk(const char *dev, const char *t, size_t len, const struct chunk *c,
    long got)
{
	struct gxp_buf *b = &evbuf;
	char ts[32], rcv[32];

	if (cfg.publog != PUBLOG_ALL)
		return;
	fmt_time(ts, wall_us());
	fmt_time(rcv, cur.received_us);
	b->len = 0;
	gxp_buf_adds(b, "{\"event\":\"inbound\",\"v\":1,\"ts\":\"");
	gxp_buf_adds(b, ts);
	gxp_buf_adds(b, "\",\"device\":\"");
	gxp_buf_adds(b, dev);
	gxp_buf_adds(b, "\",\"topic\":");
	gxp_buf_add_jstr(b, cur.topic, strlen(cur.topic));
	gxp_buf_adds(b, ",\"received_at\":\"");
	gxp_buf_adds(b, rcv);
	gxp_buf_adds(b, "\",\"kind\":\"chunk\",\"payload\":");
	if (c->pay_key == NULL)
		gxp_buf_add(b, t, len);
	else {
		gxp_buf_add(b, t, (size_t)(c->pay_key - t));
		if (got >= 0)
			gxp_buf_addf(b, "\"payload_bytes\":%ld", got);
		else
			gxp_buf_adds(b, "\"payload_bytes\":null");
		gxp_buf_add(b, c->pay_end, len - (size_t)(c->pay_end - t));
	}
	gxp_buf_add(b, "}", 1);
	out_add(b->p, b->len);
}

/* The image name of a chunk, decoded into name; -1 if unusable. */
static int
chunk_name(const struct chunk *c, char name[GXP_NAME_MAX + 1])
{
	long n;

	if (!c->has_name || *c->name != '"' || c->nlen - 2 > GXP_NAME_MAX)
		return -1;
	n = gxp_json_unescape(c->name + 1, c->nlen - 2, name);
	if (n < 0 || strlen(name) != (size_t)n)
		return -1;
	return gxp_image_name_valid(name) ? 0 : -1;
}

static void chunk_store(const char *dev, const char *name, uint32_t id, uint32_t len,
    long long max);

static void
on_chunk(const char *dev, const char *t, size_t len, const struct chunk *c)
{
	char name[GXP_NAME_MAX + 1] = "";
	long got = chunk_decode(c);
	long long id, max = -1;

	inbound_chunk(dev, t, len, c, got);
	if (chunk_name(c, name) == -1) {
		error_event(2101, dev, NULL, "chunk: missing or invalid image_name");
		return;
	}
	if ((id = whole_number(c->id, c->idlen)) < 0) {
		error_event(2101, dev, name, "chunk: chunk_id must be a whole number from 0");
		return;
	}
	if (id >= cfg.max_chunks) {
		error_event(2200, dev, name, "refused: chunk_id %lld is beyond MAX_CHUNKS (%lld)",
		    id, cfg.max_chunks);
		return;
	}
	if (c->max && (max = whole_number(c->max, c->maxlen)) < 1) {
		error_event(2101, dev, name, "chunk %lld: max_chunk_size must be a positive "
		    "whole number", id);
		return;
	}
	if (got == -1)
		error_event(2102, dev, name, "chunk %lld: no payload", id);
	else if (got == -2)
		error_event(2103, dev, name, "chunk %lld: payload is not valid base64", id);
	else if (got == -3)
		error_event(2200, dev, name, "refused: chunk %lld is larger than "
		    "MAX_CHUNK_BYTES (%lld)", id, cfg.max_chunk);
	else if (max > 0 && got > max)
		error_event(2200, dev, name, "refused: chunk %lld holds %ld bytes, more than "
		    "its max_chunk_size %lld", id, got, max);
	else
		chunk_store(dev, name, (uint32_t)id, (uint32_t)got, max);
}

/* Appends the record (header and bytes) to the capture's log: one write. */
static int
chunk_append(struct asm *a, uint32_t id, uint32_t len)
{
	unsigned char *r = (unsigned char *)record.p;
	int fd = log_fd(a);
	ssize_t n;

	if (fd == -1)
		return -1;
	gxp_chunk_header(r, id, len, r + GXP_CHUNK_HDR);
	n = pwrite(fd, r, GXP_CHUNK_HDR + (size_t)len, (off_t)a->logsize);
	if (n == (ssize_t)(GXP_CHUNK_HDR + len))
		return 0;
	if (n >= 0)
		errno = ENOSPC;
	n = errno;
	if (ftruncate(fd, (off_t)a->logsize) == -1)
		gxp_log(LOG_WARN, "partial/%s/chunks: %s", a->h.key, strerror(errno));
	errno = (int)n;
	return -1;
}

/* Refusals of a chunk that a capture in progress cannot take, or NULL. */
static const char *
chunk_refused(const struct asm *a, uint32_t id, uint32_t len, long long max)
{
	static char why[160];

	if (a->has_meta && id >= a->total)
		snprintf(why, sizeof why, "refused: chunk_id %u is beyond total_chunk_count %u",
		    id, a->total);
	else if (a->has_meta && max < 0 && a->chunk_size && len > a->chunk_size)
		snprintf(why, sizeof why, "refused: chunk %u holds %u bytes, more than "
		    "max_chunks_size %u", id, len, a->chunk_size);
	else if (a->bytes + len > (uint64_t)cfg.max_image)
		snprintf(why, sizeof why, "refused: chunk %u would make the capture larger "
		    "than MAX_IMAGE_BYTES (%lld)", id, cfg.max_image);
	else
		return NULL;
	return why;
}

static void
chunk_store(const char *dev, const char *name, uint32_t id, uint32_t len, long long max)
{
	char key[GXP_ENTRY_MAX + 1];
	struct asm *a;
	const char *why;

	gxp_spool_entry(key, sizeof key, dev, name);
	if ((a = asm_find(key)) && a->state != A_OPEN) {
		counters[C_DUPS].v++;
		return;
	}
	if (a == NULL && gxp_spool_finished(cfg.spool, dev, name)) {
		/* a device's retry of a photo finished before a restart, which
		 * forgot the marker: no partial/ entry for it */
		mark_done(dev, name);
		counters[C_DUPS].v++;
		log_at(LOG_INFO, dev, name, "late chunks of a finished photo dropped");
		return;
	}
	if (a == NULL) {
		if ((a = asm_new(dev, name, &why)) == NULL) {
			error_event(2200, dev, name, "%s", why);
			return;
		}
		schedule(a);
	}
	if ((why = chunk_refused(a, id, len, max)) != NULL) {
		error_event(2200, dev, name, "%s", why);
		return;
	}
	idx_grow(a, id + 1);
	if (a->idx[id].len) {
		counters[C_DUPS].v++;
		a->dups++;
		return;
	}
	if (chunk_append(a, id, len) == -1) {
		error_event(2200, dev, name, "spool: partial/%s/chunks: %s", key, strerror(errno));
		return;
	}
	a->idx[id].off = (uint32_t)a->logsize + GXP_CHUNK_HDR;
	a->idx[id].len = len;
	a->logsize += GXP_CHUNK_HDR + len;
	a->bytes += len;
	a->active = clock_ms();
	if (!a->has_meta || id < a->total)
		a->received++;
	counters[C_CHUNKS].v++;
	if (a->has_meta && a->received == a->total)
		finalize(a);
}

/* ---- finishing a capture: build in tmp/, commit into ready/ or failed/ ---- */

struct pending {
	struct asm *a;
	char *tmp, *dest;	/* names below tmp/ and below ready/ or failed/ */
	int failed;
	long long bytes;
	size_t out_at;		/* where its event starts in the output */
};

static struct pending *pend;
static size_t npend;
static unsigned char *logbuf;	/* a chunk log, read whole */
static size_t logcap;
static uint32_t *nack_ids;
static size_t nack_cap;

static int
writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			return -1;
		for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--)
			w -= (ssize_t)iov->iov_len;
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Writes the chunks in chunk_id order, gathered from the log read whole. */
static int
write_chunks(int fd, const struct asm *a, const unsigned char *log, EVP_MD_CTX *ctx)
{
	struct iovec iov[256];
	int n = 0;

	for (uint32_t i = 0; i <= a->total; i++) {
		if (n == 256 || (i == a->total && n > 0)) {
			if (writev_all(fd, iov, n) == -1)
				return -1;
			n = 0;
		}
		if (i == a->total)
			break;
		iov[n].iov_base = (void *)(log + a->idx[i].off);
		iov[n].iov_len = a->idx[i].len;
		if (EVP_DigestUpdate(ctx, iov[n].iov_base, iov[n].iov_len) != 1)
			return -1;
		n++;
	}
	return 0;
}

/* Does the concatenation start FF D8 and end FF D9? */
static int
is_jpeg(const struct asm *a, const unsigned char *log)
{
	unsigned char head[2] = { 0 }, tail[2] = { 0 };
	size_t got = 0;

	for (uint32_t i = 0; i < a->total; i++) {
		const unsigned char *c = log + a->idx[i].off;
		uint32_t len = a->idx[i].len;

		for (uint32_t k = 0; k < len && got < 2; k++)
			head[got++] = c[k];
		if (len >= 2) {
			tail[0] = c[len - 2];
			tail[1] = c[len - 1];
		} else if (len == 1) {
			tail[0] = tail[1];
			tail[1] = c[0];
		}
	}
	return a->bytes >= 4 && head[0] == 0xff && head[1] == 0xd8 && tail[0] == 0xff &&
	    tail[1] == 0xd9;
}

/* tmp/<entry>/image.jpg from the chunk log, with its SHA-256. */
static int
build_image(struct asm *a, int dfd, long long *size, char hex[65], int *jpeg)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int in = log_fd(a), fd = -1, rc = -1;
	unsigned mdlen = 0;

	if (logcap < a->logsize) {
		logcap = a->logsize;
		logbuf = xrealloc(logbuf, logcap);
	}
	*size = 0;
	for (uint32_t i = 0; i < a->total; i++)
		*size += a->idx[i].len;
	if (ctx == NULL || in == -1 || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	if (pread(in, logbuf, a->logsize, 0) != (ssize_t)a->logsize) {
		errno = errno ? errno : EIO;
		goto out;
	}
	if ((fd = openat(dfd, "image.jpg", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) == -1 ||
	    write_chunks(fd, a, logbuf, ctx) == -1 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
		goto out;
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	*jpeg = is_jpeg(a, logbuf);
	rc = 0;
out:
	if (fd != -1 && close(fd) == -1)
		rc = -1;
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* partial/<entry>/meta.json as written when the metadata came. */
static cJSON *
partial_meta_read(const struct asm *a, char **raw)
{
	char path[GXP_ENTRY_MAX + 32], *text;
	const char *v;
	size_t len, vlen;
	cJSON *j;

	snprintf(path, sizeof path, "%s/meta.json", a->h.key);
	*raw = NULL;
	if (read_at(partial_fd, path, &text, &len) == -1)
		return NULL;
	j = gxp_json_parse(text, len);
	if (j && gxp_json_raw_member(text, len, "meta", &v, &vlen) == 0 &&
	    cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "meta")))
		*raw = xasprintf("%.*s", (int)vlen, v);
	free(text);
	if (*raw == NULL) {
		cJSON_Delete(j);
		j = NULL;
		errno = EINVAL;
	}
	return j;
}

static int64_t
json_time(const cJSON *j, const char *key, int64_t def)
{
	const char *s = gxp_json_str(j, key);
	int64_t us;

	return s && gxp_parse_time(s, &us) == 0 ? us : def;
}

/* failed/<entry>.<unix-seconds>, with .1, .2 ... when that is taken. */
static char *
failed_name(const char *entry)
{
	long long secs = wall_us() / 1000000;
	char *name = xasprintf("%s.%lld", entry, secs);
	int taken;

	for (int k = 1; ; k++) {
		taken = faccessat(failed_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
		for (size_t i = 0; i < npend && !taken; i++)
			taken = pend[i].failed && strcmp(pend[i].dest, name) == 0;
		if (!taken)
			return name;
		free(name);
		name = xasprintf("%s.%lld.%d", entry, secs, k);
	}
}

static int
reason_write(int dfd, int code, const char *reason)
{
	cJSON *j = cJSON_CreateObject();
	int rc;

	cJSON_AddNumberToObject(j, "code", code);
	cJSON_AddStringToObject(j, "reason", reason);
	add_time(j, "failed_at", wall_us());
	rc = write_json_at(dfd, "reason.json", j);
	cJSON_Delete(j);
	return rc;
}

static void
complete_event(const struct asm *a, const cJSON *sc, const char *entry, long long size,
    const char *hex)
{
	char dev[GXP_DEVICE_MAX + 1];
	cJSON *e = gxp_event_new("photo_complete");

	asm_dev(a, dev);
	cJSON_AddStringToObject(e, "device", dev);
	cJSON_AddStringToObject(e, "image_name", asm_name(a));
	cJSON_AddStringToObject(e, "capture_name", a->capture_name);
	cJSON_AddStringToObject(e, "captured_at", gxp_json_str(sc, "captured_at"));
	cJSON_AddStringToObject(e, "entry", entry);
	cJSON_AddNumberToObject(e, "image_bytes", (double)size);
	cJSON_AddStringToObject(e, "sha256", hex);
	if (a->chunk_size)
		cJSON_AddNumberToObject(e, "chunk_size", a->chunk_size);
	else
		cJSON_AddNullToObject(e, "chunk_size");
	cJSON_AddNumberToObject(e, "total_chunks", a->total);
	cJSON_AddNumberToObject(e, "nacks", a->nacks);
	emit(e);
}

static cJSON *
sidecar(const struct asm *a, const cJSON *pm, const char *raw, long long size,
    const char *hex)
{
	char dev[GXP_DEVICE_MAX + 1];
	struct gxp_sidecar in = { 0 };

	asm_dev(a, dev);
	in.device = dev;
	in.image_name = asm_name(a);
	in.capture_name = a->capture_name;
	in.meta = cJSON_GetObjectItemCaseSensitive(pm, "meta");
	in.meta_raw = raw;
	in.received_us = json_time(pm, "received_at", a->received_us);
	in.started_us = a->started_us;
	in.completed_us = wall_us();
	in.image_bytes = size;
	in.chunk_size = a->chunk_size;
	in.total_chunks = a->total;
	in.duplicates = a->dups;
	in.nacks = a->nacks;
	in.sha256 = hex;
	return gxp_sidecar_new(&in);
}

/* Puts tmp/<entry> on the list for the next commit, and its event in the
 * output where it belongs (the output waits for the commit). */
static void
queue_commit(struct asm *a, const char *entry, int code, const char *reason,
    const cJSON *sc, long long size, const char *hex)
{
	struct pending *p;
	char *path;

	pend = xrealloc(pend, (npend + 1) * sizeof *pend);
	p = &pend[npend];
	p->a = a;
	p->tmp = xstrdup(entry);
	p->failed = code != 0;
	p->dest = p->failed ? failed_name(entry) : xstrdup(entry);
	p->bytes = size;
	p->out_at = outq.len;
	npend++;
	path = xasprintf("%s/%s", p->failed ? "failed" : "ready", p->dest);
	if (code)
		capture_failed(a, code, path, "%s", reason);
	else
		complete_event(a, sc, path, size, hex);
	free(path);
	a->state = A_FINAL;
}

/* Whether errno says the spool is short of something that may come back
 * (space, quota, descriptors, memory) rather than that the capture is bad. */
static int
resource_errno(int e)
{
	return e == ENOSPC || e == EDQUOT || e == EMFILE || e == ENFILE ||
	    e == ENOMEM || e == EIO;
}

/* A capture whose photo could not be built: when the spool ran short of
 * space (or the like), its chunks stay in partial/ and finalization is
 * tried again every RETRANSMIT_DELAY_MS, without a timeout, until it
 * works; otherwise the capture fails. */
static void
finalize_failed(struct asm *a, const char *what, int e)
{
	char dev[GXP_DEVICE_MAX + 1];

	if (!resource_errno(e)) {
		capture_failed(a, 2200, NULL, "finalization failed: %s: %s", what, strerror(e));
		asm_drop(a);
		return;
	}
	asm_dev(a, dev);
	if (!a->postponed) {
		a->postponed = 1;
		error_event(2200, dev, asm_name(a), "spool: %s: %s: the photo is complete "
		    "in partial/ and is finalized when there is room again (tried every %lld ms)",
		    what, strerror(e), cfg.delay);
	}
	heap_put(a, clock_ms() + cfg.delay);
}

static void
finalize(struct asm *a)
{
	char entry[GXP_ENTRY_MAX + 1], dev[GXP_DEVICE_MAX + 1], hex[65] = "", reason[160] = "";
	cJSON *pm, *sc = NULL;
	long long size;
	char *raw;
	int dfd, jpeg = 0, code = 0;

	heap_del(a);
	asm_dev(a, dev);
	gxp_spool_entry(entry, sizeof entry, dev, a->capture_name);
	if ((pm = partial_meta_read(a, &raw)) == NULL) {
		finalize_failed(a, "partial meta.json", errno);
		return;
	}
	if ((mkdirat(tmp_fd, entry, 0755) == -1 && (errno != EEXIST ||
	    gxp_rmtree_at(tmp_fd, entry) == -1 || mkdirat(tmp_fd, entry, 0755) == -1)) ||
	    (dfd = openat(tmp_fd, entry, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		finalize_failed(a, "tmp/", errno);
		cJSON_Delete(pm);
		free(raw);
		return;
	}
	if (build_image(a, dfd, &size, hex, &jpeg) == 0) {
		if (size != a->image_size)
			snprintf(reason, sizeof reason, "size mismatch: assembled %lld bytes, "
			    "image_size says %u", size, a->image_size), code = 2202;
		else if (!jpeg)
			snprintf(reason, sizeof reason, "not a JPEG: the bytes do not start "
			    "with FF D8 and end with FF D9"), code = 2203;
		sc = sidecar(a, pm, raw, size, hex);
	}
	if (sc == NULL || write_json_at(dfd, "meta.json", sc) == -1 ||
	    (code && reason_write(dfd, code, reason) == -1)) {
		int e = errno;

		close(dfd);
		gxp_rmtree_at(tmp_fd, entry);
		finalize_failed(a, "tmp/", e);
	} else {
		close(dfd);
		log_close(a);
		if (a->postponed)
			log_at(LOG_INFO, dev, asm_name(a), "finalized now that the spool has room");
		queue_commit(a, entry, code, reason, sc, size, hex);
	}
	cJSON_Delete(sc);
	cJSON_Delete(pm);
	free(raw);
}

static int
fsync_at(int dfd, const char *path, int must)
{
	int fd = openat(dfd, path, O_RDONLY | O_CLOEXEC), rc;

	if (fd == -1)
		return must || errno != ENOENT ? -1 : 0;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* One photo: its files and directory; more: the whole file system at once,
 * far cheaper than an fsync per file. */
static int
sync_pending(void)
{
	char path[GXP_ENTRY_MAX + 32];
	const char *t = pend[0].tmp;

	if (npend > 1)
		return syncfs(spool_fd);
	snprintf(path, sizeof path, "%s/image.jpg", t);
	if (fsync_at(tmp_fd, path, 1) == -1)
		return -1;
	snprintf(path, sizeof path, "%s/meta.json", t);
	if (fsync_at(tmp_fd, path, 1) == -1)
		return -1;
	snprintf(path, sizeof path, "%s/reason.json", t);
	if (fsync_at(tmp_fd, path, 0) == -1)
		return -1;
	return fsync_at(tmp_fd, t, 1);
}

static _Noreturn void
commit_died(size_t i, const char *what)
{
	int e = errno;

	out_flush(pend[i].out_at);
	errno = e;
	gxp_die_errno(EXIT_TEMP, "%s/%s", cfg.spool, what);
}

static void
pending_done(struct pending *p, int64_t now)
{
	struct asm *a = p->a;

	if (!p->failed) {
		counters[C_COMPLETED].v++;
		counters[C_BYTES].v += (unsigned long long)p->bytes;
	}
	partial_remove(a);
	inflight_add(a, -1);
	a->state = A_DONE;
	free(a->idx);
	a->idx = NULL;
	a->ncap = 0;
	heap_put(a, now + cfg.timeout);	/* late chunks are ignored until then */
	free(p->tmp);
	free(p->dest);
}

/* Makes the photos finished since the last commit durable and visible,
 * then writes the output that reports them. */
static void
commit(void)
{
	int ready = 0, failed = 0;
	int64_t now = clock_ms();

	if (npend == 0) {
		out_flush(outq.len);
		return;
	}
	if (sync_pending() == -1)
		commit_died(0, "tmp: sync");
	for (size_t i = 0; i < npend; i++) {
		struct pending *p = &pend[i];

		if (renameat(tmp_fd, p->tmp, p->failed ? failed_fd : ready_fd, p->dest) == -1)
			commit_died(i, p->failed ? "failed/" : "ready/");
		*(p->failed ? &failed : &ready) += 1;
	}
	if ((ready && fsync(ready_fd) == -1) || (failed && fsync(failed_fd) == -1))
		commit_died(0, "fsync");
	for (size_t i = 0; i < npend; i++)
		pending_done(&pend[i], now);
	npend = 0;
	out_flush(outq.len);
}

/* ---- timers: NACK rounds and the capture timeout ---- */

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
		capture_failed(a, 2201, NULL, "no metadata within %lld ms; %u chunks dropped",
		    cfg.timeout, a->received);
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

static void
fire_live(void)
{
	int64_t now = gxp_mono_ms();

	while (nheap > 0 && heap[0]->due <= now)
		fire(heap[0], now);
}

/* Recovered captures' timers start when the clock does. */
static void
stamp_recovered(void)
{
	int64_t now = clock_ms();

	for (size_t i = 0; i < nrecovered; i++) {
		struct asm *a = recovered[i];

		a->started = a->active = now;
		if (a->started_us == 0)
			a->started_us = wall_us();
		if (a->has_meta && a->received == a->total)
			finalize(a);
		else
			schedule(a);
	}
	free(recovered);
	recovered = NULL;
	nrecovered = 0;
}

/* Replay: runs every timer due by to_us at its own time, then moves the
 * clock to to_us (never backwards). */
static void
advance(int64_t to_us)
{
	const char *line = cur.line, *topic = cur.topic;
	long long lineno = cur.lineno;

	if (!clock_valid) {
		replay_us = to_us;
		clock_valid = 1;
		stamp_recovered();
	}
	cur.lineno = 0;
	cur.topic = NULL;
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
}

/* ---- input lines ---- */

struct envelope {
	const char *topic, *tst, *payload, *enc;
	size_t topiclen, tstlen, plen, enclen;
	int event;
};

enum { ENV_PASS, ENV_BAD, ENV_OK };

static int
envelope(const char *line, size_t len, struct envelope *e)
{
	const char *k, *v;
	size_t pos = 0, klen, vlen;
	int rc;

	memset(e, 0, sizeof *e);
	while ((rc = gxp_json_next_member(line, len, &pos, GXP_JSON_SHALLOW, &k, &klen, &v,
	    &vlen)) == 1) {
		if (key_is(k, klen, "topic") && *v == '"')
			e->topic = v + 1, e->topiclen = vlen - 2;
		else if (key_is(k, klen, "tst") && *v == '"')
			e->tst = v + 1, e->tstlen = vlen - 2;
		else if (key_is(k, klen, "payload"))
			e->payload = v, e->plen = vlen;
		else if (key_is(k, klen, "payload_encoding") && *v == '"')
			e->enc = v + 1, e->enclen = vlen - 2;
		else if (key_is(k, klen, "event"))
			e->event = 1;
	}
	if (rc == -1) {
		size_t i = strspn(line, " \t\r");

		if (i == len || (line[i] != '{' && gxp_json_valid(line, len)))
			return ENV_PASS;
		return ENV_BAD;
	}
	return e->topic && e->payload && !e->event ? ENV_OK : ENV_PASS;
}

/* Does topic have a pattern's shape but a device id that is not valid? */
static int
bad_device_topic(const char *topic)
{
	static const char *const names[] = {
		"TOPIC_PATTERN_DATA", "TOPIC_PATTERN_STATUS", "TOPIC_PATTERN_ACK"
	};
	size_t tlen = strlen(topic);

	for (size_t i = 0; i < 3; i++) {
		const char *p = gxp_cfg(names[i]), *plus = strchr(p, '+');
		size_t pre, post;

		if (plus == NULL)
			continue;
		pre = (size_t)(plus - p);
		post = strlen(plus + 1);
		if (tlen > pre + post && strncmp(topic, p, pre) == 0 &&
		    strcmp(topic + tlen - post, plus + 1) == 0)
			return 1;
	}
	return 0;
}

static struct gxp_buf topicbuf, ptext;

static const char *
json_string(const char *s, size_t n, struct gxp_buf *b)
{
	long got;

	gxp_buf_grow(b, n);
	if ((got = gxp_json_unescape(s, n, b->p)) < 0 || strlen(b->p) != (size_t)got)
		return NULL;
	b->len = (size_t)got;
	return b->p;
}

/* The payload as JSON text in ptext: the object itself (-F %J, gxp-sub),
 * or the text of a string (-F %j); -1 for anything else. */
static int
payload_text(const struct envelope *e)
{
	long got;

	if (e->enc && e->enclen == 6 && memcmp(e->enc, "base64", 6) == 0)
		return -1;
	ptext.len = 0;
	if (*e->payload == '{')
		gxp_buf_add(&ptext, e->payload, e->plen);
	else if (*e->payload == '"') {
		gxp_buf_grow(&ptext, e->plen);
		if ((got = gxp_json_unescape(e->payload + 1, e->plen - 2, ptext.p)) < 0)
			return -1;
		ptext.len = (size_t)got;
	} else
		return -1;
	if (memchr(ptext.p, '\n', ptext.len) || memchr(ptext.p, '\r', ptext.len))
		ptext.len = gxp_json_minify(ptext.p, ptext.len);
	ptext.p[ptext.len] = '\0';
	return 0;
}

static void
on_status(const char *dev)
{
	cJSON *j = gxp_json_parse(ptext.p, ptext.len), *e;
	const cJSON *list;
	long long n;

	/* strictly: cJSON takes control characters and NULs, the raw copy in
	 * the events would not be JSON */
	if (!cJSON_IsObject(j) || !gxp_json_valid(ptext.p, ptext.len)) {
		error_event(2101, dev, NULL, "status: payload is not a JSON object");
		cJSON_Delete(j);
		return;
	}
	inbound(dev, "status", ptext.p);
	e = gxp_event_new("status");
	cJSON_AddStringToObject(e, "device", dev);
	cJSON_AddStringToObject(e, "topic", cur.topic);
	if (gxp_json_str(j, "status"))
		cJSON_AddStringToObject(e, "status", gxp_json_str(j, "status"));
	else
		cJSON_AddNullToObject(e, "status");
	list = cJSON_GetObjectItemCaseSensitive(j, "pending_list");
	if (gxp_json_int(j, "pendingImg", &n) == 1 || gxp_json_int(j, "pending_count", &n) == 1)
		cJSON_AddNumberToObject(e, "pending_count", (double)n);
	else if (cJSON_IsArray(list))
		cJSON_AddNumberToObject(e, "pending_count", cJSON_GetArraySize(list));
	else
		cJSON_AddNullToObject(e, "pending_count");
	if (cJSON_IsArray(list))
		cJSON_AddItemToObject(e, "pending_list", cJSON_Duplicate(list, 1));
	cJSON_AddRawToObject(e, "raw", ptext.p);
	emit(e);
	cJSON_Delete(j);
}

/* Chunk, metadata, or neither: then the line passes through (0). */
static int
on_data(const char *dev)
{
	struct chunk c;

	if (chunk_scan(ptext.p, ptext.len, &c) == -1)
		error_event(2101, dev, NULL, "data: payload is not a JSON object");
	else if (c.has_id)
		on_chunk(dev, ptext.p, ptext.len, &c);
	else if (c.has_name)
		on_metadata(dev, ptext.p, ptext.len);
	else
		return 0;
	return 1;
}

static void
received_at(const struct envelope *e)
{
	char buf[64];
	int64_t us;

	if (e->tst && e->tstlen < sizeof buf) {
		memcpy(buf, e->tst, e->tstlen);
		buf[e->tstlen] = '\0';
		if (gxp_parse_time(buf, &us) == 0) {
			if (cfg.replay)
				advance(us);
			cur.received_us = us;
			return;
		}
	}
	cur.received_us = wall_us();
}

/* UTF-8, checked eight bytes at a time while it is plain ASCII. */
static int
text_valid(const char *s, size_t n)
{
	uint64_t w, acc = 0;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		acc |= w;
	}
	for (; i < n; i++)
		acc |= (unsigned char)s[i];
	return (acc & 0x8080808080808080ULL) == 0 ||
	    gxp_utf8_valid((const unsigned char *)s, n);
}

static void
message(const struct envelope *e)
{
	char dev[GXP_DEVICE_MAX + 1];
	int kind;

	if (!text_valid(cur.line, cur.len)) {
		error_event(2101, NULL, NULL, "not valid UTF-8");
		return;
	}
	if ((cur.topic = json_string(e->topic, e->topiclen, &topicbuf)) == NULL) {
		error_event(2101, NULL, NULL, "topic is not a valid string");
		return;
	}
	if ((kind = gxp_topic_parse(cur.topic, dev)) == TOPIC_OTHER) {
		if (bad_device_topic(cur.topic))
			error_event(2101, NULL, NULL, "invalid device id in topic");
		else
			pass_line();
		return;
	}
	received_at(e);
	if (kind == TOPIC_ACK)
		;
	else if (payload_text(e) == -1)
		error_event(2101, dev, NULL, "%s: payload is not JSON",
		    kind == TOPIC_DATA ? "data" : "status");
	else if (kind == TOPIC_STATUS)
		on_status(dev);
	else if (!on_data(dev)) {
		pass_line();
		return;
	}
	counters[C_MESSAGES].v++;
}

static void
handle_line(char *line, size_t len, long long lineno, int truncated)
{
	struct envelope e;

	cur.line = line;
	cur.len = len;
	cur.lineno = lineno;
	cur.topic = NULL;
	switch (envelope(line, len, &e)) {
	case ENV_PASS:
		pass_line();
		break;
	case ENV_BAD:
		error_event(2101, NULL, NULL, truncated ? "truncated last line" : "not JSON");
		break;
	default:
		message(&e);
	}
	cur.topic = NULL;
	cur.lineno = 0;
}

/* ---- recovery of partial/ after a restart ---- */

static int
load_meta(struct asm *a)
{
	char *raw, why[256], tk[32], cname[GXP_CAPTURE_NAME_MAX + 1], dev[GXP_DEVICE_MAX + 1];
	const char *cn;
	cJSON *pm = partial_meta_read(a, &raw);
	struct meta m;
	int state = -1;

	if (pm == NULL)
		return errno == ENOENT ? 0 : -1;
	asm_dev(a, dev);
	cn = gxp_json_str(pm, "capture_name");
	if (meta_parse(cJSON_GetObjectItemCaseSensitive(pm, "meta"), raw, strlen(raw), &m,
	    why, sizeof why) == 0 && !m.err[0] && strcmp(m.image, asm_name(a)) == 0 &&
	    cn && gxp_capture_name_valid(cn)) {
		meta_apply(a, &m, cn);
		a->received_us = json_time(pm, "received_at", 0);
		a->started_us = json_time(pm, "started_at", 0);
		timekey(tk, &m);
		state = gxp_spool_lookup(cfg.spool, dev, m.image, m.size, tk, cname);
	}
	cJSON_Delete(pm);
	free(raw);
	return state == -1 ? -1 : state == GXP_SPOOL_NEW ? 1 : 2;
}

/* Rebuilds the index from the chunk log; a torn or bad tail is cut off. */
static void
load_log(struct asm *a)
{
	unsigned char h[GXP_CHUNK_HDR];
	unsigned char *data = (unsigned char *)record.p + GXP_CHUNK_HDR;
	int fd = log_fd(a);
	uint32_t id, len, sum;
	struct stat st;
	uint64_t off = 0;

	if (fd == -1 || fstat(fd, &st) == -1)
		return;
	while (pread(fd, h, sizeof h, (off_t)off) == (ssize_t)sizeof h &&
	    gxp_chunk_header_parse(h, &id, &len, &sum) == 0 && len > 0 &&
	    len <= cfg.max_chunk && id < cfg.max_chunks &&
	    pread(fd, data, len, (off_t)off + GXP_CHUNK_HDR) == (ssize_t)len &&
	    gxp_chunk_sum(id, len, data) == sum) {
		idx_grow(a, id + 1);
		if (a->idx[id].len == 0) {
			a->idx[id] = (struct span){ (uint32_t)off + GXP_CHUNK_HDR, len };
			a->bytes += len;
			if (!a->has_meta || id < a->total)
				a->received++;
		}
		off += GXP_CHUNK_HDR + len;
	}
	if ((uint64_t)st.st_size > off) {
		gxp_log(LOG_WARN, "partial/%s/chunks: cut off %lld bytes of torn tail",
		    a->h.key, (long long)st.st_size - (long long)off);
		if (ftruncate(fd, (off_t)off) == -1)
			gxp_log(LOG_WARN, "partial/%s/chunks: %s", a->h.key, strerror(errno));
	}
	a->logsize = off;
}

static void
recover_one(const char *entry)
{
	char dev[GXP_DEVICE_MAX + 1], name[GXP_CAPTURE_NAME_MAX + 1];
	struct asm *a;
	int rc;

	if (gxp_spool_entry_parse(entry, dev, name) == -1 || !gxp_image_name_valid(name)) {
		gxp_log(LOG_WARN, "partial/%s: not an entry name; removed", entry);
		gxp_rmtree_at(partial_fd, entry);
		return;
	}
	a = asm_alloc(dev, name, A_OPEN);
	if ((rc = load_meta(a)) == -1)
		gxp_log(LOG_WARN, "partial/%s/meta.json: unreadable; waiting for the metadata "
		    "again", entry);
	if (rc != 2)
		load_log(a);
	log_close(a);
	if (rc == 2 || (!a->has_meta && a->received == 0)) {
		if (rc == 2)
			gxp_log(LOG_INFO, "partial/%s: already complete; removed", entry);
		asm_drop(a);
		return;
	}
	recovered = xrealloc(recovered, (nrecovered + 1) * sizeof *recovered);
	recovered[nrecovered++] = a;
}

static int
cmp_names(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

static void
recover(void)
{
	DIR *d = fdopendir(dup(partial_fd));
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;

	if (d == NULL)
		gxp_die_errno(EXIT_TEMP, "%s/partial", cfg.spool);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			names = xrealloc(names, (n + 1) * sizeof *names);
			names[n++] = xstrdup(e->d_name);
		}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof *names, cmp_names);
	for (size_t i = 0; i < n; i++) {
		recover_one(names[i]);
		free(names[i]);
	}
	free(names);
	if (nrecovered)
		gxp_log(LOG_INFO, "carrying on with %zu partial captures from %s/partial",
		    nrecovered, cfg.spool);
}

/* ---- start-up, the main loop, the end ---- */

static void
usage(int code)
{
	fprintf(code ? stderr : stdout,
	    "usage: gxp-assemble [--check] [--flush-at-eof] [--replay] [--env file] [--spool dir]\n");
	exit(code);
}

static void
load_config(void)
{
	const char *pl = gxp_cfg("PUBLISH_LOG");

	cfg.spool = gxp_cfg("GXP_SPOOL");
	cfg.max_line = gxp_cfg_int("MAX_LINE_BYTES");
	cfg.max_image = gxp_cfg_int("MAX_IMAGE_BYTES");
	cfg.max_chunks = gxp_cfg_int("MAX_CHUNKS");
	cfg.max_chunk = gxp_cfg_int("MAX_CHUNK_BYTES");
	cfg.max_asm = gxp_cfg_int("MAX_ASSEMBLIES");
	cfg.max_asm_dev = gxp_cfg_int("MAX_ASSEMBLIES_PER_DEVICE");
	cfg.nack_ids = gxp_cfg_int("NACK_MAX_IDS");
	cfg.timeout = gxp_cfg_int("CAPTURE_TIMEOUT_MS");
	cfg.delay = gxp_cfg_int("RETRANSMIT_DELAY_MS");
	cfg.nack_max = gxp_cfg_int("RETRANSMIT_MAX");
	cfg.open_files = gxp_cfg_int("ASSEMBLE_OPEN_FILES");
	if (strcasecmp(pl, "all") == 0)
		cfg.publog = PUBLOG_ALL;
	else if (strcasecmp(pl, "no-chunks") == 0)
		cfg.publog = PUBLOG_NO_CHUNKS;
	else if (strcasecmp(pl, "off") == 0)
		cfg.publog = PUBLOG_OFF;
	else
		gxp_die(EXIT_PERM, "PUBLISH_LOG=%s (%s): expected all, no-chunks or off", pl,
		    gxp_cfg_source("PUBLISH_LOG"));
}

/* stored/ records past STORED_RETENTION_DAYS, at start and hourly. */
static void
prune_stored(void)
{
	static int64_t next;
	int n;

	if (gxp_mono_ms() < next)
		return;
	next = gxp_mono_ms() + 3600 * 1000;
	n = gxp_spool_prune_stored(cfg.spool, (int)gxp_cfg_int("STORED_RETENTION_DAYS"),
	    gxp_wall_us());
	if (n > 0)
		gxp_log(LOG_INFO, "pruned %d stored/ records older than STORED_RETENTION_DAYS", n);
}

static void
open_spool(void)
{
	char *lock = xasprintf("%s/assemble.lock", cfg.spool);
	int n;

	if (gxp_spool_init(cfg.spool) == -1)
		gxp_die_errno(gxp_path_error_permanent(errno) ? EXIT_PERM : EXIT_TEMP,
		    "spool %s", cfg.spool);
	if ((lock_fd = gxp_lock_file(lock)) == -1) {
		if (errno == EWOULDBLOCK)
			gxp_die(EXIT_PERM, "%s is held by another gxp-assemble: one per spool", lock);
		gxp_die_errno(EXIT_TEMP, "%s", lock);
	}
	free(lock);
	if ((spool_fd = open(cfg.spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		gxp_die_errno(EXIT_TEMP, "%s", cfg.spool);
	tmp_fd = open_dir("tmp");
	partial_fd = open_dir("partial");
	ready_fd = open_dir("ready");
	failed_fd = open_dir("failed");
	if ((n = gxp_spool_sweep_tmp(cfg.spool)) == -1)
		gxp_die_errno(EXIT_TEMP, "%s/tmp", cfg.spool);
	if (n > 0)
		gxp_log(LOG_INFO, "swept %d unfinished entries from %s/tmp", n, cfg.spool);
	prune_stored();
}

static long
count_entries(const char *area)
{
	char *dir = xasprintf("%s/%s", cfg.spool, area);
	char **names;
	long n = gxp_dir_names(dir, NULL, 0, &names);

	if (n > 0)
		gxp_names_free(names, n);
	free(dir);
	return n;
}

/* --check: the spool can be created, written and synced; one line. */
static int
check_spool(void)
{
	char *probe = xasprintf("%s/tmp/check.%ld", cfg.spool, (long)getpid());
	char *lock = xasprintf("%s/assemble.lock", cfg.spool);
	int fd, rc = EXIT_OK, busy = 0;

	if (gxp_spool_init(cfg.spool) == -1 ||
	    (fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) == -1 ||
	    gxp_write_all(fd, "gxp\n", 4) == -1 || fsync(fd) == -1 || close(fd) == -1) {
		printf("gxp-assemble: FAIL: spool %s: %s\n", cfg.spool, strerror(errno));
		rc = gxp_path_error_permanent(errno) ? EXIT_PERM : EXIT_TEMP;
	} else {
		unlink(probe);
		if ((fd = gxp_lock_file(lock)) == -1)
			busy = errno == EWOULDBLOCK;
		else
			close(fd);
		printf("gxp-assemble: ok: spool %s writable; %ld photos in progress, "
		    "%ld ready for upload%s\n", cfg.spool, count_entries("partial"),
		    count_entries("ready"), busy ? "; a gxp-assemble is running on it" : "");
	}
	free(probe);
	free(lock);
	return rc;
}

/* When stderr is a terminal and a file is replayed: how far it has got. */
static void
progress(struct gxp_lines *in, int done)
{
	static int64_t next;
	static off_t size = -1;
	struct stat st;
	char buf[96];
	off_t at;
	int n;

	static int tty = -1;

	if (tty == -1)
		tty = cfg.replay && isatty(2);
	if (!tty)
		return;
	if (size == -1)
		size = fstat(0, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : 0;
	if (!done && ((gxp_lines_number(in) & 4095) || gxp_mono_ms() < next))
		return;
	next = gxp_mono_ms() + 500;
	at = lseek(0, 0, SEEK_CUR);
	n = snprintf(buf, sizeof buf, "\r%s: %lld lines", gxp_progname, gxp_lines_number(in));
	if (size > 0 && at >= 0)
		n += snprintf(buf + n, sizeof buf - (size_t)n, ", %d%%", (int)(at * 100 / size));
	n += snprintf(buf + n, sizeof buf - (size_t)n, done ? "\n" : "   ");
	gxp_write_all(2, buf, (size_t)n);
}

static int
input_ready(int fd, int timeout)
{
	struct pollfd p = { fd, POLLIN, 0 };

	return poll(&p, 1, timeout) > 0;
}

/* Reads more input.  Before it would have to wait (a pipe with nothing in
 * it, or, live, until the next timer), the pending photos are committed
 * and the output written; a file is read on without waiting.  -1 at a
 * read error. */
static int
wait_input(struct gxp_lines *in, int regular)
{
	int fd = gxp_lines_fd(in), timeout = 1000;

	if (!regular && !input_ready(fd, 0)) {
		commit();
		prune_stored();
		if (!cfg.replay && nheap > 0) {
			int64_t t = heap[0]->due - gxp_mono_ms();

			timeout = t < 0 ? 0 : t < timeout ? (int)t : timeout;
		}
		if (!input_ready(fd, cfg.replay ? -1 : timeout))
			return 0;
	}
	if (gxp_lines_fill(in) == -1 && !gxp_sig_term) {
		gxp_log(LOG_ERROR, "stdin: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* What the reader gave (a line, or LINE_TOO_LONG), then a commit if
 * enough waits for one. */
static void
take(int rc, char *line, size_t len, long long lineno)
{
	if (rc == LINE_TOO_LONG) {
		cur.lineno = lineno;
		error_event(2101, NULL, NULL, "line longer than MAX_LINE_BYTES (%lld)",
		    cfg.max_line);
		cur.lineno = 0;
	} else
		handle_line(line, len, lineno, rc == LINE_TRUNCATED);
	if (npend >= COMMIT_MAX || outq.len >= OUT_MAX)
		commit();
}

static int
run(struct gxp_lines *in)
{
	struct stat st;
	char *line;
	size_t len;
	int rc, regular = fstat(gxp_lines_fd(in), &st) == 0 && S_ISREG(st.st_mode);

	while (!gxp_sig_term && !gxp_out_closed) {
		gxp_metrics_tick(0);
		if (!cfg.replay)
			fire_live();
		switch ((rc = gxp_lines_next(in, &line, &len))) {
		case LINE_AGAIN:
			if (wait_input(in, regular) == -1)
				return EXIT_TEMP;
			continue;
		case LINE_EOF:
			return EXIT_OK;
		default:
			take(rc, line, len, gxp_lines_number(in));
		}
		progress(in, 0);
	}
	return EXIT_OK;
}

/* --flush-at-eof: replay time runs on until every timer has fired. */
static void
flush_timers(void)
{
	while (nheap > 0) {
		if (heap[0]->due * 1000 > replay_us)
			replay_us = heap[0]->due * 1000;
		fire(heap[0], replay_us / 1000);
	}
}

/* Frees everything and puts the state back as it was at start: the fuzz
 * harnesses (fuzz/) run this file many times in one process. */
static void
free_all(void)
{
	while (captures.n > 0)
		for (size_t i = 0; i <= captures.mask; i++)
			while (captures.b[i])
				asm_free((struct asm *)captures.b[i]);
	free(captures.b);
	free(devices.b);
	captures = devices = (struct htab){ 0 };
	free(heap);
	heap = NULL;
	nheap = heapcap = 0;
	free(slots);
	slots = NULL;
	mru = lru = freeslot = -1;
	free(pend);
	pend = NULL;
	npend = 0;
	free(recovered);
	recovered = NULL;
	nrecovered = 0;
	free(logbuf);
	logbuf = NULL;
	logcap = 0;
	free(nack_ids);
	nack_ids = NULL;
	nack_cap = 0;
	gxp_buf_free(&outq);
	gxp_buf_free(&scratch);
	gxp_buf_free(&record);
	gxp_buf_free(&evbuf);
	gxp_buf_free(&topicbuf);
	gxp_buf_free(&ptext);
	close(spool_fd);
	close(tmp_fd);
	close(partial_fd);
	close(ready_fd);
	close(failed_fd);
	close(lock_fd);
	lock_fd = -1;
	seqno = 0;
	replay_us = 0;
	clock_valid = 0;
	for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
		counters[i].v = 0;
}

/* The spool opened and locked, partial/ read back: before the first line. */
static void
begin(void)
{
	open_spool();
	slots_init();
	gxp_buf_grow(&record, GXP_CHUNK_HDR + (size_t)cfg.max_chunk + 2);
	recover();
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'C' },
		{ "env", required_argument, NULL, 'e' },
		{ "flush-at-eof", no_argument, NULL, 'F' },
		{ "replay", no_argument, NULL, 'R' },
		{ "spool", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 }
	};
	const char *envfile = NULL, *spool = NULL;
	struct gxp_lines *in;
	struct stat st;
	int c, rc, check = 0;

	gxp_init(argv[0]);
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'C': check = 1; break;
		case 'e': envfile = optarg; break;
		case 'F': cfg.flush_at_eof = cfg.replay = 1; break;
		case 'R': cfg.replay = 1; break;
		case 's': spool = optarg; break;
		case 'H': usage(EXIT_OK); break;
		default: usage(EXIT_PERM);
		}
	}
	if (optind != argc || (spool && *spool == '\0'))
		usage(EXIT_PERM);
	gxp_config_common(envfile);
	if (spool)
		gxp_config_set("GXP_SPOOL", spool);
	load_config();
	if (check) {
		rc = check_spool();
		gxp_config_free();
		return rc;
	}
	if (fstat(0, &st) == 0 && S_ISREG(st.st_mode))
		cfg.replay = 1;
	gxp_signals_init();
	gxp_metrics_init(counters, sizeof counters / sizeof counters[0]);
	begin();
	in = gxp_lines_open(0, (size_t)cfg.max_line);
	if (!cfg.replay)
		stamp_recovered();
	rc = run(in);
	if (rc == EXIT_OK && cfg.flush_at_eof && !gxp_sig_term && !gxp_out_closed) {
		commit();
		flush_timers();
	}
	commit();
	progress(in, 1);
	gxp_metrics_tick(1);
	gxp_log(LOG_INFO, "%llu messages, %llu photos complete, %llu failed, "
	    "%llu NACK rounds, %lld captures left in flight",
	    counters[C_MESSAGES].v, counters[C_COMPLETED].v, counters[C_FAILED].v,
	    counters[C_NACKS].v, inflight);
	gxp_lines_free(in);
	free_all();
	gxp_config_free();
	return rc;
}
