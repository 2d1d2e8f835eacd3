/* spool.c: the spool directory that gxp-assemble fills and gxp-upload
 * drains (gxp-spool(5)), the one place that knows its layout: entry
 * names, capture names, where a photo and its sidecar are, the sidecar,
 * the record format of the earlier layout's chunk logs, sweeping tmp/,
 * counting and sizing what is finished, the stored/ records that let a
 * re-sent capture be answered without storing it twice, and taking over a
 * spool of the earlier layout. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "gxp.h"

static const char *const areas[] = {
	"tmp", "partial", "ready", "work", "stored", "failed", "rows"
};

int
gxp_spool_init(const char *spool)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof areas / sizeof areas[0]; i++) {
		if (snprintf(path, sizeof path, "%s/%s", spool, areas[i]) >= (int)sizeof path) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (gxp_mkdirs(path, 0755) == -1)
			return -1;
	}
	return 0;
}

static int
name_chars_ok(const char *s, size_t max)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789._-");

	return n >= 1 && n <= max && s[n] == '\0' && s[0] != '.';
}

int
gxp_capture_name_valid(const char *s)
{
	return name_chars_ok(s, GXP_CAPTURE_NAME_MAX);
}

int
gxp_spool_entry(char *buf, size_t cap, const char *dev, const char *name)
{
	int n = snprintf(buf, cap, "%s@%s", dev, name);

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int
gxp_spool_entry_parse(const char *entry, char dev[GXP_DEVICE_MAX + 1],
    char name[GXP_CAPTURE_NAME_MAX + 1])
{
	const char *at = strchr(entry, '@');
	size_t dlen;

	if (at == NULL || (dlen = (size_t)(at - entry)) == 0 || dlen > GXP_DEVICE_MAX ||
	    strlen(at + 1) > GXP_CAPTURE_NAME_MAX)
		return -1;
	memcpy(dev, entry, dlen);
	dev[dlen] = '\0';
	strcpy(name, at + 1);
	return gxp_device_valid(dev) && gxp_capture_name_valid(name) ? 0 : -1;
}

void
gxp_capture_timekey(char buf[32], int has_time, int64_t us)
{
	if (has_time)
		gxp_fmt_utc(buf, us);
	else
		buf[0] = '\0';
}

void
gxp_capture_h8(char out[9], const char *dev, const char *image_name,
    long long image_bytes, const char *timekey)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	struct gxp_buf b = { 0 };
	unsigned mdlen = 0;

	gxp_buf_add(&b, dev, strlen(dev) + 1);
	gxp_buf_add(&b, image_name, strlen(image_name) + 1);
	gxp_buf_addf(&b, "%lld", image_bytes);
	gxp_buf_add(&b, "", 1);
	gxp_buf_adds(&b, timekey);
	if (EVP_Digest(b.p, b.len, md, &mdlen, EVP_sha256(), NULL) != 1)
		gxp_die(EXIT_TEMP, "SHA-256 is not available");
	gxp_buf_free(&b);
	for (int i = 0; i < 4; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[8] = '\0';
}

void
gxp_capture_altname(char out[GXP_CAPTURE_NAME_MAX + 1], const char *image_name,
    const char h8[9])
{
	const char *dot = strrchr(image_name, '.');
	size_t stem = dot && dot != image_name ? (size_t)(dot - image_name) :
	    strlen(image_name);

	snprintf(out, GXP_CAPTURE_NAME_MAX + 1, "%.*s-%s%s", (int)stem, image_name,
	    h8, image_name + stem);
}

cJSON *
gxp_sidecar_read(const char *path)
{
	char *text;
	size_t len;
	cJSON *j;

	if (gxp_read_file(path, &text, &len, 4 << 20) == -1)
		return NULL;
	j = gxp_json_parse(text, len);
	free(text);
	if (j && !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		j = NULL;
	}
	if (j == NULL)
		errno = EINVAL;
	return j;
}

int
gxp_sidecar_identity(const cJSON *sc, long long *image_bytes, char timekey[32])
{
	const char *at = gxp_json_str(sc, "captured_at");
	const cJSON *raw = cJSON_GetObjectItemCaseSensitive(sc, "captured_at_raw");
	int64_t us;

	if (gxp_json_int(sc, "image_bytes", image_bytes) != 1)
		return -1;
	if (raw == NULL || cJSON_IsNull(raw)) {
		timekey[0] = '\0';
		return 0;
	}
	if (at == NULL || gxp_parse_time(at, &us) == -1)
		return -1;
	gxp_capture_timekey(timekey, 1, us);
	return 0;
}

/* 1: the sidecar at path is this capture's; 0: another capture's (or
 * unreadable, which is treated the same so that nothing is overwritten);
 * -1: no such file. */
static int
record_match(const char *path, long long image_bytes, const char *timekey)
{
	char key[32];
	long long size;
	cJSON *sc;
	int rc;

	if ((sc = gxp_sidecar_read(path)) == NULL)
		return errno == ENOENT || errno == ENOTDIR ? -1 : 0;
	rc = gxp_sidecar_identity(sc, &size, key) == 0 && size == image_bytes &&
	    strcmp(key, timekey) == 0;
	cJSON_Delete(sc);
	return rc;
}

/* Where a capture_name is already in use: GXP_SPOOL_* of the record that
 * is this capture, or GXP_SPOOL_NEW with *other set when a record of
 * another capture holds the name. */
static int
name_state(const char *spool, const char *dev, const char *name,
    long long image_bytes, const char *timekey, int *other)
{
	/* ready/ again after work/: gxp-upload moves sidecars both ways
	 * (a claim, a put back), and one that moved between our looks is
	 * found the second time */
	static const int states[] = {
		GXP_SPOOL_READY, GXP_SPOOL_WORK, GXP_SPOOL_READY, GXP_SPOOL_STORED
	};
	char path[PATH_MAX];

	*other = 0;
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
		if (states[i] == GXP_SPOOL_STORED)
			snprintf(path, sizeof path, "%s/stored/%s@%s.json", spool, dev, name);
		else
			snprintf(path, sizeof path, "%s/%s/%s@%s.json", spool,
			    states[i] == GXP_SPOOL_READY ? "ready" : "work", dev, name);
		switch (record_match(path, image_bytes, timekey)) {
		case 1:
			return states[i];
		case 0:
			*other = 1;
			break;
		}
	}
	return GXP_SPOOL_NEW;
}

int
gxp_spool_lookup(const char *spool, const char *dev, const char *image_name,
    long long image_bytes, const char *timekey,
    char capture_name[GXP_CAPTURE_NAME_MAX + 1])
{
	char h8[9];
	int other, state;

	snprintf(capture_name, GXP_CAPTURE_NAME_MAX + 1, "%s", image_name);
	state = name_state(spool, dev, image_name, image_bytes, timekey, &other);
	if (state != GXP_SPOOL_NEW || !other)
		return state;
	gxp_capture_h8(h8, dev, image_name, image_bytes, timekey);
	gxp_capture_altname(capture_name, image_name, h8);
	return name_state(spool, dev, capture_name, image_bytes, timekey, &other);
}

int
gxp_spool_finished(const char *spool, const char *dev, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s/ready/%s@%s.json", spool, dev, name);
	if (access(path, F_OK) == 0)
		return 1;
	snprintf(path, sizeof path, "%s/work/%s@%s.json", spool, dev, name);
	if (access(path, F_OK) == 0)
		return 1;
	snprintf(path, sizeof path, "%s/ready/%s@%s.json", spool, dev, name);
	if (access(path, F_OK) == 0)	/* put back while we looked: see name_state() */
		return 1;
	snprintf(path, sizeof path, "%s/stored/%s@%s.json", spool, dev, name);
	return access(path, F_OK) == 0;
}

char *
gxp_spool_path(const char *spool, const char *area, const char *entry, const char *ext)
{
	return xasprintf("%s/%s%s%s%s", spool, area, entry ? "/" : "", entry ? entry : "",
	    ext ? ext : "");
}

/* An entry's sidecar: "<entry>.json" (not starting with a dot); the entry
 * name into entry. */
int
gxp_spool_sidecar_name(const char *name, char entry[GXP_ENTRY_MAX + 1])
{
	size_t n = strlen(name);

	if (name[0] == '.' || n <= 5 || n - 5 > GXP_ENTRY_MAX ||
	    strcmp(name + n - 5, ".json") != 0)
		return -1;
	memcpy(entry, name, n - 5);
	entry[n - 5] = '\0';
	return 0;
}

static int
keep_sidecar(const char *name)
{
	char entry[GXP_ENTRY_MAX + 1];

	return gxp_spool_sidecar_name(name, entry) == 0;
}

long
gxp_spool_count(const char *spool, const char *area)
{
	char *dir = gxp_spool_path(spool, area, NULL, NULL), **names;
	long n = gxp_dir_names(dir, keep_sidecar, 0, &names);

	if (n > 0)
		gxp_names_free(names, n);
	free(dir);
	return n;
}

/* The bytes of the regular files below dfd, and one level further. */
static long long
dir_bytes(int dfd, int depth)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;
	struct stat st;
	long long n = 0;
	int fd;

	if (d == NULL) {
		close(dfd);
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			continue;
		if (S_ISREG(st.st_mode))
			n += (long long)st.st_size;
		else if (S_ISDIR(st.st_mode) && depth > 0 && (fd = openat(dirfd(d), e->d_name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) != -1)
			n += dir_bytes(fd, depth - 1);
	}
	closedir(d);
	return n;
}

long long
gxp_spool_finished_bytes(const char *spool)
{
	static const char *const dirs[] = { "ready", "work", "failed" };
	long long n = 0;
	int fd;

	for (size_t i = 0; i < 3; i++) {
		char *dir = gxp_spool_path(spool, dirs[i], NULL, NULL);

		if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1)
			n += dir_bytes(fd, 1);
		free(dir);
	}
	return n;
}

/* An entry of the earlier layout, area/<entry>/ holding image.jpg and
 * meta.json, as the photo and sidecar of ready/: the photo first, the
 * sidecar last, then the directory removed.  Every step can be repeated
 * after a crash.  An entry without its photo or sidecar is moved to
 * failed/ for inspection.  -1 with errno when a step fails. */
static int
upgrade_entry(const char *spool, const char *dir, const char *entry)
{
	char *img = xasprintf("%s/image.jpg", dir), *meta = xasprintf("%s/meta.json", dir);
	char *jpg = gxp_spool_path(spool, "ready", entry, ".jpg");
	char *json = gxp_spool_path(spool, "ready", entry, ".json"), *to;
	int rc = 0, has_meta = access(meta, F_OK) == 0;

	if (has_meta && rename(img, jpg) == -1 && errno != ENOENT)
		rc = -1;
	else if (has_meta && access(jpg, F_OK) == 0)
		rc = rename(meta, json);
	else if (!has_meta && access(json, F_OK) == 0)
		;	/* done before a crash: only the directory is left */
	else {
		to = xasprintf("%s/failed/%s.%lld", spool, entry, (long long)(gxp_wall_us() /
		    1000000));
		gxp_log(LOG_ERROR, "%s: no image.jpg or meta.json; moved to failed/", dir);
		rc = rename(dir, to);
		free(to);
	}
	if (rc == 0 && access(dir, F_OK) == 0)
		rc = gxp_rmtree_at(AT_FDCWD, dir);
	free(img);
	free(meta);
	free(jpg);
	free(json);
	return rc;
}

/* The directories below dir (an earlier layout's entries), sorted. */
static long
subdirs(const char *dir, char ***out)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;
	char **v = NULL;
	long n = 0;

	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || (e->d_type != DT_DIR && (e->d_type != DT_UNKNOWN ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
		    !S_ISDIR(st.st_mode))))
			continue;
		v = xrealloc(v, (size_t)(n + 1) * sizeof *v);
		v[n++] = xstrdup(e->d_name);
	}
	closedir(d);
	*out = v;
	return n;
}

long
gxp_spool_upgrade(const char *spool, const char *area,
    void (*each)(const char *entry, const char *dir, void *), void *arg)
{
	char *top = gxp_spool_path(spool, area, NULL, NULL), **names = NULL, *ready;
	long n = subdirs(top, &names), done = 0;

	for (long i = 0; i < n; i++) {
		char *dir = gxp_spool_path(spool, area, names[i], NULL);

		if (each)
			each(names[i], dir, arg);
		if (upgrade_entry(spool, dir, names[i]) == -1)
			gxp_log(LOG_ERROR, "%s: cannot take it over: %s", dir, strerror(errno));
		else
			done++;
		free(dir);
		free(names[i]);
	}
	free(names);
	ready = gxp_spool_path(spool, "ready", NULL, NULL);
	if (done > 0 && gxp_fsync_dir(ready) == -1)
		gxp_log(LOG_ERROR, "%s: %s", ready, strerror(errno));
	if (done > 0)
		gxp_log(LOG_INFO, "%s: %ld entries of the earlier layout taken over", top, done);
	free(ready);
	free(top);
	return done;
}

/* The capture time a metadata payload gives: capture_timeStamp (the
 * seed's firmware) or timestamp (newer firmware: ISO 8601, or Unix seconds,
 * or milliseconds when larger than 1e11).  1 with *us, or 0. */
int
gxp_meta_captured_at(const cJSON *meta, int64_t *us, const cJSON **raw)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, "capture_timeStamp");
	double d;

	if (v == NULL)
		v = cJSON_GetObjectItemCaseSensitive(meta, "timestamp");
	*raw = v;
	if (cJSON_IsString(v) && gxp_parse_time(v->valuestring, us) == 0 &&
	    *us >= 0 && *us < 253402300800000000LL)
		return 1;
	if (cJSON_IsNumber(v) && (d = v->valuedouble) >= 0 && d < 253402300800000.0) {
		*us = d > 1e11 ? (int64_t)(d * 1000) : (int64_t)(d * 1000000);
		return 1;
	}
	*raw = NULL;
	return 0;
}

void
gxp_meta_add_time(cJSON *obj, const cJSON *meta, int64_t received_us)
{
	const cJSON *raw;
	char buf[32];
	int64_t us;

	if (!gxp_meta_captured_at(meta, &us, &raw))
		us = received_us;
	gxp_fmt_utc(buf, us);
	cJSON_AddStringToObject(obj, "captured_at", buf);
	cJSON_AddItemToObject(obj, "captured_at_raw",
	    raw ? cJSON_Duplicate(raw, 0) : cJSON_CreateNull());
}

/* A sensor value from the top level or from a nested sensor_data object. */
static void
add_sensor(cJSON *s, const char *name, const cJSON *meta, const char *key,
    double scale)
{
	const cJSON *nested = cJSON_GetObjectItemCaseSensitive(meta, "sensor_data");
	double d;

	if (gxp_json_num(meta, key, &d) == 1 ||
	    (cJSON_IsObject(nested) && gxp_json_num(nested, key, &d) == 1))
		cJSON_AddNumberToObject(s, name, d / scale);
	else
		cJSON_AddNullToObject(s, name);
}

void
gxp_meta_add_extra(cJSON *obj, const cJSON *meta)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, "location");
	cJSON *s;

	cJSON_AddItemToObject(obj, "location",
	    cJSON_IsString(v) ? cJSON_Duplicate(v, 0) : cJSON_CreateNull());
	v = cJSON_GetObjectItemCaseSensitive(meta, "image_id");
	cJSON_AddItemToObject(obj, "image_id", v && (cJSON_IsString(v) ||
	    cJSON_IsNumber(v)) ? cJSON_Duplicate(v, 0) : cJSON_CreateNull());
	s = cJSON_AddObjectToObject(obj, "sensor");
	add_sensor(s, "temperature_c", meta, "temperature", 1);
	add_sensor(s, "humidity_pct", meta, "humidity", 1);
	add_sensor(s, "pressure_hpa", meta, "pressure", 1);
	add_sensor(s, "gas_kohm", meta, "gas_resistance", 1000);
}

static void
add_time(cJSON *obj, const char *key, int64_t us)
{
	char buf[32];

	gxp_fmt_utc(buf, us);
	cJSON_AddStringToObject(obj, key, buf);
}

cJSON *
gxp_sidecar_new(const struct gxp_sidecar *in)
{
	cJSON *sc = cJSON_CreateObject(), *t;

	cJSON_AddNumberToObject(sc, "v", 1);
	cJSON_AddStringToObject(sc, "device", in->device);
	cJSON_AddStringToObject(sc, "image_name", in->image_name);
	cJSON_AddStringToObject(sc, "capture_name", in->capture_name);
	gxp_meta_add_time(sc, in->meta, in->received_us);
	cJSON_AddNumberToObject(sc, "image_bytes", (double)in->image_bytes);
	cJSON_AddNumberToObject(sc, "chunk_size", (double)in->chunk_size);
	cJSON_AddNumberToObject(sc, "total_chunks", (double)in->total_chunks);
	cJSON_AddStringToObject(sc, "sha256", in->sha256);
	gxp_meta_add_extra(sc, in->meta);
	cJSON_AddRawToObject(sc, "meta", in->meta_raw);
	t = cJSON_AddObjectToObject(sc, "timings");
	add_time(t, "received_at", in->received_us);
	add_time(t, "started_at", in->started_us);
	add_time(t, "completed_at", in->completed_us);
	cJSON_AddNumberToObject(t, "nacks", in->nacks);
	cJSON_AddNumberToObject(t, "duplicates", (double)in->duplicates);
	return sc;
}

/* Removes name (below dirfd) and, if it is a directory, all it holds;
 * symbolic links are removed, never followed.  A missing name is fine. */
int
gxp_rmtree_at(int dirfd, const char *name)
{
	struct dirent *e;
	DIR *d;
	int fd, rc = 0;

	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	if ((fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return errno == ENOENT ? 0 : -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (gxp_rmtree_at(fd, e->d_name) == -1)
			rc = -1;
	}
	closedir(d);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) == -1 && errno != ENOENT)
		rc = -1;
	return rc;
}

/* Empties tmp/: whatever is there was being built when a process died. */
int
gxp_spool_sweep_tmp(const char *spool)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int rc = 0, n = 0;

	snprintf(path, sizeof path, "%s/tmp", spool);
	if ((d = opendir(path)) == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (gxp_rmtree_at(dirfd(d), e->d_name) == -1)
			rc = -1;
		else
			n++;
	}
	closedir(d);
	return rc == -1 ? -1 : n;
}

/* Removes the stored/<entry>.json records older than days (by their
 * modification time: when they were stored). */
int
gxp_spool_prune_stored(const char *spool, int days, int64_t now_us)
{
	char path[PATH_MAX];
	int64_t cutoff = now_us / 1000000 - (int64_t)days * 86400;
	struct dirent *e;
	struct stat st;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof path, "%s/stored", spool);
	if ((d = opendir(path)) == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) == -1 || !S_ISREG(st.st_mode))
			continue;
		if ((int64_t)st.st_mtime < cutoff && unlinkat(dirfd(d), e->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* The earlier layout's stored/<dev>/<name>.json records, renamed to
 * stored/<dev>@<name>.json; the emptied directories removed.  Either tool
 * may do it, at the same time even. */
void
gxp_spool_upgrade_stored(const char *spool)
{
	char *top = gxp_spool_path(spool, "stored", NULL, NULL), **devs = NULL, **names;
	long n = subdirs(top, &devs), k, done = 0;

	for (long i = 0; i < n; i++) {
		char *dir = gxp_spool_path(spool, "stored", devs[i], NULL);

		k = gxp_dir_names(dir, NULL, 0, &names);
		for (long j = 0; j < k; j++) {
			char *from = xasprintf("%s/%s", dir, names[j]);
			char *to = xasprintf("%s/%s@%s", top, devs[i], names[j]);

			if (gxp_device_valid(devs[i]) && keep_sidecar(names[j]) &&
			    rename(from, to) == 0)
				done++;
			free(from);
			free(to);
		}
		if (k > 0)
			gxp_names_free(names, k);
		if (rmdir(dir) == -1 && errno != ENOENT)
			gxp_log(LOG_WARN, "%s: %s", dir, strerror(errno));
		free(dir);
		free(devs[i]);
	}
	free(devs);
	if (done > 0 && gxp_fsync_dir(top) == 0)
		gxp_log(LOG_INFO, "%s: %ld records of the earlier layout taken over", top, done);
	free(top);
}

/* A 64-bit multiply-xor hash, eight bytes at a time, continuing from h:
 * enough to tell a torn or stale record from a whole one, not a
 * cryptographic guarantee.  The earlier layout's chunk log record: magic,
 * chunk_id, length and checksum, each four bytes little-endian, then the
 * chunk's bytes; the checksum is the hash of id, length and bytes folded
 * to 32 bits. */
uint64_t
gxp_mix64(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t w;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	for (w = 0; i < len; i++)
		w = w << 8 | p[i];
	h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
	return h ^ h >> 29;
}

uint32_t
gxp_chunk_sum(uint32_t id, uint32_t len, const void *data)
{
	uint64_t h = gxp_mix64(0x9e3779b97f4a7c15ULL ^ ((uint64_t)id << 32 | len), data, len);

	return (uint32_t)(h ^ h >> 32);
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

int
gxp_chunk_header_parse(const unsigned char h[GXP_CHUNK_HDR], uint32_t *id,
    uint32_t *len, uint32_t *sum)
{
	if (get32(h) != GXP_CHUNK_MAGIC)
		return -1;
	*id = get32(h + 4);
	*len = get32(h + 8);
	*sum = get32(h + 12);
	return 0;
}

long
gxp_spool_waiting(const char *spool, int64_t *oldest_us)
{
	static const char *const areas_waiting[] = { "ready", "work" };
	long total = 0;

	*oldest_us = 0;
	for (size_t i = 0; i < 2; i++) {
		char *dir = xasprintf("%s/%s", spool, areas_waiting[i]);
		struct gxp_aged *list;
		/* a photo waits as its sidecar, E.json, in ready/ or work/ */
		long n = gxp_dir_aged(dir, &list);
		char entry[GXP_ENTRY_MAX + 1];

		free(dir);
		if (n == -1) {
			if (i == 0)
				return -1;
			continue;
		}
		for (long k = 0; k < n; k++) {
			if (gxp_spool_sidecar_name(list[k].name, entry) == -1)
				continue;
			if (*oldest_us == 0 || list[k].mtime_us < *oldest_us)
				*oldest_us = list[k].mtime_us;
			total++;
		}
		gxp_aged_free(list, n);
	}
	return total;
}
