/* backlog.c: how far behind gxp-upload is: the photos waiting (counted
 * for the metrics, for SIGUSR1 and for --check), and a store whose
 * requests fail, reported while it lasts. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "upload.h"

static long waiting = -1;	/* photos in ready/ and work/ at the last look */
static int64_t oldest_us;	/* when the oldest of them was finished */
static int64_t next_census;

static long long
oldest_age_s(void)
{
	return oldest_us ? (gxp_wall_us() - oldest_us) / 1000000 : 0;
}

/* Counts the photos waiting: every UPLOAD_RESCAN_MS, and for SIGUSR1. */
void
census(int now)
{
	if (!now && gxp_mono_ms() < next_census)
		return;
	next_census = gxp_mono_ms() + rescan_ms;
	waiting = gxp_spool_waiting(spool, &oldest_us);
	counters[C_BACKLOG].v = waiting > 0 ? (unsigned long long)waiting : 0;
	counters[C_OLDEST].v = (unsigned long long)oldest_age_s();
}

/* While requests fail, says so within seconds and then every
 * UPLOAD_OUTAGE_REPORT_S, with what waits; and says when it is over. */
void
watch_outage(void)
{
	static int64_t next_report;
	static int reported;
	int64_t every = gxp_cfg_int("UPLOAD_OUTAGE_REPORT_S") * 1000, now = gxp_mono_ms();
	struct http_stats hs;
	struct rows_stats rs;

	store_stats(st, &hs);
	counters[C_FAILING].v = (unsigned long long)hs.failing_ms / 1000;
	/* only Supabase's requests fail this way: the local store answers at once */
	if (hs.failing_ms == 0) {
		if (reported)
			gxp_log(LOG_INFO, "Supabase answers again; %ld photo%s waiting",
			    waiting, waiting == 1 ? "" : "s");
		reported = 0;
		next_report = 0;
		return;
	}
	if (hs.failing_ms < (every < 5000 ? every : 5000) || now < next_report)
		return;
	census(1);
	rows_stats(rows, &rs);
	gxp_log(LOG_WARN, hs.unreachable ? "Supabase unreachable for %lld s (%s): %ld "
	    "photo%s waiting, oldest %lld s; %zu row%s queued; retrying" : "Supabase failing "
	    "for %lld s (%s): %ld photo%s waiting, oldest %lld s; %zu row%s queued; retrying",
	    hs.failing_ms / 1000, hs.failure, waiting, waiting == 1 ? "" : "s",
	    oldest_age_s(), rs.queued, rs.queued == 1 ? "" : "s");
	reported = 1;
	next_report = now + every;
}

/* --check: what waits in the spool, and for how long. */
void
check_spool(void)
{
	spool = gxp_cfg("GXP_SPOOL");
	if ((waiting = gxp_spool_waiting(spool, &oldest_us)) == -1)
		printf("gxp-upload: ok: spool %s: no ready/ yet (%s)\n", spool, strerror(errno));
	else if (waiting == 0)
		printf("gxp-upload: ok: spool %s: no photo waiting\n", spool);
	else
		printf("gxp-upload: ok: spool %s: %ld photo%s waiting, oldest %lld s\n", spool,
		    waiting, waiting == 1 ? "" : "s", oldest_age_s());
}
