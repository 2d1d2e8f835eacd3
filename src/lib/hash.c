/* hash.c: FNV-1a of a string, for the tools' hash tables. */
#include "gxp.h"

unsigned
gxp_hash(const char *s)
{
	unsigned h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}
