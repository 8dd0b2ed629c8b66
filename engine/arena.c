/*
 * arena.c - the step arena: where op outputs, the tape and intermediate
 * gradients live until tg_reset.
 *
 * Allocation bumps a pointer. When a block fills, the next block (kept from
 * an earlier step) or a new, larger one takes over, so a step never fails for
 * lack of a preset size and steady-state steps call no malloc. Reset rewinds
 * every block in O(blocks). Tensor headers come from a separate range of
 * address space (below) that does not rewind, so a header kept past its
 * reset is still recognisable as stale however long it was kept.
 */
#define _GNU_SOURCE /* mremap, MAP_NORESERVE */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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
	/* room to align the block to a line inside what the allocator gives */
	char *raw = size <= SIZE_MAX - TG_BLOCK_HEAD - TG_LINE
			    ? ctx->alloc.alloc(TG_BLOCK_HEAD + size + TG_LINE - 1, ctx->alloc.user)
			    : NULL;
	if (!raw)
		return tg_fail(ctx, TG_ENOMEM, "out of memory growing the step arena by %zu bytes",
			       size);
	tg_block *b = (tg_block *)(void *)(raw + (-(uintptr_t)raw & (TG_LINE - 1)));
	b->next = NULL;
	b->raw = raw;
	b->size = size;
	b->used = 0;
	b->idle = 0;
	ctx->arena.reserved += size;
	return b;
}

/* tg_arena_alloc when the current block lacks room, a limit is set, the
 * arena is empty or size is 0. */
void *tg_arena_grow(tg_ctx *ctx, size_t size)
{
	tg_arena *a = &ctx->arena;
	size_t want = size ? size : 1;
	if (want > SIZE_MAX - TG_BLOCK_HEAD - 2 * (size_t)TG_LINE)
		return tg_fail(ctx, TG_ENOMEM, "out of memory: %zu bytes of step memory asked for",
			       want);
	size = align_up(want);
	tg_block *b = a->cur;
	while (b && b->used + tg_arena_pad(b->used, want) + size > b->size) {
		if (!b->next)
			break;
		b = b->next;
		b->used = 0;
	}
	/* a new block starts on a line: no pad there */
	bool fits = b && b->used + tg_arena_pad(b->used, want) + size <= b->size;
	size_t pad = fits ? tg_arena_pad(b->used, want) : 0;
	if (a->limit && a->used + pad + size > a->limit)
		return tg_fail(ctx, TG_ENOMEM,
			       "step arena limit of %zu bytes reached (%zu in use, %zu more wanted)",
			       a->limit, a->used, pad + size);
	if (!fits) {
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
	void *p = block_base(b) + b->used + pad;
	b->used += pad + size;
	a->used += pad + size;
	return p;
}

void *tg_arena_array(tg_ctx *ctx, const char *who, tg_dtype dt, int64_t n1, int64_t n2,
		     int64_t n3)
{
	size_t n;
	if (n1 < 0 || n2 < 0 || n3 < 0 || __builtin_mul_overflow((size_t)n1, (size_t)n2, &n) ||
	    __builtin_mul_overflow(n, (size_t)n3, &n) ||
	    __builtin_mul_overflow(n, tg_dtype_size(dt), &n) || n > SIZE_MAX / 2)
		return tg_fail(ctx, TG_ENOMEM,
			       "%s: a buffer of %lld x %lld x %lld %s elements is more than "
			       "memory can hold",
			       who, (long long)n1, (long long)n2, (long long)n3, tg_dtype_name(dt));
	return tg_arena_alloc(ctx, n);
}

static void headers_step_ends(tg_ctx *ctx);
static void headers_free(tg_ctx *ctx);

/* A block of IDLE_BYTES or more that no step used for IDLE_RESETS resets
 * goes back to the allocator: the memory of a step far larger than the
 * rest (parameters drawn into step tensors before training, one large
 * evaluation) is not kept for the context's life, while a step that comes
 * back within IDLE_RESETS (an evaluation every epoch of a few hundred
 * steps) finds its blocks still there. */
enum { IDLE_RESETS = 1024, IDLE_BYTES = 8 << 20 };

void tg_arena_reset(tg_ctx *ctx)
{
	tg_arena *a = &ctx->arena;
	if (a->used > a->high_water)
		a->high_water = a->used;
	for (tg_block **at = &a->head; *at;) {
		tg_block *b = *at;
		b->idle = b->used ? 0 : b->idle + (b->idle < UINT32_MAX);
		b->used = 0;
		if (b->idle >= IDLE_RESETS && b->size >= IDLE_BYTES) {
			*at = b->next;
			a->reserved -= b->size;
			ctx->alloc.free(b->raw, ctx->alloc.user);
			continue;
		}
		at = &b->next;
	}
	a->cur = a->head;
	a->used = 0;
	a->epoch++;
	if (a->hdr.base)
		headers_step_ends(ctx);
}

void tg_arena_mark_take(const tg_ctx *ctx, tg_arena_mark *m)
{
	const tg_arena *a = &ctx->arena;
	m->cur = a->cur;
	m->cur_used = a->cur ? a->cur->used : 0;
	m->used = a->used;
	m->hdr_next = a->hdr.base ? a->hdr.next : NULL;
	m->hdr_lap = a->hdr.lap;
}

/* The blocks after the mark's keep a stale used, as after a reset: the
 * slow path clears it when it moves on to them. A ring slot is free only
 * once its step is over (ring_next_slot), and a range that wrapped since
 * the mark holds the mark's offset in another lap: those headers stay
 * taken until tg_reset. */
void tg_arena_rewind(tg_ctx *ctx, const tg_arena_mark *m)
{
	tg_arena *a = &ctx->arena;
	if (a->used > a->high_water)
		a->high_water = a->used;
	a->cur = m->cur ? m->cur : a->head;
	if (a->cur)
		a->cur->used = m->cur ? m->cur_used : 0;
	a->used = m->used;
	a->epoch++;
	tg_headers *h = &a->hdr;
	if (m->hdr_next && h->lap == m->hdr_lap)
		h->next = m->hdr_next;
}

void tg_arena_free(tg_ctx *ctx)
{
	headers_free(ctx);
	tg_block *b = ctx->arena.head;
	while (b) {
		tg_block *next = b->next;
		ctx->alloc.free(b->raw, ctx->alloc.user);
		b = next;
	}
	memset(&ctx->arena, 0, sizeof ctx->arena);
}

/* ---- step tensor headers ------------------------------------------------------ */

/*
 * Each context reserves HEADER_SPACE[0] bytes of address space (or the first
 * smaller size the system grants: valgrind, sanitizers, strict overcommit
 * and RLIMIT_AS may refuse the big ones) and hands headers out at a cursor
 * that only moves forward. A handle's address is given to no other header
 * until the cursor has gone once round the range: 1 TiB holds 6.0e9 headers
 * of 184 bytes, about 2.5 minutes of nothing but W4's (x+y)*z steps (40 M
 * headers a second, the fastest loop there is), 1.7 hours at a million
 * headers a second. Then the cursor wraps to the start, and a handle kept
 * over that many headers may find another live header, as with the ring.
 * (tg_arena_rewind moves the cursor back within a step, over the headers
 * of a derivative's pass that nothing outlives: a step's headers still
 * lie after the previous step's.)
 *
 * Physical memory stays bounded: once the pages holding headers of steps
 * before the previous one make a grain (2 MiB), tg_reset gives them back.
 * Their physical pages move (mremap) to just ahead of the cursor, so the
 * steps after fault in no fresh zeroed pages (dropping them and faulting
 * new ones made W4 25 times slower), and the addresses left behind read as
 * zeros: tg_tensor_check finds magic 0, looks the address up in the
 * process-wide list below and records TG_ESTALE in the context it belongs
 * to. The headers of the current and the previous step are never given
 * back, so a tensor kept past one reset is reported with its shape. About
 * two grains beyond the two steps' headers stay resident (giving back a
 * grain at a time costs no more than in batches: batches of 8 grains, an
 * eighth of the calls, were no faster).
 *
 * What the cursor costs is page-table work, not cache misses. Writing
 * headers into lines last used megabytes ago costs little: a 16 MiB range
 * cycled without moves ran W4 as fast as the ring, and prefetching ahead of
 * the cursor gained nothing. Moving pages costs: each move rewrites
 * page-table entries and flushes the TLB, and each page touched after it
 * misses the TLB, microseconds a page on the virtual machine measured. So
 * the grain is the 2 MiB one page-directory entry maps, moved as whole
 * entries (grains of 64 KiB to 1 MiB, moved a page at a time, made W4 20 to
 * 100 times slower), and once the cursor has passed 1 MiB the range asks
 * for transparent huge pages (madvise): a piece is then one huge page,
 * moved as one entry and reached through one TLB entry. A context that has
 * made fewer headers than 1 MiB holds (5 700) stays on small pages and
 * holds no more of them than it filled; the small pages in use when the
 * range asks are dropped when their turn comes rather than moved, so that
 * only huge ones go round. Where the system gives no huge pages, pieces
 * move as before. On the 2-core VM this took W4 from 0.168 to 0.135 µs a
 * step against the ring's 0.110; what is left is nearly all the kernel's
 * time for the moves (0.03 s of system time a million steps, the ring's
 * 0.008).
 *
 * When no size can be reserved (or TG_HEADER_SPACE is 0), headers come from
 * the ring of slots further down instead.
 */

static const size_t HEADER_SPACE[] = {
	(size_t)1 << 40, (size_t)64 << 30, (size_t)4 << 30, (size_t)256 << 20,
};
/* The first of them tried. Under AddressSanitizer the smallest: its shadow
 * of the range (a byte for every 8) is written as the cursor passes and
 * stays resident, 1/8 of every header ever made over a 1 TiB lap (230 MB
 * over 300 000 steps of 30 headers); a 256 MiB range caps it at 32 MiB. */
#ifdef __SANITIZE_ADDRESS__
enum { FIRST_SPACE = sizeof HEADER_SPACE / sizeof HEADER_SPACE[0] - 1 };
#else
enum { FIRST_SPACE = 0 };
#endif
/* CHUNK: the grain of a range of 8 chunks or more, aligned to it, so that
 * with transparent huge pages a piece moves as whole page-table entries. */
enum { HEADER = sizeof(tg_tensor), CHUNK = 2 << 20, MIN_SPACE = 64 << 10 };

/* The contexts with a range, linked through hdr.reg_next: the one piece of
 * process-wide state, read only when a check has already failed. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static tg_ctx *registry;

static uint64_t page_size(void)
{
	static _Atomic long size;
	long s = size;
	if (!s) {
		s = sysconf(_SC_PAGESIZE);
		if (s <= 0)
			s = 4096;
		size = s;
	}
	return (uint64_t)s;
}

/* Monotonic offset of the cursor. */
static uint64_t cursor_offset(const tg_headers *h)
{
	return h->lap_start + (uint64_t)((char *)h->next - (char *)h->base);
}

/* Sets limit: the cursor may hand out header i of this lap while its end
 * lies before the first page not yet given back, one lap on. */
static void set_limit(tg_headers *h)
{
	uint64_t room = h->released + h->bytes;
	uint64_t n = room > h->lap_start ? (room - h->lap_start) / HEADER : 0;
	h->limit = h->base + (n < h->cap ? n : h->cap);
	if (h->limit < h->next)
		h->limit = h->next;
}

/* Asks for huge pages over [p, p + len); false where the system has none. */
static bool ask_huge(void *p, uint64_t len)
{
#ifdef MADV_HUGEPAGE
	return madvise(p, len, MADV_HUGEPAGE) == 0;
#else
	(void)p, (void)len;
	return false;
#endif
}

/* A fresh mapping over [p, p + len), which holds only pages given back: the
 * pieces left behind by moves join their neighbours again instead of
 * adding up to the process's limit on mappings. It asks for huge pages as
 * the rest of the range does, so that the cursor finds them there again
 * after a lap and the pieces moved in match their neighbours. Atomic: no
 * moment leaves a hole another thread's mmap could take. */
static void remap_fresh(const tg_headers *h, char *p, uint64_t len)
{
	mmap(p, len, PROT_READ | PROT_WRITE,
	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	if (h->huge)
		ask_huge(p, len);
}

/* Gives back the pages at offsets [from, from + len), one lap's contiguous
 * piece: their physical pages move ahead of the cursor when there is room
 * (not past this piece one lap on) and they are not small pages of a range
 * now on huge ones, else they are dropped. Either way the piece reads as
 * zeros after. */
static void give_back_piece(tg_headers *h, uint64_t from, uint64_t len)
{
	char *p = (char *)h->base + from % h->bytes;
	uint64_t g = h->grain;
	uint64_t cur = (cursor_offset(h) + g - 1) & ~(g - 1);
	uint64_t d = h->ready > cur ? h->ready : cur;
	uint64_t lap = d / h->bytes * h->bytes;
	if (from >= h->small_end && d + len <= from + h->bytes && d + len <= lap + h->bytes) {
		char *dst = (char *)h->base + (d - lap);
		void *r = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
				 dst);
		if (r == dst) {
			h->ready = d + len;
			remap_fresh(h, p, len);
			return;
		}
	}
	madvise(p, len, MADV_DONTNEED);
}

/* Once the cursor has passed half the first grain of a range of 2 MiB
 * grains, the range asks for huge pages: the grains up to the cursor's (and
 * any moved ahead) hold small pages already, to be dropped, not moved. */
static void go_huge(tg_headers *h)
{
	h->huge_asked = true;
	if (h->grain != CHUNK || !ask_huge(h->base, h->bytes))
		return;
	h->huge = true;
	uint64_t cur = (cursor_offset(h) + CHUNK - 1) & ~(uint64_t)(CHUNK - 1);
	h->small_end = h->ready > cur ? h->ready : cur;
}

/* Gives back the pages before offset to (grain-aligned, at most the
 * previous step's start). */
static void give_back(tg_headers *h, uint64_t to)
{
	uint64_t from = h->released;
	if (to <= from)
		return;
	while (from < to) {
		uint64_t lap = from / h->bytes * h->bytes;
		uint64_t end = to < lap + h->bytes ? to : lap + h->bytes;
		if (from < h->small_end && h->small_end < end)
			end = h->small_end;
		give_back_piece(h, from, end - from);
		from = end;
	}
	h->given_back += to - h->released;
	h->released = to;
}

/* The first grain of the previous step: everything before it is dead. */
static uint64_t dead_end(const tg_headers *h)
{
	return h->prev_start & ~(h->grain - 1);
}

/* tg_reset's part: the step that ended becomes the previous one, and the
 * one before it dead; its pages go back as soon as they fill a grain. */
static void headers_step_ends(tg_ctx *ctx)
{
	tg_headers *h = &ctx->arena.hdr;
	h->prev_start = h->step_start;
	h->step_start = cursor_offset(h);
	if (!h->huge_asked && h->step_start >= CHUNK / 2)
		go_huge(h);
	if (h->prev_start - h->released >= h->grain)
		give_back(h, dead_end(h));
}

static void registry_add(tg_ctx *ctx)
{
	pthread_mutex_lock(&registry_lock);
	ctx->arena.hdr.reg_next = registry;
	registry = ctx;
	pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(tg_ctx *ctx)
{
	pthread_mutex_lock(&registry_lock);
	for (tg_ctx **p = &registry; *p; p = &(*p)->arena.hdr.reg_next) {
		if (*p == ctx) {
			*p = ctx->arena.hdr.reg_next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

tg_ctx *tg_arena_owner(const void *p)
{
	tg_ctx *owner = NULL;
	pthread_mutex_lock(&registry_lock);
	for (tg_ctx *c = registry; c && !owner; c = c->arena.hdr.reg_next) {
		const char *base = (const char *)c->arena.hdr.base;
		if ((const char *)p >= base && (const char *)p < base + c->arena.hdr.bytes)
			owner = c;
	}
	pthread_mutex_unlock(&registry_lock);
	return owner;
}

/* TG_HEADER_SPACE: a size in bytes (rounded up to whole pages, or chunks
 * from 8 chunks on, at least MIN_SPACE), 0 for the ring; *set false when
 * absent or not a number. */
static size_t space_wanted(bool *set)
{
	const char *s = getenv("TG_HEADER_SPACE");
	*set = false;
	if (!s || !*s)
		return 0;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > (unsigned long long)HEADER_SPACE[0])
		return 0;
	*set = true;
	if (!v)
		return 0;
	uint64_t g = v >= 8 * (uint64_t)CHUNK ? CHUNK : page_size();
	v = (v + g - 1) & ~(g - 1);
	return v < MIN_SPACE ? MIN_SPACE : (size_t)v;
}

/* bytes of address space aligned to grain, or NULL. */
static void *reserve(size_t bytes, size_t grain)
{
	size_t extra = grain > page_size() ? grain : 0;
	char *p = mmap(NULL, bytes + extra, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (!extra)
		return p;
	char *start = (char *)(((uintptr_t)p + grain - 1) & ~(uintptr_t)(grain - 1));
	if (start > p)
		munmap(p, (size_t)(start - p));
	if (start + bytes < p + bytes + extra)
		munmap(start + bytes, (size_t)(p + bytes + extra - (start + bytes)));
	return start;
}

void tg_arena_init(tg_ctx *ctx)
{
	tg_headers *h = &ctx->arena.hdr;
	bool set;
	size_t want = space_wanted(&set);
	if (set && !want)
		return; /* the ring */
	size_t n = set ? 1 : sizeof HEADER_SPACE / sizeof HEADER_SPACE[0];
	for (size_t i = set ? 0 : FIRST_SPACE; i < n; i++) {
		size_t bytes = set ? want : HEADER_SPACE[i];
		size_t grain = bytes >= 8 * (size_t)CHUNK ? CHUNK : page_size();
		void *p = reserve(bytes, grain);
		if (!p)
			continue;
		h->base = p;
		h->bytes = bytes;
		h->grain = grain;
		h->cap = bytes / HEADER;
		h->next = h->base;
		set_limit(h);
		registry_add(ctx);
		return;
	}
}

static void ring_free(tg_ctx *ctx);

static void headers_free(tg_ctx *ctx)
{
	tg_headers *h = &ctx->arena.hdr;
	if (h->base) {
		registry_remove(ctx);
		munmap(h->base, h->bytes);
	} else {
		ring_free(ctx);
	}
	memset(h, 0, sizeof *h);
}

static tg_tensor *ring_next_slot(tg_ctx *ctx);

/* The end of a lap, a range without room (a batch not yet given back, or
 * two steps filling it) or the ring. */
tg_tensor *tg_arena_next_slot(tg_ctx *ctx)
{
	tg_headers *h = &ctx->arena.hdr;
	if (!h->base)
		return ring_next_slot(ctx);
	if (h->next == h->base + h->cap) {
		h->lap++;
		h->lap_start += h->bytes;
		h->next = h->base;
	}
	set_limit(h);
	if (h->next == h->limit) {
		give_back(h, dead_end(h));
		set_limit(h);
		if (h->next == h->limit)
			return tg_fail(ctx, TG_ENOMEM,
				       "out of tensor header space: this step and the previous one "
				       "hold more headers than its %zu bytes (%zu headers)",
				       h->bytes, h->cap);
	}
	return h->next++;
}

/* ---- the fallback: a ring of header slots ---------------------------------------- */

static void ring_free(tg_ctx *ctx)
{
	tg_slots *r = ctx->arena.hdr.ring;
	if (!r)
		return;
	tg_slots *s = r->next;
	r->next = NULL;
	while (s) {
		tg_slots *next = s->next;
		ctx->alloc.free(s->slot, ctx->alloc.user);
		ctx->alloc.free(s, ctx->alloc.user);
		s = next;
	}
}

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
 * reused. Every ring header comes through here (tg_arena_header_fast
 * declines them all). */
static tg_tensor *ring_next_slot(tg_ctx *ctx)
{
	tg_headers *a = &ctx->arena.hdr;
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
