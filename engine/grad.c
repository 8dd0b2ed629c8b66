/*
 * grad.c - what the reverse walk needs below the ops: summing a gradient
 * back over the axes its input was broadcast along (sum_to), its adjoint
 * expand, and accumulate, the sum of two gradients of one tensor.
 *
 * tape.c calls these while it walks; ops call them too (every broadcasting
 * op's backward is a sum_to). Each is an op of its own, recorded like any
 * other, so a TG_CREATE_GRAPH backward can be differentiated again; none
 * calls anything of ops/. Sums accumulate in double for both dtypes.
 */
#include "hot_loop.h"
#include "internal.h"
#include "parallel.h"

#include <assert.h>
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

/* acc (the small tensor, zeroed, in double) += every element of X (big).
 * The small tensor's innermost axis is contiguous or broadcast; where whole
 * rows of X fall on one row of acc (a bias gradient: acc[j] += X[i*D + j])
 * they are added as a block, and where a whole block of rows falls on one
 * element (a convolution's bias gradient: the H x W plane of a channel) it
 * is summed as one run (tg_sum_run). The axes before the last two are
 * walked with tg_rows_next, so any number of dimensions takes the same
 * inner paths. */
#define SUM_TO_KERNEL(name, T, sum_run, add_rows, IN)                               \
	TG_HOT_LOOP_WIDE static void name(const bmap *m, const T *X, const T *Y,        \
					  const T *S, double *acc, size_t numel)         \
	{                                                                            \
		const int64_t n = m->dim[INNER], rows = m->dim[ROW];                 \
		const int64_t blocks = (int64_t)numel / (n * rows);                  \
		int64_t idx[ROW] = { 0 }, off = 0, unused = 0, x = 0;                \
		(void)Y;                                                             \
		(void)S;                                                             \
		for (int64_t o = 0; o < blocks; o++) {                               \
			double *a = acc + off;                                       \
			if (m->s[INNER] && !m->s[ROW]) {                             \
				add_rows(a, IN(x, a), rows, n, n);                   \
				x += rows * n;                                       \
			} else if (!m->s[INNER] && !m->s[ROW]) {                     \
				a[0] = sum_run(a[0], IN(x, a), rows * n);            \
				x += rows * n;                                       \
			} else {                                                     \
				for (int64_t i = 0; i < rows; i++, x += n) {         \
					double *r = a + i * m->s[ROW];               \
					if (m->s[INNER])                             \
						add_rows(r, IN(x, r), 1, n, n);      \
					else                                         \
						r[0] = sum_run(r[0], IN(x, r), n);   \
				}                                                    \
			}                                                            \
			tg_rows_next(ROW, m->dim, idx, m->s, &off, m->s, &unused);   \
		}                                                                    \
	}
/* the terms summed from element o of X on into the sums from r on: of X,
 * the products of X and Y, or those of X and Y / S, S the small tensor
 * laid out as acc */
#define IN_X(o, r) X + (o)
#define IN_XY(o, r) X + (o), Y + (o)
#define IN_XYS(o, r) X + (o), Y + (o), S + ((r) - acc)

/* Y[lo, hi) of big = X (small) repeated along the broadcast axes; a run
 * along the innermost axis is a copy, or a fill where X is broadcast along
 * it. Short runs (under 1 KiB) are copied by a loop, which TG_NO_CALLS
 * keeps from becoming a memcpy call again: the call cost as much as the
 * copy ((128,8) into (256,128,8): 88 -> 62 us, (512,16) into (64,512,16)
 * 71 -> 62, minima of two runs of 50). A part may start and end inside a
 * row. */
#define EXPAND_KERNEL(name, T)                                                       \
	TG_HOT_LOOP TG_NO_CALLS static void name(const bmap *m, const T *restrict X, \
				     T *restrict Y, size_t lo, size_t hi)            \
	{                                                                            \
		const int64_t n = m->dim[INNER], s = m->s[INNER];                    \
		int64_t idx[INNER], off, unused, i0 = (int64_t)lo % n;               \
		tg_rows_seek(INNER, m->dim, (int64_t)lo / n, idx, m->s, &off, m->s, &unused); \
		Y += lo - (size_t)i0;                                                \
		for (size_t at = lo; at < hi; Y += n, i0 = 0) {                      \
			const int64_t i1 = hi - at < (size_t)(n - i0) ? i0 + (int64_t)(hi - at) : n; \
			const T *x = X + off;                                        \
			if (s && (i1 - i0) * (int64_t)sizeof(T) < 1024) {            \
				for (int64_t i = i0; i < i1; i++)                    \
					Y[i] = x[i];                                 \
			} else if (s) {                                              \
				memcpy(Y + i0, x + i0, (size_t)(i1 - i0) * sizeof(T)); \
			} else {                                                     \
				const T v = x[0];                                    \
				for (int64_t i = i0; i < i1; i++)                    \
					Y[i] = v;                                    \
			}                                                            \
			at += (size_t)(i1 - i0);                                     \
			tg_rows_next(INNER, m->dim, idx, m->s, &off, m->s, &unused); \
		}                                                                    \
	}

/* Y (rows, n) = each X[r] n times, rows [lo, hi), n <= 8 a constant in
 * each loop so that it vectorises: a column (R, 1) expanded to (R, n), where
 * EXPAND_KERNEL's walk from row to row cost more than its fill (a sum
 * along a last axis of 2 over a million rows, forward and backward:
 * 5.2 -> 1.5 ms). */
#define REPEAT_KERNEL(name, T)                                                         \
	TG_HOT_LOOP static void name(const T *restrict X, T *restrict Y, int64_t n,    \
				     int64_t lo, int64_t hi)                           \
	{                                                                              \
		TG_WITH_SHORT_N(n, for (int64_t r = lo; r < hi; r++)                   \
				     for (int i = 0; i < N; i++) Y[r * N + i] = X[r];) \
	}

REPEAT_KERNEL(repeat_f64, double)
REPEAT_KERNEL(repeat_f32, float)
SUM_TO_KERNEL(sum_to_f64, double, tg_sum_run_f64, tg_add_rows_f64, IN_X)
SUM_TO_KERNEL(sum_to_f32, float, tg_sum_run_f32, tg_add_rows_f32, IN_X)
SUM_TO_KERNEL(sum_to_product_f64, double, tg_sum_run_product_f64, tg_add_rows_product_f64,
	      IN_XY)
SUM_TO_KERNEL(sum_to_product_f32, float, tg_sum_run_product_f32, tg_add_rows_product_f32,
	      IN_XY)
SUM_TO_KERNEL(sum_to_quotient_f64, double, tg_sum_run_quotient_f64, tg_add_rows_quotient_f64,
	      IN_XYS)
SUM_TO_KERNEL(sum_to_quotient_f32, float, tg_sum_run_quotient_f32, tg_add_rows_quotient_f32,
	      IN_XYS)
EXPAND_KERNEL(expand_f64, double)
EXPAND_KERNEL(expand_f32, float)

typedef struct expand_job {
	const bmap *m;
	const void *X;
	void *Y;
	bool f64;
} expand_job;

static void expand_part(void *arg, size_t lo, size_t hi)
{
	const expand_job *j = arg;
	if (j->f64)
		expand_f64(j->m, j->X, j->Y, lo, hi);
	else
		expand_f32(j->m, j->X, j->Y, lo, hi);
}

/* bytes [have, total) of Y = its first have bytes repeated: what is
 * written copied after itself, doubling */
static void copy_doubling(char *Y, size_t have, size_t total)
{
	while (have < total) {
		size_t c = have < total - have ? have : total - have;
		memcpy(Y + have, Y, c);
		have += c;
	}
}

/* Y[lo, hi) of x's one row of n elements tiled: the first n by index,
 * then what is written copied after itself, doubling (a whole number of
 * rows each time). A short row broadcast along the leading axes (a sum's
 * gradient along axis 0 of (1048576,2)): EXPAND_KERNEL walked and copied
 * row by row. */
static void tile_part(void *arg, size_t lo, size_t hi)
{
	const expand_job *j = arg;
	const size_t es = j->f64 ? sizeof(double) : sizeof(float), n = (size_t)j->m->dim[INNER];
	const size_t m = hi - lo, first = n < m ? n : m;
	char *Y = (char *)j->Y + lo * es;
	for (size_t k = 0; k < first; k++)
		memcpy(Y + k * es, (const char *)j->X + (lo + k) % n * es, es);
	copy_doubling(Y, first * es, m * es);
}

/* Groups [lo, hi) of rows tiled: Y (G, R, n) = each row of X (G, n)
 * repeated R times. Each group is written as tile_part writes its one:
 * the row, then copy_doubling. Per row of
 * Y, EXPAND_KERNEL walked to the next row and copied its n elements: a
 * mean's gradient over a middle axis, (1024,1,8) -> (1024,256,8), took
 * 606 us (95 tiled), (256,1,16) -> (256,1024,16) 556 (230). */
typedef struct tiles_job {
	const char *X;
	char *Y;
	size_t row, group; /* bytes of a row of X and of a group of Y */
} tiles_job;

static void tiles_part(void *arg, size_t lo, size_t hi)
{
	const tiles_job *j = arg;
	for (size_t g = lo; g < hi; g++) {
		char *Y = j->Y + g * j->group;
		memcpy(Y, j->X + g * j->row, j->row);
		copy_doubling(Y, j->row, j->group);
	}
}

/* R when the axes of m that broadcast are all next to the innermost, which
 * x spans, R elements' worth of them (> 1); 0 otherwise. */
static int64_t tiled_rows(const bmap *m)
{
	int k = INNER - 1;
	int64_t R = 1;
	if (!m->s[INNER])
		return 0;
	for (; k >= 0 && !m->s[k]; k--)
		R *= m->dim[k];
	for (; k >= 0; k--)
		if (!m->s[k] && m->dim[k] > 1)
			return 0;
	return R > 1 ? R : 0;
}

/* rows [lo, hi) of a column repeated (REPEAT_KERNEL) */
static void repeat_part(void *arg, size_t lo, size_t hi)
{
	const expand_job *j = arg;
	if (j->f64)
		repeat_f64(j->X, j->Y, j->m->dim[INNER], (int64_t)lo, (int64_t)hi);
	else
		repeat_f32(j->X, j->Y, j->m->dim[INNER], (int64_t)lo, (int64_t)hi);
}

/* What a sum_to adds up, all of one dtype: the elements of X; with Y the
 * products X Y (sum_to_product); with S too, X (Y / S), S of the result's
 * shape (sum_to_quotient); with G instead, X [Y > 0], written to G as well
 * (tg_relu_backward_rows, rows onto a row only). */
typedef struct terms {
	const void *X, *Y, *S;
	void *G; /* with Y, not S: the terms are relu_backward(X, Y), kept here */
	bool f64;
} terms;

/* p + k as a T *, NULL for a NULL p: the terms a sum_to lacks */
#define TERMS_AT(T, p, k) ((p) ? (const T *)(p) + (k) : NULL)

/* acc += the len terms from element at on, by the kernel for t's dtype and
 * kind; acc is the result's element so on */
#define SUM_TO_TERMS(T, SFX)                                                          \
	do {                                                                          \
		const T *X = TERMS_AT(T, t->X, at), *Y = TERMS_AT(T, t->Y, at);       \
		if (t->S)                                                             \
			sum_to_quotient_##SFX(m, X, Y, TERMS_AT(T, t->S, so), acc, len); \
		else if (t->Y)                                                        \
			sum_to_product_##SFX(m, X, Y, NULL, acc, len);                \
		else                                                                  \
			sum_to_##SFX(m, X, NULL, NULL, acc, len);                     \
	} while (0)

static void sum_to_terms(const bmap *m, const terms *t, size_t at, double *acc, size_t so,
			 size_t len)
{
	if (t->f64)
		SUM_TO_TERMS(double, f64);
	else
		SUM_TO_TERMS(float, f32);
}

/* acc[lo, hi) += the columns [lo, hi) of each row of the terms (rows, n),
 * for tg_parallel_for: the sum_to of a (B, M) gradient to a (M,) or (1, M)
 * bias, split by columns (the bits of one pass, tg_add_rows). */
typedef struct rows_job {
	terms t;
	double *acc;
	int64_t rows, n;
} rows_job;

/* acc += the columns [lo, lo + w) of the rows [r0, r0 + rows) */
#define ADD_COLUMNS(T, SFX, acc, r0, rows)                                            \
	do {                                                                          \
		const size_t at = (r0) * (size_t)j->n + lo;                           \
		const T *X = TERMS_AT(T, j->t.X, at), *Y = TERMS_AT(T, j->t.Y, at);   \
		if (j->t.S)                                                           \
			tg_add_rows_quotient_##SFX(acc, X, Y, TERMS_AT(T, j->t.S, lo), rows, \
						   w, j->n);                          \
		else if (j->t.G)                                                      \
			tg_add_rows_relu_##SFX(acc, X, Y, (T *)j->t.G + at, rows, w, j->n); \
		else if (j->t.Y)                                                      \
			tg_add_rows_product_##SFX(acc, X, Y, rows, w, j->n);          \
		else                                                                  \
			tg_add_rows_##SFX(acc, X, rows, w, j->n);                     \
	} while (0)

TG_HOT_LOOP_WIDE static void add_columns_part(void *arg, size_t lo, size_t hi)
{
	const rows_job *j = arg;
	int64_t w = (int64_t)(hi - lo);
	if (j->t.f64)
		ADD_COLUMNS(double, f64, j->acc + lo, 0, j->rows);
	else
		ADD_COLUMNS(float, f32, j->acc + lo, 0, j->rows);
}

/* acc += every column of the rows [r0, r0 + m), for tg_parallel_column_sums */
TG_HOT_LOOP_WIDE static void add_rows_block(void *arg, size_t r0, size_t m, double *acc)
{
	const rows_job *j = arg;
	const size_t lo = 0;
	const int64_t w = j->n;
	if (j->t.f64)
		ADD_COLUMNS(double, f64, acc, r0, (int64_t)m);
	else
		ADD_COLUMNS(float, f32, acc, r0, (int64_t)m);
}

/* acc += the terms for the elements [lo, hi) of the small tensor's
 * outermost axis that is not broadcast (k, padded): for tg_parallel_for,
 * when that axis is not the innermost. Each part walks every slab along k
 * (the axes before k are all broadcast) in the order of one pass, with the
 * rows and runs of one pass, so an element of acc gets the bits one pass
 * gives it: a convolution's bias gradient split by channels, the sum_to of
 * a column broadcast (R, M) -> (R, 1) by rows. */
typedef struct axis_job {
	const bmap *m;
	int k;
	terms t;
	double *acc;
} axis_job;

static void sum_to_axis_part(void *arg, size_t lo, size_t hi)
{
	const axis_job *j = arg;
	bmap sub = *j->m;
	int64_t outer = 1, inner = 1, d = sub.dim[j->k];
	for (int i = 0; i < j->k; i++) {
		outer *= sub.dim[i];
		sub.dim[i] = 1;
	}
	for (int i = j->k + 1; i < TG_MAX_DIMS; i++)
		inner *= sub.dim[i];
	sub.dim[j->k] = (int64_t)(hi - lo);
	size_t len = (hi - lo) * (size_t)inner, so = lo * (size_t)sub.s[j->k];
	for (int64_t o = 0; o < outer; o++)
		sum_to_terms(&sub, &j->t, (size_t)(o * d + (int64_t)lo) * (size_t)inner,
			     j->acc + so, so, len);
}

/* acc (n) += the rows (rows, n) of the terms t, split by columns; fewer
 * columns than that split needs, (1000000,4) summed to (1,4), in blocks of
 * rows (tg_parallel_column_sums) */
static void add_columns(const tg_ctx *ctx, terms t, double *acc, int64_t rows, int64_t n)
{
	rows_job j = { t, acc, rows, n };
	if (n < TG_SUM_NARROW) {
		tg_parallel_column_sums(ctx, (size_t)rows, (size_t)n, add_rows_block, &j, acc);
		return;
	}
	size_t min = (size_t)((TG_PAR_MIN + rows - 1) / rows);
	tg_parallel_for(ctx, (size_t)n, min > 16 ? min : 16, 16, add_columns_part, &j);
}

/* The sum's accumulator: out's own data for f64, else an arena block of
 * out's size in double, zeroed; NULL after recording why. */
static double *sums_of(tg_tensor *out)
{
	double *acc = out->dtype == TG_F64 ? out->data
					   : tg_arena_alloc(out->ctx, out->numel * sizeof(double));
	if (acc)
		memset(acc, 0, out->numel * sizeof(double));
	return acc;
}

/* out = the sums acc, rounded once to f32 (for f64 acc is out's data) */
static void round_sums(tg_tensor *out, const double *acc)
{
	if (out->dtype == TG_F32) {
		float *Y = out->data;
		for (size_t i = 0; i < out->numel; i++)
			Y[i] = (float)acc[i];
	}
}

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
	TG_NODE_GRAD_INTO(n, 0, tg_expand(dout, x->ndim, x->shape));
}

/* sum_to's and expand's target shape: "to (1,3)" */
static int to_shape_describe(const tg_node *n, char *buf, size_t size)
{
	const tg_tensor *y = tg_node_output(n);
	char s[TG_SHAPE_STR];
	return snprintf(buf, size, "to %s", tg_shape_fmt(y->ndim, y->shape, s));
}

static const tg_op sum_to_op = { .name = "sum_to", .backward = sum_to_backward,
				 .describe = to_shape_describe, .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(sum_to_op);

/* x, x y with y (x's shape and dtype), or x (y / s) with s too, summed down
 * to shape (s's): recorded as op, whose inputs these are. */
static tg_tensor *sum_to_of(const tg_op *op, const char *who, tg_tensor *x, tg_tensor *y,
			    tg_tensor *s, int ndim, const int64_t *shape)
{
	tg_tensor *in[3] = { x, y, s };
	int nin = s ? 3 : y ? 2 : 1;
	tg_ctx *ctx = tg_op_begin(who, nin, in);
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
	double *acc = sums_of(out);
	if (!acc)
		return NULL;
	terms t = { x->data, y ? y->data : NULL, s ? s->data : NULL, NULL, x->dtype == TG_F64 };
	int64_t n = m.dim[INNER], rows = m.dim[ROW];
	int k = 0; /* the outermost axis the result keeps, INNER if none before it */
	while (k < INNER && !m.s[k])
		k++;
	if ((int64_t)x->numel == rows * n && m.s[INNER] && !m.s[ROW]) {
		/* rows of x summed onto one row: split the columns */
		add_columns(ctx, t, acc, rows, n);
	} else if (k < INNER && x->numel >= TG_PAR_MIN) {
		/* split the elements of the outermost axis the result keeps */
		axis_job j = { &m, k, t, acc };
		size_t d = (size_t)m.dim[k], per = x->numel / d, min = (TG_PAR_MIN + per - 1) / per;
		tg_parallel_for(ctx, d, min > 2 ? min : 2, 1, sum_to_axis_part, &j);
	} else {
		sum_to_terms(&m, &t, 0, acc, 0, x->numel);
	}
	round_sums(out, acc);
	return tg_op_end(op, out, nin, in, NULL, 0, NULL);
}

tg_tensor *tg_sum_to(tg_tensor *x, int ndim, const int64_t *shape)
{
	return sum_to_of(&sum_to_op, "tg_sum_to", x, NULL, NULL, ndim, shape);
}

/* No rules: made only where nothing is recorded. */
static const tg_op sum_to_product_op = { .name = "sum_to_product", .backward = NULL };
static const tg_op sum_to_quotient_op = { .name = "sum_to_quotient", .backward = NULL };

tg_tensor *tg_sum_to_product(tg_tensor *x, tg_tensor *y, int ndim, const int64_t *shape)
{
	assert(!x->ctx->grad_enabled && y && tg_same_shape(x, y) && x->dtype == y->dtype);
	return sum_to_of(&sum_to_product_op, "tg_sum_to_product", x, y, NULL, ndim, shape);
}

tg_tensor *tg_sum_to_quotient(tg_tensor *x, tg_tensor *y, tg_tensor *s)
{
	assert(!x->ctx->grad_enabled && y && s && tg_same_shape(x, y) && x->dtype == y->dtype &&
	       s->dtype == x->dtype);
	return sum_to_of(&sum_to_quotient_op, "tg_sum_to_quotient", x, y, s, s->ndim, s->shape);
}

static const tg_op relu_backward_rows_op = { .name = "relu_backward_rows", .backward = NULL };

tg_tensor *tg_relu_backward_rows(tg_tensor *dout, tg_tensor *y, const tg_tensor *b,
				 tg_tensor **g)
{
	const char *who = "tg_relu_backward_rows";
	assert(!y->ctx->grad_enabled && y->ndim == 2 && y->shape[1] > 1 && tg_same_shape(dout, y) &&
	       dout->dtype == y->dtype && !dout->lazy_fill && b->numel == (size_t)y->shape[1]);
	tg_tensor *in[2] = { dout, y };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	tg_tensor *out = tg_tensor_new(ctx, who, y->dtype, b->ndim, b->shape);
	*g = out ? tg_tensor_like(y, who) : NULL;
	double *acc = *g ? sums_of(out) : NULL;
	if (!acc)
		return NULL;
	terms t = { dout->data, y->data, NULL, (*g)->data, y->dtype == TG_F64 };
	add_columns(ctx, t, acc, y->shape[0], y->shape[1]);
	round_sums(out, acc);
	return tg_op_end(&relu_backward_rows_op, out, 2, in, NULL, 0, NULL);
}

/* ---- expand: x broadcast to shape (a copy); dx = sum_to(dout) ----------------- */

static void expand_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_node_grad(n, 0, tg_sum_to(dout, x->ndim, x->shape));
}

static const tg_op expand_op = { .name = "expand", .backward = expand_backward,
				 .describe = to_shape_describe, .unread = TG_UNREAD_ALL };
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
	const tg_tensor *armed = ctx->grad_dest;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, ndim, shape);
	if (!out)
		return NULL;
	/* split by elements, as the elementwise loops that read it next */
	expand_job j = { &m, x->data, out->data, x->dtype == TG_F64 };
	const int64_t n = m.dim[INNER], R = n < 256 ? tiled_rows(&m) : 0;
	if (!m.s[INNER] && n <= 8 && x->numel * (size_t)n == out->numel) /* x a column */
		tg_parallel_for(ctx, x->numel, TG_PAR_MIN / (size_t)n, 16, repeat_part, &j);
	else if (m.s[INNER] && n < 256 && x->numel == (size_t)n) /* x a short row */
		tg_parallel_for(ctx, out->numel, TG_PAR_MIN, 16, tile_part, &j);
	else if (R && out->numel) { /* x's short rows, each tiled */
		size_t es = tg_dtype_size(x->dtype), each = (size_t)(R * n);
		tiles_job t = { x->data, out->data, (size_t)n * es, each * es };
		size_t min = TG_PAR_MIN / each;
		tg_parallel_for(ctx, x->numel / (size_t)n, min ? min : 1, 1, tiles_part, &t);
	} else if (out->numel)
		tg_parallel_for(ctx, out->numel, TG_PAR_MIN, 16, expand_part, &j);
	/* one value throughout, in memory of its own (not a leaf's gradient
	 * buffer, which other tensors write) */
	if (x->numel == 1 && !(armed && out->data == armed->data))
		out->uniform_at = out->version + 1;
	return tg_op_end(&expand_op, out, 1, &x, NULL, 0, NULL);
}

/* ---- the lazy expand of a sum's gradient (internal.h) --------------------------- */

void tg_fill_lazy(tg_tensor *t)
{
	/* tg_expand's loop over one element, a copy of element 0 (X and Y apart) */
	uint64_t v;
	memcpy(&v, t->data, tg_dtype_size(t->dtype));
	bmap m;
	bmap_make(t->ndim, t->shape, 0, NULL, &m);
	expand_job j = { &m, &v, t->data, t->dtype == TG_F64 };
	tg_parallel_for(t->ctx, t->numel, TG_PAR_MIN, 16, expand_part, &j);
	t->lazy_fill = false;
}

void tg_node_grad_expand(tg_node *n, int i, tg_tensor *c)
{
	tg_tensor *x = n->in[i];
	tg_ctx *ctx = x->ctx;
	if (!tg_node_wants(n, i) || !c || c->numel != 1 || c->dtype != x->dtype || c->ctx != ctx ||
	    !x->node || x->numel < TG_GRAD_INTO_MIN || x->grad || ctx->walk ||
	    ctx->grad_enabled || ctx->anomaly || !tg_op_reads_uniform(x->node->op)) {
		TG_NODE_GRAD_INTO(n, i, tg_expand(c, x->ndim, x->shape));
		return;
	}
	tg_tensor *u = tg_tensor_new(ctx, "tg_expand", x->dtype, x->ndim, x->shape);
	if (u) {
		const size_t es = tg_dtype_size(u->dtype);
		memcpy(u->data, c->data, es);
#ifndef __OPTIMIZE__
		/* unoptimised builds (the sanitizers' test builds): a reader that
		 * missed the flag sees NaN, not an old step's values */
		const double nan = NAN;
		const float nanf = NAN;
		for (size_t k = 1; k < u->numel; k++)
			memcpy((char *)u->data + k * es, es == 8 ? (const void *)&nan : (const void *)&nanf,
			       es);
#endif
		u->uniform_at = u->version + 1;
		u->lazy_fill = true;
	}
	tg_node_grad(n, i, u);
}

tg_tensor *tg_uniform_value(const tg_tensor *u)
{
	tg_tensor *v = tg_tensor_new(u->ctx, "tg_uniform_value", u->dtype, 0, NULL);
	if (v)
		memcpy(v->data, u->data, tg_dtype_size(u->dtype));
	return v;
}

/* ---- accumulate: a + b of one shape; distributes: da = db = dout ----------------- */

static void accumulate_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, dout);
	tg_node_grad(n, 1, dout);
}

static const tg_op accumulate_op = { .name = "accumulate", .backward = accumulate_backward,
				     .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(accumulate_op);

/* Y = A + B elementwise; Y may be A (a leaf's buffer adding into itself). */
#define ACCUMULATE_KERNEL(name, T)                                                   \
	TG_HOT_LOOP static void name(const T *A, const T *B, T *Y, size_t n)         \
	{                                                                            \
		for (size_t i = 0; i < n; i++)                                       \
			Y[i] = A[i] + B[i];                                          \
	}

ACCUMULATE_KERNEL(accumulate_f64, double)
ACCUMULATE_KERNEL(accumulate_f32, float)

typedef struct accumulate_job {
	bool f64;
	const void *A, *B;
	void *Y;
} accumulate_job;

static void accumulate_part(void *arg, size_t lo, size_t hi)
{
	const accumulate_job *j = arg;
	if (j->f64)
		accumulate_f64((const double *)j->A + lo, (const double *)j->B + lo,
			       (double *)j->Y + lo, hi - lo);
	else
		accumulate_f32((const float *)j->A + lo, (const float *)j->B + lo,
			       (float *)j->Y + lo, hi - lo);
}

void tg_add_arrays(const tg_ctx *ctx, tg_dtype dt, const void *A, const void *B, void *Y,
		   size_t n)
{
	accumulate_job j = { dt == TG_F64, A, B, Y };
	tg_parallel_for(ctx, n, TG_PAR_MIN, 16, accumulate_part, &j);
}

typedef struct add_runs_job {
	bool f64;
	char *Y;
	const char *X;
	size_t es, run, stride;
} add_runs_job;

/* X's elements [lo, hi), a run's end or Y's next row at a time */
static void add_runs_part(void *arg, size_t lo, size_t hi)
{
	const add_runs_job *j = arg;
	for (size_t at = lo, row = lo / j->run, r = lo % j->run; at < hi; r = 0, row++) {
		size_t take = j->run - r < hi - at ? j->run - r : hi - at;
		char *y = j->Y + (row * j->stride + r) * j->es;
		const char *x = j->X + at * j->es;
		if (j->f64)
			accumulate_f64((const double *)y, (const double *)x, (double *)y, take);
		else
			accumulate_f32((const float *)y, (const float *)x, (float *)y, take);
		at += take;
	}
}

void tg_add_runs(const tg_ctx *ctx, tg_dtype dt, void *Y, size_t stride, const void *X,
		 size_t run, size_t rows)
{
	add_runs_job j = { dt == TG_F64, Y, X, tg_dtype_size(dt), run, stride };
	if (run)
		tg_parallel_for(ctx, rows * run, TG_PAR_MIN, 16, add_runs_part, &j);
}

typedef struct copy_job {
	void *Y;
	const void *X;
} copy_job;

static void copy_part(void *arg, size_t lo, size_t hi)
{
	const copy_job *j = arg;
	memcpy((char *)j->Y + lo, (const char *)j->X + lo, hi - lo);
}

void tg_copy_arrays(const tg_ctx *ctx, void *Y, const void *X, size_t bytes)
{
	copy_job j = { Y, X };
	tg_parallel_for(ctx, bytes, TG_PAR_MIN * sizeof(float), TG_LINE, copy_part, &j);
}

tg_tensor *tg_accumulate(tg_tensor *a, tg_tensor *b)
{
	static const char who[] = "accumulate";
	tg_tensor *in[2] = { a, b };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	if (!tg_same_shape(a, b)) {
		char sa[TG_SHAPE_STR], sb[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: gradients %s and %s of one tensor differ", who,
			       tg_shape_fmt(a->ndim, a->shape, sa), tg_shape_fmt(b->ndim, b->shape, sb));
	}
	tg_tensor *out = tg_tensor_like(a, who);
	if (!out)
		return NULL;
	tg_add_arrays(ctx, a->dtype, a->data, b->data, out->data, out->numel);
	return tg_op_end(&accumulate_op, out, 2, in, NULL, 0, NULL);
}
