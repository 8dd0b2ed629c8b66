/*
 * layers.c - Affine, activations, losses, batch norm and dropout.
 *
 * Each module's forward pass is an expression of ops, so tg_backward
 * differentiates it with the ops' own rules: no gradient code lives here.
 * What is not gradient is state (batch norm's running statistics, updated
 * outside the graph) and constants of the graph (dropout's mask).
 * Shapes: N = batch, D = features in, M = features out, K = classes.
 */
#include "tapegrad.h"
#include "tapegrad_nn.h"

#include <math.h>
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

/* The context of x, NULL when the function must return NULL: x NULL, an
 * error already set, or x stale (reading it records TG_ESTALE). */
static tg_ctx *begin(const tg_tensor *x)
{
	if (!x)
		return NULL;
	tg_ctx *ctx = tg_ctx_of(x);
	if (!ctx) {
		tg_data(x);
		return NULL;
	}
	return tg_ok(ctx) ? ctx : NULL;
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
	return l->W && l->b ? 0 : -1;
}

tg_tensor *tg_affine_forward(const tg_affine *l, tg_tensor *x)
{
	tg_ctx *ctx = begin(x);
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
	tg_tensor *y = tg_add(tg_matmul(x2, l->W), l->b);
	if (nd == 1)
		y = tg_reshape(y, 1, (int64_t[]){m});
	return y;
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
			a.alpha = strtod(colon + 1, &end);
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

char *tg_act_str(tg_act act, char *buf, size_t size)
{
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
		snprintf(buf, size, "leaky_relu:%g", act.alpha);
		break;
	case TG_ACT_ELU:
		snprintf(buf, size, "elu:%g", act.alpha);
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
tg_tensor *tg_cross_entropy_soft(tg_tensor *logits, tg_tensor *t)
{
	tg_ctx *ctx = begin(logits);
	if (ctx && !t)
		return tg_fail(ctx, TG_ENULL, "tg_cross_entropy_soft: targets are NULL");
	if (!ctx || !begin(t))
		return NULL;
	char a[96], b[96];
	if (tg_ndim(logits) != 2 || tg_ndim(t) != 2 || tg_dim(t, 0) != tg_dim(logits, 0) ||
	    tg_dim(t, 1) != tg_dim(logits, 1))
		return tg_fail(ctx, TG_ESHAPE,
			       "tg_cross_entropy_soft: logits %s and targets %s must both be (N,K)",
			       tg_shape_str(logits, a, sizeof a), tg_shape_str(t, b, sizeof b));
	double n = (double)tg_dim(logits, 0);
	return tg_mul_scalar(tg_sum(tg_mul(t, tg_log_softmax(logits))), -1.0 / n);
}

static bool is_weight(const tg_tensor *p)
{
	const char *s = tg_name(p);
	size_t n = s ? strlen(s) : 0;
	return n >= 2 && !strcmp(s + n - 2, ".W");
}

/* 0.5 lambda sum(W^2) over the weights; d W = lambda W */
tg_tensor *tg_weight_penalty(tg_tensor *const *params, size_t n, double lambda)
{
	if (!params || !n)
		return NULL;
	tg_ctx *ctx = begin(params[0]);
	if (!ctx)
		return NULL;
	tg_tensor *sum = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!params[i])
			return tg_fail(ctx, TG_ENULL, "tg_weight_penalty: params[%zu] is NULL", i);
		if (!is_weight(params[i]))
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
	tg_ctx *ctx = tg_ctx_of(x);
	if (!ctx) {
		tg_data(x); /* records TG_ESTALE */
		return -1;
	}
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
	int64_t n = tg_dim(x, 0), k = tg_dim(x, 1);
	const void *data = tg_data(x);
	for (int64_t i = 0; i < n; i++) {
		int32_t best = 0;
		if (tg_dtype_of(x) == TG_F64) {
			const double *r = (const double *)data + i * k;
			for (int64_t j = 1; j < k; j++)
				if (r[j] > r[best])
					best = (int32_t)j;
		} else {
			const float *r = (const float *)data + i * k;
			for (int64_t j = 1; j < k; j++)
				if (r[j] > r[best])
					best = (int32_t)j;
		}
		out[i] = best;
	}
	return 0;
}

/* ---- batch norm: y = (x - mean) / sqrt(var + eps) * gamma + beta ------------------- */
/* Training uses the batch's mean and biased variance (the fused op
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

/* running = decay * running + (1 - decay) * batch: state, not part of the graph */
static void update_running(tg_tensor *running, const tg_tensor *batch, double decay)
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
	if (tg_ndim(x) != 2 || tg_dim(x, 1) != d) {
		tg_fail(ctx, TG_ESHAPE, "tg_batchnorm_forward: %s: input %s is not (N,%lld)", who,
			tg_shape_str(x, xs, sizeof xs), (long long)d);
		return false;
	}
	if (!(bn->eps > 0) || !(bn->avg_decay >= 0 && bn->avg_decay <= 1)) {
		tg_fail(ctx, TG_EARG,
			"tg_batchnorm_forward: %s: eps = %g must be positive and avg_decay = %g in "
			"[0, 1]",
			who, bn->eps, bn->avg_decay);
		return false;
	}
	if (bn->training && tg_dim(x, 0) < 2) {
		tg_fail(ctx, TG_ESHAPE,
			"tg_batchnorm_forward: %s: a batch of 1 %s in training mode has variance "
			"0; train with batches of 2 or more, or evaluate (training = false)",
			who, tg_shape_str(x, xs, sizeof xs));
		return false;
	}
	return true;
}

tg_tensor *tg_batchnorm_forward(tg_batchnorm *bn, tg_tensor *x)
{
	tg_ctx *ctx = begin(x);
	if (!ctx)
		return NULL;
	if (!bn || !bn->gamma || !bn->beta || !bn->running_mean || !bn->running_var)
		return tg_fail(ctx, TG_ENULL,
			       "tg_batchnorm_forward: the layer or a tensor of it is NULL");
	if (!bn_args_ok(ctx, bn, x))
		return NULL;
	if (bn->training) {
		tg_tensor *mean, *var; /* (D), var biased */
		tg_tensor *y = tg_batch_norm(x, bn->gamma, bn->beta, bn->eps, &mean, &var);
		if (y) {
			update_running(bn->running_mean, mean, bn->avg_decay);
			update_running(bn->running_var, var, bn->avg_decay);
		}
		return y;
	}
	tg_tensor *std = tg_sqrt(tg_add_scalar(bn->running_var, bn->eps));
	tg_tensor *xn = tg_div(tg_sub(x, bn->running_mean), std);
	return tg_add(tg_mul(xn, bn->gamma), bn->beta);
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
	tg_ctx *ctx = begin(x);
	if (ctx && !mask)
		return tg_fail(ctx, TG_ENULL, "tg_dropout_apply: mask is NULL");
	if (!ctx || !begin(mask))
		return NULL;
	if (!dropout_p_ok(ctx, "tg_dropout_apply", p))
		return NULL;
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *scaled = tg_mul_scalar(mask, 1.0 / (1.0 - p)); /* a constant */
	tg_set_grad_enabled(ctx, was);
	return tg_mul(x, scaled);
}

/* A 0/1 mask of x's shape: element i kept when the i-th uniform draw is >= p. */
static tg_tensor *draw_mask(tg_ctx *ctx, tg_tensor *x, double p)
{
	tg_tensor *m = tg_zeros(ctx, tg_dtype_of(x), tg_ndim(x), tg_shape(x));
	void *data = tg_data_mut(m);
	if (!data)
		return NULL;
	size_t n = tg_numel(m);
	if (tg_dtype_of(m) == TG_F64) {
		double *d = data;
		for (size_t i = 0; i < n; i++)
			d[i] = tg_random_uniform(ctx) >= p ? 1.0 : 0.0;
	} else {
		float *f = data;
		for (size_t i = 0; i < n; i++)
			f[i] = tg_random_uniform(ctx) >= p ? 1.0f : 0.0f;
	}
	return m;
}

tg_tensor *tg_dropout_forward(const tg_dropout *d, tg_tensor *x)
{
	tg_ctx *ctx = begin(x);
	if (!ctx)
		return NULL;
	if (!d)
		return tg_fail(ctx, TG_ENULL, "tg_dropout_forward: the layer is NULL");
	if (!dropout_p_ok(ctx, "tg_dropout_forward", d->p))
		return NULL;
	if (!d->training || d->p == 0)
		return x;
	return tg_dropout_apply(x, draw_mask(ctx, x, d->p), d->p);
}
