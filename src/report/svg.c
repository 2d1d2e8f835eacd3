/* svg.c: photos per hour over the last 24 h, as an inline SVG bar chart:
 * stored and failed stacked, an hour a bar, the newest on the right, each
 * bar's numbers in its <title> (a tooltip without any script). */
#include "report.h"

#define W 480
#define H 150
#define LEFT 30
#define BOTTOM 20
#define TOP 8

static int
scale_max(const struct fleet *f)
{
	int m = 1;

	for (int i = 0; i < 24; i++)
		if (f->stored[i] + f->failed[i] > m)
			m = f->stored[i] + f->failed[i];
	return m;
}

static void
bar(struct gxp_buf *b, const struct fleet *f, int i, int max, double bw)
{
	double x = LEFT + i * bw + 1, ph = H - BOTTOM - TOP;
	double hs = ph * f->stored[i] / max, hf = ph * f->failed[i] / max;
	char from[32], to[32];

	fmt_utc_short(from, f->now - (24 - i) * HOUR_US);
	fmt_utc_short(to, f->now - (23 - i) * HOUR_US);
	gxp_buf_addf(b, "<g><title>%.5s to %.5s: %d stored, %d failed</title>",
	    from + 11, to + 11, f->stored[i], f->failed[i]);
	gxp_buf_addf(b, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
	    "fill=\"transparent\"/>", x, TOP, bw - 2, H - BOTTOM - TOP);
	if (f->stored[i])
		gxp_buf_addf(b, "<rect class=\"s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		    "height=\"%.1f\" fill=\"#2e7d32\"/>", x, H - BOTTOM - hs, bw - 2, hs);
	if (f->failed[i])
		gxp_buf_addf(b, "<rect class=\"f\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		    "height=\"%.1f\" fill=\"#c62828\"/>", x, H - BOTTOM - hs - hf, bw - 2, hf);
	gxp_buf_adds(b, "</g>");
}

static void
axes(struct gxp_buf *b, const struct fleet *f, int max, double bw)
{
	char t[32];

	gxp_buf_addf(b, "<g font-size=\"10\" fill=\"#5f6b76\" font-family=\"sans-serif\">"
	    "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#dbe1e6\"/>"
	    "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#9aa5ae\"/>"
	    "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text>"
	    "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text>",
	    LEFT, TOP, W, TOP, LEFT, H - BOTTOM, W, H - BOTTOM,
	    LEFT - 4, TOP + 4, max, LEFT - 4, H - BOTTOM + 3);
	for (int i = 0; i <= 24; i += 6) {
		fmt_utc_short(t, f->now - (24 - i) * HOUR_US);
		gxp_buf_addf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"%s\">%.5s</text>",
		    LEFT + i * bw, H - 5, i == 0 ? "start" : i == 24 ? "end" : "middle",
		    i == 24 ? "now" : t + 11);
	}
	gxp_buf_adds(b, "</g>");
}

void
svg_chart(struct gxp_buf *b, const struct fleet *f)
{
	int max = scale_max(f);
	double bw = (double)(W - LEFT) / 24;

	gxp_buf_addf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
	    "role=\"img\" aria-labelledby=\"chart-title\">"
	    "<title id=\"chart-title\">Photos per hour over the last 24 h: %d stored, "
	    "%d failed</title>", W, H, f->total_stored, f->total_failed);
	axes(b, f, max, bw);
	for (int i = 0; i < 24; i++)
		bar(b, f, i, max, bw);
	gxp_buf_adds(b, "</svg>");
}
