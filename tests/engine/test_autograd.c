/*
 * test_autograd.c - gradients of chosen inputs (tg_grad_of) and derivatives
 * of functions (tg_vjp, tg_jvp, tg_hvp, tg_jacobian, tg_hessian).
 *
 * Values are checked against hand-derived formulas and against central
 * differences in f64 (step H; truncation about H^2, rounding about
 * 1e-16 / H, both far below the 1e-7 asked).
 */

#include "test_util.h"
#include "internal.h"

enum { SEED = 77 };

static const double H = 1e-5;

static tg_tensor *f64(tg_ctx *ctx, int ndim, const int64_t *shape, const double *v)
{
	return tg_from_f64(ctx, TG_F64, ndim, shape, v);
}

static tg_tensor *needs_grad(tg_tensor *t) { return tg_set_requires_grad(t, true); }

/* ---- tg_grad_of ----------------------------------------------------------------- */

static void grad_of_leaves_every_grad_untouched(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p = tg_param(f64(ctx, SHAPE(3), (double[]){ 0.5, -1, 2 }));
	tg_tensor *q = tg_param(f64(ctx, SHAPE(3), (double[]){ 1, 1, 1 }));
	tg_tensor *s = f64(ctx, SHAPE(3), (double[]){ 3, -2, 0.25 });
	/* p has a gradient from an earlier backward: d sum(p q) = q */
	assert_int_equal(tg_backward(tg_sum(tg_mul(p, q))), 0);
	tg_tensor *gp = tg_grad(p), *gq = tg_grad(q);
	/* h is an intermediate with a gradient of its own: d sum(h) = 1 */
	tg_tensor *h = tg_mul(p, p);
	tg_tensor *y = tg_sum(tg_mul(h, s));
	assert_int_equal(tg_backward(tg_sum(h)), 0);
	tg_tensor *gh = tg_grad(h);
	assert_non_null(gh);
	double gp0[3];
	tg_copy_to_f64(gp, gp0, 3);

	tg_tensor *in[2] = { p, h };
	tg_tensor *g[2];
	assert_int_equal(tg_grad_of(1, &y, NULL, 2, in, g, 0), 0);
	assert_ctx_ok(ctx);
	/* dy/dp = 2 p s through h, dy/dh = s */
	const double pv[3] = { 0.5, -1, 2 }, sv[3] = { 3, -2, 0.25 };
	for (size_t i = 0; i < 3; i++) {
		assert_near(tg_get(g[0], i), 2 * pv[i] * sv[i], 1e-15);
		assert_near(tg_get(g[1], i), sv[i], 0);
	}
	assert_null(tg_producer(g[0])); /* no TG_CREATE_GRAPH: no history */
	/* nothing moved: p's and q's gradients (pointer and values), h's */
	assert_ptr_equal(tg_grad(p), gp);
	assert_ptr_equal(tg_grad(q), gq);
	assert_ptr_equal(tg_grad(h), gh);
	for (size_t i = 0; i < 3; i++) {
		assert_near(tg_get(tg_grad(p), i), gp0[i], 0);
		assert_near(tg_get(tg_grad(h), i), 1, 0);
	}
	/* a param that was never given a gradient keeps none */
	tg_tensor *r = tg_param(f64(ctx, SHAPE(3), (double[]){ 2, 2, 2 }));
	tg_tensor *z = tg_sum(tg_mul(r, p));
	assert_int_equal(tg_grad_of(1, &z, NULL, 1, &p, g, 0), 0);
	assert_null(tg_grad(r));
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(g[0], i), 2, 0);
	/* and tg_backward goes on accumulating into p as before: q + r */
	assert_int_equal(tg_backward(z), 0);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(tg_grad(p), i), gp0[i] + 2, 0);
	tg_ctx_free(ctx);
}

/* d/dx x^3 = 3 x^2, then 6 x, then 6, each from the one before. */
static void grad_of_with_create_graph_differentiates_again(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = needs_grad(tg_scalar(ctx, TG_F64, 2));
	tg_tensor *y = tg_pow(x, 3);
	tg_tensor *g1, *g2, *g3;
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &x, &g1, TG_CREATE_GRAPH), 0);
	assert_near(tg_item(g1), 12, 1e-12);
	assert_non_null(tg_producer(g1));
	assert_int_equal(tg_grad_of(1, &g1, NULL, 1, &x, &g2, TG_CREATE_GRAPH), 0);
	assert_near(tg_item(g2), 12, 1e-12);
	assert_int_equal(tg_grad_of(1, &g2, NULL, 1, &x, &g3, 0), 0);
	assert_near(tg_item(g3), 6, 1e-12);
	assert_null(tg_grad(x));
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* The walk ends at the first node of the step that reads an input asked
 * about. A parameter read late on the tape in one step and first thing in
 * the next must have that early reader found; so must a leaf read before
 * the intermediate asked about beside it, over a long unrelated tape. */
static void grad_of_finds_the_first_reader_of_each_input_in_its_step(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p = tg_param(f64(ctx, SHAPE(2), (double[]){ 0.5, -3 }));
	tg_tensor *g[2];
	tg_tensor *u = needs_grad(f64(ctx, SHAPE(2), (double[]){ 1, 1 }));
	for (int i = 0; i < 8; i++)
		u = tg_mul_scalar(u, 2);
	tg_tensor *y = tg_sum(tg_mul(p, p));
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &p, g, 0), 0);
	assert_near(tg_get(g[0], 1), -6, 0);
	tg_reset(ctx);

	/* p's first reader is now node 0, before anything of the last step's */
	tg_tensor *a = tg_mul_scalar(p, 3);
	u = needs_grad(f64(ctx, SHAPE(2), (double[]){ 1, 1 }));
	for (int i = 0; i < 16; i++)
		u = tg_mul_scalar(u, 2);
	tg_tensor *z = tg_sum(tg_add(a, tg_mul(p, p)));
	assert_int_equal(tg_grad_of(1, &z, NULL, 1, &p, g, 0), 0);
	assert_near(tg_get(g[0], 0), 3 + 2 * 0.5, 0);
	assert_near(tg_get(g[0], 1), 3 - 2 * 3, 0);

	/* x read first, then a long tape, then h made and read with x again */
	tg_tensor *x = needs_grad(f64(ctx, SHAPE(2), (double[]){ 2, -1 }));
	tg_tensor *b = tg_mul_scalar(x, 5);
	for (int i = 0; i < 64; i++)
		u = tg_add_scalar(u, 1);
	tg_tensor *h = tg_mul(x, x);
	tg_tensor *w = tg_sum(tg_add(tg_mul(h, b), x));
	tg_tensor *in[2] = { h, x };
	assert_int_equal(tg_grad_of(1, &w, NULL, 2, in, g, TG_CREATE_GRAPH), 0);
	assert_ctx_ok(ctx);
	/* dw/dh = b = 5 x; dw/dx = 5 h + 2 x b + 1 = 15 x^2 + 1 */
	assert_near(tg_get(g[0], 0), 10, 0);
	assert_near(tg_get(g[1], 0), 61, 0);
	assert_near(tg_get(g[1], 1), 16, 0);
	/* and again from that gradient, whose nodes come after all of these */
	tg_tensor *g2;
	tg_tensor *s = tg_sum(g[1]);
	assert_int_equal(tg_grad_of(1, &s, NULL, 1, &x, &g2, 0), 0);
	assert_near(tg_get(g2, 0), 60, 0);
	assert_near(tg_get(g2, 1), -30, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void grad_of_an_unused_input_is_an_error_unless_allowed(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = needs_grad(f64(ctx, SHAPE(2), (double[]){ 1, 3 }));
	tg_tensor *z = tg_param(f64(ctx, SHAPE(2, 2), (double[]){ 1, 2, 3, 4 }));
	tg_tensor *y = tg_sum(tg_mul(x, x));
	tg_tensor *in[2] = { x, z }, *g[2];
	assert_int_equal(tg_grad_of(1, &y, NULL, 2, in, g, 0), -1);
	assert_error(ctx, TG_EARG, "input 1 (2,2) is not used by the outputs");
	assert_null(g[0]);
	assert_null(g[1]);
	tg_clear_error(ctx);

	assert_int_equal(tg_grad_of(1, &y, NULL, 2, in, g, TG_ALLOW_UNUSED), 0);
	assert_near(tg_get(g[0], 0), 2, 0);
	assert_near(tg_get(g[0], 1), 6, 0);
	assert_int_equal(tg_ndim(g[1]), 2);
	for (size_t i = 0; i < 4; i++)
		assert_near(tg_get(g[1], i), 0, 0);
	assert_null(tg_grad(z));
	tg_ctx_free(ctx);
}

/* A custom rule that hands its input nothing: the input is on the
 * outputs' path, and the message names the op whose rule skipped it. */
static void silent_backward(tg_node *n, tg_tensor *dout)
{
	(void)n;
	(void)dout;
}
static const tg_op silent_op = { .name = "silent", .backward = silent_backward };

static void an_input_a_rule_skipped_is_named_with_the_rule(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = needs_grad(f64(ctx, SHAPE(2), (double[]){ 1, 3 })), *g;
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *sq = tg_mul(x, x);
	tg_set_grad_enabled(ctx, was);
	tg_tensor *y = tg_sum(tg_record(&silent_op, sq, 1, &x, NULL, 0));
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &x, &g, 0), -1);
	assert_error(ctx, TG_EARG, "tg_grad_of: input 0 (2,) is an input of silent on the "
				   "outputs' path, but its backward rule handed it no gradient");
	tg_ctx_free(ctx);
}

/* A rule that asks tg_grad_of about ops it ran itself, in a plain walk:
 * grad mode is off there, and the message says the walk turned it off. */
static int asked_rc;
static char asked_error[256];
static void asking_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0), *g;
	tg_tensor *y = tg_sum(tg_mul(x, x));
	asked_rc = tg_grad_of(1, &y, NULL, 1, &x, &g, 0);
	snprintf(asked_error, sizeof asked_error, "%s", tg_error(tg_ctx_of(x)));
	tg_clear_error(tg_ctx_of(x));
	tg_node_grad(n, 0, dout);
}
static const tg_op asking_op = { .name = "asking", .backward = asking_backward };

static void grad_of_inside_a_plain_walk_says_the_walk_turned_grad_mode_off(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = needs_grad(f64(ctx, SHAPE(2), (double[]){ 1, 3 }));
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *copy = tg_mul_scalar(x, 1);
	tg_set_grad_enabled(ctx, was);
	assert_int_equal(tg_backward(tg_sum(tg_record(&asking_op, copy, 1, &x, NULL, 0))), 0);
	assert_int_equal(asked_rc, -1);
	if (!strstr(asked_error, "called from a backward rule of a walk without TG_CREATE_GRAPH"))
		fail_msg("error \"%s\"", asked_error);
	assert_near(tg_get(tg_grad(x), 1), 1, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* A custom op that counts its backward calls: x * 3. */
static int tripled_backwards;
static void triple_backward(tg_node *n, tg_tensor *dout)
{
	tripled_backwards++;
	tg_node_grad(n, 0, tg_mul_scalar(dout, 3));
}
static const tg_op triple_op = { .name = "triple", .backward = triple_backward };
static tg_tensor *triple(tg_tensor *x)
{
	tg_ctx *ctx = tg_ctx_of(x);
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *y = tg_mul_scalar(x, 3);
	tg_set_grad_enabled(ctx, was);
	return tg_record(&triple_op, y, 1, &x, NULL, 0);
}

static tg_tensor *f_times_user(tg_tensor *const *in, void *user)
{
	return tg_sum(tg_mul(in[0], user));
}

/* Like torch.autograd.grad, the walk goes only where a gradient can reach
 * an input asked about: a branch of the graph that leads to none (here h's
 * producers, p's side) is not differentiated, so its rules are not run and
 * an in-place change there is no error. */
static void grad_of_walks_only_the_paths_to_its_inputs(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p = tg_param(f64(ctx, SHAPE(3), (double[]){ 0.5, -1, 2 }));
	tg_tensor *x = needs_grad(f64(ctx, SHAPE(3), (double[]){ 1, 2, 3 }));
	tg_tensor *e = tg_exp(p); /* exp's rule reads its output */
	tg_tensor *h = triple(e);
	tg_tensor *y = tg_sum(tg_mul(x, h));
	tg_tensor *g;
	tripled_backwards = 0;
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &x, &g, 0), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(tripled_backwards, 0);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(g, i), tg_get(h, i), 0);
	/* an intermediate asked about: the walk stops at it unless it leads on */
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &h, &g, 0), 0);
	assert_int_equal(tripled_backwards, 0);
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &e, &g, 0), 0);
	assert_int_equal(tripled_backwards, 1);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(g, i), 3 * tg_get(x, i), 0);

	/* e changed in place: p's gradient cannot be had, x's still can */
	double *d = tg_data_mut(e);
	d[0] += 1;
	tg_tensor *z = tg_sum(tg_mul(x, e));
	assert_int_equal(tg_grad_of(1, &z, NULL, 1, &x, &g, 0), 0);
	assert_ctx_ok(ctx);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(g, i), tg_get(e, i), 0);
	/* and so can a function's that reads e */
	tg_tensor *out;
	assert_int_equal(tg_vjp(ctx, f_times_user, e, 1, &x, NULL, &out, &g), 0);
	assert_ctx_ok(ctx);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(g, i), tg_get(e, i), 0);
	assert_int_equal(tg_grad_of(1, &z, NULL, 1, &p, &g, 0), -1);
	assert_error(ctx, TG_EVERSION, "exp");
	tg_clear_error(ctx);
	/* many inputs (looked up by address): the same */
	tg_tensor *many[20], *gs[20];
	for (int i = 0; i < 20; i++)
		many[i] = i % 2 ? x : h;
	assert_int_equal(tg_grad_of(1, &y, NULL, 20, many, gs, 0), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(tripled_backwards, 1);
	for (size_t i = 0; i < 3; i++) {
		assert_near(tg_get(gs[0], i), tg_get(x, i), 0);
		assert_near(tg_get(gs[19], i), tg_get(h, i), 0);
	}
	tg_ctx_free(ctx);
}

/* An output made while grad mode was off (or from a detached copy) has no
 * history: the error says that, not only that the input goes unused. */
static void grad_of_an_output_without_history_says_so(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = needs_grad(f64(ctx, SHAPE(2), (double[]){ 1, 3 }));
	tg_set_grad_enabled(ctx, false);
	tg_tensor *y = tg_sum(tg_mul(x, x));
	tg_set_grad_enabled(ctx, true);
	tg_tensor *z = tg_sum(tg_detach(x)), *g;
	tg_tensor *outs[2] = { y, z };
	assert_int_equal(tg_grad_of(2, outs, NULL, 1, &x, &g, 0), -1);
	assert_error(ctx, TG_EARG, "input 0 (2,) is not used by the outputs: none has history");
	assert_null(g);
	tg_clear_error(ctx);
	/* allowed, the gradient is zero, as for any unused input */
	assert_int_equal(tg_grad_of(2, outs, NULL, 1, &x, &g, TG_ALLOW_UNUSED), 0);
	assert_near(tg_get(g, 0), 0, 0);
	assert_near(tg_get(g, 1), 0, 0);
	/* a max's gradient under TG_CREATE_GRAPH routes dout by a mask, a
	 * constant: no history (as PyTorch's amax), and the message says why */
	tg_tensor *r = tg_max(x), *gr;
	assert_int_equal(tg_grad_of(1, &r, NULL, 1, &x, &gr, TG_CREATE_GRAPH), 0);
	tg_tensor *s = tg_sum(gr);
	assert_int_equal(tg_grad_of(1, &s, NULL, 1, &x, &g, 0), -1);
	assert_error(ctx, TG_EARG, "piecewise constant, as through a max or a clamp alone");
	tg_clear_error(ctx);
	assert_int_equal(tg_grad_of(1, &s, NULL, 1, &x, &g, TG_ALLOW_UNUSED), 0);
	assert_near(tg_get(g, 0), 0, 0);
	assert_int_equal(tg_backward(s), -1);
	assert_error(ctx, TG_EARG, "from a TG_CREATE_GRAPH gradient that is piecewise constant");
	tg_clear_error(ctx);
	tg_ctx_free(ctx);
}

/* relu's gradient under TG_CREATE_GRAPH is relu_backward(dout, x), abs's
 * dout sign(x), each with derivative zero in x: x is used, and its gradient
 * is zeros (as PyTorch's), not an error; a custom rule that hands an input
 * nothing is still reported. */
static void grad_of_through_a_zero_derivative_is_zeros(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = needs_grad(f64(ctx, SHAPE(3), (double[]){ -1, 2, 3 }));
	tg_tensor *w = needs_grad(f64(ctx, SHAPE(3), (double[]){ 1, 2, 4 }));
	tg_tensor *r = tg_sum(tg_relu(tg_mul(x, w))), *gr[2], *g[2];
	tg_tensor *in[2] = { x, w };
	assert_int_equal(tg_grad_of(1, &r, NULL, 2, in, gr, TG_CREATE_GRAPH), 0);
	/* d/dx sum(dr/dx) = 0 through the mask; d/dw of it = mask, by dr/dx = mask w */
	tg_tensor *s = tg_sum(gr[0]);
	assert_int_equal(tg_grad_of(1, &s, NULL, 2, in, g, 0), 0);
	assert_ctx_ok(ctx);
	for (int k = 0; k < 3; k++) {
		assert_true(tg_get(g[0], (size_t)k) == 0);
		assert_true(tg_get(g[1], (size_t)k) == (k ? 1 : 0));
	}
	/* abs: d/dx sum(sign(x w) w) = 0, d/dw = sign(x w), also through
	 * tg_backward, which now finds history */
	r = tg_sum(tg_abs(tg_mul(x, w)));
	assert_int_equal(tg_grad_of(1, &r, NULL, 2, in, gr, TG_CREATE_GRAPH), 0);
	assert_true(tg_requires_grad(gr[0]));
	s = tg_sum(gr[0]);
	assert_int_equal(tg_grad_of(1, &s, NULL, 2, in, g, 0), 0);
	assert_ctx_ok(ctx);
	for (int k = 0; k < 3; k++) {
		assert_true(tg_get(g[0], (size_t)k) == 0);
		assert_true(tg_get(g[1], (size_t)k) == (k ? 1 : -1));
	}
	assert_int_equal(tg_backward(s), 0);
	assert_true(tg_get(tg_grad(w), 0) == -1);
	tg_ctx_free(ctx);
}

/* The same zeros for a parameter read first thing in its step, after a
 * step that read it only late on the tape, with a long tape between the
 * reader and the gradients; a parameter the step never read is still not
 * used. */
static void a_zero_derivative_is_found_from_the_first_reader_in_the_step(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p = tg_param(f64(ctx, SHAPE(3), (double[]){ -1, 2, 3 }));
	tg_tensor *q = tg_param(f64(ctx, SHAPE(3), (double[]){ 1, 1, 1 }));
	tg_tensor *u = needs_grad(f64(ctx, SHAPE(2), (double[]){ 1, 1 }));
	for (int i = 0; i < 32; i++)
		u = tg_mul_scalar(u, 2);
	tg_tensor *y = tg_sum(tg_mul(tg_mul(p, p), q)), *g;
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &p, &g, 0), 0);
	tg_reset(ctx);

	tg_tensor *r = tg_sum(tg_relu(tg_mul_scalar(p, 3))), *gr;
	u = needs_grad(f64(ctx, SHAPE(2), (double[]){ 1, 1 }));
	for (int i = 0; i < 64; i++)
		u = tg_mul_scalar(u, 2);
	assert_int_equal(tg_grad_of(1, &r, NULL, 1, &p, &gr, TG_CREATE_GRAPH), 0);
	for (int i = 0; i < 16; i++)
		u = tg_mul_scalar(u, 2);
	tg_tensor *s = tg_sum(gr);
	assert_int_equal(tg_grad_of(1, &s, NULL, 1, &p, &g, 0), 0);
	assert_ctx_ok(ctx);
	for (size_t k = 0; k < 3; k++)
		assert_true(tg_get(g, k) == 0);
	assert_int_equal(tg_grad_of(1, &s, NULL, 1, &q, &g, 0), -1);
	assert_error(ctx, TG_EARG, "is not used by the outputs");
	tg_clear_error(ctx);
	tg_ctx_free(ctx);
}

/* y1 = x * w (a vector, upstream v), y2 = sum(x^2) (a scalar, upstream 1):
 * the gradient is v w + 2 x. */
static void grad_of_several_outputs_adds_their_vjps(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const double xv[3] = { 1, -2, 0.5 }, wv[3] = { 4, 5, -6 }, vv[3] = { 0.5, 1, 2 };
	tg_tensor *x = needs_grad(f64(ctx, SHAPE(3), xv));
	tg_tensor *w = f64(ctx, SHAPE(3), wv);
	tg_tensor *v = f64(ctx, SHAPE(3), vv);
	tg_tensor *y[2] = { tg_mul(x, w), tg_sum(tg_mul(x, x)) };
	tg_tensor *dy[2] = { v, NULL };
	tg_tensor *g;
	assert_int_equal(tg_grad_of(2, y, dy, 1, &x, &g, 0), 0);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(g, i), vv[i] * wv[i] + 2 * xv[i], 1e-15);

	/* an input given twice gets its gradient twice, as two tensors */
	tg_tensor *twice[2] = { x, x }, *g2[2];
	assert_int_equal(tg_grad_of(1, &y[1], NULL, 2, twice, g2, 0), 0);
	assert_true(g2[0] != g2[1]);
	for (size_t i = 0; i < 3; i++) {
		assert_near(tg_get(g2[0], i), 2 * xv[i], 0);
		assert_near(tg_get(g2[1], i), 2 * xv[i], 0);
	}

	/* an output that is the input itself: its gradient is a copy of dout */
	tg_tensor *gx;
	assert_int_equal(tg_grad_of(1, &x, &v, 1, &x, &gx, 0), 0);
	assert_true(gx != v);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(gx, i), vv[i], 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* Many inputs at once, as a table looks them up: leaves given twice,
 * intermediates, an unused one, and inputs that the walk hands one and the
 * same gradient tensor (add passes dout on to both its inputs). Each result
 * is a tensor of its own, and equals the input's gradient asked alone. */
static void grad_of_many_inputs_matches_asking_one_at_a_time(void **state)
{
	(void)state;
	enum { N = 40 };
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *leaf[N], *in[2 * N + 1], *g[2 * N + 1];
	for (int i = 0; i < N; i++)
		leaf[i] = needs_grad(tg_scalar(ctx, TG_F64, 0.25 * i - 3));
	tg_tensor *y = NULL;
	int n = 0;
	for (int i = 0; i < N; i += 2) {
		tg_tensor *h = tg_add(leaf[i], leaf[i + 1]);   /* one dout for both */
		tg_tensor *t = tg_mul(h, tg_mul_scalar(h, 0.5 + i));
		y = y ? tg_add(y, t) : t;
		in[n++] = leaf[i];
		in[n++] = h;
		in[n++] = leaf[i + 1];
		in[n++] = leaf[i];                             /* given twice */
	}
	tg_tensor *unused = needs_grad(tg_scalar(ctx, TG_F64, 1));
	in[n++] = unused;
	assert_int_equal(tg_grad_of(1, &y, NULL, n, in, g, TG_ALLOW_UNUSED), 0);
	for (int i = 0; i < n; i++) {
		tg_tensor *one;
		assert_int_equal(tg_grad_of(1, &y, NULL, 1, &in[i], &one, TG_ALLOW_UNUSED), 0);
		assert_near(tg_item(g[i]), tg_item(one), 0);
		for (int j = 0; j < i; j++)
			assert_true(g[i] != g[j]);
	}
	assert_near(tg_item(g[n - 1]), 0, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void grad_of_rejects_bad_arguments(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = needs_grad(f64(ctx, SHAPE(2), (double[]){ 1, 3 }));
	tg_tensor *c = f64(ctx, SHAPE(2), (double[]){ 1, 3 });
	tg_tensor *y = tg_mul(x, x), *s = tg_sum(y), *g;

	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &x, &g, 0), -1);
	assert_error(ctx, TG_ESHAPE, "output 0 has shape (2,); a non-scalar output needs");
	tg_clear_error(ctx);

	tg_tensor *bad = f64(ctx, SHAPE(3), (double[]){ 1, 1, 1 });
	assert_int_equal(tg_grad_of(1, &y, &bad, 1, &x, &g, 0), -1);
	assert_error(ctx, TG_ESHAPE, "douts[0] is f64 (3,)");
	tg_clear_error(ctx);
	/* right shape, wrong dtype: a dtype error, as tg_backward_ex says */
	tg_tensor *d32 = tg_ones(ctx, TG_F32, SHAPE(2));
	assert_int_equal(tg_grad_of(1, &y, &d32, 1, &x, &g, 0), -1);
	assert_error(ctx, TG_EDTYPE, "output 0 is f64 (2,), douts[0] is f32 (2,)");
	tg_clear_error(ctx);
	assert_int_equal(tg_backward_ex(y, d32, 0), -1);
	assert_int_equal(tg_status_of(ctx), TG_EDTYPE);
	tg_clear_error(ctx);

	assert_int_equal(tg_grad_of(1, &s, NULL, 1, &c, &g, 0), -1);
	assert_error(ctx, TG_EARG, "input 0 (2,) does not require a gradient");
	tg_clear_error(ctx);

	assert_int_equal(tg_grad_of(1, &s, NULL, 0, &x, &g, 0), -1);
	assert_error(ctx, TG_EARG, "0 inputs");
	tg_clear_error(ctx);

	assert_int_equal(tg_grad_of(1, &s, NULL, 1, &x, NULL, 0), -1);
	assert_error(ctx, TG_ENULL, "grads");
	tg_clear_error(ctx);

	tg_tensor *in2[2] = { x, NULL };
	assert_int_equal(tg_grad_of(1, &s, NULL, 2, in2, (tg_tensor *[2]){ 0 }, 0), -1);
	assert_error(ctx, TG_ENULL, "input 1 is NULL");
	tg_clear_error(ctx);

	assert_int_equal(tg_grad_of(1, &s, NULL, 1, &x, &g, 8), -1);
	assert_error(ctx, TG_EARG, "unknown flags");
	tg_clear_error(ctx);

	/* grad mode off: nothing was recorded, and both walks say why */
	tg_set_grad_enabled(ctx, false);
	tg_tensor *off = tg_sum(tg_mul(x, x));
	assert_int_equal(tg_grad_of(1, &off, NULL, 1, &x, &g, 0), -1);
	assert_error(ctx, TG_EARG, "grad mode is off (tg_set_grad_enabled)");
	tg_clear_error(ctx);
	assert_int_equal(tg_backward(off), -1);
	assert_error(ctx, TG_EARG, "grad mode is off (tg_set_grad_enabled)");
	tg_clear_error(ctx);
	/* the graph recorded before still walks with grad mode off */
	assert_int_equal(tg_grad_of(1, &s, NULL, 1, &x, &g, 0), 0);
	assert_near(tg_get(g, 1), 6, 0);
	tg_set_grad_enabled(ctx, true);
	assert_int_equal(tg_grad_of(0, NULL, NULL, 0, NULL, NULL, 0), -1); /* no context */
	/* grads all NULL on every failure: after an earlier error, and with no context */
	tg_tensor *g2[2] = { x, x };
	assert_null(tg_mul(x, bad));
	assert_int_equal(tg_grad_of(1, &s, NULL, 2, (tg_tensor *[2]){ x, x }, g2, 0), -1);
	assert_null(g2[0]);
	assert_null(g2[1]);
	tg_clear_error(ctx);
	g = x;
	assert_int_equal(tg_grad_of(1, (tg_tensor *[1]){ NULL }, NULL, 1, &x, &g, 0), -1);
	assert_null(g);
	tg_ctx_free(ctx);
}

/* ---- finite differences ------------------------------------------------------------ */

/* col[r] = d f(in)[r] / d in[i][k] by central differences, grad mode off. */
static void fd_column(tg_fn f, void *user, tg_tensor *const *in, int i, size_t k, double *col)
{
	tg_ctx *ctx = tg_ctx_of(in[0]);
	bool was = tg_set_grad_enabled(ctx, false);
	double *d = tg_data_mut(in[i]);
	double x0 = d[k];
	d[k] = x0 + H;
	tg_tensor *up = f(in, user);
	d[k] = x0 - H;
	tg_tensor *down = f(in, user);
	d[k] = x0;
	assert_non_null(up);
	assert_non_null(down);
	for (size_t r = 0; r < tg_numel(up); r++)
		col[r] = (tg_get(up, r) - tg_get(down, r)) / (2 * H);
	tg_set_grad_enabled(ctx, was);
}

/* ---- a vector function: y = tanh(A x) * exp(B x), A and B (m,n) ------------------- */

typedef struct mats {
	tg_tensor *A, *B;
} mats;

static tg_tensor *f_vec(tg_tensor *const *in, void *user)
{
	const mats *m = user;
	int64_t n = (int64_t)tg_numel(in[0]);
	tg_tensor *x = tg_reshape(in[0], SHAPE(n, 1));
	tg_tensor *y = tg_mul(tg_tanh(tg_matmul(m->A, x)), tg_exp(tg_matmul(m->B, x)));
	return tg_reshape(y, SHAPE(tg_dim(m->A, 0)));
}

static mats make_mats(tg_ctx *ctx, int64_t m, int64_t n)
{
	mats M = { tg_rand(ctx, TG_F64, SHAPE(m, n), -1, 1), tg_rand(ctx, TG_F64, SHAPE(m, n), -0.5, 0.5) };
	return M;
}

/* The Jacobian against central differences, for m <= n (rows, one VJP per
 * output element) and m > n (columns, one JVP per input element), and with
 * a 2-D input (layout out.shape ++ in.shape). */
static void jacobian_matches_finite_differences_both_ways(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const int64_t sizes[3][3] = { { 2, 3, 0 }, { 3, 2, 0 }, { 3, 2, 2 } };
	for (int t = 0; t < 3; t++) {
		int64_t m = sizes[t][0];
		int two_d = sizes[t][2] != 0;
		int64_t n = two_d ? sizes[t][1] * sizes[t][2] : sizes[t][1];
		mats M = make_mats(ctx, m, n);
		tg_tensor *x = two_d ? tg_rand(ctx, TG_F64, SHAPE(sizes[t][1], sizes[t][2]), -1, 1)
				     : tg_rand(ctx, TG_F64, SHAPE(n), -1, 1);
		tg_tensor *jac;
		assert_int_equal(tg_jacobian(ctx, f_vec, &M, 1, &x, &jac), 0);
		assert_ctx_ok(ctx);
		assert_int_equal(tg_ndim(jac), 1 + tg_ndim(x));
		assert_int_equal(tg_dim(jac, 0), m);
		for (int d = 0; d < tg_ndim(x); d++)
			assert_int_equal(tg_dim(jac, d + 1), tg_dim(x, d));
		assert_null(tg_producer(jac));
		assert_false(tg_requires_grad(x));
		for (size_t k = 0; k < (size_t)n; k++) {
			double col[4];
			fd_column(f_vec, &M, &x, 0, k, col);
			for (size_t r = 0; r < (size_t)m; r++)
				assert_near(tg_get(jac, r * (size_t)n + k), col[r], 1e-7);
		}
	}
	tg_ctx_free(ctx);
}

/* J t from tg_jvp against sum_k J[:, k] t[k] from central differences, and
 * v^T J from tg_vjp likewise. */
static void jvp_and_vjp_match_finite_differences(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	mats M = make_mats(ctx, 2, 3);
	const double xv[3] = { 0.3, -0.7, 0.9 }, tv[3] = { 1, -2, 0.5 }, vv[2] = { 1.5, -0.5 };
	tg_tensor *x = f64(ctx, SHAPE(3), xv);
	tg_tensor *t = f64(ctx, SHAPE(3), tv);
	tg_tensor *v = f64(ctx, SHAPE(2), vv);
	double J[2][3];
	for (size_t k = 0; k < 3; k++) {
		double col[2];
		fd_column(f_vec, &M, &x, 0, k, col);
		J[0][k] = col[0];
		J[1][k] = col[1];
	}
	tg_tensor *out, *jvp, *vjp;
	assert_int_equal(tg_jvp(ctx, f_vec, &M, 1, &x, &t, &out, &jvp), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_numel(jvp), 2);
	for (size_t r = 0; r < 2; r++)
		assert_near(tg_get(jvp, r), J[r][0] * tv[0] + J[r][1] * tv[1] + J[r][2] * tv[2],
			    1e-7);
	assert_int_equal(tg_numel(out), 2);
	assert_near(tg_get(out, 0), tg_get(f_vec(&x, &M), 0), 0);
	assert_int_equal(tg_vjp(ctx, f_vec, &M, 1, &x, v, NULL, &vjp), 0);
	for (size_t k = 0; k < 3; k++)
		assert_near(tg_get(vjp, k), vv[0] * J[0][k] + vv[1] * J[1][k], 1e-7);
	/* the JVP is exact: against J t from the Jacobian to rounding */
	tg_tensor *jac;
	assert_int_equal(tg_jacobian(ctx, f_vec, &M, 1, &x, &jac), 0);
	for (size_t r = 0; r < 2; r++) {
		double want = 0;
		for (size_t k = 0; k < 3; k++)
			want += tg_get(jac, r * 3 + k) * tv[k];
		assert_near(tg_get(jvp, r), want, 1e-14);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- second order: HVP and Hessian --------------------------------------------------- */

/* f(x) = sum(x^3) / 6 + x^T A x / 2, grad f = x^2 / 2 + A x, H = diag(x) + A.
 * At x = (0.5, -1, 2), A = [[2,1,0],[1,0,-1],[0,-1,3]], v = (1, -2, 0.5):
 * grad f = (0.125, -1, 9), Hv = (0.5, 2.5, 4.5). */
static tg_tensor *f_cubic(tg_tensor *const *in, void *user)
{
	tg_tensor *A = user, *x = in[0];
	tg_tensor *cubes = tg_mul_scalar(tg_sum(tg_pow(x, 3)), 1.0 / 6);
	tg_tensor *quad =
	    tg_matmul(tg_reshape(x, SHAPE(1, 3)), tg_matmul(A, tg_reshape(x, SHAPE(3, 1))));
	return tg_add(cubes, tg_mul_scalar(tg_sum(quad), 0.5));
}

static void hvp_is_h_times_v_and_not_g_plus_hv(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *A = f64(ctx, SHAPE(3, 3), (double[]){ 2, 1, 0, 1, 0, -1, 0, -1, 3 });
	tg_tensor *x = tg_param(f64(ctx, SHAPE(3), (double[]){ 0.5, -1, 2 }));
	tg_tensor *v = f64(ctx, SHAPE(3), (double[]){ 1, -2, 0.5 });
	const double want_g[3] = { 0.125, -1, 9 }, want_hv[3] = { 0.5, 2.5, 4.5 };
	/* an earlier backward leaves x with gradient g */
	assert_int_equal(tg_backward(f_cubic(&x, A)), 0);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(tg_grad(x), i), want_g[i], 1e-15);

	tg_tensor *out, *hv;
	assert_int_equal(tg_hvp(ctx, f_cubic, A, 1, &x, &v, &out, &hv), 0);
	assert_ctx_ok(ctx);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(hv, i), want_hv[i], 1e-14);
	/* f = 7.125 / 6 + x.(0, -1.5, 7) / 2 = 1.1875 + 7.75 */
	assert_near(tg_item(out), 8.9375, 1e-15);
	/* x's gradient is still g */
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(tg_grad(x), i), want_g[i], 1e-15);

	/* the same two passes by hand with tg_grad_of, after the backward */
	tg_tensor *g, *hv2;
	tg_tensor *y = f_cubic(&x, A);
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &x, &g, TG_CREATE_GRAPH), 0);
	tg_tensor *gv = tg_sum(tg_mul(g, v));
	assert_int_equal(tg_grad_of(1, &gv, NULL, 1, &x, &hv2, 0), 0);
	for (size_t i = 0; i < 3; i++) {
		assert_near(tg_get(hv2, i), want_hv[i], 1e-14);
		assert_near(tg_get(tg_grad(x), i), want_g[i], 1e-15);
	}

	/* and against central differences of the gradient along v */
	tg_tensor *xp = f64(ctx, SHAPE(3), (double[]){ 0.5 + H, -1 - 2 * H, 2 + 0.5 * H });
	tg_tensor *xm = f64(ctx, SHAPE(3), (double[]){ 0.5 - H, -1 + 2 * H, 2 - 0.5 * H });
	tg_tensor *gp, *gm;
	assert_int_equal(tg_vjp(ctx, f_cubic, A, 1, &xp, NULL, NULL, &gp), 0);
	assert_int_equal(tg_vjp(ctx, f_cubic, A, 1, &xm, NULL, NULL, &gm), 0);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(hv, i), (tg_get(gp, i) - tg_get(gm, i)) / (2 * H), 1e-7);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* The seeds' sigmoid neuron f = sigmoid(w1 x1 + w2 x2 + b), inputs w (2),
 * x (2), b (). */
static tg_tensor *f_neuron(tg_tensor *const *in, void *user)
{
	(void)user;
	return tg_sigmoid(tg_add(tg_sum(tg_mul(in[0], in[1])), in[2]));
}

static void hessian_of_the_sigmoid_neuron_matches_finite_differences(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const double wv[2] = { 2, -3 }, xv[2] = { -1, -2 }, bv = -3;
	tg_tensor *in[3] = { f64(ctx, SHAPE(2), wv), f64(ctx, SHAPE(2), xv),
			     tg_scalar(ctx, TG_F64, bv) };
	tg_tensor *hess[9];
	assert_int_equal(tg_hessian(ctx, f_neuron, NULL, 3, in, hess), 0);
	assert_ctx_ok(ctx);
	/* block (i, j) has shape in[i].shape ++ in[j].shape */
	const int want_ndim[9] = { 2, 2, 1, 2, 2, 1, 1, 1, 0 };
	for (int b = 0; b < 9; b++)
		assert_int_equal(tg_ndim(hess[b]), want_ndim[b]);

	/* by hand: z = 1, s = sigmoid(1), f'' = s (1 - s) (1 - 2 s);
	 * d2f/db2 = f'', d2f/dw1 dx1 = f'' w1 x1 + f' */
	double s = 1 / (1 + exp(-1.0)), d1 = s * (1 - s), d2 = d1 * (1 - 2 * s);
	assert_near(tg_item(hess[8]), d2, 1e-15);
	assert_near(tg_get(hess[0 * 3 + 1], 0), d2 * wv[0] * xv[0] + d1, 1e-15);
	assert_near(tg_get(hess[0 * 3 + 1], 1), d2 * xv[0] * wv[1], 1e-15);

	/* every entry against central differences of the gradient */
	for (int i = 0; i < 3; i++) {
		for (size_t k = 0; k < tg_numel(in[i]); k++) {
			double *d = tg_data_mut(in[i]);
			double x0 = d[k];
			tg_tensor *gp[3], *gm[3];
			d[k] = x0 + H;
			assert_int_equal(tg_vjp(ctx, f_neuron, NULL, 3, in, NULL, NULL, gp), 0);
			d[k] = x0 - H;
			assert_int_equal(tg_vjp(ctx, f_neuron, NULL, 3, in, NULL, NULL, gm), 0);
			d[k] = x0;
			for (int j = 0; j < 3; j++) {
				size_t nj = tg_numel(in[j]);
				for (size_t l = 0; l < nj; l++) {
					double fd = (tg_get(gp[j], l) - tg_get(gm[j], l)) / (2 * H);
					double got = tg_get(hess[i * 3 + j], k * nj + l);
					if (!(fabs(got - fd) <= 1e-7))
						fail_msg("H[%d,%zu; %d,%zu] = %.15g, finite differences %.15g",
							 i, k, j, l, got, fd);
					/* symmetric */
					assert_near(tg_get(hess[j * 3 + i], l * tg_numel(in[i]) + k),
						    got, 1e-15);
				}
			}
		}
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- the memory of a Jacobian's or a Hessian's passes ----------------------------------- */

/* Twenty elementwise ops: five times y <- y tanh(y) + exp(-y / 10). */
static tg_tensor *f_chain(tg_tensor *const *in, void *user)
{
	(void)user;
	tg_tensor *y = in[0];
	for (int i = 0; i < 5; i++)
		y = tg_add(tg_mul(tg_tanh(y), y), tg_exp(tg_mul_scalar(y, -0.1)));
	return y;
}

/* sum(f_chain(x) x), for a Hessian */
static tg_tensor *f_chain_dot(tg_tensor *const *in, void *user)
{
	return tg_sum(tg_mul(f_chain(in, user), in[0]));
}

enum { JAC_ROWS, JAC_COLUMNS, HESSIAN, VJP, JVP, HVP };

/* The step memory one call takes at its peak, in a context of its own, at
 * x of n elements (f_vec from n to 10 n for the columns and the JVP, the
 * chain for the rest); *result: the bytes of its result. */
static size_t peak_of(int call, int64_t n, size_t *result)
{
	tg_ctx *ctx = tg_ctx_new(SEED);
	mats M = make_mats(ctx, 10 * n, n);
	tg_tensor *x = tg_rand(ctx, TG_F64, SHAPE(n), -1, 1);
	size_t before = tg_arena_used(ctx);
	tg_tensor *r, *out;
	switch (call) {
	case JAC_ROWS: assert_int_equal(tg_jacobian(ctx, f_chain, NULL, 1, &x, &r), 0); break;
	case JAC_COLUMNS: assert_int_equal(tg_jacobian(ctx, f_vec, &M, 1, &x, &r), 0); break;
	case HESSIAN: assert_int_equal(tg_hessian(ctx, f_chain_dot, NULL, 1, &x, &r), 0); break;
	case VJP: assert_int_equal(tg_vjp(ctx, f_chain, NULL, 1, &x, x, &out, &r), 0); break;
	case JVP: assert_int_equal(tg_jvp(ctx, f_vec, &M, 1, &x, &x, &out, &r), 0); break;
	case HVP: assert_int_equal(tg_hvp(ctx, f_chain_dot, NULL, 1, &x, &x, &out, &r), 0); break;
	}
	assert_ctx_ok(ctx);
	*result = tg_numel(r) * sizeof(double);
	size_t peak = tg_arena_high_water(ctx) - before;
	tg_ctx_free(ctx);
	return peak;
}

/* Each pass's memory is given back to the next once its row or column is
 * copied out: a Jacobian or a Hessian takes, besides its result, no more
 * than twice what the one product of its kind takes (f, and for the
 * columns and the Hessian the recorded first gradient, and one pass),
 * where it took one pass's worth per row. 300 rows of the 20-op chain, 30
 * columns of f_vec (300 outputs), and a 300 x 300 Hessian. */
static void jacobian_and_hessian_passes_give_their_memory_back(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		int call, product;
		int64_t n;
	} cases[] = {
		{ "Jacobian by rows", JAC_ROWS, VJP, 300 },
		{ "Jacobian by columns", JAC_COLUMNS, JVP, 30 },
		{ "Hessian", HESSIAN, HVP, 300 },
	};
	for (size_t i = 0; i < LEN(cases); i++) {
		size_t result, unused;
		size_t peak = peak_of(cases[i].call, cases[i].n, &result);
		size_t one = peak_of(cases[i].product, cases[i].n, &unused);
		printf("%s of %lld inputs: %zu bytes at its peak (%zu of result); one product %zu\n",
		       cases[i].what, (long long)cases[i].n, peak, result, one);
		if (peak > result + 2 * one)
			fail_msg("%s of %lld inputs took %zu bytes at its peak: %zu of result, and "
				 "more than twice the %zu of one product",
				 cases[i].what, (long long)cases[i].n, peak, result, one);
	}
}

/* A custom op's rule is the caller's code: here it keeps each gradient it
 * makes, one a pass. Where f records one, the passes keep their memory to
 * the end of the step, and every gradient kept holds its own row. */
static tg_tensor *twice_made[8];
static int twice_calls;
static void twice_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *dx = tg_mul_scalar(dout, 2);
	if (twice_calls < 8)
		twice_made[twice_calls++] = dx;
	tg_node_grad(n, 0, dx);
}
static const tg_op twice_op = { .name = "twice", .backward = twice_backward };
static tg_tensor *f_twice(tg_tensor *const *in, void *user)
{
	(void)user;
	tg_ctx *ctx = tg_ctx_of(in[0]);
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *y = tg_mul_scalar(in[0], 2);
	tg_set_grad_enabled(ctx, was);
	return tg_record(&twice_op, y, 1, in, NULL, 0);
}

static void passes_through_a_custom_op_keep_their_memory(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_rand(ctx, TG_F64, SHAPE(8), -1, 1), *jac;
	twice_calls = 0;
	assert_int_equal(tg_jacobian(ctx, f_twice, NULL, 1, &x, &jac), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(twice_calls, 8);
	for (int r = 0; r < 8; r++)
		for (size_t k = 0; k < 8; k++) {
			assert_near(tg_get(jac, (size_t)r * 8 + k), r == (int)k ? 2 : 0, 0);
			assert_near(tg_get(twice_made[r], k), r == (int)k ? 2 : 0, 0);
		}
	tg_ctx_free(ctx);
}

/* A rule that records its own ops (grad mode on inside it, as a rule
 * meant for higher derivatives may): the passes of a Jacobian or a Hessian
 * leave what it recorded on the tape and go on. */
static void square_recording_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	bool was = tg_set_grad_enabled(tg_ctx_of(x), true);
	tg_tensor *dx = tg_mul(dout, tg_mul_scalar(x, 2));
	tg_set_grad_enabled(tg_ctx_of(x), was);
	tg_node_grad(n, 0, dx);
}
static const tg_op square_recording_op = { .name = "square_recording",
					   .backward = square_recording_backward };
static tg_tensor *f_square_recording(tg_tensor *const *in, void *user)
{
	tg_ctx *ctx = tg_ctx_of(in[0]);
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *y = tg_mul(in[0], in[0]);
	tg_set_grad_enabled(ctx, was);
	y = tg_record(&square_recording_op, y, 1, in, NULL, 0);
	return user ? tg_sum(tg_sin(y)) : y;
}

static void a_rule_that_records_ops_works_in_every_pass(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const double v[] = { 0.5, -1.5, 2.0 };
	tg_tensor *x = f64(ctx, SHAPE(3), v), *jac, *hess;
	assert_int_equal(tg_jacobian(ctx, f_square_recording, NULL, 1, &x, &jac), 0);
	assert_ctx_ok(ctx);
	for (int r = 0; r < 3; r++)
		for (int k = 0; k < 3; k++)
			assert_near(tg_get(jac, (size_t)(r * 3 + k)), r == k ? 2 * v[k] : 0, 0);
	/* d2/dx2 sin(x^2) = 2 cos(x^2) - 4 x^2 sin(x^2), on the diagonal */
	assert_int_equal(tg_hessian(ctx, f_square_recording, (void *)1, 1, &x, &hess), 0);
	assert_ctx_ok(ctx);
	for (int r = 0; r < 3; r++)
		for (int k = 0; k < 3; k++) {
			double x2 = v[k] * v[k];
			double want = r == k ? 2 * cos(x2) - 4 * x2 * sin(x2) : 0;
			assert_near(tg_get(hess, (size_t)(r * 3 + k)), want, 1e-12);
		}
	tg_ctx_free(ctx);
}

/* A rule that computes its gradient in a loop (no ops, no history): right
 * for first-order calls; refused, naming the op, where its gradient is
 * differentiated again with an upstream gradient that has history (the
 * double-VJP of tg_jvp, a Jacobian by columns), which would read zeros. */
static void square_loop_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_tensor *g = tg_zeros(tg_ctx_of(x), TG_F64, tg_ndim(x), tg_shape(x));
	double *gd = tg_data_mut(g);
	for (size_t i = 0; gd && i < tg_numel(x); i++)
		gd[i] = 2 * tg_get(x, i) * tg_get(dout, i);
	tg_node_grad(n, 0, g);
}
static const tg_op square_loop_op = { .name = "square_loop", .backward = square_loop_backward };
static tg_tensor *f_square_loop(tg_tensor *const *in, void *user)
{
	tg_ctx *ctx = tg_ctx_of(in[0]);
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *y = tg_mul(in[0], in[0]);
	tg_set_grad_enabled(ctx, was);
	y = tg_record(&square_loop_op, y, 1, in, NULL, 0);
	return user ? tg_concat(ctx, 2, (tg_tensor *[]){ y, y }, 0) : y;
}

static void a_rule_computed_in_a_loop_is_refused_where_it_would_read_zeros(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const double v[] = { 3, 5 };
	tg_tensor *x = f64(ctx, SHAPE(2), v), *t = tg_ones(ctx, TG_F64, SHAPE(2));
	tg_tensor *vjp, *jvp, *jac;
	assert_int_equal(tg_vjp(ctx, f_square_loop, NULL, 1, &x, t, NULL, &vjp), 0);
	assert_near(tg_get(vjp, 0), 6, 0);
	assert_near(tg_get(vjp, 1), 10, 0);
	assert_int_equal(tg_jacobian(ctx, f_square_loop, NULL, 1, &x, &jac), 0); /* by rows */
	assert_near(tg_get(jac, 0), 6, 0);
	assert_near(tg_get(jac, 3), 10, 0);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_jvp(ctx, f_square_loop, NULL, 1, &x, &t, NULL, &jvp), -1);
	assert_error(ctx, TG_EARG, "backward of square_loop: under TG_CREATE_GRAPH the gradient "
				   "of input 0 has no history");
	tg_clear_error(ctx);
	/* 4 outputs of 2 inputs: by columns */
	assert_int_equal(tg_jacobian(ctx, f_square_loop, (void *)1, 1, &x, &jac), -1);
	assert_error(ctx, TG_EARG, "backward of square_loop");
	tg_clear_error(ctx);
	/* the recorded rule of the same op goes through both */
	assert_int_equal(tg_jvp(ctx, f_square_recording, NULL, 1, &x, &t, NULL, &jvp), 0);
	assert_near(tg_get(jvp, 0), 6, 0);
	assert_near(tg_get(jvp, 1), 10, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- the functional calls' contract ---------------------------------------------------- */

static void functional_calls_leave_inputs_and_tape_as_they_were(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *w = tg_param(f64(ctx, SHAPE(2), (double[]){ 0.5, 1 }));
	tg_tensor *x = f64(ctx, SHAPE(2), (double[]){ -1, 2 });
	tg_tensor *b = tg_scalar(ctx, TG_F64, 0.1);
	tg_tensor *before = tg_sum(tg_mul(w, w)); /* a graph of the caller's */
	tg_node *tape = ctx->tape;
	tg_tensor *in[3] = { w, x, b }, *hess[9], *g[3];
	assert_int_equal(tg_hessian(ctx, f_neuron, NULL, 3, in, hess), 0);
	assert_int_equal(tg_vjp(ctx, f_neuron, NULL, 3, in, NULL, NULL, g), 0);
	assert_ptr_equal(ctx->tape, tape);
	assert_false(tg_requires_grad(x));
	assert_null(tg_grad(w));
	assert_null(tg_grad(x));
	assert_true(tg_grad_enabled(ctx));
	/* with grad mode off too, and it stays off */
	tg_set_grad_enabled(ctx, false);
	assert_int_equal(tg_vjp(ctx, f_neuron, NULL, 3, in, NULL, NULL, g), 0);
	assert_false(tg_grad_enabled(ctx));
	tg_set_grad_enabled(ctx, true);
	/* the caller's graph walks as before */
	assert_int_equal(tg_backward(before), 0);
	assert_near(tg_get(tg_grad(w), 1), 2, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* f = p * x for a parameter p, keeping what it makes in user. */
typedef struct kept {
	tg_tensor *p, *y, *h;
} kept;

static tg_tensor *f_keeps(tg_tensor *const *in, void *user)
{
	kept *k = user;
	k->h = tg_mul(k->p, in[0]);
	k->y = tg_sum(k->h);
	return k->y;
}

/* The nodes f recorded are off the tape after the call: a walk from a
 * tensor f kept would not reach them and would hand p nothing, quietly.
 * Such a tensor comes out without history instead: a backward from it is
 * an error, and beside others it is a constant. For every derivative
 * function and the gradient check. */
static void tensors_f_keeps_come_out_without_history(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	kept k = { tg_param(f64(ctx, SHAPE(2), (double[]){ 3, 4 })), NULL, NULL };
	tg_tensor *x = f64(ctx, SHAPE(2), (double[]){ 1, 2 });
	tg_tensor *v = f64(ctx, SHAPE(2), (double[]){ 1, 1 });
	for (int call = 0; call < 7; call++) {
		tg_tensor *r[1], *out;
		switch (call) {
		case 0: assert_int_equal(tg_vjp(ctx, f_keeps, &k, 1, &x, NULL, &out, r), 0); break;
		case 1: assert_int_equal(tg_jvp(ctx, f_keeps, &k, 1, &x, &v, &out, r), 0); break;
		case 2: assert_int_equal(tg_hvp(ctx, f_keeps, &k, 1, &x, &v, &out, r), 0); break;
		case 3: assert_int_equal(tg_jacobian(ctx, f_keeps, &k, 1, &x, r), 0); break;
		case 4: assert_int_equal(tg_hessian(ctx, f_keeps, &k, 1, &x, r), 0); break;
		case 5: assert_int_equal(tg_gradcheck(ctx, f_keeps, &k, 1, &x, NULL, NULL), 0); break;
		case 6: assert_int_equal(tg_gradcheck2(ctx, f_keeps, &k, 1, &x, NULL, NULL), 0); break;
		}
		assert_false(tg_requires_grad(k.y));
		assert_false(tg_requires_grad(k.h));
		assert_null(tg_producer(k.h));
		assert_near(tg_item(k.y), 11, 1e-4); /* the check last calls f at x +- eps */
		assert_int_equal(tg_backward(k.y), -1);
		assert_error(ctx, TG_EARG, "does not depend on any tensor that requires a gradient");
		tg_clear_error(ctx);
		/* a constant beside p's own term: d sum(p p) = 2 p */
		assert_int_equal(tg_backward(tg_add(k.y, tg_sum(tg_mul(k.p, k.p)))), 0);
		assert_near(tg_get(tg_grad(k.p), 0), 6, 0);
		assert_near(tg_get(tg_grad(k.p), 1), 8, 0);
		tg_zero_grad(k.p);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* The result array may be one of the arguments: y = dy/dx written over y
 * (x^3 at 2: 12, 12, 6), v <- H v (power iteration), t <- J t, and a
 * Jacobian over its input's slot, each as with arrays apart. */
static void a_result_may_be_written_over_an_argument(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_set_requires_grad(tg_scalar(ctx, TG_F64, 2), true);
	tg_tensor *y = tg_mul(tg_mul(x, x), x);
	const double want[3] = { 12, 12, 6 };
	for (int k = 0; k < 3; k++) {
		assert_int_equal(tg_grad_of(1, &y, NULL, 1, &x, &y, TG_CREATE_GRAPH), 0);
		assert_near(tg_item(y), want[k], 0);
	}
	tg_tensor *douts[1] = { tg_scalar(ctx, TG_F64, 3) };
	y = tg_mul(x, x);
	assert_int_equal(tg_grad_of(1, &y, douts, 1, &x, douts, 0), 0);
	assert_near(tg_item(douts[0]), 12, 0);
	tg_tensor *in[1] = { x };
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, in, in, 0), 0);
	assert_near(tg_item(in[0]), 4, 0);

	tg_tensor *A = f64(ctx, SHAPE(3, 3), (double[]){ 2, 1, 0, 1, 0, -1, 0, -1, 3 });
	tg_tensor *p = f64(ctx, SHAPE(3), (double[]){ 0.5, -1, 2 });
	tg_tensor *v = f64(ctx, SHAPE(3), (double[]){ 1, -2, 0.5 }), *apart;
	assert_int_equal(tg_hvp(ctx, f_cubic, A, 1, &p, &v, NULL, &apart), 0);
	assert_int_equal(tg_hvp(ctx, f_cubic, A, 1, &p, &v, NULL, &v), 0);
	assert_memory_equal(tg_data(v), tg_data(apart), 3 * sizeof(double));
	mats M = make_mats(ctx, 2, 3);
	tg_tensor *t = f64(ctx, SHAPE(3), (double[]){ 1, 0, -1 }), *out = NULL;
	assert_int_equal(tg_jvp(ctx, f_vec, &M, 1, &p, &t, NULL, &apart), 0);
	assert_int_equal(tg_jvp(ctx, f_vec, &M, 1, &p, &t, &out, &t), 0);
	assert_memory_equal(tg_data(t), tg_data(apart), 2 * sizeof(double));
	assert_non_null(out);
	tg_tensor *xs[1] = { p };
	assert_int_equal(tg_jacobian(ctx, f_vec, &M, 1, xs, &apart), 0);
	assert_int_equal(tg_jacobian(ctx, f_vec, &M, 1, xs, xs), 0);
	assert_memory_equal(tg_data(xs[0]), tg_data(apart), 6 * sizeof(double));
	/* a failure still leaves the results NULL, out too */
	tg_tensor *bad = f64(ctx, SHAPE(2), (double[]){ 1, 2 });
	out = p;
	assert_int_equal(tg_jvp(ctx, f_vec, &M, 1, &p, &bad, &out, &t), -1);
	assert_error(ctx, TG_ESHAPE, "tg_jvp: tangent 0 is f64 (2,), input 0 is f64 (3,)");
	assert_null(t);
	assert_null(out);
	tg_clear_error(ctx);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static tg_tensor *f_null(tg_tensor *const *in, void *user)
{
	(void)in;
	(void)user;
	return NULL;
}

static void functional_calls_reject_bad_arguments(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	mats M = make_mats(ctx, 2, 3);
	tg_tensor *x = tg_ones(ctx, TG_F64, SHAPE(3));
	tg_tensor *r[4] = { 0 }, *out = NULL;

	assert_int_equal(tg_jacobian(ctx, NULL, NULL, 1, &x, r), -1);
	assert_error(ctx, TG_ENULL, "tg_jacobian: the function f is NULL");
	tg_clear_error(ctx);

	assert_int_equal(tg_vjp(ctx, f_vec, &M, 0, &x, NULL, NULL, r), -1);
	assert_error(ctx, TG_EARG, "tg_vjp: 0 inputs");
	tg_clear_error(ctx);

	tg_tensor *v3 = tg_ones(ctx, TG_F64, SHAPE(3));
	assert_int_equal(tg_vjp(ctx, f_vec, &M, 1, &x, v3, &out, r), -1);
	assert_error(ctx, TG_ESHAPE, "tg_vjp: v is f64 (3,), f's output f64 (2,)");
	assert_null(r[0]);
	assert_null(out);
	tg_clear_error(ctx);

	assert_int_equal(tg_vjp(ctx, f_vec, &M, 1, &x, NULL, NULL, r), -1);
	assert_error(ctx, TG_ESHAPE, "f returned (2,); it must return one element");
	tg_clear_error(ctx);

	tg_tensor *t2 = tg_ones(ctx, TG_F64, SHAPE(2));
	assert_int_equal(tg_jvp(ctx, f_vec, &M, 1, &x, &t2, NULL, r), -1);
	assert_error(ctx, TG_ESHAPE, "tg_jvp: tangent 0 is f64 (2,), input 0 is f64 (3,)");
	tg_clear_error(ctx);
	tg_tensor *t32 = tg_ones(ctx, TG_F32, SHAPE(3)), *v32 = tg_ones(ctx, TG_F32, SHAPE(2));
	assert_int_equal(tg_jvp(ctx, f_vec, &M, 1, &x, &t32, NULL, r), -1);
	assert_error(ctx, TG_EDTYPE, "tg_jvp: tangent 0 is f32 (3,), input 0 is f64 (3,)");
	tg_clear_error(ctx);
	assert_int_equal(tg_vjp(ctx, f_vec, &M, 1, &x, v32, NULL, r), -1);
	assert_error(ctx, TG_EDTYPE, "tg_vjp: v is f32 (2,), f's output f64 (2,)");
	tg_clear_error(ctx);

	assert_int_equal(tg_jvp(ctx, f_vec, &M, 1, &x, NULL, NULL, r), -1);
	assert_error(ctx, TG_ENULL, "tangent array");
	tg_clear_error(ctx);

	assert_int_equal(tg_hvp(ctx, f_vec, &M, 1, &x, &v3, NULL, r), -1);
	assert_error(ctx, TG_ESHAPE, "tg_hvp: f returned (2,)");
	tg_clear_error(ctx);

	assert_int_equal(tg_hessian(ctx, f_null, NULL, 1, &x, r), -1);
	assert_error(ctx, TG_ENULL, "f returned NULL");
	tg_clear_error(ctx);

	tg_ctx *other = tg_ctx_new(1);
	tg_tensor *far = tg_ones(other, TG_F64, SHAPE(3));
	tg_tensor *two[2] = { x, far };
	assert_int_equal(tg_jacobian(ctx, f_vec, &M, 2, two, r), -1);
	assert_error(ctx, TG_ECTX, "input 1 belongs to another context");
	tg_clear_error(ctx);
	tg_ctx_free(other);

	/* no context: no error to record, and the results are NULL all the same */
	r[0] = x;
	assert_int_equal(tg_jacobian(NULL, f_vec, &M, 1, &x, r), -1);
	assert_null(r[0]);
	r[0] = x;
	assert_int_equal(tg_vjp(NULL, f_vec, &M, 1, &x, NULL, NULL, r), -1);
	assert_null(r[0]);
	assert_true(tg_grad_enabled(ctx));
	tg_ctx_free(ctx);
}

/* f ends the step it is called in: the call fails naming the reset, puts
 * back no tape of the old step, and the next step's backward runs. */
static tg_tensor *f_resets(tg_tensor *const *in, void *user)
{
	tg_reset(user);
	return tg_sum(tg_mul(in[0], in[0]));
}

/* the same on f's second call, after the check's analytic pass */
typedef struct {
	tg_ctx *ctx;
	int calls;
} later;

static tg_tensor *f_resets_later(tg_tensor *const *in, void *user)
{
	later *l = user;
	if (++l->calls == 2)
		tg_reset(l->ctx);
	return tg_sum(tg_mul(in[0], in[0]));
}

static void a_reset_inside_f_fails_the_call_and_leaves_a_working_tape(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *w = tg_param(tg_ones(ctx, TG_F64, SHAPE(2)));
	for (int kind = 0; kind < 5; kind++) {
		tg_tensor *x = tg_ones(ctx, TG_F64, SHAPE(2)), *r[1] = { w }, *out = w;
		tg_tensor *before = tg_sum(tg_mul(w, w)); /* on the tape the call finds */
		assert_non_null(before);
		const tg_node *found = ctx->tape;
		assert_non_null(found);
		int rc;
		const char *who;
		tg_gradcheck_result res;
		switch (kind) {
		case 0: rc = tg_vjp(ctx, f_resets, ctx, 1, &x, NULL, &out, r), who = "tg_vjp"; break;
		case 1: rc = tg_jvp(ctx, f_resets, ctx, 1, &x, &x, &out, r), who = "tg_jvp"; break;
		case 2: rc = tg_hessian(ctx, f_resets, ctx, 1, &x, r), who = "tg_hessian"; break;
		case 3: rc = tg_gradcheck(ctx, f_resets, ctx, 1, &w, NULL, &res), who = "tg_gradcheck"; break;
		default:
			rc = tg_gradcheck(ctx, f_resets_later, &(later){ ctx, 0 }, 1, &x, NULL, &res);
			who = "tg_gradcheck";
		}
		assert_int_equal(rc, -1);
		/* the step copies of the inputs are stale when f uses them: that
		 * op names the reset; a parameter input lives on, and the call does */
		char want[96];
		snprintf(want, sizeof want, "%s: f called tg_reset", who);
		assert_error(ctx, TG_ESTALE, kind == 3 ? want : "was freed by tg_reset");
		if (kind < 3)
			assert_null(r[0]);
		/* the old step's nodes are not put back (their memory is the new step's) */
		assert_ptr_not_equal(ctx->tape, found);
		tg_clear_error(ctx);
		/* the step f began: its backward walks its own tape alone */
		tg_tensor *loss = tg_sum(tg_mul(w, tg_scalar(ctx, TG_F64, 3)));
		tg_zero_grads(ctx);
		assert_int_equal(tg_backward(loss), 0);
		assert_near(tg_get(tg_grad(w), 1), 3, 0);
		assert_true(tg_requires_grad(w));
		tg_reset(ctx);
	}
	tg_ctx_free(ctx);
}

static tg_tensor *f_sum_cubed(tg_tensor *const *in, void *user)
{
	(void)user;
	return tg_sum(tg_pow(in[0], 3));
}

static void a_hessian_too_wide_for_a_tensor_is_a_shape_error(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_ones(ctx, TG_F64, SHAPE(1, 2, 1, 2, 1));
	tg_tensor *h = NULL;
	assert_int_equal(tg_hessian(ctx, f_sum_cubed, NULL, 1, &x, &h), -1);
	assert_error(ctx, TG_ESHAPE, "tg_hessian: the Hessian block of (1,2,1,2,1) by "
				     "(1,2,1,2,1) would have 10 axes");
	assert_null(h);
	tg_clear_error(ctx);
	/* a (2,2) input is fine: H = diag(6 x) laid out (2,2,2,2) */
	tg_tensor *y = f64(ctx, SHAPE(2, 2), (double[]){ 1, -2, 0.5, 3 });
	assert_int_equal(tg_hessian(ctx, f_sum_cubed, NULL, 1, &y, &h), 0);
	assert_int_equal(tg_ndim(h), 4);
	for (size_t k = 0; k < 4; k++)
		for (size_t l = 0; l < 4; l++)
			assert_near(tg_get(h, k * 4 + l), k == l ? 6 * tg_get(y, k) : 0, 1e-14);
	tg_ctx_free(ctx);
}

/* More inputs than tg_hessian takes: TG_EARG, and every one of the nin * nin
 * results NULL, as after any failure. */
static void a_hessian_of_too_many_inputs_leaves_its_results_null(void **state)
{
	(void)state;
	enum { NIN = 4097 };
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_ones(ctx, TG_F64, SHAPE(1));
	tg_tensor **in = malloc(NIN * sizeof *in);
	tg_tensor **h = malloc((size_t)NIN * NIN * sizeof *h);
	assert_non_null(in);
	assert_non_null(h);
	for (size_t k = 0; k < NIN; k++)
		in[k] = x;
	for (size_t k = 0; k < (size_t)NIN * NIN; k++)
		h[k] = x;
	assert_int_equal(tg_hessian(ctx, f_sum_cubed, NULL, NIN, in, h), -1);
	assert_error(ctx, TG_EARG, "tg_hessian: 4097 inputs; at most 4096");
	for (size_t k = 0; k < (size_t)NIN * NIN; k++)
		if (h[k])
			fail_msg("result %zu is not NULL", k);
	free(in);
	free(h);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(grad_of_leaves_every_grad_untouched),
		cmocka_unit_test(grad_of_with_create_graph_differentiates_again),
		cmocka_unit_test(grad_of_finds_the_first_reader_of_each_input_in_its_step),
		cmocka_unit_test(grad_of_an_unused_input_is_an_error_unless_allowed),
		cmocka_unit_test(an_input_a_rule_skipped_is_named_with_the_rule),
		cmocka_unit_test(grad_of_inside_a_plain_walk_says_the_walk_turned_grad_mode_off),
		cmocka_unit_test(grad_of_an_output_without_history_says_so),
		cmocka_unit_test(grad_of_through_a_zero_derivative_is_zeros),
		cmocka_unit_test(a_zero_derivative_is_found_from_the_first_reader_in_the_step),
		cmocka_unit_test(grad_of_several_outputs_adds_their_vjps),
		cmocka_unit_test(grad_of_many_inputs_matches_asking_one_at_a_time),
		cmocka_unit_test(grad_of_rejects_bad_arguments),
		cmocka_unit_test(grad_of_walks_only_the_paths_to_its_inputs),
		cmocka_unit_test(jacobian_matches_finite_differences_both_ways),
		cmocka_unit_test(jvp_and_vjp_match_finite_differences),
		cmocka_unit_test(hvp_is_h_times_v_and_not_g_plus_hv),
		cmocka_unit_test(hessian_of_the_sigmoid_neuron_matches_finite_differences),
		cmocka_unit_test(jacobian_and_hessian_passes_give_their_memory_back),
		cmocka_unit_test(a_rule_that_records_ops_works_in_every_pass),
		cmocka_unit_test(a_rule_computed_in_a_loop_is_refused_where_it_would_read_zeros),
		cmocka_unit_test(passes_through_a_custom_op_keep_their_memory),
		cmocka_unit_test(functional_calls_leave_inputs_and_tape_as_they_were),
		cmocka_unit_test(tensors_f_keeps_come_out_without_history),
		cmocka_unit_test(functional_calls_reject_bad_arguments),
		cmocka_unit_test(a_reset_inside_f_fails_the_call_and_leaves_a_working_tape),
		cmocka_unit_test(a_hessian_too_wide_for_a_tensor_is_a_shape_error),
		cmocka_unit_test(a_hessian_of_too_many_inputs_leaves_its_results_null),
		cmocka_unit_test(a_result_may_be_written_over_an_argument),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
