/* upload.h: gxp-upload's own header, shared by its files (src/upload/).
 *
 *   main.c     options, start, the loop, what a drain leaves at the end
 *   rows.c     rows built from events and photos
 *   photo.c    a photo claimed from ready/, checked, sent to the store
 *   finish.c   a photo's end: stored (retired at the turn's end), failed,
 *              or put back in ready/
 *   marks.c    work/rows.at: where the captures table ended before a
 *              photo's row
 *   spool.c    the work list (event hints, rescans of ready/), what a
 *              crash left in work/ and rows/, the spool's upload lock
 *   events.c   the events consumed: rows, photo hints, marks, wake times
 *   input.c    input lines, and inbound events without a parse
 *   journal.c  the journal's commit record (-J)
 *   backlog.c  how far behind: the photos waiting, a store that fails */
#ifndef GXP_UPLOAD_H
#define GXP_UPLOAD_H

#include <stdint.h>

#include "lib/gxp.h"
#include "lib/store.h"

#define MARKS "rows.at"		/* work/rows.at: where the captures rows ended */

struct photo {
	struct photo *next;
	char entry[GXP_ENTRY_MAX + 1];
	char dev[GXP_DEVICE_MAX + 1], cap[GXP_CAPTURE_NAME_MAX + 1];
	char image_name[GXP_NAME_MAX + 1], sha[65], path[256];
	long long bytes;
	cJSON *meta;
	int uploading, rows_left, code;
	int setup_error;	/* a row of its failure met one: it stays in ready/ */
	char *reason;
};

struct name {
	struct name *next;
	char *s;
};
void names_free(struct name **list);

enum {
	C_UPLOADS, C_BYTES, C_FAILED, C_RETRIES, C_REQUESTS, C_ROWS, C_ROWS_FAILED,
	C_ROWS_DROPPED, C_EVENTS, C_PASSED, C_BACKLOG, C_OLDEST, C_FAILING
};
enum { PUBLOG_OFF, PUBLOG_NO_CHUNKS, PUBLOG_ALL };

/* main.c */
extern const char *spool;
extern struct store *st;
extern struct rows *rows;
extern int concurrency, once, eof, gaveup, publog;
extern struct gxp_counter counters[];
char *spool_path(const char *area, const char *entry, const char *ext);
void now_utc(char buf[32]);
cJSON *event_new(const char *type);
void emit(cJSON *e);
void set_fatal(const char *msg);
int stopping(void);

/* rows.c */
enum { N_EVENT_TABLES = 4 };
extern const int event_tables[N_EVENT_TABLES];	/* rows made from events */
cJSON *dup_or_null(const cJSON *obj, const char *key);
void copy_num(cJSON *row, const char *col, const cJSON *src, const char *key);
cJSON *capture_row(const cJSON *src, const char *cap, const char *status,
    const char *error, const char *path, const char *sha);
cJSON *error_row(long long code, const char *severity, const char *message,
    cJSON *details, const char *when);
void publog_row(const char *dev, const char *topic, const char *dir, cJSON *payload,
    const char *when);
int is_stored(const char *dev, const char *cap);
int photo_finished(const char *dev, const char *cap);

/* photo.c */
extern struct photo *photos;
extern int uploading;
void claim(const char *name);

/* finish.c */
void retire(void);
void put_back(struct photo *p);
void photo_failed(struct photo *p, int code, const char *what, const char *msg);
void finish_stored(struct photo *p);
void stored_row_done(void *arg, int rc, const char *msg);

/* marks.c */
extern struct name *marks;
extern int marks_fd;
extern long marks_n, marks_written;
void mark_forget(const char *entry);
void marks_rewrite(void);
void marks_load(void);
void upgrade_mark(const char *entry, const char *dir, void *arg);
void remember_mark(struct photo *p);
long long recall_mark(struct photo *p);

/* spool.c */
extern struct name *todo;
extern int64_t next_rescan, rescan_ms;
void todo_add(const char *name);
void rescan(void);
void claim_more(void);
void recover(void);
void load_rows(void);
void rows_loaded_done(int all);
void take_lock(const char *lock);

/* events.c */
const char *wake_clock(const char *dev);
void wakes_free(void);
int event(const cJSON *j);

/* input.c */
void read_input(struct gxp_lines *in);

/* journal.c: the journal's commit record (-J) */
struct journal_commit {
	const char *dir;
	struct marks *marks;
	uint64_t written;	/* the seq journal/committed holds */
	uint64_t head;		/* the journal's last line when this run began */
	long long base[T_COUNT];	/* the committed offsets this run began with */
	int64_t next_ms;
};
extern struct journal_commit jc;
extern int restart;
void commit_tick(int force);
void journal_begin(void);
int rows_waiting(void);
void journal_check(void);

/* backlog.c */
void census(int now);
void watch_outage(void);
void check_spool(void);

#endif
