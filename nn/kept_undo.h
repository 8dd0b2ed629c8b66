/*
 * kept_undo.h - undoing the ctx tensors (tg_param, tg_keep) a constructor
 * made before it failed (engine/tensor.c). Not installed.
 *
 * Context tensors live until tg_ctx_free, so the parameters and state a
 * failed tg_model_parse or tg_optim_new had made would stay unreachable
 * in the context, growing it with every failed call. A constructor takes
 * the mark first and, when it fails, frees what came after: tensors no one
 * else holds, as none was handed out.
 */
#ifndef TG_KEPT_UNDO_H
#define TG_KEPT_UNDO_H

#include "tapegrad.h"

/* The newest ctx tensor of ctx (NULL: none yet). */
tg_tensor *tg_kept_newest(tg_ctx *ctx);
/* Frees every ctx tensor made after mark (the whole list when mark is NULL). */
void tg_kept_drop_newer(tg_ctx *ctx, tg_tensor *mark);

#endif /* TG_KEPT_UNDO_H */
