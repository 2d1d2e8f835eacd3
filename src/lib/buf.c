/* buf.c: a growable byte buffer, always NUL-terminated. */
#include <stdlib.h>
#include <string.h>

#include "gxp.h"

void
gxp_buf_grow(struct gxp_buf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;

	while (cap < b->len + more + 1)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

void
gxp_buf_add(struct gxp_buf *b, const void *data, size_t len)
{
	gxp_buf_grow(b, len);
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
}

void
gxp_buf_adds(struct gxp_buf *b, const char *s)
{
	gxp_buf_add(b, s, strlen(s));
}

void
gxp_buf_addf(struct gxp_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	gxp_buf_grow(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* A JSON string literal; s must be valid UTF-8. */
void
gxp_buf_add_jstr(struct gxp_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	gxp_buf_grow(b, len + 2);
	b->p[b->len++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		gxp_buf_grow(b, 7);
		if (c == '"' || c == '\\') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = (char)c;
		} else if (c < 0x20) {
			const char *esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" :
			    c == '\t' ? "\\t" : NULL;

			if (esc) {
				memcpy(b->p + b->len, esc, 2);
				b->len += 2;
			} else {
				memcpy(b->p + b->len, "\\u00", 4);
				b->p[b->len + 4] = hex[c >> 4];
				b->p[b->len + 5] = hex[c & 15];
				b->len += 6;
			}
		} else
			b->p[b->len++] = (char)c;
	}
	gxp_buf_grow(b, 1);
	b->p[b->len++] = '"';
	b->p[b->len] = '\0';
}

void
gxp_buf_free(struct gxp_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
