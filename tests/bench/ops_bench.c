/*
 * ops_bench.c - tapegrad's side of the op-level workloads (tests/bench/run
 * --ops): expressions that are not MLPs, each one forward pass, backward
 * pass and reset, with every parameter's gradient cleared after the step
 * as training does. ops_bench.py times PyTorch on the same expressions.
 * The o- workloads are the op table; the s- ones (--ops --sweep) a sweep
 * of expressions nobody tuned, run to look for slow paths.
 *
 *	ops_bench NAME [--iters N] [--threads T]
 *	ops_bench --list
 *
 * Prints one line "RESULT side=tapegrad workload=NAME ... sec_per_iter=S
 * loss=L": the median over 5 runs of N iterations, after 2 warm-up steps.
 * f32 unless a workload says f64; the inputs are tg_randn draws (seed 1),
 * the indices fixed multiples of 7919 modulo the table size.
 */
#include "tapegrad.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SH(...) (const int64_t[]){ __VA_ARGS__ }
#define NDIM(...) ((int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)))

enum { MAXP = 4, MAXIDX = 32768 };

typedef struct bench {
	tg_ctx *ctx;
	tg_tensor *p[MAXP]; /* parameters */
	tg_tensor *x;       /* a kept input without a gradient */
	int32_t idx[MAXIDX];
	int64_t nidx;
} bench;

typedef struct workload {
	const char *name, *what;
	void (*setup)(bench *b);
	tg_tensor *(*step)(bench *b); /* the loss */
	int iters;
} workload;

static tg_tensor *param(bench *b, int ndim, const int64_t *shape)
{
	return tg_param(tg_randn(b->ctx, TG_F32, ndim, shape, 0, 1));
}

#define P(b, ...) param(b, NDIM(__VA_ARGS__), SH(__VA_ARGS__))

static void indices(bench *b, int64_t n, int64_t range)
{
	b->nidx = n;
	for (int64_t i = 0; i < n; i++)
		b->idx[i] = (int32_t)((uint64_t)i * 7919u % (uint64_t)range);
}

static tg_tensor *idx_tensor(bench *b)
{
	return tg_from_i32(b->ctx, 1, SH(b->nidx), b->idx);
}

/* ---- the workloads -------------------------------------------------------- */

static void ce10k_setup(bench *b) { b->p[0] = P(b, 64, 10000), indices(b, 64, 10000); }
static tg_tensor *ce10k(bench *b) { return tg_cross_entropy(b->p[0], tg_labels(b->ctx, b->nidx, b->idx)); }

static void softmax_setup(bench *b) { b->p[0] = P(b, 512, 1000); }
static tg_tensor *softmax(bench *b)
{
	return tg_sum(tg_mul(tg_softmax(b->p[0]), tg_softmax(b->p[0])));
}

static void lsm_setup(bench *b) { b->p[0] = P(b, 256, 1000), indices(b, 256, 1000); }
static tg_tensor *lsm(bench *b)
{
	return tg_nll(tg_log_softmax(b->p[0]), tg_labels(b->ctx, b->nidx, b->idx));
}

static void attn_setup(bench *b)
{
	for (int i = 0; i < 3; i++)
		b->p[i] = P(b, 8, 128, 64);
}
static tg_tensor *attn(bench *b)
{
	tg_tensor *s = tg_mul_scalar(tg_bmm_t(b->p[0], false, b->p[1], true), 0.125);
	return tg_sum(tg_tanh(tg_bmm(tg_softmax(s), b->p[2])));
}

static void ln_setup(bench *b) { b->p[0] = P(b, 256, 1024), b->p[1] = P(b, 1024), b->p[2] = P(b, 1024); }
static tg_tensor *ln(bench *b)
{
	return tg_sum(tg_gelu(tg_layer_norm(b->p[0], b->p[1], b->p[2], 1e-5)));
}

static void rowstats_setup(bench *b) { b->p[0] = P(b, 512, 2048); }
static tg_tensor *rowstats(bench *b)
{
	tg_tensor *d = tg_sub(b->p[0], tg_mean_axis(b->p[0], 1, true));
	return tg_sum(tg_sqrt(tg_add_scalar(tg_mean_axis(tg_mul(d, d), 1, false), 1e-5)));
}

static void red_setup(bench *b) { b->p[0] = P(b, 4096, 1024); }
static tg_tensor *red(bench *b)
{
	tg_tensor *m = tg_mean_axis(b->p[0], 0, false);
	return tg_add(tg_sum(tg_max_axis(b->p[0], 1, false)), tg_sum(tg_mul(m, m)));
}

static void bcast_setup(bench *b) { b->p[0] = P(b, 1024, 1024), b->p[1] = P(b, 1, 1024), b->p[2] = P(b, 1024, 1); }
static tg_tensor *bcast(bench *b) { return tg_sum(tg_mul(tg_add(b->p[0], b->p[1]), b->p[2])); }

static void ew_setup(bench *b) { b->p[0] = P(b, 1 << 20), b->p[1] = P(b, 1 << 20); }
static tg_tensor *ew(bench *b)
{
	return tg_sum(tg_exp(tg_mul_scalar(tg_add(tg_mul(b->p[0], b->p[1]), b->p[0]), 0.1)));
}
static tg_tensor *powdiv(bench *b)
{
	return tg_sum(tg_div(tg_pow(b->p[0], 2), tg_add_scalar(tg_mul(b->p[1], b->p[1]), 1)));
}

static void permute_setup(bench *b) { b->p[0] = P(b, 64, 128, 256); }
static tg_tensor *permute(bench *b)
{
	static const int perm[3] = { 2, 0, 1 };
	tg_tensor *t = tg_permute(b->p[0], perm);
	return tg_sum(tg_mul(t, tg_permute(b->p[0], perm)));
}

static void transpose_setup(bench *b) { b->p[0] = P(b, 1024, 4096); }
static tg_tensor *transpose(bench *b)
{
	return tg_sum(tg_mul(tg_transpose(b->p[0]), tg_transpose(b->p[0])));
}

static void smallbmm_setup(bench *b) { b->p[0] = P(b, 4096, 8, 8), b->p[1] = P(b, 4096, 8, 8); }
static tg_tensor *smallbmm(bench *b) { return tg_sum(tg_bmm(b->p[0], b->p[1])); }

static void bn_setup(bench *b) { b->p[0] = P(b, 256, 512), b->p[1] = P(b, 512), b->p[2] = P(b, 512); }
static tg_tensor *bn(bench *b)
{
	return tg_sum(tg_tanh(tg_batch_norm(b->p[0], b->p[1], b->p[2], 1e-5, NULL, NULL)));
}

static void cat_setup(bench *b) { b->p[0] = P(b, 512, 512), b->p[1] = P(b, 512, 512); }
static tg_tensor *cat(bench *b)
{
	tg_tensor *c = tg_concat(b->ctx, 2, b->p, 1);
	return tg_sum(tg_mul(c, c));
}

static void gather_setup(bench *b) { b->p[0] = P(b, 20000, 256), indices(b, 8192, 20000); }
static tg_tensor *gather(bench *b) { return tg_sum(tg_tanh(tg_gather_rows(b->p[0], idx_tensor(b)))); }

static void emb_setup(bench *b) { b->p[0] = P(b, 50000, 128), indices(b, 4096, 50000); }
static tg_tensor *emb(bench *b) { return tg_sum(tg_tanh(tg_embedding(b->p[0], idx_tensor(b)))); }

static void conv_setup(bench *b)
{
	b->p[0] = P(b, 16, 3, 5, 5), b->p[1] = P(b, 16);
	b->x = tg_keep(tg_randn(b->ctx, TG_F32, 4, SH(32, 3, 32, 32), 0, 1));
}
static tg_tensor *conv(bench *b)
{
	tg_conv_opts o = TG_CONV_DEFAULTS;
	o.padding[0] = o.padding[1] = 2;
	return tg_sum(tg_max_pool2d(tg_relu(tg_conv2d(b->x, b->p[0], b->p[1], &o)), 2, 2, 0));
}

/* a small CNN's block: 5x5 conv, average pooling, 1x1 conv, batch 8 */
static void cnnavg_setup(bench *b)
{
	b->p[0] = P(b, 16, 3, 5, 5), b->p[1] = P(b, 16), b->p[2] = P(b, 32, 16, 1, 1);
	b->p[3] = P(b, 32);
	b->x = tg_keep(tg_randn(b->ctx, TG_F32, 4, SH(8, 3, 32, 32), 0, 1));
}
static tg_tensor *cnnavg(bench *b)
{
	tg_conv_opts o = TG_CONV_DEFAULTS;
	o.padding[0] = o.padding[1] = 2;
	tg_tensor *h = tg_avg_pool2d(tg_relu(tg_conv2d(b->x, b->p[0], b->p[1], &o)), 2, 2, 0);
	return tg_sum(tg_relu(tg_conv2d(h, b->p[2], b->p[3], NULL)));
}

static void avgpool_setup(bench *b) { b->p[0] = P(b, 32, 16, 64, 64); }
static tg_tensor *avgpool(bench *b) { return tg_sum(tg_avg_pool2d(b->p[0], 2, 2, 0)); }

static tg_tensor *vmath(bench *b) { return tg_sum(tg_mul(tg_softplus(b->p[0]), tg_silu(b->p[1]))); }
static tg_tensor *trig(bench *b) { return tg_sum(tg_mul(tg_sin(b->p[0]), tg_cos(b->p[1]))); }
static tg_tensor *powclamp(bench *b) { return tg_sum(tg_pow(tg_clamp(b->p[0], -2, 2), 3)); }

static void convs2_setup(bench *b)
{
	b->p[0] = P(b, 32, 16, 32, 32), b->p[1] = P(b, 32, 16, 3, 3), b->p[2] = P(b, 32);
}
static tg_tensor *convs2(bench *b)
{
	tg_conv_opts o = TG_CONV_DEFAULTS;
	o.stride[0] = o.stride[1] = 2;
	o.padding[0] = o.padding[1] = 1;
	return tg_sum(tg_relu(tg_conv2d(b->p[0], b->p[1], b->p[2], &o)));
}

static void summid_setup(bench *b) { b->p[0] = P(b, 64, 512, 64); }
static tg_tensor *summid(bench *b)
{
	tg_tensor *s = tg_sum_axis(b->p[0], 1, false);
	return tg_sum(tg_mul(s, s));
}

static void cols_setup(bench *b) { b->p[0] = P(b, 256, 2048), indices(b, 512, 2048); }
static tg_tensor *cols(bench *b) { return tg_sum(tg_tanh(tg_index_select(b->p[0], 1, idx_tensor(b)))); }

static void huber_setup(bench *b)
{
	b->p[0] = P(b, 512, 784);
	b->x = tg_keep(tg_randn(b->ctx, TG_F32, 2, SH(512, 784), 0, 1));
}
static tg_tensor *huber(bench *b) { return tg_huber(b->p[0], b->x, 1.0); }

/* ---- the sweep (--sweep): expressions nobody tuned, to look for slow paths ---- */

#define X0(b) (b->p[0])
#define X1(b) (b->p[1])
static void e20(bench *b) { b->p[0] = P(b, 1 << 20), b->p[1] = P(b, 1 << 20); }
static void m1k(bench *b) { b->p[0] = P(b, 1024, 1024), b->p[1] = P(b, 1024, 1024); }
static void m4k(bench *b) { b->p[0] = P(b, 4096, 1024); }
static void t3(bench *b) { b->p[0] = P(b, 64, 512, 64); }
static void tall4(bench *b) { b->p[0] = P(b, 524288, 4); }
static void pt_setup(bench *b, bool unit)
{
	b->p[0] = P(b, 512, 784);
	b->x = tg_keep(unit ? tg_rand(b->ctx, TG_F32, 2, SH(512, 784), 0, 1)
			    : tg_randn(b->ctx, TG_F32, 2, SH(512, 784), 0, 1));
}
static void pt(bench *b) { pt_setup(b, false); }
static void pt01(bench *b) { pt_setup(b, true); }
static tg_tensor *sq(tg_tensor *t) { return tg_mul(t, t); }
static tg_tensor *logsig(bench *b) { return tg_sum(tg_log(tg_sigmoid(X0(b)))); }
static tg_tensor *sqrt1(bench *b) { return tg_sum(tg_sqrt(tg_add_scalar(sq(X0(b)), 1))); }
static tg_tensor *leaky(bench *b) { return tg_sum(tg_mul(tg_leaky_relu(X0(b), 0.01), X1(b))); }
static tg_tensor *elu(bench *b) { return tg_sum(tg_elu(X0(b), 1.0)); }
static tg_tensor *tanh2(bench *b) { return tg_sum(tg_tanh(tg_tanh(X0(b)))); }
static tg_tensor *erf1(bench *b) { return tg_sum(tg_erf(X0(b))); }
static tg_tensor *log1p1(bench *b) { return tg_sum(tg_log1p(sq(X0(b)))); }
static tg_tensor *maxim(bench *b) { return tg_sum(tg_maximum(X0(b), X1(b))); }
static tg_tensor *absd(bench *b) { return tg_sum(tg_abs(tg_sub(X0(b), X1(b)))); }
static tg_tensor *sigmul(bench *b) { return tg_sum(tg_mul(tg_sigmoid(X0(b)), X1(b))); }
static tg_tensor *expm(bench *b) { return tg_sum(tg_expm1(tg_mul_scalar(X0(b), 0.5))); }
static tg_tensor *divabs(bench *b) { return tg_sum(tg_div(X0(b), tg_add_scalar(tg_abs(X1(b)), 1))); }
static tg_tensor *max0(bench *b) { return tg_sum(tg_max_axis(X0(b), 0, false)); }
static tg_tensor *sum0(bench *b) { return tg_sum(sq(tg_sum_axis(X0(b), 0, false))); }
static tg_tensor *mean2(bench *b) { return tg_sum(sq(tg_mean_axis(X0(b), 2, false))); }
static tg_tensor *max2(bench *b) { return tg_sum(tg_max_axis(X0(b), 2, false)); }
static tg_tensor *max1(bench *b) { return tg_sum(tg_max_axis(X0(b), 1, false)); }
static tg_tensor *meanall(bench *b) { return tg_mean(sq(X0(b))); }
static tg_tensor *maxall(bench *b) { return tg_max(X0(b)); }
static tg_tensor *sum1(bench *b) { return tg_sum(sq(tg_sum_axis(X0(b), 1, false))); }
static tg_tensor *mse(bench *b) { return tg_mse(X0(b), b->x); }
static tg_tensor *l1(bench *b) { return tg_l1(X0(b), b->x); }
static tg_tensor *bce(bench *b) { return tg_bce_with_logits(X0(b), b->x); }
static void narrow_setup(bench *b) { b->p[0] = P(b, 65536, 10), indices(b, 8192, 10); }
static tg_tensor *ce_narrow(bench *b)
{
	return tg_cross_entropy(tg_slice(X0(b), 0, 0, 8192), idx_tensor(b));
}
static void ce8_setup(bench *b) { b->p[0] = P(b, 8192, 8), indices(b, 8192, 8); }
static tg_tensor *ce8(bench *b) { return tg_cross_entropy(X0(b), idx_tensor(b)); }
static void tall8(bench *b) { b->p[0] = P(b, 131072, 8); }
static tg_tensor *lsm_sq(bench *b) { return tg_sum(sq(tg_log_softmax(X0(b)))); }
static void wide_setup(bench *b) { b->p[0] = P(b, 16, 65536); }
static tg_tensor *softmax_t(bench *b) { return tg_sum(sq(tg_softmax(tg_transpose(X0(b))))); }
static tg_tensor *slice1(bench *b) { return tg_sum(sq(tg_slice(X0(b), 1, 100, 800))); }
static tg_tensor *stack4(bench *b)
{
	tg_tensor *xs[4] = { X0(b), X1(b), X0(b), X1(b) };
	return tg_sum(sq(tg_stack(b->ctx, 4, xs, 1)));
}
static void row_setup(bench *b) { b->p[0] = P(b, 1024, 1024), b->p[1] = P(b, 1024); }
static tg_tensor *expand1(bench *b) { return tg_sum(tg_mul(X0(b), tg_expand(X1(b), 2, SH(1024, 1024)))); }
static void col_setup(bench *b) { b->p[0] = P(b, 1024, 1024), b->p[1] = P(b, 1024, 1); }
static tg_tensor *rowdiv(bench *b)
{
	return tg_sum(tg_tanh(tg_div(X0(b), tg_add_scalar(tg_abs(X1(b)), 1))));
}
static void nhwc_setup(bench *b) { b->p[0] = P(b, 32, 64, 32, 32); }
static tg_tensor *nhwc(bench *b) { return tg_sum(sq(tg_permute(X0(b), (const int[]){ 0, 2, 3, 1 }))); }
static void bmm_setup(bench *b) { b->p[0] = P(b, 16, 256, 256), b->p[1] = P(b, 16, 256, 256); }
static void bmm2_setup(bench *b) { b->p[0] = P(b, 65536, 2, 2), b->p[1] = P(b, 65536, 2, 2); }
static void narrow4_setup(bench *b) { b->p[0] = P(b, 128, 1024, 4); }
static void split_setup(bench *b) { b->p[0] = P(b, 256, 1024); }
static tg_tensor *split64(bench *b)
{
	tg_tensor *part[64];
	if (tg_split(X0(b), 1, 64, NULL, part))
		return NULL;
	tg_tensor *s = tg_sum(sq(part[0]));
	for (int k = 1; k < 64; k++)
		s = tg_add(s, tg_sum(sq(part[k])));
	return s;
}
static tg_tensor *bmm_tanh(bench *b) { return tg_sum(tg_tanh(tg_bmm(X0(b), X1(b)))); }
static void bmmb_setup(bench *b) { b->p[0] = P(b, 64, 128, 64), b->p[1] = P(b, 64, 256); }
static void pool_setup(bench *b) { b->p[0] = P(b, 32, 16, 64, 64); }
static tg_tensor *mpool(bench *b) { return tg_sum(tg_max_pool2d(X0(b), 2, 2, 0)); }
static tg_tensor *mpool3(bench *b) { return tg_sum(tg_max_pool2d(X0(b), 3, 2, 1)); }
static tg_tensor *apool3(bench *b) { return tg_sum(tg_avg_pool2d(X0(b), 3, 1, 1)); }
static void c1_setup(bench *b) { b->p[0] = P(b, 32, 64, 16, 16), b->p[1] = P(b, 128, 64, 1, 1), b->p[2] = P(b, 128); }
static void c3_setup(bench *b) { b->p[0] = P(b, 16, 64, 16, 16), b->p[1] = P(b, 64, 64, 3, 3), b->p[2] = P(b, 64); }
static void cdw_setup(bench *b) { b->p[0] = P(b, 16, 64, 32, 32), b->p[1] = P(b, 64, 1, 3, 3), b->p[2] = P(b, 64); }
static tg_tensor *conv_relu(bench *b, int pad, int groups)
{
	tg_conv_opts o = TG_CONV_DEFAULTS;
	o.padding[0] = o.padding[1] = pad;
	o.groups = groups;
	return tg_sum(tg_relu(tg_conv2d(X0(b), X1(b), b->p[2], &o)));
}
static tg_tensor *conv1x1(bench *b) { return conv_relu(b, 0, 1); }
static tg_tensor *conv3(bench *b) { return conv_relu(b, 1, 1); }
static tg_tensor *convdw(bench *b) { return conv_relu(b, 1, 64); }
static void lnn_setup(bench *b) { b->p[0] = P(b, 4096, 64), b->p[1] = P(b, 64), b->p[2] = P(b, 64); }
static void bn2d_setup(bench *b) { b->p[0] = P(b, 32, 64, 32, 32), b->p[1] = P(b, 64), b->p[2] = P(b, 64); }
static tg_tensor *bn2d(bench *b) { return tg_sum(tg_relu(tg_batch_norm(X0(b), X1(b), b->p[2], 1e-5, NULL, NULL))); }
static tg_tensor *ln_narrow(bench *b) { return tg_sum(tg_tanh(tg_layer_norm(X0(b), X1(b), b->p[2], 1e-5))); }
static void tiny_setup(bench *b) { b->p[0] = P(b, 32, 16), b->p[1] = P(b, 16, 16), b->p[2] = P(b, 16); }
static tg_tensor *tiny(bench *b) { return tg_sum(tg_tanh(tg_addmm(X0(b), X1(b), b->p[2]))); }
static void where_setup(bench *b)
{
	e20(b);
	b->x = tg_keep(tg_rand(b->ctx, TG_F32, 1, SH(1 << 20), 0, 1));
}
static tg_tensor *where1(bench *b) { return tg_sum(tg_where(b->x, X0(b), sq(X1(b)))); }
static tg_tensor *minmax(bench *b)
{
	return tg_sum(tg_minimum(tg_maximum(X0(b), X1(b)), tg_mul_scalar(X0(b), 2)));
}
static void pick_setup(bench *b) { b->p[0] = P(b, 8192, 100), indices(b, 8192, 100); }
static tg_tensor *pick(bench *b) { return tg_sum(tg_pick(tg_log_softmax(X0(b)), idx_tensor(b))); }
static void mm_setup(bench *b) { b->p[0] = P(b, 256, 512), b->p[1] = P(b, 512, 256); }
static tg_tensor *mm(bench *b) { return tg_sum(tg_sigmoid(tg_matmul(X0(b), X1(b)))); }
static tg_tensor *powh(bench *b) { return tg_sum(tg_pow(tg_add_scalar(tg_abs(X0(b)), 1), 1.5)); }
static tg_tensor *sincos(bench *b) { return tg_sum(tg_sin(tg_cos(X0(b)))); }
static tg_tensor *param64(bench *b, int ndim, const int64_t *shape)
{
	return tg_param(tg_randn(b->ctx, TG_F64, ndim, shape, 0, 1));
}
static void tn_setup(bench *b) { b->p[0] = P(b, 512, 256), b->p[1] = P(b, 512, 256); }
static tg_tensor *mm_tn(bench *b) { return tg_sum(tg_sigmoid(tg_matmul(tg_transpose(X0(b)), X1(b)))); }
static void outer_setup(bench *b) { b->p[0] = P(b, 1024, 1), b->p[1] = P(b, 1, 1024); }
static tg_tensor *outer(bench *b) { return tg_sum(tg_tanh(tg_mul(X0(b), X1(b)))); }
static void affine4d_setup(bench *b)
{
	b->p[0] = P(b, 32, 64, 32, 32), b->p[1] = P(b, 1, 64, 1, 1), b->p[2] = P(b, 1, 64, 1, 1);
}
static tg_tensor *affine4d(bench *b) { return tg_sum(tg_relu(tg_add(tg_mul(X0(b), X1(b)), b->p[2]))); }
static tg_tensor *cat0(bench *b)
{
	tg_tensor *xs[2] = { X0(b), X1(b) };
	return tg_sum(sq(tg_concat(b->ctx, 2, xs, 0)));
}
static void lnw_setup(bench *b) { b->p[0] = P(b, 64, 4096), b->p[1] = P(b, 4096), b->p[2] = P(b, 4096); }
static void img_setup(bench *b) { b->p[0] = P(b, 32, 64, 32, 32); }
static tg_tensor *sumto4d(bench *b) { return tg_sum(sq(tg_sum_to(X0(b), 4, SH(1, 64, 1, 1)))); }
static void tallmm_setup(bench *b) { b->p[0] = P(b, 65536, 4), b->p[1] = P(b, 4, 16); }
static tg_tensor *tallmm(bench *b) { return tg_sum(tg_tanh(tg_matmul(X0(b), X1(b)))); }
static void gemv_setup(bench *b) { b->p[0] = P(b, 4096, 256), b->p[1] = P(b, 256, 1); }
static tg_tensor *gemv(bench *b) { return tg_sum(tg_sigmoid(tg_matmul(X0(b), X1(b)))); }
static tg_tensor *center(bench *b)
{
	return tg_sum(sq(tg_sub(X0(b), tg_mean_axis(X0(b), 0, true))));
}
/* logsumexp along the rows by hand, the max detached */
static tg_tensor *lse(bench *b)
{
	tg_tensor *m = tg_detach(tg_max_axis(X0(b), 1, true));
	return tg_sum(tg_add(tg_log(tg_sum_axis(tg_exp(tg_sub(X0(b), m)), 1, true)), m));
}
static tg_tensor *lse_op(bench *b) { return tg_sum(tg_logsumexp(X0(b), 1, false)); }
static void m3_setup(bench *b) { b->p[0] = P(b, 64, 128, 128); }
/* softmax along the middle axis */
static tg_tensor *smmid(bench *b) { return tg_sum(sq(tg_softmax_axis(X0(b), 1))); }
static void e20x3(bench *b) { b->p[0] = P(b, 1 << 20), b->p[1] = P(b, 1 << 20), b->p[2] = P(b, 1 << 20); }
/* the Gaussian negative log-likelihood of t, mean mu and log-deviation s */
static tg_tensor *gauss(bench *b)
{
	tg_tensor *z = tg_mul(tg_sub(b->p[2], X0(b)), tg_exp(tg_neg(X1(b))));
	return tg_mean(tg_add(tg_mul_scalar(sq(z), 0.5), X1(b)));
}
/* concat, stack and split, each part used */
static tg_tensor *catsplit(bench *b)
{
	tg_tensor *xs[2] = { X0(b), X1(b) }, *ys[2] = { X0(b), tg_tanh(X1(b)) }, *part[4];
	tg_tensor *c = tg_concat(b->ctx, 2, xs, 1);
	if (tg_split(c, 1, 4, NULL, part))
		return NULL;
	tg_tensor *acc = tg_sum(sq(tg_stack(b->ctx, 2, ys, 0)));
	for (int k = 0; k < 4; k++)
		acc = tg_add(acc, tg_sum(tg_mul_scalar(tg_tanh(part[k]), k + 1.0)));
	return acc;
}
static tg_tensor *powmse(bench *b) { return tg_mean(tg_pow(tg_sub(X0(b), b->x), 2)); }
static void e20_64(bench *b)
{
	b->p[0] = param64(b, 1, SH(1 << 20)), b->p[1] = param64(b, 1, SH(1 << 20));
}
static tg_tensor *tanhmul(bench *b) { return tg_sum(tg_mul(tg_tanh(X0(b)), X1(b))); }
static void mm64_setup(bench *b) { b->p[0] = param64(b, 2, SH(256, 512)), b->p[1] = param64(b, 2, SH(512, 256)); }
static void seg_setup(bench *b) { b->p[0] = P(b, 8, 21, 64, 64), indices(b, 8 * 64 * 64, 21); }
/* a segmentation's loss: logits (N,C,H,W), labels (N,H,W) */
static tg_tensor *seg(bench *b)
{
	return tg_cross_entropy(X0(b), tg_from_i32(b->ctx, 3, SH(8, 64, 64), b->idx));
}
/* the same through nll of log_softmax along the classes */
static tg_tensor *seg_nll(bench *b)
{
	return tg_nll(tg_log_softmax_axis(X0(b), 1), tg_from_i32(b->ctx, 3, SH(8, 64, 64), b->idx));
}
static void pool64_setup(bench *b) { b->p[0] = param64(b, 4, SH(32, 8, 28, 28)); }
static tg_tensor *relupool(bench *b) { return tg_sum(tg_max_pool2d(tg_relu(X0(b)), 2, 2, 0)); }

/* ---- the sweep's second part: f64, reductions along each axis of 3-D and
 * 4-D tensors, broadcasting patterns, small and large tensors ---- */

static void m4k64(bench *b) { b->p[0] = param64(b, 2, SH(4096, 1024)); }
static void t3_64(bench *b) { b->p[0] = param64(b, 3, SH(64, 512, 64)); }
static void rows64(bench *b) { b->p[0] = param64(b, 2, SH(512, 2048)); }
static void bcast64_setup(bench *b)
{
	b->p[0] = param64(b, 2, SH(1024, 1024)), b->p[1] = param64(b, 2, SH(1, 1024));
	b->p[2] = param64(b, 2, SH(1024, 1));
}
static tg_tensor *sum0x(bench *b) { return tg_sum(sq(tg_sum_axis(X0(b), 0, false))); }
static tg_tensor *sum1x(bench *b) { return tg_sum(sq(tg_sum_axis(X0(b), 1, false))); }
static tg_tensor *sum2x(bench *b) { return tg_sum(sq(tg_sum_axis(X0(b), 2, false))); }
static tg_tensor *sum3x(bench *b) { return tg_sum(sq(tg_sum_axis(X0(b), 3, false))); }
static tg_tensor *mean0x(bench *b) { return tg_sum(sq(tg_mean_axis(X0(b), 0, false))); }
static tg_tensor *max0x(bench *b) { return tg_sum(tg_max_axis(X0(b), 0, false)); }
static tg_tensor *max3x(bench *b) { return tg_sum(tg_max_axis(X0(b), 3, false)); }
/* the variance along axis a by hand, each row's then summed */
static tg_tensor *var_axis(tg_tensor *x, int a)
{
	tg_tensor *d = tg_sub(x, tg_mean_axis(x, a, true));
	return tg_mean_axis(tg_mul(d, d), a, false);
}
static tg_tensor *std_last(bench *b) { return tg_sum(tg_sqrt(tg_add_scalar(var_axis(X0(b), -1), 1e-5))); }
static tg_tensor *var0(bench *b) { return tg_sum(var_axis(X0(b), 0)); }
/* a channel's standard deviation over (N,H,W) by hand, as batch norm's */
static tg_tensor *std_chan(bench *b)
{
	const int64_t *s = tg_shape(X0(b));
	double n = (double)(s[0] * s[2] * s[3]);
	const int64_t c[4] = { 1, s[1], 1, 1 };
	tg_tensor *d = tg_sub(X0(b), tg_mul_scalar(tg_sum_to(X0(b), 4, c), 1 / n));
	tg_tensor *v = tg_mul_scalar(tg_sum_to(tg_mul(d, d), 4, c), 1 / n);
	return tg_sum(tg_sqrt(tg_add_scalar(v, 1e-5)));
}
static void bc3_setup(bench *b) { b->p[0] = P(b, 32, 1, 256), b->p[1] = P(b, 1, 128, 1); }
static tg_tensor *bcsq(bench *b) { return tg_sum(sq(tg_add(X0(b), X1(b)))); }
static void chw_setup(bench *b) { b->p[0] = P(b, 32, 64, 32, 32), b->p[1] = P(b, 64, 1, 1); }
static tg_tensor *chw(bench *b) { return tg_sum(sq(tg_sub(X0(b), X1(b)))); }
static void mid_setup(bench *b) { b->p[0] = P(b, 64, 512, 64), b->p[1] = P(b, 64, 1, 64); }
static tg_tensor *bcmul(bench *b) { return tg_sum(tg_tanh(tg_mul(X0(b), X1(b)))); }
static void sc_setup(bench *b)
{
	b->p[0] = P(b, 1024, 1024), b->p[1] = P(b, 1, 1), b->p[2] = P(b, 1, 1);
}
static tg_tensor *scal(bench *b) { return tg_sum(sq(tg_add(tg_mul(X0(b), X1(b)), b->p[2]))); }
static tg_tensor *clampmul(bench *b) { return tg_sum(tg_mul(tg_clamp(X0(b), -1, 1), X1(b))); }
static tg_tensor *absmean(bench *b) { return tg_mean(tg_abs(X0(b))); }
/* a mask true (nonzero) at about half the elements, at random */
static tg_tensor *half_mask(bench *b, tg_dtype dt, int ndim, const int64_t *shape)
{
	return tg_keep(tg_relu(tg_add_scalar(tg_rand(b->ctx, dt, ndim, shape, 0, 1), -0.5)));
}
static void where_bc_setup(bench *b)
{
	b->p[0] = P(b, 1024, 1024), b->p[1] = P(b, 1, 1024);
	b->x = half_mask(b, TG_F32, 2, SH(1024, 1));
}
static tg_tensor *where_sq(bench *b) { return tg_sum(tg_where(b->x, X0(b), sq(X1(b)))); }
static void where64_setup(bench *b)
{
	e20_64(b);
	b->x = half_mask(b, TG_F64, 1, SH(1 << 20));
}
static void e7(bench *b) { b->p[0] = P(b, 128), b->p[1] = P(b, 128); }
static void e10(bench *b) { b->p[0] = P(b, 1024), b->p[1] = P(b, 1024); }
static void e13(bench *b) { b->p[0] = P(b, 8192), b->p[1] = P(b, 8192); }
static void sm_red_setup(bench *b) { b->p[0] = P(b, 32, 32); }
static void sm_bc_setup(bench *b) { b->p[0] = P(b, 64, 64), b->p[1] = P(b, 1, 64), b->p[2] = P(b, 64, 1); }
static void sm_rows(bench *b) { b->p[0] = P(b, 16, 256); }
static void e22(bench *b) { b->p[0] = P(b, 1 << 22), b->p[1] = P(b, 1 << 22); }
static void e23(bench *b) { b->p[0] = P(b, 1 << 23); }
static void big_bc_setup(bench *b) { b->p[0] = P(b, 2048, 2048), b->p[1] = P(b, 1, 2048), b->p[2] = P(b, 2048, 1); }
static void big_rows(bench *b) { b->p[0] = P(b, 2048, 2048); }

static const workload WORKLOADS[] = {
	{ "o-ce10k", "cross_entropy (64,10000)", ce10k_setup, ce10k, 30 },
	{ "o-softmax", "sum(softmax(x) * softmax(x)), x (512,1000)", softmax_setup, softmax, 30 },
	{ "o-lsm-nll", "nll(log_softmax(x)), x (256,1000)", lsm_setup, lsm, 50 },
	{ "o-attn", "sum(tanh(softmax(q k^T / 8) v)), q k v (8,128,64)", attn_setup, attn, 50 },
	{ "o-layernorm", "sum(gelu(layer_norm(x))), x (256,1024)", ln_setup, ln, 30 },
	{ "o-rowstats", "sum(sqrt(mean((x - mean(x,1))^2, 1) + eps)), x (512,2048)",
	  rowstats_setup, rowstats, 20 },
	{ "o-reduce", "sum(max_axis(x,1)) + sum(mean_axis(x,0)^2), x (4096,1024)", red_setup, red,
	  10 },
	{ "o-bcast", "sum((a + b) * c), a (1024,1024), b (1,1024), c (1024,1)", bcast_setup, bcast,
	  30 },
	{ "o-elementwise", "sum(exp((x y + x) / 10)), x y (2^20)", ew_setup, ew, 20 },
	{ "o-pow", "sum(x^2 / (y y + 1)), x y (2^20)", ew_setup, powdiv, 20 },
	{ "o-permute", "sum(permute(x) * permute(x)), x (64,128,256) to (256,64,128)",
	  permute_setup, permute, 10 },
	{ "o-transpose", "sum(x^T * x^T), x (1024,4096)", transpose_setup, transpose, 10 },
	{ "o-bmm-small", "sum(bmm(a, b)), a b (4096,8,8)", smallbmm_setup, smallbmm, 30 },
	{ "o-batchnorm", "sum(tanh(batch_norm(x))), x (256,512)", bn_setup, bn, 50 },
	{ "o-concat", "sum(c * c), c = concat(a, b, axis 1), a b (512,512)", cat_setup, cat, 30 },
	{ "o-gather", "sum(tanh(gather_rows(t, 8192 rows))), t (20000,256)", gather_setup, gather,
	  10 },
	{ "o-embedding", "sum(tanh(embedding(t, 4096 indices))), t (50000,128)", emb_setup, emb,
	  20 },
	{ "o-conv", "sum(max_pool2d(relu(conv2d(x, w 16x3x5x5, pad 2)))), x (32,3,32,32)",
	  conv_setup, conv, 20 },
	{ "o-avgpool", "sum(avg_pool2d(x, 2)), x (32,16,64,64)", avgpool_setup, avgpool, 10 },
	{ "o-cnn-avg",
	  "sum(relu(conv2d(avg_pool2d(relu(conv2d(x, w 16x3x5x5, pad 2)), 2), w 32x16x1x1))), "
	  "x (8,3,32,32)",
	  cnnavg_setup, cnnavg, 100 },
	{ "o-vmath", "sum(softplus(x) * silu(y)), x y (2^20)", ew_setup, vmath, 20 },
	{ "o-trig", "sum(sin(x) * cos(y)), x y (2^20)", ew_setup, trig, 20 },
	{ "o-powclamp", "sum(clamp(x, -2, 2)^3), x (2^20)", ew_setup, powclamp, 20 },
	{ "o-conv-s2", "sum(relu(conv2d(x, w 32x16x3x3, stride 2, pad 1))), x (32,16,32,32)",
	  convs2_setup, convs2, 20 },
	{ "o-sum-mid", "sum(sum_axis(x, 1)^2), x (64,512,64)", summid_setup, summid, 20 },
	{ "o-cols", "sum(tanh(index_select(x, 1, 512 of 2048))), x (256,2048)", cols_setup, cols,
	  30 },
	{ "o-huber", "huber(p, t, 1), p t (512,784)", huber_setup, huber, 30 },
	/* the sweep; x y (2^20) unless said */
	{ "s-logsig", "sum(log(sigmoid(x)))", e20, logsig, 20 },
	{ "s-sqrt", "sum(sqrt(x x + 1))", e20, sqrt1, 20 },
	{ "s-leaky", "sum(leaky_relu(x, 0.01) y)", e20, leaky, 20 },
	{ "s-elu", "sum(elu(x))", e20, elu, 20 },
	{ "s-tanh2", "sum(tanh(tanh(x)))", e20, tanh2, 20 },
	{ "s-erf", "sum(erf(x))", e20, erf1, 20 },
	{ "s-log1p", "sum(log1p(x x))", e20, log1p1, 20 },
	{ "s-maximum", "sum(maximum(x, y))", e20, maxim, 20 },
	{ "s-absd", "sum(|x - y|)", e20, absd, 20 },
	{ "s-sigmul", "sum(sigmoid(x) y)", e20, sigmul, 20 },
	{ "s-expm1", "sum(expm1(x / 2))", e20, expm, 20 },
	{ "s-div", "sum(x / (|y| + 1))", e20, divabs, 20 },
	{ "s-max0", "sum(max_axis(x, 0)), x (4096,1024)", m4k, max0, 10 },
	{ "s-sum0", "sum(sum_axis(x, 0)^2), x (4096,1024)", m4k, sum0, 10 },
	{ "s-sum-last4", "sum(sum_axis(x, 1)^2), x (524288,4)", tall4, sum1, 10 },
	{ "s-mean2", "sum(mean_axis(x, 2)^2), x (64,512,64)", t3, mean2, 10 },
	{ "s-max2", "sum(max_axis(x, 2)), x (64,512,64)", t3, max2, 10 },
	{ "s-max1", "sum(max_axis(x, 1)), x (64,512,64)", t3, max1, 10 },
	{ "s-meanall", "mean(x x), x (4096,1024)", m4k, meanall, 10 },
	{ "s-maxall", "max(x), x (4096,1024)", m4k, maxall, 10 },
	{ "s-mse", "mse(p, t), (512,784)", pt, mse, 30 },
	{ "s-l1", "l1(p, t), (512,784)", pt, l1, 30 },
	{ "s-bce", "bce_with_logits(p, t), (512,784), t in [0,1)", pt01, bce, 30 },
	{ "s-ce-narrow", "cross_entropy of 8192 rows of x (65536,10)", narrow_setup, ce_narrow, 30 },
	{ "s-lsm-narrow", "sum(log_softmax(x)^2), x (65536,10)", narrow_setup, lsm_sq, 10 },
	{ "s-ce8", "cross_entropy of x (8192,8)", ce8_setup, ce8, 30 },
	{ "s-lsm8", "sum(log_softmax(x)^2), x (131072,8)", tall8, lsm_sq, 10 },
	{ "s-lsm-wide", "sum(log_softmax(x)^2), x (16,65536)", wide_setup, lsm_sq, 10 },
	{ "s-softmax-t", "sum(softmax(x^T)^2), x (1024,1024)", m1k, softmax_t, 10 },
	{ "s-slice", "sum(x[:, 100:900]^2), x (1024,1024)", m1k, slice1, 20 },
	{ "s-stack", "sum(stack(x, y, x, y, axis 1)^2), x y (1024,1024)", m1k, stack4, 10 },
	{ "s-expand", "sum(x expand(y)), x (1024,1024), y (1024)", row_setup, expand1, 20 },
	{ "s-rowdiv", "sum(tanh(x / (|y| + 1))), x (1024,1024), y (1024,1)", col_setup, rowdiv, 20 },
	{ "s-nhwc", "sum(permute(x, 0 2 3 1)^2), x (32,64,32,32)", nhwc_setup, nhwc, 5 },
	{ "s-bmm", "sum(tanh(bmm(a, b))), a b (16,256,256)", bmm_setup, bmm_tanh, 5 },
	{ "s-bmm-bcast", "sum(tanh(bmm(a, b))), a (64,128,64), b (64,256)", bmmb_setup, bmm_tanh, 10 },
	{ "s-bmm2", "sum(tanh(bmm(a, b))), a b (65536,2,2)", bmm2_setup, bmm_tanh, 10 },
	{ "s-max1-w4", "sum(max_axis(x, 1)), x (128,1024,4)", narrow4_setup, max1, 10 },
	{ "s-split64", "sum of sum(p^2) over the 64 parts p of split(x, axis 1), x (256,1024)",
	  split_setup, split64, 20 },
	{ "s-maxpool", "sum(max_pool2d(x, 2)), x (32,16,64,64)", pool_setup, mpool, 10 },
	{ "s-maxpool3", "sum(max_pool2d(x, 3, stride 2, pad 1)), x (32,16,64,64)", pool_setup, mpool3, 10 },
	{ "s-avgpool3", "sum(avg_pool2d(x, 3, stride 1, pad 1)), x (32,16,64,64)", pool_setup, apool3, 10 },
	{ "s-conv1x1", "sum(relu(conv2d(x, w 128x64x1x1))), x (32,64,16,16)", c1_setup, conv1x1, 10 },
	{ "s-conv3", "sum(relu(conv2d(x, w 64x64x3x3, pad 1))), x (16,64,16,16)", c3_setup, conv3, 5 },
	{ "s-convdw", "sum(relu(conv2d(x, w 64x1x3x3, pad 1, groups 64))), x (16,64,32,32)",
	  cdw_setup, convdw, 5 },
	{ "s-ln-narrow", "sum(tanh(layer_norm(x))), x (4096,64)", lnn_setup, ln_narrow, 20 },
	{ "s-bn2d", "sum(relu(batch_norm(x))) per channel, x (32,64,32,32)", bn2d_setup, bn2d, 5 },
	{ "s-tiny", "sum(tanh(addmm(a, w, b))), a (32,16), w (16,16)", tiny_setup, tiny, 2000 },
	{ "s-where", "sum(where(m, x, y y)), m in [0,1)", where_setup, where1, 20 },
	{ "s-minmax", "sum(minimum(maximum(x, y), 2 x))", e20, minmax, 20 },
	{ "s-pick", "sum(pick(log_softmax(x), idx)), x (8192,100)", pick_setup, pick, 20 },
	{ "s-mm", "sum(sigmoid(a @ b)), a (256,512), b (512,256)", mm_setup, mm, 20 },
	{ "s-powh", "sum((|x| + 1)^1.5)", e20, powh, 20 },
	{ "s-sincos", "sum(sin(cos(x)))", e20, sincos, 20 },
	{ "s-mm-tn", "sum(sigmoid(transpose(a) @ b)), a b (512,256)", tn_setup, mm_tn, 20 },
	{ "s-outer", "sum(tanh(x y)), x (1024,1), y (1,1024)", outer_setup, outer, 20 },
	{ "s-affine4d", "sum(relu(x g + b)), x (32,64,32,32), g b (1,64,1,1)", affine4d_setup, affine4d, 5 },
	{ "s-cat0", "sum(concat(x, y, axis 0)^2), x y (1024,1024)", m1k, cat0, 10 },
	{ "s-ln-wide", "sum(tanh(layer_norm(x))), x (64,4096)", lnw_setup, ln_narrow, 20 },
	{ "s-sumto4d", "sum(sum_to(x, (1,64,1,1))^2), x (32,64,32,32)", img_setup, sumto4d, 10 },
	{ "s-tallmm", "sum(tanh(x @ w)), x (65536,4), w (4,16)", tallmm_setup, tallmm, 10 },
	{ "s-gemv", "sum(sigmoid(x @ w)), x (4096,256), w (256,1)", gemv_setup, gemv, 30 },
	{ "s-center", "sum((x - mean_axis(x, 0))^2), x (4096,1024)", m4k, center, 10 },
	{ "s-powmse", "mean((p - t)^2) with pow, (512,784)", pt, powmse, 30 },
	{ "s-tanhmul64", "sum(tanh(x) y), x y (2^20) f64", e20_64, tanhmul, 20 },
	{ "s-mm64", "sum(sigmoid(a @ b)), a (256,512), b (512,256) f64", mm64_setup, mm, 10 },
	{ "s-lse", "sum(logsumexp(x, axis 1)) by hand, x (1024,1024)", m1k, lse, 20 },
	{ "s-lse-op", "sum(logsumexp(x, axis 1)), x (1024,1024)", m1k, lse_op, 20 },
	{ "s-smmid", "sum(softmax(x, axis 1)^2), x (64,128,128)", m3_setup, smmid, 10 },
	{ "s-gauss", "mean(((t - mu) e^-s)^2 / 2 + s), t mu s (2^20)", e20x3, gauss, 20 },
	{ "s-catsplit", "concat, stack, split of x y (1024,1024), tanh of the parts", m1k, catsplit, 10 },
	{ "s-seg", "cross_entropy of x (8,21,64,64), labels (8,64,64)", seg_setup, seg, 10 },
	{ "s-seg-nll", "nll(log_softmax(x, axis 1)), x (8,21,64,64), labels (8,64,64)", seg_setup,
	  seg_nll, 10 },
	{ "s-relupool64", "sum(max_pool2d(relu(x), 2)), x (32,8,28,28) f64", pool64_setup, relupool, 20 },
	{ "s-ew64", "sum(exp((x y + x) / 10)), x y (2^20) f64", e20_64, ew, 20 },
	{ "s-pow64", "sum(x^2 / (y y + 1)), x y (2^20) f64", e20_64, powdiv, 20 },
	{ "s-div64", "sum(x / (|y| + 1)), x y (2^20) f64", e20_64, divabs, 20 },
	{ "s-sum0-64", "sum(sum_axis(x, 0)^2), x (4096,1024) f64", m4k64, sum0x, 10 },
	{ "s-sum1-64", "sum(sum_axis(x, 1)^2), x (4096,1024) f64", m4k64, sum1x, 10 },
	{ "s-max1-64", "sum(max_axis(x, 1)), x (64,512,64) f64", t3_64, max1, 10 },
	{ "s-meanall64", "mean(x x), x (4096,1024) f64", m4k64, meanall, 10 },
	{ "s-std64", "sum(sqrt(var(x, axis 1) + eps)) by hand, x (512,2048) f64", rows64, std_last, 20 },
	{ "s-bcast64", "sum((a + b) * c), a (1024,1024), b (1,1024), c (1024,1) f64", bcast64_setup,
	  bcast, 30 },
	{ "s-where64", "sum(where(m, x, y y)), m half true, x y (2^20) f64", where64_setup, where_sq, 20 },
	{ "s-sum3d0", "sum(sum_axis(x, 0)^2), x (64,512,64)", t3, sum0x, 10 },
	{ "s-mean3d0", "sum(mean_axis(x, 0)^2), x (64,512,64)", t3, mean0x, 10 },
	{ "s-max3d0", "sum(max_axis(x, 0)), x (64,512,64)", t3, max0x, 10 },
	{ "s-sum4d0", "sum(sum_axis(x, 0)^2), x (32,64,32,32)", img_setup, sum0x, 10 },
	{ "s-sum4d1", "sum(sum_axis(x, 1)^2), x (32,64,32,32)", img_setup, sum1x, 10 },
	{ "s-sum4d2", "sum(sum_axis(x, 2)^2), x (32,64,32,32)", img_setup, sum2x, 10 },
	{ "s-sum4d3", "sum(sum_axis(x, 3)^2), x (32,64,32,32)", img_setup, sum3x, 10 },
	{ "s-max4d1", "sum(max_axis(x, 1)), x (32,64,32,32)", img_setup, max1, 10 },
	{ "s-max4d3", "sum(max_axis(x, 3)), x (32,64,32,32)", img_setup, max3x, 10 },
	{ "s-var0", "sum(var(x, axis 0)) by hand, x (4096,1024)", m4k, var0, 10 },
	{ "s-std-last", "sum(sqrt(var(x, axis 2) + eps)) by hand, x (64,512,64)", t3, std_last, 10 },
	{ "s-std-chan", "sum(sqrt(var(x) + eps)) per channel by hand, x (32,64,32,32)", img_setup,
	  std_chan, 5 },
	{ "s-bc3", "sum((a + b)^2), a (32,1,256), b (1,128,1)", bc3_setup, bcsq, 20 },
	{ "s-bc-chw", "sum((x - c)^2), x (32,64,32,32), c (64,1,1)", chw_setup, chw, 5 },
	{ "s-bc-mid", "sum(tanh(x y)), x (64,512,64), y (64,1,64)", mid_setup, bcmul, 10 },
	{ "s-bc-scalar", "sum((x a + b)^2), x (1024,1024), a b (1,1)", sc_setup, scal, 20 },
	{ "s-clamp", "sum(clamp(x, -1, 1) y)", e20, clampmul, 20 },
	{ "s-absmean", "mean(|x|)", e20, absmean, 20 },
	{ "s-where-bc", "sum(where(m, x, y y)), m (1024,1) half true, x (1024,1024), y (1,1024)",
	  where_bc_setup, where_sq, 20 },
	{ "s-small-ew", "sum(exp((x y + x) / 10)), x y (128)", e7, ew, 5000 },
	{ "s-small-ew1k", "sum(exp((x y + x) / 10)), x y (1024)", e10, ew, 5000 },
	{ "s-small-ew8k", "sum(exp((x y + x) / 10)), x y (8192)", e13, ew, 2000 },
	{ "s-small-div", "sum(x / (|y| + 1)), x y (1024)", e10, divabs, 5000 },
	{ "s-small-sum0", "sum(sum_axis(x, 0)^2), x (32,32)", sm_red_setup, sum0x, 5000 },
	{ "s-small-bc", "sum((a + b) * c), a (64,64), b (1,64), c (64,1)", sm_bc_setup, bcast, 5000 },
	{ "s-small-std", "sum(sqrt(var(x, axis 1) + eps)) by hand, x (16,256)", sm_rows, std_last,
	  2000 },
	{ "s-small-max", "sum(max_axis(x, 1)), x (32,32)", sm_red_setup, max1, 5000 },
	{ "s-big-ew", "sum(exp((x y + x) / 10)), x y (2^22)", e22, ew, 5 },
	{ "s-big-div", "sum(x / (|y| + 1)), x y (2^22)", e22, divabs, 5 },
	{ "s-big-meanall", "mean(x x), x (2^23)", e23, meanall, 5 },
	{ "s-big-bc", "sum((a + b) * c), a (2048,2048), b (1,2048), c (2048,1)", big_bc_setup, bcast,
	  5 },
	{ "s-big-sum0", "sum(sum_axis(x, 0)^2), x (2048,2048)", big_rows, sum0x, 5 },
	{ "s-big-max1", "sum(max_axis(x, 1)), x (2048,2048)", big_rows, max1, 5 },
};
enum { NW = sizeof WORKLOADS / sizeof WORKLOADS[0] };

/* ---- the measurement ------------------------------------------------------ */

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* One step: the loss, its backward pass, the reset and cleared gradients.
 * The loss, or NAN after an error. */
static double step(bench *b, const workload *w)
{
	tg_tensor *loss = w->step(b);
	double l = loss && !tg_backward(loss) ? tg_item(loss) : NAN;
	tg_reset(b->ctx);
	for (int i = 0; i < MAXP; i++)
		if (b->p[i])
			tg_zero_grad(b->p[i]);
	return l;
}

static const char usage[] =
	"usage: ops_bench NAME [--iters N] [--threads T] | --list\n"
	"N from 1 to 2147483647 (the workload's own count by default), T from 1 to 64 (1).\n";

/* The value of option opt, a whole number from lo to hi; -1 after saying
 * what is wrong. */
static long option(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = s ? strtol(s, &end, 10) : 0;
	if (!s || end == s || *end || errno || v < lo || v > hi) {
		fprintf(stderr, "ops_bench: %s needs a whole number from %ld to %ld%s%s%s\n%s", opt,
			lo, hi, s ? ", not '" : "", s ? s : "", s ? "'" : "", usage);
		return -1;
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--list")) {
		for (int i = 0; i < NW; i++)
			printf("%s\t%s\n", WORKLOADS[i].name, WORKLOADS[i].what);
		return 0;
	}
	const workload *w = NULL;
	for (int i = 0; i < NW; i++)
		if (!strcmp(argv[1], WORKLOADS[i].name))
			w = &WORKLOADS[i];
	if (!w) {
		fprintf(stderr, "ops_bench: unknown workload %s (ops_bench --list)\n", argv[1]);
		return 2;
	}
	int iters = w->iters, threads = 1;
	for (int i = 2; i < argc; i += 2) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		long n;
		if (!strcmp(argv[i], "--iters"))
			n = iters = (int)option(argv[i], v, 1, INT_MAX);
		else if (!strcmp(argv[i], "--threads"))
			n = threads = (int)option(argv[i], v, 1, TG_MAX_THREADS);
		else {
			fprintf(stderr, "ops_bench: unknown option %s\n%s", argv[i], usage);
			return 2;
		}
		if (n < 0)
			return 2;
	}
	bench b = { .ctx = tg_ctx_new(1) };
	if (!b.ctx)
		return 1;
	tg_set_threads(b.ctx, threads);
	w->setup(&b);
	double loss = step(&b, w);
	loss = step(&b, w);
	double t[5];
	for (int r = 0; r < 5 && !isnan(loss); r++) {
		double t0 = now();
		for (int i = 0; i < iters && !isnan(loss); i++)
			loss = step(&b, w);
		t[r] = (now() - t0) / iters;
	}
	if (isnan(loss)) {
		fprintf(stderr, "ops_bench: %s: %s\n", w->name,
			tg_ok(b.ctx) ? "the loss is NaN" : tg_error(b.ctx));
		tg_ctx_free(b.ctx);
		return 1;
	}
	qsort(t, 5, sizeof t[0], by_value);
	printf("RESULT side=tapegrad workload=%s threads=%d iters=%d sec_per_iter=%.9g loss=%.6g\n",
	       w->name, threads, iters, t[2], loss);
	tg_ctx_free(b.ctx);
	return 0;
}
