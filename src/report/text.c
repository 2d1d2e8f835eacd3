/* text.c: text from the store made safe for a page, a URL or a log line,
 * and times as people read them. */
#include <string.h>

#include "report.h"

/* The length of the valid UTF-8 sequence at s (a NUL-terminated string),
 * 0 if there is none. */
static size_t
utf8_seq(const unsigned char *s)
{
	unsigned c = s[0], n, min, cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 1, min = 0x80, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 2, min = 0x800, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 3, min = 0x10000, cp = c & 0x07;
	else
		return 0;
	for (unsigned i = 1; i <= n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n + 1;
}

/* s as HTML text or attribute value: the five special characters as
 * entities, control characters and bytes that are not UTF-8 as U+FFFD. */
void
html_esc(struct gxp_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	while (*p) {
		size_t n = utf8_seq(p);

		switch (n == 1 ? *p : 0) {
		case '&': gxp_buf_adds(b, "&amp;"); break;
		case '<': gxp_buf_adds(b, "&lt;"); break;
		case '>': gxp_buf_adds(b, "&gt;"); break;
		case '"': gxp_buf_adds(b, "&quot;"); break;
		case '\'': gxp_buf_adds(b, "&#39;"); break;
		default:
			if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f) && *p != '\t' &&
			    *p != '\n'))
				gxp_buf_adds(b, "\xef\xbf\xbd");
			else
				gxp_buf_add(b, p, n);
		}
		p += n ? n : 1;
	}
}

/* s as a URL path: bytes other than A-Z a-z 0-9 . _ ~ / - percent-encoded
 * (so it is also safe in an attribute). */
void
url_path_esc(struct gxp_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || strchr("._~/-", *p))
			gxp_buf_add(b, p, 1);
		else
			gxp_buf_addf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
	}
}

/* "just now", "5 min ago", "3 h ago", "2 d ago", "in 4 h", or "never". */
void
fmt_when(struct gxp_buf *b, int64_t t, int64_t now)
{
	int64_t d = now - t, a = d < 0 ? -d : d;
	long long n;
	const char *unit;

	if (t == 0) {
		gxp_buf_adds(b, "never");
		return;
	}
	if (a < 60 * 1000000LL) {
		gxp_buf_adds(b, d >= 0 ? "just now" : "in a minute");
		return;
	}
	if (a < 90 * 60 * 1000000LL)
		n = a / 60000000, unit = "min";
	else if (a < 48 * HOUR_US)
		n = a / HOUR_US, unit = "h";
	else
		n = a / DAY_US, unit = "d";
	if (d >= 0)
		gxp_buf_addf(b, "%lld %s ago", n, unit);
	else
		gxp_buf_addf(b, "in %lld %s", n, unit);
}

/* "2026-12-01 15:07 UTC" */
void
fmt_utc_short(char buf[32], int64_t t)
{
	char full[32];

	gxp_fmt_utc(full, t);
	snprintf(buf, 32, "%.10s %.5s UTC", full, full + 11);
}

/* s quoted for a log line: printable ASCII as it is, anything else as
 * \xNN, at most about 80 characters. */
const char *
log_safe(const char *s, char buf[96])
{
	size_t o = 0;

	buf[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p && o < 88; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
			buf[o++] = (char)*p;
		else
			o += (size_t)snprintf(buf + o, 96 - o, "\\x%02x", *p);
	}
	if (o >= 88)
		o = 88, memcpy(buf + o, "...", 3), o += 3;
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* A storage_path that can name a file below the bucket and nothing else:
 * segments of A-Z a-z 0-9 . _ -, none empty, "." or "..". */
int
storage_path_safe(const char *p)
{
	size_t n = strlen(p);

	if (n == 0 || n > 1024 || strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
	    "nopqrstuvwxyz0123456789._/-") != n)
		return 0;
	for (const char *seg = p; ; ) {
		size_t len = strcspn(seg, "/");

		if (len == 0 || (len == 1 && seg[0] == '.') ||
		    (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		if (seg[len] == '\0')
			return 1;
		seg += len + 1;
	}
}
