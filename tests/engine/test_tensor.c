/*
 * test_tensor.c - tensors: constructors, accessors, the two lifetimes.
 */
#include "test_util.h"
#include "random.h"

static void constructors_fill_the_values_they_name(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *z = tg_zeros(ctx, TG_F64, SHAPE(2, 3));
	tg_tensor *o = tg_ones(ctx, TG_F32, SHAPE(4));
	tg_tensor *f = tg_full(ctx, TG_F64, SHAPE(2, 2, 2), 2.5);
	tg_tensor *s = tg_scalar(ctx, TG_F32, -1.5);
	tg_tensor *a = tg_from_f64(ctx, TG_F32, SHAPE(2, 2), (double[]){ 1, 2, 3, 4 });
	tg_tensor *b = tg_from_f32(ctx, TG_F64, SHAPE(3), (float[]){ 0.5f, 1.5f, 2.5f });
	tg_tensor *e = tg_empty(ctx, TG_F32, SHAPE(5, 2)); /* values unset */
	assert_ctx_ok(ctx);
	assert_int_equal(tg_numel(e), 10);
	assert_int_equal(tg_dim(e, 0), 5);
	assert_int_equal(tg_dtype_of(e), TG_F32);
	assert_int_equal(tg_ndim(z), 2);
	assert_int_equal(tg_dim(z, 0), 2);
	assert_int_equal(tg_dim(z, -1), 3);
	assert_int_equal(tg_numel(z), 6);
	assert_int_equal(tg_dtype_of(o), TG_F32);
	assert_int_equal(tg_numel(f), 8);
	assert_int_equal(tg_ndim(s), 0);
	assert_int_equal(tg_numel(s), 1);
	for (size_t i = 0; i < 6; i++)
		assert_near(tg_get(z, i), 0, 0);
	for (size_t i = 0; i < 4; i++)
		assert_near(tg_get(o, i), 1, 0);
	for (size_t i = 0; i < 8; i++)
		assert_near(tg_get(f, i), 2.5, 0);
	assert_near(tg_item(s), -1.5, 0);
	assert_near(tg_get(a, 3), 4, 0);
	assert_near(tg_get(b, 2), 2.5, 0);
	char buf[32];
	assert_string_equal(tg_shape_str(f, buf, sizeof buf), "(2,2,2)");
	assert_string_equal(tg_shape_str(b, buf, sizeof buf), "(3,)");
	assert_string_equal(tg_shape_str(s, buf, sizeof buf), "()");
	tg_ctx_free(ctx);
}

/* tg_random_u64_fill is the stream of tg_random_u64, draw for draw, and
 * leaves the generator where as many single draws leave it. */
static void random_fill_is_the_stream_of_single_draws(void **state)
{
	(void)state;
	tg_ctx *a = tg_ctx_new(11), *b = tg_ctx_new(11);
	uint64_t got[300];
	for (size_t n = 0; n <= 300; n += 37) {
		tg_random_u64_fill(a, got, n);
		for (size_t i = 0; i < n; i++)
			assert_true(got[i] == tg_random_u64(b));
		assert_true(tg_random_u64(a) == tg_random_u64(b)); /* the state after */
	}
	got[0] = 1;
	tg_random_u64_fill(NULL, got, 1);
	assert_true(got[0] == 0);
	tg_ctx_free(a);
	tg_ctx_free(b);
}

static void random_tensors_follow_the_seed_and_their_distribution(void **state)
{
	(void)state;
	tg_ctx *c1 = tg_ctx_new(7), *c2 = tg_ctx_new(7), *c3 = tg_ctx_new(8);
	tg_tensor *a = tg_randn(c1, TG_F64, SHAPE(20000), 1.0, 2.0);
	tg_tensor *b = tg_randn(c2, TG_F64, SHAPE(20000), 1.0, 2.0);
	tg_tensor *c = tg_randn(c3, TG_F64, SHAPE(20000), 1.0, 2.0);
	tg_tensor *u = tg_rand(c1, TG_F32, SHAPE(20000), -1.0, 3.0);
	assert_memory_equal(tg_data(a), tg_data(b), 20000 * sizeof(double));
	assert_memory_not_equal(tg_data(a), tg_data(c), 20000 * sizeof(double));
	double sum = 0, sq = 0, lo = 1e9, hi = -1e9, usum = 0;
	for (size_t i = 0; i < 20000; i++) {
		double v = tg_get(a, i);
		sum += v;
		sq += v * v;
		double w = tg_get(u, i);
		lo = fmin(lo, w);
		hi = fmax(hi, w);
		usum += w;
	}
	double mean = sum / 20000, sd = sqrt(sq / 20000 - mean * mean);
	assert_near(mean, 1.0, 0.05);
	assert_near(sd, 2.0, 0.05);
	assert_true(lo >= -1.0 && hi < 3.0);
	assert_near(usum / 20000, 1.0, 0.05);
	tg_ctx_free(c1);
	tg_ctx_free(c2);
	tg_ctx_free(c3);
}

static void uniform_values_stay_below_hi_at_the_extremes_of_a_range(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(3);
	/* hi - lo overflows a double: the values are still inside, and spread */
	tg_tensor *w = tg_rand(ctx, TG_F64, SHAPE(1000), -1e308, 1e308);
	size_t neg = 0;
	for (size_t i = 0; i < 1000; i++) {
		double v = tg_get(w, i);
		if (!(isfinite(v) && v >= -1e308 && v < 1e308))
			fail_msg("value %zu of [-1e308, 1e308) is %g", i, v);
		neg += v < 0;
	}
	assert_true(neg > 400 && neg < 600);
	/* one value fits in [1, 1 + ulp): half the draws used to round up to hi */
	tg_tensor *a = tg_rand(ctx, TG_F64, SHAPE(64), 1, 1 + 0x1p-52);
	tg_tensor *b = tg_rand(ctx, TG_F32, SHAPE(64), 1, 1 + 0x1p-23);
	for (size_t i = 0; i < 64; i++) {
		if (tg_get(a, i) != 1)
			fail_msg("f64 value %zu of [1, 1 + 2^-52) is 1 + %g", i, tg_get(a, i) - 1);
		if (tg_get(b, i) != 1)
			fail_msg("f32 value %zu of [1, 1 + 2^-23) is 1 + %g", i, tg_get(b, i) - 1);
	}
	/* bounds an f32 cannot hold would give infinities */
	assert_null(tg_rand(ctx, TG_F32, SHAPE(4), 0, 1e300));
	assert_int_equal(tg_status_of(ctx), TG_EARG);
	assert_string_equal(tg_error(ctx), "tg_rand: [0, 1e+300) is beyond f32's range");
	tg_clear_error(ctx);
	/* so would a normal distribution's mean or spread */
	assert_null(tg_randn(ctx, TG_F32, SHAPE(4), 1e39, 1));
	assert_string_equal(tg_error(ctx), "tg_randn: mean 1e+39, std 1 is beyond f32's range");
	tg_clear_error(ctx);
	assert_null(tg_randn(ctx, TG_F32, SHAPE(4), 0, 1e300));
	assert_string_equal(tg_error(ctx), "tg_randn: mean 0, std 1e+300 is beyond f32's range");
	assert_int_equal(tg_status_of(ctx), TG_EARG);
	tg_clear_error(ctx);
	assert_non_null(tg_randn(ctx, TG_F64, SHAPE(4), 1e39, 1e300)); /* f64 holds them */
	tg_ctx_free(ctx);
}

static void params_outlive_reset_and_step_tensors_do_not(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_param(tg_full(ctx, TG_F64, SHAPE(2), 3.0));
	tg_tensor *x = tg_full(ctx, TG_F64, SHAPE(2), 4.0);
	assert_true(tg_is_param(w));
	assert_false(tg_is_param(x));
	tg_reset(ctx);
	assert_near(tg_get(w, 1), 3.0, 0);
	assert_ctx_ok(ctx);
	assert_true(isnan(tg_get(x, 0)));
	assert_error(ctx, TG_ESTALE, "freed by tg_reset");
	tg_clear_error(ctx);
	assert_null(tg_add(x, w));
	assert_error(ctx, TG_ESTALE, "tg_add");
	tg_ctx_free(ctx);
}

static void a_stale_tensor_is_caught_after_many_steps(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *old = tg_zeros(ctx, TG_F32, SHAPE(3));
	for (int step = 0; step < 50; step++) {
		tg_reset(ctx);
		for (int i = 0; i < 20; i++)
			assert_non_null(tg_zeros(ctx, TG_F32, SHAPE(3)));
	}
	assert_int_equal(tg_numel(old), 0);
	assert_null(tg_neg(old));
	assert_error(ctx, TG_ESTALE, "tg_neg");
	tg_ctx_free(ctx);
}

static void a_tensor_kept_past_one_reset_is_stale_however_many_follow(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	for (int n = 10; n <= 5000; n *= 5) {
		tg_tensor *old = tg_full(ctx, TG_F64, SHAPE(2), 7.0);
		tg_reset(ctx);
		for (int i = 0; i < n; i++)
			assert_non_null(tg_full(ctx, TG_F64, SHAPE(3), i));
		assert_null(tg_neg(old));
		assert_error(ctx, TG_ESTALE, "tg_neg: tensor (2,) was freed by tg_reset");
		tg_clear_error(ctx);
		tg_reset(ctx);
	}
	tg_ctx_free(ctx);
}

static void bad_shapes_are_errors_that_name_the_shape(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	assert_null(tg_zeros(ctx, TG_F64, SHAPE(2, -3)));
	assert_error(ctx, TG_ESHAPE, "tg_zeros: shape (2,-3): dimension 1 is -3");
	tg_clear_error(ctx);
	assert_null(tg_ones(ctx, TG_F64, SHAPE(0)));
	assert_error(ctx, TG_ESHAPE, "dimension 0 is 0");
	tg_clear_error(ctx);
	assert_null(tg_empty(ctx, TG_F32, SHAPE(3, 0)));
	assert_error(ctx, TG_ESHAPE, "tg_empty: shape (3,0): dimension 1 is 0");
	tg_clear_error(ctx);
	assert_null(tg_zeros(ctx, TG_F64, SHAPE(1, 2, 1, 2, 1, 2, 1, 2, 1)));
	assert_error(ctx, TG_ESHAPE, "tg_zeros: 9 dimensions; a tensor has 0 to 8");
	tg_clear_error(ctx);
	assert_null(tg_zeros(ctx, TG_F64, SHAPE(1 << 30, 1 << 30)));
	assert_error(ctx, TG_ESHAPE, "too many elements");
	tg_clear_error(ctx);
	/* every axis of the largest shape is written out */
	const int64_t t40 = (int64_t)1 << 40;
	assert_null(tg_zeros(ctx, TG_F64, SHAPE(t40, t40, t40, t40, t40, t40, t40, INT64_MIN)));
	assert_error(ctx, TG_ESHAPE,
		     "shape (1099511627776,1099511627776,1099511627776,1099511627776,"
		     "1099511627776,1099511627776,1099511627776,-9223372036854775808): "
		     "dimension 7 is -9223372036854775808");
	tg_clear_error(ctx);
	/* an empty axis is what is wrong, however large the others */
	assert_null(tg_zeros(ctx, TG_F64, SHAPE(1 << 30, 1 << 30, 0)));
	assert_error(ctx, TG_ESHAPE, "tg_zeros: shape (1073741824,1073741824,0): dimension 2 is 0");
	tg_clear_error(ctx);
	assert_null(tg_from_f64(ctx, TG_F64, SHAPE(2), NULL));
	assert_error(ctx, TG_ENULL, "values is NULL");
	tg_clear_error(ctx);
	/* a bad shape is named before the missing values */
	assert_null(tg_from_f64(ctx, TG_F64, SHAPE(0), NULL));
	assert_error(ctx, TG_ESHAPE, "tg_from_f64: shape (0,): dimension 0 is 0");
	tg_clear_error(ctx);
	assert_null(tg_from_f32(ctx, TG_F32, SHAPE(2, 0), NULL));
	assert_error(ctx, TG_ESHAPE, "tg_from_f32: shape (2,0): dimension 1 is 0");
	tg_clear_error(ctx);
	assert_null(tg_from_i32(ctx, SHAPE(0), NULL));
	assert_error(ctx, TG_ESHAPE, "tg_from_i32: shape (0,): dimension 0 is 0");
	tg_clear_error(ctx);
	assert_null(tg_from_i64(ctx, SHAPE(-1), NULL));
	assert_error(ctx, TG_ESHAPE, "tg_from_i64: shape (-1,): dimension 0 is -1");
	tg_clear_error(ctx);
	assert_null(tg_from_i64(ctx, SHAPE(2), NULL));
	assert_error(ctx, TG_ENULL, "tg_from_i64: values is NULL");
	tg_clear_error(ctx);
	assert_true(isnan(tg_item(tg_zeros(ctx, TG_F64, SHAPE(2)))));
	assert_error(ctx, TG_ESHAPE, "tg_item: shape (2,) has 2 elements, not 1");
	tg_clear_error(ctx);
	assert_true(isnan(tg_get(tg_zeros(ctx, TG_F64, SHAPE(2)), 2)));
	assert_error(ctx, TG_EARG, "index 2 out of range");
	tg_ctx_free(ctx);
}

static void data_mut_counts_as_a_change_and_assign_copies(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_zeros(ctx, TG_F64, SHAPE(3));
	tg_tensor *b = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ 1, 2, 3 });
	double *d = tg_data_mut(a);
	d[0] = 5;
	assert_near(tg_get(a, 0), 5, 0);
	assert_int_equal(tg_assign(a, b), 0);
	assert_near(tg_get(a, 2), 3, 0);
	assert_int_equal(tg_assign(a, tg_zeros(ctx, TG_F64, SHAPE(2))), -1);
	assert_error(ctx, TG_ESHAPE, "tg_assign: destination (3,) and source (2,) differ");
	tg_clear_error(ctx);
	double out[3];
	assert_int_equal(tg_copy_to_f64(b, out, 3), 0);
	assert_near(out[1], 2, 0);
	assert_int_equal(tg_copy_to_f64(b, out, 2), -1);
	tg_ctx_free(ctx);
}

static void names_are_copied(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	char name[8] = "fc1.W";
	tg_tensor *w = tg_set_name(tg_param(tg_zeros(ctx, TG_F32, SHAPE(2))), name);
	name[0] = 'X';
	assert_string_equal(tg_name(w), "fc1.W");
	tg_set_name(w, "renamed");
	assert_string_equal(tg_name(w), "renamed");
	tg_set_name(w, "");
	assert_null(tg_name(w));
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(constructors_fill_the_values_they_name),
		cmocka_unit_test(random_fill_is_the_stream_of_single_draws),
		cmocka_unit_test(random_tensors_follow_the_seed_and_their_distribution),
		cmocka_unit_test(uniform_values_stay_below_hi_at_the_extremes_of_a_range),
		cmocka_unit_test(params_outlive_reset_and_step_tensors_do_not),
		cmocka_unit_test(a_stale_tensor_is_caught_after_many_steps),
		cmocka_unit_test(a_tensor_kept_past_one_reset_is_stale_however_many_follow),
		cmocka_unit_test(bad_shapes_are_errors_that_name_the_shape),
		cmocka_unit_test(data_mut_counts_as_a_change_and_assign_copies),
		cmocka_unit_test(names_are_copied),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
