/*
 * test_norm.c - batch_norm, layer_norm and their fused backwards (ops/norm.c)
 * against the compositions of ops they replace: values, first- and
 * second-order gradients, to 1e-12 in f64; the statistics and outputs by
 * hand; f32 against f64 at the size of a training batch; the errors they
 * report. Gradients in general are checked numerically by the op table's test.
 * Shapes: batch norm x (N,D), N = batch, D = features, or x (N,C,...) per
 * channel; layer norm x (..., D), R rows of D.
 */
#include "../engine/test_util.h"

#include <float.h>
#include <stdlib.h>

typedef tg_tensor *(*norm_fn)(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps);

/* Batch norm as nn/layers.c made it of ops before the fused op. */
static tg_tensor *composed(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps)
{
	tg_tensor *mean = tg_mean_axis(x, 0, false);		 /* (D) */
	tg_tensor *xc = tg_sub(x, mean);			 /* (N,D) */
	tg_tensor *var = tg_mean_axis(tg_mul(xc, xc), 0, false); /* (D), biased */
	tg_tensor *xn = tg_div(xc, tg_sqrt(tg_add_scalar(var, eps)));
	return tg_add(tg_mul(xn, gamma), beta);
}

static tg_tensor *fused(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps)
{
	return tg_batch_norm(x, gamma, beta, eps, NULL, NULL);
}

/* Batch norm of x (N,C,...) per channel made of ops: the composition on
 * the rows (N ..., C) of x permuted to (N, ..., C), permuted back. */
static tg_tensor *composed_channels(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps)
{
	int nd = tg_ndim(x), to[TG_MAX_DIMS], back[TG_MAX_DIMS];
	const int64_t *s = tg_shape(x);
	int64_t moved[TG_MAX_DIMS];
	for (int i = 0; i < nd; i++) {
		to[i] = i == 0 ? 0 : i == nd - 1 ? 1 : i + 1;
		back[i] = i == 0 ? 0 : i == 1 ? nd - 1 : i - 1;
		moved[i] = s[to[i]];
	}
	tg_tensor *r = tg_reshape(tg_permute(x, to), 2, (int64_t[]){ -1, s[1] });
	tg_tensor *y = composed(r, gamma, beta, eps);
	return tg_permute(tg_reshape(y, nd, moved), back);
}

/* Layer norm made of ops: batch norm's composition along the last axis. */
static tg_tensor *composed_rows(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps)
{
	tg_tensor *mean = tg_mean_axis(x, -1, true);			  /* (..., 1) */
	tg_tensor *xc = tg_sub(x, mean);				  /* (..., D) */
	tg_tensor *var = tg_mean_axis(tg_mul(xc, xc), -1, true);	  /* (..., 1), biased */
	tg_tensor *xn = tg_div(xc, tg_sqrt(tg_add_scalar(var, eps)));
	return tg_add(tg_mul(xn, gamma), beta);
}

static tg_tensor *layer(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps)
{
	return tg_layer_norm(x, gamma, beta, eps);
}

/* A problem: x (N,D) (or any shape (..., D)) off centre, gamma, beta (D),
 * and the weights of the loss sum(y w) and of the second-order loss
 * sum(dx v) + sum(dgamma^2), w and v of x's shape. n counts the rows. */
typedef struct problem {
	int ndim;
	int64_t shape[TG_MAX_DIMS];
	int64_t n, d;
	int64_t c; /* gamma's and beta's length: d, or the channels C of x (N,C,...) */
	double eps;
	double *x, *gamma, *beta, *w, *v;
} problem;

static double *draw(tg_ctx *ctx, size_t n, double mean, double std)
{
	double *p = malloc(n * sizeof *p);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = mean + std * tg_random_normal(ctx);
	return p;
}

/* x of the shape (ndim, shape) */
static problem problem_shaped(tg_ctx *ctx, int ndim, const int64_t *shape, double eps)
{
	problem p = { .ndim = ndim, .d = shape[ndim - 1], .n = 1, .eps = eps };
	for (int i = 0; i < ndim; i++)
		p.shape[i] = shape[i], p.n *= i < ndim - 1 ? shape[i] : 1;
	int64_t d = p.d;
	size_t nd = (size_t)(p.n * d);
	p.c = d;
	p.x = draw(ctx, nd, 3, 2);
	p.gamma = draw(ctx, (size_t)d, 1, 0.5);
	p.beta = draw(ctx, (size_t)d, 0, 1);
	p.w = draw(ctx, nd, 0, 1);
	p.v = draw(ctx, nd, 0, 1);
	return p;
}

/* x (N,D) */
static problem problem_new(tg_ctx *ctx, int64_t n, int64_t d, double eps)
{
	return problem_shaped(ctx, 2, (const int64_t[]){ n, d }, eps);
}

/* x (N,C,...) of the shape (ndim, shape), gamma and beta (C) */
static problem problem_channels(tg_ctx *ctx, int ndim, const int64_t *shape, double eps)
{
	problem p = problem_shaped(ctx, ndim, shape, eps);
	p.c = shape[1];
	free(p.gamma), free(p.beta);
	p.gamma = draw(ctx, (size_t)p.c, 1, 0.5);
	p.beta = draw(ctx, (size_t)p.c, 0, 1);
	return p;
}

static void problem_free(problem *p)
{
	free(p->x), free(p->gamma), free(p->beta), free(p->w), free(p->v);
}

/* The values a run gives, each section flattened: y, dx, dgamma, dbeta
 * (the gradients of sum(y w)), then, when second, d2x, d2gamma, d2beta (the
 * gradients of sum(dx v) + sum(dgamma^2)). */
enum { Y, DX, DGAMMA, DBETA, D2X, D2GAMMA, D2BETA, SECTIONS };
static const char *const section_name[SECTIONS] = { "y",   "dx",	"dgamma", "dbeta",
						    "d2x", "d2gamma", "d2beta" };

typedef struct outcome {
	double *at[SECTIONS];
	size_t len[SECTIONS];
} outcome;

/* Copies t into o's section s; a NULL t (no gradient reached) is zeros. */
static void keep(outcome *o, int s, const tg_tensor *t, size_t len)
{
	o->len[s] = len;
	o->at[s] = calloc(len, sizeof(double));
	assert_non_null(o->at[s]);
	if (t)
		assert_int_equal(tg_copy_to_f64(t, o->at[s], len), 0);
}

static void outcome_free(outcome *o)
{
	for (int s = 0; s < SECTIONS; s++)
		free(o->at[s]);
}

/* Applies f to p in f64; the first-order gradients come from a plain
 * backward, or from a recorded one (TG_CREATE_GRAPH) when second, followed
 * by the second-order backward. */
static outcome run(norm_fn f, const problem *p, bool second)
{
	tg_ctx *ctx = tg_ctx_new(1);
	size_t nd = (size_t)(p->n * p->d), d = (size_t)p->c;
	tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, TG_F64, p->ndim, p->shape, p->x), true);
	tg_tensor *gamma =
	    tg_set_requires_grad(tg_from_f64(ctx, TG_F64, SHAPE(p->c), p->gamma), true);
	tg_tensor *beta =
	    tg_set_requires_grad(tg_from_f64(ctx, TG_F64, SHAPE(p->c), p->beta), true);
	tg_tensor *w = tg_from_f64(ctx, TG_F64, p->ndim, p->shape, p->w);
	tg_tensor *y = f(x, gamma, beta, p->eps);
	assert_int_equal(tg_backward_ex(tg_sum(tg_mul(y, w)), NULL, second ? TG_CREATE_GRAPH : 0),
			 0);
	assert_ctx_ok(ctx);
	outcome o = { 0 };
	keep(&o, Y, y, nd);
	keep(&o, DX, tg_grad(x), nd);
	keep(&o, DGAMMA, tg_grad(gamma), d);
	keep(&o, DBETA, tg_grad(beta), d);
	if (second) {
		tg_tensor *dx = tg_grad(x), *dgamma = tg_grad(gamma);
		tg_tensor *v = tg_from_f64(ctx, TG_F64, p->ndim, p->shape, p->v);
		tg_zero_grad(x), tg_zero_grad(gamma), tg_zero_grad(beta);
		tg_tensor *loss2 = tg_add(tg_sum(tg_mul(dx, v)), tg_sum(tg_mul(dgamma, dgamma)));
		assert_int_equal(tg_backward(loss2), 0);
		assert_ctx_ok(ctx);
		keep(&o, D2X, tg_grad(x), nd);
		keep(&o, D2GAMMA, tg_grad(gamma), d);
		keep(&o, D2BETA, tg_grad(beta), d);
	}
	tg_ctx_free(ctx);
	return o;
}

/* Every value of got within tol * max(1, |want|) of want; prints the worst. */
static void assert_outcomes_agree(const char *what, const outcome *got, const outcome *want,
				  double tol)
{
	for (int s = 0; s < SECTIONS; s++) {
		if (!got->at[s] || !want->at[s])
			continue;
		double worst = 0;
		size_t at = 0;
		for (size_t i = 0; i < want->len[s]; i++) {
			double e =
			    fabs(got->at[s][i] - want->at[s][i]) / fmax(1.0, fabs(want->at[s][i]));
			if (!(e <= worst))
				worst = e, at = i;
		}
		print_message("%s, %s: worst relative difference %.3g\n", what, section_name[s],
			      worst);
		if (!(worst <= tol))
			fail_msg(
			    "%s, %s[%zu] = %.17g, expected %.17g (relative %.3g, tolerance %g)",
			    what, section_name[s], at, got->at[s][at], want->at[s][at], worst, tol);
	}
}

static const struct {
	int64_t n, d;
	double eps;
} shapes[] = { { 2, 3, 1e-5 }, { 7, 1, 0.1 }, { 100, 100, 1e-6 } };

static void batch_norm_matches_its_composition_of_ops_to_1e12(void **state)
{
	(void)state;
	tg_ctx *rng = tg_ctx_new(7);
	for (size_t k = 0; k < LEN(shapes); k++) {
		problem p = problem_new(rng, shapes[k].n, shapes[k].d, shapes[k].eps);
		char what[64];
		snprintf(what, sizeof what, "(%lld,%lld) eps %g", (long long)p.n, (long long)p.d,
			 p.eps);
		outcome want = run(composed, &p, true);
		outcome got = run(fused, &p, true);
		assert_outcomes_agree(what, &got, &want, 1e-12);
		/* a plain backward gives the recorded one's gradients */
		outcome plain = run(fused, &p, false);
		assert_outcomes_agree(what, &plain, &want, 1e-12);
		outcome_free(&want), outcome_free(&got), outcome_free(&plain);
		problem_free(&p);
	}
	tg_ctx_free(rng);
}

/* x a constant: only gamma and beta get gradients, from the sums over
 * the batch (or the rows); the same as the composition's. */
static void check_gamma_and_beta_alone(norm_fn fused_fn, norm_fn composed_fn)
{
	tg_ctx *ctx = tg_ctx_new(5);
	problem p = problem_new(ctx, 5, 3, 1e-5);
	double got[2][3], want[2][3];
	for (int k = 0; k < 2; k++) {
		norm_fn f = k ? fused_fn : composed_fn;
		tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(5, 3), p.x);
		tg_tensor *gamma =
		    tg_set_requires_grad(tg_from_f64(ctx, TG_F64, SHAPE(3), p.gamma), true);
		tg_tensor *beta =
		    tg_set_requires_grad(tg_from_f64(ctx, TG_F64, SHAPE(3), p.beta), true);
		tg_tensor *w = tg_from_f64(ctx, TG_F64, SHAPE(5, 3), p.w);
		assert_int_equal(tg_backward(tg_sum(tg_mul(f(x, gamma, beta, p.eps), w))), 0);
		assert_ctx_ok(ctx);
		assert_null(tg_grad(x));
		double(*out)[3] = k ? got : want;
		assert_int_equal(tg_copy_to_f64(tg_grad(gamma), out[0], 3), 0);
		assert_int_equal(tg_copy_to_f64(tg_grad(beta), out[1], 3), 0);
	}
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 3; j++)
			assert_near(got[i][j], want[i][j], 1e-12 * fmax(1, fabs(want[i][j])));
	problem_free(&p);
	tg_ctx_free(ctx);
}

static void gamma_and_beta_get_their_gradients_when_x_needs_none(void **state)
{
	(void)state;
	check_gamma_and_beta_alone(fused, composed);
	check_gamma_and_beta_alone(layer, composed_rows);
}

static void batch_norm_gives_the_batch_statistics_without_history(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	/* column 0: 1 2 3 6, mean 3, biased var (4+1+0+9)/4 = 3.5
	 * column 1: 0 0 4 4, mean 2, biased var 4 */
	const double xv[8] = { 1, 0, 2, 0, 3, 4, 6, 4 };
	const double mean[2] = { 3, 2}, var[2] = { 3.5, 4 };
	const double gv[2] = { 2, 0.5}, bv[2] = { 1, -1 };
	for (int f32 = 0; f32 <= 1; f32++) {
		tg_dtype dt = f32 ? TG_F32 : TG_F64;
		double tol = f32 ? 1e-6 : 1e-15;
		tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(4, 2), xv), true);
		tg_tensor *gamma = tg_from_f64(ctx, dt, SHAPE(2), gv);
		tg_tensor *beta = tg_from_f64(ctx, dt, SHAPE(2), bv);
		tg_tensor *m, *v;
		tg_tensor *y = tg_batch_norm(x, gamma, beta, 1e-6, &m, &v);
		assert_ctx_ok(ctx);
		assert_true(tg_producer(y) != NULL);
		for (int j = 0; j < 2; j++) {
			assert_near(tg_get(m, (size_t)j), mean[j], tol);
			assert_near(tg_get(v, (size_t)j), var[j], tol);
		}
		assert_null(tg_producer(m));
		assert_false(tg_requires_grad(v));
		assert_int_equal(tg_dtype_of(v), dt);
		for (int i = 0; i < 4; i++)
			for (int j = 0; j < 2; j++) {
				double want =
				    (xv[i * 2 + j] - mean[j]) / sqrt(var[j] + 1e-6) * gv[j] + bv[j];
				assert_near(tg_get(y, (size_t)(i * 2 + j)), want, tol * 10);
			}
	}
	tg_ctx_free(ctx);
}

/* f32 at W2's size, (100,100): forward and gradients against f64. */
static void f32_batch_norm_agrees_with_f64_on_a_training_batch(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(3);
	problem p = problem_new(ctx, 100, 100, 1e-6);
	tg_tensor *out[2][4]; /* f64, f32: y, dx, dgamma, dbeta */
	for (int k = 0; k < 2; k++) {
		tg_dtype dt = k ? TG_F32 : TG_F64;
		tg_tensor *x =
		    tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(100, 100), p.x), true);
		tg_tensor *gamma =
		    tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(100), p.gamma), true);
		tg_tensor *beta =
		    tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(100), p.beta), true);
		tg_tensor *w = tg_from_f64(ctx, dt, SHAPE(100, 100), p.w);
		tg_tensor *y = tg_batch_norm(x, gamma, beta, p.eps, NULL, NULL);
		assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
		assert_ctx_ok(ctx);
		out[k][0] = y, out[k][1] = tg_grad(x), out[k][2] = tg_grad(gamma);
		out[k][3] = tg_grad(beta);
	}
	const char *names[4] = { "y", "dx", "dgamma", "dbeta" };
	for (int s = 0; s < 4; s++) {
		double worst = 0;
		for (size_t i = 0; i < tg_numel(out[0][s]); i++) {
			double a = tg_get(out[0][s], i), b = tg_get(out[1][s], i);
			worst = fmax(worst, fabs(a - b) / fmax(1.0, fabs(a)));
		}
		print_message("%s: worst relative difference f32 - f64 %.3g\n", names[s], worst);
		if (!(worst < 1e-5))
			fail_msg("%s: f32 differs from f64 by %.3g (relative)", names[s], worst);
	}
	problem_free(&p);
	tg_ctx_free(ctx);
}

/* ---- batch norm of x (N,C,...) per channel ---------------------------------------------- */

/* Planes of 1 (the (N,D) kernels), 3, 6, 20 (lanes and a tail), 64 (lanes
 * alone), a batch of 1 with planes of 9, and 5-D. */
static const struct {
	int ndim;
	int64_t shape[5];
	double eps;
} channel_shapes[] = {
	{ 4, { 2, 3, 1, 1 }, 1e-5 }, { 3, { 4, 2, 3 }, 0.1 },	    { 4, { 3, 2, 2, 3 }, 1e-5 },
	{ 4, { 2, 3, 4, 5 }, 1e-3 }, { 4, { 2, 4, 8, 8 }, 1e-5 }, { 4, { 1, 2, 3, 3 }, 1e-5 },
	{ 5, { 2, 2, 2, 3, 2 }, 1e-5 },
};

static void batch_norm_over_channels_matches_its_composition_on_rows_to_1e12(void **state)
{
	(void)state;
	tg_ctx *rng = tg_ctx_new(11);
	for (size_t k = 0; k < LEN(channel_shapes); k++) {
		problem p = problem_channels(rng, channel_shapes[k].ndim, channel_shapes[k].shape,
					     channel_shapes[k].eps);
		char what[96];
		int at = snprintf(what, sizeof what, "x (");
		for (int i = 0; i < p.ndim; i++)
			at += snprintf(what + at, sizeof what - (size_t)at, "%s%lld", i ? "," : "",
				       (long long)p.shape[i]);
		snprintf(what + at, sizeof what - (size_t)at, ") eps %g", p.eps);
		outcome want = run(composed_channels, &p, true);
		outcome got = run(fused, &p, true);
		assert_outcomes_agree(what, &got, &want, 1e-12);
		outcome plain = run(fused, &p, false);
		assert_outcomes_agree(what, &plain, &want, 1e-12);
		outcome_free(&want), outcome_free(&got), outcome_free(&plain);
		problem_free(&p);
	}
	tg_ctx_free(rng);
}

/* y, dx, dgamma and dbeta of sum(y w) for x (N,C,H,W) in dt; the plain
 * backward, and batch_norm_backward for dx on its own. */
static void channels_in(tg_ctx *ctx, const problem *p, tg_dtype dt, double *out[4])
{
	tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, dt, p->ndim, p->shape, p->x), true);
	tg_tensor *gamma = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(p->c), p->gamma), true);
	tg_tensor *beta = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(p->c), p->beta), true);
	tg_tensor *w = tg_from_f64(ctx, dt, p->ndim, p->shape, p->w);
	tg_tensor *y = tg_batch_norm(x, gamma, beta, p->eps, NULL, NULL);
	assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
	tg_tensor *dx = tg_batch_norm_backward(w, x, gamma, p->eps);
	assert_ctx_ok(ctx);
	size_t nd = (size_t)(p->n * p->d);
	assert_int_equal(tg_copy_to_f64(y, out[0], nd), 0);
	assert_int_equal(tg_copy_to_f64(tg_grad(x), out[1], nd), 0);
	assert_int_equal(tg_copy_to_f64(tg_grad(gamma), out[2], (size_t)p->c), 0);
	assert_int_equal(tg_copy_to_f64(tg_grad(beta), out[3], (size_t)p->c), 0);
	for (size_t i = 0; i < nd; i++)
		assert_near(tg_get(dx, i), out[1][i], (dt == TG_F64 ? 1e-13 : 1e-6) *
							   fmax(1, fabs(out[1][i])));
}

/* By hand, in double, for x (N,C,H,W): each channel's mean and biased
 * variance over N, H and W; y = xhat gamma + beta; dbeta = sum w, dgamma =
 * sum w xhat, dx = gamma inv_std (w - mean(w) - xhat mean(w xhat)). */
static void channels_by_hand(const problem *p, double *out[4])
{
	int64_t N = p->shape[0], C = p->shape[1], S = p->n * p->d / (N * C);
	for (int64_t c = 0; c < C; c++) {
		double m = 0, v = 0, sw = 0, swx = 0;
		for (int64_t i = 0; i < N; i++)
			for (int64_t k = 0; k < S; k++)
				m += p->x[(i * C + c) * S + k];
		m /= (double)(N * S);
		for (int64_t i = 0; i < N; i++)
			for (int64_t k = 0; k < S; k++) {
				double e = p->x[(i * C + c) * S + k] - m;
				v += e * e;
			}
		double r = 1 / sqrt(v / (double)(N * S) + p->eps);
		for (int64_t i = 0; i < N; i++)
			for (int64_t k = 0; k < S; k++) {
				int64_t at = (i * C + c) * S + k;
				double xh = (p->x[at] - m) * r;
				out[0][at] = xh * p->gamma[c] + p->beta[c];
				sw += p->w[at], swx += p->w[at] * xh;
			}
		out[2][c] = swx, out[3][c] = sw;
		for (int64_t i = 0; i < N; i++)
			for (int64_t k = 0; k < S; k++) {
				int64_t at = (i * C + c) * S + k;
				double xh = (p->x[at] - m) * r;
				out[1][at] = p->gamma[c] * r *
					     (p->w[at] - sw / (double)(N * S) - xh * swx / (double)(N * S));
			}
	}
}

static void batch_norm_over_channels_gives_hand_computed_values_in_f64_and_f32(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(13);
	/* planes of 81 (10 lanes' worth and a tail of 1) and of 7 (tail alone) */
	const int64_t shapes[2][4] = { { 8, 16, 9, 9 }, { 5, 3, 7, 1 } };
	for (int q = 0; q < 2; q++) {
		problem p = problem_channels(ctx, 4, shapes[q], 1e-5);
		size_t nd = (size_t)(p.n * p.d), c = (size_t)p.c;
		double *want[4], *got[4];
		size_t len[4] = { nd, nd, c, c };
		for (int s = 0; s < 4; s++) {
			want[s] = calloc(len[s], sizeof(double));
			got[s] = calloc(len[s], sizeof(double));
			assert_true(want[s] && got[s]);
		}
		channels_by_hand(&p, want);
		for (int k = 0; k < 2; k++) {
			tg_dtype dt = k ? TG_F32 : TG_F64;
			channels_in(ctx, &p, dt, got);
			const char *names[4] = { "y", "dx", "dgamma", "dbeta" };
			for (int s = 0; s < 4; s++) {
				double worst = 0;
				for (size_t i = 0; i < len[s]; i++)
					worst = fmax(worst, fabs(got[s][i] - want[s][i]) /
								fmax(1.0, fabs(want[s][i])));
				print_message("x (%lld,%lld,%lld,%lld) %s %s: worst relative "
					      "difference %.3g\n",
					      (long long)p.shape[0], (long long)p.shape[1],
					      (long long)p.shape[2], (long long)p.shape[3],
					      k ? "f32" : "f64", names[s], worst);
				if (!(worst < (k ? 2e-5 : 1e-12)))
					fail_msg("%s %s differs from the hand computation by %.3g",
						 k ? "f32" : "f64", names[s], worst);
			}
			tg_reset(ctx);
		}
		for (int s = 0; s < 4; s++)
			free(want[s]), free(got[s]);
		problem_free(&p);
	}
	tg_ctx_free(ctx);
}

/* ---- errors ------------------------------------------------------------------------- */

static void batch_norm_refuses_a_batch_of_one(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_ones(ctx, TG_F64, SHAPE(1, 3)), *one = tg_ones(ctx, TG_F64, SHAPE(3));
	tg_tensor *m = one, *v = one;
	assert_null(tg_batch_norm(x, one, one, 1e-5, &m, &v));
	assert_error(ctx, TG_ESHAPE, "tg_batch_norm: x (1,3): a batch of 1 has no variance");
	assert_null(m);
	assert_null(v);
	tg_clear_error(ctx);
	assert_null(tg_batch_norm_backward(x, x, one, 1e-5));
	assert_error(ctx, TG_ESHAPE, "tg_batch_norm_backward: x (1,3): a batch of 1");
	tg_clear_error(ctx);
	/* per channel: one value each, however many axes */
	tg_tensor *x4 = tg_ones(ctx, TG_F64, SHAPE(1, 3, 1, 1));
	assert_null(tg_batch_norm(x4, one, one, 1e-5, NULL, NULL));
	assert_error(ctx, TG_ESHAPE,
		     "tg_batch_norm: x (1,3,1,1): 1 value per channel has no variance to normalise "
		     "by; it needs 2 or more");
	tg_clear_error(ctx);
	assert_null(tg_batch_norm_backward(x4, x4, one, 1e-5));
	assert_error(ctx, TG_ESHAPE, "tg_batch_norm_backward: x (1,3,1,1): 1 value per channel");
	tg_ctx_free(ctx);
}

/* ---- batch_norm_relu: tg_relu(tg_batch_norm(...)) as one op, to the same bits ---------- */

/* What one way of computing relu(batch norm) gives on a problem: y, the
 * batch's statistics and the gradients of sum(y w); with second, those of
 * a recorded backward, then the gradients of sum(dx v) + sum(dgamma^2). */
enum { BY, BMEAN, BVAR, BDX, BDG, BDB, BD2X, BD2G, BD2B, BN_OUT };
static const char *const bn_out_name[BN_OUT] = { "y",	   "mean", "var",  "dx",  "dgamma",
						 "dbeta", "d2x",  "d2gamma", "d2beta" };
typedef struct bn_relu_run {
	tg_ctx *ctx;
	tg_tensor *t[BN_OUT];
} bn_relu_run;

static bn_relu_run bn_relu(bool one_op, tg_dtype dt, int threads, const problem *p, bool x_grad,
			   bool second)
{
	bn_relu_run r = { .ctx = tg_ctx_new(1) };
	tg_ctx *ctx = r.ctx;
	tg_set_threads(ctx, threads);
	tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, dt, p->ndim, p->shape, p->x), x_grad);
	tg_tensor *gamma = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(p->c), p->gamma), true);
	tg_tensor *beta = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(p->c), p->beta), true);
	tg_tensor *w = tg_from_f64(ctx, dt, p->ndim, p->shape, p->w);
	r.t[BY] = one_op ? tg_batch_norm_relu(x, gamma, beta, p->eps, &r.t[BMEAN], &r.t[BVAR])
			 : tg_relu(tg_batch_norm(x, gamma, beta, p->eps, &r.t[BMEAN], &r.t[BVAR]));
	assert_int_equal(tg_backward_ex(tg_sum(tg_mul(r.t[BY], w)), NULL,
					second ? TG_CREATE_GRAPH : 0),
			 0);
	assert_ctx_ok(ctx);
	r.t[BDX] = tg_grad(x), r.t[BDG] = tg_grad(gamma), r.t[BDB] = tg_grad(beta);
	if (second) {
		tg_tensor *v = tg_from_f64(ctx, dt, p->ndim, p->shape, p->v);
		tg_zero_grad(x), tg_zero_grad(gamma), tg_zero_grad(beta);
		assert_int_equal(tg_backward(tg_add(tg_sum(tg_mul(r.t[BDX], v)),
						    tg_sum(tg_mul(r.t[BDG], r.t[BDG])))),
				 0);
		assert_ctx_ok(ctx);
		r.t[BD2X] = tg_grad(x), r.t[BD2G] = tg_grad(gamma), r.t[BD2B] = tg_grad(beta);
	}
	return r;
}

/* The one op and the two give the same bits, or NULL both (no gradient). */
static void assert_bn_relu_same(const char *what, const problem *p, tg_dtype dt, int threads,
				bool x_grad, bool second)
{
	bn_relu_run one = bn_relu(true, dt, threads, p, x_grad, second);
	bn_relu_run two = bn_relu(false, dt, threads, p, x_grad, second);
	for (int k = 0; k < BN_OUT; k++) {
		char at[160];
		snprintf(at, sizeof at, "%s, %s, %d thread(s)%s%s: %s", what,
			 dt == TG_F64 ? "f64" : "f32", threads, x_grad ? "" : ", x constant",
			 second ? ", recorded" : "", bn_out_name[k]);
		if (!one.t[k] || !two.t[k]) {
			if (one.t[k] != two.t[k] && (one.t[k] || k < BD2X))
				fail_msg("%s: %s by one op, %s by relu(batch_norm)", at,
					 one.t[k] ? "a tensor" : "NULL", two.t[k] ? "a tensor" : "NULL");
			continue;
		}
		assert_true(tg_numel(one.t[k]) == tg_numel(two.t[k]));
		assert_tensor_bits(at, one.t[k], two.t[k]);
	}
	tg_ctx_free(one.ctx);
	tg_ctx_free(two.ctx);
}

/* Over (N,D) and (N,C,...) shapes, both dtypes, 1 and 2 threads (the
 * larger shapes split their passes), plain and recorded backwards, x with
 * and without a gradient; a constant channel whose beta is 0 puts values
 * exactly at the relu's kink (0, masked off), and an infinite weight of
 * the loss is masked off by the gate as by relu_backward (+0, not NaN). */
static void batch_norm_relu_gives_the_bits_of_relu_of_batch_norm(void **state)
{
	(void)state;
	static const struct {
		int ndim;
		int64_t shape[4];
	} cases[] = { { 2, { 2, 3 } },	     { 2, { 7, 1 } },	      { 2, { 256, 200 } },
		      { 3, { 5, 3, 1 } },     { 4, { 3, 2, 2, 5 } },   { 4, { 16, 8, 12, 12 } },
		      { 4, { 32, 16, 16, 16 } }, { 3, { 4, 40, 300 } } };
	tg_ctx *rng = tg_ctx_new(11);
	for (size_t k = 0; k < LEN(cases); k++) {
		problem p = problem_channels(rng, cases[k].ndim, cases[k].shape, 1e-5);
		char what[96];
		size_t nd = (size_t)(p.n * p.d), plane = nd / (size_t)p.shape[0] / (size_t)p.c;
		/* channel 0 constant with beta 0: every value of it lands on 0 */
		for (size_t i = 0; i < nd; i++)
			if ((i / plane) % (size_t)p.c == 0)
				p.x[i] = 2.5;
		p.beta[0] = 0;
		snprintf(what, sizeof what, "x (%lld,%lld%s)", (long long)p.shape[0],
			 (long long)p.shape[1], p.ndim > 2 ? ",..." : "");
		for (int dt = 0; dt < 2; dt++)
			for (int threads = 1; threads <= 2; threads++) {
				tg_dtype t = dt ? TG_F64 : TG_F32;
				assert_bn_relu_same(what, &p, t, threads, true, false);
				assert_bn_relu_same(what, &p, t, threads, false, false);
				assert_bn_relu_same(what, &p, t, threads, true, true);
			}
		/* an infinite weight where the relu is closed: +0 both ways, not NaN */
		p.w[0] = INFINITY;
		assert_bn_relu_same(what, &p, TG_F32, 1, true, false);
		problem_free(&p);
	}
	tg_ctx_free(rng);
}

/* The same checks and messages as tg_batch_norm's, under its own name. */
static void batch_norm_relu_rejects_what_batch_norm_rejects(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *one = tg_ones(ctx, TG_F64, SHAPE(3)), *m = one, *v = one;
	tg_tensor *x1 = tg_ones(ctx, TG_F64, SHAPE(1, 3));
	assert_null(tg_batch_norm_relu(x1, one, one, 1e-5, &m, &v));
	assert_error(ctx, TG_ESHAPE, "tg_batch_norm_relu: x (1,3): a batch of 1");
	assert_true(!m && !v);
	tg_clear_error(ctx);
	tg_tensor *x2 = tg_ones(ctx, TG_F64, SHAPE(4, 2));
	assert_null(tg_batch_norm_relu(x2, one, one, 1e-5, NULL, NULL));
	assert_error(ctx, TG_ESHAPE, "tg_batch_norm_relu: x (4,2): gamma (3,) must be (2,)");
	tg_clear_error(ctx);
	assert_null(tg_batch_norm_relu(x2, NULL, one, 1e-5, NULL, NULL));
	assert_error(ctx, TG_ENULL, "tg_batch_norm_relu");
	tg_clear_error(ctx);
	tg_tensor *g2 = tg_ones(ctx, TG_F64, SHAPE(2));
	assert_null(tg_batch_norm_relu(x2, g2, g2, 0, NULL, NULL));
	assert_error(ctx, TG_EARG, "tg_batch_norm_relu: eps = 0 must be positive");
	tg_clear_error(ctx);
	tg_tensor *g32 = tg_ones(ctx, TG_F32, SHAPE(2));
	assert_null(tg_batch_norm_relu(x2, g32, g2, 1e-5, NULL, NULL));
	assert_int_equal(tg_status_of(ctx), TG_EDTYPE);
	tg_ctx_free(ctx);
}

/* expr is NULL and records code with text in its message; clears it. */
#define assert_rejects(ctx, expr, code, text)                                                      \
	do {                                                                                       \
		assert_null(expr);                                                                 \
		assert_error(ctx, code, text);                                                     \
		tg_clear_error(ctx);                                                               \
	} while (0)

/* eps is added to the variance in x's dtype by the recorded rules: one that
 * is not a normal number there (1e-50 rounds to 0 in f32) is refused by all
 * four ops, so a constant channel cannot come out as 0 / 0 = NaN in a
 * TG_CREATE_GRAPH backward while a plain one gives 0. The smallest normal
 * eps works on both paths. */
static void norm_eps_must_be_a_normal_number_in_the_dtype(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double xv[8] = { 1, 2, 7, 7, 3, 5, 7, 7 }; /* channel 1 is constant */
	tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, TG_F32, SHAPE(2, 2, 2), xv), true);
	tg_tensor *g = tg_set_requires_grad(tg_ones(ctx, TG_F32, SHAPE(2)), true);
	tg_tensor *b = tg_zeros(ctx, TG_F32, SHAPE(2)), *g2 = tg_ones(ctx, TG_F32, SHAPE(2));
	assert_rejects(ctx, tg_batch_norm(x, g, b, 1e-50, NULL, NULL), TG_EARG,
		       "tg_batch_norm: eps = 1e-50 must be positive and finite, a normal number "
		       "in f32");
	assert_rejects(ctx, tg_batch_norm_backward(x, x, g, 1e-50), TG_EARG,
		       "tg_batch_norm_backward: eps = 1e-50");
	assert_rejects(ctx, tg_layer_norm(x, g2, b, 1e-40), TG_EARG,
		       "tg_layer_norm: eps = 1e-40 must be positive and finite, a normal number");
	assert_rejects(ctx, tg_layer_norm_backward(x, x, g2, 1e-50), TG_EARG,
		       "tg_layer_norm_backward: eps = 1e-50");
	assert_rejects(ctx, tg_batch_norm(x, g, b, 1e39, NULL, NULL), TG_EARG, "eps = 1e+39");
	tg_tensor *x64 = tg_from_f64(ctx, TG_F64, SHAPE(2, 2, 2), xv);
	tg_tensor *g64 = tg_ones(ctx, TG_F64, SHAPE(2)), *b64 = tg_zeros(ctx, TG_F64, SHAPE(2));
	assert_rejects(ctx, tg_batch_norm(x64, g64, b64, 1e-310, NULL, NULL), TG_EARG,
		       "eps = 1e-310 must be positive and finite, a normal number in f64");
	assert_non_null(tg_batch_norm(x64, g64, b64, 1e-300, NULL, NULL));
	/* FLT_MIN: dgamma of the constant channel is 0 with history as without */
	tg_tensor *y = tg_batch_norm(x, g, b, FLT_MIN, NULL, NULL);
	tg_tensor *w = tg_from_f64(ctx, TG_F32, SHAPE(2, 2, 2),
				   (const double[]){ 1, -2, 3, 0.5, 2, -1, 1, 1 });
	tg_tensor *loss = tg_sum(tg_mul(y, w)), *dg[2];
	assert_int_equal(tg_grad_of(1, &loss, NULL, 2, (tg_tensor *[]){ x, g }, dg,
				    TG_CREATE_GRAPH),
			 0);
	assert_ctx_ok(ctx);
	assert_true(tg_get(dg[1], 1) == 0);
	assert_true(isfinite(tg_get(dg[1], 0)));
	for (int i = 0; i < 8; i++)
		assert_true(isfinite(tg_get(dg[0], (size_t)i)));
	tg_ctx_free(ctx);
}

static void batch_norm_rejects_bad_shapes_dtypes_and_eps(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_ones(ctx, TG_F64, SHAPE(4, 3));
	tg_tensor *d3 = tg_ones(ctx, TG_F64, SHAPE(3)), *d2 = tg_ones(ctx, TG_F64, SHAPE(2));
	assert_rejects(ctx, tg_batch_norm(x, d2, d3, 1e-5, NULL, NULL), TG_ESHAPE,
		       "tg_batch_norm: x (4,3): gamma (2,) must be (3,)");
	assert_rejects(ctx,
		       tg_batch_norm(x, d3, tg_ones(ctx, TG_F64, SHAPE(1, 3)), 1e-5, NULL, NULL),
		       TG_ESHAPE, "tg_batch_norm: x (4,3): beta (1,3) must be (3,)");
	assert_rejects(ctx, tg_batch_norm(d3, d3, d3, 1e-5, NULL, NULL), TG_ESHAPE,
		       "tg_batch_norm: x (3,) must be (N,D) or (N,C,...)");
	assert_rejects(
	    ctx, tg_batch_norm(tg_ones(ctx, TG_F64, SHAPE(4, 2, 5, 5)), d3, d3, 1e-5, NULL, NULL),
	    TG_ESHAPE, "tg_batch_norm: x (4,2,5,5): gamma (3,) must be (2,)");
	assert_rejects(ctx,
		       tg_batch_norm(tg_ones(ctx, TG_F32, SHAPE(4, 3)), d3, d3, 1e-5, NULL, NULL),
		       TG_EDTYPE, "tg_batch_norm: dtypes differ");
	assert_rejects(ctx, tg_batch_norm(x, d3, d3, 0, NULL, NULL), TG_EARG,
		       "tg_batch_norm: eps = 0 must be positive");
	assert_rejects(ctx, tg_batch_norm(x, d3, d3, NAN, NULL, NULL), TG_EARG,
		       "eps = nan must be positive");
	assert_rejects(ctx, tg_batch_norm_backward(tg_ones(ctx, TG_F64, SHAPE(4, 2)), x, d3, 1e-5),
		       TG_ESHAPE,
		       "tg_batch_norm_backward: dout (4,2) and x (4,3) must have the same shape");
	assert_rejects(ctx, tg_batch_norm_backward(x, x, d2, 1e-5), TG_ESHAPE,
		       "tg_batch_norm_backward: x (4,3): gamma (2,) must be (3,)");
	assert_rejects(ctx, tg_batch_norm_backward(x, x, d3, -1), TG_EARG,
		       "tg_batch_norm_backward: eps = -1 must be positive");
	/* a NULL input, as with every op; the statistics are NULL too */
	tg_tensor *m = d3;
	assert_rejects(ctx, tg_batch_norm(NULL, d3, d3, 1e-5, &m, NULL), TG_ENULL,
		       "tg_batch_norm: argument 0 is NULL");
	assert_null(m);
	tg_ctx_free(ctx);
}

/* ---- layer norm ---------------------------------------------------------------------- */

static const struct {
	int ndim;
	int64_t shape[3];
	double eps;
} row_shapes[] = {
	{ 2, { 2, 3 }, 1e-5 },	   { 1, { 7 }, 0.1 },	     { 3, { 3, 4, 5 }, 1e-3 },
	{ 2, { 100, 100 }, 1e-6 }, { 2, { 5, 1 }, 1e-5 }, /* rows of one: y = beta */
};

static void layer_norm_matches_its_composition_of_ops_to_1e12(void **state)
{
	(void)state;
	tg_ctx *rng = tg_ctx_new(8);
	for (size_t k = 0; k < LEN(row_shapes); k++) {
		problem p = problem_shaped(rng, row_shapes[k].ndim, row_shapes[k].shape,
					   row_shapes[k].eps);
		char what[96], xs[64];
		tg_tensor *probe = tg_zeros(rng, TG_F64, p.ndim, p.shape);
		snprintf(what, sizeof what, "layer norm %s eps %g",
			 tg_shape_str(probe, xs, sizeof xs), p.eps);
		outcome want = run(composed_rows, &p, true);
		outcome got = run(layer, &p, true);
		assert_outcomes_agree(what, &got, &want, 1e-12);
		outcome plain = run(layer, &p, false);
		assert_outcomes_agree(what, &plain, &want, 1e-12);
		outcome_free(&want), outcome_free(&got), outcome_free(&plain);
		problem_free(&p);
	}
	tg_ctx_free(rng);
}

/* layer_norm_backward on its own gives the composition's dx, gamma included. */
static void layer_norm_backward_is_the_gradient_for_x(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(9);
	problem p = problem_shaped(ctx, 3, (const int64_t[]){ 2, 3, 4 }, 1e-4);
	tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, TG_F64, 3, p.shape, p.x), true);
	tg_tensor *gamma = tg_from_f64(ctx, TG_F64, SHAPE(4), p.gamma);
	tg_tensor *beta = tg_from_f64(ctx, TG_F64, SHAPE(4), p.beta);
	tg_tensor *w = tg_from_f64(ctx, TG_F64, 3, p.shape, p.w);
	assert_int_equal(tg_backward(tg_sum(tg_mul(composed_rows(x, gamma, beta, p.eps), w))), 0);
	tg_tensor *dx = tg_layer_norm_backward(w, x, gamma, p.eps);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_ndim(dx), 3);
	for (size_t i = 0; i < 24; i++)
		assert_near(tg_get(dx, i), tg_get(tg_grad(x), i), 1e-12);
	problem_free(&p);
	tg_ctx_free(ctx);
}

/* f(x) of shape (r,c) with gamma (c) and beta (c), and for the loss
 * sum(f(x) w): y, dx, dgamma, then hg = d sum(dx v) / dgamma, a second
 * order that goes through the statistics made of ops. */
static void norm_grads(norm_fn f, tg_dtype dt, int64_t r, int64_t c, const double *xv,
		       double eps, double *y, double *dx, double *dg, double *hg)
{
	tg_ctx *ctx = tg_ctx_new(1);
	const double gv[4] = { 1.5, -0.5, 2, 1 }, bv[4] = { 0.1, 0.2, 0.3, 0.4 };
	const double wv[12] = { 0.3, -1, 2, 0.7, 1.1, -0.4, 0.2, 0.9, -0.6, 0.5, 1.3, -2 };
	const double vv[12] = { 0.1, 0.2, -0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 0.9, 1, -1.1, 1.2 };
	tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(r, c), xv), true);
	tg_tensor *g = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(c), gv), true);
	tg_tensor *b = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(c), bv), true);
	tg_tensor *out = f(x, g, b, eps);
	tg_tensor *loss = tg_sum(tg_mul(out, tg_from_f64(ctx, dt, SHAPE(r, c), wv)));
	tg_tensor *in[3] = { x, g, b }, *gr[3];
	assert_int_equal(tg_grad_of(1, &loss, NULL, 3, in, gr, TG_CREATE_GRAPH), 0);
	tg_tensor *s = tg_sum(tg_mul(gr[0], tg_from_f64(ctx, dt, SHAPE(r, c), vv)));
	tg_tensor *h;
	assert_int_equal(tg_grad_of(1, &s, NULL, 1, &g, &h, 0), 0);
	assert_ctx_ok(ctx);
	size_t n = (size_t)(r * c);
	assert_int_equal(tg_copy_to_f64(out, y, n), 0);
	assert_int_equal(tg_copy_to_f64(gr[0], dx, n), 0);
	assert_int_equal(tg_copy_to_f64(gr[1], dg, (size_t)c), 0);
	assert_int_equal(tg_copy_to_f64(h, hg, (size_t)c), 0);
	tg_ctx_free(ctx);
}

/* a within tol of b relative to the largest |b| of its group (a column
 * for batch norm, a row for layer norm) of the (r,c) arrays */
static void assert_rel(const double *a, const double *b, int64_t r, int64_t c, bool columns,
		       double tol)
{
	for (int64_t i = 0; i < r * c; i++) {
		double m = 0;
		for (int64_t k = 0; k < (columns ? r : c); k++)
			m = fmax(m, fabs(b[columns ? k * c + i % c : i / c * c + k]));
		if (!(fabs(a[i] - b[i]) <= tol * m))
			fail_msg("element %lld: %.17g, expected %.17g", (long long)i, a[i], b[i]);
	}
}

/* Values whose squares overflow (f64 from 1e154, f32 from 1e19) have a
 * variance the plain sums cannot hold: the statistics are those of x
 * scaled by a power of two, so that y, dx and the second order are x's
 * at a small scale, scaled back (and not beta with a zero gradient). */
static void huge_values_normalise_as_at_a_small_scale(void **state)
{
	(void)state;
	const double big[12] = { 1e308, -1e308, 3e307, -5e306, 3e160, -1e160,
				 2e159, 7e160, 1e200, -3e199, 5e200, 2e199 };
	const double k = 1000; /* big 2^-k: no overflow, still normal doubles */
	double small[12];
	for (int i = 0; i < 12; i++)
		small[i] = ldexp(big[i], -(int)k);
	double y[12], dx[12], dg[4], hg[4], ry[12], rdx[12], rdg[4], rhg[4];
	for (int bn = 0; bn <= 1; bn++) {
		norm_fn f = bn ? fused : tg_layer_norm;
		int64_t r = bn ? 4 : 3, c = bn ? 3 : 4;
		norm_grads(f, TG_F64, r, c, big, 1e-5, y, dx, dg, hg);
		/* eps is as negligible against var there as 1e-5 is here */
		norm_grads(f, TG_F64, r, c, small, 1e-300, ry, rdx, rdg, rhg);
		for (int i = 0; i < 12; i++)
			dx[i] = ldexp(dx[i], (int)k);
		for (int j = 0; j < c; j++)
			hg[j] = ldexp(hg[j], (int)k);
		assert_rel(y, ry, r, c, bn, 1e-13);
		assert_rel(dx, rdx, r, c, bn, 1e-12);
		assert_rel(dg, rdg, 1, c, false, 1e-13);
		assert_rel(hg, rhg, 1, c, false, 1e-12);
		/* f32 whose squares overflow, the recorded statistics too,
		 * against f64 that holds them */
		const double mid[12] = { 1e30, -1e30, 3e29, -5e28, 3e25, -1e25,
					 2e24, 7e25, 1, -3, 5, 2 };
		norm_grads(f, TG_F32, r, c, mid, 1e-5, y, dx, dg, hg);
		norm_grads(f, TG_F64, r, c, mid, 1e-5, ry, rdx, rdg, rhg);
		assert_rel(y, ry, r, c, bn, 1e-5);
		assert_rel(dx, rdx, r, c, bn, 1e-5);
		assert_rel(dg, rdg, 1, c, false, 1e-5);
		assert_rel(hg, rhg, 1, c, false, 1e-5);
	}
}

/* Values near the largest double, of one sign: their plain sum overflows
 * too, so the mean is that of x scaled by a power of two, scaled back (not
 * inf, which would make every xhat NaN). */
static void huge_values_whose_sum_overflows_normalise(void **state)
{
	(void)state;
	const double big[12] = { 1e308, 1.2e308, 1.5e308, 9e307, 8e307, 1e308,
				 1.5e308, 1.2e308, 7e307, 1.1e308, 3e307, 1e308 };
	const double k = 1000;
	double small[12];
	for (int i = 0; i < 12; i++)
		small[i] = ldexp(big[i], -(int)k);
	double y[12], dx[12], dg[4], hg[4], ry[12], rdx[12], rdg[4], rhg[4];
	for (int bn = 0; bn <= 1; bn++) {
		norm_fn f = bn ? fused : tg_layer_norm;
		int64_t r = bn ? 4 : 3, c = bn ? 3 : 4;
		norm_grads(f, TG_F64, r, c, big, 1e-5, y, dx, dg, hg);
		norm_grads(f, TG_F64, r, c, small, 1e-300, ry, rdx, rdg, rhg);
		for (int i = 0; i < 12; i++)
			dx[i] = ldexp(dx[i], (int)k);
		for (int j = 0; j < c; j++)
			hg[j] = ldexp(hg[j], (int)k);
		assert_rel(y, ry, r, c, bn, 1e-13);
		assert_rel(dx, rdx, r, c, bn, 1e-12);
		assert_rel(dg, rdg, 1, c, false, 1e-13);
		assert_rel(hg, rhg, 1, c, false, 1e-12);
	}
}

/* The same per channel of x (N,C,S), S > 1: the planes' sums overflow and
 * take the scaled statistics; y, dx and dgamma as at a small scale. */
static void huge_values_normalise_per_channel(void **state)
{
	(void)state;
	const double big[12] = { 1e308, 1.2e308, 1.5e308, 9e307, 8e307, 1e308,
				 1.5e308, 1.2e308, 7e307, 1.1e308, 3e307, 1e308 };
	const int k = 1000;
	double got[3][12], want[3][12];
	for (int q = 0; q < 2; q++) {
		tg_ctx *ctx = tg_ctx_new(1);
		double v[12];
		for (int i = 0; i < 12; i++)
			v[i] = q ? ldexp(big[i], -k) : big[i];
		tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, TG_F64, SHAPE(2, 2, 3), v), true);
		tg_tensor *g = tg_set_requires_grad(tg_from_f64(ctx, TG_F64, SHAPE(2),
								(const double[]){ 1.5, -0.5 }), true);
		tg_tensor *b = tg_zeros(ctx, TG_F64, SHAPE(2));
		tg_tensor *w = tg_from_f64(ctx, TG_F64, SHAPE(2, 2, 3),
					   (const double[]){ 1, -2, 3, 0.5, 2, -1, 1, 1, -3, 2, 0, 1 });
		tg_tensor *y = tg_batch_norm(x, g, b, q ? 1e-300 : 1e-5, NULL, NULL);
		assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
		assert_ctx_ok(ctx);
		double(*out)[12] = q ? want : got;
		assert_int_equal(tg_copy_to_f64(y, out[0], 12), 0);
		assert_int_equal(tg_copy_to_f64(tg_grad(x), out[1], 12), 0);
		assert_int_equal(tg_copy_to_f64(tg_grad(g), out[2], 2), 0);
		tg_ctx_free(ctx);
	}
	for (int i = 0; i < 12; i++) {
		assert_true(isfinite(got[0][i]));
		assert_near(got[0][i], want[0][i], 1e-13 * fmax(1, fabs(want[0][i])));
		double dx = ldexp(got[1][i], k);
		assert_near(dx, want[1][i], 1e-12 * fmax(1, fabs(want[1][i])));
	}
	for (int j = 0; j < 2; j++)
		assert_near(got[2][j], want[2][j], 1e-13 * fmax(1, fabs(want[2][j])));
}

/* Rows 1 2 3 6 (mean 3, biased var 3.5), -4 -1 1 4 (mean 0, var 8.5) and
 * 3 3 3 3 (var 0); eps 0.5 makes sqrt(var + eps) 2 and 3: xhat = -1 -0.5 0
 * 1.5, -4/3 -1/3 1/3 4/3 and 0. */
/* A group (a row for layer norm, a column or channel for batch norm) that
 * holds an inf or a NaN has no mean and variance: its variance is NaN, not
 * a clamped 0 (which made the finite entries of a row with an inf come out
 * as -inf), and every output of the group is NaN, as in PyTorch; the
 * other groups are untouched. */
static void a_nan_or_inf_makes_its_group_nan(void **state)
{
	(void)state;
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F32 : TG_F64;
		for (int bad = 0; bad < 3; bad++) {
			double v = bad == 0 ? INFINITY : bad == 1 ? -INFINITY : NAN;
			tg_ctx *ctx = tg_ctx_new(1);
			/* layer norm: row 0 holds v, row 1 is plain */
			double xr[8] = { 1, v, 2, 3, 1, 2, 3, 4 };
			tg_tensor *x = tg_from_f64(ctx, dt, SHAPE(2, 4), xr);
			tg_tensor *g = tg_param(tg_ones(ctx, dt, SHAPE(4)));
			tg_tensor *b = tg_zeros(ctx, dt, SHAPE(4));
			tg_tensor *y = tg_layer_norm(x, g, b, 1e-5);
			assert_ctx_ok(ctx);
			for (int i = 0; i < 4; i++) {
				assert_true(isnan(tg_get(y, i)));
				assert_true(isfinite(tg_get(y, 4 + i)));
			}
			assert_int_equal(tg_backward(tg_sum(tg_mul(y, tg_from_f64(ctx, dt, SHAPE(2, 4),
						(double[]){ 1, 2, 3, 4, 4, 3, 2, 1 })))), 0);
			for (int j = 0; j < 4; j++)
				assert_true(isnan(tg_get(tg_grad(g), j)));
			/* batch norm of (4,2): column 0 holds v; then per channel of
			 * (2,2,2): channel 1 holds v */
			double xc[8] = { 1, 1, v, 2, 2, 3, 3, 4 };
			tg_tensor *var = NULL, *mean = NULL;
			y = tg_batch_norm(tg_from_f64(ctx, dt, SHAPE(4, 2), xc),
					  tg_ones(ctx, dt, SHAPE(2)), tg_zeros(ctx, dt, SHAPE(2)),
					  1e-5, &mean, &var);
			assert_ctx_ok(ctx);
			assert_true(isnan(tg_get(var, 0)));
			assert_near(tg_get(var, 1), 1.25, 1e-6);
			for (int i = 0; i < 4; i++) {
				assert_true(isnan(tg_get(y, 2 * i)));
				assert_true(isfinite(tg_get(y, 2 * i + 1)));
			}
			double xs[8] = { 1, 2, 3, v, 5, 6, 7, 8 };
			y = tg_batch_norm(tg_from_f64(ctx, dt, SHAPE(2, 2, 2), xs),
					  tg_ones(ctx, dt, SHAPE(2)), tg_zeros(ctx, dt, SHAPE(2)),
					  1e-5, &mean, &var);
			assert_ctx_ok(ctx);
			assert_true(isfinite(tg_get(var, 0)));
			assert_true(isnan(tg_get(var, 1)));
			for (int i = 0; i < 8; i++) {
				bool in_1 = (i / 2) % 2 == 1;
				assert_true(in_1 ? isnan(tg_get(y, i)) : isfinite(tg_get(y, i)));
			}
			tg_ctx_free(ctx);
		}
	}
}

static void layer_norm_gives_hand_computed_values(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	const double xv[12] = { 1, 2, 3, 6, -4, -1, 1, 4, 3, 3, 3, 3 };
	const double gv[4] = { 2, 0.5, 1, -1 }, bv[4] = { 1, -1, 0, 0.5 };
	/* xhat * gamma + beta; the constant row gives beta */
	const double y[12] = { -1,	    -1.25,	0,	   -1,	      -5.0 / 3, -7.0 / 6,
			       1.0 / 3, -5.0 / 6, 1, -1, 0, 0.5 };
	/* for the loss sum(y): dbeta = 3 rows, dgamma = the column sums of xhat,
	 * dx row 0 = 1/2 (gamma - mean(gamma) - xhat mean(gamma xhat)) with
	 * mean(gamma) = 0.625 and mean(gamma xhat) = -0.9375 */
	const double dbeta[4] = { 3, 3, 3, 3 };
	const double dgamma[4] = { -7.0 / 3, -5.0 / 6, 1.0 / 3, 17.0 / 6 };
	const double dx0[4] = { 0.21875, -0.296875, 0.1875, -0.109375 };
	for (int f32 = 0; f32 <= 1; f32++) {
		tg_dtype dt = f32 ? TG_F32 : TG_F64;
		double tol = f32 ? 1e-6 : 1e-15;
		tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(3, 4), xv), true);
		tg_tensor *gamma = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(4), gv), true);
		tg_tensor *beta = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(4), bv), true);
		tg_tensor *out = tg_layer_norm(x, gamma, beta, 0.5);
		assert_ctx_ok(ctx);
		assert_int_equal(tg_dtype_of(out), dt);
		assert_int_equal(tg_backward(tg_sum(out)), 0);
		assert_ctx_ok(ctx);
		print_message("%s: y[0..3] = %g %g %g %g\n", f32 ? "f32" : "f64", tg_get(out, 0),
			      tg_get(out, 1), tg_get(out, 2), tg_get(out, 3));
		for (size_t i = 0; i < 12; i++)
			assert_near(tg_get(out, i), y[i], tol);
		for (size_t j = 0; j < 4; j++) {
			assert_near(tg_get(tg_grad(beta), j), dbeta[j], tol);
			assert_near(tg_get(tg_grad(gamma), j), dgamma[j], tol);
			assert_near(tg_get(tg_grad(x), j), dx0[j], tol);
		}
		/* each row's dx sums to 0: the mean is taken out */
		for (size_t r = 0; r < 3; r++) {
			double s = 0;
			for (size_t j = 0; j < 4; j++)
				s += tg_get(tg_grad(x), r * 4 + j);
			assert_near(s, 0, tol);
		}
	}
	tg_ctx_free(ctx);
}

/* ---- the fused backwards' gradients at any thread count ------------------------------- */

/* layer_norm (or batch_norm, bn) of a problem (N,D) in dt at threads
 * threads, the gradients of sum(y w) in a plain backward: dx (unless
 * x_grad is false), dgamma, dbeta, in out[0..2]; and x and w as the dtype
 * holds them, in out[3..4]. */
static tg_ctx *split_grads(bool bn, const problem *p, tg_dtype dt, int threads, bool x_grad,
			   tg_tensor *out[5])
{
	tg_ctx *ctx = tg_ctx_new(1);
	tg_set_threads(ctx, threads);
	tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, dt, p->ndim, p->shape, p->x), x_grad);
	tg_tensor *g = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(p->d), p->gamma), true);
	tg_tensor *b = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(p->d), p->beta), true);
	tg_tensor *w = tg_from_f64(ctx, dt, p->ndim, p->shape, p->w);
	tg_tensor *y = bn ? fused(x, g, b, p->eps) : tg_layer_norm(x, g, b, p->eps);
	assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
	assert_ctx_ok(ctx);
	out[0] = x_grad ? tg_grad(x) : NULL, out[1] = tg_grad(g), out[2] = tg_grad(b);
	out[3] = x, out[4] = w;
	return ctx;
}

/* Fails unless got is within tol of ref, relative to the scale of the
 * terms that make it. */
static void assert_near_ref(const char *what, size_t i, double got, long double ref,
			    long double scale, double tol)
{
	if (!(fabsl((long double)got - ref) <= tol * scale))
		fail_msg("%s[%zu]: %.17g, the reference %.17Lg (scale %.3Lg)", what, i, got, ref,
			 scale);
}

/* dx, dgamma and dbeta of a run against a long double reference computed
 * from the same inputs (x, w and gamma rounded to the dtype): each group (a
 * row of layer norm, a column of batch norm) normalised on its own. */
static void assert_grads_near_reference(const char *what, bool bn, const problem *p,
					tg_dtype dt, tg_tensor *const out[5])
{
	size_t r = (size_t)p->n, d = (size_t)p->d, groups = bn ? d : r, len = bn ? r : d;
	double tol = dt == TG_F64 ? 1e-13 : 2e-6;
	long double *sg = calloc(2 * d, sizeof *sg), *ag = calloc(2 * d, sizeof *ag);
	long double *xh = malloc(len * sizeof *xh);
	assert_true(sg && ag && xh);
	char at[160];
	for (size_t k = 0; k < groups; k++) {
		long double mean = 0, var = 0, sa = 0, saxh = 0;
#define AT(e) (bn ? (e) * d + k : k * d + (e)) /* element e of group k */
#define GAMMA(e) (dt == TG_F64 ? p->gamma[bn ? k : (e)] : (float)p->gamma[bn ? k : (e)])
		for (size_t e = 0; e < len; e++)
			mean += tg_get(out[3], AT(e));
		mean /= len;
		for (size_t e = 0; e < len; e++) {
			long double c = tg_get(out[3], AT(e)) - mean;
			var += c * c;
		}
		long double inv_std = 1 / sqrtl(var / len + p->eps);
		for (size_t e = 0; e < len; e++) {
			long double dy = tg_get(out[4], AT(e)), a = dy * GAMMA(e);
			size_t c = bn ? k : e; /* the column: gamma's */
			xh[e] = (tg_get(out[3], AT(e)) - mean) * inv_std;
			sa += a, saxh += a * xh[e];
			sg[c] += dy * xh[e], ag[c] += fabsl(dy * xh[e]);
			sg[d + c] += dy, ag[d + c] += fabsl(dy);
		}
		long double ma = sa / len, maxh = saxh / len;
		for (size_t e = 0; out[0] && e < len; e++) {
			long double a = tg_get(out[4], AT(e)) * GAMMA(e);
			long double ref = inv_std * (a - ma - xh[e] * maxh);
			long double scale = inv_std * (fabsl(a) + fabsl(ma) + fabsl(xh[e] * maxh));
			snprintf(at, sizeof at, "%s: dx", what);
			assert_near_ref(at, AT(e), tg_get(out[0], AT(e)), ref, scale, tol);
		}
#undef AT
#undef GAMMA
	}
	for (size_t j = 0; j < d; j++) {
		snprintf(at, sizeof at, "%s: dgamma", what);
		assert_near_ref(at, j, tg_get(out[1], j), sg[j], ag[j], tol);
		snprintf(at, sizeof at, "%s: dbeta", what);
		assert_near_ref(at, j, tg_get(out[2], j), sg[d + j], ag[d + j], tol);
	}
	free(sg), free(ag), free(xh);
}

/* On shapes whose backward is split (odd sizes, a last block of a row or
 * a few; rows too few for two blocks, split by rows for dx and by columns
 * for the sums), layer_norm's and batch_norm's dx, dgamma and dbeta have
 * the same bits at 1, 2 and 3 threads, dgamma and dbeta the same as well
 * when x needs no gradient, and all are within a few rounding errors of a
 * long double reference. */
static void norm_gradients_have_the_same_bits_at_1_2_and_3_threads(void **state)
{
	(void)state;
	static const int64_t shapes[][2] = { { 1001, 67 },  { 37, 1999 }, { 3001, 33 },
					     { 129, 4097 }, { 5, 20011 }, { 5, 7 } };
	tg_ctx *rng = tg_ctx_new(21);
	for (size_t k = 0; k < LEN(shapes); k++) {
		problem p = problem_new(rng, shapes[k][0], shapes[k][1], 1e-5);
		for (int bn = 0; bn < 2; bn++)
			for (int dt = 0; dt < 2; dt++) {
				tg_dtype t = dt ? TG_F64 : TG_F32;
				char what[96];
				tg_tensor *one[5];
				tg_ctx *c1 = split_grads(bn, &p, t, 1, true, one);
				snprintf(what, sizeof what, "%s (%lld,%lld) %s",
					 bn ? "batch_norm" : "layer_norm", (long long)p.n,
					 (long long)p.d, dt ? "f64" : "f32");
				assert_grads_near_reference(what, bn, &p, t, one);
				for (int threads = 1; threads <= 3; threads++)
					for (int x_grad = 0; x_grad < 2; x_grad++) {
						tg_tensor *got[5];
						tg_ctx *c = split_grads(bn, &p, t, threads, x_grad, got);
						for (int s = x_grad ? 0 : 1; s < 3; s++) {
							char at[160];
							snprintf(at, sizeof at, "%s, %d thread(s)%s: %s",
								 what, threads,
								 x_grad ? "" : ", x constant",
								 (const char *[]){ "dx", "dgamma",
										   "dbeta" }[s]);
							assert_tensor_bits(at, got[s], one[s]);
						}
						tg_ctx_free(c);
					}
				tg_ctx_free(c1);
			}
		problem_free(&p);
	}
	tg_ctx_free(rng);
}

/* batch_norm of a problem (N,D) in dt at threads threads: y, the mean and
 * the variance in out[0..2], x as the dtype holds it in out[3]. */
static tg_ctx *split_forward(const problem *p, tg_dtype dt, int threads, tg_tensor *out[4])
{
	tg_ctx *ctx = tg_ctx_new(1);
	tg_set_threads(ctx, threads);
	tg_tensor *x = tg_from_f64(ctx, dt, p->ndim, p->shape, p->x);
	tg_tensor *g = tg_from_f64(ctx, dt, SHAPE(p->d), p->gamma);
	tg_tensor *b = tg_from_f64(ctx, dt, SHAPE(p->d), p->beta);
	out[0] = tg_batch_norm(x, g, b, p->eps, &out[1], &out[2]);
	out[3] = x;
	assert_ctx_ok(ctx);
	return ctx;
}

/* y, mean and var of a run against a long double reference from the same
 * x: each column normalised on its own. */
static void assert_forward_near_reference(const char *what, const problem *p, tg_dtype dt,
					  tg_tensor *const out[4])
{
	size_t n = (size_t)p->n, d = (size_t)p->d;
	double tol = dt == TG_F64 ? 1e-13 : 2e-6;
	char at[160];
	for (size_t j = 0; j < d; j++) {
		long double mean = 0, var = 0, scale = 0;
		for (size_t i = 0; i < n; i++)
			mean += tg_get(out[3], i * d + j), scale += fabsl(tg_get(out[3], i * d + j));
		mean /= n, scale /= n;
		for (size_t i = 0; i < n; i++) {
			long double c = tg_get(out[3], i * d + j) - mean;
			var += c * c;
		}
		var /= n;
		snprintf(at, sizeof at, "%s: mean", what);
		assert_near_ref(at, j, tg_get(out[1], j), mean, scale, tol);
		snprintf(at, sizeof at, "%s: var", what);
		assert_near_ref(at, j, tg_get(out[2], j), var, var, tol);
		long double inv_std = 1 / sqrtl(var + p->eps);
		long double g = dt == TG_F64 ? p->gamma[j] : (float)p->gamma[j];
		long double b = dt == TG_F64 ? p->beta[j] : (float)p->beta[j];
		for (size_t i = 0; i < n; i++) {
			long double xh = (tg_get(out[3], i * d + j) - mean) * inv_std;
			snprintf(at, sizeof at, "%s: y", what);
			assert_near_ref(at, i * d + j, tg_get(out[0], i * d + j), xh * g + b,
					fabsl(xh * g) + fabsl(b) + fabsl(g), tol);
		}
	}
}

/* On shapes of one block of rows and of many (with a short last block),
 * batch_norm's y, mean and var have the same bits at 1, 2 and 3 threads,
 * within a few rounding errors of a long double reference. */
static void batch_norm_forward_has_the_same_bits_at_1_2_and_3_threads(void **state)
{
	(void)state;
	static const int64_t shapes[][2] = { { 1001, 67 }, { 37, 1999 }, { 3001, 33 },
					     { 129, 4097 }, { 5, 20011 }, { 20011, 3 } };
	tg_ctx *rng = tg_ctx_new(22);
	for (size_t k = 0; k < LEN(shapes); k++) {
		problem p = problem_new(rng, shapes[k][0], shapes[k][1], 1e-5);
		for (int dt = 0; dt < 2; dt++) {
			tg_dtype t = dt ? TG_F64 : TG_F32;
			char what[96];
			tg_tensor *one[4];
			tg_ctx *c1 = split_forward(&p, t, 1, one);
			snprintf(what, sizeof what, "batch_norm (%lld,%lld) %s", (long long)p.n,
				 (long long)p.d, dt ? "f64" : "f32");
			assert_forward_near_reference(what, &p, t, one);
			for (int threads = 2; threads <= 3; threads++) {
				tg_tensor *got[4];
				tg_ctx *c = split_forward(&p, t, threads, got);
				for (int s = 0; s < 3; s++) {
					char at[160];
					snprintf(at, sizeof at, "%s, %d threads: %s", what, threads,
						 (const char *[]){ "y", "mean", "var" }[s]);
					assert_tensor_bits(at, got[s], one[s]);
				}
				tg_ctx_free(c);
			}
			tg_ctx_free(c1);
		}
		problem_free(&p);
	}
	tg_ctx_free(rng);
}


/* x = 100 + 0.001 z: where the spread is small beside the mean, x - mean
 * in f64 is as good as the mean, whose rounding (the sum's and the
 * division's) is then large beside the spread; the statistics take it back
 * out. Layer norm's rows, batch norm's columns in one block and in many,
 * and its channels' planes, against long double references (the planes:
 * y, mean and var, each channel's values in long double). */
static void a_small_spread_beside_a_large_mean_keeps_its_digits_in_f64(void **state)
{
	(void)state;
	static const int64_t shapes[][2] = { { 64, 33 }, { 3001, 33 }, { 5, 257 } };
	tg_ctx *rng = tg_ctx_new(23);
	for (size_t k = 0; k < LEN(shapes); k++) {
		problem p = problem_new(rng, shapes[k][0], shapes[k][1], 1e-5);
		for (int64_t i = 0; i < p.n * p.d; i++)
			p.x[i] = 100 + 1e-3 * p.x[i];
		for (int bn = 0; bn < 2; bn++) {
			char what[96];
			snprintf(what, sizeof what, "%s (%lld,%lld) about 100",
				 bn ? "batch_norm" : "layer_norm", (long long)p.n, (long long)p.d);
			tg_tensor *out[5];
			tg_ctx *c = split_grads(bn, &p, TG_F64, 1, true, out);
			assert_grads_near_reference(what, bn, &p, TG_F64, out);
			tg_ctx_free(c);
			if (bn) {
				tg_tensor *fw[4];
				c = split_forward(&p, TG_F64, 1, fw);
				assert_forward_near_reference(what, &p, TG_F64, fw);
				tg_ctx_free(c);
			}
		}
		problem_free(&p);
	}
	/* channels: (N,C,H,W) */
	const int64_t sh[4] = { 6, 3, 9, 11 };
	problem p = problem_channels(rng, 4, sh, 1e-5);
	const size_t n = (size_t)sh[0], ch = (size_t)sh[1], s = (size_t)(sh[2] * sh[3]);
	for (size_t i = 0; i < n * ch * s; i++)
		p.x[i] = 100 + 1e-3 * p.x[i];
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, 4, sh, p.x), *mean, *var;
	tg_tensor *y = tg_batch_norm(x, tg_from_f64(ctx, TG_F64, SHAPE(sh[1]), p.gamma),
				     tg_from_f64(ctx, TG_F64, SHAPE(sh[1]), p.beta), p.eps, &mean,
				     &var);
	assert_ctx_ok(ctx);
	for (size_t c = 0; c < ch; c++) {
		long double m = 0, v = 0;
		for (size_t i = 0; i < n; i++)
			for (size_t e = 0; e < s; e++)
				m += p.x[(i * ch + c) * s + e];
		m /= n * s;
		for (size_t i = 0; i < n; i++)
			for (size_t e = 0; e < s; e++) {
				long double d = p.x[(i * ch + c) * s + e] - m;
				v += d * d;
			}
		v /= n * s;
		assert_near_ref("planes: mean", c, tg_get(mean, c), m, m, 1e-15);
		assert_near_ref("planes: var", c, tg_get(var, c), v, v, 1e-13);
		long double r = 1 / sqrtl(v + p.eps);
		for (size_t i = 0; i < n; i++)
			for (size_t e = 0; e < s; e++) {
				size_t at = (i * ch + c) * s + e;
				long double xh = (p.x[at] - m) * r;
				assert_near_ref("planes: y", at, tg_get(y, at), xh * p.gamma[c] + p.beta[c],
						fabsl(xh * p.gamma[c]) + fabsl(p.beta[c]) +
						    fabsl(p.gamma[c]),
						1e-13);
			}
	}
	tg_ctx_free(ctx);
	problem_free(&p);
	tg_ctx_free(rng);
}

/* f32 at a training size, (64,256): forward and gradients against f64. */
static void f32_layer_norm_agrees_with_f64(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(4);
	problem p = problem_new(ctx, 64, 256, 1e-5);
	tg_tensor *out[2][4]; /* f64, f32: y, dx, dgamma, dbeta */
	for (int k = 0; k < 2; k++) {
		tg_dtype dt = k ? TG_F32 : TG_F64;
		tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(64, 256), p.x), true);
		tg_tensor *gamma =
		    tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(256), p.gamma), true);
		tg_tensor *beta =
		    tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(256), p.beta), true);
		tg_tensor *w = tg_from_f64(ctx, dt, SHAPE(64, 256), p.w);
		tg_tensor *y = tg_layer_norm(x, gamma, beta, p.eps);
		assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
		assert_ctx_ok(ctx);
		out[k][0] = y, out[k][1] = tg_grad(x), out[k][2] = tg_grad(gamma);
		out[k][3] = tg_grad(beta);
	}
	const char *names[4] = { "y", "dx", "dgamma", "dbeta" };
	for (int s = 0; s < 4; s++) {
		double worst = 0;
		for (size_t i = 0; i < tg_numel(out[0][s]); i++) {
			double a = tg_get(out[0][s], i), b = tg_get(out[1][s], i);
			worst = fmax(worst, fabs(a - b) / fmax(1.0, fabs(a)));
		}
		print_message("%s: worst relative difference f32 - f64 %.3g\n", names[s], worst);
		if (!(worst < 1e-5))
			fail_msg("%s: f32 differs from f64 by %.3g (relative)", names[s], worst);
	}
	problem_free(&p);
	tg_ctx_free(ctx);
}

/* f32 values 1e4 + j 2^-10 (f32's spacing there), j = -10..11 repeated:
 * their mean, 1e4 + 2^-11, is not an f32, and rounding it shifts every
 * deviation by half a spacing. The variance about the rounded mean exceeds
 * the true one by that shift squared (0.6 % here), which the statistics
 * must take back out: the batch's var, and the spread of y (1 for gamma 1
 * and beta 0, less eps's part), are measured against long double. */
static long double offset_spread(const tg_tensor *y, size_t n, size_t stride, size_t first)
{
	long double m = 0, v = 0;
	for (size_t i = 0; i < n; i++)
		m += tg_get(y, first + i * stride);
	m /= n;
	for (size_t i = 0; i < n; i++) {
		long double c = tg_get(y, first + i * stride) - m;
		v += c * c;
	}
	return sqrtl(v / n);
}

static void f32_statistics_of_values_with_a_large_offset_are_exact(void **state)
{
	(void)state;
	enum { N = 22 * 20 };
	tg_ctx *ctx = tg_ctx_new(1);
	float xv[N * 2];
	long double mean = 0, var = 0, eps = 1e-9L;
	for (int i = 0; i < N; i++) {
		xv[2 * i] = xv[2 * i + 1] = 1e4f + (float)(i % 22 - 10) * 0x1p-10f;
		mean += xv[2 * i];
	}
	mean /= N;
	for (int i = 0; i < N; i++)
		var += ((long double)xv[2 * i] - mean) * ((long double)xv[2 * i] - mean);
	var /= N;
	long double spread = sqrtl(var / (var + eps));
	bool bad = false;
	tg_tensor *x = tg_from_f32(ctx, TG_F32, SHAPE(N, 2), xv);
	tg_tensor *g2 = tg_ones(ctx, TG_F32, SHAPE(2)), *b2 = tg_zeros(ctx, TG_F32, SHAPE(2));
	tg_tensor *bvar = NULL;
	tg_tensor *y = tg_batch_norm(x, g2, b2, (double)eps, NULL, &bvar);
	assert_ctx_ok(ctx);
	for (size_t j = 0; j < 2; j++) {
		double e_var = (double)fabsl(tg_get(bvar, j) / var - 1);
		double e_y = (double)fabsl(offset_spread(y, N, 2, j) / spread - 1);
		print_message("batch_norm column %zu: var off by %.3g, y's spread by %.3g\n", j,
			      e_var, e_y);
		if (!(e_var < 1e-5 && e_y < 1e-5) && (bad = true))
			print_error("batch_norm f32 column %zu: var %.9g (exact %.9Lg), y's spread "
				 "%.9Lg (exact %.9Lg)\n", j, tg_get(bvar, j), var,
				 offset_spread(y, N, 2, j), spread);
	}
	tg_tensor *xr = tg_from_f32(ctx, TG_F32, SHAPE(2, N), xv); /* each row the pattern */
	tg_tensor *gn = tg_ones(ctx, TG_F32, SHAPE(N)), *bn = tg_zeros(ctx, TG_F32, SHAPE(N));
	tg_tensor *yr = tg_layer_norm(xr, gn, bn, (double)eps);
	assert_ctx_ok(ctx);
	for (size_t r = 0; r < 2; r++) {
		long double got = offset_spread(yr, N, 1, r * N);
		print_message("layer_norm row %zu: y's spread off by %.3g\n", r,
			      (double)fabsl(got / spread - 1));
		if (!(fabsl(got / spread - 1) < 1e-5) && (bad = true))
			print_error("layer_norm f32 row %zu: y's spread %.9Lg (exact %.9Lg)\n", r,
				    got, spread);
	}
	tg_ctx_free(ctx);
	assert_false(bad);
}

/* f32 values of 1e4 + noise of 1e-2, whose mean is no float: (x - mean) with
 * the mean rounded to f32 (half an ULP, 5e-4) would shift every xhat by up
 * to 0.05. y, dx and dgamma, by a plain and by a recorded backward (whose
 * statistics are made of ops), against long double sums of the same
 * floats: layer norm of rows, batch norm of columns and of channels. */
static void f32_norms_of_values_with_a_large_offset_are_centred(void **state)
{
	(void)state;
	enum { N = 4 * 3 * 25 };
	static const int64_t shapes[3][4] = { { 12, 25 }, { 100, 3 }, { 4, 3, 5, 5 } };
	static const int ndims[3] = { 2, 2, 4 };
	static const char *const names[3] = { "layer_norm", "batch_norm (N,D)",
					      "batch_norm (N,C,H,W)" };
	const double eps = 1e-5;
	float xv[N], dv[N];
	for (int i = 0; i < N; i++) {
		xv[i] = 1e4f + (float)((i * 37) % 23 - 11) * 0x1p-10f;
		dv[i] = (float)cos(i);
	}
	bool bad = false;
	for (int c = 0; c < 3; c++) {
		int64_t cols = shapes[c][1];
		size_t groups = c == 0 ? (size_t)shapes[c][0] : (size_t)cols, s = c == 2 ? 25 : 1;
		/* the group and the gamma column of element i */
#define GROUP(i) (c == 0 ? (i) / (size_t)cols : ((i) / s) % (size_t)cols)
#define COL(i) (c == 0 ? (i) % (size_t)cols : ((i) / s) % (size_t)cols)
		long double mean[25] = { 0 }, var[25] = { 0 }, ma[25] = { 0 }, maxh[25] = { 0 };
		long double cnt = (long double)N / groups, gv[25], ref_dg[25] = { 0 };
		for (int64_t j = 0; j < cols; j++)
			gv[j] = 0.5f + 0.25f * (float)j;
		for (size_t i = 0; i < N; i++)
			mean[GROUP(i)] += xv[i] / cnt;
		for (size_t i = 0; i < N; i++)
			var[GROUP(i)] += (xv[i] - mean[GROUP(i)]) * (xv[i] - mean[GROUP(i)]) / cnt;
		for (size_t i = 0; i < N; i++) {
			size_t g = GROUP(i);
			long double xh = (xv[i] - mean[g]) / sqrtl(var[g] + eps);
			ma[g] += dv[i] * gv[COL(i)] / cnt;
			maxh[g] += dv[i] * gv[COL(i)] * xh / cnt;
			ref_dg[COL(i)] += dv[i] * xh;
		}
		for (int recorded = 0; recorded <= 1; recorded++) {
			tg_ctx *ctx = tg_ctx_new(1);
			float gf[25];
			for (int64_t j = 0; j < cols; j++)
				gf[j] = (float)gv[j];
			tg_tensor *x = tg_param(tg_from_f32(ctx, TG_F32, ndims[c], shapes[c], xv));
			tg_tensor *g = tg_param(tg_from_f32(ctx, TG_F32, 1, &cols, gf));
			tg_tensor *b = tg_zeros(ctx, TG_F32, 1, &cols);
			tg_tensor *y = c == 0 ? tg_layer_norm(x, g, b, eps)
					      : tg_batch_norm(x, g, b, eps, NULL, NULL);
			tg_tensor *d = tg_from_f32(ctx, TG_F32, ndims[c], shapes[c], dv);
			assert_int_equal(tg_backward_ex(y, d, recorded ? TG_CREATE_GRAPH : 0), 0);
			assert_ctx_ok(ctx);
			double ey = 0, edx = 0, edg = 0;
			for (size_t i = 0; i < N; i++) {
				size_t k = GROUP(i);
				long double r = 1 / sqrtl(var[k] + eps), xh = (xv[i] - mean[k]) * r;
				long double a = dv[i] * gv[COL(i)];
				ey = fmax(ey, (double)fabsl(tg_get(y, i) - xh * gv[COL(i)]));
				edx = fmax(edx, (double)fabsl(tg_get(tg_grad(x), i) -
							   r * (a - ma[k] - xh * maxh[k])) /
						    (double)r);
			}
			for (int64_t j = 0; j < cols; j++)
				edg = fmax(edg, (double)fabsl(tg_get(tg_grad(g), (size_t)j) - ref_dg[j]) /
							(double)(N / cols));
			print_message("%s%s: worst error of y %.3g, dx / inv_std %.3g, dgamma / "
				      "count %.3g\n", names[c], recorded ? " (recorded)" : "", ey, edx,
				      edg);
			if (!(ey < 1e-5 && edx < 1e-5 && edg < 1e-5))
				bad = true;
			tg_ctx_free(ctx);
		}
#undef GROUP
#undef COL
	}
	assert_false(bad);
}

static void layer_norm_rejects_bad_shapes_dtypes_eps_and_nulls(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_ones(ctx, TG_F64, SHAPE(4, 3));
	tg_tensor *d3 = tg_ones(ctx, TG_F64, SHAPE(3)), *d4 = tg_ones(ctx, TG_F64, SHAPE(4));
	assert_rejects(ctx, tg_layer_norm(x, d4, d3, 1e-5), TG_ESHAPE,
		       "tg_layer_norm: x (4,3): gamma (4,) must be (3,), x's last axis");
	assert_rejects(ctx, tg_layer_norm(x, d3, tg_ones(ctx, TG_F64, SHAPE(1, 3)), 1e-5),
		       TG_ESHAPE, "tg_layer_norm: x (4,3): beta (1,3) must be (3,)");
	assert_rejects(ctx, tg_layer_norm(tg_scalar(ctx, TG_F64, 1), d3, d3, 1e-5), TG_ESHAPE,
		       "tg_layer_norm: x is a scalar ()");
	assert_rejects(ctx, tg_layer_norm(tg_ones(ctx, TG_F32, SHAPE(4, 3)), d3, d3, 1e-5),
		       TG_EDTYPE, "tg_layer_norm: dtypes differ");
	assert_rejects(ctx, tg_layer_norm(x, d3, d3, 0), TG_EARG,
		       "tg_layer_norm: eps = 0 must be positive and finite");
	assert_rejects(ctx, tg_layer_norm(x, d3, d3, INFINITY), TG_EARG, "eps = inf");
	assert_rejects(ctx, tg_layer_norm(x, NULL, d3, 1e-5), TG_ENULL,
		       "tg_layer_norm: gamma is NULL; gamma and beta are both required");
	assert_rejects(ctx, tg_layer_norm(x, d3, NULL, 1e-5), TG_ENULL,
		       "tg_layer_norm: beta is NULL");
	assert_rejects(ctx, tg_layer_norm(NULL, d3, d3, 1e-5), TG_ENULL,
		       "tg_layer_norm: argument 0 is NULL");
	assert_rejects(ctx, tg_layer_norm_backward(tg_ones(ctx, TG_F64, SHAPE(3, 4)), x, d3, 1e-5),
		       TG_ESHAPE,
		       "tg_layer_norm_backward: dout (3,4) and x (4,3) must have the same shape");
	assert_rejects(ctx, tg_layer_norm_backward(x, x, d4, 1e-5), TG_ESHAPE,
		       "tg_layer_norm_backward: x (4,3): gamma (4,) must be (3,)");
	assert_rejects(ctx, tg_layer_norm_backward(x, x, d3, -1), TG_EARG,
		       "tg_layer_norm_backward: eps = -1 must be positive");
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(batch_norm_matches_its_composition_of_ops_to_1e12),
		cmocka_unit_test(gamma_and_beta_get_their_gradients_when_x_needs_none),
		cmocka_unit_test(batch_norm_gives_the_batch_statistics_without_history),
		cmocka_unit_test(f32_batch_norm_agrees_with_f64_on_a_training_batch),
		cmocka_unit_test(batch_norm_over_channels_matches_its_composition_on_rows_to_1e12),
		cmocka_unit_test(batch_norm_over_channels_gives_hand_computed_values_in_f64_and_f32),
		cmocka_unit_test(batch_norm_refuses_a_batch_of_one),
		cmocka_unit_test(batch_norm_relu_gives_the_bits_of_relu_of_batch_norm),
		cmocka_unit_test(batch_norm_relu_rejects_what_batch_norm_rejects),
		cmocka_unit_test(batch_norm_rejects_bad_shapes_dtypes_and_eps),
		cmocka_unit_test(norm_eps_must_be_a_normal_number_in_the_dtype),
		cmocka_unit_test(layer_norm_matches_its_composition_of_ops_to_1e12),
		cmocka_unit_test(layer_norm_backward_is_the_gradient_for_x),
		cmocka_unit_test(layer_norm_gives_hand_computed_values),
		cmocka_unit_test(huge_values_normalise_as_at_a_small_scale),
		cmocka_unit_test(huge_values_whose_sum_overflows_normalise),
		cmocka_unit_test(huge_values_normalise_per_channel),
		cmocka_unit_test(a_nan_or_inf_makes_its_group_nan),
		cmocka_unit_test(f32_layer_norm_agrees_with_f64),
		cmocka_unit_test(norm_gradients_have_the_same_bits_at_1_2_and_3_threads),
		cmocka_unit_test(a_small_spread_beside_a_large_mean_keeps_its_digits_in_f64),
		cmocka_unit_test(batch_norm_forward_has_the_same_bits_at_1_2_and_3_threads),
		cmocka_unit_test(f32_statistics_of_values_with_a_large_offset_are_exact),
		cmocka_unit_test(f32_norms_of_values_with_a_large_offset_are_centred),
		cmocka_unit_test(layer_norm_rejects_bad_shapes_dtypes_eps_and_nulls),
	 };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
