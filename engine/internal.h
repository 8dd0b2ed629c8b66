/*
 * internal.h - what engine/, ops/ and nn/ share behind the public header.
 *
 * Struct layouts, the node, the arena and the small op interface live here.
 * Users never see this file; nothing here is exported from the library.
 */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H

#include "tapegrad.h"

#include <stdarg.h>
#include <string.h> /* memcpy in TG_MAX_LANES */

#define TG_TENSOR_MAGIC 0x7461706567726164ull /* "tapegrad" */

/* A block of the step arena; blocks chain when one fills and are kept
 * across resets, so steady-state steps allocate nothing. */
typedef struct tg_block {
	struct tg_block *next;
	void *raw; /* what the allocator returned: the block is aligned inside it */
	size_t size;  /* usable bytes after the header */
	size_t used;
	uint32_t idle; /* resets since a step last used it */
} tg_block;

/* The fallback for step tensor headers when no range of address space could
 * be reserved (tg_headers): a ring of slots that goes on across resets
 * instead of rewinding. A header kept past its reset still holds its own
 * (old) generation until the ring comes round (never within one reset), so
 * stale use is caught until then, and a slot only ever holds headers of this
 * context. */
typedef struct tg_slots {
	struct tg_slots *next;  /* circular */
	size_t n;
	tg_tensor *slot;        /* n headers */
} tg_slots;

/* Step tensor headers. Each context reserves a large range of address space
 * and hands headers out at a cursor that only moves forward, so a header's
 * address is never given to another tensor until the cursor has gone round
 * the whole range (see arena.c for how long that takes): a kept handle
 * finds its own header, with its old generation, or zeros where its page
 * was given back, which tg_tensor_check traces to the context by address.
 * (tg_arena_rewind moves it back within a step, over headers that no
 * handle outlives.)
 * Positions are byte offsets that only grow ("monotonic"); the address of
 * offset o is base + o mod bytes. */
typedef struct tg_headers {
	tg_tensor *next;      /* the next header to hand out */
	tg_tensor *limit;     /* next may go up to here without the slow path */
	tg_tensor *base;      /* the range; NULL when the ring is used */
	size_t bytes;         /* its length, a multiple of grain */
	uint64_t grain;       /* pages go back in aligned pieces of this size */
	size_t cap;           /* headers in one lap of the range */
	uint64_t lap;         /* times the cursor went round */
	uint64_t lap_start;   /* monotonic offset of base in this lap */
	uint64_t step_start;  /* monotonic offset of this step's first header */
	uint64_t prev_start;  /* and of the previous step's */
	uint64_t released;    /* pages before this offset were given back */
	uint64_t ready;       /* pages moved ahead of the cursor end here */
	uint64_t small_end;   /* with huge pages: pages before this offset are
			       * small ones, dropped rather than moved */
	bool huge_asked;      /* the cursor has passed 1 MiB: huge pages asked for */
	bool huge;            /* and the system took the request */
	uint64_t given_back;  /* bytes given back over the context's life */
	tg_ctx *reg_next;     /* the process-wide list of ranges (arena.c) */
	tg_slots *ring;       /* fallback: block holding the next header slot */
	size_t ring_pos;      /* next slot in it */
	size_t ring_size;     /* slots over all blocks */
} tg_headers;

typedef struct tg_arena {
	tg_block *head;     /* first block */
	tg_block *cur;      /* block being filled */
	size_t used;        /* bytes in use this step, over all blocks */
	size_t high_water;  /* most bytes in use at once in an earlier step, or
			     * before a rewind (tg_arena_rewind) in this one */
	size_t limit;       /* 0: none; else TG_ENOMEM beyond it */
	size_t reserved;    /* bytes of all blocks */
	uint64_t epoch;     /* bumped by every reset and rewind: memory handed out
			     * before may be handed out again after */
	tg_headers hdr;     /* step tensor headers */
} tg_arena;

/* Where the step arena and the header cursor stood (tg_arena_mark_take), for
 * tg_arena_rewind to give back what was handed out after. */
typedef struct tg_arena_mark {
	tg_block *cur;
	size_t cur_used;     /* cur's used */
	size_t used;
	tg_tensor *hdr_next; /* the header cursor; NULL with the ring */
	uint64_t hdr_lap;
} tg_arena_mark;

struct tg_tensor {
	uint64_t magic;      /* TG_TENSOR_MAGIC while alive */
	uint64_t gen;        /* ctx->gen at creation; 0 for ctx tensors */
	tg_ctx *ctx;
	tg_dtype dtype;
	int ndim;
	size_t numel;
	void *data;
	tg_tensor *grad;     /* see tg_grad */
	tg_tensor *grad_store; /* a parameter's ctx gradient buffer, reused */
	tg_node *node;       /* producer; NULL for leaves */
	uint32_t version;    /* bumped by every in-place change */
	uint32_t uniform_at; /* see tg_is_uniform */
	uint32_t finite_at;  /* see tg_known_finite */
	uint32_t tame_at;    /* see tg_known_tame */
	bool lazy_fill;      /* uniform, with element 0 alone written (tg_unlazy) */
	bool requires_grad;
	bool persistent;     /* ctx lifetime */
	bool consumed;       /* an input of a recorded node */
	bool decay;          /* weight decay applies (tg_set_decay) */
	bool lent;           /* data handed out writable (tg_data_mut): it may
			      * change later without a version bump */
	bool touched;        /* a leaf given a gradient by the tg_backward under way */
	bool grad_changed;   /* and its earlier gradient was added to in place */
	bool grad_lost;      /* a failed tg_backward left the gradient partly
			      * accumulated: refused until tg_zero_grad */
	bool grad_unkept;    /* ... or, with grad_lost, tg_reset could not keep
			      * a TG_CREATE_GRAPH gradient and dropped it */
	bool store_blank;    /* grad_store made by a walk that gave the leaf no
			      * gradient (it failed): tg_grad reads NULL, not zeros */
	bool grad_zeroed;    /* tg_zero_grad cleared a gradient that had no buffer
			      * (a TG_CREATE_GRAPH one, this step): tg_grad reads
			      * zeros, as it does from a cleared buffer */
	bool shares;         /* its data is another step tensor's too (a reshape's
			      * output, or what was reshaped): a write through
			      * tg_data_mut or tg_assign gets a copy of its own
			      * first (tg_tensor_own) */
	bool written_later;  /* the engine writes its data in place after it is
			      * made (a leaf's gradient buffer): never shared */
	bool grad_own;       /* an intermediate whose grad is a tensor the plain
			      * tg_backward under way made for it alone (a sum):
			      * later gradients may be added to it in place */
	char *name;
	tg_tensor *next_kept; /* ctx tensors, for tg_ctx_free and tg_zero_grads */
	uint64_t use_gen;    /* the step in which first_use was set */
	uint64_t first_use;  /* the index of the first node of step use_gen that
			      * reads this tensor: none earlier can (indices
			      * only grow within a step), so tg_grad_of's walk
			      * stops there */
	const tg_node *last_use; /* during a tg_backward with a grad_ready hook: the
				  * earliest node that uses this leaf */
	tg_tensor *grad_before;  /* touched: the gradient when the walk began */
	tg_tensor *next_touched; /* touched: the walk's list of such leaves */
	double small[2];     /* a step tensor's data when it fits: no arena block */
	/* last, so that the fields every op reads share the first cache lines
	 * whatever TG_MAX_DIMS is; ndim entries are set */
	int64_t shape[TG_MAX_DIMS];
};

struct tg_node {
	const tg_op *op;
	tg_node *prev;       /* tape order: the node recorded before this one */
	uint64_t index;      /* position on the tape, for graph export */
	int nin;
	int nattr;           /* attributes recorded; tg_node_attr reads no others */
	tg_tensor *in[TG_MAX_INPUTS];
	uint32_t in_version[TG_MAX_INPUTS];
	bool needs[TG_MAX_INPUTS];
	tg_tensor *out;
	uint32_t out_version;
	double attr[TG_MAX_ATTRS];
	const void *aux;     /* op-owned saved data in the step arena (indices) */
	tg_tensor *walk_grad; /* out's gradient during a tg_grad_of walk, else NULL */
	tg_node *walk_next;  /* the nodes given a walk_grad, to clear after the walk */
	/* the stamp of the tg_grad_of walk that found this node's rule can hand
	 * a gradient on to one of its inputs; anything else: it cannot */
	uint64_t walk_reach;
	uint64_t walk_live; /* that walk's stamp: an output is made from this node */
	tg_tensor *in_grad[TG_MAX_INPUTS]; /* gradient handed to each input by the
					    * latest backward, for graph export */
};

struct tg_ctx {
	tg_allocator alloc;
	tg_arena arena;
	uint64_t gen;        /* bumped by tg_reset */
	tg_node *tape;       /* last node recorded */
	uint64_t tape_len;
	tg_tensor *kept;     /* every ctx tensor */
	uint64_t rng[4];     /* xoshiro256** state */
	bool grad_enabled;
	bool anomaly;
	bool abort_on_error;
	bool in_backward;
	bool kept_step_grad; /* a ctx tensor holds a step gradient: tg_reset keeps its values */
	bool grads_lost;     /* a failed tg_backward marked a gradient lost: backward looks */
	tg_tensor *touched;  /* leaves the tg_backward under way has given a gradient */
	struct tg_walk *walk; /* set during a tg_grad_of walk: gradients go there */
	uint64_t custom_nodes; /* nodes tg_record has recorded: custom ops' rules
				* may keep what they make (autograd.c) */
	uint64_t walk_stamp; /* bumped by each tg_grad_of walk (tg_node.walk_reach) */
	/* armed by TG_NODE_GRAD_INTO: the next tensor made of its shape and
	 * dtype gets this leaf gradient buffer's memory (tensor.c's make) */
	tg_tensor *grad_dest;
	tg_grad_ready_fn grad_ready; /* tg_set_grad_ready; NULL: none */
	void *grad_ready_user;
	int threads;
	/* state an ops kernel keeps per context (oneDNN's primitives, in
	 * ops/conv_dnnl.c), freed by its own function in tg_ctx_free */
	void *kernel_cache;
	void (*kernel_cache_free)(tg_ctx *ctx, void *cache);
	tg_conv_kernels conv; /* tg_set_conv_kernels; TG_CONV from the environment */
	bool sgemm_blas;  /* TG_SGEMM=openblas when made: f32 products stay on OpenBLAS */
	tg_status status;
	/* room for a path of PATH_MAX bytes and its reason; a longer message
	 * keeps its start and its end (tg_failv) */
	char message[8192];
};

/* A slow path kept out of line, so that its caller's common path needs no
 * stack frame and reaches it by a tail call. */
#define TG_SLOW __attribute__((cold, noinline))

#include "hot_loop.h" /* TG_HOT_LOOP */

/* tg_node_grad(n, i, dx) for a rule whose expression dx computes input i's
 * gradient in ops: when the input is a leaf taking its first gradient of
 * the step (tg_node_grad_buffer gives its buffer), the first tensor of the
 * input's shape and dtype that dx makes is made in that buffer, so that
 * when it is dx's last op's output, nothing is copied. dx may read that
 * tensor while it is evaluated, not after: an intermediate that took the
 * buffer is overwritten by the copy of the result. */
#define TG_NODE_GRAD_INTO(n, i, dx)                                                    \
	((n)->in[i]->numel >= TG_GRAD_INTO_MIN                                         \
		 ? tg_node_grad_into((n), (i), (tg_grad_dest_arm((n), (i)), (dx)))    \
		 : tg_node_grad((n), (i), (dx)))
/* Below this many elements copying a gradient costs less than arming (the
 * scalar graphs of tests/bench's W4 took 0.12 or 0.22 us per step with
 * every gradient armed, 0.12 without). */
enum { TG_GRAD_INTO_MIN = 512 };
void tg_grad_dest_arm(tg_node *n, int i);
void tg_node_grad_into(tg_node *n, int i, tg_tensor *dx); /* disarms, then tg_node_grad */
/* True when input i has taken no gradient yet in this backward (or the
 * walk drops its gradient): the next tg_node_grad is kept as it is, not
 * added to an earlier one. */
bool tg_node_grad_first(const tg_node *n, int i);
/* For a rule that can add input i's gradient dx into the gradient the input
 * already holds, in a pass of its own kernel: that gradient's buffer, when
 * tg_node_grad(n, i, dx) would add dx to it in place (a leaf's second
 * gradient of a training step); NULL otherwise, and the rule hands dx on as
 * usual. A rule that got the buffer adds every element of dx to it, as
 * tg_add_arrays(buffer, dx) would, and then calls tg_node_grad_summed. For
 * inputs of TG_GRAD_INTO_MIN elements or more: the graph export shows the
 * edge with the sum, by its shape. */
tg_tensor *tg_node_grad_sum_buffer(tg_node *n, int i);
void tg_node_grad_summed(tg_node *n, int i);
/* For a rule whose gradient for input i is zero outside a part of the
 * input (a slice's): a tensor of the input's shape and dtype that holds its
 * gradient so far, zeros where it has none, for the rule to add its part
 * into in place and then call tg_node_grad_summed; NULL otherwise, and the
 * rule hands dx on as usual. Offered in a plain tg_backward (no walk, no
 * TG_CREATE_GRAPH, no anomaly check): a leaf's own buffer (cleared here on
 * its first gradient, as tg_node_grad_buffer's is not), or an
 * intermediate's gradient made for it alone (made here, zeros or a copy of
 * what it holds, on the first call), so that k parts added one after
 * another cost one clearing and the parts, not k tensors of the input's
 * size and k sums. For inputs of TG_GRAD_INTO_MIN elements or more, as
 * tg_node_grad_sum_buffer. */
tg_tensor *tg_node_grad_add_buffer(tg_node *n, int i);

/* ---- memory --------------------------------------------------------------- */

void *tg_ctx_alloc(tg_ctx *ctx, size_t size);  /* ctx allocator; records ENOMEM */
void tg_ctx_release(tg_ctx *ctx, void *p);
/* Reserves the header range (TG_HEADER_SPACE bytes when set, 0 for the
 * ring) and registers it; the ring when no size can be reserved. */
void tg_arena_init(tg_ctx *ctx);
void tg_arena_reset(tg_ctx *ctx);
void tg_arena_free(tg_ctx *ctx);
TG_SLOW void *tg_arena_grow(tg_ctx *ctx, size_t size);  /* tg_arena_alloc's slow path */
/* Rewinding gives back, within one step, the memory and the tensor headers
 * handed out since a mark, so that they are handed out again: for the
 * passes of tg_jacobian and tg_hessian, once their values are copied out.
 * Only where nothing made after the mark can be reached any more (no node,
 * no tensor's field, no kernel's cache that outlives it points there):
 * a handle kept past the rewind would read another tensor's values, with
 * nothing to tell. Headers of the ring, or past a wrap of the range, are
 * not given back. Kernels that keep step memory across calls key it on
 * arena.epoch. */
void tg_arena_mark_take(const tg_ctx *ctx, tg_arena_mark *m);
void tg_arena_rewind(tg_ctx *ctx, const tg_arena_mark *m);
TG_SLOW tg_tensor *tg_arena_next_slot(tg_ctx *ctx);     /* tg_arena_header's */
/* The context whose header range holds p, NULL if none. Takes a lock: for
 * failure paths only. */
TG_SLOW tg_ctx *tg_arena_owner(const void *p);

/* Allocations are 16-byte aligned, and those of TG_LINE_MIN bytes or more
 * start on a cache line (blocks and their bases are aligned to TG_LINE):
 * rows of a tensor whose row length is a multiple of a line then start on
 * lines too, which a transpose past the cache needs (ops/transpose.c). */
enum { TG_ARENA_ALIGN = 16, TG_LINE = 64, TG_LINE_MIN = 512, TG_BLOCK_HEAD = TG_LINE };

/* Bytes to skip at offset used of a block before size bytes. */
static inline size_t tg_arena_pad(size_t used, size_t size)
{
	return size >= TG_LINE_MIN ? -used & (TG_LINE - 1) : 0;
}

/* Every op allocates, so the common cases are inline and call nothing: the
 * _fast forms return NULL where the full form would take its slow path. */

/* size bytes from the current block when it has room and no limit is set. */
static inline void *tg_arena_alloc_fast(tg_ctx *ctx, size_t size)
{
	tg_arena *a = &ctx->arena;
	tg_block *b = a->cur;
	if (!b || a->limit || size > b->size)
		return NULL; /* (a size near SIZE_MAX would round to 0 below) */
	size_t pad = tg_arena_pad(b->used, size);
	size_t n = pad + ((size + TG_ARENA_ALIGN - 1) & ~(size_t)(TG_ARENA_ALIGN - 1));
	if (n - 1 >= b->size - b->used)
		return NULL;
	void *p = (char *)b + TG_BLOCK_HEAD + b->used + pad;
	b->used += n;
	a->used += n;
	return p;
}

/* Step memory, 16-byte aligned (a line from TG_LINE_MIN bytes on). */
static inline void *tg_arena_alloc(tg_ctx *ctx, size_t size)
{
	void *p = tg_arena_alloc_fast(ctx, size);
	return p ? p : tg_arena_grow(ctx, size);
}

/* n1 * n2 * n3 elements of dt in the step arena (a kernel's scratch): a
 * product past what memory can hold is TG_ENOMEM naming who and the counts,
 * never wrapped round to a small block. NULL on error. */
void *tg_arena_array(tg_ctx *ctx, const char *who, tg_dtype dt, int64_t n1, int64_t n2,
		     int64_t n3);

/* The next header of the range: a bump. NULL at the end of the lap, where
 * the range has no room, and always with the ring. */
static inline tg_tensor *tg_arena_header_fast(tg_ctx *ctx)
{
	tg_headers *h = &ctx->arena.hdr;
	tg_tensor *t = h->next;
	if (t == h->limit)
		return NULL;
	h->next = t + 1;
	return t;
}

/* A step header slot, uninitialised: the caller sets every field. */
static inline tg_tensor *tg_arena_header(tg_ctx *ctx)
{
	tg_tensor *t = tg_arena_header_fast(ctx);
	return t ? t : tg_arena_next_slot(ctx);
}

/* ---- errors --------------------------------------------------------------- */

void *tg_failv(tg_ctx *ctx, tg_status code, const char *fmt, va_list ap);

/* ---- tensors -------------------------------------------------------------- */

static inline size_t tg_dtype_size(tg_dtype dt) { return dt == TG_F64 || dt == TG_I64 ? 8 : 4; }
static inline bool tg_dtype_is_float(tg_dtype dt) { return dt == TG_F32 || dt == TG_F64; }

/* A step tensor with uninitialised data. who names the caller for errors. */
tg_tensor *tg_tensor_new(tg_ctx *ctx, const char *who, tg_dtype dt, int ndim,
			 const int64_t *shape);
/* Same shape and dtype as like, uninitialised. */
tg_tensor *tg_tensor_like(const tg_tensor *like, const char *who);
/* A step tensor of x's dtype and the valid shape (ndim, shape): on x's data
 * from element off on, which holds as many elements as the shape (a
 * reshape, a slice of x's first axis of size above 1), when share is asked
 * and x can share it (out->shares); else a new one, uninitialised, for the
 * caller to fill. NULL on error (recorded). */
tg_tensor *tg_tensor_alias(tg_tensor *x, const char *who, bool share, size_t off, int ndim,
			   const int64_t *shape);
/* All of x's values in order under the valid shape (ndim, shape) of as
 * many elements (a reshape, a detach): shared where x can share them, else
 * copied. NULL on error (recorded). */
tg_tensor *tg_tensor_as(tg_tensor *x, const char *who, int ndim, const int64_t *shape);
/* t's data made its own (a copy) if it shares it, before a write; false
 * (recorded) when memory runs out. */
bool tg_tensor_own(tg_tensor *t, const char *who);
bool tg_tensor_alive(const tg_tensor *t);
static inline bool tg_same_shape(const tg_tensor *a, const tg_tensor *b)
{
	if (a->ndim != b->ndim)
		return false;
	for (int i = 0; i < a->ndim; i++)
		if (a->shape[i] != b->shape[i])
			return false;
	return true;
}
const char *tg_dtype_name(tg_dtype dt);
/* "(2,3)"; buf of TG_SHAPE_STR bytes, room for TG_MAX_DIMS sizes of 20
 * digits and a sign each, so that every shape is written whole */
enum { TG_SHAPE_STR = 176 };
char *tg_shape_fmt(int ndim, const int64_t *shape, char *buf);

/* ---- the op interface ------------------------------------------------------ */

/* Checks one tensor argument: NULL gives NULL; a stale tensor records
 * TG_ESTALE in its context (a header's address always belongs to one, also
 * once its page was given back). Returns
 * the tensor's context. Does not look at the error state. */
tg_ctx *tg_tensor_check(const char *who, const tg_tensor *t);
/* After tg_tensor_check(who, t) found t stale, for a call whose context is
 * ctx (NULL: none known): when t belongs to another context, ctx records
 * TG_ECTX too, naming the argument (fmt ...), so that ctx's caller does not
 * see a NULL with no error; the stale use itself stays in t's context. */
/* The context of the first of in[0..nin) that is neither NULL nor stale,
 * or NULL. */
tg_ctx *tg_first_live_ctx(int nin, tg_tensor *const *in);
TG_SLOW void tg_stale_elsewhere(tg_ctx *ctx, const char *who, const tg_tensor *t,
				const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Checks an op's inputs: none NULL, none stale, one context, one dtype, no
 * error already set. Returns the context, or NULL (after recording an error
 * where one is new) when the op must return NULL. */
tg_ctx *tg_op_begin(const char *who, int nin, tg_tensor *const *in);
/* tg_op_begin for functions that also take index tensors (all of one dtype):
 * keep, detach, assign. */
tg_ctx *tg_op_begin_any(const char *who, int nin, tg_tensor *const *in);
/* Reads an index tensor argument: idx must be an i32 or i64 tensor of this
 * context with count entries (any count when count < 0; ndim 1 unless
 * any_shape), each in [0, k). Returns a copy as int64_t in the step arena,
 * or NULL after recording which check failed. name is the argument's name
 * for messages ("labels", "idx"). */
const int64_t *tg_indices(tg_ctx *ctx, const char *who, const char *name, const tg_tensor *idx,
			  int64_t count, bool any_shape, int64_t k);
/* The losses over classes (tg_cross_entropy, tg_nll) take PyTorch's shapes:
 * x (C), (N,C) or (N,C,d1,...,dk) with the classes along axis 1 (axis 0 of
 * one sample (C)), and labels of the other axes' shape: (), (N) or
 * (N,d1,...,dk). tg_class_labels checks labels against x (xname names x in
 * messages) and returns them as tg_indices does, in the order of
 * tg_class_rows' rows; NULL after recording why. */
const int64_t *tg_class_labels(tg_ctx *ctx, const char *who, const char *xname,
			       const tg_tensor *x, const tg_tensor *labels);
/* x with its classes as rows (M,C), M the product of the other axes: x
 * itself when (N,C), else a recorded reshape (of a permute that moves the
 * class axis last, unless only axes of 1 follow it), so gradients of every
 * order flow back to x. */
tg_tensor *tg_class_rows(tg_tensor *x);
/* rows (M,C) of tg_class_rows(like) back in like's shape, recorded; NULL
 * for a NULL rows */
tg_tensor *tg_class_unrows(tg_tensor *rows, const tg_tensor *like);
/* A tensor seen along an axis as (outer, n, inner), in elements: n the
 * axis's length, outer and inner the products of the axes before and
 * after it. axis == ndim views a new last axis of 1. */
typedef struct tg_view {
	int64_t outer, n, inner;
} tg_view;
static inline tg_view tg_view_along(int ndim, const int64_t *shape, int axis)
{
	tg_view v = { 1, axis < ndim ? shape[axis] : 1, 1 };
	for (int i = 0; i < axis; i++)
		v.outer *= shape[i];
	for (int i = axis + 1; i < ndim; i++)
		v.inner *= shape[i];
	return v;
}
/* The shape of x reduced along axis a (a 1 there when keepdim) into
 * shape; returns its rank. */
static inline int tg_reduced_shape(const tg_tensor *x, int a, bool keepdim, int64_t *shape)
{
	int ndim = 0;
	for (int i = 0; i < x->ndim; i++)
		if (i != a)
			shape[ndim++] = x->shape[i];
		else if (keepdim)
			shape[ndim++] = 1;
	return ndim;
}
/* A constant one-hot (n,k) of dtype dt from checked labels. step */
tg_tensor *tg_one_hot_of(tg_ctx *ctx, tg_dtype dt, const int64_t *labels, int64_t n, int64_t k);
/* Records out as op(in...) when grad mode is on and an input needs a
 * gradient; checks out for NaN/Inf in anomaly mode. Returns out or NULL. */
tg_tensor *tg_op_end(const tg_op *op, tg_tensor *out, int nin, tg_tensor *const *in,
		     const double *attrs, int nattrs, const void *aux);
/* Whether tg_op_end will record an op of these (checked) inputs: grad
 * mode is on and one of them requires a gradient. For ops that save
 * something for their backward pass only when it will run. */
bool tg_op_records(const tg_ctx *ctx, int nin, tg_tensor *const *in);
/* Whether input i of n takes a gradient from the walk: it required one when
 * the op was recorded and still does. A leaf turned off since
 * (tg_set_requires_grad false) gets none, and no grad_ready report, as
 * PyTorch's AccumulateGrad skips a leaf that no longer requires grad; the
 * other inputs' gradients are as before. An intermediate always requires
 * one (tg_set_requires_grad refuses to turn it off). */
static inline bool tg_node_wants(const tg_node *n, int i)
{
	return n->needs[i] && n->in[i]->requires_grad;
}
/* An aux buffer in the step arena holding a copy of n bytes of src. */
const void *tg_save_aux(tg_ctx *ctx, const void *src, size_t n);
/* Takes the nodes recorded since the tape was `to` off it again (the
 * derivative functions' and the gradient check's own nodes): their outputs
 * are left without history, constants to any later op, since a walk over
 * the tape would no longer reach those nodes. same_step false (f called
 * tg_reset, and `to` went with its step): the tape is left empty. */
void tg_tape_cut(tg_ctx *ctx, tg_node *to, bool same_step);

/* Every built-in op descriptor registers itself here, so that the tests can
 * walk the list and fail on an op without a gradient-check row. */
#define TG_OP_REGISTER(var)                                                         \
	static const tg_op *const var##_registered                                  \
		__attribute__((used, section("tg_op_registry"), aligned(sizeof(void *)))) = &var
const tg_op *const *tg_op_registry(size_t *n);

/* The ops whose backward reads its dout only through tg_is_uniform's
 * paths (the binary kernels' one-value walks, tg_run_fused, div's one-pass
 * gradients), maps a lazy one as its one value (tg_uniform_value) or hands
 * it on with tg_node_grad, whatever its inputs' shapes: a uniform gradient
 * of such an op's output may be left with element 0 alone written
 * (tg_node_grad_expand). */
#define TG_OP_READS_UNIFORM(var)                                                    \
	static const tg_op *const var##_reads_uniform                               \
		__attribute__((used, section("tg_op_uniform"), aligned(sizeof(void *)))) = &var
bool tg_op_reads_uniform(const tg_op *op);

/* ---- describing an op's constants for graph export --------------------------- */

/* "<prefix><v>" with v in full (the shortest form that reads back the same). */
int tg_describe_num(char *buf, size_t size, const char *prefix, double v);
/* "<prefix>[v0, v1, ...]": up to 8 values, then the count. */
int tg_describe_ints(char *buf, size_t size, const char *prefix, const int64_t *v, int64_t n);

/* ---- broadcasting ---------------------------------------------------------- */

/* The output shape of broadcasting a and b (NumPy rules), right-aligned to
 * TG_MAX_DIMS with strides that are 0 along broadcast axes. */
typedef struct tg_bcast {
	int ndim;                     /* of the output */
	int64_t shape[TG_MAX_DIMS];   /* output shape, ndim entries */
	int64_t dim[TG_MAX_DIMS];     /* output shape padded on the left with 1s */
	int64_t sa[TG_MAX_DIMS];      /* element strides of a, 0 where broadcast */
	int64_t sb[TG_MAX_DIMS];
} tg_bcast;
bool tg_broadcast(const tg_tensor *a, const tg_tensor *b, tg_bcast *bc);

/* True while every element of t equals its first: tg_expand of one element
 * (a sum's or a mean's backward) sets uniform_at to version + 1 on a
 * tensor of its own memory, and any in-place change bumps the version.
 * The binary kernels and the fused backward ops then read that element
 * alone instead of the whole tensor, with the same bits. */
static inline bool tg_is_uniform(const tg_tensor *t)
{
	return t->uniform_at != 0 && t->uniform_at == t->version + 1;
}

/* "nan", "inf" or "-inf" for the first value of float tensor t that is not
 * finite, NULL if all are (the anomaly checks', tape.c). */
const char *tg_nonfinite(const tg_tensor *t);

/* True while every element of t is known to be finite (no NaN, no inf):
 * a rule that has summed all of t and found the sum finite (conv2d's bias
 * gradient) notes it with tg_note_finite, and any in-place change bumps the
 * version. A kernel that must refuse NaN and inf (oneDNN's padded weight
 * gradient) then skips its own pass over t. Not noted for data lent by
 * tg_data_mut, which may change without a version bump. */
static inline bool tg_known_finite(const tg_tensor *t)
{
	return t->finite_at != 0 && t->finite_at == t->version + 1;
}
static inline void tg_note_finite(tg_tensor *t)
{
	if (!t->lent)
		t->finite_at = t->version + 1;
}

/* True while every element of t is known to be finite and below 2^40 in
 * magnitude (oneDNN's Winograd kernels take such inputs only: see
 * ops/conv_dnnl.c), found by a kernel's own pass over t and noted for the
 * next kernel that takes t at the same version. A note about t's data, not
 * a change to it: it may be made through a const pointer. Tame is finite
 * too. Never noted for lent data. */
static inline bool tg_known_tame(const tg_tensor *t)
{
	return t->tame_at != 0 && t->tame_at == t->version + 1;
}
static inline void tg_note_tame(const tg_tensor *t)
{
	if (!t->lent) {
		tg_tensor *n = (tg_tensor *)t;
		n->tame_at = n->finite_at = t->version + 1;
	}
}

/* A sum's or a mean's backward hands its input the gradient c (one
 * element) expanded to the input's shape. When the input is an
 * intermediate whose op reads a uniform dout (TG_OP_READS_UNIFORM), taking
 * its first gradient in a plain tg_backward, the expanded tensor is made
 * lazily: uniform, with only element 0 written (the rest poisoned with
 * NaN in unoptimised builds), until tg_unlazy fills it. Every path
 * that could read more of it fills it first: a second gradient added to
 * it, a gradient of another shape, a leaf's buffer, a walk, tg_grad and a
 * backward rule not in the list. (The binary kernels, where and clamp
 * read it as its one value, in a broadcast too.) Otherwise as
 * TG_NODE_GRAD_INTO(n, i, tg_expand(c, shape of input i)). */
void tg_node_grad_expand(tg_node *n, int i, tg_tensor *c);
/* A lazy u's one value as a tensor of one element (0 dimensions), for a
 * rule that maps its dout element by element (neg, mul_scalar, sub) to
 * apply the map once and hand the result on with tg_node_grad_expand. */
tg_tensor *tg_uniform_value(const tg_tensor *u);
TG_SLOW void tg_fill_lazy(tg_tensor *t);
static inline void tg_unlazy(tg_tensor *t)
{
	if (t && t->lazy_fill)
		tg_fill_lazy(t);
}

/* Walks the rows of a padded shape: idx counts over the axes [0, naxes) of
 * dim, the last fastest, and each step moves the offsets *oa and *ob by the
 * strides sa and sb of the axes it turns (back to the row start of an axis
 * that wraps). A loop over all but the innermost axis of any number of
 * dimensions, with the innermost one left to a contiguous loop. */
static inline void tg_rows_next(int naxes, const int64_t *dim, int64_t *idx, const int64_t *sa,
				int64_t *oa, const int64_t *sb, int64_t *ob)
{
	for (int k = naxes - 1; k >= 0; k--) {
		*oa += sa[k];
		*ob += sb[k];
		if (++idx[k] < dim[k])
			return;
		idx[k] = 0;
		*oa -= sa[k] * dim[k];
		*ob -= sb[k] * dim[k];
	}
}

/* Where tg_rows_next stands at row r: idx, and the offsets *oa and *ob
 * from 0, for a part of a split loop that starts at row r. */
static inline void tg_rows_seek(int naxes, const int64_t *dim, int64_t r, int64_t *idx,
				const int64_t *sa, int64_t *oa, const int64_t *sb, int64_t *ob)
{
	*oa = *ob = 0;
	for (int k = naxes - 1; k >= 0; k--) {
		idx[k] = r % dim[k];
		r /= dim[k];
		*oa += idx[k] * sa[k];
		*ob += idx[k] * sb[k];
	}
}

/* ---- summing runs in double ------------------------------------------------------ */
/* inlined into each caller's copy (TG_HOT_LOOP): an out-of-line copy is the
 * baseline one, whatever the caller's (a tg_sum_run left out of line by
 * GCC, in softmax.c, made log-softmax over rows of 10 take 2.5 times as
 * long). Empty under AddressSanitizer. */
#if defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define TG_ALWAYS_INLINE __attribute__((always_inline))
#else
#define TG_ALWAYS_INLINE
#endif

/* A run (one row, one whole block) is summed in TG_LANES interleaved partial
 * sums, not one chain of dependent additions (an addition's latency per
 * element); columns (tg_add_rows) add their rows in order, vectorised
 * across the columns. Either way a sum depends only on its terms and how
 * they fall into runs and rows, never on the thread count. Sixteen lanes
 * of doubles fill two AVX-512 registers: with eight, GCC's AVX-512 copies
 * of the loops kept them in one AVX2 register (huber's sum over (512,784)
 * floats 101 -> 58 us); the AVX2 and baseline copies run them as four and
 * eight registers at the speed of eight lanes, and every copy adds in the
 * same order, so the bits are the same on every CPU. */
enum { TG_LANES = 16 };

/* The sixteen lanes of a sum: lane k + 8 added to lane k (one vector
 * addition), then the eight added pairwise. */
static inline double tg_sum_lanes(const double l[TG_LANES])
{
	double h[8];
	for (int k = 0; k < 8; k++)
		h[k] = l[k] + l[k + 8];
	return ((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7]));
}

/* start + X[0] + ... + X[n-1] in TG_LANES interleaved partial sums (X[k]
 * into lane k % TG_LANES), added pairwise at the end: the same bits for the
 * same run, but not those of the plain left-to-right loop. TG_SUM_RUN_OF
 * sums AT(k, j) over k instead, with the parameters PARAMS, where j is the
 * index of the element summed into (0 here; a column for TG_ADD_ROWS_OF):
 * TG_SUM_RUN the elements of X; TG_SUM_RUN_PRODUCT the products X[k] Y[k]
 * and TG_SUM_RUN_QUOTIENT X[k] (Y[k] / S[j]), each operation rounded to
 * the dtype (in ISO C nothing contracts it into the addition), and so
 * summed with the bits of a run of tg_mul's output (of tg_div's). */
#define TG_UNPAREN(...) __VA_ARGS__
#define TG_AT_X(k, j) X[k]
#define TG_AT_XY(k, j) (X[k] * Y[k])
#define TG_AT_XYS(k, j) (X[k] * (Y[k] / S[j]))
#define TG_SUM_RUN_OF(name, PARAMS, AT)                                              \
	static inline TG_ALWAYS_INLINE double name(double start, TG_UNPAREN PARAMS,  \
						   int64_t n)                        \
	{                                                                            \
		double l[TG_LANES] = { 0 };                                          \
		int64_t k = 0;                                                       \
		for (; k + TG_LANES <= n; k += TG_LANES)                             \
			for (int i = 0; i < TG_LANES; i++)                           \
				l[i] += AT(k + i, 0);                                \
		/* the rest into lanes 0 .. n - k - 1 and + 0 into the others,     \
		 * which is exact (a lane, a sum from +0, is never -0): indexed    \
		 * by a constant, the lanes stay in registers (by k % TG_LANES     \
		 * they went through memory, some 17 ns a run of 2 to 32) */        \
		for (int i = 0; i < TG_LANES; i++)                                   \
			l[i] += i < n - k ? (double)AT(k + i, 0) : 0.0;              \
		return start + tg_sum_lanes(l);                                      \
	}
#define TG_SUM_RUN(name, T) TG_SUM_RUN_OF(name, (const T *X), TG_AT_X)
#define TG_SUM_RUN_PRODUCT(name, T) TG_SUM_RUN_OF(name, (const T *X, const T *Y), TG_AT_XY)
#define TG_SUM_RUN_QUOTIENT(name, T)                                                 \
	TG_SUM_RUN_OF(name, (const T *X, const T *Y, const T *S), TG_AT_XYS)

/* tg_sum_run(0, X, n)'s bits for a run of n <= 8: the same lanes and
 * pairwise tree, less its + 0 for lanes 8 .. 15 (exact: a lane, a sum from
 * +0, is never -0). Inlined with a constant n into a loop over many runs,
 * it vectorises across them (reduce.c: a million sums of 2 floats took
 * 7 ms through tg_sum_run, a run at a time). */
#define TG_SUM_SHORT(name, T)                                                        \
	static inline TG_ALWAYS_INLINE double name(const T *X, int n)                \
	{                                                                            \
		double h[8];                                                         \
		for (int k = 0; k < 8; k++)                                          \
			h[k] = k < n ? 0.0 + X[k] : 0.0;                             \
		return 0.0 + (((h[0] + h[1]) + (h[2] + h[3])) +                      \
			      ((h[4] + h[5]) + (h[6] + h[7])));                      \
	}

/* The largest of X[0..n-1], n >= 1, in sixteen interleaved running maxima
 * (the plain loop is a chain of dependent compares). It differs from the
 * plain loop only in which zero, +0 or -0, a maximum of zero is, and in
 * whether a NaN in X is passed over or returned (the plain loop passes
 * over all but X[0]'s). The softmax rows use it as their shift, where
 * neither changes a value (a NaN in a row makes the whole row NaN anyway);
 * max_axis (reduce.c) restores the plain loop's zero and NaN after it. */
/* Not under AddressSanitizer: its fake stack frames (detect_stack_use_after_
 * return) do not keep the 64-byte alignment GCC gives vector locals and
 * arrays, and the aligned moves fault; that build takes the scalars, which
 * give the same bits. */
#if defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
/* The sixteen maxima in vectors of 32 bytes (I: the integer of T's size),
 * which every copy of a hot loop has (two SSE registers, one AVX2 or
 * AVX-512 one): GCC did not vectorise the loop of sixteen scalars (vmaxss,
 * a third of a softmax row's time). G_ groups of the sixteen, eight
 * vectors in all, run apart over blocks of 16 G_ elements and then meet,
 * so that the compares do not wait on one another; each lane is the same
 * x > l ? x : l select. */
#define TG_MAX_LANES(T, I, l, X, n, k)                                               \
	do {                                                                         \
		typedef T vec_ __attribute__((vector_size(32)));                     \
		typedef I ivec_ __attribute__((vector_size(32)));                    \
		enum { W_ = 32 / sizeof(T), NV_ = 16 / W_, G_ = 8 / NV_ };           \
		vec_ v_[G_][NV_], x_;                                                \
		memcpy(v_[0], X, sizeof v_[0]);                                      \
		if (n >= 16 * G_) {                                                  \
			for (int g_ = 1; g_ < G_; g_++)                              \
				memcpy(v_[g_], X + 16 * g_, sizeof v_[0]);           \
			for (k = 16 * G_; k + 16 * G_ <= n; k += 16 * G_)            \
				for (int g_ = 0; g_ < G_; g_++)                      \
					for (int i_ = 0; i_ < NV_; i_++) {           \
						memcpy(&x_, X + k + 16 * g_ + W_ * i_,  \
						       sizeof x_);                    \
						TG_MAX_SELECT(v_[g_][i_], x_, ivec_,  \
							      vec_);                  \
					}                                            \
			for (int g_ = 1; g_ < G_; g_++)                              \
				for (int i_ = 0; i_ < NV_; i_++)                     \
					TG_MAX_SELECT(v_[0][i_], v_[g_][i_], ivec_,  \
						      vec_);                         \
		}                                                                    \
		for (; k + 16 <= n; k += 16)                                         \
			for (int i_ = 0; i_ < NV_; i_++) {                           \
				memcpy(&x_, X + k + W_ * i_, sizeof x_);             \
				TG_MAX_SELECT(v_[0][i_], x_, ivec_, vec_);           \
			}                                                            \
		memcpy(l, v_[0], sizeof v_[0]);                                      \
	} while (0)
/* v = x > v ? x : v, lane by lane */
#define TG_MAX_SELECT(v, x, ivec, vec)                                               \
	do {                                                                         \
		ivec gt_ = (x) > (v);                                                \
		(v) = (vec)(((ivec)(x) & gt_) | ((ivec)(v) & ~gt_));                 \
	} while (0)
#else
#define TG_MAX_LANES(T, I, l, X, n, k) TG_MAX_SCALARS(T, l, X, n, k)
#endif
/* The sixteen maxima as sixteen scalars: shorter runs, where the vectors'
 * way back to scalars (through memory) cost more than it saved (rows of
 * 64 floats took half as long again). */
#define TG_MAX_SCALARS(T, l, X, n, k)                                                \
	do {                                                                         \
		for (int i = 0; i < 16; i++)                                         \
			l[i] = X[i];                                                 \
		for (; k + 16 <= n; k += 16)                                         \
			for (int i = 0; i < 16; i++)                                 \
				l[i] = X[k + i] > l[i] ? X[k + i] : l[i];            \
	} while (0)
enum { TG_MAX_LANES_MIN = 256 };
#define TG_MAX_RUN(name, T, I)                                                       \
	static inline TG_ALWAYS_INLINE T name(const T *X, int64_t n)                 \
	{                                                                            \
		if (n < 16) {                                                        \
			T m = X[0];                                                  \
			for (int64_t k = 1; k < n; k++)                              \
				m = X[k] > m ? X[k] : m;                             \
			return m;                                                    \
		}                                                                    \
		T l[16];                                                             \
		int64_t k = 16;                                                      \
		if (n >= TG_MAX_LANES_MIN)                                           \
			TG_MAX_LANES(T, I, l, X, n, k);                              \
		else                                                                 \
			TG_MAX_SCALARS(T, l, X, n, k);                               \
		for (; k < n; k++)                                                   \
			l[k % 16] = X[k] > l[k % 16] ? X[k] : l[k % 16];             \
		for (int w = 8; w >= 1; w /= 2)                                      \
			for (int i = 0; i < w; i++)                                  \
				l[i] = l[i + w] > l[i] ? l[i + w] : l[i];            \
		return l[0];                                                         \
	}

/* acc (n) += each row of X (rows of n, ld elements apart) in turn; four rows
 * per pass over acc. A column's sum has the same bits whichever columns
 * share the call, so columns may be split across threads. Over AT and
 * PARAMS as TG_SUM_RUN_OF: TG_ADD_ROWS_PRODUCT adds the rows of X Y,
 * TG_ADD_ROWS_QUOTIENT those of X (Y / S), S a row of n. */
#define TG_ADD_ROWS_OF(name, PARAMS, AT)                                             \
	static inline void name(double *acc, TG_UNPAREN PARAMS, int64_t rows,        \
				int64_t n, int64_t ld)                               \
	{                                                                            \
		int64_t r = 0, o = 0;                                                \
		for (; r + 4 <= rows; r += 4, o += 4 * ld)                           \
			for (int64_t j = 0; j < n; j++)                              \
				acc[j] = acc[j] + AT(o + j, j) + AT(o + ld + j, j)   \
					 + AT(o + 2 * ld + j, j) + AT(o + 3 * ld + j, j); \
		for (; r < rows; r++, o += ld)                                       \
			for (int64_t j = 0; j < n; j++)                              \
				acc[j] += AT(o + j, j);                              \
	}
#define TG_ADD_ROWS(name, T) TG_ADD_ROWS_OF(name, (const T *X), TG_AT_X)
#define TG_ADD_ROWS_PRODUCT(name, T) TG_ADD_ROWS_OF(name, (const T *X, const T *Y), TG_AT_XY)
#define TG_ADD_ROWS_QUOTIENT(name, T)                                                \
	TG_ADD_ROWS_OF(name, (const T *X, const T *Y, const T *S), TG_AT_XYS)
/* TG_ADD_ROWS_RELU adds the rows of relu_backward(X, Y), X where Y > 0
 * else +0, and writes each term to G as it goes: a select, as
 * tg_relu_backward's, so its bits. X is read whatever Y holds (an
 * argument, not an arm of ?:), so that the select is a blend. */
static inline float tg_relu_term_f32(float x, float y) { return y > 0 ? x : 0.0f; }
static inline double tg_relu_term_f64(double x, double y) { return y > 0 ? x : 0.0; }
#define TG_AT_RELU(k, j)                                                             \
	(G[k] = _Generic(X[k], float: tg_relu_term_f32, double: tg_relu_term_f64)(X[k], Y[k]))
#define TG_ADD_ROWS_RELU(name, T)                                                    \
	TG_ADD_ROWS_OF(name, (const T *X, const T *Y, T *restrict G), TG_AT_RELU)

TG_SUM_RUN(tg_sum_run_f64, double)
TG_SUM_RUN(tg_sum_run_f32, float)
TG_SUM_SHORT(tg_sum_short_f64, double)
TG_SUM_SHORT(tg_sum_short_f32, float)
TG_MAX_RUN(tg_max_run_f64, double, int64_t)
TG_MAX_RUN(tg_max_run_f32, float, int32_t)
TG_ADD_ROWS(tg_add_rows_f64, double)
TG_ADD_ROWS(tg_add_rows_f32, float)
TG_SUM_RUN_PRODUCT(tg_sum_run_product_f64, double)
TG_SUM_RUN_PRODUCT(tg_sum_run_product_f32, float)
TG_ADD_ROWS_PRODUCT(tg_add_rows_product_f64, double)
TG_ADD_ROWS_PRODUCT(tg_add_rows_product_f32, float)
TG_SUM_RUN_QUOTIENT(tg_sum_run_quotient_f64, double)
TG_SUM_RUN_QUOTIENT(tg_sum_run_quotient_f32, float)
TG_ADD_ROWS_QUOTIENT(tg_add_rows_quotient_f64, double)
TG_ADD_ROWS_QUOTIENT(tg_add_rows_quotient_f32, float)
TG_ADD_ROWS_RELU(tg_add_rows_relu_f64, double)
TG_ADD_ROWS_RELU(tg_add_rows_relu_f32, float)

/* ---- what the reverse walk needs (grad.c) ------------------------------------ */

/* Whether a rule may make its gradient with one of the fused kernels below
 * in place of its ops: in a plain backward (nothing recorded, no anomaly
 * check naming the ops) from a dout whose every element is written (not a
 * sum's lazy uniform). */
static inline bool tg_fused_sums_ok(const tg_tensor *dout)
{
	return !dout->ctx->grad_enabled && !dout->ctx->anomaly && !dout->lazy_fill;
}
/* tg_sum_to(tg_mul(x, y), ndim, shape) without the product's tensor, with
 * its bits: for x and y of one shape and float dtype (an input's gradient
 * in a broadcasting product's plain backward: dout times the other input).
 * Only where nothing is recorded (grad mode off); it has no rule. step */
tg_tensor *tg_sum_to_product(tg_tensor *x, tg_tensor *y, int ndim, const int64_t *shape);
/* tg_sum_to(tg_mul(x, tg_div(y, s)), s's shape) the same way, s of a shape
 * that broadcasts to x's (a broadcast denominator's gradient in a
 * quotient's plain backward, but for its sign). step */
tg_tensor *tg_sum_to_quotient(tg_tensor *x, tg_tensor *y, tg_tensor *s);
/* g = tg_relu_backward(dout, y) and tg_sum_to(g, b's shape) in one pass,
 * with the bits of those two ops: dout and y (N,M), M > 1, b a row (M,) or
 * (1,M); the sum is returned, g put in *g. An affine layer's bias gradient
 * under its relu in a plain backward: only where nothing is recorded (grad
 * mode off); no rule. step */
tg_tensor *tg_relu_backward_rows(tg_tensor *dout, tg_tensor *y, const tg_tensor *b,
				 tg_tensor **g);

/* a + b of one shape and dtype, recorded as the op "accumulate" when grad
 * mode is on: how the reverse walk sums two gradients of one tensor with
 * history (TG_CREATE_GRAPH). Its rule distributes. step */
tg_tensor *tg_accumulate(tg_tensor *a, tg_tensor *b);
/* Y[i] = A[i] + B[i] for n elements of dtype dt, split across ctx's threads
 * (each element alone, so the bits of one pass); Y may be A. */
void tg_add_arrays(const tg_ctx *ctx, tg_dtype dt, const void *A, const void *B, void *Y,
		   size_t n);
/* Row r of X (run elements, rows of them, contiguous) added into Y's
 * elements [r stride, r stride + run), as tg_add_arrays adds (the bits of
 * one pass, split across ctx's threads): a slice's gradient into its rows
 * of the input's. X and Y do not overlap. */
void tg_add_runs(const tg_ctx *ctx, tg_dtype dt, void *Y, size_t stride, const void *X,
		 size_t run, size_t rows);
/* memcpy(Y, X, bytes), split across ctx's threads from TG_PAR_MIN floats'
 * worth on: a copy of a large tensor on the caller alone runs at one core's
 * speed, and leaves the rows a split loop reads next in the other core's
 * cache (a reshape, a leaf's first gradient). Y and X do not overlap. */
void tg_copy_arrays(const tg_ctx *ctx, void *Y, const void *X, size_t bytes);

/* ---- BLAS ------------------------------------------------------------------ */

/* C (N,M) = op(A) op(B) + beta C, row major (lda, ldb and ldc the row
 * lengths in memory), with OpenBLAS at one thread, or for f32 products of
 * TG_SGEMM_DNNL_MIN multiply-adds or more oneDNN's sgemm at one thread
 * where the build has oneDNN and the CPU AVX2 (gemm.c); a large product
 * split across ctx's threads in bands of C, on the calling thread alone
 * when ctx is NULL. Every product of the library goes through here. beta
 * is 0 (C unread) or 1. Products of fewer multiply-adds than
 * TG_GEMM_SPLIT_MIN are not split: about 5 us of work at one thread (where
 * OpenBLAS itself starts threading), against some 2 us for a split. */
#define TG_GEMM_SPLIT_MIN 262144.0
#define TG_SGEMM_DNNL_MIN 524288.0
/* Whether f32 products of TG_SGEMM_DNNL_MIN or more go to oneDNN in ctx
 * (NULL: a context made now), and the text tg_blas_info adds for it. */
bool tg_sgemm_dnnl(const tg_ctx *ctx);
const char *tg_sgemm_dnnl_info(void);
void tg_gemm(const tg_ctx *ctx, tg_dtype dt, bool ta, bool tb, int N, int M, int K,
	     const void *A, int lda, const void *B, int ldb, double beta, void *C, int ldc);
/* Products of at most TG_GEMM_SMALL_MAX multiply-adds (and a chain of
 * at most TG_GEMM_SMALL_MAX_K of them per element) run as loops in gemm.c,
 * not through the BLAS, whose call costs more than such a product: a
 * batch of 65536 products of 2x2 by 2x2 with its backward took 10.1 ms
 * through OpenBLAS, 1.6 with the loops. From about 512 on (8x8x8, 16x16x4,
 * 32x1x32) OpenBLAS's AVX-512 small kernels were faster, alone or
 * batched. */
#define TG_GEMM_SMALL_MAX 128.0
enum { TG_GEMM_SMALL_MAX_K = 64 };
static inline bool tg_gemm_small_fits(int N, int M, int K)
{
	return (double)N * (double)M * (double)K <= TG_GEMM_SMALL_MAX && K <= TG_GEMM_SMALL_MAX_K;
}
/* count small products in turn, item t's A, B and C sa, sb and sc
 * elements past item t-1's; otherwise as tg_gemm (one thread). */
void tg_gemm_small(tg_dtype dt, bool ta, bool tb, int N, int M, int K, const void *A, int lda,
		   const void *B, int ldb, double beta, void *C, int ldc, int64_t count,
		   int64_t sa, int64_t sb, int64_t sc);
/* Whether the CPU has AVX2 and FMA (false), or the AVX-512 subsets that
 * OpenBLAS's SkylakeX kernels use (true). */
bool tg_cpu_has(bool avx512);

/* The newest ctx tensor (tg_param, tg_keep), and the freeing of every ctx
 * tensor made after it: what a constructor that fails undoes, so that a
 * failed call leaves the context as it found it (declared for nn in
 * nn/kept_undo.h). */
tg_tensor *tg_kept_newest(tg_ctx *ctx);
void tg_kept_drop_newer(tg_ctx *ctx, tg_tensor *mark);

/* The kept error recorded again as "<fmt's words>: <its message>", same
 * code; nothing when ctx holds none (declared for nn in nn/engine_errors.h). */
void tg_fail_again(tg_ctx *ctx, const char *fmt, ...)
#ifdef __GNUC__
	__attribute__((format(printf, 2, 3)))
#endif
	;

#endif /* TG_INTERNAL_H */
