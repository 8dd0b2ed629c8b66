/*
 * select.c - ops that choose between values: where (mask ? a : b, three
 * tensors broadcast together) and clamp (x held to [lo, hi]).
 *
 * Their backward rules pick dout, or 0, with a constant mask: both are
 * where again, so a recorded backward differentiates them once more. The
 * mask is only read: it has any dtype and never gets a gradient.
 */
#include "internal.h"
#include "fused.h"
#include "parallel.h"

#include <math.h>
#include <string.h>

/* ---- broadcasting three tensors ---------------------------------------------- */

/* The output shape of broadcasting t[0..2] (NumPy rules), padded on the left
 * with 1s to TG_MAX_DIMS, and each tensor's element strides along it, 0 on
 * its broadcast axes. */
typedef struct bcast3 {
	int ndim;
	int64_t dim[TG_MAX_DIMS];
	int64_t s[3][TG_MAX_DIMS];
} bcast3;

static bool broadcast3(tg_tensor *const *t, bcast3 *bc)
{
	int64_t stride[3] = { 1, 1, 1 };
	bc->ndim = 0;
	for (int j = 0; j < 3; j++)
		bc->ndim = t[j]->ndim > bc->ndim ? t[j]->ndim : bc->ndim;
	for (int k = TG_MAX_DIMS - 1; k >= 0; k--) {
		int back = TG_MAX_DIMS - 1 - k; /* 0 for the last axis */
		int64_t d[3], out = 1;
		for (int j = 0; j < 3; j++) {
			d[j] = back < t[j]->ndim ? t[j]->shape[t[j]->ndim - 1 - back] : 1;
			if (d[j] != 1 && out != 1 && d[j] != out)
				return false;
			out = d[j] != 1 ? d[j] : out;
		}
		bc->dim[k] = out;
		for (int j = 0; j < 3; j++) {
			bc->s[j][k] = d[j] == 1 ? 0 : stride[j];
			stride[j] *= d[j];
		}
	}
	return true;
}

/* ---- where: mask ? a : b; da = where(mask, dout, 0), db = where(mask, 0, dout) ---- */

/* M (n) = X != 0, one byte each */
#define MASK_KERNEL(name, T)                                                          \
	TG_HOT_LOOP static void name(const T *restrict X, unsigned char *restrict M,  \
				     size_t n)                                        \
	{                                                                              \
		for (size_t i = 0; i < n; i++)                                         \
			M[i] = X[i] != 0;                                              \
	}
MASK_KERNEL(mask_f64, double)
MASK_KERNEL(mask_f32, float)
MASK_KERNEL(mask_i32, int32_t)
MASK_KERNEL(mask_i64, int64_t)

typedef struct mask_job {
	const tg_tensor *mask;
	unsigned char *M;
} mask_job;

/* M[lo, hi) = mask != 0, one byte each, from a mask of any dtype; a part of
 * tg_parallel_for over the mask's elements */
static void mask_part(void *arg, size_t lo, size_t hi)
{
	const mask_job *j = arg;
	const tg_tensor *mask = j->mask;
	unsigned char *M = j->M + lo;
	size_t n = hi - lo;
	switch (mask->dtype) {
	case TG_F64:
		mask_f64((const double *)mask->data + lo, M, n);
		break;
	case TG_F32:
		mask_f32((const float *)mask->data + lo, M, n);
		break;
	case TG_I32:
		mask_i32((const int32_t *)mask->data + lo, M, n);
		break;
	case TG_I64:
		mask_i64((const int64_t *)mask->data + lo, M, n);
		break;
	}
}

static void mask_bytes(const tg_tensor *mask, unsigned char *M)
{
	mask_job j = { mask, M };
	tg_parallel_for(mask->ctx, mask->numel, TG_PAR_MIN, 64, mask_part, &j);
}

/* Y = M ? A : B over the output's elements [e0, e1): along the rows of
 * bc's innermost axis, the first and the last perhaps in part, so that a
 * split need not fall on whole rows (a 1-D where is one row). M, A, B each
 * have stride 0 or 1 along the axis. Both values are read before the
 * choice, so that the compiler selects with a blend: reading one through
 * the mask byte made the loop over one-value inputs (the backward's
 * where(mask, dout, 0) under a sum) a branch a random mask mispredicted
 * half the time, and the others masked loads. A mask broadcast along the
 * axis ((N,1) against (N,M)) picks a whole row of one input: a copy or a
 * fill, not a walk by strides. */
#define WHERE_KERNEL(name, T)                                                         \
	TG_HOT_LOOP static void name(const bcast3 *bc, const unsigned char *M,        \
				     const T *A, const T *B, T *Y, int64_t e0,        \
				     int64_t e1)                                      \
	{                                                                              \
		enum { L = TG_MAX_DIMS - 1 };                                          \
		const int64_t m = bc->dim[L];                                          \
		const int64_t sm = bc->s[0][L], sa = bc->s[1][L], sb = bc->s[2][L];    \
		int64_t im[L], iab[L]; /* mask's walk; a's and b's */                  \
		int64_t om, oa, ob, unused;                                            \
		int64_t i0 = e0 % m; /* where the first row starts */                  \
		tg_rows_seek(L, bc->dim, e0 / m, im, bc->s[0], &om, bc->s[0], &unused); \
		tg_rows_seek(L, bc->dim, e0 / m, iab, bc->s[1], &oa, bc->s[2], &ob);    \
		for (int64_t e = e0; e < e1; i0 = 0) {                                 \
			const int64_t k = m - i0 < e1 - e ? m - i0 : e1 - e;           \
			const unsigned char *Mr = M + om + i0 * sm;                    \
			const T *Ar = A + oa + i0 * sa, *Br = B + ob + i0 * sb;        \
			T *Yr = Y + e;                                                 \
			const T a0 = Ar[0], b0 = Br[0];                                \
			if (sm == 1 && sa == 1 && sb == 1)                             \
				for (int64_t i = 0; i < k; i++) {                      \
					const T a = Ar[i], b = Br[i];                  \
					Yr[i] = Mr[i] ? a : b;                         \
				}                                                      \
			else if (sm == 1 && sa == 1 && sb == 0)                        \
				for (int64_t i = 0; i < k; i++) {                      \
					const T a = Ar[i];                             \
					Yr[i] = Mr[i] ? a : b0;                        \
				}                                                      \
			else if (sm == 1 && sa == 0 && sb == 1)                        \
				for (int64_t i = 0; i < k; i++) {                      \
					const T b = Br[i];                             \
					Yr[i] = Mr[i] ? a0 : b;                        \
				}                                                      \
			else if (sm == 1 && sa == 0 && sb == 0)                        \
				for (int64_t i = 0; i < k; i++)                        \
					Yr[i] = Mr[i] ? a0 : b0;                       \
			else if (sm == 0 && (Mr[0] ? sa : sb) == 1)                    \
				memcpy(Yr, Mr[0] ? Ar : Br, (size_t)k * sizeof(T));    \
			else if (sm == 0)                                              \
				for (int64_t i = 0; i < k; i++)                        \
					Yr[i] = Mr[0] ? a0 : b0;                       \
			else                                                           \
				for (int64_t i = 0; i < k; i++)                        \
					Yr[i] = Mr[i * sm] ? Ar[i * sa] : Br[i * sb];  \
			e += k;                                                        \
			tg_rows_next(L, bc->dim, im, bc->s[0], &om, bc->s[0], &unused); \
			tg_rows_next(L, bc->dim, iab, bc->s[1], &oa, bc->s[2], &ob);    \
		}                                                                      \
	}

WHERE_KERNEL(where_f64, double)
WHERE_KERNEL(where_f32, float)

typedef struct where_job {
	const bcast3 *bc;
	const unsigned char *M;
	const void *A, *B;
	void *Y;
	bool f64;
} where_job;

static void where_part(void *arg, size_t lo, size_t hi)
{
	const where_job *j = arg;
	if (j->f64)
		where_f64(j->bc, j->M, j->A, j->B, j->Y, (int64_t)lo, (int64_t)hi);
	else
		where_f32(j->bc, j->M, j->A, j->B, j->Y, (int64_t)lo, (int64_t)hi);
}

static tg_tensor *where_of(tg_tensor *mask, const unsigned char *M, tg_tensor *a, tg_tensor *b);

/* The forward pass's mask bytes (the node's aux) serve both gradients: the
 * mask is the same tensor, unchanged (the walk checks its version first),
 * and its bytes were a pass over it each time. */
static void where_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *mask = tg_node_input(n, 0);
	tg_tensor *zero = tg_zeros(dout->ctx, dout->dtype, 0, NULL);
	if (tg_node_needs_grad(n, 1))
		TG_NODE_GRAD_INTO(n, 1, where_of(mask, n->aux, dout, zero));
	if (tg_node_needs_grad(n, 2))
		TG_NODE_GRAD_INTO(n, 2, where_of(mask, n->aux, zero, dout));
}

static const tg_op where_op = { .name = "where", .backward = where_backward };
TG_OP_REGISTER(where_op);
TG_OP_READS_UNIFORM(where_op);

/* Records why an argument of where is NULL, in the context of one that is
 * not (none: nothing to blame). Returns NULL. */
static TG_SLOW tg_tensor *where_null(const char *who, tg_tensor *const *in)
{
	static const char *const names[3] = { "mask", "a", "b" };
	tg_ctx *ctx = NULL;
	for (int j = 0; j < 3 && !ctx; j++)
		ctx = in[j] ? tg_tensor_check(who, in[j]) : NULL;
	for (int j = 0; j < 3; j++)
		if (!in[j])
			return tg_fail(ctx, TG_ENULL, "%s: argument %d (%s) is NULL", who, j,
				       names[j]);
	return NULL;
}

tg_tensor *tg_where(tg_tensor *mask, tg_tensor *a, tg_tensor *b)
{
	return where_of(mask, NULL, a, b);
}

/* tg_where, with M the mask's bytes (mask != 0) when they are made already,
 * else NULL. The bytes are the node's aux, for its backward. */
static tg_tensor *where_of(tg_tensor *mask, const unsigned char *M, tg_tensor *a, tg_tensor *b)
{
	const char *who = "tg_where";
	tg_tensor *in[3] = { mask, a, b };
	if (!mask || !a || !b)
		return where_null(who, in);
	/* a and b are checked as a pair: its errors count them 0 and 1 */
	tg_ctx *ctx = tg_op_begin("tg_where (a, b)", 2, in + 1);
	if (!ctx)
		return NULL;
	if (!tg_tensor_check(who, mask)) {
		tg_stale_elsewhere(ctx, who, mask, "the mask");
		return NULL;
	}
	if (mask->ctx != ctx)
		return tg_fail(ctx, TG_ECTX, "%s: mask belongs to another context than a and b",
			       who);
	bcast3 bc;
	if (!broadcast3(in, &bc)) {
		char sm[TG_SHAPE_STR], sa[TG_SHAPE_STR], sb[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE,
			       "%s: shapes %s (mask), %s (a) and %s (b) do not broadcast", who,
			       tg_shape_fmt(mask->ndim, mask->shape, sm),
			       tg_shape_fmt(a->ndim, a->shape, sa),
			       tg_shape_fmt(b->ndim, b->shape, sb));
	}
	tg_tensor *out = tg_tensor_new(ctx, who, a->dtype, bc.ndim,
				       bc.dim + TG_MAX_DIMS - bc.ndim);
	if (!out)
		return NULL;
	if (!M) {
		unsigned char *bytes = tg_arena_alloc(ctx, mask->numel);
		if (!bytes)
			return NULL;
		mask_bytes(mask, bytes);
		M = bytes;
	}
	/* A gradient that is one value over a's or b's shape (a sum's, handed
	 * down: tg_is_uniform, perhaps with element 0 alone written) is read
	 * as that value, as if a scalar were broadcast. */
	for (int k = 1; k < 3; k++)
		if (tg_is_uniform(in[k]))
			memset(bc.s[k], 0, sizeof bc.s[k]);
	where_job j = { &bc, M, a->data, b->data, out->data, a->dtype == TG_F64 };
	if (out->numel)
		tg_parallel_for(ctx, out->numel, TG_PAR_MIN, 16, where_part, &j);
	return tg_op_end(&where_op, out, 3, in, NULL, 0, M);
}

/* ---- clamp: y = min(max(x, lo), hi); dx = where(lo <= x <= hi, dout, 0) ----------- */
/* The gradient passes at the bounds themselves, as PyTorch's does; a NaN x
 * stays NaN and gets none. */

/* Where the gradient passes: the bounds included, never at NaN */
#define INSIDE(x, lo, hi) ((x) >= (lo) && (x) <= (hi))

#define CLAMP_KERNEL(name, T)                                                         \
	TG_HOT_LOOP static void name(const T *X, T *Y, size_t n, T lo, T hi)          \
	{                                                                              \
		for (size_t i = 0; i < n; i++) {                                       \
			T x = X[i];                                                    \
			Y[i] = x < lo ? lo : (x > hi ? hi : x); /* NaN stays NaN */    \
		}                                                                      \
	}                                                                              \
	static void name##_inside(const T *X, T *Y, size_t n, T lo, T hi)              \
	{                                                                              \
		for (size_t i = 0; i < n; i++)                                         \
			Y[i] = INSIDE(X[i], lo, hi);                                   \
	}

CLAMP_KERNEL(clamp_f64, double)
CLAMP_KERNEL(clamp_f32, float)

/* [lo <= x <= hi] in x's dtype, with no history */
static tg_tensor *inside(tg_tensor *x, double lo, double hi)
{
	tg_tensor *m = tg_tensor_like(x, "clamp (backward)");
	if (!m)
		return NULL;
	if (x->dtype == TG_F64)
		clamp_f64_inside(x->data, m->data, x->numel, lo, hi);
	else
		clamp_f32_inside(x->data, m->data, x->numel, (float)lo, (float)hi);
	return m;
}

/* dx = lo <= x <= hi ? dout : +0, in one pass: the bits of the where below */
#define CLAMP_GRAD_KERNEL(name, T)                                                     \
	TG_HOT_LOOP static void name(const T *restrict X, const T *restrict D,          \
				     T *restrict Y, size_t n, T lo, T hi)              \
	{                                                                               \
		for (size_t i = 0; i < n; i++)                                          \
			Y[i] = INSIDE(X[i], lo, hi) ? D[i] : 0;                         \
	}
CLAMP_GRAD_KERNEL(clamp_grad_f64, double)
CLAMP_GRAD_KERNEL(clamp_grad_f32, float)

typedef struct clamp_job {
	const void *X, *D;
	void *Y;
	double lo, hi;
	bool f64;
	bool d_uniform; /* the gradient's D: read D[0] alone */
} clamp_job;

/* A uniform dout (tg_is_uniform) is read as a row of copies of its one
 * value, as the fused kernels read it (fused.h). */
static void clamp_grad_part(void *arg, size_t lo, size_t hi)
{
	const clamp_job *j = arg;
	const double *X64 = j->X, *D64 = j->D;
	const float *X32 = j->X, *D32 = j->D;
	double *Y64 = j->Y;
	float *Y32 = j->Y;
	if (j->d_uniform && j->f64)
		TG_UNIFORM_RUNS(double, j->D, lo, hi,
				clamp_grad_f64(X64 + tg_i, tg_d, Y64 + tg_i, tg_m, j->lo, j->hi));
	else if (j->d_uniform)
		TG_UNIFORM_RUNS(float, j->D, lo, hi,
				clamp_grad_f32(X32 + tg_i, tg_d, Y32 + tg_i, tg_m, (float)j->lo,
					       (float)j->hi));
	else if (j->f64)
		clamp_grad_f64(X64 + lo, D64 + lo, Y64 + lo, hi - lo, j->lo, j->hi);
	else
		clamp_grad_f32(X32 + lo, D32 + lo, Y32 + lo, hi - lo, (float)j->lo, (float)j->hi);
}

static void clamp_part(void *arg, size_t lo, size_t hi)
{
	const clamp_job *j = arg;
	if (j->f64)
		clamp_f64((const double *)j->X + lo, (double *)j->Y + lo, hi - lo, j->lo, j->hi);
	else
		clamp_f32((const float *)j->X + lo, (float *)j->Y + lo, hi - lo, (float)j->lo,
			  (float)j->hi);
}

static tg_tensor *clamp_grad(tg_tensor *x, tg_tensor *dout, double lo, double hi)
{
	tg_tensor *dx = tg_tensor_like(x, "clamp (backward)");
	if (!dx)
		return NULL;
	clamp_job j = { x->data, dout->data, dx->data, lo, hi, x->dtype == TG_F64,
			tg_is_uniform(dout) };
	tg_parallel_for(x->ctx, x->numel, TG_PAR_MIN, 16, clamp_grad_part, &j);
	return dx;
}

/* A plain backward is one pass over x and dout; a recorded one
 * (TG_CREATE_GRAPH) is where, so that dout's part carries history. Both
 * give the same bits. */
static void clamp_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	double lo = tg_node_attr(n, 0), hi = tg_node_attr(n, 1);
	if (!x->ctx->grad_enabled) {
		TG_NODE_GRAD_INTO(n, 0, clamp_grad(x, dout, lo, hi));
		return;
	}
	tg_tensor *zero = tg_zeros(dout->ctx, dout->dtype, 0, NULL);
	tg_tensor *in = inside(x, lo, hi);
	TG_NODE_GRAD_INTO(n, 0, tg_where(in, dout, zero));
}

/* the bounds: "[-1, 1]", "[0, inf]" */
static int clamp_describe(const tg_node *n, char *buf, size_t size)
{
	return snprintf(buf, size, "[%g, %g]", tg_node_attr(n, 0), tg_node_attr(n, 1));
}

static const tg_op clamp_op = { .name = "clamp", .backward = clamp_backward,
				.describe = clamp_describe };
TG_OP_REGISTER(clamp_op);
TG_OP_READS_UNIFORM(clamp_op);

tg_tensor *tg_clamp(tg_tensor *x, double lo, double hi)
{
	const char *who = "tg_clamp";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	if (isnan(lo) || isnan(hi) || lo > hi)
		return tg_fail(ctx, TG_EARG, "%s: bounds [%g, %g] are not lo <= hi", who, lo, hi);
	tg_tensor *out = tg_tensor_like(x, who);
	if (!out)
		return NULL;
	clamp_job j = { x->data, NULL, out->data, lo, hi, x->dtype == TG_F64, false };
	tg_parallel_for(ctx, x->numel, TG_PAR_MIN, 16, clamp_part, &j);
	const double attr[2] = { lo, hi };
	return tg_op_end(&clamp_op, out, 1, &x, attr, 2, NULL);
}
