/* store_sync.c: files written without a sync of their own and made
 * durable together, with one sync for many (gxp-upload's local store and
 * its spool records). */
#define _GNU_SOURCE	/* syncfs(2) */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

#define ONE_BY_ONE 4	/* files synced one by one; more: syncfs(2) */

/* The directory of tmp, made because a first try found it missing. */
static int
make_parent(struct syncset *s, char *tmp)
{
	char *slash = strrchr(tmp, '/');
	int rc;

	if (slash == NULL || slash == tmp) {
		errno = ENOENT;
		return -1;
	}
	*slash = '\0';
	rc = gxp_mkdirs(tmp, 0755);
	*slash = '/';
	if (rc == 0 && s)
		s->made_dirs = 1;
	return rc;
}

static int
tmp_name(char tmp[PATH_MAX], const char *path)
{
	if (snprintf(tmp, PATH_MAX, "%s.tmp.%ld", path, (long)getpid()) < PATH_MAX)
		return 0;
	errno = ENAMETOOLONG;
	return -1;
}

/* tmp renamed over path, which is then durable after the next sync. */
static int
put_in_place(struct syncset *s, const char *tmp, const char *path)
{
	if (rename(tmp, path) == -1) {
		int e = errno;

		unlink(tmp);
		errno = e;
		return -1;
	}
	/* renaming a link over another link to the same file does nothing */
	unlink(tmp);
	if (s) {
		gxp_buf_add(&s->paths, path, strlen(path) + 1);
		s->n++;
	}
	return 0;
}

/* path.tmp.PID, written and renamed over path; the directories are made
 * when the first try finds them missing.  The file and its directory are
 * durable after the next syncset_sync() of s; with s NULL, whenever the
 * system writes them back (a hint that a crash may lose). */
int
syncset_write(struct syncset *s, const char *path, const void *data, size_t len)
{
	char tmp[PATH_MAX];
	int fd, e, rc;

	if (tmp_name(tmp, path) == -1)
		return -1;
	unlink(tmp);	/* left by a crashed process that had our pid */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd == -1 && errno == ENOENT && make_parent(s, tmp) == 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd == -1)
		return -1;
	rc = gxp_write_all(fd, data, len);
	e = errno;
	if (close(fd) == -1 && rc == 0) {
		rc = -1;
		e = errno;
	}
	if (rc == -1) {
		unlink(tmp);
		errno = e;
		return -1;
	}
	return put_in_place(s, tmp, path);
}

/* path as a second name of src (a file that is synced already): no bytes
 * copied, no new inode.  -1 with errno EXDEV and the like when the file
 * systems or the file system do not allow it. */
int
syncset_link(struct syncset *s, const char *src, const char *path)
{
	char tmp[PATH_MAX];
	int rc;

	if (tmp_name(tmp, path) == -1)
		return -1;
	unlink(tmp);	/* left by a crashed process that had our pid */
	rc = link(src, tmp);
	if (rc == -1 && errno == ENOENT && access(src, F_OK) == 0 && make_parent(s, tmp) == 0)
		rc = link(src, tmp);
	if (rc == -1)
		return -1;
	return put_in_place(s, tmp, path);
}

/* A file that is gone (renamed away since) has nothing left to sync. */
static int
fsync_path(const char *path, int flags)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | flags), rc;

	if (fd == -1)
		return errno == ENOENT ? 0 : -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

static int
one_by_one(const struct syncset *s)
{
	char dir[PATH_MAX];

	for (size_t at = 0; at < s->paths.len; at += strlen(s->paths.p + at) + 1) {
		const char *path = s->paths.p + at, *slash = strrchr(path, '/');

		snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1,
		    slash ? path : ".");
		if (fsync_path(path, 0) == -1 || fsync_path(dir, O_DIRECTORY) == -1)
			return -1;
	}
	return 0;
}

/* Syncs what was written since the last time: a few files and their
 * directories one by one, or, for more files or new directories (whose
 * entries in their parents must be synced too), the whole file system
 * that fsfd is on.  Returns 0 or -1 (errno); after -1 the next sync is
 * of the whole file system. */
int
syncset_sync(struct syncset *s, int fsfd)
{
	int rc = 0;

	if (syncset_whole(s))
		rc = syncfs(fsfd);
	else if (s->n > 0)
		rc = one_by_one(s);
	s->paths.len = 0;
	s->n = 0;
	/* after a failure nobody knows what is on disk: the next sync is whole */
	s->made_dirs = rc == -1;
	return rc;
}

/* The whole file system fsfd is on: at start, what a killed process wrote
 * and had not synced yet. */
int
syncset_all(int fsfd)
{
	return syncfs(fsfd);
}

/* Whether the next syncset_sync() syncs the whole file system. */
int
syncset_whole(const struct syncset *s)
{
	return s->made_dirs || s->n > ONE_BY_ONE;
}

int
syncset_pending(const struct syncset *s)
{
	return s->n > 0 || s->made_dirs;
}

void
syncset_free(struct syncset *s)
{
	gxp_buf_free(&s->paths);
	s->n = 0;
}
