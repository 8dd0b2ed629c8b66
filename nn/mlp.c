/*
 * mlp.c - a sequential multi-layer perceptron from a spec such as 784-100-10.
 *
 * The net is the sequential tg_model_parse builds from the spec: fc<i> ->
 * [bn<i>] -> act<i> -> [dropout<i>] for each hidden layer, fc<L> for the
 * logits. tg_mlp adds only the lists the old interface hands out and the
 * hidden activations of the last forward. The tg_mlp object is malloc'd and
 * owns the sequential; its tensors belong to the context.
 */
#include "tapegrad.h"
#include "tapegrad_nn.h"
#include "bn_running.h"
#include "kept_undo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tg_mlp {
	tg_ctx *ctx;
	tg_module *seq;			      /* owned: tg_model_parse of spec */
	int depth;			      /* affine layers, L */
	int64_t width[TG_MLP_MAX_LAYERS + 1]; /* sizes 0..L */
	size_t nparams;
	size_t nstate;
	tg_tensor **params;		   /* ctx tensors, malloc'd list */
	tg_tensor **state;		   /* the params, then the running statistics */
	size_t act_at[TG_MLP_MAX_LAYERS];  /* child index of hidden layer i's activation */
	tg_tensor *act[TG_MLP_MAX_LAYERS]; /* step: hidden activations of the last forward */
	char spec[(TG_MLP_MAX_LAYERS + 1) * 12];
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

/* ---- building ------------------------------------------------------------------- */

tg_mlp *tg_mlp_new(tg_ctx *ctx, const char *spec, const tg_mlp_opts *opts)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	if (!spec)
		return tg_fail(ctx, TG_ENULL, "tg_mlp_new: spec is NULL");
	if (*spec && !(*spec >= '0' && *spec <= '9'))
		return tg_fail(
		    ctx, TG_EARG,
		    "tg_mlp_new: spec \"%s\": size 1 is not a positive integer; expected "
		    "sizes joined by '-', as \"784-100-10\" (tg_model_parse reads other "
		    "architectures)",
		    spec);
	tg_mlp_opts o = opts ? *opts : tg_mlp_defaults();
	tg_tensor *mark = tg_kept_newest(ctx);
	tg_module *seq = tg_model_parse(ctx, spec, &o); /* checks spec and options */
	tg_mlp *m = seq ? calloc(1, sizeof *m) : NULL;
	size_t np = tg_module_params(seq, NULL, 0), ns = tg_module_tensors(seq, NULL, 0);
	tg_tensor **p = seq ? malloc(np * sizeof *p) : NULL;
	tg_tensor **st = seq ? malloc(ns * sizeof *st) : NULL;
	if (!m || !p || !st) {
		tg_module_free(seq);
		tg_kept_drop_newer(ctx, mark);
		free(m);
		free(p);
		free(st);
		return seq ? tg_fail(ctx, TG_ENOMEM, "tg_mlp_new: spec \"%s\": out of memory", spec)
			   : NULL;
	}
	m->ctx = ctx;
	m->seq = seq;
	m->params = p;
	m->state = st;
	m->nparams = tg_module_params(seq, p, np);
	m->nstate = tg_module_tensors(seq, st, ns);
	/* the sizes, checked by tg_model_parse */
	const char *s = spec;
	size_t len = 0;
	for (int n = 0;; n++) {
		char *end;
		m->width[n] = strtoll(s, &end, 10);
		len += (size_t)snprintf(m->spec + len, sizeof m->spec - len, n ? "-%lld" : "%lld",
					(long long)m->width[n]);
		m->depth = n;
		if (!*end)
			break;
		s = end + 1;
	}
	/* per hidden layer: fc, [bn], act, [dropout] */
	size_t stride = 2 + (o.batchnorm ? 1 : 0) + (o.dropout > 0 ? 1 : 0);
	for (int i = 0; i < m->depth - 1; i++)
		m->act_at[i] = (size_t)i * stride + 1 + (o.batchnorm ? 1 : 0);
	return m;
}

void tg_mlp_free(tg_mlp *m)
{
	if (!m)
		return;
	tg_module_free(m->seq);
	free(m->params);
	free(m->state);
	free(m);
}

/* ---- running -------------------------------------------------------------------- */

void tg_mlp_train(tg_mlp *m, bool on)
{
	if (m)
		tg_module_train(m->seq, on);
}

bool tg_mlp_training(const tg_mlp *m)
{
	return m && m->seq->training;
}

/* The sequential's forward, keeping each hidden activation for tg_mlp_activation. */
tg_tensor *tg_mlp_forward(tg_mlp *m, tg_tensor *x)
{
	if (!m)
		return x && tg_ctx_of(x)
			   ? tg_fail(tg_ctx_of(x), TG_ENULL, "tg_mlp_forward: the net is NULL")
			   : NULL;
	int layer = 0;
	for (size_t j = 0, taken; j < m->seq->nchildren; j += taken) {
		x = tg_forward_children(m->seq->children, m->seq->nchildren, j, x, &taken);
		if (layer < m->depth - 1 && m->act_at[layer] < j + taken)
			m->act[layer++] = x;
	}
	return x;
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
	if (!m)
		return 0;
	if (i < 0 || i > m->depth) {
		tg_fail(m->ctx, TG_EARG, "tg_mlp_width: size %d of %s; it has sizes 0 to %d", i,
			m->spec, m->depth);
		return 0;
	}
	return m->width[i];
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

tg_module *tg_mlp_module(const tg_mlp *m)
{
	return m ? m->seq : NULL;
}
