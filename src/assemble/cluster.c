/* cluster.c: gxp-sub's cluster line (GXP_CLUSTER, gxp(7)): the live
 * workers changed, and the devices another worker now owns are no longer
 * this worker's.  Their captures in flight are dropped quietly (no NACK,
 * no timeout, no error row: the device keeps the photo until its ACK_OK
 * and sends it again to its new owner), with their budgets and their
 * segments' pins; photos already complete go on to be stored. */
#include <stdlib.h>
#include <string.h>

#include "assemble.h"

static struct gxp_cluster *cl, *prev;	/* the set, and the one before */
static struct gxp_buf last;		/* the line that gave the set */
static int64_t changed_at;		/* clock ms */

struct moved {
	struct asm **a;
	size_t n, cap;
};

static void
collect(struct asm *a, void *arg)
{
	struct moved *m = arg;
	char dev[GXP_DEVICE_MAX + 1];

	if (a->state != A_OPEN)
		return;
	asm_dev(a, dev);
	if (gxp_cluster_owns(cl, dev))
		return;
	if (m->n == m->cap)
		m->a = xrealloc(m->a, (m->cap = m->cap ? 2 * m->cap : 16) * sizeof *m->a);
	m->a[m->n++] = a;
}

/* One line per device that moved, however many captures it had. */
static void
drop_moved(struct moved *m)
{
	for (size_t i = 0; i < m->n; i++) {
		char dev[GXP_DEVICE_MAX + 1], next[GXP_DEVICE_MAX + 1] = "";
		size_t same = 0;

		if (m->a[i] == NULL)
			continue;
		asm_dev(m->a[i], dev);
		for (size_t k = i; k < m->n; k++) {
			if (m->a[k] == NULL)
				continue;
			asm_dev(m->a[k], next);
			if (strcmp(next, dev) != 0)
				continue;
			asm_drop(m->a[k]);
			m->a[k] = NULL;
			same++;
		}
		counters[C_MOVED].v += same;
		gxp_log(LOG_INFO, "device %s now belongs to worker %s: %zu capture%s in "
		    "flight dropped (the device sends %s again there)", dev,
		    gxp_cluster_owner(cl, dev) ? gxp_cluster_owner(cl, dev) : "(none)", same,
		    same == 1 ? "" : "s", same == 1 ? "it" : "them");
	}
}

/* 1 when the line was a cluster line (it is passed on all the same). */
int
cluster_line(const char *line, size_t len)
{
	struct moved m = { 0 };

	if (len < 20 || memchr(line, 'c', len) == NULL)
		return 0;
	if (cl == NULL)
		cl = gxp_cluster_follower();
	if (gxp_cluster_from_line(cl, line, len) != 1)
		return 0;
	if (prev == NULL)
		prev = gxp_cluster_follower();
	if (last.len > 0)
		gxp_cluster_from_line(prev, last.p, last.len);
	last.len = 0;
	gxp_buf_add(&last, line, len);
	changed_at = clock_ms();
	if (gxp_cluster_mode(cl) == GXP_CLUSTER_SHARED)
		return 1;	/* the broker chooses; what comes is ours */
	asm_each(collect, &m);
	drop_moved(&m);
	free(m.a);
	return 1;
}

/* Whether dev came to this worker at the last change of the set (or at
 * its start), CAPTURE_TIMEOUT_MS ago at most: the rest of a photo begun
 * elsewhere may come without its metadata, and the device sends it
 * all again when no ACK_OK comes.  Not an error of the device. */
int
cluster_arrived(const char *dev)
{
	if (cl == NULL || gxp_cluster_mode(cl) == GXP_CLUSTER_SHARED ||
	    clock_ms() - changed_at > cfg.timeout || !gxp_cluster_owns(cl, dev))
		return 0;
	return prev == NULL || gxp_cluster_joined(cl) || !gxp_cluster_owns(prev, dev);
}

void
cluster_free(void)
{
	gxp_cluster_free(cl);
	gxp_cluster_free(prev);
	gxp_buf_free(&last);
	cl = prev = NULL;
	changed_at = 0;
}
