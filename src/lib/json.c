/* json.c: typed access to cJSON values, event records, UTF-8 checks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gxp.h"

/* A whole buffer as one JSON value, nothing but whitespace after it. */
cJSON *
gxp_json_parse(const char *s, size_t len)
{
	const char *end = NULL;
	cJSON *v = cJSON_ParseWithLengthOpts(s, len, &end, 0);

	if (v == NULL)
		return NULL;
	for (; end && (size_t)(end - s) < len; end++)
		if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
			cJSON_Delete(v);
			return NULL;
		}
	return v;
}

const char *
gxp_json_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* 1: a number, 0: absent or null, -1: present with another type. */
int
gxp_json_num(const cJSON *obj, const char *key, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (v == NULL || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
		return -1;
	*out = v->valuedouble;
	return 1;
}

/* As gxp_json_num, but the number must be a whole one within +-2^53. */
int
gxp_json_int(const cJSON *obj, const char *key, long long *out)
{
	double d;
	int rc = gxp_json_num(obj, key, &d);

	if (rc != 1)
		return rc;
	if (d != floor(d) || d > 9007199254740992.0 || d < -9007199254740992.0)
		return -1;
	*out = (long long)d;
	return 1;
}

cJSON *
gxp_event_new(const char *type)
{
	cJSON *e = cJSON_CreateObject();

	if (e == NULL)
		gxp_die(EXIT_TEMP, "out of memory");
	cJSON_AddStringToObject(e, "event", type);
	cJSON_AddNumberToObject(e, "v", GXP_EVENT_VERSION);
	return e;
}

char *
gxp_json_print(const cJSON *obj)
{
	char *s = cJSON_PrintUnformatted(obj);

	if (s == NULL)
		gxp_die(EXIT_TEMP, "out of memory");
	return s;
}

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
int
gxp_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		size_t n;
		unsigned cp, min;
		uint64_t w;

		if (len - i >= 8 && (memcpy(&w, s + i, 8), !(w & 0x8080808080808080ULL))) {
			i += 8;	/* eight ASCII bytes */
			continue;
		}
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else
			return 0;
		if (len - i <= n)
			return 0;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

/* Removes whitespace outside strings from valid JSON text, in place, so a
 * payload keeps every value exactly as sent but fits on one line. */
size_t
gxp_json_minify(char *s, size_t len)
{
	size_t r, w = 0;
	int in_str = 0;

	for (r = 0; r < len; r++) {
		char c = s[r];

		if (in_str) {
			s[w++] = c;
			if (c == '\\' && r + 1 < len)
				s[w++] = s[++r];
			else if (c == '"')
				in_str = 0;
		} else if (c == '"') {
			in_str = 1;
			s[w++] = c;
		} else if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			s[w++] = c;
	}
	return w;
}

/* A strict RFC 8259 check, without building a tree: what passes can be
 * copied into an NDJSON record as it is. */
struct scan {
	const char *p, *end;
	int depth;
};

static void
skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
	    *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int
scan_lit(struct scan *s, const char *lit, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

static int
scan_digits(struct scan *s)
{
	const char *start = s->p;

	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > start ? 0 : -1;
}

static int
scan_number(struct scan *s)
{
	if (s->p < s->end && *s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0')
		s->p++;
	else if (scan_digits(s) == -1)
		return -1;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (scan_digits(s) == -1)
			return -1;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (scan_digits(s) == -1)
			return -1;
	}
	return 0;
}

static int hex4(const char *s, unsigned *out);

/* The \uXXXX escape at s->p (on the 'u'), leaving s->p on its last digit.
 * A surrogate is taken only as a high-low pair, as gxp_json_unescape, cJSON
 * and PostgreSQL take it: text with a lone one would pass here and then
 * fail to parse downstream. */
static int
scan_u_escape(struct scan *s)
{
	unsigned cp, lo;

	if (s->end - s->p < 5 || hex4(s->p + 1, &cp) == -1)
		return -1;
	s->p += 4;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return -1;
	if (cp < 0xd800 || cp > 0xdbff)
		return 0;
	if (s->end - s->p < 7 || s->p[1] != '\\' || s->p[2] != 'u' ||
	    hex4(s->p + 3, &lo) == -1 || lo < 0xdc00 || lo > 0xdfff)
		return -1;
	s->p += 6;
	return 0;
}

/* The first byte from p that is a quote, a backslash or a control
 * character, or near it: eight bytes at a time while none is (long plain
 * strings, base64 payloads). */
static const char *
plain_run(const char *p, const char *end)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
	uint64_t w, q, b;

	while (end - p >= 8) {
		memcpy(&w, p, 8);
		q = w ^ (ones * '"');
		b = w ^ (ones * '\\');
		if ((((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w)) & high)
			break;
		p += 8;
	}
	return p;
}

static int
scan_string(struct scan *s)
{
	for (s->p++; (s->p = plain_run(s->p, s->end)) < s->end; s->p++) {
		unsigned char c = (unsigned char)*s->p;

		if (c == '"') {
			s->p++;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c != '\\')
			continue;
		if (++s->p >= s->end)
			return -1;
		if (*s->p == 'u') {
			if (scan_u_escape(s) == -1)
				return -1;
		} else if (!strchr("\"\\/bfnrt", *s->p) || !*s->p)
			return -1;
	}
	return -1;
}

static int scan_value(struct scan *s);

static int
scan_container(struct scan *s, char close, int object)
{
	if (++s->depth > 256)
		return -1;
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		s->depth--;
		return 0;
	}
	for (;;) {
		if (object) {
			skip_ws(s);
			if (s->p >= s->end || *s->p != '"' || scan_string(s) == -1)
				return -1;
			skip_ws(s);
			if (s->p >= s->end || *s->p++ != ':')
				return -1;
		}
		if (scan_value(s) == -1)
			return -1;
		skip_ws(s);
		if (s->p >= s->end)
			return -1;
		if (*s->p == close) {
			s->p++;
			s->depth--;
			return 0;
		}
		if (*s->p++ != ',')
			return -1;
	}
}

static int
scan_value(struct scan *s)
{
	skip_ws(s);
	if (s->p >= s->end)
		return -1;
	switch (*s->p) {
	case '{': return scan_container(s, '}', 1);
	case '[': return scan_container(s, ']', 0);
	case '"': return scan_string(s);
	case 't': return scan_lit(s, "true", 4);
	case 'f': return scan_lit(s, "false", 5);
	case 'n': return scan_lit(s, "null", 4);
	default: return scan_number(s);
	}
}

int
gxp_json_valid(const char *text, size_t len)
{
	struct scan s = { text, text + len, 0 };

	if (scan_value(&s) == -1)
		return 0;
	skip_ws(&s);
	return s.p == s.end && gxp_utf8_valid((const unsigned char *)text, len);
}

/* Finds the value of a top-level member of a JSON object in its text, so a
 * value can be passed on byte for byte (numbers keep every digit). */
int
gxp_json_raw_member(const char *text, size_t len, const char *key,
    const char **val, size_t *vlen)
{
	struct scan s = { text, text + len, 0 };
	size_t klen = strlen(key);

	skip_ws(&s);
	if (s.p >= s.end || *s.p++ != '{')
		return -1;
	for (;;) {
		const char *k;

		skip_ws(&s);
		if (s.p >= s.end || *s.p != '"')
			return -1;
		k = s.p + 1;
		if (scan_string(&s) == -1)
			return -1;
		int match = (size_t)(s.p - 1 - k) == klen && memcmp(k, key, klen) == 0;

		skip_ws(&s);
		if (s.p >= s.end || *s.p++ != ':')
			return -1;
		skip_ws(&s);
		const char *start = s.p;

		if (scan_value(&s) == -1)
			return -1;
		if (match) {
			*val = start;
			*vlen = (size_t)(s.p - start);
			return 0;
		}
		skip_ws(&s);
		if (s.p >= s.end || *s.p++ != ',')
			return -1;
	}
}

/* Finds the end of an object or array without checking what is between
 * its strings (GXP_JSON_SHALLOW). */
static int
skip_container(struct scan *s)
{
	int depth = 0;

	while (s->p < s->end) {
		char c = *s->p;

		if (c == '"') {
			if (scan_string(s) == -1)
				return -1;
			continue;
		}
		s->p++;
		if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth == 0)
			return 0;
	}
	return -1;
}

/* Steps through the members of the JSON object that is the whole of
 * text[0..len], validating as it goes.  Start with *pos = 0.  Returns 1
 * with the next member's key (the text between its quotes, escapes as
 * they are) and its value's text; 0 after the last member, when nothing
 * but white space follows the object; -1 when the text is not a
 * well-formed object.  With GXP_JSON_SHALLOW in flags, values that are
 * objects or arrays are only delimited, for callers that validate the
 * values they use. */
int
gxp_json_next_member(const char *text, size_t len, size_t *pos, int flags,
    const char **key, size_t *klen, const char **val, size_t *vlen)
{
	struct scan s = { text + *pos, text + len, 1 };
	int rc;

	skip_ws(&s);
	if (*pos == 0) {
		if (s.p >= s.end || *s.p++ != '{')
			return -1;
		skip_ws(&s);
		if (s.p < s.end && *s.p == '}')
			goto last;
	} else if (s.p < s.end && *s.p == '}')
		goto last;
	else if (s.p >= s.end || *s.p++ != ',')
		return -1;
	skip_ws(&s);
	if (s.p >= s.end || *s.p != '"')
		return -1;
	*key = s.p + 1;
	if (scan_string(&s) == -1)
		return -1;
	*klen = (size_t)(s.p - 1 - *key);
	skip_ws(&s);
	if (s.p >= s.end || *s.p++ != ':')
		return -1;
	skip_ws(&s);
	*val = s.p;
	if (s.p < s.end && *s.p == '"')
		rc = scan_string(&s);
	else if (s.p < s.end && (*s.p == '{' || *s.p == '[') && (flags & GXP_JSON_SHALLOW))
		rc = skip_container(&s);
	else
		rc = scan_value(&s);
	if (rc == -1)
		return -1;
	*vlen = (size_t)(s.p - *val);
	*pos = (size_t)(s.p - text);
	return 1;
last:
	s.p++;
	skip_ws(&s);
	*pos = len;
	return s.p == s.end ? 0 : -1;
}

static int
hex4(const char *s, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t
put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Decodes the inside of a JSON string literal (s[0..n], without the
 * quotes) into out, which has room for n + 1 bytes, and NUL-terminates it.
 * Returns the decoded length, or -1 for a bad escape or a lone surrogate.
 * \u0000 decodes to a NUL byte: callers wanting a C string compare the
 * length with strlen(). */
long
gxp_json_unescape(const char *s, size_t n, char *out)
{
	size_t i = 0, o = 0;
	unsigned cp, lo;

	while (i < n) {
		if (s[i] != '\\') {
			out[o++] = s[i++];
			continue;
		}
		if (++i >= n)
			return -1;
		switch (s[i++]) {
		case '"': out[o++] = '"'; continue;
		case '\\': out[o++] = '\\'; continue;
		case '/': out[o++] = '/'; continue;
		case 'b': out[o++] = '\b'; continue;
		case 'f': out[o++] = '\f'; continue;
		case 'n': out[o++] = '\n'; continue;
		case 'r': out[o++] = '\r'; continue;
		case 't': out[o++] = '\t'; continue;
		case 'u': break;
		default: return -1;
		}
		if (n - i < 4 || hex4(s + i, &cp) == -1)
			return -1;
		i += 4;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return -1;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (n - i < 6 || s[i] != '\\' || s[i + 1] != 'u' ||
			    hex4(s + i + 2, &lo) == -1 || lo < 0xdc00 || lo > 0xdfff)
				return -1;
			i += 6;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		}
		o += put_utf8(out + o, cp);
	}
	out[o] = '\0';
	return (long)o;
}
