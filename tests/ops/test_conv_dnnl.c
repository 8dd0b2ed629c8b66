/*
 * test_conv_dnnl.c - conv2d's oneDNN kernels (ops/conv_dnnl.c) against its
 * im2col kernels, in f32.
 *
 * Two contexts run the same convolutions: one as made by default (oneDNN
 * when the build has it), one made with TG_CONV=im2col in the environment.
 * Each kernel (forward with bias, input gradient, weight gradient) is
 * compared over random shapes and every option, on one and two threads;
 * the tolerance is relative to the sum of |a b| over each element's
 * products (the im2col context computes it from |x|, |w|, |dout|), which
 * is what f32 sums taken in another order differ by. Then the steady step
 * of a CNN's convolutions allocates nothing through the context, two
 * contexts in two threads give the one-thread results, the calling
 * thread's OpenMP setting survives a call, and pointwise convolutions are
 * left to im2col's GEMMs.
 * Shape legend: x (N,C,H,W), w (O,C/G,KH,KW), out (N,O,OH,OW).
 */
#include "conv_check.h"
#include "../../ops/conv_dnnl.h"
#include "../../ops/transpose.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef TG_HAVE_DNNL
#include <omp.h>
#endif

enum { SEED = 11 };

/* how the results checked against im2col are named in a failure */
static const char PATH[] = "with oneDNN";

typedef struct conv_case {
	int64_t N, C, H, W, O, KH, KW;
	tg_conv_opts o;
} conv_case;

static tg_tensor *rand_f32(tg_ctx *ctx, int64_t a, int64_t b, int64_t c, int64_t d)
{
	return tg_rand(ctx, TG_F32, 4, (int64_t[]){ a, b, c, d }, -1, 1);
}

/* The three kernels of case c in ctx (oneDNN) and in ref (im2col) on the
 * same random inputs, each against the other. */
static void compare_case(tg_ctx *ctx, tg_ctx *ref, const conv_case *c)
{
	int64_t G = c->o.groups, OH, OW;
	OH = out_side(c->H, c->KH, c->o.stride[0], c->o.padding[0], c->o.dilation[0]);
	OW = out_side(c->W, c->KW, c->o.stride[1], c->o.padding[1], c->o.dilation[1]);
	assert_true(OH >= 1 && OW >= 1);
	char label[256];
	snprintf(label, sizeof label,
		 "x (%lld,%lld,%lld,%lld) w (%lld,%lld,%lld,%lld) stride (%d,%d) padding (%d,%d) "
		 "dilation (%d,%d) groups %d, %d threads",
		 (long long)c->N, (long long)c->C, (long long)c->H, (long long)c->W,
		 (long long)c->O, (long long)(c->C / G), (long long)c->KH, (long long)c->KW,
		 c->o.stride[0], c->o.stride[1], c->o.padding[0], c->o.padding[1],
		 c->o.dilation[0], c->o.dilation[1], c->o.groups, tg_threads(ctx));
	tg_tensor *x = rand_f32(ref, c->N, c->C, c->H, c->W);
	tg_tensor *w = rand_f32(ref, c->O, c->C / G, c->KH, c->KW);
	tg_tensor *b = tg_rand(ref, TG_F32, 1, (int64_t[]){ c->O }, -1, 1);
	tg_tensor *d = rand_f32(ref, c->N, c->O, OH, OW);
	tg_tensor *xd = copy_to(ctx, x), *wd = copy_to(ctx, w), *bd = copy_to(ctx, b);
	tg_tensor *dd = copy_to(ctx, d);
	const tg_conv_opts *o = &c->o;
	tg_tensor *ax = tg_abs(x), *aw = tg_abs(w), *ad = tg_abs(d);

	expect_agree(label, "forward", PATH, tg_conv2d(xd, wd, bd, o), tg_conv2d(x, w, b, o),
		     tg_conv2d(ax, aw, tg_abs(b), o), 1e-5);
	expect_agree(label, "input grad", PATH, tg_conv2d_input_grad(dd, wd, c->H, c->W, o),
		     tg_conv2d_input_grad(d, w, c->H, c->W, o),
		     tg_conv2d_input_grad(ad, aw, c->H, c->W, o), 1e-5);
	expect_agree(label, "weight grad", PATH, tg_conv2d_weight_grad(xd, dd, c->KH, c->KW, o),
		     tg_conv2d_weight_grad(x, d, c->KH, c->KW, o),
		     tg_conv2d_weight_grad(ax, ad, c->KH, c->KW, o), 1e-5);
	assert_ctx_ok(ctx);
	assert_ctx_ok(ref);
	tg_reset(ctx);
	tg_reset(ref);
}

/* Strides 1-3, padding 0-2, dilation 1-2 and groups 1, 2, 4, each per axis
 * and mixed; kernels 3x3, 2x3, 1x1, 3x1 and 5x2; images of random sides
 * 5-14 (non-square), batches of 1 and 3, channels random multiples of the
 * groups; on one thread and on two. */
static void dnnl_kernels_match_im2col_over_every_option(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	static const int64_t kernels[][2] = { { 3, 3 }, { 2, 3 }, { 1, 1 }, { 3, 1 }, { 5, 2 } };
	static const int groups[] = { 1, 2, 4 };
	srand(SEED);
	int cases = 0, i = 0;
	for (int t = 1; t <= 2; t++) {
		tg_set_threads(ctx, t);
		tg_set_threads(ref, t);
		for (int s = 1; s <= 3; s++)
			for (int p = 0; p <= 2; p++)
				for (int dl = 1; dl <= 2; dl++)
					for (int gi = 0; gi < 3; gi++, i++) {
						int G = groups[gi], mix = i % 3 == 0;
						conv_case c = {
							.N = i % 2 ? 3 : 1,
							.C = G * (1 + rand() % 3),
							.H = 5 + rand() % 10,
							.W = 5 + rand() % 10,
							.O = G * (1 + rand() % 4),
							.KH = kernels[i % 5][0],
							.KW = kernels[i % 5][1],
							.o = { { s, mix ? 1 + s % 3 : s },
							       { p, mix ? (p + 1) % 3 : p },
							       { dl, mix ? 3 - dl : dl },
							       G },
						};
						/* the dilated kernel must fit the padded image */
						while (out_side(c.H, c.KH, c.o.stride[0], c.o.padding[0],
								c.o.dilation[0]) < 1 ||
						       out_side(c.W, c.KW, c.o.stride[1], c.o.padding[1],
								c.o.dilation[1]) < 1)
							c.H++, c.W++;
						compare_case(ctx, ref, &c);
						cases++;
					}
	}
	assert_int_equal(cases, 108);
#ifdef TG_HAVE_DNNL
	if (tg_conv_dnnl_made(ctx) < 1)
		fail_msg("oneDNN made no primitive: the comparison compared im2col with itself");
#endif
	assert_int_equal(tg_conv_dnnl_made(ref), 0);
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* Strides, paddings and dilations near INT_MAX, where oneDNN's 32-bit
 * indices overflow (its weight gradient was all zeros at stride 2147483645
 * over a 5x6 image): those geometries run on im2col and agree. */
static void huge_strides_and_paddings_match_im2col(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	const conv_case cases[] = {
		{ 1, 2, 5, 6, 2, 2, 3, { { INT_MAX - 2, INT_MAX - 2 }, { 0, 0 }, { 1, 1 }, 1 } },
		{ 2, 2, 5, 6, 4, 2, 3, { { INT_MAX, 1 }, { 0, 0 }, { 1, 1 }, 1 } },
		{ 1, 2, 40, 6, 2, 2, 3, { { INT_MAX - 37, 1 }, { 0, 0 }, { 1, 1 }, 2 } },
		{ 1, 2, 5, 6, 2, 2, 3, { { INT_MAX, INT_MAX }, { INT_MAX - 1, 1 }, { 1, 1 }, 1 } },
		{ 1, 2, 5, 6, 2, 1, 1, { { 1, 1 }, { 0, 0 }, { INT_MAX, INT_MAX }, 1 } },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		compare_case(ctx, ref, &cases[i]);
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* The CNN's convolutions at batch 64, whose channels fill oneDNN's blocks
 * (the layouts are reordered there and back), on two threads. */
static void dnnl_matches_im2col_on_the_cnn_layers(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	tg_set_threads(ctx, 2);
	tg_set_threads(ref, 2);
	const conv_case layers[] = {
		{ .N = 64, .C = 1, .H = 28, .W = 28, .O = 32, .KH = 3, .KW = 3,
		  .o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } },
		{ .N = 64, .C = 32, .H = 14, .W = 14, .O = 64, .KH = 3, .KW = 3,
		  .o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } },
	};
	for (size_t i = 0; i < LEN(layers); i++)
		compare_case(ctx, ref, &layers[i]);
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* A context set to TG_CONV_WINOGRAD, the same case: one more, so that
 * none of its convolutions is the im2col context's. */
static tg_ctx *winograd_ctx(void)
{
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_set_conv_kernels(ctx, TG_CONV_WINOGRAD);
	assert_int_equal(tg_get_conv_kernels(ctx), TG_CONV_WINOGRAD);
	return ctx;
}

/* Winograd's kernels (WINOGRAD in ops/conv_dnnl.c): 3x3 kernels at stride
 * 1 with 16 or 32 channels in and 32 or 16 out, padding 0 to 2, images of sides 3
 * to 13 (not square, mostly not multiples of the 4x4 tiles), batches of 1
 * and 3, on one thread and two, against im2col within the tolerance of
 * the direct kernels. The geometries left to the direct kernels (8
 * channels, 16 to 16, stride 2, dilation 2, groups, a 5x5 kernel) make no
 * Winograd primitive. */
static void winograd_kernels_match_im2col(void **state)
{
	(void)state;
	tg_ctx *ctx = winograd_ctx(), *ref = im2col_ctx(SEED);
	static const int64_t channels[][2] = { { 32, 32 }, { 16, 32 }, { 32, 16 } };
	srand(SEED);
	int cases = 0;
	for (int t = 1; t <= 2; t++) {
		tg_set_threads(ctx, t);
		tg_set_threads(ref, t);
		for (size_t ci = 0; ci < LEN(channels); ci++)
			for (int p = 0; p <= 2; p++, cases++) {
				conv_case c = { .N = cases % 2 ? 3 : 1, .C = channels[ci][0],
						.H = 3 + rand() % 11, .W = 3 + rand() % 11,
						.O = channels[ci][1], .KH = 3, .KW = 3,
						.o = { { 1, 1 }, { p, p }, { 1, 1 }, 1 } };
				compare_case(ctx, ref, &c);
			}
	}
	assert_int_equal(cases, 18);
#ifdef TG_HAVE_DNNL
	/* where oneDNN has no Winograd kernels (ONEDNN_MAX_CPU_ISA=AVX2, a CPU
	 * without AVX-512) every layer above ran direct, and must have */
	if (!tg_conv_dnnl_winograd_offered(ctx))
		assert_int_equal(tg_conv_dnnl_winograd_made(ctx), 0);
	else if (tg_conv_dnnl_winograd_made(ctx) < 1)
		fail_msg("no Winograd primitive was made: the direct kernels were compared");
	const conv_case direct[] = {
		{ 2, 8, 9, 9, 16, 3, 3, { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } },
		{ 2, 16, 9, 9, 8, 3, 3, { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } },
		{ 2, 16, 9, 9, 16, 3, 3, { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } },
		{ 2, 32, 9, 9, 32, 3, 3, { { 2, 2 }, { 1, 1 }, { 1, 1 }, 1 } },
		{ 2, 32, 9, 9, 32, 3, 3, { { 1, 1 }, { 2, 2 }, { 2, 2 }, 1 } },
		{ 2, 64, 9, 9, 64, 3, 3, { { 1, 1 }, { 1, 1 }, { 1, 1 }, 2 } },
		{ 2, 32, 9, 9, 32, 5, 5, { { 1, 1 }, { 2, 2 }, { 1, 1 }, 1 } },
	};
	for (size_t i = 0; i < LEN(direct); i++) {
		tg_ctx *fresh = winograd_ctx();
		compare_case(fresh, ref, &direct[i]);
		if (tg_conv_dnnl_made(fresh) < 1 || tg_conv_dnnl_winograd_made(fresh) != 0)
			fail_msg("case %zu: %d primitives made, %d of them Winograd's; expected "
				 "direct ones only",
				 i, tg_conv_dnnl_made(fresh), tg_conv_dnnl_winograd_made(fresh));
		tg_ctx_free(fresh);
	}
#endif
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* tg_set_conv_kernels takes the three settings and refuses others; TG_CONV
 * in the environment sets a new context's. */
static void the_conv_kernels_are_set_per_context(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	assert_int_equal(tg_get_conv_kernels(ctx), TG_CONV_ONEDNN);
	tg_set_conv_kernels(ctx, TG_CONV_IM2COL);
	assert_int_equal(tg_get_conv_kernels(ctx), TG_CONV_IM2COL);
	tg_set_conv_kernels(ctx, (tg_conv_kernels)7);
	assert_int_equal(tg_status_of(ctx), TG_EARG);
	assert_non_null(strstr(tg_error(ctx), "7 is not TG_CONV_ONEDNN"));
	assert_int_equal(tg_get_conv_kernels(ctx), TG_CONV_IM2COL);
	tg_ctx_free(ctx);
	assert_int_equal(tg_get_conv_kernels(NULL), TG_CONV_ONEDNN);
	tg_ctx *w = ctx_made_with("TG_CONV", "winograd", SEED), *i = im2col_ctx(SEED);
	assert_int_equal(tg_get_conv_kernels(w), TG_CONV_WINOGRAD);
	assert_int_equal(tg_get_conv_kernels(i), TG_CONV_IM2COL);
	tg_ctx_free(w);
	/* the default, named as train --help does: taken without a warning on
	 * stderr (a value it does not know is named there) */
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	FILE *err = tmpfile();
	assert_true(saved >= 0 && err);
	assert_true(dup2(fileno(err), STDERR_FILENO) >= 0);
	w = ctx_made_with("TG_CONV", "onednn", SEED);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	long said = ftell(err) >= 0 ? (fseek(err, 0, SEEK_END), ftell(err)) : -1;
	fclose(err);
	assert_int_equal(tg_get_conv_kernels(w), TG_CONV_ONEDNN);
	assert_int_equal(said, 0);
	tg_ctx_free(w);
	tg_ctx_free(i);
}

/* One image at two threads goes in two lanes of its output channels
 * (SPLIT in ops/conv_dnnl.c): a primitive per lane and kind, the forward
 * pass with its bias and the weight gradient writing each lane's
 * channels, the input gradient the sum of the lanes'; 48 channels in runs
 * of 24, with and without padding, and on Winograd's kernels. 20 channels
 * (runs of 10, not whole blocks of 8) stay in one lane. */
static void one_image_splits_its_output_channels_across_threads(void **state)
{
	(void)state;
	tg_ctx *ref = im2col_ctx(SEED);
	tg_set_threads(ref, 2);
	const conv_case cases[] = {
		{ .N = 1, .C = 16, .H = 12, .W = 9, .O = 48, .KH = 3, .KW = 3,
		  .o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } },
		{ .N = 1, .C = 24, .H = 7, .W = 11, .O = 48, .KH = 5, .KW = 3,
		  .o = { { 2, 1 }, { 0, 1 }, { 1, 1 }, 1 } },
		{ .N = 1, .C = 32, .H = 10, .W = 10, .O = 64, .KH = 3, .KW = 3,
		  .o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } },
		{ .N = 1, .C = 16, .H = 12, .W = 9, .O = 20, .KH = 3, .KW = 3,
		  .o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } },
	};
	for (size_t i = 0; i < LEN(cases); i++) {
		tg_ctx *ctx = i == 2 ? winograd_ctx() : tg_ctx_new(SEED);
		tg_set_threads(ctx, 2);
		compare_case(ctx, ref, &cases[i]);
#ifdef TG_HAVE_DNNL
		int lanes = cases[i].O == 20 ? 1 : 2;
		if (tg_conv_dnnl_made(ctx) != 3 * lanes)
			fail_msg("case %zu: %d primitives, expected %d (%d lane%s of 3 kinds)", i,
				 tg_conv_dnnl_made(ctx), 3 * lanes, lanes, lanes == 1 ? "" : "s");
		int wino = i == 2 && tg_conv_dnnl_winograd_offered(ctx) ? 3 * 2 : 0;
		if (tg_conv_dnnl_winograd_made(ctx) != wino)
			fail_msg("%d Winograd primitives, expected %d", tg_conv_dnnl_winograd_made(ctx),
				 wino);
#endif
		tg_ctx_free(ctx);
	}
	tg_ctx_free(ref);
}

/* Channel counts that fill oneDNN's blocks of 16 (and 8), whose layouts
 * are copied by transpose.c's batched transposes: images of 1 to 51
 * positions, a multiple of 16 or not, below 16 or above; plain and
 * depthwise, stride 1 and 2, batches of 1 and 3, on one thread and two. */
static void channel_blocks_match_im2col_at_every_side(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	static const int64_t sides[][2] = { { 1, 1 }, { 3, 3 }, { 4, 4 }, { 5, 7 }, { 17, 3 }, { 6, 6 } };
	static const int64_t channels[] = { 16, 32, 48 };
	int cases = 0;
	for (int t = 1; t <= 2; t++) {
		tg_set_threads(ctx, t);
		tg_set_threads(ref, t);
		for (size_t si = 0; si < LEN(sides); si++)
			for (size_t ci = 0; ci < LEN(channels); ci++)
				for (int v = 0; v < 4; v++, cases++) {
					int64_t C = channels[ci];
					int s = 1 + v % 2, G = v >= 2 ? (int)C : 1;
					conv_case c = { .N = 1 + 2 * (int64_t)(cases % 2), .C = C,
							.H = sides[si][0], .W = sides[si][1],
							.O = G > 1 ? C : 32, .KH = 3, .KW = 3,
							.o = { { s, s }, { 1, 1 }, { 1, 1 }, G } };
					compare_case(ctx, ref, &c);
				}
	}
	assert_int_equal(cases, 144);
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* Channel counts that are not a multiple of oneDNN's blocks, whose last
 * block of each image is padded with zeros (3 and 8 channels of 16, 20 and
 * 40 of 16 with full blocks before): copied in and out lane by lane, 16
 * positions at a time and the rest one by one, so images of 1 to 51
 * positions, below 16, a multiple of 16 or not; outputs of 8 and 24
 * channels padded likewise; stride 1 and 2, batches of 1 and 3, one thread
 * and two. The padding must be zeros for the kernels (the arena holds
 * the last case's values there). */
static void padded_channel_blocks_match_im2col_at_every_side(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	static const int64_t sides[][2] = { { 1, 1 }, { 3, 3 }, { 4, 4 }, { 5, 7 }, { 17, 3 }, { 8, 8 } };
	static const int64_t channels[] = { 3, 8, 20, 40 };
	static const int64_t outs[] = { 8, 24 };
	int cases = 0;
	for (int t = 1; t <= 2; t++) {
		tg_set_threads(ctx, t);
		tg_set_threads(ref, t);
		for (size_t si = 0; si < LEN(sides); si++)
			for (size_t ci = 0; ci < LEN(channels); ci++)
				for (size_t oi = 0; oi < LEN(outs); oi++, cases++) {
					int s = 1 + (int)(cases / 2 % 2);
					conv_case c = { .N = 1 + 2 * (int64_t)(cases % 2),
							.C = channels[ci], .H = sides[si][0],
							.W = sides[si][1], .O = outs[oi], .KH = 3, .KW = 3,
							.o = { { s, s }, { 1, 1 }, { 1, 1 }, 1 } };
					compare_case(ctx, ref, &c);
				}
	}
	assert_int_equal(cases, 96);
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* tg_transpose_batch against the index loop, bit for bit: matrices of 1 to
 * 33 rows and columns around the blocks of 8 and 16 (the line blocks take
 * 16 whole), one to three of them, floats and doubles; every element of
 * Y is written (it starts as NaN payloads that no element of X has). */
static void batched_transposes_move_every_element(void **state)
{
	(void)state;
	static const int64_t sizes[] = { 1, 3, 8, 15, 16, 17, 31, 32, 33 };
	for (size_t es = 4; es <= 8; es += 4)
		for (size_t a = 0; a < LEN(sizes); a++)
			for (size_t b = 0; b < LEN(sizes); b++)
				for (int64_t count = 1; count <= 3; count++) {
					int64_t rows = sizes[a], cols = sizes[b];
					size_t n = (size_t)(count * rows * cols);
					unsigned char *x = malloc(n * es), *y = malloc(n * es);
					assert_non_null(x);
					assert_non_null(y);
					for (size_t i = 0; i < n * es; i++)
						x[i] = (unsigned char)(i * 131 + i / 7);
					memset(y, 0xff, n * es);
					tg_transpose_batch(es, x, y, count, rows, cols);
					for (int64_t m = 0; m < count; m++)
						for (int64_t r = 0; r < rows; r++)
							for (int64_t k = 0; k < cols; k++) {
								size_t from = (size_t)((m * rows + r) * cols + k);
								size_t to = (size_t)((m * cols + k) * rows + r);
								if (memcmp(x + from * es, y + to * es, es))
									fail_msg("%zu-byte (%lld,%lld) x %lld: "
										 "element (%lld,%lld) of matrix %lld "
										 "moved wrong",
										 es, (long long)rows, (long long)cols,
										 (long long)count, (long long)r,
										 (long long)k, (long long)m);
							}
					free(x);
					free(y);
				}
}

/* Negates and shifts t's data in place (a new version). */
static void change(tg_tensor *t)
{
	float *d = tg_data_mut(t);
	assert_non_null(d);
	for (size_t i = 0; i < tg_numel(t); i++)
		d[i] = 0.5f - d[i];
}

/* The weight gradient reads the blocked x of the forward and the blocked
 * dout of the input gradient; a tensor changed in place since is
 * reordered again, and so is another tensor in the same memory in a later
 * step. */
static void blocked_copies_are_shared_only_at_the_same_version(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	for (int t = 1; t <= 2; t++) {
		tg_set_threads(ctx, t);
		tg_set_threads(ref, t);
		const conv_case c = { .N = 8, .C = 32, .H = 10, .W = 10, .O = 32, .KH = 3, .KW = 3,
				      .o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 } };
		const tg_conv_opts *o = &c.o;
		for (int step = 0; step < 2; step++) {
			tg_tensor *x = rand_f32(ref, c.N, c.C, c.H, c.W);
			tg_tensor *w = rand_f32(ref, c.O, c.C, c.KH, c.KW);
			tg_tensor *d = rand_f32(ref, c.N, c.O, c.H, c.W);
			tg_tensor *xd = copy_to(ctx, x), *wd = copy_to(ctx, w), *dd = copy_to(ctx, d);
			tg_tensor *ax = tg_abs(x), *aw = tg_abs(w), *ad = tg_abs(d);
			uint64_t before = tg_conv_dnnl_reused(ctx);
			expect_agree("first", "forward", PATH, tg_conv2d(xd, wd, NULL, o),
				     tg_conv2d(x, w, NULL, o), tg_conv2d(ax, aw, NULL, o), 1e-5);
			expect_agree("first", "input grad", PATH, tg_conv2d_input_grad(dd, wd, 10, 10, o),
				     tg_conv2d_input_grad(d, w, 10, 10, o),
				     tg_conv2d_input_grad(ad, aw, 10, 10, o), 1e-5);
			expect_agree("first", "weight grad", PATH,
				     tg_conv2d_weight_grad(xd, dd, 3, 3, o),
				     tg_conv2d_weight_grad(x, d, 3, 3, o),
				     tg_conv2d_weight_grad(ax, ad, 3, 3, o), 1e-5);
#ifdef TG_HAVE_DNNL
			/* x and dout in the weight gradient, in each of t lanes (w's
			 * layout for the input gradient is another: ABcd16a16b
			 * against the forward's ABcd16b16a) */
			if (tg_conv_dnnl_made(ctx) > 0 &&
			    tg_conv_dnnl_reused(ctx) - before != 2 * (uint64_t)t)
				fail_msg("%d threads: %llu blocked copies read again, expected %d", t,
					 (unsigned long long)(tg_conv_dnnl_reused(ctx) - before),
					 2 * t);
#else
			(void)before;
#endif
			/* each input changed in place, in both contexts */
			change(x), change(xd), change(w), change(wd), change(d), change(dd);
			ax = tg_abs(x), aw = tg_abs(w), ad = tg_abs(d);
			expect_agree("changed", "forward", PATH, tg_conv2d(xd, wd, NULL, o),
				     tg_conv2d(x, w, NULL, o), tg_conv2d(ax, aw, NULL, o), 1e-5);
			expect_agree("changed", "input grad", PATH,
				     tg_conv2d_input_grad(dd, wd, 10, 10, o),
				     tg_conv2d_input_grad(d, w, 10, 10, o),
				     tg_conv2d_input_grad(ad, aw, 10, 10, o), 1e-5);
			change(xd), change(x); /* once more: only the forward saw the last one */
			ax = tg_abs(x);
			expect_agree("changed", "weight grad", PATH,
				     tg_conv2d_weight_grad(xd, dd, 3, 3, o),
				     tg_conv2d_weight_grad(x, d, 3, 3, o),
				     tg_conv2d_weight_grad(ax, ad, 3, 3, o), 1e-5);
			assert_ctx_ok(ctx);
			assert_ctx_ok(ref);
			tg_reset(ctx);
			tg_reset(ref);
		}
	}
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* conv2d(x, w) at opts o for tg_jacobian: inputs (x, w), or (w) with x
 * given. */
typedef struct conv_fn {
	tg_conv_opts o;
	tg_tensor *x;
} conv_fn;

static tg_tensor *conv_of(tg_tensor *const *in, void *user)
{
	const conv_fn *f = user;
	return f->x ? tg_conv2d(f->x, in[0], NULL, &f->o) : tg_conv2d(in[0], in[1], NULL, &f->o);
}

/* A Jacobian's passes give their step memory back to the next pass, so
 * the blocked copies one pass made (of its dout, and of x or w when the
 * forward's was not of the layout wanted) lie where the next pass writes:
 * each pass reorders again. By rows (every row a backward of the
 * convolution) and by columns (every column a walk over the recorded
 * backward's own convolutions), on one thread and on two; each entry of
 * either Jacobian is an element of x or w, or 0. */
static void jacobian_passes_match_im2col(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	for (int t = 1; t <= 2; t++) {
		tg_set_threads(ctx, t);
		tg_set_threads(ref, t);
		tg_tensor *x = rand_f32(ref, 2, 16, 6, 6), *w = rand_f32(ref, 16, 16, 3, 3);
		tg_tensor *xd = copy_to(ctx, x), *wd = copy_to(ctx, w);
		conv_fn f = { { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 }, NULL };
		/* rows: 1152 outputs, 1152 + 2304 inputs */
		tg_tensor *in[2] = { x, w }, *ind[2] = { xd, wd }, *jac[2], *jacd[2];
		assert_int_equal(tg_jacobian(ref, conv_of, &f, 2, in, jac), 0);
		assert_int_equal(tg_jacobian(ctx, conv_of, &f, 2, ind, jacd), 0);
		for (int i = 0; i < 2; i++)
			expect_agree("by rows", i ? "d out / d w" : "d out / d x", PATH, jacd[i],
				     jac[i], tg_abs(jac[i]), 1e-5);
		/* columns: of a w (4,16,1,3) alone, x given: 288 outputs, 192 inputs */
		tg_tensor *ws = rand_f32(ref, 4, 16, 1, 3);
		tg_tensor *wsd = copy_to(ctx, ws);
		f.o.padding[0] = 0;
		f.x = x;
		assert_int_equal(tg_jacobian(ref, conv_of, &f, 1, &ws, jac), 0);
		f.x = xd;
		assert_int_equal(tg_jacobian(ctx, conv_of, &f, 1, &wsd, jacd), 0);
		expect_agree("by columns", "d out / d w", PATH, jacd[0], jac[0], tg_abs(jac[0]), 1e-5);
		assert_ctx_ok(ctx);
		assert_ctx_ok(ref);
		tg_reset(ctx);
		tg_reset(ref);
	}
#ifdef TG_HAVE_DNNL
	if (tg_conv_dnnl_made(ctx) < 1)
		fail_msg("oneDNN made no primitive: the comparison compared im2col with itself");
#endif
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* 0.5 - each of the n floats at d, written through a pointer kept from an
 * earlier tg_data_mut (no version bump). */
static void flip(float *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = 0.5f - d[i];
}

/* A caller may keep tg_data_mut's pointer and write through it again, as a
 * central difference does between two calls: the kernels that read the
 * tensor after the write see it, blocked copies or not. */
static void a_write_through_a_kept_pointer_reaches_the_next_convolution(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	const tg_conv_opts o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 };
	for (int t = 1; t <= 2; t++) {
		tg_set_threads(ctx, t);
		tg_set_threads(ref, t);
		tg_tensor *x = rand_f32(ref, 8, 32, 10, 10), *w = rand_f32(ref, 32, 32, 3, 3);
		tg_tensor *d = rand_f32(ref, 8, 32, 10, 10);
		tg_tensor *xd = copy_to(ctx, x), *wd = copy_to(ctx, w), *dd = copy_to(ctx, d);
		float *px = tg_data_mut(x), *pxd = tg_data_mut(xd);
		float *pw = tg_data_mut(w), *pwd = tg_data_mut(wd);
		float *pd = tg_data_mut(d), *pdd = tg_data_mut(dd);
		assert_non_null(tg_conv2d(xd, wd, NULL, &o));
		assert_non_null(tg_conv2d_input_grad(dd, wd, 10, 10, &o));
		flip(px, tg_numel(x)), flip(pxd, tg_numel(xd));
		flip(pw, tg_numel(w)), flip(pwd, tg_numel(wd));
		flip(pd, tg_numel(d)), flip(pdd, tg_numel(dd));
		tg_tensor *ax = tg_abs(x), *aw = tg_abs(w), *ad = tg_abs(d);
		expect_agree("written", "forward", PATH, tg_conv2d(xd, wd, NULL, &o),
			     tg_conv2d(x, w, NULL, &o), tg_conv2d(ax, aw, NULL, &o), 1e-5);
		expect_agree("written", "input grad", PATH, tg_conv2d_input_grad(dd, wd, 10, 10, &o),
			     tg_conv2d_input_grad(d, w, 10, 10, &o),
			     tg_conv2d_input_grad(ad, aw, 10, 10, &o), 1e-5);
		flip(pxd, tg_numel(xd)), flip(px, tg_numel(x)); /* after the forward's copy */
		ax = tg_abs(x);
		expect_agree("written", "weight grad", PATH, tg_conv2d_weight_grad(xd, dd, 3, 3, &o),
			     tg_conv2d_weight_grad(x, d, 3, 3, &o),
			     tg_conv2d_weight_grad(ax, ad, 3, 3, &o), 1e-5);
		assert_ctx_ok(ctx);
		assert_ctx_ok(ref);
		tg_reset(ctx);
		tg_reset(ref);
	}
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* The CNN's two convolutions with ReLU and pooling, forward and backward,
 * for 10 steps after 3 of warm-up: the primitives are made once and the
 * scratchpads and blocked copies come from the step arena; on the direct
 * kernels and on Winograd's. */
static void steady_steps_allocate_nothing(tg_conv_kernels k)
{
	counting c = { 0 };
	tg_allocator a = { counting_alloc, counting_free, &c };
	tg_ctx *ctx = tg_ctx_new_with(1, &a);
	tg_set_threads(ctx, 2);
	tg_set_conv_kernels(ctx, k);
	tg_tensor *w1 = tg_param(tg_randn(ctx, TG_F32, SHAPE(32, 1, 3, 3), 0, 0.3));
	tg_tensor *b1 = tg_param(tg_zeros(ctx, TG_F32, SHAPE(32)));
	tg_tensor *w2 = tg_param(tg_randn(ctx, TG_F32, SHAPE(64, 32, 3, 3), 0, 0.1));
	tg_tensor *b2 = tg_param(tg_zeros(ctx, TG_F32, SHAPE(64)));
	const tg_conv_opts o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 };
	long before = 0;
	for (int i = 0; i < 13; i++) {
		if (i == 3)
			before = c.calls;
		tg_tensor *x = tg_randn(ctx, TG_F32, SHAPE(16, 1, 28, 28), 0, 1);
		tg_tensor *h = tg_max_pool2d(tg_relu(tg_conv2d(x, w1, b1, &o)), 2, 2, 0);
		tg_tensor *y = tg_max_pool2d(tg_relu(tg_conv2d(h, w2, b2, &o)), 2, 2, 0);
		assert_int_equal(tg_backward(tg_sum(y)), 0);
		tg_reset(ctx);
	}
	assert_ctx_ok(ctx);
	if (c.calls != before)
		fail_msg("%ld allocations through the context in 10 steady-state steps",
			 c.calls - before);
#ifdef TG_HAVE_DNNL
	/* forward of both, weight grads of both, input grad of the second,
	 * for each of the two runs of images */
	assert_int_equal(tg_conv_dnnl_made(ctx), 5 * 2);
	/* the second's three kinds on Winograd's kernels */
	assert_int_equal(tg_conv_dnnl_winograd_made(ctx),
			 k == TG_CONV_WINOGRAD && tg_conv_dnnl_winograd_offered(ctx) ? 3 * 2 : 0);
#endif
	tg_ctx_free(ctx);
}

static void steady_dnnl_steps_allocate_nothing_through_the_context(void **state)
{
	(void)state;
	steady_steps_allocate_nothing(TG_CONV_ONEDNN);
}

static void steady_winograd_steps_allocate_nothing_through_the_context(void **state)
{
	(void)state;
	steady_steps_allocate_nothing(TG_CONV_WINOGRAD);
}

/* Two contexts, each in its own thread at 2 threads, run the same
 * convolution step as one context alone: every thread's oneDNN calls use
 * its own context's engine, stream and cache. */
typedef struct job {
	uint64_t seed;
	float dw[64 * 32 * 9];
	float dx0; /* one element of dx */
	bool ok;
} job;

static void conv_step(job *j)
{
	tg_ctx *ctx = tg_ctx_new(j->seed);
	tg_set_threads(ctx, 2);
	const tg_conv_opts o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 };
	tg_tensor *w = tg_param(tg_randn(ctx, TG_F32, SHAPE(64, 32, 3, 3), 0, 0.1));
	for (int i = 0; i < 4; i++) {
		tg_zero_grads(ctx);
		tg_tensor *x = tg_set_requires_grad(tg_randn(ctx, TG_F32, SHAPE(8, 32, 14, 14), 0, 1),
						    true);
		tg_backward(tg_sum(tg_relu(tg_conv2d(x, w, NULL, &o))));
		j->dx0 = tg_ok(ctx) ? ((const float *)tg_data(tg_grad(x)))[5] : NAN;
		tg_reset(ctx);
	}
	j->ok = tg_ok(ctx);
	if (j->ok)
		memcpy(j->dw, tg_data(tg_grad(w)), sizeof j->dw);
	tg_ctx_free(ctx);
}

static void *conv_thread(void *arg)
{
	conv_step(arg);
	return NULL;
}

static void two_contexts_in_two_threads_match_one(void **state)
{
	(void)state;
	static job alone[2], together[2];
	for (int i = 0; i < 2; i++) {
		alone[i].seed = together[i].seed = 100 + (uint64_t)i;
		conv_step(&alone[i]);
	}
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, conv_thread, &together[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < 2; i++) {
		assert_true(alone[i].ok && together[i].ok);
		if (alone[i].dx0 != together[i].dx0)
			fail_msg("context %d: dx[5] is %.9g in a thread of its own, %.9g alone", i,
				 together[i].dx0, alone[i].dx0);
		for (size_t k = 0; k < LEN(alone[i].dw); k++)
			if (alone[i].dw[k] != together[i].dw[k])
				fail_msg("context %d: dw[%zu] is %.9g in a thread of its own, %.9g "
					 "alone",
					 i, k, together[i].dw[k], alone[i].dw[k]);
	}
}

/* oneDNN runs at one OpenMP thread inside each call; the calling thread's
 * own OpenMP setting is put back after it. */
/* got and want agree element by element: NaN where the other is NaN, the
 * same infinity, else within f32 rounding. */
static void expect_same_nonfinite(const char *kernel, const tg_tensor *got, const tg_tensor *want)
{
	assert_non_null(got);
	assert_non_null(want);
	assert_int_equal(tg_numel(got), tg_numel(want));
	for (size_t i = 0; i < tg_numel(want); i++) {
		double a = tg_get(got, i), b = tg_get(want, i);
		bool same = isnan(a) ? isnan(b) : isinf(a) || isinf(b) ? a == b
								: fabs(a - b) <= 1e-5 * (1 + fabs(b));
		if (!same)
			fail_msg("%s[%zu]: %g by default, %g by im2col", kernel, i, a, b);
	}
}

/* conv2d with padding 1 of x = ones (1,1,4,4) and w = [[inf, 0], [nan, 1]];
 * the weight gradient of a dout with inf, -inf and NaN on its border; the
 * input gradients of that dout and of that w. */
static void nonfinite_at_the_border(tg_ctx *c, tg_tensor *out[4])
{
	const tg_conv_opts o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 };
	double dv[25];
	for (int i = 0; i < 25; i++)
		dv[i] = 1;
	dv[0] = INFINITY;
	dv[4] = -INFINITY;
	dv[24] = NAN;
	tg_tensor *x = tg_ones(c, TG_F32, SHAPE(1, 1, 4, 4));
	tg_tensor *w = tg_from_f64(c, TG_F32, SHAPE(1, 1, 2, 2), (double[]){ INFINITY, 0, NAN, 1 });
	tg_tensor *w_ok = tg_from_f64(c, TG_F32, SHAPE(1, 1, 2, 2), (double[]){ 1, 2, 3, 4 });
	tg_tensor *d = tg_from_f64(c, TG_F32, SHAPE(1, 1, 5, 5), dv);
	out[0] = tg_conv2d(x, w, NULL, &o);
	out[1] = tg_conv2d_weight_grad(x, d, 2, 2, &o);
	out[2] = tg_conv2d_input_grad(d, w_ok, 4, 4, &o);
	out[3] = tg_conv2d_input_grad(tg_ones(c, TG_F32, SHAPE(1, 1, 5, 5)), w, 4, 4, &o);
	assert_ctx_ok(c);
}

/* A NaN or inf that meets the zero padding makes NaN there (0 x inf) by
 * default as under im2col and in PyTorch: out[0] above is NaN, not 1. */
static void nonfinite_values_at_the_padding_give_nan_as_im2col(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	tg_tensor *got[4], *want[4];
	nonfinite_at_the_border(ctx, got);
	nonfinite_at_the_border(ref, want);
	static const char *const names[4] = { "forward", "weight gradient",
					      "input gradient (dout)", "input gradient (w)" };
	assert_true(isnan(tg_get(got[0], 0)));
	assert_true(isnan(tg_get(got[1], 0)));
	for (int i = 0; i < 4; i++)
		expect_same_nonfinite(names[i], got[i], want[i]);
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* The weight gradient of x = ones (2,3,S,S) with padding 1 and a 3x3 kernel,
 * for a dout that is 1 but for one value v at flat index at. */
static tg_tensor *weight_grad_with_one(tg_ctx *c, int64_t S, size_t at, double v)
{
	const tg_conv_opts o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 };
	tg_tensor *d = tg_ones(c, TG_F32, SHAPE(2, 4, S, S));
	float *dv = tg_data_mut(d);
	if (dv)
		dv[at] = (float)v;
	return tg_conv2d_weight_grad(tg_ones(c, TG_F32, SHAPE(2, 3, S, S)), d, 3, 3, &o);
}

/* One inf or NaN anywhere in a dout of any length is seen: the first value,
 * one in the middle, the last (the tail past the widest vector), each
 * giving NaN where it meets the padding as under im2col. */
static void one_nonfinite_value_anywhere_in_dout_is_seen(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	static const int64_t sides[] = { 3, 5, 8, 13 };
	static const double values[] = { INFINITY, -INFINITY, NAN };
	for (size_t k = 0; k < LEN(sides); k++) {
		size_t n = 2 * 4 * (size_t)(sides[k] * sides[k]);
		const size_t at[] = { 0, n / 2 + 1, n - 2, n - 1 };
		for (size_t a = 0; a < LEN(at); a++)
			for (size_t v = 0; v < LEN(values); v++) {
				tg_tensor *got = weight_grad_with_one(ctx, sides[k], at[a], values[v]);
				tg_tensor *want = weight_grad_with_one(ref, sides[k], at[a], values[v]);
				assert_ctx_ok(ctx);
				assert_ctx_ok(ref);
				expect_same_nonfinite("weight gradient", got, want);
				tg_reset(ctx);
				tg_reset(ref);
			}
	}
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* conv2d's backward with a bias sums all of dout first; when the sum is
 * finite, the weight gradient skips its own look for NaN and inf. An inf
 * in dout makes the sum inf, so the weight gradient is im2col's (NaN where
 * the inf meets the padding), and a dout written after a finite sum is
 * looked at again. */
static void conv_grads_of(tg_ctx *c, double v, tg_tensor *out[2])
{
	const tg_conv_opts o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 };
	enum { N = 2 * 4 * 6 * 6 };
	float ones[N], with_v[N];
	for (int i = 0; i < N; i++)
		ones[i] = with_v[i] = 1;
	with_v[0] = with_v[N - 1] = (float)v; /* corners: they meet the padding */
	tg_tensor *x = tg_ones(c, TG_F32, SHAPE(2, 3, 6, 6));
	tg_tensor *w = tg_param(tg_ones(c, TG_F32, SHAPE(4, 3, 3, 3)));
	tg_tensor *b = tg_param(tg_zeros(c, TG_F32, SHAPE(4)));
	/* v in dout (never lent) as conv2d's backward sees it */
	tg_tensor *dy = tg_from_f32(c, TG_F32, SHAPE(2, 4, 6, 6), with_v);
	assert_int_equal(tg_backward_ex(tg_conv2d(x, w, b, &o), dy, 0), 0);
	out[0] = tg_detach(tg_grad(w));
	/* a dout of ones, summed finite by the backward, then v written in */
	tg_tensor *d1 = tg_from_f32(c, TG_F32, SHAPE(2, 4, 6, 6), ones);
	assert_int_equal(tg_backward_ex(tg_conv2d(x, w, b, &o), d1, 0), 0);
	float *d = tg_data_mut(d1);
	assert_non_null(d);
	d[0] = d[N - 1] = (float)v;
	out[1] = tg_conv2d_weight_grad(x, d1, 3, 3, &o);
	tg_zero_grads(c);
}

static void a_finite_bias_gradient_spares_the_look_and_an_inf_does_not(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *ref = im2col_ctx(SEED);
	static const double values[] = { 1.0, INFINITY, NAN };
	for (size_t v = 0; v < LEN(values); v++) {
		tg_tensor *got[2], *want[2];
		conv_grads_of(ctx, values[v], got);
		conv_grads_of(ref, values[v], want);
		assert_ctx_ok(ctx);
		assert_ctx_ok(ref);
		expect_same_nonfinite("weight gradient through conv2d", got[0], want[0]);
		expect_same_nonfinite("weight gradient after a write", got[1], want[1]);
		tg_reset(ctx);
		tg_reset(ref);
	}
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* x (2,16,8,8), w (32,16,3,3) and dout (2,32,8,8) of seed 5, with v
 * written at element `at` of the one named by which (0 x, 1 w, 2 dout)
 * through tg_assign (a new version, not lent); the three kernels at
 * padding 1, the input gradient first, so that the weight gradient
 * takes a dout already looked at. */
static void kernels_with_one(tg_ctx *c, int which, size_t at, double v, tg_tensor *out[3])
{
	const tg_conv_opts o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 };
	tg_seed(c, 5);
	tg_tensor *t[3] = { rand_f32(c, 2, 16, 8, 8), rand_f32(c, 32, 16, 3, 3),
			    rand_f32(c, 2, 32, 8, 8) };
	/* looked at once as they are, then changed */
	out[1] = tg_conv2d_input_grad(t[2], t[1], 8, 8, &o);
	size_t n = tg_numel(t[which]);
	float *vals = malloc(n * sizeof *vals);
	assert_non_null(vals);
	memcpy(vals, tg_data(t[which]), n * sizeof *vals);
	vals[at] = (float)v;
	tg_tensor *src = tg_from_f32(c, TG_F32, tg_ndim(t[which]), tg_shape(t[which]), vals);
	free(vals);
	assert_int_equal(tg_assign(t[which], src), 0);
	out[0] = tg_conv2d(t[0], t[1], NULL, &o);
	out[1] = tg_conv2d_input_grad(t[2], t[1], 8, 8, &o);
	out[2] = tg_conv2d_weight_grad(t[0], t[2], 3, 3, &o);
	assert_ctx_ok(c);
}

/* Winograd's transforms mix a tile's 36 inputs: a NaN or inf in x, w or
 * dout would reach every output of its tile, and a value near the top of
 * f32's range would overflow. Such an input (NaN, inf, 3e36) sends each
 * kernel that takes it to the direct kernels, which give im2col's values,
 * NaN and inf where im2col has them; a tensor looked at and found tame
 * before it was written is looked at again. */
static void winograd_leaves_nan_inf_and_huge_values_to_the_direct_kernels(void **state)
{
	(void)state;
	tg_ctx *ctx = winograd_ctx(), *ref = im2col_ctx(SEED);
	static const double values[] = { NAN, INFINITY, -INFINITY, 3e36, 0.5 };
	static const char *const kernels[3] = { "forward", "input gradient", "weight gradient" };
	for (int which = 0; which < 3; which++)
		for (size_t v = 0; v < LEN(values); v++) {
			size_t at = which == 1 ? 4 * 144 + 4 : 16 * 64 + 3 * 8 + 5;
			tg_tensor *got[3], *want[3];
			kernels_with_one(ctx, which, at, values[v], got);
			kernels_with_one(ref, which, at, values[v], want);
			for (int k = 0; k < 3; k++)
				expect_same_nonfinite(kernels[k], got[k], want[k]);
			tg_reset(ctx);
			tg_reset(ref);
		}
#ifdef TG_HAVE_DNNL
	if (tg_conv_dnnl_winograd_offered(ctx) && tg_conv_dnnl_winograd_made(ctx) < 1)
		fail_msg("no Winograd primitive was made for the finite values");
#endif
	tg_ctx_free(ctx);
	tg_ctx_free(ref);
}

/* Primitives made for conv2d forward and backward of x (N,C,H,W) with a
 * KxK kernel of O outputs at stride s and groups G, on a new context. */
static int primitives_for(int64_t C, int64_t H, int64_t O, int64_t K, int s, int G)
{
	tg_ctx *ctx = tg_ctx_new(SEED);
	const tg_conv_opts o = { { s, s }, { 0, 0 }, { 1, 1 }, G };
	tg_tensor *w = tg_param(tg_randn(ctx, TG_F32, SHAPE(O, C / G, K, K), 0, 0.1));
	tg_tensor *x = tg_param(tg_randn(ctx, TG_F32, SHAPE(2, C, H, H), 0, 1));
	assert_int_equal(tg_backward(tg_sum(tg_conv2d(x, w, NULL, &o))), 0);
	int made = tg_conv_dnnl_made(ctx);
	tg_ctx_free(ctx);
	return made;
}

/* A 1x1 kernel at stride 1 without padding or groups on 64 positions or
 * more runs as conv.c's GEMM per image, not on oneDNN; on 49 positions, at
 * stride 2, with groups, and any larger kernel, oneDNN takes it. Its values
 * are im2col's, which dnnl_kernels_match_im2col_over_every_option and
 * tests/ops/test_conv.c check. */
static void pointwise_convolutions_run_as_a_gemm_per_image(void **state)
{
	(void)state;
	assert_int_equal(primitives_for(8, 8, 16, 1, 1, 1), 0);
	assert_int_equal(primitives_for(3, 20, 5, 1, 1, 1), 0);
#ifdef TG_HAVE_DNNL
	assert_true(primitives_for(8, 7, 16, 1, 1, 1) > 0);
	assert_true(primitives_for(8, 16, 16, 1, 2, 1) > 0);
	assert_true(primitives_for(8, 8, 16, 1, 1, 2) > 0);
	assert_true(primitives_for(8, 10, 16, 3, 1, 1) > 0);
#endif
}

static void the_callers_openmp_setting_is_kept(void **state)
{
	(void)state;
#ifdef TG_HAVE_DNNL
	int was = omp_get_max_threads();
	omp_set_num_threads(3);
	tg_ctx *ctx = tg_ctx_new(SEED);
	const tg_conv_opts o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 };
	tg_tensor *w = tg_param(tg_randn(ctx, TG_F32, SHAPE(16, 4, 3, 3), 0, 0.1));
	tg_tensor *x = tg_randn(ctx, TG_F32, SHAPE(2, 4, 8, 8), 0, 1);
	assert_int_equal(tg_backward(tg_sum(tg_conv2d(x, w, NULL, &o))), 0);
	assert_true(tg_conv_dnnl_made(ctx) > 0);
	int now = omp_get_max_threads();
	tg_ctx_free(ctx);
	omp_set_num_threads(was);
	assert_int_equal(now, 3);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dnnl_kernels_match_im2col_over_every_option),
		cmocka_unit_test(dnnl_matches_im2col_on_the_cnn_layers),
		cmocka_unit_test(winograd_kernels_match_im2col),
		cmocka_unit_test(winograd_leaves_nan_inf_and_huge_values_to_the_direct_kernels),
		cmocka_unit_test(the_conv_kernels_are_set_per_context),
		cmocka_unit_test(one_image_splits_its_output_channels_across_threads),
		cmocka_unit_test(channel_blocks_match_im2col_at_every_side),
		cmocka_unit_test(padded_channel_blocks_match_im2col_at_every_side),
		cmocka_unit_test(batched_transposes_move_every_element),
		cmocka_unit_test(huge_strides_and_paddings_match_im2col),
		cmocka_unit_test(blocked_copies_are_shared_only_at_the_same_version),
		cmocka_unit_test(jacobian_passes_match_im2col),
		cmocka_unit_test(a_write_through_a_kept_pointer_reaches_the_next_convolution),
		cmocka_unit_test(steady_dnnl_steps_allocate_nothing_through_the_context),
		cmocka_unit_test(steady_winograd_steps_allocate_nothing_through_the_context),
		cmocka_unit_test(two_contexts_in_two_threads_match_one),
		cmocka_unit_test(the_callers_openmp_setting_is_kept),
		cmocka_unit_test(pointwise_convolutions_run_as_a_gemm_per_image),
		cmocka_unit_test(nonfinite_values_at_the_padding_give_nan_as_im2col),
		cmocka_unit_test(one_nonfinite_value_anywhere_in_dout_is_seen),
		cmocka_unit_test(a_finite_bias_gradient_spares_the_look_and_an_inf_does_not),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
