/*
 * test_loss.c - the losses of ops/loss.c (mse, l1, huber, bce_with_logits):
 * values and gradients against hand-computed numbers in f64 and f32, against
 * the textbook formulas on random data in f64, bce at extreme logits, second
 * derivatives by hand, and the errors they report. Gradients in general are
 * checked numerically by the op table's test.
 * Legend: n = elements, d = pred - target, x = logits, t = targets.
 */
#include "../engine/test_util.h"

#include <stdlib.h>
#include <string.h>

/* A loss with its one attribute (huber's delta; ignored by the others). */
typedef tg_tensor *(*loss_fn)(tg_tensor *a, tg_tensor *b, double p);

static tg_tensor *mse(tg_tensor *a, tg_tensor *b, double p) { return (void)p, tg_mse(a, b); }
static tg_tensor *l1(tg_tensor *a, tg_tensor *b, double p) { return (void)p, tg_l1(a, b); }
static tg_tensor *huber(tg_tensor *a, tg_tensor *b, double p) { return tg_huber(a, b, p); }
static tg_tensor *bce(tg_tensor *a, tg_tensor *b, double p)
{
	return (void)p, tg_bce_with_logits(a, b);
}

/* What one run gives: the loss and the gradients of a and b. */
typedef struct {
	double loss;
	double da[64], db[64];
} result;

/* f(a, b, p) in dtype dt on n values with both inputs needing a gradient,
 * then a plain backward. */
static result run(loss_fn f, double p, tg_dtype dt, size_t n, const double *av,
		  const double *bv)
{
	assert_true(n <= 64);
	tg_ctx *ctx = tg_ctx_new(1);
	const int64_t shape[1] = { (int64_t)n };
	tg_tensor *a = tg_set_requires_grad(tg_from_f64(ctx, dt, 1, shape, av), true);
	tg_tensor *b = tg_set_requires_grad(tg_from_f64(ctx, dt, 1, shape, bv), true);
	tg_tensor *y = f(a, b, p);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_ndim(y), 0);
	assert_int_equal(tg_dtype_of(y), dt);
	assert_int_equal(tg_backward(y), 0);
	assert_ctx_ok(ctx);
	result r = { .loss = tg_item(y) };
	assert_int_equal(tg_copy_to_f64(tg_grad(a), r.da, n), 0);
	assert_int_equal(tg_copy_to_f64(tg_grad(b), r.db, n), 0);
	tg_ctx_free(ctx);
	return r;
}

/* Every got[i] within tol * max(1, |want[i]|) of want[i]; prints the worst. */
static void check(const char *what, const double *got, const double *want, size_t n, double tol)
{
	double worst = 0;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		double e = fabs(got[i] - want[i]) / fmax(1.0, fabs(want[i]));
		if (!(e <= worst))
			worst = e, at = i;
	}
	if (!(worst <= tol))
		fail_msg("%s[%zu] = %.17g, expected %.17g (relative %.3g, tolerance %g)", what, at,
			 got[at], want[at], worst, tol);
}

/* ---- hand-computed numbers ----------------------------------------------------------- */

/* pred 1 2 3 4, target 1.5 2 1 8: d = -0.5 0 2 -4, n = 4 */
static const double pred[4] = { 1, 2, 3, 4 }, target[4] = { 1.5, 2, 1, 8 };

typedef struct {
	const char *name;
	loss_fn f;
	double p;
	double loss;
	double dpred[4]; /* d target = -d pred */
} hand_case;

static const hand_case hand_cases[] = {
	/* (0.25 + 0 + 4 + 16) / 4; 2d / 4 */
	{ "mse", mse, 0, 5.0625, { -0.25, 0, 1, -2 } },
	/* (0.5 + 0 + 2 + 4) / 4; sign(d) / 4, 0 at d = 0 */
	{ "l1", l1, 0, 1.625, { -0.25, 0, 0.25, -0.25 } },
	/* delta 1: (0.125 + 0 + 1.5 + 3.5) / 4; clamp(d, -1, 1) / 4 */
	{ "huber delta 1", huber, 1, 1.28125, { -0.125, 0, 0.25, -0.25 } },
	/* delta 3: only |d| = 4 is outside: (0.125 + 0 + 2 + 3 (4 - 1.5)) / 4 */
	{ "huber delta 3", huber, 3, 2.40625, { -0.125, 0, 0.5, -0.75 } },
	/* delta 5: all inside, half of mse */
	{ "huber delta 5", huber, 5, 2.53125, { -0.125, 0, 0.5, -1 } },
};

static void regression_losses_give_hand_computed_values_and_gradients(void **state)
{
	(void)state;
	for (size_t k = 0; k < LEN(hand_cases); k++) {
		const hand_case *c = &hand_cases[k];
		for (int f32 = 0; f32 <= 1; f32++) {
			char what[64];
			snprintf(what, sizeof what, "%s, %s", c->name, f32 ? "f32" : "f64");
			print_message("%s\n", what);
			result r = run(c->f, c->p, f32 ? TG_F32 : TG_F64, 4, pred, target);
			double neg[4];
			for (int i = 0; i < 4; i++)
				neg[i] = -c->dpred[i];
			/* every number here is exact in binary, f32 included */
			check(what, &r.loss, &c->loss, 1, 0);
			check(what, r.da, c->dpred, 4, 0);
			check(what, r.db, neg, 4, 0);
		}
	}
}

/* At |d| = delta both pieces of huber meet: 0.5 delta^2, gradient delta sign(d). */
static void huber_is_continuous_at_delta(void **state)
{
	(void)state;
	const double a[2] = { 0.5, -0.5 }, b[2] = { 0, 0 };
	result r = run(huber, 0.5, TG_F64, 2, a, b);
	const double loss = 0.125, da[2] = { 0.25, -0.25 };
	check("huber at |d| = delta", &r.loss, &loss, 1, 0);
	check("huber at |d| = delta, d pred", r.da, da, 2, 0);
}

/* An infinite d is outside any delta: its gradient is delta sign(d) / n, as
 * PyTorch's, not 0 inf = NaN; a NaN d keeps a NaN gradient. Both the one-pass
 * rule of a plain backward and the composed one of a recorded backward, whose
 * second derivative is 0 at each of them (outside, or NaN), as PyTorch's. */
static void huber_gradient_of_an_infinite_difference_is_delta_sign(void **state)
{
	(void)state;
	const double a[4] = { INFINITY, -INFINITY, 3, NAN }, b[4] = { 0, 0, INFINITY, 0 };
	const double da[4] = { 0.25, -0.25, -0.25, NAN };
	for (int recorded = 0; recorded <= 1; recorded++)
		for (int f32 = 0; f32 <= 1; f32++) {
			tg_ctx *ctx = tg_ctx_new(1);
			const tg_dtype dt = f32 ? TG_F32 : TG_F64;
			tg_tensor *pa = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(4), a), true);
			tg_tensor *pb = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(4), b), true);
			tg_tensor *y = tg_huber(pa, pb, 1);
			assert_int_equal(tg_backward_ex(y, NULL, recorded ? TG_CREATE_GRAPH : 0), 0);
			assert_ctx_ok(ctx);
			double ga[4], gb[4];
			assert_int_equal(tg_copy_to_f64(tg_grad(pa), ga, 4), 0);
			assert_int_equal(tg_copy_to_f64(tg_grad(pb), gb, 4), 0);
			print_message("%s, %s: d pred %g %g %g %g\n", recorded ? "recorded" : "plain",
				      f32 ? "f32" : "f64", ga[0], ga[1], ga[2], ga[3]);
			for (int i = 0; i < 4; i++) {
				if (isnan(da[i])) {
					assert_true(isnan(ga[i]) && isnan(gb[i]));
					continue;
				}
				assert_true(ga[i] == da[i]);
				assert_true(gb[i] == -da[i]);
			}
			if (recorded) {
				tg_tensor *g = tg_grad(pa);
				tg_zero_grad(pa), tg_zero_grad(pb);
				assert_int_equal(tg_backward(tg_sum(g)), 0);
				assert_int_equal(tg_copy_to_f64(tg_grad(pa), ga, 4), 0);
				for (int i = 0; i < 4; i++)
					assert_true(ga[i] == 0);
			}
			tg_ctx_free(ctx);
		}
}

/* x 0, ln 3, -ln 3, 2 against t 0.5, 1, 0, 0.25: -t ln s - (1 - t) ln(1 - s)
 * with s = sigmoid(x) = 1/2, 3/4, 1/4, ... */
static void bce_gives_hand_computed_values_and_gradients(void **state)
{
	(void)state;
	const double x[4] = { 0, log(3), -log(3), 2 }, t[4] = { 0.5, 1, 0, 0.25 };
	const double s2 = 1 / (1 + exp(-2.0));
	/* ln 2, ln 4/3, ln 4/3, 2 - 2/4 + ln(1 + e^-2) */
	const double per[4] = { log(2), log(4.0 / 3), log(4.0 / 3), 1.5 + log1p(exp(-2.0)) };
	const double loss = (per[0] + per[1] + per[2] + per[3]) / 4;
	const double dx[4] = { 0, (0.75 - 1) / 4, 0.25 / 4, (s2 - 0.25) / 4 };
	const double dt[4] = { 0, -log(3) / 4, log(3) / 4, -2.0 / 4 };
	for (int f32 = 0; f32 <= 1; f32++) {
		result r = run(bce, 0, f32 ? TG_F32 : TG_F64, 4, x, t);
		double tol = f32 ? 1e-6 : 1e-15;
		print_message("bce, %s: loss %.17g, expected %.17g\n", f32 ? "f32" : "f64", r.loss,
			      loss);
		check("bce", &r.loss, &loss, 1, tol);
		check("bce, d logits", r.da, dx, 4, tol);
		check("bce, d targets", r.db, dt, 4, tol);
	}
}

/* An infinite logit gives the loss's limit, not inf - inf or inf 0 = NaN: 0
 * where it is confidently right, inf where wrong or the target is soft;
 * d logits = sigmoid(x) - t stays finite. One element per run, in the
 * eight-lane body and in the tail. */
static void bce_of_an_infinite_logit_is_its_limit(void **state)
{
	(void)state;
	const double x[6] = { INFINITY, INFINITY, INFINITY, -INFINITY, -INFINITY, -INFINITY };
	const double t[6] = { 1, 0, 0.5, 0, 1, 0.25 };
	const double loss[6] = { 0, INFINITY, INFINITY, 0, INFINITY, INFINITY };
	const double dx[6] = { 0, 1, 0.5, 0, -1, -0.25 };
	for (int f32 = 0; f32 <= 1; f32++)
		for (int i = 0; i < 6; i++)
			for (size_t n = 1; n <= 9; n += 8) {
				/* n copies of the element */
				double xs[9], ts[9];
				for (size_t k = 0; k < n; k++)
					xs[k] = x[i], ts[k] = t[i];
				result r = run(bce, 0, f32 ? TG_F32 : TG_F64, n, xs, ts);
				if (!(r.loss == loss[i]) || !(fabs(r.da[n - 1] * (double)n - dx[i]) <= 1e-6))
					fail_msg("bce, %s, x %g, t %g (%zu of them): loss %g, d logits "
						 "%g; expected %g and %g",
						 f32 ? "f32" : "f64", x[i], t[i], n, r.loss,
						 r.da[n - 1] * (double)n, loss[i], dx[i]);
			}
}

/* ---- against the textbook formulas on random data ---------------------------------------- */

/* One random problem of 50 elements: a, b ~ N(0, 2) for the regression
 * losses; for bce, x ~ N(0, 4) and t uniform in [0, 1]. */
enum { N = 50 };

static void draw(tg_ctx *rng, double *a, double *b, bool probs)
{
	for (int i = 0; i < N; i++) {
		a[i] = (probs ? 4 : 2) * tg_random_normal(rng);
		b[i] = probs ? tg_random_uniform(rng) : 2 * tg_random_normal(rng);
	}
}

/* sigmoid(z), accurate in relative terms for either sign of z */
static double sigmoid(double z) { return 1 / (1 + exp(-z)); }

static void losses_match_their_formulas_on_random_data_in_f64(void **state)
{
	(void)state;
	tg_ctx *rng = tg_ctx_new(11);
	double a[N], b[N];
	for (int k = 0; k < 4; k++) {
		draw(rng, a, b, k == 3);
		double delta = 1.5, loss = 0, da[N], db[N];
		for (int i = 0; i < N; i++) {
			double d = a[i] - b[i], ad = fabs(d), g;
			switch (k) {
			case 0: /* mse */
				loss += d * d, g = 2 * d;
				break;
			case 1: /* l1 */
				loss += ad, g = d > 0 ? 1 : -1;
				break;
			case 2: /* huber */
				loss += ad < delta ? d * d / 2 : delta * (ad - delta / 2);
				g = ad < delta ? d : (d > 0 ? delta : -delta);
				break;
			default: /* bce: x = a, t = b */
				loss += -b[i] * log(sigmoid(a[i])) - (1 - b[i]) * log(sigmoid(-a[i]));
				g = sigmoid(a[i]) - b[i];
				break;
			}
			da[i] = g / N;
			db[i] = k == 3 ? -a[i] / N : -g / N;
		}
		loss /= N;
		static const char *const names[4] = { "mse", "l1", "huber 1.5", "bce" };
		static const loss_fn fns[4] = { mse, l1, huber, bce };
		result r = run(fns[k], delta, TG_F64, N, a, b);
		print_message("%s: loss %.17g, formula %.17g\n", names[k], r.loss, loss);
		check(names[k], &r.loss, &loss, 1, 1e-13);
		check(names[k], r.da, da, N, 1e-15);
		check(names[k], r.db, db, N, 1e-15);
	}
	tg_ctx_free(rng);
}

/* Long inputs, whose terms the kernels add in sixteen interleaved partial
 * sums: 1 003 of them (62 whole rounds of sixteen and a tail of eleven; bce
 * in chunks of 256), and 100 003, which are summed in four blocks of
 * 32 768 (the last one short) split across the threads, at 1 and 2
 * threads, against the same terms summed in long double, every loss, f64;
 * the terms are computed here as the kernels compute them, so only the
 * summation can differ. */
static void long_losses_sum_their_terms_to_long_double_accuracy(void **state)
{
	(void)state;
	static const int lengths[2] = { 1003, 100003 };
	static const loss_fn fns[4] = { mse, l1, huber, bce };
	static const char *const names[4] = { "mse", "l1", "huber 1.5", "bce" };
	tg_ctx *ctx = tg_ctx_new(13);
	double *a = malloc(100003 * sizeof *a), *b = malloc(100003 * sizeof *b);
	assert_non_null(a);
	assert_non_null(b);
	for (int l = 0; l < 2; l++)
		for (int k = 0; k < 4; k++) {
			const int M = lengths[l];
			for (int i = 0; i < M; i++) {
				a[i] = (k == 3 ? 4 : 2) * tg_random_normal(ctx);
				b[i] = k == 3 ? tg_random_uniform(ctx) : 2 * tg_random_normal(ctx);
			}
			long double want = 0;
			for (int i = 0; i < M; i++) {
				double d = a[i] - b[i], ad = fabs(d);
				want += k == 0	 ? d * d
					: k == 1 ? ad
					: k == 2 ? (ad <= 1.5 ? d * d / 2 : 1.5 * (ad - 0.75))
						 : (a[i] > 0 ? a[i] : 0) - a[i] * b[i] +
							   log1p(exp(-fabs(a[i])));
			}
			double mean = (double)(want / M), got[2];
			const int64_t shape[1] = { M };
			for (int t = 0; t < 2; t++) {
				tg_set_threads(ctx, t + 1);
				tg_tensor *y = fns[k](tg_from_f64(ctx, TG_F64, 1, shape, a),
						      tg_from_f64(ctx, TG_F64, 1, shape, b), 1.5);
				assert_ctx_ok(ctx);
				got[t] = tg_item(y);
				tg_reset(ctx);
			}
			print_message("%s over %d: %.17g, long double %.17g\n", names[k], M, got[0],
				      mean);
			check(names[k], &got[0], &mean, 1, 4e-15);
			if (memcmp(&got[0], &got[1], sizeof got[0]))
				fail_msg("%s over %d: %.17g at 1 thread, %.17g at 2", names[k], M,
					 got[0], got[1]);
		}
	free(a);
	free(b);
	tg_ctx_free(ctx);
}

/* A plain backward of mse, l1 and huber computes both gradients in one
 * pass, split across the threads; a recorded one (TG_CREATE_GRAPH)
 * composes ops. Their gradients have the same bits for pred and target, at
 * 1 and 2 threads: 40 000 elements (pred's in its own buffer) with ties,
 * |d| exactly delta, zeros of both signs, a NaN, an infinity and large
 * values, an upstream gradient of 3.7, f32 and f64. */
static void one_pass_loss_gradients_have_the_bits_of_the_composed_rules(void **state)
{
	(void)state;
	enum { M = 40000 };
	tg_ctx *ctx = tg_ctx_new(14);
	double *a = malloc(M * sizeof *a), *b = malloc(M * sizeof *b);
	assert_non_null(a);
	assert_non_null(b);
	for (int i = 0; i < M; i++) {
		a[i] = 3 * tg_random_normal(ctx);
		b[i] = i % 7 == 0 ? a[i] : 3 * tg_random_normal(ctx); /* ties */
	}
	a[1] = 2.5, b[1] = 1.0;    /* |d| = 1.5 = delta */
	a[2] = -0.25, b[2] = 0.45; /* |d| = 0.7 = delta, in doubles */
	a[3] = -0.0, b[3] = 0.0;
	a[4] = NAN;
	b[5] = INFINITY;
	a[6] = 1e30, b[6] = -1e30;
	static const loss_fn fns[4] = { mse, l1, huber, huber };
	static const double deltas[4] = { 0, 0, 1.5, 0.7 };
	const int64_t shape[1] = { M };
	for (int k = 0; k < 4; k++)
		for (int dti = 0; dti < 2; dti++) {
			tg_dtype dt = dti ? TG_F32 : TG_F64;
			size_t bytes = M * (size_t)(dt == TG_F64 ? 8 : 4);
			void *got[2] = { NULL, NULL };
			/* run 0: plain, 1 thread; 1: plain, 2 threads; 2: recorded */
			for (int run = 0; run < 3; run++) {
				tg_set_threads(ctx, run == 1 ? 2 : 1);
				tg_tensor *p = tg_param(tg_from_f64(ctx, dt, 1, shape, a));
				tg_tensor *t = tg_set_requires_grad(tg_from_f64(ctx, dt, 1, shape, b), true);
				tg_tensor *y = tg_mul_scalar(fns[k](p, t, deltas[k]), 3.7);
				assert_int_equal(tg_backward_ex(y, NULL, run == 2 ? TG_CREATE_GRAPH : 0), 0);
				tg_tensor *g[2] = { tg_grad(p), tg_grad(t) };
				for (int i = 0; i < 2; i++) {
					if (!run) {
						got[i] = malloc(bytes);
						assert_non_null(got[i]);
						memcpy(got[i], tg_data(g[i]), bytes);
					} else if (memcmp(got[i], tg_data(g[i]), bytes)) {
						fail_msg("loss %d, %s: the gradient of %s differs in run %d "
							 "(1: 2 threads, 2: the composed rule)",
							 k, dti ? "f32" : "f64", i ? "target" : "pred", run);
					}
				}
				tg_reset(ctx);
			}
			free(got[0]);
			free(got[1]);
		}
	free(a);
	free(b);
	tg_ctx_free(ctx);
}

/* bce_with_logits' plain backward makes sigmoid(x) and then both
 * gradients in one more pass; a recorded one (TG_CREATE_GRAPH) composes
 * ops. Same bits for logits and targets, at 1 and 2 threads, f32 and f64,
 * with either or both needing a gradient: 40 000 logits with zeros of both
 * signs, +-40 and a NaN, targets in [0, 1] with 0 and 1 themselves, an
 * upstream gradient of 3.7. */
static void bce_gradients_in_two_passes_have_the_bits_of_the_composed_rule(void **state)
{
	(void)state;
	enum { M = 40000 };
	tg_ctx *ctx = tg_ctx_new(15);
	double *a = malloc(M * sizeof *a), *b = malloc(M * sizeof *b);
	assert_true(a && b);
	for (int i = 0; i < M; i++) {
		a[i] = 3 * tg_random_normal(ctx);
		b[i] = i % 5 == 0 ? (i % 2) : tg_random_uniform(ctx);
	}
	a[1] = 0.0, a[2] = -0.0, a[3] = 40, a[4] = -40, a[5] = NAN;
	const int64_t shape[1] = { M };
	for (int need = 1; need <= 3; need++) /* 1: logits, 2: targets, 3: both */
		for (int dti = 0; dti < 2; dti++) {
			tg_dtype dt = dti ? TG_F32 : TG_F64;
			size_t bytes = M * (size_t)(dt == TG_F64 ? 8 : 4);
			void *got[2] = { NULL, NULL };
			for (int run = 0; run < 3; run++) {
				tg_set_threads(ctx, run == 1 ? 2 : 1);
				tg_tensor *p = tg_set_requires_grad(tg_from_f64(ctx, dt, 1, shape, a),
								    need & 1);
				tg_tensor *t = tg_set_requires_grad(tg_from_f64(ctx, dt, 1, shape, b),
								    need & 2);
				tg_tensor *y = tg_mul_scalar(tg_bce_with_logits(p, t), 3.7);
				assert_int_equal(tg_backward_ex(y, NULL, run == 2 ? TG_CREATE_GRAPH : 0), 0);
				assert_ctx_ok(ctx);
				tg_tensor *g[2] = { need & 1 ? tg_grad(p) : NULL, need & 2 ? tg_grad(t) : NULL };
				for (int i = 0; i < 2; i++) {
					if (!g[i])
						continue;
					if (!run) {
						got[i] = malloc(bytes);
						assert_non_null(got[i]);
						memcpy(got[i], tg_data(g[i]), bytes);
					} else if (memcmp(got[i], tg_data(g[i]), bytes)) {
						fail_msg("bce, %s, need %d: the gradient of %s differs in run "
							 "%d (1: 2 threads, 2: the composed rule)",
							 dti ? "f32" : "f64", need, i ? "targets" : "logits",
							 run);
					}
				}
				tg_reset(ctx);
			}
			free(got[0]);
			free(got[1]);
		}
	free(a);
	free(b);
	tg_ctx_free(ctx);
}

/* f32 against f64 on the same random values, every loss. */
static void f32_losses_agree_with_f64(void **state)
{
	(void)state;
	tg_ctx *rng = tg_ctx_new(12);
	double a[N], b[N];
	static const loss_fn fns[4] = { mse, l1, huber, bce };
	for (int k = 0; k < 4; k++) {
		draw(rng, a, b, k == 3);
		for (int i = 0; i < N; i++) /* values an f32 holds exactly */
			a[i] = (float)a[i], b[i] = (float)b[i];
		result r64 = run(fns[k], 1.5, TG_F64, N, a, b);
		result r32 = run(fns[k], 1.5, TG_F32, N, a, b);
		print_message("loss %d: f64 %.17g, f32 %.9g\n", k, r64.loss, r32.loss);
		check("f32 loss", &r32.loss, &r64.loss, 1, 1e-6);
		check("f32 d pred", r32.da, r64.da, N, 1e-6);
		check("f32 d target", r32.db, r64.db, N, 1e-6);
	}
	tg_ctx_free(rng);
}

/* ---- bce at extreme logits ----------------------------------------------------------------- */

/* At |x| = 1000, e^x overflows and ln sigmoid(x) underflows to ln 0 = -inf;
 * the stable form gives max(x, 0) - x t exactly, and finite gradients. */
static void bce_is_exact_and_finite_at_extreme_logits(void **state)
{
	(void)state;
	static const struct {
		double x, t, loss, dx, dt;
	} cases[] = {
		{ 1000, 0, 1000, 1, -1000 }, { -1000, 0, 0, 0, 1000 },
		{ 1000, 1, 0, 0, -1000 },    { -1000, 1, 1000, -1, 1000 },
		{ 1000, 0.5, 500, 0.5, -1000 }, { 60, 0.25, 45, 0.75, -60 },
	};
	for (int f32 = 0; f32 <= 1; f32++)
		for (size_t k = 0; k < LEN(cases); k++) {
			result r = run(bce, 0, f32 ? TG_F32 : TG_F64, 1, &cases[k].x, &cases[k].t);
			print_message("bce(%g, %g) %s = %.17g, d logits %.17g, d targets %.17g\n",
				      cases[k].x, cases[k].t, f32 ? "f32" : "f64", r.loss, r.da[0],
				      r.db[0]);
			/* exact: the log term is below half an ulp of the result */
			check("bce loss", &r.loss, &cases[k].loss, 1, 0);
			check("bce d logits", r.da, &cases[k].dx, 1, 0);
			check("bce d targets", r.db, &cases[k].dt, 1, 0);
		}
	/* a batch of all four corners: the mean of 1000, 0, 0, 1000 */
	const double x[4] = { 1000, -1000, 1000, -1000 }, t[4] = { 0, 0, 1, 1 };
	for (int f32 = 0; f32 <= 1; f32++) {
		result r = run(bce, 0, f32 ? TG_F32 : TG_F64, 4, x, t);
		const double loss = 500, dx[4] = { 0.25, 0, 0, -0.25 };
		const double dt[4] = { -250, 250, -250, 250 };
		check("bce batch", &r.loss, &loss, 1, 0);
		check("bce batch d logits", r.da, dx, 4, 0);
		check("bce batch d targets", r.db, dt, 4, 0);
	}
}

/* ---- second derivatives by hand -------------------------------------------------------------- */

/* The gradient of pred taken with history (TG_CREATE_GRAPH), then the
 * gradient of sum(d pred) for pred and target: row sums of the Hessian;
 * zeros when d pred has no history. */
static void second(loss_fn f, double p, size_t n, const double *av, const double *bv,
		   double *hpred, double *htarget)
{
	tg_ctx *ctx = tg_ctx_new(1);
	const int64_t shape[1] = { (int64_t)n };
	tg_tensor *a = tg_set_requires_grad(tg_from_f64(ctx, TG_F64, 1, shape, av), true);
	tg_tensor *b = tg_set_requires_grad(tg_from_f64(ctx, TG_F64, 1, shape, bv), true);
	assert_int_equal(tg_backward_ex(f(a, b, p), NULL, TG_CREATE_GRAPH), 0);
	tg_tensor *g = tg_grad(a);
	if (!tg_requires_grad(g)) { /* no history: l1, a constant slope */
		memset(hpred, 0, n * sizeof *hpred);
		memset(htarget, 0, n * sizeof *htarget);
		tg_ctx_free(ctx);
		return;
	}
	tg_zero_grad(a), tg_zero_grad(b);
	assert_int_equal(tg_backward(tg_sum(g)), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_copy_to_f64(tg_grad(a), hpred, n), 0);
	assert_int_equal(tg_copy_to_f64(tg_grad(b), htarget, n), 0);
	tg_ctx_free(ctx);
}

static void second_derivatives_match_hand_values(void **state)
{
	(void)state;
	double hp[4], ht[4];
	/* mse: d2/dpred2 = 2/n, d2/dpred dtarget = -2/n */
	second(mse, 0, 4, pred, target, hp, ht);
	check("mse d2 pred", hp, (double[]){ 0.5, 0.5, 0.5, 0.5 }, 4, 1e-15);
	check("mse d2 pred target", ht, (double[]){ -0.5, -0.5, -0.5, -0.5 }, 4, 1e-15);
	/* huber delta 1 (d = -0.5 0 2 -4): 1/n inside, 0 outside */
	second(huber, 1, 4, pred, target, hp, ht);
	check("huber d2 pred", hp, (double[]){ 0.25, 0.25, 0, 0 }, 4, 1e-15);
	check("huber d2 pred target", ht, (double[]){ -0.25, -0.25, 0, 0 }, 4, 1e-15);
	/* l1: 0 away from the kink */
	second(l1, 0, 4, pred, target, hp, ht);
	check("l1 d2 pred", hp, (double[]){ 0, 0, 0, 0 }, 4, 0);
	check("l1 d2 pred target", ht, (double[]){ 0, 0, 0, 0 }, 4, 0);
	/* bce at x = 0, t = 0.25 (n = 1): d2/dx2 = s (1 - s) = 1/4, d2/dx dt = -1 */
	const double x0 = 0, t0 = 0.25;
	second(bce, 0, 1, &x0, &t0, hp, ht);
	check("bce d2 logits", hp, (double[]){ 0.25 }, 1, 1e-15);
	check("bce d2 logits targets", ht, (double[]){ -1 }, 1, 1e-15);
}

/* ---- errors ----------------------------------------------------------------------------- */

/* expr is NULL and records code with text in its message; clears it. */
#define assert_rejects(ctx, expr, code, text)                                                      \
	do {                                                                                       \
		assert_null(expr);                                                                 \
		assert_error(ctx, code, text);                                                     \
		tg_clear_error(ctx);                                                               \
	} while (0)

static void losses_refuse_to_broadcast_mismatched_shapes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *col = tg_ones(ctx, TG_F64, SHAPE(4, 1)), *row = tg_ones(ctx, TG_F64, SHAPE(4));
	tg_tensor *m = tg_ones(ctx, TG_F64, SHAPE(2, 3)), *v = tg_ones(ctx, TG_F64, SHAPE(3));
	assert_rejects(ctx, tg_mse(col, row), TG_ESHAPE,
		       "tg_mse: pred (4,1) and target (4,) must have the same shape");
	assert_rejects(ctx, tg_l1(m, v), TG_ESHAPE,
		       "tg_l1: pred (2,3) and target (3,) must have the same shape");
	assert_rejects(ctx, tg_huber(v, m, 1), TG_ESHAPE,
		       "tg_huber: pred (3,) and target (2,3) must have the same shape");
	assert_rejects(ctx, tg_bce_with_logits(m, tg_scalar(ctx, TG_F64, 0.5)), TG_ESHAPE,
		       "tg_bce_with_logits: logits (2,3) and targets () must have the same shape");
	tg_ctx_free(ctx);
}

static void losses_reject_bad_dtypes_nulls_delta_and_targets(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_ones(ctx, TG_F64, SHAPE(4)), *a32 = tg_ones(ctx, TG_F32, SHAPE(4));
	assert_rejects(ctx, tg_mse(a, a32), TG_EDTYPE, "tg_mse: dtypes differ");
	assert_rejects(ctx, tg_l1(a, NULL), TG_ENULL, "tg_l1: argument 1 is NULL");
	assert_null(tg_mse(NULL, NULL)); /* no context to tell: nothing recorded */
	assert_ctx_ok(ctx);
	assert_rejects(ctx, tg_huber(a, a, 0), TG_EARG,
		       "tg_huber: delta = 0 must be positive and finite");
	assert_rejects(ctx, tg_huber(a, a, -1), TG_EARG, "tg_huber: delta = -1 must be positive");
	assert_rejects(ctx, tg_huber(a, a, NAN), TG_EARG, "tg_huber: delta = nan");
	assert_rejects(ctx, tg_huber(a, a, INFINITY), TG_EARG, "tg_huber: delta = inf");
	const double bad[4] = { 0, 1, 1.5, 0.5 }, nan_t[4] = { 0.5, NAN, 0, 0 };
	tg_tensor *t = tg_from_f64(ctx, TG_F64, SHAPE(4), bad);
	assert_rejects(ctx, tg_bce_with_logits(a, t), TG_EARG,
		       "tg_bce_with_logits: targets (4,): element 2 is 1.5, outside [0, 1]");
	t = tg_from_f64(ctx, TG_F32, SHAPE(2, 2), (double[]){ 0, -0.25, 1, 1 });
	assert_rejects(ctx, tg_bce_with_logits(tg_ones(ctx, TG_F32, SHAPE(2, 2)), t), TG_EARG,
		       "targets (2,2): element 1 is -0.25, outside [0, 1]");
	assert_rejects(ctx, tg_bce_with_logits(a, tg_from_f64(ctx, TG_F64, SHAPE(4), nan_t)),
		       TG_EARG, "element 1 is nan");
	tg_ctx_free(ctx);
}

/* The first error of a chain arrives intact through a loss. */
static void a_loss_passes_on_the_first_error_of_a_chain(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_ones(ctx, TG_F64, SHAPE(2, 3)), *b = tg_ones(ctx, TG_F64, SHAPE(3, 2));
	tg_tensor *y = tg_mse(tg_mul(tg_matmul(a, a), b), b);
	assert_null(y);
	assert_error(ctx, TG_ESHAPE, "tg_matmul");
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(regression_losses_give_hand_computed_values_and_gradients),
		cmocka_unit_test(huber_is_continuous_at_delta),
		cmocka_unit_test(huber_gradient_of_an_infinite_difference_is_delta_sign),
		cmocka_unit_test(bce_of_an_infinite_logit_is_its_limit),
		cmocka_unit_test(long_losses_sum_their_terms_to_long_double_accuracy),
		cmocka_unit_test(one_pass_loss_gradients_have_the_bits_of_the_composed_rules),
		cmocka_unit_test(bce_gradients_in_two_passes_have_the_bits_of_the_composed_rule),
		cmocka_unit_test(bce_gives_hand_computed_values_and_gradients),
		cmocka_unit_test(losses_match_their_formulas_on_random_data_in_f64),
		cmocka_unit_test(f32_losses_agree_with_f64),
		cmocka_unit_test(bce_is_exact_and_finite_at_extreme_logits),
		cmocka_unit_test(second_derivatives_match_hand_values),
		cmocka_unit_test(losses_refuse_to_broadcast_mismatched_shapes),
		cmocka_unit_test(losses_reject_bad_dtypes_nulls_delta_and_targets),
		cmocka_unit_test(a_loss_passes_on_the_first_error_of_a_chain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
