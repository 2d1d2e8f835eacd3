/* line.c: the fuzz harness for one NDJSON input line.  The input goes
 * through gxp-assemble's own handling of a line (envelope, tst, payload as
 * object or string, classification, metadata and chunk fields, names and
 * devices, the events it writes) and through the library's parsers on the
 * way (line reader, JSON scanner, member finder, unescaping, minifying,
 * base64, UTF-8, times, .env files), each checked against a second way of
 * getting the same answer. */
#define _GNU_SOURCE	/* memfd_create */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../src/lib/gxp.h"
#include "driver.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *line_in;
static size_t line_len;

/* The input as a C string of its own, exactly as long, for ASan. */
static char *
copy(const uint8_t *d, size_t n)
{
	char *s = xmalloc(n + 1);

	memcpy(s, d, n);
	s[n] = '\0';
	return s;
}

static int
memfd_of(const uint8_t *d, size_t n)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	if (fd == -1 || gxp_write_all(fd, (const char *)d, n) == -1 ||
	    lseek(fd, 0, SEEK_SET) == -1)
		fz_fail("memfd: %s", strerror(errno));
	return fd;
}

/* ---- UTF-8: the Unicode standard's table 3-7, byte by byte ---- */

static int
utf8_ref(const unsigned char *s, size_t n)
{
	static const struct { unsigned char lo, hi, lo1, hi1; int len; } t[] = {
		{ 0xc2, 0xdf, 0x80, 0xbf, 2 }, { 0xe0, 0xe0, 0xa0, 0xbf, 3 },
		{ 0xe1, 0xec, 0x80, 0xbf, 3 }, { 0xed, 0xed, 0x80, 0x9f, 3 },
		{ 0xee, 0xef, 0x80, 0xbf, 3 }, { 0xf0, 0xf0, 0x90, 0xbf, 4 },
		{ 0xf1, 0xf3, 0x80, 0xbf, 4 }, { 0xf4, 0xf4, 0x80, 0x8f, 4 },
	};
	size_t i = 0, k;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		for (k = 0; k < 8 && (s[i] < t[k].lo || s[i] > t[k].hi); k++)
			;
		if (k == 8 || n - i < (size_t)t[k].len || s[i + 1] < t[k].lo1 ||
		    s[i + 1] > t[k].hi1)
			return 0;
		for (int j = 2; j < t[k].len; j++)
			if (s[i + j] < 0x80 || s[i + j] > 0xbf)
				return 0;
		i += (size_t)t[k].len;
	}
	return 1;
}

static void
check_utf8(const char *s, size_t n)
{
	int ref = utf8_ref((const unsigned char *)s, n);

	if (gxp_utf8_valid((const unsigned char *)s, n) != ref)
		fz_fail("gxp_utf8_valid says %d, the standard %d", !ref, ref);
	if (fz_text_valid(s, n) != ref)
		fz_fail("gxp-assemble's text_valid says %d, the standard %d", !ref, ref);
}

/* ---- JSON ---- */

/* Is there white space outside the strings of JSON text? */
static int
has_space(const char *s, size_t n)
{
	int in = 0;

	for (size_t i = 0; i < n; i++) {
		if (in && s[i] == '\\')
			i++;
		else if (s[i] == '"')
			in = !in;
		else if (!in && strchr(" \t\r\n", s[i]) && s[i])
			return 1;
	}
	return 0;
}

static void
check_minify(const char *s, size_t n)
{
	char *m = xmalloc(n + 1);
	size_t mn;
	cJSON *a, *b;

	memcpy(m, s, n);
	mn = gxp_json_minify(m, n);
	if (mn > n || !gxp_json_valid(m, mn) || has_space(m, mn))
		fz_fail("gxp_json_minify of valid JSON: %.*s", (int)mn, m);
	a = gxp_json_parse(s, n);
	b = gxp_json_parse(m, mn);
	/* printed, not cJSON_Compare'd: that one is wrong for repeated keys */
	if (a) {
		char *pa = b ? gxp_json_print(a) : NULL, *pb = b ? gxp_json_print(b) : NULL;

		if (b == NULL || strcmp(pa, pb) != 0)
			fz_fail("gxp_json_minify changed a value");
		free(pa);
		free(pb);
	}
	cJSON_Delete(a);
	cJSON_Delete(b);
	free(m);
}

#define MEMBERS 64

/* The member walk, deep and shallow, against gxp_json_valid and
 * gxp_json_raw_member. */
static void
check_members(const char *s, size_t n, int valid)
{
	const char *k[MEMBERS], *v[MEMBERS], *k2, *v2;
	size_t kl[MEMBERS], vl[MEMBERS], kl2, vl2, pos = 0, pos2 = 0;
	int rc, rc2, m = 0, object = s[strspn(s, " \t\r\n")] == '{';

	while ((rc = gxp_json_next_member(s, n, &pos, 0, &k[m], &kl[m], &v[m], &vl[m])) == 1)
		if (m < MEMBERS - 1)
			m++;
	while ((rc2 = gxp_json_next_member(s, n, &pos2, GXP_JSON_SHALLOW, &k2, &kl2, &v2,
	    &vl2)) == 1)
		;
	if (valid && object && rc != 0)
		fz_fail("gxp_json_next_member rejects a valid object");
	if (rc == 0 && !valid && utf8_ref((const unsigned char *)s, n))
		fz_fail("gxp_json_next_member accepts invalid JSON");
	if (rc == 0 && rc2 != 0)
		fz_fail("GXP_JSON_SHALLOW rejects what a deep walk accepts");
	for (int i = 0; rc == 0 && i < m; i++) {
		char *key = xasprintf("%.*s", (int)kl[i], k[i]);
		const char *val;
		size_t vlen;
		int first = 1;

		for (int j = 0; j < i; j++)
			first &= kl[j] != kl[i] || memcmp(k[j], k[i], kl[i]) != 0;
		if (first && (gxp_json_raw_member(s, n, key, &val, &vlen) != 0 ||
		    val != v[i] || vlen != vl[i]))
			fz_fail("gxp_json_raw_member and gxp_json_next_member disagree on %s", key);
		free(key);
	}
}

/* gxp_buf_add_jstr writes a JSON string that gives s back. */
static void
check_jstr(const char *s, size_t n)
{
	struct gxp_buf b = { 0 };
	char *back;

	gxp_buf_add_jstr(&b, s, n);
	back = xmalloc(b.len);
	if (!gxp_json_valid(b.p, b.len) || gxp_json_unescape(b.p + 1, b.len - 2, back) !=
	    (long)n || memcmp(back, s, n) != 0)
		fz_fail("gxp_buf_add_jstr does not give the string back");
	free(back);
	gxp_buf_free(&b);
}

/* gxp_json_unescape against cJSON, and against gxp_buf_add_jstr. */
static void
check_unescape(const char *s, size_t n)
{
	char *out = xmalloc(n + 1), *quoted = xmalloc(n + 2);
	long r = gxp_json_unescape(s, n, out);
	cJSON *j;

	quoted[0] = quoted[n + 1] = '"';
	memcpy(quoted + 1, s, n);
	if (r >= 0 && ((size_t)r > n || out[r] != '\0'))
		fz_fail("gxp_json_unescape: length %ld of %zu", r, n);
	if (r >= 0 && utf8_ref((const unsigned char *)s, n) &&
	    !utf8_ref((unsigned char *)out, (size_t)r))
		fz_fail("gxp_json_unescape made invalid UTF-8");
	if (r >= 0 && strlen(out) == (size_t)r && gxp_json_valid(quoted, n + 2)) {
		j = gxp_json_parse(quoted, n + 2);
		if (!cJSON_IsString(j) || strcmp(j->valuestring, out) != 0)
			fz_fail("gxp_json_unescape and cJSON disagree");
		cJSON_Delete(j);
	}
	if (r >= 0 && utf8_ref((unsigned char *)out, (size_t)r))
		check_jstr(out, (size_t)r);
	free(quoted);
	free(out);
}

static void
check_json(const char *s, size_t n)
{
	int valid = gxp_json_valid(s, n);
	cJSON *j;

	/* what passes is copied into events that cJSON and PostgreSQL read */
	if (valid && (j = gxp_json_parse(s, n)) == NULL)
		fz_fail("gxp_json_valid passes what cJSON cannot parse");
	else if (valid)
		cJSON_Delete(j);
	check_members(s, n, valid);
	if (valid)
		check_minify(s, n);
	check_unescape(s, n);
}

/* ---- base64 ---- */

static void
check_b64(const uint8_t *d, size_t n)
{
	size_t cap = n / 4 * 3;
	unsigned char *out = xmalloc(cap), *again = xmalloc(cap);
	char *enc = xmalloc(gxp_b64_encoded_len(n) + 1);
	long r = gxp_b64_decode((const char *)d, n, out, cap), r2;

	if (r >= 0) {
		if ((size_t)r > cap || gxp_b64_encode(out, (size_t)r, enc) != n ||
		    gxp_b64_decode(enc, n, again, cap) != r || memcmp(out, again, (size_t)r))
			fz_fail("gxp_b64_decode of %zu bytes: %ld, no round trip", n, r);
		if (r > 0 && gxp_b64_decode((const char *)d, n, again, (size_t)r - 1) != -1)
			fz_fail("gxp_b64_decode wrote past its capacity");
	}
	free(out);
	free(again);
	/* and the encoder, on the raw bytes */
	out = xmalloc(n);
	r = (long)gxp_b64_encode(d, n, enc);
	r2 = gxp_b64_decode(enc, (size_t)r, out, n);
	if (r2 != (long)n || memcmp(out, d, n) != 0)
		fz_fail("gxp_b64_encode then gxp_b64_decode lost bytes");
	free(out);
	free(enc);
}

/* ---- times ---- */

static void
same_format(int64_t us)
{
	char a[32], b[32];

	gxp_fmt_utc(a, us);
	fz_fmt_time(b, us);
	if (strcmp(a, b) != 0)
		fz_fail("gxp_fmt_utc %s, gxp-assemble's fmt_time %s", a, b);
}

static void
check_time(const char *s)
{
	char buf[32];
	int64_t us, back;

	if (gxp_parse_time(s, &us) == -1)
		return;
	same_format(us);
	same_format(us + 1);
	same_format(us - 1);
	same_format(us + 999999);
	if (us < -62167219200000000LL || us >= 253402300800000000LL)
		return;		/* outside the years 0000 to 9999 */
	gxp_fmt_utc(buf, us);
	if (gxp_parse_time(buf, &back) == -1 || back != us)
		fz_fail("%s parsed as %lld, formatted %s", s, (long long)us, buf);
}

/* ---- names, devices, entries, topics ---- */

static int
chars_ok(const char *s, const char *set, size_t max, int no_dot)
{
	size_t n = strlen(s);

	return n >= 1 && n <= max && strspn(s, set) == n && !(no_dot && s[0] == '.');
}

#define ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

static void
check_topic(const char *s)
{
	static const char *const settings[] = { NULL, "TOPIC_PATTERN_DATA",
		"TOPIC_PATTERN_STATUS", "TOPIC_PATTERN_ACK" };
	char dev[GXP_DEVICE_MAX + 1], *t;
	int kind = gxp_topic_parse(s, dev);

	if (kind == TOPIC_OTHER)
		return;
	t = gxp_topic_for(settings[kind], dev);
	if (!gxp_device_valid(dev) || strcmp(t, s) != 0)
		fz_fail("topic %s gave device %s", s, dev);
	free(t);
}

static void
check_names(const char *s)
{
	char dev[GXP_DEVICE_MAX + 1], name[GXP_CAPTURE_NAME_MAX + 1];
	char alt[GXP_CAPTURE_NAME_MAX + 1], entry[GXP_ENTRY_MAX + 1];
	const char *at = strchr(s, '@');
	int ok;

	if (gxp_device_valid(s) != chars_ok(s, ALNUM "_-", GXP_DEVICE_MAX, 0))
		fz_fail("gxp_device_valid(%s)", s);
	if (gxp_image_name_valid(s) != chars_ok(s, ALNUM "._-", GXP_NAME_MAX, 1))
		fz_fail("gxp_image_name_valid(%s)", s);
	if (gxp_capture_name_valid(s) != chars_ok(s, ALNUM "._-", GXP_CAPTURE_NAME_MAX, 1))
		fz_fail("gxp_capture_name_valid(%s)", s);
	if (gxp_image_name_valid(s)) {
		gxp_capture_altname(alt, s, "1a2b3c4d");
		if (!gxp_capture_name_valid(alt))
			fz_fail("the altname of %s is %s", s, alt);
	}
	if (at) {
		char *d = xasprintf("%.*s", (int)(at - s), s);

		ok = gxp_device_valid(d) && gxp_capture_name_valid(at + 1);
		if ((gxp_spool_entry_parse(s, dev, name) == 0) != ok || (ok &&
		    (gxp_spool_entry(entry, sizeof entry, dev, name) == -1 || strcmp(entry, s))))
			fz_fail("gxp_spool_entry_parse(%s)", s);
		free(d);
	}
	check_topic(s);
}

/* ---- the line reader ---- */

static void
expect_line(struct gxp_lines *r, const uint8_t *seg, size_t n, int last, size_t max,
    long long no)
{
	char *line;
	size_t len;
	int rc = gxp_lines_read(r, &line, &len);
	int want = n > max ? LINE_TOO_LONG : last ? LINE_TRUNCATED : LINE_OK;

	if (rc != want || gxp_lines_number(r) != no ||
	    (want != LINE_TOO_LONG && (len != n || memcmp(line, seg, n) != 0)))
		fz_fail("line %lld (%zu bytes, limit %zu): reader said %d, not %d", no, n, max,
		    rc, want);
}

static void
check_reader(const uint8_t *d, size_t n)
{
	size_t max = 1 + (n ? d[0] % 40 : 0), start = 0;
	int fd = memfd_of(d, n);
	struct gxp_lines *r = gxp_lines_open(fd, max);
	long long no = 0;
	char *line;
	size_t len;

	for (size_t i = 0; i < n; i++)
		if (d[i] == '\n') {
			expect_line(r, d + start, i - start, 0, max, ++no);
			start = i + 1;
		}
	if (start < n)
		expect_line(r, d + start, n - start, 1, max, ++no);
	if (gxp_lines_read(r, &line, &len) != LINE_EOF)
		fz_fail("the reader has more than the input");
	gxp_lines_free(r);
	close(fd);
}

/* ---- the .env parser ---- */

static void
check_envfile(const uint8_t *d, size_t n)
{
	int fd = memfd_of(d, n);
	char path[64];

	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	gxp_config_load(path, 1);
	gxp_config_problems();
	gxp_config_free();
	close(fd);
}

/* ---- the line through gxp-assemble ---- */

static void
out_line(const char *s, size_t n)
{
	if (n == line_len && memcmp(s, line_in, n) == 0)
		return;		/* passed through */
	cJSON_Delete(fz_event(s, n));
}

static void
check_assemble(const uint8_t *d, size_t n)
{
	const uint8_t *nl = memchr(d, '\n', n);
	size_t len = nl ? (size_t)(nl - d) : n;
	char *line = copy(d, len);

	line_in = line;
	line_len = len;
	fz_begin();
	fz_line(line, len, 1, nl == NULL);
	fz_check_spool(1, fz_end(1));
	free(line);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_setup();
	fz_out = out_line;
	setenv("PUBLISH_LOG", "all", 1);
	setenv("ASSEMBLE_ORPHAN_CHUNKS", "4", 1);
	setenv("RETRANSMIT_MAX", "2", 1);
	setenv("NACK_MAX_IDS", "3", 1);
	setenv("ACK_NEXT_WAKE_TIME", "2026-01-01T06:00:00Z", 1);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = copy(data, size);

	check_utf8(s, size);
	check_json(s, size);
	check_b64(data, size);
	check_time(s);
	check_names(s);
	check_reader(data, size);
	check_assemble(data, size);
	check_envfile(data, size);
	free(s);
	return 0;
}
