/* hist.c: durations in microseconds counted into buckets, for quantiles
 * that cost no memory per sample: exact to the microsecond below LINEAR_US,
 * and to 1/32 of the value (32 buckets a doubling) above. */
#include <stdlib.h>

#include "gxp.h"

#define LINEAR_US 4096
#define SUB 32			/* buckets per doubling above LINEAR_US */
#define DOUBLINGS 40
#define NBUCKETS (LINEAR_US + DOUBLINGS * SUB)

struct gxp_hist {
	unsigned long long n[NBUCKETS], count;
	int64_t max;
};

struct gxp_hist *
gxp_hist_new(void)
{
	return xcalloc(1, sizeof(struct gxp_hist));
}

static int
log2floor(uint64_t v)
{
	int k = 0;

	while (v >>= 1)
		k++;
	return k;
}

static size_t
bucket(int64_t us)
{
	int k;

	if (us < LINEAR_US)
		return us < 0 ? 0 : (size_t)us;
	k = log2floor((uint64_t)us);		/* 12 and up */
	if (k - 12 >= DOUBLINGS)
		return NBUCKETS - 1;
	return LINEAR_US + (size_t)(k - 12) * SUB + (size_t)((us >> (k - 5)) & (SUB - 1));
}

/* The smallest value a bucket holds. */
static int64_t
bucket_low(size_t b)
{
	size_t k, sub;

	if (b < LINEAR_US)
		return (int64_t)b;
	k = (b - LINEAR_US) / SUB + 12;
	sub = (b - LINEAR_US) % SUB;
	return (int64_t)(((uint64_t)SUB + sub) << (k - 5));
}

void
gxp_hist_add(struct gxp_hist *h, int64_t us)
{
	h->n[bucket(us)]++;
	h->count++;
	if (us > h->max)
		h->max = us;
}

/* The value below which a share q (0..1) of the samples lie; 0 if none. */
int64_t
gxp_hist_quantile(const struct gxp_hist *h, double q)
{
	unsigned long long want, seen = 0;

	if (h->count == 0)
		return 0;
	want = (unsigned long long)(q * (double)h->count);
	if (want >= h->count)
		want = h->count - 1;
	for (size_t b = 0; b < NBUCKETS; b++) {
		seen += h->n[b];
		if (seen > want) {
			int64_t v = bucket_low(b);

			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

unsigned long long
gxp_hist_count(const struct gxp_hist *h)
{
	return h->count;
}

int64_t
gxp_hist_max(const struct gxp_hist *h)
{
	return h->max;
}

void
gxp_hist_free(struct gxp_hist *h)
{
	free(h);
}
