/* spool.c: the spool's directories, opened and locked at start, small
 * files written and read below them, and the chunk logs in partial/ kept
 * open in a small LRU cache of descriptors (ASSEMBLE_OPEN_FILES). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assemble.h"

/* ---- the spool's directories ---- */

int spool_fd, tmp_fd, partial_fd, ready_fd, failed_fd;
static int lock_fd = -1;

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
int
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

int
write_json_at(int dfd, const char *name, const cJSON *j)
{
	char *s = gxp_json_print(j);
	int rc = write_file_at(dfd, name, s, strlen(s));

	free(s);
	return rc;
}

/* stored/ records past STORED_RETENTION_DAYS, at start and hourly. */
void
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

void
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
void
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

void
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

int
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

/* Closes the spool and unlocks it. */
void
spool_close(void)
{
	free(slots);
	slots = NULL;
	mru = lru = freeslot = -1;
	close(spool_fd);
	close(tmp_fd);
	close(partial_fd);
	close(ready_fd);
	close(failed_fd);
	close(lock_fd);
	lock_fd = -1;
}
