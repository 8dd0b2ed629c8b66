/*
 * bn_running.h - batch norm's running statistics, updated by the layer
 * (nn/layers.c) and by its synchronised form (nn/dist.c) alike. Not
 * installed.
 */
#ifndef TG_BN_RUNNING_H
#define TG_BN_RUNNING_H

#include "tapegrad.h"

/* running = decay * running + (1 - decay) * batch, in place: state, not
 * part of the graph. */
void tg_bn_update_running(tg_tensor *running, const tg_tensor *batch, double decay);

#endif /* TG_BN_RUNNING_H */
