/*
 * init_hist.c - seed 001's activation histograms: 1000 x 100 N(0, 1) inputs
 * through 5 layers of 100 units, sigmoid with weight std 1, std 0.01 and
 * lecun ("Xavier" in the seed), ReLU with std 0.01, lecun and he.
 *
 * The layers are a tg_mlp's hidden layers, read with tg_mlp_activation.
 * Prints each layer's spread and where its values sit, writes init_hist.csv
 * (30 bins over [0, 1], the seed's range, one column per setting and layer)
 * and init_hist.gp, and draws init_hist.png: one row of 5 histograms per
 * setting.
 *
 *	init_hist [--out DIR]
 */
#include "experiments.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- 3. activation histograms by initialisation ------------------------------------------- */

ex_hist_opts ex_hist_defaults(void)
{
	return (ex_hist_opts){
		.n = 1000,
		.width = 100,
		.seed = 1,
		.setting = {
			{ "sigmoid, std 1", "sigmoid_std1", TG_ACT_SIGMOID, { TG_INIT_STD, 1 } },
			{ "sigmoid, std 0.01", "sigmoid_std0.01", TG_ACT_SIGMOID,
			  { TG_INIT_STD, 0.01 } },
			{ "sigmoid, lecun (Xavier)", "sigmoid_lecun", TG_ACT_SIGMOID,
			  { TG_INIT_LECUN, 0 } },
			{ "ReLU, std 0.01", "relu_std0.01", TG_ACT_RELU, { TG_INIT_STD, 0.01 } },
			{ "ReLU, lecun (Xavier)", "relu_lecun", TG_ACT_RELU, { TG_INIT_LECUN, 0 } },
			{ "ReLU, he", "relu_he", TG_ACT_RELU, { TG_INIT_HE, 0 } },
		},
	};
}

static void layer_stats(const double *a, size_t n, ex_hist_layer *h)
{
	*h = (ex_hist_layer){ 0 };
	double sum = 0, sq = 0;
	size_t ends = 0, mid = 0, zero = 0;
	for (size_t i = 0; i < n; i++) {
		double v = a[i];
		sum += v;
		sq += v * v;
		ends += v < 0.05 || v > 0.95;
		mid += fabs(v - 0.5) < 0.05;
		zero += v == 0;
		if (v > 1 || !(v >= 0))
			h->above++;
		else
			h->count[v >= 1 ? EX_HIST_BINS - 1 : (int)(v * EX_HIST_BINS)]++;
	}
	h->mean = sum / (double)n;
	h->std = sqrt(fmax(sq / (double)n - h->mean * h->mean, 0));
	h->ends = (double)ends / (double)n;
	h->mid = (double)mid / (double)n;
	h->zero = (double)zero / (double)n;
}

int ex_hist_run(const ex_hist_opts *o, ex_hist *out, char *err)
{
	/* width-width-...: 5 hidden layers and an output layer nobody reads */
	char spec[128] = "";
	for (int l = 0; l <= EX_HIST_LAYERS + 1; l++) {
		size_t len = strlen(spec);
		snprintf(spec + len, sizeof spec - len, "%s%lld", l ? "-" : "",
			 (long long)o->width);
	}
	tg_ctx *ctx = tg_ctx_new(o->seed);
	if (!ctx)
		return ex_fail(err, "histograms: out of memory");
	tg_set_grad_enabled(ctx, false);
	tg_tensor *x = tg_keep(tg_randn(ctx, TG_F64, 2, (int64_t[]){ o->n, o->width }, 0, 1));
	for (int s = 0; s < EX_HIST_SETTINGS && tg_ok(ctx); s++) {
		tg_mlp_opts mo = tg_mlp_defaults();
		mo.act = (tg_act){ o->setting[s].act, 0 };
		mo.init = o->setting[s].init;
		mo.dtype = TG_F64;
		tg_mlp *m = tg_mlp_new(ctx, spec, &mo);
		tg_mlp_forward(m, x);
		for (int l = 0; l < EX_HIST_LAYERS && tg_ok(ctx); l++) {
			const tg_tensor *a = tg_mlp_activation(m, l + 1);
			if (a)
				layer_stats(tg_data(a), tg_numel(a), &out->layer[s][l]);
		}
		tg_reset(ctx);
		tg_mlp_free(m);
	}
	int rc = tg_ok(ctx) ? 0 : ex_fail(err, "histograms: %s", tg_error(ctx));
	tg_ctx_free(ctx);
	return rc;
}

/* ---- the demo ---------------------------------------------------------------------------- */

#ifndef EX_NO_MAIN

enum { S = EX_HIST_SETTINGS, L = EX_HIST_LAYERS, BINS = EX_HIST_BINS };

static void summary(const ex_hist_opts *o, const ex_hist *h)
{
	printf("%-24s %-28s %s\n", "", "std of the activations", "layer 5: where the values sit");
	printf("%-24s %-28s\n", "setting", "layer 1 .. layer 5");
	for (int s = 0; s < S; s++) {
		const ex_hist_setting *st = &o->setting[s];
		printf("%-24s", st->label);
		for (int l = 0; l < L; l++)
			printf(" %-7.2g", h->layer[s][l].std);
		const ex_hist_layer *last = &h->layer[s][L - 1];
		if (st->act == TG_ACT_SIGMOID)
			printf("  %3.0f%% within 0.05 of 0 or 1, %3.0f%% within 0.05 of 0.5\n",
			       100 * last->ends, 100 * last->mid);
		else
			printf("  %3.0f%% exactly 0, mean %.2g\n", 100 * last->zero, last->mean);
	}
	const ex_hist_layer *sig1 = h->layer[0], *sig001 = h->layer[1], *siglc = h->layer[2];
	const ex_hist_layer *r001 = h->layer[3], *rlc = h->layer[4], *rhe = h->layer[5];
	printf("sigmoid: std 1 saturates (%.0f%% of layer 5 at 0 or 1: gradients vanish), "
	       "std 0.01 collapses to 0.5 (%.0f%% within 0.05 of it: every unit says the same), "
	       "lecun keeps a spread (std %.2f in layer 5)\n",
	       100 * sig1[L - 1].ends, 100 * sig001[L - 1].mid, siglc[L - 1].std);
	printf("ReLU: the spread from layer 1 to 5 shrinks x%.2g with std 0.01, x%.2g with "
	       "lecun and x%.2g with he, which keeps it\n",
	       r001[L - 1].std / r001[0].std, rlc[L - 1].std / rlc[0].std,
	       rhe[L - 1].std / rhe[0].std);
}

static int write_csv(const char *dir, const ex_hist_opts *o, const ex_hist *h)
{
	FILE *f = demo_create(dir, "init_hist.csv");
	if (!f)
		return -1;
	fprintf(f, "bin_lo,bin_hi");
	for (int s = 0; s < S; s++)
		for (int l = 0; l < L; l++)
			fprintf(f, ",%s_layer%d", o->setting[s].key, l + 1);
	fprintf(f, "\n");
	for (int b = 0; b < BINS; b++) {
		fprintf(f, "%.6g,%.6g", (double)b / BINS, (double)(b + 1) / BINS);
		for (int s = 0; s < S; s++)
			for (int l = 0; l < L; l++)
				fprintf(f, ",%lld", (long long)h->layer[s][l].count[b]);
		fprintf(f, "\n");
	}
	return demo_close(f, dir, "init_hist.csv");
}

static int write_gp(const char *dir, const ex_hist_opts *o, const ex_hist *h)
{
	/* sigmoid rows: each row's own scale; ReLU rows: one scale set by the
	 * bins after the first, whose zeros (about half the values) go off it */
	int64_t relu_top = 1;
	for (int s = 0; s < S; s++)
		for (int l = 0; l < L && o->setting[s].act == TG_ACT_RELU; l++)
			for (int b = 1; b < BINS; b++)
				if (h->layer[s][l].count[b] > relu_top)
					relu_top = h->layer[s][l].count[b];

	FILE *gp = demo_create(dir, "init_hist.gp");
	if (!gp)
		return -1;
	demo_gp_begin(gp, "init_hist", 1300, 1500);
	fprintf(gp,
		"set multiplot layout %d,%d title \"Activations of 5 layers of %lld units, "
		"%lld N(0,1) inputs: histograms over [0, 1], %d bins\\n"
		"ReLU rows share one scale; their first bin holds the zeros (about half) "
		"and runs off it\"\n"
		"set style fill solid 0.8 noborder\n"
		"set xrange [0:1]\n"
		"set xtics 0.5\n"
		"set key off\n"
		"set format y '%%.0s%%c'\n",
		S, L, (long long)o->width, (long long)o->n, BINS);
	for (int s = 0; s < S; s++) {
		int64_t top = 1;
		for (int l = 0; l < L; l++)
			for (int b = 0; b < BINS; b++)
				if (h->layer[s][l].count[b] > top)
					top = h->layer[s][l].count[b];
		if (o->setting[s].act == TG_ACT_RELU)
			top = relu_top;
		for (int l = 0; l < L; l++) {
			fprintf(gp,
				"set title '%s%s%d-layer'\n"
				"set ylabel '%s'\n"
				"set yrange [0:%lld]\n"
				"set label 1 'std %.2g' at graph 0.95, graph 0.88 right front\n"
				"plot 'init_hist.csv' using (($1 + $2) / 2):%d with boxes "
				"lc rgb '%s'\n",
				l == 0 ? o->setting[s].label : "", l == 0 ? ": " : "", l + 1,
				l == 0 ? "count" : "", (long long)(top * 1.1),
				h->layer[s][l].std, 3 + s * L + l,
				o->setting[s].act == TG_ACT_RELU ? "#2ca02c" : "#1f77b4");
		}
	}
	fprintf(gp, "unset multiplot\n");
	return demo_close(gp, dir, "init_hist.gp");
}

int main(int argc, char **argv)
{
	demo_plot cli = demo_plot_args(argc, argv, "init_hist",
					"activation histograms of 5 layers by initialisation",
					NULL);

	ex_hist_opts o = ex_hist_defaults();
	ex_hist *h = malloc(sizeof *h);
	char err[EX_ERR];
	if (!h || ex_hist_run(&o, h, err)) {
		fprintf(stderr, "init_hist: %s\n", h ? err : "out of memory");
		free(h);
		return 1;
	}
	summary(&o, h);
	int rc = write_csv(cli.out, &o, h) || write_gp(cli.out, &o, h) ||
		 demo_render(cli.out, "init_hist") < 0;
	free(h);
	return demo_end("init_hist", rc ? 1 : 0);
}

#endif /* EX_NO_MAIN */
