/*
 * conv_dnnl.h - the oneDNN kernels of conv2d (ops/conv_dnnl.c), as conv.c
 * sees them: one call per kernel, which either computes the f32 result or
 * says no, and then conv.c runs its im2col path. Built when meson finds
 * libdnnl (the `dnnl` option); without it every call says no.
 */
#ifndef TG_CONV_DNNL_H
#define TG_CONV_DNNL_H

#include "internal.h"

/* The geometry of one conv or pool, kept with its nodes as aux: the ops of
 * its backward share the pointer (it lives in the step arena). */
typedef struct tg_conv_geom {
	int64_t N, C, H, W;     /* the input */
	int64_t O, KH, KW;      /* output channels (C for a pool), the kernel */
	int64_t OH, OW;         /* the output's rows and columns */
	int64_t sh, sw, ph, pw; /* stride, zero padding on each side */
	int64_t dh, dw;         /* dilation (1 for a pool) */
	int64_t G;              /* groups (1 for a pool) */
} tg_conv_geom;

typedef enum tg_conv_kernel {
	TG_CONV_FORWARD,     /* y = out (N,O,OH,OW) from a = x, b = w, bias (O) or NULL */
	TG_CONV_INPUT_GRAD,  /* y = dx (N,C,H,W) from a = dout, b = w */
	TG_CONV_WEIGHT_GRAD, /* y = dw (O,CG,KH,KW) from a = x, b = dout (f32 tensors) */
} tg_conv_kernel;

typedef enum tg_conv_done {
	TG_CONV_DECLINED, /* nothing written: run im2col */
	TG_CONV_COMPUTED, /* y holds the result */
	TG_CONV_FAILED,   /* out of memory (the step arena, the cache): ENOMEM recorded */
} tg_conv_done;

/* y (n elements) += each of the nparts partial results that follow one
 * another in part: the lanes after the first write theirs apart, in both
 * kernels' weight gradients over runs of images, and in oneDNN's input
 * gradient over runs of one image's output channels. */
void tg_conv_add_parts(tg_dtype dt, void *y, const void *part, int nparts, size_t n);

#ifdef TG_HAVE_DNNL
/* The f32 kernel on oneDNN: its direct kernels, or its Winograd ones where
 * the context is set to TG_CONV_WINOGRAD (see WINOGRAD in conv_dnnl.c). It
 * declines when the context is set to TG_CONV_IM2COL, for a 1x1 kernel at
 * stride 1 without padding or groups on 64 positions or more (conv.c's
 * GEMM per image is faster there), when oneDNN refuses
 * the geometry, when its primitive cannot be made, and when a NaN or inf
 * would meet the padding (which oneDNN skips rather than multiplies). */
tg_conv_done tg_conv_dnnl(tg_ctx *ctx, tg_conv_kernel kind, const tg_conv_geom *g,
			  const tg_tensor *a, const tg_tensor *b, const float *bias, float *y);
/* How many primitives the context's cache holds (for the tests), and how
 * many of them are Winograd's. */
int tg_conv_dnnl_made(const tg_ctx *ctx);
int tg_conv_dnnl_winograd_made(const tg_ctx *ctx);
/* Whether oneDNN has Winograd kernels on this CPU (AVX-512), asked with a
 * 3x3 layer of 32 channels; without them every layer runs direct. */
bool tg_conv_dnnl_winograd_offered(tg_ctx *ctx);
/* How many blocked copies its kernels read instead of reordering again. */
uint64_t tg_conv_dnnl_reused(const tg_ctx *ctx);
#else
static inline tg_conv_done tg_conv_dnnl(tg_ctx *ctx, tg_conv_kernel kind,
					const tg_conv_geom *g, const tg_tensor *a,
					const tg_tensor *b, const float *bias, float *y)
{
	(void)ctx, (void)kind, (void)g, (void)a, (void)b, (void)bias, (void)y;
	return TG_CONV_DECLINED;
}
static inline int tg_conv_dnnl_made(const tg_ctx *ctx)
{
	(void)ctx;
	return 0;
}
static inline int tg_conv_dnnl_winograd_made(const tg_ctx *ctx)
{
	(void)ctx;
	return 0;
}
static inline bool tg_conv_dnnl_winograd_offered(tg_ctx *ctx)
{
	(void)ctx;
	return false;
}
static inline uint64_t tg_conv_dnnl_reused(const tg_ctx *ctx)
{
	(void)ctx;
	return 0;
}
#endif

#endif
