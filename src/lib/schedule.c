/* schedule.c: a device's wake slots and whether a hello is due for a
 * photo.  Slots are fixed in time: in test mode every test_interval_minutes
 * counted from the Unix epoch; otherwise at wall-clock times of day in the
 * zone sched_zone() set: wakeup_time_1 and wakeup_time_2 when both are
 * set, else capture_per_day slots spaced evenly through the day from
 * wakeup_time_1 (or midnight).  A wall time the clock skips (spring
 * forward) is taken at the moment of the jump; one it shows twice (fall
 * back) at its first occurrence only.
 *
 * A hello is due when the device has no next_wake_at yet, or when it comes
 * at most the tolerance before next_wake_at; after the photo, next_wake_at
 * becomes the first slot more than the tolerance after now.  So a device
 * that woke a little early is still taken, one that says hello again at
 * once is not taken twice, and one that was away for days is taken once
 * and then follows its slots: none is ever made up. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "control.h"

#define DAY 86400
#define US 1000000LL

/* Whether name is a zone of the TZ database: glibc would take an unknown
 * one for UTC without a word. */
int
sched_zone_valid(const char *name)
{
	const char *dir = getenv("TZDIR");
	struct stat st;
	char *path;
	int ok;

	if (name == NULL || *name == '\0' || name[0] == '/' || strstr(name, "..") ||
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789/_+-") != strlen(name))
		return -1;
	path = xasprintf("%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
	ok = stat(path, &st) == 0 && S_ISREG(st.st_mode);
	free(path);
	return ok ? 0 : -1;
}

/* The zone of the wall-clock times from now on. */
int
sched_zone(const char *name)
{
	char *tz;

	if (sched_zone_valid(name) == -1) {
		errno = ENOENT;
		return -1;
	}
	tz = xasprintf(":%s", name);
	setenv("TZ", tz, 1);
	free(tz);
	tzset();
	return 0;
}

static long
gmtoff(int64_t s)
{
	time_t t = (time_t)s;
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL)
		return 0;
	return tm.tm_gmtoff;
}

/* The instant (seconds) a local wall-clock time w (seconds since the
 * epoch, as if the zone were UTC) comes, assuming at most one change of
 * offset within a day either side, as in every real zone. */
static int64_t
wall_to_utc(int64_t w)
{
	long o1 = gmtoff(w - DAY), o2 = gmtoff(w + DAY);
	int64_t u1 = w - o1, u2 = w - o2, lo, hi;
	int v1 = u1 + gmtoff(u1) == w, v2 = u2 + gmtoff(u2) == w;
	long before;

	if (v1 && v2)
		return u1 < u2 ? u1 : u2;
	if (v1 || v2)
		return v1 ? u1 : u2;
	/* skipped: the first instant with the later offset */
	lo = u1 < u2 ? u1 : u2;
	hi = u1 < u2 ? u2 : u1;
	before = gmtoff(lo);
	while (hi - lo > 1) {
		int64_t mid = lo + (hi - lo) / 2;

		if (gmtoff(mid) == before)
			lo = mid;
		else
			hi = mid;
	}
	return hi;
}

/* The slots' times of day, ascending, without repeats; how many. */
static int
times_of_day(const struct sched *s, int tod[24])
{
	int n = 0, anchor = s->wake[0] >= 0 ? s->wake[0] : s->wake[1] >= 0 ? s->wake[1] : 0;

	if (s->wake[0] >= 0 && s->wake[1] >= 0) {
		tod[n++] = s->wake[0] < s->wake[1] ? s->wake[0] : s->wake[1];
		if (s->wake[0] != s->wake[1])
			tod[n++] = s->wake[0] < s->wake[1] ? s->wake[1] : s->wake[0];
		return n;
	}
	for (int k = 0; k < s->per_day; k++) {
		int t = (anchor + k * DAY / s->per_day) % DAY;
		int i = n++;

		while (i > 0 && tod[i - 1] > t) {
			tod[i] = tod[i - 1];
			i--;
		}
		tod[i] = t;
	}
	return n;
}

static int64_t
floor_div(int64_t a, int64_t b)
{
	return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* The first slot strictly after t. */
int64_t
sched_next_slot(const struct sched *s, int64_t t)
{
	int tod[24], n;
	int64_t secs, day, best = INT64_MAX;

	if (s->test_mode) {
		int64_t step = (int64_t)s->test_min * 60 * US;

		return (floor_div(t, step) + 1) * step;
	}
	n = times_of_day(s, tod);
	secs = floor_div(t, US);
	day = floor_div(secs + gmtoff(secs), DAY);
	for (int64_t d = day - 1; d <= day + 2; d++)
		for (int i = 0; i < n; i++) {
			int64_t u = wall_to_utc(d * DAY + tod[i]) * US;

			if (u > t && u < best)
				best = u;
		}
	return best;
}

/* The shortest nominal time between two slots. */
static int64_t
gap(const struct sched *s)
{
	int tod[24], n;
	int64_t g = DAY;

	if (s->test_mode)
		return (int64_t)s->test_min * 60;
	n = times_of_day(s, tod);
	for (int i = 0; i < n; i++) {
		int64_t d = i + 1 < n ? tod[i + 1] - tod[i] : DAY - tod[i] + tod[0];

		if (d > 0 && d < g)
			g = d;
	}
	return g;
}

/* How early a hello may come for its slot: wakeup_window_sec, but at most
 * half the time between two slots. */
int64_t
sched_tolerance(const struct sched *s)
{
	int64_t half = gap(s) / 2, w = s->window_s > 0 ? s->window_s : 0;

	return (w < half ? w : half) * US;
}

/* Whether a hello at now is due for a photo; next_wake 0: none yet. */
int
sched_due(const struct sched *s, int64_t next_wake, int64_t now)
{
	return next_wake == 0 || now >= next_wake - sched_tolerance(s);
}

/* next_wake_at after a photo taken at now. */
int64_t
sched_after_capture(const struct sched *s, int64_t now)
{
	return sched_next_slot(s, now + sched_tolerance(s));
}

/* The seed's ACK_OK next_wake_time: "5:30PM", in the zone. */
void
sched_clock(char buf[16], int64_t t)
{
	time_t secs = (time_t)floor_div(t, US);
	struct tm tm;
	int h;

	if (localtime_r(&secs, &tm) == NULL) {
		snprintf(buf, 16, "?");
		return;
	}
	h = tm.tm_hour % 12 ? tm.tm_hour % 12 : 12;
	snprintf(buf, 16, "%d:%02d%s", h % 100, tm.tm_min % 100, tm.tm_hour < 12 ? "AM" : "PM");
}

static int
two_digits(const char *p, int max)
{
	if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
		return -1;
	return (p[0] - '0') * 10 + p[1] - '0' <= max ? (p[0] - '0') * 10 + p[1] - '0' : -1;
}

/* "HH:MM" or "HH:MM:SS", as a Postgres time column reads (a fraction of a
 * second is dropped). */
int
sched_time_of_day(const char *s, int *secs)
{
	int h = two_digits(s, 23), m = -1, sec = 0;
	const char *rest = s + 5;

	if (h >= 0 && s[2] == ':')
		m = two_digits(s + 3, 59);
	if (m < 0)
		return -1;
	if (*rest == ':') {
		if ((sec = two_digits(s + 6, 59)) < 0)
			return -1;
		rest = s + 8;
		if (rest[0] == '.' && rest[1] >= '0' && rest[1] <= '9')
			rest += 1 + strspn(rest + 1, "0123456789");
	}
	if (*rest != '\0')
		return -1;
	*secs = h * 3600 + m * 60 + sec;
	return 0;
}

static const char *
int_field(const cJSON *row, const char *key, int lo, int hi, int *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
	long long n;

	if (v == NULL || cJSON_IsNull(v))
		return NULL;
	if (gxp_json_int(row, key, &n) != 1 || n < lo || n > hi)
		return key;
	*out = (int)n;
	return NULL;
}

static const char *
wake_field(const cJSON *row, const char *key, int *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);

	*out = -1;
	if (v == NULL || cJSON_IsNull(v))
		return NULL;
	if (!cJSON_IsString(v) || sched_time_of_day(v->valuestring, out) == -1)
		return key;
	return NULL;
}

/* A device_configs row; what the database would hold for a column that is
 * missing (its default) is taken for it.  NULL, or the bad column. */
const char *
sched_from_json(const cJSON *row, struct sched *s)
{
	const cJSON *tm = cJSON_GetObjectItemCaseSensitive(row, "test_mode");
	const char *bad;

	s->per_day = 2;
	s->window_s = 180;
	s->test_mode = 0;
	s->test_min = 5;
	if (!cJSON_IsObject(row))
		return "the row";
	if ((bad = int_field(row, "capture_per_day", 1, 24, &s->per_day)) ||
	    (bad = int_field(row, "wakeup_window_sec", 0, DAY, &s->window_s)) ||
	    (bad = int_field(row, "test_interval_minutes", 1, 60, &s->test_min)) ||
	    (bad = wake_field(row, "wakeup_time_1", &s->wake[0])) ||
	    (bad = wake_field(row, "wakeup_time_2", &s->wake[1])))
		return bad;
	if (tm && !cJSON_IsNull(tm) && !cJSON_IsBool(tm))
		return "test_mode";
	s->test_mode = cJSON_IsTrue(tm);
	return NULL;
}

/* "HH:MM" or "HH:MM,HH:MM" into wake[]; -1 if it is neither. */
int
sched_wake_times(const char *v, int wake[2])
{
	char buf[64], *comma;

	wake[0] = wake[1] = -1;
	if (strlen(v) >= sizeof buf)
		return -1;
	strcpy(buf, v);
	if ((comma = strchr(buf, ',')) != NULL)
		*comma++ = '\0';
	if (sched_time_of_day(buf, &wake[0]) == -1 ||
	    (comma && sched_time_of_day(comma + strspn(comma, " "), &wake[1]) == -1))
		return -1;
	return 0;
}

/* The schedule of devices without a device_configs row (SCHEDULE_*). */
void
sched_from_settings(struct sched *s)
{
	const char *times = gxp_cfg("SCHEDULE_WAKE_TIMES");

	s->per_day = (int)gxp_cfg_int("SCHEDULE_CAPTURES_PER_DAY");
	s->window_s = (int)gxp_cfg_int("SCHEDULE_WAKE_WINDOW_S");
	s->test_mode = gxp_cfg_bool("SCHEDULE_TEST_MODE");
	s->test_min = (int)gxp_cfg_int("SCHEDULE_TEST_INTERVAL_MIN");
	if (times == NULL || sched_wake_times(times, s->wake) == -1)
		s->wake[0] = s->wake[1] = -1;	/* checked with the settings */
}
