/*
 * binary.c - elementwise ops of two tensors, with NumPy broadcasting.
 *
 * Each op: the kernel, the public function (check, compute, record), the
 * backward rule written with ops, the descriptor. A rule may hand back a
 * gradient in the output's broadcast shape: tg_node_grad sums it down to the
 * input's shape (tg_sum_to). Only sub and div sum first themselves, so that
 * their negation runs on the small sum.
 */
#include "internal.h"
#include "fused.h"
#include "parallel.h"
#include "vmath.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* ---- broadcasting ------------------------------------------------------------ */

bool tg_broadcast(const tg_tensor *a, const tg_tensor *b, tg_bcast *bc)
{
	int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
	int64_t stride_a = 1, stride_b = 1;
	bc->ndim = nd;
	for (int k = TG_MAX_DIMS - 1; k >= 0; k--) {
		int back = TG_MAX_DIMS - 1 - k; /* 0 for the last axis */
		int64_t da = back < a->ndim ? a->shape[a->ndim - 1 - back] : 1;
		int64_t db = back < b->ndim ? b->shape[b->ndim - 1 - back] : 1;
		if (da != db && da != 1 && db != 1)
			return false;
		bc->dim[k] = da > db ? da : db;
		bc->sa[k] = da == 1 ? 0 : stride_a;
		bc->sb[k] = db == 1 ? 0 : stride_b;
		stride_a *= da;
		stride_b *= db;
	}
	for (int i = 0; i < nd; i++)
		bc->shape[i] = bc->dim[TG_MAX_DIMS - nd + i];
	return true;
}

/* How a binary kernel walks its inputs: a broadcast (tg_bcast's rows), or
 * one shape, elementwise, with a uniform input (tg_is_uniform: a sum's
 * expanded gradient) read as its one value. In a broadcast a uniform
 * input is read as its one value too: its strides are all 0, as a
 * scalar's would be. */
enum { BROADCAST, FLAT, FLAT_A1, FLAT_B1 };

/* Checks a and b and makes the output. Equal shapes need no broadcast map
 * (*flat set to a FLAT walk); otherwise bc gets it. NULL after recording
 * why. */
static tg_tensor *binary_out(const char *who, tg_tensor *a, tg_tensor *b, tg_bcast *bc,
			     int *flat)
{
	tg_tensor *in[2] = { a, b };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	const bool a1 = tg_is_uniform(a), b1 = tg_is_uniform(b);
	*flat = !tg_same_shape(a, b) ? BROADCAST : a1 ? FLAT_A1 : b1 ? FLAT_B1 : FLAT;
	/* a lazy uniform input is read as its one value, or filled first */
	if (!a1 || *flat == FLAT_B1)
		tg_unlazy(a);
	if (!b1 || *flat == FLAT_A1)
		tg_unlazy(b);
	if (*flat)
		return tg_tensor_like(a, who);
	if (!tg_broadcast(a, b, bc)) {
		char sa[TG_SHAPE_STR], sb[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: shapes %s and %s do not broadcast", who,
			       tg_shape_fmt(a->ndim, a->shape, sa), tg_shape_fmt(b->ndim, b->shape, sb));
	}
	if (a1)
		memset(bc->sa, 0, sizeof bc->sa);
	if (b1)
		memset(bc->sb, 0, sizeof bc->sb);
	return tg_tensor_new(ctx, who, a->dtype, bc->ndim, bc->shape);
}

/* The rows [r0, r1) of a broadcast: the body (...) runs once per row of the
 * innermost axis with pa, pb at the row's first elements of A and B and Y
 * at the output's; tg_rows_next walks the outer axes, any number of them. */
#define BINARY_ROWS(T, ...)                                                             \
	do {                                                                            \
		int64_t idx[L], oa, ob;                                                 \
		tg_rows_seek(L, bc->dim, r0, idx, bc->sa, &oa, bc->sb, &ob);            \
		Y += r0 * m;                                                            \
		for (int64_t r = r0; r < r1; r++, Y += m) {                             \
			const T *restrict pa = A + oa, *restrict pb = B + ob;           \
			__VA_ARGS__;                                                    \
			tg_rows_next(L, bc->dim, idx, bc->sa, &oa, bc->sb, &ob);        \
		}                                                                       \
	} while (0)

/* One loop nest per dtype T and function; f is an expression of x and y,
 * with an AVX2 copy (_wide) for parts of TG_HOT_MIN elements or more and
 * the baseline code inline below that, where the copy's dispatch costs
 * more than it saves (W4's scalar graph: 0.134 us a step with every call
 * dispatched, 0.124 without).
 * A part [lo, hi) of the work: elements of the flat loop for equal shapes,
 * rows of the innermost axis otherwise. In a broadcast the innermost axis
 * has stride 1 in an input that spans it and 0 in one broadcast along it
 * (inputs are contiguous), so each row is one of four contiguous loops
 * that vectorise like the flat one, chosen once for all rows: (N,D) op (D),
 * every bias add and batch-norm op, takes the first. */
#define BINARY_LOOPS(k, f, T, sfx)                                                      \
	static inline __attribute__((always_inline)) void k##_##sfx##_body(             \
	    const tg_bcast *bc, const T *restrict A, const T *restrict B,               \
	    T *restrict Y, size_t lo, size_t hi, int flat)                             \
	{                                                                               \
		if (flat == FLAT_A1) {                                                  \
			const T x = A[0];                                               \
			for (size_t i = lo; i < hi; i++) {                              \
				T y = B[i];                                             \
				Y[i] = (f);                                             \
			}                                                               \
			return;                                                         \
		}                                                                       \
		if (flat == FLAT_B1) {                                                  \
			const T y = B[0];                                               \
			for (size_t i = lo; i < hi; i++) {                              \
				T x = A[i];                                             \
				Y[i] = (f);                                             \
			}                                                               \
			return;                                                         \
		}                                                                       \
		if (flat) {                                                             \
			for (size_t i = lo; i < hi; i++) {                              \
				T x = A[i], y = B[i];                                   \
				Y[i] = (f);                                             \
			}                                                               \
			return;                                                         \
		}                                                                       \
		enum { L = TG_MAX_DIMS - 1 }; /* the innermost axis */                 \
		const int64_t m = bc->dim[L], r0 = (int64_t)lo, r1 = (int64_t)hi;       \
		const bool ra = bc->sa[L] != 0, rb = bc->sb[L] != 0; /* spans the row */ \
		assert((!ra || bc->sa[L] == 1) && (!rb || bc->sb[L] == 1));             \
		if (ra && rb)                                                           \
			BINARY_ROWS(T, for (int64_t i = 0; i < m; i++) {                \
				T x = pa[i], y = pb[i];                                 \
				Y[i] = (f);                                             \
			});                                                             \
		else if (ra)                                                            \
			BINARY_ROWS(T, const T y = *pb; for (int64_t i = 0; i < m; i++) { \
				T x = pa[i];                                            \
				Y[i] = (f);                                             \
			});                                                             \
		else if (rb)                                                            \
			BINARY_ROWS(T, const T x = *pa; for (int64_t i = 0; i < m; i++) { \
				T y = pb[i];                                            \
				Y[i] = (f);                                             \
			});                                                             \
		else                                                                    \
			BINARY_ROWS(T, const T x = *pa; const T y = *pb;                \
				    for (int64_t i = 0; i < m; i++) Y[i] = (f));        \
	}                                                                               \
	TG_HOT_LOOP static void k##_##sfx##_wide(const tg_bcast *bc, const T *restrict A, \
						 const T *restrict B, T *restrict Y,    \
						 size_t lo, size_t hi, int flat)       \
	{                                                                               \
		k##_##sfx##_body(bc, A, B, Y, lo, hi, flat);                            \
	}                                                                               \
	static void k##_##sfx(const tg_bcast *bc, const T *restrict A, const T *restrict B, \
			      T *restrict Y, size_t lo, size_t hi, int flat)           \
	{                                                                               \
		size_t m = flat ? 1 : (size_t)bc->dim[TG_MAX_DIMS - 1];                 \
		if ((hi - lo) * m < TG_HOT_MIN)                                         \
			k##_##sfx##_body(bc, A, B, Y, lo, hi, flat);                    \
		else                                                                    \
			k##_##sfx##_wide(bc, A, B, Y, lo, hi, flat);                    \
	}

/* One broadcast kernel's call, for tg_parallel_for. */
typedef void (*binary_f64)(const tg_bcast *, const double *restrict, const double *restrict,
			   double *restrict, size_t, size_t, int);
typedef void (*binary_f32)(const tg_bcast *, const float *restrict, const float *restrict,
			   float *restrict, size_t, size_t, int);

typedef struct binary_job {
	binary_f64 k64;
	binary_f32 k32;
	const tg_bcast *bc;
	const void *A, *B;
	void *Y;
	int flat;
} binary_job;

static void binary_part(void *arg, size_t lo, size_t hi)
{
	const binary_job *j = arg;
	if (j->k64)
		j->k64(j->bc, j->A, j->B, j->Y, lo, hi, j->flat);
	else
		j->k32(j->bc, j->A, j->B, j->Y, lo, hi, j->flat);
}

/* out = k(a, b), split across the threads from TG_PAR_MIN elements on:
 * into runs of elements when flat, into whole rows otherwise. Each
 * output element depends on its two inputs alone, so a split gives the
 * bits of one pass. */
static void run_binary(const tg_bcast *bc, const tg_tensor *a, const tg_tensor *b,
		       tg_tensor *out, int flat, binary_f64 k64, binary_f32 k32)
{
	if (flat && out->numel < TG_PAR_MIN) { /* one call, no job: the scalar graphs */
		if (out->dtype == TG_F64)
			k64(bc, a->data, b->data, out->data, 0, out->numel, flat);
		else
			k32(bc, a->data, b->data, out->data, 0, out->numel, flat);
		return;
	}
	binary_job j = { out->dtype == TG_F64 ? k64 : NULL, k32, bc, a->data, b->data,
			 out->data, flat };
	if (!out->numel)
		return;
	if (flat) {
		tg_parallel_for(out->ctx, out->numel, TG_PAR_MIN, 16, binary_part, &j);
		return;
	}
	size_t m = (size_t)bc->dim[TG_MAX_DIMS - 1], rows = out->numel / m;
	/* whole rows, the bound in rows as the work is in elements */
	size_t min_rows = (TG_PAR_MIN + m - 1) / m;
	tg_parallel_for(out->ctx, rows, min_rows > 1 ? min_rows : 2, 1, binary_part, &j);
}

#define BINARY_KERNEL(k, f)                                                             \
	BINARY_LOOPS(k, f, double, f64)                                                 \
	BINARY_LOOPS(k, f, float, f32)                                                  \
	static tg_tensor *k##_forward(const tg_op *op, const char *who, tg_tensor *a,   \
				      tg_tensor *b)                                     \
	{                                                                               \
		tg_bcast bc;                                                            \
		int flat;                                                               \
		tg_tensor *out = binary_out(who, a, b, &bc, &flat);                     \
		if (!out)                                                               \
			return NULL;                                                    \
		run_binary(&bc, a, b, out, flat, k##_f64, k##_f32);                     \
		tg_tensor *in[2] = { a, b };                                            \
		return tg_op_end(op, out, 2, in, NULL, 0, NULL);                        \
	}

/* g summed down to the shape of input i (g itself when the shapes agree).
 * Negating after the sum gives the same bits: rounding is symmetric. */
static tg_tensor *sum_to_input(tg_node *n, int i, tg_tensor *g)
{
	tg_tensor *x = tg_node_input(n, i);
	if (!g || tg_same_shape(g, x))
		return g;
	return tg_sum_to(g, x->ndim, x->shape);
}

/* ---- add: a + b; add distributes: da = dout, db = dout ----------------------- */

BINARY_KERNEL(add, x + y)

static void add_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, dout);
	tg_node_grad(n, 1, dout);
}

/* operands of a commutative op have no roles */
static const char *const commutes[] = { "", "" };

static const tg_op add_op = { .name = "add", .backward = add_backward, .inputs = commutes,
			      .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(add_op);
TG_OP_READS_UNIFORM(add_op);

tg_tensor *tg_add(tg_tensor *a, tg_tensor *b) { return add_forward(&add_op, "tg_add", a, b); }

/* ---- sub: a - b; da = dout, db = -dout ------------------------------------------ */

BINARY_KERNEL(sub, x - y)

/* A lazy dout (a sum's uniform gradient, internal.h) is negated as its one
 * value, and handed on as lazily. */
static void sub_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, dout);
	if (!tg_node_needs_grad(n, 1))
		return;
	if (dout->lazy_fill && tg_same_shape(dout, tg_node_input(n, 1))) {
		tg_node_grad_expand(n, 1, tg_neg(tg_uniform_value(dout)));
		return;
	}
	tg_unlazy(dout);
	TG_NODE_GRAD_INTO(n, 1, tg_neg(sum_to_input(n, 1, dout)));
}

static const tg_op sub_op = { .name = "sub", .backward = sub_backward,
			      .inputs = (const char *const[]){ "minuend", "subtrahend" },
			      .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(sub_op);
TG_OP_READS_UNIFORM(sub_op);

tg_tensor *tg_sub(tg_tensor *a, tg_tensor *b) { return sub_forward(&sub_op, "tg_sub", a, b); }

/* ---- mul: a * b; mul swaps: da = dout * b, db = dout * a ---------------------- */

BINARY_KERNEL(mul, x * y)

/* x * x: one product dout x serves both edges, the second adding it to
 * the first as a second product would (p + p, the same bits), where two
 * products made a pass more. When x has no gradient yet, a plain backward
 * makes p + p in the product's own pass: doubling is exact, so the bits
 * are those of the two edges (an earlier gradient g would instead give
 * (g + p) + p, not g + (p + p)). Only from TG_GRAD_INTO_MIN elements on,
 * where a graph export shows the edges' gradients by shape alone: a small
 * x's two edges keep their own p each. */
BINARY_KERNEL(twice_product, (x * y) + (x * y))

/* Whether the gradient of x, broadcast to dout's shape, may be summed down
 * as its terms are made (tg_sum_to_product, tg_sum_to_quotient: the bits of
 * the rule's ops) instead of written out at dout's size and read again. */
static bool sum_as_made(const tg_tensor *x, const tg_tensor *dout)
{
	return tg_fused_sums_ok(dout) && !tg_same_shape(x, dout);
}

/* Input i's gradient, dout times the other input: summed down to input i's
 * shape where it was broadcast, as the products are made when the other
 * input has dout's shape (sum_as_made): a per-channel scale's gradient,
 * x (32,64,32,32) times g (1,64,1,1), made two full passes. */
static void mul_grad(tg_node *n, int i, tg_tensor *dout, tg_tensor *other)
{
	tg_tensor *x = tg_node_input(n, i);
	if (sum_as_made(x, dout) && tg_same_shape(other, dout) && other->dtype == dout->dtype) {
		TG_NODE_GRAD_INTO(n, i, tg_sum_to_product(dout, other, x->ndim, x->shape));
		return;
	}
	TG_NODE_GRAD_INTO(n, i, tg_mul(dout, other));
}

static void mul_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *a = tg_node_input(n, 0), *b = tg_node_input(n, 1);
	if (a == b && a->numel >= TG_GRAD_INTO_MIN && !a->ctx->grad_enabled &&
	    tg_node_grad_first(n, 0)) {
		static const tg_op twice_op = { .name = "twice_product", .backward = NULL };
		TG_NODE_GRAD_INTO(n, 0, twice_product_forward(&twice_op, "tg_mul backward", dout, a));
		n->in_grad[1] = n->in_grad[0];
		return;
	}
	if (a == b) {
		tg_tensor *g = NULL;
		TG_NODE_GRAD_INTO(n, 0, (g = tg_mul(dout, a)));
		tg_node_grad(n, 1, g);
		return;
	}
	if (tg_node_needs_grad(n, 0))
		mul_grad(n, 0, dout, b);
	if (tg_node_needs_grad(n, 1))
		mul_grad(n, 1, dout, a);
}

static const tg_op mul_op = { .name = "mul", .backward = mul_backward, .inputs = commutes };
TG_OP_REGISTER(mul_op);
TG_OP_READS_UNIFORM(mul_op);

tg_tensor *tg_mul(tg_tensor *a, tg_tensor *b) { return mul_forward(&mul_op, "tg_mul", a, b); }

/* ---- div: a / b; da = dout / b, db = -dout * (a / b) / b ---------------------- */
/* db takes the output y = a / b, finite wherever the forward value is:
 * (dout / b) a / b would overflow to inf (NaN at a = 0) for a tiny b. */

BINARY_KERNEL(div, x / y)

/* div's plain backward when y, b and dout have one shape: da = dout / b
 * and db = -(dout (y / b)) in one pass over the three, where the rule's ops
 * made four; the same roundings (neg is exact), so the same bits. DA may
 * be NULL (a needs no gradient). */
#define DIV_GRADS_KERNEL(name, T)                                                     \
	TG_HOT_LOOP static void name(const T *D, const T *Y, const T *B, T *DA, T *DB, \
				     size_t n)                                         \
	{                                                                              \
		if (DA)                                                                \
			for (size_t i = 0; i < n; i++) {                               \
				DA[i] = D[i] / B[i];                                   \
				DB[i] = -(D[i] * (Y[i] / B[i]));                       \
			}                                                              \
		else                                                                   \
			for (size_t i = 0; i < n; i++)                                 \
				DB[i] = -(D[i] * (Y[i] / B[i]));                       \
	}
DIV_GRADS_KERNEL(div_grads_f64, double)
DIV_GRADS_KERNEL(div_grads_f32, float)

typedef struct div_grads_job {
	bool f64;
	bool d_uniform; /* every element of D is D[0] (tg_is_uniform) */
	const void *D, *Y, *B;
	void *DA, *DB;
} div_grads_job;

static void div_grads_part(void *arg, size_t lo, size_t hi)
{
	const div_grads_job *j = arg;
	if (j->d_uniform) {
		if (j->f64)
			TG_UNIFORM_RUNS(double, j->D, lo, hi,
					div_grads_f64(tg_d, (const double *)j->Y + tg_i,
						      (const double *)j->B + tg_i,
						      j->DA ? (double *)j->DA + tg_i : NULL,
						      (double *)j->DB + tg_i, tg_m));
		else
			TG_UNIFORM_RUNS(float, j->D, lo, hi,
					div_grads_f32(tg_d, (const float *)j->Y + tg_i,
						      (const float *)j->B + tg_i,
						      j->DA ? (float *)j->DA + tg_i : NULL,
						      (float *)j->DB + tg_i, tg_m));
		return;
	}
	size_t es = j->f64 ? sizeof(double) : sizeof(float);
#define AT(p) ((p) ? (char *)(p) + lo * es : NULL)
	if (j->f64)
		div_grads_f64((const double *)AT(j->D), (const double *)AT(j->Y),
			      (const double *)AT(j->B), (double *)AT(j->DA), (double *)AT(j->DB),
			      hi - lo);
	else
		div_grads_f32((const float *)AT(j->D), (const float *)AT(j->Y),
			      (const float *)AT(j->B), (float *)AT(j->DA), (float *)AT(j->DB),
			      hi - lo);
#undef AT
}

/* Input i's gradient tensor of x's shape: the leaf's own buffer when it
 * takes it, x is as large as TG_NODE_GRAD_INTO asks (a small one's
 * gradient stays a tensor of its own, as a graph export shows it) and the
 * pass reads nothing there (not when both inputs are one tensor, as the
 * pass writes both gradients at once, nor when the buffer is an input,
 * the output or dout: a forward pass that read tg_grad(x)), else a new
 * one; NULL after recording why. */
static tg_tensor *grad_dest(tg_node *n, int i, tg_tensor *x, const tg_tensor *dout)
{
	tg_tensor *buf = x->numel >= TG_GRAD_INTO_MIN && n->in[0] != n->in[1]
				 ? tg_node_grad_buffer(n, i)
				 : NULL;
	if (buf && (buf == n->in[0] || buf == n->in[1] || buf == n->out || buf == dout))
		buf = NULL;
	return buf ? buf : tg_tensor_like(x, "tg_div backward");
}

/* The one-pass gradients of a / b; false when the shapes differ or the
 * pass records (a TG_CREATE_GRAPH backward keeps the ops). */
static bool div_grads_one_pass(tg_node *n, tg_tensor *dout, tg_tensor *a, tg_tensor *b)
{
	if (a->ctx->grad_enabled || !tg_same_shape(a, b) || !tg_same_shape(dout, a))
		return false;
	bool need_a = tg_node_needs_grad(n, 0);
	tg_tensor *da = need_a ? grad_dest(n, 0, a, dout) : NULL;
	tg_tensor *db = (!need_a || da) ? grad_dest(n, 1, b, dout) : NULL;
	if (!db)
		return true; /* the error is recorded; the walk stops */
	div_grads_job j = { a->dtype == TG_F64, tg_is_uniform(dout), dout->data, n->out->data,
			    b->data, da ? da->data : NULL, db->data };
	tg_parallel_for(a->ctx, a->numel, TG_PAR_MIN, 16, div_grads_part, &j);
	tg_node_grad(n, 1, db);
	if (da)
		tg_node_grad(n, 0, da);
	return true;
}

static void div_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *a = tg_node_input(n, 0), *b = tg_node_input(n, 1);
	if (!tg_node_needs_grad(n, 1)) {
		TG_NODE_GRAD_INTO(n, 0, tg_div(dout, b));
		return;
	}
	if (div_grads_one_pass(n, dout, a, b))
		return;
	tg_tensor *y = tg_node_output(n); /* of dout's shape */
	if (sum_as_made(b, dout))
		tg_node_grad(n, 1, tg_neg(tg_sum_to_quotient(dout, y, b)));
	else
		tg_node_grad(n, 1, tg_neg(sum_to_input(n, 1, tg_mul(dout, tg_div(y, b)))));
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_div(dout, b));
}

static const tg_op div_op = { .name = "div", .backward = div_backward,
			      .inputs = (const char *const[]){ "numerator", "denominator" } };
TG_OP_REGISTER(div_op);
TG_OP_READS_UNIFORM(div_op);

tg_tensor *tg_div(tg_tensor *a, tg_tensor *b) { return div_forward(&div_op, "tg_div", a, b); }

/* ---- maximum, minimum: route dout to the chosen input; a tie splits it ------- */
/* A NaN wins either way round (maximum(NaN, 1) and maximum(1, NaN) are both
 * NaN) and takes the gradient; two NaNs split it like a tie. The routing
 * masks are constants of the backward pass: a's share is 1 where a wins,
 * 1/2 on a tie, 0 where b wins; b's is the rest. dout is routed by a
 * select, not a product: an input gets dout where it wins, dout / 2 on a
 * tie and +0 where it loses, whatever dout holds there (an infinite or NaN
 * dout on the losing side gives 0, not NaN; a negative one +0, not -0), as
 * PyTorch's masked_fill. */

#define WINS_MAX(x, y) ((x) > (y) || (x) != (x))
#define WINS_MIN(x, y) ((x) < (y) || (x) != (x))
#define TIE(x, y) ((x) == (y) || ((x) != (x) && (y) != (y)))

BINARY_KERNEL(maximum, WINS_MAX(x, y) ? x : y)
BINARY_KERNEL(minimum, WINS_MIN(x, y) ? x : y)
BINARY_KERNEL(share_max, TIE(x, y) ? 0.5 : (WINS_MAX(x, y) ? 1 : 0))
BINARY_KERNEL(share_min, TIE(x, y) ? 0.5 : (WINS_MIN(x, y) ? 1 : 0))

/* a's share of dout in maximum (max) or minimum (!max), with no history;
 * b's is share_of_a(b, a, max): 1 - a's exactly (0, 1/2 or 1), with the
 * ties and NaNs routed the same way. */
static tg_tensor *share_of_a(tg_tensor *a, tg_tensor *b, bool max)
{
	static const tg_op share_op = { .name = "share", .backward = NULL };
	bool was = tg_set_grad_enabled(a->ctx, false);
	tg_tensor *m = max ? share_max_forward(&share_op, "share", a, b)
			   : share_min_forward(&share_op, "share", a, b);
	tg_set_grad_enabled(a->ctx, was);
	return m;
}

/* O = D S where S (a share: 0, 1/2 or 1) is not 0, else +0: a blend */
#define ROUTED_KERNEL(name, T)                                                       \
	TG_HOT_LOOP static void name(const T *D, const T *S, T *O, size_t n, double a) \
	{                                                                            \
		(void)a;                                                             \
		for (size_t i = 0; i < n; i++) {                                     \
			const T d = D[i], s = S[i];                                  \
			O[i] = s != 0 ? d * s : 0;                                   \
		}                                                                    \
	}
ROUTED_KERNEL(routed_f64, double)
ROUTED_KERNEL(routed_f32, float)

/* dout's share s (share_of_a, of dout's shape), selected: dout s where s is
 * not 0, else +0. A plain backward makes it in one pass (an op with no
 * rule: made only where nothing is recorded); a recorded one
 * (TG_CREATE_GRAPH) as where(s, dout, 0) s, differentiable in dout, with
 * the same values and no NaN on the way (+0 s is +0). */
static tg_tensor *routed(tg_tensor *dout, tg_tensor *s)
{
	static const tg_op routed_op = { .name = "route", .backward = NULL };
	if (!dout || !s)
		return NULL; /* the error is recorded */
	if (dout->ctx->grad_enabled)
		return tg_mul(tg_where(s, dout, tg_zeros(dout->ctx, dout->dtype, 0, NULL)), s);
	tg_tensor *in[2] = { dout, s };
	tg_tensor *out = tg_fused_out("route", in, "share");
	if (!out)
		return NULL;
	tg_run_fused(dout, s, out, routed_f64, routed_f32, TG_PAR_MIN, 0);
	return tg_op_end(&routed_op, out, 2, in, NULL, 0, NULL);
}

static void route(tg_node *n, tg_tensor *dout, bool max)
{
	tg_tensor *a = tg_node_input(n, 0), *b = tg_node_input(n, 1);
	if (tg_node_needs_grad(n, 0))
		TG_NODE_GRAD_INTO(n, 0, routed(dout, share_of_a(a, b, max)));
	if (tg_node_needs_grad(n, 1))
		TG_NODE_GRAD_INTO(n, 1, routed(dout, share_of_a(b, a, max)));
}

static void maximum_backward(tg_node *n, tg_tensor *dout) { route(n, dout, true); }
static void minimum_backward(tg_node *n, tg_tensor *dout) { route(n, dout, false); }

static const tg_op maximum_op = { .name = "maximum", .backward = maximum_backward,
				  .inputs = commutes };
static const tg_op minimum_op = { .name = "minimum", .backward = minimum_backward,
				  .inputs = commutes };
TG_OP_REGISTER(maximum_op);
TG_OP_REGISTER(minimum_op);
TG_OP_READS_UNIFORM(maximum_op);
TG_OP_READS_UNIFORM(minimum_op);

tg_tensor *tg_maximum(tg_tensor *a, tg_tensor *b) { return maximum_forward(&maximum_op, "tg_maximum", a, b); }
tg_tensor *tg_minimum(tg_tensor *a, tg_tensor *b) { return minimum_forward(&minimum_op, "tg_minimum", a, b); }

/* ---- with a scalar constant: x + s, x * s, x^p ----------------------------------- */

/* One kernel per op and dtype; f is an expression of x and the constant s.
 * Short loops run the baseline code, as the broadcast kernels do. */
#define SCALAR_KERNEL_T(name, T, f)                                                     \
	static inline __attribute__((always_inline)) void name##_body(                  \
	    const T *restrict X, T *restrict Y, size_t n, T s)                          \
	{                                                                               \
		for (size_t i = 0; i < n; i++) {                                        \
			T x = X[i];                                                     \
			Y[i] = (f);                                                     \
		}                                                                       \
	}                                                                               \
	TG_HOT_LOOP static void name##_wide(const T *restrict X, T *restrict Y, size_t n, \
					    T s)                                        \
	{                                                                               \
		name##_body(X, Y, n, s);                                                \
	}                                                                               \
	static void name(const T *restrict X, T *restrict Y, size_t n, T s)             \
	{                                                                               \
		if (n < TG_HOT_MIN)                                                     \
			name##_body(X, Y, n, s);                                        \
		else                                                                    \
			name##_wide(X, Y, n, s);                                        \
	}
#define SCALAR_KERNEL(k, f) SCALAR_KERNEL_T(k##_f64, double, f) SCALAR_KERNEL_T(k##_f32, float, f)

SCALAR_KERNEL(add_scalar, x + s)
SCALAR_KERNEL(mul_scalar, x * s)

/* f32 x^p for an integral p with 2 < |p| <= IPOW_MAX, or p = -2, and for a
 * half-integral one with |p| < IPOW_MAX (x^0.5, x^1.5, x^-2.5): the power
 * x^m, m = trunc(|p|), by repeated squaring in double, times sqrt(x) for a
 * half (correctly rounded in double), then one rounding to float. A chain
 * of products that makes it carries at most |p| roundings of 2^-53
 * relative (a squaring doubles its input's error), and a division for
 * p < 0 one more: at most 2^-47 of x^p for |p| <= 64, which is 2^-23 of a
 * float's ULP, so the float is within 0.5 + 2^-23 ULP of x^p: below
 * SLEEF's 1.0, at a fraction of its cost (SLEEF's powf took 1.7 ns a float
 * at AVX-512, three quarters of sum((|x| + 1)^1.5) forward and backward).
 * Products keep C99's special values of pow at integral exponents (signed
 * zeros and infinities by the exponent's parity, NaN as NaN); a power that
 * leaves double's range lies far outside float's, so it rounds to the
 * same 0 or infinity. At a half, a base below 0 gives sqrt's NaN, as pow
 * does, but for two that C99 takes as if positive: -0 (x + 0 is +0) and
 * -inf. */
enum { IPOW_MAX = 64, IPOW_CHUNK = 256 };

static bool ipow_f32_takes(float p)
{
	if (p == nearbyintf(p))
		return fabsf(p) <= IPOW_MAX && (fabsf(p) > 2 || p == -2);
	return 2 * p == nearbyintf(2 * p) && fabsf(p) < IPOW_MAX;
}

TG_HOT_LOOP static void ipow_f32(const float *restrict X, float *restrict Y, size_t n, float p)
{
	unsigned m = (unsigned)fabsf(p);
	const bool half = p != nearbyintf(p);
	double B[IPOW_CHUNK], R[IPOW_CHUNK];
	for (size_t i0 = 0; i0 < n; i0 += IPOW_CHUNK) {
		size_t c = n - i0 < IPOW_CHUNK ? n - i0 : IPOW_CHUNK;
		if (half)
			for (size_t i = 0; i < c; i++) {
				B[i] = X[i0 + i] == -INFINITY ? INFINITY : X[i0 + i] + 0.0;
				R[i] = sqrt(B[i]);
			}
		else
			for (size_t i = 0; i < c; i++) {
				B[i] = X[i0 + i];
				R[i] = 1;
			}
		for (unsigned k = m;;) {
			if (k & 1)
				for (size_t i = 0; i < c; i++)
					R[i] *= B[i];
			k >>= 1;
			if (!k)
				break;
			for (size_t i = 0; i < c; i++)
				B[i] *= B[i];
		}
		if (p < 0)
			for (size_t i = 0; i < c; i++)
				Y[i0 + i] = (float)(1 / R[i]);
		else
			for (size_t i = 0; i < c; i++)
				Y[i0 + i] = (float)R[i];
	}
}

static void pow_other_f32(const float *X, float *Y, size_t n, float p)
{
	if (ipow_f32_takes(p))
		ipow_f32(X, Y, n, p);
	else
		tg_vmath_pow_f32(X, Y, n, p);
}

/* x^p through SLEEF's pow (vmath.h: 1.0 ULP, C99's special cases), f32 at
 * integral and half-integral exponents through ipow_f32, except for the
 * exponents that make it one correctly rounded operation: x^2 = x x,
 * x^1 = x, x^-1 = 1 / x.
 * Those are the values C99's pow gives there (NaN, the infinities and
 * signed zeros included), and the cheapest. */
#define POW_KERNEL(name, T, VPOW)                                                    \
	static void name(const T *restrict X, T *restrict Y, size_t n, T p)          \
	{                                                                            \
		if (p == 2)                                                          \
			for (size_t i = 0; i < n; i++)                               \
				Y[i] = X[i] * X[i];                                  \
		else if (p == 1)                                                     \
			for (size_t i = 0; i < n; i++)                               \
				Y[i] = X[i];                                         \
		else if (p == -1)                                                    \
			for (size_t i = 0; i < n; i++)                               \
				Y[i] = 1 / X[i];                                     \
		else                                                                 \
			VPOW(X, Y, n, p);                                            \
	}

POW_KERNEL(pow_f64, double, tg_vmath_pow_f64)
POW_KERNEL(pow_f32, float, pow_other_f32)

typedef void (*scalar_f64_fn)(const double *restrict, double *restrict, size_t, double);
typedef void (*scalar_f32_fn)(const float *restrict, float *restrict, size_t, float);

typedef struct scalar_job {
	scalar_f64_fn k64;
	scalar_f32_fn k32;
	const void *X;
	void *Y;
	double s;
} scalar_job;

static void scalar_part(void *arg, size_t lo, size_t hi)
{
	const scalar_job *j = arg;
	if (j->k64)
		j->k64((const double *)j->X + lo, (double *)j->Y + lo, hi - lo, j->s);
	else
		j->k32((const float *)j->X + lo, (float *)j->Y + lo, hi - lo, (float)j->s);
}

/* Checks x, runs the op's kernel for x's dtype (split across the threads
 * from min elements on), records the node. */
static tg_tensor *scalar_op(const tg_op *op, const char *who, tg_tensor *x, double s,
			    scalar_f64_fn k64, scalar_f32_fn k32, size_t min)
{
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	tg_tensor *out = tg_tensor_like(x, who);
	if (!out)
		return NULL;
	scalar_job j = { x->dtype == TG_F64 ? k64 : NULL, k32, x->data, out->data, s };
	tg_parallel_for(ctx, x->numel, min, 16, scalar_part, &j);
	return tg_op_end(op, out, 1, &x, &s, 1, NULL);
}

static void add_scalar_backward(tg_node *n, tg_tensor *dout) { tg_node_grad(n, 0, dout); }

static void mul_scalar_backward(tg_node *n, tg_tensor *dout)
{
	if (dout->lazy_fill) /* as sub's */
		tg_node_grad_expand(n, 0, tg_mul_scalar(tg_uniform_value(dout), tg_node_attr(n, 0)));
	else
		TG_NODE_GRAD_INTO(n, 0, tg_mul_scalar(dout, tg_node_attr(n, 0)));
}

/* pow: dx = pow_backward(dout, x, p) = dout * p * x^(p-1) */
static void pow_backward(tg_node *n, tg_tensor *dout)
{
	TG_NODE_GRAD_INTO(n, 0, tg_pow_backward(dout, tg_node_input(n, 0), tg_node_attr(n, 0)));
}

/* the constant as written: "+ 3" ("- 3" for -3), "* 1.1", "^ 2" */
static int add_scalar_describe(const tg_node *n, char *buf, size_t size)
{
	double s = tg_node_attr(n, 0);
	return tg_describe_num(buf, size, signbit(s) ? "- " : "+ ", fabs(s));
}

static int mul_scalar_describe(const tg_node *n, char *buf, size_t size)
{
	return tg_describe_num(buf, size, "* ", tg_node_attr(n, 0));
}

static int pow_describe(const tg_node *n, char *buf, size_t size)
{
	return tg_describe_num(buf, size, "^ ", tg_node_attr(n, 0));
}

static const tg_op add_scalar_op = { .name = "add_scalar", .backward = add_scalar_backward,
				     .describe = add_scalar_describe, .unread = TG_UNREAD_ALL };
static const tg_op mul_scalar_op = { .name = "mul_scalar", .backward = mul_scalar_backward,
				     .describe = mul_scalar_describe, .unread = TG_UNREAD_ALL };
static const tg_op pow_op = { .name = "pow", .backward = pow_backward,
			      .inputs = (const char *const[]){ "base" }, .describe = pow_describe };
TG_OP_REGISTER(add_scalar_op);
TG_OP_READS_UNIFORM(add_scalar_op);
TG_OP_REGISTER(mul_scalar_op);
TG_OP_READS_UNIFORM(mul_scalar_op);
TG_OP_REGISTER(pow_op);
TG_OP_READS_UNIFORM(pow_op);

tg_tensor *tg_add_scalar(tg_tensor *x, double s)
{
	return scalar_op(&add_scalar_op, "tg_add_scalar", x, s, add_scalar_f64, add_scalar_f32,
			 TG_PAR_MIN);
}

tg_tensor *tg_mul_scalar(tg_tensor *x, double s)
{
	return scalar_op(&mul_scalar_op, "tg_mul_scalar", x, s, mul_scalar_f64, mul_scalar_f32,
			 TG_PAR_MIN);
}

tg_tensor *tg_pow(tg_tensor *x, double p)
{
	return scalar_op(&pow_op, "tg_pow", x, p, pow_f64, pow_f32, TG_PAR_MIN_MATH);
}

/* ---- pow_backward: out = dout p x^(p-1); d dout = pow_backward(g, x, p), ------------ */
/* ---- dx = pow_backward(g dout p, x, p - 1) --------------------------------------------- */
/* pow's local gradient in one pass, where mul(dout, mul_scalar(pow(x, p - 1),
 * p)) made three: x^(p-1) a chunk at a time through pow's own kernel (so
 * x^1 is x, x^2 one product, others SLEEF's), then the two products in
 * that order, in the dtype, with p and p - 1 rounded to it as those ops
 * round their constants: the same bits. */

static const tg_op pow_backward_op;

enum { POW_CHUNK = 256 };

/* O = D (x^e p) with e = p - 1, both rounded to the dtype: tg_fused_f64 and
 * tg_fused_f32 kernels, p their attribute */
#define POW_BACKWARD_KERNEL(name, T, POW)                                             \
	static void name(const T *D, const T *X, T *O, size_t n, double pd)           \
	{                                                                             \
		if (pd == 0) { /* x^0 is 1 throughout: 0, not 0 x^-1 (NaN at 0) */   \
			for (size_t i = 0; i < n; i++)                                \
				O[i] = 0;                                             \
			return;                                                       \
		}                                                                     \
		const T p = (T)pd, e = (T)(pd - 1.0);                                 \
		for (size_t i0 = 0; i0 < n; i0 += POW_CHUNK) {                        \
			size_t m = n - i0 < POW_CHUNK ? n - i0 : POW_CHUNK;           \
			T *o = O + i0;                                                \
			POW(X + i0, o, m, e);                                         \
			times_dout_##name(D + i0, o, m, p);                           \
		}                                                                     \
	}

/* O = D (O p), elementwise */
#define TIMES_DOUT(name, T)                                                          \
	TG_HOT_LOOP static void times_dout_##name(const T *D, T *O, size_t m, T p)   \
	{                                                                            \
		for (size_t i = 0; i < m; i++)                                       \
			O[i] = D[i] * (O[i] * p);                                    \
	}
TIMES_DOUT(pow_backward_f64, double)
TIMES_DOUT(pow_backward_f32, float)
POW_BACKWARD_KERNEL(pow_backward_f64, double, pow_f64)
POW_BACKWARD_KERNEL(pow_backward_f32, float, pow_f32)

tg_tensor *tg_pow_backward(tg_tensor *dout, tg_tensor *x, double p)
{
	tg_tensor *in[2] = { dout, x };
	tg_tensor *out = tg_fused_out("tg_pow_backward", in, "x");
	if (!out)
		return NULL;
	tg_run_fused(dout, x, out, pow_backward_f64, pow_backward_f32, TG_PAR_MIN_MATH, p);
	return tg_op_end(&pow_backward_op, out, 2, in, &p, 1, NULL);
}

/* At p = 0 the output is zeros whatever x is, so dx is zeros too (as
 * d dout is): not the rule's 0 x^-2, NaN at x = 0 or for an infinite dout. */
static void pow_backward_backward(tg_node *n, tg_tensor *g)
{
	tg_tensor *dout = tg_node_input(n, 0), *x = tg_node_input(n, 1);
	double p = tg_node_attr(n, 0);
	if (tg_node_needs_grad(n, 0))
		tg_node_grad(n, 0, tg_pow_backward(g, x, p));
	if (tg_node_needs_grad(n, 1))
		tg_node_grad(n, 1, p == 0 ? tg_pow_backward(g, x, 0)
					  : tg_pow_backward(tg_mul_scalar(tg_mul(g, dout), p), x,
							    p - 1.0));
}

static const tg_op pow_backward_op = { .name = "pow_backward", .backward = pow_backward_backward,
				       .inputs = (const char *const[]){ "dout", "x" },
				       .describe = pow_describe };
TG_OP_REGISTER(pow_backward_op);
