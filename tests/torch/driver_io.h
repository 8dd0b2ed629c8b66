/*
 * driver_io.h - what the drivers of tests/torch share: reading numbers
 * from stdin and saying why a case failed, in the form the scripts read.
 */
#ifndef TG_DRIVER_IO_H
#define TG_DRIVER_IO_H

#include <stddef.h>
#include <stdio.h>

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

#endif
