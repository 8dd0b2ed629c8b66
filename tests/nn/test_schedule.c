/*
 * test_schedule.c - learning-rate schedules: step, exponential, cosine and
 * reduce-on-plateau give the rates PyTorch 1.13 gives (the tables below were
 * printed by torch.optim.lr_scheduler with an SGD of lr 0.1, one scheduler
 * step per epoch); the warm-up by hand; the command-line strings; a
 * position saved in a checkpoint gives the same rates after it.
 */
#include "../engine/test_util.h"

#include "tapegrad_train.h"

#include <stdlib.h>
#include <unistd.h>

/* StepLR(step_size=3, gamma=0.5) */
static const double STEP_LR[] = { 0.10000000000000001, 0.10000000000000001, 0.10000000000000001, 0.050000000000000003, 0.050000000000000003, 0.050000000000000003, 0.025000000000000001, 0.025000000000000001, 0.025000000000000001, 0.012500000000000001 };
/* ExponentialLR(gamma=0.9) */
static const double EXP_LR[] = { 0.10000000000000001, 0.090000000000000011, 0.081000000000000016, 0.07290000000000002, 0.065610000000000016, 0.059049000000000018, 0.05314410000000002, 0.047829690000000022, 0.043046721000000024, 0.03874204890000002 };
/* CosineAnnealingLR(T_max=8, eta_min=0.001) */
static const double COS_LR[] = { 0.10000000000000001, 0.096232036859308701, 0.085501785668734107, 0.069442829902071956, 0.050500000000000003, 0.031557170097928057, 0.0154982143312659, 0.0047679631406913059, 0.001 };
/* ReduceLROnPlateau(mode="min", factor=0.5, patience=2, threshold=0.01,
 * min_lr=0.02), stepped with PLATEAU_LOSS[e] after epoch e */
static const double PLATEAU_LOSS[] = { 1, 0.9, 0.895, 0.894, 0.893, 0.8, 0.85, 0.81, 0.805, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9 };
static const double PLATEAU_LR[] = { 0.10000000000000001, 0.10000000000000001, 0.10000000000000001, 0.10000000000000001, 0.10000000000000001, 0.050000000000000003, 0.050000000000000003, 0.050000000000000003, 0.050000000000000003, 0.025000000000000001, 0.025000000000000001, 0.025000000000000001, 0.02, 0.02, 0.02, 0.02 };

static void expect_rates(tg_schedule *s, const double *want, size_t n, const double *loss)
{
	for (size_t e = 0; e < n; e++) {
		double got = tg_schedule_lr(s, (int64_t)e, loss && e ? loss[e - 1] : NAN);
		if (!(fabs(got - want[e]) <= 1e-12 * want[e]))
			fail_msg("epoch %zu: lr %.17g, PyTorch %.17g", e, got, want[e]);
	}
}

static tg_schedule parsed(tg_ctx *ctx, const char *spec, int64_t epochs)
{
	tg_schedule s;
	memset(&s, 0xab, sizeof s);
	if (tg_schedule_parse(ctx, spec, 0.1, epochs, &s))
		fail_msg("%s: %s", spec, tg_error(ctx));
	return s;
}

static void closed_forms_match_pytorch(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_schedule s = parsed(ctx, "step:3:0.5", 10);
	expect_rates(&s, STEP_LR, LEN(STEP_LR), NULL);
	s = parsed(ctx, "exp:0.9", 10);
	expect_rates(&s, EXP_LR, LEN(EXP_LR), NULL);
	/* a gamma below the normal doubles is a number like any other */
	s = parsed(ctx, "exp:1e-320", 10);
	assert_near(tg_schedule_lr(&s, 1, NAN), 0.1 * 1e-320, 0);
	s = parsed(ctx, "cosine:8:0.001", 100);
	expect_rates(&s, COS_LR, LEN(COS_LR), NULL);
	/* past T the cosine stays at its minimum (PyTorch's would rise again) */
	assert_near(tg_schedule_lr(&s, 9, NAN), 0.001, 0);
	assert_near(tg_schedule_lr(&s, 50, NAN), 0.001, 0);
	/* T from the run's epochs; a constant is a constant */
	s = parsed(ctx, "cosine", 8);
	assert_near(tg_schedule_lr(&s, 4, NAN), 0.05, 1e-15);
	s = parsed(ctx, "constant", 8);
	for (int e = 0; e < 20; e += 7)
		assert_near(tg_schedule_lr(&s, e, 3.0), 0.1, 0);
	/* epochs may be asked for in any order: only e counts */
	s = parsed(ctx, "step:3:0.5", 10);
	assert_near(tg_schedule_lr(&s, 9, NAN), STEP_LR[9], 1e-15);
	assert_near(tg_schedule_lr(&s, 2, NAN), STEP_LR[2], 1e-15);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void reduce_on_plateau_matches_pytorch(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_schedule s = parsed(ctx, "plateau:0.5:2:0.01:0.02", 10);
	expect_rates(&s, PLATEAU_LR, LEN(PLATEAU_LR), PLATEAU_LOSS);
	/* one loss per new epoch: asking again for the same epoch counts nothing */
	s = parsed(ctx, "plateau:0.5:0", 10);
	assert_near(tg_schedule_lr(&s, 0, NAN), 0.1, 0);
	assert_near(tg_schedule_lr(&s, 1, 1.0), 0.1, 0);  /* best 1 */
	assert_near(tg_schedule_lr(&s, 1, 2.0), 0.1, 0);  /* same epoch: ignored */
	assert_near(tg_schedule_lr(&s, 2, 2.0), 0.05, 0); /* 1 bad epoch > patience 0 */
	/* defaults: factor 0.1, patience 10, threshold 1e-4, min 0 */
	s = parsed(ctx, "plateau", 10);
	assert_near(s.factor, 0.1, 0);
	assert_int_equal(s.patience, 10);
	assert_near(s.threshold, 1e-4, 0);
	assert_near(s.min_lr, 0, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void warm_up_then_cosine_by_hand(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	/* W = 3, T = 7: 0.1 * (e+1)/4 for e < 3, then a cosine over 4 epochs */
	tg_schedule s = parsed(ctx, "warmup:3,cosine", 7);
	const double c = cos(M_PI / 4);
	const double want[] = { 0.025, 0.05, 0.075, 0.1, 0.1 * (1 + c) / 2, 0.05,
				0.1 * (1 - c) / 2, 0, 0 };
	expect_rates(&s, want, LEN(want), NULL);
	s = parsed(ctx, "warmup:2,cosine:6:0.01", 100);
	assert_near(tg_schedule_lr(&s, 0, NAN), 0.1 / 3, 1e-17);
	assert_near(tg_schedule_lr(&s, 2, NAN), 0.1, 1e-17);
	assert_near(tg_schedule_lr(&s, 4, NAN), 0.01 + 0.09 / 2, 1e-16);
	assert_near(tg_schedule_lr(&s, 6, NAN), 0.01, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* A struct filled in by hand is not checked until tg_fit checks it; asked
 * for a rate directly, a schedule out of range gives NAN (which
 * tg_optim_set_lr refuses, naming it) instead of dividing by a step size
 * of 0. */
static void a_schedule_out_of_range_gives_nan_not_a_crash(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_schedule s = tg_schedule_defaults(TG_SCHED_STEP, 0.1, 10);
	s.step_size = 0;
	assert_true(isnan(tg_schedule_lr(&s, 3, NAN)));
	assert_int_equal(s.epoch, -1); /* the position stays */
	tg_tensor *w = tg_param(tg_ones(ctx, TG_F64, 1, (int64_t[]){ 2 }));
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	tg_optim *o = tg_optim_new(ctx, &w, 1, &oo);
	tg_optim_set_lr(o, tg_schedule_lr(&s, 3, NAN));
	assert_error(ctx, TG_EARG, "lr = nan");
	assert_near(tg_optim_lr(o), 0.01, 0);
	tg_clear_error(ctx);
	s = tg_schedule_defaults(TG_SCHED_WARMUP_COSINE, 0.1, 3);
	s.warmup = 0;
	assert_true(isnan(tg_schedule_lr(&s, 0, NAN)));
	s = tg_schedule_defaults(TG_SCHED_PLATEAU, 0.1, 3);
	s.factor = 2;
	assert_true(isnan(tg_schedule_lr(&s, 1, 0.5)));
	assert_true(isnan(tg_schedule_lr(NULL, 1, 0.5)));
	s = tg_schedule_defaults(TG_SCHED_STEP, 0.1, 10);
	assert_true(isnan(tg_schedule_lr(&s, -1, NAN))); /* no epoch before the first */
	assert_int_equal(s.epoch, -1);
	/* fixed, it runs */
	s.factor = 0.5;
	assert_near(tg_schedule_lr(&s, 1, 0.5), 0.1, 0);
	tg_optim_free(o);
	tg_ctx_free(ctx);
}

static void parse_fills_the_fields_and_names_bad_strings(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_schedule s = parsed(ctx, "step:10:0.5", 30);
	assert_int_equal(s.kind, TG_SCHED_STEP);
	assert_int_equal(s.step_size, 10);
	assert_near(s.gamma, 0.5, 0);
	assert_near(s.base_lr, 0.1, 0);
	s = parsed(ctx, "step:4", 30);
	assert_near(s.gamma, 0.1, 0);
	s = parsed(ctx, "exponential", 30);
	assert_int_equal(s.kind, TG_SCHED_EXPONENTIAL);
	assert_near(s.gamma, 0.95, 0);
	s = parsed(ctx, "warmup:5,cosine", 30);
	assert_int_equal(s.kind, TG_SCHED_WARMUP_COSINE);
	assert_int_equal(s.warmup, 5);
	assert_int_equal(s.t_max, 30);
	s = parsed(ctx, "plateau:0.5:3", 30);
	assert_int_equal(s.kind, TG_SCHED_PLATEAU);
	assert_near(s.factor, 0.5, 0);
	assert_int_equal(s.patience, 3);
	assert_int_equal(s.epoch, -1);
	assert_true(isinf(s.best));

	static const struct {
		const char *spec;
		const char *text;
	} bad[] = {
		{ "linear", "\"linear\": unknown schedule" },
		{ "step", "step takes the step size" },
		{ "step:0", "the step size must be >= 1 epoch" },
		{ "step:2:1.5", "gamma must lie in (0, 1]" },
		{ "step:2x", "not a whole number" },
		{ "exp:0", "gamma must lie in (0, 1]" },
		{ "cosine:0", "cosine needs T >= 1" },
		{ "cosine:10:0.5", "min_lr must lie in [0, base_lr]" },
		{ "warmup:5", "followed by \",cosine\"" },
		{ "warmup:5,step:2", "followed by \",cosine\"" },
		{ "warmup:10,cosine", "T must exceed the warm-up" },
		{ "cosine,cosine", "only a warm-up is followed" },
		{ "plateau:1", "the factor must lie in (0, 1)" },
		{ "plateau:0.5:-1", "the patience must be >= 0" },
		{ "plateau:0.5:1:0:0:9", "plateau takes at most factor" },
		{ "step:1:2:3:4:5:6:7", "too many fields" },
		{ "", "unknown schedule" },
	};
	for (size_t i = 0; i < LEN(bad); i++) {
		tg_schedule keep = s;
		assert_int_equal(tg_schedule_parse(ctx, bad[i].spec, 0.1, 10, &s), -1);
		assert_error(ctx, TG_EARG, bad[i].text);
		assert_error(ctx, TG_EARG, "tg_schedule_parse");
		assert_memory_equal(&keep, &s, sizeof s); /* out untouched */
		tg_clear_error(ctx);
	}
	assert_int_equal(tg_schedule_parse(ctx, "cosine", 0, 10, &s), -1);
	assert_error(ctx, TG_EARG, "base_lr must be > 0");
	tg_clear_error(ctx);
	assert_int_equal(tg_schedule_parse(ctx, NULL, 0.1, 10, &s), -1);
	assert_error(ctx, TG_ENULL, "spec is NULL");
	tg_ctx_free(ctx);
}

/* Runs a plateau schedule 6 epochs, saves its position in a checkpoint,
 * restores it into a schedule parsed afresh and checks the next 10 rates
 * equal those of the schedule that ran on. */
static void a_position_saved_in_a_checkpoint_gives_the_same_rates(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	char path[] = "/tmp/tg_sched_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	static const char *const specs[] = { "plateau:0.5:1:0.01", "warmup:3,cosine:12",
					     "step:2:0.7" };
	for (size_t k = 0; k < LEN(specs); k++) {
		tg_schedule a = parsed(ctx, specs[k], 20);
		for (int e = 0; e < 6; e++)
			tg_schedule_lr(&a, e, e ? PLATEAU_LOSS[e - 1] : NAN);
		double v[TG_SCHEDULE_STATE];
		assert_int_equal(tg_schedule_state(&a, v, LEN(v)), TG_SCHEDULE_STATE);
		tg_state *st = tg_state_new(ctx);
		assert_int_equal(tg_state_set_f64(st, "schedule", v, TG_SCHEDULE_STATE), 0);
		assert_int_equal(tg_checkpoint_save_state(ctx, path, st), 0);
		tg_state_free(st);

		assert_int_equal(tg_checkpoint_read(ctx, path, &st), 0);
		double w[TG_SCHEDULE_STATE + 1];
		assert_int_equal(tg_state_f64(st, "schedule", w, LEN(w)), TG_SCHEDULE_STATE);
		tg_state_free(st);
		tg_schedule b = parsed(ctx, specs[k], 20);
		assert_int_equal(tg_schedule_set_state(ctx, &b, w, TG_SCHEDULE_STATE), 0);
		assert_int_equal(b.epoch, 5);
		for (int e = 6; e < 16; e++) {
			double loss = PLATEAU_LOSS[e - 1];
			double la = tg_schedule_lr(&a, e, loss), lb = tg_schedule_lr(&b, e, loss);
			if (la != lb)
				fail_msg("%s, epoch %d: %.17g after restoring, %.17g straight",
					 specs[k], e, lb, la);
		}
		if (k == 0)
			assert_true(a.lr < 0.1); /* the plateau did reduce on the way */
	}
	/* another kind's position is refused */
	tg_schedule a = parsed(ctx, "plateau", 20), b = parsed(ctx, "cosine", 20);
	double v[TG_SCHEDULE_STATE];
	tg_schedule_state(&a, v, LEN(v));
	assert_int_equal(tg_schedule_set_state(ctx, &b, v, TG_SCHEDULE_STATE), -1);
	assert_error(ctx, TG_EARG, "another kind of schedule");
	tg_clear_error(ctx);
	assert_int_equal(tg_schedule_set_state(ctx, &a, v, 4), -1);
	assert_error(ctx, TG_EARG, "5 numbers");
	tg_clear_error(ctx);
	/* a plateau's rate only falls from base_lr 0.1, and not below min_lr */
	tg_schedule p = parsed(ctx, "plateau:0.5:2:0.01:0.001", 20);
	tg_schedule_state(&p, v, LEN(v));
	v[2] = 0.2;
	assert_int_equal(tg_schedule_set_state(ctx, &p, v, TG_SCHEDULE_STATE), -1);
	assert_error(ctx, TG_EARG,
		     "tg_schedule_set_state: the plateau's learning rate 0.2 is above its base_lr "
		     "0.1; it lies between min_lr 0.001 and base_lr 0.1");
	tg_clear_error(ctx);
	v[2] = 0.0005;
	assert_int_equal(tg_schedule_set_state(ctx, &p, v, TG_SCHEDULE_STATE), -1);
	assert_error(ctx, TG_EARG, "learning rate 0.0005 is below its min_lr 0.001");
	tg_clear_error(ctx);
	assert_near(p.lr, 0.1, 0); /* left as it was */
	v[2] = 0.05;
	assert_int_equal(tg_schedule_set_state(ctx, &p, v, TG_SCHEDULE_STATE), 0);
	assert_near(tg_schedule_lr(&p, 0, NAN), 0.05, 0);
	unlink(path);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(closed_forms_match_pytorch),
		cmocka_unit_test(reduce_on_plateau_matches_pytorch),
		cmocka_unit_test(warm_up_then_cosine_by_hand),
		cmocka_unit_test(a_schedule_out_of_range_gives_nan_not_a_crash),
		cmocka_unit_test(parse_fills_the_fields_and_names_bad_strings),
		cmocka_unit_test(a_position_saved_in_a_checkpoint_gives_the_same_rates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
