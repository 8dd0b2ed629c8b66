/*
 * optim.c - SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam and AdamW.
 *
 * An optimizer reads each parameter's gradient after tg_backward and writes
 * the parameter through tg_data_mut (bumping its version, so a graph that
 * saved the old value refuses to run backward). Its arithmetic is a plain
 * loop per rule and dtype: an update is not part of any graph. State lives
 * in tg_keep tensors of the context; the tg_optim object itself is malloc'd.
 */
#include "hot_loop.h"
#include "parallel.h"
#include "tapegrad_nn.h"
#include "tapegrad_io.h"
#include "optim_opts.h"
#include "engine_errors.h"
#include "kept_undo.h"
#include "norm_eps.h"

#include <float.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct tg_optim {
	tg_ctx *ctx;
	tg_optim_opts o;
	size_t n;
	tg_tensor **p;	   /* (n) the parameters; ctx */
	bool *decay;	   /* (n) weight decay applies */
	tg_tensor **s1;	   /* (n) v, h or Adam's (AdamW's) m; NULL for SGD; ctx */
	tg_tensor **s2;	   /* (n) Adam's (AdamW's) v; ctx */
	tg_tensor **state; /* s1 and s2 listed, for checkpoints */
	size_t nstate;
	int64_t t;	   /* steps taken */
	int64_t *pt;	   /* (n) the steps that updated each parameter: Adam's t for it */
	tg_tensor **zg;	   /* (n) step: zeros for a missing gradient in this step, or NULL */
	double grad_norm;  /* of the last step, before clipping */
	bool norm_pending; /* the last step left grad_norm to tg_optim_grad_norm */
};

static const char *const kind_names[] = {"sgd",     "momentum", "nesterov", "adagrad",
					 "rmsprop", "adam",     "adamw"};

/* Adam's moments and bias correction: Adam and AdamW */
static bool adam_like(tg_optim_kind k)
{
	return k == TG_ADAM || k == TG_ADAMW;
}

/* ---- options ------------------------------------------------------------------ */

tg_optim_opts tg_optim_defaults(tg_optim_kind kind)
{
	return (tg_optim_opts){
	    .kind = kind,
	    .lr = adam_like(kind) ? 0.001 : 0.01,
	    .momentum = 0.9,
	    .rho = 0.99,
	    .beta1 = 0.9,
	    .beta2 = 0.999,
	    .eps = 1e-7,
	    .weight_decay = 0,
	    .clip_norm = 0,
	};
}

const char *tg_optim_name(tg_optim_kind kind)
{
	return (unsigned)kind <= TG_ADAMW ? kind_names[kind] : "unknown";
}

int tg_optim_parse(tg_ctx *ctx, const char *s, tg_optim_kind *out)
{
	if (!ctx)
		return -1;
	if (!s || !out) {
		tg_fail(ctx, TG_ENULL, "tg_optim_parse: %s is NULL", !s ? "the name" : "out");
		return -1;
	}
	for (int k = TG_SGD; k <= TG_ADAMW; k++) {
		if (!strcmp(s, kind_names[k])) {
			*out = (tg_optim_kind)k;
			return 0;
		}
	}
	tg_fail(ctx, TG_EARG,
		"tg_optim_parse: unknown optimizer \"%s\"; expected sgd, momentum, nesterov, "
		"adagrad, rmsprop, adam or adamw",
		s);
	return -1;
}

static bool unit(double x)
{
	return x >= 0 && x < 1;
}

static int check_opts(tg_ctx *ctx, const tg_optim_opts *o)
{
	const char *bad = NULL;
	if ((unsigned)o->kind > TG_ADAMW)
		bad = "unknown kind";
	else if (!(o->lr >= 0) || !isfinite(o->lr))
		bad = "lr must be >= 0";
	else if (!unit(o->momentum))
		bad = "momentum must be in [0, 1)";
	else if (!unit(o->rho))
		bad = "rho must be in [0, 1)";
	else if (!unit(o->beta1) || !unit(o->beta2))
		bad = "beta1 and beta2 must be in [0, 1)";
	else if (!(o->eps > 0) || !isfinite(o->eps))
		bad = "eps must be positive";
	else if (!(o->weight_decay >= 0) || !isfinite(o->weight_decay))
		bad = "weight_decay must be >= 0";
	else if (!(o->clip_norm >= 0) || !isfinite(o->clip_norm))
		bad = "clip_norm must be >= 0 (0: no clipping)";
	if (!bad)
		return 0;
	tg_fail(ctx, TG_EARG,
		"tg_optim_new: %s: %s (lr %g, momentum %g, rho %g, beta1 %g, beta2 %g, eps %g, "
		"weight_decay %g, clip_norm %g)",
		tg_optim_name(o->kind), bad, o->lr, o->momentum, o->rho, o->beta1, o->beta2, o->eps,
		o->weight_decay, o->clip_norm);
	return -1;
}

/* ---- making one ------------------------------------------------------------------ */

static int check_params(tg_ctx *ctx, tg_tensor *const *params, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		tg_tensor *t = params[i];
		if (!t) {
			tg_fail(ctx, TG_ENULL, "tg_optim_new: params[%zu] is NULL", i);
			return -1;
		}
		if (tg_ctx_of(t) != ctx) {
			if (!tg_tensor_check("tg_optim_new", t))
				tg_stale_elsewhere(ctx, "tg_optim_new", t, "params[%zu]", i);
			else
				tg_fail(ctx, TG_ECTX,
					"tg_optim_new: params[%zu] belongs to another context", i);
			return -1;
		}
		const char *name = tg_name(t) ? tg_name(t) : "(unnamed)";
		char sh[96];
		if (!tg_requires_grad(t)) {
			tg_fail(ctx, TG_EARG,
				"tg_optim_new: params[%zu] %s %s does not require a gradient; an "
				"optimizer updates parameters (tg_param)",
				i, name, tg_shape_str(t, sh, sizeof sh));
			return -1;
		}
		if (!tg_is_param(t)) {
			tg_fail(
			    ctx, TG_EARG,
			    "tg_optim_new: params[%zu] %s %s is a step tensor, freed at tg_reset; "
			    "an optimizer updates parameters (tg_param)",
			    i, name, tg_shape_str(t, sh, sizeof sh));
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			if (params[j] == t) {
				tg_fail(ctx, TG_EARG,
					"tg_optim_new: params[%zu] and params[%zu] are the same "
					"tensor %s",
					j, i, name);
				return -1;
			}
		}
	}
	return 0;
}

static bool uses_eps(tg_optim_kind k)
{
	return k == TG_ADAGRAD || k == TG_RMSPROP || adam_like(k);
}

/* The updates run in each parameter's dtype. There an eps that rounds to 0
 * (1e-50 in f32) or a subnormal makes an element whose gradient is 0 a
 * 0 / 0, and a rate or decay past the dtype's largest number an inf * 0:
 * NaN parameters with no error. eps must be a positive normal number in
 * every parameter's dtype, as a norm layer's (norm_eps.h); lr and
 * weight_decay finite in it. lr_only: check lr alone (tg_optim_set_lr).
 * 0 ok; -1 and TG_EARG naming the value and the parameter. */
static int check_dtype_range(tg_ctx *ctx, const char *who, const tg_optim_opts *o,
			     tg_tensor *const *params, size_t n, bool lr_only)
{
	for (size_t i = 0; i < n; i++) {
		tg_dtype dt = tg_dtype_of(params[i]);
		double lo, hi;
		char what[96];
		if (!lr_only && uses_eps(o->kind) && !tg_norm_eps_ok(o->eps, dt, &lo, &hi))
			snprintf(what, sizeof what, "eps = %g is not a positive normal number",
				 o->eps);
		else if (dt != TG_F64 && o->lr > FLT_MAX)
			snprintf(what, sizeof what, "lr = %g is beyond the largest number", o->lr);
		else if (!lr_only && dt != TG_F64 && o->weight_decay > FLT_MAX)
			snprintf(what, sizeof what, "weight_decay = %g is beyond the largest number",
				 o->weight_decay);
		else
			continue;
		const char *name = tg_name(params[i]) ? tg_name(params[i]) : "(unnamed)";
		tg_norm_eps_ok(1, dt, &lo, &hi);
		tg_fail(ctx, TG_EARG,
			"%s: %s: params[%zu] %s is %s, where %s (%g to %g): the update would "
			"make NaN of it",
			who, tg_optim_name(o->kind), i, name, dt == TG_F64 ? "f64" : "f32", what,
			lo, hi);
		return -1;
	}
	return 0;
}

/* A zero state tensor like p, named "<p's name>.<suffix>". */
static tg_tensor *state_like(tg_tensor *p, size_t i, const char *suffix)
{
	char name[160];
	if (tg_name(p))
		snprintf(name, sizeof name, "%s.%s", tg_name(p), suffix);
	else
		snprintf(name, sizeof name, "param%zu.%s", i, suffix);
	tg_tensor *s = tg_keep(tg_zeros(tg_ctx_of(p), tg_dtype_of(p), tg_ndim(p), tg_shape(p)));
	return s ? tg_set_name(s, name) : NULL;
}

static int make_state(tg_optim *o)
{
	tg_optim_kind k = o->o.kind;
	const char *s1 = k == TG_MOMENTUM || k == TG_NESTEROV ? "v"
			 : k == TG_ADAGRAD || k == TG_RMSPROP ? "h"
			 : adam_like(k)			      ? "m"
							      : NULL;
	for (size_t i = 0; s1 && i < o->n; i++) {
		o->s1[i] = state_like(o->p[i], i, s1);
		if (!o->s1[i])
			return -1;
		o->state[o->nstate++] = o->s1[i];
		if (!adam_like(k))
			continue;
		o->s2[i] = state_like(o->p[i], i, "v");
		if (!o->s2[i])
			return -1;
		o->state[o->nstate++] = o->s2[i];
	}
	return 0;
}

tg_optim *tg_optim_new(tg_ctx *ctx, tg_tensor *const *params, size_t n, const tg_optim_opts *opts)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	/* an empty list is that whether or not its pointer is NULL (a model
	 * without parameters counts 0 and may pass NULL) */
	if (!n)
		return tg_fail(ctx, TG_EARG,
			       "tg_optim_new: no parameters to optimize (n = 0; a model without "
			       "parameters has nothing to train)");
	if (!params || !opts)
		return tg_fail(ctx, TG_ENULL, "tg_optim_new: %s",
			       !params ? "params is NULL" : "opts is NULL");
	if (check_opts(ctx, opts) || check_params(ctx, params, n) ||
	    check_dtype_range(ctx, "tg_optim_new", opts, params, n, false))
		return NULL;
	tg_optim *o = calloc(1, sizeof *o);
	if (!o)
		return tg_fail(ctx, TG_ENOMEM, "tg_optim_new: out of memory");
	o->ctx = ctx;
	o->o = *opts;
	o->n = n;
	o->p = calloc(n, sizeof *o->p);
	o->decay = calloc(n, sizeof *o->decay);
	o->s1 = calloc(n, sizeof *o->s1);
	o->s2 = calloc(n, sizeof *o->s2);
	o->state = calloc(2 * n, sizeof *o->state);
	o->pt = calloc(n, sizeof *o->pt);
	o->zg = calloc(n, sizeof *o->zg);
	if (!o->p || !o->decay || !o->s1 || !o->s2 || !o->state || !o->pt || !o->zg) {
		tg_optim_free(o);
		return tg_fail(ctx, TG_ENOMEM, "tg_optim_new: out of memory for %zu parameters", n);
	}
	for (size_t i = 0; i < n; i++) {
		o->p[i] = params[i];
		o->decay[i] = tg_decays(params[i]); /* set by the module that made it */
	}
	tg_tensor *mark = tg_kept_newest(ctx);
	if (make_state(o)) {
		tg_kept_drop_newer(ctx, mark); /* the state made before the failure */
		tg_optim_free(o);
		return NULL;
	}
	return o;
}

void tg_optim_free(tg_optim *o)
{
	if (!o)
		return;
	free(o->p);
	free(o->decay);
	free(o->s1);
	free(o->s2);
	free(o->state);
	free(o->pt);
	free(o->zg);
	free(o);
}

/* ---- the rules ---------------------------------------------------------------------- */
/* One loop per rule and dtype. g = (grad + wd p) * scale is the gradient of
 * the regularised loss, clipped; wd is 0 for a parameter without decay, and
 * for AdamW, whose decay is decoupled from the gradient: it scales p by
 * keep = 1 - lr weight_decay before Adam's update with g alone (1 without
 * decay, which changes no bit of p: AdamW's update is then Adam's). */

#define DEFINE_UPDATE(T, SQRT, NAME, GRAD)                                                         \
	TG_HOT_LOOP_WIDE                                                                              \
	static void NAME(tg_optim_kind kind, const tg_optim_opts *o, size_t n, T *P, const T *G,   \
			 T *S1, T *S2, T wd, T scale, T lr_t, T keep)                              \
	{                                                                                          \
		const T lr = (T)o->lr, mu = (T)o->momentum, rho = (T)o->rho;                       \
		const T b1 = (T)o->beta1, b2 = (T)o->beta2, eps = (T)o->eps;                       \
		/* 1 - beta in double, then rounded: 1 - (float)0.999 is 0.001 (1 - 1.3e-5),       \
		 * an error the bias correction (lr_t, in double) does not share */                \
		const T c1 = (T)(1 - o->beta1), c2 = (T)(1 - o->beta2);                            \
		const T crho = (T)(1 - o->rho);                                                    \
		(void)wd, (void)scale, (void)keep; /* keep: AdamW's alone */                       \
		switch (kind) {                                                                    \
		case TG_SGD: /* p -= lr g */                                                       \
			for (size_t i = 0; i < n; i++)                                             \
				P[i] -= lr * (GRAD);                                               \
			break;                                                                     \
		case TG_MOMENTUM: /* v = mu v - lr g; p += v */                                    \
			for (size_t i = 0; i < n; i++) {                                           \
				T g = GRAD;                                                        \
				S1[i] = mu * S1[i] - lr * g;                                       \
				P[i] += S1[i];                                                     \
			}                                                                          \
			break;                                                                     \
		case TG_NESTEROV: /* v = mu v - lr g; p += mu^2 v - (1 + mu) lr g */               \
			for (size_t i = 0; i < n; i++) {                                           \
				T g = GRAD;                                                        \
				S1[i] = mu * S1[i] - lr * g;                                       \
				P[i] += mu * mu * S1[i] - (1 + mu) * lr * g;                       \
			}                                                                          \
			break;                                                                     \
		case TG_ADAGRAD: /* h += g^2; p -= lr g / (sqrt(h) + eps) */                       \
			for (size_t i = 0; i < n; i++) {                                           \
				T g = GRAD;                                                        \
				S1[i] += g * g;                                                    \
				P[i] -= lr * g / (SQRT(S1[i]) + eps);                              \
			}                                                                          \
			break;                                                                     \
		case TG_RMSPROP: /* h = rho h + (1 - rho) g^2; p -= lr g / (sqrt(h) + eps) */      \
			for (size_t i = 0; i < n; i++) {                                           \
				T g = GRAD;                                                        \
				S1[i] = rho * S1[i] + crho * g * g;                                \
				P[i] -= lr * g / (SQRT(S1[i]) + eps);                              \
			}                                                                          \
			break;                                                                     \
		case TG_ADAM: /* m = b1 m + c1 g; v = b2 v + c2 g^2; p -= lr_t m/(sqrt v+eps) */   \
			for (size_t i = 0; i < n; i++) {                                           \
				T g = GRAD;                                                        \
				S1[i] = b1 * S1[i] + c1 * g;                                       \
				S2[i] = b2 * S2[i] + c2 * g * g;                                   \
				P[i] -= lr_t * S1[i] / (SQRT(S2[i]) + eps);                        \
			}                                                                          \
			break;                                                                     \
		case TG_ADAMW: /* p *= keep; then Adam's update */                                 \
			for (size_t i = 0; i < n; i++) {                                           \
				T g = GRAD;                                                        \
				S1[i] = b1 * S1[i] + c1 * g;                                       \
				S2[i] = b2 * S2[i] + c2 * g * g;                                   \
				P[i] *= keep;                                                      \
				P[i] -= lr_t * S1[i] / (SQRT(S2[i]) + eps);                        \
			}                                                                          \
			break;                                                                     \
		}                                                                                  \
	}

/* g as the rule sees it: with decay or clipping, and without (most steps:
 * no "+ 0 p" and "* 1" to compute, which change no finite value) */
DEFINE_UPDATE(double, sqrt, update_double, (G[i] + wd * P[i]) * scale)
DEFINE_UPDATE(float, sqrtf, update_float, (G[i] + wd * P[i]) * scale)
DEFINE_UPDATE(double, sqrt, update_plain_double, G[i])
DEFINE_UPDATE(float, sqrtf, update_plain_float, G[i])

typedef void (*update_f64)(tg_optim_kind, const tg_optim_opts *, size_t, double *,
			   const double *, double *, double *, double, double, double, double);
typedef void (*update_f32)(tg_optim_kind, const tg_optim_opts *, size_t, float *, const float *,
			   float *, float *, float, float, float, float);

/* One parameter's update, a part [lo, hi) of its elements at a time: each
 * element's new value depends on its own p, g and state alone, so a split
 * across the threads gives the bits of one pass. */
typedef struct update_job {
	update_f64 k64;
	update_f32 k32;
	tg_optim_kind kind;
	const tg_optim_opts *o;
	void *P, *S1, *S2;
	const void *G;
	double wd, scale, lr_t, keep;
} update_job;

/* base + lo elements of size es, or NULL */
static void *at(const void *base, size_t lo, size_t es)
{
	return base ? (char *)base + lo * es : NULL;
}

static void update_part(void *arg, size_t lo, size_t hi)
{
	const update_job *j = arg;
	size_t es = j->k64 ? sizeof(double) : sizeof(float);
	if (j->k64)
		j->k64(j->kind, j->o, hi - lo, at(j->P, lo, es), at(j->G, lo, es), at(j->S1, lo, es),
		       at(j->S2, lo, es), j->wd, j->scale, j->lr_t, j->keep);
	else
		j->k32(j->kind, j->o, hi - lo, at(j->P, lo, es), at(j->G, lo, es), at(j->S1, lo, es),
		       at(j->S2, lo, es), (float)j->wd, (float)j->scale, (float)j->lr_t,
		       (float)j->keep);
}

/* sum over elements of ((grad + wd p) k)^2, in double, g NULL meaning a
 * gradient of zeros; k = 1 but where the squares overflow (global_norm).
 * The squares go into sixteen interleaved partial sums (element i into
 * lane i % 16), added pairwise at the end, not one chain of dependent
 * additions that took an addition's latency per element: the norm's pass
 * cost more than the update it precedes. Sixteen lanes of doubles fill two
 * AVX-512 registers, where GCC kept eight in one AVX2 register; every copy
 * of the loop adds in the same order. The same bits from run to run;
 * against the plain left-to-right sum, a difference of a few units in
 * double's last place. */
enum { SQ_LANES = 16 };

static double sum_sq_lanes(const double l[SQ_LANES])
{
	double h[8];
	for (int k = 0; k < 8; k++)
		h[k] = l[k] + l[k + 8];
	return ((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7]));
}

#define SUM_SQ_LANES(T, GV)                                                                \
	do {                                                                               \
		double l[SQ_LANES] = { 0 };                                                \
		size_t i = 0;                                                              \
		for (; i + SQ_LANES <= n; i += SQ_LANES)                                   \
			for (int j = 0; j < SQ_LANES; j++) {                               \
				double x = (T)(GV(i + j) + wd * P[i + j]) * k;             \
				l[j] += x * x;                                             \
			}                                                                  \
		for (; i < n; i++) {                                                       \
			double x = (T)(GV(i) + wd * P[i]) * k;                             \
			l[i % SQ_LANES] += x * x;                                          \
		}                                                                          \
		return sum_sq_lanes(l);                                                    \
	} while (0)
#define GRAD_AT(i) G[i]
#define ZERO_AT(i) 0

#define DEFINE_SUM_SQ(T, name)                                                             \
	TG_HOT_LOOP_WIDE                                                                   \
	static double name(size_t n, const T *P, const T *G, T wd, double k)               \
	{                                                                                  \
		SUM_SQ_LANES(T, GRAD_AT);                                                  \
	}                                                                                  \
	TG_HOT_LOOP_WIDE                                                                   \
	static double name##_nograd(size_t n, const T *P, T wd, double k)                  \
	{                                                                                  \
		SUM_SQ_LANES(T, ZERO_AT);                                                  \
	}

DEFINE_SUM_SQ(double, sum_sq_double)
DEFINE_SUM_SQ(float, sum_sq_float)

/* The sum of squares of elements [lo, lo + n) of p (and g). */
static double sum_sq_run(const tg_tensor *p, const tg_tensor *g, double wd, double k, size_t lo,
			 size_t n)
{
	if (tg_dtype_of(p) == TG_F64)
		return g ? sum_sq_double(n, (const double *)tg_data(p) + lo,
					 (const double *)tg_data(g) + lo, wd, k)
			 : sum_sq_double_nograd(n, (const double *)tg_data(p) + lo, wd, k);
	return g ? sum_sq_float(n, (const float *)tg_data(p) + lo, (const float *)tg_data(g) + lo,
				(float)wd, k)
		 : sum_sq_float_nograd(n, (const float *)tg_data(p) + lo, (float)wd, k);
}

/* A parameter's squares are summed by tg_parallel_sum: over more than
 * TG_SUM_BLOCK elements in fixed blocks across the context's threads, with
 * the same bits at every thread count. */
typedef struct sq_run {
	const tg_tensor *p, *g;
	double wd, k;
} sq_run;

static double sq_block(void *arg, size_t lo, size_t m)
{
	const sq_run *r = arg;
	return sum_sq_run(r->p, r->g, r->wd, r->k, lo, m);
}

static double sum_sq(const tg_optim *o, const tg_tensor *p, const tg_tensor *g, double wd,
		     double k)
{
	sq_run r = { p, g, wd, k };
	return tg_parallel_sum(o->ctx, tg_numel(p), sq_block, &r);
}

/* Whether a step updates params[i] when it has no gradient: never while it
 * is frozen (no gradient required), nor before its first update; after it,
 * with zeros (below). */
static bool updates_without_grad(const tg_optim *o, size_t i)
{
	return o->pt[i] > 0 && tg_requires_grad(o->p[i]);
}

/* params[i]'s gradient for a step: none while it is frozen, whatever it
 * holds (one from a backward before it was frozen, kept until
 * tg_optim_zero_grad); else tg_grad's, which refuses a lost one. */
static tg_tensor *step_grad(const tg_optim *o, size_t i)
{
	return tg_requires_grad(o->p[i]) ? tg_grad(o->p[i]) : NULL;
}

/* The decay added to params[i]'s gradient: weight_decay where it decays,
 * but 0 for AdamW, whose decay is no part of the gradient (nor of its norm
 * and clipping, as torch.optim.AdamW after clip_grad_norm_). */
static double grad_decay(const tg_optim *o, size_t i)
{
	return o->decay[i] && o->o.kind != TG_ADAMW ? o->o.weight_decay : 0;
}

/* The sum of squares over the gradients a step uses, each plus wd p, times
 * k. */
static double sum_sq_all(const tg_optim *o, double k)
{
	double total = 0;
	for (size_t i = 0; i < o->n; i++) {
		tg_tensor *g = step_grad(o, i);
		if (g || updates_without_grad(o, i))
			total += sum_sq(o, o->p[i], g, grad_decay(o, i), k);
	}
	return total;
}

/* The global norm of the gradients present, each plus its coupled decay
 * wd p (none for AdamW). Where the sum
 * of squares overflows (f64 gradients past about 1e154), the sum is taken
 * again of the elements scaled by 2^-600 (exact; what underflows there is
 * nothing beside what overflowed), so that clipping still scales by a
 * finite norm; an infinite element keeps it infinite. */
static double global_norm(const tg_optim *o)
{
	double total = sum_sq_all(o, 1);
	return isinf(total) ? 0x1p600 * sqrt(sum_sq_all(o, 0x1p-600)) : sqrt(total);
}

/* Whether the norm involves the parameters, which the step changes. */
static bool decay_applies(const tg_optim *o)
{
	for (size_t i = 0; i < o->n; i++)
		if (grad_decay(o, i) > 0)
			return true;
	return false;
}

static void *state_data(tg_tensor *s)
{
	return s ? tg_data_mut(s) : NULL;
}

int tg_optim_step(tg_optim *o)
{
	if (!o || !tg_ok(o->ctx))
		return -1;
	if (o->t == INT64_MAX) { /* set by tg_optim_set_steps: no step can follow */
		tg_fail(o->ctx, TG_EARG, "tg_optim_step: %lld steps taken; the count cannot grow",
			(long long)o->t);
		return -1;
	}
	/* a gradient a failed tg_backward left partly accumulated is refused
	 * (by tg_grad, naming it) before any parameter moves; a frozen
	 * parameter's is not read */
	for (size_t i = 0; i < o->n; i++)
		step_grad(o, i);
	if (!tg_ok(o->ctx))
		return -1;
	/* A parameter that had a gradient keeps one: on a step that does not
	 * reach it, tg_grad reads zeros and its state and decay move on. A run
	 * resumed in a new process has no such buffer yet; its restored count
	 * says the parameter had one, and zeros stand in for it, so the
	 * resumed run makes the uninterrupted one's updates. Made before any
	 * parameter moves, so that running out of memory changes nothing. */
	for (size_t i = 0; i < o->n; i++) {
		tg_tensor *p = o->p[i];
		o->zg[i] = NULL;
		if (!step_grad(o, i) && updates_without_grad(o, i) &&
		    !(o->zg[i] = tg_zeros(o->ctx, tg_dtype_of(p), tg_ndim(p), tg_shape(p))))
			return -1;
	}
	const tg_optim_opts *c = &o->o;
	/* The norm costs a pass over every gradient; without clipping nothing
	 * here needs it, and the gradients stay for tg_optim_grad_norm to read
	 * unless it also needs the parameters before the update. */
	o->norm_pending = !(c->clip_norm > 0) && !decay_applies(o);
	if (!o->norm_pending)
		o->grad_norm = global_norm(o);
	double scale = 1;
	if (c->clip_norm > 0 && o->grad_norm > c->clip_norm)
		scale = c->clip_norm / o->grad_norm;
	o->t++;
	for (size_t i = 0; i < o->n; i++) {
		tg_tensor *p = o->p[i], *g = step_grad(o, i);
		if (!g)
			g = o->zg[i];
		if (!g)
			continue;
		/* Adam's (AdamW's) bias correction counts the updates this parameter's
		 * moments took: one skipped while frozen (or unused) has moments
		 * of fewer steps than the optimizer, as PyTorch's per-parameter
		 * step */
		int64_t t = ++o->pt[i];
		double lr_t =
		    c->lr * sqrt(1 - pow(c->beta2, (double)t)) / (1 - pow(c->beta1, (double)t));
		double wd = grad_decay(o, i);
		/* AdamW's decoupled decay, as torch.optim.AdamW: p *= 1 - lr wd */
		double keep = c->kind == TG_ADAMW && o->decay[i] ? 1 - c->lr * c->weight_decay : 1;
		void *P = tg_data_mut(p);
		const void *G = tg_data(g);
		void *S1 = state_data(o->s1[i]), *S2 = state_data(o->s2[i]);
		if (!P || !G)
			return -1;
		bool plain = wd == 0 && scale == 1;
		update_job j = {
			tg_dtype_of(p) != TG_F64 ? NULL : plain ? update_plain_double : update_double,
			plain ? update_plain_float : update_float,
			c->kind, c, P, S1, S2, G, wd, scale, lr_t, keep,
		};
		tg_parallel_for(o->ctx, tg_numel(p), TG_PAR_MIN, 16, update_part, &j);
	}
	return tg_ok(o->ctx) ? 0 : -1;
}

/* ---- the rest ---------------------------------------------------------------------- */

void tg_optim_zero_grad(tg_optim *o)
{
	for (size_t i = 0; o && i < o->n; i++)
		tg_zero_grad(o->p[i]);
}

double tg_optim_lr(const tg_optim *o)
{
	return o ? o->o.lr : NAN;
}

tg_optim_opts tg_optim_opts_of(const tg_optim *o)
{
	return o ? o->o : (tg_optim_opts){ 0 };
}

tg_ctx *tg_optim_ctx_of(const tg_optim *o)
{
	return o ? o->ctx : NULL;
}

tg_tensor *const *tg_optim_params_of(const tg_optim *o, size_t *n)
{
	*n = o ? o->n : 0;
	return o ? o->p : NULL;
}

void tg_optim_set_lr(tg_optim *o, double lr)
{
	if (!o)
		return;
	if (!(lr >= 0) || !isfinite(lr)) {
		tg_fail(o->ctx, TG_EARG, "tg_optim_set_lr: lr = %g must be >= 0", lr);
		return;
	}
	tg_optim_opts c = o->o;
	c.lr = lr;
	if (check_dtype_range(o->ctx, "tg_optim_set_lr", &c, o->p, o->n, true))
		return;
	o->o.lr = lr;
}

void tg_optim_set_decay(tg_optim *o, size_t i, bool on)
{
	if (!o)
		return;
	if (i >= o->n) {
		tg_fail(o->ctx, TG_EARG,
			"tg_optim_set_decay: index %zu; the optimizer has %zu "
			"parameters",
			i, o->n);
		return;
	}
	o->decay[i] = on;
}

double tg_optim_grad_norm(const tg_optim *o)
{
	if (!o)
		return NAN;
	return o->norm_pending ? global_norm(o) : o->grad_norm;
}
int64_t tg_optim_steps(const tg_optim *o)
{
	return o ? o->t : 0;
}

void tg_optim_set_steps(tg_optim *o, int64_t t)
{
	if (!o)
		return;
	if (t < 0) {
		tg_fail(o->ctx, TG_EARG, "tg_optim_set_steps: %lld steps; a count is >= 0",
			(long long)t);
		return;
	}
	o->t = t;
	for (size_t i = 0; i < o->n; i++)
		o->pt[i] = t;
}

int64_t tg_optim_param_steps(const tg_optim *o, size_t i)
{
	return o && i < o->n ? o->pt[i] : -1;
}

void tg_optim_set_param_steps(tg_optim *o, size_t i, int64_t t)
{
	if (!o)
		return;
	if (i >= o->n || t < 0 || t > o->t) {
		tg_fail(o->ctx, TG_EARG,
			"tg_optim_set_param_steps: params[%zu], %lld steps; the optimizer has %zu "
			"parameters and has taken %lld steps (set them first: tg_optim_set_steps)",
			i, (long long)t, o->n, (long long)o->t);
		return;
	}
	o->pt[i] = t;
}

tg_tensor *const *tg_optim_state(const tg_optim *o, size_t *n)
{
	if (n)
		*n = o ? o->nstate : 0;
	return o ? o->state : NULL;
}

/* ---- checkpoints: kind and step counts ---------------------------------------------- */

int tg_state_optim(tg_state *s, const tg_optim *o)
{
	if (!s || !o) {
		if (o)
			tg_fail(o->ctx, TG_ENULL, "tg_state_optim: the state is NULL");
		return -1;
	}
	if (!tg_ok(o->ctx))
		return -1;
	return tg_state_set_string(s, "optim", tg_optim_name(o->o.kind)) ||
		       tg_state_set_i64(s, "optim.steps", &o->t, 1) ||
		       tg_state_set_i64(s, "optim.param_steps", o->pt, o->n)
		   ? -1
		   : 0;
}

/* The state's counts for o, checked: steps, and each parameter's into pt
 * (every one steps when the state has none). 0 ok, -1. */
static int read_counts(const tg_state *s, const tg_optim *o, int64_t *steps, int64_t *pt)
{
	const char *who = "tg_state_restore_optim";
	const char *kind = tg_state_string(s, "optim");
	if (kind && strcmp(kind, tg_optim_name(o->o.kind))) {
		tg_fail(o->ctx, TG_EFORMAT, "%s: the state holds the state of %s; this optimizer is %s",
			who, kind, tg_optim_name(o->o.kind));
		return -1;
	}
	if (tg_state_i64(s, "optim.steps", steps, 1) != 1) {
		tg_fail(o->ctx, TG_EARG, "%s: the state has no step count (\"optim.steps\", one i64)",
			who);
		return -1;
	}
	if (*steps < 0) {
		tg_fail(o->ctx, TG_EFORMAT, "%s: the state's step count is %lld; a count is >= 0", who,
			(long long)*steps);
		return -1;
	}
	int64_t n = tg_state_i64(s, "optim.param_steps", NULL, 0);
	if (n < 0) { /* saved before per-parameter counts */
		for (size_t i = 0; i < o->n; i++)
			pt[i] = *steps;
		return 0;
	}
	if ((uint64_t)n != o->n) {
		tg_fail(o->ctx, TG_EFORMAT,
			"%s: the state counts the steps of %lld parameters; this optimizer has %zu",
			who, (long long)n, o->n);
		return -1;
	}
	tg_state_i64(s, "optim.param_steps", pt, o->n);
	for (size_t i = 0; i < o->n; i++)
		if (pt[i] < 0 || pt[i] > *steps) {
			tg_fail(o->ctx, TG_EFORMAT,
				"%s: the state counts %lld steps for params[%zu] %s; the optimizer took "
				"%lld",
				who, (long long)pt[i], i, tg_name(o->p[i]) ? tg_name(o->p[i]) : "(unnamed)",
				(long long)*steps);
			return -1;
		}
	return 0;
}

/* The sums of squares o keeps (AdaGrad's and RMSprop's h, Adam's and AdamW's v) are
 * never negative: one loaded so from a file (made by other means than a
 * run) would give NaN square roots at the next step, where the loss would
 * blame the learning rate. NaN is left to the loader's own check. 0 ok. */
static int check_squares(const tg_optim *o)
{
	tg_optim_kind k = o->o.kind;
	tg_tensor *const *sq = k == TG_ADAGRAD || k == TG_RMSPROP ? o->s1
			       : adam_like(k)			  ? o->s2
								  : NULL;
	for (size_t i = 0; sq && i < o->n; i++) {
		const tg_tensor *t = sq[i];
		const void *v = tg_data(t);
		for (size_t j = 0; v && j < tg_numel(t); j++) {
			double x = tg_dtype_of(t) == TG_F64 ? ((const double *)v)[j]
							    : ((const float *)v)[j];
			if (x < 0) {
				tg_fail(o->ctx, TG_EFORMAT,
					"tg_state_restore_optim: %s holds %g at element %zu; %s "
					"keeps sums of squares, never negative",
					tg_name(t), x, j, tg_optim_name(k));
				return -1;
			}
		}
	}
	return 0;
}

int tg_state_restore_optim(const tg_state *s, tg_optim *o)
{
	if (!s || !o) {
		if (o)
			tg_fail(o->ctx, TG_ENULL, "tg_state_restore_optim: the state is NULL");
		return -1;
	}
	if (!tg_ok(o->ctx))
		return -1;
	int64_t steps;
	int64_t *pt = malloc(o->n * sizeof *pt);
	if (!pt) {
		tg_fail(o->ctx, TG_ENOMEM, "tg_state_restore_optim: out of memory for %zu counts",
			o->n);
		return -1;
	}
	int rc = read_counts(s, o, &steps, pt) || check_squares(o) ? -1 : 0;
	if (rc == 0) {
		o->t = steps;
		memcpy(o->pt, pt, o->n * sizeof *pt);
	}
	free(pt);
	return rc;
}
