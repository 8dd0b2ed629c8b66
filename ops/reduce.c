/*
 * reduce.c - reductions: sum, mean and max over all elements or along one
 * axis, and the pair sum_to / expand that moves a tensor between a shape and
 * a shape it broadcasts to (the backward of every broadcasting op).
 *
 * Sums accumulate in double for both dtypes. Backward rules are written with
 * ops (expand, reshape, mul by a mask), so a TG_CREATE_GRAPH backward records
 * them; the shares of max (which elements take its gradient) are constants
 * of the backward pass.
 * Shape legend: x (..., n, ...) reduced along the axis of length n, seen as
 * (outer, n, inner).
 */
#include "internal.h"

#include <math.h>
#include <string.h>

/* ---- broadcasting a small shape into a big one ------------------------------ */

/* Where the elements of a small tensor sit in a big shape it broadcasts to:
 * the big shape padded on the left with 1s, and the small tensor's element
 * strides along it, 0 on broadcast axes (so s[INNER], the innermost, is 0 or 1). */
typedef struct bmap {
	int64_t dim[TG_MAX_DIMS];
	int64_t s[TG_MAX_DIMS];
} bmap;

/* the innermost axis of a padded shape, and the axis of its rows */
enum { INNER = TG_MAX_DIMS - 1, ROW = TG_MAX_DIMS - 2 };

/* False unless small broadcasts to big under NumPy rules: small has no more
 * dimensions, and each of its right-aligned sizes equals big's or is 1. */
static bool bmap_make(int nbig, const int64_t *big, int nsmall, const int64_t *small, bmap *m)
{
	int64_t stride = 1;
	if (nsmall > nbig)
		return false;
	for (int k = TG_MAX_DIMS - 1; k >= 0; k--) {
		int back = TG_MAX_DIMS - 1 - k; /* 0 for the last axis */
		int64_t db = back < nbig ? big[nbig - 1 - back] : 1;
		int64_t ds = back < nsmall ? small[nsmall - 1 - back] : 1;
		if (ds != db && ds != 1)
			return false;
		m->dim[k] = db;
		m->s[k] = ds == 1 ? 0 : stride;
		stride *= ds;
	}
	return true;
}

/* ---- summing runs in double ----------------------------------------------------- */
/* Every sum here adds its terms one at a time, in the order of X, into a
 * double: the unrolled forms group from the left, so they give the bits of the
 * plain loop whatever the shape or the path. */

/* start + X[0] + ... + X[n-1]. */
#define SUM_RUN(name, T)                                                             \
	static double name(double start, const T *X, int64_t n)                      \
	{                                                                            \
		double sum = start;                                                  \
		int64_t k = 0;                                                       \
		for (; k + 4 <= n; k += 4)                                           \
			sum = sum + X[k] + X[k + 1] + X[k + 2] + X[k + 3];           \
		for (; k < n; k++)                                                   \
			sum += X[k];                                                 \
		return sum;                                                          \
	}

/* acc (n) += each row of X (rows, n) in turn; four rows per pass over acc. */
#define ADD_ROWS(name, T)                                                            \
	static void name(double *acc, const T *X, int64_t rows, int64_t n)           \
	{                                                                            \
		int64_t r = 0;                                                       \
		for (; r + 4 <= rows; r += 4, X += 4 * n)                            \
			for (int64_t j = 0; j < n; j++)                              \
				acc[j] = acc[j] + X[j] + X[n + j] + X[2 * n + j]     \
					 + X[3 * n + j];                             \
		for (; r < rows; r++, X += n)                                        \
			for (int64_t j = 0; j < n; j++)                              \
				acc[j] += X[j];                                      \
	}

SUM_RUN(sum_run_f64, double)
SUM_RUN(sum_run_f32, float)
ADD_ROWS(add_rows_f64, double)
ADD_ROWS(add_rows_f32, float)

/* acc (the small tensor, zeroed, in double) += every element of X (big).
 * The small tensor's innermost axis is contiguous or broadcast; where whole
 * rows of X fall on one row of acc (a bias gradient: acc[j] += X[i*D + j])
 * they are added as a block. The axes before the last two are walked with
 * tg_rows_next, so any number of dimensions takes the same inner paths. */
#define SUM_TO_KERNEL(name, T, sum_run, add_rows)                                    \
	static void name(const bmap *m, const T *X, double *acc, size_t numel)       \
	{                                                                            \
		const int64_t n = m->dim[INNER], rows = m->dim[ROW];                 \
		const int64_t blocks = (int64_t)numel / (n * rows);                  \
		int64_t idx[ROW] = { 0 }, off = 0, unused = 0;                       \
		for (int64_t o = 0; o < blocks; o++) {                               \
			double *a = acc + off;                                       \
			if (m->s[INNER] && !m->s[ROW]) {                             \
				add_rows(a, X, rows, n);                             \
				X += rows * n;                                       \
			} else {                                                     \
				for (int64_t i = 0; i < rows; i++, X += n) {         \
					double *r = a + i * m->s[ROW];               \
					if (m->s[INNER])                             \
						add_rows(r, X, 1, n);                \
					else                                         \
						r[0] = sum_run(r[0], X, n);          \
				}                                                    \
			}                                                            \
			tg_rows_next(ROW, m->dim, idx, m->s, &off, m->s, &unused);   \
		}                                                                    \
	}

/* Y (big) = X (small) repeated along the broadcast axes; a run along the
 * innermost axis is a copy, or a fill where X is broadcast along it. */
#define EXPAND_KERNEL(name, T)                                                       \
	static void name(const bmap *m, const T *X, T *Y, size_t numel)              \
	{                                                                            \
		const int64_t n = m->dim[INNER], s = m->s[INNER];                    \
		const int64_t rows = (int64_t)numel / n;                             \
		int64_t idx[INNER] = { 0 }, off = 0, unused = 0;                     \
		for (int64_t r = 0; r < rows; r++, Y += n) {                         \
			const T *x = X + off;                                        \
			if (s) {                                                     \
				memcpy(Y, x, (size_t)n * sizeof(T));                 \
			} else {                                                     \
				const T v = x[0];                                    \
				for (int64_t i = 0; i < n; i++)                      \
					Y[i] = v;                                    \
			}                                                            \
			tg_rows_next(INNER, m->dim, idx, m->s, &off, m->s, &unused); \
		}                                                                    \
	}

SUM_TO_KERNEL(sum_to_f64, double, sum_run_f64, add_rows_f64)
SUM_TO_KERNEL(sum_to_f32, float, sum_run_f32, add_rows_f32)
EXPAND_KERNEL(expand_f64, double)
EXPAND_KERNEL(expand_f32, float)

/* Checks a shape argument (ndim, shape) of who; false after recording why. */
static bool shape_arg(tg_ctx *ctx, const char *who, int ndim, const int64_t *shape)
{
	if (ndim < 0 || ndim > TG_MAX_DIMS) {
		tg_fail(ctx, TG_ESHAPE, "%s: %d dimensions; a tensor has 0 to %d", who, ndim,
			TG_MAX_DIMS);
		return false;
	}
	if (ndim > 0 && !shape) {
		tg_fail(ctx, TG_ENULL, "%s: shape is NULL for %d dimensions", who, ndim);
		return false;
	}
	return true;
}

/* ---- sum_to: x summed over broadcast axes down to shape; dx = expand(dout) --- */
/* Leading axes that shape lacks are summed away; axes where shape has 1 are
 * summed and kept. */

static void sum_to_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_node_grad(n, 0, tg_expand(dout, x->ndim, x->shape));
}

/* sum_to's and expand's target shape: "to (1,3)" */
static int to_shape_describe(const tg_node *n, char *buf, size_t size)
{
	const tg_tensor *y = tg_node_output(n);
	char s[TG_SHAPE_STR];
	return snprintf(buf, size, "to %s", tg_shape_fmt(y->ndim, y->shape, s));
}

static const tg_op sum_to_op = { .name = "sum_to", .backward = sum_to_backward,
				 .describe = to_shape_describe };
TG_OP_REGISTER(sum_to_op);

tg_tensor *tg_sum_to(tg_tensor *x, int ndim, const int64_t *shape)
{
	const char *who = "tg_sum_to";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx || !shape_arg(ctx, who, ndim, shape))
		return NULL;
	bmap m;
	if (!bmap_make(x->ndim, x->shape, ndim, shape, &m)) {
		char a[TG_SHAPE_STR], b[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: shape %s does not broadcast to x's shape %s",
			       who, tg_shape_fmt(ndim, shape, a),
			       tg_shape_fmt(x->ndim, x->shape, b));
	}
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, ndim, shape);
	if (!out)
		return NULL;
	double *acc = out->dtype == TG_F64 ? out->data
					   : tg_arena_alloc(ctx, out->numel * sizeof(double));
	if (!acc)
		return NULL;
	memset(acc, 0, out->numel * sizeof(double));
	if (x->dtype == TG_F64) {
		sum_to_f64(&m, x->data, acc, x->numel);
	} else {
		sum_to_f32(&m, x->data, acc, x->numel);
		float *Y = out->data;
		for (size_t i = 0; i < out->numel; i++)
			Y[i] = (float)acc[i];
	}
	return tg_op_end(&sum_to_op, out, 1, &x, NULL, 0, NULL);
}

/* ---- expand: x broadcast to shape (a copy); dx = sum_to(dout) ----------------- */

static void expand_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_node_grad(n, 0, tg_sum_to(dout, x->ndim, x->shape));
}

static const tg_op expand_op = { .name = "expand", .backward = expand_backward,
				 .describe = to_shape_describe };
TG_OP_REGISTER(expand_op);

tg_tensor *tg_expand(tg_tensor *x, int ndim, const int64_t *shape)
{
	const char *who = "tg_expand";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx || !shape_arg(ctx, who, ndim, shape))
		return NULL;
	bmap m;
	if (!bmap_make(ndim, shape, x->ndim, x->shape, &m)) {
		char a[TG_SHAPE_STR], b[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: x's shape %s does not broadcast to %s", who,
			       tg_shape_fmt(x->ndim, x->shape, a), tg_shape_fmt(ndim, shape, b));
	}
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, ndim, shape);
	if (!out)
		return NULL;
	if (x->dtype == TG_F64)
		expand_f64(&m, x->data, out->data, out->numel);
	else
		expand_f32(&m, x->data, out->data, out->numel);
	return tg_op_end(&expand_op, out, 1, &x, NULL, 0, NULL);
}

/* ---- the reduction kernels: x seen as (outer, n, inner) ------------------------ */

typedef struct view {
	int64_t outer, n, inner;
} view;

/* Y (outer, inner) = scale * sum over n, accumulated in double. acc holds
 * inner doubles; with inner 1 (a sum over all elements, or along the last
 * axis) each slice is one run summed in a register. */
#define SUM_AXIS_KERNEL(name, T, sum_run, add_rows)                                  \
	static void name(view v, const T *X, T *Y, double scale, double *acc)        \
	{                                                                            \
		for (int64_t o = 0; o < v.outer; o++, X += v.n * v.inner) {          \
			if (v.inner == 1) {                                          \
				Y[o] = (T)(sum_run(0, X, v.n) * scale);              \
				continue;                                            \
			}                                                            \
			memset(acc, 0, (size_t)v.inner * sizeof(double));            \
			add_rows(acc, X, v.n, v.inner);                              \
			for (int64_t i = 0; i < v.inner; i++)                        \
				Y[o * v.inner + i] = (T)(acc[i] * scale);            \
		}                                                                    \
	}

/* The value that wins a max: a larger one, or the first NaN (a NaN
 * propagates, as in NumPy). */
#define BEATS(a, b) ((a) > (b) || (isnan(a) && !isnan(b)))

/* Y (outer, inner) = max over n; NaN if the slice holds one. */
#define MAX_AXIS_KERNEL(name, T)                                                     \
	static void name(view v, const T *X, T *Y)                                   \
	{                                                                            \
		if (v.inner == 1) {                                                  \
			for (int64_t o = 0; o < v.outer; o++, X += v.n) {            \
				T y = X[0];                                          \
				for (int64_t k = 1; k < v.n; k++)                    \
					if (BEATS(X[k], y))                          \
						y = X[k];                            \
				Y[o] = y;                                            \
			}                                                            \
			return;                                                      \
		}                                                                    \
		for (int64_t o = 0; o < v.outer; o++) {                              \
			T *y = Y + o * v.inner;                                      \
			memcpy(y, X + o * v.n * v.inner, (size_t)v.inner * sizeof(T)); \
			for (int64_t k = 1; k < v.n; k++) {                          \
				const T *x = X + (o * v.n + k) * v.inner;            \
				for (int64_t i = 0; i < v.inner; i++)                \
					if (BEATS(x[i], y[i]))                       \
						y[i] = x[i];                         \
			}                                                            \
		}                                                                    \
	}

/* An element that ties the max y of its slice: equal to it, or a NaN when
 * the max is NaN. */
#define TIES(x, y) ((x) == (y) || (isnan(x) && isnan(y)))

/* M (outer, n, inner) = 1/c at each of the c elements of a slice that tie
 * its max, 0 elsewhere. y and c hold inner values. */
#define MAX_SHARE_KERNEL(name, T)                                                    \
	static void name(view v, const T *X, T *M, T *y, int64_t *c)                 \
	{                                                                            \
		const int64_t in = v.inner;                                          \
		for (int64_t o = 0; o < v.outer; o++, X += v.n * in, M += v.n * in) { \
			for (int64_t i = 0; i < in; i++) {                           \
				y[i] = X[i];                                         \
				c[i] = 0;                                            \
			}                                                            \
			for (int64_t k = 1; k < v.n; k++)                            \
				for (int64_t i = 0; i < in; i++)                     \
					if (BEATS(X[k * in + i], y[i]))              \
						y[i] = X[k * in + i];                \
			for (int64_t k = 0; k < v.n; k++)                            \
				for (int64_t i = 0; i < in; i++)                     \
					c[i] += TIES(X[k * in + i], y[i]);           \
			for (int64_t k = 0; k < v.n; k++)                            \
				for (int64_t i = 0; i < in; i++)                     \
					M[k * in + i] = TIES(X[k * in + i], y[i])    \
							? (T)(1.0 / (double)c[i])    \
							: 0;                         \
		}                                                                    \
	}

SUM_AXIS_KERNEL(sum_axis_f64, double, sum_run_f64, add_rows_f64)
SUM_AXIS_KERNEL(sum_axis_f32, float, sum_run_f32, add_rows_f32)
MAX_AXIS_KERNEL(max_axis_f64, double)
MAX_AXIS_KERNEL(max_axis_f32, float)
MAX_SHARE_KERNEL(max_share_f64, double)
MAX_SHARE_KERNEL(max_share_f32, float)

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
		double *acc = NULL;
		if (v.inner > 1 && !(acc = tg_arena_alloc(ctx, (size_t)v.inner * sizeof(double))))
			return NULL;
		if (x->dtype == TG_F64)
			sum_axis_f64(v, x->data, out->data, scale, acc);
		else
			sum_axis_f32(v, x->data, out->data, scale, acc);
	} else if (x->dtype == TG_F64) {
		max_axis_f64(v, x->data, out->data);
	} else {
		max_axis_f32(v, x->data, out->data);
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
	tg_node_grad(n, 0, tg_expand(unreduce(n, dout), x->ndim, x->shape));
}

static const tg_op sum_op = { .name = "sum", .backward = sum_backward };
static const tg_op mean_op = { .name = "mean", .backward = sum_backward };
static const tg_op sum_axis_op = { .name = "sum_axis", .backward = sum_backward,
				   .describe = axis_describe };
static const tg_op mean_axis_op = { .name = "mean_axis", .backward = sum_backward,
				    .describe = axis_describe };
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

/* The constant shares of x for axis (-1: all elements): no history. */
static tg_tensor *max_share(tg_tensor *x, int axis)
{
	tg_tensor *m = tg_tensor_like(x, "max (backward)");
	if (!m)
		return NULL;
	view v = view_of(x, axis);
	size_t es = tg_dtype_size(x->dtype);
	void *y = tg_arena_alloc(x->ctx, (size_t)v.inner * es);
	int64_t *c = tg_arena_alloc(x->ctx, (size_t)v.inner * sizeof(int64_t));
	if (!y || !c)
		return NULL;
	if (x->dtype == TG_F64)
		max_share_f64(v, x->data, m->data, y, c);
	else
		max_share_f32(v, x->data, m->data, y, c);
	return m;
}

static void max_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_tensor *share = max_share(x, (int)tg_node_attr(n, 0));
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
