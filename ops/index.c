/*
 * index.c - indexing by integer arrays: gather_rows and its adjoint
 * scatter_rows, pick (one element per row), and the constant one_hot.
 *
 * Indices are validated before anything is computed and saved in the step
 * arena with the node (tg_save_aux), so the caller's array may change after
 * the call. Backward rules are written with ops; gather_rows and
 * scatter_rows are each other's gradient, so both are twice differentiable.
 * Shape legend: x (R, ...) has R rows; idx holds n row numbers; pick's x is
 * (N,K), one label per row.
 */
#include "internal.h"

#include <string.h>

/* Checks idx[0..n) against [0, k); false after recording the first bad one. */
static bool indices_ok(tg_ctx *ctx, const char *who, const char *name, const int32_t *idx,
		       int64_t n, int64_t k)
{
	for (int64_t i = 0; i < n; i++) {
		if (idx[i] < 0 || idx[i] >= k) {
			tg_fail(ctx, TG_EARG, "%s: %s[%lld] = %d is outside [0, %lld)", who, name,
				(long long)i, (int)idx[i], (long long)k);
			return false;
		}
	}
	return true;
}

/* ---- gather_rows: out[i] = x[idx[i]]; dx = scatter_rows(dout) ------------------ */
/* ---- scatter_rows: out[idx[i]] += src[i], out (R, ...) zero elsewhere;
 *      dsrc = gather_rows(dout) ----------------------------------------------------- */
/* Both keep idx (n entries, already checked) as the node's aux; scatter_rows
 * keeps R as attribute 0. */

static tg_tensor *gather(tg_tensor *x, const int32_t *idx, int64_t n, const int32_t *saved);
static tg_tensor *scatter_rows(tg_tensor *src, const int32_t *idx, int64_t rows);

static void gather_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_node_grad(n, 0, scatter_rows(dout, n->aux, x->shape[0]));
}

static void scatter_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *src = tg_node_input(n, 0);
	tg_node_grad(n, 0, gather(dout, n->aux, src->shape[0], n->aux));
}

/* the rows kept with the node: "rows [2, 0]"; scatter_rows adds "of 5" */
static int gather_describe(const tg_node *n, char *buf, size_t size)
{
	return tg_describe_ints(buf, size, "rows ", n->aux, tg_node_output(n)->shape[0]);
}

static int scatter_describe(const tg_node *n, char *buf, size_t size)
{
	int len = tg_describe_ints(buf, size, "rows ", n->aux, tg_node_input(n, 0)->shape[0]);
	if (len < 0 || (size_t)len >= size)
		return len;
	return len + snprintf(buf + len, size - (size_t)len, " of %lld",
			      (long long)tg_node_attr(n, 0));
}

static const tg_op gather_rows_op = { .name = "gather_rows", .backward = gather_backward,
				      .describe = gather_describe };
static const tg_op scatter_rows_op = { .name = "scatter_rows", .backward = scatter_backward,
				       .describe = scatter_describe };
TG_OP_REGISTER(gather_rows_op);
TG_OP_REGISTER(scatter_rows_op);

/* Rows idx[0..n) of x; saved is idx already in the arena (from a node), or
 * NULL to check idx and save a copy. */
static tg_tensor *gather(tg_tensor *x, const int32_t *idx, int64_t n, const int32_t *saved)
{
	const char *who = "tg_gather_rows";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	char buf[TG_SHAPE_STR];
	if (x->ndim < 1)
		return tg_fail(ctx, TG_ESHAPE,
			       "%s: x is a scalar %s; it needs rows (1 to %d dimensions)", who,
			       tg_shape_fmt(x->ndim, x->shape, buf), TG_MAX_DIMS);
	if (!idx)
		return tg_fail(ctx, TG_ENULL, "%s: idx is NULL", who);
	if (n <= 0)
		return tg_fail(ctx, TG_EARG, "%s: %lld indices; need at least one", who,
			       (long long)n);
	if (!saved) {
		if (!indices_ok(ctx, who, "idx", idx, n, x->shape[0]))
			return NULL;
		saved = tg_save_aux(ctx, idx, (size_t)n * sizeof *idx);
		if (!saved)
			return NULL;
	}
	int64_t shape[TG_MAX_DIMS];
	memcpy(shape, x->shape, sizeof shape);
	shape[0] = n;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, x->ndim, shape);
	if (!out)
		return NULL;
	size_t row = (x->numel / (size_t)x->shape[0]) * tg_dtype_size(x->dtype);
	char *Y = out->data;
	const char *X = x->data;
	for (int64_t i = 0; i < n; i++)
		memcpy(Y + (size_t)i * row, X + (size_t)saved[i] * row, row);
	return tg_op_end(&gather_rows_op, out, 1, &x, NULL, 0, saved);
}

tg_tensor *tg_gather_rows(tg_tensor *x, const int32_t *idx, int64_t n)
{
	return gather(x, idx, n, NULL);
}

#define SCATTER_KERNEL(name, T)                                                      \
	static void name(const T *S, T *Y, const int32_t *idx, int64_t n, size_t row) \
	{                                                                            \
		for (int64_t i = 0; i < n; i++) {                                    \
			T *y = Y + (size_t)idx[i] * row;                             \
			const T *s = S + (size_t)i * row;                            \
			for (size_t j = 0; j < row; j++)                             \
				y[j] += s[j];                                        \
		}                                                                    \
	}

SCATTER_KERNEL(scatter_f64, double)
SCATTER_KERNEL(scatter_f32, float)

/* src (n, ...) added into rows idx of a zero (rows, ...); idx is the saved,
 * checked array of a gather_rows node. */
static tg_tensor *scatter_rows(tg_tensor *src, const int32_t *idx, int64_t rows)
{
	const char *who = "scatter_rows";
	tg_ctx *ctx = tg_op_begin(who, 1, &src);
	if (!ctx)
		return NULL;
	int64_t shape[TG_MAX_DIMS];
	memcpy(shape, src->shape, sizeof shape);
	shape[0] = rows;
	tg_tensor *out = tg_tensor_new(ctx, who, src->dtype, src->ndim, shape);
	if (!out)
		return NULL;
	memset(out->data, 0, out->numel * tg_dtype_size(out->dtype));
	size_t row = src->numel / (size_t)src->shape[0];
	if (src->dtype == TG_F64)
		scatter_f64(src->data, out->data, idx, src->shape[0], row);
	else
		scatter_f32(src->data, out->data, idx, src->shape[0], row);
	const double attr[1] = { (double)rows };
	return tg_op_end(&scatter_rows_op, out, 1, &src, attr, 1, idx);
}

/* ---- pick: out[i] = x[i, idx[i]]; dx = one_hot(idx) * dout[:, None] ------------ */
/* The one-hot is a constant; dout (N) reshaped to (N,1) broadcasts over the K
 * columns in the product. Keeps idx (N) as aux. */

static void pick_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	int64_t N = x->shape[0], K = x->shape[1];
	tg_tensor *mask = tg_one_hot(x->ctx, x->dtype, n->aux, N, K);
	tg_node_grad(n, 0, tg_mul(mask, tg_reshape(dout, 2, (int64_t[]){ N, 1 })));
}

/* the column picked in each row: "idx [1, 0]" */
static int pick_describe(const tg_node *n, char *buf, size_t size)
{
	return tg_describe_ints(buf, size, "idx ", n->aux, tg_node_input(n, 0)->shape[0]);
}

static const tg_op pick_op = { .name = "pick", .backward = pick_backward,
			       .describe = pick_describe };
TG_OP_REGISTER(pick_op);

tg_tensor *tg_pick(tg_tensor *x, const int32_t *idx)
{
	const char *who = "tg_pick";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	if (x->ndim != 2) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: x is %s; expected a 2-D (N,K)", who,
			       tg_shape_fmt(x->ndim, x->shape, buf));
	}
	if (!idx)
		return tg_fail(ctx, TG_ENULL, "%s: idx is NULL", who);
	int64_t N = x->shape[0], K = x->shape[1];
	if (!indices_ok(ctx, who, "idx", idx, N, K))
		return NULL;
	const int32_t *saved = tg_save_aux(ctx, idx, (size_t)N * sizeof *idx);
	if (!saved)
		return NULL;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, 1, &N);
	if (!out)
		return NULL;
	if (x->dtype == TG_F64) {
		const double *X = x->data;
		double *Y = out->data;
		for (int64_t i = 0; i < N; i++)
			Y[i] = X[i * K + saved[i]];
	} else {
		const float *X = x->data;
		float *Y = out->data;
		for (int64_t i = 0; i < N; i++)
			Y[i] = X[i * K + saved[i]];
	}
	return tg_op_end(&pick_op, out, 1, &x, NULL, 0, saved);
}

/* ---- one_hot: (N,K) constant, 1 at [i, labels[i]]; no gradient ----------------- */

tg_tensor *tg_one_hot(tg_ctx *ctx, tg_dtype dt, const int32_t *labels, int64_t n, int64_t k)
{
	const char *who = "tg_one_hot";
	if (!ctx || ctx->status != TG_OK)
		return NULL;
	if (!labels)
		return tg_fail(ctx, TG_ENULL, "%s: labels is NULL", who);
	if (n <= 0 || k <= 0)
		return tg_fail(ctx, TG_EARG,
			       "%s: %lld labels of %lld classes; both must be positive", who,
			       (long long)n, (long long)k);
	if (!indices_ok(ctx, who, "labels", labels, n, k))
		return NULL;
	tg_tensor *out = tg_tensor_new(ctx, who, dt, 2, (int64_t[]){ n, k });
	if (!out)
		return NULL;
	memset(out->data, 0, out->numel * tg_dtype_size(dt));
	for (int64_t i = 0; i < n; i++) {
		if (dt == TG_F64)
			((double *)out->data)[i * k + labels[i]] = 1.0;
		else
			((float *)out->data)[i * k + labels[i]] = 1.0f;
	}
	return out;
}
