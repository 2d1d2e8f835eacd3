/* gxp.h: the shared library of the gxp tools (libgxp.a).
 * One concern per file in src/lib/; this is the one header. */
#ifndef GXP_H
#define GXP_H

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#define GXP_EVENT_VERSION 1
/* the release (the Makefile's VERSION), in gxp-upload's User-Agent */
#ifndef GXP_VERSION
#define GXP_VERSION "dev"
#endif

/* Exit codes, the same in every tool (gxp(7) EXIT STATUS). */
enum {
	EXIT_OK = 0,
	EXIT_PERM = 100,	/* usage, configuration, credentials: do not restart */
	EXIT_TEMP = 111		/* network, disk, broker: restart after a pause */
};

/* err.c: program name, levelled logging to stderr, fatal errors. */
enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_NONE };
extern const char *gxp_progname;
void gxp_init(const char *argv0);
void gxp_log_level_set(int level);
int gxp_log_level_parse(const char *s);
int gxp_log_enabled(int level);
void gxp_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void gxp_vlog(int level, const char *fmt, va_list ap);
/* text made safe for a terminal: controls escaped (\xNN), lines joined */
size_t gxp_clean_text(char *out, size_t cap, const char *text);
void gxp_check_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
_Noreturn void gxp_usage(int code, const char *synopsis, const char *options);
void gxp_bad_option(int c, char **argv);
_Noreturn void gxp_die(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
_Noreturn void gxp_die_errno(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* parent.c: a stage of gxp-supervise dies with it (GXP_SUPERVISOR_PID). */
void gxp_die_with_supervisor(void);

/* alloc.c: allocation that dies (exit 111) instead of returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* config.c: settings from flags, the environment and a .env file, in that
 * order of precedence. Every setting is declared in one table (settings.c). */
struct gxp_setting {
	const char *name;
	const char *def;	/* NULL: unset unless configured */
	long long min, max;	/* for integers; min > max: not an integer */
	int secret;		/* never printed */
	const char *doc;
};
extern const struct gxp_setting gxp_settings[];
extern const char *const gxp_retired_settings[];
const struct gxp_setting *gxp_setting_find(const char *name);
int gxp_config_load(const char *envfile, int must_exist);
void gxp_config_set(const char *name, const char *value);
const char *gxp_cfg(const char *name);
long long gxp_cfg_int(const char *name);
int gxp_cfg_bool(const char *name);
const char *gxp_cfg_source(const char *name);
void gxp_config_free(void);
void gxp_config_common(const char *envfile);
int gxp_config_problems(void);
int gxp_config_warnings(void);

/* clock.c: time. */
int64_t gxp_mono_ms(void);
int64_t gxp_wall_us(void);
int64_t gxp_mono_us(void);
void gxp_fmt_utc(char buf[32], int64_t wall_us);	/* 2026-11-27T05:04:21.627829Z */
int gxp_parse_time(const char *s, int64_t *wall_us);
int64_t gxp_days_from_civil(int64_t y, int m, int d);
void gxp_civil_from_days(int64_t days, int *y, int *m, int *d);
void gxp_sleep_ms(int64_t ms);

/* out.c: NDJSON on stdout, one record per line, flushed per batch.
 * A closed pipe (EPIPE) sets gxp_out_closed and makes later writes no-ops. */
extern volatile int gxp_out_closed;
int gxp_out_line(const char *line, size_t len);
int gxp_out_json(const cJSON *obj);
int gxp_write_all(int fd, const char *buf, size_t len);

/* line.c: a bounded line reader for NDJSON input. */
struct gxp_lines;
enum { LINE_OK, LINE_AGAIN, LINE_EOF, LINE_TOO_LONG, LINE_TRUNCATED, LINE_ERROR };
struct gxp_lines *gxp_lines_open(int fd, size_t max_line);
int gxp_lines_fill(struct gxp_lines *r);	/* one read(2): >0, 0 at EOF, -1 */
int gxp_lines_next(struct gxp_lines *r, char **line, size_t *len); /* no I/O */
int gxp_lines_read(struct gxp_lines *r, char **line, size_t *len); /* blocks */
int gxp_lines_fd(const struct gxp_lines *r);
long long gxp_lines_number(const struct gxp_lines *r);
void gxp_lines_free(struct gxp_lines *r);

/* hash.c: FNV-1a, for hash tables of strings. */
unsigned gxp_hash(const char *s);

/* buf.c: a growable byte buffer for building records. */
struct gxp_buf {
	char *p;
	size_t len, cap;
};
void gxp_buf_grow(struct gxp_buf *b, size_t more);
void gxp_buf_add(struct gxp_buf *b, const void *data, size_t len);
void gxp_buf_adds(struct gxp_buf *b, const char *s);
void gxp_buf_addf(struct gxp_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void gxp_buf_add_jstr(struct gxp_buf *b, const char *s, size_t len);
void gxp_buf_free(struct gxp_buf *b);

/* metrics.c: counters, written as a Prometheus text file and on SIGUSR1. */
struct gxp_counter {
	const char *name, *help;	/* name without the gxp_<tool>_ prefix */
	int gauge;
	_Atomic unsigned long long v;
};
void gxp_metrics_init(struct gxp_counter *c, size_t n);
void gxp_metrics_tick(int force);

/* json.c: typed access to cJSON objects and event construction. */
cJSON *gxp_json_parse(const char *s, size_t len);
const char *gxp_json_str(const cJSON *obj, const char *key);
int gxp_json_num(const cJSON *obj, const char *key, double *out);
int gxp_json_int(const cJSON *obj, const char *key, long long *out);
cJSON *gxp_event_new(const char *type);
char *gxp_json_print(const cJSON *obj);
int gxp_utf8_valid(const unsigned char *s, size_t len);
int gxp_json_valid(const char *s, size_t len);
int gxp_json_raw_member(const char *text, size_t len, const char *key,
    const char **val, size_t *vlen);
size_t gxp_json_minify(char *s, size_t len);
#define GXP_JSON_SHALLOW 1
int gxp_json_next_member(const char *text, size_t len, size_t *pos, int flags,
    const char **key, size_t *klen, const char **val, size_t *vlen);
long gxp_json_unescape(const char *s, size_t n, char *out);

/* apikey.c: the Supabase key gxp-upload uses and its kind. */
enum { KEY_NONE, KEY_SECRET, KEY_PUBLISHABLE, KEY_JWT, KEY_OTHER };
struct gxp_apikey {
	const char *setting;	/* the setting it came from */
	const char *value;	/* NULL: none set */
	int kind, both;		/* both: the other setting is set too, unused */
	char role[32];		/* a JWT's role claim */
};
void gxp_apikey(struct gxp_apikey *k);
int gxp_apikey_bearer(const struct gxp_apikey *k);
const char *gxp_apikey_kind(const struct gxp_apikey *k);
const char *gxp_apikey_refused(const struct gxp_apikey *k);

/* jsonb.c: numbers PostgreSQL's jsonb cannot hold, made strings. */
long gxp_jsonb_safe(const char *in, size_t len, struct gxp_buf *out);

/* b64.c: standard base64 (RFC 4648), strict decoding. */
size_t gxp_b64_encoded_len(size_t n);
size_t gxp_b64_encode(const unsigned char *in, size_t n, char *out);
long gxp_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

/* fsutil.c: crash-safe files. */
int gxp_mkdirs(const char *path, int mode);
int gxp_path_error_permanent(int e);
int gxp_fsync_dir(const char *dir);
int gxp_write_atomic(const char *path, const void *buf, size_t len);
int gxp_read_file(const char *path, char **buf, size_t *len, size_t max);
int gxp_lock_file(const char *path);
int gxp_repair_lines(int fd, const char *path);

/* dir.c: sorted directory listings. */
long gxp_dir_names(const char *dir, int (*keep)(const char *), int with_dir,
    char ***names);
void gxp_names_free(char **names, long n);
struct gxp_aged {
	char *name;
	int64_t mtime_us;
};
long gxp_dir_aged(const char *dir, struct gxp_aged **list);
void gxp_aged_free(struct gxp_aged *list, long n);

/* wire.c: topics, ids and names, and the ACK_OK / NACK publish events. */
#define GXP_DEVICE_MAX 64
#define GXP_NAME_MAX 128
enum { TOPIC_OTHER, TOPIC_DATA, TOPIC_STATUS, TOPIC_ACK };
int gxp_device_valid(const char *s);
int gxp_image_name_valid(const char *s);
int gxp_topic_parse(const char *topic, char dev[GXP_DEVICE_MAX + 1]);
int gxp_topic_match(const char *setting, const char *topic, char dev[GXP_DEVICE_MAX + 1]);
char *gxp_ack_topic(const char *dev);
char *gxp_topic_for(const char *setting, const char *dev);
cJSON *gxp_ack_ok_event(const char *dev, const char *image_name, const char *sched);
cJSON *gxp_nack_event(const char *dev, const char *image_name,
    const uint32_t *ids, size_t n);

/* journal.c: gxp-sub's journal (gxp-spool(5)): NDJSON lines stamped with
 * an increasing "seq", in segment files; thread-safe. */
struct gxp_journal;
struct gxp_journal *gxp_journal_open(const char *dir, long long seg_bytes);
uint64_t gxp_journal_next(const struct gxp_journal *j);
int gxp_journal_append(struct gxp_journal *j, const char *line, size_t len);
int gxp_journal_sync(struct gxp_journal *j);
long long gxp_journal_trim(struct gxp_journal *j, uint64_t committed);
long long gxp_journal_bytes(struct gxp_journal *j);
void gxp_journal_head(struct gxp_journal *j, uint64_t *seg, long long *end);
uint64_t gxp_journal_after(struct gxp_journal *j, uint64_t seg);
long long gxp_journal_since(struct gxp_journal *j, uint64_t seg, long long off);
int gxp_journal_find(struct gxp_journal *j, uint64_t after, uint64_t *seg, long long *off);
char *gxp_journal_path(const struct gxp_journal *j, uint64_t seg);
void gxp_journal_tail(struct gxp_journal *j, long long max,
    void (*fn)(const char *line, size_t len, void *arg), void *arg);
void gxp_journal_close(struct gxp_journal *j);
int gxp_journal_line_seq(const char *line, size_t len, uint64_t *seq);
uint64_t gxp_journal_committed(const char *dir);
uint64_t gxp_journal_last(const char *dir);

/* hist.c: a histogram of durations in microseconds, for quantiles. */
struct gxp_hist;
struct gxp_hist *gxp_hist_new(void);
void gxp_hist_add(struct gxp_hist *h, int64_t us);
int64_t gxp_hist_quantile(const struct gxp_hist *h, double q);
unsigned long long gxp_hist_count(const struct gxp_hist *h);
int64_t gxp_hist_max(const struct gxp_hist *h);
void gxp_hist_free(struct gxp_hist *h);

/* errcode.c: the meaning of a device_errors code (README, "Error codes"). */
#define GXP_MEANING_MAX 48
const char *gxp_error_meaning(long code, char buf[GXP_MEANING_MAX]);

/* sig.c: signals become flags read by the main loop. */
extern volatile sig_atomic_t gxp_sig_term, gxp_sig_usr1;
void gxp_signals_init(void);

/* mqtt.c: the broker connection every MQTT tool shares.  MQTT 5 unless
 * v311 is set (or the broker only speaks 3.1.1), so that a broker that
 * hands our session to another client can say so. */
struct mosquitto;
struct mosquitto_message;
struct gxp_mqtt;
struct gxp_mqtt_opts {
	const char *client_id;	/* NULL: MQTT_CLIENT_ID-<role>, or a random one */
	int clean_session;
	int check;		/* --check: an id of its own, no retry chatter */
	int once;		/* one attempt: a broker away is an error at once */
	int v311;		/* speak MQTT 3.1.1 */
	int nodelay;		/* TCP_NODELAY: small messages go out at once */
	const char *presence_topic;	/* the presence record's topic, not MQTT_PRESENCE_TOPIC/<id> */
	void (*on_connected)(struct mosquitto *, void *);
	void (*on_message)(struct mosquitto *, void *,
	    const struct mosquitto_message *);
	void (*on_publish)(struct mosquitto *, void *, int mid);
	void (*on_subscribe)(struct mosquitto *, void *, int mid, int n,
	    const int *granted);
	void *userdata;
};
struct gxp_mqtt *gxp_mqtt_new(const struct gxp_mqtt_opts *o);
struct mosquitto *gxp_mqtt_handle(struct gxp_mqtt *m);
int gxp_mqtt_step(struct gxp_mqtt *m, int timeout_ms);
int gxp_mqtt_connected(struct gxp_mqtt *m);
void gxp_mqtt_disconnect(struct gxp_mqtt *m);
void gxp_mqtt_banner(void);
int gxp_mqtt_check(struct gxp_mqtt *m, int (*done)(void), int timeout_ms);
void gxp_mqtt_free(struct gxp_mqtt *m);

/* cluster.c: several workers on one fleet (GXP_CLUSTER): the live set of
 * workers and which of them owns a device (rendezvous hashing). */
enum { GXP_CLUSTER_OFF, GXP_CLUSTER_PRESENCE, GXP_CLUSTER_SHARED };
struct gxp_cluster;
int gxp_cluster_mode_of(const char *v);
struct gxp_cluster *gxp_cluster_new(void);
struct gxp_cluster *gxp_cluster_follower(void);
int gxp_cluster_mode(const struct gxp_cluster *c);
const char *gxp_cluster_self(const struct gxp_cluster *c);
const char *gxp_cluster_group(const struct gxp_cluster *c);
char *gxp_cluster_topic(const struct gxp_cluster *c, const char *worker);
const char *gxp_cluster_topic_worker(const struct gxp_cluster *c, const char *topic);
size_t gxp_cluster_size(const struct gxp_cluster *c);
const char *gxp_cluster_worker(const struct gxp_cluster *c, size_t i);
int gxp_cluster_update(struct gxp_cluster *c, const char *worker, int live);
const char *gxp_cluster_owner(const struct gxp_cluster *c, const char *dev);
int gxp_cluster_owns(struct gxp_cluster *c, const char *dev);
void gxp_cluster_line(const struct gxp_cluster *c, int joined, struct gxp_buf *b);
int gxp_cluster_joined(const struct gxp_cluster *c);
int gxp_cluster_from_line(struct gxp_cluster *c, const char *line, size_t len);
void gxp_cluster_free(struct gxp_cluster *c);

/* presence.c: a retained record per client id in use (MQTT_PRESENCE_TOPIC),
 * so that one id used by two processes is seen, and said, by both. */
enum { GXP_PRESENCE_NONE, GXP_PRESENCE_MINE, GXP_PRESENCE_STALE,
	GXP_PRESENCE_HERE, GXP_PRESENCE_OTHER };
struct gxp_presence;
struct gxp_presence *gxp_presence_new(const char *client_id, const char *topic);
const char *gxp_presence_topic(const struct gxp_presence *p);
char *gxp_presence_record(struct gxp_presence *p);
int gxp_presence_judge(struct gxp_presence *p, const void *payload, int len,
    char *who, size_t cap);
int gxp_presence_mine(const struct gxp_presence *p);
void gxp_presence_free(struct gxp_presence *p);

/* spool.c: the spool directory (gxp-spool(5)) that gxp-assemble fills and
 * gxp-upload drains.  An entry is named "<dev>@<capture_name>". */
#define GXP_CAPTURE_NAME_MAX (GXP_NAME_MAX + 9)	/* "-" and 8 hex digits */
#define GXP_ENTRY_MAX (GXP_DEVICE_MAX + 1 + GXP_CAPTURE_NAME_MAX)
enum { GXP_SPOOL_NEW, GXP_SPOOL_READY, GXP_SPOOL_WORK, GXP_SPOOL_STORED };
/* Creates tmp/ partial/ ready/ work/ stored/ failed/ rows/ below spool. */
int gxp_spool_init(const char *spool);
/* [A-Za-z0-9._-], not starting with '.', at most GXP_CAPTURE_NAME_MAX. */
int gxp_capture_name_valid(const char *s);
/* "<dev>@<name>" into buf; -1 if it does not fit. */
int gxp_spool_entry(char *buf, size_t cap, const char *dev, const char *name);
/* Splits an entry name and validates both halves; -1 if it is not one. */
int gxp_spool_entry_parse(const char *entry, char dev[GXP_DEVICE_MAX + 1],
    char name[GXP_CAPTURE_NAME_MAX + 1]);
/* A capture's identity is (device, image_name, image bytes, time key); the
 * time key is captured_at (UTC, microseconds) when the device sent a usable
 * time, else "" (a receive time would differ on every resend). */
void gxp_capture_timekey(char buf[32], int has_time, int64_t us);
/* First 8 hex digits of sha256("dev\0image_name\0bytes\0timekey"). */
void gxp_capture_h8(char out[9], const char *dev, const char *image_name,
    long long image_bytes, const char *timekey);
/* "<stem>-<h8><ext>": image_123.jpg -> image_123-1a2b3c4d.jpg. */
void gxp_capture_altname(char out[GXP_CAPTURE_NAME_MAX + 1],
    const char *image_name, const char h8[9]);
/* The capture_name a capture gets, and whether ready/, work/ or stored/
 * already holds it (GXP_SPOOL_READY/WORK/STORED) or not (GXP_SPOOL_NEW).
 * The name is image_name unless a record of another capture holds it,
 * then the altname, so a resent capture always maps to the same name. */
int gxp_spool_lookup(const char *spool, const char *dev, const char *image_name,
    long long image_bytes, const char *timekey,
    char capture_name[GXP_CAPTURE_NAME_MAX + 1]);
/* The photos waiting in ready/ and work/: how many (-1 with errno when
 * ready/ cannot be read), and when the oldest was finished (0: none). */
long gxp_spool_waiting(const char *spool, int64_t *oldest_us);
/* Whether dev@name is in ready/ or work/, or stored: looked at in the
 * order an entry moves through them, so one moving on is not missed. */
int gxp_spool_finished(const char *spool, const char *dev, const char *name);
/* "<spool>/<area>/<entry><ext>" (entry and ext may be NULL): a photo is
 * ready/<entry>.jpg, its sidecar ready/<entry>.json, or work/<entry>.json
 * once gxp-upload claimed it. */
char *gxp_spool_path(const char *spool, const char *area, const char *entry,
    const char *ext);
/* Whether name is a sidecar, "<entry>.json"; the entry name into entry. */
int gxp_spool_sidecar_name(const char *name, char entry[GXP_ENTRY_MAX + 1]);
/* How many photos area (ready, work) holds: its sidecars; -1 with errno. */
long gxp_spool_count(const char *spool, const char *area);
/* The bytes of the finished photos: ready/, work/ and failed/. */
long long gxp_spool_finished_bytes(const char *spool);
/* Takes over the entries an earlier gxp left in area (ready, work) as
 * directories: each becomes ready/<entry>.jpg and .json (each called
 * first, with the directory); returns how many. */
long gxp_spool_upgrade(const char *spool, const char *area,
    void (*each)(const char *entry, const char *dir, void *), void *arg);
/* A sidecar (or stored/ record) as a JSON object; NULL with errno. */
cJSON *gxp_sidecar_read(const char *path);
/* Its image_bytes and time key; -1 if they are missing or malformed. */
int gxp_sidecar_identity(const cJSON *sc, long long *image_bytes, char timekey[32]);
/* The capture time of a metadata payload (capture_timeStamp or timestamp:
 * ISO 8601, Unix seconds, or milliseconds when > 1e11): 1 with *us and
 * *raw (the value as sent), or 0 when absent or unusable. */
int gxp_meta_captured_at(const cJSON *meta, int64_t *us, const cJSON **raw);
/* Adds captured_at and captured_at_raw (null, and the receive time, when
 * the device sent no usable time). */
void gxp_meta_add_time(cJSON *obj, const cJSON *meta, int64_t received_us);
/* Adds location, image_id and sensor{temperature_c, humidity_pct,
 * pressure_hpa, gas_kohm} from flat or sensor_data fields (null if absent). */
void gxp_meta_add_extra(cJSON *obj, const cJSON *meta);
struct gxp_sidecar {
	const char *device, *image_name, *capture_name;
	const cJSON *meta;		/* the metadata payload */
	const char *meta_raw;		/* ... as received, minified JSON text */
	int64_t received_us, started_us, completed_us;
	long long image_bytes, chunk_size, total_chunks, duplicates;
	int nacks;
	const char *sha256;		/* 64 hex digits */
};
/* The sidecar of a ready/ photo, as gxp-spool(5) describes it. */
cJSON *gxp_sidecar_new(const struct gxp_sidecar *in);
/* Removes name below dirfd, recursively, never following links. */
int gxp_rmtree_at(int dirfd, const char *name);
/* Empties tmp/; returns how many entries it removed, or -1. */
int gxp_spool_sweep_tmp(const char *spool);
/* Removes stored/ records older than days; returns how many. */
int gxp_spool_prune_stored(const char *spool, int days, int64_t now_us);
/* Takes over the earlier layout's stored/<dev>/<name>.json records. */
void gxp_spool_upgrade_stored(const char *spool);
/* A record of the earlier layout's chunk logs (partial/<entry>/chunks),
 * read when such a spool is taken over: GXP_CHUNK_HDR bytes of header
 * (magic, chunk_id, length, checksum, 32-bit little-endian) and the bytes. */
#define GXP_CHUNK_HDR 16
#define GXP_CHUNK_MAGIC 0x31435847u	/* "GXC1" */
uint32_t gxp_chunk_sum(uint32_t id, uint32_t len, const void *data);
/* The hash behind it, for any record: h continued over len bytes. */
uint64_t gxp_mix64(uint64_t h, const void *data, size_t len);
int gxp_chunk_header_parse(const unsigned char h[GXP_CHUNK_HDR], uint32_t *id,
    uint32_t *len, uint32_t *sum);

#endif
