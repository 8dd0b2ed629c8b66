/*
 * conv_depthwise.c - conv2d's three kernels for depthwise convolutions
 * (groups G = C, O = m C output channels), computed directly on the NCHW
 * planes. Output channel o reads input channel o / m alone through its
 * KH x KW weights, so each plane of out is a small stencil over one plane
 * of x: im2col would copy every input KH KW times to feed GEMMs of m rows,
 * and oneDNN reorders the planes into its blocked layouts and back. Here
 * each (image, channel) plane is copied into a zero-bordered one and run
 * as a stencil whose innermost loops are plain vector loads and sums with
 * no branch. The planes are split across the context's threads; each
 * plane, and each channel of the weight gradient, is summed in one fixed
 * order, so the bits do not depend on the thread count. conv.c asks here
 * first (conv_depthwise.h), for what runs faster here (faster_here);
 * nothing here allocates outside the step arena.
 * Shape legend: x (N,C,H,W), w (O,1,KH,KW), out (N,O,OH,OW); K = KH KW.
 */
#include "conv_depthwise.h"
#include "hot_loop.h"
#include "internal.h"
#include "parallel.h"

#include <string.h>

/* GCC 12 at -O3 takes FORWARD_BLOCK's accumulators, each set by SPLAT
 * before any use, for uninitialised in the AVX2 clone: a false warning. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

typedef tg_conv_geom geom; /* conv_dnnl.h */

/* Each plane is first copied into a zero-bordered one, so that every
 * kernel position of every output reads inside it: the loops below have no
 * borders, and the padding is multiplied by the weights as im2col does
 * (0 x inf = NaN where PyTorch gives it). At a horizontal stride s the
 * bordered row (Wp columns) is kept as s phases of Wq = ceil(Wp / s)
 * columns, column c at (c % s) Wq + c / s, rows Wr = s Wq apart: the
 * columns ow s + off that one kernel column reads for consecutive ow are
 * then consecutive, and every load is a plain vector load. Outputs go V at
 * a time, their V running sums in registers across the taps. */
enum { V64 = 4, V32 = 8, NW = 4 };

/* dst (Rb rows Wr apart, in s phases of Wq) = src (R,S) moved down by top
 * and right by left (negative values crop). Where src has nothing, dst is
 * zeroed when zero is set and left as it was otherwise: a border zeroed
 * once stays zero while planes of the same sizes are copied into it. The
 * rows are short: plain loops, kept from being turned into calls of memcpy
 * (TG_NO_CALLS), which cost more than the copy. */
#define PAD_PLANE(name, T)                                                                  \
	TG_HOT_LOOP TG_NO_CALLS static void name(const T *restrict src, int64_t R, int64_t S,   \
				  T *restrict dst, int64_t Rb, int64_t Sb, int64_t top,      \
				  int64_t left, int64_t s, int64_t Wq, bool zero)            \
	{                                                                                   \
		int64_t a = left > 0 ? left : 0, b = left + S < Sb ? left + S : Sb;        \
		int64_t i0 = top > 0 ? top : 0, i1 = top + R < Rb ? top + R : Rb;           \
		int64_t am = a % s, ad = a / s; /* the divisions, once */                  \
		if (zero)                                                                   \
			memset(dst, 0, (size_t)(Rb * s * Wq) * sizeof(T));                  \
		for (int64_t i = i0; i < i1; i++) {                                         \
			T *restrict d = dst + i * s * Wq;                                   \
			const T *restrict r = src + (i - top) * S - left;                   \
			if (s == 1)                                                         \
				for (int64_t k = a; k < b; k++)                             \
					d[k] = r[k];                                        \
			else if (s == 2) /* the same with the stride seen */                \
				for (int64_t f = 0; f < 2; f++) {                           \
					int64_t e = f - am < 0 ? f - am + 2 : f - am, k = a + e; \
					T *restrict q = d + f * Wq + ad + (am + e >= 2);    \
					for (int64_t n = (b - k + 1) / 2, i = 0; i < n; i++) \
						q[i] = r[k + 2 * i];                        \
				}                                                           \
			else /* phase f: the columns a + e, e + s, ... with k % s = f */    \
				for (int64_t f = 0; f < s; f++) {                           \
					int64_t e = f - am < 0 ? f - am + s : f - am, k = a + e; \
					T *restrict q = d + f * Wq + ad + (am + e >= s);    \
					for (; k < b; k += s)                               \
						*q++ = r[k];                                \
				}                                                           \
		}                                                                           \
	}
PAD_PLANE(pad_f64, double)
PAD_PLANE(pad_f32, float)

static void pad_plane(size_t size, const void *src, int64_t R, int64_t S, void *dst,
		      int64_t Rb, int64_t Sb, int64_t top, int64_t left, int64_t s, int64_t Wq,
		      bool zero)
{
	if (size == 8)
		pad_f64(src, R, S, dst, Rb, Sb, top, left, s, Wq, zero);
	else
		pad_f32(src, R, S, dst, Rb, Sb, top, left, s, Wq, zero);
}

/* V lanes of T: GCC's vectors (32 bytes, one AVX2 register or two SSE
 * ones; 64 bytes in the wide stencils, one AVX-512 register), lane by
 * lane with the same roundings under AddressSanitizer, whose fake stack
 * frames do not keep the alignment of vector locals (as TG_MAX_LANES,
 * engine/internal.h). Without FMA either way. */
#if defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define LANES(T, V, name) typedef T name __attribute__((vector_size((V) * sizeof(T))))
#define LANE(a, v) (a)[v]
#define SPLAT(acc, b, V) ((acc) = (b) - (__typeof__(acc)){ 0 })
#define MUL_ADD(acc, c, t, V) ((acc) += (c) * (t))
#define MUL_ADD_LANES(acc, a, b, V) ((acc) += (a) * (b))
#else
#define LANES(T, V, name) typedef struct { T e[V]; } name
#define LANE(a, v) (a).e[v]
#define SPLAT(acc, b, V)                                                                    \
	for (int v_ = 0; v_ < (V); v_++)                                                    \
	LANE(acc, v_) = (b)
#define MUL_ADD(acc, c, t, V)                                                               \
	for (int v_ = 0; v_ < (V); v_++)                                                    \
	LANE(acc, v_) += (c) * LANE(t, v_)
#define MUL_ADD_LANES(acc, a, b, V)                                                         \
	for (int v_ = 0; v_ < (V); v_++)                                                    \
	LANE(acc, v_) += LANE(a, v_) * LANE(b, v_)
#endif

/* y (OH,OW) = b + the KH x KW stencils w (np,KH,KW) over the np bordered
 * planes xp, Pp elements apart, rows Wr apart, kernel column kw at cols[kw]
 * along a row (the phases above):
 * y[oh,ow] = b + the sum over j, kh, kw of w[j,kh,kw] x[j, oh sh + kh dh,
 * ow sw + kw dw], in that order. Every output is that same sum whichever
 * block computes it, so the last block of a row may overlap the one before. */
#define FORWARD_BLOCK(T, V, NR, NB)                                                         \
	for (; ow + (NB) * V <= OW; ow += (NB) * V) {                                       \
		lanes acc[NR][NB], t;                                                       \
		for (int q = 0; q < (NR); q++)                                              \
			for (int u = 0; u < (NB); u++)                                      \
				SPLAT(acc[q][u], b, V);                                     \
		for (int64_t j = 0; j < np; j++)                                            \
			for (int64_t kh = 0; kh < KH; kh++) {                               \
				const T *restrict xr = x0 + j * Pp + kh * dh * Wr + ow;     \
				const T *wr = w + (j * KH + kh) * KW;                       \
				for (int64_t kw = 0; kw < KW; kw++) {                       \
					const T c = wr[kw];                                 \
					const T *restrict xk = xr + cols[kw];               \
					for (int q = 0; q < (NR); q++)                      \
						for (int u = 0; u < (NB); u++) {            \
							const T *xq = xk + q * sh * Wr;     \
							memcpy(&t, xq + u * V, sizeof t);   \
							MUL_ADD(acc[q][u], c, t, V);        \
						}                                           \
				}                                                           \
			}                                                                   \
		for (int q = 0; q < (NR); q++)                                              \
			for (int u = 0; u < (NB); u++)                                      \
				memcpy(r + q * OW + ow + u * V, &acc[q][u], sizeof acc[q][u]); \
	}

/* Rows [oh, oh + NR) of y: blocks of four vectors side by side where they
 * fit, then two, then one, then one more that ends at the row's end; rows
 * shorter than V go one output at a time. */
#define FORWARD_ROWS(T, V, NR)                                                              \
	{                                                                                   \
		T *restrict r = y + oh * OW;                                                \
		const T *restrict x0 = xp + oh * sh * Wr;                                   \
		int64_t ow = 0;                                                             \
		FORWARD_BLOCK(T, V, NR, 4)                                                  \
		FORWARD_BLOCK(T, V, NR, 2)                                                  \
		FORWARD_BLOCK(T, V, NR, 1)                                                  \
		if (ow < OW && OW >= V) {                                                   \
			ow = OW - V;                                                        \
			FORWARD_BLOCK(T, V, NR, 1)                                          \
		}                                                                           \
		for (; ow < OW; ow++)                                                       \
			for (int q = 0; q < (NR); q++) {                                    \
				T acc = b;                                                  \
				for (int64_t j = 0; j < np; j++)                            \
					for (int64_t kh = 0; kh < KH; kh++) {               \
						const T *xr = x0 + j * Pp + (q * sh + kh * dh) * Wr + ow; \
						for (int64_t kw = 0; kw < KW; kw++)         \
							acc += w[(j * KH + kh) * KW + kw] * \
							       xr[cols[kw]];                \
					}                                                   \
				r[q * OW + ow] = acc;                                       \
			}                                                                   \
	}

/* Four chains of adds in flight: blocks of one row by four vectors, two
 * rows by two or four rows by one, as the rows are long. */
#define FORWARD_PLANE(name, T, V, HOT)                                                      \
	HOT static void name(const geom *g, int64_t OH, int64_t OW, int64_t sh,              \
				     int64_t np, const T *restrict xp, int64_t Pp, int64_t Wr, \
				     const int64_t *cols, const T *restrict w, T b,          \
				     T *restrict y)                                          \
	{                                                                                   \
		int64_t KH = g->KH, KW = g->KW, dh = g->dh, oh = 0;                        \
		LANES(T, V, lanes);                                                         \
		if (OW < 2 * V)                                                             \
			for (; oh + 4 <= OH; oh += 4)                                       \
				FORWARD_ROWS(T, V, 4)                                       \
		if (OW < 4 * V)                                                             \
			for (; oh + 2 <= OH; oh += 2)                                       \
				FORWARD_ROWS(T, V, 2)                                       \
		for (; oh < OH; oh++)                                                       \
			FORWARD_ROWS(T, V, 1)                                               \
	}

/* acc (K,(NW+1) V) += at each kernel position k = (kh,kw) the products of
 * d (OH,OW) with the bordered plane xp (rows Wr apart, kernel column kw at
 * cols[kw]) read there: NW vectors of V running sums, which take a row's
 * blocks of V in turn (NW chains of adds), then V more for the row's last
 * OW % V products. */
#define WEIGHT_PLANE(name, T, V)                                                            \
	TG_HOT_LOOP static void name(const geom *g, int64_t OH, int64_t OW,                  \
				     const T *restrict xp, int64_t Wr, const int64_t *cols,  \
				     const T *restrict d, T *restrict acc)                   \
	{                                                                                   \
		LANES(T, V, lanes);                                                         \
		for (int64_t kh = 0; kh < g->KH; kh++)                                      \
			for (int64_t kw = 0; kw < g->KW; kw++) {                            \
				T *restrict a = acc + (kh * g->KW + kw) * (NW + 1) * V;     \
				lanes s[NW], dv, xv;                                        \
				memcpy(s, a, sizeof s);                                     \
				for (int64_t oh = 0; oh < OH; oh++) {                       \
					const T *restrict r = d + oh * OW;                  \
					const T *restrict xr =                              \
						xp + (oh * g->sh + kh * g->dh) * Wr + cols[kw]; \
					int64_t ow = 0;                                     \
					for (; ow + NW * V <= OW; ow += NW * V)             \
						for (int u = 0; u < NW; u++) {              \
							memcpy(&dv, r + ow + u * V, sizeof dv); \
							memcpy(&xv, xr + ow + u * V, sizeof xv); \
							MUL_ADD_LANES(s[u], dv, xv, V);     \
						}                                           \
					for (int u = 0; ow + V <= OW; ow += V, u++) {       \
						memcpy(&dv, r + ow, sizeof dv);             \
						memcpy(&xv, xr + ow, sizeof xv);            \
						MUL_ADD_LANES(s[u], dv, xv, V);             \
					}                                                   \
					for (int v = 0; ow < OW; ow++, v++)                 \
						a[NW * V + v] += r[ow] * xr[ow];            \
				}                                                           \
				memcpy(a, s, sizeof s);                                     \
			}                                                                   \
	}

FORWARD_PLANE(stencil_f64, double, V64, TG_HOT_LOOP)
FORWARD_PLANE(stencil_f32, float, V32, TG_HOT_LOOP)
FORWARD_PLANE(stencil_wide_f64, double, 2 * V64, TG_HOT_LOOP_WIDE)
FORWARD_PLANE(stencil_wide_f32, float, 2 * V32, TG_HOT_LOOP_WIDE)
WEIGHT_PLANE(weight_f64, double, V64)
WEIGHT_PLANE(weight_f32, float, V32)

/* FORWARD_PLANE's stencil over elements of size bytes, with bias[o] (0
 * without a bias). Rows of four of its vectors or more (OW >= 32 floats,
 * 16 doubles) take vectors twice as wide where the CPU has AVX-512, one
 * zmm register each (rows of 32 floats: two of them on each of two rows).
 * Every output is the same sum in the same order at any width, so the
 * bits are those of the narrow vectors. One thread, minima of three runs,
 * forward and input gradient: 3x3 over x (16,64,32,32) 516 and 529 ->
 * 455 and 446 us in f32, 927 and 986 -> 678 and 666 in f64; 5x5 over
 * (8,16,64,64) 452 and 457 -> 373 and 371 in f32, 890 and 921 -> 674 and
 * 669 in f64; 3x3 over (32,32,16,16) in f64 266 and 266 -> 187 and 190.
 * Shorter rows keep the narrow vectors, which a wide one would leave to
 * the scalar tail. */
static void stencil(size_t size, const geom *g, int64_t OH, int64_t OW, int64_t sh,
		    int64_t np, const void *xp, int64_t Pp, int64_t Wr, const int64_t *cols,
		    const void *w, const void *bias, int64_t o, void *y)
{
#if defined(__x86_64__) && defined(__GNUC__)
	const bool wide = OW >= 4 * (size == 8 ? V64 : V32) && __builtin_cpu_supports("avx512f");
#else
	const bool wide = false;
#endif
	if (size == 8)
		(wide ? stencil_wide_f64 : stencil_f64)(g, OH, OW, sh, np, xp, Pp, Wr, cols, w,
							bias ? ((const double *)bias)[o] : 0, y);
	else
		(wide ? stencil_wide_f32 : stencil_f32)(g, OH, OW, sh, np, xp, Pp, Wr, cols, w,
							bias ? ((const float *)bias)[o] : 0, y);
}

/* ---- the planes split across the context's threads ---------------------------------- */

/* What the three kernels read and write. The units (output planes (n,o)
 * for the forward pass, input planes (n,c) for the input gradient,
 * channels c for the weight gradient) are cut into T runs of consecutive
 * units, run t with its own scratch; a unit's result never depends on the
 * run it falls in. */
typedef struct dw_job {
	const geom *g;
	tg_dtype dt;
	tg_conv_kernel kind;
	int T;
	int64_t units;
	const char *a;    /* x (forward, weight grad) or dout (input grad) */
	const char *b;    /* w (forward, input grad) or dout (weight grad) */
	const char *bias; /* forward: (O) or NULL */
	const char *wf;   /* input grad at stride 1: w with each kernel turned 180 degrees */
	char *y;          /* out (N,O,OH,OW), dx (N,C,H,W) or dw (O,1,KH,KW) */
	char *scratch;    /* T runs of per elements */
	int64_t per;      /* the scratch of one run: bordered planes, then the sums */
	int64_t Hp, Wp;   /* the bordered plane, its columns */
	int64_t s, Wq;    /* its phases and their columns: rows s Wq apart */
	const int64_t *cols; /* (KW): where kernel column kw reads along a row */
	bool flat;        /* weight grad: the rows of a plane run as one (below) */
} dw_job;

/* Output planes p = (n, o): the bordered input plane of (n, o / m) is made
 * once for its m output planes. */
static void forward_run(const dw_job *j, char *xp, int64_t lo, int64_t hi)
{
	const geom *g = j->g;
	size_t size = tg_dtype_size(j->dt);
	int64_t m = g->O / g->C, K = g->KH * g->KW, L = g->OH * g->OW, HW = g->H * g->W;
	int64_t made = -1, Wr = j->s * j->Wq;
	for (int64_t p = lo; p < hi; p++) {
		int64_t o = p % g->O, in = p / g->O * g->C + o / m; /* (n, c) */
		if (in != made)
			pad_plane(size, j->a + (size_t)(in * HW) * size, g->H, g->W, xp, j->Hp,
				  j->Wp, g->ph, g->pw, j->s, j->Wq, made < 0);
		made = in;
		const char *w = j->b + (size_t)(o * K) * size;
		char *y = j->y + (size_t)(p * L) * size;
		stencil(size, g, g->OH, g->OW, g->sh, 1, xp, 0, Wr, j->cols, w, j->bias, o, y);
	}
}

/* Input planes p = (n, c) of dx, from the m output planes of channel c, at
 * stride 1: the forward stencil of the turned kernels over the m planes of
 * dout, each bordered by dh (KH-1) - ph rows and dw (KW-1) - pw columns
 * (cut where the padding is larger). */
static void input_grad_run(const dw_job *j, char *xp, int64_t lo, int64_t hi)
{
	const geom *g = j->g;
	size_t size = tg_dtype_size(j->dt);
	int64_t m = g->O / g->C, K = g->KH * g->KW, L = g->OH * g->OW, HW = g->H * g->W;
	int64_t P = j->Hp * j->Wp;
	for (int64_t p = lo; p < hi; p++) {
		int64_t c = p % g->C;
		char *dx = j->y + (size_t)(p * HW) * size;
		const char *d = j->a + (size_t)(p * m * L) * size; /* (m,OH,OW) */
		for (int64_t i = 0; i < m; i++)
			pad_plane(size, d + (size_t)(i * L) * size, g->OH, g->OW,
				  xp + (size_t)(i * P) * size, j->Hp, j->Wp,
				  g->dh * (g->KH - 1) - g->ph, g->dw * (g->KW - 1) - g->pw, 1,
				  j->Wp, p == lo);
		const char *w = j->wf + (size_t)(c * m * K) * size;
		stencil(size, g, g->H, g->W, 1, m, xp, P, j->Wp, j->cols, w, NULL, 0, dx);
	}
}

/* The sum of a[0..n), n >= 1, in one fixed tree: the top half onto the
 * bottom, again and again. */
#define FOLD(name, T)                                                                       \
	static T name(T *a, int n)                                                          \
	{                                                                                   \
		while (n > 1) {                                                             \
			int h = (n + 1) / 2;                                                \
			for (int v = 0; v < n - h; v++)                                     \
				a[v] += a[v + h];                                           \
			n = h;                                                              \
		}                                                                           \
		return a[0];                                                                \
	}
FOLD(fold_f64, double)
FOLD(fold_f32, float)

/* Channels c of dw: the m output channels of each, summed over the images
 * in order into lanes, which are then added in one fixed tree. When flat,
 * each plane of dout is first copied with its rows Wr apart, as those of
 * the bordered x are, and its products run as one long row per kernel
 * position; the zeros between its rows meet x's own columns, which is why
 * flat needs x finite. */
static void weight_grad_run(const dw_job *j, char *xp, int64_t lo, int64_t hi)
{
	const geom *g = j->g;
	size_t size = tg_dtype_size(j->dt);
	int64_t m = g->O / g->C, K = g->KH * g->KW, L = g->OH * g->OW, HW = g->H * g->W;
	int64_t Wr = j->s * j->Wq, P = j->Hp * Wr;
	int V = (NW + 1) * (j->dt == TG_F64 ? V64 : V32);
	char *dp = xp + (size_t)P * size;  /* flat: a plane of dout, rows Wr apart */
	char *acc = dp + (size_t)P * size; /* (m,K,V) */
	int64_t OH = j->flat ? 1 : g->OH, OW = j->flat ? (g->OH - 1) * Wr + g->OW : g->OW;
	for (int64_t c = lo; c < hi; c++) {
		memset(acc, 0, (size_t)(m * K * V) * size);
		for (int64_t n = 0; n < g->N; n++) {
			bool first = c == lo && n == 0;
			pad_plane(size, j->a + (size_t)((n * g->C + c) * HW) * size, g->H, g->W, xp,
				  j->Hp, j->Wp, g->ph, g->pw, j->s, j->Wq, first);
			for (int64_t i = 0; i < m; i++) {
				const char *d = j->b + (size_t)((n * g->O + c * m + i) * L) * size;
				char *a = acc + (size_t)(i * K * V) * size;
				if (j->flat) {
					pad_plane(size, d, g->OH, g->OW, dp, g->OH, Wr, 0, 0, 1, Wr,
						  first && i == 0);
					d = dp;
				}
				if (j->dt == TG_F64)
					weight_f64(g, OH, OW, (const double *)xp, Wr, j->cols,
						   (const double *)d, (double *)a);
				else
					weight_f32(g, OH, OW, (const float *)xp, Wr, j->cols,
						   (const float *)d, (float *)a);
			}
		}
		for (int64_t k = 0; k < m * K; k++) {
			char *dw = j->y + (size_t)(c * m * K + k) * size;
			if (j->dt == TG_F64)
				*(double *)dw = fold_f64((double *)acc + k * V, V);
			else
				*(float *)dw = fold_f32((float *)acc + k * V, V);
		}
	}
}

static void run_part(void *arg, size_t lo, size_t hi)
{
	const dw_job *j = arg;
	size_t size = tg_dtype_size(j->dt);
	for (size_t t = lo; t < hi; t++) {
		char *xp = j->scratch + (size_t)((int64_t)t * j->per) * size;
		int64_t a = j->units * (int64_t)t / j->T, b = j->units * (int64_t)(t + 1) / j->T;
		if (j->kind == TG_CONV_FORWARD)
			forward_run(j, xp, a, b);
		else if (j->kind == TG_CONV_INPUT_GRAD)
			input_grad_run(j, xp, a, b);
		else
			weight_grad_run(j, xp, a, b);
	}
}

/* ---- when to run here ----------------------------------------------------------------- */

/* Whether no element of t is a NaN or inf (an OR over the exponent bits,
 * which vectorises). */
static bool all_finite(const tg_tensor *t)
{
	if (tg_known_finite(t))
		return true;
	uint64_t bad = 0;
	if (t->dtype == TG_F64) {
		const uint64_t *v = t->data, e = 0x7ff0000000000000u;
		for (size_t i = 0; i < t->numel; i++)
			bad |= (v[i] & e) == e;
	} else {
		const uint32_t *v = t->data, e = 0x7f800000u;
		for (size_t i = 0; i < t->numel; i++)
			bad |= (v[i] & e) == e;
	}
	return !bad;
}

/* The bordered plane of one kind: its rows, columns and phases (above),
 * each side at most MAX_SIDE and the plane at most MAX_PLANE elements;
 * false for a larger border (padding far past the kernel), which im2col
 * takes. */
enum { MAX_SIDE = 1 << 16, MAX_PLANE = 1 << 20 };

static bool bordered(tg_conv_kernel kind, const geom *g, dw_job *j)
{
	j->s = g->sw;
	if (kind == TG_CONV_INPUT_GRAD) { /* at stride 1 (faster_here) */
		j->s = 1;
		j->Hp = g->H + g->dh * (g->KH - 1);
		j->Wp = j->Wq = g->W + g->dw * (g->KW - 1);
		return j->Hp <= MAX_SIDE && j->Wp <= MAX_SIDE && j->Hp * j->Wp <= MAX_PLANE;
	}
	j->Hp = g->H + 2 * g->ph;
	j->Wp = g->W + 2 * g->pw;
	if (j->Hp > MAX_SIDE || j->Wp > MAX_SIDE || j->s > MAX_SIDE)
		return false;
	j->Wq = (j->Wp + j->s - 1) / j->s;
	return j->Hp * j->s * j->Wq <= MAX_PLANE;
}

/* Past MAX_M output channels per input channel (a convolution of one
 * channel into many, say), the GEMMs of oneDNN and im2col are faster. */
enum { MAX_M = 4 };

/* Where these kernels beat the others (one thread, 3x3 kernels, x as
 * (N,C,H,W), microseconds here against there):
 * - the gradients at strides above 1, which would add into a bordered
 *   plane or read rows in phases, were slower than im2col in f64 (x
 *   (32,128,16,16), stride 2: input grad 3070 against 1860, weight grad
 *   1850 against 1350);
 * - oneDNN's f32 kernels are faster but for its reorders, which cost more
 *   than its sums on planes of 32x32 and more (x (16,64,32,32): forward 580
 *   against 900, input grad 570 against 940) but not on smaller ones (x
 *   (32,32,16,16): forward 150 against 100); its f32 weight gradient is
 *   faster at 3x3 (550 against 1100; ops_bench s-convdw 3.3 ms with it,
 *   3.6 ms without) but not past it (5x5: 2040 against 20250 over
 *   (16,64,32,32), 690 against 5800 over (32,32,16,16)).
 * In f64, the forward pass at any stride and the gradients at stride 1
 * run here (x (16,64,32,32): 1070, 1080 and 1760 against im2col's 4820,
 * 5440 and 6220; the forward at stride 2 over (32,128,16,16): 800
 * against 1330). */
enum { DNNL_MIN_PLANE = 32 * 32 };

static bool faster_here(tg_conv_kernel kind, const geom *g, tg_dtype dt)
{
	if (kind != TG_CONV_FORWARD && (g->sh > 1 || g->sw > 1))
		return false;
#ifdef TG_HAVE_DNNL
	if (dt == TG_F32)
		return g->sh == 1 && g->sw == 1 &&
		       (kind == TG_CONV_WEIGHT_GRAD ? g->KH * g->KW > 9
						    : g->OH * g->OW >= DNNL_MIN_PLANE);
#else
	(void)dt;
#endif
	return true;
}

/* Work below this many products runs on the calling thread alone: a split
 * costs about as much as a small elementwise loop. */
enum { PAR_PRODUCTS = 32768, MAX_RUNS = 16 };

tg_conv_done tg_conv_depthwise(tg_ctx *ctx, tg_conv_kernel kind, const geom *g,
			       const tg_tensor *a, const tg_tensor *b, const void *bias, void *y)
{
	dw_job j = { .g = g, .dt = a->dtype, .kind = kind, .a = a->data, .b = b->data,
		     .bias = bias, .y = y };
	if (g->G != g->C || g->N < 1 || g->O / g->C > MAX_M || ctx->conv == TG_CONV_IM2COL ||
	    !faster_here(kind, g, j.dt) || !bordered(kind, g, &j))
		return TG_CONV_DECLINED;
	int64_t m = g->O / g->C, K = g->KH * g->KW, P = j.Hp * j.s * j.Wq;
	/* the turned kernel reads the border of dout: 0 x inf would be NaN
	 * there, which im2col's input gradient never computes */
	if (kind == TG_CONV_INPUT_GRAD && !all_finite(b))
		return TG_CONV_DECLINED;
	j.units = kind == TG_CONV_FORWARD ? g->N * g->O : kind == TG_CONV_INPUT_GRAD ? g->N * g->C
										     : g->C;
	/* a bordered plane (m of them for the stencil of the input gradient;
	 * the weight gradient's copy of dout and its sums after it) */
	j.per = P * (kind == TG_CONV_INPUT_GRAD ? m : 1);
	if (kind == TG_CONV_WEIGHT_GRAD)
		j.per += P + m * K * (NW + 1) * (j.dt == TG_F64 ? V64 : V32);
	j.flat = kind == TG_CONV_WEIGHT_GRAD && all_finite(a);
	int64_t T = ctx->threads < MAX_RUNS ? ctx->threads : MAX_RUNS;
	T = T < j.units ? T : j.units;
	if (g->N * g->O * g->OH * g->OW * K < PAR_PRODUCTS || T < 1)
		T = 1;
	j.T = (int)T;
	j.scratch = tg_arena_array(ctx, "conv2d: depthwise planes", j.dt, T, j.per, 1);
	int64_t *cols = tg_arena_array(ctx, "conv2d: depthwise columns", TG_I64, g->KW, 1, 1);
	if (!j.scratch || !cols)
		return TG_CONV_FAILED;
	for (int64_t kw = 0; kw < g->KW; kw++)
		cols[kw] = kw * g->dw % j.s * j.Wq + kw * g->dw / j.s;
	j.cols = cols;
	if (kind == TG_CONV_INPUT_GRAD) {
		size_t size = tg_dtype_size(j.dt);
		char *wf = tg_arena_array(ctx, "conv2d: depthwise kernels", j.dt, g->O, K, 1);
		if (!wf)
			return TG_CONV_FAILED;
		for (int64_t o = 0; o < g->O; o++)
			for (int64_t k = 0; k < K; k++)
				memcpy(wf + (size_t)(o * K + k) * size,
				       j.b + (size_t)(o * K + K - 1 - k) * size, size);
		j.wf = wf;
	}
	if (T == 1)
		run_part(&j, 0, 1);
	else
		tg_parallel_for(ctx, (size_t)T, 1, 1, run_part, &j);
	return TG_CONV_COMPUTED;
}
