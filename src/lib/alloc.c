/* alloc.c: allocation wrappers; running out of memory is a temporary failure. */
#include <stdlib.h>
#include <string.h>

#include "gxp.h"

static void *
check(void *p)
{
	if (p == NULL)
		gxp_die(EXIT_TEMP, "out of memory");
	return p;
}

void *
xmalloc(size_t n)
{
	return check(malloc(n ? n : 1));
}

void *
xcalloc(size_t n, size_t size)
{
	return check(calloc(n ? n : 1, size ? size : 1));
}

void *
xrealloc(void *p, size_t n)
{
	return check(realloc(p, n ? n : 1));
}

char *
xstrdup(const char *s)
{
	return check(strdup(s));
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		gxp_die(EXIT_TEMP, "xasprintf: bad format");
	s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}
