/*
 * test_contexts.c - contexts are independent: two threads, each training in
 * its own context, get the bits a sequential run gets, and each context's
 * BLAS thread count holds for its own products. tests/run runs this file
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

static void each_context_runs_its_products_with_its_own_thread_count(void **state)
{
	(void)state;
	tg_ctx *a = tg_ctx_new(1), *b = tg_ctx_new(2);
	tg_set_threads(a, 2);
	assert_int_equal(tg_threads(a), 2);
	assert_int_equal(tg_threads(b), 1);
	int64_t sh[2] = { 8, 8 };
	tg_tensor *xa = tg_ones(a, TG_F64, 2, sh), *xb = tg_ones(b, TG_F64, 2, sh);
	assert_non_null(tg_matmul(xa, xa));
	int after_a = openblas_get_num_threads();
	assert_non_null(tg_matmul(xb, xb));
	int after_b = openblas_get_num_threads();
	/* OpenBLAS caps the count at the cores it found */
	int cores = openblas_get_num_procs();
	assert_int_equal(after_a, cores >= 2 ? 2 : 1);
	assert_int_equal(after_b, 1);
	assert_int_equal(tg_threads(a), 2); /* b's product did not change a's setting */
	tg_ctx_free(a);
	tg_ctx_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(two_threads_training_their_own_contexts_match_a_sequential_run),
		cmocka_unit_test(each_context_runs_its_products_with_its_own_thread_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
