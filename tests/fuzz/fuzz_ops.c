/*
 * fuzz_ops.c - libFuzzer target: the ops with geometry and the derivative
 * functions, on shapes and arguments the input chooses.
 *
 * fuzz_expr.c drives the elementwise ops, reductions, products and
 * indexing; this target takes the rest: conv2d and its two gradients,
 * max and average pooling and relu_max_pool2d, batch and layer norm with
 * their fused gradients and batch_norm_relu, bmm, addmm and addmm_relu, permute,
 * slice, pad_axis, squeeze, unsqueeze, expand, concat, stack and split,
 * the activations and losses fuzz_expr leaves out with their fused
 * backward ops, and tg_vjp, tg_jvp, tg_hvp, tg_jacobian and tg_hessian
 * over functions made of them. Shapes are small, or zero, negative or
 * huge; convolution and pooling arguments run from INT_MIN to INT_MAX;
 * dtypes are mixed, index tensors included.
 *
 * Rules, checked after every call:
 * - a call either returns a live tensor of the context with the status
 *   TG_OK, or NULL with an error set whose message names the function
 *   (out of memory and anomaly mode aside);
 * - conv2d and the pools are valid exactly when the rules written here,
 *   independently of the library, say so (PyTorch's: the output side
 *   floor((n + 2p - d(k-1) - 1) / s) + 1 at least 1, groups dividing both
 *   channel counts, a pool's padding at most half its kernel), and then
 *   have the shape those rules give; a valid call may only run out of
 *   memory;
 * - the convolution gradients, permute, slice, pad_axis, squeeze,
 *   unsqueeze, concat, stack and split give the shapes their definitions
 *   give;
 * - in f32, on finite inputs, what oneDNN's kernels (direct or Winograd)
 *   compute for conv2d and both gradients agrees with im2col to 1e-5 of
 *   the convolution of the inputs' magnitudes;
 * - batch_norm_relu and relu_max_pool2d give the bits of the two ops they
 *   stand for;
 * - a derivative function returns 0 with every result of its argument's
 *   (or f's) shape, or -1 with the error set and its results NULL;
 * - a backward pass returns 0 or -1 as the status says, and a gradient has
 *   its parameter's shape.
 * The step arena has a limit, so huge shapes end in TG_ENOMEM, and a work
 * budget keeps each run short. TG_FUZZ_TRACE=1 prints each instruction
 * and its status.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "tapegrad.h"

#include "fuzz_common.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NSLOT = 8, MAX_INSNS = 200, ARENA_LIMIT = 8 << 20 };

/* Multiply-adds and elements allowed in one run. */
static const double WORK_BUDGET = 3e7;

/* ---- reading the program (reader, u8, bit: fuzz_common.h) --------------------------- */

/* A value for a leaf or a constant: the upper half of the byte range gives
 * small numbers in [-4, 4), the lower half special ones. */
static double value(reader *r)
{
	static const double special[] = { 0.0, -0.0, 1, -1, 0.5, 2, -2, 1e-3, 1e300, -1e300,
					  INFINITY, -INFINITY, NAN, 88.7, -745.2, 3.4e38,
					  1e-45, 1e-8 };
	unsigned b = u8(r);
	if (b < 128)
		return special[b % (sizeof special / sizeof special[0])];
	return ((double)b - 192.0) / 16.0;
}

/* A size: mostly small, sometimes zero, negative or huge. */
static int64_t dim(reader *r)
{
	static const int64_t small[] = { 1, 2, 3, 4, 5, 6, 8, 11 };
	static const int64_t odd[] = { 0, -1, -3, 65536, (int64_t)1 << 31, (int64_t)1 << 40,
				       INT64_MAX, INT64_MIN };
	unsigned b = u8(r);
	return b < 232 ? small[b % 8] : odd[(b - 232) % 8];
}

/* An int argument of conv2d or a pool: mostly 0 to 3, sometimes far out. */
static int iarg(reader *r)
{
	static const int odd[] = { -1, -2, 5, 7, 1 << 20, 1 << 30, INT_MAX, INT_MIN };
	unsigned b = u8(r);
	return b < 224 ? (int)(b % 4) : odd[(b - 224) % 8];
}

/* An axis, mostly in range, from -5 to 5. */
static int axis_of(reader *r) { return (int)(u8(r) % 11) - 5; }

/* ---- the machine ---------------------------------------------------------------- */

typedef struct slot {
	tg_tensor *t;
	bool kept; /* a ctx tensor: lives past tg_reset */
} slot;

typedef struct vm {
	reader in;
	tg_ctx *ctx;
	slot s[NSLOT];
	double work;
	bool stop;
	/* the function and convolution options a derivative call's f uses */
	bool any; /* the call was given a tensor (else it has no context to fail in) */
	bool grad_was; /* recording, before begin_two_ops turned it off */
	int fkind, fnin;
	tg_conv_opts fopts;
} vm;

static tg_tensor *get(vm *v, reader *r)
{
	unsigned b = u8(r);
	return b % 16 < NSLOT ? v->s[b % 16].t : NULL; /* 8..15: NULL */
}

static void put(vm *v, unsigned dst, tg_tensor *t, bool kept)
{
	if (!t)
		return;
	v->s[dst % NSLOT] = (slot){ t, kept };
}

static void charge(vm *v, double work)
{
	v->work += work;
	if (v->work > WORK_BUDGET)
		v->stop = true;
}

static uint64_t numel_of(int nd, const int64_t *shape)
{
	uint64_t n = 1;
	for (int i = 0; i < nd; i++)
		n *= (uint64_t)shape[i];
	return n;
}

enum { UNKNOWN = -1, INVALID = 0, VALID = 1 };

/* The error model after who returned r. valid: what the rules here say of
 * the arguments; v->any: whether any tensor argument was given. */
static void check(vm *v, const char *who, const tg_tensor *r, int valid)
{
	tg_status st = tg_status_of(v->ctx);
	const char *msg = tg_error(v->ctx);
	if (!v->any) {
		require(!r && st == TG_OK, "%s with only NULL tensors: result %p, %s \"%s\"", who,
			(const void *)r, tg_status_name(st), msg);
		return;
	}
	if (r) {
		require(st == TG_OK, "%s returned a tensor with %s \"%s\" set", who,
			tg_status_name(st), msg);
		require(tg_ctx_of(r) == v->ctx && r->ndim >= 0 && r->ndim <= TG_MAX_DIMS,
			"%s returned a dead or foreign tensor", who);
		require(tg_numel(r) == numel_of(r->ndim, r->shape),
			"%s: %zu elements for its shape", who, tg_numel(r));
		require(valid != INVALID, "%s computed on arguments its rules refuse", who);
		charge(v, (double)tg_numel(r));
		return;
	}
	require(st != TG_OK && msg[0], "%s returned NULL with no error (%s \"%s\")", who,
		tg_status_name(st), msg);
	if (st == TG_ENOMEM || st == TG_EANOMALY)
		return;
	require(valid != VALID, "%s failed with %s \"%s\" on valid arguments", who,
		tg_status_name(st), msg);
	require(mentions(msg, who), "%s: the message \"%s\" does not name the function", who,
		msg);
}

/* r, when there is one, has shape (nd, shape). */
static void check_shape(const char *who, const tg_tensor *r, int nd, const int64_t *shape)
{
	if (!r)
		return;
	char got[TG_SHAPE_STR], want[TG_SHAPE_STR];
	bool same = r->ndim == nd;
	for (int i = 0; same && i < nd; i++)
		same = r->shape[i] == shape[i];
	require(same, "%s returned shape %s, expected %s", who,
		tg_shape_fmt(r->ndim, r->shape, got), tg_shape_fmt(nd, shape, want));
}

static bool is_float(const tg_tensor *t)
{
	return t && (t->dtype == TG_F32 || t->dtype == TG_F64);
}

/* ---- leaves ------------------------------------------------------------------- */

static void op_leaf(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r), how = u8(r);
	tg_dtype dt = how % 10 < 6 ? TG_F32 : how % 10 < 9 ? TG_F64 : TG_I32;
	int nd = (int)(u8(r) % 8) - 1; /* -1 is bad */
	int64_t shape[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
	for (int i = 0; i < nd; i++)
		shape[i] = dim(r);
	double a = value(r);
	tg_tensor *t;
	switch (how / 10 % 4) {
	case 0: t = tg_randn(v->ctx, dt, nd, shape, 0, 1); break;
	case 1: t = tg_full(v->ctx, dt == TG_I32 ? TG_F32 : dt, nd, shape, a); break;
	case 2: t = tg_rand(v->ctx, dt, nd, shape, -2, 2); break;
	default: t = tg_zeros(v->ctx, dt, nd, shape); break;
	}
	tg_clear_error(v->ctx);
	if (t)
		charge(v, (double)tg_numel(t));
	bool param = (how & 0x80) && is_float(t);
	if (param) {
		tg_tensor *p = tg_param(t);
		tg_clear_error(v->ctx);
		put(v, dst, p, true);
	} else {
		put(v, dst, t, false);
	}
}

/* ---- convolution and pooling ------------------------------------------------------ */

static void conv_opts(reader *r, tg_conv_opts *o)
{
	/* in this order, one read per statement; 0 stands for 1 in the
	 * strides, dilations and groups, so that most are 1 */
	for (int i = 0; i < 2; i++)
		o->stride[i] = iarg(r);
	for (int i = 0; i < 2; i++)
		o->padding[i] = iarg(r);
	for (int i = 0; i < 2; i++)
		o->dilation[i] = iarg(r);
	o->groups = iarg(r);
	for (int i = 0; i < 2; i++) {
		o->stride[i] += !o->stride[i];
		o->dilation[i] += !o->dilation[i];
	}
	o->groups += !o->groups;
}

/* The output side for size n, kernel k, or -1 where there is none. */
static int64_t side(int64_t n, int64_t k, int p, int s, int d)
{
	__int128 span = (__int128)d * (k - 1) + 1;
	__int128 padded = n + 2 * (__int128)p;
	if (padded < span)
		return -1;
	return (int64_t)((padded - span) / s + 1);
}

static bool opts_ok(const tg_conv_opts *o)
{
	for (int i = 0; i < 2; i++)
		if (o->stride[i] < 1 || o->dilation[i] < 1 || o->padding[i] < 0)
			return false;
	return o->groups >= 1;
}

/* Whether x, w (and b) are tensors conv2d takes, by the rules in the file
 * comment; out gets the output shape. */
static bool conv_valid(const tg_tensor *x, const tg_tensor *w, const tg_tensor *b,
		       const tg_conv_opts *o, int64_t *out)
{
	if (!is_float(x) || !is_float(w) || x->dtype != w->dtype || x->ndim != 4 || w->ndim != 4 ||
	    !opts_ok(o))
		return false;
	int64_t N = x->shape[0], C = x->shape[1], O = w->shape[0];
	if (C % o->groups || O % o->groups || w->shape[1] != C / o->groups)
		return false;
	if (b && (b->dtype != x->dtype || b->ndim != 1 || b->shape[0] != O))
		return false;
	int64_t oh = side(x->shape[2], w->shape[2], o->padding[0], o->stride[0], o->dilation[0]);
	int64_t ow = side(x->shape[3], w->shape[3], o->padding[1], o->stride[1], o->dilation[1]);
	if (oh < 1 || ow < 1)
		return false;
	out[0] = N, out[1] = O, out[2] = oh, out[3] = ow;
	return true;
}

static bool small_opts(const tg_conv_opts *o)
{
	for (int i = 0; i < 2; i++)
		if (o->stride[i] > 64 || o->dilation[i] > 64 || o->padding[i] > 64)
			return false;
	return o->groups <= 64;
}

/* ---- fused ops against the two they stand for ------------------------------------------ */
/* A fused op's result t against the two ops it stands for, which must give
 * the same bits (NaN for NaN): begin_two_ops charges for them and turns
 * recording off (false: out of budget); the caller computes them, and
 * end_two_ops compares and turns recording back on. */
static bool begin_two_ops(vm *v, const tg_tensor *t)
{
	charge(v, 2 * (double)tg_numel(t));
	if (v->stop)
		return false;
	v->grad_was = tg_grad_enabled(v->ctx);
	tg_set_grad_enabled(v->ctx, false);
	return true;
}

static void end_two_ops(vm *v, const char *who, const tg_tensor *t, const tg_tensor *two)
{
	tg_ctx *ctx = v->ctx;
	tg_set_grad_enabled(ctx, v->grad_was);
	if (!two) {
		require(tg_status_of(ctx) == TG_ENOMEM, "the two ops after %s: %s", who,
			tg_error(ctx));
		tg_clear_error(ctx);
		return;
	}
	check_shape(who, two, t->ndim, t->shape);
	size_t es = tg_dtype_size(t->dtype);
	for (size_t i = 0; i < t->numel; i++) {
		const char *p = (const char *)t->data + i * es, *q = (const char *)two->data + i * es;
		double a = tg_get(t, i), b = tg_get(two, i);
		require(!memcmp(p, q, es) || (isnan(a) && isnan(b)),
			"%s: element %zu is %.17g, the two ops give %.17g", who, i, a, b);
	}
}

/* ---- the convolution kernels against im2col ----------------------------------------- */
/* A convolution that ran in f32 on finite inputs in a context set to
 * oneDNN's kernels (direct or Winograd) is done again on im2col, and each
 * element must agree to 1e-5 of the same convolution of the inputs'
 * magnitudes (the sum of |products| each output adds up), as
 * tests/ops/test_conv_dnnl.c holds them. */

static bool all_finite(const tg_tensor *t)
{
	if (!t)
		return true;
	for (size_t i = 0; i < t->numel; i++) {
		double x = t->dtype == TG_F64 ? ((const double *)t->data)[i]
					      : t->dtype == TG_F32 ? ((const float *)t->data)[i] : 0;
		if (!isfinite(x))
			return false;
	}
	return true;
}

/* kind 0 conv2d(a, b, bias), 1 its input gradient (a dout, b w), 2 its
 * weight gradient (a x, b dout); magnitude: of |a|, |b| and |bias|. */
static tg_tensor *conv_call(int kind, tg_tensor *a, tg_tensor *b, tg_tensor *bias, int64_t H,
			    int64_t W, const tg_conv_opts *op, bool magnitude)
{
	if (magnitude) {
		a = tg_abs(a), b = tg_abs(b);
		bias = bias ? tg_abs(bias) : NULL;
	}
	return kind == 0 ? tg_conv2d(a, b, bias, op)
	       : kind == 1 ? tg_conv2d_input_grad(a, b, H, W, op)
			   : tg_conv2d_weight_grad(a, b, H, W, op);
}

static void check_kernels(vm *v, double cost, int kind, const char *who, const tg_tensor *t,
			  tg_tensor *a, tg_tensor *b, tg_tensor *bias, int64_t H, int64_t W,
			  const tg_conv_opts *op)
{
	tg_ctx *ctx = v->ctx;
	tg_conv_kernels k = tg_get_conv_kernels(ctx);
	if (!t || t->dtype != TG_F32 || k == TG_CONV_IM2COL || !all_finite(a) || !all_finite(b) ||
	    !all_finite(kind == 0 ? bias : NULL))
		return;
	charge(v, 2 * cost); /* the two convolutions on im2col */
	if (v->stop)
		return;
	bool grad = tg_grad_enabled(ctx);
	tg_set_grad_enabled(ctx, false);
	tg_set_conv_kernels(ctx, TG_CONV_IM2COL);
	tg_tensor *ref = conv_call(kind, a, b, bias, H, W, op, false);
	tg_tensor *mag = conv_call(kind, a, b, bias, H, W, op, true);
	tg_set_conv_kernels(ctx, k);
	tg_set_grad_enabled(ctx, grad);
	if (!ref || !mag) {
		require(tg_status_of(ctx) == TG_ENOMEM, "%s on im2col after oneDNN: %s", who,
			tg_error(ctx));
		tg_clear_error(ctx);
		return;
	}
	check_shape(who, ref, t->ndim, t->shape);
	const float *y = t->data, *r = ref->data, *m = mag->data;
	for (size_t i = 0; i < t->numel; i++) {
		if (!isfinite(m[i]))
			continue; /* the magnitudes overflow: no bound to hold it to */
		require(fabs((double)y[i] - r[i]) <= 1e-5 * m[i] + 1e-30,
			"%s (kernels %d): element %zu is %.9g, im2col %.9g, magnitude %.9g", who,
			(int)k, i, (double)y[i], (double)r[i], (double)m[i]);
	}
}

static void op_conv(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r), kind = u8(r) % 3;
	tg_tensor *a = get(v, r), *b = get(v, r), *bias = get(v, r);
	tg_conv_opts o;
	conv_opts(r, &o);
	const tg_conv_opts *op = bit(r) ? NULL : &o;
	tg_conv_opts eff = op ? o : (tg_conv_opts)TG_CONV_DEFAULTS;
	int64_t H = dim(r), W = dim(r);
	tg_tensor *t = NULL;
	v->any = a || b || (kind == 0 && bias);
	if (kind == 0) {
		int64_t out[4];
		bool ok = conv_valid(a, b, bias, &eff, out);
		int valid = ok ? VALID : small_opts(&eff) ? INVALID : UNKNOWN;
		double cost = ok ? (double)numel_of(4, out) * (double)numel_of(3, b->shape + 1) : 0;
		charge(v, cost);
		if (v->stop)
			return;
		/* an odd H (read for the gradients' kinds only): the relu made
		 * in the output, the bits of the two ops */
		bool relu = H & 1;
		const char *who = relu ? "tg_conv2d_relu" : "tg_conv2d";
		t = relu ? tg_conv2d_relu(a, b, bias, op) : tg_conv2d(a, b, bias, op);
		check(v, who, t, valid);
		if (t)
			check_shape(who, t, 4, out);
		if (!relu)
			check_kernels(v, cost, 0, who, t, a, b, bias, H, W, op);
		else if (t && begin_two_ops(v, t))
			end_two_ops(v, who, t, tg_relu(tg_conv2d(a, b, bias, op)));
	} else if (kind == 1) {
		/* a is dout (N,O,OH,OW), b is w */
		double cost = a && b && a->ndim == 4 && b->ndim == 4
				      ? (double)tg_numel(a) * (double)numel_of(3, b->shape + 1)
				      : 0;
		charge(v, cost);
		if (v->stop)
			return;
		t = tg_conv2d_input_grad(a, b, H, W, op);
		check(v, "tg_conv2d_input_grad", t, UNKNOWN);
		check_kernels(v, cost, 1, "tg_conv2d_input_grad", t, a, b, NULL, H, W, op);
		if (t) {
			int64_t want[4] = { a->shape[0], b->shape[1] * eff.groups, H, W };
			check_shape("tg_conv2d_input_grad", t, 4, want);
			/* then conv2d of an (N,C,H,W) x gives dout's shape */
			int64_t out[4];
			require(conv_valid(t, b, NULL, &eff, out) && out[1] == a->shape[1] &&
					out[2] == a->shape[2] && out[3] == a->shape[3],
				"tg_conv2d_input_grad computed for a size conv2d does not map to dout");
		}
	} else {
		/* a is x, b is dout */
		double cost = a && b && a->ndim == 4 && b->ndim == 4 && H > 0 && W > 0
				      ? (double)tg_numel(b) * (double)a->shape[1] * (double)H * (double)W
				      : 0;
		charge(v, cost);
		if (v->stop)
			return;
		t = tg_conv2d_weight_grad(a, b, H, W, op);
		check(v, "tg_conv2d_weight_grad", t, UNKNOWN);
		check_kernels(v, cost, 2, "tg_conv2d_weight_grad", t, a, b, NULL, H, W, op);
		if (t) {
			int64_t want[4] = { b->shape[1], a->shape[1] / eff.groups, H, W };
			check_shape("tg_conv2d_weight_grad", t, 4, want);
			/* conv2d of x by a kernel of this shape gives dout's shape */
			int64_t out[4];
			require(conv_valid(a, t, NULL, &eff, out) && out[0] == b->shape[0] &&
					out[2] == b->shape[2] && out[3] == b->shape[3],
				"tg_conv2d_weight_grad computed for a kernel conv2d does not map to dout");
		}
	}
	put(v, dst, t, false);
}

static void op_pool(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r);
	bool max = bit(r);
	tg_tensor *x = get(v, r);
	int k = iarg(r), s = iarg(r), p = iarg(r);
	k += k >= 0 && k < 64; /* mostly 1 to 4 */
	s += s >= 0 && s < 64;
	unsigned flags = u8(r);
	if (flags & 1)
		s = k; /* the common case */
	bool relu = max && (flags & 2); /* tg_relu_max_pool2d */
	const char *who = relu ? "tg_relu_max_pool2d" : max ? "tg_max_pool2d" : "tg_avg_pool2d";
	int64_t out[4] = { 0 };
	int valid = UNKNOWN;
	if (k >= -2 && s >= -2 && p >= -2 && k <= 64 && s <= 64 && p <= 64) {
		valid = INVALID;
		if (is_float(x) && x->ndim == 4 && k >= 1 && s >= 1 && p >= 0 && p <= k / 2) {
			int64_t oh = side(x->shape[2], k, p, s, 1), ow = side(x->shape[3], k, p, s, 1);
			if (oh >= 1 && ow >= 1) {
				out[0] = x->shape[0], out[1] = x->shape[1], out[2] = oh, out[3] = ow;
				valid = VALID;
				charge(v, (double)numel_of(4, out) * k * k);
			}
		}
	}
	if (v->stop)
		return;
	v->any = x;
	tg_tensor *t = relu  ? tg_relu_max_pool2d(x, k, s, p)
		       : max ? tg_max_pool2d(x, k, s, p)
			     : tg_avg_pool2d(x, k, s, p);
	check(v, who, t, valid);
	if (t && relu && begin_two_ops(v, t))
		end_two_ops(v, who, t, tg_max_pool2d(tg_relu(x), k, s, p));
	if (t && valid == VALID)
		check_shape(who, t, 4, out);
	put(v, dst, t, false);
}

/* ---- norms and products ---------------------------------------------------------- */

static void op_norm(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r), kind = u8(r) % 4;
	tg_tensor *a = get(v, r), *b = get(v, r), *c = get(v, r), *d = get(v, r);
	double eps = bit(r) ? 1e-5 : value(r);
	tg_tensor *t = NULL, *mean = NULL, *var = NULL;
	const char *who = "";
	bool relu = false;
	v->any = a || b || (kind != 3 ? c != NULL : d != NULL);
	switch (kind) {
	case 0:
		relu = bit(r);
		who = relu ? "tg_batch_norm_relu" : "tg_batch_norm";
		t = (relu ? tg_batch_norm_relu : tg_batch_norm)(a, b, c, eps, bit(r) ? &mean : NULL,
								bit(r) ? &var : NULL);
		break;
	case 1:
		who = "tg_batch_norm_backward";
		t = tg_batch_norm_backward(a, b, c, eps);
		break;
	case 2:
		who = "tg_layer_norm";
		t = tg_layer_norm(a, b, c, eps);
		break;
	default:
		who = "tg_layer_norm_backward";
		t = tg_layer_norm_backward(a, b, d, eps);
		break;
	}
	check(v, who, t, UNKNOWN);
	if (t && kind != 1 && kind != 3)
		check_shape(who, t, a->ndim, a->shape);
	if (t && (kind == 1 || kind == 3))
		check_shape(who, t, b->ndim, b->shape);
	if (mean)
		check_shape(who, mean, 1, &a->shape[1]);
	if (t && relu && begin_two_ops(v, t))
		end_two_ops(v, who, t, tg_relu(tg_batch_norm(a, b, c, eps, NULL, NULL)));
	put(v, dst, t, false);
}

static void op_product(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r), kind = u8(r) % 4;
	tg_tensor *a = get(v, r), *b = get(v, r), *c = get(v, r);
	bool ta = bit(r), tb = bit(r);
	if (a && b)
		charge(v, (double)tg_numel(a) * (b->ndim ? (double)b->shape[b->ndim - 1] : 1));
	if (v->stop)
		return;
	tg_tensor *t;
	const char *who;
	v->any = a || b || (kind == 2 && c);
	switch (kind) {
	case 0: who = "tg_bmm"; t = tg_bmm(a, b); break;
	case 1: who = "tg_bmm_t|tg_bmm"; t = tg_bmm_t(a, ta, b, tb); break;
	case 2: /* ta: the relu made in the product's output */
		who = ta ? "tg_addmm_relu" : "tg_addmm";
		t = ta ? tg_addmm_relu(a, b, c) : tg_addmm(a, b, c);
		break;
	default: who = "tg_matmul_t|tg_matmul"; t = tg_matmul_t(a, ta, b, tb); break;
	}
	check(v, who, t, UNKNOWN);
	if (t && kind == 2 && ta && begin_two_ops(v, t))
		end_two_ops(v, who, t, tg_relu(tg_addmm(a, b, c)));
	put(v, dst, t, false);
}

/* ---- moving elements ------------------------------------------------------------------ */

static int norm_axis(int axis, int nd) { return axis < 0 ? axis + nd : axis; }

static void op_shape(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r), kind = u8(r) % 6;
	tg_tensor *x = get(v, r);
	int axis = axis_of(r);
	int64_t p1 = dim(r), p2 = dim(r);
	tg_tensor *t = NULL;
	int64_t want[TG_MAX_DIMS + 1];
	int nd = x ? x->ndim : 0;
	int a = norm_axis(axis, nd);
	const char *who = "";
	v->any = x;
	switch (kind) {
	case 0: {
		who = "tg_permute";
		int perm[8];
		for (int i = 0; i < 8; i++)
			perm[i] = (int)(u8(r) % 11) - 5;
		if (bit(r) && x) /* a true permutation, rotated */
			for (int i = 0; i < x->ndim; i++)
				perm[i] = (i + axis + 10) % (x->ndim ? x->ndim : 1);
		t = tg_permute(x, bit(r) ? NULL : perm);
		if (t)
			for (int i = 0; i < nd; i++)
				want[i] = x->shape[norm_axis(perm[i], nd)];
		break;
	}
	case 1:
		who = "tg_slice";
		p1 = p1 % 5 - 1; /* start from -1 */
		t = tg_slice(x, axis, p1, p2);
		if (t) {
			memcpy(want, x->shape, sizeof(int64_t) * (size_t)nd);
			want[a] = p2;
		}
		break;
	case 2:
		who = "tg_pad_axis";
		p1 = p1 % 4, p2 = p2 % 4;
		t = tg_pad_axis(x, axis, p1, p2);
		if (t) {
			memcpy(want, x->shape, sizeof(int64_t) * (size_t)nd);
			want[a] = x->shape[a] + p1 + p2;
		}
		break;
	case 3:
		who = "tg_squeeze";
		t = tg_squeeze(x, axis);
		if (t)
			for (int i = 0, j = 0; i < nd; i++)
				if (i != a)
					want[j++] = x->shape[i];
		nd--;
		break;
	case 4:
		who = "tg_unsqueeze";
		a = axis < 0 ? axis + nd + 1 : axis;
		t = tg_unsqueeze(x, axis);
		if (t)
			for (int i = 0, j = 0; i <= nd; i++)
				want[i] = i == a ? 1 : x->shape[j++];
		nd++;
		break;
	default: {
		who = "tg_expand";
		int64_t shape[TG_MAX_DIMS + 1];
		int n = (int)(u8(r) % 6);
		for (int i = 0; i < n; i++)
			shape[i] = bit(r) && x && i - (n - nd) >= 0 && i - (n - nd) < nd
					   ? x->shape[i - (n - nd)]
					   : dim(r);
		t = tg_expand(x, n, shape);
		nd = n;
		memcpy(want, shape, sizeof(int64_t) * (size_t)(n > 0 ? n : 0));
		break;
	}
	}
	check(v, who, t, UNKNOWN);
	if (t)
		check_shape(who, t, nd, want);
	put(v, dst, t, false);
}

static void op_join(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r), kind = u8(r) % 3;
	int n = (int)(u8(r) % 6);
	int axis = axis_of(r);
	tg_tensor *xs[5] = { 0 };
	for (int i = 0; i < n && i < 5; i++)
		xs[i] = get(v, r);
	if (kind == 2) {
		int64_t sizes[6];
		for (int i = 0; i < 6; i++)
			sizes[i] = dim(r) % 4;
		bool given = bit(r);
		tg_tensor *out[6] = { 0 };
		int rc = tg_split(xs[0], axis, n, given ? sizes : NULL, out);
		tg_status st = tg_status_of(v->ctx);
		/* without x it has no context to fail in */
		require(xs[0] ? (rc == 0) == (st == TG_OK) && (rc == 0 || rc == -1)
			      : rc == -1 && st == TG_OK,
			"tg_split: rc %d with %s", rc, tg_status_name(st));
		int64_t total = 0;
		for (int i = 0; i < n; i++) {
			require((out[i] != NULL) == (rc == 0), "tg_split: part %d is %p with rc %d", i,
				(void *)out[i], rc);
			if (out[i]) {
				int a = norm_axis(axis, xs[0]->ndim);
				total += out[i]->shape[a];
				require(out[i]->ndim == xs[0]->ndim, "tg_split: part of another ndim");
			}
		}
		if (rc == 0 && n > 0)
			require(total == xs[0]->shape[norm_axis(axis, xs[0]->ndim)],
				"tg_split: parts of %lld along the axis", (long long)total);
		v->any = true;
		if (rc < 0 && xs[0])
			check(v, "tg_split", NULL, UNKNOWN);
		if (rc == 0 && n > 0)
			put(v, dst, out[u8(r) % n], false);
		return;
	}
	v->any = true; /* they take the context */
	tg_tensor *t = kind == 0 ? tg_concat(v->ctx, n, xs, axis) : tg_stack(v->ctx, n, xs, axis);
	const char *who = kind == 0 ? "tg_concat" : "tg_stack";
	check(v, who, t, UNKNOWN);
	if (t) {
		int nd = xs[0]->ndim;
		int64_t want[TG_MAX_DIMS];
		if (kind == 0) {
			int a = norm_axis(axis, nd);
			memcpy(want, xs[0]->shape, sizeof(int64_t) * (size_t)nd);
			want[a] = 0;
			for (int i = 0; i < n; i++)
				want[a] += xs[i]->shape[a];
		} else {
			int a = axis < 0 ? axis + nd + 1 : axis;
			for (int i = 0, j = 0; i <= nd; i++)
				want[i] = i == a ? n : xs[0]->shape[j++];
			nd++;
		}
		check_shape(who, t, nd, want);
	}
	put(v, dst, t, false);
}

/* ---- elementwise ops, losses and reductions ------------------------------------------------- */

static void op_elementwise(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r), kind = u8(r) % 32;
	tg_tensor *a = get(v, r), *b = get(v, r), *c = get(v, r);
	double k1 = value(r), k2 = value(r);
	int axis = axis_of(r);
	tg_tensor *t;
	const char *who;
	bool unary = kind <= 11 || kind >= 30;
	v->any = a || (!unary && b) || (kind == 16 && c);
	switch (kind) {
	case 0: who = "tg_gelu"; t = tg_gelu(a); break;
	case 1: who = "tg_silu"; t = tg_silu(a); break;
	case 2: who = "tg_erf"; t = tg_erf(a); break;
	case 3: who = "tg_sin"; t = tg_sin(a); break;
	case 4: who = "tg_cos"; t = tg_cos(a); break;
	case 5: who = "tg_log1p"; t = tg_log1p(a); break;
	case 6: who = "tg_expm1"; t = tg_expm1(a); break;
	case 7: who = "tg_softplus"; t = tg_softplus(a); break;
	case 8: who = "tg_elu"; t = tg_elu(a, k1); break;
	case 9: who = "tg_leaky_relu"; t = tg_leaky_relu(a, k1); break;
	case 10: who = "tg_clamp"; t = tg_clamp(a, k1, k2); break;
	case 11: who = "tg_pow"; t = tg_pow(a, k1); break;
	case 12: who = "tg_div"; t = tg_div(a, b); break;
	case 13: who = "tg_sub"; t = tg_sub(a, b); break;
	case 14: who = "tg_maximum"; t = tg_maximum(a, b); break;
	case 15: who = "tg_minimum"; t = tg_minimum(a, b); break;
	case 16: who = "tg_where"; t = tg_where(a, b, c); break;
	case 17: who = "tg_huber"; t = tg_huber(a, b, k1); break;
	case 18: who = "tg_l1"; t = tg_l1(a, b); break;
	case 19: who = "tg_mse"; t = tg_mse(a, b); break;
	case 20: who = "tg_bce_with_logits"; t = tg_bce_with_logits(a, b); break;
	case 21: who = "tg_gelu_backward"; t = tg_gelu_backward(a, b); break;
	case 22: who = "tg_silu_backward"; t = tg_silu_backward(a, b); break;
	case 23: who = "tg_elu_backward"; t = tg_elu_backward(a, b, k1); break;
	case 24: who = "tg_leaky_relu_backward"; t = tg_leaky_relu_backward(a, b, k1); break;
	case 25: who = "tg_softplus_backward"; t = tg_softplus_backward(a, b); break;
	case 26: who = "tg_tanh_backward"; t = tg_tanh_backward(a, b); break;
	case 27: who = "tg_relu_backward"; t = tg_relu_backward(a, b); break;
	case 28: who = "tg_pow_backward"; t = tg_pow_backward(a, b, k1); break;
	case 29: who = "tg_sigmoid_backward"; t = tg_sigmoid_backward(a, b); break;
	case 30: who = "tg_sum_axis"; t = tg_sum_axis(a, axis, k2 > 0); break;
	default: who = "tg_mean_axis"; t = tg_mean_axis(a, axis, k2 > 0); break;
	}
	check(v, who, t, UNKNOWN);
	put(v, dst, t, false);
}

/* ---- backward and the derivative functions --------------------------------------------- */

/* A param's gradient, when there is one, has the param's shape. */
static void check_grads(vm *v)
{
	for (int i = 0; i < NSLOT; i++) {
		tg_tensor *p = v->s[i].t;
		if (!p || !v->s[i].kept || !p->requires_grad)
			continue;
		tg_tensor *g = tg_grad(p);
		tg_clear_error(v->ctx);
		if (g)
			check_shape("tg_grad", g, p->ndim, p->shape);
	}
}

static void op_backward(vm *v)
{
	reader *r = &v->in;
	tg_tensor *y = get(v, r);
	unsigned how = u8(r);
	if (y && tg_numel(y) != 1 && (how & 1)) {
		y = tg_sum(y);
		tg_clear_error(v->ctx);
	}
	int rc = tg_backward_ex(y, NULL, how & 2 ? TG_CREATE_GRAPH : 0);
	tg_status st = tg_status_of(v->ctx);
	require(y ? (rc == 0) == (st == TG_OK) && (rc == 0 || rc == -1) : rc == -1 && st == TG_OK,
		"tg_backward_ex: rc %d with %s for y %p", rc, tg_status_name(st), (void *)y);
	if (y)
		charge(v, 4.0 * (double)tg_numel(y));
	check_grads(v);
	if (how & 4)
		tg_zero_grads(v->ctx);
}

/* The functions of the derivative calls: some give one element, some a
 * tensor; they use every input given. */
static tg_tensor *fn(tg_tensor *const *in, void *user)
{
	vm *v = user;
	tg_tensor *x = in[0], *y = v->fnin > 1 ? in[1] : in[0];
	switch (v->fkind) {
	case 0: return tg_sum(tg_tanh(tg_mul(x, y)));
	case 1: return tg_conv2d(x, y, NULL, &v->fopts);
	case 2: return tg_sum(tg_sin(tg_conv2d(x, y, NULL, &v->fopts)));
	case 3: return tg_layer_norm(x, y, y, 1e-5);
	case 4: return tg_max_pool2d(tg_mul(x, y), 2, 2, 0);
	case 5: return tg_sum(tg_mul(tg_avg_pool2d(x, 3, 1, 1), tg_avg_pool2d(y, 3, 1, 1)));
	case 6: return tg_bmm(x, y);
	default: return tg_sum(tg_gelu(tg_bmm(x, y)));
	}
}

static void op_derivative(vm *v)
{
	reader *r = &v->in;
	unsigned kind = u8(r) % 5;
	v->fkind = (int)(u8(r) % 8);
	conv_opts(r, &v->fopts);
	int nin = (int)(u8(r) % 3);
	tg_tensor *in[2] = { get(v, r), get(v, r) }, *w[2] = { get(v, r), get(v, r) };
	if (nin < 2)
		in[1] = NULL;
	v->fnin = nin;
	/* the work: f's, a few times over; a jacobian or hessian a pass per row */
	double work = 0;
	for (int i = 0; i < 2; i++)
		if (in[i])
			work += (double)tg_numel(in[i]);
	work *= in[0] && in[0]->ndim == 4 ? 64 : 4;
	if (kind >= 3)
		work *= work / 64 + 1;
	charge(v, work);
	if (v->stop)
		return;
	tg_tensor *out = NULL, *res[2] = { 0 }, *jac[4] = { 0 };
	int rc;
	const char *who;
	switch (kind) {
	case 0:
		who = "tg_vjp";
		rc = tg_vjp(v->ctx, fn, v, nin, in, w[0], &out, res);
		break;
	case 1:
		who = "tg_jvp";
		rc = tg_jvp(v->ctx, fn, v, nin, in, w, &out, res);
		break;
	case 2:
		who = "tg_hvp";
		rc = tg_hvp(v->ctx, fn, v, nin, in, w, &out, res);
		break;
	case 3:
		who = "tg_jacobian";
		rc = tg_jacobian(v->ctx, fn, v, nin, in, jac);
		break;
	default:
		who = "tg_hessian";
		rc = tg_hessian(v->ctx, fn, v, nin, in, jac);
		break;
	}
	tg_status st = tg_status_of(v->ctx);
	require((rc == 0) == (st == TG_OK) && (rc == 0 || rc == -1), "%s: rc %d with %s", who, rc,
		tg_status_name(st));
	int nres = kind >= 3 ? (kind == 4 ? nin * nin : nin) : kind == 1 ? 1 : nin;
	for (int i = 0; i < nres; i++) {
		tg_tensor *t = kind >= 3 ? jac[i] : res[i];
		require((t != NULL) == (rc == 0), "%s: result %d is %p with rc %d", who, i,
			(void *)t, rc);
		if (!t)
			continue;
		int64_t want[2 * TG_MAX_DIMS];
		int nd = 0;
		if (kind == 0 || kind == 2) {
			nd = in[i]->ndim;
			memcpy(want, in[i]->shape, sizeof(int64_t) * (size_t)nd);
		} else if (kind == 1) {
			nd = out->ndim;
			memcpy(want, out->shape, sizeof(int64_t) * (size_t)nd);
		} else {
			/* jac: f.shape ++ in[i].shape; hess: in[i].shape ++ in[j].shape */
			const tg_tensor *p = kind == 3 ? NULL : in[i / nin];
			const tg_tensor *q = kind == 3 ? in[i] : in[i % nin];
			if (p) {
				memcpy(want, p->shape, sizeof(int64_t) * (size_t)p->ndim);
				nd = p->ndim;
			} else {
				nd = t->ndim - q->ndim; /* f's shape is not returned */
				require(nd >= 0, "%s: result of %d dims for an input of %d", who,
					t->ndim, q->ndim);
				memcpy(want, t->shape, sizeof(int64_t) * (size_t)nd);
			}
			memcpy(want + nd, q->shape, sizeof(int64_t) * (size_t)q->ndim);
			nd += q->ndim;
		}
		check_shape(who, t, nd, want);
		charge(v, (double)tg_numel(t));
	}
	if (rc < 0) {
		require(!out, "%s: out set with rc -1", who);
		require(st == TG_ENOMEM || st == TG_EANOMALY || st == TG_ESTALE ||
				mentions(tg_error(v->ctx), who) ||
				/* f's own op failed: its message names that op */
				strstr(tg_error(v->ctx), "tg_"),
			"%s: the message \"%s\" names no function", who, tg_error(v->ctx));
	}
}

/* ---- the context ------------------------------------------------------------------------ */

static void op_context(vm *v)
{
	reader *r = &v->in;
	switch (u8(r) % 4) {
	case 0:
		tg_reset(v->ctx);
		for (int i = 0; i < NSLOT; i++)
			if (!v->s[i].kept)
				v->s[i].t = NULL;
		/* a TG_CREATE_GRAPH gradient of a kept tensor moves into a buffer
		 * made here: the failing allocator may refuse it (marked lost) */
		if (tg_status_of(v->ctx) == TG_ENOMEM)
			return;
		break;
	case 1: tg_set_threads(v->ctx, 1 + (int)(u8(r) % 3)); break;
	case 2: tg_set_conv_kernels(v->ctx, (tg_conv_kernels)(u8(r) % 3)); break;
	default: tg_set_grad_enabled(v->ctx, bit(r)); break;
	}
	require(tg_ok(v->ctx), "the context's settings set an error: %s", tg_error(v->ctx));
}

/* ---- the run ---------------------------------------------------------------------------- */

typedef void (*insn)(vm *);

static const struct {
	insn fn;
	const char *name;
} program_ops[] = {
	{ op_leaf, "leaf" },	   { op_leaf, "leaf" },	      { op_conv, "conv" },
	{ op_conv, "conv" },	   { op_pool, "pool" },	      { op_norm, "norm" },
	{ op_product, "product" }, { op_shape, "shape" },     { op_join, "join" },
	{ op_elementwise, "elementwise" }, { op_backward, "backward" },
	{ op_derivative, "derivative" },   { op_context, "context" },
};

static bool trace;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	trace = getenv("TG_FUZZ_TRACE") != NULL;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vm v = { .in = { data, data + size } };
	unsigned seed = u8(&v.in), mode = u8(&v.in);
	fuzz_alloc al = { .fail_at = mode & 0x80 ? 1 + u8(&v.in) * 3u : 0, .sticky = mode & 0x40 };
	v.ctx = fuzz_ctx_new(seed, &al);
	if (!v.ctx)
		return 0;
	tg_set_arena_limit(v.ctx, ARENA_LIMIT);
	tg_set_anomaly(v.ctx, mode & 2);
	tg_set_threads(v.ctx, mode & 4 ? 2 : 1);
	const size_t nops = sizeof program_ops / sizeof program_ops[0];
	for (int i = 0; i < MAX_INSNS && !at_end(&v.in) && !v.stop; i++) {
		unsigned op = u8(&v.in) % nops;
		tg_clear_error(v.ctx);
		program_ops[op].fn(&v);
		tg_status st = tg_status_of(v.ctx);
		if (trace)
			fprintf(stderr, "%3d %-12s %s %s\n", i, program_ops[op].name,
				tg_status_name(st), tg_error(v.ctx));
		require(st == TG_OK ? !tg_error(v.ctx)[0] : tg_error(v.ctx)[0] != 0,
			"status %s with message \"%s\"", tg_status_name(st), tg_error(v.ctx));
	}
	tg_ctx_free(v.ctx);
	return 0;
}
