/*
 * conv.c - convolution and pooling of NCHW images: conv2d and its two
 * gradient ops, conv2d_relu (the relu made in conv2d's output),
 * max_pool2d and avg_pool2d and their adjoints.
 *
 * conv2d is cross-correlation as in PyTorch, computed the book's way: im2col
 * copies the receptive fields of an image (one group of its channels) into
 * the columns of a buffer in the step arena, and a BLAS GEMM does the sums;
 * col2im adds columns back for the input gradient. An image with enough
 * output positions is one GEMM that writes the NCHW output in place, and the
 * images are split across the context's threads; small images go a batch
 * at a time, one GEMM per batch and group. The three conv ops are linear in each input and each one's
 * gradient is written with the others, so every rule differentiates again
 * (TG_CREATE_GRAPH); the pools' pairs are each other's adjoint. No loop here
 * allocates outside the step arena. In f32 the three conv kernels ask
 * ops/conv_dnnl.c first, which runs oneDNN's direct kernels when the build
 * has libdnnl and the context was not made with TG_CONV=im2col; im2col is
 * the path of f64 and of whatever oneDNN declines. Depthwise convolutions
 * (groups = C) ask ops/conv_depthwise.c before either, in both dtypes.
 * Shape legend: x (N,C,H,W), w (O,CG,KH,KW), out (N,O,OH,OW); G groups, CG =
 * C/G and OG = O/G channels per group, L = OH*OW positions, K = CG*KH*KW.
 */
#include "conv_depthwise.h"
#include "conv_dnnl.h"
#include "fused.h"
#include "internal.h"
#include "parallel.h"

#include <limits.h>
#include <math.h>
#include <string.h>

typedef tg_conv_geom geom; /* conv_dnnl.h */

/* PyTorch's output size: floor((n + 2p - d(k-1) - 1) / s) + 1; <= 0 when the
 * dilated kernel is larger than the padded input. */
static int64_t out_size(int64_t n, int64_t k, int64_t s, int64_t p, int64_t d)
{
	int64_t span = n + 2 * p - d * (k - 1) - 1;
	return span < 0 ? 0 : span / s + 1;
}

static int geom_describe(const geom *g, bool conv, char *buf, size_t size)
{
	if (!conv)
		return snprintf(buf, size, "kernel %lldx%lld, stride %lldx%lld, padding %lldx%lld",
				(long long)g->KH, (long long)g->KW, (long long)g->sh,
				(long long)g->sw, (long long)g->ph, (long long)g->pw);
	return snprintf(buf, size,
			"stride %lldx%lld, padding %lldx%lld, dilation %lldx%lld, groups %lld",
			(long long)g->sh, (long long)g->sw, (long long)g->ph, (long long)g->pw,
			(long long)g->dh, (long long)g->dw, (long long)g->G);
}

/* ---- im2col and col2im ------------------------------------------------------------- */

/* The output columns [lo, hi) whose input column ow*s + off lies in [0, W). */
static void span(int64_t OW, int64_t s, int64_t off, int64_t W, int64_t *lo, int64_t *hi)
{
	int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
	int64_t b = W - off <= 0 ? 0 : (W - off + s - 1) / s;
	*lo = a < OW ? a : OW;
	*hi = b < OW ? b : OW;
	if (*hi < *lo)
		*hi = *lo;
}

/* col (K, L), rows ld apart, = the receptive fields of x (CG,H,W), one
 * column per output position; positions in the padding read 0. The copy
 * of one output row is a plain loop the compiler vectorises at stride 1;
 * TG_NO_CALLS keeps GCC from turning it back into a memcpy call, which
 * costs more than the copy of a few dozen bytes. */
#define IM2COL(name, T)                                                                    \
	TG_NO_CALLS static void name(const geom *g, const T *restrict x, T *restrict col, int64_t ld) \
	{                                                                                  \
		int64_t CG = g->C / g->G, OW = g->OW, sw = g->sw;                          \
		for (int64_t c = 0; c < CG; c++)                                           \
			for (int64_t kh = 0; kh < g->KH; kh++)                             \
				for (int64_t kw = 0; kw < g->KW; kw++) {                   \
					T *row = col + ((c * g->KH + kh) * g->KW + kw) * ld; \
					int64_t off = kw * g->dw - g->pw, lo, hi;          \
					span(OW, sw, off, g->W, &lo, &hi);                 \
					for (int64_t oh = 0; oh < g->OH; oh++) {           \
						T *restrict r = row + oh * OW;             \
						int64_t ih = oh * g->sh - g->ph + kh * g->dh; \
						if (ih < 0 || ih >= g->H) {                \
							for (int64_t ow = 0; ow < OW; ow++) \
								r[ow] = 0;                 \
							continue;                          \
						}                                          \
						const T *restrict xr = x + (c * g->H + ih) * g->W + off; \
						for (int64_t ow = 0; ow < lo; ow++)        \
							r[ow] = 0;                         \
						if (sw == 1)                               \
							for (int64_t ow = lo; ow < hi; ow++) \
								r[ow] = xr[ow];            \
						else                                       \
							for (int64_t ow = lo; ow < hi; ow++) \
								r[ow] = xr[ow * sw];       \
						for (int64_t ow = hi; ow < OW; ow++)       \
							r[ow] = 0;                         \
					}                                                  \
				}                                                          \
	}

/* x (CG,H,W) += each column of col (K, L), rows ld apart, added back where
 * it was read. */
#define COL2IM(name, T)                                                                    \
	static void name(const geom *g, const T *restrict col, T *restrict x, int64_t ld) \
	{                                                                                  \
		int64_t CG = g->C / g->G, OW = g->OW, sw = g->sw;                          \
		for (int64_t c = 0; c < CG; c++)                                           \
			for (int64_t kh = 0; kh < g->KH; kh++)                             \
				for (int64_t kw = 0; kw < g->KW; kw++) {                   \
					const T *row = col + ((c * g->KH + kh) * g->KW + kw) * ld; \
					int64_t off = kw * g->dw - g->pw, lo, hi;          \
					span(OW, sw, off, g->W, &lo, &hi);                 \
					for (int64_t oh = 0; oh < g->OH; oh++) {           \
						int64_t ih = oh * g->sh - g->ph + kh * g->dh; \
						if (ih < 0 || ih >= g->H)                  \
							continue;                          \
						const T *restrict r = row + oh * OW;       \
						T *restrict xr = x + (c * g->H + ih) * g->W + off; \
						if (sw == 1)                               \
							for (int64_t ow = lo; ow < hi; ow++) \
								xr[ow] += r[ow];           \
						else                                       \
							for (int64_t ow = lo; ow < hi; ow++) \
								xr[ow * sw] += r[ow];      \
					}                                                  \
				}                                                          \
	}

IM2COL(im2col_f64, double)
IM2COL(im2col_f32, float)
COL2IM(col2im_f64, double)
COL2IM(col2im_f32, float)

/* Images are taken a batch of B at a time: the columns of B images side by
 * side, col (K, B*L), feed one GEMM per batch and group. B is as large as
 * keeps col within COL_ELEMS elements (one image at the least). */
enum { COL_ELEMS = 1 << 22 }; /* 16 MiB of f32: 2 images of 1x400x400 at 3x3 */

static int64_t batch_of(const geom *g)
{
	int64_t per = g->C / g->G * g->KH * g->KW * g->OH * g->OW;
	int64_t B = per > 0 ? COL_ELEMS / per : g->N;
	B = B < 1 ? 1 : B;
	return B < g->N ? B : g->N;
}

/* col (K, B*L) for images [n0, n0 + B) of group grp of x. */
static void im2col(const geom *g, tg_dtype dt, const void *x, int64_t n0, int64_t B,
		   int64_t grp, void *col)
{
	int64_t L = g->OH * g->OW, CG = g->C / g->G;
	for (int64_t i = 0; i < B; i++) {
		size_t at = (size_t)(((n0 + i) * g->C + grp * CG) * g->H * g->W);
		if (dt == TG_F64)
			im2col_f64(g, (const double *)x + at, (double *)col + i * L, B * L);
		else
			im2col_f32(g, (const float *)x + at, (float *)col + i * L, B * L);
	}
}

/* Images [n0, n0 + B) of group grp of x += the columns of col (K, B*L). */
static void col2im(const geom *g, tg_dtype dt, const void *col, int64_t n0, int64_t B,
		   int64_t grp, void *x)
{
	int64_t L = g->OH * g->OW, CG = g->C / g->G;
	for (int64_t i = 0; i < B; i++) {
		size_t at = (size_t)(((n0 + i) * g->C + grp * CG) * g->H * g->W);
		if (dt == TG_F64)
			col2im_f64(g, (const double *)col + i * L, (double *)x + at, B * L);
		else
			col2im_f32(g, (const float *)col + i * L, (float *)x + at, B * L);
	}
}

/* Between an image batch's channels of group grp in t (N,O,L) and rows
 * (OG, B*L) side by side: pack copies t into rows, unpack rows into t. */
static void pack(const geom *g, size_t size, const void *t, int64_t n0, int64_t B,
		 int64_t grp, void *rows, bool unpack)
{
	int64_t L = g->OH * g->OW, OG = g->O / g->G;
	for (int64_t o = 0; o < OG; o++)
		for (int64_t i = 0; i < B; i++) {
			char *r = (char *)rows + (size_t)((o * B + i) * L) * size;
			char *at = (char *)t + (size_t)(((n0 + i) * g->O + grp * OG + o) * L) * size;
			if (unpack)
				memcpy(at, r, (size_t)L * size);
			else
				memcpy(r, at, (size_t)L * size);
		}
}

/* C (M,N) = op(A) (M,K) @ op(B) (K,N) + beta C, row-major; split across
 * ctx's threads when large, on the calling thread alone when ctx is NULL. */
static void gemm(const tg_ctx *ctx, tg_dtype dt, bool ta, bool tb, int64_t M, int64_t N,
		 int64_t K, const void *A, int64_t lda, const void *B, int64_t ldb, double beta,
		 void *C, int64_t ldc)
{
	tg_gemm(ctx, dt, ta, tb, (int)M, (int)N, (int)K, A, (int)lda, B, (int)ldb, beta, C,
		(int)ldc);
}

/* The column buffer (K, B*L) and the rows (OG, B*L) of one batch in the
 * step arena; false (ENOMEM recorded) when they do not fit. */
static bool buffers(tg_ctx *ctx, const geom *g, tg_dtype dt, void **col, void **rows)
{
	int64_t K = g->C / g->G * g->KH * g->KW, BL = batch_of(g) * g->OH * g->OW;
	*col = tg_arena_array(ctx, "conv2d: im2col columns", dt, K, BL, 1);
	*rows = *col ? tg_arena_array(ctx, "conv2d: im2col rows", dt, g->O / g->G, BL, 1) : NULL;
	return *rows != NULL;
}

/* ---- one image at a time, split across the context's threads ----------------------- */
/* When an image has PER_IMAGE_L output positions or more, each image and
 * group is its own GEMM that reads and writes the NCHW tensors in place: no
 * copy between the rows (OG, B*L) and (N,O,L), and a column buffer (K, L)
 * of one image that stays in cache. With T threads the images are cut into
 * T runs, one per thread, each with its own column buffer and a
 * single-threaded BLAS, so im2col, col2im and the GEMMs all run in
 * parallel. Below PER_IMAGE_L a GEMM per image would be too thin and the
 * batched path above pays. */
enum { PER_IMAGE_L = 64, MAX_WORKERS = 16 };

static bool per_image(const geom *g)
{
	return g->OH * g->OW >= PER_IMAGE_L;
}

/* A 1x1 kernel at stride 1 without padding: x is its own column buffer. */
static bool direct(const geom *g)
{
	return g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* How many threads work on n items: the context's count, at most n. */
static int workers(const tg_ctx *ctx, int64_t n)
{
	int64_t t = ctx->threads < MAX_WORKERS ? ctx->threads : MAX_WORKERS;
	t = t < n ? t : n;
	return t < 1 ? 1 : (int)t;
}

typedef void (*range_fn)(void *arg, int tid, int64_t lo, int64_t hi);

/* T runs of [0, n), run on the worker pool (engine/parallel.h): run t
 * covers [n t / T, n (t + 1) / T) and owns buffer t, so whichever thread
 * takes it, and in whatever order, every run does the same sums. */
typedef struct runs {
	range_fn fn;
	void *arg;
	int T;
	int64_t n;
} runs;

static void run_part(void *p, size_t lo, size_t hi)
{
	const runs *r = p;
	for (size_t t = lo; t < hi; t++)
		r->fn(r->arg, (int)t, r->n * (int64_t)t / r->T, r->n * (int64_t)(t + 1) / r->T);
}

/* fn over [0, n) cut into T runs, at most T at a time on the pool. */
static void par_for(const tg_ctx *ctx, int T, int64_t n, range_fn fn, void *arg)
{
	runs r = { fn, arg, T, n };
	if (T == 1) {
		run_part(&r, 0, 1);
		return;
	}
	tg_parallel_for(ctx, (size_t)T, 1, 1, run_part, &r);
}

/* What the three per-image kernels read and write. */
typedef struct conv_job {
	const tg_ctx *ctx; /* for the products: NULL when several lanes run them */
	const geom *g;
	tg_dtype dt;
	const char *x;    /* forward and weight grad: images (N,C,H,W) */
	const char *w;    /* forward and input grad: (O,CG,KH,KW) = (O,K) */
	const char *b;    /* forward: (O) or NULL */
	const char *dout; /* the grads: (N,O,OH,OW) */
	char *y;          /* out (N,O,OH,OW), dx (N,C,H,W) or dw (O,K) */
	char *col;        /* T column buffers (K, L) (NULL when direct) */
	char *part;       /* weight grad: T-1 partial sums (O,K) of threads 1.. */
} conv_job;

static void im2col_one(const geom *g, tg_dtype dt, const void *x, void *col, int64_t ld)
{
	if (dt == TG_F64)
		im2col_f64(g, x, col, ld);
	else
		im2col_f32(g, x, col, ld);
}

static void col2im_one(const geom *g, tg_dtype dt, const void *col, void *x, int64_t ld)
{
	if (dt == TG_F64)
		col2im_f64(g, col, x, ld);
	else
		col2im_f32(g, col, x, ld);
}

/* Each of the OG rows (L) of out = b[o]. */
static void fill_bias(tg_dtype dt, const void *b, void *out, int64_t OG, int64_t L)
{
	for (int64_t o = 0; o < OG; o++) {
		if (dt == TG_F64) {
			double v = ((const double *)b)[o], *r = (double *)out + o * L;
			for (int64_t i = 0; i < L; i++)
				r[i] = v;
		} else {
			float v = ((const float *)b)[o], *r = (float *)out + o * L;
			for (int64_t i = 0; i < L; i++)
				r[i] = v;
		}
	}
}

/* out[n, group] (OG, L) = b + w[group] (OG, K) @ col (K, L), images [lo, hi). */
static void forward_images(void *arg, int tid, int64_t lo, int64_t hi)
{
	const conv_job *j = arg;
	const geom *g = j->g;
	size_t size = tg_dtype_size(j->dt);
	int64_t OG = g->O / g->G, CG = g->C / g->G, K = CG * g->KH * g->KW, L = g->OH * g->OW;
	char *col = j->col ? j->col + (size_t)(tid * K * L) * size : NULL;
	for (int64_t n = lo; n < hi; n++)
		for (int64_t grp = 0; grp < g->G; grp++) {
			const char *src = j->x + (size_t)((n * g->C + grp * CG) * g->H * g->W) * size;
			if (col) {
				im2col_one(g, j->dt, src, col, L);
				src = col;
			}
			char *out = j->y + (size_t)((n * g->O + grp * OG) * L) * size;
			if (j->b)
				fill_bias(j->dt, j->b + (size_t)(grp * OG) * size, out, OG, L);
			gemm(j->ctx, j->dt, false, false, OG, L, K,
			     j->w + (size_t)(grp * OG * K) * size, K, src, L, j->b ? 1.0 : 0.0, out, L);
		}
}

/* dx[n, group] = col2im(w[group]^T (K, OG) @ dout[n, group] (OG, L)). */
static void input_grad_images(void *arg, int tid, int64_t lo, int64_t hi)
{
	const conv_job *j = arg;
	const geom *g = j->g;
	size_t size = tg_dtype_size(j->dt);
	int64_t OG = g->O / g->G, CG = g->C / g->G, K = CG * g->KH * g->KW, L = g->OH * g->OW;
	char *col = j->col ? j->col + (size_t)(tid * K * L) * size : NULL;
	for (int64_t n = lo; n < hi; n++) {
		char *dx = j->y + (size_t)(n * g->C * g->H * g->W) * size;
		if (col)
			memset(dx, 0, (size_t)(g->C * g->H * g->W) * size);
		for (int64_t grp = 0; grp < g->G; grp++) {
			char *dxg = dx + (size_t)(grp * CG * g->H * g->W) * size;
			const char *d = j->dout + (size_t)((n * g->O + grp * OG) * L) * size;
			gemm(j->ctx, j->dt, true, false, K, L, OG,
			     j->w + (size_t)(grp * OG * K) * size, K, d, L, 0.0, col ? col : dxg, L);
			if (col)
				col2im_one(g, j->dt, col, dxg, L);
		}
	}
}

/* dw[group] (OG, K) = sum over images [lo, hi) of dout[n, group] (OG, L) @
 * col^T (L, K); thread 0 writes dw, the others their partial sums. */
static void weight_grad_images(void *arg, int tid, int64_t lo, int64_t hi)
{
	const conv_job *j = arg;
	const geom *g = j->g;
	size_t size = tg_dtype_size(j->dt);
	int64_t OG = g->O / g->G, CG = g->C / g->G, K = CG * g->KH * g->KW, L = g->OH * g->OW;
	char *col = j->col ? j->col + (size_t)(tid * K * L) * size : NULL;
	char *dw = tid ? j->part + (size_t)((tid - 1) * g->O * K) * size : j->y;
	if (lo == hi)
		memset(dw, 0, (size_t)(g->O * K) * size);
	for (int64_t n = lo; n < hi; n++)
		for (int64_t grp = 0; grp < g->G; grp++) {
			const char *src = j->x + (size_t)((n * g->C + grp * CG) * g->H * g->W) * size;
			if (col) {
				im2col_one(g, j->dt, src, col, L);
				src = col;
			}
			gemm(j->ctx, j->dt, false, true, OG, K, L,
			     j->dout + (size_t)((n * g->O + grp * OG) * L) * size, L, src, L,
			     n > lo ? 1.0 : 0.0, dw + (size_t)(grp * OG * K) * size, K);
		}
}

/* The column buffers of T workers in the step arena (none when direct);
 * false (ENOMEM recorded) when they do not fit. */
static bool image_cols(tg_ctx *ctx, const geom *g, tg_dtype dt, int T, char **col)
{
	int64_t K = g->C / g->G * g->KH * g->KW, L = g->OH * g->OW;
	*col = NULL;
	if (direct(g))
		return true;
	*col = tg_arena_array(ctx, "conv2d: im2col columns", dt, T, K, L);
	return *col != NULL;
}

/* Runs fn over the images of j on T workers. */
static void run_images(tg_ctx *ctx, int T, range_fn fn, conv_job *j)
{
	j->ctx = T == 1 ? ctx : NULL;
	par_for(ctx, T, j->g->N, fn, j);
}

/* ---- conv2d: out[n,o] = b[o] + sum_{c,kh,kw} w[o,c,kh,kw] x[n, c', oh s + kh d - p, ..]
 *      dx = conv2d_input_grad(dout, w), dw = conv2d_weight_grad(x, dout),
 *      db = dout summed over N, OH, OW ------------------------------------------------ */
/* ---- conv2d_input_grad: dx (N,C,H,W) from dout and w, a transposed convolution:
 *      d dout = conv2d(g, w), dw = conv2d_weight_grad(g, dout) ---------------------- */
/* ---- conv2d_weight_grad: dw (O,CG,KH,KW) from x and dout:
 *      dx = conv2d_input_grad(dout, g), d dout = conv2d(x, g) ------------------------- */

static tg_tensor *conv(const geom *g, tg_tensor *x, tg_tensor *w, tg_tensor *b);
static tg_tensor *conv_input_grad(const geom *g, tg_tensor *dout, tg_tensor *w);
static tg_tensor *conv_weight_grad(const geom *g, tg_tensor *x, tg_tensor *dout);

static void conv2d_backward(tg_node *n, tg_tensor *dout)
{
	const geom *g = n->aux;
	tg_tensor *x = tg_node_input(n, 0), *w = tg_node_input(n, 1);
	/* the bias gradient first: all of dout summed, and a finite sum has no
	 * NaN or inf among its terms, which the weight gradient then need not
	 * look for (tg_known_finite) */
	if (n->nin == 3 && tg_node_needs_grad(n, 2)) {
		tg_tensor *db = tg_sum_to(dout, 3, (int64_t[]){ g->O, 1, 1 });
		if (db && !tg_nonfinite(db))
			tg_note_finite(dout);
		tg_node_grad(n, 2, tg_reshape(db, 1, &g->O));
	}
	if (tg_node_needs_grad(n, 0))
		TG_NODE_GRAD_INTO(n, 0, conv_input_grad(g, dout, w));
	if (tg_node_needs_grad(n, 1))
		TG_NODE_GRAD_INTO(n, 1, conv_weight_grad(g, x, dout));
}

static void conv2d_input_grad_backward(tg_node *n, tg_tensor *dx)
{
	const geom *g = n->aux;
	tg_tensor *dout = tg_node_input(n, 0), *w = tg_node_input(n, 1);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, conv(g, dx, w, NULL));
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, conv_weight_grad(g, dx, dout));
}

static void conv2d_weight_grad_backward(tg_node *n, tg_tensor *dw)
{
	const geom *g = n->aux;
	tg_tensor *x = tg_node_input(n, 0), *dout = tg_node_input(n, 1);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, conv_input_grad(g, dout, dw));
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, conv(g, x, dw, NULL));
}

/* "stride 2x2, padding 1x1, dilation 1x1, groups 1" */
static int conv_describe(const tg_node *n, char *buf, size_t size)
{
	return geom_describe(n->aux, true, buf, size);
}

/* conv2d_relu: y = relu(conv2d(x, w, b)), the relu made in the product's
 * output, with the bits of the two ops and one tensor of the output's size
 * instead of two. Its backward is conv2d's for dout [y > 0], relu's mask
 * [x > 0] read from y (tg_relu_backward, recorded under TG_CREATE_GRAPH,
 * whose rule gives y no gradient as relu's gives x none past the mask). */
static void conv2d_relu_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *g = tg_relu_backward(dout, tg_node_output(n));
	if (g)
		conv2d_backward(n, g);
}

static const char *const conv2d_inputs[] = { "x", "w", "b" };
static const char *const input_grad_inputs[] = { "dout", "w" };
static const char *const weight_grad_inputs[] = { "x", "dout" };
static const tg_op conv2d_op = { .name = "conv2d", .backward = conv2d_backward,
				 .inputs = conv2d_inputs, .describe = conv_describe };
static const tg_op conv2d_input_grad_op = { .name = "conv2d_input_grad",
					    .backward = conv2d_input_grad_backward,
					    .inputs = input_grad_inputs,
					    .describe = conv_describe };
static const tg_op conv2d_weight_grad_op = { .name = "conv2d_weight_grad",
					     .backward = conv2d_weight_grad_backward,
					     .inputs = weight_grad_inputs,
					     .describe = conv_describe };
static const tg_op conv2d_relu_op = { .name = "conv2d_relu", .backward = conv2d_relu_backward,
				      .inputs = conv2d_inputs, .describe = conv_describe };
TG_OP_REGISTER(conv2d_op);
TG_OP_REGISTER(conv2d_relu_op);
TG_OP_REGISTER(conv2d_input_grad_op);
TG_OP_REGISTER(conv2d_weight_grad_op);

/* Adds b[o] to each of the OG rows (L) of out. */
static void add_bias(tg_dtype dt, const void *b, void *out, int64_t OG, int64_t L)
{
	for (int64_t o = 0; o < OG; o++) {
		if (dt == TG_F64) {
			double v = ((const double *)b)[o], *r = (double *)out + o * L;
			for (int64_t i = 0; i < L; i++)
				r[i] += v;
		} else {
			float v = ((const float *)b)[o], *r = (float *)out + o * L;
			for (int64_t i = 0; i < L; i++)
				r[i] += v;
		}
	}
}

/* out = the convolution of x by w, plus b; false after recording why. */
static bool conv_into(tg_ctx *ctx, const geom *g, tg_tensor *x, tg_tensor *w, tg_tensor *b,
		      tg_tensor *out)
{
	tg_dtype dt = x->dtype;
	tg_conv_done done = tg_conv_depthwise(ctx, TG_CONV_FORWARD, g, x, w,
					      b ? b->data : NULL, out->data);
	if (done == TG_CONV_DECLINED && dt == TG_F32)
		done = tg_conv_dnnl(ctx, TG_CONV_FORWARD, g, x, w, b ? b->data : NULL, out->data);
	switch (done) {
	case TG_CONV_COMPUTED:
		return true;
	case TG_CONV_FAILED:
		return false;
	case TG_CONV_DECLINED:
		break;
	}
	if (per_image(g)) {
		int T = workers(ctx, g->N);
		conv_job j = { .g = g, .dt = dt, .x = x->data, .w = w->data,
			       .b = b ? b->data : NULL, .y = out->data };
		if (!image_cols(ctx, g, dt, T, &j.col))
			return false;
		run_images(ctx, T, forward_images, &j);
		return true;
	}
	void *col, *rows;
	if (!buffers(ctx, g, dt, &col, &rows))
		return false;
	size_t size = tg_dtype_size(dt);
	int64_t OG = g->O / g->G, K = g->C / g->G * g->KH * g->KW, L = g->OH * g->OW;
	for (int64_t n0 = 0, B; n0 < g->N; n0 += B) {
		B = g->N - n0 < batch_of(g) ? g->N - n0 : batch_of(g);
		for (int64_t grp = 0; grp < g->G; grp++) {
			im2col(g, dt, x->data, n0, B, grp, col);
			gemm(ctx, dt, false, false, OG, B * L, K,
			     (const char *)w->data + (size_t)(grp * OG * K) * size, K, col, B * L,
			     0.0, rows, B * L);
			if (b)
				add_bias(dt, (const char *)b->data + (size_t)(grp * OG) * size, rows,
					 OG, B * L);
			pack(g, size, out->data, n0, B, grp, rows, true);
		}
	}
	return true;
}

/* The forward, recorded as op (conv2d, or conv2d_relu: then made relu in
 * place); g checked against x, w and b by the caller. */
static tg_tensor *conv_as(const tg_op *op, const char *who, const geom *g, tg_tensor *x,
			  tg_tensor *w, tg_tensor *b)
{
	tg_tensor *in[3] = { x, w, b };
	int nin = b ? 3 : 2;
	tg_ctx *ctx = tg_op_begin(who, nin, in);
	if (!ctx)
		return NULL;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, 4,
				       (int64_t[]){ g->N, g->O, g->OH, g->OW });
	if (!out || !conv_into(ctx, g, x, w, b, out))
		return NULL;
	if (op == &conv2d_relu_op)
		tg_relu_in_place(out);
	return tg_op_end(op, out, nin, in, NULL, 0, g);
}

static tg_tensor *conv(const geom *g, tg_tensor *x, tg_tensor *w, tg_tensor *b)
{
	return conv_as(&conv2d_op, "tg_conv2d", g, x, w, b);
}

static tg_tensor *conv_input_grad(const geom *g, tg_tensor *dout, tg_tensor *w)
{
	static const char who[] = "tg_conv2d_input_grad";
	tg_tensor *in[2] = { dout, w };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	tg_tensor *dx = tg_tensor_new(ctx, who, dout->dtype, 4,
				      (int64_t[]){ g->N, g->C, g->H, g->W });
	if (!dx)
		return NULL;
	tg_dtype dt = dout->dtype;
	tg_conv_done done = tg_conv_depthwise(ctx, TG_CONV_INPUT_GRAD, g, dout, w, NULL, dx->data);
	if (done == TG_CONV_DECLINED && dt == TG_F32)
		done = tg_conv_dnnl(ctx, TG_CONV_INPUT_GRAD, g, dout, w, NULL, dx->data);
	switch (done) {
	case TG_CONV_COMPUTED:
		return tg_op_end(&conv2d_input_grad_op, dx, 2, in, NULL, 0, g);
	case TG_CONV_FAILED:
		return NULL;
	case TG_CONV_DECLINED:
		break;
	}
	if (per_image(g)) {
		int T = workers(ctx, g->N);
		conv_job j = { .g = g, .dt = dt, .w = w->data, .dout = dout->data, .y = dx->data };
		if (!image_cols(ctx, g, dt, T, &j.col))
			return NULL;
		run_images(ctx, T, input_grad_images, &j);
		return tg_op_end(&conv2d_input_grad_op, dx, 2, in, NULL, 0, g);
	}
	void *col, *rows;
	if (!buffers(ctx, g, dt, &col, &rows))
		return NULL;
	size_t size = tg_dtype_size(dt);
	int64_t OG = g->O / g->G, K = g->C / g->G * g->KH * g->KW, L = g->OH * g->OW;
	memset(dx->data, 0, dx->numel * size);
	for (int64_t n0 = 0, B; n0 < g->N; n0 += B) {
		B = g->N - n0 < batch_of(g) ? g->N - n0 : batch_of(g);
		for (int64_t grp = 0; grp < g->G; grp++) {
			pack(g, size, dout->data, n0, B, grp, rows, false);
			gemm(ctx, dt, true, false, K, B * L, OG,
			     (const char *)w->data + (size_t)(grp * OG * K) * size, K, rows, B * L,
			     0.0, col, B * L);
			col2im(g, dt, col, n0, B, grp, dx->data);
		}
	}
	return tg_op_end(&conv2d_input_grad_op, dx, 2, in, NULL, 0, g);
}

/* y += each partial sum of the threads after the first. */
void tg_conv_add_parts(tg_dtype dt, void *y, const void *part, int nparts, size_t n)
{
	for (int t = 0; t < nparts; t++) {
		if (dt == TG_F64) {
			const double *p = (const double *)part + (size_t)t * n;
			for (size_t i = 0; i < n; i++)
				((double *)y)[i] += p[i];
		} else {
			const float *p = (const float *)part + (size_t)t * n;
			for (size_t i = 0; i < n; i++)
				((float *)y)[i] += p[i];
		}
	}
}

static tg_tensor *conv_weight_grad(const geom *g, tg_tensor *x, tg_tensor *dout)
{
	static const char who[] = "tg_conv2d_weight_grad";
	tg_tensor *in[2] = { x, dout };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	int64_t OG = g->O / g->G, CG = g->C / g->G, K = CG * g->KH * g->KW, L = g->OH * g->OW;
	tg_tensor *dw = tg_tensor_new(ctx, who, x->dtype, 4, (int64_t[]){ g->O, CG, g->KH, g->KW });
	if (!dw)
		return NULL;
	tg_dtype dt = x->dtype;
	size_t size = tg_dtype_size(dt);
	tg_conv_done done = tg_conv_depthwise(ctx, TG_CONV_WEIGHT_GRAD, g, x, dout, NULL, dw->data);
	if (done == TG_CONV_DECLINED && dt == TG_F32)
		done = tg_conv_dnnl(ctx, TG_CONV_WEIGHT_GRAD, g, x, dout, NULL, dw->data);
	switch (done) {
	case TG_CONV_COMPUTED:
		return tg_op_end(&conv2d_weight_grad_op, dw, 2, in, NULL, 0, g);
	case TG_CONV_FAILED:
		return NULL;
	case TG_CONV_DECLINED:
		break;
	}
	if (per_image(g) && g->N > 0) {
		int T = workers(ctx, g->N);
		conv_job j = { .g = g, .dt = dt, .x = x->data, .dout = dout->data, .y = dw->data };
		if (!image_cols(ctx, g, dt, T, &j.col))
			return NULL;
		if (T > 1) {
			j.part = tg_arena_alloc(ctx, (size_t)((T - 1) * g->O * K) * size);
			if (!j.part)
				return NULL;
		}
		run_images(ctx, T, weight_grad_images, &j);
		tg_conv_add_parts(dt, dw->data, j.part, T - 1, dw->numel);
		return tg_op_end(&conv2d_weight_grad_op, dw, 2, in, NULL, 0, g);
	}
	void *col, *rows;
	if (!buffers(ctx, g, dt, &col, &rows))
		return NULL;
	if (g->N == 0)
		memset(dw->data, 0, dw->numel * size);
	for (int64_t n0 = 0, B; n0 < g->N; n0 += B) {
		B = g->N - n0 < batch_of(g) ? g->N - n0 : batch_of(g);
		for (int64_t grp = 0; grp < g->G; grp++) {
			im2col(g, dt, x->data, n0, B, grp, col);
			pack(g, size, dout->data, n0, B, grp, rows, false);
			gemm(ctx, dt, false, true, OG, K, B * L, rows, B * L, col, B * L,
			     n0 ? 1.0 : 0.0, (char *)dw->data + (size_t)(grp * OG * K) * size, K);
		}
	}
	return tg_op_end(&conv2d_weight_grad_op, dw, 2, in, NULL, 0, g);
}

/* ---- checking the arguments --------------------------------------------------------- */

static const tg_conv_opts conv_defaults = TG_CONV_DEFAULTS;

/* Fills g from the input shape xs (N,C,H,W), the weight shape ws
 * (O,CG,KH,KW) and the options, after checking them all; false after
 * recording the error. */
static bool conv_geom(tg_ctx *ctx, const char *who, const int64_t *xs, const int64_t *ws,
		      const tg_conv_opts *o, geom *g)
{
	char bx[TG_SHAPE_STR], bw[TG_SHAPE_STR];
	if (!o)
		o = &conv_defaults;
	tg_shape_fmt(4, xs, bx);
	tg_shape_fmt(4, ws, bw);
	if (o->stride[0] < 1 || o->stride[1] < 1 || o->dilation[0] < 1 || o->dilation[1] < 1 ||
	    o->padding[0] < 0 || o->padding[1] < 0 || o->groups < 1) {
		tg_fail(ctx, TG_EARG,
			"%s: stride (%d,%d), padding (%d,%d), dilation (%d,%d), groups %d: stride, "
			"dilation and groups must be >= 1, padding >= 0",
			who, o->stride[0], o->stride[1], o->padding[0], o->padding[1],
			o->dilation[0], o->dilation[1], o->groups);
		return false;
	}
	/* sizes a caller of the gradient ops gives, and what BLAS takes: in int
	 * range, the arithmetic below cannot overflow */
	for (int i = 0; i < 4; i++)
		if ((i > 0 && xs[i] > INT_MAX) || ws[i] > INT_MAX) {
			tg_fail(ctx, TG_ESHAPE, "%s: x %s, w %s: a size exceeds the BLAS limit %d",
				who, bx, bw, INT_MAX);
			return false;
		}
	*g = (geom){ .N = xs[0], .C = xs[1], .H = xs[2], .W = xs[3], .O = ws[0], .KH = ws[2],
		     .KW = ws[3], .sh = o->stride[0], .sw = o->stride[1], .ph = o->padding[0],
		     .pw = o->padding[1], .dh = o->dilation[0], .dw = o->dilation[1],
		     .G = o->groups };
	if (g->C % g->G || g->O % g->G) {
		tg_fail(ctx, TG_ESHAPE,
			"%s: x %s, w %s: groups %lld must divide the input channels %lld and the "
			"output channels %lld",
			who, bx, bw, (long long)g->G, (long long)g->C, (long long)g->O);
		return false;
	}
	if (ws[1] != g->C / g->G) {
		tg_fail(ctx, TG_ESHAPE,
			"%s: x %s, w %s: w has %lld input channels; expected C/groups = %lld/%lld "
			"= %lld",
			who, bx, bw, (long long)ws[1], (long long)g->C, (long long)g->G,
			(long long)(g->C / g->G));
		return false;
	}
	if (g->KH < 1 || g->KW < 1 || g->O < 1) {
		tg_fail(ctx, TG_ESHAPE, "%s: w %s: an empty kernel", who, bw);
		return false;
	}
	g->OH = out_size(g->H, g->KH, g->sh, g->ph, g->dh);
	g->OW = out_size(g->W, g->KW, g->sw, g->pw, g->dw);
	if (g->OH < 1 || g->OW < 1) {
		tg_fail(ctx, TG_ESHAPE,
			"%s: x %s, w %s: the kernel spans %lldx%lld with dilation (%lld,%lld), "
			"larger than the padded input %lldx%lld",
			who, bx, bw, (long long)(g->dh * (g->KH - 1) + 1),
			(long long)(g->dw * (g->KW - 1) + 1), (long long)g->dh, (long long)g->dw,
			(long long)(g->H + 2 * g->ph), (long long)(g->W + 2 * g->pw));
		return false;
	}
	/* each output side may pass 2^32 (padding up to INT_MAX on both sides):
	 * their product is checked, not computed */
	int64_t K, L;
	if (__builtin_mul_overflow(g->C / g->G, g->KH * g->KW, &K) || K > INT_MAX ||
	    __builtin_mul_overflow(g->OH, g->OW, &L) || L > INT_MAX) {
		tg_fail(ctx, TG_ESHAPE,
			"%s: x %s, w %s: a size exceeds the BLAS limit %d (output %lldx%lld)", who,
			bx, bw, INT_MAX, (long long)g->OH, (long long)g->OW);
		return false;
	}
	return true;
}

static bool is_4d(tg_ctx *ctx, const char *who, const char *name, const tg_tensor *t,
		  const char *layout)
{
	if (t->ndim == 4)
		return true;
	char buf[TG_SHAPE_STR];
	tg_fail(ctx, TG_ESHAPE, "%s: %s is %s; expected 4-D %s", who, name,
		tg_shape_fmt(t->ndim, t->shape, buf), layout);
	return false;
}

/* The geometry as aux in the step arena, or NULL. */
static const geom *save_geom(tg_ctx *ctx, const geom *g)
{
	return tg_save_aux(ctx, g, sizeof *g);
}

/* tg_conv2d and tg_conv2d_relu (op) */
static tg_tensor *conv2d_of(const tg_op *op, const char *who, tg_tensor *x, tg_tensor *w,
			    tg_tensor *b, const tg_conv_opts *o)
{
	tg_tensor *in[3] = { x, w, b };
	tg_ctx *ctx = tg_op_begin(who, b ? 3 : 2, in);
	if (!ctx)
		return NULL;
	if (!is_4d(ctx, who, "x", x, "(N,C,H,W)") ||
	    !is_4d(ctx, who, "w", w, "(O,C/groups,KH,KW)"))
		return NULL;
	geom g;
	if (!conv_geom(ctx, who, x->shape, w->shape, o, &g))
		return NULL;
	if (b && (b->ndim != 1 || b->shape[0] != g.O)) {
		char bb[TG_SHAPE_STR], bw[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: b is %s for w %s; expected (%lld,)", who,
			       tg_shape_fmt(b->ndim, b->shape, bb), tg_shape_fmt(4, w->shape, bw),
			       (long long)g.O);
	}
	const geom *saved = save_geom(ctx, &g);
	return saved ? conv_as(op, who, saved, x, w, b) : NULL;
}

tg_tensor *tg_conv2d(tg_tensor *x, tg_tensor *w, tg_tensor *b, const tg_conv_opts *o)
{
	return conv2d_of(&conv2d_op, "tg_conv2d", x, w, b, o);
}

tg_tensor *tg_conv2d_relu(tg_tensor *x, tg_tensor *w, tg_tensor *b, const tg_conv_opts *o)
{
	return conv2d_of(&conv2d_relu_op, "tg_conv2d_relu", x, w, b, o);
}

/* dout must be (N,O,OH,OW) of the geometry. */
static bool dout_fits(tg_ctx *ctx, const char *who, const tg_tensor *dout, const geom *g)
{
	int64_t want[4] = { g->N, g->O, g->OH, g->OW };
	if (dout->ndim == 4 && memcmp(dout->shape, want, sizeof want) == 0)
		return true;
	char bd[TG_SHAPE_STR], bo[TG_SHAPE_STR];
	tg_fail(ctx, TG_ESHAPE, "%s: dout is %s; the convolution's output is %s", who,
		tg_shape_fmt(dout->ndim, dout->shape, bd), tg_shape_fmt(4, want, bo));
	return false;
}

tg_tensor *tg_conv2d_input_grad(tg_tensor *dout, tg_tensor *w, int64_t H, int64_t W,
				const tg_conv_opts *o)
{
	static const char who[] = "tg_conv2d_input_grad";
	tg_tensor *in[2] = { dout, w };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	if (!is_4d(ctx, who, "dout", dout, "(N,O,OH,OW)") ||
	    !is_4d(ctx, who, "w", w, "(O,C/groups,KH,KW)"))
		return NULL;
	if (H < 1 || W < 1)
		return tg_fail(ctx, TG_EARG, "%s: input size %lldx%lld; must be positive", who,
			       (long long)H, (long long)W);
	/* x's channels follow from the groups: check them before making it up */
	int G = o ? o->groups : 1;
	if (G > 0 && w->shape[0] % G) {
		char bw[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE,
			       "%s: w %s: groups %d must divide the output channels %lld", who,
			       tg_shape_fmt(4, w->shape, bw), G, (long long)w->shape[0]);
	}
	int64_t g1 = G > 0 ? G : 1, c = w->shape[1] <= INT64_MAX / g1 ? w->shape[1] * g1 : INT64_MAX;
	int64_t xs[4] = { dout->shape[0], c, H, W };
	geom g;
	if (!conv_geom(ctx, who, xs, w->shape, o, &g) || !dout_fits(ctx, who, dout, &g))
		return NULL;
	const geom *saved = save_geom(ctx, &g);
	return saved ? conv_input_grad(saved, dout, w) : NULL;
}

tg_tensor *tg_conv2d_weight_grad(tg_tensor *x, tg_tensor *dout, int64_t KH, int64_t KW,
				 const tg_conv_opts *o)
{
	static const char who[] = "tg_conv2d_weight_grad";
	tg_tensor *in[2] = { x, dout };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	if (!is_4d(ctx, who, "x", x, "(N,C,H,W)") ||
	    !is_4d(ctx, who, "dout", dout, "(N,O,OH,OW)"))
		return NULL;
	if (KH < 1 || KW < 1)
		return tg_fail(ctx, TG_EARG, "%s: kernel %lldx%lld; must be positive", who,
			       (long long)KH, (long long)KW);
	/* w's shape follows from the groups: check them before making it up */
	int G = o && o->groups > 0 ? o->groups : 1;
	if (x->shape[1] % G || dout->shape[1] % G) {
		char bx[TG_SHAPE_STR], bd[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE,
			       "%s: x %s, dout %s: groups %d must divide the input channels %lld and "
			       "the output channels %lld",
			       who, tg_shape_fmt(4, x->shape, bx), tg_shape_fmt(4, dout->shape, bd), G,
			       (long long)x->shape[1], (long long)dout->shape[1]);
	}
	int64_t ws[4] = { dout->shape[1], x->shape[1] / G, KH, KW };
	geom g;
	if (!conv_geom(ctx, who, x->shape, ws, o, &g) || !dout_fits(ctx, who, dout, &g))
		return NULL;
	const geom *saved = save_geom(ctx, &g);
	return saved ? conv_weight_grad(saved, x, dout) : NULL;
}

/* ---- pooling: windows KHxKW at stride s over x padded by p on each side ------------- */

/* Fills g for a pool of x after checking the arguments; false after
 * recording the error. PyTorch's limits: padding at most half the kernel, so
 * that every window holds part of x. */
static bool pool_geom(tg_ctx *ctx, const char *who, const tg_tensor *x, int kernel, int stride,
		      int padding, geom *g)
{
	char bx[TG_SHAPE_STR];
	if (!is_4d(ctx, who, "x", x, "(N,C,H,W)"))
		return false;
	tg_shape_fmt(4, x->shape, bx);
	if (kernel < 1 || stride < 1 || padding < 0 || padding > kernel / 2) {
		tg_fail(ctx, TG_EARG,
			"%s: x %s, kernel %d, stride %d, padding %d: kernel and stride must be "
			">= 1, padding in [0, kernel/2]",
			who, bx, kernel, stride, padding);
		return false;
	}
	*g = (geom){ .N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
		     .O = x->shape[1], .KH = kernel, .KW = kernel, .sh = stride, .sw = stride,
		     .ph = padding, .pw = padding, .dh = 1, .dw = 1, .G = 1 };
	g->OH = out_size(g->H, g->KH, g->sh, g->ph, 1);
	g->OW = out_size(g->W, g->KW, g->sw, g->pw, 1);
	if (g->OH < 1 || g->OW < 1) {
		tg_fail(ctx, TG_ESHAPE, "%s: x %s: kernel %d is larger than the padded input "
				       "%lldx%lld",
			who, bx, kernel, (long long)(g->H + 2 * g->ph), (long long)(g->W + 2 * g->pw));
		return false;
	}
	return true;
}

/* The window of output row oh: input rows [*lo, *hi) (the part inside x). */
static void window(int64_t o, int64_t s, int64_t p, int64_t k, int64_t n, int64_t *lo,
		   int64_t *hi)
{
	int64_t a = o * s - p, b = a + k;
	*lo = a < 0 ? 0 : a;
	*hi = b > n ? n : b;
}

static int pool_describe(const tg_node *n, char *buf, size_t size)
{
	return geom_describe(n->aux, false, buf, size);
}

/* ---- max_pool2d: out = x at each window's arg-max (kept as aux);
 *      dx = max_pool2d_backward(dout), which scatters dout to the arg-maxes ------- */
/* ---- max_pool2d_backward: zeros of x's shape, dout added at the arg-maxes;
 *      its gradient gathers at them: d dout = max_pool2d's gather of g ------------- */
/* Both nodes keep a pool_aux: the geometry and the flat index into x of
 * each output element's arg-max. */

typedef struct pool_aux {
	geom g;
	const int64_t *idx; /* (N,C,OH,OW) flat indices into x */
} pool_aux;

static tg_tensor *gather_at(const pool_aux *a, tg_tensor *x);
static tg_tensor *scatter_at(const pool_aux *a, tg_tensor *dout);

static void max_pool2d_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, scatter_at(n->aux, dout));
}

static void max_pool2d_scatter_backward(tg_node *n, tg_tensor *dx)
{
	tg_node_grad(n, 0, gather_at(n->aux, dx));
}

static int max_pool_describe(const tg_node *n, char *buf, size_t size)
{
	return geom_describe(&((const pool_aux *)n->aux)->g, false, buf, size);
}

static const tg_op max_pool2d_op = { .name = "max_pool2d", .backward = max_pool2d_backward,
				     .describe = max_pool_describe };
static const tg_op max_pool2d_backward_op = { .name = "max_pool2d_backward",
					      .backward = max_pool2d_scatter_backward,
					      .describe = max_pool_describe };
TG_OP_REGISTER(max_pool2d_op);
TG_OP_REGISTER(max_pool2d_backward_op);

/* out (N,C,OH,OW) = x[idx] */
static tg_tensor *gather_at(const pool_aux *a, tg_tensor *x)
{
	static const char who[] = "tg_max_pool2d";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	const geom *g = &a->g;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, 4, (int64_t[]){ g->N, g->C, g->OH, g->OW });
	if (!out)
		return NULL;
	if (x->dtype == TG_F64)
		for (size_t i = 0; i < out->numel; i++)
			((double *)out->data)[i] = ((const double *)x->data)[a->idx[i]];
	else
		for (size_t i = 0; i < out->numel; i++)
			((float *)out->data)[i] = ((const float *)x->data)[a->idx[i]];
	return tg_op_end(&max_pool2d_op, out, 1, &x, NULL, 0, a);
}

/* The value that wins a window: a larger one, or the first NaN; without
 * branches, which random data would mispredict every other time. */
#define WINS(a, b) ((bool)(((a) > (b)) | (((a) != (a)) & ((b) == (b)))))

static bool two_by_two(const geom *g)
{
	return g->KH == 2 && g->KW == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0;
}

/* Output columns [*a, *b) of a row have their whole KW columns inside x:
 * ow*sw - pw >= 0 and ow*sw - pw + KW <= W. */
static void inner_columns(const geom *g, int64_t *a, int64_t *b)
{
	int64_t last = g->W - g->KW + g->pw; /* the last window's first column + pw */
	*a = (g->pw + g->sw - 1) / g->sw;
	*b = last < 0 ? 0 : last / g->sw + 1;
	if (*b > g->OW)
		*b = g->OW;
	if (*b < *a)
		*b = *a;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* Eight float 2x2 windows at once: the even and odd elements of 16 */
#define EVEN_PS(x0, x1)                                                                    \
	_mm256_castpd_ps(_mm256_permute4x64_pd(                                            \
	    _mm256_castps_pd(_mm256_shuffle_ps(x0, x1, _MM_SHUFFLE(2, 0, 2, 0))), 0xd8))
#define ODD_PS(x0, x1)                                                                     \
	_mm256_castpd_ps(_mm256_permute4x64_pd(                                            \
	    _mm256_castps_pd(_mm256_shuffle_ps(x0, x1, _MM_SHUFFLE(3, 1, 3, 1))), 0xd8))

/* relu's x < 0 ? 0 : x: maxps returns its second operand unless the first
 * is greater, so NaN and -0 stay as they are */
#define RELU_PS(v) _mm256_max_ps(_mm256_setzero_ps(), v)
#define RELU_PS128(v) _mm_max_ps(_mm_setzero_ps(), v)
#define RELU_PD(v) _mm256_max_pd(_mm256_setzero_pd(), v)

/* Windows ow .. ow+7 of one output row of floats (the 2x2 loop below, in
 * AVX2 registers): the same compares with >, the same choices and indices;
 * bad gets the lanes whose cells hold a NaN. relu: of the cells through a
 * relu (tg_relu_max_pool2d). */
__attribute__((target("avx2"))) static inline void pool2_block8(const float *r0,
								 const float *r1, float *out,
								 int64_t *idx, int64_t base,
								 int64_t W, int64_t ow, bool relu,
								 __m256 *bad)
{
	const __m256i one = _mm256_set1_epi32(1), two_k = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
	const __m256i below = _mm256_set1_epi32((int)W); /* r1's cells: + W */
	const float *p0 = r0 + 2 * ow, *p1 = r1 + 2 * ow;
	__m256 x0 = _mm256_loadu_ps(p0), x1 = _mm256_loadu_ps(p0 + 8);
	__m256 y0 = _mm256_loadu_ps(p1), y1 = _mm256_loadu_ps(p1 + 8);
	if (relu) {
		x0 = RELU_PS(x0), x1 = RELU_PS(x1);
		y0 = RELU_PS(y0), y1 = RELU_PS(y1);
	}
	__m256 a = EVEN_PS(x0, x1), b = ODD_PS(x0, x1);
	__m256 c = EVEN_PS(y0, y1), d = ODD_PS(y0, y1);
	*bad = _mm256_or_ps(*bad, _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_UNORD_Q),
					       _mm256_cmp_ps(c, d, _CMP_UNORD_Q)));
	__m256 gab = _mm256_cmp_ps(b, a, _CMP_GT_OQ), gcd = _mm256_cmp_ps(d, c, _CMP_GT_OQ);
	__m256 ab = _mm256_blendv_ps(a, b, gab), cd = _mm256_blendv_ps(c, d, gcd);
	__m256 sel = _mm256_cmp_ps(cd, ab, _CMP_GT_OQ);
	_mm256_storeu_ps(out + ow, _mm256_blendv_ps(ab, cd, sel));
	__m256i kab = _mm256_and_si256(_mm256_castps_si256(gab), one);
	__m256i kcd = _mm256_add_epi32(below, _mm256_and_si256(_mm256_castps_si256(gcd), one));
	__m256i off = _mm256_add_epi32(_mm256_blendv_epi8(kab, kcd, _mm256_castps_si256(sel)), two_k);
	__m256i at = _mm256_set1_epi64x(base + 2 * ow);
	_mm256_storeu_si256((__m256i *)(void *)(idx + ow),
			    _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(off)), at));
	_mm256_storeu_si256((__m256i *)(void *)(idx + ow + 4),
			    _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(off, 1)), at));
}

/* Windows ow .. ow+3, the same in 128-bit registers (rows of 4 to 7). */
__attribute__((target("avx2"))) static inline void pool2_block4(const float *r0,
								 const float *r1, float *out,
								 int64_t *idx, int64_t base,
								 int64_t W, int64_t ow, bool relu,
								 __m128 *bad)
{
	const __m128i one = _mm_set1_epi32(1), two_k = _mm_setr_epi32(0, 2, 4, 6);
	const __m128i below = _mm_set1_epi32((int)W);
	const float *p0 = r0 + 2 * ow, *p1 = r1 + 2 * ow;
	__m128 x0 = _mm_loadu_ps(p0), x1 = _mm_loadu_ps(p0 + 4);
	__m128 y0 = _mm_loadu_ps(p1), y1 = _mm_loadu_ps(p1 + 4);
	if (relu) {
		x0 = RELU_PS128(x0), x1 = RELU_PS128(x1);
		y0 = RELU_PS128(y0), y1 = RELU_PS128(y1);
	}
	__m128 a = _mm_shuffle_ps(x0, x1, _MM_SHUFFLE(2, 0, 2, 0));
	__m128 b = _mm_shuffle_ps(x0, x1, _MM_SHUFFLE(3, 1, 3, 1));
	__m128 c = _mm_shuffle_ps(y0, y1, _MM_SHUFFLE(2, 0, 2, 0));
	__m128 d = _mm_shuffle_ps(y0, y1, _MM_SHUFFLE(3, 1, 3, 1));
	*bad = _mm_or_ps(*bad, _mm_or_ps(_mm_cmp_ps(a, b, _CMP_UNORD_Q),
					 _mm_cmp_ps(c, d, _CMP_UNORD_Q)));
	__m128 gab = _mm_cmp_ps(b, a, _CMP_GT_OQ), gcd = _mm_cmp_ps(d, c, _CMP_GT_OQ);
	__m128 ab = _mm_blendv_ps(a, b, gab), cd = _mm_blendv_ps(c, d, gcd);
	__m128 sel = _mm_cmp_ps(cd, ab, _CMP_GT_OQ);
	_mm_storeu_ps(out + ow, _mm_blendv_ps(ab, cd, sel));
	__m128i kab = _mm_and_si128(_mm_castps_si128(gab), one);
	__m128i kcd = _mm_add_epi32(below, _mm_and_si128(_mm_castps_si128(gcd), one));
	__m128i off = _mm_add_epi32(_mm_blendv_epi8(kab, kcd, _mm_castps_si128(sel)), two_k);
	_mm256_storeu_si256((__m256i *)(void *)(idx + ow),
			    _mm256_add_epi64(_mm256_cvtepi32_epi64(off),
					     _mm256_set1_epi64x(base + 2 * ow)));
}

/* One output row of float 2x2 windows in AVX2 registers, eight at a time
 * and four in rows of 4 to 7; a row's last block overlaps the one before
 * when its length is not a multiple (a window's result depends on its own
 * cells alone, so a window done twice gets the same value). The windows
 * done: OW, or 0 for rows under 4 (left to the loop); *nan set when any of
 * their cells is NaN. */
__attribute__((target("avx2"))) static int64_t pool2_row_f32_avx2(const float *r0,
								 const float *r1, float *out,
								 int64_t *idx, int64_t base,
								 int64_t W, int64_t OW, bool relu,
								 bool *nan)
{
	if (OW >= 8) {
		__m256 bad = _mm256_setzero_ps();
		for (int64_t ow = 0; ow + 8 <= OW; ow += 8)
			pool2_block8(r0, r1, out, idx, base, W, ow, relu, &bad);
		if (OW % 8)
			pool2_block8(r0, r1, out, idx, base, W, OW - 8, relu, &bad);
		*nan = _mm256_movemask_ps(bad) != 0;
		return OW;
	}
	if (OW >= 4) {
		__m128 bad = _mm_setzero_ps();
		pool2_block4(r0, r1, out, idx, base, W, 0, relu, &bad);
		if (OW > 4)
			pool2_block4(r0, r1, out, idx, base, W, OW - 4, relu, &bad);
		*nan = _mm_movemask_ps(bad) != 0;
		return OW;
	}
	return 0;
}

static int64_t pool2_row_f32(const float *r0, const float *r1, float *out, int64_t *idx,
			     int64_t base, int64_t W, int64_t OW, bool relu, bool *nan)
{
	if (W >= INT_MAX / 2 || !__builtin_cpu_supports("avx2"))
		return 0;
	return pool2_row_f32_avx2(r0, r1, out, idx, base, W, OW, relu, nan);
}

/* Windows ow .. ow+3 of one output row of doubles, as pool2_block8 does
 * floats: the same compares with >, the same choices and indices. */
__attribute__((target("avx2"))) static inline void pool2_block4_pd(const double *r0,
								    const double *r1, double *out,
								    int64_t *idx, int64_t base,
								    int64_t W, int64_t ow, bool relu,
								    __m256d *bad)
{
	const __m256i one = _mm256_set1_epi64x(1), two_k = _mm256_setr_epi64x(0, 2, 4, 6);
	const __m256i below = _mm256_set1_epi64x(W);
	const double *p0 = r0 + 2 * ow, *p1 = r1 + 2 * ow;
	__m256d x0 = _mm256_loadu_pd(p0), x1 = _mm256_loadu_pd(p0 + 4);
	__m256d y0 = _mm256_loadu_pd(p1), y1 = _mm256_loadu_pd(p1 + 4);
	if (relu) {
		x0 = RELU_PD(x0), x1 = RELU_PD(x1);
		y0 = RELU_PD(y0), y1 = RELU_PD(y1);
	}
	/* unpacklo gives elements 0 4 2 6, unpackhi 1 5 3 7: 0xd8 puts them in order */
	__m256d a = _mm256_permute4x64_pd(_mm256_unpacklo_pd(x0, x1), 0xd8);
	__m256d b = _mm256_permute4x64_pd(_mm256_unpackhi_pd(x0, x1), 0xd8);
	__m256d c = _mm256_permute4x64_pd(_mm256_unpacklo_pd(y0, y1), 0xd8);
	__m256d d = _mm256_permute4x64_pd(_mm256_unpackhi_pd(y0, y1), 0xd8);
	*bad = _mm256_or_pd(*bad, _mm256_or_pd(_mm256_cmp_pd(a, b, _CMP_UNORD_Q),
					       _mm256_cmp_pd(c, d, _CMP_UNORD_Q)));
	__m256d gab = _mm256_cmp_pd(b, a, _CMP_GT_OQ), gcd = _mm256_cmp_pd(d, c, _CMP_GT_OQ);
	__m256d ab = _mm256_blendv_pd(a, b, gab), cd = _mm256_blendv_pd(c, d, gcd);
	__m256d sel = _mm256_cmp_pd(cd, ab, _CMP_GT_OQ);
	_mm256_storeu_pd(out + ow, _mm256_blendv_pd(ab, cd, sel));
	__m256i kab = _mm256_and_si256(_mm256_castpd_si256(gab), one);
	__m256i kcd = _mm256_add_epi64(below, _mm256_and_si256(_mm256_castpd_si256(gcd), one));
	__m256i off = _mm256_add_epi64(_mm256_blendv_epi8(kab, kcd, _mm256_castpd_si256(sel)), two_k);
	_mm256_storeu_si256((__m256i *)(void *)(idx + ow),
			    _mm256_add_epi64(off, _mm256_set1_epi64x(base + 2 * ow)));
}

/* One output row of double 2x2 windows, four at a time, the last block
 * overlapping the one before as in pool2_row_f32_avx2; the windows done:
 * OW, or 0 for rows under 4. */
__attribute__((target("avx2"))) static int64_t pool2_row_f64_avx2(const double *r0,
								 const double *r1, double *out,
								 int64_t *idx, int64_t base,
								 int64_t W, int64_t OW, bool relu,
								 bool *nan)
{
	if (OW < 4)
		return 0;
	__m256d bad = _mm256_setzero_pd();
	for (int64_t ow = 0; ow + 4 <= OW; ow += 4)
		pool2_block4_pd(r0, r1, out, idx, base, W, ow, relu, &bad);
	if (OW % 4)
		pool2_block4_pd(r0, r1, out, idx, base, W, OW - 4, relu, &bad);
	*nan = _mm256_movemask_pd(bad) != 0;
	return OW;
}

static int64_t pool2_row_f64(const double *r0, const double *r1, double *out, int64_t *idx,
			     int64_t base, int64_t W, int64_t OW, bool relu, bool *nan)
{
	if (!__builtin_cpu_supports("avx2"))
		return 0;
	return pool2_row_f64_avx2(r0, r1, out, idx, base, W, OW, relu, nan);
}

/* ---- any window: the columns whose windows lie inside x, eight at a time ---- */
/* The cells x[j*sw] of lanes j = 0..7: a load at stride 1, two loads and a
 * shuffle at stride 2 (evens of 0..7, odds of 7..14: never past lane 7's
 * cell), a gather at others (step: lane j's offset, j*sw). */
__attribute__((target("avx2"))) static inline __m256 cells8(const float *x, int64_t sw,
							     __m256i step)
{
	if (sw == 1)
		return _mm256_loadu_ps(x);
	if (sw == 2)
		return _mm256_castpd_ps(_mm256_permute4x64_pd(
		    _mm256_castps_pd(_mm256_shuffle_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 7),
						       _MM_SHUFFLE(3, 1, 2, 0))),
		    0xd8));
	return _mm256_i32gather_ps(x, step, 4);
}

/* The same for four doubles: 0 and 2 of 0..3, 1 and 3 of 3..6 at stride 2. */
__attribute__((target("avx2"))) static inline __m256d cells4(const double *x, int64_t sw,
							      __m128i step)
{
	if (sw == 1)
		return _mm256_loadu_pd(x);
	if (sw == 2)
		return _mm256_blend_pd(_mm256_permute4x64_pd(_mm256_loadu_pd(x), 0xd8),
				       _mm256_permute4x64_pd(_mm256_loadu_pd(x + 3), 0xd8), 0xc);
	return _mm256_i32gather_pd(x, step, 8);
}

/* Windows ow .. ow+7 of a float output row, rows [h0, h1) of the plane at
 * x: the scalar loop's visit in registers, from the window's first cell,
 * then cell by cell in row-major order with WINS (which the first cell
 * never wins over itself), so that ties and NaNs pick the same cell. */
__attribute__((target("avx2"))) static inline void poolk_block8(const geom *g, const float *x,
								 int64_t h0, int64_t h1,
								 float *out, int64_t *idx,
								 int64_t pbase, int64_t ow,
								 __m256i step, bool relu)
{
	int32_t at0 = (int32_t)(h0 * g->W + ow * g->sw - g->pw); /* lane 0's first cell */
	__m256 v = cells8(x + at0, g->sw, step);
	if (relu)
		v = RELU_PS(v);
	__m256i best = _mm256_add_epi32(_mm256_set1_epi32(at0), step);
	for (int64_t ih = h0; ih < h1; ih++)
		for (int64_t kw = 0; kw < g->KW; kw++) {
			int32_t at = at0 + (int32_t)((ih - h0) * g->W + kw);
			__m256 c = cells8(x + at, g->sw, step);
			if (relu)
				c = RELU_PS(c);
			__m256 wins = _mm256_or_ps(_mm256_cmp_ps(c, v, _CMP_GT_OQ),
						   _mm256_and_ps(_mm256_cmp_ps(c, c, _CMP_UNORD_Q),
								 _mm256_cmp_ps(v, v, _CMP_ORD_Q)));
			v = _mm256_blendv_ps(v, c, wins);
			best = _mm256_blendv_epi8(best, _mm256_add_epi32(_mm256_set1_epi32(at), step),
						  _mm256_castps_si256(wins));
		}
	_mm256_storeu_ps(out + ow, v);
	__m256i at = _mm256_set1_epi64x(pbase);
	_mm256_storeu_si256((__m256i *)(void *)(idx + ow),
			    _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(best)), at));
	_mm256_storeu_si256((__m256i *)(void *)(idx + ow + 4),
			    _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(best, 1)),
					     at));
}

/* The cells of lanes 0..3 of floats as cells8's: at stride 2 evens of 0..3
 * and 4, 6 of 3..6, never past lane 3's cell. */
__attribute__((target("avx2"))) static inline __m128 cells4_ps(const float *x, int64_t sw,
								__m128i step)
{
	if (sw == 1)
		return _mm_loadu_ps(x);
	if (sw == 2)
		return _mm_shuffle_ps(_mm_loadu_ps(x), _mm_loadu_ps(x + 3), _MM_SHUFFLE(3, 1, 2, 0));
	return _mm_i32gather_ps(x, step, 4);
}

/* Windows ow .. ow+3 of a float output row, as poolk_block8 in 128-bit
 * registers: rows of 4 to 7 inner columns (a 3x3 pool at stride 2 of a
 * 15x15 or 16x16 plane) in registers too. */
__attribute__((target("avx2"))) static inline void poolk_block4_ps(const geom *g, const float *x,
								    int64_t h0, int64_t h1,
								    float *out, int64_t *idx,
								    int64_t pbase, int64_t ow,
								    __m128i step, bool relu)
{
	int32_t at0 = (int32_t)(h0 * g->W + ow * g->sw - g->pw);
	__m128 v = cells4_ps(x + at0, g->sw, step);
	if (relu)
		v = RELU_PS128(v);
	__m128i best = _mm_add_epi32(_mm_set1_epi32(at0), step);
	for (int64_t ih = h0; ih < h1; ih++)
		for (int64_t kw = 0; kw < g->KW; kw++) {
			int32_t at = at0 + (int32_t)((ih - h0) * g->W + kw);
			__m128 c = cells4_ps(x + at, g->sw, step);
			if (relu)
				c = RELU_PS128(c);
			__m128 wins = _mm_or_ps(_mm_cmp_ps(c, v, _CMP_GT_OQ),
						_mm_and_ps(_mm_cmp_ps(c, c, _CMP_UNORD_Q),
							   _mm_cmp_ps(v, v, _CMP_ORD_Q)));
			v = _mm_blendv_ps(v, c, wins);
			best = _mm_blendv_epi8(best, _mm_add_epi32(_mm_set1_epi32(at), step),
					       _mm_castps_si128(wins));
		}
	_mm_storeu_ps(out + ow, v);
	_mm256_storeu_si256((__m256i *)(void *)(idx + ow),
			    _mm256_add_epi64(_mm256_cvtepi32_epi64(best), _mm256_set1_epi64x(pbase)));
}

/* The same for doubles, four windows at a time. */
__attribute__((target("avx2"))) static inline void poolk_block4(const geom *g, const double *x,
								 int64_t h0, int64_t h1,
								 double *out, int64_t *idx,
								 int64_t pbase, int64_t ow,
								 __m128i step, bool relu)
{
	int64_t at0 = h0 * g->W + ow * g->sw - g->pw;
	const __m256i step64 = _mm256_cvtepi32_epi64(step);
	__m256d v = cells4(x + at0, g->sw, step);
	if (relu)
		v = RELU_PD(v);
	__m256i best = _mm256_add_epi64(_mm256_set1_epi64x(at0), step64);
	for (int64_t ih = h0; ih < h1; ih++)
		for (int64_t kw = 0; kw < g->KW; kw++) {
			int64_t at = at0 + (ih - h0) * g->W + kw;
			__m256d c = cells4(x + at, g->sw, step);
			if (relu)
				c = RELU_PD(c);
			__m256d wins = _mm256_or_pd(_mm256_cmp_pd(c, v, _CMP_GT_OQ),
						    _mm256_and_pd(_mm256_cmp_pd(c, c, _CMP_UNORD_Q),
								  _mm256_cmp_pd(v, v, _CMP_ORD_Q)));
			v = _mm256_blendv_pd(v, c, wins);
			best = _mm256_castpd_si256(_mm256_blendv_pd(
			    _mm256_castsi256_pd(best),
			    _mm256_castsi256_pd(_mm256_add_epi64(_mm256_set1_epi64x(at), step64)), wins));
		}
	_mm256_storeu_pd(out + ow, v);
	_mm256_storeu_si256((__m256i *)(void *)(idx + ow),
			    _mm256_add_epi64(best, _mm256_set1_epi64x(pbase)));
}

/* The inner columns [a, b) of one output row (rows [h0, h1) of plane p),
 * in blocks of 8 floats (4 when there are fewer than 8) or 4 doubles, the
 * last block overlapping the one before (a window done twice gets the
 * same value). False when the row is left to the scalar loop: fewer than
 * 4 inner columns, no AVX2, or a plane too
 * large for 32-bit offsets. */
__attribute__((target("avx2"))) static bool poolk_row_avx2(const geom *g, tg_dtype dt,
							    const void *x, int64_t p, int64_t h0,
							    int64_t h1, void *out, int64_t *idx,
							    int64_t a, int64_t b, bool relu)
{
	int64_t pbase = p * g->H * g->W;
	if (b - a < 4)
		return false;
	if (dt == TG_F64) {
		const double *xp = (const double *)x + pbase;
		__m128i step = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3),
					       _mm_set1_epi32((int32_t)g->sw));
		for (int64_t ow = a; ow < b; ow += 4)
			poolk_block4(g, xp, h0, h1, out, idx, pbase, ow + 4 <= b ? ow : b - 4, step,
				     relu);
	} else if (b - a < 8) {
		const float *xp = (const float *)x + pbase;
		__m128i step = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3),
					       _mm_set1_epi32((int32_t)g->sw));
		for (int64_t ow = a; ow < b; ow += 4)
			poolk_block4_ps(g, xp, h0, h1, out, idx, pbase, ow + 4 <= b ? ow : b - 4,
					step, relu);
	} else {
		const float *xp = (const float *)x + pbase;
		__m256i step = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
						  _mm256_set1_epi32((int32_t)g->sw));
		for (int64_t ow = a; ow < b; ow += 8)
			poolk_block8(g, xp, h0, h1, out, idx, pbase, ow + 8 <= b ? ow : b - 8, step,
				     relu);
	}
	return true;
}

static bool poolk_row(const geom *g, tg_dtype dt, const void *x, int64_t p, int64_t h0,
		      int64_t h1, void *out, int64_t *idx, int64_t a, int64_t b, bool relu)
{
	/* offsets within a plane and lane strides in 32 bits */
	if (g->H * g->W >= INT_MAX / 2 || g->sw > INT_MAX / 16 ||
	    !__builtin_cpu_supports("avx2"))
		return false;
	return poolk_row_avx2(g, dt, x, p, h0, h1, out, idx, a, b, relu);
}

/* The backward of windows ow .. ow+7 (scatter2 below): each window's four
 * cells get dout at its arg-max and +0 elsewhere, the same bits, written
 * as two rows of 16 floats. */
__attribute__((target("avx2"))) static inline void scatter2_block8(const int64_t *ir,
								    const float *dr, float *r0,
								    float *r1, int64_t base,
								    int64_t W, int64_t ow)
{
	const __m256i low = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
	__m256i at = _mm256_set1_epi64x(base + 2 * ow);
	__m256i i0 = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(const void *)(ir + ow)),
				      _mm256_add_epi64(at, _mm256_setr_epi64x(0, 2, 4, 6)));
	__m256i i1 = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(const void *)(ir + ow + 4)),
				      _mm256_add_epi64(at, _mm256_setr_epi64x(8, 10, 12, 14)));
	/* the offsets in the window, 0, 1, W or W + 1: the low halves */
	__m256i off = _mm256_inserti128_si256(
	    _mm256_castsi128_si256(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(i0, low))),
	    _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(i1, low)), 1);
	__m256 d = _mm256_add_ps(_mm256_loadu_ps(dr + ow), _mm256_setzero_ps()); /* -0: +0 */
#define AT_OFF(k) _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(off, _mm256_set1_epi32((int)(k)))), d)
	__m256 v0 = AT_OFF(0), v1 = AT_OFF(1), v2 = AT_OFF(W), v3 = AT_OFF(W + 1);
#undef AT_OFF
	__m256 lo = _mm256_unpacklo_ps(v0, v1), hi = _mm256_unpackhi_ps(v0, v1);
	_mm256_storeu_ps(r0 + 2 * ow, _mm256_permute2f128_ps(lo, hi, 0x20));
	_mm256_storeu_ps(r0 + 2 * ow + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
	lo = _mm256_unpacklo_ps(v2, v3);
	hi = _mm256_unpackhi_ps(v2, v3);
	_mm256_storeu_ps(r1 + 2 * ow, _mm256_permute2f128_ps(lo, hi, 0x20));
	_mm256_storeu_ps(r1 + 2 * ow + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

/* Windows ow .. ow+3, the same in 128-bit registers. */
__attribute__((target("avx2"))) static inline void scatter2_block4(const int64_t *ir,
								    const float *dr, float *r0,
								    float *r1, int64_t base,
								    int64_t W, int64_t ow)
{
	const __m256i low = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
	__m256i i0 = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(const void *)(ir + ow)),
				      _mm256_add_epi64(_mm256_set1_epi64x(base + 2 * ow),
						       _mm256_setr_epi64x(0, 2, 4, 6)));
	__m128i off = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(i0, low));
	__m128 d = _mm_add_ps(_mm_loadu_ps(dr + ow), _mm_setzero_ps()); /* -0: +0 */
#define AT_OFF(k) _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(off, _mm_set1_epi32((int)(k)))), d)
	__m128 v0 = AT_OFF(0), v1 = AT_OFF(1), v2 = AT_OFF(W), v3 = AT_OFF(W + 1);
#undef AT_OFF
	_mm_storeu_ps(r0 + 2 * ow, _mm_unpacklo_ps(v0, v1));
	_mm_storeu_ps(r0 + 2 * ow + 4, _mm_unpackhi_ps(v0, v1));
	_mm_storeu_ps(r1 + 2 * ow, _mm_unpacklo_ps(v2, v3));
	_mm_storeu_ps(r1 + 2 * ow + 4, _mm_unpackhi_ps(v2, v3));
}

/* One output row's windows (r0, r1: their two rows of dx), blocks as in
 * pool2_row_f32_avx2; the windows done, OW or 0. */
__attribute__((target("avx2"))) static int64_t scatter2_row_f32_avx2(const int64_t *ir,
								    const float *dr, float *r0,
								    float *r1, int64_t base,
								    int64_t W, int64_t OW)
{
	if (OW >= 8) {
		for (int64_t ow = 0; ow + 8 <= OW; ow += 8)
			scatter2_block8(ir, dr, r0, r1, base, W, ow);
		if (OW % 8)
			scatter2_block8(ir, dr, r0, r1, base, W, OW - 8);
		return OW;
	}
	if (OW >= 4) {
		scatter2_block4(ir, dr, r0, r1, base, W, 0);
		if (OW > 4)
			scatter2_block4(ir, dr, r0, r1, base, W, OW - 4);
		return OW;
	}
	return 0;
}

static int64_t scatter2_row_f32(const int64_t *ir, const float *dr, float *r0, float *r1,
				int64_t base, int64_t W, int64_t OW)
{
	if (W >= INT_MAX / 2 || !__builtin_cpu_supports("avx2"))
		return 0;
	return scatter2_row_f32_avx2(ir, dr, r0, r1, base, W, OW);
}

/* Windows ow .. ow+3 of a double output row, as scatter2_block4 does
 * floats: each cell gets dout where it is the arg-max, else +0. */
__attribute__((target("avx2"))) static inline void scatter2_block4_pd(const int64_t *ir,
								       const double *dr, double *r0,
								       double *r1, int64_t base,
								       int64_t W, int64_t ow)
{
	__m256i off = _mm256_sub_epi64(_mm256_loadu_si256((const __m256i *)(const void *)(ir + ow)),
				       _mm256_add_epi64(_mm256_set1_epi64x(base + 2 * ow),
							_mm256_setr_epi64x(0, 2, 4, 6)));
	__m256d d = _mm256_add_pd(_mm256_loadu_pd(dr + ow), _mm256_setzero_pd()); /* -0: +0 */
#define AT_OFF(k)                                                                          \
	_mm256_and_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(off, _mm256_set1_epi64x(k))), d)
	__m256d v0 = AT_OFF(0), v1 = AT_OFF(1), v2 = AT_OFF(W), v3 = AT_OFF(W + 1);
#undef AT_OFF
	/* unpacklo: cells 0 1 of windows 0 and 2, unpackhi: of windows 1 and 3 */
	__m256d lo = _mm256_unpacklo_pd(v0, v1), hi = _mm256_unpackhi_pd(v0, v1);
	_mm256_storeu_pd(r0 + 2 * ow, _mm256_permute2f128_pd(lo, hi, 0x20));
	_mm256_storeu_pd(r0 + 2 * ow + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
	lo = _mm256_unpacklo_pd(v2, v3);
	hi = _mm256_unpackhi_pd(v2, v3);
	_mm256_storeu_pd(r1 + 2 * ow, _mm256_permute2f128_pd(lo, hi, 0x20));
	_mm256_storeu_pd(r1 + 2 * ow + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
}

/* One output row's windows of doubles, four at a time as pool2_row_f64_avx2;
 * the windows done, OW or 0. */
__attribute__((target("avx2"))) static int64_t scatter2_row_f64_avx2(const int64_t *ir,
								      const double *dr, double *r0,
								      double *r1, int64_t base,
								      int64_t W, int64_t OW)
{
	if (OW < 4)
		return 0;
	for (int64_t ow = 0; ow + 4 <= OW; ow += 4)
		scatter2_block4_pd(ir, dr, r0, r1, base, W, ow);
	if (OW % 4)
		scatter2_block4_pd(ir, dr, r0, r1, base, W, OW - 4);
	return OW;
}

static int64_t scatter2_row_f64(const int64_t *ir, const double *dr, double *r0, double *r1,
				int64_t base, int64_t W, int64_t OW)
{
	if (!__builtin_cpu_supports("avx2"))
		return 0;
	return scatter2_row_f64_avx2(ir, dr, r0, r1, base, W, OW);
}
#else
#define pool2_row_f32(r0, r1, out, idx, base, W, OW, relu, nan) ((int64_t)0)
#define pool2_row_f64(r0, r1, out, idx, base, W, OW, relu, nan) ((int64_t)0)
#define poolk_row(g, dt, x, p, h0, h1, out, idx, a, b, relu) false
#define scatter2_row_f32(ir, dr, r0, r1, base, W, OW) ((int64_t)0)
#define scatter2_row_f64(ir, dr, r0, r1, base, W, OW) ((int64_t)0)
#endif

/* For the planes [p0, p1) of x (N*C planes HxW): idx = the flat index into
 * x of the first maximum of each window in row-major order and out = x
 * there; padding never wins. 2x2 at stride 2 has a loop of its own that
 * the compiler keeps free of branches, comparing with > only (rows of 4
 * windows or more take AVX2 blocks, pool2_row_f32 and pool2_row_f64: the
 * scalar loop's relu is a branch, mispredicted on half the cells of a
 * layer's output); an output row whose
 * windows hold a NaN is done again by the general loop. In the general
 * loop the windows that lie inside x take AVX2 blocks (poolk_row), the
 * columns at the edges one window at a time. */
#define MAXPOOL_KERNEL(name, T, DT, row_fast)                                              \
	static void name(const geom *g, const T *x, T *out, int64_t *idx, int64_t p0,      \
			 int64_t p1, bool relu)                                            \
	{                                                                                  \
		int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, a, b;                  \
		bool two = two_by_two(g);                                                  \
		inner_columns(g, &a, &b);                                                  \
		out += p0 * OH * OW;                                                       \
		idx += p0 * OH * OW;                                                       \
		for (int64_t p = p0; p < p1; p++)                                          \
			for (int64_t oh = 0; oh < OH; oh++) {                              \
				int64_t h0, h1;                                            \
				window(oh, g->sh, g->ph, g->KH, H, &h0, &h1);              \
				int64_t base = (p * H + h0) * W;                           \
				if (two) {                                                 \
					const T *r0 = x + base, *r1 = r0 + W;              \
					bool nan = false;                                  \
					int64_t ow = row_fast(r0, r1, out, idx, base, W, OW, relu, \
							      &nan);                       \
					for (; ow < OW; ow++) {                            \
						int64_t i = 2 * ow;                        \
						T a = RELU_IF(relu, r0[i]);                \
						T b = RELU_IF(relu, r0[i + 1]);            \
						T c = RELU_IF(relu, r1[i]);                \
						T d = RELU_IF(relu, r1[i + 1]);            \
						nan |= (a != a) | (b != b) | (c != c) | (d != d); \
						T ab = b > a ? b : a, cd = d > c ? d : c;  \
						int64_t kab = b > a, kcd = W + (d > c);    \
						int64_t sel = cd > ab;                     \
						out[ow] = cd > ab ? cd : ab;               \
						idx[ow] = base + i + kab + sel * (kcd - kab); \
					}                                                  \
					if (!nan) {                                        \
						out += OW;                                 \
						idx += OW;                                 \
						continue;                                  \
					}                                                  \
				}                                                          \
				bool inner = poolk_row(g, DT, x, p, h0, h1, out, idx, a, b, relu); \
				for (int64_t ow = 0; ow < OW; ow++) {                      \
					if (inner && ow == a) {                            \
						ow = b - 1; /* done in registers */        \
						continue;                                  \
					}                                                  \
					int64_t w0, w1;                                    \
					window(ow, g->sw, g->pw, g->KW, W, &w0, &w1);      \
					int64_t best = base + w0;                          \
					T v = RELU_IF(relu, x[best]);                      \
					for (int64_t ih = h0; ih < h1; ih++) {             \
						const T *r = x + (p * H + ih) * W;         \
						for (int64_t iw = w0; iw < w1; iw++) {     \
							T c = RELU_IF(relu, r[iw]);        \
							bool t = WINS(c, v);               \
							v = t ? c : v;                     \
							best = t ? (p * H + ih) * W + iw : best; \
						}                                          \
					}                                                  \
					out[ow] = v;                                       \
					idx[ow] = best;                                    \
				}                                                          \
				out += OW;                                                 \
				idx += OW;                                                 \
			}                                                                  \
	}

/* v through a relu when on (tg_relu's x < 0 ? 0 : x) */
#define RELU_IF(on, v) ((on) && (v) < 0 ? 0 : (v))

MAXPOOL_KERNEL(maxpool_f64, double, TG_F64, pool2_row_f64)
MAXPOOL_KERNEL(maxpool_f32, float, TG_F32, pool2_row_f32)

typedef struct pool_job {
	const pool_aux *a;
	tg_dtype dt;
	const void *x;    /* max_pool2d: x; scatter: dout */
	void *y;          /* max_pool2d: out; scatter: dx */
	int64_t *idx;
	bool relu;        /* max_pool2d: of relu(x) */
} pool_job;

static void maxpool_planes(void *arg, int tid, int64_t p0, int64_t p1)
{
	const pool_job *j = arg;
	(void)tid;
	if (j->dt == TG_F64)
		maxpool_f64(&j->a->g, j->x, j->y, j->idx, p0, p1, j->relu);
	else
		maxpool_f32(&j->a->g, j->x, j->y, j->idx, p0, p1, j->relu);
}

/* The 2x2 window at stride 2 without padding: its four cells are zeroed and
 * dout written at the arg-max (dout + 0: a -0 gives +0, as adding it to a
 * zeroed cell does elsewhere), window by window while they are in cache
 * (no pass zeroing the planes first, no branch; rows of 4 windows or more
 * in AVX2 blocks, scatter2_row_f32 and scatter2_row_f64); rows and columns that no
 * window covers (odd sides) are zeroed. */
#define SCATTER2_KERNEL(name, T, row_fast)                                                 \
	static void name(const geom *g, const int64_t *idx, const T *d, T *dx, int64_t p0, \
			 int64_t p1)                                                       \
	{                                                                                  \
		int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;                        \
		for (int64_t p = p0; p < p1; p++) {                                        \
			T *plane = dx + p * H * W;                                         \
			for (int64_t oh = 0; oh < OH; oh++) {                              \
				int64_t base = (p * H + 2 * oh) * W;                       \
				T *r0 = dx + base, *r1 = r0 + W;                           \
				const int64_t *ir = idx + (p * OH + oh) * OW;              \
				const T *dr = d + (p * OH + oh) * OW;                      \
				int64_t ow = row_fast(ir, dr, r0, r1, base, W, OW);        \
				for (; ow < OW; ow++) {                                    \
					r0[2 * ow] = r0[2 * ow + 1] = 0;                   \
					r1[2 * ow] = r1[2 * ow + 1] = 0;                   \
					dx[ir[ow]] = dr[ow] + 0; /* -0: +0 */              \
				}                                                          \
				for (int64_t iw = 2 * OW; iw < W; iw++)                    \
					r0[iw] = r1[iw] = 0;                               \
			}                                                                  \
			for (int64_t ih = 2 * OH; ih < H; ih++)                            \
				for (int64_t iw = 0; iw < W; iw++)                         \
					plane[ih * W + iw] = 0;                            \
		}                                                                          \
	}

SCATTER2_KERNEL(scatter2_f64, double, scatter2_row_f64)
SCATTER2_KERNEL(scatter2_f32, float, scatter2_row_f32)

/* dx planes [p0, p1) = 0, then dx[idx[i]] += dout[i] for their outputs i:
 * a window's arg-max lies in its own plane, so planes split cleanly. */
static void scatter_planes(void *arg, int tid, int64_t p0, int64_t p1)
{
	const pool_job *j = arg;
	const geom *g = &j->a->g;
	(void)tid;
	size_t HW = (size_t)(g->H * g->W), L = (size_t)(g->OH * g->OW);
	size_t i0 = (size_t)p0 * L, i1 = (size_t)p1 * L;
	const int64_t *idx = j->a->idx;
	if (two_by_two(g)) {
		if (j->dt == TG_F64)
			scatter2_f64(g, idx, j->x, j->y, p0, p1);
		else
			scatter2_f32(g, idx, j->x, j->y, p0, p1);
		return;
	}
	if (j->dt == TG_F64) {
		double *dx = j->y;
		const double *d = j->x;
		memset(dx + (size_t)p0 * HW, 0, (size_t)(p1 - p0) * HW * sizeof *dx);
		for (size_t i = i0; i < i1; i++)
			dx[idx[i]] += d[i];
	} else {
		float *dx = j->y;
		const float *d = j->x;
		memset(dx + (size_t)p0 * HW, 0, (size_t)(p1 - p0) * HW * sizeof *dx);
		for (size_t i = i0; i < i1; i++)
			dx[idx[i]] += d[i];
	}
}

/* Planes of a pool are split across threads only when there is enough work
 * for a thread's start to pay (some 20 us). */
enum { POOL_PAR_ELEMS = 1 << 16 };

static int pool_workers(const tg_ctx *ctx, const geom *g)
{
	return g->N * g->C * g->H * g->W < POOL_PAR_ELEMS ? 1 : workers(ctx, g->N * g->C);
}

/* dx (N,C,H,W) = 0, then dx[idx[i]] += dout[i] */
static tg_tensor *scatter_at(const pool_aux *a, tg_tensor *dout)
{
	static const char who[] = "max_pool2d_backward";
	tg_ctx *ctx = tg_op_begin(who, 1, &dout);
	if (!ctx)
		return NULL;
	const geom *g = &a->g;
	tg_tensor *dx = tg_tensor_new(ctx, who, dout->dtype, 4, (int64_t[]){ g->N, g->C, g->H, g->W });
	if (!dx)
		return NULL;
	pool_job j = { a, dout->dtype, dout->data, dx->data, NULL, false };
	par_for(ctx, pool_workers(ctx, g), g->N * g->C, scatter_planes, &j);
	return tg_op_end(&max_pool2d_backward_op, dx, 1, &dout, NULL, 0, a);
}

/* tg_max_pool2d and tg_relu_max_pool2d: op's node over the max pool of x
 * (relu: of relu(x)). */
static tg_tensor *max_pool_as(const tg_op *op, const char *who, bool relu, tg_tensor *x,
			      int kernel, int stride, int padding)
{
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	pool_aux a;
	if (!pool_geom(ctx, who, x, kernel, stride, padding, &a.g))
		return NULL;
	int64_t *idx = tg_arena_alloc(ctx, (size_t)(a.g.N * a.g.C * a.g.OH * a.g.OW) * sizeof *idx);
	if (!idx)
		return NULL;
	a.idx = idx;
	const pool_aux *saved = tg_save_aux(ctx, &a, sizeof a);
	tg_tensor *out = saved ? tg_tensor_new(ctx, who, x->dtype, 4,
					       (int64_t[]){ a.g.N, a.g.C, a.g.OH, a.g.OW })
			       : NULL;
	if (!out)
		return NULL;
	pool_job j = { saved, x->dtype, x->data, out->data, idx, relu };
	par_for(ctx, pool_workers(ctx, &a.g), a.g.N * a.g.C, maxpool_planes, &j);
	return tg_op_end(op, out, 1, &x, NULL, 0, saved);
}

tg_tensor *tg_max_pool2d(tg_tensor *x, int kernel, int stride, int padding)
{
	return max_pool_as(&max_pool2d_op, "tg_max_pool2d", false, x, kernel, stride, padding);
}

/* ---- relu_max_pool2d: max_pool2d(relu(x)), one node ------------------------------------ */
/* The same bits as tg_max_pool2d(tg_relu(x), ...) forward and backward: the
 * pool takes each cell through the relu as it reads it. The backward gates
 * dout on the pooled output (y > 0 where the arg-max cell was, as x > 0
 * there) before scattering it, a pass over the output instead of over x.
 * The two ops gate the cell's sum instead; a window's gate is its arg-max
 * cell's, so every dout routed to a cell passes or every one gets +0: a
 * cell on the relu gets the same sum in the same order, one off it +0 (the
 * scatter adds the +0s to zeros, or, 2x2 at stride 2, writes the one), as
 * tg_relu_backward's select gives it whatever the douts held. */

static void relu_max_pool2d_backward(tg_node *n, tg_tensor *dout)
{
	const pool_aux *a = n->aux;
	TG_NODE_GRAD_INTO(n, 0, scatter_at(a, tg_relu_backward(dout, tg_node_output(n))));
}

static const tg_op relu_max_pool2d_op = { .name = "relu_max_pool2d",
					  .backward = relu_max_pool2d_backward,
					  .describe = max_pool_describe };
TG_OP_REGISTER(relu_max_pool2d_op);

tg_tensor *tg_relu_max_pool2d(tg_tensor *x, int kernel, int stride, int padding)
{
	return max_pool_as(&relu_max_pool2d_op, "tg_relu_max_pool2d", true, x, kernel, stride,
			   padding);
}

/* ---- avg_pool2d: out = the window's sum / (KH KW), padding counted as zeros;
 *      dx = avg_pool2d_backward(dout) ---------------------------------------------- */
/* ---- avg_pool2d_backward: dx spreads each dout / (KH KW) over its window, its
 *      adjoint; d dout = avg_pool2d(g) ---------------------------------------------- */

static tg_tensor *avg_pool(const geom *g, tg_tensor *x);
static tg_tensor *avg_unpool(const geom *g, tg_tensor *dout);

static void avg_pool2d_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, avg_unpool(n->aux, dout));
}

static void avg_pool2d_backward_backward(tg_node *n, tg_tensor *dx)
{
	tg_node_grad(n, 0, avg_pool(n->aux, dx));
}

static const tg_op avg_pool2d_op = { .name = "avg_pool2d", .backward = avg_pool2d_backward,
				     .describe = pool_describe, .unread = TG_UNREAD_ALL };
static const tg_op avg_pool2d_backward_op = { .name = "avg_pool2d_backward",
					      .backward = avg_pool2d_backward_backward,
					      .describe = pool_describe, .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(avg_pool2d_op);
TG_OP_REGISTER(avg_pool2d_backward_op);

/* The output columns [*a, *b) whose window's column j (0 <= j < KW) lies
 * inside x: 0 <= ow sw - pw + j < W. */
static void tap_columns(const geom *g, int64_t j, int64_t *a, int64_t *b)
{
	int64_t lo = g->pw - j, hi = g->W - 1 + g->pw - j;
	*a = lo <= 0 ? 0 : (lo + g->sw - 1) / g->sw;
	*b = hi < 0 ? 0 : hi / g->sw + 1;
	if (*b > g->OW)
		*b = g->OW;
	if (*b < *a)
		*b = *a;
}

/* The kernel columns [*j0, *j1) that reach an input column from some
 * output: the others add nothing, and a kernel far wider than the image
 * (legal with padding) would cost its width per row. */
static void tap_range(const geom *g, int64_t *j0, int64_t *j1)
{
	int64_t lo = g->pw - (g->OW - 1) * g->sw, hi = g->W + g->pw;
	*j0 = lo > 0 ? lo : 0;
	*j1 = hi < g->KW ? hi : g->KW;
}

/* s[ow] = the sum of acc over window ow's columns, in their order: a pass
 * over the outputs per kernel column. */
TG_HOT_LOOP static void window_sums(const geom *g, const double *restrict acc, double *restrict s)
{
	int64_t sw = g->sw;
	for (int64_t ow = 0; ow < g->OW; ow++)
		s[ow] = 0;
	int64_t j0, j1;
	tap_range(g, &j0, &j1);
	for (int64_t j = j0; j < j1; j++) {
		int64_t a, b, off = j - g->pw;
		tap_columns(g, j, &a, &b);
		for (int64_t ow = a; ow < b; ow++)
			s[ow] += acc[ow * sw + off];
	}
}

/* window_sums' adjoint: acc[iw] = the sum of v over the windows holding
 * column iw. */
TG_HOT_LOOP static void window_spread(const geom *g, const double *restrict v,
				      double *restrict acc)
{
	int64_t sw = g->sw;
	for (int64_t iw = 0; iw < g->W; iw++)
		acc[iw] = 0;
	int64_t j0, j1;
	tap_range(g, &j0, &j1);
	for (int64_t j = j0; j < j1; j++) {
		int64_t a, b, off = j - g->pw;
		tap_columns(g, j, &a, &b);
		for (int64_t ow = a; ow < b; ow++)
			acc[ow * sw + off] += v[ow];
	}
}

/* Y (N,C,OH,OW) = window sums of X / (KH KW), or, adjoint, X (N,C,H,W) gets
 * each Y / (KH KW) over its window; planes [p0, p1), acc AVG_ROW doubles.
 * Row by row of the output: pool sums the window's KH input rows into acc
 * (a vector pass per row), then each window's KW columns of acc
 * (window_sums), in double as before, one rounding to a float. unpool
 * spreads the output row's values over acc's columns in double
 * (window_spread), rounds once and writes the row to the window's input
 * rows, adding it to those an earlier window wrote (windows start at rows
 * that do not decrease): no pass clearing dx first, and the bits of adding
 * to zeros, signs of zeros included (the row is its rounding plus 0). The
 * window-by-window loops these replace took a quarter of a small CNN's step.
 * 2x2 windows at stride 2 without padding take loops of their own over
 * pairs of rows (pool##_row2, unpool##_row2) with the same sums in the
 * same order (0 + the first column's two rows + the second's), which the
 * compiler vectorises: the strided passes of window_sums and window_spread
 * over each row were most of such a pool's time. */
#define AVG_KERNELS(pool, unpool, T)                                                       \
	TG_HOT_LOOP static void pool##_rows(const T *restrict X, int64_t W, int64_t h0,    \
					    int64_t h1, double *restrict acc)              \
	{                                                                                  \
		if (h1 <= h0) {                                                            \
			for (int64_t iw = 0; iw < W; iw++)                                 \
				acc[iw] = 0;                                               \
			return;                                                            \
		}                                                                          \
		for (int64_t iw = 0; iw < W; iw++)                                         \
			acc[iw] = X[h0 * W + iw];                                          \
		for (int64_t ih = h0 + 1; ih < h1; ih++)                                   \
			for (int64_t iw = 0; iw < W; iw++)                                 \
				acc[iw] += X[ih * W + iw];                                 \
	}                                                                                  \
	TG_HOT_LOOP static void pool##_row2(const T *restrict r0, const T *restrict r1,    \
					    T *restrict y, int64_t OW)                     \
	{                                                                                  \
		for (int64_t ow = 0; ow < OW; ow++) {                                      \
			double a0 = (double)r0[2 * ow] + (double)r1[2 * ow];               \
			double a1 = (double)r0[2 * ow + 1] + (double)r1[2 * ow + 1];       \
			y[ow] = (T)((0.0 + a0 + a1) * 0.25);                               \
		}                                                                          \
	}                                                                                  \
	static void pool(const geom *g, const T *X, T *Y, double *acc, int64_t p0, int64_t p1) \
	{                                                                                  \
		double scale = 1.0 / (double)(g->KH * g->KW), *sums = acc + g->W;          \
		X += p0 * g->H * g->W;                                                     \
		Y += p0 * g->OH * g->OW;                                                   \
		if (two_by_two(g)) {                                                       \
			for (int64_t p = p0; p < p1; p++, X += g->H * g->W)                \
				for (int64_t oh = 0; oh < g->OH; oh++, Y += g->OW)         \
					pool##_row2(X + 2 * oh * g->W, X + (2 * oh + 1) * g->W, \
						    Y, g->OW);                             \
			return;                                                            \
		}                                                                          \
		for (int64_t p = p0; p < p1; p++, X += g->H * g->W)                        \
			for (int64_t oh = 0; oh < g->OH; oh++, Y += g->OW) {               \
				int64_t h0, h1;                                            \
				window(oh, g->sh, g->ph, g->KH, g->H, &h0, &h1);           \
				pool##_rows(X, g->W, h0, h1, acc);                         \
				window_sums(g, acc, sums);                                 \
				for (int64_t ow = 0; ow < g->OW; ow++)                     \
					Y[ow] = (T)(sums[ow] * scale);                     \
			}                                                                  \
	}                                                                                  \
	TG_HOT_LOOP static void unpool##_rows(const double *restrict acc, T *restrict row, \
					      T *restrict X, int64_t W, int64_t h0,        \
					      int64_t h1, int64_t done)                    \
	{                                                                                  \
		int64_t mid = h1 < done ? h1 : done;                                       \
		for (int64_t iw = 0; iw < W; iw++)                                         \
			row[iw] = (T)acc[iw] + 0; /* a -0 rounded from acc: +0 */          \
		for (int64_t ih = h0; ih < mid; ih++)                                      \
			for (int64_t iw = 0; iw < W; iw++)                                 \
				X[ih * W + iw] += row[iw];                                 \
		for (int64_t ih = mid > h0 ? mid : h0; ih < h1; ih++)                      \
			for (int64_t iw = 0; iw < W; iw++)                                 \
				X[ih * W + iw] = row[iw];                                  \
	}                                                                                  \
	TG_HOT_LOOP static void unpool##_row2(const T *restrict y, T *restrict r0,         \
					      T *restrict r1, int64_t OW, int64_t W)       \
	{                                                                                  \
		for (int64_t ow = 0; ow < OW; ow++) {                                      \
			T v = (T)(0.0 + (double)y[ow] * 0.25) + 0;                         \
			r0[2 * ow] = r0[2 * ow + 1] = r1[2 * ow] = r1[2 * ow + 1] = v;     \
		}                                                                          \
		for (int64_t iw = 2 * OW; iw < W; iw++)                                    \
			r0[iw] = r1[iw] = 0;                                               \
	}                                                                                  \
	static void unpool(const geom *g, const T *Y, T *X, double *acc, int64_t p0, int64_t p1) \
	{                                                                                  \
		double scale = 1.0 / (double)(g->KH * g->KW);                              \
		size_t HW = (size_t)(g->H * g->W);                                         \
		double *v = acc + g->W;                                                    \
		T *row = (T *)(v + g->OW);                                                 \
		X += (size_t)p0 * HW;                                                      \
		Y += p0 * g->OH * g->OW;                                                   \
		if (two_by_two(g)) {                                                       \
			for (int64_t p = p0; p < p1; p++, X += HW) {                       \
				for (int64_t oh = 0; oh < g->OH; oh++, Y += g->OW)         \
					unpool##_row2(Y, X + 2 * oh * g->W,                \
						      X + (2 * oh + 1) * g->W, g->OW, g->W); \
				if (2 * g->OH < g->H)                                      \
					memset(X + 2 * g->OH * g->W, 0,                    \
					       (size_t)((g->H - 2 * g->OH) * g->W) * sizeof *X); \
			}                                                                  \
			return;                                                            \
		}                                                                          \
		for (int64_t p = p0; p < p1; p++, X += HW) {                               \
			int64_t done = 0; /* rows [0, done) written */                     \
			for (int64_t oh = 0; oh < g->OH; oh++, Y += g->OW) {               \
				int64_t h0, h1;                                            \
				window(oh, g->sh, g->ph, g->KH, g->H, &h0, &h1);           \
				if (h0 > done) /* rows between windows */                  \
					memset(X + done * g->W, 0,                         \
					       (size_t)((h0 - done) * g->W) * sizeof *X);  \
				for (int64_t ow = 0; ow < g->OW; ow++)                     \
					v[ow] = Y[ow] * scale;                             \
				window_spread(g, v, acc);                                  \
				unpool##_rows(acc, row, X, g->W, h0, h1, done);            \
				done = h1 > done ? h1 : (h0 > done ? h0 : done);           \
			}                                                                  \
			if (done < g->H)                                                   \
				memset(X + done * g->W, 0,                                 \
				       (size_t)((g->H - done) * g->W) * sizeof *X);        \
		}                                                                          \
	}

AVG_KERNELS(avg_pool_f64, avg_unpool_f64, double)
AVG_KERNELS(avg_pool_f32, avg_unpool_f32, float)

/* a run's buffers: acc (W), the window sums or values (OW <= W + 1), a row of T */
#define AVG_ROW(g) (3 * (size_t)(g)->W + 2)

typedef struct avg_job {
	const geom *g;
	bool pool;   /* the pool, or its adjoint */
	bool f64;
	const void *in;
	void *out;
	double *acc; /* AVG_ROW doubles per run */
} avg_job;

static void avg_planes(void *arg, int tid, int64_t p0, int64_t p1)
{
	const avg_job *j = arg;
	double *acc = j->acc + (size_t)tid * AVG_ROW(j->g);
	if (j->pool && j->f64)
		avg_pool_f64(j->g, j->in, j->out, acc, p0, p1);
	else if (j->pool)
		avg_pool_f32(j->g, j->in, j->out, acc, p0, p1);
	else if (j->f64)
		avg_unpool_f64(j->g, j->in, j->out, acc, p0, p1);
	else
		avg_unpool_f32(j->g, j->in, j->out, acc, p0, p1);
}

/* The pool (or its adjoint) of in into out over the planes of g, split as
 * max_pool2d's. */
static bool avg_run(tg_ctx *ctx, const geom *g, bool pool, const tg_tensor *in, tg_tensor *out)
{
	int T = pool_workers(ctx, g);
	double *acc = tg_arena_alloc(ctx, (size_t)T * AVG_ROW(g) * sizeof *acc);
	if (!acc)
		return false;
	avg_job j = { g, pool, in->dtype == TG_F64, in->data, out->data, acc };
	par_for(ctx, T, g->N * g->C, avg_planes, &j);
	return true;
}

static tg_tensor *avg_pool(const geom *g, tg_tensor *x)
{
	static const char who[] = "tg_avg_pool2d";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, 4, (int64_t[]){ g->N, g->C, g->OH, g->OW });
	if (!out || !avg_run(ctx, g, true, x, out))
		return NULL;
	return tg_op_end(&avg_pool2d_op, out, 1, &x, NULL, 0, g);
}

static tg_tensor *avg_unpool(const geom *g, tg_tensor *dout)
{
	static const char who[] = "avg_pool2d_backward";
	tg_ctx *ctx = tg_op_begin(who, 1, &dout);
	if (!ctx)
		return NULL;
	tg_tensor *dx = tg_tensor_new(ctx, who, dout->dtype, 4, (int64_t[]){ g->N, g->C, g->H, g->W });
	if (!dx || !avg_run(ctx, g, false, dout, dx))
		return NULL;
	return tg_op_end(&avg_pool2d_backward_op, dx, 1, &dout, NULL, 0, g);
}

tg_tensor *tg_avg_pool2d(tg_tensor *x, int kernel, int stride, int padding)
{
	static const char who[] = "tg_avg_pool2d";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	geom g;
	if (!pool_geom(ctx, who, x, kernel, stride, padding, &g))
		return NULL;
	const geom *saved = save_geom(ctx, &g);
	return saved ? avg_pool(saved, x) : NULL;
}
