/* jsonb.c: JSON text that PostgreSQL's jsonb takes whole.  A jsonb number
 * is a numeric, which holds at most 131072 digits before the decimal point
 * and 16383 after it; a device that sends 1e999999 would otherwise have its
 * row refused, and with it the batch of rows around it.  Such a number is
 * kept as a string of the same text: nothing is lost, the row goes in. */
#include <string.h>

#include "gxp.h"

enum {
	PG_INT_DIGITS = 131072,	/* digits before the decimal point */
	PG_SCALE = 16383	/* digits after it */
};

static int
digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Whether the number s[0..n) (JSON syntax) fits in a numeric. */
static int
numeric_fits(const char *s, size_t n)
{
	size_t i = s[0] == '-', int0, int1, frac0 = 0, frac1 = 0, j;
	long long exp = 0, msd;
	int neg = 0;

	for (int0 = i; i < n && digit(s[i]); i++)
		;
	int1 = i;
	if (i < n && s[i] == '.') {
		for (frac0 = ++i; i < n && digit(s[i]); i++)
			;
		frac1 = i;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			neg = s[i++] == '-';
		for (; i < n && digit(s[i]); i++)
			if (exp < 1000000000)
				exp = exp * 10 + (s[i] - '0');
		if (neg)
			exp = -exp;
	}
	/* the digits after the point, as PostgreSQL counts them */
	if ((long long)(frac1 - frac0) - exp > PG_SCALE)
		return 0;
	for (j = int0; j < int1 && s[j] == '0'; j++)
		;
	if (j < int1)
		msd = (long long)(int1 - j - 1) + exp;
	else {
		for (j = frac0; j < frac1 && s[j] == '0'; j++)
			;
		if (j == frac1)
			return 1;	/* zero */
		msd = -(long long)(j - frac0 + 1) + exp;
	}
	return msd < PG_INT_DIGITS;
}

/* Rewrites the numbers of the JSON text in[0..len) that a jsonb cannot
 * hold as strings of their text, into out (NUL-terminated); returns how
 * many, and leaves out alone when there are none. */
long
gxp_jsonb_safe(const char *in, size_t len, struct gxp_buf *out)
{
	size_t i = 0, copied = 0, j;
	long n = 0;

	while (i < len) {
		if (in[i] == '"') {	/* a string: to its closing quote */
			for (i++; i < len && in[i] != '"'; i++)
				if (in[i] == '\\')
					i++;
			i++;
			continue;
		}
		if (!digit(in[i]) && in[i] != '-') {
			i++;
			continue;
		}
		for (j = i + 1; j < len && in[j] && (digit(in[j]) || strchr(".eE+-", in[j])); j++)
			;
		if (!numeric_fits(in + i, j - i)) {
			gxp_buf_add(out, in + copied, i - copied);
			gxp_buf_add(out, "\"", 1);
			gxp_buf_add(out, in + i, j - i);
			gxp_buf_add(out, "\"", 1);
			copied = j;
			n++;
		}
		i = j;
	}
	if (n > 0)
		gxp_buf_add(out, in + copied, len - copied);	/* NUL-terminated */
	return n;
}
