/* driver.h: gxp-assemble's own code, linked into each harness, as the fuzz
 * harnesses drive it, and the checks they share.  A run is what one
 * process of the tool does: fz_begin() as it starts, lines, fz_end() as it
 * exits or fz_crash() as a SIGKILL would end it. */
#ifndef FUZZ_DRIVER_H
#define FUZZ_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* Once per process: a scratch directory holding spool/ and nothing else,
 * the settings every run shares, logging off unless FUZZ_LOG is set. */
void fz_setup(void);
extern const char *fz_spool;

/* A run: the settings come from the environment, as the tool reads them. */
void fz_begin(void);
void fz_line(char *line, size_t len, long long lineno, int truncated);
void fz_commit(void);
/* Returns whether every timer has run (flush_at_eof, and the replay clock
 * started, or nothing was recovered whose timers wait for it). */
int fz_end(int flush_at_eof);
/* A SIGKILL before the next commit, or in the middle of it: just after
 * its renames-th rename into ready/ or failed/ (when it has fewer, as it
 * writes the output that reports them). */
void fz_crash(int renames);

/* Every line the tool writes on stdout, at the moment it writes it. */
extern void (*fz_out)(const char *line, size_t len);

/* Reports a broken invariant and aborts, which libFuzzer records. */
_Noreturn void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An output line that is not passed through must be an event: valid JSON,
 * "event", "v":1 and a "ts" first.  Returns it parsed. */
cJSON *fz_event(const char *line, size_t len);
/* The spool holds only what gxp-spool(5) allows, and the scratch directory
 * nothing but the spool; settled: no process is in the middle of a commit
 * (tmp/ is empty, every photo has its sidecar); drained: every timer has
 * fired (no capture is in progress in partial/). */
void fz_check_spool(int settled, int drained);
/* Removes the spool (the next run creates it again). */
void fz_wipe(void);
/* The SHA-256 of a file as 64 hex digits; its size, or -1. */
long long fz_file_sha256(const char *path, char hex[65], unsigned char **data);

/* gxp-assemble's own helpers, for differential checks. */
int fz_text_valid(const char *s, size_t n);
void fz_fmt_time(char buf[32], int64_t us);

#endif
