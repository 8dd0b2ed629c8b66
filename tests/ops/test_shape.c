/*
 * test_shape.c - the shape ops (ops/shape.c) and the batched matmul
 * (ops/matrix.c) against hand-computed values and naive index loops, in f64
 * and f32: permute for every order of 3 axes, across tile edges and around the
 * transpose's vector blocks (bits unchanged), a permuted gradient added
 * into the one a leaf holds (the accumulate's bits, no copy made), slice and
 * its adjoint pad_axis, concat and stack of more tensors than a node holds
 * (differentiable to each), split and concat round trips, a slice's
 * gradient added into its rows of the input's (split into many parts,
 * overlapping slices, an input used elsewhere too, a second derivative),
 * bmm's broadcasting
 * against per-item tg_matmul, forward and backward; addmm against a naive
 * loop and against matmul plus add; and every misuse, with
 * its code and a message naming the op. Gradients in general are checked
 * numerically by the op table's test.
 */
#include "../engine/test_util.h"
#include "internal.h" /* tg_gemm, tg_gemm_small */

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* a and b must have one shape and the same values within tol. */
static void check_same(const tg_tensor *a, const tg_tensor *b, double tol)
{
	assert_non_null(a);
	assert_non_null(b);
	check_shape(a, tg_ndim(b), tg_shape(b));
	for (size_t i = 0; i < tg_numel(a); i++)
		if (!(fabs(tg_get(a, i) - tg_get(b, i)) <= tol))
			fail_msg("element %zu: %.15g and %.15g differ (tolerance %g)", i,
				 tg_get(a, i), tg_get(b, i), tol);
}

static int setup(void **state)
{
	*state = tg_ctx_new(7);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	tg_ctx_free(*state);
	return 0;
}

/* A tensor whose element i is start + i. */
static tg_tensor *iota(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape, double start)
{
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	double *v = malloc(n * sizeof *v);
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = start + (double)i;
	tg_tensor *t = tg_from_f64(ctx, dt, ndim, shape, v);
	free(v);
	assert_non_null(t);
	return t;
}

/* Uniform values in [-1, 1) from ctx's generator. */
static tg_tensor *rand_t(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape)
{
	tg_tensor *t = tg_rand(ctx, dt, ndim, shape, -1, 1);
	assert_non_null(t);
	return t;
}

/* ---- permute ------------------------------------------------------------------- */

enum { ND = TG_MAX_DIMS > 8 ? TG_MAX_DIMS : 8 }; /* room for the tests beyond 4-D */

/* Y = X permuted by perm, one element at a time: out index j of axis k is
 * in index j of axis perm[k]. */
static void permute_ref(const double *X, double *Y, int ndim, const int64_t *shape,
			const int *perm)
{
	int64_t oshape[ND], stride[ND];
	size_t n = 1;
	for (int k = 0; k < ndim; k++) {
		oshape[k] = shape[perm[k]];
		n *= (size_t)shape[k];
	}
	int64_t s = 1;
	for (int k = ndim - 1; k >= 0; k--) {
		stride[k] = s;
		s *= shape[k];
	}
	for (size_t t = 0; t < n; t++) {
		size_t rest = t, at = 0;
		for (int k = ndim - 1; k >= 0; k--) {
			size_t j = rest % (size_t)oshape[k];
			rest /= (size_t)oshape[k];
			at += j * (size_t)stride[perm[k]];
		}
		Y[t] = X[at];
	}
}

/* tg_permute(x, perm) against permute_ref, values and shape. */
static void check_permute(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
			  const int *perm)
{
	tg_tensor *x = iota(ctx, dt, ndim, shape, 0);
	size_t n = tg_numel(x);
	double *X = malloc(n * sizeof *X), *Y = malloc(n * sizeof *Y);
	assert_non_null(X);
	assert_non_null(Y);
	assert_int_equal(tg_copy_to_f64(x, X, n), 0);
	permute_ref(X, Y, ndim, shape, perm);
	tg_tensor *y = tg_permute(x, perm);
	assert_ctx_ok(ctx);
	int64_t oshape[ND];
	for (int k = 0; k < ndim; k++)
		oshape[k] = shape[perm[k]];
	check_shape(y, ndim, oshape);
	check_values(y, Y, n, 0);
	free(X);
	free(Y);
	tg_reset(ctx);
}

static void permute_matches_a_naive_loop_for_every_order_of_3_axes(void **state)
{
	tg_ctx *ctx = *state;
	static const int perms[6][3] = { { 0, 1, 2 }, { 0, 2, 1 }, { 1, 0, 2 },
					 { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 } };
	for (int p = 0; p < 6; p++) {
		check_permute(ctx, TG_F64, SHAPE(2, 3, 4), perms[p]);
		check_permute(ctx, TG_F32, SHAPE(2, 3, 4), perms[p]);
	}
}

/* (2,3) -> (3,2) by hand: [[0,1,2],[3,4,5]]^T = [[0,3],[1,4],[2,5]]; and 2-D
 * permute agrees with tg_transpose. */
static void permute_of_2d_is_the_transpose(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota(ctx, TG_F64, SHAPE(2, 3), 0);
	tg_tensor *y = tg_permute(x, (int[]){ 1, 0 });
	check_shape(y, SHAPE(3, 2));
	check_values(y, (double[]){ 0, 3, 1, 4, 2, 5 }, 6, 0);
	check_values(tg_permute(x, (int[]){ -1, -2 }), (double[]){ 0, 3, 1, 4, 2, 5 }, 6, 0);
	check_values(tg_permute(x, (int[]){ 0, 1 }), (double[]){ 0, 1, 2, 3, 4, 5 }, 6, 0);
	assert_ctx_ok(ctx);
}

static void permute_matches_a_naive_loop_for_4d_orders_and_size_one_axes(void **state)
{
	tg_ctx *ctx = *state;
	static const int perms[][4] = { { 3, 1, 0, 2 }, { 0, 2, 1, 3 }, { 1, 0, 3, 2 },
					{ 3, 2, 1, 0 }, { 2, 3, 0, 1 }, { 0, 1, 2, 3 } };
	for (size_t p = 0; p < LEN(perms); p++) {
		check_permute(ctx, TG_F64, SHAPE(2, 1, 3, 4), perms[p]);
		check_permute(ctx, TG_F32, SHAPE(3, 2, 5, 2), perms[p]);
		check_permute(ctx, TG_F64, SHAPE(1, 4, 1, 3), perms[p]);
	}
}

/* Sizes that are not multiples of the 32-element tiles, both paths (the
 * last axis staying last, and a transpose of the last axis). */
static void permute_of_larger_tensors_crosses_tile_edges(void **state)
{
	tg_ctx *ctx = *state;
	check_permute(ctx, TG_F64, SHAPE(37, 70), (int[]){ 1, 0 });
	check_permute(ctx, TG_F32, SHAPE(37, 70), (int[]){ 1, 0 });
	check_permute(ctx, TG_F64, SHAPE(3, 37, 70), (int[]){ 0, 2, 1 });
	check_permute(ctx, TG_F32, SHAPE(3, 37, 70), (int[]){ 2, 1, 0 });
	check_permute(ctx, TG_F64, SHAPE(33, 5, 40), (int[]){ 1, 0, 2 });
	check_permute(ctx, TG_F32, SHAPE(2, 33, 3, 35), (int[]){ 3, 0, 2, 1 });
	tg_tensor *x = rand_t(ctx, TG_F64, SHAPE(45, 66));
	check_same(tg_permute(x, (int[]){ 1, 0 }), tg_transpose(x), 0);
}

/* Every size around the transpose's vector blocks (8 floats, 4 doubles) and
 * their 128-row panels, so that whole blocks, the last rows and the last
 * columns are all met; and transposes inside a permute, where rows and
 * columns are not their tensor's whole axes. */
static void transposes_of_sizes_around_the_blocks_match_a_naive_loop(void **state)
{
	tg_ctx *ctx = *state;
	static const int64_t sizes[] = { 1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 33, 127, 128, 129, 257 };
	for (size_t i = 0; i < LEN(sizes); i++)
		for (size_t j = 0; j < LEN(sizes); j++) {
			check_permute(ctx, TG_F64, SHAPE(sizes[i], sizes[j]), (int[]){ 1, 0 });
			check_permute(ctx, TG_F32, SHAPE(sizes[i], sizes[j]), (int[]){ 1, 0 });
		}
	check_permute(ctx, TG_F32, SHAPE(20, 6, 24), (int[]){ 2, 1, 0 });
	check_permute(ctx, TG_F64, SHAPE(20, 6, 24), (int[]){ 2, 1, 0 });
	check_permute(ctx, TG_F32, SHAPE(17, 3, 33), (int[]){ 2, 1, 0 });
	check_permute(ctx, TG_F64, SHAPE(9, 2, 130), (int[]){ 2, 1, 0 });
	/* rows a page apart, whole lines: the AVX-512 blocks in panels of 512
	 * rows, the last one short */
	check_permute(ctx, TG_F32, SHAPE(528, 1024), (int[]){ 1, 0 });
	check_permute(ctx, TG_F64, SHAPE(1040, 512), (int[]){ 1, 0 });
	check_permute(ctx, TG_F32, SHAPE(2, 544, 1040), (int[]){ 0, 2, 1 });
	tg_tensor *x = rand_t(ctx, TG_F32, SHAPE(129, 40));
	check_same(tg_permute(x, (int[]){ 1, 0 }), tg_transpose(x), 0);
}

/* A transpose moves bits: NaN payloads, signed zeros and infinities arrive
 * as they were, in whole blocks and at the edges. */
static void transpose_moves_bits_unchanged(void **state)
{
	tg_ctx *ctx = *state;
	enum { R = 11, C = 10 };
	uint32_t b32[R * C], want32[R * C];
	uint64_t b64[R * C], want64[R * C];
	for (uint32_t i = 0; i < R * C; i++) {
		static const uint32_t s32[] = { 0x7fc00001u, 0xffa00005u, 0x80000000u, 0x7f800000u,
						0x3f800000u, 0x00000001u, 0x7f8000ffu };
		static const uint64_t s64[] = { 0x7ff8000000000001u, 0xfff4000000000007u,
						0x8000000000000000u, 0xfff0000000000000u,
						0x3ff0000000000000u, 0x7ff0000000000003u };
		b32[i] = s32[i % LEN(s32)] ^ (i << 8 & 0x3ff00u);
		b64[i] = s64[i % LEN(s64)] ^ ((uint64_t)i << 20);
	}
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C; c++) {
			want32[c * R + r] = b32[r * C + c];
			want64[c * R + r] = b64[r * C + c];
		}
	float f32[R * C];
	double f64[R * C];
	memcpy(f32, b32, sizeof f32);
	memcpy(f64, b64, sizeof f64);
	tg_tensor *x32 = tg_from_f32(ctx, TG_F32, SHAPE(R, C), f32);
	tg_tensor *x64 = tg_from_f64(ctx, TG_F64, SHAPE(R, C), f64);
	assert_ctx_ok(ctx);
	/* the input itself kept the bits, so that a difference is the transpose's */
	assert_memory_equal(tg_data(x32), b32, sizeof b32);
	assert_memory_equal(tg_data(x64), b64, sizeof b64);
	assert_memory_equal(tg_data(tg_transpose(x32)), want32, sizeof want32);
	assert_memory_equal(tg_data(tg_transpose(x64)), want64, sizeof want64);
	assert_memory_equal(tg_data(tg_permute(x32, (int[]){ 1, 0 })), want32, sizeof want32);
	assert_memory_equal(tg_data(tg_permute(x64, (int[]){ 1, 0 })), want64, sizeof want64);
	assert_ctx_ok(ctx);
}

/* dx of y = permute(x, perm) for upstream dy is permute(dy, perm^-1). */
static void permute_backward_applies_the_inverse_permutation(void **state)
{
	tg_ctx *ctx = *state;
	const int perm[3] = { 2, 0, 1 }, inv[3] = { 1, 2, 0 };
	tg_tensor *x = tg_set_requires_grad(iota(ctx, TG_F64, SHAPE(2, 3, 4), 0), true);
	tg_tensor *y = tg_permute(x, perm); /* (4,2,3) */
	tg_tensor *dy = iota(ctx, TG_F64, SHAPE(4, 2, 3), 100);
	assert_int_equal(tg_backward_ex(y, dy, 0), 0);
	double D[24], want[24];
	assert_int_equal(tg_copy_to_f64(dy, D, 24), 0);
	permute_ref(D, want, 3, (int64_t[]){ 4, 2, 3 }, inv);
	check_values(tg_grad(x), want, 24, 0);
	/* and the round trip is the identity */
	check_values(tg_permute(y, inv), (double[]){ 0,  1,  2,  3,  4,  5,  6,  7,
						     8,  9,  10, 11, 12, 13, 14, 15,
						     16, 17, 18, 19, 20, 21, 22, 23 },
		     24, 0);
	assert_ctx_ok(ctx);
}

/* A gradient that x already holds takes permute(dy, perm^-1) in place, in
 * one pass: the sum must be the accumulate's, element for element, as a
 * naive loop rounds it in x's dtype. Two backwards of permute(x, perm)
 * without a zero_grad between them: the second adds into the first. Sizes
 * over the engine's in-place threshold, across the vector blocks' edges,
 * the runs of a permute that keeps the last axis, on one and two
 * threads. */
static void check_permute_grad_sum(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
				   const int *perm)
{
	int64_t oshape[ND];
	int inv[ND];
	for (int k = 0; k < ndim; k++) {
		oshape[k] = shape[perm[k]];
		inv[perm[k]] = k;
	}
	bool two_d = ndim == 2 && perm[0] == 1;
	for (int pass = 0; pass < 2; pass++) { /* tg_permute, then tg_transpose */
		if (pass == 1 && !two_d)
			break;
		tg_tensor *x = tg_param(rand_t(ctx, dt, ndim, shape));
		tg_tensor *dy[2] = { rand_t(ctx, dt, ndim, oshape), rand_t(ctx, dt, ndim, oshape) };
		size_t n = tg_numel(x);
		double *D = malloc(n * sizeof *D), *G = malloc(n * sizeof *G),
		       *want = malloc(n * sizeof *want);
		assert_non_null(D);
		assert_non_null(G);
		assert_non_null(want);
		for (int b = 0; b < 2; b++) {
			tg_tensor *y = pass ? tg_transpose(x) : tg_permute(x, perm);
			assert_int_equal(tg_backward_ex(y, dy[b], 0), 0);
			assert_int_equal(tg_copy_to_f64(dy[b], D, n), 0);
			permute_ref(D, b ? G : want, ndim, oshape, inv);
		}
		for (size_t i = 0; i < n; i++)
			want[i] = dt == TG_F32 ? (double)(float)(want[i] + G[i]) : want[i] + G[i];
		check_values(tg_grad(x), want, n, 0);
		assert_ctx_ok(ctx);
		free(D);
		free(G);
		free(want);
		tg_reset(ctx);
	}
}

static void a_permuted_gradient_adds_into_the_one_held_as_the_accumulate_does(void **state)
{
	tg_ctx *ctx = *state;
	static const struct {
		int ndim;
		int64_t shape[4];
		int perm[4];
	} cases[] = {
		{ 2, { 37, 513 }, { 1, 0 } },        { 2, { 64, 96 }, { 1, 0 } },
		{ 2, { 256, 320 }, { 1, 0 } },       { 2, { 129, 131 }, { 1, 0 } },
		{ 3, { 6, 33, 70 }, { 0, 2, 1 } },   { 3, { 33, 5, 40 }, { 1, 0, 2 } },
		{ 3, { 64, 16, 48 }, { 2, 0, 1 } },  { 4, { 3, 5, 7, 11 }, { 3, 1, 0, 2 } },
		{ 4, { 3, 5, 7, 11 }, { 1, 0, 2, 3 } }, { 4, { 3, 5, 7, 11 }, { 2, 3, 0, 1 } },
		{ 2, { 528, 1024 }, { 1, 0 } },
		/* rows too short for strips: split in bands of the other axis */
		{ 2, { 40001, 4 }, { 1, 0 } },       { 3, { 2, 16411, 3 }, { 0, 2, 1 } },
	};
	for (int t = 1; t <= 3; t++) {
		tg_set_threads(ctx, t);
		for (size_t c = 0; c < LEN(cases); c++) {
			check_permute_grad_sum(ctx, TG_F32, cases[c].ndim, cases[c].shape,
					       cases[c].perm);
			check_permute_grad_sum(ctx, TG_F64, cases[c].ndim, cases[c].shape,
					       cases[c].perm);
		}
	}
	tg_set_threads(ctx, 1);
}

/* Step memory a backward of sum(a^T * w) + sum(b^T * w) makes, a and b
 * parameters whose gradient buffers exist already. */
static size_t transposes_backward_bytes(tg_ctx *ctx, tg_tensor *a, tg_tensor *b, tg_tensor *w)
{
	tg_tensor *l = tg_add(tg_sum(tg_mul(tg_transpose(a), w)), tg_sum(tg_mul(tg_transpose(b), w)));
	size_t before = tg_arena_used(ctx);
	assert_int_equal(tg_backward(l), 0);
	size_t used = tg_arena_used(ctx) - before;
	tg_reset(ctx);
	tg_zero_grad(a);
	tg_zero_grad(b);
	return used;
}

/* x's second gradient of a step is transposed straight into its first: no
 * step tensor of x's size for the copy, as when the two gradients go to
 * two parameters, each written into its own buffer. */
static void a_second_transposed_gradient_makes_no_copy(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_param(rand_t(ctx, TG_F32, SHAPE(64, 96)));
	tg_tensor *z = tg_param(rand_t(ctx, TG_F32, SHAPE(64, 96)));
	tg_tensor *w = tg_keep(rand_t(ctx, TG_F32, SHAPE(96, 64)));
	transposes_backward_bytes(ctx, x, z, w); /* the buffers made */
	size_t two = transposes_backward_bytes(ctx, x, z, w);
	size_t one = transposes_backward_bytes(ctx, x, x, w);
	if (one != two)
		fail_msg("the backward into one parameter made %zu bytes, into two %zu", one, two);
	assert_ctx_ok(ctx);
}

static void permute_rejects_what_is_not_a_permutation(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota(ctx, TG_F64, SHAPE(2, 3, 4), 0);
	assert_null(tg_permute(x, (int[]){ 0, 0, 1 }));
	assert_error(ctx, TG_EARG,
		     "tg_permute: perm (0,0,1) is not a permutation of the 3 axes of x (2,3,4)");
	tg_clear_error(ctx);
	assert_null(tg_permute(x, (int[]){ 0, 1, 3 }));
	assert_error(ctx, TG_EARG, "tg_permute: perm (0,1,3) is not a permutation");
	tg_clear_error(ctx);
	assert_null(tg_permute(x, (int[]){ 0, 1, -4 }));
	assert_error(ctx, TG_EARG, "entry 2 is -4");
	tg_clear_error(ctx);
	assert_null(tg_permute(x, NULL));
	assert_error(ctx, TG_ENULL, "tg_permute: perm is NULL for x of 3 dimensions");
	tg_clear_error(ctx);
	assert_null(tg_permute(NULL, (int[]){ 0 }));
	assert_ctx_ok(ctx); /* NULL in, NULL out, nothing to report it in */
}

/* ---- reshape: shared data, separate writes ---------------------------------------- */

/* The values of t, element by element, must be start + i (i < n). */
static void check_iota(const tg_tensor *t, size_t n, double start)
{
	for (size_t i = 0; i < n; i++)
		if (tg_get(t, i) != start + (double)i)
			fail_msg("element %zu = %g, expected %g", i, tg_get(t, i), start + (double)i);
}

static void a_reshape_shares_the_data_and_a_write_to_either_stays_its_own(void **state)
{
	tg_ctx *ctx = *state;
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F32 : TG_F64;
		tg_tensor *x = iota(ctx, dt, SHAPE(4, 6), 0);
		tg_tensor *y = tg_reshape(x, SHAPE(3, 8));
		check_shape(y, SHAPE(3, 8));
		assert_ptr_equal(tg_data(y), tg_data(x)); /* no copy */
		/* a write to the reshape leaves x as it was */
		void *py = tg_data_mut(y);
		assert_non_null(py);
		if (dt == TG_F64)
			((double *)py)[5] = 100;
		else
			((float *)py)[5] = 100;
		assert_ptr_not_equal(tg_data(y), tg_data(x));
		check_iota(x, 24, 0);
		assert_true(tg_get(y, 5) == 100 && tg_get(y, 4) == 4 && tg_get(y, 23) == 23);
		/* a write to x leaves its reshapes as they were */
		tg_tensor *z = tg_reshape(x, SHAPE(24)), *u = tg_unsqueeze(x, 0);
		assert_ptr_equal(tg_data(z), tg_data(x));
		void *px = tg_data_mut(x);
		if (dt == TG_F64)
			((double *)px)[0] = -7;
		else
			((float *)px)[0] = -7;
		assert_true(tg_get(x, 0) == -7);
		check_iota(z, 24, 0);
		check_iota(u, 24, 0);
		/* and tg_assign writes only its destination */
		tg_tensor *w = tg_reshape(z, SHAPE(6, 4));
		assert_int_equal(tg_assign(w, iota(ctx, dt, SHAPE(6, 4), 50)), 0);
		check_iota(w, 24, 50);
		check_iota(z, 24, 0);
		check_iota(u, 24, 0);
	}
	assert_ctx_ok(ctx);
}

static void reshapes_of_what_changes_in_place_are_copies(void **state)
{
	tg_ctx *ctx = *state;
	/* a parameter, which an optimizer writes */
	tg_tensor *p = tg_param(iota(ctx, TG_F64, SHAPE(2, 6), 0));
	tg_tensor *rp = tg_reshape(p, SHAPE(12));
	assert_ptr_not_equal(tg_data(rp), tg_data(p));
	((double *)tg_data_mut(p))[3] = 30;
	check_iota(rp, 12, 0);
	/* a step tensor lent writable: its pointer may be written through later */
	tg_tensor *x = iota(ctx, TG_F32, SHAPE(3, 5), 0);
	float *px = tg_data_mut(x);
	tg_tensor *rx = tg_reshape(x, SHAPE(5, 3));
	px[2] = 42;
	check_iota(rx, 15, 0);
	/* a leaf's gradient buffer, which the next backward adds to */
	tg_tensor *a = tg_set_requires_grad(iota(ctx, TG_F64, SHAPE(4, 4), 1), true);
	assert_int_equal(tg_backward(tg_sum(tg_mul_scalar(a, 2))), 0);
	tg_tensor *g = tg_reshape(tg_grad(a), SHAPE(16));
	assert_int_equal(tg_backward(tg_sum(tg_mul_scalar(a, 2))), 0);
	for (size_t i = 0; i < 16; i++)
		assert_true(tg_get(tg_grad(a), i) == 4 && tg_get(g, i) == 2);
	assert_ctx_ok(ctx);
}

/* tg_detach shares a step tensor's data under reshape's rule, and each side
 * still reads as a copy: a write to either, the next backward's sum in a
 * leaf's gradient buffer, or an optimizer's write to a parameter leaves
 * the other as it was. */
static void a_detach_shares_the_data_and_writes_stay_apart(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_set_requires_grad(iota(ctx, TG_F64, SHAPE(3, 4), 0), true);
	tg_tensor *y = tg_mul_scalar(x, 2);
	tg_tensor *d = tg_detach(y);
	assert_ptr_equal(tg_data(d), tg_data(y));
	assert_null(tg_producer(d));
	assert_false(tg_requires_grad(d));
	((double *)tg_data_mut(d))[1] = -5;
	assert_true(tg_get(y, 1) == 2 && tg_get(d, 1) == -5);
	tg_tensor *e = tg_detach(y);
	assert_int_equal(tg_assign(y, iota(ctx, TG_F64, SHAPE(3, 4), 100)), 0);
	check_iota(y, 12, 100);
	for (size_t i = 0; i < 12; i++)
		assert_true(tg_get(e, i) == 2.0 * (double)i);
	/* a leaf's gradient buffer: a copy, which the next backward leaves alone */
	assert_int_equal(tg_backward(tg_sum(tg_mul_scalar(x, 3))), 0);
	tg_tensor *g = tg_detach(tg_grad(x));
	assert_ptr_not_equal(tg_data(g), tg_data(tg_grad(x)));
	assert_int_equal(tg_backward(tg_sum(tg_mul_scalar(x, 3))), 0);
	assert_true(tg_get(tg_grad(x), 0) == 6 && tg_get(g, 0) == 3);
	/* a parameter: a copy */
	tg_tensor *p = tg_param(iota(ctx, TG_F32, SHAPE(5), 0));
	tg_tensor *dp = tg_detach(p);
	assert_ptr_not_equal(tg_data(dp), tg_data(p));
	((float *)tg_data_mut(p))[0] = 9;
	check_iota(dp, 5, 0);
	assert_ctx_ok(ctx);
}

/* A slice of whole rows of the first axis above size 1 shares x's data
 * from an offset on, with the same rule for writes; other slices copy. */
static void a_slice_of_leading_rows_shares_and_writes_stay_apart(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota(ctx, TG_F64, SHAPE(5, 2, 3), 0);
	tg_tensor *s = tg_slice(x, 0, 1, 3); /* elements 6 to 23 */
	check_shape(s, SHAPE(3, 2, 3));
	assert_ptr_equal(tg_data(s), (const double *)tg_data(x) + 6);
	check_iota(s, 18, 6);
	tg_tensor *u = tg_slice(tg_reshape(x, SHAPE(1, 5, 6)), 1, 4, 1); /* the last row */
	assert_ptr_equal(tg_data(u), (const double *)tg_data(x) + 24);
	tg_tensor *c = tg_slice(x, 1, 1, 1); /* every row's second half: a copy */
	assert_ptr_not_equal(tg_data(c), tg_data(x));
	check_values(c, (double[]){ 3, 4, 5, 9, 10, 11, 15, 16, 17, 21, 22, 23, 27, 28, 29 },
		     15, 0);
	((double *)tg_data_mut(s))[0] = -1;
	check_iota(x, 30, 0);
	((double *)tg_data_mut(x))[24] = -2;
	check_iota(u, 6, 24);
	assert_true(tg_get(s, 0) == -1 && tg_get(s, 1) == 7);
	/* and one element of a header-sized tensor */
	tg_tensor *h = iota(ctx, TG_F32, SHAPE(3), 0);
	tg_tensor *h1 = tg_slice(h, 0, 2, 1);
	assert_ptr_equal(tg_data(h1), (const float *)tg_data(h) + 2);
	((float *)tg_data_mut(h))[2] = 9;
	assert_true(tg_get(h1, 0) == 2);
	assert_ctx_ok(ctx);
}

/* A write to x after an op saved its reshape leaves the reshape, and so the
 * gradient, as it was; a write to the saved reshape itself is refused at
 * the backward, as for any saved tensor. */
static void a_write_after_a_reshape_was_saved(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota(ctx, TG_F64, SHAPE(2, 3), 1);
	tg_tensor *w = tg_set_requires_grad(iota(ctx, TG_F64, SHAPE(3, 2), 0), true);
	tg_tensor *y = tg_reshape(x, SHAPE(3, 2));
	tg_tensor *l = tg_sum(tg_mul(y, w)); /* dw = y */
	((double *)tg_data_mut(x))[0] = 99;
	assert_int_equal(tg_backward(l), 0);
	check_iota(tg_grad(w), 6, 1);
	tg_zero_grad(w);
	l = tg_sum(tg_mul(y, w));
	((double *)tg_data_mut(y))[0] = 99;
	assert_int_equal(tg_backward(l), -1);
	assert_error(ctx, TG_EVERSION, "of mul was modified in place");
	tg_clear_error(ctx);
	assert_true(tg_get(x, 0) == 99 && tg_get(x, 1) == 2 && tg_get(x, 5) == 6);
	assert_ctx_ok(ctx);
}

/* A permute that moves only axes of size 1 keeps the elements' order:
 * shared as a reshape is, forward and backward; one that moves more copies. */
static void a_permute_of_axes_of_size_1_shares(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_set_requires_grad(iota(ctx, TG_F32, SHAPE(4, 1, 3, 1), 0), true);
	tg_tensor *y = tg_permute(x, (int[]){ 1, 0, 3, 2 }); /* (1,4,1,3) */
	check_shape(y, SHAPE(1, 4, 1, 3));
	assert_ptr_equal(tg_data(y), tg_data(x));
	tg_tensor *t = tg_transpose(tg_reshape(x, SHAPE(12, 1)));
	check_shape(t, SHAPE(1, 12));
	assert_ptr_equal(tg_data(t), tg_data(x));
	tg_tensor *c = tg_permute(x, (int[]){ 2, 1, 0, 3 }); /* (3,1,4,1): a copy */
	assert_ptr_not_equal(tg_data(c), tg_data(x));
	check_values(c, (double[]){ 0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11 }, 12, 0);
	((float *)tg_data_mut(y))[0] = 50;
	check_iota(x, 12, 0);
	check_iota(t, 12, 0);
	/* the gradient comes back through both in order */
	tg_tensor *w = iota(ctx, TG_F32, SHAPE(1, 4, 1, 3), 1);
	assert_int_equal(tg_backward(tg_sum(tg_mul(tg_permute(x, (int[]){ 1, 0, 3, 2 }), w))), 0);
	check_iota(tg_grad(x), 12, 1);
	assert_ctx_ok(ctx);
}

/* tg_gradcheck moves its inputs' values: a reshape made of an input before
 * the check, which f reads, keeps its own. */
static tg_tensor *times_captured(tg_tensor *const *in, void *user)
{
	return tg_sum(tg_mul(in[0], user));
}

static void a_gradcheck_leaves_reshapes_of_its_inputs_alone(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_set_requires_grad(rand_t(ctx, TG_F64, SHAPE(3, 4)), true);
	tg_tensor *r = tg_reshape(x, SHAPE(3, 4)); /* d/dx sum(x r) = r, r fixed */
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck(ctx, times_captured, r, 1, &x, NULL, &res), 0);
	assert_int_equal(res.failed, 0);
	assert_ctx_ok(ctx);
}

/* ---- squeeze, unsqueeze ---------------------------------------------------------- */

static void squeeze_and_unsqueeze_drop_and_insert_axes_of_size_1(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_set_requires_grad(iota(ctx, TG_F64, SHAPE(2, 1, 3), 0), true);
	tg_tensor *s = tg_squeeze(x, 1);
	check_shape(s, SHAPE(2, 3));
	check_values(s, (double[]){ 0, 1, 2, 3, 4, 5 }, 6, 0);
	check_shape(tg_squeeze(x, -2), SHAPE(2, 3));
	check_shape(tg_unsqueeze(s, 0), SHAPE(1, 2, 3));
	check_shape(tg_unsqueeze(s, 1), SHAPE(2, 1, 3));
	check_shape(tg_unsqueeze(s, 2), SHAPE(2, 3, 1));
	check_shape(tg_unsqueeze(s, -1), SHAPE(2, 3, 1));
	check_shape(tg_unsqueeze(s, -3), SHAPE(1, 2, 3));
	check_shape(tg_unsqueeze(tg_scalar(ctx, TG_F32, 2), 0), SHAPE(1));
	assert_null(tg_squeeze(tg_scalar(ctx, TG_F64, 2), 0));
	assert_error(ctx, TG_EARG, "tg_squeeze: axis 0 is out of range for x of shape ()");
	tg_clear_error(ctx);
	/* the gradient goes back through the reshapes unchanged */
	tg_tensor *y = tg_unsqueeze(tg_squeeze(x, 1), 0); /* (1,2,3) */
	assert_int_equal(tg_backward_ex(y, iota(ctx, TG_F64, SHAPE(1, 2, 3), 10), 0), 0);
	check_shape(tg_grad(x), SHAPE(2, 1, 3));
	check_values(tg_grad(x), (double[]){ 10, 11, 12, 13, 14, 15 }, 6, 0);
	assert_ctx_ok(ctx);
}

/* A scalar has no axis to squeeze, slice, pad or split: the message says
 * so rather than give a range of axes "0 to -1". */
static void axis_arguments_of_a_scalar_say_it_has_no_axes(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *s = tg_scalar(ctx, TG_F64, 2), *parts[1];
	const char *want = "axis 0 is out of range for x of shape () (a scalar has no axes)";
	assert_null(tg_squeeze(s, 0));
	assert_error(ctx, TG_EARG, "tg_squeeze: ");
	assert_error(ctx, TG_EARG, want);
	tg_clear_error(ctx);
	assert_null(tg_slice(s, 0, 0, 1));
	assert_error(ctx, TG_EARG, want);
	tg_clear_error(ctx);
	assert_null(tg_pad_axis(s, -1, 1, 1));
	assert_error(ctx, TG_EARG, "tg_pad_axis: axis -1 is out of range for x of shape () (a "
				   "scalar has no axes)");
	tg_clear_error(ctx);
	assert_int_equal(tg_split(s, 0, 1, NULL, parts), -1);
	assert_error(ctx, TG_EARG, want);
	tg_clear_error(ctx);
	/* a new axis has a place in a scalar: position 0 */
	check_shape(tg_unsqueeze(s, 0), SHAPE(1));
	assert_ctx_ok(ctx);
}

static void squeeze_and_unsqueeze_reject_bad_axes(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota(ctx, TG_F64, SHAPE(2, 3), 0);
	assert_null(tg_squeeze(x, 1));
	assert_error(ctx, TG_ESHAPE, "tg_squeeze: axis 1 of x (2,3) has size 3, not 1");
	tg_clear_error(ctx);
	assert_null(tg_squeeze(x, 2));
	assert_error(ctx, TG_EARG,
		     "tg_squeeze: axis 2 is out of range for x of shape (2,3) (axes 0 to 1)");
	tg_clear_error(ctx);
	assert_null(tg_unsqueeze(x, 3));
	assert_error(ctx, TG_EARG, "tg_unsqueeze: axis 3 is out of range for x of shape (2,3) "
				   "(new axis at 0 to 2)");
	tg_clear_error(ctx);
	assert_null(tg_unsqueeze(x, -4));
	assert_error(ctx, TG_EARG, "tg_unsqueeze: axis -4 is out of range");
	tg_clear_error(ctx);
	int64_t full[TG_MAX_DIMS];
	for (int i = 0; i < TG_MAX_DIMS; i++)
		full[i] = 1;
	assert_null(tg_unsqueeze(tg_zeros(ctx, TG_F64, TG_MAX_DIMS, full), 0));
	assert_error(ctx, TG_ESHAPE, "tg_unsqueeze: x (1,1,1");
	assert_error(ctx, TG_ESHAPE, "dimensions, the most a tensor has");
	tg_clear_error(ctx);
}

/* ---- slice, pad_axis ------------------------------------------------------------ */

/* x (3,4) = [[0,1,2,3],[4,5,6,7],[8,9,10,11]] */
static void slice_takes_the_hand_computed_elements(void **state)
{
	tg_ctx *ctx = *state;
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F32 : TG_F64;
		tg_tensor *x = iota(ctx, dt, SHAPE(3, 4), 0);
		tg_tensor *c = tg_slice(x, 1, 1, 2);
		check_shape(c, SHAPE(3, 2));
		check_values(c, (double[]){ 1, 2, 5, 6, 9, 10 }, 6, 0);
		check_values(tg_slice(x, 0, -1, 1), (double[]){ 8, 9, 10, 11 }, 4, 0);
		check_values(tg_slice(x, -2, 0, 2), (double[]){ 0, 1, 2, 3, 4, 5, 6, 7 }, 8, 0);
		check_values(tg_slice(x, -1, -1, 1), (double[]){ 3, 7, 11 }, 3, 0);
		tg_tensor *z = iota(ctx, dt, SHAPE(2, 3, 2), 0);
		check_values(tg_slice(z, 1, 1, 2), (double[]){ 2, 3, 4, 5, 8, 9, 10, 11 }, 8, 0);
		assert_int_equal(tg_dtype_of(c), dt);
	}
	assert_ctx_ok(ctx);
}

/* The gradient of a slice is dout put back into zeros: pad_axis. */
static void slice_gradient_is_dout_padded_with_zeros(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_set_requires_grad(iota(ctx, TG_F64, SHAPE(3, 4), 0), true);
	tg_tensor *y = tg_slice(x, 1, 1, 2);
	assert_int_equal(tg_backward_ex(y, iota(ctx, TG_F64, SHAPE(3, 2), 1), 0), 0);
	check_values(tg_grad(x), (double[]){ 0, 1, 2, 0, 0, 3, 4, 0, 0, 5, 6, 0 }, 12, 0);
	/* pad_axis by hand, both axes */
	tg_tensor *s = iota(ctx, TG_F32, SHAPE(2, 2), 1); /* [[1,2],[3,4]] */
	tg_tensor *p0 = tg_pad_axis(s, 0, 1, 2);
	check_shape(p0, SHAPE(5, 2));
	check_values(p0, (double[]){ 0, 0, 1, 2, 3, 4, 0, 0, 0, 0 }, 10, 0);
	tg_tensor *p1 = tg_pad_axis(s, -1, 2, 1);
	check_shape(p1, SHAPE(2, 5));
	check_values(p1, (double[]){ 0, 0, 1, 2, 0, 0, 0, 3, 4, 0 }, 10, 0);
	check_values(tg_pad_axis(s, 1, 0, 0), (double[]){ 1, 2, 3, 4 }, 4, 0);
	assert_ctx_ok(ctx);
}

static void slice_and_pad_axis_reject_out_of_range_arguments(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota(ctx, TG_F64, SHAPE(2, 3), 0);
	assert_null(tg_slice(x, 1, 2, 2));
	assert_error(ctx, TG_EARG, "tg_slice: start 2, length 2 is out of range for axis 1 of "
				   "x (2,3) (size 3;");
	tg_clear_error(ctx);
	assert_null(tg_slice(x, 1, 3, 1));
	assert_error(ctx, TG_EARG, "tg_slice: start 3, length 1 is out of range");
	tg_clear_error(ctx);
	assert_null(tg_slice(x, 1, -4, 1));
	assert_error(ctx, TG_EARG, "tg_slice: start -4, length 1 is out of range");
	tg_clear_error(ctx);
	assert_null(tg_slice(x, 0, 0, 0));
	assert_error(ctx, TG_EARG, "tg_slice: start 0, length 0 is out of range");
	tg_clear_error(ctx);
	assert_null(tg_slice(x, 2, 0, 1));
	assert_error(ctx, TG_EARG, "tg_slice: axis 2 is out of range for x of shape (2,3)");
	tg_clear_error(ctx);
	assert_null(tg_slice(tg_scalar(ctx, TG_F64, 1), 0, 0, 1));
	assert_error(ctx, TG_EARG, "tg_slice: axis 0 is out of range for x of shape ()");
	tg_clear_error(ctx);
	assert_null(tg_pad_axis(x, 0, -1, 0));
	assert_error(ctx, TG_EARG, "tg_pad_axis: before -1 and after 0; each must be 0 or more");
	tg_clear_error(ctx);
	assert_null(tg_pad_axis(x, -3, 1, 0));
	assert_error(ctx, TG_EARG, "tg_pad_axis: axis -3 is out of range");
	tg_clear_error(ctx);
}

/* ---- concat --------------------------------------------------------------------- */

static void concat_joins_along_any_axis(void **state)
{
	tg_ctx *ctx = *state;
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F32 : TG_F64;
		tg_tensor *a = iota(ctx, dt, SHAPE(2, 2), 0);  /* [[0,1],[2,3]] */
		tg_tensor *b = iota(ctx, dt, SHAPE(2, 1), 10); /* [[10],[11]] */
		tg_tensor *y = tg_concat(ctx, 2, (tg_tensor *[]){ a, b }, 1);
		check_shape(y, SHAPE(2, 3));
		check_values(y, (double[]){ 0, 1, 10, 2, 3, 11 }, 6, 0);
		y = tg_concat(ctx, 3, (tg_tensor *[]){ b, a, b }, -1);
		check_values(y, (double[]){ 10, 0, 1, 10, 11, 2, 3, 11 }, 8, 0);
		tg_tensor *c = iota(ctx, dt, SHAPE(1, 2), 20);
		y = tg_concat(ctx, 2, (tg_tensor *[]){ a, c }, 0);
		check_shape(y, SHAPE(3, 2));
		check_values(y, (double[]){ 0, 1, 2, 3, 20, 21 }, 6, 0);
		check_values(tg_concat(ctx, 1, &a, 0), (double[]){ 0, 1, 2, 3 }, 4, 0);
		/* 3-D, middle axis */
		tg_tensor *p = iota(ctx, dt, SHAPE(2, 1, 2), 0);
		tg_tensor *q = iota(ctx, dt, SHAPE(2, 2, 2), 10);
		check_values(tg_concat(ctx, 2, (tg_tensor *[]){ p, q }, 1),
			     (double[]){ 0, 1, 10, 11, 12, 13, 2, 3, 14, 15, 16, 17 }, 12, 0);
	}
	assert_ctx_ok(ctx);
}

/* y = concat(x_0..x_{n-1}) along axis 1 of (2, k_i) pieces; with upstream
 * gradient dy (2, sum k), each dx_i must be its own columns of dy. */
static void check_concat_of_n(tg_ctx *ctx, int n)
{
	tg_tensor *xs[20];
	int64_t total = 0;
	for (int i = 0; i < n; i++) {
		int64_t k = 1 + i % 3;
		xs[i] = tg_set_requires_grad(iota(ctx, TG_F64, SHAPE(2, k), 100.0 * i), true);
		total += k;
	}
	tg_tensor *y = tg_concat(ctx, n, xs, 1);
	assert_ctx_ok(ctx);
	check_shape(y, SHAPE(2, total));
	tg_tensor *dy = iota(ctx, TG_F64, SHAPE(2, total), 0);
	assert_int_equal(tg_backward_ex(y, dy, 0), 0);
	int64_t at = 0;
	for (int i = 0; i < n; i++) {
		int64_t k = 1 + i % 3;
		for (int64_t r = 0; r < 2; r++)
			for (int64_t c = 0; c < k; c++) {
				double want_y = 100.0 * i + (double)(r * k + c);
				double want_g = (double)(r * total + at + c);
				if (tg_get(y, (size_t)(r * total + at + c)) != want_y)
					fail_msg("concat of %d: y[%lld,%lld] = %g, expected %g", n,
						 (long long)r, (long long)(at + c),
						 tg_get(y, (size_t)(r * total + at + c)), want_y);
				tg_tensor *g = tg_grad(xs[i]);
				if (!g)
					fail_msg("concat of %d: no gradient reached input %d", n, i);
				if (tg_get(g, (size_t)(r * k + c)) != want_g)
					fail_msg("concat of %d: d input %d [%lld,%lld] = %g, expected %g",
						 n, i, (long long)r, (long long)c,
						 tg_get(g, (size_t)(r * k + c)), want_g);
			}
		at += k;
	}
	tg_reset(ctx);
}

static void concat_of_many_tensors_is_differentiable_to_each(void **state)
{
	tg_ctx *ctx = *state;
	static const int counts[] = { 1, 4, 5, 6, 10, 17 };
	for (size_t i = 0; i < LEN(counts); i++)
		check_concat_of_n(ctx, counts[i]);
}

/* in[0..3] and two constants between them, six pieces along axis 0, then
 * squared, so that the second-order check differentiates every slice of the
 * backward pass too. */
static tg_tensor *concat_six(tg_tensor *const *in, void *user)
{
	(void)user;
	tg_ctx *ctx = tg_ctx_of(in[0]);
	tg_tensor *c0 = tg_full(ctx, TG_F64, SHAPE(1, 3), 0.5);
	tg_tensor *c1 = tg_full(ctx, TG_F64, SHAPE(2, 3), -0.25);
	tg_tensor *y = tg_concat(ctx, 6, (tg_tensor *[]){ in[0], c0, in[1], in[2], c1, in[3] }, 0);
	return tg_mul(y, y);
}

static void concat_of_six_passes_the_gradient_checks_for_each_input(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *in[4] = { rand_t(ctx, TG_F64, SHAPE(1, 3)), rand_t(ctx, TG_F64, SHAPE(2, 3)),
			     rand_t(ctx, TG_F64, SHAPE(3, 3)), rand_t(ctx, TG_F64, SHAPE(1, 3)) };
	tg_gradcheck_result r1, r2;
	assert_int_equal(tg_gradcheck(ctx, concat_six, NULL, 4, in, NULL, &r1), 0);
	assert_int_equal(tg_gradcheck2(ctx, concat_six, NULL, 4, in, NULL, &r2), 0);
	for (int i = 0; i < 4; i++) {
		if (!(r1.max_rel[i] < 1e-7) || !(r2.max_rel[i] < 1e-6))
			fail_msg("input %d: first-order error %g, second-order %g", i, r1.max_rel[i],
				 r2.max_rel[i]);
	}
}

static void concat_rejects_each_misuse_naming_itself(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = iota(ctx, TG_F64, SHAPE(2, 3), 0);
	tg_tensor *b = iota(ctx, TG_F64, SHAPE(2, 4), 0);
	tg_tensor *c = iota(ctx, TG_F64, SHAPE(2, 3, 1), 0);
	tg_tensor *f = iota(ctx, TG_F32, SHAPE(2, 3), 0);
	assert_null(tg_concat(ctx, 0, (tg_tensor *[]){ a }, 0));
	assert_error(ctx, TG_EARG, "tg_concat: 0 tensors; need at least one");
	tg_clear_error(ctx);
	assert_null(tg_concat(ctx, 2, NULL, 0));
	assert_error(ctx, TG_ENULL, "tg_concat: the list of 2 tensors is NULL");
	tg_clear_error(ctx);
	assert_null(tg_concat(ctx, 3, (tg_tensor *[]){ a, a, NULL }, 0));
	assert_error(ctx, TG_ENULL, "tg_concat: argument 2 is NULL");
	tg_clear_error(ctx);
	assert_null(tg_concat(ctx, 2, (tg_tensor *[]){ NULL, NULL }, 0));
	assert_error(ctx, TG_ENULL, "tg_concat: argument 0 is NULL");
	tg_clear_error(ctx);
	assert_null(tg_concat(ctx, 3, (tg_tensor *[]){ a, a, b }, 0));
	assert_error(ctx, TG_ESHAPE, "tg_concat: argument 2 (2,4) and argument 0 (2,3) differ "
				     "in axis 1; only axis 0, the concat axis, may differ");
	tg_clear_error(ctx);
	assert_null(tg_concat(ctx, 2, (tg_tensor *[]){ a, c }, 1));
	assert_error(ctx, TG_ESHAPE, "tg_concat: argument 1 (2,3,1) has 3 dimensions, "
				     "argument 0 (2,3) has 2");
	tg_clear_error(ctx);
	assert_null(tg_concat(ctx, 2, (tg_tensor *[]){ a, b }, 2));
	assert_error(ctx, TG_EARG, "tg_concat: axis 2 is out of range for argument 0 of shape "
				   "(2,3)");
	tg_clear_error(ctx);
	assert_null(tg_concat(ctx, 6, (tg_tensor *[]){ a, a, a, a, a, f }, 0));
	assert_error(ctx, TG_EDTYPE, "tg_concat: dtypes differ: argument 0 is f64 (2,3), "
				     "argument 5 is f32 (2,3)");
	tg_clear_error(ctx);
	tg_tensor *s = tg_scalar(ctx, TG_F64, 1);
	assert_null(tg_concat(ctx, 2, (tg_tensor *[]){ s, s }, 0));
	assert_error(ctx, TG_ESHAPE, "tg_concat: argument 0 is a scalar ()");
	tg_clear_error(ctx);
	tg_ctx *other = tg_ctx_new(1);
	tg_tensor *o = tg_zeros(other, TG_F64, SHAPE(2, 3));
	assert_null(tg_concat(ctx, 2, (tg_tensor *[]){ o, o }, 0));
	assert_error(ctx, TG_ECTX, "tg_concat: the tensors belong to another context than ctx");
	tg_clear_error(ctx);
	assert_null(tg_concat(ctx, 2, (tg_tensor *[]){ a, o }, 0));
	assert_error(ctx, TG_ECTX, "tg_concat: argument 1 belongs to another context");
	tg_clear_error(ctx);
	tg_ctx_free(other);
	/* a NULL ctx beside tensors that name one is that context's error */
	assert_null(tg_concat(NULL, 1, &a, 0));
	assert_error(ctx, TG_ENULL, "tg_concat: ctx is NULL");
	tg_clear_error(ctx);
	assert_null(tg_stack(NULL, 2, (tg_tensor *[]){ NULL, a }, 0));
	assert_error(ctx, TG_ENULL, "tg_stack: ctx is NULL");
	tg_clear_error(ctx);
	assert_null(tg_concat(NULL, 1, (tg_tensor *[]){ NULL }, 0));
	assert_ctx_ok(ctx);
}

/* ---- stack ---------------------------------------------------------------------- */

static void stack_joins_along_a_new_axis(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = iota(ctx, TG_F64, SHAPE(2, 2), 0);  /* [[0,1],[2,3]] */
	tg_tensor *b = iota(ctx, TG_F64, SHAPE(2, 2), 10); /* [[10,11],[12,13]] */
	tg_tensor *y = tg_stack(ctx, 2, (tg_tensor *[]){ a, b }, 0);
	check_shape(y, SHAPE(2, 2, 2));
	check_values(y, (double[]){ 0, 1, 2, 3, 10, 11, 12, 13 }, 8, 0);
	y = tg_stack(ctx, 2, (tg_tensor *[]){ a, b }, 1);
	check_values(y, (double[]){ 0, 1, 10, 11, 2, 3, 12, 13 }, 8, 0);
	y = tg_stack(ctx, 3, (tg_tensor *[]){ a, b, a }, -1);
	check_shape(y, SHAPE(2, 2, 3));
	check_values(y, (double[]){ 0, 10, 0, 1, 11, 1, 2, 12, 2, 3, 13, 3 }, 12, 0);
	tg_tensor *s = tg_scalar(ctx, TG_F32, 4), *t = tg_scalar(ctx, TG_F32, 5);
	y = tg_stack(ctx, 2, (tg_tensor *[]){ s, t }, 0);
	check_shape(y, SHAPE(2));
	check_values(y, (double[]){ 4, 5 }, 2, 0);
	assert_ctx_ok(ctx);
}

/* n tensors (2,3) stacked at axis 1: (2, n, 3), beyond one node for n > 4;
 * dx_i must be dy[:, i, :]. */
static void stack_of_many_tensors_is_differentiable_to_each(void **state)
{
	tg_ctx *ctx = *state;
	static const int counts[] = { 3, 6, 9 };
	for (size_t c = 0; c < LEN(counts); c++) {
		int n = counts[c];
		tg_tensor *xs[9];
		for (int i = 0; i < n; i++)
			xs[i] = tg_set_requires_grad(iota(ctx, TG_F64, SHAPE(2, 3), 10.0 * i), true);
		tg_tensor *y = tg_stack(ctx, n, xs, 1);
		check_shape(y, SHAPE(2, n, 3));
		tg_tensor *dy = iota(ctx, TG_F64, SHAPE(2, n, 3), 0);
		assert_int_equal(tg_backward_ex(y, dy, 0), 0);
		for (int i = 0; i < n; i++)
			for (int r = 0; r < 2; r++)
				for (int k = 0; k < 3; k++) {
					size_t at = (size_t)((r * n + i) * 3 + k);
					assert_near(tg_get(y, at), 10.0 * i + r * 3 + k, 0);
					assert_near(tg_get(tg_grad(xs[i]), (size_t)(r * 3 + k)),
						    (double)at, 0);
				}
		tg_reset(ctx);
	}
}

/* Six (2,2) pieces, four inputs and two constants, stacked at axis 0 and
 * squared. */
static tg_tensor *stack_six(tg_tensor *const *in, void *user)
{
	(void)user;
	tg_ctx *ctx = tg_ctx_of(in[0]);
	tg_tensor *c = tg_full(ctx, TG_F64, SHAPE(2, 2), 0.75);
	tg_tensor *y = tg_stack(ctx, 6, (tg_tensor *[]){ in[0], in[1], c, in[2], c, in[3] }, 2);
	return tg_mul(y, y);
}

static void stack_of_six_passes_the_gradient_checks_for_each_input(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *in[4];
	for (int i = 0; i < 4; i++)
		in[i] = rand_t(ctx, TG_F64, SHAPE(2, 2));
	tg_gradcheck_result r1, r2;
	assert_int_equal(tg_gradcheck(ctx, stack_six, NULL, 4, in, NULL, &r1), 0);
	assert_int_equal(tg_gradcheck2(ctx, stack_six, NULL, 4, in, NULL, &r2), 0);
	for (int i = 0; i < 4; i++)
		if (!(r1.max_rel[i] < 1e-7) || !(r2.max_rel[i] < 1e-6))
			fail_msg("input %d: first-order error %g, second-order %g", i, r1.max_rel[i],
				 r2.max_rel[i]);
}

static void stack_rejects_each_misuse_naming_itself(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = iota(ctx, TG_F64, SHAPE(2, 3), 0);
	tg_tensor *b = iota(ctx, TG_F64, SHAPE(3, 2), 0);
	assert_null(tg_stack(ctx, 0, &a, 0));
	assert_error(ctx, TG_EARG, "tg_stack: 0 tensors; need at least one");
	tg_clear_error(ctx);
	assert_null(tg_stack(ctx, 2, (tg_tensor *[]){ a, b }, 0));
	assert_error(ctx, TG_ESHAPE, "tg_stack: argument 1 (3,2) and argument 0 (2,3) differ");
	tg_clear_error(ctx);
	assert_null(tg_stack(ctx, 2, (tg_tensor *[]){ a, a }, 3));
	assert_error(ctx, TG_EARG, "tg_stack: axis 3 is out of range for argument 0 of shape "
				   "(2,3) (new axis at 0 to 2)");
	tg_clear_error(ctx);
	assert_null(tg_stack(ctx, 2, (tg_tensor *[]){ a, tg_from_f64(ctx, TG_F32, SHAPE(2, 3),
								  (double[6]){ 0 }) }, 0));
	assert_error(ctx, TG_EDTYPE, "tg_stack: dtypes differ");
	tg_clear_error(ctx);
	int64_t full[TG_MAX_DIMS];
	for (int i = 0; i < TG_MAX_DIMS; i++)
		full[i] = 1;
	tg_tensor *z = tg_zeros(ctx, TG_F64, TG_MAX_DIMS, full);
	assert_null(tg_stack(ctx, 2, (tg_tensor *[]){ z, z }, 0));
	assert_error(ctx, TG_ESHAPE, "tg_stack: argument 0 (1,1,1");
	tg_clear_error(ctx);
}

/* ---- split ---------------------------------------------------------------------- */

static void split_gives_consecutive_slices(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota(ctx, TG_F64, SHAPE(2, 6), 0);
	tg_tensor *p[3];
	assert_int_equal(tg_split(x, 1, 3, NULL, p), 0);
	check_values(p[0], (double[]){ 0, 1, 6, 7 }, 4, 0);
	check_values(p[1], (double[]){ 2, 3, 8, 9 }, 4, 0);
	check_values(p[2], (double[]){ 4, 5, 10, 11 }, 4, 0);
	assert_int_equal(tg_split(x, -1, 3, (int64_t[]){ 1, 3, 2 }, p), 0);
	check_shape(p[1], SHAPE(2, 3));
	check_values(p[0], (double[]){ 0, 6 }, 2, 0);
	check_values(p[1], (double[]){ 1, 2, 3, 7, 8, 9 }, 6, 0);
	check_values(p[2], (double[]){ 4, 5, 10, 11 }, 4, 0);
	assert_int_equal(tg_split(x, 0, 2, NULL, p), 0);
	check_values(p[1], (double[]){ 6, 7, 8, 9, 10, 11 }, 6, 0);
	assert_ctx_ok(ctx);
}

/* concat(split(x)) is x, and the gradient through both is dy itself. */
static void split_then_concat_is_the_identity_forward_and_backward(void **state)
{
	tg_ctx *ctx = *state;
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F32 : TG_F64;
		tg_tensor *x = tg_set_requires_grad(rand_t(ctx, dt, SHAPE(3, 10, 2)), true);
		tg_tensor *p[7];
		assert_int_equal(tg_split(x, 1, 7, (int64_t[]){ 2, 1, 1, 3, 1, 1, 1 }, p), 0);
		tg_tensor *y = tg_concat(ctx, 7, p, 1);
		check_same(y, x, 0);
		tg_tensor *dy = rand_t(ctx, dt, SHAPE(3, 10, 2));
		assert_int_equal(tg_backward_ex(y, dy, 0), 0);
		check_same(tg_grad(x), dy, 0);
		tg_reset(ctx);
	}
}

/* ---- a slice's gradient added into its rows of the input's ------------------- */
/* A slice's plain backward adds dout into its own rows of x's gradient,
 * which is cleared once: the values of the old rule, the sum of each
 * part's dout padded with zeros to x's shape (pad_axis), and a backward
 * whose step memory does not grow with the number of parts (a padded
 * tensor of x's size per part, each added whole, made the backward of a
 * split into k parts k times x's size). Each check runs on a leaf x (a
 * parameter, its buffer made by a first backward) and on an intermediate
 * 2 x; central differences in f64 are exact for the linear and quadratic
 * losses here but for rounding. */

enum { PARTS_MAX = 64 };

typedef struct cut {
	int axis;
	int64_t start, len;
} cut;

/* A loss over slices of x: sum_i sum(slice(x, cut i) * w_i), the slices
 * taken by one tg_split when split is set (then the cuts are its parts),
 * plus sum(x * x * v) before or after them when v is set. */
typedef struct cut_loss {
	int n;
	cut c[PARTS_MAX];
	tg_tensor *w[PARTS_MAX];
	bool split, twice; /* twice: the input is 2 x, an intermediate */
	tg_tensor *v;
	bool v_first;
} cut_loss;

static tg_tensor *cut_loss_of(tg_tensor *x, const cut_loss *L)
{
	tg_tensor *src = L->twice ? tg_mul_scalar(x, 2.0) : x;
	tg_tensor *other = L->v && L->v_first ? tg_sum(tg_mul(tg_mul(x, x), L->v)) : NULL;
	tg_tensor *p[PARTS_MAX];
	if (L->split) {
		int64_t sizes[PARTS_MAX];
		for (int i = 0; i < L->n; i++)
			sizes[i] = L->c[i].len;
		if (tg_split(src, L->c[0].axis, L->n, sizes, p))
			return NULL;
	} else {
		for (int i = 0; i < L->n; i++)
			p[i] = tg_slice(src, L->c[i].axis, L->c[i].start, L->c[i].len);
	}
	tg_tensor *l = other;
	for (int i = 0; i < L->n; i++) {
		tg_tensor *t = tg_sum(tg_mul(p[i], L->w[i]));
		l = l ? tg_add(l, t) : t;
	}
	if (L->v && !L->v_first)
		l = tg_add(l, tg_sum(tg_mul(tg_mul(x, x), L->v)));
	return l;
}

/* The old rule's gradient of x: each w_i padded to x's shape by pad_axis
 * and added, the last slice's first as the walk reaches them; times 2 for
 * the intermediate; plus 2 x v. Grad mode off. */
static tg_tensor *old_rule_grad(tg_tensor *x, const cut_loss *L)
{
	tg_ctx *ctx = tg_ctx_of(x);
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *g = NULL;
	for (int i = L->n - 1; i >= 0; i--) {
		const cut *c = &L->c[i];
		tg_tensor *d = tg_pad_axis(L->w[i], c->axis, c->start,
					   tg_shape(x)[c->axis] - c->start - c->len);
		g = g ? tg_add(g, d) : d;
	}
	if (L->twice)
		g = tg_mul_scalar(g, 2.0);
	if (L->v)
		g = tg_add(g, tg_mul_scalar(tg_mul(x, L->v), 2.0));
	tg_set_grad_enabled(ctx, was);
	return g;
}

/* Fills the weights of L's cuts, uniform in [-1, 1). */
static void cut_weights(tg_ctx *ctx, tg_dtype dt, const tg_tensor *x, cut_loss *L)
{
	for (int i = 0; i < L->n; i++) {
		int64_t shape[3];
		memcpy(shape, tg_shape(x), sizeof shape);
		shape[L->c[i].axis] = L->c[i].len;
		L->w[i] = rand_t(ctx, dt, 3, shape);
	}
}

/* x's gradient must be the central differences of L in f64 (step 1e-3) at
 * count elements spread over x, and at the first and last. */
static void check_central(tg_tensor *x, const tg_tensor *g, const cut_loss *L, int count)
{
	tg_ctx *ctx = tg_ctx_of(x);
	bool was = tg_set_grad_enabled(ctx, false);
	const size_t n = tg_numel(x);
	const double eps = 1e-3;
	for (int s = 0; s < count; s++) {
		size_t at = s == count - 1 ? n - 1 : (size_t)s * (n / (size_t)count + 7) % n;
		double keep = tg_get(x, at), f[2];
		for (int k = 0; k < 2; k++) {
			((double *)tg_data_mut(x))[at] = keep + (k ? -eps : eps);
			f[k] = tg_item(cut_loss_of(x, L));
		}
		((double *)tg_data_mut(x))[at] = keep;
		double num = (f[0] - f[1]) / (2 * eps), got = tg_get(g, at);
		if (!(fabs(num - got) <= 1e-7 * (1 + fabs(num))))
			fail_msg("element %zu: gradient %.15g, central difference %.15g", at, got, num);
	}
	tg_set_grad_enabled(ctx, was);
}

/* Step bytes of L's backward (after its forward); x's gradient checked
 * against the old rule's (within tol) and, in f64, central differences;
 * then the step is reset and x's gradient zeroed. */
static size_t check_cut_loss(tg_ctx *ctx, tg_tensor *x, cut_loss *L, double tol, int central)
{
	cut_weights(ctx, tg_dtype_of(x), x, L);
	tg_tensor *l = cut_loss_of(x, L);
	assert_non_null(l);
	size_t before = tg_arena_used(ctx);
	assert_int_equal(tg_backward(l), 0);
	size_t bytes = tg_arena_used(ctx) - before;
	check_same(tg_grad(x), old_rule_grad(x, L), tol);
	if (central && tg_dtype_of(x) == TG_F64)
		check_central(x, tg_grad(x), L, central);
	assert_ctx_ok(ctx);
	tg_reset(ctx);
	tg_zero_grad(x);
	return bytes;
}

/* k parts along axis of a size n: n / k each, the first n % k one more */
static void split_cuts(cut_loss *L, int axis, int k, int64_t n)
{
	L->n = k;
	for (int i = 0, at = 0; i < k; i++) {
		L->c[i] = (cut){ axis, at, n / k + (i < n % k) };
		at += (int)L->c[i].len;
	}
}

static void fail_bytes(const char *what, size_t bytes, size_t base, size_t xbytes)
{
	if (bytes > base + xbytes / 2)
		fail_msg("%s: the backward made %zu step bytes against %zu for the base case; "
			 "x holds %zu",
			 what, bytes, base, xbytes);
}

static void split_parts_add_into_their_rows_of_the_gradient_along_each_axis(void **state)
{
	tg_ctx *ctx = *state;
	static const int parts[] = { 1, 2, 7, 64 };
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F32 : TG_F64;
		tg_tensor *x = tg_param(rand_t(ctx, dt, SHAPE(64, 65, 66)));
		const size_t xbytes = tg_numel(x) * (d ? 4 : 8);
		for (int twice = 0; twice < 2; twice++)
			for (int axis = 0; axis < 3; axis++) {
				size_t base = 0;
				for (size_t p = 0; p < LEN(parts); p++) {
					cut_loss L = { .split = true, .twice = twice };
					split_cuts(&L, axis, parts[p], tg_shape(x)[axis]);
					if (p == 0) /* x's buffer made */
						check_cut_loss(ctx, x, &L, 0, 0);
					size_t bytes = check_cut_loss(ctx, x, &L, 0, 12);
					char what[64];
					snprintf(what, sizeof what, "%s%s split into %d along axis %d",
						 d ? "f32" : "f64", twice ? " 2x" : "", parts[p], axis);
					if (p == 0)
						base = bytes;
					fail_bytes(what, bytes, base, xbytes);
				}
			}
	}
}

/* Slices that overlap, one of the whole axis, one taken twice, one along
 * another axis: their gradients add where they meet. The base case gives
 * each slice a parameter of its own. */
static void overlapping_slices_add_their_gradients_where_they_meet(void **state)
{
	tg_ctx *ctx = *state;
	for (int twice = 0; twice < 2; twice++)
		for (int axis = 0; axis < 3; axis++) {
			tg_tensor *x = tg_param(rand_t(ctx, TG_F64, SHAPE(24, 25, 26)));
			const int64_t n = tg_shape(x)[axis];
			const int other = (axis + 1) % 3;
			cut_loss L = { .n = 6, .twice = twice,
				       .c = { { axis, 0, n }, { axis, 3, 10 }, { axis, 5, 12 },
					      { axis, 5, 12 }, { axis, n - 1, 1 }, { other, 2, 7 } } };
			check_cut_loss(ctx, x, &L, 0, 0); /* x's buffer made */
			size_t bytes = check_cut_loss(ctx, x, &L, 1e-12, 24);
			/* the base: each slice of a parameter of its own */
			tg_tensor *own[6];
			size_t base = 0;
			for (int i = 0; i < L.n; i++)
				own[i] = tg_param(rand_t(ctx, TG_F64, SHAPE(24, 25, 26)));
			for (int pass = 0; pass < 2; pass++) {
				cut_weights(ctx, TG_F64, x, &L);
				tg_tensor *l = NULL;
				for (int i = 0; i < L.n; i++) {
					tg_tensor *s = tg_slice(own[i], L.c[i].axis, L.c[i].start,
								L.c[i].len);
					tg_tensor *t = tg_sum(tg_mul(s, L.w[i]));
					l = l ? tg_add(l, t) : t;
				}
				size_t before = tg_arena_used(ctx);
				assert_int_equal(tg_backward(l), 0);
				base = tg_arena_used(ctx) - before;
				tg_reset(ctx);
				tg_zero_grads(ctx);
			}
			char what[64];
			snprintf(what, sizeof what, "%s6 slices along axis %d", twice ? "2x: " : "",
				 axis);
			/* the intermediate's own sum is one tensor of x's size */
			fail_bytes(what, bytes, base + (twice ? tg_numel(x) * 8 : 0), tg_numel(x) * 8);
		}
	assert_ctx_ok(ctx);
}

/* x sliced into 7 parts and also squared (the square's gradient reaching x
 * before the parts' or after): both gradients add up, as the old rule's. */
static void a_tensor_sliced_and_used_by_another_op_sums_both_gradients(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_param(rand_t(ctx, TG_F64, SHAPE(24, 25, 26)));
	const size_t xbytes = tg_numel(x) * 8;
	for (int twice = 0; twice < 2; twice++)
		for (int first = 0; first < 2; first++)
			for (int axis = 0; axis < 3; axis++) {
				size_t bytes[2];
				for (int k = 0; k < 2; k++) {
					cut_loss L = { .split = true, .twice = twice, .v_first = first,
						       .v = rand_t(ctx, TG_F64, SHAPE(24, 25, 26)) };
					split_cuts(&L, axis, k ? 7 : 1, tg_shape(x)[axis]);
					check_cut_loss(ctx, x, &L, 1e-12, 0); /* the base's buffer */
					L.v = rand_t(ctx, TG_F64, SHAPE(24, 25, 26));
					bytes[k] = check_cut_loss(ctx, x, &L, 1e-12, k ? 24 : 0);
				}
				char what[80];
				snprintf(what, sizeof what, "%ssquared %s the split along axis %d",
					 twice ? "2x: " : "", first ? "before" : "after", axis);
				fail_bytes(what, bytes[1], bytes[0], xbytes);
			}
}

/* A TG_CREATE_GRAPH backward through a split keeps the gradient's history:
 * for L = sum_i sum(p_i^3 w_i), g = dL/dx = 3 x^2 w (w the weights in x's
 * shape), and the gradient of sum(g v) is 6 x w v, taken by a plain
 * backward through the same slices (whose step memory must not grow with
 * the parts); g keeps its values. */
static size_t second_derivative_through_a_split(tg_ctx *ctx, tg_tensor *x, int k, int twice)
{
	tg_tensor *p[16];
	tg_tensor *w = rand_t(ctx, TG_F64, SHAPE(24, 25, 26));
	tg_tensor *v = rand_t(ctx, TG_F64, SHAPE(24, 25, 26));
	tg_tensor *wp[16];
	tg_tensor *src = twice ? tg_mul_scalar(x, 2.0) : x;
	assert_int_equal(tg_split(src, 2, k, NULL, p), 0);
	assert_int_equal(tg_split(w, 2, k, NULL, wp), 0);
	tg_tensor *l = NULL;
	for (int i = 0; i < k; i++) {
		tg_tensor *t = tg_sum(tg_mul(tg_pow(p[i], 3.0), wp[i]));
		l = l ? tg_add(l, t) : t;
	}
	assert_int_equal(tg_backward_ex(l, NULL, TG_CREATE_GRAPH), 0);
	tg_tensor *g = tg_grad(x);
	assert_non_null(g);
	assert_non_null(tg_producer(g)); /* it has history */
	tg_zero_grad(x);
	tg_tensor *l2 = tg_sum(tg_mul(g, v));
	size_t before = tg_arena_used(ctx);
	assert_int_equal(tg_backward(l2), 0);
	size_t bytes = tg_arena_used(ctx) - before;
	const double c = twice ? 8.0 : 1.0; /* (2x)^3 */
	for (size_t i = 0; i < tg_numel(x); i++) {
		double xi = tg_get(x, i), wi = tg_get(w, i), vi = tg_get(v, i);
		double g1 = 3 * c * xi * xi * wi, g2 = 6 * c * xi * wi * vi;
		if (!(fabs(tg_get(g, i) - g1) <= 1e-12 * (1 + fabs(g1))))
			fail_msg("element %zu of dL/dx: %.15g, expected %.15g", i, tg_get(g, i), g1);
		if (!(fabs(tg_get(tg_grad(x), i) - g2) <= 1e-12 * (1 + fabs(g2))))
			fail_msg("element %zu of d(sum(g v))/dx: %.15g, expected %.15g", i,
				 tg_get(tg_grad(x), i), g2);
	}
	assert_ctx_ok(ctx);
	tg_reset(ctx);
	tg_zero_grad(x);
	return bytes;
}

static void a_create_graph_second_derivative_through_a_split_matches_the_analytic_one(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = tg_param(rand_t(ctx, TG_F64, SHAPE(24, 25, 26)));
	for (int twice = 0; twice < 2; twice++) {
		second_derivative_through_a_split(ctx, x, 1, twice); /* x's buffer made */
		size_t one = second_derivative_through_a_split(ctx, x, 1, twice);
		size_t many = second_derivative_through_a_split(ctx, x, 2, twice);
		fail_bytes(twice ? "2x: split into 2" : "split into 2", many, one, tg_numel(x) * 8);
		many = second_derivative_through_a_split(ctx, x, 13, twice);
		fail_bytes(twice ? "2x: split into 13" : "split into 13", many, one, tg_numel(x) * 8);
	}
}

static void split_rejects_parts_that_do_not_fit(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *x = iota(ctx, TG_F64, SHAPE(2, 6), 0);
	tg_tensor *p[4] = { x, x, x, x };
	assert_int_equal(tg_split(x, 1, 4, NULL, p), -1);
	assert_error(ctx, TG_EARG,
		     "tg_split: axis 1 of x (2,6) (size 6) does not split into 4 equal parts");
	assert_null(p[0]);
	assert_null(p[3]);
	tg_clear_error(ctx);
	assert_int_equal(tg_split(x, 1, 2, (int64_t[]){ 2, 3 }, p), -1);
	assert_error(ctx, TG_EARG, "tg_split: sizes add up to 5, but axis 1 of x (2,6) has "
				   "size 6");
	tg_clear_error(ctx);
	assert_int_equal(tg_split(x, 1, 3, (int64_t[]){ 3, 0, 3 }, p), -1);
	assert_error(ctx, TG_EARG, "tg_split: sizes[1] is 0; each must be in [1, 6]");
	tg_clear_error(ctx);
	assert_int_equal(tg_split(x, 0, 0, NULL, p), -1);
	assert_error(ctx, TG_EARG, "tg_split: n is 0; the number of parts must be 1 or more");
	tg_clear_error(ctx);
	/* with sizes too: n, not the sizes, is what is wrong */
	assert_int_equal(tg_split(x, 1, -2, (int64_t[]){ 3, 3 }, p), -1);
	assert_error(ctx, TG_EARG, "tg_split: n is -2; the number of parts must be 1 or more");
	tg_clear_error(ctx);
	assert_int_equal(tg_split(x, 2, 2, NULL, p), -1);
	assert_error(ctx, TG_EARG, "tg_split: axis 2 is out of range for x of shape (2,6)");
	tg_clear_error(ctx);
	assert_int_equal(tg_split(x, 0, 2, NULL, NULL), -1);
	assert_error(ctx, TG_ENULL, "tg_split: out is NULL");
	tg_clear_error(ctx);
}

/* ---- the copies split across threads ----------------------------------------- */
/* slice, pad_axis, concat and stack copy pieces of rows split across the
 * threads by output bytes, so a part may start or end inside any piece. On
 * 1, 2 and 3 threads, tensors past the split's threshold, every element
 * is its source's (iota values name their source) or a padding zero. */

/* t seen along axis as (outer, n, inner). */
static void view3(const tg_tensor *t, int axis, int64_t v[3])
{
	v[0] = v[2] = 1;
	v[1] = tg_shape(t)[axis];
	for (int i = 0; i < tg_ndim(t); i++)
		if (i != axis)
			v[i < axis ? 0 : 2] *= tg_shape(t)[i];
}

/* out must be xs joined along axis (stack: a new axis there). */
static void check_join(const tg_tensor *out, int n, tg_tensor *const *xs, int axis, bool stack)
{
	assert_non_null(out);
	int64_t v[3];
	view3(out, axis, v);
	for (int64_t o = 0; o < v[0]; o++)
		for (int64_t j = 0, k = 0, at = 0; j < v[1]; j++) {
			int64_t m = stack ? 1 : tg_shape(xs[k])[axis];
			if (j - at == m)
				at += m, k++, m = stack ? 1 : tg_shape(xs[k])[axis];
			assert_true(k < n);
			for (int64_t i = 0; i < v[2]; i++) {
				double got = tg_get(out, (size_t)((o * v[1] + j) * v[2] + i));
				double want = tg_get(xs[k], (size_t)((o * m + j - at) * v[2] + i));
				if (got != want)
					fail_msg("element (%lld,%lld,%lld) of the join along axis %d is %g, "
						 "expected %g from input %lld",
						 (long long)o, (long long)j, (long long)i, axis, got, want,
						 (long long)k);
			}
		}
}

/* out must be x's rows [at, at + len) along axis (pad: x in rows [at, at +
 * n) of zeros). */
static void check_rows(const tg_tensor *out, const tg_tensor *x, int axis, int64_t at, bool pad)
{
	assert_non_null(out);
	int64_t vo[3], vx[3];
	view3(out, axis, vo);
	view3(x, axis, vx);
	for (int64_t o = 0; o < vo[0]; o++)
		for (int64_t j = 0; j < vo[1]; j++)
			for (int64_t i = 0; i < vo[2]; i++) {
				int64_t r = pad ? j - at : j + at;
				double want = r >= 0 && r < vx[1]
						      ? tg_get(x, (size_t)((o * vx[1] + r) * vx[2] + i))
						      : 0;
				double got = tg_get(out, (size_t)((o * vo[1] + j) * vo[2] + i));
				if (got != want)
					fail_msg("%s along axis %d at %lld: element (%lld,%lld,%lld) is "
						 "%g, expected %g",
						 pad ? "pad" : "slice", axis, (long long)at, (long long)o,
						 (long long)j, (long long)i, got, want);
			}
}

static void copies_split_across_threads_take_each_element_from_its_source(void **state)
{
	(void)state;
	for (int threads = 1; threads <= 3; threads++)
		for (int d = 0; d < 2; d++) {
			tg_dtype dt = d ? TG_F64 : TG_F32;
			tg_ctx *ctx = tg_ctx_new(3);
			assert_non_null(ctx);
			tg_set_threads(ctx, threads);
			tg_tensor *a = iota(ctx, dt, SHAPE(5, 37, 300), 0);
			tg_tensor *b = iota(ctx, dt, SHAPE(5, 11, 300), 1e6);
			tg_tensor *c = iota(ctx, dt, SHAPE(5, 1, 300), 2e6);
			tg_tensor *mid[3] = { a, b, c };
			check_join(tg_concat(ctx, 3, mid, 1), 3, mid, 1, false);
			tg_tensor *p = iota(ctx, dt, SHAPE(7, 40, 130), 0);
			tg_tensor *q = iota(ctx, dt, SHAPE(3, 40, 130), 1e6);
			tg_tensor *front[2] = { p, q };
			check_join(tg_concat(ctx, 2, front, 0), 2, front, 0, false);
			tg_tensor *r = iota(ctx, dt, SHAPE(100, 7, 50), 0);
			tg_tensor *t = iota(ctx, dt, SHAPE(100, 7, 3), 1e6);
			tg_tensor *last[2] = { r, t };
			check_join(tg_concat(ctx, 2, last, 2), 2, last, 2, false);
			tg_tensor *rows[3] = { iota(ctx, dt, SHAPE(50, 701), 0),
					       iota(ctx, dt, SHAPE(50, 701), 1e6),
					       iota(ctx, dt, SHAPE(50, 701), 2e6) };
			for (int axis = 0; axis <= 2; axis++)
				check_join(tg_stack(ctx, 3, rows, axis), 3, rows, axis, true);
			check_rows(tg_slice(a, 1, 3, 30), a, 1, 3, false);
			check_rows(tg_slice(a, 2, 7, 290), a, 2, 7, false);
			check_rows(tg_slice(p, 0, 1, 5), p, 0, 1, false);
			check_rows(tg_pad_axis(a, 1, 0, 9), a, 1, 0, true);
			check_rows(tg_pad_axis(a, 1, 4, 0), a, 1, 4, true);
			check_rows(tg_pad_axis(a, 2, 3, 5), a, 2, 3, true);
			check_rows(tg_pad_axis(p, 0, 2, 3), p, 0, 2, true);
			assert_true(tg_ok(ctx));
			tg_ctx_free(ctx);
		}
}

/* Permutes large enough to be split across threads (by runs, by indices,
 * by column strips or row bands of one transpose) and, from 1 MiB on, written past the
 * cache; each with the tensors at every 16-byte offset from a cache line,
 * so that the AVX-512 blocks' grid is shifted every way. */
static void permutes_split_and_streamed_match_a_naive_loop(void **state)
{
	(void)state;
	for (int threads = 1; threads <= 3; threads++)
		for (int shift = 1; shift <= 4; shift++) {
			tg_ctx *ctx = tg_ctx_new(3);
			assert_non_null(ctx);
			tg_set_threads(ctx, threads);
			/* a step tensor of 4 * shift + 1 floats moves the next ones
			 * by 16 bytes more each time */
#define AT_SHIFT() tg_zeros(ctx, TG_F32, SHAPE(4 * shift + 1))
			AT_SHIFT();
			check_permute(ctx, TG_F32, SHAPE(512, 768), (int[]){ 1, 0 });
			AT_SHIFT();
			check_permute(ctx, TG_F64, SHAPE(256, 384), (int[]){ 1, 0 });
			AT_SHIFT();
			check_permute(ctx, TG_F32, SHAPE(2, 256, 640), (int[]){ 0, 2, 1 });
			AT_SHIFT();
			check_permute(ctx, TG_F64, SHAPE(2, 40, 256, 16), (int[]){ 0, 3, 2, 1 });
			AT_SHIFT();
			check_permute(ctx, TG_F32, SHAPE(700, 1000), (int[]){ 1, 0 });
			AT_SHIFT();
			check_permute(ctx, TG_F32, SHAPE(8, 64, 33, 32), (int[]){ 0, 2, 3, 1 });
			AT_SHIFT();
			check_permute(ctx, TG_F64, SHAPE(300, 50, 40), (int[]){ 1, 0, 2 });
			/* x's rows too short for strips: bands of its other axis,
			 * their count not a multiple of a line */
			AT_SHIFT();
			check_permute(ctx, TG_F32, SHAPE(40001, 4), (int[]){ 1, 0 });
			AT_SHIFT();
			check_permute(ctx, TG_F64, SHAPE(32771, 3), (int[]){ 1, 0 });
			AT_SHIFT();
			check_permute(ctx, TG_F32, SHAPE(3, 20011, 2), (int[]){ 0, 2, 1 });
			AT_SHIFT();
			check_permute(ctx, TG_F32, SHAPE(300007, 33), (int[]){ 1, 0 });
#undef AT_SHIFT
			assert_true(tg_ok(ctx));
			tg_ctx_free(ctx);
		}
}

/* ---- bmm ------------------------------------------------------------------------ */

/* C (N,M) = A (N,K) @ B (K,M), each addressed with its own row stride. */
static void matmul_ref(const double *A, const double *B, double *C, int64_t N, int64_t K,
		       int64_t M)
{
	for (int64_t i = 0; i < N; i++)
		for (int64_t j = 0; j < M; j++) {
			double s = 0;
			for (int64_t k = 0; k < K; k++)
				s += A[i * K + k] * B[k * M + j];
			C[i * M + j] = s;
		}
}

static void bmm_matches_a_naive_loop(tg_dtype dt, double tol)
{
	tg_ctx *ctx = tg_ctx_new(3);
	enum { B = 3, N = 5, K = 7, M = 4 };
	tg_tensor *a = rand_t(ctx, dt, SHAPE(B, N, K));
	tg_tensor *b = rand_t(ctx, dt, SHAPE(B, K, M));
	double A[B * N * K], Bv[B * K * M], C[B * N * M];
	assert_int_equal(tg_copy_to_f64(a, A, LEN(A)), 0);
	assert_int_equal(tg_copy_to_f64(b, Bv, LEN(Bv)), 0);
	for (int i = 0; i < B; i++)
		matmul_ref(A + i * N * K, Bv + i * K * M, C + i * N * M, N, K, M);
	tg_tensor *c = tg_bmm(a, b);
	check_shape(c, SHAPE(B, N, M));
	assert_int_equal(tg_dtype_of(c), dt);
	check_values(c, C, LEN(C), tol);
	/* b shared by every item: one GEMM over all rows of a */
	tg_tensor *b0 = tg_slice(b, 0, 1, 1);
	tg_tensor *c2 = tg_bmm(a, tg_squeeze(b0, 0));
	for (int i = 0; i < B; i++)
		matmul_ref(A + i * N * K, Bv + K * M, C + i * N * M, N, K, M);
	check_values(c2, C, LEN(C), tol);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void bmm_f64_matches_a_naive_loop(void **state)
{
	(void)state;
	bmm_matches_a_naive_loop(TG_F64, 1e-12);
}

static void bmm_f32_matches_a_naive_loop(void **state)
{
	(void)state;
	bmm_matches_a_naive_loop(TG_F32, 1e-5);
}

/* ---- small products: gemm.c's loops ----------------------------------------- */

/* element e of t, f32 or f64, to v */
static void set_elem(tg_tensor *t, size_t e, double v)
{
	if (tg_dtype_of(t) == TG_F64)
		((double *)tg_data_mut(t))[e] = v;
	else
		((float *)tg_data_mut(t))[e] = (float)v;
}

/* count items of op(A) (N,K) @ op(B) (K,M) + beta C through tg_gemm_small
 * (count 1: tg_gemm) in f32 or f64, every matrix with rows padded past its
 * length and items further apart than their matrices, against long double
 * loops: each element within (K + 1) eps sum_k |a b| (+ |C| for beta 1) of
 * them, C unread for beta 0 (NaN there) and its padding unchanged. */
static void small_product_matches_loops(tg_ctx *ctx, tg_dtype dt, bool ta, bool tb, int beta,
					int N, int K, int M, int count)
{
	const int ra = ta ? K : N, ca = ta ? N : K, rb = tb ? M : K, cb = tb ? K : M;
	const int lda = ca + 2, ldb = cb + 3, ldc = M + 1;
	const int64_t sa = (int64_t)ra * lda + 1, sb = (int64_t)rb * ldb + 2, sc = (int64_t)N * ldc + 3;
	tg_tensor *a = rand_t(ctx, dt, SHAPE(count, sa));
	tg_tensor *b = rand_t(ctx, dt, SHAPE(count, sb));
	tg_tensor *c = rand_t(ctx, dt, SHAPE(count, sc));
	const size_t nc = (size_t)count * (size_t)sc;
	double *c0 = malloc(nc * sizeof *c0);
	assert_non_null(c0);
	for (size_t e = 0; e < nc; e++) {
		size_t i = e % (size_t)sc / (size_t)ldc, j = e % (size_t)sc % (size_t)ldc;
		if (!beta && i < (size_t)N && j < (size_t)M)
			set_elem(c, e, NAN);
		c0[e] = tg_get(c, e);
	}
	if (count == 1)
		tg_gemm(ctx, dt, ta, tb, N, M, K, tg_data(a), lda, tg_data(b), ldb, beta,
			tg_data_mut(c), ldc);
	else
		tg_gemm_small(dt, ta, tb, N, M, K, tg_data(a), lda, tg_data(b), ldb, beta,
			      tg_data_mut(c), ldc, count, sa, sb, sc);
	const double eps = dt == TG_F64 ? 0x1p-52 : 0x1p-23;
	for (int t = 0; t < count; t++)
		for (int i = 0; i < N; i++)
			for (int j = 0; j < ldc; j++) {
				size_t e = (size_t)t * (size_t)sc + (size_t)i * (size_t)ldc + (size_t)j;
				double got = tg_get(c, e);
				if (j >= M) {
					if (memcmp(&got, &c0[e], sizeof got))
						fail_msg("C[%d][%d,%d] past M changed to %.17g from %.17g",
							 t, i, j, got, c0[e]);
					continue;
				}
				long double ref = beta ? c0[e] : 0, mag = fabsl(ref);
				for (int k = 0; k < K; k++) {
					long double x = tg_get(a, (size_t)t * (size_t)sa +
									  (size_t)(ta ? k * lda + i : i * lda + k));
					long double y = tg_get(b, (size_t)t * (size_t)sb +
									  (size_t)(tb ? j * ldb + k : k * ldb + j));
					ref += x * y;
					mag += fabsl(x * y);
				}
				if (!(fabsl(got - ref) <= (K + 1) * eps * mag))
					fail_msg("%s a%s b%s beta %d, %dx%dx%d, %d items: C[%d][%d,%d] = "
						 "%.17g, loops give %.17Lg (bound %.3g)",
						 dt == TG_F64 ? "f64" : "f32", ta ? "^T" : "", tb ? "^T" : "",
						 beta, N, K, M, count, t, i, j, got, ref,
						 (double)((K + 1) * eps * mag));
			}
	free(c0);
}

static void small_products_match_long_double_loops_for_every_transpose_and_beta(void **state)
{
	(void)state;
	/* N, K, M: odd sizes, rows of 1 to 9 columns (the widths of the loops'
	 * blocks and past them), an inner and an outer product */
	static const int shapes[][3] = { { 1, 1, 1 }, { 2, 2, 2 }, { 3, 5, 7 }, { 4, 4, 4 },
					 { 5, 1, 9 }, { 1, 64, 1 }, { 1, 2, 64 }, { 7, 2, 9 },
					 { 2, 3, 17 }, { 9, 3, 3 } };
	tg_ctx *ctx = tg_ctx_new(5);
	for (int d = 0; d < 2; d++)
		for (int f = 0; f < 4; f++)
			for (int beta = 0; beta <= 1; beta++)
				for (size_t s = 0; s < LEN(shapes); s++) {
					const int *z = shapes[s];
					assert_true(tg_gemm_small_fits(z[0], z[2], z[1]));
					for (int count = 1; count <= 300; count += 299)
						small_product_matches_loops(ctx, d ? TG_F64 : TG_F32, f & 1,
									    f & 2, beta, z[0], z[1],
									    z[2], count);
					tg_reset(ctx);
				}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* tg_bmm_t of small items against naive double loops, for every flag
 * pair, in f32 and f64, batch 1 and a large batch whose b broadcasts. */
static void bmm_t_of_small_items_matches_a_naive_loop_for_all_four_flags(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(6);
	enum { N = 3, K = 5, M = 7 };
	for (int d = 0; d < 2; d++)
		for (int f = 0; f < 4; f++)
			for (int64_t B = 1; B <= 2049; B += 2048) {
				const bool ta = f & 1, tb = f & 2;
				tg_dtype dt = d ? TG_F64 : TG_F32;
				tg_tensor *a = rand_t(ctx, dt, 4,
						      (int64_t[]){ B, 2, ta ? K : N, ta ? N : K });
				tg_tensor *b = rand_t(ctx, dt, 3, (int64_t[]){ 2, tb ? M : K, tb ? K : M });
				tg_tensor *c = tg_bmm_t(a, ta, b, tb);
				assert_ctx_ok(ctx);
				check_shape(c, 4, (int64_t[]){ B, 2, N, M });
				size_t items = (size_t)B * 2;
				double *A = malloc(items * N * K * sizeof *A), *Bv = malloc(2 * K * M * sizeof *Bv);
				double *C = malloc(items * N * M * sizeof *C);
				double *Ai = malloc(N * K * sizeof *Ai), Bi[K * M];
				assert_int_equal(tg_copy_to_f64(a, A, items * N * K), 0);
				assert_int_equal(tg_copy_to_f64(b, Bv, 2 * K * M), 0);
				for (size_t t = 0; t < items; t++) {
					const double *x = A + t * N * K, *y = Bv + t % 2 * K * M;
					for (int i = 0; i < N; i++)
						for (int k = 0; k < K; k++)
							Ai[i * K + k] = ta ? x[k * N + i] : x[i * K + k];
					for (int k = 0; k < K; k++)
						for (int j = 0; j < M; j++)
							Bi[k * M + j] = tb ? y[j * K + k] : y[k * M + j];
					matmul_ref(Ai, Bi, C + t * N * M, N, K, M);
				}
				print_message("%s ta=%d tb=%d batch %lld\n", d ? "f64" : "f32", ta, tb,
					      (long long)B);
				check_values(c, C, items * N * M, d ? 1e-14 : 1e-6);
				free(A);
				free(Bv);
				free(C);
				free(Ai);
				tg_reset(ctx);
			}
	tg_ctx_free(ctx);
}

/* sum(bmm_t(a, ta, b, tb) * w): w fixed, so that every element of the
 * product gets its own gradient */
static tg_tensor *weighted_bmm(tg_tensor *const *in, void *user)
{
	const int *flags = user;
	return tg_sum(tg_mul(tg_bmm_t(in[0], flags[0], in[1], flags[1]), in[2]));
}

/* The gradients of small batched products, b broadcast along a's leading
 * axis, against central differences in f64, for every flag pair. */
static void bmm_t_of_small_items_gives_the_gradients_of_central_differences(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(7);
	enum { N = 2, K = 3, M = 5 };
	for (int f = 0; f < 4; f++) {
		int flags[2] = { f & 1, (f & 2) != 0 };
		tg_tensor *in[3] = {
			tg_param(rand_t(ctx, TG_F64, 4, (int64_t[]){ 3, 2, flags[0] ? K : N, flags[0] ? N : K })),
			tg_param(rand_t(ctx, TG_F64, 3, (int64_t[]){ 2, flags[1] ? M : K, flags[1] ? K : M })),
			rand_t(ctx, TG_F64, 4, (int64_t[]){ 3, 2, N, M }),
		};
		tg_gradcheck_result res;
		if (tg_gradcheck(ctx, weighted_bmm, flags, 3, in, NULL, &res))
			fail_msg("ta=%d tb=%d: worst |numeric - analytic| %.3g", flags[0], flags[1],
				 res.worst_abs);
		tg_reset(ctx);
	}
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* a (2,1,3,4) @ b (5,4,2) -> (2,5,3,2): item [i,j] is a[i,0] @ b[j]. The
 * gradients of sum(c w) must be those of the same sum over the items made
 * with tg_matmul of slices of a and b. */
static void bmm_broadcasts_batch_axes_like_per_item_matmul(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = tg_param(rand_t(ctx, TG_F64, SHAPE(2, 1, 3, 4)));
	tg_tensor *b = tg_param(rand_t(ctx, TG_F64, SHAPE(5, 4, 2)));
	tg_tensor *w = rand_t(ctx, TG_F64, SHAPE(2, 5, 3, 2));
	tg_tensor *c = tg_bmm(a, b);
	check_shape(c, SHAPE(2, 5, 3, 2));
	assert_int_equal(tg_backward(tg_sum(tg_mul(c, w))), 0);
	tg_tensor *da = tg_detach(tg_grad(a)), *db = tg_detach(tg_grad(b));
	tg_zero_grads(ctx);

	tg_tensor *loss = NULL;
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 5; j++) {
			tg_tensor *ai = tg_reshape(tg_slice(a, 0, i, 1), SHAPE(3, 4));
			tg_tensor *bj = tg_squeeze(tg_slice(b, 0, j, 1), 0);
			tg_tensor *cij = tg_matmul(ai, bj);
			tg_tensor *want = tg_reshape(
			    tg_slice(tg_slice(c, 0, i, 1), 1, j, 1), SHAPE(3, 2));
			check_same(cij, want, 1e-14);
			tg_tensor *wij = tg_reshape(
			    tg_slice(tg_slice(w, 0, i, 1), 1, j, 1), SHAPE(3, 2));
			tg_tensor *term = tg_sum(tg_mul(cij, wij));
			loss = loss ? tg_add(loss, term) : term;
		}
	assert_int_equal(tg_backward(loss), 0);
	check_same(tg_grad(a), da, 1e-13);
	check_same(tg_grad(b), db, 1e-13);
	assert_ctx_ok(ctx);
	tg_zero_grads(ctx);
}

/* Each flag pattern of tg_bmm_t equals tg_bmm of permuted copies. */
static void bmm_t_matches_bmm_of_permuted_copies_for_all_four_flags(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = rand_t(ctx, TG_F64, SHAPE(2, 3, 4));
	tg_tensor *b = rand_t(ctx, TG_F64, SHAPE(1, 4, 3));
	const int swap[3] = { 0, 2, 1 };
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			tg_tensor *x = ta ? tg_permute(a, swap) : a;
			tg_tensor *y = tb ? tg_permute(b, swap) : b;
			/* op(x) = a, op(y) = b whatever the flags */
			tg_tensor *want = tg_bmm(a, b);
			tg_tensor *got = tg_bmm_t(x, ta, y, tb);
			check_same(got, want, 1e-14);
		}
	assert_ctx_ok(ctx);
}

/* tg_bmm_t(a, ta, b, tb) on a new context of the given threads, inputs
 * from seed 11 (the same on every call); its values into out. */
static void bmm_on_threads(int threads, const int64_t *sa, int na, bool ta, const int64_t *sb,
			   int nb, bool tb, double *out, size_t n)
{
	tg_ctx *ctx = tg_ctx_new(11);
	tg_set_threads(ctx, threads);
	tg_tensor *c = tg_bmm_t(rand_t(ctx, TG_F32, na, sa), ta, rand_t(ctx, TG_F32, nb, sb), tb);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_numel(c), n);
	assert_int_equal(tg_copy_to_f64(c, out, n), 0);
	tg_ctx_free(ctx);
}

/* Items of 2^15 multiply-adds or more are shared out whole among the
 * threads once they make 2^18 (ops/matrix.c), each one GEMM on one thread:
 * the bits of one thread, on 2 and 3 threads, with broadcast batch axes
 * (item [i,j] is a[i,0] @ b[j], found from the item's number) and every
 * transpose. Smaller items run in turn on the caller; a large item is cut
 * into bands across the threads: within rounding. */
static void bmm_on_two_and_three_threads_gives_the_values_of_one(void **state)
{
	(void)state;
	enum { I = 6, J = 5, N = 40, K = 32, M = 30 };
	static double one[I * J * N * M], more[I * J * N * M];
	const size_t mid = I * J * N * M, large = 3 * 200 * 50, tiny = 30 * 40 * 3 * 2;
	for (int f = 0; f < 4; f++) {
		bool ta = f & 1, tb = f & 2;
		int64_t sa[4] = { I, 1, ta ? K : N, ta ? N : K }, sb[3] = { J, tb ? M : K, tb ? K : M };
		bmm_on_threads(1, sa, 4, ta, sb, 3, tb, one, mid);
		for (int t = 2; t <= 3; t++) {
			bmm_on_threads(t, sa, 4, ta, sb, 3, tb, more, mid);
			for (size_t i = 0; i < mid; i++)
				if (memcmp(&one[i], &more[i], sizeof one[i]))
					fail_msg("ta=%d tb=%d, %d threads: element %zu is %a, on one "
						 "thread %a", ta, tb, t, i, more[i], one[i]);
		}
	}
	int64_t ta_[4] = { 30, 1, 3, 4 }, tb_[3] = { 40, 4, 2 };
	bmm_on_threads(1, ta_, 4, false, tb_, 3, false, one, tiny);
	bmm_on_threads(2, ta_, 4, false, tb_, 3, false, more, tiny);
	assert_memory_equal(one, more, sizeof(double) * tiny);
	int64_t la[3] = { 3, 200, 60 }, lb[3] = { 3, 60, 50 };
	bmm_on_threads(1, la, 3, false, lb, 3, false, one, large);
	for (int t = 2; t <= 3; t++) {
		bmm_on_threads(t, la, 3, false, lb, 3, false, more, large);
		for (size_t i = 0; i < large; i++)
			if (!(fabs(more[i] - one[i]) <= 2 * 60 * 0x1p-23 * 60))
				fail_msg("large items, %d threads: element %zu is %.9g, on one thread "
					 "%.9g", t, i, more[i], one[i]);
	}
}

static void bmm_rejects_shapes_that_do_not_fit(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = tg_zeros(ctx, TG_F64, SHAPE(2, 3, 4));
	assert_null(tg_bmm(a, tg_zeros(ctx, TG_F64, SHAPE(2, 3, 4))));
	assert_error(ctx, TG_ESHAPE, "tg_bmm: (2,3,4) @ (2,3,4): inner sizes 4 and 3 differ");
	tg_clear_error(ctx);
	assert_null(tg_bmm(a, tg_zeros(ctx, TG_F64, SHAPE(3, 4, 2))));
	assert_error(ctx, TG_ESHAPE, "tg_bmm: (2,3,4) @ (3,4,2): the batch axes (all but the "
				     "last two) do not broadcast");
	tg_clear_error(ctx);
	assert_null(tg_bmm(a, tg_zeros(ctx, TG_F64, SHAPE(4))));
	assert_error(ctx, TG_ESHAPE, "tg_bmm: (2,3,4) @ (4,): both inputs need at least 2 "
				     "dimensions");
	tg_clear_error(ctx);
	assert_null(tg_bmm_t(a, true, tg_zeros(ctx, TG_F64, SHAPE(4, 2)), false));
	assert_error(ctx, TG_ESHAPE, "tg_bmm_t: (2,3,4)^T @ (4,2): inner sizes 3 and 4 differ");
	tg_clear_error(ctx);
	assert_null(tg_bmm(a, tg_zeros(ctx, TG_F32, SHAPE(2, 4, 2))));
	assert_error(ctx, TG_EDTYPE, "tg_bmm: dtypes differ");
	tg_clear_error(ctx);
}

/* ---- beyond 4 dimensions, once tensors have them ---------------------------------- */

/* Skipped while TG_MAX_DIMS (an enum, not a macro) is below 8. */
static void shape_ops_work_on_more_than_4_dimensions(void **state)
{
	tg_ctx *ctx = *state;
	if (TG_MAX_DIMS < 8) {
		skip();
		return;
	}
	check_permute(ctx, TG_F64, SHAPE(2, 3, 1, 2, 3), (int[]){ 4, 2, 0, 3, 1 });
	check_permute(ctx, TG_F32, SHAPE(2, 1, 3, 2, 2, 3), (int[]){ 1, 0, 5, 4, 2, 3 });
	tg_tensor *x = tg_set_requires_grad(iota(ctx, TG_F64, SHAPE(2, 1, 2, 1, 3), 0), true);
	tg_tensor *y = tg_concat(ctx, 5, (tg_tensor *[]){ x, x, x, x, x }, 3); /* (2,1,2,5,3) */
	check_shape(y, SHAPE(2, 1, 2, 5, 3));
	tg_tensor *s = tg_slice(tg_stack(ctx, 2, (tg_tensor *[]){ y, y }, -1), 5, 1, 1);
	check_same(tg_squeeze(s, -1), y, 0);
	/* a (1,2,1,2,5,3) @ b (2,1,1,1,3,2) -> (2,2,1,2,5,2) */
	tg_tensor *z = tg_bmm(tg_unsqueeze(y, 0), tg_ones(ctx, TG_F64, SHAPE(2, 1, 1, 1, 3, 2)));
	check_shape(z, SHAPE(2, 2, 1, 2, 5, 2));
	assert_int_equal(tg_backward(tg_sum(z)), 0);
	/* each x element enters 5 copies, 2 columns, 2 batch items of b */
	for (size_t i = 0; i < 12; i++)
		assert_near(tg_get(tg_grad(x), i), 20, 0);
	assert_ctx_ok(ctx);
}

/* ---- addmm --------------------------------------------------------------------- */

/* b + a @ w against a naive loop, for K past OpenBLAS's blocks of K (where
 * its partial sums go into the output one after another), with b as (M,)
 * and (1,M); its gradients against those of tg_add(tg_matmul(a, w), b).
 * The tolerance is relative to sum |a_ik w_kj| + |b_j|. */
static void addmm_matches_a_naive_loop_and_matmul_plus_add(void **state)
{
	tg_ctx *ctx = *state;
	const int64_t shapes[][3] = { { 5, 7, 4 }, { 3, 1000, 9 }, { 130, 600, 70 } };
	for (int dt = TG_F32; dt <= TG_F64; dt++)
		for (size_t s = 0; s < LEN(shapes); s++)
			for (int row2 = 0; row2 <= 1; row2++) {
				int64_t N = shapes[s][0], K = shapes[s][1], M = shapes[s][2];
				double eps = dt == TG_F64 ? 1e-15 : 1e-6;
				tg_tensor *a = tg_param(rand_t(ctx, dt, SHAPE(N, K)));
				tg_tensor *w = tg_param(rand_t(ctx, dt, SHAPE(K, M)));
				tg_tensor *b = tg_param(row2 ? rand_t(ctx, dt, SHAPE(1, M))
							     : rand_t(ctx, dt, SHAPE(M)));
				tg_tensor *g = rand_t(ctx, dt, SHAPE(N, M));
				double *A = malloc((size_t)(N * K) * sizeof *A);
				double *W = malloc((size_t)(K * M) * sizeof *W);
				double *Bv = malloc((size_t)M * sizeof *Bv);
				assert_true(A && W && Bv);
				assert_int_equal(tg_copy_to_f64(a, A, (size_t)(N * K)), 0);
				assert_int_equal(tg_copy_to_f64(w, W, (size_t)(K * M)), 0);
				assert_int_equal(tg_copy_to_f64(b, Bv, (size_t)M), 0);
				tg_tensor *c = tg_addmm(a, w, b);
				check_shape(c, SHAPE(N, M));
				for (int64_t i = 0; i < N; i++)
					for (int64_t j = 0; j < M; j++) {
						double sum = Bv[j], mag = fabs(Bv[j]);
						for (int64_t k = 0; k < K; k++) {
							sum += A[i * K + k] * W[k * M + j];
							mag += fabs(A[i * K + k] * W[k * M + j]);
						}
						double got = tg_get(c, (size_t)(i * M + j));
						if (!(fabs(got - sum) <= 4 * eps * mag))
							fail_msg("addmm (%lld,%lld,%lld)[%lld,%lld] = %.17g, "
								 "expected %.17g",
								 (long long)N, (long long)K, (long long)M,
								 (long long)i, (long long)j, got, sum);
					}
				assert_int_equal(tg_backward(tg_sum(tg_mul(c, g))), 0);
				tg_tensor *da = tg_detach(tg_grad(a)), *dw = tg_detach(tg_grad(w));
				tg_tensor *db = tg_detach(tg_grad(b));
				tg_zero_grads(ctx);
				tg_tensor *c2 = tg_add(tg_matmul(a, w), b);
				assert_int_equal(tg_backward(tg_sum(tg_mul(c2, g))), 0);
				double tol = 4 * eps * (double)(K > N ? K : N);
				check_same(da, tg_grad(a), tol);
				check_same(dw, tg_grad(w), tol);
				check_same(db, tg_grad(b), tol);
				assert_ctx_ok(ctx);
				free(A);
				free(W);
				free(Bv);
				tg_zero_grads(ctx);
				tg_reset(ctx);
			}
}

/* t is NULL and ctx holds an error of this code containing text; cleared. */
static void refused(tg_ctx *ctx, const tg_tensor *t, tg_status code, const char *text)
{
	assert_null(t);
	assert_error(ctx, code, text);
	tg_clear_error(ctx);
}

static void addmm_rejects_shapes_that_do_not_fit(void **state)
{
	tg_ctx *ctx = *state;
	tg_tensor *a = rand_t(ctx, TG_F64, SHAPE(2, 3)), *w = rand_t(ctx, TG_F64, SHAPE(3, 4));
	tg_tensor *b3 = rand_t(ctx, TG_F64, SHAPE(3)), *b24 = rand_t(ctx, TG_F64, SHAPE(2, 4));
	tg_tensor *b4 = rand_t(ctx, TG_F64, SHAPE(4)), *b4f = rand_t(ctx, TG_F32, SHAPE(4));
	tg_tensor *a3 = rand_t(ctx, TG_F64, SHAPE(3));
	refused(ctx, tg_addmm(a, w, b3), TG_ESHAPE,
		"tg_addmm: b (3,) must be a row (4,) or (1,4) for w (3,4)");
	refused(ctx, tg_addmm(a, w, b24), TG_ESHAPE,
		"tg_addmm: b (2,4) must be a row (4,) or (1,4) for w (3,4)");
	refused(ctx, tg_addmm(a, b24, b4), TG_ESHAPE,
		"tg_addmm: a (2,3) @ w (2,4): both must be 2-D with a's columns w's rows");
	refused(ctx, tg_addmm(a3, w, b4), TG_ESHAPE,
		"tg_addmm: a (3,) @ w (3,4): both must be 2-D with a's columns w's rows");
	refused(ctx, tg_addmm(a, w, b4f), TG_EDTYPE, "tg_addmm");
	refused(ctx, tg_addmm(NULL, w, b4), TG_ENULL, "tg_addmm");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(permute_matches_a_naive_loop_for_every_order_of_3_axes),
		T(permute_of_2d_is_the_transpose),
		T(permute_matches_a_naive_loop_for_4d_orders_and_size_one_axes),
		T(permute_of_larger_tensors_crosses_tile_edges),
	T(transposes_of_sizes_around_the_blocks_match_a_naive_loop),
	T(transpose_moves_bits_unchanged),
		T(permute_backward_applies_the_inverse_permutation),
		T(a_permuted_gradient_adds_into_the_one_held_as_the_accumulate_does),
		T(a_second_transposed_gradient_makes_no_copy),
		T(permute_rejects_what_is_not_a_permutation),
		T(a_reshape_shares_the_data_and_a_write_to_either_stays_its_own),
		T(reshapes_of_what_changes_in_place_are_copies),
		T(a_detach_shares_the_data_and_writes_stay_apart),
		T(a_slice_of_leading_rows_shares_and_writes_stay_apart),
		T(a_permute_of_axes_of_size_1_shares),
		T(a_write_after_a_reshape_was_saved),
		T(a_gradcheck_leaves_reshapes_of_its_inputs_alone),
		T(squeeze_and_unsqueeze_drop_and_insert_axes_of_size_1),
		T(squeeze_and_unsqueeze_reject_bad_axes),
		T(axis_arguments_of_a_scalar_say_it_has_no_axes),
		T(slice_takes_the_hand_computed_elements),
		T(slice_gradient_is_dout_padded_with_zeros),
		T(slice_and_pad_axis_reject_out_of_range_arguments),
		T(concat_joins_along_any_axis),
		T(concat_of_many_tensors_is_differentiable_to_each),
		T(concat_of_six_passes_the_gradient_checks_for_each_input),
		T(concat_rejects_each_misuse_naming_itself),
		T(stack_joins_along_a_new_axis),
		T(stack_of_many_tensors_is_differentiable_to_each),
		T(stack_of_six_passes_the_gradient_checks_for_each_input),
		T(stack_rejects_each_misuse_naming_itself),
		T(split_gives_consecutive_slices),
		T(split_then_concat_is_the_identity_forward_and_backward),
		T(split_parts_add_into_their_rows_of_the_gradient_along_each_axis),
		T(overlapping_slices_add_their_gradients_where_they_meet),
		T(a_tensor_sliced_and_used_by_another_op_sums_both_gradients),
		T(a_create_graph_second_derivative_through_a_split_matches_the_analytic_one),
		T(split_rejects_parts_that_do_not_fit),
		T(copies_split_across_threads_take_each_element_from_its_source),
		T(permutes_split_and_streamed_match_a_naive_loop),
		T(bmm_f64_matches_a_naive_loop),
		T(bmm_f32_matches_a_naive_loop),
		T(small_products_match_long_double_loops_for_every_transpose_and_beta),
		T(bmm_t_of_small_items_matches_a_naive_loop_for_all_four_flags),
		T(bmm_t_of_small_items_gives_the_gradients_of_central_differences),
		T(bmm_broadcasts_batch_axes_like_per_item_matmul),
		T(bmm_t_matches_bmm_of_permuted_copies_for_all_four_flags),
		T(bmm_on_two_and_three_threads_gives_the_values_of_one),
		T(bmm_rejects_shapes_that_do_not_fit),
		T(addmm_matches_a_naive_loop_and_matmul_plus_add),
		T(addmm_rejects_shapes_that_do_not_fit),
		T(shape_ops_work_on_more_than_4_dimensions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
