/*
 * conv_depthwise.h - conv2d's direct kernels for depthwise convolutions
 * (ops/conv_depthwise.c), as conv.c sees them: one call per kernel, in f32
 * and f64, which either computes the result or says no, and then conv.c
 * asks oneDNN (f32) and im2col in turn.
 */
#ifndef TG_CONV_DEPTHWISE_H
#define TG_CONV_DEPTHWISE_H

#include "conv_dnnl.h"

/* The kernel kind on the planes of a depthwise geometry (groups G = C, O =
 * m C): a = x and b = w for the forward (bias (O) or NULL), a = dout and b
 * = w for the input gradient, a = x and b = dout for the weight gradient;
 * y as in tg_conv_dnnl. It declines other geometries, those where im2col
 * or oneDNN is faster, contexts made with TG_CONV=im2col, and a NaN or inf
 * that would meet the zero padding (in w for the forward pass, in dout for
 * the weight gradient), which im2col multiplies by 0 and these kernels
 * skip. Bits do not depend on the context's thread count. */
tg_conv_done tg_conv_depthwise(tg_ctx *ctx, tg_conv_kernel kind, const tg_conv_geom *g,
			       const tg_tensor *a, const tg_tensor *b, const void *bias, void *y);

#endif
