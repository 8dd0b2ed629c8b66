/*
 * dist_none.c - tapegrad_dist.h in a build without MPI: tg_dist_new says
 * so, and as no tg_dist can be made, the rest answers for a single process
 * (rank 0 of 1) or refuses as dist.c refuses a NULL tg_dist (-1, NULL; a
 * message where an argument reaches a context). Built instead of dist.c when meson finds no MPI
 * (or -Dmpi=disabled).
 */
#include "tapegrad.h"
#include "tapegrad_dist.h"

#include <math.h>
#include <stddef.h>

tg_dist_opts tg_dist_defaults(void)
{
	return (tg_dist_opts){ .bucket_bytes = 25u << 20, .timeout = 60 };
}

bool tg_dist_available(void)
{
	return false;
}

tg_dist *tg_dist_new(tg_ctx *ctx, int *argc, char ***argv, const tg_dist_opts *opts)
{
	(void)argc, (void)argv, (void)opts;
	if (!ctx || !tg_ok(ctx))
		return NULL;
	return tg_fail(ctx, TG_EARG,
		       "tg_dist_new: this tapegrad was built without MPI; install an MPI for C "
		       "(Debian: libopenmpi-dev) and set up the build again (meson setup "
		       "-Dmpi=enabled)");
}

void tg_dist_free(tg_dist *d) { (void)d; }
int tg_dist_rank(const tg_dist *d) { (void)d; return 0; }
int tg_dist_size(const tg_dist *d) { (void)d; return 1; }
int tg_dist_sync_buffers(tg_dist *d) { (void)d; return -1; }
int tg_dist_sum(tg_dist *d, double *v, size_t n) { (void)d, (void)v, (void)n; return -1; }
int tg_dist_agree(tg_dist *d, bool go) { (void)d, (void)go; return -1; }
int tg_dist_sync_rng(tg_dist *d) { (void)d; return -1; }
void tg_dist_fork_rng(tg_dist *d) { (void)d; }
int tg_dist_step_begin(tg_dist *d) { (void)d; return -1; }
int tg_dist_step_end(tg_dist *d, bool failed) { (void)d, (void)failed; return -1; }
void tg_dist_stats_get(const tg_dist *d, tg_dist_stats *out) { (void)d; if (out) *out = (tg_dist_stats){ 0 }; }
void tg_dist_stats_clear(tg_dist *d) { (void)d; }

/* d is NULL here, as no tg_dist can be made: said as dist.c says it,
 * where an argument reaches a context. */
static int no_dist(tg_ctx *ctx, const char *fn)
{
	if (ctx && tg_ok(ctx))
		tg_fail(ctx, TG_ENULL, "%s: the tg_dist is NULL", fn);
	return -1;
}

int tg_dist_attach(tg_dist *d, tg_module *m)
{
	(void)d;
	return no_dist(m ? m->ctx : NULL, "tg_dist_attach");
}

int tg_dist_sync_bn(tg_dist *d, tg_module *m)
{
	(void)d;
	return no_dist(m ? m->ctx : NULL, "tg_dist_sync_bn");
}

int tg_dist_broadcast(tg_dist *d, tg_tensor *const *t, size_t n)
{
	(void)d;
	return no_dist(t && n > 0 ? tg_ctx_of(t[0]) : NULL, "tg_dist_broadcast");
}

tg_tensor *tg_dist_allreduce(tg_dist *d, tg_tensor *x)
{
	(void)d;
	if (x && tg_ok(tg_ctx_of(x)))
		tg_fail(tg_ctx_of(x), TG_ENULL, "tg_dist_allreduce: the tg_dist is NULL");
	return NULL;
}

int tg_dist_loss(tg_dist *d, double loss, int64_t n, bool failed, double *global, double *seed)
{
	(void)d, (void)loss, (void)n, (void)failed;
	if (global)
		*global = NAN;
	if (seed)
		*seed = 0;
	return -1;
}
