/* input.c: every line read goes out unchanged, and at once: lines are
 * copied to an output buffer as they are read, and the buffer is written
 * whenever stdout takes it.  When stdout is a pipe its writes do not
 * block, so a slow next stage (gxp-assemble waits for its syncs) never
 * holds up anything; up to CONTROL_BUFFER_BYTES wait here, and past that
 * no input is read until they have gone.  The hellos among the lines are
 * not answered here: net.c hears them live. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"

static struct gxp_lines *in;
static struct gxp_buf out;
static size_t out_off;
static int nonblock;
static long long limit;

void
input_open(int fd)
{
	struct stat st;
	int fl;

	in = gxp_lines_open(fd, (size_t)gxp_cfg_int("MAX_LINE_BYTES"));
	limit = gxp_cfg_int("CONTROL_BUFFER_BYTES");
	/* a pipe is ours alone; a file or a terminal is left blocking */
	if (fstat(1, &st) == 0 && S_ISFIFO(st.st_mode) && (fl = fcntl(1, F_GETFL)) != -1 &&
	    fcntl(1, F_SETFL, fl | O_NONBLOCK) != -1)
		nonblock = 1;
}

int
input_fd(void)
{
	return gxp_lines_fd(in);
}

int
input_paused(void)
{
	return (long long)(out.len - out_off) >= limit;
}

void
out_line(const char *line, size_t len)
{
	if (gxp_out_closed)
		return;
	gxp_buf_add(&out, line, len);
	gxp_buf_add(&out, "\n", 1);
}

void
out_event(cJSON *e)
{
	char *s = gxp_json_print(e);

	out_line(s, strlen(s));
	free(s);
	cJSON_Delete(e);
}

int
out_pending(void)
{
	return out.len > out_off && !gxp_out_closed;
}

/* Writes what stdout takes now; -1 when it is closed. */
int
out_flush(void)
{
	while (out_pending()) {
		ssize_t n = write(1, out.p + out_off, out.len - out_off);

		if (n > 0) {
			out_off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			/* what went is let go: a stdout never quite drained
			 * must not make the buffer grow without end */
			if (out_off >= out.len / 2) {
				memmove(out.p, out.p + out_off, out.len - out_off);
				out.len -= out_off;
				out_off = 0;
			}
			return 0;
		}
		if (errno != EPIPE)
			gxp_log(LOG_ERROR, "stdout: %s", strerror(errno));
		gxp_out_closed = 1;
		return -1;
	}
	out.len = out_off = 0;
	return gxp_out_closed ? -1 : 0;
}

/* Reads what there is; -1 at the end of input. */
int
input_read(void)
{
	char *line;
	size_t len;
	int rc;

	if (gxp_lines_fill(in) == -1) {
		if (errno == EINTR)
			return 0;
		gxp_log(LOG_ERROR, "stdin: %s", strerror(errno));
		return -1;
	}
	while ((rc = gxp_lines_next(in, &line, &len)) != LINE_AGAIN) {
		switch (rc) {
		case LINE_EOF:
			return -1;
		case LINE_TOO_LONG:
			gxp_log(LOG_ERROR, "line %lld: longer than MAX_LINE_BYTES; skipped",
			    gxp_lines_number(in));
			break;
		case LINE_TRUNCATED:
			/* as it came, without the newline it lacks */
			gxp_buf_add(&out, line, len);
			break;
		default:
			counters[C_PASSED].v++;
			cluster_input(line, len);
			out_line(line, len);
		}
	}
	return 0;
}

void
input_close(void)
{
	int fl;

	if (nonblock && (fl = fcntl(1, F_GETFL)) != -1)
		fcntl(1, F_SETFL, fl & ~O_NONBLOCK);
	nonblock = 0;
	out_flush();
	gxp_lines_free(in);
	in = NULL;
	gxp_buf_free(&out);
	out_off = 0;
}
