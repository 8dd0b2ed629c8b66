/*
 * experiments.c - the seeds' experiments (the book's chapter 6), computed.
 *
 * Every net here is a tg_mlp trained by the plain loop every chapter-6 script
 * repeats: forward, tg_cross_entropy, tg_optim_zero_grad, tg_backward,
 * tg_optim_step, tg_reset. Nets that are compared get a context each, made
 * with the same seed (so equal initialisers give equal weights), and see the
 * same mini-batches, drawn from a separate generator. Only the output
 * helpers at the end touch files or the terminal.
 *
 * Shapes: N = samples, B = batch, K = classes.
 */
#include "experiments.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAX_ARMS = 8, EVAL_CHUNK = 1000 };

/* ---- errors ------------------------------------------------------------------------- */

static int fail(char *err, const char *fmt, ...)
#ifdef __GNUC__
	__attribute__((format(printf, 2, 3)))
#endif
	;

static int fail(char *err, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, EX_ERR, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* The context's error, or "out of memory" when there was no context. */
static const char *why(const tg_ctx *ctx)
{
	return ctx ? tg_error(ctx) : "out of memory";
}

/* ---- shared pieces -------------------------------------------------------------------- */

static tg_dtype net_dtype(const tg_mlp *m)
{
	size_t n;
	tg_tensor *const *p = tg_mlp_params(m, &n);
	return n ? tg_dtype_of(p[0]) : TG_F32;
}

int ex_load_fashion(tg_dataset *train, tg_dataset *test, char *err)
{
	tg_ctx *ctx = tg_ctx_new(0);
	int rc = ctx && tg_load_mnist(ctx, NULL, train, test) == 0
			 ? 0
			 : fail(err, "Fashion-MNIST (package dataset-fashion-mnist): %s", why(ctx));
	tg_ctx_free(ctx);
	return rc;
}

double ex_accuracy(tg_mlp *m, const tg_dataset *ds)
{
	tg_ctx *ctx = tg_mlp_ctx(m);
	if (!ctx || !ds || ds->n < 1)
		return NAN;
	tg_dtype dt = net_dtype(m);
	bool training = tg_mlp_training(m);
	bool grad = tg_set_grad_enabled(ctx, false);
	tg_mlp_train(m, false);

	int64_t idx[EVAL_CHUNK];
	int32_t labels[EVAL_CHUNK], pred[EVAL_CHUNK];
	int64_t right = 0;
	for (int64_t s = 0; s < ds->n && tg_ok(ctx); s += EVAL_CHUNK) {
		int64_t n = ds->n - s < EVAL_CHUNK ? ds->n - s : EVAL_CHUNK;
		for (int64_t i = 0; i < n; i++)
			idx[i] = s + i;
		tg_tensor *x = tg_dataset_batch(ctx, ds, idx, n, dt, labels);
		if (tg_argmax_rows(tg_mlp_forward(m, x), pred) == 0)
			for (int64_t i = 0; i < n; i++)
				right += pred[i] == labels[i];
		tg_reset(ctx);
	}
	tg_mlp_train(m, training);
	tg_set_grad_enabled(ctx, grad);
	return tg_ok(ctx) ? (double)right / (double)ds->n : NAN;
}

/* One update on the batch (x, y); returns the batch's loss before it, NAN
 * on error (kept in the context). Ends the step. */
static double train_step(tg_mlp *m, tg_optim *o, tg_tensor *x, const int32_t *y)
{
	tg_ctx *ctx = tg_mlp_ctx(m);
	tg_tensor *loss = tg_cross_entropy_i32(tg_mlp_forward(m, x), y, tg_dim(x, 0));
	tg_optim_zero_grad(o);
	tg_backward(loss);
	tg_optim_step(o);
	double v = loss && tg_ok(ctx) ? tg_item(loss) : NAN;
	tg_reset(ctx);
	return v;
}

/* A uniformly random permutation of 0..n-1 from ctx's generator. */
static void shuffle(tg_ctx *rng, int64_t *perm, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		perm[i] = i;
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)(tg_random_u64(rng) % (uint64_t)(i + 1));
		int64_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
}

void ex_smooth(const double *in, double *out, int64_t n, int64_t half)
{
	for (int64_t i = 0; i < n; i++) {
		int64_t lo = i - half < 0 ? 0 : i - half;
		int64_t hi = i + half >= n ? n - 1 : i + half;
		double s = 0;
		for (int64_t j = lo; j <= hi; j++)
			s += in[j];
		out[i] = s / (double)(hi - lo + 1);
	}
}

double ex_tail_mean(const double *v, int64_t n, int64_t last)
{
	if (last > n)
		last = n;
	double s = 0;
	for (int64_t i = n - last; i < n; i++)
		s += v[i];
	return last > 0 ? s / (double)last : NAN;
}

/* A net and its optimizer in a context of their own. */
struct arm {
	tg_ctx *ctx;
	tg_mlp *m;
	tg_optim *opt;
};

static int arm_open(struct arm *a, uint64_t seed, const char *spec, const tg_mlp_opts *net,
		    const tg_optim_opts *optim, const char *label, char *err)
{
	*a = (struct arm){ 0 };
	a->ctx = tg_ctx_new(seed);
	if (!a->ctx)
		return fail(err, "%s: out of memory", label);
	a->m = tg_mlp_new(a->ctx, spec, net);
	size_t np;
	tg_tensor *const *p = tg_mlp_params(a->m, &np);
	if (a->m)
		a->opt = tg_optim_new(a->ctx, p, np, optim);
	if (!a->m || !a->opt)
		return fail(err, "%s: %s", label, why(a->ctx));
	return 0;
}

static void arm_close(struct arm *a)
{
	tg_optim_free(a->opt);
	tg_mlp_free(a->m);
	tg_ctx_free(a->ctx);
	*a = (struct arm){ 0 };
}

/* ---- 1. optimizers on a valley: f(x, y) = x^2 / 20 + y^2 ------------------------------ */

ex_valley_opts ex_valley_defaults(void)
{
	return (ex_valley_opts){
		.x0 = -7,
		.y0 = 2,
		.steps = 30,
		.kind = { TG_SGD, TG_MOMENTUM, TG_ADAGRAD, TG_ADAM },
		.lr = { 0.95, 0.1, 1.5, 0.3 },
	};
}

double ex_valley_f(double x, double y)
{
	return x * x / 20 + y * y;
}

/* f as a graph of ops on the scalar parameters x and y */
static tg_tensor *valley(tg_tensor *x, tg_tensor *y)
{
	return tg_add(tg_mul_scalar(tg_pow(x, 2), 1.0 / 20), tg_pow(y, 2));
}

int ex_valley_run(const ex_valley_opts *o, ex_valley *out, char *err)
{
	if (o->steps < 1 || o->steps > EX_VALLEY_MAX_STEPS)
		return fail(err, "valley: steps %d outside 1..%d", o->steps, EX_VALLEY_MAX_STEPS);
	out->steps = o->steps;
	for (int k = 0; k < EX_VALLEY_OPTIMS; k++) {
		const char *name = tg_optim_name(o->kind[k]);
		tg_ctx *ctx = tg_ctx_new(1);
		if (!ctx)
			return fail(err, "valley, %s: out of memory", name);
		tg_tensor *p[2] = {
			tg_set_name(tg_param(tg_scalar(ctx, TG_F64, o->x0)), "x"),
			tg_set_name(tg_param(tg_scalar(ctx, TG_F64, o->y0)), "y"),
		};
		tg_optim_opts oo = tg_optim_defaults(o->kind[k]);
		oo.lr = o->lr[k];
		tg_optim *opt = tg_optim_new(ctx, p, 2, &oo);
		for (int i = 0; opt && tg_ok(ctx); i++) {
			out->x[k][i] = tg_item(p[0]);
			out->y[k][i] = tg_item(p[1]);
			if (i == o->steps)
				break;
			tg_tensor *f = valley(p[0], p[1]);
			tg_optim_zero_grad(opt);
			tg_backward(f);
			tg_optim_step(opt);
			tg_reset(ctx);
		}
		int rc = tg_ok(ctx) ? 0 : fail(err, "valley, %s: %s", name, tg_error(ctx));
		tg_optim_free(opt);
		tg_ctx_free(ctx);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- 2 and 4. loss curves of several nets on the same mini-batches ------------------------ */

ex_curves_opts ex_curves_defaults(void)
{
	return (ex_curves_opts){
		.spec = "784-100-100-100-100-10",
		.iters = 2000,
		.batch = 128,
		.seed = 1,
	};
}

void ex_optimizer_arms(ex_arm *arms)
{
	static const tg_optim_kind kind[4] = { TG_SGD, TG_MOMENTUM, TG_ADAGRAD, TG_ADAM };
	static const double lr[4] = { 0.01, 0.01, 0.01, 0.001 };
	for (int i = 0; i < 4; i++) {
		arms[i].label = tg_optim_name(kind[i]);
		arms[i].net = tg_mlp_defaults(); /* ReLU, He, f32 */
		arms[i].optim = tg_optim_defaults(kind[i]);
		arms[i].optim.lr = lr[i];
	}
}

void ex_init_arms(ex_arm *arms)
{
	static const char *const label[3] = { "std=0.01", "lecun", "he" };
	static const tg_init init[3] = {
		{ TG_INIT_STD, 0.01 }, { TG_INIT_LECUN, 0 }, { TG_INIT_HE, 0 } };
	for (int i = 0; i < 3; i++) {
		arms[i].label = label[i];
		arms[i].net = tg_mlp_defaults();
		arms[i].net.init = init[i];
		arms[i].optim = tg_optim_defaults(TG_SGD);
		arms[i].optim.lr = 0.01;
	}
}

int ex_loss_curves(const tg_dataset *train, const ex_curves_opts *o, const ex_arm *arms,
		   int narms, double *loss, FILE *log, char *err)
{
	if (narms < 1 || narms > MAX_ARMS || o->iters < 1 || o->batch < 1)
		return fail(err, "loss curves: %d arms, %lld iterations, batch %lld", narms,
			    (long long)o->iters, (long long)o->batch);
	struct arm arm[MAX_ARMS] = { 0 };
	tg_ctx *rng = tg_ctx_new(o->seed + 1);
	int64_t *idx = malloc((size_t)o->batch * sizeof *idx);
	int32_t *lab = malloc((size_t)o->batch * sizeof *lab);
	int rc = rng && idx && lab ? 0 : fail(err, "loss curves: out of memory");
	for (int a = 0; a < narms && !rc; a++)
		rc = arm_open(&arm[a], o->seed, o->spec, &arms[a].net, &arms[a].optim,
			      arms[a].label, err);

	for (int64_t it = 0; it < o->iters && !rc; it++) {
		for (int64_t b = 0; b < o->batch; b++)
			idx[b] = (int64_t)(tg_random_u64(rng) % (uint64_t)train->n);
		for (int a = 0; a < narms && !rc; a++) {
			tg_tensor *x = tg_dataset_batch(arm[a].ctx, train, idx, o->batch,
							arms[a].net.dtype, lab);
			loss[a * o->iters + it] = train_step(arm[a].m, arm[a].opt, x, lab);
			if (!tg_ok(arm[a].ctx))
				rc = fail(err, "%s, iteration %lld: %s", arms[a].label,
					  (long long)it, tg_error(arm[a].ctx));
		}
		if (log && !rc && (it % 100 == 0 || it == o->iters - 1)) {
			fprintf(log, "iteration %5lld:", (long long)it);
			for (int a = 0; a < narms; a++)
				fprintf(log, "  %s %.4f", arms[a].label, loss[a * o->iters + it]);
			fprintf(log, "\n");
			fflush(log);
		}
	}

	for (int a = 0; a < narms; a++)
		arm_close(&arm[a]);
	tg_ctx_free(rng);
	free(idx);
	free(lab);
	return rc;
}

/* ---- 3. activation histograms by initialisation ------------------------------------------- */

ex_hist_opts ex_hist_defaults(void)
{
	return (ex_hist_opts){
		.n = 1000,
		.width = 100,
		.seed = 1,
		.setting = {
			{ "sigmoid, std 1", "sigmoid_std1", TG_ACT_SIGMOID, { TG_INIT_STD, 1 } },
			{ "sigmoid, std 0.01", "sigmoid_std0.01", TG_ACT_SIGMOID,
			  { TG_INIT_STD, 0.01 } },
			{ "sigmoid, lecun (Xavier)", "sigmoid_lecun", TG_ACT_SIGMOID,
			  { TG_INIT_LECUN, 0 } },
			{ "ReLU, std 0.01", "relu_std0.01", TG_ACT_RELU, { TG_INIT_STD, 0.01 } },
			{ "ReLU, lecun (Xavier)", "relu_lecun", TG_ACT_RELU, { TG_INIT_LECUN, 0 } },
			{ "ReLU, he", "relu_he", TG_ACT_RELU, { TG_INIT_HE, 0 } },
		},
	};
}

static void layer_stats(const double *a, size_t n, ex_hist_layer *h)
{
	*h = (ex_hist_layer){ 0 };
	double sum = 0, sq = 0;
	size_t ends = 0, mid = 0, zero = 0;
	for (size_t i = 0; i < n; i++) {
		double v = a[i];
		sum += v;
		sq += v * v;
		ends += v < 0.05 || v > 0.95;
		mid += fabs(v - 0.5) < 0.05;
		zero += v == 0;
		if (v > 1 || !(v >= 0))
			h->above++;
		else
			h->count[v >= 1 ? EX_HIST_BINS - 1 : (int)(v * EX_HIST_BINS)]++;
	}
	h->mean = sum / (double)n;
	h->std = sqrt(fmax(sq / (double)n - h->mean * h->mean, 0));
	h->ends = (double)ends / (double)n;
	h->mid = (double)mid / (double)n;
	h->zero = (double)zero / (double)n;
}

int ex_hist_run(const ex_hist_opts *o, ex_hist *out, char *err)
{
	/* width-width-...: 5 hidden layers and an output layer nobody reads */
	char spec[128] = "";
	for (int l = 0; l <= EX_HIST_LAYERS + 1; l++) {
		size_t len = strlen(spec);
		snprintf(spec + len, sizeof spec - len, "%s%lld", l ? "-" : "",
			 (long long)o->width);
	}
	tg_ctx *ctx = tg_ctx_new(o->seed);
	if (!ctx)
		return fail(err, "histograms: out of memory");
	tg_set_grad_enabled(ctx, false);
	tg_tensor *x = tg_keep(tg_randn(ctx, TG_F64, 2, (int64_t[]){ o->n, o->width }, 0, 1));
	for (int s = 0; s < EX_HIST_SETTINGS && tg_ok(ctx); s++) {
		tg_mlp_opts mo = tg_mlp_defaults();
		mo.act = (tg_act){ o->setting[s].act, 0 };
		mo.init = o->setting[s].init;
		mo.dtype = TG_F64;
		tg_mlp *m = tg_mlp_new(ctx, spec, &mo);
		tg_mlp_forward(m, x);
		for (int l = 0; l < EX_HIST_LAYERS && tg_ok(ctx); l++) {
			const tg_tensor *a = tg_mlp_activation(m, l + 1);
			if (a)
				layer_stats(tg_data(a), tg_numel(a), &out->layer[s][l]);
		}
		tg_reset(ctx);
		tg_mlp_free(m);
	}
	int rc = tg_ok(ctx) ? 0 : fail(err, "histograms: %s", tg_error(ctx));
	tg_ctx_free(ctx);
	return rc;
}

/* ---- 5. batch normalisation at 16 weight scales ---------------------------------------------- */

ex_bn_opts ex_bn_defaults(void)
{
	return (ex_bn_opts){
		.n_train = 1000,
		.spec = "784-100-100-100-100-100-10",
		.lr = 0.01,
		.batch = 100,
		.epochs = 20,
		.nscales = 16,
		.seed = 1,
	};
}

double ex_bn_scale(const ex_bn_opts *o, int i)
{
	return o->nscales > 1 ? pow(10, -4.0 * i / (o->nscales - 1)) : 1;
}

/* After a failure in arm a: an anomaly (NaN or Inf) stops that curve and is
 * noted; any other error stops the run. */
static int bn_stopped(struct arm *a, ex_bn_curve *c, int epoch, int epochs, char *err)
{
	if (tg_status_of(a->ctx) != TG_EANOMALY)
		return fail(err, "batch norm: %s", tg_error(a->ctx));
	c->failed = epoch;
	snprintf(c->error, sizeof c->error, "%s", tg_error(a->ctx));
	for (int e = epoch; e <= epochs; e++)
		c->acc[e] = NAN;
	return 0;
}

/* Both nets of one weight std, trained side by side on the same batches. */
static int bn_scale(const tg_dataset *train, const ex_bn_opts *o, ex_bn_result *r,
		    int64_t *perm, char *err)
{
	struct arm arm[2] = { 0 };
	ex_bn_curve *curve[2] = { &r->bn, &r->plain };
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = o->lr;
	tg_ctx *rng = tg_ctx_new(o->seed + 1);
	int32_t *lab = malloc((size_t)o->batch * sizeof *lab);
	int rc = rng && lab ? 0 : fail(err, "batch norm: out of memory");
	for (int a = 0; a < 2; a++) {
		tg_mlp_opts mo = tg_mlp_defaults();
		mo.init = (tg_init){ TG_INIT_STD, r->std };
		mo.batchnorm = a == 0;
		curve[a]->failed = -1;
		curve[a]->error[0] = '\0';
		if (!rc)
			rc = arm_open(&arm[a], o->seed, o->spec, &mo, &oo,
				      a ? "without batch norm" : "with batch norm", err);
		if (!rc) {
			tg_set_anomaly(arm[a].ctx, true);
			curve[a]->acc[0] = ex_accuracy(arm[a].m, train);
			if (!tg_ok(arm[a].ctx))
				rc = bn_stopped(&arm[a], curve[a], 0, o->epochs, err);
		}
	}
	for (int e = 1; e <= o->epochs && !rc; e++) {
		shuffle(rng, perm, train->n);
		for (int64_t s = 0; s < train->n && !rc; s += o->batch) {
			int64_t n = train->n - s < o->batch ? train->n - s : o->batch;
			for (int a = 0; a < 2 && !rc; a++) {
				if (curve[a]->failed >= 0)
					continue;
				tg_tensor *x = tg_dataset_batch(arm[a].ctx, train, perm + s, n,
								TG_F32, lab);
				train_step(arm[a].m, arm[a].opt, x, lab);
				if (!tg_ok(arm[a].ctx))
					rc = bn_stopped(&arm[a], curve[a], e, o->epochs, err);
			}
		}
		for (int a = 0; a < 2 && !rc; a++) {
			if (curve[a]->failed >= 0)
				continue;
			curve[a]->acc[e] = ex_accuracy(arm[a].m, train);
			if (!tg_ok(arm[a].ctx))
				rc = bn_stopped(&arm[a], curve[a], e, o->epochs, err);
		}
	}
	for (int a = 0; a < 2; a++)
		arm_close(&arm[a]);
	tg_ctx_free(rng);
	free(lab);
	return rc;
}

int ex_bn_run(const tg_dataset *train, const ex_bn_opts *o, ex_bn_result *out, FILE *log,
	      char *err)
{
	if (o->nscales < 1 || o->nscales > EX_BN_MAX_SCALES || o->epochs < 1 ||
	    o->epochs > EX_BN_MAX_EPOCHS || o->batch < 1)
		return fail(err, "batch norm: %d scales, %d epochs, batch %lld", o->nscales,
			    o->epochs, (long long)o->batch);
	tg_ctx *ctx = tg_ctx_new(o->seed);
	tg_dataset sub = { 0 };
	if (!ctx || tg_dataset_head(ctx, train, o->n_train, &sub)) {
		int rc = fail(err, "batch norm: %s", why(ctx));
		tg_ctx_free(ctx);
		return rc;
	}
	tg_ctx_free(ctx);
	int64_t *perm = malloc((size_t)sub.n * sizeof *perm);
	int rc = perm ? 0 : fail(err, "batch norm: out of memory");
	for (int i = 0; i < o->nscales && !rc; i++) {
		out[i].std = ex_bn_scale(o, i);
		rc = bn_scale(&sub, o, &out[i], perm, err);
		if (log && !rc) {
			char acc[2][48];
			const ex_bn_curve *c[2] = { &out[i].bn, &out[i].plain };
			for (int a = 0; a < 2; a++)
				if (c[a]->failed >= 0)
					snprintf(acc[a], sizeof acc[a], "stopped in epoch %d (NaN/Inf)",
						 c[a]->failed);
				else
					snprintf(acc[a], sizeof acc[a], "%.3f", c[a]->acc[o->epochs]);
			fprintf(log, "weight std %-9.3g  train accuracy after %d epochs: "
				"with batch norm %s, without %s\n",
				out[i].std, o->epochs, acc[0], acc[1]);
			fflush(log);
		}
	}
	free(perm);
	tg_dataset_free(&sub);
	return rc;
}

/* ---- 6. overfitting and its cures ------------------------------------------------------------ */

ex_overfit_opts ex_overfit_defaults(void)
{
	return (ex_overfit_opts){
		.n_train = 300,
		.n_test = 0,
		.spec = "784-100-100-100-100-100-100-10",
		.lr = 0.01,
		.batch = 100,
		.epochs = 200,
		.weight_decay = 0.1,
		.dropout = 0.2,
		.seed = 1,
	};
}

static int overfit_epochs(const tg_dataset *train, const tg_dataset *test,
			  const ex_overfit_opts *o, ex_overfit *out, struct arm *arm, FILE *log,
			  char *err)
{
	tg_ctx *rng = tg_ctx_new(o->seed + 1);
	int64_t *perm = malloc((size_t)train->n * sizeof *perm);
	int32_t *lab = malloc((size_t)o->batch * sizeof *lab);
	int rc = rng && perm && lab ? 0 : fail(err, "overfitting: out of memory");
	for (int e = 0; e <= o->epochs && !rc; e++) {
		if (e > 0) {
			shuffle(rng, perm, train->n);
			for (int64_t s = 0; s < train->n && !rc; s += o->batch) {
				int64_t n = train->n - s < o->batch ? train->n - s : o->batch;
				for (int a = 0; a < EX_OVERFIT_ARMS && !rc; a++) {
					tg_tensor *x = tg_dataset_batch(arm[a].ctx, train, perm + s,
									n, TG_F32, lab);
					train_step(arm[a].m, arm[a].opt, x, lab);
				}
			}
		}
		for (int a = 0; a < EX_OVERFIT_ARMS && !rc; a++) {
			out->train_acc[a][e] = ex_accuracy(arm[a].m, train);
			out->test_acc[a][e] = ex_accuracy(arm[a].m, test);
			if (!tg_ok(arm[a].ctx))
				rc = fail(err, "overfitting, %s, epoch %d: %s", out->label[a], e,
					  tg_error(arm[a].ctx));
		}
		if (log && !rc && (e % 20 == 0 || e == o->epochs)) {
			fprintf(log, "epoch %3d:", e);
			for (int a = 0; a < EX_OVERFIT_ARMS; a++)
				fprintf(log, "  %s train %.3f test %.3f", out->label[a],
					out->train_acc[a][e], out->test_acc[a][e]);
			fprintf(log, "\n");
			fflush(log);
		}
	}
	tg_ctx_free(rng);
	free(perm);
	free(lab);
	return rc;
}

int ex_overfit_run(const tg_dataset *train, const tg_dataset *test, const ex_overfit_opts *o,
		   ex_overfit *out, FILE *log, char *err)
{
	if (o->epochs < 1 || o->epochs > EX_OVERFIT_MAX_EPOCHS || o->batch < 1)
		return fail(err, "overfitting: %d epochs, batch %lld", o->epochs,
			    (long long)o->batch);
	out->label[0] = "plain";
	out->label[1] = "weight_decay";
	out->label[2] = "dropout";
	tg_ctx *ctx = tg_ctx_new(o->seed);
	tg_dataset sub = { 0 }, tsub = { 0 };
	int rc = ctx && !tg_dataset_head(ctx, train, o->n_train, &sub) &&
				 !tg_dataset_head(ctx, test, o->n_test > 0 ? o->n_test : test->n,
						  &tsub)
			 ? 0
			 : fail(err, "overfitting: %s", why(ctx));
	tg_ctx_free(ctx);

	struct arm arm[EX_OVERFIT_ARMS] = { 0 };
	for (int a = 0; a < EX_OVERFIT_ARMS && !rc; a++) {
		tg_mlp_opts mo = tg_mlp_defaults(); /* ReLU, He */
		mo.dropout = a == 2 ? o->dropout : 0;
		tg_optim_opts oo = tg_optim_defaults(TG_SGD);
		oo.lr = o->lr;
		oo.weight_decay = a == 1 ? o->weight_decay : 0;
		rc = arm_open(&arm[a], o->seed, o->spec, &mo, &oo, out->label[a], err);
	}
	if (!rc)
		rc = overfit_epochs(&sub, &tsub, o, out, arm, log, err);
	for (int a = 0; a < EX_OVERFIT_ARMS; a++)
		arm_close(&arm[a]);
	tg_dataset_free(&sub);
	tg_dataset_free(&tsub);
	return rc;
}

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
	struct arm a;
	t->val_acc = t->train_acc = NAN;
	if (arm_open(&a, o->seed + 1 + (uint64_t)t->index, o->spec, &mo, &oo, "trial", err) == 0) {
		tg_batcher *b = tg_batcher_new(a.ctx, train, o->batch, 0);
		tg_batch batch;
		for (int e = 0; e < o->epochs && b && tg_ok(a.ctx); e++)
			while (tg_batch_next(b, TG_F32, &batch))
				train_step(a.m, a.opt, batch.x, batch.y);
		tg_batcher_free(b);
		if (tg_ok(a.ctx)) {
			t->val_acc = ex_accuracy(a.m, val);
			t->train_acc = ex_accuracy(a.m, train);
		}
	}
	arm_close(&a);
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
			rc = fail(err, "hyperparameter search: pipe: %s", strerror(errno));
			break;
		}
		pid[started] = fork();
		if (pid[started] < 0) {
			rc = fail(err, "hyperparameter search: fork: %s", strerror(errno));
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
			rc = fail(err, "hyperparameter search: poll: %s", strerror(errno));
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
		rc = fail(err, "hyperparameter search: %d of %d trials came back", done, o->trials);
	return rc;
}

int ex_hyper_run(const tg_dataset *train, const ex_hyper_opts *o, ex_trial *out, FILE *log,
		 char *err)
{
	if (o->trials < 1 || o->epochs < 1 || o->batch < 1 || o->n_val < 1 || o->n_val >= o->n)
		return fail(err, "hyperparameter search: %d trials, %d epochs, %lld of %lld held out",
			    o->trials, o->epochs, (long long)o->n_val, (long long)o->n);
	tg_ctx *ctx = tg_ctx_new(o->seed);
	tg_dataset head = { 0 }, tr = { 0 }, val = { 0 };
	int rc = ctx && !tg_dataset_head(ctx, train, o->n, &head) &&
				 !tg_dataset_split(ctx, &head, o->n_val, &tr, &val)
			 ? 0
			 : fail(err, "hyperparameter search: %s", why(ctx));
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

/* ---- 8. perceptron gates and XOR ------------------------------------------------------------ */

const ex_gate ex_and = { "AND", 0.5, 0.5, -0.7 };
const ex_gate ex_nand = { "NAND", -0.5, -0.5, 0.7 };
const ex_gate ex_or = { "OR", 0.5, 0.5, -0.2 };
const double ex_gate_in[4][2] = { { 0, 0 }, { 1, 0 }, { 0, 1 }, { 1, 1 } };
static const double xor_target[4] = { 0, 1, 1, 0 };

int ex_gate_eval(const ex_gate *g, const double in[4][2], int out[4], char *err)
{
	tg_ctx *ctx = tg_ctx_new(0);
	if (!ctx)
		return fail(err, "%s: out of memory", g->name);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, 2, (int64_t[]){ 4, 2 }, &in[0][0]);
	tg_tensor *w = tg_from_f64(ctx, TG_F64, 2, (int64_t[]){ 2, 1 }, (double[]){ g->w1, g->w2 });
	tg_tensor *z = tg_add(tg_matmul(x, w), tg_scalar(ctx, TG_F64, g->b)); /* (4,1) */
	for (int i = 0; i < 4 && z; i++)
		out[i] = tg_get(z, (size_t)i) > 0; /* the step */
	int rc = tg_ok(ctx) ? 0 : fail(err, "%s: %s", g->name, tg_error(ctx));
	tg_ctx_free(ctx);
	return rc;
}

int ex_xor_by_gates(int out[4], char *err)
{
	int s1[4], s2[4];
	if (ex_gate_eval(&ex_nand, ex_gate_in, s1, err) || ex_gate_eval(&ex_or, ex_gate_in, s2, err))
		return -1;
	double s[4][2];
	for (int i = 0; i < 4; i++) {
		s[i][0] = s1[i];
		s[i][1] = s2[i];
	}
	return ex_gate_eval(&ex_and, s, out, err);
}

ex_xor_opts ex_xor_defaults(void)
{
	return (ex_xor_opts){ .restarts = 10, .steps = 2000, .lr = 0.1, .seed = 1 };
}

double ex_xor_grid_point(int i)
{
	return -0.25 + 1.5 * i / (EX_XOR_GRID - 1);
}

/* Binary cross-entropy of sigmoid(z) against t, from the logit: mean of
 * softplus(z) - t z, which is -t ln y - (1 - t) ln(1 - y) without the
 * overflow of ln(sigmoid). */
static tg_tensor *bce_logits(tg_tensor *z, tg_tensor *t)
{
	return tg_mean(tg_sub(tg_softplus(z), tg_mul(t, z)));
}

/* sigmoid(net(x)) for the G*G grid points, row i = x1 point, column j = x2 */
static void xor_grid(tg_mlp *m, double grid[EX_XOR_GRID][EX_XOR_GRID])
{
	tg_ctx *ctx = tg_mlp_ctx(m);
	enum { G = EX_XOR_GRID };
	double pts[G * G][2];
	for (int i = 0; i < G; i++)
		for (int j = 0; j < G; j++) {
			pts[i * G + j][0] = ex_xor_grid_point(i);
			pts[i * G + j][1] = ex_xor_grid_point(j);
		}
	tg_tensor *y = tg_sigmoid(tg_mlp_forward(
		m, tg_from_f64(ctx, TG_F64, 2, (int64_t[]){ G * G, 2 }, &pts[0][0])));
	for (int i = 0; i < G * G && y; i++)
		grid[i / G][i % G] = tg_get(y, (size_t)i);
	tg_reset(ctx);
}

/* One start of one net; its loss curve goes to curve[steps]. */
static int xor_start(const char *spec, uint64_t seed, const ex_xor_opts *o, ex_xor_run *run,
		     double *curve, double grid[EX_XOR_GRID][EX_XOR_GRID], char *err)
{
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.act = (tg_act){ TG_ACT_SIGMOID, 0 };
	mo.init = (tg_init){ TG_INIT_STD, 1 };
	mo.dtype = TG_F64;
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	oo.lr = o->lr;
	struct arm a;
	if (arm_open(&a, seed, spec, &mo, &oo, spec, err)) {
		arm_close(&a);
		return -1;
	}
	const int64_t xs[2] = { 4, 2 }, ts[2] = { 4, 1 };
	for (int s = 0; s <= o->steps && tg_ok(a.ctx); s++) {
		tg_tensor *x = tg_from_f64(a.ctx, TG_F64, 2, xs, &ex_gate_in[0][0]);
		tg_tensor *t = tg_from_f64(a.ctx, TG_F64, 2, ts, xor_target);
		tg_tensor *z = tg_mlp_forward(a.m, x);
		tg_tensor *loss = bce_logits(z, t);
		if (s == o->steps) { /* the trained net, read only */
			tg_tensor *y = tg_sigmoid(z);
			run->loss = loss ? tg_item(loss) : NAN;
			run->solved = true;
			for (int i = 0; i < 4 && y; i++) {
				run->y[i] = tg_get(y, (size_t)i);
				run->solved = run->solved && (run->y[i] > 0.5) == (xor_target[i] > 0.5);
			}
			tg_reset(a.ctx);
			break;
		}
		tg_optim_zero_grad(a.opt);
		tg_backward(loss);
		tg_optim_step(a.opt);
		curve[s] = loss ? tg_item(loss) : NAN;
		tg_reset(a.ctx);
	}
	if (tg_ok(a.ctx))
		xor_grid(a.m, grid);
	int rc = tg_ok(a.ctx) ? 0 : fail(err, "XOR, %s: %s", spec, tg_error(a.ctx));
	arm_close(&a);
	return rc;
}

static int xor_net(const char *spec, const ex_xor_opts *o, ex_xor_net *net, double *curve,
		   double (*grid)[EX_XOR_GRID], char *err)
{
	net->spec = spec;
	net->solved = 0;
	net->best = -1;
	for (int r = 0; r < o->restarts; r++) {
		if (xor_start(spec, o->seed + (uint64_t)r, o, &net->run[r], curve, grid, err))
			return -1;
		net->solved += net->run[r].solved;
		if (net->best < 0 || net->run[r].loss < net->run[net->best].loss) {
			net->best = r;
			memcpy(net->curve, curve, (size_t)o->steps * sizeof *curve);
			memcpy(net->grid, grid, sizeof net->grid);
		}
	}
	return 0;
}

int ex_xor_run_all(const ex_xor_opts *o, ex_xor *out, char *err)
{
	if (o->restarts < 1 || o->restarts > EX_XOR_MAX_RESTARTS || o->steps < 1 ||
	    o->steps > EX_XOR_MAX_STEPS)
		return fail(err, "XOR: %d restarts, %d steps", o->restarts, o->steps);
	double *curve = malloc((size_t)o->steps * sizeof *curve);
	double(*grid)[EX_XOR_GRID] = malloc(sizeof(double[EX_XOR_GRID][EX_XOR_GRID]));
	int rc = curve && grid ? 0 : fail(err, "XOR: out of memory");
	if (!rc)
		rc = xor_net("2-1", o, &out->one, curve, grid, err);
	if (!rc)
		rc = xor_net("2-2-1", o, &out->two, curve, grid, err);
	free(curve);
	free(grid);
	return rc;
}

/* ---- output: the demos' command line, CSV files, gnuplot ---------------------------------- */

int ex_cli_parse(int argc, char **argv, const char *prog, const char *what, ex_cli *cli)
{
	*cli = (ex_cli){ .out = "experiments_out" };
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			cli->out = argv[++i];
		} else if (!strncmp(argv[i], "--out=", 6)) {
			cli->out = argv[i] + 6;
		} else if (!strcmp(argv[i], "--quick")) {
			cli->quick = true;
		} else {
			bool help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
			FILE *f = help ? stdout : stderr;
			if (help)
				fprintf(f, "%s - %s\n", prog, what);
			else
				fprintf(f, "%s: unknown argument %s\n", prog, argv[i]);
			fprintf(f,
				"usage: %s [--out DIR] [--quick]\n"
				"  --out DIR  where the CSV, the gnuplot script and the PNG go\n"
				"             (default experiments_out)\n"
				"  --quick    a short run, to check that everything works\n",
				prog);
			return help ? 1 : -1;
		}
	}
	return 0;
}

/* mkdir -p */
static int make_dirs(const char *dir)
{
	char path[4096];
	if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
		return -1;
	for (char *p = path + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(path, 0777) != 0 && errno != EEXIST)
				return -1;
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

FILE *ex_create(const char *dir, const char *file)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	if (make_dirs(dir) != 0) {
		fprintf(stderr, "cannot make %s: %s\n", dir, strerror(errno));
		return NULL;
	}
	FILE *f = fopen(path, "w");
	if (!f)
		fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
	return f;
}

int ex_close(FILE *f, const char *dir, const char *file)
{
	bool bad = ferror(f);
	bad = fclose(f) != 0 || bad;
	if (bad)
		fprintf(stderr, "could not write %s/%s\n", dir, file);
	return bad ? -1 : 0;
}

/* s in single quotes for the shell, quotes inside escaped */
static void shell_quote(char *out, size_t size, const char *s)
{
	size_t o = 0;
	out[o++] = '\'';
	for (; *s && o + 6 < size; s++) {
		if (*s == '\'') {
			memcpy(out + o, "'\\''", 4);
			o += 4;
		} else {
			out[o++] = *s;
		}
	}
	out[o++] = '\'';
	out[o] = '\0';
}

int ex_render(const char *dir, const char *name)
{
	if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
		printf("gnuplot is not installed: %s/%s.csv and %s.gp are written; "
		       "install gnuplot-nox and run 'gnuplot %s.gp' in %s for the picture\n",
		       dir, name, name, name, dir);
		return 0;
	}
	char qdir[4200], qgp[600], cmd[5000];
	shell_quote(qdir, sizeof qdir, dir);
	snprintf(cmd, sizeof cmd, "%s.gp", name);
	shell_quote(qgp, sizeof qgp, cmd);
	snprintf(cmd, sizeof cmd, "cd %s && gnuplot %s", qdir, qgp);
	fflush(NULL);
	int st = system(cmd);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "'%s' failed (status %d)\n", cmd, st);
		return -1;
	}
	printf("picture: %s/%s.png\n", dir, name);
	return 1;
}

void ex_gp_begin(FILE *gp, const char *name, int w, int h)
{
	fprintf(gp,
		"# %s.gp - draws %s.png from the CSV beside it: gnuplot %s.gp\n"
		"set terminal pngcairo size %d,%d font 'sans,10'\n"
		"set output '%s.png'\n"
		"set datafile separator ','\n"
		"set datafile columnheaders\n",
		name, name, name, w, h, name);
}

int ex_write_curves(const char *dir, const char *name, const ex_arm *arms, int narms,
		    const double *loss, int64_t iters, int64_t half, const char *title)
{
	char file[256];
	snprintf(file, sizeof file, "%s.csv", name);
	double *smooth = malloc((size_t)(narms * iters) * sizeof *smooth);
	FILE *f = smooth ? ex_create(dir, file) : NULL;
	if (!f) {
		free(smooth);
		return -1;
	}
	for (int a = 0; a < narms; a++)
		ex_smooth(loss + a * iters, smooth + a * iters, iters, half);
	fprintf(f, "iteration");
	for (int a = 0; a < narms; a++)
		fprintf(f, ",%s,%s_smooth", arms[a].label, arms[a].label);
	fprintf(f, "\n");
	for (int64_t i = 0; i < iters; i++) {
		fprintf(f, "%lld", (long long)i);
		for (int a = 0; a < narms; a++)
			fprintf(f, ",%.6g,%.6g", loss[a * iters + i], smooth[a * iters + i]);
		fprintf(f, "\n");
	}
	free(smooth);
	if (ex_close(f, dir, file))
		return -1;

	snprintf(file, sizeof file, "%s.gp", name);
	FILE *gp = ex_create(dir, file);
	if (!gp)
		return -1;
	ex_gp_begin(gp, name, 900, 560);
	fprintf(gp,
		"set title '%s'\n"
		"set xlabel 'iteration'\n"
		"set ylabel 'training loss (batch cross-entropy, mean over %lld iterations)'\n"
		"set yrange [0:2.5]\n"
		"set key top right box opaque\n"
		"set grid\n"
		"plot ",
		title, (long long)(2 * half + 1));
	for (int a = 0; a < narms; a++)
		fprintf(gp, "%s'%s.csv' using 1:%d with lines lw 2 title '%s'", a ? ", \\\n     " : "",
			name, 3 + 2 * a, arms[a].label);
	fprintf(gp, "\n");
	return ex_close(gp, dir, file);
}
