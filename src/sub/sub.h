/* sub.h: gxp-sub's own header, shared by its files.
 *
 *   main.c      options, --check, the threads, the main loop
 *   message.c   the message callback: too big, sent again, envelope, out
 *   envelope.c  the NDJSON envelope of a message, and its fingerprint
 *   out.c       without a journal: the memory buffer and its writer
 *   cluster.c   GXP_CLUSTER: the live set of workers, others' devices dropped
 *   journal.c   with one (-J): the append, the writer that streams it,
 *               the group commit, the replay at start */
#ifndef SUB_H
#define SUB_H

#include <pthread.h>
#include <stdint.h>

#include <mosquitto.h>

#include "lib/gxp.h"

#define WAKE_BYTES 65536	/* buffered bytes that wake the writer anyway */
#define KEEP_BYTES (1 << 20)	/* a writer's buffer larger than this is let go */
#define TAIL_BYTES (1 << 20)	/* of the journal read at start for messages sent again */

/* the output: the writer thread's queue */
struct queue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct gxp_buf buf;	/* without a journal: lines for the writer */
	size_t writing, max;	/* bytes being written; the bound */
	uint64_t head_seg;	/* with one: where the journal ends */
	long long head_end;
	unsigned long long appended, sent;	/* journal bytes to write, written */
	int done, waiting;
};
extern struct queue q;

/* the journal, when there is one */
struct jstate {
	const char *dir;
	struct gxp_journal *j;
	struct gxp_hist *window;	/* callback entry to the end of the append */
	uint64_t start_seg;		/* where the writer starts */
	long long start_off, max_bytes, sync_ms;
	int64_t msg_us;			/* when the current callback began */
	int64_t broken_until;		/* an append failed: no reading until then */
	_Atomic int stop_sync;
	_Atomic int failed;		/* the writer could not read the journal */
};
extern struct jstate jn;

extern char **topics;
extern int ntopics, subscribed;
extern size_t max_message;	/* SUB_MAX_MESSAGE_BYTES */

enum { C_MESSAGES, C_BYTES, C_DROPPED, C_BUFFERED, C_JBYTES, C_JFULL, C_JP99, C_JMAX,
	C_REPLAYED, C_REDELIVERED, C_TOO_BIG, C_CL_DROPPED, C_CL_WORKERS, C_CL_CHANGES, C_CL_SCATTERED, C_COUNT };
extern struct gxp_counter counters[C_COUNT];

/* envelope.c */
void envelope(struct gxp_buf *b, const struct mosquitto_message *m);
int redelivered(const struct gxp_buf *b, int qos);
void seen_line(const char *line, size_t len, void *arg);
void on_connect_flags(struct mosquitto *mosq, void *arg, int rc, int flags);

/* message.c */
void on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *m);
void message_take(struct gxp_buf *b, const struct mosquitto_message *m);
void on_subscribe(struct mosquitto *mosq, void *arg, int mid, int n, const int *granted);
void on_connected(struct mosquitto *mosq, void *arg);

/* out.c */
void buffer_line(const struct gxp_buf *b);
void *writer_buffer(void *arg);
void kick(struct gxp_mqtt *m);

/* cluster.c */
extern struct gxp_cluster *cl;
void cluster_init(struct gxp_mqtt_opts *o);
void cluster_connected(struct mosquitto *mosq);
int cluster_subscribed(void *arg, int mid);
int cluster_filter_message(const struct mosquitto_message *m);
void cluster_tick(struct mosquitto *mosq);
void cluster_free(void);

/* journal.c */
void journal_line(const struct gxp_buf *b);
void *writer_journal(void *arg);
void *syncer(void *arg);
void journal_tick(void);
int reading_paused(void);
void journal_start(void);
void journal_end(void);
int check_journal(void);

#endif
