/* gxp-report: writes a static HTML report of the fleet (index.html, a page
 * per device, thumbnails) from the local store or from Supabase, reading
 * only what changed since its last run.  See gxp-report(1). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

static void
usage(int code)
{
	gxp_usage(code,
	    "gxp-report [-f] [--check] [--env file] [-o dir]\n",
	    "  -f           read everything again, as if there were no state\n"
	    "  --check      test the store and the report directory; one line each\n"
	    "  --env file   read settings from file instead of ./.env\n"
	    "  -o dir       write the report in dir (REPORT_DIR)\n"
	    "  --help       print this and exit\n");
}

static int
check_outdir(const char *dir)
{
	char *probe = xasprintf("%s/.check.%ld", dir, (long)getpid());
	int rc = gxp_mkdirs(dir, 0755) == 0 ? gxp_write_atomic(probe, "gxp\n", 4) : -1;

	if (rc == 0) {
		unlink(probe);
		printf("gxp-report: ok: report directory %s writable\n", dir);
	} else
		printf("gxp-report: FAIL: report directory %s: %s\n", dir, strerror(errno));
	free(probe);
	return rc == 0 ? EXIT_OK : EXIT_PERM;
}

/* A run removes what it did not write, so it writes only into a new or
 * empty directory, or one a gxp-report made (it holds the lock file). */
static void
refuse_foreign(const char *dir, const char *lock)
{
	char **names;
	long n = gxp_dir_names(dir, NULL, 0, &names);

	if (n > 0)
		gxp_names_free(names, n);
	if (n > 0 && access(lock, F_OK) == -1)
		gxp_die(EXIT_PERM, "%s: not empty and not a report gxp-report made; "
		    "give -o a new or empty directory", dir);
}

/* The report directory, locked against a second gxp-report. */
static void
prepare(const char *dir)
{
	char *sub[] = { xasprintf("%s/devices", dir), xasprintf("%s/thumbs", dir),
		xasprintf("%s/.lock", dir) };

	refuse_foreign(dir, sub[2]);
	for (int i = 0; i < 2; i++)
		if (gxp_mkdirs(sub[i], 0755) == -1)
			gxp_die_errno(errno == EACCES || errno == EROFS ? EXIT_PERM : EXIT_TEMP,
			    "report directory %s", sub[i]);
	if (gxp_lock_file(sub[2]) == -1)
		gxp_die_errno(EXIT_TEMP, "%s%s", sub[2], errno == EWOULDBLOCK ?
		    ": another gxp-report is writing this report" : "");
	for (int i = 0; i < 3; i++)
		free(sub[i]);
}

struct run {
	const char *dir;
	struct source *src;
	struct fleet *f;
	struct state_extra x;
	struct out o;
	struct photo_stats ps;
	int full;
};

static int
thumb_kept(const char *name, void *arg)
{
	const struct run *r = arg;
	char key[33];
	const char *v;

	if (strlen(name) != 36 || strcmp(name + 32, ".jpg") != 0)
		return 0;
	memcpy(key, name, 32);
	key[32] = '\0';
	return (v = map_get(r->x.thumbs, key)) != NULL && *v == '\0';
}

static int
not_a_page(const char *name, void *arg)
{
	(void)arg;
	return strncmp(name, "page-", 5) != 0 && strstr(name, ".tmp.") == NULL;
}

static void
write_pages(struct run *r)
{
	struct page_opts po = { 0 };

	po.source = r->src->label;
	po.page_tiles = gxp_cfg_int("REPORT_PAGE_TILES");
	out_file(&r->o, "report.css", report_css, strlen(report_css));
	page_device_all(&r->o, r->f, &po);
	page_index_all(&r->o, r->f, &po);
}

static void
summary(const struct run *r)
{
	const struct fleet *f = r->f;

	gxp_log(LOG_INFO, "%zu devices, %d need attention; %d photos stored and %d "
	    "failed in the last 24 h", f->ndevs, f->attention, f->total_stored,
	    f->total_failed);
	gxp_log(LOG_INFO, "%s read: %llu rows (%llu unusable), %llu requests; thumbnails: "
	    "%llu made, %llu kept, %llu unreadable, %llu for later; %llu photos fetched "
	    "(%llu bytes), %llu URLs signed; %llu pages written, %llu unchanged",
	    r->full ? "full" : "incremental", f->rows, f->bad_rows, r->src->requests,
	    r->ps.made, r->ps.cached, r->ps.bad, r->ps.later, r->src->downloads,
	    r->ps.fetched_bytes, r->src->signed_urls, r->o.wrote, r->o.unchanged);
}

static void
drop_key(const char *key, void *val, void *arg)
{
	(void)val;
	free(map_del(arg, key));
}

static void
bad_key(const char *key, void *val, void *arg)
{
	if (*(const char *)val)
		map_put(arg, key, NULL);
}

/* -f: photos that could not be shown are tried again. */
static void
forget_bad(struct map *thumbs)
{
	struct map *bad = map_new();

	map_each(thumbs, bad_key, bad);
	map_each(bad, drop_key, thumbs);
	map_free(bad, NULL);
}

static int
report(struct run *r, int force_full)
{
	char *state = xasprintf("%s/.gxp-report.state", r->dir), real[PATH_MAX];
	int loaded, rc, later;

	loaded = state_load(state, r->src, r->f, &r->x);
	r->f->rows = r->f->bad_rows = 0;	/* count the store's rows only */
	r->full = force_full || !loaded || (r->src->refresh_us &&
	    r->f->now - r->x.full_at >= r->src->refresh_us);
	if ((rc = r->src->read(r->src, r->f, r->full)) != EXIT_OK) {
		gxp_log(LOG_ERROR, "the store could not be read: the report is left as it was");
		free(state);
		return rc;
	}
	if (r->full)
		r->x.full_at = r->f->now;
	if (force_full)
		forget_bad(r->x.thumbs);
	model_finish(r->f);
	out_init(&r->o, r->dir, r->x.sums);
	later = photos_update(r->src, r->f, &r->o, &r->x, &r->ps) == -1;
	later |= r->src->links(r->src, r->f, r->dir, &r->x) == -1;
	write_pages(r);
	map_free(r->x.sums, free);	/* the state keeps this run's */
	r->x.sums = r->o.sums;
	r->o.sums = NULL;
	r->o.old_sums = NULL;
	if (out_sync(&r->o) == -1 || r->o.failed || state_save(state, r->src, r->f, &r->x) == -1) {
		free(state);
		return EXIT_TEMP;
	}
	out_sweep(&r->o, "devices", NULL, NULL);
	out_sweep(&r->o, "thumbs", thumb_kept, r);
	out_sweep(&r->o, "", not_a_page, NULL);
	summary(r);
	if (realpath(r->dir, real) != NULL)
		printf("%s/index.html\n", real);
	free(state);
	return later ? EXIT_TEMP : EXIT_OK;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'C' },
		{ "env", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 }
	};
	const char *envfile = NULL, *outdir = NULL, *bucket;
	struct run r = { 0 };
	int c, check = 0, full = 0, rc;

	gxp_init(argv[0]);
	while ((c = getopt_long(argc, argv, ":e:fo:", longopts, NULL)) != -1) {
		switch (c) {
		case 'C': check = 1; break;
		case 'e': envfile = optarg; break;
		case 'f': full = 1; break;
		case 'o': outdir = optarg; break;
		case 'H': usage(EXIT_OK); break;
		default:
			gxp_bad_option(c, argv);
			usage(EXIT_PERM);
		}
	}
	if (optind != argc || (check && full)) {
		gxp_log(LOG_ERROR, "%s", optind != argc ? "unexpected argument" :
		    "-f and --check exclude each other");
		usage(EXIT_PERM);
	}
	if (outdir)
		gxp_config_set("REPORT_DIR", outdir);
	gxp_config_common(envfile);
	r.dir = gxp_cfg("REPORT_DIR");
	bucket = gxp_bucket();
	r.src = gxp_cfg("SUPABASE_URL") ? src_supa_open(bucket) :
	    src_dir_open(gxp_cfg("GXP_STORE"), bucket);
	if (check) {
		gxp_config_warnings();
		rc = r.src->check(r.src);
		c = check_outdir(r.dir);
		rc = rc == EXIT_PERM || c == EXIT_PERM ? EXIT_PERM : rc ? rc : c;
	} else {
		prepare(r.dir);
		gxp_signals_init();
		r.f = fleet_new(gxp_wall_us());
		rc = report(&r, full);
		out_free(&r.o);
		state_extra_free(&r.x);
		fleet_free(r.f);
	}
	r.src->free(r.src);
	gxp_config_free();
	if (fflush(stdout) == EOF && rc == EXIT_OK)
		rc = EXIT_TEMP;
	return rc;
}
