/*
 * fuzz_expr.c - libFuzzer target: random expressions over the elementwise
 * ops, reductions, products and indexing (fuzz_ops.c takes the ops with
 * geometry).
 *
 * The input bytes are a little program for a machine with a few tensor
 * slots: make leaves of random shapes (valid or not) and dtypes (the index
 * dtypes i32 and i64 included), apply ops to random slots (NULLs, mixed
 * dtypes, index tensors and tensors kept past tg_reset included), index
 * with index tensors that are sometimes of the wrong dtype, count or ndim,
 * of another context or out of range, run backward (plain,
 * TG_CREATE_GRAPH, twice), zero gradients,
 * reset, clear errors, toggle anomaly and grad mode. After every call the
 * machine checks the error contract: a call either computes (tg_ok, a live
 * tensor of the expected shape) or returns NULL with the first error kept
 * and a message that names the function; a stale tensor is TG_ESTALE; a
 * backward pass over a well-formed tape fails only for memory, NaN checks
 * or in-place changes. Any broken rule aborts, which libFuzzer reports.
 * The step arena has a fixed limit so huge shapes end in TG_ENOMEM, and a
 * work budget keeps each run short.
 *
 * Environment: TG_FUZZ_TRACE=1 prints each instruction, its status and the
 * slots; TG_FUZZ_STATS=1 counts stale uses at exit; TG_FUZZ_STRICT_STALE=1
 * fails on a stale pointer whose header slot a newer tensor has taken even
 * when it was kept past more than one reset (not promised by tapegrad.h).
 */
#define _GNU_SOURCE
#include "internal.h"
#include "tapegrad.h"

#include "fuzz_common.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	NSLOT = 12,
	MAX_INSNS = 400,
	ARENA_LIMIT = 8 << 20,         /* step arena bytes */
	PARAM_BYTES = 8 << 20,         /* ctx tensors made by one run */
	MAX_ARRAY = 1 << 21,           /* labels and indices handed to an op */
	SMALL_ARRAY = 4096,            /* malloc'd below this, so ASan sees overreads */
};

/* Elements touched (and multiply-adds for matmul) allowed in one run. */
static const double WORK_BUDGET = 2e7;

/* ---- reading the program (reader, u8, u16, bit: fuzz_common.h) --------------------- */

/* Interesting values first; the upper half of the byte range gives small
 * numbers in [-4, 4). */
static double value(reader *r)
{
	static const double special[] = {
		0.0, -0.0, 1, -1, 0.5, -0.5, 2, -2, 3, 1e-3, -1e-3, 1e-300, 1e300, -1e300,
		INFINITY, -INFINITY, NAN, 88.7, -88.7, 709.7, -745.2, 1e-40, 3.4e38, -3.4e38,
		0.1, 7, 1e-45, 16777217.0,
	};
	unsigned b = u8(r);
	if (b < 128)
		return special[b % (sizeof special / sizeof special[0])];
	return ((double)b - 192.0) / 16.0;
}

/* A dimension: mostly small, sometimes zero, negative or huge. */
static int64_t dim(reader *r)
{
	static const int64_t small[] = { 1, 2, 3, 4, 5, 8, 16, 32 };
	static const int64_t odd[] = {
		0, -1, -7, 65536, (int64_t)1 << 20, (int64_t)1 << 31, (int64_t)1 << 40,
		INT64_MAX, INT64_MIN, 3, 7, 1,
	};
	unsigned b = u8(r);
	if (b < 224)
		return small[b % 8];
	return odd[(b - 224) % 12];
}

/* ndim in -1..5 and the sizes; shape has room for 8. */
static int shape_of(reader *r, int64_t *shape)
{
	int nd = (int)(u8(r) % 7) - 1;
	for (int i = 0; i < 8; i++)
		shape[i] = i < nd ? dim(r) : 1;
	return nd;
}

/* ---- shape rules, written independently of the library ------------------------- */

/* The element count if (nd, shape) is a valid tensor shape (0..4 dims, sizes
 * positive, at most 2^40 elements), else 0. */
static uint64_t numel_of(int nd, const int64_t *shape)
{
	if (nd < 0 || nd > TG_MAX_DIMS)
		return 0;
	uint64_t n = 1;
	for (int i = 0; i < nd; i++) {
		if (shape[i] <= 0 || (uint64_t)shape[i] > ((uint64_t)1 << 40) / n)
			return 0;
		n *= (uint64_t)shape[i];
	}
	return n;
}

static bool broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nd,
			    int64_t *out)
{
	int n = na > nb ? na : nb;
	for (int i = 0; i < n; i++) {
		int64_t da = i < na ? a[na - 1 - i] : 1, db = i < nb ? b[nb - 1 - i] : 1;
		if (da != db && da != 1 && db != 1)
			return false;
		out[n - 1 - i] = da == 1 ? db : da;
	}
	*nd = n;
	return true;
}

/* True if small (ns, s) broadcasts to big (nb, b). */
static bool broadcasts_to(int ns, const int64_t *s, int nb, const int64_t *b)
{
	if (ns > nb)
		return false;
	for (int i = 0; i < ns; i++) {
		int64_t ds = s[ns - 1 - i], db = b[nb - 1 - i];
		if (ds != db && ds != 1)
			return false;
	}
	return true;
}

/* ---- the machine ------------------------------------------------------------------ */

typedef struct slot {
	tg_tensor *t;
	uint64_t gen; /* the generation its header had when stored */
} slot;

typedef struct vm {
	tg_ctx *ctx;
	tg_ctx *ctx2;         /* a second context, for TG_ECTX; made when needed */
	tg_tensor *other;     /* a ctx tensor of ctx2 */
	tg_tensor *other_idx; /* a ctx index tensor of ctx2: (1) i32 holding 0 */
	fuzz_alloc alloc2;
	reader in;
	slot s[NSLOT];
	double work;
	bool stop;
	bool custom;          /* a custom op with misbehaving rules is on the tape */
	size_t param_bytes;
	FILE *devnull;
	/* the state before the call being checked */
	tg_status before;
	char msg[512];
} vm;

/* A header past its step: stale unless it is a ctx tensor. The header slot
 * outlives the step, so reading it is safe; once the slot ring comes round
 * it holds a newer tensor, which is then what the pointer designates. */
static bool stale(const vm *v, const tg_tensor *t)
{
	return t && !t->persistent && t->gen != v->ctx->gen;
}

static bool live(const vm *v, const tg_tensor *t)
{
	return t && !stale(v, t);
}

/* Uses of a kept pointer whose header slot a newer tensor has taken over:
 * the pointer then designates that tensor and no TG_ESTALE can be reported.
 * tapegrad.h promises it never happens to a tensor kept past one reset (a
 * broken rule here); after more resets it may, and is counted (printed at
 * exit with TG_FUZZ_STATS set; a broken rule with TG_FUZZ_STRICT_STALE). */
static unsigned long aliased, stale_uses;
static bool strict_stale;

static tg_tensor *get(vm *v)
{
	slot *s = &v->s[u8(&v->in) % NSLOT];
	if (s->t && !s->t->persistent && s->gen != v->ctx->gen) {
		stale_uses++;
		if (s->t->gen != s->gen)
			aliased++;
		require(s->t->gen == s->gen || (!strict_stale && s->gen + 1 < v->ctx->gen),
			"a tensor of step %llu, kept past tg_reset into step %llu, now designates "
			"a tensor of step %llu: its use cannot be reported as TG_ESTALE",
			(unsigned long long)s->gen, (unsigned long long)v->ctx->gen,
			(unsigned long long)s->t->gen);
	}
	return s->t;
}

static void put(vm *v, unsigned i, tg_tensor *t)
{
	v->s[i % NSLOT] = (slot){ t, t ? t->gen : 0 };
}

/* Charges n units of work; false (and the program stops) past the budget. */
static bool charge(vm *v, double n)
{
	if (v->work + n > WORK_BUDGET) {
		v->stop = true;
		return false;
	}
	v->work += n;
	return true;
}

/* The elements a new tensor of n elements costs: no more than the step
 * arena can hold, since a larger one fails before it is computed. */
static double made(double n)
{
	return n < ARENA_LIMIT / 4 ? n : ARENA_LIMIT / 4;
}

static double numel_d(const vm *v, const tg_tensor *t)
{
	return live(v, t) ? (double)t->numel : 0;
}

/* ---- checking one call --------------------------------------------------------- */

typedef enum {
	PLAIN,   /* the call may compute or fail for its own reasons */
	NOTHING, /* an error was set: NULL, the error untouched */
	STALE,   /* TG_ESTALE */
	ALLNULL, /* every tensor argument NULL: NULL, no error */
	ANULL,   /* TG_ENULL */
	DTYPE,   /* TG_EDTYPE */
} expect;

static void snapshot(vm *v)
{
	v->before = tg_status_of(v->ctx);
	snprintf(v->msg, sizeof v->msg, "%s", tg_error(v->ctx));
}

static bool index_dtype(tg_dtype dt) { return dt == TG_I32 || dt == TG_I64; }

/* What tg_op_begin must decide for these arguments, with the state now;
 * values: the op takes f32 or f64 values only (every op), so an index
 * tensor is TG_EDTYPE; otherwise (tg_keep, tg_detach, tg_assign) only
 * mixed dtypes are. */
static expect expect_begin(vm *v, int n, tg_tensor *const *a, bool values)
{
	snapshot(v);
	if (v->before != TG_OK)
		return NOTHING;
	bool any = false, null = false;
	for (int i = 0; i < n; i++) {
		if (!a[i]) {
			null = true;
			continue;
		}
		any = true;
		if (stale(v, a[i]))
			return STALE;
	}
	if (!any)
		return ALLNULL;
	if (null)
		return ANULL;
	for (int i = 0; i < n && values; i++)
		if (index_dtype(a[i]->dtype))
			return DTYPE;
	for (int i = 1; i < n; i++)
		if (a[i]->dtype != a[0]->dtype)
			return DTYPE;
	return PLAIN;
}

static expect expect_args(vm *v, int n, tg_tensor *const *a)
{
	return expect_begin(v, n, a, true);
}

/* TG_FUZZ_STATS=1 also counts, per function, the checked calls that found
 * no error set, by the status they ended with. */
enum { MAX_FNS = 64, NSTATUS = TG_EFORMAT + 1 };
static struct {
	const char *who;
	unsigned long n[NSTATUS];
} call_stats[MAX_FNS];

static void count_call(const char *who, tg_status st)
{
	for (int i = 0; i < MAX_FNS; i++) {
		if (!call_stats[i].who)
			call_stats[i].who = who;
		if (!strcmp(call_stats[i].who, who)) {
			call_stats[i].n[st >= 0 && st < NSTATUS ? st : 0]++;
			return;
		}
	}
}

static const char *status_name(const vm *v)
{
	return tg_status_name(tg_status_of(v->ctx));
}

/* The error model after a call that expected e and returned r (NULL or
 * not). predicted is the status the arguments call for when e is PLAIN:
 * TG_OK (it computes, or runs out of memory, or anomaly mode stops it), a
 * specific error, or -1 when the fuzzer does not predict it. */
static void check_call(vm *v, const char *who, expect e, const void *r, int predicted)
{
	tg_status st = tg_status_of(v->ctx);
	const char *msg = tg_error(v->ctx);
	if (e != NOTHING)
		count_call(who, st);
	switch (e) {
	case NOTHING:
		require(!r, "%s computed while %s was set", who, tg_status_name(v->before));
		require(st == v->before && !strcmp(msg, v->msg),
			"%s replaced the first error \"%s\" with %s \"%s\"", who, v->msg,
			tg_status_name(st), msg);
		return;
	case STALE:
		require(!r && st == TG_ESTALE && mentions(msg, who),
			"%s on a stale tensor: result %p, %s \"%s\"", who, r, tg_status_name(st),
			msg);
		return;
	case ALLNULL:
		require(!r && st == TG_OK, "%s with only NULL tensors: result %p, %s \"%s\"", who,
			r, tg_status_name(st), msg);
		return;
	case ANULL:
		require(!r && st == TG_ENULL && mentions(msg, who),
			"%s with a NULL argument: result %p, %s \"%s\"", who, r, tg_status_name(st),
			msg);
		return;
	case DTYPE:
		require(!r && st == TG_EDTYPE && mentions(msg, who),
			"%s with mixed dtypes or an index tensor: result %p, %s \"%s\"", who, r,
			tg_status_name(st), msg);
		return;
	case PLAIN:
		break;
	}
	if (r) {
		require(st == TG_OK, "%s returned a result with %s \"%s\" set", who,
			tg_status_name(st), msg);
		require(predicted == TG_OK || predicted < 0,
			"%s computed where %s was due", who, tg_status_name((tg_status)predicted));
		return;
	}
	require(st != TG_OK && msg[0], "%s returned NULL with no error (%s \"%s\")", who,
		tg_status_name(st), msg);
	if (st == TG_ENOMEM || st == TG_EANOMALY)
		return;
	require(predicted != TG_OK, "%s failed with %s \"%s\" on valid arguments", who,
		tg_status_name(st), msg);
	require(predicted < 0 || st == (tg_status)predicted, "%s: expected %s, got %s \"%s\"",
		who, tg_status_name((tg_status)predicted), tg_status_name(st), msg);
	require(mentions(msg, who), "%s: the message \"%s\" does not name the function", who,
		msg);
}

/* A computed tensor: alive, of ctx, with the dtype and (when nd >= 0) the
 * shape the fuzzer worked out. */
static void check_tensor(vm *v, const char *who, const tg_tensor *t, tg_dtype dt, int nd,
			 const int64_t *shape)
{
	if (!t)
		return;
	require(tg_ctx_of(t) == v->ctx && tg_ndim(t) >= 0 && tg_ndim(t) <= TG_MAX_DIMS,
		"%s returned a dead or foreign tensor", who);
	require(tg_dtype_of(t) == dt, "%s returned dtype %d, expected %d", who,
		(int)tg_dtype_of(t), (int)dt);
	if (nd < 0)
		return;
	char got[TG_SHAPE_STR], want[TG_SHAPE_STR];
	bool same = tg_ndim(t) == nd;
	for (int i = 0; same && i < nd; i++)
		same = tg_shape(t)[i] == shape[i];
	require(same, "%s returned shape %s, expected %s", who,
		tg_shape_str(t, got, sizeof got), tg_shape_fmt(nd, shape, want));
	uint64_t n = numel_of(nd, shape);
	require(tg_numel(t) == n, "%s: %zu elements for %s", who, tg_numel(t), want);
}

static tg_tensor *finish(vm *v, const char *who, expect e, tg_tensor *r, int predicted,
			 tg_dtype dt, int nd, const int64_t *shape)
{
	check_call(v, who, e, r, predicted);
	check_tensor(v, who, r, dt, nd, shape);
	if (r)
		charge(v, (double)tg_numel(r));
	return r;
}

/* ---- leaves ------------------------------------------------------------------------ */

/* f32 or f64 mostly; 240..254 the index dtypes, 255 no dtype at all. */
static tg_dtype dtype(reader *r)
{
	unsigned b = u8(r);
	if (b == 255)
		return (tg_dtype)(TG_I64 + 1);
	if (b >= 240)
		return b & 1 ? TG_I64 : TG_I32;
	return (tg_dtype)(b & 1);
}

static bool valid_dtype(tg_dtype dt)
{
	return dt == TG_F32 || dt == TG_F64 || index_dtype(dt);
}

/* Whether v is a value that an index tensor of dtype dt holds exactly: a
 * whole number in its range. */
static bool holds(tg_dtype dt, double v)
{
	double lim = dt == TG_I32 ? 0x1p31 : 0x1p63;
	return isfinite(v) && v == trunc(v) && v >= -lim && v < lim;
}

/* An integer for an index tensor: small ones mostly, and the ends of both
 * index dtypes (an i64 past the i32 range must not be cut to 32 bits). */
static int64_t int_value(reader *r)
{
	static const int64_t odd[] = {
		INT32_MIN, INT32_MAX, (int64_t)1 << 32, ((int64_t)1 << 32) + 1, INT64_MIN,
		INT64_MAX, -1, (int64_t)INT32_MAX + 1, 1 << 20, -(1 << 20), 0, 65536,
		(int64_t)INT32_MIN - 1, 3, 1000000, 7,
	};
	unsigned b = u8(r);
	return b < 240 ? (int64_t)(b % 40) - 4 : odd[b - 240];
}

enum { RANDN_LEAF = 6 }; /* leaf kinds 6 and 7: tg_randn, tg_rand */

/* Leaf kind 8: tg_from_i32 for i32, tg_from_i64 for i64, tg_labels with
 * shape[0] labels for any other dtype, values from the program (a short
 * array for a shape the call must refuse before reading it); tg_zeros for
 * more than SMALL_ARRAY entries that the step arena could hold. Sets who
 * and, but for tg_zeros, the prediction. */
static tg_tensor *leaf_index(vm *v, tg_dtype dt, int nd, int64_t *shape, uint64_t n,
			     const char **who, int *predicted)
{
	reader *r = &v->in;
	int64_t vals[16];
	for (int i = 0; i < 16; i++)
		vals[i] = int_value(r);
	bool pass_null = bit(r);
	bool labels = !index_dtype(dt);
	int64_t m = labels && nd >= 1 ? shape[0] : 0; /* the label count */
	uint64_t len = labels ? (m > 0 ? (uint64_t)m : 0) : n;
	/* more bytes than the step arena holds: refused before the values are
	 * read, so a short array does (ASan sees it read if it is not) */
	bool refused = len > ARENA_LIMIT / (dt == TG_I64 ? 8 : 4);
	if (len > SMALL_ARRAY && !refused) {
		*who = "tg_zeros";
		return tg_zeros(v->ctx, dt, nd, shape);
	}
	size_t cap = len && !refused ? (size_t)len : 1;
	tg_tensor *t;
	if (dt == TG_I64) {
		int64_t *d = malloc(cap * sizeof *d);
		if (!d)
			return NULL;
		for (size_t i = 0; i < cap; i++)
			d[i] = vals[i % 16];
		*who = "tg_from_i64";
		*predicted = !n ? TG_ESHAPE : pass_null ? TG_ENULL : TG_OK; /* shape first */
		t = tg_from_i64(v->ctx, nd, shape, pass_null ? NULL : d);
		free(d);
		return t;
	}
	int32_t *d = malloc(cap * sizeof *d);
	if (!d)
		return NULL;
	for (size_t i = 0; i < cap; i++)
		d[i] = (int32_t)(vals[i % 16] % ((int64_t)1 << 31));
	if (labels) {
		/* its NULL check is tg_from_i32's, and names that */
		*who = "tg_labels";
		*predicted = m <= 0 ? TG_EARG
			   : pass_null ? TG_ENULL
			   : numel_of(1, &m) ? TG_OK
			   : TG_ESHAPE;
		shape[0] = m;
		t = tg_labels(v->ctx, m, pass_null ? NULL : d);
	} else {
		*who = "tg_from_i32";
		*predicted = !n ? TG_ESHAPE : pass_null ? TG_ENULL : TG_OK; /* shape first */
		t = tg_from_i32(v->ctx, nd, shape, pass_null ? NULL : d);
	}
	free(d);
	return t;
}

static void op_leaf(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r), how = u8(r) % 9;
	tg_dtype dt = dtype(r);
	int64_t shape[8] = { 0 };
	int nd = how == 5 ? 0 : shape_of(r, shape);
	uint64_t n = numel_of(nd, shape);
	double a = value(r), b = value(r);
	/* a random draw costs several times a plain fill */
	if (!charge(v, made((double)n) * (how >= RANDN_LEAF ? 8 : 1)))
		return;
	snapshot(v);
	expect e = v->before == TG_OK ? PLAIN : NOTHING;
	int predicted = !valid_dtype(dt) ? TG_EDTYPE : n ? TG_OK : TG_ESHAPE;
	/* a value given to an index tensor must be whole and in range */
	int value_ok = predicted == TG_OK && index_dtype(dt) && !holds(dt, a) ? TG_EARG : predicted;
	tg_tensor *t = NULL;
	const char *who = "tg_zeros";
	switch (how) {
	case 0:
		t = tg_zeros(v->ctx, dt, nd, shape);
		break;
	case 1:
		who = "tg_ones";
		t = tg_ones(v->ctx, dt, nd, shape);
		break;
	case 2:
		who = "tg_full";
		predicted = value_ok;
		t = tg_full(v->ctx, dt, nd, shape, a);
		break;
	case 3:
	case 4: {
		/* values from the program, repeated; a short array for a shape the
		 * call must refuse before reading it */
		size_t len = n && n <= SMALL_ARRAY ? (size_t)n : 1;
		double vals[16];
		for (int i = 0; i < 16; i++)
			vals[i] = value(r);
		bool pass_null = bit(r);
		if (n > SMALL_ARRAY) {
			who = "tg_full";
			predicted = value_ok;
			t = tg_full(v->ctx, dt, nd, shape, a);
			break;
		}
		/* each value an index tensor is given must fit it */
		for (size_t i = 0; predicted == TG_OK && index_dtype(dt) && i < n; i++) {
			double x = how == 3 ? vals[i % 16] : (double)(float)vals[i % 16];
			if (!holds(dt, x))
				predicted = TG_EARG;
		}
		/* a bad shape or dtype is named first; a NULL before the values */
		if (pass_null && (predicted == TG_OK || predicted == TG_EARG))
			predicted = TG_ENULL;
		if (how == 3) {
			double *d = malloc(len * sizeof *d);
			if (!d)
				return;
			for (size_t i = 0; i < len; i++)
				d[i] = vals[i % 16];
			who = "tg_from_f64";
			t = tg_from_f64(v->ctx, dt, nd, shape, pass_null ? NULL : d);
			free(d);
		} else {
			float *f = malloc(len * sizeof *f);
			if (!f)
				return;
			for (size_t i = 0; i < len; i++)
				f[i] = (float)vals[i % 16];
			who = "tg_from_f32";
			t = tg_from_f32(v->ctx, dt, nd, shape, pass_null ? NULL : f);
			free(f);
		}
		break;
	}
	case 5:
		who = "tg_scalar";
		predicted = value_ok;
		t = tg_scalar(v->ctx, dt, a);
		break;
	case 6:
	case 7:
		/* random values make no index tensor, whatever the shape; a
		 * distribution's parameters are finite, std >= 0 and lo <= hi,
		 * and in f32 within its range */
		if (index_dtype(dt))
			predicted = TG_EDTYPE;
		else if (predicted == TG_OK &&
			 !(isfinite(a) && isfinite(b) && (how == 6 ? b >= 0 : a <= b)))
			predicted = TG_EARG;
		else if (predicted == TG_OK && dt == TG_F32 &&
			 !(fabs(a) <= FLT_MAX && fabs(b) <= FLT_MAX))
			predicted = TG_EARG;
		who = how == 6 ? "tg_randn" : "tg_rand";
		t = how == 6 ? tg_randn(v->ctx, dt, nd, shape, a, b)
			     : tg_rand(v->ctx, dt, nd, shape, a, b);
		break;
	default:
		t = leaf_index(v, dt, nd, shape, n, &who, &predicted);
		if (!strncmp(who, "tg_labels", 9)) {
			dt = TG_I32;
			nd = 1;
		}
		break;
	}
	finish(v, who, e, t, predicted, dt, nd, shape);
	put(v, dst, t);
}

/* tg_param, tg_keep, tg_detach, tg_set_requires_grad */
static void op_lifetime(vm *v)
{
	reader *r = &v->in;
	unsigned kind = u8(r) % 4, dst = u8(r);
	tg_tensor *x = get(v);
	if (kind < 2) {
		/* ctx tensors live until the end of the run: bound their bytes */
		size_t bytes = live(v, x) ? x->numel * tg_dtype_size(x->dtype) : 0;
		if (v->param_bytes + bytes > PARAM_BYTES)
			return;
		v->param_bytes += bytes;
	}
	if (!charge(v, numel_d(v, x)))
		return;
	/* they copy index tensors too; only a gradient is refused them */
	expect e = expect_begin(v, 1, &x, false);
	int nd = live(v, x) ? x->ndim : -1;
	const int64_t *shape = live(v, x) ? x->shape : NULL;
	tg_dtype dt = x ? x->dtype : TG_F32;
	bool index = live(v, x) && index_dtype(x->dtype);
	tg_tensor *t;
	switch (kind) {
	case 0:
		t = finish(v, "tg_param", e, tg_param(x), index ? TG_EDTYPE : TG_OK, dt, nd, shape);
		require(!t || (tg_is_param(t) && tg_requires_grad(t)), "tg_param: not a parameter");
		break;
	case 1:
		t = finish(v, "tg_keep", e, tg_keep(x), TG_OK, dt, nd, shape);
		require(!t || (!tg_is_param(t) && !tg_requires_grad(t)), "tg_keep: needs a gradient");
		break;
	case 2:
		t = finish(v, "tg_detach", e, tg_detach(x), TG_OK, dt, nd, shape);
		require(!t || (!tg_producer(t) && !tg_requires_grad(t)), "tg_detach: has history");
		break;
	default: {
		/* not an op: works while an error is set, but not on a stale tensor */
		bool on = bit(r);
		snapshot(v);
		bool was_stale = stale(v, x);
		bool node = live(v, x) && x->node;
		t = tg_set_requires_grad(x, on);
		if (was_stale && v->before == TG_OK)
			require(!t && tg_status_of(v->ctx) == TG_ESTALE,
				"tg_set_requires_grad on a stale tensor: %s", status_name(v));
		if (node && !on && v->before == TG_OK)
			require(!t && tg_status_of(v->ctx) == TG_EARG,
				"tg_set_requires_grad(false) on an op output: %s", status_name(v));
		if (index && on && !was_stale && v->before == TG_OK)
			require(!t && tg_status_of(v->ctx) == TG_EDTYPE,
				"tg_set_requires_grad on an index tensor: %s", status_name(v));
		if (index && !on && !was_stale)
			require(t, "tg_set_requires_grad(false) refused an index tensor: %s",
				status_name(v));
		if (t)
			require(tg_requires_grad(t) == (on || node), "tg_set_requires_grad: flag %d",
				(int)tg_requires_grad(t));
		return; /* the slot keeps x */
	}
	}
	put(v, dst, t);
}

/* ---- elementwise ops ------------------------------------------------------------------ */

static void op_binary(vm *v)
{
	static const char *const names[] = {
		"tg_add", "tg_sub", "tg_mul", "tg_div", "tg_maximum", "tg_minimum",
		"tg_sigmoid_backward",
	};
	reader *r = &v->in;
	unsigned k = u8(r) % 7, dst = u8(r);
	tg_tensor *in[2];
	in[0] = get(v);
	in[1] = get(v);
	if (!charge(v, 2 * (numel_d(v, in[0]) + numel_d(v, in[1]))))
		return;
	/* the output can be far larger than either input: (N,1) + (1,M) */
	int nd = -1;
	int64_t shape[TG_MAX_DIMS];
	int predicted = -1;
	if (live(v, in[0]) && live(v, in[1])) {
		if (k == 6) {
			bool same = tg_same_shape(in[0], in[1]);
			predicted = same ? TG_OK : TG_ESHAPE;
			if (same) {
				nd = in[0]->ndim;
				memcpy(shape, in[0]->shape, sizeof shape);
			}
		} else if (broadcast_shape(in[0]->ndim, in[0]->shape, in[1]->ndim, in[1]->shape,
					   &nd, shape)) {
			predicted = TG_OK;
			if (!charge(v, made((double)numel_of(nd, shape))))
				return;
		} else {
			predicted = TG_ESHAPE;
			nd = -1;
		}
	}
	expect e = expect_args(v, 2, in);
	tg_tensor *(*const fn[])(tg_tensor *, tg_tensor *) = {
		tg_add, tg_sub, tg_mul, tg_div, tg_maximum, tg_minimum, tg_sigmoid_backward,
	};
	tg_tensor *t = fn[k](in[0], in[1]);
	put(v, dst, finish(v, names[k], e, t, predicted, in[0] ? in[0]->dtype : TG_F32, nd, shape));
}

static void op_scalar(vm *v)
{
	static const char *const names[] = { "tg_pow", "tg_add_scalar", "tg_mul_scalar" };
	reader *r = &v->in;
	unsigned k = u8(r) % 3, dst = u8(r);
	tg_tensor *x = get(v);
	double s = value(r);
	if (!charge(v, 2 * numel_d(v, x)))
		return;
	expect e = expect_args(v, 1, &x);
	tg_tensor *t = k == 0 ? tg_pow(x, s) : k == 1 ? tg_add_scalar(x, s) : tg_mul_scalar(x, s);
	bool ok = live(v, x);
	put(v, dst, finish(v, names[k], e, t, TG_OK, x ? x->dtype : TG_F32, ok ? x->ndim : -1,
			   ok ? x->shape : NULL));
}

static void op_unary(vm *v)
{
	static const char *const names[] = {
		"tg_neg", "tg_exp", "tg_log", "tg_sqrt", "tg_abs", "tg_sigmoid", "tg_tanh",
		"tg_relu", "tg_leaky_relu", "tg_elu", "tg_softplus",
	};
	reader *r = &v->in;
	unsigned k = u8(r) % 11, dst = u8(r);
	tg_tensor *x = get(v);
	double alpha = value(r);
	if (!charge(v, 2 * numel_d(v, x)))
		return;
	expect e = expect_args(v, 1, &x);
	tg_tensor *t;
	switch (k) {
	case 0: t = tg_neg(x); break;
	case 1: t = tg_exp(x); break;
	case 2: t = tg_log(x); break;
	case 3: t = tg_sqrt(x); break;
	case 4: t = tg_abs(x); break;
	case 5: t = tg_sigmoid(x); break;
	case 6: t = tg_tanh(x); break;
	case 7: t = tg_relu(x); break;
	case 8: t = tg_leaky_relu(x, alpha); break;
	case 9: t = tg_elu(x, alpha); break;
	default: t = tg_softplus(x); break;
	}
	bool ok = live(v, x);
	put(v, dst, finish(v, names[k], e, t, TG_OK, x ? x->dtype : TG_F32, ok ? x->ndim : -1,
			   ok ? x->shape : NULL));
}

/* ---- reductions --------------------------------------------------------------------------- */

static void op_reduce(vm *v)
{
	static const char *const names[] = {
		"tg_sum", "tg_mean", "tg_max", "tg_sum_axis", "tg_mean_axis", "tg_max_axis",
	};
	reader *r = &v->in;
	unsigned k = u8(r) % 6, dst = u8(r);
	tg_tensor *x = get(v);
	int axis = (int)(u8(r) % 13) - 6;
	bool keepdim = bit(r);
	if (!charge(v, 2 * numel_d(v, x)))
		return;
	int nd = -1, predicted = -1;
	int64_t shape[TG_MAX_DIMS];
	if (live(v, x)) {
		predicted = TG_OK;
		nd = 0;
		if (k >= 3) {
			int a = axis < 0 ? axis + x->ndim : axis;
			if (a < 0 || a >= x->ndim) {
				predicted = TG_EARG;
				nd = -1;
			}
			for (int i = 0; nd >= 0 && i < x->ndim; i++)
				if (i != a)
					shape[nd++] = x->shape[i];
				else if (keepdim)
					shape[nd++] = 1;
		}
	}
	expect e = expect_args(v, 1, &x);
	tg_tensor *t;
	switch (k) {
	case 0: t = tg_sum(x); break;
	case 1: t = tg_mean(x); break;
	case 2: t = tg_max(x); break;
	case 3: t = tg_sum_axis(x, axis, keepdim); break;
	case 4: t = tg_mean_axis(x, axis, keepdim); break;
	default: t = tg_max_axis(x, axis, keepdim); break;
	}
	put(v, dst, finish(v, names[k], e, t, predicted, x ? x->dtype : TG_F32, nd, shape));
}

/* A target shape for sum_to (toward fewer elements) or expand (toward more):
 * mostly derived from x's shape so that it fits, sometimes random. */
static int target_shape(vm *v, const tg_tensor *x, bool grow, int64_t *shape)
{
	reader *r = &v->in;
	unsigned how = u8(r);
	if (!live(v, x) || how % 4 == 0)
		return shape_of(r, shape);
	int nd = x->ndim;
	for (int i = 0; i < nd; i++)
		shape[i] = x->shape[i];
	if (!grow) {
		/* drop some leading axes, set some to 1 */
		int drop = (int)(u8(r) % (unsigned)(nd + 1));
		for (int i = 0; i + drop < nd; i++)
			shape[i] = bit(r) ? 1 : shape[i + drop];
		return nd - drop;
	}
	/* widen 1s, then put new axes in front */
	for (int i = 0; i < nd; i++)
		if (shape[i] == 1 && bit(r))
			shape[i] = dim(r);
	int add = (int)(u8(r) % (unsigned)(TG_MAX_DIMS + 1 - nd));
	memmove(shape + add, shape, (size_t)nd * sizeof *shape);
	for (int i = 0; i < add; i++)
		shape[i] = dim(r);
	return nd + add;
}

static void op_sum_to_expand(vm *v)
{
	reader *r = &v->in;
	bool grow = bit(r);
	unsigned dst = u8(r);
	tg_tensor *x = get(v);
	int64_t shape[8];
	int nd = target_shape(v, x, grow, shape);
	bool nd_ok = nd >= 0 && nd <= TG_MAX_DIMS;
	uint64_t n = numel_of(nd, shape);
	if (!charge(v, numel_d(v, x) + (grow ? made((double)n) : 0)))
		return;
	int predicted = -1;
	if (live(v, x)) {
		if (grow)
			predicted = nd_ok && broadcasts_to(x->ndim, x->shape, nd, shape) && n ? TG_OK
										   : TG_ESHAPE;
		else
			predicted = nd_ok && broadcasts_to(nd, shape, x->ndim, x->shape) && n ? TG_OK
										   : TG_ESHAPE;
	}
	expect e = expect_args(v, 1, &x);
	tg_tensor *t = grow ? tg_expand(x, nd, shape) : tg_sum_to(x, nd, shape);
	put(v, dst, finish(v, grow ? "tg_expand" : "tg_sum_to", e, t, predicted,
			   x ? x->dtype : TG_F32, n ? nd : -1, shape));
}

/* ---- matrices ----------------------------------------------------------------------------- */

static void op_matmul(vm *v)
{
	reader *r = &v->in;
	unsigned how = u8(r), dst = u8(r);
	bool plain = how & 1, ta = how & 2, tb = how & 4;
	if (plain)
		ta = tb = false;
	tg_tensor *in[2];
	in[0] = get(v);
	in[1] = get(v);
	tg_tensor *a = in[0], *b = in[1];
	int predicted = -1;
	int64_t shape[2] = { 0, 0 };
	int nd = -1;
	if (live(v, a) && live(v, b)) {
		predicted = TG_ESHAPE;
		if (a->ndim == 2 && b->ndim == 2) {
			int64_t N = ta ? a->shape[1] : a->shape[0], K = ta ? a->shape[0] : a->shape[1];
			int64_t Kb = tb ? b->shape[1] : b->shape[0], M = tb ? b->shape[0] : b->shape[1];
			if (K == Kb) {
				predicted = TG_OK;
				nd = 2;
				shape[0] = N;
				shape[1] = M;
				/* an output beyond the arena fails before the product */
				double out = (double)N * (double)M;
				if (!charge(v, made(out) < out ? 1 : out * (double)K + out))
					return;
			}
		}
	}
	expect e = expect_args(v, 2, in);
	const char *who = plain ? "tg_matmul" : "tg_matmul_t";
	tg_tensor *t = plain ? tg_matmul(a, b) : tg_matmul_t(a, ta, b, tb);
	put(v, dst, finish(v, who, e, t, predicted, a ? a->dtype : TG_F32, nd, shape));
}

static void op_transpose(vm *v)
{
	unsigned dst = u8(&v->in);
	tg_tensor *x = get(v);
	if (!charge(v, 2 * numel_d(v, x)))
		return;
	int predicted = -1, nd = -1;
	int64_t shape[2] = { 0, 0 };
	if (live(v, x)) {
		predicted = x->ndim == 2 ? TG_OK : TG_ESHAPE;
		if (x->ndim == 2) {
			nd = 2;
			shape[0] = x->shape[1];
			shape[1] = x->shape[0];
		}
	}
	expect e = expect_args(v, 1, &x);
	put(v, dst, finish(v, "tg_transpose", e, tg_transpose(x), predicted,
			   x ? x->dtype : TG_F32, nd, shape));
}

/* A reshape target: x's sizes merged, split or with one -1, or random. */
static int reshape_target(vm *v, const tg_tensor *x, int64_t *shape)
{
	reader *r = &v->in;
	unsigned how = u8(r) % 5;
	if (!live(v, x) || how == 0)
		return shape_of(r, shape);
	int nd = 0;
	int64_t d[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
	for (int i = 0; i < x->ndim; i++)
		d[nd++] = x->shape[i];
	if (how == 1 && nd >= 2) { /* merge two neighbours */
		int i = (int)(u8(r) % (unsigned)(nd - 1));
		d[i] *= d[i + 1];
		memmove(d + i + 1, d + i + 2, (size_t)(nd - i - 2) * sizeof *d);
		nd--;
	} else if (how == 2 && nd >= 1 && nd < TG_MAX_DIMS) { /* split one */
		int i = (int)(u8(r) % (unsigned)nd);
		int64_t f = 1 + (int64_t)(u8(r) % 4);
		if (d[i] % f == 0) {
			memmove(d + i + 1, d + i, (size_t)(nd - i) * sizeof *d);
			d[i] = f;
			d[i + 1] /= f;
			nd++;
		}
	} else if (how == 3) { /* a 1 in front or at the back */
		if (nd < TG_MAX_DIMS) {
			if (bit(r)) {
				memmove(d + 1, d, (size_t)nd * sizeof *d);
				d[0] = 1;
			} else {
				d[nd] = 1;
			}
			nd++;
		}
	}
	if (nd > 0 && bit(r))
		d[u8(r) % (unsigned)nd] = -1;
	memcpy(shape, d, sizeof d);
	return nd;
}

/* Resolves a reshape target for numel elements the way the API describes it:
 * at most one -1, every other size positive, the product equal. */
static bool resolve(uint64_t numel, int nd, const int64_t *shape, int64_t *out)
{
	if (nd < 0 || nd > TG_MAX_DIMS)
		return false;
	int infer = -1;
	uint64_t known = 1;
	for (int i = 0; i < nd; i++) {
		if (shape[i] == -1 && infer < 0) {
			infer = i;
			continue;
		}
		if (shape[i] <= 0)
			return false;
		if ((uint64_t)shape[i] > numel || known > numel / (uint64_t)shape[i])
			return false;
		known *= (uint64_t)shape[i];
	}
	if (infer < 0 ? known != numel : numel % known != 0)
		return false;
	for (int i = 0; i < nd; i++)
		out[i] = i == infer ? (int64_t)(numel / known) : shape[i];
	return true;
}

static void op_reshape(vm *v)
{
	unsigned dst = u8(&v->in);
	tg_tensor *x = get(v);
	int64_t shape[8], out[8];
	int nd = reshape_target(v, x, shape);
	if (!charge(v, 2 * numel_d(v, x)))
		return;
	int predicted = -1;
	bool ok = false;
	if (live(v, x)) {
		ok = resolve(x->numel, nd, shape, out);
		predicted = ok ? TG_OK : TG_ESHAPE;
	}
	expect e = expect_args(v, 1, &x);
	put(v, dst, finish(v, "tg_reshape", e, tg_reshape(x, nd, shape), predicted,
			   x ? x->dtype : TG_F32, ok ? nd : -1, out));
}

/* ---- indexing ------------------------------------------------------------------------------ */

static bool second_ctx(vm *v);

/* n indices for k slots: valid ones, or with one bad entry. NULL if n is
 * out of reach. A small array is malloc'd (ASan then catches a read past
 * it), a large one is a static buffer (a fresh mmap per run is slow); hand
 * it to free_indices. */
static int32_t big_array[MAX_ARRAY];

static int32_t *indices(reader *r, int64_t n, int64_t k)
{
	if (n < 1 || n > MAX_ARRAY)
		return NULL;
	int32_t *idx = n <= SMALL_ARRAY ? malloc((size_t)n * sizeof *idx) : big_array;
	if (!idx)
		return NULL;
	unsigned mode = u8(r) % 4, seed = u8(r);
	for (int64_t i = 0; i < n; i++)
		idx[i] = k > 0 ? (int32_t)(((uint64_t)i * 7 + seed) % (uint64_t)k) : 0;
	if (mode == 3) {
		static const int32_t wrong[] = { -1, INT32_MIN, INT32_MAX, 0 };
		int64_t at = (int64_t)(u16(r) % (unsigned)(n < 65535 ? n : 65535));
		unsigned w = u8(r) % 5;
		idx[at] = w < 4 ? wrong[w] : (int32_t)(k < INT32_MAX ? k : INT32_MAX);
	}
	return idx;
}

static void free_indices(int32_t *idx)
{
	if (idx != big_array)
		free(idx);
}

/* Entry i of an index tensor (i32 or i64). */
static int64_t index_at(const tg_tensor *t, size_t i)
{
	return t->dtype == TG_I32 ? ((const int32_t *)t->data)[i] : ((const int64_t *)t->data)[i];
}

/* What an op must decide about its index argument idx, called name in
 * messages, that must hold count entries (any count if count < 0), have one
 * dimension unless any_shape, and entries in [0, k): NULL, stale, another
 * context, a value dtype, the ndim, the count, then the first entry out of
 * range, which is written to bad as the message names it. */
static int index_status(const vm *v, const tg_tensor *idx, const char *name, int64_t count,
			bool any_shape, int64_t k, char *bad, size_t size)
{
	if (!idx)
		return TG_ENULL;
	if (stale(v, idx))
		return TG_ESTALE;
	if (idx->ctx != v->ctx)
		return TG_ECTX;
	if (!index_dtype(idx->dtype))
		return TG_EDTYPE;
	if (!any_shape && idx->ndim != 1)
		return TG_ESHAPE;
	if (count >= 0 && idx->numel != (size_t)count)
		return TG_ESHAPE;
	for (size_t i = 0; i < idx->numel; i++) {
		int64_t e = index_at(idx, i);
		if (e < 0 || e >= k) {
			snprintf(bad, size, "%s[%zu] = %lld is outside [0, %lld)", name, i,
				 (long long)e, (long long)k);
			return TG_EARG;
		}
	}
	return TG_OK;
}

/* After a call that failed with TG_EARG for an entry out of range: the
 * message names that entry (the first one) and its range. */
static void check_bad_entry(vm *v, const char *who, int predicted, const char *bad)
{
	if (predicted == TG_EARG && tg_status_of(v->ctx) == TG_EARG && v->before == TG_OK)
		require(strstr(tg_error(v->ctx), bad), "%s: the message \"%s\" does not say \"%s\"",
			who, tg_error(v->ctx), bad);
}

/* An index tensor argument for an op that wants n entries in [0, k): made
 * with tg_labels, tg_from_i32 or tg_from_i64 from indices() (valid, or with
 * an entry out of range), or of the wrong count, ndim (any shape for
 * embedding) or dtype, with an i64 entry past the i32 range, NULL, of
 * another context, or whatever a slot holds. Its making is checked like any
 * call; with bit 7 of the first byte it is also stored in a slot, where
 * value ops meet it and tg_reset makes it stale. */
static tg_tensor *index_arg(vm *v, int64_t n, int64_t k)
{
	reader *r = &v->in;
	unsigned how = u8(r), dst = u8(r), kind = how % 16;
	if (kind == 11)
		return NULL;
	if (kind == 12)
		return second_ctx(v) ? v->other_idx : NULL;
	if (kind >= 13)
		return get(v);
	/* the count and shape */
	int64_t m = n, shape[TG_MAX_DIMS] = { n };
	int nd = 1;
	if (kind == 8) {
		/* a count off by one or doubled, or none at all (tg_labels refuses) */
		const int64_t wrong[] = { n + 1, n - 1, 0, -1, 2 * n };
		m = wrong[u8(r) % 5];
		shape[0] = m;
	} else if (kind == 9) {
		/* another ndim with the same entries, or twice as many */
		static const int nds[] = { 2, 2, 0, 2, 4, 3 };
		unsigned w = u8(r) % 6;
		nd = nds[w];
		int64_t s[6][4] = {
			{ 1, n }, { n, 1 }, { 0 }, { 2, n }, { 1, 1, 1, n }, { 1, n, 1 },
		};
		memcpy(shape, s[w], sizeof s[w]);
		m = nd == 0 ? 1 : w == 3 ? 2 * n : n;
	}
	if (m > MAX_ARRAY || !charge(v, m > 0 ? (double)m : 1))
		return NULL;
	int32_t *vals = indices(r, m > 0 ? m : 1, k);
	if (!vals)
		return NULL;
	snapshot(v);
	expect e = v->before == TG_OK ? PLAIN : NOTHING;
	tg_tensor *t;
	const char *who;
	tg_dtype dt = TG_I32;
	int predicted = TG_OK;
	if (kind == 6 || kind == 7 || ((kind == 9) && (how & 16))) {
		/* i64; kind 7 with one entry that is wrong only at 64 bits */
		size_t len = (size_t)(m > 0 ? m : 1);
		int64_t *w = malloc(len * sizeof *w);
		if (!w) {
			free_indices(vals);
			return NULL;
		}
		for (size_t i = 0; i < len; i++)
			w[i] = vals[i];
		if (kind == 7) {
			static const int64_t wrong[] = {
				(int64_t)1 << 32, INT64_MIN, INT64_MAX, ((int64_t)1 << 32) + 1,
				-((int64_t)1 << 32),
			};
			size_t at = u16(r) % len;
			w[at] = wrong[u8(r) % 5];
		}
		who = "tg_from_i64";
		dt = TG_I64;
		t = tg_from_i64(v->ctx, nd, shape, w);
		free(w);
	} else if (kind == 10) {
		/* the right entries as values: not an index tensor */
		size_t len = (size_t)m;
		double *d = malloc(len * sizeof *d);
		if (!d) {
			free_indices(vals);
			return NULL;
		}
		for (size_t i = 0; i < len; i++)
			d[i] = vals[i];
		who = "tg_from_f64";
		dt = how & 32 ? TG_F64 : TG_F32;
		t = tg_from_f64(v->ctx, dt, 1, shape, d);
		free(d);
	} else if (kind == 8 || kind < 4) {
		who = "tg_labels";
		predicted = m <= 0 ? TG_EARG : TG_OK;
		t = tg_labels(v->ctx, m, vals);
	} else {
		who = "tg_from_i32";
		t = tg_from_i32(v->ctx, nd, shape, vals);
	}
	free_indices(vals);
	finish(v, who, e, t, predicted, dt, predicted == TG_OK ? nd : -1, shape);
	if (how & 128)
		put(v, dst, t);
	return t;
}

/* ---- the values indexing computes ----------------------------------------------------------- */
/* Checked against the definitions on up to VALUE_CHECKS elements spread over
 * the output: gathers copy exactly; the losses agree to rounding. */

enum { VALUE_CHECKS = 2048 };

static double value_at(const tg_tensor *t, size_t i)
{
	return t->dtype == TG_F64 ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

static bool same_value(double a, double b) { return a == b || (isnan(a) && isnan(b)); }

static size_t stride_of(size_t n) { return n / VALUE_CHECKS + 1; }

/* out = x with entries idx along axis a (embedding: a = 0, idx any shape). */
static void check_select(const char *who, const tg_tensor *x, int a, const tg_tensor *idx,
			 const tg_tensor *out)
{
	size_t A = (size_t)x->shape[a], inner = 1, n = idx->numel;
	for (int i = a + 1; i < x->ndim; i++)
		inner *= (size_t)x->shape[i];
	for (size_t p = 0; p < out->numel; p += stride_of(out->numel)) {
		size_t o = p / (n * inner), i = p / inner % n, j = p % inner;
		size_t from = (o * A + (size_t)index_at(idx, i)) * inner + j;
		require(same_value(value_at(out, p), value_at(x, from)),
			"%s: element %zu is %.17g; x element %zu (index %lld) is %.17g", who, p,
			value_at(out, p), from, (long long)index_at(idx, i), value_at(x, from));
	}
}

/* Whether the rows of x are finite and moderate, so that a loss over them
 * can be worked out in double and compared with a relative tolerance. */
static bool moderate(const tg_tensor *x, double *most)
{
	*most = 0;
	for (size_t i = 0; i < x->numel; i++) {
		double e = fabs(value_at(x, i));
		if (!(e <= 1e30))
			return false;
		*most = e > *most ? e : *most;
	}
	return true;
}

/* The label of row i: from the index tensor, or the plain array. */
static int64_t label_at(const tg_tensor *idx, const int32_t *raw, size_t i)
{
	return raw ? raw[i] : index_at(idx, i);
}

/* out of tg_pick (per row), tg_nll (-mean), tg_cross_entropy(_i32) (mean of
 * ln sum e^x - x[label]) or tg_cross_entropy_backward ((softmax - onehot) dout
 * / N), with the label of row i of x (N,K) in idx or raw. */
static void check_losses(const char *who, int kind, const tg_tensor *x, const tg_tensor *idx,
			 const int32_t *raw, const tg_tensor *dout, const tg_tensor *out)
{
	size_t N = (size_t)x->shape[0], K = (size_t)x->shape[1];
	if (kind == 0) {
		for (size_t i = 0; i < N; i += stride_of(N)) {
			int64_t l = label_at(idx, raw, i);
			double want = value_at(x, i * K + (size_t)l);
			require(same_value(value_at(out, i), want),
				"tg_pick: row %zu gives %.17g, x[%zu, %lld] is %.17g", i,
				value_at(out, i), i, (long long)l, want);
		}
		return;
	}
	double most;
	if (x->numel > (size_t)VALUE_CHECKS * 8 || !moderate(x, &most))
		return;
	double eps = x->dtype == TG_F32 ? 1e-6 : 1e-13;
	double total = 0;
	for (size_t i = 0; i < N; i++) {
		const size_t row = i * K;
		double m = value_at(x, row), s = 0;
		for (size_t j = 1; j < K; j++)
			m = value_at(x, row + j) > m ? value_at(x, row + j) : m;
		for (size_t j = 0; j < K; j++)
			s += exp(value_at(x, row + j) - m);
		size_t l = (size_t)label_at(idx, raw, i);
		double pick = value_at(x, row + l);
		if (kind == 1) {
			total += pick;
		} else if (kind < 4) {
			total += m - pick + log(s);
		} else {
			double d = value_at(dout, 0);
			if (!(fabs(d) <= 1e30))
				return;
			for (size_t j = 0; j < K; j++) {
				double p = exp(value_at(x, row + j) - m) / s;
				double want = (p - (j == l)) / (double)N * d;
				double got = value_at(out, row + j);
				require(fabs(got - want) <= 16 * eps * (fabs(d) + 1e-300) + 1e-300,
					"%s: element (%zu,%zu) is %.17g, expected %.17g (dout %g)",
					who, i, j, got, want, d);
			}
		}
	}
	if (kind == 4)
		return;
	double want = kind == 1 ? -total / (double)N : total / (double)N, got = value_at(out, 0);
	double tol = eps * ((double)N + 8) * (most + 1);
	require(fabs(got - want) <= tol, "%s: %.17g, expected %.17g (tolerance %.3g)", who, got,
		want, tol);
}

static const int64_t counts[] = { 1, 2, 3, 5, 8, 16, 64, 4, 7, 1 };

/* tg_gather_rows, tg_index_select along any axis (negative and out of
 * range too), tg_embedding. */
static void op_gather(vm *v)
{
	static const char *const names[] = {
		/* gather_rows's checks are index_select's, and name it */
		"tg_gather_rows", "tg_index_select", "tg_embedding",
	};
	reader *r = &v->in;
	unsigned dst = u8(r), kind = u8(r) % 3;
	tg_tensor *x = get(v);
	int axis = kind == 1 ? (int)(u8(r) % 11) - 5 : 0;
	int64_t n = counts[u8(r) % 10];
	bool ok = live(v, x);
	/* the axis indexed, -1 if x has none there */
	int a = -1;
	if (ok && x->ndim >= 1) {
		a = axis < 0 ? axis + x->ndim : axis;
		if (a >= x->ndim || a < 0 || (kind == 2 && x->ndim != 2))
			a = -1;
	}
	int64_t k = a >= 0 ? x->shape[a] : 4;
	tg_tensor *idx = index_arg(v, n, k);
	if (v->stop)
		return;
	int predicted = -1, nd = -1;
	int64_t shape[TG_MAX_DIMS];
	char bad[128] = "";
	if (ok && !index_dtype(x->dtype)) {
		if (kind == 2)
			predicted = x->ndim != 2 ? TG_ESHAPE
				  : index_status(v, idx, "idx", -1, true, k, bad, sizeof bad);
		else
			predicted = x->ndim < 1 ? TG_ESHAPE
				  : a < 0 ? TG_EARG
				  : index_status(v, idx, "idx", -1, false, k, bad, sizeof bad);
		if (predicted == TG_OK && kind == 2 && idx->ndim + 1 > TG_MAX_DIMS)
			predicted = TG_ESHAPE;
		if (predicted == TG_OK && kind == 2) {
			nd = idx->ndim + 1;
			memcpy(shape, idx->shape, (size_t)idx->ndim * sizeof *shape);
			shape[idx->ndim] = x->shape[1];
		} else if (predicted == TG_OK) {
			nd = x->ndim;
			memcpy(shape, x->shape, sizeof shape);
			shape[a] = (int64_t)idx->numel;
		}
	}
	double out = nd >= 0 ? (double)numel_of(nd, shape) : 0;
	if (!charge(v, 2 * made(out) + numel_d(v, x) + numel_d(v, idx)))
		return;
	expect e = expect_args(v, 1, &x);
	tg_tensor *t = kind == 0 ? tg_gather_rows(x, idx)
		     : kind == 1 ? tg_index_select(x, axis, idx)
		     : tg_embedding(x, idx);
	finish(v, names[kind], e, t, predicted, x ? x->dtype : TG_F32, nd, shape);
	check_bad_entry(v, names[kind], e == PLAIN ? predicted : -1, bad);
	if (t)
		check_select(names[kind], x, kind == 2 ? 0 : a, idx, t);
	put(v, dst, t);
}

/* Whether labels have the shape of x (C), (N,C) or (N,C,d1,...) without
 * its class axis (axis 1; 0 of a 1-D x), as the losses over classes want */
static bool labels_fit(const tg_tensor *x, const tg_tensor *labels)
{
	int a = x->ndim == 1 ? 0 : 1, m = 0;
	if (labels->ndim != x->ndim - 1)
		return false;
	for (int i = 0; i < x->ndim; i++)
		if (i != a && labels->shape[m++] != x->shape[i])
			return false;
	return true;
}

/* Labels of x's positions: the shape of labels_fit, entries from indices()
 * (an entry out of range now and then), i32 or i64. */
static tg_tensor *fitting_labels(vm *v, const tg_tensor *x, int64_t m, int64_t k)
{
	reader *r = &v->in;
	bool i64 = u8(r) & 1;
	int a = x->ndim == 1 ? 0 : 1, nd = 0;
	int64_t shape[TG_MAX_DIMS];
	for (int i = 0; i < x->ndim; i++)
		if (i != a)
			shape[nd++] = x->shape[i];
	if (!charge(v, (double)m))
		return NULL;
	int32_t *vals = indices(r, m, k);
	if (!vals)
		return NULL;
	int64_t *w = i64 ? malloc((size_t)m * sizeof *w) : NULL;
	for (int64_t i = 0; w && i < m; i++)
		w[i] = vals[i];
	tg_tensor *t = i64 ? (w ? tg_from_i64(v->ctx, nd, shape, w) : NULL)
			   : tg_from_i32(v->ctx, nd, shape, vals);
	free(w);
	free_indices(vals);
	return t;
}

/* tg_pick, tg_nll, tg_cross_entropy, tg_cross_entropy_i32 (a plain array
 * with its count) and tg_cross_entropy_backward: one label per row of an
 * (N,K) x; the losses also take (C) with a label of shape () and
 * (N,C,d1,...) with labels (N,d1,...) (labels_fit), here one label per
 * position (N the positions, K the classes). */
static void op_pick(vm *v)
{
	static const char *const names[] = {
		"tg_pick", "tg_nll", "tg_cross_entropy", "tg_cross_entropy_i32",
		"tg_cross_entropy_backward",
	};
	reader *r = &v->in;
	unsigned kind = u8(r) % 5, dst = u8(r);
	tg_tensor *x = get(v);
	tg_tensor *dout = kind == 4 ? get(v) : NULL;
	bool two = live(v, x) && x->ndim == 2;
	/* the losses over classes of a float x of another rank */
	bool classes = kind >= 1 && kind <= 3 && live(v, x) && !index_dtype(x->dtype) &&
		       x->ndim >= 1 && !two;
	int64_t N = two ? x->shape[0] : 3, K = two ? x->shape[1] : 3;
	if (classes) {
		K = x->shape[x->ndim == 1 ? 0 : 1];
		N = (int64_t)(x->numel / (size_t)K);
	}
	tg_tensor *labels = NULL;
	int32_t *raw = NULL;
	int64_t n = N; /* tg_cross_entropy_i32's count */
	if (classes && kind != 3 && u8(r) % 2) {
		if (N > MAX_ARRAY || !(labels = fitting_labels(v, x, N, K)))
			return;
	} else if (kind == 3) {
		unsigned w = u8(r) % 8;
		n = w == 5 ? N + 1 : w == 6 ? N - 1 : w == 7 ? 0 : N;
		raw = w == 4 ? NULL : indices(r, n > 0 ? n : 1, K);
		if (!raw && w != 4)
			return;
	} else {
		labels = index_arg(v, N, K);
		if (v->stop)
			return;
	}
	if (!charge(v, 3 * numel_d(v, x) + numel_d(v, labels) + (double)(raw ? N : 0))) {
		free_indices(raw);
		return;
	}
	int predicted = -1;
	char bad[128] = "";
	if (kind == 4) {
		tg_tensor *in[2] = { dout, x };
		if (live(v, x) && live(v, dout) && expect_args(v, 2, in) == PLAIN)
			predicted = dout->numel != 1 || !two ? TG_ESHAPE
				  : index_status(v, labels, "labels", N, false, K, bad, sizeof bad);
	} else if (classes && kind != 3) {
		predicted = index_status(v, labels, "labels", -1, true, K, bad, sizeof bad);
		if ((predicted == TG_OK || predicted == TG_EARG) && !labels_fit(x, labels))
			predicted = TG_ESHAPE;
	} else if (live(v, x) && !index_dtype(x->dtype)) {
		if (!two && !classes) {
			predicted = TG_ESHAPE;
		} else if (kind == 3) {
			predicted = !raw ? TG_ENULL : n != N ? TG_ESHAPE : TG_OK;
			for (int64_t i = 0; predicted == TG_OK && i < N; i++)
				if (raw[i] < 0 || raw[i] >= K) {
					predicted = TG_EARG;
					snprintf(bad, sizeof bad,
						 "labels[%lld] = %d is outside [0, %lld)",
						 (long long)i, (int)raw[i], (long long)K);
				}
		} else {
			const char *name = kind == 0 ? "idx" : "labels";
			predicted = index_status(v, labels, name, N, false, K, bad, sizeof bad);
		}
	}
	tg_tensor *in[2] = { x, dout };
	if (kind == 4) {
		in[0] = dout;
		in[1] = x;
	}
	expect e = expect_args(v, kind == 4 ? 2 : 1, in);
	tg_tensor *t;
	switch (kind) {
	case 0: t = tg_pick(x, labels); break;
	case 1: t = tg_nll(x, labels); break;
	case 2: t = tg_cross_entropy(x, labels); break;
	case 3: t = tg_cross_entropy_i32(x, raw, n); break;
	default: t = tg_cross_entropy_backward(dout, x, labels); break;
	}
	int64_t shape[2] = { N, K };
	finish(v, names[kind], e, t, predicted, x ? x->dtype : TG_F32,
	       kind == 0 ? 1 : kind == 4 ? 2 : 0, shape);
	check_bad_entry(v, names[kind], e == PLAIN ? predicted : -1, bad);
	if (t && two)
		check_losses(names[kind], (int)kind, x, labels, raw, dout, t);
	free_indices(raw);
	put(v, dst, t);
	if (t && (kind == 2 || kind == 3) && tg_item(t) == tg_item(t))
		require(tg_item(t) >= -1e-4 || isinf(tg_item(t)),
			"%s: negative loss %g", names[kind], tg_item(t));
}

/* tg_one_hot: labels of this context, or of another one, whose context the
 * result then belongs to. */
static void op_one_hot(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r);
	tg_dtype dt = dtype(r);
	int64_t n = counts[u8(r) % 10], k = dim(r);
	tg_tensor *labels = index_arg(v, n, k > 0 && k < INT32_MAX ? k : 4);
	if (v->stop)
		return;
	int64_t m = live(v, labels) ? (int64_t)labels->numel : n;
	int64_t shape[2] = { m, k };
	uint64_t numel = k > 0 ? numel_of(2, shape) : 0;
	if (!charge(v, made((double)numel) + numel_d(v, labels)))
		return;
	snapshot(v);
	bool foreign = labels && labels->ctx != v->ctx;
	tg_tensor *t = tg_one_hot(labels, dt, k);
	if (!labels || foreign) {
		/* no tensor of this context: nothing said here */
		require(tg_status_of(v->ctx) == v->before && !strcmp(tg_error(v->ctx), v->msg),
			"tg_one_hot with labels %p of another context changed this one's error: %s",
			(void *)labels, status_name(v));
		require(!t || (labels && tg_ctx_of(t) == v->ctx2),
			"tg_one_hot computed without labels");
		if (foreign) {
			/* the ctx2 labels are a (1) i32 zero */
			bool fits = !t || (tg_ndim(t) == 2 && tg_shape(t)[0] == 1 &&
					   tg_shape(t)[1] == k && tg_dtype_of(t) == dt);
			require(fits, "tg_one_hot in another context: a wrong tensor");
			tg_reset(v->ctx2);
			tg_clear_error(v->ctx2);
		}
		put(v, dst, NULL);
		return;
	}
	expect e = v->before == TG_OK ? PLAIN : NOTHING;
	char bad[128] = "";
	int predicted = !tg_dtype_is_float(dt) ? TG_EDTYPE
		      : k <= 0 ? TG_EARG
		      : index_status(v, labels, "labels", -1, false, k, bad, sizeof bad);
	if (predicted == TG_OK && !numel)
		predicted = TG_ESHAPE;
	t = finish(v, "tg_one_hot", e, t, predicted, dt, numel ? 2 : -1, shape);
	check_bad_entry(v, "tg_one_hot", e == PLAIN ? predicted : -1, bad);
	for (size_t p = 0; t && p < t->numel; p += stride_of(t->numel)) {
		size_t i = p / (size_t)k, j = p % (size_t)k;
		double want = (int64_t)j == index_at(labels, i);
		require(value_at(t, p) == want, "tg_one_hot: element (%zu,%zu) is %g, label %lld",
			i, j, value_at(t, p), (long long)index_at(labels, i));
	}
	put(v, dst, t);
}

/* ---- softmax ------------------------------------------------------------------------------ */

/* Rows of a finite softmax sum to 1. */
static void check_rows(const tg_tensor *x, const tg_tensor *y, bool log_space)
{
	size_t k = (size_t)x->shape[x->ndim - 1], rows = x->numel / k;
	for (size_t i = 0; i < x->numel; i++)
		if (!isfinite(x->dtype == TG_F64 ? ((double *)x->data)[i] : ((float *)x->data)[i]))
			return;
	for (size_t r = 0; r < rows && r < 64; r++) {
		double s = 0;
		for (size_t j = 0; j < k; j++) {
			size_t i = r * k + j;
			double p = y->dtype == TG_F64 ? ((double *)y->data)[i] : ((float *)y->data)[i];
			s += log_space ? exp(p) : p;
		}
		require(fabs(s - 1) < 1e-3, "%s: row %zu sums to %.17g",
			log_space ? "tg_log_softmax" : "tg_softmax", r, s);
	}
}

static void op_softmax(vm *v)
{
	reader *r = &v->in;
	bool lg = bit(r);
	unsigned dst = u8(r);
	tg_tensor *x = get(v);
	if (!charge(v, 3 * numel_d(v, x)))
		return;
	int predicted = live(v, x) ? (x->ndim >= 1 ? TG_OK : TG_ESHAPE) : -1;
	bool ok = predicted == TG_OK;
	expect e = expect_args(v, 1, &x);
	tg_tensor *t = lg ? tg_log_softmax(x) : tg_softmax(x);
	finish(v, lg ? "tg_log_softmax" : "tg_softmax", e, t, predicted, x ? x->dtype : TG_F32,
	       ok ? x->ndim : -1, ok ? x->shape : NULL);
	if (t)
		check_rows(x, t, lg);
	put(v, dst, t);
}

/* ---- backward ------------------------------------------------------------------------------- */

/* the refusal of a lost gradient: one a failed backward left partly
 * accumulated, or a TG_CREATE_GRAPH one tg_reset could not keep */
static bool lost_message(const vm *v)
{
	const char *e = tg_error(v->ctx);
	return strstr(e, "partly accumulated") || strstr(e, "was lost: tg_reset");
}

/* After a backward pass: every gradient has its tensor's shape and dtype. */
static void check_grads(vm *v)
{
	for (int i = 0; i < NSLOT; i++) {
		tg_tensor *t = v->s[i].t;
		if (!live(v, t) || !t->grad)
			continue;
		const tg_tensor *g = t->grad;
		require(tg_tensor_alive(g) && g->dtype == t->dtype && tg_same_shape(g, t),
			"the gradient of slot %d does not match its tensor", i);
	}
}

static void op_backward(vm *v)
{
	reader *r = &v->in;
	unsigned how = u8(r);
	tg_tensor *y = get(v);
	tg_tensor *dy = NULL;
	unsigned flags = how & 1 ? TG_CREATE_GRAPH : 0;
	if (how & 2)
		dy = get(v);
	else if ((how & 4) && live(v, y))
		dy = tg_ones(v->ctx, y->dtype, y->ndim, y->shape);
	if (!charge(v, 8 * (double)tg_arena_used(v->ctx) / 4 + 2 * numel_d(v, y)))
		return;
	/* what tg_backward_ex checks before walking the tape */
	tg_tensor *in[2] = { y, dy };
	expect e = expect_args(v, dy ? 2 : 1, in);
	int predicted = TG_OK;
	if (e == PLAIN) {
		if (!y->requires_grad)
			predicted = TG_EARG;
		else if (!dy && y->numel != 1)
			predicted = TG_ESHAPE;
		else if (dy && !tg_same_shape(y, dy))
			predicted = TG_ESHAPE;
	}
	/* a gradient an earlier failed backward left partly accumulated, on the
	 * part of the tape the walk would go over: refused until tg_zero_grad */
	bool lost = false;
	if (e == PLAIN && predicted == TG_OK) {
		lost = y->grad_lost;
		for (const tg_node *n = y->node; n && !lost; n = n->prev)
			for (int i = 0; i < n->nin; i++)
				lost |= n->in[i]->grad_lost && n->needs[i];
	}
	if (e == ALLNULL)
		e = NOTHING; /* tg_backward(NULL): -1, no context to report to */
	int rc = (how & 8) && !dy && !flags ? tg_backward(y) : tg_backward_ex(y, dy, flags);
	tg_status st = tg_status_of(v->ctx);
	if (e == NOTHING) {
		require(rc == -1 && st == v->before, "tg_backward ran with %s set",
			tg_status_name(v->before));
		return;
	}
	require((rc == 0) == (st == TG_OK), "tg_backward returned %d with %s", rc,
		tg_status_name(st));
	if (e != PLAIN) {
		check_call(v, "tg_backward", e, NULL, -1);
		return;
	}
	if (predicted != TG_OK) {
		require(st == (tg_status)predicted && strstr(tg_error(v->ctx), "tg_backward"),
			"tg_backward: expected %s, got %s \"%s\"", tg_status_name((tg_status)predicted),
			tg_status_name(st), tg_error(v->ctx));
		return;
	}
	if (lost) { /* or no memory for the upstream gradient of ones */
		require(st == TG_ENOMEM || (st == TG_EARG && lost_message(v)),
			"tg_backward over a lost gradient: %s \"%s\"", tg_status_name(st),
			tg_error(v->ctx));
		return;
	}
	/* The walk over a well-formed tape can only run out of memory, meet a
	 * NaN in anomaly mode, or find an input changed in place; a shape, dtype
	 * or argument error means a backward rule handed on a bad gradient. A
	 * custom op on the tape misbehaves on purpose. */
	if (!v->custom)
		require(st == TG_OK || st == TG_ENOMEM || st == TG_EANOMALY || st == TG_EVERSION,
			"tg_backward failed inside the walk: %s \"%s\"", tg_status_name(st),
			tg_error(v->ctx));
	if (st == TG_OK)
		check_grads(v);
}

/* tg_grad, tg_zero_grad, tg_zero_grads: not ops; they work while an error is
 * set but refuse a stale tensor. */
static void op_grad(vm *v)
{
	reader *r = &v->in;
	unsigned kind = u8(r) % 4, dst = u8(r);
	tg_tensor *x = get(v);
	snapshot(v);
	bool was_stale = stale(v, x);
	/* a gradient a failed backward left partly accumulated: tg_grad refuses it */
	bool lost = kind < 2 && live(v, x) && x->grad_lost;
	if (kind == 3) {
		tg_zero_grads(v->ctx);
		require(tg_status_of(v->ctx) == v->before, "tg_zero_grads changed the status");
		return;
	}
	if (kind == 2) {
		tg_zero_grad(x);
	} else {
		tg_tensor *g = tg_grad(x);
		require(!g || tg_tensor_alive(g), "tg_grad returned a dead gradient");
		if (g)
			require(tg_same_shape(g, x) && g->dtype == x->dtype,
				"tg_grad: the gradient's shape or dtype differs from the tensor's");
		if (kind == 0)
			put(v, dst, g);
	}
	tg_status st = tg_status_of(v->ctx);
	if (v->before != TG_OK)
		require(st == v->before, "the error changed under tg_grad/tg_zero_grad");
	else if (was_stale)
		require(st == TG_ESTALE, "tg_grad/tg_zero_grad of a stale tensor: %s",
			tg_status_name(st));
	else if (lost)
		require(st == TG_EARG && lost_message(v),
			"tg_grad of a lost gradient: %s", tg_status_name(st));
	else
		require(st == TG_OK, "tg_grad/tg_zero_grad failed: %s", tg_error(v->ctx));
}

/* ---- the context ------------------------------------------------------------------------------ */

/* The second context and its one tensor, made on first use. */
static bool second_ctx(vm *v)
{
	if (v->other && v->other_idx)
		return true;
	if (!v->ctx2)
		v->ctx2 = fuzz_ctx_new(7, &v->alloc2);
	if (!v->ctx2)
		return false;
	tg_set_arena_limit(v->ctx2, ARENA_LIMIT);
	v->other = tg_keep(tg_ones(v->ctx2, TG_F64, 1, (int64_t[]){ 1 }));
	v->other_idx = tg_keep(tg_labels(v->ctx2, 1, (const int32_t[]){ 0 }));
	tg_reset(v->ctx2);
	tg_clear_error(v->ctx2);
	return v->other && v->other_idx;
}

static void op_context(vm *v)
{
	reader *r = &v->in;
	unsigned kind = u8(r) % 8;
	switch (kind) {
	case 0:
		tg_reset(v->ctx);
		require(tg_arena_used(v->ctx) == 0, "tg_reset left %zu bytes", tg_arena_used(v->ctx));
		v->custom = false;
		break;
	case 1:
		tg_clear_error(v->ctx);
		require(tg_ok(v->ctx) && !tg_error(v->ctx)[0], "tg_clear_error left an error");
		break;
	case 2:
		tg_set_anomaly(v->ctx, bit(r));
		break;
	case 3: {
		bool on = bit(r);
		bool was = tg_grad_enabled(v->ctx);
		require(tg_set_grad_enabled(v->ctx, on) == was, "tg_set_grad_enabled: old value");
		require(tg_grad_enabled(v->ctx) == on, "tg_grad_enabled");
		break;
	}
	case 4: {
		/* one thread only: a second pool would slow every run */
		int n = (int)(u8(r) % 3) - 1;
		snapshot(v);
		tg_set_threads(v->ctx, n);
		if (v->before == TG_OK)
			require(n >= 1 ? tg_ok(v->ctx) : tg_status_of(v->ctx) == TG_EARG,
				"tg_set_threads(%d): %s", n, status_name(v));
		break;
	}
	case 5: {
		tg_seed(v->ctx, u8(r));
		double u = tg_random_uniform(v->ctx);
		require(u >= 0 && u < 1, "tg_random_uniform gave %g", u);
		require(isfinite(tg_random_normal(v->ctx)), "tg_random_normal");
		(void)tg_random_u64(v->ctx);
		break;
	}
	case 6:
		require(tg_arena_high_water(v->ctx) >= tg_arena_used(v->ctx), "high water");
		require(tg_arena_used(v->ctx) <= ARENA_LIMIT, "arena over its limit: %zu",
			tg_arena_used(v->ctx));
		require(tg_threads(v->ctx) == 1, "threads");
		for (int s = -1; s <= TG_EFORMAT + 1; s++)
			require(tg_status_name((tg_status)s)[0], "tg_status_name(%d)", s);
		break;
	default:
		/* tensors of two contexts in one op */
		if (!second_ctx(v))
			return;
		snapshot(v);
		{
			tg_tensor *x = get(v);
			bool first = bit(r);
			tg_tensor *t = first ? tg_add(x, v->other) : tg_add(v->other, x);
			require(!t || !x, "tg_add over two contexts computed");
			if (v->before == TG_OK && live(v, x) && first)
				require(tg_status_of(v->ctx) == TG_ECTX, "two contexts: %s", status_name(v));
			if (v->before == TG_OK && live(v, x) && !first)
				require(tg_status_of(v->ctx2) == TG_ECTX && tg_ok(v->ctx),
					"two contexts, second first: %s",
					tg_status_name(tg_status_of(v->ctx2)));
			if (v->before == TG_OK && stale(v, x))
				require(tg_status_of(v->ctx) == TG_ESTALE, "two contexts, stale: %s",
					status_name(v));
			tg_clear_error(v->ctx2);
		}
		break;
	}
}

/* ---- accessors --------------------------------------------------------------------------- */

static void op_access(vm *v)
{
	reader *r = &v->in;
	unsigned kind = u8(r) % 10;
	tg_tensor *x = get(v);
	snapshot(v);
	bool was_stale = stale(v, x), ok = live(v, x);
	int64_t i = (int64_t)(u16(r) % 70) - 5;
	bool reported = true; /* the call reports a stale tensor */
	switch (kind) {
	case 0: {
		double d = tg_item(x);
		if (ok && x->numel != 1 && v->before == TG_OK)
			require(tg_status_of(v->ctx) == TG_ESHAPE && isnan(d), "tg_item of many");
		if (ok && x->numel == 1 && index_dtype(x->dtype))
			require(d == (double)index_at(x, 0), "tg_item of an index tensor: %g", d);
		break;
	}
	case 1: {
		double d = tg_get(x, (size_t)i);
		if (ok && (i < 0 || (size_t)i >= x->numel) && v->before == TG_OK)
			require(tg_status_of(v->ctx) == TG_EARG && isnan(d), "tg_get out of range");
		if (ok && i >= 0 && (size_t)i < x->numel && index_dtype(x->dtype))
			require(d == (double)index_at(x, (size_t)i),
				"tg_get(%lld) of an index tensor: %g", (long long)i, d);
		break;
	}
	case 2: {
		int64_t d = tg_dim(x, (int)i % 7);
		if (ok && tg_ok(v->ctx))
			require(d >= 1, "tg_dim gave %lld", (long long)d);
		break;
	}
	case 3: {
		size_t n = (size_t)(u16(r) % 300);
		double *out = bit(r) ? NULL : malloc((n ? n : 1) * sizeof *out);
		int rc = tg_copy_to_f64(x, out, n);
		if (ok && v->before == TG_OK)
			require((rc == 0) == (out && n >= x->numel) && (rc == 0) == tg_ok(v->ctx),
				"tg_copy_to_f64: rc %d", rc);
		for (size_t k = 0; rc == 0 && ok && index_dtype(x->dtype) && k < x->numel; k++)
			require(out[k] == (double)index_at(x, k),
				"tg_copy_to_f64 of an index tensor: [%zu] = %g", k, out[k]);
		free(out);
		break;
	}
	case 4: {
		size_t n = (size_t)(u8(r) % 100);
		char *buf = malloc(n ? n : 1);
		char *s = tg_shape_str(x, n ? buf : NULL, n);
		if (n && buf)
			require(s == buf && strlen(buf) < n, "tg_shape_str overran %zu bytes", n);
		free(buf);
		reported = false;
		break;
	}
	case 5: {
		/* an in-place change: a later backward through x must report it */
		void *d = tg_data_mut(x);
		if (d && x->numel) {
			size_t at = (size_t)(u16(r)) % x->numel;
			if (index_dtype(x->dtype)) {
				/* a label changed after the tensor was made: checked when used */
				int64_t val = int_value(r);
				if (x->dtype == TG_I64)
					((int64_t *)d)[at] = val;
				else
					((int32_t *)d)[at] = (int32_t)(val % ((int64_t)1 << 31));
				break;
			}
			double val = value(r);
			if (x->dtype == TG_F64)
				((double *)d)[at] = val;
			else
				((float *)d)[at] = (float)val;
		}
		break;
	}
	case 6: {
		tg_tensor *y = get(v);
		if (!charge(v, numel_d(v, x)))
			return;
		tg_tensor *in[2] = { x, y };
		expect e = expect_begin(v, 2, in, false); /* index tensors of one dtype too */
		int rc = tg_assign(x, y);
		int predicted = live(v, x) && live(v, y) ? (tg_same_shape(x, y) ? TG_OK : TG_ESHAPE) : -1;
		check_call(v, "tg_assign", e, rc == 0 ? x : NULL, predicted);
		return;
	}
	case 7: {
		char name[24];
		size_t n = u8(r) % sizeof name;
		for (size_t k = 0; k < n; k++)
			name[k] = (char)(u8(r) | 1);
		name[n] = 0;
		bool null = bit(r);
		tg_tensor *t = tg_set_name(x, null ? NULL : name);
		if (t)
			/* NULL or "" clears the name */
			require(null || !n ? !tg_name(t) : !strcmp(tg_name(t), name),
				"tg_set_name");
		break;
	}
	case 8: {
		/* the graph as DOT, and the node accessors */
		int rc = tg_write_dot(x, bit(r) ? v->devnull : NULL);
		if (ok && v->before == TG_OK)
			require((rc == 0) == tg_ok(v->ctx), "tg_write_dot: rc %d, %s", rc,
				status_name(v));
		const tg_node *n = tg_producer(x);
		if (n) {
			require(tg_node_output(n) == x, "tg_node_output");
			require(tg_node_op(n) && tg_node_op(n)->name, "tg_node_op");
			require(!tg_node_input(n, -1) && !tg_node_input(n, TG_MAX_INPUTS),
				"tg_node_input out of range");
			tg_status was = tg_status_of(v->ctx);
			require(isnan(tg_node_attr(n, -1)) && !tg_node_needs_grad(n, 9),
				"node accessors out of range");
			if (was == TG_OK)
				require(tg_status_of(v->ctx) == TG_EARG,
					"tg_node_attr out of range reported %s", status_name(v));
		}
		break;
	}
	default:
		/* the plain accessors never report: -1, 0 or NULL for a stale tensor */
		reported = false;
		if (!ok) {
			require(tg_ndim(x) == -1 && tg_numel(x) == 0 && !tg_shape(x) && !tg_ctx_of(x) &&
					!tg_name(x) && !tg_requires_grad(x) && !tg_is_param(x),
				"accessors of a dead tensor");
		} else {
			require(tg_ndim(x) == x->ndim && tg_numel(x) == x->numel &&
					tg_ctx_of(x) == v->ctx && tg_data(x) == x->data,
				"accessors of a live tensor");
		}
		break;
	}
	tg_status st = tg_status_of(v->ctx);
	if (v->before != TG_OK)
		require(st == v->before, "an accessor changed the first error");
	else if (was_stale && reported)
		require(st == TG_ESTALE, "accessor %u on a stale tensor: %s", kind,
			tg_status_name(st));
	else if (was_stale || !x)
		require(st == TG_OK, "accessor %u on a dead or NULL tensor reported %s", kind,
			tg_status_name(st));
}

/* ---- a custom op that misbehaves on purpose ------------------------------------------- */
/* attr 0 picks what its backward rule hands on: the upstream gradient (in the
 * output's shape, which may not fit the input), twice it, a gradient of the
 * other dtype, of a wrong shape, NULL, or to an input that does not exist. */

static void custom_backward(tg_node *n, tg_tensor *dout)
{
	double a = tg_node_attr(n, 0);
	int mode = isfinite(a) && a >= 0 && a < 8 ? (int)a : 0;
	tg_tensor *x = tg_node_input(n, 0);
	tg_ctx *ctx = tg_ctx_of(dout);
	switch (mode) {
	case 1:
		tg_node_grad(n, 0, tg_mul_scalar(dout, 2));
		break;
	case 2:
		tg_node_grad(n, 0, tg_zeros(ctx, x && x->dtype == TG_F64 ? TG_F32 : TG_F64, 0, NULL));
		break;
	case 3:
		tg_node_grad(n, 0, tg_ones(ctx, dout->dtype, 1, (int64_t[]){ 3 }));
		break;
	case 4:
		tg_node_grad(n, 0, NULL);
		break;
	case 5:
		tg_node_grad(n, -1, dout);
		tg_node_grad(n, TG_MAX_INPUTS, dout);
		break;
	default:
		for (int i = 0; i < TG_MAX_INPUTS; i++)
			tg_node_grad(n, i, dout);
		break;
	}
}

static const tg_op custom_op = { .name = "fuzz_custom", .backward = custom_backward };
static const tg_op no_rule_op = { .name = "fuzz_no_rule", .backward = NULL };

static void op_custom(vm *v)
{
	reader *r = &v->in;
	unsigned dst = u8(r), how = u8(r);
	int nin = (int)(u8(r) % 7) - 1;
	tg_tensor *in[6];
	for (int i = 0; i < 6; i++)
		in[i] = get(v);
	tg_tensor *x = get(v);
	double attrs[6];
	for (int i = 0; i < 6; i++)
		attrs[i] = (double)(u8(r) % 9);
	int nattrs = (int)(u8(r) % 7) - 1;
	if (!charge(v, 2 * numel_d(v, x)))
		return;
	/* the output: a fresh tensor computed with grad mode off */
	tg_tensor *out = NULL;
	if (live(v, x)) {
		bool was = tg_set_grad_enabled(v->ctx, false);
		out = (how & 16) ? x : tg_mul_scalar(x, 2);
		tg_set_grad_enabled(v->ctx, was);
	}
	const tg_op *op = (how & 3) == 3 ? NULL : (how & 3) == 2 ? &no_rule_op : &custom_op;
	snapshot(v);
	tg_tensor *t = tg_record(op, out, nin, (how & 4) ? NULL : in, (how & 8) ? NULL : attrs,
				 nattrs);
	require(!t || t == out, "tg_record returned another tensor");
	if (t)
		require(tg_ok(v->ctx), "tg_record: a result with an error set");
	else if (v->before == TG_OK && live(v, out) && nin >= 0 && nin <= TG_MAX_INPUTS)
		require(!tg_ok(v->ctx) && tg_error(v->ctx)[0], "tg_record: NULL and no error");
	if (t && tg_producer(t))
		v->custom = true;
	put(v, dst, t);
}

/* ---- gradient checks ---------------------------------------------------------------------- */

typedef struct fn_user {
	int kind;
	int calls;
	tg_ctx *ctx2;
	int32_t lab[8]; /* labels for the rows of the first input */
} fn_user;

enum { SMOOTH_KINDS = 21, FN_KINDS = 25, OTHER_CTX_KIND = 22 };

/* Labels for a's rows (at most 8: more make a count that does not fit),
 * made in a's context. */
static tg_tensor *row_labels(const tg_tensor *a, const fn_user *u)
{
	int64_t rows = tg_ndim(a) >= 1 ? tg_shape(a)[0] : 1;
	return tg_labels(tg_ctx_of(a), rows < 8 ? rows : 8, u->lab);
}

/* Indices along a's axis: the last entry, the first, the last again, the
 * first (repeated indices accumulate in the gradient), in shape (nd, shape). */
static tg_tensor *ends(const tg_tensor *a, int axis, int nd, const int64_t *shape)
{
	int n = tg_ndim(a);
	int64_t last = n >= 1 ? tg_shape(a)[axis < 0 ? n + axis : axis] - 1 : 0;
	const int32_t v[4] = { (int32_t)last, 0, (int32_t)last, 0 };
	return tg_from_i32(tg_ctx_of(a), nd, shape, v);
}

/* f for tg_gradcheck: smooth functions of the inputs (kind < SMOOTH_KINDS),
 * and some that break the rules (NULL without an error, another context, a
 * shape that changes). */
static tg_tensor *fn(tg_tensor *const *in, void *user)
{
	fn_user *u = user;
	tg_tensor *a = in[0], *b = in[1] ? in[1] : in[0];
	u->calls++;
	switch (u->kind) {
	case 0: return tg_add(a, b);
	case 1: return tg_mul(a, b);
	case 2: return tg_sub(tg_mul(a, a), b);
	case 3: return tg_matmul_t(a, false, b, true);
	case 4: return tg_sum_axis(tg_mul(a, b), 0, false);
	case 5: return tg_mean_axis(a, -1, true);
	case 6: return tg_softmax(a);
	case 7: return tg_log_softmax(tg_mul(a, b));
	case 8: return tg_tanh(tg_add(a, b));
	case 9: return tg_sigmoid(tg_mul(a, b));
	case 10: return tg_exp(a);
	case 11: return tg_transpose(tg_reshape(a, 2, (int64_t[]){ 1, -1 }));
	case 12: return tg_gather_rows(a, tg_labels(tg_ctx_of(a), 3, (const int32_t[]){ 0, 0, 0 }));
	case 13: return tg_pick(a, row_labels(a, u));
	case 14: return tg_cross_entropy(tg_mul(a, b), row_labels(a, u));
	case 15: return tg_sigmoid_backward(a, tg_sigmoid(b));
	case 16: return tg_mul(tg_index_select(a, -1, ends(a, -1, 1, (int64_t[]){ 3 })), tg_sum(b));
	case 17: return tg_mul(tg_embedding(a, ends(a, 0, 2, (int64_t[]){ 2, 2 })), tg_sum(b));
	case 18: return tg_nll(tg_log_softmax(tg_mul(a, b)), row_labels(a, u));
	case 19: {
		int64_t rows = tg_ndim(a) >= 1 ? tg_shape(a)[0] : 1;
		return tg_cross_entropy_i32(tg_mul(a, b), u->lab, rows < 8 ? rows : 8);
	}
	case 20: return tg_cross_entropy_backward(tg_mean(b), tg_mul(a, a), row_labels(a, u));
	case 21: return NULL;
	case OTHER_CTX_KIND: return tg_scalar(u->ctx2, TG_F64, 1);
	case 23: return u->calls > 2 ? tg_sum(a) : a;
	default: return tg_scalar(tg_ctx_of(a), TG_F32, 1);
	}
}

/* Smooth kinds with small inputs must pass the check tightly: this is where a
 * backward rule that mishandles broadcasting shows up. */
static void op_gradcheck(vm *v)
{
	reader *r = &v->in;
	unsigned how = u8(r);
	fn_user u = { .kind = (int)(u8(r) % FN_KINDS) };
	if (u.kind == OTHER_CTX_KIND) {
		if (!second_ctx(v))
			return;
		u.ctx2 = v->ctx2;
	}
	bool second = how & 1;
	int nin = how & 2 ? 1 : 2;
	tg_tensor *in[TG_MAX_INPUTS] = { NULL };
	double eps = 1e-6;
	bool strict = !(how & 4);
	if (strict) {
		/* fresh f64 inputs with values in [-2, 2] */
		for (int i = 0; i < nin; i++) {
			int64_t shape[8];
			int nd = (int)(u8(r) % 3);
			for (int k = 0; k < nd; k++)
				shape[k] = 1 + (int64_t)(u8(r) % 3);
			double vals[9];
			for (int k = 0; k < 9; k++)
				vals[k] = ((double)(u8(r) % 33) - 16) / 8.0;
			in[i] = tg_from_f64(v->ctx, TG_F64, nd, shape, vals);
		}
		/* labels for pick and cross_entropy: row i gets lab[i] */
		for (int k = 0; k < 8; k++)
			u.lab[k] = in[0] && in[0]->ndim == 2 ? (int32_t)(u8(r) % (unsigned)in[0]->shape[1]) : 0;
	} else {
		/* anything from the slots, any eps, any count */
		static const double eps_of[] = { 1e-6, 0, -1, NAN, INFINITY, 1e-3 };
		eps = eps_of[u8(r) % 6];
		nin = (int)(u8(r) % 6) - 1;
		for (int i = 0; i < TG_MAX_INPUTS; i++)
			in[i] = get(v);
		for (int k = 0; k < 8; k++)
			u.lab[k] = 0;
	}
	double cost = 0;
	for (int i = 0; i < TG_MAX_INPUTS; i++)
		cost += numel_d(v, in[i]);
	if (cost > 24 || !charge(v, cost * cost * 64))
		return;
	snapshot(v);
	tg_gradcheck_result res;
	bool null_res = !strict && (how & 8);
	tg_gradcheck_opts o = TG_GRADCHECK_DEFAULTS;
	o.eps = eps;
	const tg_gradcheck_opts *opts = eps == 1e-6 && (how & 16) ? NULL : &o;
	int rc = second ? tg_gradcheck2(v->ctx, fn, &u, nin, in, opts, null_res ? NULL : &res)
			: tg_gradcheck(v->ctx, fn, &u, nin, in, opts, null_res ? NULL : &res);
	tg_status st = tg_status_of(v->ctx);
	if (v->before != TG_OK) {
		require(rc == -1 && st == v->before, "tg_gradcheck ran with an error set");
		return;
	}
	require((rc == -1) == (st != TG_OK) && rc >= -1 && rc <= 1, "tg_gradcheck: rc %d with %s",
		rc, tg_status_name(st));
	if (strict && rc >= 0 && u.kind < SMOOTH_KINDS) {
		double tol = second ? 1e-4 : 1e-6;
		require(rc == 0 && res.worst_rel < tol,
			"%s of kind %d: worst relative error %.3g (abs %.3g), shapes %s %s",
			second ? "tg_gradcheck2" : "tg_gradcheck", u.kind, res.worst_rel,
			res.worst_abs,
			in[0] ? tg_shape_fmt(in[0]->ndim, in[0]->shape, (char[TG_SHAPE_STR]){ 0 }) : "-",
			in[1] ? tg_shape_fmt(in[1]->ndim, in[1]->shape, (char[TG_SHAPE_STR]){ 0 }) : "-");
	}
	if (strict && rc < 0 && u.kind < SMOOTH_KINDS)
		require(st == TG_ESHAPE || st == TG_EARG || st == TG_ENOMEM,
			"tg_gradcheck of kind %d: %s \"%s\"", u.kind, tg_status_name(st),
			tg_error(v->ctx));
}

/* ---- the run ------------------------------------------------------------------------------------- */

typedef void (*insn)(vm *);

/* The opcode is the instruction's index here (modulo the count). */
static const struct {
	insn fn;
	const char *name;
} program_ops[] = {
	{ op_leaf, "leaf" }, { op_leaf, "leaf" }, { op_leaf, "leaf" },
	{ op_lifetime, "lifetime" }, { op_binary, "binary" }, { op_binary, "binary" },
	{ op_scalar, "scalar" }, { op_unary, "unary" }, { op_reduce, "reduce" },
	{ op_sum_to_expand, "sum_to/expand" }, { op_matmul, "matmul" },
	{ op_transpose, "transpose" }, { op_reshape, "reshape" }, { op_gather, "gather" },
	{ op_pick, "pick/cross_entropy" }, { op_one_hot, "one_hot" },
	{ op_softmax, "softmax" }, { op_backward, "backward" }, { op_backward, "backward" },
	{ op_grad, "grad" }, { op_context, "context" }, { op_access, "access" },
	{ op_custom, "custom" }, { op_gradcheck, "gradcheck" },
};

/* TG_FUZZ_TRACE=1: each instruction and the status after it, on stderr. */
static bool trace;

static FILE *devnull;

static void print_stats(void)
{
	fprintf(stderr, "fuzz_expr: %lu uses of tensors kept past tg_reset, %lu of them aliased "
			"by a newer tensor in the same header slot\n",
		stale_uses, aliased);
	for (int i = 0; i < MAX_FNS && call_stats[i].who; i++) {
		fprintf(stderr, "  %-32s", call_stats[i].who);
		for (int s = 0; s < NSTATUS; s++)
			if (call_stats[i].n[s])
				fprintf(stderr, " %s %lu", tg_status_name((tg_status)s),
					call_stats[i].n[s]);
		fputc('\n', stderr);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	devnull = fopen("/dev/null", "w");
	if (getenv("TG_FUZZ_STATS"))
		atexit(print_stats);
	trace = getenv("TG_FUZZ_TRACE") != NULL;
	strict_stale = getenv("TG_FUZZ_STRICT_STALE") != NULL;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vm v = { .in = { data, data + size }, .devnull = devnull };
	unsigned seed = u8(&v.in), mode = u8(&v.in);
	fuzz_alloc al = { .fail_at = mode & 0x80 ? 1 + u16(&v.in) % 600 : 0,
			  .sticky = mode & 0x40 };
	v.ctx = fuzz_ctx_new(seed, &al);
	if (!v.ctx)
		return 0;
	tg_set_arena_limit(v.ctx, ARENA_LIMIT);
	tg_set_anomaly(v.ctx, mode & 2);
	const size_t nops = sizeof program_ops / sizeof program_ops[0];
	for (int i = 0; i < MAX_INSNS && !at_end(&v.in) && !v.stop; i++) {
		unsigned op = u8(&v.in) % nops;
		program_ops[op].fn(&v);
		tg_status st = tg_status_of(v.ctx);
		if (trace) {
			fprintf(stderr, "%3d %-18s %s %s\n", i, program_ops[op].name,
				tg_status_name(st), tg_error(v.ctx));
			for (int k = 0; k < NSLOT; k++) {
				char buf[TG_SHAPE_STR];
				tg_tensor *t = v.s[k].t;
				if (t)
					fprintf(stderr, "      slot %d: %s %s%s%s\n", k,
						tg_dtype_name(t->dtype), tg_shape_fmt(t->ndim, t->shape, buf),
						stale(&v, t) ? " stale" : "",
						t->persistent ? " ctx" : "");
			}
		}
		require(st == TG_OK ? !tg_error(v.ctx)[0] : tg_error(v.ctx)[0] != 0,
			"status %s with message \"%s\"", tg_status_name(st), tg_error(v.ctx));
	}
	tg_ctx_free(v.ctx2);
	tg_ctx_free(v.ctx);
	return 0;
}
