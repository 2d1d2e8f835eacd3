/* list.c: the captures in progress, read from the segments of partial/
 * without taking the spool's lock (a gxp-assemble may be running on it):
 * --list prints them, --check counts them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assemble.h"

#define BUCKETS 4096

struct item {
	char *key, *capture_name;
	int64_t started_us;
	uint32_t chunks, total;
	uint64_t bytes;
	size_t next;		/* in its bucket, + 1; 0 ends it */
};

struct items {
	struct item *v;
	size_t n, head[BUCKETS];
};

static size_t
bucket(const char *key)
{
	return gxp_hash(key) % BUCKETS;
}

/* The item of r's capture (its key and start), made when create. */
static struct item *
item_of(struct items *it, const struct rec *r, int create)
{
	size_t b = bucket(r->key);

	for (size_t i = it->head[b]; i; i = it->v[i - 1].next) {
		struct item *x = &it->v[i - 1];

		if (x->key && strcmp(x->key, r->key) == 0 && x->started_us == r->started_us)
			return x;
	}
	if (!create)
		return NULL;
	it->v = xrealloc(it->v, (it->n + 1) * sizeof *it->v);
	memset(&it->v[it->n], 0, sizeof *it->v);
	it->v[it->n].key = xstrdup(r->key);
	it->v[it->n].started_us = r->started_us;
	it->v[it->n].next = it->head[b];
	it->head[b] = ++it->n;
	return &it->v[it->n - 1];
}

static void
item_free(struct item *i)
{
	free(i->key);
	free(i->capture_name);
	i->key = i->capture_name = NULL;
}

static void
on_record(const struct rec *r, const struct span *at, void *arg)
{
	struct items *it = arg;
	struct item *i = item_of(it, r, r->type != REC_END);
	char *raw;
	cJSON *pm;
	long long total;

	(void)at;
	if (i == NULL)
		return;
	if (r->type == REC_END) {
		item_free(i);
		return;
	}
	if (r->type == REC_CHUNK) {
		i->chunks++;
		i->bytes += r->len;
		return;
	}
	if ((pm = partial_meta_parse((const char *)r->data, r->len, &raw)) == NULL)
		return;
	if (i->capture_name == NULL && gxp_json_str(pm, "capture_name"))
		i->capture_name = xstrdup(gxp_json_str(pm, "capture_name"));
	if (gxp_json_int(cJSON_GetObjectItemCaseSensitive(pm, "meta"), "total_chunk_count",
	    &total) == 1 && total > 0 && total <= UINT32_MAX)
		i->total = (uint32_t)total;
	cJSON_Delete(pm);
	free(raw);
}

static void
print_item(const struct item *i)
{
	char dev[GXP_DEVICE_MAX + 1], name[GXP_CAPTURE_NAME_MAX + 1], at[32], *s;
	cJSON *j = cJSON_CreateObject();

	if (gxp_spool_entry_parse(i->key, dev, name) == -1)
		return;
	cJSON_AddStringToObject(j, "device", dev);
	cJSON_AddStringToObject(j, "image_name", name);
	if (i->capture_name)
		cJSON_AddStringToObject(j, "capture_name", i->capture_name);
	else
		cJSON_AddNullToObject(j, "capture_name");
	gxp_fmt_utc(at, i->started_us);
	cJSON_AddStringToObject(j, "started_at", at);
	cJSON_AddNumberToObject(j, "chunks", i->chunks);
	if (i->total)
		cJSON_AddNumberToObject(j, "total_chunks", i->total);
	else
		cJSON_AddNullToObject(j, "total_chunks");
	cJSON_AddNumberToObject(j, "bytes", (double)i->bytes);
	s = gxp_json_print(j);
	printf("%s\n", s);
	free(s);
	cJSON_Delete(j);
}

/* The captures in progress in spool: printed one JSON object a line
 * (print), counted; -1 if partial/ cannot be read. */
long
list_partial(const char *spool, int print)
{
	struct items *it = xcalloc(1, sizeof *it);
	long n = 0;

	if (seg_list(spool, on_record, it) == -1)
		n = -1;
	for (size_t i = 0; i < it->n; i++) {
		if (it->v[i].key == NULL)
			continue;
		n += n >= 0;
		if (print && n >= 0)
			print_item(&it->v[i]);
		item_free(&it->v[i]);
	}
	free(it->v);
	free(it);
	return n;
}
