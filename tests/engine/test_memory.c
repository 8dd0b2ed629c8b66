/*
 * test_memory.c - the step arena: growth by chaining, the high-water mark,
 * the byte limit, no allocation in steady state, and allocation failure.
 */
#include "test_util.h"

#include <stdlib.h>

static tg_tensor *one_step(tg_ctx *ctx, tg_tensor *w)
{
	tg_tensor *x = tg_randn(ctx, TG_F32, SHAPE(64, 32), 0, 1);
	tg_tensor *y = tg_sum(tg_relu(tg_matmul(x, w)));
	if (y)
		tg_backward(y);
	return y;
}

static void steady_state_steps_allocate_nothing(void **state)
{
	(void)state;
	counting c = { 0 };
	tg_allocator a = { counting_alloc, counting_free, &c };
	tg_ctx *ctx = tg_ctx_new_with(1, &a);
	tg_tensor *w = tg_param(tg_randn(ctx, TG_F32, SHAPE(32, 16), 0, 0.1));
	for (int i = 0; i < 3; i++) {
		one_step(ctx, w);
		tg_reset(ctx);
	}
	long before = c.calls;
	for (int i = 0; i < 100; i++) {
		assert_non_null(one_step(ctx, w));
		tg_reset(ctx);
	}
	assert_ctx_ok(ctx);
	if (c.calls != before)
		fail_msg("%ld allocations in 100 steady-state steps", c.calls - before);
	tg_ctx_free(ctx);
	assert_int_equal(c.live, 0);
}

static void the_arena_grows_past_its_first_block_and_reports_its_high_water(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	for (int i = 0; i < 40; i++) /* 40 x 400 KB, beyond the first 1 MB block */
		assert_non_null(tg_zeros(ctx, TG_F64, SHAPE(50000)));
	assert_true(tg_arena_used(ctx) >= 40 * 400000);
	size_t high = tg_arena_high_water(ctx);
	tg_reset(ctx);
	assert_int_equal(tg_arena_used(ctx), 0);
	assert_int_equal(tg_arena_high_water(ctx), high);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void the_arena_limit_turns_exhaustion_into_enomem(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_set_arena_limit(ctx, 100000);
	tg_tensor *t = NULL;
	int made = 0;
	while ((t = tg_zeros(ctx, TG_F64, SHAPE(1000))) != NULL)
		made++;
	assert_true(made >= 10 && made < 13);
	assert_error(ctx, TG_ENOMEM, "step arena limit of 100000 bytes reached");
	tg_clear_error(ctx);
	tg_reset(ctx);
	assert_non_null(tg_zeros(ctx, TG_F64, SHAPE(1000)));
	tg_ctx_free(ctx);
}

/* Running out of memory names the function that wanted it and the tensor it
 * was making, in front of what the arena says, in the forward pass and in
 * a backward rule's op alike. */
static void running_out_of_memory_names_the_op_and_its_tensor(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_set_arena_limit(ctx, 100000);
	tg_tensor *x = tg_param(tg_zeros(ctx, TG_F32, SHAPE(100, 100)));
	assert_non_null(tg_mul(x, x)); /* x's zeros and this: 80000 bytes */
	assert_null(tg_relu(tg_mul(x, x)));
	assert_error(ctx, TG_ENOMEM, "tg_mul: f32 (100,100): step arena limit of 100000 bytes");
	tg_clear_error(ctx);
	tg_reset(ctx);
	/* the forward pass fits, the gradient of mul_scalar does not */
	tg_tensor *y = tg_sum(tg_mul_scalar(x, 2));
	assert_non_null(y);
	assert_int_equal(tg_backward(y), -1);
	assert_error(ctx, TG_ENOMEM, ": f32 (100,100): step arena limit of 100000 bytes");
	tg_ctx_free(ctx);
}

static void a_failed_allocation_is_enomem_and_the_context_recovers(void **state)
{
	(void)state;
	/* fail every allocation of a first step in turn */
	for (long n = 1;; n++) {
		counting c = { .fail_at = n };
		tg_allocator a = { counting_alloc, counting_free, &c };
		tg_ctx *ctx = tg_ctx_new_with(1, &a);
		if (!ctx) {
			assert_int_equal(c.live, 0);
			continue;
		}
		tg_tensor *w = tg_param(tg_randn(ctx, TG_F32, SHAPE(32, 16), 0, 0.1));
		tg_tensor *y = w ? one_step(ctx, w) : NULL;
		bool failed = !tg_ok(ctx);
		if (failed) {
			assert_error(ctx, TG_ENOMEM, "out of memory");
			tg_clear_error(ctx);
			tg_reset(ctx);
			tg_tensor *z = tg_zeros(ctx, TG_F32, SHAPE(4));
			assert_non_null(z);
		} else {
			assert_non_null(y);
		}
		tg_ctx_free(ctx);
		assert_int_equal(c.live, 0);
		if (!failed && c.calls < n)
			break; /* the n-th allocation never happened: all covered */
	}
}

/* An allocator whose blocks start 8 bytes past a 16-byte boundary: the
 * least any allocator may give for doubles. */
static void *off8_alloc(size_t size, void *user)
{
	(void)user;
	char *p = malloc(size + 16);
	return p ? p + 8 : NULL;
}

static void off8_free(void *ptr, void *user)
{
	(void)user;
	if (ptr)
		free((char *)ptr - 8);
}

static bool on_a_line(const tg_tensor *t) { return (uintptr_t)tg_data(t) % 64 == 0; }

/* Step tensors and parameters of 512 bytes or more start on a cache line,
 * whatever came before them and whatever the allocator's alignment, in the
 * first block and in those chained after it; smaller ones are packed. */
static void large_tensors_start_on_a_cache_line(void **state)
{
	(void)state;
	tg_allocator off8 = { off8_alloc, off8_free, NULL };
	for (int with = 0; with < 2; with++) {
		tg_ctx *ctx = with ? tg_ctx_new_with(1, &off8) : tg_ctx_new(1);
		assert_non_null(ctx);
		for (int i = 1; i <= 40; i++) {
			tg_tensor *small = tg_zeros(ctx, TG_F32, SHAPE(i));
			tg_tensor *big = tg_zeros(ctx, TG_F32, SHAPE(128 + 37 * i));
			tg_tensor *huge = tg_zeros(ctx, TG_F64, SHAPE(9000 * i + 3));
			tg_tensor *param = tg_param(tg_zeros(ctx, TG_F64, SHAPE(64 + i)));
			assert_true(small && big && huge && param);
			if (!on_a_line(big) || !on_a_line(huge) || !on_a_line(param))
				fail_msg("step %d: tensors of %zu, %zu and %zu bytes at offsets %u, %u, %u",
					 i, tg_numel(big) * 4, tg_numel(huge) * 8, tg_numel(param) * 8,
					 (unsigned)((uintptr_t)tg_data(big) % 64),
					 (unsigned)((uintptr_t)tg_data(huge) % 64),
					 (unsigned)((uintptr_t)tg_data(param) % 64));
		}
		assert_true(tg_arena_used(ctx) > (1u << 20)); /* past the first block */
		/* small tensors are packed in 16-byte steps: 20 bytes take 32 */
		tg_tensor *a = tg_zeros(ctx, TG_F32, SHAPE(5)), *b = tg_zeros(ctx, TG_F32, SHAPE(5));
		assert_int_equal((char *)tg_data(b) - (char *)tg_data(a), 32);
		assert_ctx_ok(ctx);
		tg_ctx_free(ctx);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(steady_state_steps_allocate_nothing),
		cmocka_unit_test(the_arena_grows_past_its_first_block_and_reports_its_high_water),
		cmocka_unit_test(the_arena_limit_turns_exhaustion_into_enomem),
		cmocka_unit_test(running_out_of_memory_names_the_op_and_its_tensor),
		cmocka_unit_test(a_failed_allocation_is_enomem_and_the_context_recovers),
		cmocka_unit_test(large_tensors_start_on_a_cache_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
