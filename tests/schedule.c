/* schedule.c: unit tests of the wake schedules (src/lib/schedule.c) on a
 * fixed clock: every "now" is given, nothing reads the time.  Prints one
 * "ok"/"not ok" line per check, exits 1 if one failed.  tests/schedule.bats
 * runs it. */
#include <stdlib.h>
#include <string.h>

#include "lib/control.h"

static int checks, failed;

static int64_t
at(const char *iso)
{
	int64_t us;

	if (gxp_parse_time(iso, &us) == -1) {
		fprintf(stderr, "bad time in the test: %s\n", iso);
		exit(2);
	}
	return us;
}

static void
result(int ok, const char *what, const char *got, const char *want)
{
	checks++;
	if (ok)
		printf("ok %d - %s\n", checks, what);
	else {
		failed++;
		printf("not ok %d - %s: got %s, want %s\n", checks, what, got, want);
	}
}

static void
same_time(const char *what, int64_t got, const char *want)
{
	char g[32], w[32];

	gxp_fmt_utc(g, got);
	gxp_fmt_utc(w, at(want));
	result(got == at(want), what, g, w);
}

static void
truth(const char *what, int got, int want)
{
	result(got == want, what, got ? "true" : "false", want ? "true" : "false");
}

static void
zone(const char *name)
{
	if (sched_zone(name) == -1) {
		fprintf(stderr, "no zone %s on this machine\n", name);
		exit(2);
	}
}

static struct sched
even(int per_day)
{
	struct sched s = { per_day, { -1, -1 }, 180, 0, 5 };

	return s;
}

static struct sched
wake_at(const char *t1, const char *t2, int per_day)
{
	struct sched s = even(per_day);

	if (t1)
		sched_time_of_day(t1, &s.wake[0]);
	if (t2)
		sched_time_of_day(t2, &s.wake[1]);
	return s;
}

static void
next(const char *what, struct sched s, const char *now, const char *want)
{
	same_time(what, sched_next_slot(&s, at(now)), want);
}

static void
even_slots(void)
{
	zone("UTC");
	next("2 a day: the next noon", even(2), "2026-03-10T05:00:00Z", "2026-03-10T12:00:00Z");
	next("2 a day: a slot is strictly after now", even(2), "2026-03-10T12:00:00Z",
	    "2026-03-11T00:00:00Z");
	next("day boundary: the last second of a year", even(2), "2026-12-31T23:59:59.5Z",
	    "2027-01-01T00:00:00Z");
	next("leap day", even(1), "2028-02-28T10:00:00Z", "2028-02-29T00:00:00Z");
	next("24 a day: on the hour", even(24), "2026-03-10T10:30:00Z", "2026-03-10T11:00:00Z");
	next("1 a day: midnight", even(1), "2026-03-10T00:00:01Z", "2026-03-11T00:00:00Z");
	next("3 a day: 00:00 08:00 16:00", even(3), "2026-03-10T09:00:00Z",
	    "2026-03-10T16:00:00Z");
	next("7 a day: 86400/7 s apart", even(7), "2026-03-10T03:00:00Z",
	    "2026-03-10T03:25:42Z");
	next("wakeup_time_1 alone anchors 4 a day: 06 12 18 00", wake_at("06:00", NULL, 4),
	    "2026-03-10T18:30:00Z", "2026-03-11T00:00:00Z");
	next("wakeup_time_2 alone anchors too", wake_at(NULL, "06:00", 2),
	    "2026-03-10T07:00:00Z", "2026-03-10T18:00:00Z");
}

static void
wake_times(void)
{
	zone("Europe/Berlin");
	next("Berlin 07:00 and 17:30: the morning (CEST)", wake_at("07:00", "17:30", 2),
	    "2026-06-01T04:00:00Z", "2026-06-01T05:00:00Z");
	next("Berlin 07:00 and 17:30: after the evening, tomorrow's morning",
	    wake_at("07:00", "17:30", 2), "2026-06-01T15:40:00Z", "2026-06-02T05:00:00Z");
	next("Berlin 07:00 and 17:30: winter time (CET)", wake_at("17:30", "07:00", 2),
	    "2026-01-15T12:00:00Z", "2026-01-15T16:30:00Z");
	next("two wake times: capture_per_day does not matter", wake_at("07:00", "17:30", 24),
	    "2026-06-01T05:30:00Z", "2026-06-01T15:30:00Z");
	next("the same time twice is one slot", wake_at("07:00", "07:00", 2),
	    "2026-06-01T05:30:00Z", "2026-06-02T05:00:00Z");
	next("a local day in UTC+2: midnight slots are 22:00Z", even(1),
	    "2026-06-01T21:00:00Z", "2026-06-01T22:00:00Z");
}

static void
dst(void)
{
	zone("Europe/Berlin");
	/* 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00Z */
	next("spring forward: 02:00 does not exist, taken at the jump", even(24),
	    "2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z");
	next("spring forward: 03:00 is the same instant, one slot", even(24),
	    "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z");
	next("spring forward: a 02:30 wake time comes at the jump", wake_at("02:30", NULL, 1),
	    "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z");
	next("spring forward: and at 02:30 CEST the day after", wake_at("02:30", NULL, 1),
	    "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z");
	/* 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00Z */
	next("fall back: 02:30 at its first occurrence", wake_at("02:30", NULL, 1),
	    "2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z");
	next("fall back: not at its second", wake_at("02:30", NULL, 1),
	    "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z");
	next("fall back: hourly slots skip the repeated hour", even(24),
	    "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z");
	next("fall back: 12:00 local is 11:00Z that day", even(2),
	    "2026-10-25T02:00:00Z", "2026-10-25T11:00:00Z");
	zone("America/New_York");
	/* 2026-03-08: 02:00 EST becomes 03:00 EDT at 07:00Z */
	next("New York spring forward: 02:15 at the jump", wake_at("02:15", NULL, 1),
	    "2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z");
	zone("Australia/Sydney");
	/* 2026-04-05: 03:00 AEDT becomes 02:00 AEST at 16:00Z on the 4th */
	next("Sydney fall back: 02:30 at its first occurrence", wake_at("02:30", NULL, 1),
	    "2026-04-04T15:00:00Z", "2026-04-04T15:30:00Z");
}

static void
test_mode(void)
{
	struct sched s = even(2);

	zone("Europe/Berlin");
	s.test_mode = 1;
	s.test_min = 5;
	next("test mode: every 5 minutes from the epoch, whatever the zone", s,
	    "2026-03-10T10:02:30Z", "2026-03-10T10:05:00Z");
	same_time("test mode: tolerance is half the interval (150 s < 180 s)",
	    sched_tolerance(&s) + at("2026-03-10T10:00:00Z"), "2026-03-10T10:02:30Z");
	same_time("test mode: after a photo at 10:04:50, 10:10 (10:05 is too close)",
	    sched_after_capture(&s, at("2026-03-10T10:04:50Z")), "2026-03-10T10:10:00Z");
	s.test_min = 1;
	same_time("test mode, 1 minute: the next slot at least 30 s away",
	    sched_after_capture(&s, at("2026-03-10T10:00:10Z")), "2026-03-10T10:01:00Z");
	same_time("test mode, 1 minute: not 20 s away",
	    sched_after_capture(&s, at("2026-03-10T10:00:40Z")), "2026-03-10T10:02:00Z");
}

static void
due(void)
{
	struct sched s = even(2);

	zone("UTC");
	truth("no next_wake_at: due", sched_due(&s, 0, at("2026-03-10T05:00:00Z")), 1);
	truth("3 minutes early (wakeup_window_sec 180): due",
	    sched_due(&s, at("2026-03-10T12:00:00Z"), at("2026-03-10T11:57:00Z")), 1);
	truth("a second more: not due",
	    sched_due(&s, at("2026-03-10T12:00:00Z"), at("2026-03-10T11:56:59Z")), 0);
	truth("late: due", sched_due(&s, at("2026-03-10T12:00:00Z"), at("2026-03-10T15:00:00Z")), 1);
	same_time("a photo at 11:58 was the 12:00 one: next is midnight",
	    sched_after_capture(&s, at("2026-03-10T11:58:00Z")), "2026-03-11T00:00:00Z");
	truth("a hello right after that photo: not due",
	    sched_due(&s, at("2026-03-11T00:00:00Z"), at("2026-03-10T11:58:05Z")), 0);
	s.window_s = 0;
	truth("wakeup_window_sec 0: no tolerance",
	    sched_due(&s, at("2026-03-10T12:00:00Z"), at("2026-03-10T11:59:59Z")), 0);
}

static void
offline(void)
{
	struct sched s = even(2);
	int64_t now = at("2026-03-05T09:13:00Z"), next_wake;

	zone("UTC");
	truth("away for four days: due once",
	    sched_due(&s, at("2026-03-01T12:00:00Z"), now), 1);
	next_wake = sched_after_capture(&s, now);
	same_time("then the next slot in the future, none made up", next_wake,
	    "2026-03-05T12:00:00Z");
	truth("and the hello after that photo is not due", sched_due(&s, next_wake,
	    now + 20 * 1000000LL), 0);
}

static void
clock_text(void)
{
	char buf[16];
	static const struct { const char *t, *want; } cases[] = {
		{ "2026-06-01T15:30:00Z", "5:30PM" },
		{ "2026-06-01T22:05:00Z", "12:05AM" },
		{ "2026-06-01T10:00:00Z", "12:00PM" },
		{ "2026-01-15T06:07:00Z", "7:07AM" },
	};

	zone("Europe/Berlin");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char what[80];

		sched_clock(buf, at(cases[i].t));
		snprintf(what, sizeof what, "next_wake_time of %s in Berlin", cases[i].t);
		result(strcmp(buf, cases[i].want) == 0, what, buf, cases[i].want);
	}
}

static void
parsing(void)
{
	static const char *const good[] = { "07:00", "07:00:00", "23:59:59.999", "00:00" };
	static const char *const bad[] = { "24:00", "7:00", "07:60", "07:00x", "07:00:", "",
		"07:00:00.", "07:00,17:30" };
	struct sched s;
	cJSON *row;
	int secs, wake[2];
	const char *why;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		truth(good[i], sched_time_of_day(good[i], &secs) == 0, 1);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		truth(bad[i], sched_time_of_day(bad[i], &secs) == 0, 0);
	truth("SCHEDULE_WAKE_TIMES 07:00,17:30",
	    sched_wake_times("07:00, 17:30", wake) == 0 && wake[1] == 17 * 3600 + 1800, 1);
	truth("SCHEDULE_WAKE_TIMES 7am", sched_wake_times("7am", wake) == 0, 0);
	row = cJSON_Parse("{\"capture_per_day\":25}");
	why = sched_from_json(row, &s);
	result(why && strcmp(why, "capture_per_day") == 0, "capture_per_day 25 is refused",
	    why ? why : "(accepted)", "capture_per_day");
	cJSON_Delete(row);
	row = cJSON_Parse("{\"wakeup_time_1\":\"07:00:00\",\"wakeup_time_2\":null,"
	    "\"test_mode\":false}");
	why = sched_from_json(row, &s);
	truth("a row as PostgREST sends it", why == NULL && s.wake[0] == 7 * 3600 &&
	    s.wake[1] == -1 && s.per_day == 2 && s.window_s == 180 && s.test_min == 5, 1);
	cJSON_Delete(row);
	row = cJSON_Parse("{\"test_mode\":\"yes\"}");
	truth("test_mode must be a boolean", sched_from_json(row, &s) != NULL, 1);
	cJSON_Delete(row);
	truth("zone Europe/Berlin", sched_zone_valid("Europe/Berlin"), 0);
	truth("zone Mars/Olympus_Mons", sched_zone_valid("Mars/Olympus_Mons"), -1);
	truth("zone ../../etc/passwd", sched_zone_valid("../../etc/passwd"), -1);
}

int
main(void)
{
	even_slots();
	wake_times();
	dst();
	test_mode();
	due();
	offline();
	clock_text();
	parsing();
	printf("%d checks, %d failed\n", checks, failed);
	return failed ? 1 : 0;
}
