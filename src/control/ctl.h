/* ctl.h: gxp-control's own parts (src/control/).  gxp-control answers
 * every hello on the device's cmd topic, from the command queue or the
 * wake schedule, and passes every input line on unchanged.
 *
 *   main.c      options, start, the loop, the end
 *   input.c     lines in and out, and events out
 *   devices.c   what is known of each device: schedule, config, state
 *   answer.c    deciding an answer, publishing it, what follows the PUBACK
 *   cluster.c   GXP_CLUSTER: only the hellos of this worker's devices
 *   net.c       the broker connection: hellos in, answers out, PUBACKs */
#ifndef GXP_CONTROL_CTL_H
#define GXP_CONTROL_CTL_H

#include "lib/control.h"
#include "lib/store.h"

/* One device. */
struct dev {
	struct dev *next;		/* hash chain */
	char id[GXP_DEVICE_MAX + 1];
	int64_t next_wake;		/* devices.next_wake_at, UTC us; 0: none */
	int64_t wake_changed;		/* when we last set it, monotonic ms */
	unsigned wake_seen, config_seen;	/* the last refresh that had them */
	int has_config;
	struct sched config;		/* its device_configs row */
	int64_t hello;			/* when the hello being answered came, UTC us */
	int64_t hello_at;		/* ... monotonic ms */
	int reading;			/* its queue is being read for that hello */
	unsigned read_gen;		/* which read that is */
	int64_t awake_until;		/* monotonic ms; 0: asleep */
	int sent_awake;			/* a command went to it awake since its last hello */
	int inflight;			/* answers published, not acknowledged */
	struct sent *sent;		/* commands it was sent, by id */
};

/* A command this run published: not sent again while its mark is due. */
struct sent {
	struct sent *next;
	char id[CTL_ID_LEN + 1];
	int64_t at;			/* monotonic ms */
};

/* main.c */
extern struct ctl *store;
extern struct sched default_sched;
extern int replay;
extern struct gxp_counter counters[];
enum {
	C_HELLOS, C_ANSWERED, C_CAPTURE, C_NEXT_WAKE, C_COMMANDS, C_RETAINED,
	C_FALLBACK, C_EXPIRED, C_FAILED, C_PASSED, C_AWAKE, C_ELSEWHERE, C_COUNT
};

/* devices.c */
struct dev *dev_get(const char *id);
struct dev *dev_find(const char *id);
void dev_each(void (*fn)(struct dev *, void *), void *arg);
const struct sched *dev_sched(const struct dev *d);
int dev_awake(const struct dev *d, int64_t now_ms);
int dev_was_sent(struct dev *d, const char *id);
void dev_sent(struct dev *d, const char *id);
void dev_forget_sent(struct dev *d, const char *id);
void devices_load(void);
void devices_refresh_due(void);
void devices_free(void);

/* input.c */
void input_open(int fd);
int input_read(void);			/* 0, or -1 at the end of input */
int input_fd(void);
int input_paused(void);
void out_line(const char *line, size_t len);
void out_event(cJSON *e);
int out_pending(void);
int out_flush(void);
void input_close(void);

/* answer.c */
void answer_hello(const char *dev, int64_t tst);
void answer_tick(void);
void answer_acked(int mid);
int answer_busy(void);
void schedule_event(const struct dev *d);
void answer_free(void);

/* net.c */
struct hello {
	char dev[GXP_DEVICE_MAX + 1];
	int64_t at;			/* when it came, UTC us */
};
int net_start(void);
/* cluster.c */
void cluster_start(void);
int cluster_hello(const struct hello *h);
void cluster_input(const char *line, size_t len);
void cluster_stop(void);
int net_publish(const char *topic, const char *payload, int *mid);
int net_take_acked(int *mids, int max);
int net_take_hellos(struct hello *h, int max);
int net_wake_fd(void);
int net_failed(void);
int net_check(void);
void net_stop(void);

#endif
