/*
 * iris.c - seed 003's softmax classifier on Fisher's Iris: 4 features to 3
 * classes, trained by full-batch gradient descent.
 *
 * As in the seed: W (4,3) drawn from 0.0001 * N(0, 1), b = ones(3),
 * p = softmax(X W + b), loss = mean of -ln p[label], learning rate 0.0001,
 * 5000 epochs over all 150 samples (raw measurements in cm), W printed every
 * 1000 epochs. The classifier is a 4-3 tg_mlp (x W + b, W drawn with std
 * 0.0001, b set to ones) trained by tg_train with one batch of all the
 * samples per epoch: the gradient comes from tg_backward, not from the seed's
 * hand-written X^T (p - t) / n; the update is tapegrad's SGD, p -= lr g.
 * Because W starts so close to 0, its path hardly depends on the draw, and
 * the printed W can be read beside the seed's.
 *
 *	iris [--epochs N] [--lr X] [--seed S] [--data FILE]
 */
#include "demo.h"
#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char usage_text[] =
	"usage: iris [--epochs N] [--lr X] [--seed S] [--data FILE]\n"
	"\n"
	"Seed 003's softmax classifier 4->3 on the 150 Iris samples: full-batch\n"
	"gradient descent, lr 0.0001, 5000 epochs, W printed every 1000 epochs.\n"
	"FILE defaults to demos/data/iris.csv.\n";

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

/* After each epoch (one step on all 150 samples): the epoch's loss and
 * accuracy, measured before its update, and W after it, at epoch 1, every
 * 1000 and the last. */
typedef struct show_opts {
	const tg_tensor *W;
	double lr;
	int64_t epochs;
} show_opts;

static bool show(const tg_metrics *m, void *user)
{
	const show_opts *o = user;
	if (m->epoch == 1 || m->epoch % 1000 == 0 || m->epoch == o->epochs) {
		printf("epoch %lld: loss %.6f, accuracy %.4f (both before this step), W =\n",
		       (long long)m->epoch, m->train_loss, m->train_acc);
		print_w(o->W, m->epoch, o->lr);
	}
	return true;
}

int main(int argc, char **argv)
{
	int64_t epochs = 5000, seed = 42;
	double lr = 0.0001;
	char path[PATH_MAX];
	const char *data = demo_find_data("iris.csv", path, sizeof path);
	demo_cli c = demo_cli_begin("iris", usage_text, argc, argv);
	while (demo_cli_next(&c)) {
		if (demo_int(&c, "--epochs", 1, 100000000, &epochs) ||
		    demo_real(&c, "--lr", 1e-12, 1e3, &lr) ||
		    demo_int(&c, "--seed", 0, INT64_MAX, &seed) || demo_str(&c, "--data", &data))
			continue;
		demo_unknown(&c);
	}

	tg_ctx *ctx = demo_open("iris", (uint64_t)seed, 1);
	if (!ctx)
		return 1;
	tg_dataset ds;
	if (tg_load_iris(ctx, data, &ds)) {
		fprintf(stderr, "iris: %s\n", tg_error(ctx));
		tg_ctx_free(ctx);
		return 1;
	}

	/* self.params['W'] = 0.0001 * np.random.randn(4, 3); self.params['b'] = np.ones(3):
	 * a 4-3 net has exactly these two parameters, x W + b */
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	mo.init = (tg_init){ TG_INIT_STD, 0.0001 };
	tg_mlp *net = tg_mlp_new(ctx, "4-3", &mo);
	size_t np = 0;
	tg_tensor *const *params = tg_mlp_params(net, &np);
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = lr;
	tg_optim *opt = np == 2 ? tg_optim_new(ctx, params, np, &oo) : NULL;
	if (opt) {
		double *b = tg_data_mut(params[1]);
		for (int k = 0; k < 3; k++)
			b[k] = 1;
	}
	printf("softmax classifier 4->3 on %lld Iris samples: full-batch gradient descent, "
	       "lr %g, %lld epochs\n",
	       (long long)ds.n, lr, (long long)epochs);

	/* every epoch is one batch of all the samples */
	tg_train_opts to = tg_train_defaults();
	to.epochs = epochs;
	to.batch = ds.n;
	to.progress = TG_PROGRESS_OFF;
	to.out = NULL;
	show_opts so = { .W = opt ? params[0] : NULL, .lr = lr, .epochs = epochs };
	to.on_epoch = show;
	to.user = &so;
	double acc = NAN;
	int rc = 0;
	if (!opt || tg_train(net, opt, &ds, NULL, &to, NULL) ||
	    tg_evaluate(net, &ds, 0, NULL, &acc, NULL)) {
		fprintf(stderr, "iris: %s\n", tg_error(ctx));
		rc = 1;
	} else {
		const tg_tensor *b = params[1];
		printf("b = [% .8f % .8f % .8f]\n", tg_get(b, 0), tg_get(b, 1), tg_get(b, 2));
		printf("final accuracy on the %lld samples: %.4f\n", (long long)ds.n, acc);
	}
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	return demo_end("iris", rc);
}
