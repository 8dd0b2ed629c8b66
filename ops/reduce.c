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

typedef tg_view view;

/* Y (outer, inner) = scale * sum over n, accumulated in double, for the
 * outer slices [o0, o1) and in each the columns [i0, i1) of inner. acc holds
 * inner doubles; with inner 1 (a sum over all elements, or along the last
 * axis) each slice is one run summed in a register, else its rows are
 * added into acc by tg_add_rows, so a column's sum has the same bits
 * whichever columns share the call. */
#define SUM_AXIS_KERNEL(name, T, sum_run, add_rows, short_runs)                           \
	TG_HOT_LOOP_WIDE static void name(view v, const T *X, T *Y, double scale,       \
					  double *acc, int64_t o0, int64_t o1, int64_t i0, \
					  int64_t i1)                                       \
	{                                                                                 \
		const int64_t in = v.inner, w = i1 - i0;                                  \
		if (in == 1 && v.n <= 8) {                                                \
			short_runs(X, Y, v.n, scale, o0, o1);                             \
			return;                                                           \
		}                                                                         \
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

/* Y[o] = scale * the sum of run o (n <= 8 elements) for the runs [o0, o1):
 * tg_sum_run's bits (tg_sum_short), n a constant in each loop so that it
 * vectorises across the runs. A million sums of 2 floats: 7.2 -> 0.5 ms. */
#define SHORT_RUNS_KERNEL(name, T, sum_short)                                                 \
	TG_HOT_LOOP_WIDE static void name(const T *X, T *Y, int64_t n, double scale, int64_t o0, \
					  int64_t o1)                                          \
	{                                                                                     \
		TG_WITH_SHORT_N(n, for (int64_t o = o0; o < o1; o++)                          \
				     Y[o] = (T)(sum_short(X + o * N, N) * scale);)            \
	}

/* ties are counted in 32 bits this many elements at a time */
enum { TIES_CHUNK = 1 << 30 };

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

/* The kernels of max take x's slice o, its rows [k0, k1) (k1 > k0) and in
 * each row the columns [i0, i1) of inner, so that a split may cut slices,
 * rows or columns; y, c, share and d are rows of inner values, indexed by
 * column. */

/* y[i] = the max of column i over the rows (a run's max when inner is 1);
 * NaN if one of them is. */
#define MAX_ROWS_KERNEL(name, T, max_run)                                          \
	static inline TG_ALWAYS_INLINE void name(view v, const T *X, T *y, int64_t o,     \
						 int64_t k0, int64_t k1, int64_t i0, int64_t i1) \
	{                                                                          \
		const int64_t in = v.inner;                                        \
		const T *Xo = X + o * v.n * in;                                    \
		if (in == 1) {                                                     \
			y[0] = max_run(Xo + k0, k1 - k0);                          \
			return;                                                    \
		}                                                                  \
		for (int64_t i = i0; i < i1; i++)                                  \
			y[i] = Xo[k0 * in + i];                                    \
		for (int64_t k = k0 + 1; k < k1; k++) {                            \
			const T *x = Xo + k * in;                                  \
			for (int64_t i = i0; i < i1; i++)                          \
				if (BEATS(x[i], y[i]))                             \
					y[i] = x[i];                               \
		}                                                                  \
	}

/* c[i] = the elements of column i over the rows that tie y[i] */
#define COUNT_TIES_KERNEL(name, T)                                                         \
	static inline TG_ALWAYS_INLINE void name(view v, const T *X, const T *y, int64_t *c, \
						 int64_t o, int64_t k0, int64_t k1, int64_t i0,  \
						 int64_t i1)                                     \
	{                                                                                  \
		const int64_t in = v.inner;                                                \
		const T *Xo = X + o * v.n * in;                                            \
		if (in == 1) {                                                             \
			const T m = y[0];                                                  \
			int64_t t = 0;                                                     \
			for (int64_t k = k0; k < k1; k++)                                  \
				t += TIES(Xo[k], m);                                       \
			c[0] = t;                                                          \
			return;                                                            \
		}                                                                          \
		memset(c + i0, 0, (size_t)(i1 - i0) * sizeof *c);                          \
		for (int64_t k = k0; k < k1; k++)                                          \
			for (int64_t i = i0; i < i1; i++)                                  \
				c[i] += TIES(Xo[k * in + i], y[i]);                        \
	}

/* M (outer, n, inner) over the rows = share[i] at the elements that tie
 * y[i], +0 elsewhere; times the slice's dout d[i] at the ties when d is
 * given (selected: an element off the route gets +0 whatever dout holds,
 * not 0 * dout), the product rounded once as share * dout rounds it. */
#define SHARE_ROWS_KERNEL(name, T)                                                   \
	static inline TG_ALWAYS_INLINE void name(view v, const T *X, const T *y,          \
						 const T *share, const T *d, T *M, int64_t o,    \
						 int64_t k0, int64_t k1, int64_t i0, int64_t i1) \
	{                                                                            \
		const int64_t in = v.inner;                                          \
		const T *Xo = X + o * v.n * in;                                      \
		T *Mo = M + o * v.n * in;                                            \
		if (in == 1) {                                                       \
			const T m = y[0], sh = share[0], dd = d ? d[0] : 1;          \
			for (int64_t k = k0; k < k1; k++) /* share * 1: exact */     \
				Mo[k] = TIES(Xo[k], m) ? sh * dd : 0;               \
			return;                                                      \
		}                                                                    \
		for (int64_t k = k0; k < k1; k++)                                    \
			for (int64_t i = i0; i < i1; i++) {                          \
				const bool t = TIES(Xo[k * in + i], y[i]);           \
				Mo[k * in + i] = t ? (d ? share[i] * d[i] : share[i]) : 0; \
			}                                                            \
	}

/* ---- narrow rows: a max along a middle axis of inner 2 to 15 ------------------ */
/* Rows of so few columns left the loops above a few elements a row, the
 * counts and maxima indexed by a variable column (128 slices of (1024,4)
 * floats, forward and backward: 1.4 ms). But a slice's rows [k0, k1) of
 * width W lie in one run of (k1 - k0) W elements: it is read in tiles of
 * L = lcm(W, 64 bytes of values) elements, lane j of a tile holding column
 * j mod W, so that every loop over a tile has a constant length and runs
 * in whole vectors for every W; the lanes fold into their columns at the
 * end. A tail of fewer than L elements is its own shorter tile. */

enum { NARROW_MAX = 15 };

/* Before a loop over a tile: GCC unrolled a tile of 16 lanes (a width of
 * 2, 4 or 8 floats) into scalar compares and branches before it could
 * vectorise the loop, which it does for the longer tiles. */
#if defined(__GNUC__) && !defined(__clang__)
#define NARROW_TILE _Pragma("GCC unroll 1")
#else
#define NARROW_TILE
#endif

/* L for W columns of T: the least multiple of W and of the values in 64
 * bytes (16 floats or 8 doubles) that is also of 256 bytes or more, at
 * most 240 floats or 120 doubles. The loops keep the lanes in memory, each
 * a chain of additions or compares through a store and a load: a tile of
 * 64 bytes (widths 2, 4 and 8) had too few of them to hide that latency. */
#define NARROW_LCM(T, W) ((W) * (int)(64 / sizeof(T)) / ((W) & -(W)))
#define NARROW_LANES(T, W)                                                       \
	(NARROW_LCM(T, W) *                                                      \
	 (((int)(256 / sizeof(T)) + NARROW_LCM(T, W) - 1) / NARROW_LCM(T, W)))

/* the statements after w with W its value, a constant from 2 to NARROW_MAX */
#define WITH_NARROW_W(w, ...)                                  \
	switch (w) {                                           \
	case 2: { enum { W = 2 }; __VA_ARGS__ } break;         \
	case 3: { enum { W = 3 }; __VA_ARGS__ } break;         \
	case 4: { enum { W = 4 }; __VA_ARGS__ } break;         \
	case 5: { enum { W = 5 }; __VA_ARGS__ } break;         \
	case 6: { enum { W = 6 }; __VA_ARGS__ } break;         \
	case 7: { enum { W = 7 }; __VA_ARGS__ } break;         \
	case 8: { enum { W = 8 }; __VA_ARGS__ } break;         \
	case 9: { enum { W = 9 }; __VA_ARGS__ } break;         \
	case 10: { enum { W = 10 }; __VA_ARGS__ } break;       \
	case 11: { enum { W = 11 }; __VA_ARGS__ } break;       \
	case 12: { enum { W = 12 }; __VA_ARGS__ } break;       \
	case 13: { enum { W = 13 }; __VA_ARGS__ } break;       \
	case 14: { enum { W = 14 }; __VA_ARGS__ } break;       \
	case 15: { enum { W = 15 }; __VA_ARGS__ } break;       \
	}

/* lane j of the kernels below meets element kj of the slice: the max keeps
 * the larger or a NaN; the pass counts a tie (a NaN ties a NaN max) and
 * writes its share */
#define NARROW_MAX_AT(kj, j) (l[j] = x[kj] > l[j] || x[kj] != x[kj] ? x[kj] : l[j])
#define NARROW_TIE_AT(T, I, kj, j)                                                      \
	do {                                                                            \
		const T e = x[kj];                                                      \
		const I t = (e == yl[j]) | (nl[j] & (e != e));                          \
		if (c)                                                                  \
			cl[j] += t;                                                     \
		if (m)                                                                  \
			m[kj] = t ? sl[j] * dl[j] : 0;                                  \
	} while (0)

/* y[0..W) = the maxima of slice o's rows [k0, k1) (W columns), the bits of
 * max_rows: each lane keeps its largest value (a NaN, once met, stays);
 * where a lane holds a NaN the block goes to max_rows, and a column whose
 * max is zero takes its first zero, of either sign, as the plain loop
 * keeps it. */
#define NARROW_MAX_KERNEL(name, T, max_rows)                                            \
	static inline TG_ALWAYS_INLINE void name(view v, const T *X, T *y, int64_t o,      \
						 int64_t k0, int64_t k1, const int W)      \
	{                                                                               \
		const int L = NARROW_LANES(T, W);                                       \
		const T *x = X + (o * v.n + k0) * W;                                    \
		const int64_t len = (k1 - k0) * W;                                      \
		T l[NARROW_LANES(T, NARROW_MAX)];                                                \
		for (int j = 0; j < L; j++) /* the first row, repeated */               \
			l[j] = x[j % W];                                                \
		int64_t k = 0;                                                          \
		for (; k + L <= len; k += L)                                            \
			NARROW_TILE for (int j = 0; j < L; j++)                         \
				NARROW_MAX_AT(k + j, j);                                \
		for (int j = 0; j < len - k; j++)                                       \
			NARROW_MAX_AT(k + j, j);                                        \
		bool nan = false;                                                       \
		for (int j = 0; j < L; j++)                                             \
			nan |= l[j] != l[j];                                            \
		if (nan) {                                                              \
			const view w = { v.outer, v.n, W };                             \
			max_rows(w, X, y, o, k0, k1, 0, W);                             \
			return;                                                         \
		}                                                                       \
		for (int i = 0; i < W; i++) {                                           \
			T m = l[i];                                                     \
			for (int j = i + W; j < L; j += W)                              \
				m = l[j] > m ? l[j] : m;                                \
			if (m == 0) {                                                   \
				int64_t r = i;                                          \
				while (x[r] != 0)                                       \
					r += W;                                         \
				m = x[r];                                               \
			}                                                               \
			y[i] = m;                                                       \
		}                                                                       \
	}

/* Over slice o's rows [k0, k1) (W columns) with the maxima y[0..W): with c,
 * c[i] += the elements of column i that tie y[i]; with M, M at each element
 * = (a tie ? share[i] : 0) * d[i], share 1 when NULL, d 1 when NULL (the
 * product rounded as share_rows rounds it). The ties are counted in lanes
 * of I as wide as the values, TIES_CHUNK elements at a time. */
#define NARROW_PASS_KERNEL(name, T, I)                                                  \
	static inline TG_ALWAYS_INLINE void name(view v, const T *X, const T *y,           \
						 const T *share, const T *d, T *M, int64_t *c,  \
						 int64_t o, int64_t k0, int64_t k1, const int W) \
	{                                                                               \
		enum { LMAX = NARROW_LANES(T, NARROW_MAX) };                            \
		const int L = NARROW_LANES(T, W);                                       \
		const int64_t at = (o * v.n + k0) * W, len = (k1 - k0) * W;             \
		const T *x = X + at;                                                    \
		T *m = M ? M + at : NULL;                                               \
		T yl[LMAX], sl[LMAX], dl[LMAX];                                         \
		I nl[LMAX], cl[LMAX];                                                   \
		for (int j = 0; j < L; j++) { /* each column's row, repeated */         \
			yl[j] = y[j % W];                                               \
			nl[j] = isnan(yl[j]); /* its ties are its column's NaNs */      \
			sl[j] = share ? share[j % W] : 1;                               \
			dl[j] = d ? d[j % W] : 1;                                       \
		}                                                                       \
		const int64_t chunk = TIES_CHUNK / L * L; /* whole tiles */             \
		for (int64_t k0c = 0; k0c < len; k0c += chunk) {                        \
			const int64_t k1c = len - k0c < chunk ? len : k0c + chunk;      \
			for (int j = 0; j < L; j++)                                     \
				cl[j] = 0;                                              \
			int64_t k = k0c;                                                \
			for (; k + L <= k1c; k += L)                                    \
				NARROW_TILE for (int j = 0; j < L; j++)                 \
					NARROW_TIE_AT(T, I, k + j, j);                  \
			for (int j = 0; j < k1c - k; j++)                               \
				NARROW_TIE_AT(T, I, k + j, j);                          \
			for (int j = 0; c && j < L; j++)                                \
				c[j % W] += cl[j];                                      \
		}                                                                       \
	}

SHORT_RUNS_KERNEL(short_runs_f64, double, tg_sum_short_f64)
SHORT_RUNS_KERNEL(short_runs_f32, float, tg_sum_short_f32)
SUM_AXIS_KERNEL(sum_axis_f64, double, tg_sum_run_f64, tg_add_rows_f64, short_runs_f64)
SUM_AXIS_KERNEL(sum_axis_f32, float, tg_sum_run_f32, tg_add_rows_f32, short_runs_f32)
MAX_RUN(max_run_f64, double, tg_max_run_f64)
MAX_RUN(max_run_f32, float, tg_max_run_f32)
MAX_ROWS_KERNEL(max_rows_f64, double, max_run_f64)
MAX_ROWS_KERNEL(max_rows_f32, float, max_run_f32)
COUNT_TIES_KERNEL(count_ties_f64, double)
COUNT_TIES_KERNEL(count_ties_f32, float)
SHARE_ROWS_KERNEL(share_rows_f64, double)
SHARE_ROWS_KERNEL(share_rows_f32, float)
NARROW_MAX_KERNEL(narrow_max_f64, double, max_rows_f64)
NARROW_MAX_KERNEL(narrow_max_f32, float, max_rows_f32)
NARROW_PASS_KERNEL(narrow_pass_f64, double, int64_t)
NARROW_PASS_KERNEL(narrow_pass_f32, float, int32_t)

/* ---- split across the threads ----------------------------------------------- */
/* Each slice (or column) is reduced whole by one thread, in the order of one
 * pass, so a split gives the bits of one pass. A sum of a single run (over
 * all elements, or along an axis with nothing outside it) of more than
 * TG_SUM_BLOCK elements is summed in fixed blocks whose sums are then added
 * in order (tg_parallel_sum): the blocks depend on the length alone, so the
 * result has the same bits for every thread count. So is a single slice of
 * fewer than TG_SUM_NARROW columns (tg_parallel_column_sums), whose
 * columns are too few to split. (Runs are summed by
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
TG_HOT_LOOP_WIDE static double run_block(void *arg, size_t lo, size_t m)
{
	const reduce_job *j = arg;
	return j->f64 ? tg_sum_run_f64(0, (const double *)j->X + lo, (int64_t)m)
		      : tg_sum_run_f32(0, (const float *)j->X + lo, (int64_t)m);
}

/* Rows [r0, r0 + m) of a single slice added into acc, for
 * tg_parallel_column_sums */
TG_HOT_LOOP_WIDE static void rows_block(void *arg, size_t r0, size_t m, double *acc)
{
	const reduce_job *j = arg;
	const int64_t in = j->v.inner;
	if (j->f64)
		tg_add_rows_f64(acc, (const double *)j->X + r0 * (size_t)in, (int64_t)m, in, in);
	else
		tg_add_rows_f32(acc, (const float *)j->X + r0 * (size_t)in, (int64_t)m, in, in);
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
	if (v.outer == 1 && v.inner < TG_SUM_NARROW) {
		/* one slice of too few columns to split them, (1000000,4) over
		 * its first axis: in blocks of rows, as a single run */
		double acc[TG_SUM_NARROW] = { 0 };
		tg_parallel_column_sums(ctx, (size_t)v.n, (size_t)v.inner, rows_block, &j, acc);
		for (int64_t i = 0; i < v.inner; i++)
			if (j.f64)
				((double *)Y)[i] = acc[i] * scale;
			else
				((float *)Y)[i] = (float)(acc[i] * scale);
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

/* A max, or its shares, split across the threads. With at least as many
 * slices as parts, each part takes whole slices. With fewer (a max over all
 * elements, or over a leading axis), a part takes a stretch of every
 * slice's columns when the stretches are long (MAX_COLS_MIN columns each),
 * else a block of a slice's rows; the blocks' maxima (the shares: their
 * ties, the maxima given) are folded in order. A max is exact and the
 * first element to tie it wins in every split, so each gives the bits of
 * one pass. (Short stretches of
 * columns were slower at 2 threads than no split: each part read a little
 * of every row, across pages.) */

enum { MAX_COLS_MIN = 1024 };

typedef struct max_job {
	view v;
	const void *X, *D; /* D: dout (outer, inner), for the shares times dout */
	void *Y;	   /* the maxima, or the shares */
	const void *y;	   /* the shares: each slice's maxima (the forward's output) */
	void *share;	   /* the shares' scratch: each slice's shares */
	int64_t *c;	   /* and ties (outer x inner) */
	void *by;	   /* split by rows: each block's maxima */
	int64_t *bc;	   /* and ties (outer x blocks x inner) */
	int64_t blocks;	   /* row blocks a slice */
} max_job;

typedef struct max_kernels {
	tg_range_fn slices, cols;		     /* the max: whole slices, columns */
	tg_range_fn share_slices, share_cols;	     /* the shares: the same */
	tg_range_fn block_max, block_ties, block_share; /* by rows, in three passes */
	void (*fold_max)(const max_job *j, void *Y); /* blocks' maxima -> Y */
	void (*fold_ties)(const max_job *j);	     /* blocks' ties -> shares */
} max_kernels;

enum { BLOCK_MAX, BLOCK_TIES, BLOCK_SHARE }; /* the passes over blocks of rows */

/* Block b of slice o: its rows [*k0, *k1) */
static inline void block_rows(const max_job *j, int64_t u, int64_t *o, int64_t *k0, int64_t *k1)
{
	int64_t b = u % j->blocks;
	*o = u / j->blocks;
	*k0 = j->v.n * b / j->blocks;
	*k1 = j->v.n * (b + 1) / j->blocks;
}

#define MAX_PARTS(sfx, T)                                                                    \
	/* slice o's shares over the columns [i0, i1) */                                     \
	static inline TG_ALWAYS_INLINE void share_slice_##sfx(const max_job *j, view v,    \
							      int64_t o, int64_t i0,         \
							      int64_t i1)                    \
	{                                                                                    \
		const int64_t in = v.inner;                                                  \
		const T *d = j->D ? (const T *)j->D + o * in : NULL;                         \
		if (in == 1) { /* a run: its ties counted as a share of 1 is written */     \
			const T y1 = ((const T *)j->y)[o], dd = d ? d[0] : 1;                \
			const T *x = (const T *)j->X + o * v.n;                              \
			T *m = (T *)j->Y + o * v.n;                                          \
			const bool nan = isnan(y1);                                          \
			int64_t c1 = 0;                                                      \
			/* counted in 32 bits, a vector's lanes as wide as the values' */    \
			for (int64_t k0 = 0; k0 < v.n; k0 += TIES_CHUNK) {                   \
				const int64_t k1 = v.n - k0 < TIES_CHUNK ? v.n : k0 + TIES_CHUNK; \
				int32_t c = 0;                                               \
				for (int64_t k = k0; k < k1; k++) {                          \
					const bool t = (x[k] == y1) | (nan & (x[k] != x[k])); \
					c += t;                                              \
					m[k] = t ? dd : 0;                                   \
				}                                                            \
				c1 += c;                                                     \
			}                                                                    \
			if (c1 == 1) /* no tie: the share is 1, as written */               \
				return;                                                      \
			const T share1 = (T)(1.0 / (double)c1);                              \
			share_rows_##sfx(v, j->X, &y1, &share1, d, j->Y, o, 0, v.n, 0, 1);   \
			return;                                                              \
		}                                                                            \
		const T *y = (const T *)j->y + o * in;                                       \
		T *share = (T *)j->share + o * in;                                           \
		int64_t *c = j->c + o * in;                                                  \
		count_ties_##sfx(v, j->X, y, c, o, 0, v.n, i0, i1);                          \
		for (int64_t i = i0; i < i1; i++)                                            \
			share[i] = c[i] == 1 ? 1 : (T)(1.0 / (double)c[i]); /* no tie: no division */ \
		share_rows_##sfx(v, j->X, y, share, d, j->Y, o, 0, v.n, i0, i1);             \
	}                                                                                    \
	/* slice o's shares, W narrow columns: its ties counted in the pass that  \
	 * writes a share of 1, written again only where a column has a tie */     \
	static inline TG_ALWAYS_INLINE void narrow_share_slice_##sfx(const max_job *j, \
								     int64_t o, const int W) \
	{                                                                            \
		const view v = j->v;                                                 \
		const T *y = (const T *)j->y + o * W;                                \
		const T *d = j->D ? (const T *)j->D + o * W : NULL;                  \
		T *share = (T *)j->share + o * W;                                    \
		int64_t *c = j->c + o * W;                                           \
		bool tie = false;                                                    \
		for (int i = 0; i < W; i++)                                          \
			c[i] = 0;                                                    \
		narrow_pass_##sfx(v, j->X, y, NULL, d, j->Y, c, o, 0, v.n, W);       \
		for (int i = 0; i < W; i++) {                                        \
			tie |= c[i] > 1;                                             \
			share[i] = c[i] == 1 ? 1 : (T)(1.0 / (double)c[i]);          \
		}                                                                    \
		if (tie)                                                             \
			narrow_pass_##sfx(v, j->X, y, share, d, j->Y, NULL, o, 0, v.n, W); \
	}                                                                            \
	TG_HOT_LOOP static void slices_##sfx(void *arg, size_t lo, size_t hi)                            \
	{                                                                                    \
		const max_job *j = arg;                                                      \
		const view v = j->v;                                                         \
		if (v.inner == 1) {                                                          \
			TG_WITH_SHORT_N(v.n, const view w = { v.outer, N, 1 };                  \
				     for (int64_t o = (int64_t)lo; o < (int64_t)hi; o++)     \
					     max_rows_##sfx(w, j->X, (T *)j->Y + o, o, 0, N, \
							    0, 1);)                          \
			return;                                                              \
		}                                                                            \
		if (v.inner <= NARROW_MAX) {                                                 \
			WITH_NARROW_W(v.inner, for (int64_t o = (int64_t)lo; o < (int64_t)hi; o++) \
					     narrow_max_##sfx(v, j->X, (T *)j->Y + o * W, o, 0, \
							      v.n, W);)                      \
			return;                                                              \
		}                                                                            \
		for (int64_t o = (int64_t)lo; o < (int64_t)hi; o++)                          \
			max_rows_##sfx(v, j->X, (T *)j->Y + o * v.inner, o, 0, v.n, 0,       \
				       v.inner);                                             \
	}                                                                                    \
	TG_HOT_LOOP static void cols_##sfx(void *arg, size_t lo, size_t hi)                              \
	{                                                                                    \
		const max_job *j = arg;                                                      \
		for (int64_t o = 0; o < j->v.outer; o++)                                     \
			max_rows_##sfx(j->v, j->X, (T *)j->Y + o * j->v.inner, o, 0, j->v.n, \
				       (int64_t)lo, (int64_t)hi);                            \
	}                                                                                    \
	TG_HOT_LOOP static void share_slices_##sfx(void *arg, size_t lo, size_t hi)                      \
	{                                                                                    \
		const view v = ((const max_job *)arg)->v;                                    \
		if (v.inner == 1) {                                                          \
			TG_WITH_SHORT_N(v.n, const view w = { v.outer, N, 1 };                  \
				     for (int64_t o = (int64_t)lo; o < (int64_t)hi; o++)     \
					     share_slice_##sfx(arg, w, o, 0, 1);)            \
			return;                                                              \
		}                                                                            \
		if (v.inner <= NARROW_MAX) {                                                 \
			WITH_NARROW_W(v.inner, for (int64_t o = (int64_t)lo; o < (int64_t)hi; o++) \
					     narrow_share_slice_##sfx(arg, o, W);)           \
			return;                                                              \
		}                                                                            \
		for (int64_t o = (int64_t)lo; o < (int64_t)hi; o++)                          \
			share_slice_##sfx(arg, v, o, 0, v.inner);                            \
	}                                                                                    \
	TG_HOT_LOOP static void share_cols_##sfx(void *arg, size_t lo, size_t hi)                        \
	{                                                                                    \
		for (int64_t o = 0; o < ((const max_job *)arg)->v.outer; o++)                \
			share_slice_##sfx(arg, ((const max_job *)arg)->v, o, (int64_t)lo,     \
					  (int64_t)hi);                                      \
	}                                                                                    \
	/* the blocks [lo, hi) of rows of W narrow columns: the same */                    \
	static inline TG_ALWAYS_INLINE void narrow_blocks_##sfx(const max_job *j, size_t lo, \
								size_t hi, int pass, const int W) \
	{                                                                                    \
		for (int64_t u = (int64_t)lo, o, k0, k1; u < (int64_t)hi; u++) {             \
			block_rows(j, u, &o, &k0, &k1);                                      \
			const T *y = (const T *)j->y + o * W;                                \
			if (pass == BLOCK_MAX) {                                             \
				narrow_max_##sfx(j->v, j->X, (T *)j->by + u * W, o, k0, k1, W); \
				continue;                                                    \
			}                                                                    \
			if (pass == BLOCK_TIES) {                                            \
				int64_t *c = j->bc + u * W;                                  \
				for (int i = 0; i < W; i++)                                  \
					c[i] = 0;                                            \
				narrow_pass_##sfx(j->v, j->X, y, NULL, NULL, NULL, c, o, k0, k1, W); \
				continue;                                                    \
			}                                                                    \
			narrow_pass_##sfx(j->v, j->X, y, (const T *)j->share + o * W,        \
					  j->D ? (const T *)j->D + o * W : NULL, j->Y, NULL, o, \
					  k0, k1, W);                                        \
		}                                                                            \
	}                                                                                    \
	/* the blocks [lo, hi) of rows: their maxima, ties or shares (pass) */              \
	static inline TG_ALWAYS_INLINE void blocks_##sfx(const max_job *j, size_t lo,        \
							 size_t hi, int pass)                \
	{                                                                                    \
		const int64_t in = j->v.inner;                                               \
		if (in > 1 && in <= NARROW_MAX) {                                            \
			WITH_NARROW_W(in, narrow_blocks_##sfx(j, lo, hi, pass, W);)          \
			return;                                                              \
		}                                                                            \
		for (int64_t u = (int64_t)lo, o, k0, k1; u < (int64_t)hi; u++) {             \
			block_rows(j, u, &o, &k0, &k1);                                      \
			const T *y = (const T *)j->y + o * in;                               \
			if (pass == BLOCK_MAX)                                               \
				max_rows_##sfx(j->v, j->X, (T *)j->by + u * in, o, k0, k1, 0, in); \
			else if (pass == BLOCK_TIES)                                         \
				count_ties_##sfx(j->v, j->X, y, j->bc + u * in, o, k0, k1, 0, in); \
			else                                                                 \
				share_rows_##sfx(j->v, j->X, y, (const T *)j->share + o * in,  \
						 j->D ? (const T *)j->D + o * in : NULL, j->Y, \
						 o, k0, k1, 0, in);                            \
		}                                                                            \
	}                                                                                    \
	TG_HOT_LOOP static void block_max_##sfx(void *arg, size_t lo, size_t hi)             \
	{                                                                                    \
		blocks_##sfx(arg, lo, hi, BLOCK_MAX);                                        \
	}                                                                                    \
	TG_HOT_LOOP static void block_ties_##sfx(void *arg, size_t lo, size_t hi)            \
	{                                                                                    \
		blocks_##sfx(arg, lo, hi, BLOCK_TIES);                                       \
	}                                                                                    \
	TG_HOT_LOOP static void block_share_##sfx(void *arg, size_t lo, size_t hi)           \
	{                                                                                    \
		blocks_##sfx(arg, lo, hi, BLOCK_SHARE);                                      \
	}                                                                                    \
	/* Y[o][i] = the first block's max of column i unless a later one BEATS it */       \
	static void fold_max_##sfx(const max_job *j, void *Y)                                \
	{                                                                                    \
		const int64_t in = j->v.inner, B = j->blocks;                                \
		const T *by = j->by;                                                         \
		for (int64_t o = 0; o < j->v.outer; o++)                                     \
			for (int64_t i = 0; i < in; i++) {                                   \
				T m = by[o * B * in + i];                                    \
				for (int64_t b = 1; b < B; b++) {                            \
					T x = by[(o * B + b) * in + i];                      \
					if (BEATS(x, m))                                     \
						m = x;                                       \
				}                                                            \
				((T *)Y)[o * in + i] = m;                                    \
			}                                                                    \
	}                                                                                    \
	static void fold_ties_##sfx(const max_job *j)                                        \
	{                                                                                    \
		const int64_t in = j->v.inner, B = j->blocks;                                \
		for (int64_t o = 0; o < j->v.outer; o++)                                     \
			for (int64_t i = 0; i < in; i++) {                                   \
				int64_t c = 0;                                               \
				for (int64_t b = 0; b < B; b++)                              \
					c += j->bc[(o * B + b) * in + i];                    \
				((T *)j->share)[o * in + i] = (T)(1.0 / (double)c);          \
			}                                                                    \
	}                                                                                    \
	static const max_kernels max_kernels_##sfx = {                                       \
		slices_##sfx,	   cols_##sfx,	      share_slices_##sfx, share_cols_##sfx, \
		block_max_##sfx,   block_ties_##sfx, block_share_##sfx,  fold_max_##sfx,   \
		fold_ties_##sfx,                                                             \
	};

MAX_PARTS(f64, double)
MAX_PARTS(f32, float)

/* Y = the max of x over v's slices (shares false), or the shares of its
 * elements (into j->Y, with the maxima j->y and the scratch set), split
 * across ctx's threads from TG_PAR_MIN elements on; false after recording
 * a failed allocation. */
static bool max_split(tg_ctx *ctx, max_job *j, const tg_tensor *x, bool shares)
{
	const max_kernels *k = x->dtype == TG_F64 ? &max_kernels_f64 : &max_kernels_f32;
	const view v = j->v;
	if (!x->numel)
		return true;
	int parts = tg_parallel_parts(ctx, x->numel, TG_PAR_MIN);
	if (v.outer >= parts) {
		size_t per = x->numel / (size_t)v.outer, min = (TG_PAR_MIN + per - 1) / per;
		tg_parallel_for(ctx, (size_t)v.outer, min > 2 ? min : 2, 1,
				shares ? k->share_slices : k->slices, j);
		return true;
	}
	if (v.inner >= (int64_t)MAX_COLS_MIN * parts) {
		size_t per = x->numel / (size_t)v.inner, min = (TG_PAR_MIN + per - 1) / per;
		tg_parallel_for(ctx, (size_t)v.inner, min > 16 ? min : 16, 16,
				shares ? k->share_cols : k->cols, j);
		return true;
	}
	int64_t B = (parts + v.outer - 1) / v.outer;
	j->blocks = B < v.n ? B : v.n;
	size_t units = (size_t)(v.outer * j->blocks), es = tg_dtype_size(x->dtype);
	if (!shares) {
		if (!(j->by = tg_arena_alloc(ctx, units * (size_t)v.inner * es)))
			return false;
		tg_parallel_for(ctx, units, 2, 1, k->block_max, j);
		k->fold_max(j, j->Y);
		return true;
	}
	if (!(j->bc = tg_arena_alloc(ctx, units * (size_t)v.inner * sizeof(int64_t))))
		return false;
	tg_parallel_for(ctx, units, 2, 1, k->block_ties, j);
	k->fold_ties(j);
	tg_parallel_for(ctx, units, 2, 1, k->block_share, j);
	return true;
}

/* Y = max of x over v's n; false after recording a failed allocation. */
static bool max_axis(tg_ctx *ctx, view v, const tg_tensor *x, void *Y)
{
	max_job j = { .v = v, .X = x->data, .Y = Y };
	return max_split(ctx, &j, x, false);
}

/* ---- the shared public-function shape ----------------------------------------- */
/* Node attributes: [0] the reduced axis, or -1 for all elements; [1] keepdim;
 * [2] the scale of a sum (1 for sum, 1/n for mean; unused by max). */

enum { SUM, MAX };

/* The (outer, n, inner) view of x for axis (-1: all elements). */
static view view_of(const tg_tensor *x, int axis)
{
	return axis < 0 ? (view){ 1, (int64_t)x->numel, 1 } : tg_view_along(x->ndim, x->shape, axis);
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
	int64_t shape[TG_MAX_DIMS];
	int ndim = all ? 0 : tg_reduced_shape(x, a, keepdim, shape);
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, ndim, shape);
	if (!out)
		return NULL;
	view v = view_of(x, a);
	double scale = mean ? 1.0 / (double)v.n : 1.0;
	if (kind == SUM) {
		if (!sum_axis(ctx, v, x, out->data, scale))
			return NULL;
	} else if (!max_axis(ctx, v, x, out->data)) {
		return NULL;
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
	return tg_reshape(dout, tg_reduced_shape(x, axis, true, shape), shape);
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

/* S (outer, A, inner) += U (outer, 1, inner), over elements [lo, hi) of S:
 * an axis's gradient added where x's gradient already is. Each element is
 * S + U as the sum of S and the expanded U would be: the same bits. */
typedef struct add_expand_job {
	const void *U;
	void *S;
	size_t A, inner;
} add_expand_job;

#define ADD_EXPAND(T, sfx)                                                               \
	TG_HOT_LOOP static void add_expand_##sfx(void *arg, size_t lo, size_t hi)         \
	{                                                                                 \
		const add_expand_job *j = arg;                                            \
		const T *restrict U = j->U;                                               \
		T *restrict S = j->S;                                                     \
		const size_t inner = j->inner, block = j->A * inner;                      \
		if (inner == 1) { /* a value per block of A */                            \
			for (size_t e = lo; e < hi;) {                                    \
				size_t o = e / block, end = (o + 1) * block;              \
				const T u = U[o];                                         \
				for (end = end < hi ? end : hi; e < end; e++)             \
					S[e] += u;                                        \
			}                                                                 \
			return;                                                           \
		}                                                                         \
		/* lo and hi are whole rows of inner (the split's align) */              \
		for (size_t r = lo / inner; r < hi / inner; r++) {                        \
			const T *restrict u = U + r / j->A * inner;                       \
			T *restrict s = S + r * inner;                                    \
			for (size_t i = 0; i < inner; i++)                                \
				s[i] += u[i];                                             \
		}                                                                         \
	}
ADD_EXPAND(float, f32)
ADD_EXPAND(double, f64)

/* dx = expand(u) added into x's gradient when x holds one already and the
 * engine offers it to add into (tg_node_grad_add_buffer): one pass over x's
 * size instead of a tensor of it made and then summed with the held one (a
 * hand-written layer norm's x - mean(x) gives x two gradients, one of them
 * the mean's). false: nothing done. */
static bool sum_grad_add(tg_node *n, tg_tensor *u)
{
	const tg_tensor *x = tg_node_input(n, 0);
	int axis = (int)tg_node_attr(n, 0);
	if (!u || axis < 0 || u->dtype != x->dtype || x->numel < TG_GRAD_INTO_MIN ||
	    tg_node_grad_first(n, 0) || u->ndim != x->ndim)
		return false;
	tg_tensor *sum = tg_node_grad_add_buffer(n, 0);
	if (!sum || sum->data == u->data)
		return false;
	add_expand_job j = { u->data, sum->data, (size_t)x->shape[axis], 1 };
	for (int i = axis + 1; i < x->ndim; i++)
		j.inner *= (size_t)x->shape[i];
	size_t align = j.inner == 1 ? 16 : j.inner;
	tg_parallel_for(x->ctx, x->numel, TG_PAR_MIN, align,
			x->dtype == TG_F64 ? add_expand_f64 : add_expand_f32, &j);
	tg_node_grad_summed(n, 0);
	return true;
}

static void sum_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	double scale = tg_node_attr(n, 2);
	if (scale != 1.0)
		dout = tg_mul_scalar(dout, scale);
	if (dout && dout->numel == 1) /* one value throughout, maybe written lazily */
		tg_node_grad_expand(n, 0, unreduce(n, dout));
	else {
		tg_tensor *u = unreduce(n, dout);
		if (!sum_grad_add(n, u))
			TG_NODE_GRAD_INTO(n, 0, tg_expand(u, x->ndim, x->shape));
	}
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
 * slice holding a NaN has max NaN, and its NaNs share the gradient. The
 * route is a select, as tg_maximum's: an element off it gets +0 whatever
 * dout holds (an infinite or NaN dout gives 0 there, not NaN). */

/* The constant shares of max node n's input x, or, with dout, the shares
 * times dout: x's gradient in one pass instead of a shares tensor and a
 * product. The maxima are n's output, not found again: the walk has checked
 * that neither x nor it changed since (versions_intact), and every split
 * finds the same bits. No history. */
static tg_tensor *max_share(const tg_node *n, const tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_tensor *m = tg_tensor_like(x, "max (backward)");
	if (!m)
		return NULL;
	view v = view_of(x, (int)tg_node_attr(n, 0));
	size_t k = (size_t)(v.outer * v.inner) + 1, es = tg_dtype_size(x->dtype); /* 1: never 0 */
	max_job j = { .v = v, .X = x->data, .D = dout ? dout->data : NULL, .Y = m->data,
		      .y = tg_node_output(n)->data, .share = tg_arena_alloc(x->ctx, k * es),
		      .c = tg_arena_alloc(x->ctx, k * sizeof(int64_t)) };
	if (!j.share || !j.c || !max_split(x->ctx, &j, x, true))
		return NULL;
	return m;
}

/* A plain backward routes dout in the shares' pass; a recorded one
 * (TG_CREATE_GRAPH) as where(share, dout, 0) share, so that dout's part
 * carries history. Both give the same bits. */
static void max_backward(tg_node *n, tg_tensor *dout)
{
	tg_ctx *ctx = tg_node_input(n, 0)->ctx;
	if (!ctx->grad_enabled) {
		TG_NODE_GRAD_INTO(n, 0, max_share(n, dout));
		return;
	}
	tg_tensor *share = max_share(n, NULL);
	tg_tensor *zero = tg_zeros(ctx, tg_node_input(n, 0)->dtype, 0, NULL);
	tg_node_grad(n, 0, tg_mul(tg_where(share, unreduce(n, dout), zero), share));
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
