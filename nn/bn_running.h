/*
 * bn_running.h - batch norm's running statistics, updated by the layer
 * (nn/layers.c) and by its synchronised form (nn/dist.c) alike, the eps the
 * norm layers accept (nn/layers.c, nn/module.c), and the pairs of modules
 * (a batch norm or a max pool with a relu) that the containers run as one
 * op (nn/layers.c, nn/module.c, nn/mlp.c). Not installed.
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

/* The forward of a and b (consecutive children of a container, of one
 * context; after the child that follows b, or NULL) as one op, to the same
 * bits as tg_forward(b, tg_forward(a, x)), when they are a tg_batchnorm1d
 * module and a relu module (tg_batch_norm_relu while training; evaluating,
 * one pass when no gradient is wanted, and not where a max pool follows,
 * which the relu goes with instead), or a relu module and a max pool
 * module (tg_relu_max_pool2d); else NULL. */
typedef tg_tensor *(*tg_pair_forward)(struct tg_module *a, struct tg_module *b, tg_tensor *x);
tg_pair_forward tg_fused_pair(const struct tg_module *a, const struct tg_module *b,
			      const struct tg_module *after);

/* children[i]'s forward on x, or children[i] and [i + 1]'s as one op where
 * tg_fused_pair fuses them; *taken receives how many it ran (1 or 2). */
tg_tensor *tg_forward_children(struct tg_module *const *children, size_t n, size_t i,
			       tg_tensor *x, size_t *taken);

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
