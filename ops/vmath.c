/*
 * vmath.c - the array functions of vmath.h over SLEEF's vector functions.
 *
 * One loop per function, dtype and width: whole vectors, then the tail
 * copied into a zero-padded vector. The width is chosen at every call from
 * the CPU's features (a read of libgcc's CPU model, no state of ours to
 * race on), capped by tg_vmath_limit for the tests.
 */
#include "vmath.h"

#include <string.h>

/* The AVX2 and AVX-512 declarations of sleef.h are made only when those
 * are enabled; enable them for the header alone, and call them only from
 * functions compiled for them, after the CPU said it has them. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VM_X86 1
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f")
#include <sleef.h>
#pragma GCC pop_options
#else
#define VM_X86 0
#include <sleef.h>
#endif

static int limit = TG_VMATH_AVX512;

static int cpu_level(void)
{
#if VM_X86
	if (__builtin_cpu_supports("avx512f"))
		return TG_VMATH_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return TG_VMATH_AVX2;
	return TG_VMATH_SSE2;
#else
	return TG_VMATH_SCALAR;
#endif
}

int tg_vmath_level(void)
{
	int c = cpu_level();
	return c < limit ? c : limit;
}

int tg_vmath_limit(int level)
{
	limit = level < TG_VMATH_SCALAR ? TG_VMATH_SCALAR : level;
	return tg_vmath_level();
}

/* ---- one width's loop: n / W vectors, then the tail through a padded one --- */

#define VM_LOOP(name, attr, T, W, V, LOAD, STORE, FN)                                    \
	attr static void name(const T *X, T *Y, size_t n)                                \
	{                                                                                \
		size_t i = 0;                                                            \
		for (; i + W <= n; i += W) {                                             \
			V v = LOAD(X + i);                                               \
			STORE(Y + i, FN(v));                                             \
		}                                                                        \
		if (i < n) {                                                             \
			T pad[W];                                                        \
			memset(pad, 0, sizeof pad);                                      \
			memcpy(pad, X + i, (n - i) * sizeof *X);                         \
			V v = LOAD(pad);                                                 \
			STORE(pad, FN(v));                                               \
			memcpy(Y + i, pad, (n - i) * sizeof *Y);                         \
		}                                                                        \
	}

#define VM_SCALAR_LOOP(name, T, FN)                          \
	static void name(const T *X, T *Y, size_t n)         \
	{                                                    \
		for (size_t i = 0; i < n; i++)               \
			Y[i] = FN(X[i]);                     \
	}

#if VM_X86
#define VM_WIDTHS(f, u)                                                                            \
	VM_LOOP(f##_f64_avx512, __attribute__((target("avx512f"))), double, 8, __m512d,           \
		_mm512_loadu_pd, _mm512_storeu_pd, Sleef_##f##d8_##u##avx512f)                    \
	VM_LOOP(f##_f32_avx512, __attribute__((target("avx512f"))), float, 16, __m512,            \
		_mm512_loadu_ps, _mm512_storeu_ps, Sleef_##f##f16_##u##avx512f)                   \
	VM_LOOP(f##_f64_avx2, __attribute__((target("avx2,fma"))), double, 4, __m256d,            \
		_mm256_loadu_pd, _mm256_storeu_pd, Sleef_##f##d4_##u##avx2)                       \
	VM_LOOP(f##_f32_avx2, __attribute__((target("avx2,fma"))), float, 8, __m256,              \
		_mm256_loadu_ps, _mm256_storeu_ps, Sleef_##f##f8_##u##avx2)                       \
	VM_LOOP(f##_f64_sse2, , double, 2, __m128d, _mm_loadu_pd, _mm_storeu_pd,                 \
		Sleef_##f##d2_##u##sse2)                                                          \
	VM_LOOP(f##_f32_sse2, , float, 4, __m128, _mm_loadu_ps, _mm_storeu_ps,                   \
		Sleef_##f##f4_##u##sse2)                                                          \
	VM_SCALAR_LOOP(f##_f64_scalar, double, Sleef_##f##_##u)                                   \
	VM_SCALAR_LOOP(f##_f32_scalar, float, Sleef_##f##f_##u)                                   \
	VM_PUBLIC(f, f64, double)                                                                 \
	VM_PUBLIC(f, f32, float)

#define VM_PUBLIC(f, S, T)                                           \
	static void f##_##S##_any(const T *X, T *Y, size_t n)        \
	{                                                            \
		switch (tg_vmath_level()) {                          \
		case TG_VMATH_AVX512:                                \
			f##_##S##_avx512(X, Y, n);                   \
			break;                                       \
		case TG_VMATH_AVX2:                                  \
			f##_##S##_avx2(X, Y, n);                     \
			break;                                       \
		case TG_VMATH_SSE2:                                  \
			f##_##S##_sse2(X, Y, n);                     \
			break;                                       \
		default:                                             \
			f##_##S##_scalar(X, Y, n);                   \
		}                                                    \
	}
#else
#define VM_WIDTHS(f, u)                                                 \
	VM_SCALAR_LOOP(f##_f64_any, double, Sleef_##f##_##u)            \
	VM_SCALAR_LOOP(f##_f32_any, float, Sleef_##f##f_##u)
#endif

/* The functions as SLEEF has them. */
#define VM_EXPORT(f)                                                    \
	VM_EXPORT_T(f, f64, double)                                     \
	VM_EXPORT_T(f, f32, float)
#define VM_EXPORT_T(f, S, T)                                            \
	void tg_vmath_##f##_##S(const T *X, T *Y, size_t n)             \
	{                                                               \
		f##_##S##_any(X, Y, n);                                 \
	}

VM_WIDTHS(exp, u10)
VM_WIDTHS(expm1, u10)
VM_WIDTHS(log, u10)
VM_WIDTHS(log1p, u10)
VM_WIDTHS(tanh, u10)
VM_WIDTHS(sin, u10)
VM_WIDTHS(cos, u10)
VM_WIDTHS(erf, u10)
VM_WIDTHS(erfc, u15)

VM_EXPORT(exp)
VM_EXPORT(expm1)
VM_EXPORT(log)
VM_EXPORT(tanh)
VM_EXPORT(sin)
VM_EXPORT(cos)
VM_EXPORT(erf)
VM_EXPORT(erfc)

enum { CHUNK = 256 };

/* ---- expm1 of min(x, 0): elu's negative side ------------------------------ */
/* With AVX-512 only the elements not above 0 (NaN among them) go through
 * expm1: gathered a chunk at a time (compress), then returned to their
 * places (expand), the others set to expm1(0) = 0; a chunk of three
 * quarters or more of them takes expm1 over all its elements instead, the
 * others zeroed, where the gathering would cost more than it saves.
 * SLEEF's functions are lane by lane, so each element has the bits expm1
 * over min(X, 0) gives it either way; the other widths compute just
 * that. */
#define VM_NONPOS_LOOP(S, T)                                                           \
	static void expm1_nonpos_##S##_any(const T *X, T *Y, size_t n)                 \
	{                                                                              \
		T e[CHUNK];                                                            \
		for (size_t i0 = 0; i0 < n; i0 += CHUNK) {                             \
			size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;                    \
			for (size_t i = 0; i < m; i++)                                 \
				e[i] = X[i0 + i] > 0 ? 0 : X[i0 + i];                  \
			expm1_##S##_any(e, Y + i0, m);                                 \
		}                                                                      \
	}
VM_NONPOS_LOOP(f64, double)
VM_NONPOS_LOOP(f32, float)

#if VM_X86
/* the lanes of vector v of a chunk of m elements, W a vector: all of them
 * but in the chunk's last, partial vector */
#define VM_LANES(MASK, W, m, v)                                                       \
	((m) - (v) * (W) >= (W) ? (MASK)-1 : (MASK)((1u << ((m) - (v) * (W))) - 1))
/* whole vectors by plain loads and stores, a partial one by masked ones,
 * which are slower */
#define VM_LOAD_PART(SUF, in, p)                                                      \
	((in) == (__typeof__(in))-1 ? _mm512_loadu_##SUF(p) : _mm512_maskz_loadu_##SUF(in, p))
#define VM_STORE_PART(SUF, in, p, v)                                                  \
	do {                                                                           \
		if ((in) == (__typeof__(in))-1)                                        \
			_mm512_storeu_##SUF(p, v);                                     \
		else                                                                   \
			_mm512_mask_storeu_##SUF(p, in, v);                            \
	} while (0)
#define VM_NONPOS_SPLIT(S, T, W, V, MASK, SUF)                                                 \
	__attribute__((target("avx512f"))) static void expm1_nonpos_##S##_split(const T *X,  \
										 T *Y, size_t n) \
	{                                                                                      \
		T neg[CHUNK + W];                                                              \
		MASK mk[CHUNK / W];                                                            \
		const V zero = _mm512_setzero_##SUF();                                        \
		for (size_t i0 = 0; i0 < n; i0 += CHUNK, X += CHUNK, Y += CHUNK) {             \
			const size_t m = n - i0 < CHUNK ? n - i0 : CHUNK, nv = (m + W - 1) / W; \
			size_t nn = 0;                                                         \
			for (size_t v = 0; v < nv; v++) {                                      \
				const MASK in = VM_LANES(MASK, W, m, v);                       \
				V x = VM_LOAD_PART(SUF, in, X + v * W);                        \
				mk[v] = (MASK)(in & ~_mm512_cmp_##SUF##_mask(x, zero, _CMP_GT_OQ)); \
				nn += (size_t)__builtin_popcount(mk[v]);                       \
			}                                                                      \
			if (4 * nn > 3 * m) { /* mostly not above 0: all of them, at 0 */      \
				for (size_t v = 0; v < nv; v++) {                              \
					const MASK in = VM_LANES(MASK, W, m, v);               \
					V x = VM_LOAD_PART(SUF, in, X + v * W);                \
					VM_STORE_PART(SUF, in, Y + v * W,                      \
						      _mm512_maskz_mov_##SUF(mk[v], x));       \
				}                                                              \
				expm1_##S##_avx512(Y, Y, m);                                   \
				continue;                                                      \
			}                                                                      \
			size_t at = 0;                                                         \
			for (size_t v = 0; v < nv; v++) {                                      \
				V x = VM_LOAD_PART(SUF, VM_LANES(MASK, W, m, v), X + v * W);   \
				_mm512_storeu_##SUF(neg + at, _mm512_maskz_compress_##SUF(mk[v], x)); \
				at += (size_t)__builtin_popcount(mk[v]);                       \
			}                                                                      \
			memset(neg + nn, 0, W * sizeof *neg); /* read past nn below */         \
			expm1_##S##_avx512(neg, neg, nn);                                      \
			at = 0;                                                                \
			for (size_t v = 0; v < nv; v++) {                                      \
				V r = _mm512_maskz_expand_##SUF(mk[v], _mm512_loadu_##SUF(neg + at)); \
				at += (size_t)__builtin_popcount(mk[v]);                       \
				VM_STORE_PART(SUF, VM_LANES(MASK, W, m, v), Y + v * W, r);     \
			}                                                                      \
		}                                                                              \
	}
VM_NONPOS_SPLIT(f64, double, 8, __m512d, __mmask8, pd)
VM_NONPOS_SPLIT(f32, float, 16, __m512, __mmask16, ps)

#define VM_NONPOS_PUBLIC(S, T)                                                  \
	void tg_vmath_expm1_nonpos_##S(const T *X, T *Y, size_t n)              \
	{                                                                       \
		if (tg_vmath_level() == TG_VMATH_AVX512)                        \
			expm1_nonpos_##S##_split(X, Y, n);                      \
		else                                                            \
			expm1_nonpos_##S##_any(X, Y, n);                        \
	}
#else
#define VM_NONPOS_PUBLIC(S, T)                                                  \
	void tg_vmath_expm1_nonpos_##S(const T *X, T *Y, size_t n)              \
	{                                                                       \
		expm1_nonpos_##S##_any(X, Y, n);                                \
	}
#endif
VM_NONPOS_PUBLIC(f64, double)
VM_NONPOS_PUBLIC(f32, float)

/* ---- log1p: SLEEF's gives inf above 1e307 (f64) and 1e38 (f32) -------------- */
/* There ln(1 + x) is ln x to far below an ULP; those elements are done
 * again with log. A chunk at a time, so that X == Y stays allowed. */

#define VM_LOG1P(S, T, BIG)                                                     \
	void tg_vmath_log1p_##S(const T *X, T *Y, size_t n)                     \
	{                                                                       \
		T big[CHUNK];                                                   \
		for (size_t i0 = 0; i0 < n; i0 += CHUNK) {                      \
			size_t m = n - i0 < CHUNK ? n - i0 : CHUNK, nbig = 0;   \
			for (size_t i = 0; i < m; i++)                          \
				nbig += X[i0 + i] > (BIG);                      \
			if (nbig)                                               \
				memcpy(big, X + i0, m * sizeof *X);             \
			log1p_##S##_any(X + i0, Y + i0, m);                     \
			if (!nbig)                                              \
				continue;                                       \
			for (size_t i = 0; i < m; i++)                          \
				if (!(big[i] > (BIG)))                          \
					big[i] = 1;                             \
			log_##S##_any(big, big, m);                             \
			for (size_t i = 0; i < m; i++)                          \
				if (big[i] != 0)                                \
					Y[i0 + i] = big[i];                     \
		}                                                               \
	}

VM_LOG1P(f64, double, 1e306)
VM_LOG1P(f32, float, 1e37f)

/* ---- pow with one exponent for the whole array ---------------------------- */

#define VM_POW_LOOP(name, attr, T, W, V, LOAD, STORE, SET1, FN)                          \
	attr static void name(const T *X, T *Y, size_t n, T p)                           \
	{                                                                                \
		V e = SET1(p);                                                           \
		size_t i = 0;                                                            \
		for (; i + W <= n; i += W)                                               \
			STORE(Y + i, FN(LOAD(X + i), e));                                \
		if (i < n) {                                                             \
			T pad[W];                                                        \
			memset(pad, 0, sizeof pad);                                      \
			memcpy(pad, X + i, (n - i) * sizeof *X);                         \
			STORE(pad, FN(LOAD(pad), e));                                    \
			memcpy(Y + i, pad, (n - i) * sizeof *Y);                         \
		}                                                                        \
	}

#define VM_POW_SCALAR(name, T, FN)                                   \
	static void name(const T *X, T *Y, size_t n, T p)            \
	{                                                            \
		for (size_t i = 0; i < n; i++)                       \
			Y[i] = FN(X[i], p);                          \
	}

#if VM_X86
VM_POW_LOOP(pow_f64_avx512, __attribute__((target("avx512f"))), double, 8, __m512d,
	    _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, Sleef_powd8_u10avx512f)
VM_POW_LOOP(pow_f32_avx512, __attribute__((target("avx512f"))), float, 16, __m512,
	    _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, Sleef_powf16_u10avx512f)
VM_POW_LOOP(pow_f64_avx2, __attribute__((target("avx2,fma"))), double, 4, __m256d,
	    _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, Sleef_powd4_u10avx2)
VM_POW_LOOP(pow_f32_avx2, __attribute__((target("avx2,fma"))), float, 8, __m256,
	    _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, Sleef_powf8_u10avx2)
VM_POW_LOOP(pow_f64_sse2, , double, 2, __m128d, _mm_loadu_pd, _mm_storeu_pd, _mm_set1_pd,
	    Sleef_powd2_u10sse2)
VM_POW_LOOP(pow_f32_sse2, , float, 4, __m128, _mm_loadu_ps, _mm_storeu_ps, _mm_set1_ps,
	    Sleef_powf4_u10sse2)
VM_POW_SCALAR(pow_f64_scalar, double, Sleef_pow_u10)
VM_POW_SCALAR(pow_f32_scalar, float, Sleef_powf_u10)

#define VM_POW_PUBLIC(S, T)                                                  \
	void tg_vmath_pow_##S(const T *X, T *Y, size_t n, T p)               \
	{                                                                    \
		switch (tg_vmath_level()) {                                  \
		case TG_VMATH_AVX512:                                        \
			pow_##S##_avx512(X, Y, n, p);                        \
			break;                                               \
		case TG_VMATH_AVX2:                                          \
			pow_##S##_avx2(X, Y, n, p);                          \
			break;                                               \
		case TG_VMATH_SSE2:                                          \
			pow_##S##_sse2(X, Y, n, p);                          \
			break;                                               \
		default:                                                     \
			pow_##S##_scalar(X, Y, n, p);                        \
		}                                                            \
	}
VM_POW_PUBLIC(f64, double)
VM_POW_PUBLIC(f32, float)
#else
VM_POW_SCALAR(pow_f64_any, double, Sleef_pow_u10)
VM_POW_SCALAR(pow_f32_any, float, Sleef_powf_u10)

void tg_vmath_pow_f64(const double *X, double *Y, size_t n, double p)
{
	pow_f64_any(X, Y, n, p);
}

void tg_vmath_pow_f32(const float *X, float *Y, size_t n, float p)
{
	pow_f32_any(X, Y, n, p);
}
#endif
