/*
 * parallel.h - loops split across a context's threads (tg_set_threads):
 * the elementwise ops, their backward kernels, the reductions and the
 * optimizer updates on large tensors. Not installed; it needs only the
 * opaque tg_ctx of tapegrad.h, so nn/ includes it as it includes
 * hot_loop.h, without reaching the engine's internals.
 *
 * The threads are one small pool per process (engine/parallel.c), started
 * at the first split loop and joined at exit; a split loop allocates
 * nothing. The caller runs the first part itself.
 */
#ifndef TG_PARALLEL_H
#define TG_PARALLEL_H

#include <stddef.h>

struct tg_ctx;

/* fn(arg, lo, hi) for one part [lo, hi) of a loop. */
typedef void (*tg_range_fn)(void *arg, size_t lo, size_t hi);

/* Loops of fewer elements than this run on the calling thread alone: a
 * split costs about 2 us (waking the pool and waiting for it), which a
 * plain elementwise loop over ~32K floats only just repays. Loops whose
 * elements cost more (the vector math: exp, erfc, ...) pass a smaller
 * bound. */
enum { TG_PAR_MIN = 32768, TG_PAR_MIN_MATH = 8192 };

/* Runs fn over [0, n): in one call when ctx has one thread or n < min,
 * otherwise in up to tg_threads(ctx) parts of consecutive indices, their
 * bounds multiples of align (>= 1, so that parts start on cache lines),
 * at once on the pool. A loop whose result at i depends on i alone gives
 * the same bits either way. Returns when every part is done. When the
 * pool is busy with another thread's loop, or cannot start, the caller
 * runs the same parts itself, one after another, so that a result never
 * depends on what other threads were doing. */
void tg_parallel_split(const struct tg_ctx *ctx, size_t n, size_t min, size_t align,
		       tg_range_fn fn, void *arg);
/* The loop too short to split is the common case (every op of a scalar
 * graph), decided here so that the call is direct: fn known at the call
 * site is inlined, no job goes through the pool's code (tests/bench's W4,
 * (x + y) z and its backward: 0.161 us a step through the out-of-line
 * call, 0.151 with this, 0.146 with binary.c's own short cut as well). */
static inline void tg_parallel_for(const struct tg_ctx *ctx, size_t n, size_t min,
				   size_t align, tg_range_fn fn, void *arg)
{
	if (n < min) {
		fn(arg, 0, n);
		return;
	}
	tg_parallel_split(ctx, n, min, align, fn, arg);
}

/* The number of parts tg_parallel_for would split a loop of n into. */
int tg_parallel_parts(const struct tg_ctx *ctx, size_t n, size_t min);

/* The sum of a long run [0, n) whatever the thread count: fn(arg, lo, m)
 * sums elements [lo, lo + m). Up to TG_SUM_BLOCK elements are one call;
 * beyond, the run is cut into blocks set by n alone (at most
 * TG_SUM_BLOCKS, each a whole number of 256 elements, TG_SUM_BLOCK or
 * more), their sums taken across ctx's threads and added in order, so the
 * result has the same bits at every thread count. */
enum { TG_SUM_BLOCK = 32768, TG_SUM_BLOCKS = 64 };
typedef double (*tg_block_sum_fn)(void *arg, size_t lo, size_t m);
double tg_parallel_sum(const struct tg_ctx *ctx, size_t n, tg_block_sum_fn fn, void *arg);

/* Column sums of rows (rows, w), w < TG_SUM_NARROW (too few columns to
 * split them), whatever the thread count: fn(arg, r0, m, acc) adds rows
 * [r0, r0 + m) into acc (w doubles), each in turn. Up to TG_SUM_BLOCK
 * elements are one call into acc; beyond, the rows are cut into blocks set
 * by rows and w alone (at most TG_SUM_BLOCKS, each a whole number of 256
 * rows and TG_SUM_BLOCK elements or more), each summed from zeros across
 * ctx's threads, and the blocks' sums are added to acc in order, so the
 * result has the same bits at every thread count. */
enum { TG_SUM_NARROW = 16 };
typedef void (*tg_rows_sum_fn)(void *arg, size_t r0, size_t m, double *acc);
void tg_parallel_column_sums(const struct tg_ctx *ctx, size_t rows, size_t w, tg_rows_sum_fn fn,
			     void *arg, double *acc);

#endif /* TG_PARALLEL_H */
