/*
 * model_driver.c - builds the models check_models.py writes through the
 * public nn API (tg_model_parse, tg_model_parse_image or tg_mlp_new), in
 * f64, gives them the case's parameter and state values, runs one forward,
 * loss and backward, and prints what came out, for comparison with
 * torch.nn.
 *
 * Input (stdin), whitespace-separated:
 *	<how> <spec> <c> <h> <w>
 *	<act> <batchnorm 0|1> <dropout> <bn_eps> <bn_avg_decay>
 *	<training 0|1> <loss> <delta> <threads>
 *	<input dtype f64|i32> <ndim> <shape...> <values...>
 *	<ntargets> <targets...>
 *	<ntensors> ntensors times: <numel> <values...>
 * how is "model" (tg_model_parse(spec)), "image" (tg_model_parse_image(spec,
 * c, h, w)) or "mlp" (tg_mlp_new(spec)); the second line is their
 * tg_mlp_opts (act as tg_act_parse reads it; init is left He, as every value
 * is given). loss is "ce" (tg_cross_entropy_i32, targets the labels), "soft"
 * (tg_cross_entropy_soft), "mse", "l1", "huber" (tg_huber with delta) or
 * "bce" (tg_bce_with_logits); the targets of the last five have the output's
 * shape. "none" runs the forward alone with gradients off
 * (tg_set_grad_enabled), the paths of inference, and prints no loss and no
 * gradients (ntargets 0). threads goes to tg_set_threads. The tensors are the model's parameters and then its state, in
 * tg_module_tensors' order (tg_mlp_state's for an mlp), each given its values
 * in row-major order.
 *
 * Output, numbers as %.17g:
 *	rng <s0> <s1> <s2> <s3>			the generator's state before the
 *						forward (tg_rng_state), from which
 *						dropout in training draws its masks
 *	output <ndim> <shape...>		then a line of its values
 *	loss <value>				(not for "none")
 *	param <name> <ndim> <shape...>		then a line of its gradient
 *						(the word "none" without one)
 *	state <name> <ndim> <shape...>		then a line of its values after
 *						the step
 * one param line per parameter and one state line per state tensor, in the
 * order above; "error <message>" on a failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"
#include "tapegrad_nn.h"

#include "driver_io.h"

enum { MAX_TENSORS = 256, MAX_DIMS = 8 };

static void print_head(const char *what, const char *name, const tg_tensor *t)
{
	printf("%s", what);
	if (name)
		printf(" %s", name);
	printf(" %d", tg_ndim(t));
	for (int d = 0; d < tg_ndim(t); d++)
		printf(" %lld", (long long)tg_shape(t)[d]);
	printf("\n");
}

static void print_values(const tg_tensor *t)
{
	for (size_t j = 0; j < tg_numel(t); j++)
		printf("%s%.17g", j ? " " : "", tg_get(t, j));
	printf("\n");
}

int main(void)
{
	char how[16], spec[1024], act_s[64], loss_s[16], in_dt[8];
	long long c, h, w;
	int bn, training, ndim, threads;
	double dropout, bn_eps, bn_decay, delta;
	if (scanf("%15s %1023s %lld %lld %lld", how, spec, &c, &h, &w) != 5 ||
	    scanf("%63s %d %lf %lf %lf", act_s, &bn, &dropout, &bn_eps, &bn_decay) != 5 ||
	    scanf("%d %15s %lf %d", &training, loss_s, &delta, &threads) != 4 || threads < 1 ||
	    scanf("%7s %d", in_dt, &ndim) != 2 || ndim < 1 || ndim > MAX_DIMS)
		return fail(NULL, "the header");
	int64_t shape[MAX_DIMS];
	size_t n_in;
	if (read_shape(shape, ndim, &n_in))
		return fail(NULL, "the input's shape");
	double *buf = malloc(n_in * sizeof *buf);
	if (!buf || read_doubles(buf, n_in))
		return fail(NULL, "the input's values");
	long long nt;
	if (scanf("%lld", &nt) != 1 || nt < 0 || nt > 1 << 24)
		return fail(NULL, "the targets");
	double *targets = malloc(((size_t)nt + 1) * sizeof *targets);
	if (!targets || read_doubles(targets, (size_t)nt))
		return fail(NULL, "the targets' values");

	tg_ctx *ctx = tg_ctx_new(1);
	tg_set_threads(ctx, threads);
	bool infer = !strcmp(loss_s, "none");
	if (infer)
		tg_set_grad_enabled(ctx, false);
	tg_mlp_opts o = tg_mlp_defaults();
	o.dtype = TG_F64;
	o.batchnorm = bn != 0;
	o.dropout = dropout;
	o.bn_eps = bn_eps;
	o.bn_avg_decay = bn_decay;
	if (tg_act_parse(ctx, act_s, &o.act))
		return fail(ctx, "the activation");
	tg_module *model = NULL;
	tg_mlp *mlp = NULL;
	if (!strcmp(how, "model"))
		model = tg_model_parse(ctx, spec, &o);
	else if (!strcmp(how, "image"))
		model = tg_model_parse_image(ctx, spec, c, h, w, &o);
	else if (!strcmp(how, "mlp"))
		mlp = tg_mlp_new(ctx, spec, &o);
	else
		return fail(NULL, "how the model is built");
	if (!model && !mlp)
		return fail(ctx, "the model");

	/* the parameters, then the state */
	tg_tensor *ts[MAX_TENSORS];
	size_t ntens, npar;
	if (mlp) {
		tg_tensor *const *st = tg_mlp_state(mlp, &ntens);
		tg_mlp_params(mlp, &npar);
		if (ntens > MAX_TENSORS)
			return fail(NULL, "too many tensors");
		memcpy(ts, st, ntens * sizeof *ts);
		tg_mlp_train(mlp, training != 0);
	} else {
		ntens = tg_module_tensors(model, ts, MAX_TENSORS);
		npar = tg_module_params(model, NULL, 0);
		if (ntens > MAX_TENSORS)
			return fail(NULL, "too many tensors");
		tg_module_train(model, training != 0);
	}
	long long given;
	if (scanf("%lld", &given) != 1)
		return fail(NULL, "the tensor count");
	if ((size_t)given != ntens) {
		printf("error the model holds %zu tensors, the case gives %lld\n", ntens, given);
		return 1;
	}
	if (read_tensors(ctx, ts, ntens))
		return 1;

	tg_tensor *x;
	if (!strcmp(in_dt, "i32")) {
		int32_t *idx = malloc(n_in * sizeof *idx);
		if (!idx)
			return fail(NULL, "memory");
		for (size_t i = 0; i < n_in; i++)
			idx[i] = (int32_t)buf[i];
		x = tg_from_i32(ctx, ndim, shape, idx);
		free(idx);
	} else {
		x = tg_from_f64(ctx, TG_F64, ndim, shape, buf);
	}
	uint64_t rs[4];
	tg_rng_state(ctx, rs);
	tg_tensor *y = mlp ? tg_mlp_forward(mlp, x) : tg_forward(model, x);
	if (!y)
		return fail(ctx, "the forward");
	tg_tensor *loss = NULL;
	if (infer) {
	} else if (!strcmp(loss_s, "ce")) {
		int32_t *lab = malloc(((size_t)nt + 1) * sizeof *lab);
		if (!lab)
			return fail(NULL, "memory");
		for (long long i = 0; i < nt; i++)
			lab[i] = (int32_t)targets[i];
		loss = tg_cross_entropy_i32(y, lab, nt);
		free(lab);
	} else {
		if ((size_t)nt != tg_numel(y))
			return fail(NULL, "the targets' count is not the output's");
		tg_tensor *t = tg_from_f64(ctx, TG_F64, tg_ndim(y), tg_shape(y), targets);
		if (!strcmp(loss_s, "soft"))
			loss = tg_cross_entropy_soft(y, t);
		else if (!strcmp(loss_s, "mse"))
			loss = tg_mse(y, t);
		else if (!strcmp(loss_s, "l1"))
			loss = tg_l1(y, t);
		else if (!strcmp(loss_s, "huber"))
			loss = tg_huber(y, t, delta);
		else if (!strcmp(loss_s, "bce"))
			loss = tg_bce_with_logits(y, t);
		else
			return fail(NULL, "the loss");
	}
	if (!infer && (!loss || tg_backward(loss)))
		return fail(ctx, "the loss or the backward");

	printf("rng %llu %llu %llu %llu\n", (unsigned long long)rs[0], (unsigned long long)rs[1],
	       (unsigned long long)rs[2], (unsigned long long)rs[3]);
	print_head("output", NULL, y);
	print_values(y);
	if (!infer)
		printf("loss %.17g\n", tg_get(loss, 0));
	for (size_t i = 0; i < ntens; i++) {
		if (i < npar) {
			print_head("param", tg_name(ts[i]), ts[i]);
			tg_tensor *g = infer ? NULL : tg_grad(ts[i]);
			if (g)
				print_values(g);
			else
				printf("none\n");
		} else {
			print_head("state", tg_name(ts[i]), ts[i]);
			print_values(ts[i]);
		}
	}
	if (!tg_ok(ctx))
		return fail(ctx, "printing");
	free(buf);
	free(targets);
	tg_module_free(model);
	tg_mlp_free(mlp);
	tg_ctx_free(ctx);
	return 0;
}
