/* segment.c: partial/, the captures in progress, kept as records appended
 * to a few shared files, partial/seg.<n>, instead of a directory and files
 * per capture: a chunk costs one write to the newest segment, a capture
 * creates no file at all.  A record names its capture (the entry name and
 * the time the capture started) and is one of: the metadata, a chunk, or
 * the end of the capture.  Memory holds where each capture's records are.
 *
 * Chunk records wait in memory, up to WBUF_MAX, and go in one write (at
 * the latest before input is read again or output written, so what a
 * SIGKILL loses was read and not yet reported, like the lines in the
 * reader's buffer); metadata records are written at once.
 *
 * Segments go oldest first: the oldest is removed once no capture in
 * progress has a record in it, so a capture's end record always outlives
 * the records it ends.  A capture that keeps an old segment (a slow device,
 * a photo waiting for room) has its records copied to the newest one when
 * the dead bytes behind it grow, so that the old segments can go.
 * gxp-spool(5) gives the record format. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "assemble.h"

#define REC_MAGIC 0x31525847u	/* "GXR1" */
#define NONE UINT32_MAX

struct segment {
	uint32_t n;
	int fd;
	uint64_t size;
	uint32_t pins;		/* captures whose oldest record is here */
};

static struct segment *segs;	/* oldest first; the last is the head */
static size_t nsegs;
static uint64_t total;		/* bytes in all segments */
static int collect_due;
static struct gxp_buf wbuf;	/* the head's records not written yet */
static uint64_t flushed;	/* the head's bytes written */

#define WBUF_MAX (256u << 10)	/* records kept before one write */
static uint32_t first_head;	/* the head this run started with */
static unsigned char *copybuf;
static size_t copycap;

/* ---- records ---- */

static void
put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> 8 * i);
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

/* The header and key (the sum field zero), then the payload. */
static uint32_t
rec_sum(const unsigned char *head, size_t headlen, const unsigned char *data, uint32_t len)
{
	uint64_t h = gxp_mix64(0x9e3779b97f4a7c15ULL ^ headlen, head, headlen);

	h = gxp_mix64(h ^ len, data, len);
	return (uint32_t)(h ^ h >> 32);
}

static size_t
rec_head(unsigned char *h, int type, const char *key, size_t klen, uint32_t id,
    uint32_t len, int64_t started_us, const void *data)
{
	memset(h, 0, REC_HDR);
	put32(h, REC_MAGIC);
	h[4] = (unsigned char)type;
	h[5] = (unsigned char)klen;
	put32(h + 8, id);
	put32(h + 12, len);
	put32(h + 16, (uint32_t)(uint64_t)started_us);
	put32(h + 20, (uint32_t)((uint64_t)started_us >> 32));
	memcpy(h + REC_HDR, key, klen);
	put32(h + 28, rec_sum(h, REC_HDR + klen, data, len));
	return REC_HDR + klen;
}

/* The longest payload a record may have: a chunk, or the metadata with
 * what goes beside it.  A record longer than that is taken for damage, so
 * lowering MAX_CHUNK_BYTES or MAX_LINE_BYTES below what partial/ holds
 * cuts it there. */
static uint32_t
rec_max(void)
{
	long long n = cfg.max_chunk > cfg.max_line + 1024 ? cfg.max_chunk : cfg.max_line + 1024;

	return (uint32_t)n;
}

/* A record at the start of p (avail bytes): its length, 0 if more bytes
 * are needed to tell, -1 if it is not a whole record. */
static long
rec_parse(const unsigned char *p, size_t avail, struct rec *r)
{
	unsigned char h[REC_HDR + GXP_ENTRY_MAX];
	size_t klen;

	if (avail < REC_HDR)
		return 0;
	klen = p[5];
	r->type = p[4];
	r->id = get32(p + 8);
	r->len = get32(p + 12);
	r->started_us = (int64_t)((uint64_t)get32(p + 20) << 32 | get32(p + 16));
	if (get32(p) != REC_MAGIC || r->type < REC_META || r->type > REC_END ||
	    klen < 3 || klen > GXP_ENTRY_MAX || r->len > rec_max() ||
	    (r->type == REC_END && r->len != 0) || (r->type != REC_END && r->len == 0))
		return -1;
	if (avail < REC_HDR + klen + r->len)
		return 0;
	memcpy(h, p, REC_HDR + klen);
	memset(h + 28, 0, 4);
	if (rec_sum(h, REC_HDR + klen, p + REC_HDR + klen, r->len) != get32(p + 28))
		return -1;
	memcpy(r->key, p + REC_HDR, klen);
	r->key[klen] = '\0';
	r->data = p + REC_HDR + klen;
	return (long)(REC_HDR + klen + r->len);
}

/* What a record of len bytes of payload takes on disk for a. */
uint32_t
rec_size(const struct asm *a, uint32_t len)
{
	return REC_HDR + a->h.klen + len;
}

/* ---- the segments ---- */

static struct segment *
seg_of(uint32_t n)
{
	if (nsegs == 0 || n < segs[0].n || n - segs[0].n >= nsegs)
		return NULL;
	return &segs[n - segs[0].n];
}

static int
seg_name(char buf[32], uint32_t n)
{
	return snprintf(buf, 32, "seg.%u", n);
}

static int
new_head(void)
{
	uint32_t n = nsegs ? segs[nsegs - 1].n + 1 : 1;
	char name[32];
	int fd;

	seg_name(name, n);
	if ((fd = openat(partial_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) == -1)
		return -1;
	segs = xrealloc(segs, (nsegs + 1) * sizeof *segs);
	segs[nsegs++] = (struct segment){ n, fd, 0, 0 };
	return 0;
}

static int
is_segment(const char *name, uint32_t *n)
{
	char *end;
	unsigned long v;

	if (strncmp(name, "seg.", 4) != 0 || name[4] < '1' || name[4] > '9')
		return 0;
	errno = 0;
	v = strtoul(name + 4, &end, 10);
	if (*end || errno || v >= NONE)
		return 0;
	*n = (uint32_t)v;
	return 1;
}

static int
cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;

	return a < b ? -1 : a > b;
}

/* The numbers of the segments below dfd, in order. */
static size_t
seg_numbers(int dfd, uint32_t **out)
{
	DIR *d = fdopendir(dup(dfd));
	struct dirent *e;
	uint32_t *v = NULL, n;
	size_t k = 0;

	if (d == NULL)
		gxp_die_errno(EXIT_TEMP, "%s/partial", cfg.spool);
	rewinddir(d);	/* the descriptor's offset is shared with its dup */
	while ((e = readdir(d)) != NULL)
		if (is_segment(e->d_name, &n)) {
			v = xrealloc(v, (k + 1) * sizeof *v);
			v[k++] = n;
		}
	closedir(d);
	if (k > 1)
		qsort(v, k, sizeof *v, cmp_u32);
	*out = v;
	return k;
}

/* The segments a run finds: opened, oldest first, with no gaps (a gap can
 * only be a segment removed by hand: what came before it goes too); and a
 * new one, the head, for what this run writes. */
void
seg_open(void)
{
	uint32_t *v;
	size_t k = seg_numbers(partial_fd, &v), from = 0;
	char name[32];
	struct stat st;
	int fd;

	for (size_t i = 1; i < k; i++)
		if (v[i] != v[i - 1] + 1)
			from = i;
	for (size_t i = 0; i < k; i++) {
		seg_name(name, v[i]);
		if (i < from) {
			gxp_log(LOG_WARN, "partial/%s: older than a missing segment; removed", name);
			unlinkat(partial_fd, name, 0);
			continue;
		}
		if ((fd = openat(partial_fd, name, O_RDWR | O_CLOEXEC)) == -1 ||
		    fstat(fd, &st) == -1)
			gxp_die_errno(EXIT_TEMP, "%s/partial/%s", cfg.spool, name);
		segs = xrealloc(segs, (nsegs + 1) * sizeof *segs);
		segs[nsegs++] = (struct segment){ v[i], fd, (uint64_t)st.st_size, 0 };
		total += (uint64_t)st.st_size;
	}
	free(v);
	if (new_head() == -1)
		gxp_die_errno(EXIT_TEMP, "%s/partial", cfg.spool);
	first_head = segs[nsegs - 1].n;
	flushed = 0;
}

/* Reads the records of one segment to fn; with repair, a tail that is not
 * a whole record is cut off. */
static void
scan_fd(int fd, const char *name, int repair, seg_rec_fn *fn, void *arg, uint32_t n)
{
	size_t cap = 1 << 20, have = 0, at = 0;
	unsigned char *buf = xmalloc(cap);
	uint64_t off = 0;
	struct rec r;
	ssize_t got;
	long len;

	for (;;) {
		if ((len = rec_parse(buf + at, have - at, &r)) > 0) {
			struct span s = { n, (uint32_t)(off + (uint64_t)(len - r.len)), r.len };

			fn(&r, &s, arg);
			at += (size_t)len;
			off += (uint64_t)len;
			continue;
		}
		if (len == -1)
			break;
		memmove(buf, buf + at, have - at);
		have -= at;
		at = 0;
		if (have == cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		if ((got = pread(fd, buf + have, cap - have, (off_t)(off + have))) <= 0)
			break;
		have += (size_t)got;
	}
	free(buf);
	if (repair && (got = lseek(fd, 0, SEEK_END)) > (ssize_t)off) {
		gxp_log(LOG_WARN, "partial/%s: cut off %lld bytes that are not a whole record",
		    name, (long long)got - (long long)off);
		if (ftruncate(fd, (off_t)off) == -1)
			gxp_log(LOG_WARN, "partial/%s: %s", name, strerror(errno));
		else {
			total -= (uint64_t)got - off;
			seg_of(n)->size = off;
		}
	}
}

/* Replays every record of the segments a run found, oldest first, to fn
 * (what fn appends goes to the new head, after them all); a segment whose
 * tail is not a whole record is cut back to the last one that is. */
void
seg_replay(seg_rec_fn *fn, void *arg)
{
	char name[32];

	for (size_t i = 0; i + 1 < nsegs; i++) {
		seg_name(name, segs[i].n);
		scan_fd(segs[i].fd, name, 1, fn, arg, segs[i].n);
	}
	collect_due = 1;
}

/* The records of the segments of another process's spool, read only
 * (--list, --check); -1 if partial/ cannot be read. */
long
seg_list(const char *spool, seg_rec_fn *fn, void *arg)
{
	char *dir = xasprintf("%s/partial", spool), name[32];
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd;
	uint32_t *v;
	size_t k;

	free(dir);
	if (dfd == -1)
		return -1;
	k = seg_numbers(dfd, &v);
	for (size_t i = 0; i < k; i++) {
		seg_name(name, v[i]);
		if ((fd = openat(dfd, name, O_RDONLY | O_CLOEXEC)) != -1) {
			scan_fd(fd, name, 0, fn, arg, v[i]);
			close(fd);
		}
	}
	free(v);
	close(dfd);
	return (long)k;
}

/* The oldest record of a capture pins its segment. */
void
seg_pin(struct asm *a, uint32_t n)
{
	struct segment *s;

	if (a->minseg != NONE && a->minseg <= n)
		return;
	if (a->minseg != NONE && (s = seg_of(a->minseg)) != NULL)
		s->pins--;
	if ((s = seg_of(n)) != NULL)
		s->pins++;
	a->minseg = n;
}

/* The buffered records could not be written (a full disk): cut off, and
 * the chunks they held forgotten by their captures, to be asked for
 * again. */
static void
lost(struct segment *s, int e)
{
	struct lost l = { s->n, (uint32_t)flushed };

	if (ftruncate(s->fd, (off_t)flushed) == -1)
		gxp_log(LOG_WARN, "partial/seg.%u: %s", s->n, strerror(errno));
	total -= s->size - flushed;
	s->size = flushed;
	wbuf.len = 0;
	errno = e;
	asm_each(chunk_lost, &l);
	errno = e;
}

/* How much of the first n bytes of wbuf are whole records. */
static size_t
whole_records(size_t n)
{
	size_t at = 0, len;

	while (at + REC_HDR <= n) {
		const unsigned char *p = (const unsigned char *)wbuf.p + at;

		len = REC_HDR + p[5] + get32(p + 12);
		if (at + len > n)
			break;
		at += len;
	}
	return at;
}

/* Writes the records waiting for the head: 0, or -1 with errno when
 * some are lost (and forgotten): the ones a short write (a full disk)
 * kept whole stay. */
int
seg_flush(void)
{
	struct segment *s;
	ssize_t n;
	size_t kept;

	if (wbuf.len == 0)
		return 0;
	s = &segs[nsegs - 1];
	n = pwrite(s->fd, wbuf.p, wbuf.len, (off_t)flushed);
	if (n == (ssize_t)wbuf.len) {
		flushed += wbuf.len;
		wbuf.len = 0;
		return 0;
	}
	kept = n > 0 ? whole_records((size_t)n) : 0;
	flushed += kept;
	lost(s, n >= 0 ? ENOSPC : errno);
	return -1;
}

/* A new head, the old one's records written (or lost) first. */
static int
new_head_flushed(void)
{
	seg_flush();
	if (new_head() == -1)
		return -1;
	flushed = 0;
	collect_due = 1;
	return 0;
}

/* Appends a record of a's to the head; where its payload is goes to *at.
 * A chunk or an end waits in memory (see the top); metadata is written at
 * once, with a single write.  -1 with errno, nothing written. */
int
seg_append(struct asm *a, int type, uint32_t id, const void *data, uint32_t len,
    struct span *at)
{
	unsigned char head[REC_HDR + GXP_ENTRY_MAX];
	uint32_t size = rec_size(a, len);
	struct segment *s;
	struct iovec iov[2];
	size_t hlen;
	ssize_t n;

	if ((nsegs == 0 || (segs[nsegs - 1].size > 0 &&
	    segs[nsegs - 1].size + size > seg_size())) && new_head_flushed() == -1)
		return -1;
	if (type == REC_META && seg_flush() == -1)
		return -1;
	s = &segs[nsegs - 1];
	hlen = rec_head(head, type, a->h.key, a->h.klen, id, len, a->started_us, data);
	if (type != REC_META) {
		gxp_buf_add(&wbuf, head, hlen);
		if (len)
			gxp_buf_add(&wbuf, data, len);
	} else {
		iov[0] = (struct iovec){ head, hlen };
		iov[1] = (struct iovec){ (void *)data, len };
		n = pwritev(s->fd, iov, 2, (off_t)s->size);
		if (n != (ssize_t)size) {
			int e = n >= 0 ? ENOSPC : errno;

			if (n > 0 && ftruncate(s->fd, (off_t)s->size) == -1)
				gxp_log(LOG_WARN, "partial/seg.%u: %s", s->n, strerror(errno));
			errno = e;
			return -1;
		}
		flushed += size;
	}
	if (at)
		*at = (struct span){ s->n, (uint32_t)s->size + (uint32_t)hlen, len };
	s->size += size;
	total += size;
	if (type != REC_END)
		seg_pin(a, s->n);
	/* when that fails, this record is among the ones lost */
	return wbuf.len >= WBUF_MAX ? seg_flush() : 0;
}

/* A record's payload into buf (span->len bytes); one still in memory is
 * written first. */
int
seg_read(const struct span *sp, void *buf)
{
	struct segment *s = seg_of(sp->seg);
	ssize_t n;

	if (s == NULL) {
		errno = ENOENT;
		return -1;
	}
	if (s == &segs[nsegs - 1] && sp->off + sp->len > flushed && seg_flush() == -1)
		return -1;
	n = pread(s->fd, buf, sp->len, sp->off);
	if (n == (ssize_t)sp->len)
		return 0;
	if (n >= 0)
		errno = EIO;
	return -1;
}

/* A capture and its records are done with. */
void
seg_release(struct asm *a)
{
	struct segment *s;

	if (a->minseg != NONE && (s = seg_of(a->minseg)) != NULL && s->pins > 0)
		s->pins--;
	a->minseg = NONE;
	if (nsegs > 1 && segs[0].pins == 0)
		collect_due = 1;
}

/* A capture's records copied to the head, so that the segment it kept
 * can go; the same bytes, new places.  The head may move on while they
 * are written: *lowest is the oldest segment the copies went to. */
static int
copy_span(struct asm *a, int type, uint32_t id, struct span *sp, uint32_t *lowest)
{
	struct span to;

	if (sp->len == 0)
		return 0;
	if (copycap < sp->len) {
		copycap = sp->len;
		copybuf = xrealloc(copybuf, copycap);
	}
	if (seg_read(sp, copybuf) == -1 || seg_append(a, type, id, copybuf, sp->len, &to) == -1)
		return -1;
	*sp = to;
	if (to.seg < *lowest)
		*lowest = to.seg;
	return 0;
}

static void
copy_forward(struct asm *a, void *arg)
{
	uint32_t tail = *(uint32_t *)arg, from = a->minseg, lowest = NONE;
	int rc = 0;

	if (a->minseg != tail || a->state != A_OPEN)
		return;
	rc = copy_span(a, REC_META, 0, &a->meta, &lowest);
	for (uint32_t i = 0; rc == 0 && a->idx && i < a->ncap; i++)
		rc = copy_span(a, REC_CHUNK, i, &a->idx[i], &lowest);
	for (uint32_t i = 0; rc == 0 && i < a->norph; i++)
		rc = copy_span(a, REC_CHUNK, a->orph[i].id, &a->orph[i].at, &lowest);
	/* the copies are written before the old segment can go; what a full
	 * disk loses of them is asked for again */
	if (rc == 0)
		rc = seg_flush();
	if (rc == -1) {
		/* what was copied is where the spans say; the old segment stays */
		gxp_log(LOG_WARN, "partial/seg.%u: cannot copy partial/%s forward: %s", from,
		    a->h.key, strerror(errno));
		return;
	}
	seg_of(from)->pins--;
	a->minseg = lowest;
	if (lowest != NONE)
		seg_of(lowest)->pins++;
}

static void
seg_drop_tail(void)
{
	char name[32];

	seg_name(name, segs[0].n);
	close(segs[0].fd);
	if (unlinkat(partial_fd, name, 0) == -1)
		gxp_log(LOG_WARN, "partial/%s: %s", name, strerror(errno));
	total -= segs[0].size;
	memmove(segs, segs + 1, --nsegs * sizeof *segs);
}

/* Removes the oldest segments that no capture needs; when what is dead
 * behind the live records grows past a quarter of them (and two
 * segments), the captures keeping the oldest segment are copied forward
 * first.  With all, every segment older than this run's first is emptied
 * so (recovery left records out).  A capture is copied at most twice a
 * call: one larger than a segment always spans two. */
void
seg_collect(int all)
{
	static int busy;
	uint64_t live;
	uint32_t tail;
	int copies = 0;

	if (busy || !(collect_due || all))
		return;
	busy = 1;
	collect_due = 0;
	while (nsegs > 1) {
		if (segs[0].pins == 0) {
			seg_drop_tail();
			continue;
		}
		live = (uint64_t)budget_used(B_DISK);
		if (!(all && segs[0].n < first_head) && total - live <= live / 4 + 2 * seg_size())
			break;
		if (++copies > 2 * (int)nsegs)
			break;
		tail = segs[0].n;
		asm_each(copy_forward, &tail);
		if (segs[0].pins > 0)
			break;
	}
	busy = 0;
}

uint64_t
seg_bytes(void)
{
	return total;
}

/* How large a segment grows before the next one starts: a 64th of the
 * spool, from 64 KiB to 8 MiB. */
uint64_t
seg_size(void)
{
	uint64_t n = (uint64_t)cfg.spool_max / 64;

	return n < (64 << 10) ? (64 << 10) : n > (8 << 20) ? (8 << 20) : n;
}

/* At the end of a run: the segments no capture needs are removed, the
 * newest too, so that a spool with nothing in progress has no segment. */
void
seg_tidy(void)
{
	seg_flush();
	collect_due = 1;
	seg_collect(0);
	seg_flush();
	if (nsegs == 1 && segs[0].pins == 0)
		seg_drop_tail();
}

/* Closes every segment (they stay for the next run). */
void
seg_close(void)
{
	for (size_t i = 0; i < nsegs; i++)
		close(segs[i].fd);
	free(segs);
	segs = NULL;
	nsegs = 0;
	total = 0;
	collect_due = 0;
	free(copybuf);
	copybuf = NULL;
	copycap = 0;
	gxp_buf_free(&wbuf);	/* what a SIGKILL would lose too */
	flushed = 0;
}
