/* assemble.h: gxp-assemble's own header, shared by its files and by the
 * fuzz harnesses (fuzz/), which link every object but main.o.
 *
 *   run.c      the settings, the counters; a run's start, one line, its end
 *   list.c     --list: the captures in progress, read from partial/
 *   main.c     options, --check, the main loop (the tool only)
 *   input.c    input lines: envelope, topic, payload, status messages
 *   meta.c     metadata messages, kept as a record in partial/
 *   chunk.c    chunk messages, appended to partial/ as records
 *   index.c    captures and devices in memory, keyed by name; their lifetime
 *   budget.c   captures, memory and disk shared fairly between senders
 *   segment.c  partial/: the append-only segments every capture is kept in
 *   timers.c   the clock, the heap of timers, NACK rounds, the timeout
 *   finish.c   a complete capture built in tmp/, committed into ready/ or
 *              failed/ with the syncs of many photos together
 *   recover.c  partial/ read back after a restart, and the earlier layout
 *   spool.c    the spool's directories and what ready/ holds
 *   cluster.c  gxp-sub's cluster line: the captures of devices that moved
 *   events.c   the output held until a commit, events, log lines and the
 *              reports of refused work */
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
	long long nack_ids, timeout, delay, nack_max;
	long long spool_max, dev_bytes, orphan_chunks, memory, report_ms;
	int publog, replay, flush_at_eof;
};
extern struct config cfg;

/* Why work was refused, each counted as gxp_assemble_refused_total{cause}
 * and reported once per sender and REFUSED_REPORT_INTERVAL_S. */
enum {
	RC_MALFORMED, RC_PAYLOAD, RC_LIMIT, RC_CAPTURES, RC_DEVICE_CAPTURES,
	RC_DEVICE_BYTES, RC_ORPHANS, RC_MEMORY, RC_SPOOL_FULL, RC_SPOOL_ERROR,
	RC_EVICTED, RC_COUNT
};
enum { C_MESSAGES, C_CHUNKS, C_DUPS, C_COMPLETED, C_FAILED, C_NACKS, C_BYTES,
	C_ERRORS, C_PASSED, C_INFLIGHT, C_MEMORY, C_PARTIAL, C_MOVED, C_REFUSED,
	C_COUNT = C_REFUSED + RC_COUNT };
extern struct gxp_counter counters[C_COUNT];

void assemble_config(void);
void assemble_begin(void);
void assemble_line(int rc, char *line, size_t len, long long lineno);
void assemble_free(void);

/* index.c: a capture in memory is an index into the segments of partial/ */
struct hent {
	struct hent *next;
	char *key;
	uint32_t hash, klen;
};

/* Where a record's bytes are: segment number, offset, length (0: none). */
struct span {
	uint32_t seg, off, len;
};

struct orphan {
	uint32_t id;
	struct span at;
};

/* What a budget is shared out: captures, bytes of memory, bytes on disk. */
enum { B_CAPTURES, B_MEMORY, B_DISK, B_COUNT };

struct device {
	struct hent h;
	long long use[B_COUNT];	/* what its captures hold */
	int heap[B_COUNT];	/* its place in the budget's heap, or -1 */
	uint32_t orphan_chunks;	/* chunks held by its captures without metadata */
	int held;		/* kept while room is made for it (asm_new) */
	struct asm *first, *last;	/* its captures, oldest first */
};

struct asm {
	struct hent h;		/* "<dev>@<image_name>" */
	struct device *dev;
	struct asm *dprev, *dnext;	/* the device's captures */
	struct asm *lprev, *lnext;	/* the orphans or the markers, oldest first */
	struct span *idx;	/* by chunk_id, once the metadata came */
	struct orphan *orph;	/* chunks that came before it */
	char *capture_name;	/* NULL until the metadata came */
	struct span meta;	/* the metadata record */
	uint64_t seq, bytes;	/* bytes: of the chunks */
	long long use[B_COUNT];	/* what it is charged */
	int64_t started, active, nacked, due;		/* clock ms */
	int64_t started_us, received_us, captured_us;	/* wall clock */
	uint32_t ncap, total, received, dups, image_size, chunk_size, norph, minseg;
	int heap, list;
	uint8_t devlen, state, has_meta, has_time, nacks, postponed;
};

void asm_dev(const struct asm *a, char dev[GXP_DEVICE_MAX + 1]);
const char *asm_name(const struct asm *a);
struct asm *asm_find(const char *key);
struct device *device_get(const char *dev, int create);
struct asm *asm_alloc(const char *dev, const char *name, int state);
struct asm *asm_new(const char *dev, const char *name, int meta, int64_t started_us);
void asm_free(struct asm *a);
void asm_drop(struct asm *a);
void asm_end(struct asm *a);
void asm_done(struct asm *a);
void asm_charge(struct asm *a, int r, long long amount);
long long asm_memory(const struct asm *a, uint32_t ncap, uint32_t norph);
int idx_set(struct asm *a, uint32_t total);
struct span *chunk_at(struct asm *a, uint32_t id);
struct asm *mark_done(const char *dev, const char *name);
void asm_each(void (*fn)(struct asm *, void *), void *arg);
struct asm *oldest(int list);
void captures_free(void);
enum { L_NONE, L_ORPHANS, L_MARKERS };
void list_move(struct asm *a, int list);

/* budget.c: budgets shared fairly between senders */
extern long long spool_ready_bytes;
extern int budget_replaying;	/* recovery: refuse, never make room */
int budget_admit(struct device *d, struct asm *self, int r, long long amount, int meta);
long long budget_used(int r);
long long budget_limit(int r);
void budget_update(struct device *d, int r, long long delta);
void budget_remove(struct device *d);
void budget_free(void);

/* segment.c: partial/seg.<n>, the append-only logs of every capture */
enum { REC_META = 1, REC_CHUNK = 2, REC_END = 3 };
#define REC_HDR 32

struct rec {
	int type;
	uint32_t id, len;
	int64_t started_us;
	char key[GXP_ENTRY_MAX + 1];
	const unsigned char *data;
};

/* records that could not be written: segment n from offset from on */
struct lost {
	uint32_t seg, from;
};

uint32_t rec_size(const struct asm *a, uint32_t len);
void seg_open(void);
int seg_append(struct asm *a, int type, uint32_t id, const void *data, uint32_t len,
    struct span *at);
int seg_read(const struct span *s, void *buf);
int seg_flush(void);
void seg_release(struct asm *a);
void seg_pin(struct asm *a, uint32_t n);
void seg_collect(int all);
uint64_t seg_bytes(void);
uint64_t seg_size(void);
void seg_tidy(void);
void seg_close(void);
typedef void seg_rec_fn(const struct rec *r, const struct span *at, void *arg);
void seg_replay(seg_rec_fn *fn, void *arg);
long seg_list(const char *spool, seg_rec_fn *fn, void *arg);

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
	int64_t received_us;	/* the message's tst; 0 outside a message */
	uint64_t seq;		/* the line's journal seq; 0 if it has none */
};
extern struct current cur;

void fmt_time(char buf[32], int64_t us);
int64_t event_us(void);
void seq_done(uint64_t seq);
void out_add(const char *s, size_t n);
void out_flush(size_t upto);
void out_flush_all(void);
size_t out_len(void);
void emit(cJSON *e);
void log_at(int level, const char *dev, const char *image, const char *msg);
const char *severity(int code);
void error_event(int cause, int code, const char *dev, const char *image,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void failed_event(const char *dev, const char *image, const char *cname, int code,
    const char *entry, const char *reason, cJSON *more);
void capture_failed(struct asm *a, int code, const char *entry, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void pass_line(void);

/* cluster.c */
int cluster_line(const char *line, size_t len);
int cluster_arrived(const char *dev);
void cluster_free(void);
void add_time(cJSON *obj, const char *key, int64_t us);
void inbound(const char *dev, const char *kind, const char *raw);
void events_free(void);

/* spool.c */
extern int spool_fd, tmp_fd, partial_fd, ready_fd, failed_fd;
/* why the last asm_new(), budget_admit() or chunk_add() refused: the
 * cause (RC_*) and what to say */
extern int refusal_cause;
extern char refusal[192];

void open_spool(void);
void prune_stored(void);
int write_at(int dfd, const char *name, const void *data, size_t len, int keep);
int write_json_at(int dfd, const char *name, const cJSON *j);
void ready_bytes_scan(int force);
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

int meta_parse(const cJSON *j, const char *raw, size_t rlen, struct meta *m, char *msg,
    size_t wlen);
int meta_apply(struct asm *a, const struct meta *m, const char *capture_name);
int meta_record(struct asm *a, const char *raw);
void timekey(char buf[32], const struct meta *m);
void on_metadata(const char *dev, const char *raw, size_t len);
cJSON *partial_meta_read(const struct asm *a, char **raw);
cJSON *partial_meta_parse(const char *text, size_t len, char **raw);
int64_t json_time(const cJSON *j, const char *key, int64_t def);

/* chunk.c */
struct chunk {
	const char *name, *id, *max, *b64, *pay_key, *pay_end;
	size_t nlen, idlen, maxlen, b64len;
	int has_id, has_name, pay;	/* pay: 0 absent or null, 1 string, 2 other */
};

/* a chunk's bytes, decoded into */
extern struct gxp_buf record;

int key_is(const char *k, size_t klen, const char *s);
int chunk_scan(const char *t, size_t len, struct chunk *c);
void on_chunk(const char *dev, const char *t, size_t len, const struct chunk *c);
int chunk_add(struct asm *a, uint32_t id, const void *data, uint32_t len, long long max,
    const struct span *at);
void chunk_lost(struct asm *a, void *lost);
void chunk_free(void);

/* finish.c */
void finalize(struct asm *a);
void commit(void);
size_t commit_pending(void);
void finish_free(void);

/* recover.c */
void recover(void);
void recover_legacy(void);
void stamp_recovered(void);
size_t recovered_waiting(void);
void recover_free(void);

/* list.c */
long list_partial(const char *spool, int print);

/* input.c */
void handle_line(char *line, size_t len, long long lineno, int truncated);
int text_valid(const char *s, size_t n);
void input_free(void);

#endif
