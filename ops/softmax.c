/*
 * softmax.c - softmax, log-softmax and the cross-entropy loss, along the
 * last axis (softmax and log-softmax along any axis too, cross-entropy
 * along axis 1 of (N,C,d1,...)).
 *
 * Shapes: x is (..., K), K = classes; logits are (N,K), N = batch. Along
 * another axis x is (outer, K, inner), each of the inner lanes of a slice a
 * row of K values inner apart (the lane kernels, below). Each row
 * is shifted by its maximum before exponentiating, so logits of any size
 * give finite values; sums are accumulated in double for both dtypes, in
 * sixteen interleaved partial sums, and the maximum in sixteen running ones
 * (internal.h), so that a long row is not one chain of dependent adds. The
 * backward rules are written with ops on the node's saved tensors, so they
 * can be recorded for second order. The exponentials are SLEEF's over a
 * whole row (vmath.h), within 1 ULP.
 */
#include "internal.h"
#include "hot_loop.h"
#include "parallel.h"
#include "vmath.h"

#include <math.h>

/* ---- the row kernels --------------------------------------------------------------- */

/* One function per dtype and kernel over `rows` rows of k elements. The
 * row kernels here have an AVX-512 copy (TG_HOT_LOOP_WIDE): their
 * divisions and sums run in double, twice as many lanes a register.
 * Forward and backward of sum(softmax(x)^2) over (512,1000) floats went
 * from 1.78 to 1.60 ms, cross-entropy over (64,10000) from 1.25 to 1.05.
 *
 * Rows shorter than ROW_BLOCK elements go through the exp a block of rows
 * at a time, one call of vmath's loop for the block: a row of 10 classes
 * alone had gone through its padded tail, two copies and a clear for ten
 * elements. The exp is elementwise, so the bits are those of a call per
 * row. */
enum { ROW_BLOCK = 512 };

/* rows of k elements that one exp call takes */
static inline size_t rows_per_block(size_t k) { return k && k < ROW_BLOCK ? ROW_BLOCK / k : 1; }

/* k is a row length of up to 8 known when compiled (TG_WITH_SHORT_N's cases) */
#define SHORT_K(k) (__builtin_constant_p(k) && (k) <= 8)

/* the sum of a row of k in double: tg_sum_run's bits, through tg_sum_short
 * for a SHORT_K k so that the sums vectorise across rows */
#define ROW_SUM(SHORT, RUN, X, k) (SHORT_K(k) ? SHORT(X, (int)(k)) : RUN(0.0, X, (int64_t)(k)))

/* y = FINISH of the row's x, its max m, the e^(x - m) in y and s, their
 * sum through ONE (the identity, or the logarithm). With k a constant of
 * up to 8 (a few classes, TG_WITH_SHORT_N), each step is a loop over a
 * block's rows: its loops over a row unroll, where their set-up had cost
 * more than the row, the sums vectorise across rows, and ALL takes the
 * block's sums through ONE in one call (forward and backward over (8192,8)
 * floats: softmax 0.13 -> 0.07 ms, log-softmax 0.17 -> 0.08 ms). A longer
 * row sums and finishes in one loop, which was faster for rows of 10
 * doubles. The same operations, so the same bits, but for log-softmax
 * over rows of up to 8: vmath's logarithm in the place of libm's. */
#define ROW_KERNEL(name, T, MAX, EXP, SUM, SHORT, ONE, ALL, FINISH)                      \
	static inline TG_ALWAYS_INLINE void name##_rows(const T *X, T *Y, size_t rows,   \
							size_t k, T *ms, double *ss)     \
	{                                                                                \
		const size_t per = rows_per_block(k);                                    \
		const bool short_k = SHORT_K(k);                                         \
		for (size_t r0 = 0; r0 < rows; r0 += per, X += per * k, Y += per * k) {  \
			const size_t nb = rows - r0 < per ? rows - r0 : per;             \
			for (size_t r = 0; r < nb; r++) {                                \
				const T *x = X + r * k;                                  \
				T *y = Y + r * k;                                        \
				const T m = MAX(x, (int64_t)k);                          \
				ms[r] = m;                                               \
				for (size_t j = 0; j < k; j++)                           \
					y[j] = x[j] - m;                                 \
			}                                                                \
			EXP(Y, Y, nb * k);                                               \
			if (short_k) {                                                   \
				for (size_t r = 0; r < nb; r++)                          \
					ss[r] = ROW_SUM(SHORT, SUM, Y + r * k, k);       \
				ALL(ss, ss, nb);                                         \
			}                                                                \
			for (size_t r = 0; r < nb; r++) {                                \
				const T *x = X + r * k, m = ms[r];                       \
				T *y = Y + r * k;                                        \
				const double s =                                         \
					short_k ? ss[r] : ONE(SUM(0.0, y, (int64_t)k));  \
				(void)x, (void)m;                                        \
				FINISH                                                   \
			}                                                                \
		}                                                                        \
	}                                                                                \
	TG_HOT_LOOP_WIDE                                                                 \
	static void name(const T *X, T *Y, size_t rows, size_t k)                        \
	{                                                                                \
		T ms[ROW_BLOCK]; /* one, shared by every copy */                        \
		double ss[ROW_BLOCK];                                                    \
		TG_WITH_SHORT_N(k, name##_rows(X, Y, rows, N, ms, ss);)                  \
	}

/* the sums as they are, for softmax */
static inline double same(double s) { return s; }
static inline void all_same(const double *X, double *Y, size_t n) { (void)X, (void)Y, (void)n; }

/* y / s, rounded to the dtype, given inv = 1 / s: a double's quotient; a
 * float's y inv in double, which is within 2^-52 of y / s (two roundings),
 * so it rounds to the float y / s does except where y / s lies that close
 * to the midpoint between two floats. Divisions in double had taken a
 * third of softmax's forward pass over rows of 1000 floats at AVX-512. */
static inline double quot_f64(double y, double s, double inv)
{
	(void)inv;
	return y / s;
}
static inline float quot_f32(float y, double s, double inv)
{
	(void)s;
	return (float)(y * inv);
}

/* y = e^(x - m) / sum_j e^(x_j - m) */
#define SOFTMAX_FINISH(QUOT)                                                             \
	const double inv = 1 / s;                                                        \
	for (size_t j = 0; j < k; j++)                                                   \
		y[j] = QUOT(y[j], s, inv);

/* y = x - m - ln sum_j e^(x_j - m), s the logarithm */
#define LOG_SOFTMAX_FINISH(T)                                                            \
	const T lse = (T)s;                                                              \
	for (size_t j = 0; j < k; j++)                                                   \
		y[j] = x[j] - m - lse;

ROW_KERNEL(softmax_f64, double, tg_max_run_f64, tg_vmath_exp_f64, tg_sum_run_f64,
	   tg_sum_short_f64, same, all_same, SOFTMAX_FINISH(quot_f64))
ROW_KERNEL(softmax_f32, float, tg_max_run_f32, tg_vmath_exp_f32, tg_sum_run_f32,
	   tg_sum_short_f32, same, all_same, SOFTMAX_FINISH(quot_f32))
ROW_KERNEL(log_softmax_f64, double, tg_max_run_f64, tg_vmath_exp_f64, tg_sum_run_f64,
	   tg_sum_short_f64, log, tg_vmath_log_f64, LOG_SOFTMAX_FINISH(double))
ROW_KERNEL(log_softmax_f32, float, tg_max_run_f32, tg_vmath_exp_f32, tg_sum_run_f32,
	   tg_sum_short_f32, log, tg_vmath_log_f64, LOG_SOFTMAX_FINISH(float))

/* ---- rows split across the threads ----------------------------------------------- */
/* Each row is computed whole by one thread, as in one pass: a split gives
 * the same bits. */

typedef struct rows_job {
	void (*k64)(const double *, double *, size_t, size_t);
	void (*k32)(const float *, float *, size_t, size_t);
	const void *X;
	void *Y;
	size_t k;
} rows_job;

static void rows_part(void *arg, size_t lo, size_t hi)
{
	const rows_job *j = arg;
	if (j->k64)
		j->k64((const double *)j->X + lo * j->k, (double *)j->Y + lo * j->k, hi - lo, j->k);
	else
		j->k32((const float *)j->X + lo * j->k, (float *)j->Y + lo * j->k, hi - lo, j->k);
}

/* The rows from which rows of k elements, each with its exponentials,
 * are split. */
static size_t rows_min(size_t k)
{
	size_t m = (TG_PAR_MIN_MATH + k - 1) / k;
	return m > 2 ? m : 2;
}

/* ---- along another axis: the lane kernels ----------------------------------------- */
/* A slice (k, inner) of x (outer, k, inner), LANES of its lanes at a time
 * (w of them, the last chunk fewer): each step a loop over k rows of the
 * chunk's contiguous lanes, so that it vectorises across lanes where a
 * row's elements lie inner apart. The max and the sums in the order of k,
 * the sums in double; softmax over (64,128,128) floats along axis 1 had
 * taken two permutes each way (1.1x PyTorch's strided softmax). */
enum { LANES = 256 };

/* m[c] = the max of lane c's row of k (X[r inner + c]), c < w, a NaN only
 * where it comes first, as tg_max_run's */
#define LANE_MAX(m, X, k, inner, w)                                                      \
	do {                                                                             \
		memcpy((m), (X), (w) * sizeof *(m));                                     \
		for (size_t r_ = 1; r_ < (k); r_++)                                      \
			for (size_t c_ = 0; c_ < (w); c_++)                              \
				(m)[c_] = (X)[r_ * (inner) + c_] > (m)[c_] ? (X)[r_ * (inner) + c_] \
									   : (m)[c_];  \
	} while (0)

/* m the max of each lane's row (LANE_MAX), the shifted exponentials
 * e^(x - m) of row r_ into ROW (a pointer expression of r_, w of them) and
 * s their sums in double, in the order of k */
#define LANE_EXP_SUMS(m, s, X, k, inner, w, EXP, ROW)                                    \
	do {                                                                             \
		LANE_MAX(m, X, k, inner, w);                                             \
		memset((s), 0, (w) * sizeof *(s));                                       \
		for (size_t r_ = 0; r_ < (k); r_++) {                                    \
			for (size_t c_ = 0; c_ < (w); c_++)                              \
				(ROW)[c_] = (X)[r_ * (inner) + c_] - (m)[c_];            \
			EXP((ROW), (ROW), (w));                                          \
			for (size_t c_ = 0; c_ < (w); c_++)                              \
				(s)[c_] += (ROW)[c_];                                    \
		}                                                                        \
	} while (0)

/* y = FINISH from the max m of each lane's row, the exponentials in Y and
 * their sums s */
#define LANE_KERNEL(name, T, EXP, FINISH)                                                \
	TG_HOT_LOOP_WIDE                                                                 \
	static void name(const T *X, T *Y, size_t k, size_t inner, size_t w)             \
	{                                                                                \
		T m[LANES];                                                              \
		double s[LANES];                                                         \
		LANE_EXP_SUMS(m, s, X, k, inner, w, EXP, Y + r_ * inner);                \
		FINISH                                                                   \
	}

/* y / s, as the rows' SOFTMAX_FINISH */
#define LANE_SOFTMAX(QUOT)                                                               \
	double inv[LANES];                                                               \
	for (size_t c = 0; c < w; c++)                                                   \
		inv[c] = 1 / s[c];                                                       \
	for (size_t r = 0; r < k; r++)                                                   \
		for (size_t c = 0; c < w; c++)                                           \
			Y[r * inner + c] = QUOT(Y[r * inner + c], s[c], inv[c]);

/* x - m - ln s, as the rows' LOG_SOFTMAX_FINISH */
#define LANE_LOG_SOFTMAX(T)                                                              \
	tg_vmath_log_f64(s, s, w);                                                       \
	for (size_t r = 0; r < k; r++)                                                   \
		for (size_t c = 0; c < w; c++)                                           \
			Y[r * inner + c] = X[r * inner + c] - m[c] - (T)s[c];

LANE_KERNEL(softmax_lanes_f64, double, tg_vmath_exp_f64, LANE_SOFTMAX(quot_f64))
LANE_KERNEL(softmax_lanes_f32, float, tg_vmath_exp_f32, LANE_SOFTMAX(quot_f32))
LANE_KERNEL(log_softmax_lanes_f64, double, tg_vmath_exp_f64, LANE_LOG_SOFTMAX(double))
LANE_KERNEL(log_softmax_lanes_f32, float, tg_vmath_exp_f32, LANE_LOG_SOFTMAX(float))

/* The gradients the same way, of G and Y into O: softmax's O = G Y, its sum
 * d in double and rounded, then Y (G - d); log-softmax's G - e^Y sum(G) */
#define LANE_GRAD_KERNEL(name, T, BODY)                                                  \
	TG_HOT_LOOP_WIDE                                                                 \
	static void name(const T *G, const T *Y, T *O, size_t k, size_t inner, size_t w) \
	{                                                                                \
		double d[LANES];                                                         \
		T t[LANES];                                                              \
		memset(d, 0, w * sizeof *d);                                             \
		BODY                                                                     \
	}

#define LANE_SOFTMAX_GRAD(T)                                                             \
	for (size_t r = 0; r < k; r++)                                                   \
		for (size_t c = 0; c < w; c++) {                                         \
			O[r * inner + c] = G[r * inner + c] * Y[r * inner + c];          \
			d[c] += O[r * inner + c];                                        \
		}                                                                        \
	for (size_t c = 0; c < w; c++)                                                   \
		t[c] = (T)d[c];                                                          \
	for (size_t r = 0; r < k; r++)                                                   \
		for (size_t c = 0; c < w; c++)                                           \
			O[r * inner + c] = Y[r * inner + c] * (G[r * inner + c] - t[c]);

#define LANE_LOG_SOFTMAX_GRAD(T, EXP)                                                    \
	for (size_t r = 0; r < k; r++)                                                   \
		for (size_t c = 0; c < w; c++)                                           \
			d[c] += G[r * inner + c];                                        \
	for (size_t c = 0; c < w; c++)                                                   \
		t[c] = (T)d[c];                                                          \
	for (size_t r = 0; r < k; r++) {                                                 \
		EXP(Y + r * inner, O + r * inner, w);                                    \
		for (size_t c = 0; c < w; c++)                                           \
			O[r * inner + c] = G[r * inner + c] - O[r * inner + c] * t[c];   \
	}

LANE_GRAD_KERNEL(softmax_grad_lanes_f64, double, LANE_SOFTMAX_GRAD(double))
LANE_GRAD_KERNEL(softmax_grad_lanes_f32, float, LANE_SOFTMAX_GRAD(float))
LANE_GRAD_KERNEL(log_softmax_grad_lanes_f64, double,
		 LANE_LOG_SOFTMAX_GRAD(double, tg_vmath_exp_f64))
LANE_GRAD_KERNEL(log_softmax_grad_lanes_f32, float, LANE_LOG_SOFTMAX_GRAD(float, tg_vmath_exp_f32))

/* x along an axis as (outer, k, inner) in units of LANES lanes: unit u is
 * chunk u % chunks of slice u / chunks. */
typedef struct lanes_at {
	size_t k, inner, chunks;
} lanes_at;

/* Unit u's offset in x, in w its lanes, in at its first lane's offset in
 * the (outer, inner) the axis reduces x to. */
static size_t unit_chunk(const lanes_at *l, size_t u, size_t *w, size_t *at)
{
	size_t c0 = u % l->chunks * LANES, o = u / l->chunks;
	*w = l->inner - c0 < LANES ? l->inner - c0 : LANES;
	*at = o * l->inner + c0;
	return o * l->k * l->inner + c0;
}

/* Sets l for x along axis a and runs fn over its units (job) across the
 * threads, or over its rows (units of k) when inner is 1. */
static void run_units(tg_ctx *ctx, const tg_tensor *x, int a, lanes_at *l, tg_range_fn fn,
		      void *job)
{
	tg_view v = tg_view_along(x->ndim, x->shape, a);
	l->k = (size_t)v.n, l->inner = (size_t)v.inner, l->chunks = (l->inner + LANES - 1) / LANES;
	if (x->numel == 0)
		return;
	size_t units = (size_t)v.outer * (l->inner == 1 ? 1 : l->chunks);
	size_t each = l->k * (l->inner < LANES ? l->inner : LANES);
	tg_parallel_for(ctx, units, (TG_PAR_MIN_MATH + each - 1) / each, 1, fn, job);
}

/* A lane kernel's job; G is NULL for the forward kernels. */
typedef struct lanes_job {
	void (*f64)(const double *, double *, size_t, size_t, size_t);
	void (*f32)(const float *, float *, size_t, size_t, size_t);
	void (*g64)(const double *, const double *, double *, size_t, size_t, size_t);
	void (*g32)(const float *, const float *, float *, size_t, size_t, size_t);
	const void *G, *X;
	void *Y;
	bool is_f64;
	lanes_at at;
} lanes_job;

static void lanes_part(void *arg, size_t lo, size_t hi)
{
	const lanes_job *j = arg;
	const size_t k = j->at.k, inner = j->at.inner;
	for (size_t u = lo; u < hi; u++) {
		size_t w, at, off = unit_chunk(&j->at, u, &w, &at);
		if (j->is_f64 && j->G)
			j->g64((const double *)j->G + off, (const double *)j->X + off,
			       (double *)j->Y + off, k, inner, w);
		else if (j->G)
			j->g32((const float *)j->G + off, (const float *)j->X + off,
			       (float *)j->Y + off, k, inner, w);
		else if (j->is_f64)
			j->f64((const double *)j->X + off, (double *)j->Y + off, k, inner, w);
		else
			j->f32((const float *)j->X + off, (float *)j->Y + off, k, inner, w);
	}
}

/* Whether x has more than one element after axis a: the lane kernels' case;
 * else its slices are rows of x's axis a, the row kernels'. */
static bool has_lanes(const tg_tensor *x, int a)
{
	return tg_view_along(x->ndim, x->shape, a).inner > 1;
}

/* The axis a node works along: its attribute, or the last (-1) */
static int node_axis(const tg_node *n) { return n->nattr ? (int)n->attr[0] : -1; }

/* the axis of a node along another than the last, for graph exports */
static int axis_describe(const tg_node *n, char *buf, size_t size)
{
	if (size)
		buf[0] = '\0';
	return n->nattr ? snprintf(buf, size, "axis=%d", node_axis(n)) : 0;
}

/* Checks x (rank >= 1) and axis, makes the output and runs the kernel of
 * x's dtype over its rows (along the last axis, or one with only axes of 1
 * after it) or its lanes; records the node, with the axis as its attribute
 * when it is not the last. */
static tg_tensor *along_axis(const tg_op *op, const char *who, tg_tensor *x, int axis,
			     void (*k64)(const double *, double *, size_t, size_t),
			     void (*k32)(const float *, float *, size_t, size_t),
			     void (*l64)(const double *, double *, size_t, size_t, size_t),
			     void (*l32)(const float *, float *, size_t, size_t, size_t))
{
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	if (x->ndim < 1)
		return tg_fail(ctx, TG_ESHAPE, "%s: x is a scalar (); it needs at least one axis",
			       who);
	int a = axis < 0 ? axis + x->ndim : axis;
	if (a < 0 || a >= x->ndim) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_EARG, "%s: axis %d is out of range for x of shape %s "
					     "(axes 0 to %d)",
			       who, axis, tg_shape_fmt(x->ndim, x->shape, buf), x->ndim - 1);
	}
	tg_tensor *out = tg_tensor_like(x, who);
	if (!out)
		return NULL;
	if (has_lanes(x, a)) {
		lanes_job j = { .f64 = l64, .f32 = l32, .X = x->data, .Y = out->data,
				.is_f64 = x->dtype == TG_F64 };
		run_units(ctx, x, a, &j.at, lanes_part, &j);
	} else {
		size_t k = (size_t)x->shape[a];
		rows_job j = { x->dtype == TG_F64 ? k64 : NULL, k32, x->data, out->data, k };
		if (k > 0)
			tg_parallel_for(ctx, x->numel / k, rows_min(k), 1, rows_part, &j);
	}
	bool last = a == x->ndim - 1;
	return tg_op_end(op, out, 1, &x, last ? NULL : (const double[]){ a }, !last, NULL);
}

/* ---- softmax: y = e^(x - max) / sum e^(x - max); dx = y (dout - sum(dout y)) -------- */
/* The gradient is one op of its own, softmax_grad (dout, y): one pass over
 * each row for the products and their sum, one for dx, where the composed
 * form (mul, sum_axis, sub, mul) made four tensors. It rounds step by step
 * as that form does: dout y in the dtype, summed by tg_sum_run and rounded,
 * then y (dout - dot). Its own rule, with g = dout, s = sum(g y) and h the
 * gradient of dx: dg = softmax_grad(h, y), dy = h (g - s) - g sum(h y). y is
 * the softmax node's output, so a recorded backward reaches x through it. */

/* Both gradient kernels go a block of rows at a time (rows_per_block), each
 * step a loop over the block's rows, with k a constant for rows of up to 8
 * (TG_WITH_SHORT_N), where the sums vectorise across rows; LONG, if given,
 * takes the rows longer than 8 instead. */
#define GRAD_ROWS_KERNEL(name, T, BLOCK, LONG)                                       \
	static inline TG_ALWAYS_INLINE void name##_rows(const T *G, const T *Y, T *O,    \
							size_t rows, size_t k, T *t)     \
	{                                                                            \
		const size_t per = rows_per_block(k);                                \
		for (size_t r0 = 0; r0 < rows; r0 += per, G += per * k, Y += per * k, \
			    O += per * k) {                                          \
			const size_t nb = rows - r0 < per ? rows - r0 : per;         \
			BLOCK                                                        \
		}                                                                    \
	}                                                                            \
	TG_HOT_LOOP_WIDE                                                             \
	static void name(const T *G, const T *Y, T *O, size_t rows, size_t k)        \
	{                                                                            \
		T t[ROW_BLOCK];                                                      \
		LONG                                                                 \
		TG_WITH_SHORT_N(k, name##_rows(G, Y, O, rows, N, t);)                \
	}

/* per row: O = G Y, t = sum(O) rounded, O = Y (G - t) */
#define SOFTMAX_GRAD_BLOCK(T, SUM, SHORT)                                            \
	for (size_t i = 0; i < nb * k; i++)                                          \
		O[i] = G[i] * Y[i];                                                  \
	for (size_t r = 0; r < nb; r++)                                              \
		t[r] = (T)ROW_SUM(SHORT, SUM, O + r * k, k);                         \
	for (size_t r = 0; r < nb; r++)                                              \
		for (size_t j = 0; j < k; j++)                                       \
			O[r * k + j] = Y[r * k + j] * (G[r * k + j] - t[r]);

/* rows of more than 8 a row at a time: the row's three steps in turn,
 * faster than the block's for rows of 10 (softmax over (6553,10) floats,
 * forward and backward: 0.15 against 0.17 ms) */
#define SOFTMAX_GRAD_LONG(T, SUM)                                                    \
	if (k > 8) {                                                                 \
		for (size_t r = 0; r < rows; r++, G += k, Y += k, O += k) {          \
			for (size_t j = 0; j < k; j++)                               \
				O[j] = G[j] * Y[j];                                  \
			const T dot = (T)SUM(0.0, O, (int64_t)k);                    \
			for (size_t j = 0; j < k; j++)                               \
				O[j] = Y[j] * (G[j] - dot);                          \
		}                                                                    \
		return;                                                              \
	}

GRAD_ROWS_KERNEL(softmax_grad_f64, double,
		 SOFTMAX_GRAD_BLOCK(double, tg_sum_run_f64, tg_sum_short_f64),
		 SOFTMAX_GRAD_LONG(double, tg_sum_run_f64))
GRAD_ROWS_KERNEL(softmax_grad_f32, float,
		 SOFTMAX_GRAD_BLOCK(float, tg_sum_run_f32, tg_sum_short_f32),
		 SOFTMAX_GRAD_LONG(float, tg_sum_run_f32))

/* g - e^y sum(g) per row: log_softmax's gradient (below), the same way */
#define LOG_SOFTMAX_GRAD_BLOCK(T, SUM, SHORT, EXP)                                   \
	EXP(Y, O, nb * k);                                                           \
	for (size_t r = 0; r < nb; r++)                                              \
		t[r] = (T)ROW_SUM(SHORT, SUM, G + r * k, k);                         \
	for (size_t r = 0; r < nb; r++)                                              \
		for (size_t j = 0; j < k; j++)                                       \
			O[r * k + j] = G[r * k + j] - O[r * k + j] * t[r];

GRAD_ROWS_KERNEL(log_softmax_grad_f64, double,
		 LOG_SOFTMAX_GRAD_BLOCK(double, tg_sum_run_f64, tg_sum_short_f64, tg_vmath_exp_f64),
		 /* every row through the block */)
GRAD_ROWS_KERNEL(log_softmax_grad_f32, float,
		 LOG_SOFTMAX_GRAD_BLOCK(float, tg_sum_run_f32, tg_sum_short_f32, tg_vmath_exp_f32),
		 /* every row through the block */)

typedef struct grad_rows_job {
	void (*k64)(const double *, const double *, double *, size_t, size_t);
	void (*k32)(const float *, const float *, float *, size_t, size_t);
	const void *G, *Y;
	void *O;
	size_t k;
} grad_rows_job;

static void grad_rows_part(void *arg, size_t lo, size_t hi)
{
	const grad_rows_job *j = arg;
	size_t off = lo * j->k;
	if (j->k64)
		j->k64((const double *)j->G + off, (const double *)j->Y + off,
		       (double *)j->O + off, hi - lo, j->k);
	else
		j->k32((const float *)j->G + off, (const float *)j->Y + off, (float *)j->O + off,
		       hi - lo, j->k);
}

/* A row gradient op of dout and y (the node's output it differentiates), one
 * shape and dtype: the rule's own tensors; along axis (-1 the last, else
 * counted from the front, as node_axis gives it), through the lane kernels
 * l64 and l32 where it has lanes. */
static tg_tensor *grad_rows(const tg_op *op, const char *who, tg_tensor *dout, tg_tensor *y,
			    int axis,
			    void (*k64)(const double *, const double *, double *, size_t, size_t),
			    void (*k32)(const float *, const float *, float *, size_t, size_t),
			    void (*l64)(const double *, const double *, double *, size_t, size_t,
					size_t),
			    void (*l32)(const float *, const float *, float *, size_t, size_t,
					size_t))
{
	tg_tensor *in[2] = { dout, y };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	if (!tg_same_shape(dout, y)) {
		char sd[TG_SHAPE_STR], sy[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: dout %s and y %s differ", who,
			       tg_shape_fmt(dout->ndim, dout->shape, sd),
			       tg_shape_fmt(y->ndim, y->shape, sy));
	}
	tg_tensor *out = tg_tensor_like(y, who);
	if (!out)
		return NULL;
	int a = axis < 0 ? y->ndim - 1 : axis;
	if (has_lanes(y, a)) {
		lanes_job j = { .g64 = l64, .g32 = l32, .G = dout->data, .X = y->data,
				.Y = out->data, .is_f64 = y->dtype == TG_F64 };
		run_units(ctx, y, a, &j.at, lanes_part, &j);
	} else {
		size_t k = (size_t)y->shape[a];
		grad_rows_job j = { y->dtype == TG_F64 ? k64 : NULL, k32, dout->data, y->data,
				    out->data, k };
		if (k > 0)
			tg_parallel_for(ctx, y->numel / k, rows_min(k) * 2, 1, grad_rows_part, &j);
	}
	bool last = a == y->ndim - 1;
	return tg_op_end(op, out, 2, in, last ? NULL : (const double[]){ a }, !last, NULL);
}

static const tg_op softmax_grad_op, log_softmax_grad_op;

static tg_tensor *softmax_grad(tg_tensor *dout, tg_tensor *y, int axis)
{
	return grad_rows(&softmax_grad_op, "softmax_grad", dout, y, axis, softmax_grad_f64,
			 softmax_grad_f32, softmax_grad_lanes_f64, softmax_grad_lanes_f32);
}

static tg_tensor *log_softmax_grad(tg_tensor *dout, tg_tensor *y, int axis)
{
	return grad_rows(&log_softmax_grad_op, "log_softmax_grad", dout, y, axis,
			 log_softmax_grad_f64, log_softmax_grad_f32, log_softmax_grad_lanes_f64,
			 log_softmax_grad_lanes_f32);
}

static void softmax_grad_backward(tg_node *n, tg_tensor *h)
{
	tg_tensor *g = tg_node_input(n, 0), *y = tg_node_input(n, 1);
	int a = node_axis(n);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, softmax_grad(h, y, a));
	if (tg_node_needs_grad(n, 1)) {
		tg_tensor *s = tg_sum_axis(tg_mul(g, y), a, true);  /* 1 along the axis */
		tg_tensor *hy = tg_sum_axis(tg_mul(h, y), a, true);
		tg_node_grad(n, 1, tg_sub(tg_mul(h, tg_sub(g, s)), tg_mul(g, hy)));
	}
}

static const tg_op softmax_grad_op = { .name = "softmax_grad", .describe = axis_describe,
				       .backward = softmax_grad_backward,
				       .inputs = (const char *const[]){ "dout", "y" } };
TG_OP_REGISTER(softmax_grad_op);

static void softmax_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, softmax_grad(dout, tg_node_output(n), node_axis(n)));
}


static const tg_op softmax_op = { .name = "softmax", .backward = softmax_backward,
				  .describe = axis_describe };
TG_OP_REGISTER(softmax_op);

tg_tensor *tg_softmax_axis(tg_tensor *x, int axis)
{
	return along_axis(&softmax_op, "tg_softmax_axis", x, axis, softmax_f64, softmax_f32,
			  softmax_lanes_f64, softmax_lanes_f32);
}

tg_tensor *tg_softmax(tg_tensor *x)
{
	return along_axis(&softmax_op, "tg_softmax", x, -1, softmax_f64, softmax_f32,
			  softmax_lanes_f64, softmax_lanes_f32);
}

/* ---- log_softmax: y = x - max - ln sum e^(x - max); dx = dout - e^y sum(dout) -------- */
/* e^y is softmax(x), taken from this node's output so that it carries the
 * node's history in a recorded backward. */

static void log_softmax_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, log_softmax_grad(dout, tg_node_output(n), node_axis(n)));
}

/* log_softmax_grad (g, y) = g - e^y sum(g), one op as softmax_grad is (it
 * rounds as tg_exp, tg_sum_axis, tg_mul and tg_sub would). Its rule, with h
 * the gradient of its output and p = e^y: dg = h - sum(h p), dy = -h p
 * sum(g), each sum over the row. */
static void log_softmax_grad_backward(tg_node *n, tg_tensor *h)
{
	tg_tensor *g = tg_node_input(n, 0), *y = tg_node_input(n, 1);
	tg_tensor *hp = tg_mul(h, tg_exp(y));
	int a = node_axis(n);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_sub(h, tg_sum_axis(hp, a, true)));
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, tg_neg(tg_mul(hp, tg_sum_axis(g, a, true))));
}

static const tg_op log_softmax_grad_op = { .name = "log_softmax_grad",
					   .describe = axis_describe,
					   .backward = log_softmax_grad_backward,
					   .inputs = (const char *const[]){ "dout", "y" } };
TG_OP_REGISTER(log_softmax_grad_op);

static const tg_op log_softmax_op = { .name = "log_softmax", .backward = log_softmax_backward,
				      .describe = axis_describe };
TG_OP_REGISTER(log_softmax_op);

tg_tensor *tg_log_softmax_axis(tg_tensor *x, int axis)
{
	return along_axis(&log_softmax_op, "tg_log_softmax_axis", x, axis, log_softmax_f64,
			  log_softmax_f32, log_softmax_lanes_f64, log_softmax_lanes_f32);
}

tg_tensor *tg_log_softmax(tg_tensor *x)
{
	return along_axis(&log_softmax_op, "tg_log_softmax", x, -1, log_softmax_f64,
			  log_softmax_f32, log_softmax_lanes_f64, log_softmax_lanes_f32);
}

/* ---- logsumexp: y = m + ln sum e^(x - m) along an axis; dx = dout e^(x - y) ------------- */
/* m is the row's max, or 0 where that is infinite (as PyTorch): a row
 * holding +inf gives +inf, a row of -inf gives -inf. The exponentials and
 * the shifted values and their exponentials in the dtype (as softmax's),
 * their sum in double, the row LSE_CHUNK at a time (the lanes of another
 * axis LANES at a time), m + ln sum rounded once. The rule is ops
 * (sub, exp, mul), PyTorch's: it differentiates again. */
enum { LSE_CHUNK = 256 };

static inline double lse_shift(double m) { return isfinite(m) ? m : 0; }

#define LSE_KERNELS(S, T, MAX, EXP, SUM)                                                 \
	/* rows [r0, r1) of k elements into Y[r0..r1) */                                \
	TG_HOT_LOOP_WIDE                                                                 \
	static void lse_rows_##S(const T *X, T *Y, size_t r0, size_t r1, size_t k)       \
	{                                                                                \
		T e[LSE_CHUNK];                                                          \
		for (size_t r = r0; r < r1; r++) {                                       \
			const T *x = X + r * k;                                          \
			const T m = (T)lse_shift(MAX(x, (int64_t)k));                    \
			double s = 0;                                                    \
			for (size_t j0 = 0; j0 < k; j0 += LSE_CHUNK) {                   \
				size_t c = k - j0 < LSE_CHUNK ? k - j0 : LSE_CHUNK;      \
				for (size_t j = 0; j < c; j++)                           \
					e[j] = x[j0 + j] - m;                            \
				EXP(e, e, c);                                            \
				s = SUM(s, e, (int64_t)c);                               \
			}                                                                \
			Y[r] = (T)(m + log(s));                                          \
		}                                                                        \
	}                                                                                \
	/* w lanes of a slice (k, inner) into Y[0..w) */                                \
	TG_HOT_LOOP_WIDE                                                                 \
	static void lse_lanes_##S(const T *X, T *Y, size_t k, size_t inner, size_t w)    \
	{                                                                                \
		T m[LANES], e[LANES];                                                    \
		double s[LANES] = { 0 };                                                 \
		LANE_MAX(m, X, k, inner, w);                                             \
		for (size_t c = 0; c < w; c++)                                           \
			m[c] = (T)lse_shift(m[c]);                                       \
		for (size_t r = 0; r < k; r++) {                                         \
			for (size_t c = 0; c < w; c++)                                   \
				e[c] = X[r * inner + c] - m[c];                          \
			EXP(e, e, w);                                                    \
			for (size_t c = 0; c < w; c++)                                   \
				s[c] += e[c];                                            \
		}                                                                        \
		tg_vmath_log_f64(s, s, w);                                               \
		for (size_t c = 0; c < w; c++)                                           \
			Y[c] = (T)(m[c] + s[c]);                                         \
	}

/* dx = dout e^(x - y): the sub, exp and mul of the rule's ops in one pass,
 * each rounded as they round, so their bits. Rows [r0, r1) of k elements
 * (the last axis: one y and dout a row), or w lanes of a slice (k, inner)
 * (a y and dout a lane). */
#define LSE_GRAD_KERNELS(S, T, EXP)                                                      \
	TG_HOT_LOOP_WIDE                                                                 \
	static void lse_grad_rows_##S(const T *X, const T *Y, const T *D, T *O,          \
				      size_t r0, size_t r1, size_t k)                   \
	{                                                                                \
		for (size_t r = r0; r < r1; r++) {                                       \
			const T *x = X + r * k, y = Y[r], d = D[r];                      \
			T *o = O + r * k;                                                \
			for (size_t j = 0; j < k; j++)                                   \
				o[j] = x[j] - y;                                         \
			EXP(o, o, k);                                                    \
			for (size_t j = 0; j < k; j++)                                   \
				o[j] = d * o[j];                                         \
		}                                                                        \
	}                                                                                \
	TG_HOT_LOOP_WIDE                                                                 \
	static void lse_grad_lanes_##S(const T *X, const T *Y, const T *D, T *O,         \
				       size_t k, size_t inner, size_t w)                \
	{                                                                                \
		for (size_t r = 0; r < k; r++) {                                         \
			T *o = O + r * inner;                                            \
			for (size_t c = 0; c < w; c++)                                   \
				o[c] = X[r * inner + c] - Y[c];                          \
			EXP(o, o, w);                                                    \
			for (size_t c = 0; c < w; c++)                                   \
				o[c] = D[c] * o[c];                                      \
		}                                                                        \
	}

LSE_GRAD_KERNELS(f64, double, tg_vmath_exp_f64)
LSE_GRAD_KERNELS(f32, float, tg_vmath_exp_f32)

LSE_KERNELS(f64, double, tg_max_run_f64, tg_vmath_exp_f64, tg_sum_run_f64)
LSE_KERNELS(f32, float, tg_max_run_f32, tg_vmath_exp_f32, tg_sum_run_f32)

typedef struct lse_job {
	bool f64;
	const void *X;
	void *Y;
	const void *D; /* the backward's dout, O its dx */
	void *O;
	lanes_at at; /* inner 1: rows of k */
} lse_job;

/* The backward's units (run_units) */
static void lse_grad_part(void *arg, size_t lo, size_t hi)
{
	const lse_job *j = arg;
	const size_t k = j->at.k, inner = j->at.inner;
	if (inner == 1) {
		if (j->f64)
			lse_grad_rows_f64(j->X, j->Y, j->D, j->O, lo, hi, k);
		else
			lse_grad_rows_f32(j->X, j->Y, j->D, j->O, lo, hi, k);
		return;
	}
	for (size_t u = lo; u < hi; u++) {
		size_t w, at, off = unit_chunk(&j->at, u, &w, &at);
		if (j->f64)
			lse_grad_lanes_f64((const double *)j->X + off, (const double *)j->Y + at,
					   (const double *)j->D + at, (double *)j->O + off, k, inner,
					   w);
		else
			lse_grad_lanes_f32((const float *)j->X + off, (const float *)j->Y + at,
					   (const float *)j->D + at, (float *)j->O + off, k, inner, w);
	}
}

/* The forward's */
static void lse_part(void *arg, size_t lo, size_t hi)
{
	const lse_job *j = arg;
	const size_t k = j->at.k, inner = j->at.inner;
	if (inner == 1) {
		if (j->f64)
			lse_rows_f64(j->X, j->Y, lo, hi, k);
		else
			lse_rows_f32(j->X, j->Y, lo, hi, k);
		return;
	}
	for (size_t u = lo; u < hi; u++) {
		size_t w, at, off = unit_chunk(&j->at, u, &w, &at);
		if (j->f64)
			lse_lanes_f64((const double *)j->X + off, (double *)j->Y + at, k, inner, w);
		else
			lse_lanes_f32((const float *)j->X + off, (float *)j->Y + at, k, inner, w);
	}
}

/* dout e^(x - y) in one pass (the rule's ops, to their bits) */
static tg_tensor *lse_grad(tg_tensor *x, const tg_tensor *y, const tg_tensor *dout, int a)
{
	tg_tensor *dx = tg_tensor_like(x, "logsumexp");
	if (dx) {
		lse_job j = { .f64 = x->dtype == TG_F64, .X = x->data, .Y = y->data,
			      .D = dout->data, .O = dx->data };
		run_units(x->ctx, x, a, &j.at, lse_grad_part, &j);
	}
	return dx;
}

static void logsumexp_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0), *y = tg_node_output(n);
	int a = (int)tg_node_attr(n, 0);
	if (!x->ctx->grad_enabled) { /* a plain backward: one pass */
		TG_NODE_GRAD_INTO(n, 0, lse_grad(x, y, dout, a));
		return;
	}
	if (tg_node_attr(n, 1) == 0) { /* y and dout with the axis kept as a 1 */
		int64_t shape[TG_MAX_DIMS];
		tg_reduced_shape(x, a, true, shape);
		y = tg_reshape(y, x->ndim, shape);
		dout = tg_reshape(dout, x->ndim, shape);
	}
	tg_node_grad(n, 0, tg_mul(dout, tg_exp(tg_sub(x, y))));
}

static int lse_describe(const tg_node *n, char *buf, size_t size)
{
	return snprintf(buf, size, "axis=%d%s", (int)tg_node_attr(n, 0),
			tg_node_attr(n, 1) != 0 ? ", keepdim" : "");
}

static const tg_op logsumexp_op = { .name = "logsumexp", .backward = logsumexp_backward,
				    .describe = lse_describe };
TG_OP_REGISTER(logsumexp_op);

tg_tensor *tg_logsumexp(tg_tensor *x, int axis, bool keepdim)
{
	static const char who[] = "tg_logsumexp";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	int a = axis < 0 ? axis + x->ndim : axis;
	if (a < 0 || a >= x->ndim) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_EARG, "%s: axis %d is out of range for x of shape %s%s", who,
			       axis, tg_shape_fmt(x->ndim, x->shape, buf),
			       x->ndim ? "" : " (a scalar has no axes)");
	}
	if (x->shape[a] == 0) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: axis %d of x %s is empty", who, axis,
			       tg_shape_fmt(x->ndim, x->shape, buf));
	}
	int64_t shape[TG_MAX_DIMS];
	int ndim = tg_reduced_shape(x, a, keepdim, shape);
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, ndim, shape);
	if (!out)
		return NULL;
	lse_job j = { .f64 = x->dtype == TG_F64, .X = x->data, .Y = out->data };
	run_units(ctx, x, a, &j.at, lse_part, &j);
	const double attr[2] = { a, keepdim };
	return tg_op_end(&logsumexp_op, out, 1, &x, attr, 2, NULL);
}

/* ---- cross_entropy: L = mean_i (ln sum_j e^x_ij - x_i,label_i) ------------------------- */
/* d logits = dout (softmax(logits) - onehot(labels)) / N. Forward in one
 * stable pass per row: ln sum_j e^x_ij = m + ln sum_j e^(x_ij - m), in
 * double for both dtypes, CHUNK exponentials at a time. The labels are
 * copied to the node (aux) for the backward pass. */

enum { CHUNK = 256 };

#define CROSS_ENTROPY_KERNEL(name, T, MAX)                                               \
	/* Rows [r0, r1) of k elements, 2k <= CHUNK, in blocks through one exp   \
	 * call. With k a constant of up to 8 (TG_WITH_SHORT_N), each step is a   \
	 * loop over the block's rows, the sums vectorised across them and the   \
	 * logarithms one call of vmath's loop (cross-entropy over (8192,8)      \
	 * floats, forward and backward: 0.24 -> 0.12 ms); a longer row sums and \
	 * takes its logarithm in one loop, which was faster for rows of 10     \
	 * (0.21 against 0.29 ms over (6553,10)). */                              \
	static inline TG_ALWAYS_INLINE void name##_rows(const T *X, const int64_t *labels, \
							double *L, size_t r0, size_t r1, \
							size_t k)                        \
	{                                                                                \
		double e[CHUNK], ms[CHUNK], ss[CHUNK];                                   \
		const size_t per = CHUNK / k;                                            \
		const bool short_k = SHORT_K(k);                                         \
		for (size_t b0 = r0; b0 < r1; b0 += per, X += per * k) {                 \
			const size_t nb = r1 - b0 < per ? r1 - b0 : per;                 \
			for (size_t r = 0; r < nb; r++) {                                \
				ms[r] = MAX(X + r * k, (int64_t)k);                      \
				for (size_t j = 0; j < k; j++)                           \
					e[r * k + j] = (double)X[r * k + j] - ms[r];     \
			}                                                                \
			tg_vmath_exp_f64(e, e, nb * k);                                  \
			if (!short_k) {                                                  \
				for (size_t r = 0; r < nb; r++) {                        \
					double s = tg_sum_run_f64(0, e + r * k, (int64_t)k); \
					L[b0 + r] = (ms[r] - X[r * k + labels[b0 + r]]) + log(s); \
				}                                                        \
				continue;                                                \
			}                                                                \
			for (size_t r = 0; r < nb; r++)                                  \
				ss[r] = ROW_SUM(tg_sum_short_f64, tg_sum_run_f64, e + r * k, k); \
			tg_vmath_log_f64(ss, ss, nb);                                    \
			for (size_t r = 0; r < nb; r++)                                  \
				L[b0 + r] = (ms[r] - X[r * k + labels[b0 + r]]) + ss[r];  \
		}                                                                        \
	}                                                                                \
	TG_HOT_LOOP_WIDE                                                                 \
	static void name(const T *X, const int64_t *labels, double *L,                   \
				     size_t r0, size_t r1, size_t k)                     \
	{                                                                                \
		X += r0 * k;                                                             \
		if (k && 2 * k <= CHUNK) {                                               \
			TG_WITH_SHORT_N(k, name##_rows(X, labels, L, r0, r1, N);)        \
			return;                                                          \
		}                                                                        \
		double e[CHUNK];                                                         \
		for (size_t r = r0; r < r1; r++, X += k) {                               \
			double m = MAX(X, (int64_t)k);                                   \
			double s = 0;                                                    \
			for (size_t j0 = 0; j0 < k; j0 += CHUNK) {                       \
				size_t c = k - j0 < CHUNK ? k - j0 : CHUNK;              \
				for (size_t j = 0; j < c; j++)                           \
					e[j] = (double)X[j0 + j] - m;                    \
				tg_vmath_exp_f64(e, e, c);                               \
				s = tg_sum_run_f64(s, e, (int64_t)c);                    \
			}                                                                \
			L[r] = (m - X[labels[r]]) + log(s);                              \
		}                                                                        \
	}

CROSS_ENTROPY_KERNEL(cross_entropy_f64, double, tg_max_run_f64)
CROSS_ENTROPY_KERNEL(cross_entropy_f32, float, tg_max_run_f32)

/* The forward kernel (L set) or the backward one (O set) over rows [lo, hi). */
typedef struct ce_job {
	bool f64;
	const void *X;
	const int64_t *labels;
	double *L;
	size_t k;
	double dout;
	void *O;
	size_t n; /* rows of the batch (the gradient's 1/N) */
	lanes_at at; /* logits (N,C,d1,...) along axis 1: the lanes' units */
} ce_job;

static void ce_part(void *arg, size_t lo, size_t hi);
static void ce_lanes_part(void *arg, size_t lo, size_t hi);

static tg_tensor *ce_backward(tg_tensor *dout, tg_tensor *logits, const int64_t *labels);

static tg_tensor *ce_lanes_grad(tg_tensor *dout, tg_tensor *logits, const int64_t *labels);

/* Logits (N,C,d1,...) take the lanes' fused gradient, or with grad mode on
 * their rows' rule (cross_entropy_backward of tg_class_rows) moved back. */
static void cross_entropy_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	if (x->ndim == 2)
		TG_NODE_GRAD_INTO(n, 0, ce_backward(dout, x, n->aux));
	else if (!x->ctx->grad_enabled)
		TG_NODE_GRAD_INTO(n, 0, ce_lanes_grad(dout, x, n->aux));
	else
		tg_node_grad(n, 0, tg_class_unrows(ce_backward(dout, tg_class_rows(x), n->aux), x));
}

/* the labels kept with the node: "labels [2, 0]"; the logits are input
 * nin - 1, (N,K) or (N,C,d1,...) */
static int labels_describe(const tg_node *n, char *buf, size_t size)
{
	const tg_tensor *logits = tg_node_input(n, n->nin - 1);
	return tg_describe_ints(buf, size, "labels ", n->aux,
				(int64_t)(logits->numel / (size_t)logits->shape[1]));
}

static const tg_op cross_entropy_op = { .name = "cross_entropy",
					.backward = cross_entropy_backward,
					.describe = labels_describe };
TG_OP_REGISTER(cross_entropy_op);

/* The loss of logits (N,K), or (N,C,d1,...) along axis 1, with checked
 * labels (one a row or position) in the step arena. */
static tg_tensor *cross_entropy(tg_ctx *ctx, const char *who, tg_tensor *logits,
				const int64_t *labels)
{
	size_t k = (size_t)logits->shape[1], rows = logits->numel / k;
	tg_tensor *out = tg_tensor_new(ctx, who, logits->dtype, 0, NULL);
	if (!out)
		return NULL;
	double *L = tg_arena_alloc(ctx, rows * sizeof *L);
	if (!L)
		return NULL;
	ce_job j = { logits->dtype == TG_F64, logits->data, labels, L, k, 0, NULL, rows, { 0 } };
	if (logits->ndim > 2)
		run_units(ctx, logits, 1, &j.at, ce_lanes_part, &j);
	else
		tg_parallel_for(ctx, rows, rows_min(k), 1, ce_part, &j);
	double loss = 0; /* the rows' losses added in order, whatever the split */
	for (size_t r = 0; r < rows; r++)
		loss += L[r];
	loss /= (double)rows;
	if (out->dtype == TG_F64)
		*(double *)out->data = loss;
	else
		*(float *)out->data = (float)loss;
	return tg_op_end(&cross_entropy_op, out, 1, &logits, NULL, 0, labels);
}

/* Logits (C), (N,C) or (N,C,d1,...) with lanes after the classes go in as
 * they are (the lane kernels) or as rows (tg_class_rows: (1,C) or (N,C)). */
static tg_tensor *class_logits(tg_tensor *logits)
{
	return logits->ndim > 2 && has_lanes(logits, 1) ? logits : tg_class_rows(logits);
}

tg_tensor *tg_cross_entropy(tg_tensor *logits, const tg_tensor *labels)
{
	static const char who[] = "tg_cross_entropy";
	tg_ctx *ctx = tg_op_begin(who, 1, &logits);
	if (!ctx)
		return NULL;
	const int64_t *saved = tg_class_labels(ctx, who, "logits", logits, labels);
	tg_tensor *x = saved ? class_logits(logits) : NULL;
	return x ? cross_entropy(ctx, who, x, saved) : NULL;
}

tg_tensor *tg_cross_entropy_i32(tg_tensor *logits, const int32_t *labels, int64_t n)
{
	static const char who[] = "tg_cross_entropy_i32";
	tg_ctx *ctx = tg_op_begin(who, 1, &logits);
	if (!ctx)
		return NULL;
	char buf[TG_SHAPE_STR];
	if (logits->ndim == 0)
		return tg_fail(ctx, TG_ESHAPE, "%s: logits %s must be (C), (N,C) or (N,C,d1,...)", who,
			       tg_shape_fmt(logits->ndim, logits->shape, buf));
	int64_t k = logits->shape[logits->ndim == 1 ? 0 : 1], rows = (int64_t)logits->numel / k;
	if (!labels)
		return tg_fail(ctx, TG_ENULL, "%s: labels is NULL", who);
	if (n != rows)
		return tg_fail(ctx, TG_ESHAPE, "%s: %lld labels for logits %s; expected %lld", who,
			       (long long)n, tg_shape_fmt(logits->ndim, logits->shape, buf),
			       (long long)rows);
	int64_t *saved = tg_arena_alloc(ctx, (size_t)rows * sizeof *saved);
	if (!saved)
		return NULL;
	for (int64_t r = 0; r < rows; r++) {
		if (labels[r] < 0 || labels[r] >= k)
			return tg_fail(ctx, TG_EARG, "%s: labels[%lld] = %d is outside [0, %lld)",
				       who, (long long)r, (int)labels[r], (long long)k);
		saved[r] = labels[r];
	}
	tg_tensor *x = class_logits(logits);
	return x ? cross_entropy(ctx, who, x, saved) : NULL;
}

/* ---- cross_entropy_backward: out = (softmax(x) - onehot(labels)) dout / N ------------- */
/* cross_entropy's local gradient as one fused op, one pass per row. It rounds
 * step by step as softmax, sub, mul_scalar by 1/N and mul by dout would, so
 * the fused and the composed forms agree bit for bit. Its own rule, with
 * p = softmax(x) and g the gradient of out: d dout = sum(g (p - onehot)) / N,
 * dx = softmax's rule applied to h = g dout / N, that is p (h - sum(h p)). */

#define CE_BACKWARD_KERNEL(name, T, EXP, MAX, SUM, SHORT, QUOT)                           \
	/* each step a loop over a block's rows; k a constant for rows of up to 8 \
	 * (TG_WITH_SHORT_N), where the sums and quotients vectorise across rows */ \
	static inline TG_ALWAYS_INLINE void name##_rows(const T *X, const int64_t *labels, \
							T inv_n, T dout, T *O, size_t rows, \
							size_t k)                         \
	{                                                                                 \
		double ss[ROW_BLOCK], inv[ROW_BLOCK];                                     \
		T p_lab[ROW_BLOCK];                                                       \
		const size_t per = rows_per_block(k);                                     \
		for (size_t b0 = 0; b0 < rows; b0 += per, X += per * k, O += per * k) {   \
			const size_t nb = rows - b0 < per ? rows - b0 : per;              \
			const int64_t *lab = labels + b0;                                 \
			for (size_t r = 0; r < nb; r++) {                                 \
				const T *x = X + r * k;                                   \
				T *o = O + r * k;                                         \
				const T m = MAX(x, (int64_t)k);                           \
				for (size_t j = 0; j < k; j++)                            \
					o[j] = x[j] - m;                                  \
			}                                                                 \
			EXP(O, O, nb * k);                                                \
			for (size_t r = 0; r < nb; r++) {                                 \
				ss[r] = ROW_SUM(SHORT, SUM, O + r * k, k);                \
				inv[r] = 1 / ss[r];                                       \
			}                                                                 \
			for (size_t r = 0; r < nb; r++)                                   \
				p_lab[r] = QUOT(O[r * k + (size_t)lab[r]], ss[r], inv[r]); \
			for (size_t r = 0; r < nb; r++)                                   \
				for (size_t j = 0; j < k; j++)                            \
					O[r * k + j] = QUOT(O[r * k + j], ss[r], inv[r]) * \
						       inv_n * dout;                       \
			for (size_t r = 0; r < nb; r++)                                   \
				O[r * k + (size_t)lab[r]] = (p_lab[r] - 1) * inv_n * dout; \
		}                                                                         \
	}                                                                                 \
	TG_HOT_LOOP_WIDE                                                                  \
	static void name(const T *X, const int64_t *labels, T dout, T *O,                 \
				     size_t rows, size_t r0, size_t r1, size_t k)         \
	{                                                                                 \
		const T inv_n = (T)(1.0 / (double)rows);                                  \
		X += r0 * k;                                                              \
		O += r0 * k;                                                              \
		TG_WITH_SHORT_N(k, name##_rows(X, labels + r0, inv_n, dout, O, r1 - r0, N);) \
	}

CE_BACKWARD_KERNEL(ce_backward_f64, double, tg_vmath_exp_f64, tg_max_run_f64,
		   tg_sum_run_f64, tg_sum_short_f64, quot_f64)
CE_BACKWARD_KERNEL(ce_backward_f32, float, tg_vmath_exp_f32, tg_max_run_f32,
		   tg_sum_run_f32, tg_sum_short_f32, quot_f32)

/* Along axis 1 of (N,C,d1,...), the lanes of a slice (C, inner) a chunk
 * at a time (the lane kernels'): the forward's losses of w positions into
 * L, the shifted exponentials in the dtype and their sums in double (as
 * logsumexp's; exponentials of floats taken in double had been 40% of
 * the forward and backward over (8,21,64,64)); the backward's gradient in
 * the steps of the rows' kernel (CE_BACKWARD_KERNEL), so each element
 * rounds as its row's would but for the order of the sum. */
#define CE_LANES_KERNELS(S, T, EXP, QUOT)                                                  \
	TG_HOT_LOOP_WIDE                                                                   \
	static void ce_lanes_##S(const T *X, const int64_t *lab, double *L, size_t k,      \
				 size_t inner, size_t w)                                   \
	{                                                                                  \
		T m[LANES], e[LANES];                                                      \
		double s[LANES];                                                           \
		LANE_EXP_SUMS(m, s, X, k, inner, w, EXP, e);                               \
		tg_vmath_log_f64(s, s, w);                                                 \
		for (size_t c = 0; c < w; c++)                                             \
			L[c] = ((double)m[c] - X[(size_t)lab[c] * inner + c]) + s[c];      \
	}                                                                                  \
	TG_HOT_LOOP_WIDE                                                                   \
	static void ce_grad_lanes_##S(const T *X, const int64_t *lab, T inv_n, T dout,     \
				      T *O, size_t k, size_t inner, size_t w)              \
	{                                                                                  \
		T m[LANES], p_lab[LANES];                                                  \
		double s[LANES], inv[LANES];                                               \
		LANE_EXP_SUMS(m, s, X, k, inner, w, EXP, O + r_ * inner);                  \
		for (size_t c = 0; c < w; c++) {                                           \
			inv[c] = 1 / s[c];                                                 \
			p_lab[c] = QUOT(O[(size_t)lab[c] * inner + c], s[c], inv[c]);      \
		}                                                                          \
		for (size_t r = 0; r < k; r++)                                             \
			for (size_t c = 0; c < w; c++)                                     \
				O[r * inner + c] =                                         \
					QUOT(O[r * inner + c], s[c], inv[c]) * inv_n * dout; \
		for (size_t c = 0; c < w; c++)                                             \
			O[(size_t)lab[c] * inner + c] = (p_lab[c] - 1) * inv_n * dout;     \
	}

CE_LANES_KERNELS(f64, double, tg_vmath_exp_f64, quot_f64)
CE_LANES_KERNELS(f32, float, tg_vmath_exp_f32, quot_f32)

static const tg_op cross_entropy_backward_op;

/* rows of the job's logits: their losses into L, or their gradients into O */
static void ce_part(void *arg, size_t lo, size_t hi)
{
	const ce_job *j = arg;
	if (j->L && j->f64)
		cross_entropy_f64(j->X, j->labels, j->L, lo, hi, j->k);
	else if (j->L)
		cross_entropy_f32(j->X, j->labels, j->L, lo, hi, j->k);
	else if (j->f64)
		ce_backward_f64(j->X, j->labels, j->dout, j->O, j->n, lo, hi, j->k);
	else
		ce_backward_f32(j->X, j->labels, (float)j->dout, j->O, j->n, lo, hi, j->k);
}

/* units of the job's lanes (run_units): losses into L, or gradients into O */
static void ce_lanes_part(void *arg, size_t lo, size_t hi)
{
	const ce_job *j = arg;
	const size_t k = j->at.k, inner = j->at.inner;
	for (size_t u = lo; u < hi; u++) {
		size_t w, at, off = unit_chunk(&j->at, u, &w, &at);
		const int64_t *lab = j->labels + at;
		if (j->L && j->f64)
			ce_lanes_f64((const double *)j->X + off, lab, j->L + at, k, inner, w);
		else if (j->L)
			ce_lanes_f32((const float *)j->X + off, lab, j->L + at, k, inner, w);
		else if (j->f64)
			ce_grad_lanes_f64((const double *)j->X + off, lab, 1.0 / (double)j->n,
					  j->dout, (double *)j->O + off, k, inner, w);
		else
			ce_grad_lanes_f32((const float *)j->X + off, lab,
					  (float)(1.0 / (double)j->n), (float)j->dout,
					  (float *)j->O + off, k, inner, w);
	}
}

/* the one value of dout, a gradient of the loss */
static double dout_value(const tg_tensor *dout)
{
	return dout->dtype == TG_F64 ? *(const double *)dout->data
				     : (double)*(const float *)dout->data;
}

/* cross_entropy's plain gradient of logits (N,C,d1,...) in one pass */
static tg_tensor *ce_lanes_grad(tg_tensor *dout, tg_tensor *logits, const int64_t *labels)
{
	tg_tensor *dx = tg_tensor_like(logits, "cross_entropy (backward)");
	if (!dx)
		return NULL;
	ce_job j = { logits->dtype == TG_F64, logits->data, labels, NULL, 0, dout_value(dout),
		     dx->data, logits->numel / (size_t)logits->shape[1], { 0 } };
	run_units(logits->ctx, logits, 1, &j.at, ce_lanes_part, &j);
	return dx;
}

/* The fused gradient with checked labels (N) in the step arena. */
static tg_tensor *ce_backward_checked(const char *who, tg_tensor *dout, tg_tensor *logits,
				      const int64_t *labels)
{
	size_t rows = (size_t)logits->shape[0], k = (size_t)logits->shape[1];
	tg_tensor *out = tg_tensor_like(logits, who);
	if (!out)
		return NULL;
	ce_job j = { logits->dtype == TG_F64, logits->data, labels, NULL, k, dout_value(dout),
		     out->data, rows, { 0 } };
	tg_parallel_for(logits->ctx, rows, rows_min(k), 1, ce_part, &j);
	tg_tensor *in[2] = { dout, logits };
	return tg_op_end(&cross_entropy_backward_op, out, 2, in, NULL, 0, labels);
}

/* Checks dout and logits for who; the context, or NULL after recording why. */
static tg_ctx *ce_backward_begin(const char *who, tg_tensor *dout, tg_tensor *logits)
{
	tg_tensor *in[2] = { dout, logits };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	if (dout->numel != 1 || logits->ndim != 2) {
		char sd[TG_SHAPE_STR], sx[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE,
			       "%s: dout %s must have one element and logits %s must be (N,K)",
			       who, tg_shape_fmt(dout->ndim, dout->shape, sd),
			       tg_shape_fmt(logits->ndim, logits->shape, sx));
	}
	return ctx;
}

/* cross_entropy's rule: labels are the node's checked copy. */
static tg_tensor *ce_backward(tg_tensor *dout, tg_tensor *logits, const int64_t *labels)
{
	static const char who[] = "tg_cross_entropy_backward";
	tg_ctx *ctx = ce_backward_begin(who, dout, logits);
	return ctx ? ce_backward_checked(who, dout, logits, labels) : NULL;
}

tg_tensor *tg_cross_entropy_backward(tg_tensor *dout, tg_tensor *logits, const tg_tensor *labels)
{
	static const char who[] = "tg_cross_entropy_backward";
	tg_ctx *ctx = ce_backward_begin(who, dout, logits);
	if (!ctx)
		return NULL;
	const int64_t *saved =
		tg_indices(ctx, who, "labels", labels, logits->shape[0], false, logits->shape[1]);
	return saved ? ce_backward_checked(who, dout, logits, saved) : NULL;
}

static void cross_entropy_backward_backward(tg_node *n, tg_tensor *g)
{
	tg_tensor *dout = tg_node_input(n, 0), *x = tg_node_input(n, 1);
	int64_t rows = x->shape[0], k = x->shape[1];
	double inv_n = 1.0 / (double)rows;
	tg_tensor *p = tg_softmax(x);
	if (tg_node_needs_grad(n, 0)) {
		tg_tensor *onehot = tg_one_hot_of(x->ctx, x->dtype, n->aux, rows, k); /* constant */
		tg_tensor *dd = tg_mul_scalar(tg_sum(tg_mul(g, tg_sub(p, onehot))), inv_n);
		tg_node_grad(n, 0, tg_reshape(dd, dout->ndim, dout->shape));
	}
	if (tg_node_needs_grad(n, 1)) {
		tg_tensor *h = tg_mul(tg_mul_scalar(g, inv_n), dout);
		tg_node_grad(n, 1, softmax_grad(h, p, -1));
	}
}

static const tg_op cross_entropy_backward_op = { .name = "cross_entropy_backward",
						 .backward = cross_entropy_backward_backward,
						 .inputs = (const char *const[]){ "dout", "logits" },
						 .describe = labels_describe };
TG_OP_REGISTER(cross_entropy_backward_op);
