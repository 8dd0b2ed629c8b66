/*
 * fused.h - the shared shape of the fused backward ops (fused.c): an op of
 * dout and one saved tensor of its shape, computed elementwise in one
 * pass. unary.c's activations and binary.c's pow use it. Internal to ops/;
 * not installed.
 */
#ifndef TG_FUSED_H
#define TG_FUSED_H

#include "internal.h"

/* O = f(D, X) elementwise: dout and the saved tensor, of one shape; a is
 * the op's attribute (alpha, pow's exponent), unused by most. */
typedef void (*tg_fused_f64)(const double *D, const double *X, double *O, size_t n, double a);
typedef void (*tg_fused_f32)(const float *D, const float *X, float *O, size_t n, double a);

/* A uniform D (tg_is_uniform) read as a row of copies of its one value:
 * the statements (...) run for each run of [lo, hi), at tg_i, of tg_m <=
 * TG_UNIFORM_ROW elements, with tg_d the row, where a kernel would take
 * D + tg_i. */
enum { TG_UNIFORM_ROW = 256 };
#define TG_UNIFORM_RUNS(T, D, lo, hi, ...)                                           \
	do {                                                                         \
		T tg_d[TG_UNIFORM_ROW];                                              \
		for (size_t k_ = 0; k_ < TG_UNIFORM_ROW; k_++)                       \
			tg_d[k_] = *(const T *)(D);                                  \
		for (size_t tg_i = (lo); tg_i < (hi); tg_i += TG_UNIFORM_ROW) {      \
			const size_t tg_m =                                          \
				(hi) - tg_i < TG_UNIFORM_ROW ? (hi) - tg_i : TG_UNIFORM_ROW; \
			__VA_ARGS__;                                                 \
		}                                                                    \
	} while (0)

/* O = k(D, X) over n elements of dtype dt (k64 for f64, k32 for f32),
 * split across ctx's threads from min elements. With d_uniform every
 * element of D equals D[0] (tg_is_uniform): the kernel reads a short
 * row of copies of it, again and again, instead of all of D. */
void tg_fused_run(const tg_ctx *ctx, tg_dtype dt, size_t n, const void *D, bool d_uniform,
		  const void *X, void *O, tg_fused_f64 k64, tg_fused_f32 k32, size_t min, double a);

/* out = k(dout, x) in x's dtype, split across the threads from min elements. */
static inline void tg_run_fused(const tg_tensor *dout, const tg_tensor *x, tg_tensor *out,
				tg_fused_f64 k64, tg_fused_f32 k32, size_t min, double a)
{
	tg_fused_run(x->ctx, x->dtype, (size_t)x->numel, dout->data, tg_is_uniform(dout), x->data,
		     out->data, k64, k32, min, a);
}

/* Checks the inputs of a fused backward op, dout and the saved tensor in[1]
 * (named t in errors), which must have one shape, and makes the output;
 * NULL after recording why. */
tg_tensor *tg_fused_out(const char *who, tg_tensor *const *in, const char *t);

/* x's elements replaced by their relu, with tg_relu's kernel and bits: an
 * op's own output (tg_addmm_relu's). */
void tg_relu_in_place(tg_tensor *x);

#endif /* TG_FUSED_H */
