/*
 * vmath.h - the elementary functions over arrays, from SLEEF: Y[i] = f(X[i])
 * for i < n, X == Y allowed. Each call runs the widest vectors this CPU
 * has (AVX-512, AVX2 + FMA, SSE2 on x86-64; SLEEF's scalar functions
 * elsewhere), the last n mod width elements through one padded vector, so
 * an element's value does not depend on where it sits in the array.
 * Accuracy is SLEEF's bound: 1.0 ULP (the u10 variants), 1.5 ULP for erfc,
 * with NaN, the infinities, signed zeros and the overflow and underflow
 * points as C99 Annex F has them. Internal to ops/; not installed.
 */
#ifndef TG_VMATH_H
#define TG_VMATH_H

#include <stddef.h>

#define TG_VMATH_FUNCS(X) X(exp) X(expm1) X(log) X(log1p) X(tanh) X(sin) X(cos) X(erf) X(erfc)

#define TG_VMATH_DECLARE(f)                                                   \
	void tg_vmath_##f##_f64(const double *X, double *Y, size_t n);       \
	void tg_vmath_##f##_f32(const float *X, float *Y, size_t n);
TG_VMATH_FUNCS(TG_VMATH_DECLARE)
#undef TG_VMATH_DECLARE

/* Y[i] = expm1(min(X[i], 0)), X == Y allowed: elu's negative side, where
 * only the elements not above 0 cost an expm1 (with AVX-512). */
void tg_vmath_expm1_nonpos_f64(const double *X, double *Y, size_t n);
void tg_vmath_expm1_nonpos_f32(const float *X, float *Y, size_t n);

/* Y[i] = X[i]^p, one exponent for the array: SLEEF's pow (1.0 ULP, C99's
 * special cases). */
void tg_vmath_pow_f64(const double *X, double *Y, size_t n, double p);
void tg_vmath_pow_f32(const float *X, float *Y, size_t n, float p);

/* The vector widths that may run: TG_VMATH_SCALAR, TG_VMATH_SSE2,
 * TG_VMATH_AVX2 or TG_VMATH_AVX512 (the CPU's best, the default). Lowering
 * it lets the tests measure every width one machine has; it is not for
 * use while other threads compute. Returns the width now in force. */
enum { TG_VMATH_SCALAR, TG_VMATH_SSE2, TG_VMATH_AVX2, TG_VMATH_AVX512 };
int tg_vmath_limit(int level);

/* The width the calls now run, one of the above. */
int tg_vmath_level(void);

#endif /* TG_VMATH_H */
