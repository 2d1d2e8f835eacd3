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
_Noreturn void gxp_die(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
_Noreturn void gxp_die_errno(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

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
const struct gxp_setting *gxp_setting_find(const char *name);
int gxp_config_load(const char *envfile, int must_exist);
void gxp_config_set(const char *name, const char *value);
const char *gxp_cfg(const char *name);
long long gxp_cfg_int(const char *name);
int gxp_cfg_bool(const char *name);
const char *gxp_cfg_source(const char *name);
void gxp_config_free(void);
void gxp_config_common(const char *envfile);

/* clock.c: time. */
int64_t gxp_mono_ms(void);
int64_t gxp_wall_us(void);
void gxp_fmt_utc(char buf[32], int64_t wall_us);	/* 2026-11-27T05:04:21.627829Z */
int gxp_parse_time(const char *s, int64_t *wall_us);
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

/* b64.c: standard base64 (RFC 4648), strict decoding. */
size_t gxp_b64_encoded_len(size_t n);
size_t gxp_b64_encode(const unsigned char *in, size_t n, char *out);
long gxp_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

/* fsutil.c: crash-safe files. */
int gxp_mkdirs(const char *path, int mode);
int gxp_fsync_dir(const char *dir);
int gxp_write_atomic(const char *path, const void *buf, size_t len);
int gxp_read_file(const char *path, char **buf, size_t *len, size_t max);

/* wire.c: topics, ids and names, and the ACK_OK / NACK publish events. */
#define GXP_DEVICE_MAX 64
#define GXP_NAME_MAX 128
enum { TOPIC_OTHER, TOPIC_DATA, TOPIC_STATUS, TOPIC_ACK };
int gxp_device_valid(const char *s);
int gxp_image_name_valid(const char *s);
int gxp_topic_parse(const char *topic, char dev[GXP_DEVICE_MAX + 1]);
char *gxp_ack_topic(const char *dev);
cJSON *gxp_ack_ok_event(const char *dev, const char *image_name);
cJSON *gxp_nack_event(const char *dev, const char *image_name,
    const uint32_t *ids, size_t n);

/* sig.c: signals become flags read by the main loop. */
extern volatile sig_atomic_t gxp_sig_term, gxp_sig_usr1;
void gxp_signals_init(void);

/* mqtt.c: the broker connection every MQTT tool shares. */
struct mosquitto;
struct mosquitto_message;
struct gxp_mqtt;
struct gxp_mqtt_opts {
	const char *client_id;	/* NULL: MQTT_CLIENT_ID or a random one */
	int clean_session;
	void (*on_connected)(struct mosquitto *, void *);
	void (*on_message)(struct mosquitto *, void *,
	    const struct mosquitto_message *);
	void (*on_publish)(struct mosquitto *, void *, int mid);
	void *userdata;
};
struct gxp_mqtt *gxp_mqtt_new(const struct gxp_mqtt_opts *o);
struct mosquitto *gxp_mqtt_handle(struct gxp_mqtt *m);
int gxp_mqtt_step(struct gxp_mqtt *m, int timeout_ms);
int gxp_mqtt_connected(struct gxp_mqtt *m);
void gxp_mqtt_disconnect(struct gxp_mqtt *m);
void gxp_mqtt_banner(void);
void gxp_mqtt_free(struct gxp_mqtt *m);

#endif
