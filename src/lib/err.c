/* err.c: one error-reporting family for every tool: "prog: level: text";
 * and the umask every tool starts with. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "gxp.h"

const char *gxp_progname = "gxp";
static int log_level = LOG_INFO;
static const char *const level_names[] = { "debug", "info", "warning", "error" };

/* Names the program, and keeps what it creates (photos, rows, the spool)
 * from other users: group and others lose write, others read too, whatever
 * umask it was started with; a stricter one stays. */
void
gxp_init(const char *argv0)
{
	const char *slash = argv0 ? strrchr(argv0, '/') : NULL;

	if (argv0)
		gxp_progname = slash ? slash + 1 : argv0;
	umask(umask(0) | 027);
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

/* The length of the UTF-8 sequence at s (at most len bytes) and its code
 * point, or 0 when it is not a valid, shortest one. */
static size_t
utf8_seq(const unsigned char *s, size_t len, unsigned *cp)
{
	size_t n;
	unsigned min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0)
		n = 1, *cp = s[0] & 0x1f, min = 0x80;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 2, *cp = s[0] & 0x0f, min = 0x800;
	else if ((s[0] & 0xf8) == 0xf0)
		n = 3, *cp = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (len <= n)
		return 0;
	for (size_t k = 1; k <= n; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[k] & 0x3f);
	}
	if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return n + 1;
}

/* Copies text into out (cap bytes, NUL-terminated) so that a terminal shows
 * it and obeys nothing in it: line breaks and tabs become spaces; other C0
 * controls, DEL, C1 controls (U+0080..U+009F, which some terminals obey
 * even in UTF-8) and bytes that are not UTF-8 (a lone 0x9b is CSI to an
 * 8-bit terminal) become \xNN.  Devices put their own text into log
 * lines: an ESC sequence from one must not reach an operator's terminal. */
size_t
gxp_clean_text(char *out, size_t cap, const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t len = strlen(text), o = 0, n;
	unsigned cp;

	for (size_t i = 0; i < len && o + 1 < cap; i += n) {
		if ((n = utf8_seq(s + i, len - i, &cp)) == 0)
			n = 1, cp = 0x80;	/* not UTF-8: escaped like a C1 control */
		if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) {
			if (cp == '\n' || cp == '\r' || cp == '\t') {
				out[o++] = ' ';
				continue;
			}
			if (o + 4 * n + 1 > cap)
				break;
			for (size_t k = 0; k < n; k++)
				o += (size_t)snprintf(out + o, cap - o, "\\x%02x", s[i + k]);
		} else if (o + n + 1 <= cap) {
			memcpy(out + o, s + i, n);
			o += n;
		} else
			break;
	}
	out[o] = '\0';
	return o;
}

/* A --check line that failed, on stdout: "prog: FAIL: what", cleaned as a
 * log line is, since it often repeats what a server said. */
void
gxp_check_fail(const char *fmt, ...)
{
	char msg[2048], out[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	gxp_clean_text(out, sizeof out, msg);
	printf("%s: FAIL: %s\n", gxp_progname, out);
}

void
gxp_vlog(int level, const char *fmt, va_list ap)
{
	char msg[2048], buf[2048 + 8192];
	size_t len;
	int n;

	if (level < log_level)
		return;
	n = snprintf(buf, sizeof buf, "%s: %s: ", gxp_progname,
	    level_names[level < LOG_ERROR ? level : LOG_ERROR]);
	if (n < 0 || (size_t)n >= sizeof buf)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	/* one line per event, whatever the message held, in one write(2) */
	len = (size_t)n + gxp_clean_text(buf + n, sizeof buf - (size_t)n - 1, msg);
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

/* usage(): synopsis, then with --help (code 0, on stdout) one line per
 * option and the manual to read; on a usage error (code 100, on stderr)
 * where to find them. */
void
gxp_usage(int code, const char *synopsis, const char *options)
{
	FILE *f = code ? stderr : stdout;

	fprintf(f, "usage: %s", synopsis);
	if (code == 0)
		fprintf(f, "%ssee %s(1)\n", options, gxp_progname);
	else
		fprintf(f, "%s --help lists the options; see %s(1)\n", gxp_progname,
		    gxp_progname);
	exit(code);
}

/* For getopt with a leading ':' in optstring: says what was wrong with
 * the option getopt returned c for. */
void
gxp_bad_option(int c, char **argv)
{
	const char *arg = argv[optind - 1];

	if (c == ':' && strncmp(arg, "--", 2) == 0)
		gxp_log(LOG_ERROR, "option %s needs an argument", arg);
	else if (c == ':')
		gxp_log(LOG_ERROR, "option -%c needs an argument", optopt);
	else if (optopt)
		gxp_log(LOG_ERROR, "unknown option -%c", optopt);
	else
		gxp_log(LOG_ERROR, "unknown option %s", arg);
}
