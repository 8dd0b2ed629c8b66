/*
 * index.c - indexing by index tensors: index_select and its adjoint
 * index_add, gather_rows and embedding built on them, pick (one element per
 * row), nll, and the constant one_hot.
 *
 * An index tensor (i32 or i64) carries its own length: every op checks the
 * count against the shape it indexes and each index against its range
 * before anything is read, and keeps a checked int64 copy in the step arena
 * with the node (aux), so the caller's tensor may change after the call.
 * Backward rules are written with ops; index_select and index_add are each
 * other's gradient, so both are twice differentiable.
 * Shape legend: x (..., A, ...) with A entries along the indexed axis; idx
 * holds n of them; pick's x is (N,K), one label per row.
 */
#include "internal.h"
#include "parallel.h"

#include <string.h>

/* ---- reading index tensors ---------------------------------------------------- */

static const char *idx_shape(const tg_tensor *idx, char *buf)
{
	return tg_shape_fmt(idx->ndim, idx->shape, buf);
}

/* idx's argument checks: NULL, stale, context, dtype, shape. */
static bool index_arg_ok(tg_ctx *ctx, const char *who, const char *name, const tg_tensor *idx,
			 int64_t count, bool any_shape)
{
	char buf[TG_SHAPE_STR];
	if (!idx) {
		tg_fail(ctx, TG_ENULL, "%s: %s is NULL", who, name);
		return false;
	}
	tg_ctx *c = tg_tensor_check(who, idx);
	if (!c) {
		tg_stale_elsewhere(ctx, who, idx, "%s", name);
		return false;
	}
	if (c != ctx) {
		tg_fail(ctx, TG_ECTX, "%s: %s belongs to another context", who, name);
		return false;
	}
	if (tg_dtype_is_float(idx->dtype)) {
		tg_fail(ctx, TG_EDTYPE, "%s: %s is %s %s; an index tensor is i32 or i64 (tg_labels, "
				       "tg_from_i32)",
			who, name, tg_dtype_name(idx->dtype), idx_shape(idx, buf));
		return false;
	}
	if (!any_shape && idx->ndim != 1) {
		tg_fail(ctx, TG_ESHAPE, "%s: %s is %s; expected one dimension", who, name,
			idx_shape(idx, buf));
		return false;
	}
	if (count >= 0 && idx->numel != (size_t)count) {
		tg_fail(ctx, TG_ESHAPE, "%s: %s %s has %zu entries; expected %lld", who, name,
			idx_shape(idx, buf), idx->numel, (long long)count);
		return false;
	}
	return true;
}

const int64_t *tg_indices(tg_ctx *ctx, const char *who, const char *name, const tg_tensor *idx,
			  int64_t count, bool any_shape, int64_t k)
{
	if (!index_arg_ok(ctx, who, name, idx, count, any_shape))
		return NULL;
	int64_t *copy = tg_arena_alloc(ctx, idx->numel * sizeof *copy);
	if (!copy)
		return NULL;
	for (size_t i = 0; i < idx->numel; i++) {
		int64_t v = idx->dtype == TG_I32 ? ((const int32_t *)idx->data)[i]
						 : ((const int64_t *)idx->data)[i];
		if (v < 0 || v >= k) {
			tg_fail(ctx, TG_EARG, "%s: %s[%zu] = %lld is outside [0, %lld)", who, name, i,
				(long long)v, (long long)k);
			return NULL;
		}
		copy[i] = v;
	}
	return copy;
}

/* ---- labels of classes along axis 1: (C) with (), (N,C) with (N), (N,C,d...) with (N,d...) */

static int class_axis(const tg_tensor *x) { return x->ndim == 1 ? 0 : 1; }

const int64_t *tg_class_labels(tg_ctx *ctx, const char *who, const char *xname,
			       const tg_tensor *x, const tg_tensor *labels)
{
	char buf[TG_SHAPE_STR], lbuf[TG_SHAPE_STR], want[TG_SHAPE_STR];
	if (x->ndim == 0) {
		tg_fail(ctx, TG_ESHAPE, "%s: %s %s must be (C), (N,C) or (N,C,d1,...)", who, xname,
			tg_shape_fmt(x->ndim, x->shape, buf));
		return NULL;
	}
	int a = class_axis(x);
	if (x->ndim == 2) /* (N) labels: the messages of every index argument */
		return tg_indices(ctx, who, "labels", labels, x->shape[0], false, x->shape[1]);
	if (!index_arg_ok(ctx, who, "labels", labels, -1, true))
		return NULL;
	int64_t rest[TG_MAX_DIMS];
	int m = tg_reduced_shape(x, a, false, rest);
	if (labels->ndim != m || memcmp(labels->shape, rest, (size_t)m * sizeof *rest)) {
		tg_fail(ctx, TG_ESHAPE, "%s: %s %s take labels of shape %s; labels are %s", who, xname,
			tg_shape_fmt(x->ndim, x->shape, buf), tg_shape_fmt(m, rest, want),
			tg_shape_fmt(labels->ndim, labels->shape, lbuf));
		return NULL;
	}
	return tg_indices(ctx, who, "labels", labels, -1, true, x->shape[a]);
}

tg_tensor *tg_class_rows(tg_tensor *x)
{
	if (x->ndim == 2)
		return x;
	int a = class_axis(x);
	int64_t k = x->shape[a], rows[2] = { (int64_t)(x->numel / (size_t)k), k };
	if (tg_view_along(x->ndim, x->shape, a).inner == 1)
		return tg_reshape(x, 2, rows); /* (C), or (N,C,1,...) */
	int perm[TG_MAX_DIMS];
	for (int i = 0, j = 0; i < x->ndim; i++)
		if (i != a)
			perm[j++] = i;
	perm[x->ndim - 1] = a;
	return tg_reshape(tg_permute(x, perm), 2, rows);
}

tg_tensor *tg_class_unrows(tg_tensor *rows, const tg_tensor *like)
{
	if (!rows || like->ndim == 2)
		return rows;
	int a = class_axis(like);
	if (tg_view_along(like->ndim, like->shape, a).inner == 1)
		return tg_reshape(rows, like->ndim, like->shape);
	int64_t shape[TG_MAX_DIMS];
	int perm[TG_MAX_DIMS], m = tg_reduced_shape(like, a, false, shape);
	shape[m] = like->shape[a];
	for (int i = 0; i < like->ndim; i++) /* the class axis back from last to a */
		perm[i] = i < a ? i : i == a ? like->ndim - 1 : i - 1;
	return tg_permute(tg_reshape(rows, like->ndim, shape), perm);
}

/* An index tensor's context, for functions that take no value tensor; NULL
 * (TG_ESTALE recorded where its header was given back) when it has none. */
static tg_ctx *index_ctx(const char *who, const tg_tensor *idx)
{
	if (idx && idx->magic != TG_TENSOR_MAGIC)
		return tg_tensor_check(who, idx);
	return idx ? idx->ctx : NULL;
}

/* ---- index_select: out[.., i, ..] = x[.., idx[i], ..]; dx = index_add(dout) ------- */
/* ---- index_add: out[.., idx[i], ..] += src[.., i, ..], out zero elsewhere with A
 *      entries along the axis; dsrc = index_select(dout) ------------------------ */
/* Both keep idx (n checked entries) as the node's aux and the axis as
 * attribute 0; index_add keeps A as attribute 1. */

static tg_tensor *select_along(tg_tensor *x, int axis, const int64_t *idx, int64_t n);
static tg_tensor *add_along(tg_tensor *src, int axis, const int64_t *idx, int64_t size);
static bool scatter(tg_tensor *out, const tg_tensor *src, int axis, const int64_t *idx);

/* dx is scattered straight into x's own gradient buffer when the engine
 * offers it (an embedding table's first gradient of a training step): no
 * step tensor of the table's size to clear, fill and then copy. */
static void index_select_backward(tg_node *n, tg_tensor *dout)
{
	int axis = (int)tg_node_attr(n, 0);
	tg_tensor *x = tg_node_input(n, 0);
	tg_tensor *buf = tg_node_grad_buffer(n, 0);
	if (buf && tg_ok(x->ctx)) {
		if (!scatter(buf, dout, axis, n->aux))
			return; /* the error is recorded; the walk stops */
		buf->version++;
		tg_node_grad(n, 0, buf);
		return;
	}
	tg_node_grad(n, 0, add_along(dout, axis, n->aux, x->shape[axis]));
}

static void index_add_backward(tg_node *n, tg_tensor *dout)
{
	int axis = (int)tg_node_attr(n, 0);
	tg_tensor *src = tg_node_input(n, 0);
	tg_node_grad(n, 0, select_along(dout, axis, n->aux, src->shape[axis]));
}

/* the axis and the indices kept with the node: "axis 1, idx [2, 0]"; index_add
 * adds "of 5", the size it scatters into */
static int select_describe(const tg_node *n, char *buf, size_t size)
{
	int axis = (int)tg_node_attr(n, 0);
	int len = snprintf(buf, size, "axis %d, ", axis);
	if (len < 0 || (size_t)len >= size)
		return len;
	return len + tg_describe_ints(buf + len, size - (size_t)len, "idx ", n->aux,
				      tg_node_output(n)->shape[axis]);
}

static int index_add_describe(const tg_node *n, char *buf, size_t size)
{
	int axis = (int)tg_node_attr(n, 0);
	int len = snprintf(buf, size, "axis %d, ", axis);
	if (len < 0 || (size_t)len >= size)
		return len;
	len += tg_describe_ints(buf + len, size - (size_t)len, "idx ", n->aux,
				tg_node_input(n, 0)->shape[axis]);
	if (len < 0 || (size_t)len >= size)
		return len;
	return len + snprintf(buf + len, size - (size_t)len, " of %lld",
			      (long long)tg_node_attr(n, 1));
}

static const tg_op index_select_op = { .name = "index_select", .backward = index_select_backward,
				       .describe = select_describe, .unread = TG_UNREAD_ALL };
static const tg_op index_add_op = { .name = "index_add", .backward = index_add_backward,
				    .describe = index_add_describe, .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(index_select_op);
TG_OP_REGISTER(index_add_op);

/* x seen as (outer, A, inner) around axis. */
static void split_at(const tg_tensor *x, int axis, size_t *outer, size_t *inner)
{
	*outer = 1;
	*inner = 1;
	for (int i = 0; i < axis; i++)
		*outer *= (size_t)x->shape[i];
	for (int i = axis + 1; i < x->ndim; i++)
		*inner *= (size_t)x->shape[i];
}

/* The gather: idx already checked against x's axis. */
/* Y's runs [lo, hi) of select_along, run r the run idx[r % n] of X's outer
 * slab r / n: a large gather (an embedding's rows) split across the
 * threads by output rows, each copied by one thread. */
typedef struct gather_job {
	const char *X;
	char *Y;
	const int64_t *idx;
	size_t n, A, run;
} gather_job;

/* PREFETCH: the row PF_AHEAD entries of idx on is asked for, its first
 * PF_LINES cache lines, while this one is copied or added: rows named at
 * random in a table larger than the cache each cost a trip to memory,
 * which the copy of the one before no longer waits for. One thread,
 * minima of three runs of 40, gathering rows of floats: 4096 of
 * (50000,128) 64 -> 54 us, 8192 of (20000,256) 740 -> 550, 16384 of
 * (100000,64) 225 -> 188, 65536 of (500000,32) 1181 -> 1120; their
 * backwards (the table's gradient cleared, then the scatter) 740 -> 473,
 * 1582 -> 1406, 1231 -> 825 and 3377 -> 2551 us. A table in the cache
 * times as before. The hardware's own prefetch takes a row's later
 * lines. */
enum { PF_AHEAD = 6, PF_LINES = 8 };

static inline void prefetch_row(const char *row, size_t bytes, int write)
{
	size_t lines = (bytes + 63) / 64;
	lines = lines < PF_LINES ? lines : PF_LINES;
	for (size_t l = 0; l < lines; l++)
		if (write)
			__builtin_prefetch(row + 64 * l, 1);
		else
			__builtin_prefetch(row + 64 * l, 0);
}

static void gather_part(void *arg, size_t lo, size_t hi)
{
	const gather_job *j = arg;
	size_t o = lo / j->n, i = lo % j->n;
	const char *X = j->X + o * j->A * j->run;
	char *Y = j->Y + lo * j->run;
	for (size_t r = lo; r < hi; r++, Y += j->run) {
		if (i + PF_AHEAD < j->n)
			prefetch_row(X + (size_t)j->idx[i + PF_AHEAD] * j->run, j->run, 0);
		memcpy(Y, X + (size_t)j->idx[i] * j->run, j->run);
		if (++i == j->n) {
			i = 0;
			X += j->A * j->run;
		}
	}
}

static tg_tensor *select_along(tg_tensor *x, int axis, const int64_t *idx, int64_t n)
{
	static const char who[] = "tg_index_select";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	int64_t shape[TG_MAX_DIMS];
	memcpy(shape, x->shape, sizeof shape);
	shape[axis] = n;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, x->ndim, shape);
	if (!out)
		return NULL;
	size_t outer, inner, size = tg_dtype_size(x->dtype);
	split_at(x, axis, &outer, &inner);
	size_t run = inner * size;
	gather_job j = { x->data, out->data, idx, (size_t)n, (size_t)x->shape[axis], run };
	size_t min = (TG_PAR_MIN * sizeof(float) + run - 1) / run;
	tg_parallel_for(ctx, outer * (size_t)n, min, 1, gather_part, &j);
	const double attr[1] = { axis };
	return tg_op_end(&index_select_op, out, 1, &x, attr, 1, idx);
}

/* out = zeros, then out[.., idx[i], ..] += src[.., i, ..]. The entries go in
 * idx's order, each row taking 0 + the first entry idx sends there (stored,
 * not added to what the row held) and then the later ones added: the bits
 * of clearing out and adding every entry in turn (0 + -0 is +0). Where idx
 * names a quarter of the rows or more and they are long (SCATTER_ROW_MIN
 * bytes or more), only the others are cleared, so the rows that take
 * entries are written once instead of cleared, read back and written again
 * (gather_rows of 8192 of 20000 rows of 256 floats, forward and backward:
 * 6.28 -> 5.32 ms). With fewer rows named, out is cleared in one pass,
 * which glibc's memset writes past the cache: clearing the runs between
 * 4096 of 50000 rows of 128 floats one by one took 8% longer. */
typedef struct scatter_job {
	const char *src;
	char *out;
	const int64_t *idx;
	const int64_t *first; /* first[r]: idx's first entry for row r, or -1;
			       * NULL when out is cleared whole */
	int64_t n;	      /* idx's length */
	size_t outer, A, inner, es;
	bool by_outer; /* the adds split by outer slices, not by columns */
} scatter_job;

enum { SCATTER_ROW_MIN = 256, SCATTER_NAMED_PART = 4 };

/* Y[.., idx[i], ..] += S[.., i, ..] for the outer slices [o0, o1) and in
 * each the columns [j0, j1) of inner (with first, the first entry of each
 * row stored instead): each element takes its entries in idx's order,
 * whichever slices and columns share the call. The row
 * PF_AHEAD entries on is asked for meanwhile (PREFETCH). */
#define PREFETCH_ROW(e) prefetch_row((const char *)(Y + (size_t)idx[e] * inner + j0), row, 1)
#define INDEX_ADD_KERNEL(name, T)                                                          \
	static void name(const scatter_job *j, size_t o0, size_t o1, size_t j0, size_t j1) \
	{                                                                                  \
		const size_t A = j->A, inner = j->inner;                                   \
		const T *S = (const T *)(const void *)j->src + o0 * (size_t)j->n * inner;  \
		T *Y = (T *)(void *)j->out + o0 * A * inner;                               \
		const int64_t *idx = j->idx, *first = j->first;                            \
		const size_t row = (j1 - j0) * sizeof(T);                                  \
		for (size_t o = o0; o < o1; o++, Y += A * inner) {                         \
			if (!first) {                                                      \
				for (int64_t i = 0; i < j->n; i++, S += inner) {           \
					T *y = Y + (size_t)idx[i] * inner;                 \
					if (i + PF_AHEAD < j->n)                           \
						PREFETCH_ROW(i + PF_AHEAD);                \
					for (size_t k = j0; k < j1; k++)                   \
						y[k] += S[k];                              \
				}                                                          \
				continue;                                                  \
			}                                                                  \
			for (int64_t i = 0; i < j->n; i++, S += inner) {                   \
				T *y = Y + (size_t)idx[i] * inner;                         \
				if (i + PF_AHEAD < j->n)                                   \
					PREFETCH_ROW(i + PF_AHEAD);                        \
				if (first[idx[i]] != i)                                    \
					for (size_t k = j0; k < j1; k++)                   \
						y[k] += S[k];                              \
				else                                                       \
					for (size_t k = j0; k < j1; k++)                   \
						y[k] = (T)0 + S[k];                        \
			}                                                                  \
		}                                                                          \
	}

INDEX_ADD_KERNEL(index_add_f64, double)
INDEX_ADD_KERNEL(index_add_f32, float)

/* the columns [lo, hi) of every slice, or with by_outer the slices [lo, hi) */
static void index_add_part(void *arg, size_t lo, size_t hi)
{
	const scatter_job *j = arg;
	size_t o0 = 0, o1 = j->outer, j0 = lo, j1 = hi;
	if (j->by_outer) {
		o0 = lo;
		o1 = hi;
		j0 = 0;
		j1 = j->inner;
	}
	if (j->es == 8)
		index_add_f64(j, o0, o1, j0, j1);
	else
		index_add_f32(j, o0, o1, j0, j1);
}

/* bytes [lo, hi) of out cleared */
static void clear_part(void *arg, size_t lo, size_t hi)
{
	const scatter_job *j = arg;
	memset(j->out + lo, 0, hi - lo);
}

/* rows [lo, hi) of out (outer times A) cleared where idx names none, each
 * run of them by one memset */
static void clear_rows_part(void *arg, size_t lo, size_t hi)
{
	const scatter_job *j = arg;
	const size_t bytes = j->inner * j->es;
	for (size_t u = lo; u < hi;) {
		if (j->first[u % j->A] >= 0) {
			u++;
			continue;
		}
		size_t v = u + 1;
		while (v < hi && j->first[v % j->A] < 0)
			v++;
		memset(j->out + u * bytes, 0, (v - u) * bytes);
		u = v;
	}
}

/* out = zeros, then out[.., idx[i], ..] += src[.., i, ..]: src has n =
 * len(idx) entries along axis, out its own size there. Both passes split
 * across the threads when large: the clearing by bytes or rows, the adds
 * by columns of inner (an embedding table's gradient: its columns), so
 * that repeated indices still add in order. False after recording a
 * failed allocation. */
static bool scatter(tg_tensor *out, const tg_tensor *src, int axis, const int64_t *idx)
{
	tg_ctx *ctx = out->ctx;
	scatter_job j = { src->data, out->data, idx, NULL, src->shape[axis], 0,
			  (size_t)out->shape[axis], 0, tg_dtype_size(out->dtype), false };
	split_at(src, axis, &j.outer, &j.inner);
	size_t rows = j.outer * j.A, bytes = j.inner * j.es;
	if (bytes >= SCATTER_ROW_MIN && (size_t)j.n >= j.A / SCATTER_NAMED_PART) {
		int64_t *first = tg_arena_array(ctx, "index_add: rows", TG_I64, (int64_t)j.A, 1, 1);
		if (!first)
			return false;
		for (size_t r = 0; r < j.A; r++)
			first[r] = -1;
		size_t named = 0; /* rows idx names */
		for (int64_t i = 0; i < j.n; i++)
			if (first[idx[i]] < 0)
				first[idx[i]] = i, named++;
		if (named >= j.A / SCATTER_NAMED_PART)
			j.first = first;
	}
	if (j.first)
		tg_parallel_for(ctx, rows, (TG_PAR_MIN * j.es + bytes - 1) / bytes, 1,
				clear_rows_part, &j);
	else
		tg_parallel_for(ctx, out->numel * j.es, TG_PAR_MIN * j.es, TG_LINE, clear_part, &j);
	if (!src->numel)
		return true;
	size_t per = src->numel / j.inner, min = (TG_PAR_MIN + per - 1) / per;
	min = min > 16 ? min : 16;
	if (tg_parallel_parts(ctx, j.inner, min) == 1 && j.outer > 1) {
		/* columns too few to split (index_select along the last axis):
		 * the outer slices, each with rows of its own */
		per = src->numel / j.outer;
		min = (TG_PAR_MIN + per - 1) / per;
		j.by_outer = true;
		tg_parallel_for(ctx, j.outer, min > 2 ? min : 2, 1, index_add_part, &j);
		return true;
	}
	tg_parallel_for(ctx, j.inner, min, 16, index_add_part, &j);
	return true;
}

/* The scatter as an op: src has n = len(idx) entries along axis, out has
 * size. */
static tg_tensor *add_along(tg_tensor *src, int axis, const int64_t *idx, int64_t size)
{
	static const char who[] = "index_add";
	tg_ctx *ctx = tg_op_begin(who, 1, &src);
	if (!ctx)
		return NULL;
	int64_t shape[TG_MAX_DIMS];
	memcpy(shape, src->shape, sizeof shape);
	shape[axis] = size;
	tg_tensor *out = tg_tensor_new(ctx, who, src->dtype, src->ndim, shape);
	if (!out)
		return NULL;
	if (!scatter(out, src, axis, idx))
		return NULL;
	const double attr[2] = { axis, (double)size };
	return tg_op_end(&index_add_op, out, 1, &src, attr, 2, idx);
}

/* Checks x and axis for who; returns the axis counted from 0, or -1. */
static int axis_of(tg_ctx *ctx, const char *who, const tg_tensor *x, int axis)
{
	char buf[TG_SHAPE_STR];
	int a = axis < 0 ? axis + x->ndim : axis;
	if (x->ndim < 1) {
		tg_fail(ctx, TG_ESHAPE, "%s: x is a scalar %s; it has no axis to index", who,
			tg_shape_fmt(x->ndim, x->shape, buf));
		return -1;
	}
	if (a < 0 || a >= x->ndim) {
		tg_fail(ctx, TG_EARG, "%s: axis %d is out of range for x %s", who, axis,
			tg_shape_fmt(x->ndim, x->shape, buf));
		return -1;
	}
	return a;
}

static tg_tensor *index_select(const char *who, tg_tensor *x, int axis, const tg_tensor *idx)
{
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	int a = axis_of(ctx, who, x, axis);
	if (a < 0)
		return NULL;
	const int64_t *saved = tg_indices(ctx, who, "idx", idx, -1, false, x->shape[a]);
	return saved ? select_along(x, a, saved, (int64_t)idx->numel) : NULL;
}

tg_tensor *tg_index_select(tg_tensor *x, int axis, const tg_tensor *idx)
{
	return index_select("tg_index_select", x, axis, idx);
}

tg_tensor *tg_gather_rows(tg_tensor *x, const tg_tensor *idx)
{
	return index_select("tg_gather_rows", x, 0, idx);
}

/* ---- embedding: table (V,D), idx (...) -> (..., D); rows of the table -------------- */
/* index_select along axis 0 with the flattened indices, reshaped: repeated
 * indices accumulate in the table's gradient through index_add. */

tg_tensor *tg_embedding(tg_tensor *table, const tg_tensor *idx)
{
	static const char who[] = "tg_embedding";
	tg_ctx *ctx = tg_op_begin(who, 1, &table);
	if (!ctx)
		return NULL;
	if (table->ndim != 2) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: table is %s; expected (V,D)", who,
			       tg_shape_fmt(table->ndim, table->shape, buf));
	}
	const int64_t *saved = tg_indices(ctx, who, "idx", idx, -1, true, table->shape[0]);
	if (!saved)
		return NULL;
	if (idx->ndim + 1 > TG_MAX_DIMS) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: idx %s has %d dimensions; at most %d", who,
			       idx_shape(idx, buf), idx->ndim, TG_MAX_DIMS - 1);
	}
	int64_t shape[TG_MAX_DIMS];
	memcpy(shape, idx->shape, (size_t)idx->ndim * sizeof *shape);
	shape[idx->ndim] = table->shape[1];
	tg_tensor *rows = select_along(table, 0, saved, (int64_t)idx->numel);
	return tg_reshape(rows, idx->ndim + 1, shape);
}

/* ---- one_hot: (N,K) constant, 1 at [i, labels[i]]; no gradient ----------------- */

typedef struct one_hot_job {
	const int64_t *labels;
	char *Y;
	size_t k, es;
} one_hot_job;

/* rows [lo, hi) of the one-hot matrix */
static void one_hot_part(void *arg, size_t lo, size_t hi)
{
	const one_hot_job *j = arg;
	memset(j->Y + lo * j->k * j->es, 0, (hi - lo) * j->k * j->es);
	for (size_t i = lo; i < hi; i++) {
		size_t at = i * j->k + (size_t)j->labels[i];
		if (j->es == 8)
			((double *)(void *)j->Y)[at] = 1.0;
		else
			((float *)(void *)j->Y)[at] = 1.0f;
	}
}

/* split across the threads by rows when large */
tg_tensor *tg_one_hot_of(tg_ctx *ctx, tg_dtype dt, const int64_t *labels, int64_t n,
			 int64_t k)
{
	tg_tensor *out = tg_tensor_new(ctx, "tg_one_hot", dt, 2, (int64_t[]){ n, k });
	if (!out)
		return NULL;
	one_hot_job j = { labels, out->data, (size_t)k, tg_dtype_size(dt) };
	size_t min = (TG_PAR_MIN + (size_t)k - 1) / (size_t)k;
	tg_parallel_for(ctx, (size_t)n, min > 2 ? min : 2, 1, one_hot_part, &j);
	return out;
}

tg_tensor *tg_one_hot(const tg_tensor *labels, tg_dtype dt, int64_t k)
{
	static const char who[] = "tg_one_hot";
	tg_ctx *ctx = index_ctx(who, labels);
	if (!ctx || ctx->status != TG_OK)
		return NULL;
	if (!tg_dtype_is_float(dt))
		return tg_fail(ctx, TG_EDTYPE, "%s: dtype %s; a one-hot matrix is f32 or f64", who,
			       tg_dtype_name(dt));
	if (k <= 0)
		return tg_fail(ctx, TG_EARG, "%s: %lld classes; must be positive", who,
			       (long long)k);
	const int64_t *saved = tg_indices(ctx, who, "labels", labels, -1, false, k);
	return saved ? tg_one_hot_of(ctx, dt, saved, (int64_t)labels->numel, k) : NULL;
}

/* ---- pick: out[i] = x[i, idx[i]]; dx = where(one_hot(idx), dout[:, None], 0) ----- */
/* The one-hot is a constant mask; dout (N) reshaped to (N,1) broadcasts
 * over the K columns in the select. Keeps idx (N) as aux. tg_nll's pick
 * takes (N,C,d1,...) too, along axis 1, with idx (N,d1,...): the same with
 * a mask of x's shape and dout (N,1,d1,...). Row i of dx is
 * d_i at idx[i] and +0 elsewhere whatever d_i holds (an infinite or NaN d_i
 * stays in its column, as PyTorch's scatter into zeros). A plain backward
 * writes the rows in one pass, with no one-hot; a recorded one
 * (TG_CREATE_GRAPH) is the ops, with the same values. */

#define PICK_GRAD_KERNEL(name, T)                                                         \
	TG_HOT_LOOP static void name(const T *D, const int64_t *idx, T *G, int64_t K,     \
				     size_t inner, size_t r0, size_t r1)                  \
	{                                                                                 \
		const size_t slice = (size_t)K * inner;                                   \
		for (size_t i = r0; i < r1; i++) {                                        \
			T *g = G + i * slice;                                             \
			for (size_t k = 0; k < slice; k++)                                \
				g[k] = 0;                                                 \
			for (size_t q = 0; q < inner; q++)                                \
				g[(size_t)idx[i * inner + q] * inner + q] = D[i * inner + q]; \
		}                                                                         \
	}
PICK_GRAD_KERNEL(pick_grad_f64, double)
PICK_GRAD_KERNEL(pick_grad_f32, float)

typedef struct pick_grad_job {
	const void *D;
	const int64_t *idx;
	void *G;
	int64_t K;
	size_t inner;
	bool f64;
} pick_grad_job;

static void pick_grad_part(void *arg, size_t lo, size_t hi)
{
	const pick_grad_job *j = arg;
	if (j->f64)
		pick_grad_f64(j->D, j->idx, j->G, j->K, j->inner, lo, hi);
	else
		pick_grad_f32(j->D, j->idx, j->G, j->K, j->inner, lo, hi);
}

static tg_tensor *pick_grad(tg_tensor *x, tg_tensor *dout, const int64_t *idx)
{
	tg_tensor *dx = tg_tensor_like(x, "pick (backward)");
	if (!dx)
		return NULL;
	tg_view v = tg_view_along(x->ndim, x->shape, 1);
	const size_t each = (size_t)(v.n * v.inner);
	pick_grad_job j = { dout->data, idx, dx->data, v.n, (size_t)v.inner, x->dtype == TG_F64 };
	size_t min_rows = each ? (TG_PAR_MIN + each - 1) / each : 2;
	tg_parallel_for(x->ctx, (size_t)v.outer, min_rows > 1 ? min_rows : 2, 1, pick_grad_part, &j);
	return dx;
}

/* The constant mask of the picked elements of x: ones at idx along axis 1,
 * pick's plain gradient of ones */
static tg_tensor *pick_mask(tg_tensor *x, const int64_t *idx)
{
	int64_t shape[TG_MAX_DIMS];
	int ndim = tg_reduced_shape(x, 1, false, shape);
	tg_tensor *ones = tg_ones(x->ctx, x->dtype, ndim, shape);
	return ones ? pick_grad(x, ones, idx) : NULL;
}

static void pick_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	if (!x->ctx->grad_enabled) {
		TG_NODE_GRAD_INTO(n, 0, pick_grad(x, dout, n->aux));
		return;
	}
	int64_t shape[TG_MAX_DIMS]; /* dout with a 1 for axis 1, to broadcast */
	int ndim = tg_reduced_shape(x, 1, true, shape);
	tg_tensor *zero = tg_zeros(x->ctx, x->dtype, 0, NULL);
	TG_NODE_GRAD_INTO(n, 0, tg_where(pick_mask(x, n->aux), tg_reshape(dout, ndim, shape), zero));
}

/* the column picked in each row (or position): "idx [1, 0]" */
static int pick_describe(const tg_node *n, char *buf, size_t size)
{
	const tg_tensor *x = tg_node_input(n, 0);
	return tg_describe_ints(buf, size, "idx ", n->aux,
				(int64_t)(x->numel / (size_t)x->shape[1]));
}

static const tg_op pick_op = { .name = "pick", .backward = pick_backward,
			       .describe = pick_describe };
TG_OP_REGISTER(pick_op);

/* out[i] = x[i, idx[i]] for x (N,K) and N checked indices; for x
 * (N,C,d1,...) out[n,q] = x[n, idx[n,q], q], q the position in d1... */
static tg_tensor *pick_saved(tg_ctx *ctx, const char *who, tg_tensor *x, const int64_t *saved)
{
	int64_t shape[TG_MAX_DIMS];
	int ndim = tg_reduced_shape(x, 1, false, shape);
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, ndim, shape);
	if (!out)
		return NULL;
	tg_view v = tg_view_along(x->ndim, x->shape, 1);
	const int64_t K = v.n, Q = v.inner;
	for (int64_t o = 0; o < v.outer; o++) {
		const int64_t *lab = saved + o * Q;
		if (x->dtype == TG_F64) {
			const double *X = (const double *)x->data + o * K * Q;
			double *Y = (double *)out->data + o * Q;
			for (int64_t q = 0; q < Q; q++)
				Y[q] = X[lab[q] * Q + q];
		} else {
			const float *X = (const float *)x->data + o * K * Q;
			float *Y = (float *)out->data + o * Q;
			for (int64_t q = 0; q < Q; q++)
				Y[q] = X[lab[q] * Q + q];
		}
	}
	return tg_op_end(&pick_op, out, 1, &x, NULL, 0, saved);
}

tg_tensor *tg_pick(tg_tensor *x, const tg_tensor *idx)
{
	static const char who[] = "tg_pick";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	if (x->ndim != 2) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: x is %s; expected a 2-D (N,K)", who,
			       tg_shape_fmt(x->ndim, x->shape, buf));
	}
	const int64_t *saved = tg_indices(ctx, who, "idx", idx, x->shape[0], false, x->shape[1]);
	return saved ? pick_saved(ctx, who, x, saved) : NULL;
}

/* ---- nll: -mean logp[.., labels[..], ..] over the classes' axis; pick, mean, neg ---- */

tg_tensor *tg_nll(tg_tensor *logp, const tg_tensor *labels)
{
	static const char who[] = "tg_nll";
	tg_ctx *ctx = tg_op_begin(who, 1, &logp);
	if (!ctx)
		return NULL;
	const int64_t *saved = tg_class_labels(ctx, who, "logp", logp, labels);
	tg_tensor *x = !saved ? NULL : logp->ndim == 1 ? tg_class_rows(logp) : logp;
	return x ? tg_neg(tg_mean(pick_saved(ctx, who, x, saved))) : NULL;
}
