/*
 * test_tape.c - the tape and its reverse walk: accumulation, zeroing, grad
 * mode, repeated backward, version counters, create_graph.
 */
#include "test_util.h"

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
	/* with grad mode on, the same y is a constant */
	assert_int_equal(tg_backward(y), -1);
	assert_error(ctx, TG_EARG, "does not depend on any tensor that requires a gradient");
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
	/* after reset the parameter's graph gradient is gone, not dangling */
	tg_reset(ctx);
	tg_zero_grad(x);
	tg_backward(tg_mul(x, x));
	assert_near(tg_item(tg_grad(x)), 4, 1e-12);
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
 * df/dx = w v = 15; u is a parameter no node uses: never reported. */
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
	tg_set_grad_ready(ctx, NULL, NULL);
	tg_zero_grads(ctx);
	tg_reset(ctx);
	log.n = 0;
	assert_int_equal(tg_backward(tg_mul(w, v)), 0);
	assert_int_equal(log.n, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(leaf_gradients_accumulate_until_zeroed),
		cmocka_unit_test(intermediate_gradients_are_fresh_on_every_backward),
		cmocka_unit_test(parameter_gradients_survive_reset_and_steps_reuse_them),
		cmocka_unit_test(grad_mode_off_records_nothing),
		cmocka_unit_test(step_leaves_get_gradients_when_asked),
		cmocka_unit_test(a_parameter_changed_between_forward_and_backward_is_an_error),
		cmocka_unit_test(backward_of_a_non_scalar_needs_an_upstream_gradient),
		cmocka_unit_test(create_graph_makes_the_gradient_differentiable),
		cmocka_unit_test(the_gradient_of_an_unused_parameter_stays_null),
		cmocka_unit_test(recording_an_output_already_used_is_refused),
		cmocka_unit_test(grad_ready_reports_each_leaf_once_with_its_final_gradient),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
