/* marks.c: work/rows.at, where the captures table ended before a photo's
 * row, a line "<entry> <mark>" each, appended and not synced (losing one
 * costs a repeated line, never a photo); a run after a crash looks from
 * there for the row instead of writing it twice.  Read at start, and
 * written again with only the photos still in the spool when it has
 * grown. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "upload.h"

struct name *marks;	/* "<entry> <mark>" of the photos claimed */
int marks_fd = -1;
long marks_n, marks_written;	/* in memory; lines in work/rows.at */

static void
mark_add(const char *entry, long long mark)
{
	struct name *n = xcalloc(1, sizeof *n);

	n->s = xasprintf("%s %lld", entry, mark);
	n->next = marks;
	marks = n;
	marks_n++;
}

static struct name **
mark_find(const char *entry)
{
	size_t len = strlen(entry);

	for (struct name **pp = &marks; *pp; pp = &(*pp)->next)
		if (strncmp((*pp)->s, entry, len) == 0 && (*pp)->s[len] == ' ')
			return pp;
	return NULL;
}

void
mark_forget(const char *entry)
{
	struct name **pp = mark_find(entry), *n;

	if (pp == NULL)
		return;
	n = *pp;
	*pp = n->next;
	free(n->s);
	free(n);
	marks_n--;
}

/* work/rows.at written again with the marks in memory. */
void
marks_rewrite(void)
{
	char *path = spool_path("work", MARKS, NULL);
	struct gxp_buf b = { 0 };

	for (struct name *n = marks; n; n = n->next)
		gxp_buf_addf(&b, "%s\n", n->s);
	marks_written = marks_n;
	if (marks_fd != -1)
		close(marks_fd);
	marks_fd = -1;
	if (syncset_write(NULL, path, b.p ? b.p : "", b.len) == -1)
		gxp_log(LOG_WARN, "%s: %s", path, strerror(errno));
	else if ((marks_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)) == -1)
		gxp_log(LOG_WARN, "%s: %s", path, strerror(errno));
	gxp_buf_free(&b);
	free(path);
}

/* The marks an earlier run left, and those of the earlier layout's
 * work/E/rows.at (taken over by gxp_spool_upgrade). */
void
marks_load(void)
{
	char *path = spool_path("work", MARKS, NULL), *text, *line, *end;
	size_t len;

	if (gxp_read_file(path, &text, &len, 64 << 20) == 0) {
		for (line = text; (end = strchr(line, '\n')) != NULL; line = end + 1) {
			char entry[GXP_ENTRY_MAX + 1], *sp;
			long long mark;

			*end = '\0';
			/* "ENTRY MARK": the entry has no space, and is at most
			 * GXP_ENTRY_MAX bytes */
			if ((sp = strchr(line, ' ')) == NULL || sp == line ||
			    (size_t)(sp - line) > GXP_ENTRY_MAX)
				continue;
			memcpy(entry, line, (size_t)(sp - line));
			entry[sp - line] = '\0';
			if (sscanf(sp + 1, "%lld", &mark) == 1 && mark >= 0 &&
			    mark_find(entry) == NULL)
				mark_add(entry, mark);
		}
		free(text);
	}
	free(path);
}

void
upgrade_mark(const char *entry, const char *dir, void *arg)
{
	char *path = xasprintf("%s/rows.at", dir), *text, *end;
	long long mark;
	size_t len;

	(void)arg;
	if (gxp_read_file(path, &text, &len, 64) == 0) {
		mark = strtoll(text, &end, 10);
		if (end != text && *end == '\n' && mark >= 0 && mark_find(entry) == NULL)
			mark_add(entry, mark);
		free(text);
	}
	free(path);
}

/* Where the captures table ended before this photo's row. */
void
remember_mark(struct photo *p)
{
	long long mark = store_mark(st, "captures");
	char buf[GXP_ENTRY_MAX + 32];
	int n;

	if (mark < 0)
		return;
	mark_forget(p->entry);
	mark_add(p->entry, mark);
	n = snprintf(buf, sizeof buf, "%s %lld\n", p->entry, mark);
	if (marks_fd == -1 || gxp_write_all(marks_fd, buf, (size_t)n) == -1)
		gxp_log(LOG_WARN, "%s/work/%s: %s", spool, MARKS, strerror(errno));
	else
		marks_written++;
}

long long
recall_mark(struct photo *p)
{
	struct name **pp = mark_find(p->entry);

	return pp ? strtoll((*pp)->s + strlen(p->entry) + 1, NULL, 10) : -1;
}
