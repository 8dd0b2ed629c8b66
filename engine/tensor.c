/*
 * tensor.c - what a tensor is: constructors, accessors, the two lifetimes.
 *
 * A step tensor's header comes from the arena's slot ring and its data from
 * the step arena; both die at tg_reset. A ctx tensor (tg_param, tg_keep) is
 * one allocation from the context's allocator, freed by tg_ctx_free. Data is
 * contiguous and row-major; a step tensor may share another's (a reshape, a
 * slice of leading rows: tg_tensor_alias) until either is written through
 * tg_data_mut or tg_assign. Nothing here records on the tape.
 */
#include "internal.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <string.h>

const char *tg_dtype_name(tg_dtype dt)
{
	switch (dt) {
	case TG_F32: return "f32";
	case TG_F64: return "f64";
	case TG_I32: return "i32";
	case TG_I64: return "i64";
	}
	return "unknown"; /* read "dtype unknown" */
}

char *tg_shape_fmt(int ndim, const int64_t *shape, char *buf)
{
	size_t n = 0;
	buf[n++] = '(';
	for (int i = 0; i < ndim && n < TG_SHAPE_STR - 24; i++)
		n += (size_t)snprintf(buf + n, TG_SHAPE_STR - n, i ? ",%lld" : "%lld",
				      (long long)shape[i]);
	if (ndim == 1)
		buf[n++] = ',';
	buf[n++] = ')';
	buf[n] = '\0';
	return buf;
}

char *tg_shape_str(const tg_tensor *t, char *buf, size_t size)
{
	char tmp[TG_SHAPE_STR];
	if (!buf || !size)
		return buf;
	if (!t)
		snprintf(buf, size, "(null)");
	else if (!tg_tensor_alive(t)) /* its header's shape may be zeros by now: "()" */
		snprintf(buf, size, "(stale)");
	else
		snprintf(buf, size, "%s", tg_shape_fmt(t->ndim, t->shape, tmp));
	return buf;
}

bool tg_tensor_alive(const tg_tensor *t)
{
	return t && t->magic == TG_TENSOR_MAGIC && (t->persistent || t->gen == t->ctx->gen);
}

static bool valid_dtype(tg_dtype dt)
{
	return dt == TG_F32 || dt == TG_F64 || dt == TG_I32 || dt == TG_I64;
}

/* Records why a shape that tg_tensor_new refused is not valid. */
static void shape_failed(tg_ctx *ctx, const char *who, int ndim, const int64_t *shape)
{
	if (ndim < 0 || ndim > TG_MAX_DIMS) {
		tg_fail(ctx, TG_ESHAPE, "%s: %d dimensions; a tensor has 0 to %d", who, ndim,
			TG_MAX_DIMS);
		return;
	}
	if (ndim > 0 && !shape) {
		tg_fail(ctx, TG_ENULL, "%s: shape is NULL for %d dimensions", who, ndim);
		return;
	}
	char buf[TG_SHAPE_STR];
	/* a size of 0 or less first: it, not the product of the others, is
	 * what is wrong with (2^40,2^40,0) */
	for (int i = 0; i < ndim; i++)
		if (shape[i] <= 0) {
			tg_fail(ctx, TG_ESHAPE, "%s: shape %s: dimension %d is %lld; must be positive",
				who, tg_shape_fmt(ndim, shape, buf), i, (long long)shape[i]);
			return;
		}
	size_t n = 1;
	for (int i = 0; i < ndim; i++) {
		if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n) || n > TG_MAX_ELEMENTS) {
			tg_fail(ctx, TG_ESHAPE, "%s: shape %s has too many elements", who,
				tg_shape_fmt(ndim, shape, buf));
			return;
		}
	}
}

/* Sets every field of a step header: slots are reused uncleared. */
static inline tg_tensor *init(tg_tensor *t, tg_ctx *ctx, tg_dtype dt, int ndim,
			      const int64_t *shape, size_t n, void *data)
{
	t->magic = TG_TENSOR_MAGIC;
	t->gen = ctx->gen;
	t->ctx = ctx;
	t->dtype = dt;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
	t->numel = n;
	t->data = data;
	t->grad = NULL;
	t->grad_store = NULL;
	t->node = NULL;
	t->version = 0;
	t->uniform_at = 0;
	t->finite_at = 0;
	t->lazy_fill = false;
	t->requires_grad = false;
	t->persistent = false;
	t->consumed = false;
	t->use_gen = 0;
	t->decay = false;
	t->lent = false;
	t->touched = false;
	t->grad_changed = false;
	t->grad_lost = false;
	t->grad_unkept = false;
	t->store_blank = false;
	t->grad_zeroed = false;
	t->shares = false;
	t->written_later = false;
	t->grad_own = false;
	t->name = NULL;
	t->next_kept = NULL;
	t->last_use = NULL;
	return t;
}

/* make's slow path, with the header slot t already taken or NULL. */
static TG_SLOW tg_tensor *make_slow(tg_ctx *ctx, tg_dtype dt, int ndim,
				    const int64_t *shape, size_t n, tg_tensor *t)
{
	if (!t && !(t = tg_arena_header(ctx)))
		return NULL;
	size_t bytes = n * tg_dtype_size(dt);
	void *data = bytes <= sizeof t->small ? t->small : tg_arena_alloc(ctx, bytes);
	return data ? init(t, ctx, dt, ndim, shape, n, data) : NULL;
}

/* With TG_NODE_GRAD_INTO armed: the armed leaf gradient buffer's memory for
 * the first tensor of its dtype and shape (and then disarmed), the arena's
 * for any other. */
static TG_SLOW void *dest_or_arena(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
				   size_t bytes)
{
	tg_tensor *d = ctx->grad_dest;
	bool same = d->dtype == dt && d->ndim == ndim;
	for (int i = 0; same && i < ndim; i++)
		same = d->shape[i] == shape[i];
	if (!same)
		return tg_arena_alloc_fast(ctx, bytes);
	ctx->grad_dest = NULL;
	return d->data;
}

/* A step tensor of a valid shape with n elements; data of up to 16 bytes
 * lives in the header slot. */
static inline tg_tensor *make(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
			      size_t n)
{
	size_t bytes = n * tg_dtype_size(dt);
	tg_tensor *t = tg_arena_header_fast(ctx);
	if (!t)
		return make_slow(ctx, dt, ndim, shape, n, NULL);
	void *data;
	if (bytes <= sizeof t->small)
		data = t->small;
	else if (__builtin_expect(ctx->grad_dest != NULL, 0))
		data = dest_or_arena(ctx, dt, ndim, shape, bytes);
	else
		data = tg_arena_alloc_fast(ctx, bytes);
	if (!data)
		return make_slow(ctx, dt, ndim, shape, n, t);
	return init(t, ctx, dt, ndim, shape, n, data);
}

/* tg_tensor_new once a check has failed: records why. */
static TG_SLOW tg_tensor *new_failed(tg_ctx *ctx, const char *who, tg_dtype dt,
				     int ndim, const int64_t *shape)
{
	if (!valid_dtype(dt))
		return tg_fail(ctx, TG_EDTYPE, "%s: unknown dtype %d", who, (int)dt);
	shape_failed(ctx, who, ndim, shape);
	return NULL;
}

/* make found no memory (arena or header space), and said so: the message
 * gets the caller and the tensor in front, "tg_add: f32 (4096,4096): step
 * arena limit of ... reached", so that it names the op that ran out. */
static TG_SLOW tg_tensor *made_none(tg_ctx *ctx, const char *who, tg_dtype dt, int ndim,
				    const int64_t *shape)
{
	if (ctx->status != TG_ENOMEM || !who)
		return NULL;
	char buf[TG_SHAPE_STR], said[sizeof ctx->message];
	memcpy(said, ctx->message, sizeof said);
	snprintf(ctx->message, sizeof ctx->message, "%s: %s %s: %.*s", who, tg_dtype_name(dt),
		 tg_shape_fmt(ndim, shape, buf), (int)(sizeof said - 160), said);
	return NULL;
}

tg_tensor *tg_tensor_new(tg_ctx *ctx, const char *who, tg_dtype dt, int ndim,
			 const int64_t *shape)
{
	if (!ctx || ctx->status != TG_OK)
		return NULL;
	/* shape_failed's checks, without a call on the way through */
	bool ok = valid_dtype(dt) && ndim >= 0 && ndim <= TG_MAX_DIMS &&
		  (ndim == 0 || shape);
	size_t n = 1;
	for (int i = 0; ok && i < ndim; i++)
		ok = shape[i] > 0 && !__builtin_mul_overflow(n, (uint64_t)shape[i], &n) &&
		     n <= TG_MAX_ELEMENTS;
	if (!ok)
		return new_failed(ctx, who, dt, ndim, shape);
	tg_tensor *t = make(ctx, dt, ndim, shape, n);
	return t ? t : made_none(ctx, who, dt, ndim, shape);
}

/* Sharing needs a step tensor whose data nothing writes after it is made:
 * not a ctx tensor (an optimizer writes parameters), one lent writable, a
 * lazy gradient (filled later) or a gradient buffer. A copy of its own
 * (tg_tensor_own) is always arena memory, so data in x's header stays for
 * the tensors that share it. */
tg_tensor *tg_tensor_alias(tg_tensor *x, const char *who, bool share, size_t off, int ndim,
			   const int64_t *shape)
{
	tg_ctx *ctx = x->ctx;
	if (!share || x->persistent || x->lent || x->lazy_fill || x->written_later ||
	    ctx->status != TG_OK)
		return tg_tensor_new(ctx, who, x->dtype, ndim, shape);
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	assert(off + n <= x->numel);
	tg_tensor *t = tg_arena_header(ctx);
	if (!t)
		return made_none(ctx, who, x->dtype, ndim, shape);
	init(t, ctx, x->dtype, ndim, shape, n, (char *)x->data + off * tg_dtype_size(x->dtype));
	t->shares = x->shares = true;
	return t;
}

tg_tensor *tg_tensor_as(tg_tensor *x, const char *who, int ndim, const int64_t *shape)
{
	tg_tensor *out = tg_tensor_alias(x, who, true, 0, ndim, shape);
	if (out && !out->shares)
		tg_copy_arrays(x->ctx, out->data, x->data, x->numel * tg_dtype_size(x->dtype));
	return out;
}

TG_SLOW bool tg_tensor_own(tg_tensor *t, const char *who)
{
	if (!t->shares)
		return true;
	size_t bytes = t->numel * tg_dtype_size(t->dtype);
	void *data = tg_arena_alloc(t->ctx, bytes);
	if (!data) {
		made_none(t->ctx, who, t->dtype, t->ndim, t->shape);
		return false;
	}
	memcpy(data, t->data, bytes);
	t->data = data;
	t->shares = false;
	return true;
}

tg_tensor *tg_tensor_like(const tg_tensor *like, const char *who)
{
	tg_ctx *ctx = like->ctx;
	if (ctx->status != TG_OK)
		return NULL;
	/* like's shape and dtype are valid: only memory can run out */
	tg_tensor *t = make(ctx, like->dtype, like->ndim, like->shape, like->numel);
	return t ? t : made_none(ctx, who, like->dtype, like->ndim, like->shape);
}

/* Whether v is a whole number that an index tensor of dtype dt holds. */
static bool fits_index(tg_dtype dt, double v)
{
	double lim = dt == TG_I32 ? 2147483648.0 : 9223372036854775808.0;
	return v == floor(v) && v >= -lim && v < lim;
}

/* Checks that an index tensor made by who can hold v; records why not. */
static bool index_value_ok(tg_ctx *ctx, const char *who, tg_dtype dt, double v, size_t i)
{
	if (tg_dtype_is_float(dt) || fits_index(dt, v))
		return true;
	tg_fail(ctx, TG_EARG, "%s: value %g (element %zu) is not a whole number that %s holds",
		who, v, i, tg_dtype_name(dt));
	return false;
}

/* Element i of an index tensor's data set to the whole number v. */
static void set_index(tg_tensor *t, size_t i, double v)
{
	if (t->dtype == TG_I32)
		((int32_t *)t->data)[i] = (int32_t)v;
	else
		((int64_t *)t->data)[i] = (int64_t)v;
}

static void fill(tg_tensor *t, double v)
{
	if (!tg_dtype_is_float(t->dtype)) {
		for (size_t i = 0; i < t->numel; i++)
			set_index(t, i, v);
	} else if (t->dtype == TG_F64) {
		double *d = t->data;
		for (size_t i = 0; i < t->numel; i++)
			d[i] = v;
	} else {
		float *f = t->data;
		for (size_t i = 0; i < t->numel; i++)
			f[i] = (float)v;
	}
}

tg_tensor *tg_full(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape, double value)
{
	tg_tensor *t = tg_tensor_new(ctx, "tg_full", dt, ndim, shape);
	if (t && !index_value_ok(ctx, "tg_full", dt, value, 0))
		return NULL;
	if (t)
		fill(t, value);
	return t;
}

tg_tensor *tg_empty(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape)
{
	return tg_tensor_new(ctx, "tg_empty", dt, ndim, shape);
}

tg_tensor *tg_zeros(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape)
{
	tg_tensor *t = tg_tensor_new(ctx, "tg_zeros", dt, ndim, shape);
	if (t)
		memset(t->data, 0, t->numel * tg_dtype_size(dt));
	return t;
}

tg_tensor *tg_ones(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape)
{
	tg_tensor *t = tg_tensor_new(ctx, "tg_ones", dt, ndim, shape);
	if (t)
		fill(t, 1.0);
	return t;
}

tg_tensor *tg_scalar(tg_ctx *ctx, tg_dtype dt, double value)
{
	tg_tensor *t = tg_tensor_new(ctx, "tg_scalar", dt, 0, NULL);
	if (t && !index_value_ok(ctx, "tg_scalar", dt, value, 0))
		return NULL;
	if (t)
		fill(t, value);
	return t;
}

tg_tensor *tg_from_f64(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
		       const double *values)
{
	/* the shape first: a bad one is named even when values is NULL too */
	tg_tensor *t = tg_tensor_new(ctx, "tg_from_f64", dt, ndim, shape);
	if (t && !values)
		return tg_fail(ctx, TG_ENULL, "tg_from_f64: values is NULL");
	if (!t)
		return NULL;
	if (!tg_dtype_is_float(dt)) {
		for (size_t i = 0; i < t->numel; i++) {
			if (!index_value_ok(ctx, "tg_from_f64", dt, values[i], i))
				return NULL;
			set_index(t, i, values[i]);
		}
	} else if (dt == TG_F64) {
		memcpy(t->data, values, t->numel * sizeof(double));
	} else {
		float *f = t->data;
		for (size_t i = 0; i < t->numel; i++)
			f[i] = (float)values[i];
	}
	return t;
}

tg_tensor *tg_from_f32(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
		       const float *values)
{
	/* the shape first: a bad one is named even when values is NULL too */
	tg_tensor *t = tg_tensor_new(ctx, "tg_from_f32", dt, ndim, shape);
	if (t && !values)
		return tg_fail(ctx, TG_ENULL, "tg_from_f32: values is NULL");
	if (!t)
		return NULL;
	if (!tg_dtype_is_float(dt)) {
		for (size_t i = 0; i < t->numel; i++) {
			if (!index_value_ok(ctx, "tg_from_f32", dt, values[i], i))
				return NULL;
			set_index(t, i, values[i]);
		}
	} else if (dt == TG_F32) {
		memcpy(t->data, values, t->numel * sizeof(float));
	} else {
		double *d = t->data;
		for (size_t i = 0; i < t->numel; i++)
			d[i] = values[i];
	}
	return t;
}

tg_tensor *tg_from_i32(tg_ctx *ctx, int ndim, const int64_t *shape, const int32_t *values)
{
	/* the shape first: a bad one is named even when values is NULL too */
	tg_tensor *t = tg_tensor_new(ctx, "tg_from_i32", TG_I32, ndim, shape);
	if (t && !values)
		return tg_fail(ctx, TG_ENULL, "tg_from_i32: values is NULL");
	if (t)
		memcpy(t->data, values, t->numel * sizeof *values);
	return t;
}

tg_tensor *tg_from_i64(tg_ctx *ctx, int ndim, const int64_t *shape, const int64_t *values)
{
	/* the shape first: a bad one is named even when values is NULL too */
	tg_tensor *t = tg_tensor_new(ctx, "tg_from_i64", TG_I64, ndim, shape);
	if (t && !values)
		return tg_fail(ctx, TG_ENULL, "tg_from_i64: values is NULL");
	if (t)
		memcpy(t->data, values, t->numel * sizeof *values);
	return t;
}

tg_tensor *tg_labels(tg_ctx *ctx, int64_t n, const int32_t *values)
{
	if (!ctx || ctx->status != TG_OK)
		return NULL;
	if (n <= 0)
		return tg_fail(ctx, TG_EARG, "tg_labels: %lld labels; need at least one",
			       (long long)n);
	if (!values)
		return tg_fail(ctx, TG_ENULL, "tg_labels: values is NULL");
	tg_tensor *t = tg_tensor_new(ctx, "tg_labels", TG_I32, 1, &n);
	if (t)
		memcpy(t->data, values, t->numel * sizeof *values);
	return t;
}

/* Random values make no index tensor: records that, for who. */
static bool random_dtype_ok(tg_ctx *ctx, const char *who, tg_dtype dt)
{
	if (!ctx || ctx->status != TG_OK || !valid_dtype(dt) || tg_dtype_is_float(dt))
		return true; /* tg_tensor_new reports the rest */
	tg_fail(ctx, TG_EDTYPE, "%s: dtype %s; random values are f32 or f64", who,
		tg_dtype_name(dt));
	return false;
}

tg_tensor *tg_randn(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape, double mean,
		    double std)
{
	if (!random_dtype_ok(ctx, "tg_randn", dt))
		return NULL;
	tg_tensor *t = tg_tensor_new(ctx, "tg_randn", dt, ndim, shape);
	if (!t)
		return NULL;
	if (!(std >= 0 && isfinite(std) && isfinite(mean)))
		return tg_fail(ctx, TG_EARG, "tg_randn: mean %g, std %g; std must be finite and >= 0, "
					     "mean finite", mean, std);
	if (dt == TG_F32 && !(fabs(mean) <= FLT_MAX && std <= FLT_MAX))
		return tg_fail(ctx, TG_EARG, "tg_randn: mean %g, std %g is beyond f32's range",
			       mean, std);
	for (size_t i = 0; i < t->numel; i++) {
		double v = mean + std * tg_random_normal(ctx);
		if (dt == TG_F64)
			((double *)t->data)[i] = v;
		else
			((float *)t->data)[i] = (float)v;
	}
	return t;
}

tg_tensor *tg_rand(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape, double lo,
		   double hi)
{
	if (!random_dtype_ok(ctx, "tg_rand", dt))
		return NULL;
	tg_tensor *t = tg_tensor_new(ctx, "tg_rand", dt, ndim, shape);
	if (!t)
		return NULL;
	if (!(lo <= hi && isfinite(lo) && isfinite(hi)))
		return tg_fail(ctx, TG_EARG, "tg_rand: [%g, %g); lo <= hi, both finite", lo, hi);
	if (dt == TG_F32 && !(fabs(lo) <= FLT_MAX && fabs(hi) <= FLT_MAX))
		return tg_fail(ctx, TG_EARG, "tg_rand: [%g, %g) is beyond f32's range", lo, hi);
	/* hi - lo overflows when the bounds are far apart; the two-term form
	 * cannot, and is used only there so that other ranges keep their bits */
	const bool far = !isfinite(hi - lo);
	/* rounding (of the sum, then to f32) may reach hi: the value below it */
	const double top64 = nextafter(hi, -INFINITY);
	const float top32 = (float)hi < hi ? (float)hi : nextafterf((float)hi, -INFINITY);
	for (size_t i = 0; i < t->numel; i++) {
		double u = tg_random_uniform(ctx);
		double v = far ? (1 - u) * lo + u * hi : lo + (hi - lo) * u;
		if (dt == TG_F64) {
			((double *)t->data)[i] = v < hi || lo == hi ? v : fmax(top64, lo);
		} else {
			float f = (float)v;
			((float *)t->data)[i] = f < hi || lo == hi || top32 < lo ? f : top32;
		}
	}
	return t;
}

/* ---- lifetimes -------------------------------------------------------------- */

/* Checks the tensor argument of a function that makes a new tensor: as an
 * op's input (an error already set stops it). */
static tg_ctx *new_from(const char *who, const tg_tensor *t)
{
	tg_tensor *in = (tg_tensor *)t;
	return tg_op_begin_any(who, 1, &in);
}

/* Records that the index tensor t cannot require a gradient, for who. */
static void *index_grad_refused(const char *who, const tg_tensor *t)
{
	char buf[TG_SHAPE_STR];
	return tg_fail(t->ctx, TG_EDTYPE,
		       "%s: %s %s is an index tensor; only f32 and f64 tensors require a gradient",
		       who, tg_dtype_name(t->dtype), tg_shape_fmt(t->ndim, t->shape, buf));
}

/* Checks the tensor argument of an accessor: NULL or stale, not the error
 * state (a tensor can be read after an error). */
static tg_ctx *arg_ctx(const char *who, const tg_tensor *t)
{
	return tg_tensor_check(who, t);
}

static tg_tensor *keep(tg_tensor *t, const char *who, bool requires_grad)
{
	tg_ctx *ctx = new_from(who, t);
	if (!ctx)
		return NULL;
	if (requires_grad && !tg_dtype_is_float(t->dtype))
		return index_grad_refused(who, t);
	size_t head = (sizeof(tg_tensor) + 15) & ~(size_t)15;
	size_t bytes = t->numel * tg_dtype_size(t->dtype);
	/* data of TG_LINE_MIN bytes or more starts on a line, as in the arena */
	size_t slack = bytes >= TG_LINE_MIN ? TG_LINE - 1 : 0;
	tg_tensor *p = tg_ctx_alloc(ctx, head + slack + bytes);
	if (!p)
		return NULL;
	*p = (tg_tensor){ 0 };
	p->magic = TG_TENSOR_MAGIC;
	p->ctx = ctx;
	p->dtype = t->dtype;
	p->ndim = t->ndim;
	memcpy(p->shape, t->shape, (size_t)t->ndim * sizeof *p->shape);
	p->numel = t->numel;
	p->data = (char *)p + head;
	if (slack)
		p->data = (char *)p->data + (-(uintptr_t)p->data & (TG_LINE - 1));
	memcpy(p->data, t->data, bytes);
	p->persistent = true;
	p->requires_grad = requires_grad;
	p->next_kept = ctx->kept;
	ctx->kept = p;
	return p;
}

tg_tensor *tg_param(tg_tensor *t) { return keep(t, "tg_param", true); }
tg_tensor *tg_keep(tg_tensor *t) { return keep(t, "tg_keep", false); }

tg_tensor *tg_kept_newest(tg_ctx *ctx)
{
	return ctx ? ctx->kept : NULL;
}

void tg_kept_drop_newer(tg_ctx *ctx, tg_tensor *mark)
{
	if (!ctx)
		return;
	while (ctx->kept && ctx->kept != mark) {
		tg_tensor *t = ctx->kept;
		ctx->kept = t->next_kept;
		t->magic = 0;
		tg_ctx_release(ctx, t->name);
		tg_ctx_release(ctx, t);
	}
}

tg_tensor *tg_detach(tg_tensor *t)
{
	tg_ctx *ctx = new_from("tg_detach", t);
	if (!ctx)
		return NULL;
	return tg_tensor_as(t, "tg_detach", t->ndim, t->shape);
}

tg_tensor *tg_set_requires_grad(tg_tensor *t, bool on)
{
	if (!arg_ctx("tg_set_requires_grad", t))
		return NULL;
	if (t->node && !on) {
		char buf[TG_SHAPE_STR];
		return tg_fail(t->ctx, TG_EARG,
			       "tg_set_requires_grad: %s %s%s%s%s is the output of %s, not a leaf; "
			       "only a leaf's requires_grad can be turned off (tg_detach gives a "
			       "leaf of its values)",
			       tg_dtype_name(t->dtype), tg_shape_fmt(t->ndim, t->shape, buf),
			       t->name ? " '" : "", t->name ? t->name : "", t->name ? "'" : "",
			       t->node->op->name);
	}
	if (on && !tg_dtype_is_float(t->dtype))
		return index_grad_refused("tg_set_requires_grad", t);
	t->requires_grad = on || t->node;
	return t;
}

tg_tensor *tg_set_decay(tg_tensor *t, bool on)
{
	if (!arg_ctx("tg_set_decay", t))
		return NULL;
	t->decay = on;
	return t;
}

bool tg_decays(const tg_tensor *t) { return tg_tensor_alive(t) && t->decay; }

tg_tensor *tg_set_name(tg_tensor *t, const char *name)
{
	tg_ctx *ctx = arg_ctx("tg_set_name", t);
	if (!ctx)
		return NULL;
	size_t n = name && *name ? strlen(name) + 1 : 0;  /* "" is no name */
	char *copy = NULL;
	if (n) {
		copy = t->persistent ? tg_ctx_alloc(ctx, n) : tg_arena_alloc(ctx, n);
		if (!copy)
			return NULL;
		memcpy(copy, name, n);
	}
	if (t->persistent)
		tg_ctx_release(ctx, t->name);
	t->name = copy;
	return t;
}

/* ---- accessors -------------------------------------------------------------- */

tg_ctx *tg_ctx_of(const tg_tensor *t) { return tg_tensor_alive(t) ? t->ctx : NULL; }
int tg_ndim(const tg_tensor *t) { return tg_tensor_alive(t) ? t->ndim : -1; }
size_t tg_numel(const tg_tensor *t) { return tg_tensor_alive(t) ? t->numel : 0; }
tg_dtype tg_dtype_of(const tg_tensor *t) { return tg_tensor_alive(t) ? t->dtype : TG_F32; }
const char *tg_name(const tg_tensor *t) { return tg_tensor_alive(t) ? t->name : NULL; }
bool tg_requires_grad(const tg_tensor *t) { return tg_tensor_alive(t) && t->requires_grad; }
bool tg_is_param(const tg_tensor *t) { return tg_tensor_alive(t) && t->persistent && t->requires_grad; }
const int64_t *tg_shape(const tg_tensor *t) { return tg_tensor_alive(t) ? t->shape : NULL; }

int64_t tg_dim(const tg_tensor *t, int i)
{
	if (!arg_ctx("tg_dim", t))
		return 0;
	int j = i < 0 ? t->ndim + i : i;
	if (j < 0 || j >= t->ndim) {
		char buf[TG_SHAPE_STR];
		tg_fail(t->ctx, TG_EARG, "tg_dim: dimension %d out of range for shape %s", i,
			tg_shape_fmt(t->ndim, t->shape, buf));
		return 0;
	}
	return t->shape[j];
}

const void *tg_data(const tg_tensor *t)
{
	return arg_ctx("tg_data", t) ? t->data : NULL;
}

void *tg_data_mut(tg_tensor *t)
{
	if (!arg_ctx("tg_data_mut", t))
		return NULL;
	if (t->shares && !tg_tensor_own(t, "tg_data_mut"))
		return NULL;
	t->version++;
	t->lent = true;
	return t->data;
}

static double at(const tg_tensor *t, size_t i)
{
	switch (t->dtype) {
	case TG_F64: return ((const double *)t->data)[i];
	case TG_F32: return ((const float *)t->data)[i];
	case TG_I32: return ((const int32_t *)t->data)[i];
	case TG_I64: return (double)((const int64_t *)t->data)[i];
	}
	return NAN;
}

double tg_get(const tg_tensor *t, size_t i)
{
	if (!arg_ctx("tg_get", t))
		return NAN;
	if (i >= t->numel) {
		char buf[TG_SHAPE_STR];
		tg_fail(t->ctx, TG_EARG, "tg_get: index %zu out of range for shape %s", i,
			tg_shape_fmt(t->ndim, t->shape, buf));
		return NAN;
	}
	return at(t, i);
}

double tg_item(const tg_tensor *t)
{
	if (!arg_ctx("tg_item", t))
		return NAN;
	if (t->numel != 1) {
		char buf[TG_SHAPE_STR];
		tg_fail(t->ctx, TG_ESHAPE, "tg_item: shape %s has %zu elements, not 1",
			tg_shape_fmt(t->ndim, t->shape, buf), t->numel);
		return NAN;
	}
	return at(t, 0);
}

int tg_copy_to_f64(const tg_tensor *t, double *out, size_t n)
{
	tg_ctx *ctx = arg_ctx("tg_copy_to_f64", t);
	if (!ctx)
		return -1;
	if (!out) {
		tg_fail(ctx, TG_ENULL, "tg_copy_to_f64: the output array is NULL");
		return -1;
	}
	if (n < t->numel) {
		tg_fail(ctx, TG_EARG, "tg_copy_to_f64: output holds %zu values, tensor has %zu", n,
			t->numel);
		return -1;
	}
	for (size_t i = 0; i < t->numel; i++)
		out[i] = at(t, i);
	return 0;
}

int tg_assign(tg_tensor *dst, const tg_tensor *src)
{
	tg_tensor *in[2] = { dst, (tg_tensor *)src };
	tg_ctx *ctx = tg_op_begin_any("tg_assign", 2, in);
	if (!ctx)
		return -1;
	if (!tg_same_shape(dst, src)) {
		char a[TG_SHAPE_STR], b[TG_SHAPE_STR];
		tg_fail(ctx, TG_ESHAPE, "tg_assign: destination %s and source %s differ",
			tg_shape_fmt(dst->ndim, dst->shape, a), tg_shape_fmt(src->ndim, src->shape, b));
		return -1;
	}
	if (dst->shares && !tg_tensor_own(dst, "tg_assign"))
		return -1;
	if (dst != src)
		memmove(dst->data, src->data, dst->numel * tg_dtype_size(dst->dtype));
	dst->version++;
	return 0;
}
