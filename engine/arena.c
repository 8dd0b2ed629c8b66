/*
 * arena.c - the step arena: where op outputs, the tape and intermediate
 * gradients live until tg_reset.
 *
 * Allocation bumps a pointer. When a block fills, the next block (kept from
 * an earlier step) or a new, larger one takes over, so a step never fails for
 * lack of a preset size and steady-state steps call no malloc. Reset rewinds
 * every block in O(blocks). Tensor headers come from a separate ring of
 * slots (below) that does not rewind, so a header kept past its reset is
 * still recognisable as stale.
 */
#include "internal.h"

#include <string.h>

enum { FIRST_BLOCK = 1 << 20 };

static size_t align_up(size_t n)
{
	return (n + TG_ARENA_ALIGN - 1) & ~(size_t)(TG_ARENA_ALIGN - 1);
}

static char *block_base(tg_block *b)
{
	return (char *)b + TG_BLOCK_HEAD;
}

static tg_block *block_new(tg_ctx *ctx, size_t need)
{
	size_t size = FIRST_BLOCK;
	if (ctx->arena.cur && ctx->arena.cur->size * 2 > size)
		size = ctx->arena.cur->size * 2;
	if (size < need)
		size = need;
	tg_block *b = ctx->alloc.alloc(align_up(sizeof *b) + size, ctx->alloc.user);
	if (!b)
		return tg_fail(ctx, TG_ENOMEM, "out of memory growing the step arena by %zu bytes",
			       size);
	b->next = NULL;
	b->size = size;
	b->used = 0;
	ctx->arena.reserved += size;
	return b;
}

/* tg_arena_alloc when the current block lacks room, a limit is set, the
 * arena is empty or size is 0. */
void *tg_arena_grow(tg_ctx *ctx, size_t size)
{
	tg_arena *a = &ctx->arena;
	size = align_up(size ? size : 1);
	if (a->limit && a->used + size > a->limit)
		return tg_fail(ctx, TG_ENOMEM,
			       "step arena limit of %zu bytes reached (%zu in use, %zu more wanted)",
			       a->limit, a->used, size);
	tg_block *b = a->cur;
	while (b && b->used + size > b->size) {
		if (!b->next)
			break;
		b = b->next;
		b->used = 0;
	}
	if (!b || b->used + size > b->size) {
		tg_block *nb = block_new(ctx, size);
		if (!nb)
			return NULL;
		if (b)
			b->next = nb;
		else
			a->head = nb;
		b = nb;
	}
	a->cur = b;
	void *p = block_base(b) + b->used;
	b->used += size;
	a->used += size;
	return p;
}

void tg_arena_reset(tg_ctx *ctx)
{
	tg_arena *a = &ctx->arena;
	if (a->used > a->high_water)
		a->high_water = a->used;
	for (tg_block *b = a->head; b; b = b->next)
		b->used = 0;
	a->cur = a->head;
	a->used = 0;
}

void tg_arena_free(tg_ctx *ctx)
{
	tg_slots *r = ctx->arena.ring;
	if (r) {
		tg_slots *s = r->next;
		r->next = NULL;
		while (s) {
			tg_slots *next = s->next;
			ctx->alloc.free(s->slot, ctx->alloc.user);
			ctx->alloc.free(s, ctx->alloc.user);
			s = next;
		}
	}
	tg_block *b = ctx->arena.head;
	while (b) {
		tg_block *next = b->next;
		ctx->alloc.free(b, ctx->alloc.user);
		b = next;
	}
	memset(&ctx->arena, 0, sizeof ctx->arena);
}

/* ---- header slots ---------------------------------------------------------- */

static tg_slots *slots_new(tg_ctx *ctx, size_t n)
{
	tg_slots *s = ctx->alloc.alloc(sizeof *s, ctx->alloc.user);
	tg_tensor *slot = ctx->alloc.alloc(n * sizeof *slot, ctx->alloc.user);
	if (!s || !slot) {
		if (s)
			ctx->alloc.free(s, ctx->alloc.user);
		if (slot)
			ctx->alloc.free(slot, ctx->alloc.user);
		return tg_fail(ctx, TG_ENOMEM, "out of memory growing the tensor header ring");
	}
	memset(slot, 0, n * sizeof *slot);
	s->n = n;
	s->slot = slot;
	return s;
}

/* A slot is free unless it holds a header of the current or the previous
 * step. When the ring comes round to such a header, a new block goes in front
 * of it, so the ring grows to hold the two largest steps: a tensor kept past
 * one reset is always caught as stale, an older one until its slot is
 * reused. tg_arena_header (internal.h) takes a free slot of the current ring
 * block itself and comes here for the rest. */
tg_tensor *tg_arena_next_slot(tg_ctx *ctx)
{
	tg_arena *a = &ctx->arena;
	if (a->ring && a->ring_pos == a->ring->n) {
		a->ring = a->ring->next;
		a->ring_pos = 0;
	}
	tg_tensor *t = a->ring ? &a->ring->slot[a->ring_pos] : NULL;
	if (!t || (t->magic == TG_TENSOR_MAGIC && t->gen + 1 >= ctx->gen)) {
		tg_slots *s = slots_new(ctx, a->ring_size ? a->ring_size : 256);
		if (!s)
			return NULL;
		if (a->ring) {
			/* insert after the block before the taken slot */
			tg_slots *prev = a->ring;
			if (a->ring_pos > 0 || a->ring->next == a->ring) {
				s->next = prev->next;
				prev->next = s;
			} else {
				while (prev->next != a->ring)
					prev = prev->next;
				s->next = a->ring;
				prev->next = s;
			}
		} else {
			s->next = s;
		}
		a->ring_size += s->n;
		a->ring = s;
		a->ring_pos = 0;
		t = &s->slot[0];
	}
	a->ring_pos++;
	return t;
}
