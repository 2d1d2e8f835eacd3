/* out.c: NDJSON records go straight to fd 1 with write(2), one line per
 * call, so nothing waits in a stdio buffer.  A closed pipe ends output. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gxp.h"

volatile int gxp_out_closed;

int
gxp_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
out_failed(void)
{
	if (errno != EPIPE)
		gxp_log(LOG_ERROR, "stdout: %s", strerror(errno));
	gxp_out_closed = 1;
	return -1;
}

int
gxp_out_line(const char *line, size_t len)
{
	struct iovec iov[2] = {
		{ (void *)line, len }, { (void *)"\n", 1 }
	};
	size_t left = len + 1;

	if (gxp_out_closed)
		return -1;
	while (left > 0) {
		ssize_t n = writev(1, iov, 2);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return out_failed();
		}
		left -= (size_t)n;
		for (int i = 0; i < 2 && n > 0; i++) {
			size_t step = (size_t)n < iov[i].iov_len ? (size_t)n : iov[i].iov_len;

			iov[i].iov_base = (char *)iov[i].iov_base + step;
			iov[i].iov_len -= step;
			n -= (ssize_t)step;
		}
	}
	return 0;
}

int
gxp_out_json(const cJSON *obj)
{
	char *s = gxp_json_print(obj);
	int rc = gxp_out_line(s, strlen(s));

	free(s);
	return rc;
}
