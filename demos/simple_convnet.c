/*
 * simple_convnet.c - the book's SimpleConvNet (chapter 7) on Fashion-MNIST,
 * and its figure 7-24: the first layer's 30 filters before and after
 * training.
 *
 *	conv 30 5x5 (stride 1, no padding) -> ReLU -> max-pool 2 -> affine 100
 *	-> ReLU -> affine 10 -> softmax with cross-entropy
 *
 * weights N(0, 0.01^2) and biases 0 (the book's weight_init_std), Adam lr
 * 0.001, batch 100, as the book's train_convnet.py; the model is
 * tg_model_parse_image's "conv30:5-pool2-100-10" and tg_fit trains it, with
 * progress, per-epoch test accuracy and the confusion matrix. The filters
 * (30,1,5,5) are copied before the first step and after the last, and
 * written as simple_convnet_filters.csv (each filter also scaled to [0, 1]
 * by its own minimum and maximum, as the book's imshow does) with a gnuplot
 * script that draws simple_convnet_filters.png: random noise on the left,
 * and on the right the edge and blob detectors training made of it.
 *
 *	simple_convnet [--epochs N] [--threads T] [--out DIR] [--quick]
 */
#include "demo.h"
#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"usage: simple_convnet [--epochs N] [--threads T] [--out DIR] [--quick]\n"
	"\n"
	"Trains the book's SimpleConvNet (conv 30 5x5 -> ReLU -> max-pool 2 -> affine\n"
	"100 -> ReLU -> affine 10; init std 0.01, Adam 0.001, batch 100) on\n"
	"Fashion-MNIST and draws its 30 first-layer filters before and after training\n"
	"(the book's figure 7-24).\n"
	"  --epochs N   passes over the 60000 training images (default 2)\n"
	"  --threads T  threads of the products and large loops (default 2)\n"
	"  --out DIR    where simple_convnet_filters.csv, .gp and (with gnuplot) .png go\n"
	"               (default experiments_out; demos/experiments gives demos/pictures)\n"
	"  --quick      1 epoch on the first 3000 training images, to check the pipeline\n";

enum { FILTERS = 30, SIDE = 5, PER_FILTER = SIDE * SIDE, COLS = 6 };

#define NAME "simple_convnet_filters"

/* The filters of both stages, each pixel with its weight and its shade in
 * [0, 1] scaled by its filter's own range. */
static int write_csv(const char *dir, const double *w[2])
{
	FILE *f = demo_create(dir, NAME ".csv");
	if (!f)
		return -1;
	fprintf(f, "stage,filter,row,col,weight,shade\n");
	for (int s = 0; s < 2; s++)
		for (int k = 0; k < FILTERS; k++) {
			const double *v = w[s] + k * PER_FILTER;
			double lo = v[0], hi = v[0];
			for (int i = 1; i < PER_FILTER; i++) {
				lo = v[i] < lo ? v[i] : lo;
				hi = v[i] > hi ? v[i] : hi;
			}
			for (int i = 0; i < PER_FILTER; i++)
				fprintf(f, "%d,%d,%d,%d,%.6g,%.4f\n", s, k, i / SIDE, i % SIDE, v[i],
					hi > lo ? (v[i] - lo) / (hi - lo) : 0.5);
		}
	return demo_close(f, dir, NAME ".csv");
}

/* Two panels of 5 x 6 filters, each pixel a box shaded from white (the
 * filter's smallest weight) to black (its largest), as the book's gray_r. */
static int write_gp(const char *dir, int64_t epochs, int64_t n, double acc)
{
	FILE *gp = demo_create(dir, NAME ".gp");
	if (!gp)
		return -1;
	demo_gp_begin(gp, NAME, 1200, 560);
	int rows = (FILTERS + COLS - 1) / COLS;
	fprintf(gp,
		"set multiplot layout 1,2 title \"SimpleConvNet's first layer: 30 filters of 5x5, "
		"each shaded from its smallest (white) to its largest weight (black)\"\n"
		"set palette gray negative\n"
		"unset colorbox\n"
		"set cbrange [0:1]\n"
		"set size ratio -1\n"
		"unset xtics\n"
		"unset ytics\n"
		"unset border\n"
		"set key off\n"
		"set xrange [-1:%d]\n"
		"set yrange [-%d:1]\n"
		"# filter k at column k %% %d, row k / %d, with a pixel of space between\n"
		"x(k, c) = (int(k) %% %d) * %d + c\n"
		"y(k, r) = -((int(k) / %d) * %d + r)\n",
		COLS * (SIDE + 1) - 1, rows * (SIDE + 1) - 1, COLS, COLS, COLS, SIDE + 1, COLS,
		SIDE + 1);
	const char *title[2] = { "before training: N(0, 0.01^2), random noise", NULL };
	char after[128];
	snprintf(after, sizeof after, "after %lld epoch%s on %lld images (test accuracy %.3f)",
		 (long long)epochs, epochs == 1 ? "" : "s", (long long)n, acc);
	title[1] = after;
	for (int s = 0; s < 2; s++)
		fprintf(gp,
			"set title '%s'\n"
			"plot '" NAME ".csv' using ($1 == %d ? x($2, $4) : NaN):(y($2, $3)):(0.5):(0.5):6 "
			"with boxxyerror fillstyle solid noborder fc palette\n",
			title[s], s);
	fprintf(gp, "unset multiplot\n");
	return demo_close(gp, dir, NAME ".gp");
}

/* The filters conv1.W (30,1,5,5) as doubles into out. */
static int copy_filters(tg_module *m, double *out)
{
	tg_tensor *p[8];
	size_t n = tg_module_params(m, p, 8);
	for (size_t i = 0; i < n && i < 8; i++)
		if (!strcmp(tg_name(p[i]), "conv1.W") && tg_numel(p[i]) == FILTERS * PER_FILTER)
			return tg_copy_to_f64(p[i], out, FILTERS * PER_FILTER);
	return -1;
}

int main(int argc, char **argv)
{
	int64_t epochs = 2, threads = 2;
	const char *out = "experiments_out";
	bool quick = false;
	demo_cli c = demo_cli_begin("simple_convnet", usage_text, argc, argv);
	while (demo_cli_next(&c)) {
		if (demo_int(&c, "--epochs", 1, 1000, &epochs) ||
		    demo_int(&c, "--threads", 1, DEMO_MAX_THREADS, &threads) ||
		    demo_str(&c, "--out", &out))
			continue;
		if (demo_flag(&c, "--quick")) {
			quick = true;
			continue;
		}
		demo_unknown(&c);
	}
	if (quick)
		epochs = 1;
	demo_prove_out("simple_convnet", out); /* before the training, not after it */

	tg_ctx *ctx = demo_open("simple_convnet", 42, threads);
	if (!ctx)
		return 1;
	tg_dataset train = { 0 }, test = { 0 }, head = { 0 };
	tg_module *net = NULL;
	tg_optim *opt = NULL;
	tg_tensor **params = NULL;
	double *w[2] = { malloc(FILTERS * PER_FILTER * sizeof(double)),
			 malloc(FILTERS * PER_FILTER * sizeof(double)) };
	int rc = 1;
	if (!w[0] || !w[1]) {
		fprintf(stderr, "simple_convnet: out of memory\n");
		goto out;
	}
	double t0 = demo_now();
	if (tg_load_mnist(ctx, NULL, &train, &test) ||
	    (quick && tg_dataset_head(ctx, &train, 3000, &head)))
		goto out_error;
	const tg_dataset *ds = quick ? &head : &train;

	tg_mlp_opts mo = tg_mlp_defaults();
	mo.init = (tg_init){ TG_INIT_STD, 0.01 }; /* the book's weight_init_std */
	net = tg_model_parse_image(ctx, "conv30:5-pool2-100-10", train.shape[0], train.shape[1],
				   train.shape[2], &mo);
	size_t np = net ? tg_module_params(net, NULL, 0) : 0;
	params = net ? calloc(np, sizeof *params) : NULL;
	if (!params)
		goto out_error;
	tg_module_params(net, params, np);
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	opt = tg_optim_new(ctx, params, np, &oo);
	if (!opt || copy_filters(net, w[0]))
		goto out_error;
	char arch[512];
	tg_module_spec(net, arch, sizeof arch);
	size_t nweights = 0;
	for (size_t i = 0; i < np; i++)
		nweights += tg_numel(params[i]);
	printf("SimpleConvNet %s, %zu parameters, init N(0, 0.01^2), adam lr %g, batch 100\n",
	       arch, nweights, oo.lr);
	printf("data          Fashion-MNIST: %lld train (of %lld), %lld test images of "
	       "(%lld,%lld,%lld) (%.1f s to load)\n",
	       (long long)ds->n, (long long)train.n, (long long)test.n, (long long)train.shape[0],
	       (long long)train.shape[1], (long long)train.shape[2], demo_now() - t0);
	fflush(stdout);

	tg_train_opts to = tg_train_defaults();
	to.batch = 100;
	to.epochs = epochs;
	tg_metrics last;
	if (tg_fit(net, opt, NULL, ds, NULL, &test, &to, &last) || copy_filters(net, w[1]))
		goto out_error;
	printf("final test accuracy %.4f (train %.4f), %lld epoch%s, %.1f s of training\n",
	       last.test_acc, last.train_acc, (long long)last.epoch, last.epoch == 1 ? "" : "s",
	       last.seconds);
	int drawn = -1; /* demo_render: 1 drawn, 0 no gnuplot (said so), -1 failed */
	if (write_csv(out, (const double *[]){ w[0], w[1] }) ||
	    write_gp(out, last.epoch, ds->n, last.test_acc) ||
	    (drawn = demo_render(out, NAME)) < 0)
		goto out;
	/* only what was written: no PNG without gnuplot */
	if (drawn)
		printf("filters in %s/%s.csv, %s.gp and %s.png\n", out, NAME, NAME, NAME);
	else
		printf("filters in %s/%s.csv and %s.gp\n", out, NAME, NAME);
	rc = 0;
	goto out;
out_error:
	fprintf(stderr, "simple_convnet: %s\n", tg_error(ctx));
out:
	free(w[0]);
	free(w[1]);
	free(params);
	tg_optim_free(opt);
	tg_module_free(net);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	tg_dataset_free(&head);
	tg_ctx_free(ctx);
	return demo_end("simple_convnet", rc);
}
