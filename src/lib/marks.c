/* marks.c: which journal lines have every row they caused durable, for
 * gxp-upload's journal/committed (gxp-spool(5)).
 *
 * gxp-assemble writes a mark (gxp(7)) after the output of the lines up
 * to a seq.  The rows gxp-upload adds between two marks form an epoch; a
 * mark closes the open epoch with its seq (and where the local store's
 * tables ended then), and a new one opens.  A row is settled when it is
 * written or refused for good.  The seq of the newest closed epoch with
 * no unsettled row in it or before it is done: every row of every line up
 * to it is durable.  The epochs waiting are a ring of MARKS_MAX; a mark
 * that finds it full is skipped (the next one closes the epoch), so
 * memory stays bounded however long the rows wait. */
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define MARKS_MAX 1024

struct epoch {
	uint64_t seq;
	unsigned long long rows;	/* not settled yet */
	long long off[T_COUNT];
	int closed;
};

struct marks {
	struct epoch ring[MARKS_MAX];
	size_t head, len;		/* len >= 1: the last is open */
	uint64_t base;			/* the epoch number of ring[head] */
	uint64_t done;
	long long done_off[T_COUNT];
};

struct marks *
marks_new(void)
{
	struct marks *m = xcalloc(1, sizeof *m);

	m->len = 1;
	m->base = 1;
	for (int t = 0; t < T_COUNT; t++)
		m->done_off[t] = -1;
	return m;
}

static struct epoch *
at(struct marks *m, uint64_t epoch)
{
	return &m->ring[(m->head + (size_t)(epoch - m->base)) % MARKS_MAX];
}

/* Closed epochs at the front with nothing left to settle are done. */
static void
advance(struct marks *m)
{
	while (m->len > 1 && m->ring[m->head].closed && m->ring[m->head].rows == 0) {
		struct epoch *e = &m->ring[m->head];

		m->done = e->seq;
		memcpy(m->done_off, e->off, sizeof m->done_off);
		m->head = (m->head + 1) % MARKS_MAX;
		m->len--;
		m->base++;
	}
}

/* A row is added: the epoch it belongs to. */
uint64_t
marks_row(struct marks *m)
{
	uint64_t epoch = m->base + m->len - 1;

	at(m, epoch)->rows++;
	return epoch;
}

/* The row of that epoch (0: a row no line caused) is written or refused. */
void
marks_settled(struct marks *m, uint64_t epoch)
{
	if (epoch == 0 || epoch < m->base)
		return;
	at(m, epoch)->rows--;
	advance(m);
}

/* A mark: every row of the lines up to seq has been added.  off: where
 * each table of the local store ended (-1: not the local store). */
void
marks_mark(struct marks *m, uint64_t seq, const long long off[T_COUNT])
{
	struct epoch *e = at(m, m->base + m->len - 1);

	if (m->len == MARKS_MAX || seq <= m->done)
		return;
	e->seq = seq;
	memcpy(e->off, off, sizeof e->off);
	e->closed = 1;
	e = &m->ring[(m->head + m->len) % MARKS_MAX];
	memset(e, 0, sizeof *e);
	m->len++;
	advance(m);
}

/* The highest seq whose lines' rows are all durable (0: none yet), and
 * where the local store's tables ended at its mark. */
uint64_t
marks_done(const struct marks *m, long long off[T_COUNT])
{
	if (off)
		memcpy(off, m->done_off, sizeof m->done_off);
	return m->done;
}

void
marks_free(struct marks *m)
{
	free(m);
}
