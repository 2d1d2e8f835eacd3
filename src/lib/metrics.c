/* metrics.c: a tool's counters, written every METRICS_INTERVAL_S seconds to
 * $GXP_METRICS_DIR/<tool>.prom (node_exporter's textfile format) and
 * printed on stderr when SIGUSR1 arrives. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gxp.h"

static struct gxp_counter *counters;
static size_t ncounters;
static int64_t next_write, interval_ms;
static const char *dir;

void
gxp_metrics_init(struct gxp_counter *c, size_t n)
{
	counters = c;
	ncounters = n;
	next_write = 0;
	dir = gxp_cfg("GXP_METRICS_DIR");
	interval_ms = gxp_cfg_int("METRICS_INTERVAL_S") * 1000;
}

static void
metric_name(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s_%s", gxp_progname, name);

	for (int i = 0; i < n && (size_t)i < len; i++)
		if (buf[i] == '-')
			buf[i] = '_';
}

/* A counter named family{label="..."} shares its family's HELP and TYPE
 * lines with the counters of the same family just before it. */
static int
same_family(const char *a, const char *b)
{
	size_t n = strcspn(a, "{");

	return a[n] == '{' && strncmp(a, b, n) == 0 && b[n] == '{';
}

static void
write_file(void)
{
	char path[4096], tmp[4200], name[160], family[160];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s.prom", dir, gxp_progname);
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	if (gxp_mkdirs(dir, 0755) == -1 || (f = fopen(tmp, "w")) == NULL) {
		gxp_log(LOG_WARN, "metrics: %s: %s", dir, strerror(errno));
		return;
	}
	for (size_t i = 0; i < ncounters; i++) {
		metric_name(name, sizeof name, counters[i].name);
		snprintf(family, sizeof family, "%.*s", (int)strcspn(name, "{"), name);
		if (i == 0 || !same_family(counters[i - 1].name, counters[i].name))
			fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", family, counters[i].help,
			    family, counters[i].gauge ? "gauge" : "counter");
		fprintf(f, "%s %llu\n", name, (unsigned long long)counters[i].v);
	}
	/* metrics need no fsync: a lost file is rewritten in seconds */
	if (fclose(f) != 0 || rename(tmp, path) == -1) {
		gxp_log(LOG_WARN, "metrics: %s: %s", path, strerror(errno));
		unlink(tmp);
	}
}

static void
print_stderr(void)
{
	struct gxp_buf b = { 0 };

	for (size_t i = 0; i < ncounters; i++)
		gxp_buf_addf(&b, "%s%s=%llu", i ? " " : "", counters[i].name,
		    (unsigned long long)counters[i].v);
	gxp_log(LOG_INFO, "counters: %s", b.p ? b.p : "");
	gxp_buf_free(&b);
}

/* Call from the main loop; force writes now (at exit). */
void
gxp_metrics_tick(int force)
{
	int64_t now;

	if (gxp_sig_usr1) {
		gxp_sig_usr1 = 0;
		print_stderr();
	}
	if (dir == NULL || ncounters == 0)
		return;
	now = gxp_mono_ms();
	if (!force && now < next_write)
		return;
	next_write = now + interval_ms;
	write_file();
}
