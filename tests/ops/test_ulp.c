/*
 * test_ulp.c - the worst error of each elementwise op, in units in the last
 * place (ULP) of the exact result, as the ops compute it on big tensors.
 *
 * For every op, dtype (f32, f64) and vector width this CPU runs (vmath.h:
 * AVX-512, AVX2, SSE2, scalar), 2^20 points spanning the op's useful domain
 * (half evenly spaced, half log-spaced magnitudes of both signs, so that
 * small arguments are dense too) and the special values go through the op
 * in one tensor. Each result is compared with a long double reference
 * (64-bit significand) at the point as rounded to the dtype; the error is
 * |got - exact| / ulp(exact), with the ulp of the dtype. NaN must give
 * NaN, an infinite or zero exact value must come out exactly; an exact
 * value below the normal range (only special points reach there: -100 in
 * silu) must come out finite, of its sign or zero, and below the smallest
 * normal number in magnitude.
 *
 * Bounds asserted: SLEEF's 1.0 ULP for the functions it computes alone
 * (exp, expm1, log, log1p, tanh, sin, cos, erf, pow), as 1.001: tanh gives
 * x + 1 ULP for some tiny x, 1 ULP and a hair from the exact value, and
 * the long double reference is itself rounded, 2^-11 ULP of an f64; what the few roundings
 * around them add for the composed ones (sigmoid, silu, softplus, elu,
 * gelu; see `cases`). The measured worst values are printed (tests/run
 * keeps the log: meson-logs/testlog.txt).
 */
#include "../engine/test_util.h"
#include "../../ops/vmath.h"

#include <float.h>
#include <string.h>

static const char *const level_names[] = { "scalar", "SSE2", "AVX2", "AVX-512" };
#include <stdlib.h>

enum { NPOINTS = 1 << 20 };

#define U10 1.001 /* SLEEF's u10 functions, and the reference's rounding */

typedef struct {
	const char *name;
	tg_tensor *(*op)(tg_tensor *x);
	long double (*ref)(long double x);
	double lo64, hi64, lo32, hi32; /* the domain of the points, per dtype */
	double tiny;                   /* smallest magnitude of the log-spaced half */
	double bound;                  /* the worst error allowed, in ULP */
} ulp_case;

static long double ref_exp(long double x) { return expl(x); }
static long double ref_expm1(long double x) { return expm1l(x); }
static long double ref_log(long double x) { return logl(x); }
static long double ref_log1p(long double x) { return log1pl(x); }
static long double ref_tanh(long double x) { return tanhl(x); }
static long double ref_sin(long double x) { return sinl(x); }
static long double ref_cos(long double x) { return cosl(x); }
static long double ref_erf(long double x) { return erfl(x); }
static long double ref_sigmoid(long double x) { return 1 / (1 + expl(-x)); }
static long double ref_silu(long double x) { return x / (1 + expl(-x)); }
static long double ref_elu(long double x) { return x > 0 ? x : expm1l(x); }
static long double ref_gelu(long double x) { return x * erfcl(-x / sqrtl(2)) / 2; }
static long double ref_softplus(long double x)
{
	return (x > 0 ? x : 0) + log1pl(expl(-fabsl(x)));
}

static tg_tensor *elu_1(tg_tensor *x) { return tg_elu(x, 1.0); }

/* pow with exponents that are exact in both dtypes (the op rounds its
 * exponent to the dtype): 3 and 7 over both signs, -2.5 and 0.5 over
 * positive x, 1.5 over both (NaN for x < 0, as C99 has it) */
#define POW_CASE(name, p)                                                        \
	static tg_tensor *name(tg_tensor *x) { return tg_pow(x, p); }            \
	static long double ref_##name(long double x) { return powl(x, p); }
POW_CASE(pow_3, 3)
POW_CASE(pow_7, 7)
POW_CASE(pow_m2_5, -2.5)
POW_CASE(pow_0_5, 0.5)
POW_CASE(pow_1_5, 1.5)
#undef POW_CASE

/* The domains keep the results in the normal range of the dtype, where an
 * ULP is relative; the special values reach past them. */
static const ulp_case cases[] = {
	{ "exp", tg_exp, ref_exp, -708, 709.7, -87, 88.7, 1e-30, U10 },
	{ "expm1", tg_expm1, ref_expm1, -50, 709.7, -20, 88.7, 1e-300, U10 },
	{ "log", tg_log, ref_log, 1e-300, 1e300, 1e-37, 1e38, 1e-300, U10 },
	{ "log1p", tg_log1p, ref_log1p, -0.999999, 1e300, -0.9999, 1e38, 1e-300, U10 },
	{ "tanh", tg_tanh, ref_tanh, -20, 20, -10, 10, 1e-300, U10 },
	{ "sin", tg_sin, ref_sin, -1e4, 1e4, -1e4, 1e4, 1e-300, U10 },
	{ "cos", tg_cos, ref_cos, -1e4, 1e4, -1e4, 1e4, 1e-300, U10 },
	{ "erf", tg_erf, ref_erf, -6, 6, -4, 4, 1e-300, U10 },
	{ "x^3", pow_3, ref_pow_3, -1e100, 1e100, -1e12, 1e12, 1e-100, U10 },
	{ "x^7", pow_7, ref_pow_7, -1e40, 1e40, -3e5, 3e5, 1e-40, U10 },
	{ "x^-2.5", pow_m2_5, ref_pow_m2_5, 1e-100, 1e100, 1e-15, 1e15, 1e-100, U10 },
	{ "x^0.5", pow_0_5, ref_pow_0_5, 0, 1e300, 0, 1e38, 1e-300, U10 },
	{ "x^1.5", pow_1_5, ref_pow_1_5, -1e200, 1e200, -1e25, 1e25, 1e-200, U10 },
	/* e = e^-|x| (1 ULP), 1 + e and the division (0.5 each) */
	{ "sigmoid", tg_sigmoid, ref_sigmoid, -700, 40, -85, 20, 1e-300, 2.5 },
	/* sigmoid's, times x (0.5), and e / (1 + e)'s rounding carried */
	{ "silu", tg_silu, ref_silu, -700, 40, -85, 20, 1e-300, 3.5 },
	/* log1p(e^-|x|) (1 + 1 ULP) and the sum with max(x, 0) */
	{ "softplus", tg_softplus, ref_softplus, -700, 700, -85, 85, 1e-300, 2.5 },
	{ "elu(1)", elu_1, ref_elu, -50, 1e300, -20, 1e38, 1e-300, U10 },
	/* gelu_bound: in f64 erfc (1.5 ULP) and the products, and in erfc's
	 * tail the rounding of -x / sqrt 2 (and of 1 / sqrt 2) magnified about
	 * x^2 / 2 times each (glibc's erfc measures the same); in f32 Phi
	 * computed in double and rounded once, then the product */
	{ "gelu", tg_gelu, ref_gelu, -36, 10, -12.5, 10, 1e-300, 0 },
};

/* ---- the points and the error of one result ------------------------------------- */

/* The i-th of n points in [lo, hi]: even i evenly spaced, odd i of
 * log-spaced magnitude from tiny to max(|lo|, |hi|) with alternating sign,
 * clamped into [lo, hi]. */
static double point(size_t i, size_t n, double lo, double hi, double tiny)
{
	double u = (double)i / (double)n;
	if (i % 2 == 0)
		return lo + (hi - lo) * u;
	double big = fmax(fabs(lo), fabs(hi));
	double m = exp(log(tiny) + (log(big) - log(tiny)) * u);
	double x = (i / 2) % 2 ? -m : m;
	return fmin(fmax(x, lo), hi);
}

static const double specials[] = { NAN, INFINITY, -INFINITY, 0.0, -0.0, 1.0, -1.0,
				   DBL_MAX, -DBL_MAX, DBL_MIN, -DBL_MIN, 5e-324, -5e-324,
				   1e6, -1e6, 800, -800, 100, -100, 30, -30 };
enum { NSPECIAL = sizeof specials / sizeof specials[0] };

/* The error of got against exact in ULP of a dtype with `mant` significand
 * bits (53, 24), smallest exponent emin (-1022, -126) and largest finite
 * value max; INFINITY for a wrong NaN, infinity or zero. */
static double ulp_error(double got, long double exact, int mant, int emin, double max)
{
	if (isnan(exact))
		return isnan(got) ? 0 : INFINITY;
	long double rounded = mant == 24 ? (long double)(float)exact : (long double)(double)exact;
	if (isinf(rounded) || fabsl(exact) > max)
		return got == rounded ? 0 : INFINITY;
	if (isnan(got) || isinf(got))
		return INFINITY;
	if (exact == 0)
		return got == 0 ? 0 : INFINITY;
	int e = ilogbl(exact);
	if (e < emin) { /* below the normal range */
		bool sign_ok = got == 0 || (signbit(got) != 0) == (exact < 0);
		return sign_ok && fabs(got) < ldexp(1, emin) ? 0 : INFINITY;
	}
	long double ulp = ldexpl(1, e - (mant - 1));
	return (double)(fabsl((long double)got - exact) / ulp);
}

/* ---- one op, one dtype, one width ------------------------------------------------ */

typedef struct {
	double worst; /* ULP */
	double at;    /* the point */
} worst_error;

/* gelu's bound: in f64 3 ULP plus x^2 / 2 for each of the two magnified
 * roundings and as much again for the rest of erfc's tail (measured: up to
 * 1.51 x^2, as with glibc's erfc); in f32 a rounding of Phi to float (up to
 * 1 ULP of the product where Phi is just above 1/2), the product's and the
 * fit's 0.2 (measured: 1.57 at every width). */
static double gelu_bound(double x, bool f32)
{
	return f32 ? 2.0 : isfinite(x) ? 3.0 + 2.0 * x * x : 0;
}

static worst_error measure(tg_ctx *ctx, const ulp_case *c, tg_dtype dt, const double *x,
			   const long double *exact, size_t n)
{
	bool f32 = dt == TG_F32;
	tg_tensor *y = c->op(tg_from_f64(ctx, dt, SHAPE((int64_t)n), x));
	if (!y)
		fail_msg("%s: %s", c->name, tg_error(ctx));
	worst_error w = { 0, 0 };
	for (size_t i = 0; i < n; i++) {
		double got = f32 ? ((const float *)tg_data(y))[i] : ((const double *)tg_data(y))[i];
		double err = f32 ? ulp_error(got, exact[i], 24, -126, FLT_MAX)
				 : ulp_error(got, exact[i], 53, -1022, DBL_MAX);
		double bound = c->bound > 0 ? c->bound : gelu_bound(x[i], f32);
		if (!(err <= bound))
			fail_msg("%s %s at width %s (x = %.17g) = %.17g, exact %.17Lg: %.6f ULP, "
				 "bound %.2f",
				 c->name, f32 ? "f32" : "f64", level_names[tg_vmath_level()], x[i],
				 got, exact[i], err, bound);
		if (err > w.worst) {
			w.worst = err;
			w.at = x[i];
		}
	}
	tg_reset(ctx);
	return w;
}


static void every_op_stays_within_its_ulp_bound(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	size_t n = NPOINTS + NSPECIAL;
	double *x = malloc(n * sizeof *x);
	long double *exact = malloc(n * sizeof *exact);
	assert_non_null(x);
	assert_non_null(exact);
	int best = tg_vmath_limit(TG_VMATH_AVX512);
	printf("worst error in ULP, %d points per op and dtype (widths: scalar .. %s)\n",
	       NPOINTS, level_names[best]);
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		const ulp_case *u = &cases[c];
		for (int dt = TG_F32; dt <= TG_F64; dt++) {
			bool f32 = dt == TG_F32;
			for (size_t i = 0; i < NPOINTS; i++) {
				double p = f32 ? point(i, NPOINTS, u->lo32, u->hi32, fmax(u->tiny, 1e-37))
					       : point(i, NPOINTS, u->lo64, u->hi64, u->tiny);
				x[i] = f32 ? (float)p : p;
			}
			for (size_t i = 0; i < NSPECIAL; i++)
				x[NPOINTS + i] = f32 ? (float)specials[i] : specials[i];
			for (size_t i = 0; i < n; i++)
				exact[i] = u->ref(x[i]);
			printf("  %-9s %s:", u->name, f32 ? "f32" : "f64");
			for (int level = best; level >= TG_VMATH_SCALAR; level--) {
				tg_vmath_limit(level);
				worst_error w = measure(ctx, u, (tg_dtype)dt, x, exact, n);
				printf(" %s %.4f (x = %.6g)", level_names[level], w.worst, w.at);
			}
			printf("\n");
			tg_vmath_limit(best);
		}
	}
	free(x);
	free(exact);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* elu's expm1 of min(x, 0) gathers the elements not above 0 (AVX-512) or
 * takes a chunk whole: at every width, over chunks of every mix of signs
 * (none, a quarter, half, four fifths, all not above 0; NaN, -0 and the
 * infinities among them) and lengths that end inside a vector and inside
 * a chunk, each element has the bits of expm1 over min(x, 0). */
#define NONPOS_CASE(S, T)                                                                    \
	static void nonpos_matches_##S(const T *x, T *got, T *want, size_t n, int level)     \
	{                                                                                    \
		for (size_t i = 0; i < n; i++)                                               \
			want[i] = x[i] > 0 ? 0 : x[i];                                       \
		tg_vmath_expm1_##S(want, want, n);                                           \
		tg_vmath_expm1_nonpos_##S(x, got, n);                                        \
		for (size_t i = 0; i < n; i++)                                               \
			if (memcmp(&got[i], &want[i], sizeof got[i]))                        \
				fail_msg("expm1_nonpos " #S " at %s, n %zu: element %zu (x = %g) " \
					 "is %g, expected %g",                                \
					 level_names[level], n, i, (double)x[i], (double)got[i], \
					 (double)want[i]);                                    \
		memcpy(got, x, n * sizeof *x); /* in place */                                \
		tg_vmath_expm1_nonpos_##S(got, got, n);                                      \
		if (memcmp(got, want, n * sizeof *got))                                      \
			fail_msg("expm1_nonpos " #S " at %s, n %zu: in place differs",       \
				 level_names[level], n);                                      \
	}
NONPOS_CASE(f64, double)
NONPOS_CASE(f32, float)

static void expm1_of_the_nonpositive_side_has_the_bits_of_expm1(void **state)
{
	(void)state;
	enum { N = 3000 };
	static double x64[N], g64[N], w64[N];
	static float x32[N], g32[N], w32[N];
	static const double specials_np[] = { NAN, -0.0, 0.0, -INFINITY, INFINITY, -1e-300, -800 };
	static const size_t lens[] = { 1, 15, 17, 255, 256, 257, 1000, N };
	static const int below_in_5[] = { 0, 1, 2, 4, 5 }; /* out of 5 not above 0; 1 of 4 too */
	int best = tg_vmath_limit(TG_VMATH_AVX512);
	for (size_t mix = 0; mix < sizeof below_in_5 / sizeof below_in_5[0] + 1; mix++) {
		unsigned r = 12345;
		for (size_t i = 0; i < N; i++) {
			r = r * 1103515245u + 12345u;
			double u = (double)(r >> 8) / (1 << 24); /* [0, 1) */
			bool neg = mix < 5 ? (int)(i % 5) < below_in_5[mix] : i % 4 == 0;
			double v = neg ? -20 * u : 0.001 + 20 * u;
			if (i % 97 == 3)
				v = specials_np[(i / 97) % (sizeof specials_np / sizeof specials_np[0])];
			x64[i] = v;
			x32[i] = (float)v;
		}
		for (int level = best; level >= TG_VMATH_SCALAR; level--) {
			tg_vmath_limit(level);
			for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
				nonpos_matches_f64(x64, g64, w64, lens[l], level);
				nonpos_matches_f32(x32, g32, w32, lens[l], level);
			}
		}
		tg_vmath_limit(best);
	}
}

/* f32 x^p at an integral exponent 2 < |p| <= 64 (and -2), or a
 * half-integral one |p| < 64, is computed in double and rounded once:
 * within 0.5 ULP and the double's 2^-23 (its products' roundings,
 * ops/binary.c), where SLEEF's powf allows 1.0. Every such exponent, 2^16
 * points each, over magnitudes whose powers fill float's normal range
 * (and, evenly spaced from -b to b, some that leave it; a half's base
 * taken as its magnitude, as a negative one gives NaN). */
static void integral_and_half_powers_of_floats_round_once(void **state)
{
	(void)state;
	enum { PTS = 1 << 16 };
	tg_ctx *ctx = tg_ctx_new(1);
	double *x = malloc(PTS * sizeof *x);
	assert_non_null(x);
	double worst[2] = { 0 }, worst_x[2] = { 0 }, worst_p[2] = { 0 };
	for (int p2 = -128; p2 <= 128; p2++) {
		const double p = p2 / 2.0;
		const bool half = p2 % 2 != 0;
		if ((p >= -1 && p <= 2 && !half) || fabs(p) >= 64 + half)
			continue; /* x^0, x^1, x^-1 and x^2 are exact or one operation */
		double a = pow(1e-37, 1.0 / fabs(p)), b = pow(1e38, 1.0 / fabs(p));
		for (size_t i = 0; i < PTS; i++) {
			x[i] = (float)point(i, PTS, -b, b, a);
			if (half)
				x[i] = fabs(x[i]);
		}
		tg_tensor *y = tg_pow(tg_from_f64(ctx, TG_F32, SHAPE(PTS), x), p);
		assert_non_null(y);
		for (size_t i = 0; i < PTS; i++) {
			double got = ((const float *)tg_data(y))[i];
			long double exact = powl(x[i], p);
			double err = ulp_error(got, exact, 24, -126, FLT_MAX);
			if (!(err <= 0.5 + 0x1p-23))
				fail_msg("%.9g ^ %g = %.9g, exact %.12Lg: %.6f ULP", x[i], p, got, exact,
					 err);
			if (err > worst[half]) {
				worst[half] = err;
				worst_x[half] = x[i];
				worst_p[half] = p;
			}
		}
		tg_reset(ctx);
	}
	printf("  f32 x^p, integral 2 < |p| <= 64: worst %.6f ULP (%.9g ^ %g)\n", worst[0],
	       worst_x[0], worst_p[0]);
	printf("  f32 x^p, half-integral |p| < 64: worst %.6f ULP (%.9g ^ %g)\n", worst[1],
	       worst_x[1], worst_p[1]);
	free(x);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* pow's special cases are C99's (Annex F.9.4.4) at every width: over
 * every pair of special bases and exponents, a NaN, an infinity or a zero
 * from libm's pow comes out the same (sign included) and a finite value
 * within 1 ULP of it. */
static void pow_gives_c99s_special_values(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	static const double exps[] = { 3, -3, 2, -2, 1, -1, 0.5, -0.5, 2.5, -2.5, 1.5, -1.5,
				       63.5, -63.5, 0, -0.0, INFINITY, -INFINITY, NAN, 1e10,
				       -1e10, 7, 1e-300 };
	enum { NE = sizeof exps / sizeof exps[0] };
	int best = tg_vmath_limit(TG_VMATH_AVX512);
	for (int level = best; level >= TG_VMATH_SCALAR; level--) {
		tg_vmath_limit(level);
		for (int dt = TG_F32; dt <= TG_F64; dt++)
			for (size_t e = 0; e < NE; e++) {
				bool f32 = dt == TG_F32;
				double x[NSPECIAL];
				for (size_t i = 0; i < NSPECIAL; i++)
					x[i] = f32 ? (float)specials[i] : specials[i];
				tg_tensor *y = tg_pow(tg_from_f64(ctx, (tg_dtype)dt, SHAPE(NSPECIAL), x),
						      exps[e]);
				assert_non_null(y);
				for (size_t i = 0; i < NSPECIAL; i++) {
					double got = tg_get(y, i);
					double want = f32 ? powf((float)x[i], (float)exps[e])
							  : pow(x[i], exps[e]);
					bool ok;
					if (isnan(want))
						ok = isnan(got);
					else if (isinf(want) || want == 0)
						ok = got == want && signbit(got) == signbit(want);
					else { /* an ULP of want, subnormal ones that of the smallest normal */
						int ex = ilogb(want), emin = f32 ? -126 : -1022;
						ok = fabs(got - want) <=
						     ldexp(1, (ex < emin ? emin : ex) - (f32 ? 23 : 52));
					}
					if (!ok)
						fail_msg("pow %s at width %s: %.17g ^ %.17g = %.17g, "
							 "libm %.17g",
							 f32 ? "f32" : "f64", level_names[level], x[i],
							 exps[e], got, want);
				}
				tg_reset(ctx);
			}
	}
	tg_vmath_limit(best);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_op_stays_within_its_ulp_bound),
		cmocka_unit_test(expm1_of_the_nonpositive_side_has_the_bits_of_expm1),
		cmocka_unit_test(pow_gives_c99s_special_values),
		cmocka_unit_test(integral_and_half_powers_of_floats_round_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
