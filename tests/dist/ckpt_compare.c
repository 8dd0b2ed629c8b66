/*
 * ckpt_compare.c - compares the tensors of two checkpoints: for every
 * tensor of A (B must hold it too, of the same shape), the largest
 * difference over the largest magnitude, max|a - b| / max(max|a|, 1e-3):
 * relative, but for a tensor whose values are all tiny (a bias before
 * batch norm, whose gradient is 0 but for rounding, holds values of 1e-13
 * that are rounding alone; Adam's moments of it likewise), whose
 * difference is then measured against 1e-3. Prints one
 * line per tensor; exits 1 when one exceeds the tolerance, 2 on a bad file.
 * The equivalence tests compare the runs of N ranks and of one process.
 *
 * usage: ckpt_compare A B TOL
 */
#include "tapegrad.h"
#include "tapegrad_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: ckpt_compare A B TOL\n");
		return 2;
	}
	double tol = atof(argv[3]);
	tg_ctx *ctx = tg_ctx_new(0);
	tg_state *a = NULL, *b = NULL;
	if (!ctx || tg_checkpoint_read(ctx, argv[1], &a) || tg_checkpoint_read(ctx, argv[2], &b)) {
		fprintf(stderr, "ckpt_compare: %s\n", ctx ? tg_error(ctx) : "out of memory");
		return 2;
	}
	int rc = 0;
	double worst = 0;
	size_t n = tg_state_count(a);
	for (size_t i = 0; i < n; i++) {
		const char *name = tg_state_name(a, i);
		tg_tensor *x = tg_state_tensor(a, name), *y = tg_state_tensor(b, name);
		if (!x || !y || tg_numel(x) != tg_numel(y)) {
			fprintf(stderr, "ckpt_compare: %s: missing or of another size in %s\n", name,
				argv[2]);
			rc = 2;
			break;
		}
		size_t k = tg_numel(x);
		double *u = malloc(k * sizeof *u), *v = malloc(k * sizeof *v);
		if (!u || !v || tg_copy_to_f64(x, u, k) || tg_copy_to_f64(y, v, k)) {
			fprintf(stderr, "ckpt_compare: %s: cannot read\n", name);
			free(u);
			free(v);
			rc = 2;
			break;
		}
		double diff = 0, mag = 0;
		for (size_t j = 0; j < k; j++) {
			diff = fmax(diff, fabs(u[j] - v[j]));
			mag = fmax(mag, fabs(u[j]));
		}
		double rel = diff / fmax(mag, 1e-3);
		worst = fmax(worst, rel);
		printf("%-24s %8zu values  max|a-b| %.3g  max|a| %.3g  relative %.3g%s\n", name, k,
		       diff, mag, rel, rel > tol ? "  TOO FAR" : "");
		if (rel > tol)
			rc = 1;
		free(u);
		free(v);
		tg_reset(ctx);
	}
	printf("%zu tensors, largest relative difference %.3g (tolerance %g)\n", n, worst, tol);
	tg_state_free(a);
	tg_state_free(b);
	tg_ctx_free(ctx);
	return rc;
}
