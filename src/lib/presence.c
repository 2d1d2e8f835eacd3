/* presence.c: a retained record, one per client id in use, that tells a
 * client (and --check) when another process holds the same id.  Two
 * clients with one id take the session from each other at every
 * reconnect; not every broker says so (mosquitto before 2.0.15 just closes
 * the old connection), so each client publishes who it is, retained, at
 * MQTT_PRESENCE_TOPIC/<id>, and reads that topic back.  A Last Will clears
 * the record when a client dies; a client that ends cleanly clears it. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gxp.h"

struct gxp_presence {
	char *topic, *id;
	char host[256], spool[PATH_MAX], token[17];
	int mine;	/* the last record seen on the topic was ours */
};

/* The spool as an absolute path: two workers on one host differ by it. */
static void
spool_path(char out[PATH_MAX])
{
	const char *s = gxp_cfg("GXP_SPOOL");
	char cwd[PATH_MAX];

	if (realpath(s, out) != NULL)
		return;
	if (s[0] == '/' || getcwd(cwd, sizeof cwd) == NULL)
		snprintf(out, PATH_MAX, "%s", s);
	else
		snprintf(out, PATH_MAX, "%.2000s/%.2000s", cwd, s);
}

/* The record at topic, or else at MQTT_PRESENCE_TOPIC/<client id>; NULL
 * when that is off.  A worker of a cluster keeps its record at the
 * cluster's topic instead (GXP_CLUSTER_TOPIC/<worker id>): a connection
 * has one Last Will, and that record says the same and more. */
struct gxp_presence *
gxp_presence_new(const char *client_id, const char *topic)
{
	const char *base = gxp_cfg("MQTT_PRESENCE_TOPIC");
	struct gxp_presence *p;

	if (topic == NULL && (base == NULL || strcmp(base, "off") == 0))
		return NULL;
	p = xcalloc(1, sizeof *p);
	p->id = xstrdup(client_id);
	p->topic = topic ? xstrdup(topic) : xasprintf("%s/%s", base, client_id);
	if (gethostname(p->host, sizeof p->host - 1) == -1)
		strcpy(p->host, "?");
	spool_path(p->spool);
	snprintf(p->token, sizeof p->token, "%08x%08x", (unsigned)rand(),
	    (unsigned)(getpid() ^ gxp_wall_us()));
	return p;
}

const char *
gxp_presence_topic(const struct gxp_presence *p)
{
	return p->topic;
}

/* This process's record, to publish retained (free it). */
char *
gxp_presence_record(struct gxp_presence *p)
{
	cJSON *o = cJSON_CreateObject();
	char since[32], *s;

	gxp_fmt_utc(since, gxp_wall_us());
	cJSON_AddStringToObject(o, "client_id", p->id);
	cJSON_AddStringToObject(o, "tool", gxp_progname);
	cJSON_AddStringToObject(o, "host", p->host);
	cJSON_AddNumberToObject(o, "pid", (double)getpid());
	cJSON_AddStringToObject(o, "spool", p->spool);
	cJSON_AddStringToObject(o, "since", since);
	cJSON_AddStringToObject(o, "token", p->token);
	s = gxp_json_print(o);
	cJSON_Delete(o);
	return s;
}

static int
pid_gone(double pid)
{
	return pid >= 1 && pid <= INT_MAX && kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

/* A record read on the topic: GXP_PRESENCE_NONE (empty: nobody), _MINE,
 * _STALE (from a process of this host that is gone), _HERE (a live process
 * of this host on the same spool: the worker this one belongs to) or
 * _OTHER (someone else); who gets "gxp-sub pid 12 on host h, spool /s,
 * since T" for the last three. */
int
gxp_presence_judge(struct gxp_presence *p, const void *payload, int len,
    char *who, size_t cap)
{
	cJSON *o;
	const char *tool, *host, *spool, *since, *token;
	double pid = 0;
	int kind;

	if (len <= 0)
		return GXP_PRESENCE_NONE;
	if ((o = gxp_json_parse(payload, (size_t)len)) == NULL) {
		snprintf(who, cap, "a client that left an unreadable record");
		p->mine = 0;
		return GXP_PRESENCE_OTHER;
	}
	tool = gxp_json_str(o, "tool");
	host = gxp_json_str(o, "host");
	spool = gxp_json_str(o, "spool");
	since = gxp_json_str(o, "since");
	token = gxp_json_str(o, "token");
	gxp_json_num(o, "pid", &pid);
	snprintf(who, cap, "%s pid %.0f on host %s, spool %s, since %s", tool ? tool : "?",
	    pid, host ? host : "?", spool ? spool : "?", since ? since : "?");
	if (token && strcmp(token, p->token) == 0)
		kind = GXP_PRESENCE_MINE;
	else if (host && strcmp(host, p->host) == 0 && pid_gone(pid))
		kind = GXP_PRESENCE_STALE;
	else if (host && strcmp(host, p->host) == 0 && spool && strcmp(spool, p->spool) == 0)
		kind = GXP_PRESENCE_HERE;
	else
		kind = GXP_PRESENCE_OTHER;
	p->mine = kind == GXP_PRESENCE_MINE;
	cJSON_Delete(o);
	return kind;
}

int
gxp_presence_mine(const struct gxp_presence *p)
{
	return p->mine;
}

void
gxp_presence_free(struct gxp_presence *p)
{
	if (p == NULL)
		return;
	free(p->topic);
	free(p->id);
	free(p);
}
