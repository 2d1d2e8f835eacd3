/* clock.c: a monotonic clock for timers, UTC wall time for records, and a
 * parser for the timestamps devices and mosquitto_sub write. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "gxp.h"

int64_t
gxp_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
gxp_wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
gxp_sleep_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !gxp_sig_term)
		;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's method). */
int64_t
gxp_days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

void
gxp_civil_from_days(int64_t z, int *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;

	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

void
gxp_fmt_utc(char buf[32], int64_t us)
{
	int64_t s = us >= 0 ? us / 1000000 : (us - 999999) / 1000000;
	int64_t days = s >= 0 ? s / 86400 : (s - 86399) / 86400;
	int64_t sod = s - days * 86400;
	int y, m, d;

	gxp_civil_from_days(days, &y, &m, &d);
	/* the modulos tell the compiler each field's width */
	snprintf(buf, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%06uZ",
	    (unsigned)y % 10000u, (unsigned)m % 100u, (unsigned)d % 100u,
	    (unsigned)(sod / 3600) % 100u, (unsigned)(sod / 60 % 60) % 100u,
	    (unsigned)(sod % 60) % 100u, (unsigned)(us - s * 1000000) % 1000000u);
}

static int
digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++, (*p)++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

/* An offset: +hh, +hhmm or +hh:mm; returns seconds east of UTC. */
static int
zone(const char **p, int *off)
{
	int sign = **p == '-' ? -1 : 1, h, m = 0;

	(*p)++;
	if (digits(p, 2, &h) == -1)
		return -1;
	if (**p == ':')
		(*p)++;
	if (isdigit((unsigned char)**p) && digits(p, 2, &m) == -1)
		return -1;
	if (h > 23 || m > 59)
		return -1;
	*off = sign * (h * 3600 + m * 60);
	return 0;
}

/* ISO 8601 / RFC 3339 date-times: "2026-11-27T05:04:21.627829Z",
 * "...+01:00", "...+0100", a space for the T, no zone (taken as UTC), and
 * mosquitto_sub 2.0's "2026-11-27T05:04:21.627829Z+0100" (local time, a
 * stray Z, then the real offset). */
int
gxp_parse_time(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec, off = 0;
	int64_t frac = 0, scale = 1000000;
	const char *p = s;

	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) ||
	    *p++ != '-' || digits(&p, 2, &d) || (*p != 'T' && *p != 't' &&
	    *p != ' ') || (p++, digits(&p, 2, &h)) || *p++ != ':' ||
	    digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &sec))
		return -1;
	if (*p == '.' || *p == ',') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -1;
		for (; isdigit((unsigned char)*p); p++)
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
	}
	if (*p == 'Z' || *p == 'z')
		p++;
	if ((*p == '+' || *p == '-') && zone(&p, &off) == -1)
		return -1;
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60)
		return -1;
	*out = ((gxp_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
	    off) * 1000000) + frac;
	return 0;
}

/* Monotonic microseconds, for latencies shorter than a millisecond. */
int64_t
gxp_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
