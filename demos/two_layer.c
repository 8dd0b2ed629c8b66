/*
 * two_layer.c - the seeds' TwoLayerNet training loop, exactly, on
 * Fashion-MNIST.
 *
 * 784-50-10 with sigmoid, weights drawn from N(0, 0.01^2) (the book's
 * weight_init_std = 0.01; tapegrad's init "std:0.01"), biases 0, plain SGD
 * with lr 0.1 on batches of 100 drawn with replacement
 * (np.random.choice(train_size, batch_size)), 10 000 iterations, and the
 * train and test accuracy over the full sets after every epoch of
 * 60000 / 100 = 600 iterations. f32, as the book's float32 MNIST arrays.
 *
 *	two_layer [--iters N] [--seed S] [--threads T] [--data DIR]
 */
#include "demo.h"
#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

#include <stdio.h>
#include <stdlib.h>

static const char usage_text[] =
	"usage: two_layer [--iters N] [--seed S] [--threads T] [--data DIR]\n"
	"\n"
	"The seeds' TwoLayerNet: 784-50-10 sigmoid, init N(0, 0.01^2), SGD lr 0.1,\n"
	"batch 100 drawn with replacement, N iterations (default 10000), train and\n"
	"test accuracy every 600 iterations. DIR holds MNIST-format IDX files\n"
	"(default " TG_FASHION_MNIST_DIR ").\n"
	"T: threads (products and large loops), 1 to 256; more than the machine has\n"
	"cores are capped to its cores, with a warning.\n";

/* One line per epoch, as the seeds print train_acc, test_acc. */
static bool print_epoch(const tg_metrics *m, void *user)
{
	(void)user;
	printf("%6lld %7lld %10.4f %9.4f %10.4f %9.4f %8.1f\n", (long long)m->epoch,
	       (long long)m->iter, m->train_loss, m->train_acc, m->test_loss, m->test_acc,
	       m->seconds);
	fflush(stdout);
	return true;
}

int main(int argc, char **argv)
{
	int64_t iters = 10000, seed = 42, threads = 1;
	const char *dir = TG_FASHION_MNIST_DIR;
	demo_cli c = demo_cli_begin("two_layer", usage_text, argc, argv);
	while (demo_cli_next(&c)) {
		if (demo_int(&c, "--iters", 1, INT32_MAX, &iters) ||
		    demo_int(&c, "--seed", 0, INT64_MAX, &seed) ||
		    demo_int(&c, "--threads", 1, DEMO_MAX_THREADS, &threads) ||
		    demo_str(&c, "--data", &dir))
			continue;
		demo_unknown(&c);
	}

	tg_ctx *ctx = demo_open("two_layer", (uint64_t)seed, threads);
	if (!ctx)
		return 1;
	tg_dataset train, test;
	if (tg_load_mnist(ctx, dir, &train, &test)) {
		fprintf(stderr, "two_layer: %s\n(Fashion-MNIST is the Debian package "
				"dataset-fashion-mnist)\n", tg_error(ctx));
		tg_ctx_free(ctx);
		return 1;
	}

	tg_mlp_opts mo = tg_mlp_defaults();
	mo.act = (tg_act){ TG_ACT_SIGMOID, 0 };
	mo.init = (tg_init){ TG_INIT_STD, 0.01 };
	tg_mlp *net = tg_mlp_new(ctx, "784-50-10", &mo);
	size_t np;
	tg_tensor *const *params = tg_mlp_params(net, &np);
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = 0.1;
	tg_optim *opt = tg_optim_new(ctx, params, np, &oo);

	tg_train_opts to = tg_train_defaults();
	to.iters = iters;
	to.batch = 100;
	to.replace = true;
	to.full_train_eval = true;
	to.progress = TG_PROGRESS_OFF;
	to.out = NULL;
	printf("TwoLayerNet 784-50-10, sigmoid, init std 0.01, SGD lr 0.1, batch 100 drawn "
	       "with replacement, %lld iterations, f32\n",
	       (long long)iters);
	printf("%6s %7s %10s %9s %10s %9s %8s\n", "epoch", "iter", "train loss", "train acc",
	       "test loss", "test acc", "seconds");
	tg_metrics last;
	int rc = 0;
	to.on_epoch = print_epoch;
	if (tg_train(net, opt, &train, &test, &to, &last)) {
		fprintf(stderr, "two_layer: stopped after %lld iterations: %s\n",
			(long long)last.iter, tg_error(ctx));
		rc = 1;
	} else {
		printf("final: train accuracy %.4f, test accuracy %.4f after %lld iterations "
		       "(%.1f s)\n",
		       last.train_acc, last.test_acc, (long long)last.iter, last.seconds);
		printf("reference: PyTorch 1.13, same recipe in f32: about 0.86 train, 0.84 "
		       "test after 10000 iterations\n");
	}
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	tg_ctx_free(ctx);
	return demo_end("two_layer", rc);
}
