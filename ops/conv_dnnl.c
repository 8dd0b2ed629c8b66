/*
 * conv_dnnl.c - conv2d's f32 kernels on oneDNN: the forward with its bias,
 * the input gradient (backward data) and the weight gradient (backward
 * weights). conv.c asks here first and runs im2col when this declines (f64
 * never comes here); the ops and their rules stay in conv.c.
 *
 * Each context keeps a small cache of primitives, one per kernel, geometry
 * and lane, with an engine, a stream per lane and the memory objects of
 * each primitive made once: a call re-points the memory objects at the
 * tensors and at copies and a scratchpad in the step arena, so a
 * steady-state step makes nothing through the context's allocator. See
 * LAYOUT for the layouts, LANES for the threads and COPIES for the blocked
 * copies one step's kernels share.
 * Shape legend as in conv.c: x (N,C,H,W), w (O,CG,KH,KW), out (N,O,OH,OW).
 */
#include "conv_dnnl.h"

/* meson compiles this file only with libdnnl; a build that takes every
 * source file (tests/fuzz/run) gets an empty one */
#ifdef TG_HAVE_DNNL

#include "parallel.h"
#include "transpose.h"

#include <assert.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <string.h>

/* LAYOUT: the convolution chooses its layouts (format `any`); oneDNN's
 * direct AVX2/AVX-512 kernels take channels in blocks of 8 or 16 (nChw16c,
 * weights OIhw16i16o), so the tensors are reordered into copies in the
 * step arena before and the result back after. With plain nchw descriptors
 * oneDNN runs its own im2col and GEMM (gemm:jit), hardly faster than
 * conv.c's: the CNN's two layers (tg_bench conv-layers, 1 thread, 3
 * interleaved runs at load about 3.4) took 21.6 ms plain against 17.0 ms
 * blocked, reorders included. BLOCKED = 0 is the plain form. */
enum { BLOCKED = 1 };

/* LANES: with T threads the images are cut into T runs, as conv.c's
 * run_images does, and each run is a primitive of its own batch executed
 * by one thread of the worker pool (engine/parallel.h) on its own stream,
 * oneDNN single-threaded inside; the weight gradient adds the runs'
 * partial sums. oneDNN's own OpenMP threads were slower at 2 threads: on a
 * loaded 2-core machine a parallel region waits at each barrier for a
 * thread the kernel has taken away, and a step has about 15 regions
 * (tg_bench conv-layers --threads 2, load about 5: 157 and 66 ms per step
 * on OpenMP, 11.6 and 11.7 ms in lanes, im2col's image split 17 to 20).
 * libgomp therefore never starts a team here. One image is cut by its
 * output channels instead (SPLIT). */
enum { SLOTS = 32, LANES = 16, SCRATCH_ALIGN = 64 };

/* SPLIT: one image has no runs of images to give the lanes; with T > 1
 * threads its output channels go in T runs instead, each a primitive of
 * O / T channels (a multiple of CHANNEL_RUN, without groups), reading all
 * of x and its own part of w, the bias and dout: the forward pass and the
 * weight gradient write their own channels, and the input gradient's
 * partial sums over the runs' channels are added, as the weight
 * gradient's are over runs of images. One image of conv2d + ReLU, forward
 * and backward at 2 threads, one lane before, two after: (1,64,56,56) to
 * 64 6.7 -> 4.1 ms, (1,128,28,28) to 128 6.3 -> 3.1, (1,32,112,112) to 32
 * 7.6 -> 4.0, (1,3,224,224) to 64 by 7x7 68.2 -> 37.9 (PyTorch, oneDNN
 * on its OpenMP threads: 4.1, 4.0, 5.8, 39.7). */
enum { CHANNEL_RUN = 8 };

/* COPIES: the blocked copy of an input is kept for the rest of the step
 * (it is step memory), and a later kernel that takes the same tensor, at
 * the same version, in the same layout, reads it instead of reordering
 * again: the weight gradient takes x as the forward did and dout as the
 * input gradient did (w is taken in another layout by the input gradient
 * than by the forward, ABcd16a16b against ABcd16b16a, so it is reordered
 * again). A depthwise layer (16,64,32,32) made six reorders of about 0.8 ms a
 * step beside 2.8 ms of convolution. A tensor whose data was handed out by
 * tg_data_mut is never shared: its caller may write through the pointer
 * at any time after (a central difference perturbs an input between two
 * calls), and the version does not see that. */
enum { COPIES = 32 };

/* WINOGRAD: in a context set to TG_CONV_WINOGRAD, a 3x3 kernel at stride 1
 * without dilation or groups, with 16 channels or more in and out and 32
 * or more on one side (C O >= 512), runs on oneDNN's Winograd kernels
 * (jit_wino_4x3: each 4x4 tile of outputs from 6x6 of inputs in 36
 * products per channel pair, where the direct kernels make 144), for all
 * three kinds; a lane's geometry decides (SPLIT). Forward and backward of conv2d + relu,
 * 1 thread, fastest of 3 runs, direct against Winograd: (16,64,16,16) to 64
 * channels 8.2 -> 4.1 ms, (8,64,56,56) 53.1 -> 23.6, (4,128,28,28) 24.7
 * -> 10.9, (32,32,32,32) 18.9 -> 12.8, (4,256,14,14) 24.7 -> 15.4,
 * (64,32,14,14) to 64 12.8 -> 8.5, (32,16,32,32) to 32 10.1 -> 7.8,
 * (64,64,8,8) 7.7 -> 4.1. With fewer channels it was slower: (64,1,28,28)
 * to 32 7.1 -> 11.5, (64,3,32,32) 10.9 -> 16.7, (8,8,28,28) to 16 0.61 ->
 * 0.72, and 16 to 16 on small images, (64,16,8,8) 0.49 -> 0.61 and
 * (2,16,16,16) 0.068 -> 0.087 (on (64,16,28,28) it gained: 7.6 -> 5.5).
 * The results differ: their worst error against f64 was 10 to 16 units of
 * f32 rounding of the sum of |products| (the direct kernels': 1 to 4, the
 * same bits as PyTorch's), so the default stays direct. The transforms mix a tile's 36
 * inputs, so a NaN or inf would reach every output of its tile, and values
 * near the top of f32's range could overflow where a direct sum would not:
 * inputs holding any value that is not finite and below 2^40 in magnitude
 * (tame) run on the direct kernels. */
enum { WINO_MIN_CHANNELS = 16, WINO_MIN_PAIRS = 512, TAME_EXP = 40 };

/* Whether a geometry is one for Winograd's kernels (WINOGRAD). */
static bool winograd_fits(const tg_conv_geom *g)
{
	return g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 &&
	       g->dw == 1 && g->G == 1 && g->C >= WINO_MIN_CHANNELS &&
	       g->O >= WINO_MIN_CHANNELS && g->C * g->O >= WINO_MIN_PAIRS;
}

/* The three tensors of a kernel, in the order tg_conv_dnnl takes them:
 * a and b are read, y written. */
enum { A, B, Y, NT };

/* One cached primitive: its key (kind, geometry, bias or not), the
 * convolution, and memory objects made with no data: each tensor as it is
 * (user) and as the convolution takes it (inner: user itself, or a blocked
 * copy with its reorder). */
typedef struct prim {
	bool live;
	tg_conv_kernel kind;
	bool bias;
	bool wino;                    /* Winograd, not direct (WINOGRAD) */
	tg_conv_geom g;
	int lane;                     /* the run of images or channels it serves (g's N
				       * or O is the run's) */
	uint64_t used;                /* the cache's clock at its last call: the oldest goes */
	dnnl_primitive_t p;           /* NULL: oneDNN refused the geometry */
	int arg[NT];                  /* DNNL_ARG_* of a, b and y */
	dnnl_memory_t user[NT];
	dnnl_memory_t inner[NT];      /* == user[t] when the layouts agree */
	dnnl_primitive_t reorder[NT]; /* user -> inner for a and b, inner -> user for y, */
	int block[NT];                /* or, inner being NCHW's channels in blocks of
				       * this, transpose.c's copy instead (OWN) */
	size_t copy[NT];              /* bytes of each blocked copy */
	dnnl_memory_t bias_mem;
	dnnl_memory_t scratch_mem;
	size_t scratch;               /* scratchpad bytes */
} prim;

/* A blocked copy made this step: of which tensor's data (from src, the
 * lane's first element), at which version, in which layout. epoch: the
 * arena's when it was made; a reset or a rewind (a Jacobian's pass over)
 * since may have handed its memory out again. */
typedef struct copy_of {
	const tg_tensor *t;
	const void *src;
	uint64_t version, epoch;
	dnnl_memory_desc_t md;
	void *copy;
} copy_of;

typedef struct cache {
	bool off; /* no engine */
	dnnl_engine_t engine;
	dnnl_stream_t stream[LANES]; /* made at a lane's first use */
	uint64_t clock;
	prim slot[SLOTS];
	copy_of copies[COPIES];
	int next_copy;   /* the slot the next copy takes */
	uint64_t reused; /* copies read instead of reordering again */
} cache;

static void prim_free(prim *e)
{
	for (int t = 0; t < NT; t++) {
		if (e->inner[t] && e->inner[t] != e->user[t])
			dnnl_memory_destroy(e->inner[t]);
		if (e->user[t])
			dnnl_memory_destroy(e->user[t]);
		if (e->reorder[t])
			dnnl_primitive_destroy(e->reorder[t]);
	}
	if (e->bias_mem)
		dnnl_memory_destroy(e->bias_mem);
	if (e->scratch_mem)
		dnnl_memory_destroy(e->scratch_mem);
	if (e->p)
		dnnl_primitive_destroy(e->p);
	memset(e, 0, sizeof *e);
}

static void cache_free(tg_ctx *ctx, void *p)
{
	cache *c = p;
	if (!c)
		return;
	for (int i = 0; i < SLOTS; i++)
		if (c->slot[i].live)
			prim_free(&c->slot[i]);
	for (int l = 0; l < LANES; l++)
		if (c->stream[l])
			dnnl_stream_destroy(c->stream[l]);
	if (c->engine)
		dnnl_engine_destroy(c->engine);
	tg_ctx_release(ctx, c);
}

/* The context's cache, made through its allocator at its first f32
 * convolution; NULL with ENOMEM recorded when it cannot be. */
static cache *cache_of(tg_ctx *ctx)
{
	if (ctx->kernel_cache_free == cache_free)
		return ctx->kernel_cache;
	assert(!ctx->kernel_cache_free); /* the one user of the slot */
	cache *c = tg_ctx_alloc(ctx, sizeof *c);
	if (!c)
		return NULL;
	memset(c, 0, sizeof *c);
	if (dnnl_engine_create(&c->engine, dnnl_cpu, 0) != dnnl_success) {
		c->engine = NULL;
		c->off = true; /* no engine: this context stays on im2col */
	}
	ctx->kernel_cache = c;
	ctx->kernel_cache_free = cache_free;
	return c;
}

/* ---- making a primitive --------------------------------------------------------------- */

/* The memory descriptors of x, w (grouped when G > 1) and out, with the
 * tag given or `any`, and of the bias. */
typedef struct descs {
	dnnl_memory_desc_t x, w, out, b;
} descs;

static bool describe(const tg_conv_geom *g, bool any, descs *d)
{
	dnnl_dims_t xs = { g->N, g->C, g->H, g->W }, os = { g->N, g->O, g->OH, g->OW };
	dnnl_dims_t ws = { g->G, g->O / g->G, g->C / g->G, g->KH, g->KW }, bs = { g->O };
	dnnl_dims_t w4 = { g->O, g->C / g->G, g->KH, g->KW }; /* ungrouped */
	bool grouped = g->G > 1;
	dnnl_format_tag_t act = any ? dnnl_format_tag_any : dnnl_nchw;
	dnnl_format_tag_t wt = any ? dnnl_format_tag_any : grouped ? dnnl_goihw : dnnl_oihw;
	return dnnl_memory_desc_init_by_tag(&d->x, 4, xs, dnnl_f32, act) == dnnl_success &&
	       dnnl_memory_desc_init_by_tag(&d->out, 4, os, dnnl_f32, act) == dnnl_success &&
	       dnnl_memory_desc_init_by_tag(&d->w, grouped ? 5 : 4, grouped ? ws : w4,
					    dnnl_f32, wt) == dnnl_success &&
	       dnnl_memory_desc_init_by_tag(&d->b, 1, bs, dnnl_f32, dnnl_x) == dnnl_success;
}

/* The operation descriptor of kind over d, by algorithm alg; oneDNN counts
 * dilation from 0. */
static bool op_desc(const tg_conv_geom *g, tg_conv_kernel kind, bool bias, dnnl_alg_kind_t alg,
		    const descs *d, dnnl_convolution_desc_t *cd)
{
	dnnl_dims_t s = { g->sh, g->sw }, dil = { g->dh - 1, g->dw - 1 }, p = { g->ph, g->pw };
	dnnl_status_t st;
	if (kind == TG_CONV_FORWARD)
		st = dnnl_dilated_convolution_forward_desc_init(
			cd, dnnl_forward_training, alg, &d->x, &d->w,
			bias ? &d->b : NULL, &d->out, s, dil, p, p);
	else if (kind == TG_CONV_INPUT_GRAD)
		st = dnnl_dilated_convolution_backward_data_desc_init(
			cd, alg, &d->x, &d->w, &d->out, s, dil, p, p);
	else
		st = dnnl_dilated_convolution_backward_weights_desc_init(
			cd, alg, &d->x, &d->w, NULL, &d->out, s, dil, p, p);
	return st == dnnl_success;
}

/* An attribute asking for a user scratchpad, or NULL. */
static dnnl_primitive_attr_t user_scratchpad(void)
{
	dnnl_primitive_attr_t attr;
	if (dnnl_primitive_attr_create(&attr) != dnnl_success)
		return NULL;
	if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) ==
	    dnnl_success)
		return attr;
	dnnl_primitive_attr_destroy(attr);
	return NULL;
}

/* The primitive descriptor of kind, Winograd or direct; the backward kinds
 * are made with the forward's as their hint. NULL if refused. */
static dnnl_primitive_desc_t prim_desc(const cache *c, const tg_conv_geom *g,
				       tg_conv_kernel kind, bool bias, bool wino, const descs *d)
{
	const dnnl_alg_kind_t alg = wino ? dnnl_convolution_winograd : dnnl_convolution_direct;
	dnnl_primitive_attr_t attr = user_scratchpad();
	if (!attr)
		return NULL;
	dnnl_primitive_desc_t pd = NULL, hint = NULL;
	dnnl_convolution_desc_t cd;
	if (kind != TG_CONV_FORWARD &&
	    (!op_desc(g, TG_CONV_FORWARD, false, alg, d, &cd) ||
	     dnnl_primitive_desc_create(&hint, &cd, NULL, c->engine, NULL) != dnnl_success))
		goto out_free_attr;
	if (!op_desc(g, kind, bias, alg, d, &cd) ||
	    dnnl_primitive_desc_create(&pd, &cd, attr, c->engine, hint) != dnnl_success)
		pd = NULL;
	if (hint)
		dnnl_primitive_desc_destroy(hint);
out_free_attr:
	dnnl_primitive_attr_destroy(attr);
	return pd;
}

/* The reorder from one layout to the other, or NULL. It must need no
 * scratchpad (reorders between plain and blocked f32 need none), since
 * each call of it would allocate one. */
static dnnl_primitive_t reorder_of(const cache *c, const dnnl_memory_desc_t *from,
				   const dnnl_memory_desc_t *to)
{
	dnnl_primitive_attr_t attr = user_scratchpad();
	if (!attr)
		return NULL;
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t r = NULL;
	if (dnnl_reorder_primitive_desc_create(&pd, from, c->engine, to, c->engine, attr) ==
	    dnnl_success) {
		const dnnl_memory_desc_t *s = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
		if ((!s || dnnl_memory_desc_get_size(s) == 0) &&
		    dnnl_primitive_create(&r, pd) != dnnl_success)
			r = NULL;
		dnnl_primitive_desc_destroy(pd);
	}
	dnnl_primitive_attr_destroy(attr);
	return r;
}

/* OWN: where the blocked layout is (N, C / B, H, W, B), nChw16c or nChw8c,
 * with C a multiple of B, the copy between it and NCHW is N C / B
 * transposes of (B, H W), which transpose.c's line blocks move in fewer
 * cycles than oneDNN's reorder; the same bytes either way. Inside the
 * CNNs' steps (tg_bench cnn-bn, 1 thread, each way alone, mean over 100
 * steps; to blocked, then back): (32,32,32,32) 572 and 611 us against 495
 * and 447, (32,64,16,16) 277 and 282 against 245 and 235, (32,128,8,8) 134
 * and 137 against 124 and 118. With C not a multiple of B the layout pads
 * each image's last block with zeros to B channels (8 channels take
 * nChw16c's 16 on AVX-512, 24 take two blocks of 16), which oneDNN's
 * reorder copies one element at a time (jit:uni); those go here too, the
 * full blocks transposed as above and the last one 16 positions at a time
 * (tg_transpose_pad). A 3x3 convolution forward and backward, 1 thread, best of 5
 * runs, two interleaved processes each: (32,8,64,64) to 8 channels 17.1
 * and 17.6 -> 16.3 and 16.5 ms, (32,24,32,32) to 40 28.7 and 29.0 -> 27.8
 * and 27.9. B of the layout md of the 4-D tensor plain, or 0 when it is
 * another. */
static int channel_block(const dnnl_memory_desc_t *md, const dnnl_memory_desc_t *plain)
{
	static const struct {
		int b;
		dnnl_format_tag_t tag;
	} blocked[] = { { 16, dnnl_nChw16c }, { 8, dnnl_nChw8c } };
	if (plain->ndims != 4 || plain->data_type != dnnl_f32)
		return 0;
	for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
		dnnl_memory_desc_t b;
		if (dnnl_memory_desc_init_by_tag(&b, 4, plain->dims, dnnl_f32, blocked[i].tag) ==
			    dnnl_success &&
		    dnnl_memory_desc_equal(md, &b))
			return blocked[i].b;
	}
	return 0;
}

/* Tensor t of e: user as the tensor is (plain), inner as pd takes it
 * (queried with q), and the reorder between them when they differ. */
static bool tensor_make(const cache *c, prim *e, int t, const dnnl_memory_desc_t *plain,
			const_dnnl_primitive_desc_t pd, dnnl_query_t q)
{
	const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, q, 0);
	if (!md || dnnl_memory_create(&e->user[t], plain, c->engine, DNNL_MEMORY_NONE) !=
			   dnnl_success) {
		e->user[t] = NULL;
		return false;
	}
	if (dnnl_memory_desc_equal(md, plain)) {
		e->inner[t] = e->user[t];
		return true;
	}
	if (dnnl_memory_create(&e->inner[t], md, c->engine, DNNL_MEMORY_NONE) != dnnl_success) {
		e->inner[t] = NULL;
		return false;
	}
	e->copy[t] = dnnl_memory_desc_get_size(md);
	if ((e->block[t] = channel_block(md, plain)))
		return true;
	e->reorder[t] = t == Y ? reorder_of(c, md, plain) : reorder_of(c, plain, md);
	return e->reorder[t] != NULL;
}

/* Fills e for kind over g: the convolution, its tensors' memory objects and
 * reorders, the bias's and the scratchpad's. false if refused. */
static bool prim_make(const cache *c, prim *e, const tg_conv_geom *g, tg_conv_kernel kind,
		      bool bias, bool wino, int lane)
{
	descs plain, chosen;
	if (!describe(g, false, &plain) || !describe(g, BLOCKED, &chosen))
		return false;
	dnnl_primitive_desc_t pd = prim_desc(c, g, kind, bias, wino, &chosen);
	if (!pd)
		return false;
	*e = (prim){ .live = true, .kind = kind, .bias = bias, .wino = wino, .g = *g, .lane = lane };
	static const int args[3][NT] = {
		{ DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST },
		{ DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC },
		{ DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS },
	};
	static const dnnl_query_t q[3][NT] = {
		{ dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md },
		{ dnnl_query_diff_dst_md, dnnl_query_weights_md, dnnl_query_diff_src_md },
		{ dnnl_query_src_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md },
	};
	const dnnl_memory_desc_t *md[3][NT] = {
		{ &plain.x, &plain.w, &plain.out },
		{ &plain.out, &plain.w, &plain.x },
		{ &plain.x, &plain.out, &plain.w },
	};
	bool ok = true;
	for (int t = 0; t < NT && ok; t++) {
		e->arg[t] = args[kind][t];
		ok = tensor_make(c, e, t, md[kind][t], pd, q[kind][t]);
	}
	if (ok && bias &&
	    dnnl_memory_create(&e->bias_mem, &plain.b, c->engine, DNNL_MEMORY_NONE) != dnnl_success)
		e->bias_mem = NULL, ok = false;
	const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
	e->scratch = smd ? dnnl_memory_desc_get_size(smd) : 0;
	if (ok && e->scratch &&
	    dnnl_memory_create(&e->scratch_mem, smd, c->engine, DNNL_MEMORY_NONE) != dnnl_success)
		e->scratch_mem = NULL, ok = false;
	if (ok && dnnl_primitive_create(&e->p, pd) != dnnl_success)
		e->p = NULL, ok = false;
	dnnl_primitive_desc_destroy(pd);
	return ok;
}

/* The cached primitive of kind over g for a lane, made in the oldest slot
 * on a miss. A geometry oneDNN refuses keeps its slot with no primitive,
 * so that it is not asked again at every step. */
static prim *prim_of(cache *c, const tg_conv_geom *g, tg_conv_kernel kind, bool bias,
		     bool wino, int lane)
{
	prim *old = &c->slot[0];
	c->clock++;
	for (int i = 0; i < SLOTS; i++) {
		prim *e = &c->slot[i];
		if (e->live && e->kind == kind && e->bias == bias && e->wino == wino &&
		    e->lane == lane && !memcmp(&e->g, g, sizeof *g)) {
			e->used = c->clock;
			return e;
		}
		if (!e->live || (old->live && e->used < old->used))
			old = e;
	}
	if (old->live)
		prim_free(old);
	if (!prim_make(c, old, g, kind, bias, wino, lane)) {
		prim_free(old);
		*old = (prim){ .live = true, .kind = kind, .bias = bias, .wino = wino, .g = *g,
			       .lane = lane };
	}
	old->used = c->clock;
	return old;
}

/* ---- running the lanes ---------------------------------------------------------------- */

/* size bytes of the step arena aligned to SCRATCH_ALIGN; NULL (ENOMEM
 * recorded) when they do not fit. */
static void *arena_aligned(tg_ctx *ctx, size_t size)
{
	char *p = tg_arena_alloc(ctx, size + SCRATCH_ALIGN);
	if (!p)
		return NULL;
	return (void *)(((uintptr_t)p + SCRATCH_ALIGN - 1) & ~(uintptr_t)(SCRATCH_ALIGN - 1));
}

/* What one lane reads and writes: the tensors (a, b, y) of its run of
 * images or output channels, its bias, its blocked copies and its
 * scratchpad. */
typedef struct lane {
	prim *e;
	dnnl_stream_t stream;
	const float *bias;
	void *data[NT];
	void *copy[NT];
	bool made[NT]; /* copy[t] holds the blocked a or b already (COPIES) */
	void *scratch;
	bool ok;
} lane;

typedef struct lanes {
	lane l[LANES];
} lanes;

static bool run(dnnl_stream_t s, dnnl_primitive_t p, int n, const dnnl_exec_arg_t *args)
{
	return dnnl_primitive_execute(p, s, n, args) == dnnl_success;
}

/* Whether tensor t of e is copied to or from another layout. */
static bool relaid(const prim *e, int t) { return e->inner[t] != e->user[t]; }

static bool reorder_run(const lane *l, int t)
{
	const prim *e = l->e;
	if (e->block[t]) {
		const dnnl_memory_desc_t *md;
		if (dnnl_memory_get_memory_desc(e->user[t], &md) != dnnl_success)
			return false;
		const int64_t B = e->block[t], hw = md->dims[2] * md->dims[3];
		const int64_t N = md->dims[0], C = md->dims[1], full = C / B, r = C % B;
		float *plain = l->data[t], *blocked = l->copy[t];
		if (!r) {
			if (t == Y)
				tg_transpose_batch(sizeof(float), blocked, plain, N * full, hw, B);
			else
				tg_transpose_batch(sizeof(float), plain, blocked, N * full, B, hw);
			return true;
		}
		for (int64_t n = 0; n < N; n++) {
			float *xp = plain + n * C * hw, *yb = blocked + n * (full + 1) * hw * B;
			if (t == Y) {
				if (full)
					tg_transpose_batch(sizeof(float), yb, xp, full, hw, B);
				tg_transpose_pad(false, yb + full * hw * B, xp + full * B * hw, r, B, hw);
			} else {
				if (full)
					tg_transpose_batch(sizeof(float), xp, yb, full, B, hw);
				tg_transpose_pad(true, xp + full * B * hw, yb + full * hw * B, r, B, hw);
			}
		}
		return true;
	}
	dnnl_memory_t from = t == Y ? e->inner[t] : e->user[t];
	dnnl_memory_t to = t == Y ? e->user[t] : e->inner[t];
	dnnl_exec_arg_t args[2] = { { DNNL_ARG_FROM, from }, { DNNL_ARG_TO, to } };
	return run(l->stream, e->reorder[t], 2, args);
}

/* Lane l: points its memory objects at its buffers, reorders a and b in,
 * convolves, reorders y out. oneDNN runs single-threaded in it. */
static bool lane_run(lane *l, const float *bias)
{
	const prim *e = l->e;
	dnnl_exec_arg_t args[NT + 2];
	int n = 0;
	for (int t = 0; t < NT; t++) {
		if (dnnl_memory_set_data_handle(e->user[t], l->data[t]) != dnnl_success ||
		    (relaid(e, t) &&
		     dnnl_memory_set_data_handle(e->inner[t], l->copy[t]) != dnnl_success))
			return false;
		args[n++] = (dnnl_exec_arg_t){ e->arg[t], e->inner[t] };
	}
	if (e->bias_mem) {
		if (dnnl_memory_set_data_handle(e->bias_mem, (void *)bias) != dnnl_success)
			return false;
		args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_BIAS, e->bias_mem };
	}
	if (e->scratch) {
		if (dnnl_memory_set_data_handle(e->scratch_mem, l->scratch) != dnnl_success)
			return false;
		args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_SCRATCHPAD, e->scratch_mem };
	}
	/* reorders run on omp_get_max_threads() of the calling thread; the
	 * pool's threads are tapegrad's own and keep the setting */
	if (omp_get_max_threads() != 1)
		omp_set_num_threads(1);
	return (!relaid(e, A) || l->made[A] || reorder_run(l, A)) &&
	       (!relaid(e, B) || l->made[B] || reorder_run(l, B)) &&
	       run(l->stream, e->p, n, args) && (!relaid(e, Y) || reorder_run(l, Y)) &&
	       dnnl_stream_wait(l->stream) == dnnl_success;
}

static void lanes_part(void *arg, size_t lo, size_t hi)
{
	lanes *ls = arg;
	for (size_t i = lo; i < hi; i++)
		ls->l[i].ok = lane_run(&ls->l[i], ls->l[i].bias);
}

/* Lane i's tensors: of images [lo, ...) of g, or, by_out, of its one
 * image's output channels [lo, ...) (then g->N is 1 and G is 1). The
 * weight gradient of image lanes after the first goes to part (O,CG,KH,KW)
 * each, the input gradient of channel lanes after the first to part
 * (C,H,W) each; a channel lane's bias is its channels'. */
static void lane_tensors(tg_conv_kernel kind, const tg_conv_geom *g, bool by_out, int64_t lo,
			 int i, const float *a, const float *b, const float *bias, float *y,
			 float *part, lane *l)
{
	void **data = l->data;
	l->bias = bias;
	if (by_out) {
		size_t xs = (size_t)(g->C * g->H * g->W), os = (size_t)(lo * g->OH * g->OW);
		size_t ws = (size_t)(lo * g->C * g->KH * g->KW);
		if (kind == TG_CONV_FORWARD) {
			data[A] = (void *)a, data[B] = (void *)(b + ws), data[Y] = y + os;
			l->bias = bias ? bias + lo : NULL;
		} else if (kind == TG_CONV_INPUT_GRAD) {
			data[A] = (void *)(a + os), data[B] = (void *)(b + ws);
			data[Y] = i ? part + (size_t)(i - 1) * xs : y;
		} else {
			data[A] = (void *)a, data[B] = (void *)(b + os), data[Y] = y + ws;
		}
		return;
	}
	size_t xs = (size_t)(lo * g->C * g->H * g->W), os = (size_t)(lo * g->O * g->OH * g->OW);
	size_t ws = (size_t)(g->O * (g->C / g->G) * g->KH * g->KW);
	if (kind == TG_CONV_FORWARD) {
		data[A] = (void *)(a + xs), data[B] = (void *)b, data[Y] = y + os;
	} else if (kind == TG_CONV_INPUT_GRAD) {
		data[A] = (void *)(a + os), data[B] = (void *)b, data[Y] = y + xs;
	} else {
		data[A] = (void *)(a + xs), data[B] = (void *)(b + os);
		data[Y] = i ? part + (size_t)(i - 1) * ws : y;
	}
}

/* The blocked copy of tensor t's data from src in layout md made this
 * step, or NULL. */
static void *copy_find(const cache *c, const tg_tensor *t, const void *src,
		       const dnnl_memory_desc_t *md)
{
	if (t->lent)
		return NULL;
	for (int i = 0; i < COPIES; i++) {
		const copy_of *k = &c->copies[i];
		if (k->copy && k->t == t && k->src == src && k->version == t->version &&
		    k->epoch == t->ctx->arena.epoch && dnnl_memory_desc_equal(&k->md, md))
			return k->copy;
	}
	return NULL;
}

/* Keeps lane l's blocked copies of a and b (tensors ta and tb) that it
 * made, in the oldest slots. */
static void copies_keep(cache *c, const lane *l, const tg_tensor *ta, const tg_tensor *tb)
{
	for (int t = A; t <= B; t++) {
		if (!relaid(l->e, t) || l->made[t])
			continue;
		const tg_tensor *x = t == A ? ta : tb;
		const dnnl_memory_desc_t *md;
		if (x->lent)
			continue;
		if (dnnl_memory_get_memory_desc(l->e->inner[t], &md) != dnnl_success)
			continue;
		c->copies[c->next_copy] = (copy_of){ x, l->data[t], x->version,
						    x->ctx->arena.epoch, *md, l->copy[t] };
		c->next_copy = (c->next_copy + 1) % COPIES;
	}
}

/* The kernel over g in T lanes, each a run of images or, by_out, of the
 * output channels (SPLIT); on Winograd's kernels where tame inputs allow
 * it and the lane's geometry takes them (WINOGRAD), else on the direct
 * ones. */
static tg_conv_done conv_lanes(tg_ctx *ctx, cache *c, int T, bool by_out, tg_conv_kernel kind,
			       const tg_conv_geom *g, const tg_tensor *ta, const tg_tensor *tb,
			       const float *bias, bool tame_inputs, float *y)
{
	const float *a = ta->data, *b = tb->data;
	lanes ls;
	memset(&ls, 0, sizeof ls);
	int64_t lo[LANES];
	for (int i = 0; i < T; i++) {
		tg_conv_geom run_g = *g;
		if (by_out) {
			lo[i] = g->O * i / T;
			run_g.O = g->O * (i + 1) / T - lo[i];
		} else {
			lo[i] = g->N * i / T;
			run_g.N = g->N * (i + 1) / T - lo[i];
		}
		lane *l = &ls.l[i];
		bool wino = tame_inputs && winograd_fits(&run_g);
		l->e = prim_of(c, &run_g, kind, bias != NULL, wino, i);
		if (!l->e->p && wino)
			l->e = prim_of(c, &run_g, kind, bias != NULL, false, i);
		if (!l->e->p)
			return TG_CONV_DECLINED;
		if (!c->stream[i] &&
		    dnnl_stream_create(&c->stream[i], c->engine, dnnl_stream_default_flags) !=
			    dnnl_success) {
			c->stream[i] = NULL;
			return TG_CONV_DECLINED;
		}
		l->stream = c->stream[i];
	}
	/* the kernel whose lanes each write a whole result, summed after */
	const tg_conv_kernel summed = by_out ? TG_CONV_INPUT_GRAD : TG_CONV_WEIGHT_GRAD;
	const size_t each = by_out ? (size_t)(g->C * g->H * g->W)
				   : (size_t)(g->O * (g->C / g->G) * g->KH * g->KW);
	float *part = NULL;
	if (kind == summed && T > 1 &&
	    !(part = tg_arena_alloc(ctx, (size_t)(T - 1) * each * sizeof *part)))
		return TG_CONV_FAILED;
	for (int i = 0; i < T; i++) {
		lane *l = &ls.l[i];
		lane_tensors(kind, g, by_out, lo[i], i, a, b, bias, y, part, l);
		for (int t = 0; t < NT; t++) {
			if (!relaid(l->e, t))
				continue;
			const dnnl_memory_desc_t *md;
			if (t != Y &&
			    dnnl_memory_get_memory_desc(l->e->inner[t], &md) == dnnl_success &&
			    (l->copy[t] = copy_find(c, t == A ? ta : tb, l->data[t], md))) {
				l->made[t] = true;
				c->reused++;
				continue;
			}
			if (!(l->copy[t] = arena_aligned(ctx, l->e->copy[t])))
				return TG_CONV_FAILED;
		}
		if (l->e->scratch && !(l->scratch = arena_aligned(ctx, l->e->scratch)))
			return TG_CONV_FAILED;
	}
	if (T == 1)
		lanes_part(&ls, 0, 1);
	else
		tg_parallel_for(ctx, (size_t)T, 1, 1, lanes_part, &ls);
	for (int i = 0; i < T; i++)
		if (!ls.l[i].ok)
			return TG_CONV_DECLINED;
	for (int i = 0; i < T; i++)
		copies_keep(c, &ls.l[i], ta, tb);
	if (part)
		tg_conv_add_parts(TG_F32, y, part, T - 1, each);
	return TG_CONV_COMPUTED;
}

/* oneDNN's kernels index in 32 bits: where an axis's stride plus its image
 * side nears 2^31 they return wrong gradients (stride 2147483645 over a 5x6
 * image gave a weight gradient of zeros; 2147482650 over a side of 1000
 * also failed). A geometry whose padded side, stride and dilated kernel on
 * one axis add up past 2^30 runs on im2col. Sizes are at most INT_MAX
 * (conv.c's checks): the sums cannot overflow. */
static bool fits_32_bits(const tg_conv_geom *g)
{
	const int64_t lim = (int64_t)1 << 30;
	return g->H + 2 * g->ph + g->sh + g->dh * (g->KH - 1) <= lim &&
	       g->W + 2 * g->pw + g->sw + g->dw * (g->KW - 1) <= lim;
}

/* Whether every element of an f32 tensor has an exponent field below top
 * (an OR over the exponent bits, which vectorises), at AVX-512's width
 * where the CPU has it. */
TG_HOT_LOOP_WIDE static bool exponents_below(const tg_tensor *t, uint32_t top)
{
	const uint32_t *v = t->data;
	uint32_t bad = 0;
	for (size_t i = 0; i < t->numel; i++)
		bad |= (v[i] & 0x7f800000u) >= top;
	return !bad;
}

/* Whether every element of an f32 tensor is finite: the weight gradient's
 * check reads all of dout, 2.7% of tg_bench cnn's step with the baseline's
 * 16-byte vectors, 1.8% with 64; none where conv2d's bias gradient, a sum
 * of all of dout, came out finite first (tg_known_finite). */
static bool all_finite(const tg_tensor *t)
{
	return tg_known_finite(t) || exponents_below(t, 0x7f800000u);
}

/* oneDNN skips the zero padding where im2col (and PyTorch) multiply by it:
 * a NaN or inf that meets the border, in w for the forward pass or in dout
 * for the weight gradient, gives NaN there (0 x inf) but not here. Such a
 * call runs on im2col. The input gradient reads no padding. */
static bool border_agrees(tg_conv_kernel kind, const tg_conv_geom *g, const tg_tensor *b)
{
	return kind == TG_CONV_INPUT_GRAD || (g->ph == 0 && g->pw == 0) || all_finite(b);
}

/* Whether every element of an f32 tensor is finite and below 2^TAME_EXP in
 * magnitude (its exponent field below 127 + TAME_EXP), noted for the next
 * kernel that takes it (tg_known_tame). */
static bool tame(const tg_tensor *t)
{
	if (tg_known_tame(t))
		return true;
	if (!exponents_below(t, (uint32_t)(127 + TAME_EXP) << 23))
		return false;
	tg_note_tame(t);
	return true;
}

/* Whether one image goes in T lanes of its output channels (SPLIT): each a
 * whole number of oneDNN's blocks of 8, without groups. */
static bool channel_lanes(const tg_conv_geom *g, int T)
{
	return g->N == 1 && T > 1 && g->G == 1 && g->O % T == 0 && g->O / T % CHANNEL_RUN == 0;
}

/* A 1x1 kernel at stride 1 without padding or groups, on images of 64
 * positions or more, is one GEMM per image on the NCHW planes where they
 * lie (conv.c), with no reorder into or out of a blocked layout: forward
 * and backward, 1.2 to 2.5 times as fast as oneDNN's kernels with their
 * reorders on the AMD EPYC VM of the README (batch 32, 64 channels of
 * 16x16 to 128: 3.6 against 2.9 ms; 8 images of 256x28x28 to 64: 4.5
 * against 3.4; 4 images of 3x64x64 to 16: 0.49 against 0.19), level at 64
 * positions and slower below, where conv.c packs a batch's columns. */
static bool pointwise(const tg_conv_geom *g)
{
	return g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 &&
	       g->pw == 0 && g->G == 1 && g->OH * g->OW >= 64;
}

tg_conv_done tg_conv_dnnl(tg_ctx *ctx, tg_conv_kernel kind, const tg_conv_geom *g,
			  const tg_tensor *a, const tg_tensor *b, const float *bias, float *y)
{
	if (g->N < 1 || ctx->conv == TG_CONV_IM2COL || pointwise(g) || !fits_32_bits(g) ||
	    !border_agrees(kind, g, b))
		return TG_CONV_DECLINED;
	cache *c = cache_of(ctx);
	if (!c)
		return TG_CONV_FAILED;
	if (c->off)
		return TG_CONV_DECLINED;
	int T = ctx->threads < LANES ? ctx->threads : LANES;
	const bool by_out = channel_lanes(g, T);
	if (!by_out)
		T = T < g->N ? T : (int)g->N;
	const bool tame_inputs =
		ctx->conv == TG_CONV_WINOGRAD && winograd_fits(g) && tame(a) && tame(b);
	/* primitives are made and run single-threaded (oneDNN fixes its split
	 * when one is made); the calling thread's OpenMP setting is put back */
	int omp = omp_get_max_threads();
	if (omp != 1)
		omp_set_num_threads(1);
	tg_conv_done done = conv_lanes(ctx, c, T, by_out, kind, g, a, b, bias, tame_inputs, y);
	if (omp != 1)
		omp_set_num_threads(omp);
	return done;
}

uint64_t tg_conv_dnnl_reused(const tg_ctx *ctx)
{
	return ctx->kernel_cache_free == cache_free ? ((const cache *)ctx->kernel_cache)->reused
						    : 0;
}

bool tg_conv_dnnl_winograd_offered(tg_ctx *ctx)
{
	cache *c = cache_of(ctx);
	if (!c || c->off)
		return false;
	const tg_conv_geom g = { .N = 1, .C = 32, .H = 8, .W = 8, .O = 32, .KH = 3, .KW = 3,
				 .OH = 8, .OW = 8, .sh = 1, .sw = 1, .ph = 1, .pw = 1,
				 .dh = 1, .dw = 1, .G = 1 };
	descs d;
	if (!describe(&g, BLOCKED, &d))
		return false;
	dnnl_primitive_desc_t pd = prim_desc(c, &g, TG_CONV_FORWARD, false, true, &d);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return pd != NULL;
}

/* The primitives made, Winograd's alone when wino_only. */
static int made(const tg_ctx *ctx, bool wino_only)
{
	int n = 0;
	if (ctx->kernel_cache_free == cache_free)
		for (int i = 0; i < SLOTS; i++) {
			const prim *e = &((const cache *)ctx->kernel_cache)->slot[i];
			n += e->p != NULL && (e->wino || !wino_only);
		}
	return n;
}

int tg_conv_dnnl_made(const tg_ctx *ctx) { return made(ctx, false); }

int tg_conv_dnnl_winograd_made(const tg_ctx *ctx) { return made(ctx, true); }

#endif
