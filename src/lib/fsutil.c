/* fsutil.c: files that are whole or absent after a crash. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gxp.h"

int
gxp_mkdirs(const char *path, int mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;

			*p = '\0';
			if (mkdir(buf, (mode_t)mode) == -1 && errno != EEXIST)
				return -1;
			if ((*p = c) == '\0')
				break;
		}
	}
	return 0;
}

/* An error about a path that no restart mends (a file where the spool
 * should be, no permission, a read-only file system): exit 100, not 111. */
int
gxp_path_error_permanent(int e)
{
	return e == EACCES || e == EPERM || e == EROFS || e == ENOTDIR || e == ELOOP ||
	    e == ENAMETOOLONG;
}

int
gxp_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* path.tmp.PID is created with O_EXCL, written, fsynced and closed (each
 * checked), renamed over path, and the directory is fsynced. */
int
gxp_write_atomic(const char *path, const void *buf, size_t len)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	int fd, e;

	if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	unlink(tmp);	/* left by a crashed process that had our pid */
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) == -1)
		return -1;
	if (gxp_write_all(fd, buf, len) == -1 || fsync(fd) == -1) {
		e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		return -1;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	snprintf(dir, sizeof dir, "%s", path);
	return gxp_fsync_dir(dirname(dir));
}

int
gxp_read_file(const char *path, char **buf, size_t *len, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st = { 0 };
	size_t got = 0;
	char *b;

	if (fd == -1)
		return -1;
	if (fstat(fd, &st) == -1 || (size_t)st.st_size > max) {
		int e = st.st_size > 0 && (size_t)st.st_size > max ? EFBIG : errno;

		close(fd);
		errno = e;
		return -1;
	}
	b = xmalloc((size_t)st.st_size + 1);
	for (;;) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			int e = errno;

			free(b);
			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == (size_t)st.st_size)
			break;
	}
	close(fd);
	b[got] = '\0';
	*buf = b;
	*len = got;
	return 0;
}

/* Cuts a last line without its newline (a write torn by a crash). */
int
gxp_repair_lines(int fd, const char *path)
{
	struct stat sb;
	char buf[4096];
	off_t end, at;

	if (fstat(fd, &sb) == -1)
		return -1;
	for (end = sb.st_size; end > 0; end = at) {
		size_t n = end < (off_t)sizeof buf ? (size_t)end : sizeof buf;
		ssize_t got;

		at = end - (off_t)n;
		if ((got = pread(fd, buf, n, at)) != (ssize_t)n)
			return -1;
		for (size_t i = n; i > 0; i--)
			if (buf[i - 1] == '\n') {
				if (at + (off_t)i == sb.st_size)
					return 0;
				gxp_log(LOG_WARN, "%s: removing a torn last line (%lld bytes)",
				    path, (long long)(sb.st_size - at - (off_t)i));
				return ftruncate(fd, at + (off_t)i);
			}
	}
	if (sb.st_size > 0) {
		gxp_log(LOG_WARN, "%s: removing a torn line (%lld bytes)", path,
		    (long long)sb.st_size);
		return ftruncate(fd, 0);
	}
	return 0;
}

/* An exclusive flock(2) on path, created if need be, held until exit.
 * Returns the descriptor, or -1 (errno EWOULDBLOCK: another process has it). */
int
gxp_lock_file(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd == -1)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}
