/* report.h: gxp-report's own header.  The tool reads the store's rows into
 * a model of the fleet (model.c), keeps that model between runs in a state
 * file (state.c) so that each run reads only the rows that are new
 * (src_dir.c, src_supa.c), makes thumbnails (thumb.c, photos.c) and writes
 * the pages (html.c, svg.c, page_index.c, page_device.c, out.c). */
#ifndef GXP_REPORT_H
#define GXP_REPORT_H

#include "lib/gxp.h"
#include "lib/store.h"

#define HOUR_US (3600LL * 1000000)
#define DAY_US (24 * HOUR_US)

/* map.c: a hash map from strings to pointers. */
struct map;
struct map *map_new(void);
void *map_get(const struct map *m, const char *key);
/* Sets key's value; returns the old one (NULL if none). */
void *map_put(struct map *m, const char *key, void *val);
void *map_del(struct map *m, const char *key);
size_t map_count(const struct map *m);
/* Calls fn for each entry, in no particular order. */
void map_each(const struct map *m, void (*fn)(const char *key, void *val, void *arg),
    void *arg);
void map_free(struct map *m, void (*free_val)(void *));

/* model.c: the fleet, built from rows of the store's tables with the
 * Supabase column names, whatever their source. */
enum { R_DEVICES, R_CAPTURES, R_READINGS, R_STATUS, R_ERRORS, R_COUNT };
extern const char *const r_table_names[R_COUNT];
enum { CAP_ASSEMBLING, CAP_FAILED, CAP_STORED };
enum { THUMB_NONE, THUMB_OK, THUMB_BAD, THUMB_LATER };

struct rcap {
	char *id, *name;		/* capture_id, device_capture_id */
	int64_t t;			/* created_at, else captured_at; 0: unknown */
	int64_t created_at, captured_at;
	int status;
	unsigned long seq;		/* the order it was first read in */
	long long bytes;		/* -1: unknown */
	char *path, *sha, *error, *url;	/* storage_path, image_sha256,
					   ingest_error, image_url */
	/* for the pages */
	char thumb[33];			/* thumbs/<thumb>.jpg */
	int thumb_state;
	const char *href;		/* the full image; NULL: none */
};

struct rerr {
	char *id;
	int64_t t;			/* occurred_at */
	long code;
	char *severity, *message;
};

enum {
	F_ERRORS = 1 << 4,		/* failed photos or errors in the period */
	F_OFFLINE = 1 << 3,		/* not seen for REPORT_OFFLINE_S */
	F_LATE = 1 << 2,		/* past next_wake_at by REPORT_LATE_S */
	F_NOPHOTO = 1 << 1,		/* no photo stored in the period */
	F_PENDING = 1 << 0		/* photos waiting on the device */
};

struct rdev {
	char *uuid, *hw, *model, *ip;	/* hw: device_hw_id, NULL: not known */
	int64_t seen, next_wake;	/* 0: unknown */
	int has_next_wake;		/* the column exists */
	char *status;
	long long pending;		/* -1: unknown */
	int64_t status_t;
	double reading[4];		/* temperature_c, humidity_pct, pressure_hpa, gas_kohm */
	int has_reading[4];
	int64_t reading_t;
	int has_err, has_photo;
	struct rerr err;		/* the latest error, of any age */
	struct rcap photo;		/* the latest stored photo, of any age */
	struct rcap *caps;		/* recent captures, newest first */
	size_t ncaps, capcap;
	struct rerr *errs;		/* recent errors, newest first */
	size_t nerrs, errcap;
	/* for the pages (model_finish) */
	int stored24, failed24, flags;
	char *page;			/* devices/<page>.html */
	const char *label;		/* hw, or "(device <uuid>)" */
};

struct fleet {
	struct map *by_uuid;
	struct rdev **devs;		/* model_finish: sorted, attention first */
	size_t ndevs;
	int64_t now;			/* the report's time */
	long long recent_photos, recent_errors;
	int64_t recent_us;		/* REPORT_RECENT_H */
	int64_t max_t[R_COUNT];		/* newest row time seen, per table */
	unsigned long long rows, bad_rows;
	unsigned long seq;
	/* model_finish */
	int stored[24], failed[24];	/* per hour, oldest first */
	int total_stored, total_failed, seen24;
	long long total_pending;
	int nflag[5];			/* devices with each F_ flag, lowest bit first */
	int attention;
};

struct fleet *fleet_new(int64_t now);
void fleet_clear(struct fleet *f);
void fleet_free(struct fleet *f);
/* Merges one row of table into the model; -1 (logged) if it is unusable. */
int model_row(struct fleet *f, int table, const cJSON *row);
/* A gxp_report_devices row: the device and its latest of everything. */
int model_view_row(struct fleet *f, const cJSON *row);
struct rdev *model_device(struct fleet *f, const char *uuid);
/* Prunes what is too old, counts, flags and sorts the devices. */
void model_finish(struct fleet *f);
/* The device's rows (state.c): one JSON object per device. */
cJSON *model_device_json(const struct rdev *d);
int model_device_load(struct fleet *f, const cJSON *j);
const char *cap_status_name(int status);

/* text.c: small helpers for the pages and logs. */
void html_esc(struct gxp_buf *b, const char *s);
void url_path_esc(struct gxp_buf *b, const char *s);
void fmt_when(struct gxp_buf *b, int64_t t, int64_t now);	/* "3 h ago" */
void fmt_utc_short(char buf[32], int64_t t);			/* 2026-12-01 15:07 UTC */
/* s made safe for a log line: quoted, control characters escaped, cut. */
const char *log_safe(const char *s, char buf[96]);
int storage_path_safe(const char *p);

struct state_extra;

/* source: the store the rows and photos come from. */
typedef void fetch_fn(void *arg, int rc, const char *data, size_t len,
    const char *why);
struct source {
	const char *kind;		/* "dir" or "supabase" */
	char *id;			/* what the state must match */
	char *label;			/* what the pages say it is */
	/* Reads the rows new since the cursors (all when full) into f. */
	int (*read)(struct source *, struct fleet *, int full);
	/* A photo's bytes: fn is called with ST_OK, or ST_PERM (the photo
	 * is at fault) or ST_GAVEUP (try again next run) and why. */
	void (*fetch)(struct source *, const char *path, fetch_fn *, void *);
	/* Runs the fetches started for up to timeout_ms, or until one ends. */
	void (*wait)(struct source *, int timeout_ms);
	/* Sets the href of each photo with a thumbnail: a relative path to
	 * the local file, or a signed URL (kept in x between runs). */
	int (*links)(struct source *, struct fleet *, const char *outdir,
	    struct state_extra *x);
	cJSON *(*cursors)(struct source *);	/* for the state */
	void (*set_cursors)(struct source *, const cJSON *);
	int (*check)(struct source *);
	void (*free)(struct source *);
	int64_t refresh_us;		/* a full read at least this often; 0: never */
	unsigned long long requests, downloads, signed_urls;
};
struct source *src_dir_open(const char *dir, const char *bucket);
struct source *src_supa_open(const char *bucket);

/* state.c: the state file, <dir>/.gxp-report.state. */
struct state_extra {
	struct map *thumbs;		/* key -> "" (made) or the reason it is bad */
	struct map *signed_urls;	/* storage_path -> struct signed */
	struct map *sums;		/* page -> sha256 of what was written */
	int64_t full_at;		/* last full read (Supabase) */
};
struct signed_url {
	char *url;
	int64_t exp;
};
int state_load(const char *path, struct source *src, struct fleet *f,
    struct state_extra *x);
int state_save(const char *path, struct source *src, const struct fleet *f,
    const struct state_extra *x);
void state_extra_free(struct state_extra *x);
void signed_url_free(void *p);

/* thumb.c: a JPEG's thumbnail (libjpeg-turbo's scaled decoding). */
struct thumb_opts {
	int px;				/* longest side */
	long long max_pixels;		/* largest photo decoded */
};
/* 0 with the thumbnail's JPEG in *out (tjFree it), 1 with it and a warning
 * in why (the photo is damaged but showed), -1 with why. */
int thumb_make(const unsigned char *jpeg, size_t len, const struct thumb_opts *o,
    unsigned char **out, unsigned long *outlen, char why[160]);
void thumb_release(unsigned char *p);

/* photos.c: thumbnails for every photo the pages show, made once. */
struct photo_stats {
	unsigned long long made, cached, bad, later, fetched_bytes;
};
struct out;
int photos_update(struct source *src, struct fleet *f, struct out *o,
    struct state_extra *x, struct photo_stats *st);
void thumb_key(char out[33], const char *path, const char *sha, long long bytes);

/* out.c: the report's files, each written whole (tmp + rename). */
struct out {
	char *dir;
	struct syncset ss;
	struct map *written;		/* relative paths in place this run */
	struct map *old_sums, *sums;	/* relative path -> sha256 of the bytes */
	unsigned long long wrote, unchanged;
	int failed;
};
void out_init(struct out *o, const char *dir, struct map *sums);
void out_file(struct out *o, const char *rel, const void *data, size_t len);
/* Removes files in <dir>/<sub>/ this run did not write (and kept() does not
 * keep); then makes what was written durable.  0 or -1. */
void out_sweep(struct out *o, const char *sub, int (*kept)(const char *name, void *),
    void *arg);
int out_sync(struct out *o);
void out_free(struct out *o);

/* page_*.c, svg.c: the pages. */
struct page_opts {
	const char *source;		/* "local store /path" or "Supabase host" */
	long long page_tiles;
	int64_t offline_us, late_us;
};
void page_index_all(struct out *o, const struct fleet *f, const struct page_opts *po);
void page_device_all(struct out *o, const struct fleet *f, const struct page_opts *po);
void page_head(struct gxp_buf *b, const char *title, const char *css);
void page_foot(struct gxp_buf *b, const struct fleet *f, const struct page_opts *po,
    int stamped);
void svg_chart(struct gxp_buf *b, const struct fleet *f);
void tile_facts(struct gxp_buf *b, const struct rdev *d, const struct fleet *f,
    int64_t now);
void ago(struct gxp_buf *b, int64_t t, int64_t now);
void badges(struct gxp_buf *b, int flags);
const char *tile_class(int flags);
void error_text(struct gxp_buf *b, const struct rerr *e);
void thumb_img(struct gxp_buf *b, const struct rcap *c, const char *prefix,
    const char *alt);
extern const char report_css[];

#endif
