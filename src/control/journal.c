/* journal.c: the hellos gxp-control answered, so that a hello seen again
 * (gxp-sub's output replayed after a crash) is not answered twice:
 * $GXP_SPOOL/control/answered.ndjson, a line {"device":MAC,"tst":...} for
 * each answer the broker took, appended then and synced once per turn of
 * the loop.  At start each device's latest tst is read back, and the file
 * is rewritten with one line a device when it has grown to many more.
 * $GXP_SPOOL/control.lock keeps one gxp-control to a spool. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

static char *path;
static int fd = -1, lock_fd = -1, dirty;
static long lines;

static void
take_line(const char *line, size_t len)
{
	cJSON *j = gxp_json_parse(line, len);
	const char *dev = gxp_json_str(j, "device"), *tst = gxp_json_str(j, "tst");
	int64_t us;

	if (dev && gxp_device_valid(dev) && tst && gxp_parse_time(tst, &us) == 0) {
		struct dev *d = dev_get(dev);

		if (us > d->answered)
			d->answered = us;
	}
	cJSON_Delete(j);
}

static void
add_line(struct dev *d, void *arg)
{
	struct gxp_buf *b = arg;
	char tst[32];

	if (d->answered == 0)
		return;
	gxp_fmt_utc(tst, d->answered);
	gxp_buf_addf(b, "{\"device\":\"%s\",\"tst\":\"%s\"}\n", d->id, tst);
}

static void
count(struct dev *d, void *arg)
{
	*(long *)arg += d->answered != 0;
}

/* Rewritten with a line a device when most lines are old news. */
static void
compact(void)
{
	struct gxp_buf b = { 0 };
	long devices = 0;

	dev_each(count, &devices);
	if (lines < 1000 || lines < 4 * devices)
		return;
	dev_each(add_line, &b);
	if (gxp_write_atomic(path, b.p ? b.p : "", b.len) == -1)
		gxp_log(LOG_WARN, "%s: %s", path, strerror(errno));
	gxp_buf_free(&b);
}

void
journal_open(const char *spool)
{
	char *dir = xasprintf("%s/control", spool), *lock = xasprintf("%s/control.lock", spool);
	char *buf, *line, *nl;
	size_t len;

	if (gxp_mkdirs(dir, 0755) == -1)
		gxp_die_errno(errno == EACCES || errno == EROFS ? EXIT_PERM : EXIT_TEMP,
		    "spool %s", dir);
	if ((lock_fd = gxp_lock_file(lock)) == -1) {
		if (errno == EWOULDBLOCK)
			gxp_die(EXIT_PERM, "%s is held by another gxp-control: one per spool", lock);
		gxp_die_errno(EXIT_TEMP, "%s", lock);
	}
	path = xasprintf("%s/answered.ndjson", dir);
	if (gxp_read_file(path, &buf, &len, (size_t)1 << 30) == 0) {
		for (line = buf; (nl = memchr(line, '\n', (size_t)(buf + len - line))) != NULL;
		    line = nl + 1) {
			take_line(line, (size_t)(nl - line));
			lines++;
		}
		free(buf);
	} else if (errno != ENOENT)
		gxp_die_errno(EXIT_TEMP, "%s", path);
	compact();
	if ((fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) == -1 ||
	    gxp_repair_lines(fd, path) == -1)
		gxp_die_errno(EXIT_TEMP, "%s", path);
	free(dir);
	free(lock);
}

/* The broker took the answer to the device's hello of tst. */
void
journal_answered(const char *dev, int64_t tst)
{
	char line[GXP_DEVICE_MAX + 64], at[32];
	int n;

	gxp_fmt_utc(at, tst);
	n = snprintf(line, sizeof line, "{\"device\":\"%s\",\"tst\":\"%s\"}\n", dev, at);
	if (gxp_write_all(fd, line, (size_t)n) == -1)
		gxp_log(LOG_ERROR, "%s: %s; device %s's hello of %s may be answered again "
		    "if it is seen again", path, strerror(errno), dev, at);
	else {
		dirty = 1;
		lines++;
	}
}

void
journal_sync(void)
{
	if (dirty && fdatasync(fd) == -1)
		gxp_log(LOG_ERROR, "%s: sync: %s", path, strerror(errno));
	dirty = 0;
}

void
journal_close(void)
{
	if (fd >= 0) {
		journal_sync();
		close(fd);
	}
	if (lock_fd >= 0)
		close(lock_fd);
	fd = lock_fd = -1;
	free(path);
	path = NULL;
}
