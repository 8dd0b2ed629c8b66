/*
 * gates.c - seed 003's perceptrons: AND (w 0.5, 0.5, b -0.7), NAND (-0.5,
 * -0.5, 0.7) and OR (0.5, 0.5, -0.2) with a step activation, and XOR as
 * AND(NAND, OR); then XOR learned: a single sigmoid unit (2-1) cannot, a
 * 2-2-1 sigmoid net can.
 *
 * The gates' weighted sums are computed by the engine (x @ w + b); the nets
 * are trained with gradients from tg_backward (binary cross-entropy, Adam).
 * That training is a loop of its own, a few lines in xor_start, and not
 * tg_train: the point is a single sigmoid unit and its binary cross-entropy
 * on four fixed points (full batch, float targets), while tg_train trains a
 * softmax over class labels, so a 2-1 net is not a model it can train.
 * Prints the truth tables beside the seed's and how often each net solved
 * XOR, writes gates.csv (the tables), xor_grid.csv (each net's output over
 * the plane), xor_loss.csv and gates.gp, and draws gates.png.
 *
 *	gates [--out DIR] [--quick]
 */
#include "experiments.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- 8. perceptron gates and XOR ------------------------------------------------------------ */

const ex_gate ex_and = { "AND", 0.5, 0.5, -0.7 };
const ex_gate ex_nand = { "NAND", -0.5, -0.5, 0.7 };
const ex_gate ex_or = { "OR", 0.5, 0.5, -0.2 };
const double ex_gate_in[4][2] = { { 0, 0 }, { 1, 0 }, { 0, 1 }, { 1, 1 } };
static const double xor_target[4] = { 0, 1, 1, 0 };

int ex_gate_eval(const ex_gate *g, const double in[4][2], int out[4], char *err)
{
	tg_ctx *ctx = tg_ctx_new(0);
	if (!ctx)
		return ex_fail(err, "%s: out of memory", g->name);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, 2, (int64_t[]){ 4, 2 }, &in[0][0]);
	tg_tensor *w = tg_from_f64(ctx, TG_F64, 2, (int64_t[]){ 2, 1 }, (double[]){ g->w1, g->w2 });
	tg_tensor *z = tg_add(tg_matmul(x, w), tg_scalar(ctx, TG_F64, g->b)); /* (4,1) */
	for (int i = 0; i < 4 && z; i++)
		out[i] = tg_get(z, (size_t)i) > 0; /* the step */
	int rc = tg_ok(ctx) ? 0 : ex_fail(err, "%s: %s", g->name, tg_error(ctx));
	tg_ctx_free(ctx);
	return rc;
}

int ex_xor_by_gates(int out[4], char *err)
{
	int s1[4], s2[4];
	if (ex_gate_eval(&ex_nand, ex_gate_in, s1, err) || ex_gate_eval(&ex_or, ex_gate_in, s2, err))
		return -1;
	double s[4][2];
	for (int i = 0; i < 4; i++) {
		s[i][0] = s1[i];
		s[i][1] = s2[i];
	}
	return ex_gate_eval(&ex_and, s, out, err);
}

ex_xor_opts ex_xor_defaults(void)
{
	return (ex_xor_opts){ .restarts = 10, .steps = 2000, .lr = 0.1, .seed = 1 };
}

double ex_xor_grid_point(int i)
{
	return -0.25 + 1.5 * i / (EX_XOR_GRID - 1);
}

/* Binary cross-entropy of sigmoid(z) against t, from the logit: mean of
 * softplus(z) - t z, which is -t ln y - (1 - t) ln(1 - y) without the
 * overflow of ln(sigmoid). */
static tg_tensor *bce_logits(tg_tensor *z, tg_tensor *t)
{
	return tg_mean(tg_sub(tg_softplus(z), tg_mul(t, z)));
}

/* sigmoid(net(x)) for the G*G grid points, row i = x1 point, column j = x2 */
static void xor_grid(tg_mlp *m, double grid[EX_XOR_GRID][EX_XOR_GRID])
{
	tg_ctx *ctx = tg_mlp_ctx(m);
	enum { G = EX_XOR_GRID };
	double pts[G * G][2];
	for (int i = 0; i < G; i++)
		for (int j = 0; j < G; j++) {
			pts[i * G + j][0] = ex_xor_grid_point(i);
			pts[i * G + j][1] = ex_xor_grid_point(j);
		}
	tg_tensor *y = tg_sigmoid(tg_mlp_forward(
		m, tg_from_f64(ctx, TG_F64, 2, (int64_t[]){ G * G, 2 }, &pts[0][0])));
	for (int i = 0; i < G * G && y; i++)
		grid[i / G][i % G] = tg_get(y, (size_t)i);
	tg_reset(ctx);
}

/* One start of one net; its loss curve goes to curve[steps]. */
static int xor_start(const char *spec, uint64_t seed, const ex_xor_opts *o, ex_xor_run *run,
		     double *curve, double grid[EX_XOR_GRID][EX_XOR_GRID], char *err)
{
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.act = (tg_act){ TG_ACT_SIGMOID, 0 };
	mo.init = (tg_init){ TG_INIT_STD, 1 };
	mo.dtype = TG_F64;
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	oo.lr = o->lr;
	ex_net a;
	if (ex_net_open(&a, seed, spec, &mo, &oo, spec, err)) {
		ex_net_close(&a);
		return -1;
	}
	const int64_t xs[2] = { 4, 2 }, ts[2] = { 4, 1 };
	for (int s = 0; s <= o->steps && tg_ok(a.ctx); s++) {
		tg_tensor *x = tg_from_f64(a.ctx, TG_F64, 2, xs, &ex_gate_in[0][0]);
		tg_tensor *t = tg_from_f64(a.ctx, TG_F64, 2, ts, xor_target);
		tg_tensor *z = tg_mlp_forward(a.m, x);
		tg_tensor *loss = bce_logits(z, t);
		if (s == o->steps) { /* the trained net, read only */
			tg_tensor *y = tg_sigmoid(z);
			run->loss = loss ? tg_item(loss) : NAN;
			run->solved = true;
			for (int i = 0; i < 4 && y; i++) {
				run->y[i] = tg_get(y, (size_t)i);
				run->solved = run->solved && (run->y[i] > 0.5) == (xor_target[i] > 0.5);
			}
			tg_reset(a.ctx);
			break;
		}
		tg_optim_zero_grad(a.opt);
		tg_backward(loss);
		tg_optim_step(a.opt);
		curve[s] = loss ? tg_item(loss) : NAN;
		tg_reset(a.ctx);
	}
	if (tg_ok(a.ctx))
		xor_grid(a.m, grid);
	int rc = tg_ok(a.ctx) ? 0 : ex_fail(err, "XOR, %s: %s", spec, tg_error(a.ctx));
	ex_net_close(&a);
	return rc;
}

static int xor_net(const char *spec, const ex_xor_opts *o, ex_xor_net *net, double *curve,
		   double (*grid)[EX_XOR_GRID], char *err)
{
	net->spec = spec;
	net->solved = 0;
	net->best = -1;
	for (int r = 0; r < o->restarts; r++) {
		if (xor_start(spec, o->seed + (uint64_t)r, o, &net->run[r], curve, grid, err))
			return -1;
		net->solved += net->run[r].solved;
		if (net->best < 0 || net->run[r].loss < net->run[net->best].loss) {
			net->best = r;
			memcpy(net->curve, curve, (size_t)o->steps * sizeof *curve);
			memcpy(net->grid, grid, sizeof net->grid);
		}
	}
	return 0;
}

int ex_xor_run_all(const ex_xor_opts *o, ex_xor *out, char *err)
{
	if (o->restarts < 1 || o->restarts > EX_XOR_MAX_RESTARTS || o->steps < 1 ||
	    o->steps > EX_XOR_MAX_STEPS)
		return ex_fail(err, "XOR: %d restarts, %d steps", o->restarts, o->steps);
	double *curve = malloc((size_t)o->steps * sizeof *curve);
	double(*grid)[EX_XOR_GRID] = malloc(sizeof(double[EX_XOR_GRID][EX_XOR_GRID]));
	int rc = curve && grid ? 0 : ex_fail(err, "XOR: out of memory");
	if (!rc)
		rc = xor_net("2-1", o, &out->one, curve, grid, err);
	if (!rc)
		rc = xor_net("2-2-1", o, &out->two, curve, grid, err);
	free(curve);
	free(grid);
	return rc;
}

/* ---- the demo ---------------------------------------------------------------------------- */

#ifndef EX_NO_MAIN

/* the seed's tables, in ex_gate_in's order (0,0), (1,0), (0,1), (1,1) */
static const int seed_and[4] = { 0, 0, 0, 1 };
static const int seed_nand[4] = { 1, 1, 1, 0 };
static const int seed_or[4] = { 0, 1, 1, 1 };
static const int seed_xor[4] = { 0, 1, 1, 0 };

static bool show_gate(const char *name, const int *got, const int *want, const ex_gate *g)
{
	bool same = true;
	if (g)
		printf("%-4s (w %4.1f, %4.1f, b %4.1f):", name, g->w1, g->w2, g->b);
	else
		printf("%-4s = AND(NAND, OR):       ", name);
	for (int i = 0; i < 4; i++) {
		printf("  %g%g->%d", ex_gate_in[i][0], ex_gate_in[i][1], got[i]);
		same = same && got[i] == want[i];
	}
	printf("   %s\n", same ? "as the seed's table" : "DIFFERS from the seed's table");
	return same;
}

static void show_net(const char *what, const ex_xor_net *n, int restarts)
{
	const ex_xor_run *b = &n->run[n->best];
	printf("%s %-5s: solved XOR in %d of %d starts; best loss %.4f, outputs "
	       "%.3f %.3f %.3f %.3f\n",
	       what, n->spec, n->solved, restarts, b->loss, b->y[0], b->y[1], b->y[2], b->y[3]);
}

static int write_files(const char *dir, const int tables[4][4], const ex_xor *x,
		       const ex_xor_opts *o)
{
	FILE *f = demo_create(dir, "gates.csv");
	if (!f)
		return -1;
	fprintf(f, "x1,x2,and,nand,or,xor\n");
	for (int i = 0; i < 4; i++)
		fprintf(f, "%g,%g,%d,%d,%d,%d\n", ex_gate_in[i][0], ex_gate_in[i][1], tables[0][i],
			tables[1][i], tables[2][i], tables[3][i]);
	if (demo_close(f, dir, "gates.csv"))
		return -1;

	if (!(f = demo_create(dir, "xor_grid.csv")))
		return -1;
	fprintf(f, "x1,x2,one_layer,two_layers\n");
	for (int i = 0; i < EX_XOR_GRID; i++) {
		for (int j = 0; j < EX_XOR_GRID; j++)
			fprintf(f, "%.4f,%.4f,%.6f,%.6f\n", ex_xor_grid_point(i),
				ex_xor_grid_point(j), x->one.grid[i][j], x->two.grid[i][j]);
		fprintf(f, "\n"); /* gnuplot: one scan line per x1 */
	}
	if (demo_close(f, dir, "xor_grid.csv"))
		return -1;

	if (!(f = demo_create(dir, "xor_loss.csv")))
		return -1;
	fprintf(f, "step,one_layer,two_layers\n");
	for (int s = 0; s < o->steps; s++)
		fprintf(f, "%d,%.6g,%.6g\n", s, x->one.curve[s], x->two.curve[s]);
	if (demo_close(f, dir, "xor_loss.csv"))
		return -1;

	FILE *gp = demo_create(dir, "gates.gp");
	if (!gp)
		return -1;
	demo_gp_begin(gp, "gates", 1350, 430);
	fprintf(gp,
		"$xor << EOD\nx1,x2,xor\n0,0,0\n1,1,0\n1,0,1\n0,1,1\nEOD\n"
		"set multiplot layout 1,3 title 'XOR learned with tg\\_backward: "
		"binary cross-entropy, Adam lr %g, %d steps, best of %d starts; filled dots: XOR = 1'\n"
		"set xrange [-0.25:1.25]\n"
		"set yrange [-0.25:1.25]\n"
		"set size ratio -1\n"
		"set cbrange [0:1]\n"
		"set palette defined (0 '#2166ac', 0.5 '#f7f7f7', 1 '#b2182b')\n"
		"set xlabel 'x1'\n"
		"set ylabel 'x2'\n"
		"set key off\n"
		"set title \"one layer (2-1): sigmoid(w.x + b)\\nsolved in %d of %d starts\"\n"
		"plot 'xor_grid.csv' using 1:2:3 with image, \\\n"
		"     $xor using 1:2:($3 > 0.5 ? 7 : 6) with points pt variable ps 2.5 lc rgb 'black'\n"
		"set title \"two layers (2-2-1), sigmoid hidden layer\\nsolved in %d of %d starts\"\n"
		"plot 'xor_grid.csv' using 1:2:4 with image, \\\n"
		"     $xor using 1:2:($3 > 0.5 ? 7 : 6) with points pt variable ps 2.5 lc rgb 'black'\n"
		"set size noratio\n"
		"unset colorbox\n"
		"set autoscale\n"
		"set yrange [0:*]\n"
		"set xlabel 'step'\n"
		"set ylabel 'binary cross-entropy'\n"
		"set key center right\n"
		"set title 'loss of the best start (ln 2 = 0.693: 0.5 everywhere)'\n"
		"plot 'xor_loss.csv' using 1:2 with lines lw 2 title 'one layer (2-1)', \\\n"
		"     'xor_loss.csv' using 1:3 with lines lw 2 title 'two layers (2-2-1)', \\\n"
		"     log(2) with lines dt 2 lc rgb 'gray' title 'ln 2'\n"
		"unset multiplot\n",
		o->lr, o->steps, o->restarts, x->one.solved, o->restarts, x->two.solved,
		o->restarts);
	return demo_close(gp, dir, "gates.gp");
}

int main(int argc, char **argv)
{
	demo_plot cli = demo_plot_args(argc, argv, "gates",
					"seed 003's perceptron gates, and XOR with one layer and two",
					"3 restarts of the XOR nets instead of 10");

	char err[EX_ERR];
	const ex_gate *g[3] = { &ex_and, &ex_nand, &ex_or };
	const int *want[4] = { seed_and, seed_nand, seed_or, seed_xor };
	int tables[4][4];
	for (int k = 0; k < 3; k++)
		if (ex_gate_eval(g[k], ex_gate_in, tables[k], err))
			goto out_fail;
	if (ex_xor_by_gates(tables[3], err))
		goto out_fail;
	printf("perceptrons y = [w1 x1 + w2 x2 + b > 0], inputs x1 x2 -> y:\n");
	bool same = true;
	for (int k = 0; k < 4; k++)
		same = show_gate(k < 3 ? g[k]->name : "XOR", tables[k], want[k], k < 3 ? g[k] : NULL) &&
		       same;

	ex_xor_opts o = ex_xor_defaults();
	if (cli.quick)
		o.restarts = 3;
	ex_xor *x = calloc(1, sizeof *x);
	if (!x || ex_xor_run_all(&o, x, err)) {
		free(x);
		goto out_fail;
	}
	printf("\nXOR learned (binary cross-entropy, Adam lr %g, %d steps, %d random starts):\n",
	       o.lr, o.steps, o.restarts);
	show_net("one layer ", &x->one, o.restarts);
	show_net("two layers", &x->two, o.restarts);
	printf("One layer cannot: its decision boundary w.x + b = 0 is a line, and no line "
	       "separates XOR's 1s from its 0s; its best loss is ln 2 = %.4f (0.5 everywhere). "
	       "A hidden layer bends the boundary, as NAND and OR feeding AND do.\n",
	       log(2));

	int rc = write_files(cli.out, (const int(*)[4])tables, x, &o) ||
		 demo_render(cli.out, "gates") < 0;
	free(x);
	return demo_end("gates", rc || !same ? 1 : 0);

out_fail:
	fprintf(stderr, "gates: %s\n", err);
	return 1;
}

#endif /* EX_NO_MAIN */
