/*
 * init.c - weight initialisers: where a parameter's first values come from.
 *
 * A weight is drawn from N(0, std^2) with the context's generator, std given
 * by the initialiser's formula; vectors (biases, gamma, beta, running
 * statistics) start at a constant. Names are parsed here for the command
 * line. Nothing here records on the tape: parameters are leaves.
 */
#include "tapegrad.h"
#include "tapegrad_nn.h"
#include "c_locale.h"
#include "engine_errors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------ */

int tg_init_parse(tg_ctx *ctx, const char *s, tg_init *out)
{
	if (!ctx)
		return -1;
	if (!s || !out) {
		tg_fail(ctx, TG_ENULL, "tg_init_parse: %s is NULL", !s ? "the name" : "out");
		return -1;
	}
	if (!strcmp(s, "lecun")) {
		*out = (tg_init){TG_INIT_LECUN, 0};
		return 0;
	}
	if (!strcmp(s, "glorot")) {
		*out = (tg_init){TG_INIT_GLOROT, 0};
		return 0;
	}
	if (!strcmp(s, "he")) {
		*out = (tg_init){TG_INIT_HE, 0};
		return 0;
	}
	if (!strcmp(s, "std")) {
		*out = (tg_init){TG_INIT_STD, 0.01};
		return 0;
	}
	if (!strncmp(s, "std:", 4)) {
		char *end;
		double v = tg_c_strtod(s + 4, &end);
		if (end == s + 4 || *end || !(v > 0) || !isfinite(v)) {
			tg_fail(ctx, TG_EARG,
				"tg_init_parse: \"%s\": the std after \"std:\" must be a positive "
				"number",
				s);
			return -1;
		}
		*out = (tg_init){TG_INIT_STD, v};
		return 0;
	}
	if (!strcmp(s, "xavier")) {
		tg_fail(ctx, TG_EARG,
			"tg_init_parse: \"xavier\" is ambiguous: the book's Xavier sqrt(1/n_in) is "
			"\"lecun\", Glorot and Bengio's sqrt(2/(n_in+n_out)) is \"glorot\"");
		return -1;
	}
	tg_fail(ctx, TG_EARG,
		"tg_init_parse: unknown initialiser \"%s\"; expected std, std:<value>, lecun, "
		"glorot or he",
		s);
	return -1;
}

char *tg_init_str(tg_init init, char *buf, size_t size)
{
	if (!buf || !size)
		return buf;
	switch (init.kind) {
	case TG_INIT_STD:
		tg_c_snprintf(buf, size, "std:%g", init.std);
		break;
	case TG_INIT_LECUN:
		snprintf(buf, size, "lecun");
		break;
	case TG_INIT_GLOROT:
		snprintf(buf, size, "glorot");
		break;
	case TG_INIT_HE:
		snprintf(buf, size, "he");
		break;
	default:
		snprintf(buf, size, "unknown(%d)", (int)init.kind);
	}
	return buf;
}

/* ---- the formulas ----------------------------------------------------------------- */

double tg_init_std(tg_init init, int64_t n_in, int64_t n_out)
{
	if (n_in <= 0 || n_out <= 0)
		return NAN;
	switch (init.kind) {
	case TG_INIT_STD:
		return init.std;
	case TG_INIT_LECUN:
		return sqrt(1.0 / (double)n_in);
	case TG_INIT_GLOROT:
		return sqrt(2.0 / ((double)n_in + (double)n_out)); /* no int64 sum to overflow */
	case TG_INIT_HE:
		return sqrt(2.0 / (double)n_in);
	}
	return NAN;
}

/* ---- parameters ---------------------------------------------------------------------- */

/* Names t when a name is given; a failed copy leaves the error in ctx. A
 * tensor the allocator could not give is said again naming the parameter
 * and its size: the op that ran out (tg_randn, tg_full) names only itself
 * and its step arena. */
static tg_tensor *named(tg_ctx *ctx, tg_tensor *t, const char *who, const char *name, int nd,
			const int64_t *shape, tg_dtype dt)
{
	if (t)
		return name ? tg_set_name(t, name) : t;
	if (tg_status_of(ctx) != TG_ENOMEM)
		return NULL;
	double bytes = dt == TG_F64 ? 8 : 4;
	char dims[96];
	int k = snprintf(dims, sizeof dims, "(");
	for (int i = 0; i < nd; i++) {
		bytes *= (double)shape[i];
		k += snprintf(dims + k, sizeof dims - (size_t)k, "%s%lld", i ? "," : "",
			      (long long)shape[i]);
	}
	snprintf(dims + k, sizeof dims - (size_t)k, ")");
	tg_fail_again(ctx, "%s: %s %s %s, %.3g GB: out of memory", who, name ? name : "parameter",
		      dims, dt == TG_F64 ? "f64" : "f32", bytes / 1e9);
	return NULL;
}

tg_tensor *tg_init_weight(tg_ctx *ctx, tg_dtype dt, int64_t n_in, int64_t n_out, tg_init init,
			  const char *name)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	if (n_in <= 0 || n_out <= 0)
		return tg_fail(ctx, TG_EARG, "tg_init_weight: %s: sizes %lld and %lld must be positive",
			       name ? name : "weight", (long long)n_in, (long long)n_out);
	double std = tg_init_std(init, n_in, n_out);
	if (!(std >= 0) || !isfinite(std)) {
		char buf[32];
		return tg_fail(ctx, TG_EARG,
			       "tg_init_weight: %s: initialiser %s for (%lld,%lld) gives std %g",
			       name ? name : "weight", tg_init_str(init, buf, sizeof buf),
			       (long long)n_in, (long long)n_out, std);
	}
	int64_t shape[2] = {n_in, n_out};
	return named(ctx, tg_param(tg_randn(ctx, dt, 2, shape, 0.0, std)), "tg_init_weight", name, 2,
		     shape, dt);
}

tg_tensor *tg_init_vector(tg_ctx *ctx, tg_dtype dt, int64_t n, double value, bool param,
			  const char *name)
{
	if (!ctx || !tg_ok(ctx))
		return NULL;
	if (n <= 0)
		return tg_fail(ctx, TG_EARG, "tg_init_vector: %s: size %lld must be positive",
			       name ? name : "vector", (long long)n);
	if (!isfinite(value))
		return tg_fail(ctx, TG_EARG, "tg_init_vector: %s: value %g is not finite",
			       name ? name : "vector", value);
	int64_t shape[1] = {n};
	tg_tensor *v = tg_full(ctx, dt, 1, shape, value);
	return named(ctx, param ? tg_param(v) : tg_keep(v), "tg_init_vector", name, 1, shape, dt);
}
