/*
 * bn_running.h - batch norm's running statistics, updated by the layer
 * (nn/layers.c) and by its synchronised form (nn/dist.c) alike, and the
 * eps the norm layers accept (nn/layers.c, nn/module.c). Not installed.
 */
#ifndef TG_BN_RUNNING_H
#define TG_BN_RUNNING_H

#include "norm_eps.h"
#include "tapegrad.h"

#include <math.h>
#include <stdio.h>

/* (1,C,1,...,1) of nd dimensions into shape: the shape in which a (C)
 * tensor broadcasts per channel over x (N,C,...) of nd dimensions. */
static inline void tg_bn_channel_shape(int nd, int64_t c, int64_t *shape)
{
	for (int i = 0; i < nd; i++)
		shape[i] = i == 1 ? c : 1;
}

/* running = decay * running + (1 - decay) * batch, in place: state, not
 * part of the graph. */
void tg_bn_update_running(tg_tensor *running, const tg_tensor *batch, double decay);

/* Marks m, a module of tg_batchnorm1d, as one whose eps and avg_decay a
 * spec piece stated against other defaults than TG_BN_EPS and
 * TG_BN_AVG_DECAY (tg_model_parse's opts), so that its spec writes them
 * even when they are those: "bn:D" would read back as the opts' values. */
struct tg_module;
void tg_bn_spec_states(struct tg_module *m);

/* A norm layer's eps must be a positive normal number in the layer's dtype,
 * as the ops' (norm_eps.h). NULL when eps is fine, else why not, written
 * into buf. */
static inline const char *tg_norm_eps_wrong(double eps, tg_dtype dt, char *buf, size_t size)
{
	double lo, hi;
	if (tg_norm_eps_ok(eps, dt, &lo, &hi))
		return NULL;
	snprintf(buf, size, "eps = %g is not a positive normal number in %s (%g to %g)", eps,
		 dt == TG_F64 ? "f64" : "f32", lo, hi);
	return buf;
}

#endif /* TG_BN_RUNNING_H */
