/* finish.c: a capture with every chunk: its photo built in tmp/<entry>
 * from the chunk log, checked (size, JPEG markers) and given its meta.json,
 * then committed, with every photo finished since the last commit, into
 * ready/ or failed/ by one sync and a rename each, before the output that
 * reports them is written. */
#define _GNU_SOURCE	/* syncfs(2) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "assemble.h"

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
	p->out_at = out_len();
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

void
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
void
commit(void)
{
	int ready = 0, failed = 0;
	int64_t now = clock_ms();

	if (npend == 0) {
		out_flush(out_len());
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
	out_flush(out_len());
}

/* Photos built in tmp/ and waiting for the next commit. */
size_t
commit_pending(void)
{
	return npend;
}

/* Forgets the photos waiting for a commit (tmp/ is swept at the next
 * start) and the buffers. */
void
finish_free(void)
{
	for (size_t i = 0; i < npend; i++) {
		free(pend[i].tmp);
		free(pend[i].dest);
	}
	free(pend);
	pend = NULL;
	npend = 0;
	free(logbuf);
	logbuf = NULL;
	logcap = 0;
}
