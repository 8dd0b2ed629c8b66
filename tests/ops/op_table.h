/*
 * op_table.h - the one table of every built-in op with sample inputs.
 *
 * A row names an op (its descriptor name, as registered with
 * TG_OP_REGISTER), the function that applies it, how its inputs are drawn
 * and the shape variants to try. The gradient checks walk this table, and a
 * registered op without a row fails the suite.
 */
#ifndef TG_OP_TABLE_H
#define TG_OP_TABLE_H

#include "tapegrad.h"

enum { OP_MAX_VARIANTS = 16 }; /* the last entry stays empty: it ends the list */

/* How an input's values are drawn: away from the points where an op has a
 * kink or is undefined, so central differences are meaningful. */
typedef enum {
	GEN_ANY,       /* uniform [-2, 2) */
	GEN_AWAY,      /* |x| in [0.2, 2), random sign: away from 0 */
	GEN_POS,       /* uniform [0.5, 2): log, sqrt, denominators */
	GEN_PROB,      /* uniform [0.1, 0.9): a sigmoid output */
	/* maximum, minimum: shuffled ladders offset by half a rung, so no pair
	 * ties and, broadcast either way, each input wins somewhere */
	GEN_GRID,      /* 0.4 (i - n/2), i a permutation of 0..n-1 */
	GEN_GRID_HALF, /* 0.4 (i - n/2) + 0.2 */
	GEN_DISTINCT,  /* values at least 0.2 apart: no ties for max */
} op_gen;

typedef struct op_shape {
	int ndim;
	int64_t dim[TG_MAX_DIMS];
} op_shape;

typedef struct op_variant {
	const char *name;         /* NULL ends a row's list */
	op_shape in[TG_MAX_INPUTS];
	op_shape to;              /* target shape: sum_to, expand, reshape */
	double arg[3];            /* attributes: axis, keepdim, alpha, p, flags */
} op_variant;

typedef struct op_row {
	const char *op;           /* the descriptor's name */
	tg_fn fn;                 /* applies the op; user is the op_variant */
	int nin;
	op_gen gen[TG_MAX_INPUTS];
	bool twice;               /* the second-order check is meaningful */
	op_variant v[OP_MAX_VARIANTS];
} op_row;

extern const op_row op_table[];
extern const size_t op_table_len;

/* The row of the op with this descriptor name, or NULL. */
const op_row *op_table_find(const char *name);

/* Draws the inputs of variant v as f64 step tensors in in[0..r->nin), from
 * ctx's generator. Every value is exactly representable in f32, so an f32
 * copy holds the same values. Returns 0, or -1 with the context's error. */
int op_table_inputs(tg_ctx *ctx, const op_row *r, const op_variant *v, tg_tensor **in);

/* Applies the op of row r, variant v, to in. */
tg_tensor *op_table_apply(const op_row *r, const op_variant *v, tg_tensor *const *in);

#endif
