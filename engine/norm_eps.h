/*
 * norm_eps.h - the eps that batch and layer norm accept, the ops
 * (ops/norm.c) and the layers (nn/bn_running.h) alike: a positive normal
 * number in the dtype. The recorded rules add eps to the variance in that
 * dtype, where one that rounds to 0 or a subnormal (1e-50 in f32) leaves a
 * constant group's (x - mean) / sqrt(var + eps) at 0 / 0. Not installed;
 * it needs only tapegrad.h, as parallel.h.
 */
#ifndef TG_NORM_EPS_H
#define TG_NORM_EPS_H

#include "tapegrad.h"

#include <float.h>
#include <stdbool.h>

/* Whether eps is a positive normal number in dt; *lo and *hi receive the
 * range, for a message. */
static inline bool tg_norm_eps_ok(double eps, tg_dtype dt, double *lo, double *hi)
{
	bool f32 = dt != TG_F64;
	*lo = f32 ? FLT_MIN : DBL_MIN;
	*hi = f32 ? FLT_MAX : DBL_MAX;
	return eps >= *lo && eps <= *hi;
}

#endif /* TG_NORM_EPS_H */
