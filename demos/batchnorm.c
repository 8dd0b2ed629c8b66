/*
 * batchnorm.c - seed 001's batch-normalisation experiment: 1000 training
 * samples of Fashion-MNIST, a 784-100-100-100-100-100-10 ReLU net with and
 * without batch norm, SGD lr 0.01, batch 100, 20 epochs, at 16 weight
 * stds from 1 down to 1e-4 (logspace(0, -4)); train accuracy per epoch.
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
	FILE *f = ex_create(dir, "batchnorm.csv");
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
	return ex_close(f, dir, "batchnorm.csv");
}

/* the last epoch of c that has a value */
static int last_good(const ex_bn_curve *c)
{
	return c->failed > 0 ? c->failed - 1 : 0;
}

static int write_gp(const char *dir, const ex_bn_opts *o, const ex_bn_result *r)
{
	FILE *gp = ex_create(dir, "batchnorm.gp");
	if (!gp)
		return -1;
	int side = (int)ceil(sqrt(o->nscales));
	ex_gp_begin(gp, "batchnorm", 1400, 1200);
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
	return ex_close(gp, dir, "batchnorm.gp");
}

int main(int argc, char **argv)
{
	ex_cli cli;
	int p = ex_cli_parse(argc, argv, "batchnorm",
			     "training with and without batch norm at 16 weight scales", &cli);
	if (p)
		return p > 0 ? 0 : 2;

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
		     ex_render(cli.out, "batchnorm") < 0;
	}
	free(r);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	return rc ? 1 : 0;
}
