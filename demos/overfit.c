/*
 * overfit.c - overfitting and two cures (the book's chapter 6): 300 training
 * samples of Fashion-MNIST, a 784-100x6-10 ReLU net (He init), SGD lr 0.01,
 * batch 100, 200 epochs: without regularisation, with weight decay
 * (lambda 0.1, the optimizer's) and with dropout (p 0.2, inverted).
 *
 * The three nets start from the same weights and are trained by tg_train an
 * epoch at a time, side by side, on the same shuffled batches (the dropout
 * net's masks draw from its generator too, so its order departs from the
 * others' after the first epoch). Prints train and test accuracy every 20 epochs and each net's final
 * train-test gap; writes overfit.csv and overfit.gp, and draws overfit.png.
 *
 *	overfit [--out DIR] [--quick]
 */
#include "experiments.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- 6. overfitting and its cures ------------------------------------------------------------ */

ex_overfit_opts ex_overfit_defaults(void)
{
	return (ex_overfit_opts){
		.n_train = 300,
		.n_test = 0,
		.spec = "784-100-100-100-100-100-100-10",
		.lr = 0.01,
		.batch = 100,
		.epochs = 200,
		.weight_decay = 0.1,
		.dropout = 0.2,
		.seed = 1,
	};
}

/* The three nets side by side, an epoch of tg_train each at a time; epoch 0
 * is before training. */
static int overfit_epochs(const tg_dataset *train, const tg_dataset *test,
			  const ex_overfit_opts *o, ex_overfit *out, ex_net *net, FILE *log,
			  char *err)
{
	tg_train_opts to = ex_train_opts(o->batch);
	to.epochs = 1;
	to.full_train_eval = true; /* accuracy of the whole train set, as the seed's */
	int rc = 0;
	for (int e = 0; e <= o->epochs && !rc; e++) {
		for (int a = 0; a < EX_OVERFIT_ARMS && !rc; a++) {
			tg_metrics m = { 0 };
			if (e == 0) {
				m.train_acc = ex_accuracy(net[a].m, train);
				m.test_acc = ex_accuracy(net[a].m, test);
			} else {
				tg_train(net[a].m, net[a].opt, train, test, &to, &m);
			}
			out->train_acc[a][e] = m.train_acc;
			out->test_acc[a][e] = m.test_acc;
			if (!tg_ok(net[a].ctx))
				rc = ex_fail(err, "overfitting, %s, epoch %d: %s", out->label[a], e,
					     tg_error(net[a].ctx));
		}
		if (log && !rc && (e % 20 == 0 || e == o->epochs)) {
			fprintf(log, "epoch %3d:", e);
			for (int a = 0; a < EX_OVERFIT_ARMS; a++)
				fprintf(log, "  %s train %.3f test %.3f", out->label[a],
					out->train_acc[a][e], out->test_acc[a][e]);
			fprintf(log, "\n");
			fflush(log);
		}
	}
	return rc;
}

int ex_overfit_run(const tg_dataset *train, const tg_dataset *test, const ex_overfit_opts *o,
		   ex_overfit *out, FILE *log, char *err)
{
	if (o->epochs < 1 || o->epochs > EX_OVERFIT_MAX_EPOCHS || o->batch < 1)
		return ex_fail(err, "overfitting: %d epochs, batch %lld", o->epochs,
			    (long long)o->batch);
	out->label[0] = "plain";
	out->label[1] = "weight_decay";
	out->label[2] = "dropout";
	tg_ctx *ctx = tg_ctx_new(o->seed);
	tg_dataset sub = { 0 }, tsub = { 0 };
	int rc = ctx && !tg_dataset_head(ctx, train, o->n_train, &sub) &&
				 !tg_dataset_head(ctx, test, o->n_test > 0 ? o->n_test : test->n,
						  &tsub)
			 ? 0
			 : ex_fail(err, "overfitting: %s", ctx ? tg_error(ctx) : "out of memory");
	tg_ctx_free(ctx);

	ex_net net[EX_OVERFIT_ARMS] = { 0 };
	for (int a = 0; a < EX_OVERFIT_ARMS && !rc; a++) {
		tg_mlp_opts mo = tg_mlp_defaults(); /* ReLU, He */
		mo.dropout = a == 2 ? o->dropout : 0;
		tg_optim_opts oo = tg_optim_defaults(TG_SGD);
		oo.lr = o->lr;
		oo.weight_decay = a == 1 ? o->weight_decay : 0;
		rc = ex_net_open(&net[a], o->seed, o->spec, &mo, &oo, out->label[a], err);
	}
	if (!rc)
		rc = overfit_epochs(&sub, &tsub, o, out, net, log, err);
	for (int a = 0; a < EX_OVERFIT_ARMS; a++)
		ex_net_close(&net[a]);
	tg_dataset_free(&sub);
	tg_dataset_free(&tsub);
	return rc;
}

/* ---- the demo ---------------------------------------------------------------------------- */

#ifndef EX_NO_MAIN

static const char *const title[EX_OVERFIT_ARMS] = {
	"no regularisation", "weight decay", "dropout"
};

static int write_csv(const char *dir, const ex_overfit_opts *o, const ex_overfit *r)
{
	FILE *f = demo_create(dir, "overfit.csv");
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
	return demo_close(f, dir, "overfit.csv");
}

static int write_gp(const char *dir, const ex_overfit_opts *o, const ex_overfit *r,
		    int64_t n_test)
{
	FILE *gp = demo_create(dir, "overfit.gp");
	if (!gp)
		return -1;
	demo_gp_begin(gp, "overfit", 1400, 480);
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
	return demo_close(gp, dir, "overfit.gp");
}

int main(int argc, char **argv)
{
	demo_plot cli = demo_plot_args(argc, argv, "overfit",
					"overfitting 300 samples, and weight decay and dropout against it",
					"20 epochs instead of 200, tested on 1000 samples");

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
		     demo_render(cli.out, "overfit") < 0;
	}
	free(r);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	return demo_end("overfit", rc ? 1 : 0);
}

#endif /* EX_NO_MAIN */
