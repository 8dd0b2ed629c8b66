/*
 * transpose.h - the one 2-D transpose of ops/ (transpose.c): permute's
 * kernel (shape.c) and tg_transpose (matrix.c) both move their elements
 * through it. Internal to ops/; not installed.
 */
#ifndef TG_TRANSPOSE_H
#define TG_TRANSPOSE_H

#include <stddef.h>
#include <stdint.h>

/* Y[a * ldy + b] = X[b * ldx + a] for b < rows, a < cols: X's rows become
 * Y's columns. Elements of es bytes, 4 or 8. */
void tg_transpose_tiles(size_t es, const void *X, void *Y, int64_t rows, int64_t cols,
			int64_t ldx, int64_t ldy);

#endif /* TG_TRANSPOSE_H */
