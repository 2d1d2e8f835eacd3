/* dir.c: the names in a directory, sorted, so work happens in an order
 * that does not depend on the file system. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "gxp.h"

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dir that keep() accepts (all but "." and ".." when keep
 * is NULL), as dir/name when with_dir, in strcmp order.  Returns the count
 * and sets *names (free with gxp_names_free), or -1 with errno set. */
long
gxp_dir_names(const char *dir, int (*keep)(const char *), int with_dir, char ***names)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **v = NULL;
	size_t n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (keep ? !keep(e->d_name) :
		    strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		v = xrealloc(v, (n + 1) * sizeof *v);
		v[n++] = with_dir ? xasprintf("%s/%s", dir, e->d_name) : xstrdup(e->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(v, n, sizeof *v, by_name);
	*names = v;
	return (long)n;
}

void
gxp_names_free(char **names, long n)
{
	for (long i = 0; i < n; i++)
		free(names[i]);
	free(names);
}
