/*
 * test_faults.c - one full training step (forward, backward, optimizer,
 * reset) with the N-th allocation failing, for every N, and with the arena
 * limit at every size: each failure is a clean TG_ENOMEM, nothing leaks,
 * and the context trains again once the error is cleared.
 */
#include "../engine/test_util.h"

#include <stdlib.h>

#include "tapegrad_nn.h"

enum { N = 8, D = 6, K = 3 };

/* A net with every kind of module: affine, batch norm, ReLU, dropout. */
static tg_mlp *make_net(tg_ctx *ctx)
{
	tg_mlp_opts o = tg_mlp_defaults();
	o.batchnorm = true;
	o.dropout = 0.25;
	return tg_mlp_new(ctx, "6-5-4-3", &o);
}

/* forward, backward, Adam, reset; 0 when the whole step succeeded */
static int train_step(tg_ctx *ctx, tg_mlp *net, tg_optim *opt)
{
	static const int32_t labels[N] = { 0, 1, 2, 0, 1, 2, 0, 1 };
	tg_tensor *x = tg_randn(ctx, TG_F32, SHAPE(N, D), 0, 1);
	tg_tensor *loss = tg_cross_entropy_i32(tg_mlp_forward(net, x), labels, N);
	int rc = tg_backward(loss);
	if (rc == 0)
		rc = tg_optim_step(opt);
	tg_reset(ctx);
	return rc;
}

/* Builds everything and runs two steps with the fail_at-th allocation
 * failing. Returns whether anything failed. */
static bool run_with_failure(long fail_at, long *calls)
{
	counting c = { .fail_at = fail_at };
	tg_allocator a = { counting_alloc, counting_free, &c };
	tg_ctx *ctx = tg_ctx_new_with(3, &a);
	if (!ctx) {
		assert_int_equal(c.live, 0);
		*calls = c.calls;
		return true;
	}
	tg_mlp *net = make_net(ctx);
	size_t n = 0;
	tg_tensor *const *params = net ? tg_mlp_params(net, &n) : NULL;
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	tg_optim *opt = net ? tg_optim_new(ctx, params, n, &oo) : NULL;
	bool failed = !net || !opt;
	for (int step = 0; step < 2 && !failed; step++)
		failed = train_step(ctx, net, opt) != 0;
	if (failed) {
		assert_error(ctx, TG_ENOMEM, "out of memory");
		tg_clear_error(ctx);
		tg_reset(ctx);
		if (net && opt) { /* the same net trains on once memory is back */
			c.fail_at = 0;
			assert_int_equal(train_step(ctx, net, opt), 0);
			assert_ctx_ok(ctx);
		}
	} else {
		assert_ctx_ok(ctx);
	}
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_ctx_free(ctx);
	if (c.live != 0)
		fail_msg("failing allocation %ld: %ld allocations not freed", fail_at, c.live);
	*calls = c.calls;
	return failed;
}

static void every_failing_allocation_in_a_training_step_is_a_clean_enomem(void **state)
{
	(void)state;
	long total = 0;
	run_with_failure(0, &total);
	assert_true(total > 5);
	long failures = 0;
	for (long n = 1; n <= total; n++) {
		long calls;
		failures += run_with_failure(n, &calls);
	}
	print_message("%ld allocations in two steps; each failed in turn: %ld clean failures\n",
		      total, failures);
	assert_int_equal(failures, total);
}

static void every_arena_limit_gives_a_clean_enomem(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(3);
	tg_mlp *net = make_net(ctx);
	size_t n;
	tg_tensor *const *params = tg_mlp_params(net, &n);
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	tg_optim *opt = tg_optim_new(ctx, params, n, &oo);
	assert_int_equal(train_step(ctx, net, opt), 0);
	size_t need = tg_arena_high_water(ctx);
	long failures = 0;
	for (size_t limit = 16; limit < need; limit += 16) {
		tg_set_arena_limit(ctx, limit);
		if (train_step(ctx, net, opt) != 0) {
			assert_error(ctx, TG_ENOMEM, "step arena limit");
			tg_clear_error(ctx);
			failures++;
		}
	}
	tg_set_arena_limit(ctx, need);
	assert_int_equal(train_step(ctx, net, opt), 0);
	assert_ctx_ok(ctx);
	print_message("a step needs %zu arena bytes; %ld smaller limits each failed cleanly\n",
		      need, failures);
	assert_true(failures > 0);
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_failing_allocation_in_a_training_step_is_a_clean_enomem),
		cmocka_unit_test(every_arena_limit_gives_a_clean_enomem),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
