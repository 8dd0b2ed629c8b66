/*
 * experiments.h - the seeds' experiments (the book's chapter 6) as functions
 * that compute their numbers and hand them back.
 *
 * Each experiment is one file of demos/ (valley.c, optimizers.c,
 * init_hist.c, init_train.c, batchnorm.c, overfit.c, hyper_search.c,
 * gates.c): its computation, then the demo's main, which runs it with the
 * book's settings, prints a summary and writes CSV, a gnuplot script and,
 * when gnuplot is installed, a PNG (through demo.h). experiment.c holds what
 * several of them share. tests/seeds/test_experiments.c builds the same
 * files without their mains (EX_NO_MAIN) and calls the functions with fewer
 * iterations. The functions print nothing unless given a log stream, and
 * write no files.
 *
 * Every net trained on a data set is a tg_mlp trained by tg_train and
 * measured by tg_evaluate (nn/tapegrad_train.h): batches come from the
 * library's batcher and the net's context's generator. Only the valley (a
 * 2-D function, no data) and XOR (a single sigmoid unit and binary
 * cross-entropy on four points) write their own few-line loop of
 * tg_backward and tg_optim_step; their files say why.
 * Functions return 0, or -1 with a message in err (err may be NULL).
 *
 * Shapes: N = samples, B = batch, K = classes.
 */
#ifndef TG_EXPERIMENTS_H
#define TG_EXPERIMENTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "demo.h"
#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

enum { EX_ERR = 512 }; /* room for an error message */

/* ---- shared pieces (experiment.c) ---------------------------------------------------- */

/* One arm of a comparison: how its net is built and trained. */
typedef struct ex_arm {
	const char *label; /* names the arm in summaries and CSV columns */
	tg_mlp_opts net;
	tg_optim_opts optim;
} ex_arm;

/* A net and its optimizer in a context of their own. */
typedef struct ex_net {
	tg_ctx *ctx;
	tg_mlp *m;
	tg_optim *opt;
} ex_net;

/* Writes the message to err (EX_ERR bytes; may be NULL); returns -1. */
int ex_fail(char *err, const char *fmt, ...)
#ifdef __GNUC__
	__attribute__((format(printf, 2, 3)))
#endif
	;

/* A context seeded with seed, the net spec in it and its optimizer; then the
 * context's generator is reseeded with seed + 1, so that nets opened with
 * the same seed draw the same data order whatever their initialisation drew.
 * label names the net in err. ex_net_close frees what was made (also after
 * a failure). */
int ex_net_open(ex_net *a, uint64_t seed, const char *spec, const tg_mlp_opts *net,
		const tg_optim_opts *optim, const char *label, char *err);
void ex_net_close(ex_net *a);

/* tg_train_opts for an experiment: silent (no progress, no output). */
tg_train_opts ex_train_opts(int64_t batch);

/* Fraction of ds that the net classifies right (tg_evaluate). NAN on error,
 * which stays in the net's context. */
double ex_accuracy(tg_mlp *m, const tg_dataset *ds);

/* Fashion-MNIST from TG_FASHION_MNIST_DIR (Debian's dataset-fashion-mnist),
 * standing in for the book's MNIST. */
int ex_load_fashion(tg_dataset *train, tg_dataset *test, char *err);

/* out[i] = mean of in[i - half .. i + half], the window shrunk at the ends. */
void ex_smooth(const double *in, double *out, int64_t n, int64_t half);

/* Mean of the last `last` values of v[0..n). */
double ex_tail_mean(const double *v, int64_t n, int64_t last);

/* ---- 1. optimizers on a valley: f(x, y) = x^2 / 20 + y^2 --------------------------- */

enum { EX_VALLEY_OPTIMS = 4, EX_VALLEY_MAX_STEPS = 200 };

typedef struct ex_valley_opts {
	double x0, y0; /* start: (-7, 2) */
	int steps;     /* 30 */
	tg_optim_kind kind[EX_VALLEY_OPTIMS]; /* SGD, Momentum, AdaGrad, Adam */
	double lr[EX_VALLEY_OPTIMS];	      /* 0.95, 0.1, 1.5, 0.3 */
} ex_valley_opts;

typedef struct ex_valley {
	int steps;
	/* position of optimizer k before step i; [steps] is where it ended */
	double x[EX_VALLEY_OPTIMS][EX_VALLEY_MAX_STEPS + 1];
	double y[EX_VALLEY_OPTIMS][EX_VALLEY_MAX_STEPS + 1];
} ex_valley;

ex_valley_opts ex_valley_defaults(void);
double ex_valley_f(double x, double y);
/* Each optimizer walks from (x0, y0); x and y are scalar parameters and
 * f's gradient comes from tg_backward. */
int ex_valley_run(const ex_valley_opts *o, ex_valley *out, char *err);

/* ---- 2 and 4. loss curves of several nets on the same mini-batches -------------------- */

typedef struct ex_curves_opts {
	const char *spec; /* "784-100-100-100-100-10" */
	int64_t iters;    /* 2000 */
	int64_t batch;    /* 128 */
	uint64_t seed;    /* every arm's weights start from it; batches from seed + 1 */
} ex_curves_opts;

ex_curves_opts ex_curves_defaults(void);
/* The book's optimizer comparison: ReLU, He init; SGD 0.01, Momentum 0.01,
 * AdaGrad 0.01, Adam 0.001. arms[4]. */
void ex_optimizer_arms(ex_arm *arms);
/* The book's init comparison: ReLU, SGD 0.01; std 0.01, lecun ("Xavier"),
 * he. arms[3]. */
void ex_init_arms(ex_arm *arms);
/* Trains one net per arm, each in its own context (ex_net_open), on the same
 * batches drawn with replacement (the book's np.random.choice loop): tg_train
 * one iteration at a time, all arms side by side. Stores arm a's batch loss
 * at iteration i (before that update) in loss[a * iters + i]. log (may be
 * NULL) gets the losses every 100 iterations. */
int ex_loss_curves(const tg_dataset *train, const ex_curves_opts *o, const ex_arm *arms,
		   int narms, double *loss, FILE *log, char *err);

/* ---- 3. activation histograms by initialisation ------------------------------------------ */

enum { EX_HIST_SETTINGS = 6, EX_HIST_LAYERS = 5, EX_HIST_BINS = 30 };

typedef struct ex_hist_setting {
	const char *label; /* "sigmoid std 1" */
	const char *key;   /* "sigmoid_std1": a CSV column prefix */
	tg_act_kind act;
	tg_init init;
} ex_hist_setting;

typedef struct ex_hist_opts {
	int64_t n;     /* 1000 inputs */
	int64_t width; /* 100 features and units per layer */
	uint64_t seed;
	ex_hist_setting setting[EX_HIST_SETTINGS];
} ex_hist_opts;

/* What one layer's activations look like. */
typedef struct ex_hist_layer {
	int64_t count[EX_HIST_BINS]; /* over [0, 1], the book's range */
	int64_t above;		     /* values > 1 (ReLU), not in any bin */
	double mean, std;
	double ends; /* fraction < 0.05 or > 0.95: a saturated sigmoid */
	double mid;  /* fraction within 0.05 of 0.5: a sigmoid collapsed to 0.5 */
	double zero; /* fraction exactly 0: a ReLU that is off */
} ex_hist_layer;

typedef struct ex_hist {
	ex_hist_layer layer[EX_HIST_SETTINGS][EX_HIST_LAYERS];
} ex_hist;

/* Sigmoid with std 1, std 0.01 and lecun; ReLU with std 0.01, lecun, he. */
ex_hist_opts ex_hist_defaults(void);
/* N(0, 1) inputs (N, width) through 5 hidden layers of width units with no
 * bias (tg_mlp's biases start at 0), as the seed's loop; the histograms are
 * of tg_mlp_activation(m, 1..5). */
int ex_hist_run(const ex_hist_opts *o, ex_hist *out, char *err);

/* ---- 5. batch normalisation at 16 weight scales -------------------------------------------- */

enum { EX_BN_MAX_SCALES = 16, EX_BN_MAX_EPOCHS = 100 };

typedef struct ex_bn_opts {
	int64_t n_train;  /* 1000 */
	const char *spec; /* "784-100-100-100-100-100-10" */
	double lr;	  /* SGD 0.01 */
	int64_t batch;	  /* 100 */
	int epochs;	  /* 20 */
	int nscales;	  /* 16 weight stds, logspace(0, -4) */
	uint64_t seed;
} ex_bn_opts;

typedef struct ex_bn_curve {
	double acc[EX_BN_MAX_EPOCHS + 1]; /* train accuracy after epoch e; [0] before */
	int failed;		/* -1, or the epoch in which a NaN/Inf stopped it */
	char error[EX_ERR];	/* tg_error of that failure */
} ex_bn_curve;

typedef struct ex_bn_result {
	double std; /* weight std */
	ex_bn_curve bn, plain;
} ex_bn_result;

ex_bn_opts ex_bn_defaults(void);
/* The weight std of scale i: 10^(-4 i / (nscales - 1)). */
double ex_bn_scale(const ex_bn_opts *o, int i);
/* For each scale, a net with and one without batch norm, each in its own
 * context with anomaly checks on, trained side by side by tg_train an epoch
 * at a time on the same shuffled batches of the first n_train samples; the
 * accuracies are full evaluation passes (tg_evaluate). A net that produces a NaN or Inf stops there: its
 * curve keeps the epochs before, failed and error say where and which op.
 * out[nscales]. log (may be NULL) gets one line per scale. */
int ex_bn_run(const tg_dataset *train, const ex_bn_opts *o, ex_bn_result *out, FILE *log,
	      char *err);

/* ---- 6. overfitting and its cures -------------------------------------------------------- */

enum { EX_OVERFIT_ARMS = 3, EX_OVERFIT_MAX_EPOCHS = 500 };

typedef struct ex_overfit_opts {
	int64_t n_train;     /* 300 */
	int64_t n_test;      /* 0: the whole test set */
	const char *spec;    /* "784-100-100-100-100-100-100-10" */
	double lr;	     /* SGD 0.01 */
	int64_t batch;	     /* 100 */
	int epochs;	     /* 200 */
	double weight_decay; /* 0.1 */
	double dropout;	     /* 0.2 */
	uint64_t seed;
} ex_overfit_opts;

typedef struct ex_overfit {
	const char *label[EX_OVERFIT_ARMS]; /* "plain", "weight_decay", "dropout" */
	double train_acc[EX_OVERFIT_ARMS][EX_OVERFIT_MAX_EPOCHS + 1]; /* [0]: before */
	double test_acc[EX_OVERFIT_ARMS][EX_OVERFIT_MAX_EPOCHS + 1];
} ex_overfit;

ex_overfit_opts ex_overfit_defaults(void);
/* Three nets (ReLU, He) from the same weights: no regularisation, weight
 * decay, dropout; trained side by side by tg_train an epoch at a time, with
 * full evaluation passes on the train and test sets after each. They see the
 * same shuffled batches, except that the dropout net's masks draw from its
 * generator too, so its order departs from the others' after the first
 * epoch. log (may be NULL) gets a line every 20 epochs. */
int ex_overfit_run(const tg_dataset *train, const tg_dataset *test, const ex_overfit_opts *o,
		   ex_overfit *out, FILE *log, char *err);

/* ---- 7. hyperparameter random search ----------------------------------------------------- */

typedef struct ex_hyper_opts {
	int64_t n;	  /* 500 samples, of which */
	int64_t n_val;	  /* 100 (20%) are held out for validation */
	const char *spec; /* "784-100-100-100-100-100-100-10" */
	int trials;	  /* 100 */
	int epochs;	  /* 50 */
	int64_t batch;	  /* 100 */
	double lr_lo, lr_hi; /* lr = 10^U(-6, -2) */
	double wd_lo, wd_hi; /* weight decay = 10^U(-8, -4) */
	int workers;	     /* processes (fork); 1: in this process */
	uint64_t seed;
} ex_hyper_opts;

typedef struct ex_trial {
	int index;
	double lr, weight_decay;
	double val_acc, train_acc;
	int worker; /* which process ran it */
} ex_trial;

ex_hyper_opts ex_hyper_defaults(void);
/* Draws every trial's values first, from seed, so the results do not depend
 * on which process ran what; then runs the trials in `workers` forked
 * processes, trial i in process i % workers, each trial in a fresh context
 * seeded with seed + 1 + i; each child sends its results back through a
 * pipe. out[trials], in trial order. log (may be NULL) gets one line per
 * trial as it arrives. */
int ex_hyper_run(const tg_dataset *train, const ex_hyper_opts *o, ex_trial *out, FILE *log,
		 char *err);

/* ---- 8. perceptron gates and XOR ------------------------------------------------------------ */

typedef struct ex_gate {
	const char *name;
	double w1, w2, b; /* y = [w1 x1 + w2 x2 + b > 0] */
} ex_gate;

extern const ex_gate ex_and, ex_nand, ex_or;
/* The four inputs (0,0), (1,0), (0,1), (1,1), the seeds' table order. */
extern const double ex_gate_in[4][2];

/* The gate on the four inputs: x @ w + b by the engine, then the step. */
int ex_gate_eval(const ex_gate *g, const double in[4][2], int out[4], char *err);
/* XOR as AND(NAND(x), OR(x)): a second layer of perceptrons. */
int ex_xor_by_gates(int out[4], char *err);

enum { EX_XOR_MAX_RESTARTS = 32, EX_XOR_MAX_STEPS = 20000, EX_XOR_GRID = 41 };

typedef struct ex_xor_opts {
	int restarts;  /* 10 random starts of each net */
	int steps;     /* 2000 full-batch Adam steps */
	double lr;     /* 0.1 */
	uint64_t seed; /* start r uses seed + r */
} ex_xor_opts;

typedef struct ex_xor_run {
	double loss;  /* final binary cross-entropy */
	double y[4];  /* outputs on ex_gate_in */
	bool solved;  /* all four on the right side of 0.5 */
} ex_xor_run;

typedef struct ex_xor_net {
	const char *spec; /* "2-1" (one layer), "2-2-1" (two) */
	ex_xor_run run[EX_XOR_MAX_RESTARTS];
	int solved;	  /* starts that solved XOR */
	int best;	  /* the start with the lowest final loss */
	double curve[EX_XOR_MAX_STEPS]; /* the best start's loss per step */
	/* the best start's output on a grid over [-0.25, 1.25]^2: [i][j] at
	 * x1 = grid point i, x2 = grid point j */
	double grid[EX_XOR_GRID][EX_XOR_GRID];
} ex_xor_net;

typedef struct ex_xor {
	ex_xor_net one, two;
} ex_xor;

ex_xor_opts ex_xor_defaults(void);
double ex_xor_grid_point(int i); /* -0.25 + 1.5 i / (EX_XOR_GRID - 1) */
/* Trains a single sigmoid unit (2-1) and a 2-2-1 sigmoid net on XOR with
 * binary cross-entropy, opts->restarts times each. out is large: allocate it. */
int ex_xor_run_all(const ex_xor_opts *o, ex_xor *out, char *err);

/* ---- output (experiment.c) ---------------------------------------------------------- */

/* DIR/name.csv with the iteration, then each arm's raw loss and the loss
 * smoothed over +-half iterations (columns "<label>" and "<label>_smooth"),
 * and DIR/name.gp drawing the smoothed curves under title. 0 ok. */
int ex_write_curves(const char *dir, const char *name, const ex_arm *arms, int narms,
		    const double *loss, int64_t iters, int64_t half, const char *title);

#endif /* TG_EXPERIMENTS_H */
