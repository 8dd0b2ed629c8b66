/*
 * reduce.c - reductions: sum, mean and max over all elements or along one
 * axis. (sum_to and expand, which the reverse walk itself needs, live in
 * engine/grad.c.)
 *
 * Sums accumulate in double for both dtypes. Backward rules are written with
 * ops (expand, reshape, mul by a mask), so a TG_CREATE_GRAPH backward records
 * them; the shares of max (which elements take its gradient) are constants
 * of the backward pass.
 * Shape legend: x (..., n, ...) reduced along the axis of length n, seen as
 * (outer, n, inner).
 */
#include "internal.h"
#include "hot_loop.h"
#include "parallel.h"

#include <math.h>
#include <string.h>

/* ---- the reduction kernels: x seen as (outer, n, inner) ------------------------ */

typedef struct view {
	int64_t outer, n, inner;
} view;

/* Y (outer, inner) = scale * sum over n, accumulated in double, for the
 * outer slices [o0, o1) and in each the columns [i0, i1) of inner. acc holds
 * inner doubles; with inner 1 (a sum over all elements, or along the last
 * axis) each slice is one run summed in a register, else its rows are
 * added into acc by tg_add_rows, so a column's sum has the same bits
 * whichever columns share the call. */
#define SUM_AXIS_KERNEL(name, T, sum_run, add_rows)                                       \
	TG_HOT_LOOP static void name(view v, const T *X, T *Y, double scale, double *acc, \
				     int64_t o0, int64_t o1, int64_t i0, int64_t i1)      \
	{                                                                                 \
		const int64_t in = v.inner, w = i1 - i0;                                  \
		for (int64_t o = o0; o < o1; o++) {                                       \
			const T *x = X + o * v.n * in + i0;                               \
			if (in == 1) {                                                    \
				Y[o] = (T)(sum_run(0, x, v.n) * scale);                   \
				continue;                                                 \
			}                                                                 \
			double *a = acc + i0;                                             \
			memset(a, 0, (size_t)w * sizeof(double));                         \
			add_rows(a, x, v.n, w, in);                                       \
			for (int64_t j = 0; j < w; j++)                                   \
				Y[o * in + i0 + j] = (T)(a[j] * scale);                   \
		}                                                                         \
	}

/* The value that wins a max: a larger one, or the first NaN (a NaN
 * propagates, as in NumPy). */
#define BEATS(a, b) ((a) > (b) || (isnan(a) && !isnan(b)))

/* An element that ties the max y of its slice: equal to it, or a NaN when
 * the max is NaN. */
#define TIES(x, y) ((x) == (y) || (isnan(x) && isnan(y)))

/* The max of a run X[0..n), n >= 1, with the bits of the plain loop
 * (y = X[0], then X[k] wherever it BEATS y): tg_max_run's sixteen running
 * maxima and a pass that looks for NaNs, both vectorised, not one chain of
 * dependent compares. Where the winner is a NaN or a zero (values with more
 * than one encoding) it is the first element that ties it, as the plain
 * loop keeps the first. */
#define MAX_RUN(name, T, max_run)                                                    \
	static inline TG_ALWAYS_INLINE T name(const T *X, int64_t n)                 \
	{                                                                            \
		T y = max_run(X, n);                                                 \
		int has_nan = 0;                                                     \
		for (int64_t k = 0; k < n; k++)                                      \
			has_nan |= X[k] != X[k];                                     \
		if (!has_nan && y != 0)                                              \
			return y;                                                    \
		if (has_nan)                                                         \
			y = (T)NAN;                                                  \
		int64_t k = 0;                                                       \
		while (!TIES(X[k], y))                                               \
			k++;                                                         \
		return X[k];                                                         \
	}

/* Y (outer, inner) = max over n for the slices [o0, o1); NaN if the slice
 * holds one. */
#define MAX_AXIS_KERNEL(name, T, max_run)                                            \
	TG_HOT_LOOP static void name(view v, const T *X, T *Y, int64_t o0, int64_t o1) \
	{                                                                            \
		if (v.inner == 1) {                                                  \
			for (int64_t o = o0; o < o1; o++)                            \
				Y[o] = max_run(X + o * v.n, v.n);                    \
			return;                                                      \
		}                                                                    \
		for (int64_t o = o0; o < o1; o++) {                                  \
			T *y = Y + o * v.inner;                                      \
			const T *Xo = X + o * v.n * v.inner;                         \
			for (int64_t i = 0; i < v.inner; i++)                        \
				y[i] = Xo[i];                                        \
			for (int64_t k = 1; k < v.n; k++) {                          \
				const T *x = Xo + k * v.inner;                       \
				for (int64_t i = 0; i < v.inner; i++)                \
					if (BEATS(x[i], y[i]))                       \
						y[i] = x[i];                         \
			}                                                            \
		}                                                                    \
	}

/* M (outer, n, inner) = 1/c at each of the c elements of a slice that tie
 * its max, 0 elsewhere; times the slice's dout when D (outer, inner) is
 * given, the product rounded once as share * dout rounds it (0 * dout
 * included: a signed zero, or NaN for an infinite dout). For the slices
 * [o0, o1); the scratch rows y, c and share hold inner values for each
 * slice (outer x inner each), so that a split's parts share none. Each
 * column's 1/c is divided once. */
#define MAX_SHARE_KERNEL(name, T, max_run)                                           \
	TG_HOT_LOOP static void name(view v, const T *X, const T *D, T *M, T *y0,    \
				     int64_t *c0, T *s0, int64_t o0, int64_t o1)     \
	{                                                                            \
		const int64_t in = v.inner;                                          \
		if (in == 1) { /* runs: each row's max, then its ties */             \
			for (int64_t o = o0; o < o1; o++) {                          \
				const T *Xo = X + o * v.n;                           \
				T *Mo = M + o * v.n;                                 \
				const T m = max_run(Xo, v.n);                        \
				int64_t ties = 0;                                    \
				for (int64_t k = 0; k < v.n; k++)                    \
					ties += TIES(Xo[k], m);                      \
				const T sh = (T)(1.0 / (double)ties);                \
				const T d = D ? D[o] : 1; /* share * 1: exact */     \
				for (int64_t k = 0; k < v.n; k++)                    \
					Mo[k] = (TIES(Xo[k], m) ? sh : 0) * d;       \
			}                                                            \
			return;                                                      \
		}                                                                    \
		for (int64_t o = o0; o < o1; o++) {                                  \
			const T *Xo = X + o * v.n * in;                              \
			T *Mo = M + o * v.n * in, *y = y0 + o * in, *share = s0 + o * in; \
			int64_t *c = c0 + o * in;                                    \
			for (int64_t i = 0; i < in; i++) {                          \
				y[i] = Xo[i];                                        \
				c[i] = 0;                                            \
			}                                                            \
			for (int64_t k = 1; k < v.n; k++)                            \
				for (int64_t i = 0; i < in; i++)                    \
					if (BEATS(Xo[k * in + i], y[i]))             \
						y[i] = Xo[k * in + i];               \
			for (int64_t k = 0; k < v.n; k++)                            \
				for (int64_t i = 0; i < in; i++)                    \
					c[i] += TIES(Xo[k * in + i], y[i]);          \
			for (int64_t i = 0; i < in; i++)                            \
				share[i] = (T)(1.0 / (double)c[i]);                  \
			const T *d = D ? D + o * in : NULL;                          \
			for (int64_t k = 0; k < v.n; k++)                            \
				for (int64_t i = 0; i < in; i++) {                  \
					T s = TIES(Xo[k * in + i], y[i]) ? share[i] : 0; \
					Mo[k * in + i] = d ? s * d[i] : s;           \
				}                                                    \
		}                                                                    \
	}

SUM_AXIS_KERNEL(sum_axis_f64, double, tg_sum_run_f64, tg_add_rows_f64)
SUM_AXIS_KERNEL(sum_axis_f32, float, tg_sum_run_f32, tg_add_rows_f32)
MAX_RUN(max_run_f64, double, tg_max_run_f64)
MAX_RUN(max_run_f32, float, tg_max_run_f32)
MAX_AXIS_KERNEL(max_axis_f64, double, max_run_f64)
MAX_AXIS_KERNEL(max_axis_f32, float, max_run_f32)
MAX_SHARE_KERNEL(max_share_f64, double, max_run_f64)
MAX_SHARE_KERNEL(max_share_f32, float, max_run_f32)

/* ---- split across the threads ----------------------------------------------- */
/* Each slice (or column) is reduced whole by one thread, in the order of one
 * pass, so a split gives the bits of one pass. A sum of a single run (over
 * all elements, or along an axis with nothing outside it) of more than
 * TG_SUM_BLOCK elements is summed in fixed blocks whose sums are then added
 * in order (tg_parallel_sum): the blocks depend on the length alone, so the
 * result has the same bits for every thread count. (Runs are summed by
 * tg_sum_run, in sixteen interleaved partial sums.) */

typedef struct reduce_job {
	view v;
	const void *X;
	void *Y;
	double scale;
	double *acc;
	bool f64;
	bool by_col;	  /* parts are columns of inner (every slice), else slices */
	int64_t parts;	  /* slice groups: their number, each with its own acc */
} reduce_job;

static void sum_part(void *arg, size_t lo, size_t hi)
{
	const reduce_job *j = arg;
	int64_t o0 = 0, o1 = j->v.outer, i0 = 0, i1 = j->v.inner;
	if (j->by_col) {
		i0 = (int64_t)lo;
		i1 = (int64_t)hi;
	} else {
		o0 = (int64_t)lo;
		o1 = (int64_t)hi;
	}
	if (j->f64)
		sum_axis_f64(j->v, j->X, j->Y, j->scale, j->acc, o0, o1, i0, i1);
	else
		sum_axis_f32(j->v, j->X, j->Y, j->scale, j->acc, o0, o1, i0, i1);
}

/* Groups [lo, hi) of slices: group g takes slices [g outer / parts,
 * (g + 1) outer / parts), adding its rows into its own inner doubles of
 * acc. */
static void group_part(void *arg, size_t lo, size_t hi)
{
	const reduce_job *j = arg;
	const int64_t in = j->v.inner;
	for (int64_t g = (int64_t)lo; g < (int64_t)hi; g++) {
		int64_t o0 = g * j->v.outer / j->parts, o1 = (g + 1) * j->v.outer / j->parts;
		double *acc = j->acc + g * in;
		if (j->f64)
			sum_axis_f64(j->v, j->X, j->Y, j->scale, acc, o0, o1, 0, in);
		else
			sum_axis_f32(j->v, j->X, j->Y, j->scale, acc, o0, o1, 0, in);
	}
}

/* Elements [lo, lo + m) of a single run, for tg_parallel_sum */
TG_HOT_LOOP static double run_block(void *arg, size_t lo, size_t m)
{
	const reduce_job *j = arg;
	return j->f64 ? tg_sum_run_f64(0, (const double *)j->X + lo, (int64_t)m)
		      : tg_sum_run_f32(0, (const float *)j->X + lo, (int64_t)m);
}

/* Y = scale * sum of x over v's n, split across ctx's threads; false
 * after recording a failed allocation. */
static bool sum_axis(tg_ctx *ctx, view v, const tg_tensor *x, void *Y, double scale)
{
	reduce_job j = { v, x->data, Y, scale, NULL, x->dtype == TG_F64, false, 0 };
	size_t total = x->numel;
	if (v.outer == 1 && v.inner == 1 && total > TG_SUM_BLOCK) {
		double s = tg_parallel_sum(ctx, total, run_block, &j);
		if (j.f64)
			*(double *)Y = s * scale;
		else
			*(float *)Y = (float)(s * scale);
		return true;
	}
	if (v.inner == 1) { /* runs: split the slices */
		size_t per = (size_t)v.n, min = (TG_PAR_MIN + per - 1) / per;
		tg_parallel_for(ctx, (size_t)v.outer, min > 2 ? min : 2, 1, sum_part, &j);
		return true;
	}
	/* Slices of rows (an axis in the middle): groups of whole slices, as
	 * many as the parts a loop this long is cut into, when there are that
	 * many slices, each group with inner doubles of its own; the columns
	 * split instead reads a stretch of every row, and at 2 threads the sum
	 * of (64,512,64) over its middle axis took longer than at 1. */
	int parts = tg_parallel_parts(ctx, total, TG_PAR_MIN);
	if (parts > 1 && v.outer >= parts) {
		j.parts = parts;
		if (!(j.acc = tg_arena_alloc(ctx, (size_t)parts * (size_t)v.inner * sizeof(double))))
			return false;
		tg_parallel_for(ctx, (size_t)parts, 2, 1, group_part, &j);
		return true;
	}
	/* else the columns, each part with its own stretch of acc */
	if (!(j.acc = tg_arena_alloc(ctx, (size_t)v.inner * sizeof(double))))
		return false;
	j.by_col = true;
	size_t per = total / (size_t)v.inner, min = (TG_PAR_MIN + per - 1) / per;
	tg_parallel_for(ctx, (size_t)v.inner, min > 16 ? min : 16, 8, sum_part, &j);
	return true;
}

typedef struct max_job {
	view v;
	const void *X, *D;
	void *Y;	 /* the maxima, or the shares */
	void *y, *share; /* the shares' scratch rows */
	int64_t *c;
	bool f64;
} max_job;

static void max_part(void *arg, size_t lo, size_t hi)
{
	const max_job *j = arg;
	if (j->f64)
		max_axis_f64(j->v, j->X, j->Y, (int64_t)lo, (int64_t)hi);
	else
		max_axis_f32(j->v, j->X, j->Y, (int64_t)lo, (int64_t)hi);
}

static void share_part(void *arg, size_t lo, size_t hi)
{
	const max_job *j = arg;
	if (j->f64)
		max_share_f64(j->v, j->X, j->D, j->Y, j->y, j->c, j->share, (int64_t)lo,
			      (int64_t)hi);
	else
		max_share_f32(j->v, j->X, j->D, j->Y, j->y, j->c, j->share, (int64_t)lo,
			      (int64_t)hi);
}

/* Runs fn over j's slices, split across ctx's threads from TG_PAR_MIN
 * elements on. A split by columns (for few slices) was slower at 2 threads
 * than none: each part read a stretch of every row, across pages. */
static void max_split(tg_ctx *ctx, max_job *j, size_t numel, tg_range_fn fn)
{
	size_t per = numel / (size_t)j->v.outer, min = (TG_PAR_MIN + per - 1) / per;
	tg_parallel_for(ctx, (size_t)j->v.outer, min > 2 ? min : 2, 1, fn, j);
}

/* Y = max of x over v's n, the slices split across ctx's threads. */
static void max_axis(tg_ctx *ctx, view v, const tg_tensor *x, void *Y)
{
	max_job j = { .v = v, .X = x->data, .Y = Y, .f64 = x->dtype == TG_F64 };
	if (x->numel)
		max_split(ctx, &j, x->numel, max_part);
}

/* ---- the shared public-function shape ----------------------------------------- */
/* Node attributes: [0] the reduced axis, or -1 for all elements; [1] keepdim;
 * [2] the scale of a sum (1 for sum, 1/n for mean; unused by max). */

enum { SUM, MAX };

/* The (outer, n, inner) view of x for axis (-1: all elements). */
static view view_of(const tg_tensor *x, int axis)
{
	view v = { 1, (int64_t)x->numel, 1 };
	if (axis < 0)
		return v;
	v.n = x->shape[axis];
	for (int i = 0; i < axis; i++)
		v.outer *= x->shape[i];
	for (int i = axis + 1; i < x->ndim; i++)
		v.inner *= x->shape[i];
	return v;
}

/* axis counted from the front, or -1 after recording why. */
static int norm_axis(tg_ctx *ctx, const char *who, const tg_tensor *x, int axis)
{
	int a = axis < 0 ? axis + x->ndim : axis;
	if (a < 0 || a >= x->ndim) {
		char buf[TG_SHAPE_STR];
		tg_fail(ctx, TG_EARG, "%s: axis %d is out of range for shape %s (%d dimensions)",
			who, axis, tg_shape_fmt(x->ndim, x->shape, buf), x->ndim);
		return -1;
	}
	return a;
}

/* Reduces x along axis (all elements when all) with a sum scaled by 1/n
 * (mean) or with max, and records op. */
static tg_tensor *reduce(const tg_op *op, const char *who, int kind, bool mean,
			 tg_tensor *x, bool all, int axis, bool keepdim)
{
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	int a = -1;
	if (!all && (a = norm_axis(ctx, who, x, axis)) < 0)
		return NULL;
	int ndim = 0;
	int64_t shape[TG_MAX_DIMS];
	for (int i = 0; !all && i < x->ndim; i++) {
		if (i != a)
			shape[ndim++] = x->shape[i];
		else if (keepdim)
			shape[ndim++] = 1;
	}
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, ndim, shape);
	if (!out)
		return NULL;
	view v = view_of(x, a);
	double scale = mean ? 1.0 / (double)v.n : 1.0;
	if (kind == SUM) {
		if (!sum_axis(ctx, v, x, out->data, scale))
			return NULL;
	} else {
		max_axis(ctx, v, x, out->data);
	}
	const double attr[3] = { a, keepdim, scale };
	return tg_op_end(op, out, 1, &x, attr, 3, NULL);
}

/* dout with the reduced axis put back as a 1, so that it broadcasts against
 * x; a scalar (all elements) broadcasts as it is. */
static tg_tensor *unreduce(const tg_node *n, tg_tensor *dout)
{
	const tg_tensor *x = tg_node_input(n, 0);
	int axis = (int)tg_node_attr(n, 0);
	bool keepdim = tg_node_attr(n, 1) != 0;
	if (axis < 0 || keepdim)
		return dout;
	int64_t shape[TG_MAX_DIMS];
	for (int i = 0; i < x->ndim; i++)
		shape[i] = i == axis ? 1 : x->shape[i];
	return tg_reshape(dout, x->ndim, shape);
}

/* the reduced axis, counted from the front: "axis 1", "axis 0, keepdim" */
static int axis_describe(const tg_node *n, char *buf, size_t size)
{
	int axis = (int)tg_node_attr(n, 0);
	if (axis < 0)
		return 0;
	return snprintf(buf, size, "axis %d%s", axis, tg_node_attr(n, 1) != 0 ? ", keepdim" : "");
}

/* ---- sum, mean: dx = expand(dout) * scale (1, or 1/n for a mean) -------------- */

static void sum_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	double scale = tg_node_attr(n, 2);
	if (scale != 1.0)
		dout = tg_mul_scalar(dout, scale);
	TG_NODE_GRAD_INTO(n, 0, tg_expand(unreduce(n, dout), x->ndim, x->shape));
}

static const tg_op sum_op = { .name = "sum", .backward = sum_backward, .unread = TG_UNREAD_ALL };
static const tg_op mean_op = { .name = "mean", .backward = sum_backward, .unread = TG_UNREAD_ALL };
static const tg_op sum_axis_op = { .name = "sum_axis", .backward = sum_backward,
				   .describe = axis_describe, .unread = TG_UNREAD_ALL };
static const tg_op mean_axis_op = { .name = "mean_axis", .backward = sum_backward,
				    .describe = axis_describe, .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(sum_op);
TG_OP_REGISTER(mean_op);
TG_OP_REGISTER(sum_axis_op);
TG_OP_REGISTER(mean_axis_op);

tg_tensor *tg_sum(tg_tensor *x)
{
	return reduce(&sum_op, "tg_sum", SUM, false, x, true, 0, false);
}

tg_tensor *tg_mean(tg_tensor *x)
{
	return reduce(&mean_op, "tg_mean", SUM, true, x, true, 0, false);
}

tg_tensor *tg_sum_axis(tg_tensor *x, int axis, bool keepdim)
{
	return reduce(&sum_axis_op, "tg_sum_axis", SUM, false, x, false, axis, keepdim);
}

tg_tensor *tg_mean_axis(tg_tensor *x, int axis, bool keepdim)
{
	return reduce(&mean_axis_op, "tg_mean_axis", SUM, true, x, false, axis, keepdim);
}

/* ---- max: routes dout to the arg-max; ties split it: dx = share * dout ----------- */
/* Each slice's gradient goes to the elements equal to its max, split evenly
 * among them (c ties get dout / c each), as tg_maximum splits a tie; a
 * slice holding a NaN has max NaN, and its NaNs share the gradient. */

/* The constant shares of x for axis (-1: all elements), or, with dout,
 * the shares times dout: x's gradient in one pass instead of a shares
 * tensor and a product. No history. */
static tg_tensor *max_share(tg_tensor *x, int axis, const tg_tensor *dout)
{
	tg_tensor *m = tg_tensor_like(x, "max (backward)");
	if (!m)
		return NULL;
	view v = view_of(x, axis);
	size_t es = tg_dtype_size(x->dtype);
	/* split as max_axis splits, with scratch rows for each slice */
	max_job j = { .v = v, .X = x->data, .D = dout ? dout->data : NULL, .Y = m->data,
		      .f64 = x->dtype == TG_F64 };
	if (v.inner > 1) {
		size_t k = (size_t)(v.outer * v.inner);
		j.y = tg_arena_alloc(x->ctx, k * es);
		j.share = tg_arena_alloc(x->ctx, k * es);
		j.c = tg_arena_alloc(x->ctx, k * sizeof(int64_t));
		if (!j.y || !j.share || !j.c)
			return NULL;
	}
	if (x->numel)
		max_split(x->ctx, &j, x->numel, share_part);
	return m;
}

/* A plain backward routes dout in the shares' pass; a recorded one
 * (TG_CREATE_GRAPH) multiplies, so that dout's part carries history. Both
 * give the same bits. */
static void max_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	int axis = (int)tg_node_attr(n, 0);
	if (!x->ctx->grad_enabled) {
		TG_NODE_GRAD_INTO(n, 0, max_share(x, axis, dout));
		return;
	}
	tg_tensor *share = max_share(x, axis, NULL);
	tg_node_grad(n, 0, tg_mul(share, unreduce(n, dout)));
}

static const tg_op max_op = { .name = "max", .backward = max_backward };
static const tg_op max_axis_op = { .name = "max_axis", .backward = max_backward,
				   .describe = axis_describe };
TG_OP_REGISTER(max_op);
TG_OP_REGISTER(max_axis_op);

tg_tensor *tg_max(tg_tensor *x)
{
	return reduce(&max_op, "tg_max", MAX, false, x, true, 0, false);
}

tg_tensor *tg_max_axis(tg_tensor *x, int axis, bool keepdim)
{
	return reduce(&max_axis_op, "tg_max_axis", MAX, false, x, false, axis, keepdim);
}
