/*
 * overfit.c - overfitting and two cures (the book's chapter 6): 300 training
 * samples of Fashion-MNIST, a 784-100x6-10 ReLU net (He init), SGD lr 0.01,
 * batch 100, 200 epochs: without regularisation, with weight decay
 * (lambda 0.1, the optimizer's) and with dropout (p 0.2, inverted).
 *
 * The three nets start from the same weights and see the same batches.
 * Prints train and test accuracy every 20 epochs and each net's final
 * train-test gap; writes overfit.csv and overfit.gp, and draws overfit.png.
 *
 *	overfit [--out DIR] [--quick]
 */
#include "experiments.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const title[EX_OVERFIT_ARMS] = {
	"no regularisation", "weight decay", "dropout"
};

static int write_csv(const char *dir, const ex_overfit_opts *o, const ex_overfit *r)
{
	FILE *f = ex_create(dir, "overfit.csv");
	if (!f)
		return -1;
	fprintf(f, "epoch");
	for (int a = 0; a < EX_OVERFIT_ARMS; a++)
		fprintf(f, ",%s_train,%s_test", r->label[a], r->label[a]);
	fprintf(f, "\n");
	for (int e = 0; e <= o->epochs; e++) {
		fprintf(f, "%d", e);
		for (int a = 0; a < EX_OVERFIT_ARMS; a++)
			fprintf(f, ",%.4f,%.4f", r->train_acc[a][e], r->test_acc[a][e]);
		fprintf(f, "\n");
	}
	return ex_close(f, dir, "overfit.csv");
}

static int write_gp(const char *dir, const ex_overfit_opts *o, const ex_overfit *r,
		    int64_t n_test)
{
	FILE *gp = ex_create(dir, "overfit.gp");
	if (!gp)
		return -1;
	ex_gp_begin(gp, "overfit", 1400, 480);
	fprintf(gp,
		"set multiplot layout 1,3 title '%lld Fashion-MNIST training samples, "
		"%s ReLU, SGD lr %g, batch %lld; test: %lld samples'\n"
		"set xrange [0:%d]\n"
		"set yrange [0:1.02]\n"
		"set xlabel 'epochs'\n"
		"set ylabel 'accuracy'\n"
		"set key bottom right\n"
		"set grid\n",
		(long long)o->n_train, o->spec, o->lr, (long long)o->batch, (long long)n_test,
		o->epochs);
	const char *extra[EX_OVERFIT_ARMS] = { "", "", "" };
	char wd[64], dr[64];
	snprintf(wd, sizeof wd, ", lambda %g", o->weight_decay);
	snprintf(dr, sizeof dr, ", p %g", o->dropout);
	extra[1] = wd;
	extra[2] = dr;
	for (int a = 0; a < EX_OVERFIT_ARMS; a++) {
		double gap = r->train_acc[a][o->epochs] - r->test_acc[a][o->epochs];
		fprintf(gp,
			"set title '%s%s: final gap %.3f'\n"
			"plot 'overfit.csv' using 1:%d with lines lw 2 lc rgb '#1f77b4' "
			"title 'train', \\\n"
			"     'overfit.csv' using 1:%d with lines lw 2 lc rgb '#ff7f0e' "
			"title 'test'\n",
			title[a], extra[a], gap, 2 + 2 * a, 3 + 2 * a);
	}
	fprintf(gp, "unset multiplot\n");
	return ex_close(gp, dir, "overfit.gp");
}

int main(int argc, char **argv)
{
	ex_cli cli;
	int p = ex_cli_parse(argc, argv, "overfit",
			     "overfitting 300 samples, and weight decay and dropout against it",
			     &cli);
	if (p)
		return p > 0 ? 0 : 2;

	char err[EX_ERR];
	tg_dataset train = { 0 }, test = { 0 };
	if (ex_load_fashion(&train, &test, err)) {
		fprintf(stderr, "overfit: %s\n", err);
		return 1;
	}
	ex_overfit_opts o = ex_overfit_defaults();
	if (cli.quick) {
		o.epochs = 20;
		o.n_test = 1000;
	}
	int64_t n_test = o.n_test > 0 && o.n_test < test.n ? o.n_test : test.n;
	printf("%lld training samples, %s ReLU, SGD lr %g, batch %lld, %d epochs; "
	       "weight decay %g, dropout %g; test on %lld samples\n",
	       (long long)o.n_train, o.spec, o.lr, (long long)o.batch, o.epochs, o.weight_decay,
	       o.dropout, (long long)n_test);
	ex_overfit *r = calloc(1, sizeof *r);
	int rc = r ? ex_overfit_run(&train, &test, &o, r, stdout, err) : -1;
	if (rc) {
		fprintf(stderr, "overfit: %s\n", r ? err : "out of memory");
	} else {
		printf("after %d epochs (the book, on MNIST: train reaches 100%% and test stays "
		       "far below it without regularisation; both cures narrow the gap, and "
		       "train no longer reaches 100%%):\n",
		       o.epochs);
		for (int a = 0; a < EX_OVERFIT_ARMS; a++) {
			double tr = r->train_acc[a][o.epochs], te = r->test_acc[a][o.epochs];
			printf("  %-18s train %.3f  test %.3f  gap %.3f\n", title[a], tr, te,
			       tr - te);
		}
		rc = write_csv(cli.out, &o, r) || write_gp(cli.out, &o, r, n_test) ||
		     ex_render(cli.out, "overfit") < 0;
	}
	free(r);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	return rc ? 1 : 0;
}
