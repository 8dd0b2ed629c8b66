/*
 * optimizers.c - the book's optimizer comparison on real data (chapter 6),
 * Fashion-MNIST standing in for MNIST: a 784-100-100-100-100-10 ReLU net
 * with He initialisation, batch 128, 2000 iterations, trained by SGD (lr
 * 0.01), Momentum (0.01), AdaGrad (0.01) and Adam (0.001) from the same
 * weights on the same batches, each by tg_train one iteration at a time
 * (ex_loss_curves in experiment.c), which gives every batch's loss.
 *
 * Prints the losses every 100 iterations and a ranking by the mean loss of
 * the last 100 iterations, writes optimizers.csv (raw and smoothed losses)
 * and optimizers.gp, and draws optimizers.png.
 *
 *	optimizers [--out DIR] [--quick]
 */
#include "experiments.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- the arms --------------------------------------------------------------------- */

void ex_optimizer_arms(ex_arm *arms)
{
	static const tg_optim_kind kind[4] = { TG_SGD, TG_MOMENTUM, TG_ADAGRAD, TG_ADAM };
	static const double lr[4] = { 0.01, 0.01, 0.01, 0.001 };
	for (int i = 0; i < 4; i++) {
		arms[i].label = tg_optim_name(kind[i]);
		arms[i].net = tg_mlp_defaults(); /* ReLU, He, f32 */
		arms[i].optim = tg_optim_defaults(kind[i]);
		arms[i].optim.lr = lr[i];
	}
}

/* ---- the demo ---------------------------------------------------------------------------- */

#ifndef EX_NO_MAIN

enum { ARMS = 4, TAIL = 100, HALF = 10 };

int main(int argc, char **argv)
{
	demo_plot cli = demo_plot_args(argc, argv, "optimizers",
					"SGD, Momentum, AdaGrad and Adam on Fashion-MNIST",
					"200 iterations instead of 2000");

	char err[EX_ERR];
	tg_dataset train = { 0 }, test = { 0 };
	if (ex_load_fashion(&train, &test, err)) {
		fprintf(stderr, "optimizers: %s\n", err);
		return 1;
	}
	ex_arm arms[ARMS];
	ex_optimizer_arms(arms);
	ex_curves_opts o = ex_curves_defaults();
	if (cli.quick)
		o.iters = 200;
	printf("%s ReLU, He init, batch %lld, %lld iterations on Fashion-MNIST; lr: sgd %g, "
	       "momentum %g, adagrad %g, adam %g\n",
	       o.spec, (long long)o.batch, (long long)o.iters, arms[0].optim.lr,
	       arms[1].optim.lr, arms[2].optim.lr, arms[3].optim.lr);
	double *loss = malloc((size_t)(ARMS * o.iters) * sizeof *loss);
	int rc = loss ? ex_loss_curves(&train, &o, arms, ARMS, loss, stdout, err) : -1;
	if (rc) {
		fprintf(stderr, "optimizers: %s\n", loss ? err : "out of memory");
		goto out;
	}

	double tail[ARMS];
	int order[ARMS];
	for (int a = 0; a < ARMS; a++) {
		tail[a] = ex_tail_mean(loss + a * o.iters, o.iters, TAIL);
		order[a] = a;
	}
	for (int i = 1; i < ARMS; i++) /* insertion sort by tail loss */
		for (int j = i; j > 0 && tail[order[j]] < tail[order[j - 1]]; j--) {
			int t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	printf("mean loss over the last %d iterations:", TAIL);
	for (int i = 0; i < ARMS; i++)
		printf("  %s %.3f", arms[order[i]].label, tail[order[i]]);
	printf("\nfastest: %s; slowest: %s, whose loss is %.1fx the fastest's "
	       "(the book, on MNIST: SGD clearly slowest, the other three close)\n",
	       arms[order[0]].label, arms[order[ARMS - 1]].label,
	       tail[order[ARMS - 1]] / tail[order[0]]);

	char title[256];
	snprintf(title, sizeof title,
		 "Optimizers on Fashion-MNIST: %s ReLU, He init, batch %lld", o.spec,
		 (long long)o.batch);
	rc = ex_write_curves(cli.out, "optimizers", arms, ARMS, loss, o.iters, HALF, title) ||
	     demo_render(cli.out, "optimizers") < 0;
out:
	free(loss);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	return demo_end("optimizers", rc ? 1 : 0);
}

#endif /* EX_NO_MAIN */
