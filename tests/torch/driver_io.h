/*
 * driver_io.h - what the drivers of tests/torch share: reading numbers
 * from stdin and saying why a case failed, in the form the scripts read.
 */
#ifndef TG_DRIVER_IO_H
#define TG_DRIVER_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

/* What failed, on stdout: the context's error, else the input's part that
 * was bad. 1, the driver's exit status. */
static inline int fail(tg_ctx *ctx, const char *what)
{
	if (ctx && !tg_ok(ctx))
		printf("error %s\n", tg_error(ctx));
	else
		printf("error bad input: %s\n", what);
	return 1;
}

/* v[0..n) from stdin; -1 when they are not all there */
static inline int read_doubles(double *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (scanf("%lf", &v[i]) != 1)
			return -1;
	return 0;
}

/* A shape of ndim sides from stdin, each 1 to 2^20, at most 2^24 values in
 * all; *numel gets their product. -1 when one is missing or out of range. */
static inline int read_shape(int64_t *shape, int ndim, size_t *numel)
{
	*numel = 1;
	for (int d = 0; d < ndim; d++) {
		long long s;
		if (scanf("%lld", &s) != 1 || s < 1 || s > 1 << 20)
			return -1;
		shape[d] = s;
		*numel *= (size_t)s;
		if (*numel > 1 << 24)
			return -1;
	}
	return 0;
}

/* For each of ts[0..n): its count of values, which must be its size, and
 * the values, from stdin, written into it in its dtype. 1 (after saying
 * why on stdout) when a count or a value is wrong or missing. */
static inline int read_tensors(tg_ctx *ctx, tg_tensor *const *ts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		long long count;
		if (scanf("%lld", &count) != 1 || (size_t)count != tg_numel(ts[i])) {
			printf("error tensor %zu (%s) has %zu values, the case gives %lld\n", i,
			       tg_name(ts[i]), tg_numel(ts[i]), count);
			return 1;
		}
		double *v = malloc(((size_t)count + 1) * sizeof *v);
		if (!v || read_doubles(v, (size_t)count)) {
			free(v);
			return fail(NULL, "a tensor's values");
		}
		tg_tensor *src = tg_from_f64(ctx, tg_dtype_of(ts[i]), tg_ndim(ts[i]), tg_shape(ts[i]), v);
		free(v);
		void *dst = src ? tg_data_mut(ts[i]) : NULL;
		if (!dst)
			return fail(ctx, "a tensor's values");
		memcpy(dst, tg_data(src), tg_numel(src) * (tg_dtype_of(src) == TG_F32 ? 4 : 8));
	}
	return 0;
}

#endif
