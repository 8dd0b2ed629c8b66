/*
 * engine_errors.h - the engine's error helpers the nn layer uses
 * (engine/context.c, engine/tape.c). Not installed.
 *
 * A layer above the ops reports as the ops do: a stale tensor under the
 * name of the function the user called, and an op's error said again with
 * what the layer knows (which call, set, parameter or batch met it).
 */
#ifndef TG_ENGINE_ERRORS_H
#define TG_ENGINE_ERRORS_H

#include "tapegrad.h"

/* t's context; NULL for a NULL t, and for a stale t after recording
 * TG_ESTALE in its context under who's name. */
tg_ctx *tg_tensor_check(const char *who, const tg_tensor *t);
/* After tg_tensor_check(who, t) found t stale, for a call whose context is
 * ctx: when t belongs to another context, ctx records TG_ECTX too, naming
 * the argument (fmt ...). */
void tg_stale_elsewhere(tg_ctx *ctx, const char *who, const tg_tensor *t, const char *fmt, ...)
#ifdef __GNUC__
	__attribute__((format(printf, 4, 5)))
#endif
	;
/* The kept error recorded again as "<fmt's words>: <its message>", with
 * its code; nothing when ctx holds none (or is NULL). */
void tg_fail_again(tg_ctx *ctx, const char *fmt, ...)
#ifdef __GNUC__
	__attribute__((format(printf, 2, 3)))
#endif
	;

#endif /* TG_ENGINE_ERRORS_H */
