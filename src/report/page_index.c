/* page_index.c: index.html (the fleet's totals, the chart and the first
 * tiles) and page-N.html (the next tiles), REPORT_PAGE_TILES tiles a page,
 * the devices that need attention first. */
#include <stdlib.h>

#include "report.h"

static void
stat_card(struct gxp_buf *b, const char *cls, long long n, const char *what)
{
	gxp_buf_addf(b, "<div class=\"stat%s%s\"><b>%lld</b><span>%s</span></div>",
	    *cls && n ? " " : "", n ? cls : "", n, what);
}

static void
summary(struct gxp_buf *b, const struct fleet *f)
{
	gxp_buf_adds(b, "<section class=\"summary\"><div class=\"totals\">");
	stat_card(b, "", (long long)f->ndevs, "devices");
	stat_card(b, "", f->seen24, "seen in 24 h");
	stat_card(b, "bad", f->attention, "need attention");
	stat_card(b, "", f->total_stored, "photos stored");
	stat_card(b, "bad", f->total_failed, "photos failed");
	stat_card(b, "bad", f->nflag[4], "with errors");
	stat_card(b, "off", f->nflag[3], "offline");
	stat_card(b, "bad", f->nflag[2], "late to wake");
	stat_card(b, "", f->nflag[1], "no photo in 24 h");
	stat_card(b, "", f->total_pending, "pending on devices");
	gxp_buf_adds(b, "</div><div class=\"chart\"><h2>Photos per hour, last 24 h "
	    "(<span style=\"color:#2e7d32\">stored</span>, "
	    "<span style=\"color:#c62828\">failed</span>)</h2>");
	svg_chart(b, f);
	gxp_buf_adds(b, "</div></section>\n");
}

static void
page_name(char *buf, size_t cap, size_t page)
{
	if (page == 0)
		snprintf(buf, cap, "index.html");
	else
		snprintf(buf, cap, "page-%zu.html", page + 1);
}

static void
nav(struct gxp_buf *b, size_t page, size_t pages)
{
	char name[32];

	if (pages < 2)
		return;
	gxp_buf_adds(b, "<nav class=\"pages\">Pages:");
	for (size_t p = 0; p < pages; p++) {
		page_name(name, sizeof name, p);
		if (p == page)
			gxp_buf_addf(b, " <b>%zu</b>", p + 1);
		else
			gxp_buf_addf(b, " <a href=\"%s\">%zu</a>", name, p + 1);
	}
	gxp_buf_adds(b, "</nav>\n");
}

static void
tile(struct gxp_buf *b, const struct rdev *d, const struct fleet *f)
{
	const struct rcap *photo = d->has_photo ? &d->photo : NULL;

	gxp_buf_addf(b, "<article class=\"tile %s\" id=\"d-%s\" data-stored=\"%d\" "
	    "data-failed=\"%d\"", tile_class(d->flags), d->page, d->stored24, d->failed24);
	if (d->has_err)
		gxp_buf_addf(b, " data-error=\"%ld\"", d->err.code);
	gxp_buf_addf(b, "><a href=\"devices/%s.html\">", d->page);
	thumb_img(b, photo, "", d->label);
	gxp_buf_addf(b, "</a><div class=\"body\"><h3><a href=\"devices/%s.html\">", d->page);
	html_esc(b, d->label);
	gxp_buf_adds(b, "</a>");
	badges(b, d->flags);
	gxp_buf_adds(b, "</h3>");
	tile_facts(b, d, f, f->now);
	gxp_buf_adds(b, "</div></article>\n");
}

static void
header(struct gxp_buf *b, const struct fleet *f, const struct page_opts *po)
{
	char when[32];

	fmt_utc_short(when, f->now);
	gxp_buf_addf(b, "<header><h1>Fleet report</h1><p>%zu devices, %d need attention "
	    "&#183; %s &#183; ", f->ndevs, f->attention, when);
	html_esc(b, po->source);
	gxp_buf_adds(b, "</p></header>\n<main>\n");
}

void
page_index_all(struct out *o, const struct fleet *f, const struct page_opts *po)
{
	size_t per = (size_t)po->page_tiles;
	size_t pages = f->ndevs == 0 ? 1 : (f->ndevs + per - 1) / per;
	char name[32];

	for (size_t p = 0; p < pages; p++) {
		struct gxp_buf b = { 0 };
		size_t from = p * per, to = from + per < f->ndevs ? from + per : f->ndevs;

		page_name(name, sizeof name, p);
		page_head(&b, p ? "Fleet report (more devices)" : "Fleet report", "report.css");
		header(&b, f, po);
		if (p == 0)
			summary(&b, f);
		nav(&b, p, pages);
		gxp_buf_addf(&b, "<h2 class=\"sec\">Devices %zu to %zu of %zu, the ones that "
		    "need attention first</h2>\n<div class=\"grid\">\n", f->ndevs ? from + 1 : 0,
		    to, f->ndevs);
		for (size_t i = from; i < to; i++)
			tile(&b, f->devs[i], f);
		gxp_buf_adds(&b, "</div>\n");
		nav(&b, p, pages);
		gxp_buf_adds(&b, "</main>\n");
		page_foot(&b, f, po, 1);
		out_file(o, name, b.p, b.len);
		gxp_buf_free(&b);
	}
}
