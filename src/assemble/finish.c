/* finish.c: a capture with every chunk: its photo gathered from partial/,
 * checked (size, JPEG markers), written to tmp/ with its sidecar, then
 * committed, with every photo finished since the last commit, into ready/
 * (or failed/): the files of all of them synced together, renamed, and
 * the directory synced once, before the output that reports them is
 * written and their records in partial/ are ended. */
#define _GNU_SOURCE	/* sync_file_range(2) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "assemble.h"

struct pending {
	struct asm *a;
	char *tmp, *dest;	/* ready: tmp/<entry>.jpg, .json; failed: tmp/<entry>/ */
	int failed, fd[2];	/* the photo and its sidecar, open until the sync */
	long long bytes, disk;	/* the photo's; and with its sidecar */
	size_t out_at;		/* where its event starts in the output */
};

static struct pending *pend;
static size_t npend;
static unsigned char *photo;	/* the photo being finished */
static size_t photocap;

/* The photo's bytes gathered from partial/ in chunk_id order, with its
 * SHA-256. */
static int
gather(struct asm *a, long long *size, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	size_t n = 0;

	for (uint32_t i = 0; i < a->total; i++)
		n += a->idx[i].len;
	if (photocap < n + 1) {
		photocap = n + 1;
		photo = xrealloc(photo, photocap);
	}
	*size = (long long)n;
	n = 0;
	for (uint32_t i = 0; i < a->total; i++) {
		if (seg_read(&a->idx[i], photo + n) == -1)
			return -1;
		n += a->idx[i].len;
	}
	if (EVP_Digest(photo, n, md, &mdlen, EVP_sha256(), NULL) != 1) {
		errno = ENOMEM;
		return -1;
	}
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* Does it start FF D8 and end FF D9? */
static int
is_jpeg(size_t n)
{
	return n >= 4 && photo[0] == 0xff && photo[1] == 0xd8 && photo[n - 2] == 0xff &&
	    photo[n - 1] == 0xd9;
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
		error_event(RC_SPOOL_ERROR, 2200, dev, asm_name(a), "spool: %s: %s: the photo "
		    "is complete in partial/ and is finalized when there is room again (tried "
		    "every %lld ms)", what, strerror(e), cfg.delay);
	}
	heap_put(a, clock_ms() + cfg.delay);
}

static struct pending *
pending_new(struct asm *a, const char *entry, int code, long long size)
{
	char *dest = code ? failed_name(entry) : xstrdup(entry);
	struct pending *p;

	pend = xrealloc(pend, (npend + 1) * sizeof *pend);
	p = &pend[npend++];
	memset(p, 0, sizeof *p);
	p->a = a;
	p->failed = code != 0;
	p->tmp = xstrdup(entry);
	p->dest = dest;
	p->fd[0] = p->fd[1] = -1;
	p->bytes = size;
	return p;
}

/* A rejected photo: tmp/<entry>/ with image.jpg, meta.json, reason.json. */
static int
build_failed(const char *entry, const cJSON *sc, long long size, int code,
    const char *reason)
{
	int dfd, rc = -1;

	if ((mkdirat(tmp_fd, entry, 0755) == -1 && (errno != EEXIST ||
	    gxp_rmtree_at(tmp_fd, entry) == -1 || mkdirat(tmp_fd, entry, 0755) == -1)) ||
	    (dfd = openat(tmp_fd, entry, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	if (write_at(dfd, "image.jpg", photo, (size_t)size, 0) == 0 &&
	    write_json_at(dfd, "meta.json", sc) == 0 && reason_write(dfd, code, reason) == 0)
		rc = 0;
	close(dfd);
	if (rc == -1) {
		int e = errno;

		gxp_rmtree_at(tmp_fd, entry);
		errno = e;
	}
	return rc;
}

/* A valid photo: tmp/<entry>.jpg and tmp/<entry>.json, kept open; the
 * sidecar's length, or -1. */
static int
build_ready(const char *entry, const cJSON *sc, long long size, int fd[2])
{
	char name[GXP_ENTRY_MAX + 8], *text = gxp_json_print(sc);
	long long len = (long long)strlen(text);
	int e;

	snprintf(name, sizeof name, "%s.jpg", entry);
	if ((fd[0] = write_at(tmp_fd, name, photo, (size_t)size, 1)) != -1) {
		snprintf(name, sizeof name, "%s.json", entry);
		fd[1] = write_at(tmp_fd, name, text, (size_t)len, 1);
	}
	free(text);
	if (fd[1] != -1)
		return (int)len;
	e = errno;
	if (fd[0] != -1)
		close(fd[0]);
	fd[0] = -1;
	snprintf(name, sizeof name, "%s.jpg", entry);
	unlinkat(tmp_fd, name, 0);
	errno = e;
	return -1;
}

/* The photo and its sidecar in tmp/, on the list for the next commit, and
 * its event in the output where it belongs (the output waits for it). */
static int
build(struct asm *a, const char *entry, const cJSON *pm, const char *raw)
{
	char hex[65] = "", reason[160] = "", *path;
	long long size;
	int code = 0, side = 0, fd[2] = { -1, -1 };
	struct pending *p;
	cJSON *sc;

	if (gather(a, &size, hex) == -1)
		return -1;
	if (size != a->image_size)
		snprintf(reason, sizeof reason, "size mismatch: assembled %lld bytes, "
		    "image_size says %u", size, a->image_size), code = 2202;
	else if (!is_jpeg((size_t)size))
		snprintf(reason, sizeof reason, "not a JPEG: the bytes do not start "
		    "with FF D8 and end with FF D9"), code = 2203;
	sc = sidecar(a, pm, raw, size, hex);
	if ((side = code ? build_failed(entry, sc, size, code, reason) :
	    build_ready(entry, sc, size, fd)) == -1) {
		cJSON_Delete(sc);
		return -1;
	}
	p = pending_new(a, entry, code, size);
	p->fd[0] = fd[0];
	p->fd[1] = fd[1];
	p->disk = size + side;
	p->out_at = out_len();
	path = xasprintf(code ? "failed/%s" : "ready/%s", p->dest);
	if (code)
		capture_failed(a, code, path, "%s", reason);
	else
		complete_event(a, sc, path, size, hex);
	free(path);
	cJSON_Delete(sc);
	a->state = A_FINAL;
	return 0;
}

void
finalize(struct asm *a)
{
	char entry[GXP_ENTRY_MAX + 1], dev[GXP_DEVICE_MAX + 1];
	cJSON *pm;
	char *raw;

	heap_del(a);
	asm_dev(a, dev);
	gxp_spool_entry(entry, sizeof entry, dev, a->capture_name);
	/* another capture's photo of that name waits in tmp/: it goes first */
	for (size_t i = 0; i < npend; i++)
		if (strcmp(pend[i].tmp, entry) == 0) {
			commit();
			break;
		}
	/* the chunks must be in partial/: a full disk may have lost some */
	if (seg_flush() == -1 && a->received < a->total) {
		a->postponed = 0;
		schedule(a);
		return;
	}
	if ((pm = partial_meta_read(a, &raw)) == NULL) {
		finalize_failed(a, "partial/", errno);
		return;
	}
	if (build(a, entry, pm, raw) == -1)
		finalize_failed(a, "tmp/", errno);
	else if (a->postponed)
		log_at(LOG_INFO, dev, asm_name(a), "finalized now that the spool has room");
	cJSON_Delete(pm);
	free(raw);
}

static int
fsync_at(int dfd, const char *path)
{
	int fd = openat(dfd, path, O_RDONLY | O_CLOEXEC), rc;

	if (fd == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* A rejected photo's directory in tmp/: each file and the directory. */
static int
sync_failed(const char *entry)
{
	static const char *const files[] = { "image.jpg", "meta.json", "reason.json" };
	char path[GXP_ENTRY_MAX + 32];

	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s/%s", entry, files[i]);
		if (fsync_at(tmp_fd, path) == -1)
			return -1;
	}
	return fsync_at(tmp_fd, entry);
}

/* Every pending photo's files on disk: their write-back started for all
 * of them first, so that the disk takes them together, then each waited
 * for.  Nothing else on the file system is synced. */
static int
sync_pending(void)
{
	for (size_t i = 0; i < npend; i++)
		for (int k = 0; k < 2; k++)
			if (pend[i].fd[k] != -1)
				sync_file_range(pend[i].fd[k], 0, 0, SYNC_FILE_RANGE_WRITE);
	for (size_t i = 0; i < npend; i++) {
		if (pend[i].failed && sync_failed(pend[i].tmp) == -1)
			return -1;
		for (int k = 0; k < 2; k++)
			if (pend[i].fd[k] != -1 && fdatasync(pend[i].fd[k]) == -1)
				return -1;
	}
	return 0;
}

static _Noreturn void
commit_died(size_t i, const char *what)
{
	int e = errno;

	out_flush(pend[i].out_at);
	errno = e;
	gxp_die_errno(EXIT_TEMP, "%s/%s", cfg.spool, what);
}

/* tmp/<entry>.jpg, then .json, into ready/: the sidecar last, so that
 * ready/<entry>.json always has its photo beside it. */
static int
rename_ready(const struct pending *p)
{
	char name[GXP_ENTRY_MAX + 8];

	snprintf(name, sizeof name, "%s.jpg", p->tmp);
	if (renameat(tmp_fd, name, ready_fd, name) == -1)
		return -1;
	snprintf(name, sizeof name, "%s.json", p->tmp);
	return renameat(tmp_fd, name, ready_fd, name);
}

static void
pending_done(struct pending *p)
{
	if (!p->failed) {
		counters[C_COMPLETED].v++;
		counters[C_BYTES].v += (unsigned long long)p->bytes;
	}
	spool_ready_bytes += p->disk;
	asm_done(p->a);
	for (int k = 0; k < 2; k++)
		if (p->fd[k] != -1)
			close(p->fd[k]);
	free(p->tmp);
	free(p->dest);
}

/* Makes the photos finished since the last commit durable and visible,
 * then writes the output that reports them. */
void
commit(void)
{
	int ready = 0, failed = 0;

	if (npend == 0) {
		seg_flush();
		out_flush_all();
		seg_collect(0);
		return;
	}
	seg_flush();	/* what it cannot write is asked for again */
	if (sync_pending() == -1)
		commit_died(0, "tmp: sync");
	for (size_t i = 0; i < npend; i++) {
		struct pending *p = &pend[i];

		if (p->failed ? renameat(tmp_fd, p->tmp, failed_fd, p->dest) :
		    rename_ready(p))
			commit_died(i, p->failed ? "failed/" : "ready/");
		*(p->failed ? &failed : &ready) += 1;
	}
	if ((ready && fsync(ready_fd) == -1) || (failed && fsync(failed_fd) == -1))
		commit_died(0, "fsync");
	for (size_t i = 0; i < npend; i++)
		pending_done(&pend[i]);
	npend = 0;
	out_flush_all();
	seg_collect(0);
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
		for (int k = 0; k < 2; k++)
			if (pend[i].fd[k] != -1)
				close(pend[i].fd[k]);
		free(pend[i].tmp);
		free(pend[i].dest);
	}
	free(pend);
	pend = NULL;
	npend = 0;
	free(photo);
	photo = NULL;
	photocap = 0;
}
