/* assemble.h: gxp-assemble's own header, shared by its files and by the
 * fuzz harnesses (fuzz/), which link every object but main.o.
 *
 *   run.c      the settings, the counters; a run's start, one line, its end
 *   main.c     options, --check, the main loop (the tool only)
 *   input.c    input lines: envelope, topic, payload, status messages
 *   meta.c     metadata messages; partial/<entry>/meta.json
 *   chunk.c    chunk messages, appended to their capture's log
 *   index.c    captures and devices in memory, keyed by name; their lifetime
 *   timers.c   the clock, the heap of timers, NACK rounds, the timeout
 *   finish.c   a complete capture built in tmp/, committed into ready/ or
 *              failed/ with one sync for many
 *   recover.c  partial/ read back after a restart
 *   spool.c    the spool's directories, small files, the chunk log cache
 *   events.c   the output held until a commit, events and log lines */
#ifndef ASSEMBLE_H
#define ASSEMBLE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/gxp.h"

enum { PUBLOG_OFF, PUBLOG_NO_CHUNKS, PUBLOG_ALL };
enum { A_OPEN, A_FINAL, A_DONE };

/* run.c: the settings, read once per run */
struct config {
	const char *spool;
	long long max_line, max_image, max_chunks, max_chunk, max_asm, max_asm_dev;
	long long nack_ids, timeout, delay, nack_max, open_files;
	int publog, replay, flush_at_eof;
};
extern struct config cfg;

enum { C_MESSAGES, C_CHUNKS, C_DUPS, C_COMPLETED, C_FAILED, C_NACKS, C_BYTES,
	C_ERRORS, C_PASSED, C_INFLIGHT, C_COUNT };
extern struct gxp_counter counters[C_COUNT];

void assemble_config(void);
void assemble_begin(void);
void assemble_line(int rc, char *line, size_t len, long long lineno);
void assemble_free(void);

/* index.c: a capture in memory is an index into its chunk log */
struct hent {
	struct hent *next;
	char *key;
	uint32_t hash, klen;
};

struct span {
	uint32_t off, len;	/* len 0: not received */
};

struct asm {
	struct hent h;		/* "<dev>@<image_name>", the partial/ entry */
	struct span *idx;	/* by chunk_id */
	char *capture_name;	/* NULL until the metadata came */
	uint64_t seq, logsize, bytes;
	int64_t started, active, nacked, due;		/* clock ms */
	int64_t started_us, received_us, captured_us;	/* wall clock */
	uint32_t ncap, total, received, dups, image_size, chunk_size;
	int heap, slot;
	uint8_t devlen, state, has_meta, has_time, nacks, postponed;
};

void asm_dev(const struct asm *a, char dev[GXP_DEVICE_MAX + 1]);
const char *asm_name(const struct asm *a);
struct asm *asm_find(const char *key);
struct asm *asm_alloc(const char *dev, const char *name, int state);
struct asm *asm_new(const char *dev, const char *name, const char **why);
void asm_free(struct asm *a);
void asm_drop(struct asm *a);
void partial_remove(struct asm *a);
void idx_grow(struct asm *a, uint32_t n);
void inflight_add(struct asm *a, int delta);
void mark_done(const char *dev, const char *name);
void captures_free(void);

/* timers.c */
int64_t clock_ms(void);
int64_t wall_us(void);
void heap_put(struct asm *a, int64_t due);
void heap_del(struct asm *a);
void schedule(struct asm *a);
void fire_live(void);
void advance(int64_t to_us);
void flush_timers(void);
int timer_wait_ms(int max);
void timers_free(void);

/* events.c: what is being processed, for error events and log lines */
struct current {
	const char *line, *topic;
	size_t len;
	long long lineno;
	int64_t received_us;
};
extern struct current cur;

void fmt_time(char buf[32], int64_t us);
void out_add(const char *s, size_t n);
void out_flush(size_t upto);
size_t out_len(void);
void emit(cJSON *e);
void log_at(int level, const char *dev, const char *image, const char *msg);
const char *severity(int code);
void error_event(int code, const char *dev, const char *image, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void failed_event(const char *dev, const char *image, const char *cname, int code,
    const char *entry, const char *reason, cJSON *more);
void capture_failed(struct asm *a, int code, const char *entry, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void pass_line(void);
void add_time(cJSON *obj, const char *key, int64_t us);
void inbound(const char *dev, const char *kind, const char *raw);
void events_free(void);

/* spool.c */
extern int spool_fd, tmp_fd, partial_fd, ready_fd, failed_fd;

void open_spool(void);
void prune_stored(void);
int read_at(int dfd, const char *name, char **buf, size_t *len);
int write_json_at(int dfd, const char *name, const cJSON *j);
void slots_init(void);
int log_fd(struct asm *a);
void log_close(struct asm *a);
void spool_close(void);

/* meta.c */
struct meta {
	char image[GXP_NAME_MAX + 1];
	long long size, chunk, total;
	int64_t captured_us;
	int has_time;
	int err_code;		/* a device-reported error's code, 0 if none */
	char err_n[64];		/* the device's error value, as text */
};

int meta_parse(const cJSON *j, const char *raw, size_t rlen, struct meta *m, char *why,
    size_t wlen);
void meta_apply(struct asm *a, const struct meta *m, const char *capture_name);
void timekey(char buf[32], const struct meta *m);
void on_metadata(const char *dev, const char *raw, size_t len);
cJSON *partial_meta_read(const struct asm *a, char **raw);
int64_t json_time(const cJSON *j, const char *key, int64_t def);

/* chunk.c */
struct chunk {
	const char *name, *id, *max, *b64, *pay_key, *pay_end;
	size_t nlen, idlen, maxlen, b64len;
	int has_id, has_name, pay;	/* pay: 0 absent or null, 1 string, 2 other */
};

/* one chunk record, header and bytes: decoded into, read back through */
extern struct gxp_buf record;

int key_is(const char *k, size_t klen, const char *s);
int chunk_scan(const char *t, size_t len, struct chunk *c);
void on_chunk(const char *dev, const char *t, size_t len, const struct chunk *c);
void chunk_free(void);

/* finish.c */
void finalize(struct asm *a);
void commit(void);
size_t commit_pending(void);
void finish_free(void);

/* recover.c */
void recover(void);
void stamp_recovered(void);
size_t recovered_waiting(void);
void recover_free(void);

/* input.c */
void handle_line(char *line, size_t len, long long lineno, int truncated);
int text_valid(const char *s, size_t n);
void input_free(void);

#endif
