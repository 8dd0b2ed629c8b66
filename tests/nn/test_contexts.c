/*
 * test_contexts.c - contexts are independent: two threads, each training in
 * its own context, get the bits a sequential run gets, and each context's
 * products run on its own threads, two contexts' at once too. tests/run runs this file
 * under ThreadSanitizer as well.
 */
#include "../engine/test_util.h"

#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- one training run --------------------------------------------------------------- */

enum { PARAMS_MAX = 4096 };

typedef struct job {
	uint64_t seed;
	double final_loss;
	double params[PARAMS_MAX]; /* every parameter value, in order */
	size_t nparams;
	int rc;
	char error[256];
} job;

/* Trains a 64-16-10 MLP on the UCI digits for 2 epochs in a new context and
 * keeps what came out. */
static void *train(void *arg)
{
	job *j = arg;
	j->rc = -1;
	tg_ctx *ctx = tg_ctx_new(j->seed);
	if (!ctx)
		return NULL;
	const char *root = getenv("TG_SOURCE_ROOT");
	char path[512];
	snprintf(path, sizeof path, "%s/demos/data/digits.csv.gz", root ? root : ".");
	tg_dataset all = { 0 }, tr = { 0 }, te = { 0 };
	tg_mlp *net = NULL;
	tg_optim *opt = NULL;
	if (tg_load_digits(ctx, path, &all) || tg_dataset_split(ctx, &all, 300, &tr, &te))
		goto out;
	net = tg_mlp_new(ctx, "64-16-10", NULL);
	size_t np = 0;
	tg_tensor *const *params = net ? tg_mlp_params(net, &np) : NULL;
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	opt = params ? tg_optim_new(ctx, params, np, &oo) : NULL;
	if (!opt)
		goto out;
	tg_train_opts to = tg_train_defaults();
	to.progress = TG_PROGRESS_OFF;
	to.out = NULL;
	to.epochs = 2;
	to.batch = 50;
	tg_metrics last;
	if (tg_train(net, opt, &tr, &te, &to, &last))
		goto out;
	j->final_loss = last.train_loss;
	j->nparams = 0;
	for (size_t p = 0; p < np; p++)
		for (size_t i = 0; i < tg_numel(params[p]) && j->nparams < PARAMS_MAX; i++)
			j->params[j->nparams++] = tg_get(params[p], i);
	j->rc = tg_ok(ctx) ? 0 : -1;
out:
	snprintf(j->error, sizeof j->error, "%s", tg_error(ctx));
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_dataset_free(&tr);
	tg_dataset_free(&te);
	tg_dataset_free(&all);
	tg_ctx_free(ctx);
	return NULL;
}

static void same_bits(const job *a, const job *b)
{
	assert_int_equal(a->nparams, b->nparams);
	assert_true(a->nparams > 1000);
	if (memcmp(&a->final_loss, &b->final_loss, sizeof a->final_loss))
		fail_msg("final loss %.17g against %.17g", a->final_loss, b->final_loss);
	for (size_t i = 0; i < a->nparams; i++)
		if (memcmp(&a->params[i], &b->params[i], sizeof a->params[i]))
			fail_msg("parameter value %zu: %.17g against %.17g", i, a->params[i],
				 b->params[i]);
}

/* ---- the tests ------------------------------------------------------------------------ */

static void two_threads_training_their_own_contexts_match_a_sequential_run(void **state)
{
	(void)state;
	static job seq[2], par[2];
	for (int i = 0; i < 2; i++) {
		seq[i].seed = par[i].seed = 11 + (uint64_t)i;
		train(&seq[i]);
		if (seq[i].rc)
			fail_msg("sequential run %d failed: %s", i, seq[i].error);
	}
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, train, &par[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < 2; i++) {
		if (par[i].rc)
			fail_msg("threaded run %d failed: %s", i, par[i].error);
		same_bits(&seq[i], &par[i]);
	}
	/* different seeds really train different nets */
	assert_true(memcmp(seq[0].params, seq[1].params, sizeof(double) * 16) != 0);
}

/* ---- products on several threads --------------------------------------------------- */

enum { PN = 300, PK = 200, PM = 120, REPS = 20 };

typedef struct product_job {
	int threads;
	double c[PN * PM]; /* the last product's values */
	int ctx_threads;   /* tg_threads after the products */
	int rc;
} product_job;

/* A (PN,PK) @ B (PK,PM), uniform in [0,1) from seed 5 (the same in every
 * context), REPS times on a context of j->threads threads. */
static void *multiply(void *arg)
{
	product_job *j = arg;
	j->rc = -1;
	tg_ctx *ctx = tg_ctx_new(5);
	if (!ctx)
		return NULL;
	tg_set_threads(ctx, j->threads);
	tg_tensor *a = tg_keep(tg_rand(ctx, TG_F64, 2, (int64_t[]){ PN, PK }, 0, 1));
	tg_tensor *b = tg_keep(tg_rand(ctx, TG_F64, 2, (int64_t[]){ PK, PM }, 0, 1));
	for (int r = 0; r < REPS && tg_ok(ctx); r++) {
		tg_tensor *c = tg_matmul(a, b);
		for (size_t i = 0; c && i < PN * PM; i++)
			j->c[i] = tg_get(c, i);
		tg_reset(ctx);
	}
	j->ctx_threads = tg_threads(ctx);
	j->rc = tg_ok(ctx) ? 0 : -1;
	tg_ctx_free(ctx);
	return NULL;
}

/* Products split across their own context's threads (engine/gemm.c) with
 * OpenBLAS at one thread: two contexts of 2 threads multiplying in two
 * threads at once (one finds the pool busy and runs its bands alone), and
 * a context of 3 threads beside one of 1, all get the values of one
 * thread within rounding (2 K eps K, the inputs in [0,1)); OpenBLAS's
 * process-wide count is 1 after each and no context's setting changed. */
static void each_context_runs_its_products_on_its_own_threads(void **state)
{
	(void)state;
	static product_job one = { .threads = 1 }, two[2] = { { .threads = 2 }, { .threads = 2 } },
			   three = { .threads = 3 };
	multiply(&one);
	assert_int_equal(one.rc, 0);
	assert_int_equal(openblas_get_num_threads(), 1);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, multiply, &two[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	multiply(&three);
	assert_int_equal(openblas_get_num_threads(), 1);
	const product_job *runs[3] = { &two[0], &two[1], &three };
	double tol = 2.0 * PK * 0x1p-52 * PK;
	for (int r = 0; r < 3; r++) {
		assert_int_equal(runs[r]->rc, 0);
		assert_int_equal(runs[r]->ctx_threads, runs[r]->threads);
		for (size_t i = 0; i < PN * PM; i++)
			if (!(fabs(runs[r]->c[i] - one.c[i]) <= tol))
				fail_msg("run %d (%d threads): C[%zu] = %.17g, one thread %.17g", r,
					 runs[r]->threads, i, runs[r]->c[i], one.c[i]);
	}
	assert_true(one.c[0] > 10); /* a real product: 200 terms of mean 1/4 */
}

/* A product cut into bands of columns (N < M) at 2 threads, made in two
 * threads at once, REPS times each: whichever finds the pool busy runs the
 * same bands itself, so every product has the bits of one made alone.
 * (Run whole instead, about a third of these products differed from the
 * banded ones in the last place: OpenBLAS treats a call's edges by the
 * call's size.) */
enum { BN = 128, BK = 200, BM = 300, BREPS = 100 };

typedef struct banded_job {
	const double *want; /* the product made alone, or NULL to make it */
	double *c;
	int differ, rc;
} banded_job;

static void *multiply_banded(void *arg)
{
	banded_job *j = arg;
	j->rc = -1;
	tg_ctx *ctx = tg_ctx_new(3);
	if (!ctx)
		return NULL;
	tg_set_threads(ctx, 2);
	tg_tensor *a = tg_keep(tg_randn(ctx, TG_F64, 2, (int64_t[]){ BN, BK }, 0, 1));
	tg_tensor *b = tg_keep(tg_randn(ctx, TG_F64, 2, (int64_t[]){ BK, BM }, 0, 1));
	for (int r = 0; r < (j->want ? BREPS : 1) && tg_ok(ctx); r++) {
		tg_tensor *c = tg_matmul(a, b);
		if (c && !tg_copy_to_f64(c, j->c, BN * BM) && j->want &&
		    memcmp(j->c, j->want, sizeof(double) * BN * BM))
			j->differ++;
		tg_reset(ctx);
	}
	j->rc = tg_ok(ctx) ? 0 : -1;
	tg_ctx_free(ctx);
	return NULL;
}

static void a_product_has_the_same_bits_when_another_context_holds_the_pool(void **state)
{
	(void)state;
	static double alone[BN * BM], c[2][BN * BM];
	banded_job first = { NULL, alone, 0, 0 };
	multiply_banded(&first);
	assert_int_equal(first.rc, 0);
	banded_job jobs[2] = { { alone, c[0], 0, 0 }, { alone, c[1], 0, 0 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, multiply_banded, &jobs[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(jobs[i].rc, 0);
		if (jobs[i].differ)
			fail_msg("thread %d: %d of %d products differ from the one made alone", i,
				 jobs[i].differ, BREPS);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(two_threads_training_their_own_contexts_match_a_sequential_run),
		cmocka_unit_test(each_context_runs_its_products_on_its_own_threads),
		cmocka_unit_test(a_product_has_the_same_bits_when_another_context_holds_the_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
