/*
 * optim_opts.h - the options an optimizer was made with, and its context,
 * for tg_fit (nn/train.c), whose ranks under dist must all train with the
 * same and whose model must be the optimizer's context's. Not installed.
 */
#ifndef TG_OPTIM_OPTS_H
#define TG_OPTIM_OPTS_H

#include "tapegrad_nn.h"

/* o's options (its current learning rate in lr); zeros for NULL. */
tg_optim_opts tg_optim_opts_of(const tg_optim *o);
/* The context o's parameters and state belong to; NULL for NULL. */
tg_ctx *tg_optim_ctx_of(const tg_optim *o);
/* o's parameters (borrowed) and their count in *n; NULL and 0 for NULL. */
tg_tensor *const *tg_optim_params_of(const tg_optim *o, size_t *n);

#endif /* TG_OPTIM_OPTS_H */
