/*
 * dist.c - data-parallel training on MPI: start-up broadcast, gradient
 * buckets all-reduced during the reverse walk, the loss and decisions
 * shared by every rank, synchronised batch norm.
 *
 * Made of public calls and MPI: the engine reports final gradients through
 * tg_set_grad_ready; the all-reduce op is a custom op (tg_record). Every
 * collective is non-blocking and waited for with a bound, so a dead peer is
 * an error here, never a hang. No sockets of our own: MPI carries it all.
 *
 * Shapes: N = rows of the global batch, n = this rank's, D = features.
 */
#include "tapegrad.h"
#include "tapegrad_dist.h"
#include "tapegrad_nn.h"
#include "dist_hooks.h"
#include "bn_running.h"

#include <mpi.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One all-reduce's worth of gradients, of one dtype: the parameters
 * params[first .. first+count) at their offsets; the last bucket has one
 * more element, the status (0, or 1 from a rank whose backward failed),
 * and then one per parameter: 1 from each rank where it has a gradient. */
typedef struct bucket {
	size_t first, count;  /* into tg_dist.params */
	size_t numel;         /* gradient elements, without the status slot */
	tg_dtype dt;
	void *buf;            /* numel + 1 elements; the last bucket's + nparams */
	size_t ready;         /* parameters whose gradient is final this step */
	MPI_Request *req;     /* one per chunk of at most tg_dist.chunk elements */
	size_t nreq;
} bucket;

/* The vt of the batch-norm modules that tg_dist_sync_bn converted: the
 * plain vt's with forward replaced. Shared by d and those modules, which
 * may outlive d or be freed before it: each holds a reference, and
 * tg_dist_free sets d to NULL, after which an evaluation runs as plain
 * batch norm and a training forward is an error. */
typedef struct sync_vt {
	tg_module_vt vt;            /* first: the modules' vt points here */
	const tg_module_vt *plain;  /* the batch norm's own (static, in layers.c) */
	tg_dist *d;                 /* NULL once tg_dist_free has run */
	size_t refs;                /* d's and one per module */
} sync_vt;

struct tg_dist {
	const tg_dist_hooks *hooks; /* first: how tg_fit calls this file */
	tg_dist *next_live;   /* the process's tg_dists (live_dists) */
	tg_op sum_op;         /* the all-reduce op finds its tg_dist from here */
	sync_vt *sync;        /* the synchronised batch norm's vt; NULL before tg_dist_sync_bn */
	tg_ctx *ctx;
	tg_dist_opts opts;
	MPI_Comm grads;       /* the gradient buckets */
	MPI_Comm misc;        /* everything else, in the order every rank calls it */
	int rank, size;
	size_t chunk;         /* elements per MPI call: MPI counts are int */
	bool broken;          /* a collective failed: abort, never finalise */
	MPI_Op rows_op;       /* rows_combine: the step's rows and failures */
	char told[512];       /* the context's error when every rank learned of it */
	int failed_rank;      /* this step's, found by a batch norm; size: none */
	int64_t step_allreduces; /* tg_dist_allreduce calls in this step's forward */
	bool forward_done;    /* this step's tg_dist_loss has been */
	tg_module *model;
	tg_tensor **params;   /* (P) in bucket order: the last parameter first */
	size_t *slot;         /* (P) each parameter's bucket */
	size_t *offset;       /* (P) its first element in the bucket */
	bool *is_ready;       /* (P) this step */
	size_t nparams;
	size_t guess;         /* where the last reported parameter was found */
	tg_tensor **buffers;  /* the model's non-parameter tensors */
	size_t nbuffers;
	bucket *buckets;
	size_t nbuckets, next; /* buckets are started in order: next to start */
	bool in_step;
	double seed;          /* n / N of the current step */
	/* timing */
	double t_begin, t_backward_end, t_last_end, sync_in_step;
	tg_dist_stats st;
};

static void allreduce_backward(tg_node *n, tg_tensor *dout);
static const tg_op sum_op_proto = { .name = "dist_allreduce", .backward = allreduce_backward };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

tg_dist_opts tg_dist_defaults(void)
{
	return (tg_dist_opts){ .bucket_bytes = 25u << 20, .timeout = 60 };
}

bool tg_dist_available(void)
{
	return true;
}

int tg_dist_rank(const tg_dist *d)
{
	return d ? d->rank : 0;
}

int tg_dist_size(const tg_dist *d)
{
	return d ? d->size : 1;
}

/* ---- errors and bounded waits ------------------------------------------------------- */

static int mpi_fail(tg_dist *d, int code, const char *what)
{
	char msg[MPI_MAX_ERROR_STRING] = "";
	int len = 0;
	MPI_Error_string(code, msg, &len);
	d->broken = true;
	tg_fail(d->ctx, TG_EIO, "tg_dist: rank %d of %d: %s failed: %s", d->rank, d->size, what,
		msg);
	return -1;
}

/* Polls req until it completes, for at most opts.timeout seconds: spinning
 * first, then sleeping 50 us between looks, so a waiting rank leaves the
 * core to a neighbour's computation. */
static int wait_bounded(tg_dist *d, MPI_Request *req, const char *what)
{
	double t0 = now();
	for (long polls = 0;; polls++) {
		int done = 0;
		int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
		if (rc != MPI_SUCCESS)
			return mpi_fail(d, rc, what);
		if (done)
			return 0;
		if (now() - t0 > d->opts.timeout) {
			d->broken = true;
			tg_fail(d->ctx, TG_EIO,
				"tg_dist: rank %d of %d: %s did not complete within %g s: another "
				"rank has stopped or hangs",
				d->rank, d->size, what, d->opts.timeout);
			return -1;
		}
		if (polls > 2000)
			nanosleep(&(struct timespec){ .tv_nsec = 50000 }, NULL);
	}
}

/* The elements of count that the call at element at carries: MPI's
 * counts are int, so a transfer of more than d->chunk (INT_MAX) elements
 * is made of several calls. */
static int piece(const tg_dist *d, size_t count, size_t at)
{
	return (int)(count - at < d->chunk ? count - at : d->chunk);
}

static size_t extent_of(MPI_Datatype type)
{
	MPI_Aint lb = 0, extent = 0;
	MPI_Type_get_extent(type, &lb, &extent);
	return (size_t)extent;
}

/* The step's collectives outside the buckets, timed as sync: count
 * elements in pieces of at most d->chunk, each waited for in turn. */
static int allreduce_wait(tg_dist *d, const void *in, void *out, size_t count, MPI_Datatype type,
			  MPI_Op op, const char *what)
{
	double t0 = now();
	size_t es = extent_of(type), at = 0;
	int rc = 0;
	do {
		MPI_Request req;
		const void *src = in == MPI_IN_PLACE ? in : (const char *)in + at * es;
		rc = MPI_Iallreduce(src, (char *)out + at * es, piece(d, count, at), type, op,
				    d->misc, &req);
		if (rc != MPI_SUCCESS)
			return mpi_fail(d, rc, what);
		rc = wait_bounded(d, &req, what);
		at += (size_t)piece(d, count, at);
	} while (rc == 0 && at < count);
	if (d->in_step)
		d->sync_in_step += now() - t0;
	return rc;
}

static MPI_Datatype mpi_type(tg_dtype dt)
{
	switch (dt) {
	case TG_F64: return MPI_DOUBLE;
	case TG_I32: return MPI_INT32_T;
	case TG_I64: return MPI_INT64_T;
	default: return MPI_FLOAT;
	}
}

/* Every rank has learned of the failure the context holds: tg_dist_free
 * may then finalise, as none waits for this one. */
static void told_all(tg_dist *d)
{
	snprintf(d->told, sizeof d->told, "%s", tg_error(d->ctx));
}

static int usable(const tg_dist *d)
{
	return d && !d->broken && tg_ok(d->ctx);
}

/* A NULL tg_dist, said in ctx when an argument reaches one (ctx NULL:
 * none does, and -1 alone tells it). */
static int no_dist(tg_ctx *ctx, const char *fn)
{
	if (ctx && tg_ok(ctx))
		tg_fail(ctx, TG_ENULL, "%s: the tg_dist is NULL", fn);
	return -1;
}

/* ---- start and end ------------------------------------------------------------------ */

static int same_run(tg_dist *d, const char *who, bool failed, const double *v,
		    const char *const *names, const char *(*label)(const char *name, double v),
		    size_t n);
static int epoch_end(tg_dist *d, const char *who, bool failed, bool go);

static const tg_module *attached(const tg_dist *d)
{
	return d ? d->model : NULL;
}

static size_t count_synced(const tg_dist *d, const tg_module *m)
{
	size_t n = d->sync && m->vt == &d->sync->vt;
	for (size_t i = 0; i < m->nchildren; i++)
		n += count_synced(d, m->children[i]);
	return n;
}

static size_t synced_bn(const tg_dist *d)
{
	return d && d->model ? count_synced(d, d->model) : 0;
}

static void told(tg_dist *d)
{
	if (d)
		told_all(d);
}

static const tg_dist_hooks hooks = {
	.rank = tg_dist_rank, .size = tg_dist_size, .step_begin = tg_dist_step_begin,
	.loss = tg_dist_loss, .step_end = tg_dist_step_end, .sum = tg_dist_sum,
	.epoch_end = epoch_end, .sync_rng = tg_dist_sync_rng, .fork_rng = tg_dist_fork_rng,
	.sync_buffers = tg_dist_sync_buffers, .same_run = same_run, .model = attached,
	.synced_bn = synced_bn, .told = told,
};

/* MPI_LONG_INT pairs {rows, rank}: the rows summed, the lowest rank kept */
typedef struct rows_rank {
	long rows;
	int rank;
} rows_rank;

static void rows_combine(void *in, void *inout, int *len, MPI_Datatype *type)
{
	(void)type;
	const rows_rank *a = in;
	rows_rank *b = inout;
	for (int i = 0; i < *len; i++) {
		b[i].rows += a[i].rows;
		b[i].rank = a[i].rank < b[i].rank ? a[i].rank : b[i].rank;
	}
}

/* MPI is the process's, not a context's: the tg_dists alive, and whether
 * one of them started MPI (then the last one freed finalises it). */
static int live;
static bool started;
static tg_dist *live_dists;

/* MPI_Init waits for every process of the job to join it, with no bound
 * and no way back: one that never calls it (started without --dist, or
 * stopped before it) would leave this one waiting for ever. A thread
 * watches it and ends the process after opts.timeout, saying why; mpirun
 * then ends the job. */
typedef struct init_watch {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool done;
	double timeout;
} init_watch;

static void *watch_init(void *arg)
{
	init_watch *w = arg;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	double whole = floor(w->timeout);
	until.tv_sec += (time_t)whole;
	until.tv_nsec += (long)((w->timeout - whole) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->lock);
	int rc = 0;
	while (!w->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&w->cv, &w->lock, &until);
	bool late = !w->done;
	pthread_mutex_unlock(&w->lock);
	if (late) {
		fprintf(stderr,
			"tg_dist_new: MPI_Init did not complete within %g s: a process of the "
			"job has not joined it (started without data-parallel training, or "
			"stopped before it); this one ends\n",
			w->timeout);
		_exit(1);
	}
	return NULL;
}

static int init_bounded(int *argc, char ***argv, double timeout)
{
	init_watch w = { .lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
			 .timeout = timeout };
	pthread_t watcher;
	/* a bound past any run's (or no thread): unwatched */
	bool watched = timeout < 1e9 && pthread_create(&watcher, NULL, watch_init, &w) == 0;
	int rc = MPI_Init(argc, argv);
	if (watched) {
		pthread_mutex_lock(&w.lock);
		w.done = true;
		pthread_cond_signal(&w.cv);
		pthread_mutex_unlock(&w.lock);
		pthread_join(watcher, NULL);
	}
	return rc;
}

tg_dist *tg_dist_new(tg_ctx *ctx, int *argc, char ***argv, const tg_dist_opts *opts)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	tg_dist_opts o = opts ? *opts : tg_dist_defaults();
	if (o.bucket_bytes < 1 || !(o.timeout > 0))
		return tg_fail(ctx, TG_EARG, "tg_dist_new: bucket_bytes %zu and timeout %g s must be "
			       "positive", o.bucket_bytes, o.timeout);
	int up = 0, done = 0;
	MPI_Initialized(&up);
	MPI_Finalized(&done);
	if (done) /* any MPI call now would abort the process */
		return tg_fail(ctx, TG_EARG,
			       "tg_dist_new: MPI has been finalised (tg_dist_free of the last "
			       "tg_dist, when one started it) and cannot start again in this "
			       "process; keep one tg_dist for the whole run");
	if (!up && init_bounded(argc, argv, o.timeout) != MPI_SUCCESS)
		return tg_fail(ctx, TG_EIO, "tg_dist_new: MPI_Init failed");
	tg_dist *d = calloc(1, sizeof *d);
	if (!d)
		return tg_fail(ctx, TG_ENOMEM, "tg_dist_new: out of memory");
	d->hooks = &hooks;
	d->sum_op = sum_op_proto; /* its backward finds d from the node's op */
	d->ctx = ctx;
	d->opts = o;
	d->chunk = INT_MAX;
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	if (MPI_Comm_dup(MPI_COMM_WORLD, &d->grads) != MPI_SUCCESS ||
	    MPI_Comm_dup(MPI_COMM_WORLD, &d->misc) != MPI_SUCCESS) {
		free(d);
		return tg_fail(ctx, TG_EIO, "tg_dist_new: MPI_Comm_dup failed");
	}
	MPI_Op_create(rows_combine, 1, &d->rows_op);
	MPI_Comm_set_errhandler(d->grads, MPI_ERRORS_RETURN);
	MPI_Comm_set_errhandler(d->misc, MPI_ERRORS_RETURN);
	MPI_Comm_rank(d->misc, &d->rank);
	MPI_Comm_size(d->misc, &d->size);
	d->failed_rank = d->size;
	started = started || !up;
	live++;
	d->next_live = live_dists;
	live_dists = d;
	return d;
}

void tg_dist_set_chunk(tg_dist *d, size_t elems)
{
	if (d && elems >= 1 && elems <= INT_MAX)
		d->chunk = elems;
}

static void forget_buckets(tg_dist *d)
{
	for (size_t i = 0; i < d->nbuckets; i++) {
		free(d->buckets[i].buf);
		free(d->buckets[i].req);
	}
	free(d->buckets);
	free(d->params);
	free(d->slot);
	free(d->offset);
	free(d->is_ready);
	free(d->buffers);
	d->buckets = NULL;
	d->params = d->buffers = NULL;
	d->nbuckets = d->nparams = d->nbuffers = 0;
}

static void sync_vt_release(sync_vt *s);

void tg_dist_free(tg_dist *d)
{
	if (!d)
		return;
	for (tg_dist **p = &live_dists; *p; p = &(*p)->next_live)
		if (*p == d) {
			*p = d->next_live;
			break;
		}
	if (d->model)
		tg_set_grad_ready(d->ctx, NULL, NULL);
	forget_buckets(d);
	if (d->sync) { /* its modules may outlive d: they keep it, without d */
		d->sync->d = NULL;
		sync_vt_release(d->sync);
	}
	/* an error the other ranks were not told of: they may wait for this
	 * rank in a collective, and finalising would wait for them */
	bool untold = !tg_ok(d->ctx) && strncmp(tg_error(d->ctx), d->told, sizeof d->told - 1);
	bool broken = d->broken || untold;
	if (broken) {
		/* a request may be outstanding with a dead peer: finalising could
		 * wait for it for ever */
		fflush(stdout);
		fflush(stderr);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	int done = 0;
	MPI_Finalized(&done); /* by the program that started MPI: nothing to free then */
	if (!done) {
		MPI_Comm_free(&d->grads);
		MPI_Comm_free(&d->misc);
		MPI_Op_free(&d->rows_op);
	}
	free(d);
	/* the last tg_dist finalises MPI when one of them started it: MPI is
	 * the process's, and another tg_dist may still use it */
	if (--live == 0 && started && !done)
		MPI_Finalize();
}

/* Rank root's count elements of buf into every rank's, in pieces of at
 * most d->chunk, each waited for with a bound. */
static int bcast_wait(tg_dist *d, void *buf, size_t count, MPI_Datatype type, int root,
		      const char *what)
{
	size_t es = extent_of(type), at = 0;
	do {
		MPI_Request req;
		int rc = MPI_Ibcast((char *)buf + at * es, piece(d, count, at), type, root, d->misc,
				    &req);
		if (rc != MPI_SUCCESS)
			return mpi_fail(d, rc, what);
		if (wait_bounded(d, &req, what))
			return -1;
		at += (size_t)piece(d, count, at);
	} while (at < count);
	return 0;
}

/* The lowest rank whose bad is true (size: none), on every rank. -1 when
 * the all-reduce fails. */
static int lowest_rank(tg_dist *d, bool bad, const char *what)
{
	int who = bad ? d->rank : d->size;
	if (allreduce_wait(d, MPI_IN_PLACE, &who, 1, MPI_INT, MPI_MIN, what))
		return -1;
	return who;
}

/* ---- the ranks' tensors alike ---------------------------------------------------------- */

/* A tensor's dtype and shape as TG_MAX_DIMS + 2 numbers. */
enum { DESC = TG_MAX_DIMS + 2 };

static void describe(const tg_tensor *t, int64_t *v)
{
	v[0] = t ? (int64_t)tg_dtype_of(t) : -1; /* -1: NULL */
	v[1] = t ? tg_ndim(t) : 0;
	for (int k = 0; k < TG_MAX_DIMS; k++)
		v[2 + k] = t && k < tg_ndim(t) ? tg_shape(t)[k] : 0;
}

/* "f32 (16,4)" */
static void say_desc(const int64_t *v, char *buf, size_t size)
{
	static const char *const names[] = { [TG_F32] = "f32", [TG_F64] = "f64", [TG_I32] = "i32",
					     [TG_I64] = "i64" };
	if (v[0] < 0) {
		snprintf(buf, size, "NULL");
		return;
	}
	int len = snprintf(buf, size, "%s (", names[v[0]]);
	for (int64_t k = 0; k < v[1] && k < TG_MAX_DIMS && len > 0 && (size_t)len < size; k++)
		len += snprintf(buf + len, size - (size_t)len, "%s%lld", k ? "," : "",
				(long long)v[2 + k]);
	if (len > 0 && (size_t)len < size)
		snprintf(buf + len, size - (size_t)len, ")");
}

/* Every rank's all[0..nt) are rank 0's tensors: as many, of its dtypes
 * and shapes. Else every rank fails (TG_ESHAPE), naming the lowest rank
 * that differs and the first tensor where it does: a broadcast of unequal
 * tensors would truncate or, worse, fill a tensor in part and go on.
 * model: all is tg_dist_attach's model, its np parameters first; else who
 * is the call whose tensors they are. */
static int same_tensors(tg_dist *d, const char *who_call, bool model, tg_tensor *const *all,
			size_t nt, size_t np)
{
	const char *what = model ? "comparing the ranks' models" : "comparing the ranks' tensors";
	int64_t count[2] = { (int64_t)nt, (int64_t)np }, mine[2] = { (int64_t)nt, (int64_t)np };
	if (bcast_wait(d, count, 2, MPI_INT64_T, 0, what))
		return -1;
	int who = lowest_rank(d, count[0] != mine[0] || count[1] != mine[1], what);
	if (who < 0)
		return -1;
	if (who < d->size) {
		if (bcast_wait(d, mine, 2, MPI_INT64_T, who, what))
			return -1;
		if (!model)
			tg_fail(d->ctx, TG_ESHAPE,
				"%s: the ranks' calls differ: rank 0 passes %lld tensors, rank %d "
				"%lld; every rank must pass rank 0's",
				who_call, (long long)count[0], who, (long long)mine[0]);
		else
			tg_fail(d->ctx, TG_ESHAPE,
				"tg_dist_attach: the ranks' models differ: rank 0's has %lld "
				"tensors (%lld parameters), rank %d's %lld (%lld); every rank must "
				"build the same model",
				(long long)count[0], (long long)count[1], who, (long long)mine[0],
				(long long)mine[1]);
		told_all(d);
		return -1;
	}
	int64_t *ref = malloc((nt ? nt : 1) * DESC * sizeof *ref);
	if (!ref) {
		tg_fail(d->ctx, TG_ENOMEM, "%s: out of memory", who_call);
		return -1;
	}
	for (size_t i = 0; i < nt; i++)
		describe(all[i], ref + i * DESC);
	if (nt > 0 && bcast_wait(d, ref, nt * DESC, MPI_INT64_T, 0, what))
		goto out_free;
	/* the first tensor that differs on some rank, and the lowest rank
	 * where it does: (tensor, rank) ordered as tensor * size + rank */
	int64_t first = INT64_MAX, desc[DESC];
	for (size_t i = 0; i < nt && first == INT64_MAX; i++) {
		describe(all[i], desc);
		if (memcmp(desc, ref + i * DESC, sizeof desc))
			first = (int64_t)i * d->size + d->rank;
	}
	if (allreduce_wait(d, MPI_IN_PLACE, &first, 1, MPI_INT64_T, MPI_MIN, what))
		goto out_free;
	if (first != INT64_MAX) {
		size_t i = (size_t)(first / d->size);
		who = (int)(first % d->size);
		describe(all[i], desc);
		if (bcast_wait(d, desc, DESC, MPI_INT64_T, who, what))
			goto out_free;
		char a[128], b[128];
		say_desc(ref + i * DESC, a, sizeof a);
		say_desc(desc, b, sizeof b);
		const char *name = tg_name(all[i]);
		if (!model)
			tg_fail(d->ctx, TG_ESHAPE,
				"%s: the ranks' tensors differ: tensor %zu%s%s is %s on rank 0 but "
				"%s on rank %d; every rank must pass rank 0's dtypes and shapes",
				who_call, i, name ? " " : "", name ? name : "", a, b, who);
		else
			tg_fail(d->ctx, TG_ESHAPE,
				"tg_dist_attach: the ranks' models differ: %s %zu%s%s is %s on "
				"rank 0 but %s on rank %d; every rank must build the same model",
				i < np ? "parameter" : "buffer", i < np ? i : i - np,
				name ? " " : "", name ? name : "", a, b, who);
		told_all(d);
		goto out_free;
	}
	free(ref);
	return 0;
out_free:
	free(ref);
	return -1;
}

/* m's architecture, as tg_module_spec writes it where every module has a
 * spec ("linear:4:8,relu,dropout:0.5,linear:8:3"), without its error
 * where one has none: a module of its own is its kind, and its children in
 * brackets. Writes like snprintf; returns the length. */
static size_t arch_of(const tg_module *m, char *buf, size_t size)
{
	size_t len = 0;
	const char *kind = m->vt && m->vt->kind ? m->vt->kind : "?";
	bool seq = !strcmp(kind, "sequential");
	if (m->nchildren == 0 && m->vt && m->vt->spec) {
		int n = m->vt->spec(m, size ? buf : NULL, size);
		return n > 0 ? (size_t)n : 0;
	}
	if (!seq || m->nchildren == 0)
		len += (size_t)snprintf(size ? buf : NULL, size, "%s%s", kind,
					m->nchildren ? "(" : "");
	for (size_t i = 0; i < m->nchildren; i++) {
		if (i) {
			if (len + 1 < size)
				buf[len] = ',', buf[len + 1] = '\0';
			len++;
		}
		len += arch_of(m->children[i], len < size ? buf + len : NULL,
			       len < size ? size - len : 0);
	}
	if (!seq && m->nchildren) {
		if (len + 1 < size)
			buf[len] = ')', buf[len + 1] = '\0';
		len++;
	}
	return len;
}

/* s in at most 90 characters, around at: the whole, or "..." and the part
 * where it differs from another. */
static void excerpt(const char *s, size_t at, char *out, size_t size)
{
	size_t len = strlen(s), from = at > 30 ? at - 30 : 0;
	if (len <= 90)
		from = 0;
	snprintf(out, size, "%s%.90s%s", from ? "..." : "", s + from,
		 len - from > 90 ? "..." : "");
}

/* Every rank's model has rank 0's architecture: modules of other kinds or
 * options (an activation, a dropout's rate) over tensors of the same
 * shapes would train apart without a word. Else every rank fails
 * (TG_EARG), naming rank 0's and the lowest other rank's. */
static int same_arch(tg_dist *d, const tg_module *m)
{
	const char *what = "comparing the ranks' models";
	size_t n = arch_of(m, NULL, 0);
	char *mine = malloc(n + 1), *ref = NULL;
	int64_t len[1] = { (int64_t)n };
	int rc = -1;
	if (!mine) {
		tg_fail(d->ctx, TG_ENOMEM, "tg_dist_attach: out of memory");
		return -1; /* the others fail in the broadcast below, after the timeout */
	}
	arch_of(m, mine, n + 1);
	if (bcast_wait(d, len, 1, MPI_INT64_T, 0, what))
		goto out_free;
	ref = malloc((size_t)len[0] + 1);
	if (!ref) {
		tg_fail(d->ctx, TG_ENOMEM, "tg_dist_attach: out of memory");
		goto out_free;
	}
	if (d->rank == 0)
		memcpy(ref, mine, n + 1);
	if (bcast_wait(d, ref, (size_t)len[0] + 1, MPI_CHAR, 0, what))
		goto out_free;
	int who = lowest_rank(d, strcmp(ref, mine) != 0, what);
	if (who < 0)
		goto out_free;
	if (who == d->size) {
		rc = 0;
		goto out_free;
	}
	/* the lowest rank that differs: its architecture to every rank */
	len[0] = (int64_t)n;
	if (bcast_wait(d, len, 1, MPI_INT64_T, who, what))
		goto out_free;
	char *theirs = malloc((size_t)len[0] + 1);
	if (!theirs) {
		tg_fail(d->ctx, TG_ENOMEM, "tg_dist_attach: out of memory");
		goto out_free;
	}
	if (d->rank == who)
		memcpy(theirs, mine, n + 1);
	if (bcast_wait(d, theirs, (size_t)len[0] + 1, MPI_CHAR, who, what) == 0) {
		size_t at = 0;
		while (ref[at] && ref[at] == theirs[at])
			at++;
		char a[128], b[128];
		excerpt(ref, at, a, sizeof a);
		excerpt(theirs, at, b, sizeof b);
		tg_fail(d->ctx, TG_EARG,
			"tg_dist_attach: the ranks' models differ: rank 0's is \"%s\" but rank "
			"%d's \"%s\"; every rank must build the same model",
			a, who, b);
		told_all(d);
	}
	free(theirs);
out_free:
	free(ref);
	free(mine);
	return rc;
}

/* ---- broadcasts ------------------------------------------------------------------------ */

int tg_dist_broadcast(tg_dist *d, tg_tensor *const *t, size_t n)
{
	if (!d)
		return no_dist(t && n > 0 ? tg_ctx_of(t[0]) : NULL, "tg_dist_broadcast");
	if (!usable(d))
		return -1;
	if (!t && n > 0) {
		tg_fail(d->ctx, TG_ENULL, "tg_dist_broadcast: t is NULL (n = %zu)", n);
		return -1;
	}
	/* compared first: a NULL on one rank is every rank's error, named */
	if (same_tensors(d, "tg_dist_broadcast", false, t, n, n))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!t[i]) {
			tg_fail(d->ctx, TG_ENULL, "tg_dist_broadcast: tensor %zu is NULL", i);
			return -1;
		}
	for (size_t i = 0; i < n; i++) {
		void *p = tg_data_mut(t[i]);
		if (!p)
			return -1;
		if (bcast_wait(d, p, tg_numel(t[i]), mpi_type(tg_dtype_of(t[i])), 0,
			       "the broadcast of rank 0's tensors"))
			return -1;
	}
	return 0;
}

int tg_dist_sync_buffers(tg_dist *d)
{
	return tg_dist_broadcast(d, d ? d->buffers : NULL, d ? d->nbuffers : 0);
}

int tg_dist_sync_rng(tg_dist *d)
{
	if (!usable(d))
		return -1;
	uint64_t s[4];
	tg_rng_state(d->ctx, s);
	MPI_Request req;
	int rc = MPI_Ibcast(s, 4, MPI_UINT64_T, 0, d->misc, &req);
	if (rc != MPI_SUCCESS)
		return mpi_fail(d, rc, "the broadcast of rank 0's generator");
	if (wait_bounded(d, &req, "the broadcast of rank 0's generator"))
		return -1;
	return tg_rng_set_state(d->ctx, s);
}

/* splitmix64's finaliser: distinct ranks give unrelated words. */
static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void tg_dist_fork_rng(tg_dist *d)
{
	if (!d || d->rank == 0)
		return;
	uint64_t s[4];
	tg_rng_state(d->ctx, s);
	for (int i = 0; i < 4; i++)
		s[i] = mix(s[i] + 0x9e3779b97f4a7c15ull * (uint64_t)(d->rank * 4 + i + 1));
	if (!(s[0] | s[1] | s[2] | s[3]))
		s[0] = 1;
	tg_rng_set_state(d->ctx, s);
}

/* ---- sums and agreements --------------------------------------------------------------- */

int tg_dist_sum(tg_dist *d, double *v, size_t n)
{
	if (!usable(d))
		return -1;
	if (!v && n > 0) {
		tg_fail(d->ctx, TG_ENULL, "tg_dist_sum: v is NULL (n = %zu)", n);
		return -1;
	}
	return allreduce_wait(d, MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, "a sum over the ranks");
}

/* On a context in error too: the decision is often that failure (a save
 * that failed on rank 0), and the others wait for this rank's vote. That
 * rank votes no; every rank then knows it cannot go on, so its error is
 * told and tg_dist_free may finalise. */
int tg_dist_agree(tg_dist *d, bool go)
{
	if (!d || d->broken)
		return -1;
	bool failed = !tg_ok(d->ctx);
	int v = go && !failed ? 1 : 0;
	if (allreduce_wait(d, MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LAND, "an agreement of the ranks"))
		return -1;
	if (failed) {
		told_all(d);
		return -1;
	}
	return v;
}

/* tg_fit's epoch end (dist_hooks.h): on a context in error too, as a
 * rank whose evaluation or save failed must tell the others, which would
 * wait for it otherwise. One all-reduce of the lowest of: this rank when
 * it failed, else size + go. */
static int epoch_end(tg_dist *d, const char *who, bool failed, bool go)
{
	if (!d || d->broken)
		return -1;
	int v = failed ? d->rank : d->size + (go ? 1 : 0);
	if (allreduce_wait(d, MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, "an epoch's end"))
		return -1;
	if (v < d->size) {
		if (!failed)
			tg_fail(d->ctx, TG_EIO,
				"%s: rank %d of %d failed at the end of an epoch (its message says "
				"why); every rank stops",
				who, v, d->size);
		told_all(d);
		return -1;
	}
	return v > d->size;
}

/* tg_fit's start (dist_hooks.h): works on a context in error, as a rank
 * that failed must still tell the others. */
static int same_run(tg_dist *d, const char *who, bool failed, const double *v,
		    const char *const *names, const char *(*label)(const char *name, double v),
		    size_t n)
{
	if (!d || d->broken)
		return -1;
	const char *what = "comparing the ranks' runs";
	int bad = lowest_rank(d, failed || !v, what);
	if (bad < 0)
		return -1;
	if (bad < d->size) {
		if (!failed)
			tg_fail(d->ctx, TG_EARG,
				"%s: rank %d of %d could not start training (its message says "
				"why); every rank stops",
				who, bad, d->size);
		told_all(d);
		return -1;
	}
	double *ref = malloc((n ? n : 1) * sizeof *ref);
	if (!ref) {
		tg_fail(d->ctx, TG_ENOMEM, "%s: out of memory", who);
		return -1;
	}
	memcpy(ref, v, n * sizeof *ref);
	int64_t first = INT64_MAX;
	if (n > 0 && bcast_wait(d, ref, n, MPI_DOUBLE, 0, what))
		goto out_free;
	for (size_t i = 0; i < n && first == INT64_MAX; i++)
		if (memcmp(&ref[i], &v[i], sizeof *v))
			first = (int64_t)i * d->size + d->rank;
	if (allreduce_wait(d, MPI_IN_PLACE, &first, 1, MPI_INT64_T, MPI_MIN, what))
		goto out_free;
	if (first != INT64_MAX) {
		size_t i = (size_t)(first / d->size);
		int at = (int)(first % d->size);
		double theirs = v[i];
		if (bcast_wait(d, &theirs, 1, MPI_DOUBLE, at, what))
			goto out_free;
		/* the shortest digits that tell the two apart */
		char a[32], b[32];
		for (int prec = 6; prec <= 17; prec++) {
			snprintf(a, sizeof a, "%.*g", prec, ref[i]);
			snprintf(b, sizeof b, "%.*g", prec, theirs);
			if (strcmp(a, b))
				break;
		}
		const char *la = label ? label(names[i], ref[i]) : NULL;
		const char *lb = label ? label(names[i], theirs) : NULL;
		if (la && lb && strcmp(la, lb)) {
			snprintf(a, sizeof a, "%s", la);
			snprintf(b, sizeof b, "%s", lb);
		}
		tg_fail(d->ctx, TG_EARG,
			"%s: the ranks' runs differ in %s: %s on rank 0, %s on rank %d; every "
			"rank must train with the same options and data",
			who, names[i], a, b, at);
		told_all(d);
		goto out_free;
	}
	free(ref);
	return 0;
out_free:
	free(ref);
	return -1;
}

/* ---- the all-reduce op: y = sum_r x_r; dx = sum_r dout_r ------------------------------- */

static tg_dist *dist_of_op(const tg_op *op)
{
	return (tg_dist *)(void *)((char *)op - offsetof(tg_dist, sum_op));
}

/* A tensor all-reduce's header, all-reduced (MIN) before its data: the
 * lowest rank whose step failed (size: none), then x's dtype and shape
 * and their negations, so that the minimum gives back every rank's own
 * only when all agree; else the ranks' data would not fit each other's.
 * A rank whose step fails after a forward that all-reduced sends one at
 * its step's end, and one in place of an all-reduce whose x failed (x
 * NULL: no shape, INT64_MAX, which no minimum picks): the others, waiting
 * in an all-reduce (synchronised batch norm), learn there which rank
 * failed rather than waiting for it. -1
 * when a rank failed or the shapes differ, on every rank alike. */
enum { HEADER = 1 + 2 * DESC };

static int header_check(tg_dist *d, const tg_tensor *x, bool failed)
{
	int64_t h[HEADER], mine[DESC];
	h[0] = failed ? d->rank : d->size;
	if (x)
		describe(x, mine);
	for (int k = 0; k < DESC; k++) {
		h[1 + k] = x ? mine[k] : INT64_MAX;
		h[1 + DESC + k] = x ? -mine[k] : INT64_MAX;
	}
	if (allreduce_wait(d, MPI_IN_PLACE, h, HEADER, MPI_INT64_T, MPI_MIN,
			   "the all-reduce of a tensor"))
		return -1;
	if (h[0] < d->size) {
		d->failed_rank = (int)h[0];
		if (!failed) {
			tg_fail(d->ctx, TG_EIO, "tg_dist: rank %d failed in its %s pass; every rank "
				"stops", d->failed_rank, d->forward_done ? "backward" : "forward");
			told_all(d);
		}
		return -1;
	}
	if (!x)
		return 0;
	bool same = true;
	for (int k = 0; k < DESC; k++)
		same = same && h[1 + k] == mine[k] && -h[1 + DESC + k] == mine[k];
	if (same)
		return 0;
	/* rare: name rank 0's and the lowest rank that differs */
	tg_tensor *t = (tg_tensor *)x;
	same_tensors(d, "tg_dist_allreduce", false, &t, 1, 1);
	return -1;
}

static tg_tensor *allreduce(tg_dist *d, tg_tensor *x, bool backward);

static void allreduce_backward(tg_node *n, tg_tensor *dout)
{
	tg_dist *d = dist_of_op(tg_node_op(n));
	tg_node_grad(n, 0, allreduce(d, dout, true));
}

tg_tensor *tg_dist_allreduce(tg_dist *d, tg_tensor *x)
{
	return allreduce(d, x, false);
}

static tg_tensor *allreduce(tg_dist *d, tg_tensor *x, bool backward)
{
	/* x failed here inside a step (the op that made it): the others wait
	 * in this all-reduce's header, so they learn of it there, and every
	 * rank's tg_dist_loss or tg_dist_step_end then knows the rank */
	if (!x && d && !d->broken && !backward && d->failed_rank == d->size) {
		/* outside a step too: a NULL on one rank is every rank's error */
		if (tg_ok(d->ctx))
			tg_fail(d->ctx, TG_ENULL, "tg_dist_allreduce: x is NULL");
		header_check(d, NULL, true);
	}
	if (!x)
		return NULL;
	if (!d)
		return tg_fail(tg_ctx_of(x), TG_ENULL, "tg_dist_allreduce: the tg_dist is NULL");
	if (!usable(d))
		return NULL;
	/* the dtypes compared first: an index tensor on one rank is every
	 * rank's error, not one rank's while the others wait */
	if (header_check(d, x, false))
		return NULL;
	tg_dtype dt = tg_dtype_of(x);
	if (dt != TG_F32 && dt != TG_F64)
		return tg_fail(d->ctx, TG_EDTYPE, "tg_dist_allreduce: x is an index tensor");
	if (d->in_step && !backward)
		d->step_allreduces++;
	tg_tensor *y = tg_empty(d->ctx, dt, tg_ndim(x), tg_shape(x));
	void *out = y ? tg_data_mut(y) : NULL;
	if (!out)
		return NULL;
	if (allreduce_wait(d, tg_data(x), out, tg_numel(x), mpi_type(dt), MPI_SUM,
			   "the all-reduce of a tensor"))
		return NULL;
	return tg_record(&d->sum_op, y, 1, &x, NULL, 0);
}

/* ---- gradient buckets ---------------------------------------------------------------- */

/* The bucket's elements: the last's status and flags too. */
static size_t bucket_count(const tg_dist *d, const bucket *b)
{
	return b->numel + (b == &d->buckets[d->nbuckets - 1] ? 1 + d->nparams : 0);
}

/* All of the bucket's pieces, of at most d->chunk elements each. */
static int start_bucket(tg_dist *d, bucket *b)
{
	size_t count = bucket_count(d, b), es = b->dt == TG_F64 ? 8 : 4, at = 0;
	for (size_t k = 0; k < b->nreq; k++) {
		int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)b->buf + at * es, piece(d, count, at),
					mpi_type(b->dt), MPI_SUM, d->grads, &b->req[k]);
		if (rc != MPI_SUCCESS)
			return mpi_fail(d, rc, "starting a gradient all-reduce");
		at += (size_t)piece(d, count, at);
	}
	d->st.bytes += (double)b->numel * (b->dt == TG_F64 ? 8 : 4);
	return 0;
}

/* Parameter i's gradient into its bucket (zeros when it got none). */
static void pack(tg_dist *d, size_t i)
{
	bucket *b = &d->buckets[d->slot[i]];
	tg_tensor *g = tg_grad(d->params[i]);
	size_t es = b->dt == TG_F64 ? 8 : 4, n = tg_numel(d->params[i]);
	char *dst = (char *)b->buf + d->offset[i] * es;
	if (g)
		memcpy(dst, tg_data(g), n * es);
	else
		memset(dst, 0, n * es);
	d->is_ready[i] = true;
	b->ready++;
}

/* Starts the buckets that are full, in order: every rank starts them in the
 * same order, as MPI needs of collectives on one communicator. The last,
 * which carries the status, waits for the end of the walk (all: at the end
 * of the walk, when end). */
static int start_ready(tg_dist *d, bool end)
{
	size_t stop = end ? d->nbuckets : d->nbuckets - 1;
	while (d->next < stop && d->buckets[d->next].ready == d->buckets[d->next].count) {
		if (start_bucket(d, &d->buckets[d->next]))
			return -1;
		d->st.early += !end;
		d->next++;
	}
	/* a look at the ones in flight lets MPI move them on (there is no
	 * progress thread) */
	for (size_t i = 0; i < d->next; i++) {
		int done;
		for (size_t k = 0; k < d->buckets[i].nreq; k++)
			if (d->buckets[i].req[k] != MPI_REQUEST_NULL)
				MPI_Test(&d->buckets[i].req[k], &done, MPI_STATUS_IGNORE);
	}
	return 0;
}

static void grad_ready(tg_tensor *leaf, void *user)
{
	tg_dist *d = user;
	if (!d->in_step || d->broken || d->opts.no_overlap)
		return;
	size_t i = d->guess;
	for (size_t k = 0; k < d->nparams && d->params[i] != leaf; k++)
		i = i + 1 < d->nparams ? i + 1 : 0;
	if (d->params[i] != leaf || d->is_ready[i])
		return; /* not a parameter of the model */
	d->guess = i + 1 < d->nparams ? i + 1 : 0;
	pack(d, i);
	start_ready(d, false);
}

/* The buckets: parameters last first (the order their gradients become
 * final), a new bucket when one would pass bucket_bytes or the dtype
 * changes. */
static int make_buckets(tg_dist *d, tg_tensor *const *p, size_t np)
{
	d->params = calloc(np ? np : 1, sizeof *d->params);
	d->slot = calloc(np ? np : 1, sizeof *d->slot);
	d->offset = calloc(np ? np : 1, sizeof *d->offset);
	d->is_ready = calloc(np ? np : 1, sizeof *d->is_ready);
	d->buckets = calloc(np ? np : 1, sizeof *d->buckets);
	if (!d->params || !d->slot || !d->offset || !d->is_ready || !d->buckets)
		goto out_of_memory;
	d->nparams = np;
	for (size_t k = 0; k < np; k++) {
		tg_tensor *t = p[np - 1 - k];
		size_t es = tg_dtype_of(t) == TG_F64 ? 8 : 4, n = tg_numel(t);
		bucket *b = d->nbuckets ? &d->buckets[d->nbuckets - 1] : NULL;
		if (!b || b->dt != tg_dtype_of(t) ||
		    (b->numel + n) * es > d->opts.bucket_bytes) {
			b = &d->buckets[d->nbuckets++];
			*b = (bucket){ .first = k, .dt = tg_dtype_of(t) };
		}
		d->params[k] = t;
		d->slot[k] = (size_t)(b - d->buckets);
		d->offset[k] = b->numel;
		b->numel += n;
		b->count++;
	}
	if (d->nbuckets == 0) /* no parameters: one empty bucket carries the status */
		d->buckets[d->nbuckets++] = (bucket){ .dt = TG_F64 };
	for (size_t i = 0; i < d->nbuckets; i++) {
		bucket *b = &d->buckets[i];
		b->buf = calloc(b->numel + 1 + (i + 1 == d->nbuckets ? np : 0),
				b->dt == TG_F64 ? 8 : 4);
		b->nreq = (bucket_count(d, b) + d->chunk - 1) / d->chunk;
		b->req = malloc((b->nreq ? b->nreq : 1) * sizeof *b->req);
		if (!b->buf || !b->req)
			goto out_of_memory;
		for (size_t k = 0; k < b->nreq; k++)
			b->req[k] = MPI_REQUEST_NULL;
	}
	d->st.buckets = (int64_t)d->nbuckets;
	return 0;
out_of_memory:
	forget_buckets(d);
	tg_fail(d->ctx, TG_ENOMEM, "tg_dist_attach: out of memory for %zu parameters", np);
	return -1;
}

int tg_dist_attach(tg_dist *d, tg_module *m)
{
	if (!d)
		return no_dist(m ? m->ctx : NULL, "tg_dist_attach");
	if (!usable(d))
		return -1;
	if (!m) {
		tg_fail(d->ctx, TG_ENULL, "tg_dist_attach: the module is NULL");
		return -1;
	}
	if (d->model) {
		tg_fail(d->ctx, TG_EARG, "tg_dist_attach: a model is attached already");
		return -1;
	}
	/* the backward's hook that starts the buckets is the context's: a
	 * second tg_dist would take it from the first */
	for (const tg_dist *o = live_dists; o; o = o->next_live)
		if (o != d && o->model && o->ctx == m->ctx) {
			tg_fail(d->ctx, TG_EARG,
				"tg_dist_attach: another tg_dist has a model of this context "
				"attached; a context's models go to one tg_dist");
			return -1;
		}
	if (m->ctx != d->ctx) { /* its gradients would never reach the buckets */
		tg_fail(d->ctx, TG_ECTX,
			"tg_dist_attach: the module belongs to another context than the tg_dist");
		return -1;
	}
	size_t np = tg_module_params(m, NULL, 0), nt = tg_module_tensors(m, NULL, 0);
	tg_tensor **all = calloc(nt ? nt : 1, sizeof *all);
	if (!all) {
		tg_fail(d->ctx, TG_ENOMEM, "tg_dist_attach: out of memory");
		return -1;
	}
	tg_module_tensors(m, all, nt);
	/* tg_module_tensors: the parameters first, then the state */
	int rc = same_tensors(d, "tg_dist_attach", true, all, nt, np);
	if (rc == 0)
		rc = same_arch(d, m);
	if (rc == 0)
		rc = tg_dist_broadcast(d, all, nt);
	if (rc == 0)
		rc = make_buckets(d, all, np);
	if (rc == 0 && nt > np) {
		d->buffers = calloc(nt - np, sizeof *d->buffers);
		if (!d->buffers) {
			tg_fail(d->ctx, TG_ENOMEM, "tg_dist_attach: out of memory");
			rc = -1;
		} else {
			memcpy(d->buffers, all + np, (nt - np) * sizeof *all);
			d->nbuffers = nt - np;
		}
	}
	free(all);
	if (rc)
		return -1;
	d->model = m;
	tg_set_grad_ready(d->ctx, grad_ready, d);
	d->t_last_end = now();
	return 0;
}

/* ---- a step ------------------------------------------------------------------------------ */

int tg_dist_step_begin(tg_dist *d)
{
	if (!usable(d))
		return -1;
	if (!d->model) {
		tg_fail(d->ctx, TG_EARG, "tg_dist_step_begin: no model is attached (tg_dist_attach)");
		return -1;
	}
	double t = now();
	if (d->st.steps > 0)
		d->st.rest_s += t - d->t_last_end;
	d->t_begin = t;
	d->sync_in_step = 0;
	for (size_t i = 0; i < d->nparams; i++)
		d->is_ready[i] = false;
	for (size_t i = 0; i < d->nbuckets; i++) {
		d->buckets[i].ready = 0;
	}
	d->next = 0;
	d->guess = 0;
	d->failed_rank = d->size;
	d->step_allreduces = 0;
	d->forward_done = false;
	d->in_step = true;
	return 0;
}

int tg_dist_loss(tg_dist *d, double loss, int64_t n, bool failed, double *global, double *seed)
{
	if (global)
		*global = NAN;
	if (seed)
		*seed = 0;
	if (!d || d->broken)
		return -1;
	/* a bad argument fails this rank's step, told to the others in the
	 * collective below, which they would otherwise wait in for ever */
	if (!global || !seed) {
		tg_fail(d->ctx, TG_ENULL, "tg_dist_loss: %s is NULL", !global ? "global" : "seed");
		failed = true;
	} else if (n < 0) {
		tg_fail(d->ctx, TG_EARG, "tg_dist_loss: n = %lld rows is negative", (long long)n);
		failed = true;
	}
	/* the rows and the lowest rank that failed: the collective of a
	 * synchronised batch norm's count, which met this one on the ranks
	 * where a batch-norm layer waited for a rank that failed before it
	 * (those know the rank already) */
	rows_rank v = { failed ? 0 : (long)n, failed ? d->rank : d->size };
	if (d->failed_rank < d->size)
		v.rank = d->failed_rank;
	else if (allreduce_wait(d, MPI_IN_PLACE, &v, 1, MPI_LONG_INT, d->rows_op,
				"the loss's all-reduce"))
		return -1;
	d->failed_rank = d->size;
	if (v.rank < d->size) {
		d->in_step = false;
		tg_fail(d->ctx, TG_EIO, "tg_dist: rank %d failed in its forward pass; every rank stops",
			v.rank);
		told_all(d);
		return -1;
	}
	if (v.rows == 0) { /* the mean and the seed n / N would be 0 / 0 */
		d->in_step = false;
		tg_fail(d->ctx, TG_EARG,
			"tg_dist_loss: the global batch has no rows (n is 0 on all %d ranks), so "
			"it has no mean loss; skip the step rather than take it",
			d->size);
		told_all(d);
		return -1;
	}
	/* a rank of no rows adds nothing, whatever its loss (the mean of no
	 * rows is NaN) */
	double sum = n > 0 ? loss * (double)n : 0;
	if (allreduce_wait(d, MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, "the loss's all-reduce"))
		return -1;
	*global = sum / (double)v.rows;
	d->forward_done = true;
	d->seed = (double)n / (double)v.rows;
	*seed = d->seed;
	return 0;
}

/* p got no gradient here but did on another rank: the global batch's
 * gradient src becomes its gradient here too, as one process of the
 * global batch would give it one; else the ranks' optimizers would update
 * p apart. Made by a backward of sum(p * g), whose gradient for p is g. */
static int give_grad(tg_dist *d, tg_tensor *p, const void *src)
{
	tg_tensor *g = tg_empty(d->ctx, tg_dtype_of(p), tg_ndim(p), tg_shape(p));
	void *dst = g ? tg_data_mut(g) : NULL;
	if (!dst)
		return -1;
	memcpy(dst, src, tg_numel(p) * (tg_dtype_of(p) == TG_F64 ? 8 : 4));
	bool was = tg_set_grad_enabled(d->ctx, true);
	int rc = tg_backward(tg_sum(tg_mul(p, g)));
	tg_set_grad_enabled(d->ctx, was);
	return rc ? -1 : 0;
}

int tg_dist_step_end(tg_dist *d, bool failed)
{
	if (!d || d->broken)
		return -1;
	if (!d->model) { /* no buckets to carry the gradients */
		tg_fail(d->ctx, TG_EARG, "tg_dist_step_end: no model is attached (tg_dist_attach)");
		return -1;
	}
	/* the gradients would be summed, not averaged: no seed n / N */
	if (!d->in_step || !d->forward_done) {
		tg_fail(d->ctx, TG_EARG,
			"tg_dist_step_end: no step was begun (tg_dist_step_begin, then tg_dist_loss)");
		return -1;
	}
	double t = now();
	d->t_backward_end = t;
	/* a forward that all-reduced (synchronised batch norm) has a backward
	 * that does too: a rank whose backward failed before it meets the
	 * others there, with the rank that failed (header_check) */
	if (d->in_step && d->step_allreduces > 0 && d->failed_rank == d->size &&
	    header_check(d, NULL, failed) && d->broken)
		return -1;
	/* what the walk did not report (unused parameters, a walk that
	 * stopped, or no overlap): packed now */
	for (size_t i = 0; i < d->nparams; i++)
		if (!d->is_ready[i])
			pack(d, i);
	/* the status rides in the last bucket, which starts only now */
	bucket *last = &d->buckets[d->nbuckets - 1];
	size_t es = last->dt == TG_F64 ? 8 : 4;
	void *status = (char *)last->buf + last->numel * es;
	if (last->dt == TG_F64)
		*(double *)status = failed ? 1 : 0;
	else
		*(float *)status = failed ? 1.0f : 0.0f;
	for (size_t i = 0; i < d->nparams; i++) {
		bool has = tg_grad(d->params[i]) != NULL;
		if (last->dt == TG_F64)
			((double *)status)[1 + i] = has;
		else
			((float *)status)[1 + i] = has;
	}
	if (start_ready(d, true))
		return -1;
	for (size_t i = 0; i < d->nbuckets; i++)
		for (size_t k = 0; k < d->buckets[i].nreq; k++)
			if (wait_bounded(d, &d->buckets[i].req[k], "a gradient all-reduce"))
				return -1;
	bool any_failed = last->dt == TG_F64 ? *(double *)status != 0 : *(float *)status != 0;
	double t_wait = now();
	d->in_step = false;
	if (any_failed) { /* every rank knows it: the lowest that failed is named */
		int who = d->failed_rank < d->size ? d->failed_rank : failed ? d->rank : d->size;
		if (allreduce_wait(d, MPI_IN_PLACE, &who, 1, MPI_INT, MPI_MIN,
				   "naming the rank that failed"))
			return -1;
		tg_fail(d->ctx, TG_EIO, "tg_dist: rank %d failed in its backward pass; every rank "
			"stops", who);
		told_all(d);
		return -1;
	}
	for (size_t i = 0; i < d->nparams; i++) {
		tg_tensor *g = tg_grad(d->params[i]);
		bucket *b = &d->buckets[d->slot[i]];
		size_t es = b->dt == TG_F64 ? 8 : 4;
		const void *src = (char *)b->buf + d->offset[i] * es;
		bool elsewhere = last->dt == TG_F64 ? ((double *)status)[1 + i] != 0
						    : ((float *)status)[1 + i] != 0;
		if (g) {
			void *dst = tg_data_mut(g);
			if (dst)
				memcpy(dst, src, tg_numel(d->params[i]) * es);
		} else if (elsewhere && give_grad(d, d->params[i], src)) {
			return -1;
		}
	}
	d->st.steps++;
	d->st.compute_s += d->t_backward_end - d->t_begin - d->sync_in_step;
	d->st.sync_s += d->sync_in_step;
	d->st.wait_s += t_wait - d->t_backward_end;
	d->t_last_end = now();
	d->st.rest_s += d->t_last_end - t_wait;
	return 0;
}

void tg_dist_stats_get(const tg_dist *d, tg_dist_stats *out)
{
	if (out)
		*out = d ? d->st : (tg_dist_stats){ 0 };
}

void tg_dist_stats_clear(tg_dist *d)
{
	if (d) {
		int64_t nb = d->st.buckets;
		d->st = (tg_dist_stats){ .buckets = nb };
	}
}

/* ---- synchronised batch norm ------------------------------------------------------------ */
/* Over the global batch: for x (N,D), per feature over the M = sum_r N_r
 * rows; for x (N,C,...), per channel over the M = sum_r N_r S_r values of
 * the ranks, S_r the sizes after C (images of another size on each rank
 * count as theirs). mean = sum_r sum x / M, var = sum_r sum (x - mean)^2 /
 * M (biased, as tg_batch_norm), y = gamma (x - mean) / sqrt(var + eps) +
 * beta; made of ops and tg_dist_allreduce, so backward all-reduces the
 * partial sums of the gradient as the forward did. (N,C,...) sums over N
 * and the trailing axes at once (tg_sum_to (1,C,1,...,1)), and that shape
 * broadcasts the statistics, gamma and beta per channel. */

static void sync_vt_release(sync_vt *s)
{
	if (s && --s->refs == 0)
		free(s);
}

static tg_tensor *sync_bn_forward(tg_module *m, tg_tensor *x);

static bool is_sync_vt(const tg_module_vt *vt)
{
	return vt && vt->forward == sync_bn_forward;
}

static void sync_bn_free(tg_module *m)
{
	sync_vt *s = (sync_vt *)(void *)m->vt;
	if (s->plain->free)
		s->plain->free(m);
	m->vt = s->plain;
	sync_vt_release(s);
}

static tg_tensor *sync_bn_forward(tg_module *m, tg_tensor *x)
{
	const sync_vt *s = (const sync_vt *)(const void *)m->vt;
	tg_dist *d = s->d;
	tg_batchnorm *bn = m->self;
	if (!m->training)
		return s->plain->forward(m, x); /* evaluation */
	if (!d) {
		if (x && tg_ok(m->ctx))
			tg_fail(m->ctx, TG_EARG,
				"tg_dist_sync_bn: batch norm \"%s\" trains over the ranks, but its "
				"tg_dist has been freed (tg_dist_free); evaluation mode still works",
				m->name);
		return NULL;
	}
	/* shape errors as ever: this rank fails before the collective below,
	 * as a rank whose forward failed before the layer */
	if (!x || tg_ndim(x) < 2 || !bn->gamma || tg_dim(x, 1) != tg_dim(bn->gamma, 0) ||
	    !usable(d))
		return s->plain->forward(m, x);
	int nd = tg_ndim(x);
	/* The values per feature or channel over the ranks, in the collective
	 * that tg_dist_loss starts with: a rank whose forward failed before
	 * this layer skips the layer and meets it there, and tells the others
	 * which rank it is. */
	rows_rank v = { (long)(tg_numel(x) / (size_t)tg_dim(x, 1)), d->size };
	if (allreduce_wait(d, MPI_IN_PLACE, &v, 1, MPI_LONG_INT, d->rows_op,
			   "the synchronised batch norm's count of rows"))
		return NULL;
	if (v.rank < d->size) {
		d->failed_rank = v.rank;
		tg_fail(d->ctx, TG_EIO, "tg_dist: rank %d failed in its forward pass; every rank "
			"stops", v.rank);
		told_all(d);
		return NULL;
	}
	double count = (double)v.rows;
	if (count < 2) { /* on every rank alike */
		if (nd == 2)
			tg_fail(d->ctx, TG_ESHAPE,
				"tg_dist_sync_bn: a global batch of %g row has variance 0", count);
		else
			tg_fail(d->ctx, TG_ESHAPE,
				"tg_dist_sync_bn: a global batch of %g value per channel has "
				"variance 0", count);
		told_all(d);
		return NULL;
	}
	tg_tensor *mean, *var, *gamma = bn->gamma, *beta = bn->beta;
	tg_tensor *xc;
	if (nd == 2) {
		mean = tg_mul_scalar(tg_dist_allreduce(d, tg_sum_axis(x, 0, false)), 1 / count);
		xc = tg_sub(x, mean);
		var = tg_mul_scalar(tg_dist_allreduce(d, tg_sum_axis(tg_mul(xc, xc), 0, false)),
				    1 / count);
	} else {
		int64_t per[TG_MAX_DIMS]; /* (1,C,1,...,1) */
		tg_bn_channel_shape(nd, tg_dim(x, 1), per);
		mean = tg_mul_scalar(tg_dist_allreduce(d, tg_sum_to(x, nd, per)), 1 / count);
		xc = tg_sub(x, mean);
		var = tg_mul_scalar(tg_dist_allreduce(d, tg_sum_to(tg_mul(xc, xc), nd, per)),
				    1 / count);
		gamma = tg_reshape(gamma, nd, per);
		beta = tg_reshape(beta, nd, per);
	}
	tg_tensor *y = tg_add(tg_mul(tg_div(xc, tg_sqrt(tg_add_scalar(var, bn->eps))), gamma),
			      beta);
	if (y) { /* (C) or (1,C,1,...,1): the same C values in order */
		tg_bn_update_running(bn->running_mean, mean, bn->avg_decay);
		tg_bn_update_running(bn->running_var, var, bn->avg_decay);
	}
	return y;
}

static int convert_bn(tg_dist *d, tg_module *m)
{
	const tg_module_vt *vt = m->vt;
	if (is_sync_vt(vt) && vt != &d->sync->vt) {
		const sync_vt *other = (const sync_vt *)(const void *)vt;
		if (other->d) { /* each forward would all-reduce on both */
			tg_fail(d->ctx, TG_EARG,
				"tg_dist_sync_bn: batch norm \"%s\" is synchronised by another "
				"tg_dist already; a model trains with one",
				m->name);
			return -1;
		}
		vt = other->plain; /* its tg_dist is gone: this one takes it over */
	}
	if (vt && vt->kind && !strcmp(vt->kind, "bn") && !is_sync_vt(vt)) {
		if (!d->sync->plain) {
			d->sync->plain = vt;
			d->sync->vt = *vt;
			d->sync->vt.forward = sync_bn_forward;
			d->sync->vt.free = sync_bn_free;
		} else if (vt != d->sync->plain) {
			tg_fail(d->ctx, TG_EARG, "tg_dist_sync_bn: a \"bn\" module of another kind");
			return -1;
		}
		if (m->vt != vt)
			sync_vt_release((sync_vt *)(void *)m->vt);
		m->vt = &d->sync->vt;
		d->sync->refs++;
	}
	for (size_t i = 0; i < m->nchildren; i++)
		if (convert_bn(d, m->children[i]))
			return -1;
	return 0;
}

int tg_dist_sync_bn(tg_dist *d, tg_module *m)
{
	if (!d)
		return no_dist(m ? m->ctx : NULL, "tg_dist_sync_bn");
	if (!usable(d))
		return -1;
	if (!m) {
		tg_fail(d->ctx, TG_ENULL, "tg_dist_sync_bn: the module is NULL");
		return -1;
	}
	if (m->ctx != d->ctx) {
		tg_fail(d->ctx, TG_ECTX,
			"tg_dist_sync_bn: the module belongs to another context than the tg_dist");
		return -1;
	}
	if (!d->sync) {
		d->sync = calloc(1, sizeof *d->sync);
		if (!d->sync) {
			tg_fail(d->ctx, TG_ENOMEM, "tg_dist_sync_bn: out of memory");
			return -1;
		}
		d->sync->d = d;
		d->sync->refs = 1;
	}
	return convert_bn(d, m);
}
