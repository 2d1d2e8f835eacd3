/* driver.c: gxp-assemble itself (src/assemble/, every object but
 * main.o), driven the way its main drives it, with its standard output
 * caught line by line and a kill at any rename of a commit (the harnesses
 * link with -Wl,--wrap=gxp_write_all,--wrap=renameat), and the checks every
 * harness makes. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../src/assemble/assemble.h"
#include "driver.h"

const char *fz_spool;
void (*fz_out)(const char *line, size_t len);

static char *base;		/* the scratch directory: spool/ and nothing else */
static struct gxp_buf partline;	/* stdout written so far, not yet a whole line */
static jmp_buf crash_at;
static int crash_armed;		/* renames to go before the kill */

int __real_gxp_write_all(int fd, const char *buf, size_t len);
int __wrap_gxp_write_all(int fd, const char *buf, size_t len);
int __real_renameat(int fd, const char *from, int tofd, const char *to);
int __wrap_renameat(int fd, const char *from, int tofd, const char *to);

int
__wrap_renameat(int fd, const char *from, int tofd, const char *to)
{
	int rc = __real_renameat(fd, from, tofd, to);

	if (crash_armed && --crash_armed == 0)
		longjmp(crash_at, 1);
	return rc;
}

int
__wrap_gxp_write_all(int fd, const char *buf, size_t len)
{
	size_t at = 0;
	char *nl;

	if (fd != 1)
		return __real_gxp_write_all(fd, buf, len);
	if (crash_armed)
		longjmp(crash_at, 1);
	gxp_buf_add(&partline, buf, len);
	while ((nl = memchr(partline.p + at, '\n', partline.len - at)) != NULL) {
		*nl = '\0';
		if (fz_out)
			fz_out(partline.p + at, (size_t)(nl - partline.p) - at);
		at = (size_t)(nl - partline.p) + 1;
	}
	memmove(partline.p, partline.p + at, partline.len - at);
	partline.len -= at;
	return 0;
}

void
fz_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz: invariant broken: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

static void
remove_base(void)
{
	gxp_rmtree_at(AT_FDCWD, base);
}

void
fz_setup(void)
{
	const char *dirs[] = { getenv("FUZZ_TMPDIR"), "/dev/shm", getenv("TMPDIR"), "/tmp" };
	struct stat st;

	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0] && base == NULL; i++) {
		if (dirs[i] == NULL || stat(dirs[i], &st) == -1 || !S_ISDIR(st.st_mode))
			continue;
		base = xasprintf("%s/gxp-fuzz.XXXXXX", dirs[i]);
		if (mkdtemp(base) == NULL) {
			free(base);
			base = NULL;
		}
	}
	if (base == NULL)
		fz_fail("no scratch directory: %s", strerror(errno));
	atexit(remove_base);
	fz_spool = xasprintf("%s/spool", base);
	setenv("GXP_SPOOL", fz_spool, 1);
	gxp_init("gxp-assemble");
	gxp_log_level_set(getenv("FUZZ_LOG") ? LOG_DEBUG : LOG_NONE);
}

void
fz_begin(void)
{
	assemble_config();
	cfg.replay = 1;
	gxp_out_closed = 0;
	assemble_begin();
}

void
fz_line(char *line, size_t len, long long lineno, int truncated)
{
	assemble_line(truncated ? LINE_TRUNCATED : LINE_OK, line, len, lineno);
}

void
fz_commit(void)
{
	commit();
}

int
fz_end(int flush_at_eof)
{
	/* captures recovered at the start wait for the first tst to start
	 * their timers (assemble-time.bats: "timers wait for more input") */
	int drained = flush_at_eof && recovered_waiting() == 0;

	if (flush_at_eof) {
		commit();
		flush_timers();
	}
	commit();
	seg_tidy();
	assemble_free();
	if (partline.len)
		fz_fail("stdout ends in the middle of a line");
	return drained;
}

void
fz_crash(int renames)
{
	if (renames > 0 && commit_pending() > 0) {
		crash_armed = renames;
		if (setjmp(crash_at) == 0)
			commit();
		crash_armed = 0;
	}
	assemble_free();
	partline.len = 0;
}

int
fz_text_valid(const char *s, size_t n)
{
	return text_valid(s, n);
}

void
fz_fmt_time(char buf[32], int64_t us)
{
	fmt_time(buf, us);
}

/* ---- checks ---- */

static int
known(const char *s, const char *const *list)
{
	for (; s && *list; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

/* 2101-2203; a capture_failed 2200-2203, or 1000-1999 when the device
 * reported the error, with the device_errors row's message and details. */
static void
check_code(const cJSON *e, const char *type, const char *line)
{
	long long code;
	const char *sev = gxp_json_str(e, "severity"), *msg = gxp_json_str(e, "message");
	const cJSON *det = cJSON_GetObjectItemCaseSensitive(e, "details");
	int failed = strcmp(type, "capture_failed") == 0;
	int device = failed && gxp_json_int(e, "code", &code) == 1 && code >= 1000 &&
	    code <= 1999;

	if (gxp_json_int(e, "code", &code) != 1 || (!device && (code < 2101 ||
	    code > 2203 || (failed && code < 2200))) || sev == NULL ||
	    strcmp(sev, severity((int)code)) != 0 || !gxp_json_str(e, "reason"))
		fz_fail("bad code, severity or reason: %s", line);
	if (device && (msg == NULL || strncmp(msg, "esp32_capture_error: ", 21) != 0 ||
	    !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(det, "metadata")) ||
	    !cJSON_HasObjectItem(det, "esp32_error_code")))
		fz_fail("a device's error without its message and details: %s", line);
}

cJSON *
fz_event(const char *line, size_t len)
{
	static const char *const types[] = { "status", "capture_started", "photo_complete",
		"capture_failed", "error", "publish", "inbound", NULL };
	char prefix[64];
	const char *type, *ts;
	int64_t us;
	cJSON *e;

	if (!gxp_json_valid(line, len) || (e = gxp_json_parse(line, len)) == NULL)
		fz_fail("output line is not JSON: %.*s", (int)len, line);
	type = gxp_json_str(e, "event");
	ts = gxp_json_str(e, "ts");
	if (type && strcmp(type, "mark") == 0) {
		/* after the output of journal lines: no ts, a seq */
		long long seq;

		if (strncmp(line, "{\"event\":\"mark\",\"v\":1,\"seq\":", 28) != 0 ||
		    gxp_json_int(e, "seq", &seq) != 1 || seq < 1 || cJSON_GetArraySize(e) != 3)
			fz_fail("a bad mark: %s", line);
		return e;
	}
	if (!known(type, types))
		fz_fail("not an event of gxp(7): %s", line);
	snprintf(prefix, sizeof prefix, "{\"event\":\"%s\",\"v\":1,\"ts\":\"", type);
	if (strncmp(line, prefix, strlen(prefix)) != 0 || ts == NULL || strlen(ts) != 27 ||
	    gxp_parse_time(ts, &us) == -1)
		fz_fail("event, v and ts do not come first: %s", line);
	if (strcmp(type, "error") == 0 || strcmp(type, "capture_failed") == 0)
		check_code(e, type, line);
	return e;
}

/* The names below dir, sorted; the count. */
static long
names_in(const char *dir, char ***names)
{
	long n = gxp_dir_names(dir, NULL, 0, names);

	if (n == -1)
		fz_fail("%s: %s", dir, strerror(errno));
	return n;
}

static mode_t
kind_of(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == -1)
		fz_fail("%s: %s", path, strerror(errno));
	return st.st_mode & S_IFMT;
}

/* dir/name is a directory holding regular files only, all of them in
 * allowed, and every one of need. */
static void
check_files(const char *dir, const char *name, const char *const *allowed,
    const char *const *need)
{
	char *path = xasprintf("%s/%s", dir, name), **files;
	long n;

	if (kind_of(path) != S_IFDIR)
		fz_fail("%s is not a directory", path);
	n = names_in(path, &files);
	for (long i = 0; i < n; i++) {
		char *f = xasprintf("%s/%s", path, files[i]);

		if (!known(files[i], allowed) || kind_of(f) != S_IFREG)
			fz_fail("%s does not belong there", f);
		free(f);
	}
	for (; *need; need++) {
		int found = 0;

		for (long i = 0; i < n; i++)
			found |= strcmp(files[i], *need) == 0;
		if (!found)
			fz_fail("%s has no %s", path, *need);
	}
	gxp_names_free(files, n);
	free(path);
}

/* area/name is a regular file "<entry><ext>"; the entry into entry. */
static void
check_entry_file(const char *area, const char *name, const char *ext,
    char entry[GXP_ENTRY_MAX + 1])
{
	char dev[GXP_DEVICE_MAX + 1], cname[GXP_CAPTURE_NAME_MAX + 1], *path;
	size_t n = strlen(name), e = strlen(ext);

	if (n <= e || n - e > GXP_ENTRY_MAX || strcmp(name + n - e, ext) != 0)
		fz_fail("%s/%s is not <entry>%s", area, name, ext);
	memcpy(entry, name, n - e);
	entry[n - e] = '\0';
	if (gxp_spool_entry_parse(entry, dev, cname) == -1)
		fz_fail("%s/%s is not an entry name", area, name);
	path = xasprintf("%s/%s/%s", fz_spool, area, name);
	if (kind_of(path) != S_IFREG)
		fz_fail("%s is not a file", path);
	free(path);
}

static int
exists(const char *area, const char *entry, const char *ext)
{
	char *path = gxp_spool_path(fz_spool, area, entry, ext);
	int rc = access(path, F_OK) == 0;

	free(path);
	return rc;
}

/* Cuts a trailing ".<digits>" off s; 0, or -1 if there is none. */
static int
cut_number(char *s)
{
	char *dot = strrchr(s, '.');

	if (dot == NULL || dot[1] == '\0' || strspn(dot + 1, "0123456789") != strlen(dot + 1))
		return -1;
	*dot = '\0';
	return 0;
}

/* failed/<entry>.<seconds>, or <entry>.<seconds>.<k> */
static void
check_failed_name(const char *name)
{
	char dev[GXP_DEVICE_MAX + 1], cname[GXP_CAPTURE_NAME_MAX + 1];
	char *s = xstrdup(name);
	int ok = cut_number(s) == 0 && (gxp_spool_entry_parse(s, dev, cname) == 0 ||
	    (cut_number(s) == 0 && gxp_spool_entry_parse(s, dev, cname) == 0));

	free(s);
	if (!ok)
		fz_fail("failed/%s: not <entry>.<seconds>", name);
}

/* partial/: segments only; drained: no capture in progress. */
static void
check_partial(char **names, long n, int drained)
{
	long live;

	for (long i = 0; i < n; i++) {
		char *path = xasprintf("%s/partial/%s", fz_spool, names[i]);

		if (strncmp(names[i], "seg.", 4) != 0 || names[i][4] == '\0' ||
		    strspn(names[i] + 4, "0123456789") != strlen(names[i] + 4) ||
		    kind_of(path) != S_IFREG)
			fz_fail("%s does not belong in partial/", path);
		free(path);
	}
	if (drained && (live = list_partial(fz_spool, 0)) != 0)
		fz_fail("%ld captures still in partial/", live);
}

/* ready/: <entry>.jpg and <entry>.json, the sidecar always beside its
 * photo; a photo whose sidecar is in neither ready/ nor work/ only while
 * a commit or a retirement is cut short.  work/: sidecars whose photo is
 * in ready/. */
static void
check_photos(const char *area, char **names, long n, int settled)
{
	char entry[GXP_ENTRY_MAX + 1];

	for (long i = 0; i < n; i++) {
		const char *ext = strrchr(names[i], '.');

		if (strcmp(area, "ready") == 0 && ext && strcmp(ext, ".jpg") == 0) {
			check_entry_file(area, names[i], ".jpg", entry);
			if (settled && !exists("ready", entry, ".json") &&
			    !exists("work", entry, ".json"))
				fz_fail("ready/%s has no sidecar", names[i]);
			continue;
		}
		check_entry_file(area, names[i], ".json", entry);
		if (!exists("ready", entry, ".jpg"))
			fz_fail("%s/%s has no photo ready/%s.jpg", area, names[i], entry);
	}
}

static void
check_area(const char *area, int settled, int drained)
{
	static const char *const failed[] = { "image.jpg", "meta.json", "reason.json", NULL };
	static const char *const failed_need[] = { "meta.json", "reason.json", NULL };
	char *dir = xasprintf("%s/%s", fz_spool, area), **names, entry[GXP_ENTRY_MAX + 1];
	long n = names_in(dir, &names);

	if (n > 0 && strcmp(area, "tmp") == 0 && settled)
		fz_fail("%s/%s is not empty: %s", fz_spool, area, names[0]);
	if (strcmp(area, "partial") == 0)
		check_partial(names, n, drained);
	else if (strcmp(area, "ready") == 0 || strcmp(area, "work") == 0)
		check_photos(area, names, n, settled);
	for (long i = 0; i < n; i++) {
		if (strcmp(area, "failed") == 0) {
			check_failed_name(names[i]);
			check_files(dir, names[i], failed, failed_need);
		} else if (strcmp(area, "stored") == 0)
			check_entry_file(area, names[i], ".json", entry);
	}
	gxp_names_free(names, n);
	free(dir);
}

void
fz_check_spool(int settled, int drained)
{
	char *dir;
	static const char *const top[] = { "tmp", "partial", "ready", "work", "stored",
		"failed", "rows", "assemble.lock", NULL };
	char **names;
	long n = names_in(base, &names);

	if (n != 1 || strcmp(names[0], "spool") != 0)
		fz_fail("%s holds more than the spool: %s", base, names[n > 1 && strcmp(names[0],
		    "spool") == 0]);
	gxp_names_free(names, n);
	n = names_in(fz_spool, &names);
	for (long i = 0; i < n; i++)
		if (!known(names[i], top))
			fz_fail("%s/%s does not belong in a spool", fz_spool, names[i]);
	gxp_names_free(names, n);
	check_area("tmp", settled, drained);
	check_area("partial", settled, drained);
	check_area("ready", settled, drained);
	check_area("work", settled, drained);
	check_area("failed", settled, drained);
	check_area("stored", settled, drained);
	/* gxp-upload's alone */
	dir = xasprintf("%s/rows", fz_spool);
	if ((n = names_in(dir, &names)) > 0)
		fz_fail("%s/%s: gxp-assemble wrote in rows/", dir, names[0]);
	gxp_names_free(names, n);
	free(dir);
}

void
fz_wipe(void)
{
	if (gxp_rmtree_at(AT_FDCWD, fz_spool) == -1)
		fz_fail("cannot remove %s: %s", fz_spool, strerror(errno));
}

long long
fz_file_sha256(const char *path, char hex[65], unsigned char **data)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char *buf;
	size_t len;

	if (gxp_read_file(path, &buf, &len, 1 << 28) == -1)
		return -1;
	if (EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		fz_fail("SHA-256 failed");
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (data)
		*data = (unsigned char *)buf;
	else
		free(buf);
	return (long long)len;
}
