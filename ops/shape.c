/*
 * shape.c - ops that move elements without changing them: permute, squeeze
 * and unsqueeze, slice and its adjoint pad_axis, concat, stack and split.
 *
 * Every op here copies; none computes. Backward rules are written with ops
 * from this file, each the other's adjoint (permute by the inverse
 * permutation, slice and pad_axis, concat and slice, stack and slice +
 * reshape), so a TG_CREATE_GRAPH backward records them; a plain one adds a
 * slice's gradient into its rows of the input's in place (split's parts). Kernels work on
 * elements of 4 or 8 bytes, whatever they hold. Shape legend: along one axis
 * a tensor is seen as (outer, n, inner); axis < 0 counts from the end.
 */
#include "internal.h"
#include "parallel.h"
#include "transpose.h"

#include <assert.h>
#include <string.h>

/* ---- shared checks ------------------------------------------------------------ */

/* axis of an ndim-dimensional x counted from the front (axis < 0 counts from
 * the end; ndim + 1 positions where a new axis is inserted), or -1 after
 * recording why. */
static int axis_arg(tg_ctx *ctx, const char *who, const char *name, const tg_tensor *x,
		    int axis, int ndim)
{
	int a = axis < 0 ? axis + ndim : axis;
	if (a < 0 || a >= ndim) {
		char buf[TG_SHAPE_STR];
		if (ndim == 0) /* not "axes 0 to -1" */
			tg_fail(ctx, TG_EARG,
				"%s: axis %d is out of range for %s of shape () (a scalar has no "
				"axes)",
				who, axis, name);
		else
			tg_fail(ctx, TG_EARG, "%s: axis %d is out of range for %s of shape %s (%s%d)",
				who, axis, name, tg_shape_fmt(x->ndim, x->shape, buf),
				ndim == x->ndim ? "axes 0 to " : "new axis at 0 to ", ndim - 1);
		return -1;
	}
	return a;
}

/* The (outer, n, inner) view of shape along axis, in elements. */
typedef tg_view view;

/* ---- permute: out axis j is x's axis perm[j]; dx = permute(dout, perm^-1) ---- */
/* The copy is transpose.c's. The node keeps perm (TG_MAX_DIMS ints) as
 * aux. */

static tg_tensor *permute(tg_tensor *x, const int *perm);

static void permute_backward(tg_node *n, tg_tensor *dout)
{
	const int *perm = n->aux;
	int inv[TG_MAX_DIMS];
	for (int j = 0; j < dout->ndim; j++)
		inv[perm[j]] = j;
	if (!tg_permute_grad_sum(n, dout, inv))
		TG_NODE_GRAD_INTO(n, 0, permute(dout, inv));
}

static const tg_op permute_op = { .name = "permute", .backward = permute_backward,
				  .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(permute_op);

/* x permuted by perm, a checked permutation of x's ndim axes. */
static tg_tensor *permute(tg_tensor *x, const int *perm)
{
	const char *who = "tg_permute";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	const int *saved = tg_save_aux(ctx, perm, TG_MAX_DIMS * sizeof *perm);
	tg_tensor *out = saved ? tg_permuted(x, perm, who) : NULL;
	if (!out)
		return NULL;
	return tg_op_end(&permute_op, out, 1, &x, NULL, 0, saved);
}

tg_tensor *tg_permute(tg_tensor *x, const int *perm)
{
	const char *who = "tg_permute";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	if (x->ndim > 0 && !perm)
		return tg_fail(ctx, TG_ENULL, "%s: perm is NULL for x of %d dimensions", who,
			       x->ndim);
	int p[TG_MAX_DIMS] = { 0 };
	unsigned seen = 0;
	for (int j = 0; j < x->ndim; j++) {
		int a = perm[j] < 0 ? perm[j] + x->ndim : perm[j];
		if (a < 0 || a >= x->ndim || (seen >> a & 1u)) {
			char sx[TG_SHAPE_STR], sp[TG_SHAPE_STR];
			int64_t given[TG_MAX_DIMS];
			for (int i = 0; i < x->ndim; i++)
				given[i] = perm[i];
			return tg_fail(ctx, TG_EARG,
				       "%s: perm %s is not a permutation of the %d axes of x %s: "
				       "entry %d is %d",
				       who, tg_shape_fmt(x->ndim, given, sp), x->ndim,
				       tg_shape_fmt(x->ndim, x->shape, sx), j, perm[j]);
		}
		seen |= 1u << a;
		p[j] = a;
	}
	return permute(x, p);
}

/* ---- squeeze, unsqueeze: reshapes that drop or insert an axis of size 1 ------- */
/* Recorded as reshape, whose gradient reshapes back. */

tg_tensor *tg_squeeze(tg_tensor *x, int axis)
{
	const char *who = "tg_squeeze";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	int a = axis_arg(ctx, who, "x", x, axis, x->ndim);
	if (a < 0)
		return NULL;
	char buf[TG_SHAPE_STR];
	if (x->shape[a] != 1)
		return tg_fail(ctx, TG_ESHAPE, "%s: axis %d of x %s has size %lld, not 1", who,
			       axis, tg_shape_fmt(x->ndim, x->shape, buf),
			       (long long)x->shape[a]);
	int64_t shape[TG_MAX_DIMS];
	for (int i = 0, j = 0; i < x->ndim; i++)
		if (i != a)
			shape[j++] = x->shape[i];
	return tg_reshape(x, x->ndim - 1, shape);
}

tg_tensor *tg_unsqueeze(tg_tensor *x, int axis)
{
	const char *who = "tg_unsqueeze";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	char buf[TG_SHAPE_STR];
	if (x->ndim >= TG_MAX_DIMS)
		return tg_fail(ctx, TG_ESHAPE, "%s: x %s already has %d dimensions, the most a "
					       "tensor has",
			       who, tg_shape_fmt(x->ndim, x->shape, buf), TG_MAX_DIMS);
	int a = axis_arg(ctx, who, "x", x, axis, x->ndim + 1);
	if (a < 0)
		return NULL;
	int64_t shape[TG_MAX_DIMS];
	for (int i = 0, j = 0; j <= x->ndim; j++)
		shape[j] = j == a ? 1 : x->shape[i++];
	return tg_reshape(x, x->ndim + 1, shape);
}

/* ---- rows of pieces: the copies of slice, pad_axis, concat and stack ---------- */
/* The output, viewed as outer rows of row bytes, is a list of pieces per
 * row in order: piece k is len bytes at offset off of row o, copied from
 * src + o * stride, or zeros where src is NULL. The copy is split across
 * the threads by output bytes, at the bounds the elementwise loops use for
 * a tensor of this size, so that the thread that writes a part is the one
 * that reads it next (on a VM whose cores share no cache, concat at 2
 * threads had taken longer than at 1). Each byte is copied once, so the
 * result is the same for every thread count. */

enum { MAX_PIECES = TG_MAX_INPUTS + 2 };

typedef struct piece {
	const char *src;
	size_t off, len, stride;
} piece;

typedef struct pieces_job {
	char *Y;
	size_t row;
	int np;
	piece p[MAX_PIECES];
} pieces_job;

static void pieces_part(void *arg, size_t lo, size_t hi)
{
	const pieces_job *j = arg;
	size_t o = lo / j->row, r = lo % j->row;
	int k = 0;
	while (j->p[k].off + j->p[k].len <= r)
		k++;
	for (size_t at = lo; at < hi;) {
		const piece *p = &j->p[k];
		size_t end = p->off + p->len, take = end - r < hi - at ? end - r : hi - at;
		if (p->src)
			memcpy(j->Y + at, p->src + o * p->stride + (r - p->off), take);
		else
			memset(j->Y + at, 0, take);
		at += take;
		r += take;
		if (r == end && ++k == j->np)
			k = 0, r = 0, o++;
	}
}

/* Adds a piece of len bytes (none when len is 0) at the end of a row. */
static void add_piece(pieces_job *j, const void *src, size_t len, size_t stride)
{
	if (!len)
		return;
	assert(j->np < MAX_PIECES);
	size_t off = j->np ? j->p[j->np - 1].off + j->p[j->np - 1].len : 0;
	j->p[j->np++] = (piece){ src, off, len, stride };
}

/* Runs the job over out, whose rows the pieces fill. */
static void copy_pieces(const tg_tensor *out, pieces_job *j)
{
	size_t es = tg_dtype_size(out->dtype), total = out->numel * es;
	j->Y = out->data;
	j->row = j->np ? j->p[j->np - 1].off + j->p[j->np - 1].len : 0;
	if (!total || !j->row)
		return;
	assert(total % j->row == 0);
	tg_parallel_for(out->ctx, total, TG_PAR_MIN * es, 16 * es, pieces_part, j);
}

/* ---- slice: x[start : start+length] along axis; dx = pad_axis(dout) ----------- */
/* ---- pad_axis: before zeros, x, after zeros along axis; dx = slice(dout) ------ */
/* Attributes: [0] the axis counted from the front; slice [1] start, [2]
 * length; pad_axis [1] before, [2] after. */

/* out (outer, m, inner) from X (outer, n, inner): rows [at, at + m) of X
 * when slicing, or X into rows [at, at + n) of a zero out when padding. */
static void slice_copy(const char *X, const tg_tensor *out, view v, int64_t at, int64_t m)
{
	const size_t es = tg_dtype_size(out->dtype), in = (size_t)v.inner * es;
	pieces_job j = { .np = 0 };
	add_piece(&j, X + (size_t)at * in, (size_t)m * in, (size_t)v.n * in);
	copy_pieces(out, &j);
}

static void pad_copy(const char *X, const tg_tensor *out, view v, int64_t at, int64_t m)
{
	const size_t es = tg_dtype_size(out->dtype), in = (size_t)v.inner * es;
	pieces_job j = { .np = 0 };
	add_piece(&j, NULL, (size_t)at * in, 0);
	add_piece(&j, X, (size_t)v.n * in, (size_t)v.n * in);
	add_piece(&j, NULL, (size_t)(m - at - v.n) * in, 0);
	copy_pieces(out, &j);
}

/* sum (outer, n, inner) rows [at, at + m) += dout (outer, m, inner) */
static void slice_add(const tg_tensor *dout, tg_tensor *sum, view v, int64_t at, int64_t m)
{
	size_t es = tg_dtype_size(dout->dtype);
	tg_add_runs(dout->ctx, dout->dtype, (char *)sum->data + (size_t)(at * v.inner) * es,
		    (size_t)(v.n * v.inner), dout->data, (size_t)(m * v.inner), (size_t)v.outer);
}

static tg_tensor *slice(tg_tensor *x, int axis, int64_t start, int64_t length);
static tg_tensor *pad(tg_tensor *x, int axis, int64_t before, int64_t after);

/* Whether the bytes of a and b overlap. */
static bool overlap(const tg_tensor *a, const tg_tensor *b)
{
	const char *pa = a->data, *pb = b->data;
	return pa < pb + b->numel * tg_dtype_size(b->dtype) &&
	       pb < pa + a->numel * tg_dtype_size(a->dtype);
}

/* dout is added into its own rows of x's gradient where the engine offers
 * that gradient (tg_node_grad_add_buffer): the k slices of a split then
 * cost one clearing of x's size and their own sizes, not k padded tensors
 * of x's size, each added whole. */
static void slice_backward(tg_node *n, tg_tensor *dout)
{
	const tg_tensor *x = tg_node_input(n, 0);
	int axis = (int)tg_node_attr(n, 0);
	int64_t start = (int64_t)tg_node_attr(n, 1), length = (int64_t)tg_node_attr(n, 2);
	if (dout->dtype == x->dtype && tg_same_shape(dout, n->out)) {
		tg_tensor *sum = tg_node_grad_add_buffer(n, 0);
		if (sum && !overlap(sum, dout)) {
			slice_add(dout, sum, tg_view_along(x->ndim, x->shape, axis), start, length);
			tg_node_grad_summed(n, 0);
			return;
		}
	}
	TG_NODE_GRAD_INTO(n, 0, pad(dout, axis, start, x->shape[axis] - start - length));
}

static void pad_backward(tg_node *n, tg_tensor *dout)
{
	const tg_tensor *x = tg_node_input(n, 0);
	int axis = (int)tg_node_attr(n, 0);
	TG_NODE_GRAD_INTO(n, 0, slice(dout, axis, (int64_t)tg_node_attr(n, 1), x->shape[axis]));
}

static const tg_op slice_op = { .name = "slice", .backward = slice_backward,
				.unread = TG_UNREAD_ALL };
static const tg_op pad_axis_op = { .name = "pad_axis", .backward = pad_backward,
				   .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(slice_op);
TG_OP_REGISTER(pad_axis_op);

/* The slice, with axis, start and length already checked. */
static tg_tensor *slice(tg_tensor *x, int axis, int64_t start, int64_t length)
{
	const char *who = "tg_slice";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	int64_t shape[TG_MAX_DIMS];
	memcpy(shape, x->shape, sizeof shape);
	shape[axis] = length;
	/* a run of whole rows of the first axis above size 1 is x's data from
	 * an offset on: shared, as a reshape's (tg_tensor_alias) */
	view v = tg_view_along(x->ndim, x->shape, axis);
	tg_tensor *out = tg_tensor_alias(x, who, v.outer == 1, (size_t)(start * v.inner), x->ndim,
					 shape);
	if (!out)
		return NULL;
	if (!out->shares)
		slice_copy(x->data, out, v, start, length);
	const double attr[3] = { axis, (double)start, (double)length };
	return tg_op_end(&slice_op, out, 1, &x, attr, 3, NULL);
}

tg_tensor *tg_slice(tg_tensor *x, int axis, int64_t start, int64_t length)
{
	const char *who = "tg_slice";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	int a = axis_arg(ctx, who, "x", x, axis, x->ndim);
	if (a < 0)
		return NULL;
	const int64_t n = x->shape[a];
	int64_t s = start < 0 ? start + n : start;
	if (s < 0 || s >= n || length < 1 || length > n - s) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_EARG,
			       "%s: start %lld, length %lld is out of range for axis %d of x %s "
			       "(size %lld; start in [-%lld, %lld), length at least 1 and "
			       "start + length at most %lld)",
			       who, (long long)start, (long long)length, axis,
			       tg_shape_fmt(x->ndim, x->shape, buf), (long long)n, (long long)n,
			       (long long)n, (long long)n);
	}
	return slice(x, a, s, length);
}

static tg_tensor *pad(tg_tensor *x, int axis, int64_t before, int64_t after)
{
	const char *who = "tg_pad_axis";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	int64_t shape[TG_MAX_DIMS];
	memcpy(shape, x->shape, sizeof shape);
	shape[axis] = before + x->shape[axis] + after;
	tg_tensor *out = tg_tensor_new(ctx, who, x->dtype, x->ndim, shape);
	if (!out)
		return NULL;
	pad_copy(x->data, out, tg_view_along(x->ndim, x->shape, axis), before, shape[axis]);
	const double attr[3] = { axis, (double)before, (double)after };
	return tg_op_end(&pad_axis_op, out, 1, &x, attr, 3, NULL);
}

tg_tensor *tg_pad_axis(tg_tensor *x, int axis, int64_t before, int64_t after)
{
	const char *who = "tg_pad_axis";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	int a = axis_arg(ctx, who, "x", x, axis, x->ndim);
	if (a < 0)
		return NULL;
	if (before < 0 || after < 0 || (uint64_t)before > TG_MAX_ELEMENTS ||
	    (uint64_t)after > TG_MAX_ELEMENTS)
		return tg_fail(ctx, TG_EARG,
			       "%s: before %lld and after %lld; each must be 0 or more (and at "
			       "most 2^40)",
			       who, (long long)before, (long long)after);
	return pad(x, a, before, after);
}

/* ---- concat: inputs joined along axis; dx_i = slice(dout, axis, offset_i, n_i) --- */
/* ---- stack: inputs joined along a new axis; dx_i = squeeze(slice(dout, axis, i, 1)) */
/* A node holds at most TG_MAX_INPUTS inputs, so more than that are joined in
 * groups first, then the groups' results (a tree of nodes, each a real op with
 * its own rule; log4(n) copies of the data). A stack of groups is a concat of
 * stacks. Attribute [0]: the axis counted from the front (of out, for
 * stack). */

static tg_tensor *concat_node(tg_ctx *ctx, int n, tg_tensor *const *xs, int axis);
static tg_tensor *stack_node(tg_ctx *ctx, int n, tg_tensor *const *xs, int axis);

static void concat_backward(tg_node *n, tg_tensor *dout)
{
	int axis = (int)tg_node_attr(n, 0);
	int64_t at = 0;
	for (int i = 0; i < n->nin; i++) {
		const int64_t len = n->in[i]->shape[axis];
		if (tg_node_needs_grad(n, i))
			TG_NODE_GRAD_INTO(n, i, slice(dout, axis, at, len));
		at += len;
	}
}

/* Item i of dout along axis, in x's shape: the slice without its axis of
 * 1, copied once where nothing records (no node, so no slice to keep). */
static tg_tensor *unstack(tg_tensor *dout, int axis, int64_t i, const tg_tensor *x)
{
	if (tg_op_records(dout->ctx, 1, &dout))
		return tg_reshape(slice(dout, axis, i, 1), x->ndim, x->shape);
	tg_tensor *out = tg_tensor_new(dout->ctx, "tg_stack backward", dout->dtype, x->ndim,
				       x->shape);
	if (out)
		slice_copy(dout->data, out, tg_view_along(dout->ndim, dout->shape, axis), i, 1);
	return out;
}

static void stack_backward(tg_node *n, tg_tensor *dout)
{
	int axis = (int)tg_node_attr(n, 0);
	for (int i = 0; i < n->nin; i++)
		if (tg_node_needs_grad(n, i))
			TG_NODE_GRAD_INTO(n, i, unstack(dout, axis, i, n->in[i]));
}

static const tg_op concat_op = { .name = "concat", .backward = concat_backward,
				 .unread = TG_UNREAD_ALL };
static const tg_op stack_op = { .name = "stack", .backward = stack_backward,
				.unread = TG_UNREAD_ALL };
TG_OP_REGISTER(concat_op);
TG_OP_REGISTER(stack_op);

/* One node of at most TG_MAX_INPUTS checked inputs. */
static tg_tensor *concat_node(tg_ctx *ctx, int n, tg_tensor *const *xs, int axis)
{
	const char *who = "tg_concat";
	int64_t shape[TG_MAX_DIMS];
	memcpy(shape, xs[0]->shape, sizeof shape);
	shape[axis] = 0;
	for (int i = 0; i < n; i++)
		shape[axis] += xs[i]->shape[axis];
	tg_tensor *out = tg_tensor_new(ctx, who, xs[0]->dtype, xs[0]->ndim, shape);
	if (!out)
		return NULL;
	const size_t es = tg_dtype_size(out->dtype);
	const view v = tg_view_along(out->ndim, out->shape, axis);
	pieces_job j = { .np = 0 };
	for (int i = 0; i < n; i++) {
		const size_t run = (size_t)(xs[i]->shape[axis] * v.inner) * es;
		add_piece(&j, xs[i]->data, run, run);
	}
	copy_pieces(out, &j);
	const double attr[1] = { axis };
	return tg_op_end(&concat_op, out, n, xs, attr, 1, NULL);
}

/* One node of at most TG_MAX_INPUTS checked inputs of one shape; axis is of
 * out. */
static tg_tensor *stack_node(tg_ctx *ctx, int n, tg_tensor *const *xs, int axis)
{
	const char *who = "tg_stack";
	const tg_tensor *x0 = xs[0];
	int64_t shape[TG_MAX_DIMS];
	for (int i = 0, j = 0; j <= x0->ndim; j++)
		shape[j] = j == axis ? n : x0->shape[i++];
	tg_tensor *out = tg_tensor_new(ctx, who, x0->dtype, x0->ndim + 1, shape);
	if (!out)
		return NULL;
	const size_t run = (size_t)tg_view_along(out->ndim, out->shape, axis).inner *
			   tg_dtype_size(out->dtype);
	pieces_job j = { .np = 0 };
	for (int i = 0; i < n; i++)
		add_piece(&j, xs[i]->data, run, run);
	copy_pieces(out, &j);
	const double attr[1] = { axis };
	return tg_op_end(&stack_op, out, n, xs, attr, 1, NULL);
}

typedef tg_tensor *(*join_fn)(tg_ctx *, int, tg_tensor *const *, int);

/* join (concat_node or stack_node) of xs[0..n) along axis, as a tree of
 * concat nodes over groups of at most TG_MAX_INPUTS when n is larger. */
static tg_tensor *join(tg_ctx *ctx, join_fn node, int n, tg_tensor *const *xs, int axis)
{
	if (n <= TG_MAX_INPUTS)
		return node(ctx, n, xs, axis);
	const int groups = (n + TG_MAX_INPUTS - 1) / TG_MAX_INPUTS;
	tg_tensor **part = tg_arena_alloc(ctx, (size_t)groups * sizeof *part);
	if (!part)
		return NULL;
	for (int g = 0, at = 0; g < groups; g++) {
		int size = n / groups + (g < n % groups);
		if (!(part[g] = node(ctx, size, xs + at, axis)))
			return NULL;
		at += size;
	}
	return join(ctx, concat_node, groups, part, axis);
}

/* The checks concat and stack share: a context, a list of n >= 1 tensors of
 * one context and dtype. Returns the context or NULL. */
static tg_ctx *list_begin(tg_ctx *ctx, const char *who, int n, tg_tensor *const *xs)
{
	if (!ctx) {
		/* the first live tensor's context learns why its op gave NULL */
		tg_ctx *c = xs ? tg_first_live_ctx(n, xs) : NULL;
		if (c && c->status == TG_OK)
			tg_fail(c, TG_ENULL, "%s: ctx is NULL; give the tensors' context", who);
		return NULL;
	}
	if (ctx->status != TG_OK)
		return NULL;
	if (n < 1)
		return tg_fail(ctx, TG_EARG, "%s: %d tensors; need at least one", who, n);
	if (!xs)
		return tg_fail(ctx, TG_ENULL, "%s: the list of %d tensors is NULL", who, n);
	tg_ctx *c = tg_op_begin(who, n, xs);
	if (c && c != ctx)
		return tg_fail(ctx, TG_ECTX, "%s: the tensors belong to another context than ctx",
			       who);
	if (!c && ctx->status == TG_OK) {
		/* nothing recorded here: every tensor is NULL, or they belong to
		 * another context (which holds the error) */
		int i = 0;
		while (i < n && xs[i])
			i++;
		if (i < n)
			return tg_fail(ctx, TG_ENULL, "%s: argument %d is NULL", who, i);
		return tg_fail(ctx, TG_ECTX, "%s: the tensors belong to another context than ctx",
			       who);
	}
	return c;
}

tg_tensor *tg_concat(tg_ctx *ctx, int n, tg_tensor *const *xs, int axis)
{
	const char *who = "tg_concat";
	if (!list_begin(ctx, who, n, xs))
		return NULL;
	const tg_tensor *x0 = xs[0];
	char s0[TG_SHAPE_STR], si[TG_SHAPE_STR];
	if (x0->ndim == 0)
		return tg_fail(ctx, TG_ESHAPE, "%s: argument 0 is a scalar (); concat needs at "
					       "least 1 dimension",
			       who);
	int a = axis_arg(ctx, who, "argument 0", x0, axis, x0->ndim);
	if (a < 0)
		return NULL;
	for (int i = 1; i < n; i++) {
		const tg_tensor *x = xs[i];
		int off = -1;
		for (int d = 0; d < x0->ndim && off < 0 && x->ndim == x0->ndim; d++)
			if (d != a && x->shape[d] != x0->shape[d])
				off = d;
		if (x->ndim != x0->ndim)
			return tg_fail(ctx, TG_ESHAPE,
				       "%s: argument %d %s has %d dimensions, argument 0 %s has %d",
				       who, i, tg_shape_fmt(x->ndim, x->shape, si), x->ndim,
				       tg_shape_fmt(x0->ndim, x0->shape, s0), x0->ndim);
		if (off >= 0)
			return tg_fail(ctx, TG_ESHAPE,
				       "%s: argument %d %s and argument 0 %s differ in axis %d; only "
				       "axis %d, the concat axis, may differ",
				       who, i, tg_shape_fmt(x->ndim, x->shape, si),
				       tg_shape_fmt(x0->ndim, x0->shape, s0), off, a);
	}
	return join(ctx, concat_node, n, xs, a);
}

tg_tensor *tg_stack(tg_ctx *ctx, int n, tg_tensor *const *xs, int axis)
{
	const char *who = "tg_stack";
	if (!list_begin(ctx, who, n, xs))
		return NULL;
	const tg_tensor *x0 = xs[0];
	char s0[TG_SHAPE_STR], si[TG_SHAPE_STR];
	if (x0->ndim >= TG_MAX_DIMS)
		return tg_fail(ctx, TG_ESHAPE, "%s: argument 0 %s already has %d dimensions, the "
					       "most a tensor has",
			       who, tg_shape_fmt(x0->ndim, x0->shape, s0), TG_MAX_DIMS);
	int a = axis_arg(ctx, who, "argument 0", x0, axis, x0->ndim + 1);
	if (a < 0)
		return NULL;
	for (int i = 1; i < n; i++)
		if (!tg_same_shape(xs[i], x0))
			return tg_fail(ctx, TG_ESHAPE,
				       "%s: argument %d %s and argument 0 %s differ; stacked tensors "
				       "share one shape",
				       who, i, tg_shape_fmt(xs[i]->ndim, xs[i]->shape, si),
				       tg_shape_fmt(x0->ndim, x0->shape, s0));
	return join(ctx, stack_node, n, xs, a);
}

/* ---- split: consecutive slices along axis --------------------------------------- */

int tg_split(tg_tensor *x, int axis, int n, const int64_t *sizes, tg_tensor **out)
{
	const char *who = "tg_split";
	for (int i = 0; out && i < n; i++)
		out[i] = NULL;
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return -1;
	if (!out) {
		tg_fail(ctx, TG_ENULL, "%s: out is NULL", who);
		return -1;
	}
	int a = axis_arg(ctx, who, "x", x, axis, x->ndim);
	if (a < 0)
		return -1;
	char buf[TG_SHAPE_STR];
	const int64_t len = x->shape[a];
	if (n < 1) {
		tg_fail(ctx, TG_EARG, "%s: n is %d; the number of parts must be 1 or more", who, n);
		return -1;
	}
	if (!sizes && len % n != 0) {
		tg_fail(ctx, TG_EARG, "%s: axis %d of x %s (size %lld) does not split into %d equal "
				      "parts",
			who, axis, tg_shape_fmt(x->ndim, x->shape, buf), (long long)len, n);
		return -1;
	}
	int64_t total = 0;
	for (int i = 0; sizes && i < n; i++) {
		if (sizes[i] < 1 || sizes[i] > len) {
			tg_fail(ctx, TG_EARG, "%s: sizes[%d] is %lld; each must be in [1, %lld], the "
					      "size of axis %d of x %s",
				who, i, (long long)sizes[i], (long long)len, axis,
				tg_shape_fmt(x->ndim, x->shape, buf));
			return -1;
		}
		total += sizes[i];
	}
	if (sizes && total != len) {
		tg_fail(ctx, TG_EARG, "%s: sizes add up to %lld, but axis %d of x %s has size %lld",
			who, (long long)total, axis, tg_shape_fmt(x->ndim, x->shape, buf),
			(long long)len);
		return -1;
	}
	int64_t at = 0;
	for (int i = 0; i < n; i++) {
		int64_t m = sizes ? sizes[i] : len / n;
		if (!(out[i] = slice(x, a, at, m))) {
			for (int j = 0; j < i; j++)
				out[j] = NULL;
			return -1;
		}
		at += m;
	}
	return 0;
}
