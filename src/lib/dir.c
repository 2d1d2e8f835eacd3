/* dir.c: the names in a directory, sorted, so work happens in an order
 * that does not depend on the file system. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static int
by_age(const void *a, const void *b)
{
	const struct gxp_aged *x = a, *y = b;

	if (x->mtime_us != y->mtime_us)
		return x->mtime_us < y->mtime_us ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int64_t
mtime_at(int dfd, const char *name)
{
	struct stat sb;

	if (fstatat(dfd, name, &sb, 0) == 0)
		return (int64_t)sb.st_mtim.tv_sec * 1000000 + sb.st_mtim.tv_nsec / 1000;
	return 0;
}

/* The entries of dir whose names do not start with '.', with their
 * modification times, oldest first, then by name.  Returns the count and
 * sets *list (free with gxp_aged_free), or -1 with errno. */
long
gxp_dir_aged(const char *dir, struct gxp_aged **list)
{
	DIR *d = opendir(dir);
	struct gxp_aged *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap)
			v = xrealloc(v, (cap = cap ? cap * 2 : 64) * sizeof *v);
		v[n].name = xstrdup(e->d_name);
		v[n++].mtime_us = mtime_at(dirfd(d), e->d_name);
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof *v, by_age);
	*list = v;
	return (long)n;
}

void
gxp_aged_free(struct gxp_aged *list, long n)
{
	for (long i = 0; i < n; i++)
		free(list[i].name);
	free(list);
}
