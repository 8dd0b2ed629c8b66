/*
 * bn_running.h - batch norm's running statistics, updated by the layer
 * (nn/layers.c) and by its synchronised form (nn/dist.c) alike, and the
 * eps the norm layers accept (nn/layers.c, nn/module.c). Not installed.
 */
#ifndef TG_BN_RUNNING_H
#define TG_BN_RUNNING_H

#include "tapegrad.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

/* running = decay * running + (1 - decay) * batch, in place: state, not
 * part of the graph. */
void tg_bn_update_running(tg_tensor *running, const tg_tensor *batch, double decay);

/* A norm layer's eps must be a positive normal number in the layer's dtype:
 * one that rounds to 0 or a subnormal there leaves a constant feature's
 * (x - mean) / sqrt(var + eps) at 0 / 0. NULL when eps is fine, else why
 * not, written into buf. */
static inline const char *tg_norm_eps_wrong(double eps, tg_dtype dt, char *buf, size_t size)
{
	bool f32 = dt != TG_F64;
	double lo = f32 ? FLT_MIN : DBL_MIN, hi = f32 ? FLT_MAX : DBL_MAX;
	if (eps >= lo && eps <= hi)
		return NULL;
	snprintf(buf, size, "eps = %g is not a positive normal number in %s (%g to %g)", eps,
		 f32 ? "f32" : "f64", lo, hi);
	return buf;
}

#endif /* TG_BN_RUNNING_H */
