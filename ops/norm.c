/*
 * norm.c - batch and layer normalisation as fused ops, and their fused
 * backwards.
 *
 * batch_norm normalises each column of x with the batch's mean and biased
 * variance, then scales by gamma and shifts by beta: three passes over x
 * forward and two backward, where the same maths made of mean_axis, sub,
 * mul, sqrt and div takes about ten and twenty. layer_norm does the same
 * along the last axis: each row with its own statistics, its passes taking
 * a block of rows at a time so that the second reading of a block finds it
 * in the cache. The gradients for
 * x, batch_norm_backward and layer_norm_backward, are ops of their own so
 * that they can be recorded; the rules of all four are written with ops.
 * Sums are accumulated in double.
 * Shapes: batch norm: N = batch (at least 2), D = features; x, y, dout, dx
 * are (N,D), gamma, beta and the statistics (D); or x (N,C,...), images
 * (N,C,H,W), normalised per channel over N and the axes after C (PyTorch's
 * BatchNorm2d), read in place by kernels of their own (no transposes), with
 * gamma, beta and the statistics (C). Layer norm: x (..., D) seen
 * as (R,D), R rows; gamma, beta (D), the statistics (R).
 */
#include "internal.h"
#include "norm_eps.h"
#include "parallel.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- the kernels ------------------------------------------------------------------ */
/* The slow paths below read a group of values X[i * stride + k], i < n,
 * k < len: a column of (N,D) is len 1 and stride D, a channel of (N,C,S)
 * len S and stride C S, a row len D. */

/* The value X[i * stride + k] (f64 or f32) of a group. */
static double group_at(const void *X, bool f64, size_t i, size_t k, size_t stride)
{
	return f64 ? ((const double *)X)[i * stride + k] : ((const float *)X)[i * stride + k];
}

/* The power of two s = 2^-k that brings the values of a group (f64 or
 * f32) below 1 in magnitude (|x| s < 1), for the statistics whose plain sums
 * overflow; 0 when a value is not finite or all are 0. */
static TG_SLOW double down_scale(const void *X, bool f64, size_t n, size_t len, size_t stride)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < len; k++)
			m = fmax(m, fabs(group_at(X, f64, i, k, stride)));
	return isfinite(m) && m > 0 ? ldexp(1, -(ilogb(m) + 1)) : 0;
}

/* 1 / sqrt(var + eps) of a group (f64 or f32), whose mean is mean, when
 * its plain sum of squares overflows (f64 values of 1e154 and more): the
 * variance of x s, s = 2^-k so that |x| s < 1, scaled back. Taken only
 * then, so that the common path keeps its speed and its bits. */
static TG_SLOW double scaled_inv_std(const void *X, bool f64, size_t n, size_t len,
				     size_t stride, double mean, double eps)
{
	double s = down_scale(X, f64, n, len, stride), ms = mean * s, acc = 0;
	if (s == 0)
		return NAN;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < len; k++) {
			double c = group_at(X, f64, i, k, stride) * s - ms;
			acc += c * c;
		}
	return s / sqrt(acc / (double)(n * len) + eps * s * s);
}

/* The mean of a group (f64 or f32) when its plain sum overflows (f64
 * values near the largest double): the mean of x s, s = 2^-k so that
 * |x| s < 1, scaled back; sum / count (the overflow) for values that are
 * not finite. Taken only then, as scaled_inv_std. */
static TG_SLOW double scaled_mean(const void *X, bool f64, size_t n, size_t len, size_t stride,
				  double sum)
{
	double s = down_scale(X, f64, n, len, stride), acc = 0;
	if (s == 0)
		return sum / (double)(n * len);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < len; k++)
			acc += group_at(X, f64, i, k, stride) * s;
	return acc / (double)(n * len) / s;
}

/* The variance less a rounding correction, held at 0 from below; a NaN (an
 * inf or NaN in the group: inf - inf) stays NaN, where fmax would make it 0
 * and the group's finite entries would normalise to +-inf. */
static inline double var_floor(double v)
{
	return v < 0 ? 0 : v;
}

/* The statistics of x are kept in its dtype, mean (D) then inv_std (D), so
 * that every pass computes xhat = (x - mean - lo) * inv_std to the same bits;
 * lo (D, after them) is what the mean lost in its rounding to the dtype. x -
 * mean is then exact for x near the mean, and lo keeps xhat from shifting by
 * the mean's rounding error over the standard deviation: on rows of 1e4 +
 * 1e-2 noise in f32 the mean's half ULP (5e-4) alone moved every xhat by up
 * to 0.05. */
#define XHAT(x, m, lo, r) (((x) - (m) - (lo)) * (r))
/* What a mean of doubles lost in its rounding, the sum's and the
 * division's: the mean of x - mean (the corrected two-pass algorithm),
 * taken in the pass that sums the squares. Where x's spread is small beside
 * its mean, x - mean is off by that rounding relative to the spread: a row
 * (1.98377, 1.98051) lost 100 ULPs of a layer norm's gradient to it, and a
 * third derivative through it 2 of its 16 digits. (A float's mean comes
 * from a double sum, which holds the float's rounding exactly.) 0 where it
 * or the sum of the squares is not finite: the variance then goes the
 * scaled way, and the square of an off near overflow would make it NaN. */
#define MEAN_OFF(off, squares) (isfinite(off) && isfinite(squares) ? (off) : 0.0)
/* lo from off, the exact mean in double less the mean rounded: 0 when not
 * finite or when the shift it makes, off inv_std, is below an ULP of 1 (the
 * mean below about twice the standard deviation, as in most data): x - mean
 * - 0 is x - mean, to the bits of taking no lo, and the column kernels
 * take their copy without lo's loads (a (1024,1024) batch norm with lo, 10%
 * slower forward and backward). */
#define MEAN_LO(T, off, r)                                                               \
	((T)(isfinite(off) && !(fabs((off) * (r)) < (sizeof(T) == 8 ? 0x1p-52 : 0x1p-23)) \
		 ? (off)                                                                 \
		 : 0))
/* lo[j] where shift is true, else 0: a column kernel in two copies, with
 * lo and (where every column's lo is 0) without its loads */
#define LO_IF(shift, lo, j) ((shift) ? (lo)[j] : 0)

/* whether any of lo[j0..j1) is not 0 */
static inline bool any_lo_f64(const double *lo, size_t j0, size_t j1)
{
	for (size_t j = j0; j < j1; j++)
		if (lo[j] != 0)
			return true;
	return false;
}

static inline bool any_lo_f32(const float *lo, size_t j0, size_t j1)
{
	for (size_t j = j0; j < j1; j++)
		if (lo[j] != 0)
			return true;
	return false;
}

/* dy where v > 0, else +0, whatever dy holds: dy's bits ANDed with the
 * comparison's, a select as tg_relu_backward's. Written with ?: (or
 * through a cast of the comparison) GCC compiles it to a branch per
 * element, mispredicted half the time on a relu's mask (half of a
 * depthwise net's step went to the gated channel sums; the tails of (N,D)
 * rows of 100 made the gated sums three times slower than the plain ones).
 * This form vectorises as the plain loops do. */
static inline float gate_f32(float dy, float v)
{
	uint32_t u;
	memcpy(&u, &dy, sizeof u);
	u &= -(uint32_t)(v > 0);
	float g;
	memcpy(&g, &u, sizeof g);
	return g;
}

static inline double gate_f64(double dy, double v)
{
	uint64_t u;
	memcpy(&u, &dy, sizeof u);
	u &= -(uint64_t)(v > 0);
	double g;
	memcpy(&g, &u, sizeof g);
	return g;
}

/* batch_norm_relu's gradient through its relu: dy where the batch norm value
 * xh g + b, rounded as the forward pass rounds it, is positive, else +0 (so
 * that an infinite or NaN dy masked off gives 0, as tg_relu_backward's
 * select does). */
#define RELU_GATE(T, dy, xh, g, b)                                                      \
	_Generic((T)0, float: gate_f32, double: gate_f64)((dy), (xh) * (g) + (b))

#define NORM_KERNELS(T, sfx)                                                            \
	/* acc[j] = the sum over the rows [0, n) of X[i d + j], in double and in     \
	 * row order, for the columns [j0, j1) */                                     \
	TG_HOT_LOOP_WIDE                                                                \
	static void column_sums_##sfx(const T *X, size_t n, size_t d, size_t j0,        \
				      size_t j1, double *acc)                           \
	{                                                                               \
		memset(acc + j0, 0, (j1 - j0) * sizeof *acc);                           \
		for (size_t i = 0; i < n; i++)                                          \
			for (size_t j = j0; j < j1; j++)                                \
				acc[j] += X[i * d + j];                                 \
	}                                                                               \
                                                                                        \
	/* the same of (X[i d + j] - mean[j])^2, the difference taken in T; for      \
	 * doubles, cen[j] the sum of X[i d + j] - mean[j] (MEAN_OFF) */              \
	TG_HOT_LOOP_WIDE                                                                \
	static void column_squares_##sfx(const T *X, size_t n, size_t d, size_t j0,     \
					 size_t j1, const T *mean, double *acc,         \
					 double *cen)                                   \
	{                                                                               \
		const bool f64 = sizeof(T) == 8;                                        \
		memset(acc + j0, 0, (j1 - j0) * sizeof *acc);                           \
		if (f64)                                                                \
			memset(cen + j0, 0, (j1 - j0) * sizeof *cen);                   \
		for (size_t i = 0; i < n; i++)                                          \
			for (size_t j = j0; j < j1; j++) {                              \
				double c = X[i * d + j] - mean[j];                      \
				acc[j] += c * c;                                        \
				if (f64)                                                \
					cen[j] += c;                                    \
			}                                                               \
	}                                                                               \
                                                                                        \
	/* The mean (st) of the columns [j0, j1) of X (n, d) from their sums acc,      \
	 * and in offs what it lost in its rounding to T */                             \
	static void column_means_##sfx(const T *X, size_t n, size_t d, size_t j0,       \
				       size_t j1, const double *acc, double *offs,      \
				       T *st)                                           \
	{                                                                               \
		for (size_t j = j0; j < j1; j++) {                                      \
			st[j] = (T)(isinf(acc[j]) ? scaled_mean(X + j, sizeof(T) == 8,  \
								n, 1, d, acc[j])        \
						  : acc[j] / (double)n);                \
			/* the mean's rounding to T, taken back out of var below */     \
			double off = acc[j] / (double)n - st[j];                        \
			offs[j] = isfinite(off) ? off : 0;                              \
		}                                                                       \
	}                                                                               \
                                                                                        \
	/* inv_std = 1 / sqrt(var + eps) (st + D), lo (st + 3 D) and var (D), the      \
	 * biased variance, from acc, the columns' sums of squares about the mean */   \
	static void column_vars_##sfx(const T *X, size_t n, size_t d, size_t j0,        \
				      size_t j1, double eps, const double *acc,         \
				      const double *offs, T *st, T *var)                \
	{                                                                               \
		T *mean = st, *inv_std = st + d, *lo = st + 3 * d;                      \
		for (size_t j = j0; j < j1; j++) {                                      \
			double v = var_floor(acc[j] / (double)n - offs[j] * offs[j]);   \
			var[j] = (T)v;                                                  \
			inv_std[j] = (T)(isinf(v) ? scaled_inv_std(X + j, sizeof(T) == 8, \
								   n, 1, d, mean[j], eps) \
						  : 1 / sqrt(v + eps));                 \
			lo[j] = MEAN_LO(T, offs[j], inv_std[j]);                        \
		}                                                                       \
	}                                                                               \
                                                                                        \
	/* st = mean, inv_std, lo; var (D) = biased variance; of the columns           \
	 * [j0, j1), each a pass down its rows */                                       \
	static void stats_##sfx(const T *X, size_t n, size_t d, size_t j0, size_t j1,   \
				double eps, double *acc, double *offs, T *st, T *var)   \
	{                                                                               \
		column_sums_##sfx(X, n, d, j0, j1, acc);                                \
		column_means_##sfx(X, n, d, j0, j1, acc, offs, st);                     \
		column_squares_##sfx(X, n, d, j0, j1, st, acc, offs);                   \
		for (size_t j = j0; sizeof(T) == 8 && j < j1; j++)                      \
			offs[j] = MEAN_OFF(offs[j] / (double)n, acc[j]);                \
		column_vars_##sfx(X, n, d, j0, j1, eps, acc, offs, st, var);            \
	}                                                                               \
                                                                                        \
	/* Y = xhat * G + B, rows [i0, i1); relu: max(Y, 0) as tg_relu takes it         \
	 * (NaN stays NaN) */                                                           \
	static inline TG_ALWAYS_INLINE void forward_body_##sfx(                         \
	    const T *X, const T *st, const T *G, const T *B, bool relu, bool shift,     \
	    size_t i0, size_t i1, size_t d, T *restrict Y)                              \
	{                                                                               \
		const T *mean = st, *inv_std = st + d, *lo = st + 3 * d;                \
		for (size_t i = i0; i < i1; i++)                                        \
			for (size_t j = 0; j < d; j++) {                                \
				T v = XHAT(X[i * d + j], mean[j], LO_IF(shift, lo, j),  \
					   inv_std[j]) * G[j] + B[j];                   \
				Y[i * d + j] = relu && v < 0 ? 0 : v;                   \
			}                                                               \
	}                                                                               \
                                                                                        \
	/* the body four times, with and without the gate and lo, so that no loop     \
	 * tests them */                                                                \
	TG_HOT_LOOP                                                                     \
	static void forward_##sfx(const T *X, const T *st, const T *G, const T *B,      \
			bool relu, size_t i0, size_t i1, size_t d, T *restrict Y)       \
	{                                                                               \
		bool shift = any_lo_##sfx(st + 3 * d, 0, d);                            \
		if (relu && shift)                                                      \
			forward_body_##sfx(X, st, G, B, true, true, i0, i1, d, Y);      \
		else if (relu)                                                          \
			forward_body_##sfx(X, st, G, B, true, false, i0, i1, d, Y);     \
		else if (shift)                                                         \
			forward_body_##sfx(X, st, G, B, false, true, i0, i1, d, Y);     \
		else                                                                    \
			forward_body_##sfx(X, st, G, B, false, false, i0, i1, d, Y);    \
	}                                                                               \
                                                                                        \
	/* sums = the column sums of dout (D), then of dout * xhat (D); columns         \
	 * [j0, j1); relu: of dout gated by RELU_GATE with G and B */                   \
	static inline TG_ALWAYS_INLINE void sums_body_##sfx(                            \
	    const T *DOUT, const T *X, const T *st, const T *G, const T *B, bool relu,  \
	    bool shift, size_t n, size_t d, size_t j0, size_t j1, double *sums)         \
	{                                                                               \
		const T *mean = st, *inv_std = st + d, *lo = st + 3 * d;                \
		memset(sums + j0, 0, (j1 - j0) * sizeof *sums);                         \
		memset(sums + d + j0, 0, (j1 - j0) * sizeof *sums);                     \
		for (size_t i = 0; i < n; i++)                                          \
			for (size_t j = j0; j < j1; j++) {                              \
				T xh = XHAT(X[i * d + j], mean[j], LO_IF(shift, lo, j), \
					    inv_std[j]);                                \
				T dy = relu ? RELU_GATE(T, DOUT[i * d + j], xh, G[j], B[j]) \
					    : DOUT[i * d + j];                          \
				sums[j] += dy;                                          \
				sums[d + j] += (double)dy * xh;                         \
			}                                                               \
	}                                                                               \
                                                                                        \
	/* as forward_ */                                                               \
	TG_HOT_LOOP_WIDE                                                                \
	static void sums_##sfx(const T *DOUT, const T *X, const T *st, const T *G,      \
			const T *B, bool relu, size_t n, size_t d, size_t j0,           \
			size_t j1, double *sums)                                        \
	{                                                                               \
		bool shift = any_lo_##sfx(st + 3 * d, j0, j1);                          \
		if (relu && shift)                                                      \
			sums_body_##sfx(DOUT, X, st, G, B, true, true, n, d, j0, j1, sums); \
		else if (relu)                                                          \
			sums_body_##sfx(DOUT, X, st, G, B, true, false, n, d, j0, j1,   \
					sums);                                          \
		else if (shift)                                                         \
			sums_body_##sfx(DOUT, X, st, G, B, false, true, n, d, j0, j1,   \
					sums);                                          \
		else                                                                    \
			sums_body_##sfx(DOUT, X, st, G, B, false, false, n, d, j0, j1,  \
					sums);                                          \
	}                                                                               \
                                                                                        \
	/* DX = G inv_std (dout - sum(dout) / N - xhat sum(dout xhat) / N): k (3 D      \
	 * values) = G inv_std, sum(dout) / N and sum(dout xhat) / N ...                \
	 */                                                                             \
	static void dx_coef_##sfx(const T *st, const T *G, const double *sums, size_t n, \
				  size_t d, T *k)                                       \
	{                                                                               \
		const T *inv_std = st + d;                                              \
		T *scale = k, *mdy = k + d, *mdyxh = k + 2 * d;                         \
		for (size_t j = 0; j < d; j++) {                                        \
			scale[j] = G[j] * inv_std[j];                                   \
			mdy[j] = (T)(sums[j] / (double)n);                              \
			mdyxh[j] = (T)(sums[d + j] / (double)n);                        \
		}                                                                       \
	}                                                                               \
                                                                                        \
	/* ... and DX from them, rows [i0, i1) (relu: dout gated as in sums) */         \
	static inline TG_ALWAYS_INLINE void dx_body_##sfx(                              \
	    const T *DOUT, const T *X, const T *st, const T *k, const T *G, const T *B, \
	    bool relu, bool shift, size_t i0, size_t i1, size_t d, T *restrict DX)      \
	{                                                                               \
		const T *mean = st, *inv_std = st + d, *lo = st + 3 * d;                \
		const T *scale = k, *mdy = k + d, *mdyxh = k + 2 * d;                   \
		for (size_t i = i0; i < i1; i++)                                        \
			for (size_t j = 0; j < d; j++) {                                \
				T xh = XHAT(X[i * d + j], mean[j], LO_IF(shift, lo, j), \
					    inv_std[j]);                                \
				T dy = relu ? RELU_GATE(T, DOUT[i * d + j], xh, G[j], B[j]) \
					    : DOUT[i * d + j];                          \
				DX[i * d + j] = scale[j] * (dy - mdy[j] - xh * mdyxh[j]); \
			}                                                               \
	}                                                                               \
                                                                                        \
	/* as forward_ */                                                               \
	TG_HOT_LOOP                                                                     \
	static void dx_##sfx(const T *DOUT, const T *X, const T *st, const T *k,        \
			const T *G, const T *B, bool relu, size_t i0, size_t i1,        \
			size_t d, T *restrict DX)                                       \
	{                                                                               \
		bool shift = any_lo_##sfx(st + 3 * d, 0, d);                            \
		if (relu && shift)                                                      \
			dx_body_##sfx(DOUT, X, st, k, G, B, true, true, i0, i1, d, DX); \
		else if (relu)                                                          \
			dx_body_##sfx(DOUT, X, st, k, G, B, true, false, i0, i1, d, DX); \
		else if (shift)                                                         \
			dx_body_##sfx(DOUT, X, st, k, G, B, false, true, i0, i1, d, DX); \
		else                                                                    \
			dx_body_##sfx(DOUT, X, st, k, G, B, false, false, i0, i1, d,   \
				      DX);                                              \
	}

NORM_KERNELS(double, f64)
NORM_KERNELS(float, f32)

/* The same for x (N,C,S) with S > 1, an image's H W: channel j is the N
 * planes X[(i C + j) S + k], k < S. Each plane's sums go to ADD_LANES
 * (statistics) or DOT_LANES (gradient sums) partial sums in double (and its
 * last S mod lanes values to one more), added in a fixed order, so that the
 * loop over a plane is vector code without reordering any one sum; the
 * elementwise passes take the channel's values once per plane and round as
 * the kernels above. The statistics' one running sum per lane is a chain of
 * dependent adds: sixteen lanes of floats are four vectors of them in
 * flight, which took a (32,64,16,16) forward pass from 146 to 96 us
 * (doubles, which wait on memory, keep eight: no faster at sixteen); the
 * gradient's two sums (dout and dout xhat) are already two chains, and
 * were slower at sixteen lanes (105 to 118 us). */

enum { DOT_LANES = 8 };
#define ADD_LANES(T) (sizeof(T) == sizeof(float) ? 16 : 8)

/* channels whose planes plane_stats and plane_sums read image by image;
 * each channel's lanes + 1 sums on a row of three cache lines of its own,
 * so that no vector of them straddles a line */
enum { PLANE_BLOCK = 32, SUMS_STRIDE = 24 };
/* where a channel's sums of x - mean begin on its row (doubles only: their
 * 8 lanes + 1 of squares, then 8 + 1 of these) */
enum { CENTRED = 9 };
#define TG_SUMS_ALIGN __attribute__((aligned(64)))

/* a[0..lanes) the partial sums, a[lanes] the sum of the planes' tails */
static double lanes_total(const double *a, int lanes)
{
	double t = 0;
	for (int l = 0; l <= lanes; l++)
		t += a[l];
	return t;
}

#define PLANE_KERNELS(T, sfx)                                                           \
	/* a[l] += the plane's values (sq: their squares after taking off m, and       \
	 * for doubles, in a[CENTRED + l], the values less m, see MEAN_OFF) */          \
	TG_HOT_LOOP_WIDE                                                                \
	static void plane_add_##sfx(const T *P, size_t s, bool sq, double m, double *a) \
	{                                                                               \
		size_t k = 0;                                                           \
		const bool f64 = sizeof(T) == 8;                                        \
		if (sq) {                                                               \
			for (; k + ADD_LANES(T) <= s; k += ADD_LANES(T))                \
				for (int l = 0; l < ADD_LANES(T); l++) {                \
					double c = P[k + l] - m;                        \
					a[l] += c * c;                                  \
					if (f64)                                        \
						a[CENTRED + l] += c;                    \
				}                                                       \
			for (; k < s; k++) {                                            \
				double c = P[k] - m;                                    \
				a[ADD_LANES(T)] += c * c;                               \
				if (f64)                                                \
					a[CENTRED + ADD_LANES(T)] += c;                 \
			}                                                               \
			return;                                                         \
		}                                                                       \
		for (; k + ADD_LANES(T) <= s; k += ADD_LANES(T))                        \
			for (int l = 0; l < ADD_LANES(T); l++)                          \
				a[l] += P[k + l];                                       \
		for (; k < s; k++)                                                      \
			a[ADD_LANES(T)] += P[k];                                        \
	}                                                                               \
                                                                                        \
	/* the statistics of the channels [j0, j1), PLANE_BLOCK channels at a           \
	 * time, image by image, so that their planes are read in memory order;         \
	 * each channel's sums take its planes in the images' order, as one             \
	 * channel at a time would */                                                   \
	static void plane_stats_##sfx(const T *X, size_t n, size_t d, size_t s,         \
				      size_t j0, size_t j1, double eps, T *st, T *var)  \
	{                                                                               \
		T *mean = st, *inv_std = st + d, *lo = st + 3 * d;                      \
		const double cnt = (double)(n * s);                                     \
		const bool f64 = sizeof(T) == 8;                                        \
		double a[PLANE_BLOCK][SUMS_STRIDE] TG_SUMS_ALIGN, offs[PLANE_BLOCK];    \
		for (size_t jb = j0; jb < j1; jb += PLANE_BLOCK) {                      \
			const size_t w = j1 - jb < PLANE_BLOCK ? j1 - jb : PLANE_BLOCK; \
			memset(a, 0, sizeof a);                                         \
			for (size_t i = 0; i < n; i++)                                  \
				for (size_t c = 0; c < w; c++)                          \
					plane_add_##sfx(X + (i * d + jb + c) * s, s,    \
							false, 0, a[c]);                \
			for (size_t c = 0; c < w; c++) {                                \
				const size_t j = jb + c;                                \
				double sum = lanes_total(a[c], ADD_LANES(T));           \
				mean[j] = (T)(isinf(sum) ? scaled_mean(X + j * s, f64, n, s, \
								       d * s, sum)      \
							 : sum / cnt);                  \
				double off = sum / cnt - mean[j];                       \
				offs[c] = isfinite(off) ? off : 0;                      \
			}                                                               \
			memset(a, 0, sizeof a);                                         \
			for (size_t i = 0; i < n; i++)                                  \
				for (size_t c = 0; c < w; c++)                          \
					plane_add_##sfx(X + (i * d + jb + c) * s, s,    \
							true, mean[jb + c], a[c]);      \
			for (size_t c = 0; c < w; c++) {                                \
				const size_t j = jb + c;                                \
				if (f64)                                                \
					offs[c] = MEAN_OFF(lanes_total(a[c] + CENTRED,  \
								       ADD_LANES(T)) / cnt, \
							   lanes_total(a[c], ADD_LANES(T))); \
				double v = var_floor(lanes_total(a[c], ADD_LANES(T)) / cnt - \
						   offs[c] * offs[c]);                  \
				var[j] = (T)v;                                          \
				inv_std[j] = (T)(isinf(v) ? scaled_inv_std(X + j * s, f64, n, \
									   s, d * s,    \
									   mean[j], eps) \
							  : 1 / sqrt(v + eps));         \
				lo[j] = MEAN_LO(T, offs[c], inv_std[j]);                \
			}                                                               \
		}                                                                       \
	}                                                                               \
                                                                                        \
	/* Y = xhat * G + B, planes [p0, p1) (plane p = i d + j: image i, channel j); \
	 * relu as forward's */                                                         \
	TG_HOT_LOOP                                                                     \
	static void plane_forward_##sfx(const T *X, const T *st, const T *G,            \
					const T *B, bool relu, size_t p0, size_t p1,    \
					size_t d, size_t s, T *restrict Y)              \
	{                                                                               \
		const T *mean = st, *inv_std = st + d, *lo = st + 3 * d;                \
		for (size_t p = p0; p < p1; p++) {                                      \
			size_t j = p % d;                                               \
			const T *x = X + p * s;                                         \
			T *y = Y + p * s;                                               \
			T m = mean[j], ml = lo[j], r = inv_std[j], g = G[j], b = B[j];  \
			if (relu)                                                       \
				for (size_t k = 0; k < s; k++) {                        \
					T v = XHAT(x[k], m, ml, r) * g + b;             \
					y[k] = v < 0 ? 0 : v;                           \
				}                                                       \
			else                                                            \
				for (size_t k = 0; k < s; k++)                          \
					y[k] = XHAT(x[k], m, ml, r) * g + b;            \
		}                                                                       \
	}                                                                               \
                                                                                        \
	/* a[l] += a plane's dout, b[l] += its dout xhat */                             \
	TG_HOT_LOOP_WIDE                                                                \
	static void plane_dot_##sfx(const T *dy, const T *x, size_t s, T m, T ml, T r,  \
				    double *restrict a, double *restrict b)             \
	{                                                                               \
		size_t k = 0;                                                           \
		for (; k + DOT_LANES <= s; k += DOT_LANES)                              \
			for (int l = 0; l < DOT_LANES; l++) {                           \
				T xh = XHAT(x[k + l], m, ml, r);                              \
				a[l] += dy[k + l];                                      \
				b[l] += (double)dy[k + l] * xh;                         \
			}                                                               \
		for (; k < s; k++) {                                                    \
			T xh = XHAT(x[k], m, ml, r);                                          \
			a[DOT_LANES] += dy[k];                                          \
			b[DOT_LANES] += (double)dy[k] * xh;                             \
		}                                                                       \
	}                                                                               \
                                                                                        \
	/* the same with dout gated by RELU_GATE with the channel's g and bt (a     \
	 * function of its own: folded into plane_dot as forward_ is, GCC left the   \
	 * gated loop scalar, 2.3 times the time of the unfused ops) */               \
	TG_HOT_LOOP_WIDE                                                                \
	static void plane_dot_relu_##sfx(const T *dy, const T *x, size_t s, T m, T ml,  \
					 T r,                                           \
					 T g, T bt, double *restrict a,                 \
					 double *restrict b)                            \
	{                                                                               \
		size_t k = 0;                                                           \
		for (; k + DOT_LANES <= s; k += DOT_LANES)                              \
			for (int l = 0; l < DOT_LANES; l++) {                           \
				T xh = XHAT(x[k + l], m, ml, r);                              \
				T gy = RELU_GATE(T, dy[k + l], xh, g, bt);              \
				a[l] += gy;                                             \
				b[l] += (double)gy * xh;                                \
			}                                                               \
		for (; k < s; k++) {                                                    \
			T xh = XHAT(x[k], m, ml, r);                                          \
			T gy = RELU_GATE(T, dy[k], xh, g, bt);                          \
			a[DOT_LANES] += gy;                                             \
			b[DOT_LANES] += (double)gy * xh;                                \
		}                                                                       \
	}                                                                               \
                                                                                        \
	/* sums of the channels [j0, j1), in blocks as plane_stats takes them; relu:  \
	 * gated with G and B */                                                        \
	static void plane_sums_##sfx(const T *DOUT, const T *X, const T *st,            \
				     const T *G, const T *B, bool relu, size_t n,       \
				     size_t d, size_t s, size_t j0, size_t j1,          \
				     double *sums)                                      \
	{                                                                               \
		const T *mean = st, *inv_std = st + d, *lo = st + 3 * d;                \
		double a[PLANE_BLOCK][SUMS_STRIDE] TG_SUMS_ALIGN;                       \
		double b[PLANE_BLOCK][SUMS_STRIDE] TG_SUMS_ALIGN;                       \
		for (size_t jb = j0; jb < j1; jb += PLANE_BLOCK) {                      \
			const size_t w = j1 - jb < PLANE_BLOCK ? j1 - jb : PLANE_BLOCK; \
			memset(a, 0, sizeof a);                                         \
			memset(b, 0, sizeof b);                                         \
			for (size_t i = 0; i < n; i++)                                  \
				for (size_t c = 0; c < w; c++) {                        \
					const size_t p = (i * d + jb + c) * s, j = jb + c; \
					if (relu)                                       \
						plane_dot_relu_##sfx(DOUT + p, X + p, s, \
								     mean[j], lo[j],    \
								     inv_std[j],        \
								     G[j], B[j], a[c], b[c]); \
					else                                            \
						plane_dot_##sfx(DOUT + p, X + p, s,     \
								mean[j], lo[j],         \
								inv_std[j],             \
								a[c], b[c]);            \
				}                                                       \
			for (size_t c = 0; c < w; c++) {                                \
				sums[jb + c] = lanes_total(a[c], DOT_LANES);            \
				sums[d + jb + c] = lanes_total(b[c], DOT_LANES);        \
			}                                                               \
		}                                                                       \
	}                                                                               \
                                                                                        \
	/* relu: dout gated with G and B */                                             \
	TG_HOT_LOOP                                                                     \
	static void plane_dx_##sfx(const T *DOUT, const T *X, const T *st, const T *G,  \
				   const T *B, bool relu, const double *sums, size_t n, \
				   size_t p0, size_t p1, size_t d, size_t s,            \
				   T *restrict DX)                                      \
	{                                                                               \
		const T *mean = st, *inv_std = st + d, *lo = st + 3 * d;                \
		double cnt = (double)(n * s);                                           \
		for (size_t p = p0; p < p1; p++) {                                      \
			size_t j = p % d;                                               \
			const T *dy = DOUT + p * s, *x = X + p * s;                     \
			T *dx = DX + p * s;                                             \
			T m = mean[j], ml = lo[j], r = inv_std[j], scale = G[j] * r;    \
			T mdy = (T)(sums[j] / cnt);                                     \
			T mdyxh = (T)(sums[d + j] / cnt);                               \
			if (relu) {                                                     \
				T g = G[j], bt = B[j];                                  \
				for (size_t k = 0; k < s; k++) {                        \
					T xh = XHAT(x[k], m, ml, r);                          \
					T gy = RELU_GATE(T, dy[k], xh, g, bt);          \
					dx[k] = scale * (gy - mdy - xh * mdyxh);        \
				}                                                       \
			} else                                                          \
				for (size_t k = 0; k < s; k++) {                        \
					T xh = XHAT(x[k], m, ml, r);                          \
					dx[k] = scale * (dy[k] - mdy - xh * mdyxh);     \
				}                                                       \
		}                                                                       \
	}

PLANE_KERNELS(double, f64)
PLANE_KERNELS(float, f32)

/* ---- the passes, split across the context's threads ---------------------------------- */
/* Each pass runs over units of its own: columns or channels for the
 * statistics and the sums, rows or planes for the elementwise passes. A
 * unit is computed whole by one thread, in the order one thread takes, so
 * any split gives the same bits. */

typedef struct norm_job {
	bool f64;
	const void *x, *dout, *g, *b, *k; /* k: batch norm's dx coefficients */
	void *st, *y;                     /* st: the statistics; y: the output */
	double *acc, *sums; /* acc: scratch, 2 D doubles (a block's in block_sums) */
	size_t n, d, s; /* batch norm: N, D (or C), the plane; layer norm: R, D, 1 */
	size_t block;   /* the backward's sums: the rows of a block (sum_block) */
	double eps;
	bool relu; /* batch_norm_relu: the output through a relu, dout gated by it */
	bool squares; /* the (N,D) statistics' blocks: sums of squares, not sums */
} norm_job;

/* The units of `each` values a part of a split takes at least: TG_PAR_MIN
 * values. */
static size_t part_min(size_t each)
{
	return each >= TG_PAR_MIN ? 1 : (TG_PAR_MIN + each - 1) / each;
}

/* fn over the units [0, units) of `each` values: on the context's threads
 * once they hold TG_PAR_MIN values or more, the parts starting at
 * multiples of align. */
static void split(const tg_ctx *ctx, size_t units, size_t each, size_t align, tg_range_fn fn,
		  norm_job *job)
{
	tg_parallel_for(ctx, units, part_min(each), align, fn, job);
}

/* columns of x a cache line holds, so that parts of columns share none */
static size_t column_align(const norm_job *j) { return j->f64 ? 8 : 16; }

/* The backwards' column sums of (N,D) or (R,D) (of dout and of dout xhat,
 * gamma's and beta's gradients) are taken over blocks of rows, each block
 * adding its rows in order into 2 D partial sums of its own, which are
 * then added in block order: the blocks are set by the rows and D alone,
 * so the sums have the same bits at every thread count, and each thread
 * reads whole rows. A split of the sums by columns read a stretch of every
 * row, which streamed so much worse that batch norm's backward gained
 * nothing at 2 threads, and layer norm's read dout and x a second time,
 * after dx. At most SUM_BLOCKS blocks, each of TG_SUM_BLOCK values
 * (tg_parallel_sum's least) and 16 rows or more, so that a block's partial
 * sums are at most an eighth of what it reads: enough blocks to share
 * among a few threads, few enough that adding their sums costs little at
 * one ((4000,1000) f32: 64 blocks took 3-4% more time at 1 thread than
 * 16, and no less at 2). */
enum { SUM_BLOCKS = 16 };
static size_t sum_block(size_t rows, size_t d)
{
	size_t b = (rows + SUM_BLOCKS - 1) / SUM_BLOCKS, least = (TG_SUM_BLOCK + d - 1) / d;
	b = b > least ? b : least;
	return b > 16 ? b : 16;
}

/* sums [lo, hi) = the blocks' partial sums (acc, w doubles a block) added
 * in block order */
static void add_blocks(const norm_job *j, size_t w, size_t lo, size_t hi)
{
	size_t nb = (j->n + j->block - 1) / j->block;
	memcpy(j->sums + lo, j->acc + lo, (hi - lo) * sizeof *j->sums);
	for (size_t k = 1; k < nb; k++) {
		const double *p = j->acc + k * w;
		for (size_t c = lo; c < hi; c++)
			j->sums[c] += p[c];
	}
}

static void add_blocks_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	add_blocks(j, 2 * j->d, lo, hi);
}

/* The column sums into j->sums over nb blocks of j->block rows: fn over
 * blocks [lo, hi) fills each block's 2 D doubles of acc, across ctx's
 * threads; false after recording a failed allocation. */
static bool block_sums(tg_ctx *ctx, norm_job *j, size_t nb, tg_range_fn fn)
{
	if (!(j->acc = tg_arena_alloc(ctx, nb * 2 * j->d * sizeof *j->acc)))
		return false;
	tg_parallel_for(ctx, nb, 2, 1, fn, j);
	tg_parallel_for(ctx, 2 * j->d, part_min(nb), 8, add_blocks_part, j);
	return true;
}

static void bn_stats_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	size_t d = j->d;
	if (j->s > 1 && j->f64)
		plane_stats_f64(j->x, j->n, d, j->s, lo, hi, j->eps, j->st, (double *)j->st + 2 * d);
	else if (j->s > 1)
		plane_stats_f32(j->x, j->n, d, j->s, lo, hi, j->eps, j->st, (float *)j->st + 2 * d);
	else if (j->f64)
		stats_f64(j->x, j->n, d, lo, hi, j->eps, j->acc, j->acc + d, j->st,
			  (double *)j->st + 2 * d);
	else
		stats_f32(j->x, j->n, d, lo, hi, j->eps, j->acc, j->acc + d, j->st,
			  (float *)j->st + 2 * d);
}

/* The statistics of (N,D) over blocks of rows as the backward's sums
 * (sum_block): each block's column sums, then (squares) its sums of
 * squares about the mean, into its D doubles of acc, the blocks [lo, hi) ... */
static void bn_stat_blocks_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	size_t d = j->d;
	for (size_t k = lo; k < hi; k++) {
		size_t i0 = k * j->block, m = j->n - i0 < j->block ? j->n - i0 : j->block;
		double *acc = j->acc + k * d;
		if (j->f64 && j->squares) /* and the sums of x - mean after them */
			column_squares_f64((const double *)j->x + i0 * d, m, d, 0, d, j->st,
					   j->acc + k * 2 * d, j->acc + k * 2 * d + d);
		else if (j->f64)
			column_sums_f64((const double *)j->x + i0 * d, m, d, 0, d, acc);
		else if (j->squares)
			column_squares_f32((const float *)j->x + i0 * d, m, d, 0, d, j->st, acc,
					   NULL);
		else
			column_sums_f32((const float *)j->x + i0 * d, m, d, 0, d, acc);
	}
}

/* ... and the blocks' sums added in block order (sums, D) into the means
 * of the columns [lo, hi), what they lost to rounding (sums + D) ... */
static void bn_means_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	add_blocks(j, j->d, lo, hi);
	if (j->f64)
		column_means_f64(j->x, j->n, j->d, lo, hi, j->sums, j->sums + j->d, j->st);
	else
		column_means_f32(j->x, j->n, j->d, lo, hi, j->sums, j->sums + j->d, j->st);
}

/* ... then into their variances and inverse standard deviations */
static void bn_vars_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	size_t d = j->d;
	if (j->f64) { /* blocks of 2 D: the squares, then the sums of x - mean */
		add_blocks(j, 2 * d, lo, hi);
		add_blocks(j, 2 * d, d + lo, d + hi);
		for (size_t c = lo; c < hi; c++)
			j->sums[d + c] = MEAN_OFF(j->sums[d + c] / (double)j->n, j->sums[c]);
	} else {
		add_blocks(j, d, lo, hi);
	}
	if (j->f64)
		column_vars_f64(j->x, j->n, d, lo, hi, j->eps, j->sums, j->sums + d, j->st,
				(double *)j->st + 2 * d);
	else
		column_vars_f32(j->x, j->n, d, lo, hi, j->eps, j->sums, j->sums + d, j->st,
				(float *)j->st + 2 * d);
}

static void bn_sums_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	if (j->s > 1 && j->f64)
		plane_sums_f64(j->dout, j->x, j->st, j->g, j->b, j->relu, j->n, j->d, j->s, lo, hi,
			       j->sums);
	else if (j->s > 1)
		plane_sums_f32(j->dout, j->x, j->st, j->g, j->b, j->relu, j->n, j->d, j->s, lo, hi,
			       j->sums);
	else if (j->f64)
		sums_f64(j->dout, j->x, j->st, j->g, j->b, j->relu, j->n, j->d, lo, hi, j->sums);
	else
		sums_f32(j->dout, j->x, j->st, j->g, j->b, j->relu, j->n, j->d, lo, hi, j->sums);
}

/* The blocks [lo, hi) of (N,D)'s rows (block_sums): each block's column
 * sums from zeros into its own 2 D doubles of acc. */
static void bn_blocks_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	size_t d = j->d;
	for (size_t k = lo; k < hi; k++) {
		size_t i0 = k * j->block, m = j->n - i0 < j->block ? j->n - i0 : j->block;
		double *sums = j->acc + k * 2 * d;
		if (j->f64)
			sums_f64((const double *)j->dout + i0 * d, (const double *)j->x + i0 * d,
				 j->st, j->g, j->b, j->relu, m, d, 0, d, sums);
		else
			sums_f32((const float *)j->dout + i0 * d, (const float *)j->x + i0 * d,
				 j->st, j->g, j->b, j->relu, m, d, 0, d, sums);
	}
}

static void bn_forward_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	if (j->s > 1 && j->f64)
		plane_forward_f64(j->x, j->st, j->g, j->b, j->relu, lo, hi, j->d, j->s, j->y);
	else if (j->s > 1)
		plane_forward_f32(j->x, j->st, j->g, j->b, j->relu, lo, hi, j->d, j->s, j->y);
	else if (j->f64)
		forward_f64(j->x, j->st, j->g, j->b, j->relu, lo, hi, j->d, j->y);
	else
		forward_f32(j->x, j->st, j->g, j->b, j->relu, lo, hi, j->d, j->y);
}

static void bn_dx_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	if (j->s > 1 && j->f64)
		plane_dx_f64(j->dout, j->x, j->st, j->g, j->b, j->relu, j->sums, j->n, lo, hi, j->d,
			     j->s, j->y);
	else if (j->s > 1)
		plane_dx_f32(j->dout, j->x, j->st, j->g, j->b, j->relu, j->sums, j->n, lo, hi, j->d,
			     j->s, j->y);
	else if (j->f64)
		dx_f64(j->dout, j->x, j->st, j->k, j->g, j->b, j->relu, lo, hi, j->d, j->y);
	else
		dx_f32(j->dout, j->x, j->st, j->k, j->g, j->b, j->relu, lo, hi, j->d, j->y);
}

/* A batch-norm pass over the channels (the statistics, the sums) ... */
static void bn_channels(const tg_ctx *ctx, tg_range_fn fn, norm_job *j)
{
	split(ctx, j->d, j->n * j->s, j->s > 1 ? 1 : column_align(j), fn, j);
}

/* ... or elementwise, over planes (N C of S values) or rows (N of D). */
static void bn_elementwise(const tg_ctx *ctx, tg_range_fn fn, norm_job *j)
{
	if (j->s > 1)
		split(ctx, j->n * j->d, j->s, 1, fn, j);
	else
		split(ctx, j->n, j->d, 1, fn, j);
}

/* ---- checking arguments -------------------------------------------------------------- */

/* eps must be a positive normal number in x's dtype, as the norm layers
 * require (norm_eps.h). Else records why. */
static bool eps_ok(tg_ctx *ctx, const char *who, const tg_tensor *x, double eps)
{
	double lo, hi;
	if (tg_norm_eps_ok(eps, x->dtype, &lo, &hi))
		return true;
	tg_fail(ctx, TG_EARG, "%s: eps = %g must be positive and finite, a normal number in %s "
			      "(%g to %g)",
		who, eps, x->dtype == TG_F64 ? "f64" : "f32", lo, hi);
	return false;
}

/* The size of a plane of x (N,C,...) for batch norm: the product of the
 * axes after C, 1 for (N,D). */
static size_t plane_size(const tg_tensor *x)
{
	size_t s = 1;
	for (int i = 2; i < x->ndim; i++)
		s *= (size_t)x->shape[i];
	return s;
}

/* x is (N,D) with N >= 2, or (N,C,...) with 2 values or more per channel,
 * each of cols (D), eps as eps_ok; else records why. names[i] names cols[i]
 * in the message. */
static bool shapes_ok(tg_ctx *ctx, const char *who, const tg_tensor *x, int ncols,
		      tg_tensor *const *cols, const char *const *names, double eps)
{
	char xs[TG_SHAPE_STR], cs[TG_SHAPE_STR];
	if (x->ndim < 2) {
		tg_fail(ctx, TG_ESHAPE, "%s: x %s must be (N,D) or (N,C,...)", who,
			tg_shape_fmt(x->ndim, x->shape, xs));
		return false;
	}
	for (int i = 0; i < ncols; i++)
		if (cols[i]->ndim != 1 || cols[i]->shape[0] != x->shape[1]) {
			tg_fail(ctx, TG_ESHAPE, "%s: x %s: %s %s must be (%lld,)", who,
				tg_shape_fmt(x->ndim, x->shape, xs), names[i],
				tg_shape_fmt(cols[i]->ndim, cols[i]->shape, cs),
				(long long)x->shape[1]);
			return false;
		}
	if (x->ndim == 2 && x->shape[0] < 2) {
		tg_fail(ctx, TG_ESHAPE,
			"%s: x %s: a batch of %lld has no variance to normalise by; it needs "
			"2 rows or more",
			who, tg_shape_fmt(x->ndim, x->shape, xs), (long long)x->shape[0]);
		return false;
	}
	if (x->ndim > 2 && x->numel > 0 && x->numel / (size_t)x->shape[1] < 2) {
		tg_fail(ctx, TG_ESHAPE,
			"%s: x %s: %zu value per channel has no variance to normalise by; it "
			"needs 2 or more",
			who, tg_shape_fmt(x->ndim, x->shape, xs), x->numel / (size_t)x->shape[1]);
		return false;
	}
	return eps_ok(ctx, who, x, eps);
}

/* ---- the statistics with history, for recorded rules ------------------------------------ */

/* Whether any value of t is infinite or NaN. */
static bool any_nonfinite(const tg_tensor *t)
{
	for (size_t i = 0; i < t->numel; i++)
		if (!isfinite(t->dtype == TG_F64 ? ((const double *)t->data)[i]
					    : ((const float *)t->data)[i]))
			return true;
	return false;
}

/* x - mean along axis made of ops: x less its mean rounded to the dtype, then
 * less the mean of that, which is what the rounding left (lo, as the kernels
 * take it out) */
static tg_tensor *centered(tg_tensor *x, int axis, bool keep)
{
	tg_tensor *xc = tg_sub(x, tg_mean_axis(x, axis, keep));
	return tg_sub(xc, tg_mean_axis(xc, axis, keep));
}

/* normalized_along once var, the plain variance, has overflowed somewhere
 * (inf, or NaN where the mean did and x less it took it out again):
 * each group of x (a column for axis 0, else a row) whose variance is
 * not finite is scaled by s = 2^-k so that |x| s < 1, the others by 1 (to
 * the same bits as the plain way); xhat = (xs - mean(xs)) r with
 * r = 1 / sqrt(var(xs) + eps s^2), and inv_std = r s. */
static TG_SLOW tg_tensor *normalized_scaled(tg_tensor *x, int axis, bool keep, double eps,
					    const tg_tensor *var, tg_tensor **inv_std)
{
	tg_tensor *s = tg_empty(x->ctx, x->dtype, var->ndim, var->shape);
	if (!s)
		return *inv_std = NULL;
	size_t d = (size_t)x->shape[x->ndim - 1], groups = var->numel;
	size_t len = axis == 0 ? (size_t)x->shape[0] : d, stride = axis == 0 ? d : 1;
	bool f64 = x->dtype == TG_F64;
	for (size_t g = 0; g < groups; g++) {
		double v = f64 ? ((const double *)var->data)[g] : ((const float *)var->data)[g];
		size_t base = axis == 0 ? g : g * d, es = f64 ? sizeof(double) : sizeof(float);
		double sg = !isfinite(v) ? down_scale((const char *)x->data + base * es, f64, len, 1, stride)
				     : 0;
		sg = sg > 0 ? sg : 1;
		if (f64)
			((double *)s->data)[g] = sg;
		else
			((float *)s->data)[g] = (float)sg;
	}
	tg_tensor *xs = tg_mul(x, s);
	tg_tensor *xc = centered(xs, axis, keep);
	tg_tensor *vs = tg_mean_axis(tg_mul(xc, xc), axis, keep);
	tg_tensor *r = tg_pow(tg_add(vs, tg_mul_scalar(tg_mul(s, s), eps)), -0.5);
	*inv_std = tg_mul(r, s);
	return tg_mul(xc, r);
}

/* xhat = (x - mean) * inv_std along axis made of ops, so that it carries
 * x's history; *inv_std likewise, the statistics' shape. */
static tg_tensor *normalized_along(tg_tensor *x, int axis, bool keep, double eps,
				   tg_tensor **inv_std)
{
	tg_tensor *xc = centered(x, axis, keep);
	tg_tensor *var = tg_mean_axis(tg_mul(xc, xc), axis, keep);
	if (var && __builtin_expect(any_nonfinite(var), 0))
		return normalized_scaled(x, axis, keep, eps, var, inv_std);
	*inv_std = tg_pow(tg_add_scalar(var, eps), -0.5);
	return tg_mul(xc, *inv_std);
}

/* xhat = (x - mean) * inv_std made of ops, so that it carries x's history;
 * *inv_std (D) = 1 / sqrt(var + eps) likewise. */
static tg_tensor *normalized(tg_tensor *x, double eps, tg_tensor **inv_std)
{
	return normalized_along(x, 0, false, eps, inv_std);
}

static tg_tensor *column_sum(tg_tensor *x) { return tg_sum_axis(x, 0, false); }

/* The rules written with ops see batch norm's x as (R,C), one row per
 * value of each channel: x (N,C,...) becomes (N ... , C) by a permute and a
 * reshape that carry history; (N,D) stays as it is. */
static tg_tensor *as_rows(tg_tensor *t)
{
	if (!t || t->ndim == 2)
		return t;
	int perm[TG_MAX_DIMS], nd = t->ndim;
	perm[0] = 0;
	for (int i = 1; i < nd - 1; i++)
		perm[i] = i + 1;
	perm[nd - 1] = 1;
	int64_t c = t->shape[1];
	return tg_reshape(tg_permute(t, perm), 2, (int64_t[]){ (int64_t)(t->numel / (size_t)c), c });
}

/* as_rows undone: r (R,C) back to the shape of x (N,C,...). */
static tg_tensor *from_rows(tg_tensor *r, const tg_tensor *x)
{
	if (!r || x->ndim == 2)
		return r;
	int perm[TG_MAX_DIMS], nd = x->ndim;
	int64_t shape[TG_MAX_DIMS];
	shape[0] = x->shape[0];
	for (int i = 2; i < nd; i++)
		shape[i - 1] = x->shape[i];
	shape[nd - 1] = x->shape[1];
	perm[0] = 0;
	perm[1] = nd - 1;
	for (int i = 2; i < nd; i++)
		perm[i] = i - 1;
	return tg_permute(tg_reshape(r, nd, shape), perm);
}

/* ---- batch_norm_backward: dx = gamma inv_std / N (N dout - sum dout - xhat sum(dout xhat)) */
/* Per column, dout -> dx is gamma times a symmetric linear map, so the
 * gradient for dout is this op applied to the upstream gradient g. The one
 * for x (with the sums over the batch and dg that gradient for dout):
 *	-(inv_std / N) (xhat sum(g dx) + dx sum(g xhat) + dg sum(dout xhat)),
 * and for gamma, sum(dout * batch_norm_backward(g, x, 1)). */

static const tg_op batch_norm_backward_op;

/* sums (2 D doubles) = the column sums of dout and of dout xhat, with the
 * statistics st of x: beta's and gamma's gradients. A beta (not NULL) gates
 * dout by batch_norm_relu's relu first (RELU_GATE). */
static bool column_sums(const tg_tensor *dout, const tg_tensor *x, const tg_tensor *gamma,
			const tg_tensor *beta, const void *st, double *sums)
{
	norm_job j = { .f64 = x->dtype == TG_F64, .x = x->data, .dout = dout->data,
		       .g = gamma->data, .b = beta ? beta->data : NULL, .st = (void *)st,
		       .sums = sums, .n = (size_t)x->shape[0], .d = (size_t)x->shape[1],
		       .s = plane_size(x), .relu = beta != NULL };
	j.block = sum_block(j.n, j.d);
	size_t nb = (j.n + j.block - 1) / j.block;
	if (j.s == 1 && nb > 1)
		return block_sums(x->ctx, &j, nb, bn_blocks_part);
	bn_channels(x->ctx, bn_sums_part, &j); /* one block: each column's rows in order */
	return true;
}

/* dx from the statistics st of x as a batch_norm_backward node; sums
 * receives the column sums on the way. With a beta, batch_norm_relu's dx
 * (dout gated as column_sums does), which is not that op: only for a
 * backward that records nothing. */
static tg_tensor *backward_dx(tg_ctx *ctx, const char *who, tg_tensor *dout, tg_tensor *x,
			      tg_tensor *gamma, tg_tensor *beta, double eps, const void *st,
			      double *sums)
{
	assert(!beta || !ctx->grad_enabled);
	size_t n = (size_t)x->shape[0], d = (size_t)x->shape[1], s = plane_size(x);
	tg_tensor *dx = tg_tensor_like(x, who);
	/* (N,D)'s coefficients, once for every row (the planes take theirs
	 * a plane at a time) */
	void *k = s == 1 ? tg_arena_alloc(ctx, 3 * d * tg_dtype_size(x->dtype)) : NULL;
	if (!dx || (s == 1 && !k))
		return NULL;
	if (!column_sums(dout, x, gamma, beta, st, sums))
		return NULL;
	norm_job j = { .f64 = x->dtype == TG_F64, .x = x->data, .dout = dout->data,
		       .g = gamma->data, .b = beta ? beta->data : NULL, .k = k, .st = (void *)st,
		       .y = dx->data, .sums = sums, .n = n, .d = d, .s = s, .relu = beta != NULL };
	if (s == 1 && j.f64)
		dx_coef_f64(st, gamma->data, sums, n, d, k);
	else if (s == 1)
		dx_coef_f32(st, gamma->data, sums, n, d, k);
	bn_elementwise(ctx, bn_dx_part, &j);
	tg_tensor *in[3] = { dout, x, gamma };
	return tg_op_end(&batch_norm_backward_op, dx, 3, in, &eps, 1, NULL);
}

/* The statistics of x (mean, inv_std, var, then lo: 4 D values of its dtype)
 * in the step arena, or NULL. */
static void *statistics(tg_ctx *ctx, const tg_tensor *x, double eps)
{
	size_t n = (size_t)x->shape[0], d = (size_t)x->shape[1], s = plane_size(x);
	size_t block = sum_block(n, d), nb = s == 1 ? (n + block - 1) / block : 0;
	void *st = tg_arena_alloc(ctx, 4 * d * tg_dtype_size(x->dtype));
	/* (N,D)'s column sums and the mean's rounding (2 D), after the blocks'
	 * sums (D each; 2 D of doubles' squares, with their sums of x - mean);
	 * a channel's sums stay in its kernel's locals */
	const size_t bw = x->dtype == TG_F64 ? 2 : 1; /* the squares' blocks, in D */
	double *acc = s == 1 ? tg_arena_alloc(ctx, (nb > 1 ? bw * nb + 2 : 2) * d * sizeof *acc)
			     : NULL;
	if (!st || (s == 1 && !acc))
		return NULL;
	norm_job j = { .f64 = x->dtype == TG_F64, .x = x->data, .st = st, .acc = acc,
		       .n = n, .d = d, .s = s, .block = block, .eps = eps };
	if (nb <= 1) { /* channels, or one block: each column's rows in order */
		bn_channels(ctx, bn_stats_part, &j);
		return st;
	}
	/* whole rows to each thread, as the backward's sums: a split of the
	 * columns read a stretch of every row, and (100000,64) floats took
	 * twice as long at 2 threads as at 1 */
	j.sums = acc + bw * nb * d;
	tg_parallel_for(ctx, nb, 2, 1, bn_stat_blocks_part, &j);
	tg_parallel_for(ctx, d, part_min(nb), column_align(&j), bn_means_part, &j);
	j.squares = true;
	tg_parallel_for(ctx, nb, 2, 1, bn_stat_blocks_part, &j);
	tg_parallel_for(ctx, d, part_min(nb), column_align(&j), bn_vars_part, &j);
	return st;
}

tg_tensor *tg_batch_norm_backward(tg_tensor *dout, tg_tensor *x, tg_tensor *gamma, double eps)
{
	static const char who[] = "tg_batch_norm_backward";
	tg_tensor *in[3] = { dout, x, gamma };
	tg_ctx *ctx = tg_op_begin(who, 3, in);
	if (!ctx || !shapes_ok(ctx, who, x, 1, &gamma, (const char *[]){ "gamma" }, eps))
		return NULL;
	if (!tg_same_shape(dout, x)) {
		char ds[TG_SHAPE_STR], xs[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: dout %s and x %s must have the same shape",
			       who, tg_shape_fmt(dout->ndim, dout->shape, ds),
			       tg_shape_fmt(x->ndim, x->shape, xs));
	}
	void *st = statistics(ctx, x, eps);
	double *sums = tg_arena_alloc(ctx, 2 * (size_t)x->shape[1] * sizeof *sums);
	if (!st || !sums)
		return NULL;
	return backward_dx(ctx, who, dout, x, gamma, NULL, eps, st, sums);
}

static void batch_norm_backward_backward(tg_node *n, tg_tensor *g)
{
	tg_tensor *dout = tg_node_input(n, 0), *x = tg_node_input(n, 1);
	tg_tensor *gamma = tg_node_input(n, 2), *dx = tg_node_output(n);
	double eps = tg_node_attr(n, 0);
	tg_tensor *dg = NULL;
	if (tg_node_needs_grad(n, 0) || tg_node_needs_grad(n, 1))
		dg = tg_batch_norm_backward(g, x, gamma, eps);
	tg_node_grad(n, 0, dg);
	if (tg_node_needs_grad(n, 1)) {
		tg_tensor *inv_std, *gr = as_rows(g), *dxr = as_rows(dx);
		tg_tensor *xh = normalized(as_rows(x), eps, &inv_std);
		tg_tensor *t = tg_add(tg_add(tg_mul(xh, column_sum(tg_mul(gr, dxr))),
					     tg_mul(dxr, column_sum(tg_mul(gr, xh)))),
				      tg_mul(as_rows(dg), column_sum(tg_mul(as_rows(dout), xh))));
		double rows = (double)(x->numel / (size_t)x->shape[1]);
		tg_node_grad(n, 1, from_rows(tg_mul(t, tg_mul_scalar(inv_std, -1.0 / rows)), x));
	}
	if (tg_node_needs_grad(n, 2)) {
		tg_tensor *one = tg_ones(x->ctx, x->dtype, 1, gamma->shape);
		tg_node_grad(n, 2, column_sum(tg_mul(as_rows(dout),
						     as_rows(tg_batch_norm_backward(g, x, one, eps)))));
	}
}

/* "eps 1e-05", for batch_norm and its fused backward */
static int eps_describe(const tg_node *n, char *buf, size_t size)
{
	return tg_describe_num(buf, size, "eps ", tg_node_attr(n, 0));
}

static const char *const dx_inputs[] = { "dout", "x", "gamma" };
static const tg_op batch_norm_backward_op = { .name = "batch_norm_backward",
					      .backward = batch_norm_backward_backward,
					      .inputs = dx_inputs, .describe = eps_describe };
TG_OP_REGISTER(batch_norm_backward_op);

/* ---- batch_norm: y = (x - mean) / sqrt(var + eps) * gamma + beta ------------------------- */
/* dx = batch_norm_backward(dout, x, gamma), dgamma = sum(dout xhat), dbeta =
 * sum(dout). A plain backward takes all three from one kernel, whose column
 * sums are dbeta and dgamma; a recorded one (TG_CREATE_GRAPH) makes the two
 * sums from ops, so that they carry history. The node keeps the statistics
 * (aux), so the backward does not compute them again. */

/* Both ops' rule; relu for batch_norm_relu's, which takes dout through
 * the relu first: gated inside the kernels in a plain backward, and by
 * tg_relu_backward against the output in a recorded one (y > 0 where the
 * batch norm value is). */
static void norm_backward(tg_node *n, tg_tensor *dout, bool relu, const char *who)
{
	tg_tensor *x = tg_node_input(n, 0), *gamma = tg_node_input(n, 1);
	tg_tensor *gate = relu ? tg_node_input(n, 2) : NULL; /* beta */
	double eps = tg_node_attr(n, 0);
	tg_ctx *ctx = x->ctx;
	if (relu && ctx->grad_enabled) {
		if (!(dout = tg_relu_backward(dout, tg_node_output(n))))
			return;
		gate = NULL;
	}
	double *sums = tg_arena_alloc(ctx, 2 * (size_t)x->shape[1] * sizeof *sums);
	if (!sums)
		return;
	if (tg_node_needs_grad(n, 0))
		TG_NODE_GRAD_INTO(n, 0, backward_dx(ctx, who, dout, x, gamma, gate, eps, n->aux,
						    sums));
	if (ctx->grad_enabled) {
		if (tg_node_needs_grad(n, 1)) {
			tg_tensor *inv_std;
			tg_node_grad(n, 1, column_sum(tg_mul(as_rows(dout),
							     normalized(as_rows(x), eps, &inv_std))));
		}
		tg_node_grad(n, 2, column_sum(as_rows(dout)));
		return;
	}
	if (!tg_node_needs_grad(n, 0) && !column_sums(dout, x, gamma, gate, n->aux, sums))
		return;
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, tg_from_f64(ctx, x->dtype, 1, gamma->shape, sums + x->shape[1]));
	if (tg_node_needs_grad(n, 2))
		tg_node_grad(n, 2, tg_from_f64(ctx, x->dtype, 1, gamma->shape, sums));
}

static void batch_norm_backward(tg_node *n, tg_tensor *dout)
{
	norm_backward(n, dout, false, "batch_norm's backward");
}

static const char *const bn_inputs[] = { "x", "gamma", "beta" };
static const tg_op batch_norm_op = { .name = "batch_norm", .backward = batch_norm_backward,
				     .inputs = bn_inputs,
				     .describe = eps_describe };
TG_OP_REGISTER(batch_norm_op);

/* A step tensor (D) holding the column values v of x's dtype, no history. */
static tg_tensor *columns(tg_ctx *ctx, const char *who, const tg_tensor *x, const void *v)
{
	tg_tensor *t = tg_tensor_new(ctx, who, x->dtype, 1, &x->shape[1]);
	if (t)
		memcpy(t->data, v, (size_t)x->shape[1] * tg_dtype_size(x->dtype));
	return t;
}

/* tg_batch_norm and tg_batch_norm_relu: op's node over y = batch norm
 * (relu: through a relu) of x. */
static tg_tensor *batch_norm_as(const tg_op *op, const char *who, bool relu, tg_tensor *x,
				tg_tensor *gamma, tg_tensor *beta, double eps, tg_tensor **mean,
				tg_tensor **var)
{
	if (mean)
		*mean = NULL;
	if (var)
		*var = NULL;
	tg_tensor *in[3] = { x, gamma, beta };
	tg_ctx *ctx = tg_op_begin(who, 3, in);
	if (!ctx || !shapes_ok(ctx, who, x, 2, in + 1, (const char *[]){ "gamma", "beta" }, eps))
		return NULL;
	size_t n = (size_t)x->shape[0], d = (size_t)x->shape[1], s = plane_size(x);
	void *st = statistics(ctx, x, eps);
	tg_tensor *y = tg_tensor_like(x, who);
	if (!st || !y)
		return NULL;
	size_t size = tg_dtype_size(x->dtype);
	if (mean && !(*mean = columns(ctx, who, x, st)))
		return NULL;
	if (var && !(*var = columns(ctx, who, x, (char *)st + 2 * d * size)))
		return NULL;
	norm_job j = { .f64 = x->dtype == TG_F64, .x = x->data, .g = gamma->data,
		       .b = beta->data, .st = st, .y = y->data, .n = n, .d = d, .s = s,
		       .relu = relu };
	bn_elementwise(ctx, bn_forward_part, &j);
	return tg_op_end(op, y, 3, in, &eps, 1, st);
}

tg_tensor *tg_batch_norm(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps,
			tg_tensor **mean, tg_tensor **var)
{
	return batch_norm_as(&batch_norm_op, "tg_batch_norm", false, x, gamma, beta, eps, mean,
			     var);
}

/* ---- batch_norm_relu: y = relu(batch_norm(x)), one node ------------------------------------- */
/* The same bits as tg_relu(tg_batch_norm(...)) forward and backward, with
 * one pass fewer over x's size each way: the forward writes the relu's
 * output directly, and a plain backward gates dout inside batch norm's
 * sums and dx passes, telling where the value was positive from x and the
 * statistics as the forward computed it (no FMA in any copy of the
 * kernels, so every value rounds alike). */

static void batch_norm_relu_backward(tg_node *n, tg_tensor *dout)
{
	norm_backward(n, dout, true, "batch_norm_relu's backward");
}

static const tg_op batch_norm_relu_op = { .name = "batch_norm_relu",
					  .backward = batch_norm_relu_backward,
					  .inputs = bn_inputs, .describe = eps_describe };
TG_OP_REGISTER(batch_norm_relu_op);

tg_tensor *tg_batch_norm_relu(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps,
			     tg_tensor **mean, tg_tensor **var)
{
	return batch_norm_as(&batch_norm_relu_op, "tg_batch_norm_relu", true, x, gamma, beta, eps,
			     mean, var);
}

/* ==== layer norm: each row of x (..., D) normalised over its last axis ==================== */

/* ---- the row kernels --------------------------------------------------------------------- */
/* The statistics of the R rows are kept in x's dtype, mean (R), inv_std (R)
 * then lo (R), so that every pass computes xhat = (x - mean - lo) * inv_std
 * to the same bits (XHAT, above). */

/* row_dx's TG_LANES lanes of sums, lane k taking the elements j with
 * j % TG_LANES = k: sa[k] += a, saxh[k] += a xh in double, a = dout g and
 * xh = (x - m - ml) s in T, for the whole blocks of TG_LANES from j (left at the
 * tail), as two vectors of eight lanes, the second taking the second eight
 * elements of each block (one vector of sixteen doubles made GCC spill:
 * rows of 64 floats 5% slower). Written with vectors where the compiler
 * has them, the same operations lane by lane: GCC left the loop of eight
 * scalars unvectorised (vmovss and vmulsd, a quarter of layer_norm and
 * gelu's forward and backward over (256,1024)).
 * Not under AddressSanitizer, as TG_MAX_LANES (engine/internal.h). */
#if defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define DX_LANES(T, DOUT, X, G, m, ml, s, d, j, sa, saxh)                                   \
	do {                                                                            \
		typedef T tv_ __attribute__((vector_size(8 * sizeof(T))));              \
		typedef double dv_ __attribute__((vector_size(8 * sizeof(double))));     \
		dv_ a_sum_[2] = { { 0 }, { 0 } }, axh_sum_[2] = { { 0 }, { 0 } };       \
		const T m_ = (m), ml_ = (ml), s_ = (s);                                 \
		for (; (j) + TG_LANES <= (d); (j) += TG_LANES)                          \
			for (int h_ = 0; h_ < 2; h_++) {                                \
				tv_ x_, dy_, g_;                                        \
				memcpy(&x_, (X) + (j) + 8 * h_, sizeof x_);             \
				memcpy(&dy_, (DOUT) + (j) + 8 * h_, sizeof dy_);        \
				memcpy(&g_, (G) + (j) + 8 * h_, sizeof g_);             \
				tv_ xh_ = XHAT(x_, m_, ml_, s_), a_ = dy_ * g_;         \
				dv_ ad_ = __builtin_convertvector(a_, dv_);             \
				a_sum_[h_] += ad_;                                      \
				axh_sum_[h_] += ad_ * __builtin_convertvector(xh_, dv_); \
			}                                                               \
		memcpy(sa, a_sum_, sizeof a_sum_);                                      \
		memcpy(saxh, axh_sum_, sizeof axh_sum_);                                \
	} while (0)
#else
#define DX_LANES(T, DOUT, X, G, m, ml, s, d, j, sa, saxh)                                   \
	for (; (j) + TG_LANES <= (d); (j) += TG_LANES)                                  \
		for (int k = 0; k < TG_LANES; k++) {                                    \
			T xh = XHAT((X)[(j) + k], (m), (ml), (s));                      \
			T a = (DOUT)[(j) + k] * (G)[(j) + k];                           \
			sa[k] += a;                                                     \
			saxh[k] += (double)a * xh;                                      \
		}
#endif

#define LAYER_NORM_KERNELS(T, sfx)                                                      \
	/* st = mean, inv_std = 1 / sqrt(var + eps), lo of each row; var biased. Each   \
	 * sum runs in TG_LANES interleaved partial sums (lane j % TG_LANES), as        \
	 * tg_sum_run's do, not as one chain of dependent adds. Rows [i0, i1) of r. */  \
	TG_HOT_LOOP_WIDE                                                                \
	static void row_stats_##sfx(const T *X, size_t r, size_t i0, size_t i1,         \
				    size_t d, double eps, T *st)                        \
	{                                                                               \
		T *mean = st, *inv_std = st + r, *lo = st + 2 * r;                      \
		X += i0 * d;                                                            \
		for (size_t i = i0; i < i1; i++, X += d) {                              \
			double sum = tg_sum_run_##sfx(0, X, (int64_t)d);                \
			mean[i] = (T)(isinf(sum) ? scaled_mean(X, sizeof(T) == 8, 1, d, d, sum) \
						 : sum / (double)d);                    \
			double v[TG_LANES] = { 0 }, u[TG_LANES] = { 0 };                \
			size_t j = 0;                                                   \
			for (; j + TG_LANES <= d; j += TG_LANES)                        \
				for (int k = 0; k < TG_LANES; k++) {                    \
					double c = X[j + k] - mean[i];                  \
					u[k] += c;                                      \
					v[k] += c * c;                                  \
				}                                                       \
			for (; j < d; j++) {                                            \
				double c = X[j] - mean[i];                              \
				u[j % TG_LANES] += c;                                   \
				v[j % TG_LANES] += c * c;                               \
			}                                                               \
			/* less the square of the mean's rounding to T: for a float,    \
			 * the double sum's mean less it; for a double, MEAN_OFF */     \
			double off = sizeof(T) == 8 ? MEAN_OFF(tg_sum_lanes(u) / (double)d,  \
							       tg_sum_lanes(v))                 \
						    : sum / (double)d - mean[i];        \
			double var = var_floor(tg_sum_lanes(v) / (double)d              \
					       - (isfinite(off) ? off * off : 0));    \
			inv_std[i] = (T)(isinf(var) ? scaled_inv_std(X, sizeof(T) == 8, 1, d, d, \
								     mean[i], eps)      \
						    : 1 / sqrt(var + eps));             \
			lo[i] = MEAN_LO(T, off, inv_std[i]);                            \
		}                                                                       \
	}                                                                               \
                                                                                        \
	/* Y = xhat * G + B, rows [i0, i1) of r */                                      \
	TG_HOT_LOOP                                                                     \
	static void row_forward_##sfx(const T *X, const T *st, const T *G, const T *B,  \
				      size_t r, size_t i0, size_t i1, size_t d,         \
				      T *restrict Y)                                    \
	{                                                                               \
		const T *mean = st, *inv_std = st + r, *lo = st + 2 * r;                \
		for (size_t i = i0; i < i1; i++)                                        \
			for (size_t j = 0; j < d; j++)                                  \
				Y[i * d + j] = XHAT(X[i * d + j], mean[i], lo[i],       \
						    inv_std[i]) * G[j] + B[j];          \
	}                                                                               \
                                                                                        \
	/* DX = inv_std (a - mean(a) - xhat mean(a xhat)) per row, a = dout * G;        \
	 * rows [i0, i1) of r */                                                        \
	TG_HOT_LOOP_WIDE                                                                \
	static void row_dx_##sfx(const T *DOUT, const T *X, const T *st, const T *G,    \
				 size_t r, size_t i0, size_t i1, size_t d,              \
				 T *restrict DX)                                        \
	{                                                                               \
		const T *mean = st, *inv_std = st + r, *lo = st + 2 * r;                \
		X += i0 * d;                                                            \
		DOUT += i0 * d;                                                         \
		DX += i0 * d;                                                           \
		for (size_t i = i0; i < i1; i++, X += d, DOUT += d, DX += d) {          \
			double sa[TG_LANES] = { 0 }, saxh[TG_LANES] = { 0 };            \
			size_t j = 0;                                                   \
			DX_LANES(T, DOUT, X, G, mean[i], lo[i], inv_std[i], d, j, sa,   \
				 saxh);                                                 \
			for (; j < d; j++) {                                            \
				T xh = XHAT(X[j], mean[i], lo[i], inv_std[i]);          \
				T a = DOUT[j] * G[j];                                   \
				sa[j % TG_LANES] += a;                                  \
				saxh[j % TG_LANES] += (double)a * xh;                   \
			}                                                               \
			T ma = (T)(tg_sum_lanes(sa) / (double)d);                       \
			T maxh = (T)(tg_sum_lanes(saxh) / (double)d);                   \
			for (size_t j = 0; j < d; j++) {                                \
				T xh = XHAT(X[j], mean[i], lo[i], inv_std[i]);          \
				DX[j] = inv_std[i] * (DOUT[j] * G[j] - ma - xh * maxh); \
			}                                                               \
		}                                                                       \
	}                                                                               \
                                                                                        \
	/* sums += the column sums over the rows [i0, i1) of dout (D), then of dout    \
	 * * xhat (D); columns [j0, j1), each taking the rows in order */              \
	TG_HOT_LOOP_WIDE                                                                \
	static void row_sums_##sfx(const T *DOUT, const T *X, const T *st, size_t r,    \
				   size_t i0, size_t i1, size_t d, size_t j0, size_t j1, \
				   double *sums)                                        \
	{                                                                               \
		const T *mean = st, *inv_std = st + r, *lo = st + 2 * r;                \
		for (size_t i = i0; i < i1; i++)                                        \
			for (size_t j = j0; j < j1; j++) {                              \
				T dy = DOUT[i * d + j];                                 \
				T xh = XHAT(X[i * d + j], mean[i], lo[i], inv_std[i]);  \
				sums[j] += dy;                                          \
				sums[d + j] += (double)dy * xh;                         \
			}                                                               \
	}

LAYER_NORM_KERNELS(double, f64)
LAYER_NORM_KERNELS(float, f32)

/* Layer norm's passes for split (n = R rows of d): rows, and for the
 * backward's sums blocks of rows. */

static void ln_rows(const tg_ctx *ctx, tg_range_fn fn, norm_job *j)
{
	split(ctx, j->n, j->d, 1, fn, j);
}

static void ln_stats_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	if (j->f64)
		row_stats_f64(j->x, j->n, lo, hi, j->d, j->eps, j->st);
	else
		row_stats_f32(j->x, j->n, lo, hi, j->d, j->eps, j->st);
}

/* The rows a pass that reads a block of x twice takes at a time: about
 * 16 KB of x (and as much of dout), which the second reading finds in the
 * cache; one row at least. */
static size_t block_rows(const norm_job *j)
{
	size_t b = 16384 / ((j->f64 ? sizeof(double) : sizeof(float)) * j->d);
	return b ? b : 1;
}

/* The forward pass of rows [lo, hi): each block's statistics, then its y. */
static void ln_forward_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	for (size_t b = block_rows(j), i = lo; i < hi; i += b) {
		size_t e = hi - i < b ? hi : i + b;
		ln_stats_part(arg, i, e);
		if (j->f64)
			row_forward_f64(j->x, j->st, j->g, j->b, j->n, i, e, j->d, j->y);
		else
			row_forward_f32(j->x, j->st, j->g, j->b, j->n, i, e, j->d, j->y);
	}
}

static void ln_dx_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	if (j->f64)
		row_dx_f64(j->dout, j->x, j->st, j->g, j->n, lo, hi, j->d, j->y);
	else
		row_dx_f32(j->dout, j->x, j->st, j->g, j->n, lo, hi, j->d, j->y);
}

/* sums (2 D doubles) += the rows [i0, i1) */
static void ln_sums_rows(const norm_job *j, size_t i0, size_t i1, double *sums)
{
	if (j->f64)
		row_sums_f64(j->dout, j->x, j->st, j->n, i0, i1, j->d, 0, j->d, sums);
	else
		row_sums_f32(j->dout, j->x, j->st, j->n, i0, i1, j->d, 0, j->d, sums);
}

/* The blocks [lo, hi): of each, dx (unless y is NULL) and the partial sums
 * into acc, sub-block by sub-block: a sub-block's dx, then its rows added
 * to the sums while they are in the cache. */
static void ln_blocks_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	for (size_t k = lo; k < hi; k++) {
		size_t i0 = k * j->block, i1 = j->n - i0 < j->block ? j->n : i0 + j->block;
		double *sums = j->acc + k * 2 * j->d;
		memset(sums, 0, 2 * j->d * sizeof *sums);
		for (size_t b = block_rows(j), i = i0; i < i1; i += b) {
			size_t e = i1 - i < b ? i1 : i + b;
			if (j->y)
				ln_dx_part((void *)j, i, e);
			ln_sums_rows(j, i, e, sums);
		}
	}
}

/* the sums of the columns [lo, hi) over every row, in order */
static void ln_sums_part(void *arg, size_t lo, size_t hi)
{
	const norm_job *j = arg;
	memset(j->sums + lo, 0, (hi - lo) * sizeof *j->sums);
	memset(j->sums + j->d + lo, 0, (hi - lo) * sizeof *j->sums);
	if (j->f64)
		row_sums_f64(j->dout, j->x, j->st, j->n, 0, j->n, j->d, lo, hi, j->sums);
	else
		row_sums_f32(j->dout, j->x, j->st, j->n, 0, j->n, j->d, lo, hi, j->sums);
}

/* dx into y (unless it is NULL) and the column sums into sums, block by
 * block across ctx's threads; false after recording a failed allocation.
 * Rows too few for two blocks are one, in one pass where dx and the sums
 * would each take one thread; else, (16,100000), dx split by rows and the
 * sums by columns, each column over every row in order, as one block
 * takes them. */
static bool ln_dx_sums(tg_ctx *ctx, norm_job *j)
{
	j->block = sum_block(j->n, j->d);
	size_t nb = (j->n + j->block - 1) / j->block;
	if (nb <= 1 && tg_parallel_parts(ctx, j->n, part_min(j->d)) == 1 &&
	    tg_parallel_parts(ctx, j->d, part_min(j->n)) == 1) {
		j->acc = j->sums;
		ln_blocks_part(j, 0, 1);
		return true;
	}
	if (nb <= 1) {
		if (j->y)
			ln_rows(ctx, ln_dx_part, j);
		split(ctx, j->d, j->n, column_align(j), ln_sums_part, j);
		return true;
	}
	return block_sums(ctx, j, nb, ln_blocks_part);
}

/* ---- checking arguments and the statistics ---------------------------------------------- */

/* x has a last axis (D), each of cols is (D), eps as eps_ok; else records why.
 * names[i] names cols[i] in the message. */
static bool row_shapes_ok(tg_ctx *ctx, const char *who, const tg_tensor *x, int ncols,
			  tg_tensor *const *cols, const char *const *names, double eps)
{
	char xs[TG_SHAPE_STR], cs[TG_SHAPE_STR];
	if (x->ndim < 1) {
		tg_fail(ctx, TG_ESHAPE, "%s: x is a scalar (); it needs a last axis to normalise",
			who);
		return false;
	}
	int64_t d = x->shape[x->ndim - 1];
	for (int i = 0; i < ncols; i++)
		if (cols[i]->ndim != 1 || cols[i]->shape[0] != d) {
			tg_fail(ctx, TG_ESHAPE, "%s: x %s: %s %s must be (%lld,), x's last axis",
				who, tg_shape_fmt(x->ndim, x->shape, xs), names[i],
				tg_shape_fmt(cols[i]->ndim, cols[i]->shape, cs), (long long)d);
			return false;
		}
	return eps_ok(ctx, who, x, eps);
}

/* x's rows R and their length D */
static size_t row_len(const tg_tensor *x) { return (size_t)x->shape[x->ndim - 1]; }
static size_t row_count(const tg_tensor *x) { return x->numel / row_len(x); }

/* The statistics of x's rows (mean, then inv_std: 2 R values of its dtype)
 * in the step arena, or NULL. */
static void *row_statistics(tg_ctx *ctx, const tg_tensor *x, double eps)
{
	size_t r = row_count(x), d = row_len(x);
	void *st = tg_arena_alloc(ctx, 3 * r * tg_dtype_size(x->dtype));
	if (!st)
		return NULL;
	norm_job j = { .f64 = x->dtype == TG_F64, .x = x->data, .st = st, .n = r, .d = d,
		       .eps = eps };
	ln_rows(ctx, ln_stats_part, &j);
	return st;
}

/* xhat = (x - mean) * inv_std along the last axis made of ops, so that it
 * carries x's history; *inv_std (..., 1) likewise. */
static tg_tensor *normalized_rows(tg_tensor *x, double eps, tg_tensor **inv_std)
{
	return normalized_along(x, -1, true, eps, inv_std);
}

static tg_tensor *row_sum(tg_tensor *x) { return tg_sum_axis(x, -1, true); }

/* x (..., D) summed over every axis but the last: gamma's and beta's gradients. */
static tg_tensor *to_columns(tg_tensor *x, const tg_tensor *gamma)
{
	return tg_sum_to(x, 1, gamma->shape);
}

/* ---- layer_norm_backward: dx = inv_std (a - mean(a) - xhat mean(a xhat)), a = dout gamma - */
/* Per row, with P = I - 1 1^T / D - xhat xhat^T / D (symmetric), dx =
 * inv_std P(a). With g the gradient of dx and h = inv_std P(g), that is
 * layer_norm_backward(g, x, 1): d dout = gamma h, d gamma = sum over the rows
 * of dout h, and for x, with sums over each row:
 *	-(inv_std / D) (xhat sum(g dx) + dx sum(g xhat) + h sum(dout gamma xhat)). */

static const tg_op layer_norm_backward_op;

/* The column sums of dout and of dout xhat (2 D doubles into sums), with
 * the statistics st of x: beta's and gamma's gradients, in the blocks
 * row_backward_dx takes them in, so that they have its bits; false after
 * recording a failed allocation. */
static bool row_column_sums(const tg_tensor *dout, const tg_tensor *x, const void *st,
			    double *sums)
{
	norm_job j = { .f64 = x->dtype == TG_F64, .x = x->data, .dout = dout->data,
		       .st = (void *)st, .sums = sums, .n = row_count(x), .d = row_len(x) };
	return ln_dx_sums(x->ctx, &j);
}

/* dx from the statistics st of x, recorded as a layer_norm_backward node;
 * the column sums into sums on the way, unless it is NULL, in the same
 * pass (ln_dx_sums). */
static tg_tensor *row_backward_dx(const char *who, tg_tensor *dout, tg_tensor *x,
				  tg_tensor *gamma, double eps, const void *st, double *sums)
{
	size_t r = row_count(x), d = row_len(x);
	tg_tensor *dx = tg_tensor_like(x, who);
	if (!dx)
		return NULL;
	norm_job j = { .f64 = x->dtype == TG_F64, .x = x->data, .dout = dout->data,
		       .g = gamma->data, .st = (void *)st, .y = dx->data, .sums = sums,
		       .n = r, .d = d };
	if (!sums)
		ln_rows(x->ctx, ln_dx_part, &j);
	else if (!ln_dx_sums(x->ctx, &j))
		return NULL;
	tg_tensor *in[3] = { dout, x, gamma };
	return tg_op_end(&layer_norm_backward_op, dx, 3, in, &eps, 1, NULL);
}

tg_tensor *tg_layer_norm_backward(tg_tensor *dout, tg_tensor *x, tg_tensor *gamma, double eps)
{
	static const char who[] = "tg_layer_norm_backward";
	tg_tensor *in[3] = { dout, x, gamma };
	tg_ctx *ctx = tg_op_begin(who, 3, in);
	if (!ctx || !row_shapes_ok(ctx, who, x, 1, &gamma, (const char *[]){ "gamma" }, eps))
		return NULL;
	if (!tg_same_shape(dout, x)) {
		char ds[TG_SHAPE_STR], xs[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: dout %s and x %s must have the same shape",
			       who, tg_shape_fmt(dout->ndim, dout->shape, ds),
			       tg_shape_fmt(x->ndim, x->shape, xs));
	}
	void *st = row_statistics(ctx, x, eps);
	return st ? row_backward_dx(who, dout, x, gamma, eps, st, NULL) : NULL;
}

static void layer_norm_backward_backward(tg_node *n, tg_tensor *g)
{
	tg_tensor *dout = tg_node_input(n, 0), *x = tg_node_input(n, 1);
	tg_tensor *gamma = tg_node_input(n, 2), *dx = tg_node_output(n);
	double eps = tg_node_attr(n, 0);
	tg_tensor *one = tg_ones(x->ctx, x->dtype, 1, gamma->shape);
	tg_tensor *h = tg_layer_norm_backward(g, x, one, eps);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_mul(h, gamma));
	if (tg_node_needs_grad(n, 1)) {
		tg_tensor *inv_std;
		tg_tensor *xh = normalized_rows(x, eps, &inv_std);
		tg_tensor *t = tg_add(tg_add(tg_mul(xh, row_sum(tg_mul(g, dx))),
					     tg_mul(dx, row_sum(tg_mul(g, xh)))),
				      tg_mul(h, row_sum(tg_mul(tg_mul(dout, gamma), xh))));
		double c = -1.0 / (double)row_len(x);
		tg_node_grad(n, 1, tg_mul(t, tg_mul_scalar(inv_std, c)));
	}
	if (tg_node_needs_grad(n, 2))
		tg_node_grad(n, 2, to_columns(tg_mul(dout, h), gamma));
}

static const tg_op layer_norm_backward_op = { .name = "layer_norm_backward", .backward = layer_norm_backward_backward };
TG_OP_REGISTER(layer_norm_backward_op);

/* ---- layer_norm: y = (x - mean) / sqrt(var + eps) * gamma + beta, each row --------------- */
/* dx = layer_norm_backward(dout, x, gamma), dgamma = sum(dout xhat), dbeta =
 * sum(dout), both over the rows. A plain backward takes the two sums from one
 * kernel; a recorded one (TG_CREATE_GRAPH) makes them from ops, so that they
 * carry history. The node keeps the statistics (aux). */

static void layer_norm_backward(tg_node *n, tg_tensor *dout)
{
	static const char who[] = "layer_norm's backward";
	tg_tensor *x = tg_node_input(n, 0), *gamma = tg_node_input(n, 1);
	double eps = tg_node_attr(n, 0);
	tg_ctx *ctx = x->ctx;
	/* gamma's and beta's gradients in a plain backward: the column sums */
	bool sum = !ctx->grad_enabled && (tg_node_needs_grad(n, 1) || tg_node_needs_grad(n, 2));
	double *sums = sum ? tg_arena_alloc(ctx, 2 * row_len(x) * sizeof *sums) : NULL;
	if (sum && !sums)
		return;
	if (tg_node_needs_grad(n, 0))
		TG_NODE_GRAD_INTO(n, 0, row_backward_dx(who, dout, x, gamma, eps, n->aux, sums));
	else if (sum && !row_column_sums(dout, x, n->aux, sums))
		return;
	if (ctx->grad_enabled) {
		if (tg_node_needs_grad(n, 1)) {
			tg_tensor *inv_std;
			tg_tensor *xh = normalized_rows(x, eps, &inv_std);
			tg_node_grad(n, 1, to_columns(tg_mul(dout, xh), gamma));
		}
		if (tg_node_needs_grad(n, 2))
			tg_node_grad(n, 2, to_columns(dout, gamma));
		return;
	}
	if (!sum || !tg_ok(ctx))
		return;
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, tg_from_f64(ctx, x->dtype, 1, gamma->shape, sums + row_len(x)));
	if (tg_node_needs_grad(n, 2))
		tg_node_grad(n, 2, tg_from_f64(ctx, x->dtype, 1, gamma->shape, sums));
}

static const tg_op layer_norm_op = { .name = "layer_norm", .backward = layer_norm_backward };
TG_OP_REGISTER(layer_norm_op);

tg_tensor *tg_layer_norm(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps)
{
	static const char who[] = "tg_layer_norm";
	tg_tensor *in[3] = { x, gamma, beta };
	if ((!gamma || !beta) && tg_tensor_check(who, x) && tg_ok(x->ctx))
		return tg_fail(x->ctx, TG_ENULL,
			       "%s: %s is NULL; gamma and beta are both required (ones and "
			       "zeros for a plain normalisation)",
			       who, gamma ? "beta" : "gamma");
	tg_ctx *ctx = tg_op_begin(who, 3, in);
	if (!ctx ||
	    !row_shapes_ok(ctx, who, x, 2, in + 1, (const char *[]){ "gamma", "beta" }, eps))
		return NULL;
	size_t r = row_count(x), d = row_len(x);
	void *st = tg_arena_alloc(ctx, 3 * r * tg_dtype_size(x->dtype));
	tg_tensor *y = st ? tg_tensor_like(x, who) : NULL;
	if (!y)
		return NULL;
	norm_job j = { .f64 = x->dtype == TG_F64, .x = x->data, .g = gamma->data,
		       .b = beta->data, .st = st, .y = y->data, .n = r, .d = d, .eps = eps };
	ln_rows(ctx, ln_forward_part, &j);
	return tg_op_end(&layer_norm_op, y, 3, in, &eps, 1, st);
}
