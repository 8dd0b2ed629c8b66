/*
 * test_experiments.c - the seeds' chapter-6 experiments, run short, and the
 * qualitative result each one exists to show.
 *
 * The functions under test are the ones the demos run (demos/<experiment>.c,
 * built here without their mains), with fewer iterations and fixed seeds. Every assertion is about what the
 * run computed: a path that ends nearer the minimum than it started, a loss
 * ordering, a fraction of saturated units, a truth table, a net that cannot
 * beat ln 2. The only fixed numbers are hand-derived (a first SGD step, the
 * gates' tables, ln 2). Fashion-MNIST tests are skipped when the data set is
 * not installed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../demos/experiments.h"

#define assert_ok(rc, err)                                                        \
	do {                                                                      \
		if ((rc) != 0)                                                    \
			fail_msg("experiment failed: %s", err);                   \
	} while (0)

#define assert_below(a, b)                                                        \
	do {                                                                      \
		double a_ = (a), b_ = (b);                                        \
		if (!(a_ < b_))                                                   \
			fail_msg("%s = %.6g is not below %s = %.6g", #a, a_, #b, b_); \
	} while (0)

/* ---- 1. the valley ------------------------------------------------------------------- */

static void valley_paths_end_nearer_the_minimum_than_they_started(void **state)
{
	(void)state;
	char err[EX_ERR];
	ex_valley_opts o = ex_valley_defaults();
	ex_valley *v = malloc(sizeof *v);
	assert_non_null(v);
	assert_ok(ex_valley_run(&o, v, err), err);
	double f0 = ex_valley_f(o.x0, o.y0);
	double d0 = hypot(o.x0, o.y0);
	for (int k = 0; k < EX_VALLEY_OPTIMS; k++) {
		double x = v->x[k][o.steps], y = v->y[k][o.steps];
		print_message("%-8s ends at (%.4f, %.4f), f %.4g (started at f %.4g)\n",
			      tg_optim_name(o.kind[k]), x, y, ex_valley_f(x, y), f0);
		assert_below(ex_valley_f(x, y), f0 / 10);
		assert_below(hypot(x, y), d0);
	}
	free(v);
}

/* SGD's first step by hand: grad f(-7, 2) = (x/10, 2y) = (-0.7, 4), so lr 0.95
 * moves to (-7 + 0.665, 2 - 3.8) = (-6.335, -1.8); after that y = -0.9 y each
 * step, so SGD crosses the valley floor on every step: the zigzag. */
static void valley_sgd_takes_the_gradient_step_and_zigzags(void **state)
{
	(void)state;
	char err[EX_ERR];
	ex_valley_opts o = ex_valley_defaults();
	ex_valley *v = malloc(sizeof *v);
	assert_non_null(v);
	assert_ok(ex_valley_run(&o, v, err), err);
	assert_int_equal(o.kind[0], TG_SGD);
	if (fabs(v->x[0][1] - -6.335) > 1e-12 || fabs(v->y[0][1] - -1.8) > 1e-12)
		fail_msg("first SGD step reached (%.15g, %.15g), expected (-6.335, -1.8)",
			 v->x[0][1], v->y[0][1]);
	for (int i = 1; i <= o.steps; i++)
		if ((v->y[0][i] > 0) == (v->y[0][i - 1] > 0))
			fail_msg("SGD's y kept its sign from step %d (%.4g) to %d (%.4g)", i - 1,
				 v->y[0][i - 1], i, v->y[0][i]);
	free(v);
}

/* ---- 3. activation histograms --------------------------------------------------------- */

static void init_histograms_saturate_collapse_or_spread_as_the_seed_shows(void **state)
{
	(void)state;
	char err[EX_ERR];
	ex_hist_opts o = ex_hist_defaults();
	ex_hist *h = malloc(sizeof *h);
	assert_non_null(h);
	assert_ok(ex_hist_run(&o, h, err), err);
	const ex_hist_layer *sig1 = h->layer[0], *sig001 = h->layer[1], *siglc = h->layer[2];
	for (int l = 0; l < EX_HIST_LAYERS; l++) {
		print_message("layer %d: sigmoid std 1: %.2f at the ends; std 0.01: %.2f near 0.5;"
			      " lecun: %.2f at the ends, std %.3f\n",
			      l + 1, sig1[l].ends, sig001[l].mid, siglc[l].ends, siglc[l].std);
		/* std 1: mostly within 0.05 of 0 or 1 */
		assert_below(0.5, sig1[l].ends);
		/* std 0.01: everything within 0.05 of 0.5 */
		assert_below(0.9, sig001[l].mid);
		/* lecun: a spread, with neither failure */
		assert_below(siglc[l].ends, sig1[l].ends / 10);
		assert_below(5 * sig001[l].std, siglc[l].std);
	}
	const ex_hist_layer *r001 = h->layer[3], *rlc = h->layer[4], *rhe = h->layer[5];
	int last = EX_HIST_LAYERS - 1;
	double shrink001 = r001[last].std / r001[0].std;
	double shrinklc = rlc[last].std / rlc[0].std;
	double shrinkhe = rhe[last].std / rhe[0].std;
	print_message("ReLU std, layer 5 / layer 1: std 0.01 %.3g, lecun %.3g, he %.3g\n",
		      shrink001, shrinklc, shrinkhe);
	assert_below(shrink001, 1e-3); /* collapses to 0 */
	assert_below(shrinklc, 0.6);	/* shrinks by about 1/sqrt(2) a layer */
	assert_below(0.6, shrinkhe);	/* keeps its spread */
	assert_below(shrinkhe, 1.7);
	free(h);
}

/* ---- 4. initialisation and training --------------------------------------------------- */

static int load_fashion(void **state)
{
	tg_dataset *d = calloc(2, sizeof *d);
	char err[EX_ERR];
	if (!d || ex_load_fashion(&d[0], &d[1], err)) {
		print_message("Fashion-MNIST not loaded (%s): its tests are skipped\n",
			      d ? err : "out of memory");
		free(d);
		d = NULL;
	}
	*state = d;
	return 0;
}

static int free_fashion(void **state)
{
	tg_dataset *d = *state;
	if (d) {
		tg_dataset_free(&d[0]);
		tg_dataset_free(&d[1]);
		free(d);
	}
	return 0;
}

static void init_training_loss_falls_fastest_under_he_and_not_at_all_under_std_001(void **state)
{
	tg_dataset *d = *state;
	if (!d)
		skip();
	char err[EX_ERR];
	ex_arm arms[3];
	ex_init_arms(arms); /* std 0.01, lecun, he */
	ex_curves_opts o = ex_curves_defaults();
	o.iters = 300;
	double *loss = malloc((size_t)(3 * o.iters) * sizeof *loss);
	assert_non_null(loss);
	assert_ok(ex_loss_curves(&d[0], &o, arms, 3, loss, NULL, err), err);
	double tail[3];
	for (int a = 0; a < 3; a++) {
		tail[a] = ex_tail_mean(loss + a * o.iters, o.iters, 50);
		print_message("%s: first loss %.4f, mean of the last 50 of %lld: %.4f\n",
			      arms[a].label, loss[a * o.iters], (long long)o.iters, tail[a]);
	}
	assert_below(tail[2], tail[1]); /* he < lecun */
	assert_below(tail[1], tail[0]); /* lecun < std 0.01 */
	/* std 0.01 is stuck at chance, ln 10 (10 classes, uniform softmax) */
	if (fabs(tail[0] - log(10)) > 0.02)
		fail_msg("std 0.01's loss %.4f moved away from ln 10 = %.4f", tail[0], log(10));
	free(loss);
}

/* ---- 5. batch norm, the overflow --------------------------------------------------------- */

static void batchnorm_run_stops_an_overflowing_net_at_its_first_inf(void **state)
{
	tg_dataset *d = *state;
	if (!d)
		skip();
	char err[EX_ERR];
	ex_bn_opts o = ex_bn_defaults();
	o.nscales = 1; /* weight std 1, where the book's plain net overflows */
	o.epochs = 1;
	ex_bn_result *r = calloc(1, sizeof *r);
	assert_non_null(r);
	assert_ok(ex_bn_run(&d[0], &o, r, NULL, err), err);
	print_message("std %g: with batch norm %s (accuracy %.3f), without: %s\n", r->std,
		      r->bn.failed < 0 ? "ran" : r->bn.error, r->bn.acc[1],
		      r->plain.failed < 0 ? "ran" : r->plain.error);
	assert_true(r->std == 1);
	assert_int_equal(r->bn.failed, -1);
	assert_true(r->bn.acc[1] >= 0 && r->bn.acc[1] <= 1);
	assert_int_equal(r->plain.failed, 1);
	assert_non_null(strstr(r->plain.error, "anomaly: "));
	assert_true(isnan(r->plain.acc[1]));
	free(r);
}

/* ---- 8. gates and XOR -------------------------------------------------------------------- */

static void assert_table(const char *name, const int *got, const int *want)
{
	for (int i = 0; i < 4; i++)
		if (got[i] != want[i])
			fail_msg("%s(%g, %g) = %d, expected %d", name, ex_gate_in[i][0],
				 ex_gate_in[i][1], got[i], want[i]);
}

static void gates_give_their_truth_tables_and_xor_is_and_of_nand_and_or(void **state)
{
	(void)state;
	char err[EX_ERR];
	int got[4];
	assert_ok(ex_gate_eval(&ex_and, ex_gate_in, got, err), err);
	assert_table("AND", got, (int[]){ 0, 0, 0, 1 });
	assert_ok(ex_gate_eval(&ex_nand, ex_gate_in, got, err), err);
	assert_table("NAND", got, (int[]){ 1, 1, 1, 0 });
	assert_ok(ex_gate_eval(&ex_or, ex_gate_in, got, err), err);
	assert_table("OR", got, (int[]){ 0, 1, 1, 1 });
	assert_ok(ex_xor_by_gates(got, err), err);
	assert_table("XOR", got, (int[]){ 0, 1, 1, 0 });
}

static void xor_is_learned_by_two_layers_and_not_by_one(void **state)
{
	(void)state;
	char err[EX_ERR];
	ex_xor_opts o = ex_xor_defaults();
	ex_xor *x = calloc(1, sizeof *x);
	assert_non_null(x);
	assert_ok(ex_xor_run_all(&o, x, err), err);
	const ex_xor_run *one = &x->one.run[x->one.best], *two = &x->two.run[x->two.best];
	print_message("2-1: solved %d of %d, best loss %.6f; 2-2-1: solved %d of %d, best "
		      "loss %.6f, outputs %.3f %.3f %.3f %.3f\n",
		      x->one.solved, o.restarts, one->loss, x->two.solved, o.restarts, two->loss,
		      two->y[0], two->y[1], two->y[2], two->y[3]);
	/* a line cannot separate XOR, and a linear logit's least loss is ln 2 */
	assert_int_equal(x->one.solved, 0);
	for (int r = 0; r < o.restarts; r++)
		assert_below(log(2) - 1e-9, x->one.run[r].loss);
	/* a hidden layer can */
	assert_true(x->two.solved >= 1);
	assert_true(two->solved);
	assert_below(two->loss, 0.05);
	free(x);
}

int main(void)
{
	const struct CMUnitTest fast[] = {
		cmocka_unit_test(valley_paths_end_nearer_the_minimum_than_they_started),
		cmocka_unit_test(valley_sgd_takes_the_gradient_step_and_zigzags),
		cmocka_unit_test(init_histograms_saturate_collapse_or_spread_as_the_seed_shows),
		cmocka_unit_test(gates_give_their_truth_tables_and_xor_is_and_of_nand_and_or),
		cmocka_unit_test(xor_is_learned_by_two_layers_and_not_by_one),
	};
	const struct CMUnitTest data[] = {
		cmocka_unit_test(
			init_training_loss_falls_fastest_under_he_and_not_at_all_under_std_001),
		cmocka_unit_test(batchnorm_run_stops_an_overflowing_net_at_its_first_inf),
	};
	int failed = cmocka_run_group_tests_name("experiments", fast, NULL, NULL);
	failed += cmocka_run_group_tests_name("experiments on Fashion-MNIST", data, load_fashion,
					      free_fashion);
	return failed;
}
