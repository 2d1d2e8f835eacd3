/* store.h: gxp-upload's own library: the HTTP engine (http.c), the two
 * stores behind one interface (store.c, store_dir.c, store_supabase.c) and
 * the row batches (rows.c).  gxp-report uses the HTTP engine, the synced
 * writes (store_sync.c) and the settings' checks too. */
#ifndef GXP_STORE_H
#define GXP_STORE_H

#include <poll.h>

#include "gxp.h"

/* How an operation ended. */
enum {
	ST_OK,		/* done and durable */
	ST_PERM,	/* refused for good: the photo or the row is at fault */
	ST_GAVEUP,	/* temporary failures outlasted the attempts allowed */
	ST_FATAL,	/* credentials, bucket, table or column: nothing will work */
	ST_SPLIT	/* a batch ran out of time (statement timeout): send less */
};
/* store_rows() flags */
enum {
	ROWS_WANT = 1,			/* the rows back (return=representation) */
	ROWS_IGNORE_DUPLICATES = 2,	/* on_conflict: keep the row there */
	ROWS_SPLITTABLE = 4,		/* a statement timeout is ST_SPLIT, not retried */
	ROWS_LOOKUP = 8			/* captures: only the ids are wanted, nothing written */
};

struct st_result {
	int rc;
	int status;		/* effective HTTP status; 0 when there was none */
	const char *msg;	/* the server's message or the local error, no secret */
	const char *body;	/* the response body (rows for return=representation) */
	size_t len;
};
typedef void st_done_fn(void *arg, const struct st_result *r);

/* http.c: requests over a curl multi handle, with keep-alive connections,
 * retries (capped exponential backoff with jitter, Retry-After) and the
 * real status a Storage server may hide in a 400's body. */
struct http;
struct curl_slist;
struct http_opts {
	const char *cafile;
	long timeout_ms, retry_base_ms, retry_max_ms;
	int max_conns;
};
struct http_res {
	int curl_code;		/* CURLE_*, 0 when a response came */
	long http_status;	/* as sent */
	int status;		/* the body's statusCode when it holds the real one */
	int gave_up;		/* a temporary failure, attempts exhausted */
	int cancelled;		/* http_free(): only release what arg holds */
	const char *err;	/* curl's error text when curl_code != 0 */
	const char *body;
	size_t len;
};
typedef void http_done_fn(void *arg, const struct http_res *r);
struct http_stats {
	unsigned long long requests, retries, bytes_sent;
	int active, waiting;
	long long failing_ms;	/* since requests began to fail; 0: they do not */
	int unreachable;	/* ... for want of an answer, not with 5xx */
	char failure[128];	/* the last failure, when failing */
};
/* http_send() flags */
enum { HTTP_FINAL_TIMEOUT = 1 };	/* a statement timeout (500, 57014) is final */
struct http *http_new(const struct http_opts *o);
void http_send(struct http *h, const char *method, const char *url,
    struct curl_slist *headers, char *body, size_t len, int flags,
    http_done_fn *fn, void *arg);
void http_attempts(struct http *h, int max);	/* 0: unlimited */
int http_wait(struct http *h, int timeout_ms, int fd, short *revents);
int http_poll(struct http *h, int timeout_ms, struct pollfd *fds, int nfds);
void http_stats(const struct http *h, struct http_stats *s);
void http_free(struct http *h);
int http_retryable(const struct http_res *r);

/* store.c, store_dir.c, store_supabase.c: objects and rows.  Callbacks run
 * only inside store_wait(), never from the call that started the work. */
struct store;
struct store_ops {
	void (*put)(struct store *, const char *path, const char *src, char *data,
	    size_t len, st_done_fn *, void *);
	void (*rows)(struct store *, const char *table, const char *query,
	    int flags, char *json, size_t len, st_done_fn *, void *);
	int (*wait)(struct store *, int timeout_ms, struct pollfd *fds, int nfds);
	int (*busy)(const struct store *);
	void (*attempts)(struct store *, int max);
	long long (*mark)(struct store *, const char *table);
	int (*seen)(struct store *, const char *table, long long mark,
	    const char *const *needles);
	void (*known_after)(struct store *, const char *table, long long offset);
	void (*stats)(const struct store *, struct http_stats *);
	void (*free)(struct store *);
	int (*check)(struct store *);	/* --check: lines on stdout, exit code */
	void (*rest)(struct store *, const char *method, const char *path,
	    const char *prefer, char *json, size_t len, st_done_fn *, void *);
};
struct store {
	const struct store_ops *ops;
	const char *kind;	/* "supabase" or "dir" */
	const char *bucket;
	char *url_base;		/* an object's URL: this, /<bucket>/<path> */
};
const char *gxp_bucket(void);
struct store *store_open(void);
struct store *store_dir_open(const char *dir, const char *bucket);
struct store *store_supabase_open(const char *bucket, int conns);
/* store_supabase.c's rules for any Supabase client (gxp-report too): the
 * API bases, the key's headers, a server's answer described without the key. */
char *supabase_base_url(const char *override, const char *url, const char *suffix);
void supabase_key(struct gxp_apikey *k);
struct http *supabase_http(int max_conns);
struct curl_slist *supabase_headers(const struct gxp_apikey *k, const char *content_type);
void supabase_describe(const char *key, struct gxp_buf *b, const struct http_res *r);
void store_put(struct store *s, const char *path, const char *src, char *data,
    size_t len, st_done_fn *fn, void *arg);
void store_rows(struct store *s, const char *table, const char *query,
    int flags, char *json, size_t len, st_done_fn *fn, void *arg);
int store_wait(struct store *s, int timeout_ms, int fd, short *revents);
int store_poll(struct store *s, int timeout_ms, struct pollfd *fds, int nfds);
void store_rest(struct store *s, const char *method, const char *path,
    const char *prefer, char *json, size_t len, st_done_fn *fn, void *arg);
int store_busy(const struct store *s);
void store_attempts(struct store *s, int max);
long long store_mark(struct store *s, const char *table);
int store_seen(struct store *s, const char *table, long long mark,
    const char *const *needles);
void store_known_after(struct store *s, const char *table, long long offset);
void store_stats(const struct store *s, struct http_stats *st);
void store_free(struct store *s);
int store_check(struct store *s);
char *store_object_url(const struct store *s, const char *path);
char *store_file_url(const char *dir);
void gxp_uuid_of(char out[37], const char *ns, const char *a, const char *b);
void gxp_sha256_hex(char out[65], const void *data, size_t len);

/* store_sync.c: files written without a sync each, made durable together
 * by the next syncset_sync() (fsfd: a descriptor on their file system). */
struct syncset {
	struct gxp_buf paths;	/* NUL-separated */
	size_t n;
	int made_dirs;
};
int syncset_write(struct syncset *s, const char *path, const void *data, size_t len);
int syncset_link(struct syncset *s, const char *src, const char *path);
int syncset_sync(struct syncset *s, int fsfd);
int syncset_all(int fsfd);
int syncset_whole(const struct syncset *s);
int syncset_pending(const struct syncset *s);
void syncset_free(struct syncset *s);

/* rows.c: rows for the six tables, batched per table (one request in flight
 * per table, so upserts of one key apply in order), with device_id and
 * capture_id filled in from the upserts' representations. */
enum { T_DEVICES, T_CAPTURES, T_SENSOR, T_STATUS, T_ERRORS, T_PUBLOG, T_COUNT };
enum { CAP_NONE, CAP_IF_KNOWN, CAP_REQUIRED, CAP_MASK = 3 };
/* or'ed into need: a captures row written before the outcome is known;
 * a captures row that only asks for the capture's id */
enum { ROW_KEEP_OUTCOME = 4, ROW_LOOKUP = 8 };
typedef void row_done_fn(void *arg, int rc, const char *msg);
struct rows;
struct rows_stats {
	unsigned long long written, failed, dropped, requests;
	size_t queued, kept;
};
struct marks;
struct rows *rows_new(struct store *st);
void rows_journal(struct rows *r, struct marks *m);
void rows_device_seen(struct rows *r, const char *dev, const char *when);
void rows_add(struct rows *r, int table, cJSON *row, const char *dev,
    const char *cap, int need, row_done_fn *fn, void *arg);
void rows_add_text(struct rows *r, int table, char *json, const char *cols,
    const char *dev);
void rows_flush(struct rows *r, int all);
int64_t rows_due_ms(const struct rows *r);
int rows_idle(const struct rows *r);
const char *rows_fatal(const struct rows *r);
int rows_capture_seen(struct rows *r, const char *dev, const char *cap);
void rows_stats(const struct rows *r, struct rows_stats *s);
long rows_spill(struct rows *r, const char *path);
long rows_load(struct rows *r, const char *path, long *bad);
void rows_free(struct rows *r);
extern const char *const rows_table_names[T_COUNT];

/* marks.c: which journal lines have all their rows durable. */
struct marks *marks_new(void);
uint64_t marks_row(struct marks *m);
void marks_settled(struct marks *m, uint64_t epoch);
void marks_mark(struct marks *m, uint64_t seq, const long long off[T_COUNT]);
uint64_t marks_done(const struct marks *m, long long off[T_COUNT]);
void marks_free(struct marks *m);

#endif
