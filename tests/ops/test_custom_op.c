/*
 * test_custom_op.c - an op defined outside the library, through the public
 * custom-op interface only (tapegrad.h: tg_op, tg_record, tg_node_*).
 *
 * cube(x) = x^3, dx = 3 x^2 dout. Its forward fills a fresh tensor by hand;
 * its backward rule is written with ops, so the gradient is itself
 * differentiable and the second-order check applies.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

#define SHAPE(...) (sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)), (int64_t[]){ __VA_ARGS__ }

#define assert_near(got, want, tol)                                                      \
	do {                                                                             \
		double g_ = (got), w_ = (want);                                          \
		if (!(fabs(g_ - w_) <= (tol)))                                           \
			fail_msg("%s = %.12g, expected %.12g (tolerance %g)", #got, g_, w_, \
				 (double)(tol));                                         \
	} while (0)

#define assert_error(ctx, code, text)                                                    \
	do {                                                                             \
		if (tg_status_of(ctx) != (code) || !strstr(tg_error(ctx), (text)))      \
			fail_msg("error is %s \"%s\", expected %s containing \"%s\"",     \
				 tg_status_name(tg_status_of(ctx)), tg_error(ctx),       \
				 tg_status_name(code), (text));                          \
	} while (0)

/* ---- cube: y = x^3; dx = 3 x^2 dout ------------------------------------------------ */

static void cube_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_node_grad(n, 0, tg_mul(dout, tg_mul_scalar(tg_mul(x, x), 3)));
}

static const tg_op cube_op = { .name = "cube", .backward = cube_backward };

static tg_tensor *cube(tg_tensor *x)
{
	tg_ctx *ctx = tg_ctx_of(x);
	if (!ctx)
		return NULL;
	tg_tensor *y = tg_zeros(ctx, tg_dtype_of(x), tg_ndim(x), tg_shape(x));
	if (!y)
		return NULL;
	size_t n = tg_numel(x);
	if (tg_dtype_of(x) == TG_F64) {
		const double *X = tg_data(x);
		double *Y = tg_data_mut(y);
		for (size_t i = 0; i < n; i++)
			Y[i] = X[i] * X[i] * X[i];
	} else {
		const float *X = tg_data(x);
		float *Y = tg_data_mut(y);
		for (size_t i = 0; i < n; i++)
			Y[i] = X[i] * X[i] * X[i];
	}
	return tg_record(&cube_op, y, 1, &x, NULL, 0);
}

static tg_tensor *f_cube(tg_tensor *const *in, void *user)
{
	(void)user;
	return cube(in[0]);
}

/* ---- cube with wrong rules, for the check to catch ------------------------------------ */

/* 30% off: dx = 3.9 x^2 dout */
static void cube_wrong_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_node_grad(n, 0, tg_mul(dout, tg_mul_scalar(tg_mul(x, x), 3.9)));
}

/* Right values, wrong history: one factor x is read without history, so
 * the rule's own derivative is 3 x instead of 6 x. */
static void cube_half_detached_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	tg_node_grad(n, 0, tg_mul(dout, tg_mul_scalar(tg_mul(x, tg_detach(x)), 3)));
}

static const tg_op cube_wrong_op = { .name = "cube_wrong", .backward = cube_wrong_backward };
static const tg_op cube_half_detached_op = { .name = "cube_half_detached", .backward = cube_half_detached_backward };

/* x^3 computed without history, recorded as op */
static tg_tensor *cube_as(const tg_op *op, tg_tensor *x)
{
	tg_ctx *ctx = tg_ctx_of(x);
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *y = tg_mul(tg_mul(x, x), x);
	tg_set_grad_enabled(ctx, was);
	return tg_record(op, y, 1, &x, NULL, 0);
}

static tg_tensor *f_cube_wrong(tg_tensor *const *in, void *user)
{
	(void)user;
	return cube_as(&cube_wrong_op, in[0]);
}

static tg_tensor *f_cube_half_detached(tg_tensor *const *in, void *user)
{
	(void)user;
	return cube_as(&cube_half_detached_op, in[0]);
}

/* rules with a mistake the backward names: a gradient for an input the op
 * does not have, of another dtype, of another context, of a shape that does
 * not sum back to the input's, none at all (NULL with no error recorded) */
static tg_ctx *other_ctx;

static void past_the_inputs_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 1, dout);
}

static void other_dtype_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, tg_ones(tg_ctx_of(dout), TG_F32, tg_ndim(dout), tg_shape(dout)));
}

static void other_ctx_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, tg_ones(other_ctx, TG_F64, tg_ndim(dout), tg_shape(dout)));
}

static void other_shape_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, tg_ones(tg_ctx_of(dout), TG_F64, 2, (int64_t[]){ 3, 1 }));
}

/* a gradient in a shape that sums to the input's, over an axis the output
 * (of the input's shape) does not have */
static void made_up_axis_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, tg_expand(dout, 2, (int64_t[]){ 7, 2 }));
}

static void null_gradient_backward(tg_node *n, tg_tensor *dout)
{
	(void)dout;
	tg_node_grad(n, 0, NULL);
}

/* reads an attribute that tg_record was not given (cube_as records none) */
static void unrecorded_attr_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, tg_mul_scalar(dout, tg_node_attr(n, 0)));
}

/* keeps its first gradient and hands it on in later steps too */
static tg_tensor *kept_dx;

static void kept_gradient_backward(tg_node *n, tg_tensor *dout)
{
	if (!kept_dx)
		kept_dx = tg_mul_scalar(dout, 3);
	tg_node_grad(n, 0, kept_dx);
}

static const tg_op kept_gradient_op = { .name = "kept_gradient",
					.backward = kept_gradient_backward };
static const tg_op past_the_inputs_op = { .name = "past_the_inputs",
					  .backward = past_the_inputs_backward };
static const tg_op other_dtype_op = { .name = "other_dtype", .backward = other_dtype_backward };
static const tg_op other_ctx_op = { .name = "other_ctx", .backward = other_ctx_backward };
static const tg_op other_shape_op = { .name = "other_shape", .backward = other_shape_backward };
static const tg_op made_up_axis_op = { .name = "made_up_axis", .backward = made_up_axis_backward };
static const tg_op null_gradient_op = { .name = "null_gradient",
					.backward = null_gradient_backward };
static const tg_op unrecorded_attr_op = { .name = "unrecorded_attr",
					  .backward = unrecorded_attr_backward };

/* ---- tests ------------------------------------------------------------------------- */

static const double xs[] = { 1.5, -2, 0.5, 3, -0.25, 1 };

static void cube_computes_x_cubed_in_f64_and_f32(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(2, 3), xs);
	tg_tensor *y = cube(x);
	tg_tensor *y32 = cube(tg_from_f64(ctx, TG_F32, SHAPE(2, 3), xs));
	assert_non_null(y);
	assert_non_null(y32);
	const double want[] = { 3.375, -8, 0.125, 27, -0.015625, 1 };
	for (size_t i = 0; i < 6; i++) {
		assert_near(tg_get(y, i), want[i], 0);
		assert_near(tg_get(y32, i), want[i], 0);
	}
	assert_int_equal(tg_dtype_of(y32), TG_F32);
	/* no input needs a gradient: nothing recorded */
	assert_null(tg_producer(y));
	tg_ctx_free(ctx);
}

static void cube_gradient_is_three_x_squared(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 3), xs));
	tg_tensor *y = cube(x);
	assert_ptr_equal(tg_node_op(tg_producer(y)), &cube_op);
	assert_int_equal(tg_backward(tg_sum(y)), 0);
	for (size_t i = 0; i < 6; i++)
		assert_near(tg_get(tg_grad(x), i), 3 * xs[i] * xs[i], 0);
	tg_ctx_free(ctx);
}

static void cube_passes_the_first_order_gradient_check(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(2, 3), xs);
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck(ctx, f_cube, NULL, 1, &x, NULL, &res), 0);
	if (!(res.worst_rel < 1e-6))
		fail_msg("worst_rel %.3g, worst_abs %.3g", res.worst_rel, res.worst_abs);
	tg_ctx_free(ctx);
}

static void cube_passes_the_second_order_gradient_check(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(3);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(2, 3), xs);
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck2(ctx, f_cube, NULL, 1, &x, NULL, &res), 0);
	if (!(res.worst_rel < 1e-5))
		fail_msg("worst_rel %.3g, worst_abs %.3g", res.worst_rel, res.worst_abs);

	/* and by hand: d^2/dx^2 x^3 = 6 x */
	tg_tensor *p = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 3), xs));
	assert_int_equal(tg_backward_ex(tg_sum(cube(p)), NULL, TG_CREATE_GRAPH), 0);
	tg_tensor *g = tg_grad(p);
	tg_zero_grad(p);
	assert_int_equal(tg_backward(tg_sum(g)), 0);
	for (size_t i = 0; i < 6; i++)
		assert_near(tg_get(tg_grad(p), i), 6 * xs[i], 1e-12);
	tg_ctx_free(ctx);
}

static void a_rule_thirty_percent_off_fails_the_gradient_check(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(4);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(2, 3), xs);
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck(ctx, f_cube_wrong, NULL, 1, &x, NULL, &res), 1);
	assert_true(tg_ok(ctx));
	/* every element is off by 30%, far beyond atol + rtol |numeric| */
	assert_int_equal(res.failed, 6);
	assert_int_equal(res.first.input, 0);
	assert_int_equal(res.first.index, 0);
	assert_near(res.first.analytic / res.first.numeric, 1.3, 1e-6);
	tg_ctx_free(ctx);
}

static void a_rule_with_wrong_history_fails_only_the_second_order_check(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(5);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(2, 3), xs);
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck(ctx, f_cube_half_detached, NULL, 1, &x, NULL, &res), 0);
	assert_int_equal(res.failed, 0);
	assert_int_equal(tg_gradcheck2(ctx, f_cube_half_detached, NULL, 1, &x, NULL, &res), 1);
	assert_true(tg_ok(ctx));
	/* d/dx (3 x^2 w v) = 6 x w v; the rule gives 3 x w v: half */
	assert_int_equal(res.failed, 6);
	assert_near(res.first.analytic / res.first.numeric, 0.5, 1e-6);
	tg_ctx_free(ctx);
}

static void cube_appears_by_name_in_the_dot_graph(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_set_name(tg_param(tg_scalar(ctx, TG_F64, 2)), "x");
	tg_tensor *y = cube(x);
	assert_int_equal(tg_backward(y), 0);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	assert_int_equal(tg_write_dot(y, f), 0);
	fclose(f);
	if (!strstr(text, "label=\"cube\"") || !strstr(text, "label=\"x\"") ||
	    !strstr(text, "label=\"2\\ngrad 12\"") || !strstr(text, "label=\"8\\ngrad 1\""))
		fail_msg("the graph should show cube, x = 2 with gradient 12, y = 8:\n%s", text);
	free(text);
	tg_ctx_free(ctx);
}

static void tg_record_rejects_bad_descriptors_and_outputs(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_param(tg_scalar(ctx, TG_F64, 2));
	tg_tensor *out = tg_scalar(ctx, TG_F64, 8);

	assert_null(tg_record(NULL, out, 1, &x, NULL, 0));
	assert_error(ctx, TG_ENULL, "descriptor");
	tg_clear_error(ctx);

	static const tg_op no_rule = { .name = "no_rule", .backward = NULL };
	assert_null(tg_record(&no_rule, out, 1, &x, NULL, 0));
	assert_error(ctx, TG_ENULL, "backward rule");
	tg_clear_error(ctx);

	/* an output that already has history is not a fresh result */
	tg_tensor *made = tg_mul(x, x);
	assert_null(tg_record(&cube_op, made, 1, &x, NULL, 0));
	assert_error(ctx, TG_EARG, "no history");
	tg_clear_error(ctx);

	/* a parameter is not a step result either */
	assert_null(tg_record(&cube_op, x, 1, &x, NULL, 0));
	assert_error(ctx, TG_EARG, "new step tensor");
	tg_clear_error(ctx);

	tg_tensor *in[5] = { x, x, x, x, x };
	assert_null(tg_record(&cube_op, out, 5, in, NULL, 0));
	assert_error(ctx, TG_EARG, "5 inputs");
	tg_clear_error(ctx);

	assert_null(tg_record(&cube_op, out, 1, &x, NULL, 7));
	assert_error(ctx, TG_EARG, "7 attributes");
	tg_clear_error(ctx);

	assert_null(tg_record(&cube_op, out, 1, NULL, NULL, 0));
	assert_error(ctx, TG_ENULL, "cube: 1 inputs and the array is NULL");
	tg_clear_error(ctx);
	assert_null(tg_record(&cube_op, out, 1, &x, NULL, 2));
	assert_error(ctx, TG_ENULL, "cube: 2 attributes and the array is NULL");
	tg_clear_error(ctx);

	/* NULL in, NULL out; with a context known, the NULL is reported */
	assert_null(tg_record(&cube_op, NULL, 1, &x, NULL, 0));
	assert_error(ctx, TG_ENULL, "tg_record: cube: the output is NULL");
	tg_clear_error(ctx);
	assert_null(cube(NULL));
	tg_tensor *x_null[2] = { x, NULL };
	assert_null(tg_record(&cube_op, out, 2, x_null, NULL, 0));
	assert_error(ctx, TG_ENULL, "tg_record: cube: input 1 is NULL");
	tg_clear_error(ctx);

	/* the output and the inputs named as such, not as arguments 0 to nin */
	tg_tensor *x_label[2] = { x, tg_labels(ctx, 1, (int32_t[]){ 0 }) };
	assert_null(tg_record(&cube_op, out, 2, x_label, NULL, 0));
	assert_error(ctx, TG_EDTYPE, "tg_record: cube: input 1 is an index tensor (i32 (1,))");
	tg_clear_error(ctx);
	assert_null(tg_record(&cube_op, tg_scalar(ctx, TG_F32, 8), 1, &x, NULL, 0));
	assert_error(ctx, TG_EDTYPE, "tg_record: cube: the output is f32 (), input 0 is f64 ()");
	tg_clear_error(ctx);
	tg_ctx *other = tg_ctx_new(1);
	tg_tensor *x_other[2] = { x, tg_scalar(other, TG_F64, 1) };
	assert_null(tg_record(&cube_op, out, 2, x_other, NULL, 0));
	assert_error(ctx, TG_ECTX, "tg_record: cube: input 1 belongs to another context than the output");
	tg_clear_error(ctx);
	assert_true(tg_ok(other));
	tg_ctx_free(other);

	/* after all that, a good call records the node with its attributes */
	const double attrs[2] = { 0.5, -3 };
	tg_tensor *y = tg_record(&cube_op, out, 1, &x, attrs, 2);
	assert_ptr_equal(y, out);
	const tg_node *n = tg_producer(y);
	assert_ptr_equal(tg_node_op(n), &cube_op);
	assert_ptr_equal(tg_node_input(n, 0), x);
	assert_ptr_equal(tg_node_output(n), out);
	assert_near(tg_node_attr(n, 0), 0.5, 0);
	assert_near(tg_node_attr(n, 1), -3, 0);
	assert_true(tg_ok(ctx));
	/* one past those recorded is no silent 0, nor is a negative index */
	assert_true(isnan(tg_node_attr(n, 2)));
	assert_error(ctx, TG_EARG, "tg_node_attr: cube: attribute 2; the node keeps 2");
	tg_clear_error(ctx);
	assert_true(isnan(tg_node_attr(n, -1)));
	assert_error(ctx, TG_EARG, "tg_node_attr: cube: attribute -1; the node keeps 2");
	tg_clear_error(ctx);
	/* so are inputs */
	assert_null(tg_node_input(n, 1));
	assert_error(ctx, TG_EARG, "tg_node_input: cube: input 1; the node has 1");
	tg_clear_error(ctx);
	assert_null(tg_node_input(n, -1));
	assert_error(ctx, TG_EARG, "tg_node_input: cube: input -1; the node has 1");
	tg_clear_error(ctx);
	assert_true(isnan(tg_node_attr(NULL, 0)));
	tg_ctx_free(ctx);
}

static void a_rule_that_gives_a_wrong_gradient_is_named(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	other_ctx = tg_ctx_new(1);
	static const struct {
		const tg_op *op;
		tg_status code;
		const char *text;
	} cases[] = {
		{ &past_the_inputs_op, TG_EARG, "backward of past_the_inputs: a gradient for input 1; it has 1" },
		{ &other_dtype_op, TG_EDTYPE, "backward of other_dtype: gradient of input 0 is f32 (2,), input is f64" },
		{ &other_ctx_op, TG_ECTX,
		  "backward of other_ctx: the gradient of input 0 belongs to another context" },
		{ &other_shape_op, TG_ESHAPE,
		  "backward of other_shape: gradient of input 0 is (3,1), which is neither the "
		  "input's shape (2,) nor one that sums to it over axes of the output (2,)" },
		{ &made_up_axis_op, TG_ESHAPE,
		  "backward of made_up_axis: gradient of input 0 is (7,2), which is neither the "
		  "input's shape (2,) nor one that sums to it over axes of the output (2,)" },
		{ &null_gradient_op, TG_ENULL,
		  "backward of null_gradient: the gradient of input 0 is NULL and no error was "
		  "recorded" },
		{ &unrecorded_attr_op, TG_EARG,
		  "tg_node_attr: unrecorded_attr: attribute 0; the node keeps 0" },
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		tg_tensor *x = tg_param(tg_ones(ctx, TG_F64, SHAPE(2)));
		tg_tensor *y = cube_as(cases[k].op, x);
		assert_non_null(y);
		assert_int_equal(tg_backward(tg_sum(y)), -1);
		assert_error(ctx, cases[k].code, cases[k].text);
		tg_clear_error(ctx);
		tg_reset(ctx);
	}
	tg_ctx_free(other_ctx);
	tg_ctx_free(ctx);
}

/* A gradient kept from an earlier step was freed by its tg_reset: named,
 * not read. */
static void a_rule_that_hands_on_a_freed_gradient_is_named(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_param(tg_ones(ctx, TG_F64, SHAPE(2)));
	kept_dx = NULL;
	assert_int_equal(tg_backward(tg_sum(cube_as(&kept_gradient_op, x))), 0);
	assert_near(tg_get(tg_grad(x), 0), 3, 0);
	tg_zero_grads(ctx);
	tg_reset(ctx);
	assert_int_equal(tg_backward(tg_sum(cube_as(&kept_gradient_op, x))), -1);
	assert_error(ctx, TG_ESTALE,
		     "backward of kept_gradient: the gradient of input 0 was freed by tg_reset");
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cube_computes_x_cubed_in_f64_and_f32),
		cmocka_unit_test(cube_gradient_is_three_x_squared),
		cmocka_unit_test(cube_passes_the_first_order_gradient_check),
		cmocka_unit_test(cube_passes_the_second_order_gradient_check),
		cmocka_unit_test(a_rule_thirty_percent_off_fails_the_gradient_check),
		cmocka_unit_test(a_rule_with_wrong_history_fails_only_the_second_order_check),
		cmocka_unit_test(cube_appears_by_name_in_the_dot_graph),
		cmocka_unit_test(tg_record_rejects_bad_descriptors_and_outputs),
		cmocka_unit_test(a_rule_that_gives_a_wrong_gradient_is_named),
		cmocka_unit_test(a_rule_that_hands_on_a_freed_gradient_is_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
