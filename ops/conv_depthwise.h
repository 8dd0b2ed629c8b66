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
 * or oneDNN is faster (the gradients at strides above 1; in f32 with
 * oneDNN, all but the forward pass and input gradient at stride 1 on
 * planes of 32x32 outputs or more and the weight gradient at stride 1 of
 * kernels larger than 3x3), more than 4 output channels per input
 * channel, padding far past the kernel, contexts made with TG_CONV=im2col,
 * and an input gradient whose w holds a NaN or inf. Bits do not depend on
 * the context's thread count. */
tg_conv_done tg_conv_depthwise(tg_ctx *ctx, tg_conv_kernel kind, const tg_conv_geom *g,
			       const tg_tensor *a, const tg_tensor *b, const void *bias, void *y);

#endif
