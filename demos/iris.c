/*
 * iris.c - seed 003's softmax classifier on Fisher's Iris: 4 features to 3
 * classes, trained by full-batch gradient descent.
 *
 * As in the seed: W (4,3) drawn from 0.0001 * N(0, 1), b = ones(3),
 * p = softmax(X W + b), loss = mean of -ln p[label], learning rate 0.0001,
 * 5000 epochs over all 150 samples (raw measurements in cm), W printed every
 * 1000 epochs. The gradient comes from tg_backward, not from the seed's
 * hand-written X^T (p - t) / n; the update is tapegrad's SGD, p -= lr g.
 * Because W starts so close to 0, its path hardly depends on the draw, and
 * the printed W can be read beside the seed's.
 *
 *	iris [--epochs N] [--lr X] [--seed S] [--data FILE]
 */
#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
	"usage: iris [--epochs N] [--lr X] [--seed S] [--data FILE]\n"
	"\n"
	"Seed 003's softmax classifier 4->3 on the 150 Iris samples: full-batch\n"
	"gradient descent, lr 0.0001, 5000 epochs, W printed every 1000 epochs.\n"
	"FILE defaults to demos/data/iris.csv.\n";

static void usage_error(const char *opt)
{
	fprintf(stderr, "iris: %s needs a positive number\n\n%s", opt, usage_text);
	exit(2);
}

/* W as seed 003 printed it at epochs 1000, 2000, 3000 and 4000 (its own
 * random start; the path hardly depends on it). */
static const double seed_w[4][4][3] = {
	{ { -0.00321581, 0.00061467, 0.0025906 }, { 0.02404027, -0.01065741, -0.01343641 },
	  { -0.05779136, 0.01472877, 0.04306699 }, { -0.0255728, 0.00370264, 0.02199303 } },
	{ { 0.00861248, -0.00040284, -0.00822019 }, { 0.05412096, -0.02178615, -0.03238836 },
	  { -0.10186908, 0.02754678, 0.07432669 }, { -0.04607576, 0.00652109, 0.03967753 } },
	{ { 0.02155924, -0.00163555, -0.01993423 }, { 0.08324693, -0.03262187, -0.0506786 },
	  { -0.1418079, 0.03937622, 0.10243607 }, { -0.06481271, 0.00892456, 0.05601101 } },
	{ { 0.03370442, -0.00258894, -0.03112603 }, { 0.11051824, -0.0428869, -0.06768488 },
	  { -0.17908648, 0.05050046, 0.12859041 }, { -0.08228968, 0.01100061, 0.07141193 } },
};

/* W, and beside it the seed's W of the same epoch when there is one. */
static void print_w(const tg_tensor *W, long long epoch, double lr)
{
	bool ref = lr == 0.0001 && epoch % 1000 == 0 && epoch >= 1000 && epoch <= 4000;
	if (ref)
		printf("  %-38s   %s\n", "tapegrad", "seed 003");
	for (int i = 0; i < 4; i++) {
		printf("  %s% .8f % .8f % .8f%s", i ? " " : "[", tg_get(W, (size_t)i * 3),
		       tg_get(W, (size_t)i * 3 + 1), tg_get(W, (size_t)i * 3 + 2),
		       i == 3 ? "]" : ref ? " " : "");
		if (ref) {
			const double *r = seed_w[epoch / 1000 - 1][i];
			printf("   %s% .8f % .8f % .8f%s", i ? " " : "[", r[0], r[1], r[2],
			       i == 3 ? "]" : "");
		}
		printf("\n");
	}
}

/* Accuracy of softmax(X W + b) on all of x, without recording. */
static double accuracy(tg_tensor *x, const int32_t *y, int64_t n, tg_tensor *W, tg_tensor *b)
{
	tg_ctx *ctx = tg_ctx_of(W);
	bool grad = tg_set_grad_enabled(ctx, false);
	tg_tensor *h = tg_add(tg_matmul(x, W), b);
	int32_t pred[150];
	int64_t right = 0;
	if (n <= 150 && tg_argmax_rows(h, pred) == 0)
		for (int64_t i = 0; i < n; i++)
			right += pred[i] == y[i];
	tg_set_grad_enabled(ctx, grad);
	return (double)right / (double)n;
}

/* demos/data/<name>: from the working directory, from beside the build
 * tree the program sits in (build/demos/), or under $TG_SOURCE_ROOT. */
static const char *find_data(const char *name, char *buf, size_t size)
{
	char dir[3][PATH_MAX] = { "." };
	ssize_t n = readlink("/proc/self/exe", dir[1], sizeof dir[1] - 16);
	char *slash = n > 0 ? (dir[1][n] = 0, strrchr(dir[1], '/')) : NULL;
	if (slash)
		strcpy(slash, "/../..");
	else
		dir[1][0] = 0;
	const char *root = getenv("TG_SOURCE_ROOT");
	snprintf(dir[2], sizeof dir[2], "%s", root ? root : "");
	for (int i = 0; i < 3; i++) {
		if (!dir[i][0])
			continue;
		int len = snprintf(buf, size, "%s/demos/data/%s", dir[i], name);
		if (len > 0 && (size_t)len < size && access(buf, R_OK) == 0)
			return buf;
	}
	snprintf(buf, size, "demos/data/%s", name);
	return buf;
}

int main(int argc, char **argv)
{
	long long epochs = 5000, seed = 42;
	double lr = 0.0001;
	char path[PATH_MAX];
	find_data("iris.csv", path, sizeof path);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end = NULL;
		errno = 0;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(a, "--epochs")) {
			epochs = v ? strtoll(v, &end, 10) : 0;
			if (!v || *end || errno || epochs < 1)
				usage_error(a);
		} else if (!strcmp(a, "--lr")) {
			lr = v ? strtod(v, &end) : 0;
			if (!v || *end || errno || !(lr > 0))
				usage_error(a);
		} else if (!strcmp(a, "--seed")) {
			seed = v ? strtoll(v, &end, 10) : -1;
			if (!v || *end || errno || seed < 0)
				usage_error(a);
		} else if (!strcmp(a, "--data") && v) {
			snprintf(path, sizeof path, "%s", v);
		} else {
			fprintf(stderr, "iris: unknown option %s\n\n%s", a, usage_text);
			return 2;
		}
		i++;
	}

	tg_ctx *ctx = tg_ctx_new((uint64_t)seed);
	if (!ctx)
		return 1;
	tg_dataset ds;
	if (tg_load_iris(ctx, path, &ds)) {
		fprintf(stderr, "iris: %s\n", tg_error(ctx));
		tg_ctx_free(ctx);
		return 1;
	}
	int64_t n = ds.n;

	/* self.params['W'] = 0.0001 * np.random.randn(4, 3); self.params['b'] = np.ones(3) */
	tg_tensor *W = tg_set_name(tg_param(tg_randn(ctx, TG_F64, 2, (int64_t[]){ 4, 3 }, 0,
						     0.0001)), "W");
	tg_tensor *b = tg_set_name(tg_param(tg_ones(ctx, TG_F64, 1, (int64_t[]){ 3 })), "b");
	tg_tensor *params[] = { W, b };
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = lr;
	tg_optim *opt = tg_optim_new(ctx, params, 2, &oo);
	printf("softmax classifier 4->3 on %lld Iris samples: full-batch gradient descent, "
	       "lr %g, %lld epochs\n",
	       (long long)n, lr, epochs);

	for (long long e = 1; e <= epochs && tg_ok(ctx); e++) {
		tg_tensor *x = tg_from_f32(ctx, TG_F64, 2, (int64_t[]){ n, 4 }, ds.x);
		tg_tensor *loss = tg_cross_entropy_i32(tg_add(tg_matmul(x, W), b), ds.y, n);
		tg_optim_zero_grad(opt);
		tg_backward(loss);
		tg_optim_step(opt);
		if (e == 1 || e % 1000 == 0 || e == epochs) {
			double acc = accuracy(x, ds.y, n, W, b);
			printf("epoch %lld: loss %.6f (before this step), accuracy %.4f, W =\n", e,
			       tg_item(loss), acc);
			print_w(W, e, lr);
		}
		tg_reset(ctx);
	}
	int rc = 0;
	if (!tg_ok(ctx)) {
		fprintf(stderr, "iris: %s\n", tg_error(ctx));
		rc = 1;
	} else {
		tg_tensor *x = tg_from_f32(ctx, TG_F64, 2, (int64_t[]){ n, 4 }, ds.x);
		printf("b = [% .8f % .8f % .8f]\n", tg_get(b, 0), tg_get(b, 1), tg_get(b, 2));
		printf("final accuracy on the %lld samples: %.4f\n", (long long)n,
		       accuracy(x, ds.y, n, W, b));
	}
	tg_optim_free(opt);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	return rc;
}
