/*
 * conv.c - convolution and pooling of NCHW images: conv2d and its two
 * gradient ops, max_pool2d and avg_pool2d and their adjoints.
 *
 * conv2d is cross-correlation as in PyTorch, computed the book's way: im2col
 * copies the receptive fields of a batch of images (one group of their
 * channels) into the columns of a buffer in the step arena, and one BLAS GEMM
 * per batch and group does the sums; col2im adds columns back for the input
 * gradient. The three conv ops are linear in each input and each one's
 * gradient is written with the others, so every rule differentiates again
 * (TG_CREATE_GRAPH); the pools' pairs are each other's adjoint. No loop here
 * allocates outside the step arena.
 * Shape legend: x (N,C,H,W), w (O,CG,KH,KW), out (N,O,OH,OW); G groups, CG =
 * C/G and OG = O/G channels per group, L = OH*OW positions, K = CG*KH*KW.
 */
#include "internal.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* The geometry of one conv or pool, kept with its nodes as aux: the ops of
 * its backward share the pointer (it lives in the step arena). */
typedef struct geom {
	int64_t N, C, H, W;     /* the input */
	int64_t O, KH, KW;      /* output channels (C for a pool), the kernel */
	int64_t OH, OW;         /* the output's rows and columns */
	int64_t sh, sw, ph, pw; /* stride, zero padding on each side */
	int64_t dh, dw;         /* dilation (1 for a pool) */
	int64_t G;              /* groups (1 for a pool) */
} geom;

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
 * column per output position; positions in the padding read 0. */
#define IM2COL(name, T)                                                                    \
	static void name(const geom *g, const T *x, T *col, int64_t ld)                    \
	{                                                                                  \
		int64_t CG = g->C / g->G;                                                  \
		for (int64_t c = 0; c < CG; c++)                                           \
			for (int64_t kh = 0; kh < g->KH; kh++)                             \
				for (int64_t kw = 0; kw < g->KW; kw++) {                   \
					T *row = col + ((c * g->KH + kh) * g->KW + kw) * ld; \
					int64_t off = kw * g->dw - g->pw, lo, hi;          \
					span(g->OW, g->sw, off, g->W, &lo, &hi);           \
					for (int64_t oh = 0; oh < g->OH; oh++) {           \
						T *r = row + oh * g->OW;                   \
						int64_t ih = oh * g->sh - g->ph + kh * g->dh; \
						if (ih < 0 || ih >= g->H) {                \
							memset(r, 0, (size_t)g->OW * sizeof(T)); \
							continue;                          \
						}                                          \
						const T *xr = x + (c * g->H + ih) * g->W + off; \
						for (int64_t ow = 0; ow < lo; ow++)        \
							r[ow] = 0;                         \
						if (g->sw == 1)                            \
							memcpy(r + lo, xr + lo,            \
							       (size_t)(hi - lo) * sizeof(T)); \
						else                                       \
							for (int64_t ow = lo; ow < hi; ow++) \
								r[ow] = xr[ow * g->sw];    \
						for (int64_t ow = hi; ow < g->OW; ow++)    \
							r[ow] = 0;                         \
					}                                                  \
				}                                                          \
	}

/* x (CG,H,W) += each column of col (K, L), rows ld apart, added back where
 * it was read. */
#define COL2IM(name, T)                                                                    \
	static void name(const geom *g, const T *col, T *x, int64_t ld)                    \
	{                                                                                  \
		int64_t CG = g->C / g->G;                                                  \
		for (int64_t c = 0; c < CG; c++)                                           \
			for (int64_t kh = 0; kh < g->KH; kh++)                             \
				for (int64_t kw = 0; kw < g->KW; kw++) {                   \
					const T *row = col + ((c * g->KH + kh) * g->KW + kw) * ld; \
					int64_t off = kw * g->dw - g->pw, lo, hi;          \
					span(g->OW, g->sw, off, g->W, &lo, &hi);           \
					for (int64_t oh = 0; oh < g->OH; oh++) {           \
						int64_t ih = oh * g->sh - g->ph + kh * g->dh; \
						if (ih < 0 || ih >= g->H)                  \
							continue;                          \
						const T *r = row + oh * g->OW;             \
						T *xr = x + (c * g->H + ih) * g->W + off;  \
						for (int64_t ow = lo; ow < hi; ow++)       \
							xr[ow * g->sw] += r[ow];           \
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

/* C (M,N) = op(A) (M,K) @ op(B) (K,N) + beta C, row-major. */
static void gemm(tg_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
		 const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
		 int64_t ldc)
{
	enum CBLAS_TRANSPOSE fa = ta ? CblasTrans : CblasNoTrans;
	enum CBLAS_TRANSPOSE fb = tb ? CblasTrans : CblasNoTrans;
	if (dt == TG_F64)
		cblas_dgemm(CblasRowMajor, fa, fb, (int)M, (int)N, (int)K, 1.0, A, (int)lda, B,
			    (int)ldb, beta, C, (int)ldc);
	else
		cblas_sgemm(CblasRowMajor, fa, fb, (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B,
			    (int)ldb, (float)beta, C, (int)ldc);
}

/* The column buffer (K, B*L) and the rows (OG, B*L) of one batch in the
 * step arena; false (ENOMEM recorded) when they do not fit. */
static bool buffers(tg_ctx *ctx, const geom *g, tg_dtype dt, void **col, void **rows)
{
	int64_t K = g->C / g->G * g->KH * g->KW, BL = batch_of(g) * g->OH * g->OW;
	*col = tg_arena_alloc(ctx, (size_t)(K * BL) * tg_dtype_size(dt));
	*rows = *col ? tg_arena_alloc(ctx, (size_t)(g->O / g->G * BL) * tg_dtype_size(dt)) : NULL;
	return *rows != NULL;
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
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, conv_input_grad(g, dout, w));
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, conv_weight_grad(g, x, dout));
	if (n->nin == 3 && tg_node_needs_grad(n, 2))
		tg_node_grad(n, 2, tg_reshape(tg_sum_to(dout, 3, (int64_t[]){ g->O, 1, 1 }), 1,
					      &g->O));
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
TG_OP_REGISTER(conv2d_op);
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

/* The forward: g checked against x, w and b by the caller. */
static tg_tensor *conv(const geom *g, tg_tensor *x, tg_tensor *w, tg_tensor *b)
{
	static const char who[] = "tg_conv2d";
	tg_tensor *in[3] = { x, w, b };
	int nin = b ? 3 : 2;
	tg_ctx *ctx = tg_op_begin(who, nin, in);
	if (!ctx)
		return NULL;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, 4,
				       (int64_t[]){ g->N, g->O, g->OH, g->OW });
	void *col, *rows;
	if (!out || !buffers(ctx, g, x->dtype, &col, &rows))
		return NULL;
	tg_dtype dt = x->dtype;
	size_t size = tg_dtype_size(dt);
	int64_t OG = g->O / g->G, K = g->C / g->G * g->KH * g->KW, L = g->OH * g->OW;
	tg_blas_enter(ctx);
	for (int64_t n0 = 0, B; n0 < g->N; n0 += B) {
		B = g->N - n0 < batch_of(g) ? g->N - n0 : batch_of(g);
		for (int64_t grp = 0; grp < g->G; grp++) {
			im2col(g, dt, x->data, n0, B, grp, col);
			gemm(dt, false, false, OG, B * L, K,
			     (const char *)w->data + (size_t)(grp * OG * K) * size, K, col, B * L,
			     0.0, rows, B * L);
			if (b)
				add_bias(dt, (const char *)b->data + (size_t)(grp * OG) * size, rows,
					 OG, B * L);
			pack(g, size, out->data, n0, B, grp, rows, true);
		}
	}
	return tg_op_end(&conv2d_op, out, nin, in, NULL, 0, g);
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
	void *col, *rows;
	if (!dx || !buffers(ctx, g, dout->dtype, &col, &rows))
		return NULL;
	tg_dtype dt = dout->dtype;
	size_t size = tg_dtype_size(dt);
	int64_t OG = g->O / g->G, K = g->C / g->G * g->KH * g->KW, L = g->OH * g->OW;
	memset(dx->data, 0, dx->numel * size);
	tg_blas_enter(ctx);
	for (int64_t n0 = 0, B; n0 < g->N; n0 += B) {
		B = g->N - n0 < batch_of(g) ? g->N - n0 : batch_of(g);
		for (int64_t grp = 0; grp < g->G; grp++) {
			pack(g, size, dout->data, n0, B, grp, rows, false);
			gemm(dt, true, false, K, B * L, OG,
			     (const char *)w->data + (size_t)(grp * OG * K) * size, K, rows, B * L,
			     0.0, col, B * L);
			col2im(g, dt, col, n0, B, grp, dx->data);
		}
	}
	return tg_op_end(&conv2d_input_grad_op, dx, 2, in, NULL, 0, g);
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
	void *col, *rows;
	if (!dw || !buffers(ctx, g, x->dtype, &col, &rows))
		return NULL;
	tg_dtype dt = x->dtype;
	size_t size = tg_dtype_size(dt);
	if (g->N == 0)
		memset(dw->data, 0, dw->numel * size);
	tg_blas_enter(ctx);
	for (int64_t n0 = 0, B; n0 < g->N; n0 += B) {
		B = g->N - n0 < batch_of(g) ? g->N - n0 : batch_of(g);
		for (int64_t grp = 0; grp < g->G; grp++) {
			im2col(g, dt, x->data, n0, B, grp, col);
			pack(g, size, dout->data, n0, B, grp, rows, false);
			gemm(dt, false, true, OG, K, B * L, rows, B * L, col, B * L, n0 ? 1.0 : 0.0,
			     (char *)dw->data + (size_t)(grp * OG * K) * size, K);
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
	int64_t K = g->C / g->G * g->KH * g->KW, L = g->OH * g->OW;
	if (K > INT_MAX || L > INT_MAX || g->O > INT_MAX) {
		tg_fail(ctx, TG_ESHAPE, "%s: x %s, w %s: a size exceeds the BLAS limit %d", who, bx,
			bw, INT_MAX);
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

tg_tensor *tg_conv2d(tg_tensor *x, tg_tensor *w, tg_tensor *b, const tg_conv_opts *o)
{
	static const char who[] = "tg_conv2d";
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
	return saved ? conv(saved, x, w, b) : NULL;
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
	int G = o ? o->groups : 1;
	int64_t xs[4] = { dout->shape[0], w->shape[1] * (G > 0 ? G : 1), H, W };
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
	int G = o && o->groups > 0 ? o->groups : 1;
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
	tg_node_grad(n, 0, scatter_at(n->aux, dout));
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
	memset(dx->data, 0, dx->numel * tg_dtype_size(dx->dtype));
	if (dout->dtype == TG_F64)
		for (size_t i = 0; i < dout->numel; i++)
			((double *)dx->data)[a->idx[i]] += ((const double *)dout->data)[i];
	else
		for (size_t i = 0; i < dout->numel; i++)
			((float *)dx->data)[a->idx[i]] += ((const float *)dout->data)[i];
	return tg_op_end(&max_pool2d_backward_op, dx, 1, &dout, NULL, 0, a);
}

/* The value that wins a window: a larger one, or the first NaN. */
#define BEATS(a, b) ((a) > (b) || (isnan(a) && !isnan(b)))

/* idx (N,C,OH,OW) = the flat index into x of the first maximum of each
 * window in row-major order; padding never wins. */
#define ARGMAX_KERNEL(name, T)                                                             \
	static void name(const geom *g, const T *x, int64_t *idx)                          \
	{                                                                                  \
		for (int64_t p = 0; p < g->N * g->C; p++)                                  \
			for (int64_t oh = 0; oh < g->OH; oh++) {                           \
				int64_t h0, h1;                                            \
				window(oh, g->sh, g->ph, g->KH, g->H, &h0, &h1);           \
				for (int64_t ow = 0; ow < g->OW; ow++, idx++) {            \
					int64_t w0, w1;                                    \
					window(ow, g->sw, g->pw, g->KW, g->W, &w0, &w1);   \
					int64_t best = (p * g->H + h0) * g->W + w0;        \
					for (int64_t ih = h0; ih < h1; ih++)               \
						for (int64_t iw = w0; iw < w1; iw++) {     \
							int64_t i = (p * g->H + ih) * g->W + iw; \
							if (BEATS(x[i], x[best]))          \
								best = i;                  \
						}                                          \
					*idx = best;                                       \
				}                                                          \
			}                                                                  \
	}

ARGMAX_KERNEL(argmax_f64, double)
ARGMAX_KERNEL(argmax_f32, float)

tg_tensor *tg_max_pool2d(tg_tensor *x, int kernel, int stride, int padding)
{
	static const char who[] = "tg_max_pool2d";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	pool_aux a;
	if (!pool_geom(ctx, who, x, kernel, stride, padding, &a.g))
		return NULL;
	int64_t *idx = tg_arena_alloc(ctx, (size_t)(a.g.N * a.g.C * a.g.OH * a.g.OW) * sizeof *idx);
	if (!idx)
		return NULL;
	if (x->dtype == TG_F64)
		argmax_f64(&a.g, x->data, idx);
	else
		argmax_f32(&a.g, x->data, idx);
	a.idx = idx;
	const pool_aux *saved = tg_save_aux(ctx, &a, sizeof a);
	return saved ? gather_at(saved, x) : NULL;
}

/* ---- avg_pool2d: out = the window's sum / (KH KW), padding counted as zeros;
 *      dx = avg_pool2d_backward(dout) ---------------------------------------------- */
/* ---- avg_pool2d_backward: dx spreads each dout / (KH KW) over its window, its
 *      adjoint; d dout = avg_pool2d(g) ---------------------------------------------- */

static tg_tensor *avg_pool(const geom *g, tg_tensor *x);
static tg_tensor *avg_unpool(const geom *g, tg_tensor *dout);

static void avg_pool2d_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, avg_unpool(n->aux, dout));
}

static void avg_pool2d_backward_backward(tg_node *n, tg_tensor *dx)
{
	tg_node_grad(n, 0, avg_pool(n->aux, dx));
}

static const tg_op avg_pool2d_op = { .name = "avg_pool2d", .backward = avg_pool2d_backward,
				     .describe = pool_describe };
static const tg_op avg_pool2d_backward_op = { .name = "avg_pool2d_backward",
					      .backward = avg_pool2d_backward_backward,
					      .describe = pool_describe };
TG_OP_REGISTER(avg_pool2d_op);
TG_OP_REGISTER(avg_pool2d_backward_op);

/* Y (N,C,OH,OW) = window sums of X / (KH KW), or, adjoint, X (N,C,H,W) gets
 * each Y / (KH KW) over its window. */
#define AVG_KERNELS(pool, unpool, T)                                                       \
	static void pool(const geom *g, const T *X, T *Y)                                  \
	{                                                                                  \
		double scale = 1.0 / (double)(g->KH * g->KW);                              \
		for (int64_t p = 0; p < g->N * g->C; p++, X += g->H * g->W)                \
			for (int64_t oh = 0; oh < g->OH; oh++) {                           \
				int64_t h0, h1;                                            \
				window(oh, g->sh, g->ph, g->KH, g->H, &h0, &h1);           \
				for (int64_t ow = 0; ow < g->OW; ow++) {                   \
					int64_t w0, w1;                                    \
					window(ow, g->sw, g->pw, g->KW, g->W, &w0, &w1);   \
					double s = 0;                                      \
					for (int64_t ih = h0; ih < h1; ih++)               \
						for (int64_t iw = w0; iw < w1; iw++)       \
							s += X[ih * g->W + iw];            \
					*Y++ = (T)(s * scale);                             \
				}                                                          \
			}                                                                  \
	}                                                                                  \
	static void unpool(const geom *g, const T *Y, T *X)                                \
	{                                                                                  \
		double scale = 1.0 / (double)(g->KH * g->KW);                              \
		for (int64_t p = 0; p < g->N * g->C; p++, X += g->H * g->W)                \
			for (int64_t oh = 0; oh < g->OH; oh++) {                           \
				int64_t h0, h1;                                            \
				window(oh, g->sh, g->ph, g->KH, g->H, &h0, &h1);           \
				for (int64_t ow = 0; ow < g->OW; ow++) {                   \
					int64_t w0, w1;                                    \
					window(ow, g->sw, g->pw, g->KW, g->W, &w0, &w1);   \
					T v = (T)(*Y++ * scale);                           \
					for (int64_t ih = h0; ih < h1; ih++)               \
						for (int64_t iw = w0; iw < w1; iw++)       \
							X[ih * g->W + iw] += v;            \
				}                                                          \
			}                                                                  \
	}

AVG_KERNELS(avg_pool_f64, avg_unpool_f64, double)
AVG_KERNELS(avg_pool_f32, avg_unpool_f32, float)

static tg_tensor *avg_pool(const geom *g, tg_tensor *x)
{
	static const char who[] = "tg_avg_pool2d";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, 4, (int64_t[]){ g->N, g->C, g->OH, g->OW });
	if (!out)
		return NULL;
	if (x->dtype == TG_F64)
		avg_pool_f64(g, x->data, out->data);
	else
		avg_pool_f32(g, x->data, out->data);
	return tg_op_end(&avg_pool2d_op, out, 1, &x, NULL, 0, g);
}

static tg_tensor *avg_unpool(const geom *g, tg_tensor *dout)
{
	static const char who[] = "avg_pool2d_backward";
	tg_ctx *ctx = tg_op_begin(who, 1, &dout);
	if (!ctx)
		return NULL;
	tg_tensor *dx = tg_tensor_new(ctx, who, dout->dtype, 4, (int64_t[]){ g->N, g->C, g->H, g->W });
	if (!dx)
		return NULL;
	memset(dx->data, 0, dx->numel * tg_dtype_size(dx->dtype));
	if (dout->dtype == TG_F64)
		avg_unpool_f64(g, dout->data, dx->data);
	else
		avg_unpool_f32(g, dout->data, dx->data);
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
