/* sequence.c: the fuzz harness for gxp-assemble fed message sequences.
 *
 * The input is read as a program.  Its first bytes choose the settings;
 * then each operation is one of: three devices send metadata or chunks of
 * the photo they hold under one of four names (whole photos too: in order,
 * reversed, shuffled, with chunks lost and repeated; damaged fields, bad
 * base64, wrong sizes and counts; in the envelopes of gxp-sub and of
 * mosquitto_sub -F %J and -F %j), a device takes a new photo under a name
 * it used before, status and foreign lines arrive, time passes, the output
 * is committed, the tool exits and starts again, or is killed (before a
 * commit, in the middle of one, or leaving a torn segment in partial/),
 * and an uploader claims, stores or puts back photos in ready/.
 *
 * As the tool writes each line the invariants are checked: every line is
 * an event of gxp(7) or a line that came in; a photo_complete names a
 * ready/ entry that exists at that moment, whose photo has the size
 * and SHA-256 the event gives and is made, chunk by chunk, of bytes the
 * device sent for that chunk_id, after an image_size it announced; a
 * photo is completed once; a capture_failed entry exists with its
 * reason.json; ACK_OK only for a photo stored/ knows; NACKs list missing
 * ids in order.  After every run the spool holds only what gxp-spool(5)
 * allows and nothing is written outside it; after a clean end every
 * ready/ and failed/ entry was announced and is unchanged. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../src/lib/gxp.h"
#include "driver.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NDEV 3
#define NNAME 4
#define MAXID 64		/* the largest MAX_CHUNKS a run has */
#define MAXOPS 3000
#define T0 1767225600000000LL	/* 2026-01-01T00:00:00Z */

static const char *const devs[NDEV] = { "AABBCCDDEEFF", "CAM2", "d_3" };
static const char *const names[NNAME] = { "image_123.jpg", "b.jpg", "x",
	"image_123-1a2b3c4d.jpg" };

/* ---- the program ---- */

static const uint8_t *ip, *iend;

static unsigned
byte(void)
{
	return ip < iend ? *ip++ : 0;
}

static unsigned
pick(unsigned n)
{
	return byte() % n;
}

/* ---- what the devices hold and what they sent ---- */

struct plan {
	unsigned char *img;
	size_t size;
	uint32_t chunk, total;
	int timekind;		/* capture_timeStamp, timestamp s, ms, none, garbage */
	long long at;		/* capture time, Unix seconds */
};

struct blob {
	unsigned char *p;
	size_t n;
};

struct sent {
	struct blob *v;
	size_t n;
};

static struct plan plans[NDEV][NNAME];
static struct sent sent[NDEV][NNAME][MAXID];
static struct {
	long long *v;
	size_t n;
} sizes[NDEV][NNAME];

static uint64_t rng;

static unsigned
rand8(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng >> 24) & 0xff;
}

static void
plan_new(struct plan *p)
{
	static const size_t fixed[] = { 1, 3, 4, 5, 64, 100, 1000, 1024, 2047, 4096, 8192 };
	static const uint32_t chunks[] = { 1, 2, 3, 7, 16, 64, 100, 128, 256, 512 };
	unsigned shape = byte(), hi;

	free(p->img);
	if (shape & 1)
		p->size = fixed[pick(11)];
	else {
		hi = byte();
		p->size = 1 + (hi * (byte() + 1)) / 8;
	}
	p->chunk = shape & 2 ? chunks[pick(10)] : byte() + 1;
	if ((p->size + p->chunk - 1) / p->chunk > MAXID)
		p->chunk = (uint32_t)((p->size + MAXID - 1) / MAXID);
	p->total = (uint32_t)((p->size + p->chunk - 1) / p->chunk);
	p->img = xmalloc(p->size);
	rng = 0x9e3779b97f4a7c15ULL ^ (byte() + 1);
	for (size_t i = 0; i < p->size; i++)
		p->img[i] = (unsigned char)rand8();
	if (!(shape & 4) && p->size >= 4) {	/* mostly a JPEG */
		p->img[0] = 0xff;
		p->img[1] = 0xd8;
		p->img[p->size - 2] = 0xff;
		p->img[p->size - 1] = 0xd9;
	}
	p->timekind = (int)(shape >> 3) % 5;
	p->at = 1759581296 + byte();
}

static void
remember(int d, int nm, long long id, const unsigned char *p, size_t n)
{
	struct sent *s;

	if (id < 0 || id >= MAXID || n == 0)
		return;
	s = &sent[d][nm][id];
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].n == n && memcmp(s->v[i].p, p, n) == 0)
			return;
	s->v = xrealloc(s->v, (s->n + 1) * sizeof *s->v);
	s->v[s->n].p = xmalloc(n);
	memcpy(s->v[s->n].p, p, n);
	s->v[s->n++].n = n;
}

static void
remember_size(int d, int nm, long long size)
{
	sizes[d][nm].v = xrealloc(sizes[d][nm].v, (sizes[d][nm].n + 1) * sizeof(long long));
	sizes[d][nm].v[sizes[d][nm].n++] = size;
}

/* ---- the lines that went in (hashed), for what passes through ---- */

#define SEEN (1 << 14)
static uint64_t seen[SEEN];
static size_t nseen;

static uint64_t
hash(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037ULL;

	while (n--)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h | 1;
}

static int
seen_has(const char *s, size_t n)
{
	uint64_t h = hash(s, n);

	for (size_t i = h & (SEEN - 1); seen[i]; i = (i + 1) & (SEEN - 1))
		if (seen[i] == h)
			return 1;
	return 0;
}

static void
seen_add(const char *s, size_t n)
{
	uint64_t h = hash(s, n);
	size_t i;

	if (nseen >= SEEN / 2 || seen_has(s, n))
		return;
	for (i = h & (SEEN - 1); seen[i]; i = (i + 1) & (SEEN - 1))
		;
	seen[i] = h;
	nseen++;
}

/* ---- sending a line ---- */

static int64_t now_us;
static long long lineno;
static struct gxp_buf msg, line;
static FILE *dump;		/* FUZZ_DUMP: the lines and operations, to replay by hand */

static void
note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
note(const char *fmt, ...)
{
	va_list ap;

	if (dump == NULL)
		return;
	fputs("# ", dump);
	va_start(ap, fmt);
	vfprintf(dump, fmt, ap);
	va_end(ap);
	fputc('\n', dump);
}

/* JSON text with white space after each { and , outside strings, as a
 * device's pretty printer would write it. */
static void
add_pretty(struct gxp_buf *b, const char *s, size_t n)
{
	int in = 0;

	for (size_t i = 0; i < n; i++) {
		gxp_buf_add(b, s + i, 1);
		if (in && s[i] == '\\' && i + 1 < n)
			gxp_buf_add(b, s + ++i, 1);
		else if (s[i] == '"')
			in = !in;
		else if (!in && (s[i] == '{' || s[i] == ','))
			gxp_buf_adds(b, "\n  ");
	}
}

static void
feed(void)
{
	if (dump)
		fprintf(dump, "%s\n", line.p);
	seen_add(line.p, line.len);
	fz_line(line.p, line.len, ++lineno, 0);
}

/* An envelope: gxp-sub, mosquitto_sub -F %J (UTC with "Z+0000"), -F %j
 * (local time, the payload a string) or -F %j of a pretty payload. */
static void
send(const char *topic, const char *payload, size_t plen, unsigned fmt)
{
	char ts[32];
	struct gxp_buf pretty = { 0 };

	line.len = 0;
	gxp_fmt_utc(ts, fmt >= 2 ? now_us + 19800000000LL : now_us);
	gxp_buf_addf(&line, "{\"tst\":\"%s%s\",\"topic\":", ts,
	    fmt == 0 ? "" : fmt == 1 ? "+0000" : "+0530");
	gxp_buf_add_jstr(&line, topic, strlen(topic));
	gxp_buf_addf(&line, ",\"qos\":%d,\"retain\":0,\"payloadlen\":%zu,", fmt ? 0 : 1, plen);
	if (fmt == 0)
		gxp_buf_addf(&line, "\"mid\":%lld,", lineno + 1);
	gxp_buf_adds(&line, "\"payload\":");
	if (fmt < 2)
		gxp_buf_add(&line, payload, plen);
	else if (fmt == 2)
		gxp_buf_add_jstr(&line, payload, plen);
	else {
		add_pretty(&pretty, payload, plen);
		gxp_buf_add_jstr(&line, pretty.p, pretty.len);
		gxp_buf_free(&pretty);
	}
	gxp_buf_adds(&line, "}");
	feed();
}

static void
send_data(int d, unsigned fmt)
{
	char *topic = xasprintf("ESP32CAM/%s/data", devs[d]);

	send(topic, msg.p, msg.len, fmt % 4);
	free(topic);
}

/* ---- metadata ---- */

static void
add_time(const struct plan *p)
{
	char ts[32];

	switch (p->timekind) {
	case 0:
		gxp_fmt_utc(ts, p->at * 1000000);
		ts[19] = 'Z';	/* the seed's firmware: whole seconds */
		ts[20] = '\0';
		gxp_buf_addf(&msg, "\"capture_timeStamp\":\"%s\",", ts);
		break;
	case 1:
		gxp_buf_addf(&msg, "\"timestamp\":%lld,", p->at);
		break;
	case 2:
		gxp_buf_addf(&msg, "\"timestamp\":%lld123,", p->at);
		break;
	case 4:
		gxp_buf_adds(&msg, "\"capture_timeStamp\":\"not yet\",");
	}
}

static void
meta_payload(int d, int nm, unsigned v)
{
	const struct plan *p = &plans[d][nm];
	long long size = (long long)p->size, total = p->total;

	size += (v & 3) == 2 ? 1 : (v & 3) == 3 ? -1 : 0;
	total += (v >> 2 & 3) == 2 ? 1 : (v >> 2 & 3) == 3 ? -1 : 0;
	msg.len = 0;
	gxp_buf_addf(&msg, "{\"device_id\":\"%s\",", devs[d]);
	add_time(p);
	gxp_buf_addf(&msg, "\"image_name\":\"%s\",\"image_size\":%lld,", names[nm], size);
	if ((v & 0x90) != 0x90)	/* else no chunk size at all */
		gxp_buf_addf(&msg, "\"%s\":%u,", v & 16 ? "max_chunk_size" : "max_chunks_size",
		    p->chunk);
	gxp_buf_addf(&msg, "\"total_chunk_count\":%lld,\"location\":\"office_404\",", total);
	switch (v >> 5) {
	case 5:
		gxp_buf_adds(&msg, "\"error\":true,");
		break;
	case 6:
		gxp_buf_adds(&msg, "\"error\":\"sd card\",");
		break;
	case 7:
		gxp_buf_adds(&msg, "\"error\":1,");
		break;
	default:
		gxp_buf_adds(&msg, "\"error\":0,");
	}
	if (v & 32)
		gxp_buf_adds(&msg, "\"sensor_data\":{\"temperature\":23.5,\"humidity\":45.2,"
		    "\"pressure\":1013.25,\"gas_resistance\":12345.67}}");
	else
		gxp_buf_adds(&msg, "\"temperature\":23.5,\"humidity\":45.2,"
		    "\"pressure\":1013.25,\"gas_resistance\":12345.67}");
	remember_size(d, nm, size);
}

static void
op_meta(void)
{
	int d = (int)pick(NDEV), nm = (int)pick(NNAME);
	unsigned v = byte(), fmt = byte();

	meta_payload(d, nm, v);
	send_data(d, fmt);
}

/* ---- chunks ---- */

/* The base64 of bytes, with every '/' escaped as JSON allows when esc. */
static void
add_b64(const unsigned char *p, size_t n, int esc)
{
	char *b = xmalloc(gxp_b64_encoded_len(n) + 1);
	size_t len = gxp_b64_encode(p, n, b);

	for (size_t i = 0; i < len; i++)
		gxp_buf_adds(&msg, esc && b[i] == '/' ? "\\/" : (char[2]){ b[i], 0 });
	free(b);
}

static void
chunk_payload(int d, int nm, long long id, unsigned v)
{
	const struct plan *p = &plans[d][nm];
	unsigned char junk[520];
	const unsigned char *bytes = junk;
	size_t n;

	if (id >= 0 && id < p->total && v % 16 < 10) {
		bytes = p->img + (size_t)id * p->chunk;
		n = p->size - (size_t)id * p->chunk < p->chunk ? p->size - (size_t)id * p->chunk :
		    p->chunk;
	} else {
		/* another chunk: a few bytes, or (10) up to 513 */
		n = v % 16 == 10 ? 1 + 2 * byte() + v / 16 % 2 : 1 + v / 16 % 4;
		rng = 0x2545f4914f6cdd1dULL ^ (byte() + 1);
		for (size_t i = 0; i < n; i++)
			junk[i] = (unsigned char)rand8();
	}
	msg.len = 0;
	gxp_buf_addf(&msg, "{\"device_id\":\"%s\",\"image_name\":\"%s\",", devs[d], names[nm]);
	switch (v % 16) {
	case 13:
		gxp_buf_addf(&msg, (const char *[]){ "\"chunk_id\":\"%lld\",", "\"chunk_id\":-%lld,",
		    "\"chunk_id\":%lld.0,", "\"chunk_id\":%lld.5," }[v / 16 % 4], id);
		break;
	default:
		gxp_buf_addf(&msg, "\"chunk_id\":%lld,", id);
	}
	if (v % 16 == 15)
		gxp_buf_addf(&msg, "\"max_chunk_size\":%zu,", v & 16 ? n - 1 : 0);
	else if (!(v & 32))
		gxp_buf_addf(&msg, "\"max_chunk_size\":%u,", p->chunk);
	switch (v % 16) {
	case 11:
		gxp_buf_adds(&msg, "\"payload\":\"@@@=\"}");
		return;
	case 12:
		gxp_buf_adds(&msg, (const char *[]){ "\"payload\":null}", "\"payload\":\"\"}",
		    "\"payload\":12}", "\"x\":0}" }[v / 16 % 4]);
		return;
	}
	gxp_buf_adds(&msg, "\"payload\":\"");
	add_b64(bytes, n, v % 16 == 14);
	gxp_buf_adds(&msg, "\"}");
	/* "1.0" is chunk 1, and "-0" chunk 0; "1", -1 and 1.5 are refused */
	remember(d, nm, v % 16 != 13 || v / 16 % 4 == 2 || (v / 16 % 4 == 1 && id == 0) ?
	    id : -1, bytes, n);
}

static void
op_chunk(void)
{
	int d = (int)pick(NDEV), nm = (int)pick(NNAME);
	long long id = pick(plans[d][nm].total + 2);
	unsigned v = byte(), fmt = byte();

	chunk_payload(d, nm, id, v);
	send_data(d, fmt);
}

/* Metadata and chunks: in order, reversed, shuffled, or with some lost
 * and some twice; the metadata first or after some of the chunks. */
static void
op_photo(void)
{
	int d = (int)pick(NDEV), nm = (int)pick(NNAME);
	const struct plan *p = &plans[d][nm];
	unsigned mode = byte(), fmt = byte(), metaat = mode & 4 ? pick(p->total + 1) : 0;
	uint32_t order[MAXID];

	for (uint32_t i = 0; i < p->total; i++)
		order[i] = mode % 4 == 1 ? p->total - 1 - i : i;
	for (uint32_t i = 0; mode % 4 == 2 && i + 1 < p->total; i++) {
		uint32_t j = i + pick(p->total - i), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (uint32_t i = 0; i <= p->total; i++) {
		if (i == metaat) {
			meta_payload(d, nm, mode & 8 ? byte() & ~32u : 0);
			send_data(d, fmt);
		}
		if (i == p->total)
			break;
		if (mode % 4 == 3 && byte() < 24)
			continue;
		now_us += mode & 16 ? 1000 : 0;
		chunk_payload(d, nm, order[i], 0);
		send_data(d, fmt);
		if (mode % 4 == 3 && byte() > 232)
			send_data(d, fmt);
	}
}

/* A device takes a new photo under a name it used before. */
static void
op_plan(void)
{
	int d = (int)pick(NDEV), nm = (int)pick(NNAME);

	plan_new(&plans[d][nm]);
}

/* ---- the rest of the traffic ---- */

static void
op_status(void)
{
	static const char *const payloads[] = {
		"{\"device_id\":\"%s\",\"status\":\"Alive\",\"pendingImg\":3}",
		"{\"status\":\"Sleeping\",\"pending_list\":[\"a.jpg\",\"b.jpg\"],\"id\":\"%s\"}",
		"{\"status\":7,\"pending_count\":1.5,\"d\":\"%s\"}",
		"[\"%s\"]",
	};
	int d = (int)pick(NDEV);
	unsigned v = byte();
	char *topic = xasprintf("ESP32CAM/%s/status", devs[d]);

	msg.len = 0;
	gxp_buf_addf(&msg, payloads[v % 4], devs[d]);
	send(topic, msg.p, msg.len, v / 4 % 4);
	free(topic);
}

static void
op_other(void)
{
	static const char *const lines[] = {
		"{\"tst\":\"2026-01-01T00:00:00Z\",\"topic\":\"home/kitchen/temp\",\"payload\":21.5}",
		"{\"event\":\"stored\",\"v\":1,\"device\":\"CAM2\",\"image_name\":\"b.jpg\"}",
		"not json at all",
		"",
		"{\"tst\":\"2026-01-01T00:00:00Z\",\"topic\":\"ESP32CAM/CAM2/ack\",\"payload\":"
		    "{\"image_name\":\"b.jpg\",\"ACK_OK\":{}}}",
		"{\"tst\":\"2026-01-01T00:00:00Z\",\"topic\":\"ESP32CAM/CAM2/data\","
		    "\"payload_encoding\":\"base64\",\"payload\":\"/9j/\"}",
		"{\"tst\":\"2026-01-01T00:00:00Z\",\"topic\":\"ESP32CAM/bad.id/data\",\"payload\":{}}",
		"{\"tst\":\"2026-01-01T00:00:00Z\",\"topic\":\"ESP32CAM/CAM2/data\",\"payload\":"
		    "{\"hello\":1}}",
		"{\"tst\":\"yesterday\",\"topic\":\"ESP32CAM/d_3/status\",\"payload\":{}}",
	};
	const char *s = lines[pick(9)];

	line.len = 0;
	gxp_buf_adds(&line, s);
	feed();
}

static void
op_time(void)
{
	static const int64_t ms[] = { 0, 1, 10, 99, 100, 101, 500, 999, 1000, 1001, 2999,
		3000, 3001, 10000, 60000, -1000 };

	now_us += ms[pick(16)] * 1000;
}

/* ---- restarts, crashes, torn logs ---- */

static int crashed, final_flush;

/* What a kill inside write(2) leaves at the end of the newest segment:
 * part of a record cut off, or the start of one. */
static void
tear(void)
{
	char *dir = xasprintf("%s/partial", fz_spool), **segs, *path;
	long n = gxp_dir_names(dir, NULL, 0, &segs);
	unsigned how = byte(), len = 1 + byte() % 40;
	struct stat st;
	int fd;

	if (n > 0) {
		/* the newest: the names sort as numbers do only by length */
		long last = 0;

		for (long i = 1; i < n; i++)
			if (strlen(segs[i]) > strlen(segs[last]) || (strlen(segs[i]) ==
			    strlen(segs[last]) && strcmp(segs[i], segs[last]) > 0))
				last = i;
		path = xasprintf("%s/%s", dir, segs[last]);
		if ((fd = open(path, O_WRONLY | O_APPEND)) != -1 && fstat(fd, &st) == 0) {
			if (how & 0x80 && st.st_size > 0) {
				if (ftruncate(fd, st.st_size > len ? st.st_size - len : 0) == -1)
					fz_fail("%s: %s", path, strerror(errno));
			} else {
				unsigned char junk[40] = { 0x47, 0x58, 0x52, 0x31 };	/* GXR1 */

				for (unsigned i = 4; i < len; i++)
					junk[i] = (unsigned char)byte();
				if (write(fd, junk, len) != (ssize_t)len)
					fz_fail("%s: %s", path, strerror(errno));
			}
			note("torn %s", path);
		}
		if (fd != -1)
			close(fd);
		free(path);
	}
	if (n > 0)
		gxp_names_free(segs, n);
	free(dir);
}

static void
op_restart(void)
{
	unsigned v = byte();

	switch (v % 4) {
	case 0:
	case 1:
		note("exit%s and start again", v & 4 ? " (--flush-at-eof)" : "");
		fz_check_spool(1, fz_end(v & 4));
		break;
	default:
		note("kill -9%s", v % 4 == 3 ? " in the middle of a commit" : "");
		fz_crash(v % 4 == 3 ? 1 + (int)(v >> 4) % 4 : 0);
		crashed = 1;
		if (v & 8)
			tear();
		fz_check_spool(0, 0);
	}
	fz_begin();
}

/* ---- an uploader taking photos ---- */

/* What gxp-upload does once a photo is stored: the sidecar (in ready/ or
 * work/) becomes its stored/ record, the photo goes. */
static void
store(const char *area, const char *entry)
{
	char *side = gxp_spool_path(fz_spool, area, entry, ".json");
	char *rec = gxp_spool_path(fz_spool, "stored", entry, ".json");
	char *jpg = gxp_spool_path(fz_spool, "ready", entry, ".jpg");

	if (rename(side, rec) == -1 || unlink(jpg) == -1)
		fz_fail("storing %s/%s: %s", area, entry, strerror(errno));
	note("uploader: stored %s/%s", area, entry);
	free(side);
	free(rec);
	free(jpg);
}

/* A claim (ready/ to work/) or a put back: the sidecar moves. */
static void
move(const char *from, const char *to, const char *entry)
{
	char *a = gxp_spool_path(fz_spool, from, entry, ".json");
	char *b = gxp_spool_path(fz_spool, to, entry, ".json");

	if (rename(a, b) == -1)
		fz_fail("rename %s %s: %s", a, b, strerror(errno));
	note("uploader: %s/%s to %s/", from, entry, to);
	free(a);
	free(b);
}

static int
is_sidecar(const char *name)
{
	char entry[GXP_ENTRY_MAX + 1];

	return gxp_spool_sidecar_name(name, entry) == 0;
}

static void
op_upload(void)
{
	unsigned v = byte(), k = byte();
	const char *area = v & 1 ? "work" : "ready";
	char *dir = xasprintf("%s/%s", fz_spool, area), **entries, entry[GXP_ENTRY_MAX + 1];
	long n = gxp_dir_names(dir, is_sidecar, 0, &entries);

	if (n > 0) {
		gxp_spool_sidecar_name(entries[k % (unsigned)n], entry);
		if (v & 2)
			store(area, entry);
		else
			move(area, v & 1 ? "ready" : "work", entry);
	}
	if (n > 0)
		gxp_names_free(entries, n);
	free(dir);
}

/* ---- the checks, line by line as the tool writes ---- */

struct announced {
	char *entry, sha[65];
};

static struct announced *done;
static size_t ndone;

static int
index_of(const char *s, const char *const *list, int n)
{
	for (int i = 0; s && i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return i;
	return -1;
}

/* Is img, chunk by chunk (ids 0 to total - 1), made of bytes sent for
 * those ids?  Positions reachable after each chunk, one level at a time. */
static int
made_of_sent(int d, int nm, const unsigned char *img, size_t size, long long total)
{
	unsigned char *at = xcalloc(size + 1, 1), *next = xcalloc(size + 1, 1), *t;
	int ok;

	at[0] = total >= 1 && total <= MAXID;
	for (long long i = 0; i < total && i < MAXID; i++) {
		const struct sent *s = &sent[d][nm][i];

		memset(next, 0, size + 1);
		for (size_t pos = 0; pos <= size; pos++)
			for (size_t k = 0; at[pos] && k < s->n; k++)
				if (s->v[k].n <= size - pos &&
				    memcmp(img + pos, s->v[k].p, s->v[k].n) == 0)
					next[pos + s->v[k].n] = 1;
		t = at;
		at = next;
		next = t;
	}
	ok = at[size];
	free(at);
	free(next);
	return ok;
}

static int
size_announced(int d, int nm, long long size)
{
	for (size_t i = 0; i < sizes[d][nm].n; i++)
		if (sizes[d][nm].v[i] == size)
			return 1;
	return 0;
}

static int
same_str(const cJSON *j, const char *key, const char *want)
{
	const char *s = gxp_json_str(j, key);

	return s && strcmp(s, want) == 0;
}

static void
check_complete(const cJSON *e, const char *line_out)
{
	const char *dev = gxp_json_str(e, "device"), *image = gxp_json_str(e, "image_name");
	const char *cname = gxp_json_str(e, "capture_name"), *entry = gxp_json_str(e, "entry");
	const char *sha = gxp_json_str(e, "sha256");
	int d = index_of(dev, devs, NDEV), nm = index_of(image, names, NNAME);
	long long bytes, total, size;
	char hex[65], *want, *path;
	unsigned char *img = NULL;
	cJSON *sc;

	if (d < 0 || nm < 0 || !cname || !entry || !sha || gxp_json_int(e, "image_bytes",
	    &bytes) != 1 || gxp_json_int(e, "total_chunks", &total) != 1)
		fz_fail("photo_complete without its fields: %s", line_out);
	want = xasprintf("ready/%s@%s", dev, cname);
	if (strcmp(entry, want) != 0 || !gxp_capture_name_valid(cname))
		fz_fail("photo_complete names entry %s", entry);
	path = xasprintf("%s/%s.jpg", fz_spool, entry);
	if ((size = fz_file_sha256(path, hex, &img)) == -1)
		fz_fail("photo_complete before %s exists: %s", path, strerror(errno));
	if (size != bytes || strcmp(hex, sha) != 0)
		fz_fail("%s: %lld bytes, sha256 %s; the event says %lld, %s", path, size, hex,
		    bytes, sha);
	if (!size_announced(d, nm, size) || !made_of_sent(d, nm, img, (size_t)size, total))
		fz_fail("%s is not the photo %s sent as %s", path, dev, image);
	free(path);
	path = xasprintf("%s/%s.json", fz_spool, entry);
	if ((sc = gxp_sidecar_read(path)) == NULL || gxp_json_int(sc, "image_bytes", &size) != 1 ||
	    size != bytes || !same_str(sc, "sha256", sha) || !same_str(sc, "device", dev) ||
	    !same_str(sc, "image_name", image) || !same_str(sc, "capture_name", cname))
		fz_fail("%s does not agree with the event", path);
	for (size_t i = 0; i < ndone; i++)
		if (strcmp(done[i].entry, entry) == 0)
			fz_fail("%s completed twice", entry);
	done = xrealloc(done, (ndone + 1) * sizeof *done);
	done[ndone].entry = xstrdup(entry);
	memcpy(done[ndone++].sha, hex, 65);
	cJSON_Delete(sc);
	free(path);
	free(want);
	free(img);
}

static char **failed_seen;
static size_t nfailed;

static void
check_failed(const cJSON *e, const char *line_out)
{
	const char *entry = gxp_json_str(e, "entry");
	char *path;
	cJSON *r;
	long long code, rcode;

	if (entry == NULL)
		return;
	path = xasprintf("%s/%s/reason.json", fz_spool, entry);
	if (strncmp(entry, "failed/", 7) != 0 || (r = gxp_sidecar_read(path)) == NULL ||
	    gxp_json_int(r, "code", &rcode) != 1 || gxp_json_int(e, "code", &code) != 1 ||
	    rcode != code)
		fz_fail("capture_failed before its entry is there: %s", line_out);
	failed_seen = xrealloc(failed_seen, (nfailed + 1) * sizeof *failed_seen);
	failed_seen[nfailed++] = xstrdup(entry + 7);
	cJSON_Delete(r);
	free(path);
}

/* ACK_OK tells the device to delete the photo: stored/ must know it. */
static int
stored_has(const char *dev, const char *image)
{
	char *dir = xasprintf("%s/stored", fz_spool), **recs, *prefix = xasprintf("%s@", dev);
	long n = gxp_dir_names(dir, NULL, 1, &recs);
	int found = 0;

	for (long i = 0; i < n && !found; i++) {
		const char *base = strrchr(recs[i], '/') + 1;
		cJSON *sc;

		if (strncmp(base, prefix, strlen(prefix)) != 0)
			continue;
		sc = gxp_sidecar_read(recs[i]);
		found = same_str(sc, "image_name", image);
		cJSON_Delete(sc);
	}
	if (n > 0)
		gxp_names_free(recs, n);
	free(prefix);
	free(dir);
	return found;
}

static void
check_publish(const cJSON *e, const char *line_out)
{
	const char *kind = gxp_json_str(e, "kind"), *dev = gxp_json_str(e, "device");
	const char *image = gxp_json_str(e, "image_name");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "payload");
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(p, "missing_chunks"), *id;
	double last = -1;

	if (!kind || !dev || !image || !cJSON_IsObject(p))
		fz_fail("publish without its fields: %s", line_out);
	if (strcmp(kind, "ack_ok") == 0 && !stored_has(dev, image))
		fz_fail("ACK_OK for a photo that is not stored: %s", line_out);
	if (strcmp(kind, "nack") == 0) {
		if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) < 1)
			fz_fail("NACK without ids: %s", line_out);
		cJSON_ArrayForEach(id, ids) {
			if (!cJSON_IsNumber(id) || id->valuedouble <= last ||
			    id->valuedouble >= MAXID)
				fz_fail("NACK ids out of order: %s", line_out);
			last = id->valuedouble;
		}
	}
}

static void
out_line(const char *s, size_t n)
{
	cJSON *e;
	const char *type;

	if (seen_has(s, n))
		return;		/* passed through */
	e = fz_event(s, n);
	type = gxp_json_str(e, "event");
	if (strcmp(type, "photo_complete") == 0)
		check_complete(e, s);
	else if (strcmp(type, "capture_failed") == 0)
		check_failed(e, s);
	else if (strcmp(type, "publish") == 0)
		check_publish(e, s);
	cJSON_Delete(e);
}

/* ---- the end of a program ---- */

static int
was_announced(const char *area, const char *entry)
{
	if (strcmp(area, "failed") == 0) {
		for (size_t i = 0; i < nfailed; i++)
			if (strcmp(failed_seen[i], entry) == 0)
				return 1;
		return 0;
	}
	for (size_t i = 0; i < ndone; i++)
		if (strcmp(done[i].entry + 6, entry) == 0)
			return 1;
	return 0;
}

/* After a clean end: every photo in ready/, work/ and failed/ was
 * announced, and a ready/ one still has the bytes it was announced with. */
static void
check_announced(void)
{
	static const char *const areas[] = { "ready", "work", "failed" };
	char entry[GXP_ENTRY_MAX + 1];

	for (int a = 0; a < 3; a++) {
		char *dir = xasprintf("%s/%s", fz_spool, areas[a]), **files;
		long n = gxp_dir_names(dir, NULL, 0, &files);

		for (long i = 0; i < n; i++) {
			if (a == 2)
				snprintf(entry, sizeof entry, "%s", files[i]);
			else if (gxp_spool_sidecar_name(files[i], entry) == -1)
				continue;	/* a photo: its sidecar is checked */
			if (!was_announced(areas[a], entry))
				fz_fail("%s/%s was never announced", areas[a], files[i]);
		}
		if (n > 0)
			gxp_names_free(files, n);
		free(dir);
	}
	for (size_t i = 0; i < ndone; i++) {
		char *path = xasprintf("%s/%s.jpg", fz_spool, done[i].entry), hex[65];

		if (fz_file_sha256(path, hex, NULL) != -1 && strcmp(hex, done[i].sha) != 0)
			fz_fail("%s changed after it was announced", path);
		free(path);
	}
}

static void
forget(void)
{
	for (int d = 0; d < NDEV; d++)
		for (int nm = 0; nm < NNAME; nm++) {
			for (int id = 0; id < MAXID; id++) {
				for (size_t k = 0; k < sent[d][nm][id].n; k++)
					free(sent[d][nm][id].v[k].p);
				free(sent[d][nm][id].v);
			}
			free(plans[d][nm].img);
			free(sizes[d][nm].v);
		}
	memset(sent, 0, sizeof sent);
	memset(plans, 0, sizeof plans);
	memset(sizes, 0, sizeof sizes);
	for (size_t i = 0; i < ndone; i++)
		free(done[i].entry);
	free(done);
	done = NULL;
	ndone = 0;
	for (size_t i = 0; i < nfailed; i++)
		free(failed_seen[i]);
	free(failed_seen);
	failed_seen = NULL;
	nfailed = 0;
	memset(seen, 0, sizeof seen);
	nseen = 0;
	gxp_buf_free(&msg);
	gxp_buf_free(&line);
}

/* ---- the settings: the first two bytes ---- */

static void
configure(void)
{
	static const char *const logs[] = { "all", "no-chunks", "off" };
	static const char *const timeouts[] = { "1000", "3000", "60000" };
	static const char *const delays[] = { "100", "500", "3000" };
	static const char *const rounds[] = { "0", "1", "3" };
	static const char *const ids[] = { "1", "3", "100" };
	unsigned v = byte(), w = byte();
	int tight = v & 4;

	setenv("PUBLISH_LOG", logs[v % 3], 1);
	setenv("MAX_CHUNKS", tight ? "8" : "64", 1);
	setenv("MAX_CHUNK_BYTES", tight ? "64" : "512", 1);
	setenv("MAX_IMAGE_BYTES", tight ? "300" : "8192", 1);
	setenv("MAX_ASSEMBLIES", tight ? "3" : "20000", 1);
	setenv("MAX_ASSEMBLIES_PER_DEVICE", tight ? "2" : "16", 1);
	setenv("SPOOL_MAX_BYTES", v & 8 ? "1048576" : "1073741824", 1);
	setenv("ASSEMBLE_ORPHAN_CHUNKS", v & 8 ? "2" : "8", 1);
	setenv("ASSEMBLE_MEMORY_BYTES", v & 8 ? "1048576" : "16777216", 1);
	setenv("REFUSED_REPORT_INTERVAL_S", v & 8 ? "0" : "60", 1);
	setenv("CAPTURE_TIMEOUT_MS", timeouts[w % 3], 1);
	setenv("RETRANSMIT_DELAY_MS", delays[w / 3 % 3], 1);
	setenv("RETRANSMIT_MAX", rounds[w / 9 % 3], 1);
	setenv("NACK_MAX_IDS", ids[w / 27 % 3], 1);
	final_flush = !(v & 16);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *d = getenv("FUZZ_DUMP");

	(void)argc;
	(void)argv;
	fz_setup();
	fz_out = out_line;
	if (d && (dump = fopen(d, "w")) == NULL)
		fz_fail("%s: %s", d, strerror(errno));
	if (dump)
		setvbuf(dump, NULL, _IOLBF, 0);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ip = data;
	iend = data + size;
	now_us = T0;
	lineno = 0;
	crashed = 0;
	configure();
	for (int d = 0; d < NDEV; d++)
		for (int nm = 0; nm < NNAME; nm++)
			plan_new(&plans[d][nm]);
	fz_begin();
	for (int ops = 0; ip < iend && ops < MAXOPS; ops++) {
		switch (pick(16)) {
		case 0: case 1: case 2:
			op_meta();
			break;
		case 3: case 4: case 5: case 6:
			op_chunk();
			break;
		case 7: case 8:
			op_photo();
			break;
		case 9:
			op_plan();
			break;
		case 10: case 11:
			op_time();
			break;
		case 12:
			byte() & 1 ? op_status() : op_other();
			break;
		case 13:
			fz_commit();
			break;
		case 14:
			op_restart();
			break;
		default:
			op_upload();
		}
	}
	note("end%s", final_flush ? " (--flush-at-eof)" : "");
	fz_check_spool(1, fz_end(final_flush));
	if (!crashed)
		check_announced();
	fz_wipe();
	forget();
	if (dump)
		fflush(dump);
	return 0;
}
