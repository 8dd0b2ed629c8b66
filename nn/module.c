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
#include "bn_running.h"
#include "c_locale.h"
#include "engine_errors.h"
#include "kept_undo.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
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

static void free_tree(tg_module *m)
{
	for (size_t i = 0; i < m->nchildren; i++)
		free_tree(m->children[i]);
	if (m->vt && m->vt->free)
		m->vt->free(m);
	free(m->children);
	free(m->params);
	free(m->state);
	free(m->name);
	free(m);
}

void tg_module_free(tg_module *m)
{
	if (!m)
		return;
	if (m->parent) { /* its parent frees it; freeing it here would free it twice */
		tg_fail(m->ctx, TG_EARG,
			"tg_module_free: module \"%s\" belongs to %s%s%s; free the model it is "
			"part of",
			m->name, *m->parent->name ? "module \"" : "an unnamed module",
			m->parent->name, *m->parent->name ? "\"" : "");
		return;
	}
	free_tree(m);
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
	if (!m && tg_ctx_of(t)) /* t's context hears of it */
		tg_fail(tg_ctx_of(t), TG_ENULL, "%s: the module is NULL", who);
	if (!m || !tg_ok(m->ctx))
		return NULL;
	if (!t || !field)
		return tg_fail(m->ctx, TG_ENULL, "%s: module \"%s\": %s is NULL", who, m->name,
			       !t ? "the tensor" : "field");
	if (!tg_tensor_check(who, t)) {
		tg_stale_elsewhere(m->ctx, who, t, "module \"%s\": tensor for %s", m->name, field);
		return NULL;
	}
	if (tg_ctx_of(t) != m->ctx)
		return tg_fail(m->ctx, TG_ECTX,
			       "%s: module \"%s\": tensor for %s belongs to another context", who,
			       m->name, field);
	/* a field twice would give two tensors one name, which a checkpoint
	 * refuses only when it is saved, after the training */
	const size_t counts[2] = { m->nparams, m->nstate };
	tg_tensor *const *lists[2] = { m->params, m->state };
	for (int l = 0; l < 2; l++)
		for (size_t i = 0; i < counts[l]; i++) {
			const char *had = tg_name(lists[l][i]);
			size_t n = strlen(m->name);
			bool same = had && (*m->name ? !strncmp(had, m->name, n) && had[n] == '.' &&
							   !strcmp(had + n + 1, field)
						      : !strcmp(had, field));
			if (same && lists[l][i] != t)
				return tg_fail(m->ctx, TG_EARG,
					       "%s: module \"%s\" has a %s named %s already; each "
					       "field names one tensor",
					       who, m->name, l ? "state tensor" : "parameter", field);
		}
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

/* True when a is m or holds m (a parent of m, or a parent of that, ...). */
static bool holds(const tg_module *a, const tg_module *m)
{
	for (; m; m = m->parent)
		if (m == a)
			return true;
	return false;
}

int tg_module_add(tg_module *m, tg_module *child)
{
	/* A child with an owner is never freed here, whatever else is wrong:
	 * its owner frees it, and a second free would be a use after free. */
	if (child && (child->parent || (m && holds(child, m)))) {
		if (!m)
			return -1;
		if (child->parent)
			tg_fail(m->ctx, TG_EARG,
				"tg_module_add: module \"%s\": child \"%s\" belongs to module "
				"\"%s\" already (a module has one parent)",
				m->name, child->name, child->parent->name);
		else if (child == m)
			tg_fail(m->ctx, TG_EARG,
				"tg_module_add: module \"%s\" cannot contain itself", m->name);
		else
			tg_fail(m->ctx, TG_EARG,
				"tg_module_add: module \"%s\": child \"%s\" holds it; adding it "
				"would make a cycle",
				m->name, child->name);
		return -1;
	}
	if (!m) {
		tg_module_free(child);
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
		tg_fail(m->ctx, TG_ECTX,
			"tg_module_add: module \"%s\": child \"%s\" belongs to another context",
			m->name, child->name);
		tg_module_free(child);
		return -1;
	}
	/* siblings of one name would give their tensors one name each, which
	 * a checkpoint refuses only when it is saved, after the training */
	if (tg_module_tensors(child, NULL, 0) > 0)
		for (size_t i = 0; i < m->nchildren; i++)
			if (!strcmp(m->children[i]->name, child->name) &&
			    tg_module_tensors(m->children[i], NULL, 0) > 0) {
				tg_fail(m->ctx, TG_EARG,
					"tg_module_add: module \"%s\" has a child named \"%s\" "
					"already; its tensors' names would repeat",
					m->name, child->name);
				tg_module_free(child);
				return -1;
			}
	if (!grow(m, &m->children, m->nchildren, sizeof *m->children, "tg_module_add")) {
		tg_module_free(child);
		return -1;
	}
	m->children[m->nchildren++] = child;
	child->parent = m;
	return 0;
}

/* tg_forward; with pair, the forward of m and next as one op */
static tg_tensor *forward_with(tg_module *m, tg_tensor *x, tg_module *next, tg_pair_forward pair)
{
	if (!x)
		return NULL;
	tg_ctx *ctx = tg_tensor_check("tg_forward", x);
	if (!ctx)
		return NULL;
	if (!tg_ok(ctx))
		return NULL;
	if (!m)
		return tg_fail(ctx, TG_ENULL, "tg_forward: the module is NULL");
	if (m->ctx != ctx)
		return tg_fail(ctx, TG_ECTX,
			       "tg_forward: module \"%s\" (%s) and its input belong to different "
			       "contexts",
			       m->name, kind_of(m));
	tg_tensor *y = pair ? pair(m, next, x) : m->vt->forward(m, x);
	if (!y && tg_ok(ctx))
		return tg_fail(ctx, TG_EARG, "tg_forward: module \"%s\" (%s) returned NULL",
			       m->name, kind_of(m));
	/* the caller's next op (a loss) would fail in the other context, or
	 * read a tensor a tg_reset freed */
	if (y && tg_ctx_of(y) != ctx)
		return tg_fail(ctx, tg_ctx_of(y) ? TG_ECTX : TG_ESTALE,
			       "tg_forward: module \"%s\" (%s) returned a tensor %s", m->name,
			       kind_of(m),
			       tg_ctx_of(y) ? "of another context than its input's"
					    : "that is no longer valid (a tg_reset freed it)");
	return y;
}

tg_tensor *tg_forward(tg_module *m, tg_tensor *x)
{
	return forward_with(m, x, NULL, NULL);
}

tg_tensor *tg_forward_children(tg_module *const *children, size_t n, size_t i, tg_tensor *x,
			       size_t *taken)
{
	tg_module *next = i + 1 < n ? children[i + 1] : NULL;
	tg_module *after = i + 2 < n ? children[i + 2] : NULL;
	tg_pair_forward pair = children[i] && next ? tg_fused_pair(children[i], next, after) : NULL;
	*taken = pair ? 2 : 1;
	return forward_with(children[i], x, next, pair);
}

void tg_module_train(tg_module *m, bool on)
{
	if (!m)
		return;
	m->training = on;
	for (size_t i = 0; i < m->nchildren; i++)
		tg_module_train(m->children[i], on);
}

/* Calls fn on each of m's params (state when !params) and its children's,
 * depth first, until fn returns false; false then. */
static bool each(const tg_module *m, bool params, bool (*fn)(tg_tensor *t, void *arg), void *arg)
{
	size_t k = params ? m->nparams : m->nstate;
	tg_tensor **own = params ? m->params : m->state;
	for (size_t i = 0; i < k; i++)
		if (!fn(own[i], arg))
			return false;
	for (size_t i = 0; i < m->nchildren; i++)
		if (!each(m->children[i], params, fn, arg))
			return false;
	return true;
}

/* Whether t, met at place `at` of the walk (params, then state), was met
 * before: a parameter shared by two modules (tied weights) is one
 * parameter, listed where it is first met. */
typedef struct search {
	tg_tensor *t;
	size_t left; /* places of the walk before t's */
	bool found;
} search;

static bool before(tg_tensor *t, void *arg)
{
	search *s = arg;
	if (!s->left)
		return false;
	s->left--;
	s->found = t == s->t;
	return !s->found;
}

static bool seen(const tg_module *root, tg_tensor *t, size_t at)
{
	search s = { t, at, false };
	if (each(root, true, before, &s))
		each(root, false, before, &s);
	return s.found;
}

/* The list being made: each tensor of root's tree once, into out[0..cap). */
typedef struct listing {
	const tg_module *root;
	tg_tensor **out;
	size_t cap, n;
	size_t at; /* places of the walk passed */
} listing;

static bool add_once(tg_tensor *t, void *arg)
{
	listing *l = arg;
	if (seen(l->root, t, l->at++))
		return true;
	if (l->out && l->n < l->cap)
		l->out[l->n] = t;
	l->n++;
	return true;
}

size_t tg_module_params(const tg_module *m, tg_tensor **out, size_t cap)
{
	if (!m)
		return 0;
	listing l = { .root = m, .out = out, .cap = cap };
	each(m, true, add_once, &l);
	return l.n;
}

size_t tg_module_tensors(const tg_module *m, tg_tensor **out, size_t cap)
{
	if (!m)
		return 0;
	listing l = { .root = m, .out = out, .cap = cap };
	each(m, true, add_once, &l);
	each(m, false, add_once, &l);
	return l.n;
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
	for (size_t i = 0, taken; i < m->nchildren && x; i += taken)
		x = tg_forward_children(m->children, m->nchildren, i, x, &taken);
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
	char why[128];
	if (o->dtype != TG_F32 && o->dtype != TG_F64)
		bad = "dtype is neither TG_F32 nor TG_F64";
	else if ((unsigned)o->act.kind > TG_ACT_ELU)
		bad = "unknown activation";
	else if ((unsigned)o->init.kind > TG_INIT_HE ||
		 (o->init.kind == TG_INIT_STD && !(o->init.std >= 0 && isfinite(o->init.std))))
		bad = "unknown initialiser or a negative std";
	else if (!(o->dropout >= 0 && o->dropout < 1))
		bad = "dropout must be in [0, 1)";
	else if (o->batchnorm && tg_norm_eps_wrong(o->bn_eps, o->dtype, why, sizeof why))
		bad = why;
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

enum { MAX_WORDS = 8 };

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

/* Whether s starts as a number written plainly does: strtol and strtod
 * also take leading white space (and strtol a sign where none belongs). */
static bool starts_digit(const char *s) { return *s >= '0' && *s <= '9'; }

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
	if (!starts_digit(p->word[i]) || *end || errno || v <= 0 || v > INT32_MAX) {
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
	const char *w = p->word[i];
	double v = tg_c_strtod(w, &end);
	if (end == w || *end || !isfinite(v) || !(starts_digit(w) || strchr("+-.", *w))) {
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
	int fc, bn, ln, act, dropout, emb, flatten, conv, pool;
} counts;

/* Word i as "a" or "axb", each from min to INT_MAX (any value the conv and
 * pool layers take, so that every spec they write reads back), into out[2]
 * (def for both when absent); false after recording why not, which offers
 * the "axb" form only where a pair is taken (two: a conv's sides). */
static bool pair_word(tg_ctx *ctx, const piece *p, int i, int min, int def, bool two,
		      int out[2])
{
	if (i >= p->nword) {
		out[0] = out[1] = def;
		return true;
	}
	const char *s = p->word[i];
	for (int side = 0; side < 2; side++) {
		char *end;
		errno = 0;
		long v = strtol(s, &end, 10);
		if (!starts_digit(s) || errno || v < min || v > INT_MAX || (*end && *end != 'x') ||
		    (*end == 'x' && side == 1)) {
			char why[128];
			snprintf(why, sizeof why, "value %d \"%s\" must be an integer from %d to %d%s",
				 i, p->word[i], min, INT_MAX, two ? ", or two as \"3x5\"" : "");
			bad_piece(ctx, p, why);
			return false;
		}
		out[side] = (int)v;
		if (!*end) {
			if (side == 0)
				out[1] = out[0];
			break;
		}
		s = end + 1;
	}
	return true;
}

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
		char why[128];
		if (tg_norm_eps_wrong(v, o->dtype, why, sizeof why))
			return bad_piece(ctx, p, why);
		if (!(w >= 0 && w <= 1))
			return bad_piece(ctx, p, "avg_decay must be in [0, 1]");
		tg_module *m = tg_batchnorm1d(ctx, o->dtype, a, v, w,
					      num_name(name, sizeof name, "bn", ++c->bn));
		if (m && p->nword > 2 && (v != o->bn_eps || w != o->bn_avg_decay))
			tg_bn_spec_states(m);
		return m;
	}
	if (!strcmp(k, "ln")) {
		if (!size_word(ctx, p, 1, &a) || !num_word(ctx, p, 2, TG_LN_EPS, &v) ||
		    !words_at_most(ctx, p, 3))
			return NULL;
		char why[128];
		if (tg_norm_eps_wrong(v, o->dtype, why, sizeof why))
			return bad_piece(ctx, p, why);
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
	if (!strcmp(k, "conv")) {
		int ks[2], g[2];
		tg_conv_opts co = TG_CONV_DEFAULTS;
		if (!size_word(ctx, p, 1, &a) || !size_word(ctx, p, 2, &b))
			return NULL;
		if (p->nword < 4)
			return bad_piece(ctx, p, "the kernel size is missing, as \"conv:1:32:3\"");
		if (!pair_word(ctx, p, 3, 1, 1, true, ks) ||
		    !pair_word(ctx, p, 4, 1, 1, true, co.stride) ||
		    !pair_word(ctx, p, 5, 0, 0, true, co.padding) ||
		    !pair_word(ctx, p, 6, 1, 1, true, co.dilation) ||
		    !pair_word(ctx, p, 7, 1, 1, false, g))
			return NULL;
		if (g[0] != g[1])
			return bad_piece(ctx, p, "groups is one number");
		co.groups = g[0];
		if (a % co.groups || b % co.groups)
			return bad_piece(ctx, p, "groups must divide both channel counts");
		return tg_conv2d_layer(ctx, o->dtype, a, b, ks[0], ks[1], &co, o->init,
				       num_name(name, sizeof name, "conv", ++c->conv));
	}
	if (!strcmp(k, "maxpool") || !strcmp(k, "avgpool")) {
		int kk[2], st[2], pad[2];
		if (p->nword < 2)
			return bad_piece(ctx, p, "the window size is missing, as \"maxpool:2\"");
		if (!pair_word(ctx, p, 1, 1, 1, false, kk) ||
		    !pair_word(ctx, p, 2, 1, kk[0], false, st) ||
		    !pair_word(ctx, p, 3, 0, 0, false, pad) || !words_at_most(ctx, p, 4))
			return NULL;
		if (kk[0] != kk[1] || st[0] != st[1] || pad[0] != pad[1])
			return bad_piece(ctx, p, "pooling takes square windows: one number each");
		if (pad[0] > kk[0] / 2)
			return bad_piece(ctx, p, "padding must be at most half the window");
		num_name(name, sizeof name, "pool", ++c->pool);
		return k[0] == 'm' ? tg_maxpool2d_layer(ctx, kk[0], st[0], pad[0], name)
				   : tg_avgpool2d_layer(ctx, kk[0], st[0], pad[0], name);
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
		 "unknown kind \"%s\"; expected linear, bn, ln, dropout, embedding, flatten, conv, "
		 "maxpool, avgpool or an "
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

static tg_module *model_parse(tg_ctx *ctx, const char *arch, const tg_mlp_opts *opts)
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

/* A layer's own argument error (parameters too large for a tensor, say)
 * reported as the parser's, with the layer's words after it: the parsers
 * name themselves in every refusal. */
static void as_parse_error(tg_ctx *ctx, const char *who, const char *arch)
{
	if (tg_status_of(ctx) != TG_EARG || !strncmp(tg_error(ctx), who, strlen(who)))
		return;
	tg_fail_again(ctx, "%s: \"%s\"", who, arch);
}

/* A failed parse frees the parameters of the pieces it had built. */
tg_module *tg_model_parse(tg_ctx *ctx, const char *arch, const tg_mlp_opts *opts)
{
	tg_tensor *mark = tg_kept_newest(ctx);
	tg_module *m = model_parse(ctx, arch, opts);
	if (!m) {
		tg_kept_drop_newer(ctx, mark);
		if (ctx && arch)
			as_parse_error(ctx, "tg_model_parse", arch);
	}
	return m;
}

/* ---- the short form for images ------------------------------------------------------- */

#define TG_CNN_DEFAULT "conv32:3p1-pool2-conv64:3p1-pool2-128-10"

typedef struct {
	const char *arch; /* as given, for messages */
	int index;	  /* 1-based */
	const char *text; /* the piece */
	int len;
	int64_t c, h, w; /* the shape going in; h = 0 once flattened (c features) */
} short_piece;

static tg_module *bad_short(tg_ctx *ctx, const short_piece *p, const char *why)
{
	char shape[96];
	if (p->h)
		snprintf(shape, sizeof shape, "(N,%lld,%lld,%lld)", (long long)p->c,
			 (long long)p->h, (long long)p->w);
	else
		snprintf(shape, sizeof shape, "(N,%lld)", (long long)p->c);
	return tg_fail(ctx, TG_EARG, "tg_model_parse_image: \"%s\": piece %d \"%.*s\" on input %s: %s",
		       p->arch, p->index, p->len, p->text, shape, why);
}

/* A number from 1 (or 0 when zero_ok) to 65535 at *s: 1 with *out set, 0
 * when there are no digits, -1 when the digits are outside that range;
 * *s moves past the digits. */
static int short_num(const char **s, const char *end, bool zero_ok, int64_t *out)
{
	int64_t v = 0;
	const char *q = *s;
	for (; q < end && *q >= '0' && *q <= '9'; q++)
		v = v > 65535 ? v : v * 10 + (*q - '0');
	if (q == *s)
		return 0;
	*s = q;
	if (v > 65535 || (v == 0 && !zero_ok))
		return -1;
	*out = v;
	return 1;
}

/* floor((n + 2 pad - (k - 1) - 1) / stride) + 1, or 0 when the window does
 * not fit. */
static int64_t out_side(int64_t n, int64_t k, int64_t stride, int64_t pad)
{
	int64_t span = n + 2 * pad - k;
	return span < 0 ? 0 : span / stride + 1;
}

static bool append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *len, size - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size - *len)
		return false;
	*len += (size_t)n;
	return true;
}

/* The full form of a short one into out; false after recording why not. */
static bool expand_short(tg_ctx *ctx, const char *arch, int64_t c, int64_t h, int64_t w,
			 char *out, size_t size)
{
	const char *s = strcmp(arch, "cnn") ? arch : TG_CNN_DEFAULT;
	size_t len = 0;
	out[0] = '\0';
	bool fit = true, flat = false;
	short_piece p = {.arch = arch, .c = c, .h = h, .w = w};
	for (int i = 1;; i++) {
		size_t n = strcspn(s, "-");
		const char *end = s + n, *q = s;
		p.index = i;
		p.text = s;
		p.len = (int)n;
		bool last = !*end;
		int64_t v, k, pad = 0, stride = 1;
		char why[160];
		if (!strncmp(q, "conv", 4)) {
			q += 4;
			if (flat) {
				bad_short(ctx, &p, "a convolution must come before the linear layers");
				return false;
			}
			int got_o = short_num(&q, end, false, &v);
			int got_k = got_o > 0 && q < end && *q == ':' ? (q++, short_num(&q, end, false, &k))
								      : 0;
			if (got_o < 0 || got_k < 0) {
				bad_short(ctx, &p,
					  got_o < 0 ? "the channels O of convO:K are 1 to 65535"
						    : "the kernel size K of convO:K is 1 to 65535");
				return false;
			}
			if (!got_o || !got_k) {
				bad_short(ctx, &p, "expected convO:K, as \"conv32:3\"");
				return false;
			}
			bool seen_p = false, seen_s = false, bn = false;
			while (q < end) {
				char opt = *q++;
				bool again = (opt == 'p' && seen_p) || (opt == 's' && seen_s) ||
					     (opt == 'b' && bn);
				int got = again	       ? 0
					  : opt == 'p' ? short_num(&q, end, true, &pad)
					  : opt == 's' ? short_num(&q, end, false, &stride)
						       : opt == 'b';
				if (got < 0) {
					bad_short(ctx, &p,
						  opt == 'p' ? "the padding P of pP is 0 to 65535"
							     : "the stride S of sS is 1 to 65535");
					return false;
				}
				if (!got) {
					bad_short(ctx, &p,
						  again ? "pP (padding), sS (stride) and b (batch "
							  "norm) may each be given once"
							: "after convO:K only pP (padding), sS "
							  "(stride) and b (batch norm), as "
							  "\"conv32:3p1s2b\"");
					return false;
				}
				seen_p = seen_p || opt == 'p';
				seen_s = seen_s || opt == 's';
				bn = bn || opt == 'b';
			}
			int64_t oh = out_side(p.h, k, stride, pad), ow = out_side(p.w, k, stride, pad);
			if (!oh || !ow) {
				snprintf(why, sizeof why,
					 "a %lldx%lld kernel with padding %lld does not fit",
					 (long long)k, (long long)k, (long long)pad);
				bad_short(ctx, &p, why);
				return false;
			}
			fit = fit && append(out, size, &len, "%sconv:%lld:%lld:%lld:%lld:%lld",
					    len ? "," : "", (long long)p.c, (long long)v,
					    (long long)k, (long long)stride, (long long)pad);
			if (bn) /* over the conv's channels, before its relu */
				fit = fit && append(out, size, &len, ",bn:%lld", (long long)v);
			fit = fit && append(out, size, &len, ",relu");
			p.c = v;
			p.h = oh;
			p.w = ow;
		} else if (!strncmp(q, "pool", 4) || !strncmp(q, "maxpool", 7) ||
			   !strncmp(q, "avgpool", 7)) {
			bool avg = *q == 'a';
			q += *q == 'p' ? 4 : 7;
			if (flat) {
				bad_short(ctx, &p, "a pooling must come before the linear layers");
				return false;
			}
			int got = short_num(&q, end, false, &k);
			if (got < 0 && q == end) {
				bad_short(ctx, &p, "the window K of poolK is 1 to 65535");
				return false;
			}
			if (got <= 0 || q != end) {
				bad_short(ctx, &p, "expected poolK, as \"pool2\"");
				return false;
			}
			int64_t oh = out_side(p.h, k, k, 0), ow = out_side(p.w, k, k, 0);
			if (!oh || !ow) {
				snprintf(why, sizeof why, "a %lldx%lld window does not fit",
					 (long long)k, (long long)k);
				bad_short(ctx, &p, why);
				return false;
			}
			fit = fit && append(out, size, &len, "%s%s:%lld", len ? "," : "",
					    avg ? "avgpool" : "maxpool", (long long)k);
			p.h = oh;
			p.w = ow;
		} else {
			int got = short_num(&q, end, false, &v);
			if (got < 0 && q == end) {
				bad_short(ctx, &p, "a layer size is 1 to 65535");
				return false;
			}
			if (got <= 0 || q != end) {
				bad_short(ctx, &p,
					  n ? "expected convO:K[pP][sS][b], poolK, avgpoolK or a layer "
					      "size"
					    : "an empty piece (a '-' too many)");
				return false;
			}
			int64_t d = p.c;
			if (!flat && (__builtin_mul_overflow(p.c, p.h, &d) ||
				      __builtin_mul_overflow(d, p.w, &d) || d > INT32_MAX)) {
				snprintf(why, sizeof why,
					 "flattens to more than %d features, too many for a "
					 "linear layer",
					 INT32_MAX);
				bad_short(ctx, &p, why);
				return false;
			}
			if (!flat)
				fit = fit && append(out, size, &len, "%sflatten", len ? "," : "");
			fit = fit && append(out, size, &len, ",linear:%lld:%lld%s", (long long)d,
					    (long long)v, last ? "" : ",relu");
			flat = true;
			p.c = v;
			p.h = p.w = 0;
		}
		if (!fit) {
			bad_short(ctx, &p, "the architecture is too long");
			return false;
		}
		if (last)
			return true;
		s = end + 1;
	}
}

tg_module *tg_model_parse_image(tg_ctx *ctx, const char *arch, int64_t c, int64_t h, int64_t w,
				const tg_mlp_opts *opts)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	if (!arch)
		return tg_fail(ctx, TG_ENULL, "tg_model_parse_image: the architecture string is NULL");
	if (c < 1 || h < 1 || w < 1 || c > INT32_MAX || h > INT32_MAX || w > INT32_MAX)
		return tg_fail(ctx, TG_EARG,
			       "tg_model_parse_image: \"%s\": image shape (%lld,%lld,%lld): each "
			       "size must be 1 to %d",
			       arch, (long long)c, (long long)h, (long long)w, INT32_MAX);
	if (!*arch)
		return tg_fail(ctx, TG_EARG, "tg_model_parse_image: the architecture string is empty");
	char full[4096];
	if (!expand_short(ctx, arch, c, h, w, full, sizeof full))
		return NULL;
	tg_mlp_opts o = opts ? *opts : tg_mlp_defaults();
	tg_tensor *mark = tg_kept_newest(ctx);
	tg_module *m = build_full(ctx, full, &o);
	if (!m) {
		tg_kept_drop_newer(ctx, mark);
		as_parse_error(ctx, "tg_model_parse_image", arch);
	}
	return m;
}
