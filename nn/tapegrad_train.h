/*
 * tapegrad_train.h - the training loop: any module (tg_fit) or a tg_mlp
 * (tg_train) and a tg_optim on a train set, for a task (classification,
 * binary, regression), measured on validation and test sets, with early
 * stopping, progress, a CSV log and a confusion matrix.
 *
 * Each step is the sequence every hand-written loop repeats: forward, the
 * task's loss, tg_optim_zero_grad, tg_backward, tg_optim_step, tg_reset.
 * The context is checked after every step: a step that failed (a shape
 * error, a NaN found by anomaly mode, a non-finite loss) stops training with
 * its error kept in the context; the loop never trains on after a failure.
 * A non-finite loss caused by a NaN or an Inf in the train set is TG_EARG
 * naming the value's row and column; so is one in a set being evaluated
 * (validation, test, tg_score), rather than a NAN among the metrics.
 * A loss that diverges stops it too, anomaly mode or not: a step whose loss
 * exceeds both TG_TRAIN_DIVERGENCE times the first step's loss and
 * TG_TRAIN_DIVERGENCE_FLOOR (a cross-entropy no trained net reaches; a
 * regression loss is in the targets' units, so standardise them) ends
 * the run with TG_EANOMALY and a message that suggests a smaller learning
 * rate; the check is before the update, so the step's update is not made.
 * A step that fails so leaves the model's state (batch norm's running
 * statistics) as it was before the step, too.
 * tg_train_opts.no_divergence_check turns it off.
 * Weight decay is the optimizer's (tg_optim_opts.weight_decay): the loop adds
 * no penalty to the loss, so train_loss is the plain loss of the task.
 *
 * Any module, any task: a regressor on standardised data with early stopping
 *
 *	tg_task task = { .loss = TG_LOSS_MSE };
 *	tg_train_opts to = tg_train_defaults();
 *	to.patience = 20;             // needs the validation set
 *	tg_metrics last;
 *	tg_fit(model, opt, &task, &train, &val, &test, &to, &last);
 *	printf("test R2 %.4f\n", last.test_r2);
 *
 *	tg_train_opts to = tg_train_defaults();
 *	to.epochs = 10;
 *	to.batch = 128;
 *	to.log_path = "metrics.csv";
 *	tg_metrics last;
 *	if (tg_train(net, opt, &train, &test, &to, &last))
 *		fprintf(stderr, "stopped at iteration %lld: %s\n",
 *			(long long)last.iter, tg_error(ctx));
 *	else
 *		printf("test accuracy %.4f\n", last.test_acc);
 *
 * Lifetimes: tg_fit, tg_train, tg_score and tg_evaluate borrow the model, the optimizer and the
 * data sets for the duration of the call and keep nothing. Both call
 * tg_reset after every batch, so step tensors made before the call are
 * freed by it. Metrics handed to a callback are borrowed for that call.
 *
 * Evaluation runs with grad mode off and the net in evaluation mode
 * (running batch-norm statistics, no dropout), in batches; both modes are
 * restored afterwards, so evaluating twice gives the same numbers.
 */
#ifndef TAPEGRAD_TRAIN_H
#define TAPEGRAD_TRAIN_H

#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_dist.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TG_TRAIN_DIVERGENCE 1e3
#define TG_TRAIN_DIVERGENCE_FLOOR 100.0

/* ---- tasks: a loss and the metrics that go with it ------------------------ */

typedef enum {
	/* K logits against class labels (ds.y): tg_cross_entropy; accuracy of
	 * the argmax, a confusion matrix. */
	TG_LOSS_CROSS_ENTROPY,
	/* K logits against soft targets (ds.t, T = K, rows summing to 1):
	 * tg_cross_entropy_soft; accuracy against each target's argmax. */
	TG_LOSS_SOFT_CROSS_ENTROPY,
	/* T logits against targets in [0,1] (ds.t): tg_bce_with_logits; accuracy
	 * of logit > 0 against target > 0.5 over every element; a 2x2 confusion
	 * matrix when T = 1. */
	TG_LOSS_BCE_WITH_LOGITS,
	/* Regression, T outputs against T float targets (ds.t): tg_mse, tg_l1,
	 * tg_huber(delta); metrics MSE, RMSE and R2. */
	TG_LOSS_MSE,
	TG_LOSS_L1,
	TG_LOSS_HUBER,
} tg_loss_kind;

/* What the model learns: its loss, and so its metrics. A zeroed task is
 * classification with cross-entropy. */
typedef struct tg_task {
	tg_loss_kind loss;
	double delta;       /* TG_LOSS_HUBER's delta; 0 means 1 */
} tg_task;

/* "cross-entropy", "soft cross-entropy", "bce-with-logits", "mse", "l1",
 * "huber"; "unknown" otherwise. static */
TG_API const char *tg_loss_name(tg_loss_kind k);

/* The figures of one evaluated set; NAN where the task has none: acc for
 * classification and binary; mse, rmse and r2 for regression, with
 * MSE = SSE / (N T), RMSE = sqrt(MSE) and R2 = 1 - SSE / SST, SST the sum
 * over targets of the squared deviations from that target's mean over the
 * set (NAN when SST is 0). */
typedef struct tg_scores {
	double loss;        /* the task's loss, mean per sample */
	double acc;
	double mse, rmse, r2;
} tg_scores;

/* What one epoch measured: losses are the task's, mean per sample. Figures
 * a task or a missing set does not have are NAN. */
typedef struct tg_metrics {
	int64_t epoch;      /* epochs completed; a last partial epoch counts */
	int64_t iter;       /* optimizer steps taken */
	double train_loss;
	double train_acc;
	double test_loss;   /* NAN without a test set */
	double test_acc;    /* NAN without a test set */
	double seconds;     /* wall time since training began, evaluation included */
	double val_loss;    /* NAN without a validation set */
	double val_acc;
	double train_mse, train_rmse, train_r2; /* regression only */
	double val_mse, val_rmse, val_r2;
	double test_mse, test_rmse, test_r2;
	double best_val_loss; /* the lowest val_loss so far (NAN without a validation set) */
	int64_t best_epoch;   /* its epoch */
	bool stopped_early;   /* early stopping ended the run */
} tg_metrics;

/* Called after each epoch's metrics are known; return false to stop
 * training there (early stopping). m is borrowed for the call. */
typedef bool (*tg_epoch_fn)(const tg_metrics *m, void *user);

typedef enum {
	TG_PROGRESS_AUTO,  /* TTY when stderr is a terminal, else LINES */
	TG_PROGRESS_OFF,   /* nothing on stderr */
	TG_PROGRESS_TTY,   /* one line on stderr redrawn with \r */
	TG_PROGRESS_LINES, /* a plain line on stderr every progress_every seconds */
} tg_progress;

typedef struct tg_train_opts {
	int64_t epochs;         /* 10; ignored when iters > 0 */
	int64_t iters;          /* 0: run `epochs` epochs; > 0: stop after this many steps;
				 * < 0: TG_EARG */
	int64_t batch;          /* 100 */
	/* false: shuffled epochs, every sample once per epoch (the last batch
	 * may be short unless drop_last). true: each batch drawn with
	 * replacement, as the seeds' np.random.choice loop; an epoch is then
	 * max(N / batch, 1) steps. */
	bool replace;
	bool drop_last;         /* shuffled epochs: drop a short last batch */
	int64_t eval_batch;     /* rows per evaluation batch: 1000 */
	/* false: train_loss and train_acc are running means over the epoch's
	 * batches, measured in training mode before each update (free).
	 * true: a full evaluation pass over the train set after each epoch, as
	 * the seeds' network.accuracy(x_train, t_train). */
	bool full_train_eval;
	bool anomaly;           /* anomaly mode on while training (then off again) */
	bool no_divergence_check; /* true: train on however large the loss grows */
	tg_progress progress;   /* TG_PROGRESS_AUTO */
	double progress_every;  /* seconds between TG_PROGRESS_LINES lines: 10 */
	FILE *out;              /* epoch lines, confusion matrix: stdout; NULL: silent */
	/* CSV, a header and one row per epoch; NULL: no log. Written anew, but
	 * when resuming (start_epoch > 0) into a log file that has rows: the
	 * rows up to start_epoch stay and the new ones follow (later rows are
	 * cut, as those epochs run again). One whose header is another (or
	 * this one with CR LF line ends), or whose rows stop before
	 * start_epoch (rows lost, a gap) is TG_EIO naming the epochs and left
	 * as it is; an empty file is begun anew, and a header alone (a log
	 * begun by a resume that stopped before its first row) goes on. A row
	 * that cannot be written (a full disk) is TG_EIO and stops the run at
	 * its epoch. */
	const char *log_path;
	/* K class names (K = the net's outputs) for the confusion matrix, or NULL
	 * to number the classes. Borrowed for the call. */
	const char *const *class_names;
	/* K*K counts of the final test evaluation, row = true class, column =
	 * predicted (the caller's buffer; NULL: not kept). */
	int64_t *confusion;
	tg_epoch_fn on_epoch;   /* NULL: none */
	void *user;             /* handed to on_epoch */
	/* Early stopping: > 0 ends training after this many epochs in a row
	 * without a validation loss lower than the best so far (needs a
	 * validation set); the model is left as the last epoch made it, not
	 * rolled back to the best epoch (save it from on_epoch for that).
	 * 0: off. */
	int64_t patience;
	/* A learning-rate schedule (see below; borrowed, its position advanced),
	 * or NULL: the optimizer's rate throughout. The rate for the first epoch
	 * of the call is set before its steps (tg_schedule_lr(s, start_epoch,
	 * NAN)); after each epoch's evaluation, and before on_epoch, the rate
	 * for the next one (so a checkpoint saved in on_epoch holds the position
	 * for the epochs that follow). Plateau is fed the validation loss, or the
	 * test loss when there is no validation set. */
	struct tg_schedule *schedule;
	/* Resuming: the epochs and steps already completed (0, 0). The loop,
	 * progress, the log's rows and the metrics count on from them; epochs
	 * and iters stay the totals. The divergence check measures against the
	 * call's first step. A run resumes where an epoch ended: start_iter
	 * must be start_epoch times this run's steps per epoch (TG_EARG
	 * otherwise, as an epoch's order of batches is not kept). */
	int64_t start_epoch, start_iter;
	/* Data-parallel training over MPI ranks (tapegrad_dist.h; attached to
	 * the model), or NULL: this process alone. Every rank calls tg_fit with
	 * the same options but out and log_path (give them on rank 0 only),
	 * the same train and validation sets (and test set, when a plateau
	 * schedule reads its loss) and optimizer settings, on the model
	 * attached to dist: before the first step the ranks compare them, and the
	 * parameters' and the optimizer state's values (a checkpoint loaded
	 * after tg_dist_attach must be loaded on every rank), and one that
	 * differs, or that fails to start, stops every rank with a message
	 * naming it.
	 * batch is then per rank: each step's global batch of ranks x batch rows
	 * is drawn from one permutation and split between the ranks; the losses
	 * and metrics are the global batch's, so the run is the one a single
	 * process makes with the global batch. Before each evaluation the
	 * buffers (batch-norm statistics) are rank 0's; decisions to stop
	 * (on_epoch, early stopping, errors) are taken by all ranks together. */
	struct tg_dist *dist;
	/* Called after each step's update with its number (from 1, counting on
	 * from start_iter) and its loss (the global batch's mean); NULL: none. */
	void (*on_step)(int64_t iter, double loss, void *user);
	void *step_user;
	/* Resuming early stopping: the best validation loss so far and its
	 * epoch (tg_metrics.best_val_loss and best_epoch where the run
	 * stopped), so that the patience counts on from them as in a run that
	 * never stopped: a run whose patience had already run out (start_epoch
	 * - start_best_epoch >= patience) ends at once, stopped_early, without
	 * another epoch. start_best_epoch 0: none yet (the first epoch's loss
	 * is the best); else in [1, start_epoch], with start_best_val a
	 * number, or TG_EARG. */
	int64_t start_best_epoch;
	double start_best_val;
} tg_train_opts;

/* The defaults noted on the fields: 10 epochs of batch 100 in shuffled
 * epochs, evaluation in batches of 1000, progress TG_PROGRESS_AUTO (plain
 * lines every 10 s), epoch lines to stdout; everything else 0, false or
 * NULL. Cannot fail. */
TG_API tg_train_opts tg_train_defaults(void);

/* Trains the module m with o on train for task (NULL: classification with
 * cross-entropy), after every epoch evaluating on val and test (each may be
 * NULL), with early stopping on val when opts->patience > 0; at the end
 * prints the test confusion matrix (classification, one binary target) to
 * opts->out. The data sets must hold what the task learns from (class labels
 * or float targets), and m's outputs the targets' shape; input batches take
 * the dtype of m's parameters. opts NULL means the defaults. m trains in
 * training mode: an m in evaluation mode is put in training mode whole, while
 * in an m in training mode a module kept in evaluation mode (a batch norm
 * whose statistics are frozen for fine-tuning) stays so. On return m is in
 * training mode, each module as it trained, and grad mode is as it was;
 * last (may be NULL) receives
 * the final metrics (after a failure, last->iter is the number of steps that
 * completed). An optimizer made in another context than m's is TG_ECTX; one
 * that updates none of the parameters m lists (another model's) is TG_EARG; a
 * class label at or above m's K outputs (found by one forward pass of a row
 * in evaluation mode) is TG_EARG naming its set and row, before the first
 * step; so is a target the task's loss refuses (a binary target outside
 * [0, 1], a soft target row that is not a distribution, as
 * tg_cross_entropy_soft says). A validation or test set whose samples
 * differ from the train set's in width, in shape (when both are shaped) or
 * in their number of targets is TG_ESHAPE, also before the first step; flat
 * rows beside shaped samples of their width (or the reverse) are batched in
 * the train set's shape, the one the model takes. 0
 * ok, -1 on error (in ctx; a log file that can't be written is TG_EIO). */
TG_API int tg_fit(tg_module *m, tg_optim *o, const tg_task *task, const tg_dataset *train,
		  const tg_dataset *val, const tg_dataset *test, const tg_train_opts *opts,
		  tg_metrics *last);

/* The task's loss and metrics of m on ds (task NULL: classification), batch
 * rows at a time (<= 0: 1000), in evaluation mode with grad mode off (both
 * restored: each module of m gets back the mode it had, so a batch norm
 * kept in evaluation mode in a training model stays so). confusion (may be NULL) receives the K*K counts, zeroed first,
 * for a task that has them (K = m's outputs; 2 for one binary target). A
 * batch whose loss is not finite because of a NaN or an Inf in ds is
 * TG_EARG naming its row and column. 0 ok, -1 on error. */
TG_API int tg_score(tg_module *m, const tg_task *task, const tg_dataset *ds, int64_t batch,
		    tg_scores *out, int64_t *confusion);

/* tg_fit for an MLP classifier without a validation set: trains m with o on train (its inputs must have the net's input width, its
 * labels lie below the net's output width), evaluating on test (may be NULL)
 * after every epoch, and at the end prints the test confusion matrix to
 * opts->out. Input batches take the dtype of the net's parameters. opts NULL
 * means the defaults. On return the net is in training mode and grad mode
 * is as it was. last (may be NULL) receives the final metrics; after a
 * failure, last->iter is the number of steps that completed. 0 ok, -1 on
 * error (in ctx; a log file that can't be written is TG_EIO). */
TG_API int tg_train(tg_mlp *m, tg_optim *o, const tg_dataset *train, const tg_dataset *test,
		    const tg_train_opts *opts, tg_metrics *last);

/* tg_score for an MLP classifier: mean cross-entropy and accuracy of m on ds, batch rows at a time (<= 0:
 * 1000), in evaluation mode with grad mode off (both restored). loss, acc
 * and confusion (K*K, row = true class, zeroed first) may be NULL. 0 ok, -1
 * on error. */
TG_API int tg_evaluate(tg_mlp *m, const tg_dataset *ds, int64_t batch, double *loss,
		       double *acc, int64_t *confusion);

/* Prints a K*K confusion matrix as a table: one row per true class (named
 * when names is not NULL) with its counts per predicted class and the
 * class's recall, then the overall accuracy. */
TG_API void tg_confusion_print(FILE *f, const int64_t *confusion, int k,
			       const char *const *names);

/* ---- schedules ----------------------------------------------------------- */
/* The learning rate by epoch (0-based), as PyTorch computes it:
 *	constant        base
 *	step            base * gamma^floor(e / step_size)            (StepLR)
 *	exponential     base * gamma^e                               (ExponentialLR)
 *	cosine          min + (base - min) * (1 + cos(pi e / T)) / 2 for e < T,
 *	                min after                                    (CosineAnnealingLR)
 *	warmup, cosine  base * (e + 1) / (W + 1) for e < W, then the cosine over
 *	                the T - W epochs after the warm-up (T counts the warm-up)
 *	plateau         ReduceLROnPlateau (mode "min", threshold_mode "rel"): a
 *	                validation loss below best * (1 - threshold) is an
 *	                improvement; after more than `patience` epochs without
 *	                one, lr = max(lr * factor, min_lr)
 * Per epoch:
 *
 *	tg_schedule sch;
 *	if (tg_schedule_parse(ctx, "warmup:5,cosine", 0.1, epochs, &sch)) ...
 *	for (int64_t e = 0; e < epochs; e++) {
 *		tg_optim_set_lr(opt, tg_schedule_lr(&sch, e, val_loss)); // NAN at first
 *		...train an epoch, val_loss = its validation loss...
 *	}
 *
 * The struct is plain numbers: hyperparameters, then the position, which
 * tg_schedule_state saves with a checkpoint ("schedule" in tg_state) and
 * tg_schedule_set_state restores, so a resumed run gets the same rates. */
typedef enum {
	TG_SCHED_CONSTANT,
	TG_SCHED_STEP,
	TG_SCHED_EXPONENTIAL,
	TG_SCHED_COSINE,
	TG_SCHED_WARMUP_COSINE,
	TG_SCHED_PLATEAU,
} tg_schedule_kind;

typedef struct tg_schedule {
	tg_schedule_kind kind;
	double base_lr;     /* the rate at epoch 0 (after a warm-up): the optimizer's */
	int64_t step_size;  /* step: 10 epochs */
	double gamma;       /* step: 0.1; exponential: 0.95 */
	int64_t t_max;      /* cosine: T, the epochs to reach min_lr; the run's epochs */
	int64_t warmup;     /* warm-up: W epochs, 5 */
	double min_lr;      /* cosine, plateau: 0 */
	double factor;      /* plateau: 0.1 */
	int64_t patience;   /* plateau: 10 epochs */
	double threshold;   /* plateau: 1e-4, relative */
	/* the position */
	int64_t epoch;      /* the latest epoch asked for; -1 before the first */
	double lr;          /* the latest rate */
	double best;        /* plateau: the best validation loss; +Inf at first */
	int64_t bad_epochs; /* plateau: epochs since the last improvement */
} tg_schedule;

/* Numbers in a schedule's position (tg_schedule_state). */
#define TG_SCHEDULE_STATE 5

/* "constant", "step", "exponential", "cosine", "warmup" (warm-up then
 * cosine), "plateau"; "?" for another value. static */
TG_API const char *tg_schedule_name(tg_schedule_kind kind);
/* A schedule of kind with the defaults above, base_lr and T = epochs. */
TG_API tg_schedule tg_schedule_defaults(tg_schedule_kind kind, double base_lr, int64_t epochs);
/* From a command-line string, with base_lr and T = epochs unless it says:
 *	"constant"                      "step:K[:GAMMA]"   ("step:10:0.5")
 *	"exp[:GAMMA]"                   "cosine[:T[:MIN_LR]]"
 *	"warmup:W,cosine[:T[:MIN_LR]]"  "plateau[:FACTOR[:PATIENCE[:THRESHOLD[:MIN_LR]]]]"
 * TG_EARG naming the string and what is wrong; 0 ok, -1. */
TG_API int tg_schedule_parse(tg_ctx *ctx, const char *spec, double base_lr, int64_t epochs,
			     tg_schedule *out);
/* TG_EARG when a field is out of range (base_lr <= 0, gamma outside (0, 1],
 * T <= W, ...); 0 ok, -1. */
TG_API int tg_schedule_check(tg_ctx *ctx, const tg_schedule *s);
/* The rate for epoch e (>= 0). Plateau takes the validation loss measured
 * after epoch e - 1 (NAN: none; it then keeps its rate), counted once per
 * new epoch; the other kinds ignore it and depend on e alone. NAN for a
 * schedule tg_schedule_check refuses (a rate tg_optim_set_lr refuses in
 * turn, naming it), for s NULL or for e < 0; the position is then left as
 * it was. */
TG_API double tg_schedule_lr(tg_schedule *s, int64_t epoch, double val_loss);
/* The position as TG_SCHEDULE_STATE numbers (kind, epoch, lr, best,
 * bad_epochs) into out[0..n); returns TG_SCHEDULE_STATE, or -1 when n is
 * smaller. Set it back into a schedule of the same kind (TG_EARG otherwise,
 * and for a plateau's rate above its base_lr or below its min_lr): the
 * rates that follow are the same. */
TG_API int tg_schedule_state(const tg_schedule *s, double *out, size_t n);
TG_API int tg_schedule_set_state(tg_ctx *ctx, tg_schedule *s, const double *v, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* TAPEGRAD_TRAIN_H */
