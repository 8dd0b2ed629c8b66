/*
 * conv_depthwise.c - conv2d's three kernels for depthwise convolutions
 * (groups G = C, O = m C output channels), computed directly on the NCHW
 * planes. Output channel o reads input channel o / m alone through its
 * KH x KW weights, so each plane of out is a small stencil over one plane
 * of x: im2col would copy every input KH KW times to feed GEMMs of m rows,
 * and oneDNN reorders the planes into its blocked layouts and back. Here
 * each (image, channel) plane is one loop nest whose innermost loop runs
 * along a row, over the output columns whose input column lies inside the
 * image (the borders are cut off before it, so it has no branch and
 * vectorises). The planes are split across the context's threads; each
 * plane, and each channel of the weight gradient, is summed in one fixed
 * order, so the bits do not depend on the thread count. conv.c asks here
 * first (conv_depthwise.h); nothing here allocates outside the step arena.
 * Shape legend: x (N,C,H,W), w (O,1,KH,KW), out (N,O,OH,OW); K = KH KW.
 */
#include "conv_depthwise.h"
#include "hot_loop.h"
#include "internal.h"
#include "parallel.h"

#include <string.h>

typedef tg_conv_geom geom; /* conv_dnnl.h */

/* Each plane is first copied into a zero-bordered one (rows Wp apart),
 * so that every kernel position of every output reads inside it: the loops
 * below have no borders, and the padding is multiplied by the weights as
 * im2col does (0 x inf = NaN where PyTorch gives it). Outputs go V at a
 * time: V running sums stay in registers across the KH x KW taps (the
 * fixed loop over v vectorises); the last OW % V outputs of a row go one
 * at a time. The strides 1 and 2 are compiled apart, so that the compiler
 * sees them. */
enum { V64 = 4, V32 = 8, NW = 4 };

/* dst (Rb,Sb) = src (R,S) moved down by top and right by left (negative
 * values crop), zero where src has nothing. */
static void pad_plane(size_t size, const char *src, int64_t R, int64_t S, char *dst,
		      int64_t Rb, int64_t Sb, int64_t top, int64_t left)
{
	int64_t a = left > 0 ? left : 0, b = left + S < Sb ? left + S : Sb;
	if (b < a)
		b = a;
	for (int64_t i = 0; i < Rb; i++) {
		char *d = dst + (size_t)(i * Sb) * size;
		int64_t si = i - top;
		if (si < 0 || si >= R || a == b) {
			memset(d, 0, (size_t)Sb * size);
			continue;
		}
		memset(d, 0, (size_t)a * size);
		memcpy(d + (size_t)a * size, src + (size_t)(si * S + a - left) * size,
		       (size_t)(b - a) * size);
		memset(d + (size_t)b * size, 0, (size_t)(Sb - b) * size);
	}
}

/* V lanes of T: GCC's vectors (32 bytes, one AVX2 register or two SSE
 * ones), lane by lane with the same roundings under AddressSanitizer, whose
 * fake stack frames do not keep the alignment of vector locals (as
 * TG_MAX_LANES, engine/internal.h). */
#if defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define LANES(T, V, name) typedef T name __attribute__((vector_size((V) * sizeof(T))))
#define LANE(a, v) (a)[v]
#define MUL_ADD(acc, c, t, V) ((acc) += (c) * (t))
#define MUL_ADD_LANES(acc, a, b, V) ((acc) += (a) * (b))
#else
#define LANES(T, V, name) typedef struct { T e[V]; } name
#define LANE(a, v) (a).e[v]
#define MUL_ADD(acc, c, t, V)                                                               \
	for (int v_ = 0; v_ < (V); v_++)                                                    \
	LANE(acc, v_) += (c) * LANE(t, v_)
#define MUL_ADD_LANES(acc, a, b, V)                                                         \
	for (int v_ = 0; v_ < (V); v_++)                                                    \
	LANE(acc, v_) += LANE(a, v_) * LANE(b, v_)
#endif
/* dst = p[0], p[SW], ... p[(V-1) SW] */
#define LOAD(dst, p, SW, V)                                                                 \
	do {                                                                                \
		if ((SW) == 1)                                                              \
			memcpy(&(dst), (p), sizeof(dst));                                   \
		else                                                                        \
			for (int v_ = 0; v_ < (V); v_++)                                    \
				LANE(dst, v_) = (p)[v_ * (SW)];                             \
	} while (0)

/* y (OH,OW) = b (or y itself when add) + the KH x KW stencil w over xp,
 * whose rows are Wp apart: y[oh,ow] += w[kh,kw] xp[oh sh + kh dh, ow sw +
 * kw dw], taps in order. */
#define FORWARD_BLOCK(T, V, SW, NB)                                                         \
	for (; ow + (NB) * V <= OW; ow += (NB) * V) {                                       \
		lanes acc[NB], t;                                                           \
		for (int u = 0; u < (NB); u++) {                                            \
			if (add)                                                            \
				memcpy(&acc[u], r + ow + u * V, sizeof acc[u]);             \
			else                                                                \
				for (int v = 0; v < V; v++)                                 \
					LANE(acc[u], v) = b;                                \
		}                                                                           \
		for (int64_t kh = 0; kh < KH; kh++) {                                       \
			const T *restrict xr = x0 + kh * dh * Wp + ow * (SW);               \
			for (int64_t kw = 0; kw < KW; kw++) {                               \
				const T c = w[kh * KW + kw];                                \
				for (int u = 0; u < (NB); u++) {                            \
					LOAD(t, xr + kw * dw + u * V * (SW), SW, V);        \
					MUL_ADD(acc[u], c, t, V);                           \
				}                                                           \
			}                                                                   \
		}                                                                           \
		for (int u = 0; u < (NB); u++)                                              \
			memcpy(r + ow + u * V, &acc[u], sizeof acc[u]);                     \
	}

/* Four blocks of V side by side where they fit, so that the taps' adds
 * run in four chains, then two, then one; then the last columns. */
#define FORWARD_AT(T, V, SW)                                                                \
	for (int64_t oh = 0; oh < OH; oh++) {                                               \
		T *restrict r = y + oh * OW;                                                \
		const T *restrict x0 = xp + oh * sh * Wp;                                   \
		int64_t ow = 0;                                                             \
		FORWARD_BLOCK(T, V, SW, 4)                                                  \
		FORWARD_BLOCK(T, V, SW, 2)                                                  \
		FORWARD_BLOCK(T, V, SW, 1)                                                  \
		for (; ow < OW; ow++) {                                                     \
			T acc = add ? r[ow] : b;                                            \
			for (int64_t kh = 0; kh < KH; kh++)                                 \
				for (int64_t kw = 0; kw < KW; kw++)                         \
					acc += w[kh * KW + kw] *                            \
					       x0[kh * dh * Wp + ow * (SW) + kw * dw];      \
			r[ow] = acc;                                                        \
		}                                                                           \
	}

#define FORWARD_PLANE(name, T, V)                                                           \
	TG_HOT_LOOP static void name(const geom *g, int64_t OH, int64_t OW, int64_t sh,      \
				     int64_t sw, const T *restrict xp, int64_t Wp,           \
				     const T *restrict w, T b, bool add, T *restrict y)      \
	{                                                                                   \
		int64_t KH = g->KH, KW = g->KW, dh = g->dh, dw = g->dw;                    \
		LANES(T, V, lanes);                                                         \
		if (sw == 1)                                                                \
			FORWARD_AT(T, V, 1)                                                 \
		else if (sw == 2)                                                           \
			FORWARD_AT(T, V, 2)                                                 \
		else                                                                        \
			FORWARD_AT(T, V, sw)                                                \
	}

/* xp (rows Wp apart) += the transposed stencil of w over d (OH,OW): each
 * output adds w[kh,kw] d[oh,ow] back where the forward pass read it. The
 * input gradient at strides above 1. */
#define SCATTER_AT(T, SW)                                                                   \
	for (int64_t oh = 0; oh < g->OH; oh++) {                                            \
		const T *restrict r = d + oh * OW;                                          \
		for (int64_t kh = 0; kh < KH; kh++) {                                       \
			T *restrict xr = xp + (oh * g->sh + kh * g->dh) * Wp;               \
			for (int64_t kw = 0; kw < KW; kw++) {                               \
				const T c = w[kh * KW + kw];                                \
				T *restrict xk = xr + kw * g->dw;                           \
				for (int64_t ow = 0; ow < OW; ow++)                         \
					xk[ow * (SW)] += c * r[ow];                         \
			}                                                                   \
		}                                                                           \
	}

#define SCATTER_PLANE(name, T)                                                              \
	TG_HOT_LOOP static void name(const geom *g, const T *restrict d, const T *restrict w, \
				     T *restrict xp, int64_t Wp)                             \
	{                                                                                   \
		int64_t OW = g->OW, KH = g->KH, KW = g->KW;                                \
		if (g->sw == 2)                                                             \
			SCATTER_AT(T, 2)                                                    \
		else                                                                        \
			SCATTER_AT(T, g->sw)                                                \
	}

/* acc (K,NW V) += at each kernel position k = (kh,kw), the products of d
 * (OH,OW) with xp (rows Wp apart) read there: NW vectors of V running
 * sums, which take a row's blocks of V in turn (NW chains of adds), then
 * V more for the row's last OW % V products. */
#define WEIGHT_AT(T, V, SW)                                                                 \
	for (int64_t kh = 0; kh < g->KH; kh++)                                              \
		for (int64_t kw = 0; kw < g->KW; kw++) {                                    \
			T *restrict a = acc + (kh * g->KW + kw) * (NW + 1) * V;             \
			lanes s[NW], dv, xv;                                                \
			memcpy(s, a, sizeof s);                                             \
			for (int64_t oh = 0; oh < g->OH; oh++) {                            \
				const T *restrict r = d + oh * OW;                          \
				const T *restrict xr =                                      \
					xp + (oh * g->sh + kh * g->dh) * Wp + kw * g->dw;   \
				int64_t ow = 0;                                             \
				for (; ow + NW * V <= OW; ow += NW * V)                     \
					for (int u = 0; u < NW; u++) {                      \
						memcpy(&dv, r + ow + u * V, sizeof dv);     \
						LOAD(xv, xr + (ow + u * V) * (SW), SW, V);  \
						MUL_ADD_LANES(s[u], dv, xv, V);             \
					}                                                   \
				for (int u = 0; ow + V <= OW; ow += V, u++) {               \
					memcpy(&dv, r + ow, sizeof dv);                     \
					LOAD(xv, xr + ow * (SW), SW, V);                    \
					MUL_ADD_LANES(s[u], dv, xv, V);                     \
				}                                                           \
				for (int v = 0; ow < OW; ow++, v++)                         \
					a[NW * V + v] += r[ow] * xr[ow * (SW)];             \
			}                                                                   \
			memcpy(a, s, sizeof s);                                             \
		}

#define WEIGHT_PLANE(name, T, V)                                                            \
	TG_HOT_LOOP static void name(const geom *g, const T *restrict xp, int64_t Wp,        \
				     const T *restrict d, T *restrict acc)                   \
	{                                                                                   \
		int64_t OW = g->OW;                                                        \
		LANES(T, V, lanes);                                                         \
		if (g->sw == 1)                                                             \
			WEIGHT_AT(T, V, 1)                                                  \
		else if (g->sw == 2)                                                        \
			WEIGHT_AT(T, V, 2)                                                  \
		else                                                                        \
			WEIGHT_AT(T, V, g->sw)                                              \
	}

FORWARD_PLANE(forward_f64, double, V64)
FORWARD_PLANE(forward_f32, float, V32)
SCATTER_PLANE(scatter_f64, double)
SCATTER_PLANE(scatter_f32, float)
WEIGHT_PLANE(weight_f64, double, V64)
WEIGHT_PLANE(weight_f32, float, V32)

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
	int64_t per;      /* the scratch of one run: a bordered plane, then the sums */
	int64_t Hp, Wp;   /* the bordered plane */
} dw_job;

static void forward_one(const dw_job *j, const char *xp, int64_t p)
{
	const geom *g = j->g;
	size_t size = tg_dtype_size(j->dt);
	int64_t o = p % g->O, K = g->KH * g->KW, L = g->OH * g->OW;
	const char *w = j->b + (size_t)(o * K) * size;
	char *y = j->y + (size_t)(p * L) * size;
	if (j->dt == TG_F64)
		forward_f64(g, g->OH, g->OW, g->sh, g->sw, (const double *)xp, j->Wp,
			    (const double *)w, j->bias ? ((const double *)j->bias)[o] : 0, false,
			    (double *)y);
	else
		forward_f32(g, g->OH, g->OW, g->sh, g->sw, (const float *)xp, j->Wp,
			    (const float *)w, j->bias ? ((const float *)j->bias)[o] : 0, false,
			    (float *)y);
}

/* Output planes p = (n, o): the bordered input plane of (n, o / m) is made
 * once for its m output planes. */
static void forward_run(const dw_job *j, char *xp, int64_t lo, int64_t hi)
{
	const geom *g = j->g;
	size_t size = tg_dtype_size(j->dt);
	int64_t m = g->O / g->C, HW = g->H * g->W, made = -1;
	for (int64_t p = lo; p < hi; p++) {
		int64_t in = p / g->O * g->C + p % g->O / m; /* (n, c) */
		if (in != made)
			pad_plane(size, j->a + (size_t)(in * HW) * size, g->H, g->W, xp, j->Hp,
				  j->Wp, g->ph, g->pw);
		made = in;
		forward_one(j, xp, p);
	}
}

/* Input planes p = (n, c) of dx, from the m output planes of channel c. At
 * stride 1 this is the forward stencil of the turned kernel over dout
 * bordered by dh (KH-1) - ph rows (dw (KW-1) - pw columns); at larger
 * strides each output adds back into a bordered plane, then cut out. */
static void input_grad_run(const dw_job *j, char *xp, int64_t lo, int64_t hi)
{
	const geom *g = j->g;
	size_t size = tg_dtype_size(j->dt);
	int64_t m = g->O / g->C, K = g->KH * g->KW, L = g->OH * g->OW, HW = g->H * g->W;
	bool unit = g->sh == 1 && g->sw == 1;
	for (int64_t p = lo; p < hi; p++) {
		int64_t c = p % g->C;
		char *dx = j->y + (size_t)(p * HW) * size;
		if (!unit)
			memset(xp, 0, (size_t)(j->Hp * j->Wp) * size);
		for (int64_t i = 0; i < m; i++) {
			const char *d = j->a + (size_t)((p * m + i) * L) * size;
			const char *w = (unit ? j->wf : j->b) + (size_t)((c * m + i) * K) * size;
			if (unit) {
				pad_plane(size, d, g->OH, g->OW, xp, j->Hp, j->Wp,
					  g->dh * (g->KH - 1) - g->ph, g->dw * (g->KW - 1) - g->pw);
				if (j->dt == TG_F64)
					forward_f64(g, g->H, g->W, 1, 1, (const double *)xp, j->Wp,
						    (const double *)w, 0, i > 0, (double *)dx);
				else
					forward_f32(g, g->H, g->W, 1, 1, (const float *)xp, j->Wp,
						    (const float *)w, 0, i > 0, (float *)dx);
			} else if (j->dt == TG_F64) {
				scatter_f64(g, (const double *)d, (const double *)w, (double *)xp,
					    j->Wp);
			} else {
				scatter_f32(g, (const float *)d, (const float *)w, (float *)xp, j->Wp);
			}
		}
		if (!unit) /* dx = the plane inside the border */
			pad_plane(size, xp, j->Hp, j->Wp, dx, g->H, g->W, -g->ph, -g->pw);
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
 * in order into V lanes each, which are then added in one fixed tree. */
static void weight_grad_run(const dw_job *j, char *xp, int64_t lo, int64_t hi)
{
	const geom *g = j->g;
	size_t size = tg_dtype_size(j->dt);
	int64_t m = g->O / g->C, K = g->KH * g->KW, L = g->OH * g->OW, HW = g->H * g->W;
	int V = (NW + 1) * (j->dt == TG_F64 ? V64 : V32);
	char *acc = xp + (size_t)(j->Hp * j->Wp) * size; /* (m,K,V) */
	for (int64_t c = lo; c < hi; c++) {
		memset(acc, 0, (size_t)(m * K * V) * size);
		for (int64_t n = 0; n < g->N; n++) {
			pad_plane(size, j->a + (size_t)((n * g->C + c) * HW) * size, g->H, g->W, xp,
				  j->Hp, j->Wp, g->ph, g->pw);
			for (int64_t i = 0; i < m; i++) {
				const char *d = j->b + (size_t)((n * g->O + c * m + i) * L) * size;
				char *a = acc + (size_t)(i * K * V) * size;
				if (j->dt == TG_F64)
					weight_f64(g, (const double *)xp, j->Wp, (const double *)d,
						   (double *)a);
				else
					weight_f32(g, (const float *)xp, j->Wp, (const float *)d,
						   (float *)a);
			}
		}
		for (int64_t k = 0; k < m * K; k++) {
			char *dw = j->y + (size_t)(c * m * K + k) * size;
			if (j->dt == TG_F64) {
				*(double *)dw = fold_f64((double *)acc + k * V, V);
			} else {
				*(float *)dw = fold_f32((float *)acc + k * V, V);
			}
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

/* The sides of the bordered plane of one kind, each at most MAX_SIDE, and
 * their product at most MAX_PLANE elements; false for a larger border
 * (padding far past the kernel), which im2col takes. */
enum { MAX_SIDE = 1 << 16, MAX_PLANE = 1 << 20 };

static bool bordered(tg_conv_kernel kind, const geom *g, int64_t *Hp, int64_t *Wp)
{
	if (kind == TG_CONV_INPUT_GRAD && g->sh == 1 && g->sw == 1) {
		*Hp = g->H + g->dh * (g->KH - 1);
		*Wp = g->W + g->dw * (g->KW - 1);
	} else {
		*Hp = g->H + 2 * g->ph;
		*Wp = g->W + 2 * g->pw;
	}
	return *Hp <= MAX_SIDE && *Wp <= MAX_SIDE && *Hp * *Wp <= MAX_PLANE;
}

/* Work below this many products runs on the calling thread alone: a split
 * costs about as much as a small elementwise loop. */
enum { PAR_PRODUCTS = 32768, MAX_RUNS = 16 };

tg_conv_done tg_conv_depthwise(tg_ctx *ctx, tg_conv_kernel kind, const geom *g,
			       const tg_tensor *a, const tg_tensor *b, const void *bias, void *y)
{
	dw_job j = { .g = g, .dt = a->dtype, .kind = kind, .a = a->data, .b = b->data,
		     .bias = bias, .y = y };
	if (g->G != g->C || g->N < 1 || ctx->conv_im2col || !bordered(kind, g, &j.Hp, &j.Wp))
		return TG_CONV_DECLINED;
#ifdef TG_HAVE_DNNL
	/* oneDNN's f32 weight gradient is faster (s-convdw: 0.55 ms against
	 * 1.0 ms here over x (16,64,32,32), one thread) */
	if (kind == TG_CONV_WEIGHT_GRAD && j.dt == TG_F32)
		return TG_CONV_DECLINED;
#endif
	int64_t m = g->O / g->C, K = g->KH * g->KW;
	bool unit = g->sh == 1 && g->sw == 1;
	/* the turned kernel reads the border of dout: 0 x inf would be NaN
	 * there, which im2col's input gradient never computes */
	if (kind == TG_CONV_INPUT_GRAD && unit && !all_finite(b))
		return TG_CONV_DECLINED;
	j.units = kind == TG_CONV_FORWARD ? g->N * g->O : kind == TG_CONV_INPUT_GRAD ? g->N * g->C
										     : g->C;
	j.per = j.Hp * j.Wp + (kind == TG_CONV_WEIGHT_GRAD ? m * K * (NW + 1) * (j.dt == TG_F64 ? V64 : V32)
							   : 0);
	int64_t T = ctx->threads < MAX_RUNS ? ctx->threads : MAX_RUNS;
	T = T < j.units ? T : j.units;
	if (g->N * g->O * g->OH * g->OW * K < PAR_PRODUCTS || T < 1)
		T = 1;
	j.T = (int)T;
	j.scratch = tg_arena_array(ctx, "conv2d: depthwise planes", j.dt, T, j.per, 1);
	if (!j.scratch)
		return TG_CONV_FAILED;
	if (kind == TG_CONV_INPUT_GRAD && unit) {
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
