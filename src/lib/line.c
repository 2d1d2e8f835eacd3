/* line.c: reads NDJSON input.  Lines longer than the limit are skipped
 * whole and reported once; a last line without its newline is reported as
 * truncated.  gxp_lines_next() never blocks, gxp_lines_fill() reads once,
 * so a tool with timers can poll(2) between them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gxp.h"

struct gxp_lines {
	int fd, eof, skipping;
	char *buf;
	size_t cap, start, end, max;
	long long lineno;
};

struct gxp_lines *
gxp_lines_open(int fd, size_t max_line)
{
	struct gxp_lines *r = xcalloc(1, sizeof *r);

	r->fd = fd;
	r->max = max_line;
	r->cap = max_line + 1 < 65536 ? max_line + 1 : 65536;
	r->buf = xmalloc(r->cap + 1);
	return r;
}

/* Reads once; returns bytes read, 0 at end of input, -1 on error. */
int
gxp_lines_fill(struct gxp_lines *r)
{
	ssize_t n;

	if (r->eof)
		return 0;
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	if (r->end == r->cap) {
		if (r->cap > r->max) {
			/* a full buffer without a newline: the line is too long */
			r->skipping = 1;
			r->end = 0;
		} else {
			r->cap = r->cap * 2 > r->max + 1 ? r->max + 1 : r->cap * 2;
			r->buf = xrealloc(r->buf, r->cap + 1);
		}
	}
	do
		n = read(r->fd, r->buf + r->end, r->cap - r->end);
	while (n == -1 && errno == EINTR && !gxp_sig_term);
	if (n == -1)
		return -1;
	if (n == 0)
		r->eof = 1;
	r->end += (size_t)n;
	return (int)n;
}

int
gxp_lines_next(struct gxp_lines *r, char **line, size_t *len)
{
	char *p = r->buf + r->start, *nl = memchr(p, '\n', r->end - r->start);

	if (nl == NULL) {
		if (!r->eof)
			return LINE_AGAIN;
		if (r->start == r->end && !r->skipping)
			return LINE_EOF;
		/* the last line lost its newline */
		*line = p;
		*len = r->end - r->start;
		r->buf[r->end] = '\0';	/* the buffer has cap + 1 bytes */
		r->start = r->end;
		r->lineno++;
		if (r->skipping) {
			r->skipping = 0;
			return LINE_TOO_LONG;
		}
		return LINE_TRUNCATED;
	}
	*nl = '\0';
	*line = p;
	*len = (size_t)(nl - p);
	r->start = (size_t)(nl - r->buf) + 1;
	r->lineno++;
	if (r->skipping || *len > r->max) {
		r->skipping = 0;
		return LINE_TOO_LONG;
	}
	return LINE_OK;
}

int
gxp_lines_read(struct gxp_lines *r, char **line, size_t *len)
{
	int rc;

	while ((rc = gxp_lines_next(r, line, len)) == LINE_AGAIN)
		if (gxp_lines_fill(r) == -1)
			return LINE_ERROR;
	return rc;
}

int
gxp_lines_fd(const struct gxp_lines *r)
{
	return r->fd;
}

long long
gxp_lines_number(const struct gxp_lines *r)
{
	return r->lineno;
}

void
gxp_lines_free(struct gxp_lines *r)
{
	if (r) {
		free(r->buf);
		free(r);
	}
}
