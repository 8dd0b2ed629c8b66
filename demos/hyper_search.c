/*
 * hyper_search.c - random search for the learning rate and the weight decay
 * (seed 001's question 3, seed 004's list of hyperparameters; the book's
 * chapter 6): 500 Fashion-MNIST samples of which 20% are held out for
 * validation, a 784-100x6-10 ReLU net (He init), SGD, 100 trials of 50
 * epochs with lr = 10^U(-6, -2) and weight decay = 10^U(-8, -4).
 *
 * The trials run in two forked processes, each trial in a context of its
 * own, trained by tg_train and measured by tg_evaluate; every child sends its results back through a pipe. Prints each trial
 * as it arrives and the best five, writes hyper_search.csv and
 * hyper_search.gp, and draws hyper_search.png: validation accuracy over
 * (lr, weight decay), and over lr alone.
 *
 *	hyper_search [--out DIR] [--quick]
 */
#include "experiments.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- 7. hyperparameter random search ------------------------------------------------------- */

ex_hyper_opts ex_hyper_defaults(void)
{
	return (ex_hyper_opts){
		.n = 500,
		.n_val = 100,
		.spec = "784-100-100-100-100-100-100-10",
		.trials = 100,
		.epochs = 50,
		.batch = 100,
		.lr_lo = -6,
		.lr_hi = -2,
		.wd_lo = -8,
		.wd_hi = -4,
		.workers = 2,
		.seed = 1,
	};
}

/* One trial in a fresh context: SGD with t->lr and t->weight_decay for
 * o->epochs shuffled epochs, then the accuracies. A trial that fails (a NaN
 * from a huge learning rate) gets NAN accuracies; the search goes on. */
static void hyper_trial(const tg_dataset *train, const tg_dataset *val,
			const ex_hyper_opts *o, ex_trial *t)
{
	char err[EX_ERR];
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = t->lr;
	oo.weight_decay = t->weight_decay;
	tg_mlp_opts mo = tg_mlp_defaults(); /* ReLU, He */
	ex_net a;
	t->val_acc = t->train_acc = NAN;
	if (ex_net_open(&a, o->seed + 1 + (uint64_t)t->index, o->spec, &mo, &oo, "trial", err) == 0) {
		tg_train_opts to = ex_train_opts(o->batch);
		to.epochs = o->epochs;
		if (tg_train(a.m, a.opt, train, NULL, &to, NULL) == 0) {
			t->val_acc = ex_accuracy(a.m, val);
			t->train_acc = ex_accuracy(a.m, train);
		}
	}
	ex_net_close(&a);
}

static void hyper_log(FILE *log, const ex_trial *t, int done, int trials)
{
	if (!log)
		return;
	fprintf(log, "trial %3d (%3d/%d, process %d): lr %.3e, weight decay %.3e: "
		"validation accuracy %.3f\n",
		t->index, done, trials, t->worker, t->lr, t->weight_decay, t->val_acc);
	fflush(log);
}

/* Reads exactly n bytes unless the pipe ends first; returns the count read. */
static size_t read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

/* The children's side: process w runs trials w, w + workers, ... and writes
 * each result to fd as one ex_trial record (smaller than PIPE_BUF, so each
 * write arrives whole). */
static void hyper_child(const tg_dataset *train, const tg_dataset *val,
			const ex_hyper_opts *o, ex_trial *trials, int w, int fd)
{
	for (int i = w; i < o->trials; i += o->workers) {
		hyper_trial(train, val, o, &trials[i]);
		trials[i].worker = w;
		if (write(fd, &trials[i], sizeof trials[i]) != (ssize_t)sizeof trials[i])
			_exit(1);
	}
	_exit(0);
}

/* The parent's side: starts the workers and collects their records as they
 * come. 0 ok, -1 if a worker could not be started or did not deliver. */
static int hyper_parallel(const tg_dataset *train, const tg_dataset *val,
			  const ex_hyper_opts *o, ex_trial *trials, FILE *log, char *err)
{
	enum { MAX_WORKERS = 16 };
	int nw = o->workers > MAX_WORKERS ? MAX_WORKERS : o->workers;
	struct pollfd pfd[MAX_WORKERS];
	pid_t pid[MAX_WORKERS];
	int started = 0, rc = 0;
	fflush(NULL); /* or the children would print the parent's buffers again */
	for (; started < nw; started++) {
		int fd[2];
		if (pipe(fd) != 0) {
			rc = ex_fail(err, "hyperparameter search: pipe: %s", strerror(errno));
			break;
		}
		pid[started] = fork();
		if (pid[started] < 0) {
			rc = ex_fail(err, "hyperparameter search: fork: %s", strerror(errno));
			close(fd[0]);
			close(fd[1]);
			break;
		}
		if (pid[started] == 0) {
			for (int j = 0; j < started; j++)
				close(pfd[j].fd);
			close(fd[0]);
			hyper_child(train, val, o, trials, started, fd[1]);
		}
		close(fd[1]);
		pfd[started] = (struct pollfd){ .fd = fd[0], .events = POLLIN };
	}

	int done = 0, open = started;
	while (open > 0) {
		if (poll(pfd, (nfds_t)started, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = ex_fail(err, "hyperparameter search: poll: %s", strerror(errno));
			break;
		}
		for (int j = 0; j < started; j++) {
			if (pfd[j].fd < 0 || !(pfd[j].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ex_trial t;
			if (read_full(pfd[j].fd, &t, sizeof t) == sizeof t && t.index >= 0 &&
			    t.index < o->trials) {
				trials[t.index] = t;
				hyper_log(log, &t, ++done, o->trials);
			} else {
				close(pfd[j].fd);
				pfd[j].fd = -1;
				open--;
			}
		}
	}
	for (int j = 0; j < started; j++) {
		if (pfd[j].fd >= 0)
			close(pfd[j].fd);
		int status;
		while (waitpid(pid[j], &status, 0) < 0 && errno == EINTR)
			;
	}
	if (!rc && done != o->trials)
		rc = ex_fail(err, "hyperparameter search: %d of %d trials came back", done, o->trials);
	return rc;
}

int ex_hyper_run(const tg_dataset *train, const ex_hyper_opts *o, ex_trial *out, FILE *log,
		 char *err)
{
	if (o->trials < 1 || o->epochs < 1 || o->batch < 1 || o->n_val < 1 || o->n_val >= o->n)
		return ex_fail(err, "hyperparameter search: %d trials, %d epochs, %lld of %lld held out",
			    o->trials, o->epochs, (long long)o->n_val, (long long)o->n);
	tg_ctx *ctx = tg_ctx_new(o->seed);
	tg_dataset head = { 0 }, tr = { 0 }, val = { 0 };
	int rc = ctx && !tg_dataset_head(ctx, train, o->n, &head) &&
				 !tg_dataset_split(ctx, &head, o->n_val, &tr, &val)
			 ? 0
			 : ex_fail(err, "hyperparameter search: %s", ctx ? tg_error(ctx) : "out of memory");
	for (int i = 0; i < o->trials && !rc; i++) {
		double u = tg_random_uniform(ctx), v = tg_random_uniform(ctx);
		out[i] = (ex_trial){
			.index = i,
			.lr = pow(10, o->lr_lo + (o->lr_hi - o->lr_lo) * u),
			.weight_decay = pow(10, o->wd_lo + (o->wd_hi - o->wd_lo) * v),
			.val_acc = NAN,
			.train_acc = NAN,
		};
	}
	tg_ctx_free(ctx);
	if (!rc && o->workers > 1) {
		rc = hyper_parallel(&tr, &val, o, out, log, err);
	} else {
		for (int i = 0; i < o->trials && !rc; i++) {
			hyper_trial(&tr, &val, o, &out[i]);
			hyper_log(log, &out[i], i + 1, o->trials);
		}
	}
	tg_dataset_free(&head);
	tg_dataset_free(&tr);
	tg_dataset_free(&val);
	return rc;
}

/* ---- the demo ---------------------------------------------------------------------------- */

#ifndef EX_NO_MAIN

enum { BEST = 5 };

/* best first; failed trials (NAN) last */
static int by_val_acc(const void *a, const void *b)
{
	double x = ((const ex_trial *)a)->val_acc, y = ((const ex_trial *)b)->val_acc;
	if (isnan(x) || isnan(y))
		return isnan(x) - isnan(y);
	return (x < y) - (x > y);
}

static int write_csv(const char *dir, const ex_trial *sorted, int n)
{
	FILE *f = demo_create(dir, "hyper_search.csv");
	if (!f)
		return -1;
	fprintf(f, "rank,trial,lr,weight_decay,val_acc,train_acc,process\n");
	for (int i = 0; i < n; i++)
		fprintf(f, "%d,%d,%.6g,%.6g,%.4f,%.4f,%d\n", i + 1, sorted[i].index, sorted[i].lr,
			sorted[i].weight_decay, sorted[i].val_acc, sorted[i].train_acc,
			sorted[i].worker);
	return demo_close(f, dir, "hyper_search.csv");
}

static int write_gp(const char *dir, const ex_hyper_opts *o)
{
	FILE *gp = demo_create(dir, "hyper_search.gp");
	if (!gp)
		return -1;
	demo_gp_begin(gp, "hyper_search", 1400, 560);
	fprintf(gp,
		"set multiplot layout 1,2 title \"Random search, %d trials: %lld Fashion-MNIST "
		"samples (%lld held out), %s ReLU, SGD, %d epochs\\n"
		"lr = 10^U(%g, %g), weight decay = 10^U(%g, %g); circled: the best %d\"\n"
		"set logscale x\n"
		"set format x '10^{%%L}'\n"
		"set grid\n"
		"set key off\n"
		"set xrange [10**%g:10**%g]\n"
		"set title 'validation accuracy over (lr, weight decay)'\n"
		"set xlabel 'learning rate'\n"
		"set ylabel 'weight decay'\n"
		"set logscale y\n"
		"set format y '10^{%%L}'\n"
		"set yrange [10**%g:10**%g]\n"
		"set cbrange [0:1]\n"
		"set cblabel 'validation accuracy'\n"
		"set palette defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', "
		"0.75 '#5ec962', 1 '#fde725')\n"
		"plot 'hyper_search.csv' using 3:4:5 with points pt 7 ps 1.6 palette, \\\n"
		"     'hyper_search.csv' every ::0::%d using 3:4 with points pt 6 ps 3 lw 2 "
		"lc rgb 'red'\n"
		"unset logscale y\n"
		"set format y '%%g'\n"
		"set yrange [0:1]\n"
		"set ylabel 'validation accuracy'\n"
		"set title 'validation accuracy over lr (colour: weight decay, log10)'\n"
		"set cbrange [%g:%g]\n"
		"set cblabel 'log10 weight decay'\n"
		"plot 'hyper_search.csv' using 3:5:(log10($4)) with points pt 7 ps 1.4 palette, \\\n"
		"     'hyper_search.csv' every ::0::%d using 3:5 with points pt 6 ps 3 lw 2 "
		"lc rgb 'red'\n"
		"unset multiplot\n",
		o->trials, (long long)o->n, (long long)o->n_val, o->spec, o->epochs, o->lr_lo,
		o->lr_hi, o->wd_lo, o->wd_hi, BEST, o->lr_lo, o->lr_hi, o->wd_lo, o->wd_hi,
		BEST - 1, o->wd_lo, o->wd_hi, BEST - 1);
	return demo_close(gp, dir, "hyper_search.gp");
}

int main(int argc, char **argv)
{
	demo_plot cli = demo_plot_args(argc, argv, "hyper_search",
					"random search for the learning rate and the weight decay",
					"10 trials of 5 epochs instead of 100 of 50");

	char err[EX_ERR];
	tg_dataset train = { 0 }, test = { 0 };
	if (ex_load_fashion(&train, &test, err)) {
		fprintf(stderr, "hyper_search: %s\n", err);
		return 1;
	}
	ex_hyper_opts o = ex_hyper_defaults();
	if (cli.quick) {
		o.trials = 10;
		o.epochs = 5;
	}
	printf("%d trials of %d epochs: %lld Fashion-MNIST samples, %lld held out for "
	       "validation, %s ReLU, SGD batch %lld, lr = 10^U(%g, %g), weight decay = "
	       "10^U(%g, %g)\n",
	       o.trials, o.epochs, (long long)o.n, (long long)o.n_val, o.spec,
	       (long long)o.batch, o.lr_lo, o.lr_hi, o.wd_lo, o.wd_hi);
	printf("running them in %d processes: fork()ed children, each trial in its own "
	       "tg_ctx, trial i in process i %% %d; results come back through a pipe\n",
	       o.workers, o.workers);
	ex_trial *t = calloc((size_t)o.trials, sizeof *t);
	int rc = t ? ex_hyper_run(&train, &o, t, stdout, err) : -1;
	if (rc) {
		fprintf(stderr, "hyper_search: %s\n", t ? err : "out of memory");
		goto out;
	}
	qsort(t, (size_t)o.trials, sizeof *t, by_val_acc);
	printf("the best %d (the book, on MNIST, finds lr about 1e-3..1e-2 and weight decay "
	       "about 1e-8..1e-6 good):\n",
	       BEST);
	for (int i = 0; i < BEST && i < o.trials; i++)
		printf("Best-%d (val acc: %.2f) | lr: %.3g, weight decay: %.3g\n", i + 1,
		       t[i].val_acc, t[i].lr, t[i].weight_decay);
	int good = 0;
	double lr_min = INFINITY, lr_max = 0;
	for (int i = 0; i < BEST && i < o.trials; i++) {
		lr_min = fmin(lr_min, t[i].lr);
		lr_max = fmax(lr_max, t[i].lr);
	}
	for (int i = 0; i < o.trials; i++)
		good += t[i].lr < 1e-4 && t[i].val_acc > 0.5;
	printf("the best five have lr in [%.2g, %.2g]; %d trials with lr below 1e-4 reached "
	       "a validation accuracy above 0.5\n",
	       lr_min, lr_max, good);
	rc = write_csv(cli.out, t, o.trials) || write_gp(cli.out, &o) ||
	     demo_render(cli.out, "hyper_search") < 0;
out:
	free(t);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	return demo_end("hyper_search", rc ? 1 : 0);
}

#endif /* EX_NO_MAIN */
