/*
 * batchnorm.c - seed 001's batch-normalisation experiment: 1000 training
 * samples of Fashion-MNIST, a 784-100-100-100-100-100-10 ReLU net with and
 * without batch norm, SGD lr 0.01, batch 100, 20 epochs, at 16 weight
 * stds from 1 down to 1e-4 (logspace(0, -4)); train accuracy per epoch.
 * Both nets of a std are trained by tg_train an epoch at a time, side by
 * side on the same batches, and measured by a full pass over the samples.
 *
 * Both nets run with anomaly checks on: a net whose numbers overflow stops
 * at the first NaN or Inf, and the op that made it (named in tg_error) is
 * printed and marked on its curve instead of plotting garbage. Writes
 * batchnorm.csv (one column per net and std; empty after a stop) and
 * batchnorm.gp, and draws batchnorm.png: a 4 x 4 grid of plots.
 *
 *	batchnorm [--out DIR] [--quick]
 */
#include "experiments.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- 5. batch normalisation at 16 weight scales ---------------------------------------------- */

ex_bn_opts ex_bn_defaults(void)
{
	return (ex_bn_opts){
		.n_train = 1000,
		.spec = "784-100-100-100-100-100-10",
		.lr = 0.01,
		.batch = 100,
		.epochs = 20,
		.nscales = 16,
		.seed = 1,
	};
}

double ex_bn_scale(const ex_bn_opts *o, int i)
{
	return o->nscales > 1 ? pow(10, -4.0 * i / (o->nscales - 1)) : 1;
}

/* After a failure in arm a: an anomaly (NaN or Inf) stops that curve and is
 * noted; any other error stops the run. */
static int bn_stopped(ex_net *a, ex_bn_curve *c, int epoch, int epochs, char *err)
{
	if (tg_status_of(a->ctx) != TG_EANOMALY)
		return ex_fail(err, "batch norm: %s", tg_error(a->ctx));
	c->failed = epoch;
	snprintf(c->error, sizeof c->error, "%s", tg_error(a->ctx));
	for (int e = epoch; e <= epochs; e++)
		c->acc[e] = NAN;
	return 0;
}

/* Both nets of one weight std, trained side by side by tg_train, an epoch at
 * a time, on the same batches. */
static int bn_scale(const tg_dataset *train, const ex_bn_opts *o, ex_bn_result *r, char *err)
{
	ex_net net[2] = { 0 };
	ex_bn_curve *curve[2] = { &r->bn, &r->plain };
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = o->lr;
	tg_train_opts to = ex_train_opts(o->batch);
	to.epochs = 1;
	to.full_train_eval = true; /* the accuracy of the whole set after each epoch */
	to.anomaly = true;
	to.no_divergence_check = true; /* a NaN or Inf, found by anomaly mode, is the stop */
	int rc = 0;
	for (int a = 0; a < 2; a++) {
		tg_mlp_opts mo = tg_mlp_defaults();
		mo.init = (tg_init){ TG_INIT_STD, r->std };
		mo.batchnorm = a == 0;
		curve[a]->failed = -1;
		curve[a]->error[0] = '\0';
		if (!rc)
			rc = ex_net_open(&net[a], o->seed, o->spec, &mo, &oo,
					 a ? "without batch norm" : "with batch norm", err);
		if (!rc) {
			tg_set_anomaly(net[a].ctx, true);
			curve[a]->acc[0] = ex_accuracy(net[a].m, train);
			tg_set_anomaly(net[a].ctx, false);
			if (!tg_ok(net[a].ctx))
				rc = bn_stopped(&net[a], curve[a], 0, o->epochs, err);
		}
	}
	for (int e = 1; e <= o->epochs && !rc; e++) {
		for (int a = 0; a < 2 && !rc; a++) {
			if (curve[a]->failed >= 0)
				continue;
			tg_metrics m;
			if (tg_train(net[a].m, net[a].opt, train, NULL, &to, &m))
				rc = bn_stopped(&net[a], curve[a], e, o->epochs, err);
			else
				curve[a]->acc[e] = m.train_acc;
		}
	}
	for (int a = 0; a < 2; a++)
		ex_net_close(&net[a]);
	return rc;
}

int ex_bn_run(const tg_dataset *train, const ex_bn_opts *o, ex_bn_result *out, FILE *log,
	      char *err)
{
	if (o->nscales < 1 || o->nscales > EX_BN_MAX_SCALES || o->epochs < 1 ||
	    o->epochs > EX_BN_MAX_EPOCHS || o->batch < 1)
		return ex_fail(err, "batch norm: %d scales, %d epochs, batch %lld", o->nscales,
			    o->epochs, (long long)o->batch);
	tg_ctx *ctx = tg_ctx_new(o->seed);
	tg_dataset sub = { 0 };
	if (!ctx || tg_dataset_head(ctx, train, o->n_train, &sub)) {
		int rc = ex_fail(err, "batch norm: %s", ctx ? tg_error(ctx) : "out of memory");
		tg_ctx_free(ctx);
		return rc;
	}
	tg_ctx_free(ctx);
	int rc = 0;
	for (int i = 0; i < o->nscales && !rc; i++) {
		out[i].std = ex_bn_scale(o, i);
		rc = bn_scale(&sub, o, &out[i], err);
		if (log && !rc) {
			char acc[2][48];
			const ex_bn_curve *c[2] = { &out[i].bn, &out[i].plain };
			for (int a = 0; a < 2; a++)
				if (c[a]->failed >= 0)
					snprintf(acc[a], sizeof acc[a], "stopped in epoch %d (NaN/Inf)",
						 c[a]->failed);
				else
					snprintf(acc[a], sizeof acc[a], "%.3f", c[a]->acc[o->epochs]);
			fprintf(log, "weight std %-9.3g  train accuracy after %d epochs: "
				"with batch norm %s, without %s\n",
				out[i].std, o->epochs, acc[0], acc[1]);
			fflush(log);
		}
	}
	tg_dataset_free(&sub);
	return rc;
}

/* ---- the demo ---------------------------------------------------------------------------- */

#ifndef EX_NO_MAIN

/* The op a tg_error message of anomaly mode names: "anomaly: matmul produced
 * inf in its output (100,10)" or "anomaly: backward of exp produced nan ...". */
static const char *op_of(const char *error, char *buf, size_t size)
{
	const char *p = strstr(error, "anomaly: ");
	if (!p)
		return "?";
	p += strlen("anomaly: ");
	if (!strncmp(p, "backward of ", 12))
		p += 12;
	size_t n = 0;
	while (p[n] && p[n] != ' ' && n + 1 < size)
		n++;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return buf;
}

static void summary(const ex_bn_opts *o, const ex_bn_result *r)
{
	int e = o->epochs, wins = 0, stops = 0;
	double sum_bn = 0, sum_plain = 0;
	for (int i = 0; i < o->nscales; i++) {
		double bn = r[i].bn.failed >= 0 ? 0 : r[i].bn.acc[e];
		double plain = r[i].plain.failed >= 0 ? 0 : r[i].plain.acc[e];
		wins += bn > plain;
		sum_bn += bn;
		sum_plain += plain;
		for (int a = 0; a < 2; a++) {
			const ex_bn_curve *c = a ? &r[i].plain : &r[i].bn;
			char op[64];
			if (c->failed < 0)
				continue;
			stops++;
			printf("weight std %.3g, %s batch norm: stopped in epoch %d: %s "
			       "[the op: %s]\n",
			       r[i].std, a ? "without" : "with", c->failed, c->error,
			       op_of(c->error, op, sizeof op));
		}
	}
	printf("after %d epochs batch norm has the higher train accuracy at %d of %d weight "
	       "stds; mean over the stds %.3f with batch norm, %.3f without%s\n",
	       e, wins, o->nscales, sum_bn / o->nscales, sum_plain / o->nscales,
	       stops ? " (a stopped net counts as 0)" : "");
	printf("(the book, on MNIST: batch norm learns faster at almost every scale; "
	       "without it, too large or too small a std learns nothing)\n");
}

static int write_csv(const char *dir, const ex_bn_opts *o, const ex_bn_result *r)
{
	FILE *f = demo_create(dir, "batchnorm.csv");
	if (!f)
		return -1;
	fprintf(f, "epoch");
	for (int i = 0; i < o->nscales; i++)
		fprintf(f, ",bn_std%.3g,plain_std%.3g", r[i].std, r[i].std);
	fprintf(f, "\n");
	for (int e = 0; e <= o->epochs; e++) {
		fprintf(f, "%d", e);
		for (int i = 0; i < o->nscales; i++) {
			const double v[2] = { r[i].bn.acc[e], r[i].plain.acc[e] };
			for (int a = 0; a < 2; a++)
				if (isnan(v[a]))
					fprintf(f, ",");
				else
					fprintf(f, ",%.4f", v[a]);
		}
		fprintf(f, "\n");
	}
	return demo_close(f, dir, "batchnorm.csv");
}

/* the last epoch of c that has a value */
static int last_good(const ex_bn_curve *c)
{
	return c->failed > 0 ? c->failed - 1 : 0;
}

static int write_gp(const char *dir, const ex_bn_opts *o, const ex_bn_result *r)
{
	FILE *gp = demo_create(dir, "batchnorm.gp");
	if (!gp)
		return -1;
	int side = (int)ceil(sqrt(o->nscales));
	demo_gp_begin(gp, "batchnorm", 1400, 1200);
	fprintf(gp,
		"set multiplot layout %d,%d title \"Train accuracy on %lld Fashion-MNIST samples, "
		"%s ReLU, SGD lr %g, batch %lld: with batch norm (solid) and without "
		"(dashed)\\nA red x marks a net stopped by anomaly mode at its first NaN/Inf\"\n"
		"set xrange [0:%d]\n"
		"set yrange [0:1]\n"
		"set ytics 0.2\n"
		"set key off\n",
		side, side, (long long)o->n_train, o->spec, o->lr, (long long)o->batch,
		o->epochs);
	for (int i = 0; i < o->nscales; i++) {
		fprintf(gp, "set title 'weight std %.3g'\n", r[i].std);
		fprintf(gp, "set xlabel '%s'\n", i >= o->nscales - side ? "epochs" : "");
		fprintf(gp, "set ylabel '%s'\n", i % side == 0 ? "accuracy" : "");
		fprintf(gp, "unset label\n");
		const ex_bn_curve *c[2] = { &r[i].bn, &r[i].plain };
		for (int a = 0; a < 2; a++) {
			char op[64];
			if (c[a]->failed < 0)
				continue;
			fprintf(gp,
				"set label %d '%s: NaN/Inf from %s in epoch %d' at graph 0.04, "
				"graph %.2f tc rgb '#d62728' noenhanced front\n",
				a + 1, a ? "without BN" : "with BN",
				op_of(c[a]->error, op, sizeof op), c[a]->failed, a ? 0.92 : 0.82);
		}
		fprintf(gp,
			"plot 'batchnorm.csv' using 1:%d with lines lw 2 lc rgb '#1f77b4', \\\n"
			"     'batchnorm.csv' using 1:%d with lines lw 2 dt 2 lc rgb '#ff7f0e'",
			2 + 2 * i, 3 + 2 * i);
		for (int a = 0; a < 2; a++) {
			if (c[a]->failed < 0)
				continue;
			int e = last_good(c[a]);
			double y = c[a]->failed > 0 ? c[a]->acc[e] : 0;
			fprintf(gp, ", \\\n     '+' using (%d):(%.4f) every ::0::0 with points pt 2 "
				"ps 2.5 lw 2 lc rgb '#d62728'",
				e, y);
		}
		fprintf(gp, "\n");
	}
	fprintf(gp, "unset multiplot\n");
	return demo_close(gp, dir, "batchnorm.gp");
}

int main(int argc, char **argv)
{
	demo_plot cli = demo_plot_args(argc, argv, "batchnorm",
					"training with and without batch norm at 16 weight scales",
					"3 epochs instead of 20");

	char err[EX_ERR];
	tg_dataset train = { 0 }, test = { 0 };
	if (ex_load_fashion(&train, &test, err)) {
		fprintf(stderr, "batchnorm: %s\n", err);
		return 1;
	}
	ex_bn_opts o = ex_bn_defaults();
	if (cli.quick)
		o.epochs = 3;
	printf("%lld Fashion-MNIST samples, %s ReLU, SGD lr %g, batch %lld, %d epochs, "
	       "anomaly checks on\n",
	       (long long)o.n_train, o.spec, o.lr, (long long)o.batch, o.epochs);
	ex_bn_result *r = calloc(EX_BN_MAX_SCALES, sizeof *r);
	int rc = r ? ex_bn_run(&train, &o, r, stdout, err) : -1;
	if (rc) {
		fprintf(stderr, "batchnorm: %s\n", r ? err : "out of memory");
	} else {
		summary(&o, r);
		rc = write_csv(cli.out, &o, r) || write_gp(cli.out, &o, r) ||
		     demo_render(cli.out, "batchnorm") < 0;
	}
	free(r);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	return demo_end("batchnorm", rc ? 1 : 0);
}

#endif /* EX_NO_MAIN */
