/*
 * train.c - the training loop: steps of forward, cross-entropy, backward and
 * an optimizer update over mini-batches, with evaluation, progress, a CSV log
 * and a confusion matrix.
 *
 * Made of public calls only (modules, optimizers, batchers, ops): no gradient
 * code here. Every step is checked; a failure, a non-finite loss or a loss
 * that diverged stops the loop with the context's error intact.
 *
 * Shapes: N = samples, D = features, B = batch, K = classes.
 */
#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

tg_train_opts tg_train_defaults(void)
{
	return (tg_train_opts){
		.epochs = 10,
		.batch = 100,
		.eval_batch = 1000,
		.progress = TG_PROGRESS_AUTO,
		.progress_every = 10,
		.out = stdout,
	};
}

/* ---- checks --------------------------------------------------------------------- */

/* The net's input width must be ds's D and its K outputs must cover ds's
 * labels. */
static int check_fit(tg_ctx *ctx, const char *who, const tg_mlp *m, const tg_dataset *ds,
		     const char *which)
{
	if (!ds || !ds->x || !ds->y || ds->n < 1) {
		tg_fail(ctx, TG_EARG, "%s: the %s set is empty or NULL", who, which);
		return -1;
	}
	int64_t d = tg_mlp_width(m, 0), k = tg_mlp_width(m, tg_mlp_depth(m));
	if (ds->d != d) {
		tg_fail(ctx, TG_ESHAPE, "%s: the net %s takes %lld features; the %s set has %lld",
			who, tg_mlp_spec(m), (long long)d, which, (long long)ds->d);
		return -1;
	}
	if (ds->classes > k) {
		tg_fail(ctx, TG_ESHAPE, "%s: the net %s has %lld outputs; the %s set has %d classes",
			who, tg_mlp_spec(m), (long long)k, which, (int)ds->classes);
		return -1;
	}
	return 0;
}

static tg_dtype net_dtype(const tg_mlp *m)
{
	size_t n;
	tg_tensor *const *p = tg_mlp_params(m, &n);
	return n ? tg_dtype_of(p[0]) : TG_F32;
}

/* ---- evaluation ----------------------------------------------------------------- */

int tg_evaluate(tg_mlp *m, const tg_dataset *ds, int64_t batch, double *loss, double *acc,
		int64_t *confusion)
{
	tg_ctx *ctx = tg_mlp_ctx(m);
	if (!ctx || !tg_ok(ctx))
		return -1;
	if (check_fit(ctx, "tg_evaluate", m, ds, "evaluation"))
		return -1;
	int64_t n = ds->n, d = ds->d, k = tg_mlp_width(m, tg_mlp_depth(m));
	if (batch <= 0)
		batch = 1000;
	if (batch > n)
		batch = n;
	int32_t *pred = malloc((size_t)batch * sizeof *pred);
	if (!pred) {
		tg_fail(ctx, TG_ENOMEM, "tg_evaluate: out of memory for %lld predictions",
			(long long)batch);
		return -1;
	}
	if (confusion)
		memset(confusion, 0, (size_t)(k * k) * sizeof *confusion);
	tg_dtype dt = net_dtype(m);
	bool was_training = tg_mlp_training(m);
	bool grad = tg_set_grad_enabled(ctx, false);
	tg_mlp_train(m, false);

	double sum = 0;
	int64_t correct = 0;
	for (int64_t start = 0; start < n; start += batch) {
		int64_t nb = n - start < batch ? n - start : batch;
		tg_tensor *x = tg_from_f32(ctx, dt, 2, (int64_t[]){ nb, d }, ds->x + start * d);
		tg_tensor *logits = tg_mlp_forward(m, x);
		tg_tensor *l = tg_cross_entropy_i32(logits, ds->y + start, nb);
		if (!l || tg_argmax_rows(logits, pred))
			break;
		sum += tg_item(l) * (double)nb;
		for (int64_t i = 0; i < nb; i++) {
			int32_t y = ds->y[start + i];
			correct += pred[i] == y;
			if (confusion)
				confusion[y * k + pred[i]]++;
		}
		tg_reset(ctx);
	}
	tg_reset(ctx);
	tg_mlp_train(m, was_training);
	tg_set_grad_enabled(ctx, grad);
	free(pred);
	if (!tg_ok(ctx))
		return -1;
	if (loss)
		*loss = sum / (double)n;
	if (acc)
		*acc = (double)correct / (double)n;
	return 0;
}

/* ---- the confusion matrix ---------------------------------------------------------- */

static int digits(int64_t v)
{
	int n = 1;
	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

void tg_confusion_print(FILE *f, const int64_t *confusion, int k, const char *const *names)
{
	if (!f || !confusion || k < 1)
		return;
	int64_t most = k - 1, total = 0, right = 0;
	int name_w = 0;
	for (int i = 0; i < k; i++) {
		for (int j = 0; j < k; j++) {
			int64_t c = confusion[(int64_t)i * k + j];
			most = c > most ? c : most;
			total += c;
			right += i == j ? c : 0;
		}
		if (names && names[i]) {
			int len = (int)strlen(names[i]);
			name_w = len > name_w ? len : name_w;
		}
	}
	if (name_w > 20)
		name_w = 20;
	int idx_w = digits(k - 1), col_w = digits(most) + 2;
	int label_w = idx_w + (name_w ? name_w + 1 : 0);

	fprintf(f, "rows: true class; columns: predicted class\n%*s  ", label_w, "");
	for (int j = 0; j < k; j++)
		fprintf(f, "%*d", col_w, j);
	fprintf(f, "  recall\n");
	for (int i = 0; i < k; i++) {
		int64_t row = 0;
		for (int j = 0; j < k; j++)
			row += confusion[(int64_t)i * k + j];
		if (name_w)
			fprintf(f, "%*d %-*.*s  ", idx_w, i, name_w, name_w,
				names && names[i] ? names[i] : "");
		else
			fprintf(f, "%*d  ", idx_w, i);
		for (int j = 0; j < k; j++)
			fprintf(f, "%*lld", col_w, (long long)confusion[(int64_t)i * k + j]);
		if (row)
			fprintf(f, "  %.3f\n", (double)confusion[(int64_t)i * k + i] / (double)row);
		else
			fprintf(f, "  -\n");
	}
	if (total)
		fprintf(f, "accuracy %.4f (%lld of %lld)\n", (double)right / (double)total,
			(long long)right, (long long)total);
}

/* ---- one run of the loop ------------------------------------------------------------ */

typedef struct run {
	tg_ctx *ctx;
	tg_mlp *m;
	tg_optim *o;
	const tg_dataset *train;
	const tg_dataset *test;     /* may be NULL */
	tg_train_opts opts;
	tg_dtype dt;
	int64_t k;                  /* K: the net's outputs */
	int64_t per_epoch;          /* steps in a full epoch */
	int64_t total;              /* steps planned */
	int64_t epochs;             /* epochs planned */
	int32_t *pred;              /* (B) predictions of the current batch */
	int64_t *confusion;         /* (K,K) of the latest test evaluation */
	FILE *log;
	tg_progress progress;
	double t0;                  /* when training began */
	double first_loss;          /* of the first step: the divergence check's reference */
	double drawn_at;            /* when progress was last shown */
	bool drawn;                 /* a TTY progress line is on screen */
	/* the current epoch */
	double epoch_t0;
	int64_t epoch_steps;
	double loss_sum;            /* sum over samples of their loss */
	int64_t correct;
	int64_t seen;
} run;

/* ---- progress on stderr ---------------------------------------------------------------- */

static void clear_progress(run *r)
{
	if (r->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		r->drawn = false;
	}
}

static void show_progress(run *r, int64_t epoch, int64_t it)
{
	if (r->progress == TG_PROGRESS_OFF)
		return;
	double t = now();
	double every = r->progress == TG_PROGRESS_TTY ? 0.1 : r->opts.progress_every;
	if (t - r->drawn_at < every)
		return;
	r->drawn_at = t;
	double dt = t - r->epoch_t0;
	double rate = dt > 0 ? (double)r->epoch_steps / dt : 0;
	double eta = rate > 0 ? (double)(r->total - it) / rate : 0;
	long eta_s = (long)(eta + 0.5);
	double loss = r->seen ? r->loss_sum / (double)r->seen : NAN;
	const char *lead = r->progress == TG_PROGRESS_TTY ? "\r\033[K" : "";
	const char *tail = r->progress == TG_PROGRESS_TTY ? "" : "\n";
	fprintf(stderr, "%sepoch %lld/%lld  iter %lld/%lld  loss %.4f  %.0f it/s  ETA %ld:%02ld%s",
		lead, (long long)epoch, (long long)r->epochs, (long long)it, (long long)r->total,
		loss, rate, eta_s / 60, eta_s % 60, tail);
	fflush(stderr);
	r->drawn = r->progress == TG_PROGRESS_TTY;
}

/* ---- the CSV log ------------------------------------------------------------------------ */

static int log_open(run *r)
{
	if (!r->opts.log_path)
		return 0;
	r->log = fopen(r->opts.log_path, "w");
	if (!r->log) {
		tg_fail(r->ctx, TG_EIO, "tg_train: cannot write the log %s: %s", r->opts.log_path,
			strerror(errno));
		return -1;
	}
	fprintf(r->log, "epoch,iter,train_loss,train_acc,test_loss,test_acc,seconds\n");
	return 0;
}

static void log_row(run *r, const tg_metrics *mt)
{
	if (!r->log)
		return;
	fprintf(r->log, "%lld,%lld,%.6f,%.6f,", (long long)mt->epoch, (long long)mt->iter,
		mt->train_loss, mt->train_acc);
	if (r->test)
		fprintf(r->log, "%.6f,%.6f,", mt->test_loss, mt->test_acc);
	else
		fprintf(r->log, ",,");
	fprintf(r->log, "%.3f\n", mt->seconds);
	fflush(r->log);
}

static int log_close(run *r)
{
	if (!r->log)
		return 0;
	bool bad = ferror(r->log);
	bad |= fclose(r->log) != 0;
	r->log = NULL;
	if (bad)
		tg_fail(r->ctx, TG_EIO, "tg_train: writing the log %s failed: %s", r->opts.log_path,
			strerror(errno));
	return bad ? -1 : 0;
}

/* ---- a step ------------------------------------------------------------------------------ */

/* forward, loss, zero_grad, backward, update, reset. The loss is checked
 * before the update: a non-finite loss never reaches the parameters. */
static int step(run *r, const tg_batch *b, int64_t epoch, int64_t it)
{
	tg_ctx *ctx = r->ctx;
	tg_tensor *logits = tg_mlp_forward(r->m, b->x);
	tg_tensor *loss = tg_cross_entropy_i32(logits, b->y, b->n);
	double l = loss ? tg_item(loss) : NAN;
	if (tg_ok(ctx) && !isfinite(l))
		tg_fail(ctx, TG_EANOMALY,
			"tg_train: the loss is %g at epoch %lld, step %lld; try a smaller learning "
			"rate, or anomaly mode to find the op that made it",
			l, (long long)epoch, (long long)it + 1);
	if (tg_ok(ctx) && it == 0)
		r->first_loss = l;
	if (tg_ok(ctx) && !r->opts.no_divergence_check && l > TG_TRAIN_DIVERGENCE_FLOOR &&
	    l > TG_TRAIN_DIVERGENCE * r->first_loss)
		tg_fail(ctx, TG_EANOMALY,
			"tg_train: the loss diverged: %.4g at epoch %lld, step %lld, more than %g "
			"times the first step's %.4g; try a smaller learning rate (the check is off "
			"with tg_train_opts.no_divergence_check, train --no-divergence-check)",
			l, (long long)epoch, (long long)it + 1, TG_TRAIN_DIVERGENCE, r->first_loss);
	if (!tg_ok(ctx))
		return -1;
	if (!r->opts.full_train_eval) {
		if (tg_argmax_rows(logits, r->pred))
			return -1;
		for (int64_t i = 0; i < b->n; i++)
			r->correct += r->pred[i] == b->y[i];
	}
	r->loss_sum += l * (double)b->n;
	r->seen += b->n;
	tg_optim_zero_grad(r->o);
	tg_backward(loss);
	tg_optim_step(r->o);
	tg_reset(ctx);
	return tg_ok(ctx) ? 0 : -1;
}

/* ---- an epoch's end ---------------------------------------------------------------------- */

static int end_epoch(run *r, tg_metrics *mt)
{
	if (r->opts.full_train_eval) {
		if (tg_evaluate(r->m, r->train, r->opts.eval_batch, &mt->train_loss, &mt->train_acc,
				NULL))
			return -1;
	} else {
		mt->train_loss = r->loss_sum / (double)r->seen;
		mt->train_acc = (double)r->correct / (double)r->seen;
	}
	mt->test_loss = mt->test_acc = NAN;
	if (r->test && tg_evaluate(r->m, r->test, r->opts.eval_batch, &mt->test_loss,
				   &mt->test_acc, r->confusion))
		return -1;
	mt->seconds = now() - r->t0;
	log_row(r, mt);
	clear_progress(r);
	if (r->opts.out) {
		int w = digits(r->epochs);
		fprintf(r->opts.out, "epoch %*lld  iter %*lld  train loss %.4f acc %.4f", w,
			(long long)mt->epoch, digits(r->total), (long long)mt->iter, mt->train_loss,
			mt->train_acc);
		if (r->test)
			fprintf(r->opts.out, "  test loss %.4f acc %.4f", mt->test_loss, mt->test_acc);
		fprintf(r->opts.out, "  %.1f s\n", mt->seconds);
		fflush(r->opts.out);
	}
	return 0;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static int plan(run *r)
{
	const tg_train_opts *o = &r->opts;
	int64_t n = r->train->n, b = o->batch;
	if (b < 1 || o->eval_batch < 0 || (o->iters <= 0 && o->epochs < 1) ||
	    !(o->progress_every >= 0) || (unsigned)o->progress > TG_PROGRESS_LINES) {
		tg_fail(r->ctx, TG_EARG,
			"tg_train: bad options: batch %lld, epochs %lld, iters %lld, eval_batch "
			"%lld, progress %d every %g s",
			(long long)b, (long long)o->epochs, (long long)o->iters,
			(long long)o->eval_batch, (int)o->progress, o->progress_every);
		return -1;
	}
	if (o->replace)
		r->per_epoch = n / b > 1 ? n / b : 1;
	else
		r->per_epoch = o->drop_last ? n / b : (n + b - 1) / b;
	if (r->per_epoch < 1) {
		tg_fail(r->ctx, TG_EARG, "tg_train: batch %lld > %lld samples with drop_last",
			(long long)b, (long long)n);
		return -1;
	}
	r->total = o->iters > 0 ? o->iters : o->epochs * r->per_epoch;
	r->epochs = (r->total + r->per_epoch - 1) / r->per_epoch;
	r->progress = o->progress;
	if (r->progress == TG_PROGRESS_AUTO)
		r->progress = isatty(fileno(stderr)) ? TG_PROGRESS_TTY : TG_PROGRESS_LINES;
	return 0;
}

static int loop(run *r, tg_batcher *bt, tg_metrics *mt)
{
	int64_t it = 0, epoch = 0;
	for (;;) {
		r->epoch_t0 = now();
		r->epoch_steps = 0;
		r->loss_sum = 0;
		r->correct = r->seen = 0;
		while (it < r->total && !(r->opts.replace && r->epoch_steps == r->per_epoch)) {
			tg_batch b;
			if (!tg_batch_next(bt, r->dt, &b)) {
				if (!tg_ok(r->ctx))
					return -1;
				break; /* the end of a shuffled epoch */
			}
			if (step(r, &b, epoch + 1, it))
				return -1;
			it++;
			r->epoch_steps++;
			mt->iter = it;
			show_progress(r, epoch + 1, it);
		}
		if (r->epoch_steps == 0)
			return 0;
		mt->epoch = ++epoch;
		if (end_epoch(r, mt))
			return -1;
		if (r->opts.on_epoch && !r->opts.on_epoch(mt, r->opts.user))
			return 0;
		if (it >= r->total)
			return 0;
	}
}

int tg_train(tg_mlp *m, tg_optim *o, const tg_dataset *train, const tg_dataset *test,
	     const tg_train_opts *opts, tg_metrics *last)
{
	tg_ctx *ctx = tg_mlp_ctx(m);
	tg_metrics mt = { .train_loss = NAN, .train_acc = NAN, .test_loss = NAN,
			  .test_acc = NAN };
	if (last)
		*last = mt;
	if (!ctx || !tg_ok(ctx))
		return -1;
	if (!o) {
		tg_fail(ctx, TG_ENULL, "tg_train: the optimizer is NULL");
		return -1;
	}
	run r = { .ctx = ctx, .m = m, .o = o, .train = train, .test = test,
		  .opts = opts ? *opts : tg_train_defaults(), .dt = net_dtype(m),
		  .k = tg_mlp_width(m, tg_mlp_depth(m)) };
	if (check_fit(ctx, "tg_train", m, train, "train") ||
	    (test && check_fit(ctx, "tg_train", m, test, "test")) || plan(&r))
		return -1;
	int64_t rows = r.opts.replace || r.opts.batch < train->n ? r.opts.batch : train->n;
	if (rows > TG_DATA_MAX_ELEMS / train->d) { /* could never be one tensor */
		tg_fail(ctx, TG_EARG, "tg_train: a batch of %lld rows of %lld features is too large",
			(long long)rows, (long long)train->d);
		return -1;
	}
	r.pred = malloc((size_t)rows * sizeof *r.pred);
	int64_t *own = NULL;
	r.confusion = r.opts.confusion;
	if (!r.confusion && test && r.opts.out)
		r.confusion = own = malloc((size_t)(r.k * r.k) * sizeof *own);
	unsigned flags = (r.opts.replace ? TG_BATCH_REPLACE : 0) |
			 (r.opts.drop_last ? TG_BATCH_DROP_LAST : 0);
	tg_batcher *bt = NULL;
	int rc = -1;
	if (!r.pred || (test && r.opts.out && !r.confusion)) {
		tg_fail(ctx, TG_ENOMEM, "tg_train: out of memory");
		goto out_free;
	}
	bt = tg_batcher_new(ctx, train, r.opts.batch, flags);
	if (!bt || log_open(&r))
		goto out_free;

	bool grad = tg_set_grad_enabled(ctx, true);
	if (r.opts.anomaly)
		tg_set_anomaly(ctx, true);
	tg_mlp_train(m, true);
	r.t0 = r.drawn_at = now();
	rc = loop(&r, bt, &mt);
	tg_reset(ctx);
	clear_progress(&r);
	if (r.opts.anomaly)
		tg_set_anomaly(ctx, false);
	tg_set_grad_enabled(ctx, grad);
	tg_mlp_train(m, true);
	rc |= log_close(&r);
	if (rc == 0 && test && r.opts.out && mt.epoch > 0) {
		fprintf(r.opts.out, "confusion matrix on the test set:\n");
		tg_confusion_print(r.opts.out, r.confusion, (int)r.k, r.opts.class_names);
		fflush(r.opts.out);
	}
out_free:
	log_close(&r);
	tg_batcher_free(bt);
	free(own);
	free(r.pred);
	if (last)
		*last = mt;
	return rc ? -1 : 0;
}
