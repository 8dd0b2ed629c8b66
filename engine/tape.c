/*
 * tape.c - the record of one forward pass, and its reverse walk.
 *
 * Ops check their inputs with tg_op_begin and append a node with tg_op_end
 * as they run; tg_backward walks the nodes last to first and calls each
 * node's backward rule, which hands gradients to the inputs through
 * tg_node_grad. Call order is a topological order, so there is no graph
 * search. Nodes live in the step arena and die at tg_reset.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- checking arguments ----------------------------------------------------- */

/* A handle whose header reads as zeros: stale when its address is in a
 * context's header range (its page was given back). */
static TG_SLOW void check_released(const char *who, const tg_tensor *t)
{
	tg_ctx *ctx = tg_arena_owner(t);
	if (ctx)
		tg_fail(ctx, TG_ESTALE,
			"%s: tensor was freed by tg_reset (made in step %llu or earlier, now step "
			"%llu; its header's memory was given back)",
			who, (unsigned long long)(ctx->gen > 2 ? ctx->gen - 2 : 1),
			(unsigned long long)ctx->gen);
}

tg_ctx *tg_tensor_check(const char *who, const tg_tensor *t)
{
	if (!t)
		return NULL;
	if (t->magic != TG_TENSOR_MAGIC) {
		check_released(who, t);
		return NULL;
	}
	if (!t->persistent && t->gen != t->ctx->gen) {
		char buf[TG_SHAPE_STR];
		tg_fail(t->ctx, TG_ESTALE,
			"%s: tensor %s%s%s was freed by tg_reset (made in step %llu, now step %llu)",
			who, tg_shape_fmt(t->ndim, t->shape, buf), t->name ? " " : "",
			t->name ? t->name : "", (unsigned long long)t->gen,
			(unsigned long long)t->ctx->gen);
		return NULL;
	}
	return t->ctx;
}

TG_SLOW void tg_stale_elsewhere(tg_ctx *ctx, const char *who, const tg_tensor *t,
				const char *fmt, ...)
{
	tg_ctx *owner = t->magic == TG_TENSOR_MAGIC ? t->ctx : tg_arena_owner(t);
	if (!ctx || owner == ctx || ctx->status != TG_OK)
		return;
	char what[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (owner)
		tg_fail(ctx, TG_ECTX, "%s: %s belongs to another context, whose tg_reset freed it",
			who, what);
	else
		tg_fail(ctx, TG_ESTALE, "%s: %s was freed by tg_reset", who, what);
}

tg_ctx *tg_first_live_ctx(int nin, tg_tensor *const *in)
{
	for (int i = 0; i < nin; i++) {
		const tg_tensor *t = in[i];
		if (t && t->magic == TG_TENSOR_MAGIC && (t->persistent || t->gen == t->ctx->gen))
			return t->ctx;
	}
	return NULL;
}

/* tg_op_begin once some check has failed: finds the first failure in the
 * order the checks are documented and records it. */
static TG_SLOW tg_ctx *op_begin_failed(const char *who, int nin, tg_tensor *const *in,
					     bool any_dtype)
{
	tg_ctx *ctx = NULL;
	int null_at = -1;
	for (int i = 0; i < nin; i++) {
		if (!in[i]) {
			if (null_at < 0)
				null_at = i;
			continue;
		}
		tg_ctx *c = tg_tensor_check(who, in[i]);
		if (!c) {
			tg_stale_elsewhere(tg_first_live_ctx(nin, in), who, in[i], "argument %d", i);
			return NULL;
		}
		if (!ctx)
			ctx = c;
		else if (c != ctx)
			return tg_fail(ctx, TG_ECTX,
				       "%s: argument %d belongs to another context than argument 0",
				       who, i);
	}
	if (!ctx)
		return NULL;
	if (ctx->status != TG_OK)
		return NULL;
	if (null_at >= 0)
		return tg_fail(ctx, TG_ENULL, "%s: argument %d is NULL", who, null_at);
	for (int i = 0; i < nin && !any_dtype; i++) {
		if (!tg_dtype_is_float(in[i]->dtype)) {
			char a[TG_SHAPE_STR];
			return tg_fail(ctx, TG_EDTYPE,
				       "%s: argument %d is an index tensor (%s %s); the op takes "
				       "f32 or f64 values",
				       who, i, tg_dtype_name(in[i]->dtype),
				       tg_shape_fmt(in[i]->ndim, in[i]->shape, a));
		}
	}
	for (int i = 1; i < nin; i++) {
		if (in[i]->dtype != in[0]->dtype) {
			char a[TG_SHAPE_STR], b[TG_SHAPE_STR];
			return tg_fail(ctx, TG_EDTYPE,
				       "%s: dtypes differ: argument 0 is %s %s, argument %d is %s %s",
				       who, tg_dtype_name(in[0]->dtype),
				       tg_shape_fmt(in[0]->ndim, in[0]->shape, a), i,
				       tg_dtype_name(in[i]->dtype),
				       tg_shape_fmt(in[i]->ndim, in[i]->shape, b));
		}
	}
	return ctx;
}

/* Every op starts here, so the checks are one pass that only branches away
 * when one fails. */
tg_ctx *tg_op_begin(const char *who, int nin, tg_tensor *const *in)
{
	const tg_tensor *t0 = nin > 0 ? in[0] : NULL;
	if (!t0 || t0->magic != TG_TENSOR_MAGIC)
		return op_begin_failed(who, nin, in, false);
	tg_ctx *ctx = t0->ctx;
	uint64_t gen = ctx->gen;
	if (ctx->status != TG_OK || (!t0->persistent && t0->gen != gen) ||
	    !tg_dtype_is_float(t0->dtype))
		return op_begin_failed(who, nin, in, false);
	for (int i = 1; i < nin; i++) {
		const tg_tensor *t = in[i];
		if (!t || t->magic != TG_TENSOR_MAGIC || t->ctx != ctx ||
		    (!t->persistent && t->gen != gen) || t->dtype != t0->dtype)
			return op_begin_failed(who, nin, in, false);
	}
	return ctx;
}

tg_ctx *tg_op_begin_any(const char *who, int nin, tg_tensor *const *in)
{
	tg_tensor *first = nin > 0 ? in[0] : NULL;
	if (first && first->magic == TG_TENSOR_MAGIC && tg_dtype_is_float(first->dtype))
		return tg_op_begin(who, nin, in);
	return op_begin_failed(who, nin, in, true);
}

/* ---- anomaly checks ------------------------------------------------------------ */

/* "nan" or "inf" for the first non-finite value of t, NULL if all finite. */
const char *tg_nonfinite(const tg_tensor *t)
{
	for (size_t i = 0; i < t->numel; i++) {
		double v = t->dtype == TG_F64 ? ((const double *)t->data)[i]
					      : ((const float *)t->data)[i];
		if (isnan(v))
			return "nan";
		if (isinf(v))
			return v > 0 ? "inf" : "-inf";
	}
	return NULL;
}

/* ---- recording ------------------------------------------------------------------ */

const void *tg_save_aux(tg_ctx *ctx, const void *src, size_t n)
{
	void *p = tg_arena_alloc(ctx, n);
	if (p)
		memcpy(p, src, n);
	return p;
}

/* Whether out = op(in...) goes on the tape. */
static inline bool records(const tg_ctx *ctx, int nin, tg_tensor *const *in)
{
	if (!ctx->grad_enabled)
		return false;
	bool need = false;
	for (int i = 0; i < nin; i++)
		need = need || in[i]->requires_grad;
	return need;
}

bool tg_op_records(const tg_ctx *ctx, int nin, tg_tensor *const *in)
{
	return records(ctx, nin, in);
}

/* Fills the node n for out = op(in...) and puts it on the tape. Field by
 * field: the entries of in, in_version and needs past nin are never read;
 * tg_node_attr reads no attribute past nattrs. */
static inline tg_tensor *push(tg_node *n, const tg_op *op, tg_tensor *out, int nin,
			      tg_tensor *const *in, const double *attrs, int nattrs,
			      const void *aux)
{
	tg_ctx *ctx = out->ctx;
	n->op = op;
	n->prev = ctx->tape;
	n->index = ctx->tape_len++;
	n->nin = nin;
	for (int i = 0; i < nin; i++) {
		n->in[i] = in[i];
		n->in_version[i] = in[i]->version;
		n->needs[i] = in[i]->requires_grad;
		n->in_grad[i] = NULL;
		in[i]->consumed = true;
		if (in[i]->use_gen != ctx->gen) {
			in[i]->use_gen = ctx->gen;
			in[i]->first_use = n->index;
		}
	}
	n->out = out;
	n->out_version = out->version;
	n->nattr = nattrs;
	for (int i = 0; i < TG_MAX_ATTRS; i++)
		n->attr[i] = i < nattrs ? attrs[i] : 0;
	n->aux = aux;
	n->walk_grad = NULL;
	n->walk_next = NULL;
	n->walk_reach = 0;
	n->walk_live = 0;
	ctx->tape = n;
	out->node = n;
	out->requires_grad = true;
	return out;
}

/* push with a node from tg_arena_alloc's slow path. */
static TG_SLOW tg_tensor *push_slow(const tg_op *op, tg_tensor *out, int nin,
				    tg_tensor *const *in, const double *attrs, int nattrs,
				    const void *aux)
{
	tg_node *n = tg_arena_alloc(out->ctx, sizeof *n);
	return n ? push(n, op, out, nin, in, attrs, nattrs, aux) : NULL;
}

/* tg_op_end in anomaly mode: out is checked first. */
static TG_SLOW tg_tensor *op_end_checked(const tg_op *op, tg_tensor *out, int nin,
					 tg_tensor *const *in, const double *attrs,
					 int nattrs, const void *aux)
{
	tg_ctx *ctx = out->ctx;
	const char *bad = tg_nonfinite(out);
	if (bad) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_EANOMALY, "anomaly: %s produced %s in its output %s%s",
			       op->name, bad, tg_shape_fmt(out->ndim, out->shape, buf),
			       ctx->in_backward ? " (during backward)" : "");
	}
	if (!records(ctx, nin, in))
		return out;
	return push_slow(op, out, nin, in, attrs, nattrs, aux);
}

/* Every op ends here: the common path calls nothing, the others are tail
 * calls. */
tg_tensor *tg_op_end(const tg_op *op, tg_tensor *out, int nin, tg_tensor *const *in,
		     const double *attrs, int nattrs, const void *aux)
{
	if (!out)
		return NULL;
	tg_ctx *ctx = out->ctx;
	if (ctx->anomaly)
		return op_end_checked(op, out, nin, in, attrs, nattrs, aux);
	if (!records(ctx, nin, in))
		return out;
	tg_node *n = tg_arena_alloc_fast(ctx, sizeof *n);
	if (!n)
		return push_slow(op, out, nin, in, attrs, nattrs, aux);
	return push(n, op, out, nin, in, attrs, nattrs, aux);
}

void tg_tape_cut(tg_ctx *ctx, tg_node *to, bool same_step)
{
	if (!same_step) {
		ctx->tape = NULL;
		return;
	}
	for (tg_node *n = ctx->tape; n && n != to; n = n->prev) {
		if (n->out->node == n) {
			n->out->node = NULL;
			n->out->requires_grad = false;
		}
	}
	ctx->tape = to;
}

/* tg_op_begin for tg_record: out and in[0..nin) are all[0] and all[1..nin],
 * named the output and input i in errors rather than arguments 0 to nin. */
static tg_ctx *record_begin(const char *who, int nin, tg_tensor *const *all)
{
	tg_ctx *ctx = NULL;
	for (int i = 0; i <= nin && !ctx; i++) {
		if (all[i] && !(ctx = tg_tensor_check(who, all[i]))) {
			/* stale, reported */
			if (i == 0)
				tg_stale_elsewhere(tg_first_live_ctx(nin + 1, all), who, all[0],
						   "the output");
			else
				tg_stale_elsewhere(tg_first_live_ctx(nin + 1, all), who, all[i],
						   "input %d", i - 1);
			return NULL;
		}
	}
	if (!ctx || ctx->status != TG_OK)
		return NULL;
	char a[TG_SHAPE_STR], b[TG_SHAPE_STR], what[32];
	const tg_tensor *out = all[0];
	if (!out)
		return tg_fail(ctx, TG_ENULL, "tg_record: %s: the output is NULL", who);
	for (int i = 1; i <= nin; i++) {
		const tg_tensor *x = all[i];
		if (!x)
			return tg_fail(ctx, TG_ENULL, "tg_record: %s: input %d is NULL", who, i - 1);
		if (!tg_tensor_check(who, x)) {
			tg_stale_elsewhere(ctx, who, x, "input %d", i - 1);
			return NULL;
		}
		if (x->ctx != ctx)
			return tg_fail(ctx, TG_ECTX,
				       "tg_record: %s: input %d belongs to another context than the "
				       "output",
				       who, i - 1);
	}
	for (int i = 0; i <= nin; i++) {
		const tg_tensor *x = all[i];
		snprintf(what, sizeof what, i ? "input %d" : "the output", i - 1);
		if (!tg_dtype_is_float(x->dtype))
			return tg_fail(ctx, TG_EDTYPE,
				       "tg_record: %s: %s is an index tensor (%s %s); a recorded op's "
				       "output and inputs hold f32 or f64 values",
				       who, what, tg_dtype_name(x->dtype),
				       tg_shape_fmt(x->ndim, x->shape, a));
		if (x->dtype != out->dtype)
			return tg_fail(ctx, TG_EDTYPE,
				       "tg_record: %s: the output is %s %s, %s is %s %s; a recorded "
				       "op's output and inputs share one dtype",
				       who, tg_dtype_name(out->dtype),
				       tg_shape_fmt(out->ndim, out->shape, a), what,
				       tg_dtype_name(x->dtype), tg_shape_fmt(x->ndim, x->shape, b));
	}
	return tg_op_begin(who, nin + 1, all);
}

tg_tensor *tg_record(const tg_op *op, tg_tensor *out, int nin, tg_tensor *const *in,
		     const double *attrs, int nattrs)
{
	const char *who = op && op->name ? op->name : "tg_record";
	tg_tensor *all[TG_MAX_INPUTS + 1];
	if (nin < 0 || nin > TG_MAX_INPUTS || (nin > 0 && !in)) {
		tg_ctx *ctx = tg_tensor_check(who, out);
		if (nin > 0 && nin <= TG_MAX_INPUTS)
			return tg_fail(ctx, TG_ENULL, "tg_record: %s: %d inputs and the array is NULL",
				       who, nin);
		return tg_fail(ctx, TG_EARG, "tg_record: %s: %d inputs; an op takes 0 to %d", who,
			       nin, TG_MAX_INPUTS);
	}
	all[0] = out;
	for (int i = 0; i < nin; i++)
		all[i + 1] = in[i];
	tg_ctx *ctx = record_begin(who, nin, all);
	if (!ctx)
		return NULL;
	if (!op || !op->name || !op->backward)
		return tg_fail(ctx, TG_ENULL, "tg_record: the op descriptor, its name or its "
					      "backward rule is NULL");
	if (nattrs > 0 && nattrs <= TG_MAX_ATTRS && !attrs)
		return tg_fail(ctx, TG_ENULL, "tg_record: %s: %d attributes and the array is NULL",
			       who, nattrs);
	if (nattrs < 0 || nattrs > TG_MAX_ATTRS)
		return tg_fail(ctx, TG_EARG, "tg_record: %s: %d attributes; an op keeps 0 to %d",
			       who, nattrs, TG_MAX_ATTRS);
	if (out->node || out->persistent)
		return tg_fail(ctx, TG_EARG,
			       "tg_record: %s: the output must be a new step tensor with no "
			       "history (compute it with grad mode off)",
			       who);
	if (out->consumed)
		return tg_fail(ctx, TG_EARG,
			       "tg_record: %s: the output was already used as an input of a "
			       "recorded op; record it before using it",
			       who);
	for (int i = 0; i < nin; i++)
		if (in[i] == out)
			return tg_fail(ctx, TG_EARG,
				       "tg_record: %s: the output is also input %d; an op makes a "
				       "new tensor",
				       who, i);
	ctx->custom_nodes++;
	return tg_op_end(op, out, nin, in, attrs, nattrs, NULL);
}

tg_tensor *tg_node_input(const tg_node *n, int i)
{
	if (n && i >= 0 && i < n->nin)
		return n->in[i];
	/* a rule reading an input its op did not record: said here, not as
	 * the TG_ENULL of whatever the NULL is given to next */
	if (n)
		tg_fail(n->out->ctx, TG_EARG, "tg_node_input: %s: input %d; the node has %d",
			n->op->name, i, n->nin);
	return NULL;
}

tg_tensor *tg_node_output(const tg_node *n) { return n ? n->out : NULL; }
const tg_op *tg_node_op(const tg_node *n) { return n ? n->op : NULL; }

double tg_node_attr(const tg_node *n, int i)
{
	if (n && i >= 0 && i < n->nattr)
		return n->attr[i];
	/* a rule reading an attribute its op did not record would otherwise
	 * compute with a made-up 0 */
	if (n)
		tg_fail(n->out->ctx, TG_EARG, "tg_node_attr: %s: attribute %d; the node keeps %d",
			n->op->name, i, n->nattr);
	return NAN;
}

bool tg_node_needs_grad(const tg_node *n, int i)
{
	return n && i >= 0 && i < n->nin && tg_node_wants(n, i);
}

const tg_node *tg_producer(const tg_tensor *t)
{
	return tg_tensor_check("tg_producer", t) ? t->node : NULL;
}

/* ---- gradients ------------------------------------------------------------------- */

static void add_into(tg_tensor *dst, const tg_tensor *src)
{
	tg_add_arrays(dst->ctx, dst->dtype, dst->data, src->data, dst->data, dst->numel);
	dst->version++;
}

/* A leaf's own gradient buffer: ctx for parameters, step otherwise. Its
 * contents are not cleared: the first gradient of a step is copied in. */
static tg_tensor *grad_buffer(tg_tensor *x)
{
	if (!x->grad_store) {
		tg_tensor *z = tg_zeros(x->ctx, x->dtype, x->ndim, x->shape);
		x->grad_store = x->persistent ? tg_keep(z) : z;
		if (x->grad_store)
			x->grad_store->written_later = true;
		/* until a walk that gave x its gradient ends well (end_touched) */
		x->store_blank = true;
	}
	return x->grad_store;
}

/* Tensors by address, each with the position it was first added at: an
 * open-addressing table of twice as many slots or more, so that a walk over
 * many inputs finds each in constant time. */
typedef struct addr_index {
	size_t mask;            /* slots - 1, slots a power of two */
	const tg_tensor **key;  /* NULL: empty */
	int *pos;
} addr_index;

/* Below this many entries a linear search is as fast as the table. */
enum { ADDR_INDEX_MIN = 16 };

static size_t addr_hash(const tg_tensor *t)
{
	uint64_t h = (uint64_t)(uintptr_t)t;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)h;
}

/* An empty table for n entries in the step arena; false after recording
 * why. */
static bool addr_index_init(tg_ctx *ctx, addr_index *a, size_t n)
{
	size_t slots = 2 * ADDR_INDEX_MIN;
	while (slots < 2 * n)
		slots *= 2;
	a->mask = slots - 1;
	a->key = tg_arena_alloc(ctx, slots * sizeof *a->key);
	a->pos = tg_arena_alloc(ctx, slots * sizeof *a->pos);
	if (!a->key || !a->pos)
		return false;
	memset(a->key, 0, slots * sizeof *a->key);
	return true;
}

/* The position t was first added at, or -1. */
static int addr_index_find(const addr_index *a, const tg_tensor *t)
{
	for (size_t k = addr_hash(t) & a->mask; a->key[k]; k = (k + 1) & a->mask)
		if (a->key[k] == t)
			return a->pos[k];
	return -1;
}

/* Adds t at pos unless it is there already. */
static void addr_index_add(addr_index *a, const tg_tensor *t, int pos)
{
	size_t k = addr_hash(t) & a->mask;
	for (; a->key[k]; k = (k + 1) & a->mask)
		if (a->key[k] == t)
			return;
	a->key[k] = t;
	a->pos[k] = pos;
}

/* What one tg_grad_of walk keeps instead of .grad: an intermediate's
 * gradient sits on its producer node (walk_grad), a leaf's only when it is
 * one of the inputs asked about; other leaves' gradients are dropped. */
typedef struct tg_walk {
	int nin;
	tg_tensor *const *in;
	tg_tensor **leaf_grad; /* nin slots, for the inputs that are leaves */
	tg_node *touched;      /* nodes given a walk_grad, chained by walk_next */
	addr_index asked;      /* the inputs, when ADDR_INDEX_MIN or more */
	addr_index given;      /* the gradients handed out so far, likewise */
} tg_walk;

/* The position of x's first occurrence among the inputs, or -1. */
static int walk_input(const tg_walk *w, const tg_tensor *x)
{
	if (w->asked.key)
		return addr_index_find(&w->asked, x);
	for (int i = 0; i < w->nin; i++)
		if (w->in[i] == x)
			return i;
	return -1;
}

/* Where the walk keeps x's gradient; NULL for a leaf it drops. */
static tg_tensor **walk_slot(tg_walk *w, const tg_tensor *x)
{
	if (x->node)
		return &x->node->walk_grad;
	int i = walk_input(w, x);
	return i >= 0 ? &w->leaf_grad[i] : NULL;
}

static void walk_accumulate(tg_walk *w, tg_tensor *x, tg_tensor *g)
{
	tg_tensor **slot = walk_slot(w, x);
	if (x->node && !*slot) {
		x->node->walk_next = w->touched;
		w->touched = x->node;
	}
	tg_tensor *sum = !slot ? NULL : *slot ? tg_accumulate(*slot, g) : g;
	if (sum)
		*slot = sum; /* kept as it was when the add failed: the walk stops */
}

/* A leaf's first gradient of this tg_backward: what it held before is
 * noted, so that a walk that fails can put it back (end_touched). */
static TG_SLOW void note_touched(tg_ctx *ctx, tg_tensor *x)
{
	x->touched = true;
	x->grad_changed = false;
	x->grad_before = x->grad;
	x->next_touched = ctx->touched;
	ctx->touched = x;
}

static void accumulate(tg_tensor *x, tg_tensor *g)
{
	tg_ctx *ctx = x->ctx;
	/* a lazy gradient stays so only as an intermediate's first, for a rule
	 * that reads it as one value (internal.h) */
	if (g->lazy_fill && (ctx->walk || x->grad || !x->node || ctx->grad_enabled ||
			     !tg_op_reads_uniform(x->node->op)))
		tg_fill_lazy(g);
	if (ctx->walk) {
		walk_accumulate(ctx->walk, x, g);
		return;
	}
	if (!x->node && !x->touched)
		note_touched(ctx, x);
	bool create_graph = ctx->grad_enabled;
	/* a buffer that a recorded op took as an input (tg_grad(x) used in a
	 * forward pass) is saved for that op's backward: not written in place */
	bool saved = x->grad_store && x->grad_store->consumed;
	if (x->node || create_graph || saved || (x->grad && x->grad != x->grad_store)) {
		/* an intermediate, any gradient that must keep its history, one
		 * left with history by a TG_CREATE_GRAPH backward, or a saved
		 * buffer's */
		tg_unlazy(x->grad);
		/* an intermediate's sum made for it alone (grad_own) takes each
		 * later gradient in place, with the bits of a new sum: k
		 * gradients cost one tensor of x's size, not k - 1. From
		 * TG_GRAD_INTO_MIN elements on, as the backward's other sums in
		 * place (tg_node_grad_add_buffer); anomaly mode checks each
		 * sum's values as an op's. */
		if (x->node && x->grad && x->grad_own && !create_graph && !ctx->anomaly &&
		    x->numel >= TG_GRAD_INTO_MIN && g->data != x->grad->data) {
			add_into(x->grad, g);
			return;
		}
		/* a leaf's gradient with history (from a TG_CREATE_GRAPH
		 * backward) keeps it when a plain backward adds to it: the sum
		 * is recorded, g in it a constant, as PyTorch's in-place add
		 * keeps the history; else a later derivative through tg_grad
		 * would silently lose the earlier backward's part */
		bool keep_history = !x->node && !create_graph && x->grad && x->grad->requires_grad;
		ctx->grad_enabled = create_graph || keep_history;
		x->grad = x->grad ? tg_accumulate(x->grad, g) : g;
		ctx->grad_enabled = create_graph;
		/* a sum made with nothing recorded is a new tensor, x's alone; g
		 * may be another tensor's gradient too, or a rule's dout */
		x->grad_own = x->node && x->grad && x->grad != g && !create_graph;
		if (x->persistent)
			ctx->kept_step_grad = true;
		return;
	}
	if (x->grad) {
		x->grad_changed |= x->grad == x->grad_before;
		add_into(x->grad, g);
		return;
	}
	/* the first gradient since tg_zero_grad (or ever): written straight in,
	 * no clearing of the buffer and then adding; nothing to copy when the
	 * rule wrote it there itself (tg_node_grad_buffer) */
	tg_tensor *buf = grad_buffer(x);
	if (buf) {
		if (g->data != buf->data)
			tg_copy_arrays(ctx, buf->data, g->data, x->numel * tg_dtype_size(x->dtype));
		buf->version++;
		x->grad = buf;
	}
}

/* Input i of n when it is a leaf whose own buffer accumulate writes in
 * place (no history to keep, no walk, no value to check first, a buffer no
 * forward pass read); NULL otherwise. */
static tg_tensor *leaf_written_in_place(const tg_node *n, int i)
{
	if (!n || (unsigned)i >= (unsigned)n->nin || !tg_node_wants(n, i))
		return NULL;
	tg_tensor *x = n->in[i];
	const tg_ctx *ctx = x->ctx;
	if (x->node || ctx->walk || ctx->grad_enabled || ctx->anomaly ||
	    (x->grad_store && x->grad_store->consumed))
		return NULL;
	return x;
}

tg_tensor *tg_node_grad_buffer(tg_node *n, int i)
{
	/* the case accumulate copies in: a leaf's first gradient of the step */
	tg_tensor *x = leaf_written_in_place(n, i);
	return x && !x->grad ? grad_buffer(x) : NULL;
}

tg_tensor *tg_node_grad_sum_buffer(tg_node *n, int i)
{
	/* the case accumulate adds in place: the leaf's own buffer holding its
	 * gradient */
	tg_tensor *x = leaf_written_in_place(n, i);
	return x && x->grad && x->grad == x->grad_store ? x->grad : NULL;
}

/* Input i of n when it is an intermediate whose gradient a plain walk sums
 * (no history to keep, no walk, no value to check first); NULL otherwise. */
static tg_tensor *intermediate_summed(const tg_node *n, int i)
{
	if (!n || (unsigned)i >= (unsigned)n->nin || !n->needs[i])
		return NULL;
	tg_tensor *x = n->in[i];
	const tg_ctx *ctx = x->ctx;
	if (!x->node || ctx->walk || ctx->grad_enabled || ctx->anomaly)
		return NULL;
	return x;
}

tg_tensor *tg_node_grad_add_buffer(tg_node *n, int i)
{
	tg_tensor *x = leaf_written_in_place(n, i);
	if (x && x->numel >= TG_GRAD_INTO_MIN && tg_ok(x->ctx)) {
		if (x->grad) /* a held gradient accumulate would add to in place */
			return x->grad == x->grad_store ? x->grad : NULL;
		tg_tensor *buf = grad_buffer(x);
		if (!buf)
			return NULL;
		memset(buf->data, 0, x->numel * tg_dtype_size(x->dtype));
		accumulate(x, buf); /* the first gradient, in place: nothing copied */
		return buf;
	}
	x = intermediate_summed(n, i);
	if (!x || x->numel < TG_GRAD_INTO_MIN || !tg_ok(x->ctx))
		return NULL;
	if (x->grad && x->grad_own)
		return x->grad;
	/* one of x's own, made once: zeros, or what x holds (a rule's dout,
	 * perhaps another tensor's gradient too) */
	tg_tensor *sum = x->grad ? tg_tensor_like(x, "tg_backward") : tg_zeros(x->ctx, x->dtype,
									      x->ndim, x->shape);
	if (!sum)
		return NULL;
	if (x->grad) {
		tg_unlazy(x->grad);
		tg_copy_arrays(x->ctx, sum->data, x->grad->data, x->numel * tg_dtype_size(x->dtype));
	}
	x->grad = sum;
	x->grad_own = true;
	return sum;
}

void tg_node_grad_summed(tg_node *n, int i)
{
	tg_tensor *x = n->in[i];
	if (x->node) { /* an intermediate's own sum (tg_node_grad_add_buffer) */
		x->grad->version++;
		n->in_grad[i] = x->grad;
		return;
	}
	if (!x->touched)
		note_touched(x->ctx, x);
	x->grad_changed |= x->grad == x->grad_before;
	x->grad->version++;
	n->in_grad[i] = x->grad; /* the edge's gradient is in the sum, of its shape */
}

bool tg_node_grad_first(const tg_node *n, int i)
{
	const tg_tensor *x = n->in[i];
	if (x->ctx->walk) {
		tg_tensor **slot = walk_slot(x->ctx->walk, x);
		return !slot || !*slot;
	}
	return !x->grad;
}

void tg_grad_dest_arm(tg_node *n, int i)
{
	tg_tensor *buf = tg_node_grad_buffer(n, i);
	if (!buf)
		return;
	/* the buffer is no tensor the rule reads (a forward pass that took
	 * tg_grad(x) as an input): the kernels' inputs and outputs are apart */
	for (int k = 0; k < n->nin; k++)
		if (n->in[k] == buf)
			return;
	if (n->out == buf)
		return;
	buf->ctx->grad_dest = buf;
}

void tg_node_grad_into(tg_node *n, int i, tg_tensor *dx)
{
	if (n)
		n->out->ctx->grad_dest = NULL;
	tg_node_grad(n, i, dx);
}

/* Whether dx, handed to an input of ctx, is a step tensor of ctx that a
 * tg_reset freed (a rule that kept it from an earlier step). */
static inline bool stale_grad(const tg_ctx *ctx, const tg_tensor *dx)
{
	return dx->magic != TG_TENSOR_MAGIC ||
	       (dx->ctx == ctx && !dx->persistent && dx->gen != ctx->gen);
}

/* Whether x's shape broadcasts to dx's (NumPy rules), so that dx sums back
 * to it over the broadcast axes, and each axis summed away is one of the
 * output y's, of its size (counted from the last): a gradient in the
 * output's broadcast shape, not one of a rule that made up axes. */
static bool sums_to(const tg_tensor *dx, const tg_tensor *x, const tg_tensor *y)
{
	if (x->ndim > dx->ndim)
		return false;
	for (int k = 1; k <= dx->ndim; k++) {
		int64_t d = dx->shape[dx->ndim - k];
		int64_t s = k <= x->ndim ? x->shape[x->ndim - k] : 1;
		if (s == d)
			continue;
		if (s != 1 || k > y->ndim || y->shape[y->ndim - k] != d)
			return false;
	}
	return true;
}

/* tg_node_grad when dx needs a look: freed by tg_reset, another context or
 * dtype than the input (an error), another shape (summed down), or anomaly
 * mode. */
static TG_SLOW void node_grad_checked(tg_node *n, int i, tg_tensor *dx)
{
	tg_tensor *x = n->in[i];
	tg_ctx *ctx = x->ctx;
	if (stale_grad(ctx, dx)) {
		tg_fail(ctx, TG_ESTALE,
			"backward of %s: the gradient of input %d was freed by tg_reset", n->op->name,
			i);
		return;
	}
	char a[TG_SHAPE_STR], b[TG_SHAPE_STR];
	if (dx->ctx != ctx) {
		tg_fail(ctx, TG_ECTX,
			"backward of %s: the gradient of input %d belongs to another context",
			n->op->name, i);
		return;
	}
	if (dx->dtype != x->dtype) {
		tg_fail(ctx, TG_EDTYPE, "backward of %s: gradient of input %d is %s %s, input is %s",
			n->op->name, i, tg_dtype_name(dx->dtype),
			tg_shape_fmt(dx->ndim, dx->shape, a), tg_dtype_name(x->dtype));
		return;
	}
	if (!sums_to(dx, x, n->out)) {
		char c[TG_SHAPE_STR];
		tg_fail(ctx, TG_ESHAPE,
			"backward of %s: gradient of input %d is %s, which is neither the input's "
			"shape %s nor one that sums to it over axes of the output %s",
			n->op->name, i, tg_shape_fmt(dx->ndim, dx->shape, a),
			tg_shape_fmt(x->ndim, x->shape, b), tg_shape_fmt(n->out->ndim, n->out->shape, c));
		return;
	}
	tg_unlazy(dx); /* summed down, or looked at */
	if (!tg_same_shape(dx, x)) {
		dx = tg_sum_to(dx, x->ndim, x->shape);
		if (!dx)
			return;
	}
	if (ctx->anomaly) {
		const char *bad = tg_nonfinite(dx);
		if (bad) {
			char buf[TG_SHAPE_STR];
			tg_fail(ctx, TG_EANOMALY,
				"anomaly: backward of %s produced %s in the gradient of input %d %s",
				n->op->name, bad, i, tg_shape_fmt(x->ndim, x->shape, buf));
			return;
		}
	}
	if (!ctx->walk) /* a tg_grad_of walk keeps its gradients to itself */
		n->in_grad[i] = dx;
	accumulate(x, dx);
}

/* A rule handed NULL for input i: after an op of the rule failed, its
 * error is set; otherwise the rule lost the gradient without saying so,
 * and the walk would go on without it. */
static TG_SLOW void node_grad_null(const tg_node *n, int i)
{
	tg_ctx *ctx = n->in[i]->ctx;
	if (ctx->status == TG_OK)
		tg_fail(ctx, TG_ENULL,
			"backward of %s: the gradient of input %d is NULL and no error was recorded",
			n->op->name, i);
}

/* Under TG_CREATE_GRAPH a rule's gradient is linear in its dout: when dout
 * has history, a gradient that is not all zeros has it too, unless the
 * rule computed it outside the ops (a loop over tg_data_mut, grad mode
 * turned off). Higher derivatives through it would then read zeros with
 * no error (tg_jvp, tg_hvp, tg_hessian): refused here, naming the rule. */
static TG_SLOW bool unrecorded(tg_node *n, int i, tg_tensor *dx)
{
	tg_ctx *ctx = dx->ctx;
	const tg_tensor *dout = ctx->walk ? n->walk_grad : n->out->grad;
	if (!dout || !dout->requires_grad)
		return false;
	size_t count = dx->lazy_fill || tg_is_uniform(dx) ? 1 : dx->numel;
	bool zeros = true;
	for (size_t k = 0; k < count && zeros; k++)
		zeros = dx->dtype == TG_F64 ? ((const double *)dx->data)[k] == 0
					    : ((const float *)dx->data)[k] == 0;
	if (zeros)
		return false;
	tg_fail(ctx, TG_EARG,
		"backward of %s: under TG_CREATE_GRAPH the gradient of input %d has no history "
		"though its upstream gradient has; the rule computed it outside the ops "
		"(tg_data_mut, or grad mode off), so derivatives of it would read zeros: write "
		"the rule with ops",
		n->op->name, i);
	return true;
}

void tg_node_grad(tg_node *n, int i, tg_tensor *dx)
{
	if (!n)
		return;
	if ((unsigned)i >= (unsigned)n->nin) { /* a custom op's rule, mistaken */
		tg_fail(n->out->ctx, TG_EARG, "backward of %s: a gradient for input %d; it has %d",
			n->op->name, i, n->nin);
		return;
	}
	if (!tg_node_wants(n, i))
		return;
	if (!dx) {
		node_grad_null(n, i);
		return;
	}
	tg_tensor *x = n->in[i];
	if (x->ctx->grad_enabled && !dx->requires_grad && !stale_grad(x->ctx, dx) &&
	    dx->ctx == x->ctx && dx->dtype == x->dtype && unrecorded(n, i, dx))
		return;
	if (stale_grad(x->ctx, dx) || dx->ctx != x->ctx || dx->dtype != x->dtype ||
	    x->ctx->anomaly || !tg_same_shape(dx, x)) {
		node_grad_checked(n, i, dx);
		return;
	}
	if (!x->ctx->walk) /* a tg_grad_of walk keeps its gradients to itself */
		n->in_grad[i] = dx;
	accumulate(x, dx);
}

/* A leaf for a message: "'name' (shape)", or "leaf (shape)" unnamed. */
static const char *leaf_label(const tg_tensor *t, char *buf, size_t size)
{
	char shape[TG_SHAPE_STR];
	snprintf(buf, size, "%s%s%s %s", t->name ? "'" : "", t->name ? t->name : "leaf",
		 t->name ? "'" : "", tg_shape_fmt(t->ndim, t->shape, shape));
	return buf;
}

/* A gradient a failed tg_backward added to in place: neither what it was
 * nor what it should have become; or one tg_reset dropped. Only
 * tg_zero_grad gives it back. */
static TG_SLOW void grad_lost_failed(const char *who, const tg_tensor *t)
{
	char buf[TG_SHAPE_STR + 256];
	tg_fail(t->ctx, TG_EARG,
		"%s: the gradient of %s %s; call tg_zero_grad on it (or tg_zero_grads) and "
		"run the backward again",
		who, leaf_label(t, buf, sizeof buf),
		t->grad_unkept ? "was lost: tg_reset could not make a buffer to keep it "
				 "from its TG_CREATE_GRAPH tg_backward"
			       : "was partly accumulated by a tg_backward that failed");
}

/* A leaf whose buffer exists but holds no gradient of this step (grad NULL,
 * grad_store set: tg_zero_grad left it so) reads zeros: the buffer is cleared
 * here, on the first look, which a training step never takes between
 * tg_zero_grad and the backward that overwrites it. A buffer that only a
 * failed walk wrote (store_blank) is no gradient the leaf ever had: NULL, as
 * before that walk. */
tg_tensor *tg_grad(const tg_tensor *t)
{
	if (!tg_tensor_check("tg_grad", t))
		return NULL;
	if (t->grad_lost) {
		grad_lost_failed("tg_grad", t);
		return NULL;
	}
	tg_unlazy(t->grad);
	if (!t->grad && t->grad_store && !t->store_blank && t->requires_grad && !t->node &&
	    !t->ctx->walk) {
		tg_tensor *m = (tg_tensor *)t; /* the gradient is no part of t's value */
		if (t->grad_store->consumed) {
			/* a recorded op saved the buffer: it keeps its values (the
			 * op's backward reads them), and the zeros are a step
			 * tensor, moved into the buffer by tg_reset */
			m->grad = tg_zeros(t->ctx, t->dtype, t->ndim, t->shape);
			t->ctx->kept_step_grad |= m->grad != NULL;
			return m->grad;
		}
		memset(m->grad_store->data, 0, t->numel * tg_dtype_size(t->dtype));
		m->grad_store->version++;
		m->grad = m->grad_store;
	} else if (!t->grad && !t->grad_store && t->grad_zeroed && !t->ctx->walk) {
		/* no buffer yet: the zeros are a step tensor, which tg_reset
		 * moves into one as it does a TG_CREATE_GRAPH gradient */
		tg_tensor *m = (tg_tensor *)t;
		m->grad = tg_zeros(t->ctx, t->dtype, t->ndim, t->shape);
		t->ctx->kept_step_grad |= t->persistent && m->grad;
	}
	return t->grad;
}

/* A leaf the tg_backward under way has still to hand gradients to (a
 * grad_ready hook's walk, before the leaf's own report): zeroing it there
 * would drop the part already added and keep the rest. */
static bool pending(const char *who, const tg_tensor *t)
{
	if (!t->last_use)
		return false;
	char buf[TG_SHAPE_STR + 256];
	tg_fail(t->ctx, TG_EARG,
		"%s: %s still takes gradients from the tg_backward under way; zero it once "
		"its grad_ready report has come, or after the backward",
		who, leaf_label(t, buf, sizeof buf));
	return true;
}

/* Marks the buffer empty instead of clearing it: the next gradient is copied
 * in, and tg_grad clears it if asked first. */
void tg_zero_grad(tg_tensor *t)
{
	if (!tg_tensor_check("tg_zero_grad", t) || pending("tg_zero_grad", t))
		return;
	t->grad_zeroed |= t->grad && !t->grad_store && !t->node;
	t->grad = NULL;
	t->grad_lost = t->grad_unkept = false;
}

void tg_zero_grads(tg_ctx *ctx)
{
	if (!ctx)
		return;
	/* all or none */
	for (tg_tensor *t = ctx->kept; t; t = t->next_kept)
		if (t->requires_grad && pending("tg_zero_grads", t))
			return;
	for (tg_tensor *t = ctx->kept; t; t = t->next_kept)
		if (t->requires_grad)
			tg_zero_grad(t);
}

/* ---- the reverse walk -------------------------------------------------------------- */

static bool versions_intact(const char *who, const tg_node *n)
{
	tg_ctx *ctx = n->out->ctx;
	const unsigned unread = n->op->unread;
	for (int i = 0; i < n->nin; i++) {
		if (!(unread & 1u << i) && n->in[i]->version != n->in_version[i]) {
			char buf[TG_SHAPE_STR];
			tg_fail(ctx, TG_EVERSION,
				"%s: input %d %s%s%s of %s was modified in place after the "
				"op saved it (version %u, saved at %u)",
				who, i, tg_shape_fmt(n->in[i]->ndim, n->in[i]->shape, buf),
				n->in[i]->name ? " " : "", n->in[i]->name ? n->in[i]->name : "",
				n->op->name, n->in[i]->version, n->in_version[i]);
			return false;
		}
	}
	if (!(unread & TG_UNREAD_OUTPUT) && n->out->version != n->out_version) {
		tg_fail(ctx, TG_EVERSION,
			"%s: the output of %s was modified in place after it was made", who,
			n->op->name);
		return false;
	}
	return true;
}

/* Whether the backward rule of op (NULL: the grad_ready hook) called
 * tg_reset during a walk that started in step gen: the nodes ahead and the
 * step tensors are gone, so the walk stops with TG_ESTALE. */
static bool step_ended(tg_ctx *ctx, uint64_t gen, const char *who, const tg_op *op)
{
	if (ctx->gen == gen)
		return false;
	if (ctx->status == TG_OK)
		tg_fail(ctx, TG_ESTALE,
			"%s: %s%s called tg_reset, which ends the step of the walk's tensors", who,
			op ? "the backward rule of " : "the grad_ready hook", op ? op->name : "");
	return true;
}

/* The grad_ready hook: each leaf that needs a gradient is marked with the
 * earliest node (last in the walk) that uses it; when the walk has run that
 * node's rule, or skipped it, the leaf's gradient is final. */
static void mark_last_uses(tg_node *from)
{
	for (tg_node *n = from; n; n = n->prev)
		for (int i = 0; i < n->nin; i++)
			if (!n->in[i]->node && tg_node_wants(n, i))
				n->in[i]->last_use = n;
}

static void report_ready(tg_ctx *ctx, const tg_node *n)
{
	uint64_t gen = ctx->gen;
	/* the hook may take itself off (tg_set_grad_ready(ctx, NULL, NULL)) */
	for (int i = 0; i < n->nin && ctx->status == TG_OK && ctx->gen == gen && ctx->grad_ready;
	     i++) {
		tg_tensor *x = n->in[i];
		if (x->last_use != n)
			continue;
		x->last_use = NULL; /* an input given twice is reported once */
		ctx->grad_ready(x, ctx->grad_ready_user);
	}
}

/* A walk that failed puts back what it changed: a leaf's gradient it
 * started or replaced is returned to what it was; one it added to in place
 * cannot be, and is marked lost (tg_grad, tg_backward refuse it until
 * tg_zero_grad). The intermediates' gradients of the pass are dropped.
 * y NULL: a tg_reset ended the step during the walk, so only ctx tensors
 * are left, and a gradient it kept may have moved into its buffer. */
static void end_touched(tg_ctx *ctx, const tg_tensor *y)
{
	bool failed = ctx->status != TG_OK;
	if (!y) {
		for (tg_tensor *t = ctx->kept; t; t = t->next_kept) {
			if (!t->touched)
				continue;
			t->touched = false;
			if (failed && !t->grad_before)
				t->grad = NULL;
			else if (failed)
				t->grad_lost = ctx->grads_lost = true;
			else
				t->store_blank = false;
		}
		ctx->touched = NULL;
		return;
	}
	for (tg_tensor *t = ctx->touched; t; t = t->next_touched) {
		t->touched = false;
		if (failed && t->grad_changed)
			t->grad_lost = ctx->grads_lost = true;
		else if (failed)
			t->grad = t->grad_before;
		else
			t->store_blank = false;
	}
	ctx->touched = NULL;
	for (tg_node *n = y->node; failed && n; n = n->prev) {
		n->out->grad = NULL;
		memset(n->in_grad, 0, sizeof n->in_grad);
	}
}

/* tg_backward_ex's walk, its errors named who (the function the caller
 * called). */
static int backward(const char *who, tg_tensor *y, tg_tensor *dy, unsigned flags)
{
	tg_tensor *in[2] = { y, dy };
	tg_ctx *ctx = tg_op_begin(who, dy ? 2 : 1, in);
	if (!ctx)
		return -1;
	char a[TG_SHAPE_STR], b[TG_SHAPE_STR];
	if (flags & ~(unsigned)TG_CREATE_GRAPH) {
		tg_fail(ctx, TG_EARG, "%s: unknown flags 0x%x (TG_CREATE_GRAPH is the one)", who,
			flags);
		return -1;
	}
	if (ctx->in_backward) {
		/* it would clear the gradients the walk under way is handing on */
		tg_fail(ctx, TG_EARG,
			"%s: called during another walk (from a backward rule or the "
			"grad_ready hook)",
			who);
		return -1;
	}
	if (!y->requires_grad && !ctx->grad_enabled) {
		tg_fail(ctx, TG_EARG,
			"%s: the output %s has no history because grad mode is off "
			"(tg_set_grad_enabled): ops recorded nothing",
			who, tg_shape_fmt(y->ndim, y->shape, a));
		return -1;
	}
	if (!y->requires_grad) {
		tg_fail(ctx, TG_EARG,
			"%s: the output %s has no history: it does not depend on any "
			"tensor that requires a gradient (a tg_param, or one marked with "
			"tg_set_requires_grad), or it was made with grad mode off, or from "
			"a TG_CREATE_GRAPH gradient that is piecewise constant (a max or a "
			"clamp alone: its derivative is zero)",
			who, tg_shape_fmt(y->ndim, y->shape, a));
		return -1;
	}
	/* a dy given by the caller may be a leaf's gradient buffer (below) */
	bool given = dy != NULL, dy_is_buffer = false;
	if (!dy) {
		if (y->numel != 1) {
			tg_fail(ctx, TG_ESHAPE,
				"%s: the output has shape %s; a non-scalar output needs "
				"an upstream gradient (tg_backward_ex)",
				who, tg_shape_fmt(y->ndim, y->shape, a));
			return -1;
		}
		dy = tg_ones(ctx, y->dtype, y->ndim, y->shape);
		if (!dy)
			return -1;
	} else if (!tg_same_shape(y, dy)) {
		tg_fail(ctx, TG_ESHAPE, "%s: output %s and upstream gradient %s differ", who,
			tg_shape_fmt(y->ndim, y->shape, a), tg_shape_fmt(dy->ndim, dy->shape, b));
		return -1;
	}
	/* a lost gradient on the part of the tape the walk goes over (looked
	 * for only once a failed walk has marked one) */
	const tg_tensor *lost = y->grad_lost ? y : NULL;
	for (const tg_node *n = y->node; ctx->grads_lost && n && !lost; n = n->prev)
		for (int i = 0; i < n->nin; i++)
			if (n->in[i]->grad_lost && tg_node_wants(n, i))
				lost = n->in[i];
	if (lost) {
		grad_lost_failed(who, lost);
		return -1;
	}
	for (tg_node *n = ctx->tape; n; n = n->prev) {
		n->out->grad = NULL;
		memset(n->in_grad, 0, sizeof n->in_grad);
		for (int i = 0; given && i < n->nin; i++)
			dy_is_buffer |= n->in[i]->grad_store == dy;
	}
	/* dy is a leaf's gradient buffer (tg_grad of a leaf, fed back as the
	 * upstream gradient: v <- J^T v): the walk writes that buffer in place
	 * while dy may still be some node's dout, so it goes in as a copy */
	if (dy_is_buffer && !(dy = tg_detach(dy)))
		return -1;

	bool was = ctx->grad_enabled;
	ctx->grad_enabled = (flags & TG_CREATE_GRAPH) != 0;
	ctx->in_backward = true;
	bool hook = ctx->grad_ready != NULL;
	if (hook)
		mark_last_uses(y->node);
	accumulate(y, dy);
	uint64_t gen = ctx->gen;
	for (tg_node *n = y->node; n && ctx->status == TG_OK; n = n->prev) {
		if (n->out->grad) {
			if (!versions_intact(who, n))
				break;
			if (n->out->grad->lazy_fill && !tg_op_reads_uniform(n->op))
				tg_fill_lazy(n->out->grad);
			n->op->backward(n, n->out->grad);
			if (step_ended(ctx, gen, who, n->op))
				break;
		}
		if (hook && ctx->grad_ready) {
			report_ready(ctx, n);
			if (step_ended(ctx, gen, who, NULL))
				break;
		}
	}
	/* y a leaf: no node hands it more than dy, so its gradient is final now */
	if (hook && !y->node && ctx->grad_ready && ctx->status == TG_OK) {
		ctx->grad_ready(y, ctx->grad_ready_user);
		step_ended(ctx, gen, who, NULL);
	}
	if (hook && (ctx->status != TG_OK || !ctx->grad_ready)) {
		if (ctx->gen == gen) {
			for (tg_node *n = y->node; n; n = n->prev)
				for (int i = 0; i < n->nin; i++)
					n->in[i]->last_use = NULL;
		} else {
			/* the nodes and step tensors are gone; only ctx tensors are left */
			for (tg_tensor *t = ctx->kept; t; t = t->next_kept)
				t->last_use = NULL;
		}
	}
	end_touched(ctx, ctx->gen == gen ? y : NULL);
	ctx->in_backward = false;
	ctx->grad_enabled = was;
	return ctx->status == TG_OK ? 0 : -1;
}

int tg_backward_ex(tg_tensor *y, tg_tensor *dy, unsigned flags)
{
	return backward("tg_backward_ex", y, dy, flags);
}

int tg_backward(tg_tensor *y)
{
	return backward("tg_backward", y, NULL, 0);
}

/* ---- gradients of chosen inputs ------------------------------------------------------- */

/* The context of the first tensor given, for reporting bad arguments. */
static tg_ctx *first_ctx(int n, tg_tensor *const *a, int m, tg_tensor *const *b)
{
	for (int i = 0; a && i < n; i++)
		if (a[i] && a[i]->magic == TG_TENSOR_MAGIC)
			return a[i]->ctx;
	for (int i = 0; b && i < m; i++)
		if (b[i] && b[i]->magic == TG_TENSOR_MAGIC)
			return b[i]->ctx;
	/* only headers given back, or not tensors at all */
	for (int i = 0; a && i < n; i++)
		if (a[i] && tg_arena_owner(a[i]))
			return tg_arena_owner(a[i]);
	for (int i = 0; b && i < m; i++)
		if (b[i] && tg_arena_owner(b[i]))
			return tg_arena_owner(b[i]);
	return NULL;
}

/* One tensor argument of tg_grad_of: present, alive, of ctx, with values. */
static bool grad_of_arg(tg_ctx *ctx, const tg_tensor *t, const char *what, int i)
{
	if (!t) {
		tg_fail(ctx, TG_ENULL, "tg_grad_of: %s %d is NULL", what, i);
		return false;
	}
	tg_ctx *c = tg_tensor_check("tg_grad_of", t);
	if (!c)
		return false;
	if (c != ctx) {
		tg_fail(ctx, TG_ECTX, "tg_grad_of: %s %d belongs to another context", what, i);
		return false;
	}
	if (!tg_dtype_is_float(t->dtype)) {
		char a[TG_SHAPE_STR];
		tg_fail(ctx, TG_EDTYPE, "tg_grad_of: %s %d is an index tensor (%s %s)", what, i,
			tg_dtype_name(t->dtype), tg_shape_fmt(t->ndim, t->shape, a));
		return false;
	}
	return true;
}

static int grad_of_check(tg_ctx *ctx, int nout, tg_tensor *const *outputs,
			 tg_tensor *const *douts, int nin, tg_tensor *const *inputs,
			 tg_tensor **grads, unsigned flags)
{
	char a[TG_SHAPE_STR], b[TG_SHAPE_STR];
	if (!outputs || !inputs || !grads) {
		tg_fail(ctx, TG_ENULL, "tg_grad_of: %s is NULL",
			!outputs ? "the output array" : !inputs ? "the input array" : "grads");
		return -1;
	}
	if (nout < 1 || nin < 1) {
		tg_fail(ctx, TG_EARG, "tg_grad_of: %d outputs and %d inputs; each must be 1 or more",
			nout, nin);
		return -1;
	}
	if (flags & ~(unsigned)(TG_CREATE_GRAPH | TG_ALLOW_UNUSED)) {
		tg_fail(ctx, TG_EARG, "tg_grad_of: unknown flags 0x%x", flags);
		return -1;
	}
	bool any_history = false;
	for (int k = 0; k < nout; k++) {
		const tg_tensor *y = outputs[k], *dy = douts ? douts[k] : NULL;
		if (!grad_of_arg(ctx, y, "output", k) || (dy && !grad_of_arg(ctx, dy, "douts", k)))
			return -1;
		if (!dy && y->numel != 1) {
			tg_fail(ctx, TG_ESHAPE,
				"tg_grad_of: output %d has shape %s; a non-scalar output needs an "
				"upstream gradient (douts[%d])",
				k, tg_shape_fmt(y->ndim, y->shape, a), k);
			return -1;
		}
		if (dy && (!tg_same_shape(y, dy) || dy->dtype != y->dtype)) {
			tg_fail(ctx, tg_same_shape(y, dy) ? TG_EDTYPE : TG_ESHAPE,
				"tg_grad_of: output %d is %s %s, douts[%d] is %s %s",
				k, tg_dtype_name(y->dtype), tg_shape_fmt(y->ndim, y->shape, a), k,
				tg_dtype_name(dy->dtype), tg_shape_fmt(dy->ndim, dy->shape, b));
			return -1;
		}
		any_history = any_history || y->requires_grad;
	}
	for (int i = 0; i < nin; i++) {
		const tg_tensor *x = inputs[i];
		if (!grad_of_arg(ctx, x, "input", i))
			return -1;
		if (!x->requires_grad) {
			tg_fail(ctx, TG_EARG,
				"tg_grad_of: input %d %s does not require a gradient (a tg_param, "
				"or one marked with tg_set_requires_grad)",
				i, tg_shape_fmt(x->ndim, x->shape, a));
			return -1;
		}
	}
	if (!any_history && !ctx->grad_enabled && ctx->in_backward) {
		tg_fail(ctx, TG_EARG,
			"tg_grad_of: no output has history: called from a backward rule of a walk "
			"without TG_CREATE_GRAPH, which keeps grad mode off, so the rule's ops "
			"recorded nothing");
		return -1;
	}
	if (!any_history && !ctx->grad_enabled) {
		tg_fail(ctx, TG_EARG,
			"tg_grad_of: no output has history because grad mode is off "
			"(tg_set_grad_enabled): ops recorded nothing");
		return -1;
	}
	return 0;
}

/* Marks the nodes from start down to the first on the tape whose rule can
 * hand a gradient on to an input asked about (walk_reach = stamp): one of
 * its inputs that needs a gradient is asked about, or is made by such a
 * node. The others lead only to tensors the walk drops: like
 * torch.autograd.grad, the walk skips them, so it costs nothing and fails
 * on nothing (an in-place change, a rule's error) off the paths to the
 * inputs. Inputs come before the node that reads them, so one pass from the
 * first node up settles each from its inputs' producers: the tape's links
 * are turned round for it and back again. A producer off the walk's range
 * (a gradient check's own tape) has an older stamp: it leads nowhere.
 * Only the nodes from index low up are marked (none under it reads an
 * input asked about, so none leads to one); returns the latest node under
 * low, where the walk stops (NULL: the tape's start). */
static tg_node *mark_reaching(tg_walk *w, tg_node *start, uint64_t low, uint64_t stamp)
{
	tg_node *up = NULL; /* the nodes passed, linked to the next later one */
	tg_node *below = NULL; /* the latest node under low, left as it is */
	for (tg_node *n = start, *prev; n; n = prev) {
		if (n->index < low) {
			below = n;
			break;
		}
		prev = n->prev;
		n->prev = up;
		up = n;
	}
	tg_node *down = below;
	for (tg_node *n = up, *next; n; n = next) {
		next = n->prev;
		bool reach = false;
		for (int i = 0; i < n->nin && !reach; i++) {
			const tg_tensor *x = n->in[i];
			reach = tg_node_wants(n, i) &&
				((x->node && x->node->walk_reach == stamp) || walk_input(w, x) >= 0);
		}
		n->walk_reach = reach ? stamp : 0;
		n->prev = down;
		down = n;
	}
	return below;
}

/* The walk proper: every output's upstream gradient, then the nodes from the
 * latest output's down, each rule that leads to an input handing its inputs
 * their share. */
static void grad_of_walk(tg_ctx *ctx, int nout, tg_tensor *const *outputs,
			 tg_tensor *const *douts, tg_tensor **seeds)
{
	tg_node *start = NULL;
	for (int k = 0; k < nout && ctx->status == TG_OK; k++) {
		tg_tensor *y = outputs[k];
		seeds[k] = douts && douts[k] ? douts[k] : tg_ones(ctx, y->dtype, y->ndim, y->shape);
		if (!y->requires_grad || !seeds[k])
			continue;
		accumulate(y, seeds[k]);
		if (y->node && (!start || y->node->index > start->index))
			start = y->node;
	}
	/* no node before the first of the step that reads an input asked about
	 * can lead to one: the walk ends there, not at the tape's start, so a
	 * pass costs the nodes of its own graph, not the whole step's (the rows
	 * of a Jacobian, gradients taken in a loop, over a long tape) */
	uint64_t gen = ctx->gen, stamp = ++ctx->walk_stamp, low = UINT64_MAX;
	for (int i = 0; i < ctx->walk->nin; i++) {
		const tg_tensor *x = ctx->walk->in[i];
		if (x->use_gen == gen && x->first_use < low)
			low = x->first_use;
	}
	tg_node *below = mark_reaching(ctx->walk, start, low, stamp);
	for (tg_node *n = start; n != below && ctx->status == TG_OK; n = n->prev) {
		if (!n->walk_grad || n->walk_reach != stamp)
			continue;
		if (!versions_intact("tg_grad_of", n))
			break;
		n->op->backward(n, n->walk_grad);
		if (step_ended(ctx, gen, "tg_grad_of", n->op))
			break;
	}
}

/* Whether x may be an input of n or of a node before it: no node of the
 * step before x's first reader (tg_tensor.first_use) reads it. */
static bool read_from(const tg_ctx *ctx, const tg_tensor *x, const tg_node *n)
{
	return x->use_gen == ctx->gen && n->index >= x->first_use;
}

/* For an input the walk gave no gradient: the node whose rule ran (it had
 * an upstream gradient) and, though x is its input that needs one, handed
 * it none, a custom rule that skips tg_node_grad (the library's own rules
 * skip an input only where their derivative in it is zero: relu_backward's
 * x); NULL when there is none. */
static TG_SLOW const tg_node *silent_rule(const tg_ctx *ctx, const tg_tensor *x)
{
	size_t nops;
	const tg_op *const *builtin = tg_op_registry(&nops);
	for (const tg_node *n = ctx->tape; n && read_from(ctx, x, n); n = n->prev) {
		if (n->walk_reach != ctx->walk_stamp || !n->walk_grad)
			continue;
		bool reads_x = false;
		for (int k = 0; k < n->nin && !reads_x; k++)
			reads_x = n->in[k] == x && tg_node_wants(n, k);
		bool own = false;
		for (size_t k = 0; k < nops && reads_x && !own; k++)
			own = builtin[k] == n->op;
		if (reads_x && !own)
			return n;
	}
	return NULL;
}

/* Whether x is on the outputs' recorded graph: an input that needs a
 * gradient of a node from which an output is made. The nodes are marked
 * from the latest down (walk_live = the walk's stamp), each by a later one
 * that reads its output, as PyTorch's graph holds them; an x found so, but
 * given no gradient, is reached only where the derivative is zero. */
static TG_SLOW bool on_outputs_graph(tg_ctx *ctx, const tg_tensor *x, int nout,
				     tg_tensor *const *outputs)
{
	const uint64_t stamp = ctx->walk_stamp;
	for (int k = 0; k < nout; k++)
		if (outputs[k]->node)
			outputs[k]->node->walk_live = stamp;
	for (tg_node *n = ctx->tape; n && read_from(ctx, x, n); n = n->prev) {
		if (n->walk_live != stamp)
			continue;
		for (int k = 0; k < n->nin; k++) {
			if (!tg_node_wants(n, k))
				continue;
			if (n->in[k] == x)
				return true;
			if (n->in[k]->node)
				n->in[k]->node->walk_live = stamp;
		}
	}
	return false;
}

/* Input i's gradient as a tensor of its own: a zero one when unused (if
 * allowed) or when the outputs reach it through the library's ops only
 * where their derivative in it is zero (as PyTorch gives zeros for the x
 * of relu's gradient), a copy when it is an upstream gradient or another
 * input's. */
static tg_tensor *grad_of_result(tg_ctx *ctx, tg_walk *w, int i, int nout,
				 tg_tensor *const *outputs, tg_tensor *const *seeds,
				 tg_tensor **grads, unsigned flags)
{
	tg_tensor *x = w->in[i];
	/* a leaf given twice: its slot is the first */
	tg_tensor *g = x->node ? x->node->walk_grad : w->leaf_grad[walk_input(w, x)];
	if (!g) {
		if (flags & TG_ALLOW_UNUSED)
			return tg_zeros(ctx, x->dtype, x->ndim, x->shape);
		bool history = false;
		for (int k = 0; k < nout; k++)
			history = history || outputs[k]->requires_grad;
		char a[TG_SHAPE_STR];
		if (!history)
			return tg_fail(ctx, TG_EARG,
				       "tg_grad_of: input %d %s is not used by the outputs: none has "
				       "history (each was made with grad mode off, or from no tensor "
				       "that requires a gradient; a gradient taken under "
				       "TG_CREATE_GRAPH has none where it is piecewise constant, as "
				       "through a max or a clamp alone, its derivative zero); "
				       "TG_ALLOW_UNUSED gives zeros",
				       i, tg_shape_fmt(x->ndim, x->shape, a));
		const tg_node *n = silent_rule(ctx, x);
		if (!n && on_outputs_graph(ctx, x, nout, outputs))
			return tg_zeros(ctx, x->dtype, x->ndim, x->shape); /* zero derivative */
		if (n)
			return tg_fail(ctx, TG_EARG,
				       "tg_grad_of: input %d %s is an input of %s on the outputs' "
				       "path, but its backward rule handed it no gradient "
				       "(tg_node_grad)",
				       i, tg_shape_fmt(x->ndim, x->shape, a), n->op->name);
		return tg_fail(ctx, TG_EARG,
			       "tg_grad_of: input %d %s is not used by the outputs (pass "
			       "TG_ALLOW_UNUSED for a zero gradient)",
			       i, tg_shape_fmt(x->ndim, x->shape, a));
	}
	bool shared = false;
	for (int k = 0; k < nout; k++)
		shared = shared || g == seeds[k];
	if (w->given.key)
		shared = shared || addr_index_find(&w->given, g) >= 0;
	for (int j = 0; j < i && !w->given.key; j++)
		shared = shared || g == grads[j];
	if (!shared) {
		if (w->given.key)
			addr_index_add(&w->given, g, i);
		return g;
	}
	return flags & TG_CREATE_GRAPH ? tg_sum_to(g, g->ndim, g->shape) : tg_detach(g);
}

/* A step copy of the n pointers at a (a itself when NULL or n < 1); NULL
 * and *ok false when there is no memory for it. */
static tg_tensor *const *args_copy(tg_ctx *ctx, tg_tensor *const *a, int n, bool *ok)
{
	if (!a || n < 1 || !*ok)
		return a;
	tg_tensor **c = tg_arena_alloc(ctx, (size_t)n * sizeof *c);
	if (!c) {
		*ok = false;
		return NULL;
	}
	memcpy(c, a, (size_t)n * sizeof *c);
	return c;
}

int tg_grad_of(int nout, tg_tensor *const *outputs, tg_tensor *const *douts, int nin,
	       tg_tensor *const *inputs, tg_tensor **grads, unsigned flags)
{
	tg_ctx *ctx = first_ctx(nout, outputs, nin, inputs);
	/* the arguments are read from copies, so that grads may be one of them
	 * (y = dy/dx written over y), and then grads is cleared: all NULL on
	 * every failure, an earlier error's included */
	bool ok = ctx && ctx->status == TG_OK;
	outputs = args_copy(ctx, outputs, nout, &ok);
	douts = args_copy(ctx, douts, nout, &ok);
	inputs = args_copy(ctx, inputs, nin, &ok);
	if (grads)
		for (int i = 0; i < nin; i++)
			grads[i] = NULL;
	if (!ok)
		return -1;
	if (grad_of_check(ctx, nout, outputs, douts, nin, inputs, grads, flags))
		return -1;
	if (ctx->walk) {
		/* the two walks would share the nodes' walk_grad */
		tg_fail(ctx, TG_EARG,
			"tg_grad_of: called during another tg_grad_of's walk (from a backward "
			"rule)");
		return -1;
	}
	tg_tensor **leaf_grad = tg_arena_alloc(ctx, (size_t)nin * sizeof *leaf_grad);
	tg_tensor **seeds = tg_arena_alloc(ctx, (size_t)nout * sizeof *seeds);
	if (!leaf_grad || !seeds)
		return -1;
	for (int i = 0; i < nin; i++)
		leaf_grad[i] = NULL;
	tg_walk w = { nin, inputs, leaf_grad, NULL, { 0 }, { 0 } };
	if (nin >= ADDR_INDEX_MIN) {
		if (!addr_index_init(ctx, &w.asked, (size_t)nin) ||
		    !addr_index_init(ctx, &w.given, (size_t)nin))
			return -1;
		for (int i = 0; i < nin; i++)
			addr_index_add(&w.asked, inputs[i], i);
	}

	bool was = ctx->grad_enabled, was_in_backward = ctx->in_backward;
	ctx->grad_enabled = (flags & TG_CREATE_GRAPH) != 0;
	ctx->in_backward = true;
	ctx->walk = &w;
	uint64_t gen = ctx->gen;
	grad_of_walk(ctx, nout, outputs, douts, seeds);
	ctx->walk = NULL;
	for (int i = 0; i < nin && ctx->status == TG_OK; i++)
		grads[i] = grad_of_result(ctx, &w, i, nout, outputs, seeds, grads, flags);
	for (tg_node *n = w.touched; n && ctx->gen == gen; n = n->walk_next)
		n->walk_grad = NULL;
	ctx->in_backward = was_in_backward; /* a rule of tg_backward may call it */
	ctx->grad_enabled = was;
	if (ctx->status != TG_OK) {
		for (int i = 0; i < nin; i++)
			grads[i] = NULL;
		return -1;
	}
	return 0;
}

/* ---- the end of a step ---------------------------------------------------------------- */

/* A ctx tensor's gradient from a TG_CREATE_GRAPH backward is a step tensor
 * (it has history): before the step ends its values move into the tensor's
 * own buffer, so that gradients go on accumulating over steps until
 * tg_zero_grad, as they do without TG_CREATE_GRAPH. When no buffer can be
 * made (an error already set, or out of memory: tg_keep says so in ctx)
 * the gradient is gone, and marked lost as a failed walk marks one, so
 * that tg_grad, tg_backward and the optimizers refuse it until
 * tg_zero_grad instead of reading no gradient at all. */
static void keep_step_grad(tg_tensor *t)
{
	tg_tensor *g = t->grad;
	if (!g || g == t->grad_store)
		return;
	tg_unlazy(g);
	t->grad = NULL;
	if (!t->grad_store) {
		t->grad_store = tg_keep(g);
		t->grad = t->grad_store;
		if (!t->grad_store)
			t->grad_lost = t->grad_unkept = t->ctx->grads_lost = true;
		return;
	}
	memcpy(t->grad_store->data, g->data, t->numel * tg_dtype_size(t->dtype));
	t->grad_store->version++;
	t->grad = t->grad_store;
	t->store_blank = false;
}

void tg_reset(tg_ctx *ctx)
{
	if (!ctx)
		return;
	if (ctx->kept_step_grad) {
		for (tg_tensor *t = ctx->kept; t; t = t->next_kept)
			keep_step_grad(t);
		ctx->kept_step_grad = false;
	}
	ctx->gen++;
	ctx->tape = NULL;
	ctx->tape_len = 0;
	tg_arena_reset(ctx);
}

/* ---- the op registry --------------------------------------------------------------- */

extern const tg_op *const __start_tg_op_registry[] __attribute__((weak));
extern const tg_op *const __stop_tg_op_registry[] __attribute__((weak));

extern const tg_op *const __start_tg_op_uniform[] __attribute__((weak));
extern const tg_op *const __stop_tg_op_uniform[] __attribute__((weak));

bool tg_op_reads_uniform(const tg_op *op)
{
	for (const tg_op *const *p = __start_tg_op_uniform; p && p < __stop_tg_op_uniform; p++)
		if (*p == op)
			return true;
	return false;
}

const tg_op *const *tg_op_registry(size_t *n)
{
	*n = __start_tg_op_registry ? (size_t)(__stop_tg_op_registry - __start_tg_op_registry) : 0;
	return __start_tg_op_registry;
}
