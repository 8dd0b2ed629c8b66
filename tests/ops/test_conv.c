/*
 * test_conv.c - conv2d, max_pool2d and avg_pool2d against naive loops.
 *
 * The reference convolution is the seven-loop definition in double; its
 * gradients are the same loops accumulating backwards. Many option
 * combinations (stride, padding, dilation, groups, non-square kernels and
 * images, N > 1) are run in f64 and f32; then the pools' values, gradients
 * and tie rule, and every misuse's message. Images are small so the suite
 * stays fast. Shape legend: x (N,C,H,W), w (O,C/G,KH,KW), out (N,O,OH,OW).
 */
#include "conv_check.h"

#include <limits.h>
#include <stdlib.h>

enum { SEED = 7 };

/* ---- the naive references --------------------------------------------------------- */

typedef struct conv_case {
	int64_t N, C, H, W, O, KH, KW;
	tg_conv_opts o;
	int64_t OH, OW;
} conv_case;

/* The input index of output (oh, ow) and kernel tap (kh, kw), or -1 in the
 * padding. */
static int64_t tap(const conv_case *c, int64_t n, int64_t ch, int64_t oh, int64_t ow, int64_t kh,
		   int64_t kw)
{
	int64_t ih = oh * c->o.stride[0] - c->o.padding[0] + kh * c->o.dilation[0];
	int64_t iw = ow * c->o.stride[1] - c->o.padding[1] + kw * c->o.dilation[1];
	if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W)
		return -1;
	return ((n * c->C + ch) * c->H + ih) * c->W + iw;
}

/* y = conv(x, w) + b; and, given dout, dx, dw and db (each zeroed here). */
static void naive_conv(const conv_case *c, const double *x, const double *w, const double *b,
		       double *y, const double *dout, double *dx, double *dw, double *db)
{
	int64_t G = c->o.groups, CG = c->C / G, OG = c->O / G;
	memset(dx, 0, (size_t)(c->N * c->C * c->H * c->W) * sizeof *dx);
	memset(dw, 0, (size_t)(c->O * CG * c->KH * c->KW) * sizeof *dw);
	memset(db, 0, (size_t)c->O * sizeof *db);
	for (int64_t n = 0; n < c->N; n++)
		for (int64_t o = 0; o < c->O; o++)
			for (int64_t oh = 0; oh < c->OH; oh++)
				for (int64_t ow = 0; ow < c->OW; ow++) {
					int64_t yi = ((n * c->O + o) * c->OH + oh) * c->OW + ow;
					double s = b[o], d = dout[yi];
					db[o] += d;
					for (int64_t ci = 0; ci < CG; ci++)
						for (int64_t kh = 0; kh < c->KH; kh++)
							for (int64_t kw = 0; kw < c->KW; kw++) {
								int64_t xi = tap(c, n, o / OG * CG + ci, oh,
										 ow, kh, kw);
								int64_t wi = ((o * CG + ci) * c->KH + kh) * c->KW + kw;
								if (xi < 0)
									continue;
								s += x[xi] * w[wi];
								dx[xi] += d * w[wi];
								dw[wi] += d * x[xi];
							}
					y[yi] = s;
				}
}

static void fill(tg_ctx *ctx, double *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (double)(float)(2 * tg_random_uniform(ctx) - 1);
}

/* Fails, naming the case and the element, unless got (n) is within tol of
 * want, relative to max(1, |want|, mag) where mag (NULL: none) is the sum
 * of |a b| over the products that made the element: f32 sums taken in
 * another order (oneDNN's blocks, a long weight-gradient sum) differ by a
 * few roundings of that size. */
static void expect_close_mag(const char *what, const char *label, const tg_tensor *t,
			     const double *want, const double *mag, size_t n, double tol)
{
	if (!t)
		fail_msg("%s, %s: no tensor", what, label);
	assert_int_equal(tg_numel(t), n);
	const void *data = tg_data(t);
	for (size_t i = 0; i < n; i++) {
		double got = tg_dtype_of(t) == TG_F64 ? ((const double *)data)[i]
						      : ((const float *)data)[i];
		double scale = fabs(want[i]) > 1 ? fabs(want[i]) : 1;
		scale = mag && mag[i] > scale ? mag[i] : scale;
		if (!(fabs(got - want[i]) <= tol * scale))
			fail_msg("%s, %s: element %zu is %.15g, expected %.15g (tolerance %g)", what,
				 label, i, got, want[i], tol);
	}
}

static void expect_close(const char *what, const char *label, const tg_tensor *t,
			 const double *want, size_t n, double tol)
{
	expect_close_mag(what, label, t, want, NULL, n, tol);
}

static double *abs_of(const double *v, size_t n)
{
	double *a = malloc(n * sizeof *a);
	for (size_t i = 0; i < n; i++)
		a[i] = fabs(v[i]);
	return a;
}

static void describe_case(const conv_case *c, char *buf, size_t size)
{
	snprintf(buf, size,
		 "x (%lld,%lld,%lld,%lld) w (%lld,%lld,%lld,%lld) stride (%d,%d) padding (%d,%d) "
		 "dilation (%d,%d) groups %d",
		 (long long)c->N, (long long)c->C, (long long)c->H, (long long)c->W, (long long)c->O,
		 (long long)(c->C / c->o.groups), (long long)c->KH, (long long)c->KW,
		 c->o.stride[0], c->o.stride[1], c->o.padding[0], c->o.padding[1],
		 c->o.dilation[0], c->o.dilation[1], c->o.groups);
}

/* Runs one case in dt against the reference: the output and the three
 * gradients for a random dout. */
static void check_conv_case(tg_ctx *ctx, const conv_case *c, tg_dtype dt)
{
	int64_t CG = c->C / c->o.groups;
	size_t nx = (size_t)(c->N * c->C * c->H * c->W), nw = (size_t)(c->O * CG * c->KH * c->KW);
	size_t ny = (size_t)(c->N * c->O * c->OH * c->OW);
	double *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc(c->O * sizeof *b);
	double *y = malloc(ny * sizeof *y), *dout = malloc(ny * sizeof *dout);
	double *dx = malloc(nx * sizeof *dx), *dw = malloc(nw * sizeof *dw), *db = malloc(c->O * sizeof *db);
	fill(ctx, x, nx);
	fill(ctx, w, nw);
	fill(ctx, b, (size_t)c->O);
	fill(ctx, dout, ny);
	naive_conv(c, x, w, b, y, dout, dx, dw, db);
	/* the magnitudes: the same sums of |a b| */
	double *ax = abs_of(x, nx), *aw = abs_of(w, nw), *ab = abs_of(b, (size_t)c->O);
	double *ad = abs_of(dout, ny), *my = malloc(ny * sizeof *my), *mdx = malloc(nx * sizeof *mdx);
	double *mdw = malloc(nw * sizeof *mdw), *mdb = malloc(c->O * sizeof *mdb);
	naive_conv(c, ax, aw, ab, my, ad, mdx, mdw, mdb);

	tg_tensor *tx = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(c->N, c->C, c->H, c->W), x), true);
	tg_tensor *tw = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(c->O, CG, c->KH, c->KW), w), true);
	tg_tensor *tb = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(c->O), b), true);
	tg_tensor *td = tg_from_f64(ctx, dt, SHAPE(c->N, c->O, c->OH, c->OW), dout);
	tg_tensor *ty = tg_conv2d(tx, tw, tb, &c->o);
	assert_int_equal(tg_backward_ex(ty, td, 0), 0);
	assert_ctx_ok(ctx);
	char label[256];
	describe_case(c, label, sizeof label);
	double tol = dt == TG_F64 ? 1e-12 : 2e-6;
	const char *name = dt == TG_F64 ? "f64" : "f32";
	char what[32];
	snprintf(what, sizeof what, "%s out", name);
	expect_close_mag(what, label, ty, y, my, ny, tol);
	snprintf(what, sizeof what, "%s dx", name);
	expect_close_mag(what, label, tg_grad(tx), dx, mdx, nx, tol);
	snprintf(what, sizeof what, "%s dw", name);
	expect_close_mag(what, label, tg_grad(tw), dw, mdw, nw, tol);
	snprintf(what, sizeof what, "%s db", name);
	expect_close_mag(what, label, tg_grad(tb), db, mdb, (size_t)c->O, tol);
	free(x), free(w), free(b), free(y), free(dout), free(dx), free(dw), free(db);
	free(ax), free(aw), free(ab), free(ad), free(my), free(mdx), free(mdw), free(mdb);
}

/* ---- conv2d -------------------------------------------------------------------- */

static void conv2d_of_a_diagonal_kernel_adds_two_pixels(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(1, 1, 3, 3),
				   (double[]){ 1, 2, 3, 4, 5, 6, 7, 8, 9 });
	tg_tensor *w = tg_from_f64(ctx, TG_F64, SHAPE(1, 1, 2, 2), (double[]){ 1, 0, 0, 1 });
	tg_tensor *y = tg_conv2d(x, w, NULL, NULL);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_ndim(y), 4);
	assert_int_equal(tg_dim(y, 2), 2);
	assert_int_equal(tg_dim(y, 3), 2);
	const double want[] = { 1 + 5, 2 + 6, 4 + 8, 5 + 9 };
	expect_close("diagonal", "3x3 image", y, want, 4, 0);
	tg_ctx_free(ctx);
}

/* Strides 1-3, padding 0-2, dilation 1-2, groups 1, 2 and 4, each per axis
 * and mixed, non-square kernels and images, N = 2; f64 to 1e-12 and f32. */
static void conv2d_matches_the_naive_loops_over_many_options(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	static const int64_t kernels[][2] = { { 3, 3 }, { 2, 3 }, { 3, 1 }, { 1, 1 }, { 2, 2 } };
	static const int groups[] = { 1, 2, 4 };
	int cases = 0, i = 0;
	for (int s = 1; s <= 3; s++)
		for (int p = 0; p <= 2; p++)
			for (int d = 1; d <= 2; d++)
				for (int gi = 0; gi < 3; gi++, i++) {
					int G = groups[gi];
					conv_case c = { .N = 2, .C = 4, .H = 7, .W = 6, .O = 4 * (1 + i % 2),
							.KH = kernels[i % 5][0], .KW = kernels[i % 5][1] };
					/* every third case has different options per axis */
					int mix = i % 3 == 0;
					c.o = (tg_conv_opts){ { s, mix ? 1 + s % 3 : s },
							      { p, mix ? (p + 1) % 3 : p },
							      { d, mix ? 3 - d : d }, G };
					c.OH = out_side(c.H, c.KH, c.o.stride[0], c.o.padding[0],
							c.o.dilation[0]);
					c.OW = out_side(c.W, c.KW, c.o.stride[1], c.o.padding[1],
							c.o.dilation[1]);
					assert_true(c.OH >= 1 && c.OW >= 1);
					tg_reset(ctx);
					check_conv_case(ctx, &c, TG_F64);
					check_conv_case(ctx, &c, TG_F32);
					cases++;
				}
	assert_int_equal(cases, 54);
	tg_ctx_free(ctx);
}

/* Images whose columns fill the buffer go through in batches of fewer than
 * N (here 2, then 1): the last, short batch must land where it belongs. */
static void conv2d_takes_large_images_in_batches(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	conv_case c = { .N = 3, .C = 1, .H = 400, .W = 400, .O = 2, .KH = 3, .KW = 3,
			.o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 }, .OH = 400, .OW = 400 };
	check_conv_case(ctx, &c, TG_F64);
	tg_reset(ctx);
	check_conv_case(ctx, &c, TG_F32);
	tg_ctx_free(ctx);
}

/* Images of 64 output positions or more go one GEMM per image, the images
 * split across the context's threads (3 images on 2 threads: runs of 1 and
 * 2); every option, the 1x1 kernel that reads x as its own columns, and
 * the same cases on one thread. */
static void conv2d_per_image_on_one_and_two_threads_matches_the_naive_loops(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	static const conv_case cases[] = {
		{ .N = 3, .C = 2, .H = 9, .W = 8, .O = 4, .KH = 3, .KW = 3,
		  .o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } },
		{ .N = 3, .C = 4, .H = 17, .W = 18, .O = 6, .KH = 3, .KW = 2,
		  .o = { { 2, 2 }, { 1, 1 }, { 2, 2 }, 2 } },
		{ .N = 3, .C = 4, .H = 8, .W = 9, .O = 6, .KH = 1, .KW = 1,
		  .o = { { 1, 1 }, { 0, 0 }, { 1, 1 }, 2 } },
		{ .N = 3, .C = 3, .H = 12, .W = 20, .O = 2, .KH = 2, .KW = 3,
		  .o = { { 1, 2 }, { 2, 0 }, { 1, 2 }, 1 } },
	};
	for (int t = 1; t <= 2; t++) {
		tg_set_threads(ctx, t);
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			conv_case c = cases[i];
			c.OH = out_side(c.H, c.KH, c.o.stride[0], c.o.padding[0], c.o.dilation[0]);
			c.OW = out_side(c.W, c.KW, c.o.stride[1], c.o.padding[1], c.o.dilation[1]);
			assert_true(c.OH * c.OW >= 64);
			tg_reset(ctx);
			check_conv_case(ctx, &c, TG_F64);
			check_conv_case(ctx, &c, TG_F32);
		}
	}
	tg_ctx_free(ctx);
}

/* The gradient ops by themselves: input_grad of dout is d<conv(x, w), dout>/dx
 * (checked above), and weight_grad's; here against the reference directly. */
static void the_gradient_ops_match_the_naive_loops(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	conv_case c = { .N = 2, .C = 4, .H = 5, .W = 6, .O = 6, .KH = 3, .KW = 2,
			.o = { { 2, 1 }, { 1, 2 }, { 1, 2 }, 2 } };
	c.OH = out_side(c.H, c.KH, 2, 1, 1);
	c.OW = out_side(c.W, c.KW, 1, 2, 2);
	size_t nx = 2 * 4 * 5 * 6, nw = 6 * 2 * 3 * 2, ny = (size_t)(2 * 6 * c.OH * c.OW);
	double x[240], w[72], b[6] = { 0 }, y[512], dout[512], dx[240], dw[72], db[6];
	assert_true(ny <= 512);
	fill(ctx, x, nx);
	fill(ctx, w, nw);
	fill(ctx, dout, ny);
	naive_conv(&c, x, w, b, y, dout, dx, dw, db);
	tg_tensor *td = tg_from_f64(ctx, TG_F64, SHAPE(2, 6, c.OH, c.OW), dout);
	tg_tensor *gx = tg_conv2d_input_grad(td, tg_from_f64(ctx, TG_F64, SHAPE(6, 2, 3, 2), w), 5,
					     6, &c.o);
	tg_tensor *gw = tg_conv2d_weight_grad(tg_from_f64(ctx, TG_F64, SHAPE(2, 4, 5, 6), x), td, 3,
					      2, &c.o);
	assert_ctx_ok(ctx);
	expect_close("input_grad", "groups 2, mixed options", gx, dx, nx, 1e-12);
	expect_close("weight_grad", "groups 2, mixed options", gw, dw, nw, 1e-12);
	tg_ctx_free(ctx);
}

/* A conv step (conv, relu, pool, sum, backward) reuses the step arena. */
static void steady_conv_steps_allocate_nothing(void **state)
{
	(void)state;
	counting c = { 0 };
	tg_allocator a = { counting_alloc, counting_free, &c };
	tg_ctx *ctx = tg_ctx_new_with(1, &a);
	tg_tensor *w = tg_param(tg_randn(ctx, TG_F32, SHAPE(8, 1, 3, 3), 0, 0.3));
	tg_tensor *b = tg_param(tg_zeros(ctx, TG_F32, SHAPE(8)));
	const tg_conv_opts o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 };
	long before = 0;
	for (int i = 0; i < 23; i++) {
		if (i == 3)
			before = c.calls;
		tg_tensor *x = tg_randn(ctx, TG_F32, SHAPE(4, 1, 8, 8), 0, 1);
		tg_tensor *y = tg_sum(tg_avg_pool2d(tg_max_pool2d(tg_relu(tg_conv2d(x, w, b, &o)), 2, 2, 0),
						    2, 2, 0));
		assert_int_equal(tg_backward(y), 0);
		tg_reset(ctx);
	}
	assert_ctx_ok(ctx);
	if (c.calls != before)
		fail_msg("%ld allocations in 20 steady-state conv steps", c.calls - before);
	tg_ctx_free(ctx);
}

/* ---- pools ------------------------------------------------------------------------ */

/* The window of output o along an axis: input [lo, hi). */
static void win(int64_t o, int s, int p, int k, int64_t n, int64_t *lo, int64_t *hi)
{
	*lo = o * s - p < 0 ? 0 : o * s - p;
	*hi = o * s - p + k > n ? n : o * s - p + k;
}

/* max or mean (divisor k^2) of each window, and dx for dout. */
static void naive_pool(bool max, int64_t N, int64_t C, int64_t H, int64_t W, int k, int s,
		       int p, const double *x, const double *dout, double *y, double *dx)
{
	int64_t OH = out_side(H, k, s, p, 1), OW = out_side(W, k, s, p, 1);
	memset(dx, 0, (size_t)(N * C * H * W) * sizeof *dx);
	for (int64_t pl = 0; pl < N * C; pl++)
		for (int64_t oh = 0; oh < OH; oh++)
			for (int64_t ow = 0; ow < OW; ow++) {
				int64_t h0, h1, w0, w1, yi = (pl * OH + oh) * OW + ow, best = -1;
				win(oh, s, p, k, H, &h0, &h1);
				win(ow, s, p, k, W, &w0, &w1);
				double sum = 0;
				for (int64_t ih = h0; ih < h1; ih++)
					for (int64_t iw = w0; iw < w1; iw++) {
						int64_t i = (pl * H + ih) * W + iw;
						sum += x[i];
						if (best < 0 || x[i] > x[best])
							best = i;
					}
				if (max) {
					y[yi] = x[best];
					dx[best] += dout[yi];
				} else {
					y[yi] = sum / (k * k);
					for (int64_t ih = h0; ih < h1; ih++)
						for (int64_t iw = w0; iw < w1; iw++)
							dx[(pl * H + ih) * W + iw] += dout[yi] / (k * k);
				}
			}
}

static void pools_match_the_naive_loops(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	enum { N = 2, C = 3, H = 7, W = 6 };
	int cases = 0;
	for (int m = 0; m < 2; m++)
		for (int k = 1; k <= 3; k++)
			for (int s = 1; s <= 3; s++)
				for (int p = 0; p <= k / 2; p++)
					for (int dti = 0; dti < 2; dti++) {
						tg_dtype dt = dti ? TG_F32 : TG_F64;
						tg_reset(ctx);
						int64_t OH = out_side(H, k, s, p, 1), OW = out_side(W, k, s, p, 1);
						/* padding makes the output larger than x */
						double x[N * C * H * W], dout[2 * N * C * H * W],
							y[2 * N * C * H * W], dx[N * C * H * W];
						assert_true(OH * OW <= 2 * H * W);
						fill(ctx, x, N * C * H * W);
						fill(ctx, dout, (size_t)(N * C * OH * OW));
						naive_pool(m == 0, N, C, H, W, k, s, p, x, dout, y, dx);
						tg_tensor *tx = tg_set_requires_grad(
							tg_from_f64(ctx, dt, SHAPE(N, C, H, W), x), true);
						tg_tensor *ty = m == 0 ? tg_max_pool2d(tx, k, s, p)
								       : tg_avg_pool2d(tx, k, s, p);
						tg_tensor *td = tg_from_f64(ctx, dt, SHAPE(N, C, OH, OW), dout);
						assert_int_equal(tg_backward_ex(ty, td, 0), 0);
						assert_ctx_ok(ctx);
						char label[96];
						snprintf(label, sizeof label, "%s kernel %d stride %d padding %d %s",
							 m == 0 ? "max" : "avg", k, s, p, dti ? "f32" : "f64");
						double tol = dt == TG_F64 ? 1e-12 : 1e-6;
						expect_close("pool out", label, ty, y, (size_t)(N * C * OH * OW), tol);
						expect_close("pool dx", label, tg_grad(tx), dx, N * C * H * W, tol);
						cases++;
					}
	assert_int_equal(cases, 2 * 2 * (3 + 3 * 2 + 3 * 2));
	tg_ctx_free(ctx);
}

/* Pools of 65536 elements or more split their planes across the
 * context's threads: max and average, 2x2 at stride 2 (max's own loop) and
 * 3x3 at stride 2 with padding, on 1 and 2 threads, 5 planes (runs of 2
 * and 3). */
static void pools_on_two_threads_match_the_naive_loops(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	enum { N = 1, C = 5, H = 120, W = 121 };
	size_t nx = N * C * H * W;
	double *x = malloc(nx * sizeof *x), *dout = malloc(nx * sizeof *dout);
	double *y = malloc(nx * sizeof *y), *dx = malloc(nx * sizeof *dx);
	static const int kinds[][3] = { { 2, 2, 0 }, { 3, 2, 1 } };
	for (int mt = 0; mt < 4; mt++) /* max, then avg; 1 thread, then 2 */
		for (int i = 0; i < 2; i++) {
			int m = mt / 2, t = 1 + mt % 2;
			int k = kinds[i][0], s = kinds[i][1], p = kinds[i][2];
			int64_t OH = out_side(H, k, s, p, 1), OW = out_side(W, k, s, p, 1);
			tg_reset(ctx);
			tg_set_threads(ctx, t);
			fill(ctx, x, nx);
			fill(ctx, dout, (size_t)(N * C * OH * OW));
			naive_pool(m == 0, N, C, H, W, k, s, p, x, dout, y, dx);
			tg_tensor *tx = tg_set_requires_grad(tg_from_f64(ctx, TG_F32, SHAPE(N, C, H, W), x),
							     true);
			tg_tensor *ty = m == 0 ? tg_max_pool2d(tx, k, s, p)
					       : tg_avg_pool2d(tx, k, s, p);
			tg_tensor *td = tg_from_f64(ctx, TG_F32, SHAPE(N, C, OH, OW), dout);
			assert_int_equal(tg_backward_ex(ty, td, 0), 0);
			assert_ctx_ok(ctx);
			char label[64];
			snprintf(label, sizeof label, "%s kernel %d stride %d padding %d, %d threads",
				 m == 0 ? "max" : "avg", k, s, p, t);
			expect_close("pool out", label, ty, y, (size_t)(N * C * OH * OW), 1e-6);
			expect_close("pool dx", label, tg_grad(tx), dx, nx, 1e-6);
		}
	free(x), free(dout), free(y), free(dx);
	tg_ctx_free(ctx);
}

/* A NaN wins its window, the first one in row-major order when there are
 * two, and takes dout: in the 2x2 stride-2 loop and in the general one. */
static void max_pool_routes_to_the_first_nan(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const double xv[] = { 1, 5, NAN, 2, NAN, 3, 4, NAN };
	static const struct {
		int stride;
		int64_t OW;
		int64_t at[3]; /* the flat index each output's dout goes to */
	} cases[] = { { 2, 2, { 4, 2 } }, { 1, 3, { 4, 2, 2 } } };
	for (int i = 0; i < 2; i++) {
		tg_reset(ctx);
		tg_tensor *x = tg_set_requires_grad(tg_from_f64(ctx, TG_F32, SHAPE(1, 1, 2, 4), xv), true);
		tg_tensor *y = tg_max_pool2d(x, 2, cases[i].stride, 0);
		double d[3] = { 10, 20, 30 }, want[8] = { 0 };
		tg_tensor *td = tg_from_f64(ctx, TG_F32, SHAPE(1, 1, 1, cases[i].OW), d);
		assert_int_equal(tg_backward_ex(y, td, 0), 0);
		assert_ctx_ok(ctx);
		for (int64_t o = 0; o < cases[i].OW; o++) {
			if (!isnan(tg_get(y, (size_t)o)))
				fail_msg("stride %d: output %lld is %g, expected NaN", cases[i].stride,
					 (long long)o, tg_get(y, (size_t)o));
			want[cases[i].at[o]] += d[o];
		}
		char label[32];
		snprintf(label, sizeof label, "stride %d", cases[i].stride);
		expect_close("NaN's dx", label, tg_grad(x), want, 8, 0);
	}
	tg_ctx_free(ctx);
}

/* 2x2 stride-2 pools of floats take rows of 4 windows or more in AVX2
 * blocks of 8 or 4, the last one overlapping the one before, forward and
 * backward: over rows of 1 to 33 windows (odd and even sides), with ties
 * in every position, zeros of both signs, a NaN inside a block and douts
 * of both zeros and NaN, the values, the signs of zeros and the bits that
 * dout leaves in dx match the doubles' pool, which runs the one-window
 * loops alone. */
static void max_pool_2x2_of_floats_in_blocks_matches_the_doubles(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	enum { H = 5, MAXW = 2 * 33 + 1 };
	static const int ows[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 14, 15, 16, 17, 20, 23, 33 };
	double x[2 * H * MAXW], d[2 * 2 * 33];
	for (size_t c = 0; c < sizeof ows / sizeof ows[0]; c++)
		for (int odd = 0; odd < 2; odd++) {
			int OW = ows[c], W = 2 * OW + odd, N = 2 * H * W, ON = 2 * 2 * OW;
			for (int i = 0; i < N; i++) /* small integers: many ties */
				x[i] = (double)((i * 7 + i / 5) % 4) - 1;
			for (int i = 0; i < N; i += 9)
				x[i] = (i / 9) % 2 ? -0.0 : 0.0;
			x[W + 2 * OW - 1] = NAN;         /* plane 0, output row 0, last window */
			x[H * W + 2 * W + OW / 2] = NAN; /* plane 1, output row 1 */
			for (int i = 0; i < ON; i++)
				d[i] = i % 11 == 3 ? -0.0 : i % 13 == 5 ? NAN : i % 7 == 2 ? 0.0 : i + 1;
			tg_tensor *g[2], *y[2];
			for (int k = 0; k < 2; k++) {
				tg_dtype dt = k ? TG_F32 : TG_F64;
				tg_tensor *tx = tg_set_requires_grad(
					tg_from_f64(ctx, dt, SHAPE(1, 2, H, W), x), true);
				y[k] = tg_max_pool2d(tx, 2, 2, 0);
				tg_tensor *td = tg_from_f64(ctx, dt, SHAPE(1, 2, 2, OW), d);
				assert_int_equal(tg_backward_ex(y[k], td, 0), 0);
				assert_ctx_ok(ctx);
				g[k] = tg_grad(tx);
			}
			for (size_t i = 0; i < (size_t)ON; i++) {
				double a = tg_get(y[0], i), b = tg_get(y[1], i);
				if (!(a == b || (isnan(a) && isnan(b))) || signbit(a) != signbit(b))
					fail_msg("W %d, output %zu: float %g, double %g", W, i, b, a);
			}
			for (size_t i = 0; i < (size_t)N; i++) {
				double a = tg_get(g[0], i), b = tg_get(g[1], i);
				if (!(a == b || (isnan(a) && isnan(b))) || signbit(a) != signbit(b))
					fail_msg("W %d, dx[%zu]: float %g, double %g", W, i, b, a);
				if (a == 0 && signbit(a)) /* a -0 dout lands as +0, as PyTorch's */
					fail_msg("W %d, dx[%zu] is -0", W, i);
			}
			tg_reset(ctx);
		}
	tg_ctx_free(ctx);
}

/* The first maximum of each window in row-major order, a NaN beating any
 * number and the first NaN kept (the kernel's WINS); dx[best] += dout. */
static void naive_max_pool_wins(int64_t P, int64_t H, int64_t W, int k, int s, int p,
				const double *x, const double *dout, double *y, int64_t *at,
				double *dx)
{
	int64_t OH = out_side(H, k, s, p, 1), OW = out_side(W, k, s, p, 1);
	memset(dx, 0, (size_t)(P * H * W) * sizeof *dx);
	for (int64_t pl = 0; pl < P; pl++)
		for (int64_t oh = 0; oh < OH; oh++)
			for (int64_t ow = 0; ow < OW; ow++) {
				int64_t h0, h1, w0, w1, yi = (pl * OH + oh) * OW + ow, best = -1;
				win(oh, s, p, k, H, &h0, &h1);
				win(ow, s, p, k, W, &w0, &w1);
				for (int64_t ih = h0; ih < h1; ih++)
					for (int64_t iw = w0; iw < w1; iw++) {
						int64_t i = (pl * H + ih) * W + iw;
						if (best < 0 || x[i] > x[best] ||
						    (isnan(x[i]) && !isnan(x[best])))
							best = i;
					}
				y[yi] = x[best];
				at[yi] = best;
				dx[best] += dout[yi];
			}
}

/* Windows of any size and stride whose columns lie inside x are done 8
 * floats (4 in rows of 4 to 7 such windows) or 4 doubles at a time (loads at stride 1, gathers at others),
 * the last block of a row overlapping the one before; the columns at the
 * edges by the scalar loop. Over kernels 1 to 5, strides 1 to 4, every
 * padding and widths that give 0 to about 30 inner columns, in f32 and
 * f64, with ties everywhere, zeros of both signs and NaNs: the values
 * (with their signs), which cell each window routes dout to, and dx match
 * the rule exactly. */
static void max_pool_of_any_window_in_blocks_matches_the_rule(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	enum { P = 2, H = 7, MAXW = 4 * 33 + 5 };
	static const int widths[] = { 5, 8, 9, 12, 13, 17, 20, 31, 36, 41, 64, 67, 100, MAXW };
	/* padding makes the output up to (H+1) x (W+1) */
	enum { NX = P * H * MAXW, NY = P * (H + 1) * (MAXW + 1) };
	double *x = malloc(NX * sizeof *x), *dx = malloc(NX * sizeof *dx);
	double *d = malloc(NY * sizeof *d), *y = malloc(NY * sizeof *y);
	int64_t *at = malloc(NY * sizeof *at);
	assert_true(x && d && y && dx && at);
	int cases = 0;
	for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
		for (int k = 1; k <= 5; k++)
			for (int s = 1; s <= 4; s++)
				for (int p = 0; p <= k / 2; p++) {
					int64_t W = widths[wi], N = P * H * W;
					int64_t OH = out_side(H, k, s, p, 1), OW = out_side(W, k, s, p, 1);
					if (OW < 1 || OH < 1)
						continue;
					assert_true(P * OH * OW <= NY);
					for (int64_t i = 0; i < N; i++) /* small integers: ties */
						x[i] = (double)((i * 7 + i / 5 + k + s) % 5) - 2;
					for (int64_t i = 3; i < N; i += 11)
						x[i] = (i / 11) % 2 ? -0.0 : 0.0;
					for (int64_t i = (k * 13 + s * 5) % 17; i < N; i += 37 + k)
						x[i] = NAN;
					for (int64_t i = 0; i < P * OH * OW; i++)
						d[i] = (double)(i % 29 + 1);
					naive_max_pool_wins(P, H, W, k, s, p, x, d, y, at, dx);
					for (int dti = 0; dti < 2; dti++) {
						tg_dtype dt = dti ? TG_F32 : TG_F64;
						tg_tensor *tx = tg_set_requires_grad(
							tg_from_f64(ctx, dt, SHAPE(1, P, H, W), x), true);
						tg_tensor *ty = tg_max_pool2d(tx, k, s, p);
						tg_tensor *td = tg_from_f64(ctx, dt, SHAPE(1, P, OH, OW), d);
						assert_int_equal(tg_backward_ex(ty, td, 0), 0);
						assert_ctx_ok(ctx);
						for (size_t i = 0; i < (size_t)(P * OH * OW); i++) {
							double a = tg_get(ty, i);
							if (!(a == y[i] || (isnan(a) && isnan(y[i]))) ||
							    signbit(a) != signbit(y[i]))
								fail_msg("W %lld kernel %d stride %d padding %d %s, "
									 "output %zu: %g, expected %g (x[%lld])",
									 (long long)W, k, s, p, dti ? "f32" : "f64",
									 i, a, y[i], (long long)at[i]);
						}
						/* dout is integers: any sum is exact, a wrong route shows */
						char label[80];
						snprintf(label, sizeof label,
							 "W %lld kernel %d stride %d padding %d %s",
							 (long long)W, k, s, p, dti ? "f32" : "f64");
						expect_close("any-window dx", label, tg_grad(tx), dx, (size_t)N,
							     0);
						tg_reset(ctx);
						cases++;
					}
				}
	assert_true(cases > 600);
	free(x), free(d), free(y), free(dx), free(at);
	tg_ctx_free(ctx);
}

/* Tied maxima: the first in row-major window order takes all of dout, as
 * in PyTorch; overlapping windows each route to their own first maximum. */
static void max_pool_gives_a_tie_to_the_first_maximum_in_row_major_order(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	/* 1 3 3
	 * 3 3 0   kernel 2 stride 1: windows at (0,0), (0,1), (1,0), (1,1) */
	tg_tensor *x = tg_set_requires_grad(
		tg_from_f64(ctx, TG_F64, SHAPE(1, 1, 3, 3), (double[]){ 1, 3, 3, 3, 3, 0, 3, 0, 3 }),
		true);
	tg_tensor *y = tg_max_pool2d(x, 2, 1, 0);
	tg_tensor *dout = tg_from_f64(ctx, TG_F64, SHAPE(1, 1, 2, 2), (double[]){ 1, 10, 100, 1000 });
	assert_int_equal(tg_backward_ex(y, dout, 0), 0);
	assert_ctx_ok(ctx);
	const double want_y[] = { 3, 3, 3, 3 };
	/* windows (0,0) and (0,1) pick x[0][1]; (1,0) picks x[1][0]; (1,1) x[1][1] */
	const double want_dx[] = { 0, 11, 0, 100, 1000, 0, 0, 0, 0 };
	expect_close("tie", "values", y, want_y, 4, 0);
	expect_close("tie", "dx", tg_grad(x), want_dx, 9, 0);
	tg_ctx_free(ctx);
}

/* Padding is -inf for max (an all-negative image keeps its values) and 0
 * in avg's divisor kernel^2 (count_include_pad). */
/* ---- relu_max_pool2d: max_pool2d(relu(x)) as one op, to the same bits --------------------- */

/* y, dx (plain, or recorded and then the gradient of sum(dx v) when
 * second) of max_pool2d(relu(x)) by one op or two, in a context of its own. */
enum { RY, RDX, RD2X, R_OUT };
typedef struct pool_run {
	tg_ctx *ctx;
	tg_tensor *t[R_OUT];
} pool_run;

static pool_run relu_pool(bool one_op, tg_dtype dt, int threads, const int64_t *shape,
			  const double *xv, const double *wv, int k, int s, int p, bool second)
{
	pool_run r = { .ctx = tg_ctx_new(1) };
	tg_set_threads(r.ctx, threads);
	tg_tensor *x = tg_param(tg_from_f64(r.ctx, dt, 4, shape, xv));
	r.t[RY] = one_op ? tg_relu_max_pool2d(x, k, s, p) : tg_max_pool2d(tg_relu(x), k, s, p);
	assert_non_null(r.t[RY]);
	tg_tensor *w = tg_from_f64(r.ctx, dt, 4, tg_shape(r.t[RY]), wv);
	assert_int_equal(tg_backward_ex(tg_sum(tg_mul(r.t[RY], w)), NULL,
					second ? TG_CREATE_GRAPH : 0),
			 0);
	r.t[RDX] = tg_grad(x);
	if (second) {
		/* sum(dx dx) reaches x through the gather of the pool's backward */
		tg_zero_grad(x);
		assert_int_equal(tg_backward(tg_sum(tg_mul(r.t[RDX], r.t[RDX]))), 0);
		r.t[RD2X] = tg_grad(x);
	}
	assert_ctx_ok(r.ctx);
	return r;
}

/* Over 2x2 windows at stride 2 (rows in AVX2 blocks, and the
 * short ones), other windows with and without padding, overlapping or not,
 * f32 and f64, 1 and 2 threads (the large shape splits its planes): x
 * holds negatives, +0 and -0, whole windows of them, ties and a NaN, and
 * the loss weights an inf, so the relu's gate meets every case it has. */
static void relu_max_pool2d_gives_the_bits_of_max_pool2d_of_relu(void **state)
{
	(void)state;
	static const struct {
		int64_t shape[4];
		int k, s, p;
	} cases[] = { { { 2, 3, 8, 20 }, 2, 2, 0 },  { { 1, 2, 6, 10 }, 2, 2, 0 },
		      { { 1, 2, 5, 5 }, 2, 2, 0 },   { { 2, 2, 9, 19 }, 3, 2, 1 },
		      { { 2, 2, 9, 27 }, 3, 3, 0 },   { { 1, 3, 7, 12 }, 2, 1, 0 },
		      { { 2, 2, 10, 30 }, 3, 3, 1 }, { { 8, 16, 32, 32 }, 2, 2, 0 },
		      { { 2, 3, 15, 15 }, 3, 2, 0 }, { { 2, 2, 16, 16 }, 3, 2, 1 } };
	tg_ctx *rng = tg_ctx_new(SEED);
	for (size_t c = 0; c < LEN(cases); c++) {
		const int64_t *sh = cases[c].shape;
		size_t n = (size_t)(sh[0] * sh[1] * sh[2] * sh[3]);
		double *xv = malloc(n * sizeof *xv), *wv = malloc(n * sizeof *wv);
		assert_true(xv && wv);
		for (size_t i = 0; i < n; i++) {
			double u = tg_random_uniform(rng);
			/* half negative (a window in twelve has no positive cell),
			 * some zeros of both signs, ties by rounding */
			xv[i] = u < 0.1 ? 0.0 : u < 0.2 ? -0.0 : round((u - 0.75) * 8) / 4;
		}
		xv[n / 2] = NAN;
		for (size_t i = 0; i < n; i++)
			wv[i] = tg_random_normal(rng);
		for (int dt = 0; dt < 2; dt++)
			for (int threads = 1; threads <= 2; threads++)
				for (int second = 0; second < 2; second++) {
					tg_dtype t = dt ? TG_F64 : TG_F32;
					pool_run one = relu_pool(true, t, threads, sh, xv, wv,
								 cases[c].k, cases[c].s, cases[c].p,
								 second);
					pool_run two = relu_pool(false, t, threads, sh, xv, wv,
								 cases[c].k, cases[c].s, cases[c].p,
								 second);
					for (int k = 0; k < R_OUT; k++) {
						char what[128];
						snprintf(what, sizeof what,
							 "(%lld,%lld,%lld,%lld) k %d s %d p %d, %s, "
							 "%d thread(s)%s: %s",
							 (long long)sh[0], (long long)sh[1],
							 (long long)sh[2], (long long)sh[3], cases[c].k,
							 cases[c].s, cases[c].p, t == TG_F64 ? "f64" : "f32",
							 threads, second ? ", recorded" : "",
							 (const char *[]){ "y", "dx", "d2x" }[k]);
						if (!one.t[k] && !two.t[k])
							continue;
						assert_non_null(one.t[k]);
						assert_non_null(two.t[k]);
						assert_tensor_bits(what, one.t[k], two.t[k]);
					}
					tg_ctx_free(one.ctx);
					tg_ctx_free(two.ctx);
				}
		/* infinite weights, some on windows whose maximum is not positive */
		for (size_t i = 0; i < n; i++)
			wv[i] = xv[i] <= 0 ? INFINITY : wv[i];
		pool_run one = relu_pool(true, TG_F32, 1, sh, xv, wv, cases[c].k, cases[c].s,
					 cases[c].p, false);
		pool_run two = relu_pool(false, TG_F32, 1, sh, xv, wv, cases[c].k, cases[c].s,
					 cases[c].p, false);
		assert_tensor_bits("dx with an infinite weight", one.t[RDX], two.t[RDX]);
		tg_ctx_free(one.ctx);
		tg_ctx_free(two.ctx);
		free(xv), free(wv);
	}
	tg_ctx_free(rng);
}

/* tg_conv2d_relu is tg_relu(tg_conv2d(...)) made in one tensor: the same
 * bits in its output and in every gradient, through a plain backward and
 * a TG_CREATE_GRAPH one, on each kind of kernel (oneDNN's and im2col for
 * f32, im2col for f64, the depthwise kernels), with and without a bias,
 * strides and groups, at 1 and 2 threads; x holds zeros of both signs, an
 * inf and a NaN. */
static void conv2d_relu_gives_the_bits_of_relu_of_conv2d(void **state)
{
	(void)state;
	static const struct {
		int64_t x[4], w[4];
		int stride, pad, groups;
		bool bias;
	} cases[] = {
		{ { 2, 3, 8, 8 }, { 4, 3, 3, 3 }, 1, 1, 1, true },
		{ { 2, 4, 9, 9 }, { 4, 1, 3, 3 }, 1, 1, 4, true },
		{ { 2, 6, 7, 7 }, { 4, 3, 3, 3 }, 2, 0, 2, false },
		{ { 4, 16, 16, 16 }, { 32, 16, 3, 3 }, 1, 1, 1, true },
		{ { 3, 8, 12, 12 }, { 16, 8, 1, 1 }, 2, 0, 1, true },
	};
	for (size_t c = 0; c < LEN(cases); c++)
		for (int v = 0; v < 2 * 2 * 2; v++) {
			tg_dtype dt = v % 2 ? TG_F64 : TG_F32;
			int threads = 1 + v / 2 % 2;
			tg_conv_kernels kern = v / 4 ? TG_CONV_IM2COL : TG_CONV_ONEDNN;
			tg_conv_opts o = { { cases[c].stride, cases[c].stride },
					   { cases[c].pad, cases[c].pad },
					   { 1, 1 },
					   cases[c].groups };
			tg_ctx *ctx = tg_ctx_new(SEED);
			tg_set_threads(ctx, threads);
			tg_set_conv_kernels(ctx, kern);
			tg_tensor *X = tg_param(tg_randn(ctx, dt, 4, cases[c].x, 0, 1));
			tg_tensor *W = tg_param(tg_randn(ctx, dt, 4, cases[c].w, 0, 1));
			tg_tensor *B = cases[c].bias
					   ? tg_param(tg_randn(ctx, dt, 1, &cases[c].w[0], 0, 1))
					   : NULL;
			const double special[] = { 0.0, -0.0, INFINITY, NAN };
			for (int i = 0; i < 4; i++) {
				size_t at = (size_t)(i * 997 + 5) % tg_numel(X);
				if (dt == TG_F64)
					((double *)tg_data_mut(X))[at] = special[i];
				else
					((float *)tg_data_mut(X))[at] = (float)special[i];
			}
			tg_tensor *r[3][4] = { { NULL } }; /* relu(conv), fused, fused recorded */
			tg_tensor *V = NULL;
			for (int pass = 0; pass < 3; pass++) {
				tg_zero_grads(ctx);
				tg_tensor *y = pass ? tg_conv2d_relu(X, W, B, &o)
						    : tg_relu(tg_conv2d(X, W, B, &o));
				if (!V)
					V = tg_keep(tg_randn(ctx, dt, tg_ndim(y), tg_shape(y), 0, 1));
				tg_tensor *loss = tg_sum(tg_mul(y, V));
				assert_int_equal(
				    tg_backward_ex(loss, NULL, pass == 2 ? TG_CREATE_GRAPH : 0), 0);
				assert_ctx_ok(ctx);
				r[pass][0] = tg_keep(y);
				r[pass][1] = tg_keep(tg_grad(X));
				r[pass][2] = tg_keep(tg_grad(W));
				r[pass][3] = B ? tg_keep(tg_grad(B)) : NULL;
				tg_reset(ctx);
			}
			for (int pass = 1; pass < 3; pass++)
				for (int t = 0; t < 4; t++) {
					if (!r[0][t])
						continue;
					char what[128];
					snprintf(what, sizeof what, "case %zu, %s, %d thread(s), %s, %s: %s",
						 c, dt == TG_F64 ? "f64" : "f32", threads,
						 kern == TG_CONV_IM2COL ? "im2col" : "oneDNN",
						 pass == 1 ? "plain" : "recorded",
						 (const char *[]){ "y", "dx", "dw", "db" }[t]);
					assert_tensor_bits(what, r[0][t], r[pass][t]);
				}
			tg_ctx_free(ctx);
		}
}

static void pool_padding_is_never_a_max_and_counts_in_the_mean(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(1, 1, 2, 2), (double[]){ -1, -2, -3, -4 });
	const double want_max[] = { -1, -1, -2, -1, -1, -2, -3, -3, -4 };
	expect_close("max padding", "kernel 2 stride 1 padding 1", tg_max_pool2d(x, 2, 1, 1),
		     want_max, 9, 0);
	const double want_avg[] = { -0.25, -0.75, -0.5, -1, -2.5, -1.5, -0.75, -1.75, -1 };
	expect_close("avg padding", "kernel 2 stride 1 padding 1", tg_avg_pool2d(x, 2, 1, 1),
		     want_avg, 9, 1e-15);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* 2x2 windows at stride 2 without padding have loops of their own, with
 * the general loop's sums: 0 + (x00 + x10) + (x01 + x11) in double, times
 * 1/4, one rounding. So a window of -0s gives +0, one with inf and -inf
 * NaN, sums past f32's range stay finite in double (3e38 * 4 / 4), and
 * every cell of a window gets dout / 4 (+0 for -0); an odd last row and
 * column get +0. f32 and f64, bit for bit against that sum. */
static void avg_pool_2x2_sums_as_the_general_loop(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	enum { H = 5, W = 11, OH = 2, OW = 5 };
	double x[H * W], d[OH * OW];
	for (int i = 0; i < H * W; i++)
		x[i] = (double)((i * 7) % 9) - 4.5;
	/* window 0: -0s; window 1: inf and -inf; window 2: 3e38 four times;
	 * window 3: a NaN */
	x[0] = x[1] = x[W] = x[W + 1] = -0.0;
	x[2] = INFINITY, x[W + 3] = -INFINITY;
	x[4] = x[5] = x[W + 4] = x[W + 5] = 3e38;
	x[W + 6] = NAN;
	for (int i = 0; i < OH * OW; i++)
		d[i] = i % 3 ? (double)i - 4.25 : -0.0;
	for (int dti = 0; dti < 2; dti++) {
		tg_dtype dt = dti ? TG_F32 : TG_F64;
		tg_tensor *tx = tg_set_requires_grad(tg_from_f64(ctx, dt, SHAPE(1, 1, H, W), x), true);
		tg_tensor *ty = tg_avg_pool2d(tx, 2, 2, 0);
		tg_tensor *td = tg_from_f64(ctx, dt, SHAPE(1, 1, OH, OW), d);
		assert_int_equal(tg_backward_ex(ty, td, 0), 0);
		assert_ctx_ok(ctx);
		double xs[H * W];
		for (int i = 0; i < H * W; i++) /* x as stored */
			xs[i] = tg_get(tx, (size_t)i);
		for (int oh = 0; oh < OH; oh++)
			for (int ow = 0; ow < OW; ow++) {
				const double *r0 = xs + 2 * oh * W + 2 * ow, *r1 = r0 + W;
				double s = (0.0 + (r0[0] + r1[0]) + (r0[1] + r1[1])) * 0.25;
				double want = dti ? (double)(float)s : s, got = tg_get(ty, (size_t)(oh * OW + ow));
				if (!(got == want || (isnan(got) && isnan(want))) ||
				    (signbit(got) != signbit(want) && !isnan(want)))
					fail_msg("%s window (%d,%d): %a, expected %a", dti ? "f32" : "f64",
						 oh, ow, got, want);
			}
		assert_false(signbit(tg_get(ty, 0)));
		assert_true(isnan(tg_get(ty, 1)));
		assert_near(tg_get(ty, 2), 3e38, dti ? 3e31 : 1e23);
		assert_true(isnan(tg_get(ty, 3)));
		tg_tensor *g = tg_grad(tx);
		for (int ih = 0; ih < H; ih++)
			for (int iw = 0; iw < W; iw++) {
				double got = tg_get(g, (size_t)(ih * W + iw)), want = 0.0;
				if (ih < 2 * OH && iw < 2 * OW) {
					double v = 0.0 + tg_get(td, (size_t)(ih / 2 * OW + iw / 2)) * 0.25;
					want = (dti ? (double)(float)v : v) + 0;
				}
				if (got != want || signbit(got) != signbit(want))
					fail_msg("%s dx (%d,%d): %a, expected %a", dti ? "f32" : "f64", ih,
						 iw, got, want);
			}
		tg_reset(ctx);
	}
	tg_ctx_free(ctx);
}

/* A kernel far wider than the image, legal with padding: every window
 * holds the whole image, its mean the image's sum over K^2, and the cost
 * is the image's, not the kernel's (a loop over the kernel's 2e9 columns
 * per row would run for minutes). */
static void an_avg_pool_kernel_wider_than_the_image_costs_the_image(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	const int k = 2000000001, pad = 1000000000;
	for (int d = 0; d < 2; d++) {
		tg_dtype dt = d ? TG_F32 : TG_F64;
		tg_tensor *x = tg_set_requires_grad(tg_rand(ctx, dt, SHAPE(2, 1, 3, 4), -1, 1), true);
		tg_tensor *y = tg_avg_pool2d(x, k, 1, pad);
		assert_non_null(y);
		assert_int_equal(tg_dim(y, 2), 3);
		assert_int_equal(tg_dim(y, 3), 4);
		double kk = (double)k * k;
		for (int n = 0; n < 2; n++) {
			double sum = 0;
			for (int i = 0; i < 12; i++)
				sum += tg_get(x, (size_t)(n * 12 + i));
			for (int i = 0; i < 12; i++)
				assert_near(tg_get(y, (size_t)(n * 12 + i)) * kk, sum, d ? 1e-5 : 1e-13);
		}
		assert_int_equal(tg_backward(tg_sum(y)), 0);
		for (int i = 0; i < 24; i++) /* each pixel is in all 12 windows */
			assert_near(tg_get(tg_grad(x), (size_t)i) * kk, 12, d ? 1e-5 : 1e-13);
		assert_ctx_ok(ctx);
		tg_reset(ctx);
	}
	tg_ctx_free(ctx);
}

/* ---- misuse ----------------------------------------------------------------------- */

static void conv2d_rejects_each_misuse_with_the_shapes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(1, 4, 5, 5));
	tg_tensor *w = tg_zeros(ctx, TG_F64, SHAPE(2, 2, 3, 3));
	tg_conv_opts g2 = { { 1, 1 }, { 0, 0 }, { 1, 1 }, 2 };

	assert_null(tg_conv2d(tg_zeros(ctx, TG_F64, SHAPE(4, 5, 5)), w, NULL, NULL));
	assert_error(ctx, TG_ESHAPE, "tg_conv2d: x is (4,5,5); expected 4-D (N,C,H,W)");
	tg_clear_error(ctx);
	/* sizes the gradient ops take from the caller: beyond BLAS's int, before
	 * any arithmetic on them could overflow (UBSan watches in that build) */
	tg_tensor *d3 = tg_zeros(ctx, TG_F64, SHAPE(1, 2, 3, 3));
	tg_conv_opts dil4 = TG_CONV_DEFAULTS;
	dil4.dilation[0] = 4;
	assert_null(tg_conv2d_weight_grad(x, d3, (int64_t)1 << 62, 3, &dil4));
	assert_error(ctx, TG_ESHAPE,
		     "tg_conv2d_weight_grad: x (1,4,5,5), w (2,4,4611686018427387904,3): a size "
		     "exceeds the BLAS limit 2147483647");
	tg_clear_error(ctx);
	assert_null(tg_conv2d_input_grad(d3, tg_zeros(ctx, TG_F64, SHAPE(2, 4, 3, 3)), INT64_MAX,
					 5, NULL));
	assert_error(ctx, TG_ESHAPE, "tg_conv2d_input_grad: x (1,4,9223372036854775807,5)");
	tg_clear_error(ctx);
	tg_conv_opts huge_g = TG_CONV_DEFAULTS;
	huge_g.groups = INT_MAX;
	assert_null(tg_conv2d_input_grad(d3, w, 5, 5, &huge_g));
	assert_error(ctx, TG_ESHAPE,
		     "tg_conv2d_input_grad: w (2,2,3,3): groups 2147483647 must divide the "
		     "output channels 2");
	tg_clear_error(ctx);
	assert_null(tg_conv2d(x, tg_zeros(ctx, TG_F64, SHAPE(2, 4, 3)), NULL, NULL));
	assert_error(ctx, TG_ESHAPE, "tg_conv2d: w is (2,4,3); expected 4-D (O,C/groups,KH,KW)");
	tg_clear_error(ctx);
	assert_null(tg_conv2d(x, w, NULL, NULL));
	assert_error(ctx, TG_ESHAPE,
		     "tg_conv2d: x (1,4,5,5), w (2,2,3,3): w has 2 input channels; expected "
		     "C/groups = 4/1 = 4");
	tg_clear_error(ctx);
	tg_conv_opts g3 = g2;
	g3.groups = 3;
	assert_null(tg_conv2d(x, w, NULL, &g3));
	assert_error(ctx, TG_ESHAPE,
		     "groups 3 must divide the input channels 4 and the output channels 2");
	tg_clear_error(ctx);
	assert_null(tg_conv2d(x, tg_zeros(ctx, TG_F64, SHAPE(2, 2, 6, 3)), NULL, &g2));
	assert_error(ctx, TG_ESHAPE,
		     "tg_conv2d: x (1,4,5,5), w (2,2,6,3): the kernel spans 6x3 with dilation "
		     "(1,1), larger than the padded input 5x5");
	tg_clear_error(ctx);
	tg_conv_opts dil = g2;
	dil.dilation[1] = 3;
	assert_null(tg_conv2d(x, w, NULL, &dil));
	assert_error(ctx, TG_ESHAPE, "the kernel spans 3x7 with dilation (1,3)");
	tg_clear_error(ctx);
	/* padding INT_MAX on both sides makes each output side 2^32: their
	 * product passes int64, and is refused before anything multiplies it */
	tg_conv_opts wide = TG_CONV_DEFAULTS;
	wide.padding[0] = wide.padding[1] = INT_MAX;
	tg_tensor *w1 = tg_zeros(ctx, TG_F64, SHAPE(2, 4, 2, 2));
	assert_null(tg_conv2d(x, w1, NULL, &wide));
	assert_error(ctx, TG_ESHAPE,
		     "tg_conv2d: x (1,4,5,5), w (2,4,2,2): a size exceeds the BLAS limit "
		     "2147483647 (output 4294967298x4294967298)");
	tg_clear_error(ctx);
	assert_null(tg_conv2d_input_grad(d3, w1, 5, 5, &wide));
	assert_error(ctx, TG_ESHAPE, "exceeds the BLAS limit 2147483647 (output 4294967298x");
	tg_clear_error(ctx);
	tg_conv_opts bad = g2;
	bad.stride[0] = 0;
	assert_null(tg_conv2d(x, w, NULL, &bad));
	assert_error(ctx, TG_EARG, "tg_conv2d: stride (0,1), padding (0,0), dilation (1,1), groups 2");
	tg_clear_error(ctx);
	bad = g2;
	bad.padding[1] = -1;
	assert_null(tg_conv2d(x, w, NULL, &bad));
	assert_error(ctx, TG_EARG, "padding (0,-1)");
	tg_clear_error(ctx);
	bad = g2;
	bad.groups = 0;
	assert_null(tg_conv2d(x, w, NULL, &bad));
	assert_error(ctx, TG_EARG, "groups 0");
	tg_clear_error(ctx);
	assert_null(tg_conv2d(x, w, tg_zeros(ctx, TG_F64, SHAPE(3)), &g2));
	assert_error(ctx, TG_ESHAPE, "tg_conv2d: b is (3,) for w (2,2,3,3); expected (2,)");
	tg_clear_error(ctx);
	assert_null(tg_conv2d(x, tg_zeros(ctx, TG_F32, SHAPE(2, 2, 3, 3)), NULL, &g2));
	assert_true(tg_status_of(ctx) == TG_EDTYPE && strstr(tg_error(ctx), "tg_conv2d"));
	tg_clear_error(ctx);

	/* the gradient ops check dout against the geometry */
	assert_null(tg_conv2d_input_grad(tg_zeros(ctx, TG_F64, SHAPE(1, 2, 2, 3)), w, 5, 5, &g2));
	assert_error(ctx, TG_ESHAPE,
		     "tg_conv2d_input_grad: dout is (1,2,2,3); the convolution's output is (1,2,3,3)");
	tg_clear_error(ctx);
	assert_null(tg_conv2d_input_grad(tg_zeros(ctx, TG_F64, SHAPE(1, 2, 3, 3)), w, 0, 5, &g2));
	assert_error(ctx, TG_EARG, "tg_conv2d_input_grad: input size 0x5");
	tg_clear_error(ctx);
	assert_null(tg_conv2d_weight_grad(x, tg_zeros(ctx, TG_F64, SHAPE(1, 2, 3, 4)), 3, 3, &g2));
	assert_error(ctx, TG_ESHAPE,
		     "tg_conv2d_weight_grad: dout is (1,2,3,4); the convolution's output is "
		     "(1,2,3,3)");
	tg_clear_error(ctx);
	assert_null(tg_conv2d_weight_grad(x, tg_zeros(ctx, TG_F64, SHAPE(1, 2, 3, 3)), 3, 3, &g3));
	assert_error(ctx, TG_ESHAPE,
		     "tg_conv2d_weight_grad: x (1,4,5,5), dout (1,2,3,3): groups 3 must divide the "
		     "input channels 4 and the output channels 2");
	tg_clear_error(ctx);
	/* more groups than channels: no kernel of C/groups = 0 channels is made up */
	tg_conv_opts g8 = g2;
	g8.groups = 8;
	assert_null(tg_conv2d_weight_grad(x, tg_zeros(ctx, TG_F64, SHAPE(1, 8, 3, 3)), 3, 3, &g8));
	assert_error(ctx, TG_ESHAPE,
		     "tg_conv2d_weight_grad: x (1,4,5,5), dout (1,8,3,3): groups 8 must divide the "
		     "input channels 4 and the output channels 8");
	tg_clear_error(ctx);

	/* a failure earlier in a chain arrives intact through conv and pool */
	tg_tensor *y = tg_max_pool2d(tg_relu(tg_conv2d(x, w, NULL, NULL)), 2, 2, 0);
	assert_null(y);
	assert_error(ctx, TG_ESHAPE, "tg_conv2d: x (1,4,5,5), w (2,2,3,3)");
	tg_ctx_free(ctx);
}

static void pools_reject_each_misuse_with_the_shapes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x = tg_zeros(ctx, TG_F64, SHAPE(1, 2, 3, 3));
	assert_null(tg_max_pool2d(tg_zeros(ctx, TG_F64, SHAPE(2, 3, 3)), 2, 2, 0));
	assert_error(ctx, TG_ESHAPE, "tg_max_pool2d: x is (2,3,3); expected 4-D (N,C,H,W)");
	tg_clear_error(ctx);
	assert_null(tg_max_pool2d(x, 0, 1, 0));
	assert_error(ctx, TG_EARG,
		     "tg_max_pool2d: x (1,2,3,3), kernel 0, stride 1, padding 0: kernel and "
		     "stride must be >= 1, padding in [0, kernel/2]");
	tg_clear_error(ctx);
	assert_null(tg_avg_pool2d(x, 2, 0, 0));
	assert_error(ctx, TG_EARG, "tg_avg_pool2d: x (1,2,3,3), kernel 2, stride 0, padding 0");
	tg_clear_error(ctx);
	assert_null(tg_avg_pool2d(x, 2, 1, 2));
	assert_error(ctx, TG_EARG, "kernel 2, stride 1, padding 2");
	tg_clear_error(ctx);
	assert_null(tg_max_pool2d(x, 4, 1, 0));
	assert_error(ctx, TG_ESHAPE,
		     "tg_max_pool2d: x (1,2,3,3): kernel 4 is larger than the padded input 3x3");
	tg_clear_error(ctx);
	assert_null(tg_max_pool2d(NULL, 2, 2, 0));
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(conv2d_of_a_diagonal_kernel_adds_two_pixels),
		cmocka_unit_test(conv2d_matches_the_naive_loops_over_many_options),
		cmocka_unit_test(conv2d_takes_large_images_in_batches),
		cmocka_unit_test(conv2d_per_image_on_one_and_two_threads_matches_the_naive_loops),
		cmocka_unit_test(the_gradient_ops_match_the_naive_loops),
		cmocka_unit_test(steady_conv_steps_allocate_nothing),
		cmocka_unit_test(pools_match_the_naive_loops),
		cmocka_unit_test(pools_on_two_threads_match_the_naive_loops),
		cmocka_unit_test(max_pool_routes_to_the_first_nan),
		cmocka_unit_test(max_pool_2x2_of_floats_in_blocks_matches_the_doubles),
		cmocka_unit_test(max_pool_of_any_window_in_blocks_matches_the_rule),
		cmocka_unit_test(max_pool_gives_a_tie_to_the_first_maximum_in_row_major_order),
		cmocka_unit_test(relu_max_pool2d_gives_the_bits_of_max_pool2d_of_relu),
		cmocka_unit_test(conv2d_relu_gives_the_bits_of_relu_of_conv2d),
		cmocka_unit_test(pool_padding_is_never_a_max_and_counts_in_the_mean),
		cmocka_unit_test(avg_pool_2x2_sums_as_the_general_loop),
		cmocka_unit_test(an_avg_pool_kernel_wider_than_the_image_costs_the_image),
		cmocka_unit_test(conv2d_rejects_each_misuse_with_the_shapes),
		cmocka_unit_test(pools_reject_each_misuse_with_the_shapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
