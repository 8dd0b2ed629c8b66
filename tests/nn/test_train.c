/*
 * test_train.c - the training loop end to end: an MLP trained on the UCI
 * digits to 95% test accuracy, a failing step that stops training with its
 * error, the CSV log read back row by row, step counting with and without
 * replacement, and evaluation that is deterministic and leaves the modes as
 * it found them; a regression (diabetes), a binary (breast cancer) and a
 * classification model trained through the same loop, early stopping, and
 * every metric against a hand computation.
 */
#include "../engine/test_util.h"

#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------ */

/* The UCI digits (1797 x 64, 10 classes) split 1437 / 360 with ctx's
 * generator. */
static void load_digits(tg_ctx *ctx, tg_dataset *train, tg_dataset *test)
{
	const char *root = getenv("TG_SOURCE_ROOT");
	char path[512];
	snprintf(path, sizeof path, "%s/demos/data/digits.csv.gz", root ? root : ".");
	tg_dataset all;
	assert_int_equal(tg_load_digits(ctx, path, &all), 0);
	assert_int_equal(tg_dataset_split(ctx, &all, 360, train, test), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(train->n, 1437);
	assert_int_equal(test->n, 360);
	tg_dataset_free(&all);
}

typedef struct fixture {
	tg_ctx *ctx;
	tg_dataset train;
	tg_dataset test;
	tg_mlp *net;
	tg_optim *opt;
} fixture;

static void fixture_new(fixture *f, uint64_t seed, const tg_mlp_opts *mo,
			const tg_optim_opts *oo)
{
	f->ctx = tg_ctx_new(seed);
	assert_non_null(f->ctx);
	load_digits(f->ctx, &f->train, &f->test);
	f->net = tg_mlp_new(f->ctx, "64-32-10", mo);
	assert_non_null(f->net);
	size_t np;
	tg_tensor *const *params = tg_mlp_params(f->net, &np);
	tg_optim_opts adam = tg_optim_defaults(TG_ADAM);
	f->opt = tg_optim_new(f->ctx, params, np, oo ? oo : &adam);
	assert_non_null(f->opt);
	assert_ctx_ok(f->ctx);
}

static void fixture_free(fixture *f)
{
	tg_optim_free(f->opt);
	tg_mlp_free(f->net);
	tg_dataset_free(&f->train);
	tg_dataset_free(&f->test);
	tg_ctx_free(f->ctx);
}

static tg_train_opts quiet_opts(void)
{
	tg_train_opts to = tg_train_defaults();
	to.progress = TG_PROGRESS_OFF;
	to.out = NULL;
	return to;
}

/* The last child of seq of the given kind ("bn", ...), or NULL. */
static tg_module *child_of_kind(const tg_module *seq, const char *kind)
{
	tg_module *found = NULL;
	for (size_t i = 0; i < seq->nchildren; i++)
		if (!strcmp(seq->children[i]->vt->kind, kind))
			found = seq->children[i];
	return found;
}

/* Accuracy of net on ds counted here, row by row, from its logits in
 * evaluation mode without the training loop's code. */
static double count_accuracy(tg_mlp *net, const tg_dataset *ds)
{
	tg_ctx *ctx = tg_mlp_ctx(net);
	bool grad = tg_set_grad_enabled(ctx, false);
	tg_mlp_train(net, false);
	int64_t right = 0;
	for (int64_t i = 0; i < ds->n; i++) {
		tg_tensor *x = tg_from_f32(ctx, TG_F32, 2, (int64_t[]){ 1, ds->d },
					   ds->x + i * ds->d);
		tg_tensor *logits = tg_mlp_forward(net, x);
		assert_non_null(logits);
		int best = 0;
		for (int j = 1; j < 10; j++)
			if (tg_get(logits, (size_t)j) > tg_get(logits, (size_t)best))
				best = j;
		right += best == ds->y[i];
		tg_reset(ctx);
	}
	tg_mlp_train(net, true);
	tg_set_grad_enabled(ctx, grad);
	return (double)right / (double)ds->n;
}

typedef struct counter {
	int calls;
	int64_t iters[64];
	int stop_after;   /* return false at this call; 0: never */
} counter;

static bool count_epoch(const tg_metrics *m, void *user)
{
	counter *c = user;
	if (c->calls < 64)
		c->iters[c->calls] = m->iter;
	c->calls++;
	return c->calls != c->stop_after;
}

/* ---- learning ------------------------------------------------------------------- */

static void an_mlp_learns_the_uci_digits_to_95_percent_test_accuracy(void **state)
{
	(void)state;
	fixture f;
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	oo.lr = 0.003;
	fixture_new(&f, 7, NULL, &oo);
	tg_train_opts to = quiet_opts();
	to.epochs = 30;
	to.batch = 32;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), 0);
	assert_ctx_ok(f.ctx);
	assert_int_equal(last.epoch, 30);
	assert_int_equal(last.iter, 30 * 45); /* ceil(1437 / 32) = 45 steps an epoch */
	if (!(last.test_acc >= 0.95))
		fail_msg("test accuracy %.4f after 30 epochs, expected >= 0.95", last.test_acc);
	/* the reported accuracy is the one counted sample by sample */
	assert_near(last.test_acc, count_accuracy(f.net, &f.test), 1e-12);
	assert_true(last.test_loss > 0 && last.test_loss < 0.3);
	assert_true(tg_mlp_training(f.net));
	fixture_free(&f);
}

/* ---- failures ------------------------------------------------------------------- */

static void a_step_that_fails_in_anomaly_mode_stops_training_naming_the_op(void **state)
{
	(void)state;
	fixture f;
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = 1e30; /* the first update sends the weights past f32's range */
	fixture_new(&f, 3, NULL, &oo);
	tg_train_opts to = quiet_opts();
	to.epochs = 5;
	to.anomaly = true;
	counter c = { 0 };
	to.on_epoch = count_epoch;
	to.user = &c;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
	assert_error(f.ctx, TG_EANOMALY, "anomaly: ");
	/* the message names the op: "anomaly: matmul produced inf in its output ..." */
	if (!strstr(tg_error(f.ctx), " produced "))
		fail_msg("the message \"%s\" names no op", tg_error(f.ctx));
	/* stopped at once: no epoch finished, and every update taken belongs to a
	 * step that completed */
	assert_int_equal(c.calls, 0);
	assert_true(last.iter < 15);
	assert_int_equal(tg_optim_steps(f.opt), last.iter);
	/* the net is back in training mode, anomaly mode off again */
	assert_true(tg_mlp_training(f.net));
	fixture_free(&f);
}

/* A label outside the set's classes is named by its row before a step is
 * taken (the loss could name only its place in a batch); nothing moves. A
 * feature that is not finite is named by its row when its loss is. */
static void bad_data_is_named_by_its_row_of_the_set(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 3, NULL, NULL);
	tg_train_opts to = quiet_opts();
	to.epochs = 1;
	tg_metrics last;
	f.train.y[7] = 10;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "tg_train: the train set's row 7 has label 10, outside [0, 10)");
	tg_clear_error(f.ctx);
	f.train.y[7] = 1;
	f.test.y[300] = -2;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "the test set's row 300 has label -2");
	assert_int_equal(tg_optim_steps(f.opt), 0);
	tg_clear_error(f.ctx);
	/* a NaN feature: the loss it makes is blamed on the data, not the rate */
	f.test.y[300] = 1;
	f.train.x[7 * f.train.d + 5] = NAN;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "tg_train: the loss is nan at epoch 1, step ");
	assert_error(f.ctx, TG_EARG,
		     "the train set's row 7 has feature 5 = nan; data must be finite");
	assert_int_equal(tg_optim_steps(f.opt), last.iter);
	tg_clear_error(f.ctx);
	/* so is one in a set being evaluated, rather than a NaN among the
	 * metrics (early stopping and plateau would take it for no progress) */
	f.train.x[7 * f.train.d + 5] = 0;
	f.test.x[300 * f.test.d + 3] = INFINITY;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
	assert_error(f.ctx, TG_EARG,
		     "tg_train: the loss is nan: the test set's row 300 has feature 3 = inf; "
		     "data must be finite");
	tg_clear_error(f.ctx);
	double loss = 0;
	assert_int_equal(tg_evaluate(f.net, &f.test, 100, &loss, NULL, NULL), -1);
	assert_error(f.ctx, TG_EARG,
		     "tg_score: the loss is nan: the evaluation set's row 300 has feature 3 = "
		     "inf; data must be finite");
	fixture_free(&f);
}

static void a_non_finite_loss_stops_training_without_anomaly_mode(void **state)
{
	(void)state;
	fixture f;
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = 1e30;
	fixture_new(&f, 3, NULL, &oo);
	tg_train_opts to = quiet_opts();
	to.epochs = 5;
	to.no_divergence_check = true; /* the non-finite check alone */
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
	assert_error(f.ctx, TG_EANOMALY, "tg_train: the loss is ");
	assert_int_equal(tg_optim_steps(f.opt), last.iter);
	assert_true(last.iter >= 1 && last.iter < 45);
	fixture_free(&f);
}

/* on_step failing at step 3: the three updates made are counted */
static void fail_at_step_3(int64_t iter, double loss, void *user)
{
	(void)loss;
	if (iter == 3)
		tg_fail(user, TG_EARG, "step callback: stop at %lld", (long long)iter);
}

static void an_error_set_by_on_step_counts_the_step_it_follows(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 3, NULL, NULL);
	tg_train_opts to = quiet_opts();
	to.epochs = 2;
	to.on_step = fail_at_step_3;
	to.step_user = f.ctx;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "step callback: stop at 3");
	assert_int_equal(tg_optim_steps(f.opt), 3);
	assert_int_equal(last.iter, 3);
	assert_int_equal(last.epoch, 0);
	fixture_free(&f);
}

/* A loss that is not finite before any update (parameters too large for
 * f32 from the start) is not put down to the learning rate. */
static void a_non_finite_first_loss_names_the_starting_parameters(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 3, NULL, NULL);
	size_t np;
	tg_tensor *w = tg_mlp_params(f.net, &np)[0];
	float *v = tg_data_mut(w);
	for (size_t i = 0; i < tg_numel(w); i++)
		v[i] = 1e37f;
	tg_train_opts to = quiet_opts();
	to.epochs = 2;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
	assert_error(f.ctx, TG_EANOMALY, "at epoch 1, step 1, before this run's first update: "
					 "the parameters it starts from");
	assert_int_equal(tg_optim_steps(f.opt), 0);
	fixture_free(&f);
}

/* The running statistics (every non-parameter tensor of the net's state)
 * after the latest step made, through on_step. */
typedef struct {
	tg_mlp *net;
	float saved[4][64];
	int64_t steps;
} stats_after;

static void running_stats(const tg_mlp *net, float out[4][64])
{
	size_t n;
	tg_tensor *const *all = tg_mlp_state(net, &n);
	int k = 0;
	for (size_t i = 0; i < n; i++) {
		if (tg_is_param(all[i]))
			continue;
		assert_true(k < 4 && tg_numel(all[i]) <= 64);
		memcpy(out[k++], tg_data(all[i]), tg_numel(all[i]) * sizeof(float));
	}
	assert_int_equal(k, 2); /* bn1's running_mean and running_var */
}

static void save_running_stats(int64_t iter, double loss, void *user)
{
	(void)loss;
	stats_after *a = user;
	running_stats(a->net, a->saved);
	a->steps = iter;
}

/* A step that fails after its forward (a NaN in the batch, a diverged
 * loss) makes no update, and leaves batch norm's running statistics as the
 * last step made left them: the model evaluates as before the bad batch. */
static void a_failed_step_leaves_the_running_statistics_as_they_were(void **state)
{
	(void)state;
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.batchnorm = true;
	for (int kind = 0; kind < 2; kind++) {
		tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
		if (kind == 1)
			oo.lr = 1e6;
		fixture f;
		fixture_new(&f, 3, &mo, &oo);
		if (kind == 0)
			f.train.x[900 * f.train.d + 5] = NAN; /* met within the first epoch */
		stats_after a = { .net = f.net };
		tg_train_opts to = quiet_opts();
		to.epochs = 2;
		to.on_step = save_running_stats;
		to.step_user = &a;
		tg_metrics last;
		assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
		assert_error(f.ctx, kind == 0 ? TG_EARG : TG_EANOMALY,
			     kind == 0 ? "row 900 has feature 5 = nan" : "the loss diverged");
		assert_true(a.steps >= 1);
		assert_int_equal(a.steps, tg_optim_steps(f.opt));
		float now[4][64] = { { 0 } };
		running_stats(f.net, now);
		assert_memory_equal(now, a.saved, sizeof now);
		fixture_free(&f);
	}
}

static void a_diverging_loss_stops_training_without_anomaly_mode(void **state)
{
	(void)state;
	fixture f;
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	oo.lr = 1e6;
	fixture_new(&f, 3, NULL, &oo);
	tg_train_opts to = quiet_opts();
	to.epochs = 5;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
	assert_error(f.ctx, TG_EANOMALY, "tg_train: the loss diverged: ");
	assert_error(f.ctx, TG_EANOMALY, "times the first step's");
	assert_error(f.ctx, TG_EANOMALY, "try a smaller learning rate");
	print_message("%s\n", tg_error(f.ctx));
	/* the diverged step made no update; it stopped within the first epoch */
	assert_int_equal(tg_optim_steps(f.opt), last.iter);
	assert_true(last.iter >= 1 && last.iter < 15);
	double loss;
	tg_clear_error(f.ctx);
	/* the loss it reports is the net's: far beyond the bound */
	assert_int_equal(tg_evaluate(f.net, &f.train, 0, &loss, NULL, NULL), 0);
	if (!(loss > TG_TRAIN_DIVERGENCE_FLOOR))
		fail_msg("the net's loss is %g after the stop", loss);
	fixture_free(&f);

	/* turned off, the same run trains on past the bound */
	fixture_new(&f, 3, NULL, &oo);
	to.no_divergence_check = true;
	to.iters = 20;
	int rc = tg_train(f.net, f.opt, &f.train, &f.test, &to, &last);
	if (rc != 0)
		assert_error(f.ctx, TG_EANOMALY, "tg_train: the loss is "); /* non-finite at last */
	assert_true(last.iter > 1);
	fixture_free(&f);

	/* a healthy run with a small first loss is not stopped: lr 1e-3 */
	oo.lr = 1e-3;
	fixture_new(&f, 3, NULL, &oo);
	to.no_divergence_check = false;
	to.iters = 0;
	to.epochs = 2;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), 0);
	fixture_free(&f);
}

static void a_net_that_does_not_fit_the_data_is_a_shape_error(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset train, test;
	load_digits(ctx, &train, &test);
	tg_mlp *net = tg_mlp_new(ctx, "784-10", NULL);
	size_t np;
	tg_tensor *const *params = tg_mlp_params(net, &np);
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	tg_optim *opt = tg_optim_new(ctx, params, np, &oo);
	tg_train_opts to = quiet_opts();
	assert_int_equal(tg_train(net, opt, &train, &test, &to, NULL), -1);
	assert_error(ctx, TG_ESHAPE, "tg_train: the net 784-10 takes 784 features; the train "
				     "set has 64");
	assert_int_equal(tg_optim_steps(opt), 0);
	tg_clear_error(ctx);
	/* a module (any task): the call and the set are named before the layer */
	tg_module *m = tg_mlp_module(net);
	for (int i = 0; i < 2; i++) {
		tg_scores sc;
		int rc = i ? tg_score(m, NULL, &test, 0, &sc, NULL)
			   : tg_fit(m, opt, NULL, &train, NULL, NULL, &to, NULL);
		assert_int_equal(rc, -1);
		assert_error(ctx, TG_ESHAPE,
			     i ? "tg_score: the model's forward pass on the evaluation set's rows "
				 "(64 features) failed: tg_affine_forward: fc1.W: input"
			       : "tg_fit: the model's forward pass on the train set's rows (64 "
				 "features) failed: tg_affine_forward: fc1.W: input");
		tg_clear_error(ctx);
	}
	assert_int_equal(tg_optim_steps(opt), 0);
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	tg_ctx_free(ctx);
}

/* An optimizer over another context's parameters would step nothing of the
 * model: refused before the first step, not a run that "trains" in vain. */
static void an_optimizer_of_another_context_is_refused(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1), *other = tg_ctx_new(2);
	tg_module *m = tg_model_parse(ctx, "2-3-2", NULL);
	tg_module *elsewhere = tg_model_parse(other, "2-3-2", NULL);
	tg_tensor *p[4];
	size_t np = tg_module_params(elsewhere, p, 4);
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	tg_optim *opt = tg_optim_new(other, p, np, &oo);
	assert_non_null(opt);
	float x[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	int32_t y[4] = { 0, 1, 0, 1 };
	tg_dataset ds = { .n = 4, .d = 2, .classes = 2, .x = x, .y = y };
	tg_train_opts to = quiet_opts();
	to.epochs = 2;
	tg_metrics last;
	assert_int_equal(tg_fit(m, opt, NULL, &ds, NULL, NULL, &to, &last), -1);
	assert_error(ctx, TG_ECTX, "tg_fit: the optimizer belongs to another context");
	assert_int_equal(last.iter, 0);
	assert_int_equal(tg_optim_steps(opt), 0);
	assert_ctx_ok(other);
	tg_optim_free(opt);
	tg_module_free(m);
	tg_module_free(elsewhere);
	tg_ctx_free(other);
	tg_ctx_free(ctx);
}

/* A label beyond the model's outputs is named by its set and row before
 * the first step: the train set's rather than a place in a shuffled batch,
 * the test set's rather than after an epoch of training. */
static void a_label_beyond_the_models_outputs_is_named_before_training(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_module *m = tg_model_parse(ctx, "2-3", NULL);
	tg_tensor *p[2];
	size_t np = tg_module_params(m, p, 2);
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	tg_optim *opt = tg_optim_new(ctx, p, np, &oo);
	float x[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	int32_t y[4] = { 0, 1, 2, 3 }, ok[4] = { 0, 1, 2, 1 }, bad[4] = { 0, 1, 5, 1 };
	tg_dataset train = { .n = 4, .d = 2, .classes = 4, .x = x, .y = y };
	tg_train_opts to = quiet_opts();
	to.batch = 2;
	tg_metrics last;
	assert_int_equal(tg_fit(m, opt, NULL, &train, NULL, NULL, &to, &last), -1);
	assert_error(ctx, TG_EARG, "tg_fit: the train set's row 3 has label 3; the model has 3 "
				   "outputs (classes 0 to 2)");
	tg_clear_error(ctx);
	train.y = ok;
	tg_dataset test = { .n = 4, .d = 2, .x = x, .y = bad };
	assert_int_equal(tg_fit(m, opt, NULL, &train, NULL, &test, &to, &last), -1);
	assert_error(ctx, TG_EARG, "tg_fit: the test set's row 2 has label 5");
	assert_int_equal(last.iter, 0);
	assert_int_equal(tg_optim_steps(opt), 0);
	tg_optim_free(opt);
	tg_module_free(m);
	tg_ctx_free(ctx);
}

static void a_failure_in_the_short_last_batch_says_so(void **state)
{
	(void)state;
	/* 5 samples in batches of 2: the last batch has one row, which batch
	 * norm refuses in training; the error says it was that batch */
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.batchnorm = true;
	fixture f;
	fixture_new(&f, 1, &mo, NULL);
	tg_dataset five;
	assert_int_equal(tg_dataset_head(f.ctx, &f.train, 5, &five), 0);
	tg_train_opts to = quiet_opts();
	to.batch = 2;
	to.epochs = 1;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &five, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_ESHAPE,
		     "tg_train: epoch 1, step 3, the epoch's last batch of 1 row (5 samples, "
		     "batch 2; drop_last leaves it out): tg_batchnorm_forward: bn1.gamma: a batch "
		     "of 1 (1,32) in training mode");
	assert_int_equal(last.iter, 2);
	tg_clear_error(f.ctx);
	to.drop_last = true;
	assert_int_equal(tg_train(f.net, f.opt, &five, NULL, &to, &last), 0);
	assert_int_equal(last.iter, 2);
	tg_dataset_free(&five);
	fixture_free(&f);
}

static void training_does_nothing_while_the_context_holds_an_error(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 1, NULL, NULL);
	tg_fail(f.ctx, TG_EARG, "an earlier failure");
	tg_train_opts to = quiet_opts();
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, NULL), -1);
	assert_error(f.ctx, TG_EARG, "an earlier failure");
	assert_int_equal(tg_optim_steps(f.opt), 0);
	fixture_free(&f);
}

/* ---- the log and the step counts ------------------------------------------------------ */

static void the_csv_log_has_a_header_and_one_row_per_epoch(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 5, NULL, NULL);
	char path[] = "/tmp/tg_train_log_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	tg_train_opts to = quiet_opts();
	to.epochs = 3;
	to.batch = 100;
	to.log_path = path;
	counter c = { 0 };
	to.on_epoch = count_epoch;
	to.user = &c;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), 0);
	assert_int_equal(c.calls, 3);

	FILE *in = fopen(path, "r");
	assert_non_null(in);
	char line[256];
	assert_non_null(fgets(line, sizeof line, in));
	assert_string_equal(line, "epoch,iter,train_loss,train_acc,test_loss,test_acc,seconds,val_loss,"
				  "val_acc,train_mse,train_rmse,train_r2,val_mse,val_rmse,val_r2,"
				  "test_mse,test_rmse,test_r2\n");
	int rows = 0;
	double prev_seconds = 0;
	while (fgets(line, sizeof line, in)) {
		long long epoch, iter;
		double trl, tra, tel, tea, sec;
		if (sscanf(line, "%lld,%lld,%lf,%lf,%lf,%lf,%lf", &epoch, &iter, &trl, &tra, &tel,
			   &tea, &sec) != 7)
			fail_msg("row %d does not have 7 numbers: %s", rows + 1, line);
		rows++;
		assert_int_equal(epoch, rows);
		assert_int_equal(iter, rows * 15); /* ceil(1437 / 100) = 15 steps an epoch */
		assert_true(trl > 0 && tra >= 0 && tra <= 1 && tel > 0 && tea >= 0 && tea <= 1);
		assert_true(sec >= prev_seconds);
		prev_seconds = sec;
		if (rows == 3) {
			/* nine significant figures, not six decimals */
			assert_near(tea, last.test_acc, 1e-8 * tea);
			assert_near(tel, last.test_loss, 1e-8 * tel);
			assert_near(trl, last.train_loss, 1e-8 * trl);
		}
	}
	fclose(in);
	unlink(path);
	assert_int_equal(rows, 3);
	fixture_free(&f);
}

/* A log that cannot be written (a full disk) stops the run at the epoch
 * whose row failed, as a failed save does, not after every epoch to come. */
static void a_log_that_cannot_be_written_stops_the_run_at_that_epoch(void **state)
{
	(void)state;
	if (access("/dev/full", W_OK) != 0)
		skip();
	fixture f;
	fixture_new(&f, 5, NULL, NULL);
	tg_train_opts to = quiet_opts();
	to.epochs = 3;
	to.batch = 100;
	to.log_path = "/dev/full";
	counter c = { 0 };
	to.on_epoch = count_epoch;
	to.user = &c;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), -1);
	assert_error(f.ctx, TG_EIO, "writing the log /dev/full failed at epoch 1: No space");
	assert_int_equal(c.calls, 0);
	assert_int_equal(last.epoch, 1);
	assert_int_equal(tg_optim_steps(f.opt), 15);
	fixture_free(&f);
}

/* A new log does not overwrite a file of something else, does not wait for
 * a reader of a FIFO, and has a path; nothing is trained then. */
static void a_log_path_that_would_lose_data_or_hang_is_refused(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 5, NULL, NULL);
	char dir[] = "/tmp/tg_train_logs_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char other[64], fifo[64], log[64];
	snprintf(other, sizeof other, "%s/model.ckpt", dir);
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	snprintf(log, sizeof log, "%s/log.csv", dir);
	FILE *o = fopen(other, "w");
	assert_non_null(o);
	fputs("not a log\n", o);
	fclose(o);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	tg_train_opts to = quiet_opts();
	to.epochs = 1;
	to.batch = 100;
	const char *paths[] = { other, fifo, "" };
	const char *why[] = { "model.ckpt is a file of something else (its first line is not a "
			      "log's header); give another path, or remove the file",
			      "fifo: it is a FIFO that no process reads",
			      "tg_train: the log's path is empty" };
	for (int i = 0; i < 3; i++) {
		to.log_path = paths[i];
		assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, NULL), -1);
		assert_error(f.ctx, i == 2 ? TG_EARG : TG_EIO, why[i]);
		tg_clear_error(f.ctx);
	}
	assert_int_equal(tg_optim_steps(f.opt), 0);
	char buf[32] = { 0 };
	o = fopen(other, "r");
	assert_non_null(o);
	assert_non_null(fgets(buf, sizeof buf, o));
	fclose(o);
	assert_string_equal(buf, "not a log\n");
	/* a log of an earlier run is a log: a new run writes over it */
	to.log_path = log;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, NULL), 0);
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, NULL), 0);
	assert_int_equal(unlink(other), 0);
	assert_int_equal(unlink(fifo), 0);
	assert_int_equal(unlink(log), 0);
	assert_int_equal(rmdir(dir), 0);
	fixture_free(&f);
}

/* The epoch and iter of each row of the log at path, after its header
 * (which must be one line, the first); returns the number of rows. */
static int log_rows(const char *path, long long (*rows)[2], int cap)
{
	FILE *in = fopen(path, "r");
	assert_non_null(in);
	char line[512];
	int n = 0, headers = 0;
	while (fgets(line, sizeof line, in)) {
		if (!strncmp(line, "epoch,", 6)) {
			if (n)
				fail_msg("a header after row %d: %s", n, line);
			headers++;
			continue;
		}
		assert_true(n < cap);
		if (sscanf(line, "%lld,%lld,", &rows[n][0], &rows[n][1]) != 2)
			fail_msg("row %d: %s", n + 1, line);
		n++;
	}
	fclose(in);
	assert_int_equal(headers, 1);
	return n;
}

static void a_resumed_run_keeps_the_rows_of_its_log(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 5, NULL, NULL);
	char path[] = "/tmp/tg_train_log_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	tg_train_opts to = quiet_opts();
	to.batch = 100; /* 15 steps an epoch */
	to.log_path = path;
	tg_metrics last;
	/* 3 epochs logged; the run is taken up after 2 (its save of epoch 3 lost) */
	to.epochs = 3;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), 0);
	to.start_epoch = 2;
	to.start_iter = 30;
	to.epochs = 4;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), 0);
	long long rows[8][2];
	int n = log_rows(path, rows, 8);
	assert_int_equal(n, 4);
	for (int i = 0; i < n; i++) {
		assert_int_equal(rows[i][0], i + 1);
		assert_int_equal(rows[i][1], 15 * (i + 1));
	}
	/* a log of something else is not written into */
	const char other[] = "step,loss\n1,0.5\n";
	FILE *out = fopen(path, "w");
	assert_non_null(out);
	fputs(other, out);
	fclose(out);
	to.start_epoch = 4;
	to.start_iter = 60;
	to.epochs = 5;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EIO, "its first line is not this log's header");
	tg_clear_error(f.ctx);
	char back[64] = { 0 };
	FILE *in = fopen(path, "r");
	assert_non_null(in);
	assert_int_equal(fread(back, 1, sizeof back - 1, in), strlen(other));
	fclose(in);
	assert_string_equal(back, other);
	/* a log whose rows stop before the checkpoint's epoch, or that has a
	 * gap, is refused rather than continued with epochs missing; so is
	 * one with CR LF line ends, which is said */
	const char *hdr = "epoch,iter,train_loss,train_acc,test_loss,test_acc,seconds,val_loss,"
			  "val_acc,train_mse,train_rmse,train_r2,val_mse,val_rmse,val_r2,test_mse,"
			  "test_rmse,test_r2";
	char text[1024];
	const struct {
		const char *rows, *why;
	} bad[] = {
		{ "\n1,15,,,,,1,,,,,,,,,,,\n2,30,,,,,1,,,,,,,,,,,\n",
		  "its last row is of epoch 2, but the checkpoint is of epoch 4: the rows of "
		  "epochs 3 to 4 are missing" },
		{ "\n1,15,,,,,1,,,,,,,,,,,\n3,45,,,,,1,,,,,,,,,,,\n4,60,,,,,1,,,,,,,,,,,\n",
		  "its rows go from epoch 1 to epoch 3" },
		{ "\r\n1,15,,,,,1,,,,,,,,,,,\r\n", "its lines end in CR LF" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(text, sizeof text, "%s%s", hdr, bad[i].rows);
		out = fopen(path, "w");
		assert_non_null(out);
		fputs(text, out);
		fclose(out);
		assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
		assert_error(f.ctx, TG_EIO, bad[i].why);
		tg_clear_error(f.ctx);
		/* the run stopped where it resumed */
		assert_int_equal(last.epoch, 4);
		assert_int_equal(last.iter, 60);
		char got[1024] = { 0 };
		in = fopen(path, "r");
		assert_non_null(in);
		assert_int_equal(fread(got, 1, sizeof got - 1, in), strlen(text));
		fclose(in);
		assert_string_equal(got, text);
	}
	/* a log begun by a resume after epoch 4 whose first row was cut
	 * short of its save, or that stopped before its first row (a header
	 * alone), goes on from there */
	const char *begun[] = { "\n5,75,,,,,1,,,,,,,,,,,\n", "\n" };
	for (size_t i = 0; i < sizeof begun / sizeof begun[0]; i++) {
		snprintf(text, sizeof text, "%s%s", hdr, begun[i]);
		out = fopen(path, "w");
		assert_non_null(out);
		fputs(text, out);
		fclose(out);
		assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), 0);
		n = log_rows(path, rows, 8);
		assert_int_equal(n, 1);
		assert_int_equal(rows[0][0], 5);
	}
	/* the seconds of a resumed run's rows go on from the rows kept */
	snprintf(text, sizeof text, "%s\n1,15,,,,,250,,,,,,,,,,,\n2,30,,,,,500,,,,,,,,,,,\n"
		 "3,45,,,,,750,,,,,,,,,,,\n4,60,,,,,1000.25,,,,,,,,,,,\n", hdr);
	out = fopen(path, "w");
	assert_non_null(out);
	fputs(text, out);
	fclose(out);
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), 0);
	assert_int_equal(log_rows(path, rows, 8), 5);
	in = fopen(path, "r");
	assert_non_null(in);
	char line[512];
	double sec = 0;
	while (fgets(line, sizeof line, in))
		if (!strncmp(line, "5,75,", 5)) {
			const char *c = line;
			for (int comma = 0; c && comma < 6; comma++)
				c = strchr(c + 1, ',');
			assert_non_null(c);
			sec = strtod(c + 1, NULL);
		}
	fclose(in);
	assert_true(sec >= 1000.25 && sec < 1000.25 + 60);
	/* a run from the start begins a new log */
	to.start_epoch = 0;
	to.start_iter = 0;
	to.epochs = 1;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), 0);
	assert_int_equal(log_rows(path, rows, 8), 1);
	unlink(path);
	fixture_free(&f);
}

/* A validation or test set the model cannot take beside the train set is
 * refused before a step, not at the end of an epoch of updates: features
 * of another width or shape, another number of targets. Flat rows beside
 * images of their width suit a model that flattens them. */
static void a_set_unlike_the_train_set_is_refused_before_a_step(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 5, NULL, NULL);
	tg_train_opts to = quiet_opts();
	to.epochs = 1;
	tg_metrics last;
	tg_module *m = tg_mlp_module(f.net);
	assert_int_equal(tg_dataset_reshape(f.ctx, &f.test, 2, (int64_t[]){ 8, 8 }), 0);
	assert_int_equal(tg_fit(m, f.opt, NULL, &f.train, &f.test, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_ESHAPE,
		     "tg_fit: the validation set's samples are (8,8), the train set's (1,8,8)");
	assert_int_equal(tg_optim_steps(f.opt), 0);
	tg_clear_error(f.ctx);
	tg_dataset narrow = { .n = 2, .d = 63, .classes = 10 };
	narrow.x = calloc(2 * 63, sizeof(float));
	narrow.y = calloc(2, sizeof(int32_t));
	assert_int_equal(tg_fit(m, f.opt, NULL, &f.train, NULL, &narrow, &to, &last), -1);
	assert_error(f.ctx, TG_ESHAPE, "tg_fit: the test set's samples are (63), the train set's");
	assert_int_equal(tg_optim_steps(f.opt), 0);
	tg_clear_error(f.ctx);
	tg_dataset_free(&narrow);
	/* targets: 2 a sample beside the train set's 3 */
	tg_dataset reg = { .n = 4, .d = 64, .tdim = 3 }, reg2 = { .n = 4, .d = 64, .tdim = 2 };
	reg.x = calloc(4 * 64, sizeof(float));
	reg.t = calloc(4 * 3, sizeof(float));
	reg2.x = calloc(4 * 64, sizeof(float));
	reg2.t = calloc(4 * 2, sizeof(float));
	tg_task mse = { .loss = TG_LOSS_MSE };
	assert_int_equal(tg_fit(m, f.opt, &mse, &reg, &reg2, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_ESHAPE,
		     "tg_fit: the validation set has 2 targets a sample, the train set 3");
	assert_int_equal(tg_optim_steps(f.opt), 0);
	tg_clear_error(f.ctx);
	/* the MLP's classifier loop and evaluation take class labels: a set of
	 * float targets is said to be one, not called empty */
	tg_dataset reg10 = { .n = 4, .d = 64, .tdim = 10 };
	reg10.x = calloc(4 * 64, sizeof(float));
	reg10.t = calloc(4 * 10, sizeof(float));
	assert_int_equal(tg_train(f.net, f.opt, &reg10, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "tg_train: the train set has float targets; the net is a "
				     "classifier of class labels");
	tg_clear_error(f.ctx);
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &reg10, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "tg_train: the test set has float targets");
	tg_clear_error(f.ctx);
	double loss;
	assert_int_equal(tg_evaluate(f.net, &reg10, 0, &loss, NULL, NULL), -1);
	assert_error(f.ctx, TG_EARG, "tg_evaluate: the evaluation set has float targets");
	tg_clear_error(f.ctx);
	assert_int_equal(tg_optim_steps(f.opt), 0);
	tg_dataset_free(&reg10);
	tg_dataset_free(&reg);
	tg_dataset_free(&reg2);
	/* flat rows of the same width go, batched as the train set's images:
	 * to the MLP, and to a net that convolves them, as validation and test
	 * sets (the test's confusion matrix takes a forward pass of a row) */
	assert_int_equal(tg_dataset_reshape(f.ctx, &f.test, 0, NULL), 0);
	assert_int_equal(tg_fit(m, f.opt, NULL, &f.train, &f.test, NULL, &to, &last), 0);
	tg_mlp_opts mo = tg_mlp_defaults();
	tg_module *cnn = tg_model_parse_image(f.ctx, "conv4:3-10", 1, 8, 8, &mo);
	assert_non_null(cnn);
	tg_tensor *cp[8];
	size_t np = tg_module_params(cnn, cp, 8);
	tg_optim_opts adam = tg_optim_defaults(TG_ADAM);
	tg_optim *co = tg_optim_new(f.ctx, cp, np, &adam);
	int64_t confusion[100];
	to.confusion = confusion;
	assert_int_equal(tg_fit(cnn, co, NULL, &f.train, &f.test, &f.test, &to, &last), 0);
	/* the figures of the same rows as images */
	tg_scores sc;
	assert_int_equal(tg_dataset_reshape(f.ctx, &f.test, 3, (int64_t[]){ 1, 8, 8 }), 0);
	assert_int_equal(tg_score(cnn, NULL, &f.test, 0, &sc, NULL), 0);
	assert_near(last.val_loss, sc.loss, 0);
	assert_near(last.test_acc, sc.acc, 0);
	assert_true(sc.loss < 2.3); /* it learned something in the epoch */
	tg_optim_free(co);
	tg_module_free(cnn);
	fixture_free(&f);
}

/* start_iter inside an epoch, or counted with another batch, would run
 * past the epochs asked for or cut the last one short: it is refused
 * before a step. */
static void a_resume_inside_an_epoch_is_refused(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 5, NULL, NULL);
	tg_train_opts to = quiet_opts();
	to.batch = 100; /* 15 steps an epoch */
	to.epochs = 4;
	tg_metrics last;
	to.start_epoch = 2;
	to.start_iter = 12;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EARG,
		     "tg_train: start_epoch 2 and start_iter 12 disagree: an epoch is 15 steps "
		     "(1437 samples, batch 100), so 2 epochs end at step 30");
	assert_int_equal(tg_optim_steps(f.opt), 0);
	tg_clear_error(f.ctx);
	to.start_epoch = INT64_MAX;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "end past the last step a count holds");
	tg_clear_error(f.ctx);
	to.start_epoch = 2;
	to.start_iter = 30;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), 0);
	assert_int_equal(last.epoch, 4);
	assert_int_equal(last.iter, 60);
	assert_int_equal(tg_optim_steps(f.opt), 30);
	fixture_free(&f);
}

static void iterations_with_replacement_count_epochs_of_n_over_b_steps(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 5, NULL, NULL);
	tg_train_opts to = quiet_opts();
	to.iters = 250;
	to.batch = 100;
	to.replace = true; /* an epoch is 1437 / 100 = 14 steps */
	counter c = { 0 };
	to.on_epoch = count_epoch;
	to.user = &c;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), 0);
	assert_int_equal(last.iter, 250);
	assert_int_equal(tg_optim_steps(f.opt), 250);
	/* 17 full epochs and a last one of 12 steps */
	assert_int_equal(c.calls, 18);
	assert_int_equal(last.epoch, 18);
	for (int i = 0; i < 17; i++)
		assert_int_equal(c.iters[i], 14 * (i + 1));
	assert_int_equal(c.iters[17], 250);
	assert_true(isnan(last.test_acc)); /* no test set */
	fixture_free(&f);
}

static void sizes_too_large_to_count_are_refused_or_read_as_all_the_data(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 5, NULL, NULL);
	tg_train_opts to = quiet_opts();
	tg_metrics last;
	/* epochs x 15 steps would overflow: refused before any step */
	to.epochs = INT64_MAX / 15 + 1;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "epochs of 15 steps are more than");
	tg_clear_error(f.ctx);
	to.epochs = INT64_MAX;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EARG,
		     "tg_train: 9223372036854775807 epochs of 15 steps are more than "
		     "9223372036854775807 steps");
	assert_int_equal(tg_optim_steps(f.opt), 0);
	tg_clear_error(f.ctx);
	/* a negative step count is a bad option, not "count epochs" */
	to.epochs = 2;
	to.iters = -1;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "tg_train: bad options: batch 100, epochs 2, iters -1");
	assert_error(f.ctx, TG_EARG, "): iters must be >= 0");
	assert_int_equal(tg_optim_steps(f.opt), 0);
	tg_clear_error(f.ctx);
	to.iters = 0;
	/* each bad option is named after the list of them, not left to be
	 * found in it */
	to.epochs = 0;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "epochs 0, iters 0, eval_batch 1000");
	assert_error(f.ctx, TG_EARG, "): epochs must be >= 1 when iters is 0");
	tg_clear_error(f.ctx);
	to.epochs = 2;
	to.eval_batch = -3;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "): eval_batch must be >= 0 (0: 1000)");
	tg_clear_error(f.ctx);
	to.eval_batch = 1000;
	to.patience = -1;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EARG, "): patience must be >= 0");
	tg_clear_error(f.ctx);
	to.patience = 0;
	assert_int_equal(tg_optim_steps(f.opt), 0);
	/* a batch larger than any data set is one batch of all 1437 rows */
	to.epochs = 2;
	to.batch = INT64_MAX;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), 0);
	assert_int_equal(last.epoch, 2);
	assert_int_equal(last.iter, 2);
	assert_int_equal(tg_optim_steps(f.opt), 2);
	/* ... and no batch at all with drop_last */
	to.drop_last = true;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), -1);
	assert_error(f.ctx, TG_EARG,
		     "tg_train: batch 9223372036854775807 > 1437 samples with drop_last");
	tg_clear_error(f.ctx);
	/* the most steps there can be: ceil(INT64_MAX / 15) epochs planned */
	to.drop_last = false;
	to.batch = 100;
	to.iters = INT64_MAX;
	FILE *out = tmpfile();
	assert_non_null(out);
	to.out = out;
	counter c = { .stop_after = 1 };
	to.on_epoch = count_epoch;
	to.user = &c;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, &last), 0);
	assert_int_equal(last.iter, 15);
	rewind(out);
	char line[256];
	assert_non_null(fgets(line, sizeof line, out));
	fclose(out);
	/* 614891469123651721 epochs: the epoch number is 18 wide */
	if (strncmp(line, "epoch                  1  iter", 30))
		fail_msg("the epoch line is \"%s\"", line);
	fixture_free(&f);
}

static void a_callback_returning_false_stops_training_after_that_epoch(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 5, NULL, NULL);
	tg_train_opts to = quiet_opts();
	to.epochs = 10;
	counter c = { .stop_after = 2 };
	to.on_epoch = count_epoch;
	to.user = &c;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), 0);
	assert_int_equal(c.calls, 2);
	assert_int_equal(last.epoch, 2);
	assert_int_equal(tg_optim_steps(f.opt), 2 * 15);
	fixture_free(&f);
}

/* A run taken up when its epochs are done trains and evaluates nothing: it
 * prints no confusion matrix, which no epoch of this call counted. */
static void a_run_resumed_after_its_last_epoch_prints_no_confusion_matrix(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 5, NULL, NULL);
	tg_train_opts to = quiet_opts();
	to.epochs = 2;
	tg_metrics last;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &last), 0);
	FILE *out = tmpfile();
	assert_non_null(out);
	to.out = out;
	to.start_epoch = last.epoch;
	to.start_iter = last.iter;
	tg_metrics again;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, &f.test, &to, &again), 0);
	assert_int_equal(again.epoch, 2);
	assert_int_equal(again.iter, last.iter);
	rewind(out);
	char line[256];
	while (fgets(line, sizeof line, out))
		if (strstr(line, "confusion"))
			fail_msg("a run of no epoch printed \"%s\"", line);
	fclose(out);
	fixture_free(&f);
}

/* ---- evaluation ------------------------------------------------------------------------- */

static void evaluation_is_deterministic_and_restores_the_modes(void **state)
{
	(void)state;
	fixture f;
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.batchnorm = true;
	mo.dropout = 0.3;
	fixture_new(&f, 11, &mo, NULL);
	tg_train_opts to = quiet_opts();
	to.epochs = 2;
	assert_int_equal(tg_train(f.net, f.opt, &f.train, NULL, &to, NULL), 0);

	/* the running statistics must not move during evaluation */
	size_t ns;
	tg_tensor *const *st = tg_mlp_state(f.net, &ns);
	double before[64], after[64];
	tg_tensor *rm = NULL;
	for (size_t i = 0; i < ns; i++)
		if (tg_name(st[i]) && !strcmp(tg_name(st[i]), "bn1.running_mean"))
			rm = st[i];
	assert_non_null(rm);
	assert_int_equal(tg_numel(rm), 32);
	assert_int_equal(tg_copy_to_f64(rm, before, 32), 0);

	int64_t conf1[100], conf2[100];
	double l1, a1, l2, a2;
	assert_true(tg_grad_enabled(f.ctx));
	assert_int_equal(tg_evaluate(f.net, &f.test, 64, &l1, &a1, conf1), 0);
	assert_int_equal(tg_evaluate(f.net, &f.test, 1000, &l2, &a2, conf2), 0);
	assert_ctx_ok(f.ctx);
	/* same numbers whatever the batch: no dropout, running statistics */
	assert_near(l1, l2, 1e-6);
	assert_near(a1, a2, 0);
	assert_memory_equal(conf1, conf2, sizeof conf1);
	assert_int_equal(tg_copy_to_f64(rm, after, 32), 0);
	assert_memory_equal(before, after, 32 * sizeof(double));
	/* modes restored */
	assert_true(tg_mlp_training(f.net));
	assert_true(tg_grad_enabled(f.ctx));
	/* the confusion matrix counts every sample once; its diagonal is the accuracy */
	int64_t total = 0, diag = 0;
	for (int i = 0; i < 10; i++) {
		for (int j = 0; j < 10; j++)
			total += conf1[i * 10 + j];
		diag += conf1[i * 10 + i];
	}
	assert_int_equal(total, 360);
	assert_near((double)diag / 360.0, a1, 1e-12);
	assert_near(a1, count_accuracy(f.net, &f.test), 1e-12);
	/* each module gets its own mode back: a batch norm kept in evaluation
	 * mode (frozen statistics) in a training net stays so, and one in
	 * training mode in an evaluating net stays in training */
	tg_module *seq = tg_mlp_module(f.net);
	tg_module *bn = child_of_kind(seq, "bn");
	assert_non_null(bn);
	for (int root = 0; root < 2; root++) {
		tg_module_train(seq, root);
		tg_module_train(bn, !root);
		tg_scores sc;
		assert_int_equal(tg_score(seq, NULL, &f.test, 100, &sc, NULL), 0);
		assert_int_equal(tg_evaluate(f.net, &f.test, 100, NULL, NULL, NULL), 0);
		assert_ctx_ok(f.ctx);
		assert_int_equal(seq->training, root);
		assert_int_equal(bn->training, !root);
		assert_int_equal(seq->children[0]->training, root);
	}
	fixture_free(&f);
}

/* Fine-tuning with frozen batch-norm statistics: a batch norm kept in
 * evaluation mode inside a training net trains in evaluation mode (its
 * running statistics do not move) and is so on return; a net put in
 * evaluation mode whole trains in training mode whole. */
static void training_keeps_a_module_the_caller_keeps_in_evaluation_mode(void **state)
{
	(void)state;
	fixture f;
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.batchnorm = true;
	fixture_new(&f, 5, &mo, NULL);
	tg_module *seq = tg_mlp_module(f.net);
	tg_module *bn = child_of_kind(seq, "bn");
	assert_non_null(bn);
	tg_train_opts to = quiet_opts();
	to.epochs = 1;
	to.batch = 64;
	size_t d = tg_numel(bn->state[0]);
	double mean0[32];
	for (size_t j = 0; j < d; j++)
		mean0[j] = tg_get(bn->state[0], j);
	tg_module_train(bn, false);
	assert_int_equal(tg_fit(seq, f.opt, NULL, &f.train, NULL, &f.test, &to, NULL), 0);
	assert_ctx_ok(f.ctx);
	for (size_t j = 0; j < d; j++)
		if (tg_get(bn->state[0], j) != mean0[j])
			fail_msg("bn1.running_mean[%zu] moved from %.17g to %.17g in evaluation mode",
				 j, mean0[j], tg_get(bn->state[0], j));
	assert_true(seq->training);
	assert_false(bn->training);
	/* the whole net in evaluation mode: trained (and returned) in training */
	tg_module_train(seq, false);
	assert_int_equal(tg_fit(seq, f.opt, NULL, &f.train, NULL, NULL, &to, NULL), 0);
	assert_true(seq->training);
	assert_true(bn->training);
	assert_true(tg_get(bn->state[0], 0) != mean0[0]);
	assert_ctx_ok(f.ctx);
	fixture_free(&f);
}

static void evaluation_with_grad_mode_off_stays_off(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 2, NULL, NULL);
	tg_set_grad_enabled(f.ctx, false);
	tg_mlp_train(f.net, false);
	double acc;
	assert_int_equal(tg_evaluate(f.net, &f.test, 0, NULL, &acc, NULL), 0);
	assert_false(tg_grad_enabled(f.ctx));
	assert_false(tg_mlp_training(f.net));
	/* an untrained net is near chance on ten classes */
	assert_true(acc >= 0 && acc < 0.5);
	fixture_free(&f);
}

static void the_confusion_matrix_prints_names_counts_and_recall(void **state)
{
	(void)state;
	const int64_t conf[4] = { 3, 1, 0, 4 };
	const char *const names[] = { "cat", "dog" };
	char buf[1024] = { 0 };
	FILE *f = fmemopen(buf, sizeof buf - 1, "w");
	assert_non_null(f);
	tg_confusion_print(f, conf, 2, names);
	fclose(f);
	static const char *const want[] = {
		"         0  1  recall\n",
		"0 cat    3  1  0.750\n",
		"1 dog    0  4  1.000\n",
		"accuracy 0.8750 (7 of 8)\n",
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (!strstr(buf, want[i]))
			fail_msg("the table lacks the line \"%s\"; it reads:\n%s", want[i], buf);
}

/* The rule of tapegrad_nn.h: a net and an optimizer are freed before their
 * context, or at least nothing but their _free is called after it. Under
 * ASan a use of the freed context here would abort. */
static void a_net_and_optimizer_may_be_freed_after_their_context(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_mlp *net = tg_mlp_new(ctx, "4-3-2", NULL);
	assert_non_null(net);
	size_t np;
	tg_tensor *const *params = tg_mlp_params(net, &np);
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	tg_optim *opt = tg_optim_new(ctx, params, np, &oo);
	assert_non_null(opt);
	assert_int_equal(np, 4);
	tg_ctx_free(ctx);
	tg_optim_free(opt);
	tg_mlp_free(net);
}

/* ---- tasks through one loop ------------------------------------------------------- */

/* demos/data/<name> */
static const char *data_path(const char *name, char *buf, size_t size)
{
	const char *root = getenv("TG_SOURCE_ROOT");
	snprintf(buf, size, "%s/demos/data/%s", root ? root : ".", name);
	return buf;
}

/* A CSV with float targets split 80/20 with a generator of its own (seed
 * 2026, as demos/train) and standardised on the training split. */
static void load_standardised(tg_ctx *ctx, const char *name, const tg_csv_options *o,
			      bool targets, tg_dataset *train, tg_dataset *test)
{
	char path[512];
	tg_dataset all;
	assert_int_equal(tg_load_csv(ctx, data_path(name, path, sizeof path), o, &all), 0);
	tg_ctx *split = tg_ctx_new(2026);
	assert_int_equal(tg_dataset_split(split, &all, all.n / 5, train, test), 0);
	tg_ctx_free(split);
	tg_dataset_free(&all);
	tg_standardiser st;
	assert_int_equal(tg_standardiser_fit(ctx, train, targets, &st), 0);
	assert_int_equal(tg_standardiser_apply(ctx, &st, train), 0);
	assert_int_equal(tg_standardiser_apply(ctx, &st, test), 0);
	assert_ctx_ok(ctx);
}

/* An MLP of spec with Adam at lr and weight decay wd. */
static tg_mlp *small_net(tg_ctx *ctx, const char *spec, double lr, double wd, tg_optim **opt)
{
	tg_mlp *net = tg_mlp_new(ctx, spec, NULL);
	assert_non_null(net);
	size_t np;
	tg_tensor *const *params = tg_mlp_params(net, &np);
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	oo.lr = lr;
	oo.weight_decay = wd;
	*opt = tg_optim_new(ctx, params, np, &oo);
	assert_non_null(*opt);
	return net;
}

static void a_regressor_learns_the_diabetes_data_to_r2_above_0_45(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(7);
	tg_csv_options o = TG_CSV_DEFAULTS;
	o.header = TG_CSV_HEADER_YES;
	o.target_names = (const char *const[]){ "progression" };
	o.ntargets = 1;
	o.float_targets = true;
	tg_dataset train, test;
	load_standardised(ctx, "diabetes.csv", &o, true, &train, &test);
	assert_int_equal(train.n, 354);
	assert_int_equal(train.tdim, 1);
	tg_optim *opt;
	tg_mlp *net = small_net(ctx, "10-16-1", 0.003, 0.1, &opt);
	tg_train_opts to = quiet_opts();
	to.batch = 32;
	to.epochs = 40;
	tg_task task = { .loss = TG_LOSS_MSE };
	tg_metrics last;
	assert_int_equal(tg_fit(tg_mlp_module(net), opt, &task, &train, NULL, &test, &to, &last),
			 0);
	assert_ctx_ok(ctx);
	if (!(last.test_r2 >= 0.45))
		fail_msg("test R2 %.4f, want >= 0.45 (train R2 %.4f)", last.test_r2, last.train_r2);
	/* the MSE loss of one target is the MSE metric; accuracy is not a figure here */
	assert_near(last.test_mse, last.test_loss, 1e-6); /* the loss is an f32 op's */
	assert_near(last.test_rmse, sqrt(last.test_mse), 1e-12);
	assert_true(isnan(last.test_acc) && isnan(last.train_acc) && isnan(last.val_loss));
	tg_scores sc;
	assert_int_equal(tg_score(tg_mlp_module(net), &task, &test, 10, &sc, NULL), 0);
	assert_near(sc.r2, last.test_r2, 1e-6); /* other batches, other f32 sums */
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	tg_ctx_free(ctx);
}

static void a_binary_classifier_learns_breast_cancer_to_95_percent(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(7);
	tg_csv_options o = TG_CSV_DEFAULTS;
	o.header = TG_CSV_HEADER_YES;
	o.float_targets = true;
	tg_dataset train, test;
	load_standardised(ctx, "breast_cancer.csv", &o, false, &train, &test);
	assert_int_equal(train.n + test.n, 569);
	assert_int_equal(train.d, 30);
	tg_optim *opt;
	tg_mlp *net = small_net(ctx, "30-16-1", 0.001, 0.01, &opt);
	tg_train_opts to = quiet_opts();
	to.batch = 32;
	to.epochs = 20;
	int64_t confusion[4];
	to.confusion = confusion;
	tg_task task = { .loss = TG_LOSS_BCE_WITH_LOGITS };
	tg_metrics last;
	assert_int_equal(tg_fit(tg_mlp_module(net), opt, &task, &train, NULL, &test, &to, &last),
			 0);
	assert_ctx_ok(ctx);
	if (!(last.test_acc >= 0.95))
		fail_msg("test accuracy %.4f, want >= 0.95", last.test_acc);
	assert_true(isnan(last.test_r2));
	/* the 2x2 matrix counts every test sample; its diagonal is the accuracy */
	assert_int_equal(confusion[0] + confusion[1] + confusion[2] + confusion[3], test.n);
	assert_near((double)(confusion[0] + confusion[3]) / (double)test.n, last.test_acc, 1e-12);
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	tg_ctx_free(ctx);
}

/* A module written here (not an MLP): linear, relu, linear in a sequential. */
static void a_classifier_module_learns_the_digits_through_tg_fit(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(3);
	tg_dataset train, test, val, rest;
	load_digits(ctx, &rest, &test);
	assert_int_equal(tg_dataset_split(ctx, &rest, 200, &train, &val), 0);
	tg_module *m = tg_sequential(ctx, "net");
	tg_module_add(m, tg_linear(ctx, TG_F32, 64, 32, (tg_init){ .kind = TG_INIT_HE }, "fc1"));
	tg_module_add(m, tg_activation(ctx, (tg_act){ .kind = TG_ACT_RELU }, "relu"));
	tg_module_add(m, tg_linear(ctx, TG_F32, 32, 10, (tg_init){ .kind = TG_INIT_HE }, "fc2"));
	tg_tensor *params[8];
	size_t np = tg_module_params(m, params, 8);
	assert_int_equal(np, 4);
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	tg_optim *opt = tg_optim_new(ctx, params, np, &oo);
	assert_ctx_ok(ctx);
	tg_train_opts to = quiet_opts();
	to.epochs = 10;
	to.batch = 50;
	tg_metrics last;
	assert_int_equal(tg_fit(m, opt, NULL, &train, &val, &test, &to, &last), 0);
	if (!(last.test_acc >= 0.85 && last.val_acc >= 0.85))
		fail_msg("test accuracy %.4f, validation %.4f, want >= 0.85", last.test_acc,
			 last.val_acc);
	assert_true(isnan(last.test_r2));
	assert_int_equal(last.epoch, 10);
	assert_false(last.stopped_early);
	tg_optim_free(opt);
	tg_module_free(m);
	tg_dataset_free(&train);
	tg_dataset_free(&val);
	tg_dataset_free(&rest);
	tg_dataset_free(&test);
	tg_ctx_free(ctx);
}

typedef struct val_trace {
	double val[64];
	int64_t n;
} val_trace;

static bool record_val(const tg_metrics *m, void *user)
{
	val_trace *t = user;
	t->val[t->n++] = m->val_loss;
	return true;
}

/* A validation set whose labels are shuffled cannot be learnt: its loss
 * rises as the net fits the training set, and patience runs out. */
static void early_stopping_stops_after_patience_epochs_without_improvement(void **state)
{
	(void)state;
	fixture f;
	fixture_new(&f, 11, NULL, NULL);
	tg_dataset val;
	int64_t idx[300];
	for (int i = 0; i < 300; i++)
		idx[i] = i;
	assert_int_equal(tg_dataset_subset(f.ctx, &f.train, idx, 300, &val), 0);
	for (int i = 0; i < 300; i++)
		val.y[i] = (val.y[i] + 1 + i % 9) % 10; /* never the true label */
	tg_train_opts to = quiet_opts();
	to.epochs = 50;
	to.patience = 3;
	val_trace tr = { .n = 0 };
	to.on_epoch = record_val;
	to.user = &tr;
	tg_metrics last;
	assert_int_equal(tg_fit(tg_mlp_module(f.net), f.opt, NULL, &f.train, &val, NULL, &to,
				&last),
			 0);
	assert_true(last.stopped_early);
	assert_true(last.epoch < 50);
	assert_int_equal(last.epoch, last.best_epoch + 3);
	assert_int_equal(tr.n, last.epoch);
	/* the best is the lowest seen, and none of the last 3 beat it */
	double best = INFINITY;
	for (int64_t e = 0; e < tr.n; e++)
		best = tr.val[e] < best ? tr.val[e] : best;
	assert_near(last.best_val_loss, best, 0);
	assert_near(tr.val[last.best_epoch - 1], best, 0);
	for (int64_t e = last.best_epoch; e < tr.n; e++)
		assert_true(tr.val[e] >= best);
	/* the same run taken up after the epoch following its best, given the
	 * best so far, stops at the same epoch with the same parameters */
	{
		fixture g;
		fixture_new(&g, 11, NULL, NULL);
		tg_train_opts tb = quiet_opts();
		tb.patience = 3;
		tb.epochs = last.best_epoch + 1;
		tg_metrics part, rest;
		assert_int_equal(tg_fit(tg_mlp_module(g.net), g.opt, NULL, &g.train, &val, NULL, &tb,
					&part),
				 0);
		assert_false(part.stopped_early);
		tb.epochs = 50;
		tb.start_epoch = part.epoch;
		tb.start_iter = part.iter;
		tb.start_best_epoch = part.best_epoch;
		tb.start_best_val = part.best_val_loss;
		assert_int_equal(tg_fit(tg_mlp_module(g.net), g.opt, NULL, &g.train, &val, NULL, &tb,
					&rest),
				 0);
		assert_true(rest.stopped_early);
		assert_int_equal(rest.epoch, last.epoch);
		assert_int_equal(rest.best_epoch, last.best_epoch);
		size_t np;
		tg_tensor *const *pa = tg_mlp_params(f.net, &np);
		tg_tensor *const *pb = tg_mlp_params(g.net, &np);
		for (size_t i = 0; i < np; i++)
			assert_memory_equal(tg_data(pa[i]), tg_data(pb[i]),
					    tg_numel(pa[i]) * sizeof(float));
		/* taken up again where it stopped early, it has ended: no step,
		 * the same parameters, stopped early again at the same epoch */
		tb.start_epoch = rest.epoch;
		tb.start_iter = rest.iter;
		tb.start_best_epoch = rest.best_epoch;
		tb.start_best_val = rest.best_val_loss;
		tg_metrics again;
		assert_int_equal(tg_fit(tg_mlp_module(g.net), g.opt, NULL, &g.train, &val, NULL, &tb,
					&again),
				 0);
		assert_true(again.stopped_early);
		assert_int_equal(again.epoch, last.epoch);
		assert_int_equal(again.iter, rest.iter);
		assert_int_equal(again.best_epoch, last.best_epoch);
		assert_near(again.best_val_loss, last.best_val_loss, 0);
		for (size_t i = 0; i < np; i++)
			assert_memory_equal(tg_data(pa[i]), tg_data(pb[i]),
					    tg_numel(pa[i]) * sizeof(float));
		/* with more patience it trains on */
		tb.patience = rest.epoch - rest.best_epoch + 1;
		assert_int_equal(tg_fit(tg_mlp_module(g.net), g.opt, NULL, &g.train, &val, NULL, &tb,
					&again),
				 0);
		assert_true(again.epoch > last.epoch);
		tb.patience = 3;
		/* a best epoch after the epochs done, or a NaN best, is refused */
		tb.start_best_epoch = tb.start_epoch + 1;
		assert_int_equal(tg_fit(tg_mlp_module(g.net), g.opt, NULL, &g.train, &val, NULL, &tb,
					&rest),
				 -1);
		assert_error(g.ctx, TG_EARG, "bad options:");
		assert_error(g.ctx, TG_EARG, "): start_best_epoch must lie in [0, start_epoch]");
		tg_clear_error(g.ctx);
		tb.start_best_epoch = 1;
		tb.start_best_val = NAN;
		assert_int_equal(tg_fit(tg_mlp_module(g.net), g.opt, NULL, &g.train, &val, NULL, &tb,
					&rest),
				 -1);
		assert_error(g.ctx, TG_EARG, "start_best_epoch 1 (loss nan): start_best_val must be a number");
		fixture_free(&g);
	}
	/* patience needs a validation set */
	to.on_epoch = NULL;
	assert_int_equal(tg_fit(tg_mlp_module(f.net), f.opt, NULL, &f.train, NULL, NULL, &to,
				&last),
			 -1);
	assert_error(f.ctx, TG_EARG, "tg_fit: early stopping (patience 3) needs a validation set");
	tg_dataset_free(&val);
	fixture_free(&f);
}

/* A data set of 4 samples of width w: x and float targets t as given. */
static tg_dataset tiny_set(int64_t w, const float *x, const float *t)
{
	tg_dataset ds = { .n = 4, .d = w, .tdim = w };
	ds.x = malloc(4 * (size_t)w * sizeof(float));
	ds.t = malloc(4 * (size_t)w * sizeof(float));
	memcpy(ds.x, x, 4 * (size_t)w * sizeof(float));
	memcpy(ds.t, t, 4 * (size_t)w * sizeof(float));
	return ds;
}

/* An optimizer made over another model's parameters (same context) would
 * train nothing: tg_fit refuses it before the first step. One over some of
 * the model's parameters trains those. */
static void an_optimizer_over_none_of_the_models_parameters_is_refused(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset reg = tiny_set(1, (const float[]){ 1, 2, 3, 4 }, (const float[]){ 1, 3, 2, 6 });
	tg_module *a = tg_model_parse(ctx, "linear:1:1", NULL);
	tg_module *b = tg_model_parse(ctx, "linear:1:1", NULL);
	tg_tensor *pa[2], *pb[2];
	assert_int_equal(tg_module_params(a, pa, 2), 2);
	assert_int_equal(tg_module_params(b, pb, 2), 2);
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	tg_optim *of_a = tg_optim_new(ctx, pa, 2, &oo);
	tg_optim *of_b_weight = tg_optim_new(ctx, pb, 1, &oo);
	tg_train_opts to = quiet_opts();
	to.epochs = 1;
	to.batch = 2;
	tg_task task = { .loss = TG_LOSS_MSE };
	double before = tg_get(pb[0], 0);
	assert_int_equal(tg_fit(b, of_a, &task, &reg, NULL, NULL, &to, NULL), -1);
	assert_error(ctx, TG_EARG, "tg_fit: the optimizer updates none of the model's 2 parameters");
	tg_clear_error(ctx);
	assert_true(tg_get(pb[0], 0) == before);
	assert_int_equal(tg_fit(b, of_b_weight, &task, &reg, NULL, NULL, &to, NULL), 0);
	assert_true(tg_get(pb[0], 0) != before);
	tg_optim_free(of_b_weight);
	tg_optim_free(of_a);
	tg_module_free(b);
	tg_module_free(a);
	tg_dataset_free(&reg);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* The identity as the model: its outputs are the features, so every figure
 * can be worked out by hand. Batches of 3 check the sums across batches. */
static void the_metrics_are_the_hand_computed_ones(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_module *id = tg_activation(ctx, (tg_act){ .kind = TG_ACT_IDENTITY }, "id");
	assert_non_null(id);
	/* regression: errors 0, -1, 1, -2: SSE 6, MSE 1.5, mean |d| 1; targets'
	 * mean 3, SST 4 + 0 + 1 + 9 = 14, R2 = 1 - 6/14 */
	tg_dataset reg = tiny_set(1, (const float[]){ 1, 2, 3, 4 }, (const float[]){ 1, 3, 2, 6 });
	tg_scores s;
	tg_task mse = { .loss = TG_LOSS_MSE };
	assert_int_equal(tg_score(id, &mse, &reg, 3, &s, NULL), 0);
	assert_near(s.loss, 1.5, 1e-6); /* an f32 op's */
	assert_near(s.mse, 1.5, 1e-12);
	assert_near(s.rmse, sqrt(1.5), 1e-12);
	assert_near(s.r2, 1 - 6.0 / 14.0, 1e-12);
	assert_true(isnan(s.acc));
	tg_task l1 = { .loss = TG_LOSS_L1 };
	assert_int_equal(tg_score(id, &l1, &reg, 3, &s, NULL), 0);
	assert_near(s.loss, 1.0, 1e-7);
	assert_near(s.r2, 1 - 6.0 / 14.0, 1e-12);
	/* targets far from 0 (1e6 and a few steps of f32's 1/16 there) over
	 * many rows: R2 as a two-pass sum finds it, not from sums of squares
	 * near 1e15 that cancel to the few digits they have left */
	enum { FAR = 1000 };
	tg_dataset far = { .n = FAR, .d = 1, .tdim = 1 };
	far.x = malloc(FAR * sizeof(float));
	far.t = malloc(FAR * sizeof(float));
	double mean = 0, sst = 0, sse = 0;
	for (int i = 0; i < FAR; i++) {
		far.t[i] = 1e6f + 0.0625f * (float)(i % 7);
		far.x[i] = far.t[i] + 0.0625f * (float)(i % 3 - 1);
		mean += far.t[i] / (double)FAR;
	}
	for (int i = 0; i < FAR; i++) {
		sst += (far.t[i] - mean) * (far.t[i] - mean);
		sse += ((double)far.x[i] - far.t[i]) * ((double)far.x[i] - far.t[i]);
	}
	assert_int_equal(tg_score(id, &l1, &far, 300, &s, NULL), 0);
	assert_near(s.mse, sse / FAR, 1e-15);
	assert_near(s.r2, 1 - sse / sst, 1e-9);
	tg_dataset_free(&far);
	/* Huber, delta 1: 0, 0.5, 0.5, 1 * (2 - 0.5) = 1.5: mean 0.625 */
	tg_task huber = { .loss = TG_LOSS_HUBER, .delta = 1 };
	assert_int_equal(tg_score(id, &huber, &reg, 3, &s, NULL), 0);
	assert_near(s.loss, 0.625, 1e-7);
	/* binary: logits -2, 0.5, 3, -1 against 0, 1, 0, 0: predicted 0, 1, 1, 0,
	 * 3 of 4 right; BCE = mean(max(x,0) - x t + ln(1 + e^-|x|)) */
	tg_dataset bin = tiny_set(1, (const float[]){ -2, 0.5f, 3, -1 },
				  (const float[]){ 0, 1, 0, 0 });
	double x[] = { -2, 0.5, 3, -1 }, t[] = { 0, 1, 0, 0 }, bce = 0;
	for (int i = 0; i < 4; i++)
		bce += (fmax(x[i], 0) - x[i] * t[i] + log1p(exp(-fabs(x[i])))) / 4;
	tg_task binary = { .loss = TG_LOSS_BCE_WITH_LOGITS };
	int64_t cm[4];
	assert_int_equal(tg_score(id, &binary, &bin, 3, &s, cm), 0);
	assert_near(s.acc, 0.75, 1e-12);
	assert_near(s.loss, bce, 1e-6);
	assert_true(isnan(s.r2));
	assert_int_equal(cm[0], 2); /* true 0, predicted 0 */
	assert_int_equal(cm[1], 1); /* true 0, predicted 1 */
	assert_int_equal(cm[2], 0);
	assert_int_equal(cm[3], 1);
	/* classes: logits rows of 2 with labels; argmax 1, 0, 0, 1 against 1, 1, 0, 0 */
	tg_dataset cls = { .n = 4, .d = 2, .classes = 2 };
	float cx[] = { 0, 1, 2, 0, 1, -1, -1, 3 };
	int32_t cy[] = { 1, 1, 0, 0 };
	cls.x = cx;
	cls.y = cy;
	double ce = 0;
	for (int i = 0; i < 4; i++) {
		double a = cx[2 * i], b = cx[2 * i + 1], m = fmax(a, b);
		double lse = m + log(exp(a - m) + exp(b - m));
		ce += (lse - cx[2 * i + cy[i]]) / 4;
	}
	assert_int_equal(tg_score(id, NULL, &cls, 3, &s, cm), 0);
	assert_near(s.acc, 0.5, 1e-12);
	assert_near(s.loss, ce, 1e-6);
	assert_int_equal(cm[0], 1);
	assert_int_equal(cm[1], 1);
	assert_int_equal(cm[2], 1);
	assert_int_equal(cm[3], 1);
	/* soft targets: argmax of the logits 1, 0, 0, 1 against that of the
	 * targets 1, 0, 1, 0; loss -sum t log_softmax(x) per row, averaged */
	const float sx[] = { 0, 1, 2, 0, 1, -1, -1, 3 };
	const float stt[] = { 0.3f, 0.7f, 0.6f, 0.4f, 0.2f, 0.8f, 0.9f, 0.1f };
	tg_dataset soft = tiny_set(2, sx, stt);
	double sce = 0;
	for (int i = 0; i < 4; i++) {
		double a = sx[2 * i], b = sx[2 * i + 1], m = fmax(a, b);
		double lse = m + log(exp(a - m) + exp(b - m));
		sce -= (stt[2 * i] * (a - lse) + stt[2 * i + 1] * (b - lse)) / 4;
	}
	tg_task st = { .loss = TG_LOSS_SOFT_CROSS_ENTROPY };
	assert_int_equal(tg_score(id, &st, &soft, 3, &s, NULL), 0);
	assert_near(s.acc, 0.5, 1e-12);
	assert_near(s.loss, sce, 1e-6);
	/* a target the loss refuses is named by its row of the set */
	soft.t[5] = 0.1f; /* row 2 sums to 0.3 */
	assert_int_equal(tg_score(id, &st, &soft, 3, &s, NULL), -1);
	assert_error(ctx, TG_EARG, "tg_score: the evaluation set's row 2 has targets summing to 0.3");
	tg_clear_error(ctx);
	soft.t[5] = -0.2f;
	assert_int_equal(tg_score(id, &st, &soft, 3, &s, NULL), -1);
	assert_error(ctx, TG_EARG,
		     "tg_score: the evaluation set's row 2 has target 1 = -0.2, outside [0, 1] "
		     "(soft cross-entropy loss)");
	tg_clear_error(ctx);
	assert_int_equal(tg_score(id, &binary, &soft, 3, &s, NULL), -1);
	assert_error(ctx, TG_EARG, "row 2 has target 1 = -0.2, outside [0, 1] (bce-with-logits");
	tg_clear_error(ctx);
	tg_dataset_free(&soft);
	/* a task and a data set that do not go together */
	assert_int_equal(tg_score(id, &mse, &cls, 3, &s, NULL), -1);
	assert_error(ctx, TG_EARG, "tg_score: the evaluation set has class labels; the mse loss "
				   "needs float targets");
	tg_clear_error(ctx);
	tg_module_free(id);
	tg_dataset_free(&reg);
	tg_dataset_free(&bin);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(an_mlp_learns_the_uci_digits_to_95_percent_test_accuracy),
		cmocka_unit_test(a_step_that_fails_in_anomaly_mode_stops_training_naming_the_op),
		cmocka_unit_test(bad_data_is_named_by_its_row_of_the_set),
		cmocka_unit_test(a_non_finite_loss_stops_training_without_anomaly_mode),
		cmocka_unit_test(a_resume_inside_an_epoch_is_refused),
		cmocka_unit_test(a_set_unlike_the_train_set_is_refused_before_a_step),
		cmocka_unit_test(a_non_finite_first_loss_names_the_starting_parameters),
		cmocka_unit_test(an_error_set_by_on_step_counts_the_step_it_follows),
		cmocka_unit_test(a_diverging_loss_stops_training_without_anomaly_mode),
		cmocka_unit_test(a_failed_step_leaves_the_running_statistics_as_they_were),
		cmocka_unit_test(a_net_that_does_not_fit_the_data_is_a_shape_error),
		cmocka_unit_test(an_optimizer_of_another_context_is_refused),
		cmocka_unit_test(a_label_beyond_the_models_outputs_is_named_before_training),
		cmocka_unit_test(a_failure_in_the_short_last_batch_says_so),
		cmocka_unit_test(training_does_nothing_while_the_context_holds_an_error),
		cmocka_unit_test(the_csv_log_has_a_header_and_one_row_per_epoch),
		cmocka_unit_test(a_log_that_cannot_be_written_stops_the_run_at_that_epoch),
		cmocka_unit_test(a_log_path_that_would_lose_data_or_hang_is_refused),
		cmocka_unit_test(a_resumed_run_keeps_the_rows_of_its_log),
		cmocka_unit_test(iterations_with_replacement_count_epochs_of_n_over_b_steps),
		cmocka_unit_test(sizes_too_large_to_count_are_refused_or_read_as_all_the_data),
		cmocka_unit_test(a_callback_returning_false_stops_training_after_that_epoch),
		cmocka_unit_test(a_run_resumed_after_its_last_epoch_prints_no_confusion_matrix),
		cmocka_unit_test(evaluation_is_deterministic_and_restores_the_modes),
		cmocka_unit_test(training_keeps_a_module_the_caller_keeps_in_evaluation_mode),
		cmocka_unit_test(evaluation_with_grad_mode_off_stays_off),
		cmocka_unit_test(the_confusion_matrix_prints_names_counts_and_recall),
		cmocka_unit_test(a_net_and_optimizer_may_be_freed_after_their_context),
		cmocka_unit_test(a_regressor_learns_the_diabetes_data_to_r2_above_0_45),
		cmocka_unit_test(a_binary_classifier_learns_breast_cancer_to_95_percent),
		cmocka_unit_test(a_classifier_module_learns_the_digits_through_tg_fit),
		cmocka_unit_test(early_stopping_stops_after_patience_epochs_without_improvement),
		cmocka_unit_test(an_optimizer_over_none_of_the_models_parameters_is_refused),
		cmocka_unit_test(the_metrics_are_the_hand_computed_ones),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
