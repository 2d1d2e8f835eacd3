/* page_device.c: devices/<id>.html, a page per device: its facts, its
 * recent photos as thumbnails linked to the full photo, its recent errors. */
#include <stdlib.h>

#include "report.h"

static void
linked(struct gxp_buf *b, const struct rcap *c, const char *alt)
{
	if (c->href) {
		gxp_buf_adds(b, "<a href=\"");
		html_esc(b, c->href);
		gxp_buf_adds(b, "\">");
	}
	if (c->status == CAP_FAILED)
		gxp_buf_adds(b, "<div class=\"img ph bad\">photo failed</div>");
	else if (c->status == CAP_ASSEMBLING)
		gxp_buf_adds(b, "<div class=\"img ph\">not stored (yet)</div>");
	else
		thumb_img(b, c, "../", alt);
	if (c->href)
		gxp_buf_adds(b, "</a>");
}

static void
photo(struct gxp_buf *b, const struct rcap *c)
{
	char abs[32];

	gxp_buf_adds(b, "<figure>");
	linked(b, c, c->name ? c->name : "photo");
	gxp_buf_adds(b, "<figcaption><b>");
	html_esc(b, c->name ? c->name : "(no name)");
	gxp_buf_addf(b, "</b> &#183; <span class=\"%s\">%s</span><br>",
	    c->status == CAP_FAILED ? "err" : "mut", cap_status_name(c->status));
	if (c->captured_at) {
		fmt_utc_short(abs, c->captured_at);
		gxp_buf_addf(b, "taken %s", abs);
	}
	if (c->bytes >= 0)
		gxp_buf_addf(b, "<br>%lld bytes", c->bytes);
	if (c->error && *c->error) {
		gxp_buf_adds(b, "<br><span class=\"err\">");
		html_esc(b, c->error);
		gxp_buf_adds(b, "</span>");
	}
	gxp_buf_adds(b, "</figcaption></figure>\n");
}

static void
photos(struct gxp_buf *b, const struct rdev *d, const struct fleet *f)
{
	size_t n = d->ncaps < (size_t)f->recent_photos ? d->ncaps : (size_t)f->recent_photos;

	gxp_buf_addf(b, "<h2 class=\"sec\">Recent photos (%zu, newest first)</h2>\n", n);
	if (n == 0) {
		gxp_buf_adds(b, "<p class=\"mut\">None in the period.</p>\n");
		return;
	}
	gxp_buf_adds(b, "<div class=\"photos\">\n");
	for (size_t i = 0; i < n; i++)
		photo(b, &d->caps[i]);
	gxp_buf_adds(b, "</div>\n");
}

static void
errors(struct gxp_buf *b, const struct rdev *d)
{
	char abs[32];

	gxp_buf_addf(b, "<h2 class=\"sec\">Recent errors (%zu, newest first)</h2>\n", d->nerrs);
	if (d->nerrs == 0) {
		gxp_buf_adds(b, "<p class=\"mut\">None in the period.</p>\n");
		return;
	}
	gxp_buf_adds(b, "<table><tr><th>When</th><th>Error</th><th>Severity</th></tr>\n");
	for (size_t i = 0; i < d->nerrs; i++) {
		const struct rerr *e = &d->errs[i];

		fmt_utc_short(abs, e->t);
		gxp_buf_addf(b, "<tr><td>%s</td><td>", e->t ? abs : "?");
		error_text(b, e);
		gxp_buf_adds(b, "</td><td>");
		html_esc(b, e->severity ? e->severity : "");
		gxp_buf_adds(b, "</td></tr>\n");
	}
	gxp_buf_adds(b, "</table>\n");
}

static void
identity(struct gxp_buf *b, const struct rdev *d)
{
	gxp_buf_adds(b, "<p><a href=\"../index.html\">&#8592; Fleet report</a> &#183; "
	    "device_id ");
	html_esc(b, d->uuid);
	if (d->model) {
		gxp_buf_adds(b, " &#183; model ");
		html_esc(b, d->model);
	}
	if (d->ip) {
		gxp_buf_adds(b, " &#183; last IP ");
		html_esc(b, d->ip);
	}
	gxp_buf_adds(b, "</p>");
}

static void
device_page(struct out *o, const struct rdev *d, const struct fleet *f,
    const struct page_opts *po)
{
	struct gxp_buf b = { 0 }, title = { 0 };
	char *rel = xasprintf("devices/%s.html", d->page);

	gxp_buf_addf(&title, "%s: fleet report", d->label);
	page_head(&b, title.p, "../report.css");
	gxp_buf_adds(&b, "<header><h1>");
	html_esc(&b, d->label);
	gxp_buf_adds(&b, "</h1>");
	identity(&b, d);
	gxp_buf_addf(&b, "</header>\n<main>\n<div class=\"device\"><article class=\"tile %s\">",
	    tile_class(d->flags));
	if (d->has_photo)
		linked(&b, &d->photo, d->label);
	else
		thumb_img(&b, NULL, "../", d->label);
	gxp_buf_adds(&b, "<div class=\"body\"><h3>Latest");
	badges(&b, d->flags);
	gxp_buf_adds(&b, "</h3>");
	tile_facts(&b, d, f, 0);
	gxp_buf_adds(&b, "</div></article></div>\n");
	photos(&b, d, f);
	errors(&b, d);
	gxp_buf_adds(&b, "</main>\n");
	page_foot(&b, f, po, 0);
	out_file(o, rel, b.p, b.len);
	gxp_buf_free(&b);
	gxp_buf_free(&title);
	free(rel);
}

void
page_device_all(struct out *o, const struct fleet *f, const struct page_opts *po)
{
	for (size_t i = 0; i < f->ndevs; i++)
		device_page(o, f->devs[i], f, po);
}
