/*
 * test_parallel.c - loops split across a context's threads give the bits
 * of one thread: elementwise ops and their fused backward kernels,
 * broadcasts, reductions, softmax and cross-entropy rows, batch and layer
 * norm, and every optimizer's update, on tensors large enough to be split. tests/run runs
 * this file under ThreadSanitizer as well.
 */
#include "../engine/test_util.h"

#include "parallel.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

enum { R = 300, C = 257 }; /* 77100 elements: split, with parts off the rows */

/* ---- the values a run produced, in order ----------------------------------------- */

typedef struct run {
	double *v; /* every value kept, as double (exact for f32) */
	size_t n, cap;
	int rc;
} run;

static void keep(run *r, const tg_tensor *t)
{
	if (!t) {
		r->rc = -1;
		return;
	}
	size_t n = tg_numel(t);
	if (r->n + n > r->cap) {
		size_t cap = (r->n + n) * 2;
		double *v = realloc(r->v, cap * sizeof *v);
		if (!v) {
			r->rc = -1;
			return;
		}
		r->v = v;
		r->cap = cap;
	}
	if (tg_dtype_of(t) == TG_F64) {
		memcpy(r->v + r->n, tg_data(t), n * sizeof(double));
	} else {
		const float *f = tg_data(t);
		for (size_t i = 0; i < n; i++)
			r->v[r->n + i] = f[i];
	}
	r->n += n;
}

/* Fails unless a and b kept the same values bit for bit. */
static void assert_same_bits(const run *a, const run *b, const char *what)
{
	assert_int_equal(a->rc, 0);
	assert_int_equal(b->rc, 0);
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++)
		if (memcmp(&a->v[i], &b->v[i], sizeof(double)))
			fail_msg("%s: value %zu of %zu is %.17g with one thread and %.17g with "
				 "more",
				 what, i, a->n, a->v[i], b->v[i]);
}

/* ---- the ops: forward values and gradients ------------------------------------------- */

/* Every split op on (R, C) tensors of dt, with a backward pass through the
 * fused kernels, in a context with the given thread count. */
static void ops_run(tg_dtype dt, int threads, run *r)
{
	tg_ctx *ctx = tg_ctx_new(7);
	assert_non_null(ctx);
	tg_set_threads(ctx, threads);
	tg_tensor *x = tg_param(tg_randn(ctx, dt, SHAPE(R, C), 0, 1.5));
	tg_tensor *w = tg_param(tg_randn(ctx, dt, SHAPE(C), 0, 1));
	tg_tensor *col = tg_randn(ctx, dt, SHAPE(R, 1), 0, 1);
	int32_t labels[R];
	for (int i = 0; i < R; i++)
		labels[i] = (i * 37) % C;
	int64_t rows[400]; /* repeated: their gradients add in order */
	for (int i = 0; i < 400; i++)
		rows[i] = (i * 7) % R;
	tg_tensor *picked = tg_from_i64(ctx, SHAPE(400), rows);
	int64_t cols[200]; /* columns of every row: runs of one element */
	for (int i = 0; i < 200; i++)
		cols[i] = (i * 11) % C;
	tg_tensor *picked_cols = tg_from_i64(ctx, SHAPE(200), cols);
	/* a row of 4 broadcast over (R C / 4, 4): its gradients are column sums
	 * of too few columns to split, summed in blocks of rows */
	tg_tensor *b4 = tg_param(tg_randn(ctx, dt, SHAPE(1, 4), 0, 1));

	tg_tensor *u = tg_add(tg_mul(x, w), x);			  /* (R,C) * (C), flat add */
	tg_tensor *v = tg_div(tg_mul(u, col), tg_add_scalar(tg_abs(w), 1.0)); /* (R,1), (C) */
	tg_tensor *acts[] = {
		tg_relu(u),	   tg_sigmoid(u),	 tg_tanh(u),
		tg_gelu(u),	   tg_elu(u, 1.0),	 tg_leaky_relu(u, 0.01),
		tg_exp(tg_mul_scalar(v, 0.1)), tg_silu(v), tg_softplus(v),
	};
	tg_tensor *h = v;
	for (size_t i = 0; i < LEN(acts); i++) {
		keep(r, acts[i]);
		h = tg_add(h, acts[i]);
	}
	tg_tensor *red[] = {
		tg_sum_axis(h, 0, false), tg_mean_axis(h, 1, true), tg_max_axis(h, 0, false),
		tg_max_axis(h, 1, false), tg_sum(h),		    tg_mean(u),
		tg_max(h),
		tg_softmax(h),		  tg_log_softmax(h),
		/* along the middle axis: (30, 10, 257) split into groups of whole
		 * slices, (3, 100, 257) into columns (fewer slices than parts) */
		tg_sum_axis(tg_reshape(h, SHAPE(30, 10, C)), 1, false),
		tg_sum_axis(tg_reshape(h, SHAPE(3, 100, C)), 1, true),
		tg_max_axis(tg_reshape(h, SHAPE(30, 10, C)), 1, true),
		/* the losses' sums, in blocks split across the threads */
		tg_mse(u, h), tg_l1(u, h), tg_huber(u, h, 1.0),
		tg_bce_with_logits(h, tg_sigmoid(u)),
		/* a reshape's copy, split by bytes */
		tg_reshape(u, SHAPE(C, R)),
		/* a gather, its gradient scattered by columns */
		tg_gather_rows(h, picked),
		/* a gather along the last axis, split across rows of x */
		tg_index_select(h, 1, picked_cols),
		/* too few columns to split: blocks of rows */
		tg_sum_axis(tg_reshape(h, SHAPE(R * C / 4, 4)), 0, false),
		tg_mean_axis(tg_reshape(h, SHAPE(R * C / 3, 3)), 0, true),
		tg_add(tg_reshape(h, SHAPE(R * C / 4, 4)), b4),
		tg_mul(tg_reshape(u, SHAPE(R * C / 4, 4)), b4),
	};
	tg_tensor *loss = tg_cross_entropy_i32(h, labels, R);
#ifndef __SANITIZE_THREAD__
	/* an affine product: its bias rows filled in parts, its bias gradient
	 * summed by columns in parts. OpenBLAS's own products may round
	 * differently at another thread count, so the weight is zero (every
	 * product exactly 0) and its gradient, a product, is not compared.
	 * Not under ThreadSanitizer: OpenBLAS's threads synchronise in code
	 * it does not see, and it reports their reads of our writes. */
	tg_tensor *wm = tg_param(tg_zeros(ctx, dt, SHAPE(C, 128)));
	tg_tensor *bm = tg_param(tg_randn(ctx, dt, SHAPE(128), 0, 1));
	tg_tensor *am = tg_addmm(u, wm, bm);
	keep(r, am);
	loss = tg_add(loss, tg_mul_scalar(tg_mean(tg_tanh(am)), 1e-2));
#endif
	keep(r, loss);
	for (size_t i = 0; i < LEN(red); i++) {
		keep(r, red[i]);
		loss = tg_add(loss, tg_mul_scalar(tg_mean(red[i]), 1e-3));
	}
	keep(r, loss);
	if (tg_backward(loss))
		fail_msg("backward: %s", tg_error(ctx));
	keep(r, tg_grad(x));
	keep(r, tg_grad(w));
	keep(r, tg_grad(b4));
#ifndef __SANITIZE_THREAD__
	keep(r, tg_grad(bm));
#endif
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void elementwise_reduction_and_row_ops_give_the_bits_of_one_thread(void **state)
{
	(void)state;
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F64 : TG_F32;
		run one = { 0 };
		ops_run(dt, 1, &one);
		for (int threads = 2; threads <= 3; threads++) {
			run more = { 0 };
			ops_run(dt, threads, &more);
			assert_same_bits(&one, &more, d ? "f64 ops" : "f32 ops");
			free(more.v);
		}
		free(one.v);
	}
}

/* ---- batch and layer norm --------------------------------------------------------------- */

/* Batch norm on x of the given shape, layer norm on it too, and their
 * backward kernels called directly: outputs, statistics and the gradients
 * of x, gamma and beta, in a context with the given thread count. */
static void norm_case(tg_dtype dt, int threads, int nd, const int64_t *shape, run *r)
{
	tg_ctx *ctx = tg_ctx_new(13);
	assert_non_null(ctx);
	tg_set_threads(ctx, threads);
	int64_t c = shape[1], d = shape[nd - 1];
	tg_tensor *x = tg_param(tg_randn(ctx, dt, nd, shape, 0.5, 2));
	tg_tensor *w = tg_randn(ctx, dt, nd, shape, 0, 1);
	tg_tensor *g = tg_param(tg_randn(ctx, dt, SHAPE(c), 1, 0.3));
	tg_tensor *b = tg_param(tg_randn(ctx, dt, SHAPE(c), 0, 1));
	tg_tensor *lg = tg_param(tg_randn(ctx, dt, SHAPE(d), 1, 0.3));
	tg_tensor *lb = tg_param(tg_randn(ctx, dt, SHAPE(d), 0, 1));
	tg_tensor *mean, *var;
	tg_tensor *y = tg_batch_norm(x, g, b, 1e-5, &mean, &var);
	tg_tensor *z = tg_layer_norm(x, lg, lb, 1e-5);
	keep(r, y);
	keep(r, mean);
	keep(r, var);
	keep(r, z);
	keep(r, tg_batch_norm_backward(w, x, g, 1e-5));
	keep(r, tg_layer_norm_backward(w, x, lg, 1e-5));
	tg_tensor *loss = tg_add(tg_sum(tg_mul(y, w)), tg_sum(tg_mul(tg_mul(z, z), w)));
	if (tg_backward(loss))
		fail_msg("backward: %s", tg_error(ctx));
	tg_tensor *grads[] = { tg_grad(x), tg_grad(g), tg_grad(b), tg_grad(lg), tg_grad(lb) };
	for (size_t i = 0; i < LEN(grads); i++)
		keep(r, grads[i]);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* Each norm's passes split by columns, channels, rows or planes: (N,D)
 * batches with parts off the cache lines, images of few channels (one
 * channel per part or several), a 3-D x with a long last axis. */
static void batch_and_layer_norm_give_the_bits_of_one_thread(void **state)
{
	(void)state;
	static const int64_t shapes[][4] = {
		{ R, C }, { 4096, 9 }, { 16, 6, 20, 21 }, { 4, 3, 100, 100 }, { 7, 5, 1201 },
	};
	static const int dims[] = { 2, 2, 4, 4, 3 };
	for (size_t k = 0; k < LEN(shapes); k++)
		for (int dd = 0; dd < 2; dd++) {
			tg_dtype dt = dd ? TG_F64 : TG_F32;
			run one = { 0 };
			norm_case(dt, 1, dims[k], shapes[k], &one);
			for (int threads = 2; threads <= 3; threads++) {
				run more = { 0 };
				norm_case(dt, threads, dims[k], shapes[k], &more);
				char what[64];
				snprintf(what, sizeof what, "%s norms, shape %zu, %d threads",
					 dd ? "f64" : "f32", k, threads);
				assert_same_bits(&one, &more, what);
				free(more.v);
			}
			free(one.v);
		}
}

/* ---- max: ties, signed zeros and NaNs across the parts ---------------------------- */

/* The plain loop's max of column i of slice o of X (outer, n, inner), the
 * first element that beats the ones before it, or the first NaN. */
static float plain_max(const float *X, int64_t n, int64_t in, int64_t o, int64_t i)
{
	const float *x = X + o * n * in + i;
	float y = x[0];
	for (int64_t k = 1; k < n; k++)
		if (x[k * in] > y || (isnan(x[k * in]) && !isnan(y)))
			y = x[k * in];
	return y;
}

static bool ties(float x, float y)
{
	return x == y || (isnan(x) && isnan(y));
}

/* x: the integers -2 .. 2, so that every max has ties spread over the
 * rows; in column 5 (of the (R, C) layout) nothing above a zero, the
 * zeros of both signs; with nan, a NaN late in column 7 and another in
 * column 9. */
static void fill_ties(float *x, bool nan)
{
	for (int64_t r = 0; r < R; r++)
		for (int64_t c = 0; c < C; c++) {
			float v = (float)((r * 7919 + c * 104729) % 5) - 2;
			if (c == 5)
				v = v > 0 ? -v : v;
			if (v == 0 && (r + c) % 2)
				v = -0.0f;
			x[r * C + c] = v;
		}
	if (nan) {
		x[250 * C + 7] = NAN;
		x[3 * C + 9] = NAN;
		x[290 * C + 9] = NAN;
	}
}

/* Fails unless got[0..n) has want's bits: "max 5 of (1,300,257) with a NaN,
 * 2 threads, is ..." */
static void same_floats(const char *what, const float *got, const float *want, int64_t n,
			const int64_t view[3], int nan, int threads)
{
	for (int64_t k = 0; k < n; k++)
		if (memcmp(&got[k], &want[k], sizeof(float)))
			fail_msg("%s %lld of (%lld,%lld,%lld)%s, %d threads, is %g, the plain "
				 "loop's %g",
				 what, (long long)k, (long long)view[0], (long long)view[1],
				 (long long)view[2], nan ? " with NaNs" : "", threads, got[k], want[k]);
}

/* The max of x seen as (outer, n, inner) over n at 1 and 2 threads, and
 * x's gradient for dout d: both as the plain loop gives them, bit for
 * bit. The shapes take each split: whole slices (long runs and short
 * ones), blocks of rows (all elements; the leading axis; 3 slices),
 * stretches of columns. */
static void max_splits_keep_the_first_of_ties_and_nans(void **state)
{
	(void)state;
	static const int64_t views[][3] = {
		{ R, C, 1 }, { 1, R * C, 1 }, { 1, R, C }, { 3, 100, C }, { 1, 3, R * C / 3 },
		/* runs of 2 to 5: each length's own loop */
		{ R * C / 2, 2, 1 }, { R * C / 3, 3, 1 }, { R * C / 4, 4, 1 }, { R * C / 5, 5, 1 },
	};
	static float X[R * C], want_y[R * C], want_g[R * C], c[R * C];
	for (int nan = 0; nan < 2; nan++) {
		fill_ties(X, nan);
		for (size_t s = 0; s < LEN(views); s++) {
			const int64_t outer = views[s][0], n = views[s][1], in = views[s][2];
			float *d = want_y + outer * in; /* dout: after the maxima */
			for (int64_t o = 0; o < outer; o++)
				for (int64_t i = 0; i < in; i++) {
					int64_t k = o * in + i;
					want_y[k] = plain_max(X, n, in, o, i);
					d[k] = (float)(k % 3) + 0.5f;
					c[k] = 0;
					for (int64_t m = 0; m < n; m++)
						c[k] += ties(X[(o * n + m) * in + i], want_y[k]);
				}
			for (int64_t o = 0; o < outer; o++)
				for (int64_t m = 0; m < n; m++)
					for (int64_t i = 0; i < in; i++) {
						int64_t k = o * in + i, e = (o * n + m) * in + i;
						float share = (float)(1.0 / (double)c[k]);
						want_g[e] = (ties(X[e], want_y[k]) ? share : 0) * d[k];
					}
			for (int threads = 1; threads <= 2; threads++) {
				tg_ctx *ctx = tg_ctx_new(3);
				assert_non_null(ctx);
				tg_set_threads(ctx, threads);
				tg_tensor *x = tg_param(tg_from_f32(ctx, TG_F32, SHAPE(outer, n, in), X));
				tg_tensor *y = tg_max_axis(x, 1, false);
				tg_tensor *dout = tg_from_f32(ctx, TG_F32, SHAPE(outer, in), d);
				if (!y || tg_backward(tg_sum(tg_mul(y, dout))))
					fail_msg("%s", tg_error(ctx));
				same_floats("max", tg_data(y), want_y, outer * in, views[s], nan, threads);
				same_floats("gradient", tg_data(tg_grad(x)), want_g, R * C, views[s], nan,
					    threads);
				assert_ctx_ok(ctx);
				tg_ctx_free(ctx);
			}
		}
	}
}

/* ---- expand of a short row or a narrow column ------------------------------------ */

/* A row of n tiled down, (n) to (ROWS, n) and (1, 1, n) to (4, ROWS / 4,
 * n), and a column (ROWS, 1) repeated across n, at 1 and 2 threads (parts
 * start inside a row): every element is the one its index names. */
static void short_rows_and_narrow_columns_expand_by_index(void **state)
{
	(void)state;
	static const int64_t widths[] = { 1, 2, 3, 5, 7, 8, 9, 255, 256 };
	enum { ROWS = 40000 };
	static double v[ROWS];
	for (int i = 0; i < ROWS; i++)
		v[i] = i * 0.5 - 7;
	for (int threads = 1; threads <= 2; threads++)
		for (size_t w = 0; w < LEN(widths); w++) {
			const int64_t n = widths[w];
			tg_ctx *ctx = tg_ctx_new(5);
			assert_non_null(ctx);
			tg_set_threads(ctx, threads);
			tg_tensor *row = tg_from_f64(ctx, TG_F32, SHAPE(n), v);
			tg_tensor *row3 = tg_from_f64(ctx, TG_F64, SHAPE(1, 1, n), v);
			tg_tensor *col = tg_from_f64(ctx, TG_F32, SHAPE(ROWS, 1), v);
			tg_tensor *t[] = { tg_expand(row, SHAPE(ROWS, n)),
					   tg_expand(row3, SHAPE(4, ROWS / 4, n)),
					   tg_expand(col, SHAPE(ROWS, n)) };
			for (size_t k = 0; k < LEN(t); k++) {
				if (!t[k])
					fail_msg("%s", tg_error(ctx));
				for (int64_t e = 0; e < ROWS * n; e++) {
					double want = v[k < 2 ? e % n : e / n];
					if (tg_get(t[k], (size_t)e) != want)
						fail_msg("expand %zu, width %lld, %d threads: element %lld "
							 "is %g, not %g",
							 k, (long long)n, threads, (long long)e,
							 tg_get(t[k], (size_t)e), want);
				}
			}
			assert_ctx_ok(ctx);
			tg_ctx_free(ctx);
		}
}

/* ---- the optimizers ----------------------------------------------------------------- */

/* Three steps of each optimizer on a (R, C) parameter whose gradient is a
 * fixed random tensor: every rule, plain and with decay and clipping. */
static void optim_run(tg_dtype dt, int threads, run *r)
{
	for (int k = TG_SGD; k <= TG_ADAMW; k++) {
		for (int extra = 0; extra < 2; extra++) {
			tg_ctx *ctx = tg_ctx_new(11);
			assert_non_null(ctx);
			tg_set_threads(ctx, threads);
			tg_tensor *p = tg_param(tg_randn(ctx, dt, SHAPE(R, C), 0, 1));
			tg_tensor *g = tg_keep(tg_randn(ctx, dt, SHAPE(R, C), 0, 1));
			tg_optim_opts oo = tg_optim_defaults((tg_optim_kind)k);
			if (extra) {
				oo.weight_decay = 0.1;
				oo.clip_norm = 1.0;
				tg_set_decay(p, true);
			}
			tg_optim *opt = tg_optim_new(ctx, &p, 1, &oo);
			assert_non_null(opt);
			for (int step = 0; step < 3; step++) {
				tg_optim_zero_grad(opt);
				if (tg_backward(tg_sum(tg_mul(p, g))))
					fail_msg("backward: %s", tg_error(ctx));
				assert_int_equal(tg_optim_step(opt), 0);
				tg_reset(ctx);
			}
			keep(r, p);
			assert_ctx_ok(ctx);
			tg_optim_free(opt);
			tg_ctx_free(ctx);
		}
	}
}

static void every_optimizer_update_gives_the_bits_of_one_thread(void **state)
{
	(void)state;
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F64 : TG_F32;
		run one = { 0 }, two = { 0 };
		optim_run(dt, 1, &one);
		optim_run(dt, 2, &two);
		assert_same_bits(&one, &two, d ? "f64 updates" : "f32 updates");
		free(one.v);
		free(two.v);
	}
}

/* ---- mini-batches --------------------------------------------------------------------- */

/* NaN in the step memory the next tensor of R rows of c takes: a row the
 * gather leaves out shows, whatever an earlier context left there. */
static void poison_step_memory(tg_ctx *ctx, tg_dtype dt, int64_t c)
{
	assert_non_null(tg_full(ctx, dt, 2, (const int64_t[]){ R, c }, NAN));
	tg_reset(ctx);
}

/* A batch of R rows of C features, gathered at 1 and 2 threads in either
 * dtype: each row the data set's row, each label its label, the same bits. */
static void a_batch_gathered_by_two_threads_is_the_rows_and_labels(void **state)
{
	(void)state;
	enum { ROWS = 1000 };
	tg_dataset ds = { .n = ROWS, .d = C, .classes = 7, .x = malloc((size_t)ROWS * C * sizeof(float)),
			  .y = malloc(ROWS * sizeof(int32_t)) };
	assert_non_null(ds.x);
	assert_non_null(ds.y);
	for (size_t i = 0; i < (size_t)ROWS * C; i++)
		ds.x[i] = (float)i / 3.0f;
	for (int i = 0; i < ROWS; i++)
		ds.y[i] = i % 7;
	int64_t idx[R];
	for (int i = 0; i < R; i++)
		idx[i] = (int64_t)(((uint64_t)i * 7919 + 13) % ROWS);
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F64 : TG_F32;
		for (int threads = 1; threads <= 2; threads++) {
			tg_ctx *ctx = tg_ctx_new(1);
			tg_set_threads(ctx, threads);
			/* R rows of C: split as a loop of R C elements is */
			assert_int_equal(tg_parallel_parts(ctx, R, TG_PAR_MIN / C + 1) > 1, threads > 1);
			int32_t labels[R];
			poison_step_memory(ctx, dt, C);
			tg_tensor *b = tg_dataset_batch(ctx, &ds, idx, R, dt, labels);
			assert_ctx_ok(ctx);
			for (int i = 0; i < R; i++) {
				assert_int_equal(labels[i], ds.y[idx[i]]);
				for (int j = 0; j < C; j++) {
					double want = ds.x[idx[i] * C + j];
					double got = d ? ((const double *)tg_data(b))[i * C + j]
						       : ((const float *)tg_data(b))[i * C + j];
					if (got != want)
						fail_msg("%d threads, %s: row %d column %d is %.9g, not %.9g",
							 threads, d ? "f64" : "f32", i, j, got, want);
				}
			}
			tg_ctx_free(ctx);
		}
	}
	tg_dataset_free(&ds);
}

/* Float targets (a regression's) of R rows of C, gathered as the
 * features are: each row the data set's, the same bits at 1 and 2 threads
 * in either dtype. */
static void targets_gathered_by_two_threads_are_the_rows(void **state)
{
	(void)state;
	enum { ROWS = 1000 };
	tg_dataset ds = { .n = ROWS, .d = 3, .x = calloc((size_t)ROWS * 3, sizeof(float)),
			  .tdim = C, .t = malloc((size_t)ROWS * C * sizeof(float)) };
	assert_non_null(ds.x);
	assert_non_null(ds.t);
	for (size_t i = 0; i < (size_t)ROWS * C; i++)
		ds.t[i] = (float)i / 7.0f;
	int64_t idx[R];
	for (int i = 0; i < R; i++)
		idx[i] = (int64_t)(((uint64_t)i * 7919 + 13) % ROWS);
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F64 : TG_F32;
		for (int threads = 1; threads <= 2; threads++) {
			tg_ctx *ctx = tg_ctx_new(1);
			tg_set_threads(ctx, threads);
			assert_int_equal(tg_parallel_parts(ctx, R, TG_PAR_MIN / C + 1) > 1, threads > 1);
			poison_step_memory(ctx, dt, C);
			tg_tensor *t = tg_dataset_targets(ctx, &ds, idx, R, dt);
			assert_ctx_ok(ctx);
			assert_int_equal(tg_ndim(t), 2);
			assert_int_equal(tg_shape(t)[0], R);
			assert_int_equal(tg_shape(t)[1], C);
			for (int i = 0; i < R; i++)
				for (int j = 0; j < C; j++) {
					double want = ds.t[idx[i] * C + j];
					double got = d ? ((const double *)tg_data(t))[i * C + j]
						       : ((const float *)tg_data(t))[i * C + j];
					if (got != want)
						fail_msg("%d threads, %s: target row %d column %d is %.9g, "
							 "not %.9g",
							 threads, d ? "f64" : "f32", i, j, got, want);
				}
			tg_ctx_free(ctx);
		}
	}
	tg_dataset_free(&ds);
}

/* ---- the pool itself ------------------------------------------------------------------- */

enum { N = 100000 };

typedef struct marks {
	unsigned char seen[N];
	pthread_t first;	 /* the thread that ran the part at 0 */
	_Atomic int others;	 /* parts run by another thread than first's */
	_Atomic int first_known;
	_Atomic size_t other_first; /* the start of the first part another thread ran */
} marks;

/* Marks its indices. The part at 0 waits (up to 5 s) until another thread
 * has run a part, so that the test sees the pool work whatever the load. */
static void mark(void *arg, size_t lo, size_t hi)
{
	marks *m = arg;
	for (size_t i = lo; i < hi; i++)
		m->seen[i]++;
	if (lo == 0) {
		m->first = pthread_self();
		atomic_store(&m->first_known, 1);
		for (int k = 0; k < 5000 && !atomic_load(&m->others); k++) {
			struct timespec ms = { 0, 1000000 };
			nanosleep(&ms, NULL);
		}
		return;
	}
	while (!atomic_load(&m->first_known))
		sched_yield();
	if (!pthread_equal(m->first, pthread_self())) {
		size_t none = SIZE_MAX;
		atomic_compare_exchange_strong(&m->other_first, &none, lo);
		atomic_fetch_add(&m->others, 1);
	}
}

static void a_split_loop_runs_on_two_threads_and_covers_each_index_once(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	assert_non_null(ctx);
	tg_set_threads(ctx, 2);
	assert_true(tg_parallel_parts(ctx, N, TG_PAR_MIN) >= 2);
	assert_int_equal(tg_parallel_parts(ctx, TG_PAR_MIN - 1, TG_PAR_MIN), 1);
	static marks m;
	for (int rep = 0; rep < 20; rep++) { /* the pool's sleep and spin paths */
		memset(&m, 0, sizeof m);
		atomic_store(&m.other_first, SIZE_MAX);
		tg_parallel_for(ctx, N, TG_PAR_MIN, 16, mark, &m);
		for (size_t i = 0; i < N; i++)
			if (m.seen[i] != 1)
				fail_msg("index %zu ran %d times", i, m.seen[i]);
		if (!atomic_load(&m.others))
			fail_msg("rep %d: every part ran on one thread", rep);
		/* The worker starts at its own share, the second half: the
		 * caller holds part 0 until the worker has run a part, so it
		 * cannot have taken it. Loops of one size give each thread
		 * the same elements, which it may still hold in its cache. */
		size_t parts = (size_t)tg_parallel_parts(ctx, N, TG_PAR_MIN), p = parts / 2;
		size_t half = (N / parts * p + N % parts * p / parts) / 16 * 16;
		if (atomic_load(&m.other_first) != half)
			fail_msg("rep %d: the worker's first part starts at %zu, not %zu (of %zu parts)",
				 rep, atomic_load(&m.other_first), half, parts);
	}
	/* one thread: a single call on the caller */
	tg_set_threads(ctx, 1);
	memset(&m, 0, sizeof m);
	atomic_store(&m.others, 1); /* no waiting in the part at 0 */
	tg_parallel_for(ctx, N, TG_PAR_MIN, 16, mark, &m);
	for (size_t i = 0; i < N; i++)
		if (m.seen[i] != 1)
			fail_msg("index %zu ran %d times", i, m.seen[i]);
	assert_true(pthread_equal(m.first, pthread_self()));
	tg_ctx_free(ctx);
}

/* The blocked sum of a long run: the exact total for values whose sums are
 * exact, with one and with two threads. */
static void a_long_sum_is_exact_where_it_can_be(void **state)
{
	(void)state;
	for (int threads = 1; threads <= 2; threads++) {
		tg_ctx *ctx = tg_ctx_new(1);
		assert_non_null(ctx);
		tg_set_threads(ctx, threads);
		tg_tensor *x = tg_zeros(ctx, TG_F32, SHAPE(200003));
		float *X = tg_data_mut(x);
		for (int i = 0; i < 200003; i++)
			X[i] = (float)(i % 7) * 0.25f;
		/* 28571 full cycles of 0 + 0.25 + ... + 1.5 = 5.25, then 0 to 1.25 */
		assert_near(tg_item(tg_sum(x)), 28571 * 5.25 + 3.75, 0);
		assert_near(tg_item(tg_mean(x)), (28571 * 5.25 + 3.75) / 200003, 1e-7);
		assert_ctx_ok(ctx);
		tg_ctx_free(ctx);
	}
}

/* A sum over the rows of too few columns to split, in blocks of rows: the
 * exact column sums for values whose sums are exact, on 1 to 3 threads,
 * for row counts around a block's length. */
static void narrow_column_sums_are_exact_where_they_can_be(void **state)
{
	(void)state;
	static const int64_t shapes[][2] = { { 50001, 4 }, { 8193, 4 }, { 2731, 13 }, { 300007, 3 } };
	for (int threads = 1; threads <= 3; threads++)
		for (size_t c = 0; c < LEN(shapes); c++)
			for (int d = 0; d < 2; d++) {
				tg_dtype dt = d ? TG_F64 : TG_F32;
				const int64_t n = shapes[c][0], w = shapes[c][1];
				tg_ctx *ctx = tg_ctx_new(1);
				assert_non_null(ctx);
				tg_set_threads(ctx, threads);
				tg_tensor *x = tg_zeros(ctx, dt, SHAPE(n, w));
				double want[16] = { 0 };
				for (int64_t i = 0; i < n * w; i++) {
					double v = (double)((i * 7919 % 13) - 6) * 0.25;
					if (d)
						((double *)tg_data_mut(x))[i] = v;
					else
						((float *)tg_data_mut(x))[i] = (float)v;
					want[i % w] += v;
				}
				tg_tensor *s = tg_sum_axis(x, 0, false), *m = tg_mean_axis(x, 0, true);
				assert_ctx_ok(ctx);
				for (int64_t k = 0; k < w; k++) {
					if (tg_get(s, (size_t)k) != want[k])
						fail_msg("(%lld,%lld) %s at %d threads: column %lld sums "
							 "to %.17g, want %.17g",
							 (long long)n, (long long)w, d ? "f64" : "f32",
							 threads, (long long)k, tg_get(s, (size_t)k),
							 want[k]);
					double mean = want[k] / (double)n;
					assert_near(tg_get(m, (size_t)k), mean, 1e-6 * fabs(mean) + 1e-9);
				}
				tg_ctx_free(ctx);
			}
}

/* ---- sum_to split by the axis it keeps ------------------------------------------------- */

typedef struct sum_to_case {
	int nd, ndim;
	int64_t from[4], to[4];
} sum_to_case;

/* Where the result keeps an axis before the last, sum_to splits that axis
 * across the threads: rows of a column broadcast's gradient, the channels
 * of a convolution's bias gradient, a middle axis with the last kept or
 * summed. */
static const sum_to_case sum_to_cases[] = {
	{ 2, 2, { 600, 257 }, { 600, 1 } },
	{ 4, 3, { 16, 12, 20, 20 }, { 12, 1, 1 } },
	{ 4, 4, { 16, 12, 20, 20 }, { 1, 12, 1, 1 } },
	{ 4, 3, { 6, 30, 10, 257 }, { 30, 1, 257 } },
	{ 3, 3, { 40, 3, 1000 }, { 40, 1, 1 } },
	{ 3, 3, { 2, 64, 300 }, { 2, 64, 1 } },
	/* rows summed onto one row too short to split by columns: blocks of
	 * rows, their count and length odd */
	{ 2, 2, { 50001, 4 }, { 1, 4 } },
	{ 2, 1, { 40003, 3 }, { 3 } },
	{ 2, 2, { 65537, 15 }, { 1, 15 } },
};

/* sum_to of case c on x filled with whole multiples of 1/4 (exact in any
 * order: y must be the exact sums) when exact, else N(0, 1) draws, in a
 * context of the given thread count; the values kept in r. */
static void sum_to_run(const sum_to_case *c, tg_dtype dt, bool exact, int threads, run *r)
{
	tg_ctx *ctx = tg_ctx_new(5);
	assert_non_null(ctx);
	tg_set_threads(ctx, threads);
	tg_tensor *x = tg_randn(ctx, dt, c->nd, c->from, 0, 1);
	size_t n = tg_numel(x);
	if (exact) {
		for (size_t i = 0; i < n; i++) {
			double v = (double)((int64_t)(i * 7919 % 13) - 6) * 0.25;
			if (dt == TG_F64)
				((double *)tg_data_mut(x))[i] = v;
			else
				((float *)tg_data_mut(x))[i] = (float)v;
		}
	}
	tg_tensor *y = tg_sum_to(x, c->ndim, c->to);
	keep(r, y);
	if (exact && y) {
		/* the sums by broadcasting the index back, element by element */
		size_t m = tg_numel(y);
		double *want = calloc(m, sizeof *want);
		assert_non_null(want);
		int64_t idx[4] = { 0 };
		for (size_t i = 0; i < n; i++) {
			size_t at = 0;
			for (int k = 0; k < c->ndim; k++) {
				int64_t d = c->to[k], a = idx[c->nd - c->ndim + k];
				at = at * (size_t)d + (size_t)(d == 1 ? 0 : a);
			}
			want[at] += tg_get(x, i);
			for (int k = c->nd - 1; k >= 0 && ++idx[k] == c->from[k]; k--)
				idx[k] = 0;
		}
		for (size_t i = 0; i < m; i++)
			if (tg_get(y, i) != want[i])
				fail_msg("sum_to %zu of %zu at %d threads: %.17g, want %.17g", i, m,
					 threads, tg_get(y, i), want[i]);
		free(want);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void sum_to_split_by_the_axis_it_keeps_gives_the_sums_of_one_thread(void **state)
{
	(void)state;
	for (size_t i = 0; i < LEN(sum_to_cases); i++)
		for (int d = 0; d < 2; d++) {
			tg_dtype dt = d ? TG_F64 : TG_F32;
			run one = { 0 };
			sum_to_run(&sum_to_cases[i], dt, false, 1, &one);
			for (int threads = 1; threads <= 3; threads++) {
				run exact = { 0 }, more = { 0 };
				sum_to_run(&sum_to_cases[i], dt, true, threads, &exact);
				sum_to_run(&sum_to_cases[i], dt, false, threads, &more);
				assert_same_bits(&one, &more, "sum_to");
				free(exact.v);
				free(more.v);
			}
			free(one.v);
		}
}

/* Adds 1 to each index of its part. */
static void count(void *arg, size_t lo, size_t hi)
{
	_Atomic unsigned char *seen = arg;
	for (size_t i = lo; i < hi; i++)
		atomic_fetch_add_explicit(&seen[i], 1, memory_order_relaxed);
}

/* More threads than parts a loop can have (32), and counts that are not
 * multiples of the parts: every index runs once. */
static void many_threads_cover_each_index_once(void **state)
{
	(void)state;
	static _Atomic unsigned char seen[N];
	static const int threads[] = { 3, 5, 40 };
	for (size_t k = 0; k < sizeof threads / sizeof threads[0]; k++) {
		tg_ctx *ctx = tg_ctx_new(1);
		assert_non_null(ctx);
		tg_set_threads(ctx, threads[k]);
		int parts = tg_parallel_parts(ctx, N, TG_PAR_MIN_MATH);
		assert_true(parts >= 2 && parts <= 32);
		for (int rep = 0; rep < 20; rep++) {
			size_t n = N - (size_t)rep * 777;
			memset(seen, 0, sizeof seen);
			tg_parallel_for(ctx, n, TG_PAR_MIN_MATH, 16, count, seen);
			for (size_t i = 0; i < N; i++)
				if (seen[i] != (i < n))
					fail_msg("%d threads, n %zu: index %zu ran %d times", threads[k],
						 n, i, seen[i]);
		}
		tg_ctx_free(ctx);
	}
}

/* The threads that ran parts of a loop. Each thread's first part waits (up
 * to 1 s) until three threads have come, so that every thread the pool
 * would let claim a part gets one, whatever the load. */
typedef struct entrants {
	_Atomic int count;
	pthread_t who[TG_MAX_THREADS];
	pthread_mutex_t lock;
} entrants;

static void enter(void *arg, size_t lo, size_t hi)
{
	(void)lo;
	(void)hi;
	entrants *e = arg;
	pthread_mutex_lock(&e->lock);
	int n = atomic_load(&e->count);
	for (int i = 0; i < n; i++)
		if (pthread_equal(e->who[i], pthread_self())) {
			pthread_mutex_unlock(&e->lock);
			return;
		}
	e->who[n] = pthread_self();
	atomic_store(&e->count, n + 1);
	pthread_mutex_unlock(&e->lock);
	for (int k = 0; k < 1000 && atomic_load(&e->count) < 3; k++) {
		struct timespec ms = { 0, 1000000 };
		nanosleep(&ms, NULL);
	}
}

/* A context of 2 threads after one of 4 has grown the pool to 3 workers:
 * its loops run on 2 threads, the caller and one worker, not on every
 * worker the pool holds; and back at 4 threads the others take part again. */
static void a_loop_runs_on_its_contexts_threads_after_a_larger_pool(void **state)
{
	(void)state;
	tg_ctx *big = tg_ctx_new(1), *ctx = tg_ctx_new(1);
	assert_non_null(big);
	assert_non_null(ctx);
	tg_set_threads(big, 4);
	tg_set_threads(ctx, 2);
	static entrants e = { .lock = PTHREAD_MUTEX_INITIALIZER };
	tg_parallel_for(big, N, TG_PAR_MIN, 16, enter, &e); /* starts 3 workers */
	for (int rep = 0; rep < 3; rep++) {
		atomic_store(&e.count, 0);
		tg_parallel_for(ctx, N, TG_PAR_MIN, 16, enter, &e);
		if (atomic_load(&e.count) > 2)
			fail_msg("rep %d: a loop of a 2-thread context ran on %d threads", rep,
				 atomic_load(&e.count));
	}
	atomic_store(&e.count, 0);
	tg_parallel_for(big, N, TG_PAR_MIN, 16, enter, &e);
	assert_true(atomic_load(&e.count) >= 1 && atomic_load(&e.count) <= 4);
	tg_ctx_free(ctx);
	tg_ctx_free(big);
}

/* ---- contexts with threads, from threads ------------------------------------------ */

typedef struct concurrent {
	run r;
} concurrent;

static void *ops_thread(void *arg)
{
	concurrent *c = arg;
	ops_run(TG_F32, 2, &c->r);
	return NULL;
}

/* Two threads, each with a context of 2 threads, at once: one of them gets
 * the pool at a time and the other runs its loops itself; both get the
 * bits of one thread. */
static void two_threaded_contexts_at_once_give_the_bits_of_one_thread(void **state)
{
	(void)state;
	run one = { 0 };
	ops_run(TG_F32, 1, &one);
	concurrent c[2] = { 0 };
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, ops_thread, &c[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 2; i++) {
		assert_same_bits(&one, &c[i].r, "concurrent f32 ops");
		free(c[i].r.v);
	}
	free(one.v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_split_loop_runs_on_two_threads_and_covers_each_index_once),
		cmocka_unit_test(many_threads_cover_each_index_once),
		cmocka_unit_test(a_loop_runs_on_its_contexts_threads_after_a_larger_pool),
		cmocka_unit_test(elementwise_reduction_and_row_ops_give_the_bits_of_one_thread),
		cmocka_unit_test(batch_and_layer_norm_give_the_bits_of_one_thread),
		cmocka_unit_test(max_splits_keep_the_first_of_ties_and_nans),
		cmocka_unit_test(short_rows_and_narrow_columns_expand_by_index),
		cmocka_unit_test(every_optimizer_update_gives_the_bits_of_one_thread),
		cmocka_unit_test(a_batch_gathered_by_two_threads_is_the_rows_and_labels),
		cmocka_unit_test(targets_gathered_by_two_threads_are_the_rows),
		cmocka_unit_test(a_long_sum_is_exact_where_it_can_be),
		cmocka_unit_test(narrow_column_sums_are_exact_where_they_can_be),
		cmocka_unit_test(sum_to_split_by_the_axis_it_keeps_gives_the_sums_of_one_thread),
		cmocka_unit_test(two_threaded_contexts_at_once_give_the_bits_of_one_thread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
