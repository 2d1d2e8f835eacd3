/* http.c: gxp-upload's HTTP engine.  Requests run side by side on one curl
 * multi handle, whose connection cache keeps connections alive between
 * them.  A timeout, a refused or broken connection, 408, 429 and 5xx are
 * retried after a capped exponential backoff with jitter, or after the
 * server's Retry-After when that is longer; anything else is final, and
 * so is a statement timeout when the caller can send less instead
 * (HTTP_FINAL_TIMEOUT).  Every request says User-Agent: gxp/VERSION.
 * Callbacks run only inside http_wait(). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "store.h"

#define RESPONSE_MAX (16 << 20)
#define RETRY_AFTER_MAX_MS 3600000

struct req {
	struct req *next;
	CURL *easy;
	char *method, *url, *body;
	size_t len;
	struct curl_slist *headers;
	struct gxp_buf resp;
	int64_t retry_after_ms, due;
	int attempts, flags;
	http_done_fn *fn;
	void *arg;
	char err[CURL_ERROR_SIZE];
};

struct http {
	CURLM *multi;
	struct http_opts o;
	struct req *running;	/* in the multi handle */
	struct req *waiting;	/* backing off until their due time */
	int max_attempts, active, nwaiting;
	unsigned long long requests, retries, bytes_sent;
	int64_t failing_since;	/* the first failure since the last answer */
	char failure[128];	/* the last of them */
	uint64_t rng;
};

static int curl_users;

struct http *
http_new(const struct http_opts *o)
{
	struct http *h = xcalloc(1, sizeof *h);
	long conns = o->max_conns;

	if (curl_users++ == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		gxp_die(EXIT_TEMP, "cannot initialise libcurl");
	if ((h->multi = curl_multi_init()) == NULL)
		gxp_die(EXIT_TEMP, "cannot create a curl multi handle");
	h->o = *o;
	h->rng = (uint64_t)gxp_wall_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
	curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, conns);
	return h;
}

void
http_attempts(struct http *h, int max)
{
	h->max_attempts = max;
}

static uint64_t
rnd(struct http *h)
{
	/* xorshift64: jitter only, no need for a good generator */
	h->rng ^= h->rng << 13;
	h->rng ^= h->rng >> 7;
	h->rng ^= h->rng << 17;
	return h->rng;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct req *r = arg;

	if (r->resp.len + size * n > RESPONSE_MAX)
		return 0;
	gxp_buf_add(&r->resp, p, size * n);
	return size * n;
}

/* Retry-After: delay-seconds or an HTTP-date. */
static int64_t
retry_after(const char *v)
{
	char *end;
	long long s = strtoll(v, &end, 10);
	time_t t;

	while (isspace((unsigned char)*end))
		end++;
	if (end != v && *end == '\0' && s >= 0)
		return s * 1000 < RETRY_AFTER_MAX_MS ? s * 1000 : RETRY_AFTER_MAX_MS;
	if ((t = curl_getdate(v, NULL)) == -1)
		return 0;
	s = ((long long)t - (long long)time(NULL)) * 1000;
	return s < 0 ? 0 : s < RETRY_AFTER_MAX_MS ? s : RETRY_AFTER_MAX_MS;
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct req *r = arg;
	size_t len = size * n;
	char v[128];

	if (len > 12 && len < 12 + sizeof v && strncasecmp(p, "retry-after:", 12) == 0) {
		memcpy(v, p + 12, len - 12);
		v[len - 12] = '\0';
		v[strcspn(v, "\r\n")] = '\0';
		r->retry_after_ms = retry_after(v + strspn(v, " \t"));
	}
	return len;
}

static void
start(struct http *h, struct req *r)
{
	CURL *e = curl_easy_init();

	if (e == NULL)
		gxp_die(EXIT_TEMP, "cannot create a curl handle");
	r->easy = e;
	r->resp.len = 0;
	r->retry_after_ms = 0;
	r->err[0] = '\0';
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "gxp/" GXP_VERSION);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->o.timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    h->o.timeout_ms < 10000 ? h->o.timeout_ms : 10000L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->o.cafile)
		curl_easy_setopt(e, CURLOPT_CAINFO, h->o.cafile);
	if (r->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
	}
	if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "POST") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	r->next = h->running;
	h->running = r;
	r->attempts++;
	h->requests++;
	h->bytes_sent += r->len;
	h->active++;
	curl_multi_add_handle(h->multi, e);
}

/* headers and body become the engine's; the body must come from malloc. */
void
http_send(struct http *h, const char *method, const char *url,
    struct curl_slist *headers, char *body, size_t len, int flags,
    http_done_fn *fn, void *arg)
{
	struct req *r = xcalloc(1, sizeof *r);

	r->flags = flags;
	r->method = xstrdup(method);
	r->url = xstrdup(url);
	/* no "Expect: 100-continue" round trip before a body */
	r->headers = curl_slist_append(headers, "Expect:");
	r->body = body;
	r->len = len;
	r->fn = fn;
	r->arg = arg;
	start(h, r);
}

/* Storage servers up to v1.11 answer errors with HTTP 400 and the real code
 * in the body: {"statusCode":"409","error":"Duplicate",...}. */
static int
effective_status(long http_status, const char *body, size_t len)
{
	cJSON *j;
	const cJSON *v;
	int st = (int)http_status;

	if (http_status != 400 || len == 0 || (j = gxp_json_parse(body, len)) == NULL)
		return st;
	v = cJSON_GetObjectItemCaseSensitive(j, "statusCode");
	if (cJSON_IsString(v) && strlen(v->valuestring) == 3 &&
	    strspn(v->valuestring, "0123456789") == 3)
		st = atoi(v->valuestring);
	else if (cJSON_IsNumber(v) && v->valuedouble >= 100 && v->valuedouble < 600)
		st = (int)v->valuedouble;
	cJSON_Delete(j);
	return st;
}

int
http_retryable(const struct http_res *r)
{
	switch (r->curl_code) {
	case CURLE_OK:
		return r->status == 408 || r->status == 429 || r->status >= 500;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

/* A 500 from PostgREST that trying again cannot mend: 55000, a table's
 * state (e.g. a deferrable key as ON CONFLICT's arbiter), and, when the
 * caller splits its batch instead (HTTP_FINAL_TIMEOUT), 57014, a statement
 * cancelled by statement_timeout. */
static int
final_db_error(const struct req *r, const struct http_res *res)
{
	const char *code;
	cJSON *j;
	int rc;

	if (res->status != 500 || res->len == 0 ||
	    (j = gxp_json_parse(res->body, res->len)) == NULL)
		return 0;
	code = gxp_json_str(j, "code");
	rc = code && (strcmp(code, "55000") == 0 ||
	    ((r->flags & HTTP_FINAL_TIMEOUT) && strcmp(code, "57014") == 0));
	cJSON_Delete(j);
	return rc;
}

static int64_t
backoff(struct http *h, const struct req *r)
{
	int64_t d = h->o.retry_base_ms;

	for (int i = 1; i < r->attempts && d < h->o.retry_max_ms; i++)
		d *= 2;
	if (d > h->o.retry_max_ms)
		d = h->o.retry_max_ms;
	/* between half and all of it, so many clients do not retry in step */
	d = d / 2 + (int64_t)(rnd(h) % (uint64_t)(d / 2 + 1));
	return r->retry_after_ms > d ? r->retry_after_ms : d;
}

static void
req_free(struct req *r)
{
	free(r->method);
	free(r->url);
	free(r->body);
	curl_slist_free_all(r->headers);
	gxp_buf_free(&r->resp);
	free(r);
}

/* The server is failing from the first retryable failure (no answer, or
 * 408, 429, 5xx) until a request gets any other answer. */
static void
note_health(struct http *h, const struct http_res *res)
{
	if (!http_retryable(res)) {
		h->failing_since = 0;
		return;
	}
	if (h->failing_since == 0)
		h->failing_since = gxp_mono_ms();
	if (res->curl_code)
		snprintf(h->failure, sizeof h->failure, "%s", res->err);
	else
		snprintf(h->failure, sizeof h->failure, "HTTP %d", res->status);
}

static void
finish(struct http *h, struct req *r, CURLcode code)
{
	struct http_res res = { 0 };
	struct req **pp = &h->running;
	long st = 0;

	while (*pp != r)
		pp = &(*pp)->next;
	*pp = r->next;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &st);
	curl_multi_remove_handle(h->multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
	h->active--;
	res.curl_code = (int)code;
	res.http_status = code == CURLE_OK ? st : 0;
	res.body = r->resp.p ? r->resp.p : "";
	res.len = r->resp.len;
	res.status = code == CURLE_OK ? effective_status(st, res.body, res.len) : 0;
	res.err = r->err[0] ? r->err : curl_easy_strerror(code);
	note_health(h, &res);
	if (http_retryable(&res) && !final_db_error(r, &res)) {
		if (h->max_attempts == 0 || r->attempts < h->max_attempts) {
			int64_t d = backoff(h, r);

			gxp_log(LOG_DEBUG, "%s %s: %s; retry %d in %lld ms", r->method,
			    r->url, code ? res.err : "server error", r->attempts,
			    (long long)d);
			r->due = gxp_mono_ms() + d;
			r->next = h->waiting;
			h->waiting = r;
			h->nwaiting++;
			h->retries++;
			return;
		}
		res.gave_up = 1;
	}
	r->fn(r->arg, &res);
	req_free(r);
}

static int64_t
restart_due(struct http *h)
{
	int64_t now = gxp_mono_ms(), next = -1;
	struct req **pp = &h->waiting;

	while (*pp) {
		struct req *r = *pp;

		if (r->due <= now) {
			*pp = r->next;
			h->nwaiting--;
			start(h, r);
			continue;
		}
		if (next == -1 || r->due - now < next)
			next = r->due - now;
		pp = &r->next;
	}
	return next;
}

/* Runs the transfers for up to timeout_ms, also waking when one of fds
 * is ready; their revents then say which. */
int
http_poll(struct http *h, int timeout_ms, struct pollfd *fds, int nfds)
{
	struct curl_waitfd w[8];
	int64_t next = restart_due(h);
	int running, left;
	CURLMsg *m;

	if (nfds > (int)(sizeof w / sizeof w[0]))
		gxp_die(EXIT_TEMP, "internal error: http_poll: %d descriptors", nfds);
	for (int i = 0; i < nfds; i++) {
		w[i].fd = fds[i].fd;
		w[i].events = (fds[i].events & POLLIN ? CURL_WAIT_POLLIN : 0) |
		    (fds[i].events & POLLOUT ? CURL_WAIT_POLLOUT : 0);
		w[i].revents = 0;
	}
	if (next >= 0 && next < timeout_ms)
		timeout_ms = (int)next;
	if (curl_multi_poll(h->multi, nfds ? w : NULL, (unsigned)nfds, timeout_ms,
	    NULL) != CURLM_OK)
		gxp_die(EXIT_TEMP, "curl_multi_poll failed");
	for (int i = 0; i < nfds; i++)
		fds[i].revents = (short)((w[i].revents & CURL_WAIT_POLLIN ? POLLIN : 0) |
		    (w[i].revents & CURL_WAIT_POLLOUT ? POLLOUT : 0) |
		    (w[i].revents & CURL_WAIT_POLLPRI ? POLLPRI : 0));
	curl_multi_perform(h->multi, &running);
	while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
		struct req *r;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		finish(h, r, m->data.result);
	}
	restart_due(h);
	return 0;
}

int
http_wait(struct http *h, int timeout_ms, int fd, short *revents)
{
	struct pollfd p = { fd, POLLIN, 0 };
	int rc = http_poll(h, timeout_ms, &p, fd >= 0 ? 1 : 0);

	if (revents)
		*revents = p.revents;
	return rc;
}

void
http_stats(const struct http *h, struct http_stats *s)
{
	s->requests = h->requests;
	s->retries = h->retries;
	s->bytes_sent = h->bytes_sent;
	s->active = h->active;
	s->waiting = h->nwaiting;
	s->failing_ms = h->failing_since ? gxp_mono_ms() - h->failing_since : 0;
	s->unreachable = h->failing_since && strncmp(h->failure, "HTTP ", 5) != 0;
	snprintf(s->failure, sizeof s->failure, "%s", h->failing_since ? h->failure : "");
}

static void
cancel(struct req *r)
{
	struct http_res res = { 0 };

	res.cancelled = 1;
	res.body = res.err = "";
	r->fn(r->arg, &res);
	req_free(r);
}

/* Requests still running or waiting are cancelled: their callbacks are
 * told so, and must only release what they hold. */
void
http_free(struct http *h)
{
	if (h == NULL)
		return;
	while (h->running) {
		struct req *r = h->running;

		h->running = r->next;
		curl_multi_remove_handle(h->multi, r->easy);
		curl_easy_cleanup(r->easy);
		cancel(r);
	}
	while (h->waiting) {
		struct req *r = h->waiting;

		h->waiting = r->next;
		cancel(r);
	}
	curl_multi_cleanup(h->multi);
	free(h);
	if (--curl_users == 0)
		curl_global_cleanup();
}
