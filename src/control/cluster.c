/* cluster.c: gxp-control in a cluster (GXP_CLUSTER=presence).  Every
 * worker's gxp-control hears every hello on its own subscription; it
 * answers only the devices its worker owns, decided with the live set of
 * gxp-sub's cluster lines in its input and the same rendezvous function
 * (src/lib/cluster.c), so gxp-sub, gxp-control and gxp-assemble of one
 * worker agree.  Hellos heard before the first cluster line wait for it.
 * With GXP_CLUSTER=shared, the status topic is a shared subscription of
 * the group <GXP_CLUSTER_GROUP>-control: the broker gives each hello to
 * one gxp-control (net.c). */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static struct gxp_cluster *cl;
static int known;
static struct hello *held;
static size_t nheld, capheld;

void
cluster_start(void)
{
	if (gxp_cluster_mode_of(gxp_cfg("GXP_CLUSTER")) == GXP_CLUSTER_PRESENCE)
		cl = gxp_cluster_follower();
}

/* Whether to answer this hello: always outside a cluster; when its device
 * is ours in one (counted when not); held until the set is known. */
int
cluster_hello(const struct hello *h)
{
	if (cl == NULL)
		return 1;
	if (!known) {
		if (nheld == capheld)
			held = xrealloc(held, (capheld = capheld ? 2 * capheld : 64) * sizeof *held);
		held[nheld++] = *h;
		return 0;
	}
	if (gxp_cluster_owns(cl, h->dev))
		return 1;
	counters[C_ELSEWHERE].v++;
	return 0;
}

/* An input line: gxp-sub's cluster line sets the set; the hellos that
 * waited for it are answered if theirs. */
void
cluster_input(const char *line, size_t len)
{
	if (cl == NULL || gxp_cluster_from_line(cl, line, len) != 1)
		return;
	if (!known++)
		gxp_log(LOG_INFO, "cluster: worker %s, %zu worker%s live; answering the hellos "
		    "of its devices", gxp_cluster_self(cl), gxp_cluster_size(cl),
		    gxp_cluster_size(cl) == 1 ? "" : "s");
	for (size_t i = 0; i < nheld; i++)
		if (cluster_hello(&held[i]))
			answer_hello(held[i].dev, held[i].at);
	free(held);
	held = NULL;
	nheld = capheld = 0;
}

void
cluster_stop(void)
{
	free(held);
	held = NULL;
	nheld = capheld = 0;
	gxp_cluster_free(cl);
	cl = NULL;
}
