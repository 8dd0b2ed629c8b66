/*
 * test_ops.c - forward values of the reductions (ops/reduce.c), the matrix
 * ops (ops/matrix.c) and the indexing ops (ops/index.c) against hand-computed
 * values and hand-written loops, in f64 and f32; a few local gradients with a
 * known answer (max's tie rule, pick's one-hot); the errors these ops report.
 * Gradients in general are checked numerically by the op table's test.
 */
#include "../engine/test_util.h"

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

static void max_routes_the_gradient_to_the_first_of_tied_maxima(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 3),
					    (double[]){ 1, 3, 3, 5, 2, 5 }));
	tg_tensor *y = tg_add(tg_max(x), tg_sum(tg_max_axis(x, 1, false)));
	assert_int_equal(tg_backward(y), 0);
	assert_ctx_ok(ctx);
	/* max: the first 5 (index 3); max_axis: index 1 of row 0, index 0 of row 1 */
	check_values(tg_grad(x), (double[]){ 0, 1, 0, 2, 0, 0 }, 6, 0);
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

static void gather_rows_rejects_an_index_out_of_range(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(10, 2));
	assert_null(tg_gather_rows(x, IDX(ctx, 0, 1, 2, 12)));
	assert_error(ctx, TG_EARG, "tg_index_select: idx[3] = 12 is outside [0, 10)");
	tg_clear_error(ctx);
	assert_null(tg_gather_rows(x, IDX(ctx, -1)));
	assert_error(ctx, TG_EARG, "idx[0] = -1 is outside [0, 10)");
	tg_clear_error(ctx);
	assert_null(tg_gather_rows(x, NULL));
	assert_error(ctx, TG_ENULL, "tg_index_select: idx is NULL");
	tg_clear_error(ctx);
	assert_null(tg_gather_rows(x, tg_zeros(ctx, TG_F64, SHAPE(2))));
	assert_error(ctx, TG_EDTYPE, "tg_index_select: idx is f64 (2,); an index tensor is i32");
	tg_clear_error(ctx);
	assert_null(tg_gather_rows(x, tg_zeros(ctx, TG_I32, SHAPE(2, 2))));
	assert_error(ctx, TG_ESHAPE, "tg_index_select: idx is (2,2); expected one dimension");
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
	assert_error(ctx, TG_ESHAPE, "tg_nll: idx (2,) has 2 entries; expected 5");
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
}

/* ---- NULL in, NULL out -------------------------------------------------------------- */

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
		T(sums_of_f32_accumulate_in_double),
		T(max_of_all_elements_is_the_largest),
		T(sum_axis_sums_each_axis_with_and_without_keepdim),
		T(mean_axis_divides_by_the_axis_length),
		T(max_axis_takes_each_slices_largest_with_and_without_keepdim),
		T(max_axis_of_a_vector_drops_to_a_scalar),
		T(reductions_reject_an_axis_out_of_range),
		T(max_routes_the_gradient_to_the_first_of_tied_maxima),
		T(sum_to_sums_over_each_broadcast_pattern),
		T(sum_to_sums_leading_and_inner_axes_of_a_3d_tensor),
		T(sum_to_rejects_a_shape_that_does_not_broadcast),
		T(expand_repeats_along_broadcast_axes),
		T(gather_rows_copies_the_indexed_rows),
		T(gather_rows_gradient_adds_repeated_rows),
		T(gather_rows_rejects_an_index_out_of_range),
		T(pick_takes_one_element_per_row),
		T(pick_gradient_is_one_hot_times_dout),
		T(pick_rejects_an_index_out_of_range),
		T(one_hot_sets_one_entry_per_row),
		T(index_select_takes_entries_along_any_axis),
		T(index_select_gradient_accumulates_along_the_axis),
		T(embedding_looks_up_rows_for_indices_of_any_shape),
		T(a_short_label_tensor_is_a_shape_error),
		T(nll_of_log_softmax_is_cross_entropy),
		T(index_tensors_never_require_a_gradient),
		T(every_op_here_returns_null_for_a_null_input),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
