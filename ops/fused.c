/*
 * fused.c - the shared shape of the fused backward ops (fused.h): the
 * check of dout against the saved tensor, and the one pass split across
 * the context's threads.
 */
#include "fused.h"
#include "parallel.h"

typedef struct fused_job {
	tg_fused_f64 k64;
	tg_fused_f32 k32;
	const void *D, *X;
	void *O;
	double a;
	bool d_uniform;
} fused_job;

static void fused_part(void *arg, size_t lo, size_t hi)
{
	const fused_job *j = arg;
	if (j->d_uniform) {
		if (j->k64)
			TG_UNIFORM_RUNS(double, j->D, lo, hi,
					j->k64(tg_d, (const double *)j->X + tg_i,
					       (double *)j->O + tg_i, tg_m, j->a));
		else
			TG_UNIFORM_RUNS(float, j->D, lo, hi,
					j->k32(tg_d, (const float *)j->X + tg_i,
					       (float *)j->O + tg_i, tg_m, j->a));
		return;
	}
	if (j->k64)
		j->k64((const double *)j->D + lo, (const double *)j->X + lo, (double *)j->O + lo,
		       hi - lo, j->a);
	else
		j->k32((const float *)j->D + lo, (const float *)j->X + lo, (float *)j->O + lo,
		       hi - lo, j->a);
}

void tg_fused_run(const tg_ctx *ctx, tg_dtype dt, size_t n, const void *D, bool d_uniform,
		  const void *X, void *O, tg_fused_f64 k64, tg_fused_f32 k32, size_t min, double a)
{
	fused_job j = { dt == TG_F64 ? k64 : NULL, k32, D, X, O, a, d_uniform && n > 0 };
	tg_parallel_for(ctx, n, min, 16, fused_part, &j);
}

tg_tensor *tg_fused_out(const char *who, tg_tensor *const *in, const char *t)
{
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	if (!tg_same_shape(in[0], in[1])) {
		char sa[TG_SHAPE_STR], sb[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: dout %s and %s %s must have the same shape", who,
			       tg_shape_fmt(in[0]->ndim, in[0]->shape, sa), t,
			       tg_shape_fmt(in[1]->ndim, in[1]->shape, sb));
	}
	return tg_tensor_like(in[1], who);
}
