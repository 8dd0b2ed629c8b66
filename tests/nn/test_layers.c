/*
 * test_layers.c - the nn modules: Affine, activations, losses, batch norm,
 * dropout, initialisers and the MLP built from a spec.
 *
 * Module gradients are checked against central differences (tg_gradcheck);
 * values against numbers computed by hand or by a plain double loop written
 * in the test from the formula, independently of the ops.
 */
#include "../engine/test_util.h"
#include "tapegrad_nn.h"

#include <stdlib.h>

enum { SEED = 1234 };

/* PyTorch's f64 defaults, step 1e-6 */
static const tg_gradcheck_opts gc_opts = TG_GRADCHECK_DEFAULTS;

static tg_tensor *f64(tg_ctx *ctx, int ndim, const int64_t *shape, const double *v)
{
	return tg_from_f64(ctx, TG_F64, ndim, shape, v);
}

static void assert_values(const tg_tensor *t, const double *want, size_t n, double tol)
{
	assert_non_null(t);
	assert_int_equal(tg_numel(t), n);
	for (size_t i = 0; i < n; i++) {
		double got = tg_get(t, i);
		if (!(fabs(got - want[i]) <= tol))
			fail_msg("element %zu = %.12g, expected %.12g (tolerance %g)", i, got,
				 want[i], tol);
	}
}

static void assert_gradcheck(int rc, tg_ctx *ctx, const tg_gradcheck_result *r, double tol)
{
	assert_ctx_ok(ctx);
	if (rc != 0)
		fail_msg("gradient check: %zu of %zu elements fail, the first input %d element "
			 "%zu: analytic %.9g, numeric %.9g",
			 r->failed, r->checked, r->first.input, r->first.index, r->first.analytic,
			 r->first.numeric);
	if (!(r->worst_rel < tol))
		fail_msg("gradient check: worst relative error %.3g (abs %.3g), tolerance %g",
			 r->worst_rel, r->worst_abs, tol);
}

/* ---- affine ------------------------------------------------------------------------ */

/* The seeds' batch affine: X_dot_W + B, and dB = np.sum(dY, axis=0). */
static void affine_adds_the_bias_to_every_row_and_sums_dout_into_db(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_affine l = {
	    .W = tg_param(f64(ctx, SHAPE(2, 3), (double[]){1, 0, -1, 0, 1, 2})),
	    .b = tg_param(f64(ctx, SHAPE(3), (double[]){0.5, -1, 2})),
	};
	tg_tensor *x = f64(ctx, SHAPE(2, 2), (double[]){1, 2, 3, 4});
	tg_tensor *y = tg_affine_forward(&l, x);
	/* [1 2] @ W = [1 2 3], [3 4] @ W = [3 4 5]; plus b */
	assert_values(y, (double[]){1.5, 1, 5, 3.5, 3, 7}, 6, 1e-12);
	tg_tensor *dy = f64(ctx, SHAPE(2, 3), (double[]){1, 2, 3, 11, 12, 13});
	assert_int_equal(tg_backward_ex(y, dy, 0), 0);
	assert_values(tg_grad(l.b), (double[]){12, 14, 16}, 3, 1e-12);
	/* dW = x^T dY: [[1*1+3*11, 1*2+3*12, 1*3+3*13], [2*1+4*11, 2*2+4*12, 2*3+4*13]] */
	assert_values(tg_grad(l.W), (double[]){34, 38, 42, 46, 52, 58}, 6, 1e-12);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* The seeds' single-sample form: X (5,) @ W (5,9) + B gives (9,). */
static void affine_of_a_vector_gives_a_vector(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_affine l;
	assert_int_equal(tg_affine_init(&l, ctx, TG_F64, 5, 9, (tg_init){TG_INIT_STD, 1}, "fc"), 0);
	tg_tensor *x = tg_rand(ctx, TG_F64, SHAPE(5), 0, 1);
	tg_tensor *y = tg_affine_forward(&l, x);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_ndim(y), 1);
	assert_int_equal(tg_dim(y, 0), 9);
	for (int j = 0; j < 9; j++) {
		double s = 0; /* b is 0 */
		for (int i = 0; i < 5; i++)
			s += tg_get(x, i) * tg_get(l.W, (size_t)(i * 9 + j));
		assert_near(tg_get(y, j), s, 1e-12);
	}
	tg_ctx_free(ctx);
}

static tg_tensor *affine_fn(tg_tensor *const *in, void *user)
{
	(void)user;
	tg_affine l = {in[1], in[2]};
	return tg_affine_forward(&l, in[0]);
}

static void affine_gradients_match_central_differences(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *in[3] = {
	    tg_randn(ctx, TG_F64, SHAPE(4, 6), 0, 1),
	    tg_randn(ctx, TG_F64, SHAPE(6, 5), 0, 1),
	    tg_randn(ctx, TG_F64, SHAPE(5), 0, 1),
	};
	tg_gradcheck_result r;
	assert_gradcheck(tg_gradcheck(ctx, affine_fn, NULL, 3, in, &gc_opts, &r), ctx, &r, 1e-7);
	tg_ctx_free(ctx);
}

static void affine_flattens_a_3d_input_to_rows(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *in[3] = {
	    tg_randn(ctx, TG_F64, SHAPE(4, 2, 3), 0, 1),
	    tg_randn(ctx, TG_F64, SHAPE(6, 5), 0, 1),
	    tg_randn(ctx, TG_F64, SHAPE(5), 0, 1),
	};
	tg_tensor *y = affine_fn(in, NULL);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_ndim(y), 2);
	assert_int_equal(tg_dim(y, 0), 4);
	assert_int_equal(tg_dim(y, 1), 5);
	for (int n = 0; n < 4; n++)
		for (int j = 0; j < 5; j++) {
			double s = tg_get(in[2], j);
			for (int i = 0; i < 6; i++)
				s += tg_get(in[0], (size_t)(n * 6 + i)) *
				     tg_get(in[1], (size_t)(i * 5 + j));
			assert_near(tg_get(y, (size_t)(n * 5 + j)), s, 1e-12);
		}
	tg_gradcheck_result r;
	assert_gradcheck(tg_gradcheck(ctx, affine_fn, NULL, 3, in, &gc_opts, &r), ctx, &r, 1e-7);
	tg_ctx_free(ctx);
}

static void affine_rejects_an_input_that_does_not_fit_W_naming_the_layer(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_affine l;
	assert_int_equal(tg_affine_init(&l, ctx, TG_F64, 784, 10, (tg_init){TG_INIT_HE, 0}, "fc1"),
			 0);
	assert_string_equal(tg_name(l.W), "fc1.W");
	assert_string_equal(tg_name(l.b), "fc1.b");
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(100, 1, 28, 27));
	assert_null(tg_affine_forward(&l, x));
	assert_error(ctx, TG_ESHAPE, "fc1.W");
	assert_error(ctx, TG_ESHAPE, "(100,1,28,27)");
	tg_ctx_free(ctx);
}

/* ---- activations --------------------------------------------------------------------- */

static void activation_names_parse_with_their_alphas(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_act a;
	char buf[32];
	static const struct {
		const char *in;
		tg_act_kind kind;
		double alpha;
		const char *out;
	} rows[] = {
	    {"relu", TG_ACT_RELU, 0, "relu"},
	    {"sigmoid", TG_ACT_SIGMOID, 0, "sigmoid"},
	    {"tanh", TG_ACT_TANH, 0, "tanh"},
	    {"identity", TG_ACT_IDENTITY, 0, "identity"},
	    {"none", TG_ACT_IDENTITY, 0, "identity"},
	    {"leaky_relu", TG_ACT_LEAKY_RELU, 0.01, "leaky_relu:0.01"},
	    {"leaky_relu:0.2", TG_ACT_LEAKY_RELU, 0.2, "leaky_relu:0.2"},
	    {"elu", TG_ACT_ELU, 1.0, "elu:1"},
	    {"elu:0.5", TG_ACT_ELU, 0.5, "elu:0.5"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		assert_int_equal(tg_act_parse(ctx, rows[i].in, &a), 0);
		assert_int_equal(a.kind, rows[i].kind);
		assert_near(a.alpha, rows[i].alpha, 0);
		assert_string_equal(tg_act_str(a, buf, sizeof buf), rows[i].out);
	}
	assert_ctx_ok(ctx);
	assert_int_equal(tg_act_parse(ctx, "softsign", &a), -1);
	assert_error(ctx, TG_EARG, "\"softsign\"");
	tg_clear_error(ctx);
	assert_int_equal(tg_act_parse(ctx, "relu:2", &a), -1);
	assert_error(ctx, TG_EARG, "takes no parameter");
	tg_clear_error(ctx);
	assert_int_equal(tg_act_parse(ctx, "elu:x", &a), -1);
	assert_error(ctx, TG_EARG, "\"elu:x\"");
	tg_ctx_free(ctx);
}

static void activations_compute_their_formulas(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const double xs[4] = {-2, -0.5, 0.25, 3};
	tg_tensor *x = f64(ctx, SHAPE(4), xs);
	for (int k = TG_ACT_IDENTITY; k <= TG_ACT_ELU; k++) {
		tg_act a = {(tg_act_kind)k, 0.3};
		tg_tensor *y = tg_act_forward(a, x);
		for (int i = 0; i < 4; i++) {
			double v = xs[i], want;
			switch (k) {
			case TG_ACT_RELU:
				want = v > 0 ? v : 0;
				break;
			case TG_ACT_SIGMOID:
				want = 1 / (1 + exp(-v));
				break;
			case TG_ACT_TANH:
				want = tanh(v);
				break;
			case TG_ACT_LEAKY_RELU:
				want = v > 0 ? v : 0.3 * v;
				break;
			case TG_ACT_ELU:
				want = v > 0 ? v : 0.3 * (exp(v) - 1);
				break;
			default:
				want = v;
			}
			assert_near(tg_get(y, i), want, 1e-12);
		}
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- losses ---------------------------------------------------------------------------- */

static const double LOGITS[12] = {0.3, -1.2, 2.0, 0.5, 1.1, 0.0, -0.7, 0.4, -2.0, 1.5, 0.2, 0.9};
static const int32_t LABELS[3] = {2, 0, 1};

/* Softmax of row i of LOGITS (3,4), computed directly. */
static void softmax_row(int i, double *y)
{
	double s = 0;
	for (int k = 0; k < 4; k++)
		s += y[k] = exp(LOGITS[i * 4 + k]);
	for (int k = 0; k < 4; k++)
		y[k] /= s;
}

/* d loss / d logits = (y - t) / N, the seeds' SoftmaxWithLoss backward */
static void softmax_cross_entropy_gradient_is_y_minus_t_over_n(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	double t[12] = {0};
	for (int i = 0; i < 3; i++)
		t[i * 4 + LABELS[i]] = 1;
	double want_loss = 0, want_grad[12];
	for (int i = 0; i < 3; i++) {
		double y[4];
		softmax_row(i, y);
		want_loss -= log(y[LABELS[i]]) / 3;
		for (int k = 0; k < 4; k++)
			want_grad[i * 4 + k] = (y[k] - t[i * 4 + k]) / 3;
	}
	/* one-hot targets through the composed loss */
	tg_tensor *x = tg_param(f64(ctx, SHAPE(3, 4), LOGITS));
	tg_tensor *loss = tg_cross_entropy_soft(x, f64(ctx, SHAPE(3, 4), t));
	assert_near(tg_item(loss), want_loss, 1e-12);
	assert_int_equal(tg_backward(loss), 0);
	assert_values(tg_grad(x), want_grad, 12, 1e-12);
	/* integer labels through the fused op */
	tg_zero_grad(x);
	loss = tg_cross_entropy_i32(x, LABELS, 3);
	assert_near(tg_item(loss), want_loss, 1e-12);
	assert_int_equal(tg_backward(loss), 0);
	assert_values(tg_grad(x), want_grad, 12, 1e-12);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void soft_targets_give_y_minus_t_over_n_too(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const double t[12] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0, 0, 0.25, 0.25, 0.25, 0.25};
	double want_loss = 0, want_grad[12];
	for (int i = 0; i < 3; i++) {
		double y[4];
		softmax_row(i, y);
		for (int k = 0; k < 4; k++) {
			want_loss -= t[i * 4 + k] * log(y[k]) / 3;
			want_grad[i * 4 + k] = (y[k] - t[i * 4 + k]) / 3;
		}
	}
	tg_tensor *x = tg_param(f64(ctx, SHAPE(3, 4), LOGITS));
	tg_tensor *loss = tg_cross_entropy_soft(x, f64(ctx, SHAPE(3, 4), t));
	assert_near(tg_item(loss), want_loss, 1e-12);
	assert_int_equal(tg_backward(loss), 0);
	assert_values(tg_grad(x), want_grad, 12, 1e-12);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static tg_tensor *soft_ce_fn(tg_tensor *const *in, void *user)
{
	return tg_cross_entropy_soft(in[0], user);
}

static tg_tensor *ce_fn(tg_tensor *const *in, void *user)
{
	(void)user;
	return tg_cross_entropy_i32(in[0], LABELS, 3);
}

static void softmax_cross_entropy_gradients_match_central_differences(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *in[1] = {tg_randn(ctx, TG_F64, SHAPE(3, 4), 0, 2)};
	const double t[12] = {0.1, 0.2, 0.3, 0.4, 0, 1, 0, 0, 0.25, 0.25, 0.25, 0.25};
	tg_gradcheck_result r;
	assert_gradcheck(tg_gradcheck(ctx, soft_ce_fn, f64(ctx, SHAPE(3, 4), t), 1, in, &gc_opts, &r),
			 ctx, &r, 1e-7);
	assert_gradcheck(tg_gradcheck(ctx, ce_fn, NULL, 1, in, &gc_opts, &r), ctx, &r, 1e-7);
	tg_ctx_free(ctx);
}

static void soft_cross_entropy_rejects_targets_of_another_shape(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(3, 4));
	assert_null(tg_cross_entropy_soft(x, tg_zeros(ctx, TG_F64, SHAPE(3, 5))));
	assert_error(ctx, TG_ESHAPE, "(3,5)");
	tg_clear_error(ctx);
	/* and of another dtype, named as its own error rather than an op's */
	assert_null(tg_cross_entropy_soft(x, tg_zeros(ctx, TG_F32, SHAPE(3, 4))));
	assert_error(ctx, TG_EDTYPE, "tg_cross_entropy_soft: logits (3,4) are f64, targets (3,4) "
				     "are f32");
	tg_ctx_free(ctx);
}

/* Targets that are not a distribution per row (a row of zeros from a
 * one-hot of a label out of range, two ones, a negative or NaN element)
 * are named; probabilities written with a few decimals pass. */
static void soft_cross_entropy_rejects_targets_that_are_not_distributions(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(2, 3));
	const struct {
		double t[6];
		const char *why;
	} bad[] = {
		{ { 1, 0, 0, 0, 0, 0 }, "targets (2,3): row 1 sums to 0; each row" },
		{ { 1, 0, 0, 0, 1, 1 }, "row 1 sums to 2;" },
		{ { 1, 0, 0, 1.5, -0.5, 0 }, "element (1,0) is 1.5, outside [0, 1]" },
		{ { 1, 0, 0, 0.5, -0.25, 0.75 }, "element (1,1) is -0.25, outside [0, 1]" },
		{ { NAN, 0, 1, 0, 1, 0 }, "element (0,0) is nan, outside [0, 1]" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_null(tg_cross_entropy_soft(x, f64(ctx, SHAPE(2, 3), bad[i].t)));
		assert_error(ctx, TG_EARG, bad[i].why);
		tg_clear_error(ctx);
	}
	const float third[6] = { 0.333f, 0.333f, 0.333f, 0, 1, 0 };
	tg_tensor *x32 = tg_zeros(ctx, TG_F32, SHAPE(2, 3));
	assert_non_null(tg_cross_entropy_soft(x32, tg_from_f32(ctx, TG_F32, SHAPE(2, 3), third)));
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* 0.5 lambda sum(W^2) over ".W" params only; gradient lambda W */
static void weight_penalty_counts_weights_and_not_biases(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[3] = {
	    tg_set_decay(tg_set_name(tg_param(f64(ctx, SHAPE(2), (double[]){1, -2})), "fc1.W"), true),
	    tg_set_name(tg_param(f64(ctx, SHAPE(2), (double[]){3, 4})), "fc1.b"),
	    tg_set_decay(tg_set_name(tg_param(f64(ctx, SHAPE(1), (double[]){0.5})), "fc2.W"), true),
	};
	tg_tensor *pen = tg_weight_penalty(p, 3, 0.1);
	assert_near(tg_item(pen), 0.5 * 0.1 * (1 + 4 + 0.25), 1e-12);
	assert_int_equal(tg_backward(pen), 0);
	assert_values(tg_grad(p[0]), (double[]){0.1, -0.2}, 2, 1e-12);
	assert_null(tg_grad(p[1]));
	assert_values(tg_grad(p[2]), (double[]){0.05}, 1, 1e-12);
	assert_ctx_ok(ctx);
	const double wrong[] = { -0.1, NAN, INFINITY };
	for (int i = 0; i < 3; i++) {
		assert_null(tg_weight_penalty(p, 3, wrong[i]));
		assert_error(ctx, TG_EARG, "tg_weight_penalty: lambda = ");
		tg_clear_error(ctx);
	}
	tg_ctx_free(ctx);
}

static void argmax_rows_names_the_predicted_class(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	int32_t out[3];
	assert_int_equal(tg_argmax_rows(f64(ctx, SHAPE(3, 4), LOGITS), out), 0);
	assert_int_equal(out[0], 2);
	assert_int_equal(out[1], 0);
	assert_int_equal(out[2], 1);
	/* the first NaN of a row is its largest, wherever it stands (torch.argmax) */
	const double nan_rows[] = { NAN, 5, 1, NAN, 1, 7, NAN, 9, 2, 3, 4, 1 };
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		assert_int_equal(tg_argmax_rows(tg_from_f64(ctx, (tg_dtype)dt, SHAPE(3, 4), nan_rows),
						out),
				 0);
		assert_int_equal(out[0], 0);
		assert_int_equal(out[1], 2);
		assert_int_equal(out[2], 2);
	}
	/* index scores are refused, not read as floats: -3 > -5 but the bits
	 * of -3 as a float are below those of -5 */
	tg_tensor *ints = tg_from_i32(ctx, SHAPE(1, 2), (int32_t[]){-5, -3});
	out[0] = -1;
	assert_int_equal(tg_argmax_rows(ints, out), -1);
	assert_error(ctx, TG_EDTYPE, "tg_argmax_rows: x is i32; scores are f32 or f64");
	assert_int_equal(out[0], -1);
	tg_ctx_free(ctx);
}

/* ---- batch norm --------------------------------------------------------------------------- */

static void batchnorm_training_normalises_with_the_biased_batch_variance(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_batchnorm bn;
	assert_int_equal(tg_batchnorm_init(&bn, ctx, TG_F64, 2, "bn1"), 0);
	assert_string_equal(tg_name(bn.gamma), "bn1.gamma");
	assert_string_equal(tg_name(bn.beta), "bn1.beta");
	assert_string_equal(tg_name(bn.running_mean), "bn1.running_mean");
	assert_string_equal(tg_name(bn.running_var), "bn1.running_var");
	assert_true(tg_is_param(bn.gamma));
	assert_false(tg_requires_grad(bn.running_mean));
	assert_near(bn.eps, 1e-6, 0);
	assert_near(bn.avg_decay, 0.9, 0);
	double *g = tg_data_mut(bn.gamma), *b = tg_data_mut(bn.beta);
	g[0] = 2, g[1] = 0.5, b[0] = 1, b[1] = -1;
	/* column 0: 1 2 3 6, mean 3, biased var (4+1+0+9)/4 = 3.5
	 * column 1: 0 0 4 4, mean 2, biased var 4 */
	const double xv[8] = {1, 0, 2, 0, 3, 4, 6, 4};
	tg_tensor *y = tg_batchnorm_forward(&bn, f64(ctx, SHAPE(4, 2), xv));
	assert_ctx_ok(ctx);
	const double mean[2] = {3, 2}, var[2] = {3.5, 4}, gm[2] = {2, 0.5}, bt[2] = {1, -1};
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 2; j++) {
			double want =
			    (xv[i * 2 + j] - mean[j]) / sqrt(var[j] + 1e-6) * gm[j] + bt[j];
			assert_near(tg_get(y, (size_t)(i * 2 + j)), want, 1e-12);
		}
	/* running = 0.9 running + 0.1 batch, from 0 and 1 */
	assert_values(bn.running_mean, (double[]){0.3, 0.2}, 2, 1e-12);
	assert_values(bn.running_var, (double[]){0.9 + 0.35, 0.9 + 0.4}, 2, 1e-12);
	tg_ctx_free(ctx);
}

static void batchnorm_evaluation_uses_the_running_statistics(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_batchnorm bn;
	assert_int_equal(tg_batchnorm_init(&bn, ctx, TG_F64, 2, "bn1"), 0);
	bn.eps = 0.01;
	bn.training = false;
	double *g = tg_data_mut(bn.gamma), *b = tg_data_mut(bn.beta);
	double *rm = tg_data_mut(bn.running_mean), *rv = tg_data_mut(bn.running_var);
	g[0] = 2, g[1] = 0.5, b[0] = 1, b[1] = -1;
	rm[0] = 1, rm[1] = -2, rv[0] = 3.99, rv[1] = 0.24;
	/* (x - rm) / sqrt(rv + 0.01) * g + b; sqrt(4) = 2, sqrt(0.25) = 0.5 */
	tg_tensor *x = f64(ctx, SHAPE(3, 2), (double[]){1, 0, 3, -2, -1, 1});
	const double want[6] = {1, 1, 3, -1, -1, 2};
	tg_tensor *y1 = tg_batchnorm_forward(&bn, x);
	tg_tensor *y2 = tg_batchnorm_forward(&bn, x);
	assert_values(y1, want, 6, 1e-12);
	for (int i = 0; i < 6; i++)
		assert_true(tg_get(y1, i) == tg_get(y2, i));
	/* evaluation leaves the running statistics alone, and a batch of one is fine */
	assert_values(bn.running_mean, (double[]){1, -2}, 2, 0);
	assert_values(bn.running_var, (double[]){3.99, 0.24}, 2, 0);
	tg_tensor *y = tg_batchnorm_forward(&bn, f64(ctx, SHAPE(1, 2), (double[]){5, -3}));
	assert_values(y, (double[]){5, -2}, 2, 1e-12);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* Evaluation with no gradient wanted through the layer runs in one pass
 * (nn/layers.c, BN_EVAL): the bits of the ops that evaluation records
 * when a gradient is wanted, for (N,D) and (N,C,...) inputs in f32 and
 * f64, at 1 and 2 threads, with a zero and negative scales, a zero
 * variance, and NaN, infinities, -0 and a value equal to its channel's
 * mean in x. Anomaly
 * mode still checks op by op, and a layer of another dtype than x is
 * still refused. */
static void batchnorm_evaluation_without_gradients_gives_the_bits_of_the_ops(void **state)
{
	(void)state;
	static const struct {
		int nd;
		int64_t shape[4];
	} cases[] = { { 2, { 7, 5 } },	   { 2, { 1, 5 } },	  { 3, { 2, 5, 3 } },
		      { 4, { 3, 5, 4, 4 } }, { 4, { 2, 5, 1, 1 } }, { 2, { 64, 37 } },
		      { 3, { 4, 3, 17 } }, { 2, { 600, 64 } }, { 4, { 40, 8, 12, 12 } } };
	for (int f = 0; f < 2; f++)
		for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
			tg_dtype dt = f ? TG_F64 : TG_F32;
			size_t es = f ? 8 : 4;
			int64_t C = cases[t].shape[1];
			tg_ctx *ctx = tg_ctx_new(SEED + t);
			tg_set_threads(ctx, t >= 7 ? 2 : 1); /* the last two are split */
			tg_batchnorm bn;
			assert_int_equal(tg_batchnorm_init(&bn, ctx, dt, C, "bn"), 0);
			bn.eps = 1e-3;
			bn.training = false;
			tg_tensor *v = tg_rand(ctx, dt, 1, &C, 0, 2);
			assert_int_equal(tg_assign(bn.gamma, tg_randn(ctx, dt, 1, &C, 0, 1.5)), 0);
			assert_int_equal(tg_assign(bn.beta, tg_randn(ctx, dt, 1, &C, 0, 1)), 0);
			assert_int_equal(tg_assign(bn.running_mean, tg_randn(ctx, dt, 1, &C, 0, 1)), 0);
			assert_int_equal(tg_assign(bn.running_var, v), 0);
			tg_tensor *x = tg_randn(ctx, dt, cases[t].nd, cases[t].shape, 0.3, 2);
			size_t n = tg_numel(x);
			char *xd = tg_data_mut(x), *gd = tg_data_mut(bn.gamma);
			char *vd = tg_data_mut(bn.running_var);
			const char *md = tg_data(bn.running_mean);
			double special[4] = { NAN, INFINITY, -INFINITY, -0.0 };
			for (size_t i = 0; i < 4 && i < n; i++) {
				float s32 = (float)special[i];
				memcpy(xd + i * es, f ? (void *)&special[i] : (void *)&s32, es);
			}
			if (n > 4) /* x[4] in channel 4 / inner mod C */
				memcpy(xd + 4 * es,
				       md + (size_t)(4 / (n / (size_t)cases[t].shape[0] / C) % C) * es,
				       es);
			memset(gd, 0, es);   /* gamma[0] = 0 */
			memset(vd, 0, es);   /* var[0] = 0: sqrt(eps) */
			assert_ctx_ok(ctx);

			/* one pass: no gradient wanted, by grad mode or by the tensors */
			bool was = tg_set_grad_enabled(ctx, false);
			tg_tensor *fast = tg_batchnorm_forward(&bn, x);
			tg_set_grad_enabled(ctx, was);
			tg_set_requires_grad(bn.gamma, false);
			tg_set_requires_grad(bn.beta, false);
			tg_tensor *fast2 = tg_batchnorm_forward(&bn, x);
			tg_set_requires_grad(bn.gamma, true);
			tg_set_requires_grad(bn.beta, true);
			/* the ops, recorded: gamma and beta want a gradient */
			tg_tensor *ops = tg_batchnorm_forward(&bn, x);
			assert_ctx_ok(ctx);
			assert_false(tg_requires_grad(fast));
			assert_false(tg_requires_grad(fast2));
			assert_true(tg_requires_grad(ops));
			assert_int_equal(tg_ndim(fast), cases[t].nd);
			for (int d = 0; d < cases[t].nd; d++)
				assert_int_equal(tg_dim(fast, d), cases[t].shape[d]);
			if (memcmp(tg_data(fast), tg_data(ops), n * es) ||
			    memcmp(tg_data(fast2), tg_data(ops), n * es))
				for (size_t i = 0; i < n; i++)
					if (memcmp((const char *)tg_data(fast) + i * es,
						   (const char *)tg_data(ops) + i * es, es))
						fail_msg("case %zu %s: element %zu is %.17g, the ops "
							 "give %.17g",
							 t, f ? "f64" : "f32", i, tg_get(fast, i),
							 tg_get(ops, i));
			assert_true(isnan(tg_get(fast, 0)));

			/* anomaly mode still names the NaN */
			tg_set_anomaly(ctx, true);
			was = tg_set_grad_enabled(ctx, false);
			assert_null(tg_batchnorm_forward(&bn, x));
			assert_error(ctx, TG_EANOMALY, "");
			tg_clear_error(ctx);
			tg_set_anomaly(ctx, false);

			/* an x of the other dtype is refused, not read as this one */
			tg_tensor *other = tg_zeros(ctx, f ? TG_F32 : TG_F64, cases[t].nd,
						    cases[t].shape);
			assert_null(tg_batchnorm_forward(&bn, other));
			assert_error(ctx, TG_EDTYPE, "");
			tg_set_grad_enabled(ctx, was);
			tg_ctx_free(ctx);
		}
}

static void batchnorm_refuses_a_batch_of_one_in_training(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_batchnorm bn;
	assert_int_equal(tg_batchnorm_init(&bn, ctx, TG_F64, 3, "bn2"), 0);
	assert_null(tg_batchnorm_forward(&bn, tg_ones(ctx, TG_F64, SHAPE(1, 3))));
	assert_error(ctx, TG_ESHAPE, "bn2.gamma: a batch of 1");
	assert_values(bn.running_var, (double[]){1, 1, 1}, 3, 0);
	tg_clear_error(ctx);
	assert_null(tg_batchnorm_forward(&bn, tg_ones(ctx, TG_F64, SHAPE(4, 2))));
	assert_error(ctx, TG_ESHAPE, "(4,2) is not (N,3)");
	tg_ctx_free(ctx);
}

/* A negative running variance (loaded from a file made by other means:
 * training never makes one) is refused, naming it, in evaluation with or
 * without gradients and in training, f32 and f64; 0 is fine (eps keeps
 * the root positive). */
static void batchnorm_refuses_a_negative_running_variance(void **state)
{
	(void)state;
	for (int f = 0; f < 2; f++) {
		tg_dtype dt = f ? TG_F64 : TG_F32;
		tg_ctx *ctx = tg_ctx_new(SEED);
		tg_batchnorm bn;
		assert_int_equal(tg_batchnorm_init(&bn, ctx, dt, 3, "bn1"), 0);
		assert_int_equal(tg_assign(bn.running_var,
					   tg_from_f64(ctx, dt, SHAPE(3), (double[]){2, 0, -0.5})),
				 0);
		tg_tensor *x = tg_randn(ctx, dt, SHAPE(4, 3), 0, 1);
		for (int mode = 0; mode < 3; mode++) {
			bn.training = mode == 2;
			tg_tensor *in = mode == 1 ? tg_param(x) : x;
			assert_null(tg_batchnorm_forward(&bn, in));
			assert_error(ctx, TG_EARG,
				     "tg_batchnorm_forward: bn1.running_var holds -0.5 at element "
				     "2; a variance is never negative");
			tg_clear_error(ctx);
		}
		assert_int_equal(tg_assign(bn.running_var,
					   tg_from_f64(ctx, dt, SHAPE(3), (double[]){2, 0, 1})),
				 0);
		bn.training = false;
		tg_tensor *y = tg_batchnorm_forward(&bn, x);
		assert_non_null(y);
		for (size_t i = 0; i < tg_numel(y); i++)
			assert_true(isfinite(tg_get(y, i)));
		assert_ctx_ok(ctx);
		tg_ctx_free(ctx);
	}
}

typedef struct bn_case {
	tg_batchnorm *bn;
	tg_tensor *b; /* the affine layer's bias, not checked */
} bn_case;

/* BN(x @ W + b) with gamma and beta as checked inputs */
static tg_tensor *bn_fn(tg_tensor *const *in, void *user)
{
	bn_case *c = user;
	tg_affine fc = {in[1], c->b};
	tg_batchnorm bn = *c->bn;
	bn.gamma = in[2];
	bn.beta = in[3];
	return tg_batchnorm_forward(&bn, tg_affine_forward(&fc, in[0]));
}

static void batchnorm_after_affine_gradients_match_central_differences(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_batchnorm bn;
	assert_int_equal(tg_batchnorm_init(&bn, ctx, TG_F64, 3, "bn1"), 0);
	bn_case c = {&bn, tg_randn(ctx, TG_F64, SHAPE(3), 0, 1)};
	for (int n = 2; n <= 6; n += 4) {
		tg_tensor *in[4] = {
		    tg_randn(ctx, TG_F64, SHAPE(n, 4), 0, 1),
		    tg_randn(ctx, TG_F64, SHAPE(4, 3), 0, 1),
		    tg_randn(ctx, TG_F64, SHAPE(3), 1, 0.5),
		    tg_randn(ctx, TG_F64, SHAPE(3), 0, 1),
		};
		tg_gradcheck_result r;
		assert_gradcheck(tg_gradcheck(ctx, bn_fn, &c, 4, in, &gc_opts, &r), ctx, &r, 1e-6);
	}
	tg_ctx_free(ctx);
}

/* ---- batch norm over channels: x (N,C,...) -------------------------------------------- */

/* Values for x with channel c shifted and scaled apart, so that a statistic
 * taken over the wrong axis shows. */
static tg_tensor *channel_input(tg_ctx *ctx, int ndim, const int64_t *shape, double phase)
{
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	size_t s = n / (size_t)(shape[0] * shape[1]);
	double *v = malloc(n * sizeof *v);
	assert_non_null(v);
	for (size_t i = 0; i < n; i++) {
		size_t c = i / s % (size_t)shape[1];
		v[i] = (double)c * 3 - 1 + (1 + 0.5 * (double)c) * sin(1.7 * (double)i + phase);
	}
	tg_tensor *x = f64(ctx, ndim, shape, v);
	free(v);
	return x;
}

/* y[n,c,s] = (x - mean[c]) / sqrt(var[c] + eps) g[c] + b[c], in plain double
 * loops over x's layout (N, C, S); mean and var are the batch's (biased)
 * when training, else rm and rv. Writes the batch statistics into bm, bv. */
static void channel_reference(const tg_tensor *x, const double *g, const double *b,
			      const double *rm, const double *rv, double eps, bool training,
			      double *y, double *bm, double *bv)
{
	size_t n = (size_t)tg_dim(x, 0), c = (size_t)tg_dim(x, 1);
	size_t s = tg_numel(x) / (n * c);
	for (size_t k = 0; k < c; k++) {
		double sum = 0, sq = 0;
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < s; j++)
				sum += tg_get(x, (i * c + k) * s + j);
		bm[k] = sum / (double)(n * s);
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < s; j++) {
				double d = tg_get(x, (i * c + k) * s + j) - bm[k];
				sq += d * d;
			}
		bv[k] = sq / (double)(n * s);
		double m = training ? bm[k] : rm[k], v = training ? bv[k] : rv[k];
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < s; j++) {
				size_t at = (i * c + k) * s + j;
				y[at] = (tg_get(x, at) - m) / sqrt(v + eps) * g[k] + b[k];
			}
	}
}

static void batchnorm_normalises_each_channel_of_3d_4d_and_5d_inputs(void **state)
{
	(void)state;
	static const struct {
		int ndim;
		int64_t shape[5];
	} cases[] = {
	    {4, {2, 3, 4, 3}},    /* (N,C,H,W), W = C */
	    {3, {4, 3, 5}},	    /* (N,C,L) */
	    {5, {2, 3, 2, 3, 2}}, /* (N,C,D,H,W) */
	    {4, {1, 3, 2, 2}},    /* one image: 4 values per channel */
	};
	for (size_t t = 0; t < LEN(cases); t++) {
		tg_ctx *ctx = tg_ctx_new(SEED);
		tg_batchnorm bn;
		assert_int_equal(tg_batchnorm_init(&bn, ctx, TG_F64, 3, "bn1"), 0);
		bn.eps = 1e-3;
		double *g = tg_data_mut(bn.gamma), *b = tg_data_mut(bn.beta);
		const double gv[3] = {2, 0.5, -1.5}, bv[3] = {1, -1, 0.25};
		memcpy(g, gv, sizeof gv);
		memcpy(b, bv, sizeof bv);
		tg_tensor *x = channel_input(ctx, cases[t].ndim, cases[t].shape, 0.3);
		size_t n = tg_numel(x);
		double *want = malloc(n * sizeof *want), bm[3], bvar[3];
		assert_non_null(want);
		channel_reference(x, gv, bv, NULL, NULL, 1e-3, true, want, bm, bvar);
		tg_tensor *y = tg_batchnorm_forward(&bn, x);
		assert_ctx_ok(ctx);
		assert_int_equal(tg_ndim(y), cases[t].ndim);
		assert_values(y, want, n, 1e-12);
		/* running = 0.9 running + 0.1 batch per channel, from 0 and 1; the
		 * variance biased, as for (N,D) */
		for (int k = 0; k < 3; k++) {
			assert_near(tg_get(bn.running_mean, k), 0.1 * bm[k], 1e-12);
			assert_near(tg_get(bn.running_var, k), 0.9 + 0.1 * bvar[k], 1e-12);
		}
		/* evaluation: the running statistics per channel, nothing updated */
		double rm[3], rv[3];
		for (int k = 0; k < 3; k++)
			rm[k] = tg_get(bn.running_mean, k), rv[k] = tg_get(bn.running_var, k);
		bn.training = false;
		tg_tensor *x2 = channel_input(ctx, cases[t].ndim, cases[t].shape, 2.0);
		channel_reference(x2, gv, bv, rm, rv, 1e-3, false, want, bm, bvar);
		y = tg_batchnorm_forward(&bn, x2);
		assert_ctx_ok(ctx);
		assert_int_equal(tg_ndim(y), cases[t].ndim);
		assert_values(y, want, n, 1e-12);
		assert_values(bn.running_mean, rm, 3, 0);
		assert_values(bn.running_var, rv, 3, 0);
		free(want);
		tg_ctx_free(ctx);
	}
}

/* BN(x) with x, gamma and beta as checked inputs, in the layer's mode */
static tg_tensor *bn_channels_fn(tg_tensor *const *in, void *user)
{
	tg_batchnorm bn = *(tg_batchnorm *)user;
	bn.gamma = in[1];
	bn.beta = in[2];
	return tg_batchnorm_forward(&bn, in[0]);
}

static void batchnorm_over_channels_gradients_match_central_differences(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_batchnorm bn;
	assert_int_equal(tg_batchnorm_init(&bn, ctx, TG_F64, 3, "bn1"), 0);
	bn.eps = 1e-3;
	double *rm = tg_data_mut(bn.running_mean), *rv = tg_data_mut(bn.running_var);
	rm[0] = 0.5, rm[1] = -1, rm[2] = 2, rv[0] = 0.7, rv[1] = 2.5, rv[2] = 1.2;
	const int64_t shapes[][5] = {{3, 3, 4}, {2, 3, 3, 2}, {2, 3, 2, 2, 2}, {1, 3, 2, 3}};
	const int ndims[] = {3, 4, 5, 4};
	for (size_t t = 0; t < LEN(ndims); t++)
		for (int training = 1; training >= 0; training--) {
			bn.training = training;
			tg_tensor *in[3] = {
			    channel_input(ctx, ndims[t], shapes[t], 0.1 * (double)t),
			    tg_randn(ctx, TG_F64, SHAPE(3), 1, 0.5),
			    tg_randn(ctx, TG_F64, SHAPE(3), 0, 1),
			};
			tg_gradcheck_result r;
			assert_gradcheck(tg_gradcheck(ctx, bn_channels_fn, &bn, 3, in, &gc_opts, &r),
					 ctx, &r, 1e-6);
		}
	tg_ctx_free(ctx);
}

static void batchnorm_over_channels_needs_two_values_per_channel_and_c_at_axis_1(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_batchnorm bn;
	assert_int_equal(tg_batchnorm_init(&bn, ctx, TG_F64, 3, "bn2"), 0);
	/* one image of 1x1 and one sequence of length 1: one value per channel */
	assert_null(tg_batchnorm_forward(&bn, tg_ones(ctx, TG_F64, SHAPE(1, 3, 1, 1))));
	assert_error(ctx, TG_ESHAPE,
		     "tg_batchnorm_forward: bn2.gamma: input (1,3,1,1) has 1 value per channel");
	tg_clear_error(ctx);
	assert_null(tg_batchnorm_forward(&bn, tg_ones(ctx, TG_F64, SHAPE(1, 3, 1))));
	assert_error(ctx, TG_ESHAPE, "input (1,3,1) has 1 value per channel");
	tg_clear_error(ctx);
	assert_values(bn.running_mean, (double[]){0, 0, 0}, 3, 0);
	assert_values(bn.running_var, (double[]){1, 1, 1}, 3, 0);
	/* ... which evaluation takes */
	bn.training = false;
	assert_non_null(tg_batchnorm_forward(&bn, tg_ones(ctx, TG_F64, SHAPE(1, 3, 1, 1))));
	assert_ctx_ok(ctx);
	/* one image of 1x2, and two of 1x1, have 2 values per channel */
	bn.training = true;
	assert_non_null(tg_batchnorm_forward(&bn, channel_input(ctx, SHAPE(1, 3, 1, 2), 0)));
	assert_non_null(tg_batchnorm_forward(&bn, channel_input(ctx, SHAPE(2, 3, 1, 1), 0)));
	assert_ctx_ok(ctx);
	/* C must be axis 1, in either mode */
	for (int training = 1; training >= 0; training--) {
		bn.training = training;
		assert_null(tg_batchnorm_forward(&bn, tg_ones(ctx, TG_F64, SHAPE(2, 4, 3, 3))));
		assert_error(ctx, TG_ESHAPE,
			     "tg_batchnorm_forward: bn2.gamma: input (2,4,3,3) is not (N,3) or "
			     "(N,3,...)");
		tg_clear_error(ctx);
		assert_null(tg_batchnorm_forward(&bn, tg_ones(ctx, TG_F64, SHAPE(2, 2, 3, 3, 3, 3))));
		assert_error(ctx, TG_ESHAPE, "input (2,2,3,3,3,3) is not (N,3) or (N,3,...)");
		tg_clear_error(ctx);
		assert_null(tg_batchnorm_forward(&bn, tg_ones(ctx, TG_F64, SHAPE(3))));
		assert_error(ctx, TG_ESHAPE, "input (3,) is not (N,3) or (N,3,...)");
		tg_clear_error(ctx);
	}
	tg_ctx_free(ctx);
}

/* ---- dropout ------------------------------------------------------------------------------- */

static tg_tensor *dropout_fn(tg_tensor *const *in, void *user)
{
	return tg_dropout_apply(in[0], user, 0.25);
}

static void dropout_with_a_fixed_mask_scales_kept_values_and_checks(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *mask = f64(ctx, SHAPE(2, 3), (double[]){1, 0, 1, 1, 1, 0});
	tg_tensor *x = tg_param(f64(ctx, SHAPE(2, 3), (double[]){3, 5, -6, 0.75, 1.5, 9}));
	tg_tensor *y = tg_dropout_apply(x, mask, 0.25);
	assert_values(y, (double[]){4, 0, -8, 1, 2, 0}, 6, 1e-12);
	assert_int_equal(tg_backward(tg_sum(y)), 0);
	const double k = 1 / 0.75;
	assert_values(tg_grad(x), (double[]){k, 0, k, k, k, 0}, 6, 1e-12);
	tg_tensor *in[1] = {tg_randn(ctx, TG_F64, SHAPE(2, 3), 0, 1)};
	tg_gradcheck_result r;
	assert_gradcheck(tg_gradcheck(ctx, dropout_fn, mask, 1, in, &gc_opts, &r), ctx, &r, 1e-7);
	tg_ctx_free(ctx);
}

static void dropout_mask_comes_from_the_context_generator(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const double p = 0.4;
	tg_tensor *x = tg_randn(ctx, TG_F64, SHAPE(8, 16), 0, 1);
	tg_dropout d = {p, true};
	tg_seed(ctx, 99);
	tg_tensor *y = tg_dropout_forward(&d, x);
	assert_ctx_ok(ctx);
	tg_seed(ctx, 99);
	int kept = 0;
	for (size_t i = 0; i < 128; i++) {
		bool keep = tg_random_uniform(ctx) >= p;
		kept += keep;
		assert_near(tg_get(y, i), keep ? tg_get(x, i) / (1 - p) : 0, 1e-12);
	}
	/* 128 draws with keep probability 0.6: 76.8 expected, sd 5.5 */
	assert_in_range(kept, 55, 99);
	tg_ctx_free(ctx);
}

/* Masks of more draws than tg_dropout_forward takes in one block, of both
 * dtypes: y_i is x_i / (1 - p) computed in x's dtype where the i-th draw
 * u_i >= p, else 0; p down to where p 2^53 is below 1 and near 1; the
 * generator is left after the last draw; the gradient is the mask. */
static void dropout_masks_of_many_blocks_follow_the_draws_exactly(void **state)
{
	(void)state;
	const double ps[] = {1e-300, 0.1, 0.5, 0.75, 0.999};
	for (int f64 = 0; f64 < 2; f64++) {
		for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
			const double p = ps[k];
			tg_ctx *ctx = tg_ctx_new(SEED), *ref = tg_ctx_new(SEED);
			tg_dtype dt = f64 ? TG_F64 : TG_F32;
			tg_tensor *x = tg_param(tg_randn(ctx, dt, SHAPE(37, 29), 0, 1));
			tg_seed(ctx, 5 + k);
			tg_seed(ref, 5 + k);
			tg_dropout d = {p, true};
			tg_tensor *y = tg_dropout_forward(&d, x);
			tg_backward(tg_sum(y));
			assert_ctx_ok(ctx);
			const tg_tensor *g = tg_grad(x);
			for (size_t i = 0; i < 37 * 29; i++) {
				bool keep = tg_random_uniform(ref) >= p;
				double s = 1.0 / (1.0 - p);
				double want = f64 ? tg_get(x, i) * s
						  : (double)((float)tg_get(x, i) * (float)s);
				double wg = f64 ? s : (double)(float)s;
				if (tg_get(y, i) != (keep ? want : 0) || tg_get(g, i) != (keep ? wg : 0))
					fail_msg("%s p %g element %zu: y %.17g grad %.17g, want %.17g "
						 "%.17g",
						 f64 ? "f64" : "f32", p, i, tg_get(y, i), tg_get(g, i),
						 keep ? want : 0, keep ? wg : 0);
			}
			assert_true(tg_random_u64(ctx) == tg_random_u64(ref));
			tg_ctx_free(ctx);
			tg_ctx_free(ref);
		}
	}
}

static void dropout_in_evaluation_is_the_identity(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_randn(ctx, TG_F64, SHAPE(4, 5), 0, 1);
	tg_dropout d = {0.5, false};
	assert_ptr_equal(tg_dropout_forward(&d, x), x);
	d = (tg_dropout){0, true};
	assert_ptr_equal(tg_dropout_forward(&d, x), x);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void dropout_rejects_p_outside_zero_to_one(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_ones(ctx, TG_F64, SHAPE(2, 2));
	const double bad[3] = {1, -0.1, NAN};
	for (int i = 0; i < 3; i++) {
		tg_dropout d = {bad[i], true};
		assert_null(tg_dropout_forward(&d, x));
		assert_error(ctx, TG_EARG, "must be in [0, 1)");
		tg_clear_error(ctx);
	}
	tg_ctx_free(ctx);
}

/* ---- initialisers -----------------------------------------------------------------------------
 */

static void initialiser_names_parse_and_print(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_init in;
	char buf[32];
	assert_int_equal(tg_init_parse(ctx, "std", &in), 0);
	assert_int_equal(in.kind, TG_INIT_STD);
	assert_near(in.std, 0.01, 0);
	assert_int_equal(tg_init_parse(ctx, "std:0.05", &in), 0);
	assert_near(in.std, 0.05, 0);
	assert_string_equal(tg_init_str(in, buf, sizeof buf), "std:0.05");
	assert_int_equal(tg_init_parse(ctx, "lecun", &in), 0);
	assert_int_equal(in.kind, TG_INIT_LECUN);
	assert_int_equal(tg_init_parse(ctx, "glorot", &in), 0);
	assert_int_equal(in.kind, TG_INIT_GLOROT);
	assert_int_equal(tg_init_parse(ctx, "he", &in), 0);
	assert_string_equal(tg_init_str(in, buf, sizeof buf), "he");
	assert_ctx_ok(ctx);
	assert_int_equal(tg_init_parse(ctx, "std:-1", &in), -1);
	assert_error(ctx, TG_EARG, "\"std:-1\"");
	tg_clear_error(ctx);
	assert_int_equal(tg_init_parse(ctx, "xavier", &in), -1);
	assert_error(ctx, TG_EARG, "\"lecun\"");
	tg_clear_error(ctx);
	assert_int_equal(tg_init_parse(ctx, "kaiming", &in), -1);
	assert_error(ctx, TG_EARG, "\"kaiming\"");
	tg_clear_error(ctx);
	/* the largest sizes give a std, with no int64 sum to overflow */
	in = (tg_init){TG_INIT_GLOROT, 0};
	assert_near(tg_init_std(in, INT64_MAX, INT64_MAX), sqrt(1.0 / 0x1p63), 1e-25);
	assert_null(tg_init_weight(ctx, TG_F32, INT64_MAX, 2, in, "w"));
	assert_int_not_equal(tg_status_of(ctx), TG_OK);
	tg_clear_error(ctx);
	/* an empty size is named as such, whatever std the initialiser gives */
	assert_null(tg_init_weight(ctx, TG_F32, 0, 3, (tg_init){TG_INIT_HE, 0}, "fc.W"));
	assert_error(ctx, TG_EARG, "tg_init_weight: fc.W: sizes 0 and 3 must be positive");
	tg_clear_error(ctx);
	assert_null(tg_init_weight(ctx, TG_F32, 3, -1, (tg_init){TG_INIT_STD, 0.01}, NULL));
	assert_error(ctx, TG_EARG, "tg_init_weight: weight: sizes 3 and -1 must be positive");
	tg_clear_error(ctx);
	assert_null(tg_init_vector(ctx, TG_F32, 0, 1, true, "bn.gamma"));
	assert_error(ctx, TG_EARG, "tg_init_vector: bn.gamma: size 0 must be positive");
	tg_clear_error(ctx);
	assert_null(tg_init_vector(ctx, TG_F32, 3, NAN, true, "bn.gamma"));
	assert_error(ctx, TG_EARG, "tg_init_vector: bn.gamma: value nan is not finite");
	tg_ctx_free(ctx);
}

static void initialised_weights_have_the_formula_std(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const int64_t nin = 400, nout = 300;
	const struct {
		tg_init init;
		double std;
	} rows[] = {
	    {{TG_INIT_STD, 0.01}, 0.01},
	    {{TG_INIT_LECUN, 0}, sqrt(1.0 / 400)},
	    {{TG_INIT_GLOROT, 0}, sqrt(2.0 / 700)},
	    {{TG_INIT_HE, 0}, sqrt(2.0 / 400)},
	};
	for (size_t r = 0; r < 4; r++) {
		assert_near(tg_init_std(rows[r].init, nin, nout), rows[r].std, 1e-15);
		for (int dt = TG_F32; dt <= TG_F64; dt++) {
			tg_tensor *W =
			    tg_init_weight(ctx, (tg_dtype)dt, nin, nout, rows[r].init, "fc.W");
			assert_ctx_ok(ctx);
			assert_true(tg_is_param(W));
			assert_string_equal(tg_name(W), "fc.W");
			size_t n = tg_numel(W);
			double s = 0, ss = 0;
			for (size_t i = 0; i < n; i++) {
				double v = tg_get(W, i);
				s += v;
				ss += v * v;
			}
			double mean = s / (double)n, sd = sqrt(ss / (double)n - mean * mean);
			/* 120000 draws: the sample std is within 0.3% of std (1 sd); allow 2% */
			if (fabs(sd / rows[r].std - 1) > 0.02)
				fail_msg("init row %zu: sample std %.6g, formula %.6g", r, sd,
					 rows[r].std);
			assert_true(fabs(mean) < 0.02 * rows[r].std);
		}
	}
	tg_tensor *b = tg_init_vector(ctx, TG_F32, 5, 0, true, "fc.b");
	tg_tensor *g = tg_init_vector(ctx, TG_F32, 5, 1, true, "bn.gamma");
	assert_values(b, (double[]){0, 0, 0, 0, 0}, 5, 0);
	assert_values(g, (double[]){1, 1, 1, 1, 1}, 5, 0);
	tg_ctx_free(ctx);
}

/* ---- the MLP ----------------------------------------------------------------------------------
 */

static void mlp_from_a_spec_lists_its_parameters_in_layer_order(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_mlp_opts o = tg_mlp_defaults();
	o.batchnorm = true;
	o.dtype = TG_F64;
	tg_mlp *m = tg_mlp_new(ctx, "784-100-50-10", &o);
	assert_non_null(m);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_mlp_depth(m), 3);
	assert_int_equal(tg_mlp_width(m, 0), 784);
	assert_int_equal(tg_mlp_width(m, 3), 10);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_mlp_width(m, 4), 0);
	assert_error(ctx, TG_EARG, "tg_mlp_width: size 4 of 784-100-50-10; it has sizes 0 to 3");
	tg_clear_error(ctx);
	assert_int_equal(tg_mlp_width(m, -1), 0);
	assert_error(ctx, TG_EARG, "size -1");
	tg_clear_error(ctx);
	assert_string_equal(tg_mlp_spec(m), "784-100-50-10");
	static const char *const names[] = {
	    "fc1.W",
	    "fc1.b",
	    "bn1.gamma",
	    "bn1.beta",
	    "fc2.W",
	    "fc2.b",
	    "bn2.gamma",
	    "bn2.beta",
	    "fc3.W",
	    "fc3.b",
	    "bn1.running_mean",
	    "bn1.running_var",
	    "bn2.running_mean",
	    "bn2.running_var",
	};
	static const int64_t sizes[] = {78400, 100, 100, 100, 5000, 50, 50,
					50,    500, 10,	 100, 100,  50, 50};
	size_t np, ns;
	tg_tensor *const *p = tg_mlp_params(m, &np);
	tg_tensor *const *s = tg_mlp_state(m, &ns);
	assert_int_equal(np, 10);
	assert_int_equal(ns, 14);
	for (size_t i = 0; i < ns; i++) {
		assert_string_equal(tg_name(s[i]), names[i]);
		assert_int_equal(tg_numel(s[i]), sizes[i]);
		assert_true(i < np ? tg_is_param(s[i]) : !tg_requires_grad(s[i]));
		if (i < np)
			assert_ptr_equal(p[i], s[i]);
	}
	assert_int_equal(tg_dim(p[0], 0), 784);
	assert_int_equal(tg_dim(p[0], 1), 100);
	tg_mlp_free(m);

	/* without batch norm: W and b only, state = params */
	m = tg_mlp_new(ctx, "4-3", NULL);
	p = tg_mlp_params(m, &np);
	tg_mlp_state(m, &ns);
	assert_int_equal(np, 2);
	assert_int_equal(ns, 2);
	assert_string_equal(tg_name(p[0]), "fc1.W");
	assert_int_equal(tg_dtype_of(p[0]), TG_F32);
	tg_mlp_free(m);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void mlp_rejects_bad_specs_naming_them(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	static const struct {
		const char *spec;
		const char *why;
	} rows[] = {
	    {"784-x-10", "size 2 \"x\" is not a positive integer"},
	    {"784", "needs an input and an output size"},
	    {"0-10", "size 1 is 0"},
	    {"784--10", "size 2 \"\""},
	    {"784-10-", "size 3 \"\""},
	    {"", "size 1 \"\""},
	    {"784-10 ", "size 2 \"10 \""},
	    {"784-99999999999-10", "size 2 is 99999999999"},
	    {"1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16-17-18", "more than 16 affine layers"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		assert_null(tg_mlp_new(ctx, rows[i].spec, NULL));
		char want[128];
		snprintf(want, sizeof want, "spec \"%s\"", rows[i].spec);
		assert_error(ctx, TG_EARG, want);
		assert_error(ctx, TG_EARG, rows[i].why);
		tg_clear_error(ctx);
	}
	/* sixteen affine layers are allowed */
	tg_mlp *m = tg_mlp_new(ctx, "1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16-17", NULL);
	assert_non_null(m);
	assert_int_equal(tg_mlp_depth(m), 16);
	tg_mlp_free(m);
	tg_mlp_opts o = tg_mlp_defaults();
	o.dropout = 1;
	assert_null(tg_mlp_new(ctx, "4-3-2", &o));
	assert_error(ctx, TG_EARG, "dropout must be in [0, 1)");
	tg_ctx_free(ctx);
}

/* Forward by hand for "3-2-2" without BN or dropout: relu(x W1 + b1) W2 + b2. */
static void mlp_forward_is_affine_act_affine(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_mlp_opts o = tg_mlp_defaults();
	o.dtype = TG_F64;
	o.act = (tg_act){TG_ACT_TANH, 0};
	tg_mlp *m = tg_mlp_new(ctx, "3-2-2", &o);
	size_t np;
	tg_tensor *const *p = tg_mlp_params(m, &np);
	double *b1 = tg_data_mut(p[1]);
	b1[0] = 0.5, b1[1] = -0.25;
	tg_tensor *x = tg_randn(ctx, TG_F64, SHAPE(4, 3), 0, 1);
	tg_tensor *y = tg_mlp_forward(m, x);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_dim(y, 0), 4);
	assert_int_equal(tg_dim(y, 1), 2);
	for (int n = 0; n < 4; n++) {
		double h[2];
		for (int j = 0; j < 2; j++) {
			h[j] = tg_get(p[1], j);
			for (int i = 0; i < 3; i++)
				h[j] += tg_get(x, (size_t)(n * 3 + i)) *
					tg_get(p[0], (size_t)(i * 2 + j));
			h[j] = tanh(h[j]);
			assert_near(tg_get(tg_mlp_activation(m, 1), (size_t)(n * 2 + j)), h[j],
				    1e-12);
		}
		for (int k = 0; k < 2; k++) {
			double z = tg_get(p[3], k);
			for (int j = 0; j < 2; j++)
				z += h[j] * tg_get(p[2], (size_t)(j * 2 + k));
			assert_near(tg_get(y, (size_t)(n * 2 + k)), z, 1e-12);
		}
	}
	tg_mlp_free(m);
	tg_ctx_free(ctx);
}

static void mlp_evaluation_is_deterministic_and_training_is_not(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_mlp_opts o = tg_mlp_defaults();
	o.batchnorm = true;
	o.dropout = 0.5;
	tg_mlp *m = tg_mlp_new(ctx, "6-8-8-3", &o);
	tg_tensor *x = tg_randn(ctx, TG_F32, SHAPE(5, 6), 0, 1);
	assert_true(tg_mlp_training(m));
	tg_tensor *t1 = tg_mlp_forward(m, x), *t2 = tg_mlp_forward(m, x);
	tg_mlp_train(m, false);
	assert_false(tg_mlp_training(m));
	size_t ns;
	tg_tensor *const *s = tg_mlp_state(m, &ns);
	double rm = tg_get(s[ns - 4], 0); /* bn1.running_mean[0] */
	tg_tensor *e1 = tg_mlp_forward(m, x), *e2 = tg_mlp_forward(m, x);
	assert_ctx_ok(ctx);
	int differ = 0;
	for (size_t i = 0; i < 15; i++) {
		assert_true(tg_get(e1, i) == tg_get(e2, i));
		differ += tg_get(t1, i) != tg_get(t2, i);
	}
	assert_true(differ > 0);		 /* dropout drew two masks */
	assert_true(tg_get(s[ns - 4], 0) == rm); /* evaluation moved no statistic */
	/* a batch of one evaluates */
	assert_non_null(tg_mlp_forward(m, tg_randn(ctx, TG_F32, SHAPE(1, 6), 0, 1)));
	/* and the whole thing trains: a backward reaches every parameter */
	tg_mlp_train(m, true);
	tg_tensor *loss = tg_cross_entropy(tg_mlp_forward(m, x), tg_labels(ctx, 5, (int32_t[]){0, 1, 2, 0, 1}));
	assert_int_equal(tg_backward(loss), 0);
	size_t np;
	tg_tensor *const *p = tg_mlp_params(m, &np);
	for (size_t i = 0; i < np; i++)
		if (!tg_grad(p[i]))
			fail_msg("no gradient reached %s", tg_name(p[i]));
	assert_ctx_ok(ctx);
	tg_mlp_free(m);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(affine_adds_the_bias_to_every_row_and_sums_dout_into_db),
	    cmocka_unit_test(affine_of_a_vector_gives_a_vector),
	    cmocka_unit_test(affine_gradients_match_central_differences),
	    cmocka_unit_test(affine_flattens_a_3d_input_to_rows),
	    cmocka_unit_test(affine_rejects_an_input_that_does_not_fit_W_naming_the_layer),
	    cmocka_unit_test(activation_names_parse_with_their_alphas),
	    cmocka_unit_test(activations_compute_their_formulas),
	    cmocka_unit_test(softmax_cross_entropy_gradient_is_y_minus_t_over_n),
	    cmocka_unit_test(soft_targets_give_y_minus_t_over_n_too),
	    cmocka_unit_test(softmax_cross_entropy_gradients_match_central_differences),
	    cmocka_unit_test(soft_cross_entropy_rejects_targets_of_another_shape),
	    cmocka_unit_test(soft_cross_entropy_rejects_targets_that_are_not_distributions),
	    cmocka_unit_test(weight_penalty_counts_weights_and_not_biases),
	    cmocka_unit_test(argmax_rows_names_the_predicted_class),
	    cmocka_unit_test(batchnorm_training_normalises_with_the_biased_batch_variance),
	    cmocka_unit_test(batchnorm_evaluation_uses_the_running_statistics),
	    cmocka_unit_test(batchnorm_evaluation_without_gradients_gives_the_bits_of_the_ops),
	    cmocka_unit_test(batchnorm_refuses_a_batch_of_one_in_training),
	    cmocka_unit_test(batchnorm_refuses_a_negative_running_variance),
	    cmocka_unit_test(batchnorm_after_affine_gradients_match_central_differences),
	    cmocka_unit_test(batchnorm_normalises_each_channel_of_3d_4d_and_5d_inputs),
	    cmocka_unit_test(batchnorm_over_channels_gradients_match_central_differences),
	    cmocka_unit_test(batchnorm_over_channels_needs_two_values_per_channel_and_c_at_axis_1),
	    cmocka_unit_test(dropout_with_a_fixed_mask_scales_kept_values_and_checks),
	    cmocka_unit_test(dropout_mask_comes_from_the_context_generator),
	    cmocka_unit_test(dropout_masks_of_many_blocks_follow_the_draws_exactly),
	    cmocka_unit_test(dropout_in_evaluation_is_the_identity),
	    cmocka_unit_test(dropout_rejects_p_outside_zero_to_one),
	    cmocka_unit_test(initialiser_names_parse_and_print),
	    cmocka_unit_test(initialised_weights_have_the_formula_std),
	    cmocka_unit_test(mlp_from_a_spec_lists_its_parameters_in_layer_order),
	    cmocka_unit_test(mlp_rejects_bad_specs_naming_them),
	    cmocka_unit_test(mlp_forward_is_affine_act_affine),
	    cmocka_unit_test(mlp_evaluation_is_deterministic_and_training_is_not),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
