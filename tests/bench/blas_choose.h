/*
 * blas_choose.h - blas_probe's rules, without the timings: which OpenBLAS
 * kernels it tries and which one it chooses from what they measured. Pure
 * functions of their arguments, so tests/engine/test_blas.c checks them on
 * given names, CPU flags and figures (as a static header, like the demos'
 * shared parts: nothing of it enters the library).
 */
#ifndef TG_BLAS_CHOOSE_H
#define TG_BLAS_CHOOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <strings.h>

/* The kernels of OpenBLAS 0.3.21 by the widest vectors their sgemm and
 * dgemm use; any other name is a generic kernel (SSE2/SSE3/AVX). Cooperlake
 * is SkylakeX's sgemm and dgemm plus bf16 products tapegrad does not call;
 * SapphireRapids is a name of later releases (0.3.21 runs Cooperlake for
 * it). A class is tried once: by the current kernel when it is of that
 * class, else by Haswell (AVX2) or SkylakeX (AVX-512). */
enum { BLAS_GENERIC, BLAS_AVX2, BLAS_AVX512 };

static inline int blas_class(const char *core)
{
	static const char *const avx512[] = { "SkylakeX", "Cooperlake", "SapphireRapids" };
	static const char *const avx2[] = { "Haswell", "Zen", "Excavator" };
	for (size_t i = 0; core && i < sizeof avx512 / sizeof avx512[0]; i++)
		if (!strcasecmp(core, avx512[i]))
			return BLAS_AVX512;
	for (size_t i = 0; core && i < sizeof avx2 / sizeof avx2[0]; i++)
		if (!strcasecmp(core, avx2[i]))
			return BLAS_AVX2;
	return BLAS_GENERIC;
}

/* The kernels to measure, into out (room for 3): the current one first,
 * then SkylakeX when the CPU has AVX-512 and the current kernel is not an
 * AVX-512 one, then Haswell when the CPU has AVX2 and the current kernel
 * is not an AVX2 one. Returns how many. */
static inline int blas_candidates(const char *current, bool avx2, bool avx512,
				  const char *out[3])
{
	int n = 0, cls = blas_class(current);
	out[n++] = current;
	if (avx2 && avx512 && cls != BLAS_AVX512)
		out[n++] = "SkylakeX";
	if (avx2 && cls != BLAS_AVX2)
		out[n++] = "Haswell";
	return n;
}

/* What one kernel did in a child: whether it ran (OpenBLAS took the name)
 * and passed tg_blas_selfcheck, and its sgemm and dgemm speeds in GFLOP/s,
 * each the geometric mean over the shapes timed. */
typedef struct {
	const char *name;
	bool passed;
	double sgemm, dgemm;
} blas_run;

/* The run to keep: the fastest that passed, by the geometric mean of its
 * sgemm and dgemm figures, when it beats runs[0] (the kernel OpenBLAS chose
 * itself) by the factor margin (1.1: 10%) or runs[0] failed. Returns its
 * index (0: keep the current kernel), or -1 when no run passed. */
static inline int blas_choose(const blas_run *runs, int n, double margin)
{
	int best = -1;
	double best_score = 0;
	for (int i = 0; i < n; i++) {
		double score = runs[i].sgemm * runs[i].dgemm;
		if (runs[i].passed && score > 0 && (best < 0 || score > best_score)) {
			best = i;
			best_score = score;
		}
	}
	if (best <= 0 || !runs[0].passed)
		return best;
	/* scores are products of two speeds: compare against margin squared */
	double base = runs[0].sgemm * runs[0].dgemm;
	return best_score >= margin * margin * base ? best : 0;
}

#endif
