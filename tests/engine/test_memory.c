/*
 * test_memory.c - the step arena: growth by chaining, the high-water mark,
 * the byte limit, no allocation in steady state, allocation failure, and
 * rewinding to a mark within a step.
 */
#include "test_util.h"
#include "internal.h"

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

/* One step far larger than the rest (parameters drawn into step tensors
 * before training): its blocks go back to the allocator once 1024 steps
 * passed without using them, and not before (an evaluation each epoch
 * finds its blocks); the steps after allocate nothing. */
static void blocks_no_step_used_for_1024_resets_are_given_back(void **state)
{
	(void)state;
	counting c = { 0 };
	tg_allocator a = { counting_alloc, counting_free, &c };
	tg_ctx *ctx = tg_ctx_new_with(1, &a);
	tg_tensor *w = tg_param(tg_randn(ctx, TG_F32, SHAPE(32, 16), 0, 0.1));
	for (int i = 0; i < 8; i++) /* 8 x 8 MB */
		assert_non_null(tg_zeros(ctx, TG_F64, SHAPE(1 << 20)));
	tg_reset(ctx);
	size_t big = ctx->arena.reserved;
	assert_true(big >= (size_t)64 << 20);
	for (int i = 0; i < 1000; i++) {
		assert_non_null(one_step(ctx, w));
		tg_reset(ctx);
	}
	assert_int_equal(ctx->arena.reserved, big); /* kept over 1000 resets */
	long calls = c.calls;
	for (int i = 0; i < 100; i++) {
		assert_non_null(one_step(ctx, w));
		tg_reset(ctx);
	}
	size_t kept = ctx->arena.reserved;
	if (kept > (size_t)8 << 20)
		fail_msg("%zu bytes of blocks kept after 1100 small steps, %zu after the large one",
			 kept, big);
	assert_int_equal(c.calls, calls); /* freed, never allocated again */
	for (int i = 0; i < 2000; i++) { /* the small steps' own blocks stay */
		assert_non_null(one_step(ctx, w));
		tg_reset(ctx);
	}
	assert_int_equal(ctx->arena.reserved, kept);
	assert_int_equal(c.calls, calls);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
	assert_int_equal(c.live, 0);
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

/* y = sum(tanh(a @ b) * exp(a)) of two (64,64) parameters, and backward. */
static int tanh_exp_backward(tg_tensor *a, tg_tensor *b)
{
	tg_tensor *y = tg_sum(tg_mul(tg_tanh(tg_matmul(a, b)), tg_exp(a)));
	return y ? tg_backward(y) : -1;
}

/* The gradients of a and b must equal want (each n values), bit for bit. */
static void assert_grads_are(tg_tensor *const p[2], double *const want[2], size_t n,
			     size_t limit)
{
	for (int j = 0; j < 2; j++) {
		tg_tensor *g = tg_grad(p[j]);
		assert_non_null(g);
		for (size_t i = 0; i < n; i++)
			if (tg_get(g, i) != want[j][i])
				fail_msg("limit %zu: grad of %c[%zu] = %.17g, expected %.17g", limit,
					 'a' + j, i, tg_get(g, i), want[j][i]);
	}
}

/* A backward stopped midway by the arena limit, at every limit from the
 * forward pass's use to the backward's, leaves no gradient half counted:
 * run again after tg_clear_error it gives exactly what one clean backward
 * gives; over a gradient accumulated before, it either adds its share once
 * or refuses the gradients it had added to until tg_zero_grad. */
static void a_failed_backward_leaves_no_gradient_half_accumulated(void **state)
{
	(void)state;
	enum { N = 64 * 64 };
	tg_ctx *ctx = tg_ctx_new(1);
	tg_seed(ctx, 7);
	tg_tensor *p[2] = { tg_param(tg_randn(ctx, TG_F64, SHAPE(64, 64), 0, 0.5)),
			    tg_param(tg_randn(ctx, TG_F64, SHAPE(64, 64), 0, 0.5)) };
	/* the gradients of one backward, and of two accumulated */
	double *want[2][2];
	size_t full = 0;
	for (int k = 0; k < 2; k++) {
		assert_int_equal(tanh_exp_backward(p[0], p[1]), 0);
		full = tg_arena_used(ctx) > full ? tg_arena_used(ctx) : full;
		for (int j = 0; j < 2; j++) {
			want[k][j] = malloc(N * sizeof(double));
			assert_int_equal(tg_copy_to_f64(tg_grad(p[j]), want[k][j], N), 0);
		}
		tg_reset(ctx);
	}
	assert_non_null(tg_exp(tg_tanh(tg_matmul(p[0], p[1]))));
	size_t forward = tg_arena_used(ctx);
	tg_reset(ctx);

	int failed = 0, refused = 0;
	for (int accumulated = 0; accumulated < 2; accumulated++) {
		for (size_t limit = forward; limit < full; limit += (full - forward) / 64) {
			tg_zero_grads(ctx);
			if (accumulated)
				assert_int_equal(tanh_exp_backward(p[0], p[1]), 0);
			tg_reset(ctx);
			tg_set_arena_limit(ctx, limit);
			if (tanh_exp_backward(p[0], p[1]) == 0) {
				tg_set_arena_limit(ctx, 0);
				tg_reset(ctx);
				continue;
			}
			if (tg_status_of(ctx) != TG_ENOMEM) /* the forward pass did not fit */
				fail_msg("limit %zu: %s", limit, tg_error(ctx));
			failed++;
			tg_clear_error(ctx);
			tg_set_arena_limit(ctx, 0);
			if (tg_backward(tg_sum(tg_mul(tg_tanh(tg_matmul(p[0], p[1])),
						       tg_exp(p[0])))) != 0) {
				assert_true(accumulated);
				assert_error(ctx, TG_EARG, "call tg_zero_grad");
				tg_clear_error(ctx);
				refused++;
				tg_zero_grads(ctx);
				assert_int_equal(tanh_exp_backward(p[0], p[1]), 0);
				assert_grads_are(p, want[0], N, limit);
			} else {
				assert_grads_are(p, want[accumulated], N, limit);
			}
			tg_reset(ctx);
		}
	}
	assert_true(failed > 64);
	assert_true(refused > 0);
	assert_ctx_ok(ctx);
	for (int k = 0; k < 4; k++)
		free(want[k / 2][k % 2]);
	tg_ctx_free(ctx);
}

/* A gradient a failed backward added to in place is refused, naming what
 * to do, until tg_zero_grad. */
static void a_gradient_left_partly_accumulated_is_refused_until_zero_grad(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *p[2] = { tg_param(tg_ones(ctx, TG_F64, SHAPE(64, 64))),
			    tg_param(tg_ones(ctx, TG_F64, SHAPE(64, 64))) };
	tg_set_name(p[0], "a");
	assert_int_equal(tanh_exp_backward(p[0], p[1]), 0);
	tg_reset(ctx);
	assert_int_equal(tanh_exp_backward(p[0], p[1]), 0); /* accumulating */
	size_t full = tg_arena_used(ctx);
	tg_reset(ctx);
	/* exp's share of a is added in; the last allocation, in matmul's rule, fails */
	tg_set_arena_limit(ctx, full - 1);
	assert_int_equal(tanh_exp_backward(p[0], p[1]), -1);
	assert_error(ctx, TG_ENOMEM, "step arena limit");
	tg_clear_error(ctx);
	tg_set_arena_limit(ctx, 0);
	assert_null(tg_grad(p[0]));
	assert_error(ctx, TG_EARG,
		     "tg_grad: the gradient of 'a' (64,64) was partly accumulated by a "
		     "tg_backward that failed; call tg_zero_grad");
	tg_clear_error(ctx);
	tg_zero_grad(p[0]);
	assert_non_null(tg_grad(p[0]));
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* A TG_CREATE_GRAPH gradient of a parameter moves into a buffer at
 * tg_reset; when that buffer cannot be had, tg_reset says TG_ENOMEM and
 * the gradient, gone, is refused until tg_zero_grad rather than read as
 * none at all. */
static void a_gradient_tg_reset_cannot_keep_is_refused_until_zero_grad(void **state)
{
	(void)state;
	counting c = { 0 };
	tg_allocator al = { counting_alloc, counting_free, &c };
	tg_ctx *ctx = tg_ctx_new_with(1, &al);
	assert_non_null(ctx);
	tg_tensor *a = tg_set_name(tg_param(tg_ones(ctx, TG_F64, SHAPE(8, 8))), "a");
	tg_tensor *y = tg_sum(tg_mul(a, a));
	assert_int_equal(tg_backward_ex(y, NULL, TG_CREATE_GRAPH), 0);
	assert_ctx_ok(ctx);
	c.fail_at = c.calls + 1; /* the buffer tg_reset makes for a's gradient */
	tg_reset(ctx);
	assert_error(ctx, TG_ENOMEM, "out of memory");
	tg_clear_error(ctx);
	c.fail_at = 0;
	assert_null(tg_grad(a));
	assert_error(ctx, TG_EARG,
		     "tg_grad: the gradient of 'a' (8,8) was lost: tg_reset could not make a "
		     "buffer to keep it from its TG_CREATE_GRAPH tg_backward; call tg_zero_grad");
	tg_clear_error(ctx);
	/* a backward that would add to it is refused the same way */
	assert_int_equal(tg_backward(tg_sum(tg_mul(a, a))), -1);
	assert_error(ctx, TG_EARG, "tg_backward: the gradient of 'a' (8,8) was lost: tg_reset");
	tg_clear_error(ctx);
	tg_reset(ctx);
	tg_zero_grad(a);
	assert_int_equal(tg_backward(tg_sum(tg_mul(a, a))), 0);
	assert_non_null(tg_grad(a));
	assert_true(tg_get(tg_grad(a), 0) == 2);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
	assert_int_equal(c.live, 0);
}

/* A kernel's scratch of n1 x n2 x n3 elements (conv2d's im2col columns:
 * threads x K x L) whose byte count passes size_t is refused, not wrapped
 * round to a small block the kernel would write past. */
static void scratch_whose_size_overflows_is_enomem_not_a_small_block(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	double *ok = tg_arena_array(ctx, "test", TG_F64, 2, 3, 4);
	assert_non_null(ok);
	ok[23] = 1;
	/* 16 x (2^31 - 1) x 2^31 x 8 bytes: 2^69, 2^3 once wrapped */
	assert_null(tg_arena_array(ctx, "conv2d: im2col columns", TG_F64, 16, INT32_MAX,
				   (int64_t)1 << 31));
	assert_error(ctx, TG_ENOMEM,
		     "conv2d: im2col columns: a buffer of 16 x 2147483647 x 2147483648 f64 "
		     "elements is more than memory can hold");
	tg_clear_error(ctx);
	assert_null(tg_arena_array(ctx, "test", TG_F32, (int64_t)1 << 31, (int64_t)1 << 31, 1 << 2));
	assert_error(ctx, TG_ENOMEM, "test: a buffer of");
	tg_ctx_free(ctx);
}

/* Step memory of a size near SIZE_MAX is refused: rounded up to the
 * arena's alignment it would wrap round to a few bytes. */
static void a_size_near_size_max_is_enomem_not_a_wrapped_block(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	/* a current block with room, its cursor off a line: a padded size */
	assert_non_null(tg_arena_alloc(ctx, 16));
	for (size_t back = 1; back <= 64; back++) {
		assert_null(tg_arena_alloc(ctx, SIZE_MAX - back + 1));
		assert_error(ctx, TG_ENOMEM, "out of memory");
		tg_clear_error(ctx);
	}
	assert_non_null(tg_arena_alloc(ctx, 64));
	assert_ctx_ok(ctx);
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

/* The same tensors, made after a mark: each pass of a derivative makes its
 * gradients so (a row of 5 KB, then blocks of 400 KB past the first block
 * of 1 MB, and a scalar whose data lives in its header). */
typedef struct pass_made {
	tg_tensor *t[6];
} pass_made;

static pass_made make_pass(tg_ctx *ctx)
{
	pass_made p = { { tg_full(ctx, TG_F64, SHAPE(640), 1) } };
	for (int i = 1; i < 5; i++)
		p.t[i] = tg_full(ctx, TG_F64, SHAPE(50000), i);
	p.t[5] = tg_scalar(ctx, TG_F64, 7);
	for (int i = 0; i < 6; i++)
		assert_non_null(p.t[i]);
	return p;
}

/* A rewind hands out again, within the step, the memory and the headers
 * handed out since the mark: the next tensors land where the last ones
 * were, in the blocks already chained (none reserved), while what came
 * before the mark keeps its values. The high water counts the peak before
 * the rewind. With the ring of header slots, headers are not handed out
 * again (a slot is taken until its step is over), the memory is. */
static void a_rewind_hands_out_the_same_memory_and_headers_again(void **state)
{
	(void)state;
	for (int ring = 0; ring < 2; ring++) {
		tg_ctx *ctx = ring ? ctx_made_with("TG_HEADER_SPACE", "0", 1) : tg_ctx_new(1);
		tg_tensor *before = tg_full(ctx, TG_F64, SHAPE(1000), 3);
		tg_arena_mark m;
		tg_arena_mark_take(ctx, &m);
		size_t at_mark = tg_arena_used(ctx);
		pass_made first = make_pass(ctx);
		size_t peak = tg_arena_used(ctx), reserved = ctx->arena.reserved;
		assert_true(peak > (1u << 20)); /* past the first block */
		const void *data[6];
		for (int i = 0; i < 6; i++)
			data[i] = tg_data(first.t[i]);
		for (int pass = 0; pass < 3; pass++) {
			tg_arena_rewind(ctx, &m);
			assert_int_equal(tg_arena_used(ctx), at_mark);
			assert_int_equal(tg_arena_high_water(ctx), peak);
			pass_made again = make_pass(ctx);
			for (int i = 0; i < 6; i++) {
				assert_true((again.t[i] == first.t[i]) == !ring);
				if (i < 5) /* the scalar's data is in its header */
					assert_ptr_equal(tg_data(again.t[i]), data[i]);
				assert_near(tg_get(again.t[i], 0), i == 5 ? 7 : i ? i : 1, 0);
			}
			assert_int_equal(tg_arena_used(ctx), peak);
			assert_int_equal(ctx->arena.reserved, reserved);
		}
		for (size_t i = 0; i < 1000; i++)
			assert_near(tg_get(before, i), 3, 0);
		/* the step's high water is the peak, not the sum of the passes */
		tg_reset(ctx);
		assert_int_equal(tg_arena_high_water(ctx), peak);
		assert_ctx_ok(ctx);
		tg_ctx_free(ctx);
	}
}

/* h = 1 * p read by k scalings c_i h, summed: h takes k gradients. The
 * backward adds each one after the second into the sum made for h alone,
 * so four more readers cost their own gradients' tensors, not also four
 * sums of h's size; h's gradient is c_k + c_(k-1) + ... + c_1, in the tape's
 * order, to the bit. */
static size_t readers_backward_bytes(tg_ctx *ctx, tg_tensor *p, int k)
{
	tg_tensor *h = tg_mul_scalar(p, 1.0), *y = NULL;
	for (int i = 1; i <= k; i++) {
		tg_tensor *t = tg_sum(tg_mul_scalar(h, 0.1 * i));
		y = y ? tg_add(y, t) : t;
	}
	size_t forward = tg_arena_used(ctx);
	tg_zero_grad(p);
	assert_int_equal(tg_backward(y), 0);
	size_t used = tg_arena_used(ctx) - forward;
	double want = 0;
	for (int i = k; i >= 1; i--)
		want += 0.1 * i;
	const tg_tensor *g = tg_grad(p);
	for (size_t j = 0; j < tg_numel(p); j++)
		assert_true(tg_get(g, j) == want);
	tg_reset(ctx);
	return used;
}

static void an_intermediates_later_gradients_are_added_into_its_own_sum(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *p = tg_param(tg_randn(ctx, TG_F64, SHAPE(64, 64), 0, 1));
	const size_t bytes = 64 * 64 * sizeof(double);
	size_t two = readers_backward_bytes(ctx, p, 2);
	size_t six = readers_backward_bytes(ctx, p, 6);
	/* a reader's rule makes at most two tensors of h's size (its dout
	 * spread over h's shape, times c); each of its sums used to make a
	 * third */
	assert_true(six <= two + 4 * 2 * bytes);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(steady_state_steps_allocate_nothing),
		cmocka_unit_test(blocks_no_step_used_for_1024_resets_are_given_back),
		cmocka_unit_test(the_arena_grows_past_its_first_block_and_reports_its_high_water),
		cmocka_unit_test(the_arena_limit_turns_exhaustion_into_enomem),
		cmocka_unit_test(running_out_of_memory_names_the_op_and_its_tensor),
		cmocka_unit_test(a_failed_backward_leaves_no_gradient_half_accumulated),
		cmocka_unit_test(a_gradient_left_partly_accumulated_is_refused_until_zero_grad),
		cmocka_unit_test(a_gradient_tg_reset_cannot_keep_is_refused_until_zero_grad),
		cmocka_unit_test(scratch_whose_size_overflows_is_enomem_not_a_small_block),
		cmocka_unit_test(a_size_near_size_max_is_enomem_not_a_wrapped_block),
		cmocka_unit_test(a_failed_allocation_is_enomem_and_the_context_recovers),
		cmocka_unit_test(large_tensors_start_on_a_cache_line),
		cmocka_unit_test(a_rewind_hands_out_the_same_memory_and_headers_again),
		cmocka_unit_test(an_intermediates_later_gradients_are_added_into_its_own_sum),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
