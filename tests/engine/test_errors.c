/*
 * test_errors.c - the sticky error model: the first error survives a chain
 * of ops, every op given NULL returns NULL, messages name op and shapes.
 */
#include "test_util.h"

#include <limits.h>

static void the_first_error_survives_a_chain_of_ops(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_ones(ctx, TG_F32, SHAPE(2, 3));
	tg_tensor *b = tg_ones(ctx, TG_F32, SHAPE(2, 3));
	tg_tensor *c = tg_ones(ctx, TG_F32, SHAPE(3));
	tg_tensor *y = tg_sum(tg_relu(tg_add(tg_matmul(a, b), c)));
	assert_null(y);
	assert_error(ctx, TG_ESHAPE, "tg_matmul: (2,3) @ (2,3): inner sizes 3 and 2 differ");
	assert_int_equal(tg_backward(y), -1);
	assert_error(ctx, TG_ESHAPE, "tg_matmul"); /* still the first */
	/* while the error is set, valid ops compute nothing */
	assert_null(tg_add(a, b));
	tg_clear_error(ctx);
	assert_ctx_ok(ctx);
	assert_non_null(tg_add(a, b));
	tg_ctx_free(ctx);
}

static void shapes_that_do_not_broadcast_are_named(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_ones(ctx, TG_F64, SHAPE(2, 3));
	tg_tensor *b = tg_ones(ctx, TG_F64, SHAPE(2));
	assert_null(tg_mul(a, b));
	assert_error(ctx, TG_ESHAPE, "tg_mul: shapes (2,3) and (2,) do not broadcast");
	tg_ctx_free(ctx);
}

static void mixed_dtypes_are_refused(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_ones(ctx, TG_F64, SHAPE(2));
	tg_tensor *b = tg_ones(ctx, TG_F32, SHAPE(2));
	assert_null(tg_add(a, b));
	assert_error(ctx, TG_EDTYPE, "tg_add: dtypes differ: argument 0 is f64 (2,), argument 1 is f32 (2,)");
	tg_ctx_free(ctx);
}

static void a_null_argument_is_named(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_ones(ctx, TG_F64, SHAPE(2));
	assert_null(tg_sub(a, NULL));
	assert_error(ctx, TG_ENULL, "tg_sub: argument 1 is NULL");
	tg_clear_error(ctx);
	/* NULL alone carries no context: NULL out, nothing to record, no crash */
	assert_null(tg_exp(NULL));
	assert_null(tg_add(NULL, NULL));
	assert_null(tg_param(NULL));
	assert_int_equal(tg_backward(NULL), -1);
	assert_null(tg_grad(NULL));
	assert_int_equal(tg_ndim(NULL), -1);
	assert_ctx_ok(ctx);
	assert_false(tg_ok(NULL));
	assert_string_equal(tg_error(NULL), "no context (NULL)");
	tg_ctx_free(NULL);
	tg_ctx_free(ctx);
}

static void tensors_of_two_contexts_do_not_mix(void **state)
{
	(void)state;
	tg_ctx *c1 = tg_ctx_new(1), *c2 = tg_ctx_new(2);
	tg_tensor *a = tg_ones(c1, TG_F64, SHAPE(2));
	tg_tensor *b = tg_ones(c2, TG_F64, SHAPE(2));
	assert_null(tg_add(a, b));
	assert_error(c1, TG_ECTX, "tg_add: argument 1 belongs to another context");
	assert_ctx_ok(c2);
	tg_ctx_free(c1);
	tg_ctx_free(c2);
}

static tg_tensor *sum_of(tg_tensor *const *in, void *user)
{
	(void)user;
	return tg_sum(in[0]);
}

/* A stale tensor of context c2 given to a call of context c1: c2 records
 * the stale use, c1 that an argument was not its own, so c1's caller does
 * not see a NULL with no error. */
static void a_stale_tensor_of_another_context_is_an_error_in_both(void **state)
{
	(void)state;
	tg_ctx *c1 = tg_ctx_new(1), *c2 = tg_ctx_new(2);
	tg_tensor *a = tg_ones(c1, TG_F64, SHAPE(2));
	tg_tensor *x = tg_ones(c1, TG_F64, SHAPE(2, 3));
	tg_tensor *kept = tg_ones(c2, TG_F64, SHAPE(2));
	tg_tensor *labels = tg_labels(c2, 2, (int32_t[]){ 0, 2 });
	tg_reset(c2);
	static const char *const expected[] = {
		"tg_add: argument 1 belongs to another context, whose tg_reset freed it",
		"tg_add: argument 0 belongs to another context, whose tg_reset freed it",
		"tg_pick: idx belongs to another context, whose tg_reset freed it",
		"tg_where: the mask belongs to another context, whose tg_reset freed it",
		"tg_vjp: input 0 belongs to another context, whose tg_reset freed it",
	};
	for (int k = 0; k < 5; k++) {
		tg_tensor *out = NULL, *vjp = NULL;
		switch (k) {
		case 0: assert_null(tg_add(a, kept)); break;
		case 1: assert_null(tg_add(kept, a)); break;
		case 2: assert_null(tg_pick(x, labels)); break;
		case 3: assert_null(tg_where(kept, a, a)); break;
		case 4:
			assert_int_equal(tg_vjp(c1, sum_of, NULL, 1, &kept, NULL, &out, &vjp), -1);
			break;
		}
		assert_error(c1, TG_ECTX, expected[k]);
		assert_int_equal(tg_status_of(c2), TG_ESTALE);
		tg_clear_error(c1);
		tg_clear_error(c2);
	}
	/* a stale tensor of the call's own context is that context's TG_ESTALE */
	tg_tensor *old = tg_ones(c1, TG_F64, SHAPE(2));
	tg_reset(c1);
	a = tg_ones(c1, TG_F64, SHAPE(2));
	assert_null(tg_add(a, old));
	assert_error(c1, TG_ESTALE, "tg_add: tensor (2,) was freed by tg_reset");
	assert_ctx_ok(c2);
	tg_ctx_free(c1);
	tg_ctx_free(c2);
}

static void anomaly_mode_names_log_in_log0_times_0(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_set_anomaly(ctx, true);
	tg_tensor *x = tg_param(tg_scalar(ctx, TG_F64, 0));
	tg_tensor *y = tg_mul(tg_log(x), x);
	assert_null(y);
	assert_error(ctx, TG_EANOMALY, "anomaly: log produced -inf in its output");
	tg_ctx_free(ctx);
}

static void anomaly_mode_names_an_overflowing_exp(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_set_anomaly(ctx, true);
	tg_tensor *x = tg_param(tg_from_f64(ctx, TG_F32, SHAPE(2), (double[]){ 1, 100 }));
	assert_null(tg_sum(tg_exp(x)));
	assert_error(ctx, TG_EANOMALY, "anomaly: exp produced inf");
	tg_ctx_free(ctx);
}

static void anomaly_mode_names_a_nan_gradient(void **state)
{
	(void)state;
	/* sqrt(x) at 0 is finite, its gradient 1/(2 sqrt 0) is not */
	tg_ctx *ctx = tg_ctx_new(1);
	tg_set_anomaly(ctx, true);
	tg_tensor *x = tg_param(tg_scalar(ctx, TG_F64, 0));
	tg_tensor *y = tg_sqrt(x);
	assert_non_null(y);
	assert_int_equal(tg_backward(y), -1);
	assert_error(ctx, TG_EANOMALY, "inf");
	assert_non_null(strstr(tg_error(ctx), "div") ? "div" : strstr(tg_error(ctx), "sqrt"));
	tg_ctx_free(ctx);
}

static void without_anomaly_mode_log0_is_minus_infinity(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *y = tg_log(tg_scalar(ctx, TG_F64, 0));
	assert_true(isinf(tg_item(y)) && tg_item(y) < 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void custom_errors_enter_through_tg_fail(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	assert_null(tg_fail(ctx, TG_EARG, "my_op: alpha %g is negative", -1.0));
	assert_null(tg_fail(ctx, TG_EIO, "second"));
	assert_error(ctx, TG_EARG, "my_op: alpha -1 is negative");
	assert_string_equal(tg_status_name(TG_EANOMALY), "TG_EANOMALY");
	/* a code that is no error still records one: the caller returns NULL */
	tg_clear_error(ctx);
	assert_null(tg_fail(ctx, TG_OK, "my_op: bad %s", "alpha"));
	assert_error(ctx, TG_EARG, "tg_fail: code 0 is not an error status; the message: "
				   "my_op: bad alpha");
	tg_clear_error(ctx);
	assert_null(tg_fail(ctx, (tg_status)99, "x"));
	assert_error(ctx, TG_EARG, "tg_fail: code 99 is not an error status");
	tg_ctx_free(ctx);
}

/* A message naming a path of PATH_MAX bytes is kept whole; a longer one
 * keeps its start and its reason, which comes last, around " ... ", cut
 * between UTF-8 characters; through the relay of a code that is no error
 * too. */
static void a_long_message_keeps_its_start_and_its_reason(void **state)
{
	(void)state;
	enum { LONG = 20000 };
	char *path = malloc(LONG + 1);
	assert_non_null(path);
	/* "/dir/" then two-byte characters (e with acute accent) to the end */
	memcpy(path, "/dir/", 5);
	for (size_t i = 5; i + 1 < LONG; i += 2)
		memcpy(path + i, "\xc3\xa9", 2);
	path[LONG - (LONG - 5) % 2] = 0;
	tg_ctx *ctx = tg_ctx_new(1);
	for (int k = 0; k < 3; k++) {
		size_t len = k == 0 ? 4095 : strlen(path); /* whole characters */
		char saved = path[len];
		path[len] = 0;
		if (k < 2)
			assert_null(tg_fail(ctx, TG_EIO, "save: %s: File name too long", path));
		else
			assert_null(tg_fail(ctx, TG_OK, "save: %s: File name too long", path));
		const char *m = tg_error(ctx);
		size_t n = strlen(m);
		const char *start = k < 2 ? "save: /dir/\xc3\xa9" : "tg_fail: code 0 is not";
		assert_memory_equal(m, start, strlen(start));
		assert_true(n >= 19 && !strcmp(m + n - 19, ": File name too long" + 1));
		if (k == 0) {
			assert_int_equal(n, strlen("save: : File name too long") + 4095);
		} else {
			assert_non_null(strstr(m, " ... "));
			assert_true(n < 8192 && n > 8000);
		}
		/* whole characters on both sides of the gap */
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)m[i] == 0xc3)
				assert_int_equal((unsigned char)m[i + 1], 0xa9);
			else if ((unsigned char)m[i] == 0xa9)
				assert_int_equal((unsigned char)m[i - 1], 0xc3);
		path[len] = saved;
		tg_clear_error(ctx);
	}
	tg_ctx_free(ctx);
	free(path);
}

/* The generator's calls take a NULL context without a crash; a thread
 * count above the pool's size counts as the largest it serves; random
 * tensors' parameters and backward's flags are checked. */
static void random_draws_thread_counts_and_flags_take_out_of_range_arguments(void **state)
{
	(void)state;
	assert_int_equal(tg_random_u64(NULL), 0);
	assert_true(isnan(tg_random_uniform(NULL)));
	assert_true(isnan(tg_random_normal(NULL)));
	tg_ctx *ctx = tg_ctx_new(1);
	tg_set_threads(ctx, 100000);
	assert_int_equal(tg_threads(ctx), TG_MAX_THREADS);
	tg_set_threads(ctx, 3);
	assert_int_equal(tg_threads(ctx), 3);
	assert_ctx_ok(ctx);
	static const int bad[] = { 0, -1, INT_MIN };
	for (size_t i = 0; i < LEN(bad); i++) {
		tg_set_threads(ctx, bad[i]);
		assert_error(ctx, TG_EARG, "tg_set_threads: thread count");
		assert_int_equal(tg_threads(ctx), 3);
		tg_clear_error(ctx);
	}
	/* a distribution's parameters are checked like any argument */
	assert_null(tg_randn(ctx, TG_F64, 1, (int64_t[]){ 2 }, 0, -1));
	assert_error(ctx, TG_EARG, "tg_randn: mean 0, std -1; std must be finite and >= 0");
	tg_clear_error(ctx);
	assert_null(tg_randn(ctx, TG_F32, 1, (int64_t[]){ 2 }, NAN, 1));
	assert_error(ctx, TG_EARG, "tg_randn: mean nan");
	tg_clear_error(ctx);
	assert_null(tg_rand(ctx, TG_F64, 1, (int64_t[]){ 2 }, 1, 0));
	assert_error(ctx, TG_EARG, "tg_rand: [1, 0); lo <= hi, both finite");
	tg_clear_error(ctx);
	tg_tensor *c = tg_rand(ctx, TG_F64, 1, (int64_t[]){ 2 }, 3, 3); /* a point */
	assert_near(tg_get(c, 1), 3, 0);
	/* and backward's flags */
	tg_tensor *x = tg_param(tg_ones(ctx, TG_F64, 1, (int64_t[]){ 2 }));
	assert_int_equal(tg_backward_ex(tg_sum(x), NULL, 4), -1);
	assert_error(ctx, TG_EARG, "tg_backward_ex: unknown flags 0x4");
	tg_clear_error(ctx);
	/* each entry point names itself */
	tg_tensor *three = tg_ones(ctx, TG_F64, 1, (int64_t[]){ 3 });
	assert_int_equal(tg_backward_ex(tg_mul_scalar(x, 2), three, 0), -1);
	assert_error(ctx, TG_ESHAPE, "tg_backward_ex: output (2,) and upstream gradient (3,) differ");
	tg_clear_error(ctx);
	assert_int_equal(tg_backward(tg_mul_scalar(x, 2)), -1);
	assert_error(ctx, TG_ESHAPE, "tg_backward: the output has shape (2,); a non-scalar output");
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_first_error_survives_a_chain_of_ops),
		cmocka_unit_test(shapes_that_do_not_broadcast_are_named),
		cmocka_unit_test(mixed_dtypes_are_refused),
		cmocka_unit_test(a_null_argument_is_named),
		cmocka_unit_test(tensors_of_two_contexts_do_not_mix),
		cmocka_unit_test(a_stale_tensor_of_another_context_is_an_error_in_both),
		cmocka_unit_test(anomaly_mode_names_log_in_log0_times_0),
		cmocka_unit_test(anomaly_mode_names_an_overflowing_exp),
		cmocka_unit_test(anomaly_mode_names_a_nan_gradient),
		cmocka_unit_test(without_anomaly_mode_log0_is_minus_infinity),
		cmocka_unit_test(custom_errors_enter_through_tg_fail),
		cmocka_unit_test(a_long_message_keeps_its_start_and_its_reason),
		cmocka_unit_test(random_draws_thread_counts_and_flags_take_out_of_range_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
