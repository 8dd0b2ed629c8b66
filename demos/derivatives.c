/*
 * derivatives.c - a Jacobian and a Hessian from tapegrad beside central
 * differences, in f64.
 *
 * The Jacobian is that of a sigmoid layer y = sigmoid(W x + b), R^3 -> R^2
 * (by hand: diag(y (1 - y)) W). The Hessian is that of the seeds' sigmoid
 * neuron f = sigmoid(w1 x1 + w2 x2 + b) in its five scalar inputs, each
 * entry beside the central difference of the gradient (tg_vjp). Exits 0
 * only if every entry agrees to 1e-7.
 *
 *	derivatives
 */
#include "demo.h"
#include "tapegrad.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define H 1e-5   /* central-difference step */
#define TOL 1e-7

static const double W[6] = { 0.5, -1, 2, 1.5, 0.25, -0.75 }; /* (2,3) */
static const double B[2] = { 0.1, -0.2 };

/* y = sigmoid(W x + b) for x (3) */
static tg_tensor *layer(tg_tensor *const *in, void *user)
{
	(void)user;
	tg_ctx *ctx = tg_ctx_of(in[0]);
	tg_tensor *w = tg_from_f64(ctx, TG_F64, 2, (int64_t[]){ 2, 3 }, W);
	tg_tensor *b = tg_from_f64(ctx, TG_F64, 2, (int64_t[]){ 2, 1 }, B);
	tg_tensor *x = tg_reshape(in[0], 2, (int64_t[]){ 3, 1 });
	return tg_reshape(tg_sigmoid(tg_add(tg_matmul(w, x), b)), 1, (int64_t[]){ 2 });
}

/* f = sigmoid(w1 x1 + w2 x2 + b), in = { w1, w2, x1, x2, b } */
static tg_tensor *neuron(tg_tensor *const *in, void *user)
{
	(void)user;
	tg_tensor *z = tg_add(tg_add(tg_mul(in[0], in[2]), tg_mul(in[1], in[3])), in[4]);
	return tg_sigmoid(z);
}

/* A header for n columns of entry pairs after a prefix of width pad. */
static void header(int pad, int n, const char *const *names)
{
	printf("%*s", pad, "");
	for (int j = 0; j < n; j++)
		printf(" %10s %10s  ", names[j], "finite d.");
	printf("\n");
}

/* Prints got beside want; counts a disagreement. */
static int entry(double got, double want)
{
	int bad = !(fabs(got - want) <= TOL);
	printf(" %10.6f %10.6f%s", got, want, bad ? " !" : "  ");
	return bad;
}

static int show_jacobian(tg_ctx *ctx)
{
	tg_tensor *x = tg_from_f64(ctx, TG_F64, 1, (int64_t[]){ 3 }, (double[]){ 0.3, -0.6, 0.9 });
	tg_tensor *jac;
	if (tg_jacobian(ctx, layer, NULL, 1, &x, &jac))
		return 1;
	static const char *const names[3] = { "dy/dx1", "dy/dx2", "dy/dx3" };
	printf("Jacobian of sigmoid(W x + b) at x = (0.3, -0.6, 0.9), shape (2,3):\n");
	header(6, 3, names);
	int bad = 0;
	double *d = tg_data_mut(x);
	for (int r = 0; r < 2; r++) {
		printf("  y%d  ", r + 1);
		for (int k = 0; k < 3; k++) {
			double x0 = d[k];
			d[k] = x0 + H;
			double up = tg_get(layer(&x, NULL), (size_t)r);
			d[k] = x0 - H;
			double down = tg_get(layer(&x, NULL), (size_t)r);
			d[k] = x0;
			bad += entry(tg_get(jac, (size_t)(r * 3 + k)), (up - down) / (2 * H));
		}
		printf("\n");
	}
	return bad;
}

static int show_hessian(tg_ctx *ctx)
{
	static const char *const names[5] = { "w1", "w2", "x1", "x2", "b" };
	static const double at[5] = { 2, -3, -1, -2, -3 };
	tg_tensor *in[5], *hess[25];
	for (int i = 0; i < 5; i++)
		in[i] = tg_scalar(ctx, TG_F64, at[i]);
	if (tg_hessian(ctx, neuron, NULL, 5, in, hess))
		return 1;
	printf("\nHessian of sigmoid(w1 x1 + w2 x2 + b) at w = (2, -3), x = (-1, -2), b = -3\n"
	       "(each entry beside the central difference of the gradient):\n");
	header(5, 5, names);
	int bad = 0;
	for (int i = 0; i < 5; i++) {
		tg_tensor *gp[5], *gm[5];
		double *d = tg_data_mut(in[i]);
		d[0] = at[i] + H;
		int rc = tg_vjp(ctx, neuron, NULL, 5, in, NULL, NULL, gp);
		d[0] = at[i] - H;
		rc = rc ? rc : tg_vjp(ctx, neuron, NULL, 5, in, NULL, NULL, gm);
		d[0] = at[i];
		if (rc)
			return 1;
		printf("  %-3s", names[i]);
		for (int j = 0; j < 5; j++)
			bad += entry(tg_item(hess[i * 5 + j]),
				     (tg_item(gp[j]) - tg_item(gm[j])) / (2 * H));
		printf("\n");
	}
	return bad;
}

static const char usage_text[] =
	"usage: derivatives\n"
	"\n"
	"Prints the Jacobian of a sigmoid layer and the Hessian of a sigmoid neuron\n"
	"beside central differences; exits 1 if an entry differs by more than 1e-7.\n";

int main(int argc, char **argv)
{
	demo_cli c = demo_cli_begin("derivatives", usage_text, argc, argv);
	while (demo_cli_next(&c))
		demo_unknown(&c);
	tg_ctx *ctx = tg_ctx_new(1);
	if (!ctx)
		return 1;
	int bad = show_jacobian(ctx);
	bad += show_hessian(ctx);
	if (!tg_ok(ctx))
		fprintf(stderr, "derivatives: %s\n", tg_error(ctx));
	else if (bad)
		fprintf(stderr, "derivatives: %d entries differ by more than %g\n", bad, TOL);
	else
		printf("\nevery entry agrees with finite differences to %g\n", TOL);
	int rc = tg_ok(ctx) && !bad ? 0 : 1;
	tg_ctx_free(ctx);
	return demo_end("derivatives", rc);
}
