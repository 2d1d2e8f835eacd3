/* b64.c: RFC 4648 base64.  Decoding is strict: only the standard alphabet,
 * padding only at the end, length a multiple of four. */
#include "gxp.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
gxp_b64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

size_t
gxp_b64_encode(const unsigned char *in, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);

		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	return o;
}

static signed char rev[256];

static void
rev_init(void)
{
	for (int i = 0; i < 256; i++)
		rev[i] = -1;
	for (int i = 0; i < 64; i++)
		rev[(unsigned char)alphabet[i]] = (signed char)i;
}

/* Returns the decoded length, or -1 if the input is not base64 or the
 * result would not fit in cap bytes. */
long
gxp_b64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
	size_t o = 0, pad = 0;

	if (rev[0] == 0)	/* not yet built: rev[0] is -1 once it is */
		rev_init();
	if (n % 4)
		return -1;
	if (n >= 1 && in[n - 1] == '=')
		pad++;
	if (n >= 2 && in[n - 2] == '=')
		pad++;
	if (n / 4 * 3 - pad > cap)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int last = i + 4 == n;
		int a = rev[(unsigned char)in[i]], b = rev[(unsigned char)in[i + 1]];
		int c = rev[(unsigned char)in[i + 2]], d = rev[(unsigned char)in[i + 3]];

		if (last && pad) {
			if (a < 0 || b < 0 || (pad == 1 && c < 0))
				return -1;
			out[o++] = (unsigned char)(a << 2 | b >> 4);
			if (pad == 1)
				out[o++] = (unsigned char)(b << 4 | c >> 2);
			break;
		}
		if ((a | b | c | d) < 0)
			return -1;
		out[o++] = (unsigned char)(a << 2 | b >> 4);
		out[o++] = (unsigned char)(b << 4 | c >> 2);
		out[o++] = (unsigned char)(c << 6 | d);
	}
	return (long)o;
}
