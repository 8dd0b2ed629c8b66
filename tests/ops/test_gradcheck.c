/*
 * test_gradcheck.c - every op's gradient against central differences.
 *
 * Walks the op table (op_table.c): every registered op must have a row, and
 * every row and shape variant must pass the first-order check, the
 * second-order check (the backward pass differentiated again) and agree
 * between f32 and f64. Then the checker itself: it must be able to fail,
 * and it must leave its inputs as it found them.
 */
#include "../engine/test_util.h"
#include "internal.h"
#include "op_table.h"

#include <stdlib.h>

enum { SEED = 20240611 };

static const double EPS = 1e-6;
/* PyTorch's f64 defaults, step EPS; failing elements to stderr. */
static tg_gradcheck_opts OPTS = TG_GRADCHECK_DEFAULTS;

static int setup_report(void **state)
{
	(void)state;
	OPTS.report = stderr;
	return 0;
}

/* ---- the table covers the registry ----------------------------------------------- */

static void every_registered_op_has_a_table_row(void **state)
{
	(void)state;
	size_t n;
	const tg_op *const *reg = tg_op_registry(&n);
	assert_true(n > 0);
	int missing = 0;
	for (size_t i = 0; i < n; i++) {
		if (!op_table_find(reg[i]->name)) {
			print_error(
			    "op \"%s\" is registered but has no row in tests/ops/op_table.c\n",
			    reg[i]->name);
			missing++;
		}
	}
	if (missing)
		fail_msg("%d registered ops have no gradient-check row", missing);
}

static void every_table_row_names_a_registered_op(void **state)
{
	(void)state;
	size_t n;
	const tg_op *const *reg = tg_op_registry(&n);
	int unknown = 0;
	for (size_t r = 0; r < op_table_len; r++) {
		bool found = false;
		for (size_t i = 0; i < n && !found; i++)
			found = strcmp(reg[i]->name, op_table[r].op) == 0;
		if (!found) {
			print_error("table row \"%s\" names no registered op\n", op_table[r].op);
			unknown++;
		}
	}
	if (unknown)
		fail_msg("%d table rows name no registered op", unknown);
}

/* The row's function must end in the op the row names, or the check would
 * test another op under its name. */
static void every_table_row_applies_the_op_it_names(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	int bad = 0;
	for (size_t r = 0; r < op_table_len; r++) {
		const op_row *row = &op_table[r];
		for (const op_variant *v = row->v; v->name; v++) {
			tg_reset(ctx);
			tg_tensor *in[TG_MAX_INPUTS];
			assert_int_equal(op_table_inputs(ctx, row, v, in), 0);
			for (int j = 0; j < row->nin; j++)
				tg_set_requires_grad(in[j], true);
			tg_tensor *y = op_table_apply(row, v, in);
			const tg_op *op = tg_node_op(tg_producer(y));
			if (!y || !op || strcmp(op->name, row->op) != 0) {
				print_error("%s, %s: output made by %s (%s)\n", row->op, v->name,
					    op ? op->name : "nothing", tg_error(ctx));
				bad++;
				tg_clear_error(ctx);
			}
		}
	}
	tg_ctx_free(ctx);
	if (bad)
		fail_msg("%d table variants do not apply their op", bad);
}

/* ---- the checks over the table ------------------------------------------------------- */

typedef int (*checker)(tg_ctx *, tg_fn, void *, int, tg_tensor *const *,
		       const tg_gradcheck_opts *, tg_gradcheck_result *);

typedef struct applied {
	const op_row *row;
	const op_variant *v;
} applied;

static tg_tensor *f_plain(tg_tensor *const *in, void *user)
{
	const applied *a = user;
	return op_table_apply(a->row, a->v, in);
}

/* op(in)^2: the upstream gradient of op then depends on the inputs, so the
 * second-order check also differentiates the rule through dout. For an op
 * linear in its input (sum, reshape, ...), only this form has a second
 * derivative to check. */
static tg_tensor *f_squared(tg_tensor *const *in, void *user)
{
	tg_tensor *y = f_plain(in, user);
	return tg_mul(y, y);
}

/* Runs check on f (f_plain or f_squared) for every variant of every row
 * (with twice set, when second_order); prints each failure with its
 * errors; returns the count. */
static int check_table(checker check, tg_fn f, double tol, bool second_order)
{
	tg_ctx *ctx = tg_ctx_new(SEED);
	int failures = 0, checked = 0;
	const char *form = f == f_squared ? "squared, " : "";
	for (size_t r = 0; r < op_table_len; r++) {
		const op_row *row = &op_table[r];
		if (second_order && !row->twice)
			continue;
		for (const op_variant *v = row->v; v->name; v++) {
			tg_reset(ctx);
			tg_tensor *in[TG_MAX_INPUTS];
			tg_gradcheck_result res;
			applied a = { row, v };
			int rc = op_table_inputs(ctx, row, v, in) ? -1
				 : check(ctx, f, &a, row->nin, in, &OPTS, &res);
			if (rc < 0) {
				print_error("%s, %s%s: the check failed: %s\n", row->op, form,
					    v->name, tg_error(ctx));
				tg_clear_error(ctx);
				failures++;
				continue;
			}
			checked++;
			/* judged by atol and rtol (the failing elements are on stderr),
			 * and held to a tighter bound on the relative error */
			if (rc != 0 || !(res.worst_rel < tol)) {
				print_error("%s, %s%s: %zu of %zu elements fail; worst relative "
					    "error %.3g (absolute %.3g), tolerance %g\n",
					    row->op, form, v->name, res.failed, res.checked,
					    res.worst_rel, res.worst_abs, tol);
				for (int j = 0; j < row->nin; j++)
					print_error("    input %d: max_abs %.3g max_rel %.3g\n", j,
						    res.max_abs[j], res.max_rel[j]);
				failures++;
			}
		}
	}
	tg_ctx_free(ctx);
	assert_true(checked > 0);
	return failures;
}

static void every_op_passes_the_gradient_check_in_f64(void **state)
{
	(void)state;
	int failures = check_table(tg_gradcheck, f_plain, 1e-6, false);
	if (failures)
		fail_msg("%d op variants fail the first-order gradient check", failures);
}

static void twice_differentiable_ops_pass_the_second_order_check(void **state)
{
	(void)state;
	int failures = check_table(tg_gradcheck2, f_plain, 1e-5, true);
	failures += check_table(tg_gradcheck2, f_squared, 1e-5, true);
	if (failures)
		fail_msg("%d op variants fail the second-order gradient check", failures);
}

static void f32_forward_agrees_with_f64(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	int failures = 0;
	for (size_t r = 0; r < op_table_len; r++) {
		const op_row *row = &op_table[r];
		for (const op_variant *v = row->v; v->name; v++) {
			tg_reset(ctx);
			tg_tensor *in64[TG_MAX_INPUTS], *in32[TG_MAX_INPUTS];
			assert_int_equal(op_table_inputs(ctx, row, v, in64), 0);
			for (int j = 0; j < row->nin; j++)
				in32[j] = tg_from_f64(ctx, TG_F32, tg_ndim(in64[j]),
						      tg_shape(in64[j]), tg_data(in64[j]));
			tg_tensor *y64 = op_table_apply(row, v, in64);
			tg_tensor *y32 = op_table_apply(row, v, in32);
			if (!y64 || !y32) {
				print_error("%s, %s: %s\n", row->op, v->name, tg_error(ctx));
				tg_clear_error(ctx);
				failures++;
				continue;
			}
			char s64[64], s32[64];
			tg_shape_str(y64, s64, sizeof s64);
			tg_shape_str(y32, s32, sizeof s32);
			if (strcmp(s64, s32) != 0 || tg_dtype_of(y32) != TG_F32) {
				print_error("%s, %s: f64 gives %s, f32 gives %s %s\n", row->op,
					    v->name, s64,
					    tg_dtype_of(y32) == TG_F32 ? "f32" : "f64", s32);
				failures++;
				continue;
			}
			double worst = 0;
			size_t at = 0;
			for (size_t i = 0; i < tg_numel(y64); i++) {
				double a = tg_get(y64, i), b = tg_get(y32, i);
				double d = fabs(a - b) / fmax(1.0, fabs(a));
				if (!(d <= worst)) {
					worst = d;
					at = i;
				}
			}
			if (!(worst < 1e-5)) {
				print_error(
				    "%s, %s: element %zu: f64 %.9g, f32 %.9g (relative %.3g)\n",
				    row->op, v->name, at, tg_get(y64, at), tg_get(y32, at), worst);
				failures++;
			}
		}
	}
	tg_ctx_free(ctx);
	if (failures)
		fail_msg("%d op variants differ between f32 and f64", failures);
}

/* ---- second order by hand: a Hessian-vector product ------------------------------------ */

/* f(x) = sum(x^3) / 6 + x^T A x / 2 with A symmetric:
 *   grad f = x^2 / 2 + A x,   H = diag(x) + A.
 * At x = (0.5, -1, 2), A = [[2,1,0],[1,0,-1],[0,-1,3]], v = (1, -2, 0.5):
 *   grad f = (0.125, -1, 9),  H = [[2.5,1,0],[1,-1,-1],[0,-1,5]],  Hv = (0.5, 2.5, 4.5). */
static void hessian_vector_product_of_a_known_function(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_set_requires_grad(
		tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 0.5, -1, 2 }), true);
	tg_tensor *A = tg_from_f64(ctx, TG_F64, SHAPE(3, 3),
				   (double[]){ 2, 1, 0, 1, 0, -1, 0, -1, 3 });
	tg_tensor *v = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, -2, 0.5 });

	tg_tensor *cubes = tg_mul_scalar(tg_sum(tg_pow(x, 3)), 1.0 / 6);
	tg_tensor *quad =
	    tg_matmul(tg_reshape(x, SHAPE(1, 3)), tg_matmul(A, tg_reshape(x, SHAPE(3, 1))));
	tg_tensor *f = tg_add(cubes, tg_mul_scalar(tg_sum(quad), 0.5));
	assert_int_equal(tg_backward_ex(f, NULL, TG_CREATE_GRAPH), 0);
	assert_ctx_ok(ctx);
	tg_tensor *g = tg_grad(x);
	assert_non_null(g);
	assert_true(tg_producer(g) != NULL); /* the gradient carries history */
	const double want_g[3] = { 0.125, -1, 9 };
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(g, i), want_g[i], 1e-12);

	tg_zero_grad(x);
	assert_int_equal(tg_backward(tg_sum(tg_mul(g, v))), 0);
	assert_ctx_ok(ctx);
	tg_tensor *hv = tg_grad(x);
	const double want_hv[3] = { 0.5, 2.5, 4.5 };
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(hv, i), want_hv[i], 1e-12);
	tg_ctx_free(ctx);
}

/* ---- the checker can fail ---------------------------------------------------------------- */

/* square(x) = x^2 made through the public custom-op interface, with a
 * backward rule chosen by the descriptor. */
static tg_tensor *square_with(const tg_op *op, tg_tensor *x)
{
	tg_ctx *ctx = tg_ctx_of(x);
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *y = tg_mul(x, x);
	tg_set_grad_enabled(ctx, was);
	return tg_record(op, y, 1, &x, NULL, 0);
}

/* wrong: dx = 3 x dout */
static void square_wrong_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, tg_mul(dout, tg_mul_scalar(tg_node_input(n, 0), 3)));
}

/* right at first order, but the rule reads x through a copy without
 * history, so the gradient is not differentiated with respect to x */
static void square_detached_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, tg_mul(dout, tg_mul_scalar(tg_detach(tg_node_input(n, 0)), 2)));
}

/* right at first order, but dout is cut from its history */
static void square_cut_dout_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, tg_mul(tg_detach(dout), tg_mul_scalar(tg_node_input(n, 0), 2)));
}

static const tg_op square_wrong = { .name = "square_wrong", .backward = square_wrong_backward };
static const tg_op square_detached = { .name = "square_detached",
				       .backward = square_detached_backward };
static const tg_op square_cut_dout = { .name = "square_cut_dout",
				       .backward = square_cut_dout_backward };

static tg_tensor *f_square_wrong(tg_tensor *const *in, void *user)
{
	(void)user;
	return square_with(&square_wrong, in[0]);
}

static tg_tensor *f_square_detached(tg_tensor *const *in, void *user)
{
	(void)user;
	return square_with(&square_detached, in[0]);
}

static tg_tensor *f_square_cut_dout(tg_tensor *const *in, void *user)
{
	(void)user;
	return square_with(&square_cut_dout, in[0]);
}

static tg_tensor *f_square_cut_dout_squared(tg_tensor *const *in, void *user)
{
	tg_tensor *y = f_square_cut_dout(in, user);
	return tg_mul(y, y);
}

static void gradcheck_detects_a_wrong_backward_rule(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(2, 2), (double[]){ 1, -2, 0.5, 3 });
	tg_gradcheck_result res;
	char *text = NULL;
	size_t len = 0;
	tg_gradcheck_opts o = TG_GRADCHECK_DEFAULTS;
	o.report = open_memstream(&text, &len);
	assert_non_null(o.report);
	assert_int_equal(tg_gradcheck(ctx, f_square_wrong, NULL, 1, &x, &o, &res), 1);
	fclose(o.report);
	assert_ctx_ok(ctx);
	/* the rule is off by x w: relative errors near 1/3 or more */
	if (!(res.worst_rel > 0.2))
		fail_msg("a wrong rule passed: worst_rel %.3g", res.worst_rel);
	assert_near(res.max_rel[0], res.worst_rel, 0);
	/* every element fails; the first is x[0,0] = 1, analytic 3 w, numeric 2 w */
	assert_int_equal(res.checked, 4);
	assert_int_equal(res.failed, 4);
	assert_int_equal(res.first.input, 0);
	assert_int_equal(res.first.index, 0);
	assert_int_equal(res.first.at[0], 0);
	assert_int_equal(res.first.at[1], 0);
	assert_near(res.first.analytic, 1.5 * res.first.numeric, 1e-6);
	assert_true(fabs(res.first.numeric) >= 1.0 - 1e-6); /* 2 |w|, |w| >= 0.5 */
	if (!strstr(text, "tg_gradcheck: input 0 element 0 (0,0): analytic") ||
	    !strstr(text, "tg_gradcheck: input 0 element 3 (1,1): analytic") ||
	    !strstr(text, "4 of 4 elements fail (atol 1e-05, rtol 0.001)"))
		fail_msg("the report should name each element and the count:\n%s", text);
	free(text);
	tg_ctx_free(ctx);
}

/* max_report caps the element lines; one line then says more were left
 * out, before the count. */
static void gradcheck_report_says_when_it_leaves_elements_out(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(2, 2), (double[]){ 1, -2, 0.5, 3 });
	char *text = NULL;
	size_t len = 0;
	tg_gradcheck_opts o = TG_GRADCHECK_DEFAULTS;
	o.max_report = 2;
	o.report = open_memstream(&text, &len);
	assert_non_null(o.report);
	assert_int_equal(tg_gradcheck(ctx, f_square_wrong, NULL, 1, &x, &o, NULL), 1);
	fclose(o.report);
	int lines = 0;
	for (const char *c = text; *c; c++)
		lines += *c == '\n';
	if (lines != 4 || !strstr(text, "element 1 (0,1)") || strstr(text, "element 2 (1,0)") ||
	    !strstr(text, "tg_gradcheck: more failing elements not shown\n"
			  "tg_gradcheck: 4 of 4 elements fail"))
		fail_msg("2 element lines, then that more were left out, then the count:\n%s",
			 text);
	free(text);
	tg_ctx_free(ctx);
}

/* The bound is atol + rtol |numeric|: an element just inside passes, and a
 * rule wrong by a relative 1e-4 passes the defaults but fails rtol 1e-5. */
static void gradcheck_judges_by_atol_and_rtol(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, -2, 0.5 });
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck(ctx, f_square_wrong, NULL, 1, &x,
				      &(tg_gradcheck_opts){ .eps = EPS, .atol = 10, .rtol = 0 },
				      &res),
			 0);
	assert_int_equal(res.failed, 0);
	assert_int_equal(res.first.input, -1);
	assert_int_equal(tg_gradcheck(ctx, f_square_wrong, NULL, 1, &x,
				      &(tg_gradcheck_opts){ .eps = EPS, .atol = 0, .rtol = 0.6 },
				      &res),
			 0); /* |3 x w - 2 x w| = 0.5 |2 x w| */
	assert_int_equal(tg_gradcheck(ctx, f_square_wrong, NULL, 1, &x,
				      &(tg_gradcheck_opts){ .eps = EPS, .atol = 0, .rtol = 0.4 },
				      &res),
			 1);
	assert_int_equal(res.failed, 3);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static tg_tensor *f_exp_scaled(tg_tensor *const *in, void *user)
{
	(void)user;
	return tg_mul_scalar(tg_exp(in[0]), 1e-10);
}

/* At x = 709.782 with step 1e-3, e^(x + eps) overflows (the largest finite
 * e^x is near x = 709.7827): the numeric derivative is inf, which makes
 * rtol |numeric| inf too. The analytic 1e-10 e^x (1.8e298) is no match for
 * it, however loose the tolerances: the element fails. */
static void gradcheck_fails_an_element_whose_difference_overflowed(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(1), (double[]){ 709.782 });
	tg_gradcheck_result res;
	const double tols[][2] = { { 1e-5, 1e-3 }, { 1e300, 1e10 } };
	for (int k = 0; k < 2; k++) {
		tg_gradcheck_opts o = { .eps = 1e-3, .atol = tols[k][0], .rtol = tols[k][1] };
		assert_int_equal(tg_gradcheck(ctx, f_exp_scaled, NULL, 1, &x, &o, &res), 1);
		assert_int_equal(res.checked, 1);
		assert_int_equal(res.failed, 1);
		assert_true(isinf(res.first.numeric));
		assert_true(isfinite(res.first.analytic));
		assert_true(isinf(res.worst_abs) && isinf(res.worst_rel));
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void gradcheck2_detects_a_gradient_without_history(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, -2, 0.5 });
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck(ctx, f_square_detached, NULL, 1, &x, &OPTS, &res), 0);
	if (!(res.worst_rel < 1e-6))
		fail_msg("first order should pass: worst_rel %.3g", res.worst_rel);
	assert_int_equal(tg_gradcheck2(ctx, f_square_detached, NULL, 1, &x, NULL, &res), 1);
	assert_ctx_ok(ctx);
	assert_int_equal(res.failed, 3);
	/* numerically d/dx sum(2 x w v) = 2 w v, |w v| >= 0.25; analytically 0 */
	if (!(res.worst_abs > 0.4))
		fail_msg("a gradient without history passed the second-order check: "
			 "worst_abs %.3g",
			 res.worst_abs);
	tg_ctx_free(ctx);
}

/* Alone, the op's dout is the constant weighting, so cutting it changes
 * nothing; squared, dout depends on x and the cut shows. This is why the
 * table's second-order check also runs on op(x)^2. */
static void gradcheck2_of_the_squared_op_detects_a_rule_that_cuts_dout(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, -2, 0.5 });
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck2(ctx, f_square_cut_dout, NULL, 1, &x, &OPTS, &res), 0);
	if (!(res.worst_rel < 1e-5))
		fail_msg("plain second order should pass: worst_rel %.3g", res.worst_rel);
	assert_int_equal(tg_gradcheck(ctx, f_square_cut_dout_squared, NULL, 1, &x, &OPTS, &res), 0);
	if (!(res.worst_rel < 1e-6))
		fail_msg("squared first order should pass: worst_rel %.3g", res.worst_rel);
	assert_int_equal(tg_gradcheck2(ctx, f_square_cut_dout_squared, NULL, 1, &x, NULL, &res), 1);
	assert_ctx_ok(ctx);
	if (!(res.worst_rel > 0.1))
		fail_msg("a rule that cuts dout passed the squared second-order check: "
			 "worst_rel %.3g",
			 res.worst_rel);
	tg_ctx_free(ctx);
}

/* A gradient penalty: sum((d sum(x^3) / dx)^2) = sum(9 x^4), a function that
 * takes a gradient itself (tg_grad_of with TG_CREATE_GRAPH), as
 * tg_gradcheck2's own does. Every evaluation of f, the perturbed ones too,
 * must run with grad mode on, or its tg_grad_of has nothing to walk. */
static tg_tensor *f_gradient_penalty(tg_tensor *const *in, void *user)
{
	(void)user;
	tg_tensor *y = tg_sum(tg_pow(in[0], 3)), *g;
	if (tg_grad_of(1, &y, NULL, 1, in, &g, TG_CREATE_GRAPH))
		return NULL;
	return tg_sum(tg_mul(g, g));
}

static void gradcheck_of_a_function_that_takes_a_gradient(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, -2, 0.5 });
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck(ctx, f_gradient_penalty, NULL, 1, &x, &OPTS, &res), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(res.checked, 3);
	assert_int_equal(tg_gradcheck2(ctx, f_gradient_penalty, NULL, 1, &x, &OPTS, &res), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(res.checked, 3);
	assert_false(tg_requires_grad(x));
	assert_true(tg_grad_enabled(ctx));
	tg_ctx_free(ctx);
}

/* ---- the checker's contract ------------------------------------------------------------------ */

static tg_tensor *f_mul2(tg_tensor *const *in, void *user)
{
	(void)user;
	return tg_mul(in[0], in[1]);
}

static void gradcheck_leaves_its_inputs_as_it_found_them(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 0.3, -1.1, 2.5 }));
	tg_tensor *s = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1.7, 0.2, -0.9 });
	/* p has a gradient already: d sum(p * p) = 2 p */
	assert_int_equal(tg_backward(tg_sum(tg_mul(p, p))), 0);
	/* a graph recorded before the check, to be walked after it */
	tg_tensor *z = tg_sum(tg_mul(p, tg_mul_scalar(p, 2)));
	double p0[3], s0[3];
	tg_copy_to_f64(p, p0, 3);
	tg_copy_to_f64(s, s0, 3);

	tg_tensor *in[2] = { p, s };
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck(ctx, f_mul2, NULL, 2, in, &OPTS, &res), 0);
	assert_true(res.worst_rel < 1e-6);
	assert_int_equal(tg_gradcheck2(ctx, f_mul2, NULL, 2, in, &OPTS, &res), 0);
	assert_true(res.worst_rel < 1e-5);
	assert_ctx_ok(ctx);

	for (size_t i = 0; i < 3; i++) {
		assert_true(tg_get(p, i) == p0[i]);
		assert_true(tg_get(s, i) == s0[i]);
		assert_near(tg_get(tg_grad(p), i), 2 * p0[i], 0);
	}
	assert_false(tg_requires_grad(s));
	assert_null(tg_grad(s));
	assert_true(tg_grad_enabled(ctx));

	/* the earlier graph still walks (no version error); p's gradient adds 4 p */
	assert_int_equal(tg_backward(z), 0);
	assert_ctx_ok(ctx);
	for (size_t i = 0; i < 3; i++)
		assert_near(tg_get(tg_grad(p), i), 6 * p0[i], 1e-15);
	tg_ctx_free(ctx);
}

/* f reads a parameter q and an intermediate h of the caller's besides its
 * input: their gradients, from the caller's backward, are not the check's */
static tg_tensor *f_reads_q_and_h(tg_tensor *const *in, void *user)
{
	tg_tensor **qh = user;
	return tg_mul(tg_mul(in[0], qh[0]), qh[1]);
}

static void gradcheck_leaves_the_gradients_of_what_f_reads_alone(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *q = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 0.5, -2, 1.5 }));
	tg_tensor *h = tg_mul_scalar(q, 3);
	/* d sum(h) = 1, d/dq = 3; and q's leaf gradient in its buffer */
	assert_int_equal(tg_backward(tg_sum(h)), 0);
	tg_tensor *qh[2] = { q, h };
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1.25, 0.75, -1 });
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck(ctx, f_reads_q_and_h, qh, 1, &x, &OPTS, &res), 0);
	assert_int_equal(tg_gradcheck2(ctx, f_reads_q_and_h, qh, 1, &x, &OPTS, &res), 0);
	assert_ctx_ok(ctx);
	for (size_t i = 0; i < 3; i++) {
		assert_near(tg_get(tg_grad(h), i), 1, 0);
		assert_near(tg_get(tg_grad(q), i), 3, 0);
	}
	assert_null(tg_grad(x));
	tg_ctx_free(ctx);
}

static tg_tensor *f_bad_matmul(tg_tensor *const *in, void *user)
{
	(void)user;
	return tg_matmul(in[0], in[0]);
}

/* labels of the inputs' signs: no value to differentiate */
static tg_tensor *f_labels(tg_tensor *const *in, void *user)
{
	(void)user;
	int32_t v[2] = { tg_get(in[0], 0) > 0, tg_get(in[0], 1) > 0 };
	return tg_from_i32(tg_ctx_of(in[0]), 1, (int64_t[]){ 2 }, v);
}

static void gradcheck_reports_the_error_of_f_and_bad_arguments(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_gradcheck_result res;
	tg_tensor *x = tg_ones(ctx, TG_F64, SHAPE(2, 3));
	assert_int_equal(tg_gradcheck(ctx, f_bad_matmul, NULL, 1, &x, &OPTS, &res), -1);
	assert_error(ctx, TG_ESHAPE, "tg_matmul");
	assert_false(tg_requires_grad(x));
	tg_clear_error(ctx);

	tg_tensor *x32 = tg_ones(ctx, TG_F32, SHAPE(2));
	assert_int_equal(tg_gradcheck(ctx, f_mul2, NULL, 1, &x32, &OPTS, &res), -1);
	assert_error(ctx, TG_EDTYPE, "f64");
	tg_clear_error(ctx);

	tg_tensor *x2 = tg_ones(ctx, TG_F64, SHAPE(2));
	assert_int_equal(tg_gradcheck(ctx, f_labels, NULL, 1, &x2, &OPTS, &res), -1);
	assert_error(ctx, TG_EDTYPE, "tg_gradcheck: f returned an index tensor (i32 (2,))");
	tg_clear_error(ctx);
	assert_int_equal(tg_gradcheck2(ctx, f_labels, NULL, 1, &x2, &OPTS, &res), -1);
	assert_error(ctx, TG_EDTYPE, "tg_gradcheck2: f returned an index tensor");
	tg_clear_error(ctx);

	/* a refused call leaves no figures of the one before it in res */
	assert_int_equal(tg_gradcheck(ctx, f_mul2, NULL, 2, (tg_tensor *[]){ x, x }, &OPTS, &res),
			 0);
	assert_int_equal(res.checked, 12);
	assert_int_equal(tg_gradcheck(ctx, f_mul2, NULL, 0, &x, &OPTS, &res), -1);
	assert_error(ctx, TG_EARG, "0 inputs");
	assert_int_equal(res.checked, 0);
	assert_int_equal(res.first.input, -1);
	tg_clear_error(ctx);

	assert_int_equal(tg_gradcheck2(ctx, f_mul2, NULL, 1, &x, &(tg_gradcheck_opts){ .eps = 0 }, &res), -1);
	assert_error(ctx, TG_EARG, "eps");
	tg_clear_error(ctx);

	assert_int_equal(tg_gradcheck(ctx, f_mul2, NULL, 1, &x,
				      &(tg_gradcheck_opts){ .eps = EPS, .atol = -1, .rtol = 0 }, &res),
			 -1);
	assert_error(ctx, TG_EARG, "atol = -1");
	tg_clear_error(ctx);

	tg_tensor *y = tg_exp(tg_set_requires_grad(tg_ones(ctx, TG_F64, SHAPE(2)), true));
	assert_int_equal(tg_gradcheck(ctx, f_mul2, NULL, 1, &y, &OPTS, &res), -1);
	assert_error(ctx, TG_EARG, "not a leaf");
	tg_clear_error(ctx);

	assert_int_equal(tg_gradcheck(ctx, NULL, NULL, 1, &x, &OPTS, &res), -1);
	assert_error(ctx, TG_ENULL, "f");
	tg_clear_error(ctx);
	assert_int_equal(tg_gradcheck(NULL, f_mul2, NULL, 1, &x, &OPTS, &res), -1);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_registered_op_has_a_table_row),
		cmocka_unit_test(every_table_row_names_a_registered_op),
		cmocka_unit_test(every_table_row_applies_the_op_it_names),
		cmocka_unit_test(every_op_passes_the_gradient_check_in_f64),
		cmocka_unit_test(twice_differentiable_ops_pass_the_second_order_check),
		cmocka_unit_test(f32_forward_agrees_with_f64),
		cmocka_unit_test(hessian_vector_product_of_a_known_function),
		cmocka_unit_test(gradcheck_detects_a_wrong_backward_rule),
		cmocka_unit_test(gradcheck_report_says_when_it_leaves_elements_out),
		cmocka_unit_test(gradcheck_judges_by_atol_and_rtol),
		cmocka_unit_test(gradcheck_fails_an_element_whose_difference_overflowed),
		cmocka_unit_test(gradcheck2_detects_a_gradient_without_history),
		cmocka_unit_test(gradcheck2_of_the_squared_op_detects_a_rule_that_cuts_dout),
		cmocka_unit_test(gradcheck_of_a_function_that_takes_a_gradient),
		cmocka_unit_test(gradcheck_leaves_its_inputs_as_it_found_them),
		cmocka_unit_test(gradcheck_leaves_the_gradients_of_what_f_reads_alone),
		cmocka_unit_test(gradcheck_reports_the_error_of_f_and_bad_arguments),
	};
	return cmocka_run_group_tests(tests, setup_report, NULL);
}
