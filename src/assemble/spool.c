/* spool.c: the spool's directories, opened and locked at start, the small
 * files written below them, and how much the finished photos in ready/,
 * work/ and failed/ take (for the SPOOL_MAX_BYTES budget). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assemble.h"

#define RESCAN_MS 2000	/* the least time between two looks at ready/ */

int spool_fd = -1, tmp_fd = -1, partial_fd = -1, ready_fd = -1, failed_fd = -1;
int refusal_cause;
char refusal[192];
static int lock_fd = -1;

static int
open_dir(const char *name)
{
	int fd = openat(spool_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd == -1)
		gxp_die_errno(EXIT_TEMP, "%s/%s", cfg.spool, name);
	return fd;
}

/* A file below dfd, written whole: 0, or its descriptor when keep (for
 * a sync later); -1 with errno. */
int
write_at(int dfd, const char *name, const void *data, size_t len, int keep)
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
	if (keep)
		return fd;
	return close(fd);
}

int
write_json_at(int dfd, const char *name, const cJSON *j)
{
	char *s = gxp_json_print(j);
	int rc = write_at(dfd, name, s, strlen(s), 0);

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

/* What ready/, work/ and failed/ hold, looked at again when force or when
 * the last look is RESCAN_MS old: gxp-upload takes photos away unseen. */
void
ready_bytes_scan(int force)
{
	static int64_t next;
	long long n;

	if (!force && gxp_mono_ms() < next)
		return;
	next = gxp_mono_ms() + RESCAN_MS;
	if ((n = gxp_spool_finished_bytes(cfg.spool)) >= 0)
		spool_ready_bytes = n;
}

static int
keep_photo(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && n > 4 && strcmp(name + n - 4, ".jpg") == 0;
}

/* ready/<entry>.jpg without its sidecar in ready/ or work/: a commit a
 * crash cut short (the capture, still in partial/, is finished again).
 * gxp-upload, starting beside us, moves sidecars from work/ back to
 * ready/ (and claims them from ready/ to work/) with rename(2): looking
 * in ready/, then work/, then ready/ again cannot miss one that moved
 * once in between (a photo was lost that way: its sidecar went back to
 * ready/ between our two looks, and the photo was taken for a lone one). */
static void
sweep_lone_photos(void)
{
	char *dir = gxp_spool_path(cfg.spool, "ready", NULL, NULL), **names, entry[GXP_ENTRY_MAX + 8];
	long n = gxp_dir_names(dir, keep_photo, 0, &names);
	char *ready, *work;

	for (long i = 0; i < n; i++) {
		snprintf(entry, sizeof entry, "%.*s", (int)strlen(names[i]) - 4, names[i]);
		ready = gxp_spool_path(cfg.spool, "ready", entry, ".json");
		work = gxp_spool_path(cfg.spool, "work", entry, ".json");
		if (access(ready, F_OK) == -1 && access(work, F_OK) == -1 &&
		    access(ready, F_OK) == -1 && unlinkat(ready_fd, names[i], 0) == 0)
			gxp_log(LOG_INFO, "ready/%s: without its sidecar; removed", names[i]);
		free(ready);
		free(work);
	}
	if (n > 0)
		gxp_names_free(names, n);
	free(dir);
}

void
open_spool(void)
{
	char lock[PATH_MAX];
	int n;

	if (gxp_spool_init(cfg.spool) == -1)
		gxp_die_errno(gxp_path_error_permanent(errno) ? EXIT_PERM : EXIT_TEMP,
		    "spool %s", cfg.spool);
	if (snprintf(lock, sizeof lock, "%s/assemble.lock", cfg.spool) >= (int)sizeof lock)
		gxp_die(EXIT_PERM, "spool %s: path too long", cfg.spool);
	if ((lock_fd = gxp_lock_file(lock)) == -1) {
		if (errno == EWOULDBLOCK)
			gxp_die(EXIT_PERM, "%s is held by another gxp-assemble: one per spool", lock);
		gxp_die_errno(EXIT_TEMP, "%s", lock);
	}
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
	gxp_spool_upgrade(cfg.spool, "ready", NULL, NULL);
	gxp_spool_upgrade_stored(cfg.spool);
	sweep_lone_photos();
	prune_stored();
	ready_bytes_scan(1);
}

/* Closes the spool and unlocks it. */
void
spool_close(void)
{
	int *fds[] = { &spool_fd, &tmp_fd, &partial_fd, &ready_fd, &failed_fd, &lock_fd };

	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
		if (*fds[i] != -1)
			close(*fds[i]);
		*fds[i] = -1;
	}
}
