/*
 * test_conv_depthwise.c - conv2d's direct depthwise kernels
 * (ops/conv_depthwise.c) against its im2col kernels, in f64 and f32.
 *
 * Two contexts run the same depthwise convolutions (groups = C, O = m C):
 * one as made by default, one made with TG_CONV=im2col in the environment.
 * The forward pass (with and without bias), the input gradient and the
 * weight gradient are compared over kernels 1-5 (non-square), strides 1-3,
 * padding 0-2 (more than the kernel needs too), dilation 1-2, multipliers 1
 * and 2, images down to 1x1 under a larger kernel, odd widths and rows
 * longer than the kernels' vector blocks; the tolerance is relative to the
 * sum of |a b| over each element's products. NaN and inf come out where
 * im2col gives them. Then 2 and 3 threads give the
 * bits of one (but for the f32 weight gradients that oneDNN computes when
 * the build has it), and tg_gradcheck passes through the depthwise rules in f64.
 * Shape legend: x (N,C,H,W), w (O,1,KH,KW), out (N,O,OH,OW).
 */
#include "conv_check.h"

#include <stdlib.h>

enum { SEED = 23 };

/* how the results checked against im2col are named in a failure */
static const char PATH[] = "direct";

/* Fails unless a and b hold the same bits. */
static void expect_same_bits(const char *label, const char *kernel, int threads,
			     const tg_tensor *a, const tg_tensor *b)
{
	assert_non_null(a);
	assert_non_null(b);
	size_t size = tg_dtype_of(a) == TG_F64 ? 8 : 4, n = (size_t)tg_numel(a);
	assert_int_equal(n, tg_numel(b));
	const char *p = tg_data(a), *q = tg_data(b);
	for (size_t i = 0; i < n; i++)
		if (memcmp(p + i * size, q + i * size, size))
			fail_msg("%s, %s: element %zu differs between 1 and %d threads", kernel,
				 label, i, threads);
}

typedef struct dw_case {
	int64_t N, C, m, H, W, KH, KW;
	tg_conv_opts o;
} dw_case;

/* Whether the weight gradient of c in dt runs here, where the bits do not
 * depend on the thread count: in f32 oneDNN takes the 3x3 kernels and
 * those at larger strides, and its sums on several threads are not those
 * of one. */
static bool own_weight_grad(tg_dtype dt, const dw_case *c)
{
#ifdef TG_HAVE_DNNL
	return dt == TG_F64 || (c->KH * c->KW > 9 && c->o.stride[0] == 1 && c->o.stride[1] == 1);
#else
	(void)dt, (void)c;
	return true;
#endif
}

/* The three kernels of case c in dtype dt: ctx (direct) against ref
 * (im2col), then ctx on 2 and 3 threads against ctx on 1. */
static void compare_case(tg_ctx *ctx, tg_ctx *ref, tg_dtype dt, const dw_case *c)
{
	const tg_conv_opts *o = &c->o;
	int64_t O = c->m * c->C;
	int64_t OH = out_side(c->H, c->KH, o->stride[0], o->padding[0], o->dilation[0]);
	int64_t OW = out_side(c->W, c->KW, o->stride[1], o->padding[1], o->dilation[1]);
	if (OH < 1 || OW < 1)
		return;
	double tol = dt == TG_F64 ? 1e-12 : 1e-5;
	char label[256];
	snprintf(label, sizeof label,
		 "%s x (%lld,%lld,%lld,%lld) w (%lld,1,%lld,%lld) stride (%d,%d) padding (%d,%d) "
		 "dilation (%d,%d)",
		 dt == TG_F64 ? "f64" : "f32", (long long)c->N, (long long)c->C, (long long)c->H,
		 (long long)c->W, (long long)O, (long long)c->KH, (long long)c->KW, o->stride[0],
		 o->stride[1], o->padding[0], o->padding[1], o->dilation[0], o->dilation[1]);
	tg_tensor *x = tg_rand(ref, dt, SHAPE(c->N, c->C, c->H, c->W), -1, 1);
	tg_tensor *w = tg_rand(ref, dt, SHAPE(O, 1, c->KH, c->KW), -1, 1);
	tg_tensor *b = tg_rand(ref, dt, SHAPE(O), -1, 1);
	tg_tensor *d = tg_rand(ref, dt, SHAPE(c->N, O, OH, OW), -1, 1);
	tg_tensor *xd = copy_to(ctx, x), *wd = copy_to(ctx, w), *bd = copy_to(ctx, b);
	tg_tensor *dd = copy_to(ctx, d);
	tg_tensor *ax = tg_abs(x), *aw = tg_abs(w), *ad = tg_abs(d);

	tg_set_threads(ctx, 1);
	tg_tensor *y1 = tg_conv2d(xd, wd, bd, o), *y0 = tg_conv2d(xd, wd, NULL, o);
	tg_tensor *dx1 = tg_conv2d_input_grad(dd, wd, c->H, c->W, o);
	tg_tensor *dw1 = tg_conv2d_weight_grad(xd, dd, c->KH, c->KW, o);
	expect_agree(label, "forward with bias", PATH, y1, tg_conv2d(x, w, b, o),
		     tg_conv2d(ax, aw, tg_abs(b), o), tol);
	expect_agree(label, "forward", PATH, y0, tg_conv2d(x, w, NULL, o), tg_conv2d(ax, aw, NULL, o),
		     tol);
	expect_agree(label, "input grad", PATH, dx1, tg_conv2d_input_grad(d, w, c->H, c->W, o),
		     tg_conv2d_input_grad(ad, aw, c->H, c->W, o), tol);
	expect_agree(label, "weight grad", PATH, dw1, tg_conv2d_weight_grad(x, d, c->KH, c->KW, o),
		     tg_conv2d_weight_grad(ax, ad, c->KH, c->KW, o), tol);
	for (int t = 2; t <= 3; t++) {
		tg_set_threads(ctx, t);
		expect_same_bits(label, "forward with bias", t, tg_conv2d(xd, wd, bd, o), y1);
		expect_same_bits(label, "input grad", t,
				 tg_conv2d_input_grad(dd, wd, c->H, c->W, o), dx1);
		if (own_weight_grad(dt, c))
			expect_same_bits(label, "weight grad", t,
					 tg_conv2d_weight_grad(xd, dd, c->KH, c->KW, o), dw1);
	}
	tg_set_threads(ctx, 1);
	assert_ctx_ok(ctx);
	assert_ctx_ok(ref);
	tg_reset(ctx);
	tg_reset(ref);
}

static int pick(int lo, int hi)
{
	return lo + rand() % (hi - lo + 1);
}

/* Random cases over every option, each in f64 and f32, then the edges:
 * 1x1 images under kernels that only the padding lets in, rows long enough
 * for every width of the kernels' vector blocks (4, 2, 1 and the last
 * columns) at strides 1-3, and in f32 planes of 32x32 outputs and more
 * (smaller ones run on oneDNN when the build has it). */
static void direct_depthwise_matches_im2col(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	assert_non_null(ctx);
	assert_non_null(ref);
	srand(SEED);
	tg_dtype dts[] = { TG_F64, TG_F32 };
	for (int i = 0; i < 300; i++) {
		dw_case c = { .N = pick(0, 1) ? 3 : 1, .C = pick(1, 4), .m = pick(1, 2),
			      .H = pick(1, 9), .W = pick(1, 11), .KH = pick(1, 5), .KW = pick(1, 5),
			      .o = TG_CONV_DEFAULTS };
		c.o.stride[0] = pick(1, 3), c.o.stride[1] = pick(1, 3);
		c.o.padding[0] = pick(0, 2), c.o.padding[1] = pick(0, 2);
		c.o.dilation[0] = pick(1, 2), c.o.dilation[1] = pick(1, 2);
		c.o.groups = (int)c.C;
		compare_case(ctx, ref, dts[i % 2], &c);
	}
	const dw_case edges[] = { /* N, C, m, H, W, KH, KW, { stride, padding, dilation, G = C } */
		{ 1, 3, 1, 1, 1, 5, 5, { { 1, 1 }, { 2, 2 }, { 1, 1 }, 3 } },
		{ 3, 2, 2, 1, 1, 3, 2, { { 2, 3 }, { 2, 1 }, { 1, 1 }, 2 } },
		{ 1, 2, 1, 2, 3, 5, 4, { { 1, 1 }, { 2, 2 }, { 1, 2 }, 2 } },
		{ 3, 5, 1, 7, 75, 3, 3, { { 1, 1 }, { 1, 1 }, { 1, 1 }, 5 } },
		{ 1, 3, 2, 5, 77, 3, 5, { { 2, 2 }, { 1, 2 }, { 1, 1 }, 3 } },
		{ 3, 4, 1, 6, 33, 5, 5, { { 1, 1 }, { 2, 2 }, { 2, 1 }, 4 } },
		{ 1, 2, 1, 9, 70, 3, 3, { { 3, 3 }, { 0, 2 }, { 1, 2 }, 2 } },
		{ 3, 3, 1, 8, 66, 1, 1, { { 1, 1 }, { 0, 0 }, { 1, 1 }, 3 } },
		{ 2, 3, 1, 33, 37, 3, 3, { { 1, 1 }, { 0, 0 }, { 1, 1 }, 3 } },
		{ 1, 2, 2, 40, 40, 5, 5, { { 1, 1 }, { 2, 2 }, { 2, 2 }, 2 } },
		{ 3, 2, 1, 32, 32, 3, 3, { { 1, 1 }, { 1, 1 }, { 1, 1 }, 2 } },
		{ 1, 3, 1, 36, 45, 4, 2, { { 1, 1 }, { 2, 1 }, { 1, 2 }, 3 } },
	};
	for (size_t i = 0; i < LEN(edges); i++)
		for (size_t t = 0; t < LEN(dts); t++) {
			dw_case c = edges[i];
			compare_case(ctx, ref, dts[t], &c);
		}
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* A NaN or inf in x, w or dout gives NaN and inf where im2col gives them:
 * the zero padding is multiplied, not skipped (0 x inf = NaN), and an
 * infinite x takes the weight gradient's row-by-row loop. In f64, at
 * strides 1 and 2. */
static void nonfinite_values_match_im2col(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	for (int stride = 1; stride <= 2; stride++)
		for (int which = 0; which < 3; which++) {
			tg_conv_opts o = { .stride = { stride, stride }, .padding = { 1, 1 },
					   .dilation = { 1, 1 }, .groups = 3 };
			int64_t OH = out_side(7, 3, stride, 1, 1), OW = out_side(9, 3, stride, 1, 1);
			tg_tensor *x = tg_rand(ref, TG_F64, SHAPE(2, 3, 7, 9), -1, 1);
			tg_tensor *w = tg_rand(ref, TG_F64, SHAPE(3, 1, 3, 3), -1, 1);
			tg_tensor *d = tg_rand(ref, TG_F64, SHAPE(2, 3, OH, OW), -1, 1);
			double *bad = which == 0 ? (double *)tg_data(x) + 3 * 9 + 4
				      : which == 1 ? (double *)tg_data(w) + 4
						   : (double *)tg_data(d) + OW + 1;
			*bad = which == 1 ? NAN : INFINITY;
			tg_tensor *xd = copy_to(ctx, x), *wd = copy_to(ctx, w), *dd = copy_to(ctx, d);
			tg_tensor *ax = tg_abs(x), *aw = tg_abs(w), *ad = tg_abs(d);
			char label[64];
			const char *in = which == 0 ? "x" : which == 1 ? "w" : "dout";
			snprintf(label, sizeof label, "stride %d, a %s in %s", stride,
				 which == 1 ? "NaN" : "inf", in);
			expect_agree(label, "forward", PATH, tg_conv2d(xd, wd, NULL, &o),
				     tg_conv2d(x, w, NULL, &o), tg_conv2d(ax, aw, NULL, &o), 1e-12);
			expect_agree(label, "input grad", PATH, tg_conv2d_input_grad(dd, wd, 7, 9, &o),
				     tg_conv2d_input_grad(d, w, 7, 9, &o),
				     tg_conv2d_input_grad(ad, aw, 7, 9, &o), 1e-12);
			expect_agree(label, "weight grad", PATH, tg_conv2d_weight_grad(xd, dd, 3, 3, &o),
				     tg_conv2d_weight_grad(x, d, 3, 3, &o),
				     tg_conv2d_weight_grad(ax, ad, 3, 3, &o), 1e-12);
			assert_ctx_ok(ctx);
			assert_ctx_ok(ref);
			tg_reset(ctx);
			tg_reset(ref);
		}
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* sum(tanh(conv2d(x, w, b))) of a depthwise conv with multiplier 2. */
static tg_tensor *depthwise_loss(tg_tensor *const *in, void *user)
{
	const tg_conv_opts *o = user;
	return tg_sum(tg_tanh(tg_conv2d(in[0], in[1], in[2], o)));
}

/* The rules run on the direct kernels, and differentiate again. */
static void depthwise_gradients_pass_gradcheck(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_conv_opts o = { .stride = { 2, 1 }, .padding = { 1, 2 }, .dilation = { 1, 2 },
			   .groups = 3 };
	tg_tensor *in[3] = { tg_rand(ctx, TG_F64, SHAPE(2, 3, 5, 6), -1, 1),
			     tg_rand(ctx, TG_F64, SHAPE(6, 1, 3, 2), -1, 1),
			     tg_rand(ctx, TG_F64, SHAPE(6), -1, 1) };
	tg_gradcheck_result res;
	assert_int_equal(tg_gradcheck(ctx, depthwise_loss, &o, 3, in, NULL, &res), 0);
	assert_true(res.checked > 0);
	assert_int_equal(tg_gradcheck2(ctx, depthwise_loss, &o, 3, in, NULL, &res), 0);
	o.stride[0] = 1, o.padding[0] = 0;
	assert_int_equal(tg_gradcheck2(ctx, depthwise_loss, &o, 3, in, NULL, &res), 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(direct_depthwise_matches_im2col),
		cmocka_unit_test(nonfinite_values_match_im2col),
		cmocka_unit_test(depthwise_gradients_pass_gradcheck),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
