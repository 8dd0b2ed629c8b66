/*
 * conv_check.h - shared by the convolution tests: output sizes, copies
 * between contexts, and comparing a kernel's results with im2col's (the
 * oneDNN and the direct depthwise kernels).
 */
#ifndef TG_CONV_CHECK_H
#define TG_CONV_CHECK_H

#include "../engine/test_util.h"

/* A context whose convolutions all run as im2col and a GEMM. */
static inline tg_ctx *im2col_ctx(uint64_t seed)
{
	return ctx_made_with("TG_CONV", "im2col", seed);
}

/* The output side of a convolution along an input side n: kernel k,
 * stride s, padding p, dilation d (0 when the kernel does not fit). */
static inline int64_t out_side(int64_t n, int64_t k, int s, int p, int d)
{
	int64_t span = n + 2 * (int64_t)p - d * (k - 1) - 1;
	return span < 0 ? 0 : span / s + 1;
}

/* The same tensor, f32 or f64, in another context. */
static inline tg_tensor *copy_to(tg_ctx *ctx, const tg_tensor *t)
{
	tg_dtype dt = tg_dtype_of(t);
	return dt == TG_F64 ? tg_from_f64(ctx, dt, tg_ndim(t), tg_shape(t), tg_data(t))
			    : tg_from_f32(ctx, dt, tg_ndim(t), tg_shape(t), tg_data(t));
}

/* t's n elements as doubles, f32 or f64; the caller frees them. */
static inline double *tensor_values(const tg_tensor *t, size_t n)
{
	assert_non_null(t);
	assert_int_equal(tg_numel(t), n);
	double *v = malloc(n * sizeof *v);
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = tg_dtype_of(t) == TG_F64 ? ((const double *)tg_data(t))[i]
						: ((const float *)tg_data(t))[i];
	return v;
}

/* Fails, naming the case, the kernel and the element, unless got (made by
 * the path named `path`) and want (made by im2col) agree within tol of
 * mag (each element's sum of |a b|, at least 1e-3), or are the same inf,
 * or both NaN. */
static inline void expect_agree(const char *label, const char *kernel, const char *path,
				const tg_tensor *got, const tg_tensor *want,
				const tg_tensor *mag, double tol)
{
	size_t n = (size_t)tg_numel(want);
	double *g = tensor_values(got, n), *w = tensor_values(want, n);
	double *m = tensor_values(mag, n);
	for (size_t i = 0; i < n; i++) {
		double scale = !isfinite(m[i]) ? INFINITY : m[i] > 1e-3 ? m[i] : 1e-3;
		bool ok = isnan(w[i])	? isnan(g[i])
			  : isinf(w[i]) ? g[i] == w[i]
					: fabs(g[i] - w[i]) <= tol * scale;
		if (!ok)
			fail_msg("%s, %s: element %zu is %.17g %s, %.17g with im2col "
				 "(sum |a b| %.6g, tolerance %g)",
				 kernel, label, i, g[i], path, w[i], m[i], tol);
	}
	free(g), free(w), free(m);
}

#endif
