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
 * Then the same check of a small CNN, as the book's ch07/gradient_check.py
 * does for its SimpleConvNet: conv 10 3x3 -> ReLU -> max-pool 2 -> affine
 * -> softmax with cross-entropy on random (1,10,10) images, weights N(0,
 * 0.01^2). Every element of every parameter is checked, and the largest
 * difference of either net above TOL makes the exit status 1.
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
/* The largest |backprop - numerical| allowed: the central difference's
 * truncation error (h^2 f''' / 6) and rounding (1e-16 / h) are far below. */
#define TOL 1e-7
/* The most samples a check is valid for: each one adds pre-activations and
 * pooling windows near which a weight's central difference straddles a
 * kink. The differences that grow with N are those kinks' (the smooth
 * parameters stay near 1e-10 at any N), not rounding in the f64 loss. */
enum { SAMPLES_MAX = 10 };

static const char usage_text[] =
	"usage: gradient_check [--seed S] [--samples N]\n"
	"\n"
	"Seed 001's check: backprop against central differences (h = 1e-4) for the\n"
	"two-layer net 784-50-10 (ReLU, init std 0.01) on the first N = 3 training\n"
	"samples of Fashion-MNIST (or the UCI digits, 64-50-10), then for the CNN\n"
	"conv 10 3x3 -> ReLU -> max-pool 2 -> affine 160-10 on N random (1,10,10)\n"
	"images, in f64; prints the mean and largest absolute difference per\n"
	"parameter and exits 1 when one exceeds 1e-7.\n"
	"  --samples N  1 to 10 (default 3). More samples put a ReLU or max-pool kink\n"
	"               within h of most conv1.W elements (66 of 90 at N = 30, 83 at\n"
	"               200), where the central difference, not backprop, is wrong: the\n"
	"               check would compare almost nothing, or fail for the kinks.\n";

/* The seed's reference figures (MNIST, its own random weights), for the
 * two-layer net's W1, b1, W2, b2. */
static const double seed_diff[] = { 5.398688478090664e-10, 3.2650435077851737e-09,
				    7.627149721649046e-09, 1.4077597242229123e-07 };

/* A model, its input and labels: what one check needs. */
typedef struct problem {
	tg_module *model;
	int ndim;
	const int64_t *shape; /* the input's: (N,D) or (N,C,H,W) */
	const double *x;
	const int32_t *y;     /* (N) */
	const double *seed;   /* the seed's figures per parameter, or NULL */
} problem;

static double loss_of(const problem *pb)
{
	tg_ctx *ctx = pb->model->ctx;
	tg_tensor *x = tg_from_f64(ctx, TG_F64, pb->ndim, pb->shape, pb->x);
	return tg_item(tg_cross_entropy_i32(tg_forward(pb->model, x), pb->y, pb->shape[0]));
}

/* (f(w + h) - f(w - h)) / 2h for element w of a parameter. */
static double central(const problem *pb, double *w, double h)
{
	double keep = *w;
	*w = keep + h;
	double up = loss_of(pb);
	*w = keep - h;
	double down = loss_of(pb);
	*w = keep;
	tg_reset(pb->model->ctx);
	return (up - down) / (2 * h);
}

/* Backprop against central differences for every element of every
 * parameter of the model; prints one row per parameter. Returns the largest
 * |difference|, INFINITY on error.
 *
 * ReLU and max pooling have kinks: where a pre-activation (or the gap
 * between a window's two largest values) is within h of zero, the two
 * evaluations straddle the kink and the central difference is wrong, not
 * backprop. Such an element is found by its own numbers: a difference above
 * TOL whose central difference moves by more than TOL when h is halved (a
 * smooth loss's moves by about h^2 f''' / 8, some 1e-9). It is counted as a
 * kink and left out of the figures; a wrong gradient cannot hide so, since
 * its central differences agree with each other and not with it. */
static double check(const problem *pb)
{
	tg_ctx *ctx = pb->model->ctx;
	size_t np = tg_module_params(pb->model, NULL, 0);
	tg_tensor **params = calloc(np, sizeof *params);
	double **ana = calloc(np, sizeof *ana);
	if (!params || !ana) {
		free(params);
		free(ana);
		tg_fail(ctx, TG_ENOMEM, "gradient_check: out of memory");
		return INFINITY;
	}
	tg_module_params(pb->model, params, np);

	/* backprop: grad = network.gradient(x_batch, t_batch) */
	tg_set_grad_enabled(ctx, true);
	tg_zero_grads(ctx);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, pb->ndim, pb->shape, pb->x);
	tg_backward(tg_cross_entropy_i32(tg_forward(pb->model, x), pb->y, pb->shape[0]));
	for (size_t p = 0; p < np && tg_ok(ctx); p++) {
		size_t m = tg_numel(params[p]);
		ana[p] = malloc(m * sizeof(double));
		if (!ana[p] || tg_copy_to_f64(tg_grad(params[p]), ana[p], m))
			tg_fail(ctx, TG_ENOMEM, "gradient_check: no gradient for %s",
				tg_name(params[p]));
	}
	tg_reset(ctx);

	/* numerical: numerical_gradient(loss, W) for each parameter, element by element */
	tg_set_grad_enabled(ctx, false);
	printf("%-8s %8s %6s %28s %18s %18s\n", "", "elements", "kinks",
	       "mean |backprop - numerical|", "max |difference|", pb->seed ? "seed 001 (MNIST)" : "");
	double worst = 0;
	for (size_t p = 0; p < np && tg_ok(ctx); p++) {
		size_t m = tg_numel(params[p]);
		double *w = tg_data_mut(params[p]);
		double sum = 0, most = 0;
		size_t kinks = 0;
		for (size_t i = 0; i < m && tg_ok(ctx); i++) {
			double num = central(pb, &w[i], H);
			double d = fabs(num - ana[p][i]);
			if (d > TOL && fabs(central(pb, &w[i], H / 2) - num) > TOL) {
				kinks++;
				continue;
			}
			sum += d;
			most = d > most ? d : most;
		}
		/* no mean of nothing: with every element at a kink none was compared */
		if (kinks == m)
			printf("%-8s %8zu %6zu %28s %18s", tg_name(params[p]), m, kinks,
			       "no element usable", "-");
		else
			printf("%-8s %8zu %6zu %28.3e %18.3e", tg_name(params[p]), m, kinks,
			       sum / (double)(m - kinks), most);
		if (pb->seed && p < 4)
			printf(" %18.3e", pb->seed[p]);
		printf("\n");
		fflush(stdout);
		worst = most > worst ? most : worst;
	}
	for (size_t p = 0; p < np; p++)
		free(ana[p]);
	free(ana);
	free(params);
	return tg_ok(ctx) ? worst : INFINITY;
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

/* Seed 001's two-layer net on the first n samples. */
static double check_mlp(tg_ctx *ctx, int64_t n)
{
	tg_dataset ds;
	const char *what;
	if (load(ctx, n, &ds, &what))
		return INFINITY;
	char spec[64];
	snprintf(spec, sizeof spec, "%lld-50-10", (long long)ds.d);
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	mo.act = (tg_act){ TG_ACT_RELU, 0 };
	mo.init = (tg_init){ TG_INIT_STD, 0.01 };
	tg_mlp *net = tg_mlp_new(ctx, spec, &mo);
	double *x = malloc((size_t)(ds.n * ds.d) * sizeof *x);
	double worst = INFINITY;
	if (net && x) {
		for (int64_t i = 0; i < ds.n * ds.d; i++)
			x[i] = ds.x[i];
		printf("two-layer net %s (ReLU, init std 0.01), f64, on the first %lld samples of "
		       "%s\n",
		       spec, (long long)ds.n, what);
		problem pb = { .model = tg_mlp_module(net), .ndim = 2,
			       .shape = (int64_t[]){ ds.n, ds.d }, .x = x, .y = ds.y,
			       .seed = seed_diff };
		worst = check(&pb);
		printf("(the seed's loss took log(y + 1e-7), which its backprop ignores; that "
		       "term, not backprop, sets its larger figures)\n");
	} else if (!x) {
		tg_fail(ctx, TG_ENOMEM, "gradient_check: out of memory");
	}
	free(x);
	tg_mlp_free(net);
	tg_dataset_free(&ds);
	return worst;
}

/* The book's ch07 check: a small CNN on n random (1,10,10) images. */
static double check_cnn(tg_ctx *ctx, int64_t n)
{
	const char *arch = "conv:1:10:3,relu,maxpool:2,flatten,linear:160:10";
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	mo.init = (tg_init){ TG_INIT_STD, 0.01 };
	tg_module *cnn = tg_model_parse(ctx, arch, &mo);
	double *x = malloc((size_t)(n * 100) * sizeof *x);
	int32_t *y = malloc((size_t)n * sizeof *y);
	double worst = INFINITY;
	if (cnn && x && y) {
		for (int64_t i = 0; i < n * 100; i++)
			x[i] = tg_random_uniform(ctx); /* the book's np.random.rand */
		for (int64_t i = 0; i < n; i++)
			y[i] = (int32_t)((1 + 3 * i) % 10);
		printf("\nCNN %s (init std 0.01), f64, on %lld random (1,10,10) images\n", arch,
		       (long long)n);
		problem pb = { .model = cnn, .ndim = 4, .shape = (int64_t[]){ n, 1, 10, 10 },
			       .x = x, .y = y };
		worst = check(&pb);
	} else if (cnn) {
		tg_fail(ctx, TG_ENOMEM, "gradient_check: out of memory");
	}
	free(x);
	free(y);
	tg_module_free(cnn);
	return worst;
}

int main(int argc, char **argv)
{
	int64_t seed = 42, n = 3;
	demo_cli c = demo_cli_begin("gradient_check", usage_text, argc, argv);
	while (demo_cli_next(&c)) {
		if (demo_int(&c, "--seed", 0, INT64_MAX, &seed) ||
		    demo_int(&c, "--samples", 1, SAMPLES_MAX, &n))
			continue;
		demo_unknown(&c);
	}

	tg_ctx *ctx = tg_ctx_new((uint64_t)seed);
	if (!ctx)
		return 1;
	double mlp = check_mlp(ctx, n);
	double cnn = tg_ok(ctx) ? check_cnn(ctx, n) : INFINITY;
	int rc = 0;
	if (!tg_ok(ctx)) {
		fprintf(stderr, "gradient_check: %s\n", tg_error(ctx));
		rc = 1;
	} else if (!(mlp <= TOL && cnn <= TOL)) {
		fprintf(stderr,
			"gradient_check: the largest difference is %.3e (two-layer net) and %.3e "
			"(CNN); more than %.0e means a wrong gradient\n",
			mlp, cnn, TOL);
		rc = 1;
	} else {
		printf("\nlargest difference %.3e (two-layer net), %.3e (CNN): within %.0e\n", mlp,
		       cnn, TOL);
	}
	tg_ctx_free(ctx);
	return demo_end("gradient_check", rc);
}
