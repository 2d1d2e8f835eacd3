/* err.c: one error-reporting family for every tool: "prog: level: text". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gxp.h"

const char *gxp_progname = "gxp";
static int log_level = LOG_INFO;
static const char *const level_names[] = { "debug", "info", "warning", "error" };

void
gxp_init(const char *argv0)
{
	const char *slash = argv0 ? strrchr(argv0, '/') : NULL;

	if (argv0)
		gxp_progname = slash ? slash + 1 : argv0;
	gxp_die_with_supervisor();
}

int
gxp_log_level_parse(const char *s)
{
	static const struct { const char *name; int level; } names[] = {
		{ "DEBUG", LOG_DEBUG }, { "INFO", LOG_INFO },
		{ "WARN", LOG_WARN }, { "WARNING", LOG_WARN },
		{ "ERROR", LOG_ERROR }, { "CRITICAL", LOG_ERROR },
		{ "NONE", LOG_NONE },
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcasecmp(s, names[i].name) == 0)
			return names[i].level;
	return -1;
}

void
gxp_log_level_set(int level)
{
	log_level = level;
}

int
gxp_log_enabled(int level)
{
	return level >= log_level;
}

void
gxp_vlog(int level, const char *fmt, va_list ap)
{
	char buf[2048];
	size_t len;
	int n;

	if (level < log_level)
		return;
	n = snprintf(buf, sizeof buf, "%s: %s: ", gxp_progname,
	    level_names[level < LOG_ERROR ? level : LOG_ERROR]);
	if (n < 0 || (size_t)n >= sizeof buf)
		return;
	vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
	/* one line per event, whatever the message held, in one write(2) */
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	len = strlen(buf);
	buf[len++] = '\n';
	gxp_write_all(2, buf, len);
}

void
gxp_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	gxp_vlog(level, fmt, ap);
	va_end(ap);
}

void
gxp_die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	gxp_vlog(LOG_ERROR, fmt, ap);
	va_end(ap);
	exit(code);
}

void
gxp_die_errno(int code, const char *fmt, ...)
{
	char msg[1024];
	int e = errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	gxp_log(LOG_ERROR, "%s: %s", msg, strerror(e));
	exit(code);
}
