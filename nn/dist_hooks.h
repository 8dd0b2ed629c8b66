/*
 * dist_hooks.h - how tg_fit reaches a tg_dist without linking MPI: every
 * tg_dist begins with a pointer to this table of its functions, so a
 * program that never calls tg_dist_new pulls no MPI symbol in with the
 * training loop (a static libtapegrad.a links without -lmpi). Shared by
 * nn/train.c and nn/dist.c only; not installed.
 */
#ifndef TG_DIST_HOOKS_H
#define TG_DIST_HOOKS_H

#include "tapegrad_dist.h"

typedef struct tg_dist_hooks {
	int (*rank)(const tg_dist *d);
	int (*size)(const tg_dist *d);
	int (*step_begin)(tg_dist *d);
	int (*loss)(tg_dist *d, double loss, int64_t n, bool failed, double *global,
		    double *seed);
	int (*step_end)(tg_dist *d, bool failed);
	int (*sum)(tg_dist *d, double *v, size_t n);
	/* An epoch's end: -1 on every rank when any failed (failed: this
	 * one), the others naming the lowest; else 1 when every rank goes on,
	 * 0 when any stops. */
	int (*epoch_end)(tg_dist *d, const char *who, bool failed, bool go);
	int (*sync_rng)(tg_dist *d);
	void (*fork_rng)(tg_dist *d);
	int (*sync_buffers)(tg_dist *d);
	/* tg_fit's start: every rank's setup worked (failed: this one's did
	 * not) and its v[0..n) equal rank 0's; else -1 on every rank, naming
	 * the lowest rank that failed or the first of names that differs,
	 * with both values, each said by label(name, value) when it gives a
	 * word (label may be NULL). */
	int (*same_run)(tg_dist *d, const char *who, bool failed, const double *v,
			const char *const *names, const char *(*label)(const char *name, double v),
			size_t n);
	/* The module tg_dist_attach took; NULL: none. */
	const tg_module *(*model)(const tg_dist *d);
	/* The batch-norm layers of the attached model that tg_dist_sync_bn
	 * made global: the ranks' must agree, as each all-reduces. */
	size_t (*synced_bn)(const tg_dist *d);
	/* The context's error is every rank's (one they all found in the
	 * global batch's loss): tg_dist_free may then finalise, not abort. */
	void (*told)(tg_dist *d);
} tg_dist_hooks;

/* At most elems (1 .. INT_MAX, the default) elements per MPI call; a
 * larger transfer goes in pieces. Before tg_dist_attach; for tests, which
 * cannot afford a tensor of 2^31 elements. */
void tg_dist_set_chunk(tg_dist *d, size_t elems);

/* d's table: the first member of every tg_dist. */
static inline const tg_dist_hooks *tg_dist_hooks_of(const tg_dist *d)
{
	return *(const tg_dist_hooks *const *)(const void *)d;
}

#endif /* TG_DIST_HOOKS_H */
