/* map.c: a hash map from strings to pointers, chained, doubling as it
 * fills.  Keys are copied. */
#include <stdlib.h>
#include <string.h>

#include "report.h"

struct ent {
	struct ent *next;
	uint64_t h;
	void *val;
	char key[];
};

struct map {
	struct ent **b;
	size_t nb, n;
};

static uint64_t
hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

struct map *
map_new(void)
{
	struct map *m = xcalloc(1, sizeof *m);

	m->nb = 64;
	m->b = xcalloc(m->nb, sizeof *m->b);
	return m;
}

static struct ent **
slot(const struct map *m, const char *key, uint64_t h)
{
	struct ent **pp = &m->b[h & (m->nb - 1)];

	while (*pp && ((*pp)->h != h || strcmp((*pp)->key, key) != 0))
		pp = &(*pp)->next;
	return pp;
}

void *
map_get(const struct map *m, const char *key)
{
	struct ent *e = *slot(m, key, hash(key));

	return e ? e->val : NULL;
}

static void
grow(struct map *m)
{
	size_t nb = m->nb * 2;
	struct ent **b = xcalloc(nb, sizeof *b);

	for (size_t i = 0; i < m->nb; i++)
		while (m->b[i]) {
			struct ent *e = m->b[i];

			m->b[i] = e->next;
			e->next = b[e->h & (nb - 1)];
			b[e->h & (nb - 1)] = e;
		}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

void *
map_put(struct map *m, const char *key, void *val)
{
	uint64_t h = hash(key);
	struct ent **pp = slot(m, key, h), *e;
	void *old;

	if (*pp) {
		old = (*pp)->val;
		(*pp)->val = val;
		return old;
	}
	e = xmalloc(sizeof *e + strlen(key) + 1);
	strcpy(e->key, key);
	e->h = h;
	e->val = val;
	e->next = NULL;
	*pp = e;
	if (++m->n > m->nb)
		grow(m);
	return NULL;
}

void *
map_del(struct map *m, const char *key)
{
	struct ent **pp = slot(m, key, hash(key)), *e = *pp;
	void *val;

	if (e == NULL)
		return NULL;
	*pp = e->next;
	val = e->val;
	free(e);
	m->n--;
	return val;
}

size_t
map_count(const struct map *m)
{
	return m->n;
}

void
map_each(const struct map *m, void (*fn)(const char *, void *, void *), void *arg)
{
	for (size_t i = 0; i < m->nb; i++)
		for (struct ent *e = m->b[i]; e; e = e->next)
			fn(e->key, e->val, arg);
}

void
map_free(struct map *m, void (*free_val)(void *))
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nb; i++)
		while (m->b[i]) {
			struct ent *e = m->b[i];

			m->b[i] = e->next;
			if (free_val)
				free_val(e->val);
			free(e);
		}
	free(m->b);
	free(m);
}
