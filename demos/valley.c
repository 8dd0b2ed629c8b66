/*
 * valley.c - the book's optimizers on a valley (chapter 6): f(x, y) =
 * x^2 / 20 + y^2 from (-7, 2), 30 steps each of SGD (lr 0.95), Momentum
 * (0.1), AdaGrad (1.5) and Adam (0.3).
 *
 * x and y are scalar parameters; f is a graph of ops, its gradient comes
 * from tg_backward and each step from tg_optim_step. The loop is written
 * out (ex_valley_run, six lines) rather than run by tg_train: there is no
 * net and no data set, only a function of two numbers, and the experiment
 * records the position after every step.
 *
 * Prints where each optimizer ended and how it got there, writes valley.csv
 * (the paths) and valley.gp, and draws valley.png: the four paths over f's
 * contours.
 *
 *	valley [--out DIR]
 */
#include "experiments.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- 1. optimizers on a valley: f(x, y) = x^2 / 20 + y^2 ------------------------------ */

ex_valley_opts ex_valley_defaults(void)
{
	return (ex_valley_opts){
		.x0 = -7,
		.y0 = 2,
		.steps = 30,
		.kind = { TG_SGD, TG_MOMENTUM, TG_ADAGRAD, TG_ADAM },
		.lr = { 0.95, 0.1, 1.5, 0.3 },
	};
}

double ex_valley_f(double x, double y)
{
	return x * x / 20 + y * y;
}

/* f as a graph of ops on the scalar parameters x and y */
static tg_tensor *valley(tg_tensor *x, tg_tensor *y)
{
	return tg_add(tg_mul_scalar(tg_pow(x, 2), 1.0 / 20), tg_pow(y, 2));
}

int ex_valley_run(const ex_valley_opts *o, ex_valley *out, char *err)
{
	if (o->steps < 1 || o->steps > EX_VALLEY_MAX_STEPS)
		return ex_fail(err, "valley: steps %d outside 1..%d", o->steps, EX_VALLEY_MAX_STEPS);
	out->steps = o->steps;
	for (int k = 0; k < EX_VALLEY_OPTIMS; k++) {
		const char *name = tg_optim_name(o->kind[k]);
		tg_ctx *ctx = tg_ctx_new(1);
		if (!ctx)
			return ex_fail(err, "valley, %s: out of memory", name);
		tg_tensor *p[2] = {
			tg_set_name(tg_param(tg_scalar(ctx, TG_F64, o->x0)), "x"),
			tg_set_name(tg_param(tg_scalar(ctx, TG_F64, o->y0)), "y"),
		};
		tg_optim_opts oo = tg_optim_defaults(o->kind[k]);
		oo.lr = o->lr[k];
		tg_optim *opt = tg_optim_new(ctx, p, 2, &oo);
		for (int i = 0; opt && tg_ok(ctx); i++) {
			out->x[k][i] = tg_item(p[0]);
			out->y[k][i] = tg_item(p[1]);
			if (i == o->steps)
				break;
			tg_tensor *f = valley(p[0], p[1]);
			tg_optim_zero_grad(opt);
			tg_backward(f);
			tg_optim_step(opt);
			tg_reset(ctx);
		}
		int rc = tg_ok(ctx) ? 0 : ex_fail(err, "valley, %s: %s", name, tg_error(ctx));
		tg_optim_free(opt);
		tg_ctx_free(ctx);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- the demo ---------------------------------------------------------------------------- */

#ifndef EX_NO_MAIN

static const char *const title[EX_VALLEY_OPTIMS] = { "SGD", "Momentum", "AdaGrad", "Adam" };

static int write_csv(const char *dir, const ex_valley *v)
{
	FILE *f = demo_create(dir, "valley.csv");
	if (!f)
		return -1;
	fprintf(f, "step,sgd_x,sgd_y,momentum_x,momentum_y,adagrad_x,adagrad_y,adam_x,adam_y\n");
	for (int i = 0; i <= v->steps; i++) {
		fprintf(f, "%d", i);
		for (int k = 0; k < EX_VALLEY_OPTIMS; k++)
			fprintf(f, ",%.10g,%.10g", v->x[k][i], v->y[k][i]);
		fprintf(f, "\n");
	}
	return demo_close(f, dir, "valley.csv");
}

static int write_gp(const char *dir, const ex_valley_opts *o)
{
	FILE *gp = demo_create(dir, "valley.gp");
	if (!gp)
		return -1;
	demo_gp_begin(gp, "valley", 1000, 760);
	fprintf(gp,
		"f(x, y) = x**2 / 20 + y**2\n"
		"set xrange [-10:10]\n"
		"set yrange [-5:5]\n"
		"set isosamples 120, 120\n"
		"set contour base\n"
		"set cntrparam levels discrete 0.25, 1, 2.25, 4, 6.25, 9, 12.25, 16, 20.25, 25\n"
		"unset clabel\n"
		"set view map\n"
		"set key off\n"
		"set xlabel 'x'\n"
		"set ylabel 'y'\n"
		"set label 1 '' at 0, 0, 0 point pt 3 ps 2 lc rgb 'black' front\n"
		"set multiplot layout 2,2 title 'f(x, y) = x^2/20 + y^2 from (%g, %g), "
		"%d steps; gradients by tg\\_backward'\n",
		o->x0, o->y0, o->steps);
	for (int k = 0; k < EX_VALLEY_OPTIMS; k++)
		fprintf(gp,
			"set title '%s (lr %g)'\n"
			"splot f(x, y) nosurface lc rgb '#b0b0b0', \\\n"
			"      'valley.csv' using %d:%d:(0) nocontours with linespoints "
			"lc rgb '#d62728' pt 7 ps 0.6\n",
			title[k], o->lr[k], 2 + 2 * k, 3 + 2 * k);
	fprintf(gp, "unset multiplot\n");
	return demo_close(gp, dir, "valley.gp");
}

int main(int argc, char **argv)
{
	demo_plot cli = demo_plot_args(argc, argv, "valley",
					"the book's four optimizers on f(x, y) = x^2/20 + y^2",
					NULL);

	ex_valley_opts o = ex_valley_defaults();
	ex_valley *v = malloc(sizeof *v);
	char err[EX_ERR];
	if (!v || ex_valley_run(&o, v, err)) {
		fprintf(stderr, "valley: %s\n", v ? err : "out of memory");
		free(v);
		return 1;
	}

	printf("f(x, y) = x^2/20 + y^2 from (%g, %g), f = %.4g; the minimum is f(0, 0) = 0\n",
	       o.x0, o.y0, ex_valley_f(o.x0, o.y0));
	printf("%-9s %5s  %21s  %10s  %s\n", "optimizer", "lr", "after 30 steps (x, y)", "f",
	       "y changed sign (zigzags across the valley)");
	int best = 0;
	for (int k = 0; k < EX_VALLEY_OPTIMS; k++) {
		int flips = 0;
		for (int i = 1; i <= v->steps; i++)
			flips += (v->y[k][i] > 0) != (v->y[k][i - 1] > 0);
		double fk = ex_valley_f(v->x[k][v->steps], v->y[k][v->steps]);
		printf("%-9s %5g  (%9.4f, %9.4f)  %10.3g  %d of %d steps\n", title[k], o.lr[k],
		       v->x[k][v->steps], v->y[k][v->steps], fk, flips, v->steps);
		if (fk < ex_valley_f(v->x[best][v->steps], v->y[best][v->steps]))
			best = k;
	}
	printf("closest to the minimum after %d steps: %s. SGD's steep y-gradient makes it "
	       "zigzag while x creeps; Momentum rolls like a ball, AdaGrad shrinks its y-steps, "
	       "Adam does both (the book's figure 6-8).\n",
	       v->steps, title[best]);

	int rc = write_csv(cli.out, v) || write_gp(cli.out, &o) || demo_render(cli.out, "valley") < 0;
	free(v);
	return demo_end("valley", rc ? 1 : 0);
}

#endif /* EX_NO_MAIN */
