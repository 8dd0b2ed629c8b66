/*
 * random.h - the context's generator in bulk, for loops that draw one
 * number per element (dropout's masks). Not installed; like parallel.h it
 * needs only the opaque tg_ctx of tapegrad.h, so nn/ includes it without
 * reaching the engine's internals.
 */
#ifndef TG_RANDOM_H
#define TG_RANDOM_H

#include <stddef.h>
#include <stdint.h>

struct tg_ctx;

/* out[0..n) = the next n values of tg_random_u64(ctx), in order: the same
 * numbers, and the same state after, as n calls, without a call and a
 * store of the state per number. Zeros for a NULL ctx. */
void tg_random_u64_fill(struct tg_ctx *ctx, uint64_t *out, size_t n);

#endif /* TG_RANDOM_H */
