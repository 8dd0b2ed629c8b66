/*
 * hot_loop.h - TG_HOT_LOOP, the one build detail that every floor's hot
 * loops share (ops' kernels, nn's optimizer updates). Not installed; it
 * holds no types and no functions, so including it reaches nothing of the
 * engine's internals.
 */
#ifndef TG_HOT_LOOP_H
#define TG_HOT_LOOP_H

/* A hot elementwise loop compiled twice, for baseline x86-64 and for AVX2
 * (vectors twice as wide), the one this CPU runs chosen once at load time.
 * AVX2 alone brings no FMA, so every element rounds as in the baseline. */
/* Not under ThreadSanitizer: the copies are chosen by resolvers that run
 * before its runtime is ready. <limits.h> brings glibc's __GLIBC__ (macros
 * only) to a file that includes this header before any other: without it
 * such a file (nn/optim.c) silently got the baseline loop alone. */
#include <limits.h>
#if defined(__x86_64__) && defined(__ELF__) && defined(__GLIBC__) && defined(__has_attribute) && \
	!defined(__SANITIZE_THREAD__)
#if __has_attribute(target_clones)
#define TG_HOT_LOOP __attribute__((target_clones("avx2", "default")))
#define TG_HOT_LOOP_WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef TG_HOT_LOOP
#define TG_HOT_LOOP
#endif
/* The same with a third copy for AVX-512, for loops bound by square roots
 * and divisions (the optimizers' updates, softmax and cross-entropy rows)
 * or by arithmetic in double on float data (the regression losses, layer
 * norm's rows, gelu's Phi of floats, the sums in double of reductions, of
 * a broadcast's gradient and of batch norm's statistics and gradients),
 * which a wider vector speeds up where the memory-bound loops above gained
 * nothing measurable. Neither copy has FMA, so every element rounds as in
 * the baseline. */
#ifndef TG_HOT_LOOP_WIDE
#define TG_HOT_LOOP_WIDE
#endif

/* Keeps GCC from turning a plain copy or fill loop back into a call of
 * memcpy or memset (-ftree-loop-distribute-patterns), which costs more
 * than the loop where the runs are a few dozen to a few hundred bytes:
 * im2col's rows, the depthwise kernels' bordered planes, a broadcast's
 * short rows. */
#if defined(__GNUC__) && !defined(__clang__)
#define TG_NO_CALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define TG_NO_CALLS
#endif

/* Loops shorter than this are not worth a TG_HOT_LOOP copy's dispatch
 * (an indirect call through the resolved symbol) where a graph of tiny
 * tensors makes a call per op: ops/binary.c runs its baseline code below. */
enum { TG_HOT_MIN = 64 };

/* The statements after n with N their length: a constant from 1 to 8 (n
 * itself beyond), so that a loop over runs or rows that short unrolls and
 * vectorises across them, where a loop of a variable length n spent more
 * on its set-up than on the run (a sum along a last axis of 2 over a
 * million rows took 7 ms; a max, with its backward, 22 ms). */
#define TG_WITH_SHORT_N(n, ...)                            \
	switch (n) {                                       \
	case 1: { enum { N = 1 }; __VA_ARGS__ } break;     \
	case 2: { enum { N = 2 }; __VA_ARGS__ } break;     \
	case 3: { enum { N = 3 }; __VA_ARGS__ } break;     \
	case 4: { enum { N = 4 }; __VA_ARGS__ } break;     \
	case 5: { enum { N = 5 }; __VA_ARGS__ } break;     \
	case 6: { enum { N = 6 }; __VA_ARGS__ } break;     \
	case 7: { enum { N = 7 }; __VA_ARGS__ } break;     \
	case 8: { enum { N = 8 }; __VA_ARGS__ } break;     \
	default: { const int64_t N = (n); __VA_ARGS__ }    \
	}

#endif /* TG_HOT_LOOP_H */
