/*
 * tapegrad.h - reverse-mode automatic differentiation in C11.
 *
 * Ops compute a value and, when a gradient is wanted, record a node on the
 * context's tape. tg_backward walks the tape last to first and applies each
 * op's local gradient: add distributes, mul swaps, max routes.
 *
 * The apple graph (price = apple * count * tax), checkable by hand:
 *
 *	tg_ctx *ctx = tg_ctx_new(42);
 *	tg_tensor *apple = tg_param(tg_scalar(ctx, TG_F64, 100));
 *	tg_tensor *count = tg_param(tg_scalar(ctx, TG_F64, 2));
 *	tg_tensor *tax   = tg_param(tg_scalar(ctx, TG_F64, 1.1));
 *	tg_tensor *price = tg_mul(tg_mul(apple, count), tax);
 *	tg_backward(price);
 *	// tg_item(price) = 220, d price/d apple = 2.2, d count = 110, d tax = 200
 *	if (!tg_ok(ctx))
 *		fprintf(stderr, "%s\n", tg_error(ctx));
 *	tg_ctx_free(ctx);
 *
 * Lifetimes. Every function returning a tensor says which one it has:
 *   step      freed by tg_reset(ctx), with the tape and intermediate grads;
 *   ctx       freed by tg_ctx_free(ctx) (parameters, optimizer state);
 *   borrowed  points into something else; don't free, don't keep past it.
 * Tensors have no free function. A step tensor used after the reset that
 * freed it is reported as TG_ESTALE, not read, however many resets it was
 * kept over: a step tensor's header address is not given to another tensor
 * until 2^40 bytes of headers (6.0e9) have been made after it. Where that
 * much address space cannot be reserved (or TG_HEADER_SPACE=0), headers
 * come from a ring instead, and a tensor kept past more than one reset is
 * caught only until its slot is reused.
 *
 * Errors. The first failure is kept in the context (code and a message that
 * names the function and the shapes); the failing op returns NULL; every op
 * given NULL returns NULL; while an error is set, ops compute nothing. Check
 * once with tg_ok(ctx), read tg_error(ctx), go on after tg_clear_error(ctx).
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TG_BUILDING) && defined(__GNUC__)
#define TG_API __attribute__((visibility("default")))
#else
#define TG_API
#endif

/* A tensor has 0 to TG_MAX_DIMS dimensions, each of size 1 or more (an empty
 * tensor, or a slice or split of length 0, is TG_ESHAPE / TG_EARG); an op 0
 * to TG_MAX_INPUTS inputs. */
enum { TG_MAX_DIMS = 8, TG_MAX_INPUTS = 4, TG_MAX_ATTRS = 4 };

typedef struct tg_ctx tg_ctx;
typedef struct tg_tensor tg_tensor;
typedef struct tg_node tg_node;

/* f32 and f64 hold values and take part in every op; i32 and i64 hold
 * indices and labels (index tensors) and never require a gradient. An op
 * takes an index tensor only where it asks for indices or labels, as
 * tg_where's mask, and in tg_detach and tg_keep; any other (shape ops too:
 * reshape, slice, concat) says TG_EDTYPE, so indices are made in the shape
 * they are used in. */
typedef enum { TG_F32, TG_F64, TG_I32, TG_I64 } tg_dtype;

typedef enum {
	TG_OK = 0,
	TG_ESHAPE,   /* shapes do not fit the op */
	TG_EDTYPE,   /* mixed or unsupported dtypes */
	TG_ENULL,    /* a NULL argument */
	TG_EARG,     /* a bad value (axis, index, label, option) */
	TG_ENOMEM,   /* allocation failed or the arena limit was reached */
	TG_ESTALE,   /* a tensor used after the tg_reset that freed it */
	TG_EVERSION, /* a tensor a backward rule reads was modified in place */
	TG_ECTX,     /* tensors of two contexts in one op: recorded in the
		      * context of the first (another thread may own the other) */
	TG_EANOMALY, /* anomaly mode: a NaN or Inf appeared */
	TG_EIO,      /* a file could not be read or written */
	TG_EFORMAT,  /* a file's contents are not what they should be */
} tg_status;

/* ---- context ------------------------------------------------------------ */

/* Allocator the context uses for everything it owns (arena blocks, ctx
 * tensors), except the headers of step tensors, which live in address space
 * the context reserves with mmap (the ring of the fallback uses the
 * allocator). Lets tests fail the N-th allocation. */
typedef struct tg_allocator {
	void *(*alloc)(size_t size, void *user);
	void (*free)(void *ptr, void *user);
	void *user;
} tg_allocator;

TG_API tg_ctx *tg_ctx_new(uint64_t seed);          /* NULL if out of memory */
TG_API tg_ctx *tg_ctx_new_with(uint64_t seed, const tg_allocator *a);
TG_API void tg_ctx_free(tg_ctx *ctx);               /* frees every tensor */
TG_API void tg_reset(tg_ctx *ctx);  /* ends the step: frees step tensors, tape */

TG_API bool tg_set_grad_enabled(tg_ctx *ctx, bool on); /* returns old value */
TG_API bool tg_grad_enabled(const tg_ctx *ctx);
TG_API void tg_set_anomaly(tg_ctx *ctx, bool on); /* NaN/Inf checks, every op */
TG_API bool tg_anomaly(const tg_ctx *ctx);        /* whether it is on */
TG_API void tg_set_abort_on_error(tg_ctx *ctx, bool on); /* for debuggers */
/* Threads for this context's work, default 1: its large loops (matrix
 * products, elementwise ops and their backward kernels, reductions,
 * softmax and cross-entropy rows, optimizer updates; from about 32K
 * elements) split across a pool of n - 1 workers started at the first
 * split and joined at exit. A split loop gives the bits of one thread; a
 * split product (bands of its rows or columns, each an OpenBLAS call at
 * one thread) may differ in the last place, and so may a convolution's
 * weight gradient (im2col's per-image products summed, oneDNN's own
 * split). Every product sets OpenBLAS's
 * one process-wide thread count to 1, so contexts used from several
 * threads at once never change each other's setting; the pool serves one loop at a time and another
 * thread's loop runs on its caller alone meanwhile, cut as the pool would
 * cut it: a context's results are the same bits whatever other contexts
 * do at the same time. */
/* n above TG_MAX_THREADS counts as it; n < 1 is TG_EARG and keeps the count */
TG_API void tg_set_threads(tg_ctx *ctx, int n);
TG_API int tg_threads(const tg_ctx *ctx);
enum { TG_MAX_THREADS = 64 };

/* Which kernels conv2d and its gradients run on in this context (see
 * tg_conv2d). A context starts with TG_CONV=im2col or TG_CONV=winograd from
 * the environment, else (TG_CONV=onednn, unset or empty) with
 * TG_CONV_ONEDNN. */
typedef enum tg_conv_kernels {
	TG_CONV_ONEDNN,   /* f32 on oneDNN's direct kernels where they run: PyTorch's
			   * kernels, with its bits; im2col for the rest */
	TG_CONV_IM2COL,   /* im2col and GEMM (or the depthwise kernels) only */
	TG_CONV_WINOGRAD, /* as TG_CONV_ONEDNN, but f32 3x3 kernels at stride 1 without
			   * dilation or groups, with 16 channels or more in and out and
			   * 32 or more on one side, on oneDNN's Winograd kernels: 1.3 to
			   * 2.3 times as fast, results within about 16 units of rounding
			   * of the sum of |products| (the direct kernels: 1 to 4) */
} tg_conv_kernels;
/* k outside the three is TG_EARG and keeps the setting */
TG_API void tg_set_conv_kernels(tg_ctx *ctx, tg_conv_kernels k);
TG_API tg_conv_kernels tg_get_conv_kernels(const tg_ctx *ctx); /* TG_CONV_ONEDNN for NULL */
/* ---- BLAS --------------------------------------------------------------- */
/* The BLAS and kernel the products run on, "OpenBLAS 0.3.21 Haswell, 2 cores";
 * a static string. */
TG_API const char *tg_blas_info(void);
/* The OPENBLAS_CORETYPE that may run faster, NULL when none: on a CPU with
 * AVX-512, "SkylakeX" when OpenBLAS runs an AVX2 kernel (Haswell, Zen,
 * Excavator) or a generic one (no AVX2: Prescott, Core2, Nehalem,
 * Sandybridge, ...); on a CPU with AVX2 alone, "Haswell" for a generic
 * kernel. Under a generic kernel products take twice as long or more: the first
 * tg_ctx_new of a process says so on stderr (unless TG_BLAS_QUIET is set
 * and not empty). Whether SkylakeX beats an AVX2 kernel depends on the CPU
 * (twice as fast on some; maybe no faster where AVX-512 runs in halves, as
 * on AMD Zen 4, or at a lower clock), and a process cannot time a kernel
 * other than the one OpenBLAS loaded, so that case is not warned about:
 * tests/bench/blas_probe times both in child processes and chooses. */
TG_API const char *tg_blas_advice(void);
/* The same rule for a given kernel name and CPU features. */
TG_API const char *tg_blas_advice_for(const char *corename, bool avx2, bool avx512);
/* cblas_sgemm and cblas_dgemm as tg_matmul_t calls them (all transpose
 * flags, odd shapes) against plain loops; 0 if every element is within the rounding bound.
 * msg (size bytes) gets a line saying what was found. */
TG_API int tg_blas_selfcheck(char *msg, size_t size);

TG_API void tg_set_arena_limit(tg_ctx *ctx, size_t bytes); /* 0: no limit */
TG_API size_t tg_arena_used(const tg_ctx *ctx);  /* bytes in this step */
TG_API size_t tg_arena_high_water(const tg_ctx *ctx);
TG_API void tg_seed(tg_ctx *ctx, uint64_t seed);
/* A NULL ctx gives 0 (u64) or NaN and moves no generator. */
TG_API uint64_t tg_random_u64(tg_ctx *ctx);       /* the context's generator */
TG_API double tg_random_uniform(tg_ctx *ctx);     /* [0, 1) */
TG_API double tg_random_normal(tg_ctx *ctx);      /* N(0, 1) */
/* The generator's whole position (xoshiro256**: four words), to save with a
 * checkpoint and restore: the same state gives the same draws after. A state
 * of four zeros is refused (TG_EARG; the generator would only give zeros). */
TG_API void tg_rng_state(const tg_ctx *ctx, uint64_t out[4]);
TG_API int tg_rng_set_state(tg_ctx *ctx, const uint64_t state[4]); /* 0 ok, -1 */

/* ---- errors ------------------------------------------------------------- */

/* Whether ctx holds no error (false for a NULL ctx). */
TG_API bool tg_ok(const tg_ctx *ctx);
/* The kept error's code: TG_OK if none, TG_ENULL for a NULL ctx. */
TG_API tg_status tg_status_of(const tg_ctx *ctx);
/* The kept error's message, owned by ctx and valid until tg_clear_error;
 * "" if ok, "no context (NULL)" for a NULL ctx. */
TG_API const char *tg_error(const tg_ctx *ctx);
/* Forgets the kept error, so that ops compute again; a NULL ctx does
 * nothing. */
TG_API void tg_clear_error(tg_ctx *ctx);
TG_API const char *tg_status_name(tg_status s);  /* "TG_ESHAPE", static */
/* Records an error from user code (custom ops, loaders): first error wins.
 * A code that is no error (TG_OK, out of range) is recorded as TG_EARG.
 * Returns NULL so that a failing function can `return tg_fail(...)`. */
TG_API void *tg_fail(tg_ctx *ctx, tg_status code, const char *fmt, ...)
#ifdef __GNUC__
	__attribute__((format(printf, 3, 4)))
#endif
	;

/* ---- tensors ------------------------------------------------------------ */
/* The most elements a tensor holds. */
#define TG_MAX_ELEMENTS ((uint64_t)1 << 40)
/* Shapes are given as (ndim, shape): tg_zeros(ctx, TG_F64, 2, (int64_t[]){2, 3}).
 * ndim 0 is a scalar. All constructors return step tensors, or NULL: for a
 * NULL ctx or one holding an error, else with the reason in ctx: TG_ESHAPE
 * for ndim outside 0..TG_MAX_DIMS, a size below 1 or more than
 * TG_MAX_ELEMENTS (2^40) elements; TG_ENULL for a NULL shape (ndim > 0) or
 * values; TG_EDTYPE for an unknown dtype; TG_EARG for a value an index
 * dtype (i32, i64) cannot hold as a whole number; TG_ENOMEM. */

TG_API tg_tensor *tg_zeros(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape);
/* Values left as they are, for a caller that writes every element before
 * anything reads one (a batch of rows copied in). */
TG_API tg_tensor *tg_empty(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape);
TG_API tg_tensor *tg_ones(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape);
TG_API tg_tensor *tg_full(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
			  double value);
TG_API tg_tensor *tg_from_f64(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
			      const double *values);  /* converted to dt */
TG_API tg_tensor *tg_from_f32(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
			      const float *values);
TG_API tg_tensor *tg_scalar(tg_ctx *ctx, tg_dtype dt, double value);
/* Index tensors (labels, indices): i32 or i64, never requiring a gradient.
 * tg_zeros, tg_full, tg_from_f64 and friends make them too (values must be
 * whole numbers in range); tg_get and tg_item read them as double. */
TG_API tg_tensor *tg_from_i32(tg_ctx *ctx, int ndim, const int64_t *shape,
			      const int32_t *values);                 /* step, i32 */
TG_API tg_tensor *tg_from_i64(tg_ctx *ctx, int ndim, const int64_t *shape,
			      const int64_t *values);                 /* step, i64 */
/* n labels as a (n) i32 tensor: tg_labels(ctx, 3, (int32_t[]){0, 2, 1}). */
TG_API tg_tensor *tg_labels(tg_ctx *ctx, int64_t n, const int32_t *values); /* step */
/* N(mean, std^2), std >= 0; uniform [lo, hi), lo <= hi, every value below hi
 * in the dtype however close the bounds or far apart; all finite (and in
 * f32 within its range: mean, std, lo and hi), else TG_EARG */
TG_API tg_tensor *tg_randn(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
			   double mean, double std);
TG_API tg_tensor *tg_rand(tg_ctx *ctx, tg_dtype dt, int ndim, const int64_t *shape,
			  double lo, double hi);

/* A ctx copy of t that requires a gradient: a parameter. */
TG_API tg_tensor *tg_param(tg_tensor *t);                        /* ctx */
/* A ctx copy of t without a gradient: optimizer state, running stats. */
TG_API tg_tensor *tg_keep(tg_tensor *t);                         /* ctx */
/* A step tensor of t's values with no history. It shares a step t's data
 * as tg_reshape does (README, Lifetimes) and reads as a copy: a write to
 * either through tg_data_mut or tg_assign gives that one data of its own. */
TG_API tg_tensor *tg_detach(tg_tensor *t);                       /* step */
/* tg_param, tg_keep and tg_detach fail as ops do: NULL, for a NULL t or
 * while an error is set with nothing new recorded, else with TG_ESTALE for
 * a stale t, TG_ENOMEM, or TG_EDTYPE for tg_param of an index tensor. */
/* Whether the leaf t requires a gradient (a tg_param does; a step tensor,
 * tg_detach's too, does not until set). Returns t. An op notes which of its
 * inputs require one as it runs, and a backward gives a gradient to each
 * leaf so noted that still requires one, as PyTorch's AccumulateGrad does: a
 * leaf turned off after the forward pass gets none from tg_backward or
 * tg_backward_ex (its tg_grad stays as it was; the grad_ready hook does not
 * report it; an optimizer skips a parameter so frozen), while the graph
 * still carries the other inputs' gradients, which are as before; tg_grad_of
 * with it among the inputs is TG_EARG. Turned on again before a later
 * backward over the same graph, it gets that backward's gradient. A leaf
 * turned on after the ops that read it gets none from them: they recorded
 * no path to it. NULL on error: TG_EARG for off on an op's output (not a
 * leaf; on is no change there), TG_EDTYPE for on of an index tensor (off is
 * no change), TG_ESTALE for a stale t; a NULL t records nothing. */
TG_API tg_tensor *tg_set_requires_grad(tg_tensor *t, bool on);
/* name is copied; NULL or "" clears it (tg_name then gives NULL). Returns t. */
TG_API tg_tensor *tg_set_name(tg_tensor *t, const char *name);
/* Whether an optimizer's weight decay applies to t: a property the module
 * that makes a parameter sets on it (weights yes; biases and norms' scales
 * and shifts no). Off unless set. Returns t. */
TG_API tg_tensor *tg_set_decay(tg_tensor *t, bool on);
TG_API bool tg_decays(const tg_tensor *t);

/* Read-only questions about t. These (tg_dim aside) record nothing: NULL or
 * a stale t gets NULL, -1, 0, TG_F32 or false, so tg_ctx_of(t) != NULL
 * tells whether t is alive. */
TG_API tg_ctx *tg_ctx_of(const tg_tensor *t);        /* borrowed */
TG_API int tg_ndim(const tg_tensor *t);
TG_API int64_t tg_dim(const tg_tensor *t, int i);     /* i < 0 counts from the end */
TG_API const int64_t *tg_shape(const tg_tensor *t);  /* borrowed, ndim entries */
TG_API size_t tg_numel(const tg_tensor *t);
TG_API tg_dtype tg_dtype_of(const tg_tensor *t);
TG_API const char *tg_name(const tg_tensor *t);      /* borrowed; NULL if none */
TG_API bool tg_requires_grad(const tg_tensor *t);
TG_API bool tg_is_param(const tg_tensor *t);
TG_API const void *tg_data(const tg_tensor *t);      /* borrowed, read only */
/* Writable data; counts as an in-place change (bumps the version, so a
 * backward through an op that saved t reports TG_EVERSION). The pointer may
 * be kept and written through again: ops that read t after a write see it.
 * Only the call bumps the version: a write through a kept pointer after an
 * op saved t goes unseen by that check, so call it again for each round of
 * writes. A t that shares its data with a reshape (tg_reshape) gets a copy
 * of its own here, first: the pointer returned is then not tg_data's from
 * before the call. NULL when memory for that copy runs out (TG_ENOMEM). */
TG_API void *tg_data_mut(tg_tensor *t);              /* borrowed */
TG_API double tg_item(const tg_tensor *t);           /* the one element; NAN on error */
TG_API double tg_get(const tg_tensor *t, size_t i);  /* flat index; NAN on error */
TG_API int tg_copy_to_f64(const tg_tensor *t, double *out, size_t n); /* 0 ok */
TG_API int tg_assign(tg_tensor *dst, const tg_tensor *src); /* values; 0 ok */
/* Writes the shape as "(2,3)" into buf ("(null)" for a NULL t, "(stale)"
 * for a stale one); returns buf. */
TG_API char *tg_shape_str(const tg_tensor *t, char *buf, size_t size);

/* ---- backward ----------------------------------------------------------- */

enum {
	TG_CREATE_GRAPH = 1, /* record the backward pass: grads get history */
	TG_ALLOW_UNUSED = 2, /* tg_grad_of: an input the outputs skip gets zeros */
};

/* y must be a scalar (one element); its gradient starts at 1. With grad mode
 * off nothing was recorded, and backward says so.
 * A backward that fails midway (the arena limit, a rule's error) puts back
 * what it changed: every leaf gradient it started or replaced is as before
 * the call, the intermediates' gradients are dropped. A leaf gradient it had
 * already added to in place (one accumulated by an earlier backward) cannot
 * be put back: it is marked lost, and tg_grad, tg_optim_step and tg_backward
 * refuse it (TG_EARG, naming it) until tg_zero_grad. So after
 * tg_clear_error the same backward may simply be run again. */
TG_API int tg_backward(tg_tensor *y);
/* dy is y's upstream gradient (same shape), or NULL for a scalar y.
 * Both return 0, or -1 with the reason in the context: a y of more than one
 * element without dy, or a dy of another shape, is TG_ESHAPE; a y without
 * history (nothing it depends on requires a gradient, or grad mode was off)
 * is TG_EARG; a NULL y records nothing. */
TG_API int tg_backward_ex(tg_tensor *y, tg_tensor *dy, unsigned flags);
/* Leaf gradients accumulate over backward calls until tg_zero_grad; an
 * intermediate's gradient is the one from the latest backward. NULL if no
 * gradient reached t. A parameter's gradient is ctx; after a TG_CREATE_GRAPH
 * backward it is a step tensor with history until tg_reset, which moves its
 * values into the parameter's own buffer (so they go on accumulating). It is
 * such a step tensor, without history, too once the buffer tg_grad gave was
 * an input of a recorded op (a forward pass that reads the gradient): the op
 * saved it, so backward adds into a new tensor, and the buffer keeps its
 * values. Any other is step. */
TG_API tg_tensor *tg_grad(const tg_tensor *t);                 /* see above */
/* After it, tg_grad of a leaf that had a gradient reads zeros, and the next
 * backward's gradient is written into the buffer (not added to zeros). A
 * buffer that a recorded op saved keeps its values for that op: tg_grad
 * then gives zeros in a step tensor of their own. */
TG_API void tg_zero_grad(tg_tensor *t);
TG_API void tg_zero_grads(tg_ctx *ctx);                        /* every param */
/* Called by tg_backward (not tg_grad_of) once for each leaf that requires a
 * gradient and that the walk reaches, as soon as its gradient is final: the
 * walk has passed the earliest node that uses it, so nothing more is added.
 * tg_grad(leaf) then holds the step's whole gradient; when none reached
 * it, zeros if the leaf had a gradient before, else NULL. Data-parallel
 * training starts sending a gradient here while the walk goes on
 * (nn/tapegrad_dist.h). fn NULL: none. A hook (or a backward rule) that
 * calls tg_reset stops the walk with TG_ESTALE. A hook may tg_zero_grad a
 * leaf already reported; zeroing one the walk still adds to (tg_zero_grads
 * from the first report) is TG_EARG, naming it, and zeroes nothing. */
typedef void (*tg_grad_ready_fn)(tg_tensor *leaf, void *user);
TG_API void tg_set_grad_ready(tg_ctx *ctx, tg_grad_ready_fn fn, void *user);

/* The gradients of the outputs with respect to the chosen inputs, like
 * torch.autograd.grad: grads[i] = sum_k d<outputs[k], douts[k]>/d inputs[i].
 * douts is NULL or has one upstream gradient per output (same shape and
 * dtype), a NULL entry standing for 1 of a one-element output. Inputs may be
 * leaves, parameters or intermediates; each must require a gradient. An
 * intermediate's gradient counts every recorded path into it, through the
 * rules of a recorded backward that read it too (div's reads its output,
 * expm1's its input: the reverse of PyTorch's). The walk runs only the rules
 * on paths to the inputs, as PyTorch's does: a part of the graph that leads
 * to none of them costs nothing, and an in-place change there (TG_EVERSION
 * to tg_backward) is no error. No
 * tensor's tg_grad changes, leaf or intermediate: the walk keeps its own.
 * flags: TG_CREATE_GRAPH gives grads history (differentiate them again);
 * TG_ALLOW_UNUSED gives a zero tensor for an input the outputs do not depend
 * on, which is otherwise a TG_EARG error naming the input. An input on the
 * outputs' recorded graph that gets no gradient because every path to it
 * has derivative zero (x in relu's gradient under TG_CREATE_GRAPH,
 * relu_backward(dout, x)) gets zeros without the flag, as in PyTorch; a
 * gradient recorded without history (abs's sign(x) dout) has no graph. grads[i] are new
 * step tensors; 0 ok, -1 (grads all NULL) on error. grads may be one of the
 * argument arrays (y = dy/dx written over y): they are read first. A
 * backward rule or a grad_ready hook may call it during tg_backward's walk;
 * a walk's rule that calls tg_backward, or tg_grad_of during tg_grad_of's,
 * is TG_EARG. */
TG_API int tg_grad_of(int nout, tg_tensor *const *outputs, tg_tensor *const *douts, int nin,
		      tg_tensor *const *inputs, tg_tensor **grads, unsigned flags);

/* ---- custom ops --------------------------------------------------------- */
/* An op is a descriptor: its name and its backward rule. The rule reads the
 * node and its upstream gradient dout and hands each input that needs one
 * its gradient, computed with ops (so it can be recorded for second order).
 * A rule that computes it outside the ops (a loop over tg_data_mut) serves
 * tg_backward, tg_vjp and tg_gradcheck; under TG_CREATE_GRAPH with an
 * upstream gradient that has history (tg_jvp, a Jacobian by columns, a
 * second backward's gradient) its non-zero gradient without history is
 * TG_EARG, naming the op, where derivatives through it would read zeros.
 * tg_hvp and tg_hessian start from a gradient without history and cannot
 * tell: check a rule with tg_gradcheck2.
 * Forward: compute the output any way (ops under tg_set_grad_enabled(false),
 * or a loop over tg_data_mut), then tg_record it. The last two fields only
 * label the drawn graph (tg_write_dot) and may be left out: write the
 * descriptor with designated initialisers,
 *	static const tg_op cube_op = { .name = "cube", .backward = cube_backward };
 */
typedef void (*tg_backward_fn)(tg_node *node, tg_tensor *dout);
typedef struct tg_op {
	const char *name;
	tg_backward_fn backward;
	/* One role per input, drawn on its edge ("numerator"); "" draws none.
	 * NULL: edges of an op of two or more inputs show the input's number. */
	const char *const *inputs;
	/* Writes the op's constants into buf as snprintf does ("^ 2", "axis 1"),
	 * from the node's attributes; NULL or a result <= 0: none. */
	int (*describe)(const tg_node *n, char *buf, size_t size);
	/* The tensors whose values the rule never reads, only their shapes:
	 * bit i (1u << i) for input i, TG_UNREAD_OUTPUT for the output. Those
	 * may be changed in place between the forward and the backward; any
	 * other input or output so changed makes the backward TG_EVERSION.
	 * 0 (left out): the rule may read every one. */
	unsigned unread;
} tg_op;
#define TG_UNREAD_OUTPUT (1u << TG_MAX_INPUTS)
#define TG_UNREAD_ALL ((1u << (TG_MAX_INPUTS + 1)) - 1) /* every input and the output */

/* Records out as op applied to in[0..nin); attrs (may be NULL) are saved on
 * the node. Returns out (NULL if out or any input is NULL or on error). */
TG_API tg_tensor *tg_record(const tg_op *op, tg_tensor *out, int nin,
			    tg_tensor *const *in, const double *attrs, int nattrs);
/* Input i of the node, borrowed; an i outside [0, nin) is TG_EARG naming
 * the op, and NULL (as is a NULL n, recording nothing). */
TG_API tg_tensor *tg_node_input(const tg_node *n, int i);
TG_API tg_tensor *tg_node_output(const tg_node *n);         /* borrowed */
/* Attribute i of the nattrs tg_record saved; an i outside [0, nattrs) is
 * TG_EARG naming the op, and NaN (as is a NULL n, recording nothing). */
TG_API double tg_node_attr(const tg_node *n, int i);
TG_API bool tg_node_needs_grad(const tg_node *n, int i);
/* Hands input i its gradient dx. dx may have the output's broadcast shape:
 * it is summed back to the input's shape. A shape that is neither the
 * input's nor sums to it over axes of the output (counted from the last,
 * of the output's sizes) is TG_ESHAPE. A NULL dx (an op of the rule
 * failed) is TG_ENULL unless an error is already set. */
TG_API void tg_node_grad(tg_node *n, int i, tg_tensor *dx);
/* For a rule that can write input i's gradient itself (a product's kernel
 * writing its result where it is told): the leaf's own gradient buffer, when
 * this is the first gradient the leaf gets since tg_zero_grad and nothing
 * needs it as a tensor of its own; NULL otherwise (an intermediate, a
 * TG_CREATE_GRAPH backward, tg_grad_of, anomaly mode, a gradient already
 * there), and the rule computes dx as usual. A rule that got a buffer fills
 * every element with the gradient, overwriting what it held, and then hands
 * it on with tg_node_grad(n, i, buffer), which then copies nothing. */
TG_API tg_tensor *tg_node_grad_buffer(tg_node *n, int i);
TG_API const tg_op *tg_node_op(const tg_node *n);
TG_API const tg_node *tg_producer(const tg_tensor *t); /* NULL for leaves */

/* ---- gradient checking -------------------------------------------------- */
/* f maps inputs to a tensor; the check differentiates L = sum(f * w) for a
 * fixed random weighting w, numerically (central differences in f64, step
 * eps) and with a backward pass (tg_grad_of), and judges every input element
 * as PyTorch's gradcheck does: it fails when |analytic - numeric| > atol +
 * rtol |numeric|, or when the numeric value is infinite (a difference that
 * overflowed) and the analytic one is not that same infinity. Inputs must
 * be f64 leaves; the check leaves them, their gradients and the tape as it
 * found them, and no tensor's tg_grad changes (nor those of the parameters
 * or intermediates f reads). Returns 0 when every element passes, 1 when any
 * fails, -1 on error (the context's). An f that calls tg_reset ends the step
 * its call works in: that call (this check, tg_vjp, ...) fails with
 * TG_ESTALE and leaves the new step's tape as it is. Like the derivative
 * functions below, the check cuts its nodes off the tape again: a tensor f
 * keeps comes out without history. */
typedef tg_tensor *(*tg_fn)(tg_tensor *const *in, void *user);
typedef struct tg_gradcheck_opts {
	double eps;   /* central-difference step, > 0 */
	double atol;  /* absolute tolerance, >= 0 */
	double rtol;  /* relative tolerance, >= 0 */
	FILE *report; /* failing elements are written here; NULL: nowhere */
	int max_report; /* at most this many element lines (0: 10), then a count */
} tg_gradcheck_opts;
/* What NULL options mean: PyTorch's f64 defaults, no report. */
#define TG_GRADCHECK_DEFAULTS { .eps = 1e-6, .atol = 1e-5, .rtol = 1e-3, .report = NULL, .max_report = 10 }
typedef struct tg_gradcheck_result {
	double max_abs[TG_MAX_INPUTS]; /* per input, worst |num - ana| */
	double max_rel[TG_MAX_INPUTS]; /* per input, worst |num - ana| / max(1, |num|, |ana|) */
	double worst_abs;
	double worst_rel;
	size_t checked;     /* elements compared */
	size_t failed;      /* elements outside atol + rtol |numeric| */
	struct {            /* the first failing element; input -1 if none */
		int input;
		size_t index;                 /* flat */
		int64_t at[TG_MAX_DIMS];      /* multi-index, the input's ndim entries */
		double analytic, numeric;
	} first;
} tg_gradcheck_result;
/* opts and res may be NULL (defaults; no result). */
TG_API int tg_gradcheck(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
			const tg_gradcheck_opts *opts, tg_gradcheck_result *res);
/* Same, for the gradient of sum(grad_in(sum(f * w)) * v): checks that the
 * backward pass is itself differentiated correctly (TG_CREATE_GRAPH). */
TG_API int tg_gradcheck2(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
			 const tg_gradcheck_opts *opts, tg_gradcheck_result *res);

/* ---- derivatives of functions ------------------------------------------- */
/* Like torch.autograd.functional: f (as above) is evaluated at step copies of
 * in[0..nin) that require a gradient, so the given tensors need not, and
 * nothing of theirs (values, gradients, history) is touched; nor is any
 * tensor's tg_grad. Every result is a new step tensor without history, in
 * the inputs' dtype. out, where a function has it, receives f's value (step;
 * NULL: not wanted). Each returns 0, or -1 with the context's error and the
 * results NULL. A result array may be an argument's (v <- H v): the
 * arguments are read before it is written. The nodes they record are cut
 * off the tape again, so a tensor f makes and keeps (through user) comes
 * out without history: its values can be read, and to later ops it is a
 * constant, a backward from it alone an error (f's value with history is f
 * called again, outside). */

/* Vector-Jacobian product: vjp[i] = v^T df/din[i] (in[i]'s shape); v has f's
 * output shape, or is NULL when f returns one element. One backward pass. */
TG_API int tg_vjp(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
		  tg_tensor *v, tg_tensor **out, tg_tensor **vjp);
/* Jacobian-vector product: *jvp = sum_i df/din[i] tangents[i] (f's output
 * shape), tangents[i] of in[i]'s shape. Reverse mode twice (the double-VJP
 * trick): g(u) = u^T J is linear in a dummy upstream gradient u, so the
 * gradient of <g(u), t> with respect to u is J t; exact up to rounding. */
TG_API int tg_jvp(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
		  tg_tensor *const *tangents, tg_tensor **out, tg_tensor **jvp);
/* Hessian-vector product of a one-element f: hvp[i] = sum_j d2f/din[i]din[j]
 * v[j], the gradient of <grad f, v>. */
TG_API int tg_hvp(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
		  tg_tensor *const *v, tg_tensor **out, tg_tensor **hvp);
/* jac[i] = df/din[i], of shape f.shape ++ in[i].shape (PyTorch's layout:
 * jac[i][r..., c...] = d f[r...] / d in[i][c...]). Built a row per output
 * element (one VJP each) or a column per input element (one JVP each),
 * whichever makes fewer passes. The two shapes together may have at most
 * TG_MAX_DIMS axes. Each pass gives its step memory back to the next once
 * its row or column is in jac, so the call takes f's memory, the result's
 * and one pass's, not one pass's per row; unless f records a custom op
 * (tg_record), whose rule may keep what it makes: then every pass's memory
 * stays until tg_reset. */
TG_API int tg_jacobian(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
		       tg_tensor **jac);
/* The Hessian of a one-element f as nin * nin blocks, row-major:
 * hess[i * nin + j] = d2f / din[i] din[j], of shape in[i].shape ++
 * in[j].shape (at most TG_MAX_DIMS axes). One pass per input element over
 * the recorded gradient, each giving its memory back as tg_jacobian's do. */
TG_API int tg_hessian(tg_ctx *ctx, tg_fn f, void *user, int nin, tg_tensor *const *in,
		      tg_tensor **hess);

/* ---- graph export ------------------------------------------------------- */
/* Writes the graph that produced y as Graphviz DOT. A box per op shows the
 * name given to its output, the op and its constants ("y = pow", "^ 2"); an
 * ellipse per leaf shows the leaf's name. An edge shows the input's role
 * where the op has one ("denominator: 4"), the value it carries (one number
 * in full, up to 4 as a list to 6 digits, more by dtype and shape) and, after
 * backward, the gradient this consumer handed back along it: a tensor used
 * twice has two edges with their own shares, which add up to its gradient. */
/* 0 ok; -1 for a NULL y (nothing recorded), with TG_ESTALE for a stale y,
 * TG_ENULL for a NULL f, TG_ENOMEM, or TG_EIO when writing fails. */
TG_API int tg_write_dot(const tg_tensor *y, FILE *f);
/* Through a temporary beside path, renamed over it: a failed write leaves
 * what was there. Only a regular file is replaced (a device, a FIFO or a
 * directory at path is TG_EIO); a symbolic link is followed and stays. 0
 * ok; -1 as tg_write_dot, TG_ENULL for a NULL path, TG_EIO naming the path
 * and the reason. */
TG_API int tg_write_dot_file(const tg_tensor *y, const char *path);

/* ---- ops: elementwise, binary (NumPy broadcasting) ---------------------- */
/* All ops return step tensors. Inputs must share one dtype and one context.
 * Every op, here and in the ops sections below, fails as the errors
 * paragraph at the top says: NULL, with the first failure kept in the
 * context (TG_ESHAPE for shapes that do not fit, TG_EDTYPE for mixed or
 * index dtypes, TG_ECTX for two contexts, TG_EARG for a bad axis or value,
 * TG_ENULL for a NULL input beside one that names the context, TG_ESTALE,
 * TG_ENOMEM; a stale input of another context is TG_ESTALE in its own
 * context and TG_ECTX in the op's); NULL too, with nothing new recorded, while an error is
 * already set (the usual cause of a NULL input) or when no input names a
 * context. */

TG_API tg_tensor *tg_add(tg_tensor *a, tg_tensor *b);     /* a + b; da = db = dout */
TG_API tg_tensor *tg_sub(tg_tensor *a, tg_tensor *b);     /* a - b; da = dout, db = -dout */
TG_API tg_tensor *tg_mul(tg_tensor *a, tg_tensor *b);     /* a * b; da = dout b, db = dout a */
TG_API tg_tensor *tg_div(tg_tensor *a, tg_tensor *b);     /* a / b; da = dout / b, db = -dout a / b^2 */
/* maximum and minimum: a NaN wins either way round and takes dout. The
 * losing side gets +0 whatever dout holds there (a select, as PyTorch: an
 * infinite or NaN dout is not spread to it). */
TG_API tg_tensor *tg_maximum(tg_tensor *a, tg_tensor *b); /* routes dout to the larger; a tie splits it */
TG_API tg_tensor *tg_minimum(tg_tensor *a, tg_tensor *b); /* routes dout to the smaller; a tie splits it */
/* mask ? a : b, elementwise; mask, a and b broadcast together. mask may
 * have any dtype (f32, f64, i32, i64) and is true where nonzero (NaN too);
 * a and b share one dtype. da = dout where mask, db = dout where !mask,
 * each summed to its input's shape; mask gets no gradient. */
TG_API tg_tensor *tg_where(tg_tensor *mask, tg_tensor *a, tg_tensor *b);
/* x^p; dx = dout p x^(p-1), and 0 for p = 0 (at x = 0 too, as PyTorch).
 * Values and derivatives follow C's pow, -0 too: (-0)^-0.5 = +inf, and
 * so dx at -0 for p = 0.5 (PyTorch's rsqrt gives -inf for both). */
TG_API tg_tensor *tg_pow(tg_tensor *x, double p);
TG_API tg_tensor *tg_add_scalar(tg_tensor *x, double s);  /* x + s; dx = dout */
TG_API tg_tensor *tg_mul_scalar(tg_tensor *x, double s);  /* x * s; dx = dout s */

/* ---- ops: elementwise, unary -------------------------------------------- */

TG_API tg_tensor *tg_neg(tg_tensor *x);      /* -x; dx = -dout */
TG_API tg_tensor *tg_exp(tg_tensor *x);      /* e^x; dx = dout y */
TG_API tg_tensor *tg_log(tg_tensor *x);      /* ln x; dx = dout / x */
TG_API tg_tensor *tg_sqrt(tg_tensor *x);     /* sqrt x; dx = dout / (2 y) */
TG_API tg_tensor *tg_abs(tg_tensor *x);      /* |x|; dx = dout sign(x), 0 at 0 */
TG_API tg_tensor *tg_sigmoid(tg_tensor *x);  /* 1/(1+e^-x); dx = dout y (1 - y) */
TG_API tg_tensor *tg_tanh(tg_tensor *x);     /* tanh x; dx = dout (1 - y^2) */
/* max(x, 0); dx = dout where x > 0, else +0 (a select: an infinite or NaN
 * dout there gives 0, as PyTorch) */
TG_API tg_tensor *tg_relu(tg_tensor *x);
TG_API tg_tensor *tg_leaky_relu(tg_tensor *x, double alpha); /* x>0 ? x : alpha x */
/* x>0 ? x : alpha (e^x - 1); dx = dout (x>0 ? 1 : alpha e^x) */
TG_API tg_tensor *tg_elu(tg_tensor *x, double alpha);
TG_API tg_tensor *tg_softplus(tg_tensor *x); /* ln(1 + e^x); dx = dout sigmoid(x) */
TG_API tg_tensor *tg_log1p(tg_tensor *x);    /* ln(1 + x); dx = dout / (1 + x) */
TG_API tg_tensor *tg_expm1(tg_tensor *x);    /* e^x - 1; dx = dout e^x */
TG_API tg_tensor *tg_sin(tg_tensor *x);      /* sin x; dx = dout cos x */
TG_API tg_tensor *tg_cos(tg_tensor *x);      /* cos x; dx = -dout sin x */
TG_API tg_tensor *tg_erf(tg_tensor *x);      /* erf x; dx = dout 2/sqrt(pi) e^(-x^2) */
/* x Phi(x) = x (1 + erf(x/sqrt 2)) / 2, exact (no tanh approximation);
 * dx = tg_gelu_backward(dout, x) = dout (Phi(x) + x phi(x)) */
TG_API tg_tensor *tg_gelu(tg_tensor *x);
TG_API tg_tensor *tg_silu(tg_tensor *x);     /* x sigmoid(x); dx = dout s (1 + x (1 - s)) */
/* Clamps x to [lo, hi]; lo may be -INFINITY, hi INFINITY (one-sided).
 * dx = dout where lo <= x <= hi (the bounds included, as PyTorch), 0
 * outside and at a NaN x, which stays NaN. lo > hi or a NaN bound is TG_EARG. */
TG_API tg_tensor *tg_clamp(tg_tensor *x, double lo, double hi);
/* The fused local gradients below take dout and x (or y) of one shape:
 * unlike the binary ops, they do not broadcast (TG_ESHAPE). */
/* dout * y * (1 - y): sigmoid's local gradient as one fused op. */
TG_API tg_tensor *tg_sigmoid_backward(tg_tensor *dout, tg_tensor *y);
/* dout * (1 - y^2): tanh's local gradient as one fused op. */
TG_API tg_tensor *tg_tanh_backward(tg_tensor *dout, tg_tensor *y);
/* x > 0 ? dout : +0, selected whatever dout holds (not dout * [x > 0], whose
 * inf 0 is NaN): relu's local gradient as one fused op. */
TG_API tg_tensor *tg_relu_backward(tg_tensor *dout, tg_tensor *x);
/* dout * (x > 0 ? 1 : alpha): leaky relu's local gradient as one fused op. */
TG_API tg_tensor *tg_leaky_relu_backward(tg_tensor *dout, tg_tensor *x, double alpha);
/* dout * (x > 0 ? 1 : alpha e^x): elu's local gradient as one fused op. */
TG_API tg_tensor *tg_elu_backward(tg_tensor *dout, tg_tensor *x, double alpha);
/* dout * (Phi(x) + x phi(x)): gelu's local gradient as one fused op. */
TG_API tg_tensor *tg_gelu_backward(tg_tensor *dout, tg_tensor *x);
/* dout * p * x^(p-1): pow's local gradient as one fused op. */
TG_API tg_tensor *tg_pow_backward(tg_tensor *dout, tg_tensor *x, double p);
/* dout * sigmoid(x): softplus's local gradient as one fused op. */
TG_API tg_tensor *tg_softplus_backward(tg_tensor *dout, tg_tensor *x);
/* dout * s (1 + x (1 - s)), s = sigmoid(x): silu's local gradient as one fused op. */
TG_API tg_tensor *tg_silu_backward(tg_tensor *dout, tg_tensor *x);

/* ---- ops: reductions (axis < 0 counts from the end) --------------------- */

TG_API tg_tensor *tg_sum(tg_tensor *x);                    /* all elements -> scalar */
TG_API tg_tensor *tg_mean(tg_tensor *x);                   /* all elements -> scalar */
/* max and max_axis route dout to the arg-max of the tensor or of each
 * slice, a select: the other elements get +0 whatever dout holds (as
 * torch.max(x); torch.amax multiplies, giving NaN there for an infinite
 * dout). c elements tied for a max get dout / c each (an even split, as
 * tg_maximum's tie and torch.amax; torch.max(x, dim) gives it all to the
 * one index it returns). A NaN in a slice makes its max NaN (the NaNs take
 * the gradient, split the same way). */
TG_API tg_tensor *tg_max(tg_tensor *x);                    /* all -> scalar; routes to the arg-max */
TG_API tg_tensor *tg_sum_axis(tg_tensor *x, int axis, bool keepdim);  /* dx = expand(dout) */
TG_API tg_tensor *tg_mean_axis(tg_tensor *x, int axis, bool keepdim); /* dx = expand(dout) / n */
TG_API tg_tensor *tg_max_axis(tg_tensor *x, int axis, bool keepdim);  /* routes to each slice's arg-max */
/* Sums x over broadcast axes down to shape (the backward of broadcasting);
 * its gradient is tg_expand. */
TG_API tg_tensor *tg_sum_to(tg_tensor *x, int ndim, const int64_t *shape);
/* Broadcasts x to shape; its gradient is tg_sum_to. */
TG_API tg_tensor *tg_expand(tg_tensor *x, int ndim, const int64_t *shape);

/* ---- ops: shapes and matrices ------------------------------------------- */

TG_API tg_tensor *tg_matmul(tg_tensor *a, tg_tensor *b); /* (N,K) @ (K,M) -> (N,M); da = dout b^T, db = a^T dout */
/* op(a) @ op(b) with op = transpose where ta/tb: a BLAS flag, no copy. */
TG_API tg_tensor *tg_matmul_t(tg_tensor *a, bool ta, tg_tensor *b, bool tb);
/* b + a @ w: a (N,K) @ w (K,M) plus the row b, (M,) or (1,M), in every row,
 * one pass over the output (torch.addmm). da = dout w^T, dw = a^T dout,
 * db = dout summed over rows. tg_affine_forward's product. */
TG_API tg_tensor *tg_addmm(tg_tensor *a, tg_tensor *w, tg_tensor *b);
/* tg_relu(tg_addmm(a, w, b)) with its bits and gradients, the relu made in
 * the product's output: one tensor of the output's size, not two, and in a
 * plain backward b's gradient summed as the mask is applied. An affine
 * layer followed by a relu module runs it (tg_fused_pair). */
TG_API tg_tensor *tg_addmm_relu(tg_tensor *a, tg_tensor *w, tg_tensor *b);
TG_API tg_tensor *tg_transpose(tg_tensor *x);            /* (N,M) -> (M,N); dx = dout^T */
/* Same data, new shape; one entry may be -1 (inferred). dx = reshape(dout).
 * A step x's data is shared, not copied (a ctx tensor's, or one lent by
 * tg_data_mut, is copied); each still reads as a copy: a write through
 * tg_data_mut or tg_assign to either first gives the one written data of
 * its own. */
TG_API tg_tensor *tg_reshape(tg_tensor *x, int ndim, const int64_t *shape);
/* Batched matmul: a (..., N, K) @ b (..., K, M) -> (..., N, M), the batch
 * axes (all but the last two) broadcast NumPy-style: (2,1,3,4) @ (5,4,2) ->
 * (2,5,3,2). da = dout b^T, db = a^T dout, each summed over the batch axes
 * its input was broadcast along. tg_matmul stays strictly 2-D. */
TG_API tg_tensor *tg_bmm(tg_tensor *a, tg_tensor *b);
/* op(a) @ op(b), op transposing the last two axes where ta/tb: BLAS flags. */
TG_API tg_tensor *tg_bmm_t(tg_tensor *a, bool ta, tg_tensor *b, bool tb);
/* Axis j of out is axis perm[j] of x (NumPy's transpose with axes); perm
 * names each of x's ndim axes once (< 0 counts from the end).
 * dx = permute(dout, perm^-1). */
TG_API tg_tensor *tg_permute(tg_tensor *x, const int *perm);
/* x without axis (< 0 counts from the end), which must have size 1;
 * a reshape. */
TG_API tg_tensor *tg_squeeze(tg_tensor *x, int axis);
/* x with a new axis of size 1 at position axis of the result (-1: last);
 * a reshape. */
TG_API tg_tensor *tg_unsqueeze(tg_tensor *x, int axis);
/* x[start : start + length] along axis, step 1; start < 0 counts from the
 * end. dx = pad_axis(dout, axis, start, n - start - length). */
TG_API tg_tensor *tg_slice(tg_tensor *x, int axis, int64_t start, int64_t length);
/* x with before zeros in front and after zeros behind along axis: slice's
 * adjoint. dx = slice(dout, axis, before, n). */
TG_API tg_tensor *tg_pad_axis(tg_tensor *x, int axis, int64_t before, int64_t after);
/* xs[0..n) joined along axis; off the axis their shapes agree. Any n >= 1
 * (beyond TG_MAX_INPUTS, a tree of concat nodes). ctx is the tensors'
 * context, so that an empty list is a reported error (a NULL ctx is
 * TG_ENULL in the first tensor's context). dx_i = the slice of
 * dout where x_i sits. */
TG_API tg_tensor *tg_concat(tg_ctx *ctx, int n, tg_tensor *const *xs, int axis);
/* xs[0..n), one shape, joined along a new axis at position axis of the
 * result: n of (A,B) at axis 1 -> (A,n,B). dx_i = slice i of dout, reshaped. */
TG_API tg_tensor *tg_stack(tg_ctx *ctx, int n, tg_tensor *const *xs, int axis);
/* out[0..n) = consecutive slices of x along axis: n equal parts when sizes
 * is NULL, else parts of sizes[0..n) (adding up to the axis). 0 ok; on error
 * -1 and every out[i] NULL. The parts are step tensors. */
TG_API int tg_split(tg_tensor *x, int axis, int n, const int64_t *sizes, tg_tensor **out);

/* ---- ops: indexing by index tensors --------------------------------------- */
/* Every index argument is an i32 or i64 tensor (tg_labels, tg_from_i32): its
 * count is checked against the shape it indexes and each entry against its
 * range before anything is read (TG_ESHAPE, TG_EARG, naming the entry). */

/* Entries idx (n) of x along axis: (.., A, ..) -> (.., n, ..); dx adds each
 * dout slice back at its index (repeated indices accumulate). */
TG_API tg_tensor *tg_index_select(tg_tensor *x, int axis, const tg_tensor *idx);
/* Rows idx (n) of x: tg_index_select along axis 0. */
TG_API tg_tensor *tg_gather_rows(tg_tensor *x, const tg_tensor *idx);
/* Rows of table (V,D) for idx of any shape: (...) -> (..., D). d table adds
 * each row's gradient at its index; repeated indices accumulate. */
TG_API tg_tensor *tg_embedding(tg_tensor *table, const tg_tensor *idx);
/* For each row i of x (N,K), x[i, idx[i]], idx (N): (N,K) -> (N). dx scatters
 * back: dout[i] at [i, idx[i]], +0 elsewhere whatever dout holds. */
TG_API tg_tensor *tg_pick(tg_tensor *x, const tg_tensor *idx);
/* Constant one-hot rows (N,k) of dtype dt from labels (N); no gradient. step */
TG_API tg_tensor *tg_one_hot(const tg_tensor *labels, tg_dtype dt, int64_t k);

/* ---- ops: softmax and losses (along the last axis) ---------------------- */

TG_API tg_tensor *tg_softmax(tg_tensor *x);     /* e^(x - max) / sum; dx = y (dout - sum(dout y)) */
TG_API tg_tensor *tg_log_softmax(tg_tensor *x); /* x - max - ln sum e^(x - max); dx = dout - softmax sum(dout) */
/* The same along axis (negative counts from the end; out of range is
 * TG_EARG), as PyTorch's softmax(x, dim): over the channels of images
 * (N,C,H,W) with axis 1, with no transposes. */
TG_API tg_tensor *tg_softmax_axis(tg_tensor *x, int axis);
TG_API tg_tensor *tg_log_softmax_axis(tg_tensor *x, int axis);
/* ln sum e^x along axis (negative counts from the end), as PyTorch's
 * logsumexp(x, dim, keepdim): m + ln sum e^(x - m) with m the max, in double
 * for both dtypes, one rounding; +inf in a slice gives +inf, a slice of
 * -inf gives -inf; an empty axis is TG_ESHAPE. dx = dout e^(x - y), ops. */
TG_API tg_tensor *tg_logsumexp(tg_tensor *x, int axis, bool keepdim);
/* Mean over the batch of -ln softmax(logits)[i, labels[i]]; logits (N,K),
 * labels (N) an index tensor. d logits = (softmax(logits) - onehot(labels)) / N.
 * As PyTorch's cross_entropy, logits may also be one sample (C) with a
 * label of shape (), or (N,C,d1,...,dk) with labels (N,d1,...,dk), the
 * classes along axis 1 (a segmentation's (N,C,H,W) with (N,H,W)): the mean
 * is then over every position, each a row of C values d1...dk apart, taken
 * where they lie (no permute). Every label must be a class: there is no
 * ignore_index (PyTorch's -100 is TG_EARG here, as any label outside
 * [0, C)). */
TG_API tg_tensor *tg_cross_entropy(tg_tensor *logits, const tg_tensor *labels);
/* The same with labels as a plain array of n entries, in the order of the
 * labels tensor's elements; n must be N (N d1...dk, or 1 for (C)). */
TG_API tg_tensor *tg_cross_entropy_i32(tg_tensor *logits, const int32_t *labels, int64_t n);
/* Mean over the batch of -logp[i, labels[i]], logp (N,K) log-probabilities
 * (tg_log_softmax): made of pick, mean and neg. logp and labels take the
 * shapes tg_cross_entropy takes ((N,C,d1,...) log-probabilities along axis
 * 1: tg_log_softmax_axis(x, 1)). */
TG_API tg_tensor *tg_nll(tg_tensor *logp, const tg_tensor *labels);
/* dout (softmax(logits) - onehot(labels)) / N, dout with one element:
 * cross_entropy's local gradient as one fused op; logits (N,K) only. */
TG_API tg_tensor *tg_cross_entropy_backward(tg_tensor *dout, tg_tensor *logits,
					    const tg_tensor *labels);

/* ---- ops: losses (mean over all elements -> scalar) -------------------- */
/* pred and target must have one shape: a loss never broadcasts. Either may
 * need a gradient; d target = -d pred except for bce. n = numel, d = pred - target. */

TG_API tg_tensor *tg_mse(tg_tensor *pred, tg_tensor *target); /* mean d^2; d pred = dout 2d / n */
/* mean |d|; d pred = dout sign(d) / n, 0 at d = 0 */
TG_API tg_tensor *tg_l1(tg_tensor *pred, tg_tensor *target);
/* mean(|d| <= delta ? d^2 / 2 : delta (|d| - delta / 2)), delta > 0 (PyTorch's
 * HuberLoss); d pred = dout clamp(d, -delta, delta) / n. */
TG_API tg_tensor *tg_huber(tg_tensor *pred, tg_tensor *target, double delta);
/* Binary cross-entropy of sigmoid(logits) against targets in [0, 1] (soft
 * targets allowed; others are TG_EARG): mean(max(x, 0) - x t + ln(1 + e^-|x|)),
 * finite for any finite logits; an infinite one gives the limit, 0 when it
 * is confidently right (+inf with t = 1, -inf with t = 0), else inf (where
 * PyTorch 1.13 gives NaN for -inf and for +inf with t = 1).
 * d logits = dout (sigmoid(x) - t) / n, d targets = -dout x / n. */
TG_API tg_tensor *tg_bce_with_logits(tg_tensor *logits, tg_tensor *targets);

/* ---- ops: normalisation ------------------------------------------------- */

/* Batch norm of the columns of x (N,D), N >= 2, with the batch's mean and
 * biased variance: y = (x - mean) / sqrt(var + eps) * gamma + beta; gamma,
 * beta (D), eps a positive normal number in x's dtype (1e-50 is 0 in f32),
 * as for layer norm. dx = tg_batch_norm_backward(dout, x, gamma, eps),
 * dgamma = sum(dout xhat), dbeta = sum(dout) over the batch. mean and var,
 * when not NULL, receive the batch's statistics (D) without history, for
 * running averages. x (N,C,...), e.g. images (N,C,H,W), is normalised per
 * channel over N and the axes after C (PyTorch's BatchNorm2d), in place
 * without transposes; gamma, beta and the statistics are then (C), and
 * each channel needs 2 values or more. step */
TG_API tg_tensor *tg_batch_norm(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps,
				tg_tensor **mean, tg_tensor **var);
/* tg_relu(tg_batch_norm(x, gamma, beta, eps, mean, var)) as one op, to the
 * same bits forward and backward (any order of derivatives), with one pass
 * fewer over x's size each way and no tensor for the batch norm's output.
 * tg_sequential and tg_mlp run a training batch norm module followed by a
 * relu module as this op. step */
TG_API tg_tensor *tg_batch_norm_relu(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta,
				     double eps, tg_tensor **mean, tg_tensor **var);
/* gamma / sqrt(var + eps) / N * (N dout - sum dout - xhat sum(dout xhat)):
 * batch norm's gradient for x as one fused op. */
TG_API tg_tensor *tg_batch_norm_backward(tg_tensor *dout, tg_tensor *x, tg_tensor *gamma,
					 double eps);
/* Layer norm of each row of x (..., D), ndim >= 1, over its last axis with the
 * row's mean and biased variance: y = (x - mean) / sqrt(var + eps) * gamma +
 * beta; gamma and beta (D) are both required (ones and zeros for a plain
 * normalisation), eps as batch norm's. dx = tg_layer_norm_backward(dout, x, gamma, eps),
 * dgamma = sum(dout xhat), dbeta = sum(dout) over the rows. step */
TG_API tg_tensor *tg_layer_norm(tg_tensor *x, tg_tensor *gamma, tg_tensor *beta, double eps);
/* inv_std (a - mean(a) - xhat mean(a xhat)) per row, a = dout gamma: layer
 * norm's gradient for x as one fused op. */
TG_API tg_tensor *tg_layer_norm_backward(tg_tensor *dout, tg_tensor *x, tg_tensor *gamma,
					 double eps);

/* ---- ops: convolution and pooling ---------------------------------------- */
/* Images are NCHW: x (N,C,H,W). Each output side is PyTorch's
 * floor((n + 2p - d(k-1) - 1) / s) + 1 for size n, kernel k, padding p,
 * dilation d and stride s. */

/* Per axis (h, w); NULL options are TG_CONV_DEFAULTS. stride and dilation
 * >= 1, padding (zeros on each side) >= 0, groups >= 1 dividing C and O. */
typedef struct tg_conv_opts {
	int stride[2];
	int padding[2];
	int dilation[2];
	int groups;
} tg_conv_opts;
#define TG_CONV_DEFAULTS { { 1, 1 }, { 0, 0 }, { 1, 1 }, 1 }

/* Cross-correlation as in PyTorch: x (N,C,H,W), w (O,C/groups,KH,KW), b (O)
 * or NULL -> (N,O,OH,OW), by im2col and GEMM: one per image and group, the
 * images split across tg_set_threads' threads, when an image has 64 output
 * positions or more; else one per group over a batch of images (fewer when
 * their columns would pass 16 MiB of f32); depthwise ones (groups = C, up
 * to 4 outputs per channel) on direct kernels where those are faster
 * (README has the cases). In f32, when the library was
 * built with oneDNN, its direct kernels instead (and for both gradients),
 * but for a 1x1 kernel at stride 1 without padding or groups on 64 output
 * positions or more (a GEMM per image on the planes where they lie, as
 * above), for an axis whose padded side, stride and dilated kernel pass 2^30
 * (beyond oneDNN's 32-bit indices), and where the padding meets a NaN or
 * inf in w (forward) or dout (weight gradient): oneDNN skips the padding,
 * im2col gives NaN there (0 x inf) as PyTorch does. On oneDNN one image
 * at T threads goes in T runs of its output channels, each a multiple of
 * 8. tg_set_conv_kernels (or TG_CONV in the environment when a context is
 * made) keeps a context on im2col (TG_CONV_IM2COL), or sends its f32 3x3
 * kernels at stride 1 without dilation or groups, with 16 channels or more
 * in and out and 32 or more on one side, to oneDNN's Winograd kernels
 * (TG_CONV_WINOGRAD): all three kinds, 1.3 to 2.3 times as fast on such
 * layers; their error grows with the largest input of each 6x6 tile rather
 * than each output's own window, so inputs holding NaN, inf or a magnitude
 * of 2^40 or more stay on the direct kernels.
 * dx = tg_conv2d_input_grad(dout, w), dw = tg_conv2d_weight_grad(x, dout),
 * db = dout summed over N, OH, OW. step */
TG_API tg_tensor *tg_conv2d(tg_tensor *x, tg_tensor *w, tg_tensor *b, const tg_conv_opts *o);
/* tg_relu(tg_conv2d(x, w, b, o)) with its bits and gradients, the relu made
 * in the convolution's output (one tensor of its size, not two). A
 * convolution layer followed by a relu module runs it (tg_fused_pair),
 * unless a max pool follows the relu (tg_relu_max_pool2d then). step */
TG_API tg_tensor *tg_conv2d_relu(tg_tensor *x, tg_tensor *w, tg_tensor *b, const tg_conv_opts *o);
/* conv2d's gradient for its input of size HxW (a transposed convolution):
 * dout (N,O,OH,OW), w -> (N,C,H,W). d dout = conv2d(g, w), dw =
 * conv2d_weight_grad(g, dout). step */
TG_API tg_tensor *tg_conv2d_input_grad(tg_tensor *dout, tg_tensor *w, int64_t H, int64_t W,
				       const tg_conv_opts *o);
/* conv2d's gradient for a KHxKW kernel: x (N,C,H,W), dout (N,O,OH,OW) ->
 * (O,C/groups,KH,KW). dx = conv2d_input_grad(dout, g), d dout = conv2d(x, g). step */
TG_API tg_tensor *tg_conv2d_weight_grad(tg_tensor *x, tg_tensor *dout, int64_t KH, int64_t KW,
					const tg_conv_opts *o);
/* The maximum of each kernel x kernel window at stride (>= 1) over x padded
 * by padding in [0, kernel/2] on each side with -inf (never selected):
 * (N,C,H,W) -> (N,C,OH,OW). dx gets dout at each window's arg-max: the
 * first maximum in row-major window order (as PyTorch), or the first NaN
 * (PyTorch 1.13 routes to the last NaN of a window). step */
TG_API tg_tensor *tg_max_pool2d(tg_tensor *x, int kernel, int stride, int padding);
/* tg_max_pool2d(tg_relu(x), kernel, stride, padding) as one op, to the same
 * bits forward and backward (any order of derivatives), with no tensor for
 * relu(x) and the relu's gradient taken on the pooled size. tg_sequential
 * runs a relu module followed by a max pool module as this op. step */
TG_API tg_tensor *tg_relu_max_pool2d(tg_tensor *x, int kernel, int stride, int padding);
/* The mean of each window, padding counted as zeros in the divisor
 * kernel^2 (PyTorch's count_include_pad=True); arguments as max_pool2d. dx
 * spreads dout / kernel^2 over each window. step */
TG_API tg_tensor *tg_avg_pool2d(tg_tensor *x, int kernel, int stride, int padding);

#ifdef __cplusplus
}
#endif
#endif /* TAPEGRAD_H */
