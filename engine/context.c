/*
 * context.c - the context: options, the error state, the allocator, the
 * random generator.
 *
 * Everything a program does with tapegrad goes through one tg_ctx. Errors
 * enter through one function, tg_failv: the first one wins and stays until
 * tg_clear_error (a single place for a breakpoint, as cairo's _cairo_error).
 */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *default_alloc(size_t size, void *user)
{
	(void)user;
	return malloc(size);
}

static void default_free(void *p, void *user)
{
	(void)user;
	free(p);
}

tg_ctx *tg_ctx_new(uint64_t seed)
{
	return tg_ctx_new_with(seed, NULL);
}

tg_ctx *tg_ctx_new_with(uint64_t seed, const tg_allocator *a)
{
	tg_allocator al = { default_alloc, default_free, NULL };
	if (a && a->alloc && a->free)
		al = *a;
	tg_ctx *ctx = al.alloc(sizeof *ctx, al.user);
	if (!ctx)
		return NULL;
	memset(ctx, 0, sizeof *ctx);
	ctx->alloc = al;
	ctx->gen = 1;
	ctx->grad_enabled = true;
	ctx->threads = 1;
	tg_seed(ctx, seed);
	return ctx;
}

void tg_ctx_free(tg_ctx *ctx)
{
	if (!ctx)
		return;
	tg_tensor *t = ctx->kept;
	while (t) {
		tg_tensor *next = t->next_kept;
		t->magic = 0;
		tg_ctx_release(ctx, t->name);
		tg_ctx_release(ctx, t);
		t = next;
	}
	tg_arena_free(ctx);
	ctx->alloc.free(ctx, ctx->alloc.user);
}

void *tg_ctx_alloc(tg_ctx *ctx, size_t size)
{
	void *p = ctx->alloc.alloc(size ? size : 1, ctx->alloc.user);
	if (!p)
		tg_fail(ctx, TG_ENOMEM, "out of memory allocating %zu bytes", size);
	return p;
}

void tg_ctx_release(tg_ctx *ctx, void *p)
{
	if (p)
		ctx->alloc.free(p, ctx->alloc.user);
}

/* ---- options ------------------------------------------------------------- */

bool tg_set_grad_enabled(tg_ctx *ctx, bool on)
{
	if (!ctx)
		return false;
	bool old = ctx->grad_enabled;
	ctx->grad_enabled = on;
	return old;
}

bool tg_grad_enabled(const tg_ctx *ctx) { return ctx && ctx->grad_enabled; }
void tg_set_anomaly(tg_ctx *ctx, bool on) { if (ctx) ctx->anomaly = on; }
void tg_set_abort_on_error(tg_ctx *ctx, bool on) { if (ctx) ctx->abort_on_error = on; }
int tg_threads(const tg_ctx *ctx) { return ctx ? ctx->threads : 0; }
void tg_set_arena_limit(tg_ctx *ctx, size_t bytes) { if (ctx) ctx->arena.limit = bytes; }
size_t tg_arena_used(const tg_ctx *ctx) { return ctx ? ctx->arena.used : 0; }

size_t tg_arena_high_water(const tg_ctx *ctx)
{
	if (!ctx)
		return 0;
	/* tg_arena_reset folds each step in; the current one counts too */
	const tg_arena *a = &ctx->arena;
	return a->used > a->high_water ? a->used : a->high_water;
}

void tg_set_threads(tg_ctx *ctx, int n)
{
	if (!ctx)
		return;
	if (n < 1) {
		tg_fail(ctx, TG_EARG, "tg_set_threads: thread count %d is not positive", n);
		return;
	}
	ctx->threads = n;
}

/* OpenBLAS keeps one thread count for the process; each context's calls set
 * it to their own count when it differs, so a context's setting holds for
 * its own products whatever another context asked for. */
void tg_blas_enter(const tg_ctx *ctx)
{
	if (openblas_get_num_threads() != ctx->threads)
		openblas_set_num_threads(ctx->threads);
}

/* ---- errors -------------------------------------------------------------- */

bool tg_ok(const tg_ctx *ctx) { return ctx && ctx->status == TG_OK; }
tg_status tg_status_of(const tg_ctx *ctx) { return ctx ? ctx->status : TG_ENULL; }

const char *tg_error(const tg_ctx *ctx)
{
	if (!ctx)
		return "no context (NULL)";
	return ctx->status == TG_OK ? "" : ctx->message;
}

void tg_clear_error(tg_ctx *ctx)
{
	if (!ctx)
		return;
	ctx->status = TG_OK;
	ctx->message[0] = '\0';
}

const char *tg_status_name(tg_status s)
{
	static const char *const names[] = {
		"TG_OK", "TG_ESHAPE", "TG_EDTYPE", "TG_ENULL", "TG_EARG",
		"TG_ENOMEM", "TG_ESTALE", "TG_EVERSION", "TG_ECTX",
		"TG_EANOMALY", "TG_EIO", "TG_EFORMAT",
	};
	if ((unsigned)s < sizeof names / sizeof names[0])
		return names[s];
	return "TG_E?";
}

void *tg_failv(tg_ctx *ctx, tg_status code, const char *fmt, va_list ap)
{
	if (!ctx || ctx->status != TG_OK)
		return NULL;
	ctx->status = code;
	vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
	if (ctx->abort_on_error) {
		fprintf(stderr, "tapegrad: %s: %s\n", tg_status_name(code), ctx->message);
		abort();
	}
	return NULL;
}

void *tg_fail(tg_ctx *ctx, tg_status code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tg_failv(ctx, code, fmt, ap);
	va_end(ap);
	return NULL;
}

/* ---- random numbers: xoshiro256** seeded by splitmix64 -------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void tg_seed(tg_ctx *ctx, uint64_t seed)
{
	if (!ctx)
		return;
	for (int i = 0; i < 4; i++)
		ctx->rng[i] = splitmix64(&seed);
}

void tg_rng_state(const tg_ctx *ctx, uint64_t out[4])
{
	if (!ctx || !out)
		return;
	memcpy(out, ctx->rng, sizeof ctx->rng);
}

int tg_rng_set_state(tg_ctx *ctx, const uint64_t state[4])
{
	if (!ctx)
		return -1;
	if (!state) {
		tg_fail(ctx, TG_ENULL, "tg_rng_set_state: state is NULL");
		return -1;
	}
	if (!(state[0] | state[1] | state[2] | state[3])) {
		tg_fail(ctx, TG_EARG, "tg_rng_set_state: a state of four zeros (the generator "
				      "would only give zeros)");
		return -1;
	}
	memcpy(ctx->rng, state, sizeof ctx->rng);
	return 0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tg_random_u64(tg_ctx *ctx)
{
	uint64_t *s = ctx->rng;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double tg_random_uniform(tg_ctx *ctx)
{
	return (double)(tg_random_u64(ctx) >> 11) * 0x1.0p-53;
}

double tg_random_normal(tg_ctx *ctx)
{
	/* Box-Muller; one of the pair is dropped so the stream stays stateless. */
	double u1 = tg_random_uniform(ctx);
	double u2 = tg_random_uniform(ctx);
	return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}
