/*
 * mlp.c - a sequential multi-layer perceptron from a spec such as 784-100-10.
 *
 * The net is a list of modules from layers.c: fc<i> -> [bn<i>] -> act ->
 * [dropout] for each hidden layer, fc<L> for the logits. Its forward pass is
 * the modules' forward passes in order, so it too is made of ops only. The
 * tg_mlp object is malloc'd; its tensors belong to the context.
 */
#include "tapegrad.h"
#include "tapegrad_nn.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
	MAX_PARAMS = 4 * TG_MLP_MAX_LAYERS, /* W, b, gamma, beta per layer */
	MAX_STATE = 6 * TG_MLP_MAX_LAYERS,  /* and running_mean, running_var */
	SPEC_LEN = (TG_MLP_MAX_LAYERS + 1) * 12,
};

struct tg_mlp {
	tg_ctx *ctx;
	tg_mlp_opts opts;
	int depth;			      /* affine layers, L */
	int64_t width[TG_MLP_MAX_LAYERS + 1]; /* sizes 0..L */
	tg_affine fc[TG_MLP_MAX_LAYERS];      /* fc[i] is "fc<i+1>" */
	tg_batchnorm bn[TG_MLP_MAX_LAYERS];   /* hidden layers, when opts.batchnorm */
	tg_dropout drop;
	bool training;
	size_t nparams;
	size_t nstate;
	tg_tensor *params[MAX_PARAMS];	   /* ctx */
	tg_tensor *state[MAX_STATE];	   /* ctx */
	tg_tensor *act[TG_MLP_MAX_LAYERS]; /* step: hidden activations of the last forward */
	char spec[SPEC_LEN];
};

tg_mlp_opts tg_mlp_defaults(void)
{
	return (tg_mlp_opts){
	    .act = {TG_ACT_RELU, 0},
	    .init = {TG_INIT_HE, 0},
	    .dtype = TG_F32,
	    .batchnorm = false,
	    .bn_eps = TG_BN_EPS,
	    .bn_avg_decay = TG_BN_AVG_DECAY,
	    .dropout = 0,
	};
}

/* ---- the spec ------------------------------------------------------------------- */

/* Reads "784-100-10" into width[]; returns the number of sizes, or -1 after
 * recording why the spec is wrong. */
static int parse_spec(tg_ctx *ctx, const char *spec, int64_t *width)
{
	const char *p = spec;
	int n = 0;
	for (;;) {
		const char *end = p;
		while (*end >= '0' && *end <= '9')
			end++;
		if (end == p || (*end && *end != '-')) {
			size_t len = strcspn(p, "-");
			tg_fail(
			    ctx, TG_EARG,
			    "tg_mlp_new: spec \"%s\": size %d \"%.*s\" is not a positive integer; "
			    "expected sizes joined by '-', as \"784-100-10\"",
			    spec, n + 1, (int)len, p);
			return -1;
		}
		if (n == TG_MLP_MAX_LAYERS + 1) {
			tg_fail(ctx, TG_EARG, "tg_mlp_new: spec \"%s\": more than %d affine layers",
				spec, TG_MLP_MAX_LAYERS);
			return -1;
		}
		errno = 0;
		long long v = strtoll(p, NULL, 10);
		if (v <= 0 || v > INT32_MAX || errno) {
			tg_fail(ctx, TG_EARG,
				"tg_mlp_new: spec \"%s\": size %d is %.*s; sizes must be 1 to %d",
				spec, n + 1, (int)(end - p), p, INT32_MAX);
			return -1;
		}
		width[n++] = v;
		if (!*end)
			break;
		p = end + 1;
	}
	if (n < 2) {
		tg_fail(ctx, TG_EARG,
			"tg_mlp_new: spec \"%s\": needs an input and an output size at least, as "
			"\"784-10\"",
			spec);
		return -1;
	}
	return n;
}

static int check_opts(tg_ctx *ctx, const char *spec, const tg_mlp_opts *o)
{
	const char *bad = NULL;
	if (o->dtype != TG_F32 && o->dtype != TG_F64)
		bad = "dtype is neither TG_F32 nor TG_F64";
	else if ((unsigned)o->act.kind > TG_ACT_ELU)
		bad = "unknown activation";
	else if ((unsigned)o->init.kind > TG_INIT_HE ||
		 (o->init.kind == TG_INIT_STD && !(o->init.std >= 0 && isfinite(o->init.std))))
		bad = "unknown initialiser or a negative std";
	else if (!(o->dropout >= 0 && o->dropout < 1))
		bad = "dropout must be in [0, 1)";
	else if (o->batchnorm && !(o->bn_eps > 0))
		bad = "bn_eps must be positive";
	else if (o->batchnorm && !(o->bn_avg_decay >= 0 && o->bn_avg_decay <= 1))
		bad = "bn_avg_decay must be in [0, 1]";
	if (!bad)
		return 0;
	tg_fail(ctx, TG_EARG,
		"tg_mlp_new: spec \"%s\": %s (dropout %g, bn_eps %g, "
		"bn_avg_decay %g)",
		spec, bad, o->dropout, o->bn_eps, o->bn_avg_decay);
	return -1;
}

/* ---- building ------------------------------------------------------------------- */

static int build(tg_mlp *m)
{
	tg_ctx *ctx = m->ctx;
	const tg_mlp_opts *o = &m->opts;
	char name[32];
	for (int i = 0; i < m->depth; i++) {
		snprintf(name, sizeof name, "fc%d", i + 1);
		if (tg_affine_init(&m->fc[i], ctx, o->dtype, m->width[i], m->width[i + 1], o->init,
				   name))
			return -1;
		m->params[m->nparams++] = m->fc[i].W;
		m->params[m->nparams++] = m->fc[i].b;
		if (!o->batchnorm || i == m->depth - 1)
			continue;
		snprintf(name, sizeof name, "bn%d", i + 1);
		tg_batchnorm *bn = &m->bn[i];
		if (tg_batchnorm_init(bn, ctx, o->dtype, m->width[i + 1], name))
			return -1;
		bn->eps = o->bn_eps;
		bn->avg_decay = o->bn_avg_decay;
		m->params[m->nparams++] = bn->gamma;
		m->params[m->nparams++] = bn->beta;
	}
	memcpy(m->state, m->params, m->nparams * sizeof m->params[0]);
	m->nstate = m->nparams;
	for (int i = 0; o->batchnorm && i < m->depth - 1; i++) {
		m->state[m->nstate++] = m->bn[i].running_mean;
		m->state[m->nstate++] = m->bn[i].running_var;
	}
	m->drop = (tg_dropout){o->dropout, true};
	return 0;
}

tg_mlp *tg_mlp_new(tg_ctx *ctx, const char *spec, const tg_mlp_opts *opts)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	if (!spec)
		return tg_fail(ctx, TG_ENULL, "tg_mlp_new: spec is NULL");
	tg_mlp_opts o = opts ? *opts : tg_mlp_defaults();
	int64_t width[TG_MLP_MAX_LAYERS + 1];
	int n = parse_spec(ctx, spec, width);
	if (n < 0 || check_opts(ctx, spec, &o))
		return NULL;
	tg_mlp *m = calloc(1, sizeof *m);
	if (!m)
		return tg_fail(ctx, TG_ENOMEM, "tg_mlp_new: spec \"%s\": out of memory", spec);
	m->ctx = ctx;
	m->opts = o;
	m->depth = n - 1;
	m->training = true;
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		m->width[i] = width[i];
		len += (size_t)snprintf(m->spec + len, sizeof m->spec - len, i ? "-%lld" : "%lld",
					(long long)width[i]);
	}
	if (build(m)) {
		free(m);
		return NULL;
	}
	return m;
}

void tg_mlp_free(tg_mlp *m)
{
	free(m);
}

/* ---- running -------------------------------------------------------------------- */

void tg_mlp_train(tg_mlp *m, bool on)
{
	if (!m)
		return;
	m->training = on;
	m->drop.training = on;
	for (int i = 0; i < m->depth; i++)
		m->bn[i].training = on;
}

bool tg_mlp_training(const tg_mlp *m)
{
	return m && m->training;
}

tg_tensor *tg_mlp_forward(tg_mlp *m, tg_tensor *x)
{
	if (!m)
		return x && tg_ctx_of(x)
			   ? tg_fail(tg_ctx_of(x), TG_ENULL, "tg_mlp_forward: the net is NULL")
			   : NULL;
	int last = m->depth - 1;
	for (int i = 0; i < last; i++) {
		x = tg_affine_forward(&m->fc[i], x);
		if (m->opts.batchnorm)
			x = tg_batchnorm_forward(&m->bn[i], x);
		x = tg_act_forward(m->opts.act, x);
		m->act[i] = x;
		if (m->opts.dropout > 0)
			x = tg_dropout_forward(&m->drop, x);
	}
	return tg_affine_forward(&m->fc[last], x);
}

/* ---- listing -------------------------------------------------------------------- */

tg_tensor *const *tg_mlp_params(const tg_mlp *m, size_t *n)
{
	if (n)
		*n = m ? m->nparams : 0;
	return m ? m->params : NULL;
}

tg_tensor *const *tg_mlp_state(const tg_mlp *m, size_t *n)
{
	if (n)
		*n = m ? m->nstate : 0;
	return m ? m->state : NULL;
}

int tg_mlp_depth(const tg_mlp *m)
{
	return m ? m->depth : 0;
}

int64_t tg_mlp_width(const tg_mlp *m, int i)
{
	return m && i >= 0 && i <= m->depth ? m->width[i] : 0;
}

const char *tg_mlp_spec(const tg_mlp *m)
{
	return m ? m->spec : NULL;
}
tg_ctx *tg_mlp_ctx(const tg_mlp *m)
{
	return m ? m->ctx : NULL;
}

tg_tensor *tg_mlp_activation(const tg_mlp *m, int i)
{
	return m && i >= 1 && i < m->depth ? m->act[i - 1] : NULL;
}
