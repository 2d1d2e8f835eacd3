/* thumb.c: a thumbnail of a JPEG.  libjpeg-turbo decodes the photo already
 * scaled down (1/2, 3/8, 1/4 ... 1/8: it skips most of the work of a full
 * decode), to the smallest size at least as large as wanted; an area
 * average takes that to the exact size, and the result is encoded again.
 * A progressive JPEG of more than 500 scans is refused (TJFLAG_LIMITSCANS):
 * each scan is a pass over the whole image, whatever the scaling, so a
 * crafted file of a few hundred kB would take minutes to decode. */
#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>

#include "report.h"

#define QUALITY 80

/* The smallest scaling factor that keeps the longer side >= px (1/1 for
 * a photo that is smaller: never enlarged). */
static tjscalingfactor
pick_scale(int side, int px)
{
	tjscalingfactor best = { 1, 1 }, *sf;
	int n = 0;

	if (side <= px || (sf = tjGetScalingFactors(&n)) == NULL)
		return best;
	for (int i = 0; i < n; i++)
		if (sf[i].num <= sf[i].denom && TJSCALED(side, sf[i]) >= px &&
		    TJSCALED(side, sf[i]) < TJSCALED(side, best))
			best = sf[i];
	return best;
}

/* Area average of the RGB image sw x sh into dw x dh. */
static unsigned char *
shrink(const unsigned char *src, int sw, int sh, int dw, int dh)
{
	unsigned char *dst = xmalloc((size_t)dw * dh * 3);

	for (int y = 0; y < dh; y++) {
		int y0 = (int)((long long)y * sh / dh), y1 = (int)((long long)(y + 1) * sh / dh);

		if (y1 <= y0)
			y1 = y0 + 1;
		for (int x = 0; x < dw; x++) {
			int x0 = (int)((long long)x * sw / dw), x1 = (int)((long long)(x + 1) * sw / dw);
			unsigned long sum[3] = { 0, 0, 0 }, n;

			if (x1 <= x0)
				x1 = x0 + 1;
			n = (unsigned long)(x1 - x0) * (unsigned long)(y1 - y0);
			for (int yy = y0; yy < y1; yy++)
				for (int xx = x0; xx < x1; xx++)
					for (int c = 0; c < 3; c++)
						sum[c] += src[((size_t)yy * sw + xx) * 3 + c];
			for (int c = 0; c < 3; c++)
				dst[((size_t)y * dw + x) * 3 + c] = (unsigned char)((sum[c] + n / 2) / n);
		}
	}
	return dst;
}

static int
fail(char why[160], tjhandle h, const char *what)
{
	snprintf(why, 160, "%s: %s", what, h ? tjGetErrorStr2(h) : "no memory");
	return -1;
}

static int
encode(const unsigned char *rgb, int w, int h, unsigned char **out,
    unsigned long *outlen, char why[160])
{
	tjhandle c = tjInitCompress();
	int rc = 0;

	*out = NULL;
	*outlen = 0;
	if (c == NULL || tjCompress2(c, rgb, w, 0, h, TJPF_RGB, out, outlen, TJSAMP_420,
	    QUALITY, TJFLAG_FASTDCT) == -1)
		rc = fail(why, c, "encoding the thumbnail");
	if (c)
		tjDestroy(c);
	return rc;
}

static int
decode(tjhandle d, const unsigned char *jpeg, size_t len, const struct thumb_opts *o,
    unsigned char **rgb, int *w, int *h, char why[160])
{
	int jw = 0, jh = 0, sub, cs, warned = 0;
	tjscalingfactor f;

	if (tjDecompressHeader3(d, jpeg, (unsigned long)len, &jw, &jh, &sub, &cs) == -1)
		return fail(why, d, "not a JPEG we can read");
	if (jw <= 0 || jh <= 0) {
		snprintf(why, 160, "not a JPEG we can read: no image in it");
		return -1;
	}
	if ((long long)jw * jh > o->max_pixels) {
		snprintf(why, 160, "%d x %d pixels: more than REPORT_MAX_PIXELS (%lld)",
		    jw, jh, o->max_pixels);
		return -1;
	}
	f = pick_scale(jw > jh ? jw : jh, o->px);
	*w = TJSCALED(jw, f);
	*h = TJSCALED(jh, f);
	*rgb = xmalloc((size_t)*w * *h * 3);
	if (tjDecompress2(d, jpeg, (unsigned long)len, *rgb, *w, 0, *h, TJPF_RGB,
	    TJFLAG_FASTDCT | TJFLAG_LIMITSCANS) == -1) {
		if (tjGetErrorCode(d) != TJERR_WARNING) {
			free(*rgb);
			*rgb = NULL;
			return fail(why, d, "damaged JPEG");
		}
		fail(why, d, "damaged JPEG, shown as far as it decodes");
		warned = 1;
	}
	return warned;
}

int
thumb_make(const unsigned char *jpeg, size_t len, const struct thumb_opts *o,
    unsigned char **out, unsigned long *outlen, char why[160])
{
	tjhandle d = tjInitDecompress();
	unsigned char *rgb = NULL, *small = NULL;
	int w, h, tw, th, rc;

	why[0] = '\0';
	if (d == NULL)
		return fail(why, NULL, "decoder");
	rc = decode(d, jpeg, len, o, &rgb, &w, &h, why);
	tjDestroy(d);
	if (rc == -1)
		return -1;
	tw = w, th = h;
	if (w > o->px || h > o->px) {
		tw = w >= h ? o->px : (int)((long long)w * o->px / h);
		th = h > w ? o->px : (int)((long long)h * o->px / w);
		tw = tw < 1 ? 1 : tw;
		th = th < 1 ? 1 : th;
		small = shrink(rgb, w, h, tw, th);
	}
	if (encode(small ? small : rgb, tw, th, out, outlen, why) == -1)
		rc = -1;
	free(small);
	free(rgb);
	return rc;
}

void
thumb_release(unsigned char *p)
{
	tjFree(p);
}
