/*
 * test_seeds.c - the seeds' worked examples, checked through the public API.
 *
 * Each test rebuilds one example from the study notes in ../shared/seeds/
 * (the apple-shopping graph, CS231n's backprop examples, the Affine, ReLU,
 * softmax and SVM layers, seed 003's Iris table) in f64 and compares values
 * and gradients with the numbers printed there. Where a seed rounds its
 * numbers, the tolerance is half a unit in the last digit it gives.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "tapegrad.h"

#define TOL 1e-9      /* exact values, up to rounding in f64 */
#define TOL_10D 5e-10 /* references given to 10 decimals */
#define TOL_7D 5e-8   /* references given to 7 decimals */

/* ---- fixtures and checks ------------------------------------------------------ */

static int ctx_setup(void **state)
{
	tg_ctx *ctx = tg_ctx_new(42);
	*state = ctx;
	return ctx ? 0 : -1;
}

static int ctx_teardown(void **state)
{
	tg_ctx_free(*state);
	return 0;
}

/* A named scalar parameter: a leaf the example differentiates with respect to. */
static tg_tensor *scalar_param(tg_ctx *ctx, const char *name, double v)
{
	return tg_set_name(tg_param(tg_scalar(ctx, TG_F64, v)), name);
}

static tg_tensor *tensor(tg_ctx *ctx, int ndim, const int64_t *shape, const double *v)
{
	return tg_from_f64(ctx, TG_F64, ndim, shape, v);
}

static tg_tensor *param(tg_ctx *ctx, const char *name, int ndim, const int64_t *shape,
			const double *v)
{
	return tg_set_name(tg_param(tensor(ctx, ndim, shape, v)), name);
}

static void near_at(const char *file, int line, const char *what, double got, double want,
		    double tol)
{
	if (fabs(got - want) <= tol)
		return;
	print_error("%s: expected %.12g, got %.12g (|diff| %.3g > %.3g)\n", what, want, got,
		    fabs(got - want), tol);
	_fail(file, line);
}

/* t holds exactly want[0..n), each within tol; t NULL is a failure. */
static void values_at(const char *file, int line, const char *what, const tg_tensor *t,
		      const double *want, size_t n, double tol)
{
	if (!t) {
		print_error("%s: tensor is NULL (an op failed or no gradient reached it)\n",
			    what);
		_fail(file, line);
		return;
	}
	if (tg_numel(t) != n) {
		char buf[64];
		print_error("%s: expected %zu values, got shape %s\n", what, n,
			    tg_shape_str(t, buf, sizeof buf));
		_fail(file, line);
		return;
	}
	bool bad = false;
	for (size_t i = 0; i < n; i++) {
		double got = tg_get(t, i);
		if (!(fabs(got - want[i]) <= tol)) {
			print_error("%s[%zu]: expected %.12g, got %.12g (|diff| %.3g > %.3g)\n",
				    what, i, want[i], got, fabs(got - want[i]), tol);
			bad = true;
		}
	}
	if (bad)
		_fail(file, line);
}

static void ok_at(const char *file, int line, tg_ctx *ctx)
{
	if (tg_ok(ctx))
		return;
	print_error("context error: %s\n", tg_error(ctx));
	_fail(file, line);
}

#define NEAR(what, got, want, tol) near_at(__FILE__, __LINE__, what, got, want, tol)
#define VALUES(what, t, tol, ...)                                                        \
	do {                                                                             \
		const double want_[] = { __VA_ARGS__ };                                  \
		values_at(__FILE__, __LINE__, what, t, want_,                            \
			  sizeof want_ / sizeof want_[0], tol);                          \
	} while (0)
/* the gradient of t: NAN when none reached it, so the comparison fails */
#define GRAD(t) (tg_grad(t) ? tg_item(tg_grad(t)) : NAN)
#define CTX_OK(ctx) ok_at(__FILE__, __LINE__, ctx)

/* ---- apple shopping (seeds 001, 002) --------------------------------------------- */

/* price = apple * count * tax = 100 * 2 * 1.1; the seed's backward prints
 * dapple_price 1.1, dtax 200, dapple_num 110, dapple 2.2. */
static void apple_price_is_220_with_gradients_2_2_and_110_and_200(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *apple = scalar_param(ctx, "apple", 100);
	tg_tensor *count = scalar_param(ctx, "count", 2);
	tg_tensor *tax = scalar_param(ctx, "tax", 1.1);
	tg_tensor *apple_price = tg_mul(apple, count);
	tg_tensor *price = tg_mul(apple_price, tax);

	assert_int_equal(tg_backward(price), 0);
	CTX_OK(ctx);
	NEAR("apple_price", tg_item(apple_price), 200, TOL);
	NEAR("price", tg_item(price), 220, TOL);
	NEAR("d price/d apple", GRAD(apple), 2.2, TOL);
	NEAR("d price/d count", GRAD(count), 110, TOL);
	NEAR("d price/d tax", GRAD(tax), 200, TOL);
	NEAR("d price/d apple_price", GRAD(apple_price), 1.1, TOL);
}

/* price = (apple * apple_num + orange * orange_num) * tax = 650 * 1.1 */
static void apple_and_orange_price_is_715_with_the_seed_gradients(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *apple = scalar_param(ctx, "apple", 100);
	tg_tensor *apple_num = scalar_param(ctx, "apple_num", 2);
	tg_tensor *orange = scalar_param(ctx, "orange", 150);
	tg_tensor *orange_num = scalar_param(ctx, "orange_num", 3);
	tg_tensor *tax = scalar_param(ctx, "tax", 1.1);
	tg_tensor *apple_price = tg_mul(apple, apple_num);
	tg_tensor *orange_price = tg_mul(orange, orange_num);
	tg_tensor *all_price = tg_add(apple_price, orange_price);
	tg_tensor *price = tg_mul(all_price, tax);

	assert_int_equal(tg_backward(price), 0);
	CTX_OK(ctx);
	NEAR("apple_price", tg_item(apple_price), 200, TOL);
	NEAR("orange_price", tg_item(orange_price), 450, TOL);
	NEAR("all_price", tg_item(all_price), 650, TOL);
	NEAR("price", tg_item(price), 715, TOL);
	NEAR("d price/d apple", GRAD(apple), 2.2, TOL);
	NEAR("d price/d apple_num", GRAD(apple_num), 110, TOL);
	NEAR("d price/d orange", GRAD(orange), 3.3, TOL);
	NEAR("d price/d orange_num", GRAD(orange_num), 165, TOL);
	NEAR("d price/d tax", GRAD(tax), 650, TOL);
	NEAR("d price/d all_price", GRAD(all_price), 1.1, TOL);
	NEAR("d price/d apple_price", GRAD(apple_price), 1.1, TOL);
	NEAR("d price/d orange_price", GRAD(orange_price), 1.1, TOL);
}

/* ---- CS231n: f = (x + y) z and the chain rule (seeds 002, 003) ------------------- */

/* q = x + y = 3, f = q z = -12; df/dq = z = -4, df/dz = q = 3, df/dx = df/dy = -4 */
static void sum_times_z_is_minus_12_with_gradients_minus_4_minus_4_and_3(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = scalar_param(ctx, "x", -2);
	tg_tensor *y = scalar_param(ctx, "y", 5);
	tg_tensor *z = scalar_param(ctx, "z", -4);
	tg_tensor *q = tg_add(x, y);
	tg_tensor *f = tg_mul(q, z);

	assert_int_equal(tg_backward(f), 0);
	CTX_OK(ctx);
	NEAR("q", tg_item(q), 3, TOL);
	NEAR("f", tg_item(f), -12, TOL);
	NEAR("df/dx", GRAD(x), -4, TOL);
	NEAR("df/dy", GRAD(y), -4, TOL);
	NEAR("df/dz", GRAD(z), 3, TOL);
	NEAR("df/dq", GRAD(q), -4, TOL);
}

/* z = t^2 with t = x + y: dz/dx = dz/dt dt/dx = 2t = 2(x + y) (seed 001),
 * built once with pow and once as t * t (both of mul's gradients reach t). */
static void square_of_a_sum_has_derivative_twice_the_sum(void **state)
{
	tg_ctx *ctx = *state;
	const double at[][2] = { { 1, 2 }, { 0.5, -3 }, { -2, 5 } };
	for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
		for (int use_pow = 0; use_pow < 2; use_pow++) {
			tg_tensor *x = tg_set_requires_grad(tg_scalar(ctx, TG_F64, at[k][0]), true);
			tg_tensor *y = tg_set_requires_grad(tg_scalar(ctx, TG_F64, at[k][1]), true);
			tg_tensor *t = tg_add(x, y);
			tg_tensor *z = use_pow ? tg_pow(t, 2) : tg_mul(t, t);
			double sum = at[k][0] + at[k][1];

			assert_int_equal(tg_backward(z), 0);
			CTX_OK(ctx);
			print_message("(x, y) = (%g, %g) with %s\n", at[k][0], at[k][1],
				      use_pow ? "pow" : "mul");
			NEAR("z", tg_item(z), sum * sum, TOL);
			NEAR("dz/dx", GRAD(x), 2 * sum, TOL);
			NEAR("dz/dy", GRAD(y), 2 * sum, TOL);
			NEAR("dz/dt", GRAD(t), 2 * sum, TOL);
		}
	}
}

/* seed 003: y = 5x + 3, z = 4y^2; dz/dy = 8y, dz/dx = 40(5x + 3). At x = 1:
 * y = 8, z = 256, dz/dy = 64, dz/dx = 320. */
static void chain_rule_of_four_times_5x_plus_3_squared(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = scalar_param(ctx, "x", 1);
	tg_tensor *y = tg_add_scalar(tg_mul_scalar(x, 5), 3);
	tg_tensor *z = tg_mul_scalar(tg_pow(y, 2), 4);

	assert_int_equal(tg_backward(z), 0);
	CTX_OK(ctx);
	NEAR("y", tg_item(y), 8, TOL);
	NEAR("z", tg_item(z), 256, TOL);
	NEAR("dz/dy", GRAD(y), 64, TOL);
	NEAR("dz/dx", GRAD(x), 320, TOL);
}

/* ---- CS231n: the sigmoid neuron (seeds 002, 003) ---------------------------------- */
/* f = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at w = (2, -3, -3), x = (-1, -2):
 * s = 1, f = 0.73, and every gradient is f (1 - f) = 0.1966 times a local
 * factor: dw = (x0, x1, 1) 0.1966, dx = (w0, w1) 0.1966. */

static const double neuron_f = 0.7310585786;
static const double neuron_dw[3] = { -0.1966119332, -0.3932238665, 0.1966119332 };
static const double neuron_dx[2] = { 0.3932238665, -0.5898357997 };

struct neuron {
	tg_tensor *w0, *x0, *w1, *x1, *w2;
	tg_tensor *s; /* w0 x0 + w1 x1 + w2 */
};

static void neuron_inputs(tg_ctx *ctx, struct neuron *n)
{
	n->w0 = scalar_param(ctx, "w0", 2);
	n->x0 = scalar_param(ctx, "x0", -1);
	n->w1 = scalar_param(ctx, "w1", -3);
	n->x1 = scalar_param(ctx, "x1", -2);
	n->w2 = scalar_param(ctx, "w2", -3);
	n->s = tg_add(tg_add(tg_mul(n->w0, n->x0), tg_mul(n->w1, n->x1)), n->w2);
}

static void neuron_check(tg_ctx *ctx, const struct neuron *n, tg_tensor *f)
{
	assert_int_equal(tg_backward(f), 0);
	CTX_OK(ctx);
	NEAR("s", tg_item(n->s), 1, TOL);
	NEAR("f", tg_item(f), neuron_f, TOL_10D);
	NEAR("df/dw0", GRAD(n->w0), neuron_dw[0], TOL_10D);
	NEAR("df/dw1", GRAD(n->w1), neuron_dw[1], TOL_10D);
	NEAR("df/dw2", GRAD(n->w2), neuron_dw[2], TOL_10D);
	NEAR("df/dx0", GRAD(n->x0), neuron_dx[0], TOL_10D);
	NEAR("df/dx1", GRAD(n->x1), neuron_dx[1], TOL_10D);
	/* the slide's "(0.73) * (1 - 0.73) = 0.2" */
	NEAR("df/ds", GRAD(n->s), 0.1966119332, TOL_10D);
}

/* The slide's gates: *-1, exp, +1, 1/x; their upstream gradients are
 * 0.20, -0.20, -0.53, -0.53 (-0.53 = -f^2, -0.20 = -f^2 e^-1). */
static void sigmoid_neuron_from_primitive_ops_has_the_slide_gradients(void **state)
{
	tg_ctx *ctx = *state;
	struct neuron n;
	neuron_inputs(ctx, &n);
	tg_tensor *neg = tg_neg(n.s);
	tg_tensor *e = tg_exp(neg);
	tg_tensor *d = tg_add_scalar(e, 1);
	tg_tensor *f = tg_div(tg_scalar(ctx, TG_F64, 1), d);

	neuron_check(ctx, &n, f);
	NEAR("1 + e^-s", tg_item(d), 1.3678794412, TOL_10D);
	NEAR("df/d(1 + e^-s)", GRAD(d), -0.5344466454, TOL_10D);
	NEAR("df/d(e^-s)", GRAD(e), -0.5344466454, TOL_10D);
	NEAR("df/d(-s)", GRAD(neg), -0.1966119332, TOL_10D);
}

static void sigmoid_neuron_with_the_sigmoid_op_gives_the_same_numbers(void **state)
{
	tg_ctx *ctx = *state;
	struct neuron n;
	neuron_inputs(ctx, &n);
	neuron_check(ctx, &n, tg_sigmoid(n.s));
}

/* ---- CS231n: f = ||W x||^2 (seed 003) ------------------------------------------- */
/* q = W x = (0.22, 0.26), f = 0.116; df/dq = 2q = (0.44, 0.52),
 * dW = 2q x^T, dx = W^T 2q. */
static void squared_norm_of_w_times_x_has_the_slide_gradients(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *W = param(ctx, "W", 2, (int64_t[]){ 2, 2 },
			     (double[]){ 0.1, 0.5, -0.3, 0.8 });
	tg_tensor *x = param(ctx, "x", 2, (int64_t[]){ 2, 1 }, (double[]){ 0.2, 0.4 });
	tg_tensor *q = tg_matmul(W, x);
	tg_tensor *f = tg_sum(tg_pow(q, 2));

	assert_int_equal(tg_backward(f), 0);
	CTX_OK(ctx);
	VALUES("q", q, TOL, 0.22, 0.26);
	NEAR("f", tg_item(f), 0.116, TOL);
	VALUES("df/dq", tg_grad(q), TOL, 0.44, 0.52);
	VALUES("df/dW", tg_grad(W), TOL, 0.088, 0.176, 0.104, 0.208);
	VALUES("df/dx", tg_grad(x), TOL, -0.112, 0.636);
}

/* ---- patterns in backward flow (seed 002): add distributes, mul swaps, max routes */

/* y = op(a, b) with upstream gradient 2: checks the gradients a and b receive */
static void gate(tg_ctx *ctx, const char *what, tg_tensor *(*op)(tg_tensor *, tg_tensor *),
		 double a, double b, double want_da, double want_db)
{
	tg_tensor *ta = scalar_param(ctx, "a", a);
	tg_tensor *tb = scalar_param(ctx, "b", b);
	tg_tensor *y = op(ta, tb);

	print_message("%s(%g, %g), upstream 2\n", what, a, b);
	assert_int_equal(tg_backward_ex(y, tg_scalar(ctx, TG_F64, 2), 0), 0);
	CTX_OK(ctx);
	NEAR("da", GRAD(ta), want_da, TOL);
	NEAR("db", GRAD(tb), want_db, TOL);
}

static void add_gate_hands_the_upstream_gradient_to_both_inputs(void **state)
{
	gate(*state, "add", tg_add, 3, -4, 2, 2);
}

static void mul_gate_hands_each_input_the_upstream_times_the_other(void **state)
{
	gate(*state, "mul", tg_mul, 3, -4, 2 * -4, 2 * 3);
}

static void max_gate_routes_the_upstream_gradient_to_the_larger_input(void **state)
{
	gate(*state, "maximum", tg_maximum, 3, -1, 2, 0);
	gate(*state, "maximum", tg_maximum, -1, 3, 0, 2);
}

static void max_gate_splits_the_upstream_gradient_on_a_tie(void **state)
{
	gate(*state, "maximum", tg_maximum, 2, 2, 1, 1);
}

/* ---- batched Affine bias (seeds 000, 002) ----------------------------------------- */
/* Y = X_dot_W + B broadcasts B over the rows; dB = np.sum(dY, axis=0). */
static void batch_bias_gradient_is_the_column_sum_of_the_upstream(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *xw = param(ctx, "X_dot_W", 2, (int64_t[]){ 2, 3 },
			      (double[]){ 0, 0, 0, 10, 10, 10 });
	tg_tensor *B = param(ctx, "B", 1, (int64_t[]){ 3 }, (double[]){ 1, 2, 3 });
	tg_tensor *Y = tg_add(xw, B);
	VALUES("Y", Y, TOL, 1, 2, 3, 11, 12, 13);

	/* seed 002: dY = [[1,2,3],[4,5,6]] gives dB = [5,7,9] */
	tg_tensor *dY = tensor(ctx, 2, (int64_t[]){ 2, 3 }, (double[]){ 1, 2, 3, 4, 5, 6 });
	assert_int_equal(tg_backward_ex(Y, dY, 0), 0);
	CTX_OK(ctx);
	VALUES("dB", tg_grad(B), TOL, 5, 7, 9);
	VALUES("dX_dot_W", tg_grad(xw), TOL, 1, 2, 3, 4, 5, 6);

	/* seed 000: dY = [[1,2,3],[11,12,13]] gives dB = [12,14,16] */
	tg_zero_grads(ctx);
	dY = tensor(ctx, 2, (int64_t[]){ 2, 3 }, (double[]){ 1, 2, 3, 11, 12, 13 });
	assert_int_equal(tg_backward_ex(Y, dY, 0), 0);
	CTX_OK(ctx);
	VALUES("dB", tg_grad(B), TOL, 12, 14, 16);
}

/* ---- ReLU layer (seed 002) ---------------------------------------------------------- */
/* mask = (x <= 0); forward zeroes x[mask], backward zeroes dout[mask]. */
static void relu_passes_the_gradient_only_where_x_is_positive(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = param(ctx, "x", 2, (int64_t[]){ 2, 2 }, (double[]){ 1, -0.5, -2, 3 });
	tg_tensor *y = tg_relu(x);
	VALUES("relu(x)", y, TOL, 1, 0, 0, 3);

	assert_int_equal(tg_backward_ex(y, tg_ones(ctx, TG_F64, 2, (int64_t[]){ 2, 2 }), 0), 0);
	CTX_OK(ctx);
	VALUES("dx", tg_grad(x), TOL, 1, 0, 0, 1);
}

/* ---- softmax of two scores (seed 002) ----------------------------------------------- */
/* dog 2.3, cat -1.2: exp gives 9.97 and 0.30; softmax (0.9706877692,
 * 0.0293122308); -ln of the second is 3.5297504183. The cross-entropy's
 * gradient is softmax - onehot. */
static void softmax_of_two_scores_and_the_loss_of_the_second(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *s = param(ctx, "scores", 2, (int64_t[]){ 1, 2 }, (double[]){ 2.3, -1.2 });
	tg_tensor *e = tg_exp(s);
	tg_tensor *p = tg_softmax(s);
	tg_tensor *nll = tg_neg(tg_log(tg_pick(p, tg_labels(ctx, 1, (int32_t[]){ 1 }))));
	tg_tensor *ce = tg_cross_entropy(s, tg_labels(ctx, 1, (int32_t[]){ 1 }));

	CTX_OK(ctx);
	VALUES("exp(scores)", e, 5e-3, 9.97, 0.30);
	VALUES("softmax", p, TOL_10D, 0.9706877692, 0.0293122308);
	NEAR("-ln softmax[1]", tg_item(nll), 3.5297504183, TOL_10D);
	NEAR("cross_entropy(label 1)", tg_item(ce), 3.5297504183, TOL_10D);

	assert_int_equal(tg_backward(ce), 0);
	CTX_OK(ctx);
	VALUES("d cross_entropy/d scores", tg_grad(s), TOL_10D, 0.9706877692, -0.9706877692);
}

/* ---- seed 003's Iris table: H = W x + b, P = softmax(H), L = -ln P[label] ---------- */
/* The values follow from the printed weights. The slide's own table (H2 =
 * 1.099584, P2 = 0.262425, ...) differs from them in the fifth or sixth digit,
 * as if its sheet held more digits of W than it prints. */

static const double iris_x[4] = { 6.3, 2.7, 4.9, 1.8 };
static const double iris_W[12] = {
	0.231595, 0.613372, -0.89624, -0.41208,
	0.076107, -0.22382, 0.20313, -0.05043,
	-0.30772, -0.38941, 0.693168, 0.462622,
};

/* H (1,3) = x (1,4) @ W^T (4,3) + b (3); W and b are parameters */
static tg_tensor *iris_scores(tg_ctx *ctx, const double *b, tg_tensor **W, tg_tensor **tb)
{
	tg_tensor *x = tensor(ctx, 2, (int64_t[]){ 1, 4 }, iris_x);
	*W = param(ctx, "W", 2, (int64_t[]){ 3, 4 }, iris_W);
	*tb = param(ctx, "b", 1, (int64_t[]){ 3 }, b);
	return tg_add(tg_matmul_t(x, false, *W, true), *tb);
}

static void iris_softmax_table_of_seed_003(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *W, *b;
	tg_tensor *H = iris_scores(ctx, (double[]){ 1.123884, 0.319879, 0.844128 }, &W, &b);
	tg_tensor *P = tg_softmax(H);

	CTX_OK(ctx);
	VALUES("H", H, TOL_7D, -0.8942831, 1.0996021, 2.0833278);
	VALUES("P", P, TOL_7D, 0.0357336, 0.2624281, 0.7018382);
}

/* "만약 b2에 +1을 한다면?": raising b2 by one moves probability to class 2 */
static void iris_softmax_after_adding_one_to_b2(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *W, *b;
	tg_tensor *H = iris_scores(ctx, (double[]){ 1.123884, 1.319879, 0.844128 }, &W, &b);
	tg_tensor *P = tg_softmax(H);

	CTX_OK(ctx);
	VALUES("H", H, TOL_7D, -0.8942831, 2.0996021, 2.0833278);
	VALUES("P", P, TOL_7D, 0.0246282, 0.4916542, 0.4837176);
}

/* L = -ln P[2] = 0.3540523 for label 2, and dL/dH = P - y (seed 003's
 * "dL/da_i = p_i - y_i"), dL/dW = (P - y)^T x. The slide writes L = 0.15376:
 * that is -log10(0.7018), the base-10 logarithm; 0.3540523 / ln 10 agrees with
 * it to the digits given. */
static void iris_cross_entropy_for_label_2(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *W, *b;
	tg_tensor *H = iris_scores(ctx, (double[]){ 1.123884, 0.319879, 0.844128 }, &W, &b);
	tg_tensor *L = tg_cross_entropy(H, tg_labels(ctx, 1, (int32_t[]){ 2 }));

	assert_int_equal(tg_backward(L), 0);
	CTX_OK(ctx);
	NEAR("L", tg_item(L), 0.3540523, TOL_7D);
	NEAR("L / ln 10 (the slide's base-10 value)", tg_item(L) / log(10.0), 0.15376, 5e-6);

	const double dH[3] = { 0.0357336, 0.2624281, 0.7018382 - 1 };
	VALUES("dL/db", tg_grad(b), TOL_7D, dH[0], dH[1], dH[2]);
	double dW[12];
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 4; j++)
			dW[4 * i + j] = dH[i] * iris_x[j];
	/* each dH[i] is within 5e-8, times x_j <= 6.3 */
	values_at(__FILE__, __LINE__, "dL/dW", tg_grad(W), dW, 12, 6.3 * TOL_7D);
}

/* ---- multiclass SVM loss (seed 002) ------------------------------------------------ */
/* L_i = sum over j != y_i of max(0, s_j - s_{y_i} + 1). Row i holds image i's
 * scores for (cat, car, frog); the slide prints images as columns. The
 * correct class's own term is max(0, 1) = 1, so the sum over all classes
 * minus 1 is the sum over j != y_i. */
static void svm_loss_of_three_images_is_2_9_and_0_and_12_9(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *S = param(ctx, "scores", 2, (int64_t[]){ 3, 3 },
			     (double[]){ 3.2, 5.1, -1.7, 1.3, 4.9, 2.0, 2.2, 2.5, -3.1 });
	const int32_t labels[3] = { 0, 1, 2 }; /* cat, car, frog */
	tg_tensor *correct = tg_reshape(tg_pick(S, tg_labels(ctx, 3, labels)), 2, (int64_t[]){ 3, 1 });
	tg_tensor *margins = tg_maximum(tg_add_scalar(tg_sub(S, correct), 1),
					tg_scalar(ctx, TG_F64, 0));
	tg_tensor *losses = tg_add_scalar(tg_sum_axis(margins, 1, false), -1);
	tg_tensor *L = tg_mean(losses);

	assert_int_equal(tg_backward(L), 0);
	CTX_OK(ctx);
	VALUES("losses", losses, TOL, 2.9, 0, 12.9);
	NEAR("L (slide, rounded)", tg_item(L), 5.2667, 1e-4);
	NEAR("L = 79/15", tg_item(L), 79.0 / 15.0, 1e-12);

	/* By hand, dL/dS_ij = [margin_ij > 0] / 3 for j != y_i, and minus the
	 * count of positive margins / 3 on the correct class. Image 0: car's
	 * margin 2.9 > 0, frog's -3.9 is not; image 1: none; image 2: both. */
	VALUES("dL/dscores", tg_grad(S), TOL,
	       -1.0 / 3, 1.0 / 3, 0,
	       0, 0, 0,
	       1.0 / 3, 1.0 / 3, -2.0 / 3);
}

/* ---- seed 003's sigmoid classifier: p = sigmoid(w1 x1 + w2 x2) --------------------- */
static void sigmoid_classifier_table_of_seed_003(void **state)
{
	tg_ctx *ctx = *state;
	const double w[][2] = { { 2, 3 }, { -4, -3 } };
	const double want_h[] = { 8, -10 };
	const double want_p[] = { 0.9996646, 0.0000454 };
	tg_tensor *x = tensor(ctx, 1, (int64_t[]){ 2 }, (double[]){ 1, 2 });
	for (int k = 0; k < 2; k++) {
		tg_tensor *tw = param(ctx, "w", 1, (int64_t[]){ 2 }, w[k]);
		tg_tensor *h = tg_sum(tg_mul(tw, x));
		tg_tensor *p = tg_sigmoid(h);

		CTX_OK(ctx);
		print_message("w = (%g, %g)\n", w[k][0], w[k][1]);
		NEAR("H", tg_item(h), want_h[k], TOL);
		NEAR("p", tg_item(p), want_p[k], TOL_7D);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, ctx_setup, ctx_teardown)
		T(apple_price_is_220_with_gradients_2_2_and_110_and_200),
		T(apple_and_orange_price_is_715_with_the_seed_gradients),
		T(sum_times_z_is_minus_12_with_gradients_minus_4_minus_4_and_3),
		T(square_of_a_sum_has_derivative_twice_the_sum),
		T(chain_rule_of_four_times_5x_plus_3_squared),
		T(sigmoid_neuron_from_primitive_ops_has_the_slide_gradients),
		T(sigmoid_neuron_with_the_sigmoid_op_gives_the_same_numbers),
		T(squared_norm_of_w_times_x_has_the_slide_gradients),
		T(add_gate_hands_the_upstream_gradient_to_both_inputs),
		T(mul_gate_hands_each_input_the_upstream_times_the_other),
		T(max_gate_routes_the_upstream_gradient_to_the_larger_input),
		T(max_gate_splits_the_upstream_gradient_on_a_tie),
		T(batch_bias_gradient_is_the_column_sum_of_the_upstream),
		T(relu_passes_the_gradient_only_where_x_is_positive),
		T(softmax_of_two_scores_and_the_loss_of_the_second),
		T(iris_softmax_table_of_seed_003),
		T(iris_softmax_after_adding_one_to_b2),
		T(iris_cross_entropy_for_label_2),
		T(svm_loss_of_three_images_is_2_9_and_0_and_12_9),
		T(sigmoid_classifier_table_of_seed_003),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
