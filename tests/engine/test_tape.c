/*
 * test_tape.c - the tape and its reverse walk: accumulation, zeroing, grad
 * mode, repeated backward, version counters, create_graph.
 */
#include "test_util.h"
#include "internal.h" /* tg_tensor's lazy_fill */

/* f = (x + y) * z at x = -2, y = 5, z = -4 */
typedef struct {
	tg_ctx *ctx;
	tg_tensor *x, *y, *z, *q, *f;
} fxyz;

static fxyz make_fxyz(void)
{
	fxyz g;
	g.ctx = tg_ctx_new(1);
	g.x = tg_param(tg_scalar(g.ctx, TG_F64, -2));
	g.y = tg_param(tg_scalar(g.ctx, TG_F64, 5));
	g.z = tg_param(tg_scalar(g.ctx, TG_F64, -4));
	g.q = tg_add(g.x, g.y);
	g.f = tg_mul(g.q, g.z);
	return g;
}

static void leaf_gradients_accumulate_until_zeroed(void **state)
{
	(void)state;
	fxyz g = make_fxyz();
	assert_int_equal(tg_backward(g.f), 0);
	assert_near(tg_item(tg_grad(g.x)), -4, 0);
	assert_int_equal(tg_backward(g.f), 0); /* twice over one tape */
	assert_near(tg_item(tg_grad(g.x)), -8, 0);
	assert_near(tg_item(tg_grad(g.z)), 6, 0);
	tg_zero_grad(g.x);
	assert_near(tg_item(tg_grad(g.x)), 0, 0);
	assert_near(tg_item(tg_grad(g.z)), 6, 0);
	tg_zero_grads(g.ctx);
	assert_near(tg_item(tg_grad(g.z)), 0, 0);
	assert_ctx_ok(g.ctx);
	tg_ctx_free(g.ctx);
}

static void intermediate_gradients_are_fresh_on_every_backward(void **state)
{
	(void)state;
	fxyz g = make_fxyz();
	tg_backward(g.f);
	tg_backward(g.f);
	assert_near(tg_item(tg_grad(g.q)), -4, 0); /* not -8 */
	assert_near(tg_item(tg_grad(g.f)), 1, 0);
	assert_ctx_ok(g.ctx);
	tg_ctx_free(g.ctx);
}

static void parameter_gradients_survive_reset_and_steps_reuse_them(void **state)
{
	(void)state;
	fxyz g = make_fxyz();
	tg_backward(g.f);
	tg_reset(g.ctx);
	assert_near(tg_item(tg_grad(g.y)), -4, 0);
	tg_zero_grads(g.ctx);
	tg_tensor *f = tg_mul(tg_mul(g.x, g.y), g.z); /* d/dy = x z = 8 */
	tg_backward(f);
	assert_near(tg_item(tg_grad(g.y)), 8, 0);
	assert_ctx_ok(g.ctx);
	tg_ctx_free(g.ctx);
}

static void grad_mode_off_records_nothing(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_param(tg_scalar(ctx, TG_F64, 3));
	assert_true(tg_set_grad_enabled(ctx, false));
	tg_tensor *y = tg_mul(w, w);
	assert_false(tg_grad_enabled(ctx));
	assert_null(tg_producer(y));
	assert_false(tg_requires_grad(y));
	assert_near(tg_item(y), 9, 0);
	assert_int_equal(tg_backward(y), -1);
	assert_error(ctx, TG_EARG, "grad mode is off (tg_set_grad_enabled)");
	tg_clear_error(ctx);
	tg_set_grad_enabled(ctx, true);
	/* with grad mode on, the same y is a constant, and the error names
	 * grad mode as one way it came to be one */
	assert_int_equal(tg_backward(y), -1);
	assert_error(ctx, TG_EARG, "does not depend on any tensor that requires a gradient");
	assert_non_null(strstr(tg_error(ctx), "made with grad mode off"));
	tg_clear_error(ctx);
	y = tg_mul(w, w);
	assert_non_null(tg_producer(y));
	assert_string_equal(tg_node_op(tg_producer(y))->name, "mul");
	tg_ctx_free(ctx);
}

static void step_leaves_get_gradients_when_asked(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_set_requires_grad(tg_scalar(ctx, TG_F64, 3), true);
	tg_tensor *c = tg_scalar(ctx, TG_F64, 2);
	tg_backward(tg_mul(x, c));
	assert_near(tg_item(tg_grad(x)), 2, 0);
	assert_null(tg_grad(c));
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void a_parameter_changed_between_forward_and_backward_is_an_error(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_set_name(tg_param(tg_scalar(ctx, TG_F64, 3)), "w");
	tg_tensor *x = tg_param(tg_scalar(ctx, TG_F64, 2));
	tg_tensor *y = tg_mul(w, x);
	double *d = tg_data_mut(w); /* an optimizer step in the wrong place */
	d[0] = 4;
	assert_int_equal(tg_backward(y), -1);
	assert_error(ctx, TG_EVERSION, "input 0 () w of mul was modified in place");
	tg_ctx_free(ctx);
}

/* Rules that read only shapes (add's, sum's, reshape's, ...) let their
 * tensors change in place before the backward, as PyTorch's unsaved ones;
 * a rule that reads a changed value (exp's reads its output) refuses. */
static void values_no_rule_reads_may_change_in_place(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 3), (double[]){ 1, 2, 3, 4, 5, 6 }));
	tg_tensor *x = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 7, 8, 9 }));
	tg_tensor *a = tg_add(w, x);
	tg_tensor *b = tg_reshape(tg_transpose(a), SHAPE(6));
	tg_tensor *c = tg_sub(tg_mul_scalar(b, 2), tg_slice(b, 0, 0, 6));
	tg_tensor *s = tg_sum(tg_add_scalar(tg_neg(c), 1));
	tg_tensor *changed[] = { w, x, a, b, c };
	for (size_t i = 0; i < sizeof changed / sizeof *changed; i++)
		((double *)tg_data_mut(changed[i]))[0] = -100;
	assert_int_equal(tg_backward(s), 0);
	for (int i = 0; i < 6; i++)
		assert_near(tg_get(tg_grad(w), (size_t)i), -1, 0);
	for (int i = 0; i < 3; i++)
		assert_near(tg_get(tg_grad(x), (size_t)i), -2, 0);

	tg_tensor *e = tg_exp(x);
	tg_tensor *t = tg_sum(e);
	((double *)tg_data_mut(e))[1] = 0;
	assert_int_equal(tg_backward(t), -1);
	assert_error(ctx, TG_EVERSION, "the output of exp was modified in place");
	tg_ctx_free(ctx);
}

static void backward_of_a_non_scalar_needs_an_upstream_gradient(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){ 1, 2 }));
	tg_tensor *y = tg_mul(w, w);
	assert_int_equal(tg_backward(y), -1);
	assert_error(ctx, TG_ESHAPE, "the output has shape (2,); a non-scalar output needs");
	tg_clear_error(ctx);
	assert_int_equal(tg_backward_ex(y, tg_ones(ctx, TG_F64, SHAPE(3)), 0), -1);
	assert_error(ctx, TG_ESHAPE, "output (2,) and upstream gradient (3,) differ");
	tg_clear_error(ctx);
	tg_tensor *dy = tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){ 10, 100 });
	assert_int_equal(tg_backward_ex(y, dy, 0), 0);
	assert_near(tg_get(tg_grad(w), 0), 20, 0);  /* 2 w dy */
	assert_near(tg_get(tg_grad(w), 1), 400, 0);
	tg_ctx_free(ctx);
}

static void create_graph_makes_the_gradient_differentiable(void **state)
{
	(void)state;
	/* f = x^3: f' = 3x^2 = 12, f'' = 6x = 12 at x = 2 */
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_param(tg_scalar(ctx, TG_F64, 2));
	tg_tensor *f = tg_mul(tg_mul(x, x), x);
	assert_int_equal(tg_backward_ex(f, NULL, TG_CREATE_GRAPH), 0);
	tg_tensor *g = tg_grad(x);
	assert_near(tg_item(g), 12, 1e-12);
	assert_non_null(tg_producer(g));
	tg_zero_grad(x);
	assert_int_equal(tg_backward(g), 0);
	assert_near(tg_item(tg_grad(x)), 12, 1e-12);
	assert_ctx_ok(ctx);
	/* after reset the parameter's graph gradient is a ctx buffer, not dangling */
	tg_reset(ctx);
	tg_zero_grad(x);
	tg_backward(tg_mul(x, x));
	assert_near(tg_item(tg_grad(x)), 4, 1e-12);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* A plain backward that adds to a gradient with history (from a
 * TG_CREATE_GRAPH backward) keeps that history, its own part a constant (as
 * PyTorch): a derivative through tg_grad then still sees the first part. */
static void a_plain_backward_keeps_the_history_of_a_create_graph_gradient(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *p = tg_param(tg_scalar(ctx, TG_F64, 2));
	tg_tensor *x = tg_set_requires_grad(tg_scalar(ctx, TG_F64, 2), true);
	tg_tensor *leaf[] = { p, x };
	for (int k = 0; k < 2; k++) {
		tg_tensor *t = leaf[k];
		tg_tensor *y = tg_pow(t, 3);
		assert_int_equal(tg_backward_ex(y, NULL, TG_CREATE_GRAPH), 0); /* 3 t^2 = 12 */
		assert_int_equal(tg_backward(y), 0);                          /* + 12 */
		tg_tensor *g = tg_grad(t);
		assert_near(tg_item(g), 24, 1e-12);
		assert_non_null(tg_producer(g));
		/* d (grad + t) / dt = 6 t + 1: the plain part is a constant */
		tg_tensor *l = tg_add(g, t), *d;
		assert_int_equal(tg_grad_of(1, &l, NULL, 1, &t, &d, 0), 0);
		assert_near(tg_item(d), 13, 1e-12);
		assert_int_equal(tg_backward(l), 0);
		assert_near(tg_item(tg_grad(t)), 24 + 13, 1e-12);
		assert_ctx_ok(ctx);
	}
	tg_reset(ctx);
	assert_near(tg_item(tg_grad(p)), 37, 1e-12);
	assert_null(tg_producer(tg_grad(p)));
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* tg_zero_grad after a TG_CREATE_GRAPH backward, before any buffer was
 * made: tg_grad reads zeros, as after a plain backward, for a parameter
 * and for a step leaf; the next backward's gradient is its own. */
static void zeroing_a_create_graph_gradient_reads_zeros(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double v[] = { 0.5, -1.5 };
	tg_tensor *p = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2), v));
	tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, TG_F64, SHAPE(2), v), true);
	tg_tensor *leaf[] = { p, x };
	for (int k = 0; k < 2; k++) {
		tg_tensor *t = leaf[k];
		assert_int_equal(tg_backward_ex(tg_sum(tg_mul(tg_mul(t, t), t)), NULL,
						TG_CREATE_GRAPH), 0);
		tg_zero_grad(t);
		tg_tensor *g = tg_grad(t);
		assert_non_null(g);
		assert_near(tg_get(g, 0), 0, 0);
		assert_near(tg_get(g, 1), 0, 0);
		assert_int_equal(tg_backward(tg_sum(tg_mul(t, t))), 0);
		assert_near(tg_get(tg_grad(t), 0), 2 * v[0], 0);
		assert_near(tg_get(tg_grad(t), 1), 2 * v[1], 0);
		assert_ctx_ok(ctx);
	}
	/* the parameter's zeros, then its gradient, outlive the step */
	tg_zero_grad(p);
	assert_near(tg_get(tg_grad(p), 1), 0, 0);
	tg_reset(ctx);
	assert_near(tg_get(tg_grad(p), 1), 0, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* Gradient accumulation over steps (micro-batches) where one step's loss
 * took a TG_CREATE_GRAPH backward: that step's gradient has history and
 * lives in the step, but its values outlive the reset like any other's. */
static void a_create_graph_gradient_keeps_accumulating_over_resets(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_param(tg_scalar(ctx, TG_F64, 2));
	tg_tensor *w = tg_param(tg_scalar(ctx, TG_F64, 5)); /* no buffer before */
	tg_backward(tg_mul(x, x));                            /* dx = 4 */
	tg_reset(ctx);
	assert_int_equal(tg_backward_ex(tg_mul(tg_mul(x, x), tg_mul(x, w)), NULL,
					TG_CREATE_GRAPH), 0);   /* dx = 3 x^2 w = 60, dw = x^3 = 8 */
	assert_near(tg_item(tg_grad(x)), 64, 1e-12);
	assert_non_null(tg_producer(tg_grad(x)));
	tg_reset(ctx);
	assert_near(tg_item(tg_grad(x)), 64, 1e-12);
	assert_near(tg_item(tg_grad(w)), 8, 1e-12);
	assert_null(tg_producer(tg_grad(x)));
	tg_backward(tg_mul(x, w));                            /* dx = 5, dw = 2 */
	assert_near(tg_item(tg_grad(x)), 69, 1e-12);
	assert_near(tg_item(tg_grad(w)), 10, 1e-12);
	tg_reset(ctx);
	tg_zero_grads(ctx);
	assert_near(tg_item(tg_grad(x)), 0, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void the_gradient_of_an_unused_parameter_stays_null(void **state)
{
	(void)state;
	fxyz g = make_fxyz();
	tg_tensor *unused = tg_param(tg_scalar(g.ctx, TG_F64, 1));
	tg_backward(g.f);
	assert_null(tg_grad(unused));
	tg_ctx_free(g.ctx);
}

static void twice_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, tg_mul_scalar(dout, 2));
}

static void recording_an_output_already_used_is_refused(void **state)
{
	(void)state;
	/* recorded after its consumer, the node would never be reached */
	static const tg_op twice = { .name = "twice", .backward = twice_backward };
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *p = tg_param(tg_scalar(ctx, TG_F64, 3));
	tg_set_grad_enabled(ctx, false);
	tg_tensor *a = tg_mul_scalar(p, 2);
	tg_set_grad_enabled(ctx, true);
	tg_tensor *b = tg_mul(a, p);
	assert_non_null(b);
	assert_null(tg_record(&twice, a, 1, &p, NULL, 0));
	assert_error(ctx, TG_EARG, "tg_record: twice: the output was already used as an input");
	tg_clear_error(ctx);
	/* its own input: the walk would hand the node's gradient to itself */
	tg_tensor *c = tg_scalar(ctx, TG_F64, 6);
	tg_tensor *in[2] = { p, c };
	assert_null(tg_record(&twice, c, 2, in, NULL, 0));
	assert_error(ctx, TG_EARG, "tg_record: twice: the output is also input 1");
	tg_ctx_free(ctx);
}

/* ---- the grad_ready hook: each leaf once, when its gradient is final ----- */

typedef struct {
	int n;
	const tg_tensor *who[8];
	double grad[8]; /* the gradient's first element when reported */
} ready_log;

static void log_ready(tg_tensor *leaf, void *user)
{
	ready_log *l = user;
	if (l->n < 8) {
		l->who[l->n] = leaf;
		l->grad[l->n] = tg_get(tg_grad(leaf), 0);
	}
	l->n++;
}

/* f = (w * x) * v + w at w = 3, x = 2, v = 5: w is used twice, first by the
 * earliest node, so it is final only at the end of the walk; v and x are
 * final after their one use. df/dw = x v + 1 = 11, df/dv = w x = 6,
 * df/dx = w v = 15; u is a parameter no node uses: never reported. A loss
 * that is a leaf is reported by itself. */
static void grad_ready_reports_each_leaf_once_with_its_final_gradient(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_param(tg_scalar(ctx, TG_F64, 3));
	tg_tensor *x = tg_param(tg_scalar(ctx, TG_F64, 2));
	tg_tensor *v = tg_param(tg_scalar(ctx, TG_F64, 5));
	tg_tensor *u = tg_param(tg_scalar(ctx, TG_F64, 7));
	ready_log log = { 0 };
	tg_set_grad_ready(ctx, log_ready, &log);
	tg_tensor *f = tg_add(tg_mul(tg_mul(w, x), v), w);
	assert_int_equal(tg_backward(f), 0);
	assert_int_equal(log.n, 3);
	/* the walk: add (w is used again below), mul(., v) (v final), mul(w, x)
	 * (x and w final) */
	assert_ptr_equal(log.who[0], v);
	assert_near(log.grad[0], 6, 0);
	assert_true((log.who[1] == x && log.who[2] == w) || (log.who[1] == w && log.who[2] == x));
	for (int i = 1; i < 3; i++)
		assert_near(log.grad[i], log.who[i] == w ? 11 : 15, 0);
	for (int i = 0; i < 3; i++)
		assert_ptr_not_equal(log.who[i], u);
	/* a second step reports again; without the hook nothing is called */
	tg_zero_grads(ctx);
	tg_reset(ctx);
	log.n = 0;
	f = tg_mul(tg_mul(w, w), v); /* w twice in one node: once */
	assert_int_equal(tg_backward(f), 0);
	assert_int_equal(log.n, 2);
	assert_ptr_equal(log.who[0], v);
	assert_ptr_equal(log.who[1], w);
	assert_near(log.grad[1], 2 * 3 * 5, 0);
	/* s's node is passed without a gradient: NULL before s ever had one,
	 * zeros after */
	tg_tensor *s = tg_param(tg_scalar(ctx, TG_F64, 4));
	for (int k = 0; k < 2; k++) {
		tg_zero_grads(ctx);
		tg_reset(ctx);
		log.n = 0;
		assert_non_null(tg_mul(s, s));
		assert_int_equal(tg_backward(tg_mul(w, v)), 0);
		assert_int_equal(log.n, 3);
		assert_ptr_equal(log.who[2], s);
		if (k == 0) {
			assert_true(isnan(log.grad[2]));
			assert_int_equal(tg_backward(tg_mul(s, s)), 0);
		} else {
			assert_near(log.grad[2], 0, 0);
		}
	}
	/* a loss that is a leaf itself: reached at once, its gradient final */
	tg_zero_grads(ctx);
	tg_reset(ctx);
	log.n = 0;
	assert_int_equal(tg_backward(w), 0);
	assert_int_equal(log.n, 1);
	assert_ptr_equal(log.who[0], w);
	assert_near(log.grad[0], 1, 0);
	tg_set_grad_ready(ctx, NULL, NULL);
	tg_zero_grads(ctx);
	tg_reset(ctx);
	log.n = 0;
	assert_int_equal(tg_backward(tg_mul(w, v)), 0);
	assert_int_equal(log.n, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* Hooks that zero gradients: every leaf's (w still takes its first node's
 * share when v is reported), or the reported leaf's own, final one. */
static void zero_all(tg_tensor *leaf, void *user)
{
	(void)user;
	tg_zero_grads(tg_ctx_of(leaf));
}

static void zero_own(tg_tensor *leaf, void *user)
{
	*(double *)user += tg_get(tg_grad(leaf), 0);
	tg_zero_grad(leaf);
}

/* A hook may zero a leaf whose gradient is final (taken, as an optimizer
 * in the backward would, and cleared), not one the walk still adds to:
 * that is an error naming the leaf, and tg_zero_grads zeroes none. */
static void a_hook_zeroes_only_final_gradients(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_param(tg_scalar(ctx, TG_F64, 3));
	tg_tensor *x = tg_param(tg_scalar(ctx, TG_F64, 2));
	tg_tensor *v = tg_param(tg_scalar(ctx, TG_F64, 5));
	tg_set_grad_ready(ctx, zero_all, NULL);
	assert_int_equal(tg_backward(tg_add(tg_mul(tg_mul(w, x), v), w)), -1);
	assert_error(ctx, TG_EARG, "tg_zero_grads: leaf () still takes gradients from the "
				   "tg_backward under way");
	tg_clear_error(ctx);
	for (int i = 0; i < 3; i++)
		assert_null(tg_grad((tg_tensor *[]){ w, x, v }[i]));
	tg_reset(ctx);
	double taken = 0;
	tg_set_grad_ready(ctx, zero_own, &taken);
	assert_int_equal(tg_backward(tg_add(tg_mul(tg_mul(w, x), v), w)), 0);
	assert_near(taken, 11 + 15 + 6, 0);
	for (int i = 0; i < 3; i++) /* zeroed: a buffer that reads zeros */
		assert_near(tg_get(tg_grad((tg_tensor *[]){ w, x, v }[i]), 0), 0, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- a product's gradient written into the parameter's own buffer ------------- */

/* L = sum(tanh(x @ w) * c): the same gradient, to the bit, whether the
 * product writes it into w's buffer (tg_backward) or hands over a tensor
 * (tg_grad_of walks keep their own); the written one takes no step memory
 * for it, and a second backward without tg_zero_grad adds to it. */
static tg_tensor *product_loss(tg_tensor *x, tg_tensor *w, tg_tensor *c)
{
	return tg_sum(tg_mul(tg_tanh(tg_matmul(x, w)), c));
}

static void a_product_writes_a_leafs_first_gradient_into_its_buffer(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(7);
	tg_tensor *w = tg_param(tg_randn(ctx, TG_F64, SHAPE(40, 30), 0, 1));
	tg_tensor *x = tg_keep(tg_randn(ctx, TG_F64, SHAPE(20, 40), 0, 1));
	tg_tensor *c = tg_keep(tg_randn(ctx, TG_F64, SHAPE(20, 30), 0, 1));
	double want[1200], got[1200];
	tg_tensor *g = NULL;
	assert_int_equal(tg_grad_of(1, (tg_tensor *[]){ product_loss(x, w, c) }, NULL, 1,
				    (tg_tensor *[]){ w }, &g, 0), 0);
	memcpy(want, tg_data(g), sizeof want);
	tg_reset(ctx);
	size_t used[2]; /* the first step also makes w's buffer */
	for (int step = 0; step < 2; step++) {
		tg_zero_grad(w);
		tg_tensor *L = product_loss(x, w, c);
		size_t before = tg_arena_used(ctx);
		assert_int_equal(tg_backward(L), 0);
		used[step] = tg_arena_used(ctx) - before;
		memcpy(got, tg_data(tg_grad(w)), sizeof got);
		assert_memory_equal(got, want, sizeof want);
		tg_reset(ctx);
	}
	/* the same backward with w's gradient handed over as a tensor (a
	 * gradient already there, so none is offered) takes w's 9600 bytes
	 * more of the step */
	tg_tensor *L = product_loss(x, w, c);
	size_t before = tg_arena_used(ctx);
	assert_int_equal(tg_backward(L), 0);
	size_t handed = tg_arena_used(ctx) - before;
	if (handed < used[1] + 40 * 30 * sizeof(double))
		fail_msg("the backward took %zu bytes of the step, handing over %zu", used[1],
			 handed);
	tg_reset(ctx);
	/* accumulating: two backwards, no tg_zero_grad between */
	tg_zero_grad(w);
	assert_int_equal(tg_backward(product_loss(x, w, c)), 0);
	assert_int_equal(tg_backward(product_loss(x, w, c)), 0);
	const double *two = tg_data(tg_grad(w));
	for (int i = 0; i < 1200; i++)
		if (two[i] != 2 * want[i])
			fail_msg("element %d: %.17g after two backwards, want %.17g", i, two[i],
				 2 * want[i]);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* A forward pass that reads a leaf's gradient buffer (tg_grad(w), as a
 * gradient penalty or a hand-made optimizer step might) saves it for its
 * backward: the walk must not add into it, nor have a product write the
 * leaf's first gradient there, before the op that saved it has run. */
static void a_gradient_buffer_read_by_the_forward_pass_is_not_written_in_place(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(3);
	tg_tensor *w = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 2), (double[]){ 1, 2, 3, 4 }));
	tg_tensor *eye = tg_from_f64(ctx, TG_F64, SHAPE(2, 2), (double[]){ 1, 0, 0, 1 });
	assert_int_equal(tg_backward(tg_sum(tg_mul(w, w))), 0);
	tg_tensor *g = tg_grad(w); /* 2 w, w's buffer */
	/* the op that reads g is recorded first, so walked last: w's gradient
	 * from the later terms arrives while g is still to be read */
	for (int round = 0; round < 2; round++) {
		tg_tensor *a = tg_sum(tg_mul(g, w));
		tg_tensor *b = round ? tg_sum(tg_matmul(w, eye)) : tg_sum(tg_mul(w, w));
		assert_int_equal(tg_backward(tg_add(a, b)), 0);
		/* round 0: 2 w before + g + 2 w; round 1, after tg_zero_grad: g + 1 */
		for (int i = 0; i < 4; i++) {
			double wi = i + 1;
			assert_near(tg_get(tg_grad(w), i), round ? 2 * wi + 1 : 6 * wi, 0);
			assert_near(tg_get(g, i), 2 * wi, 0); /* the buffer kept its values */
		}
		tg_zero_grad(w);
	}
	/* the step's end moves the gradient into the buffer, as after a
	 * TG_CREATE_GRAPH backward, and later steps accumulate as usual */
	assert_int_equal(tg_backward(tg_sum(tg_mul(g, w))), 0);
	tg_reset(ctx);
	assert_int_equal(tg_backward(tg_sum(w)), 0);
	for (int i = 0; i < 4; i++)
		assert_near(tg_get(tg_grad(w), i), 2 * (i + 1) + 1, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* The same saved buffer after tg_zero_grad: tg_grad reads zeros without
 * clearing the buffer in place, which the recorded op still reads, so the
 * backward gives the same gradient whether or not tg_grad was asked first
 * (it had failed with TG_EVERSION when asked). */
static void tg_grad_after_zero_grad_leaves_a_saved_buffer_as_it_was(void **state)
{
	(void)state;
	for (int peek = 0; peek < 2; peek++) {
		tg_ctx *ctx = tg_ctx_new(3);
		tg_tensor *p = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, 2, 3 }));
		assert_int_equal(tg_backward(tg_sum(tg_mul(p, p))), 0);
		tg_tensor *g = tg_grad(p); /* 2 p, p's buffer */
		tg_tensor *u = tg_sum(tg_mul(g, p)); /* du/dp = g */
		tg_zero_grad(p);
		if (peek) {
			tg_tensor *z = tg_grad(p);
			assert_non_null(z);
			assert_ptr_not_equal(z, g);
			for (int i = 0; i < 3; i++)
				assert_true(tg_get(z, i) == 0);
		}
		for (int i = 0; i < 3; i++)
			assert_true(tg_get(g, i) == 2 * (i + 1));
		assert_int_equal(tg_backward(u), 0);
		for (int i = 0; i < 3; i++)
			assert_true(tg_get(tg_grad(p), i) == 2 * (i + 1));
		/* the step's end moves it into the buffer; the next step adds */
		tg_reset(ctx);
		assert_int_equal(tg_backward(tg_sum(p)), 0);
		for (int i = 0; i < 3; i++)
			assert_true(tg_get(tg_grad(p), i) == 2 * (i + 1) + 1);
		assert_ctx_ok(ctx);
		tg_ctx_free(ctx);
	}
}

/* f = sum(w @ w^T): both gradients go to w, the first written into its
 * buffer, the second added: df/dw = (J + J^T) w = 2 J w, J all ones, so
 * every element of column j is 2 * (sum of column j of w). */
/* ---- a sum's gradient written lazily (internal.h, tg_node_grad_expand) ------------ */

/* x, y (37,29) or (90,401), b (29) or (401): bodies whose sum or mean is the loss */
typedef tg_tensor *(*body_fn)(tg_tensor *x, tg_tensor *y, tg_tensor *b);

static tg_tensor *b_relu(tg_tensor *x, tg_tensor *y, tg_tensor *b) { (void)y, (void)b; return tg_relu(x); }
static tg_tensor *b_sigmul(tg_tensor *x, tg_tensor *y, tg_tensor *b) { (void)b; return tg_mul(tg_sigmoid(x), y); }
static tg_tensor *b_row(tg_tensor *x, tg_tensor *y, tg_tensor *b) { (void)y; return tg_mul(tg_tanh(x), b); }
static tg_tensor *b_bias(tg_tensor *x, tg_tensor *y, tg_tensor *b) { (void)y; return tg_add(x, b); }
static tg_tensor *b_bias_first(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)y;
	return tg_add(b, tg_tanh(x)); /* the broadcast edge takes it first */
}
static tg_tensor *b_sqrt(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)y, (void)b;
	return tg_sqrt(tg_add_scalar(tg_mul(x, x), 1.0));
}
static tg_tensor *b_two(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)b;
	return tg_add(tg_elu(x, 1.0), tg_leaky_relu(y, 0.01));
}
static tg_tensor *b_square(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)y, (void)b;
	tg_tensor *h = tg_softplus(x);
	return tg_mul(h, h);
}
static tg_tensor *b_reused(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)b;
	tg_tensor *h = tg_tanh(x);
	return tg_add(h, tg_mul(h, y)); /* h takes a second gradient after the lazy one */
}
static tg_tensor *b_sub(tg_tensor *x, tg_tensor *y, tg_tensor *b) { (void)b; return tg_sub(tg_exp(x), y); }
static tg_tensor *b_subs(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)b;
	return tg_sub(tg_tanh(x), tg_sigmoid(y)); /* the subtrahend lazily too */
}
static tg_tensor *b_sub_row(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)y;
	return tg_sub(tg_tanh(x), b); /* summed down to b: filled first */
}
static tg_tensor *b_row_sub(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)y;
	return tg_sub(b, tg_tanh(x));
}
static tg_tensor *b_scaled(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)b;
	return tg_add(tg_mul_scalar(tg_relu(x), 2.5), tg_neg(tg_softplus(y)));
}
static tg_tensor *b_div(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)b;
	return tg_div(tg_sigmoid(x), tg_add_scalar(tg_abs(y), 1.0)); /* both edges in one pass */
}
static tg_tensor *b_div_x(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)y, (void)b;
	return tg_div(tg_tanh(x), tg_add_scalar(tg_exp(x), 1.0));
}
static tg_tensor *b_div_row(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)y;
	return tg_div(tg_relu(x), tg_add_scalar(tg_abs(b), 1.0)); /* broadcast: the ops */
}
static tg_tensor *b_max(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)b;
	return tg_maximum(tg_tanh(x), y);
}
static tg_tensor *b_min_row(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)y;
	return tg_minimum(tg_sigmoid(x), b); /* b's share in the output's shape, summed down */
}
static tg_tensor *b_silu_sub(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)b;
	return tg_add(tg_silu(x), tg_sub(x, y)); /* the add hands it to an op not in the list */
}
static tg_tensor *b_log(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)y, (void)b;
	return tg_log(tg_add_scalar(tg_exp(x), 1.0));
}
static tg_tensor *b_math(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)b;
	tg_tensor *s = tg_add(tg_pow(x, 3.0), tg_expm1(y));
	s = tg_add(s, tg_add(tg_sin(x), tg_cos(y)));
	return tg_add(s, tg_add(tg_erf(x), tg_log1p(tg_abs(y))));
}
static tg_tensor *b_where(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)b;
	return tg_where(tg_relu(y), tg_tanh(x), tg_mul(y, y)); /* the mask has no gradient */
}
static tg_tensor *b_where_row(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)y;
	return tg_where(tg_relu(b), tg_sigmoid(x), b); /* a broadcast mask; b summed down */
}
static tg_tensor *b_clamp(tg_tensor *x, tg_tensor *y, tg_tensor *b)
{
	(void)b;
	return tg_clamp(tg_mul(x, y), -0.5, 0.5);
}

static const struct {
	const char *name;
	body_fn f;
	bool lazy; /* the body's output keeps a lazy gradient after the walk */
} bodies[] = {
	{ "relu(x)", b_relu, true },
	{ "sigmoid(x) y", b_sigmul, true },
	{ "tanh(x) b", b_row, true },
	{ "x + b", b_bias, false },
	{ "b + tanh(x)", b_bias_first, false },
	{ "sqrt(x x + 1)", b_sqrt, true },
	{ "elu(x) + leaky_relu(y)", b_two, true },
	{ "softplus(x)^2 as h h", b_square, true },
	{ "tanh(x) + tanh(x) y", b_reused, false },
	{ "exp(x) - y", b_sub, true },
	{ "tanh(x) - sigmoid(y)", b_subs, true },
	{ "tanh(x) - b", b_sub_row, false },
	{ "b - tanh(x)", b_row_sub, false },
	{ "2.5 relu(x) + -softplus(y)", b_scaled, true },
	{ "sigmoid(x) / (|y| + 1)", b_div, true },
	{ "tanh(x) / (exp(x) + 1)", b_div_x, true },
	{ "relu(x) / (|b| + 1)", b_div_row, true },
	{ "maximum(tanh(x), y)", b_max, true },
	{ "minimum(sigmoid(x), b)", b_min_row, true },
	{ "silu(x) + (x - y)", b_silu_sub, false },
	{ "log(exp(x) + 1)", b_log, true },
	{ "x^3 + expm1(y) + sin(x) + cos(y) + erf(x) + log1p(|y|)", b_math, true },
	{ "where(relu(y), tanh(x), y y)", b_where, true },
	{ "where(relu(b), sigmoid(x), b)", b_where_row, true },
	{ "clamp(x y, -0.5, 0.5)", b_clamp, true },
};

typedef struct {
	tg_ctx *ctx;
	tg_tensor *x, *y, *b, *out;
} lazy_run;

/* The loss of body i reduced by sum or mean, walked; or (reference) the
 * body walked from an upstream gradient of the same value made in full,
 * with nothing to mark it uniform, so that every rule reads all of it:
 * 1, or mean's 1 / n through the same mul_scalar. */
static lazy_run lazy_walk(size_t i, tg_dtype dt, bool mean, bool reference, bool big)
{
	lazy_run r;
	r.ctx = tg_ctx_new(3);
	/* big: (90,401) on two threads, so that the kernels and the fill split */
	const int64_t rows = big ? 90 : 37, cols = big ? 401 : 29;
	tg_set_threads(r.ctx, big ? 2 : 1);
	r.x = tg_param(tg_randn(r.ctx, dt, SHAPE(rows, cols), 0, 1));
	r.y = tg_param(tg_randn(r.ctx, dt, SHAPE(rows, cols), 0, 1));
	r.b = tg_param(tg_randn(r.ctx, dt, SHAPE(cols), 0, 1));
	r.out = bodies[i].f(r.x, r.y, r.b);
	if (reference) {
		tg_tensor *dy = tg_ones(r.ctx, dt, r.out->ndim, r.out->shape);
		if (mean)
			dy = tg_mul_scalar(dy, 1.0 / (double)r.out->numel);
		assert_false(tg_is_uniform(dy));
		assert_int_equal(tg_backward_ex(r.out, dy, 0), 0);
	} else {
		assert_int_equal(tg_backward(mean ? tg_mean(r.out) : tg_sum(r.out)), 0);
	}
	assert_ctx_ok(r.ctx);
	return r;
}

static void a_lazy_sum_gradient_gives_the_bits_of_one_made_in_full(void **state)
{
	(void)state;
	char what[160];
	for (size_t i = 0; i < LEN(bodies); i++)
		for (int k = 0; k < 8; k++) {
			tg_dtype dt = k % 2 ? TG_F32 : TG_F64;
			bool mean = k % 4 >= 2, big = k >= 4;
			lazy_run a = lazy_walk(i, dt, mean, false, big),
				 full = lazy_walk(i, dt, mean, true, big);
			/* the lazy path was taken where it can be, and not elsewhere */
			bool lazy = a.out->grad && a.out->grad->lazy_fill;
			if (lazy != bodies[i].lazy)
				fail_msg("%s: lazy gradient %d, expected %d", bodies[i].name, lazy,
					 bodies[i].lazy);
			assert_false(full.out->grad->lazy_fill);
			tg_tensor *leaves[][2] = { { a.x, full.x }, { a.y, full.y }, { a.b, full.b } };
			for (int l = 0; l < 3; l++) {
				tg_tensor *ga = tg_grad(leaves[l][0]), *gf = tg_grad(leaves[l][1]);
				assert_true((ga == NULL) == (gf == NULL));
				snprintf(what, sizeof what, "%s %s %s%s: grad of %c", bodies[i].name,
					 mean ? "mean" : "sum", dt == TG_F32 ? "f32" : "f64",
					 big ? " (90,401) 2 threads" : "", "xyb"[l]);
				if (ga)
					assert_tensor_bits(what, ga, gf);
			}
			/* tg_grad of the body's output fills it: one value throughout */
			tg_tensor *g = tg_grad(a.out);
			assert_false(g->lazy_fill);
			snprintf(what, sizeof what, "%s: tg_grad of the output", bodies[i].name);
			assert_tensor_bits(what, g, tg_grad(full.out));
			tg_ctx_free(a.ctx);
			tg_ctx_free(full.ctx);
		}
}

/* A uniform tensor (a sum's gradient expanded: here one made in full by a
 * recorded backward) on either side of a broadcast is read as its one
 * value, as a scalar would be: the other side keeps its own strides. */
static void a_uniform_gradient_in_a_broadcast_reads_as_its_one_value(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(3);
	tg_tensor *x = tg_param(tg_randn(ctx, TG_F64, SHAPE(5, 3), 0, 1));
	tg_tensor *h = tg_tanh(x);
	assert_int_equal(tg_backward_ex(tg_mul_scalar(tg_sum(h), 2.5), NULL, TG_CREATE_GRAPH), 0);
	tg_tensor *g = tg_grad(h);
	assert_true(tg_is_uniform(g)); /* the path under test is taken */
	tg_tensor *row = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, -2, 4 });
	tg_tensor *col = tg_from_f64(ctx, TG_F64, SHAPE(5, 1), (double[]){ 3, 5, 7, 11, 13 });
	tg_tensor *gr = tg_mul(g, row), *cg = tg_sub(col, g), *big = tg_div(g, tg_reshape(x, 3, (int64_t[]){ 5, 1, 3 }));
	assert_ctx_ok(ctx);
	const double rv[3] = { 1, -2, 4 }, cv[5] = { 3, 5, 7, 11, 13 };
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 3; j++) {
			assert_true(tg_get(gr, (size_t)(i * 3 + j)) == 2.5 * rv[j]);
			assert_true(tg_get(cg, (size_t)(i * 3 + j)) == cv[i] - 2.5);
		}
	/* (5,3) against (5,1,3): (5,5,3), g's one value over every element */
	assert_int_equal(tg_numel(big), 75);
	for (int i = 0; i < 5; i++)
		for (int k = 0; k < 5; k++)
			for (int j = 0; j < 3; j++)
				assert_true(tg_get(big, (size_t)((i * 5 + k) * 3 + j)) ==
					    2.5 / tg_get(x, (size_t)(i * 3 + j)));
	tg_ctx_free(ctx);
}

static void a_leaf_used_twice_by_one_product_gets_both_gradients(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(3);
	tg_tensor *w = tg_param(tg_randn(ctx, TG_F64, SHAPE(5, 3), 0, 1));
	tg_zero_grad(w);
	assert_int_equal(tg_backward(tg_sum(tg_matmul_t(w, false, w, true))), 0);
	const double *wv = tg_data(w), *gv = tg_data(tg_grad(w));
	for (int j = 0; j < 3; j++) {
		double col = 0;
		for (int i = 0; i < 5; i++)
			col += wv[i * 3 + j];
		for (int i = 0; i < 5; i++)
			assert_near(gv[i * 3 + j], 2 * col, 1e-12);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* What tg_node_grad_buffer offers a custom rule: the buffer for a leaf's
 * first gradient of a plain backward, nothing otherwise. */
static int offered[4], n_offered;

static void probe_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *buf = tg_node_grad_buffer(n, 0);
	if (n_offered < 4)
		offered[n_offered++] = buf != NULL;
	if (buf) { /* d(2x)/dx = 2, written into the buffer */
		const double *d = tg_data(dout);
		double *b = tg_data_mut(buf);
		for (size_t i = 0; i < tg_numel(buf); i++)
			b[i] = 2 * d[i];
		tg_node_grad(n, 0, buf);
	} else {
		tg_node_grad(n, 0, tg_mul_scalar(dout, 2));
	}
}

static const tg_op probe_op = { .name = "probe", .backward = probe_backward };

static tg_tensor *probe(tg_tensor *x)
{
	tg_ctx *ctx = tg_ctx_of(x);
	bool was = tg_grad_enabled(ctx);
	tg_set_grad_enabled(ctx, false);
	tg_tensor *y = tg_mul_scalar(x, 2);
	tg_set_grad_enabled(ctx, was);
	return tg_record(&probe_op, y, 1, &x, NULL, 0);
}

static void the_buffer_is_offered_only_for_a_first_leaf_gradient(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *p = tg_param(tg_full(ctx, TG_F64, SHAPE(3), 1.5));
	n_offered = 0;
	tg_zero_grad(p);
	/* a leaf's first gradient: offered; the second use of p: not */
	assert_int_equal(tg_backward(tg_sum(tg_mul(probe(p), probe(p)))), 0);
	/* the input of the probe is an intermediate, p * 1: not offered */
	tg_zero_grad(p);
	assert_int_equal(tg_backward(tg_sum(probe(tg_mul_scalar(p, 1)))), 0);
	/* TG_CREATE_GRAPH: not offered */
	tg_zero_grad(p);
	assert_int_equal(tg_backward_ex(tg_sum(probe(p)), NULL, TG_CREATE_GRAPH), 0);
	assert_int_equal(n_offered, 4);
	assert_int_equal(offered[0] + offered[1], 1);
	assert_int_equal(offered[2], 0);
	assert_int_equal(offered[3], 0);
	/* the last backward's gradient, d/dp sum(2p) = 2, came the usual way */
	assert_near(tg_get(tg_grad(p), 0), 2, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void ready_once(tg_tensor *leaf, void *user)
{
	log_ready(leaf, user);
	tg_set_grad_ready(tg_ctx_of(leaf), NULL, NULL);
}

/* A hook that takes itself off is called no more, in this walk or later
 * ones; put back, it reports every leaf again. */
static void a_hook_may_take_itself_off_during_the_walk(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_param(tg_scalar(ctx, TG_F64, 3));
	tg_tensor *v = tg_param(tg_scalar(ctx, TG_F64, 5));
	ready_log log = { 0 };
	tg_set_grad_ready(ctx, ready_once, &log);
	assert_int_equal(tg_backward(tg_mul(tg_exp(tg_mul(w, v)), tg_add(w, v))), 0);
	assert_int_equal(log.n, 1);
	assert_int_equal(tg_backward(tg_mul(w, v)), 0);
	assert_int_equal(log.n, 1);
	tg_set_grad_ready(ctx, log_ready, &log);
	log.n = 0;
	assert_int_equal(tg_backward(tg_mul(tg_exp(tg_mul(w, v)), tg_add(w, v))), 0);
	assert_int_equal(log.n, 2);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- walks started inside a walk -------------------------------------------- */

static tg_tensor *inner_p;
static int inner_kind; /* 0: tg_grad_of, 1: tg_backward */

/* cube's rule, after differentiating p^2 on the side */
static void nested_backward(tg_node *n, tg_tensor *dout)
{
	tg_ctx *ctx = tg_ctx_of(dout);
	tg_tensor *x = tg_node_input(n, 0), *g;
	bool was = tg_set_grad_enabled(ctx, true);
	tg_tensor *q = tg_mul(inner_p, inner_p);
	if (inner_kind == 0)
		tg_grad_of(1, &q, NULL, 1, &inner_p, &g, 0);
	else
		tg_backward(q);
	tg_set_grad_enabled(ctx, was);
	tg_node_grad(n, 0, tg_mul(dout, tg_mul_scalar(tg_mul(x, x), 3)));
}

/* tg_grad_of inside tg_backward's walk works (the walks keep their
 * gradients apart); tg_grad_of inside tg_grad_of's, or tg_backward inside
 * either, would mix them up and is refused. y = e^b a^3 + b a at a = 2,
 * b = 3: dy/da = 12 e^3 + 3, dy/db = 8 e^3 + 2. */
static void a_walk_inside_a_walk_is_refused_where_they_would_mix(void **state)
{
	(void)state;
	static const tg_op nested = { .name = "nested", .backward = nested_backward };
	tg_ctx *ctx = tg_ctx_new(1);
	inner_p = tg_param(tg_scalar(ctx, TG_F64, 7));
	tg_tensor *a = tg_param(tg_scalar(ctx, TG_F64, 2));
	tg_tensor *b = tg_param(tg_scalar(ctx, TG_F64, 3));
	for (inner_kind = 0; inner_kind < 2; inner_kind++) {
		tg_set_grad_enabled(ctx, false);
		tg_tensor *c = tg_mul(tg_mul(a, a), a);
		tg_set_grad_enabled(ctx, true);
		c = tg_record(&nested, c, 1, &a, NULL, 0);
		tg_tensor *y = tg_add(tg_mul(tg_exp(b), c), tg_mul(b, a));
		tg_tensor *g[2], *in[2] = { a, b };
		assert_int_equal(tg_grad_of(1, &y, NULL, 2, in, g, 0), -1);
		assert_error(ctx, TG_EARG, inner_kind == 0 ? "tg_grad_of: called during another "
							     "tg_grad_of's walk"
							   : "tg_backward: called during another walk");
		tg_clear_error(ctx);
		if (inner_kind == 0) {
			assert_null(tg_grad(a));
			assert_int_equal(tg_backward(y), 0);
			assert_near(tg_item(tg_grad(a)), 12 * exp(3) + 3, 1e-12);
			assert_near(tg_item(tg_grad(b)), 8 * exp(3) + 2, 1e-12);
			assert_null(tg_grad(inner_p));
		} else {
			assert_int_equal(tg_backward(y), -1);
			assert_error(ctx, TG_EARG, "tg_backward: called during another walk");
			tg_clear_error(ctx);
		}
		tg_zero_grads(ctx);
		tg_reset(ctx);
	}
	/* the walk state is back: a plain backward works */
	assert_int_equal(tg_backward(tg_mul(a, b)), 0);
	assert_near(tg_item(tg_grad(a)), 3, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- a hook or a backward rule that ends the step ----------------------- */

static void reset_ready(tg_tensor *leaf, void *user)
{
	tg_reset(tg_ctx_of(leaf));
	(*(int *)user)++;
}

static void reset_backward(tg_node *n, tg_tensor *dout)
{
	tg_reset(tg_ctx_of(dout));
	(void)n;
}

/* The nodes still to walk and the step's tensors are gone with the reset:
 * the walk stops there and says so, and the next step works. */
static void a_reset_during_the_walk_stops_it(void **state)
{
	(void)state;
	static const tg_op resets = { .name = "resets", .backward = reset_backward };
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_param(tg_scalar(ctx, TG_F64, 3));
	tg_tensor *v = tg_param(tg_scalar(ctx, TG_F64, 5));
	int called = 0;
	tg_set_grad_ready(ctx, reset_ready, &called);
	tg_tensor *f = tg_mul(tg_exp(tg_mul(w, v)), tg_add(w, v));
	assert_int_equal(tg_backward(f), -1);
	assert_int_equal(called, 1);
	assert_error(ctx, TG_ESTALE, "tg_backward: the grad_ready hook called tg_reset");
	tg_clear_error(ctx);
	tg_set_grad_ready(ctx, NULL, NULL);
	tg_zero_grads(ctx);
	tg_reset(ctx);

	/* a custom op's rule, under tg_backward and under tg_grad_of */
	for (int k = 0; k < 2; k++) {
		tg_set_grad_enabled(ctx, false);
		tg_tensor *a = tg_mul(w, w);
		tg_set_grad_enabled(ctx, true);
		a = tg_record(&resets, a, 1, &w, NULL, 0);
		f = tg_mul(tg_exp(tg_mul(a, v)), tg_add(v, v));
		tg_tensor *g[2], *in[2] = { w, v };
		if (k == 0) {
			assert_int_equal(tg_backward(f), -1);
			assert_error(ctx, TG_ESTALE, "tg_backward: the backward rule of resets "
						     "called tg_reset");
		} else {
			assert_int_equal(tg_grad_of(1, &f, NULL, 2, in, g, 0), -1);
			assert_null(g[0]);
			assert_error(ctx, TG_ESTALE, "tg_grad_of: the backward rule of resets "
						     "called tg_reset");
		}
		tg_clear_error(ctx);
		tg_zero_grads(ctx);
		tg_reset(ctx);
	}
	assert_int_equal(tg_backward(tg_mul(w, v)), 0);
	assert_near(tg_item(tg_grad(w)), 5, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* Rules that fail midway: input 0 takes its gradient (handed over, or
 * written into the buffer tg_node_grad_buffer offers, which the walk then
 * makes), and input 1 is handed one of the wrong shape. */
static void fail_after_handing(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, dout);
	tg_node_grad(n, 1, tg_zeros(tg_ctx_of(dout), TG_F64, SHAPE(7)));
}

static void fail_after_buffer(tg_node *n, tg_tensor *dout)
{
	tg_tensor *buf = tg_node_grad_buffer(n, 0);
	if (buf)
		memcpy(tg_data_mut(buf), tg_data(dout), tg_numel(buf) * sizeof(double));
	tg_node_grad(n, 1, tg_zeros(tg_ctx_of(dout), TG_F64, SHAPE(7)));
}

/* x (3,) and y (3,) through a rule of two inputs */
static tg_tensor *failing(const tg_op *op, tg_tensor *x, tg_tensor *y)
{
	tg_ctx *ctx = tg_ctx_of(x);
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *out = tg_add(x, y);
	tg_set_grad_enabled(ctx, was);
	tg_tensor *in[2] = { x, y };
	return tg_record(op, out, 2, in, NULL, 0);
}

/* After a failed backward tg_grad reads what it read before the call: NULL
 * for a leaf that had no gradient (not zeros from a buffer the walk made
 * for it), zeros for one tg_zero_grad cleared; and the next backward gives
 * the gradient one clean backward gives. */
static void a_failed_backward_leaves_each_gradient_as_it_was(void **state)
{
	(void)state;
	static const tg_op ops[2] = { { .name = "fail_after_handing",
					.backward = fail_after_handing },
				      { .name = "fail_after_buffer",
					.backward = fail_after_buffer } };
	for (int k = 0; k < 2; k++) {
		tg_ctx *ctx = tg_ctx_new(1);
		tg_tensor *p = tg_param(tg_ones(ctx, TG_F64, SHAPE(3)));
		tg_tensor *q = tg_param(tg_ones(ctx, TG_F64, SHAPE(3)));
		for (int zeroed = 0; zeroed < 2; zeroed++) {
			tg_tensor *s = tg_set_requires_grad(tg_ones(ctx, TG_F64, SHAPE(3)), true);
			if (zeroed) {
				assert_int_equal(tg_backward(tg_sum(tg_mul(p, s))), 0);
				tg_zero_grads(ctx);
				tg_zero_grad(s);
			}
			/* a ctx leaf and a step leaf take input 0's gradient */
			assert_int_equal(tg_backward(tg_sum(failing(&ops[k], p, q))), -1);
			assert_error(ctx, TG_ESHAPE, "gradient of input 1 is (7,)");
			tg_clear_error(ctx);
			assert_int_equal(tg_backward(tg_sum(failing(&ops[k], s, q))), -1);
			tg_clear_error(ctx);
			tg_tensor *leaf[2] = { p, s };
			for (int j = 0; j < 2; j++) {
				tg_tensor *g = tg_grad(leaf[j]);
				assert_ctx_ok(ctx);
				if (!zeroed) {
					assert_null(g);
					continue;
				}
				assert_non_null(g);
				for (int i = 0; i < 3; i++)
					assert_near(tg_get(g, i), 0, 0);
			}
			assert_null(tg_grad(q));
			/* and a clean backward: d/dp sum(3 p) = 3 */
			tg_zero_grads(ctx);
			assert_int_equal(tg_backward(tg_sum(tg_mul_scalar(p, 3))), 0);
			for (int i = 0; i < 3; i++)
				assert_near(tg_get(tg_grad(p), i), 3, 0);
			tg_zero_grads(ctx);
			tg_reset(ctx);
		}
		assert_ctx_ok(ctx);
		tg_ctx_free(ctx);
	}
}

/* A leaf turned off (tg_set_requires_grad false) between the forward pass
 * and the backward gets no gradient from it, as PyTorch's AccumulateGrad
 * skips a leaf that no longer requires grad, while the graph still carries
 * w's: a step leaf and a parameter, of 2 elements and of 600 (a first
 * gradient written straight into the buffer), plain and TG_CREATE_GRAPH. */
static void a_leaf_turned_off_after_the_forward_pass_gets_no_gradient(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const int64_t sizes[] = { 2, 600 };
	for (int k = 0; k < 4; k++) {
		int64_t n = sizes[k % 2];
		tg_tensor *x0 = tg_rand(ctx, TG_F64, SHAPE(n), -2, 2);
		tg_tensor *x = k < 2 ? tg_set_requires_grad(x0, true) : tg_param(x0);
		tg_tensor *w = tg_set_requires_grad(tg_rand(ctx, TG_F64, SHAPE(n), -2, 2), true);
		tg_tensor *y = tg_sum(tg_mul(x, w));
		assert_non_null(tg_set_requires_grad(x, false));
		assert_false(tg_requires_grad(x));
		assert_true(tg_requires_grad(y)); /* its history stays */
		assert_int_equal(tg_backward(y), 0);
		assert_null(tg_grad(x));
		for (int64_t i = 0; i < n; i++)
			assert_near(tg_get(tg_grad(w), (size_t)i), tg_get(x, (size_t)i), 0);
		/* d sum(x w w)/dw = 2 x w, with history through w alone */
		tg_zero_grad(w);
		y = tg_sum(tg_mul(tg_mul(tg_set_requires_grad(x, true), w), w));
		tg_set_requires_grad(x, false);
		assert_int_equal(tg_backward_ex(y, NULL, TG_CREATE_GRAPH), 0);
		assert_null(tg_grad(x));
		tg_tensor *g = tg_grad(w);
		assert_non_null(tg_producer(g));
		for (int64_t i = 0; i < n; i++)
			assert_near(tg_get(g, (size_t)i),
				    2 * tg_get(x, (size_t)i) * tg_get(w, (size_t)i), 1e-12);
		tg_tensor *l = tg_sum(g), *d;
		assert_int_equal(tg_grad_of(1, &l, NULL, 1, &w, &d, 0), 0);
		assert_near(tg_get(d, (size_t)n - 1), 2 * tg_get(x, (size_t)n - 1), 1e-12);
		assert_ctx_ok(ctx);
		tg_reset(ctx);
	}
	/* the only leaf of the graph turned off: the backward runs, and gives
	 * nothing (PyTorch's too) */
	tg_tensor *x = tg_set_requires_grad(tg_scalar(ctx, TG_F64, 3), true);
	tg_tensor *y = tg_mul(x, x);
	tg_set_requires_grad(x, false);
	assert_int_equal(tg_backward(y), 0);
	assert_null(tg_grad(x));
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* Turned off between two backwards over one graph, a leaf keeps the
 * gradient of the first; turned on again, it takes the third's (PyTorch's
 * x.grad: w, w, 2w). tg_grad_of refuses it as an input while it is off; the
 * grad_ready hook does not report it. A leaf turned on after the ops that
 * read it gets nothing from them: they recorded no path to it. */
static void turning_a_leaf_off_and_on_between_backwards(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double xv[] = { 1, 2 }, wv[] = { 3, 4 };
	tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, TG_F64, SHAPE(2), xv), true);
	tg_tensor *w = tg_set_requires_grad(tg_from_f64(ctx, TG_F64, SHAPE(2), wv), true);
	tg_set_name(x, "x");
	tg_tensor *y = tg_sum(tg_mul(x, w));
	assert_int_equal(tg_backward(y), 0);
	tg_set_requires_grad(x, false);
	ready_log log = { 0 };
	tg_set_grad_ready(ctx, log_ready, &log);
	assert_int_equal(tg_backward(y), 0);
	tg_set_grad_ready(ctx, NULL, NULL);
	assert_int_equal(log.n, 1);
	assert_ptr_equal(log.who[0], w);
	assert_near(log.grad[0], 2 * xv[0], 0);
	for (int i = 0; i < 2; i++) {
		assert_near(tg_get(tg_grad(x), (size_t)i), wv[i], 0);
		assert_near(tg_get(tg_grad(w), (size_t)i), 2 * xv[i], 0);
	}
	tg_tensor *g[2] = { NULL, NULL }, *in[2] = { w, x };
	assert_int_equal(tg_grad_of(1, &y, NULL, 2, in, g, TG_ALLOW_UNUSED), -1);
	assert_error(ctx, TG_EARG, "tg_grad_of: input 1 (2,) does not require a gradient");
	assert_null(g[0]);
	tg_clear_error(ctx);
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, in, g, 0), 0);
	assert_near(tg_get(g[0], 1), xv[1], 0);
	tg_set_requires_grad(x, true);
	assert_int_equal(tg_backward(y), 0);
	for (int i = 0; i < 2; i++) {
		assert_near(tg_get(tg_grad(x), (size_t)i), 2 * wv[i], 0);
		assert_near(tg_get(tg_grad(w), (size_t)i), 3 * xv[i], 0);
	}
	/* on after the forward pass */
	tg_tensor *a = tg_from_f64(ctx, TG_F64, SHAPE(2), xv);
	tg_zero_grad(w);
	y = tg_sum(tg_mul(a, w));
	tg_set_requires_grad(a, true);
	assert_int_equal(tg_backward(y), 0);
	assert_null(tg_grad(a));
	assert_near(tg_get(tg_grad(w), 1), xv[1], 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* Only a leaf's flag changes: an op's output cannot be turned off (PyTorch:
 * "you can only change requires_grad flags of leaf variables"), and turning
 * it on changes nothing; an index tensor cannot be turned on, and turning
 * it off changes nothing; NULL records nothing; a stale tensor is
 * TG_ESTALE. */
static void set_requires_grad_changes_only_a_leafs_flag(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_set_requires_grad(tg_ones(ctx, TG_F64, SHAPE(2)), true);
	tg_tensor *h = tg_set_name(tg_mul(x, x), "h");
	assert_null(tg_set_requires_grad(h, false));
	assert_error(ctx, TG_EARG,
		     "tg_set_requires_grad: f64 (2,) 'h' is the output of mul, not a leaf");
	assert_true(tg_requires_grad(h));
	tg_clear_error(ctx);
	assert_ptr_equal(tg_set_requires_grad(h, true), h);
	assert_non_null(tg_producer(h));
	assert_int_equal(tg_backward(tg_sum(h)), 0);
	assert_near(tg_get(tg_grad(x), 1), 2, 0);
	tg_tensor *idx = tg_labels(ctx, 2, (const int32_t[]){ 0, 1 });
	assert_ptr_equal(tg_set_requires_grad(idx, false), idx);
	assert_false(tg_requires_grad(idx));
	assert_ctx_ok(ctx);
	assert_null(tg_set_requires_grad(idx, true));
	assert_error(ctx, TG_EDTYPE, "tg_set_requires_grad: i32 (2,) is an index tensor");
	assert_false(tg_requires_grad(idx));
	tg_clear_error(ctx);
	assert_null(tg_set_requires_grad(NULL, true));
	assert_null(tg_set_requires_grad(NULL, false));
	assert_ctx_ok(ctx);
	tg_reset(ctx);
	assert_null(tg_set_requires_grad(x, false));
	assert_error(ctx, TG_ESTALE, "tg_set_requires_grad: tensor (2,) was freed by tg_reset");
	tg_clear_error(ctx);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(leaf_gradients_accumulate_until_zeroed),
		cmocka_unit_test(zeroing_a_create_graph_gradient_reads_zeros),
		cmocka_unit_test(intermediate_gradients_are_fresh_on_every_backward),
		cmocka_unit_test(parameter_gradients_survive_reset_and_steps_reuse_them),
		cmocka_unit_test(grad_mode_off_records_nothing),
		cmocka_unit_test(step_leaves_get_gradients_when_asked),
		cmocka_unit_test(values_no_rule_reads_may_change_in_place),
		cmocka_unit_test(a_parameter_changed_between_forward_and_backward_is_an_error),
		cmocka_unit_test(backward_of_a_non_scalar_needs_an_upstream_gradient),
		cmocka_unit_test(create_graph_makes_the_gradient_differentiable),
		cmocka_unit_test(a_plain_backward_keeps_the_history_of_a_create_graph_gradient),
		cmocka_unit_test(a_create_graph_gradient_keeps_accumulating_over_resets),
		cmocka_unit_test(the_gradient_of_an_unused_parameter_stays_null),
		cmocka_unit_test(recording_an_output_already_used_is_refused),
		cmocka_unit_test(grad_ready_reports_each_leaf_once_with_its_final_gradient),
		cmocka_unit_test(a_hook_may_take_itself_off_during_the_walk),
		cmocka_unit_test(a_hook_zeroes_only_final_gradients),
		cmocka_unit_test(a_walk_inside_a_walk_is_refused_where_they_would_mix),
		cmocka_unit_test(a_reset_during_the_walk_stops_it),
		cmocka_unit_test(a_product_writes_a_leafs_first_gradient_into_its_buffer),
		cmocka_unit_test(a_leaf_used_twice_by_one_product_gets_both_gradients),
		cmocka_unit_test(a_lazy_sum_gradient_gives_the_bits_of_one_made_in_full),
		cmocka_unit_test(a_uniform_gradient_in_a_broadcast_reads_as_its_one_value),
		cmocka_unit_test(a_gradient_buffer_read_by_the_forward_pass_is_not_written_in_place),
		cmocka_unit_test(tg_grad_after_zero_grad_leaves_a_saved_buffer_as_it_was),
		cmocka_unit_test(the_buffer_is_offered_only_for_a_first_leaf_gradient),
		cmocka_unit_test(a_failed_backward_leaves_each_gradient_as_it_was),
		cmocka_unit_test(a_leaf_turned_off_after_the_forward_pass_gets_no_gradient),
		cmocka_unit_test(turning_a_leaf_off_and_on_between_backwards),
		cmocka_unit_test(set_requires_grad_changes_only_a_leafs_flag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
