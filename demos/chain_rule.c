/*
 * chain_rule.c - the seeds' worked examples, computed and printed beside the
 * numbers in the study notes.
 *
 * Each example builds one graph from ../shared/seeds/ (the apple shop,
 * CS231n's backprop examples, the Affine/ReLU/softmax/SVM layers, seed 003's
 * Iris table), runs backward, prints every value next to the expected one
 * and writes the graph as DOT (and PNG when graphviz's dot is on PATH).
 * Exits 0 only if every value matches.
 *
 *	chain_rule [--out DIR]     (default DIR: chain_rule_out)
 */
#include "demo.h"
#include "tapegrad.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOL 1e-9      /* exact values, up to rounding in f64 */
#define TOL_10D 5e-10 /* references given to 10 decimals */
#define TOL_7D 5e-8   /* references given to 7 decimals */

/* ---- the run: output place, counts ------------------------------------------------ */

struct run {
	const char *dir;  /* where DOT and PNG files go */
	bool render;      /* dot is on PATH */
	bool example_ok;  /* every value of the current example matched */
	bool files_ok;    /* every file was written */
};

/* Prints one value beside its expected value. */
static void show(struct run *r, const char *label, double got, double want, double tol)
{
	bool ok = fabs(got - want) <= tol;
	printf("  %-30s %18.12g   expected %-16.12g %s\n", label, got, want,
	       ok ? "ok" : "MISMATCH");
	r->example_ok = r->example_ok && ok;
}

/* Prints t's values, label[0], label[1], ...; t NULL is a mismatch. */
static void show_all(struct run *r, const char *label, const tg_tensor *t, const double *want,
		     size_t n, double tol)
{
	char name[64];
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof name, "%s[%zu]", label, i);
		show(r, name, t && tg_numel(t) == n ? tg_get(t, i) : NAN, want[i], tol);
	}
}

#define SHOW_ALL(r, label, t, tol, ...)                                                \
	do {                                                                           \
		const double want_[] = { __VA_ARGS__ };                                \
		show_all(r, label, t, want_, sizeof want_ / sizeof want_[0], tol);     \
	} while (0)

/* the gradient that reached t; NAN if none did */
static double grad(const tg_tensor *t)
{
	const tg_tensor *g = tg_grad(t);
	return g ? tg_item(g) : NAN;
}

/* ---- graph files ------------------------------------------------------------------- */

/* Writes DIR/name.dot for the graph that produced y, and DIR/name.png: dot
 * draws it into DIR/.name.png.tmp.<pid>, which takes the place of the PNG
 * only when dot succeeds, so a failure leaves no partial picture. */
static void save_graph(struct run *r, const char *name, const tg_tensor *y)
{
	char dot[PATH_MAX], png[PATH_MAX], tmp[PATH_MAX];
	/* --out was checked to leave room for every name up to DEMO_FILE_MAX;
	 * a path that does not fit is refused, never cut short */
	int nd = snprintf(dot, sizeof dot, "%s/%s.dot", r->dir, name);
	int np = snprintf(png, sizeof png, "%s/%s.png", r->dir, name);
	int nt = snprintf(tmp, sizeof tmp, "%s/.%s.png.tmp.%ld", r->dir, name, (long)getpid());
	if (strlen(name) + 4 > DEMO_FILE_MAX || nd < 0 || np < 0 || nt < 0 ||
	    nd >= (int)sizeof dot || np >= (int)sizeof png || nt >= (int)sizeof tmp) {
		fprintf(stderr, "chain_rule: cannot write %s/%s.dot: %s\n", r->dir, name,
			strerror(ENAMETOOLONG));
		r->files_ok = false;
		return;
	}
	if (tg_write_dot_file(y, dot) != 0) {
		fprintf(stderr, "chain_rule: cannot write %s: %s\n", dot,
			tg_error(tg_ctx_of(y)));
		r->files_ok = false;
		return;
	}
	if (!r->render) {
		printf("  graph: %s\n", dot);
		return;
	}
	char *qdot = demo_shell_quote(dot), *qtmp = demo_shell_quote(tmp), *cmd = NULL;
	size_t len = qdot && qtmp ? strlen(qdot) + strlen(qtmp) + 32 : 0;
	if (len && (cmd = malloc(len)))
		snprintf(cmd, len, "dot -Tpng %s -o %s", qdot, qtmp);
	free(qdot);
	free(qtmp);
	if (!cmd) {
		fprintf(stderr, "chain_rule: cannot draw %s: out of memory\n", png);
		r->files_ok = false;
		return;
	}
	fflush(NULL);
	int st = system(cmd);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "chain_rule: '%s' failed (status %d)\n", cmd, st);
		free(cmd);
		unlink(tmp);
		r->files_ok = false;
		return;
	}
	free(cmd);
	if (rename(tmp, png) != 0) {
		fprintf(stderr, "chain_rule: cannot write %s: %s\n", png, strerror(errno));
		unlink(tmp);
		r->files_ok = false;
		return;
	}
	printf("  graph: %s, %s\n", dot, png);
}

/* ---- tensors ------------------------------------------------------------------------- */

static tg_tensor *scalar_param(tg_ctx *ctx, const char *name, double v)
{
	return tg_set_name(tg_param(tg_scalar(ctx, TG_F64, v)), name);
}

static tg_tensor *param(tg_ctx *ctx, const char *name, int ndim, const int64_t *shape,
			const double *v)
{
	return tg_set_name(tg_param(tg_from_f64(ctx, TG_F64, ndim, shape, v)), name);
}

static tg_tensor *constant(tg_ctx *ctx, const char *name, int ndim, const int64_t *shape,
			   const double *v)
{
	return tg_set_name(tg_from_f64(ctx, TG_F64, ndim, shape, v), name);
}

/* names an intermediate so the DOT graph reads like the seed's figure */
static tg_tensor *named(tg_tensor *t, const char *name) { return tg_set_name(t, name); }

/* ---- the examples --------------------------------------------------------------------- */

/* seeds 001, 002: price = apple * count * tax */
static void apple(struct run *r, tg_ctx *ctx)
{
	tg_tensor *apple = scalar_param(ctx, "apple", 100);
	tg_tensor *count = scalar_param(ctx, "count", 2);
	tg_tensor *tax = scalar_param(ctx, "tax", 1.1);
	tg_tensor *apple_price = named(tg_mul(apple, count), "apple_price");
	tg_tensor *price = named(tg_mul(apple_price, tax), "price");
	tg_backward(price);

	show(r, "price", tg_item(price), 220, TOL);
	show(r, "d price/d apple", grad(apple), 2.2, TOL);
	show(r, "d price/d count", grad(count), 110, TOL);
	show(r, "d price/d tax", grad(tax), 200, TOL);
	show(r, "d price/d apple_price", grad(apple_price), 1.1, TOL);
	save_graph(r, "apple", price);
}

/* seed 001: price = (apple * apple_num + orange * orange_num) * tax */
static void apple_orange(struct run *r, tg_ctx *ctx)
{
	tg_tensor *apple = scalar_param(ctx, "apple", 100);
	tg_tensor *apple_num = scalar_param(ctx, "apple_num", 2);
	tg_tensor *orange = scalar_param(ctx, "orange", 150);
	tg_tensor *orange_num = scalar_param(ctx, "orange_num", 3);
	tg_tensor *tax = scalar_param(ctx, "tax", 1.1);
	tg_tensor *apple_price = named(tg_mul(apple, apple_num), "apple_price");
	tg_tensor *orange_price = named(tg_mul(orange, orange_num), "orange_price");
	tg_tensor *all_price = named(tg_add(apple_price, orange_price), "all_price");
	tg_tensor *price = named(tg_mul(all_price, tax), "price");
	tg_backward(price);

	show(r, "all_price", tg_item(all_price), 650, TOL);
	show(r, "price", tg_item(price), 715, TOL);
	show(r, "d price/d apple", grad(apple), 2.2, TOL);
	show(r, "d price/d apple_num", grad(apple_num), 110, TOL);
	show(r, "d price/d orange", grad(orange), 3.3, TOL);
	show(r, "d price/d orange_num", grad(orange_num), 165, TOL);
	show(r, "d price/d tax", grad(tax), 650, TOL);
	show(r, "d price/d all_price", grad(all_price), 1.1, TOL);
	save_graph(r, "apple_orange", price);
}

/* seeds 002, 003 (CS231n): f = (x + y) z at x = -2, y = 5, z = -4 */
static void sum_times_z(struct run *r, tg_ctx *ctx)
{
	tg_tensor *x = scalar_param(ctx, "x", -2);
	tg_tensor *y = scalar_param(ctx, "y", 5);
	tg_tensor *z = scalar_param(ctx, "z", -4);
	tg_tensor *q = named(tg_add(x, y), "q");
	tg_tensor *f = named(tg_mul(q, z), "f");
	tg_backward(f);

	show(r, "f", tg_item(f), -12, TOL);
	show(r, "df/dx", grad(x), -4, TOL);
	show(r, "df/dy", grad(y), -4, TOL);
	show(r, "df/dz", grad(z), 3, TOL);
	show(r, "df/dq", grad(q), -4, TOL);
	save_graph(r, "sum_times_z", f);
}

/* seed 001: z = t^2, t = x + y; dz/dx = 2t = 2(x + y) */
static void sum_squared(struct run *r, tg_ctx *ctx)
{
	const double at[][2] = { { 1, 2 }, { 0.5, -3 } };
	tg_tensor *z = NULL;
	for (int k = 0; k < 2; k++) {
		tg_tensor *x = scalar_param(ctx, "x", at[k][0]);
		tg_tensor *y = scalar_param(ctx, "y", at[k][1]);
		tg_tensor *t = named(tg_add(x, y), "t");
		z = named(tg_pow(t, 2), "z");
		tg_backward(z);

		double sum = at[k][0] + at[k][1];
		char label[64];
		snprintf(label, sizeof label, "dz/dx at (%g, %g)", at[k][0], at[k][1]);
		show(r, label, grad(x), 2 * sum, TOL);
		snprintf(label, sizeof label, "dz/dy at (%g, %g)", at[k][0], at[k][1]);
		show(r, label, grad(y), 2 * sum, TOL);
	}
	save_graph(r, "sum_squared", z);
}

/* seed 003: y = 5x + 3, z = 4y^2; dz/dx = 40(5x + 3) = 320 at x = 1 */
static void five_x_plus_3(struct run *r, tg_ctx *ctx)
{
	tg_tensor *x = scalar_param(ctx, "x", 1);
	tg_tensor *y = named(tg_add_scalar(tg_mul_scalar(x, 5), 3), "y");
	tg_tensor *z = named(tg_mul_scalar(tg_pow(y, 2), 4), "z");
	tg_backward(z);

	show(r, "z", tg_item(z), 256, TOL);
	show(r, "dz/dy = 8y", grad(y), 64, TOL);
	show(r, "dz/dx = 40(5x + 3)", grad(x), 320, TOL);
	save_graph(r, "five_x_plus_3", z);
}

/* seeds 002, 003 (CS231n): f = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) */
static tg_tensor *neuron_sum(tg_ctx *ctx, tg_tensor **w, tg_tensor **x)
{
	w[0] = scalar_param(ctx, "w0", 2);
	x[0] = scalar_param(ctx, "x0", -1);
	w[1] = scalar_param(ctx, "w1", -3);
	x[1] = scalar_param(ctx, "x1", -2);
	w[2] = scalar_param(ctx, "w2", -3);
	return named(tg_add(tg_add(tg_mul(w[0], x[0]), tg_mul(w[1], x[1])), w[2]), "s");
}

static void neuron_show(struct run *r, tg_tensor *f, tg_tensor *s, tg_tensor **w,
			tg_tensor **x)
{
	show(r, "f", tg_item(f), 0.7310585786, TOL_10D);
	show(r, "df/dw0", grad(w[0]), -0.1966119332, TOL_10D);
	show(r, "df/dw1", grad(w[1]), -0.3932238665, TOL_10D);
	show(r, "df/dw2", grad(w[2]), 0.1966119332, TOL_10D);
	show(r, "df/dx0", grad(x[0]), 0.3932238665, TOL_10D);
	show(r, "df/dx1", grad(x[1]), -0.5898357997, TOL_10D);
	show(r, "df/ds = f (1 - f)", grad(s), 0.1966119332, TOL_10D);
}

static void neuron_prims(struct run *r, tg_ctx *ctx)
{
	tg_tensor *w[3], *x[3];
	tg_tensor *s = neuron_sum(ctx, w, x);
	tg_tensor *e = named(tg_exp(tg_neg(s)), "exp(-s)");
	tg_tensor *d = named(tg_add_scalar(e, 1), "1 + exp(-s)");
	tg_tensor *one = named(tg_scalar(ctx, TG_F64, 1), "1");
	tg_tensor *f = named(tg_div(one, d), "f");
	tg_backward(f);

	neuron_show(r, f, s, w, x);
	show(r, "df/d(1 + exp(-s)) = -f^2", grad(d), -0.5344466454, TOL_10D);
	save_graph(r, "neuron_prims", f);
}

static void neuron_sigmoid(struct run *r, tg_ctx *ctx)
{
	tg_tensor *w[3], *x[3];
	tg_tensor *s = neuron_sum(ctx, w, x);
	tg_tensor *f = named(tg_sigmoid(s), "f");
	tg_backward(f);

	neuron_show(r, f, s, w, x);
	save_graph(r, "neuron_sigmoid", f);
}

/* seed 003 (CS231n): f = ||W x||^2, q = W x; df/dq = 2q */
static void norm_wx(struct run *r, tg_ctx *ctx)
{
	tg_tensor *W = param(ctx, "W", 2, (int64_t[]){ 2, 2 }, (double[]){ 0.1, 0.5, -0.3, 0.8 });
	tg_tensor *x = param(ctx, "x", 2, (int64_t[]){ 2, 1 }, (double[]){ 0.2, 0.4 });
	tg_tensor *q = named(tg_matmul(W, x), "q");
	tg_tensor *f = named(tg_sum(tg_pow(q, 2)), "f");
	tg_backward(f);

	SHOW_ALL(r, "q", q, TOL, 0.22, 0.26);
	show(r, "f", tg_item(f), 0.116, TOL);
	SHOW_ALL(r, "df/dq", tg_grad(q), TOL, 0.44, 0.52);
	SHOW_ALL(r, "df/dW", tg_grad(W), TOL, 0.088, 0.176, 0.104, 0.208);
	SHOW_ALL(r, "df/dx", tg_grad(x), TOL, -0.112, 0.636);
	save_graph(r, "norm_wx", f);
}

/* seed 002: add distributes, mul swaps, max routes (upstream gradient 2) */
static void gate(struct run *r, tg_ctx *ctx, const char *file, const char *name,
		 tg_tensor *(*op)(tg_tensor *, tg_tensor *), double a, double b, double da,
		 double db)
{
	tg_tensor *ta = scalar_param(ctx, "a", a);
	tg_tensor *tb = scalar_param(ctx, "b", b);
	tg_tensor *y = named(op(ta, tb), name);
	tg_backward_ex(y, tg_scalar(ctx, TG_F64, 2), 0);

	char label[64];
	snprintf(label, sizeof label, "%s(%g, %g): da", name, a, b);
	show(r, label, grad(ta), da, TOL);
	snprintf(label, sizeof label, "%s(%g, %g): db", name, a, b);
	show(r, label, grad(tb), db, TOL);
	save_graph(r, file, y);
}

static void gates(struct run *r, tg_ctx *ctx)
{
	gate(r, ctx, "gate_add", "add", tg_add, 3, -4, 2, 2);
	gate(r, ctx, "gate_mul", "mul", tg_mul, 3, -4, -8, 6);
	gate(r, ctx, "gate_max", "maximum", tg_maximum, 3, -1, 2, 0);
	gate(r, ctx, "gate_max_tie", "maximum", tg_maximum, 2, 2, 1, 1);
}

/* seeds 000, 002: batched Affine bias, Y = X_dot_W + B; dB = sum(dY, axis=0) */
static void batch_bias(struct run *r, tg_ctx *ctx)
{
	const int64_t sh[2] = { 2, 3 };
	tg_tensor *xw = constant(ctx, "X_dot_W", 2, sh, (double[]){ 0, 0, 0, 10, 10, 10 });
	tg_tensor *B = param(ctx, "B", 1, (int64_t[]){ 3 }, (double[]){ 1, 2, 3 });
	tg_tensor *Y = named(tg_add(xw, B), "Y");
	SHOW_ALL(r, "Y", Y, TOL, 1, 2, 3, 11, 12, 13);

	printf("  upstream dY = [[1,2,3],[4,5,6]] (seed 002):\n");
	tg_backward_ex(Y, tg_from_f64(ctx, TG_F64, 2, sh, (double[]){ 1, 2, 3, 4, 5, 6 }), 0);
	SHOW_ALL(r, "dB", tg_grad(B), TOL, 5, 7, 9);
	save_graph(r, "batch_bias", Y);

	printf("  upstream dY = [[1,2,3],[11,12,13]] (seed 000):\n");
	tg_zero_grads(ctx);
	tg_backward_ex(Y, tg_from_f64(ctx, TG_F64, 2, sh, (double[]){ 1, 2, 3, 11, 12, 13 }), 0);
	SHOW_ALL(r, "dB", tg_grad(B), TOL, 12, 14, 16);
}

/* seed 002: the ReLU layer's mask (x <= 0) */
static void relu_mask(struct run *r, tg_ctx *ctx)
{
	const int64_t sh[2] = { 2, 2 };
	tg_tensor *x = param(ctx, "x", 2, sh, (double[]){ 1, -0.5, -2, 3 });
	tg_tensor *y = named(tg_relu(x), "relu(x)");
	tg_backward_ex(y, tg_ones(ctx, TG_F64, 2, sh), 0);

	SHOW_ALL(r, "relu(x)", y, TOL, 1, 0, 0, 3);
	SHOW_ALL(r, "dx", tg_grad(x), TOL, 1, 0, 0, 1);
	save_graph(r, "relu_mask", y);
}

/* seed 002: softmax of the scores 2.3 and -1.2, and -ln of the second */
static void softmax_scores(struct run *r, tg_ctx *ctx)
{
	tg_tensor *s = param(ctx, "scores", 2, (int64_t[]){ 1, 2 }, (double[]){ 2.3, -1.2 });
	tg_tensor *p = named(tg_softmax(s), "softmax");
	tg_tensor *nll = named(tg_neg(tg_log(tg_pick(p, tg_labels(ctx, 1, (int32_t[]){ 1 })))), "-ln p[1]");
	tg_backward(nll);

	SHOW_ALL(r, "softmax", p, TOL_10D, 0.9706877692, 0.0293122308);
	show(r, "-ln softmax[1]", tg_item(nll), 3.5297504183, TOL_10D);
	/* d/d scores = softmax - onehot(1) */
	SHOW_ALL(r, "d/d scores", tg_grad(s), TOL_10D, 0.9706877692, -0.9706877692);
	save_graph(r, "softmax_scores", nll);
}

/* seed 003: H = W x + b, P = softmax(H), L = -ln P[2] on one Iris sample */
static tg_tensor *iris_scores(tg_ctx *ctx, double b2)
{
	static const double W[12] = {
		0.231595, 0.613372, -0.89624, -0.41208,
		0.076107, -0.22382, 0.20313, -0.05043,
		-0.30772, -0.38941, 0.693168, 0.462622,
	};
	tg_tensor *x = constant(ctx, "x", 2, (int64_t[]){ 1, 4 }, (double[]){ 6.3, 2.7, 4.9, 1.8 });
	tg_tensor *tW = param(ctx, "W", 2, (int64_t[]){ 3, 4 }, W);
	tg_tensor *b = param(ctx, "b", 1, (int64_t[]){ 3 }, (double[]){ 1.123884, b2, 0.844128 });
	return named(tg_add(tg_matmul_t(x, false, tW, true), b), "H");
}

static void iris(struct run *r, tg_ctx *ctx)
{
	tg_tensor *H = iris_scores(ctx, 0.319879);
	tg_tensor *P = named(tg_softmax(H), "P");
	tg_tensor *L = named(tg_cross_entropy(H, tg_labels(ctx, 1, (int32_t[]){ 2 })), "L");
	tg_backward(L);

	SHOW_ALL(r, "H", H, TOL_7D, -0.8942831, 1.0996021, 2.0833278);
	SHOW_ALL(r, "P", P, TOL_7D, 0.0357336, 0.2624281, 0.7018382);
	show(r, "L = -ln P[2]", tg_item(L), 0.3540523, TOL_7D);
	/* the slide's L = 0.15376 is -log10 P[2] */
	show(r, "L / ln 10 (the slide's L)", tg_item(L) / log(10.0), 0.15376, 5e-6);
	/* dL/dH = P - y, y = onehot(2) */
	SHOW_ALL(r, "dL/dH", tg_grad(H), TOL_7D, 0.0357336, 0.2624281, 0.7018382 - 1);
	save_graph(r, "iris", L);

	tg_tensor *H2 = iris_scores(ctx, 0.319879 + 1);
	tg_tensor *P2 = named(tg_softmax(H2), "P");
	printf("  with b2 + 1:\n");
	SHOW_ALL(r, "P", P2, TOL_7D, 0.0246282, 0.4916542, 0.4837176);
}

/* seed 002: multiclass SVM loss, L_i = sum over j != y_i of max(0, s_j - s_yi + 1);
 * rows are images (cat, car, frog scores), the slide's columns */
static void svm_loss(struct run *r, tg_ctx *ctx)
{
	tg_tensor *S = param(ctx, "scores", 2, (int64_t[]){ 3, 3 },
			     (double[]){ 3.2, 5.1, -1.7, 1.3, 4.9, 2.0, 2.2, 2.5, -3.1 });
	tg_tensor *correct = named(tg_reshape(tg_pick(S, tg_labels(ctx, 3, (int32_t[]){ 0, 1, 2 })), 2,
					      (int64_t[]){ 3, 1 }), "s_yi");
	tg_tensor *zero = named(tg_scalar(ctx, TG_F64, 0), "0");
	tg_tensor *margins = named(tg_maximum(tg_add_scalar(tg_sub(S, correct), 1), zero),
				   "margins");
	/* the correct class's own margin is max(0, 1) = 1: drop it */
	tg_tensor *losses = named(tg_add_scalar(tg_sum_axis(margins, 1, false), -1), "L_i");
	tg_tensor *L = named(tg_mean(losses), "L");
	tg_backward(L);

	SHOW_ALL(r, "L_i", losses, TOL, 2.9, 0, 12.9);
	show(r, "L (slide)", tg_item(L), 5.2667, 1e-4);
	show(r, "L = 79/15", tg_item(L), 79.0 / 15.0, 1e-12);
	/* image 2 (frog): cat and car margins positive: +1/3 each, -2/3 on frog */
	const tg_tensor *dS = tg_grad(S);
	show(r, "dL/ds[2][cat]", dS ? tg_get(dS, 6) : NAN, 1.0 / 3, TOL);
	show(r, "dL/ds[2][car]", dS ? tg_get(dS, 7) : NAN, 1.0 / 3, TOL);
	show(r, "dL/ds[2][frog]", dS ? tg_get(dS, 8) : NAN, -2.0 / 3, TOL);
	save_graph(r, "svm_loss", L);
}

/* seed 003: the sigmoid classifier table, p = sigmoid(w1 x1 + w2 x2), x = (1, 2) */
static void sigmoid_table(struct run *r, tg_ctx *ctx)
{
	const double w[][2] = { { 2, 3 }, { -4, -3 } };
	const double want[] = { 0.9996646, 0.0000454 };
	tg_tensor *x = constant(ctx, "x", 1, (int64_t[]){ 2 }, (double[]){ 1, 2 });
	tg_tensor *first = NULL;
	for (int k = 0; k < 2; k++) {
		tg_tensor *tw = param(ctx, "w", 1, (int64_t[]){ 2 }, w[k]);
		tg_tensor *p = named(tg_sigmoid(named(tg_sum(tg_mul(tw, x)), "H")), "p");
		char label[64];
		snprintf(label, sizeof label, "p at w = (%g, %g)", w[k][0], w[k][1]);
		show(r, label, tg_item(p), want[k], TOL_7D);
		first = first ? first : p;
	}
	save_graph(r, "sigmoid_table", first);
}

static const struct example {
	const char *title;
	void (*run)(struct run *r, tg_ctx *ctx);
} examples[] = {
	{ "apple: price = apple * count * tax (seeds 001, 002)", apple },
	{ "apple and orange: (apple*2 + orange*3) * tax (seed 001)", apple_orange },
	{ "f = (x + y) z at (-2, 5, -4) (seeds 002, 003)", sum_times_z },
	{ "z = (x + y)^2: dz/dx = 2(x + y) (seed 001)", sum_squared },
	{ "z = 4 (5x + 3)^2 at x = 1 (seed 003)", five_x_plus_3 },
	{ "sigmoid neuron from mul, add, neg, exp, +1, 1/x (seeds 002, 003)", neuron_prims },
	{ "sigmoid neuron with the sigmoid op (seeds 002, 003)", neuron_sigmoid },
	{ "f = ||W x||^2 (seed 003)", norm_wx },
	{ "gates: add distributes, mul swaps, max routes (seed 002)", gates },
	{ "batched Affine bias (seeds 000, 002)", batch_bias },
	{ "ReLU mask (seed 002)", relu_mask },
	{ "softmax of scores (2.3, -1.2) (seed 002)", softmax_scores },
	{ "Iris softmax and cross-entropy (seed 003)", iris },
	{ "multiclass SVM loss (seed 002)", svm_loss },
	{ "sigmoid classifier table (seed 003)", sigmoid_table },
};

/* ---- the program --------------------------------------------------------------------- */

static const char usage_text[] =
	"usage: chain_rule [--out DIR] [--help]\n"
	"  Computes the seeds' worked examples, prints each value beside the\n"
	"  expected one, and writes each graph as DIR/<example>.dot (and .png\n"
	"  when graphviz's dot is on PATH). DIR defaults to chain_rule_out.\n"
	"  Exits 0 only if every value matches.\n";

/* whether an executable named name is in a directory of PATH */
static bool on_path(const char *name)
{
	const char *path = getenv("PATH");
	char file[PATH_MAX];
	while (path && *path) {
		size_t n = strcspn(path, ":");
		int len = n == 0 /* an empty entry is the current directory */
				  ? snprintf(file, sizeof file, "./%s", name)
				  : snprintf(file, sizeof file, "%.*s/%s", (int)n, path, name);
		/* an entry too long for a path names no file */
		if (len > 0 && (size_t)len < sizeof file && access(file, X_OK) == 0)
			return true;
		path += n + (path[n] == ':');
	}
	return false;
}

int main(int argc, char **argv)
{
	struct run r = { .dir = "chain_rule_out", .files_ok = true };
	demo_cli c = demo_cli_begin("chain_rule", usage_text, argc, argv);
	while (demo_cli_next(&c)) {
		if (demo_str(&c, "--out", &r.dir))
			continue;
		demo_unknown(&c);
	}
	demo_prove_out("chain_rule", r.dir); /* before the examples, not after them */
	r.render = on_path("dot");

	int n = (int)(sizeof examples / sizeof examples[0]), matched = 0;
	for (int i = 0; i < n; i++) {
		tg_ctx *ctx = tg_ctx_new(42);
		if (!ctx) {
			fprintf(stderr, "chain_rule: out of memory\n");
			return 1;
		}
		printf("%s\n", examples[i].title);
		r.example_ok = true;
		examples[i].run(&r, ctx);
		if (!tg_ok(ctx)) {
			printf("  error: %s\n", tg_error(ctx));
			r.example_ok = false;
		}
		matched += r.example_ok;
		tg_ctx_free(ctx);
	}
	printf("%d examples, %d match\n", n, matched);
	if (!r.files_ok)
		fprintf(stderr, "chain_rule: some graph files were not written\n");
	return demo_end("chain_rule", matched == n && r.files_ok ? 0 : 1);
}
