/*
 * loss.c - the elementwise losses: mse, l1, huber and bce_with_logits, each
 * the mean over all elements of a prediction and a target of one shape
 * (never broadcast: a (N,1) against an (N) is a mistake, not a mean over
 * N x N pairs) -> a scalar.
 *
 * Forward is one pass summing in double for both dtypes. The backward rules
 * are written with ops on the node's saved inputs, so a TG_CREATE_GRAPH
 * backward records them; the masks of l1 and huber are constants. Both
 * inputs may need a gradient (a target made by another network).
 * Legend: n = the number of elements, d = pred - target.
 */
#include "internal.h"
#include "parallel.h"
#include "vmath.h"

#include <math.h>

/* ---- the shared kernel and public-function shape ------------------------------------ */

/* The sum over i of f(a, b) with a = A[i], b = B[i] in double and the op's
 * attribute p; one function per dtype. The terms go into TG_LANES
 * interleaved partial sums (term i into lane i % TG_LANES, tg_sum_lanes),
 * not one chain of dependent additions: a regression's loss over a large
 * output took an addition's latency per element. With an AVX-512 copy
 * (doubles of float data fill twice the lanes): huber over (512,784)
 * floats, forward and backward, 320 -> 235 us. */
typedef double (*loss_kernel)(const void *A, const void *B, size_t n, double p);

#define LOSS_KERNEL(k, f) LOSS_KERNEL_T(k##_f64, double, f) LOSS_KERNEL_T(k##_f32, float, f)
#define LOSS_KERNEL_T(name, T, f)                                                          \
	TG_HOT_LOOP_WIDE                                                                   \
	static double name(const void *A_, const void *B_, size_t n, double p)             \
	{                                                                                  \
		const T *A = A_, *B = B_;                                                  \
		double l[TG_LANES] = { 0 };                                                \
		(void)p;                                                                   \
		size_t i = 0;                                                              \
		for (; i + TG_LANES <= n; i += TG_LANES)                                   \
			for (int k = 0; k < TG_LANES; k++) {                               \
				double a = A[i + k], b = B[i + k];                         \
				l[k] += (f);                                               \
			}                                                                  \
		for (; i < n; i++) {                                                       \
			double a = A[i], b = B[i];                                         \
			l[i % TG_LANES] += (f);                                            \
		}                                                                          \
		return tg_sum_lanes(l);                                                    \
	}

/* Checks the two inputs in[0], in[1] (named names[0], names[1] in errors):
 * one context, one dtype, one shape. Returns the context, or NULL after
 * recording why. */
static tg_ctx *pair_begin(const char *who, tg_tensor *const *in, const char *const *names)
{
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	if (!tg_same_shape(in[0], in[1])) {
		char sa[TG_SHAPE_STR], sb[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE,
			       "%s: %s %s and %s %s must have the same shape (a loss does not "
			       "broadcast)",
			       who, names[0], tg_shape_fmt(in[0]->ndim, in[0]->shape, sa), names[1],
			       tg_shape_fmt(in[1]->ndim, in[1]->shape, sb));
	}
	return ctx;
}

/* A loss's terms are summed by tg_parallel_sum: over more than
 * TG_SUM_BLOCK elements in fixed blocks across the threads, with the same
 * bits at every thread count. With one run, a loss ran on one thread at
 * any thread count: bce_with_logits over (512,784), an exp and a log1p an
 * element, was slower at 2 threads than PyTorch's. */
typedef struct loss_run {
	loss_kernel k;
	const char *A, *B;
	size_t es;
	double p;
} loss_run;

static double loss_block(void *arg, size_t lo, size_t m)
{
	const loss_run *r = arg;
	return r->k(r->A + lo * r->es, r->B + lo * r->es, m, r->p);
}

/* The scalar mean of the kernel's terms over in[0], in[1], recorded as op
 * with the attribute p (saved when np is 1). */
static tg_tensor *mean_loss(const tg_op *op, tg_ctx *ctx, const char *who, tg_tensor *const *in,
			    loss_kernel k64, loss_kernel k32, double p, int np)
{
	tg_tensor *out = tg_tensor_new(ctx, who, in[0]->dtype, 0, NULL);
	if (!out)
		return NULL;
	size_t n = in[0]->numel;
	loss_run r = { in[0]->dtype == TG_F64 ? k64 : k32, in[0]->data, in[1]->data,
		       tg_dtype_size(in[0]->dtype), p };
	double s = tg_parallel_sum(ctx, n, loss_block, &r);
	double mean = s / (double)n;
	if (out->dtype == TG_F64)
		*(double *)out->data = mean;
	else
		*(float *)out->data = (float)mean;
	return tg_op_end(op, out, 2, in, &p, np, NULL);
}

#define MEAN_LOSS(op, ctx, who, in, k, p, np) mean_loss(op, ctx, who, in, k##_f64, k##_f32, p, np)

/* dout * c / n, a scalar: the upstream gradient spread over the mean. */
static tg_tensor *spread(const tg_node *n, tg_tensor *dout, double c)
{
	return tg_mul_scalar(dout, c / (double)tg_node_input(n, 0)->numel);
}

/* spread's scalar dout c / n as a value of the dtype, rounded as
 * tg_mul_scalar rounds it: for the one-pass gradients. */
static double spread_scalar(const tg_node *n, const tg_tensor *dout, double c)
{
	const double f = c / (double)tg_node_input(n, 0)->numel;
	return dout->dtype == TG_F64 ? *(const double *)dout->data * f
				     : (double)(*(const float *)dout->data * (float)f);
}

/* Hands pred the gradient g and target -g. */
static void to_both(tg_node *n, tg_tensor *g)
{
	tg_node_grad(n, 0, g);
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, tg_neg(g));
}

/* ---- constant masks of d = a - b --------------------------------------------------------- */
/* Made without history: their derivative is zero wherever it exists. */

typedef enum {
	SIGN,    /* sign(d), 0 at 0 */
	INSIDE,  /* [|d| <= p] */
	OUTSIDE, /* |d| > p ? p sign(d) : 0; NaN at a NaN d */
} mask_kind;

static double mask_value(mask_kind k, double d, double p)
{
	switch (k) {
	case SIGN:
		return (double)(d > 0) - (double)(d < 0);
	case INSIDE:
		return fabs(d) <= p ? 1 : 0;
	case OUTSIDE:
		return fabs(d) <= p ? 0 : isnan(d) ? d : copysign(p, d);
	}
	return 0;
}

static tg_tensor *mask(const tg_node *n, mask_kind k, double p)
{
	const tg_tensor *a = tg_node_input(n, 0), *b = tg_node_input(n, 1);
	tg_tensor *m = tg_tensor_like(a, "a loss's backward");
	if (!m)
		return NULL;
	if (a->dtype == TG_F64) {
		const double *A = a->data, *B = b->data;
		double *M = m->data;
		for (size_t i = 0; i < a->numel; i++)
			M[i] = mask_value(k, A[i] - B[i], p);
	} else {
		const float *A = a->data, *B = b->data;
		float *M = m->data;
		for (size_t i = 0; i < a->numel; i++)
			M[i] = (float)mask_value(k, (double)A[i] - B[i], p);
	}
	return m;
}

/* ---- the regression losses' gradients in one pass ------------------------------------ */
/* A plain backward computes d pred = local(d) * s and d target = -d pred
 * in one pass, s = dout c / n in the dtype, rounding each step as the
 * composed rule below it does (tg_sub, the masks from the double
 * difference, tg_mul, tg_add, the spread scalar): the same bits, in one
 * pass instead of three to six. A recorded backward (TG_CREATE_GRAPH)
 * composes ops, so that the gradient has history. */

typedef enum { GRAD_MSE, GRAD_L1, GRAD_HUBER } grad_kind;

/* One loop per kind and per target (with or without -g), each free of
 * branches, so that they vectorise; local is the kind's mask expression
 * over d (the dtype's difference) and dd (the double one), written as
 * mask_value has it. */
#define LOSS_GRAD_LOOP(T, LOCAL)                                                           \
	do {                                                                               \
		if (NG)                                                                    \
			for (size_t i = 0; i < n; i++) {                                   \
				const double dd = (double)A[i] - B[i];                     \
				const T d = A[i] - B[i];                                   \
				(void)dd, (void)d;                                         \
				const T g = (LOCAL) * s;                                   \
				G[i] = g;                                                  \
				NG[i] = -g;                                                \
			}                                                                  \
		else                                                                       \
			for (size_t i = 0; i < n; i++) {                                   \
				const double dd = (double)A[i] - B[i];                     \
				const T d = A[i] - B[i];                                   \
				(void)dd, (void)d;                                         \
				G[i] = (LOCAL) * s;                                        \
			}                                                                  \
	} while (0)

#define LOSS_GRAD_KERNEL(name, T)                                                          \
	TG_HOT_LOOP_WIDE                                                                   \
	static void name(grad_kind k, const T *restrict A, const T *restrict B, T s,        \
			 double p, T *restrict G, T *restrict NG, size_t n)                 \
	{                                                                                  \
		if (k == GRAD_MSE)                                                         \
			LOSS_GRAD_LOOP(T, d);                                              \
		else if (k == GRAD_L1) /* SIGN */                                          \
			LOSS_GRAD_LOOP(T, (T)((double)(dd > 0) - (double)(dd < 0)));       \
		else /* INSIDE ? d : OUTSIDE */                                            \
			LOSS_GRAD_LOOP(T, fabs(dd) <= p ? d                                \
					      : (T)(isnan(dd) ? dd : copysign(p, dd)));    \
	}

LOSS_GRAD_KERNEL(loss_grad_f64, double)
LOSS_GRAD_KERNEL(loss_grad_f32, float)

typedef struct loss_grad_job {
	grad_kind k;
	bool f64;
	const void *A, *B;
	double s, p; /* s in the dtype already */
	void *G, *NG;
} loss_grad_job;

static void loss_grad_part(void *arg, size_t lo, size_t hi)
{
	const loss_grad_job *j = arg;
	if (j->f64)
		loss_grad_f64(j->k, (const double *)j->A + lo, (const double *)j->B + lo, j->s, j->p,
			      (double *)j->G + lo, j->NG ? (double *)j->NG + lo : NULL, hi - lo);
	else
		loss_grad_f32(j->k, (const float *)j->A + lo, (const float *)j->B + lo, (float)j->s,
			      j->p, (float *)j->G + lo, j->NG ? (float *)j->NG + lo : NULL, hi - lo);
}

/* d pred of a plain backward for the kind, c the spread's factor (2 for
 * mse) and p huber's delta; d target into *neg when target needs one. */
static tg_tensor *loss_grad(tg_node *n, tg_tensor *dout, grad_kind k, double c, double p,
			    tg_tensor **neg)
{
	tg_tensor *a = tg_node_input(n, 0), *b = tg_node_input(n, 1);
	static const char who[] = "a loss's backward";
	const bool target = tg_node_needs_grad(n, 1);
	tg_tensor *g = tg_tensor_like(a, who);
	tg_tensor *ng = g && target ? tg_tensor_like(b, who) : NULL;
	if (!g || (target && !ng))
		return NULL;
	loss_grad_job j = { k, a->dtype == TG_F64, a->data, b->data, spread_scalar(n, dout, c),
			    p, g->data, ng ? ng->data : NULL };
	tg_parallel_for(a->ctx, a->numel, TG_PAR_MIN, 16, loss_grad_part, &j);
	*neg = ng;
	return g;
}

/* The plain backward's one pass, when it applies; false for a recorded one. */
static bool loss_grad_fused(tg_node *n, tg_tensor *dout, grad_kind k, double c, double p)
{
	if (tg_node_input(n, 0)->ctx->grad_enabled)
		return false;
	tg_tensor *neg = NULL;
	TG_NODE_GRAD_INTO(n, 0, loss_grad(n, dout, k, c, p, &neg));
	if (neg)
		tg_node_grad(n, 1, neg);
	return true;
}

/* ---- mse: L = mean(d^2); d pred = dout 2 d / n, d target = -d pred ----------------------- */

LOSS_KERNEL(mse, (a - b) * (a - b))

static void mse_backward(tg_node *n, tg_tensor *dout)
{
	if (loss_grad_fused(n, dout, GRAD_MSE, 2.0, 0))
		return;
	tg_tensor *d = tg_sub(tg_node_input(n, 0), tg_node_input(n, 1));
	to_both(n, tg_mul(d, spread(n, dout, 2.0)));
}

static const tg_op mse_op = { .name = "mse", .backward = mse_backward };
TG_OP_REGISTER(mse_op);

tg_tensor *tg_mse(tg_tensor *pred, tg_tensor *target)
{
	static const char who[] = "tg_mse";
	tg_tensor *in[2] = { pred, target };
	tg_ctx *ctx = pair_begin(who, in, (const char *[]){ "pred", "target" });
	return ctx ? MEAN_LOSS(&mse_op, ctx, who, in, mse, 0, 0) : NULL;
}

/* ---- l1: L = mean|d|; d pred = dout sign(d) / n, 0 at d = 0; d target = -d pred ---------- */

LOSS_KERNEL(l1, fabs(a - b))

static void l1_backward(tg_node *n, tg_tensor *dout)
{
	if (loss_grad_fused(n, dout, GRAD_L1, 1.0, 0))
		return;
	to_both(n, tg_mul(mask(n, SIGN, 0), spread(n, dout, 1.0)));
}

static const tg_op l1_op = { .name = "l1", .backward = l1_backward };
TG_OP_REGISTER(l1_op);

tg_tensor *tg_l1(tg_tensor *pred, tg_tensor *target)
{
	static const char who[] = "tg_l1";
	tg_tensor *in[2] = { pred, target };
	tg_ctx *ctx = pair_begin(who, in, (const char *[]){ "pred", "target" });
	return ctx ? MEAN_LOSS(&l1_op, ctx, who, in, l1, 0, 0) : NULL;
}

/* ---- huber: L = mean(|d| <= delta ? d^2 / 2 : delta (|d| - delta / 2)) ------------------- */
/* d pred = dout clamp(d, -delta, delta) / n, written where(m, d, c) with the
 * constants m = [|d| <= delta] and c = |d| > delta ? delta sign(d) : 0, so
 * that a recorded backward differentiates the quadratic part again. A select,
 * not m d + c: an infinite d outside gets delta sign(d), not 0 inf = NaN. A
 * NaN d gets a NaN gradient, with no history (second derivative 0), as in
 * PyTorch. d target = -d pred. */

static inline double huber_term(double ad, double delta)
{
	double m = ad < delta ? ad : delta;
	return m * (ad - 0.5 * m);
}

/* As m (|d| - m / 2) with m = min(|d|, delta): the same value and rounding
 * (halving is exact) in fewer operations, and a NaN d, which is not below
 * delta, gives p (NaN - p / 2) = NaN as before. */
LOSS_KERNEL(huber, huber_term(fabs(a - b), p))

static void huber_backward(tg_node *n, tg_tensor *dout)
{
	double delta = tg_node_attr(n, 0);
	if (loss_grad_fused(n, dout, GRAD_HUBER, 1.0, delta))
		return;
	tg_tensor *d = tg_sub(tg_node_input(n, 0), tg_node_input(n, 1));
	tg_tensor *local = tg_where(mask(n, INSIDE, delta), d, mask(n, OUTSIDE, delta));
	to_both(n, tg_mul(local, spread(n, dout, 1.0)));
}

static const tg_op huber_op = { .name = "huber", .backward = huber_backward };
TG_OP_REGISTER(huber_op);

tg_tensor *tg_huber(tg_tensor *pred, tg_tensor *target, double delta)
{
	static const char who[] = "tg_huber";
	tg_tensor *in[2] = { pred, target };
	tg_ctx *ctx = pair_begin(who, in, (const char *[]){ "pred", "target" });
	if (!ctx)
		return NULL;
	if (!(delta > 0 && isfinite(delta)))
		return tg_fail(ctx, TG_EARG, "%s: delta = %g must be positive and finite", who,
			       delta);
	return MEAN_LOSS(&huber_op, ctx, who, in, huber, delta, 1);
}

/* ---- bce_with_logits: L = mean(max(x, 0) - x t + ln(1 + e^-|x|)) ------------------------- */
/* The binary cross-entropy of sigmoid(x) against t, -t ln s - (1 - t) ln(1 - s),
 * rewritten so that nothing overflows: e^-|x| <= 1, and for |x| large the
 * log term underflows to 0 and the loss is max(x, 0) - x t exactly; an
 * infinite x gives that term's limit (bce_linear).
 * d logits = dout (sigmoid(x) - t) / n, d targets = -dout x / n. The log
 * terms are SLEEF's exp and log1p in double (vmath.h), CHUNK at a time. */

enum { CHUNK = 256 };

/* max(x, 0) - x t: the fast form, NaN at an infinite x (inf - inf, inf 0) */
#define BCE_PLAIN(x, t) (((x) > 0 ? (x) : 0) - (x) * (t))

/* The same, and at an infinite x its limit: 0 for a logit confidently right
 * (+inf with t = 1, -inf with t = 0), else +inf. */
static inline double bce_linear(double x, double t)
{
	return isinf(x) ? ((x > 0 ? 1 - t : t) == 0 ? 0 : INFINITY) : BCE_PLAIN(x, t);
}

#define BCE_KERNEL(name, T, LINEAR)                                                        \
	TG_HOT_LOOP static double name(const void *A_, const void *B_, size_t n, double p) \
	{                                                                                  \
		const T *A = A_, *B = B_;                                                  \
		double l[TG_LANES] = { 0 }, e[CHUNK];                                      \
		(void)p;                                                                   \
		for (size_t i0 = 0; i0 < n; i0 += CHUNK) {                                 \
			size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;                        \
			for (size_t i = 0; i < m; i++)                                     \
				e[i] = -fabs((double)A[i0 + i]);                           \
			tg_vmath_exp_f64(e, e, m);                                         \
			tg_vmath_log1p_f64(e, e, m);                                       \
			/* CHUNK % TG_LANES == 0: lane i % TG_LANES is lane         \
			 * (i0 + i) % TG_LANES; TG_LANES at a time, so that the    \
			 * lanes stay in registers */                              \
			size_t i = 0;                                                      \
			for (; i + TG_LANES <= m; i += TG_LANES)                           \
				for (int k = 0; k < TG_LANES; k++) {                       \
					double a = A[i0 + i + k], b = B[i0 + i + k];       \
					l[k] += LINEAR(a, b) + e[i + k];                   \
				}                                                          \
			for (; i < m; i++) {                                               \
				double a = A[i0 + i], b = B[i0 + i];                       \
				l[i % TG_LANES] += LINEAR(a, b) + e[i];                    \
			}                                                                  \
		}                                                                          \
		return tg_sum_lanes(l);                                                    \
	}

BCE_KERNEL(bce_plain_f64, double, BCE_PLAIN)
BCE_KERNEL(bce_plain_f32, float, BCE_PLAIN)
BCE_KERNEL(bce_limit_f64, double, bce_linear)
BCE_KERNEL(bce_limit_f32, float, bce_linear)

/* The fast loop; only a NaN sum, which an infinite logit makes, takes the
 * loop that knows the limits again (a NaN logit keeps it NaN). The finite
 * terms are the same in both, so are the bits. */
static double bce_f64(const void *A, const void *B, size_t n, double p)
{
	double s = bce_plain_f64(A, B, n, p);
	return isnan(s) ? bce_limit_f64(A, B, n, p) : s;
}

static double bce_f32(const void *A, const void *B, size_t n, double p)
{
	double s = bce_plain_f32(A, B, n, p);
	return isnan(s) ? bce_limit_f32(A, B, n, p) : s;
}

/* bce's plain backward in two passes where its ops made five: sigmoid(x)
 * (tg_sigmoid, into the logits' own buffer when they take it), then
 * d logits = (sigmoid(x) - t) s in place and d targets = (-x) s; the ops'
 * roundings, so the bits of a recorded backward, which keeps the ops. */
#define BCE_GRAD_KERNEL(name, T)                                                           \
	TG_HOT_LOOP static void name(const T *X, const T *B, T s, T *G, T *NG, size_t n)    \
	{                                                                                  \
		if (G)                                                                     \
			for (size_t i = 0; i < n; i++)                                     \
				G[i] = (G[i] - B[i]) * s;                                  \
		if (NG)                                                                    \
			for (size_t i = 0; i < n; i++)                                     \
				NG[i] = -X[i] * s;                                         \
	}

BCE_GRAD_KERNEL(bce_grad_f64, double)
BCE_GRAD_KERNEL(bce_grad_f32, float)

typedef struct bce_grad_job {
	bool f64;
	const void *X, *B;
	double s; /* in the dtype already */
	void *G, *NG;
} bce_grad_job;

static void bce_grad_part(void *arg, size_t lo, size_t hi)
{
	const bce_grad_job *j = arg;
	size_t es = j->f64 ? sizeof(double) : sizeof(float);
#define AT(p) ((p) ? (char *)(p) + lo * es : NULL)
	if (j->f64)
		bce_grad_f64((const double *)AT(j->X), (const double *)AT(j->B), j->s,
			     (double *)AT(j->G), (double *)AT(j->NG), hi - lo);
	else
		bce_grad_f32((const float *)AT(j->X), (const float *)AT(j->B), (float)j->s,
			     (float *)AT(j->G), (float *)AT(j->NG), hi - lo);
#undef AT
}

/* The logits' gradient, made after TG_NODE_GRAD_INTO has armed their
 * buffer, and the targets' into *neg when they need one. */
static tg_tensor *bce_grads(tg_node *n, tg_tensor *dout, tg_tensor **neg)
{
	tg_tensor *x = tg_node_input(n, 0), *t = tg_node_input(n, 1);
	const bool logits = tg_node_needs_grad(n, 0), targets = tg_node_needs_grad(n, 1);
	tg_tensor *g = logits ? tg_sigmoid(x) : NULL;
	tg_tensor *ng = targets ? tg_tensor_like(t, "a loss's backward") : NULL;
	if ((logits && !g) || (targets && !ng))
		return NULL;
	bce_grad_job j = { x->dtype == TG_F64, x->data, t->data, spread_scalar(n, dout, 1.0),
			   g ? g->data : NULL, ng ? ng->data : NULL };
	tg_parallel_for(x->ctx, x->numel, TG_PAR_MIN, 16, bce_grad_part, &j);
	*neg = ng;
	return g;
}

static void bce_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0), *t = tg_node_input(n, 1);
	if (!x->ctx->grad_enabled) {
		tg_tensor *neg = NULL;
		if (tg_node_needs_grad(n, 0))
			TG_NODE_GRAD_INTO(n, 0, bce_grads(n, dout, &neg));
		else
			bce_grads(n, dout, &neg);
		if (neg)
			tg_node_grad(n, 1, neg);
		return;
	}
	tg_tensor *s = spread(n, dout, 1.0);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_mul(tg_sub(tg_sigmoid(x), t), s));
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, tg_mul(tg_neg(x), s));
}

static const tg_op bce_with_logits_op = { .name = "bce_with_logits", .backward = bce_backward };
TG_OP_REGISTER(bce_with_logits_op);

/* How many of X[0..n) are outside [0, 1] or NaN, in one vector loop. */
#define OUTSIDE_KERNEL(name, T)                                                  \
	TG_HOT_LOOP static size_t name(const T *X, size_t n)                     \
	{                                                                        \
		size_t bad = 0;                                                  \
		for (size_t i = 0; i < n; i++)                                   \
			bad += !(X[i] >= 0 && X[i] <= 1);                        \
		return bad;                                                      \
	}
OUTSIDE_KERNEL(outside_unit_f64, double)
OUTSIDE_KERNEL(outside_unit_f32, float)

/* Every target in [0, 1] (soft targets allowed); else records the first
 * that is not. */
static bool targets_ok(tg_ctx *ctx, const char *who, const tg_tensor *t)
{
	if (!(t->dtype == TG_F64 ? outside_unit_f64(t->data, t->numel)
				 : outside_unit_f32(t->data, t->numel)))
		return true;
	for (size_t i = 0; i < t->numel; i++) {
		double v = t->dtype == TG_F64 ? ((const double *)t->data)[i]
					      : ((const float *)t->data)[i];
		if (!(v >= 0 && v <= 1)) {
			char buf[TG_SHAPE_STR];
			tg_fail(ctx, TG_EARG, "%s: targets %s: element %zu is %g, outside [0, 1]",
				who, tg_shape_fmt(t->ndim, t->shape, buf), i, v);
			return false;
		}
	}
	return true;
}

tg_tensor *tg_bce_with_logits(tg_tensor *logits, tg_tensor *targets)
{
	static const char who[] = "tg_bce_with_logits";
	tg_tensor *in[2] = { logits, targets };
	tg_ctx *ctx = pair_begin(who, in, (const char *[]){ "logits", "targets" });
	if (!ctx || !targets_ok(ctx, who, targets))
		return NULL;
	return MEAN_LOSS(&bce_with_logits_op, ctx, who, in, bce, 0, 0);
}
