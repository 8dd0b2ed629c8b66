/*
 * init_train.c - seed 001's initialisation experiment: a
 * 784-100-100-100-100-10 ReLU net trained by SGD (lr 0.01, batch 128, 2000
 * iterations) on Fashion-MNIST from weights drawn with std 0.01, lecun
 * ("Xavier" in the seed, sqrt(1/n_in)) and he (sqrt(2/n_in)), on the same
 * batches, each by tg_train one iteration at a time (ex_loss_curves in
 * experiment.c).
 *
 * Prints the losses every 100 iterations as the seed does, then the first
 * ones beside the seed's (MNIST) numbers and a ranking; writes
 * init_train.csv and init_train.gp, and draws init_train.png.
 *
 *	init_train [--out DIR] [--quick]
 */
#include "experiments.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- the arms --------------------------------------------------------------------- */

void ex_init_arms(ex_arm *arms)
{
	static const char *const label[3] = { "std=0.01", "lecun", "he" };
	static const tg_init init[3] = {
		{ TG_INIT_STD, 0.01 }, { TG_INIT_LECUN, 0 }, { TG_INIT_HE, 0 } };
	for (int i = 0; i < 3; i++) {
		arms[i].label = label[i];
		arms[i].net = tg_mlp_defaults();
		arms[i].net.init = init[i];
		arms[i].optim = tg_optim_defaults(TG_SGD);
		arms[i].optim.lr = 0.01;
	}
}

/* ---- the demo ---------------------------------------------------------------------------- */

#ifndef EX_NO_MAIN

enum { ARMS = 3, TAIL = 100, HALF = 10 };

/* seed 001's printout at iterations 0, 100, 200, 300 (MNIST) */
static const double seed_loss[ARMS][4] = {
	{ 2.302544767455796, 2.3024172483891268, 2.299290101339929, 2.3014737397159477 },
	{ 2.3117967395778862, 2.2400323717243653, 2.0599169677630824, 1.7305601921031397 },
	{ 2.3191493719051977, 1.3790426576164923, 0.7262553260848184, 0.5459644302920093 },
};

int main(int argc, char **argv)
{
	demo_plot cli = demo_plot_args(argc, argv, "init_train",
					"std 0.01, lecun and he initialisation, trained on Fashion-MNIST",
					"301 iterations instead of 2000");

	char err[EX_ERR];
	tg_dataset train = { 0 }, test = { 0 };
	if (ex_load_fashion(&train, &test, err)) {
		fprintf(stderr, "init_train: %s\n", err);
		return 1;
	}
	ex_arm arms[ARMS];
	ex_init_arms(arms);
	ex_curves_opts o = ex_curves_defaults();
	if (cli.quick)
		o.iters = 301;
	printf("%s ReLU, SGD lr %g, batch %lld, %lld iterations on Fashion-MNIST\n", o.spec,
	       arms[0].optim.lr, (long long)o.batch, (long long)o.iters);
	double *loss = malloc((size_t)(ARMS * o.iters) * sizeof *loss);
	int rc = loss ? ex_loss_curves(&train, &o, arms, ARMS, loss, stdout, err) : -1;
	if (rc) {
		fprintf(stderr, "init_train: %s\n", loss ? err : "out of memory");
		goto out;
	}

	printf("\nbatch loss beside seed 001's (MNIST; the seed calls lecun \"Xavier\"):\n");
	printf("%-10s", "iteration");
	for (int a = 0; a < ARMS; a++)
		printf("  %-8s %-8s", arms[a].label, "(seed)");
	printf("\n");
	for (int k = 0; k < 4 && k * 100 < o.iters; k++) {
		printf("%-10d", k * 100);
		for (int a = 0; a < ARMS; a++)
			printf("  %-8.4f (%.4f)", loss[a * o.iters + k * 100], seed_loss[a][k]);
		printf("\n");
	}
	double tail[ARMS];
	printf("mean loss over the last %d iterations:", TAIL);
	for (int a = 0; a < ARMS; a++) {
		tail[a] = ex_tail_mean(loss + a * o.iters, o.iters, TAIL);
		printf("  %s %.3f", arms[a].label, tail[a]);
	}
	printf("\nstd 0.01 %s at ln 10 = %.3f (no signal gets through 5 layers of tiny weights); "
	       "he ends %s lecun (%.3f vs %.3f)\n",
	       fabs(tail[0] - log(10)) < 0.05 ? "stays stuck" : "moves away from", log(10),
	       tail[2] < tail[1] ? "below" : "above", tail[2], tail[1]);

	char title[256];
	snprintf(title, sizeof title, "Initialisation on Fashion-MNIST: %s ReLU, SGD lr %g",
		 o.spec, arms[0].optim.lr);
	rc = ex_write_curves(cli.out, "init_train", arms, ARMS, loss, o.iters, HALF, title) ||
	     demo_render(cli.out, "init_train") < 0;
out:
	free(loss);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	return demo_end("init_train", rc ? 1 : 0);
}

#endif /* EX_NO_MAIN */
