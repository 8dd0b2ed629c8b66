/*
 * dot.c - graph export: the graph that produced a tensor, as Graphviz DOT.
 *
 * Walks from y's producer back through the inputs' producers; one DOT node
 * per op (the name of its output, the op, its constants from the descriptor)
 * and per leaf tensor (its name); every edge carries the input's role, the
 * value flowing along it and, after backward, the gradient its consumer sent
 * back along it (node->in_grad). Reads the graph only: changes nothing.
 */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ---- numbers ---------------------------------------------------------------------- */

/* v in the fewest significant digits (at most max) that read back as the
 * same double, or the same float when single, and without an exponent below
 * 1e17: 2.2, 110.00000000000001, 650, 1e-05. buf holds NUM_STR bytes. */
enum { NUM_STR = 32, FULL = 17 };
static void fmt_g(char *buf, int digits, double v)
{
	int len = snprintf(buf, NUM_STR, "%.*g", digits, v); /* 17 digits: 24 bytes */
	assert(len < NUM_STR);
	(void)len;
}

static const char *num_str(double v, bool single, int max, char *buf)
{
	int digits = 1;
	while (digits < max) {
		fmt_g(buf, digits, v);
		double back = strtod(buf, NULL);
		if (!isfinite(v) || (single ? (float)back == (float)v : back == v))
			break;
		digits++;
	}
	int exp10 = v != 0 && isfinite(v) ? (int)floor(log10(fabs(v))) : 0;
	if (exp10 >= digits && exp10 < FULL)
		digits = exp10 + 1; /* 650, not 6.5e+02 */
	fmt_g(buf, digits, v);
	return buf;
}

int tg_describe_num(char *buf, size_t size, const char *prefix, double v)
{
	char s[NUM_STR];
	return snprintf(buf, size, "%s%s", prefix, num_str(v, false, FULL, s));
}

int tg_describe_ints(char *buf, size_t size, const char *prefix, const int64_t *v, int64_t n)
{
	enum { SHOWN = 8 };
	if (!v)
		return 0;
	int len = snprintf(buf, size, "%s[", prefix);
	for (int64_t i = 0; i < n && i < SHOWN && len >= 0 && (size_t)len < size; i++)
		len += snprintf(buf + len, size - (size_t)len, i ? ", %lld" : "%lld", (long long)v[i]);
	if (len >= 0 && (size_t)len < size)
		len += snprintf(buf + len, size - (size_t)len,
				n > SHOWN ? ", ...] (%lld)" : "]", (long long)n);
	return len;
}

/* ---- writing --------------------------------------------------------------------- */

enum {
	SMALL = 4, /* tensors up to this many elements are shown in full */
	FEW = 64,  /* up to this many, by shape and their first SMALL values */
};

/* s inside a DOT string: quotes and backslashes escaped, newlines as \n */
static void put_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\n') {
			fputs("\\n", f);
			continue;
		}
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
}

static double value_at(const tg_tensor *t, size_t i)
{
	switch (t->dtype) {
	case TG_F64:
		return ((const double *)t->data)[i];
	case TG_F32:
		return ((const float *)t->data)[i];
	case TG_I32:
		return ((const int32_t *)t->data)[i];
	case TG_I64:
		return (double)((const int64_t *)t->data)[i];
	}
	return NAN;
}

/* The first n values of t; one value is shown in full, several to 6 digits. */
static void put_values(FILE *f, const tg_tensor *t, size_t n)
{
	char buf[NUM_STR];
	int max = t->numel == 1 ? FULL : 6;
	fputc('[', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, i ? ", %s" : "%s",
			num_str(value_at(t, i), t->dtype == TG_F32, max, buf));
	fputs(n < t->numel ? ", ...]" : "]", f);
}

/* "220", "[1, 2, 3]", "(2,2) [1, 0, 0, 1]" for small tensors, "f64 (3,5) [1,
 * 2, 3, 4, ...]" for a few more, "f64 (100,784)" beyond */
static void put_value(FILE *f, const tg_tensor *t)
{
	char buf[TG_SHAPE_STR];
	if (t->ndim == 0) {
		char num[NUM_STR];
		fputs(num_str(value_at(t, 0), t->dtype == TG_F32, FULL, num), f);
		return;
	}
	if (t->numel <= SMALL) {
		if (t->ndim > 1)
			fprintf(f, "%s ", tg_shape_fmt(t->ndim, t->shape, buf));
		put_values(f, t, t->numel);
		return;
	}
	fprintf(f, "%s %s", tg_dtype_name(t->dtype), tg_shape_fmt(t->ndim, t->shape, buf));
	if (t->numel <= FEW) {
		fputc(' ', f);
		put_values(f, t, SMALL);
	}
}

static const tg_tensor *alive_or_null(const tg_tensor *t)
{
	return t && tg_tensor_alive(t) ? t : NULL;
}

/* The label of an edge: the role of the input it feeds ("" for none), the
 * value t it carries, then the gradient g sent back along it if any. */
static void put_edge_label(FILE *f, const char *role, const tg_tensor *t, const tg_tensor *g)
{
	fputs(" [label=\"", f);
	if (role && *role) {
		put_escaped(f, role);
		fputs(": ", f);
	}
	put_value(f, t);
	if (alive_or_null(g)) {
		fputs("\\ngrad ", f);
		put_value(f, g);
	}
	fputs("\"];\n", f);
}

/* An op's box: "name = op" when its output has a name, then its constants. */
static void put_op(FILE *f, const tg_node *n)
{
	char consts[256] = "";
	fprintf(f, "  n%llu [label=\"", (unsigned long long)n->index);
	if (n->out->name) {
		put_escaped(f, n->out->name);
		fputs(" = ", f);
	}
	put_escaped(f, n->op->name ? n->op->name : "?");
	if (n->op->describe && n->op->describe(n, consts, sizeof consts) > 0) {
		consts[sizeof consts - 1] = '\0';
		fputs("\\n", f);
		put_escaped(f, consts);
	}
	fputs("\"];\n", f);
}

/* The role of input i of n: the descriptor's name for it, or its number when
 * the op has several inputs and names none. */
static const char *role_of(const tg_node *n, int i, char *buf, size_t size)
{
	if (n->op->inputs)
		return n->op->inputs[i];
	if (n->nin < 2)
		return "";
	snprintf(buf, size, "#%d", i);
	return buf;
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
		put_escaped(f, t->name ? t->name : t->requires_grad ? "leaf" : "constant");
		fputs("\", shape=ellipse];\n", f);
	}
	snprintf(id, size, "l%zu", k);
	return 0;
}

static int write_graph(graph *g, const tg_tensor *y, FILE *f)
{
	char id[32], to[32], role[16];
	fputs("digraph tapegrad {\n  rankdir=LR;\n  node [shape=box];\n", f);
	for (size_t i = 0; i < g->n; i++)
		put_op(f, g->node[i]);
	for (size_t i = 0; i < g->n; i++) {
		const tg_node *n = g->node[i];
		snprintf(to, sizeof to, "n%llu", (unsigned long long)n->index);
		for (int j = 0; j < n->nin; j++) {
			if (put_source(g, f, n->in[j], id, sizeof id))
				return -1;
			fprintf(f, "  %s -> %s", id, to);
			put_edge_label(f, role_of(n, j, role, sizeof role), n->in[j],
				       n->in_grad[j]);
		}
	}
	if (put_source(g, f, y, id, sizeof id))
		return -1;
	fputs("  output [shape=plaintext];\n", f);
	fprintf(f, "  %s -> output", id);
	put_edge_label(f, "", y, y->grad);
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

static const char *file_kind(mode_t m)
{
	return S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device" :
	       S_ISBLK(m) ? "a block device" : S_ISFIFO(m) ? "a FIFO" :
	       S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* A new file "<path>.tmp.<pid>.<i>" for writing, made with O_EXCL so that
 * no other writer's temporary (nor a link planted there) is written; its
 * name into tmp (size bytes). The file's name is cut to its first
 * NAME_MAX - 32 bytes there, so that the temporary's name fits in NAME_MAX
 * whenever the file's does. NULL with errno set. */
static FILE *create_temp(const char *path, char *tmp, size_t size)
{
	const char *slash = strrchr(path, '/');
	size_t dir = slash ? (size_t)(slash + 1 - path) : 0, name = strlen(path) - dir;
	int keep = (int)(dir + (name < NAME_MAX - 32 ? name : NAME_MAX - 32));
	for (int i = 0; i < 1000; i++) {
		snprintf(tmp, size, "%.*s.tmp.%ld.%d", keep, path, (long)getpid(), i);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return NULL;
		FILE *f = fdopen(fd, "w");
		if (!f) {
			int err = errno;
			close(fd);
			unlink(tmp);
			errno = err;
		}
		return f;
	}
	errno = EEXIST;
	return NULL;
}

/* path, or when it is a symbolic link the file it finally leads to (which
 * may not exist yet), so that the link stays a link. malloc'd; NULL with
 * errno set (ELOOP after too many links). */
static char *follow_links(const char *path)
{
	char *p = strdup(path);
	for (int hops = 0; p && hops < 40; hops++) {
		struct stat st;
		if (lstat(p, &st) != 0 || !S_ISLNK(st.st_mode))
			return p;
		char target[PATH_MAX];
		ssize_t k = readlink(p, target, sizeof target - 1);
		if (k < 0) {
			free(p);
			return NULL;
		}
		target[k] = '\0';
		const char *slash = strrchr(p, '/');
		size_t dir = target[0] == '/' || !slash ? 0 : (size_t)(slash - p) + 1;
		char *next = malloc(dir + (size_t)k + 1);
		if (next) {
			memcpy(next, p, dir);
			memcpy(next + dir, target, (size_t)k + 1);
		}
		free(p);
		p = next;
	}
	if (p) {
		free(p);
		errno = ELOOP;
	}
	return NULL;
}

/* Written to a temporary beside the file, then renamed over it, so a
 * failed write leaves what was there. Only a regular file is replaced (the
 * rename would put the graph in the place of a device node, a FIFO or a
 * socket, and that is lost); a symbolic link is followed and stays. */
int tg_write_dot_file(const tg_tensor *y, const char *path)
{
	tg_ctx *ctx = tg_tensor_check("tg_write_dot_file", y);
	if (!ctx)
		return -1;
	if (!path) {
		tg_fail(ctx, TG_ENULL, "tg_write_dot_file: the path is NULL");
		return -1;
	}
	struct stat st;
	char *target = follow_links(path); /* malloc'd */
	if (!target) {
		tg_fail(ctx, errno == ENOMEM ? TG_ENOMEM : TG_EIO,
			"tg_write_dot_file: cannot follow %s: %s", path, strerror(errno));
		return -1;
	}
	const char *dst = target;
	int rc = -1;
	char *tmp = NULL;
	if (stat(dst, &st) == 0 && !S_ISREG(st.st_mode)) {
		tg_fail(ctx, TG_EIO, "tg_write_dot_file: cannot write %s: it is %s, not a regular file",
			dst, file_kind(st.st_mode));
		goto out_free_names;
	}
	size_t size = strlen(dst) + 40;
	tmp = tg_ctx_alloc(ctx, size);
	if (!tmp)
		goto out_free_names;
	FILE *f = create_temp(dst, tmp, size);
	if (!f) {
		tg_fail(ctx, TG_EIO, "tg_write_dot_file: cannot create %s: %s", tmp,
			strerror(errno));
		goto out_free_names;
	}
	rc = tg_write_dot(y, f);
	if (fclose(f) && rc == 0) {
		tg_fail(ctx, TG_EIO, "tg_write_dot_file: cannot write %s: %s", tmp,
			strerror(errno));
		rc = -1;
	}
	if (rc == 0 && rename(tmp, dst)) {
		tg_fail(ctx, TG_EIO, "tg_write_dot_file: cannot rename %s to %s: %s", tmp, dst,
			strerror(errno));
		rc = -1;
	}
	if (rc)
		remove(tmp);
out_free_names:
	tg_ctx_release(ctx, tmp);
	free(target);
	return rc;
}
