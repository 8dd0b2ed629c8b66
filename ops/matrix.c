/*
 * matrix.c - matrix products through OpenBLAS, transpose and reshape.
 *
 * matmul_t multiplies op(a) @ op(b), op a transpose or not, with the BLAS
 * transpose flags: no transpose is ever materialised, forward or backward.
 * Backward rules are written with ops, so they record under TG_CREATE_GRAPH.
 * Shape legend: op(a) (N,K) @ op(b) (K,M) -> (N,M).
 */
#include "internal.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* ---- matmul_t: C = op(A) op(B) ---------------------------------------------- */
/* With C = op(A) op(B) and dout = dC:
 *   dA = dC op(B)^T        if !ta;   dA = op(B) dC^T        if ta;
 *   dB = op(A)^T dC        if !tb;   dB = dC^T op(A)        if tb;
 * each a matmul_t of the saved inputs with flags, so nothing is transposed
 * in memory. Attributes: [0] ta, [1] tb. */

static void matmul_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *a = tg_node_input(n, 0), *b = tg_node_input(n, 1);
	bool ta = tg_node_attr(n, 0) != 0, tb = tg_node_attr(n, 1) != 0;
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, ta ? tg_matmul_t(b, tb, dout, true)
				      : tg_matmul_t(dout, false, b, !tb));
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, tb ? tg_matmul_t(dout, true, a, ta)
				      : tg_matmul_t(a, !ta, dout, false));
}

/* the transposes matmul_t reads its operands with: "a^T @ b" */
static int matmul_describe(const tg_node *n, char *buf, size_t size)
{
	bool ta = tg_node_attr(n, 0) != 0, tb = tg_node_attr(n, 1) != 0;
	if (!ta && !tb)
		return 0;
	return snprintf(buf, size, "a%s @ b%s", ta ? "^T" : "", tb ? "^T" : "");
}

static const tg_op matmul_op = { .name = "matmul", .backward = matmul_backward,
				 .inputs = (const char *const[]){ "a", "b" },
				 .describe = matmul_describe };
TG_OP_REGISTER(matmul_op);

/* "(2,3)" or "(2,3)^T" into buf (TG_SHAPE_STR + 2 bytes). */
static char *operand_fmt(const tg_tensor *t, bool trans, char *buf)
{
	tg_shape_fmt(t->ndim, t->shape, buf);
	if (trans)
		strcat(buf, "^T");
	return buf;
}

static tg_tensor *matmul(const char *who, tg_tensor *a, bool ta, tg_tensor *b, bool tb)
{
	tg_tensor *in[2] = { a, b };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	char sa[TG_SHAPE_STR + 2], sb[TG_SHAPE_STR + 2];
	if (a->ndim != 2 || b->ndim != 2)
		return tg_fail(ctx, TG_ESHAPE, "%s: %s @ %s: both inputs must be 2-D", who,
			       operand_fmt(a, ta, sa), operand_fmt(b, tb, sb));
	int64_t N = ta ? a->shape[1] : a->shape[0];
	int64_t K = ta ? a->shape[0] : a->shape[1];
	int64_t Kb = tb ? b->shape[1] : b->shape[0];
	int64_t M = tb ? b->shape[0] : b->shape[1];
	if (K != Kb)
		return tg_fail(ctx, TG_ESHAPE, "%s: %s @ %s: inner sizes %lld and %lld differ",
			       who, operand_fmt(a, ta, sa), operand_fmt(b, tb, sb), (long long)K,
			       (long long)Kb);
	if (N > INT_MAX || K > INT_MAX || M > INT_MAX)
		return tg_fail(ctx, TG_ESHAPE, "%s: %s @ %s: a size exceeds the BLAS limit %d",
			       who, operand_fmt(a, ta, sa), operand_fmt(b, tb, sb), INT_MAX);
	tg_tensor *out = tg_tensor_new(ctx, who, a->dtype, 2, (int64_t[]){ N, M });
	if (!out)
		return NULL;
	enum CBLAS_TRANSPOSE fa = ta ? CblasTrans : CblasNoTrans;
	enum CBLAS_TRANSPOSE fb = tb ? CblasTrans : CblasNoTrans;
	int lda = (int)a->shape[1], ldb = (int)b->shape[1];
	if (a->dtype == TG_F64)
		cblas_dgemm(CblasRowMajor, fa, fb, (int)N, (int)M, (int)K, 1.0, a->data, lda,
			    b->data, ldb, 0.0, out->data, (int)M);
	else
		cblas_sgemm(CblasRowMajor, fa, fb, (int)N, (int)M, (int)K, 1.0f, a->data, lda,
			    b->data, ldb, 0.0f, out->data, (int)M);
	const double attr[2] = { ta, tb };
	return tg_op_end(&matmul_op, out, 2, in, attr, 2, NULL);
}

tg_tensor *tg_matmul_t(tg_tensor *a, bool ta, tg_tensor *b, bool tb)
{
	return matmul("tg_matmul_t", a, ta, b, tb);
}

tg_tensor *tg_matmul(tg_tensor *a, tg_tensor *b)
{
	return matmul("tg_matmul", a, false, b, false);
}

/* ---- transpose: (N,M) -> (M,N) copy; dx = dout^T -------------------------------- */

/* Y (M,N) = X (N,M)^T, in tiles so that both sides stay in cache. */
#define TRANSPOSE_KERNEL(name, T)                                                    \
	static void name(const T *X, T *Y, int64_t N, int64_t M)                     \
	{                                                                            \
		enum { TILE = 32 };                                                  \
		for (int64_t i0 = 0; i0 < N; i0 += TILE)                             \
			for (int64_t j0 = 0; j0 < M; j0 += TILE) {                   \
				int64_t i1 = i0 + TILE < N ? i0 + TILE : N;          \
				int64_t j1 = j0 + TILE < M ? j0 + TILE : M;          \
				for (int64_t i = i0; i < i1; i++)                    \
					for (int64_t j = j0; j < j1; j++)            \
						Y[j * N + i] = X[i * M + j];         \
			}                                                            \
	}

TRANSPOSE_KERNEL(transpose_f64, double)
TRANSPOSE_KERNEL(transpose_f32, float)

static void transpose_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, tg_transpose(dout));
}

static const tg_op transpose_op = { .name = "transpose", .backward = transpose_backward };
TG_OP_REGISTER(transpose_op);

tg_tensor *tg_transpose(tg_tensor *x)
{
	const char *who = "tg_transpose";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	if (x->ndim != 2) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: x is %s; expected a 2-D (N,M)", who,
			       tg_shape_fmt(x->ndim, x->shape, buf));
	}
	int64_t N = x->shape[0], M = x->shape[1];
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, 2, (int64_t[]){ M, N });
	if (!out)
		return NULL;
	if (x->dtype == TG_F64)
		transpose_f64(x->data, out->data, N, M);
	else
		transpose_f32(x->data, out->data, N, M);
	return tg_op_end(&transpose_op, out, 1, &x, NULL, 0, NULL);
}

/* ---- reshape: same elements, new shape (a copy); dx = reshape(dout) ------------ */

static void reshape_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_node_grad(n, 0, tg_reshape(dout, x->ndim, x->shape));
}

static int reshape_describe(const tg_node *n, char *buf, size_t size)
{
	const tg_tensor *y = tg_node_output(n);
	char s[TG_SHAPE_STR];
	return snprintf(buf, size, "to %s", tg_shape_fmt(y->ndim, y->shape, s));
}

static const tg_op reshape_op = { .name = "reshape", .backward = reshape_backward,
				  .describe = reshape_describe };
TG_OP_REGISTER(reshape_op);

/* Resolves shape (one entry may be -1) for x's element count into out;
 * false after recording why. */
static bool resolve_shape(tg_ctx *ctx, const char *who, const tg_tensor *x, int ndim,
			  const int64_t *shape, int64_t *out)
{
	char sx[TG_SHAPE_STR], ss[TG_SHAPE_STR];
	const int64_t numel = (int64_t)x->numel;
	int64_t known = 1;
	int infer = -1;
	bool too_many = false;
	for (int i = 0; i < ndim; i++) {
		int64_t s = shape[i];
		if (s == -1 && infer < 0) {
			infer = i;
			continue;
		}
		if (s == -1 || s <= 0) {
			tg_fail(ctx, TG_ESHAPE,
				"%s: cannot reshape %s to %s: dimension %d is %lld; sizes must be "
				"positive, and at most one may be -1",
				who, tg_shape_fmt(x->ndim, x->shape, sx),
				tg_shape_fmt(ndim, shape, ss), i, (long long)s);
			return false;
		}
		if (known > numel / s)
			too_many = true; /* known * s > numel; stop before it overflows */
		else
			known *= s;
	}
	if (too_many || (infer < 0 ? known != numel : numel % known != 0)) {
		tg_fail(ctx, TG_ESHAPE, "%s: cannot reshape %s (%lld elements) to %s", who,
			tg_shape_fmt(x->ndim, x->shape, sx), (long long)numel,
			tg_shape_fmt(ndim, shape, ss));
		return false;
	}
	for (int i = 0; i < ndim; i++)
		out[i] = i == infer ? numel / known : shape[i];
	return true;
}

tg_tensor *tg_reshape(tg_tensor *x, int ndim, const int64_t *shape)
{
	const char *who = "tg_reshape";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	if (ndim < 0 || ndim > TG_MAX_DIMS)
		return tg_fail(ctx, TG_ESHAPE, "%s: %d dimensions; a tensor has 0 to %d", who,
			       ndim, TG_MAX_DIMS);
	if (ndim > 0 && !shape)
		return tg_fail(ctx, TG_ENULL, "%s: shape is NULL for %d dimensions", who, ndim);
	int64_t s[TG_MAX_DIMS];
	if (!resolve_shape(ctx, who, x, ndim, shape, s))
		return NULL;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, ndim, s);
	if (!out)
		return NULL;
	memcpy(out->data, x->data, x->numel * tg_dtype_size(x->dtype));
	return tg_op_end(&reshape_op, out, 1, &x, NULL, 0, NULL);
}
