/*
 * unary.c - elementwise ops of one tensor: neg, exp, log, sqrt, abs,
 * log1p, expm1, sin, cos, erf, the activations (sigmoid, tanh, relu, leaky
 * relu, elu, softplus, gelu, silu) and the fused sigmoid_backward,
 * tanh_backward, relu_backward, leaky_relu_backward, elu_backward,
 * softplus_backward, gelu_backward and silu_backward.
 *
 * Each op: the kernel, the public function (check, compute, record), the
 * backward rule written with ops on the node's saved input and output (so a
 * TG_CREATE_GRAPH backward gives gradients with history), the descriptor.
 * A plain backward of a rule whose ops make several passes runs them as
 * one pass with the same roundings (grad_one_pass).
 * Masks of the backward pass are constants made with grad mode off.
 * The elementary functions (exp, log, tanh, erf, ...) are SLEEF's, over
 * whole arrays at the CPU's vector width (vmath.h): within 1 ULP of the
 * exact value (erfc 1.5), tests/ops/test_ulp.c measures each op. gelu's
 * Phi of floats is computed in double from SLEEF's exp (phi_chunk_f32).
 */
#include "internal.h"
#include "fused.h"
#include "parallel.h"
#include "vmath.h"

/* exp, log, tanh, ... pick the float or double function from the argument's
 * type, so one expression serves the f32 and the f64 kernel. Constants in
 * the expressions are integers so that f32 stays f32. */
#include <tgmath.h>

/* ---- the shared kernel and public-function shape ----------------------------- */

typedef void (*kernel_f64)(const double *X, double *Y, size_t n, const double *p);
typedef void (*kernel_f32)(const float *X, float *Y, size_t n, const double *p);

/* One loop per dtype computing Y = f(X); f is an expression of x and of the
 * op's attributes a, b, c (p[0..2], converted to the dtype), compiled with
 * an AVX2 copy (TG_HOT_LOOP: a third faster than SSE2 on tensors that fit
 * in the caches, the same bits). k_min is the size from which the loop is
 * split across the context's threads. */
#define UNARY_KERNEL(k, f)                                                              \
	enum { k##_min = TG_PAR_MIN };                                                  \
	TG_HOT_LOOP static void k##_f64(const double *X, double *Y, size_t n,           \
					const double *p)                                \
	{                                                                               \
		const double a = p[0], b = p[1], c = p[2];                              \
		(void)a, (void)b, (void)c;                                              \
		for (size_t i = 0; i < n; i++) {                                        \
			double x = X[i];                                                \
			Y[i] = (f);                                                     \
		}                                                                       \
	}                                                                               \
	TG_HOT_LOOP static void k##_f32(const float *X, float *Y, size_t n,             \
					const double *p)                                \
	{                                                                               \
		const float a = (float)p[0], b = (float)p[1], c = (float)p[2];          \
		(void)a, (void)b, (void)c;                                              \
		for (size_t i = 0; i < n; i++) {                                        \
			float x = X[i];                                                 \
			Y[i] = (f);                                                     \
		}                                                                       \
	}

/* A kernel over a part [lo, hi) of its elements, for tg_parallel_for. */
typedef struct unary_job {
	kernel_f64 k64;
	kernel_f32 k32;
	const void *X;
	void *Y;
	const double *p;
} unary_job;

static void unary_part(void *arg, size_t lo, size_t hi)
{
	const unary_job *j = arg;
	if (j->k64)
		j->k64((const double *)j->X + lo, (double *)j->Y + lo, hi - lo, j->p);
	else
		j->k32((const float *)j->X + lo, (float *)j->Y + lo, hi - lo, j->p);
}

/* Y = k(X) over n elements of x's dtype, split across ctx's threads from
 * min elements on. Every kernel's Y[i] depends on X[i] alone, so a split
 * gives the bits of one pass. */
static void run_unary(const tg_tensor *x, void *Y, kernel_f64 k64, kernel_f32 k32, size_t min,
		      const double *p)
{
	unary_job j = { x->dtype == TG_F64 ? k64 : NULL, k32, x->data, Y, p };
	tg_parallel_for(x->ctx, x->numel, min, 16, unary_part, &j);
}

/* Checks x, runs the kernel of x's dtype into a new tensor and records the
 * node with the attributes p[0..np) (np <= 3). */
static tg_tensor *unary(const tg_op *op, const char *who, tg_tensor *x, kernel_f64 k64,
			kernel_f32 k32, size_t min, const double *p, int np)
{
	double attr[3] = { 0, 0, 0 };
	for (int i = 0; i < np; i++)
		attr[i] = p[i];
	if (!tg_op_begin(who, 1, &x))
		return NULL;
	tg_tensor *out = tg_tensor_like(x, who);
	if (!out)
		return NULL;
	run_unary(x, out->data, k64, k32, min, attr);
	return tg_op_end(op, out, 1, &x, attr, np, NULL);
}

#define UNARY(op, who, x, k, p, np) unary(op, who, x, k##_f64, k##_f32, k##_min, p, np)

/* ---- kernels over the vector functions of vmath.h --------------------------- */

/* y = f(x) for one function f of vmath.h */
#define VMATH_KERNEL(k)                                                                 \
	enum { k##_min = TG_PAR_MIN_MATH };                                             \
	static void k##_f64(const double *X, double *Y, size_t n, const double *p)      \
	{                                                                               \
		(void)p;                                                                \
		tg_vmath_##k##_f64(X, Y, n);                                            \
	}                                                                               \
	static void k##_f32(const float *X, float *Y, size_t n, const double *p)        \
	{                                                                               \
		(void)p;                                                                \
		tg_vmath_##k##_f32(X, Y, n);                                            \
	}

/* Elements go through the vector functions a chunk at a time, small enough
 * to stay in L1 between the passes. */
enum { CHUNK = 256 };

/* y = post(x, e) with e = F(pre(x)), pre and post expressions of x (post
 * also of e) and the attribute a, F one or more vmath functions applied in
 * turn: CALLS(S) expands to their calls on e[0..m) for the dtype suffix S.
 * Y holds e between the passes; `real` names the dtype in pre and post. */
#define CHUNKED_KERNEL(k, pre, CALLS, post)                                               \
	enum { k##_min = TG_PAR_MIN_MATH };                                               \
	CHUNKED_KERNEL_T(k##_f64, double, f64, pre, CALLS, post)                          \
	CHUNKED_KERNEL_T(k##_f32, float, f32, pre, CALLS, post)
#define CHUNKED_KERNEL_T(name, T, S, pre, CALLS, post)                                    \
	TG_HOT_LOOP static void name(const T *X, T *Y, size_t n, const double *p)         \
	{                                                                                 \
		typedef T real; /* the dtype, for casts in pre and post */                \
		const real a = (real)p[0];                                                \
		(void)a;                                                                  \
		for (size_t i0 = 0; i0 < n; i0 += CHUNK) {                                \
			size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;                       \
			const T *xs = X + i0;                                             \
			T *e = Y + i0;                                                    \
			for (size_t i = 0; i < m; i++) {                                  \
				T x = xs[i];                                              \
				e[i] = (pre);                                             \
			}                                                                 \
			CALLS(S)                                                          \
			for (size_t i = 0; i < m; i++) {                                  \
				T x = xs[i], ei = e[i];                                   \
				e[i] = (post);                                            \
			}                                                                 \
		}                                                                         \
	}

#define CALL_EXP(S) tg_vmath_exp_##S(e, e, m);
#define CALL_EXPM1_NONPOS(S) tg_vmath_expm1_nonpos_##S(e, e, m);
#define CALL_ERFC(S) tg_vmath_erfc_##S(e, e, m);
#define CALL_EXP_LOG1P(S) tg_vmath_exp_##S(e, e, m); tg_vmath_log1p_##S(e, e, m);
#define CALL_COS(S) tg_vmath_cos_##S(e, e, m);
#define CALL_SIN(S) tg_vmath_sin_##S(e, e, m);

/* ---- a rule's plain backward in one pass ---------------------------------------- */
/* Rules whose ops make two or more passes (sqrt, abs, log1p, expm1, sin, cos,
 * erf) take a plain backward in one pass over dout and the saved tensor,
 * rounding in the dtype as their ops do, in the same order: the same bits.
 * A TG_CREATE_GRAPH backward keeps the ops, so that the gradient has
 * history. */

/* O = f(d, t) elementwise, f of dout's element d and the saved tensor's t */
#define GRAD_KERNEL_T(name, T, f)                                                         \
	TG_HOT_LOOP static void name(const T *D, const T *X, T *O, size_t n, double a)     \
	{                                                                                 \
		typedef T real; /* the dtype, for casts in f */                           \
		(void)a, (void)(real)0;                                                   \
		for (size_t i = 0; i < n; i++) {                                          \
			T d = D[i], t = X[i];                                             \
			O[i] = (f);                                                       \
		}                                                                         \
	}
#define GRAD_KERNEL(k, f)                                                                 \
	enum { k##_grad_min = TG_PAR_MIN };                                               \
	GRAD_KERNEL_T(k##_grad_f64, double, f) GRAD_KERNEL_T(k##_grad_f32, float, f)

/* O = post(d, e) with e = F(pre(t)), F the vmath functions CALLS(S) applies
 * to e[0..m), a chunk at a time, as CHUNKED_KERNEL */
#define GRAD_CHUNKED_T(name, T, S, pre, CALLS, post)                                      \
	TG_HOT_LOOP static void name(const T *D, const T *X, T *O, size_t n, double a)     \
	{                                                                                 \
		typedef T real; /* the dtype, for casts in pre and post */                \
		(void)a, (void)(real)0;                                                   \
		T e[CHUNK];                                                               \
		for (size_t i0 = 0; i0 < n; i0 += CHUNK) {                                \
			size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;                       \
			for (size_t i = 0; i < m; i++) {                                  \
				T t = X[i0 + i];                                          \
				e[i] = (pre);                                             \
			}                                                                 \
			CALLS(S)                                                          \
			for (size_t i = 0; i < m; i++) {                                  \
				T d = D[i0 + i], ei = e[i];                               \
				O[i0 + i] = (post);                                       \
			}                                                                 \
		}                                                                         \
	}
#define GRAD_CHUNKED(k, pre, CALLS, post)                                                 \
	enum { k##_grad_min = TG_PAR_MIN_MATH };                                          \
	GRAD_CHUNKED_T(k##_grad_f64, double, f64, pre, CALLS, post)                       \
	GRAD_CHUNKED_T(k##_grad_f32, float, f32, pre, CALLS, post)

/* k(dout, t), made after TG_NODE_GRAD_INTO has armed the leaf's buffer */
static tg_tensor *fused_grad(const tg_node *n, tg_tensor *dout, tg_tensor *t, tg_fused_f64 k64,
			     tg_fused_f32 k32, size_t min)
{
	tg_tensor *dx = tg_tensor_like(t, n->op->name);
	if (dx)
		tg_run_fused(dout, t, dx, k64, k32, min, 0);
	return dx;
}

/* Gives input 0 of n its gradient k(dout, t) in one pass and returns true,
 * or false where the rule must run its ops (a recorded backward). */
static bool grad_one_pass(tg_node *n, tg_tensor *dout, tg_tensor *t, tg_fused_f64 k64,
			  tg_fused_f32 k32, size_t min)
{
	if (t->ctx->grad_enabled || !tg_same_shape(dout, t) || dout->dtype != t->dtype)
		return false;
	TG_NODE_GRAD_INTO(n, 0, fused_grad(n, dout, t, k64, k32, min));
	return true;
}

#define GRAD_ONE_PASS(n, dout, t, k) grad_one_pass(n, dout, t, k##_grad_f64, k##_grad_f32, k##_grad_min)

/* ---- step: pos where x > 0, zero where x == 0, neg where x < 0 ------------------ */
/* The masks of elu's second derivative and abs's recorded gradient
 * (sign(x) dout). Its derivative is zero wherever it has one, so its rule
 * hands x nothing; but it is recorded as an op of x, as PyTorch's sgn is:
 * abs's TG_CREATE_GRAPH gradient then has x in its history, and a
 * derivative through it is zeros, not an output without history. */

UNARY_KERNEL(step, x > 0 ? a : (x < 0 ? c : b))

static void step_backward(tg_node *n, tg_tensor *dout)
{
	(void)n, (void)dout; /* piecewise constant: x gets no gradient */
}

static const tg_op step_op = { .name = "step", .backward = step_backward };
TG_OP_REGISTER(step_op);

static tg_tensor *step_of(tg_tensor *x, double pos, double zero, double neg)
{
	const double p[3] = { pos, zero, neg };
	return UNARY(&step_op, "step", x, step, p, 3);
}

/* ---- neg: y = -x; dx = -dout ----------------------------------------------------- */

UNARY_KERNEL(neg, -x)

static void neg_backward(tg_node *n, tg_tensor *dout)
{
	if (dout->lazy_fill) /* a sum's uniform gradient, negated as its one value */
		tg_node_grad_expand(n, 0, tg_neg(tg_uniform_value(dout)));
	else
		TG_NODE_GRAD_INTO(n, 0, tg_neg(dout));
}

static const tg_op neg_op = { .name = "neg", .backward = neg_backward, .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(neg_op);
TG_OP_READS_UNIFORM(neg_op);

tg_tensor *tg_neg(tg_tensor *x) { return UNARY(&neg_op, "tg_neg", x, neg, NULL, 0); }

/* ---- exp: y = e^x; dx = dout * y -------------------------------------------------- */

VMATH_KERNEL(exp)

static void exp_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, tg_mul(dout, tg_node_output(n)));
}

static const tg_op exp_op = { .name = "exp", .backward = exp_backward };
TG_OP_REGISTER(exp_op);
TG_OP_READS_UNIFORM(exp_op);

tg_tensor *tg_exp(tg_tensor *x) { return UNARY(&exp_op, "tg_exp", x, exp, NULL, 0); }

/* ---- log: y = ln x; dx = dout / x ---------------------------------------------------- */

VMATH_KERNEL(log)

static void log_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, tg_div(dout, tg_node_input(n, 0)));
}

static const tg_op log_op = { .name = "log", .backward = log_backward };
TG_OP_REGISTER(log_op);
TG_OP_READS_UNIFORM(log_op);

tg_tensor *tg_log(tg_tensor *x) { return UNARY(&log_op, "tg_log", x, log, NULL, 0); }

/* ---- sqrt: y = sqrt x; dx = dout / (2 y) ---------------------------------------------- */

UNARY_KERNEL(sqrt, sqrt(x))

GRAD_KERNEL(sqrt, d / (t * 2)) /* t: the output y */

static void sqrt_backward(tg_node *n, tg_tensor *dout)
{
	if (GRAD_ONE_PASS(n, dout, tg_node_output(n), sqrt))
		return;
	TG_NODE_GRAD_INTO(n, 0, tg_div(dout, tg_mul_scalar(tg_node_output(n), 2.0)));
}

static const tg_op sqrt_op = { .name = "sqrt", .backward = sqrt_backward };
TG_OP_REGISTER(sqrt_op);
TG_OP_READS_UNIFORM(sqrt_op);

tg_tensor *tg_sqrt(tg_tensor *x) { return UNARY(&sqrt_op, "tg_sqrt", x, sqrt, NULL, 0); }

/* ---- abs: y = |x|; dx = dout * sign(x), 0 at 0 ------------------------------------------ */

UNARY_KERNEL(abs, fabs(x))

GRAD_KERNEL(abs, d * (t > 0 ? (real)1 : (t < 0 ? (real)-1 : (real)0)))

static void abs_backward(tg_node *n, tg_tensor *dout)
{
	if (GRAD_ONE_PASS(n, dout, tg_node_input(n, 0), abs))
		return;
	tg_tensor *sign = step_of(tg_node_input(n, 0), 1.0, 0.0, -1.0);
	TG_NODE_GRAD_INTO(n, 0, tg_mul(dout, sign));
}

static const tg_op abs_op = { .name = "abs", .backward = abs_backward };
TG_OP_REGISTER(abs_op);
TG_OP_READS_UNIFORM(abs_op);

tg_tensor *tg_abs(tg_tensor *x) { return UNARY(&abs_op, "tg_abs", x, abs, NULL, 0); }

/* ---- sigmoid: y = 1 / (1 + e^-x); dx = sigmoid_backward(dout, y) = dout y (1 - y) ---- */
/* With e = e^-|x|: 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, so that
 * no exponential overflows and small values keep their relative precision. */

#define SIGMOID_OF(x, e) (((x) >= 0 ? 1 : (e)) / (1 + (e)))

CHUNKED_KERNEL(sigmoid, -fabs(x), CALL_EXP, SIGMOID_OF(x, ei))

/* O = D f(x, s), s = sigmoid(x) in its stable form, in chunks: O holds
 * e^-|x| between the passes. The fused local gradients of softplus and
 * silu, below. */
#define SIGMOID_TIMES_KERNEL(name, T, S, f)                                           \
	TG_HOT_LOOP static void name(const T *D, const T *X, T *O, size_t n, double a) \
	{                                                                             \
		(void)a;                                                              \
		for (size_t i0 = 0; i0 < n; i0 += CHUNK) {                            \
			size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;                   \
			const T *xs = X + i0;                                         \
			T *o = O + i0;                                                \
			for (size_t i = 0; i < m; i++)                                \
				o[i] = -fabs(xs[i]);                                  \
			tg_vmath_exp_##S(o, o, m);                                    \
			for (size_t i = 0; i < m; i++) {                              \
				T x = xs[i], s = SIGMOID_OF(x, o[i]);                 \
				o[i] = D[i0 + i] * (f);                               \
			}                                                             \
		}                                                                     \
	}

/* g dout s (1 - s), s = sigmoid(x), made of ops: part of the second
 * derivatives of softplus and silu */
static tg_tensor *g_dout_sigmoid_slope(tg_tensor *g, tg_tensor *dout, tg_tensor *s)
{
	return tg_sigmoid_backward(tg_mul(g, dout), s);
}

static void sigmoid_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, tg_sigmoid_backward(dout, tg_node_output(n)));
}

static const tg_op sigmoid_op = { .name = "sigmoid", .backward = sigmoid_backward };
TG_OP_REGISTER(sigmoid_op);
TG_OP_READS_UNIFORM(sigmoid_op);

tg_tensor *tg_sigmoid(tg_tensor *x)
{
	return UNARY(&sigmoid_op, "tg_sigmoid", x, sigmoid, NULL, 0);
}

/* ---- sigmoid_backward: out = dout y (1 - y); d dout = g y (1 - y), dy = g dout (1 - 2y) - */
/* sigmoid's local gradient as one fused op; its own rule keeps it
 * differentiable: the gradient for dout is this op again. */

static const tg_op sigmoid_backward_op;

TG_HOT_LOOP
static void sigmoid_backward_f64(const double *D, const double *Y, double *O, size_t n, double a)
{
	(void)a;
	for (size_t i = 0; i < n; i++)
		O[i] = D[i] * Y[i] * (1 - Y[i]);
}

TG_HOT_LOOP
static void sigmoid_backward_f32(const float *D, const float *Y, float *O, size_t n, double a)
{
	(void)a;
	for (size_t i = 0; i < n; i++)
		O[i] = D[i] * Y[i] * (1 - Y[i]);
}

tg_tensor *tg_sigmoid_backward(tg_tensor *dout, tg_tensor *y)
{
	tg_tensor *in[2] = { dout, y };
	tg_tensor *out = tg_fused_out("tg_sigmoid_backward", in, "y");
	if (!out)
		return NULL;
	tg_run_fused(dout, y, out, sigmoid_backward_f64, sigmoid_backward_f32, TG_PAR_MIN, 0);
	return tg_op_end(&sigmoid_backward_op, out, 2, in, NULL, 0, NULL);
}

static void sigmoid_backward_backward(tg_node *n, tg_tensor *g)
{
	tg_tensor *dout = tg_node_input(n, 0), *y = tg_node_input(n, 1);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_sigmoid_backward(g, y));
	if (tg_node_needs_grad(n, 1)) {
		tg_tensor *one_minus_2y = tg_add_scalar(tg_mul_scalar(y, -2.0), 1.0);
		tg_node_grad(n, 1, tg_mul(tg_mul(g, dout), one_minus_2y));
	}
}

static const tg_op sigmoid_backward_op = { .name = "sigmoid_backward",
					   .backward = sigmoid_backward_backward,
					   .inputs = (const char *const[]){ "dout", "y" } };
TG_OP_REGISTER(sigmoid_backward_op);

/* ---- tanh: y = tanh x; dx = dout (1 - y^2) -------------------------------------------- */

VMATH_KERNEL(tanh)

static void tanh_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, tg_tanh_backward(dout, tg_node_output(n)));
}

static const tg_op tanh_op = { .name = "tanh", .backward = tanh_backward };
TG_OP_REGISTER(tanh_op);
TG_OP_READS_UNIFORM(tanh_op);

tg_tensor *tg_tanh(tg_tensor *x) { return UNARY(&tanh_op, "tg_tanh", x, tanh, NULL, 0); }

/* ---- tanh_backward: out = dout (1 - y^2); d dout = tanh_backward(g, y), dy = -2 g dout y */
/* tanh's local gradient in one pass instead of four; it rounds as y * y,
 * 1 - that and the product with dout would one by one. */

static const tg_op tanh_backward_op;

#define TANH_BACKWARD_KERNEL(name, T)                                              \
	TG_HOT_LOOP                                                                \
	static void name(const T *D, const T *Y, T *O, size_t n, double a)         \
	{                                                                          \
		(void)a;                                                           \
		for (size_t i = 0; i < n; i++) {                                   \
			T y2 = Y[i] * Y[i];                                        \
			O[i] = D[i] * (1 - y2);                                    \
		}                                                                  \
	}

TANH_BACKWARD_KERNEL(tanh_backward_f64, double)
TANH_BACKWARD_KERNEL(tanh_backward_f32, float)

tg_tensor *tg_tanh_backward(tg_tensor *dout, tg_tensor *y)
{
	tg_tensor *in[2] = { dout, y };
	tg_tensor *out = tg_fused_out("tg_tanh_backward", in, "y");
	if (!out)
		return NULL;
	tg_run_fused(dout, y, out, tanh_backward_f64, tanh_backward_f32, TG_PAR_MIN, 0);
	return tg_op_end(&tanh_backward_op, out, 2, in, NULL, 0, NULL);
}

static void tanh_backward_backward(tg_node *n, tg_tensor *g)
{
	tg_tensor *dout = tg_node_input(n, 0), *y = tg_node_input(n, 1);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_tanh_backward(g, y));
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, tg_mul(tg_mul(g, dout), tg_mul_scalar(y, -2.0)));
}

static const tg_op tanh_backward_op = { .name = "tanh_backward",
					.backward = tanh_backward_backward,
					.inputs = (const char *const[]){ "dout", "y" } };
TG_OP_REGISTER(tanh_backward_op);

/* ---- relu: y = max(x, 0); dx = relu_backward(dout, x) = dout [x > 0], relu'(0) = 0 --- */

UNARY_KERNEL(relu, x < 0 ? 0 : x) /* NaN stays NaN */

static void relu_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, tg_relu_backward(dout, tg_node_input(n, 0)));
}

static const tg_op relu_op = { .name = "relu", .backward = relu_backward };
TG_OP_REGISTER(relu_op);
TG_OP_READS_UNIFORM(relu_op);

tg_tensor *tg_relu(tg_tensor *x) { return UNARY(&relu_op, "tg_relu", x, relu, NULL, 0); }

void tg_relu_in_place(tg_tensor *x)
{
	run_unary(x, x->data, relu_f64, relu_f32, relu_min, (const double[3]){ 0, 0, 0 });
}

/* ---- relu_backward: out = dout [x > 0]; d dout = relu_backward(g, x), dx = 0 ----------- */
/* relu's local gradient in one pass, with no mask tensor. A select, not a
 * product with the 0/1 mask (as PyTorch's threshold_backward): dout where
 * x > 0, else +0 whatever dout holds, so an infinite or NaN dout masked off
 * gives 0 (not NaN) and a negative one +0 (not -0); a NaN x is masked off.
 * The mask is a constant, so x gets no gradient. */

static const tg_op relu_backward_op;

TG_HOT_LOOP
static void relu_backward_f64(const double *D, const double *X, double *O, size_t n, double a)
{
	(void)a;
	for (size_t i = 0; i < n; i++) {
		const double d = D[i]; /* read unconditionally: a blend */
		O[i] = X[i] > 0 ? d : 0.0;
	}
}

TG_HOT_LOOP
static void relu_backward_f32(const float *D, const float *X, float *O, size_t n, double a)
{
	(void)a;
	for (size_t i = 0; i < n; i++) {
		const float d = D[i];
		O[i] = X[i] > 0 ? d : 0.0f;
	}
}

tg_tensor *tg_relu_backward(tg_tensor *dout, tg_tensor *x)
{
	tg_tensor *in[2] = { dout, x };
	tg_tensor *out = tg_fused_out("tg_relu_backward", in, "x");
	if (!out)
		return NULL;
	tg_run_fused(dout, x, out, relu_backward_f64, relu_backward_f32, TG_PAR_MIN, 0);
	return tg_op_end(&relu_backward_op, out, 2, in, NULL, 0, NULL);
}

static void relu_backward_backward(tg_node *n, tg_tensor *g)
{
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_relu_backward(g, tg_node_input(n, 1)));
}

static const tg_op relu_backward_op = { .name = "relu_backward",
					.backward = relu_backward_backward,
					.inputs = (const char *const[]){ "dout", "x" } };
TG_OP_REGISTER(relu_backward_op);

/* ---- leaky_relu: y = x > 0 ? x : alpha x; dx = dout (x > 0 ? 1 : alpha) ------------------ */

UNARY_KERNEL(leaky_relu, x > 0 ? x : a * x)

static void leaky_relu_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0,
			  tg_leaky_relu_backward(dout, tg_node_input(n, 0), tg_node_attr(n, 0)));
}

/* "alpha 0.01": leaky_relu's and elu's one constant */
static int alpha_describe(const tg_node *n, char *buf, size_t size)
{
	return tg_describe_num(buf, size, "alpha ", tg_node_attr(n, 0));
}

static const tg_op leaky_relu_op = { .name = "leaky_relu", .backward = leaky_relu_backward,
				     .describe = alpha_describe };
TG_OP_REGISTER(leaky_relu_op);
TG_OP_READS_UNIFORM(leaky_relu_op);

tg_tensor *tg_leaky_relu(tg_tensor *x, double alpha)
{
	return UNARY(&leaky_relu_op, "tg_leaky_relu", x, leaky_relu, &alpha, 1);
}

/* ---- leaky_relu_backward: out = dout (x > 0 ? 1 : alpha); d dout = the same of g, dx = 0 */
/* leaky relu's local gradient in one pass, with no mask tensor: the bits
 * of dout times the mask, which is a constant (x gets no gradient). */

static const tg_op leaky_relu_backward_op;

#define LEAKY_RELU_BACKWARD_KERNEL(name, T)                                        \
	TG_HOT_LOOP                                                                \
	static void name(const T *D, const T *X, T *O, size_t n, double alpha)     \
	{                                                                          \
		const T a = (T)alpha;                                              \
		for (size_t i = 0; i < n; i++) {                                   \
			T m = X[i] > 0 ? 1 : a;                                    \
			O[i] = D[i] * m;                                           \
		}                                                                  \
	}

LEAKY_RELU_BACKWARD_KERNEL(leaky_relu_backward_f64, double)
LEAKY_RELU_BACKWARD_KERNEL(leaky_relu_backward_f32, float)

tg_tensor *tg_leaky_relu_backward(tg_tensor *dout, tg_tensor *x, double alpha)
{
	tg_tensor *in[2] = { dout, x };
	tg_tensor *out = tg_fused_out("tg_leaky_relu_backward", in, "x");
	if (!out)
		return NULL;
	tg_run_fused(dout, x, out, leaky_relu_backward_f64, leaky_relu_backward_f32, TG_PAR_MIN,
		  alpha);
	return tg_op_end(&leaky_relu_backward_op, out, 2, in, &alpha, 1, NULL);
}

static void leaky_relu_backward_backward(tg_node *n, tg_tensor *g)
{
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_leaky_relu_backward(g, tg_node_input(n, 1), tg_node_attr(n, 0)));
}

static const tg_op leaky_relu_backward_op = { .name = "leaky_relu_backward",
					      .backward = leaky_relu_backward_backward,
					      .inputs = (const char *const[]){ "dout", "x" },
					      .describe = alpha_describe };
TG_OP_REGISTER(leaky_relu_backward_op);

/* ---- elu: y = x > 0 ? x : alpha (e^x - 1); dx = elu_backward(dout, x) --------------- */
/* ---- = dout (x > 0 ? 1 : alpha e^x) ---------------------------------------------------- */

CHUNKED_KERNEL(elu, x, CALL_EXPM1_NONPOS, x > 0 ? x : a * ei)

static void elu_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, tg_elu_backward(dout, tg_node_input(n, 0), tg_node_attr(n, 0)));
}

static const tg_op elu_op = { .name = "elu", .backward = elu_backward,
			      .describe = alpha_describe };
TG_OP_REGISTER(elu_op);
TG_OP_READS_UNIFORM(elu_op);

tg_tensor *tg_elu(tg_tensor *x, double alpha)
{
	return UNARY(&elu_op, "tg_elu", x, elu, &alpha, 1);
}

/* ---- elu_backward: out = dout m(x), m = x > 0 ? 1 : alpha e^x; d dout = elu_backward(g, x), */
/* ---- dx = g dout [x < 0] alpha e^x --------------------------------------------------------- */
/* elu's local gradient in one pass. The x <= 0 branch is alpha e^min(x, 0),
 * not y + alpha, which cancels for x << 0 (at x = -17 in f32, y + alpha
 * keeps no correct digit of 4.14e-8), and min keeps e^x from overflowing
 * where the mask drops it. It rounds as alpha e^x and the product with
 * dout would one by one. The rule for x is made of ops on x, so that it
 * differentiates again: alpha e^min(x, 0) as alpha exp(-relu(-x)) with
 * the constant mask [x < 0]. */

static const tg_op elu_backward_op;

/* O = D m(X), in chunks: O holds e^min(x, 0) between the passes */
#define ELU_BACKWARD_KERNEL(name, T, S)                                               \
	TG_HOT_LOOP static void name(const T *D, const T *X, T *O, size_t n,          \
				     double alpha)                                    \
	{                                                                             \
		const T a = (T)alpha;                                                 \
		for (size_t i0 = 0; i0 < n; i0 += CHUNK) {                            \
			size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;                   \
			const T *x = X + i0;                                          \
			T *o = O + i0;                                                \
			for (size_t i = 0; i < m; i++)                                \
				o[i] = x[i] > 0 ? 0 : x[i];                           \
			tg_vmath_exp_##S(o, o, m);                                    \
			for (size_t i = 0; i < m; i++) {                              \
				T e = a * o[i];                                       \
				T mask = x[i] > 0 ? 1 : e;                            \
				o[i] = D[i0 + i] * mask;                              \
			}                                                             \
		}                                                                     \
	}

ELU_BACKWARD_KERNEL(elu_backward_f64, double, f64)
ELU_BACKWARD_KERNEL(elu_backward_f32, float, f32)

tg_tensor *tg_elu_backward(tg_tensor *dout, tg_tensor *x, double alpha)
{
	tg_tensor *in[2] = { dout, x };
	tg_tensor *out = tg_fused_out("tg_elu_backward", in, "x");
	if (!out)
		return NULL;
	tg_run_fused(dout, x, out, elu_backward_f64, elu_backward_f32, TG_PAR_MIN_MATH, alpha);
	return tg_op_end(&elu_backward_op, out, 2, in, &alpha, 1, NULL);
}

static void elu_backward_backward(tg_node *n, tg_tensor *g)
{
	double alpha = tg_node_attr(n, 0);
	tg_tensor *dout = tg_node_input(n, 0), *x = tg_node_input(n, 1);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_elu_backward(g, x, alpha));
	if (tg_node_needs_grad(n, 1)) {
		tg_tensor *neg = step_of(x, 0.0, 0.0, 1.0);
		tg_tensor *e = tg_mul_scalar(tg_exp(tg_neg(tg_relu(tg_neg(x)))), alpha);
		tg_node_grad(n, 1, tg_mul(tg_mul(g, dout), tg_mul(neg, e)));
	}
}

static const tg_op elu_backward_op = { .name = "elu_backward", .backward = elu_backward_backward,
				       .inputs = (const char *const[]){ "dout", "x" },
				       .describe = alpha_describe };
TG_OP_REGISTER(elu_backward_op);

/* ---- softplus: y = ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|); dx = dout sigmoid(x) ------ */

CHUNKED_KERNEL(softplus, -fabs(x), CALL_EXP_LOG1P, (x > 0 ? x : 0) + ei)

static void softplus_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, tg_softplus_backward(dout, tg_node_input(n, 0)));
}

static const tg_op softplus_op = { .name = "softplus", .backward = softplus_backward };
TG_OP_REGISTER(softplus_op);
TG_OP_READS_UNIFORM(softplus_op);

tg_tensor *tg_softplus(tg_tensor *x)
{
	return UNARY(&softplus_op, "tg_softplus", x, softplus, NULL, 0);
}

/* ---- softplus_backward: out = dout s, s = sigmoid(x); d dout = softplus_backward(g, x), */
/* ---- dx = g dout s (1 - s) -------------------------------------------------------------- */
/* softplus's local gradient in one pass, where mul(dout, sigmoid(x)) made
 * two; the same roundings, so the same bits. The rule for x is made of
 * ops, so it differentiates again. */

static const tg_op softplus_backward_op;

SIGMOID_TIMES_KERNEL(softplus_backward_f64, double, f64, s)
SIGMOID_TIMES_KERNEL(softplus_backward_f32, float, f32, s)

tg_tensor *tg_softplus_backward(tg_tensor *dout, tg_tensor *x)
{
	tg_tensor *in[2] = { dout, x };
	tg_tensor *out = tg_fused_out("tg_softplus_backward", in, "x");
	if (!out)
		return NULL;
	tg_run_fused(dout, x, out, softplus_backward_f64, softplus_backward_f32, TG_PAR_MIN_MATH,
		     0);
	return tg_op_end(&softplus_backward_op, out, 2, in, NULL, 0, NULL);
}

static void softplus_backward_backward(tg_node *n, tg_tensor *g)
{
	tg_tensor *dout = tg_node_input(n, 0), *x = tg_node_input(n, 1);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_softplus_backward(g, x));
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, g_dout_sigmoid_slope(g, dout, tg_sigmoid(x)));
}

static const tg_op softplus_backward_op = { .name = "softplus_backward",
					    .backward = softplus_backward_backward,
					    .inputs = (const char *const[]){ "dout", "x" } };
TG_OP_REGISTER(softplus_backward_op);

/* ---- log1p: y = ln(1 + x); dx = dout / (1 + x) ---------------------------------------- */

VMATH_KERNEL(log1p)

GRAD_KERNEL(log1p, d / (t + 1))

static void log1p_backward(tg_node *n, tg_tensor *dout)
{
	if (GRAD_ONE_PASS(n, dout, tg_node_input(n, 0), log1p))
		return;
	TG_NODE_GRAD_INTO(n, 0, tg_div(dout, tg_add_scalar(tg_node_input(n, 0), 1.0)));
}

static const tg_op log1p_op = { .name = "log1p", .backward = log1p_backward };
TG_OP_REGISTER(log1p_op);
TG_OP_READS_UNIFORM(log1p_op);

tg_tensor *tg_log1p(tg_tensor *x) { return UNARY(&log1p_op, "tg_log1p", x, log1p, NULL, 0); }

/* ---- expm1: y = e^x - 1; dx = dout e^x ------------------------------------------------- */
/* e^x, not y + 1: for x << 0, y + 1 loses the relative precision of e^x. */

VMATH_KERNEL(expm1)

GRAD_CHUNKED(expm1, t, CALL_EXP, d * ei)

static void expm1_backward(tg_node *n, tg_tensor *dout)
{
	if (GRAD_ONE_PASS(n, dout, tg_node_input(n, 0), expm1))
		return;
	TG_NODE_GRAD_INTO(n, 0, tg_mul(dout, tg_exp(tg_node_input(n, 0))));
}

static const tg_op expm1_op = { .name = "expm1", .backward = expm1_backward };
TG_OP_REGISTER(expm1_op);
TG_OP_READS_UNIFORM(expm1_op);

tg_tensor *tg_expm1(tg_tensor *x) { return UNARY(&expm1_op, "tg_expm1", x, expm1, NULL, 0); }

/* ---- sin: y = sin x; dx = dout cos x --------------------------------------------------- */

VMATH_KERNEL(sin)

GRAD_CHUNKED(sin, t, CALL_COS, d * ei)

static void sin_backward(tg_node *n, tg_tensor *dout)
{
	if (GRAD_ONE_PASS(n, dout, tg_node_input(n, 0), sin))
		return;
	TG_NODE_GRAD_INTO(n, 0, tg_mul(dout, tg_cos(tg_node_input(n, 0))));
}

static const tg_op sin_op = { .name = "sin", .backward = sin_backward };
TG_OP_REGISTER(sin_op);
TG_OP_READS_UNIFORM(sin_op);

tg_tensor *tg_sin(tg_tensor *x) { return UNARY(&sin_op, "tg_sin", x, sin, NULL, 0); }

/* ---- cos: y = cos x; dx = -dout sin x -------------------------------------------------- */

VMATH_KERNEL(cos)

GRAD_CHUNKED(cos, t, CALL_SIN, d * -ei)

static void cos_backward(tg_node *n, tg_tensor *dout)
{
	if (GRAD_ONE_PASS(n, dout, tg_node_input(n, 0), cos))
		return;
	TG_NODE_GRAD_INTO(n, 0, tg_mul(dout, tg_neg(tg_sin(tg_node_input(n, 0)))));
}

static const tg_op cos_op = { .name = "cos", .backward = cos_backward };
TG_OP_REGISTER(cos_op);
TG_OP_READS_UNIFORM(cos_op);

tg_tensor *tg_cos(tg_tensor *x) { return UNARY(&cos_op, "tg_cos", x, cos, NULL, 0); }

/* ---- erf: y = erf x; dx = dout 2/sqrt(pi) e^(-x^2) ------------------------------------- */

static const double TWO_OVER_SQRT_PI = 1.1283791670955126;  /* 2 / sqrt(pi) */
static const double INV_SQRT_2 = 0.70710678118654752;       /* 1 / sqrt(2) */
static const double INV_SQRT_2PI = 0.39894228040143268;     /* 1 / sqrt(2 pi) */

VMATH_KERNEL(erf)

/* the ops' roundings: x x, its negation (exact), e^, times 2/sqrt(pi), times dout */
GRAD_CHUNKED(erf, -(t * t), CALL_EXP, d * (ei * (real)TWO_OVER_SQRT_PI))

static void erf_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	if (GRAD_ONE_PASS(n, dout, x, erf))
		return;
	tg_tensor *e = tg_exp(tg_mul_scalar(tg_mul(x, x), -1.0));
	TG_NODE_GRAD_INTO(n, 0, tg_mul(dout, tg_mul_scalar(e, TWO_OVER_SQRT_PI)));
}

static const tg_op erf_op = { .name = "erf", .backward = erf_backward };
TG_OP_REGISTER(erf_op);
TG_OP_READS_UNIFORM(erf_op);

tg_tensor *tg_erf(tg_tensor *x) { return UNARY(&erf_op, "tg_erf", x, erf, NULL, 0); }

/* ---- gelu: y = x Phi(x); dx = gelu_backward(dout, x) = dout (Phi(x) + x phi(x)) ------- */
/* Phi, the standard normal CDF, as erfc(-x / sqrt 2) / 2: the form
 * (1 + erf(x / sqrt 2)) / 2 cancels to 0 for x << 0, where erfc keeps the
 * tail's relative precision. phi(x) = e^(-x^2/2) / sqrt(2 pi). */

/* Phi of floats is computed in double from one exp, where SLEEF's erfcf
 * costs ten (2.4 ns an element against 0.2 for expf at AVX-512, which
 * made erfc half of a layer norm and gelu step): for u = |x| / sqrt 2 >= 0
 *	erfc(u) = t e^(P(t) - u^2),	t = 2 / (2 + u) in (0, 1],
 * P the polynomial of degree 11 fitted at 200 Chebyshev nodes of t in
 * [0, 1] to ln(erfc(u) / t) + u^2 (smooth, from 0 at u = 0 to
 * -ln(2 sqrt pi) as u -> inf), within 1.1e-8: a fifth of a float's ULP.
 * In double u^2 and the sum lose nothing a float would see, so Phi(x) =
 * erfc(u) / 2 for x < 0, 1 - erfc(u) / 2 else (no cancellation: the
 * difference is at least 1/2) rounds once to float. x = -inf gives 0,
 * +inf 1, NaN NaN, as erfc does. */
static const double PHI_P[12] = {
	-1.2655121242770697,  0.9999999272503559,  0.3750201989998203,
	0.08259243333521865,  -0.0747341950727179, -0.23370788756643557,
	0.3355402196096742,   -1.2254251582588038, 2.3987337161932376,
	-2.2051074910676114,  0.9913575936458079,  -0.17875724325422204,
};

/* a = P(t) - u^2 and t of each x, for the exp, with MAD(a, b, c) = a b + c:
 * rounded twice (the baseline's and the AVX copies', which have no FMA) or
 * once (fma). */
#define PHI_ARGS_LOOP(MAD)                                                              \
	for (size_t i = 0; i < m; i++) {                                                \
		double u = fabs((double)X[i]) * INV_SQRT_2;                             \
		double t = 2 / (2 + u);                                                 \
		double p = MAD(MAD(MAD(MAD(MAD(PHI_P[11], t, PHI_P[10]), t, PHI_P[9]), t, \
					PHI_P[8]), t, PHI_P[7]), t, PHI_P[6]);           \
		p = MAD(MAD(MAD(MAD(MAD(MAD(p, t, PHI_P[5]), t, PHI_P[4]), t, PHI_P[3]), t, \
				PHI_P[2]), t, PHI_P[1]), t, PHI_P[0]);                   \
		A[i] = MAD(-u, u, p);                                                   \
		T[i] = t;                                                               \
	}
#define PHI_MUL_ADD(a, b, c) ((a) * (b) + (c))

TG_HOT_LOOP_WIDE static void phi_args_f32(const float *X, double *A, double *T, size_t m)
{
	PHI_ARGS_LOOP(PHI_MUL_ADD)
}

/* The same with fused multiply-adds, for CPUs that have them (vmath.h's
 * AVX2 and AVX-512 levels): 12 operations where the loop above has 24.
 * Phi differs from the loop without FMA in one float of 32 million spread
 * over [-15, 10] (the fit's 1.1e-8 dwarfs either rounding). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PHI_FMA 1
__attribute__((target("avx512f,fma"))) static void phi_args_f32_avx512(const float *X, double *A,
								    double *T, size_t m)
{
	PHI_ARGS_LOOP(__builtin_fma)
}

__attribute__((target("avx2,fma"))) static void phi_args_f32_avx2(const float *X, double *A,
								 double *T, size_t m)
{
	PHI_ARGS_LOOP(__builtin_fma)
}
#else
#define PHI_FMA 0
#endif

/* Phi from a's exp and t, rounded to float */
TG_HOT_LOOP_WIDE static void phi_values_f32(const float *X, const double *E, const double *T,
					    float *Phi, size_t m)
{
	for (size_t i = 0; i < m; i++) {
		double h = T[i] * E[i] / 2; /* erfc(u) / 2 */
		Phi[i] = (float)(X[i] < 0 ? h : 1 - h);
	}
}

/* Phi(x) of m <= CHUNK floats */
static void phi_chunk_f32(const float *X, float *Phi, size_t m)
{
	double a[CHUNK], t[CHUNK];
#if PHI_FMA
	int level = tg_vmath_level();
	if (level == TG_VMATH_AVX512)
		phi_args_f32_avx512(X, a, t, m);
	else if (level == TG_VMATH_AVX2)
		phi_args_f32_avx2(X, a, t, m);
	else
#endif
		phi_args_f32(X, a, t, m);
	tg_vmath_exp_f64(a, a, m);
	phi_values_f32(X, a, t, Phi, m);
}

/* Phi(x) of m <= CHUNK doubles, as erfc(-x / sqrt 2) / 2 */
static void phi_chunk_f64(const double *X, double *Phi, size_t m)
{
	for (size_t i = 0; i < m; i++)
		Phi[i] = -X[i] * INV_SQRT_2;
	tg_vmath_erfc_f64(Phi, Phi, m);
	for (size_t i = 0; i < m; i++)
		Phi[i] = Phi[i] / 2;
}

/* Phi(x) into P and x Phi(x) into Y (P may be Y), in
 * chunks: every gelu kernel takes Phi from phi_chunk_S. A recorded gelu
 * keeps P as its aux and writes Y in the same pass, while the chunk of P is
 * in the cache. */
#define GELU_KERNELS(T, S)                                                            \
	TG_HOT_LOOP static void gelu_of_##S(const T *X, T *P, T *Y, size_t n)         \
	{                                                                             \
		for (size_t i0 = 0; i0 < n; i0 += CHUNK) {                            \
			size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;                   \
			phi_chunk_##S(X + i0, P + i0, m);                             \
			for (size_t i = 0; i < m; i++)                                \
				Y[i0 + i] = X[i0 + i] * P[i0 + i];                    \
		}                                                                     \
	}                                                                             \
	static void gelu_##S(const T *X, T *Y, size_t n, const double *p)             \
	{                                                                             \
		(void)p;                                                              \
		gelu_of_##S(X, Y, Y, n);                                              \
	}
GELU_KERNELS(double, f64)
GELU_KERNELS(float, f32)
enum { gelu_min = TG_PAR_MIN_MATH };

/* A recorded gelu's pass, Phi and y over the elements [lo, hi) */
typedef struct gelu_forward_job {
	bool f64;
	const void *x;
	void *phi, *y;
} gelu_forward_job;

static void gelu_forward_part(void *arg, size_t lo, size_t hi)
{
	const gelu_forward_job *j = arg;
	if (j->f64)
		gelu_of_f64((const double *)j->x + lo, (double *)j->phi + lo, (double *)j->y + lo,
			    hi - lo);
	else
		gelu_of_f32((const float *)j->x + lo, (float *)j->phi + lo, (float *)j->y + lo,
			    hi - lo);
}

/* Phi costs an erfc (6.9 ns an f64 at AVX-512) or an exp in double (an
 * f32), so a recorded gelu keeps Phi(x) as its node's aux, n elements of
 * x's dtype in the step arena, and its backward pass computes no Phi
 * again: the same Phi, so the same bits as tg_gelu_backward(dout, x). */
static tg_tensor *gelu_backward_of(tg_tensor *dout, tg_tensor *x, const void *phi);

static void gelu_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, gelu_backward_of(dout, tg_node_input(n, 0), n->aux));
}

static const tg_op gelu_op = { .name = "gelu", .backward = gelu_backward };
TG_OP_REGISTER(gelu_op);

tg_tensor *tg_gelu(tg_tensor *x)
{
	tg_ctx *ctx = tg_op_begin("tg_gelu", 1, &x);
	if (!ctx)
		return NULL;
	if (!tg_op_records(ctx, 1, &x))
		return UNARY(&gelu_op, "tg_gelu", x, gelu, NULL, 0);
	tg_tensor *out = tg_tensor_like(x, "tg_gelu");
	void *phi = out ? tg_arena_alloc(ctx, (size_t)x->numel * tg_dtype_size(x->dtype)) : NULL;
	if (!phi)
		return NULL;
	gelu_forward_job j = { x->dtype == TG_F64, x->data, phi, out->data };
	tg_parallel_for(ctx, x->numel, gelu_min, 16, gelu_forward_part, &j);
	return tg_op_end(&gelu_op, out, 1, &x, NULL, 0, phi);
}

/* ---- gelu_backward: out = dout (Phi(x) + x phi(x)); d dout = gelu_backward(g, x), ------ */
/* ---- dx = g dout phi(x) (2 - x^2) ------------------------------------------------------ */
/* gelu's local gradient as one fused op, with Phi from erfc (no op of the
 * library computes the tail of Phi with its relative precision). The rule
 * for x is made of ops, so it differentiates again. */

static const tg_op gelu_backward_op;

/* O = D (Phi(x) + x phi(x)), Phi(x) = erfc(-x / sqrt 2) / 2 (from P, the
 * forward pass's, when it is not NULL) and phi(x) = e^(-x^2 / 2) / sqrt(2 pi),
 * in chunks: c holds Phi, O the e. */
#define GELU_BACKWARD_KERNEL(name, T, S)                                              \
	TG_HOT_LOOP static void name(const T *D, const T *X, const T *P, T *O,        \
				     size_t n)                                        \
	{                                                                             \
		T c[CHUNK];                                                           \
		for (size_t i0 = 0; i0 < n; i0 += CHUNK) {                            \
			size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;                   \
			const T *x = X + i0, *Phi = P ? P + i0 : c;                   \
			T *o = O + i0;                                                \
			if (!P)                                                       \
				phi_chunk_##S(x, c, m);                               \
			for (size_t i = 0; i < m; i++)                                \
				o[i] = -x[i] * x[i] / 2;                              \
			tg_vmath_exp_##S(o, o, m);                                    \
			for (size_t i = 0; i < m; i++) {                              \
				T pdf = (T)INV_SQRT_2PI * o[i];                       \
				o[i] = D[i0 + i] * (Phi[i] + x[i] * pdf);             \
			}                                                             \
		}                                                                     \
	}

GELU_BACKWARD_KERNEL(gelu_backward_f64, double, f64)
GELU_BACKWARD_KERNEL(gelu_backward_f32, float, f32)

typedef struct gelu_job {
	bool f64;
	const void *D, *X, *P;
	void *O;
} gelu_job;

static void gelu_backward_part(void *arg, size_t lo, size_t hi)
{
	const gelu_job *j = arg;
	const void *P = j->P;
	if (j->f64)
		gelu_backward_f64((const double *)j->D + lo, (const double *)j->X + lo,
				  P ? (const double *)P + lo : NULL, (double *)j->O + lo, hi - lo);
	else
		gelu_backward_f32((const float *)j->D + lo, (const float *)j->X + lo,
				  P ? (const float *)P + lo : NULL, (float *)j->O + lo, hi - lo);
}

/* tg_gelu_backward(dout, x), from phi = Phi(x) when it is not NULL. */
static tg_tensor *gelu_backward_of(tg_tensor *dout, tg_tensor *x, const void *phi)
{
	tg_tensor *in[2] = { dout, x };
	tg_tensor *out = tg_fused_out("tg_gelu_backward", in, "x");
	if (!out)
		return NULL;
	gelu_job j = { x->dtype == TG_F64, dout->data, x->data, phi, out->data };
	tg_parallel_for(x->ctx, x->numel, phi ? TG_PAR_MIN : TG_PAR_MIN_MATH, 16, gelu_backward_part,
			&j);
	return tg_op_end(&gelu_backward_op, out, 2, in, NULL, 0, NULL);
}

tg_tensor *tg_gelu_backward(tg_tensor *dout, tg_tensor *x)
{
	return gelu_backward_of(dout, x, NULL);
}

static void gelu_backward_backward(tg_node *n, tg_tensor *g)
{
	tg_tensor *dout = tg_node_input(n, 0), *x = tg_node_input(n, 1);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_gelu_backward(g, x));
	if (tg_node_needs_grad(n, 1)) {
		tg_tensor *x2 = tg_mul(x, x);
		tg_tensor *pdf = tg_mul_scalar(tg_exp(tg_mul_scalar(x2, -0.5)), INV_SQRT_2PI);
		tg_tensor *curv = tg_mul(pdf, tg_add_scalar(tg_neg(x2), 2.0)); /* gelu'' */
		tg_node_grad(n, 1, tg_mul(tg_mul(g, dout), curv));
	}
}

static const tg_op gelu_backward_op = { .name = "gelu_backward", .backward = gelu_backward_backward };
TG_OP_REGISTER(gelu_backward_op);

/* ---- silu: y = x sigmoid(x); dx = dout s (1 + x (1 - s)), s = sigmoid(x) --------------- */
/* With sigmoid's stable form, so e^-x never overflows for x << 0. */

CHUNKED_KERNEL(silu, -fabs(x), CALL_EXP, x * SIGMOID_OF(x, ei))

static void silu_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, tg_silu_backward(dout, tg_node_input(n, 0)));
}

static const tg_op silu_op = { .name = "silu", .backward = silu_backward };
TG_OP_REGISTER(silu_op);
TG_OP_READS_UNIFORM(silu_op);

tg_tensor *tg_silu(tg_tensor *x) { return UNARY(&silu_op, "tg_silu", x, silu, NULL, 0); }

/* ---- silu_backward: out = dout s (1 + x (1 - s)), s = sigmoid(x); d dout = ------------- */
/* ---- silu_backward(g, x), dx = g dout s (1 - s) (2 + x (1 - 2 s)) ----------------------- */
/* silu's local gradient in one pass, where its rule as ops (sigmoid, neg,
 * add_scalar and four products) made seven; the same roundings, so the
 * same bits. The rule for x is made of ops, so it differentiates again. */

static const tg_op silu_backward_op;

SIGMOID_TIMES_KERNEL(silu_backward_f64, double, f64, s * (x * (1 - s) + 1))
SIGMOID_TIMES_KERNEL(silu_backward_f32, float, f32, s * (x * (1 - s) + 1))

tg_tensor *tg_silu_backward(tg_tensor *dout, tg_tensor *x)
{
	tg_tensor *in[2] = { dout, x };
	tg_tensor *out = tg_fused_out("tg_silu_backward", in, "x");
	if (!out)
		return NULL;
	tg_run_fused(dout, x, out, silu_backward_f64, silu_backward_f32, TG_PAR_MIN_MATH, 0);
	return tg_op_end(&silu_backward_op, out, 2, in, NULL, 0, NULL);
}

static void silu_backward_backward(tg_node *n, tg_tensor *g)
{
	tg_tensor *dout = tg_node_input(n, 0), *x = tg_node_input(n, 1);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_silu_backward(g, x));
	if (tg_node_needs_grad(n, 1)) {
		tg_tensor *s = tg_sigmoid(x); /* silu'' = s (1 - s) (2 + x (1 - 2 s)) */
		tg_tensor *c = tg_add_scalar(tg_mul(x, tg_add_scalar(tg_mul_scalar(s, -2.0), 1.0)),
					     2.0);
		tg_node_grad(n, 1, tg_mul(g_dout_sigmoid_slope(g, dout, s), c));
	}
}

static const tg_op silu_backward_op = { .name = "silu_backward",
					.backward = silu_backward_backward,
					.inputs = (const char *const[]){ "dout", "x" } };
TG_OP_REGISTER(silu_backward_op);
