/*
 * test_ops.c - forward values of the reductions (ops/reduce.c), the matrix
 * ops (ops/matrix.c), the indexing ops (ops/index.c) and the selecting ops
 * (ops/select.c) against hand-computed values and hand-written loops, in f64
 * and f32, up to 8 dimensions; a few local gradients with a known answer
 * (max's tie rule, NaN routing, pick's one-hot, where and clamp's masks);
 * the errors these ops report.
 * Gradients in general are checked numerically by the op table's test.
 */
#include "../engine/test_util.h"
#include "internal.h"

#include <float.h>

/* t's shape must be (ndim, shape). */
static void check_shape(const tg_tensor *t, int ndim, const int64_t *shape)
{
	char got[64];
	assert_non_null(t);
	tg_shape_str(t, got, sizeof got);
	if (tg_ndim(t) != ndim)
		fail_msg("shape %s has %d dimensions, expected %d", got, tg_ndim(t), ndim);
	for (int i = 0; i < ndim; i++)
		if (tg_shape(t)[i] != shape[i])
			fail_msg("shape %s: dimension %d is %lld, expected %lld", got, i,
				 (long long)tg_shape(t)[i], (long long)shape[i]);
}

/* t's values (flat) must be want[0..n) within tol. */
static void check_values(const tg_tensor *t, const double *want, size_t n, double tol)
{
	assert_non_null(t);
	if (tg_numel(t) != n)
		fail_msg("%zu elements, expected %zu", tg_numel(t), n);
	for (size_t i = 0; i < n; i++) {
		double got = tg_get(t, i);
		if (!(fabs(got - want[i]) <= tol))
			fail_msg("element %zu = %.15g, expected %.15g (tolerance %g)", i, got,
				 want[i], tol);
	}
}

static int setup(void **state)
{
	*state = tg_ctx_new(1);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	tg_ctx_free(*state);
	return 0;
}

/* x (2,3,4) with x[i] = i, flat. */
static tg_tensor *iota_234(tg_ctx *ctx, tg_dtype dt)
{
	double v[24];
	for (int i = 0; i < 24; i++)
		v[i] = i;
	return tg_from_f64(ctx, dt, SHAPE(2, 3, 4), v);
}

/* x (2,3,4) with x[i] = 5 i mod 24, a permutation of 0..23:
 * [[[0,5,10,15],[20,1,6,11],[16,21,2,7]], [[12,17,22,3],[8,13,18,23],[4,9,14,19]]] */
static tg_tensor *shuffled_234(tg_ctx *ctx, tg_dtype dt)
{
	double v[24];
	for (int i = 0; i < 24; i++)
		v[i] = (5 * i) % 24;
	return tg_from_f64(ctx, dt, SHAPE(2, 3, 4), v);
}

/* ---- matmul ------------------------------------------------------------------ */

/* C = A B by the textbook triple loop, in double. */
static void matmul_ref(const double *A, const double *B, double *C, int n, int k, int m)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < m; j++) {
			double s = 0;
			for (int p = 0; p < k; p++)
				s += A[i * k + p] * B[p * m + j];
			C[i * m + j] = s;
		}
}

static void matmul_matches_a_hand_loop(tg_dtype dt, double tol)
{
	tg_ctx *ctx = tg_ctx_new(3);
	enum { N = 5, K = 7, M = 3 };
	double A[N * K], B[K * M], C[N * M];
	for (int i = 0; i < N * K; i++)
		A[i] = (double)((i * 7) % 11) - 5.0;
	for (int i = 0; i < K * M; i++)
		B[i] = 0.25 * (double)((i * 3) % 8) - 1.0;
	matmul_ref(A, B, C, N, K, M);
	tg_tensor *a = tg_from_f64(ctx, dt, SHAPE(N, K), A);
	tg_tensor *b = tg_from_f64(ctx, dt, SHAPE(K, M), B);
	tg_tensor *c = tg_matmul(a, b);
	assert_ctx_ok(ctx);
	check_shape(c, SHAPE(N, M));
	assert_int_equal(tg_dtype_of(c), dt);
	check_values(c, C, N * M, tol);
	tg_ctx_free(ctx);
}

static void matmul_f64_matches_a_hand_loop(void **state)
{
	(void)state;
	matmul_matches_a_hand_loop(TG_F64, 1e-12);
}

static void matmul_f32_matches_a_hand_loop(void **state)
{
	(void)state;
	/* the inputs and products are exact in f32 (quarters times small ints) */
	matmul_matches_a_hand_loop(TG_F32, 1e-5);
}

static void matmul_of_a_2x2_gives_the_hand_product(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = tg_from_f64(ctx, TG_F64, SHAPE(2, 2), (double[]){ 1, 2, 3, 4 });
	tg_tensor *b = tg_from_f64(ctx, TG_F64, SHAPE(2, 2), (double[]){ 5, 6, 7, 8 });
	/* [1 2; 3 4] [5 6; 7 8] = [19 22; 43 50] */
	check_values(tg_matmul(a, b), (double[]){ 19, 22, 43, 50 }, 4, 0);
	assert_ctx_ok(ctx);
}

static void matmul_t_matches_matmul_of_transposed_copies_for_all_four_flags(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		for (int f = 0; f < 4; f++) {
			bool ta = f & 1, tb = f & 2;
			/* op(a) (3,4) @ op(b) (4,2) */
			tg_tensor *a = ta ? tg_randn(ctx, dt, SHAPE(4, 3), 0, 1)
					  : tg_randn(ctx, dt, SHAPE(3, 4), 0, 1);
			tg_tensor *b = tb ? tg_randn(ctx, dt, SHAPE(2, 4), 0, 1)
					  : tg_randn(ctx, dt, SHAPE(4, 2), 0, 1);
			tg_tensor *want = tg_matmul(ta ? tg_transpose(a) : a,
						    tb ? tg_transpose(b) : b);
			tg_tensor *got = tg_matmul_t(a, ta, b, tb);
			assert_ctx_ok(ctx);
			check_shape(got, SHAPE(3, 2));
			double w[6];
			assert_int_equal(tg_copy_to_f64(want, w, 6), 0);
			print_message("flags ta=%d tb=%d, %s\n", ta, tb,
				      dt == TG_F64 ? "f64" : "f32");
			check_values(got, w, 6, dt == TG_F64 ? 1e-12 : 1e-5);
		}
	}
}

static void matmul_rejects_mismatched_inner_sizes(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = tg_zeros(ctx, TG_F64, SHAPE(2, 3));
	tg_tensor *b = tg_zeros(ctx, TG_F64, SHAPE(2, 3));
	assert_null(tg_matmul(a, b));
	assert_error(ctx, TG_ESHAPE, "tg_matmul: (2,3) @ (2,3): inner sizes 3 and 2 differ");
	/* the error stays and the next op computes nothing */
	assert_null(tg_add(a, b));
	assert_error(ctx, TG_ESHAPE, "tg_matmul: (2,3) @ (2,3): inner sizes 3 and 2 differ");
}

static void matmul_rejects_inputs_that_are_not_2d(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = tg_zeros(ctx, TG_F64, SHAPE(2, 3, 4));
	tg_tensor *b = tg_zeros(ctx, TG_F64, SHAPE(4, 5));
	assert_null(tg_matmul(a, b));
	assert_error(ctx, TG_ESHAPE, "(2,3,4) @ (4,5)");
}

/* ---- transpose, reshape ---------------------------------------------------------- */

static void transpose_swaps_rows_and_columns(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_from_f64(ctx, TG_F32, SHAPE(2, 3), (double[]){ 1, 2, 3, 4, 5, 6 });
	tg_tensor *y = tg_transpose(x);
	assert_ctx_ok(ctx);
	check_shape(y, SHAPE(3, 2));
	check_values(y, (double[]){ 1, 4, 2, 5, 3, 6 }, 6, 0);
}

static void transpose_of_a_large_matrix_matches_a_hand_loop(void **state)
{
	tg_ctx *ctx = *state;
	enum { N = 70, M = 45 }; /* not multiples of any tile size */
	tg_tensor *x = tg_randn(ctx, TG_F64, SHAPE(N, M), 0, 1);
	tg_tensor *y = tg_transpose(x);
	assert_ctx_ok(ctx);
	const double *X = tg_data(x), *Y = tg_data(y);
	for (int i = 0; i < N; i++)
		for (int j = 0; j < M; j++)
			if (Y[j * N + i] != X[i * M + j])
				fail_msg("y[%d,%d] = %g, x[%d,%d] = %g", j, i, Y[j * N + i], i, j,
					 X[i * M + j]);
}

static void reshape_infers_the_minus_one_entry(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota_234(ctx, TG_F64);
	tg_tensor *y = tg_reshape(x, SHAPE(-1, 4));
	assert_ctx_ok(ctx);
	check_shape(y, SHAPE(6, 4));
	double want[24];
	for (int i = 0; i < 24; i++)
		want[i] = i;
	check_values(y, want, 24, 0);
	check_shape(tg_reshape(x, SHAPE(2, -1)), SHAPE(2, 12));
	check_shape(tg_reshape(tg_sum(x), SHAPE(1, 1)), SHAPE(1, 1));
	check_shape(tg_reshape(tg_scalar(ctx, TG_F64, 2), SHAPE(-1, 1)), SHAPE(1, 1));
	assert_ctx_ok(ctx);
}

static void reshape_rejects_a_shape_of_another_size_naming_both(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(2, 3));
	assert_null(tg_reshape(x, SHAPE(4, -1)));
	assert_error(ctx, TG_ESHAPE, "tg_reshape: cannot reshape (2,3) (6 elements) to (4,-1)");
	tg_clear_error(ctx);
	assert_null(tg_reshape(x, SHAPE(-1, -1)));
	assert_error(ctx, TG_ESHAPE, "at most one may be -1");
	tg_clear_error(ctx);
	assert_null(tg_reshape(x, 0, NULL));
	assert_error(ctx, TG_ESHAPE, "tg_reshape: cannot reshape (2,3) (6 elements) to ()");
}

/* ---- reductions ------------------------------------------------------------------ */

static void sum_and_mean_of_all_elements_give_scalars(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *x = iota_234(ctx, dt);
		tg_tensor *s = tg_sum(x), *m = tg_mean(x);
		assert_ctx_ok(ctx);
		check_shape(s, 0, NULL);
		check_shape(m, 0, NULL);
		assert_near(tg_item(s), 276, 0);    /* 0 + 1 + ... + 23 */
		assert_near(tg_item(m), 11.5, 0);
	}
}

static void sums_of_f32_accumulate_in_double(void **state)
{
	tg_ctx *ctx = *state;
	/* in float arithmetic 1e8 + 1 == 1e8, so a float accumulator loses the ones */
	double v[10] = { 1e8, 1, 1, 1, 1, 1, 1, 1, 1, -1e8 };
	tg_tensor *x = tg_from_f64(ctx, TG_F32, SHAPE(10), v);
	assert_near(tg_item(tg_sum(x)), 8, 0);
	assert_near(tg_get(tg_sum_axis(tg_reshape(x, SHAPE(1, 10)), 1, false), 0), 8, 0);
	assert_near(tg_item(tg_sum_to(x, 0, NULL)), 8, 0);
	assert_ctx_ok(ctx);
}

/* A run's sum as tg_sum_run documents it: X[k] into lane k % 16 of
 * doubles from +0, lane k + 8 added to lane k, the eight added pairwise,
 * and 0 + that, rounded to the dtype. */
static double lanes_sum(const double *x, int64_t n, tg_dtype dt)
{
	double l[16] = { 0 }, h[8];
	for (int64_t k = 0; k < n; k++)
		l[k % 16] += dt == TG_F32 ? (double)(float)x[k] : x[k];
	for (int k = 0; k < 8; k++)
		h[k] = l[k] + l[k + 8];
	double s = 0.0 + (((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7])));
	return dt == TG_F32 ? (double)(float)s : s;
}

/* Sums along a last axis of 1 to 20 (the short runs of 8 or fewer, a
 * tail alone, lanes and a tail) have the bits of the lanes' order, on
 * terms of mixed magnitudes where another order rounds differently; the
 * gradient, each row's dout repeated along the axis, is exact. */
static void sums_along_a_short_last_axis_add_in_the_lanes_order(void **state)
{
	tg_ctx *ctx = *state;
	enum { ROWS = 37, NMAX = 20 };
	static double v[ROWS * NMAX], want[ROWS], d[ROWS], wg[ROWS * NMAX];
	for (int i = 0; i < ROWS * NMAX; i++)
		v[i] = (double)((i * 7919) % 1000 - 500) * pow(10, i % 7 - 3) + 1.0 / 3;
	for (int r = 0; r < ROWS; r++)
		d[r] = r % 5 - 2.25;
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int64_t n = 1; n <= NMAX; n++) {
			tg_tensor *x = tg_param(tg_from_f64(ctx, dt, SHAPE(ROWS, n), v));
			tg_tensor *s = tg_sum_axis(x, 1, false);
			tg_tensor *dout = tg_from_f64(ctx, dt, SHAPE(ROWS), d);
			assert_int_equal(tg_backward(tg_sum(tg_mul(s, dout))), 0);
			for (int r = 0; r < ROWS; r++) {
				want[r] = lanes_sum(v + r * n, n, (tg_dtype)dt);
				for (int64_t k = 0; k < n; k++)
					wg[r * n + k] = d[r];
			}
			check_values(s, want, ROWS, 0);
			check_values(tg_grad(x), wg, (size_t)(ROWS * n), 0);
			tg_reset(ctx);
		}
}

static void max_of_all_elements_is_the_largest(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *m = tg_max(shuffled_234(ctx, dt));
		assert_ctx_ok(ctx);
		check_shape(m, 0, NULL);
		assert_near(tg_item(m), 23, 0);
	}
}

static void sum_axis_sums_each_axis_with_and_without_keepdim(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *x = iota_234(ctx, dt);
		double w0[12], w1[8], w2[6];
		for (int j = 0; j < 3; j++)
			for (int k = 0; k < 4; k++)
				w0[j * 4 + k] = (4 * j + k) + (12 + 4 * j + k);
		for (int i = 0; i < 2; i++)
			for (int k = 0; k < 4; k++)
				w1[i * 4 + k] = 36 * i + 12 + 3 * k; /* sum over j of 12i+4j+k */
		for (int i = 0; i < 2; i++)
			for (int j = 0; j < 3; j++)
				w2[i * 3 + j] = 48 * i + 16 * j + 6; /* sum over k of 12i+4j+k */
		tg_tensor *s0 = tg_sum_axis(x, 0, false), *s0k = tg_sum_axis(x, 0, true);
		tg_tensor *s1 = tg_sum_axis(x, 1, false), *s1k = tg_sum_axis(x, -2, true);
		tg_tensor *s2 = tg_sum_axis(x, -1, false), *s2k = tg_sum_axis(x, 2, true);
		assert_ctx_ok(ctx);
		check_shape(s0, SHAPE(3, 4));
		check_shape(s0k, SHAPE(1, 3, 4));
		check_shape(s1, SHAPE(2, 4));
		check_shape(s1k, SHAPE(2, 1, 4));
		check_shape(s2, SHAPE(2, 3));
		check_shape(s2k, SHAPE(2, 3, 1));
		check_values(s0, w0, 12, 0);
		check_values(s0k, w0, 12, 0);
		check_values(s1, w1, 8, 0);
		check_values(s1k, w1, 8, 0);
		check_values(s2, w2, 6, 0);
		check_values(s2k, w2, 6, 0);
	}
}

/* Step memory a backward of sum(sum_axis(a, axis) * v) + sum(b * w) makes,
 * a and b parameters whose gradient buffers exist already; a's gradient
 * into ga. */
static size_t axis_sum_backward_bytes(tg_ctx *ctx, tg_tensor *a, tg_tensor *b, int axis,
				      tg_tensor *v, tg_tensor *w, double *ga)
{
	/* recorded first, so that its backward comes after b * w's */
	tg_tensor *s = tg_sum(tg_mul(tg_sum_axis(a, axis, false), v));
	tg_tensor *l = tg_add(s, tg_sum(tg_mul(b, w)));
	size_t before = tg_arena_used(ctx);
	assert_int_equal(tg_backward(l), 0);
	size_t used = tg_arena_used(ctx) - before;
	for (size_t i = 0; ga && i < tg_numel(a); i++)
		ga[i] = tg_get(tg_grad(a), (int64_t)i);
	tg_reset(ctx);
	tg_zero_grad(a);
	tg_zero_grad(b);
	return used;
}

/* An axis's gradient is added straight into the gradient x holds already
 * (x - mean(x) gives x two): no step tensor of x's size for the expanded
 * gradient, as when the two gradients go to two parameters; each element
 * is held + expanded, the bits of the sum of the two tensors. */
static void an_axis_gradient_adds_into_the_held_one(void **state)
{
	tg_ctx *ctx = *state;
	const int64_t sh[3] = { 6, 40, 33 };
	for (int t = 1; t <= 2; t++) {
		tg_set_threads(ctx, t);
		for (int dt = TG_F32; dt <= TG_F64; dt++)
			for (int axis = 0; axis < 3; axis++) {
				tg_tensor *x = tg_param(tg_randn(ctx, dt, 3, sh, 0, 1));
				tg_tensor *z = tg_param(tg_randn(ctx, dt, 3, sh, 0, 1));
				tg_tensor *w = tg_keep(tg_randn(ctx, dt, 3, sh, 0, 1));
				int64_t vs[2], k = 0;
				for (int i = 0; i < 3; i++)
					if (i != axis)
						vs[k++] = sh[i];
				tg_tensor *v = tg_keep(tg_randn(ctx, dt, 2, vs, 0, 1));
				size_t n = tg_numel(x);
				double *g = malloc(n * sizeof *g);
				assert_non_null(g);
				axis_sum_backward_bytes(ctx, x, z, axis, v, w, NULL);
				size_t two = axis_sum_backward_bytes(ctx, x, z, axis, v, w, NULL);
				size_t one = axis_sum_backward_bytes(ctx, x, x, axis, v, w, g);
				if (one != two)
					fail_msg("axis %d, %d threads: the backward into one parameter "
						 "made %zu bytes, into two %zu", axis, t, one, two);
				int64_t inner = 1;
				for (int i = axis + 1; i < 3; i++)
					inner *= sh[i];
				for (size_t i = 0; i < n; i++) {
					size_t o = i / (size_t)(inner * sh[axis]);
					size_t vi = o * (size_t)inner + i % (size_t)inner;
					double a = tg_get(w, (int64_t)i), b = tg_get(v, (int64_t)vi);
					double want = dt == TG_F32 ? (double)((float)a + (float)b) : a + b;
					if (g[i] != want)
						fail_msg("axis %d, element %zu: %.17g, not %.17g", axis,
							 i, g[i], want);
				}
				free(g);
			}
	}
	tg_set_threads(ctx, 1);
	assert_ctx_ok(ctx);
}

static void mean_axis_divides_by_the_axis_length(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *x = iota_234(ctx, dt);
		tg_tensor *m0 = tg_mean_axis(x, 0, false);
		tg_tensor *m1 = tg_mean_axis(x, 1, true);
		tg_tensor *m2 = tg_mean_axis(x, -1, false);
		assert_ctx_ok(ctx);
		check_shape(m0, SHAPE(3, 4));
		check_shape(m1, SHAPE(2, 1, 4));
		check_shape(m2, SHAPE(2, 3));
		double w0[12], w1[8], w2[6];
		for (int j = 0; j < 12; j++)
			w0[j] = j + 6;              /* (j + (12 + j)) / 2 */
		for (int i = 0; i < 2; i++)
			for (int k = 0; k < 4; k++)
				w1[i * 4 + k] = 12 * i + 4 + k; /* mean of 12i + {0,4,8} + k */
		for (int r = 0; r < 6; r++)
			w2[r] = 4 * r + 1.5;        /* mean of 4r .. 4r+3 */
		check_values(m0, w0, 12, 1e-6);
		check_values(m1, w1, 8, 1e-6);
		check_values(m2, w2, 6, 1e-6);
	}
}

static void max_axis_takes_each_slices_largest_with_and_without_keepdim(void **state)
{
	tg_ctx *ctx = *state;
	/* hand-read from the layout written above shuffled_234 */
	const double w0[12] = { 12, 17, 22, 15, 20, 13, 18, 23, 16, 21, 14, 19 };
	const double w1[8] = { 20, 21, 10, 15, 12, 17, 22, 23 };
	const double w2[6] = { 15, 20, 21, 22, 23, 19 };
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *x = shuffled_234(ctx, dt);
		tg_tensor *m0 = tg_max_axis(x, 0, false), *m0k = tg_max_axis(x, -3, true);
		tg_tensor *m1 = tg_max_axis(x, 1, false), *m1k = tg_max_axis(x, 1, true);
		tg_tensor *m2 = tg_max_axis(x, 2, false), *m2k = tg_max_axis(x, -1, true);
		assert_ctx_ok(ctx);
		check_shape(m0, SHAPE(3, 4));
		check_shape(m0k, SHAPE(1, 3, 4));
		check_shape(m1, SHAPE(2, 4));
		check_shape(m1k, SHAPE(2, 1, 4));
		check_shape(m2, SHAPE(2, 3));
		check_shape(m2k, SHAPE(2, 3, 1));
		check_values(m0, w0, 12, 0);
		check_values(m0k, w0, 12, 0);
		check_values(m1, w1, 8, 0);
		check_values(m1k, w1, 8, 0);
		check_values(m2, w2, 6, 0);
		check_values(m2k, w2, 6, 0);
	}
}

/* The plain loop's max of a run: X[0], then each X[k] that beats it. */
static double plain_max(const double *X, int64_t n)
{
	double y = X[0];
	for (int64_t k = 1; k < n; k++)
		if (X[k] > y || (isnan(X[k]) && !isnan(y)))
			y = X[k];
	return y;
}

/* max_axis along rows long enough for the sixteen running maxima, with the
 * maximum anywhere (first, in a lane, in the tail), rows whose maximum is a
 * zero of either sign, -inf rows, and NaNs of two payloads: each row's max
 * has the plain loop's bits, f64 and f32, and the gradient goes in equal
 * shares to the elements that tie it. */
static void max_axis_rows_of(tg_ctx *ctx, int N);

static void max_axis_along_long_rows_has_the_bits_of_the_plain_loop(void **state)
{
	/* 53 and 203: sixteen scalars and a tail; from 256 the vectors, over
	 * whole blocks (256, 1024) or blocks, a part and a tail (300) */
	static const int lengths[] = { 53, 203, 256, 300, 1024 };
	for (size_t i = 0; i < LEN(lengths); i++)
		max_axis_rows_of(*state, lengths[i]);
}

static void max_axis_rows_of(tg_ctx *ctx, int N)
{
	enum { ROWS = 9 };
	double *v = malloc(ROWS * (size_t)N * sizeof *v);
	assert_non_null(v);
	uint64_t seed = 99;
	for (int i = 0; i < ROWS * N; i++) {
		seed = seed * 6364136223846793005u + 1442695040888963407u;
		v[i] = (double)(int)(seed >> 58) - 40; /* -40..23: many ties */
	}
	double nan1 = nan("1"), nan2 = nan("2");
	v[0 * N + 0] = 100;                       /* at the start */
	v[1 * N + 20] = 100;                      /* in a lane */
	v[2 * N + N - 1] = 100;                   /* in the tail */
	for (int j = 0; j < N; j++) {
		v[3 * N + j] = v[4 * N + j] = -1;
		v[5 * N + j] = -INFINITY;
	}
	/* maxima of zero: the first in a later lane than a zero of the other
	 * sign that comes after it */
	v[3 * N + 5] = -0.0, v[3 * N + 16] = 0.0, v[3 * N + 40] = 0.0;
	v[4 * N + 5] = 0.0, v[4 * N + 16] = -0.0, v[4 * N + 40] = -0.0;
	v[6 * N + 30] = nan1, v[6 * N + 40] = nan2; /* the first NaN wins (f64) */
	v[7 * N + 0] = nan2, v[7 * N + 17] = nan1;
	v[8 * N + 3] = 23, v[8 * N + 50] = 23;    /* a tie */
	if (N > 150)
		v[1 * N + 150] = 100; /* a tie in a later block */
	for (int dti = 0; dti < 2; dti++) {
		tg_dtype dt = dti ? TG_F32 : TG_F64;
		tg_tensor *x = tg_param(tg_from_f64(ctx, dt, SHAPE(ROWS, N), v));
		tg_tensor *m = tg_max_axis(x, 1, false);
		assert_int_equal(tg_backward(tg_sum(m)), 0);
		for (int r = 0; r < ROWS; r++) {
			double want = plain_max(v + r * N, N);
			double got = dti ? (double)((const float *)tg_data(m))[r]
					 : ((const double *)tg_data(m))[r];
			if (dti)
				want = (double)(float)want;
			if (memcmp(&got, &want, sizeof got))
				fail_msg("%s row %d: max %a, the plain loop's %a", dti ? "f32" : "f64",
					 r, got, want);
			if (isnan(want))
				continue; /* the gradient of a NaN max is checked elsewhere */
			int ties = 0;
			for (int j = 0; j < N; j++)
				ties += v[r * N + j] == want;
			double share = dti ? (double)(float)(1.0 / ties) : 1.0 / ties;
			for (int j = 0; j < N; j++)
				assert_true(tg_get(tg_grad(x), (size_t)(r * N + j)) ==
					    (v[r * N + j] == want ? share : 0));
		}
		tg_reset(ctx);
	}
	free(v);
}

static void max_axis_of_a_vector_drops_to_a_scalar(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *m = tg_max_axis(tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ -4, -1, -7 }),
				   0, false);
	assert_ctx_ok(ctx);
	check_shape(m, 0, NULL);
	assert_near(tg_item(m), -1, 0);
}

static void reductions_reject_an_axis_out_of_range(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota_234(ctx, TG_F64);
	assert_null(tg_sum_axis(x, 3, false));
	assert_error(ctx, TG_EARG, "tg_sum_axis: axis 3 is out of range for shape (2,3,4)");
	tg_clear_error(ctx);
	assert_null(tg_mean_axis(x, -4, true));
	assert_error(ctx, TG_EARG, "tg_mean_axis: axis -4 is out of range for shape (2,3,4)");
	tg_clear_error(ctx);
	assert_null(tg_max_axis(tg_scalar(ctx, TG_F64, 1), 0, false));
	assert_error(ctx, TG_EARG, "tg_max_axis: axis 0 is out of range for shape ()");
}

/* max_axis and its shares are split across the threads by slices, each
 * with its own scratch rows: on 1, 2 and 3 threads, along each axis of
 * (A,B,C) with many ties and a NaN, each max and each gradient (1/c of w's
 * entry at each of c tied maxima) is the plain loop's. */
static void max_axis_split_across_threads_matches_a_plain_loop(void **state)
{
	(void)state;
	enum { A = 6, B = 90, C = 130, N = A * B * C };
	const int64_t dims[3] = { A, B, C };
	double *xv = malloc(N * sizeof *xv), *wv = malloc(N * sizeof *wv);
	assert_true(xv && wv);
	for (int i = 0; i < N; i++) {
		xv[i] = (i * 7919) % 5;
		wv[i] = 0.25 + (i % 11) / 3.0;
	}
	xv[N / 3] = NAN;
	for (int threads = 1; threads <= 3; threads++)
		for (int axis = 0; axis < 3; axis++)
			for (int dt = TG_F32; dt <= TG_F64; dt++) {
				tg_ctx *ctx = tg_ctx_new(5);
				assert_non_null(ctx);
				tg_set_threads(ctx, threads);
				tg_tensor *x = tg_param(tg_from_f64(ctx, (tg_dtype)dt, SHAPE(A, B, C), xv));
				tg_tensor *y = tg_max_axis(x, axis, false);
				int64_t outer = 1, n = dims[axis], inner = 1;
				for (int k = 0; k < axis; k++)
					outer *= dims[k];
				for (int k = axis + 1; k < 3; k++)
					inner *= dims[k];
				tg_tensor *w = tg_from_f64(ctx, (tg_dtype)dt, tg_ndim(y), tg_shape(y), wv);
				assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
				assert_ctx_ok(ctx);
				const tg_tensor *g = tg_grad(x);
				for (int64_t o = 0; o < outer; o++)
					for (int64_t i = 0; i < inner; i++) {
						double m = -INFINITY;
						int64_t ties = 0;
						bool nan = false;
						for (int64_t k = 0; k < n; k++) {
							double e = xv[(o * n + k) * inner + i];
							nan |= e != e;
							m = e > m ? e : m;
						}
						for (int64_t k = 0; k < n; k++) {
							double e = xv[(o * n + k) * inner + i];
							ties += nan ? e != e : e == m;
						}
						double got = tg_get(y, (size_t)(o * inner + i));
						if (!(nan ? got != got : got == m))
							fail_msg("%d threads, axis %d: max (%lld,%lld) is %g, "
								 "expected %g",
								 threads, axis, (long long)o, (long long)i, got,
								 nan ? NAN : m);
						double d = wv[o * inner + i], share = 1.0 / (double)ties;
						if (dt == TG_F32)
							d = (float)d, share = (float)share;
						for (int64_t k = 0; k < n; k++) {
							size_t at = (size_t)((o * n + k) * inner + i);
							double e = xv[at];
							bool tie = nan ? e != e : e == m;
							double want = tie ? share * d : 0;
							if (dt == TG_F32)
								want = (float)want;
							if (tg_get(g, at) != want)
								fail_msg("%d threads, axis %d, %s: gradient at "
									 "%zu is %g, expected %g",
									 threads, axis,
									 tg_dtype_name((tg_dtype)dt), at,
									 tg_get(g, at), want);
						}
					}
				tg_ctx_free(ctx);
			}
	free(xv);
	free(wv);
}

static void max_splits_the_gradient_evenly_between_tied_maxima(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 3),
					    (double[]){ 1, 3, 3, 5, 2, 5 }));
	tg_tensor *y = tg_add(tg_max(x), tg_sum(tg_max_axis(x, 1, false)));
	assert_int_equal(tg_backward(y), 0);
	assert_ctx_ok(ctx);
	/* max: the two 5s take 1/2 each; max_axis: the two 3s of row 0 and the
	 * two 5s of row 1 take 1/2 each */
	check_values(tg_grad(x), (double[]){ 0, 0.5, 0.5, 1, 0, 1 }, 6, 0);
	/* three ties along axis 0 of a column take 1/3 each */
	tg_tensor *c =
	    tg_param(tg_from_f64(ctx, TG_F32, SHAPE(3, 2), (double[]){ 2, 1, 2, 0, 2, 1 }));
	assert_int_equal(tg_backward(tg_sum(tg_max_axis(c, 0, true))), 0);
	check_values(tg_grad(c), (double[]){ 1.0 / 3, 0.5, 1.0 / 3, 0, 1.0 / 3, 0.5 }, 6, 1e-7);
	assert_ctx_ok(ctx);
}

/* A plain backward routes max's dout in the shares' own pass; a recorded
 * one is where(shares, dout, 0) shares. Their gradients have the same
 * bits: ties of three, a NaN slice, zeros of both signs, and upstream
 * gradients negative, zero, infinite and NaN, for max and for max_axis
 * along the last axis (runs), a leading one and a middle one (strided),
 * f32 and f64. */
static void max_gradient_in_one_pass_has_the_bits_of_share_times_dout(void **state)
{
	tg_ctx *ctx = *state;
	static const double xv[4 * 6] = { 1,  3, 3, 3,	 -2, 0, NAN, 5,	   2, NAN, 1, 0,
					  -0.0, 0, -1, -0.0, 0, 0, 7,	 7, 7, 7,   7, 7 };
	static const double dv[8] = { -2.5, 0, INFINITY, NAN, 3, -0.0, 1.5, -4 };
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int form = 0; form < 4; form++) {
			void *got = NULL;
			for (int recorded = 0; recorded < 2; recorded++) {
				tg_tensor *x = form == 3 ? tg_param(tg_from_f64(ctx, dt, SHAPE(2, 3, 4), xv))
							 : tg_param(tg_from_f64(ctx, dt, SHAPE(4, 6), xv));
				/* form 0: max_axis(x, 1) (4) weighted by dv[0..4); 1:
				 * max_axis(x, 0) (6) by dv[0..6); 2: max(x) by dv[2]
				 * (inf); 3: the middle axis of (2,3,4), (2,4) by dv */
				tg_tensor *m = form == 0   ? tg_max_axis(x, 1, false)
					       : form == 1 ? tg_max_axis(x, 0, true)
					       : form == 2 ? tg_max(x)
							   : tg_max_axis(x, 1, false);
				int64_t k = tg_numel(m);
				tg_tensor *w = tg_from_f64(ctx, dt, 1, &k, form == 2 ? dv + 2 : dv);
				tg_tensor *y = tg_sum(tg_mul(tg_reshape(m, 1, &k), w));
				assert_int_equal(tg_backward_ex(y, NULL, recorded ? TG_CREATE_GRAPH : 0),
						 0);
				size_t bytes = 24 * (size_t)(dt == TG_F64 ? 8 : 4);
				if (!recorded) {
					got = malloc(bytes);
					assert_non_null(got);
					memcpy(got, tg_data(tg_grad(x)), bytes);
				} else if (memcmp(got, tg_data(tg_grad(x)), bytes)) {
					fail_msg("max form %d, %s: the one-pass gradient differs from "
						 "share * dout",
						 form, tg_dtype_name((tg_dtype)dt));
				}
				tg_reset(ctx);
			}
			free(got);
		}
	assert_ctx_ok(ctx);
}

static void max_of_a_slice_with_nan_is_nan_and_routes_to_the_nans(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *x = tg_param(tg_from_f64(ctx, dt, SHAPE(2, 4),
						    (double[]){ 1, NAN, 3, NAN, 4, 2, 9, 0 }));
		tg_tensor *m = tg_max(x);
		tg_tensor *rows = tg_max_axis(x, 1, false);
		assert_true(isnan(tg_item(m)));
		assert_true(isnan(tg_get(rows, 0)));
		assert_near(tg_get(rows, 1), 9, 0);
		assert_int_equal(tg_backward(tg_add(m, tg_sum(rows))), 0);
		/* row 0: its two NaNs split max's and max_axis's gradient; row 1: the 9
		 * takes max_axis's */
		check_values(tg_grad(x), (double[]){ 0, 1, 0, 1, 0, 0, 1, 0 }, 8, 0);
	}
	assert_ctx_ok(ctx);
}

/* max's backward routes dout by the maxima its forward wrote, its output:
 * an output changed in place since is refused, not routed by. */
static void max_refuses_an_output_changed_in_place(void **state)
{
	tg_ctx *ctx = *state;
	for (int all = 0; all <= 1; all++) {
		tg_tensor *x = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 3),
						    (double[]){ 1, 5, 2, 7, 3, 0 }));
		tg_tensor *m = all ? tg_max(x) : tg_max_axis(x, 1, false);
		((double *)tg_data_mut(m))[0] = 2; /* x's 2 would take the gradient */
		assert_int_equal(tg_backward(tg_sum(m)), -1);
		assert_error(ctx, TG_EVERSION,
			     all ? "the output of max was modified in place"
				 : "the output of max_axis was modified in place");
		tg_clear_error(ctx);
	}
}

/* ---- max along a middle axis of narrow rows ---------------------------------- */
/* A max along a middle axis with 1 to 15 columns after it reads each slice
 * as one run in tiles of lanes, lane j holding column j mod width; these
 * check it against the plain loop over each column, on every width around
 * that range. */

/* What slice kind k holds at row r, column i: 0 small integers (many
 * ties), 1 one value throughout, 2 NaNs of two payloads here and there, 3
 * zeros of both signs and negatives (a max of zero, its first one's sign),
 * 4 distinct values (no ties), 5 -inf and now and then a 1. */
static double narrow_value(uint64_t *seed, int kind, int64_t r, int64_t i)
{
	*seed = *seed * 6364136223846793005u + 1442695040888963407u;
	int u = (int)(*seed >> 59); /* 0..31 */
	switch (kind) {
	case 0:
		return u % 5 - 2;
	case 1:
		return 2.5;
	case 2:
		return u == 7 ? nan("1") : u == 9 ? nan("2") : u - 16;
	case 3:
		return u < 16 ? (u & 1 ? -0.0 : 0.0) : -(double)(u - 15);
	case 4:
		return (double)(int64_t)(*seed >> 40) / 4096.0 + (double)(r * 7 + i) / 8.0;
	default:
		return u == 0 ? 1 : -INFINITY;
	}
}

/* v rounded to dt */
static double in_dtype(int dt, double v)
{
	return dt == TG_F32 ? (double)(float)v : v;
}

/* x of shape (ndim) with slice o of kind (o + kind0) % 6, on a context of
 * threads: max_axis(x, axis) and x's gradient under the weights w of
 * sum(max * w) have the bits of the plain loop over each column (its max,
 * the first element to reach it; (1/c rounded) * w at its c ties, +0
 * elsewhere). */
static void narrow_case(int threads, int dt, int ndim, const int64_t *shape, int axis,
			bool keepdim, int kind0)
{
	int64_t outer = 1, n = shape[axis], inner = 1, numel = 1;
	for (int k = 0; k < ndim; k++) {
		outer *= k < axis ? shape[k] : 1;
		inner *= k > axis ? shape[k] : 1;
		numel *= shape[k];
	}
	double *xv = malloc((size_t)numel * sizeof *xv), *wv = malloc((size_t)(outer * inner) * sizeof *wv);
	assert_true(xv && wv);
	uint64_t seed = 7 + (uint64_t)(n * 31 + inner);
	for (int64_t o = 0; o < outer; o++)
		for (int64_t r = 0; r < n; r++)
			for (int64_t i = 0; i < inner; i++)
				xv[(o * n + r) * inner + i] =
				    narrow_value(&seed, (int)((o + kind0) % 6), r, i);
	for (int64_t i = 0; i < outer * inner; i++)
		wv[i] = i % 9 == 4 ? -0.0 : (double)(i % 7) - 3.25;
	tg_ctx *ctx = tg_ctx_new(3);
	assert_non_null(ctx);
	tg_set_threads(ctx, threads);
	tg_tensor *x = tg_param(tg_from_f64(ctx, (tg_dtype)dt, ndim, shape, xv));
	tg_tensor *y = tg_max_axis(x, axis, keepdim);
	tg_tensor *w = tg_from_f64(ctx, (tg_dtype)dt, tg_ndim(y), tg_shape(y), wv);
	assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
	assert_ctx_ok(ctx);
	const tg_tensor *g = tg_grad(x);
	for (int64_t o = 0; o < outer; o++)
		for (int64_t i = 0; i < inner; i++) {
			const int64_t at0 = o * n * inner + i;
			double m = tg_get(x, (size_t)at0); /* the plain loop, on x's values */
			for (int64_t r = 1; r < n; r++) {
				double e = tg_get(x, (size_t)(at0 + r * inner));
				if (e > m || (isnan(e) && !isnan(m)))
					m = e;
			}
			int64_t ties = 0;
			for (int64_t r = 0; r < n; r++) {
				double e = tg_get(x, (size_t)(at0 + r * inner));
				ties += e == m || (isnan(e) && isnan(m));
			}
			double got = tg_get(y, (size_t)(o * inner + i));
			if (memcmp(&got, &m, sizeof m))
				fail_msg("%s, shape (%lld,%lld,%lld), %d threads, slice %lld column "
					 "%lld: max %a, the plain loop's %a",
					 tg_dtype_name((tg_dtype)dt), (long long)outer, (long long)n,
					 (long long)inner, threads, (long long)o, (long long)i, got, m);
			double d = tg_get(w, (size_t)(o * inner + i));
			double share = in_dtype(dt, 1.0 / (double)ties);
			for (int64_t r = 0; r < n; r++) {
				const size_t at = (size_t)(at0 + r * inner);
				double e = tg_get(x, at);
				bool tie = e == m || (isnan(e) && isnan(m));
				double want = tie ? in_dtype(dt, share * d) : 0;
				double gv = tg_get(g, at);
				if (memcmp(&gv, &want, sizeof want))
					fail_msg("%s, shape (%lld,%lld,%lld), %d threads, slice %lld "
						 "column %lld, row %lld (%g; %lld ties of %g): gradient "
						 "%a, expected %a",
						 tg_dtype_name((tg_dtype)dt), (long long)outer,
						 (long long)n, (long long)inner, threads, (long long)o,
						 (long long)i, (long long)r, e, (long long)ties, m, gv,
						 want);
			}
		}
	tg_ctx_free(ctx);
	free(xv);
	free(wv);
}

/* Widths 1 to 17 (the tiles, the lanes' fold and the rows left after the
 * last whole tile) along a middle axis of 1, 2, 7 and 1024 rows, two
 * leading axes, with and without keepdim, f32 and f64: every slice kind
 * above once in each tensor. */
static void max_axis_over_narrow_rows_has_the_bits_of_the_plain_loop(void **state)
{
	(void)state;
	static const int64_t rows[] = { 1, 2, 7, 1024 };
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int64_t wd = 1; wd <= 17; wd++)
			for (size_t k = 0; k < LEN(rows); k++)
				narrow_case(1, dt, SHAPE(2, 3, rows[k], wd), 2, wd % 2 != 0, 0);
}

/* A max over the leading axis of (8192, w) has one slice: from 32768
 * elements on it is split by blocks of rows on 2 and 3 threads, whose
 * maxima and ties are folded in order. Each slice kind, widths 1 to 17. */
static void max_axis_over_narrow_rows_split_by_blocks_has_the_bits_of_the_plain_loop(void **state)
{
	(void)state;
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int64_t wd = 1; wd <= 17; wd++)
			for (int kind = 0; kind < 6; kind++)
				narrow_case(2 + kind % 2, dt, SHAPE(8192, wd), 0, false, kind);
}

static tg_tensor *f_max_axis_1(tg_tensor *const *in, void *user)
{
	(void)user;
	return tg_max_axis(in[0], 1, false);
}

/* Without ties, max_axis over narrow rows has the gradient central
 * differences give, f64, widths 1 to 17 along 1, 2 and 7 rows. */
static void max_axis_over_narrow_rows_has_the_gradient_of_central_differences(void **state)
{
	tg_ctx *ctx = *state;
	static const int64_t rows[] = { 1, 2, 7 };
	for (int64_t wd = 1; wd <= 17; wd++)
		for (size_t k = 0; k < LEN(rows); k++) {
			tg_tensor *x = tg_randn(ctx, TG_F64, SHAPE(2, rows[k], wd), 0, 1);
			tg_gradcheck_result res;
			if (tg_gradcheck(ctx, f_max_axis_1, NULL, 1, &x, NULL, &res))
				fail_msg("(2,%lld,%lld): element %zu analytic %g, numeric %g",
					 (long long)rows[k], (long long)wd, res.first.index,
					 res.first.analytic, res.first.numeric);
			assert_ctx_ok(ctx);
			tg_reset(ctx);
		}
}

/* ---- up to 8 dimensions, against loops over multi-indices ---------------------------- */

/* x (2,1,3,1,2,2,1,2): 48 distinct values, 7 i mod 48 - 20, a permutation. */
static const int64_t X8[8] = { 2, 1, 3, 1, 2, 2, 1, 2 };

static tg_tensor *x8(tg_ctx *ctx, tg_dtype dt)
{
	double v[48];
	for (int i = 0; i < 48; i++)
		v[i] = (7 * i) % 48 - 20;
	return tg_from_f64(ctx, dt, 8, X8, v);
}

/* The multi-index of flat index f in shape (nd). */
static void unflatten(int nd, const int64_t *shape, int64_t f, int64_t *idx)
{
	for (int k = nd - 1; k >= 0; k--) {
		idx[k] = f % shape[k];
		f /= shape[k];
	}
}

/* The flat index in a tensor of shape (nd) that broadcasts to a shape of
 * nout dimensions of the element at out-index idx: axes right-aligned, an
 * axis of size 1 read at 0. */
static int64_t source(int nout, const int64_t *idx, int nd, const int64_t *shape)
{
	int64_t f = 0;
	for (int k = 0; k < nd; k++) {
		int64_t i = idx[nout - nd + k];
		f = f * shape[k] + (shape[k] == 1 ? 0 : i);
	}
	return f;
}

static void reductions_of_8d_tensors_match_loops_over_every_axis(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *x = x8(ctx, dt);
		for (int a = 0; a < 8; a++) {
			int64_t ks[8], idx[8];
			memcpy(ks, X8, sizeof ks);
			ks[a] = 1;
			tg_tensor *s = tg_sum_axis(x, a, true), *m = tg_mean_axis(x, a, true);
			tg_tensor *mx = tg_max_axis(x, a, true);
			tg_tensor *dropped = tg_max_axis(x, a - 8, false); /* axis from the end */
			assert_ctx_ok(ctx);
			check_shape(s, 8, ks);
			int64_t ds[7];
			for (int k = 0, j = 0; k < 8; k++)
				if (k != a)
					ds[j++] = X8[k];
			check_shape(dropped, 7, ds);
			size_t n = tg_numel(s);
			double ws[48], wm[48], wx[48];
			for (size_t o = 0; o < n; o++) {
				unflatten(8, ks, (int64_t)o, idx);
				ws[o] = 0;
				wx[o] = -INFINITY;
				for (idx[a] = 0; idx[a] < X8[a]; idx[a]++) {
					double v = tg_get(x, (size_t)source(8, idx, 8, X8));
					ws[o] += v;
					wx[o] = fmax(wx[o], v);
				}
				wm[o] = ws[o] / (double)X8[a];
			}
			check_values(s, ws, n, 0);
			check_values(m, wm, n, 1e-6);
			check_values(mx, wx, n, 0);
			check_values(dropped, wx, n, 0);
		}
	}
}

/* sum_to from, and expand to, the 8-D shape X8, for targets of several ranks */
static void sum_to_and_expand_of_8d_tensors_match_loops(void **state)
{
	tg_ctx *ctx = *state;
	static const struct {
		int nd;
		int64_t shape[8];
	} small[] = {
		{ 6, { 3, 1, 2, 1, 1, 2 } },
		{ 8, { 2, 1, 1, 1, 2, 1, 1, 1 } },
		{ 1, { 2 } },
		{ 3, { 2, 1, 1 } },
		{ 0, { 0 } },
	};
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *x = x8(ctx, dt);
		for (size_t c = 0; c < LEN(small); c++) {
			int nd = small[c].nd;
			const int64_t *sh = small[c].shape;
			tg_tensor *s = tg_sum_to(x, nd, sh);
			tg_tensor *e = tg_expand(s, 8, X8);
			assert_ctx_ok(ctx);
			check_shape(s, nd, sh);
			check_shape(e, 8, X8);
			double ws[48] = { 0 }, we[48];
			int64_t idx[8];
			for (int64_t i = 0; i < 48; i++) {
				unflatten(8, X8, i, idx);
				ws[source(8, idx, nd, sh)] += tg_get(x, (size_t)i);
			}
			for (int64_t i = 0; i < 48; i++) {
				unflatten(8, X8, i, idx);
				we[i] = ws[source(8, idx, nd, sh)];
			}
			check_values(s, ws, tg_numel(s), 0);
			check_values(e, we, 48, 0);
		}
	}
}

static void binary_ops_broadcast_8d_shapes_like_loops(void **state)
{
	tg_ctx *ctx = *state;
	static const int64_t B6[6] = { 3, 2, 1, 2, 1, 1 };
	static const int64_t OUT[8] = { 2, 1, 3, 2, 2, 2, 1, 2 };
	double bv[12];
	for (int i = 0; i < 12; i++)
		bv[i] = 0.5 * i - 2.25;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *a = x8(ctx, dt), *b = tg_from_f64(ctx, dt, 6, B6, bv);
		tg_tensor *ys[4] = { tg_add(a, b), tg_mul(b, a), tg_maximum(a, b), tg_sub(b, a) };
		assert_ctx_ok(ctx);
		for (int k = 0; k < 4; k++) {
			double want[96];
			int64_t idx[8];
			for (int64_t i = 0; i < 96; i++) {
				unflatten(8, OUT, i, idx);
				double x = tg_get(a, (size_t)source(8, idx, 8, X8));
				double y = tg_get(b, (size_t)source(8, idx, 6, B6));
				want[i] = k == 0   ? x + y
					  : k == 1 ? y * x
					  : k == 2 ? fmax(x, y)
						   : y - x;
			}
			check_shape(ys[k], 8, OUT);
			check_values(ys[k], want, 96, 0);
		}
		/* a gradient summed back over the broadcast axes of b */
		tg_tensor *pb = tg_param(b);
		assert_int_equal(tg_backward(tg_sum(tg_mul(a, pb))), 0);
		double want[12] = { 0 };
		int64_t idx[8];
		for (int64_t i = 0; i < 96; i++) {
			unflatten(8, OUT, i, idx);
			want[source(8, idx, 6, B6)] += tg_get(a, (size_t)source(8, idx, 8, X8));
		}
		check_values(tg_grad(pb), want, 12, 0);
	}
	assert_ctx_ok(ctx);
}

static void reshape_goes_to_8d_and_back(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota_234(ctx, TG_F64);
	tg_tensor *y = tg_reshape(x, SHAPE(1, 2, 1, 3, 1, 2, 2, 1));
	tg_tensor *z = tg_reshape(y, SHAPE(-1));
	assert_ctx_ok(ctx);
	check_shape(y, SHAPE(1, 2, 1, 3, 1, 2, 2, 1));
	check_shape(z, SHAPE(24));
	double want[24];
	for (int i = 0; i < 24; i++)
		want[i] = i;
	check_values(z, want, 24, 0);
}

static void a_9d_shape_is_a_shape_error_naming_the_limit(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(2, 2));
	assert_null(tg_reshape(x, SHAPE(1, 1, 1, 1, 1, 1, 1, 2, 2)));
	assert_error(ctx, TG_ESHAPE, "tg_reshape: 9 dimensions; a tensor has 0 to 8");
	tg_clear_error(ctx);
	assert_null(tg_expand(x, SHAPE(1, 1, 1, 1, 1, 1, 1, 2, 2)));
	assert_error(ctx, TG_ESHAPE, "tg_expand: 9 dimensions; a tensor has 0 to 8");
	tg_clear_error(ctx);
	assert_null(tg_ones(ctx, TG_F32, SHAPE(1, 1, 1, 1, 1, 1, 1, 2, 2)));
	assert_error(ctx, TG_ESHAPE, "tg_ones: 9 dimensions; a tensor has 0 to 8");
}

static void sum_to_sums_over_each_broadcast_pattern(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		/* x = [1 2 3; 4 5 6] */
		tg_tensor *x = tg_from_f64(ctx, dt, SHAPE(2, 3), (double[]){ 1, 2, 3, 4, 5, 6 });
		tg_tensor *scalar = tg_sum_to(x, 0, NULL);
		tg_tensor *row = tg_sum_to(x, SHAPE(3));
		tg_tensor *row_kept = tg_sum_to(x, SHAPE(1, 3));
		tg_tensor *column = tg_sum_to(x, SHAPE(2, 1));
		tg_tensor *one = tg_sum_to(x, SHAPE(1, 1));
		tg_tensor *same = tg_sum_to(x, SHAPE(2, 3));
		assert_ctx_ok(ctx);
		check_shape(scalar, 0, NULL);
		check_values(scalar, (double[]){ 21 }, 1, 0);
		check_shape(row, SHAPE(3));
		check_values(row, (double[]){ 5, 7, 9 }, 3, 0);
		check_shape(row_kept, SHAPE(1, 3));
		check_values(row_kept, (double[]){ 5, 7, 9 }, 3, 0);
		check_shape(column, SHAPE(2, 1));
		check_values(column, (double[]){ 6, 15 }, 2, 0);
		check_shape(one, SHAPE(1, 1));
		check_values(one, (double[]){ 21 }, 1, 0);
		check_values(same, (double[]){ 1, 2, 3, 4, 5, 6 }, 6, 0);
	}
}

static void sum_to_sums_leading_and_inner_axes_of_a_3d_tensor(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota_234(ctx, TG_F64);
	/* (3,1): sum over i and k of 12i+4j+k = (16j+6) + (48+16j+6) = 32j+60 */
	tg_tensor *s = tg_sum_to(x, SHAPE(3, 1));
	assert_ctx_ok(ctx);
	check_shape(s, SHAPE(3, 1));
	check_values(s, (double[]){ 60, 92, 124 }, 3, 0);
}

static void sum_to_rejects_a_shape_that_does_not_broadcast(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(2, 3));
	assert_null(tg_sum_to(x, SHAPE(2)));
	assert_error(ctx, TG_ESHAPE, "tg_sum_to: shape (2,) does not broadcast to x's shape (2,3)");
	tg_clear_error(ctx);
	assert_null(tg_sum_to(x, SHAPE(1, 2, 3)));
	assert_error(ctx, TG_ESHAPE, "(1,2,3)");
}

static void expand_repeats_along_broadcast_axes(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *col = tg_from_f64(ctx, TG_F32, SHAPE(2, 1), (double[]){ 1, 2 });
	tg_tensor *row = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, 2, 3 });
	tg_tensor *a = tg_expand(col, SHAPE(2, 3));
	tg_tensor *b = tg_expand(row, SHAPE(2, 2, 3));
	tg_tensor *c = tg_expand(tg_scalar(ctx, TG_F64, 7), SHAPE(2, 2));
	assert_ctx_ok(ctx);
	check_values(a, (double[]){ 1, 1, 1, 2, 2, 2 }, 6, 0);
	check_shape(b, SHAPE(2, 2, 3));
	check_values(b, (double[]){ 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3 }, 12, 0);
	check_values(c, (double[]){ 7, 7, 7, 7 }, 4, 0);
	assert_null(tg_expand(row, SHAPE(3, 2)));
	assert_error(ctx, TG_ESHAPE, "tg_expand: x's shape (3,) does not broadcast to (3,2)");
}

/* expand is split across the threads by elements from 32768 on, so a part
 * may start or end inside a row: on 1, 2 and 3 threads each element is its
 * source's (iota values name it), for runs that are copied, filled, long
 * and short, and for short rows tiled along the axes next to the last
 * (split by rows of x: more of them than threads, and fewer). */
static void expand_split_across_threads_takes_each_element_from_its_source(void **state)
{
	(void)state;
	static const struct {
		int nx, ny;
		int64_t x[4], y[4];
	} cases[] = {
		{ 1, 1, { 1 }, { 40001 } },		  /* one long fill */
		{ 2, 2, { 1, 300 }, { 200, 300 } },	  /* rows copied */
		{ 2, 2, { 200, 1 }, { 200, 300 } },	  /* rows filled */
		{ 3, 3, { 5, 1, 3001 }, { 5, 40, 3001 } }, /* long copies */
		{ 2, 3, { 1, 7 }, { 700, 9, 7 } },	  /* short copies, a new axis */
		{ 3, 3, { 300, 1, 8 }, { 300, 40, 8 } }, /* short rows tiled */
		{ 3, 3, { 7, 1, 255 }, { 7, 30, 255 } }, /* the longest tiled */
		{ 3, 3, { 2, 1, 100 }, { 2, 500, 100 } }, /* two rows, tiled long */
		{ 4, 4, { 5, 1, 1, 3 }, { 5, 4, 6, 3 } }, /* tiled along two axes */
		{ 4, 4, { 2, 3, 1, 5 }, { 2, 3, 7, 5 } }, /* rows of two axes tiled */
		{ 3, 4, { 4, 1, 6 }, { 3, 4, 5, 6 } }, /* a new axis too: walked */
	};
	for (size_t c = 0; c < LEN(cases); c++)
		for (int threads = 1; threads <= 3; threads++)
			for (int dt = TG_F32; dt <= TG_F64; dt++) {
				tg_ctx *ctx = tg_ctx_new(3);
				assert_non_null(ctx);
				tg_set_threads(ctx, threads);
				const int nx = cases[c].nx, ny = cases[c].ny;
				const int64_t *xs = cases[c].x, *ys = cases[c].y;
				size_t n = 1, m = 1;
				for (int i = 0; i < nx; i++)
					n *= (size_t)xs[i];
				for (int i = 0; i < ny; i++)
					m *= (size_t)ys[i];
				double *v = malloc(n * sizeof *v);
				assert_non_null(v);
				for (size_t i = 0; i < n; i++)
					v[i] = 1.0 + (double)i;
				tg_tensor *x = tg_from_f64(ctx, (tg_dtype)dt, nx, xs, v);
				tg_tensor *y = tg_expand(x, ny, ys);
				assert_ctx_ok(ctx);
				for (size_t e = 0; e < m; e++) {
					/* the source: each index of y mod x's size, right-aligned */
					size_t src = 0, rest = e, stride = 1;
					for (int k = ny - 1, kx = nx - 1; k >= 0; k--, kx--) {
						size_t i = rest % (size_t)ys[k];
						rest /= (size_t)ys[k];
						if (kx >= 0 && xs[kx] != 1)
							src += i * stride;
						if (kx >= 0)
							stride *= (size_t)xs[kx];
					}
					if (tg_get(y, e) != v[src])
						fail_msg("case %zu, %s, %d threads: element %zu is %g, "
							 "expected %g",
							 c, tg_dtype_name((tg_dtype)dt), threads, e,
							 tg_get(y, e), v[src]);
				}
				free(v);
				tg_ctx_free(ctx);
			}
}

/* An expand of one element (a sum's gradient) is read as its one value by
 * the binary kernels and the fused backward ops; a change through
 * tg_data_mut makes them read every element again. On 1 and 2 threads, in
 * either operand's place. */
static void a_uniform_expand_is_read_as_one_value_until_it_changes(void **state)
{
	(void)state;
	enum { N = 40000 };
	for (int threads = 1; threads <= 2; threads++)
		for (int dt = TG_F32; dt <= TG_F64; dt++) {
			tg_ctx *ctx = tg_ctx_new(3);
			tg_set_threads(ctx, threads);
			tg_tensor *x = tg_randn(ctx, (tg_dtype)dt, SHAPE(N), 0, 1);
			tg_tensor *e = tg_expand(tg_scalar(ctx, (tg_dtype)dt, 1.5), SHAPE(N));
			for (int changed = 0; changed < 2; changed++) {
				if (changed) {
					if (dt == TG_F32)
						((float *)tg_data_mut(e))[N - 3] = -4.0f;
					else
						((double *)tg_data_mut(e))[N - 3] = -4.0;
				}
				tg_tensor *ys[4] = { tg_mul(e, x), tg_mul(x, e), tg_sub(e, x),
						     tg_relu_backward(e, x) };
				assert_ctx_ok(ctx);
				for (size_t i = 0; i < N; i++) {
					double v = tg_get(e, i), xi = tg_get(x, i);
					double want[4] = { v * xi, xi * v, v - xi, xi > 0 ? v : 0 };
					for (int k = 0; k < 4; k++) {
						if (dt == TG_F32)
							want[k] = (float)want[k];
						if (tg_get(ys[k], i) != want[k])
							fail_msg("%s, %d threads, %s, result %d, "
								 "element %zu: %g, expected %g",
								 dt == TG_F64 ? "f64" : "f32", threads,
								 changed ? "changed" : "uniform", k, i,
								 tg_get(ys[k], i), want[k]);
					}
				}
			}
			tg_ctx_free(ctx);
		}
}

/* ---- indexing --------------------------------------------------------------------- */

/* n labels from a literal, as an i32 index tensor */
#define IDX(ctx, ...)                                                                    \
	tg_labels(ctx, (int64_t)(sizeof((int32_t[]){ __VA_ARGS__ }) / sizeof(int32_t)),      \
		  (int32_t[]){ __VA_ARGS__ })

static void gather_rows_copies_the_indexed_rows(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *x = tg_from_f64(ctx, dt, SHAPE(3, 2),
					   (double[]){ 10, 11, 20, 21, 30, 31 });
		tg_tensor *idx = IDX(ctx, 2, 0, 2, 1);
		tg_tensor *y = tg_gather_rows(x, idx);
		((int32_t *)tg_data_mut(idx))[0] = 0; /* the op keeps its own copy */
		assert_ctx_ok(ctx);
		check_shape(y, SHAPE(4, 2));
		check_values(y, (double[]){ 30, 31, 10, 11, 30, 31, 20, 21 }, 8, 0);
	}
	tg_tensor *v = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 5, 6, 7 });
	tg_tensor *g = tg_gather_rows(v, tg_from_i64(ctx, SHAPE(2), (int64_t[]){ 1, 1 }));
	check_shape(g, SHAPE(2));
	check_values(g, (double[]){ 6, 6 }, 2, 0);
	tg_tensor *t = tg_gather_rows(iota_234(ctx, TG_F64), IDX(ctx, 1));
	check_shape(t, SHAPE(1, 3, 4));
	assert_near(tg_get(t, 0), 12, 0);
	assert_near(tg_get(t, 11), 23, 0);
	assert_ctx_ok(ctx);
}

static void gather_rows_gradient_adds_repeated_rows(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_param(tg_zeros(ctx, TG_F64, SHAPE(3, 2)));
	tg_tensor *y = tg_gather_rows(x, IDX(ctx, 2, 0, 2));
	tg_tensor *w = tg_from_f64(ctx, TG_F64, SHAPE(3, 2), (double[]){ 1, 2, 3, 4, 5, 6 });
	assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
	/* row 0 gets w's row 1, row 2 gets rows 0 and 2 added, row 1 nothing */
	check_values(tg_grad(x), (double[]){ 3, 4, 0, 0, 6, 8 }, 6, 0);
}

/* index_select's gradient is a scatter: every row of x's gradient is 0 plus
 * the entries idx sends there, added in idx's order, and 0 where it sends
 * none, whatever the buffer held before. Against that plain loop, bit for
 * bit, over entries whose order and signs matter (1e8, 1, -1e8 from the
 * same row; -0, which 0 + -0 makes +0; NaN, inf): long rows with a quarter
 * of them or more named (cleared apart), few named, short rows, an axis
 * with rows before it, many slices of short rows, f32 and f64, 1 to 3
 * threads, each the second step into a buffer the first filled
 * everywhere. */
static void index_select_gradient_adds_in_idx_order_from_zero(void **state)
{
	(void)state;
	static const double vals[] = { 1e8, 1, -1e8, -0.0, 3.5, NAN, -2, INFINITY, 0.25, -7 };
	enum { NV = sizeof vals / sizeof vals[0] };
	static const struct {
		int64_t outer, A, inner; /* x (outer, A, inner), taken along axis 1 */
		int64_t n;               /* entries (below) */
	} cases[] = { { 1, 1024, 64, 600 }, { 1, 64, 64, 20 }, { 1, 1024, 4, 900 },
		      { 3, 40, 96, 30 },    { 1, 200, 300, 120 },
		      /* columns too few to split: split by the slices before the axis */
		      { 777, 50, 1, 61 },   { 4001, 20, 3, 9 } };
	for (int th = 1; th <= 3; th++)
		for (int dt = TG_F32; dt <= TG_F64; dt++)
			for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
				tg_ctx *ctx = tg_ctx_new(1);
				assert_non_null(ctx);
				tg_set_threads(ctx, th);
				const int64_t O = cases[c].outer, A = cases[c].A, I = cases[c].inner;
				const int64_t n = cases[c].n;
				tg_tensor *x = tg_param(tg_zeros(ctx, (tg_dtype)dt, SHAPE(O, A, I)));
				/* step 1: every row takes a gradient of 5 */
				int32_t *all = malloc((size_t)A * sizeof *all);
				int32_t *idx = malloc((size_t)n * sizeof *idx);
				double *d = malloc((size_t)(O * n * I) * sizeof *d);
				double *want = calloc((size_t)(O * A * I), sizeof *want);
				assert_true(all && idx && d && want);
				for (int64_t r = 0; r < A; r++)
					all[r] = (int32_t)r;
				tg_tensor *y = tg_index_select(x, 1, tg_labels(ctx, A, all));
				assert_int_equal(tg_backward_ex(y, tg_full(ctx, (tg_dtype)dt,
									  SHAPE(O, A, I), 5), 0), 0);
				tg_reset(ctx);
				tg_zero_grad(x);
				/* step 2: entry i names row 3 (i / 2) for the first half, row
				 * 7 i for the rest, both modulo A / 2: the rows after, where
				 * a 2-thread split starts, take nothing */
				for (int64_t i = 0; i < n; i++)
					idx[i] = (int32_t)((i < n / 2 ? 3 * (i / 2) : 7 * i) % (A / 2));
				for (int64_t k = 0; k < O * n * I; k++)
					d[k] = vals[(k * 7 + k / I) % NV];
				tg_tensor *dy = tg_from_f64(ctx, (tg_dtype)dt, SHAPE(O, n, I), d);
				y = tg_index_select(x, 1, tg_labels(ctx, n, idx));
				assert_int_equal(tg_backward_ex(y, dy, 0), 0);
				for (int64_t o = 0; o < O; o++)
					for (int64_t i = 0; i < n; i++)
						for (int64_t k = 0; k < I; k++) {
							double *w = &want[(o * A + idx[i]) * I + k];
							double v = tg_get(dy, (size_t)((o * n + i) * I + k));
							*w = dt == TG_F32 ? (double)((float)*w + (float)v)
									  : *w + v;
						}
				const tg_tensor *g = tg_grad(x);
				for (int64_t k = 0; k < O * A * I; k++) {
					double got = tg_get(g, (size_t)k);
					bool same = isnan(want[k]) ? isnan(got)
								   : got == want[k] &&
									     signbit(got) == signbit(want[k]);
					if (!same)
						fail_msg("case %zu %s, %d threads: element %lld is %g, "
							 "the loop gives %g",
							 c, dt == TG_F32 ? "f32" : "f64", th, (long long)k,
							 got, want[k]);
				}
				free(all), free(idx), free(d), free(want);
				assert_ctx_ok(ctx);
				tg_ctx_free(ctx);
			}
}

static void gather_rows_rejects_an_index_out_of_range(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(10, 2));
	assert_null(tg_gather_rows(x, IDX(ctx, 0, 1, 2, 12)));
	assert_error(ctx, TG_EARG, "tg_gather_rows: idx[3] = 12 is outside [0, 10)");
	tg_clear_error(ctx);
	assert_null(tg_gather_rows(x, IDX(ctx, -1)));
	assert_error(ctx, TG_EARG, "idx[0] = -1 is outside [0, 10)");
	tg_clear_error(ctx);
	assert_null(tg_gather_rows(x, NULL));
	assert_error(ctx, TG_ENULL, "tg_gather_rows: idx is NULL");
	tg_clear_error(ctx);
	assert_null(tg_gather_rows(x, tg_zeros(ctx, TG_F64, SHAPE(2))));
	assert_error(ctx, TG_EDTYPE, "tg_gather_rows: idx is f64 (2,); an index tensor is i32");
	tg_clear_error(ctx);
	assert_null(tg_gather_rows(x, tg_zeros(ctx, TG_I32, SHAPE(2, 2))));
	assert_error(ctx, TG_ESHAPE, "tg_gather_rows: idx is (2,2); expected one dimension");
}

static void index_select_takes_entries_along_any_axis(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *x = iota_234(ctx, dt); /* x[i,j,k] = 12 i + 4 j + k */
		tg_tensor *y = tg_index_select(x, 1, IDX(ctx, 2, 2, 0));
		check_shape(y, SHAPE(2, 3, 4));
		for (int i = 0; i < 2; i++)
			for (int j = 0; j < 3; j++)
				for (int k = 0; k < 4; k++) {
					int src = (int[]){ 2, 2, 0 }[j];
					assert_near(tg_get(y, (size_t)(12 * i + 4 * j + k)),
						    12 * i + 4 * src + k, 0);
				}
		tg_tensor *z = tg_index_select(x, -1, IDX(ctx, 3, 0));
		check_shape(z, SHAPE(2, 3, 2));
		check_values(z, (double[]){ 3, 0, 7, 4, 11, 8, 15, 12, 19, 16, 23, 20 }, 12, 0);
	}
	assert_ctx_ok(ctx);
	assert_null(tg_index_select(iota_234(ctx, TG_F64), 3, IDX(ctx, 0)));
	assert_error(ctx, TG_EARG, "tg_index_select: axis 3 is out of range for x (2,3,4)");
	tg_clear_error(ctx);
	assert_null(tg_index_select(iota_234(ctx, TG_F64), 1, IDX(ctx, 0, 3)));
	assert_error(ctx, TG_EARG, "tg_index_select: idx[1] = 3 is outside [0, 3)");
}

static void index_select_gradient_accumulates_along_the_axis(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_param(tg_zeros(ctx, TG_F64, SHAPE(2, 3)));
	tg_tensor *y = tg_index_select(x, 1, IDX(ctx, 1, 1, 0, 1));
	tg_tensor *w = tg_from_f64(ctx, TG_F64, SHAPE(2, 4), (double[]){ 1, 2, 3, 4, 5, 6, 7, 8 });
	assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
	/* column 1 gets w's columns 0, 1 and 3; column 0 gets column 2 */
	check_values(tg_grad(x), (double[]){ 3, 7, 0, 7, 19, 0 }, 6, 0);
}

static void embedding_looks_up_rows_for_indices_of_any_shape(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *table = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(4, 2),
						(double[]){ 0, 1, 10, 11, 20, 21, 30, 31 }));
	tg_tensor *idx = tg_from_i32(ctx, SHAPE(2, 3), (int32_t[]){ 3, 0, 3, 1, 1, 3 });
	tg_tensor *e = tg_embedding(table, idx);
	assert_ctx_ok(ctx);
	check_shape(e, SHAPE(2, 3, 2));
	check_values(e, (double[]){ 30, 31, 0, 1, 30, 31, 10, 11, 10, 11, 30, 31 }, 12, 0);
	/* each use of a row adds its upstream gradient: row 3 three times */
	assert_int_equal(tg_backward(tg_sum(e)), 0);
	check_values(tg_grad(table), (double[]){ 1, 1, 2, 2, 0, 0, 3, 3 }, 8, 0);
	assert_null(tg_embedding(table, IDX(ctx, 4)));
	assert_error(ctx, TG_EARG, "tg_embedding: idx[0] = 4 is outside [0, 4)");
	tg_clear_error(ctx);
	assert_null(tg_embedding(tg_zeros(ctx, TG_F64, SHAPE(4)), IDX(ctx, 0)));
	assert_error(ctx, TG_ESHAPE, "tg_embedding: table is (4,); expected (V,D)");
}

/* A table's first gradient of a step is scattered straight into its
 * gradient buffer: after tg_zero_grad the buffer, which still holds the last
 * step's rows, is cleared where this step's indices do not reach; a second
 * backward in the same step adds to it; and the values are those of the
 * scatter as an op (TG_CREATE_GRAPH, which never takes the buffer). */
static void embedding_gradient_in_the_tables_own_buffer_starts_clean(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *table = tg_param(tg_from_f64(ctx, TG_F32, SHAPE(5, 2),
						(double[]){ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }));
	tg_tensor *w = tg_from_f64(ctx, TG_F32, SHAPE(3, 2), (double[]){ 1, 2, 3, 4, 5, 6 });
	assert_int_equal(tg_backward(tg_sum(tg_mul(tg_embedding(table, IDX(ctx, 0, 1, 4)), w))),
			 0);
	check_values(tg_grad(table), (double[]){ 1, 2, 3, 4, 0, 0, 0, 0, 5, 6 }, 10, 0);
	tg_reset(ctx);
	tg_zero_grad(table);
	w = tg_from_f64(ctx, TG_F32, SHAPE(3, 2), (double[]){ 1, 2, 3, 4, 5, 6 });
	tg_tensor *y = tg_sum(tg_mul(tg_embedding(table, IDX(ctx, 2, 2, 3)), w));
	assert_int_equal(tg_backward(y), 0);
	check_values(tg_grad(table), (double[]){ 0, 0, 0, 0, 4, 6, 5, 6, 0, 0 }, 10, 0);
	/* a second backward of the step adds */
	y = tg_sum(tg_mul(tg_embedding(table, IDX(ctx, 0, 2, 3)), w));
	assert_int_equal(tg_backward(y), 0);
	check_values(tg_grad(table), (double[]){ 1, 2, 0, 0, 7, 10, 10, 12, 0, 0 }, 10, 0);
	tg_reset(ctx);
	/* the same values through the scatter op */
	tg_zero_grad(table);
	w = tg_from_f64(ctx, TG_F32, SHAPE(3, 2), (double[]){ 1, 2, 3, 4, 5, 6 });
	y = tg_sum(tg_mul(tg_embedding(table, IDX(ctx, 2, 2, 3)), w));
	assert_int_equal(tg_backward_ex(y, NULL, TG_CREATE_GRAPH), 0);
	check_values(tg_grad(table), (double[]){ 0, 0, 0, 0, 4, 6, 5, 6, 0, 0 }, 10, 0);
}

/* ---- first gradients made in the leaf's own buffer (TG_NODE_GRAD_INTO) ------- */

/* Expressions in a (40,30) positive leaf p, a mixed-sign leaf z and a
 * weighting w, each ending in a rule that makes its input's gradient in the
 * leaf's buffer: directly (mul, sub's negation, mul_scalar, the unary
 * rules, sum's and sum_to's expand, softmax's, cross-entropy's and the
 * norms' fused gradients, the shape ops, concat and stack, where, clamp,
 * max and min, div), after an intermediate of the leaf's shape took the
 * buffer (sqrt, cos), the leaf on both sides (z z) and a broadcast
 * weighting. */
/* a (40) label per row of w, and ones and zeros of its width, in its context */
static tg_tensor *labels_of(const tg_tensor *w)
{
	int32_t l[40];
	for (int i = 0; i < 40; i++)
		l[i] = (int32_t)(i * 7 % 30);
	return tg_labels(tg_ctx_of(w), 40, l);
}
static tg_tensor *ones_of(const tg_tensor *w)
{
	return tg_ones(tg_ctx_of(w), tg_dtype_of(w), 1, (int64_t[]){ 30 });
}
static tg_tensor *zeros_of(const tg_tensor *w)
{
	return tg_zeros(tg_ctx_of(w), tg_dtype_of(w), 1, (int64_t[]){ 30 });
}

typedef tg_tensor *(*leaf_expr)(tg_tensor *p, tg_tensor *z, tg_tensor *w);
#define LEAF_EXPR(name, body)                                                          \
	static tg_tensor *name(tg_tensor *p, tg_tensor *z, tg_tensor *w)               \
	{                                                                              \
		(void)p, (void)z, (void)w;                                             \
		return body;                                                           \
	}
LEAF_EXPR(le_mul, tg_sum(tg_mul(tg_mul(p, z), w)))
LEAF_EXPR(le_square, tg_sum(tg_mul(tg_mul(z, z), w)))
LEAF_EXPR(le_sub, tg_sum(tg_mul(tg_sub(p, z), w)))
LEAF_EXPR(le_scale, tg_add(tg_sum(tg_mul(tg_mul_scalar(z, -3.5), w)), tg_sum(tg_mul(p, w))))
LEAF_EXPR(le_sums, tg_add(tg_sum(z),
			  tg_sum(tg_mul(tg_mean_axis(p, 0, false), tg_sum_axis(w, 0, false)))))
LEAF_EXPR(le_sum_to, tg_add(tg_sum(tg_mul(tg_sum_to(tg_mul(z, w), 2, (int64_t[]){ 1, 30 }),
					    tg_sum_axis(p, 0, true))),
			    tg_sum(p)))
LEAF_EXPR(le_exp_log, tg_add(tg_sum(tg_mul(tg_exp(z), w)), tg_sum(tg_mul(tg_log(p), w))))
LEAF_EXPR(le_sqrt_abs, tg_add(tg_sum(tg_mul(tg_sqrt(p), w)), tg_sum(tg_mul(tg_abs(z), w))))
LEAF_EXPR(le_sig_tanh, tg_add(tg_sum(tg_mul(tg_sigmoid(z), w)), tg_sum(tg_mul(tg_tanh(p), w))))
LEAF_EXPR(le_relus, tg_add(tg_sum(tg_mul(tg_relu(z), w)), tg_sum(tg_mul(tg_leaky_relu(p, 0.1), w))))
LEAF_EXPR(le_elu_softplus,
	  tg_add(tg_sum(tg_mul(tg_elu(z, 0.7), w)), tg_sum(tg_mul(tg_softplus(p), w))))
LEAF_EXPR(le_log1p_expm1, tg_add(tg_sum(tg_mul(tg_log1p(p), w)), tg_sum(tg_mul(tg_expm1(z), w))))
LEAF_EXPR(le_sin_cos, tg_add(tg_sum(tg_mul(tg_sin(z), w)), tg_sum(tg_mul(tg_cos(p), w))))
LEAF_EXPR(le_erf_gelu, tg_add(tg_sum(tg_mul(tg_erf(z), w)), tg_sum(tg_mul(tg_gelu(p), w))))
LEAF_EXPR(le_silu_neg, tg_add(tg_sum(tg_mul(tg_silu(z), w)), tg_sum(tg_mul(tg_neg(p), w))))
LEAF_EXPR(le_bcast, tg_sum(tg_mul(tg_mul(z, tg_sum_axis(w, 0, false)), p)))
LEAF_EXPR(le_softmaxes,
	  tg_add(tg_sum(tg_mul(tg_softmax(z), w)), tg_sum(tg_mul(tg_log_softmax(p), w))))
LEAF_EXPR(le_ce_pick, tg_add(tg_cross_entropy(z, labels_of(w)), tg_sum(tg_pick(p, labels_of(w)))))
LEAF_EXPR(le_norms,
	  tg_add(tg_sum(tg_mul(tg_batch_norm(z, ones_of(w), zeros_of(w), 1e-5, NULL, NULL), w)),
		 tg_sum(tg_mul(tg_layer_norm(p, ones_of(w), zeros_of(w), 1e-5), w))))
LEAF_EXPR(le_permute_slice, tg_add(tg_sum(tg_mul(tg_permute(z, (int[]){ 1, 0 }), tg_transpose(w))),
				   tg_sum(tg_mul(tg_slice(p, 1, 0, 30), w))))
LEAF_EXPR(le_transpose_reshape, tg_add(tg_sum(tg_mul(tg_transpose(z), tg_transpose(w))),
				       tg_sum(tg_mul(tg_reshape(p, 2, (int64_t[]){ 30, 40 }),
						     tg_reshape(w, 2, (int64_t[]){ 30, 40 })))))
LEAF_EXPR(le_concat_stack,
	  tg_add(tg_sum(tg_mul(tg_concat(tg_ctx_of(w), 2, (tg_tensor *[]){ z, w }, 1),
			       tg_concat(tg_ctx_of(w), 2, (tg_tensor *[]){ w, w }, 1))),
		 tg_sum(tg_mul(tg_stack(tg_ctx_of(w), 2, (tg_tensor *[]){ w, p }, 0),
			       tg_stack(tg_ctx_of(w), 2, (tg_tensor *[]){ w, w }, 0)))))
LEAF_EXPR(le_pad, tg_sum(tg_mul(tg_slice(tg_pad_axis(z, 0, 2, 3), 0, 1, 40), w)))
LEAF_EXPR(le_where_clamp, tg_add(tg_sum(tg_mul(tg_where(tg_relu(w), z, tg_mul_scalar(w, 2)), w)),
				 tg_sum(tg_mul(tg_clamp(p, 1, 2), w))))
LEAF_EXPR(le_max_div, tg_add(tg_add(tg_sum(tg_mul(tg_maximum(z, tg_mul_scalar(w, 2)), w)),
				    tg_sum(tg_max_axis(tg_minimum(p, tg_add_scalar(w, 1.5)), 1, false))),
			     tg_sum(tg_mul(tg_div(z, tg_add_scalar(w, 3)), w))))

/* The same for leaves of (2,3,10,10), the rules of 4-D ops: z the images
 * and p the kernels of a convolution, pools of z and p, batched products of
 * z and p with w. */
static const tg_conv_opts le_conv_opts = { { 1, 2 }, { 2, 1 }, { 1, 1 }, 1 };
LEAF_EXPR(le_conv, tg_sum(tg_mul(tg_conv2d(z, p, NULL, &le_conv_opts),
				 tg_conv2d(w, w, NULL, &le_conv_opts))))
LEAF_EXPR(le_pools, tg_add(tg_sum(tg_mul(tg_max_pool2d(z, 2, 2, 0), tg_avg_pool2d(w, 2, 2, 0))),
			   tg_sum(tg_mul(tg_avg_pool2d(p, 3, 1, 1), w))))
LEAF_EXPR(le_bmm, tg_add(tg_sum(tg_mul(tg_bmm_t(z, false, w, true), tg_bmm(w, w))),
			 tg_sum(tg_mul(tg_bmm_t(w, true, p, false), tg_bmm(w, w)))))

/* bits of t's data as a malloc'd copy */
static void *bits_of(const tg_tensor *t)
{
	size_t n = tg_numel(t) * (tg_dtype_of(t) == TG_F64 ? 8 : 4);
	void *c = malloc(n);
	assert_non_null(c);
	memcpy(c, tg_data(t), n);
	return c;
}

/* tg_backward's gradients of p and z, made in their buffers, have the bits
 * of tg_grad_of's (which never takes a buffer), after the buffers held an
 * earlier step's gradient; a second backward adds to them. */
static void check_grads_in_buffers_of(tg_ctx *ctx, tg_dtype dt, leaf_expr f, const char *name,
				      int ndim, const int64_t *shape)
{
	tg_tensor *p = tg_param(tg_rand(ctx, dt, ndim, shape, 0.5, 2.5));
	tg_tensor *z = tg_param(tg_rand(ctx, dt, ndim, shape, -2, 2));
	tg_tensor *w = tg_keep(tg_rand(ctx, dt, ndim, shape, -1, 1));
	/* an earlier step leaves other values in both buffers */
	assert_int_equal(tg_backward(tg_sum(tg_mul(tg_mul(p, z), tg_mul_scalar(w, 9)))), 0);
	tg_reset(ctx);
	tg_zero_grad(p);
	tg_zero_grad(z);
	tg_tensor *in[2] = { p, z }, *g[2];
	assert_int_equal(tg_grad_of(1, (tg_tensor *[]){ f(p, z, w) }, NULL, 2, in, g,
				    TG_ALLOW_UNUSED),
			 0);
	void *want[2] = { bits_of(g[0]), bits_of(g[1]) };
	assert_int_equal(tg_backward(f(p, z, w)), 0);
	size_t bytes = tg_numel(p) * (dt == TG_F64 ? 8 : 4);
	for (int i = 0; i < 2; i++)
		if (memcmp(tg_data(tg_grad(in[i])), want[i], bytes))
			fail_msg("%s, %s: the gradient of %s differs from tg_grad_of's", name,
				 tg_dtype_name(dt), i ? "z" : "p");
	/* a second backward adds to them: the bits of the same two backwards
	 * in anomaly mode, which never offers a buffer */
	assert_int_equal(tg_backward(f(p, z, w)), 0);
	void *twice[2] = { bits_of(tg_grad(p)), bits_of(tg_grad(z)) };
	tg_reset(ctx);
	tg_zero_grad(p);
	tg_zero_grad(z);
	tg_set_anomaly(ctx, true);
	assert_int_equal(tg_backward(f(p, z, w)), 0);
	assert_int_equal(tg_backward(f(p, z, w)), 0);
	for (int i = 0; i < 2; i++) {
		if (memcmp(tg_data(tg_grad(in[i])), twice[i], bytes))
			fail_msg("%s, %s: two backwards' gradient of %s differs from anomaly mode's",
				 name, tg_dtype_name(dt), i ? "z" : "p");
		free(twice[i]);
	}
	free(want[0]);
	free(want[1]);
	tg_ctx_free(ctx);
}

static void check_grads_in_buffers(tg_ctx *ctx, tg_dtype dt, leaf_expr f, const char *name)
{
	check_grads_in_buffers_of(ctx, dt, f, name, SHAPE(40, 30));
}

/* d(a / b)/db = -dout (a / b) / b is finite wherever a / b is, as PyTorch
 * has it: 0 for a = 0 over a denormal b (not 0 inf = NaN), and -1e20 for
 * dout 1e300 (1e30 in f32) times a / b^2 = 1e-280 (1e-50), not inf from
 * dout / b first; in one pass and through the recorded ops, f64 and f32. */
static void div_gradient_of_b_is_finite_where_the_quotient_is(void **state)
{
	(void)state;
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int pass = 0; pass < 2; pass++) {
			tg_ctx *ctx = tg_ctx_new(1);
			bool f64 = dt == TG_F64;
			double a[] = { 0, -0.0, f64 ? 1e-300 : 1e-30, 3 };
			double b[] = { f64 ? 5e-324 : 1e-44, f64 ? -1e-310 : -1e-40, 1e-10, 2 };
			double w[] = { 1, 2, f64 ? 1e300 : 1e30, 1 };
			double want[] = { 0, 0, -1e20, -0.75 };
			tg_tensor *A = tg_param(tg_from_f64(ctx, dt, SHAPE(4), a));
			tg_tensor *B = tg_param(tg_from_f64(ctx, dt, SHAPE(4), b));
			tg_tensor *W = tg_from_f64(ctx, dt, SHAPE(4), w);
			tg_tensor *y = tg_sum(tg_mul(tg_div(A, B), W));
			assert_int_equal(tg_backward_ex(y, NULL, pass ? TG_CREATE_GRAPH : 0), 0);
			for (size_t i = 0; i < 4; i++)
				assert_near(tg_get(tg_grad(B), i), want[i], fabs(want[i]) * 1e-6);
			assert_ctx_ok(ctx);
			tg_ctx_free(ctx);
		}
}

/* div's plain backward takes both gradients in one pass when a, b and dout
 * have one shape: the bits of its rule's ops (a TG_CREATE_GRAPH backward
 * runs them), into the leaves' buffers or not (small tensors, a constant
 * numerator, x / x), at 1 and 2 threads, over zeros, infinities and NaN. */
static void div_gradients_in_one_pass_have_the_bits_of_the_ops(void **state)
{
	(void)state;
	enum { N = 40000 };
	double *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *w = malloc(N * sizeof *w);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(w);
	for (int i = 0; i < N; i++) {
		a[i] = (i % 3 - 1) * pow(10.0, -20.0 + 40.0 * i / N) + (i % 7) / 5.0;
		b[i] = (i % 2 ? -1 : 1) * pow(10.0, 15.0 - 30.0 * i / N) + (i % 11) / 9.0;
		w[i] = (i % 5 ? 0.75 : -1.25) + (i % 13) / 7.0;
	}
	b[0] = 0.0, b[1] = -0.0, b[2] = INFINITY, b[3] = NAN, a[4] = INFINITY, a[5] = NAN;
	static const int sizes[] = { N, 100 };
	/* threads 1, 2; f32, f64; a and b params, b alone, x / x; two sizes */
	for (int c = 0; c < 2 * 2 * 3 * 2; c++) {
		int threads = 1 + c % 2, kind = c / 4 % 3;
		tg_dtype dt = c / 2 % 2 ? TG_F64 : TG_F32;
		int64_t n = sizes[c / 12];
		tg_ctx *ctx = tg_ctx_new(3);
		tg_set_threads(ctx, threads);
		tg_tensor *A = tg_keep(tg_from_f64(ctx, dt, SHAPE(n), a));
		tg_tensor *B = tg_param(tg_from_f64(ctx, dt, SHAPE(n), b));
		tg_tensor *W = tg_keep(tg_from_f64(ctx, dt, SHAPE(n), w));
		if (kind == 0)
			A = tg_set_requires_grad(A, true);
		if (kind == 2)
			A = B;
		tg_tensor *g[2][2];
		for (int pass = 0; pass < 2; pass++) {
			tg_zero_grad(B);
			if (kind == 0)
				tg_zero_grad(A);
			tg_tensor *y = tg_sum(tg_mul(tg_div(A, B), W));
			assert_int_equal(tg_backward_ex(y, NULL, pass ? TG_CREATE_GRAPH : 0), 0);
			assert_ctx_ok(ctx);
			g[pass][0] = kind == 0 ? tg_keep(tg_grad(A)) : NULL;
			g[pass][1] = tg_keep(tg_grad(B));
			tg_reset(ctx);
		}
		assert_tensor_bits("div's gradient of b", g[0][1], g[1][1]);
		if (kind == 0)
			assert_tensor_bits("div's gradient of a", g[0][0], g[1][0]);
		tg_ctx_free(ctx);
	}
	free(a);
	free(b);
	free(w);
}

/* mul's plain backward sums a broadcast input's gradient as it makes the
 * products dout times the other input (tg_sum_to_product), and div's a
 * broadcast denominator's as it makes dout (y / b) (tg_sum_to_quotient):
 * the bits of their rules' ops, tg_mul (tg_div) and then tg_sum_to (a
 * TG_CREATE_GRAPH backward runs them), for every way a shape broadcasts: a
 * bias row, a column, a middle axis, a channel of an image, a scalar; the
 * small input first or second; sizes below and above the split; 1 and 2
 * threads; over zeros of both signs, infinities and NaN. */
static void mul_and_div_gradients_of_a_broadcast_input_have_the_bits_of_the_ops(void **state)
{
	(void)state;
	static const struct {
		int nd, snd;
		int64_t big[4], small[4];
	} cases[] = {
		{ 2, 1, { 300, 70 }, { 70 } },            { 2, 2, { 300, 70 }, { 1, 70 } },
		{ 2, 2, { 300, 70 }, { 300, 1 } },        { 3, 3, { 6, 50, 9 }, { 6, 1, 9 } },
		{ 4, 4, { 4, 6, 5, 7 }, { 1, 6, 1, 1 } }, { 4, 4, { 8, 64, 9, 9 }, { 1, 64, 1, 1 } },
		{ 4, 3, { 8, 64, 9, 9 }, { 64, 1, 1 } },  { 3, 3, { 40, 33, 31 }, { 1, 1, 1 } },
		{ 2, 2, { 2000, 33 }, { 1, 33 } },        { 3, 3, { 20, 60, 41 }, { 20, 60, 1 } },
		{ 3, 3, { 7, 3000, 2 }, { 7, 1, 2 } },    { 2, 0, { 300, 70 }, { 0 } },
	};
	enum { NC = sizeof cases / sizeof cases[0] };
	for (int c = 0; c < NC * 2 * 2 * 2 * 2; c++) {
		int k = c / 16, threads = 1 + c % 2, small_first = c / 4 % 2, div = c / 8 % 2;
		tg_dtype dt = c / 2 % 2 ? TG_F64 : TG_F32;
		int nd = cases[k].nd, snd = cases[k].snd;
		const int64_t *big = cases[k].big, *small = cases[k].small;
		tg_ctx *ctx = tg_ctx_new(3);
		tg_set_threads(ctx, threads);
		tg_tensor *X = tg_param(tg_randn(ctx, dt, nd, big, 0, 3));
		tg_tensor *G = tg_param(tg_randn(ctx, dt, snd, small, 1, 2));
		tg_tensor *W = tg_keep(tg_randn(ctx, dt, nd, big, 0, 1));
		float *x32 = tg_data_mut(X);
		double *x64 = tg_data_mut(X);
		const double special[] = { 0.0, -0.0, INFINITY, -INFINITY, NAN, 1e-40 };
		for (int i = 0; i < 6; i++) {
			size_t at = (size_t)(i * 7919) % tg_numel(X);
			if (dt == TG_F64)
				x64[at] = special[i];
			else
				x32[at] = (float)special[i];
		}
		tg_tensor *g[2][2];
		for (int pass = 0; pass < 2; pass++) {
			tg_zero_grad(X);
			tg_zero_grad(G);
			tg_tensor *(*op)(tg_tensor *, tg_tensor *) = div ? tg_div : tg_mul;
			tg_tensor *p = small_first ? op(G, X) : op(X, G);
			tg_tensor *y = tg_sum(tg_mul(p, W)); /* a dout that is no uniform */
			assert_int_equal(tg_backward_ex(y, NULL, pass ? TG_CREATE_GRAPH : 0), 0);
			assert_ctx_ok(ctx);
			g[pass][0] = tg_keep(tg_grad(X));
			g[pass][1] = tg_keep(tg_grad(G));
			tg_reset(ctx);
		}
		char what[96];
		snprintf(what, sizeof what, "%s, case %d, %s, %d thread(s), small input %s: its gradient",
			 div ? "div" : "mul", k, tg_dtype_name(dt), threads,
			 small_first ? "first" : "second");
		assert_tensor_bits(what, g[0][1], g[1][1]);
		assert_tensor_bits("the big input's gradient", g[0][0], g[1][0]);
		tg_ctx_free(ctx);
	}
}

/* tg_addmm_relu is tg_relu(tg_addmm(a, w, b)) made in one tensor: the
 * same bits in its output and in every gradient, through the plain
 * backward (where b's gradient is summed as the mask is applied) and a
 * TG_CREATE_GRAPH one (the ops of its rule), for a bias (M,) and (1,M), a
 * single column (M = 1: b's gradient summed by tg_sum_to), a single row,
 * sizes below and above the thread split, 1 and 2 threads, f32 and f64, a
 * dout of a sum (one uniform value) and a tensor dout, with a's values
 * holding zeros of both signs, infinities, NaN and a subnormal. */
static void addmm_relu_has_the_bits_of_relu_of_addmm(void **state)
{
	(void)state;
	static const struct {
		int64_t n, k, m;
		bool row2;
	} cases[] = {
		{ 30, 7, 20, false }, { 30, 7, 20, true },   { 40, 5, 1, false },
		{ 1, 9, 33, true },   { 600, 12, 70, false }, { 300, 3, 257, true },
	};
	enum { NC = sizeof cases / sizeof cases[0] };
	for (int c = 0; c < NC * 2 * 2 * 2; c++) {
		int k = c / 8, threads = 1 + c % 2, uniform = c / 4 % 2;
		tg_dtype dt = c / 2 % 2 ? TG_F64 : TG_F32;
		int64_t n = cases[k].n, kk = cases[k].k, m = cases[k].m;
		tg_ctx *ctx = tg_ctx_new(3);
		tg_set_threads(ctx, threads);
		tg_tensor *A = tg_param(tg_randn(ctx, dt, SHAPE(n, kk), 0, 1));
		tg_tensor *W = tg_param(tg_randn(ctx, dt, SHAPE(kk, m), 0, 1));
		tg_tensor *B = tg_param(cases[k].row2 ? tg_randn(ctx, dt, SHAPE(1, m), 0, 1)
						      : tg_randn(ctx, dt, SHAPE(m), 0, 1));
		tg_tensor *V = tg_keep(tg_randn(ctx, dt, SHAPE(n, m), 0, 1));
		const double special[] = { 0.0, -0.0, INFINITY, -INFINITY, NAN, 1e-40 };
		for (int i = 0; i < 6 && n > 1; i++) {
			size_t at = (size_t)(i * 7919) % tg_numel(A);
			if (dt == TG_F64)
				((double *)tg_data_mut(A))[at] = special[i];
			else
				((float *)tg_data_mut(A))[at] = (float)special[i];
		}
		tg_tensor *r[3][4]; /* relu(addmm), addmm_relu plain, addmm_relu graph */
		for (int pass = 0; pass < 3; pass++) {
			tg_zero_grads(ctx);
			tg_tensor *y = pass ? tg_addmm_relu(A, W, B) : tg_relu(tg_addmm(A, W, B));
			tg_tensor *loss = tg_sum(uniform ? y : tg_mul(y, V));
			assert_int_equal(tg_backward_ex(loss, NULL, pass == 2 ? TG_CREATE_GRAPH : 0), 0);
			assert_ctx_ok(ctx);
			r[pass][0] = tg_keep(y);
			r[pass][1] = tg_keep(tg_grad(A));
			r[pass][2] = tg_keep(tg_grad(W));
			r[pass][3] = tg_keep(tg_grad(B));
			tg_reset(ctx);
		}
		static const char *const names[] = { "y", "a's gradient", "w's gradient",
						     "b's gradient" };
		for (int pass = 1; pass < 3; pass++)
			for (int t = 0; t < 4; t++) {
				char what[128];
				snprintf(what, sizeof what, "case %d, %s, %d thread(s), %s dout, %s: %s",
					 k, tg_dtype_name(dt), threads, uniform ? "uniform" : "tensor",
					 pass == 1 ? "plain" : "TG_CREATE_GRAPH", names[t]);
				assert_tensor_bits(what, r[0][t], r[pass][t]);
			}
		tg_ctx_free(ctx);
	}
}

/* x * x takes one product dout x for both of its edges and adds it twice;
 * a tensor's gradients add up in the order the walk reaches them, split
 * across the threads from 32768 elements: for w (x x) + v x the gradient
 * is ((v + p) + p), p = w x rounded in the dtype, whether x is a leaf or
 * an intermediate, on 1 and 2 threads, with w a tensor or 1 (sum's
 * uniform gradient), through tg_backward and through tg_grad_of. */
static void a_square_adds_its_product_twice_after_earlier_gradients(void **state)
{
	(void)state;
	enum { N = 40000 };
	double *x = malloc(N * sizeof *x), *w = malloc(N * sizeof *w), *v = malloc(N * sizeof *v);
	assert_non_null(x);
	assert_non_null(w);
	assert_non_null(v);
	for (int i = 0; i < N; i++) {
		x[i] = (i % 2 ? -1 : 1) * (0.1 + (i % 97) / 7.0);
		w[i] = 0.3 + (i % 13) / 11.0;
		v[i] = (i % 3 - 1) * 1e-3 * (i % 17) + 1.0 / 3.0;
	}
	static const int sizes[] = { N, 100 };
	/* threads 1, 2; f32, f64; a leaf or an intermediate; with v x or not;
	 * two sizes; w x x, 1 x x, or w x x through tg_grad_of */
	for (int c = 0; c < 2 * 2 * 2 * 2 * 2 * 3; c++) {
		int threads = 1 + c % 2;
		tg_dtype dt = c / 2 % 2 ? TG_F64 : TG_F32;
		bool inner = c / 4 % 2, with_v = c / 8 % 2;
		int64_t n = sizes[c / 16 % 2];
		int how = c / 32; /* 0: w, backward; 1: no w, backward; 2: w, tg_grad_of */
		tg_ctx *ctx = tg_ctx_new(3);
		tg_set_threads(ctx, threads);
		tg_tensor *X = tg_param(tg_from_f64(ctx, dt, SHAPE(n), x));
		tg_tensor *W = tg_from_f64(ctx, dt, SHAPE(n), w);
		tg_tensor *V = tg_from_f64(ctx, dt, SHAPE(n), v);
		tg_tensor *z = inner ? tg_mul_scalar(X, 1.0) : X; /* exact */
		tg_tensor *y = tg_sum(how == 1 ? tg_mul(z, z) : tg_mul(W, tg_mul(z, z)));
		if (with_v)
			y = tg_add(y, tg_sum(tg_mul(V, z)));
		const tg_tensor *g = NULL;
		if (how == 2) {
			tg_tensor *gx = NULL;
			assert_int_equal(tg_grad_of(1, &y, NULL, 1, &X, &gx, 0), 0);
			g = gx;
		} else {
			assert_int_equal(tg_backward(y), 0);
			g = tg_grad(X);
		}
		assert_ctx_ok(ctx);
		assert_non_null(g);
		for (int64_t i = 0; i < n; i++) {
			double want, wi = how == 1 ? 1 : w[i];
			if (dt == TG_F32) {
				volatile float p = (float)wi * (float)x[i];
				volatile float e = with_v ? (float)v[i] + p : p;
				want = (float)(e + p);
			} else {
				volatile double p = wi * x[i];
				volatile double e = with_v ? v[i] + p : p;
				want = e + p;
			}
			if (tg_get(g, (size_t)i) != want)
				fail_msg("%s %s, %d threads, %s v x, n %lld, way %d: element %lld is "
					 "%a, expected %a",
					 tg_dtype_name(dt), inner ? "intermediate" : "leaf", threads,
					 with_v ? "with" : "without", (long long)n, how, (long long)i,
					 tg_get(g, (size_t)i), want);
		}
		tg_ctx_free(ctx);
	}
	free(x);
	free(w);
	free(v);
}

static void first_gradients_made_in_the_leafs_buffer_match_tg_grad_of(void **state)
{
	(void)state;
	static const struct {
		leaf_expr f;
		const char *name;
	} cases[] = {
		{ le_mul, "mul" },	     { le_square, "z z" },	      { le_sub, "sub" },
		{ le_scale, "mul_scalar" },  { le_sums, "sum, mean_axis" }, { le_sum_to, "sum_to" },
		{ le_exp_log, "exp, log" },  { le_sqrt_abs, "sqrt, abs" },   { le_sig_tanh, "sigmoid, tanh" },
		{ le_relus, "relu, leaky_relu" }, { le_elu_softplus, "elu, softplus" },
		{ le_log1p_expm1, "log1p, expm1" }, { le_sin_cos, "sin, cos" },
		{ le_erf_gelu, "erf, gelu" }, { le_silu_neg, "silu, neg" }, { le_bcast, "broadcast" },
		{ le_softmaxes, "softmax, log_softmax" }, { le_ce_pick, "cross_entropy, pick" },
		{ le_norms, "batch_norm, layer_norm" }, { le_permute_slice, "permute, slice" },
		{ le_transpose_reshape, "transpose, reshape" }, { le_pad, "pad_axis" },
		{ le_concat_stack, "concat, stack" },
		{ le_where_clamp, "where, clamp" }, { le_max_div, "maximum, minimum, max_axis, div" },
	};
	for (size_t c = 0; c < LEN(cases); c++)
		for (int dt = TG_F32; dt <= TG_F64; dt++)
			check_grads_in_buffers(tg_ctx_new(7 + (uint64_t)c), dt, cases[c].f,
					       cases[c].name);
	static const struct {
		leaf_expr f;
		const char *name;
	} cases4[] = {
		{ le_conv, "conv2d" }, { le_pools, "max_pool2d, avg_pool2d" }, { le_bmm, "bmm" },
	};
	for (size_t c = 0; c < LEN(cases4); c++)
		for (int dt = TG_F32; dt <= TG_F64; dt++)
			check_grads_in_buffers_of(tg_ctx_new(40 + (uint64_t)c), dt, cases4[c].f,
						  cases4[c].name, SHAPE(2, 3, 10, 10));
}

/* Two rules written with TG_NODE_GRAD_INTO the way it must hold for any
 * rule: five = 5x, whose rule makes 2 dout and 3 dout, both of x's shape,
 * and adds them (only the first may take the buffer); same = c, whose rule
 * hands dout on and so makes no tensor (the buffer, offered and not taken,
 * must not stay offered to the next rule, c v's). */
static void five_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, tg_add(tg_mul_scalar(dout, 2), tg_mul_scalar(dout, 3)));
}

static void same_backward(tg_node *n, tg_tensor *dout) { TG_NODE_GRAD_INTO(n, 0, dout); }

static void grad_into_keeps_intermediates_and_disarms(void **state)
{
	(void)state;
	static const tg_op five_op = { .name = "five", .backward = five_backward };
	static const tg_op same_op = { .name = "same", .backward = same_backward };
	tg_ctx *ctx = tg_ctx_new(5);
	tg_tensor *x = tg_param(tg_rand(ctx, TG_F64, SHAPE(600, 30), -1, 1));
	tg_tensor *c = tg_param(tg_rand(ctx, TG_F64, SHAPE(600, 1), -1, 1));
	tg_tensor *w = tg_rand(ctx, TG_F64, SHAPE(600, 30), -1, 1);
	tg_tensor *u = tg_rand(ctx, TG_F64, SHAPE(600, 1), -1, 1);
	tg_tensor *v = tg_rand(ctx, TG_F64, SHAPE(600, 1), -1, 1);
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *five = tg_mul_scalar(x, 5), *same = tg_mul_scalar(c, 1);
	tg_set_grad_enabled(ctx, was);
	five = tg_record(&five_op, five, 1, &x, NULL, 0);
	/* in this order, so that the walk meets same's rule, then c v's */
	tg_tensor *cv = tg_sum(tg_mul(c, v));
	same = tg_record(&same_op, same, 1, &c, NULL, 0);
	tg_tensor *su = tg_sum(tg_mul(same, u));
	tg_tensor *y = tg_add(tg_add(cv, su), tg_sum(tg_mul(five, w)));
	assert_int_equal(tg_backward(y), 0);
	for (size_t i = 0; i < 600 * 30; i++) {
		double wi = tg_get(w, i);
		assert_true(tg_get(tg_grad(x), i) == 2 * wi + 3 * wi);
	}
	for (size_t r = 0; r < 600; r++)
		assert_true(tg_get(tg_grad(c), r) == tg_get(u, r) + tg_get(v, r));
	tg_ctx_free(ctx);
}

/* A broadcast leaf's buffer is offered only to a tensor of its own shape:
 * c (600,1) times w (600,30) makes a (600,30) product first, which must not
 * be written into c's 600 elements (under ASan an overflow aborts). */
static void a_broadcast_leafs_buffer_takes_only_its_own_shape(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(9);
	tg_tensor *c = tg_param(tg_rand(ctx, TG_F64, SHAPE(600, 1), -1, 1));
	tg_tensor *w = tg_rand(ctx, TG_F64, SHAPE(600, 30), -1, 1);
	assert_int_equal(tg_backward(tg_sum(tg_mul(c, w))), 0);
	tg_tensor *g;
	tg_tensor *y = tg_sum(tg_mul(c, w));
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &c, &g, 0), 0);
	assert_memory_equal(tg_data(tg_grad(c)), tg_data(g), 600 * sizeof(double));
	for (size_t r = 0; r < 600; r++) {
		double row = 0;
		for (size_t k = 0; k < 30; k++)
			row += tg_get(w, r * 30 + k);
		assert_true(fabs(tg_get(g, r) - row) < 1e-12);
	}
	tg_ctx_free(ctx);
}

/* A forward pass that read a leaf's gradient buffer (tg_grad(p) as an
 * input to two products): the product saved the buffer, so the walk makes
 * p's first gradient in a tensor of its own rather than in the buffer,
 * and the product still reads what it saved. */
static void a_gradient_buffer_read_by_the_forward_pass_keeps_its_values(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(3);
	tg_tensor *p = tg_param(tg_rand(ctx, TG_F64, SHAPE(40, 30), -1, 1));
	tg_tensor *w = tg_rand(ctx, TG_F64, SHAPE(40, 30), -1, 1);
	assert_int_equal(tg_backward(tg_sum(tg_mul(p, p))), 0);
	tg_tensor *gp = tg_grad(p);
	tg_tensor *saved = tg_detach(gp);
	tg_zero_grad(p);
	/* in this order, so that the walk meets p w first */
	tg_tensor *reads_buffer = tg_sum(tg_mul(p, gp));
	tg_tensor *y = tg_add(reads_buffer, tg_sum(tg_mul(p, w)));
	assert_int_equal(tg_backward(y), 0);
	for (size_t i = 0; i < 40 * 30; i++) {
		assert_true(tg_get(gp, i) == tg_get(saved, i));
		assert_true(tg_get(tg_grad(p), i) == tg_get(saved, i) + tg_get(w, i));
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* y = f(p) for the upstream-gradient test below: a product, a gather of rows
 * in another order, and two branches that both read the upstream gradient. */
static tg_tensor *feedback_fn(int k, tg_tensor *p, tg_tensor *w, const tg_tensor *perm)
{
	switch (k) {
	case 0:
		return tg_matmul(p, w);
	case 1:
		return tg_index_select(p, 0, perm);
	default:
		return tg_add(tg_sin(p), tg_mul(p, w));
	}
}

/* A leaf's gradient fed back as the upstream gradient of a function of the
 * leaf (v <- J^T v with v = tg_grad(p), the buffer itself): the walk writes
 * p's buffer while rules still read it as their dout, so the gradient must
 * be that of a copy of v, after tg_zero_grad or added to the gradient held. */
static void a_leafs_gradient_as_the_upstream_gradient_acts_as_a_copy(void **state)
{
	(void)state;
	enum { N = 40 };
	for (int k = 0; k < 3; k++)
		for (int zero = 0; zero <= 1; zero++) {
			tg_ctx *ctx = tg_ctx_new(5);
			tg_tensor *p = tg_param(tg_rand(ctx, TG_F64, SHAPE(N, N), -1, 1));
			tg_tensor *w = tg_rand(ctx, TG_F64, SHAPE(N, N), -1, 1);
			int32_t order[N];
			for (int i = 0; i < N; i++)
				order[i] = (7 * i) % N;
			tg_tensor *perm = tg_labels(ctx, N, order);
			/* the reference: v's values as a tensor of their own */
			assert_int_equal(tg_backward(tg_sum(tg_mul(tg_sin(p), w))), 0);
			tg_tensor *v = tg_detach(tg_grad(p));
			if (zero)
				tg_zero_grad(p);
			assert_int_equal(tg_backward_ex(feedback_fn(k, p, w, perm), v, 0), 0);
			tg_tensor *want = tg_detach(tg_grad(p));
			/* the same with the buffer itself as dy */
			tg_zero_grad(p);
			assert_int_equal(tg_backward(tg_sum(tg_mul(tg_sin(p), w))), 0);
			tg_tensor *gp = tg_grad(p);
			if (zero)
				tg_zero_grad(p);
			assert_int_equal(tg_backward_ex(feedback_fn(k, p, w, perm), gp, 0), 0);
			assert_ctx_ok(ctx);
			print_message("f %d, %s\n", k, zero ? "after tg_zero_grad" : "added");
			check_values(tg_grad(p), tg_data(want), N * N, 0);
			tg_ctx_free(ctx);
		}
}

static void pick_takes_one_element_per_row(void **state)
{
	tg_ctx *ctx = *state;
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *x = tg_from_f64(ctx, dt, SHAPE(3, 2), (double[]){ 1, 2, 3, 4, 5, 6 });
		tg_tensor *y = tg_pick(x, IDX(ctx, 1, 0, 1));
		assert_ctx_ok(ctx);
		check_shape(y, SHAPE(3));
		check_values(y, (double[]){ 2, 3, 6 }, 3, 0);
	}
}

static void pick_gradient_is_one_hot_times_dout(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_param(tg_zeros(ctx, TG_F64, SHAPE(2, 3)));
	tg_tensor *y = tg_pick(x, IDX(ctx, 2, 0));
	tg_tensor *w = tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){ 5, 7 });
	assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
	check_values(tg_grad(x), (double[]){ 0, 0, 5, 7, 0, 0 }, 6, 0);
}

static void pick_rejects_an_index_out_of_range(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_zeros(ctx, TG_F32, SHAPE(5, 10));
	assert_null(tg_pick(x, IDX(ctx, 0, 1, 2, 12, 3)));
	assert_error(ctx, TG_EARG, "tg_pick: idx[3] = 12 is outside [0, 10)");
	tg_clear_error(ctx);
	assert_null(tg_pick(tg_zeros(ctx, TG_F32, SHAPE(5)), IDX(ctx, 0)));
	assert_error(ctx, TG_ESHAPE, "tg_pick: x is (5,)");
}

/* A label tensor shorter than the batch is a shape error before any read:
 * under ASan, a read past its end would abort the test. */
static void a_short_label_tensor_is_a_shape_error(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *logits = tg_zeros(ctx, TG_F64, SHAPE(5, 3));
	assert_null(tg_cross_entropy(logits, IDX(ctx, 0, 1, 2)));
	assert_error(ctx, TG_ESHAPE, "tg_cross_entropy: labels (3,) has 3 entries; expected 5");
	tg_clear_error(ctx);
	assert_null(tg_pick(logits, IDX(ctx, 0)));
	assert_error(ctx, TG_ESHAPE, "tg_pick: idx (1,) has 1 entries; expected 5");
	tg_clear_error(ctx);
	assert_null(tg_nll(logits, IDX(ctx, 0, 1)));
	assert_error(ctx, TG_ESHAPE, "tg_nll: labels (2,) has 2 entries; expected 5");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy_i32(logits, (int32_t[]){ 0, 1 }, 2));
	assert_error(ctx, TG_ESHAPE, "tg_cross_entropy_i32: 2 labels for logits (5,3)");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy_backward(tg_scalar(ctx, TG_F64, 1), logits, IDX(ctx, 1)));
	assert_error(ctx, TG_ESHAPE, "tg_cross_entropy_backward: labels (1,) has 1 entries");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy(logits, tg_zeros(ctx, TG_F32, SHAPE(5))));
	assert_error(ctx, TG_EDTYPE, "tg_cross_entropy: labels is f32 (5,)");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy(logits, IDX(ctx, 0, 1, 2, 3, 0)));
	assert_error(ctx, TG_EARG, "tg_cross_entropy: labels[3] = 3 is outside [0, 3)");
}

static void nll_of_log_softmax_is_cross_entropy(void **state)
{
	tg_ctx *ctx = *state;
	double v[6] = { 0.5, -1, 2, 0.25, 3, -2 };
	tg_tensor *x = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 3), v));
	tg_tensor *labels = tg_from_i64(ctx, SHAPE(2), (int64_t[]){ 2, 1 });
	double ce = tg_item(tg_cross_entropy(x, labels));
	tg_tensor *nll = tg_nll(tg_log_softmax(x), labels);
	/* by hand: ln sum e^x - x[label], averaged */
	double want = 0;
	for (int r = 0; r < 2; r++) {
		double s = 0;
		for (int j = 0; j < 3; j++)
			s += exp(v[3 * r + j]);
		want += log(s) - v[3 * r + (r ? 1 : 2)];
	}
	want /= 2;
	assert_near(tg_item(nll), want, 1e-15);
	assert_near(ce, want, 1e-15);
	assert_int_equal(tg_backward(nll), 0);
	/* d/dx = (softmax - onehot) / 2 */
	for (int r = 0; r < 2; r++) {
		double s = 0;
		for (int j = 0; j < 3; j++)
			s += exp(v[3 * r + j]);
		for (int j = 0; j < 3; j++) {
			double want_g = (exp(v[3 * r + j]) / s - (j == (r ? 1 : 2))) / 2;
			assert_near(tg_get(tg_grad(x), (size_t)(3 * r + j)), want_g, 1e-15);
		}
	}
}

/* Rows long enough for the row kernels' sixteen running maxima and eight
 * partial sums (k = 16, 17, 1003: whole blocks, a tail, many blocks; the
 * maximum in the first lane, in a later lane, in the tail): softmax,
 * log_softmax and cross-entropy with its gradient against long double, and
 * the fused gradients bit for bit against their composed forms:
 * cross-entropy's softmax - onehot, softmax's y (dout - sum(dout y)),
 * log_softmax's dout - e^y sum(dout). */
/* Logits (N,C,d1,...) with labels (N,d1,...), as a segmentation's: the mean
 * over every position of ln sum_c e^x[n,c,q] - x[n,label,q], each worked out
 * here in long double; d x = (softmax along c - onehot) / positions. Shapes
 * with a chunk of lanes and a part (inner 300), lanes under a chunk, and
 * only axes of 1 after the classes; tg_cross_entropy, its i32 form and
 * tg_nll of tg_log_softmax_axis; a plain backward (one fused pass) and a
 * recorded one, at 1 and 3 threads with the same bits. */
static void cross_entropy_over_classes_along_axis_1_averages_every_position(void **state)
{
	tg_ctx *ctx = *state;
	static const int64_t shapes[][4] = { { 2, 3, 2, 5 }, { 2, 4, 300, 1 }, { 3, 5, 1, 1 },
					     { 1, 2, 7, 3 }, { 4, 3, 64, 48 } };
	for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
		const int64_t *shape = shapes[sh];
		const int64_t N = shape[0], C = shape[1], Q = shape[2] * shape[3], M = N * Q;
		const size_t n = (size_t)(N * C * Q);
		double *v = malloc(n * sizeof *v);
		long double *p = malloc(n * sizeof *p);
		int64_t *lab = malloc((size_t)M * sizeof *lab);
		int32_t *lab32 = malloc((size_t)M * sizeof *lab32);
		assert_non_null(v), assert_non_null(p), assert_non_null(lab), assert_non_null(lab32);
		for (size_t i = 0; i < n; i++)
			v[i] = sin(1.7 * (double)i + 0.3) * 3;
		for (int64_t i = 0; i < M; i++)
			lab32[i] = (int32_t)(lab[i] = (7 * i + 1) % C);
		long double want = 0;
		for (int64_t b = 0; b < N; b++)
			for (int64_t q = 0; q < Q; q++) {
				long double s = 0;
				for (int64_t c = 0; c < C; c++)
					s += expl((long double)v[(b * C + c) * Q + q]);
				int64_t l = lab[b * Q + q];
				want += logl(s) - v[(b * C + l) * Q + q];
				for (int64_t c = 0; c < C; c++)
					p[(b * C + c) * Q + q] =
						(expl((long double)v[(b * C + c) * Q + q]) / s - (c == l)) /
						M;
			}
		want /= M;
		for (int dt = 0; dt < 2; dt++) {
			tg_dtype d = dt ? TG_F32 : TG_F64;
			double tol = dt ? 2e-6 : 1e-15;
			for (int way = 0; way < 3; way++) {
				double *g[2][2] = { { 0 } }; /* [threads 1, 3][plain, recorded] */
				for (int t = 0; t < 2; t++) {
					tg_set_threads(ctx, t ? 3 : 1);
					for (int rec = 0; rec < 2; rec++) {
						tg_tensor *x = tg_param(tg_from_f64(ctx, d, 4, shape, v));
						tg_tensor *labels = tg_from_i64(
							ctx, 3, (int64_t[]){ N, shape[2], shape[3] }, lab);
						tg_tensor *loss =
							way == 0   ? tg_cross_entropy(x, labels)
							: way == 1 ? tg_cross_entropy_i32(x, lab32, M)
								   : tg_nll(tg_log_softmax_axis(x, 1),
									    labels);
						assert_non_null(loss);
						assert_int_equal(tg_ndim(loss), 0);
						/* the mean of M terms near 2, added in double */
						assert_near(tg_item(loss), (double)want,
							    tol * 4 + (double)M * 1e-15);
						assert_int_equal(tg_backward_ex(loss, NULL,
										rec ? TG_CREATE_GRAPH : 0),
								 0);
						g[t][rec] = malloc(n * sizeof(double));
						assert_non_null(g[t][rec]);
						assert_int_equal(tg_copy_to_f64(tg_grad(x), g[t][rec], n), 0);
						for (size_t i = 0; i < n; i++)
							assert_near(g[t][rec][i], (double)p[i], tol);
						tg_reset(ctx);
					}
				}
				for (int rec = 0; rec < 2; rec++)
					assert_memory_equal(g[0][rec], g[1][rec], n * sizeof(double));
				for (int t = 0; t < 2; t++)
					for (int rec = 0; rec < 2; rec++)
						free(g[t][rec]);
			}
		}
		tg_set_threads(ctx, 1);
		free(v), free(p), free(lab), free(lab32);
	}
}

/* One sample (C) takes a label of shape (), as the row (1,C) with (1). */
static void cross_entropy_of_one_sample_is_its_one_row(void **state)
{
	tg_ctx *ctx = *state;
	double v[5] = { 0.5, -1, 2, 0.25, 3 };
	tg_tensor *x = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(5), v));
	tg_tensor *row = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(1, 5), v));
	tg_tensor *one = tg_from_i64(ctx, 0, NULL, (int64_t[]){ 2 });
	tg_tensor *loss = tg_cross_entropy(x, one), *want = tg_cross_entropy(row, IDX(ctx, 2));
	assert_non_null(loss);
	assert_int_equal(tg_ndim(loss), 0);
	assert_true(tg_item(loss) == tg_item(want));
	assert_int_equal(tg_backward(loss), 0);
	assert_int_equal(tg_backward(want), 0);
	assert_int_equal(tg_ndim(tg_grad(x)), 1);
	for (size_t i = 0; i < 5; i++)
		assert_true(tg_get(tg_grad(x), i) == tg_get(tg_grad(row), i));
	assert_true(tg_item(tg_nll(tg_log_softmax(x), one)) ==
		    tg_item(tg_nll(tg_log_softmax(row), IDX(ctx, 2))));
}

/* Labels must have the logits' shape without the class axis; each error
 * names both shapes. */
static void cross_entropy_labels_must_fit_the_positions(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_param(tg_zeros(ctx, TG_F64, SHAPE(2, 3, 2, 2)));
	tg_tensor *flat = tg_from_i64(ctx, SHAPE(2, 4), (int64_t[]){ 0, 1, 2, 0, 1, 2, 0, 1 });
	assert_null(tg_cross_entropy(x, flat));
	assert_error(ctx, TG_ESHAPE, "tg_cross_entropy: logits (2,3,2,2) take labels of shape "
				     "(2,2,2); labels are (2,4)");
	tg_clear_error(ctx);
	assert_null(tg_nll(x, tg_zeros(ctx, TG_I64, SHAPE(2, 3, 2))));
	assert_error(ctx, TG_ESHAPE, "tg_nll: logp (2,3,2,2) take labels of shape (2,2,2); "
				     "labels are (2,3,2)");
	tg_clear_error(ctx);
	tg_tensor *bad = tg_from_i64(ctx, SHAPE(2, 2, 2), (int64_t[]){ 0, 1, 2, 0, 1, 3, 0, 1 });
	assert_null(tg_cross_entropy(x, bad));
	assert_error(ctx, TG_EARG, "tg_cross_entropy: labels[5] = 3 is outside [0, 3)");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy(x, tg_zeros(ctx, TG_F64, SHAPE(2, 2, 2))));
	assert_error(ctx, TG_EDTYPE, "tg_cross_entropy: labels is f64 (2,2,2)");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy_i32(x, (int32_t[]){ 0, 1 }, 2));
	assert_error(ctx, TG_ESHAPE, "tg_cross_entropy_i32: 2 labels for logits (2,3,2,2); "
				     "expected 8");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy(tg_scalar(ctx, TG_F64, 1), IDX(ctx, 0)));
	assert_error(ctx, TG_ESHAPE, "tg_cross_entropy: logits () must be (C), (N,C) or (N,C,d1,...)");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy_i32(tg_scalar(ctx, TG_F64, 1), (int32_t[]){ 0 }, 1));
	assert_error(ctx, TG_ESHAPE, "tg_cross_entropy_i32: logits () must be");
	tg_clear_error(ctx);
	assert_null(tg_cross_entropy(tg_zeros(ctx, TG_F64, SHAPE(4)), IDX(ctx, 0)));
	assert_error(ctx, TG_ESHAPE, "tg_cross_entropy: logits (4,) take labels of shape (); "
				     "labels are (1,)");
	tg_clear_error(ctx);
}

static void long_rows_of_softmax_and_cross_entropy_match_long_double(void **state)
{
	tg_ctx *ctx = *state;
	const int64_t ks[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 1003 }; /* 2-8: their own loops */
	uint64_t seed = 12345;
	for (int dti = 0; dti < 2; dti++) {
		tg_dtype dt = dti ? TG_F32 : TG_F64;
		double tol = dti ? 2e-6 : 1e-13; /* relative, per value */
		for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
			const int64_t k = ks[ki], rows = 3;
			double *v = malloc((size_t)(rows * k) * sizeof *v);
			assert_non_null(v);
			for (int64_t i = 0; i < rows * k; i++) {
				seed = seed * 6364136223846793005u + 1442695040888963407u;
				v[i] = ((double)(seed >> 11) / 9007199254740992.0 - 0.5) * 60;
			}
			/* each row's maximum, so large that a shift by any other value
			 * overflows e^x: at the start, in the middle, at the end */
			const int64_t at[3] = { 0, k / 2, k - 1 };
			const double big = dti ? 120 : 750;
			/* below the smallest normal number, absolutely */
			const double tiny = tol * (dti ? FLT_MIN : DBL_MIN);
			for (int64_t r = 0; r < rows; r++)
				v[r * k + at[r]] = big + (double)r;
			if (dt == TG_F32)
				for (int64_t i = 0; i < rows * k; i++)
					v[i] = (float)v[i];
			int64_t lab[3] = { k - 1, 0, k / 3 };
			tg_tensor *x = tg_param(tg_from_f64(ctx, dt, SHAPE(rows, k), v));
			tg_tensor *labels = tg_from_i64(ctx, SHAPE(rows), lab);
			tg_tensor *sm = tg_softmax(x), *lsm = tg_log_softmax(x);
			tg_tensor *ce = tg_cross_entropy(x, labels);
			assert_int_equal(tg_backward(ce), 0);
			long double want_ce = 0;
			for (int64_t r = 0; r < rows; r++) {
				const double *row = v + r * k;
				long double m = big + r, s = 0;
				for (int64_t j = 0; j < k; j++)
					s += expl((long double)row[j] - m);
				for (int64_t j = 0; j < k; j++) {
					long double p = expl((long double)row[j] - m) / s;
					long double lp = (long double)row[j] - m - logl(s);
					long double g = (p - (j == lab[r])) / rows;
					size_t i = (size_t)(r * k + j);
					/* x - m rounds in the dtype: an error of |x - m| ulps in p
					 * (and p underflows, for most j) */
					long double rel = tol * (1 + fabsl(lp));
					assert_true(fabsl(tg_get(sm, i) - p) <= rel * p + tiny);
					assert_true(fabsl(tg_get(lsm, i) - lp) <= tol * (fabsl(lp) + 1));
					assert_true(fabsl(tg_get(tg_grad(x), i) - g) <=
						    rel * fabsl(g) + tiny + tol / rows * (j == lab[r]));
				}
				want_ce += m + logl(s) - row[lab[r]];
			}
			want_ce /= rows;
			assert_true(fabsl(tg_item(ce) - want_ce) <= tol * (fabsl(want_ce) + 1));
			/* the fused gradient rounds as the composed form does */
			tg_tensor *composed = tg_mul_scalar(
				tg_sub(tg_softmax(x), tg_one_hot(labels, dt, k)), 1.0 / (double)rows);
			for (size_t i = 0; i < (size_t)(rows * k); i++)
				assert_true(tg_get(composed, i) == tg_get(tg_grad(x), i));
			/* softmax's fused gradient, the same way: dout = x / 7 */
			tg_zero_grad(x);
			tg_tensor *dout = tg_mul_scalar(tg_detach(x), 1.0 / 7);
			assert_int_equal(tg_backward_ex(tg_softmax(x), dout, 0), 0);
			tg_tensor *y = tg_softmax(x);
			tg_tensor *dot = tg_sum_axis(tg_mul(dout, y), -1, true);
			composed = tg_mul(y, tg_sub(dout, dot));
			for (size_t i = 0; i < (size_t)(rows * k); i++)
				assert_true(tg_get(composed, i) == tg_get(tg_grad(x), i));
			/* and log_softmax's: dout - e^y sum(dout) */
			tg_zero_grad(x);
			assert_int_equal(tg_backward_ex(tg_log_softmax(x), dout, 0), 0);
			y = tg_log_softmax(x);
			composed = tg_sub(dout, tg_mul(tg_exp(y), tg_sum_axis(dout, -1, true)));
			for (size_t i = 0; i < (size_t)(rows * k); i++)
				assert_true(tg_get(composed, i) == tg_get(tg_grad(x), i));
			free(v);
			tg_reset(ctx);
		}
	}
}

static void index_tensors_never_require_a_gradient(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *idx = IDX(ctx, 1, 2);
	assert_int_equal(tg_dtype_of(idx), TG_I32);
	assert_near(tg_get(idx, 1), 2, 0);
	assert_null(tg_set_requires_grad(idx, true));
	assert_error(ctx, TG_EDTYPE, "tg_set_requires_grad: i32 (2,) is an index tensor");
	tg_clear_error(ctx);
	assert_null(tg_param(idx));
	assert_error(ctx, TG_EDTYPE, "tg_param: i32 (2,) is an index tensor");
	tg_clear_error(ctx);
	assert_null(tg_add(idx, idx));
	assert_error(ctx, TG_EDTYPE, "tg_add: argument 0 is an index tensor (i32 (2,))");
	tg_clear_error(ctx);
	assert_null(tg_full(ctx, TG_I64, SHAPE(2), 0.5));
	assert_error(ctx, TG_EARG, "tg_full: value 0.5 (element 0) is not a whole number");
	tg_clear_error(ctx);
	assert_null(tg_randn(ctx, TG_I32, SHAPE(2), 0, 1));
	assert_error(ctx, TG_EDTYPE, "tg_randn: dtype i32");
	tg_clear_error(ctx);
	tg_tensor *kept = tg_keep(tg_from_f64(ctx, TG_I64, SHAPE(3), (double[]){ 7, -1, 3e12 }));
	assert_non_null(kept);
	assert_near(tg_get(kept, 2), 3e12, 0);
	assert_ctx_ok(ctx);
}

/* A large one-hot matrix is split across the threads by rows: on 1 to 3
 * threads, with row counts that are no multiple of the parts, each row
 * holds its one 1 and zeros. */
static void one_hot_split_across_threads_sets_each_row(void **state)
{
	(void)state;
	static const int64_t cases[][2] = { { 40001, 3 }, { 1031, 37 }, { 16411, 64 } };
	for (int threads = 1; threads <= 3; threads++)
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
			for (int d = 0; d < 2; d++) {
				const int64_t n = cases[c][0], k = cases[c][1];
				tg_dtype dt = d ? TG_F64 : TG_F32;
				tg_ctx *ctx = tg_ctx_new(1);
				assert_non_null(ctx);
				tg_set_threads(ctx, threads);
				int32_t *l = malloc((size_t)n * sizeof *l);
				assert_non_null(l);
				for (int64_t i = 0; i < n; i++)
					l[i] = (int32_t)((i * 7919) % k);
				/* a step tensor of ones first: a row left unwritten reads 1 */
				tg_ones(ctx, dt, SHAPE(n, k));
				tg_reset(ctx);
				tg_tensor *h = tg_one_hot(tg_labels(ctx, n, l), dt, k);
				assert_ctx_ok(ctx);
				for (int64_t i = 0; i < n; i++)
					for (int64_t m = 0; m < k; m++) {
						double got = tg_get(h, (size_t)(i * k + m));
						if (got != (m == l[i]))
							fail_msg("(%lld,%lld) %s, %d threads: [%lld,%lld] "
								 "is %g",
								 (long long)n, (long long)k,
								 d ? "f64" : "f32", threads, (long long)i,
								 (long long)m, got);
					}
				free(l);
				tg_ctx_free(ctx);
			}
}

static void one_hot_sets_one_entry_per_row(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *h = tg_one_hot(IDX(ctx, 2, 0), TG_F32, 3);
	assert_ctx_ok(ctx);
	check_shape(h, SHAPE(2, 3));
	check_values(h, (double[]){ 0, 0, 1, 1, 0, 0 }, 6, 0);
	assert_false(tg_requires_grad(h));
	assert_null(tg_one_hot(IDX(ctx, 0, 3), TG_F64, 3));
	assert_error(ctx, TG_EARG, "tg_one_hot: labels[1] = 3 is outside [0, 3)");
	tg_clear_error(ctx);
	assert_null(tg_one_hot(IDX(ctx, 0), TG_F64, 0));
	assert_error(ctx, TG_EARG, "tg_one_hot");
	tg_clear_error(ctx);
	assert_null(tg_one_hot(IDX(ctx, 0), TG_I32, 2));
	assert_error(ctx, TG_EDTYPE, "tg_one_hot: dtype i32");
	tg_clear_error(ctx);
	assert_null(tg_one_hot(IDX(ctx, 0), (tg_dtype)9, 2));
	assert_error(ctx, TG_EDTYPE, "tg_one_hot: dtype unknown; a one-hot matrix is f32 or f64");
}

/* ---- where, clamp, and NaN in maximum and minimum ------------------------------------ */

/* An index tensor (i32 or i64) holding v[0..n). */
static tg_tensor *index_tensor(tg_ctx *ctx, tg_dtype dt, int nd, const int64_t *shape,
			       const int64_t *v)
{
	tg_tensor *t = tg_from_i64(ctx, nd, shape, v);
	assert_non_null(t);
	if (dt == TG_I32) {
		int32_t v32[64];
		assert_true(tg_numel(t) <= 64);
		for (size_t i = 0; i < tg_numel(t); i++)
			v32[i] = (int32_t)v[i];
		t = tg_from_i32(ctx, nd, shape, v32);
	}
	assert_int_equal(tg_dtype_of(t), dt);
	return t;
}

/* An index tensor (i32 or i64) of any size holding v. */
static tg_tensor *index_tensor_any(tg_ctx *ctx, tg_dtype dt, int nd, const int64_t *shape,
				   const int64_t *v)
{
	tg_tensor *t = tg_from_i64(ctx, nd, shape, v);
	assert_non_null(t);
	if (dt == TG_I32) {
		size_t n = tg_numel(t);
		int32_t *v32 = malloc(n * sizeof *v32);
		assert_non_null(v32);
		for (size_t i = 0; i < n; i++)
			v32[i] = (int32_t)v[i];
		t = tg_from_i32(ctx, nd, shape, v32);
		free(v32);
	}
	return t;
}

static void where_picks_a_where_the_mask_is_nonzero_for_every_mask_dtype(void **state)
{
	tg_ctx *ctx = *state;
	/* mask (2,1) broadcast along the columns, a (3,), b scalar -> (2,3) */
	const int64_t m[2] = { 0, -7 };
	const double want[6] = { 9, 9, 9, 1, 2, 3 };
	for (int vt = TG_F32; vt <= TG_F64; vt++) {
		tg_tensor *a = tg_from_f64(ctx, vt, SHAPE(3), (double[]){ 1, 2, 3 });
		tg_tensor *b = tg_scalar(ctx, vt, 9);
		tg_tensor *masks[4] = {
			tg_from_f64(ctx, TG_F32, SHAPE(2, 1), (double[]){ 0, -7 }),
			tg_from_f64(ctx, TG_F64, SHAPE(2, 1), (double[]){ -0.0, 0.25 }),
			index_tensor(ctx, TG_I32, SHAPE(2, 1), m),
			index_tensor(ctx, TG_I64, SHAPE(2, 1), m),
		};
		for (int k = 0; k < 4; k++) {
			tg_tensor *y = tg_where(masks[k], a, b);
			assert_ctx_ok(ctx);
			check_shape(y, SHAPE(2, 3));
			assert_int_equal(tg_dtype_of(y), vt);
			check_values(y, want, 6, 0);
		}
	}
	/* a NaN mask entry is nonzero: true */
	tg_tensor *y = tg_where(tg_from_f64(ctx, TG_F64, SHAPE(2), (double[]){ NAN, 0 }),
				tg_ones(ctx, TG_F64, SHAPE(2)), tg_zeros(ctx, TG_F64, SHAPE(2)));
	check_values(y, (double[]){ 1, 0 }, 2, 0);
	assert_ctx_ok(ctx);
}

static void where_gradient_goes_to_the_chosen_side_summed_to_its_shape(void **state)
{
	tg_ctx *ctx = *state;
	/* mask (2,3) = [1 0 1; 0 0 1], a (2,1), b (3,): out (2,3) */
	tg_tensor *mask = index_tensor(ctx, TG_I32, SHAPE(2, 3), (int64_t[]){ 1, 0, 1, 0, 0, 1 });
	tg_tensor *a = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 1), (double[]){ 10, 20 }));
	tg_tensor *b = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, 2, 3 }));
	tg_tensor *w = tg_from_f64(ctx, TG_F64, SHAPE(2, 3), (double[]){ 1, 2, 3, 4, 5, 6 });
	tg_tensor *y = tg_where(mask, a, b);
	check_values(y, (double[]){ 10, 2, 10, 1, 2, 20 }, 6, 0);
	assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
	assert_ctx_ok(ctx);
	check_values(tg_grad(a), (double[]){ 1 + 3, 6 }, 2, 0);
	check_values(tg_grad(b), (double[]){ 4, 2 + 5, 0 }, 3, 0);
	assert_null(tg_grad(mask));
}

/* where's backward picks dout by the mask as the forward pass read it
 * (its bytes are kept for the backward): a NaN and a -0 in an f32 mask
 * choose as in the forward pass, for a plain and a recorded backward; a
 * mask written in place between the passes is refused, not read again. */
static void where_backward_chooses_by_the_mask_the_forward_pass_read(void **state)
{
	tg_ctx *ctx = *state;
	for (int create = 0; create <= 1; create++) {
		tg_tensor *mask = tg_keep(tg_from_f64(ctx, TG_F32, SHAPE(2, 3),
						      (double[]){ NAN, -0.0, 3, 0, -1, 0 }));
		tg_tensor *a = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 3),
						    (double[]){ 1, 2, 3, 4, 5, 6 }));
		tg_tensor *b = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 7, 8, 9 }));
		tg_tensor *w = tg_from_f64(ctx, TG_F64, SHAPE(2, 3), (double[]){ 1, 2, 3, 4, 5, 6 });
		tg_tensor *y = tg_where(mask, tg_mul(a, a), b);
		check_values(y, (double[]){ 1, 8, 9, 7, 25, 9 }, 6, 0);
		if (create) {
			/* a's gradient with history, differentiated again: the
			 * recorded where's own backward chooses by the same bytes */
			tg_tensor *ga = NULL, *l = tg_sum(tg_mul(y, w));
			assert_int_equal(tg_grad_of(1, &l, NULL, 1, &a, &ga, TG_CREATE_GRAPH), 0);
			check_values(ga, (double[]){ 2, 0, 18, 0, 50, 0 }, 6, 0);
			tg_tensor *g2 = NULL, *l2 = tg_sum(ga);
			assert_int_equal(tg_grad_of(1, &l2, NULL, 1, &a, &g2, 0), 0);
			check_values(g2, (double[]){ 2, 0, 6, 0, 10, 0 }, 6, 0);
		} else {
			assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
			check_values(tg_grad(a), (double[]){ 2, 0, 18, 0, 50, 0 }, 6, 0);
			check_values(tg_grad(b), (double[]){ 4, 2, 6 }, 3, 0);
		}
		assert_ctx_ok(ctx);
		tg_reset(ctx);
		tg_zero_grad(a);
		tg_zero_grad(b);
	}
	tg_tensor *mask = tg_keep(tg_from_f64(ctx, TG_F32, SHAPE(3), (double[]){ 1, 0, 1 }));
	tg_tensor *a = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, 2, 3 }));
	tg_tensor *y = tg_where(mask, a, tg_zeros(ctx, TG_F64, SHAPE(3)));
	((float *)tg_data_mut(mask))[1] = 1;
	assert_int_equal(tg_backward(tg_sum(y)), -1);
	assert_error(ctx, TG_EVERSION, "of where was modified in place");
	tg_clear_error(ctx);
}

static void where_reports_shapes_dtypes_and_contexts_that_do_not_fit(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = tg_zeros(ctx, TG_F64, SHAPE(2, 3));
	tg_tensor *m = tg_ones(ctx, TG_F64, SHAPE(2, 3));
	assert_null(tg_where(tg_ones(ctx, TG_F64, SHAPE(4, 1)), a, a));
	assert_error(ctx, TG_ESHAPE,
		     "tg_where: shapes (4,1) (mask), (2,3) (a) and (2,3) (b) do not broadcast");
	tg_clear_error(ctx);
	assert_null(tg_where(m, a, tg_zeros(ctx, TG_F64, SHAPE(2))));
	assert_error(ctx, TG_ESHAPE, "(2,) (b) do not broadcast");
	tg_clear_error(ctx);
	assert_null(tg_where(m, a, tg_zeros(ctx, TG_F32, SHAPE(2, 3))));
	assert_error(ctx, TG_EDTYPE, "tg_where (a, b): dtypes differ: argument 0 is f64 (2,3), "
				     "argument 1 is f32 (2,3)");
	tg_clear_error(ctx);
	assert_null(tg_where(NULL, a, a));
	assert_error(ctx, TG_ENULL, "tg_where: argument 0 (mask) is NULL");
	tg_clear_error(ctx);
	assert_null(tg_where(m, NULL, a));
	assert_error(ctx, TG_ENULL, "tg_where: argument 1 (a) is NULL");
	tg_clear_error(ctx);
	tg_tensor *idx = index_tensor(ctx, TG_I64, SHAPE(2, 3), (int64_t[]){ 1, 1, 1, 1, 1, 1 });
	assert_null(tg_where(m, idx, idx));
	assert_error(ctx, TG_EDTYPE, "tg_where (a, b): argument 0 is an index tensor (i64 (2,3))");
	tg_clear_error(ctx);
	tg_ctx *other = tg_ctx_new(2);
	assert_null(tg_where(tg_ones(other, TG_F64, SHAPE(2, 3)), a, a));
	assert_error(ctx, TG_ECTX, "tg_where: mask belongs to another context");
	tg_ctx_free(other);
}

static void clamp_holds_values_to_the_bounds_and_keeps_nan(void **state)
{
	tg_ctx *ctx = *state;
	const double x[6] = { -3, -1, 0.5, 1, 2, NAN };
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *t = tg_from_f64(ctx, dt, SHAPE(6), x);
		tg_tensor *both = tg_clamp(t, -1, 1);
		tg_tensor *below = tg_clamp(t, -INFINITY, 0);
		tg_tensor *above = tg_clamp(t, 0.75, INFINITY);
		tg_tensor *point = tg_clamp(t, 0.5, 0.5);
		assert_ctx_ok(ctx);
		const double want[4][5] = {
			{ -1, -1, 0.5, 1, 1 },
			{ -3, -1, 0, 0, 0 },
			{ 0.75, 0.75, 0.75, 1, 2 },
			{ 0.5, 0.5, 0.5, 0.5, 0.5 },
		};
		tg_tensor *ys[4] = { both, below, above, point };
		for (int k = 0; k < 4; k++)
			for (size_t i = 0; i < 5; i++)
				if (tg_get(ys[k], i) != want[k][i])
					fail_msg("clamp %d: element %zu = %g, expected %g", k, i,
						 tg_get(ys[k], i), want[k][i]);
		for (int k = 0; k < 4; k++)
			assert_true(isnan(tg_get(ys[k], 5)));
	}
}

/* The gradient passes where lo <= x <= hi, the bounds included (as PyTorch
 * does), and is 0 outside and at NaN. */
static void clamp_gradient_passes_inside_and_at_the_bounds(void **state)
{
	tg_ctx *ctx = *state;
	const double x[7] = { -3, -1, 0.5, 1, 2, NAN, -1.0000001 };
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *p = tg_param(tg_from_f64(ctx, dt, SHAPE(7), x));
		tg_tensor *w = tg_from_f64(ctx, dt, SHAPE(7), (double[]){ 1, 2, 3, 4, 5, 6, 7 });
		assert_int_equal(tg_backward(tg_sum(tg_mul(tg_clamp(p, -1, 1), w))), 0);
		assert_ctx_ok(ctx);
		check_values(tg_grad(p), (double[]){ 0, 2, 3, 4, 0, 0, 0 }, 7, 0);
		/* a NaN or infinite dout outside the bounds still gives 0 there */
		tg_zero_grad(p);
		tg_tensor *dy = tg_from_f64(ctx, dt, SHAPE(7),
					    (double[]){ NAN, 1, 1, 1, INFINITY, 1, NAN });
		assert_int_equal(tg_backward_ex(tg_clamp(p, -1, 1), dy, 0), 0);
		check_values(tg_grad(p), (double[]){ 0, 1, 1, 1, 0, 0, 0 }, 7, 0);
		tg_reset(ctx);
	}
}

/* ---- masked routes select: +0 off the route, whatever dout holds ---------------- */
/* The gradients that route dout through a mask (relu and its fused forms,
 * pick, maximum and minimum) select it, as PyTorch does: an element off the
 * route gets +0 even where dout is infinite, NaN or negative (not the NaN
 * of inf 0, nor -0), one on it dout itself (or its half on a tie). Each case
 * makes its parameters p and dout (NULL: a one-element output) in dtype dt
 * and returns the output; want holds each parameter's gradient. */
typedef tg_tensor *(*masked_case)(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy);

static tg_tensor *masked_param(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
			       const double *v)
{
	return tg_param(tg_from_f64(ctx, dt, ndim, shape, v));
}
#define MP(ctx, dt, v, ...) masked_param(ctx, dt, NDIM_OF(__VA_ARGS__), SHAPE_OF(__VA_ARGS__), v)
#define SHAPE_OF(...) (const int64_t[]){ __VA_ARGS__ }
#define NDIM_OF(...) ((int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)))

/* In the plain walk, tg_grad_of, and both under TG_CREATE_GRAPH, f32 and
 * f64: every gradient element equal to want's, of the same sign; NaN only
 * where want has NaN (dout on the route). */
static void assert_masked_grads(tg_ctx *ctx, const char *what, masked_case f, int np,
				const double *const *want, const size_t *n)
{
	static const char *const modes[4] = { "tg_backward", "tg_grad_of",
					      "tg_backward (TG_CREATE_GRAPH)",
					      "tg_grad_of (TG_CREATE_GRAPH)" };
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int mode = 0; mode < 4; mode++) {
			tg_tensor *p[4] = { NULL }, *g[4] = { NULL }, *dy = NULL;
			tg_tensor *y = f(ctx, (tg_dtype)dt, p, &dy);
			assert_non_null(y);
			unsigned flags = mode >= 2 ? TG_CREATE_GRAPH : 0;
			if (mode % 2 == 0) {
				assert_int_equal(tg_backward_ex(y, dy, flags), 0);
				for (int i = 0; i < np; i++)
					g[i] = tg_grad(p[i]);
			} else {
				assert_int_equal(tg_grad_of(1, &y, &dy, np, p, g, flags), 0);
			}
			assert_ctx_ok(ctx);
			for (int i = 0; i < np; i++) {
				assert_non_null(g[i]);
				assert_int_equal(tg_numel(g[i]), n[i]);
				for (size_t k = 0; k < n[i]; k++) {
					double v = tg_get(g[i], k), e = want[i][k];
					if (isnan(e) ? !isnan(v) : v != e || signbit(v) != signbit(e))
						fail_msg("%s, %s, %s: gradient %d [%zu] is %g, expected %g",
							 what, tg_dtype_name((tg_dtype)dt), modes[mode], i,
							 k, v, e);
				}
			}
			tg_reset(ctx);
		}
}

/* sum(sqrt(relu(x))) at (-1, 0, 4): sqrt's gradient at relu's 0 is inf */
static tg_tensor *case_sqrt_relu(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	(void)dy;
	p[0] = MP(ctx, dt, ((const double[]){ -1, 0, 4 }), 3);
	return tg_sum(tg_sqrt(tg_relu(p[0])));
}

/* relu's masked elements under an infinite, a NaN and a negative dout, and
 * at a NaN x */
static tg_tensor *case_relu(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	p[0] = MP(ctx, dt, ((const double[]){ -1, 0, -2, -5, 3, NAN }), 6);
	*dy = tg_from_f64(ctx, dt, SHAPE(6), (const double[]){ INFINITY, -INFINITY, NAN, -3, 2, 7 });
	return tg_relu(p[0]);
}

/* relu_backward's own rule (d dout = relu_backward(g, x)): dout's gradient
 * under an infinite and a NaN g where x <= 0 */
static tg_tensor *case_relu_backward(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	p[0] = MP(ctx, dt, ((const double[]){ 1, 2, 3, 4 }), 4);
	tg_tensor *x = tg_from_f64(ctx, dt, SHAPE(4), (const double[]){ -1, 0, 5, NAN });
	*dy = tg_from_f64(ctx, dt, SHAPE(4), (const double[]){ INFINITY, NAN, -2, -INFINITY });
	return tg_relu_backward(p[0], x);
}

/* relu(x @ I + b), b = (-2, 1): column 0 is off; dout infinite and NaN there */
static tg_tensor *case_addmm_relu(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	p[0] = MP(ctx, dt, ((const double[]){ 1, 0, 0, 1 }), 2, 2);
	p[1] = MP(ctx, dt, ((const double[]){ 1, 0, 0, 1 }), 2, 2);
	p[2] = MP(ctx, dt, ((const double[]){ -2, 1 }), 2);
	*dy = tg_from_f64(ctx, dt, SHAPE(2, 2), (const double[]){ INFINITY, 3, NAN, -1 });
	return tg_addmm_relu(p[0], p[1], p[2]);
}

/* relu(conv2d(x, 1, -1)) over a 1x1 kernel: x (1,1,2,2) = (-1, 2, 0.5, 3) */
static tg_tensor *case_conv2d_relu(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	static const tg_conv_opts o = TG_CONV_DEFAULTS;
	p[0] = MP(ctx, dt, ((const double[]){ -1, 2, 0.5, 3 }), 1, 1, 2, 2);
	p[1] = MP(ctx, dt, ((const double[]){ 1 }), 1, 1, 1, 1);
	p[2] = MP(ctx, dt, ((const double[]){ -1 }), 1);
	*dy = tg_from_f64(ctx, dt, SHAPE(1, 1, 2, 2), (const double[]){ INFINITY, 1, NAN, -2 });
	return tg_conv2d_relu(p[0], p[1], p[2], &o);
}

/* relu_max_pool2d of a negative x: every window's max is relu's 0, so no
 * cell is on the route; 2x2 at stride 2 (gated on the pooled size) */
static tg_tensor *case_relu_pool2(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	p[0] = MP(ctx, dt, ((const double[]){ -1, -2, -3, -4, 5, -6, -7, -8 }), 1, 2, 2, 2);
	*dy = tg_from_f64(ctx, dt, SHAPE(1, 2, 1, 1), (const double[]){ INFINITY, -INFINITY });
	return tg_relu_max_pool2d(p[0], 2, 2, 0);
}

/* ... and 3x3 windows at stride 1, padding 1 (the scatter, then the gate) */
static tg_tensor *case_relu_pool3(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	p[0] = MP(ctx, dt, ((const double[]){ -1, -2, -3, -4 }), 1, 1, 2, 2);
	*dy = tg_from_f64(ctx, dt, SHAPE(1, 1, 2, 2), (const double[]){ INFINITY, NAN, -1, 2 });
	return tg_relu_max_pool2d(p[0], 3, 1, 1);
}

/* batch_norm_relu over (4,1) and over (2,1,1,2) (the per-plane kernels):
 * xhat of (1, 2, 3, 4) is negative for 1 and 2, where dout is inf and NaN */
static tg_tensor *bn_relu_case(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy, bool planes)
{
	static const double x[4] = { 1, 2, 3, 4 }, d[4] = { INFINITY, NAN, 1, 2 };
	p[0] = planes ? MP(ctx, dt, x, 2, 1, 1, 2) : MP(ctx, dt, x, 4, 1);
	p[1] = MP(ctx, dt, ((const double[]){ 1 }), 1);
	p[2] = MP(ctx, dt, ((const double[]){ 0 }), 1);
	*dy = planes ? tg_from_f64(ctx, dt, SHAPE(2, 1, 1, 2), d) : tg_from_f64(ctx, dt, SHAPE(4, 1), d);
	return tg_batch_norm_relu(p[0], p[1], p[2], 1e-5, NULL, NULL);
}
static tg_tensor *case_bn_relu(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	return bn_relu_case(ctx, dt, p, dy, false);
}
static tg_tensor *case_bn_relu_planes(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	return bn_relu_case(ctx, dt, p, dy, true);
}

/* sum(pick(x)^2) picking a -inf: its row's dout is -inf */
static tg_tensor *case_pick(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	(void)dy;
	p[0] = MP(ctx, dt, ((const double[]){ 1, -INFINITY, 2, 0.5, 3, -1 }), 2, 3);
	return tg_sum(tg_pow(tg_pick(p[0], tg_labels(ctx, 2, (const int32_t[]){ 1, 2 })), 2));
}

/* maximum and minimum of a (1, 5, 2, NaN, 1) and b (3, 4, 2, 0, 2): the
 * losing side gets +0 under dout inf, -inf, NaN and -3 */
static const double mm_a[5] = { 1, 5, 2, NAN, 1 }, mm_b[5] = { 3, 4, 2, 0, 2 };
static const double mm_d[5] = { INFINITY, -INFINITY, 4, NAN, -3 };
static tg_tensor *minmax_case(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy, bool max)
{
	p[0] = MP(ctx, dt, mm_a, 5);
	p[1] = MP(ctx, dt, mm_b, 5);
	*dy = tg_from_f64(ctx, dt, SHAPE(5), mm_d);
	return (max ? tg_maximum : tg_minimum)(p[0], p[1]);
}
static tg_tensor *case_maximum(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	return minmax_case(ctx, dt, p, dy, true);
}
static tg_tensor *case_minimum(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	return minmax_case(ctx, dt, p, dy, false);
}

/* maximum(a, b) with b (1) broadcast, 0 (the relu written as a max): b's
 * gradient sums its routes, the losing one under a NaN dout */
static tg_tensor *case_maximum_scalar(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	p[0] = MP(ctx, dt, ((const double[]){ -1, 2, -3 }), 3);
	p[1] = MP(ctx, dt, ((const double[]){ 0 }), 1);
	*dy = tg_from_f64(ctx, dt, SHAPE(3), (const double[]){ -2, NAN, 3 });
	return tg_maximum(p[0], p[1]);
}

/* max of (-1, 3, 0, 3) under an infinite dout: the tie takes inf / 2 */
static tg_tensor *case_max(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	p[0] = MP(ctx, dt, ((const double[]){ -1, 3, 0, 3 }), 4);
	*dy = tg_scalar(ctx, dt, INFINITY);
	return tg_max(p[0]);
}

/* max_axis(x, 0) of (1, 5, NaN; -2, -2, 0) under dout (inf, NaN, -3) */
static tg_tensor *case_max_axis(tg_ctx *ctx, tg_dtype dt, tg_tensor **p, tg_tensor **dy)
{
	p[0] = MP(ctx, dt, ((const double[]){ 1, 5, NAN, -2, -2, 0 }), 2, 3);
	*dy = tg_from_f64(ctx, dt, SHAPE(3), (const double[]){ INFINITY, NAN, -3 });
	return tg_max_axis(p[0], 0, false);
}

static void masked_routes_give_plus_zero_whatever_dout_holds(void **state)
{
	tg_ctx *ctx = *state;
	assert_masked_grads(ctx, "sum(sqrt(relu(x)))", case_sqrt_relu, 1,
			    (const double *const[]){ (const double[]){ 0, 0, 0.25 } },
			    (const size_t[]){ 3 });
	assert_masked_grads(ctx, "relu", case_relu, 1,
			    (const double *const[]){ (const double[]){ 0, 0, 0, 0, 2, 0 } },
			    (const size_t[]){ 6 });
	assert_masked_grads(ctx, "relu_backward", case_relu_backward, 1,
			    (const double *const[]){ (const double[]){ 0, 0, -2, 0 } },
			    (const size_t[]){ 4 });
	/* g = (0, 3, 0, -1): da = g I, dw = I g, db = its column sums */
	assert_masked_grads(ctx, "addmm_relu", case_addmm_relu, 3,
			    (const double *const[]){ (const double[]){ 0, 3, 0, -1 },
						     (const double[]){ 0, 3, 0, -1 },
						     (const double[]){ 0, 2 } },
			    (const size_t[]){ 4, 4, 2 });
	/* g = (0, 1, 0, -2): dx = g, dw = sum(x g) = 2 - 6, db = sum(g) */
	assert_masked_grads(ctx, "conv2d_relu", case_conv2d_relu, 3,
			    (const double *const[]){ (const double[]){ 0, 1, 0, -2 },
						     (const double[]){ -4 },
						     (const double[]){ -1 } },
			    (const size_t[]){ 4, 1, 1 });
	assert_masked_grads(ctx, "relu_max_pool2d 2x2", case_relu_pool2, 1,
			    (const double *const[]){ (const double[]){ 0, 0, 0, 0, -INFINITY, 0, 0, 0 } },
			    (const size_t[]){ 8 });
	assert_masked_grads(ctx, "relu_max_pool2d 3x3", case_relu_pool3, 1,
			    (const double *const[]){ (const double[]){ 0, 0, 0, 0 } },
			    (const size_t[]){ 4 });
	assert_masked_grads(ctx, "pick", case_pick, 1,
			    (const double *const[]){ (const double[]){ 0, -INFINITY, 0, 0, 0, -2 } },
			    (const size_t[]){ 6 });
	/* a wins at 1 and 3 (NaN), b at 0 and 4, a tie at 2 */
	assert_masked_grads(ctx, "maximum", case_maximum, 2,
			    (const double *const[]){ (const double[]){ 0, -INFINITY, 2, NAN, 0 },
						     (const double[]){ INFINITY, 0, 2, 0, -3 } },
			    (const size_t[]){ 5, 5 });
	/* a wins at 0, 3 (NaN) and 4, b at 1, a tie at 2 */
	assert_masked_grads(ctx, "minimum", case_minimum, 2,
			    (const double *const[]){ (const double[]){ INFINITY, 0, 2, NAN, -3 },
						     (const double[]){ 0, -INFINITY, 2, 0, 0 } },
			    (const size_t[]){ 5, 5 });
	assert_masked_grads(ctx, "maximum with a scalar", case_maximum_scalar, 2,
			    (const double *const[]){ (const double[]){ 0, NAN, 0 },
						     (const double[]){ 1 } },
			    (const size_t[]){ 3, 1 });
	assert_masked_grads(ctx, "max", case_max, 1,
			    (const double *const[]){ (const double[]){ 0, INFINITY, 0, INFINITY } },
			    (const size_t[]){ 4 });
	assert_masked_grads(ctx, "max_axis", case_max_axis, 1,
			    (const double *const[]){ (const double[]){ INFINITY, NAN, -3, 0, 0, 0 } },
			    (const size_t[]){ 6 });
}

/* The same in the vector kernels (the cases above are short enough for
 * their scalar tails alone): over 4099 elements, relu, maximum against 0
 * and addmm_relu's bias rows ((129,127), b of either sign by column), dout
 * infinite, NaN or negative where masked off, 1 and 2 threads, f32 and f64,
 * plain and recorded: +0 off the route, dout (or, for b, a finite sum) on it. */
static double wide_dout(size_t i)
{
	static const double bad[4] = { INFINITY, -INFINITY, NAN, -3 };
	return i % 5 == 4 ? 1.5 : bad[i % 4];
}

static void assert_plus_zero_or(const char *what, const tg_tensor *g, size_t i, bool on,
				double want)
{
	double v = tg_get(g, i);
	if (on ? !(v == want || (isnan(v) && isnan(want))) : v != 0 || signbit(v))
		fail_msg("%s, %s: element %zu is %g, expected %g", what,
			 tg_dtype_name(tg_dtype_of(g)), i, v, on ? want : 0.0);
}

static void masked_routes_select_in_the_vector_kernels(void **state)
{
	tg_ctx *ctx = *state;
	enum { N = 4099, R = 129, C = 127 };
	static double x[N], d[N], b[C], dr[R * C];
	for (size_t i = 0; i < N; i++) {
		x[i] = i % 3 == 0 ? -1.0 - (double)i : i % 3 == 1 ? 0.0 : (double)i;
		d[i] = i % 3 == 2 ? (double)i - 2000 : wide_dout(i);
	}
	for (size_t j = 0; j < C; j++)
		b[j] = j % 2 ? 1 : -1;
	for (size_t k = 0; k < R * C; k++)
		dr[k] = (k % C) % 2 ? 0.25 * (double)(k % 7) : wide_dout(k);
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int threads = 1; threads <= 2; threads++)
			for (int rec = 0; rec < 2; rec++) {
				unsigned flags = rec ? TG_CREATE_GRAPH : 0;
				tg_set_threads(ctx, threads);
				tg_tensor *p = tg_param(tg_from_f64(ctx, dt, SHAPE(N), x));
				tg_tensor *dy = tg_from_f64(ctx, dt, SHAPE(N), d);
				assert_int_equal(tg_backward_ex(tg_relu(p), dy, flags), 0);
				for (size_t i = 0; i < N; i++)
					assert_plus_zero_or("relu", tg_grad(p), i, x[i] > 0, tg_get(dy, i));
				tg_tensor *q = tg_param(tg_from_f64(ctx, dt, SHAPE(N), x));
				tg_tensor *z = tg_param(tg_zeros(ctx, dt, SHAPE(1)));
				assert_int_equal(tg_backward_ex(tg_maximum(q, z), dy, flags), 0);
				for (size_t i = 0; i < N; i++) /* x = 0 ties: dout / 2 */
					assert_plus_zero_or("maximum", tg_grad(q), i, x[i] >= 0,
							    x[i] == 0 ? tg_get(dy, i) / 2 : tg_get(dy, i));
				tg_tensor *a = tg_param(tg_zeros(ctx, dt, SHAPE(R, 3)));
				tg_tensor *w = tg_param(tg_zeros(ctx, dt, SHAPE(3, C)));
				tg_tensor *bb = tg_param(tg_from_f64(ctx, dt, SHAPE(C), b));
				tg_tensor *dyr = tg_from_f64(ctx, dt, SHAPE(R, C), dr);
				assert_int_equal(tg_backward_ex(tg_addmm_relu(a, w, bb), dyr, flags), 0);
				assert_ctx_ok(ctx);
				for (size_t j = 0; j < C; j++) {
					double v = tg_get(tg_grad(bb), j);
					if (b[j] > 0 ? !isfinite(v) : v != 0 || signbit(v))
						fail_msg("addmm_relu, %s: db[%zu] is %g",
							 tg_dtype_name((tg_dtype)dt), j, v);
				}
				for (size_t k = 0; k < R * 3; k++)
					assert_plus_zero_or("addmm_relu da", tg_grad(a), k, false, 0);
				tg_reset(ctx);
			}
	tg_set_threads(ctx, 1);
}

/* max and max_axis select in each of their kernels: a run (max over all,
 * or along the last axis), narrow columns (inner 2 to 15), wide columns,
 * and a slice split by rows across 2 threads; integer values so that ties
 * of many are common, dout infinite, NaN or negative on most elements. An
 * element of a slice with c maxima gets (1/c) dout if it ties, +0 else. */
static void max_routes_select_in_every_kernel(void **state)
{
	tg_ctx *ctx = *state;
	static const struct {
		int all, axis, ndim;
		int64_t shape[3];
	} cases[] = {
		{ 1, 0, 1, { 4099 } },	      { 0, 1, 2, { 7, 301 } },	  { 0, 1, 3, { 3, 37, 5 } },
		{ 0, 1, 3, { 2, 37, 15 } },   { 0, 1, 3, { 2, 37, 40 } }, { 0, 0, 2, { 4099, 2 } },
		{ 0, -1, 2, { 2, 2049 } },
	};
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		int64_t outer = 1, n = 1, inner = 1, nel = 1;
		int ax = cases[ci].all ? -1 : (cases[ci].axis + cases[ci].ndim) % cases[ci].ndim;
		for (int i = 0; i < cases[ci].ndim; i++)
			nel *= cases[ci].shape[i];
		for (int i = 0; ax >= 0 && i < cases[ci].ndim; i++)
			*(i < ax ? &outer : i > ax ? &inner : &n) *= cases[ci].shape[i];
		if (ax < 0)
			n = nel;
		double *x = malloc((size_t)nel * sizeof *x), *d = malloc((size_t)(outer * inner) * sizeof *d);
		assert_non_null(x);
		assert_non_null(d);
		for (int64_t i = 0; i < nel; i++)
			x[i] = (double)((i * 7919) % 13) - (i % 11 == 3 ? 20 : 0);
		for (int64_t i = 0; i < outer * inner; i++)
			d[i] = wide_dout((size_t)i + ci);
		for (int dt = TG_F32; dt <= TG_F64; dt++)
			for (int threads = 1; threads <= 2; threads++)
				for (int rec = 0; rec < 2; rec++) {
					tg_set_threads(ctx, threads);
					tg_tensor *p = tg_param(tg_from_f64(ctx, dt, cases[ci].ndim,
									    cases[ci].shape, x));
					tg_tensor *m = cases[ci].all ? tg_max(p) : tg_max_axis(p, cases[ci].axis, false);
					tg_tensor *dy = cases[ci].all ? tg_scalar(ctx, dt, d[0])
								      : tg_from_f64(ctx, dt, tg_ndim(m), tg_shape(m), d);
					assert_int_equal(tg_backward_ex(m, dy, rec ? TG_CREATE_GRAPH : 0), 0);
					assert_ctx_ok(ctx);
					for (int64_t o = 0; o < outer; o++)
						for (int64_t i = 0; i < inner; i++) {
							double y = -INFINITY, c = 0;
							for (int64_t k = 0; k < n; k++)
								y = fmax(y, x[(o * n + k) * inner + i]);
							for (int64_t k = 0; k < n; k++)
								c += x[(o * n + k) * inner + i] == y;
							double dd = tg_get(dy, (size_t)(o * inner + i));
							double on = dt == TG_F32 ? (double)((float)(1.0 / c) * (float)dd)
										 : 1.0 / c * dd;
							if (c == 1)
								on = dd;
							for (int64_t k = 0; k < n; k++) {
								size_t at = (size_t)((o * n + k) * inner + i);
								char what[64];
								snprintf(what, sizeof what, "max case %zu, %d threads%s", ci,
									 threads, rec ? ", recorded" : "");
								assert_plus_zero_or(what, tg_grad(p), at, x[at] == y, on);
							}
						}
					tg_reset(ctx);
				}
		free(x);
		free(d);
	}
	tg_set_threads(ctx, 1);
}

/* batch_norm_relu: the values off the relu are masked before the sums, so
 * every gradient stays finite and dbeta is the sum of the open douts */
static void batch_norm_relu_masks_an_infinite_dout_off_the_relu(void **state)
{
	tg_ctx *ctx = *state;
	for (int planes = 0; planes < 2; planes++)
		for (int dt = TG_F32; dt <= TG_F64; dt++)
			for (int mode = 0; mode < 4; mode++) {
				tg_tensor *p[3] = { NULL }, *g[3] = { NULL }, *dy = NULL;
				tg_tensor *y = (planes ? case_bn_relu_planes : case_bn_relu)(
				    ctx, (tg_dtype)dt, p, &dy);
				unsigned flags = mode >= 2 ? TG_CREATE_GRAPH : 0;
				if (mode % 2 == 0) {
					assert_int_equal(tg_backward_ex(y, dy, flags), 0);
					for (int i = 0; i < 3; i++)
						g[i] = tg_grad(p[i]);
				} else {
					assert_int_equal(tg_grad_of(1, &y, &dy, 3, p, g, flags), 0);
				}
				assert_ctx_ok(ctx);
				for (int i = 0; i < 3; i++)
					for (size_t k = 0; k < tg_numel(g[i]); k++)
						if (!isfinite(tg_get(g[i], k)))
							fail_msg("batch_norm_relu%s, %s, mode %d: gradient "
								 "%d [%zu] is %g",
								 planes ? " (planes)" : "",
								 tg_dtype_name((tg_dtype)dt), mode, i, k,
								 tg_get(g[i], k));
				assert_true(tg_get(g[2], 0) == 3);
				tg_reset(ctx);
			}
}

/* A plain backward runs clamp's rule in one pass over x and dout, split
 * across the threads; a recorded one is where over a mask. Their gradients
 * have the same bits: x at and beside both bounds, NaN, zeros of both
 * signs, infinities; dout NaN, infinite, -0; bounds that the f32 rounding
 * moves (0.1) and an infinite one; 1 and 2 threads over 40 000 elements. */
/* pick's plain backward writes where(one_hot(idx), dout[:, None], 0) in
 * one pass: the bits of the select a recorded backward makes with ops, +0
 * off the picked column whatever dout holds (not -0 for a negative dout,
 * not NaN for an infinite or NaN one), on 1 and 2 threads (the rows split
 * from 32768 elements). */
static void pick_gradient_in_one_pass_has_the_bits_of_the_select(void **state)
{
	tg_ctx *ctx = *state;
	enum { N = 3001, K = 37 };
	static int32_t idx[N];
	static double d[N];
	for (int i = 0; i < N; i++) {
		idx[i] = (int32_t)((i * 7 + i / 5) % K);
		d[i] = i % 7 == 1 ? NAN : i % 7 == 3 ? -0.0 : i % 7 == 5 ? -INFINITY : i - 1500.25;
	}
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (int threads = 1; threads <= 2; threads++) {
			tg_set_threads(ctx, threads);
			void *got = NULL;
			size_t bytes = (size_t)N * K * (dt == TG_F64 ? 8 : 4);
			for (int recorded = 0; recorded < 2; recorded++) {
				tg_tensor *x = tg_param(tg_randn(ctx, (tg_dtype)dt, SHAPE(N, K), 0, 1));
				tg_tensor *dy = tg_from_f64(ctx, (tg_dtype)dt, SHAPE(N), d);
				tg_tensor *labels = tg_labels(ctx, N, idx);
				assert_int_equal(tg_backward_ex(tg_pick(x, labels), dy,
								recorded ? TG_CREATE_GRAPH : 0),
						 0);
				assert_ctx_ok(ctx);
				tg_tensor *g = tg_grad(x);
				/* spot checks against the definition, both paths */
				for (int i = 0; i < N; i += 250)
					for (int k = 0; k < K; k++) {
						double v = tg_get(g, (size_t)(i * K + k)), e = k == idx[i] ? d[i] : 0;
						if (!(isnan(v) && isnan(e)) && (v != e || signbit(v) != signbit(e)))
							fail_msg("pick %s, %d threads, %s: grad[%d,%d] is %g, expected %g",
								 recorded ? "recorded" : "plain", threads,
								 tg_dtype_name((tg_dtype)dt), i, k, v, e);
					}
				if (!recorded) {
					got = malloc(bytes);
					assert_non_null(got);
					memcpy(got, tg_data(g), bytes);
				} else if (memcmp(got, tg_data(g), bytes)) {
					fail_msg("pick %s, %d threads: the one-pass gradient differs from "
						 "the select's",
						 tg_dtype_name((tg_dtype)dt), threads);
				}
				tg_reset(ctx);
			}
			free(got);
		}
	tg_set_threads(ctx, 1);
}

static void clamp_gradient_in_one_pass_has_the_bits_of_where(void **state)
{
	tg_ctx *ctx = *state;
	enum { N = 40000 };
	static const double bounds[][2] = { { -1, 2 }, { 0.1, 0.3 }, { -INFINITY, 0 } };
	double *x = malloc(N * sizeof *x), *d = malloc(N * sizeof *d);
	assert_non_null(x);
	assert_non_null(d);
	for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++)
		for (int dt = TG_F32; dt <= TG_F64; dt++) {
			double lo = bounds[b][0], hi = bounds[b][1];
			const double sp[] = { lo, hi, nextafter(lo, -INFINITY), nextafter(hi, INFINITY),
					      (float)lo, (float)hi, NAN, 0.0, -0.0, INFINITY, -INFINITY };
			enum { NSP = sizeof sp / sizeof sp[0] };
			for (int i = 0; i < N; i++) {
				x[i] = i % 3 ? sp[i % NSP] : -3 + 6.0 * i / N;
				d[i] = i % 7 == 1 ? NAN : i % 7 == 3 ? -0.0 : i % 7 == 5 ? INFINITY : i - 5000.5;
			}
			for (int threads = 1; threads <= 2; threads++) {
				tg_set_threads(ctx, threads);
				void *got = NULL;
				size_t bytes = N * (size_t)(dt == TG_F64 ? 8 : 4);
				for (int recorded = 0; recorded < 2; recorded++) {
					tg_tensor *p = tg_param(tg_from_f64(ctx, dt, SHAPE(N), x));
					tg_tensor *dy = tg_from_f64(ctx, dt, SHAPE(N), d);
					assert_int_equal(tg_backward_ex(tg_clamp(p, lo, hi), dy,
									recorded ? TG_CREATE_GRAPH : 0),
							 0);
					assert_ctx_ok(ctx);
					if (!recorded) {
						got = malloc(bytes);
						assert_non_null(got);
						memcpy(got, tg_data(tg_grad(p)), bytes);
					} else if (memcmp(got, tg_data(tg_grad(p)), bytes)) {
						fail_msg("clamp [%g, %g] %s, %d threads: the one-pass "
							 "gradient differs from where's",
							 lo, hi, tg_dtype_name((tg_dtype)dt), threads);
					}
					tg_reset(ctx);
				}
				free(got);
			}
		}
	tg_set_threads(ctx, 1);
	free(x);
	free(d);
}

/* where's rows along the last axis: mask, a and b all of the output's
 * shape, a or b a scalar, a a row broadcast over the rows, and a mask
 * broadcast along them (each read with its own stride), for masks of
 * every dtype (zeros of both signs and NaN among the floats'), against
 * the choice made element by element. */
/* where, its mask and clamp are split across the threads from 32768
 * elements on (where by elements, its rows in part): on 1, 2 and 3
 * threads, over rows of every stride, each element is the plain choice. */
static void where_and_clamp_split_across_threads_match_the_plain_choice(void **state)
{
	(void)state;
	enum { R = 1000, C = 41, N = R * C };
	double *mv = malloc(N * sizeof *mv), *av = malloc(N * sizeof *av),
	       *bv = malloc(N * sizeof *bv);
	int64_t *iv = malloc(N * sizeof *iv);
	assert_true(mv && av && bv && iv);
	for (int i = 0; i < N; i++) {
		mv[i] = i % 5 == 0 ? 0 : i % 5 == 1 ? -0.0 : i % 5 == 2 ? NAN : i % 3 ? 0 : -2;
		iv[i] = isnan(mv[i]) ? 3 : (int64_t)mv[i];
		av[i] = i * 0.5 - 100;
		bv[i] = 7 - i;
	}
	static const int64_t shapes[][3][2] = {
		/* mask, a, b; 0 columns: a scalar */
		{ { R, C }, { R, C }, { R, C } }, { { R, C }, { R, C }, { 0, 0 } },
		{ { R, C }, { 1, C }, { R, C } }, { { R, 1 }, { R, C }, { R, C } },
		{ { R, C }, { 0, 0 }, { 0, 0 } }, { { R, C }, { 0, 0 }, { R, C } },
		/* a mask along the rows picks a row of a or b whole, or fills it
		 * with a one-value side */
		{ { R, 1 }, { R, C }, { 0, 0 } }, { { R, 1 }, { 0, 0 }, { R, C } },
		{ { R, 1 }, { 1, C }, { 0, 0 } },
	};
	for (int threads = 1; threads <= 3; threads++)
		for (size_t c = 0; c < LEN(shapes); c++)
			for (int mt = 0; mt < 2; mt++) {
				tg_ctx *ctx = tg_ctx_new(5);
				assert_non_null(ctx);
				tg_set_threads(ctx, threads);
				tg_tensor *t[3];
				const double *src[3] = { mv, av, bv };
				for (int j = 0; j < 3; j++) {
					const int64_t *sh = shapes[c][j];
					if (sh[0] == 0)
						t[j] = tg_scalar(ctx, TG_F32, src[j][3]);
					else if (j == 0 && mt)
						t[j] = index_tensor_any(ctx, TG_I32, 2, sh, iv);
					else
						t[j] = tg_from_f64(ctx, TG_F32, 2, sh, src[j]);
				}
				tg_tensor *y = tg_where(t[0], t[1], t[2]);
				tg_tensor *cl = tg_clamp(t[1], -50, 60);
				assert_ctx_ok(ctx);
				for (int r = 0; r < R; r++)
					for (int k = 0; k < C; k++) {
						int64_t im = shapes[c][0][1] == 1 ? r : r * C + k;
						int64_t ia = shapes[c][1][0] == 0 ? 3
							     : shapes[c][1][0] == 1 ? k : r * C + k;
						int64_t ib = shapes[c][2][0] == 0 ? 3 : r * C + k;
						bool on = mt ? iv[im] != 0 : mv[im] != 0 || isnan(mv[im]);
						double want = (float)(on ? av[ia] : bv[ib]);
						double got = tg_get(y, (size_t)(r * C + k));
						if (got != want)
							fail_msg("%d threads, case %zu, %s mask: (%d,%d) is "
								 "%g, expected %g",
								 threads, c, mt ? "i32" : "f32", r, k, got,
								 want);
					}
				for (size_t i = 0; i < tg_numel(t[1]); i++) {
					double a = tg_get(t[1], i), want = a < -50 ? -50 : a > 60 ? 60 : a;
					if (tg_get(cl, i) != want)
						fail_msg("%d threads: clamp of element %zu is %g, "
							 "expected %g",
							 threads, i, tg_get(cl, i), want);
				}
				tg_ctx_free(ctx);
			}
	free(mv);
	free(av);
	free(bv);
	free(iv);
}

static void where_over_rows_of_every_stride_matches_the_plain_choice(void **state)
{
	tg_ctx *ctx = *state;
	enum { R = 37, C = 41, N = R * C };
	double mv[N], av[N], bv[N];
	for (int i = 0; i < N; i++) {
		mv[i] = i % 5 == 0 ? 0 : i % 5 == 1 ? -0.0 : i % 5 == 2 ? NAN : i % 3 ? 0 : -2;
		av[i] = i * 0.5 - 100;
		bv[i] = 7 - i;
	}
	static const int64_t shapes[][3][2] = {
		/* mask, a, b; 0 columns: a scalar */
		{ { R, C }, { R, C }, { R, C } }, { { R, C }, { R, C }, { 0, 0 } },
		{ { R, C }, { 0, 0 }, { R, C } }, { { R, C }, { 1, C }, { R, C } },
		{ { R, 1 }, { R, C }, { R, C } }, { { R, C }, { 0, 0 }, { 0, 0 } },
	};
	for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++)
		for (int vt = TG_F32; vt <= TG_F64; vt++)
			for (int mt = 0; mt < 4; mt++) {
				tg_tensor *t[3];
				const double *src[3] = { mv, av, bv };
				for (int j = 0; j < 3; j++) {
					const int64_t *sh = shapes[c][j];
					tg_dtype dt = j == 0 && mt < 2 ? (mt ? TG_F64 : TG_F32) : (tg_dtype)vt;
					if (sh[0] == 0)
						t[j] = tg_scalar(ctx, dt, src[j][3]);
					else if (j == 0 && mt >= 2) {
						int64_t iv[N];
						for (int i = 0; i < sh[0] * sh[1]; i++)
							iv[i] = isnan(mv[i]) ? 3 : (int64_t)mv[i];
						t[j] = index_tensor_any(ctx, mt == 2 ? TG_I32 : TG_I64, 2, sh, iv);
					} else
						t[j] = tg_from_f64(ctx, dt, 2, sh, src[j]);
				}
				tg_tensor *y = tg_where(t[0], t[1], t[2]);
				assert_ctx_ok(ctx);
				for (int r = 0; r < R; r++)
					for (int k = 0; k < C; k++) {
						int64_t im = shapes[c][0][1] == 1 ? r : r * C + k;
						int64_t ia = shapes[c][1][0] == 0 ? 3
							     : shapes[c][1][0] == 1 ? k : r * C + k;
						int64_t ib = shapes[c][2][0] == 0 ? 3 : r * C + k;
						bool on = mt >= 2 ? (isnan(mv[im]) || (int64_t)mv[im] != 0)
								  : mv[im] != 0 || isnan(mv[im]);
						double want = on ? av[ia] : bv[ib];
						if (vt == TG_F32)
							want = (float)want;
						double got = tg_get(y, (size_t)(r * C + k));
						if (got != want)
							fail_msg("where case %zu, mask dtype %d, %s, (%d,%d): "
								 "%g, expected %g",
								 c, mt, tg_dtype_name((tg_dtype)vt), r, k, got, want);
					}
				tg_reset(ctx);
			}
}

static void clamp_rejects_bounds_in_the_wrong_order_or_nan(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(2));
	assert_null(tg_clamp(x, 1, -1));
	assert_error(ctx, TG_EARG, "tg_clamp: bounds [1, -1] are not lo <= hi");
	tg_clear_error(ctx);
	assert_null(tg_clamp(x, NAN, 1));
	assert_error(ctx, TG_EARG, "tg_clamp: bounds [nan, 1]");
	tg_clear_error(ctx);
	assert_null(tg_clamp(x, INFINITY, -INFINITY));
	assert_error(ctx, TG_EARG, "[inf, -inf]");
}

/* NaN wins maximum and minimum from either side and takes the gradient;
 * two NaNs split it as a tie does. */
static void maximum_and_minimum_propagate_nan_from_either_side(void **state)
{
	tg_ctx *ctx = *state;
	const double av[4] = { NAN, 1, NAN, 2 }, bv[4] = { 1, NAN, NAN, 2 };
	for (int dt = TG_F32; dt <= TG_F64; dt++) {
		tg_tensor *a = tg_param(tg_from_f64(ctx, dt, SHAPE(4), av));
		tg_tensor *b = tg_param(tg_from_f64(ctx, dt, SHAPE(4), bv));
		tg_tensor *mx = tg_maximum(a, b), *mn = tg_minimum(a, b);
		for (size_t i = 0; i < 3; i++)
			if (!isnan(tg_get(mx, i)) || !isnan(tg_get(mn, i)))
				fail_msg("element %zu: maximum %g, minimum %g, expected NaN", i,
					 tg_get(mx, i), tg_get(mn, i));
		assert_near(tg_get(mx, 3), 2, 0);
		assert_near(tg_get(mn, 3), 2, 0);
		assert_int_equal(tg_backward(tg_sum(tg_add(mx, tg_mul_scalar(mn, 10)))), 0);
		assert_ctx_ok(ctx);
		check_values(tg_grad(a), (double[]){ 11, 0, 5.5, 5.5 }, 4, 0);
		check_values(tg_grad(b), (double[]){ 0, 11, 5.5, 5.5 }, 4, 0);
	}
}

/* ---- NULL in, NULL out -------------------------------------------------------------- */

/* Batch axes that broadcast to more matrices than int64 counts are refused
 * with a message, not multiplied past it. Tensors that large cannot be
 * made, so two small ones are given the shapes (their values are never
 * read). */
static void bmm_refuses_batch_axes_that_broadcast_past_int64(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = tg_zeros(ctx, TG_F32, SHAPE(1, 1, 1, 1, 2, 2));
	tg_tensor *b = tg_zeros(ctx, TG_F32, SHAPE(1, 1, 1, 1, 2, 2));
	a->shape[0] = a->shape[2] = 65536;
	b->shape[1] = b->shape[3] = 65536;
	a->numel = b->numel = (size_t)65536 * 65536 * 4;
	tg_tensor *c = tg_bmm(a, b);
	a->shape[0] = a->shape[2] = b->shape[1] = b->shape[3] = 1;
	a->numel = b->numel = 4;
	assert_null(c);
	assert_error(ctx, TG_ESHAPE,
		     "tg_bmm: (65536,1,65536,1,2,2) @ (1,65536,1,65536,2,2): the batch axes "
		     "broadcast to more than 2^63 matrices");
}

static void every_op_here_returns_null_for_a_null_input(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(2, 2));
	tg_tensor *idx = IDX(ctx, 0, 1);
	assert_null(tg_sum(NULL));
	assert_null(tg_mean(NULL));
	assert_null(tg_max(NULL));
	assert_null(tg_sum_axis(NULL, 0, false));
	assert_null(tg_mean_axis(NULL, 0, false));
	assert_null(tg_max_axis(NULL, 0, false));
	assert_null(tg_sum_to(NULL, SHAPE(2)));
	assert_null(tg_expand(NULL, SHAPE(2)));
	assert_null(tg_transpose(NULL));
	assert_null(tg_reshape(NULL, SHAPE(4)));
	assert_null(tg_gather_rows(NULL, idx));
	assert_null(tg_index_select(NULL, 0, idx));
	assert_null(tg_embedding(NULL, idx));
	assert_null(tg_pick(NULL, idx));
	assert_null(tg_nll(NULL, idx));
	assert_null(tg_cross_entropy(NULL, idx));
	assert_null(tg_one_hot(NULL, TG_F64, 2));
	assert_null(tg_where(NULL, NULL, NULL));
	assert_null(tg_clamp(NULL, 0, 1));
	assert_ctx_ok(ctx); /* no tensor, no context to blame */
	assert_null(tg_matmul(x, NULL));
	assert_error(ctx, TG_ENULL, "tg_matmul: argument 1 is NULL");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(matmul_f64_matches_a_hand_loop),
		T(matmul_f32_matches_a_hand_loop),
		T(matmul_of_a_2x2_gives_the_hand_product),
		T(matmul_t_matches_matmul_of_transposed_copies_for_all_four_flags),
		T(matmul_rejects_mismatched_inner_sizes),
		T(matmul_rejects_inputs_that_are_not_2d),
		T(transpose_swaps_rows_and_columns),
		T(transpose_of_a_large_matrix_matches_a_hand_loop),
		T(reshape_infers_the_minus_one_entry),
		T(reshape_rejects_a_shape_of_another_size_naming_both),
		T(sum_and_mean_of_all_elements_give_scalars),
		T(sums_along_a_short_last_axis_add_in_the_lanes_order),
		T(sums_of_f32_accumulate_in_double),
		T(max_of_all_elements_is_the_largest),
		T(sum_axis_sums_each_axis_with_and_without_keepdim),
		T(mean_axis_divides_by_the_axis_length),
		T(an_axis_gradient_adds_into_the_held_one),
		T(max_axis_takes_each_slices_largest_with_and_without_keepdim),
		T(max_axis_along_long_rows_has_the_bits_of_the_plain_loop),
		T(max_axis_of_a_vector_drops_to_a_scalar),
		T(reductions_reject_an_axis_out_of_range),
		T(max_splits_the_gradient_evenly_between_tied_maxima),
		cmocka_unit_test(max_axis_split_across_threads_matches_a_plain_loop),
	T(max_gradient_in_one_pass_has_the_bits_of_share_times_dout),
		T(max_of_a_slice_with_nan_is_nan_and_routes_to_the_nans),
		T(max_refuses_an_output_changed_in_place),
		cmocka_unit_test(max_axis_over_narrow_rows_has_the_bits_of_the_plain_loop),
		cmocka_unit_test(max_axis_over_narrow_rows_split_by_blocks_has_the_bits_of_the_plain_loop),
		T(max_axis_over_narrow_rows_has_the_gradient_of_central_differences),
		T(reductions_of_8d_tensors_match_loops_over_every_axis),
		T(sum_to_and_expand_of_8d_tensors_match_loops),
		T(binary_ops_broadcast_8d_shapes_like_loops),
		T(reshape_goes_to_8d_and_back),
		T(a_9d_shape_is_a_shape_error_naming_the_limit),
		T(sum_to_sums_over_each_broadcast_pattern),
		T(sum_to_sums_leading_and_inner_axes_of_a_3d_tensor),
		T(sum_to_rejects_a_shape_that_does_not_broadcast),
		T(expand_repeats_along_broadcast_axes),
		cmocka_unit_test(expand_split_across_threads_takes_each_element_from_its_source),
		cmocka_unit_test(a_uniform_expand_is_read_as_one_value_until_it_changes),
		T(gather_rows_copies_the_indexed_rows),
		T(gather_rows_gradient_adds_repeated_rows),
		T(gather_rows_rejects_an_index_out_of_range),
		cmocka_unit_test(index_select_gradient_adds_in_idx_order_from_zero),
		T(embedding_gradient_in_the_tables_own_buffer_starts_clean),
		cmocka_unit_test(first_gradients_made_in_the_leafs_buffer_match_tg_grad_of),
		cmocka_unit_test(div_gradients_in_one_pass_have_the_bits_of_the_ops),
		cmocka_unit_test(div_gradient_of_b_is_finite_where_the_quotient_is),
		cmocka_unit_test(mul_and_div_gradients_of_a_broadcast_input_have_the_bits_of_the_ops),
		cmocka_unit_test(addmm_relu_has_the_bits_of_relu_of_addmm),
		cmocka_unit_test(a_square_adds_its_product_twice_after_earlier_gradients),
		cmocka_unit_test(a_gradient_buffer_read_by_the_forward_pass_keeps_its_values),
		cmocka_unit_test(a_leafs_gradient_as_the_upstream_gradient_acts_as_a_copy),
		cmocka_unit_test(grad_into_keeps_intermediates_and_disarms),
		cmocka_unit_test(a_broadcast_leafs_buffer_takes_only_its_own_shape),
		T(pick_takes_one_element_per_row),
		T(pick_gradient_is_one_hot_times_dout),
		T(pick_rejects_an_index_out_of_range),
		T(one_hot_sets_one_entry_per_row),
		T(one_hot_split_across_threads_sets_each_row),
		T(index_select_takes_entries_along_any_axis),
		T(index_select_gradient_accumulates_along_the_axis),
		T(embedding_looks_up_rows_for_indices_of_any_shape),
		T(a_short_label_tensor_is_a_shape_error),
		T(nll_of_log_softmax_is_cross_entropy),
		T(cross_entropy_over_classes_along_axis_1_averages_every_position),
		T(cross_entropy_of_one_sample_is_its_one_row),
		T(cross_entropy_labels_must_fit_the_positions),
		T(long_rows_of_softmax_and_cross_entropy_match_long_double),
		T(index_tensors_never_require_a_gradient),
		T(where_picks_a_where_the_mask_is_nonzero_for_every_mask_dtype),
		T(where_gradient_goes_to_the_chosen_side_summed_to_its_shape),
		T(where_reports_shapes_dtypes_and_contexts_that_do_not_fit),
		T(clamp_holds_values_to_the_bounds_and_keeps_nan),
		T(clamp_gradient_passes_inside_and_at_the_bounds),
		T(pick_gradient_in_one_pass_has_the_bits_of_the_select),
		T(masked_routes_give_plus_zero_whatever_dout_holds),
		T(max_routes_select_in_every_kernel),
		T(masked_routes_select_in_the_vector_kernels),
		T(batch_norm_relu_masks_an_infinite_dout_off_the_relu),
		T(clamp_gradient_in_one_pass_has_the_bits_of_where),
		T(where_over_rows_of_every_stride_matches_the_plain_choice),
		cmocka_unit_test(where_and_clamp_split_across_threads_match_the_plain_choice),
		T(where_backward_chooses_by_the_mask_the_forward_pass_read),
		T(clamp_rejects_bounds_in_the_wrong_order_or_nan),
		T(maximum_and_minimum_propagate_nan_from_either_side),
		T(bmm_refuses_batch_axes_that_broadcast_past_int64),
		T(every_op_here_returns_null_for_a_null_input),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
