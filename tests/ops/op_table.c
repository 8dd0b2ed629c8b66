/*
 * op_table.c - every built-in op with sample inputs, for the gradient checks.
 *
 * One row per registered op: the function that applies it (attributes come
 * from the variant), how its inputs are drawn, and shape variants, among
 * them every broadcasting pattern of the binary ops. Inputs stay away from
 * kinks (relu at 0, ties of maximum and max) where no derivative exists.
 */
#include "op_table.h"

#include <math.h>
#include <string.h>

#define SH(...)                                                                          \
	{ .ndim = (int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)),              \
	  .dim = { __VA_ARGS__ } }
#define SCALAR { .ndim = 0 }

/* The broadcasting patterns every binary op is checked with. */
#define BINARY_VARIANTS                                                                  \
	{ .name = "same shape (2,3) and (2,3)", .in = { SH(2, 3), SH(2, 3) } },          \
	{ .name = "scalar () and (2,3)", .in = { SCALAR, SH(2, 3) } },                   \
	{ .name = "(2,3) and scalar ()", .in = { SH(2, 3), SCALAR } },                   \
	{ .name = "row (3,) and (2,3)", .in = { SH(3), SH(2, 3) } },                     \
	{ .name = "(2,3) and row (3,)", .in = { SH(2, 3), SH(3) } },                     \
	{ .name = "column (2,1) and (2,3)", .in = { SH(2, 1), SH(2, 3) } },              \
	{ .name = "(2,3) and column (2,1)", .in = { SH(2, 3), SH(2, 1) } },              \
	{ .name = "both (2,1) and (1,3)", .in = { SH(2, 1), SH(1, 3) } },                \
	{ .name = "3-D (2,1,3) and (4,1)", .in = { SH(2, 1, 3), SH(4, 1) } },            \
	{ .name = "4-D (2,1,2,1) and (3,1,2)", .in = { SH(2, 1, 2, 1), SH(3, 1, 2) } },     \
	{ .name = "5-D (2,1,2,1,3) and (3,1,1,3)", .in = { SH(2, 1, 2, 1, 3), SH(3, 1, 1, 3) } }, \
	{ .name = "8-D (2,1,1,2,1,1,1,2) and (1,2,1,1,1,2,1)",                          \
	  .in = { SH(2, 1, 1, 2, 1, 1, 1, 2), SH(1, 2, 1, 1, 1, 2, 1) } }

/* ---- applying each op ------------------------------------------------------------ */

/* f_name(in, user) returning expr; user is the op_variant */
#define FN(name, expr)                                                                   \
	static tg_tensor *f_##name(tg_tensor *const *in, void *user)                    \
	{                                                                                \
		(void)user;                                                              \
		return expr;                                                             \
	}

#define V(user) ((const op_variant *)(user))
#define ARG(i) (V(user)->arg[i])
#define TO(user) V(user)->to.ndim, V(user)->to.dim

FN(add, tg_add(in[0], in[1]))
FN(sub, tg_sub(in[0], in[1]))
FN(mul, tg_mul(in[0], in[1]))
FN(div, tg_div(in[0], in[1]))
FN(maximum, tg_maximum(in[0], in[1]))
FN(minimum, tg_minimum(in[0], in[1]))
FN(pow, tg_pow(in[0], ARG(0)))
FN(add_scalar, tg_add_scalar(in[0], ARG(0)))
FN(mul_scalar, tg_mul_scalar(in[0], ARG(0)))

FN(neg, tg_neg(in[0]))
FN(exp, tg_exp(in[0]))
FN(log, tg_log(in[0]))
FN(sqrt, tg_sqrt(in[0]))
FN(abs, tg_abs(in[0]))
FN(sigmoid, tg_sigmoid(in[0]))
FN(tanh, tg_tanh(in[0]))
FN(relu, tg_relu(in[0]))
FN(leaky_relu, tg_leaky_relu(in[0], ARG(0)))
FN(elu, tg_elu(in[0], ARG(0)))
FN(softplus, tg_softplus(in[0]))
FN(sigmoid_backward, tg_sigmoid_backward(in[0], in[1]))
FN(relu_backward, tg_relu_backward(in[0], in[1]))
FN(tanh_backward, tg_tanh_backward(in[0], in[1]))
FN(leaky_relu_backward, tg_leaky_relu_backward(in[0], in[1], ARG(0)))
FN(elu_backward, tg_elu_backward(in[0], in[1], ARG(0)))
FN(log1p, tg_log1p(in[0]))
FN(expm1, tg_expm1(in[0]))
FN(sin, tg_sin(in[0]))
FN(cos, tg_cos(in[0]))
FN(erf, tg_erf(in[0]))
FN(gelu, tg_gelu(in[0]))
FN(silu, tg_silu(in[0]))
FN(gelu_backward, tg_gelu_backward(in[0], in[1]))
FN(softplus_backward, tg_softplus_backward(in[0], in[1]))
FN(pow_backward, tg_pow_backward(in[0], in[1], ARG(0)))
FN(silu_backward, tg_silu_backward(in[0], in[1]))

/* arg[0], arg[1]: the bounds */
FN(clamp, tg_clamp(in[0], ARG(0), ARG(1)))

/* where(mask, a, b) with a constant mask of shape to, true except at every
 * third element (1, 4, ...); of a's dtype, or f32 when arg[0] is 1. */
static tg_tensor *f_where(tg_tensor *const *in, void *user)
{
	tg_ctx *ctx = tg_ctx_of(in[0]);
	if (!ctx)
		return NULL;
	double m[64];
	for (int i = 0; i < 64; i++)
		m[i] = i % 3 == 1 ? 0 : (i % 2 ? -1.5 : 1);
	tg_dtype dt = ARG(0) == 1 ? TG_F32 : tg_dtype_of(in[0]);
	return tg_where(tg_from_f64(ctx, dt, TO(user), m), in[0], in[1]);
}

FN(sum, tg_sum(in[0]))
FN(mean, tg_mean(in[0]))
FN(max, tg_max(in[0]))
FN(sum_axis, tg_sum_axis(in[0], (int)ARG(0), ARG(1) != 0))
FN(mean_axis, tg_mean_axis(in[0], (int)ARG(0), ARG(1) != 0))
FN(max_axis, tg_max_axis(in[0], (int)ARG(0), ARG(1) != 0))
FN(sum_to, tg_sum_to(in[0], TO(user)))

/* accumulate has no public function: the reverse walk sums two gradients of
 * one tensor with it. Its value for a and b is the gradient, taken with
 * history (TG_CREATE_GRAPH), of sum(z * a) + sum(z * b) for a zero z of a's
 * shape: the two products' rules hand z the gradients a and b. */
static tg_tensor *f_accumulate(tg_tensor *const *in, void *user)
{
	(void)user;
	tg_ctx *ctx = tg_ctx_of(in[0]);
	if (!ctx)
		return NULL;
	tg_tensor *z = tg_set_requires_grad(
		tg_zeros(ctx, tg_dtype_of(in[0]), tg_ndim(in[0]), tg_shape(in[0])), true);
	bool was = tg_set_grad_enabled(ctx, true);
	tg_tensor *y = tg_add(tg_sum(tg_mul(z, in[0])), tg_sum(tg_mul(z, in[1])));
	int rc = tg_backward_ex(y, NULL, TG_CREATE_GRAPH);
	tg_set_grad_enabled(ctx, was);
	return rc ? NULL : tg_grad(z);
}
FN(expand, tg_expand(in[0], TO(user)))

FN(addmm, tg_addmm(in[0], in[1], in[2]))
FN(addmm_relu, tg_addmm_relu(in[0], in[1], in[2]))

/* arg[0], arg[1]: the transpose flags of tg_matmul_t; plain tg_matmul when
 * arg[2] is 0 */
static tg_tensor *f_matmul(tg_tensor *const *in, void *user)
{
	if (ARG(2) == 0)
		return tg_matmul(in[0], in[1]);
	return tg_matmul_t(in[0], ARG(0) != 0, in[1], ARG(1) != 0);
}

FN(transpose, tg_transpose(in[0]))
FN(reshape, tg_reshape(in[0], TO(user)))

/* arg[0], arg[1]: the transpose flags of tg_bmm_t; plain tg_bmm when arg[2]
 * is 0 */
static tg_tensor *f_bmm(tg_tensor *const *in, void *user)
{
	if (ARG(2) == 0)
		return tg_bmm(in[0], in[1]);
	return tg_bmm_t(in[0], ARG(0) != 0, in[1], ARG(1) != 0);
}

/* ---- shape.c -------------------------------------------------------------------- */

/* the permutation is the variant's to */
static tg_tensor *f_permute(tg_tensor *const *in, void *user)
{
	int perm[TG_MAX_DIMS];
	for (int i = 0; i < V(user)->to.ndim; i++)
		perm[i] = (int)V(user)->to.dim[i];
	return tg_permute(in[0], perm);
}

/* arg: axis, start, length / axis, before, after */
FN(slice, tg_slice(in[0], (int)ARG(0), (int64_t)ARG(1), (int64_t)ARG(2)))
FN(pad_axis, tg_pad_axis(in[0], (int)ARG(0), (int64_t)ARG(1), (int64_t)ARG(2)))

/* arg[0]: the axis; arg[1]: how many tensors are joined, the arg[2] inputs
 * taken in turn (so 6 of 2 inputs joins a, b, a, b, a, b: a tree of nodes,
 * and gradients that add up over the repeats). A stack of more than
 * TG_MAX_INPUTS ends in a concat node, so its tree is checked in
 * test_shape.c. */
static tg_tensor *join(tg_tensor *(*f)(tg_ctx *, int, tg_tensor *const *, int),
		       tg_tensor *const *in, const void *user)
{
	enum { MAX_JOIN = 12 };
	int n = (int)ARG(1), nin = (int)ARG(2);
	tg_tensor *xs[MAX_JOIN];
	for (int i = 0; i < n && i < MAX_JOIN; i++)
		xs[i] = in[i % nin];
	return f(tg_ctx_of(in[0]), n, xs, (int)ARG(0));
}

static tg_tensor *f_concat(tg_tensor *const *in, void *user)
{
	return join(tg_concat, in, user);
}

static tg_tensor *f_stack(tg_tensor *const *in, void *user)
{
	return join(tg_stack, in, user);
}

/* Indices repeat entry 2, so index_select's backward must add, not overwrite. */
static const int32_t rows[] = { 2, 0, 2, 1 };
static const int32_t picks[] = { 3, 0, 2, 1 };  /* one column per row */
static const int32_t labels[] = { 1, 3, 0, 2 }; /* cross_entropy's classes */

/* The first n entries of v as an index tensor of in's context. */
static tg_tensor *first(tg_tensor *in, const int32_t *v, int64_t n)
{
	return tg_labels(tg_ctx_of(in), n, v);
}

/* arg[0]: the axis, arg[1]: how many of rows to take */
FN(index_select, tg_index_select(in[0], (int)ARG(0), first(in[0], rows, (int64_t)ARG(1))))

/* index_add has no public function: it is index_select's backward. Its
 * value for src is the gradient of sum(index_select(z, axis, rows) * src)
 * for a zero z of shape to, taken with history (TG_CREATE_GRAPH). arg[0]:
 * the axis. */
static tg_tensor *f_index_add(tg_tensor *const *in, void *user)
{
	tg_tensor *src = in[0];
	tg_ctx *ctx = tg_ctx_of(src);
	if (!ctx)
		return NULL;
	int axis = (int)ARG(0);
	tg_tensor *z = tg_set_requires_grad(tg_zeros(ctx, tg_dtype_of(src), TO(user)), true);
	bool was = tg_set_grad_enabled(ctx, true);
	tg_tensor *y = tg_index_select(z, axis, first(src, rows, tg_dim(src, axis)));
	int rc = tg_backward_ex(y, src, TG_CREATE_GRAPH);
	tg_set_grad_enabled(ctx, was);
	return rc ? NULL : tg_grad(z);
}

FN(pick, tg_pick(in[0], first(in[0], picks, tg_dim(in[0], 0))))

/* softmax_grad and log_softmax_grad have no public function: they are
 * softmax's and log_softmax's backward. The value of each for g and x is
 * the gradient of sum(f(x + z) * g) for a zero z of x's shape, taken with
 * history (tg_grad_of, which leaves x's own gradient alone): the op of g
 * and y = f(x), with x reaching it through y. */
static tg_tensor *grad_through(tg_tensor *(*f)(tg_tensor *),
				tg_tensor *(*f_axis)(tg_tensor *, int), int axis,
				tg_tensor *const *in)
{
	tg_ctx *ctx = tg_ctx_of(in[1]);
	if (!ctx)
		return NULL;
	tg_tensor *z = tg_set_requires_grad(
		tg_zeros(ctx, tg_dtype_of(in[1]), tg_ndim(in[1]), tg_shape(in[1])), true);
	bool was = tg_set_grad_enabled(ctx, true);
	tg_tensor *xz = tg_add(in[1], z), *y = f ? f(xz) : f_axis(xz, axis), *dz = NULL;
	int rc = tg_grad_of(1, &y, &in[0], 1, &z, &dz, TG_CREATE_GRAPH);
	tg_set_grad_enabled(ctx, was);
	return rc ? NULL : dz;
}
static tg_tensor *row_grad_of(tg_tensor *(*f)(tg_tensor *), tg_tensor *const *in)
{
	return grad_through(f, NULL, 0, in);
}
/* the same for f along an axis: variant arg[0] is the axis + 1, 0 the last */
#define AXIS_GRAD_OF(f) grad_through(NULL, (f), (int)ARG(0) - 1, in)
FN(softmax_grad, AXIS_GRAD_OF(tg_softmax_axis))

/* step (sign(x) here) has no public function either: it is the mask in
 * abs's gradient with history, dout * step(x), its second input. */
static tg_tensor *abs_sign(tg_tensor *const *in, void *user)
{
	(void)user;
	tg_tensor *ones = tg_ctx_of(in[0]) ? tg_ones(tg_ctx_of(in[0]), tg_dtype_of(in[0]),
						       tg_ndim(in[0]), tg_shape(in[0]))
					   : NULL;
	tg_tensor *const pair[2] = { ones, in[0] };
	tg_tensor *g = row_grad_of(tg_abs, pair);
	return g ? tg_node_input(tg_producer(g), 1) : NULL;
}
FN(log_softmax_grad, AXIS_GRAD_OF(tg_log_softmax_axis))
FN(softmax, ARG(0) ? tg_softmax_axis(in[0], (int)ARG(0) - 1) : tg_softmax(in[0]))
FN(log_softmax, ARG(0) ? tg_log_softmax_axis(in[0], (int)ARG(0) - 1) : tg_log_softmax(in[0]))
FN(logsumexp, tg_logsumexp(in[0], (int)ARG(0), ARG(1) != 0))
/* Labels for logits (C), (N,C) or (N,C,d1,...): the shape without the class
 * axis, entry i the class (5 i + 2) mod C, so every class comes up. */
static tg_tensor *class_labels(tg_tensor *x)
{
	int a = tg_ndim(x) == 1 ? 0 : 1, m = 0;
	int64_t shape[TG_MAX_DIMS], k = tg_dim(x, a);
	for (int i = 0; i < tg_ndim(x); i++)
		if (i != a)
			shape[m++] = tg_dim(x, i);
	int32_t v[64];
	for (size_t i = 0; i < tg_numel(x) / (size_t)k && i < 64; i++)
		v[i] = (int32_t)((5 * i + 2) % (size_t)k);
	return tg_from_i32(tg_ctx_of(x), m, shape, v);
}

/* arg[0]: 0 the (N) labels 1,3,0,2; 1 class_labels (any logits' shape) */
FN(cross_entropy, tg_cross_entropy(in[0], ARG(0) ? class_labels(in[0])
					   : first(in[0], labels, tg_dim(in[0], 0))))
FN(cross_entropy_backward,
   tg_cross_entropy_backward(in[0], in[1], first(in[1], labels, tg_dim(in[1], 0))))

/* arg[0]: eps */
FN(batch_norm, tg_batch_norm(in[0], in[1], in[2], ARG(0), NULL, NULL))
FN(batch_norm_relu, tg_batch_norm_relu(in[0], in[1], in[2], ARG(0), NULL, NULL))
FN(batch_norm_backward, tg_batch_norm_backward(in[0], in[1], in[2], ARG(0)))
FN(layer_norm, tg_layer_norm(in[0], in[1], in[2], ARG(0)))
FN(layer_norm_backward, tg_layer_norm_backward(in[0], in[1], in[2], ARG(0)))

FN(mse, tg_mse(in[0], in[1]))
FN(l1, tg_l1(in[0], in[1]))
/* arg[0]: delta */
FN(huber, tg_huber(in[0], in[1], ARG(0)))
FN(bce_with_logits, tg_bce_with_logits(in[0], in[1]))

/* conv.c: arg[0] is the stride and arg[1] the padding as 10 h + w, arg[2]
 * 100 groups + 10 dh + dw (the dilation): { 21, 1, 212 } is stride (2,1),
 * padding (0,1), groups 2, dilation (1,2). to holds the size the gradient
 * ops produce: the input's HxW, or the kernel's. */
static tg_conv_opts conv_opts(const op_variant *v)
{
	int s = (int)v->arg[0], p = (int)v->arg[1], d = (int)v->arg[2] % 100;
	return (tg_conv_opts){ { s / 10, s % 10 }, { p / 10, p % 10 }, { d / 10, d % 10 },
			       (int)v->arg[2] / 100 };
}

static tg_tensor *f_conv2d(tg_tensor *const *in, void *user)
{
	tg_conv_opts o = conv_opts(V(user));
	return tg_conv2d(in[0], in[1], in[2], &o);
}

static tg_tensor *f_conv2d_relu(tg_tensor *const *in, void *user)
{
	tg_conv_opts o = conv_opts(V(user));
	return tg_conv2d_relu(in[0], in[1], in[2], &o);
}

static tg_tensor *f_conv2d_no_bias(tg_tensor *const *in, void *user)
{
	tg_conv_opts o = conv_opts(V(user));
	return tg_conv2d(in[0], in[1], NULL, &o);
}

static tg_tensor *f_conv2d_input_grad(tg_tensor *const *in, void *user)
{
	tg_conv_opts o = conv_opts(V(user));
	return tg_conv2d_input_grad(in[0], in[1], V(user)->to.dim[0], V(user)->to.dim[1], &o);
}

static tg_tensor *f_conv2d_weight_grad(tg_tensor *const *in, void *user)
{
	tg_conv_opts o = conv_opts(V(user));
	return tg_conv2d_weight_grad(in[0], in[1], V(user)->to.dim[0], V(user)->to.dim[1], &o);
}

/* arg: kernel, stride, padding */
FN(max_pool2d, tg_max_pool2d(in[0], (int)ARG(0), (int)ARG(1), (int)ARG(2)))
FN(relu_max_pool2d, tg_relu_max_pool2d(in[0], (int)ARG(0), (int)ARG(1), (int)ARG(2)))
FN(avg_pool2d, tg_avg_pool2d(in[0], (int)ARG(0), (int)ARG(1), (int)ARG(2)))

/* The pools' backward ops have no public function: each is the gradient of
 * its pool of a constant z of shape to, seeded with dout (in[0]) and taken
 * with history. z's values are distinct (a shuffled ladder), so max_pool2d's
 * arg-maxes are fixed. */
static tg_tensor *pool_backward(tg_tensor *(*pool)(tg_tensor *, int, int, int),
				tg_tensor *const *in, void *user)
{
	tg_tensor *dout = in[0];
	tg_ctx *ctx = tg_ctx_of(dout);
	if (!ctx)
		return NULL;
	const op_shape *to = &V(user)->to;
	double v[64];
	int64_t n = to->dim[0] * to->dim[1] * to->dim[2] * to->dim[3];
	for (int64_t i = 0; i < n && i < 64; i++)
		v[i] = 0.25 * (double)((i * 37) % n);
	tg_tensor *z = tg_set_requires_grad(
		tg_from_f64(ctx, tg_dtype_of(dout), to->ndim, to->dim, v), true);
	bool was = tg_set_grad_enabled(ctx, true);
	tg_tensor *y = pool(z, (int)ARG(0), (int)ARG(1), (int)ARG(2));
	int rc = tg_backward_ex(y, dout, TG_CREATE_GRAPH);
	tg_set_grad_enabled(ctx, was);
	return rc ? NULL : tg_grad(z);
}

static tg_tensor *f_max_pool2d_backward(tg_tensor *const *in, void *user)
{
	return pool_backward(tg_max_pool2d, in, user);
}

static tg_tensor *f_avg_pool2d_backward(tg_tensor *const *in, void *user)
{
	return pool_backward(tg_avg_pool2d, in, user);
}

/* ---- the table ------------------------------------------------------------------ */

#define BINARY(opname, f, g0, g1)                                                        \
	{ .op = opname, .fn = f, .nin = 2, .gen = { g0, g1 }, .twice = true,                 \
	  .v = { BINARY_VARIANTS } }

#define UNARY(opname, f, g, ...)                                                          \
	{ .op = opname, .fn = f, .nin = 1, .gen = { g }, .twice = true,                      \
	  .v = { { .name = "(2,3)", .in = { SH(2, 3) }, .arg = { __VA_ARGS__ } },         \
		 { .name = "scalar ()", .in = { SCALAR }, .arg = { __VA_ARGS__ } },        \
		 { .name = "(2,2,2)", .in = { SH(2, 2, 2) }, .arg = { __VA_ARGS__ } } } }

const op_row op_table[] = {
	/* binary.c */
	BINARY("add", f_add, GEN_ANY, GEN_ANY),
	BINARY("sub", f_sub, GEN_ANY, GEN_ANY),
	BINARY("mul", f_mul, GEN_ANY, GEN_ANY),
	BINARY("div", f_div, GEN_ANY, GEN_POS),
	BINARY("maximum", f_maximum, GEN_GRID, GEN_GRID_HALF),
	BINARY("minimum", f_minimum, GEN_GRID, GEN_GRID_HALF),
	{ .op = "pow", .fn = f_pow, .nin = 1, .gen = { GEN_POS }, .twice = true,
	  .v = { { .name = "x^3", .in = { SH(2, 3) }, .arg = { 3 } },
		 { .name = "x^2, scalar", .in = { SCALAR }, .arg = { 2 } },
		 { .name = "x^0.5", .in = { SH(2, 3) }, .arg = { 0.5 } },
		 { .name = "x^-1.5", .in = { SH(4) }, .arg = { -1.5 } } } },
	{ .op = "pow_backward", .fn = f_pow_backward, .nin = 2, .gen = { GEN_ANY, GEN_POS },
	  .twice = true,
	  .v = { { .name = "(2,3) and (2,3), p 3", .in = { SH(2, 3), SH(2, 3) }, .arg = { 3 } },
		 { .name = "scalars, p 2", .in = { SCALAR, SCALAR }, .arg = { 2 } },
		 { .name = "(4,) and (4,), p 0.5", .in = { SH(4), SH(4) }, .arg = { 0.5 } },
		 { .name = "(2,2) and (2,2), p -1.5", .in = { SH(2, 2), SH(2, 2) },
		   .arg = { -1.5 } } } },
	UNARY("add_scalar", f_add_scalar, GEN_ANY, 0.75),
	UNARY("mul_scalar", f_mul_scalar, GEN_ANY, -1.25),

	/* unary.c */
	UNARY("neg", f_neg, GEN_ANY, 0),
	UNARY("exp", f_exp, GEN_ANY, 0),
	UNARY("log", f_log, GEN_POS, 0),
	UNARY("sqrt", f_sqrt, GEN_POS, 0),
	UNARY("abs", f_abs, GEN_AWAY, 0),
	UNARY("step", abs_sign, GEN_AWAY, 0),
	UNARY("sigmoid", f_sigmoid, GEN_ANY, 0),
	UNARY("tanh", f_tanh, GEN_ANY, 0),
	UNARY("relu", f_relu, GEN_AWAY, 0),
	UNARY("leaky_relu", f_leaky_relu, GEN_AWAY, 0.1),
	UNARY("elu", f_elu, GEN_AWAY, 0.5),
	UNARY("softplus", f_softplus, GEN_ANY, 0),
	{ .op = "sigmoid_backward", .fn = f_sigmoid_backward, .nin = 2,
	  .gen = { GEN_ANY, GEN_PROB }, .twice = true,
	  .v = { { .name = "(2,3) and (2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "scalars", .in = { SCALAR, SCALAR } } } },
	{ .op = "relu_backward", .fn = f_relu_backward, .nin = 2,
	  .gen = { GEN_ANY, GEN_AWAY }, .twice = true,
	  .v = { { .name = "(2,3) and (2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "scalars", .in = { SCALAR, SCALAR } },
		 { .name = "(2,2,2) and (2,2,2)", .in = { SH(2, 2, 2), SH(2, 2, 2) } } } },

	{ .op = "tanh_backward", .fn = f_tanh_backward, .nin = 2,
	  .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) and (2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "scalars", .in = { SCALAR, SCALAR } },
		 { .name = "(2,2,2) and (2,2,2)", .in = { SH(2, 2, 2), SH(2, 2, 2) } } } },
	{ .op = "leaky_relu_backward", .fn = f_leaky_relu_backward, .nin = 2,
	  .gen = { GEN_ANY, GEN_AWAY }, .twice = true,
	  .v = { { .name = "(2,3) and (2,3), alpha 0.1", .in = { SH(2, 3), SH(2, 3) },
		   .arg = { 0.1 } },
		 { .name = "scalars, alpha 0.3", .in = { SCALAR, SCALAR }, .arg = { 0.3 } },
		 { .name = "(2,2,2) and (2,2,2), alpha 0.01", .in = { SH(2, 2, 2), SH(2, 2, 2) },
		   .arg = { 0.01 } } } },
	{ .op = "elu_backward", .fn = f_elu_backward, .nin = 2,
	  .gen = { GEN_ANY, GEN_AWAY }, .twice = true,
	  .v = { { .name = "(2,3) and (2,3), alpha 0.5", .in = { SH(2, 3), SH(2, 3) },
		   .arg = { 0.5 } },
		 { .name = "scalars, alpha 1", .in = { SCALAR, SCALAR }, .arg = { 1.0 } },
		 { .name = "(2,2,2) and (2,2,2), alpha 1.5", .in = { SH(2, 2, 2), SH(2, 2, 2) },
		   .arg = { 1.5 } } } },

	UNARY("log1p", f_log1p, GEN_PROB, 0),
	UNARY("expm1", f_expm1, GEN_ANY, 0),
	UNARY("sin", f_sin, GEN_ANY, 0),
	UNARY("cos", f_cos, GEN_ANY, 0),
	UNARY("erf", f_erf, GEN_ANY, 0),
	UNARY("gelu", f_gelu, GEN_ANY, 0),
	UNARY("silu", f_silu, GEN_ANY, 0),
	{ .op = "gelu_backward", .fn = f_gelu_backward, .nin = 2,
	  .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) and (2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "scalars", .in = { SCALAR, SCALAR } },
		 { .name = "(2,2,2) and (2,2,2)", .in = { SH(2, 2, 2), SH(2, 2, 2) } } } },
	{ .op = "softplus_backward", .fn = f_softplus_backward, .nin = 2,
	  .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) and (2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "scalars", .in = { SCALAR, SCALAR } },
		 { .name = "(2,2,2) and (2,2,2)", .in = { SH(2, 2, 2), SH(2, 2, 2) } } } },
	{ .op = "silu_backward", .fn = f_silu_backward, .nin = 2,
	  .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) and (2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "scalars", .in = { SCALAR, SCALAR } },
		 { .name = "(2,2,2) and (2,2,2)", .in = { SH(2, 2, 2), SH(2, 2, 2) } } } },

	/* select.c: clamp's bounds in arg[0..1]; where's mask of shape to */
	{ .op = "clamp", .fn = f_clamp, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) to [-0.5, 0.7]", .in = { SH(2, 3) }, .arg = { -0.5, 0.7 } },
		 { .name = "(4,4) to [-inf, 0.3]", .in = { SH(4, 4) }, .arg = { -INFINITY, 0.3 } },
		 { .name = "(2,2,2) to [-0.2, inf]", .in = { SH(2, 2, 2) },
		   .arg = { -0.2, INFINITY } },
		 { .name = "scalar () to [-1, 1]", .in = { SCALAR }, .arg = { -1, 1 } } } },
	{ .op = "where", .fn = f_where, .nin = 2, .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "mask (2,3), (2,3), (2,3)", .in = { SH(2, 3), SH(2, 3) },
		   .to = SH(2, 3) },
		 { .name = "mask (2,1), (1,3), ()", .in = { SH(1, 3), SCALAR }, .to = SH(2, 1) },
		 { .name = "mask (3,), (2,3), (2,1)", .in = { SH(2, 3), SH(2, 1) }, .to = SH(3) },
		 { .name = "f32 mask (2,3), f64 (2,3), (3,)", .in = { SH(2, 3), SH(3) },
		   .to = SH(2, 3), .arg = { 1 } },
		 { .name = "5-D mask (2,1,1,1,3), (1,2,1,3), (2,1,2,1,1)",
		   .in = { SH(1, 2, 1, 3), SH(2, 1, 2, 1, 1) }, .to = SH(2, 1, 1, 1, 3) } } },

	/* reduce.c */
	{ .op = "sum", .fn = f_sum, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3)", .in = { SH(2, 3) } },
		 { .name = "scalar ()", .in = { SCALAR } },
		 { .name = "(2,1,3)", .in = { SH(2, 1, 3) } },
		 { .name = "8-D (1,2,1,2,2,1,1,2)", .in = { SH(1, 2, 1, 2, 2, 1, 1, 2) } } } },
	{ .op = "mean", .fn = f_mean, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3)", .in = { SH(2, 3) } },
		 { .name = "scalar ()", .in = { SCALAR } },
		 { .name = "(5,)", .in = { SH(5) } } } },
	{ .op = "max", .fn = f_max, .nin = 1, .gen = { GEN_DISTINCT }, .twice = true,
	  .v = { { .name = "(2,3)", .in = { SH(2, 3) } },
		 { .name = "(5,)", .in = { SH(5) } } } },
	{ .op = "sum_axis", .fn = f_sum_axis, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) axis 0", .in = { SH(2, 3) }, .arg = { 0, 0 } },
		 { .name = "(2,3) axis 1 keepdim", .in = { SH(2, 3) }, .arg = { 1, 1 } },
		 { .name = "(2,3) axis -1", .in = { SH(2, 3) }, .arg = { -1, 0 } },
		 { .name = "(2,3,2) axis 1", .in = { SH(2, 3, 2) }, .arg = { 1, 0 } },
		 { .name = "(4,) axis 0", .in = { SH(4) }, .arg = { 0, 0 } },
		 { .name = "5-D (2,1,2,1,3) axis 2", .in = { SH(2, 1, 2, 1, 3) }, .arg = { 2, 0 } },
		 { .name = "8-D (2,1,2,1,1,2,1,2) axis -3 keepdim",
		   .in = { SH(2, 1, 2, 1, 1, 2, 1, 2) }, .arg = { -3, 1 } } } },
	{ .op = "mean_axis", .fn = f_mean_axis, .nin = 1, .gen = { GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(2,3) axis 0", .in = { SH(2, 3) }, .arg = { 0, 0 } },
		 { .name = "(2,3) axis 1 keepdim", .in = { SH(2, 3) }, .arg = { 1, 1 } },
		 { .name = "(2,3,2) axis -2 keepdim", .in = { SH(2, 3, 2) }, .arg = { -2, 1 } },
		 { .name = "8-D (2,1,2,1,1,2,1,2) axis 0", .in = { SH(2, 1, 2, 1, 1, 2, 1, 2) },
		   .arg = { 0, 0 } } } },
	{ .op = "max_axis", .fn = f_max_axis, .nin = 1, .gen = { GEN_DISTINCT },
	  .twice = true,
	  .v = { { .name = "(2,3) axis 0", .in = { SH(2, 3) }, .arg = { 0, 0 } },
		 { .name = "(2,3) axis 1 keepdim", .in = { SH(2, 3) }, .arg = { 1, 1 } },
		 { .name = "(2,3,2) axis 1", .in = { SH(2, 3, 2) }, .arg = { 1, 0 } },
		 { .name = "5-D (2,1,3,1,2) axis 2", .in = { SH(2, 1, 3, 1, 2) }, .arg = { 2, 0 } },
		 { .name = "8-D (2,1,1,3,1,1,1,2) axis -5 keepdim",
		   .in = { SH(2, 1, 1, 3, 1, 1, 1, 2) }, .arg = { -5, 1 } } } },
	{ .op = "accumulate", .fn = f_accumulate, .nin = 2, .gen = { GEN_ANY, GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(2,3) and (2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "() and ()", .in = { SCALAR, SCALAR } },
		 { .name = "(2,1,2,1,3) and (2,1,2,1,3)", .in = { SH(2, 1, 2, 1, 3),
								   SH(2, 1, 2, 1, 3) } } } },
	{ .op = "sum_to", .fn = f_sum_to, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) to (3,)", .in = { SH(2, 3) }, .to = SH(3) },
		 { .name = "(2,3) to (2,1)", .in = { SH(2, 3) }, .to = SH(2, 1) },
		 { .name = "(2,3) to (1,3)", .in = { SH(2, 3) }, .to = SH(1, 3) },
		 { .name = "(2,3) to ()", .in = { SH(2, 3) }, .to = SCALAR },
		 { .name = "(2,3,4) to (3,1)", .in = { SH(2, 3, 4) }, .to = SH(3, 1) },
		 { .name = "5-D (2,3,2,1,3) to (3,1,1,3)", .in = { SH(2, 3, 2, 1, 3) },
		   .to = SH(3, 1, 1, 3) },
		 { .name = "8-D (2,1,2,2,1,1,2,2) to (2,1,1,2,1)",
		   .in = { SH(2, 1, 2, 2, 1, 1, 2, 2) }, .to = SH(2, 1, 1, 2, 1) } } },
	{ .op = "expand", .fn = f_expand, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(3,) to (2,3)", .in = { SH(3) }, .to = SH(2, 3) },
		 { .name = "(2,1) to (2,3)", .in = { SH(2, 1) }, .to = SH(2, 3) },
		 { .name = "() to (2,2)", .in = { SCALAR }, .to = SH(2, 2) },
		 { .name = "(1,3) to (2,2,3)", .in = { SH(1, 3) }, .to = SH(2, 2, 3) },
		 { .name = "5-D (2,1,3) to (2,1,2,2,3)", .in = { SH(2, 1, 3) },
		   .to = SH(2, 1, 2, 2, 3) },
		 { .name = "8-D (2,1,2) to (2,1,1,1,1,2,2,2)", .in = { SH(2, 1, 2) },
		   .to = SH(2, 1, 1, 1, 1, 2, 2, 2) } } },

	/* matrix.c */
	{ .op = "matmul", .fn = f_matmul, .nin = 2, .gen = { GEN_ANY, GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(2,3) @ (3,4)", .in = { SH(2, 3), SH(3, 4) } },
		 { .name = "(1,3) @ (3,1)", .in = { SH(1, 3), SH(3, 1) } },
		 { .name = "(4,1) @ (1,2)", .in = { SH(4, 1), SH(1, 2) } },
		 { .name = "(5,7) @ (7,6)", .in = { SH(5, 7), SH(7, 6) } },
		 { .name = "(3,2)^T @ (3,4)", .in = { SH(3, 2), SH(3, 4) }, .arg = { 1, 0, 1 } },
		 { .name = "(2,3) @ (4,3)^T", .in = { SH(2, 3), SH(4, 3) }, .arg = { 0, 1, 1 } },
		 { .name = "(3,2)^T @ (4,3)^T", .in = { SH(3, 2), SH(4, 3) },
		   .arg = { 1, 1, 1 } } } },
	{ .op = "addmm", .fn = f_addmm, .nin = 3, .gen = { GEN_ANY, GEN_ANY, GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(2,3) @ (3,4) + (4,)", .in = { SH(2, 3), SH(3, 4), SH(4) } },
		 { .name = "(5,7) @ (7,6) + (1,6)", .in = { SH(5, 7), SH(7, 6), SH(1, 6) } },
		 { .name = "(1,3) @ (3,1) + (1,)", .in = { SH(1, 3), SH(3, 1), SH(1) } } } },
	{ .op = "addmm_relu", .fn = f_addmm_relu, .nin = 3, .gen = { GEN_ANY, GEN_ANY, GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(2,3) @ (3,4) + (4,)", .in = { SH(2, 3), SH(3, 4), SH(4) } },
		 { .name = "(5,7) @ (7,6) + (1,6)", .in = { SH(5, 7), SH(7, 6), SH(1, 6) } },
		 { .name = "(1,3) @ (3,1) + (1,)", .in = { SH(1, 3), SH(3, 1), SH(1) } } } },
	{ .op = "transpose", .fn = f_transpose, .nin = 1, .gen = { GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(2,3)", .in = { SH(2, 3) } },
		 { .name = "(1,4)", .in = { SH(1, 4) } } } },
	{ .op = "reshape", .fn = f_reshape, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) to (3,2)", .in = { SH(2, 3) }, .to = SH(3, 2) },
		 { .name = "(2,3) to (6,)", .in = { SH(2, 3) }, .to = SH(6) },
		 { .name = "(6,) to (2,-1,1)", .in = { SH(6) }, .to = SH(2, -1, 1) },
		 { .name = "(1,) to ()", .in = { SH(1) }, .to = SCALAR } } },

	{ .op = "bmm", .fn = f_bmm, .nin = 2, .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,2,3) @ (2,3,4)", .in = { SH(2, 2, 3), SH(2, 3, 4) } },
		 { .name = "(2,1,3,2) @ (3,2,2)", .in = { SH(2, 1, 3, 2), SH(3, 2, 2) } },
		 { .name = "(3,2,3) @ (3,4), one GEMM", .in = { SH(3, 2, 3), SH(3, 4) } },
		 { .name = "(2,3) @ (3,3,2)", .in = { SH(2, 3), SH(3, 3, 2) } },
		 { .name = "(1,2,3) @ (2,3,2)", .in = { SH(1, 2, 3), SH(2, 3, 2) } },
		 { .name = "(2,3) @ (3,4), 2-D", .in = { SH(2, 3), SH(3, 4) } },
		 { .name = "(2,3,2)^T @ (2,3,4)", .in = { SH(2, 3, 2), SH(2, 3, 4) },
		   .arg = { 1, 0, 1 } },
		 { .name = "(2,2,3) @ (2,4,3)^T", .in = { SH(2, 2, 3), SH(2, 4, 3) },
		   .arg = { 0, 1, 1 } },
		 { .name = "(1,3,2)^T @ (2,4,3)^T", .in = { SH(1, 3, 2), SH(2, 4, 3) },
		   .arg = { 1, 1, 1 } },
		 { .name = "(3,2)^T @ (2,3,4)", .in = { SH(3, 2), SH(2, 3, 4) },
		   .arg = { 1, 0, 1 } } } },

	/* shape.c */
	{ .op = "permute", .fn = f_permute, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) to (1,0)", .in = { SH(2, 3) }, .to = SH(1, 0) },
		 { .name = "(2,3,4) to (2,0,1)", .in = { SH(2, 3, 4) }, .to = SH(2, 0, 1) },
		 { .name = "(2,3,4) to (1,0,2), last stays", .in = { SH(2, 3, 4) },
		   .to = SH(1, 0, 2) },
		 { .name = "(2,3,4) to (0,2,1)", .in = { SH(2, 3, 4) }, .to = SH(0, 2, 1) },
		 { .name = "(2,3,2,2) to (3,1,0,2)", .in = { SH(2, 3, 2, 2) },
		   .to = SH(3, 1, 0, 2) },
		 { .name = "(2,1,3) to (-1,1,0)", .in = { SH(2, 1, 3) }, .to = SH(-1, 1, 0) },
		 { .name = "(4,) to (0)", .in = { SH(4) }, .to = SH(0) } } },
	{ .op = "slice", .fn = f_slice, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(4,3) axis 0 [1,3)", .in = { SH(4, 3) }, .arg = { 0, 1, 2 } },
		 { .name = "(2,5) axis -1 [-3,-1)", .in = { SH(2, 5) }, .arg = { -1, -3, 2 } },
		 { .name = "(2,3,4) axis 1 [2,3)", .in = { SH(2, 3, 4) }, .arg = { 1, 2, 1 } },
		 { .name = "(5,) whole", .in = { SH(5) }, .arg = { 0, 0, 5 } } } },
	{ .op = "pad_axis", .fn = f_pad_axis, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) axis 0, 1 before 2 after", .in = { SH(2, 3) },
		   .arg = { 0, 1, 2 } },
		 { .name = "(2,3) axis 1, 2 after", .in = { SH(2, 3) }, .arg = { 1, 0, 2 } },
		 { .name = "(2,2,2) axis -1, 1 before", .in = { SH(2, 2, 2) },
		   .arg = { -1, 1, 0 } } } },
	{ .op = "concat", .fn = f_concat, .nin = 2, .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3), (4,3) axis 0", .in = { SH(2, 3), SH(4, 3) },
		   .arg = { 0, 2, 2 } },
		 { .name = "(2,2,3), (2,1,3) axis -2", .in = { SH(2, 2, 3), SH(2, 1, 3) },
		   .arg = { -2, 2, 2 } },
		 { .name = "(3,1), (3,2) axis 1", .in = { SH(3, 1), SH(3, 2) },
		   .arg = { 1, 2, 2 } },
		 { .name = "6 of (1,3), (2,3) axis 0, a tree", .in = { SH(1, 3), SH(2, 3) },
		   .arg = { 0, 6, 2 } },
		 { .name = "9 of (2,1), (2,2) axis 1, a tree", .in = { SH(2, 1), SH(2, 2) },
		   .arg = { 1, 9, 2 } } } },
	{ .op = "stack", .fn = f_stack, .nin = 2, .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3), (2,3) axis 0", .in = { SH(2, 3), SH(2, 3) },
		   .arg = { 0, 2, 2 } },
		 { .name = "(2,3), (2,3) axis -1", .in = { SH(2, 3), SH(2, 3) },
		   .arg = { -1, 2, 2 } },
		 { .name = "3 of (2,), (2,) axis 1", .in = { SH(2), SH(2) },
		   .arg = { 1, 3, 2 } },
		 { .name = "4 of (2,2), (2,2) axis 1", .in = { SH(2, 2), SH(2, 2) },
		   .arg = { 1, 4, 2 } } } },

	/* index.c */
	{ .op = "index_select", .fn = f_index_select, .nin = 1, .gen = { GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(3,2) axis 0 rows 2,0,2,1", .in = { SH(3, 2) }, .arg = { 0, 4 } },
		 { .name = "(3,) axis 0 rows 2,0", .in = { SH(3) }, .arg = { 0, 2 } },
		 { .name = "(3,2,2) axis 0 rows 2,0,2", .in = { SH(3, 2, 2) }, .arg = { 0, 3 } },
		 { .name = "(2,3,2) axis 1 entries 2,0,2,1", .in = { SH(2, 3, 2) },
		   .arg = { 1, 4 } },
		 { .name = "(2,4) axis -1 entries 2,0,2", .in = { SH(2, 4) }, .arg = { -1, 3 } } } },
	{ .op = "index_add", .fn = f_index_add, .nin = 1, .gen = { GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(4,2) to rows 2,0,2,1 of (3,2)", .in = { SH(4, 2) }, .to = SH(3, 2),
		   .arg = { 0 } },
		 { .name = "(2,) to rows 2,0 of (3,)", .in = { SH(2) }, .to = SH(3), .arg = { 0 } },
		 { .name = "(2,4,2) to axis 1 entries 2,0,2,1 of (2,3,2)", .in = { SH(2, 4, 2) },
		   .to = SH(2, 3, 2), .arg = { 1 } } } },
	{ .op = "pick", .fn = f_pick, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(4,4) picks 3,0,2,1", .in = { SH(4, 4) } },
		 { .name = "(1,5) pick 3", .in = { SH(1, 5) } } } },

	/* softmax.c */
	{ .op = "softmax", .fn = f_softmax, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3)", .in = { SH(2, 3) } },
		 { .name = "(4,)", .in = { SH(4) } },
		 { .name = "(2,2,3)", .in = { SH(2, 2, 3) } },
		 { .name = "(3,2) along axis 0", .in = { SH(3, 2) }, .arg = { 1 } },
		 { .name = "(2,3,2,2) along axis 1", .in = { SH(2, 3, 2, 2) }, .arg = { 2 } } } },
	{ .op = "softmax_grad", .fn = f_softmax_grad, .nin = 2, .gen = { GEN_ANY, GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(2,3) and (2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "(4,) and (4,)", .in = { SH(4), SH(4) } },
		 { .name = "(2,2,3) and (2,2,3)", .in = { SH(2, 2, 3), SH(2, 2, 3) } },
		 { .name = "(2,3,2) and (2,3,2) along axis 1", .in = { SH(2, 3, 2), SH(2, 3, 2) },
		   .arg = { 2 } } } },
	{ .op = "log_softmax", .fn = f_log_softmax, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3)", .in = { SH(2, 3) } },
		 { .name = "(4,)", .in = { SH(4) } },
		 { .name = "(2,2,3)", .in = { SH(2, 2, 3) } },
		 { .name = "(3,2) along axis 0", .in = { SH(3, 2) }, .arg = { 1 } },
		 { .name = "(2,3,2,2) along axis 1", .in = { SH(2, 3, 2, 2) }, .arg = { 2 } } } },
	{ .op = "log_softmax_grad", .fn = f_log_softmax_grad, .nin = 2,
	  .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) and (2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "(4,) and (4,)", .in = { SH(4), SH(4) } },
		 { .name = "(2,2,3) and (2,2,3)", .in = { SH(2, 2, 3), SH(2, 2, 3) } },
		 { .name = "(2,3,2) and (2,3,2) along axis 1", .in = { SH(2, 3, 2), SH(2, 3, 2) },
		   .arg = { 2 } } } },
	{ .op = "logsumexp", .fn = f_logsumexp, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) along axis 1", .in = { SH(2, 3) }, .arg = { 1 } },
		 { .name = "(4,) along axis 0, keepdim", .in = { SH(4) }, .arg = { 0, 1 } },
		 { .name = "(3,2,2) along axis 0", .in = { SH(3, 2, 2) }, .arg = { 0 } },
		 { .name = "(2,3,2) along axis -2, keepdim", .in = { SH(2, 3, 2) },
		   .arg = { -2, 1 } } } },
	{ .op = "cross_entropy", .fn = f_cross_entropy, .nin = 1, .gen = { GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(4,4) labels 1,3,0,2", .in = { SH(4, 4) } },
		 { .name = "(1,5) label 1", .in = { SH(1, 5) } },
		 { .name = "(3,4) labels 1,3,0", .in = { SH(3, 4) } },
		 { .name = "(4,) one sample", .in = { SH(4) }, .arg = { 1 } },
		 { .name = "(2,3,2,2) labels (2,2,2)", .in = { SH(2, 3, 2, 2) }, .arg = { 1 } },
		 { .name = "(2,4,3) labels (2,3)", .in = { SH(2, 4, 3) }, .arg = { 1 } } } },
	{ .op = "cross_entropy_backward", .fn = f_cross_entropy_backward, .nin = 2,
	  .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "() and (4,4) labels 1,3,0,2", .in = { SCALAR, SH(4, 4) } },
		 { .name = "() and (1,5) label 1", .in = { SCALAR, SH(1, 5) } },
		 { .name = "(1,1) and (3,4) labels 1,3,0", .in = { SH(1, 1), SH(3, 4) } } } },

	/* norm.c: x (N,D), gamma and beta (D); or x (N,C,...), gamma and beta (C) */
	{ .op = "batch_norm", .fn = f_batch_norm, .nin = 3,
	  .gen = { GEN_ANY, GEN_AWAY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(4,3) eps 1e-5", .in = { SH(4, 3), SH(3), SH(3) }, .arg = { 1e-5 } },
		 { .name = "batch of 2, (2,3) eps 0.1", .in = { SH(2, 3), SH(3), SH(3) },
		   .arg = { 0.1 } },
		 { .name = "one column (6,1) eps 1e-3", .in = { SH(6, 1), SH(1), SH(1) },
		   .arg = { 1e-3 } },
		 { .name = "(8,5) eps 1e-5", .in = { SH(8, 5), SH(5), SH(5) }, .arg = { 1e-5 } },
		 { .name = "channels (3,2,2,5) eps 1e-5", .in = { SH(3, 2, 2, 5), SH(2), SH(2) },
		   .arg = { 1e-5 } },
		 { .name = "channels (2,3,9) eps 0.1", .in = { SH(2, 3, 9), SH(3), SH(3) },
		   .arg = { 0.1 } } } },
	{ .op = "batch_norm_relu", .fn = f_batch_norm_relu, .nin = 3,
	  .gen = { GEN_ANY, GEN_AWAY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(4,3) eps 1e-5", .in = { SH(4, 3), SH(3), SH(3) }, .arg = { 1e-5 } },
		 { .name = "(8,5) eps 0.1", .in = { SH(8, 5), SH(5), SH(5) }, .arg = { 0.1 } },
		 { .name = "channels (3,2,2,5) eps 1e-5", .in = { SH(3, 2, 2, 5), SH(2), SH(2) },
		   .arg = { 1e-5 } },
		 { .name = "channels (2,3,9) eps 1e-3", .in = { SH(2, 3, 9), SH(3), SH(3) },
		   .arg = { 1e-3 } } } },
	{ .op = "batch_norm_backward", .fn = f_batch_norm_backward, .nin = 3,
	  .gen = { GEN_ANY, GEN_ANY, GEN_AWAY }, .twice = true,
	  .v = { { .name = "(4,3) eps 1e-5", .in = { SH(4, 3), SH(4, 3), SH(3) }, .arg = { 1e-5 } },
		 { .name = "batch of 2, (2,3) eps 0.1", .in = { SH(2, 3), SH(2, 3), SH(3) },
		   .arg = { 0.1 } },
		 { .name = "one column (6,1) eps 1e-3", .in = { SH(6, 1), SH(6, 1), SH(1) },
		   .arg = { 1e-3 } },
		 { .name = "(5,4) eps 1e-5", .in = { SH(5, 4), SH(5, 4), SH(4) },
		   .arg = { 1e-5 } },
		 { .name = "channels (3,2,2,5) eps 1e-5",
		   .in = { SH(3, 2, 2, 5), SH(3, 2, 2, 5), SH(2) }, .arg = { 1e-5 } } } },

	/* norm.c: layer norm of x (..., D) over its last axis; gamma and beta (D) */
	{ .op = "layer_norm", .fn = f_layer_norm, .nin = 3,
	  .gen = { GEN_ANY, GEN_AWAY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3) eps 1e-5", .in = { SH(2, 3), SH(3), SH(3) }, .arg = { 1e-5 } },
		 { .name = "one row (4,) eps 0.1", .in = { SH(4), SH(4), SH(4) }, .arg = { 0.1 } },
		 { .name = "(2,2,3) eps 1e-3", .in = { SH(2, 2, 3), SH(3), SH(3) },
		   .arg = { 1e-3 } },
		 { .name = "rows of 2, (3,2) eps 1e-5", .in = { SH(3, 2), SH(2), SH(2) },
		   .arg = { 1e-5 } },
		 { .name = "(4,5) eps 1e-5", .in = { SH(4, 5), SH(5), SH(5) }, .arg = { 1e-5 } } } },
	{ .op = "layer_norm_backward", .fn = f_layer_norm_backward, .nin = 3,
	  .gen = { GEN_ANY, GEN_ANY, GEN_AWAY }, .twice = true,
	  .v = { { .name = "(2,3) eps 1e-5", .in = { SH(2, 3), SH(2, 3), SH(3) }, .arg = { 1e-5 } },
		 { .name = "one row (4,) eps 0.1", .in = { SH(4), SH(4), SH(4) }, .arg = { 0.1 } },
		 { .name = "(2,2,3) eps 1e-3", .in = { SH(2, 2, 3), SH(2, 2, 3), SH(3) },
		   .arg = { 1e-3 } },
		 { .name = "(3,5) eps 1e-5", .in = { SH(3, 5), SH(3, 5), SH(5) },
		   .arg = { 1e-5 } } } },

	/* loss.c: pred and target of one shape -> a scalar. l1 and huber draw
	 * from interleaved ladders, so |pred - target| is 0.2, 0.6, 1.0, ...:
	 * never at l1's kink (0) nor at huber's (delta 0.4 or 0.8). */
	{ .op = "mse", .fn = f_mse, .nin = 2, .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "scalars", .in = { SCALAR, SCALAR } },
		 { .name = "(2,2,2)", .in = { SH(2, 2, 2), SH(2, 2, 2) } } } },
	{ .op = "l1", .fn = f_l1, .nin = 2, .gen = { GEN_GRID, GEN_GRID_HALF }, .twice = true,
	  .v = { { .name = "(2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "scalars", .in = { SCALAR, SCALAR } },
		 { .name = "(2,2,2)", .in = { SH(2, 2, 2), SH(2, 2, 2) } } } },
	{ .op = "huber", .fn = f_huber, .nin = 2, .gen = { GEN_GRID, GEN_GRID_HALF },
	  .twice = true,
	  .v = { { .name = "(2,3) delta 0.8", .in = { SH(2, 3), SH(2, 3) }, .arg = { 0.8 } },
		 { .name = "(2,3) delta 0.4", .in = { SH(2, 3), SH(2, 3) }, .arg = { 0.4 } },
		 { .name = "scalars delta 0.8", .in = { SCALAR, SCALAR }, .arg = { 0.8 } },
		 { .name = "(4,4) delta 0.8", .in = { SH(4, 4), SH(4, 4) }, .arg = { 0.8 } } } },
	{ .op = "bce_with_logits", .fn = f_bce_with_logits, .nin = 2,
	  .gen = { GEN_ANY, GEN_PROB }, .twice = true,
	  .v = { { .name = "(2,3)", .in = { SH(2, 3), SH(2, 3) } },
		 { .name = "scalars", .in = { SCALAR, SCALAR } },
		 { .name = "(2,2,2)", .in = { SH(2, 2, 2), SH(2, 2, 2) } } } },
	/* conv.c: x (N,C,H,W), w (O,C/groups,KH,KW), b (O); args as conv_opts */
	{ .op = "conv2d", .fn = f_conv2d, .nin = 3, .gen = { GEN_ANY, GEN_ANY, GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(2,2,4,4) * (3,2,3,3)", .in = { SH(2, 2, 4, 4), SH(3, 2, 3, 3), SH(3) },
		   .arg = { 11, 0, 111 } },
		 { .name = "stride 2", .in = { SH(1, 2, 5, 5), SH(2, 2, 3, 3), SH(2) },
		   .arg = { 22, 0, 111 } },
		 { .name = "padding 1", .in = { SH(2, 1, 4, 4), SH(2, 1, 3, 3), SH(2) },
		   .arg = { 11, 11, 111 } },
		 { .name = "dilation 2", .in = { SH(1, 2, 5, 5), SH(2, 2, 2, 2), SH(2) },
		   .arg = { 11, 0, 122 } },
		 { .name = "groups 2", .in = { SH(1, 4, 4, 4), SH(4, 2, 2, 2), SH(4) },
		   .arg = { 11, 0, 211 } },
		 { .name = "stride 2, padding 1, dilation 2, groups 2",
		   .in = { SH(1, 4, 4, 4), SH(2, 2, 2, 2), SH(2) }, .arg = { 22, 11, 222 } },
		 { .name = "stride 2, padding 1", .in = { SH(1, 2, 5, 5), SH(2, 2, 3, 3), SH(2) },
		   .arg = { 22, 11, 111 } },
		 { .name = "padding 1, dilation 2, groups 2",
		   .in = { SH(1, 4, 3, 4), SH(2, 2, 2, 2), SH(2) }, .arg = { 11, 11, 222 } },
		 { .name = "kernel 2x3, stride (2,1), padding (0,1), dilation (1,2)",
		   .in = { SH(1, 2, 5, 6), SH(3, 2, 2, 3), SH(3) }, .arg = { 21, 1, 112 } },
		 { .name = "stride 3, padding 2, kernel 3x2", .in = { SH(1, 1, 6, 7), SH(2, 1, 3, 2), SH(2) },
		   .arg = { 33, 22, 111 } },
		 { .name = "1x1 kernel, groups 4", .in = { SH(2, 4, 2, 3), SH(4, 1, 1, 1), SH(4) },
		   .arg = { 11, 0, 411 } },
		 { .name = "1x1 kernel", .in = { SH(2, 3, 2, 2), SH(2, 3, 1, 1), SH(2) },
		   .arg = { 11, 0, 111 } } } },
	{ .op = "conv2d_relu", .fn = f_conv2d_relu, .nin = 3, .gen = { GEN_ANY, GEN_ANY, GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(2,2,4,4) * (3,2,3,3)", .in = { SH(2, 2, 4, 4), SH(3, 2, 3, 3), SH(3) },
		   .arg = { 11, 0, 111 } },
		 { .name = "stride 2, padding 1, dilation 2, groups 2",
		   .in = { SH(1, 4, 4, 4), SH(2, 2, 2, 2), SH(2) }, .arg = { 22, 11, 222 } },
		 { .name = "1x1 kernel, groups 4", .in = { SH(2, 4, 2, 3), SH(4, 1, 1, 1), SH(4) },
		   .arg = { 11, 0, 411 } } } },
	{ .op = "conv2d", .fn = f_conv2d_no_bias, .nin = 2, .gen = { GEN_ANY, GEN_ANY },
	  .twice = true,
	  .v = { { .name = "no bias (2,2,4,4) * (3,2,3,3)", .in = { SH(2, 2, 4, 4), SH(3, 2, 3, 3) },
		   .arg = { 11, 0, 111 } },
		 { .name = "no bias, stride 2, padding 1, dilation 2, groups 2",
		   .in = { SH(1, 4, 4, 4), SH(2, 2, 2, 2) }, .arg = { 22, 11, 222 } } } },
	{ .op = "conv2d_input_grad", .fn = f_conv2d_input_grad, .nin = 2,
	  .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,3,2,2) and (3,2,3,3) to 4x4",
		   .in = { SH(2, 3, 2, 2), SH(3, 2, 3, 3) }, .to = SH(4, 4), .arg = { 11, 0, 111 } },
		 { .name = "stride 2, padding 1", .in = { SH(1, 2, 3, 3), SH(2, 2, 3, 3) },
		   .to = SH(5, 5), .arg = { 22, 11, 111 } },
		 { .name = "dilation 2, groups 2", .in = { SH(1, 4, 2, 2), SH(4, 2, 2, 2) },
		   .to = SH(4, 4), .arg = { 11, 0, 222 } },
		 { .name = "stride 2, padding 1, dilation 2, groups 2",
		   .in = { SH(1, 2, 2, 2), SH(2, 2, 2, 2) }, .to = SH(4, 4), .arg = { 22, 11, 222 } },
		 { .name = "kernel 2x3, stride (2,1), padding (0,1), dilation (1,2)",
		   .in = { SH(1, 3, 2, 4), SH(3, 2, 2, 3) }, .to = SH(5, 6), .arg = { 21, 1, 112 } },
		 { .name = "stride 3 leaving rows unread", .in = { SH(1, 1, 2, 2), SH(1, 1, 2, 2) },
		   .to = SH(6, 6), .arg = { 33, 0, 111 } },
		 { .name = "1x1 kernel", .in = { SH(2, 2, 2, 2), SH(2, 3, 1, 1) }, .to = SH(2, 2),
		   .arg = { 11, 0, 111 } } } },
	{ .op = "conv2d_weight_grad", .fn = f_conv2d_weight_grad, .nin = 2,
	  .gen = { GEN_ANY, GEN_ANY }, .twice = true,
	  .v = { { .name = "(2,2,4,4) and (2,3,2,2) to 3x3",
		   .in = { SH(2, 2, 4, 4), SH(2, 3, 2, 2) }, .to = SH(3, 3), .arg = { 11, 0, 111 } },
		 { .name = "stride 2, padding 1", .in = { SH(1, 2, 5, 5), SH(1, 2, 3, 3) },
		   .to = SH(3, 3), .arg = { 22, 11, 111 } },
		 { .name = "dilation 2, groups 2", .in = { SH(1, 4, 4, 4), SH(1, 4, 2, 2) },
		   .to = SH(2, 2), .arg = { 11, 0, 222 } },
		 { .name = "stride 2, padding 1, dilation 2, groups 2",
		   .in = { SH(1, 4, 4, 4), SH(1, 2, 2, 2) }, .to = SH(2, 2), .arg = { 22, 11, 222 } },
		 { .name = "kernel 2x3, stride (2,1), padding (0,1), dilation (1,2)",
		   .in = { SH(1, 2, 5, 6), SH(1, 3, 2, 4) }, .to = SH(2, 3), .arg = { 21, 1, 112 } },
		 { .name = "stride 3 leaving rows unread", .in = { SH(1, 1, 6, 6), SH(1, 1, 2, 2) },
		   .to = SH(2, 2), .arg = { 33, 0, 111 } },
		 { .name = "1x1 kernel", .in = { SH(2, 3, 2, 2), SH(2, 2, 2, 2) }, .to = SH(1, 1),
		   .arg = { 11, 0, 111 } } } },
	/* pools: arg kernel, stride, padding; max_pool2d's input has no ties */
	{ .op = "max_pool2d", .fn = f_max_pool2d, .nin = 1, .gen = { GEN_DISTINCT }, .twice = true,
	  .v = { { .name = "(1,2,4,4) kernel 2 stride 2", .in = { SH(1, 2, 4, 4) }, .arg = { 2, 2, 0 } },
		 { .name = "(2,1,5,5) kernel 3 stride 2 padding 1", .in = { SH(2, 1, 5, 5) },
		   .arg = { 3, 2, 1 } },
		 { .name = "(1,2,4,5) kernel 2 stride 1 padding 1", .in = { SH(1, 2, 4, 5) },
		   .arg = { 2, 1, 1 } },
		 { .name = "(1,1,5,4) kernel 3 stride 1, overlapping", .in = { SH(1, 1, 5, 4) },
		   .arg = { 3, 1, 0 } } } },
	/* distinct and never 0, where the relu has its kink; the negatives tie
	 * at 0 after it, with no gradient to give */
	{ .op = "relu_max_pool2d", .fn = f_relu_max_pool2d, .nin = 1, .gen = { GEN_GRID_HALF },
	  .twice = true,
	  .v = { { .name = "(1,2,4,4) kernel 2 stride 2", .in = { SH(1, 2, 4, 4) }, .arg = { 2, 2, 0 } },
		 { .name = "(2,1,5,5) kernel 3 stride 2 padding 1", .in = { SH(2, 1, 5, 5) },
		   .arg = { 3, 2, 1 } },
		 { .name = "(1,1,5,4) kernel 3 stride 1, overlapping", .in = { SH(1, 1, 5, 4) },
		   .arg = { 3, 1, 0 } } } },
	{ .op = "max_pool2d_backward", .fn = f_max_pool2d_backward, .nin = 1, .gen = { GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(1,2,2,2) to (1,2,4,4) kernel 2 stride 2", .in = { SH(1, 2, 2, 2) },
		   .to = SH(1, 2, 4, 4), .arg = { 2, 2, 0 } },
		 { .name = "(2,1,3,3) to (2,1,5,5) kernel 3 stride 2 padding 1",
		   .in = { SH(2, 1, 3, 3) }, .to = SH(2, 1, 5, 5), .arg = { 3, 2, 1 } },
		 { .name = "(1,1,3,2) to (1,1,5,4) kernel 3 stride 1, overlapping",
		   .in = { SH(1, 1, 3, 2) }, .to = SH(1, 1, 5, 4), .arg = { 3, 1, 0 } } } },
	{ .op = "avg_pool2d", .fn = f_avg_pool2d, .nin = 1, .gen = { GEN_ANY }, .twice = true,
	  .v = { { .name = "(1,2,4,4) kernel 2 stride 2", .in = { SH(1, 2, 4, 4) }, .arg = { 2, 2, 0 } },
		 { .name = "(2,1,5,5) kernel 3 stride 2 padding 1", .in = { SH(2, 1, 5, 5) },
		   .arg = { 3, 2, 1 } },
		 { .name = "(1,2,4,5) kernel 2 stride 1 padding 1", .in = { SH(1, 2, 4, 5) },
		   .arg = { 2, 1, 1 } },
		 { .name = "(1,1,5,4) kernel 3 stride 1, overlapping", .in = { SH(1, 1, 5, 4) },
		   .arg = { 3, 1, 0 } } } },
	{ .op = "avg_pool2d_backward", .fn = f_avg_pool2d_backward, .nin = 1, .gen = { GEN_ANY },
	  .twice = true,
	  .v = { { .name = "(1,2,2,2) to (1,2,4,4) kernel 2 stride 2", .in = { SH(1, 2, 2, 2) },
		   .to = SH(1, 2, 4, 4), .arg = { 2, 2, 0 } },
		 { .name = "(2,1,3,3) to (2,1,5,5) kernel 3 stride 2 padding 1",
		   .in = { SH(2, 1, 3, 3) }, .to = SH(2, 1, 5, 5), .arg = { 3, 2, 1 } },
		 { .name = "(1,1,3,2) to (1,1,5,4) kernel 3 stride 1, overlapping",
		   .in = { SH(1, 1, 3, 2) }, .to = SH(1, 1, 5, 4), .arg = { 3, 1, 0 } } } },
};

const size_t op_table_len = sizeof op_table / sizeof op_table[0];

const op_row *op_table_find(const char *name)
{
	for (size_t i = 0; i < op_table_len; i++)
		if (strcmp(op_table[i].op, name) == 0)
			return &op_table[i];
	return NULL;
}

tg_tensor *op_table_apply(const op_row *r, const op_variant *v, tg_tensor *const *in)
{
	return r->fn(in, (void *)v);
}

/* ---- drawing inputs ------------------------------------------------------------- */

static double draw(tg_ctx *ctx, op_gen g, size_t i, size_t n, const int *perm)
{
	double u = tg_random_uniform(ctx);
	switch (g) {
	case GEN_ANY:
		return -2 + 4 * u;
	case GEN_AWAY:
		return (tg_random_u64(ctx) >> 63 ? -1 : 1) * (0.2 + 1.8 * u);
	case GEN_POS:
		return 0.5 + 1.5 * u;
	case GEN_PROB:
		return 0.1 + 0.8 * u;
	case GEN_GRID:
		return 0.4 * (double)(perm[i] - (int)(n / 2));
	case GEN_GRID_HALF:
		return 0.4 * (double)(perm[i] - (int)(n / 2)) + 0.2;
	case GEN_DISTINCT:
		/* a shuffled ladder 0.3 apart, jittered by at most 0.05 */
		return 0.3 * ((double)perm[i] - (double)n / 2) + 0.1 * (u - 0.5);
	}
	return 0;
}

int op_table_inputs(tg_ctx *ctx, const op_row *r, const op_variant *v, tg_tensor **in)
{
	enum { MAX_NUMEL = 64 };
	for (int j = 0; j < r->nin; j++) {
		const op_shape *s = &v->in[j];
		size_t n = 1;
		for (int d = 0; d < s->ndim; d++)
			n *= (size_t)s->dim[d];
		if (n > MAX_NUMEL) {
			tg_fail(ctx, TG_EARG,
				"op_table: %s %s: input %d has %zu elements (%d at most)", r->op,
				v->name, j, n, MAX_NUMEL);
			return -1;
		}
		double x[MAX_NUMEL];
		int perm[MAX_NUMEL];
		for (size_t i = 0; i < n; i++)
			perm[i] = (int)i;
		for (size_t i = n; i > 1; i--) {
			size_t k = (size_t)(tg_random_uniform(ctx) * (double)i);
			int t = perm[i - 1];
			perm[i - 1] = perm[k];
			perm[k] = t;
		}
		for (size_t i = 0; i < n; i++)
			x[i] = (double)(float)draw(ctx, r->gen[j], i, n, perm);
		in[j] = tg_from_f64(ctx, TG_F64, s->ndim, s->dim, x);
		if (!in[j])
			return -1;
	}
	return 0;
}
