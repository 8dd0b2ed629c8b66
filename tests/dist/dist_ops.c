/*
 * dist_ops.c - the pieces of tapegrad_dist.h checked against numbers
 * computed here, on 2 ranks (mpirun -np 2; run by check_ops.sh):
 *  - tg_dist_allreduce: the value is the sum over the ranks, and its
 *    gradient the sum of the ranks' upstream gradients;
 *  - gradient buckets: with buckets of 64 bytes (most parameters alone in
 *    one, several all-reduces in flight during backward), the gradients
 *    after tg_dist_step_end equal those of one process that takes the
 *    global batch of both ranks' rows (1e-12), and all but the last
 *    bucket start during the walk; a parameter that one rank's forward
 *    skips gets the global batch's gradient there too;
 *  - a step that fails on one rank stops both, naming that rank, also
 *    when it fails before a synchronised batch norm;
 *  - synchronised batch norm over the channels of (N,C,H,W) and (N,C,L)
 *    equals one process of the global batch;
 *  - tg_dist_sum, tg_dist_agree, tg_dist_broadcast (of index tensors too);
 *  - NULL arrays, no model attached, a module of another context, MPI
 *    started again after tg_dist_free: errors, not crashes;
 *  - a decision (tg_dist_agree) on a failure one rank's context holds;
 *  - steps of few rows: a rank of none, a global batch of none;
 *  - a NaN in one rank's rows is named on every rank;
 *  - ranks whose models or tg_fit runs differ, or one that fails at an
 *    epoch's end, fail together, saying how.
 * Prints every value it compares; exits 1 on any difference.
 */
#include "tapegrad.h"
#include "tapegrad_dist.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"
#include "tapegrad_io.h"
#include "dist_hooks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int fails;
static int rank;

static void check(const char *what, double got, double want, double tol)
{
	bool ok = fabs(got - want) <= tol * (1 + fabs(want));
	if (!ok || rank == 0)
		printf("rank %d: %-40s %.17g, expected %.17g%s\n", rank, what, got, want,
		       ok ? "" : "  FAIL");
	fails += !ok;
}

/* rows of the global batch: 6 rows of 4 features, labels of 3 classes; rank r
 * has rows [3r, 3r + 3) */
static void rows(double *x, int32_t *y)
{
	for (int i = 0; i < 6; i++) {
		for (int j = 0; j < 4; j++)
			x[i * 4 + j] = sin(1.0 + i * 4 + j) * (1 + 0.1 * i);
		y[i] = (i * 7) % 3;
	}
}

/* true when the context's message holds want; prints it when not */
static bool says(tg_ctx *ctx, const char *want)
{
	bool ok = !tg_ok(ctx) && strstr(tg_error(ctx), want);
	if (!ok)
		printf("rank %d: expected an error with \"%s\", got: %s\n", rank, want,
		       tg_ok(ctx) ? "no error" : tg_error(ctx));
	return ok;
}

/* Models of other shapes on rank 1 (4-8-3 against 4-6-3), of another
 * dtype (f32 against f64), and of the same shapes but another activation
 * (tanh against relu) or a dropout layer: tg_dist_attach fails on both
 * ranks, naming the tensor, its shapes and rank 1, or both ranks'
 * architectures, and nothing hangs. */
static void unequal_models(const tg_dist_opts *o)
{
	const char *spec[2][2] = { { "4-8-3", "4-6-3" }, { "4-8-3", "4-8-3" } };
	const char *want[4] = { "parameter 0 fc1.W is f64 (4,8) on rank 0 but f64 (4,6) on rank 1",
				"parameter 0 fc1.W is f64 (4,8) on rank 0 but f32 (4,8) on rank 1",
				"the ranks' models differ: rank 0's is \"linear:4:8,relu,linear:8:3\" "
				"but rank 1's \"linear:4:8,tanh,linear:8:3\"",
				"the ranks' models differ: rank 0's is \"linear:4:8,relu,linear:8:3\" "
				"but rank 1's \"linear:4:8,relu,dropout:0.5,linear:8:3\"" };
	const char *what[4] = { "tg_dist_attach, 4-6-3 on rank 1", "tg_dist_attach, f32 on rank 1",
				"tg_dist_attach, tanh on rank 1", "tg_dist_attach, dropout on rank 1" };
	for (int k = 0; k < 4; k++) {
		tg_ctx *c = tg_ctx_new(1);
		tg_dist *d = tg_dist_new(c, NULL, NULL, o);
		tg_mlp_opts mo = tg_mlp_defaults();
		mo.dtype = k == 1 && rank == 1 ? TG_F32 : TG_F64;
		if (k == 2 && rank == 1)
			mo.act.kind = TG_ACT_TANH;
		if (k == 3 && rank == 1)
			mo.dropout = 0.5;
		tg_mlp *net = tg_mlp_new(c, spec[k == 0 ? 0 : 1][rank], &mo);
		int rc = tg_dist_attach(d, tg_mlp_module(net));
		check(what[k], rc, -1, 0);
		check("... names what differs and rank 1", says(c, want[k]), 1, 0);
		tg_mlp_free(net);
		tg_dist_free(d);
		tg_ctx_free(c);
	}
}

/* A 4-8-3 MLP in f64 with batch norm after its hidden layer. */
static tg_mlp *bn_mlp(tg_ctx *c)
{
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	mo.batchnorm = true;
	return tg_mlp_new(c, "4-8-3", &mo);
}

/* A forward that fails on rank 1 before a synchronised batch norm: rank
 * 0, waiting in the layer for rank 1's rows, learns there that rank 1
 * failed, and the ranks' collectives stay in step (a sum afterwards is
 * right). */
static void failure_before_sync_bn(const tg_dist_opts *o)
{
	tg_ctx *c = tg_ctx_new(1);
	tg_dist *d = tg_dist_new(c, NULL, NULL, o);
	tg_mlp *net = bn_mlp(c);
	tg_module *m = tg_mlp_module(net);
	if (tg_dist_attach(d, m) || tg_dist_sync_bn(d, m))
		printf("rank %d: %s\n", rank, tg_error(c));
	double xs[12], global, seed;
	for (int i = 0; i < 12; i++)
		xs[i] = sin(i + rank);
	tg_dist_step_begin(d);
	if (rank == 1)
		tg_fail(c, TG_EARG, "rank 1's forward failed here");
	tg_tensor *x = tg_from_f64(c, TG_F64, 2, (int64_t[]){ 3, 4 }, xs);
	tg_tensor *loss = tg_cross_entropy(tg_forward(m, x), tg_labels(c, 3, (int32_t[]){ 0, 1, 2 }));
	int rc = tg_dist_loss(d, loss ? tg_item(loss) : NAN, 3, !tg_ok(c), &global, &seed);
	check("tg_dist_loss, rank 1 failed before batch norm", rc, -1, 0);
	check("... names rank 1",
	      says(c, rank == 1 ? "forward failed here" : "rank 1 failed in its forward"), 1, 0);
	tg_clear_error(c);
	double v = rank + 1;
	tg_dist_sum(d, &v, 1);
	check("... and a sum afterwards (1 + 2)", v, 3, 0);
	tg_mlp_free(net);
	tg_dist_free(d);
	tg_ctx_free(c);
}

/* A backward that fails on rank 1 before it reaches a synchronised batch
 * norm (whose backward all-reduces): rank 0, waiting there, learns that
 * rank 1 failed at once, not after the timeout, and the ranks'
 * collectives stay in step. */
static void failure_before_sync_bn_backward(const tg_dist_opts *o)
{
	tg_ctx *c = tg_ctx_new(1);
	tg_dist *d = tg_dist_new(c, NULL, NULL, o);
	tg_mlp *net = bn_mlp(c);
	tg_module *m = tg_mlp_module(net);
	if (tg_dist_attach(d, m) || tg_dist_sync_bn(d, m))
		printf("rank %d: %s\n", rank, tg_error(c));
	double xs[12], global, seed;
	for (int i = 0; i < 12; i++)
		xs[i] = cos(i + rank);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	tg_dist_step_begin(d);
	tg_tensor *x = tg_from_f64(c, TG_F64, 2, (int64_t[]){ 3, 4 }, xs);
	tg_tensor *loss = tg_cross_entropy(tg_forward(m, x), tg_labels(c, 3, (int32_t[]){ 0, 1, 2 }));
	tg_dist_loss(d, loss ? tg_item(loss) : NAN, 3, !tg_ok(c), &global, &seed);
	if (rank == 1)
		tg_fail(c, TG_EARG, "rank 1's backward failed here");
	else
		tg_backward_ex(loss, tg_scalar(c, TG_F64, seed), 0);
	int rc = tg_dist_step_end(d, !tg_ok(c));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	check("tg_dist_step_end, rank 1 failed before batch norm's backward", rc, -1, 0);
	check("... names rank 1",
	      says(c, rank == 1 ? "backward failed here" : "rank 1 failed in its backward"), 1, 0);
	check("... at once (s, not the timeout)",
	      (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec) < 5, 1, 0);
	tg_clear_error(c);
	double v = rank + 1;
	tg_dist_sum(d, &v, 1);
	check("... and a sum afterwards (1 + 2)", v, 3, 0);
	tg_mlp_free(net);
	tg_dist_free(d);
	tg_ctx_free(c);
}

/* Synchronised batch norm over channels: 2 ranks of 2 samples each
 * against one process of all 4, for (N,2,2,2) images through a conv, a
 * BatchNorm2d-like bn:3 and a linear layer, and for (N,2,5) sequences
 * straight into bn:2: the loss, every gradient (1e-12) and the running
 * statistics (1e-14) are the global batch's, per channel. Then one image of 1x1 on
 * each rank trains (2 values per channel over the ranks, which a rank's
 * own statistics would refuse), and a rank whose input has the wrong
 * channels fails before the layer's collective, both ranks stopping and
 * naming it. */
static void sync_bn_over_channels(const tg_dist_opts *o)
{
	static const struct {
		const char *arch;
		int nd;
		int64_t sample[3]; /* a sample's shape */
	} cases[] = {
		{ "conv:2:3:3:1:1,bn:3,relu,flatten,linear:12:3", 3, { 2, 2, 2 } },
		{ "bn:2,flatten,linear:10:3", 2, { 2, 5 } },
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		tg_ctx *c = tg_ctx_new(5), *ref = tg_ctx_new(5);
		tg_dist *d = tg_dist_new(c, NULL, NULL, o);
		tg_mlp_opts mo = tg_mlp_defaults();
		mo.dtype = TG_F64;
		tg_module *m = tg_model_parse(c, cases[k].arch, &mo);
		tg_module *m1 = tg_model_parse(ref, cases[k].arch, &mo);
		if (!m || !m1 || tg_dist_attach(d, m) || tg_dist_sync_bn(d, m)) {
			printf("rank %d: %s %s\n", rank, tg_error(c), tg_error(ref));
			fails++;
			return;
		}
		int64_t shape[4] = { 4 }, half[4] = { 2 };
		size_t per = 1;
		for (int i = 0; i < cases[k].nd; i++) {
			shape[1 + i] = half[1 + i] = cases[k].sample[i];
			per *= (size_t)cases[k].sample[i];
		}
		double xs[4 * 8 * 5];
		for (size_t i = 0; i < 4 * per; i++)
			xs[i] = sin(0.7 * (double)i) * (1 + 0.2 * (double)(i % 3)) + 0.1 * (double)i;
		int32_t ys[4] = { 0, 2, 1, 2 };
		tg_tensor *loss1 = tg_cross_entropy(
			tg_forward(m1, tg_from_f64(ref, TG_F64, 1 + cases[k].nd, shape, xs)),
			tg_labels(ref, 4, ys));
		tg_backward(loss1);
		tg_dist_step_begin(d);
		tg_tensor *loss = tg_cross_entropy(
			tg_forward(m, tg_from_f64(c, TG_F64, 1 + cases[k].nd, half,
						  xs + 2 * per * (size_t)rank)),
			tg_labels(c, 2, ys + 2 * rank));
		double global, seed;
		tg_dist_loss(d, loss ? tg_item(loss) : NAN, 2, !tg_ok(c), &global, &seed);
		char what[96];
		snprintf(what, sizeof what, "%s: the global batch's loss", cases[k].arch);
		check(what, global, tg_item(loss1), 1e-14);
		tg_backward_ex(loss, tg_scalar(c, TG_F64, seed), 0);
		tg_dist_step_end(d, false);
		tg_tensor *p[8], *p1[8];
		size_t nt = tg_module_tensors(m, p, 8);
		tg_module_tensors(m1, p1, 8);
		for (size_t i = 0; i < nt; i++) {
			bool state = !tg_requires_grad(p[i]);
			const tg_tensor *a = state ? p[i] : tg_grad(p[i]);
			const tg_tensor *b = state ? p1[i] : tg_grad(p1[i]);
			double worst = 0, mag = 0;
			for (size_t j = 0; a && b && j < tg_numel(p[i]); j++) {
				worst = fmax(worst, fabs(tg_get(a, j) - tg_get(b, j)));
				mag = fmax(mag, fabs(tg_get(b, j)));
			}
			/* the conv's bias has a gradient of 0 but for rounding
			 * (batch norm takes the mean out): relative to 1 there */
			snprintf(what, sizeof what, "%s of %s: max|diff| / max(max, 1)",
				 state ? "value" : "grad", tg_name(p[i]));
			check(what, a && b ? worst / fmax(mag, 1) : 1, 0, state ? 1e-14 : 1e-12);
		}
		if (!tg_ok(c)) {
			printf("rank %d: error: %s\n", rank, tg_error(c));
			fails++;
		}
		tg_reset(c);
		tg_module_free(m);
		tg_module_free(m1);
		tg_dist_free(d);
		tg_ctx_free(c);
		tg_ctx_free(ref);
	}

	tg_ctx *c = tg_ctx_new(5);
	tg_dist *d = tg_dist_new(c, NULL, NULL, o);
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	tg_module *m = tg_model_parse(c, "bn:3,flatten,linear:3:2", &mo);
	if (tg_dist_attach(d, m) || tg_dist_sync_bn(d, m))
		printf("rank %d: %s\n", rank, tg_error(c));
	double global, seed;
	tg_dist_step_begin(d);
	tg_tensor *x = tg_from_f64(c, TG_F64, 4, (int64_t[]){ 1, 3, 1, 1 },
				   (double[]){ rank, 2.0 * rank, -1.0 * rank });
	tg_tensor *loss = tg_cross_entropy(tg_forward(m, x), tg_labels(c, 1, (int32_t[]){ 1 }));
	int rc = tg_dist_loss(d, loss ? tg_item(loss) : NAN, 1, !tg_ok(c), &global, &seed);
	check("one 1x1 image on each rank trains", rc, 0, 0);
	if (rc == 0) {
		tg_backward_ex(loss, tg_scalar(c, TG_F64, seed), 0);
		rc = tg_dist_step_end(d, false);
	}
	check("... and its step ends", rc, 0, 0);
	tg_reset(c);
	tg_dist_step_begin(d);
	x = tg_ones(c, TG_F64, 4, (int64_t[]){ 2, 3 + rank, 2, 2 });
	loss = tg_cross_entropy(tg_forward(m, x), tg_labels(c, 2, (int32_t[]){ 0, 1 }));
	rc = tg_dist_loss(d, loss ? tg_item(loss) : NAN, 2, !tg_ok(c), &global, &seed);
	check("(2,4,2,2) into bn:3 on rank 1", rc, -1, 0);
	check("... names it", says(c, rank ? "input (2,4,2,2) is not (N,3) or (N,3,...)"
					   : "rank 1 failed in its forward"), 1, 0);
	tg_clear_error(c);
	double v = rank + 1;
	tg_dist_sum(d, &v, 1);
	check("... and a sum afterwards (1 + 2)", v, 3, 0);
	tg_module_free(m);
	tg_dist_free(d);
	tg_ctx_free(c);
}

/* Inside a step's forward, rank 1's input to an all-reduce failed (NULL,
 * as when an op before it fails there alone): rank 0, waiting in the
 * all-reduce, learns that rank 1 failed, and tg_dist_loss stops both,
 * naming rank 1, with the ranks' collectives in step. */
static void failure_at_allreduce(const tg_dist_opts *o)
{
	tg_ctx *c = tg_ctx_new(1);
	tg_dist *d = tg_dist_new(c, NULL, NULL, o);
	tg_mlp_opts mo = tg_mlp_defaults();
	tg_mlp *net = tg_mlp_new(c, "2-2", &mo);
	if (tg_dist_attach(d, tg_mlp_module(net)))
		printf("rank %d: %s\n", rank, tg_error(c));
	tg_dist_step_begin(d);
	tg_tensor *x = tg_zeros(c, TG_F64, 1, (int64_t[]){ 3 });
	if (rank == 1)
		tg_fail(c, TG_EARG, "rank 1's forward failed here");
	check("tg_dist_allreduce, rank 1's x failed", tg_dist_allreduce(d, rank ? NULL : x) == NULL,
	      1, 0);
	double global, seed;
	int rc = tg_dist_loss(d, 1.0, 3, !tg_ok(c), &global, &seed);
	check("... tg_dist_loss", rc, -1, 0);
	check("... names rank 1",
	      says(c, rank == 1 ? "forward failed here" : "rank 1 failed in its forward"), 1, 0);
	tg_clear_error(c);
	double v = rank + 1;
	tg_dist_sum(d, &v, 1);
	check("... and a sum afterwards (1 + 2)", v, 3, 0);
	tg_mlp_free(net);
	tg_dist_free(d);
	tg_ctx_free(c);
}

/* Steps of few rows: a rank of no rows (its loss the NaN mean of none)
 * adds nothing to the global loss and gets seed 0; a global batch of no
 * rows at all is TG_EARG on every rank, not a loss and seed of 0 / 0; a
 * negative n or a NULL output on rank 1 alone stops both ranks, naming
 * rank 1, rather than leaving rank 0 waiting; the ranks stay in step. */
static void few_rows(const tg_dist_opts *o)
{
	tg_ctx *c = tg_ctx_new(1);
	tg_dist *d = tg_dist_new(c, NULL, NULL, o);
	double global = 7, seed = 7;
	int rc = tg_dist_loss(d, rank ? NAN : 1.5, rank ? 0 : 3, false, &global, &seed);
	check("tg_dist_loss, no rows on rank 1", rc, 0, 0);
	check("... the global loss is rank 0's", global, 1.5, 0);
	check("... the seed (3 / 3 and 0 / 3)", seed, rank ? 0 : 1, 0);
	rc = tg_dist_loss(d, NAN, 0, false, &global, &seed);
	check("tg_dist_loss, no rows on any rank", rc, -1, 0);
	check("... says so", says(c, "tg_dist_loss: the global batch has no rows (n is 0 on all 2"),
	      1, 0);
	check("... the global loss NaN", isnan(global), 1, 0);
	check("... the seed 0", seed, 0, 0);
	tg_clear_error(c);
	rc = tg_dist_loss(d, 1.0, rank ? -3 : 3, false, &global, &seed);
	check("tg_dist_loss, n = -3 on rank 1", rc, -1, 0);
	check("... names it", says(c, rank ? "tg_dist_loss: n = -3 rows is negative"
					   : "rank 1 failed in its forward"), 1, 0);
	tg_clear_error(c);
	rc = tg_dist_loss(d, 1.0, 3, false, rank ? NULL : &global, &seed);
	check("tg_dist_loss, global NULL on rank 1", rc, -1, 0);
	check("... names it", says(c, rank ? "tg_dist_loss: global is NULL"
					   : "rank 1 failed in its forward"), 1, 0);
	tg_clear_error(c);
	double v = rank + 1;
	tg_dist_sum(d, &v, 1);
	check("... and a sum afterwards (1 + 2)", v, 3, 0);
	tg_dist_free(d);
	tg_ctx_free(c);
}

/* Calls a user can get wrong, the same on every rank: NULL arrays and
 * outputs, tg_dist_step_end with no model attached, a module of another
 * context. Each is an error naming what is wrong, not a crash, and the
 * ranks stay in step (a sum afterwards is right). */
static void misuse(const tg_dist_opts *o)
{
	tg_ctx *c = tg_ctx_new(1), *other = tg_ctx_new(1);
	tg_dist *d = tg_dist_new(c, NULL, NULL, o);
	double global, seed;
	check("tg_dist_sum(d, NULL, 3)", tg_dist_sum(d, NULL, 3), -1, 0);
	check("... says so", says(c, "tg_dist_sum: v is NULL (n = 3)"), 1, 0);
	tg_clear_error(c);
	check("tg_dist_broadcast(d, NULL, 2)", tg_dist_broadcast(d, NULL, 2), -1, 0);
	check("... says so", says(c, "tg_dist_broadcast: t is NULL (n = 2)"), 1, 0);
	tg_clear_error(c);
	check("tg_dist_sum(d, NULL, 0)", tg_dist_sum(d, NULL, 0), 0, 0);
	check("tg_dist_broadcast(d, NULL, 0)", tg_dist_broadcast(d, NULL, 0), 0, 0);
	check("tg_dist_loss with global NULL", tg_dist_loss(d, 1.0, 3, false, NULL, &seed), -1,
	      0);
	check("... says so", says(c, "tg_dist_loss: global is NULL"), 1, 0);
	tg_clear_error(c);
	check("tg_dist_step_end with no model attached", tg_dist_step_end(d, false), -1, 0);
	check("... says so", says(c, "tg_dist_step_end: no model is attached"), 1, 0);
	tg_clear_error(c);
	tg_mlp_opts mo = tg_mlp_defaults();
	tg_mlp *net = tg_mlp_new(other, "2-2", &mo);
	check("tg_dist_attach of another context's module",
	      tg_dist_attach(d, tg_mlp_module(net)), -1, 0);
	check("... says so", says(c, "tg_dist_attach: the module belongs to another context"), 1,
	      0);
	tg_clear_error(c);
	check("tg_dist_sync_bn of another context's module",
	      tg_dist_sync_bn(d, tg_mlp_module(net)), -1, 0);
	check("... says so", says(c, "tg_dist_sync_bn: the module belongs to another context"),
	      1, 0);
	tg_clear_error(c);
	/* with a model, but no step begun: the end would sum the gradients */
	tg_mlp *mine = tg_mlp_new(c, "2-2", &mo);
	check("tg_dist_attach", tg_dist_attach(d, tg_mlp_module(mine)), 0, 0);
	check("tg_dist_step_end with no step begun", tg_dist_step_end(d, false), -1, 0);
	check("... says so", says(c, "tg_dist_step_end: no step was begun"), 1, 0);
	tg_clear_error(c);
	/* a step begun, but no tg_dist_loss: no seed n / N either */
	tg_dist_step_begin(d);
	check("tg_dist_step_end with no tg_dist_loss", tg_dist_step_end(d, false), -1, 0);
	check("... says so", says(c, "tg_dist_step_end: no step was begun"), 1, 0);
	tg_clear_error(c);
	/* a second tg_dist would take the context's backward hook from the first */
	tg_dist *d2 = tg_dist_new(c, NULL, NULL, o);
	tg_mlp *twin = tg_mlp_new(c, "2-2", &mo);
	check("tg_dist_attach of a second model of the context",
	      tg_dist_attach(d2, tg_mlp_module(twin)), -1, 0);
	check("... says so", says(c, "another tg_dist has a model of this context"), 1, 0);
	tg_clear_error(c);
	tg_dist_free(d2);
	tg_mlp_free(twin);
	/* a NULL x on rank 1 alone, outside a step: both ranks fail, naming it */
	tg_tensor *x = tg_ones(c, TG_F64, 1, (int64_t[]){ 2 });
	check("tg_dist_allreduce, x NULL on rank 1", tg_dist_allreduce(d, rank ? NULL : x) == NULL,
	      1, 0);
	check("... says so", says(c, rank ? "tg_dist_allreduce: x is NULL" : "rank 1 failed"), 1, 0);
	tg_clear_error(c);
	tg_mlp_free(mine);
	double v = rank + 1;
	tg_dist_sum(d, &v, 1);
	check("... and a sum afterwards (1 + 2)", v, 3, 0);
	/* a decision on a failure that rank 0's context holds (its save
	 * failed): rank 0 votes no, rank 1 learns it at once rather than
	 * waiting out the timeout */
	if (rank == 0)
		tg_fail(c, TG_EIO, "a save failed");
	int agreed = tg_dist_agree(d, true);
	check("tg_dist_agree with rank 0's context in error", agreed, rank ? 0 : -1, 0);
	check("... rank 1 did not wait", tg_ok(c) || rank == 0, 1, 0);
	tg_clear_error(c);
	v = rank + 1;
	tg_dist_sum(d, &v, 1);
	check("... and a sum afterwards (1 + 2)", v, 3, 0);
	(void)global;
	tg_mlp_free(net);
	tg_dist_free(d);
	tg_ctx_free(other);
	tg_ctx_free(c);
}

/* A NaN in the train set, in the rows of one rank's half of the global
 * batch (the whole set of 12 rows, so whichever rank draws it): the
 * global loss is NaN on both, and both name the row, not only the rank
 * that holds it (the other would advise a smaller learning rate). The
 * error is then both ranks': tg_dist_free finalises rather than abort the
 * job (the rest of this program would not run). */
static void nan_in_one_ranks_rows(const tg_dist_opts *o)
{
	float x[12 * 4];
	int32_t y[12];
	for (int i = 0; i < 12; i++) {
		for (int j = 0; j < 4; j++)
			x[i * 4 + j] = (float)sin(i * 4.0 + j);
		y[i] = i % 3;
	}
	x[7 * 4 + 1] = NAN;
	tg_ctx *c = tg_ctx_new(1);
	tg_dist *d = tg_dist_new(c, NULL, NULL, o);
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	tg_mlp *net = tg_mlp_new(c, "4-8-3", &mo);
	tg_module *m = tg_mlp_module(net);
	tg_dist_attach(d, m);
	tg_tensor *p[4];
	size_t np = tg_module_params(m, p, 4);
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	tg_optim *opt = tg_optim_new(c, p, np, &oo);
	tg_dataset tr = { .n = 12, .d = 4, .classes = 3, .x = x, .y = y };
	tg_train_opts to = tg_train_defaults();
	to.dist = d;
	to.batch = 6;
	to.epochs = 1;
	to.out = NULL;
	check("tg_fit, a NaN in row 7", tg_fit(m, opt, NULL, &tr, NULL, NULL, &to, NULL), -1, 0);
	check("... names it on both ranks", says(c, "the train set's row 7 has feature 1 = nan"), 1,
	      0);
	/* every rank knows of the error: tg_dist_free goes on, no MPI_Abort */
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_dist_free(d);
	tg_ctx_free(c);
}

/* tg_dist_broadcast and tg_dist_allreduce of tensors whose number, shapes
 * or dtypes differ by rank: an error on every rank naming both, rather
 * than MPI's truncation, and the ranks stay in step. */
static void unequal_tensors(const tg_dist_opts *o)
{
	tg_ctx *c = tg_ctx_new(1);
	tg_dist *d = tg_dist_new(c, NULL, NULL, o);
	tg_tensor *t = tg_keep(tg_zeros(c, TG_F32, 1, (int64_t[]){ 3 + rank }));
	check("tg_dist_broadcast of (3) and (4)", tg_dist_broadcast(d, &t, 1), -1, 0);
	check("... names both", says(c, "tensor 0 is f32 (3) on rank 0 but f32 (4) on rank 1"), 1, 0);
	tg_clear_error(c);
	tg_tensor *two[2] = { t, t };
	check("tg_dist_broadcast of 1 and 2 tensors", tg_dist_broadcast(d, two, 1 + (size_t)rank),
	      -1, 0);
	check("... names both", says(c, "rank 0 passes 1 tensors, rank 1 2"), 1, 0);
	tg_clear_error(c);
	tg_tensor *one[1] = { rank ? NULL : t };
	check("tg_dist_broadcast of a tensor and NULL", tg_dist_broadcast(d, one, 1), -1, 0);
	check("... names both", says(c, "tensor 0 is f32 (3) on rank 0 but NULL on rank 1"), 1, 0);
	tg_clear_error(c);
	tg_tensor *x = tg_zeros(c, rank ? TG_F64 : TG_F32, 2, (int64_t[]){ 2, 3 });
	check("tg_dist_allreduce of f32 and f64", tg_dist_allreduce(d, x) == NULL, 1, 0);
	check("... names both", says(c, "f32 (2,3) on rank 0 but f64 (2,3) on rank 1"), 1, 0);
	tg_clear_error(c);
	x = tg_zeros(c, TG_F64, 2, (int64_t[]){ 2, 3 - rank });
	check("tg_dist_allreduce of (2,3) and (2,2)", tg_dist_allreduce(d, x) == NULL, 1, 0);
	check("... names both", says(c, "f64 (2,3) on rank 0 but f64 (2,2) on rank 1"), 1, 0);
	tg_clear_error(c);
	/* an index tensor on one rank: named on both, not left to rank 0's wait */
	x = tg_zeros(c, rank ? TG_I32 : TG_F32, 1, (int64_t[]){ 3 });
	check("tg_dist_allreduce of f32 and i32", tg_dist_allreduce(d, x) == NULL, 1, 0);
	check("... names both", says(c, "f32 (3) on rank 0 but i32 (3) on rank 1"), 1, 0);
	tg_clear_error(c);
	x = tg_zeros(c, TG_I64, 1, (int64_t[]){ 3 });
	check("tg_dist_allreduce of i64 on every rank", tg_dist_allreduce(d, x) == NULL, 1, 0);
	check("... an index tensor", says(c, "x is an index tensor"), 1, 0);
	tg_clear_error(c);
	double v = rank + 1;
	tg_dist_sum(d, &v, 1);
	check("... and a sum afterwards (1 + 2)", v, 3, 0);
	tg_dist_free(d);
	tg_ctx_free(c);
}

/* A parameter that only rank 1's forward uses (b of a 2-3 affine layer):
 * rank 0 gets the global batch's gradient for it as well, and both ranks'
 * SGD steps move it alike, to where one process of both rows moves it:
 * dL/db = 1/2 a step, two steps of 0.01: b = -0.01. */
static void parameter_used_on_one_rank(const tg_dist_opts *o)
{
	tg_ctx *c = tg_ctx_new(1);
	tg_dist *d = tg_dist_new(c, NULL, NULL, o);
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	tg_mlp *net = tg_mlp_new(c, "2-3", &mo);
	tg_module *m = tg_mlp_module(net);
	tg_dist_attach(d, m);
	tg_tensor *p[2]; /* W (2,3), b (3) */
	tg_module_params(m, p, 2);
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	tg_optim *opt = tg_optim_new(c, p, 2, &oo);
	for (int step = 0; step < 2; step++) {
		double global, seed;
		tg_dist_step_begin(d);
		tg_tensor *x = tg_from_f64(c, TG_F64, 2, (int64_t[]){ 1, 2 }, (double[]){ 1, 2 });
		tg_tensor *y = tg_matmul(x, p[0]);
		tg_tensor *loss = tg_sum(rank == 1 ? tg_add(y, p[1]) : y);
		tg_dist_loss(d, tg_item(loss), 1, false, &global, &seed);
		tg_optim_zero_grad(opt);
		tg_backward_ex(loss, tg_scalar(c, TG_F64, seed), 0);
		tg_dist_step_end(d, false);
		tg_optim_step(opt);
		tg_reset(c);
	}
	check("b[2], used by rank 1 alone, after 2 steps", tg_get(p[1], 2), -0.01, 1e-15);
	if (!tg_ok(c))
		printf("rank %d: %s\n", rank, tg_error(c));
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_dist_free(d);
	tg_ctx_free(c);
}

/* on_epoch that fails on rank 1 at the end of epoch 1, as a save that
 * cannot write */
static bool fail_on_rank_1(const tg_metrics *mt, void *user)
{
	(void)mt;
	if (rank != 1)
		return true;
	tg_fail(user, TG_EIO, "saving failed here");
	return false;
}

/* A model whose batch norm tg_dist_sync_bn made global outlives its
 * tg_dist (freed first, as the header allows): an evaluation then runs as
 * plain batch norm, with the same output as before; a training forward is
 * an error saying the tg_dist is gone; the model frees cleanly, and so does
 * one freed before its tg_dist. A later tg_dist takes the layers over; a
 * second tg_dist while the first lives is refused (each forward would
 * all-reduce on both). check_ops.sh fills freed memory (MALLOC_PERTURB_),
 * so a layer that reads its freed tg_dist fails here. */
static void sync_bn_outlives_dist(const tg_dist_opts *o)
{
	double xs[24];
	int32_t ys[6];
	rows(xs, ys);
	for (int order = 0; order < 2; order++) {
		tg_ctx *c = tg_ctx_new(1);
		tg_dist *d = tg_dist_new(c, NULL, NULL, o);
		tg_mlp *net = bn_mlp(c);
		tg_module *m = tg_mlp_module(net);
		tg_dist_attach(d, m);
		check("tg_dist_sync_bn", tg_dist_sync_bn(d, m), 0, 0);
		tg_dist *other = tg_dist_new(c, NULL, NULL, o);
		check("tg_dist_sync_bn by a second tg_dist", tg_dist_sync_bn(other, m), -1, 0);
		check("... says so", says(c, "batch norm \"bn1\" is synchronised by another tg_dist"),
		      1, 0);
		tg_clear_error(c);
		tg_dist_free(other);
		if (order == 1) { /* the model first, then its tg_dist */
			tg_mlp_free(net);
			tg_dist_free(d);
			check("model freed before its tg_dist: no error", tg_ok(c), 1, 0);
			tg_ctx_free(c);
			continue;
		}
		tg_tensor *x = tg_keep(tg_from_f64(c, TG_F64, 2, (int64_t[]){ 3, 4 }, xs + 12 * rank));
		tg_module_train(m, false);
		tg_tensor *before = tg_keep(tg_forward(m, x));
		tg_dist_free(d);
		tg_tensor *after = tg_forward(m, x);
		double worst = after ? 0 : INFINITY;
		for (size_t i = 0; after && i < tg_numel(after); i++)
			worst = fmax(worst, fabs(tg_get(after, i) - tg_get(before, i)));
		check("evaluation after tg_dist_free: max|y - before|", worst, 0, 0);
		tg_module_train(m, true);
		check("a training forward after tg_dist_free fails", tg_forward(m, x) == NULL, 1, 0);
		check("... says so", says(c, "batch norm \"bn1\" trains over the ranks, but its "
					     "tg_dist has been freed"), 1, 0);
		tg_clear_error(c);
		/* a new tg_dist takes the layers over: its global batch's mean */
		tg_dist *again = tg_dist_new(c, NULL, NULL, o);
		check("tg_dist_sync_bn by a tg_dist after the first is freed",
		      tg_dist_sync_bn(again, m), 0, 0);
		/* fc1 then bn1 (gamma 1, beta 0) of the global batch: each
		 * feature's sum over the 6 rows is 0 */
		tg_tensor *y = tg_forward(m->children[1], tg_forward(m->children[0], x));
		tg_tensor *all = tg_dist_allreduce(again, y ? tg_sum_axis(y, 0, false) : NULL);
		double off = all ? 0 : INFINITY;
		for (size_t i = 0; all && i < tg_numel(all); i++)
			off = fmax(off, fabs(tg_get(all, i)));
		check("... trains over the ranks: max|bn1's sum over the global batch|", off, 0,
		      1e-12);
		tg_mlp_free(net);
		tg_dist_free(again);
		check("... no error left", tg_ok(c), 1, 0);
		tg_ctx_free(c);
	}
}

/* tg_fit with another batch on rank 1, with no train set on rank 1, with
 * rank 1 failing after its first epoch, and with another schedule, weight
 * decay, optimizer (named as such, not by its other learning rate) or
 * train set on rank 1 (the parameters would part): both ranks
 * fail at once,
 * rank 0 naming what differs or the rank that failed, rather than
 * waiting for rank 1 until the timeout or training apart; so do a
 * parameter or momentum that rank 1 alone set after tg_dist_attach (a
 * checkpoint loaded there alone), tg_fit of a model not attached, and
 * batch norm synchronised on rank 0 alone (its all-reduces would meet
 * rank 1's others), and validation rows (early stopping reads their loss)
 * or test rows (a plateau schedule without validation rows reads theirs)
 * whose labels differ on rank 1, as many as rank 0's: the ranks would stop
 * or change their rate apart. */
static void unequal_runs(const tg_dist_opts *o)
{
	float x[40 * 4];
	int32_t y[40];
	for (int i = 0; i < 40; i++) {
		for (int j = 0; j < 4; j++)
			x[i * 4 + j] = (float)sin(i * 4.0 + j);
		y[i] = i % 3;
	}
	float xv[10 * 4];
	int32_t yv[10];
	for (int i = 0; i < 10; i++) {
		for (int j = 0; j < 4; j++)
			xv[i * 4 + j] = (float)cos(i * 4.0 + j);
		yv[i] = (i + rank) % 3;
	}
	enum { RUNS = 14 };
	const char *want[RUNS] = { NULL, "differ in batch (per rank): 6 on rank 0, 5 on rank 1",
				   "rank 1 of 2 could not start training",
				   "rank 1 of 2 failed at the end of an epoch",
				   "differ in the schedule's step_size: 1 on rank 0, 2 on rank 1",
				   "differ in the optimizer's weight_decay: 0 on rank 0, 0.5 on rank 1",
				   "differ in the train set's values (a checksum)",
				   "differ in the model's parameters (a checksum",
				   "differ in the optimizer's state (a checksum)",
				   "tg_fit: opts.dist has no model attached",
				   "differ in the batch-norm layers synchronised (tg_dist_sync_bn): 1 "
				   "on rank 0, 0 on rank 1",
				   "differ in the optimizer's kind: sgd on rank 0, adam on rank 1",
				   "differ in the validation set's values (a checksum)",
				   "differ in the test set's values (a checksum; a plateau schedule "
				   "reads its loss)" };
	const char *what[RUNS] = { "tg_fit on equal ranks", "tg_fit, batch 5 on rank 1",
				   "tg_fit, no train set on rank 1", "tg_fit, failing on rank 1",
				   "tg_fit, another schedule on rank 1",
				   "tg_fit, another weight decay on rank 1",
				   "tg_fit, another value in rank 1's train set",
				   "tg_fit, a parameter set on rank 1 after tg_dist_attach",
				   "tg_fit, other momentum on rank 1",
				   "tg_fit of a model not attached",
				   "tg_fit, batch norm synchronised on rank 0 alone",
				   "tg_fit, Adam on rank 1 (its own learning rate)",
				   "tg_fit, other validation labels on rank 1",
				   "tg_fit, plateau, other test labels on rank 1" };
	const char *own[RUNS] = { NULL, want[1], "the train set is empty", "saving failed here",
				  want[4], want[5], want[6], want[7], want[8], want[9], want[10], want[11],
				  want[12], want[13] };
	for (int k = 0; k < RUNS; k++) {
		x[37] = k == 6 && rank == 1 ? 0.5f : (float)sin(37.0);
		tg_ctx *c = tg_ctx_new(1);
		tg_dist *d = tg_dist_new(c, NULL, NULL, o);
		tg_mlp_opts mo = tg_mlp_defaults();
		mo.dtype = TG_F64;
		mo.batchnorm = k == 10;
		tg_mlp *net = tg_mlp_new(c, "4-8-3", &mo);
		tg_module *m = tg_mlp_module(net);
		if (k != 9)
			tg_dist_attach(d, m);
		if (k == 10 && rank == 0)
			tg_dist_sync_bn(d, m);
		tg_tensor *p[8];
		size_t np = tg_module_params(m, p, 8);
		tg_optim_opts oo = tg_optim_defaults(k == 8			? TG_MOMENTUM
						     : k == 11 && rank == 1 ? TG_ADAM
									     : TG_SGD);
		if (k == 5 && rank == 1)
			oo.weight_decay = 0.5;
		tg_optim *opt = tg_optim_new(c, p, np, &oo);
		if (k == 7 && rank == 1) /* as a checkpoint loaded on rank 1 alone */
			((double *)tg_data_mut(p[1]))[0] = 0.25;
		size_t ns = 0;
		tg_tensor *const *st = tg_optim_state(opt, &ns);
		if (k == 8 && rank == 1 && ns > 0)
			((double *)tg_data_mut(st[0]))[0] = 0.25;
		tg_dataset tr = { .n = k == 2 && rank == 1 ? 0 : 40, .d = 4, .classes = 3, .x = x,
				  .y = y };
		tg_train_opts to = tg_train_defaults();
		to.dist = d;
		to.batch = k == 1 && rank == 1 ? 5 : 6;
		to.epochs = 2;
		to.out = NULL;
		if (k == 3) {
			to.on_epoch = fail_on_rank_1;
			to.user = c;
		}
		tg_schedule sch = tg_schedule_defaults(TG_SCHED_STEP, oo.lr, 2);
		sch.step_size = 1 + rank;
		if (k == 4)
			to.schedule = &sch;
		tg_schedule plateau = tg_schedule_defaults(TG_SCHED_PLATEAU, oo.lr, 2);
		if (k == 13)
			to.schedule = &plateau;
		if (k == 12)
			to.patience = 1;
		tg_dataset held = { .n = 10, .d = 4, .classes = 3, .x = xv, .y = yv };
		tg_metrics last;
		int rc = tg_fit(m, opt, NULL, &tr, k == 12 ? &held : NULL, k == 13 ? &held : NULL,
				&to, &last);
		check(what[k], rc, k ? -1 : 0, 0);
		if (k == 0)
			check("... steps (40 rows in global batches of 12, 2 epochs)",
			      (double)last.iter, 8, 0);
		else
			check("... says why", says(c, rank == 1 ? own[k] : want[k]), 1, 0);
		tg_optim_free(opt);
		tg_mlp_free(net);
		tg_dist_free(d);
		tg_ctx_free(c);
	}
	/* tg_train, whose own checks refuse rank 1's empty train set before
	 * tg_fit's: rank 1 still tells rank 0, which stops at once */
	tg_ctx *c = tg_ctx_new(1);
	tg_dist *d = tg_dist_new(c, NULL, NULL, o);
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	tg_mlp *net = tg_mlp_new(c, "4-8-3", &mo);
	tg_dist_attach(d, tg_mlp_module(net));
	tg_tensor *p[4];
	size_t np = tg_module_params(tg_mlp_module(net), p, 4);
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	tg_optim *opt = tg_optim_new(c, p, np, &oo);
	tg_dataset tr = { .n = rank == 1 ? 0 : 40, .d = 4, .classes = 3, .x = x, .y = y };
	tg_train_opts to = tg_train_defaults();
	to.dist = d;
	to.batch = 6;
	to.epochs = 2;
	to.out = NULL;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	check("tg_train, no train set on rank 1", tg_train(net, opt, &tr, NULL, &to, NULL), -1, 0);
	check("... says why", says(c, rank == 1 ? "the train set is empty"
					       : "rank 1 of 2 could not start training"), 1, 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	check("... at once (s, not the timeout)",
	      (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec) < 5, 1, 0);
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_dist_free(d);
	tg_ctx_free(c);
}

int main(int argc, char **argv)
{
	tg_ctx *ctx = tg_ctx_new(7);
	tg_dist_opts o = tg_dist_defaults();
	o.bucket_bytes = 64;
	o.timeout = 20;
	tg_dist *d = tg_dist_new(ctx, &argc, &argv, &o);
	if (!d) {
		fprintf(stderr, "dist_ops: %s\n", tg_error(ctx));
		return 1;
	}
	rank = tg_dist_rank(d);
	/* --chunk K: every transfer in pieces of at most K elements, as one of
	 * 2^31 or more goes (MPI's counts are int) */
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--chunk"))
			tg_dist_set_chunk(d, (size_t)atoll(argv[i + 1]));
	if (tg_dist_size(d) != 2) {
		fprintf(stderr, "dist_ops: run with mpirun -np 2\n");
		tg_dist_free(d);
		return 1;
	}

	/* sums and agreements */
	double v[2] = { rank, 10.0 * (rank + 1) };
	tg_dist_sum(d, v, 2);
	check("tg_dist_sum [0] (0 + 1)", v[0], 1, 0);
	check("tg_dist_sum [1] (10 + 20)", v[1], 30, 0);
	double many[12], worst = 0; /* more than a --chunk */
	for (int i = 0; i < 12; i++)
		many[i] = rank * i + 1;
	tg_dist_sum(d, many, 12);
	for (int i = 0; i < 12; i++)
		worst = fmax(worst, fabs(many[i] - (i + 2)));
	check("tg_dist_sum of 12: max|v - (i + 2)|", worst, 0, 0);
	tg_tensor *big = tg_keep(tg_full(ctx, TG_F64, 2, (int64_t[]){ 3, 4 }, 1.0 + rank));
	tg_tensor *bigsum = tg_dist_allreduce(d, big);
	check("tg_dist_allreduce of 12: element 11 (1 + 2)", tg_get(bigsum, 11), 3, 0);
	check("tg_dist_agree(rank != 1)", tg_dist_agree(d, rank != 1), 0, 0);
	check("tg_dist_agree(true)", tg_dist_agree(d, true), 1, 0);
	tg_tensor *b = tg_keep(tg_full(ctx, TG_F32, 1, (int64_t[]){ 3 }, 5.0 + rank));
	tg_dist_broadcast(d, &b, 1);
	check("tg_dist_broadcast: rank 0's 5", tg_get(b, 2), 5, 0);

	/* the all-reduce op: x_r = (r+1) [1, 2], y = x_0 + x_1 = [3, 6];
	 * L_r = <y, w_r>, w_0 = [1, 1], w_1 = [1, 2]: dx_r = w_0 + w_1 = [2, 3] */
	tg_tensor *x = tg_param(tg_from_f64(ctx, TG_F64, 1, (int64_t[]){ 2 },
					    (double[]){ rank + 1.0, 2.0 * (rank + 1) }));
	tg_tensor *w = tg_from_f64(ctx, TG_F64, 1, (int64_t[]){ 2 },
				   (double[]){ 1, rank + 1.0 });
	tg_tensor *y = tg_dist_allreduce(d, x);
	check("allreduce y[0]", tg_get(y, 0), 3, 0);
	check("allreduce y[1]", tg_get(y, 1), 6, 0);
	tg_backward(tg_sum(tg_mul(y, w)));
	check("allreduce dx[0] (1 + 1)", tg_get(tg_grad(x), 0), 2, 0);
	check("allreduce dx[1] (1 + 2)", tg_get(tg_grad(x), 1), 3, 0);
	tg_reset(ctx);

	/* buckets: a 4-8-8-3 MLP, each rank its 3 rows, against one process
	 * of all 6 */
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	tg_ctx *ref = tg_ctx_new(11);
	tg_seed(ctx, 11);
	tg_mlp *net = tg_mlp_new(ctx, "4-8-8-3", &mo), *one = tg_mlp_new(ref, "4-8-8-3", &mo);
	tg_module *m = tg_mlp_module(net), *m1 = tg_mlp_module(one);
	if (!net || !one || tg_dist_attach(d, m)) {
		fprintf(stderr, "dist_ops: %s %s\n", tg_error(ctx), tg_error(ref));
		return 1;
	}
	double xs[24];
	int32_t ys[6];
	rows(xs, ys);
	tg_tensor *p[6], *p1[6];
	size_t np = tg_module_params(m, p, 6);
	tg_module_params(m1, p1, 6);
	tg_tensor *loss1 = tg_cross_entropy(tg_forward(m1, tg_from_f64(ref, TG_F64, 2, (int64_t[]){ 6, 4 }, xs)),
					    tg_labels(ref, 6, ys));
	tg_backward(loss1);

	tg_dist_step_begin(d);
	tg_tensor *loss = tg_cross_entropy(
		tg_forward(m, tg_from_f64(ctx, TG_F64, 2, (int64_t[]){ 3, 4 }, xs + 12 * rank)),
		tg_labels(ctx, 3, ys + 3 * rank));
	double global, seed;
	tg_dist_loss(d, tg_item(loss), 3, false, &global, &seed);
	check("the global batch's loss", global, tg_item(loss1), 1e-14);
	check("the backward seed 3 / 6", seed, 0.5, 0);
	tg_backward_ex(loss, tg_scalar(ctx, TG_F64, seed), 0);
	tg_dist_step_end(d, false);
	tg_dist_stats st;
	tg_dist_stats_get(d, &st);
	check("buckets of 64 bytes (one per tensor)", (double)st.buckets, 6, 0);
	/* all but the last (fc1.W, final at the walk's last node) start while
	 * the walk goes on */
	check("buckets started during backward", (double)st.early, 5, 0);
	for (size_t i = 0; i < np; i++) {
		double worst = 0, mag = 0;
		for (size_t k = 0; k < tg_numel(p[i]); k++) {
			worst = fmax(worst, fabs(tg_get(tg_grad(p[i]), k) - tg_get(tg_grad(p1[i]), k)));
			mag = fmax(mag, fabs(tg_get(tg_grad(p1[i]), k)));
		}
		char what[64];
		snprintf(what, sizeof what, "max|grad - one process's| of %s", tg_name(p[i]));
		check(what, worst / mag, 0, 1e-12);
	}
	if (!tg_ok(ctx)) {
		printf("rank %d: error: %s\n", rank, tg_error(ctx));
		fails++;
	}
	tg_reset(ctx);

	/* a step that fails on rank 1 alone stops both, naming rank 1: in the
	 * forward pass (told with the loss) and in backward (the last bucket's
	 * status) */
	tg_dist_step_begin(d);
	int rc = tg_dist_loss(d, 1.0, 3, rank == 1, &global, &seed);
	check("tg_dist_loss after rank 1 failed", rc, -1, 0);
	check("... names rank 1", strstr(tg_error(ctx), "rank 1 failed in its forward") != NULL, 1, 0);
	tg_clear_error(ctx);
	tg_dist_step_begin(d);
	tg_dist_loss(d, 1.0, 3, false, &global, &seed);
	rc = tg_dist_step_end(d, rank == 1);
	check("tg_dist_step_end after rank 1 failed", rc, -1, 0);
	check("... names rank 1", strstr(tg_error(ctx), "rank 1 failed in its backward") != NULL, 1, 0);
	tg_clear_error(ctx);

	/* an index tensor broadcasts whole: rank 0's 7 in every element */
	tg_tensor *ix = tg_keep(tg_full(ctx, TG_I64, 1, (int64_t[]){ 4 }, 7.0 + 5 * rank));
	tg_dist_broadcast(d, &ix, 1);
	check("tg_dist_broadcast of i64: element 3", tg_get(ix, 3), 7, 0);

	unequal_models(&o);
	unequal_runs(&o);
	sync_bn_outlives_dist(&o);
	failure_before_sync_bn(&o);
	failure_before_sync_bn_backward(&o);
	sync_bn_over_channels(&o);
	failure_at_allreduce(&o);
	unequal_tensors(&o);
	parameter_used_on_one_rank(&o);
	misuse(&o);
	few_rows(&o);
	nan_in_one_ranks_rows(&o);
	tg_mlp_free(net);
	tg_mlp_free(one);
	tg_ctx_free(ref);
	/* a second tg_dist outlives the one that started MPI: MPI stays up for
	 * it, and its tg_dist_free finalises */
	tg_dist *later = tg_dist_new(ctx, NULL, NULL, &o);
	tg_dist_free(d);
	double u = rank + 1;
	check("a sum on a tg_dist that outlives the first (1 + 2)",
	      tg_dist_sum(later, &u, 1) == 0 ? u : -1, 3, 0);
	tg_dist_free(later); /* MPI_Finalize: the last tg_dist of the process */
	/* MPI cannot start again: an error, not MPI's abort of the process */
	check("tg_dist_new after MPI_Finalize", tg_dist_new(ctx, NULL, NULL, &o) == NULL, 1, 0);
	check("... says so", says(ctx, "tg_dist_new: MPI has been finalised"), 1, 0);
	tg_ctx_free(ctx);
	if (rank == 0)
		printf("%s\n", fails ? "FAILED" : "all checks passed");
	return fails ? 1 : 0;
}
