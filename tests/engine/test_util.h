/*
 * test_util.h - small helpers shared by the engine tests: shapes as
 * literals and value checks that print what they compared.
 */
#ifndef TG_TEST_UTIL_H
#define TG_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

#define SHAPE(...)                                                                       \
	(int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)), (int64_t[]){ __VA_ARGS__ }
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Fails, printing both values, unless |got - want| <= tol. */
#define assert_near(got, want, tol)                                                      \
	do {                                                                             \
		double g_ = (got), w_ = (want);                                          \
		if (!(fabs(g_ - w_) <= (tol)))                                           \
			fail_msg("%s = %.15g, expected %.15g (tolerance %g)", #got, g_, w_, \
				 (double)(tol));                                         \
	} while (0)

/* The context must be free of errors; prints the message when it isn't. */
#define assert_ctx_ok(ctx)                                                               \
	do {                                                                             \
		if (!tg_ok(ctx))                                                         \
			fail_msg("unexpected error %s: %s", tg_status_name(tg_status_of(ctx)), \
				 tg_error(ctx));                                         \
	} while (0)

/* The context's error must have this code and contain this text. */
#define assert_error(ctx, code, text)                                                    \
	do {                                                                             \
		if (tg_status_of(ctx) != (code) || !strstr(tg_error(ctx), (text)))      \
			fail_msg("error is %s \"%s\", expected %s containing \"%s\"",     \
				 tg_status_name(tg_status_of(ctx)), tg_error(ctx),       \
				 tg_status_name(code), (text));                          \
	} while (0)

/* An allocator that counts: calls made, blocks live, and fails the call
 * numbered fail_at (0: never). Given to tg_ctx_new_with as
 *	counting c = { 0 };
 *	tg_allocator a = { counting_alloc, counting_free, &c }; */
typedef struct {
	long calls;
	long fail_at;
	long live;
} counting;

static inline void *counting_alloc(size_t size, void *user)
{
	counting *c = user;
	c->calls++;
	if (c->fail_at && c->calls == c->fail_at)
		return NULL;
	c->live++;
	return malloc(size);
}

static inline void counting_free(void *p, void *user)
{
	counting *c = user;
	c->live--;
	free(p);
}

/* a and b, of one dtype and size, hold the same bits at every element, or
 * a NaN (of any sign or payload) both; else fails naming what and where. */
static inline void assert_tensor_bits(const char *what, const tg_tensor *a, const tg_tensor *b)
{
	size_t es = tg_dtype_of(a) == TG_F64 ? sizeof(double) : sizeof(float);
	for (size_t i = 0; i < tg_numel(a); i++) {
		double x = tg_get(a, i), y = tg_get(b, i);
		if (isnan(x) && isnan(y))
			continue;
		if (memcmp((const char *)tg_data(a) + i * es, (const char *)tg_data(b) + i * es, es))
			fail_msg("%s[%zu]: %.17g against %.17g", what, i, x, y);
	}
}

/* The DOT text of the graph that made t (tg_write_dot), malloc'd. */
static inline char *dot_text(const tg_tensor *t)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	assert_int_equal(tg_write_dot(t, f), 0);
	fclose(f);
	return text;
}

/* A context made while the environment variable name is value (a context
 * reads its settings, TG_CONV, TG_SGEMM, when it is made), the variable
 * put back as it was after. */
static inline tg_ctx *ctx_made_with(const char *name, const char *value, uint64_t seed)
{
	const char *old = getenv(name);
	char *keep = old ? strdup(old) : NULL;
	setenv(name, value, 1);
	tg_ctx *ctx = tg_ctx_new(seed);
	if (keep)
		setenv(name, keep, 1);
	else
		unsetenv(name);
	free(keep);
	return ctx;
}

#endif
