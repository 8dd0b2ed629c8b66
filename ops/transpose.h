/*
 * transpose.h - the one permute kernel of ops/ (transpose.c): permute
 * (shape.c) and transpose (matrix.c) both move their elements through it.
 * Internal to ops/; not installed.
 */
#ifndef TG_TRANSPOSE_H
#define TG_TRANSPOSE_H

#include "internal.h"

/* Outputs of this many bytes or more are written past the cache: the
 * consumer reads them from memory either way, and a transpose that
 * streamed (1024,4096) floats took 3.7 ms where one through the cache took
 * 6.9 (an Intel Xeon with AVX-512, one thread). */
enum { TG_STREAM_MIN = 1 << 20 };

/* x permuted by perm (out axis j is x's axis perm[j]), a checked
 * permutation, as a step tensor of the permuted shape: one that shares x's
 * data when perm moves only axes of size 1 (the elements keep their order;
 * tg_tensor_alias), else a new one they are copied into, split across x's
 * context's threads when large. NULL on error (recorded). */
tg_tensor *tg_permuted(tg_tensor *x, const int *perm, const char *who);
/* For the backward rule of a permute-like node n, whose input 0's gradient
 * is dout permuted by perm: when that input already holds a gradient that
 * the engine would add this one to in place (tg_node_grad_sum_buffer),
 * dout is permuted straight into it, no permuted copy made and then added,
 * and true is returned; false, and nothing done, otherwise. */
bool tg_permute_grad_sum(tg_node *n, tg_tensor *dout, const int *perm);

/* Y_i (cols, rows) = X_i^T for the count matrices X_i (rows, cols) that
 * follow one another in X (es bytes an element), on the calling thread:
 * the channel blocks of a convolution's layouts (conv_dnnl.c). */
void tg_transpose_batch(size_t es, const void *X, void *Y, int64_t count, int64_t rows,
			int64_t cols);

/* A channel block's last, padded copy (C not a multiple of B): in, the r <
 * B planes from (r, hw) into to (hw, B), the lanes past r zero; else from
 * (hw, B) back into the r planes to (r, hw), the padding left out. */
void tg_transpose_pad(bool in, const float *from, float *to, int64_t r, int64_t B, int64_t hw);

#endif /* TG_TRANSPOSE_H */
