/* out.c: the report directory.  Every file is written to a temporary name
 * and renamed into place, so a browser or a web server sees the old file
 * or the new one, never half of one; the files of a run are made durable
 * together, by one sync, before the state that names them is written. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

/* sums: the pages' checksums from the last run (the state), or NULL. */
void
out_init(struct out *o, const char *dir, struct map *sums)
{
	memset(o, 0, sizeof *o);
	o->dir = xstrdup(dir);
	o->written = map_new();
	o->old_sums = sums;
	o->sums = map_new();
}

/* A page the last run wrote with the same bytes, and still there, is left
 * alone (a device page changes only when its device does); the others are
 * written. */
static int
unchanged(struct out *o, const char *rel, const char *path, const char *sum)
{
	const char *old = o->old_sums ? map_get(o->old_sums, rel) : NULL;
	struct stat sb;

	return old && strcmp(old, sum) == 0 && stat(path, &sb) == 0;
}

void
out_file(struct out *o, const char *rel, const void *data, size_t len)
{
	char *path = xasprintf("%s/%s", o->dir, rel), sum[65];
	int page = strncmp(rel, "thumbs/", 7) != 0;	/* thumbnails: written once */

	gxp_sha256_hex(sum, data, len);
	if (page && unchanged(o, rel, path, sum)) {
		o->unchanged++;
		map_put(o->written, rel, o);
	} else if (syncset_write(&o->ss, path, data, len) == -1) {
		gxp_log(LOG_ERROR, "%s: %s", path, strerror(errno));
		o->failed = 1;
	} else {
		o->wrote += page;
		map_put(o->written, rel, o);
	}
	if (page)
		free(map_put(o->sums, rel, xstrdup(sum)));
	free(path);
}

/* Removes what <dir>/<sub> holds that this run did not write and kept()
 * does not claim: pages of devices gone, thumbnails no page shows, the
 * temporary files of a run that was killed. */
void
out_sweep(struct out *o, const char *sub, int (*kept)(const char *, void *), void *arg)
{
	char *dir = *sub ? xasprintf("%s/%s", o->dir, sub) : xstrdup(o->dir);
	char **names;
	long n = gxp_dir_names(dir, NULL, 0, &names);

	for (long i = 0; i < n; i++) {
		char *rel = *sub ? xasprintf("%s/%s", sub, names[i]) : xstrdup(names[i]);
		char *path = xasprintf("%s/%s", dir, names[i]);

		if (map_get(o->written, rel) == NULL && !(kept && kept(names[i], arg)) &&
		    unlink(path) == -1 && errno != ENOENT && errno != EISDIR)
			gxp_log(LOG_WARN, "%s: %s", path, strerror(errno));
		free(rel);
		free(path);
	}
	if (n > 0)
		gxp_names_free(names, n);
	free(dir);
}

int
out_sync(struct out *o)
{
	int fd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = -1;

	if (fd >= 0) {
		rc = syncset_sync(&o->ss, fd);
		close(fd);
	}
	if (rc == -1) {
		gxp_log(LOG_ERROR, "%s: sync: %s", o->dir, strerror(errno));
		o->failed = 1;
	}
	return rc;
}

void
out_free(struct out *o)
{
	syncset_free(&o->ss);
	map_free(o->written, NULL);
	map_free(o->sums, free);
	free(o->dir);
}
