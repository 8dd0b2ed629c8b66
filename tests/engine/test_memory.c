/*
 * test_memory.c - the step arena: growth by chaining, the high-water mark,
 * the byte limit, no allocation in steady state, and allocation failure.
 */
#include "test_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The transparent-huge-page mode of the system: "always", "madvise" or
 * "never" (also when unknown). */
static const char *thp_mode(void)
{
	static char mode[16];
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	char line[128] = "";
	if (f) {
		if (!fgets(line, sizeof line, f))
			line[0] = 0;
		fclose(f);
	}
	char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
	if (!a || !b || b - a - 1 >= (long)sizeof mode)
		return "never";
	memcpy(mode, a + 1, (size_t)(b - a - 1));
	mode[b - a - 1] = 0;
	return mode;
}

/* Whether the mapping holding addr carries the huge-page advice (the "hg"
 * of its VmFlags in /proc/self/smaps). */
static bool advised_huge(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	assert_non_null(f);
	char line[512];
	bool inside = false, hg = false;
	uintptr_t a = (uintptr_t)addr;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			inside = a >= lo && a < hi;
			continue;
		}
		if (inside && !strncmp(line, "VmFlags:", 8)) {
			hg = strstr(line, " hg") != NULL;
			break;
		}
	}
	fclose(f);
	return hg;
}

/* A step tensor in an arena block of 4 MiB or more, and a parameter of as
 * much, lie in memory advised for transparent huge pages, whatever the
 * allocator; small ones do not ask. */
static void big_blocks_and_parameters_ask_for_huge_pages(void **state)
{
	(void)state;
	if (!strcmp(thp_mode(), "never"))
		skip();
	counting c = { 0 };
	tg_allocator a = { counting_alloc, counting_free, &c };
	for (int custom = 0; custom <= 1; custom++) {
		tg_ctx *ctx = custom ? tg_ctx_new_with(1, &a) : tg_ctx_new(1);
		tg_tensor *small = tg_zeros(ctx, TG_F32, SHAPE(1024));
		tg_tensor *big = tg_zeros(ctx, TG_F32, SHAPE(4 << 20)); /* 16 MiB */
		tg_tensor *p = tg_param(tg_zeros(ctx, TG_F32, SHAPE(3 << 20)));
		assert_ctx_ok(ctx);
		/* the middle of each: a 2 MiB page wholly inside the allocation */
		assert_true(advised_huge((const char *)tg_data(big) + (8 << 20)));
		assert_true(advised_huge((const float *)tg_data(p) + (3 << 19)));
		if (!strcmp(thp_mode(), "madvise"))
			assert_false(advised_huge(tg_data(small)));
		tg_ctx_free(ctx);
	}
	assert_int_equal(c.live, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(steady_state_steps_allocate_nothing),
		cmocka_unit_test(the_arena_grows_past_its_first_block_and_reports_its_high_water),
		cmocka_unit_test(the_arena_limit_turns_exhaustion_into_enomem),
		cmocka_unit_test(a_failed_allocation_is_enomem_and_the_context_recovers),
		cmocka_unit_test(big_blocks_and_parameters_ask_for_huge_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
