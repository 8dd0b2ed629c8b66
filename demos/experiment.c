/*
 * experiment.c - what the seeds' experiments share (experiments.h): errors,
 * a net with its optimizer in a context of its own, Fashion-MNIST, the loss
 * curves that optimizers.c and init_train.c compare, and their CSV file.
 */
#include "experiments.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

enum { MAX_ARMS = 8 };

int ex_fail(char *err, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, EX_ERR, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int ex_net_open(ex_net *a, uint64_t seed, const char *spec, const tg_mlp_opts *net,
		const tg_optim_opts *optim, const char *label, char *err)
{
	*a = (ex_net){ 0 };
	a->ctx = tg_ctx_new(seed);
	if (!a->ctx)
		return ex_fail(err, "%s: out of memory", label);
	a->m = tg_mlp_new(a->ctx, spec, net);
	size_t np;
	tg_tensor *const *p = tg_mlp_params(a->m, &np);
	if (a->m)
		a->opt = tg_optim_new(a->ctx, p, np, optim);
	if (!a->m || !a->opt)
		return ex_fail(err, "%s: %s", label, tg_error(a->ctx));
	tg_seed(a->ctx, seed + 1); /* the data order, the same for every net */
	return 0;
}

void ex_net_close(ex_net *a)
{
	tg_optim_free(a->opt);
	tg_mlp_free(a->m);
	tg_ctx_free(a->ctx);
	*a = (ex_net){ 0 };
}

tg_train_opts ex_train_opts(int64_t batch)
{
	tg_train_opts to = tg_train_defaults();
	to.batch = batch;
	to.progress = TG_PROGRESS_OFF;
	to.out = NULL;
	return to;
}

double ex_accuracy(tg_mlp *m, const tg_dataset *ds)
{
	double acc;
	return tg_evaluate(m, ds, 0, NULL, &acc, NULL) == 0 ? acc : NAN;
}

int ex_load_fashion(tg_dataset *train, tg_dataset *test, char *err)
{
	tg_ctx *ctx = tg_ctx_new(0);
	int rc = ctx && tg_load_mnist(ctx, NULL, train, test) == 0
			 ? 0
			 : ex_fail(err, "Fashion-MNIST (package dataset-fashion-mnist): %s",
				   ctx ? tg_error(ctx) : "out of memory");
	tg_ctx_free(ctx);
	return rc;
}

void ex_smooth(const double *in, double *out, int64_t n, int64_t half)
{
	for (int64_t i = 0; i < n; i++) {
		int64_t lo = i - half < 0 ? 0 : i - half;
		int64_t hi = i + half >= n ? n - 1 : i + half;
		double s = 0;
		for (int64_t j = lo; j <= hi; j++)
			s += in[j];
		out[i] = s / (double)(hi - lo + 1);
	}
}

double ex_tail_mean(const double *v, int64_t n, int64_t last)
{
	if (last > n)
		last = n;
	double s = 0;
	for (int64_t i = n - last; i < n; i++)
		s += v[i];
	return last > 0 ? s / (double)last : NAN;
}

/* ---- loss curves of several nets on the same mini-batches ------------------------------ */

ex_curves_opts ex_curves_defaults(void)
{
	return (ex_curves_opts){
		.spec = "784-100-100-100-100-10",
		.iters = 2000,
		.batch = 128,
		.seed = 1,
	};
}

int ex_loss_curves(const tg_dataset *train, const ex_curves_opts *o, const ex_arm *arms,
		   int narms, double *loss, FILE *log, char *err)
{
	if (narms < 1 || narms > MAX_ARMS || o->iters < 1 || o->batch < 1)
		return ex_fail(err, "loss curves: %d arms, %lld iterations, batch %lld", narms,
			       (long long)o->iters, (long long)o->batch);
	ex_net net[MAX_ARMS] = { 0 };
	int rc = 0;
	for (int a = 0; a < narms && !rc; a++)
		rc = ex_net_open(&net[a], o->seed, o->spec, &arms[a].net, &arms[a].optim,
				 arms[a].label, err);
	/* one iteration per call, so that every batch's loss is seen */
	tg_train_opts to = ex_train_opts(o->batch);
	to.replace = true;
	to.iters = 1;
	for (int64_t it = 0; it < o->iters && !rc; it++) {
		for (int a = 0; a < narms && !rc; a++) {
			tg_metrics m;
			if (tg_train(net[a].m, net[a].opt, train, NULL, &to, &m))
				rc = ex_fail(err, "%s, iteration %lld: %s", arms[a].label,
					     (long long)it, tg_error(net[a].ctx));
			loss[a * o->iters + it] = m.train_loss;
		}
		if (log && !rc && (it % 100 == 0 || it == o->iters - 1)) {
			fprintf(log, "iteration %5lld:", (long long)it);
			for (int a = 0; a < narms; a++)
				fprintf(log, "  %s %.4f", arms[a].label, loss[a * o->iters + it]);
			fprintf(log, "\n");
			fflush(log);
		}
	}
	for (int a = 0; a < narms; a++)
		ex_net_close(&net[a]);
	return rc;
}

/* ---- their CSV file and gnuplot script ----------------------------------------------------- */

int ex_write_curves(const char *dir, const char *name, const ex_arm *arms, int narms,
		    const double *loss, int64_t iters, int64_t half, const char *title)
{
	char file[256];
	snprintf(file, sizeof file, "%s.csv", name);
	double *smooth = malloc((size_t)(narms * iters) * sizeof *smooth);
	FILE *f = smooth ? demo_create(dir, file) : NULL;
	if (!f) {
		free(smooth);
		return -1;
	}
	for (int a = 0; a < narms; a++)
		ex_smooth(loss + a * iters, smooth + a * iters, iters, half);
	fprintf(f, "iteration");
	for (int a = 0; a < narms; a++)
		fprintf(f, ",%s,%s_smooth", arms[a].label, arms[a].label);
	fprintf(f, "\n");
	for (int64_t i = 0; i < iters; i++) {
		fprintf(f, "%lld", (long long)i);
		for (int a = 0; a < narms; a++)
			fprintf(f, ",%.6g,%.6g", loss[a * iters + i], smooth[a * iters + i]);
		fprintf(f, "\n");
	}
	free(smooth);
	if (demo_close(f, dir, file))
		return -1;

	snprintf(file, sizeof file, "%s.gp", name);
	FILE *gp = demo_create(dir, file);
	if (!gp)
		return -1;
	demo_gp_begin(gp, name, 900, 560);
	fprintf(gp,
		"set title '%s'\n"
		"set xlabel 'iteration'\n"
		"set ylabel 'training loss (batch cross-entropy, mean over %lld iterations)'\n"
		"set yrange [0:2.5]\n"
		"set key top right box opaque\n"
		"set grid\n"
		"plot ",
		title, (long long)(2 * half + 1));
	for (int a = 0; a < narms; a++)
		fprintf(gp, "%s'%s.csv' using 1:%d with lines lw 2 title '%s'", a ? ", \\\n     " : "",
			name, 3 + 2 * a, arms[a].label);
	fprintf(gp, "\n");
	return demo_close(gp, dir, file);
}
