/*
 * test_ops_unary.c - forward values of the unary ops (ops/unary.c) and of
 * softmax, log-softmax and cross-entropy (ops/softmax.c) against libm and
 * hand-computed values, in f64 and f32; finiteness for huge inputs; local
 * gradients with a known closed form; the errors these ops report.
 * Gradients in general are checked numerically by the op table's test.
 */
#include "../engine/test_util.h"

/* Every element of t within rtol * |want| + atol of want[i]; prints the
 * first one that is not. */
static void check_values(const char *what, const tg_tensor *t, const double *want, size_t n,
			 double rtol, double atol)
{
	if (!t)
		fail_msg("%s: no tensor", what);
	if (tg_numel(t) != n)
		fail_msg("%s: %zu elements, expected %zu", what, tg_numel(t), n);
	for (size_t i = 0; i < n; i++) {
		double got = tg_get(t, i);
		if (!(fabs(got - want[i]) <= rtol * fabs(want[i]) + atol))
			fail_msg("%s[%zu] = %.15g, expected %.15g (rtol %g, atol %g)", what, i, got,
				 want[i], rtol, atol);
	}
}

static void check_finite(const char *what, const tg_tensor *t)
{
	if (!t)
		fail_msg("%s: no tensor", what);
	for (size_t i = 0; i < tg_numel(t); i++)
		if (!isfinite(tg_get(t, i)))
			fail_msg("%s[%zu] = %g is not finite", what, i, tg_get(t, i));
}

/* ---- unary ops against libm -------------------------------------------------- */

typedef struct {
	const char *name;
	tg_tensor *(*op)(tg_tensor *x);
	double (*ref)(double x);
	bool positive; /* defined for x > 0 only */
} unary_case;

static double ref_neg(double x) { return -x; }
static double ref_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double ref_relu(double x) { return x > 0 ? x : 0; }
static double ref_softplus(double x) { return log(1 + exp(x)); }
static double ref_leaky(double x) { return x > 0 ? x : 0.1 * x; }
static double ref_elu(double x) { return x > 0 ? x : 0.5 * (exp(x) - 1); }
/* Phi(x) = erfc(-x / sqrt 2) / 2 keeps the tail's precision; the form
 * (1 + erf(x / sqrt 2)) / 2 loses digits already at x = -3.5 */
static double ref_gelu(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double ref_silu(double x) { return x / (1 + exp(-x)); }
static tg_tensor *leaky_01(tg_tensor *x) { return tg_leaky_relu(x, 0.1); }
static tg_tensor *elu_05(tg_tensor *x) { return tg_elu(x, 0.5); }

static const unary_case unary_cases[] = {
	{ "neg", tg_neg, ref_neg, false },
	{ "exp", tg_exp, exp, false },
	{ "log", tg_log, log, true },
	{ "sqrt", tg_sqrt, sqrt, true },
	{ "abs", tg_abs, fabs, false },
	{ "sigmoid", tg_sigmoid, ref_sigmoid, false },
	{ "tanh", tg_tanh, tanh, false },
	{ "relu", tg_relu, ref_relu, false },
	{ "leaky_relu(0.1)", leaky_01, ref_leaky, false },
	{ "elu(0.5)", elu_05, ref_elu, false },
	{ "softplus", tg_softplus, ref_softplus, false },
	{ "log1p", tg_log1p, log1p, true },
	{ "expm1", tg_expm1, expm1, false },
	{ "sin", tg_sin, sin, false },
	{ "cos", tg_cos, cos, false },
	{ "erf", tg_erf, erf, false },
	{ "gelu", tg_gelu, ref_gelu, false },
	{ "silu", tg_silu, ref_silu, false },
};

static const double mixed[] = { -3.5, -1.25, -0.3, 0.0, 0.2, 0.75, 1.5, 4.0 };
static const double positive[] = { 0.01, 0.3, 1.0, 2.5, 9.0, 123.0 };

static void unary_ops_match_libm_in_f64(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	for (size_t c = 0; c < LEN(unary_cases); c++) {
		const unary_case *u = &unary_cases[c];
		const double *x = u->positive ? positive : mixed;
		size_t n = u->positive ? LEN(positive) : LEN(mixed);
		double want[16];
		for (size_t i = 0; i < n; i++)
			want[i] = u->ref(x[i]);
		tg_tensor *y = u->op(tg_from_f64(ctx, TG_F64, SHAPE((int64_t)n), x));
		check_values(u->name, y, want, n, 1e-14, 1e-300);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void f32_unary_ops_agree_with_f64(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	for (size_t c = 0; c < LEN(unary_cases); c++) {
		const unary_case *u = &unary_cases[c];
		const double *x = u->positive ? positive : mixed;
		size_t n = u->positive ? LEN(positive) : LEN(mixed);
		double want[16];
		float xf[16];
		for (size_t i = 0; i < n; i++) {
			xf[i] = (float)x[i];
			want[i] = u->ref((double)xf[i]);
		}
		tg_tensor *y = u->op(tg_from_f32(ctx, TG_F32, SHAPE((int64_t)n), xf));
		assert_int_equal(tg_dtype_of(y), TG_F32);
		check_values(u->name, y, want, n, 1e-6, 1e-7);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void relu_zeroes_the_negative_entries(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double x[] = { 1, -0.5, -2, 3 };
	const double want[] = { 1, 0, 0, 3 };
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *y = tg_relu(tg_from_f64(ctx, (tg_dtype)dt, SHAPE(2, 2), x));
		check_values("relu", y, want, 4, 0, 0);
		assert_int_equal(tg_ndim(y), 2);
		assert_int_equal(tg_dim(y, 0), 2);
		assert_int_equal(tg_dim(y, 1), 2);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* dout where x > 0, else +0 whatever dout holds (a select, as PyTorch's
 * threshold_backward): +0, not -0, for a negative dout at x <= 0, and 0,
 * not NaN, for a NaN or infinite one there; a NaN x is masked off. */
static void relu_backward_selects_dout_where_x_is_positive(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double dout[] = { 2, -1, 0.5, -3, INFINITY, NAN, -INFINITY, -4 };
	const double x[] = { 1, -0.5, 0, -2, -1, 0, 3, NAN };
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *d = tg_from_f64(ctx, (tg_dtype)dt, SHAPE(2, 4), dout);
		tg_tensor *t = tg_from_f64(ctx, (tg_dtype)dt, SHAPE(2, 4), x);
		tg_tensor *dx = tg_relu_backward(d, t);
		assert_non_null(dx);
		assert_int_equal(tg_ndim(dx), 2);
		const double want[] = { 2, 0, 0, 0, 0, 0, -INFINITY, 0 };
		for (size_t i = 0; i < 8; i++)
			if (tg_get(dx, i) != want[i] || signbit(tg_get(dx, i)) != signbit(want[i]))
				fail_msg("relu_backward[%zu] = %g, expected %g", i, tg_get(dx, i), want[i]);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void sigmoid_backward_is_dout_times_y_times_one_minus_y(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double dout[] = { 2, -1, 0.5 };
	const double y[] = { 0.5, 0.25, 0.9 };
	const double want[] = { 0.5, -0.1875, 0.045 };
	tg_tensor *d = tg_from_f64(ctx, TG_F64, SHAPE(3), dout);
	tg_tensor *t = tg_from_f64(ctx, TG_F64, SHAPE(3), y);
	check_values("sigmoid_backward", tg_sigmoid_backward(d, t), want, 3, 1e-15, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void sigmoid_tanh_and_softplus_stay_finite_at_1e3(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double x[] = { -1e3, -50, 50, 1e3 };
	const double sig[] = { 0, exp(-50) / (1 + exp(-50)), 1 / (1 + exp(-50)), 1 };
	const double th[] = { -1, -1, 1, 1 };
	const double sp[] = { 0, log1p(exp(-50)), 50, 1e3 };
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		double rtol = dt == TG_F64 ? 1e-14 : 1e-6;
		tg_tensor *t = tg_from_f64(ctx, (tg_dtype)dt, SHAPE(4), x);
		check_values("sigmoid", tg_sigmoid(t), sig, 4, rtol, 0);
		check_values("tanh", tg_tanh(t), th, 4, rtol, 0);
		check_values("softplus", tg_softplus(t), sp, 4, rtol, 0);
		check_finite("elu", tg_elu(t, 1.0));
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- local gradients with a closed form ----------------------------------------- */

/* d op / dx at x, and d^2 op / dx^2 through a TG_CREATE_GRAPH backward. */
static void derivatives(tg_ctx *ctx, tg_tensor *(*op)(tg_tensor *), double x, double *d1,
			double *d2)
{
	tg_tensor *p = tg_param(tg_scalar(ctx, TG_F64, x));
	assert_int_equal(tg_backward_ex(op(p), NULL, TG_CREATE_GRAPH), 0);
	tg_tensor *g = tg_grad(p);
	*d1 = tg_item(g);
	*d2 = 0; /* a gradient without history is constant in x */
	if (tg_requires_grad(g)) {
		tg_zero_grad(p);
		assert_int_equal(tg_backward(g), 0);
		*d2 = tg_item(tg_grad(p));
	}
	assert_ctx_ok(ctx);
	tg_reset(ctx);
}

static tg_tensor *elu_1(tg_tensor *x) { return tg_elu(x, 1.0); }

static double phi(double x) { return exp(-0.5 * x * x) / sqrt(2 * M_PI); }
static double Phi(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

static void first_and_second_derivatives_match_closed_forms(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double x = 0.7, xn = -0.6;
	const double s = 1 / (1 + exp(-x)), t = tanh(x), sn = 1 / (1 + exp(-xn));
	struct {
		const char *name;
		tg_tensor *(*op)(tg_tensor *);
		double at, d1, d2;
	} cases[] = {
		{ "neg", tg_neg, x, -1, 0 },
		{ "exp", tg_exp, x, exp(x), exp(x) },
		{ "log", tg_log, x, 1 / x, -1 / (x * x) },
		{ "sqrt", tg_sqrt, x, 0.5 / sqrt(x), -0.25 / (x * sqrt(x)) },
		{ "abs", tg_abs, xn, -1, 0 },
		{ "sigmoid", tg_sigmoid, x, s * (1 - s), s * (1 - s) * (1 - 2 * s) },
		{ "tanh", tg_tanh, x, 1 - t * t, -2 * t * (1 - t * t) },
		{ "relu", tg_relu, x, 1, 0 },
		{ "elu", elu_1, xn, exp(xn), exp(xn) },
		{ "softplus", tg_softplus, xn, sn, sn * (1 - sn) },
		{ "log1p", tg_log1p, xn, 1 / (1 + xn), -1 / ((1 + xn) * (1 + xn)) },
		{ "expm1", tg_expm1, xn, exp(xn), exp(xn) },
		{ "sin", tg_sin, x, cos(x), -sin(x) },
		{ "cos", tg_cos, x, -sin(x), -cos(x) },
		{ "erf", tg_erf, xn, 2 / sqrt(M_PI) * exp(-xn * xn),
		  -4 * xn / sqrt(M_PI) * exp(-xn * xn) },
		{ "gelu", tg_gelu, xn, Phi(xn) + xn * phi(xn), phi(xn) * (2 - xn * xn) },
		{ "silu", tg_silu, xn, sn * (1 + xn * (1 - sn)),
		  sn * (1 - sn) * (2 + xn * (1 - 2 * sn)) },
	};
	for (size_t c = 0; c < LEN(cases); c++) {
		double d1, d2;
		derivatives(ctx, cases[c].op, cases[c].at, &d1, &d2);
		if (fabs(d1 - cases[c].d1) > 1e-14 || fabs(d2 - cases[c].d2) > 1e-14)
			fail_msg("%s at %g: d1 = %.15g (expected %.15g), "
				 "d2 = %.15g (expected %.15g)",
				 cases[c].name, cases[c].at, d1, cases[c].d1, d2, cases[c].d2);
	}
	tg_ctx_free(ctx);
}

static void gelu_silu_and_erf_give_their_known_values(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		double rtol = dt == TG_F64 ? 1e-15 : 1e-7;
		tg_tensor *one = tg_scalar(ctx, dt, 1), *half = tg_scalar(ctx, dt, 0.5);
		check_values("gelu(1)", tg_gelu(one), (double[]){ 0.8413447460685429 }, 1, rtol, 0);
		check_values("silu(1)", tg_silu(one), (double[]){ 0.7310585786300049 }, 1, rtol, 0);
		check_values("erf(0.5)", tg_erf(half), (double[]){ 0.5204998778130465 }, 1, rtol,
			     0);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* d op / dx at x, for x's dtype: a plain backward */
static double gradient_at(tg_ctx *ctx, tg_tensor *(*op)(tg_tensor *), tg_dtype dt, double x)
{
	tg_tensor *p = tg_param(tg_scalar(ctx, dt, x));
	assert_int_equal(tg_backward(op(p)), 0);
	double g = tg_item(tg_grad(p));
	assert_ctx_ok(ctx);
	tg_reset(ctx);
	return g;
}

/* Values and gradients far in the tails, where the naive forms cancel
 * (1 + erf, y + 1, y + alpha), keep their relative precision; reference
 * values to 15 digits from 30-digit arithmetic. */
static void tails_keep_their_relative_precision_in_f64_and_f32(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		double rtol = dt == TG_F64 ? 1e-13 : 2e-6;
		tg_tensor *m10 = tg_scalar(ctx, dt, -10), *m40 = tg_scalar(ctx, dt, -40);
		tg_tensor *tiny = tg_scalar(ctx, dt, 1e-20);
		check_values("gelu(-10)", tg_gelu(m10), (double[]){ -7.61985302416052607e-23 }, 1,
			     rtol, 0);
		check_values("silu(-40)", tg_silu(m40), (double[]){ -1.69934170211663559e-16 }, 1,
			     rtol, 0);
		check_values("log1p(1e-20)", tg_log1p(tiny), (double[]){ 1e-20 }, 1, rtol, 0);
		check_values("expm1(1e-20)", tg_expm1(tiny), (double[]){ 1e-20 }, 1, rtol, 0);
		double g[4] = {
			gradient_at(ctx, tg_gelu, dt, -10),
			gradient_at(ctx, tg_silu, dt, -40),
			gradient_at(ctx, tg_expm1, dt, -30),
			gradient_at(ctx, elu_1, dt, -17),
		};
		/* elu'(-17) = e^-17 = 4.14e-8: y + alpha would give 0 in f32 */
		const double want[4] = { -7.61840009646481409e-22, -1.65685815956371969e-16,
					 exp(-30), exp(-17) };
		const char *names[4] = { "gelu'(-10)", "silu'(-40)", "expm1'(-30)", "elu'(-17)" };
		for (int k = 0; k < 4; k++)
			if (!(fabs(g[k] - want[k]) <= rtol * fabs(want[k])))
				fail_msg("%s %s = %.15g, expected %.15g (relative %.3g)",
					 dt == TG_F64 ? "f64" : "f32", names[k], g[k], want[k],
					 fabs(g[k] - want[k]) / fabs(want[k]));
	}
	assert_near(4.14e-8, exp(-17), 1e-10); /* the number the f32 elu gradient must give */
	/* silu and gelu far out: exactly x or 0, never NaN */
	tg_tensor *far = tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){ -800, 800 });
	check_values("silu(-800, 800)", tg_silu(far), (double[]){ 0, 800 }, 2, 0, 0);
	check_values("gelu(-800, 800)", tg_gelu(far), (double[]){ 0, 800 }, 2, 0, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* A recorded gelu keeps Phi(x) for its backward pass: its value and its
 * gradient have the bits of an unrecorded gelu and of tg_gelu_backward,
 * which compute erfc afresh, at 1 and 2 threads, over the tails too. */
static void recorded_gelu_gives_the_bits_of_the_unrecorded_one(void **state)
{
	(void)state;
	enum { N = 40000 };
	double *x = malloc(N * sizeof *x), *w = malloc(N * sizeof *w);
	assert_non_null(x);
	assert_non_null(w);
	for (int i = 0; i < N; i++) {
		x[i] = -30.0 + 40.0 * i / N + 1e-3 * (i % 7);
		w[i] = 0.5 + (i % 13) / 7.0;
	}
	x[0] = 0.0, x[1] = -0.0, x[2] = 1e-30, x[3] = -800, x[4] = INFINITY, x[5] = NAN;
	for (int threads = 1; threads <= 2; threads++)
		for (int dt = TG_F32; dt <= TG_F64; dt++) {
			tg_ctx *ctx = tg_ctx_new(3);
			tg_set_threads(ctx, threads);
			tg_tensor *xc = tg_from_f64(ctx, dt, SHAPE(N), x);
			tg_tensor *wc = tg_from_f64(ctx, dt, SHAPE(N), w);
			tg_tensor *p = tg_param(tg_from_f64(ctx, dt, SHAPE(N), x));
			tg_tensor *plain = tg_gelu(xc);
			tg_tensor *rec = tg_gelu(p);
			assert_true(tg_requires_grad(rec));
			assert_int_equal(tg_backward(tg_sum(tg_mul(rec, wc))), 0);
			tg_tensor *want = tg_gelu_backward(wc, xc);
			assert_ctx_ok(ctx);
			assert_tensor_bits("gelu", plain, rec);
			assert_tensor_bits("gelu's gradient", want, tg_grad(p));
			tg_ctx_free(ctx);
		}
	free(x);
	free(w);
}

/* softplus's and silu's fused local gradients have the bits of their rules
 * as ops (dout sigmoid(x); dout (s (x (1 - s) + 1))), at 1 and 2 threads,
 * over the tails, signed zeros, infinities and NaN; and a recorded
 * backward pass through them gives those bits too. */
static void softplus_and_silu_backward_give_the_bits_of_their_ops(void **state)
{
	(void)state;
	enum { N = 40000 };
	double *x = malloc(N * sizeof *x), *w = malloc(N * sizeof *w);
	assert_non_null(x);
	assert_non_null(w);
	for (int i = 0; i < N; i++) {
		x[i] = -120.0 + 200.0 * i / N + 1e-3 * (i % 7);
		w[i] = (i % 3 ? 0.5 : -1.5) + (i % 13) / 7.0;
	}
	x[0] = 0.0, x[1] = -0.0, x[2] = 1e-30, x[3] = -800, x[4] = INFINITY, x[5] = NAN;
	x[6] = -INFINITY, x[7] = 800, x[8] = -1e-30;
	for (int threads = 1; threads <= 2; threads++)
		for (int dt = TG_F32; dt <= TG_F64; dt++) {
			tg_ctx *ctx = tg_ctx_new(3);
			tg_set_threads(ctx, threads);
			tg_tensor *xc = tg_from_f64(ctx, dt, SHAPE(N), x);
			tg_tensor *wc = tg_from_f64(ctx, dt, SHAPE(N), w);
			tg_tensor *s = tg_sigmoid(xc);
			tg_tensor *one_minus_s = tg_add_scalar(tg_neg(s), 1.0);
			tg_tensor *silu_local =
			    tg_mul(s, tg_add_scalar(tg_mul(xc, one_minus_s), 1.0));
			assert_tensor_bits("softplus_backward", tg_softplus_backward(wc, xc),
					 tg_mul(wc, s));
			assert_tensor_bits("silu_backward", tg_silu_backward(wc, xc),
					 tg_mul(wc, silu_local));
			tg_tensor *p = tg_param(tg_from_f64(ctx, dt, SHAPE(N), x));
			assert_int_equal(tg_backward(tg_sum(tg_mul(tg_silu(p), wc))), 0);
			assert_tensor_bits("silu's gradient", tg_grad(p), tg_mul(wc, silu_local));
			assert_ctx_ok(ctx);
			tg_ctx_free(ctx);
		}
	free(x);
	free(w);
}

/* pow's fused local gradient has the bits of its rule as ops, dout *
 * (x^(p-1) * p), for exponents with their own kernels (2, 1, 0: x x, x,
 * 1 / x) and SLEEF's, at 1 and 2 threads, over signed zeros, infinities,
 * NaN and values of every scale; a recorded backward pass gives them too.
 * p = 0 gives zeros instead. */
static void pow_backward_gives_the_bits_of_its_ops(void **state)
{
	(void)state;
	enum { N = 20000 };
	static const double ps[] = { 2, 3, 1, 0, -1, 0.5, -2.5, 1.1 };
	double *x = malloc(N * sizeof *x), *w = malloc(N * sizeof *w);
	assert_non_null(x);
	assert_non_null(w);
	for (int i = 0; i < N; i++) {
		x[i] = (i % 2 ? -1 : 1) * pow(10.0, -30.0 + 60.0 * i / N) + (i % 5) / 3.0;
		w[i] = (i % 3 ? 0.5 : -1.5) + (i % 13) / 7.0;
	}
	x[0] = 0.0, x[1] = -0.0, x[2] = INFINITY, x[3] = -INFINITY, x[4] = NAN, x[5] = 1.0;
	for (int threads = 1; threads <= 2; threads++)
		for (int dt = TG_F32; dt <= TG_F64; dt++)
			for (size_t k = 0; k < LEN(ps); k++) {
				tg_ctx *ctx = tg_ctx_new(3);
				tg_set_threads(ctx, threads);
				tg_tensor *xc = tg_from_f64(ctx, dt, SHAPE(N), x);
				tg_tensor *wc = tg_from_f64(ctx, dt, SHAPE(N), w);
				/* p = 0: zeros throughout, as PyTorch (x^0 is 1; the ops'
				 * 0 x^-1 would be NaN at x = 0), and so the second
				 * derivative of x^1 */
				tg_tensor *want =
					ps[k] == 0 ? tg_zeros(ctx, dt, SHAPE(N))
						   : tg_mul(wc, tg_mul_scalar(tg_pow(xc, ps[k] - 1), ps[k]));
				assert_tensor_bits("pow_backward", tg_pow_backward(wc, xc, ps[k]), want);
				tg_tensor *p = tg_param(tg_from_f64(ctx, dt, SHAPE(N), x));
				assert_int_equal(tg_backward(tg_sum(tg_mul(tg_pow(p, ps[k]), wc))), 0);
				assert_tensor_bits("pow's gradient", tg_grad(p), want);
				assert_ctx_ok(ctx);
				tg_ctx_free(ctx);
			}
	free(x);
	free(w);
}

/* x^0 is 1 and x^1 is x everywhere, so their second and third derivatives
 * are zeros at every x, as PyTorch has them: at zeros and infinities too,
 * where the rule's 0 x^-2 would be NaN. */
static void pow_derivatives_past_the_exponent_are_zeros_everywhere(void **state)
{
	(void)state;
	static const double x[] = { 0.0, -0.0, INFINITY, -INFINITY, 4.9e-324, 1e300, -2.5, 3 };
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int p = 0; p <= 1; p++) {
			tg_ctx *ctx = tg_ctx_new(1);
			tg_tensor *in = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(LEN(x)), x), true);
			tg_tensor *y = tg_sum(tg_pow(in, p)), *g = NULL;
			/* derivative p + 2 of x^p */
			for (int k = 0; k <= p + 1; k++) {
				assert_int_equal(tg_grad_of(1, &y, NULL, 1, &in, &g,
							    TG_CREATE_GRAPH | TG_ALLOW_UNUSED),
						 0);
				y = tg_sum(g);
			}
			for (size_t i = 0; i < LEN(x); i++)
				if (tg_get(g, i) != 0)
					fail_msg("x^%d: derivative %d at x = %g is %g, expected 0", p,
						 p + 2, x[i], tg_get(g, i));
			assert_ctx_ok(ctx);
			tg_ctx_free(ctx);
		}
}

static void pow_backward_rejects_different_shapes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *d = tg_zeros(ctx, TG_F32, SHAPE(2, 3)), *x = tg_zeros(ctx, TG_F32, SHAPE(6));
	assert_null(tg_pow_backward(d, x, 2));
	assert_error(ctx, TG_ESHAPE,
		     "tg_pow_backward: dout (2,3) and x (6,) must have the same shape");
	tg_ctx_free(ctx);
}

/* pow: x^2, x^1 and x^-1 are the one correctly rounded operation each
 * (x x, x, 1 / x), bit for bit; other exponents SLEEF's pow, within 1 ULP
 * of libm's and with its NaN, infinities and zeros (signs included); over
 * finite values of every scale, subnormals, signed zeros, infinities and
 * NaN; and the gradient of x^2 is 2 x exactly. (tests/ops/test_ulp.c
 * measures pow's error against long double over dense ranges.) */
/* sqrt, abs, log1p, expm1, sin, cos and erf take a plain backward in one
 * pass; a TG_CREATE_GRAPH backward runs the rules' ops. Both must give the
 * same bits, on 1 and 2 threads (split from 8192 or 32768 elements), f32
 * and f64, over zeros of both signs, infinities, NaN, the negative numbers
 * outside sqrt's and log1p's domains and ordinary values, with dout of
 * every sign (w). */
typedef tg_tensor *(*unary_fn)(tg_tensor *);

static void one_pass_rules_give_the_bits_of_their_ops(void **state)
{
	(void)state;
	static const struct {
		unary_fn f;
		const char *name;
	} ops[] = { { tg_sqrt, "sqrt" }, { tg_abs, "abs" }, { tg_log1p, "log1p" },
		    { tg_expm1, "expm1" }, { tg_sin, "sin" }, { tg_cos, "cos" },
		    { tg_erf, "erf" } };
	enum { N = 40000 };
	double *x = malloc(N * sizeof *x), *w = malloc(N * sizeof *w);
	assert_true(x && w);
	for (int i = 0; i < N; i++) {
		x[i] = (i % 3 - 1) * pow(10.0, -8.0 + 10.0 * i / N) * (1 + (i % 7) / 3.0);
		w[i] = (i % 5 ? 0.75 : -1.25) + (i % 13) / 7.0;
	}
	const double special[] = { 0.0, -0.0, INFINITY, -INFINITY, NAN, -1.0, -2.5, 1e-300 };
	for (size_t k = 0; k < LEN(special); k++)
		x[k * 997] = special[k];
	w[5] = 0.0, w[6] = -0.0;
	static const int sizes[] = { N, 100 };
	for (size_t o = 0; o < LEN(ops); o++)
		for (int c = 0; c < 2 * 2 * 2; c++) {
			int threads = 1 + c % 2;
			tg_dtype dt = c / 2 % 2 ? TG_F64 : TG_F32;
			int64_t n = sizes[c / 4];
			tg_ctx *ctx = tg_ctx_new(3);
			tg_set_threads(ctx, threads);
			tg_tensor *X = tg_param(tg_from_f64(ctx, dt, SHAPE(n), x));
			tg_tensor *W = tg_keep(tg_from_f64(ctx, dt, SHAPE(n), w));
			tg_tensor *g[2];
			for (int pass = 0; pass < 2; pass++) {
				tg_zero_grad(X);
				tg_tensor *y = tg_sum(tg_mul(ops[o].f(X), W));
				assert_int_equal(tg_backward_ex(y, NULL, pass ? TG_CREATE_GRAPH : 0), 0);
				assert_ctx_ok(ctx);
				g[pass] = tg_keep(tg_grad(X));
				tg_reset(ctx);
			}
			char what[64];
			snprintf(what, sizeof what, "%s's gradient, %s, %d threads, n %lld",
				 ops[o].name, dt == TG_F64 ? "f64" : "f32", threads, (long long)n);
			assert_tensor_bits(what, g[0], g[1]);
			tg_ctx_free(ctx);
		}
	free(x);
	free(w);
}

static void pow_gives_the_bits_of_one_rounding_or_sleefs_bound(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	enum { N = 64 };
	double v[N] = { 0.0, -0.0, INFINITY, -INFINITY, NAN, 1e-310, -4e-320, 1e300, -3e-200,
			1, -1, 0.5, 3 };
	uint64_t seed = 7;
	for (int i = 13; i < N; i++) {
		seed = seed * 6364136223846793005u + 1442695040888963407u;
		double m = (double)(seed >> 11) / 9007199254740992.0 - 0.5;
		v[i] = ldexp(m, (int)(seed % 120) - 60);
	}
	const double ps[] = { 2, 1, -1, 3, 0.5, -2.5 };
	for (int dti = 0; dti < 2; dti++) {
		tg_dtype dt = dti ? TG_F32 : TG_F64;
		tg_tensor *x = tg_from_f64(ctx, dt, 1, (int64_t[]){ N }, v);
		for (size_t q = 0; q < sizeof ps / sizeof ps[0]; q++) {
			tg_tensor *y = tg_pow(x, ps[q]);
			assert_non_null(y);
			for (int i = 0; i < N; i++) {
				double got, want;
				if (dti) {
					float a = ((const float *)tg_data(x))[i], p = (float)ps[q];
					float w = p == 2 ? a * a : p == 1 ? a : p == -1 ? 1 / a : powf(a, p);
					got = ((const float *)tg_data(y))[i], want = w;
				} else {
					double a = v[i], p = ps[q];
					want = p == 2 ? a * a : p == 1 ? a : p == -1 ? 1 / a : pow(a, p);
					got = ((const double *)tg_data(y))[i];
				}
				bool one_rounding = ps[q] == 2 || ps[q] == 1 || ps[q] == -1;
				bool ok;
				if (isnan(want))
					ok = isnan(got);
				else if (one_rounding || isinf(want) || want == 0)
					ok = !memcmp(&got, &want, sizeof got);
				else {
					int e = ilogb(want), emin = dti ? -126 : -1022;
					double ulp = ldexp(1, (e < emin ? emin : e) - (dti ? 23 : 52));
					ok = fabs(got - want) <= ulp;
				}
				if (!ok)
					fail_msg("%s: (%a)^%g = %a, expected %a%s", dti ? "f32" : "f64",
						 v[i], ps[q], got, want,
						 one_rounding ? "" : " within 1 ULP");
			}
		}
		tg_tensor *w = tg_param(tg_from_f64(ctx, dt, 1, (int64_t[]){ N }, v));
		assert_int_equal(tg_backward(tg_sum(tg_pow(w, 2))), 0);
		for (int i = 0; i < N; i++) {
			double a = tg_get(x, (size_t)i), g = tg_get(tg_grad(w), (size_t)i);
			double want = dti ? (double)((float)a * 2.0f) : a * 2;
			if (!(g == want || (isnan(g) && isnan(want))))
				fail_msg("d(x^2)/dx at %a = %a, expected %a", a, g, want);
		}
		tg_reset(ctx);
	}
	tg_ctx_free(ctx);
}

static void gelu_backward_rejects_different_shapes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *d = tg_zeros(ctx, TG_F64, SHAPE(2, 3)), *x = tg_zeros(ctx, TG_F64, SHAPE(3));
	assert_null(tg_gelu_backward(d, x));
	assert_error(ctx, TG_ESHAPE,
		     "tg_gelu_backward: dout (2,3) and x (3,) must have the same shape");
	tg_ctx_free(ctx);
}

static void softplus_and_silu_backward_reject_different_shapes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *d = tg_zeros(ctx, TG_F64, SHAPE(2, 3)), *x = tg_zeros(ctx, TG_F64, SHAPE(3));
	assert_null(tg_softplus_backward(d, x));
	assert_error(ctx, TG_ESHAPE,
		     "tg_softplus_backward: dout (2,3) and x (3,) must have the same shape");
	tg_ctx_free(ctx);
	ctx = tg_ctx_new(1);
	d = tg_zeros(ctx, TG_F32, SHAPE(4)), x = tg_zeros(ctx, TG_F32, SHAPE(4, 1));
	assert_null(tg_silu_backward(d, x));
	assert_error(ctx, TG_ESHAPE,
		     "tg_silu_backward: dout (4,) and x (4,1) must have the same shape");
	assert_null(tg_silu_backward(NULL, x));
	tg_ctx_free(ctx);
}

static void relu_and_abs_have_zero_gradient_at_zero(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double x[] = { -1, 0, 2 };
	tg_tensor *p = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(3), x));
	tg_backward(tg_sum(tg_add(tg_relu(p), tg_abs(p))));
	const double want[] = { -1, 0, 2 }; /* relu' + abs' */
	check_values("d(relu + abs)/dx", tg_grad(p), want, 3, 0, 0);
	tg_zero_grad(p);
	tg_backward(tg_sum(tg_leaky_relu(p, 0.25)));
	const double leaky[] = { 0.25, 0.25, 1 };
	check_values("d leaky_relu/dx", tg_grad(p), leaky, 3, 0, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- softmax, log-softmax, cross-entropy ------------------------------------------ */

/* Rows shorter than 512 go through the exp a block of rows at a time, and
 * rows of up to 8 through loops of their own length: on 1 and 2 threads,
 * for row lengths 1 to 513, softmax, log_softmax and their
 * gradients (and cross-entropy's) of each row of a batch have the bits of
 * that row alone, a batch of one row (cross-entropy's gradient with the
 * batch's 1/N moved into dout, the same products); cross-entropy's loss is
 * the mean of the rows' losses (f64, within 1e-14). */
static void rows_in_blocks_give_the_bits_of_each_row_alone(void **state)
{
	(void)state;
	static const int64_t lengths[] = { 1, 2, 3, 4, 5, 6, 7, 8, 10, 37, 255, 511, 513 };
	enum { R = 300 };
	for (size_t c = 0; c < LEN(lengths) * 2 * 2; c++) {
		const int64_t k = lengths[c % LEN(lengths)];
		const int threads = 1 + (int)(c / LEN(lengths) % 2);
		const tg_dtype dt = c / LEN(lengths) / 2 ? TG_F64 : TG_F32;
		tg_ctx *ctx = tg_ctx_new(11);
		tg_set_threads(ctx, threads);
		tg_tensor *x = tg_param(tg_randn(ctx, dt, SHAPE(R, k), 0, 3));
		tg_tensor *w = tg_keep(tg_randn(ctx, dt, SHAPE(R, k), 0, 1));
		int32_t lab[R];
		for (int r = 0; r < R; r++)
			lab[r] = (int32_t)((r * 7) % k);
		tg_tensor *(*const fs[2])(tg_tensor *) = { tg_softmax, tg_log_softmax };
		for (int f = 0; f < 3; f++) {
			/* the batch */
			tg_zero_grad(x);
			tg_tensor *y = f < 2 ? fs[f](x) : NULL;
			tg_tensor *loss = f < 2 ? tg_sum(tg_mul(y, w))
						: tg_cross_entropy(x, tg_labels(ctx, R, lab));
			assert_int_equal(tg_backward(loss), 0);
			assert_ctx_ok(ctx);
			tg_tensor *yk = y ? tg_keep(y) : NULL, *gk = tg_keep(tg_grad(x));
			double lsum = 0, lk = tg_item(loss);
			tg_reset(ctx);
			for (int r = 0; r < R; r++) {
				tg_zero_grad(x);
				tg_tensor *xr = tg_slice(x, 0, r, 1);
				tg_tensor *yr = f < 2 ? fs[f](xr) : NULL;
				tg_tensor *lr = f < 2 ? tg_sum(tg_mul(yr, tg_slice(w, 0, r, 1)))
						      : tg_cross_entropy(xr, tg_labels(ctx, 1, lab + r));
				if (f == 2) {
					lsum += tg_item(lr);
					lr = tg_mul_scalar(lr, 1.0 / R);
				}
				assert_int_equal(tg_backward(lr), 0);
				assert_ctx_ok(ctx);
				const tg_tensor *g = tg_grad(x);
				for (int64_t j = 0; j < k; j++) {
					size_t at = (size_t)(r * k + j);
					double a = tg_get(gk, at), b = tg_get(g, at);
					double u = yr ? tg_get(yk, at) : 0, v = yr ? tg_get(yr, (size_t)j) : 0;
					if (memcmp(&a, &b, sizeof a) || memcmp(&u, &v, sizeof u))
						fail_msg("%s, k %lld, %s, %d threads, row %d, element "
							 "%lld: %a and gradient %a in the batch, %a and "
							 "%a alone",
							 f == 0 ? "softmax" : f == 1 ? "log_softmax"
										 : "cross_entropy",
							 (long long)k, dt == TG_F64 ? "f64" : "f32",
							 threads, r, (long long)j, u, a, v, b);
				}
				tg_reset(ctx);
			}
			if (f == 2 && dt == TG_F64 && !(fabs(lk - lsum / R) <= 1e-14 * fabs(lk)))
				fail_msg("cross_entropy, k %lld: %.17g for the batch, %.17g the mean of "
					 "its rows",
					 (long long)k, lk, lsum / R);
		}
		tg_ctx_free(ctx);
	}
}

/* f (softmax or log_softmax) of x along axis as the last axis of x with
 * that axis moved to the end, moved back: the reference for the lanes. */
static tg_tensor *through_last_axis(tg_tensor *(*f)(tg_tensor *), tg_tensor *x, int axis)
{
	int n = tg_ndim(x), to[TG_MAX_DIMS], back[TG_MAX_DIMS];
	for (int i = 0, k = 0; i < n; i++)
		if (i != axis)
			to[k++] = i;
	to[n - 1] = axis;
	for (int i = 0; i < n; i++)
		back[to[i]] = i;
	return tg_permute(f(tg_permute(x, to)), back);
}

/* The values of softmax and log_softmax along the axes before the last
 * (lanes fewer than a chunk, a chunk and a part, several slices), and the
 * gradients of sum(y w) and of the second order sum(dx^2), against the
 * same taken along the last axis through permutes: within a few roundings
 * (f64: 1e-13; f32: 1e-5, sums in double on both paths but in another
 * order), and with the same bits at 1, 2 and 3 threads; an axis with only
 * axes of 1 after it takes the row kernels. */
static void softmax_along_any_axis_matches_the_last_axis_through_permutes(void **state)
{
	(void)state;
	static const struct {
		int ndim, axis;
		int64_t shape[4];
	} cases[] = { { 2, 0, { 7, 3 } },	    { 3, 1, { 3, 5, 4 } },     { 3, 1, { 2, 9, 300 } },
		      { 4, 1, { 2, 6, 17, 19 } }, { 3, 0, { 33, 2, 257 } }, { 4, 2, { 2, 3, 5, 2 } },
		      { 3, -2, { 4, 1, 6 } },	  { 3, 1, { 3, 5, 1 } },     { 4, 1, { 2, 4, 1, 1 } } };
	tg_tensor *(*const fs[2])(tg_tensor *) = { tg_softmax, tg_log_softmax };
	tg_tensor *(*const fa[2])(tg_tensor *, int) = { tg_softmax_axis, tg_log_softmax_axis };
	for (size_t c = 0; c < LEN(cases); c++)
		for (int f = 0; f < 2; f++)
			for (int d = 0; d < 2; d++) {
				tg_dtype dt = d ? TG_F64 : TG_F32;
				int nd = cases[c].ndim, axis = cases[c].axis < 0 ? cases[c].axis + nd
									      : cases[c].axis;
				tg_tensor *got[3][3]; /* threads: y, dx, the second order's dx */
				tg_ctx *ctxs[3];
				for (int t = 0; t < 3; t++) {
					tg_ctx *ctx = ctxs[t] = tg_ctx_new(5);
					tg_set_threads(ctx, t + 1);
					const int64_t *sh = cases[c].shape;
					tg_tensor *x = tg_param(tg_randn(ctx, dt, nd, sh, 0, 3));
					tg_tensor *w = tg_randn(ctx, dt, nd, sh, 0, 1);
					tg_tensor *y = fa[f](x, cases[c].axis);
					tg_tensor *dx = NULL;
					assert_int_equal(tg_grad_of(1, (tg_tensor *[]){ tg_sum(tg_mul(y, w)) },
								    NULL, 1, &x, &dx, TG_CREATE_GRAPH),
							 0);
					assert_int_equal(tg_backward(tg_sum(tg_mul(dx, dx))), 0);
					assert_ctx_ok(ctx);
					got[t][0] = y, got[t][1] = dx, got[t][2] = tg_grad(x);
					if (t)
						for (int s = 0; s < 3; s++)
							assert_tensor_bits("softmax along an axis at 2 and 3 "
									   "threads",
									   got[t][s], got[0][s]);
					if (t)
						continue;
					tg_tensor *xr = tg_param(tg_detach(x));
					tg_tensor *yr = through_last_axis(fs[f], xr, axis), *dxr = NULL;
					assert_int_equal(tg_grad_of(1, (tg_tensor *[]){ tg_sum(tg_mul(yr, w)) },
								    NULL, 1, &xr, &dxr, TG_CREATE_GRAPH),
							 0);
					assert_int_equal(tg_backward(tg_sum(tg_mul(dxr, dxr))), 0);
					assert_ctx_ok(ctx);
					tg_tensor *want[3] = { yr, dxr, tg_grad(xr) };
					double tol = d ? 1e-13 : 1e-5;
					for (int s = 0; s < 3; s++)
						for (size_t i = 0; i < (size_t)tg_numel(yr); i++) {
							double a = tg_get(got[0][s], i), b = tg_get(want[s], i);
							if (!(fabs(a - b) <= tol * (1 + fabs(b))))
								fail_msg("%s along axis %d of case %zu, %s, %s[%zu]: "
									 "%.17g, through permutes %.17g",
									 f ? "log_softmax" : "softmax", axis, c,
									 d ? "f64" : "f32",
									 (const char *[]){ "y", "dx", "d2x" }[s], i, a,
									 b);
						}
				}
				for (int t = 0; t < 3; t++)
					tg_ctx_free(ctxs[t]);
			}
}

/* logsumexp along each axis of shapes whose rows are longer than a chunk
 * or whose lanes make a chunk and a part: values within a few roundings
 * (of the max's and the result's size, plus 1 for ln of a sum near 1) of a
 * long double reference, the same bits at 1, 2 and 3 threads; keepdim's
 * shape; and slices with +inf, -inf only, and a NaN. */
static void logsumexp_matches_a_long_double_reference(void **state)
{
	(void)state;
	static const struct {
		int ndim;
		int64_t shape[3];
	} cases[] = { { 2, { 3, 700 } }, { 3, { 2, 5, 300 } }, { 1, { 9 } }, { 3, { 40, 3, 2 } },
		      { 3, { 4, 6, 1 } } };
	for (size_t c = 0; c < LEN(cases); c++)
		for (int d = 0; d < 2; d++)
			for (int axis = -cases[c].ndim; axis < cases[c].ndim; axis++) {
				tg_dtype dt = d ? TG_F64 : TG_F32;
				int nd = cases[c].ndim, a = axis < 0 ? axis + nd : axis;
				const int64_t *sh = cases[c].shape;
				tg_tensor *ys[3];
				tg_ctx *ctxs[3];
				for (int t = 0; t < 3; t++) {
					ctxs[t] = tg_ctx_new(9);
					tg_set_threads(ctxs[t], t + 1);
					tg_tensor *x = tg_randn(ctxs[t], dt, nd, sh, 0, 20);
					ys[t] = tg_logsumexp(x, axis, t == 1);
					assert_ctx_ok(ctxs[t]);
					assert_int_equal(tg_ndim(ys[t]), t == 1 ? nd : nd - 1);
					if (t)
						assert_int_equal(memcmp(tg_data(ys[t]), tg_data(ys[0]),
									tg_numel(ys[0]) *
										(d ? 8 : 4)),
								 0);
					if (t)
						continue;
					size_t outer = 1, inner = 1, k = (size_t)sh[a];
					for (int i = 0; i < nd; i++)
						if (i < a)
							outer *= (size_t)sh[i];
						else if (i > a)
							inner *= (size_t)sh[i];
					for (size_t o = 0; o < outer; o++)
						for (size_t l = 0; l < inner; l++) {
							long double m = -INFINITY, sum = 0;
							for (size_t r = 0; r < k; r++)
								m = fmaxl(m, tg_get(x, (o * k + r) * inner + l));
							for (size_t r = 0; r < k; r++)
								sum += expl(tg_get(x, (o * k + r) * inner + l) - m);
							long double want = m + logl(sum);
							double got = tg_get(ys[0], o * inner + l);
							if (!(fabsl(got - want) <= (d ? 4e-16L : 1.2e-7L) * (fabsl(m) + fabsl(want) + 1)))
								fail_msg("logsumexp along axis %d of case %zu, %s, "
									 "[%zu]: %.17g, the reference %.17Lg",
									 axis, c, d ? "f64" : "f32", o * inner + l,
									 got, want);
						}
				}
				for (int t = 0; t < 3; t++)
					tg_ctx_free(ctxs[t]);
			}
	tg_ctx *ctx = tg_ctx_new(1);
	const double v[] = { 1, INFINITY, 2, -INFINITY, -INFINITY, -INFINITY, 3, NAN, 0, 1e300, 1e300, 0 };
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(4, 3), v);
	tg_tensor *y = tg_logsumexp(x, 1, false);
	assert_ctx_ok(ctx);
	assert_true(isinf(tg_get(y, 0)) && tg_get(y, 0) > 0);
	assert_true(isinf(tg_get(y, 1)) && tg_get(y, 1) < 0);
	assert_true(isnan(tg_get(y, 2)));
	assert_true(fabs(tg_get(y, 3) - (1e300 + log(2.0))) <= 1e285);
	tg_ctx_free(ctx);
}

/* A plain backward's one-pass gradient has the bits of the rule's ops
 * (a recorded backward), along the last axis and others, keepdim or not,
 * and at 1 and 2 threads. */
static void logsumexp_plain_gradient_has_the_bits_of_its_ops(void **state)
{
	(void)state;
	static const struct {
		int ndim, axis;
		int64_t shape[3];
	} cases[] = { { 2, 1, { 30, 700 } }, { 3, 1, { 2, 5, 300 } }, { 3, 0, { 40, 3, 2 } },
		      { 1, 0, { 9 } } };
	for (size_t c = 0; c < LEN(cases); c++)
		for (int d = 0; d < 2; d++)
			for (int t = 1; t <= 2; t++)
				for (int keep = 0; keep < 2; keep++) {
					tg_ctx *ctx = tg_ctx_new(3);
					tg_set_threads(ctx, t);
					tg_dtype dt = d ? TG_F64 : TG_F32;
					int nd = cases[c].ndim;
					tg_tensor *x = tg_param(tg_randn(ctx, dt, nd, cases[c].shape, 0, 4));
					tg_tensor *y = tg_logsumexp(x, cases[c].axis, keep);
					tg_tensor *w = tg_randn(ctx, dt, tg_ndim(y), tg_shape(y), 0, 1);
					tg_tensor *loss = tg_sum(tg_mul(y, w)), *rec = NULL;
					assert_int_equal(tg_grad_of(1, &loss, NULL, 1, &x, &rec,
								    TG_CREATE_GRAPH),
							 0);
					assert_int_equal(tg_backward(loss), 0);
					assert_ctx_ok(ctx);
					assert_tensor_bits("logsumexp's plain gradient", tg_grad(x), rec);
					tg_ctx_free(ctx);
				}
}

static void logsumexp_rejects_bad_axes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_zeros(ctx, TG_F32, SHAPE(2, 3));
	assert_null(tg_logsumexp(x, 2, false));
	assert_non_null(strstr(tg_error(ctx), "tg_logsumexp: axis 2 is out of range"));
	tg_clear_error(ctx);
	assert_null(tg_logsumexp(tg_scalar(ctx, TG_F64, 1), 0, false));
	assert_non_null(strstr(tg_error(ctx), "a scalar has no axes"));
	tg_clear_error(ctx);
	assert_null(tg_logsumexp(tg_zeros(ctx, TG_F32, SHAPE(2, 0)), 1, true));
	assert_int_equal(tg_status_of(ctx), TG_ESHAPE);
	tg_clear_error(ctx);
	assert_null(tg_logsumexp(NULL, 0, false));
	tg_ctx_free(ctx);
}

static void softmax_along_an_axis_out_of_range_is_an_error(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_zeros(ctx, TG_F32, SHAPE(2, 3));
	assert_null(tg_softmax_axis(x, 2));
	assert_int_equal(tg_status_of(ctx), TG_EARG);
	assert_non_null(strstr(tg_error(ctx), "tg_softmax_axis: axis 2 is out of range"));
	tg_clear_error(ctx);
	assert_null(tg_log_softmax_axis(x, -3));
	assert_non_null(strstr(tg_error(ctx), "tg_log_softmax_axis: axis -3 is out of range"));
	tg_clear_error(ctx);
	assert_null(tg_softmax_axis(NULL, 0));
	tg_ctx_free(ctx);
}

static void softmax_of_two_logits_matches_hand_values(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double x[] = { 2.3, -1.2 };
	const double p[] = { 0.9706877692, 0.0293122308 };
	const double lp[] = { -0.0297504183, -3.5297504183 };
	const int32_t label[] = { 1 };
	tg_tensor *t = tg_from_f64(ctx, TG_F64, SHAPE(2), x);
	check_values("softmax", tg_softmax(t), p, 2, 0, 1e-9);
	check_values("log_softmax", tg_log_softmax(t), lp, 2, 0, 1e-9);
	tg_tensor *loss = tg_cross_entropy(tg_from_f64(ctx, TG_F64, SHAPE(1, 2), x), tg_labels(ctx, 1, label));
	assert_int_equal(tg_ndim(loss), 0);
	assert_near(tg_item(loss), 3.5297504183, 1e-9);
	tg_tensor *t32 = tg_from_f64(ctx, TG_F32, SHAPE(2), x);
	check_values("softmax f32", tg_softmax(t32), p, 2, 1e-6, 0);
	check_values("log_softmax f32", tg_log_softmax(t32), lp, 2, 1e-6, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void softmax_normalises_each_row_of_the_last_axis(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	double x[2 * 3 * 4];
	for (size_t i = 0; i < LEN(x); i++)
		x[i] = sin(1.3 * (double)i) * 3;
	double want[LEN(x)], logwant[LEN(x)];
	for (size_t r = 0; r < 6; r++) {
		double s = 0;
		for (size_t j = 0; j < 4; j++)
			s += exp(x[r * 4 + j]);
		for (size_t j = 0; j < 4; j++) {
			want[r * 4 + j] = exp(x[r * 4 + j]) / s;
			logwant[r * 4 + j] = x[r * 4 + j] - log(s);
		}
	}
	tg_tensor *t = tg_from_f64(ctx, TG_F64, SHAPE(2, 3, 4), x);
	tg_tensor *y = tg_softmax(t);
	assert_int_equal(tg_ndim(y), 3);
	check_values("softmax", y, want, LEN(x), 1e-14, 1e-16);
	check_values("log_softmax", tg_log_softmax(t), logwant, LEN(x), 1e-14, 1e-14);
	tg_tensor *t32 = tg_from_f64(ctx, TG_F32, SHAPE(2, 3, 4), x);
	check_values("softmax f32", tg_softmax(t32), want, LEN(x), 1e-6, 1e-8);
	check_values("log_softmax f32", tg_log_softmax(t32), logwant, LEN(x), 1e-6, 1e-6);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void cross_entropy_is_the_mean_of_the_picked_negative_log_softmax(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double x[] = { 0.1, 2.0, -1.0, 0.5,   /* label 1 */
			     3.0, 3.0, 3.0, 3.0,    /* label 0: ln 4 */
			     -2.0, 0.0, 1.0, 4.0 }; /* label 3 */
	const int32_t labels[] = { 1, 0, 3 };
	double total = 0;
	for (int r = 0; r < 3; r++) {
		double s = 0;
		for (int j = 0; j < 4; j++)
			s += exp(x[r * 4 + j]);
		total += log(s) - x[r * 4 + labels[r]];
	}
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *logits = tg_param(tg_from_f64(ctx, (tg_dtype)dt, SHAPE(3, 4), x));
		tg_tensor *loss = tg_cross_entropy(logits, tg_labels(ctx, 3, labels));
		assert_near(tg_item(loss), total / 3, dt == TG_F64 ? 1e-14 : 1e-6);
		/* d logits = (softmax - onehot) / N */
		assert_int_equal(tg_backward(loss), 0);
		double want[12];
		for (int r = 0; r < 3; r++) {
			double s = 0;
			for (int j = 0; j < 4; j++)
				s += exp(x[r * 4 + j]);
			for (int j = 0; j < 4; j++)
				want[r * 4 + j] = (exp(x[r * 4 + j]) / s - (j == labels[r])) / 3;
		}
		check_values("d logits", tg_grad(logits), want, 12, dt == TG_F64 ? 1e-13 : 1e-5,
			     1e-7);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void softmax_and_cross_entropy_stay_finite_at_1e4(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double x[] = { 1e4, -1e4, 0, -1e4, 1e4, 1e4 };
	const double p[] = { 1, 0, 0, 0, 0.5, 0.5 };
	const double lp[] = { 0, -2e4, -1e4, -2e4 - log(2), -log(2), -log(2) };
	const int32_t labels[] = { 1, 0 };
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *t = tg_param(tg_from_f64(ctx, (tg_dtype)dt, SHAPE(2, 3), x));
		check_values("softmax", tg_softmax(t), p, 6, 0, 1e-12);
		check_values("log_softmax", tg_log_softmax(t), lp, 6, 1e-7, 1e-7);
		tg_tensor *loss = tg_cross_entropy(t, tg_labels(ctx, 2, labels));
		assert_near(tg_item(loss), (2e4 + 2e4 + log(2)) / 2, dt == TG_F64 ? 1e-9 : 1e-2);
		assert_int_equal(tg_backward(loss), 0);
		const double d[] = { 0.5, -0.5, 0, -0.5, 0.25, 0.25 };
		check_values("d logits", tg_grad(t), d, 6, 0, 1e-7);
		tg_zero_grad(t);
		tg_backward(tg_sum(tg_mul(tg_log_softmax(t), tg_softmax(t))));
		check_finite("d sum(log_softmax * softmax)", tg_grad(t));
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- errors ---------------------------------------------------------------------- */

static void cross_entropy_rejects_a_label_outside_the_classes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *logits = tg_zeros(ctx, TG_F64, SHAPE(5, 10));
	const int32_t labels[] = { 0, 9, 3, 12, 1 };
	assert_null(tg_cross_entropy(logits, tg_labels(ctx, 5, labels)));
	assert_error(ctx, TG_EARG, "tg_cross_entropy: labels[3] = 12 is outside [0, 10)");
	tg_clear_error(ctx);
	const int32_t negative[] = { 0, -1, 0, 0, 0 };
	assert_null(tg_cross_entropy(logits, tg_labels(ctx, 5, negative)));
	assert_error(ctx, TG_EARG, "labels[1] = -1 is outside [0, 10)");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy(logits, NULL));
	assert_error(ctx, TG_ENULL, "tg_cross_entropy");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy(tg_zeros(ctx, TG_F64, SHAPE(10)), tg_labels(ctx, 5, labels)));
	assert_error(ctx, TG_ESHAPE, "tg_cross_entropy: logits (10,)");
	tg_ctx_free(ctx);
}

static void softmax_of_a_scalar_is_a_shape_error(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	assert_null(tg_softmax(tg_scalar(ctx, TG_F64, 1)));
	assert_error(ctx, TG_ESHAPE, "tg_softmax");
	tg_clear_error(ctx);
	assert_null(tg_log_softmax(tg_scalar(ctx, TG_F32, 1)));
	assert_error(ctx, TG_ESHAPE, "tg_log_softmax");
	tg_ctx_free(ctx);
}

static void sigmoid_backward_rejects_different_shapes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *dout = tg_ones(ctx, TG_F64, SHAPE(2, 3));
	tg_tensor *y = tg_ones(ctx, TG_F64, SHAPE(1, 3)); /* would broadcast; not allowed */
	assert_null(tg_sigmoid_backward(dout, y));
	assert_error(ctx, TG_ESHAPE, "tg_sigmoid_backward: dout (2,3) and y (1,3)");
	tg_ctx_free(ctx);
}

static void relu_backward_rejects_different_shapes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *dout = tg_ones(ctx, TG_F32, SHAPE(4));
	tg_tensor *x = tg_ones(ctx, TG_F32, SHAPE(2, 2)); /* same size, other shape */
	assert_null(tg_relu_backward(dout, x));
	assert_error(ctx, TG_ESHAPE, "tg_relu_backward: dout (4,) and x (2,2)");
	tg_ctx_free(ctx);
}

static void unary_ops_pass_null_through_and_keep_the_first_error(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	assert_null(tg_relu(tg_exp(NULL)));
	assert_null(tg_softmax(NULL));
	assert_null(tg_cross_entropy(NULL, NULL));
	assert_null(tg_gelu(tg_silu(tg_erf(tg_cos(tg_sin(tg_expm1(tg_log1p(NULL))))))));
	assert_null(tg_gelu_backward(NULL, NULL));
	assert_ctx_ok(ctx);
	tg_tensor *y = tg_tanh(tg_sigmoid(tg_softmax(tg_scalar(ctx, TG_F64, 2))));
	assert_null(y);
	assert_error(ctx, TG_ESHAPE, "tg_softmax");
	/* while the error is set, ops compute nothing */
	assert_null(tg_sigmoid(tg_ones(ctx, TG_F64, SHAPE(2))));
	assert_error(ctx, TG_ESHAPE, "tg_softmax");
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unary_ops_match_libm_in_f64),
		cmocka_unit_test(f32_unary_ops_agree_with_f64),
		cmocka_unit_test(relu_zeroes_the_negative_entries),
		cmocka_unit_test(relu_backward_selects_dout_where_x_is_positive),
		cmocka_unit_test(sigmoid_backward_is_dout_times_y_times_one_minus_y),
		cmocka_unit_test(sigmoid_tanh_and_softplus_stay_finite_at_1e3),
		cmocka_unit_test(first_and_second_derivatives_match_closed_forms),
		cmocka_unit_test(gelu_silu_and_erf_give_their_known_values),
		cmocka_unit_test(tails_keep_their_relative_precision_in_f64_and_f32),
		cmocka_unit_test(recorded_gelu_gives_the_bits_of_the_unrecorded_one),
		cmocka_unit_test(softplus_and_silu_backward_give_the_bits_of_their_ops),
		cmocka_unit_test(one_pass_rules_give_the_bits_of_their_ops),
		cmocka_unit_test(pow_gives_the_bits_of_one_rounding_or_sleefs_bound),
		cmocka_unit_test(pow_backward_gives_the_bits_of_its_ops),
		cmocka_unit_test(pow_derivatives_past_the_exponent_are_zeros_everywhere),
		cmocka_unit_test(pow_backward_rejects_different_shapes),
		cmocka_unit_test(gelu_backward_rejects_different_shapes),
		cmocka_unit_test(relu_and_abs_have_zero_gradient_at_zero),
		cmocka_unit_test(rows_in_blocks_give_the_bits_of_each_row_alone),
		cmocka_unit_test(softmax_of_two_logits_matches_hand_values),
		cmocka_unit_test(softmax_along_any_axis_matches_the_last_axis_through_permutes),
		cmocka_unit_test(softmax_along_an_axis_out_of_range_is_an_error),
		cmocka_unit_test(logsumexp_matches_a_long_double_reference),
		cmocka_unit_test(logsumexp_plain_gradient_has_the_bits_of_its_ops),
		cmocka_unit_test(logsumexp_rejects_bad_axes),
		cmocka_unit_test(softmax_normalises_each_row_of_the_last_axis),
		cmocka_unit_test(cross_entropy_is_the_mean_of_the_picked_negative_log_softmax),
		cmocka_unit_test(softmax_and_cross_entropy_stay_finite_at_1e4),
		cmocka_unit_test(cross_entropy_rejects_a_label_outside_the_classes),
		cmocka_unit_test(softmax_of_a_scalar_is_a_shape_error),
		cmocka_unit_test(sigmoid_backward_rejects_different_shapes),
		cmocka_unit_test(relu_backward_rejects_different_shapes),
		cmocka_unit_test(softplus_and_silu_backward_reject_different_shapes),
		cmocka_unit_test(unary_ops_pass_null_through_and_keep_the_first_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
