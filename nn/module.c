/*
 * module.c - the module interface, the sequential container and the
 * architecture string.
 *
 * A module is a vt (forward, free, spec) plus the tensors it owns and its
 * children. Nothing here computes: forward passes are the modules' own, made
 * of ops; this file keeps the lists, walks them (parameters, state,
 * train/eval, spec) and reads an architecture string back into a model.
 */
#include "tapegrad.h"
#include "tapegrad_nn.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the module ------------------------------------------------------------------ */

static const char *kind_of(const tg_module *m)
{
	return m->vt && m->vt->kind ? m->vt->kind : "module";
}

tg_module *tg_module_new(tg_ctx *ctx, const tg_module_vt *vt, const char *name, void *self)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	if (!vt || !vt->forward)
		return tg_fail(ctx, TG_ENULL, "tg_module_new: module \"%s\": %s is NULL",
			       name ? name : "", vt ? "vt->forward" : "vt");
	tg_module *m = calloc(1, sizeof *m);
	char *copy = malloc(name ? strlen(name) + 1 : 1);
	if (!m || !copy) {
		free(m);
		free(copy);
		return tg_fail(ctx, TG_ENOMEM, "tg_module_new: module \"%s\" (%s): out of memory",
			       name ? name : "", vt->kind ? vt->kind : "module");
	}
	strcpy(copy, name ? name : "");
	m->vt = vt;
	m->ctx = ctx;
	m->name = copy;
	m->training = true;
	m->self = self;
	return m;
}

void tg_module_free(tg_module *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nchildren; i++)
		tg_module_free(m->children[i]);
	if (m->vt && m->vt->free)
		m->vt->free(m);
	free(m->children);
	free(m->params);
	free(m->state);
	free(m->name);
	free(m);
}

/* Room for one more pointer in *list of n; false (TG_ENOMEM) without memory. */
static bool grow(tg_module *m, void *list, size_t n, size_t elem, const char *who)
{
	void **p = list;
	/* capacity is the next power of two at or above n */
	if (n && (n & (n - 1)))
		return true;
	void *q = realloc(*p, (n ? 2 * n : 1) * elem);
	if (!q) {
		tg_fail(m->ctx, TG_ENOMEM, "%s: module \"%s\": out of memory", who, m->name);
		return false;
	}
	*p = q;
	return true;
}

/* Names t "<m's name>.<field>" (or field alone when m has no name). */
static tg_tensor *name_field(tg_module *m, tg_tensor *t, const char *field)
{
	size_t len = strlen(m->name) + strlen(field) + 2;
	char *s = malloc(len);
	if (!s)
		return tg_fail(m->ctx, TG_ENOMEM, "tg_module_add: \"%s.%s\": out of memory",
			       m->name, field);
	snprintf(s, len, *m->name ? "%s.%s" : "%s%s", m->name, field);
	t = tg_set_name(t, s);
	free(s);
	return tg_ok(m->ctx) ? t : NULL;
}

/* The checks add_param and add_state share; m's ctx when they pass. */
static tg_ctx *add_ok(tg_module *m, tg_tensor *t, const char *field, const char *who)
{
	if (!m || !tg_ok(m->ctx))
		return NULL;
	if (!t || !field)
		return tg_fail(m->ctx, TG_ENULL, "%s: module \"%s\": %s is NULL", who, m->name,
			       !t ? "the tensor" : "field");
	if (tg_ctx_of(t) != m->ctx)
		return tg_fail(m->ctx, TG_EARG,
			       "%s: module \"%s\": tensor for %s belongs to another context (or is "
			       "stale)",
			       who, m->name, field);
	return m->ctx;
}

tg_tensor *tg_module_add_param(tg_module *m, tg_tensor *t, const char *field, bool decay)
{
	if (!add_ok(m, t, field, "tg_module_add_param") ||
	    !grow(m, &m->params, m->nparams, sizeof *m->params, "tg_module_add_param"))
		return NULL;
	tg_tensor *p = tg_is_param(t) ? t : tg_param(t);
	if (!p || !name_field(m, p, field))
		return NULL;
	tg_set_decay(p, decay);
	m->params[m->nparams++] = p;
	return p;
}

tg_tensor *tg_module_add_state(tg_module *m, tg_tensor *t, const char *field)
{
	if (!add_ok(m, t, field, "tg_module_add_state") ||
	    !grow(m, &m->state, m->nstate, sizeof *m->state, "tg_module_add_state"))
		return NULL;
	tg_tensor *s = tg_keep(t);
	if (!s || !name_field(m, s, field))
		return NULL;
	m->state[m->nstate++] = s;
	return s;
}

int tg_module_add(tg_module *m, tg_module *child)
{
	if (!m) {
		tg_module_free(child);
		return -1;
	}
	if (child == m) {
		tg_fail(m->ctx, TG_EARG, "tg_module_add: module \"%s\" cannot contain itself",
			m->name);
		return -1;
	}
	if (!tg_ok(m->ctx)) {
		tg_module_free(child);
		return -1;
	}
	if (!child) {
		tg_fail(m->ctx, TG_ENULL, "tg_module_add: module \"%s\": the child is NULL",
			m->name);
		return -1;
	}
	if (child->ctx != m->ctx) {
		tg_fail(m->ctx, TG_EARG,
			"tg_module_add: module \"%s\": child \"%s\" belongs to another context",
			m->name, child->name);
		tg_module_free(child);
		return -1;
	}
	if (!grow(m, &m->children, m->nchildren, sizeof *m->children, "tg_module_add")) {
		tg_module_free(child);
		return -1;
	}
	m->children[m->nchildren++] = child;
	return 0;
}

tg_tensor *tg_forward(tg_module *m, tg_tensor *x)
{
	if (!x)
		return NULL;
	tg_ctx *ctx = tg_ctx_of(x);
	if (!ctx) {
		tg_data(x); /* records TG_ESTALE */
		return NULL;
	}
	if (!tg_ok(ctx))
		return NULL;
	if (!m)
		return tg_fail(ctx, TG_ENULL, "tg_forward: the module is NULL");
	if (m->ctx != ctx)
		return tg_fail(ctx, TG_EARG,
			       "tg_forward: module \"%s\" (%s) and its input belong to different "
			       "contexts",
			       m->name, kind_of(m));
	tg_tensor *y = m->vt->forward(m, x);
	if (!y && tg_ok(ctx))
		return tg_fail(ctx, TG_EARG, "tg_forward: module \"%s\" (%s) returned NULL",
			       m->name, kind_of(m));
	return y;
}

void tg_module_train(tg_module *m, bool on)
{
	if (!m)
		return;
	m->training = on;
	for (size_t i = 0; i < m->nchildren; i++)
		tg_module_train(m->children[i], on);
}

/* Appends m's params (state when !params) and its children's into out. */
static size_t collect(const tg_module *m, bool params, tg_tensor **out, size_t cap, size_t n)
{
	size_t k = params ? m->nparams : m->nstate;
	tg_tensor **own = params ? m->params : m->state;
	for (size_t i = 0; i < k; i++, n++)
		if (out && n < cap)
			out[n] = own[i];
	for (size_t i = 0; i < m->nchildren; i++)
		n = collect(m->children[i], params, out, cap, n);
	return n;
}

size_t tg_module_params(const tg_module *m, tg_tensor **out, size_t cap)
{
	return m ? collect(m, true, out, cap, 0) : 0;
}

size_t tg_module_tensors(const tg_module *m, tg_tensor **out, size_t cap)
{
	return m ? collect(m, false, out, cap, collect(m, true, out, cap, 0)) : 0;
}

int tg_module_spec(const tg_module *m, char *buf, size_t size)
{
	if (!m)
		return -1;
	if (!m->vt->spec) {
		tg_fail(m->ctx, TG_EARG,
			"tg_module_spec: module \"%s\" of kind %s has no spec (a module of its "
			"own cannot be rebuilt from a string)",
			m->name, kind_of(m));
		return -1;
	}
	if (!buf)
		size = 0;
	else if (size)
		buf[0] = '\0';
	return m->vt->spec(m, buf, size);
}

/* ---- sequential -------------------------------------------------------------------- */

static tg_tensor *sequential_forward(tg_module *m, tg_tensor *x)
{
	for (size_t i = 0; i < m->nchildren && x; i++)
		x = tg_forward(m->children[i], x);
	return x;
}

/* The children's specs joined by ','. */
static int sequential_spec(const tg_module *m, char *buf, size_t size)
{
	size_t len = 0;
	for (size_t i = 0; i < m->nchildren; i++) {
		if (i) {
			if (len + 1 < size)
				buf[len] = ',', buf[len + 1] = '\0';
			len++;
		}
		int n = tg_module_spec(m->children[i], len < size ? buf + len : NULL,
				       len < size ? size - len : 0);
		if (n < 0)
			return -1;
		len += (size_t)n;
	}
	return (int)len;
}

static const tg_module_vt sequential_vt = {
    .kind = "sequential",
    .forward = sequential_forward,
    .spec = sequential_spec,
};

tg_module *tg_sequential(tg_ctx *ctx, const char *name)
{
	return tg_module_new(ctx, &sequential_vt, name, NULL);
}

/* ---- the architecture string ----------------------------------------------------- */

static int check_opts(tg_ctx *ctx, const char *arch, const tg_mlp_opts *o)
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
		"tg_model_parse: spec \"%s\": %s (dropout %g, bn_eps %g, "
		"bn_avg_decay %g)",
		arch, bad, o->dropout, o->bn_eps, o->bn_avg_decay);
	return -1;
}

/* Reads "784-100-10" into width[]; returns the number of sizes, or -1 after
 * recording why the spec is wrong. */
static int parse_sizes(tg_ctx *ctx, const char *spec, int64_t *width)
{
	const char *p = spec;
	int n = 0;
	for (;;) {
		const char *end = p;
		while (*end >= '0' && *end <= '9')
			end++;
		if (end == p || (*end && *end != '-')) {
			size_t len = strcspn(p, "-");
			tg_fail(ctx, TG_EARG,
				"tg_model_parse: spec \"%s\": size %d \"%.*s\" is not a positive "
				"integer; expected sizes joined by '-', as \"784-100-10\"",
				spec, n + 1, (int)len, p);
			return -1;
		}
		if (n == TG_MLP_MAX_LAYERS + 1) {
			tg_fail(ctx, TG_EARG,
				"tg_model_parse: spec \"%s\": more than %d affine layers", spec,
				TG_MLP_MAX_LAYERS);
			return -1;
		}
		errno = 0;
		long long v = strtoll(p, NULL, 10);
		if (v <= 0 || v > INT32_MAX || errno) {
			tg_fail(
			    ctx, TG_EARG,
			    "tg_model_parse: spec \"%s\": size %d is %.*s; sizes must be 1 to %d",
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
			"tg_model_parse: spec \"%s\": needs an input and an output size at least, "
			"as \"784-10\"",
			spec);
		return -1;
	}
	return n;
}

static char *num_name(char *buf, size_t size, const char *base, int i)
{
	snprintf(buf, size, "%s%d", base, i);
	return buf;
}

/* fc<i> -> [bn<i>] -> act<i> -> [dropout<i>] per hidden layer, fc<L> last. */
static tg_module *build_mlp(tg_ctx *ctx, const char *spec, const tg_mlp_opts *o)
{
	int64_t w[TG_MLP_MAX_LAYERS + 1];
	int n = parse_sizes(ctx, spec, w);
	if (n < 0 || check_opts(ctx, spec, o))
		return NULL;
	tg_module *seq = tg_sequential(ctx, NULL);
	char name[32];
	for (int i = 1; seq && i < n; i++) {
		if (tg_module_add(seq, tg_linear(ctx, o->dtype, w[i - 1], w[i], o->init,
						 num_name(name, sizeof name, "fc", i))))
			break;
		if (i == n - 1)
			break;
		if (o->batchnorm &&
		    tg_module_add(seq,
				  tg_batchnorm1d(ctx, o->dtype, w[i], o->bn_eps, o->bn_avg_decay,
						 num_name(name, sizeof name, "bn", i))))
			break;
		if (tg_module_add(
			seq, tg_activation(ctx, o->act, num_name(name, sizeof name, "act", i))))
			break;
		if (o->dropout > 0 &&
		    tg_module_add(seq, tg_dropout_layer(ctx, o->dropout,
							num_name(name, sizeof name, "dropout", i))))
			break;
	}
	if (!tg_ok(ctx)) {
		tg_module_free(seq);
		return NULL;
	}
	return seq;
}

enum { MAX_WORDS = 4 };

/* One piece "kind:a:b" of a full architecture string, split at ':'. */
typedef struct {
	const char *arch; /* the whole string, for messages */
	int index;	  /* 1-based */
	char text[128];
	char *word[MAX_WORDS];
	int nword;
} piece;

static tg_module *bad_piece(tg_ctx *ctx, const piece *p, const char *why)
{
	return tg_fail(ctx, TG_EARG, "tg_model_parse: \"%s\": piece %d \"%s\": %s", p->arch,
		       p->index, p->text, why);
}

/* Word i as a positive size; false after recording why not. */
static bool size_word(tg_ctx *ctx, const piece *p, int i, int64_t *out)
{
	char why[96];
	if (i >= p->nword) {
		snprintf(why, sizeof why, "size %d is missing", i);
		bad_piece(ctx, p, why);
		return false;
	}
	char *end;
	errno = 0;
	long long v = strtoll(p->word[i], &end, 10);
	if (end == p->word[i] || *end || errno || v <= 0 || v > INT32_MAX) {
		snprintf(why, sizeof why, "size %d \"%s\" must be an integer from 1 to %d", i,
			 p->word[i], INT32_MAX);
		bad_piece(ctx, p, why);
		return false;
	}
	*out = v;
	return true;
}

/* Word i as a number (def when absent); false after recording why not. */
static bool num_word(tg_ctx *ctx, const piece *p, int i, double def, double *out)
{
	if (i >= p->nword) {
		*out = def;
		return true;
	}
	char *end;
	double v = strtod(p->word[i], &end);
	if (end == p->word[i] || *end || !isfinite(v)) {
		char why[96];
		snprintf(why, sizeof why, "\"%s\" is not a number", p->word[i]);
		bad_piece(ctx, p, why);
		return false;
	}
	*out = v;
	return true;
}

static bool words_at_most(tg_ctx *ctx, const piece *p, int n)
{
	if (p->nword <= n)
		return true;
	char why[64];
	snprintf(why, sizeof why, "%s takes at most %d value%s", p->word[0], n - 1,
		 n == 2 ? "" : "s");
	bad_piece(ctx, p, why);
	return false;
}

typedef struct {
	int fc, bn, ln, act, dropout, emb, flatten;
} counts;

static const char *const act_words[] = {"identity", "none",	  "relu", "sigmoid",
					"tanh",	    "leaky_relu", "elu"};

/* The module piece p describes, named by kind and count as tg_mlp_new does. */
static tg_module *parse_piece(tg_ctx *ctx, piece *p, counts *c, const tg_mlp_opts *o)
{
	char name[32];
	const char *k = p->word[0];
	int64_t a, b;
	double v, w;
	if (!strcmp(k, "linear")) {
		if (!size_word(ctx, p, 1, &a) || !size_word(ctx, p, 2, &b) ||
		    !words_at_most(ctx, p, 3))
			return NULL;
		return tg_linear(ctx, o->dtype, a, b, o->init,
				 num_name(name, sizeof name, "fc", ++c->fc));
	}
	if (!strcmp(k, "bn")) {
		if (!size_word(ctx, p, 1, &a) || !num_word(ctx, p, 2, o->bn_eps, &v) ||
		    !num_word(ctx, p, 3, o->bn_avg_decay, &w) || !words_at_most(ctx, p, 4))
			return NULL;
		if (!(v > 0) || !(w >= 0 && w <= 1))
			return bad_piece(ctx, p, "eps must be positive and avg_decay in [0, 1]");
		return tg_batchnorm1d(ctx, o->dtype, a, v, w,
				      num_name(name, sizeof name, "bn", ++c->bn));
	}
	if (!strcmp(k, "ln")) {
		if (!size_word(ctx, p, 1, &a) || !num_word(ctx, p, 2, TG_LN_EPS, &v) ||
		    !words_at_most(ctx, p, 3))
			return NULL;
		if (!(v > 0))
			return bad_piece(ctx, p, "eps must be positive");
		return tg_layernorm(ctx, o->dtype, a, v,
				    num_name(name, sizeof name, "ln", ++c->ln));
	}
	if (!strcmp(k, "dropout")) {
		if (p->nword < 2)
			return bad_piece(ctx, p, "the probability is missing, as \"dropout:0.5\"");
		if (!num_word(ctx, p, 1, 0, &v) || !words_at_most(ctx, p, 2))
			return NULL;
		if (!(v >= 0 && v < 1))
			return bad_piece(ctx, p, "the drop probability must be in [0, 1)");
		return tg_dropout_layer(ctx, v,
					num_name(name, sizeof name, "dropout", ++c->dropout));
	}
	if (!strcmp(k, "embedding")) {
		if (!size_word(ctx, p, 1, &a) || !size_word(ctx, p, 2, &b) ||
		    !words_at_most(ctx, p, 3))
			return NULL;
		return tg_embedding_table(ctx, o->dtype, a, b,
					  num_name(name, sizeof name, "emb", ++c->emb));
	}
	if (!strcmp(k, "flatten")) {
		if (!words_at_most(ctx, p, 1))
			return NULL;
		return tg_flatten(ctx, num_name(name, sizeof name, "flatten", ++c->flatten));
	}
	for (size_t i = 0; i < sizeof act_words / sizeof act_words[0]; i++) {
		if (strcmp(k, act_words[i]))
			continue;
		tg_act act = {TG_ACT_IDENTITY, 0};
		bool alpha = !strcmp(k, "leaky_relu") || !strcmp(k, "elu");
		act.kind = i < 2 ? TG_ACT_IDENTITY : (tg_act_kind)(i - 1);
		if (!words_at_most(ctx, p, alpha ? 2 : 1) ||
		    (alpha &&
		     !num_word(ctx, p, 1, act.kind == TG_ACT_ELU ? 1.0 : 0.01, &act.alpha)))
			return NULL;
		return tg_activation(ctx, act, num_name(name, sizeof name, "act", ++c->act));
	}
	char why[256];
	snprintf(why, sizeof why,
		 "unknown kind \"%s\"; expected linear, bn, ln, dropout, embedding, flatten or an "
		 "activation (relu, sigmoid, tanh, leaky_relu, elu, identity)",
		 k);
	return bad_piece(ctx, p, why);
}

static tg_module *build_full(tg_ctx *ctx, const char *arch, const tg_mlp_opts *o)
{
	if (check_opts(ctx, arch, o))
		return NULL;
	tg_module *seq = tg_sequential(ctx, NULL);
	counts c = {0};
	const char *s = arch;
	for (int i = 1; seq && tg_ok(ctx); i++) {
		size_t len = strcspn(s, ",");
		piece p = {.arch = arch, .index = i};
		if (len >= sizeof p.text) {
			tg_fail(ctx, TG_EARG, "tg_model_parse: \"%.40s...\": piece %d is too long",
				arch, i);
			break;
		}
		memcpy(p.text, s, len);
		p.text[len] = '\0';
		char copy[sizeof p.text];
		strcpy(copy, p.text);
		for (char *w = copy; p.nword < MAX_WORDS + 1;) {
			if (p.nword == MAX_WORDS) {
				bad_piece(ctx, &p, "too many values after the kind");
				break;
			}
			p.word[p.nword++] = w;
			char *colon = strchr(w, ':');
			if (!colon)
				break;
			*colon = '\0';
			w = colon + 1;
		}
		if (!tg_ok(ctx))
			break;
		if (!*p.word[0]) {
			bad_piece(ctx, &p, "the kind is empty");
			break;
		}
		if (tg_module_add(seq, parse_piece(ctx, &p, &c, o)))
			break;
		if (!s[len])
			break;
		s += len + 1;
	}
	if (!tg_ok(ctx)) {
		tg_module_free(seq);
		return NULL;
	}
	return seq;
}

tg_module *tg_model_parse(tg_ctx *ctx, const char *arch, const tg_mlp_opts *opts)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	if (!arch)
		return tg_fail(ctx, TG_ENULL, "tg_model_parse: the architecture string is NULL");
	tg_mlp_opts o = opts ? *opts : tg_mlp_defaults();
	if (!*arch || (*arch >= '0' && *arch <= '9'))
		return build_mlp(ctx, arch, &o);
	return build_full(ctx, arch, &o);
}
