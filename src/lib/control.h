/* control.h: the device control plane's own library: wake schedules
 * (schedule.c) and the command queue (cmdq.c, cmdq_dir.c,
 * cmdq_supabase.c).  gxp-control and gxp-cmd use it. */
#ifndef GXP_CONTROL_H
#define GXP_CONTROL_H

#include <poll.h>

#include "gxp.h"

/* schedule.c: when a device should wake and take a photo, as pure
 * functions of a schedule and an instant (UTC microseconds).  Wall-clock
 * wake times are in one zone of the TZ database, set by sched_zone().
 * gxp-control(1), SCHEDULES, has the rules with examples. */
struct sched {
	int per_day;		/* captures a day, 1..24 */
	int wake[2];		/* wake times, seconds after local midnight; -1: unset */
	int window_s;		/* wakeup_window_sec */
	int test_mode;
	int test_min;		/* test_interval_minutes, 1..60 */
};
int sched_zone_valid(const char *name);
int sched_zone(const char *name);
int64_t sched_next_slot(const struct sched *s, int64_t t);
int64_t sched_tolerance(const struct sched *s);
int sched_due(const struct sched *s, int64_t next_wake, int64_t now);
int64_t sched_after_capture(const struct sched *s, int64_t now);
void sched_clock(char buf[16], int64_t t);
int sched_time_of_day(const char *s, int *secs);
const char *sched_from_json(const cJSON *row, struct sched *s);
int sched_wake_times(const char *v, int wake[2]);
void sched_from_settings(struct sched *s);

/* ctl.c, ctl_dir.c, ctl_supabase.c: the control plane's tables in the
 * configured store (gxp-control(1), FILES): the command queue
 * (device_commands, device_command_logs), devices.next_wake_at and
 * device_configs.  Rows are JSON objects with the Supabase column names
 * and the device's MAC as "device_hw_id".  Calls return at once; the
 * callbacks run inside ctl_wait() (rc: ST_OK, ST_PERM, ST_GAVEUP or
 * ST_FATAL, as in store.h), and rows belong to the library. */
#define CTL_ID_LEN 36
struct ctl;
typedef void ctl_rows_fn(void *arg, int rc, const cJSON *rows, const char *msg);
struct ctl_ops {
	void (*queued)(struct ctl *, const char *const *devs, size_t n,
	    ctl_rows_fn *, void *);
	void (*list)(struct ctl *, const char *dev, ctl_rows_fn *, void *);
	void (*add)(struct ctl *, cJSON *row, ctl_rows_fn *, void *);
	void (*mark)(struct ctl *, const char *id, const char *dev,
	    const char *status, int64_t when, ctl_rows_fn *, void *);
	void (*expire)(struct ctl *, int64_t now, ctl_rows_fn *, void *);
	void (*wakes)(struct ctl *, ctl_rows_fn *, void *);
	void (*set_wake)(struct ctl *, const char *dev, int64_t at, ctl_rows_fn *, void *);
	void (*configs)(struct ctl *, ctl_rows_fn *, void *);
	int (*wait)(struct ctl *, int timeout_ms, struct pollfd *fds, int nfds);
	int (*busy)(const struct ctl *);
	void (*attempts)(struct ctl *, int max);
	int (*check)(struct ctl *);
	void (*free)(struct ctl *);
};
struct ctl {
	const struct ctl_ops *ops;
	const char *kind;	/* "supabase" or "dir" */
};
struct ctl *ctl_open(void);
struct ctl *ctl_dir_open(const char *store);
struct ctl *ctl_supabase_open(void);
void ctl_queued(struct ctl *c, const char *const *devs, size_t n,
    ctl_rows_fn *fn, void *arg);
void ctl_list(struct ctl *c, const char *dev, ctl_rows_fn *fn, void *arg);
void ctl_add(struct ctl *c, cJSON *row, ctl_rows_fn *fn, void *arg);
void ctl_mark(struct ctl *c, const char *id, const char *dev, const char *status,
    int64_t when, ctl_rows_fn *fn, void *arg);
void ctl_expire(struct ctl *c, int64_t now, ctl_rows_fn *fn, void *arg);
void ctl_wakes(struct ctl *c, ctl_rows_fn *fn, void *arg);
void ctl_set_wake(struct ctl *c, const char *dev, int64_t at, ctl_rows_fn *fn,
    void *arg);
void ctl_configs(struct ctl *c, ctl_rows_fn *fn, void *arg);
int ctl_wait(struct ctl *c, int timeout_ms, struct pollfd *fds, int nfds);
int ctl_busy(const struct ctl *c);
void ctl_attempts(struct ctl *c, int max);
int ctl_check(struct ctl *c);
void ctl_free(struct ctl *c);

/* ctl.c: commands: their types, checks, and the messages they become. */
enum { CMD_CAPTURE, CMD_SEND_IMAGE, CMD_NEXT_WAKE, CMD_TYPES };
extern const char *const ctl_types[CMD_TYPES];
int ctl_type(const char *name);
const char *ctl_check_command(const char *type, const cJSON *payload);
const char *ctl_check_row(const cJSON *row);
int ctl_id_valid(const char *id);
void ctl_new_id(char id[CTL_ID_LEN + 1]);
void ctl_fmt_time(char buf[32], int64_t t);
int ctl_row_time(const cJSON *row, const char *key, int64_t *t);
char *ctl_message(const char *dev, const char *type, const cJSON *payload,
    const char *id);
int ctl_sort_rows(cJSON *rows, int newest_first);

#endif
