/* run.c: what one run of gxp-assemble is, as main.c and the fuzz
 * harnesses (fuzz/driver.c) drive it: the settings and counters, the start
 * (the spool opened and locked, partial/ read back), one input line at a
 * time (and the segments of partial/ collected between lines), and the end
 * that frees everything. */
#include <strings.h>

#include "assemble.h"

#define COMMIT_MAX 256		/* photos per sync */
#define OUT_MAX (1 << 20)	/* output bytes held back before a commit */

struct config cfg;

struct gxp_counter counters[C_COUNT] = {
	{ "messages_total", "device messages consumed", 0, 0 },
	{ "chunks_total", "chunks written to the spool", 0, 0 },
	{ "duplicates_total", "chunks ignored: seen before, or for a finished photo", 0, 0 },
	{ "photos_completed_total", "photos renamed into ready/", 0, 0 },
	{ "photos_failed_total", "captures that failed", 0, 0 },
	{ "nacks_sent_total", "NACK rounds (one or more messages each)", 0, 0 },
	{ "bytes_written_total", "JPEG bytes renamed into ready/", 0, 0 },
	{ "errors_total", "error events", 0, 0 },
	{ "passed_total", "lines passed through", 0, 0 },
	{ "assemblies_in_flight", "captures being assembled", 1, 0 },
	{ "memory_bytes", "memory the captures in flight are charged (ASSEMBLE_MEMORY_BYTES)", 1, 0 },
	{ "partial_bytes", "bytes of the captures in flight in partial/", 1, 0 },
	{ "moved_total", "captures in flight dropped because their device moved to another worker", 0, 0 },
	{ "refused_total{cause=\"malformed\"}", "work refused, by cause", 0, 0 },
	{ "refused_total{cause=\"payload\"}", "work refused, by cause", 0, 0 },
	{ "refused_total{cause=\"limit\"}", "work refused, by cause", 0, 0 },
	{ "refused_total{cause=\"captures\"}", "work refused, by cause", 0, 0 },
	{ "refused_total{cause=\"device_captures\"}", "work refused, by cause", 0, 0 },
	{ "refused_total{cause=\"device_bytes\"}", "work refused, by cause", 0, 0 },
	{ "refused_total{cause=\"orphans\"}", "work refused, by cause", 0, 0 },
	{ "refused_total{cause=\"memory\"}", "work refused, by cause", 0, 0 },
	{ "refused_total{cause=\"spool_full\"}", "work refused, by cause", 0, 0 },
	{ "refused_total{cause=\"spool_error\"}", "work refused, by cause", 0, 0 },
	{ "refused_total{cause=\"evicted\"}", "work refused, by cause", 0, 0 },
};

/* The settings, from the environment, .env and the defaults. */
void
assemble_config(void)
{
	const char *pl = gxp_cfg("PUBLISH_LOG");

	cfg.spool = gxp_cfg("GXP_SPOOL");
	cfg.max_line = gxp_cfg_int("MAX_LINE_BYTES");
	cfg.max_image = gxp_cfg_int("MAX_IMAGE_BYTES");
	cfg.max_chunks = gxp_cfg_int("MAX_CHUNKS");
	cfg.max_chunk = gxp_cfg_int("MAX_CHUNK_BYTES");
	cfg.max_asm = gxp_cfg_int("MAX_ASSEMBLIES");
	cfg.max_asm_dev = gxp_cfg_int("MAX_ASSEMBLIES_PER_DEVICE");
	cfg.nack_ids = gxp_cfg_int("NACK_MAX_IDS");
	cfg.timeout = gxp_cfg_int("CAPTURE_TIMEOUT_MS");
	cfg.delay = gxp_cfg_int("RETRANSMIT_DELAY_MS");
	cfg.nack_max = gxp_cfg_int("RETRANSMIT_MAX");
	cfg.spool_max = gxp_cfg_int("SPOOL_MAX_BYTES");
	cfg.dev_bytes = gxp_cfg_int("ASSEMBLE_DEVICE_BYTES");
	cfg.orphan_chunks = gxp_cfg_int("ASSEMBLE_ORPHAN_CHUNKS");
	cfg.memory = gxp_cfg_int("ASSEMBLE_MEMORY_BYTES");
	cfg.report_ms = gxp_cfg_int("REFUSED_REPORT_INTERVAL_S") * 1000;
	if (strcasecmp(pl, "all") == 0)
		cfg.publog = PUBLOG_ALL;
	else if (strcasecmp(pl, "no-chunks") == 0)
		cfg.publog = PUBLOG_NO_CHUNKS;
	else if (strcasecmp(pl, "off") == 0)
		cfg.publog = PUBLOG_OFF;
	else
		gxp_die(EXIT_PERM, "PUBLISH_LOG=%s (%s): expected all, no-chunks or off", pl,
		    gxp_cfg_source("PUBLISH_LOG"));
}

/* The spool opened and locked, partial/ read back: before the first line. */
void
assemble_begin(void)
{
	open_spool();
	gxp_buf_grow(&record, (size_t)cfg.max_chunk + 2);
	recover();
}

/* What the reader gave (a line, or LINE_TOO_LONG), then a commit if
 * enough waits for one. */
void
assemble_line(int rc, char *line, size_t len, long long lineno)
{
	if (rc == LINE_TOO_LONG) {
		cur.lineno = lineno;
		error_event(RC_MALFORMED, 2101, NULL, NULL, "line longer than MAX_LINE_BYTES "
		    "(%lld)", cfg.max_line);
		cur.lineno = 0;
	} else
		handle_line(line, len, lineno, rc == LINE_TRUNCATED);
	if (commit_pending() >= COMMIT_MAX || out_len() >= OUT_MAX)
		commit();
	else
		seg_collect(0);
}

/* Frees everything and puts the state back as it was at start: the fuzz
 * harnesses run many times in one process.  Captures go first: freeing
 * one takes it off the timers and out of the descriptor cache. */
void
assemble_free(void)
{
	captures_free();
	cluster_free();
	timers_free();
	seg_close();
	budget_free();
	spool_close();
	finish_free();
	recover_free();
	chunk_free();
	input_free();
	events_free();
	for (size_t i = 0; i < C_COUNT; i++)
		counters[i].v = 0;
}
