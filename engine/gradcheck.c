/*
 * gradcheck.c - numerical checks of the gradients the tape computes.
 *
 * The scalar checked is L = sum(f(in) * w) for a fixed random weighting w.
 * Its gradient is the backward pass of f with upstream gradient w, taken
 * with tg_grad_of, so the check needs no op of its own beyond f and changes
 * no tensor's tg_grad (nor those of the caller's tensors that f reads). The numerical side perturbs each
 * input element in place by +-eps and takes central differences in f64.
 * Each element is judged as PyTorch's gradcheck judges it: it fails when
 * |analytic - numeric| > atol + rtol |numeric|; failures go to the report.
 * The check leaves the inputs as it found them: values, versions, gradients,
 * requires_grad, the grad mode, and the tape (its own nodes are cut off,
 * their outputs left without history).
 * The weightings come from the context's generator, which moves on.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

/* What the check changes on an input, to put back afterwards. */
typedef struct saved_input {
	bool requires_grad;
	uint32_t version;
	tg_tensor *grad;     /* the input's gradient before the check */
	double *grad_values; /* a copy of grad_store's values when grad is it */
} saved_input;

typedef struct check {
	tg_ctx *ctx;
	const char *who;
	tg_fn f;
	void *user;
	tg_gradcheck_opts opts;
	int nin;
	tg_tensor *in[TG_MAX_INPUTS];
	saved_input saved[TG_MAX_INPUTS];
	bool grad_was;
	tg_node *tape;      /* the tape as the check found it */
	uint64_t gen;       /* the step it was found in */
	tg_tensor *w;       /* weighting of f's output; made at the first call */
	tg_tensor *v[TG_MAX_INPUTS]; /* second order: weightings of the gradients */
} check;

/* ---- setting up and putting back ---------------------------------------------- */

static int check_args(check *c, tg_ctx *ctx, tg_fn f, int nin, tg_tensor *const *in,
		      const tg_gradcheck_opts *o)
{
	if (!ctx)
		return -1;
	if (ctx->status != TG_OK)
		return -1;
	if (!f || !in) {
		tg_fail(ctx, TG_ENULL, "%s: %s is NULL", c->who,
			!f ? "the function f" : "the input array");
		return -1;
	}
	if (nin < 1 || nin > TG_MAX_INPUTS) {
		tg_fail(ctx, TG_EARG, "%s: %d inputs; the check takes 1 to %d", c->who, nin,
			TG_MAX_INPUTS);
		return -1;
	}
	if (!(o->eps > 0) || !isfinite(o->eps)) {
		tg_fail(ctx, TG_EARG, "%s: step eps = %g; it must be positive and finite",
			c->who, o->eps);
		return -1;
	}
	if (!(o->atol >= 0) || !(o->rtol >= 0) || !isfinite(o->atol) || !isfinite(o->rtol)) {
		tg_fail(ctx, TG_EARG,
			"%s: tolerances atol = %g, rtol = %g; each must be finite and >= 0",
			c->who, o->atol, o->rtol);
		return -1;
	}
	for (int i = 0; i < nin; i++) {
		char buf[TG_SHAPE_STR];
		const tg_tensor *t = in[i];
		if (!t) {
			tg_fail(ctx, TG_ENULL, "%s: input %d is NULL", c->who, i);
			return -1;
		}
		tg_ctx *tc = tg_tensor_check(c->who, t);
		if (!tc) {
			tg_stale_elsewhere(ctx, c->who, t, "input %d", i);
			return -1;
		}
		if (tc != ctx) {
			tg_fail(ctx, TG_ECTX, "%s: input %d belongs to another context", c->who, i);
			return -1;
		}
		if (t->dtype != TG_F64) {
			tg_fail(ctx, TG_EDTYPE, "%s: input %d is %s %s; the check needs f64",
				c->who, i, tg_dtype_name(t->dtype),
				tg_shape_fmt(t->ndim, t->shape, buf));
			return -1;
		}
		if (t->node) {
			tg_fail(ctx, TG_EARG,
				"%s: input %d %s is the output of %s, not a leaf (detach it)",
				c->who, i, tg_shape_fmt(t->ndim, t->shape, buf), t->node->op->name);
			return -1;
		}
	}
	return 0;
}

/* Remembers what the check will change and gives every input a clean slate:
 * requires_grad on, no gradient. */
static int save_inputs(check *c)
{
	for (int i = 0; i < c->nin; i++) {
		tg_tensor *t = c->in[i];
		saved_input *s = &c->saved[i];
		s->requires_grad = t->requires_grad;
		s->version = t->version;
		s->grad = t->grad;
		s->grad_values = NULL;
		if (t->grad && t->grad == t->grad_store) {
			s->grad_values = tg_arena_alloc(c->ctx, t->numel * sizeof(double));
			if (!s->grad_values)
				return -1;
			memcpy(s->grad_values, t->grad->data, t->numel * sizeof(double));
		}
	}
	for (int i = 0; i < c->nin; i++) {
		c->in[i]->requires_grad = true;
		c->in[i]->grad = NULL;
	}
	return 0;
}

static void restore_inputs(check *c)
{
	bool same_step = c->ctx->gen == c->gen;
	for (int i = 0; i < c->nin; i++) {
		tg_tensor *t = c->in[i];
		const saved_input *s = &c->saved[i];
		if (!tg_tensor_alive(t))
			continue; /* f called tg_reset: a step input is gone */
		t->requires_grad = s->requires_grad;
		t->version = s->version;
		/* after a reset, a step gradient and the saved values (step memory) are gone */
		t->grad = same_step ? s->grad : NULL;
		if (same_step && s->grad_values && t->grad_store) {
			memcpy(t->grad_store->data, s->grad_values, t->numel * sizeof(double));
			t->grad = t->grad_store;
		}
	}
	tg_tape_cut(c->ctx, c->tape, same_step);
	c->ctx->grad_enabled = c->grad_was;
}

/* A step tensor of values drawn from the context's generator: magnitudes in
 * [0.5, 1.5) with random signs, so no weight is near zero. */
static tg_tensor *weighting(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape)
{
	tg_tensor *t = tg_tensor_new(ctx, "tg_gradcheck", dt, ndim, shape);
	if (!t)
		return NULL;
	for (size_t i = 0; i < t->numel; i++) {
		double v = 0.5 + tg_random_uniform(ctx);
		if (tg_random_u64(ctx) >> 63)
			v = -v;
		if (dt == TG_F64)
			((double *)t->data)[i] = v;
		else
			((float *)t->data)[i] = (float)v;
	}
	return t;
}

static double value_at(const tg_tensor *t, size_t i)
{
	return t->dtype == TG_F64 ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

/* sum(a * b) in f64 for two tensors of one size. */
static double dot(const tg_tensor *a, const tg_tensor *b)
{
	double s = 0;
	for (size_t i = 0; i < a->numel; i++)
		s += value_at(a, i) * value_at(b, i);
	return s;
}

/* ---- evaluating f ------------------------------------------------------------- */

/* y = f(in), checked; the first call also makes the weighting w. */
static tg_tensor *forward(check *c)
{
	tg_tensor *y = c->f(c->in, c->user);
	if (c->ctx->gen != c->gen && c->ctx->status == TG_OK)
		tg_fail(c->ctx, TG_ESTALE,
			"%s: f called tg_reset, which ends the step of the check's tensors (the "
			"inputs' gradients are dropped)",
			c->who);
	if (c->ctx->status != TG_OK)
		return NULL;
	if (!y) {
		tg_fail(c->ctx, TG_ENULL, "%s: f returned NULL without recording an error",
			c->who);
		return NULL;
	}
	if (!tg_tensor_check(c->who, y))
		return NULL;
	if (y->ctx != c->ctx) {
		tg_fail(c->ctx, TG_ECTX, "%s: f returned a tensor of another context", c->who);
		return NULL;
	}
	if (!tg_dtype_is_float(y->dtype)) {
		char a[TG_SHAPE_STR];
		tg_fail(c->ctx, TG_EDTYPE, "%s: f returned an index tensor (%s %s)", c->who,
			tg_dtype_name(y->dtype), tg_shape_fmt(y->ndim, y->shape, a));
		return NULL;
	}
	if (!c->w) {
		c->w = weighting(c->ctx, y->dtype, y->ndim, y->shape);
		if (!c->w)
			return NULL;
	} else if (!tg_same_shape(y, c->w)) {
		char a[TG_SHAPE_STR], b[TG_SHAPE_STR];
		tg_fail(c->ctx, TG_ESHAPE, "%s: f returned %s, then %s for perturbed inputs",
			c->who, tg_shape_fmt(c->w->ndim, c->w->shape, a),
			tg_shape_fmt(y->ndim, y->shape, b));
		return NULL;
	}
	return y;
}

/* g[i] = the gradient of L = sum(y * w) with respect to input i (y's
 * upstream gradient is w), NULL for zero: the backward pass by tg_grad_of,
 * which keeps its gradients to itself. A y that depends on no input has
 * zero gradients and nothing to walk. */
static int backward(check *c, tg_tensor *y, unsigned flags, tg_tensor **g)
{
	for (int i = 0; i < c->nin; i++)
		g[i] = NULL;
	if (!y->requires_grad)
		return 0;
	tg_tensor *dy = c->w;
	if (y->dtype != dy->dtype) {
		tg_fail(c->ctx, TG_EDTYPE, "%s: f returned %s for f64 inputs", c->who,
			tg_dtype_name(y->dtype));
		return -1;
	}
	return tg_grad_of(1, &y, &dy, c->nin, c->in, g, flags | TG_ALLOW_UNUSED);
}

/* First order: L at the current input values. Grad mode stays on, as for
 * every call of f: an f that takes a gradient itself (a gradient penalty,
 * tg_grad_of inside) needs its ops recorded. The nodes are cut off the tape
 * again, as in eval_grad_loss. */
static int eval_loss(check *c, double *out)
{
	tg_node *tape = c->ctx->tape;
	uint64_t gen = c->ctx->gen;
	tg_tensor *y = forward(c);
	if (y)
		*out = dot(y, c->w);
	tg_tape_cut(c->ctx, tape, c->ctx->gen == gen);
	return y ? 0 : -1;
}

/* Second order: g = sum_j sum(grad_j(L) * v_j) at the current input values,
 * the gradients from a first-order backward. The nodes it records are cut
 * off the tape again so that later walks stay short. */
static int eval_grad_loss(check *c, double *out)
{
	tg_node *tape = c->ctx->tape;
	uint64_t gen = c->ctx->gen;
	tg_tensor *y = forward(c), *G[TG_MAX_INPUTS];
	int rc = y ? backward(c, y, 0, G) : -1;
	double g = 0;
	for (int j = 0; rc == 0 && j < c->nin; j++)
		if (G[j])
			g += dot(G[j], c->v[j]);
	tg_tape_cut(c->ctx, tape, c->ctx->gen == gen);
	*out = g;
	return rc;
}

/* ---- the two checks ------------------------------------------------------------ */

/* Writes one failing element to the report, or the count past max_report. */
static void report_element(const check *c, const tg_gradcheck_result *res, int i,
			   size_t k, double an, double num)
{
	FILE *f = c->opts.report;
	int most = c->opts.max_report > 0 ? c->opts.max_report : 10;
	if (!f || res->failed > (size_t)most + 1)
		return;
	if (res->failed == (size_t)most + 1) {
		fprintf(f, "%s: more failing elements not shown\n", c->who);
		return;
	}
	const tg_tensor *x = c->in[i];
	int64_t at[TG_MAX_DIMS];
	char buf[TG_SHAPE_STR];
	size_t r = k;
	for (int d = x->ndim - 1; d >= 0; d--) {
		at[d] = (int64_t)(r % (size_t)x->shape[d]);
		r /= (size_t)x->shape[d];
	}
	if (!isfinite(num))
		fprintf(f, "%s: input %d element %zu %s: analytic %.6g, numeric %.6g (f overflowed "
			"or is undefined within eps)\n",
			c->who, i, k, tg_shape_fmt(x->ndim, at, buf), an, num);
	else
		fprintf(f, "%s: input %d element %zu %s: analytic %.6g, numeric %.6g, difference "
			"%.3g > %.3g\n",
			c->who, i, k, tg_shape_fmt(x->ndim, at, buf), an, num, fabs(an - num),
			c->opts.atol + c->opts.rtol * fabs(num));
}

/* Judges one element: errors into the maxima, a failure into the count, the
 * first failure kept and every one reported. */
static void judge(const check *c, tg_gradcheck_result *res, int i, size_t k, double an,
		  double num)
{
	/* the same infinity on both sides is a match, as in PyTorch's allclose */
	double err = an == num ? 0 : fabs(num - an);
	double scale = fmax(1.0, fmax(fabs(num), fabs(an)));
	double rel = isnan(err) || isinf(err) ? INFINITY : err / scale;
	if (isnan(err))
		err = INFINITY;
	if (err > res->max_abs[i])
		res->max_abs[i] = err;
	if (rel > res->max_rel[i])
		res->max_rel[i] = rel;
	res->checked++;
	/* a numeric difference that overflowed makes rtol |num| infinite: it
	 * would pass any analytic value, so it passes none but its own */
	if (err == 0 || (isfinite(num) && err <= c->opts.atol + c->opts.rtol * fabs(num)))
		return;
	if (res->failed++ == 0) {
		const tg_tensor *x = c->in[i];
		res->first.input = i;
		res->first.index = k;
		size_t r = k;
		for (int d = x->ndim - 1; d >= 0; d--) {
			res->first.at[d] = (int64_t)(r % (size_t)x->shape[d]);
			r /= (size_t)x->shape[d];
		}
		res->first.analytic = an;
		res->first.numeric = num;
	}
	report_element(c, res, i, k, an, num);
}

/* Central differences of eval over every input element, compared with the
 * analytic gradients ana[i] (NULL for zero). */
static int compare(check *c, int (*eval)(check *, double *), tg_tensor *const *ana,
		   tg_gradcheck_result *res)
{
	double eps = c->opts.eps;
	for (int i = 0; i < c->nin; i++) {
		tg_tensor *x = c->in[i];
		for (size_t k = 0; k < x->numel; k++) {
			/* NULL once x is stale (f called tg_reset), the error recorded */
			double *d = tg_data_mut(x);
			if (!d)
				return -1;
			double x0 = d[k], lp, lm;
			d[k] = x0 + eps;
			int rc = eval(c, &lp);
			if (!(d = tg_data_mut(x)))
				return -1;
			d[k] = x0 - eps;
			if (rc == 0)
				rc = eval(c, &lm);
			if (!(d = tg_data_mut(x)))
				return -1;
			d[k] = x0;
			if (rc)
				return -1;
			double num = (lp - lm) / (2 * eps);
			judge(c, res, i, k, ana[i] ? value_at(ana[i], k) : 0.0, num);
		}
		if (res->max_abs[i] > res->worst_abs)
			res->worst_abs = res->max_abs[i];
		if (res->max_rel[i] > res->worst_rel)
			res->worst_rel = res->max_rel[i];
	}
	if (res->failed && c->opts.report)
		fprintf(c->opts.report, "%s: %zu of %zu elements fail (atol %g, rtol %g)\n",
			c->who, res->failed, res->checked, c->opts.atol, c->opts.rtol);
	return 0;
}

/* The check records on a tape of its own, started empty and dropped at the
 * end: its backward passes walk only f's nodes and leave the gradients of
 * the caller's intermediates alone. */
static int begin(check *c, const char *who, tg_ctx *ctx, tg_fn f, void *user, int nin,
		 tg_tensor *const *in, const tg_gradcheck_opts *opts, tg_gradcheck_result *res)
{
	static const tg_gradcheck_opts defaults = TG_GRADCHECK_DEFAULTS;
	memset(c, 0, sizeof *c);
	memset(res, 0, sizeof *res); /* no earlier call's figures, even when refused */
	res->first.input = -1;
	c->who = who;
	c->opts = opts ? *opts : defaults;
	if (check_args(c, ctx, f, nin, in, &c->opts))
		return -1;
	c->ctx = ctx;
	c->f = f;
	c->user = user;
	c->nin = nin;
	for (int i = 0; i < nin; i++)
		c->in[i] = in[i];
	c->grad_was = ctx->grad_enabled;
	c->tape = ctx->tape;
	c->gen = ctx->gen;
	if (save_inputs(c))
		return -1;
	ctx->grad_enabled = true;
	ctx->tape = NULL;
	return 0;
}

/* 0 all passed, 1 some element failed, -1 error. */
static int end(check *c, int rc, const tg_gradcheck_result *res)
{
	restore_inputs(c);
	if (rc != 0 || c->ctx->status != TG_OK)
		return -1;
	return res->failed ? 1 : 0;
}

int tg_gradcheck(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
		 const tg_gradcheck_opts *opts, tg_gradcheck_result *res)
{
	check c;
	tg_gradcheck_result mine;
	res = res ? res : &mine;
	if (begin(&c, "tg_gradcheck", ctx, f, user, nin, in, opts, res))
		return -1;
	tg_tensor *ana[TG_MAX_INPUTS];
	tg_tensor *y = forward(&c);
	int rc = y ? backward(&c, y, 0, ana) : -1;
	if (rc == 0)
		rc = compare(&c, eval_loss, ana, res);
	return end(&c, rc, res);
}

/* The analytic gradient of g = sum_j sum(G_j * v_j), G_j = grad_j(L) with
 * history: one walk from every G_j at once with upstream v_j. */
static int second_order(check *c, tg_tensor **ana)
{
	tg_tensor *y = forward(c), *G[TG_MAX_INPUTS], *outs[TG_MAX_INPUTS], *ws[TG_MAX_INPUTS];
	for (int i = 0; i < c->nin; i++)
		ana[i] = NULL;
	if (!y || backward(c, y, TG_CREATE_GRAPH, G))
		return -1;
	int k = 0;
	for (int j = 0; j < c->nin; j++) {
		if (!G[j] || !G[j]->requires_grad)
			continue; /* a constant gradient: g is linear in it */
		outs[k] = G[j];
		ws[k++] = c->v[j];
	}
	return k ? tg_grad_of(k, outs, ws, c->nin, c->in, ana, TG_ALLOW_UNUSED) : 0;
}

int tg_gradcheck2(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
		  const tg_gradcheck_opts *opts, tg_gradcheck_result *res)
{
	check c;
	tg_gradcheck_result mine;
	res = res ? res : &mine;
	if (begin(&c, "tg_gradcheck2", ctx, f, user, nin, in, opts, res))
		return -1;
	int rc = 0;
	for (int j = 0; j < nin && rc == 0; j++) {
		c.v[j] = weighting(ctx, TG_F64, in[j]->ndim, in[j]->shape);
		rc = c.v[j] ? 0 : -1;
	}
	tg_tensor *ana[TG_MAX_INPUTS];
	if (rc == 0)
		rc = second_order(&c, ana);
	if (rc == 0)
		rc = compare(&c, eval_grad_loss, ana, res);
	return end(&c, rc, res);
}
