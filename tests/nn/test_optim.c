/*
 * test_optim.c - the optimizers' update rules, weight decay and clipping.
 *
 * Each rule runs three steps on a two-element parameter w under the loss
 * L = sum(0.5 a w^2 + c w), whose gradient a w + c the test knows. The
 * expected values come from the book's rules written out again below in
 * plain double arithmetic, and the first step of each from numbers worked
 * by hand.
 */
#include "../engine/test_util.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"

#include <stdio.h>
#include <unistd.h>

enum { SEED = 4321, STEPS = 3 };

static const double W0[2] = {1.0, -2.0};
static const double A[2] = {1.0, 4.0};
static const double C[2] = {0.5, -1.0};

/* L = sum(0.5 a w^2 + c w), built from ops */
static tg_tensor *quadratic(tg_ctx *ctx, tg_tensor *w)
{
	tg_dtype dt = tg_dtype_of(w);
	tg_tensor *a = tg_from_f64(ctx, dt, SHAPE(2), A);
	tg_tensor *c = tg_from_f64(ctx, dt, SHAPE(2), C);
	return tg_sum(tg_add(tg_mul_scalar(tg_mul(a, tg_mul(w, w)), 0.5), tg_mul(c, w)));
}

/* Runs STEPS steps of the optimizer on w from W0; the values after each step
 * into got[step][2]. */
static void run(const tg_optim_opts *o, tg_dtype dt, double got[STEPS][2])
{
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *w =
	    tg_set_decay(tg_set_name(tg_param(tg_from_f64(ctx, dt, SHAPE(2), W0)), "q.W"), true);
	tg_optim *opt = tg_optim_new(ctx, &w, 1, o);
	assert_non_null(opt);
	for (int s = 0; s < STEPS; s++) {
		tg_optim_zero_grad(opt);
		assert_int_equal(tg_backward(quadratic(ctx, w)), 0);
		assert_int_equal(tg_optim_step(opt), 0);
		got[s][0] = tg_get(w, 0);
		got[s][1] = tg_get(w, 1);
		tg_reset(ctx);
	}
	assert_int_equal(tg_optim_steps(opt), STEPS);
	assert_ctx_ok(ctx);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
}

/* The same steps in plain doubles, each rule as common/optimizer.py writes it
 * (AdaGrad with + 1e-7); AdamW as torch.optim.AdamW with the book's eps. */
static void reference(const tg_optim_opts *o, double want[STEPS][2])
{
	for (int i = 0; i < 2; i++) {
		double w = W0[i], s1 = 0, s2 = 0;
		for (int t = 1; t <= STEPS; t++) {
			double g = A[i] * w + C[i];
			switch (o->kind) {
			case TG_SGD:
				w -= o->lr * g;
				break;
			case TG_MOMENTUM:
				s1 = o->momentum * s1 - o->lr * g;
				w += s1;
				break;
			case TG_NESTEROV:
				s1 *= o->momentum;
				s1 -= o->lr * g;
				w += o->momentum * o->momentum * s1;
				w -= (1 + o->momentum) * o->lr * g;
				break;
			case TG_ADAGRAD:
				s1 += g * g;
				w -= o->lr * g / (sqrt(s1) + 1e-7);
				break;
			case TG_RMSPROP:
				s1 *= o->rho;
				s1 += (1 - o->rho) * g * g;
				w -= o->lr * g / (sqrt(s1) + 1e-7);
				break;
			case TG_ADAM:
			case TG_ADAMW: {
				double lr_t =
				    o->lr * sqrt(1 - pow(o->beta2, t)) / (1 - pow(o->beta1, t));
				s1 += (1 - o->beta1) * (g - s1);
				s2 += (1 - o->beta2) * (g * g - s2);
				if (o->kind == TG_ADAMW) /* decoupled: g has no decay */
					w *= 1 - o->lr * o->weight_decay;
				w -= lr_t * s1 / (sqrt(s2) + 1e-7);
				break;
			}
			}
			want[t - 1][i] = w;
		}
	}
}

static void check_rule_decayed(tg_optim_kind kind, double lr, double wd, const double first[2])
{
	tg_optim_opts o = tg_optim_defaults(kind);
	o.lr = lr;
	o.weight_decay = wd;
	double want[STEPS][2], got[STEPS][2];
	reference(&o, want);
	/* the reference agrees with the numbers worked by hand for step 1 */
	for (int i = 0; i < 2; i++)
		assert_near(want[0][i], first[i], 1e-9);
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		run(&o, (tg_dtype)dt, got);
		double tol = dt == TG_F64 ? 1e-12 : 2e-6;
		for (int s = 0; s < STEPS; s++)
			for (int i = 0; i < 2; i++)
				if (!(fabs(got[s][i] - want[s][i]) <= tol))
					fail_msg("%s %s step %d w[%d] = %.10g, expected %.10g",
						 tg_optim_name(kind), dt == TG_F64 ? "f64" : "f32",
						 s + 1, i, got[s][i], want[s][i]);
	}
}

static void check_rule(tg_optim_kind kind, double lr, const double first[2])
{
	check_rule_decayed(kind, lr, 0, first);
}

/* First gradient: g = a w0 + c = (1*1 + 0.5, 4*(-2) - 1) = (1.5, -9). */

static void sgd_steps_against_the_gradient(void **state)
{
	(void)state;
	/* w - 0.1 g */
	check_rule(TG_SGD, 0.1, (double[]){0.85, -1.1});
}

static void momentum_accumulates_a_velocity(void **state)
{
	(void)state;
	/* v = -0.1 g = (-0.15, 0.9) */
	check_rule(TG_MOMENTUM, 0.1, (double[]){0.85, -1.1});
}

static void nesterov_follows_the_books_look_ahead_form(void **state)
{
	(void)state;
	/* v = -0.01 g; w += 0.81 v - 1.9 * 0.01 g:
	 * w0 = 1 - 0.81*0.015 - 0.019*1.5 = 0.95935, w1 = -2 + 0.81*0.09 + 0.019*9 = -1.7561 */
	check_rule(TG_NESTEROV, 0.01, (double[]){0.95935, -1.7561});
}

static void adagrad_divides_by_the_root_of_the_summed_squares(void **state)
{
	(void)state;
	/* h = g^2, w -= 0.1 g / (|g| + 1e-7): about 0.1 against the sign of g */
	check_rule(TG_ADAGRAD, 0.1,
		   (double[]){1 - 0.1 * 1.5 / (1.5 + 1e-7), -2 + 0.1 * 9 / (9 + 1e-7)});
}

static void rmsprop_divides_by_a_decaying_root_mean_square(void **state)
{
	(void)state;
	/* h = 0.01 g^2, sqrt(h) = 0.1 |g|: w -= 0.01 g / (0.1 |g| + 1e-7) */
	check_rule(TG_RMSPROP, 0.01,
		   (double[]){1 - 0.01 * 1.5 / (0.15 + 1e-7), -2 + 0.01 * 9 / (0.9 + 1e-7)});
}

static void adam_corrects_the_bias_of_its_first_step(void **state)
{
	(void)state;
	/* lr_t = 0.001 sqrt(0.001) / 0.1, m = 0.1 g, v = 0.001 g^2:
	 * w -= lr_t 0.1 g / (sqrt(0.001) |g| + 1e-7), about 0.001 against the sign */
	double r = sqrt(0.001);
	double lr_t = 0.001 * r / 0.1;
	check_rule(
	    TG_ADAM, 0.001,
	    (double[]){1 - lr_t * 0.15 / (r * 1.5 + 1e-7), -2 + lr_t * 0.9 / (r * 9 + 1e-7)});
}

/* AdamW's first step: w *= 1 - lr wd, then Adam's first step with g alone,
 * about lr against the sign of g: w0 = 0.95 - 0.1 1.5 / (sqrt(0.001) 1.5
 * + 1e-7) sqrt(0.001) ~ 0.85, w1 = -1.9 + ... ~ -1.8. */
static void adamw_decays_the_weight_apart_from_the_gradient(void **state)
{
	(void)state;
	double lr = 0.1, wd = 0.5, r = sqrt(0.001);
	double lr_t = lr * r / 0.1, keep = 1 - lr * wd;
	check_rule_decayed(TG_ADAMW, lr, wd,
			   (double[]){keep * 1 - lr_t * 0.15 / (r * 1.5 + 1e-7),
				      keep * -2 + lr_t * 0.9 / (r * 9 + 1e-7)});
	/* without decay, Adam's numbers */
	check_rule(TG_ADAMW, 0.001,
		   (double[]){1 - 0.001 * r / 0.1 * 0.15 / (r * 1.5 + 1e-7),
			      -2 + 0.001 * r / 0.1 * 0.9 / (r * 9 + 1e-7)});
}

/* W = (2, -4) decays, b = (2, -4) does not; L = sum(W) + sum(b), every
 * gradient 1; lr 0.1, weight decay 0.5. AdamW scales W by 0.95 and then
 * takes Adam's first step u = lr_t 0.1 / (sqrt(0.001) + 1e-7) ~ 0.1 on
 * every element: W = (1.9 - u, -3.8 - u), b = (2 - u, -4 - u). Adam's
 * coupled decay would see g = 1 + 0.5 W = (2, -1) and give W = (1.9, -3.9).
 * The second step, g still 1 and m = 0.19, v = 0.001999 (t = 2), is worked
 * from the rule too. The gradient norm is the gradients' alone: 2. */
static void adamw_decay_is_decoupled_and_per_parameter(void **state)
{
	(void)state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_ctx *ctx = tg_ctx_new(SEED);
		const double v0[2] = {2, -4};
		tg_tensor *p[2] = {
		    tg_set_decay(tg_set_name(tg_param(tg_from_f64(ctx, (tg_dtype)dt, SHAPE(2), v0)),
					     "fc1.W"),
				 true),
		    tg_set_name(tg_param(tg_from_f64(ctx, (tg_dtype)dt, SHAPE(2), v0)), "fc1.b"),
		};
		tg_optim_opts o = tg_optim_defaults(TG_ADAMW);
		o.lr = 0.1;
		o.weight_decay = 0.5;
		tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
		assert_non_null(opt);
		double w[2] = {2, -4}, b[2] = {2, -4}, m = 0, v = 0;
		double tol = dt == TG_F64 ? 1e-14 : 4e-6;
		for (int t = 1; t <= 2; t++) {
			tg_optim_zero_grad(opt);
			assert_int_equal(tg_backward(tg_add(tg_sum(p[0]), tg_sum(p[1]))), 0);
			assert_int_equal(tg_optim_step(opt), 0);
			m += (1 - o.beta1) * (1 - m);
			v += (1 - o.beta2) * (1 - v);
			double u = o.lr * sqrt(1 - pow(o.beta2, t)) / (1 - pow(o.beta1, t)) * m /
				   (sqrt(v) + o.eps);
			for (int i = 0; i < 2; i++) {
				w[i] = w[i] * (1 - o.lr * o.weight_decay) - u;
				b[i] -= u;
				assert_near(tg_get(p[0], i), w[i], tol);
				assert_near(tg_get(p[1], i), b[i], tol);
			}
			if (t == 1) {
				assert_near(tg_get(p[0], 0), 1.8, 1e-5);
				assert_near(tg_get(p[0], 1), -3.9, 1e-5);
				assert_near(tg_get(p[1], 0), 1.9, 1e-5);
			}
			assert_near(tg_optim_grad_norm(opt), 2, 0);
			tg_reset(ctx);
		}
		assert_ctx_ok(ctx);
		tg_optim_free(opt);
		tg_ctx_free(ctx);
	}
}

/* Four steps of the quadratic on w and of 0 z on z = (-0, +0), both marked
 * for decay if decays; w, z and the state (m and v of each) into all[6],
 * their context (to free) into *ctx_out. */
static void adam_or_adamw_bits(tg_optim_kind kind, tg_dtype dt, double wd, double clip,
			       bool decays, tg_ctx **ctx_out, tg_tensor **all)
{
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *w = tg_set_decay(tg_param(tg_from_f64(ctx, dt, SHAPE(2), W0)), decays);
	tg_tensor *z = tg_set_decay(tg_param(tg_from_f64(ctx, dt, SHAPE(2), (double[]){-0.0, 0})), decays);
	tg_tensor *p[2] = {w, z};
	tg_optim_opts o = tg_optim_defaults(kind);
	o.lr = 0.05;
	o.weight_decay = wd;
	o.clip_norm = clip;
	tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
	assert_non_null(opt);
	for (int s = 0; s < 4; s++) {
		tg_optim_zero_grad(opt);
		/* z's gradient is 0: its -0 and +0 must stay as Adam leaves them */
		assert_int_equal(tg_backward(tg_add(quadratic(ctx, w), tg_sum(tg_mul_scalar(z, 0)))), 0);
		assert_int_equal(tg_optim_step(opt), 0);
		tg_reset(ctx);
	}
	size_t ns;
	tg_tensor *const *st = tg_optim_state(opt, &ns);
	assert_int_equal(ns, 4);
	all[0] = w, all[1] = z;
	for (size_t i = 0; i < ns; i++)
		all[2 + i] = st[i];
	assert_ctx_ok(ctx);
	tg_optim_free(opt);
	*ctx_out = ctx;
}

/* AdamW without decay (weight_decay 0, or no parameter marked for it) makes
 * Adam's updates to the bit, in f32 and f64, with clipping off and on; with
 * decay its parameters differ from Adam's (coupled) ones. */
static void adamw_without_decay_is_adam_to_the_bit(void **state)
{
	(void)state;
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int variant = 0; variant < 4; variant++) {
			double clip = variant & 1 ? 1 : 0;
			bool decays = variant & 2;
			tg_ctx *ca, *cw;
			tg_tensor *a[6], *w[6];
			adam_or_adamw_bits(TG_ADAM, (tg_dtype)dt, 0, clip, true, &ca, a);
			adam_or_adamw_bits(TG_ADAMW, (tg_dtype)dt, decays ? 0 : 0.5, clip, decays,
					   &cw, w);
			for (int i = 0; i < 6; i++)
				assert_tensor_bits("adamw against adam", w[i], a[i]);
			assert_true(signbit(tg_get(w[1], 0)) && !signbit(tg_get(w[1], 1)));
			tg_ctx_free(ca);
			tg_ctx_free(cw);
			/* with decay the rules part */
			adam_or_adamw_bits(TG_ADAM, (tg_dtype)dt, 0.5, clip, true, &ca, a);
			adam_or_adamw_bits(TG_ADAMW, (tg_dtype)dt, 0.5, clip, true, &cw, w);
			assert_true(tg_get(w[0], 0) != tg_get(a[0], 0));
			tg_ctx_free(ca);
			tg_ctx_free(cw);
		}
}

/* A gradient whose square overflows (1e160 in f64, 1e25 in f32) makes v
 * inf and the element's update 0, as torch.optim.Adam's: the element keeps
 * its value at that step and at the ones after it (the same gradient, then
 * 0), never NaN, and the other element moves as ever. */
static void adam_keeps_an_element_whose_squared_gradient_overflows(void **state)
{
	(void)state;
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int k = TG_ADAM; k <= TG_ADAMW; k++) {
			tg_ctx *ctx = tg_ctx_new(SEED);
			tg_tensor *w = tg_param(tg_from_f64(ctx, (tg_dtype)dt, SHAPE(2),
							    (double[]){1, -1}));
			tg_optim_opts o = tg_optim_defaults((tg_optim_kind)k);
			tg_optim *opt = tg_optim_new(ctx, &w, 1, &o);
			assert_non_null(opt);
			double big = dt == TG_F64 ? 1e160 : 1e25;
			const double g[3][2] = {{big, 1}, {big, 1}, {0, 1}};
			for (int s = 0; s < 3; s++) {
				tg_optim_zero_grad(opt);
				tg_tensor *G = tg_from_f64(ctx, (tg_dtype)dt, SHAPE(2), g[s]);
				assert_int_equal(tg_backward(tg_sum(tg_mul(w, G))), 0);
				assert_int_equal(tg_optim_step(opt), 0);
				if (tg_get(w, 0) != 1)
					fail_msg("%s %s step %d: w[0] = %g, expected 1",
						 tg_optim_name((tg_optim_kind)k),
						 dt == TG_F64 ? "f64" : "f32", s + 1, tg_get(w, 0));
				assert_near(tg_get(w, 1), -1 - 0.001 * (s + 1), 1e-6);
				tg_reset(ctx);
			}
			assert_ctx_ok(ctx);
			tg_optim_free(opt);
			tg_ctx_free(ctx);
		}
}

/* In f32 the rules weigh the new gradient by 1 - beta (1 - rho) rounded
 * from double: 1 - (float)0.9999 is 1.00017e-4, whose error the bias
 * correction (in double) does not share. One step from w = 2 with g = 1
 * and beta2 (rho) 0.9999: Adam and AdamW move w by lr_t m / sqrt(v) = lr
 * (0.5), RMSprop by lr / sqrt(1 - rho) = 100 lr (0.005), to 1.5 within
 * float's rounding (the old 1.00017e-4 moved them 4e-6 less). */
static void f32_rules_weigh_the_gradient_by_one_minus_beta_in_double(void **state)
{
	(void)state;
	const tg_optim_kind kinds[3] = {TG_ADAM, TG_ADAMW, TG_RMSPROP};
	for (int k = 0; k < 3; k++) {
		tg_ctx *ctx = tg_ctx_new(SEED);
		tg_tensor *w = tg_param(tg_from_f64(ctx, TG_F32, SHAPE(1), (double[]){2}));
		tg_optim_opts o = tg_optim_defaults(kinds[k]);
		o.lr = kinds[k] == TG_RMSPROP ? 0.005 : 0.5;
		o.beta2 = o.rho = 0.9999;
		o.eps = 1e-30;
		tg_optim *opt = tg_optim_new(ctx, &w, 1, &o);
		assert_non_null(opt);
		assert_int_equal(tg_backward(tg_sum(w)), 0);
		assert_int_equal(tg_optim_step(opt), 0);
		if (!(fabs(tg_get(w, 0) - 1.5) <= 4e-7))
			fail_msg("%s: w = %.9g, expected 1.5", tg_optim_name(kinds[k]), tg_get(w, 0));
		assert_ctx_ok(ctx);
		tg_optim_free(opt);
		tg_ctx_free(ctx);
	}
}

/* ---- weight decay and clipping ---------------------------------------------------------- */

static void weight_decay_moves_weights_and_not_biases(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[2] = {
	    tg_set_decay(
		tg_set_name(tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){2, -4})),
			    "fc1.W"),
		true),
	    tg_set_name(tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){2, -4})), "fc1.b"),
	};
	tg_optim_opts o = tg_optim_defaults(TG_SGD);
	o.lr = 0.1;
	o.weight_decay = 0.5;
	tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
	/* L = sum(W) + sum(b): both gradients 1 */
	assert_int_equal(tg_backward(tg_add(tg_sum(p[0]), tg_sum(p[1]))), 0);
	assert_int_equal(tg_optim_step(opt), 0);
	/* W -= 0.1 (1 + 0.5 W): 2 - 0.1*2 = 1.8, -4 - 0.1*(-1) = -3.9; b -= 0.1 */
	assert_near(tg_get(p[0], 0), 1.8, 1e-12);
	assert_near(tg_get(p[0], 1), -3.9, 1e-12);
	assert_near(tg_get(p[1], 0), 1.9, 1e-12);
	assert_near(tg_get(p[1], 1), -4.1, 1e-12);
	/* the gradients themselves are left as they were */
	assert_near(tg_get(tg_grad(p[0]), 0), 1, 0);
	/* a per-parameter switch overrides the name rule */
	tg_optim_set_decay(opt, 0, false);
	tg_optim_set_decay(opt, 1, true);
	assert_int_equal(tg_optim_step(opt), 0);
	assert_near(tg_get(p[0], 0), 1.7, 1e-12);
	assert_near(tg_get(p[1], 0), 1.9 - 0.1 * (1 + 0.5 * 1.9), 1e-12);
	assert_ctx_ok(ctx);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
}

/* Decay lambda in the optimizer = 0.5 lambda sum(W^2) added to the loss. */
static void weight_decay_equals_the_penalty_in_the_loss(void **state)
{
	(void)state;
	double after[2][2];
	for (int way = 0; way < 2; way++) {
		tg_ctx *ctx = tg_ctx_new(SEED);
		tg_tensor *w = tg_set_decay(
		    tg_set_name(tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2), W0)), "q.W"), true);
		tg_optim_opts o = tg_optim_defaults(TG_MOMENTUM);
		o.lr = 0.05;
		o.weight_decay = way == 0 ? 0.3 : 0;
		tg_optim *opt = tg_optim_new(ctx, &w, 1, &o);
		for (int s = 0; s < STEPS; s++) {
			tg_optim_zero_grad(opt);
			tg_tensor *loss = quadratic(ctx, w);
			if (way == 1)
				loss = tg_add(loss, tg_weight_penalty(&w, 1, 0.3));
			assert_int_equal(tg_backward(loss), 0);
			assert_int_equal(tg_optim_step(opt), 0);
			tg_reset(ctx);
		}
		after[way][0] = tg_get(w, 0);
		after[way][1] = tg_get(w, 1);
		assert_ctx_ok(ctx);
		tg_optim_free(opt);
		tg_ctx_free(ctx);
	}
	assert_near(after[0][0], after[1][0], 1e-12);
	assert_near(after[0][1], after[1][1], 1e-12);
}

static void clipping_scales_all_gradients_to_the_max_norm(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[2] = {
	    tg_set_decay(tg_set_name(tg_param(tg_zeros(ctx, TG_F64, SHAPE(2))), "a.W"), true),
	    tg_set_name(tg_param(tg_zeros(ctx, TG_F64, SHAPE(1))), "a.b"),
	};
	tg_optim_opts o = tg_optim_defaults(TG_SGD);
	o.lr = 1;
	o.clip_norm = 2.6;
	tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
	/* gradients (3, 4) and (12): global norm 13, scaled by 2.6 / 13 = 0.2 */
	tg_tensor *g0 = tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){3, 4});
	tg_tensor *g1 = tg_from_f64(ctx, TG_F64, SHAPE(1), (double[]){12});
	assert_int_equal(tg_backward(tg_add(tg_sum(tg_mul(p[0], g0)), tg_sum(tg_mul(p[1], g1)))),
			 0);
	assert_int_equal(tg_optim_step(opt), 0);
	assert_near(tg_optim_grad_norm(opt), 13, 1e-12);
	assert_near(tg_get(p[0], 0), -0.6, 1e-12);
	assert_near(tg_get(p[0], 1), -0.8, 1e-12);
	assert_near(tg_get(p[1], 0), -2.4, 1e-12);
	/* under the limit nothing is scaled */
	tg_optim_free(opt);
	o.clip_norm = 20;
	opt = tg_optim_new(ctx, p, 2, &o);
	assert_int_equal(tg_optim_step(opt), 0);
	assert_near(tg_get(p[0], 0), -3.6, 1e-12);
	assert_near(tg_get(p[1], 0), -14.4, 1e-12);
	assert_ctx_ok(ctx);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
}

/* f64 gradients of 3e200 and 4e200: their squares overflow a double, the
 * norm 5e200 does not, and clipping scales by it rather than by inf (which
 * made every gradient 0) */
static void clipping_survives_gradients_whose_squares_overflow(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[2] = {
	    tg_set_name(tg_param(tg_zeros(ctx, TG_F64, SHAPE(1))), "a.W"),
	    tg_set_name(tg_param(tg_zeros(ctx, TG_F64, SHAPE(1))), "a.b"),
	};
	tg_optim_opts o = tg_optim_defaults(TG_SGD);
	o.lr = 1;
	o.clip_norm = 1;
	tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
	tg_tensor *g0 = tg_from_f64(ctx, TG_F64, SHAPE(1), (double[]){3e200});
	tg_tensor *g1 = tg_from_f64(ctx, TG_F64, SHAPE(1), (double[]){-4e200});
	assert_int_equal(tg_backward(tg_add(tg_sum(tg_mul(p[0], g0)), tg_sum(tg_mul(p[1], g1)))),
			 0);
	assert_int_equal(tg_optim_step(opt), 0);
	assert_near(tg_optim_grad_norm(opt) / 5e200, 1, 1e-15);
	assert_near(tg_get(p[0], 0), -0.6, 1e-15);
	assert_near(tg_get(p[1], 0), 0.8, 1e-15);
	/* an infinite gradient has an infinite norm, as before */
	tg_optim_zero_grad(opt);
	tg_tensor *ginf = tg_from_f64(ctx, TG_F64, SHAPE(1), (double[]){INFINITY});
	assert_int_equal(tg_backward(tg_add(tg_sum(tg_mul(p[0], ginf)), tg_sum(tg_mul(p[1], g1)))),
			 0);
	assert_int_equal(tg_optim_step(opt), 0);
	assert_true(isinf(tg_optim_grad_norm(opt)));
	assert_ctx_ok(ctx);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
}

/* The global norm over parameters of many elements (not a multiple of the
 * summing loops' width; 100 003 are summed in four blocks split across the
 * threads), with weight decay on some, in both dtypes, at 1 and 2 threads:
 * the norm of each g + wd p (in the parameter's dtype) as a plain sum in
 * long double gives, to rounding, and both thread counts the same bits. One
 * parameter takes no part in the loss: in a resumed run (its count
 * restored, no gradient buffer yet) it counts as a gradient of zeros plus
 * its decay. */
static void grad_norm_of_large_parameters_is_the_plain_sum(void **state)
{
	(void)state;
	enum { NP = 4 };
	const int64_t len[NP] = {1003, 100003, 16, 13};
	const bool dec[NP] = {true, true, false, true};
	const double wd = 0.25;
	for (int f64 = 0; f64 < 2; f64++) {
		double norms[2][2];
		for (int threads = 1; threads <= 2; threads++) {
			tg_dtype dt = f64 ? TG_F64 : TG_F32;
			tg_ctx *ctx = tg_ctx_new(SEED);
			tg_set_threads(ctx, threads);
			tg_tensor *p[NP], *g[NP];
			for (int i = 0; i < NP; i++) {
				p[i] = tg_set_decay(tg_param(tg_randn(ctx, dt, SHAPE(len[i]), 0, 1)),
						    dec[i]);
				g[i] = tg_keep(tg_randn(ctx, dt, SHAPE(len[i]), 0, 1));
			}
			tg_optim_opts o = tg_optim_defaults(TG_SGD);
			o.weight_decay = wd;
			tg_optim *opt = tg_optim_new(ctx, p, NP, &o);
			assert_non_null(opt);
			tg_optim_set_steps(opt, 1);
			for (int step = 0; step < 2; step++) {
				int used = NP - 1; /* p[3] left out */
				long double want = 0;
				for (int i = 0; i < NP; i++)
					for (int64_t k = 0; k < len[i]; k++) {
						double gk = i < used ? tg_get(g[i], k) : 0;
						double pk = dec[i] ? tg_get(p[i], k) : 0;
						double x = f64 ? gk + wd * pk
							       : (double)((float)gk +
									  (float)wd * (float)pk);
						want += (long double)x * x;
					}
				tg_tensor *loss = tg_sum(tg_mul(p[0], g[0]));
				for (int i = 1; i < used; i++)
					loss = tg_add(loss, tg_sum(tg_mul(p[i], g[i])));
				tg_optim_zero_grad(opt);
				assert_int_equal(tg_backward(loss), 0);
				assert_int_equal(tg_optim_step(opt), 0);
				double got = tg_optim_grad_norm(opt), w = (double)sqrtl(want);
				if (!(fabs(got - w) <= 1e-14 * w))
					fail_msg("%s step %d, %d threads: norm %.17g, plain sum %.17g",
						 f64 ? "f64" : "f32", step, threads, got, w);
				norms[threads - 1][step] = got;
				tg_reset(ctx);
			}
			assert_ctx_ok(ctx);
			tg_optim_free(opt);
			tg_ctx_free(ctx);
		}
		if (memcmp(norms[0], norms[1], sizeof norms[0]))
			fail_msg("%s: norms %.17g, %.17g at 1 thread, %.17g, %.17g at 2",
				 f64 ? "f64" : "f32", norms[0][0], norms[0][1], norms[1][0],
				 norms[1][1]);
	}
}

/* Without clipping the step leaves the norm to tg_optim_grad_norm, which reads
 * the gradients still there; with weight decay the step computes it, because
 * the decay term uses the parameters from before the update. */
static void grad_norm_is_the_last_steps_with_and_without_clipping(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[2] = {
	    tg_set_decay(
		tg_set_name(tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){1, 2})), "a.W"),
		true),
	    tg_set_name(tg_param(tg_zeros(ctx, TG_F64, SHAPE(1))), "a.b"),
	};
	tg_tensor *g0 = tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){3, 4});
	tg_tensor *g1 = tg_from_f64(ctx, TG_F64, SHAPE(1), (double[]){12});
	tg_optim_opts o = tg_optim_defaults(TG_SGD);
	o.lr = 1;
	for (int decayed = 0; decayed < 2; decayed++) {
		/* decayed: gradients (3 + 1, 4 + 2) and (12), norm sqrt(196) */
		o.weight_decay = decayed;
		tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
		assert_near(tg_optim_grad_norm(opt), 0, 0);
		tg_assign(p[0], tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){1, 2}));
		tg_optim_zero_grad(opt);
		assert_int_equal(
		    tg_backward(tg_add(tg_sum(tg_mul(p[0], g0)), tg_sum(tg_mul(p[1], g1)))), 0);
		assert_int_equal(tg_optim_step(opt), 0);
		assert_near(tg_optim_grad_norm(opt), decayed ? 14 : 13, 1e-12);
		assert_near(tg_get(p[0], 0), decayed ? -3 : -2, 1e-12);
		tg_optim_free(opt);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* ---- what an optimizer refuses or skips ------------------------------------------------------ */

static void optimizer_refuses_a_tensor_without_a_gradient_naming_it(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[2] = {
	    tg_set_decay(tg_set_name(tg_param(tg_zeros(ctx, TG_F64, SHAPE(2))), "fc1.W"), true),
	    tg_set_name(tg_keep(tg_zeros(ctx, TG_F64, SHAPE(2))), "bn1.running_mean"),
	};
	tg_optim_opts o = tg_optim_defaults(TG_ADAM);
	assert_null(tg_optim_new(ctx, p, 2, &o));
	assert_error(ctx, TG_EARG, "params[1] bn1.running_mean (2,) does not require a gradient");
	tg_clear_error(ctx);
	p[1] = p[0];
	assert_null(tg_optim_new(ctx, p, 2, &o));
	assert_error(ctx, TG_EARG, "the same tensor fc1.W");
	tg_clear_error(ctx);
	o.lr = -1;
	assert_null(tg_optim_new(ctx, p, 1, &o));
	assert_error(ctx, TG_EARG, "lr must be >= 0");
	tg_ctx_free(ctx);
}

/* eps is added to a square root of a sum of squares in the parameter's
 * dtype: one that rounds to 0 there (1e-50 in f32) turns an element whose
 * gradient is 0 into 0 / 0 at the first step, NaN with no error. It is
 * refused naming the parameter, as a norm layer's eps is; in f64 the same
 * eps is a number and trains. A rate or a decay beyond f32's range is inf
 * there, and inf * 0 NaN likewise. */
static void an_eps_or_rate_outside_the_parameters_dtype_is_refused(void **state)
{
	(void)state;
	const tg_optim_kind kinds[] = {TG_ADAGRAD, TG_RMSPROP, TG_ADAM, TG_ADAMW};
	for (size_t k = 0; k < LEN(kinds); k++) {
		tg_ctx *ctx = tg_ctx_new(SEED);
		tg_tensor *w32 = tg_set_name(tg_param(tg_ones(ctx, TG_F32, SHAPE(2))), "fc1.W");
		tg_tensor *w64 = tg_set_name(tg_param(tg_ones(ctx, TG_F64, SHAPE(2))), "fc2.W");
		tg_optim_opts o = tg_optim_defaults(kinds[k]);
		o.eps = 1e-50;
		assert_null(tg_optim_new(ctx, &w32, 1, &o));
		assert_error(ctx, TG_EARG, "eps = 1e-50");
		assert_error(ctx, TG_EARG, "params[0] fc1.W is f32");
		tg_clear_error(ctx);
		/* in f64 it is a number: a zero gradient leaves the element */
		tg_optim *opt = tg_optim_new(ctx, &w64, 1, &o);
		assert_non_null(opt);
		double c[2] = {0, 1};
		assert_int_equal(tg_backward(tg_sum(tg_mul(tg_from_f64(ctx, TG_F64, SHAPE(2), c), w64))), 0);
		assert_int_equal(tg_optim_step(opt), 0);
		assert_near(tg_get(w64, 0), 1, 0);
		assert_true(tg_get(w64, 1) < 1);
		assert_ctx_ok(ctx);
		tg_optim_free(opt);
		tg_ctx_free(ctx);
	}
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *w32 = tg_set_name(tg_param(tg_ones(ctx, TG_F32, SHAPE(2))), "fc1.W");
	tg_optim_opts o = tg_optim_defaults(TG_SGD);
	o.eps = 1e-50; /* SGD reads no eps */
	tg_optim *opt = tg_optim_new(ctx, &w32, 1, &o);
	assert_non_null(opt);
	tg_optim_set_lr(opt, 1e39);
	assert_error(ctx, TG_EARG, "lr = 1e+39");
	assert_near(tg_optim_lr(opt), 0.01, 0);
	tg_clear_error(ctx);
	tg_optim_free(opt);
	o.lr = 1e39;
	assert_null(tg_optim_new(ctx, &w32, 1, &o));
	assert_error(ctx, TG_EARG, "lr = 1e+39");
	tg_clear_error(ctx);
	o.lr = 0.01;
	o.weight_decay = 1e39;
	assert_null(tg_optim_new(ctx, &w32, 1, &o));
	assert_error(ctx, TG_EARG, "weight_decay = 1e+39");
	tg_ctx_free(ctx);
}

static void optimizer_skips_a_parameter_without_a_gradient(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[2] = {
	    tg_set_decay(tg_set_name(tg_param(tg_ones(ctx, TG_F64, SHAPE(2))), "fc1.W"), true),
	    tg_set_decay(tg_set_name(tg_param(tg_ones(ctx, TG_F64, SHAPE(2))), "fc2.W"), true),
	};
	tg_optim_opts o = tg_optim_defaults(TG_SGD);
	o.lr = 0.5;
	o.weight_decay = 1;
	tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
	assert_int_equal(tg_backward(tg_sum(p[0])), 0);
	assert_null(tg_grad(p[1]));
	assert_int_equal(tg_optim_step(opt), 0);
	assert_near(tg_get(p[0], 0), 1 - 0.5 * (1 + 1), 1e-12);
	assert_near(tg_get(p[1], 0), 1, 0);
	assert_ctx_ok(ctx);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
}

/* tg_zero_grad marks a gradient buffer empty instead of clearing it: the
 * next backward writes its gradient in (nothing stale is added to it), a
 * second backward adds to it, and a look in between reads zeros. */
static void zeroed_gradients_read_zeros_and_are_overwritten(void **state)
{
	(void)state;
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F32 : TG_F64;
		double tol = d ? 1e-6 : 0;
		tg_ctx *ctx = tg_ctx_new(SEED);
		tg_tensor *w = tg_set_decay(
		    tg_set_name(tg_param(tg_from_f64(ctx, dt, SHAPE(2), W0)), "q.W"), true);
		tg_optim_opts o = tg_optim_defaults(TG_MOMENTUM);
		o.lr = 0.5;
		o.momentum = 0.9;
		o.weight_decay = 0.1;
		tg_optim *opt = tg_optim_new(ctx, &w, 1, &o);
		/* two backwards add: 2 (a w + c) */
		assert_int_equal(tg_backward(quadratic(ctx, w)), 0);
		assert_int_equal(tg_backward(quadratic(ctx, w)), 0);
		for (size_t i = 0; i < 2; i++)
			assert_near(tg_get(tg_grad(w), i), 2 * (A[i] * W0[i] + C[i]), tol);
		tg_reset(ctx);
		/* zeroed: reads zeros where a user looks */
		tg_optim_zero_grad(opt);
		assert_non_null(tg_grad(w));
		for (size_t i = 0; i < 2; i++)
			assert_near(tg_get(tg_grad(w), i), 0, 0);
		/* zeroed, not looked at: the next backward's gradient alone */
		tg_optim_zero_grad(opt);
		assert_int_equal(tg_backward(quadratic(ctx, w)), 0);
		for (size_t i = 0; i < 2; i++)
			assert_near(tg_get(tg_grad(w), i), A[i] * W0[i] + C[i], tol);
		assert_int_equal(tg_backward(quadratic(ctx, w)), 0);
		for (size_t i = 0; i < 2; i++)
			assert_near(tg_get(tg_grad(w), i), 2 * (A[i] * W0[i] + C[i]), tol);
		tg_reset(ctx);
		/* a step after tg_zero_grad with no backward: the gradient is 0, so
		 * only the decay moves w: v = -lr wd w, w += v */
		tg_optim_zero_grad(opt);
		assert_int_equal(tg_optim_step(opt), 0);
		for (size_t i = 0; i < 2; i++)
			assert_near(tg_get(w, i), W0[i] - 0.5 * 0.1 * W0[i], tol);
		assert_ctx_ok(ctx);
		tg_optim_free(opt);
		tg_ctx_free(ctx);
	}
}

static void a_step_between_forward_and_backward_is_caught(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *w = tg_set_decay(
	    tg_set_name(tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2), W0)), "q.W"), true);
	tg_optim_opts o = tg_optim_defaults(TG_SGD);
	tg_optim *opt = tg_optim_new(ctx, &w, 1, &o);
	assert_int_equal(tg_backward(quadratic(ctx, w)), 0);
	tg_reset(ctx);
	tg_tensor *loss = quadratic(ctx, w);
	assert_int_equal(tg_optim_step(opt), 0); /* with the old gradient */
	assert_int_equal(tg_backward(loss), -1);
	assert_error(ctx, TG_EVERSION, "q.W");
	/* and while the error is set, a step changes nothing */
	double before = tg_get(w, 0);
	assert_int_equal(tg_optim_step(opt), -1);
	assert_true(tg_get(w, 0) == before);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
}

static void optimizer_state_is_named_after_its_parameters(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[2] = {
	    tg_set_decay(tg_set_name(tg_param(tg_ones(ctx, TG_F32, SHAPE(2, 3))), "fc1.W"), true),
	    tg_set_name(tg_param(tg_ones(ctx, TG_F32, SHAPE(3))), "fc1.b"),
	};
	static const struct {
		tg_optim_kind kind;
		size_t n;
		const char *first;
		const char *second;
	} rows[] = {
	    {TG_SGD, 0, NULL, NULL},
	    {TG_MOMENTUM, 2, "fc1.W.v", "fc1.b.v"},
	    {TG_NESTEROV, 2, "fc1.W.v", "fc1.b.v"},
	    {TG_ADAGRAD, 2, "fc1.W.h", "fc1.b.h"},
	    {TG_RMSPROP, 2, "fc1.W.h", "fc1.b.h"},
	    {TG_ADAM, 4, "fc1.W.m", "fc1.W.v"},
	    {TG_ADAMW, 4, "fc1.W.m", "fc1.W.v"},
	};
	for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
		tg_optim_opts o = tg_optim_defaults(rows[r].kind);
		tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
		size_t n;
		tg_tensor *const *s = tg_optim_state(opt, &n);
		assert_int_equal(n, rows[r].n);
		if (n) {
			assert_string_equal(tg_name(s[0]), rows[r].first);
			assert_string_equal(tg_name(s[1]), rows[r].second);
			assert_false(tg_requires_grad(s[0]));
			assert_int_equal(tg_numel(s[0]), 6);
			assert_int_equal(tg_dtype_of(s[0]), TG_F32);
		}
		tg_optim_free(opt);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* A step count restored as the largest count (a checkpoint's "optim.steps")
 * cannot grow: the step is refused with nothing changed, instead of a
 * signed overflow. */
/* A gradient a failed backward left partly accumulated is refused by the
 * step before any parameter moves, until tg_zero_grad. */
static void a_step_over_a_gradient_a_failed_backward_left_is_refused(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[2] = { tg_param(tg_ones(ctx, TG_F64, SHAPE(64, 64))),
			    tg_param(tg_ones(ctx, TG_F64, SHAPE(64, 64))) };
	tg_set_name(p[0], "a");
	tg_optim_opts o = tg_optim_defaults(TG_SGD);
	tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
	size_t full = 0;
	for (int i = 0; i < 3; i++) { /* the third, accumulating, fails at its end */
		if (i == 2)
			tg_set_arena_limit(ctx, full - 1);
		tg_tensor *y = tg_sum(tg_mul(tg_tanh(tg_matmul(p[0], p[1])), tg_exp(p[0])));
		assert_int_equal(tg_backward(y), i == 2 ? -1 : 0);
		full = tg_arena_used(ctx);
		tg_reset(ctx);
	}
	tg_clear_error(ctx);
	tg_set_arena_limit(ctx, 0);
	assert_int_equal(tg_optim_step(opt), -1);
	assert_error(ctx, TG_EARG, "the gradient of 'a' (64,64) was partly accumulated");
	for (int j = 0; j < 2; j++)
		assert_near(tg_get(p[j], 0), 1, 0);
	tg_clear_error(ctx);
	tg_optim_zero_grad(opt);
	assert_int_equal(tg_optim_step(opt), 0);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
}

static void a_step_count_at_its_limit_is_refused(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *w = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){1, -2}));
	tg_optim_opts o = tg_optim_defaults(TG_ADAM);
	tg_optim *opt = tg_optim_new(ctx, &w, 1, &o);
	tg_optim_set_steps(opt, INT64_MAX);
	tg_backward(tg_sum(tg_mul(w, w)));
	assert_int_equal(tg_optim_step(opt), -1);
	assert_error(ctx, TG_EARG, "cannot grow");
	assert_int_equal(tg_optim_steps(opt), INT64_MAX);
	assert_near(tg_get(w, 0), 1, 0);
	assert_near(tg_get(w, 1), -2, 0);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
}

/* Two decaying parameters at W0 in a new context, and rule k's options
 * with lr 0.1 and weight decay 0.5 (none for Adam): the frozen-parameter
 * tests' start. */
static tg_ctx *frozen_case(int k, tg_tensor *p[2], tg_optim_opts *o)
{
	tg_ctx *ctx = tg_ctx_new(SEED);
	for (int i = 0; i < 2; i++)
		p[i] = tg_set_decay(tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2), W0)), true);
	*o = tg_optim_defaults((tg_optim_kind)k);
	o->lr = 0.1;
	o->weight_decay = k == TG_ADAM ? 0 : 0.5;
	return ctx;
}

/* A parameter frozen (tg_set_requires_grad off) after its first step is
 * skipped by every rule, weight decay and velocity included, and Adam's bias
 * correction for it counts only the steps that updated it: frozen for steps
 * 2 and 3, its step 4 is Adam's second (as PyTorch's per-parameter step),
 * not its fourth. g = C on u, so the rule is written out below. */
static void a_frozen_parameter_stays_and_adam_counts_its_own_steps(void **state)
{
	(void)state;
	for (int k = TG_SGD; k <= TG_ADAMW; k++) {
		tg_tensor *p[2];
		tg_optim_opts o;
		tg_ctx *ctx = frozen_case(k, p, &o);
		tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
		tg_tensor *c = tg_from_f64(ctx, TG_F64, SHAPE(2), C);
		double frozen[2] = {0};
		for (int s = 1; s <= 4; s++) {
			tg_set_requires_grad(p[1], s < 2 || s > 3);
			tg_optim_zero_grad(opt);
			assert_int_equal(tg_backward(tg_add(quadratic(ctx, p[0]),
							    tg_sum(tg_mul(p[1], c)))), 0);
			assert_int_equal(tg_optim_step(opt), 0);
			tg_reset(ctx);
			c = tg_from_f64(ctx, TG_F64, SHAPE(2), C);
			if (s == 1)
				frozen[0] = tg_get(p[1], 0), frozen[1] = tg_get(p[1], 1);
			if (s == 3) {
				printf("%s frozen u = (%.17g, %.17g), after step 1 (%.17g, %.17g)\n",
				       tg_optim_name(k), tg_get(p[1], 0), tg_get(p[1], 1), frozen[0],
				       frozen[1]);
				assert_near(tg_get(p[1], 0), frozen[0], 0);
				assert_near(tg_get(p[1], 1), frozen[1], 0);
			}
		}
		assert_int_equal(tg_optim_steps(opt), 4);
		assert_int_equal(tg_optim_param_steps(opt, 0), 4);
		assert_int_equal(tg_optim_param_steps(opt, 1), 2);
		if (k == TG_ADAM || k == TG_ADAMW) { /* AdamW's decay skips the frozen steps too */
			for (int i = 0; i < 2; i++) {
				double m = 0, v = 0, u = W0[i];
				for (int t = 1; t <= 2; t++) {
					m += (1 - o.beta1) * (C[i] - m);
					v += (1 - o.beta2) * (C[i] * C[i] - v);
					if (k == TG_ADAMW)
						u *= 1 - o.lr * o.weight_decay;
					u -= o.lr * sqrt(1 - pow(o.beta2, t)) / (1 - pow(o.beta1, t)) *
					     m / (sqrt(v) + o.eps);
				}
				printf("%s u[%d] %.17g, want %.17g\n", tg_optim_name(k), i,
				       tg_get(p[1], i), u);
				assert_near(tg_get(p[1], i), u, 1e-15);
			}
		}
		assert_ctx_ok(ctx);
		tg_optim_free(opt);
		tg_ctx_free(ctx);
	}
}

/* Frozen after the forward pass, before the backward, a parameter gets no
 * gradient and the step leaves it (and its count) as it was; frozen after
 * the backward, the gradient it holds goes unread by the step and its
 * norm. Each rule, with weight decay and velocity that would move it on a
 * zero gradient. */
static void a_parameter_frozen_inside_a_step_is_skipped(void **state)
{
	(void)state;
	for (int k = TG_SGD; k <= TG_ADAMW; k++) {
		tg_tensor *p[2];
		tg_optim_opts o;
		tg_ctx *ctx = frozen_case(k, p, &o);
		double wd = k == TG_ADAMW ? 0 : o.weight_decay; /* in the gradient's norm */
		tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
		for (int s = 1; s <= 4; s++) {
			tg_set_requires_grad(p[1], true);
			tg_optim_zero_grad(opt);
			tg_tensor *c = tg_from_f64(ctx, TG_F64, SHAPE(2), C);
			tg_tensor *l = tg_add(quadratic(ctx, p[0]), tg_sum(tg_mul(p[1], c)));
			if (s == 2)
				tg_set_requires_grad(p[1], false);
			assert_int_equal(tg_backward(l), 0);
			if (s == 2)
				assert_null(tg_grad(p[1]));
			if (s == 3) {
				assert_non_null(tg_grad(p[1]));
				tg_set_requires_grad(p[1], false);
			}
			double before[2] = {tg_get(p[1], 0), tg_get(p[1], 1)}, norm = 0;
			for (int j = 0; j < 2; j++) {
				if (!tg_requires_grad(p[j]))
					continue;
				for (size_t i = 0; i < 2; i++) {
					double g = tg_get(tg_grad(p[j]), i) + wd * tg_get(p[j], i);
					norm += g * g;
				}
			}
			assert_int_equal(tg_optim_step(opt), 0);
			assert_near(tg_optim_grad_norm(opt), sqrt(norm), 1e-12);
			for (int i = 0; i < 2 && (s == 2 || s == 3); i++)
				assert_near(tg_get(p[1], (size_t)i), before[i], 0);
			if (s == 4)
				assert_true(tg_get(p[1], 0) != before[0]);
			assert_int_equal(tg_optim_param_steps(opt, 1), s < 4 ? 1 : 2);
			assert_ctx_ok(ctx);
			tg_reset(ctx);
		}
		tg_optim_free(opt);
		tg_ctx_free(ctx);
	}
}

/* Resuming sets every parameter's count with the optimizer's; a count of
 * its own lies in [0, steps]. */
static void parameter_step_counts_are_set_when_resuming(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[2] = {tg_param(tg_ones(ctx, TG_F64, SHAPE(2))),
			   tg_param(tg_ones(ctx, TG_F64, SHAPE(2)))};
	tg_optim_opts o = tg_optim_defaults(TG_ADAM);
	tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
	tg_optim_set_steps(opt, 7);
	assert_int_equal(tg_optim_param_steps(opt, 0), 7);
	assert_int_equal(tg_optim_param_steps(opt, 1), 7);
	assert_int_equal(tg_optim_param_steps(opt, 2), -1);
	tg_optim_set_param_steps(opt, 1, 3);
	assert_int_equal(tg_optim_param_steps(opt, 1), 3);
	assert_ctx_ok(ctx);
	tg_optim_set_param_steps(opt, 1, 8);
	assert_error(ctx, TG_EARG, "tg_optim_set_param_steps: params[1], 8 steps; the optimizer "
				   "has 2 parameters and has taken 7 steps");
	tg_clear_error(ctx);
	tg_optim_set_param_steps(opt, 2, 1);
	assert_error(ctx, TG_EARG, "params[2], 1 steps");
	tg_clear_error(ctx);
	tg_optim_set_param_steps(opt, 0, -1);
	assert_error(ctx, TG_EARG, "params[0], -1 steps");
	tg_clear_error(ctx);
	assert_int_equal(tg_optim_param_steps(opt, 1), 3);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
}

/* ---- resuming in a new context ------------------------------------------------ */

/* The loss of step s (from 1): the quadratic of p[0], plus c . p[1] on odd
 * steps only (a branch the even steps do not use: p[1] gets no gradient
 * there). */
static tg_tensor *branch_loss(tg_ctx *ctx, tg_tensor *const *p, int s)
{
	tg_tensor *l = quadratic(ctx, p[0]);
	if (s % 2)
		l = tg_add(l, tg_sum(tg_mul(p[1], tg_from_f64(ctx, TG_F64, SHAPE(2), C))));
	return l;
}

typedef struct branch_run {
	tg_ctx *ctx;
	tg_tensor *p[2];
	tg_optim *opt;
	tg_tensor *all[6]; /* p, then the optimizer's state */
	size_t n;
} branch_run;

static void branch_new(branch_run *r, const tg_optim_opts *o)
{
	r->ctx = tg_ctx_new(SEED);
	for (int i = 0; i < 2; i++) {
		r->p[i] = tg_param(tg_from_f64(r->ctx, TG_F64, SHAPE(2), W0));
		tg_set_decay(tg_set_name(r->p[i], i ? "branch.W" : "q.W"), true);
	}
	r->opt = tg_optim_new(r->ctx, r->p, 2, o);
	assert_non_null(r->opt);
	size_t ns;
	tg_tensor *const *st = tg_optim_state(r->opt, &ns);
	r->all[0] = r->p[0], r->all[1] = r->p[1];
	for (size_t i = 0; i < ns; i++)
		r->all[2 + i] = st[i];
	r->n = 2 + ns;
}

static void branch_steps(branch_run *r, int from, int to)
{
	for (int s = from; s <= to; s++) {
		tg_optim_zero_grad(r->opt);
		assert_int_equal(tg_backward(branch_loss(r->ctx, r->p, s)), 0);
		assert_int_equal(tg_optim_step(r->opt), 0);
		tg_reset(r->ctx);
	}
	assert_ctx_ok(r->ctx);
}

static void branch_free(branch_run *r)
{
	tg_optim_free(r->opt);
	tg_ctx_free(r->ctx);
}

/* Six steps straight, and three saved with tg_state_optim, read into a new
 * context (where p[1] never had a gradient) with tg_state_restore_optim and
 * run three more, end with the same bits in the parameters and the state,
 * for every rule with weight decay and clipping off and on: p[1], unused on
 * even steps, takes zeros there (its state decays, weight decay applies)
 * in both runs, and Adam's counts are the saved ones. */
static void a_run_resumed_in_a_new_context_makes_the_same_updates(void **state)
{
	(void)state;
	char path[64];
	snprintf(path, sizeof path, "/tmp/tg_test_optim_%ld.ckpt", (long)getpid());
	for (int k = TG_SGD; k <= TG_ADAMW; k++)
		for (int variant = 0; variant < 2; variant++) {
			tg_optim_opts o = tg_optim_defaults((tg_optim_kind)k);
			o.lr = 0.1;
			o.weight_decay = variant ? 0.5 : 0;
			o.clip_norm = variant ? 1 : 0;
			branch_run a, b, c;
			branch_new(&a, &o);
			branch_steps(&a, 1, 6);
			branch_new(&b, &o);
			branch_steps(&b, 1, 3);
			tg_state *st = tg_state_new(b.ctx);
			assert_int_equal(tg_state_add(st, b.all, b.n), 0);
			assert_int_equal(tg_state_optim(st, b.opt), 0);
			assert_int_equal(tg_checkpoint_save_state(b.ctx, path, st), 0);
			tg_state_free(st);
			branch_free(&b);

			branch_new(&c, &o);
			assert_int_equal(tg_checkpoint_read(c.ctx, path, &st), 0);
			assert_int_equal(tg_state_load_into(st, c.all, c.n, TG_CHECKPOINT_STRICT, NULL, 0),
					 (int)c.n);
			assert_int_equal(tg_state_restore_optim(st, c.opt), 0);
			tg_state_free(st);
			assert_int_equal(tg_optim_steps(c.opt), 3);
			assert_int_equal(tg_optim_param_steps(c.opt, 0), 3);
			assert_int_equal(tg_optim_param_steps(c.opt, 1), 3);
			branch_steps(&c, 4, 6);
			printf("%s wd %g clip %g: p[1] straight (%.17g, %.17g), resumed (%.17g, %.17g)\n",
			       tg_optim_name(k), o.weight_decay, o.clip_norm, tg_get(a.p[1], 0),
			       tg_get(a.p[1], 1), tg_get(c.p[1], 0), tg_get(c.p[1], 1));
			assert_int_equal(tg_optim_param_steps(c.opt, 1), tg_optim_param_steps(a.opt, 1));
			for (size_t i = 0; i < a.n; i++)
				assert_tensor_bits(tg_name(a.all[i]), c.all[i], a.all[i]);
			branch_free(&a);
			branch_free(&c);
		}
	unlink(path);
}

/* A parameter that was never updated (its branch unused from the start) is
 * skipped, and so is one updated before and then frozen; the counts saved
 * say so and come back. */
static void parameter_counts_round_trip_through_a_state(void **state)
{
	(void)state;
	tg_optim_opts o = tg_optim_defaults(TG_ADAM);
	branch_run a;
	branch_new(&a, &o);
	for (int s = 2; s <= 6; s += 2) /* even steps only: p[1] unused */
		branch_steps(&a, s, s);
	assert_int_equal(tg_optim_param_steps(a.opt, 1), 0);
	assert_tensor_bits("never updated", a.p[1],
			   tg_from_f64(a.ctx, TG_F64, SHAPE(2), W0));
	tg_state *st = tg_state_new(a.ctx);
	assert_int_equal(tg_state_optim(st, a.opt), 0);
	assert_string_equal(tg_state_string(st, "optim"), "adam");
	int64_t got[3] = {0};
	assert_int_equal(tg_state_i64(st, "optim.steps", got, 3), 1);
	assert_int_equal(got[0], 3);
	assert_int_equal(tg_state_i64(st, "optim.param_steps", got, 3), 2);
	assert_int_equal(got[0], 3);
	assert_int_equal(got[1], 0);
	branch_run b;
	branch_new(&b, &o);
	assert_int_equal(tg_state_restore_optim(st, b.opt), 0);
	assert_int_equal(tg_optim_steps(b.opt), 3);
	assert_int_equal(tg_optim_param_steps(b.opt, 1), 0);
	tg_state_free(st);
	branch_free(&b);
	/* frozen after an update: skipped, weight decay and state included */
	tg_optim_opts m = tg_optim_defaults(TG_MOMENTUM);
	m.weight_decay = 0.5;
	branch_new(&b, &m);
	branch_steps(&b, 1, 1);
	tg_set_requires_grad(b.p[1], false);
	double before[2] = {tg_get(b.p[1], 0), tg_get(b.p[1], 1)};
	branch_steps(&b, 2, 3);
	assert_near(tg_get(b.p[1], 0), before[0], 0);
	assert_near(tg_get(b.p[1], 1), before[1], 0);
	assert_int_equal(tg_optim_param_steps(b.opt, 1), 1);
	branch_free(&b);
	branch_free(&a);
}

/* A resumed step whose zeros for a missing gradient cannot be made (the
 * arena limit reached) is TG_ENOMEM and moves nothing: neither a parameter
 * nor a count; with memory back the same step runs. */
static void a_resumed_step_out_of_memory_changes_nothing(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *p[2];
	for (int i = 0; i < 2; i++)
		p[i] = tg_set_decay(tg_param(tg_full(ctx, TG_F64, SHAPE(1000), 1.0)), true);
	tg_optim_opts o = tg_optim_defaults(TG_MOMENTUM);
	o.weight_decay = 0.5;
	tg_optim *opt = tg_optim_new(ctx, p, 2, &o);
	tg_optim_set_steps(opt, 1); /* both had gradients: zeros stand in */
	tg_set_arena_limit(ctx, 1);
	assert_int_equal(tg_optim_step(opt), -1);
	assert_error(ctx, TG_ENOMEM, "step arena limit");
	tg_clear_error(ctx);
	tg_set_arena_limit(ctx, 0);
	for (int i = 0; i < 2; i++)
		assert_near(tg_get(p[i], 999), 1.0, 0);
	assert_int_equal(tg_optim_steps(opt), 1);
	assert_int_equal(tg_optim_param_steps(opt, 1), 1);
	assert_int_equal(tg_optim_step(opt), 0);
	assert_int_equal(tg_optim_param_steps(opt, 1), 2);
	printf("after a step of zeros with decay 0.5: p[1][999] = %.17g\n", tg_get(p[1], 999));
	assert_near(tg_get(p[1], 999), 1 - o.lr * 0.5, 1e-15);
	assert_ctx_ok(ctx);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
}

/* A state of another optimizer, of another number of parameters, with
 * counts out of range, or without a step count is refused by name and the
 * optimizer keeps its counts; a state saved before per-parameter counts
 * sets every count to the steps. */
static void restoring_a_state_that_does_not_fit_is_refused(void **state)
{
	(void)state;
	tg_optim_opts o = tg_optim_defaults(TG_ADAM);
	branch_run r;
	branch_new(&r, &o);
	branch_steps(&r, 1, 2);
	tg_state *st = tg_state_new(r.ctx);
	int64_t steps = 9, counts[3] = {9, 4, 1};
	/* saved before per-parameter counts */
	assert_int_equal(tg_state_set_string(st, "optim", "adam"), 0);
	assert_int_equal(tg_state_set_i64(st, "optim.steps", &steps, 1), 0);
	assert_int_equal(tg_state_restore_optim(st, r.opt), 0);
	assert_int_equal(tg_optim_steps(r.opt), 9);
	assert_int_equal(tg_optim_param_steps(r.opt, 1), 9);
	tg_optim_set_steps(r.opt, 2);
	struct {
		const char *key;
		int64_t n;
		const int64_t *v;
		tg_status code;
		const char *want;
	} bad[] = {
	    {"optim.param_steps", 3, counts, TG_EFORMAT,
	     "tg_state_restore_optim: the state counts the steps of 3 parameters; this "
	     "optimizer has 2"},
	    {"optim.param_steps", 2, (int64_t[]){9, 10}, TG_EFORMAT,
	     "counts 10 steps for params[1] branch.W; the optimizer took 9"},
	    {"optim.param_steps", 2, (int64_t[]){-1, 0}, TG_EFORMAT, "counts -1 steps for params[0]"},
	    {"optim.steps", 1, (int64_t[]){-4}, TG_EFORMAT, "step count is -4"},
	};
	for (size_t i = 0; i < LEN(bad); i++) {
		tg_state *b = tg_state_new(r.ctx);
		assert_int_equal(tg_state_set_i64(b, "optim.steps", &steps, 1), 0);
		assert_int_equal(tg_state_set_i64(b, bad[i].key, bad[i].v, (size_t)bad[i].n), 0);
		assert_int_equal(tg_state_restore_optim(b, r.opt), -1);
		assert_error(r.ctx, bad[i].code, bad[i].want);
		tg_clear_error(r.ctx);
		assert_int_equal(tg_optim_steps(r.opt), 2);
		assert_int_equal(tg_optim_param_steps(r.opt, 1), 2);
		tg_state_free(b);
	}
	assert_int_equal(tg_state_set_string(st, "optim", "rmsprop"), 0);
	assert_int_equal(tg_state_restore_optim(st, r.opt), -1);
	assert_error(r.ctx, TG_EFORMAT,
		     "tg_state_restore_optim: the state holds the state of rmsprop; this optimizer "
		     "is adam");
	tg_clear_error(r.ctx);
	tg_state_free(st);
	st = tg_state_new(r.ctx);
	assert_int_equal(tg_state_restore_optim(st, r.opt), -1);
	assert_error(r.ctx, TG_EARG, "no step count (\"optim.steps\"");
	tg_clear_error(r.ctx);
	assert_int_equal(tg_optim_steps(r.opt), 2);
	/* a negative sum of squares in Adam's v (its tensors loaded first) */
	assert_int_equal(tg_state_set_i64(st, "optim.steps", &steps, 1), 0);
	size_t ns;
	tg_tensor *v1 = tg_optim_state(r.opt, &ns)[3];
	assert_int_equal(ns, 4);
	double was = tg_get(v1, 1);
	assert_true(was >= 0);
	if (tg_dtype_of(v1) == TG_F64)
		((double *)tg_data_mut(v1))[1] = -1;
	else
		((float *)tg_data_mut(v1))[1] = -1;
	assert_int_equal(tg_state_restore_optim(st, r.opt), -1);
	assert_error(r.ctx, TG_EFORMAT, "tg_state_restore_optim: branch.W.v holds -1 at element "
					"1; adam keeps sums of squares, never negative");
	tg_clear_error(r.ctx);
	assert_int_equal(tg_optim_steps(r.opt), 2);
	if (tg_dtype_of(v1) == TG_F64)
		((double *)tg_data_mut(v1))[1] = was;
	else
		((float *)tg_data_mut(v1))[1] = (float)was;
	assert_int_equal(tg_state_restore_optim(st, r.opt), 0);
	assert_int_equal(tg_optim_steps(r.opt), 9);
	tg_state_free(st);
	branch_free(&r);
}

static void optimizer_names_parse_and_defaults_are_the_books(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_optim_kind k;
	static const char *const names[] = {"sgd",     "momentum", "nesterov", "adagrad",
					    "rmsprop", "adam",     "adamw"};
	for (int i = 0; i < 7; i++) {
		assert_int_equal(tg_optim_parse(ctx, names[i], &k), 0);
		assert_int_equal(k, i);
		assert_string_equal(tg_optim_name(k), names[i]);
	}
	assert_int_equal(tg_optim_parse(ctx, "lbfgs", &k), -1);
	assert_error(ctx, TG_EARG, "\"lbfgs\"");
	tg_clear_error(ctx);
	/* near misses of "adamw" are refused, naming it and every name */
	static const char *const bad[] = {"AdamW", "adamw ", " adamw", "adam_w", "adamww",
					  "adamw:0.9", "adam w", ""};
	for (size_t i = 0; i < LEN(bad); i++) {
		char want[64];
		snprintf(want, sizeof want, "unknown optimizer \"%s\"", bad[i]);
		k = TG_SGD;
		assert_int_equal(tg_optim_parse(ctx, bad[i], &k), -1);
		assert_int_equal(k, TG_SGD);
		assert_error(ctx, TG_EARG, want);
		assert_error(ctx, TG_EARG, "expected sgd, momentum, nesterov, adagrad, rmsprop, adam "
					   "or adamw");
		tg_clear_error(ctx);
	}
	assert_string_equal(tg_optim_name((tg_optim_kind)(TG_ADAMW + 1)), "unknown");
	for (int kind = TG_ADAM; kind <= TG_ADAMW; kind++) {
		tg_optim_opts o = tg_optim_defaults((tg_optim_kind)kind);
		assert_near(o.lr, 0.001, 0);
		assert_near(o.beta1, 0.9, 0);
		assert_near(o.beta2, 0.999, 0);
		assert_near(o.eps, 1e-7, 0);
		assert_near(o.weight_decay, 0, 0);
	}
	/* AdamW's options are Adam's, checked alike */
	tg_tensor *w = tg_param(tg_ones(ctx, TG_F64, SHAPE(2)));
	static const struct {
		double beta1, beta2, eps, wd;
		const char *why;
	} opts[] = {
	    {1, 0.999, 1e-7, 0, "adamw: beta1 and beta2 must be in [0, 1)"},
	    {0.9, -0.1, 1e-7, 0, "adamw: beta1 and beta2 must be in [0, 1)"},
	    {0.9, 0.999, 0, 0, "adamw: eps must be positive"},
	    {0.9, 0.999, 1e-7, -0.01, "adamw: weight_decay must be >= 0"},
	    {0.9, 0.999, 1e-7, NAN, "adamw: weight_decay must be >= 0"},
	};
	for (size_t i = 0; i < LEN(opts); i++) {
		tg_optim_opts o = tg_optim_defaults(TG_ADAMW);
		o.beta1 = opts[i].beta1, o.beta2 = opts[i].beta2;
		o.eps = opts[i].eps, o.weight_decay = opts[i].wd;
		assert_null(tg_optim_new(ctx, &w, 1, &o));
		assert_error(ctx, TG_EARG, opts[i].why);
		tg_clear_error(ctx);
	}
	tg_optim_opts o;
	o = tg_optim_defaults(TG_RMSPROP);
	assert_near(o.lr, 0.01, 0);
	assert_near(o.rho, 0.99, 0);
	o = tg_optim_defaults(TG_MOMENTUM);
	assert_near(o.momentum, 0.9, 0);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sgd_steps_against_the_gradient),
	    cmocka_unit_test(momentum_accumulates_a_velocity),
	    cmocka_unit_test(nesterov_follows_the_books_look_ahead_form),
	    cmocka_unit_test(adagrad_divides_by_the_root_of_the_summed_squares),
	    cmocka_unit_test(rmsprop_divides_by_a_decaying_root_mean_square),
	    cmocka_unit_test(adam_corrects_the_bias_of_its_first_step),
	    cmocka_unit_test(adamw_decays_the_weight_apart_from_the_gradient),
	    cmocka_unit_test(adamw_decay_is_decoupled_and_per_parameter),
	    cmocka_unit_test(adamw_without_decay_is_adam_to_the_bit),
	    cmocka_unit_test(adam_keeps_an_element_whose_squared_gradient_overflows),
	    cmocka_unit_test(f32_rules_weigh_the_gradient_by_one_minus_beta_in_double),
	    cmocka_unit_test(weight_decay_moves_weights_and_not_biases),
	    cmocka_unit_test(weight_decay_equals_the_penalty_in_the_loss),
	    cmocka_unit_test(clipping_scales_all_gradients_to_the_max_norm),
	    cmocka_unit_test(clipping_survives_gradients_whose_squares_overflow),
	    cmocka_unit_test(grad_norm_is_the_last_steps_with_and_without_clipping),
	    cmocka_unit_test(grad_norm_of_large_parameters_is_the_plain_sum),
	    cmocka_unit_test(optimizer_refuses_a_tensor_without_a_gradient_naming_it),
	    cmocka_unit_test(an_eps_or_rate_outside_the_parameters_dtype_is_refused),
	    cmocka_unit_test(optimizer_skips_a_parameter_without_a_gradient),
	    cmocka_unit_test(zeroed_gradients_read_zeros_and_are_overwritten),
	    cmocka_unit_test(a_step_between_forward_and_backward_is_caught),
	    cmocka_unit_test(optimizer_state_is_named_after_its_parameters),
	    cmocka_unit_test(a_step_count_at_its_limit_is_refused),
	    cmocka_unit_test(a_step_over_a_gradient_a_failed_backward_left_is_refused),
	    cmocka_unit_test(a_frozen_parameter_stays_and_adam_counts_its_own_steps),
	    cmocka_unit_test(a_parameter_frozen_inside_a_step_is_skipped),
	    cmocka_unit_test(parameter_step_counts_are_set_when_resuming),
	    cmocka_unit_test(a_run_resumed_in_a_new_context_makes_the_same_updates),
	    cmocka_unit_test(parameter_counts_round_trip_through_a_state),
	    cmocka_unit_test(restoring_a_state_that_does_not_fit_is_refused),
	    cmocka_unit_test(a_resumed_step_out_of_memory_changes_nothing),
	    cmocka_unit_test(optimizer_names_parse_and_defaults_are_the_books),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
