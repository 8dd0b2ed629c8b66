/*
 * optim_driver.c - runs the optimizer steps check_optim.py writes through
 * tg_optim, in f64, and prints the parameters after each step, for
 * comparison with torch.optim.
 *
 * Input (stdin), whitespace-separated:
 *	<kind> <lr> <momentum> <beta1> <beta2> <eps> <weight_decay> <clip_norm>
 *	<nparams> <nsteps>
 *	nparams times: <decay 0|1> <numel> <values...>
 *	nsteps times, nparams times: <gradient values...> (numel each)
 * kind is a tg_optim_parse name. A gradient reaches the optimizer as the
 * leaf gradient of sum(p * G), which is G exactly.
 *
 * Output: after each step s (from 1) the line "step <s>" and one line per
 * parameter, its values as %.17g; "error <message>" on a failure.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tapegrad.h"
#include "tapegrad_nn.h"

#include "driver_io.h"

enum { MAX_PARAMS = 16 };

int main(void)
{
	char kind_name[32];
	tg_optim_opts o;
	int np, nsteps;
	if (scanf("%31s %lf %lf %lf %lf %lf %lf %lf %d %d", kind_name, &o.lr, &o.momentum,
		  &o.beta1, &o.beta2, &o.eps, &o.weight_decay, &o.clip_norm, &np, &nsteps) != 10 ||
	    np < 1 || np > MAX_PARAMS || nsteps < 0)
		return fail(NULL, "the header");
	tg_ctx *ctx = tg_ctx_new(1);
	tg_optim_kind kind;
	if (tg_optim_parse(ctx, kind_name, &kind))
		return fail(ctx, "tg_optim_parse");
	o.kind = kind;
	o.rho = tg_optim_defaults(kind).rho;
	tg_tensor *p[MAX_PARAMS];
	int64_t numel[MAX_PARAMS];
	double *buf = NULL;
	for (int i = 0; i < np; i++) {
		int decay;
		long long n;
		if (scanf("%d %lld", &decay, &n) != 2 || n < 1 || n > 1 << 20)
			return fail(NULL, "a parameter");
		numel[i] = n;
		buf = realloc(buf, (size_t)n * sizeof *buf);
		if (!buf || read_doubles(buf, (size_t)n))
			return fail(NULL, "a parameter's values");
		p[i] = tg_set_decay(tg_param(tg_from_f64(ctx, TG_F64, 1, &numel[i], buf)), decay);
	}
	tg_optim *opt = tg_optim_new(ctx, p, (size_t)np, &o);
	if (!opt)
		return fail(ctx, "tg_optim_new");
	for (int s = 1; s <= nsteps; s++) {
		tg_optim_zero_grad(opt);
		tg_tensor *loss = NULL;
		for (int i = 0; i < np; i++) {
			buf = realloc(buf, (size_t)numel[i] * sizeof *buf);
			if (!buf || read_doubles(buf, (size_t)numel[i]))
				return fail(NULL, "a gradient");
			tg_tensor *g = tg_from_f64(ctx, TG_F64, 1, &numel[i], buf);
			tg_tensor *term = tg_sum(tg_mul(p[i], g));
			loss = loss ? tg_add(loss, term) : term;
		}
		if (tg_backward(loss) || tg_optim_step(opt))
			return fail(ctx, "a step");
		printf("step %d\n", s);
		for (int i = 0; i < np; i++) {
			for (int64_t j = 0; j < numel[i]; j++)
				printf("%s%.17g", j ? " " : "", tg_get(p[i], j));
			printf("\n");
		}
		tg_reset(ctx);
	}
	free(buf);
	tg_optim_free(opt);
	tg_ctx_free(ctx);
	return 0;
}
