/*
 * layers.c - Affine, activations, losses, batch norm and dropout, and the
 * built-in modules made of them (linear, activation, batch norm, layer norm,
 * dropout, embedding, flatten, convolution and pooling).
 *
 * Each module's forward pass is an expression of ops, so tg_backward
 * differentiates it with the ops' own rules: no gradient code lives here.
 * What is not gradient is state (batch norm's running statistics, updated
 * outside the graph) and constants of the graph (dropout's mask).
 * Shapes: N = batch, D = features in, M = features out, K = classes.
 */
#include "tapegrad.h"
#include "tapegrad_nn.h"
#include "engine_errors.h"
#include "bn_running.h"
#include "c_locale.h"
#include "hot_loop.h"
#include "parallel.h"
#include "random.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "<prefix>.<field>" into buf, or NULL without a prefix. */
static const char *field_name(char *buf, size_t size, const char *prefix, const char *field)
{
	if (!prefix)
		return NULL;
	snprintf(buf, size, "%s.%s", prefix, field);
	return buf;
}

/* The context of x, NULL when who must return NULL: x NULL, an error
 * already set, or x stale (recorded as who's TG_ESTALE). */
static tg_ctx *begin(const char *who, const tg_tensor *x)
{
	tg_ctx *ctx = tg_tensor_check(who, x);
	return ctx && tg_ok(ctx) ? ctx : NULL;
}

/* A tensor's name for messages. */
static const char *label(const tg_tensor *t, const char *fallback)
{
	const char *s = tg_name(t);
	return s ? s : fallback;
}

/* ---- affine: y = x @ W + b; dx = dout W^T, dW = x^T dout, db = sum(dout, 0) ---- */

int tg_affine_init(tg_affine *l, tg_ctx *ctx, tg_dtype dt, int64_t n_in, int64_t n_out,
		   tg_init init, const char *name)
{
	char buf[128];
	if (!ctx)
		return -1;
	if (!l) {
		tg_fail(ctx, TG_ENULL, "tg_affine_init: the layer is NULL");
		return -1;
	}
	*l = (tg_affine){0};
	l->W = tg_init_weight(ctx, dt, n_in, n_out, init, field_name(buf, sizeof buf, name, "W"));
	l->b = tg_init_vector(ctx, dt, n_out, 0.0, true, field_name(buf, sizeof buf, name, "b"));
	if (l->W)
		tg_set_decay(l->W, true);
	return l->W && l->b ? 0 : -1;
}

/* x @ W + b, and its relu with relu (tg_addmm_relu where b is a row) */
static tg_tensor *affine_forward(const tg_affine *l, tg_tensor *x, bool relu)
{
	tg_ctx *ctx = begin("tg_affine_forward", x);
	if (!ctx)
		return NULL;
	if (!l || !l->W || !l->b)
		return tg_fail(ctx, TG_ENULL, "tg_affine_forward: the layer or its W or b is NULL");
	int nd = tg_ndim(x);
	int64_t d = tg_dim(l->W, 0), m = tg_dim(l->W, 1);
	int64_t n = nd >= 2 ? tg_dim(x, 0) : 1;
	if (nd < 1 || (int64_t)tg_numel(x) != n * d) {
		char xs[96], ws[96];
		return tg_fail(
		    ctx, TG_ESHAPE,
		    "tg_affine_forward: %s: input %s does not flatten to (N,%lld) for W %s",
		    label(l->W, "W"), tg_shape_str(x, xs, sizeof xs), (long long)d,
		    tg_shape_str(l->W, ws, sizeof ws));
	}
	tg_tensor *x2 = x;
	if (nd != 2)
		x2 = tg_reshape(x, 2, (int64_t[]){n, d});
	/* a bias row goes into the product's output (one pass); any other
	 * shape broadcasts as tg_add does */
	int64_t bn = tg_ndim(l->b) == 1 ? tg_dim(l->b, 0)
		   : tg_ndim(l->b) == 2 && tg_dim(l->b, 0) == 1 ? tg_dim(l->b, 1) : -1;
	tg_tensor *y;
	if (bn == m)
		y = relu ? tg_addmm_relu(x2, l->W, l->b) : tg_addmm(x2, l->W, l->b);
	else if (relu)
		y = tg_relu(tg_add(tg_matmul(x2, l->W), l->b));
	else
		y = tg_add(tg_matmul(x2, l->W), l->b);
	if (nd == 1)
		y = tg_reshape(y, 1, (int64_t[]){m});
	return y;
}

tg_tensor *tg_affine_forward(const tg_affine *l, tg_tensor *x)
{
	return affine_forward(l, x, false);
}

/* ---- activations: the ops' own rules (relu routes, sigmoid y(1-y), ...) ----------- */

static const struct {
	const char *name;
	tg_act_kind kind;
	double alpha; /* default */
} act_names[] = {
    {"identity", TG_ACT_IDENTITY, 0}, {"none", TG_ACT_IDENTITY, 0},
    {"relu", TG_ACT_RELU, 0},	      {"sigmoid", TG_ACT_SIGMOID, 0},
    {"tanh", TG_ACT_TANH, 0},	      {"leaky_relu", TG_ACT_LEAKY_RELU, 0.01},
    {"elu", TG_ACT_ELU, 1.0},
};

int tg_act_parse(tg_ctx *ctx, const char *s, tg_act *out)
{
	if (!ctx)
		return -1;
	if (!s || !out) {
		tg_fail(ctx, TG_ENULL, "tg_act_parse: %s is NULL", !s ? "the name" : "out");
		return -1;
	}
	const char *colon = strchr(s, ':');
	size_t len = colon ? (size_t)(colon - s) : strlen(s);
	for (size_t i = 0; i < sizeof act_names / sizeof act_names[0]; i++) {
		if (strlen(act_names[i].name) != len || strncmp(s, act_names[i].name, len))
			continue;
		tg_act a = {act_names[i].kind, act_names[i].alpha};
		if (colon) {
			char *end;
			a.alpha = tg_c_strtod(colon + 1, &end);
			bool has_alpha = a.kind == TG_ACT_LEAKY_RELU || a.kind == TG_ACT_ELU;
			if (!has_alpha || end == colon + 1 || *end || !isfinite(a.alpha)) {
				tg_fail(ctx, TG_EARG, "tg_act_parse: \"%s\": %s", s,
					has_alpha ? "the alpha after ':' must be a number"
						  : "this activation takes no parameter");
				return -1;
			}
		}
		*out = a;
		return 0;
	}
	tg_fail(ctx, TG_EARG,
		"tg_act_parse: unknown activation \"%s\"; expected identity, relu, sigmoid, "
		"tanh, leaky_relu[:alpha] or elu[:alpha]",
		s);
	return -1;
}

/* The shortest of %.15g, %.16g, %.17g that reads back as v. */
static const char *num_str(double v, char *buf, size_t size)
{
	for (int digits = 15; digits <= 17; digits++) {
		tg_c_snprintf(buf, size, "%.*g", digits, v);
		if (tg_c_strtod(buf, NULL) == v)
			break;
	}
	return buf;
}

char *tg_act_str(tg_act act, char *buf, size_t size)
{
	char a[32];
	if (!buf || !size)
		return buf;
	switch (act.kind) {
	case TG_ACT_IDENTITY:
		snprintf(buf, size, "identity");
		break;
	case TG_ACT_RELU:
		snprintf(buf, size, "relu");
		break;
	case TG_ACT_SIGMOID:
		snprintf(buf, size, "sigmoid");
		break;
	case TG_ACT_TANH:
		snprintf(buf, size, "tanh");
		break;
	case TG_ACT_LEAKY_RELU:
		snprintf(buf, size, "leaky_relu:%s", num_str(act.alpha, a, sizeof a));
		break;
	case TG_ACT_ELU:
		snprintf(buf, size, "elu:%s", num_str(act.alpha, a, sizeof a));
		break;
	default:
		snprintf(buf, size, "unknown(%d)", (int)act.kind);
	}
	return buf;
}

tg_tensor *tg_act_forward(tg_act act, tg_tensor *x)
{
	switch (act.kind) {
	case TG_ACT_IDENTITY:
		return x;
	case TG_ACT_RELU:
		return tg_relu(x);
	case TG_ACT_SIGMOID:
		return tg_sigmoid(x);
	case TG_ACT_TANH:
		return tg_tanh(x);
	case TG_ACT_LEAKY_RELU:
		return tg_leaky_relu(x, act.alpha);
	case TG_ACT_ELU:
		return tg_elu(x, act.alpha);
	}
	tg_ctx *ctx = tg_ctx_of(x);
	return ctx ? tg_fail(ctx, TG_EARG, "tg_act_forward: unknown activation %d", (int)act.kind)
		   : NULL;
}

/* ---- losses ---------------------------------------------------------------------- */

/* -sum(t * log_softmax(x)) / N; d x = (softmax(x) - t) / N when rows of t sum to 1 */
/* Soft targets are a distribution per row: each element in [0, 1] and each
 * row summing to 1 within TG_SOFT_TARGET_TOL (probabilities written with a
 * few decimals pass; a row of zeros, two ones or counts do not), as the
 * loss and its gradient (softmax - t) / N assume. 0 ok; -1 and TG_EARG
 * naming the first element or row that is not. Other dtypes are left to
 * the ops to refuse. */
static int check_soft_targets(tg_ctx *ctx, tg_tensor *t)
{
	tg_dtype dt = tg_dtype_of(t);
	if (dt != TG_F32 && dt != TG_F64)
		return 0;
	const void *p = tg_data(t);
	if (!p)
		return -1;
	int64_t rows = tg_dim(t, 0), k = tg_dim(t, 1);
	char sh[96];
	for (int64_t i = 0; i < rows; i++) {
		double sum = 0;
		for (int64_t j = 0; j < k; j++) {
			double v = dt == TG_F32 ? ((const float *)p)[i * k + j]
						: ((const double *)p)[i * k + j];
			if (!(v >= 0 && v <= 1)) {
				tg_fail(ctx, TG_EARG,
					"tg_cross_entropy_soft: targets %s: element (%lld,%lld) is %g, "
					"outside [0, 1]",
					tg_shape_str(t, sh, sizeof sh), (long long)i, (long long)j, v);
				return -1;
			}
			sum += v;
		}
		if (!(fabs(sum - 1) <= TG_SOFT_TARGET_TOL)) {
			tg_fail(ctx, TG_EARG,
				"tg_cross_entropy_soft: targets %s: row %lld sums to %.9g; each row "
				"of soft targets is a distribution summing to 1",
				tg_shape_str(t, sh, sizeof sh), (long long)i, sum);
			return -1;
		}
	}
	return 0;
}

static const char *dtype_str(tg_dtype dt)
{
	return dt == TG_F32 ? "f32" : dt == TG_F64 ? "f64" : dt == TG_I32 ? "i32" : "i64";
}

tg_tensor *tg_cross_entropy_soft(tg_tensor *logits, tg_tensor *t)
{
	tg_ctx *ctx = begin("tg_cross_entropy_soft", logits);
	if (ctx && !t)
		return tg_fail(ctx, TG_ENULL, "tg_cross_entropy_soft: targets are NULL");
	if (!ctx || !begin("tg_cross_entropy_soft", t))
		return NULL;
	char a[96], b[96];
	if (tg_ctx_of(t) != ctx)
		return tg_fail(ctx, TG_ECTX,
			       "tg_cross_entropy_soft: the targets belong to another context than "
			       "the logits");
	if (tg_dtype_of(t) != tg_dtype_of(logits))
		return tg_fail(ctx, TG_EDTYPE,
			       "tg_cross_entropy_soft: logits %s are %s, targets %s are %s; give "
			       "both in one dtype",
			       tg_shape_str(logits, a, sizeof a), dtype_str(tg_dtype_of(logits)),
			       tg_shape_str(t, b, sizeof b), dtype_str(tg_dtype_of(t)));
	if (tg_ndim(logits) != 2 || tg_ndim(t) != 2 || tg_dim(t, 0) != tg_dim(logits, 0) ||
	    tg_dim(t, 1) != tg_dim(logits, 1))
		return tg_fail(ctx, TG_ESHAPE,
			       "tg_cross_entropy_soft: logits %s and targets %s must both be (N,K)",
			       tg_shape_str(logits, a, sizeof a), tg_shape_str(t, b, sizeof b));
	if (check_soft_targets(ctx, t))
		return NULL;
	double n = (double)tg_dim(logits, 0);
	return tg_mul_scalar(tg_sum(tg_mul(t, tg_log_softmax(logits))), -1.0 / n);
}

/* 0.5 lambda sum(W^2) over the params marked for decay; d W = lambda W */
tg_tensor *tg_weight_penalty(tg_tensor *const *params, size_t n, double lambda)
{
	if (!params || !n)
		return NULL;
	tg_ctx *ctx = begin("tg_weight_penalty", params[0]);
	if (!ctx)
		return NULL;
	if (!(lambda >= 0) || !isfinite(lambda))
		return tg_fail(ctx, TG_EARG,
			       "tg_weight_penalty: lambda = %g; it must be finite and not negative",
			       lambda);
	tg_tensor *sum = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!params[i])
			return tg_fail(ctx, TG_ENULL, "tg_weight_penalty: params[%zu] is NULL", i);
		if (!tg_decays(params[i]))
			continue;
		tg_tensor *s = tg_sum(tg_mul(params[i], params[i]));
		sum = sum ? tg_add(sum, s) : s;
	}
	if (!sum)
		return tg_scalar(ctx, tg_dtype_of(params[0]), 0.0);
	return tg_mul_scalar(sum, 0.5 * lambda);
}

int tg_argmax_rows(const tg_tensor *x, int32_t *out)
{
	if (!x)
		return -1;
	tg_ctx *ctx = tg_tensor_check("tg_argmax_rows", x);
	if (!ctx)
		return -1;
	if (!out) {
		tg_fail(ctx, TG_ENULL, "tg_argmax_rows: out is NULL");
		return -1;
	}
	if (tg_ndim(x) != 2) {
		char a[96];
		tg_fail(ctx, TG_ESHAPE, "tg_argmax_rows: x is %s; it must be (N,K)",
			tg_shape_str(x, a, sizeof a));
		return -1;
	}
	if (tg_dtype_of(x) != TG_F32 && tg_dtype_of(x) != TG_F64) {
		tg_fail(ctx, TG_EDTYPE, "tg_argmax_rows: x is %s; scores are f32 or f64",
			tg_dtype_of(x) == TG_I32 ? "i32" : "i64");
		return -1;
	}
	int64_t n = tg_dim(x, 0), k = tg_dim(x, 1);
	const void *data = tg_data(x);
	/* a NaN is the largest, the first of them wins (torch.argmax, NumPy) */
	for (int64_t i = 0; i < n; i++) {
		int32_t best = 0;
		if (tg_dtype_of(x) == TG_F64) {
			const double *r = (const double *)data + i * k;
			for (int64_t j = 1; j < k && !isnan(r[best]); j++)
				if (r[j] > r[best] || isnan(r[j]))
					best = (int32_t)j;
		} else {
			const float *r = (const float *)data + i * k;
			for (int64_t j = 1; j < k && !isnan(r[best]); j++)
				if (r[j] > r[best] || isnan(r[j]))
					best = (int32_t)j;
		}
		out[i] = best;
	}
	return 0;
}

/* ---- batch norm: y = (x - mean) / sqrt(var + eps) * gamma + beta ------------------- */
/* Per feature of (N,D), or per channel of (N,C,...) over N and the axes
 * after C. Training uses the batch's mean and biased variance (the fused op
 * tg_batch_norm, gradient through the statistics included); evaluation the
 * running ones, constants of the graph. */

int tg_batchnorm_init(tg_batchnorm *bn, tg_ctx *ctx, tg_dtype dt, int64_t d, const char *name)
{
	char buf[128];
	if (!ctx)
		return -1;
	if (!bn) {
		tg_fail(ctx, TG_ENULL, "tg_batchnorm_init: the layer is NULL");
		return -1;
	}
	*bn = (tg_batchnorm){0};
	bn->gamma =
	    tg_init_vector(ctx, dt, d, 1.0, true, field_name(buf, sizeof buf, name, "gamma"));
	bn->beta = tg_init_vector(ctx, dt, d, 0.0, true, field_name(buf, sizeof buf, name, "beta"));
	bn->running_mean = tg_init_vector(ctx, dt, d, 0.0, false,
					  field_name(buf, sizeof buf, name, "running_mean"));
	bn->running_var = tg_init_vector(ctx, dt, d, 1.0, false,
					 field_name(buf, sizeof buf, name, "running_var"));
	bn->eps = TG_BN_EPS;
	bn->avg_decay = TG_BN_AVG_DECAY;
	bn->training = true;
	return bn->gamma && bn->beta && bn->running_mean && bn->running_var ? 0 : -1;
}

void tg_bn_update_running(tg_tensor *running, const tg_tensor *batch, double decay)
{
	size_t n = tg_numel(running);
	void *r = tg_data_mut(running);
	const void *b = tg_data(batch);
	if (!r || !b)
		return;
	if (tg_dtype_of(running) == TG_F64) {
		double *R = r;
		const double *B = b;
		for (size_t i = 0; i < n; i++)
			R[i] = decay * R[i] + (1.0 - decay) * B[i];
	} else {
		float *R = r;
		const float *B = b;
		float d = (float)decay;
		for (size_t i = 0; i < n; i++)
			R[i] = d * R[i] + (1.0f - d) * B[i];
	}
}

static bool bn_args_ok(tg_ctx *ctx, const tg_batchnorm *bn, tg_tensor *x)
{
	const char *who = label(bn->gamma, "gamma");
	char xs[96];
	int64_t d = tg_dim(bn->gamma, 0);
	int nd = tg_ndim(x);
	if (nd < 2 || tg_dim(x, 1) != d) {
		tg_fail(ctx, TG_ESHAPE,
			"tg_batchnorm_forward: %s: input %s is not (N,%lld) or (N,%lld,...)", who,
			tg_shape_str(x, xs, sizeof xs), (long long)d, (long long)d);
		return false;
	}
	char why[128];
	if (tg_norm_eps_wrong(bn->eps, tg_dtype_of(bn->gamma), why, sizeof why)) {
		tg_fail(ctx, TG_EARG, "tg_batchnorm_forward: %s: %s", who, why);
		return false;
	}
	if (!(bn->avg_decay >= 0 && bn->avg_decay <= 1)) {
		tg_fail(ctx, TG_EARG, "tg_batchnorm_forward: %s: avg_decay = %g is not in [0, 1]",
			who, bn->avg_decay);
		return false;
	}
	/* A running variance is never negative: training only moves it towards
	 * batch variances. One loaded so from a file made by other means would
	 * make every evaluation NaN without a word. NaN itself is left to the
	 * loader's check (a diverged model may be looked at). Another dtype or
	 * shape goes to the ops, which report it. */
	const tg_tensor *rv = bn->running_var;
	const void *v = tg_data(rv);
	tg_dtype vdt = tg_dtype_of(rv);
	if (v && (vdt == TG_F32 || vdt == TG_F64) && tg_ndim(rv) == 1 && tg_dim(rv, 0) == d)
		for (int64_t c = 0; c < d; c++) {
			double s = vdt == TG_F64 ? ((const double *)v)[c] : ((const float *)v)[c];
			if (s < 0) {
				tg_fail(ctx, TG_EARG,
					"tg_batchnorm_forward: %s holds %g at element %lld; a "
					"variance is never negative",
					label(rv, "running_var"), s, (long long)c);
				return false;
			}
		}
	/* the values each channel is normalised over: N, times the trailing
	 * axes' sizes for (N,C,...) */
	size_t per_channel = tg_numel(x) / (size_t)d;
	if (bn->training && nd == 2 && per_channel < 2) {
		tg_fail(ctx, TG_ESHAPE,
			"tg_batchnorm_forward: %s: a batch of %lld %s in training mode has variance "
			"0; train with batches of 2 or more, or evaluate (training = false)",
			who, (long long)tg_dim(x, 0), tg_shape_str(x, xs, sizeof xs));
		return false;
	}
	if (bn->training && per_channel < 2) {
		tg_fail(ctx, TG_ESHAPE,
			"tg_batchnorm_forward: %s: input %s has %zu value per channel, whose "
			"variance in training mode is 0; train with 2 or more values per channel "
			"(N times the sizes after C), or evaluate (training = false)",
			who, tg_shape_str(x, xs, sizeof xs), per_channel);
		return false;
	}
	return true;
}

/* ---- evaluation with nothing to differentiate ---------------------------------- */
/* y = (x - mean) / sqrt(var + eps) * gamma + beta per channel, through a
 * relu when relu: the composition batchnorm_forward_as records when a
 * gradient is wanted, each element through the same roundings in the same
 * order (sub, div, mul and add in the dtype, no contraction in ISO C mode,
 * sqrt correctly rounded either way; relu as tg_relu's x < 0 ? 0 : x), in
 * one pass over x where the composition makes four (five with the relu)
 * and keeps as many tensors of x's size. X (rows, C, inner): inner 1 is
 * the (N,C) layout, whose channels run along a row. The relu is a copy of
 * the loop, not a test in it. */
#define BN_EVAL(name, T)                                                                   \
	static inline __attribute__((always_inline)) T name##_one(T x, T m, T s, T g, T b,   \
								  bool relu)                 \
	{                                                                                  \
		T y = (x - m) / s * g + b;                                                 \
		return relu ? (y < 0 ? 0 : y) : y;                                         \
	}                                                                                  \
	static inline __attribute__((always_inline)) void name##_body(                     \
	    const T *restrict X, T *restrict Y, int64_t rows, int64_t C, int64_t inner,     \
	    const T *restrict m, const T *restrict s, const T *restrict g,                  \
	    const T *restrict b, bool relu)                                                 \
	{                                                                                  \
		for (int64_t r = 0; r < rows; r++, X += C * inner, Y += C * inner) {       \
			if (inner == 1) {                                                  \
				for (int64_t c = 0; c < C; c++)                            \
					Y[c] = name##_one(X[c], m[c], s[c], g[c], b[c],    \
							  relu);                           \
				continue;                                                  \
			}                                                                  \
			for (int64_t c = 0; c < C; c++) {                                  \
				const T *x = X + c * inner;                                \
				T *y = Y + c * inner;                                      \
				const T mc = m[c], sc = s[c], gc = g[c], bc = b[c];        \
				for (int64_t i = 0; i < inner; i++)                        \
					y[i] = name##_one(x[i], mc, sc, gc, bc, relu);     \
			}                                                                  \
		}                                                                          \
	}                                                                                  \
	TG_HOT_LOOP static void name(const T *restrict X, T *restrict Y, int64_t rows,      \
				     int64_t C, int64_t inner, const T *restrict m,         \
				     const T *restrict s, const T *restrict g,              \
				     const T *restrict b)                                   \
	{                                                                                  \
		name##_body(X, Y, rows, C, inner, m, s, g, b, false);                     \
	}                                                                                  \
	TG_HOT_LOOP static void name##_relu(const T *restrict X, T *restrict Y,             \
					    int64_t rows, int64_t C, int64_t inner,         \
					    const T *restrict m, const T *restrict s,       \
					    const T *restrict g, const T *restrict b)       \
	{                                                                                  \
		name##_body(X, Y, rows, C, inner, m, s, g, b, true);                      \
	}
BN_EVAL(bn_eval_f64, double)
BN_EVAL(bn_eval_f32, float)

/* Rows [lo, hi) of the evaluation pass, for tg_parallel_for. */
typedef struct bn_eval_job {
	tg_dtype dt;
	bool relu;
	const char *X;
	char *Y;
	int64_t C, inner;
	const void *m, *s, *g, *b;
} bn_eval_job;

static void bn_eval_part(void *arg, size_t lo, size_t hi)
{
	const bn_eval_job *j = arg;
	size_t row = (size_t)(j->C * j->inner) * (j->dt == TG_F64 ? 8 : 4);
	int64_t n = (int64_t)(hi - lo);
	const void *X = j->X + lo * row;
	void *Y = j->Y + lo * row;
	if (j->dt == TG_F64)
		(j->relu ? bn_eval_f64_relu : bn_eval_f64)(X, Y, n, j->C, j->inner, j->m, j->s,
							   j->g, j->b);
	else
		(j->relu ? bn_eval_f32_relu : bn_eval_f32)(X, Y, n, j->C, j->inner, j->m, j->s,
							   j->g, j->b);
}

/* The evaluation forward in one pass (BN_EVAL), through a relu when relu,
 * rows split across the context's threads, for a bn whose tensors and x
 * are checked; NULL, with the error in x's context, if memory runs out. */
static tg_tensor *batchnorm_eval_plain(tg_batchnorm *bn, tg_tensor *x, bool relu)
{
	tg_ctx *ctx = tg_ctx_of(x);
	tg_dtype dt = tg_dtype_of(x);
	int64_t C = tg_dim(bn->gamma, 0), rows = tg_dim(x, 0);
	int64_t inner = (int64_t)tg_numel(x) / (rows * C);
	/* sqrt(var + eps) per channel, as tg_add_scalar and tg_sqrt round it */
	tg_tensor *s = tg_empty(ctx, dt, 1, (int64_t[]){ C });
	tg_tensor *y = tg_empty(ctx, dt, tg_ndim(x), tg_shape(x));
	void *S = tg_data_mut(s), *Y = tg_data_mut(y);
	if (!S || !Y)
		return NULL;
	const void *v = tg_data(bn->running_var);
	for (int64_t c = 0; c < C; c++) {
		if (dt == TG_F64) {
			((double *)S)[c] = sqrt(((const double *)v)[c] + bn->eps);
		} else {
			float t = ((const float *)v)[c] + (float)bn->eps;
			((float *)S)[c] = (float)sqrt(t);
		}
	}
	bn_eval_job j = { dt, relu, tg_data(x), Y, C, inner, tg_data(bn->running_mean), S,
			  tg_data(bn->gamma), tg_data(bn->beta) };
	size_t per_row = (size_t)(C * inner), min = (TG_PAR_MIN + per_row - 1) / per_row;
	tg_parallel_for(ctx, (size_t)rows, min, 1, bn_eval_part, &j);
	return y;
}

/* Whether evaluating bn on x (checked by bn_args_ok) records nothing: no
 * gradient wanted through any of its tensors and no anomaly checks to run
 * op by op. Tensors of another dtype, shape or context, or stale ones, go
 * to the composition, whose ops report them. */
static bool eval_plain(const tg_batchnorm *bn, const tg_tensor *x)
{
	const tg_ctx *ctx = tg_ctx_of(x);
	tg_dtype dt = tg_dtype_of(x);
	if (tg_anomaly(ctx) || (dt != TG_F32 && dt != TG_F64))
		return false;
	const tg_tensor *t[4] = { bn->gamma, bn->beta, bn->running_mean, bn->running_var };
	bool wanted = tg_requires_grad(x);
	for (int i = 0; i < 4; i++) {
		if (tg_ctx_of(t[i]) != ctx || tg_dtype_of(t[i]) != dt || tg_ndim(t[i]) != 1 ||
		    tg_dim(t[i], 0) != tg_dim(x, 1))
			return false;
		wanted = wanted || tg_requires_grad(t[i]);
	}
	return !(wanted && tg_grad_enabled(ctx));
}

/* tg_batchnorm_forward, through a relu when relu (one op while training) */
static tg_tensor *batchnorm_forward_as(tg_batchnorm *bn, tg_tensor *x, bool relu)
{
	tg_ctx *ctx = begin("tg_batchnorm_forward", x);
	if (!ctx)
		return NULL;
	if (!bn || !bn->gamma || !bn->beta || !bn->running_mean || !bn->running_var)
		return tg_fail(ctx, TG_ENULL,
			       "tg_batchnorm_forward: the layer or a tensor of it is NULL");
	if (!bn_args_ok(ctx, bn, x))
		return NULL;
	if (bn->training) {
		tg_tensor *mean, *var; /* (C), var biased */
		tg_tensor *y = (relu ? tg_batch_norm_relu : tg_batch_norm)(x, bn->gamma, bn->beta,
									   bn->eps, &mean, &var);
		if (y) {
			tg_bn_update_running(bn->running_mean, mean, bn->avg_decay);
			tg_bn_update_running(bn->running_var, var, bn->avg_decay);
		}
		return y;
	}
	if (eval_plain(bn, x))
		return batchnorm_eval_plain(bn, x, relu);
	/* (C) broadcasts along the last axis, so for (N,C,...) the statistics,
	 * gamma and beta are viewed as (1,C,1,...,1): one value per channel */
	tg_tensor *rm = bn->running_mean, *rv = bn->running_var, *g = bn->gamma, *b = bn->beta;
	int nd = tg_ndim(x);
	if (nd > 2) {
		int64_t shape[TG_MAX_DIMS];
		tg_bn_channel_shape(nd, tg_dim(bn->gamma, 0), shape);
		rm = tg_reshape(rm, nd, shape);
		rv = tg_reshape(rv, nd, shape);
		g = tg_reshape(g, nd, shape);
		b = tg_reshape(b, nd, shape);
	}
	tg_tensor *std = tg_sqrt(tg_add_scalar(rv, bn->eps));
	tg_tensor *xn = tg_div(tg_sub(x, rm), std);
	tg_tensor *y = tg_add(tg_mul(xn, g), b);
	return relu ? tg_relu(y) : y;
}

tg_tensor *tg_batchnorm_forward(tg_batchnorm *bn, tg_tensor *x)
{
	return batchnorm_forward_as(bn, x, false);
}

/* ---- dropout, inverted: y = x * mask / (1 - p); dx = dout * mask / (1 - p) -------- */

static bool dropout_p_ok(tg_ctx *ctx, const char *who, double p)
{
	if (p >= 0 && p < 1)
		return true;
	tg_fail(ctx, TG_EARG, "%s: p = %g; the drop probability must be in [0, 1)", who, p);
	return false;
}

tg_tensor *tg_dropout_apply(tg_tensor *x, tg_tensor *mask, double p)
{
	tg_ctx *ctx = begin("tg_dropout_apply", x);
	if (ctx && !mask)
		return tg_fail(ctx, TG_ENULL, "tg_dropout_apply: mask is NULL");
	if (!ctx || !begin("tg_dropout_apply", mask))
		return NULL;
	if (!dropout_p_ok(ctx, "tg_dropout_apply", p))
		return NULL;
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *scaled = tg_mul_scalar(mask, 1.0 / (1.0 - p)); /* a constant */
	tg_set_grad_enabled(ctx, was);
	return tg_mul(x, scaled);
}

/* Y[k] = keep where (R[k] >> 11) >= thr, else 0; branch-free (a branch on
 * each draw is mispredicted at random) and compared as signed integers,
 * which both sides fit (below 2^53) and vectors compare. */
#define KEEP_KERNEL(T, name)                                                               \
	TG_HOT_LOOP_WIDE                                                                   \
	static void name(T *restrict Y, const uint64_t *restrict R, size_t n, int64_t thr, \
			 T keep)                                                           \
	{                                                                                  \
		for (size_t k = 0; k < n; k++)                                             \
			Y[k] = (int64_t)(R[k] >> 11) >= thr ? keep : (T)0;                  \
	}
KEEP_KERNEL(double, keep_f64)
KEEP_KERNEL(float, keep_f32)

/* The mask of tg_dropout_forward, already scaled: element i is 1 / (1 - p)
 * (kept) when the i-th uniform draw u_i >= p, else 0; the numbers
 * tg_dropout_apply would make of the 0/1 mask. u_i = (r_i >> 11) 2^-53 for
 * the i-th 64-bit draw r_i (tg_random_uniform), and p 2^53 is exact, so
 * u_i >= p exactly when the integer r_i >> 11 >= ceil(p 2^53): the draws
 * come in blocks (tg_random_u64_fill) and are compared as integers, one
 * pass over the mask instead of a call per element, a pass zeroing it and a
 * pass scaling it. */
static tg_tensor *draw_mask(tg_ctx *ctx, tg_tensor *x, double p)
{
	tg_tensor *m = tg_empty(ctx, tg_dtype_of(x), tg_ndim(x), tg_shape(x));
	void *data = tg_data_mut(m);
	if (!data)
		return NULL;
	size_t n = tg_numel(m);
	const int64_t thr = (int64_t)ceil(p * 0x1p53);
	const double keep = 1.0 / (1.0 - p);
	const bool f64 = tg_dtype_of(m) == TG_F64;
	uint64_t r[256];
	for (size_t i = 0; i < n; i += 256) {
		size_t c = n - i < 256 ? n - i : 256;
		tg_random_u64_fill(ctx, r, c);
		if (f64)
			keep_f64((double *)data + i, r, c, thr, keep);
		else
			keep_f32((float *)data + i, r, c, thr, (float)keep);
	}
	return m;
}

tg_tensor *tg_dropout_forward(const tg_dropout *d, tg_tensor *x)
{
	tg_ctx *ctx = begin("tg_dropout_forward", x);
	if (!ctx)
		return NULL;
	if (!d)
		return tg_fail(ctx, TG_ENULL, "tg_dropout_forward: the layer is NULL");
	if (!dropout_p_ok(ctx, "tg_dropout_forward", d->p))
		return NULL;
	if (!d->training || d->p == 0)
		return x;
	return tg_mul(x, draw_mask(ctx, x, d->p)); /* a constant: it has no history */
}

/* ---- built-in modules ---------------------------------------------------------------- */
/* Each is a tg_module (module.c) whose forward calls the functions above or
 * one op; self holds what is not a tensor (activation, eps, p). */

/* Writes like snprintf into buf (NULL when size is 0). */
static int put(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(size ? buf : NULL, size, fmt, ap);
	va_end(ap);
	return n;
}

/* A module of vt with a malloc'd copy of self (size bytes; none when 0). */
static tg_module *module_with(tg_ctx *ctx, const tg_module_vt *vt, const char *name,
			      const void *self, size_t size)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	void *copy = NULL;
	if (size) {
		copy = malloc(size);
		if (!copy)
			return tg_fail(ctx, TG_ENOMEM, "tg_%s: \"%s\": out of memory", vt->kind,
				       name ? name : "");
		memcpy(copy, self, size);
	}
	tg_module *m = tg_module_new(ctx, vt, name, copy);
	if (!m)
		free(copy);
	return m;
}

static void free_self(tg_module *m)
{
	free(m->self);
}

/* The module when ctx holds no error, else NULL with m freed. */
static tg_module *done(tg_module *m)
{
	if (m && tg_ok(m->ctx))
		return m;
	tg_module_free(m);
	return NULL;
}

/* Whether a parameter of the n sizes dims fits in a tensor
 * (TG_MAX_ELEMENTS); else TG_EARG naming the layer, where the tensor's
 * maker would name only itself and the shape. */
static bool weights_fit(tg_ctx *ctx, const char *who, const char *name, int n,
			const int64_t *dims)
{
	uint64_t count = 1;
	bool over = false;
	for (int i = 0; i < n; i++)
		over = over || __builtin_mul_overflow(count, (uint64_t)dims[i], &count) ||
		       count > TG_MAX_ELEMENTS;
	if (!over)
		return true;
	char buf[128] = "(";
	for (int i = 0; i < n; i++)
		snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%lld", i ? "," : "",
			 (long long)dims[i]);
	tg_fail(ctx, TG_EARG,
		"%s: \"%s\": a parameter of shape %s) would hold more than 2^40 elements, the "
		"most a tensor holds",
		who, name ? name : "", buf);
	return false;
}

static bool sizes_positive(tg_ctx *ctx, const char *who, const char *name, int64_t a, int64_t b)
{
	if (a > 0 && b > 0)
		return true;
	tg_fail(ctx, TG_EARG, "%s: \"%s\": sizes %lld and %lld must be positive", who,
		name ? name : "", (long long)a, (long long)b);
	return false;
}

/* Sizes a and b of a layer whose parameter is (a,b) or (a) when b is 1. */
static bool sizes_ok(tg_ctx *ctx, const char *who, const char *name, int64_t a, int64_t b)
{
	return sizes_positive(ctx, who, name, a, b) &&
	       weights_fit(ctx, who, name, 2, (const int64_t[]){ a, b });
}

/* linear: x @ W + b */

/* A layer's input must have its parameters' dtype; else an error naming the
 * layer and both dtypes, where the op would only name itself. */
static bool input_dtype_ok(const tg_module *m, const tg_tensor *x)
{
	static const char *const names[] = { [TG_F32] = "f32", [TG_F64] = "f64",
					     [TG_I32] = "i32", [TG_I64] = "i64" };
	tg_dtype in = tg_dtype_of(x), p = tg_dtype_of(m->params[0]);
	if (in == p)
		return true;
	tg_fail(m->ctx, TG_EDTYPE, "%s \"%s\": input is %s, the layer's parameters %s",
		m->vt->kind, m->name, (unsigned)in <= TG_I64 ? names[in] : "?",
		(unsigned)p <= TG_I64 ? names[p] : "?");
	return false;
}

static tg_tensor *linear_forward(tg_module *m, tg_tensor *x)
{
	if (!input_dtype_ok(m, x))
		return NULL;
	tg_affine l = {m->params[0], m->params[1]};
	return tg_affine_forward(&l, x);
}

/* a linear layer and the relu after it (b), as tg_fused_pair runs them */
static tg_tensor *linear_relu_forward(tg_module *m, tg_module *b, tg_tensor *x)
{
	(void)b;
	if (!input_dtype_ok(m, x))
		return NULL;
	tg_affine l = {m->params[0], m->params[1]};
	return affine_forward(&l, x, true);
}

static int linear_spec(const tg_module *m, char *buf, size_t size)
{
	return put(buf, size, "linear:%lld:%lld", (long long)tg_dim(m->params[0], 0),
		   (long long)tg_dim(m->params[0], 1));
}

static const tg_module_vt linear_vt = {
    .kind = "linear", .forward = linear_forward, .spec = linear_spec};

tg_module *tg_linear(tg_ctx *ctx, tg_dtype dt, int64_t n_in, int64_t n_out, tg_init init,
		     const char *name)
{
	if (!ctx || !tg_ok(ctx) || !sizes_ok(ctx, "tg_linear", name, n_in, n_out))
		return NULL;
	tg_module *m = module_with(ctx, &linear_vt, name, NULL, 0);
	if (m) {
		/* W first, then b: the draws of tg_affine_init; named here too,
		 * for the message of one that cannot be made */
		char buf[128];
		tg_module_add_param(
			m, tg_init_weight(ctx, dt, n_in, n_out, init, field_name(buf, sizeof buf, name, "W")),
			"W", true);
		tg_module_add_param(
			m, tg_init_vector(ctx, dt, n_out, 0.0, true, field_name(buf, sizeof buf, name, "b")),
			"b", false);
	}
	return done(m);
}

/* activations: one vt per kind, so that kind is the spec's word */

static tg_tensor *act_forward(tg_module *m, tg_tensor *x)
{
	return tg_act_forward(*(const tg_act *)m->self, x);
}

static int act_spec(const tg_module *m, char *buf, size_t size)
{
	char s[64];
	return put(buf, size, "%s", tg_act_str(*(const tg_act *)m->self, s, sizeof s));
}

#define ACT_VT(word)                                                                               \
	{                                                                                          \
		.kind = word, .forward = act_forward, .free = free_self, .spec = act_spec          \
	}
static const tg_module_vt act_vt[] = {
    [TG_ACT_IDENTITY] = ACT_VT("identity"),	[TG_ACT_RELU] = ACT_VT("relu"),
    [TG_ACT_SIGMOID] = ACT_VT("sigmoid"),	[TG_ACT_TANH] = ACT_VT("tanh"),
    [TG_ACT_LEAKY_RELU] = ACT_VT("leaky_relu"), [TG_ACT_ELU] = ACT_VT("elu"),
};
#undef ACT_VT

tg_module *tg_activation(tg_ctx *ctx, tg_act act, const char *name)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	if ((unsigned)act.kind > TG_ACT_ELU)
		return tg_fail(ctx, TG_EARG, "tg_activation: \"%s\": unknown activation %d",
			       name ? name : "", (int)act.kind);
	if (!isfinite(act.alpha)) {
		char a[64];
		return tg_fail(ctx, TG_EARG, "tg_activation: \"%s\": %s: alpha must be finite",
			       name ? name : "", tg_act_str(act, a, sizeof a));
	}
	return module_with(ctx, &act_vt[act.kind], name, &act, sizeof act);
}

/* batch norm: tg_batchnorm_forward with the module's mode */

/* The module's own data: the layer (first, so that m->self is a
 * tg_batchnorm to whoever reads it as one) and whether its eps and
 * avg_decay were stated by a spec piece against the reader's defaults. */
typedef struct {
	tg_batchnorm bn;
	bool stated;
} bn_self;

void tg_bn_spec_states(tg_module *m)
{
	((bn_self *)m->self)->stated = true;
}

static tg_tensor *bn_forward(tg_module *m, tg_tensor *x)
{
	tg_batchnorm *bn = m->self;
	bn->training = m->training;
	if (!input_dtype_ok(m, x))
		return NULL;
	return tg_batchnorm_forward(bn, x);
}

static int bn_spec(const tg_module *m, char *buf, size_t size)
{
	const tg_batchnorm *bn = m->self;
	long long d = (long long)tg_dim(bn->gamma, 0);
	/* "bn:D" reads back with the reader's defaults (tg_model_parse's
	 * opts): a layer whose values a piece stated against other defaults
	 * writes them even when they are TG_BN_EPS and TG_BN_AVG_DECAY */
	if (bn->eps == TG_BN_EPS && bn->avg_decay == TG_BN_AVG_DECAY &&
	    !((const bn_self *)m->self)->stated)
		return put(buf, size, "bn:%lld", d);
	char e[32], a[32];
	return put(buf, size, "bn:%lld:%s:%s", d, num_str(bn->eps, e, sizeof e),
		   num_str(bn->avg_decay, a, sizeof a));
}

static const tg_module_vt bn_vt = {
    .kind = "bn", .forward = bn_forward, .free = free_self, .spec = bn_spec};

/* a batch norm and the relu after it (b), as tg_fused_pair runs them */
static tg_tensor *bn_relu_forward(tg_module *m, tg_module *b, tg_tensor *x)
{
	(void)b;
	tg_batchnorm *bn = m->self;
	bn->training = m->training;
	if (!input_dtype_ok(m, x))
		return NULL;
	return batchnorm_forward_as(bn, x, true);
}

tg_module *tg_batchnorm1d(tg_ctx *ctx, tg_dtype dt, int64_t d, double eps, double avg_decay,
			  const char *name)
{
	if (!ctx || !tg_ok(ctx) || !sizes_ok(ctx, "tg_batchnorm1d", name, d, 1))
		return NULL;
	char why[128];
	if (tg_norm_eps_wrong(eps, dt, why, sizeof why))
		return tg_fail(ctx, TG_EARG, "tg_batchnorm1d: \"%s\": %s", name ? name : "", why);
	if (!(avg_decay >= 0 && avg_decay <= 1))
		return tg_fail(ctx, TG_EARG, "tg_batchnorm1d: \"%s\": avg_decay = %g is not in [0, 1]",
			       name ? name : "", avg_decay);
	bn_self bn = {.bn = {.eps = eps, .avg_decay = avg_decay, .training = true}};
	tg_module *m = module_with(ctx, &bn_vt, name, &bn, sizeof bn);
	if (m) {
		tg_batchnorm *b = m->self;
		b->gamma = tg_module_add_param(m, tg_init_vector(ctx, dt, d, 1.0, true, NULL),
					       "gamma", false);
		b->beta = tg_module_add_param(m, tg_init_vector(ctx, dt, d, 0.0, true, NULL),
					      "beta", false);
		int64_t shape[1] = {d};
		b->running_mean =
		    tg_module_add_state(m, tg_zeros(ctx, dt, 1, shape), "running_mean");
		b->running_var = tg_module_add_state(m, tg_ones(ctx, dt, 1, shape), "running_var");
	}
	return done(m);
}

/* layer norm: the op tg_layer_norm over the last axis */

static tg_tensor *ln_forward(tg_module *m, tg_tensor *x)
{
	if (!input_dtype_ok(m, x))
		return NULL;
	return tg_layer_norm(x, m->params[0], m->params[1], *(const double *)m->self);
}

static int ln_spec(const tg_module *m, char *buf, size_t size)
{
	double eps = *(const double *)m->self;
	long long d = (long long)tg_dim(m->params[0], 0);
	if (eps == TG_LN_EPS)
		return put(buf, size, "ln:%lld", d);
	char e[32];
	return put(buf, size, "ln:%lld:%s", d, num_str(eps, e, sizeof e));
}

static const tg_module_vt ln_vt = {
    .kind = "ln", .forward = ln_forward, .free = free_self, .spec = ln_spec};

tg_module *tg_layernorm(tg_ctx *ctx, tg_dtype dt, int64_t d, double eps, const char *name)
{
	if (!ctx || !tg_ok(ctx) || !sizes_ok(ctx, "tg_layernorm", name, d, 1))
		return NULL;
	char why[128];
	if (tg_norm_eps_wrong(eps, dt, why, sizeof why))
		return tg_fail(ctx, TG_EARG, "tg_layernorm: \"%s\": %s", name ? name : "", why);
	tg_module *m = module_with(ctx, &ln_vt, name, &eps, sizeof eps);
	if (m) {
		tg_module_add_param(m, tg_init_vector(ctx, dt, d, 1.0, true, NULL), "gamma", false);
		tg_module_add_param(m, tg_init_vector(ctx, dt, d, 0.0, true, NULL), "beta", false);
	}
	return done(m);
}

/* dropout: tg_dropout_forward with the module's mode */

static tg_tensor *dropout_forward(tg_module *m, tg_tensor *x)
{
	tg_dropout *d = m->self;
	d->training = m->training;
	return tg_dropout_forward(d, x);
}

static int dropout_spec(const tg_module *m, char *buf, size_t size)
{
	char p[32];
	return put(buf, size, "dropout:%s", num_str(((const tg_dropout *)m->self)->p, p, sizeof p));
}

static const tg_module_vt dropout_vt = {
    .kind = "dropout", .forward = dropout_forward, .free = free_self, .spec = dropout_spec};

tg_module *tg_dropout_layer(tg_ctx *ctx, double p, const char *name)
{
	if (!ctx || !tg_ok(ctx) || !dropout_p_ok(ctx, "tg_dropout_layer", p))
		return NULL;
	tg_dropout d = {p, true};
	return module_with(ctx, &dropout_vt, name, &d, sizeof d);
}

/* embedding: rows of the table for an index tensor */

static tg_tensor *embedding_forward(tg_module *m, tg_tensor *idx)
{
	return tg_embedding(m->params[0], idx);
}

static int embedding_spec(const tg_module *m, char *buf, size_t size)
{
	return put(buf, size, "embedding:%lld:%lld", (long long)tg_dim(m->params[0], 0),
		   (long long)tg_dim(m->params[0], 1));
}

static const tg_module_vt embedding_vt = {
    .kind = "embedding", .forward = embedding_forward, .spec = embedding_spec};

tg_module *tg_embedding_table(tg_ctx *ctx, tg_dtype dt, int64_t v, int64_t d, const char *name)
{
	if (!ctx || !tg_ok(ctx) || !sizes_ok(ctx, "tg_embedding_table", name, v, d))
		return NULL;
	tg_module *m = module_with(ctx, &embedding_vt, name, NULL, 0);
	if (m)
		tg_module_add_param(m, tg_randn(ctx, dt, 2, (int64_t[]){v, d}, 0.0, 1.0), "weight",
				    false);
	return done(m);
}

/* flatten: (N, ...) -> (N, prod(...)) */

static tg_tensor *flatten_forward(tg_module *m, tg_tensor *x)
{
	int nd = tg_ndim(x);
	if (nd < 1) {
		char xs[96];
		return tg_fail(m->ctx, TG_ESHAPE, "tg_flatten: \"%s\": input %s has no batch axis",
			       m->name, tg_shape_str(x, xs, sizeof xs));
	}
	int64_t rest = 1;
	for (int i = 1; i < nd; i++)
		rest *= tg_dim(x, i);
	if (nd == 2)
		return x;
	return tg_reshape(x, 2, (int64_t[]){tg_dim(x, 0), rest});
}

static int flatten_spec(const tg_module *m, char *buf, size_t size)
{
	(void)m;
	return put(buf, size, "flatten");
}

static const tg_module_vt flatten_vt = {
    .kind = "flatten", .forward = flatten_forward, .spec = flatten_spec};

tg_module *tg_flatten(tg_ctx *ctx, const char *name)
{
	return module_with(ctx, &flatten_vt, name, NULL, 0);
}

/* conv2d: tg_conv2d with the module's options */

/* "3" when both sides are equal, else "3x5". */
static int pair_str(char *buf, size_t size, const int v[2])
{
	return v[0] == v[1] ? put(buf, size, "%d", v[0]) : put(buf, size, "%dx%d", v[0], v[1]);
}

static tg_tensor *conv_forward(tg_module *m, tg_tensor *x)
{
	if (!input_dtype_ok(m, x))
		return NULL;
	return tg_conv2d(x, m->params[0], m->params[1], m->self);
}

/* a convolution and the relu after it (b), as tg_fused_pair runs them */
static tg_tensor *conv_relu_forward(tg_module *m, tg_module *b, tg_tensor *x)
{
	(void)b;
	if (!input_dtype_ok(m, x))
		return NULL;
	return tg_conv2d_relu(x, m->params[0], m->params[1], m->self);
}

static int conv_spec(const tg_module *m, char *buf, size_t size)
{
	const tg_conv_opts *o = m->self;
	const tg_tensor *w = m->params[0];
	int k[2] = {(int)tg_dim(w, 2), (int)tg_dim(w, 3)};
	char ks[24], ss[24], ps[24], ds[24];
	pair_str(ks, sizeof ks, k);
	pair_str(ss, sizeof ss, o->stride);
	pair_str(ps, sizeof ps, o->padding);
	pair_str(ds, sizeof ds, o->dilation);
	long long c = (long long)tg_dim(w, 1) * o->groups, oc = (long long)tg_dim(w, 0);
	/* trailing defaults are left out */
	if (o->groups != 1)
		return put(buf, size, "conv:%lld:%lld:%s:%s:%s:%s:%d", c, oc, ks, ss, ps, ds,
			   o->groups);
	if (o->dilation[0] != 1 || o->dilation[1] != 1)
		return put(buf, size, "conv:%lld:%lld:%s:%s:%s:%s", c, oc, ks, ss, ps, ds);
	if (o->padding[0] || o->padding[1])
		return put(buf, size, "conv:%lld:%lld:%s:%s:%s", c, oc, ks, ss, ps);
	if (o->stride[0] != 1 || o->stride[1] != 1)
		return put(buf, size, "conv:%lld:%lld:%s:%s", c, oc, ks, ss);
	return put(buf, size, "conv:%lld:%lld:%s", c, oc, ks);
}

static const tg_module_vt conv_vt = {
    .kind = "conv", .forward = conv_forward, .free = free_self, .spec = conv_spec};

tg_module *tg_conv2d_layer(tg_ctx *ctx, tg_dtype dt, int64_t c_in, int64_t c_out, int kh, int kw,
			   const tg_conv_opts *opts, tg_init init, const char *name)
{
	if (!ctx || !tg_ok(ctx) || !sizes_positive(ctx, "tg_conv2d_layer", name, c_in, c_out) ||
	    !sizes_positive(ctx, "tg_conv2d_layer", name, kh, kw))
		return NULL;
	tg_conv_opts o = TG_CONV_DEFAULTS;
	if (opts)
		o = *opts;
	const char *nm = name ? name : "";
	if (o.stride[0] < 1 || o.stride[1] < 1 || o.dilation[0] < 1 || o.dilation[1] < 1 ||
	    o.padding[0] < 0 || o.padding[1] < 0 || o.groups < 1)
		return tg_fail(ctx, TG_EARG,
			       "tg_conv2d_layer: \"%s\": stride (%d,%d) and dilation (%d,%d) must "
			       "be >= 1, padding (%d,%d) >= 0 and groups %d >= 1",
			       nm, o.stride[0], o.stride[1], o.dilation[0], o.dilation[1],
			       o.padding[0], o.padding[1], o.groups);
	if (c_in % o.groups || c_out % o.groups)
		return tg_fail(ctx, TG_EARG,
			       "tg_conv2d_layer: \"%s\": groups %d must divide c_in %lld and "
			       "c_out %lld",
			       nm, o.groups, (long long)c_in, (long long)c_out);
	int64_t fan_in, fan_out;
	if (__builtin_mul_overflow(c_in / o.groups, (int64_t)kh * kw, &fan_in) ||
	    __builtin_mul_overflow(c_out / o.groups, (int64_t)kh * kw, &fan_out))
		return tg_fail(ctx, TG_EARG,
			       "tg_conv2d_layer: \"%s\": channels %lld -> %lld with a %dx%d kernel "
			       "are too many to count",
			       nm, (long long)c_in, (long long)c_out, kh, kw);
	if (!weights_fit(ctx, "tg_conv2d_layer", name, 4,
			 (const int64_t[]){ c_out, c_in / o.groups, kh, kw }))
		return NULL;
	double std = tg_init_std(init, fan_in, fan_out);
	if (!(std >= 0) || !isfinite(std)) {
		char buf[32];
		return tg_fail(ctx, TG_EARG,
			       "tg_conv2d_layer: \"%s\": initialiser %s for fan-in %lld gives std %g",
			       nm, tg_init_str(init, buf, sizeof buf), (long long)fan_in, std);
	}
	tg_module *m = module_with(ctx, &conv_vt, name, &o, sizeof o);
	if (m) {
		int64_t shape[4] = {c_out, c_in / o.groups, kh, kw};
		tg_module_add_param(m, tg_param(tg_randn(ctx, dt, 4, shape, 0.0, std)), "W", true);
		tg_module_add_param(m, tg_init_vector(ctx, dt, c_out, 0.0, true, NULL), "b", false);
	}
	return done(m);
}

/* pooling: tg_max_pool2d / tg_avg_pool2d, no parameters */

typedef struct {
	int kernel, stride, padding;
} pool_args;

static tg_tensor *maxpool_forward(tg_module *m, tg_tensor *x)
{
	const pool_args *p = m->self;
	return tg_max_pool2d(x, p->kernel, p->stride, p->padding);
}

static tg_tensor *avgpool_forward(tg_module *m, tg_tensor *x)
{
	const pool_args *p = m->self;
	return tg_avg_pool2d(x, p->kernel, p->stride, p->padding);
}

static int pool_spec(const tg_module *m, char *buf, size_t size)
{
	const pool_args *p = m->self;
	if (p->padding)
		return put(buf, size, "%s:%d:%d:%d", m->vt->kind, p->kernel, p->stride,
			   p->padding);
	if (p->stride != p->kernel)
		return put(buf, size, "%s:%d:%d", m->vt->kind, p->kernel, p->stride);
	return put(buf, size, "%s:%d", m->vt->kind, p->kernel);
}

static const tg_module_vt maxpool_vt = {
    .kind = "maxpool", .forward = maxpool_forward, .free = free_self, .spec = pool_spec};

/* a relu and the max pool after it (b), as tg_fused_pair runs them */
static tg_tensor *relu_maxpool_forward(tg_module *m, tg_module *b, tg_tensor *x)
{
	(void)m;
	const pool_args *p = b->self;
	return tg_relu_max_pool2d(x, p->kernel, p->stride, p->padding);
}

tg_pair_forward tg_fused_pair(const tg_module *a, const tg_module *b, const tg_module *after)
{
	const tg_module_vt *relu = &act_vt[TG_ACT_RELU];
	if (a->ctx != b->ctx)
		return NULL;
	/* evaluating, the pair saves a pass only when no gradient is wanted:
	 * where b pairs with the child after it (relu and max pool, which
	 * always do), that pair goes first */
	if (a->vt == &bn_vt && b->vt == relu &&
	    (a->training || !after || !tg_fused_pair(b, after, NULL)))
		return bn_relu_forward;
	if (a->vt == relu && b->vt == &maxpool_vt)
		return relu_maxpool_forward;
	if (a->vt == &linear_vt && b->vt == relu)
		return linear_relu_forward;
	/* a relu before a max pool goes with the pool, which takes the mask
	 * on the pooled size */
	if (a->vt == &conv_vt && b->vt == relu && !(after && tg_fused_pair(b, after, NULL)))
		return conv_relu_forward;
	return NULL;
}

static const tg_module_vt avgpool_vt = {
    .kind = "avgpool", .forward = avgpool_forward, .free = free_self, .spec = pool_spec};

static tg_module *pool_layer(tg_ctx *ctx, const tg_module_vt *vt, int k, int stride, int padding,
			     const char *name)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	pool_args p = {k, stride ? stride : k, padding};
	if (k < 1 || p.stride < 1 || padding < 0 || padding > k / 2)
		return tg_fail(ctx, TG_EARG,
			       "tg_%s2d_layer: \"%s\": kernel %d and stride %d must be >= 1 and "
			       "padding %d in [0, kernel/2]",
			       vt->kind, name ? name : "", k, stride, padding);
	return module_with(ctx, vt, name, &p, sizeof p);
}

tg_module *tg_maxpool2d_layer(tg_ctx *ctx, int k, int stride, int padding, const char *name)
{
	return pool_layer(ctx, &maxpool_vt, k, stride, padding, name);
}

tg_module *tg_avgpool2d_layer(tg_ctx *ctx, int k, int stride, int padding, const char *name)
{
	return pool_layer(ctx, &avgpool_vt, k, stride, padding, name);
}
