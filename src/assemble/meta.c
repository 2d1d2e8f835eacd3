/* meta.c: a capture's metadata message: checked against the limits,
 * kept as a record in partial/ until the photo is finished, and what it
 * means for a capture in progress, one already finished, or one the device
 * reports failed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assemble.h"

/* A string member decoded from the object's text: 1, 0 if absent, -1 if
 * not a string, too long, or holding a NUL. */
static int
str_member(const char *text, size_t len, const char *key, char *out, size_t cap)
{
	const char *v;
	size_t vlen;
	char *tmp;
	long n;

	if (gxp_json_raw_member(text, len, key, &v, &vlen) == -1)
		return 0;
	if (*v != '"' || vlen - 2 >= cap)
		return -1;
	tmp = xmalloc(vlen);
	n = gxp_json_unescape(v + 1, vlen - 2, tmp);
	if (n >= 0 && (size_t)n < cap && strlen(tmp) == (size_t)n)
		memcpy(out, tmp, (size_t)n + 1);
	else
		n = -1;
	free(tmp);
	return n >= 0 ? 1 : -1;
}

/* s cut to at most max bytes, not inside a UTF-8 sequence, control
 * characters as '?'. */
static void
text_cut(char *out, const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n > max)
		for (n = max; n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80; n--)
			;
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	out[n] = '\0';
}

/* The metadata's "error" (not 0, false, null or ""): the capture failed on
 * the device.  Its code is 1000 + N, as the Python worker gxp replaces
 * records it, for a whole N from 1 to 999; anything else (negative,
 * larger, fractional, true, a string) gets 1000, so that no value reaches
 * another range (1000 + 1101 would read as 2101). */
static void
device_error(const cJSON *j, struct meta *m)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "error");
	double d = cJSON_IsNumber(v) ? v->valuedouble : 0;

	m->err_code = 0;
	if (d != 0) {
		snprintf(m->err_n, sizeof m->err_n, "%.15g", d);
		m->err_code = d >= 1 && d <= 999 && d == (double)(int)d ? 1000 + (int)d : 1000;
	} else if (cJSON_IsTrue(v) || (cJSON_IsString(v) && *v->valuestring)) {
		text_cut(m->err_n, cJSON_IsTrue(v) ? "true" : v->valuestring, 60);
		m->err_code = 1000;
	}
}

/* What a device-reported error means, in the Python worker's words. */
static void
device_error_meaning(const struct meta *m, char *buf, size_t len)
{
	static const char *const meanings[] = {
		"camera initialization failed", "image capture failed",
		"sensor read failed", "memory allocation failed"
	};
	int n = m->err_code - 1000;

	if (n >= 1 && n <= 4)
		snprintf(buf, len, "%s", meanings[n - 1]);
	else
		snprintf(buf, len, "Unknown error (code %s)", m->err_n);
}

/* A count from the metadata: 0, or 2101 (missing, wrong type) or 2200
 * (beyond the limit) with the reason in why. */
static int
meta_count(const cJSON *j, const char *key, long long max, const char *limit,
    long long *out, char *why, size_t wlen)
{
	if (gxp_json_int(j, key, out) != 1 || *out < 1) {
		snprintf(why, wlen, "metadata: %s must be a positive whole number", key);
		return 2101;
	}
	if (*out > max) {
		snprintf(why, wlen, "refused: %s %lld exceeds %s (%lld)", key, *out, limit, max);
		return 2200;
	}
	return 0;
}

int
meta_parse(const cJSON *j, const char *raw, size_t rlen, struct meta *m, char *why,
    size_t wlen)
{
	const cJSON *traw;
	int code;

	memset(m, 0, sizeof *m);
	if (str_member(raw, rlen, "image_name", m->image, sizeof m->image) != 1 ||
	    !gxp_image_name_valid(m->image)) {
		snprintf(why, wlen, "metadata: missing or invalid image_name");
		return 2101;
	}
	m->has_time = gxp_meta_captured_at(j, &m->captured_us, &traw);
	device_error(j, m);
	if (m->err_code) {
		gxp_json_int(j, "image_size", &m->size);
		return 0;
	}
	if ((code = meta_count(j, "image_size", cfg.max_image, "MAX_IMAGE_BYTES",
	    &m->size, why, wlen)) || (code = meta_count(j, "total_chunk_count",
	    cfg.max_chunks, "MAX_CHUNKS", &m->total, why, wlen)))
		return code;
	if (cJSON_HasObjectItem(j, "max_chunks_size"))
		return meta_count(j, "max_chunks_size", cfg.max_chunk, "MAX_CHUNK_BYTES",
		    &m->chunk, why, wlen);
	if (cJSON_HasObjectItem(j, "max_chunk_size"))
		return meta_count(j, "max_chunk_size", cfg.max_chunk, "MAX_CHUNK_BYTES",
		    &m->chunk, why, wlen);
	return 0;
}

/* The metadata's counts and names on a; its index by chunk_id takes in
 * the chunks that came before.  -1 (why set) when memory does not allow. */
int
meta_apply(struct asm *a, const struct meta *m, const char *capture_name)
{
	if (!a->has_meta)
		list_move(a, L_NONE);
	free(a->capture_name);
	a->capture_name = xstrdup(capture_name);
	if (idx_set(a, (uint32_t)m->total) == -1)
		return -1;
	a->has_meta = 1;
	a->image_size = (uint32_t)m->size;
	a->chunk_size = (uint32_t)m->chunk;
	a->total = (uint32_t)m->total;
	a->has_time = (uint8_t)m->has_time;
	a->captured_us = m->captured_us;
	a->received = 0;
	a->bytes = 0;
	for (uint32_t i = 0; i < a->total; i++) {
		a->received += a->idx[i].len > 0;
		a->bytes += a->idx[i].len;
	}
	return 0;
}

static int
same_capture(const struct asm *a, const struct meta *m)
{
	return a->image_size == m->size && a->has_time == m->has_time &&
	    (!m->has_time || a->captured_us == m->captured_us);
}

void
timekey(char buf[32], const struct meta *m)
{
	gxp_capture_timekey(buf, m->has_time, m->captured_us);
}

/* The metadata record in partial/: the message as it came, its capture
 * name and when it came; -1 with why when it cannot be kept. */
int
meta_record(struct asm *a, const char *raw)
{
	cJSON *j = cJSON_CreateObject();
	char *text;
	uint32_t len;
	int rc = -1;

	cJSON_AddStringToObject(j, "capture_name", a->capture_name);
	add_time(j, "received_at", a->received_us);
	cJSON_AddRawToObject(j, "meta", raw);
	text = gxp_json_print(j);
	len = (uint32_t)strlen(text);
	if (budget_admit(a->dev, a, B_DISK, rec_size(a, len), 1) == 0) {
		if (seg_append(a, REC_META, 0, text, len, &a->meta) == 0) {
			asm_charge(a, B_DISK, rec_size(a, len));
			rc = 0;
		} else {
			refusal_cause = RC_SPOOL_ERROR;
			snprintf(refusal, sizeof refusal, "spool: partial/: %s", strerror(errno));
		}
	}
	free(text);
	cJSON_Delete(j);
	return rc;
}

/* A metadata record's text: the object, and the metadata as it came in
 * *raw; NULL (errno EINVAL) if it is not one. */
cJSON *
partial_meta_parse(const char *text, size_t len, char **raw)
{
	cJSON *j = gxp_json_parse(text, len);
	const char *v;
	size_t vlen;

	*raw = NULL;
	if (j && gxp_json_raw_member(text, len, "meta", &v, &vlen) == 0 &&
	    cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "meta")))
		*raw = xasprintf("%.*s", (int)vlen, v);
	if (*raw == NULL) {
		cJSON_Delete(j);
		j = NULL;
		errno = EINVAL;
	}
	return j;
}

/* a's metadata record, read back from partial/. */
cJSON *
partial_meta_read(const struct asm *a, char **raw)
{
	char *text;
	cJSON *j;

	*raw = NULL;
	if (a->meta.len == 0) {
		errno = ENOENT;
		return NULL;
	}
	text = xmalloc(a->meta.len + 1);
	if (seg_read(&a->meta, text) == -1) {
		free(text);
		return NULL;
	}
	text[a->meta.len] = '\0';
	j = partial_meta_parse(text, a->meta.len, raw);
	free(text);
	return j;
}

int64_t
json_time(const cJSON *j, const char *key, int64_t def)
{
	const char *s = gxp_json_str(j, key);
	int64_t us;

	return s && gxp_parse_time(s, &us) == 0 ? us : def;
}

static void
capture_started(const char *dev, const struct meta *m, const char *capture_name,
    const cJSON *j, const char *raw)
{
	cJSON *e = gxp_event_new("capture_started");

	cJSON_AddStringToObject(e, "device", dev);
	cJSON_AddStringToObject(e, "image_name", m->image);
	cJSON_AddStringToObject(e, "capture_name", capture_name);
	gxp_meta_add_time(e, j, cur.received_us);
	cJSON_AddNumberToObject(e, "image_size", (double)m->size);
	if (m->chunk)
		cJSON_AddNumberToObject(e, "chunk_size", (double)m->chunk);
	else
		cJSON_AddNullToObject(e, "chunk_size");
	cJSON_AddNumberToObject(e, "total_chunks", (double)m->total);
	gxp_meta_add_extra(e, j);
	cJSON_AddRawToObject(e, "meta", raw);
	emit(e);
}

/* The device says the capture failed: reported, never assembled.  The
 * event carries the device_errors row's message and details as the Python
 * worker writes them; its reason is the captures row's ingest_error. */
static void
meta_device_error(const char *dev, const struct meta *m, struct asm *a,
    const cJSON *j, const char *raw)
{
	char tk[32], cname[GXP_CAPTURE_NAME_MAX + 1], meaning[96], text[192];
	cJSON *more = cJSON_CreateObject(), *details;

	if (a)
		asm_drop(a);
	timekey(tk, m);
	gxp_spool_lookup(cfg.spool, dev, m->image, m->size, tk, cname);
	capture_started(dev, m, cname, j, raw);
	device_error_meaning(m, meaning, sizeof meaning);
	snprintf(text, sizeof text, "esp32_capture_error: %s", meaning);
	cJSON_AddStringToObject(more, "message", text);
	details = cJSON_AddObjectToObject(more, "details");
	cJSON_AddItemToObject(details, "esp32_error_code",
	    cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(j, "error"), 1));
	cJSON_AddRawToObject(details, "metadata", raw);
	snprintf(text, sizeof text, "ESP32 error %s: %s", m->err_n, meaning);
	failed_event(dev, m->image, cname, m->err_code, NULL, text, more);
}

static void
meta_start(const char *dev, struct asm *a, const struct meta *m,
    const char *capture_name, const cJSON *j, const char *raw)
{
	if (a == NULL && (a = asm_new(dev, m->image, 1, 0)) == NULL) {
		error_event(refusal_cause, 2200, dev, m->image, "%s", refusal);
		return;
	}
	a->received_us = cur.received_us;
	a->active = clock_ms();
	if (meta_apply(a, m, capture_name) == -1 || meta_record(a, raw) == -1) {
		error_event(refusal_cause, 2200, dev, m->image, "%s", refusal);
		asm_drop(a);
		return;
	}
	capture_started(dev, m, capture_name, j, raw);
	if (a->received == a->total)
		finalize(a);
	else
		schedule(a);
}

/* When the metadata of the complete photo dev@cname came (the tst of its
 * message), from its sidecar in ready/, work/ or stored/ (looked at in the
 * order a photo moves through them); 0 if unknown. */
static int64_t
record_received(const char *dev, const char *cname)
{
	static const char *const areas[] = { "ready", "work", "stored" };
	char entry[GXP_ENTRY_MAX + 1];
	int64_t us = 0;

	if (gxp_spool_entry(entry, sizeof entry, dev, cname) == -1)
		return 0;
	for (int i = 0; i < 3 && us == 0; i++) {
		char *path = gxp_spool_path(cfg.spool, areas[i], entry, ".json");
		cJSON *sc = gxp_sidecar_read(path);

		us = json_time(cJSON_GetObjectItemCaseSensitive(sc, "timings"), "received_at", 0);
		cJSON_Delete(sc);
		free(path);
	}
	return us;
}

/* The very message that started a capture, read again (a journal replayed
 * after a crash): its event again, identical, for the rows a killed
 * gxp-upload may not have written (written twice, they are stored once:
 * gxp-upload(1), row identity). */
static int
meta_replayed(const char *dev, const struct meta *m, const char *cname, int64_t received,
    const cJSON *j, const char *raw)
{
	if (received == 0 || received != cur.received_us)
		return 0;
	capture_started(dev, m, cname, j, raw);
	log_at(LOG_INFO, dev, m->image, "the metadata message read again: capture_started again");
	return 1;
}

/* Metadata for a capture that is already complete: ignored while it waits
 * for gxp-upload, answered with ACK_OK again once it is stored. */
static void
meta_known(const char *dev, const struct meta *m, int state, struct asm *a)
{
	char msg[128];

	if (a) {
		counters[C_DUPS].v += a->received;
		asm_drop(a);
	}
	/* the chunks sent after this metadata are ignored for a while */
	mark_done(dev, m->image);
	if (state == GXP_SPOOL_STORED) {
		emit(gxp_ack_ok_event(dev, m->image, NULL));
		log_at(LOG_INFO, dev, m->image, "metadata again for a stored photo: ACK_OK again");
		return;
	}
	snprintf(msg, sizeof msg, "metadata again for a photo in %s/: ignored",
	    state == GXP_SPOOL_READY ? "ready" : "work");
	log_at(LOG_INFO, dev, m->image, msg);
}

void
on_metadata(const char *dev, const char *raw, size_t len)
{
	char key[GXP_ENTRY_MAX + 1], tk[32], cname[GXP_CAPTURE_NAME_MAX + 1], why[256];
	cJSON *j = gxp_json_parse(raw, len);
	struct meta m;
	struct asm *a;
	int code, state;

	inbound(dev, "metadata", raw);
	if ((code = meta_parse(j, raw, len, &m, why, sizeof why)) != 0) {
		const char *name = gxp_json_str(j, "image_name");

		error_event(code == 2101 ? RC_MALFORMED : RC_LIMIT, code, dev,
		    m.image[0] ? m.image : name, "%s", why);
		cJSON_Delete(j);
		return;
	}
	gxp_spool_entry(key, sizeof key, dev, m.image);
	if ((a = asm_find(key)) && a->state == A_FINAL)
		commit();
	if (a && a->state == A_DONE) {
		asm_free(a);
		a = NULL;
	}
	if (m.err_code)
		meta_device_error(dev, &m, a, j, raw);
	else if (a && a->has_meta && same_capture(a, &m)) {
		a->active = clock_ms();
		if (!meta_replayed(dev, &m, a->capture_name, a->received_us, j, raw))
			log_at(LOG_INFO, dev, m.image, "metadata again for a capture in progress");
	} else {
		if (a && a->has_meta) {
			capture_failed(a, 2200, NULL, "superseded by a new capture of the same name");
			asm_drop(a);
			a = NULL;
		}
		timekey(tk, &m);
		state = gxp_spool_lookup(cfg.spool, dev, m.image, m.size, tk, cname);
		if (state != GXP_SPOOL_NEW) {
			meta_replayed(dev, &m, cname, record_received(dev, cname), j, raw);
			meta_known(dev, &m, state, a);
		}
		else
			meta_start(dev, a, &m, cname, j, raw);
	}
	cJSON_Delete(j);
}
