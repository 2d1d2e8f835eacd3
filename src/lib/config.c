/* config.c: settings come from flags, then the environment, then a .env
 * file, then the defaults in settings.c.  An empty value counts as unset. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.h"

struct kv {
	char *name, *value, *where;
	struct kv *next;
};
static struct kv *from_file, *from_flags;
static char *loaded_file;	/* the .env file read, for --check's warning */
extern char **environ;

const struct gxp_setting *
gxp_setting_find(const char *name)
{
	for (const struct gxp_setting *s = gxp_settings; s->name; s++)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

/* Edit distance, case-insensitive, counting a swap of two neighbours as
 * one edit (MQTT_TSL is one from MQTT_TLS). */
static size_t
distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), d[3][65], best;

	if (la > 64 || lb > 64)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t *row = d[i % 3], *up = d[(i - 1) % 3], *up2 = d[(i + 1) % 3];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			int same = toupper((unsigned char)a[i - 1]) == toupper((unsigned char)b[j - 1]);

			best = up[j - 1] + !same;
			if (up[j] + 1 < best)
				best = up[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			if (i > 1 && j > 1 && toupper((unsigned char)a[i - 1]) == toupper((unsigned char)b[j - 2]) &&
			    toupper((unsigned char)a[i - 2]) == toupper((unsigned char)b[j - 1]) &&
			    up2[j - 2] + 1 < best)
				best = up2[j - 2] + 1;
			row[j] = best;
		}
	}
	return d[la % 3][lb];
}

/* The known setting nearest to name, if it is within max edits. */
static const struct gxp_setting *
nearest(const char *name, size_t max)
{
	const struct gxp_setting *best = NULL;
	size_t bd = max + 1, d;

	for (const struct gxp_setting *s = gxp_settings; s->name; s++)
		if ((d = distance(name, s->name)) < bd)
			bd = d, best = s;
	return best;
}

/* "; did you mean MQTT_TLS?", or "" when nothing is near. */
static void
did_you_mean(char *buf, size_t cap, const char *name, size_t max)
{
	const struct gxp_setting *s = nearest(name, max);

	if (s == NULL)
		snprintf(buf, cap, " (gxp(7) lists the settings)");
	else if (strcasecmp(s->name, name) == 0)
		snprintf(buf, cap, "; did you mean %s? (names are upper case)", s->name);
	else
		snprintf(buf, cap, "; did you mean %s?", s->name);
}

/* A name in the environment that looks meant for gxp: one of its own
 * prefixes, or a known name give or take two edits or the case. */
static int
looks_like_ours(const char *name)
{
	static const char *const prefixes[] = { "MQTT_", "SUPABASE_", "TOPIC_PATTERN_", NULL };

	for (const char *const *p = prefixes; *p; p++)
		if (strncasecmp(name, *p, strlen(*p)) == 0)
			return 1;
	return nearest(name, 2) != NULL;
}

static int
retired(const char *name)
{
	for (const char *const *r = gxp_retired_settings; *r; r++)
		if (strcmp(*r, name) == 0)
			return 1;
	return 0;
}

/* Unknown names in the environment that look like misspelt settings are
 * warned about (the environment holds much else); their values are never
 * shown, a misspelt MQTT_PASWORD is still a secret. */
static void
environment_warnings(void)
{
	char name[128], hint[96];

	for (char **e = environ; e && *e; e++) {
		size_t n = strcspn(*e, "=");

		if (n == 0 || n >= sizeof name)
			continue;
		memcpy(name, *e, n);
		name[n] = '\0';
		if (gxp_setting_find(name) || retired(name) || !looks_like_ours(name))
			continue;
		did_you_mean(hint, sizeof hint, name, 2);
		gxp_log(LOG_WARN, "configuration: %s (environment) is not a gxp setting%s",
		    name, hint);
	}
}

static struct kv *
kv_find(struct kv *l, const char *name)
{
	for (; l; l = l->next)
		if (strcmp(l->name, name) == 0)
			return l;
	return NULL;
}

static void
kv_put(struct kv **l, const char *name, const char *value, const char *where)
{
	struct kv *e = kv_find(*l, name);

	if (e == NULL) {
		e = xcalloc(1, sizeof *e);
		e->name = xstrdup(name);
		e->next = *l;
		*l = e;
	} else {
		free(e->value);
		free(e->where);
	}
	e->value = xstrdup(value);
	e->where = xstrdup(where);
}

/* Parses one value of a .env line in place: 'single' is literal, "double"
 * knows \n \" \\, a bare value ends at " #" and is trimmed. */
static char *
env_value(char *v, int *bad)
{
	char q = *v, *w, *r;

	if (q == '\'' || q == '"') {
		for (r = w = v + 1; *r && *r != q; r++) {
			if (q == '"' && *r == '\\' && r[1]) {
				r++;
				*w++ = *r == 'n' ? '\n' : *r;
			} else
				*w++ = *r;
		}
		if (*r != q)
			*bad = 1;
		*w = '\0';
		return v + 1;
	}
	for (r = v; *r; r++)
		if (*r == '#' && r > v && isspace((unsigned char)r[-1]))
			break;
	*r = '\0';
	while (r > v && isspace((unsigned char)r[-1]))
		*--r = '\0';
	return v;
}

static int
env_line(char *line, const char *file, int lineno)
{
	char *eq, *name, *value, where[512];
	int bad = 0;

	while (isspace((unsigned char)*line))
		line++;
	if (*line == '\0' || *line == '#')
		return 0;
	if (strncmp(line, "export ", 7) == 0)
		line += 7;
	if ((eq = strchr(line, '=')) == NULL) {
		gxp_log(LOG_ERROR, "configuration: %s:%d: expected NAME=value", file, lineno);
		return -1;
	}
	*eq = '\0';
	name = line;
	for (char *e = eq; e > name && isspace((unsigned char)e[-1]); )
		*--e = '\0';
	for (value = eq + 1; *value == ' ' || *value == '\t'; value++)
		;
	value = env_value(value, &bad);
	snprintf(where, sizeof where, "%s line %d", file, lineno);
	if (bad) {
		gxp_log(LOG_ERROR, "configuration: %s:%d: %s: unterminated quote", file,
		    lineno, name);
		return -1;
	}
	if (retired(name)) {
		gxp_log(LOG_WARN, "configuration: %s (%s) is no longer used; remove it",
		    name, where);
		return 0;
	}
	if (gxp_setting_find(name) == NULL) {
		char hint[96];

		did_you_mean(hint, sizeof hint, name, 3);
		gxp_log(LOG_ERROR, "configuration: %s (%s) is not a gxp setting%s",
		    name, where, hint);
		return -1;
	}
	kv_put(&from_file, name, value, where);
	return 0;
}

int
gxp_config_load(const char *envfile, int must_exist)
{
	char *buf, *line, *next;
	size_t len;
	int lineno = 0, rc = 0;

	if (gxp_read_file(envfile, &buf, &len, 1 << 20) == -1) {
		if (errno == ENOENT && !must_exist)
			return 0;
		gxp_log(LOG_ERROR, "configuration: %s: %s", envfile, strerror(errno));
		return -1;
	}
	free(loaded_file);
	loaded_file = xstrdup(envfile);
	for (line = buf; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		if (env_line(line, envfile, lineno) == -1)
			rc = -1;
	}
	free(buf);
	return rc;
}

void
gxp_config_set(const char *name, const char *value)
{
	kv_put(&from_flags, name, value, "command line");
}

static const char *
lookup(const char *name, const char **where)
{
	const struct gxp_setting *s = gxp_setting_find(name);
	const char *v;
	struct kv *e;

	if (s == NULL)
		gxp_die(EXIT_PERM, "internal error: unknown setting %s", name);
	if ((e = kv_find(from_flags, name)) && *e->value) {
		*where = e->where;
		return e->value;
	}
	if ((v = getenv(name)) && *v) {
		*where = "environment";
		return v;
	}
	if ((e = kv_find(from_file, name)) && *e->value) {
		*where = e->where;
		return e->value;
	}
	*where = "default";
	return s->def;
}

const char *
gxp_cfg(const char *name)
{
	const char *where;

	return lookup(name, &where);
}

const char *
gxp_cfg_source(const char *name)
{
	const char *where;

	lookup(name, &where);
	return where;
}

long long
gxp_cfg_int(const char *name)
{
	const struct gxp_setting *s = gxp_setting_find(name);
	const char *where, *v = lookup(name, &where);
	char *end;
	long long n;

	if (v == NULL)
		return 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < s->min || n > s->max)
		gxp_die(EXIT_PERM, "%s=%s (%s): expected an integer from %lld to %lld",
		    name, s->secret ? "***" : v, where, s->min, s->max);
	return n;
}

int
gxp_cfg_bool(const char *name)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	const char *where, *v = lookup(name, &where);

	if (v == NULL)
		return 0;
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return 1;
		if (strcasecmp(v, no[i]) == 0)
			return 0;
	}
	gxp_die(EXIT_PERM, "%s=%s (%s): expected true or false", name, v, where);
}

static void
kv_free(struct kv **l)
{
	while (*l) {
		struct kv *e = *l;

		*l = e->next;
		free(e->name);
		free(e->value);
		free(e->where);
		free(e);
	}
}

void
gxp_config_free(void)
{
	kv_free(&from_file);
	kv_free(&from_flags);
	free(loaded_file);
	loaded_file = NULL;
}

static const char *
check_enum(const char *v, const char *const *allowed)
{
	for (; *allowed; allowed++)
		if (strcasecmp(v, *allowed) == 0)
			return NULL;
	return "not one of the values allowed";
}

static const char *
check_value(const struct gxp_setting *s, const char *v)
{
	static const char *const bools[] = { "1", "0", "true", "false", "yes", "no",
		"on", "off", NULL };
	static const char *const levels[] = { "DEBUG", "INFO", "WARN", "WARNING",
		"ERROR", "CRITICAL", "NONE", NULL };
	static const char *const logs[] = { "all", "no-chunks", "off", NULL };
	const char *n = s->name, *plus;
	char *end;
	int wake[2];

	if (s->min <= s->max) {
		static char range[96];
		long long x;

		errno = 0;
		x = strtoll(v, &end, 10);
		snprintf(range, sizeof range, "expected an integer from %lld to %lld",
		    s->min, s->max);
		return errno || end == v || *end || x < s->min || x > s->max ? range : NULL;
	}
	if (strcmp(n, "MQTT_TLS") == 0 || strcmp(n, "SCHEDULE_TEST_MODE") == 0)
		return check_enum(v, bools) ? "expected true or false" : NULL;
	if (strcmp(n, "SCHEDULE_TZ") == 0)
		return sched_zone_valid(v) == -1 ? "not a zone of the TZ database "
		    "(a name under /usr/share/zoneinfo, such as Europe/Berlin)" : NULL;
	if (strcmp(n, "SCHEDULE_WAKE_TIMES") == 0)
		return sched_wake_times(v, wake) == -1 ? "expected HH:MM or HH:MM,HH:MM" : NULL;
	if (strcmp(n, "LOG_LEVEL") == 0)
		return check_enum(v, levels) ? "expected DEBUG, INFO, WARN or ERROR" : NULL;
	if (strcmp(n, "PUBLISH_LOG") == 0)
		return check_enum(v, logs) ? "expected all, no-chunks or off" : NULL;
	if (strstr(n, "_URL"))
		return (strncmp(v, "https://", 8) && strncmp(v, "http://", 7)) ||
		    strpbrk(v, " \t\r\n") || strlen(strstr(v, "//") + 2) == 0 ||
		    strstr(v, "//")[2] == '/' ? "expected an http:// or https:// URL" : NULL;
	if (strstr(n, "_CAFILE"))
		return access(v, R_OK) == -1 ? strerror(errno) : NULL;
	if (strstr(n, "_CAPATH"))
		return access(v, R_OK | X_OK) == -1 ? strerror(errno) : NULL;
	if (strcmp(n, "MQTT_PRESENCE_TOPIC") == 0)
		return strpbrk(v, "+#") || *v == '/' || v[strlen(v) - 1] == '/' ?
		    "expected a topic name without wildcards, or off" : NULL;
	if (strncmp(n, "TOPIC_PATTERN_", 14) == 0)
		return (plus = strchr(v, '+')) == NULL || strchr(plus + 1, '+') ||
		    strchr(v, '#') || (plus > v && plus[-1] != '/') ||
		    (plus[1] != '/' && plus[1] != '\0') ?
		    "expected a topic with one + level for the device id" : NULL;
	return NULL;
}

static int
truthy(const char *v)
{
	static const char *const yes[] = { "1", "true", "yes", "on", NULL };

	return v && check_enum(v, yes) == NULL;
}

static int
problem(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	gxp_log(LOG_ERROR, "configuration: %s", msg);
	return 1;
}

/* Every setting checked without dying; each problem is logged with where
 * the value came from.  Returns the number of problems. */
int
gxp_config_problems(void)
{
	int n = 0;

	for (const struct gxp_setting *s = gxp_settings; s->name; s++) {
		const char *v = gxp_cfg(s->name), *why;

		if (v && (why = check_value(s, v)) != NULL)
			n += problem("%s=%s (%s): %s", s->name, s->secret ? "***" : v,
			    gxp_cfg_source(s->name), why);
	}
	if (gxp_cfg("MQTT_PASSWORD") && !gxp_cfg("MQTT_USERNAME"))
		n += problem("MQTT_PASSWORD is set but MQTT_USERNAME is not");
	if (gxp_cfg("MQTT_USERNAME") && !gxp_cfg("MQTT_PASSWORD"))
		n += problem("MQTT_USERNAME is set (%s) but MQTT_PASSWORD is missing",
		    gxp_cfg_source("MQTT_USERNAME"));
	for (const char *const *ca = (const char *const[]){ "MQTT_CAFILE", "MQTT_CAPATH", NULL };
	    *ca; ca++)
		if (gxp_cfg(*ca) && !truthy(gxp_cfg("MQTT_TLS")))
			n += problem("%s is set (%s) but MQTT_TLS is not: the login would "
			    "go in clear; set MQTT_TLS=true", *ca, gxp_cfg_source(*ca));
	if (gxp_cfg("SUPABASE_URL")) {
		struct gxp_apikey k;
		const char *why;

		gxp_apikey(&k);
		if (k.value == NULL)
			n += problem("SUPABASE_URL is set (%s) but SUPABASE_SECRET_KEY is "
			    "missing (or the legacy SUPABASE_SERVICE_ROLE)",
			    gxp_cfg_source("SUPABASE_URL"));
		else if ((why = gxp_apikey_refused(&k)) != NULL)
			n += problem("%s (%s) holds %s: %s", k.setting,
			    gxp_cfg_source(k.setting), gxp_apikey_kind(&k), why);
	}
	return n;
}

/* What every tool does first: read the .env file (FILE from --env must
 * exist; the default ./.env may not), check every setting, and apply
 * LOG_LEVEL.  A bad setting is a permanent failure. */
void
gxp_config_common(const char *envfile)
{
	if (gxp_config_load(envfile ? envfile : ".env", envfile != NULL) == -1)
		exit(EXIT_PERM);
	if (gxp_config_problems() > 0)
		exit(EXIT_PERM);
	environment_warnings();
	gxp_log_level_set(gxp_log_level_parse(gxp_cfg("LOG_LEVEL")));
}

/* The host of an http(s) URL is this machine: localhost, 127.0.0.0/8, ::1. */
static int
loopback_url(const char *url)
{
	const char *h = strstr(url, "://") + 3, *at = strchr(h, '@'), *end;
	size_t n;

	if (at && at < h + strcspn(h, "/"))
		h = at + 1;
	end = *h == '[' ? strchr(h, ']') : h + strcspn(h, ":/?#");
	n = end ? (size_t)(end - h) + (*h == '[') : strlen(h);
	return (n == 9 && strncasecmp(h, "localhost", 9) == 0) ||
	    strncmp(h, "127.", 4) == 0 || (n == 5 && strncmp(h, "[::1]", 5) == 0);
}

/* For --check: settings that work but weaken security, one line each on
 * stdout ("PROG: warning: ..."); returns how many. */
int
gxp_config_warnings(void)
{
	static const char *const urls[] = { "SUPABASE_URL", "SUPABASE_STORAGE_URL",
		"SUPABASE_REST_URL", NULL };
	struct stat st;
	int n = 0;

	for (const char *const *u = urls; *u; u++) {
		const char *v = gxp_cfg(*u);

		if (v && strncmp(v, "http://", 7) == 0 && !loopback_url(v) && ++n)
			printf("%s: warning: %s=%s (%s): plain http to another host: the "
			    "service key would cross the network in clear; use https://\n",
			    gxp_progname, *u, v, gxp_cfg_source(*u));
	}
	if (loaded_file && stat(loaded_file, &st) == 0 && (st.st_mode & S_IROTH) && ++n)
		printf("%s: warning: %s is readable by every user (mode %04o) and may "
		    "hold secrets; chmod 600 %s\n", gxp_progname, loaded_file,
		    (unsigned)(st.st_mode & 07777), loaded_file);
	fflush(stdout);
	return n;
}
