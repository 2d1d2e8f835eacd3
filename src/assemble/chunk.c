/* chunk.c: a chunk message: its members found without parsing the whole
 * object, its payload decoded, checked against the capture, the limits and
 * the budgets, and appended to partial/ as one record. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assemble.h"

int
key_is(const char *k, size_t klen, const char *s)
{
	return strlen(s) == klen && memcmp(k, s, klen) == 0;
}

/* The members of a data message that matter; -1 if it is not an object. */
int
chunk_scan(const char *t, size_t len, struct chunk *c)
{
	const char *k, *v;
	size_t pos = 0, klen, vlen;
	int rc;

	memset(c, 0, sizeof *c);
	while ((rc = gxp_json_next_member(t, len, &pos, 0, &k, &klen, &v, &vlen)) == 1) {
		if (key_is(k, klen, "payload")) {
			c->pay = *v == '"' ? 1 : *v == 'n' ? 0 : 2;
			c->b64 = v + 1;
			c->b64len = vlen - 2;
			c->pay_key = k - 1;
			c->pay_end = v + vlen;
		} else if (key_is(k, klen, "chunk_id")) {
			c->has_id = 1;
			c->id = v;
			c->idlen = vlen;
		} else if (key_is(k, klen, "image_name")) {
			c->has_name = 1;
			c->name = v;
			c->nlen = vlen;
		} else if (key_is(k, klen, "max_chunk_size")) {
			c->max = v;
			c->maxlen = vlen;
		}
	}
	return rc;
}

/* A whole number from JSON text: plain digits, or anything strtod reads
 * that is whole (1.0, 1e3); -1 if negative, fractional or not a number. */
static long long
whole_number(const char *v, size_t n)
{
	long long x = 0;
	char buf[64], *end;
	double d;

	if (n > 0 && n <= 15 && strspn(v, "0123456789") >= n) {
		for (size_t i = 0; i < n; i++)
			x = x * 10 + (v[i] - '0');
		return x;
	}
	if (n == 0 || n >= sizeof buf || !strchr("-0123456789", *v))
		return -1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	d = strtod(buf, &end);
	if (*end || d < 0)
		return -1;
	if (d > 9007199254740992.0)
		return LLONG_MAX;
	if (d != (double)(long long)d)
		return -1;
	return (long long)d;
}

struct gxp_buf record;
static struct gxp_buf scratch, evbuf;

/* Decodes the chunk's payload into record:
 * the length, or -1 (missing: 2102), -2 (bad base64: 2103), -3 (too large). */
static long
chunk_decode(const struct chunk *c)
{
	const char *b64 = c->b64;
	size_t n = c->b64len;
	long got;

	if (c->pay == 0 || (c->pay == 1 && n == 0))
		return -1;
	if (c->pay != 1)
		return -2;
	if (memchr(b64, '\\', n)) {
		gxp_buf_grow(&scratch, n);
		if ((got = gxp_json_unescape(b64, n, scratch.p)) < 0)
			return -2;
		b64 = scratch.p;
		n = (size_t)got;
	}
	if (n / 4 * 3 > (size_t)cfg.max_chunk + 2)
		return -3;
	got = gxp_b64_decode(b64, n, (unsigned char *)record.p, (size_t)cfg.max_chunk + 2);
	if (got < 0)
		return -2;
	return got > cfg.max_chunk ? -3 : got;
}

/* The inbound event of a chunk, built by hand (it is the hot path): the
 * payload as received with its "payload" member replaced by payload_bytes. */
static void
inbound_chunk(const char *dev, const char *t, size_t len, const struct chunk *c,
    long got)
{
	struct gxp_buf *b = &evbuf;
	char ts[32], rcv[32];

	if (cfg.publog != PUBLOG_ALL)
		return;
	fmt_time(ts, event_us());
	fmt_time(rcv, cur.received_us);
	b->len = 0;
	gxp_buf_adds(b, "{\"event\":\"inbound\",\"v\":1,\"ts\":\"");
	gxp_buf_adds(b, ts);
	gxp_buf_adds(b, "\",\"device\":\"");
	gxp_buf_adds(b, dev);
	gxp_buf_adds(b, "\",\"topic\":");
	gxp_buf_add_jstr(b, cur.topic, strlen(cur.topic));
	gxp_buf_adds(b, ",\"received_at\":\"");
	gxp_buf_adds(b, rcv);
	gxp_buf_adds(b, "\",\"kind\":\"chunk\",\"payload\":");
	if (c->pay_key == NULL)
		gxp_buf_add(b, t, len);
	else {
		gxp_buf_add(b, t, (size_t)(c->pay_key - t));
		if (got >= 0)
			gxp_buf_addf(b, "\"payload_bytes\":%ld", got);
		else
			gxp_buf_adds(b, "\"payload_bytes\":null");
		gxp_buf_add(b, c->pay_end, len - (size_t)(c->pay_end - t));
	}
	gxp_buf_add(b, "}", 1);
	out_add(b->p, b->len);
}

/* The image name of a chunk, decoded into name; -1 if unusable. */
static int
chunk_name(const struct chunk *c, char name[GXP_NAME_MAX + 1])
{
	long n;

	if (!c->has_name || *c->name != '"' || c->nlen - 2 > GXP_NAME_MAX)
		return -1;
	n = gxp_json_unescape(c->name + 1, c->nlen - 2, name);
	if (n < 0 || strlen(name) != (size_t)n)
		return -1;
	return gxp_image_name_valid(name) ? 0 : -1;
}

static void chunk_store(const char *dev, const char *name, uint32_t id, uint32_t len,
    long long max);

void
on_chunk(const char *dev, const char *t, size_t len, const struct chunk *c)
{
	char name[GXP_NAME_MAX + 1] = "";
	long got = chunk_decode(c);
	long long id, max = -1;

	inbound_chunk(dev, t, len, c, got);
	if (chunk_name(c, name) == -1) {
		error_event(RC_MALFORMED, 2101, dev, NULL, "chunk: missing or invalid image_name");
		return;
	}
	if ((id = whole_number(c->id, c->idlen)) < 0) {
		error_event(RC_MALFORMED, 2101, dev, name, "chunk: chunk_id must be a whole "
		    "number from 0");
		return;
	}
	if (id >= cfg.max_chunks) {
		error_event(RC_LIMIT, 2200, dev, name, "refused: chunk_id %lld is beyond "
		    "MAX_CHUNKS (%lld)", id, cfg.max_chunks);
		return;
	}
	if (c->max && (max = whole_number(c->max, c->maxlen)) < 1) {
		error_event(RC_MALFORMED, 2101, dev, name, "chunk %lld: max_chunk_size must be "
		    "a positive whole number", id);
		return;
	}
	if (got == -1)
		error_event(RC_PAYLOAD, 2102, dev, name, "chunk %lld: no payload", id);
	else if (got == -2)
		error_event(RC_PAYLOAD, 2103, dev, name, "chunk %lld: payload is not valid "
		    "base64", id);
	else if (got == -3)
		error_event(RC_LIMIT, 2200, dev, name, "refused: chunk %lld is larger than "
		    "MAX_CHUNK_BYTES (%lld)", id, cfg.max_chunk);
	else if (max > 0 && got > max)
		error_event(RC_LIMIT, 2200, dev, name, "refused: chunk %lld holds %ld bytes, "
		    "more than its max_chunk_size %lld", id, got, max);
	else
		chunk_store(dev, name, (uint32_t)id, (uint32_t)got, max);
}

/* Refusals of a chunk that a capture in progress cannot take (refusal set),
 * or 0. */
static int
chunk_refused(const struct asm *a, uint32_t id, uint32_t len, long long max)
{
	refusal_cause = RC_LIMIT;
	if (a->has_meta && id >= a->total)
		snprintf(refusal, sizeof refusal, "refused: chunk_id %u is beyond total_chunk_count %u",
		    id, a->total);
	else if (a->has_meta && max < 0 && a->chunk_size && len > a->chunk_size)
		snprintf(refusal, sizeof refusal, "refused: chunk %u holds %u bytes, more than "
		    "max_chunks_size %u", id, len, a->chunk_size);
	else if (a->bytes + len > (uint64_t)cfg.max_image)
		snprintf(refusal, sizeof refusal, "refused: chunk %u would make the capture larger "
		    "than MAX_IMAGE_BYTES (%lld)", id, cfg.max_image);
	else if (!a->has_meta && !budget_replaying &&
	    a->dev->orphan_chunks >= cfg.orphan_chunks) {
		/* (replaying, a capture copied forward may show chunks before
		 * its metadata: the live path checked them) */
		refusal_cause = RC_ORPHANS;
		snprintf(refusal, sizeof refusal, "refused: %u chunks of this device wait for their "
		    "metadata (ASSEMBLE_ORPHAN_CHUNKS)", a->dev->orphan_chunks);
	} else
		return 0;
	return -1;
}

/* Whether a may hold the record of a chunk of len bytes more: the disk
 * budget, and memory for the list of chunks that came before the
 * metadata; -1 with refusal. */
static int
chunk_admit(struct asm *a, uint32_t len)
{
	if (budget_admit(a->dev, a, B_DISK, rec_size(a, len), a->has_meta) == -1)
		return -1;
	if (!a->has_meta && budget_admit(a->dev, a, B_MEMORY, asm_memory(a, 0, a->norph + 1) -
	    a->use[B_MEMORY], 0) == -1)
		return -1;
	return 0;
}

/* Chunk id of a, whose record is at at: in the index, counted, charged. */
static void
chunk_put(struct asm *a, uint32_t id, const struct span *at)
{
	if (a->has_meta)
		a->idx[id] = *at;
	else {
		a->orph = xrealloc(a->orph, (a->norph + 1) * sizeof *a->orph);
		a->orph[a->norph++] = (struct orphan){ id, *at };
		a->dev->orphan_chunks++;
		asm_charge(a, B_MEMORY, asm_memory(a, 0, a->norph) - a->use[B_MEMORY]);
	}
	asm_charge(a, B_DISK, rec_size(a, at->len));
	a->bytes += at->len;
	if (!a->has_meta || id < a->total)
		a->received++;
}

/* The chunks of a whose records were lost (struct lost: a full disk when
 * they were written at last): forgotten, so that the next NACK asks for
 * them; one error for the device. */
void
chunk_lost(struct asm *a, void *arg)
{
	const struct lost *l = arg;
	char dev[GXP_DEVICE_MAX + 1];
	uint32_t n = 0, k = 0;
	int e = errno;

	for (uint32_t i = 0; a->idx && i < a->ncap; i++)
		if (a->idx[i].len && a->idx[i].seg == l->seg && a->idx[i].off >= l->from) {
			asm_charge(a, B_DISK, -(long long)rec_size(a, a->idx[i].len));
			a->bytes -= a->idx[i].len;
			a->received -= i < a->total;
			a->idx[i] = (struct span){ 0, 0, 0 };
			n++;
		}
	for (uint32_t i = 0; i < a->norph; i++)
		if (a->orph[i].at.seg == l->seg && a->orph[i].at.off >= l->from) {
			asm_charge(a, B_DISK, -(long long)rec_size(a, a->orph[i].at.len));
			a->bytes -= a->orph[i].at.len;
			a->received--;
			a->dev->orphan_chunks--;
			n++;
		} else
			a->orph[k++] = a->orph[i];
	a->norph = k;
	if (n == 0)
		return;
	asm_dev(a, dev);
	error_event(RC_SPOOL_ERROR, 2200, dev, asm_name(a), "spool: partial/: %s: %u chunks "
	    "to be asked for again", strerror(e), n);
	errno = e;
}

/* Chunk id of a: checked, admitted, and written to partial/ (or, when
 * replaying partial/ at start, already there at *at).  0, 1 if a
 * duplicate, -1 with refusal when refused. */
int
chunk_add(struct asm *a, uint32_t id, const void *data, uint32_t len, long long max,
    const struct span *at)
{
	struct span here;

	if (chunk_refused(a, id, len, max) == -1)
		return -1;
	if (chunk_at(a, id)) {
		a->dups++;
		return 1;
	}
	if (chunk_admit(a, len) == -1)
		return -1;
	if (at)
		seg_pin(a, at->seg);
	else if (seg_append(a, REC_CHUNK, id, data, len, &here) == -1) {
		refusal_cause = RC_SPOOL_ERROR;
		snprintf(refusal, sizeof refusal, "spool: partial/: %s", strerror(errno));
		return -1;
	} else
		at = &here;
	chunk_put(a, id, at);
	return 0;
}

static void
chunk_store(const char *dev, const char *name, uint32_t id, uint32_t len, long long max)
{
	char key[GXP_ENTRY_MAX + 1];
	struct asm *a;
	int rc;

	gxp_spool_entry(key, sizeof key, dev, name);
	if ((a = asm_find(key)) && a->state != A_OPEN) {
		counters[C_DUPS].v++;
		return;
	}
	if (a == NULL && gxp_spool_finished(cfg.spool, dev, name)) {
		/* a device's retry of a photo finished before a restart, which
		 * forgot the marker: no capture for it */
		mark_done(dev, name);
		counters[C_DUPS].v++;
		log_at(LOG_INFO, dev, name, "late chunks of a finished photo dropped");
		return;
	}
	if (a == NULL) {
		struct device *d = device_get(dev, 0);

		if (d && d->orphan_chunks >= cfg.orphan_chunks && cluster_arrived(dev)) {
			counters[C_MOVED].v++;
			return;
		}
		if (d && d->orphan_chunks >= cfg.orphan_chunks) {
			error_event(RC_ORPHANS, 2200, dev, name, "refused: %u chunks of this "
			    "device wait for their metadata (ASSEMBLE_ORPHAN_CHUNKS)",
			    d->orphan_chunks);
			return;
		}
		if ((a = asm_new(dev, name, 0, 0)) == NULL) {
			error_event(refusal_cause, 2200, dev, name, "%s", refusal);
			return;
		}
		schedule(a);
	}
	if ((rc = chunk_add(a, id, record.p, len, max, NULL)) == -1) {
		/* the rest of a photo begun on the worker that had the device */
		if (refusal_cause == RC_ORPHANS && cluster_arrived(dev))
			counters[C_MOVED].v++;
		else
			error_event(refusal_cause, 2200, dev, name, "%s", refusal);
		if (!a->has_meta && a->norph == 0)
			asm_drop(a);
		return;
	}
	if (rc == 1) {
		counters[C_DUPS].v++;
		return;
	}
	a->active = clock_ms();
	counters[C_CHUNKS].v++;
	if (a->has_meta && a->received == a->total)
		finalize(a);
}

void
chunk_free(void)
{
	gxp_buf_free(&scratch);
	gxp_buf_free(&record);
	gxp_buf_free(&evbuf);
}
