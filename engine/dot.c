/*
 * dot.c - graph export: the graph that produced a tensor, as Graphviz DOT.
 *
 * Walks from y's producer back through the inputs' producers; one DOT node
 * per op (its name) and per leaf tensor (its name, or "leaf"); every edge
 * carries the value flowing along it and, after backward, its gradient.
 * Reads the graph only: records nothing, changes nothing.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { SMALL = 4 }; /* tensors up to this many elements are shown in full */

/* ---- a set of pointers, each with the number it was given ------------------- */

typedef struct ptr_set {
	tg_ctx *ctx;
	const void **key;
	size_t *val;
	size_t cap;  /* a power of two */
	size_t n;
} ptr_set;

static size_t slot_of(const ptr_set *s, const void *p)
{
	size_t h = (size_t)((uintptr_t)p >> 4) * (size_t)0x9e3779b97f4a7c15ull;
	size_t i = h & (s->cap - 1);
	while (s->key[i] && s->key[i] != p)
		i = (i + 1) & (s->cap - 1);
	return i;
}

static int set_grow(ptr_set *s)
{
	size_t cap = s->cap ? s->cap * 2 : 64;
	const void **key = tg_ctx_alloc(s->ctx, cap * sizeof *key);
	size_t *val = tg_ctx_alloc(s->ctx, cap * sizeof *val);
	if (!key || !val) {
		tg_ctx_release(s->ctx, key);
		tg_ctx_release(s->ctx, val);
		return -1;
	}
	memset(key, 0, cap * sizeof *key);
	ptr_set old = *s;
	s->key = key;
	s->val = val;
	s->cap = cap;
	for (size_t i = 0; i < old.cap; i++) {
		if (old.key[i]) {
			size_t j = slot_of(s, old.key[i]);
			s->key[j] = old.key[i];
			s->val[j] = old.val[i];
		}
	}
	tg_ctx_release(s->ctx, old.key);
	tg_ctx_release(s->ctx, old.val);
	return 0;
}

/* Adds p numbered s->n if new. Returns 1 if added, 0 if present, -1 on
 * failure; *id is p's number. */
static int set_add(ptr_set *s, const void *p, size_t *id)
{
	if ((s->n + 1) * 2 > s->cap && set_grow(s))
		return -1;
	size_t i = slot_of(s, p);
	if (s->key[i]) {
		*id = s->val[i];
		return 0;
	}
	s->key[i] = p;
	s->val[i] = *id = s->n++;
	return 1;
}

static void set_free(ptr_set *s)
{
	tg_ctx_release(s->ctx, s->key);
	tg_ctx_release(s->ctx, s->val);
}

/* ---- collecting the ops --------------------------------------------------------- */

typedef struct graph {
	tg_ctx *ctx;
	ptr_set nodes;    /* the ops seen */
	ptr_set leaves;   /* the leaf tensors seen, numbered l0, l1, ... */
	const tg_node **node; /* every op reachable from y */
	size_t n, cap;
} graph;

static int push(graph *g, const tg_node *n)
{
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		const tg_node **a = tg_ctx_alloc(g->ctx, cap * sizeof *a);
		if (!a)
			return -1;
		if (g->n)
			memcpy(a, g->node, g->n * sizeof *a);
		tg_ctx_release(g->ctx, g->node);
		g->node = a;
		g->cap = cap;
	}
	g->node[g->n++] = n;
	return 0;
}

/* Every node reachable from first: g->node is the work list, a node joins it
 * when first seen (no recursion; graphs can be deep). */
static int collect(graph *g, const tg_node *first)
{
	size_t id;
	int rc = set_add(&g->nodes, first, &id) < 0 ? -1 : push(g, first);
	for (size_t done = 0; rc == 0 && done < g->n; done++) {
		const tg_node *n = g->node[done];
		for (int i = 0; i < n->nin && rc == 0; i++) {
			const tg_node *p = n->in[i]->node;
			if (!p)
				continue;
			int added = set_add(&g->nodes, p, &id);
			if (added < 0)
				rc = -1;
			else if (added)
				rc = push(g, p);
		}
	}
	return rc;
}

static int by_index(const void *a, const void *b)
{
	const tg_node *x = *(const tg_node *const *)a, *y = *(const tg_node *const *)b;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* ---- writing --------------------------------------------------------------------- */

/* s inside a DOT string: quotes and backslashes escaped */
static void put_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
}

static double value_at(const tg_tensor *t, size_t i)
{
	return t->dtype == TG_F64 ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

/* "220", "[1, 2, 3]" for small tensors; "f64 (100,784)" for larger ones */
static void put_value(FILE *f, const tg_tensor *t)
{
	char buf[TG_SHAPE_STR];
	if (t->numel > SMALL) {
		fprintf(f, "%s %s", tg_dtype_name(t->dtype), tg_shape_fmt(t->ndim, t->shape, buf));
		return;
	}
	if (t->ndim == 0) {
		fprintf(f, "%.6g", value_at(t, 0));
		return;
	}
	fputc('[', f);
	for (size_t i = 0; i < t->numel; i++)
		fprintf(f, i ? ", %.6g" : "%.6g", value_at(t, i));
	fputc(']', f);
}

/* The label of the edge carrying t: its value, then its gradient if any. */
static void put_edge_label(FILE *f, const tg_tensor *t)
{
	fputs(" [label=\"", f);
	put_value(f, t);
	if (t->grad && tg_tensor_alive(t->grad)) {
		fputs("\\ngrad ", f);
		put_value(f, t->grad);
	}
	fputs("\"];\n", f);
}

/* Writes "n<index>" for an op's output, "l<k>" for a leaf, declaring the
 * leaf the first time it is seen. */
static int put_source(graph *g, FILE *f, const tg_tensor *t, char *id, size_t size)
{
	if (t->node) {
		snprintf(id, size, "n%llu", (unsigned long long)t->node->index);
		return 0;
	}
	size_t k;
	int added = set_add(&g->leaves, t, &k);
	if (added < 0)
		return -1;
	if (added) {
		fprintf(f, "  l%zu [label=\"", k);
		put_escaped(f, t->name ? t->name : "leaf");
		fputs("\", shape=ellipse];\n", f);
	}
	snprintf(id, size, "l%zu", k);
	return 0;
}

static int write_graph(graph *g, const tg_tensor *y, FILE *f)
{
	char id[32], to[32];
	fputs("digraph tapegrad {\n  rankdir=LR;\n  node [shape=box];\n", f);
	for (size_t i = 0; i < g->n; i++) {
		const tg_node *n = g->node[i];
		fprintf(f, "  n%llu [label=\"", (unsigned long long)n->index);
		put_escaped(f, n->op->name ? n->op->name : "?");
		fputs("\"];\n", f);
	}
	for (size_t i = 0; i < g->n; i++) {
		const tg_node *n = g->node[i];
		snprintf(to, sizeof to, "n%llu", (unsigned long long)n->index);
		for (int j = 0; j < n->nin; j++) {
			if (put_source(g, f, n->in[j], id, sizeof id))
				return -1;
			fprintf(f, "  %s -> %s", id, to);
			put_edge_label(f, n->in[j]);
		}
	}
	if (put_source(g, f, y, id, sizeof id))
		return -1;
	fputs("  output [shape=plaintext];\n", f);
	fprintf(f, "  %s -> output", id);
	put_edge_label(f, y);
	fputs("}\n", f);
	return 0;
}

int tg_write_dot(const tg_tensor *y, FILE *f)
{
	tg_ctx *ctx = tg_tensor_check("tg_write_dot", y);
	if (!ctx)
		return -1;
	if (!f) {
		tg_fail(ctx, TG_ENULL, "tg_write_dot: the FILE is NULL");
		return -1;
	}
	graph g = { .ctx = ctx, .nodes = { .ctx = ctx }, .leaves = { .ctx = ctx } };
	int rc = 0;
	if (y->node) {
		rc = collect(&g, y->node);
		if (rc == 0)
			qsort(g.node, g.n, sizeof *g.node, by_index);
	}
	if (rc == 0)
		rc = write_graph(&g, y, f);
	set_free(&g.nodes);
	set_free(&g.leaves);
	tg_ctx_release(ctx, g.node);
	if (rc == 0 && (fflush(f) || ferror(f))) {
		tg_fail(ctx, TG_EIO, "tg_write_dot: writing the graph failed: %s", strerror(errno));
		rc = -1;
	}
	return rc;
}

int tg_write_dot_file(const tg_tensor *y, const char *path)
{
	tg_ctx *ctx = tg_tensor_check("tg_write_dot_file", y);
	if (!ctx)
		return -1;
	if (!path) {
		tg_fail(ctx, TG_ENULL, "tg_write_dot_file: the path is NULL");
		return -1;
	}
	size_t len = strlen(path);
	char *tmp = tg_ctx_alloc(ctx, len + 5);
	if (!tmp)
		return -1;
	memcpy(tmp, path, len);
	memcpy(tmp + len, ".tmp", 5);
	int rc = -1;
	FILE *f = fopen(tmp, "w");
	if (!f) {
		tg_fail(ctx, TG_EIO, "tg_write_dot_file: cannot create %s: %s", tmp,
			strerror(errno));
		goto out_free_name;
	}
	rc = tg_write_dot(y, f);
	if (fclose(f) && rc == 0) {
		tg_fail(ctx, TG_EIO, "tg_write_dot_file: cannot write %s: %s", tmp,
			strerror(errno));
		rc = -1;
	}
	if (rc == 0 && rename(tmp, path)) {
		tg_fail(ctx, TG_EIO, "tg_write_dot_file: cannot rename %s to %s: %s", tmp, path,
			strerror(errno));
		rc = -1;
	}
	if (rc)
		remove(tmp);
out_free_name:
	tg_ctx_release(ctx, tmp);
	return rc;
}
