/*
 * gates.c - seed 003's perceptrons: AND (w 0.5, 0.5, b -0.7), NAND (-0.5,
 * -0.5, 0.7) and OR (0.5, 0.5, -0.2) with a step activation, and XOR as
 * AND(NAND, OR); then XOR learned: a single sigmoid unit (2-1) cannot, a
 * 2-2-1 sigmoid net can.
 *
 * The gates' weighted sums are computed by the engine (x @ w + b); the nets
 * are trained with gradients from tg_backward (binary cross-entropy, Adam).
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
	FILE *f = ex_create(dir, "gates.csv");
	if (!f)
		return -1;
	fprintf(f, "x1,x2,and,nand,or,xor\n");
	for (int i = 0; i < 4; i++)
		fprintf(f, "%g,%g,%d,%d,%d,%d\n", ex_gate_in[i][0], ex_gate_in[i][1], tables[0][i],
			tables[1][i], tables[2][i], tables[3][i]);
	if (ex_close(f, dir, "gates.csv"))
		return -1;

	if (!(f = ex_create(dir, "xor_grid.csv")))
		return -1;
	fprintf(f, "x1,x2,one_layer,two_layers\n");
	for (int i = 0; i < EX_XOR_GRID; i++) {
		for (int j = 0; j < EX_XOR_GRID; j++)
			fprintf(f, "%.4f,%.4f,%.6f,%.6f\n", ex_xor_grid_point(i),
				ex_xor_grid_point(j), x->one.grid[i][j], x->two.grid[i][j]);
		fprintf(f, "\n"); /* gnuplot: one scan line per x1 */
	}
	if (ex_close(f, dir, "xor_grid.csv"))
		return -1;

	if (!(f = ex_create(dir, "xor_loss.csv")))
		return -1;
	fprintf(f, "step,one_layer,two_layers\n");
	for (int s = 0; s < o->steps; s++)
		fprintf(f, "%d,%.6g,%.6g\n", s, x->one.curve[s], x->two.curve[s]);
	if (ex_close(f, dir, "xor_loss.csv"))
		return -1;

	FILE *gp = ex_create(dir, "gates.gp");
	if (!gp)
		return -1;
	ex_gp_begin(gp, "gates", 1350, 430);
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
	return ex_close(gp, dir, "gates.gp");
}

int main(int argc, char **argv)
{
	ex_cli cli;
	int p = ex_cli_parse(argc, argv, "gates",
			     "seed 003's perceptron gates, and XOR with one layer and two", &cli);
	if (p)
		return p > 0 ? 0 : 2;

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
		 ex_render(cli.out, "gates") < 0;
	free(x);
	return rc || !same ? 1 : 0;

out_fail:
	fprintf(stderr, "gates: %s\n", err);
	return 1;
}
