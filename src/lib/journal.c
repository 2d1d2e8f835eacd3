/* journal.c: gxp-sub's journal (gxp-spool(5), FILES): every message as an
 * NDJSON line stamped "seq":N, appended to segment files named by the seq
 * of their first line and rotated at a size, so that what was received
 * outlives any process and is read back from the position gxp-upload
 * committed.  One process appends (under journal/lock); another thread of
 * it may sync and read: the segment list is behind a mutex.
 *
 * An append is a write(2): once it returns, the line survives a SIGKILL
 * of the process (it is in the page cache).  gxp_journal_sync() makes it
 * survive a power cut too; the caller runs it every JOURNAL_SYNC_MS. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gxp.h"

#define SEG_DIGITS 20
#define SEG_SUFFIX ".ndjson"

struct seg {
	uint64_t first;		/* the seq of its first line: its name */
	long long size;
};

struct gxp_journal {
	pthread_mutex_t mu;
	char *dir;
	int dirfd, lockfd, fd;	/* fd: the last segment, appended to */
	int *retired;		/* segments rotated away, to sync and close */
	size_t nretired;
	int created;		/* a segment was made since the last sync */
	struct seg *segs;	/* oldest first; the last is the one appended to */
	size_t nsegs;
	uint64_t next;
	long long seg_bytes, bytes;
};

static int
is_segment(const char *name)
{
	return strlen(name) == SEG_DIGITS + strlen(SEG_SUFFIX) &&
	    strspn(name, "0123456789") == SEG_DIGITS &&
	    strcmp(name + SEG_DIGITS, SEG_SUFFIX) == 0;
}

static char *
seg_name(uint64_t first)
{
	return xasprintf("%0*" PRIu64 SEG_SUFFIX, SEG_DIGITS, first);
}

char *
gxp_journal_path(const struct gxp_journal *j, uint64_t first)
{
	char *name = seg_name(first), *path = xasprintf("%s/%s", j->dir, name);

	free(name);
	return path;
}

/* The seq of a line gxp-sub wrote: it starts {"seq":N. */
int
gxp_journal_line_seq(const char *line, size_t len, uint64_t *seq)
{
	uint64_t n = 0;
	size_t i = 7;

	if (len < 9 || memcmp(line, "{\"seq\":", 7) != 0 || line[i] < '0' || line[i] > '9')
		return -1;
	for (; i < len && line[i] >= '0' && line[i] <= '9' && i < 27; i++)
		n = n * 10 + (uint64_t)(line[i] - '0');
	if (i == len || (line[i] != ',' && line[i] != '}'))
		return -1;
	*seq = n;
	return 0;
}

/* The offset just past the last newline before offset before, or 0. */
static long long
line_start(int fd, long long before)
{
	char buf[4096];

	while (before > 0) {
		size_t n = before < (long long)sizeof buf ? (size_t)before : sizeof buf;
		long long at = before - (long long)n;

		if (pread(fd, buf, n, (off_t)at) != (ssize_t)n)
			return -1;
		for (size_t i = n; i > 0; i--)
			if (buf[i - 1] == '\n')
				return at + (long long)i;
		before = at;
	}
	return 0;
}

/* The seq of the line that starts at off. */
static int
seq_at(int fd, long long off, uint64_t *seq)
{
	char head[32];
	ssize_t n = pread(fd, head, sizeof head, (off_t)off);

	return n > 0 ? gxp_journal_line_seq(head, (size_t)n, seq) : -1;
}

/* Cuts a last line without its newline (a write a crash cut short), and
 * finds the seq of the last line that has one; 0 when none has. */
static int
repair_last(struct gxp_journal *j, int fd, struct seg *s, uint64_t *last)
{
	long long end = line_start(fd, s->size), at;

	*last = 0;
	if (end == -1)
		return -1;
	if (end < s->size) {
		gxp_log(LOG_WARN, "%s/%020" PRIu64 SEG_SUFFIX ": removing a torn last line "
		    "(%lld bytes)", j->dir, s->first, s->size - end);
		if (ftruncate(fd, (off_t)end) == -1)
			return -1;
		s->size = end;
	}
	/* the last line that has a seq (a power cut may leave others) */
	while (end > 0) {
		if ((at = line_start(fd, end - 1)) == -1)
			return -1;
		if (seq_at(fd, at, last) == 0)
			break;
		end = at;
	}
	return 0;
}

static int
open_segment(struct gxp_journal *j, uint64_t first, int create)
{
	char *name = seg_name(first);
	int fd = openat(j->dirfd, name, O_RDWR | O_APPEND | O_CLOEXEC |
	    (create ? O_CREAT | O_EXCL : 0), 0644);

	free(name);
	return fd;
}

static void
seg_add(struct gxp_journal *j, uint64_t first, long long size)
{
	j->segs = xrealloc(j->segs, (j->nsegs + 1) * sizeof *j->segs);
	j->segs[j->nsegs].first = first;
	j->segs[j->nsegs].size = size;
	j->nsegs++;
	j->bytes += size;
}

static int rotate(struct gxp_journal *j);

/* Reads the segments on disk; repairs and opens the last for appending
 * (or makes the first). */
static int
load(struct gxp_journal *j, uint64_t committed)
{
	char **names;
	long n = gxp_dir_names(j->dir, is_segment, 0, &names);
	uint64_t last = 0;
	struct stat sb;
	struct seg *s;
	int fd;

	if (n == -1)
		return -1;
	for (long i = 0; i < n; i++) {
		if (fstatat(j->dirfd, names[i], &sb, 0) == -1) {
			gxp_names_free(names, n);
			return -1;
		}
		seg_add(j, strtoull(names[i], NULL, 10), (long long)sb.st_size);
	}
	gxp_names_free(names, n);
	j->next = committed + 1;
	if (j->nsegs == 0)
		return rotate(j);
	s = &j->segs[j->nsegs - 1];
	j->bytes -= s->size;
	if ((fd = open_segment(j, s->first, 0)) == -1 || repair_last(j, fd, s, &last) == -1) {
		int e = errno;

		if (fd != -1)
			close(fd);
		errno = e;
		return -1;
	}
	j->bytes += s->size;
	j->fd = fd;
	if (last + 1 > j->next)
		j->next = last + 1;
	if (s->first > j->next)
		j->next = s->first;
	return 0;
}

/* dir: made when missing, locked for this process.  NULL with errno
 * (EWOULDBLOCK: another process has it). */
struct gxp_journal *
gxp_journal_open(const char *dir, long long seg_bytes)
{
	struct gxp_journal *j = xcalloc(1, sizeof *j);
	char *lock = xasprintf("%s/lock", dir);
	int e;

	pthread_mutex_init(&j->mu, NULL);
	j->dir = xstrdup(dir);
	j->seg_bytes = seg_bytes;
	j->fd = j->dirfd = j->lockfd = -1;
	if (gxp_mkdirs(dir, 0755) == -1 || (j->lockfd = gxp_lock_file(lock)) == -1 ||
	    (j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    load(j, gxp_journal_committed(dir)) == -1) {
		e = errno;
		free(lock);
		gxp_journal_close(j);
		errno = e;
		return NULL;
	}
	free(lock);
	return j;
}

uint64_t
gxp_journal_next(const struct gxp_journal *j)
{
	return j->next;
}

/* A new last segment, its first line next; the old one is synced by the
 * next gxp_journal_sync() (called with mu held). */
static int
rotate(struct gxp_journal *j)
{
	int fd = open_segment(j, j->next, 1);

	if (fd == -1 && errno == EEXIST) {
		/* left empty by a crash between its creation and a line */
		char *name = seg_name(j->next);

		unlinkat(j->dirfd, name, 0);
		free(name);
		fd = open_segment(j, j->next, 1);
	}
	if (fd == -1)
		return -1;
	if (j->fd != -1) {
		j->retired = xrealloc(j->retired, (j->nretired + 1) * sizeof *j->retired);
		j->retired[j->nretired++] = j->fd;
	}
	j->fd = fd;
	j->created = 1;
	seg_add(j, j->next, 0);
	return 0;
}

/* Appends one line (with its newline), whose seq is gxp_journal_next();
 * -1 with errno when it could not be written whole (nothing of it stays). */
int
gxp_journal_append(struct gxp_journal *j, const char *line, size_t len)
{
	struct seg *s;
	int rc = 0;

	pthread_mutex_lock(&j->mu);
	s = j->nsegs ? &j->segs[j->nsegs - 1] : NULL;
	if ((s == NULL || j->fd == -1 || (s->size > 0 && s->size + (long long)len > j->seg_bytes)) &&
	    rotate(j) == -1)
		rc = -1;
	s = &j->segs[j->nsegs - 1];
	pthread_mutex_unlock(&j->mu);
	if (rc == -1)
		return -1;
	if (gxp_write_all(j->fd, line, len) == -1) {
		int e = errno;

		if (ftruncate(j->fd, (off_t)s->size) == -1)
			gxp_log(LOG_ERROR, "journal: cannot cut a failed append: %s", strerror(errno));
		errno = e;
		return -1;
	}
	pthread_mutex_lock(&j->mu);
	s->size += (long long)len;
	j->bytes += (long long)len;
	j->next++;
	pthread_mutex_unlock(&j->mu);
	return 0;
}

/* Makes every line appended so far durable: the segments rotated away and
 * the last one, and the directory when a segment was made. */
int
gxp_journal_sync(struct gxp_journal *j)
{
	int *old, fd, created, rc = 0;
	size_t n;

	pthread_mutex_lock(&j->mu);
	old = j->retired;
	n = j->nretired;
	j->retired = NULL;
	j->nretired = 0;
	created = j->created;
	j->created = 0;
	fd = j->fd == -1 ? -1 : dup(j->fd);
	pthread_mutex_unlock(&j->mu);
	for (size_t i = 0; i < n; i++) {
		if (fdatasync(old[i]) == -1)
			rc = -1;
		close(old[i]);
	}
	free(old);
	if (fd != -1) {
		if (fdatasync(fd) == -1)
			rc = -1;
		close(fd);
	}
	if (created && fsync(j->dirfd) == -1)
		rc = -1;
	return rc;
}

/* Removes the segments whose every line is committed (never the last);
 * returns the bytes the journal then holds. */
long long
gxp_journal_trim(struct gxp_journal *j, uint64_t committed)
{
	size_t k = 0;

	pthread_mutex_lock(&j->mu);
	while (k + 1 < j->nsegs && j->segs[k + 1].first <= committed + 1) {
		char *name = seg_name(j->segs[k].first);

		if (unlinkat(j->dirfd, name, 0) == -1 && errno != ENOENT) {
			gxp_log(LOG_WARN, "journal: %s/%s: %s", j->dir, name, strerror(errno));
			free(name);
			break;
		}
		free(name);
		j->bytes -= j->segs[k].size;
		k++;
	}
	if (k > 0) {
		memmove(j->segs, j->segs + k, (j->nsegs - k) * sizeof *j->segs);
		j->nsegs -= k;
	}
	pthread_mutex_unlock(&j->mu);
	return gxp_journal_bytes(j);
}

long long
gxp_journal_bytes(struct gxp_journal *j)
{
	long long b;

	pthread_mutex_lock(&j->mu);
	b = j->bytes;
	pthread_mutex_unlock(&j->mu);
	return b;
}

/* Where the next line will go: its segment and the bytes before it. */
void
gxp_journal_head(struct gxp_journal *j, uint64_t *seg, long long *end)
{
	pthread_mutex_lock(&j->mu);
	*seg = j->nsegs ? j->segs[j->nsegs - 1].first : j->next;
	*end = j->nsegs ? j->segs[j->nsegs - 1].size : 0;
	pthread_mutex_unlock(&j->mu);
}

/* The bytes from offset off of segment seg to the end of the journal. */
long long
gxp_journal_since(struct gxp_journal *j, uint64_t seg, long long off)
{
	long long b = 0;

	pthread_mutex_lock(&j->mu);
	for (size_t i = 0; i < j->nsegs; i++)
		if (j->segs[i].first >= seg)
			b += j->segs[i].size;
	pthread_mutex_unlock(&j->mu);
	return b > off ? b - off : 0;
}

/* The segment after seg, or 0 when seg is the last (or gone). */
uint64_t
gxp_journal_after(struct gxp_journal *j, uint64_t seg)
{
	uint64_t next = 0;

	pthread_mutex_lock(&j->mu);
	for (size_t i = 0; i < j->nsegs; i++)
		if (j->segs[i].first > seg) {
			next = j->segs[i].first;
			break;
		}
	pthread_mutex_unlock(&j->mu);
	return next;
}

/* The offset in the segment first of its first line with a seq above
 * after (size when none has); -1 (errno) when it cannot be read.  One
 * pass through a stdio buffer: memory does not grow with the segment. */
static long long
scan_segment(struct gxp_journal *j, uint64_t first, long long size, uint64_t after)
{
	char *name = seg_name(first), head[32];
	int fd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC), c, found = 0;
	long long off = 0, start = 0;
	size_t hn = 0;
	uint64_t seq;
	FILE *f;

	free(name);
	if (fd == -1 || (f = fdopen(fd, "r")) == NULL) {
		if (fd != -1)
			close(fd);
		return -1;
	}
	while (off < size && (c = getc_unlocked(f)) != EOF) {
		off++;
		if (c != '\n') {
			if (hn < sizeof head)
				head[hn++] = (char)c;
			continue;
		}
		if ((found = gxp_journal_line_seq(head, hn, &seq) == 0 && seq > after))
			break;
		start = off;
		hn = 0;
	}
	fclose(f);
	return found ? start : size;
}

/* Where reading starts to replay every line with a seq above after: the
 * segment and the offset in it. */
int
gxp_journal_find(struct gxp_journal *j, uint64_t after, uint64_t *seg, long long *off)
{
	struct seg s = { 0, 0 };
	size_t i, n;
	long long at;

	pthread_mutex_lock(&j->mu);
	n = j->nsegs;
	for (i = 0; i < n && j->segs[i].first <= after; i++)
		s = j->segs[i];
	if (i == 0 && n > 0)
		s = j->segs[0];
	pthread_mutex_unlock(&j->mu);
	if (n == 0) {
		gxp_journal_head(j, seg, off);
		return 0;
	}
	if ((at = scan_segment(j, s.first, s.size, after)) == -1)
		return -1;
	*seg = s.first;
	*off = at;
	return 0;
}

/* The whole lines among the last bytes of segment k, oldest first. */
static void
tail_of(struct gxp_journal *j, struct seg s, long long max,
    void (*fn)(const char *, size_t, void *), void *arg)
{
	char *name = seg_name(s.first), *buf, *line, *nl;
	int fd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC);
	long long from = s.size > max ? s.size - max : 0;
	size_t len = (size_t)(s.size - from);

	free(name);
	if (fd == -1)
		return;
	buf = xmalloc(len + 1);
	if (pread(fd, buf, len, (off_t)from) == (ssize_t)len) {
		line = buf;
		if (from > 0 && (line = memchr(buf, '\n', len)) != NULL)
			line++;		/* the first line is cut */
		for (; line && line < buf + len; line = nl + 1) {
			if ((nl = memchr(line, '\n', (size_t)(buf + len - line))) == NULL)
				break;
			fn(line, (size_t)(nl - line), arg);
		}
	}
	free(buf);
	close(fd);
}

/* Calls fn for each whole line among the journal's last max bytes (the
 * last two segments at most), oldest first. */
void
gxp_journal_tail(struct gxp_journal *j, long long max,
    void (*fn)(const char *, size_t, void *), void *arg)
{
	struct seg s[2];
	size_t n;

	pthread_mutex_lock(&j->mu);
	n = j->nsegs < 2 ? j->nsegs : 2;
	for (size_t i = 0; i < n; i++)
		s[i] = j->segs[j->nsegs - n + i];
	pthread_mutex_unlock(&j->mu);
	if (n == 2 && s[1].size < max)
		tail_of(j, s[0], max - s[1].size, fn, arg);
	if (n > 0)
		tail_of(j, s[n - 1], max, fn, arg);
}

void
gxp_journal_close(struct gxp_journal *j)
{
	if (j == NULL)
		return;
	if (j->dirfd != -1)
		gxp_journal_sync(j);
	if (j->fd != -1)
		close(j->fd);
	if (j->dirfd != -1)
		close(j->dirfd);
	if (j->lockfd != -1)
		close(j->lockfd);
	pthread_mutex_destroy(&j->mu);
	free(j->segs);
	free(j->dir);
	free(j);
}

/* The seq of the last line in the journal in dir, read without taking
 * it (0 when there is none). */
uint64_t
gxp_journal_last(const char *dir)
{
	char **names;
	long n = gxp_dir_names(dir, is_segment, 1, &names);
	uint64_t seq = 0;

	for (long i = n - 1; i >= 0 && seq == 0; i--) {
		int fd = open(names[i], O_RDONLY | O_CLOEXEC);
		struct stat sb;
		long long end, at;

		if (fd == -1 || fstat(fd, &sb) == -1) {
			if (fd != -1)
				close(fd);
			continue;
		}
		for (end = line_start(fd, (long long)sb.st_size); end > 0 && seq == 0; end = at)
			if ((at = line_start(fd, end - 1)) == -1 || seq_at(fd, at, &seq) == -1)
				seq = 0;
		close(fd);
	}
	if (n > 0)
		gxp_names_free(names, n);
	return seq;
}

/* The seq gxp-upload last committed in dir/committed: every row caused by
 * a line up to it is durable.  0 when there is none. */
uint64_t
gxp_journal_committed(const char *dir)
{
	char *path = xasprintf("%s/committed", dir), *text;
	size_t len;
	long long seq = 0;
	cJSON *j;

	if (gxp_read_file(path, &text, &len, 1 << 16) == 0) {
		j = gxp_json_parse(text, len);
		if (gxp_json_int(j, "seq", &seq) != 1 || seq < 0) {
			gxp_log(LOG_WARN, "%s: no seq in it; replaying the whole journal", path);
			seq = 0;
		}
		cJSON_Delete(j);
		free(text);
	}
	free(path);
	return (uint64_t)seq;
}
