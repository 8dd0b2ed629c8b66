/*
 * autograd.c - derivatives of functions: VJP, JVP, HVP, Jacobian, Hessian.
 *
 * Each call evaluates f at step copies of its inputs that require a
 * gradient, then asks tg_grad_of for what it needs: one reverse pass for a
 * VJP, two for a JVP or an HVP (the second differentiates the first, which
 * TG_CREATE_GRAPH recorded), one per row or column for a Jacobian, one per
 * input element for a Hessian. No tensor's .grad is used. The nodes recorded
 * are cut off the tape at the end, their outputs left without history (a
 * tensor f kept must not look as if a walk could reach through it); results
 * are copies without history. The step memory of each row's or column's
 * pass is given back to the next (see passes, below).
 *
 * Shapes: f's output y has m elements; input i has n_i.
 */
#include "internal.h"

#include <assert.h>
#include <string.h>

typedef struct call {
	tg_ctx *ctx;
	const char *who;
	tg_fn f;
	void *user;
	int nin;
	tg_tensor **x;  /* nin step copies of the inputs, requiring a gradient */
	tg_tensor *y;   /* f(x) */
	bool started;   /* grad mode and tape changed: end puts them back */
	bool grad_was;
	tg_node *tape;  /* the tape as the call found it */
	uint64_t gen;   /* the step it was found in */
	uint64_t custom_nodes; /* ctx->custom_nodes before f */
} call;

/* ---- arguments, the evaluation of f, and the end ------------------------------ */

/* t is a tensor of ctx with values; what and i name it in errors. */
static int check_tensor(const call *c, const tg_tensor *t, const char *what, int i)
{
	if (!t) {
		tg_fail(c->ctx, TG_ENULL, "%s: %s %d is NULL", c->who, what, i);
		return -1;
	}
	tg_ctx *tc = tg_tensor_check(c->who, t);
	if (!tc) {
		tg_stale_elsewhere(c->ctx, c->who, t, "%s %d", what, i);
		return -1;
	}
	if (tc != c->ctx) {
		tg_fail(c->ctx, TG_ECTX, "%s: %s %d belongs to another context", c->who, what, i);
		return -1;
	}
	if (!tg_dtype_is_float(t->dtype)) {
		char a[TG_SHAPE_STR];
		tg_fail(c->ctx, TG_EDTYPE, "%s: %s %d is an index tensor (%s %s)", c->who, what, i,
			tg_dtype_name(t->dtype), tg_shape_fmt(t->ndim, t->shape, a));
		return -1;
	}
	return 0;
}

/* others[i] (tangents or v) must match input i in shape and dtype. */
static int check_like_inputs(const call *c, tg_tensor *const *in, tg_tensor *const *others,
			     const char *what)
{
	if (!others) {
		tg_fail(c->ctx, TG_ENULL, "%s: the %s array is NULL", c->who, what);
		return -1;
	}
	for (int i = 0; i < c->nin; i++) {
		if (check_tensor(c, others[i], what, i))
			return -1;
		if (!tg_same_shape(others[i], in[i]) || others[i]->dtype != in[i]->dtype) {
			char a[TG_SHAPE_STR], b[TG_SHAPE_STR];
			tg_fail(c->ctx, tg_same_shape(others[i], in[i]) ? TG_EDTYPE : TG_ESHAPE,
				"%s: %s %d is %s %s, input %d is %s %s", c->who,
				what, i, tg_dtype_name(others[i]->dtype),
				tg_shape_fmt(others[i]->ndim, others[i]->shape, a), i,
				tg_dtype_name(in[i]->dtype), tg_shape_fmt(in[i]->ndim, in[i]->shape, b));
			return -1;
		}
	}
	return 0;
}

/* Checks the common arguments, copies the inputs and evaluates f with grad
 * mode on. The results are left as they are until written (end sets them
 * to NULL on failure): the result array may be one of the arguments, as in
 * v <- H v. */
static int begin(call *c, const char *who, tg_ctx *ctx, tg_fn f, void *user, int nin,
		 tg_tensor *const *in, tg_tensor **res)
{
	memset(c, 0, sizeof *c);
	c->who = who;
	c->ctx = ctx;
	if (!ctx || ctx->status != TG_OK)
		return -1;
	if (!res) {
		tg_fail(ctx, TG_ENULL, "%s: the result array is NULL", who);
		return -1;
	}
	if (!f || !in) {
		tg_fail(ctx, TG_ENULL, "%s: %s is NULL", who, !f ? "the function f" : "the input array");
		return -1;
	}
	if (nin < 1) {
		tg_fail(ctx, TG_EARG, "%s: %d inputs; f takes 1 or more", who, nin);
		return -1;
	}
	for (int i = 0; i < nin; i++)
		if (check_tensor(c, in[i], "input", i))
			return -1;
	c->f = f;
	c->user = user;
	c->nin = nin;
	c->x = tg_arena_alloc(ctx, (size_t)nin * sizeof *c->x);
	if (!c->x)
		return -1;
	c->started = true;
	c->grad_was = ctx->grad_enabled;
	c->tape = ctx->tape;
	c->gen = ctx->gen;
	ctx->grad_enabled = true;
	for (int i = 0; i < nin; i++)
		c->x[i] = tg_set_requires_grad(tg_detach(in[i]), true);
	if (ctx->status != TG_OK)
		return -1;
	c->custom_nodes = ctx->custom_nodes;
	c->y = f(c->x, user);
	if (ctx->gen != c->gen && ctx->status == TG_OK)
		tg_fail(ctx, TG_ESTALE, "%s: f called tg_reset, which ends the step of the call's tensors",
			who);
	if (ctx->status != TG_OK)
		return -1;
	if (!c->y) {
		tg_fail(ctx, TG_ENULL, "%s: f returned NULL without recording an error", who);
		return -1;
	}
	return check_tensor(c, c->y, "f's output", 0);
}

/* Puts back the grad mode and the tape; on error, drops the nres results. */
static int end(call *c, tg_tensor **res, int nres)
{
	if (!c->ctx) {
		for (int i = 0; res && i < nres; i++)
			res[i] = NULL;
		return -1;
	}
	if (c->started) {
		c->ctx->grad_enabled = c->grad_was;
		/* f may have called tg_reset: the tape found is gone with its step */
		tg_tape_cut(c->ctx, c->tape, c->ctx->gen == c->gen);
	}
	if (c->ctx->status == TG_OK)
		return 0;
	for (int i = 0; res && i < nres; i++)
		res[i] = NULL;
	return -1;
}

/* end, with f's value given (out) NULL on failure too */
static int end_with_out(call *c, tg_tensor **res, int nres, tg_tensor **out)
{
	int rc = end(c, res, nres);
	if (rc && out)
		*out = NULL;
	return rc;
}

/* f's value for the caller, when wanted. */
static void give_out(call *c, tg_tensor **out)
{
	if (out)
		*out = tg_detach(c->y);
}

/* f must return one element. */
static int check_scalar_output(const call *c)
{
	if (c->y->numel == 1)
		return 0;
	char a[TG_SHAPE_STR];
	tg_fail(c->ctx, TG_ESHAPE, "%s: f returned %s; it must return one element", c->who,
		tg_shape_fmt(c->y->ndim, c->y->shape, a));
	return -1;
}

/* ---- building blocks ------------------------------------------------------------ */

/* The gradients with respect to wrt[0..nwrt) of sum_i <outs[i], ws[i]>, the
 * inner product the second passes differentiate: tg_grad_of with ws as the
 * upstream gradients, over the outs that have history (the others are
 * constants and add nothing; with none, every gradient is zero). */
static int grad_of_inner(tg_ctx *ctx, int n, tg_tensor *const *outs, tg_tensor *const *ws,
			 int nwrt, tg_tensor *const *wrt, tg_tensor **res)
{
	tg_tensor **o = tg_arena_alloc(ctx, 2 * (size_t)n * sizeof *o);
	if (!o)
		return -1;
	tg_tensor **w = o + n;
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (outs[i] && outs[i]->requires_grad) {
			o[k] = outs[i];
			w[k++] = ws[i];
		}
	}
	if (k > 0)
		return tg_grad_of(k, o, w, nwrt, wrt, res, TG_ALLOW_UNUSED);
	for (int j = 0; j < nwrt; j++)
		res[j] = tg_zeros(ctx, wrt[j]->dtype, wrt[j]->ndim, wrt[j]->shape);
	return ctx->status == TG_OK ? 0 : -1;
}

/* Step copies of ts[0..n) without history. */
static tg_tensor **copies(tg_ctx *ctx, int n, tg_tensor *const *ts)
{
	tg_tensor **c = tg_arena_alloc(ctx, (size_t)n * sizeof *c);
	for (int i = 0; c && i < n; i++)
		c[i] = tg_detach(ts[i]);
	return c && ctx->status == TG_OK ? c : NULL;
}

/* In place, each of n tensors replaced by its copy without history. */
static void detach_all(int n, tg_tensor **ts)
{
	for (int i = 0; i < n; i++)
		ts[i] = tg_detach(ts[i]);
}

/* A zero tensor like t, with a one at flat index k. */
static tg_tensor *one_hot_like(const tg_tensor *t, size_t k)
{
	tg_tensor *e = tg_zeros(t->ctx, t->dtype, t->ndim, t->shape);
	if (!e)
		return NULL;
	if (e->dtype == TG_F64)
		((double *)e->data)[k] = 1;
	else
		((float *)e->data)[k] = 1;
	return e;
}

static double value_at(const tg_tensor *t, size_t i)
{
	return t->dtype == TG_F64 ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

static void set_at(tg_tensor *t, size_t i, double v)
{
	if (t->dtype == TG_F64)
		((double *)t->data)[i] = v;
	else
		((float *)t->data)[i] = (float)v;
}

/* A zero step tensor of shape a.shape ++ b.shape, dtype of b. */
static tg_tensor *outer_shaped(const call *c, const tg_tensor *a, const tg_tensor *b,
			       const char *what)
{
	char s[TG_SHAPE_STR], t[TG_SHAPE_STR];
	if (a->ndim + b->ndim > TG_MAX_DIMS)
		return tg_fail(c->ctx, TG_ESHAPE,
			       "%s: the %s of %s by %s would have %d axes; tensors have at most %d",
			       c->who, what, tg_shape_fmt(a->ndim, a->shape, s),
			       tg_shape_fmt(b->ndim, b->shape, t), a->ndim + b->ndim, TG_MAX_DIMS);
	int64_t shape[TG_MAX_DIMS];
	memcpy(shape, a->shape, (size_t)a->ndim * sizeof *shape);
	memcpy(shape + a->ndim, b->shape, (size_t)b->ndim * sizeof *shape);
	return tg_zeros(c->ctx, b->dtype, a->ndim + b->ndim, shape);
}

/* ---- products ------------------------------------------------------------------- */

int tg_vjp(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in, tg_tensor *v,
	   tg_tensor **out, tg_tensor **vjp)
{
	call c;
	if (begin(&c, "tg_vjp", ctx, f, user, nin, in, vjp) == 0) {
		tg_tensor *dy = NULL;
		if (v && check_tensor(&c, v, "v", 0) == 0) {
			if (!tg_same_shape(v, c.y) || v->dtype != c.y->dtype) {
				char a[TG_SHAPE_STR], b[TG_SHAPE_STR];
				tg_fail(ctx, tg_same_shape(v, c.y) ? TG_EDTYPE : TG_ESHAPE,
					"tg_vjp: v is %s %s, f's output %s %s",
					tg_dtype_name(v->dtype), tg_shape_fmt(v->ndim, v->shape, a),
					tg_dtype_name(c.y->dtype),
					tg_shape_fmt(c.y->ndim, c.y->shape, b));
			}
			dy = tg_detach(v);
		} else if (!v) {
			check_scalar_output(&c);
		}
		if (ctx->status == TG_OK)
			tg_grad_of(1, &c.y, &dy, nin, c.x, vjp, TG_ALLOW_UNUSED);
		give_out(&c, out);
	}
	return end_with_out(&c, vjp, nin, out);
}

/* The double-VJP trick: g(u) = J^T u for a dummy u that requires a gradient
 * (its value does not matter, g is linear in it; ones, so that a custom
 * rule computed outside the ops hands a non-zero gradient without history,
 * which the walk refuses, instead of zeros); <g(u), t> = u^T J t, whose
 * gradient with respect to u is J t. */
int tg_jvp(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
	   tg_tensor *const *tangents, tg_tensor **out, tg_tensor **jvp)
{
	call c;
	if (begin(&c, "tg_jvp", ctx, f, user, nin, in, jvp) == 0 &&
	    check_like_inputs(&c, in, tangents, "tangent") == 0) {
		tg_tensor **t = copies(ctx, nin, tangents);
		tg_tensor **g = tg_arena_alloc(ctx, (size_t)nin * sizeof *g);
		tg_tensor *u = tg_set_requires_grad(
			tg_ones(ctx, c.y->dtype, c.y->ndim, c.y->shape), true);
		if (t && g && u &&
		    tg_grad_of(1, &c.y, &u, nin, c.x, g, TG_CREATE_GRAPH | TG_ALLOW_UNUSED) == 0) {
			if (grad_of_inner(ctx, nin, g, t, 1, &u, jvp) == 0)
				detach_all(1, jvp);
		}
		give_out(&c, out);
	}
	return end_with_out(&c, jvp, 1, out);
}

int tg_hvp(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
	   tg_tensor *const *v, tg_tensor **out, tg_tensor **hvp)
{
	call c;
	if (begin(&c, "tg_hvp", ctx, f, user, nin, in, hvp) == 0 &&
	    check_scalar_output(&c) == 0 && check_like_inputs(&c, in, v, "v") == 0) {
		tg_tensor **vs = copies(ctx, nin, v);
		tg_tensor **g = tg_arena_alloc(ctx, (size_t)nin * sizeof *g);
		if (vs && g &&
		    tg_grad_of(1, &c.y, NULL, nin, c.x, g, TG_CREATE_GRAPH | TG_ALLOW_UNUSED) == 0) {
			if (grad_of_inner(ctx, nin, g, vs, nin, c.x, hvp) == 0)
				detach_all(nin, hvp);
		}
		give_out(&c, out);
	}
	return end_with_out(&c, hvp, nin, out);
}

/* ---- Jacobian and Hessian ---------------------------------------------------------- */

/* The passes of a Jacobian or a Hessian, one per row or column, leave
 * nothing behind once their values are copied into the result: each is a
 * tg_grad_of without TG_CREATE_GRAPH over nodes recorded before it (f's,
 * and the first gradient's that TG_CREATE_GRAPH recorded), so its rules
 * record nothing; the gradients it parked on nodes are cleared at its end;
 * the built-in rules keep nothing they make, and the kernels' caches of
 * step memory go by the arena's epoch (conv_dnnl.c's blocked copies); no
 * hook runs (grad_ready is tg_backward's). Each pass's step memory and
 * tensor headers are then given back for the next one (tg_arena_rewind):
 * the call takes the memory of f, of the result and of one pass, not of
 * every pass. An 800 x 800 Jacobian of a 20-op chain took 190 MB of step
 * memory for its 5 MB result, now 5.5 MB, and 0.60 s of CPU, now 0.022 s
 * (the pages of fresh blocks cost more than the passes). Not when f
 * recorded a custom op (tg_record): its rule is the caller's code, which
 * may keep what it makes in a pass for later. */
typedef struct passes {
	tg_arena_mark mark;
	tg_node *tape;
	bool rewind;
} passes;

/* Before the first pass, once everything the passes share is made. */
static void passes_begin(const call *c, passes *p)
{
	tg_arena_mark_take(c->ctx, &p->mark);
	p->tape = c->ctx->tape;
	p->rewind = c->ctx->custom_nodes == c->custom_nodes;
}

/* After a pass whose values are copied out. */
static void pass_end(const call *c, const passes *p)
{
	/* grad mode was off: built-in rules record nothing (a custom op's rule
	 * may turn it on, and f's custom ops turn the rewinding off) */
	assert(!p->rewind || c->ctx->tape == p->tape);
	if (p->rewind)
		tg_arena_rewind(c->ctx, &p->mark);
}

/* Row r of every jac[i]: the VJP with the r-th unit vector. m passes. */
static int jacobian_rows(call *c, tg_tensor **jac, tg_tensor **g)
{
	size_t m = c->y->numel;
	passes p;
	passes_begin(c, &p);
	for (size_t r = 0; r < m; r++) {
		tg_tensor *e = one_hot_like(c->y, r);
		if (!e || tg_grad_of(1, &c->y, &e, c->nin, c->x, g, TG_ALLOW_UNUSED))
			return -1;
		for (int i = 0; i < c->nin; i++) {
			size_t n = c->x[i]->numel;
			for (size_t k = 0; k < n; k++)
				set_at(jac[i], r * n + k, value_at(g[i], k));
		}
		pass_end(c, &p);
	}
	return 0;
}

/* Column k of jac[i] for every input element: the JVP with the k-th unit
 * vector, by the double-VJP trick over one recorded G = J^T u. n passes. */
static int jacobian_columns(call *c, tg_tensor **jac, tg_tensor **G)
{
	tg_ctx *ctx = c->ctx;
	tg_tensor *u = tg_set_requires_grad(tg_ones(ctx, c->y->dtype, c->y->ndim, c->y->shape),
					    true);
	if (!u || tg_grad_of(1, &c->y, &u, c->nin, c->x, G, TG_CREATE_GRAPH | TG_ALLOW_UNUSED))
		return -1;
	size_t m = c->y->numel;
	passes p;
	passes_begin(c, &p);
	for (int i = 0; i < c->nin; i++) {
		size_t n = c->x[i]->numel;
		for (size_t k = 0; k < n; k++) {
			tg_tensor *col, *e = one_hot_like(G[i], k);
			if (!e || grad_of_inner(ctx, 1, &G[i], &e, 1, &u, &col))
				return -1;
			for (size_t r = 0; r < m; r++)
				set_at(jac[i], r * n + k, value_at(col, r));
			pass_end(c, &p);
		}
	}
	return 0;
}

int tg_jacobian(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
		tg_tensor **jac)
{
	call c;
	if (begin(&c, "tg_jacobian", ctx, f, user, nin, in, jac) == 0) {
		size_t n = 0;
		for (int i = 0; i < nin && ctx->status == TG_OK; i++) {
			jac[i] = outer_shaped(&c, c.y, c.x[i], "Jacobian");
			n += c.x[i]->numel;
		}
		tg_tensor **scratch = tg_arena_alloc(ctx, (size_t)nin * sizeof *scratch);
		if (ctx->status == TG_OK && scratch) {
			if (c.y->numel <= n)
				jacobian_rows(&c, jac, scratch);
			else
				jacobian_columns(&c, jac, scratch);
		}
	}
	return end(&c, jac, nin);
}

/* Row k of the blocks hess[i * nin + j] for every j: the gradient of the
 * k-th element of grad_i f. */
static int hessian_rows(call *c, const passes *p, int i, tg_tensor *const *g,
			tg_tensor **hess, tg_tensor **row)
{
	int nin = c->nin;
	size_t n = c->x[i]->numel;
	for (size_t k = 0; k < n; k++) {
		tg_tensor *e = one_hot_like(g[i], k);
		if (!e || grad_of_inner(c->ctx, 1, &g[i], &e, nin, c->x, row))
			return -1;
		for (int j = 0; j < nin; j++) {
			size_t nj = c->x[j]->numel;
			for (size_t l = 0; l < nj; l++)
				set_at(hess[i * nin + j], k * nj + l, value_at(row[j], l));
		}
		pass_end(c, p);
	}
	return 0;
}

int tg_hessian(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
	       tg_tensor **hess)
{
	call c;
	int nres = nin > 0 && nin <= 4096 ? nin * nin : 0;
	if (nin > 4096) {
		/* the results NULL, as after any failure: hess holds nin * nin */
		if (hess)
			for (size_t k = 0; k < (size_t)nin * (size_t)nin; k++)
				hess[k] = NULL;
		if (ctx && ctx->status == TG_OK)
			tg_fail(ctx, TG_EARG, "tg_hessian: %d inputs; at most 4096", nin);
		return -1;
	}
	if (begin(&c, "tg_hessian", ctx, f, user, nin, in, hess) == 0 &&
	    check_scalar_output(&c) == 0) {
		for (int i = 0; i < nin && ctx->status == TG_OK; i++)
			for (int j = 0; j < nin && ctx->status == TG_OK; j++)
				hess[i * nin + j] = outer_shaped(&c, c.x[i], c.x[j], "Hessian block");
		tg_tensor **g = tg_arena_alloc(ctx, (size_t)nin * sizeof *g);
		tg_tensor **row = tg_arena_alloc(ctx, (size_t)nin * sizeof *row);
		passes p;
		if (ctx->status == TG_OK && g && row &&
		    tg_grad_of(1, &c.y, NULL, nin, c.x, g, TG_CREATE_GRAPH | TG_ALLOW_UNUSED) == 0) {
			passes_begin(&c, &p);
			for (int i = 0; i < nin && hessian_rows(&c, &p, i, g, hess, row) == 0; i++)
				;
		}
	}
	return end(&c, hess, nres);
}
