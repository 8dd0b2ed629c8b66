/*
 * train.c - the training loop: steps of forward, loss, backward and an
 * optimizer update over mini-batches, for any module and task, with
 * evaluation, early stopping, progress, a CSV log and a confusion matrix.
 *
 * Made of public calls only (modules, optimizers, batchers, ops): no gradient
 * code here. Every step is checked; a failure, a non-finite loss or a loss
 * that diverged stops the loop with the context's error intact.
 *
 * Shapes: N = samples, D = features, B = batch, K = classes (outputs),
 * T = float targets per sample.
 */
#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"
#include "tapegrad_dist.h"
#include "dist_hooks.h"
#include "optim_opts.h"
#include "c_locale.h"
#include "engine_errors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* ---- tasks ------------------------------------------------------------------------ */

static const tg_task classify_task = { .loss = TG_LOSS_CROSS_ENTROPY };

static bool is_regression(tg_loss_kind k)
{
	return k == TG_LOSS_MSE || k == TG_LOSS_L1 || k == TG_LOSS_HUBER;
}

/* Whether the task learns from class labels (ds.y) or float targets (ds.t). */
static bool wants_labels(const tg_task *t)
{
	return t->loss == TG_LOSS_CROSS_ENTROPY;
}

const char *tg_loss_name(tg_loss_kind k)
{
	static const char *const names[] = {
		[TG_LOSS_CROSS_ENTROPY] = "cross-entropy", [TG_LOSS_SOFT_CROSS_ENTROPY] = "soft cross-entropy",
		[TG_LOSS_BCE_WITH_LOGITS] = "bce-with-logits", [TG_LOSS_MSE] = "mse",
		[TG_LOSS_L1] = "l1", [TG_LOSS_HUBER] = "huber",
	};
	return (unsigned)k <= TG_LOSS_HUBER ? names[k] : "unknown";
}

static int check_task(tg_ctx *ctx, const char *who, const tg_task *t)
{
	if ((unsigned)t->loss > TG_LOSS_HUBER ||
	    (t->loss == TG_LOSS_HUBER && !(t->delta >= 0 && isfinite(t->delta)))) {
		tg_fail(ctx, TG_EARG, "%s: bad task (loss %d, delta %g)", who, (int)t->loss,
			t->delta);
		return -1;
	}
	return 0;
}

/* A data set the task can learn from: labels or float targets as it needs. */
static int check_set(tg_ctx *ctx, const char *who, const tg_task *t, const tg_dataset *ds,
		     const char *which)
{
	if (!ds || !ds->x || ds->n < 1 || ds->d < 1 || (!ds->y && !ds->t)) {
		tg_fail(ctx, TG_EARG, "%s: the %s set is empty or NULL", who, which);
		return -1;
	}
	int64_t shape[1 + TG_SAMPLE_MAX_DIMS], numel = 1;
	int nd = tg_dataset_batch_shape(ds, 1, shape);
	for (int i = 1; i < nd; i++)
		numel = shape[i] >= 1 && shape[i] <= ds->d && numel >= 1 && numel <= ds->d
			    ? numel * shape[i] : -1;
	if (numel != ds->d) {
		tg_fail(ctx, TG_ESHAPE, "%s: the %s set's samples are shaped %d-d, not %lld features",
			who, which, ds->ndim, (long long)ds->d);
		return -1;
	}
	if (wants_labels(t) && !ds->y) {
		tg_fail(ctx, TG_EARG,
			"%s: the %s set has float targets; the %s loss needs class labels", who,
			which, tg_loss_name(t->loss));
		return -1;
	}
	if (!wants_labels(t) && (!ds->t || ds->tdim < 1)) {
		tg_fail(ctx, TG_EARG,
			"%s: the %s set has class labels; the %s loss needs float targets", who,
			which, tg_loss_name(t->loss));
		return -1;
	}
	/* a target the loss refuses likewise: BCE's outside [0, 1], a soft
	 * target row that is not a distribution (tg_cross_entropy_soft's rule) */
	bool soft = t->loss == TG_LOSS_SOFT_CROSS_ENTROPY;
	for (int64_t i = 0; (soft || t->loss == TG_LOSS_BCE_WITH_LOGITS) && i < ds->n; i++) {
		const float *row = ds->t + i * ds->tdim;
		double sum = 0;
		for (int64_t j = 0; j < ds->tdim; j++) {
			if (!(row[j] >= 0 && row[j] <= 1)) {
				tg_fail(ctx, TG_EARG,
					"%s: the %s set's row %lld has target %lld = %g, outside [0, "
					"1] (%s loss)",
					who, which, (long long)i, (long long)j, (double)row[j],
					tg_loss_name(t->loss));
				return -1;
			}
			sum += row[j];
		}
		if (soft && !(fabs(sum - 1) <= TG_SOFT_TARGET_TOL)) {
			tg_fail(ctx, TG_EARG,
				"%s: the %s set's row %lld has targets summing to %.9g; soft targets "
				"are a distribution summing to 1",
				who, which, (long long)i, sum);
			return -1;
		}
	}
	/* a bad label named by its row of the set, before a step where the
	 * loss could name only its place in a batch */
	for (int64_t i = 0; wants_labels(t) && i < ds->n; i++)
		if (ds->y[i] < 0 || (ds->classes > 0 && ds->y[i] >= ds->classes)) {
			tg_fail(ctx, TG_EARG, "%s: the %s set's row %lld has label %d, outside [0, %d)",
				who, which, (long long)i, (int)ds->y[i],
				ds->classes > 0 ? (int)ds->classes : INT32_MAX);
			return -1;
		}
	return 0;
}

/* The task's loss of out against the batch's labels or targets: a scalar
 * step tensor, or NULL with the error in ctx. A target task's outputs must
 * have the targets' shape. */
static tg_tensor *task_loss(const tg_task *t, const char *who, tg_tensor *out,
			    tg_tensor *labels, tg_tensor *target)
{
	if (!out)
		return NULL;
	if (wants_labels(t))
		return tg_cross_entropy(out, labels);
	if (!target)
		return NULL;
	int nd = tg_ndim(out);
	if (nd != 2 || memcmp(tg_shape(out), tg_shape(target), 2 * sizeof(int64_t))) {
		char a[64], b[64];
		return tg_fail(tg_ctx_of(out), TG_ESHAPE,
			       "%s: the model's output %s does not match the targets %s (%s loss)",
			       who, tg_shape_str(out, a, sizeof a), tg_shape_str(target, b, sizeof b),
			       tg_loss_name(t->loss));
	}
	switch (t->loss) {
	case TG_LOSS_SOFT_CROSS_ENTROPY:
		return tg_cross_entropy_soft(out, target);
	case TG_LOSS_BCE_WITH_LOGITS:
		return tg_bce_with_logits(out, target);
	case TG_LOSS_MSE:
		return tg_mse(out, target);
	case TG_LOSS_L1:
		return tg_l1(out, target);
	case TG_LOSS_HUBER:
		return tg_huber(out, target, t->delta > 0 ? t->delta : 1.0);
	default:
		return NULL;
	}
}

/* ---- metrics ---------------------------------------------------------------------- */

/* Sums over the samples seen so far, from which every figure follows. */
typedef struct tally {
	int64_t seen;       /* samples */
	double loss_sum;    /* sum over samples of their loss */
	int64_t right;      /* correct predictions */
	int64_t judged;     /* predictions judged (samples, or elements for binary) */
	double sse;         /* sum of squared errors (regression) */
	int64_t tdim;       /* T: targets per sample (regression) */
	/* (T) sums of the targets and their squares, each target less shift,
	 * the set's first row: SST = syy - sy^2 / n is then not the small
	 * difference of two huge sums for targets far from 0 (and every rank
	 * shifts alike, as they share the set) */
	double *sy, *syy;
	double *shift;
	int32_t *pred;      /* (B) argmax predictions of a batch */
	int64_t *confusion; /* (K,K) counts, or NULL */
	int64_t k;          /* K of the confusion matrix; 0 until known */
} tally;

/* tdim targets per sample, shifted by the first row of ds's targets */
static int tally_init(tg_ctx *ctx, const char *who, tally *ty, int64_t rows, int64_t tdim,
		      const tg_dataset *ds)
{
	*ty = (tally){ .tdim = tdim };
	ty->pred = malloc((size_t)rows * sizeof *ty->pred);
	if (tdim) {
		ty->sy = calloc((size_t)tdim, sizeof *ty->sy);
		ty->syy = calloc((size_t)tdim, sizeof *ty->syy);
		ty->shift = calloc((size_t)tdim, sizeof *ty->shift);
		for (int64_t j = 0; ty->shift && j < tdim; j++)
			ty->shift[j] = ds->t[j];
	}
	if (!ty->pred || (tdim && (!ty->sy || !ty->syy || !ty->shift))) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory for %lld predictions", who,
			(long long)rows);
		return -1;
	}
	return 0;
}

static void tally_clear(tally *ty)
{
	ty->seen = ty->right = ty->judged = 0;
	ty->loss_sum = ty->sse = 0;
	for (int64_t j = 0; j < ty->tdim; j++)
		ty->sy[j] = ty->syy[j] = 0;
}

static void tally_free(tally *ty)
{
	free(ty->pred);
	free(ty->sy);
	free(ty->syy);
	free(ty->shift);
}

static double value_at(const void *p, tg_dtype dt, int64_t i)
{
	return dt == TG_F64 ? ((const double *)p)[i] : ((const float *)p)[i];
}

/* Counts one batch: its mean loss l over nb samples, and what its outputs
 * out predict against labels y (classification) or the targets tensor. */
static int tally_add(tally *ty, const tg_task *t, double l, int64_t nb, tg_tensor *out,
		     const int32_t *y, tg_tensor *target)
{
	ty->loss_sum += l * (double)nb;
	ty->seen += nb;
	tg_loss_kind k = t->loss;
	if (k == TG_LOSS_CROSS_ENTROPY || k == TG_LOSS_SOFT_CROSS_ENTROPY) {
		if (tg_argmax_rows(out, ty->pred))
			return -1;
		int64_t w = tg_shape(out)[1];
		const void *tp = target ? tg_data(target) : NULL;
		tg_dtype dt = target ? tg_dtype_of(target) : TG_F32;
		for (int64_t i = 0; i < nb; i++) {
			int32_t truth = 0;
			if (y) {
				truth = y[i];
			} else { /* the most likely class of a soft target */
				for (int64_t j = 1; j < w; j++)
					if (value_at(tp, dt, i * w + j) > value_at(tp, dt, i * w + truth))
						truth = (int32_t)j;
			}
			ty->right += ty->pred[i] == truth;
			if (ty->confusion && truth < ty->k && ty->pred[i] < ty->k)
				ty->confusion[truth * ty->k + ty->pred[i]]++;
		}
		ty->judged += nb;
		return 0;
	}
	const void *op = tg_data(out), *tp = tg_data(target);
	tg_dtype dt = tg_dtype_of(out);
	int64_t w = tg_shape(out)[1];
	for (int64_t i = 0; i < nb; i++)
		for (int64_t j = 0; j < w; j++) {
			double o = value_at(op, dt, i * w + j), v = value_at(tp, dt, i * w + j);
			if (k == TG_LOSS_BCE_WITH_LOGITS) {
				bool p = o > 0, truth = v > 0.5;
				ty->right += p == truth;
				if (ty->confusion && w == 1)
					ty->confusion[truth * 2 + p]++;
			} else {
				ty->sse += (o - v) * (o - v);
				ty->sy[j] += v - ty->shift[j];
				ty->syy[j] += (v - ty->shift[j]) * (v - ty->shift[j]);
			}
		}
	ty->judged += nb * w;
	return 0;
}

/* The figures of a tally into its scores. */
static void tally_scores(const tally *ty, const tg_task *t, tg_scores *s)
{
	*s = (tg_scores){ .loss = NAN, .acc = NAN, .mse = NAN, .rmse = NAN, .r2 = NAN };
	if (!ty->seen)
		return;
	s->loss = ty->loss_sum / (double)ty->seen;
	if (!is_regression(t->loss)) {
		s->acc = (double)ty->right / (double)ty->judged;
		return;
	}
	double n = (double)ty->seen, sst = 0;
	for (int64_t j = 0; j < ty->tdim; j++)
		sst += ty->syy[j] - ty->sy[j] * ty->sy[j] / n;
	s->mse = ty->sse / (double)ty->judged;
	s->rmse = sqrt(s->mse);
	s->r2 = sst > 0 ? 1 - ty->sse / sst : NAN;
}

/* K of the confusion matrix a task can keep: the logits' width for class
 * labels, 2 for one binary target, 0 for none. */
static int64_t confusion_k(const tg_task *t, const tg_dataset *ds, int64_t out_width)
{
	if (t->loss == TG_LOSS_CROSS_ENTROPY)
		return out_width;
	if (t->loss == TG_LOSS_BCE_WITH_LOGITS && ds->tdim == 1)
		return 2;
	return 0;
}

static tg_dtype module_dtype(const tg_module *m)
{
	tg_tensor *p[1];
	return tg_module_params(m, p, 1) ? tg_dtype_of(p[0]) : TG_F32;
}

/* Each module's train/eval flag in m's tree, depth first, into or out of
 * on[*i...]: an evaluation puts the whole tree in evaluation mode and then
 * gives every module back the mode it had (a batch norm a caller keeps in
 * evaluation mode inside a training model stays so). */
static size_t count_modules(const tg_module *m)
{
	size_t n = 1;
	for (size_t i = 0; i < m->nchildren; i++)
		n += count_modules(m->children[i]);
	return n;
}

static void walk_modes(tg_module *m, bool *on, size_t *i, bool restore)
{
	if (restore)
		m->training = on[*i];
	else
		on[*i] = m->training;
	++*i;
	for (size_t k = 0; k < m->nchildren; k++)
		walk_modes(m->children[k], on, i, restore);
}

/* The modes of m's tree (malloc'd); NULL and TG_ENOMEM without memory. */
static bool *save_modes(tg_module *m, const char *who)
{
	bool *on = malloc(count_modules(m) * sizeof *on);
	if (!on) {
		tg_fail(m->ctx, TG_ENOMEM, "%s: out of memory for the modules' modes", who);
		return NULL;
	}
	size_t i = 0;
	walk_modes(m, on, &i, false);
	return on;
}

/* The modes of m's tree (malloc'd), then the tree in evaluation mode; NULL
 * and TG_ENOMEM without memory, the modes unchanged. */
static bool *enter_eval(tg_module *m, const char *who)
{
	bool *on = save_modes(m, who);
	if (on)
		tg_module_train(m, false);
	return on;
}

/* Gives each module of m's tree back its mode from enter_eval; frees on. */
static void leave_eval(tg_module *m, bool *on)
{
	size_t i = 0;
	walk_modes(m, on, &i, true);
	free(on);
}

/* "d1,d2,..": axes 1 to n - 1 of a batch shape s, a sample's */
static const char *sample_str(const int64_t *s, int n, char *buf, size_t size)
{
	buf[0] = '\0';
	for (int i = 1, o = 0; i < n && o < (int)size; i++)
		o += snprintf(buf + o, size - (size_t)o, i > 1 ? ",%lld" : "%lld", (long long)s[i]);
	return buf;
}

/* An optimizer over none of m's parameters (another model's, in the same
 * context) would let tg_fit train nothing, silently: TG_EARG when m lists
 * parameters and o updates none of them. A model that lists none (a custom
 * module keeping its own) is not checked. */
static int check_optim_fits(tg_ctx *ctx, const char *who, const tg_module *m, const tg_optim *o)
{
	size_t nm = tg_module_params(m, NULL, 0), no;
	tg_tensor *const *op = tg_optim_params_of(o, &no);
	if (!nm)
		return 0;
	tg_tensor **mp = malloc(nm * sizeof *mp);
	if (!mp) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory listing the model's parameters", who);
		return -1;
	}
	tg_module_params(m, mp, nm);
	bool shared = false;
	for (size_t i = 0; i < no && !shared; i++)
		for (size_t j = 0; j < nm && !shared; j++)
			shared = op[i] == mp[j];
	free(mp);
	if (shared)
		return 0;
	tg_fail(ctx, TG_EARG,
		"%s: the optimizer updates none of the model's %zu parameters (it holds %zu "
		"others); make it from tg_module_params of the model being trained",
		who, nm, no);
	return -1;
}

/* ds as batches in train's sample shape, when one of the two is flat rows
 * and the other shaped samples of their width (check_like): the model
 * takes the shape it trains on, a net of convolutions as well as one that
 * flattens. The copy shares ds's arrays. */
static const tg_dataset *as_train(tg_dataset *copy, const tg_dataset *train,
				  const tg_dataset *ds)
{
	if (!ds || (ds->ndim == 0) == (train->ndim == 0))
		return ds;
	*copy = *ds;
	copy->ndim = train->ndim;
	memcpy(copy->shape, train->shape, sizeof copy->shape);
	return copy;
}

/* A set evaluated beside train (which) must hold samples of train's width
 * (and shape, when both are shaped: flat rows beside images are batched in
 * train's shape, as_train) and as many targets each, or the model that
 * trains on one cannot take the other: found before the first step, not
 * after an epoch's updates. */
static int check_like(tg_ctx *ctx, const char *who, const tg_dataset *train,
		      const tg_dataset *ds, const char *which)
{
	int64_t a[1 + TG_SAMPLE_MAX_DIMS], b[1 + TG_SAMPLE_MAX_DIMS];
	int na = tg_dataset_batch_shape(train, 1, a), nb = tg_dataset_batch_shape(ds, 1, b);
	bool same = train->d == ds->d;
	for (int i = 1; same && train->ndim && ds->ndim && (na != nb || i < na); i++)
		same = na == nb && a[i] == b[i];
	if (!same) {
		char sa[96], sb[96];
		tg_fail(ctx, TG_ESHAPE,
			"%s: the %s set's samples are (%s), the train set's (%s): the model takes "
			"one shape",
			who, which, sample_str(b, nb, sb, sizeof sb), sample_str(a, na, sa, sizeof sa));
		return -1;
	}
	if (train->t && ds->t && train->tdim != ds->tdim) {
		tg_fail(ctx, TG_ESHAPE,
			"%s: the %s set has %lld targets a sample, the train set %lld: the model "
			"gives one number of outputs",
			who, which, (long long)ds->tdim, (long long)train->tdim);
		return -1;
	}
	return 0;
}

/* ---- evaluation ----------------------------------------------------------------- */

/* The first value of rows idx[0..n) of ds (rows first .. first + n - 1
 * when idx is NULL) that is not finite, said as "row R has feature F = V"
 * into buf; false when there is none. */
static bool bad_value(const tg_dataset *ds, const int64_t *idx, int64_t first, int64_t n,
		      char *buf, size_t size)
{
	for (int64_t k = 0; k < n; k++) {
		int64_t i = idx ? idx[k] : first + k;
		for (int64_t j = 0; j < ds->d; j++)
			if (!isfinite(ds->x[i * ds->d + j])) {
				snprintf(buf, size, "row %lld has feature %lld = %g", (long long)i,
					 (long long)j, (double)ds->x[i * ds->d + j]);
				return true;
			}
		for (int64_t j = 0; ds->t && j < ds->tdim; j++)
			if (!isfinite(ds->t[i * ds->tdim + j])) {
				snprintf(buf, size, "row %lld has target %lld = %g", (long long)i,
					 (long long)j, (double)ds->t[i * ds->tdim + j]);
				return true;
			}
	}
	return false;
}


/* The error of the model's forward pass on rows of ds, said again naming
 * the call and the set: a model that does not take the set's rows is the
 * usual cause, and the layer's own message alone does not say which call
 * met it. */
static void forward_failed(tg_ctx *ctx, const char *who, const char *which, const tg_dataset *ds)
{
	tg_fail_again(ctx, "%s: the model's forward pass on the %s set's rows (%lld features) failed",
		      who, which, (long long)ds->d);
}

/* tg_score, its errors said by who of its which set */
static int score(tg_module *m, const tg_task *task, const tg_dataset *ds, int64_t batch,
		 tg_scores *out, int64_t *confusion, const char *who, const char *which)
{
	tg_ctx *ctx = m ? m->ctx : NULL;
	if (out)
		*out = (tg_scores){ .loss = NAN, .acc = NAN, .mse = NAN, .rmse = NAN, .r2 = NAN };
	if (!ctx || !tg_ok(ctx))
		return -1;
	if (!task)
		task = &classify_task;
	if (check_task(ctx, who, task) || check_set(ctx, who, task, ds, which))
		return -1;
	int64_t n = ds->n, d = ds->d, w = ds->tdim;
	if (batch <= 0)
		batch = 1000;
	if (batch > n)
		batch = n;
	tally ty;
	if (tally_init(ctx, who, &ty, batch, is_regression(task->loss) ? w : 0, ds)) {
		tally_free(&ty);
		return -1;
	}
	tg_dtype dt = module_dtype(m);
	bool *modes = enter_eval(m, who);
	if (!modes) {
		tally_free(&ty);
		return -1;
	}
	bool grad = tg_set_grad_enabled(ctx, false);
	for (int64_t start = 0; start < n; start += batch) {
		int64_t nb = n - start < batch ? n - start : batch;
		int64_t shape[1 + TG_SAMPLE_MAX_DIMS];
		int nd = tg_dataset_batch_shape(ds, nb, shape);
		tg_tensor *x = tg_from_f32(ctx, dt, nd, shape, ds->x + start * d);
		tg_tensor *labels = ds->y ? tg_from_i32(ctx, 1, (int64_t[]){ nb }, ds->y + start)
					  : NULL;
		tg_tensor *target = ds->t ? tg_from_f32(ctx, dt, 2, (int64_t[]){ nb, w },
							ds->t + start * w)
					  : NULL;
		tg_tensor *o = tg_forward(m, x);
		if (!o) {
			forward_failed(ctx, who, which, ds);
			break;
		}
		tg_tensor *l = task_loss(task, who, o, labels, target);
		if (!l)
			break;
		char bad[128];
		double lv = tg_item(l);
		if (!isfinite(lv) && bad_value(ds, NULL, start, nb, bad, sizeof bad)) {
			tg_fail(ctx, TG_EARG, "%s: the loss is %g: the %s set's %s; data must be finite",
				who, isnan(lv) ? NAN : lv, which, bad); /* "nan", not "-nan" */
			break;
		}
		if (start == 0 && confusion) {
			ty.k = confusion_k(task, ds, tg_shape(o)[1]);
			ty.confusion = ty.k ? confusion : NULL;
			if (ty.k)
				memset(confusion, 0, (size_t)(ty.k * ty.k) * sizeof *confusion);
		}
		if (tally_add(&ty, task, tg_item(l), nb, o, ds->y ? ds->y + start : NULL, target))
			break;
		tg_reset(ctx);
	}
	tg_reset(ctx);
	leave_eval(m, modes);
	tg_set_grad_enabled(ctx, grad);
	if (out && tg_ok(ctx))
		tally_scores(&ty, task, out);
	tally_free(&ty);
	return tg_ok(ctx) ? 0 : -1;
}

int tg_score(tg_module *m, const tg_task *task, const tg_dataset *ds, int64_t batch,
	     tg_scores *out, int64_t *confusion)
{
	return score(m, task, ds, batch, out, confusion, "tg_score", "evaluation");
}

/* The MLP's checks, with its spec in the messages: its input width must be
 * ds's D and its K outputs must cover ds's labels. */
static int check_fit(tg_ctx *ctx, const char *who, const tg_mlp *m, const tg_dataset *ds,
		     const char *which)
{
	if (!ds || !ds->x || ds->n < 1 || (!ds->y && !ds->t)) {
		tg_fail(ctx, TG_EARG, "%s: the %s set is empty or NULL", who, which);
		return -1;
	}
	if (!ds->y) { /* a set of float targets is not empty: it is another task's */
		tg_fail(ctx, TG_EARG,
			"%s: the %s set has float targets; the net is a classifier of class "
			"labels (tg_fit and tg_score take a task for float targets)",
			who, which);
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

int tg_evaluate(tg_mlp *m, const tg_dataset *ds, int64_t batch, double *loss, double *acc,
		int64_t *confusion)
{
	tg_ctx *ctx = tg_mlp_ctx(m);
	if (!ctx || !tg_ok(ctx))
		return -1;
	if (check_fit(ctx, "tg_evaluate", m, ds, "evaluation"))
		return -1;
	tg_scores s;
	if (tg_score(tg_mlp_module(m), NULL, ds, batch, &s, confusion))
		return -1;
	if (loss)
		*loss = s.loss;
	if (acc)
		*acc = s.acc;
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
			tg_c_fprintf(f, "  %.3f\n", (double)confusion[(int64_t)i * k + i] / (double)row);
		else
			fprintf(f, "  -\n");
	}
	if (total)
		tg_c_fprintf(f, "accuracy %.4f (%lld of %lld)\n", (double)right / (double)total,
			(long long)right, (long long)total);
}

/* ---- one run of the loop ------------------------------------------------------------ */

typedef struct run {
	tg_ctx *ctx;
	const char *who;            /* "tg_fit" or "tg_train", for messages */
	tg_module *m;
	tg_optim *o;
	tg_task task;
	const tg_dataset *train;
	const tg_dataset *val;      /* may be NULL */
	const tg_dataset *test;     /* may be NULL */
	tg_dataset val_as, test_as; /* val and test in train's sample shape (as_train) */
	tg_train_opts opts;
	tg_dtype dt;
	int64_t batch;              /* rows the batcher draws a step (all ranks) */
	int64_t per_epoch;          /* steps in a full epoch */
	int64_t total;              /* steps planned */
	int64_t epochs;             /* epochs planned */
	tally tr;                   /* the current epoch's running figures */
	int64_t *confusion;         /* (K,K) of the latest test evaluation, or NULL */
	int64_t *own;               /* confusion when the caller gave none */
	int64_t k;                  /* K of the confusion matrix, 0: none */
	FILE *log;
	double log_t0;              /* the log's seconds before this call (a resumed run) */
	tg_progress progress;
	double t0;                  /* when training began */
	double first_loss;          /* of the first step: the divergence check's reference */
	bool have_first;            /* first_loss is set (the call's first step ran) */
	bool told;                  /* under dist: the ranks compared their runs */
	bool started;               /* the loop began */
	double drawn_at;            /* when progress was last shown */
	bool drawn;                 /* a TTY progress line is on screen */
	double best_val;            /* the lowest validation loss so far */
	int64_t best_epoch;         /* its epoch */
	/* the current epoch */
	double epoch_t0;
	int64_t epoch_steps;
	/* the model's state tensors (running statistics) and their values
	 * before the current step (state_save) */
	tg_tensor **state;
	size_t nstate;
	unsigned char *state_before;
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

/* A TTY line is redrawn every 0.1 s; plain lines come every progress_every
 * seconds, the first after one second (or progress_every, if shorter), so
 * a piped run shows its pace early. */
static void show_progress(run *r, int64_t epoch, int64_t it)
{
	if (r->progress == TG_PROGRESS_OFF)
		return;
	double t = now();
	double every = r->progress == TG_PROGRESS_TTY ? 0.1 : r->opts.progress_every;
	if (r->progress == TG_PROGRESS_LINES && r->drawn_at == r->t0 && every > 1)
		every = 1;
	if (t - r->drawn_at < every)
		return;
	r->drawn_at = t;
	double dt = t - r->epoch_t0;
	double rate = dt > 0 ? (double)r->epoch_steps / dt : 0;
	double eta = rate > 0 ? (double)(r->total - it) / rate : 0;
	long eta_s = (long)(eta + 0.5);
	double loss = r->tr.seen ? r->tr.loss_sum / (double)r->tr.seen : NAN;
	const char *lead = r->progress == TG_PROGRESS_TTY ? "\r\033[K" : "";
	const char *tail = r->progress == TG_PROGRESS_TTY ? "" : "\n";
	tg_c_fprintf(stderr, "%sepoch %lld/%lld  iter %lld/%lld  loss %.4f  %.0f it/s  ETA %ld:%02ld%s",
		lead, (long long)epoch, (long long)r->epochs, (long long)it, (long long)r->total,
		loss, rate, eta_s / 60, eta_s % 60, tail);
	fflush(stderr);
	r->drawn = r->progress == TG_PROGRESS_TTY;
}

/* ---- the CSV log ------------------------------------------------------------------------ */

static const char log_header[] =
	"epoch,iter,train_loss,train_acc,test_loss,test_acc,seconds,val_loss,val_acc,"
	"train_mse,train_rmse,train_r2,val_mse,val_rmse,val_r2,test_mse,test_rmse,test_r2\n";

static int log_fail(run *r, const char *why)
{
	tg_fail(r->ctx, TG_EIO, "%s: resuming the log %s: %s", r->who, r->opts.log_path, why);
	fclose(r->log);
	r->log = NULL;
	return -1;
}

/* True if line is the log's header but for a CR before its LF. */
static bool crlf_header(const char *line, ssize_t len)
{
	size_t h = sizeof log_header - 1;
	return (size_t)len == h + 1 && line[len - 2] == '\r' && line[len - 1] == '\n' &&
	       !memcmp(line, log_header, h - 1);
}

/* Resuming into a log that has rows: those of the epochs done stay and the
 * new rows follow them. Rows past start_epoch (a run stopped after its
 * log's row and before its save) are cut, as those epochs run again. A log
 * with another header is not mixed with this one's rows, and one whose rows
 * do not run on to start_epoch (rows lost, a gap) is refused rather than
 * continued with epochs missing. */
static int log_resume(run *r)
{
	FILE *f = r->log;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len = getline(&line, &cap, f);
	int rc = 0;
	long long start = (long long)r->opts.start_epoch;
	if (len < 0 && ferror(f))
		rc = log_fail(r, strerror(errno));
	else if (len >= 0 && crlf_header(line, len))
		rc = log_fail(r, "its lines end in CR LF, and this log's rows in LF alone; convert "
				 "it (dos2unix) or give another log");
	else if (len >= 0 && strcmp(line, log_header))
		rc = log_fail(r, "its first line is not this log's header; give another log "
				 "rather than mixing two kinds of rows");
	bool header = len >= 0;
	long keep = rc || len < 0 ? 0 : ftell(f);
	long long last = -1; /* the last row kept */
	char why[256];
	while (!rc && len >= 0 && (len = getline(&line, &cap, f)) >= 0) {
		char *end;
		long long epoch = strtoll(line, &end, 10);
		if (line[len - 1] != '\n')
			break; /* a row cut short */
		if (end == line || *end != ',') {
			rc = log_fail(r, "a row does not start with its epoch");
			break;
		}
		if (epoch > start) /* an epoch that runs again: cut from here */
			break;
		if (last >= 0 && epoch != last + 1) {
			snprintf(why, sizeof why, "its rows go from epoch %lld to epoch %lld; give "
				 "another log rather than one with epochs missing", last, epoch);
			rc = log_fail(r, why);
			break;
		}
		last = epoch;
		keep = ftell(f);
		/* the seconds go on from the last row kept */
		const char *c = end;
		for (int field = 1; c && field < 6; field++)
			c = strchr(c + 1, ',');
		double sec = c ? tg_c_strtod(c + 1, NULL) : 0;
		r->log_t0 = isfinite(sec) && sec > 0 ? sec : 0;
	}
	free(line);
	if (rc)
		return -1;
	/* a log begun by an earlier resume may start after start_epoch (its
	 * rows are then cut) or hold its header alone (that resume stopped
	 * before its first row), but one with rows up to an epoch before it
	 * has lost some */
	if (header && last >= 0 && last < start) {
		snprintf(why, sizeof why, "its last row is of epoch %lld, but the checkpoint is "
			 "of epoch %lld: the rows of epochs %lld to %lld are missing; give another "
			 "log", last, start, last + 1, start);
		return log_fail(r, why);
	}
	if (ferror(f) || keep < 0 || fflush(f) || ftruncate(fileno(f), keep) ||
	    fseek(f, keep, SEEK_SET))
		return log_fail(r, strerror(errno));
	if (keep == 0)
		fputs(log_header, f);
	return 0;
}

/* True when st is the file of standard output or error (--log
 * /dev/stdout with the output sent to a file). */
static bool is_std_output(const struct stat *st)
{
	struct stat o;
	for (int fd = STDOUT_FILENO; fd <= STDERR_FILENO; fd++)
		if (fstat(fd, &o) == 0 && o.st_dev == st->st_dev && o.st_ino == st->st_ino)
			return true;
	return false;
}

/* True when the regular file at path has bytes and its first line is not
 * the log's header (with LF or CR LF): a file of something else, which a
 * new log would overwrite. Standard output's file is written as asked. */
static bool holds_other(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode) || st->st_size == 0 || is_std_output(st))
		return false;
	FILE *f = fopen(path, "r");
	if (!f)
		return false; /* the open for writing says why */
	char *line = NULL;
	size_t cap = 0;
	ssize_t len = getline(&line, &cap, f);
	bool other = len < 0 || (strcmp(line, log_header) && !crlf_header(line, len));
	free(line);
	fclose(f);
	return other;
}

/* The log's file, opened for writing (resume: for reading and writing,
 * not truncated). A FIFO is opened without waiting: with no reader that
 * is ENXIO at once, not a run that hangs before its first step. */
static FILE *log_file(const char *path, bool resume)
{
	int fd = open(path, (resume ? O_RDWR : O_WRONLY | O_CREAT | O_TRUNC) | O_NONBLOCK | O_CLOEXEC,
		      0666);
	if (fd < 0)
		return NULL;
	int fl = fcntl(fd, F_GETFL);
	FILE *f = fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0
			  ? fdopen(fd, resume ? "r+" : "w")
			  : NULL;
	if (!f) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return f;
}

/* A new log, or, when training resumes, the log of the epochs before. */
static int log_open(run *r)
{
	const char *path = r->opts.log_path;
	if (!path)
		return 0;
	if (!*path) {
		tg_fail(r->ctx, TG_EARG, "%s: the log's path is empty (NULL: no log)", r->who);
		return -1;
	}
	/* only a regular file is read back: a pipe or a terminal is written */
	struct stat st;
	bool there = stat(path, &st) == 0;
	bool resume = r->opts.start_epoch > 0 && there && S_ISREG(st.st_mode);
	if (!resume && there && holds_other(path, &st)) {
		tg_fail(r->ctx, TG_EIO,
			"%s: the log %s is a file of something else (its first line is not a "
			"log's header); give another path, or remove the file",
			r->who, path);
		return -1;
	}
	r->log = log_file(path, resume);
	if (!r->log) {
		tg_fail(r->ctx, TG_EIO, "%s: cannot write the log %s: %s", r->who, path,
			errno == ENXIO ? "it is a FIFO that no process reads" : strerror(errno));
		return -1;
	}
	if (resume)
		return log_resume(r);
	fputs(log_header, r->log);
	return 0;
}

/* A CSV field: empty for NAN (not measured); nine significant digits, so
 * that a small loss (an MSE of 1e-8) keeps its figures. */
static void log_field(FILE *f, double v, const char *sep)
{
	if (isnan(v))
		fprintf(f, "%s", sep);
	else
		tg_c_fprintf(f, "%.9g%s", v, sep);
}

/* The epoch's row, written through: a row that cannot be written (a full
 * disk) stops the run at this epoch, as a failed save does, rather than
 * after every epoch still to come. 0 ok, -1 on error. */
static int log_row(run *r, const tg_metrics *mt)
{
	FILE *f = r->log;
	if (!f)
		return 0;
	fprintf(f, "%lld,%lld,", (long long)mt->epoch, (long long)mt->iter);
	log_field(f, mt->train_loss, ",");
	log_field(f, mt->train_acc, ",");
	log_field(f, mt->test_loss, ",");
	log_field(f, mt->test_acc, ",");
	tg_c_fprintf(f, "%.3f,", r->log_t0 + mt->seconds);
	log_field(f, mt->val_loss, ",");
	log_field(f, mt->val_acc, ",");
	const double v[] = { mt->train_mse, mt->train_rmse, mt->train_r2, mt->val_mse, mt->val_rmse,
			     mt->val_r2, mt->test_mse, mt->test_rmse, mt->test_r2 };
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
		log_field(f, v[i], i + 1 < sizeof v / sizeof v[0] ? "," : "\n");
	errno = 0;
	if (fflush(f) == 0 && !ferror(f))
		return 0;
	tg_fail(r->ctx, TG_EIO, "%s: writing the log %s failed at epoch %lld: %s", r->who,
		r->opts.log_path, (long long)mt->epoch, strerror(errno ? errno : EIO));
	return -1;
}

static int log_close(run *r)
{
	if (!r->log)
		return 0;
	bool bad = ferror(r->log);
	bad |= fclose(r->log) != 0;
	r->log = NULL;
	if (bad)
		tg_fail(r->ctx, TG_EIO, "%s: writing the log %s failed: %s", r->who, r->opts.log_path,
			strerror(errno));
	return bad ? -1 : 0;
}

/* ---- a step ------------------------------------------------------------------------------ */

/* The error of a step whose forward or loss failed on an epoch's short last
 * batch, said again with that: a batch of other rows than the ones asked for
 * (a batch norm refuses one row) is the likely cause, and drop_last the
 * remedy. */
static void short_batch_failed(run *r, const tg_batch *b, int64_t epoch, int64_t it)
{
	tg_fail_again(r->ctx,
		      "%s: epoch %lld, step %lld, the epoch's last batch of %lld row%s (%lld "
		      "samples, batch %lld; drop_last leaves it out)",
		      r->who, (long long)epoch, (long long)it + 1, (long long)b->total,
		      b->total == 1 ? "" : "s", (long long)r->train->n, (long long)r->batch);
}

/* The bytes of t's values. */
static size_t bytes_of(const tg_tensor *t)
{
	tg_dtype dt = tg_dtype_of(t);
	return tg_numel(t) * (dt == TG_F64 || dt == TG_I64 ? 8 : 4);
}

/* The model's state: the tensors a forward pass may change that are not
 * parameters (a batch norm's running statistics, a custom module's
 * tg_keep'd state). A step that fails after its forward (a non-finite or a
 * diverged loss) puts them back as they were before it, as it makes no
 * update: a model stopped by a bad batch evaluates as before the batch. */
static int state_init(run *r)
{
	size_t n = tg_module_tensors(r->m, NULL, 0), bytes = 0;
	if (!n)
		return 0;
	r->state = malloc(n * sizeof *r->state);
	if (!r->state)
		goto oom;
	tg_module_tensors(r->m, r->state, n);
	for (size_t i = 0; i < n; i++)
		if (!tg_is_param(r->state[i])) {
			r->state[r->nstate++] = r->state[i];
			bytes += bytes_of(r->state[i]);
		}
	if (!r->nstate)
		return 0;
	r->state_before = malloc(bytes);
	if (r->state_before)
		return 0;
oom:
	tg_fail(r->ctx, TG_ENOMEM, "%s: out of memory for the model's state", r->who);
	return -1;
}

static void state_save(run *r)
{
	unsigned char *p = r->state_before;
	for (size_t i = 0; i < r->nstate; i++) {
		size_t size = bytes_of(r->state[i]);
		memcpy(p, tg_data(r->state[i]), size);
		p += size;
	}
}

static void state_restore(run *r)
{
	const unsigned char *p = r->state_before;
	for (size_t i = 0; i < r->nstate; i++) {
		size_t size = bytes_of(r->state[i]);
		void *to = tg_data_mut(r->state[i]);
		if (to)
			memcpy(to, p, size);
		p += size;
	}
}

/* One training step on b: 0 made, -1 failed before the update was made
 * (the model's state as before it), 1 made and then failed by the on_step
 * callback's error. Forward, loss, zero_grad, backward, update, reset. The
 * loss is checked before the update: a non-finite loss never reaches the
 * parameters. A learning-rate schedule sets the rate before tg_optim_step.
 * Under dist the loss checked is the global batch's, the same on every
 * rank, and backward starts from this rank's share of it (its rows over the
 * global batch's): the gradients summed over the ranks are then the global
 * batch's mean. */
static int step(run *r, const tg_batch *b, int64_t epoch, int64_t it)
{
	tg_ctx *ctx = r->ctx;
	tg_dist *dist = r->opts.dist;
	if (dist && tg_dist_hooks_of(dist)->step_begin(dist))
		return -1;
	state_save(r);
	tg_tensor *out = tg_forward(r->m, b->x);
	tg_tensor *loss = task_loss(&r->task, r->who, out, b->labels, b->t);
	if (!tg_ok(ctx) && b->total < r->batch)
		short_batch_failed(r, b, epoch, it);
	double l = loss ? tg_item(loss) : NAN, mine = l, seed = 1;
	if (dist && tg_dist_hooks_of(dist)->loss(dist, l, b->n, !tg_ok(ctx), &l, &seed))
		return -1;
	/* the rows of the global batch, whose loss l is: this rank's are rows
	 * [total rank / size, total (rank + 1) / size) of them (tg_batcher_shard),
	 * so every rank finds a bad value any rank's rows hold, and all say so */
	const int64_t *idx = b->idx;
	int64_t rows = b->n;
	if (dist && idx) {
		const tg_dist_hooks *dh = tg_dist_hooks_of(dist);
		idx -= b->total * dh->rank(dist) / dh->size(dist);
		rows = b->total;
	}
	char bad[128];
	if (tg_ok(ctx) && !isfinite(l) && bad_value(r->train, idx, 0, rows, bad, sizeof bad))
		tg_fail(ctx, TG_EARG,
			"%s: the loss is %g at epoch %lld, step %lld: the train set's %s; data "
			"must be finite",
			r->who, l, (long long)epoch, (long long)it + 1, bad);
	else if (tg_ok(ctx) && !isfinite(l) && !r->have_first)
		/* no update of this run made it: the learning rate is not the cause */
		tg_fail(ctx, TG_EANOMALY,
			"%s: the loss is %g at epoch %lld, step %lld, before this run's first "
			"update: the parameters it starts from (their initialisation or the "
			"values loaded) or the model's settings give it; anomaly mode finds the "
			"op that made it",
			r->who, l, (long long)epoch, (long long)it + 1);
	else if (tg_ok(ctx) && !isfinite(l))
		tg_fail(ctx, TG_EANOMALY,
			"%s: the loss is %g at epoch %lld, step %lld; try a smaller learning "
			"rate, or anomaly mode to find the op that made it",
			r->who, l, (long long)epoch, (long long)it + 1);
	if (tg_ok(ctx) && !r->have_first) {
		r->first_loss = l;
		r->have_first = true;
	}
	if (tg_ok(ctx) && !r->opts.no_divergence_check && l > TG_TRAIN_DIVERGENCE_FLOOR &&
	    l > TG_TRAIN_DIVERGENCE * r->first_loss)
		tg_fail(ctx, TG_EANOMALY,
			"%s: the loss diverged: %.4g at epoch %lld, step %lld, more than %g "
			"times the first step's %.4g; try a smaller learning rate (the check is off "
			"with tg_train_opts.no_divergence_check, train --no-divergence-check)",
			r->who, l, (long long)epoch, (long long)it + 1, TG_TRAIN_DIVERGENCE, r->first_loss);
	if (!tg_ok(ctx)) {
		state_restore(r);
		/* under dist every rank stops here alike, as the loss is the global
		 * batch's: none waits for another, and the ranks may finalise */
		if (dist)
			tg_dist_hooks_of(dist)->told(dist);
		return -1;
	}
	if (!r->opts.full_train_eval)
		tally_add(&r->tr, &r->task, mine, b->n, out, b->y, b->t);
	tg_optim_zero_grad(r->o);
	if (!dist) {
		tg_backward(loss);
	} else {
		if (tg_ok(ctx))
			tg_backward_ex(loss, tg_scalar(ctx, tg_dtype_of(loss), seed), 0);
		if (tg_dist_hooks_of(dist)->step_end(dist, !tg_ok(ctx)))
			return -1;
	}
	tg_optim_step(r->o);
	tg_reset(ctx);
	if (!tg_ok(ctx)) {
		state_restore(r);
		return -1;
	}
	/* the step is made: counted even if the callback then sets an error */
	if (r->opts.on_step)
		r->opts.on_step(it + 1, l, r->opts.step_user);
	return tg_ok(ctx) ? 0 : 1;
}

/* Under dist: the epoch's running figures summed over the ranks, so they
 * are the global batches'. */
static int tally_sum(run *r)
{
	tally *ty = &r->tr;
	size_t n = 5 + 2 * (size_t)ty->tdim;
	double *v = malloc(n * sizeof *v);
	if (!v) {
		tg_fail(r->ctx, TG_ENOMEM, "%s: out of memory", r->who);
		return -1;
	}
	v[0] = ty->loss_sum, v[1] = (double)ty->seen, v[2] = (double)ty->right;
	v[3] = (double)ty->judged, v[4] = ty->sse;
	for (int64_t j = 0; j < ty->tdim; j++)
		v[5 + j] = ty->sy[j], v[5 + ty->tdim + j] = ty->syy[j];
	int rc = tg_dist_hooks_of(r->opts.dist)->sum(r->opts.dist, v, n);
	if (rc == 0) {
		ty->loss_sum = v[0], ty->seen = (int64_t)v[1], ty->right = (int64_t)v[2];
		ty->judged = (int64_t)v[3], ty->sse = v[4];
		for (int64_t j = 0; j < ty->tdim; j++)
			ty->sy[j] = v[5 + j], ty->syy[j] = v[5 + ty->tdim + j];
	}
	free(v);
	return rc;
}

/* ---- an epoch's end ---------------------------------------------------------------------- */

static void put_scores(const tg_scores *s, double *loss, double *acc, double *mse, double *rmse,
		       double *r2)
{
	*loss = s->loss;
	*acc = s->acc;
	*mse = s->mse;
	*rmse = s->rmse;
	*r2 = s->r2;
}

/* " loss 0.1234 acc 0.9876" or " loss 0.1234 R2 0.5678" */
static void print_scores(FILE *f, const char *which, bool regression, double loss, double acc,
			 double r2)
{
	if (regression)
		tg_c_fprintf(f, "  %s loss %.4f R2 %.4f", which, loss, r2);
	else
		tg_c_fprintf(f, "  %s loss %.4f acc %.4f", which, loss, acc);
}

static int end_epoch(run *r, tg_metrics *mt)
{
	tg_scores s;
	int64_t eb = r->opts.eval_batch;
	/* every rank evaluates with rank 0's buffers: the same figures */
	if (r->opts.dist && (tg_dist_hooks_of(r->opts.dist)->sync_buffers(r->opts.dist) ||
			     (!r->opts.full_train_eval && tally_sum(r))))
		return -1;
	if (r->opts.full_train_eval) {
		if (score(r->m, &r->task, r->train, eb, &s, NULL, r->who, "train"))
			return -1;
	} else {
		tally_scores(&r->tr, &r->task, &s);
	}
	put_scores(&s, &mt->train_loss, &mt->train_acc, &mt->train_mse, &mt->train_rmse,
		   &mt->train_r2);
	s = (tg_scores){ .loss = NAN, .acc = NAN, .mse = NAN, .rmse = NAN, .r2 = NAN };
	if (r->val && score(r->m, &r->task, r->val, eb, &s, NULL, r->who, "validation"))
		return -1;
	put_scores(&s, &mt->val_loss, &mt->val_acc, &mt->val_mse, &mt->val_rmse, &mt->val_r2);
	s = (tg_scores){ .loss = NAN, .acc = NAN, .mse = NAN, .rmse = NAN, .r2 = NAN };
	if (r->test && score(r->m, &r->task, r->test, eb, &s, r->confusion, r->who, "test"))
		return -1;
	put_scores(&s, &mt->test_loss, &mt->test_acc, &mt->test_mse, &mt->test_rmse,
		   &mt->test_r2);
	mt->seconds = now() - r->t0;
	if (r->val && mt->val_loss < r->best_val) {
		r->best_val = mt->val_loss;
		r->best_epoch = mt->epoch;
	}
	mt->best_val_loss = r->val ? r->best_val : NAN;
	mt->best_epoch = r->best_epoch;
	if (log_row(r, mt))
		return -1;
	clear_progress(r);
	FILE *f = r->opts.out;
	if (f) {
		bool reg = is_regression(r->task.loss);
		int w = digits(r->epochs);
		fprintf(f, "epoch %*lld  iter %*lld", w, (long long)mt->epoch, digits(r->total),
			(long long)mt->iter);
		print_scores(f, "train", reg, mt->train_loss, mt->train_acc, mt->train_r2);
		if (r->val)
			print_scores(f, "val", reg, mt->val_loss, mt->val_acc, mt->val_r2);
		if (r->test)
			print_scores(f, "test", reg, mt->test_loss, mt->test_acc, mt->test_r2);
		tg_c_fprintf(f, "  %.1f s\n", mt->seconds);
		fflush(f);
	}
	return 0;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static int plan(run *r)
{
	const tg_train_opts *o = &r->opts;
	int64_t ranks = o->dist ? tg_dist_hooks_of(o->dist)->size(o->dist) : 1;
	int64_t n = r->train->n, b; /* the global batch */
	/* a batch too large to count is larger than any data set: all of it */
	if (__builtin_mul_overflow(o->batch, ranks, &b))
		b = INT64_MAX;
	/* the first option that is wrong, said after all of them */
	const char *why = b < 1                          ? "batch must be >= 1"
			  : o->eval_batch < 0            ? "eval_batch must be >= 0 (0: 1000)"
			  : o->iters < 0                 ? "iters must be >= 0"
			  : o->iters == 0 && o->epochs < 1 ? "epochs must be >= 1 when iters is 0"
			  : !(o->progress_every >= 0)    ? "progress_every must be >= 0"
			  : (unsigned)o->progress > TG_PROGRESS_LINES ? "progress is no tg_progress"
			  : o->patience < 0              ? "patience must be >= 0"
			  : o->start_epoch < 0           ? "start_epoch must be >= 0"
			  : o->start_iter < 0            ? "start_iter must be >= 0"
			  : o->start_best_epoch < 0 || o->start_best_epoch > o->start_epoch
				  ? "start_best_epoch must lie in [0, start_epoch]"
			  : o->start_best_epoch > 0 && isnan(o->start_best_val)
				  ? "start_best_val must be a number"
				  : NULL;
	if (why) {
		tg_fail(r->ctx, TG_EARG,
			"%s: bad options: batch %lld, epochs %lld, iters %lld, eval_batch "
			"%lld, progress %d every %g s, patience %lld, start_epoch %lld, "
			"start_iter %lld, start_best_epoch %lld (loss %g): %s",
			r->who, (long long)b, (long long)o->epochs, (long long)o->iters,
			(long long)o->eval_batch, (int)o->progress, o->progress_every,
			(long long)o->patience, (long long)o->start_epoch,
			(long long)o->start_iter, (long long)o->start_best_epoch,
			o->start_best_val, why);
		return -1;
	}
	if (o->start_best_epoch > 0) {
		r->best_val = o->start_best_val;
		r->best_epoch = o->start_best_epoch;
	}
	if (o->schedule && tg_schedule_check(r->ctx, o->schedule))
		return -1;
	if (o->patience > 0 && !r->val) {
		tg_fail(r->ctx, TG_EARG,
			"%s: early stopping (patience %lld) needs a validation set", r->who,
			(long long)o->patience);
		return -1;
	}
	/* n / b rounded up is written without n + b - 1, which overflows for
	 * the largest batches */
	if (o->replace)
		r->per_epoch = n / b > 1 ? n / b : 1;
	else
		r->per_epoch = n / b + (!o->drop_last && n % b);
	if (r->per_epoch < 1) {
		tg_fail(r->ctx, TG_EARG, "%s: batch %lld > %lld samples with drop_last", r->who,
			(long long)b, (long long)n);
		return -1;
	}
	/* a run resumes where an epoch ended: the loop counts epochs and steps
	 * on from there, and from another step it would run past the epochs
	 * asked for or cut the last one short */
	int64_t done;
	bool over = __builtin_mul_overflow(o->start_epoch, r->per_epoch, &done);
	if (over || done != o->start_iter) {
		char at[64] = "past the last step a count holds";
		if (!over)
			snprintf(at, sizeof at, "at step %lld", (long long)done);
		tg_fail(r->ctx, TG_EARG,
			"%s: start_epoch %lld and start_iter %lld disagree: an epoch is %lld "
			"step%s (%lld samples, batch %lld), so %lld epoch%s end%s %s; a run "
			"resumes at the end of an epoch",
			r->who, (long long)o->start_epoch, (long long)o->start_iter,
			(long long)r->per_epoch, r->per_epoch == 1 ? "" : "s", (long long)n,
			(long long)b, (long long)o->start_epoch, o->start_epoch == 1 ? "" : "s",
			o->start_epoch == 1 ? "s" : "", at);
		return -1;
	}
	int64_t last = o->replace || o->drop_last ? 0 : n % b;
	if (last && last < ranks) {
		tg_fail(r->ctx, TG_EARG,
			"%s: the last batch of an epoch has %lld row%s, fewer than the %lld ranks; "
			"drop it (drop_last) or choose another batch",
			r->who, (long long)last, last == 1 ? "" : "s", (long long)ranks);
		return -1;
	}
	if (o->iters > 0)
		r->total = o->iters;
	else if (__builtin_mul_overflow(o->epochs, r->per_epoch, &r->total)) {
		tg_fail(r->ctx, TG_EARG,
			"%s: %lld epochs of %lld steps are more than %lld steps; give fewer "
			"epochs",
			r->who, (long long)o->epochs, (long long)r->per_epoch,
			(long long)INT64_MAX);
		return -1;
	}
	r->epochs = r->total / r->per_epoch + (r->total % r->per_epoch != 0);
	/* without replacement a batch larger than the data set is all of it */
	r->batch = !o->replace && b > n ? n : b;
	r->progress = o->progress;
	if (r->progress == TG_PROGRESS_AUTO)
		r->progress = isatty(fileno(stderr)) ? TG_PROGRESS_TTY : TG_PROGRESS_LINES;
	return 0;
}

/* Early stopping: patience epochs in a row without a validation loss below
 * the best so far end the run (the model stays as the last epoch left it). */
static bool out_of_patience(run *r, tg_metrics *mt)
{
	if (r->opts.patience <= 0 || mt->epoch - r->best_epoch < r->opts.patience)
		return false;
	mt->stopped_early = true;
	if (r->opts.out) {
		tg_c_fprintf(r->opts.out,
			"early stop: the validation loss has not improved for %lld epoch%s (best "
			"%.4f at epoch %lld)\n",
			(long long)(mt->epoch - r->best_epoch),
			mt->epoch - r->best_epoch == 1 ? "" : "s", r->best_val,
			(long long)r->best_epoch);
		fflush(r->opts.out);
	}
	return true;
}

/* The rate for the epoch after `epoch` completed ones: plateau is fed the
 * loss measured after the last of them (NAN: none). */
static void set_rate(run *r, int64_t epoch, double loss)
{
	if (r->opts.schedule)
		tg_optim_set_lr(r->o, tg_schedule_lr(r->opts.schedule, epoch, loss));
}

static int loop(run *r, tg_batcher *bt, tg_metrics *mt)
{
	int64_t it = r->opts.start_iter, epoch = r->opts.start_epoch;
	mt->epoch = epoch;
	mt->iter = it;
	/* a run taken up after its patience ran out has ended: no epoch more */
	if (r->opts.start_best_epoch > 0) {
		mt->best_val_loss = r->best_val;
		mt->best_epoch = r->best_epoch;
		if (out_of_patience(r, mt))
			return 0;
	}
	set_rate(r, epoch, NAN);
	for (;;) {
		r->epoch_t0 = now();
		r->epoch_steps = 0;
		tally_clear(&r->tr);
		while (it < r->total && !(r->opts.replace && r->epoch_steps == r->per_epoch)) {
			tg_batch b;
			/* a batch that draws from the generator (an epoch's
			 * permutation, or draws with replacement) draws rank 0's
			 * numbers on every rank */
			bool draws = r->opts.dist && (r->opts.replace || r->epoch_steps == 0);
			if (draws && tg_dist_hooks_of(r->opts.dist)->sync_rng(r->opts.dist))
				return -1;
			bool got = tg_batch_next(bt, r->dt, &b);
			if (draws)
				tg_dist_hooks_of(r->opts.dist)->fork_rng(r->opts.dist);
			if (!got) {
				if (!tg_ok(r->ctx))
					return -1;
				break; /* the end of a shuffled epoch */
			}
			int made = step(r, &b, epoch + 1, it);
			if (made < 0)
				return -1;
			it++;
			r->epoch_steps++;
			mt->iter = it;
			if (made) /* on_step set an error after the step */
				return -1;
			show_progress(r, epoch + 1, it);
		}
		if (r->epoch_steps == 0)
			return 0;
		mt->epoch = ++epoch;
		bool evaluated = end_epoch(r, mt) == 0, go = false;
		if (evaluated) {
			/* the next epoch's rate, before on_epoch so a checkpoint saved
			 * there holds the schedule's position for the epochs that follow */
			set_rate(r, epoch, r->val ? mt->val_loss : mt->test_loss);
			go = !r->opts.on_epoch || r->opts.on_epoch(mt, r->opts.user);
		}
		if (r->opts.dist) { /* one rank's stop or failure (a save) stops all */
			int all = tg_dist_hooks_of(r->opts.dist)->epoch_end(r->opts.dist, r->who,
									     !tg_ok(r->ctx), go);
			if (all < 0)
				return -1;
			go = all;
		} else if (!evaluated) {
			return -1;
		}
		if (!go)
			return 0;
		if (out_of_patience(r, mt) || it >= r->total)
			return 0;
	}
}

/* A checksum of bytes, a 64-bit word at a time, on from h. */
static uint64_t checksum(uint64_t h, const void *p, size_t bytes)
{
	const unsigned char *b = p;
	size_t i = 0;
	for (; i + 8 <= bytes; i += 8) {
		uint64_t w;
		memcpy(&w, b + i, 8);
		h = (h ^ w) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	for (; i < bytes; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

/* A checksum of the values of t[0..n), on from h. */
static uint64_t checksum_tensors(uint64_t h, tg_tensor *const *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		tg_dtype dt = tg_dtype_of(t[i]);
		const void *p = tg_data(t[i]);
		if (p)
			h = checksum(h, p, tg_numel(t[i]) * (dt == TG_F64 || dt == TG_I64 ? 8 : 4));
	}
	return h;
}

/* A checksum of a data set's values: features, labels, targets. */
static uint64_t checksum_data(const tg_dataset *t)
{
	uint64_t h = checksum(0, t->x, (size_t)(t->n * t->d) * sizeof *t->x);
	h = t->y ? checksum(h, t->y, (size_t)t->n * sizeof *t->y) : h;
	return t->t ? checksum(h, t->t, (size_t)(t->n * t->tdim) * sizeof *t->t) : h;
}

/* same_run's values said as words where they are kinds: NULL for a number. */
static const char *kind_label(const char *name, double v)
{
	if (!strcmp(name, "the optimizer's kind"))
		return tg_optim_name((tg_optim_kind)v);
	if (!strcmp(name, "the schedule's kind"))
		return tg_schedule_name((tg_schedule_kind)v);
	if (!strcmp(name, "the parameters' dtype"))
		return v == TG_F64 ? "f64" : v == TG_F32 ? "f32" : NULL;
	return NULL;
}

/* Under dist, before the loop: every rank set up its run (failed: this one
 * did not), and with the same options, data shapes and optimizer as rank
 * 0's; else every rank fails, the others naming the rank that differs, as
 * a rank that trained otherwise would make the others wait for
 * collectives it never calls, or train apart from them. */
static int same_run(run *r, const tg_dist_hooks *dh, bool failed)
{
	static const char *const names[] = {
		"the train set's rows", "features per row", "targets per row",
		"the train set's values (a checksum)", "batch (per rank)",
		"epochs", "iters", "replace", "drop_last", "full_train_eval", "patience",
		"no_divergence_check", "start_epoch", "start_iter", "the validation set's rows",
		"the validation set's values (a checksum)",
		"the parameters' dtype", "the optimizer's kind", "the learning rate",
		"the optimizer's steps", "the optimizer's momentum", "the optimizer's rho",
		"the optimizer's beta1", "the optimizer's beta2", "the optimizer's eps",
		"the optimizer's weight_decay", "the optimizer's clip_norm",
		"the test set's rows (a plateau schedule reads its loss)",
		"the test set's values (a checksum; a plateau schedule reads its loss)", "a schedule",
		"the schedule's kind", "the schedule's base_lr", "the schedule's step_size",
		"the schedule's gamma", "the schedule's t_max", "the schedule's warmup",
		"the schedule's min_lr", "the schedule's factor", "the schedule's patience",
		"the schedule's threshold", "the schedule's epoch", "the schedule's lr",
		"the schedule's best", "the schedule's bad_epochs",
		"the model's parameters (a checksum; a rank changed them after tg_dist_attach)",
		"the optimizer's state (a checksum)",
		"the batch-norm layers synchronised (tg_dist_sync_bn)",
	};
	const tg_train_opts *o = &r->opts;
	r->told = true;
	if (failed)
		return dh->same_run(o->dist, r->who, true, NULL, names, NULL, 0);
	const tg_dataset *t = r->train;
	const tg_schedule *s = o->schedule, none = { 0 }, *sc = s ? s : &none;
	/* the test set steers training only through a plateau without a
	 * validation set: elsewhere a rank may evaluate on its own */
	bool steers = s && s->kind == TG_SCHED_PLATEAU && !r->val;
	tg_optim_opts oo = tg_optim_opts_of(r->o);
	/* the batcher takes each global batch's rows by index on every rank:
	 * its rows must be the same rows everywhere */
	uint64_t h = checksum_data(t);
	/* the validation set steers early stopping and a plateau: ranks whose
	 * losses differ would decide apart, one stopping while the others
	 * wait for it, or take other rates */
	double hv = r->val ? (double)(checksum_data(r->val) >> 11) : -1;
	double ht = steers && r->test ? (double)(checksum_data(r->test) >> 11) : -1;
	/* tg_dist_attach made the parameters rank 0's; one changed since on one
	 * rank (a checkpoint loaded there alone), or optimizer state that
	 * differs, would train the ranks apart without a word */
	size_t np = tg_module_params(r->m, NULL, 0), ns = 0;
	tg_tensor **p = malloc((np ? np : 1) * sizeof *p);
	if (!p) {
		tg_fail(r->ctx, TG_ENOMEM, "%s: out of memory", r->who);
		return dh->same_run(o->dist, r->who, true, NULL, names, NULL, 0);
	}
	tg_module_params(r->m, p, np);
	uint64_t hp = checksum_tensors(0, p, np);
	free(p);
	tg_tensor *const *st = tg_optim_state(r->o, &ns);
	uint64_t hs = checksum_tensors(0, st, st ? ns : 0);
	double v[] = {
		(double)t->n, (double)t->d, (double)t->tdim, (double)(h >> 11), (double)o->batch,
		(double)(o->iters > 0 ? 0 : o->epochs), (double)o->iters, o->replace,
		o->drop_last, o->full_train_eval, (double)o->patience, o->no_divergence_check,
		(double)o->start_epoch, (double)o->start_iter, r->val ? (double)r->val->n : -1, hv,
		(double)r->dt, (double)oo.kind, tg_optim_lr(r->o), (double)tg_optim_steps(r->o),
		oo.momentum, oo.rho, oo.beta1, oo.beta2, oo.eps, oo.weight_decay, oo.clip_norm,
		steers && r->test ? (double)r->test->n : -1, ht, s != NULL, (double)sc->kind,
		sc->base_lr, (double)sc->step_size, sc->gamma, (double)sc->t_max,
		(double)sc->warmup, sc->min_lr, sc->factor, (double)sc->patience, sc->threshold,
		(double)sc->epoch, sc->lr, sc->best, (double)sc->bad_epochs, (double)(hp >> 11),
		(double)(hs >> 11), (double)dh->synced_bn(o->dist),
	};
	_Static_assert(sizeof v / sizeof v[0] == sizeof names / sizeof names[0],
		       "a name for every value");
	return dh->same_run(o->dist, r->who, false, v, names, kind_label, sizeof v / sizeof v[0]);
}

static tg_metrics no_metrics(void)
{
	return (tg_metrics){
		.train_loss = NAN, .train_acc = NAN, .test_loss = NAN, .test_acc = NAN,
		.val_loss = NAN, .val_acc = NAN, .train_mse = NAN, .train_rmse = NAN,
		.train_r2 = NAN, .val_mse = NAN, .val_rmse = NAN, .val_r2 = NAN,
		.test_mse = NAN, .test_rmse = NAN, .test_r2 = NAN, .best_val_loss = NAN,
	};
}

/* The width of m's output for one row of ds, in evaluation mode with grad
 * mode off (no running statistics move, no dropout drawn): K for a (N,K)
 * output, 0 for another shape; -1 on error. */
static int64_t out_width(tg_module *m, const char *who, tg_dtype dt, const tg_dataset *ds,
			 const char *which)
{
	tg_ctx *ctx = m->ctx;
	bool *modes = enter_eval(m, who);
	if (!modes)
		return -1;
	bool grad = tg_set_grad_enabled(ctx, false);
	int64_t shape[1 + TG_SAMPLE_MAX_DIMS];
	int nd = tg_dataset_batch_shape(ds, 1, shape);
	tg_tensor *y = tg_forward(m, tg_from_f32(ctx, dt, nd, shape, ds->x));
	if (!y)
		forward_failed(ctx, who, which, ds);
	int64_t w = y && tg_ndim(y) == 2 ? tg_shape(y)[1] : 0;
	tg_reset(ctx);
	leave_eval(m, modes);
	tg_set_grad_enabled(ctx, grad);
	return tg_ok(ctx) ? w : -1;
}

/* Every label of ds below the model's k outputs (k 0: not known). */
static int check_labels(tg_ctx *ctx, const char *who, const tg_dataset *ds, int64_t k,
			const char *which)
{
	for (int64_t i = 0; k > 0 && i < ds->n; i++)
		if (ds->y[i] >= k) {
			tg_fail(ctx, TG_EARG,
				"%s: the %s set's row %lld has label %d; the model has %lld outputs "
				"(classes 0 to %lld)",
				who, which, (long long)i, (int)ds->y[i], (long long)k,
				(long long)k - 1);
			return -1;
		}
	return 0;
}

/* tg_fit, its messages naming who. */
static int fit(const char *who, tg_module *m, tg_optim *o, const tg_task *task,
	       const tg_dataset *train, const tg_dataset *val, const tg_dataset *test,
	       const tg_train_opts *opts, tg_metrics *last)
{
	tg_ctx *ctx = m ? m->ctx : NULL;
	tg_metrics mt = no_metrics();
	if (last)
		*last = mt;
	if (!m && o) /* the optimizer's context hears of it */
		tg_fail(tg_optim_ctx_of(o), TG_ENULL, "%s: the model is NULL", who);
	if (!ctx || !tg_ok(ctx))
		return -1;
	run r = { .ctx = ctx, .who = who, .m = m, .o = o, .task = task ? *task : classify_task,
		  .train = train, .val = val, .test = test,
		  .opts = opts ? *opts : tg_train_defaults(), .dt = module_dtype(m),
		  .best_val = INFINITY };
	/* under dist a rank that fails from here to the loop tells the others
	 * (at out_free), which would wait for it otherwise */
	tg_batcher *bt = NULL;
	bool *modes = NULL; /* the modes of m's tree while it trains */
	int rc = -1;
	if (!o) {
		tg_fail(ctx, TG_ENULL, "%s: the optimizer is NULL", who);
		goto out_free;
	}
	if (tg_optim_ctx_of(o) != ctx) { /* its steps would change nothing of m */
		tg_fail(ctx, TG_ECTX, "%s: the optimizer belongs to another context than the model",
			who);
		goto out_free;
	}
	/* the buckets carry the attached model's gradients only: m's would
	 * stay each rank's own, and the ranks train apart */
	if (r.opts.dist && tg_dist_hooks_of(r.opts.dist)->model(r.opts.dist) != m) {
		tg_fail(ctx, TG_EARG,
			"%s: opts.dist has %s model attached; tg_dist_attach the model being "
			"trained",
			who, tg_dist_hooks_of(r.opts.dist)->model(r.opts.dist) ? "another" : "no");
		goto out_free;
	}
	if (check_optim_fits(ctx, who, m, o) || check_task(ctx, who, &r.task) ||
	    check_set(ctx, who, &r.task, train, "train") ||
	    (val && (check_set(ctx, who, &r.task, val, "validation") ||
		     check_like(ctx, who, train, val, "validation"))) ||
	    (test && (check_set(ctx, who, &r.task, test, "test") ||
		      check_like(ctx, who, train, test, "test"))) ||
	    plan(&r))
		goto out_free;
	r.val = val = as_train(&r.val_as, train, val);
	r.test = test = as_train(&r.test_as, train, test);
	/* a resumed run that fails before its first step stopped where it
	 * resumed: the epochs and steps of the checkpoint are done */
	mt.epoch = r.opts.start_epoch;
	mt.iter = r.opts.start_iter;
	int64_t rows = r.opts.replace || r.opts.batch < train->n ? r.opts.batch : train->n;
	if (rows > TG_DATA_MAX_ELEMS / train->d) { /* could never be one tensor */
		tg_fail(ctx, TG_EARG, "%s: a batch of %lld rows of %lld features is too large", who,
			(long long)rows, (long long)train->d);
		goto out_free;
	}
	if (tally_init(ctx, who, &r.tr, rows, is_regression(r.task.loss) ? train->tdim : 0,
		       train) ||
	    state_init(&r))
		goto out_free;
	/* One train row through the model: one that does not take the set's
	 * rows is said to here, naming the call and the set. Its K outputs
	 * bound every label, checked here naming its set and row, not at the
	 * step (or the epoch's end) that meets it */
	int64_t k = out_width(m, who, r.dt, train, "train");
	if (k < 0 || (wants_labels(&r.task) &&
		      (check_labels(ctx, who, train, k, "train") ||
		       (val && check_labels(ctx, who, val, k, "validation")) ||
		       (test && check_labels(ctx, who, test, k, "test")))))
		goto out_free;
	/* K of the test confusion matrix: from one forward pass of a test row. */
	if (test && (r.opts.out || r.opts.confusion)) {
		int64_t w = out_width(m, who, r.dt, test, "test");
		if (w < 0)
			goto out_free;
		r.k = confusion_k(&r.task, test, w);
	}
	r.confusion = r.opts.confusion;
	if (!r.confusion && r.k && r.opts.out) {
		r.confusion = r.own = malloc((size_t)(r.k * r.k) * sizeof *r.own);
		if (!r.own) {
			tg_fail(ctx, TG_ENOMEM, "%s: out of memory", who);
			goto out_free;
		}
	}
	unsigned flags = (r.opts.replace ? TG_BATCH_REPLACE : 0) |
			 (r.opts.drop_last ? TG_BATCH_DROP_LAST : 0);
	const tg_dist_hooks *dh = r.opts.dist ? tg_dist_hooks_of(r.opts.dist) : NULL;
	int64_t ranks = dh ? dh->size(r.opts.dist) : 1;
	bt = tg_batcher_new(ctx, train, r.batch, flags);
	if (!bt || (ranks > 1 && tg_batcher_shard(bt, dh->rank(r.opts.dist), ranks)) ||
	    log_open(&r))
		goto out_free;
	if (dh && same_run(&r, dh, false))
		goto out_free;

	/* A model in evaluation mode is put in training mode whole; in a model
	 * in training mode a module the caller keeps in evaluation mode (a
	 * batch norm whose statistics are frozen for fine-tuning) stays so. */
	if (!m->training)
		tg_module_train(m, true);
	modes = save_modes(m, who);
	if (!modes)
		goto out_free;
	bool grad = tg_set_grad_enabled(ctx, true);
	if (r.opts.anomaly)
		tg_set_anomaly(ctx, true);
	r.t0 = r.drawn_at = now();
	r.started = true;
	rc = loop(&r, bt, &mt);
	tg_reset(ctx);
	clear_progress(&r);
	if (r.opts.anomaly)
		tg_set_anomaly(ctx, false);
	tg_set_grad_enabled(ctx, grad);
	leave_eval(m, modes); /* the modes it trained with */
	modes = NULL;
	rc |= log_close(&r);
	/* the matrix of the last epoch evaluated in this call; none ran in a
	 * run taken up after its end */
	if (rc == 0 && r.k && r.confusion && r.opts.out && mt.epoch > r.opts.start_epoch) {
		fprintf(r.opts.out, "confusion matrix on the test set:\n");
		tg_confusion_print(r.opts.out, r.confusion, (int)r.k, r.opts.class_names);
		fflush(r.opts.out);
	}
out_free:
	if (!r.started && r.opts.dist && !r.told)
		same_run(&r, tg_dist_hooks_of(r.opts.dist), true);
	log_close(&r);
	tg_batcher_free(bt);
	free(modes);
	free(r.own);
	free(r.state);
	free(r.state_before);
	tally_free(&r.tr);
	if (last)
		*last = mt;
	return rc ? -1 : 0;
}

int tg_train(tg_mlp *m, tg_optim *o, const tg_dataset *train, const tg_dataset *test,
	     const tg_train_opts *opts, tg_metrics *last)
{
	tg_ctx *ctx = tg_mlp_ctx(m);
	if (last)
		*last = no_metrics();
	if (!m && o)
		tg_fail(tg_optim_ctx_of(o), TG_ENULL, "tg_train: the MLP is NULL");
	if (!ctx || !tg_ok(ctx))
		return -1;
	if (!o)
		tg_fail(ctx, TG_ENULL, "tg_train: the optimizer is NULL");
	else if (!check_fit(ctx, "tg_train", m, train, "train") &&
		 !(test && check_fit(ctx, "tg_train", m, test, "test")))
		return fit("tg_train", tg_mlp_module(m), o, NULL, train, NULL, test, opts, last);
	/* under dist the other ranks wait for this one at tg_fit's start, as
	 * a rank that fails in tg_fit before its loop tells them */
	if (opts && opts->dist)
		tg_dist_hooks_of(opts->dist)->same_run(opts->dist, "tg_train", true, NULL, NULL,
						       NULL, 0);
	return -1;
}

int tg_fit(tg_module *m, tg_optim *o, const tg_task *task, const tg_dataset *train,
	   const tg_dataset *val, const tg_dataset *test, const tg_train_opts *opts,
	   tg_metrics *last)
{
	return fit("tg_fit", m, o, task, train, val, test, opts, last);
}
