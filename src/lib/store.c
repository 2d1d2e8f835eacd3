/* store.c: the one interface in front of the two stores: Supabase when
 * SUPABASE_URL is set, a local directory (GXP_STORE) otherwise. */
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "store.h"

/* SUPABASE_STORAGE_BUCKET, checked: bucket names become URL path
 * segments and directory names. */
const char *
gxp_bucket(void)
{
	const char *bucket = gxp_cfg("SUPABASE_STORAGE_BUCKET");

	if (strspn(bucket, "abcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(bucket) ||
	    bucket[0] == '.' || strlen(bucket) > 63)
		gxp_die(EXIT_PERM, "SUPABASE_STORAGE_BUCKET=%s: expected 1 to 63 of "
		    "a-z 0-9 . _ - (not starting with a dot)", bucket);
	return bucket;
}

struct store *
store_open(void)
{
	const char *bucket = gxp_bucket();

	if (gxp_cfg("SUPABASE_URL"))
		return store_supabase_open(bucket, 0);
	return store_dir_open(gxp_cfg("GXP_STORE"), bucket);
}

/* Takes data.  src, when not NULL, is a synced file with the same bytes,
 * which a store on its file system may link instead of writing data. */
void
store_put(struct store *s, const char *path, const char *src, char *data,
    size_t len, st_done_fn *fn, void *arg)
{
	s->ops->put(s, path, src, data, len, fn, arg);
}

void
store_rows(struct store *s, const char *table, const char *query, int flags,
    char *json, size_t len, st_done_fn *fn, void *arg)
{
	s->ops->rows(s, table, query, flags, json, len, fn, arg);
}

int
store_wait(struct store *s, int timeout_ms, int fd, short *revents)
{
	struct pollfd p = { fd, POLLIN, 0 };
	int rc = s->ops->wait(s, timeout_ms, &p, fd >= 0 ? 1 : 0);

	if (revents)
		*revents = p.revents;
	return rc;
}

/* Runs the store's work for up to timeout_ms, also waking when one of
 * fds is ready (their revents say which). */
int
store_poll(struct store *s, int timeout_ms, struct pollfd *fds, int nfds)
{
	return s->ops->wait(s, timeout_ms, fds, nfds);
}

/* A PostgREST request: method on path (table?query) with the Prefer
 * header prefer (or none); takes json.  Supabase only. */
void
store_rest(struct store *s, const char *method, const char *path, const char *prefer,
    char *json, size_t len, st_done_fn *fn, void *arg)
{
	if (s->ops->rest == NULL)
		gxp_die(EXIT_PERM, "internal error: the %s store has no REST API", s->kind);
	s->ops->rest(s, method, path, prefer, json, len, fn, arg);
}

int
store_busy(const struct store *s)
{
	return s->ops->busy(s);
}

void
store_attempts(struct store *s, int max)
{
	s->ops->attempts(s, max);
}

long long
store_mark(struct store *s, const char *table)
{
	return s->ops->mark(s, table);
}

int
store_seen(struct store *s, const char *table, long long mark,
    const char *const *needles)
{
	return s->ops->seen(s, table, mark, needles);
}

/* The rows of table after offset (store_mark) may be made again: those
 * already there are not written twice (the local store; Supabase needs
 * nothing for it). */
void
store_known_after(struct store *s, const char *table, long long offset)
{
	s->ops->known_after(s, table, offset);
}

void
store_stats(const struct store *s, struct http_stats *st)
{
	s->ops->stats(s, st);
}

void
store_free(struct store *s)
{
	if (s)
		s->ops->free(s);
}

void
gxp_sha256_hex(char out[65], const void *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(data, len, md);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

/* A name-based UUID (RFC 9562 version 8) from SHA-256 of ns, a and b, so
 * the same thing gets the same id in every run. */
void
gxp_uuid_of(char out[37], const char *ns, const char *a, const char *b)
{
	struct gxp_buf in = { 0 };
	char hex[65];
	int o = 0;

	gxp_buf_add(&in, ns, strlen(ns) + 1);
	gxp_buf_add(&in, a, strlen(a) + 1);
	gxp_buf_adds(&in, b ? b : "");
	gxp_sha256_hex(hex, in.p, in.len);
	gxp_buf_free(&in);
	hex[12] = '8';					/* version */
	hex[16] = "89ab"[(hex[16] >= 'a' ? hex[16] - 'a' + 10 : hex[16] - '0') & 3];	/* variant */
	for (int i = 0; i < 32; i++) {
		if (i == 8 || i == 12 || i == 16 || i == 20)
			out[o++] = '-';
		out[o++] = hex[i];
	}
	out[o] = '\0';
}

int
store_check(struct store *s)
{
	return s->ops->check(s);
}

/* The URL of the object at path: the Storage API's URL of an
 * authenticated object (not a public one: the bucket is private; whoever
 * opens it signs it or sends a key), or in the local store a file:// URL. */
char *
store_object_url(const struct store *s, const char *path)
{
	return xasprintf("%s/%s/%s", s->url_base, s->bucket, path);
}

/* file:// and the absolute path of dir, percent-encoded but for '/'. */
char *
store_file_url(const char *dir)
{
	static const char unreserved[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-._~/";
	struct gxp_buf b = { 0 };
	char *abs = realpath(dir, NULL);

	if (abs == NULL)
		gxp_die_errno(EXIT_TEMP, "local store %s", dir);
	gxp_buf_adds(&b, "file://");
	for (const char *p = abs; *p; p++)
		if (strchr(unreserved, *p))
			gxp_buf_add(&b, p, 1);
		else
			gxp_buf_addf(&b, "%%%02X", (unsigned char)*p);
	free(abs);
	return b.p;
}
