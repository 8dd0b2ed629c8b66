/*
 * hyper_search.c - random search for the learning rate and the weight decay
 * (seed 001's question 3, seed 004's list of hyperparameters; the book's
 * chapter 6): 500 Fashion-MNIST samples of which 20% are held out for
 * validation, a 784-100x6-10 ReLU net (He init), SGD, 100 trials of 50
 * epochs with lr = 10^U(-6, -2) and weight decay = 10^U(-8, -4).
 *
 * The trials run in two forked processes, each trial in a context of its
 * own; every child sends its results back through a pipe. Prints each trial
 * as it arrives and the best five, writes hyper_search.csv and
 * hyper_search.gp, and draws hyper_search.png: validation accuracy over
 * (lr, weight decay), and over lr alone.
 *
 *	hyper_search [--out DIR] [--quick]
 */
#include "experiments.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { BEST = 5 };

/* best first; failed trials (NAN) last */
static int by_val_acc(const void *a, const void *b)
{
	double x = ((const ex_trial *)a)->val_acc, y = ((const ex_trial *)b)->val_acc;
	if (isnan(x) || isnan(y))
		return isnan(x) - isnan(y);
	return (x < y) - (x > y);
}

static int write_csv(const char *dir, const ex_trial *sorted, int n)
{
	FILE *f = ex_create(dir, "hyper_search.csv");
	if (!f)
		return -1;
	fprintf(f, "rank,trial,lr,weight_decay,val_acc,train_acc,process\n");
	for (int i = 0; i < n; i++)
		fprintf(f, "%d,%d,%.6g,%.6g,%.4f,%.4f,%d\n", i + 1, sorted[i].index, sorted[i].lr,
			sorted[i].weight_decay, sorted[i].val_acc, sorted[i].train_acc,
			sorted[i].worker);
	return ex_close(f, dir, "hyper_search.csv");
}

static int write_gp(const char *dir, const ex_hyper_opts *o)
{
	FILE *gp = ex_create(dir, "hyper_search.gp");
	if (!gp)
		return -1;
	ex_gp_begin(gp, "hyper_search", 1400, 560);
	fprintf(gp,
		"set multiplot layout 1,2 title \"Random search, %d trials: %lld Fashion-MNIST "
		"samples (%lld held out), %s ReLU, SGD, %d epochs\\n"
		"lr = 10^U(%g, %g), weight decay = 10^U(%g, %g); circled: the best %d\"\n"
		"set logscale x\n"
		"set format x '10^{%%L}'\n"
		"set grid\n"
		"set key off\n"
		"set xrange [10**%g:10**%g]\n"
		"set title 'validation accuracy over (lr, weight decay)'\n"
		"set xlabel 'learning rate'\n"
		"set ylabel 'weight decay'\n"
		"set logscale y\n"
		"set format y '10^{%%L}'\n"
		"set yrange [10**%g:10**%g]\n"
		"set cbrange [0:1]\n"
		"set cblabel 'validation accuracy'\n"
		"set palette defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', "
		"0.75 '#5ec962', 1 '#fde725')\n"
		"plot 'hyper_search.csv' using 3:4:5 with points pt 7 ps 1.6 palette, \\\n"
		"     'hyper_search.csv' every ::0::%d using 3:4 with points pt 6 ps 3 lw 2 "
		"lc rgb 'red'\n"
		"unset logscale y\n"
		"set format y '%%g'\n"
		"set yrange [0:1]\n"
		"set ylabel 'validation accuracy'\n"
		"set title 'validation accuracy over lr (colour: weight decay, log10)'\n"
		"set cbrange [%g:%g]\n"
		"set cblabel 'log10 weight decay'\n"
		"plot 'hyper_search.csv' using 3:5:(log10($4)) with points pt 7 ps 1.4 palette, \\\n"
		"     'hyper_search.csv' every ::0::%d using 3:5 with points pt 6 ps 3 lw 2 "
		"lc rgb 'red'\n"
		"unset multiplot\n",
		o->trials, (long long)o->n, (long long)o->n_val, o->spec, o->epochs, o->lr_lo,
		o->lr_hi, o->wd_lo, o->wd_hi, BEST, o->lr_lo, o->lr_hi, o->wd_lo, o->wd_hi,
		BEST - 1, o->wd_lo, o->wd_hi, BEST - 1);
	return ex_close(gp, dir, "hyper_search.gp");
}

int main(int argc, char **argv)
{
	ex_cli cli;
	int p = ex_cli_parse(argc, argv, "hyper_search",
			     "random search for the learning rate and the weight decay", &cli);
	if (p)
		return p > 0 ? 0 : 2;

	char err[EX_ERR];
	tg_dataset train = { 0 }, test = { 0 };
	if (ex_load_fashion(&train, &test, err)) {
		fprintf(stderr, "hyper_search: %s\n", err);
		return 1;
	}
	ex_hyper_opts o = ex_hyper_defaults();
	if (cli.quick) {
		o.trials = 10;
		o.epochs = 5;
	}
	printf("%d trials of %d epochs: %lld Fashion-MNIST samples, %lld held out for "
	       "validation, %s ReLU, SGD batch %lld, lr = 10^U(%g, %g), weight decay = "
	       "10^U(%g, %g)\n",
	       o.trials, o.epochs, (long long)o.n, (long long)o.n_val, o.spec,
	       (long long)o.batch, o.lr_lo, o.lr_hi, o.wd_lo, o.wd_hi);
	printf("running them in %d processes: fork()ed children, each trial in its own "
	       "tg_ctx, trial i in process i %% %d; results come back through a pipe\n",
	       o.workers, o.workers);
	ex_trial *t = calloc((size_t)o.trials, sizeof *t);
	int rc = t ? ex_hyper_run(&train, &o, t, stdout, err) : -1;
	if (rc) {
		fprintf(stderr, "hyper_search: %s\n", t ? err : "out of memory");
		goto out;
	}
	qsort(t, (size_t)o.trials, sizeof *t, by_val_acc);
	printf("the best %d (the book, on MNIST, finds lr about 1e-3..1e-2 and weight decay "
	       "about 1e-8..1e-6 good):\n",
	       BEST);
	for (int i = 0; i < BEST && i < o.trials; i++)
		printf("Best-%d (val acc: %.2f) | lr: %.3g, weight decay: %.3g\n", i + 1,
		       t[i].val_acc, t[i].lr, t[i].weight_decay);
	int good = 0;
	double lr_min = INFINITY, lr_max = 0;
	for (int i = 0; i < BEST && i < o.trials; i++) {
		lr_min = fmin(lr_min, t[i].lr);
		lr_max = fmax(lr_max, t[i].lr);
	}
	for (int i = 0; i < o.trials; i++)
		good += t[i].lr < 1e-4 && t[i].val_acc > 0.5;
	printf("the best five have lr in [%.2g, %.2g]; %d trials with lr below 1e-4 reached "
	       "a validation accuracy above 0.5\n",
	       lr_min, lr_max, good);
	rc = write_csv(cli.out, t, o.trials) || write_gp(cli.out, &o) ||
	     ex_render(cli.out, "hyper_search") < 0;
out:
	free(t);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	return rc ? 1 : 0;
}
