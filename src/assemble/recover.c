/* recover.c: partial/ read back after a restart: each entry's metadata
 * and chunk log (a torn tail cut off) become a capture in memory again,
 * whose timers start when the clock does. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assemble.h"

static struct asm **recovered;
static size_t nrecovered;

static int
load_meta(struct asm *a)
{
	char *raw, why[256], tk[32], cname[GXP_CAPTURE_NAME_MAX + 1], dev[GXP_DEVICE_MAX + 1];
	const char *cn;
	cJSON *pm = partial_meta_read(a, &raw);
	struct meta m;
	int state = -1;

	if (pm == NULL)
		return errno == ENOENT ? 0 : -1;
	asm_dev(a, dev);
	cn = gxp_json_str(pm, "capture_name");
	if (meta_parse(cJSON_GetObjectItemCaseSensitive(pm, "meta"), raw, strlen(raw), &m,
	    why, sizeof why) == 0 && !m.err_code && strcmp(m.image, asm_name(a)) == 0 &&
	    cn && gxp_capture_name_valid(cn)) {
		meta_apply(a, &m, cn);
		a->received_us = json_time(pm, "received_at", 0);
		a->started_us = json_time(pm, "started_at", 0);
		timekey(tk, &m);
		state = gxp_spool_lookup(cfg.spool, dev, m.image, m.size, tk, cname);
	}
	cJSON_Delete(pm);
	free(raw);
	return state == -1 ? -1 : state == GXP_SPOOL_NEW ? 1 : 2;
}

/* Rebuilds the index from the chunk log; a torn or bad tail is cut off. */
static void
load_log(struct asm *a)
{
	unsigned char h[GXP_CHUNK_HDR];
	unsigned char *data = (unsigned char *)record.p + GXP_CHUNK_HDR;
	int fd = log_fd(a);
	uint32_t id, len, sum;
	struct stat st;
	uint64_t off = 0;

	if (fd == -1 || fstat(fd, &st) == -1)
		return;
	while (pread(fd, h, sizeof h, (off_t)off) == (ssize_t)sizeof h &&
	    gxp_chunk_header_parse(h, &id, &len, &sum) == 0 && len > 0 &&
	    len <= cfg.max_chunk && id < cfg.max_chunks &&
	    pread(fd, data, len, (off_t)off + GXP_CHUNK_HDR) == (ssize_t)len &&
	    gxp_chunk_sum(id, len, data) == sum) {
		idx_grow(a, id + 1);
		if (a->idx[id].len == 0) {
			a->idx[id] = (struct span){ (uint32_t)off + GXP_CHUNK_HDR, len };
			a->bytes += len;
			if (!a->has_meta || id < a->total)
				a->received++;
		}
		off += GXP_CHUNK_HDR + len;
	}
	if ((uint64_t)st.st_size > off) {
		gxp_log(LOG_WARN, "partial/%s/chunks: cut off %lld bytes of torn tail",
		    a->h.key, (long long)st.st_size - (long long)off);
		if (ftruncate(fd, (off_t)off) == -1)
			gxp_log(LOG_WARN, "partial/%s/chunks: %s", a->h.key, strerror(errno));
	}
	a->logsize = off;
}

static void
recover_one(const char *entry)
{
	char dev[GXP_DEVICE_MAX + 1], name[GXP_CAPTURE_NAME_MAX + 1];
	struct asm *a;
	int rc;

	if (gxp_spool_entry_parse(entry, dev, name) == -1 || !gxp_image_name_valid(name)) {
		gxp_log(LOG_WARN, "partial/%s: not an entry name; removed", entry);
		gxp_rmtree_at(partial_fd, entry);
		return;
	}
	a = asm_alloc(dev, name, A_OPEN);
	if ((rc = load_meta(a)) == -1)
		gxp_log(LOG_WARN, "partial/%s/meta.json: unreadable; waiting for the metadata "
		    "again", entry);
	if (rc != 2)
		load_log(a);
	log_close(a);
	if (rc == 2 || (!a->has_meta && a->received == 0)) {
		if (rc == 2)
			gxp_log(LOG_INFO, "partial/%s: already complete; removed", entry);
		asm_drop(a);
		return;
	}
	recovered = xrealloc(recovered, (nrecovered + 1) * sizeof *recovered);
	recovered[nrecovered++] = a;
}

static int
cmp_names(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

void
recover(void)
{
	DIR *d = fdopendir(dup(partial_fd));
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;

	if (d == NULL)
		gxp_die_errno(EXIT_TEMP, "%s/partial", cfg.spool);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			names = xrealloc(names, (n + 1) * sizeof *names);
			names[n++] = xstrdup(e->d_name);
		}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof *names, cmp_names);
	for (size_t i = 0; i < n; i++) {
		recover_one(names[i]);
		free(names[i]);
	}
	free(names);
	if (nrecovered)
		gxp_log(LOG_INFO, "carrying on with %zu partial captures from %s/partial",
		    nrecovered, cfg.spool);
}

/* Recovered captures' timers start when the clock does. */
void
stamp_recovered(void)
{
	int64_t now = clock_ms();

	for (size_t i = 0; i < nrecovered; i++) {
		struct asm *a = recovered[i];

		a->started = a->active = now;
		if (a->started_us == 0)
			a->started_us = wall_us();
		if (a->has_meta && a->received == a->total)
			finalize(a);
		else
			schedule(a);
	}
	free(recovered);
	recovered = NULL;
	nrecovered = 0;
}

/* Recovered captures whose timers wait for the clock to start (replay). */
size_t
recovered_waiting(void)
{
	return nrecovered;
}

void
recover_free(void)
{
	free(recovered);
	recovered = NULL;
	nrecovered = 0;
}
