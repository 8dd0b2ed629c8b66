/*
 * gradient_check.c - seed 001's gradient check of the two-layer net:
 * backpropagation against numerical gradients on three samples, in f64.
 *
 * The net is the book's TwoLayerNet of chapter 5 (Affine, ReLU, Affine,
 * softmax with cross-entropy; weights N(0, 0.01^2), biases 0) and the check
 * is the seed's: the numerical gradient of each parameter element by central
 * differences (f(w + h) - f(w - h)) / 2h with h = 1e-4, against the gradient
 * tg_backward gives, reported as the mean absolute difference per parameter
 * W1, b1, W2, b2. The samples are the first three Fashion-MNIST training
 * images (the UCI digits when Fashion-MNIST is not installed).
 *
 * The seed's differences are larger than these because the book's
 * cross_entropy_error takes log(y + 1e-7), which its backprop ignores: a
 * relative error of about 1e-7 / y in every gradient (1.4e-7 for b2).
 * tg_cross_entropy is exact, so what remains here is the central
 * difference's own truncation and rounding.
 *
 *	gradient_check [--seed S] [--samples N]
 */
#include "demo.h"
#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define H 1e-4 /* the book's numerical_gradient step */

static const char usage_text[] =
	"usage: gradient_check [--seed S] [--samples N]\n"
	"\n"
	"Seed 001's check: backprop against central differences (h = 1e-4) for the\n"
	"two-layer net 784-50-10 (ReLU, init std 0.01) on the first N = 3 training\n"
	"samples of Fashion-MNIST (or the UCI digits, 64-50-10), in f64; prints the\n"
	"mean absolute difference per parameter.\n";

/* The seed's reference figures (MNIST, its own random weights). */
static const char *const names[] = { "W1", "b1", "W2", "b2" };
static const double seed_diff[] = { 5.398688478090664e-10, 3.2650435077851737e-09,
				    7.627149721649046e-09, 1.4077597242229123e-07 };

static double loss_of(tg_mlp *net, tg_tensor *x, const int32_t *y)
{
	return tg_item(tg_cross_entropy_i32(tg_mlp_forward(net, x), y, tg_dim(x, 0)));
}

/* The data: Fashion-MNIST's first n training samples, else the digits'. */
static int load(tg_ctx *ctx, int64_t n, tg_dataset *out, const char **what)
{
	tg_dataset train = { 0 }, test = { 0 }, all = { 0 };
	int rc;
	if (access(TG_FASHION_MNIST_DIR, R_OK) == 0) {
		*what = "Fashion-MNIST";
		rc = tg_load_mnist(ctx, TG_FASHION_MNIST_DIR, &train, &test);
		if (rc == 0)
			rc = tg_dataset_head(ctx, &train, n, out);
	} else {
		char path[PATH_MAX];
		*what = "UCI digits (Fashion-MNIST is not installed)";
		rc = tg_load_digits(ctx, demo_find_data("digits.csv.gz", path, sizeof path), &all);
		if (rc == 0)
			rc = tg_dataset_head(ctx, &all, n, out);
	}
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	tg_dataset_free(&all);
	return rc;
}

int main(int argc, char **argv)
{
	int64_t seed = 42, n = 3;
	demo_cli c = demo_cli_begin("gradient_check", usage_text, argc, argv);
	while (demo_cli_next(&c)) {
		if (demo_int(&c, "--seed", 0, INT64_MAX, &seed) ||
		    demo_int(&c, "--samples", 1, 60000, &n))
			continue;
		demo_unknown(&c);
	}

	tg_ctx *ctx = tg_ctx_new((uint64_t)seed);
	if (!ctx)
		return 1;
	tg_dataset ds;
	const char *what;
	if (load(ctx, n, &ds, &what)) {
		fprintf(stderr, "gradient_check: %s\n", tg_error(ctx));
		tg_ctx_free(ctx);
		return 1;
	}
	char spec[64];
	snprintf(spec, sizeof spec, "%lld-50-10", (long long)ds.d);
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	mo.act = (tg_act){ TG_ACT_RELU, 0 };
	mo.init = (tg_init){ TG_INIT_STD, 0.01 };
	tg_mlp *net = tg_mlp_new(ctx, spec, &mo);
	size_t np = 0;
	tg_tensor *const *params = tg_mlp_params(net, &np);
	printf("two-layer net %s (ReLU, init std 0.01), f64, on the first %lld samples of %s\n",
	       spec, (long long)ds.n, what);

	/* backprop: grad = network.gradient(x_batch, t_batch) */
	tg_tensor *x = tg_from_f32(ctx, TG_F64, 2, (int64_t[]){ ds.n, ds.d }, ds.x);
	tg_zero_grads(ctx);
	tg_backward(tg_cross_entropy_i32(tg_mlp_forward(net, x), ds.y, tg_dim(x, 0)));
	double *ana[4] = { 0 };
	for (size_t p = 0; p < np && p < 4 && tg_ok(ctx); p++) {
		size_t m = tg_numel(params[p]);
		ana[p] = malloc(m * sizeof(double));
		if (!ana[p] || tg_copy_to_f64(tg_grad(params[p]), ana[p], m))
			tg_fail(ctx, TG_ENOMEM, "gradient_check: no gradient for %s", names[p]);
	}
	tg_reset(ctx);

	/* numerical: numerical_gradient(loss, W) for each parameter, element by element */
	tg_set_grad_enabled(ctx, false);
	printf("%-4s %8s %24s %24s %16s\n", "", "elements", "mean |backprop - numerical|",
	       "max |difference|", "seed 001 (MNIST)");
	for (size_t p = 0; p < np && p < 4 && tg_ok(ctx); p++) {
		size_t m = tg_numel(params[p]);
		double *w = tg_data_mut(params[p]);
		double sum = 0, most = 0;
		for (size_t i = 0; i < m && tg_ok(ctx); i++) {
			double keep = w[i];
			w[i] = keep + H;
			x = tg_from_f32(ctx, TG_F64, 2, (int64_t[]){ ds.n, ds.d }, ds.x);
			double up = loss_of(net, x, ds.y);
			w[i] = keep - H;
			double down = loss_of(net, x, ds.y);
			w[i] = keep;
			tg_reset(ctx);
			double d = fabs((up - down) / (2 * H) - ana[p][i]);
			sum += d;
			most = d > most ? d : most;
		}
		printf("%-4s %8zu %24.3e %24.3e %16.3e\n", names[p], m, sum / (double)m, most,
		       seed_diff[p]);
		fflush(stdout);
	}
	printf("(the seed's loss took log(y + 1e-7), which its backprop ignores; that term, "
	       "not backprop, sets its larger figures)\n");
	int rc = 0;
	if (!tg_ok(ctx)) {
		fprintf(stderr, "gradient_check: %s\n", tg_error(ctx));
		rc = 1;
	}
	for (int p = 0; p < 4; p++)
		free(ana[p]);
	tg_mlp_free(net);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	return rc;
}
