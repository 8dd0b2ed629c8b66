/*
 * optim_driver.c - runs the optimizer steps check_optim.py writes through
 * tg_optim (and a tg_schedule, and a checkpoint mid-run), and prints the
 * parameters after each step, for comparison with torch.optim.
 *
 * Input (stdin): cases until the end, each whitespace-separated:
 *	case <kind> <dtype 32|64> <lr> <momentum> <rho> <beta1> <beta2> <eps>
 *	<weight_decay> <clip_norm> <nparams> <nsteps> <schedule> <T>
 *	<steps_per_epoch> <resume_after>
 *	nparams times: <decay 0..3> <numel> <values...>
 *	<schedule> not "none": one validation loss per epoch (the loss after
 *	that epoch, which plateau reads at the next)
 *	nsteps times, nparams times: "-" (the parameter is not in this step's
 *	loss: no gradient reaches it) or its gradient (numel values)
 * kind is a tg_optim_parse name; schedule "none" or a tg_schedule_parse
 * string with base lr <lr> and T epochs, whose rate is set before the first
 * step of each epoch (epoch e: steps e*steps_per_epoch...). decay: bit 0
 * marks the parameter (tg_set_decay), bit 1 turns that mark over with
 * tg_optim_set_decay. A gradient reaches the optimizer as the leaf gradient
 * of sum(p * G), which is G exactly. resume_after k > 0: after step k the
 * run is saved to a checkpoint (parameters, optimizer state and counts,
 * schedule position), and goes on in a new context from that file alone:
 * optim_driver.<pid>.ckpt in the directory argv[1] (/tmp without it).
 *
 * Output per case: after each step s (from 1) "step <s> <lr used>" and one
 * line per parameter, its values as %.17g; then "end". "error <message>"
 * and exit status 1 on a failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

#include "driver_io.h"

enum { MAX_PARAMS = 16 };

typedef struct run {
	tg_ctx *ctx;
	tg_tensor *p[MAX_PARAMS];
	tg_optim *opt;
	tg_schedule sch;
	bool scheduled;
} run;

typedef struct spec {
	tg_optim_opts o;
	tg_dtype dt;
	char sched[128];
	long long t_max, spe, resume;
	int np;
	int decay[MAX_PARAMS];
	int64_t numel[MAX_PARAMS];
} spec;

/* A context with np parameters p<i> of the values v[i] (zeros when v is
 * NULL), an optimizer over them and the schedule. 0 ok. */
static int start(run *r, const spec *c, double *const *v)
{
	r->ctx = tg_ctx_new(1);
	if (!r->ctx)
		return fail(NULL, "out of memory");
	for (int i = 0; i < c->np; i++) {
		char name[16];
		snprintf(name, sizeof name, "p%d", i);
		tg_tensor *t = v ? tg_from_f64(r->ctx, c->dt, 1, &c->numel[i], v[i])
				 : tg_zeros(r->ctx, c->dt, 1, &c->numel[i]);
		r->p[i] = tg_set_name(tg_set_decay(tg_param(t), c->decay[i] & 1), name);
	}
	r->opt = tg_optim_new(r->ctx, r->p, (size_t)c->np, &c->o);
	if (!r->opt)
		return fail(r->ctx, "tg_optim_new");
	for (int i = 0; i < c->np; i++)
		if (c->decay[i] & 2)
			tg_optim_set_decay(r->opt, (size_t)i, !(c->decay[i] & 1));
	r->scheduled = strcmp(c->sched, "none") != 0;
	if (r->scheduled && tg_schedule_parse(r->ctx, c->sched, c->o.lr, c->t_max, &r->sch))
		return fail(r->ctx, "tg_schedule_parse");
	return tg_ok(r->ctx) ? 0 : fail(r->ctx, "the start");
}

static void stop(run *r)
{
	tg_optim_free(r->opt);
	tg_ctx_free(r->ctx);
	r->opt = NULL;
	r->ctx = NULL;
}

/* Saves r to path, frees it, and makes it again from the file alone. */
static int save_and_resume(run *r, const spec *c, const char *path)
{
	size_t ns;
	tg_tensor *const *st = tg_optim_state(r->opt, &ns);
	tg_state *s = tg_state_new(r->ctx);
	double pos[TG_SCHEDULE_STATE];
	if (!s || tg_state_add(s, r->p, (size_t)c->np) || (ns && tg_state_add(s, st, ns)) ||
	    tg_state_optim(s, r->opt))
		return fail(r->ctx, "the state");
	if (r->scheduled && (tg_schedule_state(&r->sch, pos, TG_SCHEDULE_STATE) < 0 ||
			     tg_state_set_f64(s, "schedule", pos, TG_SCHEDULE_STATE)))
		return fail(r->ctx, "the schedule's state");
	if (tg_checkpoint_save_state(r->ctx, path, s))
		return fail(r->ctx, "tg_checkpoint_save_state");
	tg_state_free(s);
	stop(r);

	if (start(r, c, NULL)) {
		unlink(path);
		return 1;
	}
	tg_tensor *all[3 * MAX_PARAMS];
	memcpy(all, r->p, (size_t)c->np * sizeof *all);
	st = tg_optim_state(r->opt, &ns);
	if (ns)
		memcpy(all + c->np, st, ns * sizeof *all);
	int rc = tg_checkpoint_read(r->ctx, path, &s);
	unlink(path); /* on failure too */
	/* non-finite values load too: a huge gradient leaves inf in h or v */
	unsigned flags = TG_CHECKPOINT_STRICT | TG_CHECKPOINT_NONFINITE;
	if (rc || tg_state_load_into(s, all, (size_t)c->np + ns, flags, NULL, 0) < 0 ||
	    tg_state_restore_optim(s, r->opt))
		return fail(r->ctx, "the resume");
	if (r->scheduled && (tg_state_f64(s, "schedule", pos, TG_SCHEDULE_STATE) !=
				     TG_SCHEDULE_STATE ||
			     tg_schedule_set_state(r->ctx, &r->sch, pos, TG_SCHEDULE_STATE)))
		return fail(r->ctx, "the schedule's resume");
	tg_state_free(s);
	return 0;
}

/* A gradient: NULL for "-", else numel values into buf. -1 on bad input. */
static int read_grad(double *buf, int64_t numel, bool *none)
{
	char tok[64];
	if (scanf("%63s", tok) != 1)
		return -1;
	*none = !strcmp(tok, "-");
	if (*none)
		return 0;
	char *end;
	buf[0] = strtod(tok, &end);
	if (*end)
		return -1;
	return read_doubles(buf + 1, (size_t)numel - 1);
}

static int one_case(const char *path)
{
	spec c;
	char kind_name[32];
	int dtype;
	if (scanf("%31s %d %lf %lf %lf %lf %lf %lf %lf %lf %d", kind_name, &dtype, &c.o.lr,
		  &c.o.momentum, &c.o.rho, &c.o.beta1, &c.o.beta2, &c.o.eps, &c.o.weight_decay,
		  &c.o.clip_norm, &c.np) != 11 ||
	    c.np < 1 || c.np > MAX_PARAMS || (dtype != 32 && dtype != 64))
		return fail(NULL, "the header");
	long long nsteps;
	if (scanf("%lld %127s %lld %lld %lld", &nsteps, c.sched, &c.t_max, &c.spe, &c.resume) !=
		    5 ||
	    nsteps < 0 || c.spe < 1)
		return fail(NULL, "the header's steps");
	c.dt = dtype == 32 ? TG_F32 : TG_F64;
	tg_ctx *pctx = tg_ctx_new(1);
	if (tg_optim_parse(pctx, kind_name, &c.o.kind))
		return fail(pctx, "tg_optim_parse");
	tg_ctx_free(pctx);
	double *v[MAX_PARAMS] = { 0 };
	for (int i = 0; i < c.np; i++) {
		long long n;
		if (scanf("%d %lld", &c.decay[i], &n) != 2 || n < 1 || n > 1 << 20)
			return fail(NULL, "a parameter");
		c.numel[i] = n;
		v[i] = malloc((size_t)n * sizeof *v[i]);
		if (!v[i] || read_doubles(v[i], (size_t)n))
			return fail(NULL, "a parameter's values");
	}
	long long nepochs = (nsteps + c.spe - 1) / c.spe;
	double *loss = NULL;
	if (strcmp(c.sched, "none") != 0) {
		loss = malloc(((size_t)nepochs + 1) * sizeof *loss);
		if (!loss || read_doubles(loss, (size_t)nepochs))
			return fail(NULL, "the validation losses");
	}
	run r;
	if (start(&r, &c, v))
		return 1;
	for (int i = 0; i < c.np; i++)
		free(v[i]);
	double *buf = NULL;
	for (long long s = 0; s < nsteps; s++) {
		if (r.scheduled && s % c.spe == 0) {
			long long e = s / c.spe;
			tg_optim_set_lr(r.opt, tg_schedule_lr(&r.sch, e, e ? loss[e - 1] : NAN));
		}
		tg_optim_zero_grad(r.opt);
		tg_tensor *l = NULL;
		for (int i = 0; i < c.np; i++) {
			bool none;
			buf = realloc(buf, (size_t)c.numel[i] * sizeof *buf);
			if (!buf || read_grad(buf, c.numel[i], &none))
				return fail(NULL, "a gradient");
			if (none)
				continue;
			tg_tensor *g = tg_from_f64(r.ctx, c.dt, 1, &c.numel[i], buf);
			tg_tensor *term = tg_sum(tg_mul(r.p[i], g));
			l = l ? tg_add(l, term) : term;
		}
		if ((l && tg_backward(l)) || tg_optim_step(r.opt))
			return fail(r.ctx, "a step");
		printf("step %lld %.17g\n", s + 1, tg_optim_lr(r.opt));
		for (int i = 0; i < c.np; i++) {
			for (int64_t j = 0; j < c.numel[i]; j++)
				printf("%s%.17g", j ? " " : "", tg_get(r.p[i], j));
			printf("\n");
		}
		tg_reset(r.ctx);
		if (s + 1 == c.resume && s + 1 < nsteps) {
			if (save_and_resume(&r, &c, path))
				return 1;
			/* mid-epoch, the rate the schedule's position holds */
			if (r.scheduled && (s + 1) % c.spe)
				tg_optim_set_lr(r.opt, tg_schedule_lr(&r.sch, (s + 1) / c.spe, NAN));
		}
	}
	printf("end\n");
	free(buf);
	free(loss);
	stop(&r);
	return 0;
}

int main(int argc, char **argv)
{
	char path[4096], word[16];
	snprintf(path, sizeof path, "%s/optim_driver.%ld.ckpt", argc > 1 ? argv[1] : "/tmp",
		 (long)getpid());
	while (scanf("%15s", word) == 1) {
		if (strcmp(word, "case") != 0)
			return fail(NULL, "a case");
		if (one_case(path))
			return 1;
	}
	return 0;
}
