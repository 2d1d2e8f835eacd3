/* html.c: what every page shares: the head, the style sheet, the foot,
 * and a device's facts as the tiles and the device pages show them.
 * Every text from the store goes through html_esc(). */
#include <string.h>

#include "report.h"

const char report_css[] =
	":root{--ok:#2e7d32;--err:#c62828;--off:#546e7a;--late:#e65100;--warn:#b7860b;"
	"--fg:#1d2329;--mut:#5f6b76;--bg:#f3f5f7;--card:#fff;--line:#dbe1e6}\n"
	"*{box-sizing:border-box}\n"
	"body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,"
	"'DejaVu Sans',sans-serif;color:var(--fg);background:var(--bg)}\n"
	"a{color:#1565c0;text-decoration:none}a:hover{text-decoration:underline}\n"
	"header{background:#1f2a36;color:#fff;padding:14px 24px}\n"
	"header h1{margin:0;font-size:20px;font-weight:600}\n"
	"header p{margin:3px 0 0;color:#c5d0da;font-size:13px}\n"
	"header a{color:#9ecbff}\n"
	"main{padding:16px 24px}footer{padding:8px 24px 24px;color:var(--mut);font-size:12px}\n"
	"h2.sec{font-size:16px;margin:18px 0 8px}\n"
	".summary{display:flex;flex-wrap:wrap;gap:16px;margin-bottom:16px}\n"
	".totals{display:grid;grid-template-columns:repeat(5,minmax(92px,1fr));gap:8px;"
	"flex:1 1 500px}\n"
	".stat{background:var(--card);border:1px solid var(--line);border-radius:8px;"
	"padding:7px 12px}\n"
	".stat b{display:block;font-size:22px;font-weight:600}"
	".stat span{color:var(--mut);font-size:12px}\n"
	".stat.bad b{color:var(--err)}.stat.off b{color:var(--off)}\n"
	".chart{background:var(--card);border:1px solid var(--line);border-radius:8px;"
	"padding:8px 12px;flex:1 1 460px}\n"
	".chart h2{font-size:13px;margin:0 0 4px;color:var(--mut);font-weight:600}\n"
	".chart svg{width:100%;height:auto;display:block}\n"
	".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:12px}\n"
	".tile{background:var(--card);border:1px solid var(--line);border-top:4px solid var(--ok);"
	"border-radius:8px;overflow:hidden}\n"
	".tile.errors{border-top-color:var(--err)}.tile.offline{border-top-color:var(--off)}"
	".tile.late{border-top-color:var(--late)}.tile.nophoto{border-top-color:var(--warn)}\n"
	".img{display:block;width:100%;aspect-ratio:4/3;object-fit:cover;background:#e4e9ed}\n"
	".ph{display:flex;align-items:center;justify-content:center;color:var(--mut);"
	"font-size:13px;text-align:center;padding:8px}\n"
	".ph.bad{background:repeating-linear-gradient(45deg,#f7e1e1,#f7e1e1 8px,#fbeeee 8px,"
	"#fbeeee 16px);color:var(--err)}\n"
	".body{padding:8px 10px 10px}\n"
	".tile h3{font-size:15px;margin:0 0 5px;display:flex;justify-content:space-between;"
	"align-items:center;gap:6px;overflow-wrap:anywhere}\n"
	".badges{display:flex;gap:3px;flex-wrap:wrap;justify-content:flex-end}\n"
	".badge{font-size:11px;font-weight:600;padding:1px 7px;border-radius:9px;color:#fff;"
	"background:var(--ok);white-space:nowrap}\n"
	".badge.errors{background:var(--err)}.badge.offline{background:var(--off)}"
	".badge.late{background:var(--late)}.badge.nophoto{background:var(--warn)}"
	".badge.pending{background:#e3eaf0;color:#37474f}\n"
	"dl.facts{margin:0;display:grid;grid-template-columns:auto 1fr;gap:1px 8px;font-size:12.5px}\n"
	"dl.facts dt{color:var(--mut)}dl.facts dd{margin:0;overflow-wrap:anywhere}\n"
	".err{color:var(--err)}.mut{color:var(--mut)}\n"
	"nav.pages{margin:14px 0;display:flex;gap:6px;flex-wrap:wrap;align-items:center}\n"
	"nav.pages a,nav.pages b{padding:2px 9px;border:1px solid var(--line);border-radius:6px;"
	"background:var(--card)}\n"
	".photos{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}\n"
	".photos figure{margin:0;background:var(--card);border:1px solid var(--line);"
	"border-radius:8px;overflow:hidden}\n"
	".photos figcaption{padding:6px 8px;font-size:12px}\n"
	"table{border-collapse:collapse;background:var(--card);font-size:13px;width:100%}\n"
	"th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}\n"
	"th{background:#eef2f5}\n"
	".device{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}\n"
	".device .tile{flex:0 1 360px}\n";

void
page_head(struct gxp_buf *b, const char *title, const char *css)
{
	gxp_buf_adds(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	    "<title>");
	html_esc(b, title);
	gxp_buf_addf(b, "</title>\n<link rel=\"stylesheet\" href=\"%s\">\n</head>\n<body>\n", css);
}

/* With stamped, the time the page was made; without, the page changes only
 * when what it shows does, and is not written again otherwise. */
void
page_foot(struct gxp_buf *b, const struct fleet *f, const struct page_opts *po,
    int stamped)
{
	char when[32];

	gxp_fmt_utc(when, f->now);
	gxp_buf_adds(b, "<footer>Made by gxp-report");
	if (stamped)
		gxp_buf_addf(b, " at %.10s %.8s UTC", when, when + 11);
	gxp_buf_adds(b, " from ");
	html_esc(b, po->source);
	gxp_buf_adds(b, stamped ? ". Times are UTC; \"ago\" is counted from then.</footer>\n" :
	    ". Times are UTC.</footer>\n");
	gxp_buf_adds(b, "</body>\n</html>\n");
}

static const char *const flag_names[5] = { "pending", "nophoto", "late", "offline", "errors" };
static const char *const flag_text[5] = { "pending", "no photo", "late", "offline", "errors" };

/* The class of a device's worst flag ("ok" without one, or with only
 * photos pending on it, which is news, not trouble). */
static const char *
worst(int flags)
{
	for (int i = 4; i >= 1; i--)
		if (flags & (1 << i))
			return flag_names[i];
	return "ok";
}

void
badges(struct gxp_buf *b, int flags)
{
	gxp_buf_adds(b, "<span class=\"badges\">");
	for (int i = 4; i >= 0; i--)
		if (flags & (1 << i))
			gxp_buf_addf(b, "<span class=\"badge %s\">%s</span>", flag_names[i],
			    flag_text[i]);
	if (flags == 0)
		gxp_buf_adds(b, "<span class=\"badge\">ok</span>");
	gxp_buf_adds(b, "</span>");
}

const char *
tile_class(int flags)
{
	return worst(flags);
}

/* "3 min ago", or with now 0 "2026-12-01 15:07 UTC". */
void
ago(struct gxp_buf *b, int64_t t, int64_t now)
{
	char abs[32];

	if (now || t == 0) {
		fmt_when(b, t, now);
		return;
	}
	fmt_utc_short(abs, t);
	gxp_buf_adds(b, abs);
}

/* "3 min ago (15:07 UTC)", the date too when it is not today's, or with
 * now 0 the time alone. */
static void
when(struct gxp_buf *b, int64_t t, int64_t now)
{
	char abs[32], today[32];

	ago(b, t, now);
	if (t == 0 || now == 0)
		return;
	fmt_utc_short(abs, t);
	fmt_utc_short(today, now);
	gxp_buf_addf(b, " <span class=\"mut\">(%s)</span>",
	    strncmp(abs, today, 10) == 0 ? abs + 11 : abs);
}

static void
fact(struct gxp_buf *b, const char *name)
{
	gxp_buf_addf(b, "<dt>%s</dt><dd>", name);
}

static void
reading(struct gxp_buf *b, const struct rdev *d, int64_t now)
{
	static const char *const unit[4] = { "&#8239;&#176;C", "&#8239;%",
		"&#8239;hPa", "&#8239;k&#937;" };
	static const int decimals[4] = { 1, 0, 0, 1 };
	int n = 0;

	if (d->reading_t == 0 && !d->has_reading[0] && !d->has_reading[1])
		return;
	fact(b, "sensors");
	for (int i = 0; i < 4; i++)
		if (d->has_reading[i]) {
			gxp_buf_adds(b, n++ ? " &#183; " : "");
			gxp_buf_addf(b, "%.*f%s", decimals[i], d->reading[i], unit[i]);
		}
	if (n == 0)
		gxp_buf_adds(b, "<span class=\"mut\">no values</span>");
	gxp_buf_adds(b, " <span class=\"mut\">");
	ago(b, d->reading_t, now);
	gxp_buf_adds(b, "</span></dd>");
}

void
error_text(struct gxp_buf *b, const struct rerr *e)
{
	char buf[GXP_MEANING_MAX];
	const char *meaning = gxp_error_meaning(e->code, buf);

	gxp_buf_addf(b, "<b>%ld</b> ", e->code);
	html_esc(b, meaning ? meaning : "unknown code");
	if (e->message && *e->message) {
		gxp_buf_adds(b, ": ");
		html_esc(b, e->message);
	}
}

static void
latest_error(struct gxp_buf *b, const struct rdev *d, const struct fleet *f, int64_t now)
{
	if (!d->has_err)
		return;
	gxp_buf_addf(b, "<dt>error</dt><dd class=\"%s\">", d->err.t >= f->now - DAY_US ?
	    "err" : "mut");
	error_text(b, &d->err);
	gxp_buf_adds(b, " <span class=\"mut\">");
	ago(b, d->err.t, now);
	gxp_buf_adds(b, "</span></dd>");
}

/* The facts of a tile and of a device page, as a <dl>; times relative to
 * now, or (now 0) absolute only. */
void
tile_facts(struct gxp_buf *b, const struct rdev *d, const struct fleet *f, int64_t now)
{
	gxp_buf_adds(b, "<dl class=\"facts\">");
	fact(b, "seen");
	when(b, d->seen, now);
	gxp_buf_adds(b, "</dd>");
	fact(b, "status");
	if (d->status || d->pending >= 0) {
		html_esc(b, d->status ? d->status : "?");
		if (d->pending >= 0)
			gxp_buf_addf(b, " &#183; %lld pending", d->pending);
	} else
		gxp_buf_adds(b, "<span class=\"mut\">none yet</span>");
	gxp_buf_adds(b, "</dd>");
	fact(b, "24 h");
	gxp_buf_addf(b, "<span class=\"n-stored\">%d</span> stored &#183; "
	    "<span class=\"n-failed%s\">%d</span> failed</dd>", d->stored24,
	    d->failed24 ? " err" : "", d->failed24);
	reading(b, d, now);
	latest_error(b, d, f, now);
	if (d->has_next_wake) {
		fact(b, "next wake");
		if (d->next_wake)
			when(b, d->next_wake, now);
		else
			gxp_buf_adds(b, "<span class=\"mut\">not scheduled</span>");
		gxp_buf_adds(b, "</dd>");
	}
	gxp_buf_adds(b, "</dl>");
}

/* A photo's thumbnail (prefix: the way from the page to the report's
 * top), or its placeholder. */
void
thumb_img(struct gxp_buf *b, const struct rcap *c, const char *prefix,
    const char *alt)
{
	if (c && c->thumb_state == THUMB_OK) {
		gxp_buf_addf(b, "<img class=\"img\" loading=\"lazy\" src=\"%sthumbs/%s.jpg\" alt=\"",
		    prefix, c->thumb);
		html_esc(b, alt);
		gxp_buf_adds(b, "\">");
	} else if (c && c->thumb_state == THUMB_BAD)
		gxp_buf_adds(b, "<div class=\"img ph bad\">photo unreadable</div>");
	else if (c && c->thumb_state == THUMB_LATER)
		gxp_buf_adds(b, "<div class=\"img ph\">photo not fetched yet</div>");
	else
		gxp_buf_adds(b, "<div class=\"img ph\">no photo yet</div>");
}
