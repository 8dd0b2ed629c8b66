/*
 * tapegrad_dist.h - data-parallel training across processes and machines,
 * on MPI: every rank holds the whole model, takes its own rows of each
 * global batch, and the ranks average their gradients with all-reduce
 * before every update, so N ranks of batch B train exactly as one process
 * of batch N B (DistributedDataParallel's scheme).
 *
 * Launched by mpirun; tg_fit does the rest when tg_train_opts.dist is set:
 *
 *	tg_dist *d = tg_dist_new(ctx, &argc, &argv, NULL);  // MPI_Init
 *	tg_dist_attach(d, model);       // rank 0's parameters and buffers to all
 *	tg_train_opts to = tg_train_defaults();
 *	to.dist = d;                    // to.batch is per rank
 *	if (tg_dist_rank(d) > 0)
 *		to.out = NULL;          // only rank 0 prints, logs and saves
 *	tg_fit(model, opt, NULL, &train, NULL, &test, &to, &last);
 *	tg_dist_free(d);                // MPI_Finalize
 *
 * Gradients: the parameters are packed into buckets of about
 * tg_dist_opts.bucket_bytes (25 MB, PyTorch's default), last layer first.
 * During tg_backward the engine reports each parameter whose gradient is
 * final (tg_set_grad_ready); a bucket whose gradients are all final starts
 * a non-blocking MPI_Iallreduce at once, so sending overlaps the rest of
 * the walk; tg_dist_step_end waits for every bucket before the optimizer
 * step. Each rank seeds its backward with n_r / N (its rows over the global
 * batch's), so the sum over ranks is the global batch's mean gradient,
 * short last batches included; a parameter that the forward passes of
 * some ranks skip gets that gradient on every rank, as in one process of
 * the global batch. f32 and f64.
 *
 * Errors: MPI's error handler returns codes (MPI_ERRORS_RETURN), and every
 * wait polls with a bound (tg_dist_opts.timeout), so a rank that dies or
 * hangs makes the others fail with a message, never hang. A step's local
 * failure is told to every rank with the loss (tg_dist_loss), naming the
 * rank. After an error the context holds it; tg_dist_free then aborts the
 * job (MPI_Abort) rather than finalising, so no rank waits for a dead one.
 * A rank that is killed or exits without tg_dist_free is seen by mpirun,
 * which ends the job naming it; one that stops (SIGSTOP, a deadlock) ends
 * it after opts.timeout, the waiting ranks saying so. What no collective
 * carries: a failure after a step's gradients are shared (in
 * tg_optim_step or tg_train_opts.on_step, as a --step-log that cannot
 * write) is its rank's alone, and tg_fit returns -1 there while the
 * others wait in the next step; that rank's tg_dist_free (or its exit)
 * ends the job at once, MPI_Abort naming it, so call it before any long
 * work; else the others fail after opts.timeout. A failure at an epoch's
 * end (evaluation, on_epoch, a save) is every rank's, naming the rank.
 * Ranks whose models (shapes, dtypes or architecture), batches,
 * optimizers, epochs, data (train, validation, and test where a plateau
 * reads its loss) or options differ fail before the first step, each
 * naming what differs;
 * seeds and thread counts may differ (rank 0's parameters and generator
 * are every rank's, and the gradients the same all-reduced sum).
 *
 * A NULL tg_dist: every function fails (-1, NULL; tg_dist_agree too),
 * with TG_ENULL naming it in the context of the module or tensor passed
 * when one is (tg_dist_attach, tg_dist_sync_bn, tg_dist_broadcast,
 * tg_dist_allreduce), as there is no other context to tell; tg_dist_rank
 * is 0, tg_dist_size 1, and tg_dist_free, tg_dist_fork_rng and the stats
 * do nothing. A build without MPI answers so for every call.
 *
 * Lifetimes: tg_dist_new's result is malloc'd and freed by tg_dist_free,
 * before the context; before or after the model (see tg_dist_sync_bn).
 * Several tg_dist may live in one process: MPI is finalised by the last
 * one freed, when one of them started it. A context's models go to one of
 * them (tg_dist_attach). Threads: MPI is started for one thread
 * (MPI_Init), so the calls of every tg_dist of a process come from one
 * thread at a time; two threads each training its own context over its
 * own tg_dist at once are not supported. Without MPI in the build
 * tg_dist_new fails (TG_EARG) and tg_dist_available is false.
 */
#ifndef TAPEGRAD_DIST_H
#define TAPEGRAD_DIST_H

#include "tapegrad.h"
#include "tapegrad_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_dist tg_dist;

typedef struct tg_dist_opts {
	size_t bucket_bytes; /* gradient bytes per all-reduce: 25 MB */
	double timeout;      /* seconds any wait may take before it is an error: 60 */
	bool no_overlap;     /* true: every bucket waits for the end of backward */
} tg_dist_opts;

/* Where the time of the steps went, summed over the steps since
 * tg_dist_attach (or tg_dist_stats_clear): compute from the step's start
 * to the end of backward, less the waits inside it (the loss's all-reduce,
 * synchronised batch norm); wait for the gradient buckets after backward;
 * the rest (optimizer, batching, evaluation, bookkeeping) up to the next
 * step's start. */
typedef struct tg_dist_stats {
	int64_t steps;
	double compute_s;
	double wait_s;       /* gradient buckets, after backward */
	double sync_s;       /* the loss's and batch norm's all-reduces */
	double rest_s;
	double bytes;        /* gradient bytes all-reduced by this rank */
	int64_t buckets;     /* buckets per step */
	int64_t early;       /* buckets started during backward, over the steps (the
			      * others start at its end; the last always does) */
} tg_dist_stats;

/* The defaults noted on the fields: buckets of 25 MB, a timeout of 60 s,
 * all-reduces overlapping backward. Cannot fail. */
TG_API tg_dist_opts tg_dist_defaults(void);
/* The build has MPI: tg_dist_new can work. */
TG_API bool tg_dist_available(void);

/* Joins the job: MPI_Init (argc, argv may be NULL) unless MPI is up
 * already (by the program or another tg_dist), a communicator of its own
 * with MPI_ERRORS_RETURN. MPI_Init waits for every process of the job and
 * cannot be left: when one has not joined within opts.timeout (started
 * without --dist), this process ends (exit status 1), saying so on stderr. opts NULL: the defaults. NULL and TG_EARG when
 * the build has no MPI, the options are bad or MPI was finalised (by
 * tg_dist_free: MPI starts once a process); TG_EIO when MPI fails to
 * start. malloc'd */
TG_API tg_dist *tg_dist_new(tg_ctx *ctx, int *argc, char ***argv, const tg_dist_opts *opts);
/* MPI_Finalize when this is the last tg_dist and one of them started MPI
 * (nothing when the program finalised it already); MPI_Abort after an error
 * in a collective (a peer may be gone), or while the context holds an
 * error the other ranks were not told of (they may be waiting for this
 * rank in a collective). NULL is fine. */
TG_API void tg_dist_free(tg_dist *d);
TG_API int tg_dist_rank(const tg_dist *d);  /* 0 .. size-1; 0 for NULL */
TG_API int tg_dist_size(const tg_dist *d);  /* ranks; 1 for NULL */

/* Takes part in m's training: broadcasts rank 0's parameters and buffers
 * (batch-norm statistics) to every rank, packs the gradients into buckets
 * and hooks the reverse walk (tg_set_grad_ready). Once per tg_dist, with
 * a module of d's context (else TG_ECTX). 0 ok, -1; TG_ESHAPE on every
 * rank when the ranks' models differ in their tensors' number, dtypes or
 * shapes, naming the first that does; TG_EARG on every rank when their
 * architectures differ (tg_module_spec: an activation, a dropout layer),
 * naming rank 0's and the lowest other rank's; TG_EARG when another
 * tg_dist has a model of the context attached. */
TG_API int tg_dist_attach(tg_dist *d, tg_module *m);
/* Batch norm with the global batch's statistics: every "bn" module below
 * m (attached or not) then all-reduces its batch's sum and squared
 * deviations, so mean and variance are those of the global batch (per
 * feature of (N,D), per channel of (N,C,...) over every rank's N and
 * trailing axes), and its backward all-reduces likewise (PyTorch's
 * SyncBatchNorm). Evaluation mode is unchanged. Every rank calls it alike:
 * tg_fit stops every rank, saying so, when the ranks' synchronised layers
 * differ. The layers may outlive d: after tg_dist_free they evaluate as
 * plain batch norm, a training forward is TG_EARG, and another tg_dist may
 * take them over; while d lives, another's tg_dist_sync_bn of them is
 * TG_EARG. 0 ok, -1. */
TG_API int tg_dist_sync_bn(tg_dist *d, tg_module *m);
/* Rank 0's values of t[0..n) into every rank's (same shapes and dtypes).
 * 0 ok, -1; TG_ESHAPE on every rank when the ranks' n, dtypes or shapes
 * differ (a NULL on some rank too), naming the first tensor and rank that
 * do; TG_ENULL on every rank for a NULL on all. */
TG_API int tg_dist_broadcast(tg_dist *d, tg_tensor *const *t, size_t n);
/* The attached model's buffers (tg_module_tensors that are not parameters)
 * from rank 0 to all: per-rank batch-norm statistics made equal before an
 * evaluation. 0 ok, -1. */
TG_API int tg_dist_sync_buffers(tg_dist *d);

/* ---- ops and sums over the ranks ------------------------------------------- */

/* The sum of x over the ranks, every rank's x of one shape; an op:
 * dx = the sum of dout over the ranks (each rank's loss depends on every
 * rank's x). TG_ESHAPE on every rank when the ranks' dtypes or shapes
 * differ, naming them. Any number of elements (MPI's int counts are
 * passed in pieces). An x NULL on one rank (its op failed, or TG_ENULL) is
 * every rank's error, naming that rank, rather than a wait. step */
TG_API tg_tensor *tg_dist_allreduce(tg_dist *d, tg_tensor *x);
/* v[0..n) summed over the ranks, in place. 0 ok, -1. */
TG_API int tg_dist_sum(tg_dist *d, double *v, size_t n);
/* Every rank's go: true when all are. A decision every rank must share
 * (stop training, a save that failed on rank 0). A rank whose context
 * holds an error takes part all the same, voting no, and gets -1 (the
 * others 0, not a wait); -1 on error. */
TG_API int tg_dist_agree(tg_dist *d, bool go);
/* Rank 0's generator to every rank: the next epoch's order is then the
 * same everywhere. 0 ok, -1. */
TG_API int tg_dist_sync_rng(tg_dist *d);
/* Ranks above 0 move their generator to a stream of their own (dropout
 * masks differ by rank); rank 0's is untouched. */
TG_API void tg_dist_fork_rng(tg_dist *d);

/* ---- one training step (tg_fit calls these) -------------------------------- */

/* Before the step's forward. 0 ok, -1. */
TG_API int tg_dist_step_begin(tg_dist *d);
/* After the forward: this rank's mean loss over its n rows (failed: this
 * rank's step failed, loss ignored) into *global, the global batch's mean
 * loss, and *seed, this rank's backward seed n / N. A rank of n = 0 rows
 * adds nothing (its loss, the NaN mean of no rows, is ignored) and gets
 * seed 0. -1 when any rank failed, with a message naming the first that
 * did; a NULL global or seed, or n < 0, fails this rank's step so (the
 * others stop too, not wait). -1 and TG_EARG on every rank when the global
 * batch has no rows (n = 0 on all: no mean; skip such a step; tg_fit never
 * makes one, as tg_batcher_shard gives each rank a row of every batch).
 * On -1, *global is NaN and *seed 0. */
TG_API int tg_dist_loss(tg_dist *d, double loss, int64_t n, bool failed, double *global,
			double *seed);
/* After backward (failed: it failed here): starts the buckets not started
 * and waits for all; the gradients are then the global batch's. -1 when a
 * wait fails or any rank's backward failed; TG_EARG with no step begun
 * or no tg_dist_loss since (the gradients would be summed, not averaged). */
TG_API int tg_dist_step_end(tg_dist *d, bool failed);
TG_API void tg_dist_stats_get(const tg_dist *d, tg_dist_stats *out);
TG_API void tg_dist_stats_clear(tg_dist *d);

#ifdef __cplusplus
}
#endif
#endif /* TAPEGRAD_DIST_H */
