/*
 * train_driver.c - builds a model by hand from the nn API (tg_sequential,
 * tg_linear, tg_conv2d_layer, ..., and two modules of a user's own: a
 * residual block and one that runs its child twice, sharing its
 * parameters), in f32 or f64, gives it the case's parameter and state
 * values, trains it several steps with an optimizer, by a hand-written loop
 * or by tg_fit, then evaluates it, and prints what came out, for
 * check_train.py to compare with torch.
 *
 * Input (stdin), whitespace-separated:
 *	<dtype f32|f64> <recipe words...> end
 *	<loop hand|fit> <steps> <threads> <conv kernels onednn|im2col>
 *	<optim> <lr> <momentum> <rho> <beta1> <beta2> <eps> <weight_decay> <clip>
 *	<loss ce|mse> <ndim> <shape...> <values...>
 *	<ntargets> <targets...>		(N labels for ce, the output's values for mse)
 *	<ntensors> ntensors times: <numel> <values...>
 * The recipe is a list of modules, each a word and its numbers:
 *	linear D M | conv C O K S P DIL G | bn D EPS DECAY | ln D | act NAME |
 *	drop P | maxpool K S P | avgpool K S P | flatten |
 *	seq ( list ) | res ( list ) | twice ( list )
 * res is x + list(x), twice list(list(x)) (the same modules, so the same
 * parameters, used twice in one forward). The whole is a tg_sequential.
 * The tensors are the model's, in tg_module_tensors' order.
 *
 * Output, numbers as %.9g (f32) or %.17g (f64):
 *	tensors <name> <numel> ...		the model's tensors
 *	rng <s0> <s1> <s2> <s3>			before each step's forward (hand)
 *	step <k> <loss>				after each update, then one line of
 *						each tensor's values
 *	eval					then the output of a forward in
 *						evaluation mode, grad mode off
 * "error <message>" on a failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

#include "driver_io.h"

enum { MAX_TENSORS = 512, MAX_DIMS = 8 };

static tg_dtype dt;
static int counter;
static tg_tensor *ts[MAX_TENSORS];
static size_t ntens;
static const char *fmt;

static tg_tensor *res_forward(tg_module *m, tg_tensor *x)
{
	return tg_add(x, tg_forward(m->children[0], x));
}

static tg_tensor *twice_forward(tg_module *m, tg_tensor *x)
{
	return tg_forward(m->children[0], tg_forward(m->children[0], x));
}

static const tg_module_vt res_vt = {.kind = "res", .forward = res_forward};
static const tg_module_vt twice_vt = {.kind = "twice", .forward = twice_forward};

static int word(char *w, size_t n)
{
	char f[16];
	snprintf(f, sizeof f, "%%%zus", n - 1);
	return scanf(f, w) == 1 ? 0 : -1;
}

static tg_module *build_list(tg_ctx *ctx, tg_module *seq, const char *close);

/* the next module of the recipe, whose word is w */
static tg_module *build_one(tg_ctx *ctx, const char *w)
{
	char name[32];
	snprintf(name, sizeof name, "m%d", ++counter);
	long long a, b, c, d, e, f, g;
	double p, q;
	if (!strcmp(w, "linear") && scanf("%lld %lld", &a, &b) == 2)
		return tg_linear(ctx, dt, a, b, (tg_init){TG_INIT_HE, 0}, name);
	if (!strcmp(w, "conv") && scanf("%lld %lld %lld %lld %lld %lld %lld", &a, &b, &c, &d, &e,
					&f, &g) == 7) {
		tg_conv_opts o = {{(int)d, (int)d}, {(int)e, (int)e}, {(int)f, (int)f}, (int)g};
		return tg_conv2d_layer(ctx, dt, a, b, (int)c, (int)c, &o,
				       (tg_init){TG_INIT_HE, 0}, name);
	}
	if (!strcmp(w, "bn") && scanf("%lld %lf %lf", &a, &p, &q) == 3)
		return tg_batchnorm1d(ctx, dt, a, p, q, name);
	if (!strcmp(w, "ln") && scanf("%lld", &a) == 1)
		return tg_layernorm(ctx, dt, a, TG_LN_EPS, name);
	if (!strcmp(w, "act")) {
		char s[64];
		tg_act act;
		if (word(s, sizeof s) || tg_act_parse(ctx, s, &act))
			return NULL;
		return tg_activation(ctx, act, name);
	}
	if (!strcmp(w, "drop") && scanf("%lf", &p) == 1)
		return tg_dropout_layer(ctx, p, name);
	if (!strcmp(w, "maxpool") && scanf("%lld %lld %lld", &a, &b, &c) == 3)
		return tg_maxpool2d_layer(ctx, (int)a, (int)b, (int)c, name);
	if (!strcmp(w, "avgpool") && scanf("%lld %lld %lld", &a, &b, &c) == 3)
		return tg_avgpool2d_layer(ctx, (int)a, (int)b, (int)c, name);
	if (!strcmp(w, "flatten"))
		return tg_flatten(ctx, name);
	char open[4];
	if (word(open, sizeof open) || strcmp(open, "("))
		return NULL;
	if (!strcmp(w, "seq"))
		return build_list(ctx, tg_sequential(ctx, name), ")");
	const tg_module_vt *vt = !strcmp(w, "res") ? &res_vt : !strcmp(w, "twice") ? &twice_vt : NULL;
	if (!vt)
		return NULL;
	tg_module *m = tg_module_new(ctx, vt, name, NULL);
	tg_module *inner = build_list(ctx, tg_sequential(ctx, NULL), ")");
	if (!m || tg_module_add(m, inner)) {
		tg_module_free(m);
		return NULL;
	}
	return m;
}

/* adds the modules up to the word close to seq; seq, or NULL */
static tg_module *build_list(tg_ctx *ctx, tg_module *seq, const char *close)
{
	char w[32];
	while (seq && !word(w, sizeof w)) {
		if (!strcmp(w, close))
			return seq;
		if (tg_module_add(seq, build_one(ctx, w)))
			break;
	}
	tg_module_free(seq);
	return NULL;
}

static void print_tensor(const tg_tensor *t)
{
	for (size_t j = 0; j < tg_numel(t); j++) {
		printf(j ? " " : "");
		printf(fmt, tg_get(t, j));
	}
	printf("\n");
}

static void print_state(int64_t k, double loss)
{
	printf("step %lld ", (long long)k);
	printf(fmt, loss);
	printf("\n");
	for (size_t i = 0; i < ntens; i++)
		print_tensor(ts[i]);
}

static void on_step(int64_t iter, double loss, void *user)
{
	(void)user;
	print_state(iter, loss);
}

/* What run() holds, freed by main() whichever way it returns. */
static tg_ctx *g_ctx;
static tg_module *g_model;
static tg_optim *g_opt;
static double *g_x, *g_t;
static int32_t *g_lab;
static tg_dataset *g_ds;

static int run(void)
{
	char dts[8], loop[8], kern[16], optim[16], loss_s[8];
	int steps, threads, ndim;
	tg_optim_opts oo;
	if (scanf("%7s", dts) != 1)
		return fail(NULL, "the dtype");
	dt = !strcmp(dts, "f32") ? TG_F32 : TG_F64;
	fmt = dt == TG_F32 ? "%.9g" : "%.17g";
	tg_ctx *ctx = g_ctx = tg_ctx_new(1);
	tg_module *model = g_model = build_list(ctx, tg_sequential(ctx, NULL), "end");
	if (!model)
		return fail(ctx, "the recipe");
	if (scanf("%7s %d %d %15s", loop, &steps, &threads, kern) != 4 || threads < 1 ||
	    scanf("%15s", optim) != 1)
		return fail(NULL, "the header");
	tg_optim_kind kind;
	if (tg_optim_parse(ctx, optim, &kind))
		return fail(ctx, "the optimizer");
	oo = tg_optim_defaults(kind);
	if (scanf("%lf %lf %lf %lf %lf %lf %lf %lf", &oo.lr, &oo.momentum, &oo.rho, &oo.beta1,
		  &oo.beta2, &oo.eps, &oo.weight_decay, &oo.clip_norm) != 8 ||
	    scanf("%7s %d", loss_s, &ndim) != 2 || ndim < 1 || ndim > MAX_DIMS)
		return fail(NULL, "the optimizer's options or the loss");
	tg_set_threads(ctx, threads);
	tg_set_conv_kernels(ctx, !strcmp(kern, "im2col") ? TG_CONV_IM2COL : TG_CONV_ONEDNN);
	int64_t shape[MAX_DIMS];
	size_t n_in;
	if (read_shape(shape, ndim, &n_in))
		return fail(NULL, "the input's shape");
	double *x = g_x = malloc(n_in * sizeof *x);
	long long nt;
	if (!x || read_doubles(x, n_in) || scanf("%lld", &nt) != 1 || nt < 0 || nt > 1 << 24)
		return fail(NULL, "the input or the targets");
	double *t = g_t = malloc(((size_t)nt + 1) * sizeof *t);
	int32_t *lab = g_lab = malloc(((size_t)nt + 1) * sizeof *lab);
	if (!t || !lab || read_doubles(t, (size_t)nt))
		return fail(NULL, "the targets' values");
	for (long long i = 0; i < nt; i++)
		lab[i] = (int32_t)t[i];

	ntens = tg_module_tensors(model, ts, MAX_TENSORS);
	size_t npar = tg_module_params(model, NULL, 0);
	long long given;
	if (ntens > MAX_TENSORS || scanf("%lld", &given) != 1 || (size_t)given != ntens) {
		printf("error the model holds %zu tensors, the case gives %lld\n", ntens, given);
		return 1;
	}
	if (read_tensors(ctx, ts, ntens))
		return 1;
	tg_reset(ctx);
	printf("tensors");
	for (size_t i = 0; i < ntens; i++)
		printf(" %s %zu", tg_name(ts[i]), tg_numel(ts[i]));
	printf("\n");

	tg_optim *opt = g_opt = tg_optim_new(ctx, ts, npar, &oo);
	if (!opt)
		return fail(ctx, "the optimizer");
	bool ce = !strcmp(loss_s, "ce");
	if (!strcmp(loop, "hand")) {
		for (int k = 1; k <= steps; k++) {
			uint64_t rs[4];
			tg_rng_state(ctx, rs);
			printf("rng %llu %llu %llu %llu\n", (unsigned long long)rs[0],
			       (unsigned long long)rs[1], (unsigned long long)rs[2],
			       (unsigned long long)rs[3]);
			tg_tensor *xt = tg_from_f64(ctx, dt, ndim, shape, x);
			tg_tensor *y = tg_forward(model, xt);
			tg_tensor *loss;
			if (ce) {
				loss = tg_cross_entropy_i32(y, lab, nt);
			} else {
				tg_tensor *tt = y ? tg_from_f64(ctx, dt, tg_ndim(y), tg_shape(y), t)
						  : NULL;
				loss = tg_mse(y, tt);
			}
			tg_optim_zero_grad(opt);
			if (!loss || tg_backward(loss) || tg_optim_step(opt))
				return fail(ctx, "the step");
			print_state(k, tg_get(loss, 0));
			tg_reset(ctx);
		}
	} else {
		static tg_dataset ds; /* main() frees it when run() fails */
		ds = (tg_dataset){ .n = shape[0], .d = (int64_t)(n_in / (size_t)shape[0]) };
		g_ds = &ds;
		ds.x = malloc(n_in * sizeof *ds.x);
		for (size_t i = 0; i < n_in; i++)
			ds.x[i] = (float)x[i];
		if (ce) {
			ds.y = malloc((size_t)nt * sizeof *ds.y);
			memcpy(ds.y, lab, (size_t)nt * sizeof *ds.y);
			ds.classes = 0;
			for (long long i = 0; i < nt; i++)
				if (lab[i] + 1 > ds.classes)
					ds.classes = lab[i] + 1;
		} else {
			ds.tdim = nt / shape[0];
			ds.t = malloc((size_t)nt * sizeof *ds.t);
			for (long long i = 0; i < nt; i++)
				ds.t[i] = (float)t[i];
		}
		if (ndim > 2 && tg_dataset_reshape(ctx, &ds, ndim - 1, shape + 1))
			return fail(ctx, "the data set");
		tg_task task = {.loss = ce ? TG_LOSS_CROSS_ENTROPY : TG_LOSS_MSE};
		tg_train_opts to = tg_train_defaults();
		to.iters = steps;
		to.batch = shape[0];
		to.progress = TG_PROGRESS_OFF;
		to.out = NULL;
		to.on_step = on_step;
		if (tg_fit(model, opt, &task, &ds, NULL, NULL, &to, NULL))
			return fail(ctx, "tg_fit");
		tg_dataset_free(&ds);
		g_ds = NULL;
	}

	tg_module_train(model, false);
	tg_set_grad_enabled(ctx, false);
	tg_tensor *y = tg_forward(model, tg_from_f64(ctx, dt, ndim, shape, x));
	if (!y)
		return fail(ctx, "the evaluation");
	printf("eval\n");
	print_tensor(y);
	if (!tg_ok(ctx))
		return fail(ctx, "printing");
	return 0;
}

int main(void)
{
	int rc = run();
	if (g_ds)
		tg_dataset_free(g_ds);
	free(g_x);
	free(g_t);
	free(g_lab);
	tg_optim_free(g_opt);
	tg_module_free(g_model);
	tg_ctx_free(g_ctx);
	return rc;
}
