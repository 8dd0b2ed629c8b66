/*
 * gen_seeds.c - writes the seed corpora of the fuzz targets into
 * tests/fuzz/corpus/<target>/: expression and op programs, IDX and CSV
 * files, real checkpoints (saved with tg_checkpoint_save) and command
 * lines.
 *
 * The corpora are committed; this program is how they were made and how to
 * make them again after a change of an input format:
 *
 *	tests/fuzz/run --seeds
 *
 * Each seed is meaningful on its own: a two-layer net with its backward
 * pass, a second-order gradient, a valid gzipped IDX pair, an iris-shaped
 * CSV, the checkpoint of a model. The fuzzer mutates from there.
 */
#define _GNU_SOURCE
#include "tapegrad.h"
#include "tapegrad_io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char *root = "tests/fuzz/corpus";

static void die(const char *what)
{
	fprintf(stderr, "gen_seeds: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void write_seed(const char *target, const char *name, const void *p, size_t n)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", root, target);
	mkdir(root, 0755);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f))
		die(path);
}

/* ---- a byte buffer ------------------------------------------------------------ */

typedef struct buf {
	unsigned char b[8192];
	size_t n;
} buf;

static void put(buf *p, const void *src, size_t n)
{
	if (p->n + n > sizeof p->b) {
		fprintf(stderr, "gen_seeds: a seed outgrew its buffer\n");
		exit(1);
	}
	memcpy(p->b + p->n, src, n);
	p->n += n;
}

static void emit(buf *p, const int *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		put(p, &c, 1);
	}
}

#define E(p, ...) emit(p, (const int[]){ __VA_ARGS__ }, sizeof((const int[]){ __VA_ARGS__ }) / sizeof(int))

/* ---- expression programs (the encoding of fuzz_expr.c) ----------------------- */

enum {
	LEAF = 0, LIFE = 3, BIN = 4, SCAL = 6, UN = 7, RED = 8, STE = 9, MM = 10, TR = 11,
	RS = 12, GA = 13, PK = 14, OH = 15, SM = 16, BW = 17, GR = 19, CX = 20, AC = 21,
	CU = 22, GC = 23,
};
/* leaf kinds */
enum { ZEROS, ONES, FULL, FROM_F64, FROM_F32, SCALAR, RANDN, RAND, FROM_INT };
enum { F32 = 0, F64 = 1, I32 = 240, I64 = 241, BAD_DTYPE = 255 };
/* op_gather and op_pick kinds */
enum { GATHER_ROWS, INDEX_SELECT, EMBEDDING };
enum { PICK, NLL, CROSS_ENTROPY, CROSS_ENTROPY_I32, CROSS_ENTROPY_BACKWARD };
/* index_arg kinds: 0-3 tg_labels, 4-5 tg_from_i32, 6 i64, 7 i64 with a
 * wrong 64-bit entry, 8 a wrong count, 9 a wrong ndim, 10 a value dtype,
 * 11 NULL, 12 another context, 13 a slot; +128 also keeps it in a slot */
enum { IX_LABELS = 0, IX_I32 = 4, IX_I64 = 6, IX_I64_WRONG = 7, IX_COUNT = 8, IX_NDIM = 9,
       IX_FLOAT = 10, IX_NULL = 11, IX_OTHER_CTX = 12, IX_SLOT = 13, IX_KEEP = 128 };
/* dims: small[] and odd[] of fuzz_expr.c */
enum { D1 = 0, D2, D3, D4, D5, D8, D16, D32, D0 = 224, DNEG, DNEG7, D65536, D2_20, D2_31, D2_40,
       DMAX, DMIN };
/* binary */
enum { ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, SIGMOID_BACKWARD };
/* unary */
enum { NEG, EXP, LOG, SQRT, ABS, SIGMOID, TANH, RELU, LEAKY, ELU, SOFTPLUS };
/* reductions */
enum { SUM, MEAN, MAX, SUM_AXIS, MEAN_AXIS, MAX_AXIS };
/* special values */
enum { V_ZERO = 0, V_NEG_ZERO, V_ONE, V_MINUS_ONE, V_HALF, V_TWO = 6, V_THREE = 8,
       V_HUGE = 12, V_INF = 14, V_NAN = 16, V_SEVEN = 25 };

/* x in [-4, 4) on a grid of 1/16 */
static int V(double x) { return 192 + (int)(x * 16); }

static void leaf(buf *p, int dst, int how, int dt, int nd, const int *dims, int a, int b)
{
	E(p, LEAF, dst, how, dt);
	if (how != SCALAR) {
		E(p, nd + 1);
		for (int i = 0; i < nd; i++)
			E(p, dims[i]);
	}
	E(p, a, b);
	if (how == FROM_F64 || how == FROM_F32) {
		for (int i = 0; i < 16; i++)
			E(p, V(((i * 7) % 13 - 6) / 4.0));
		E(p, 0); /* values given */
	}
}

#define DIMS(...) (const int[]){ __VA_ARGS__ }

static void param(buf *p, int dst, int src) { E(p, LIFE, 0, dst, src); }
static void requires_grad(buf *p, int x) { E(p, LIFE, 3, 0, x, 1); }
static void binary(buf *p, int k, int dst, int a, int b) { E(p, BIN, k, dst, a, b); }
static void unary(buf *p, int k, int dst, int x) { E(p, UN, k, dst, x, V(0.125)); }
static void reduce(buf *p, int k, int dst, int x, int axis, int keep)
{
	E(p, RED, k, dst, x, axis + 6, keep);
}
static void matmul(buf *p, int dst, int a, int b) { E(p, MM, 1, dst, a, b); }
static void matmul_t(buf *p, int dst, int a, bool ta, int b, bool tb)
{
	E(p, MM, (ta ? 2 : 0) | (tb ? 4 : 0), dst, a, b);
}
/* labels (i * 7 + seed) % K as a tg_labels tensor */
static void cross_entropy(buf *p, int dst, int x, int seed)
{
	E(p, PK, CROSS_ENTROPY, dst, x, IX_LABELS, 0, 0, seed);
}
static void pick(buf *p, int dst, int x, int seed)
{
	E(p, PK, PICK, dst, x, IX_LABELS, 0, 0, seed);
}
static void backward(buf *p, int how, int y) { E(p, BW, how, y); }
static void grad(buf *p, int dst, int x) { E(p, GR, 0, dst, x); }
static void reset(buf *p) { E(p, CX, 0); }
static void clear_error(buf *p) { E(p, CX, 1); }
static void item(buf *p, int x) { E(p, AC, 0, x, 0, 0); }
static void header(buf *p, int seed, int mode) { E(p, seed, mode); }

/* gradcheck functions of fuzz_expr.c's fn() */
enum { ADD_K = 0, MUL_K = 1, MATMUL_T_K = 3, SOFTMAX_K = 6, GATHER_K = 12, PICK_K = 13,
       CROSS_ENTROPY_K = 14, INDEX_SELECT_K = 16, EMBEDDING_K = 17, NLL_K = 18,
       CROSS_ENTROPY_I32_K = 19, CROSS_ENTROPY_BACKWARD_K = 20 };

/* A strict gradcheck input: nd dims (sizes 1..3) and nine values. */
static void gc_input(buf *p, int nd, int d0, int d1)
{
	E(p, nd);
	if (nd >= 1)
		E(p, d0 - 1);
	if (nd >= 2)
		E(p, d1 - 1);
	for (int i = 0; i < 9; i++)
		E(p, (i * 11 + nd * 5 + d0) % 33);
}

/* The labels read after the inputs when the first one is 2-D. */
static void gc_labels(buf *p) { E(p, 0, 1, 2, 1, 0, 2, 1, 0); }

static void seed_expr(void)
{
	buf p;

	/* the seeds' two-layer net: x @ W1 + b1, relu, @ W2, cross-entropy */
	p = (buf){ .n = 0 };
	header(&p, 42, 0);
	leaf(&p, 0, RANDN, F64, 2, DIMS(D4, D3), V(0), V(1));
	leaf(&p, 1, RANDN, F64, 2, DIMS(D3, D5), V(0), V(0.5));
	param(&p, 1, 1);
	leaf(&p, 2, ZEROS, F64, 1, DIMS(D5), 0, 0);
	param(&p, 2, 2);
	leaf(&p, 3, RANDN, F64, 2, DIMS(D5, D2), V(0), V(0.5));
	param(&p, 3, 3);
	matmul(&p, 4, 0, 1);
	binary(&p, ADD, 4, 4, 2);
	unary(&p, RELU, 5, 4);
	matmul(&p, 6, 5, 3);
	cross_entropy(&p, 7, 6, 1);
	backward(&p, 0, 7);
	grad(&p, 8, 1);
	grad(&p, 9, 3);
	reduce(&p, SUM, 10, 8, 0, 0);
	reset(&p);
	unary(&p, NEG, 11, 4); /* stale: TG_ESTALE */
	clear_error(&p);
	matmul(&p, 4, 1, 3);
	item(&p, 7); /* stale */
	clear_error(&p);
	write_seed("fuzz_expr", "two_layer_net", p.b, p.n);

	/* the apple graph: price = apple * count * tax, backward, the gradients */
	p = (buf){ .n = 0 };
	header(&p, 1, 0);
	leaf(&p, 0, SCALAR, F64, 0, NULL, V_SEVEN, 0);
	param(&p, 0, 0);
	leaf(&p, 1, SCALAR, F64, 0, NULL, V_TWO, 0);
	param(&p, 1, 1);
	leaf(&p, 2, SCALAR, F64, 0, NULL, V(1.0625), 0);
	param(&p, 2, 2);
	binary(&p, MUL, 3, 0, 1);
	binary(&p, MUL, 3, 3, 2);
	backward(&p, 8, 3);
	grad(&p, 4, 0);
	grad(&p, 5, 1);
	grad(&p, 6, 2);
	item(&p, 4);
	item(&p, 3);
	write_seed("fuzz_expr", "apple_graph", p.b, p.n);

	/* second order: y = x^3, dy/dx with history, then d(dy/dx)/dx */
	p = (buf){ .n = 0 };
	header(&p, 2, 0);
	leaf(&p, 0, SCALAR, F64, 0, NULL, V(1.5), 0);
	param(&p, 0, 0);
	E(&p, SCAL, 0, 1, 0, V(3)); /* pow */
	backward(&p, 1, 1);         /* TG_CREATE_GRAPH */
	grad(&p, 2, 0);
	reduce(&p, SUM, 3, 2, 0, 0);
	backward(&p, 0, 3);
	grad(&p, 4, 0);
	item(&p, 4);
	E(&p, GR, 2, 0, 0); /* tg_zero_grad */
	E(&p, GR, 3, 0, 0); /* tg_zero_grads */
	backward(&p, 1, 1);
	backward(&p, 0, 1);
	reset(&p);
	write_seed("fuzz_expr", "second_order", p.b, p.n);

	/* broadcasting: (4,1) + (1,3), sum_to, expand, backward with a dy */
	p = (buf){ .n = 0 };
	header(&p, 3, 0);
	leaf(&p, 0, RAND, F32, 2, DIMS(D4, D1), V(-1), V(1));
	requires_grad(&p, 0);
	leaf(&p, 1, RAND, F32, 2, DIMS(D1, D3), V(-1), V(1));
	param(&p, 1, 1);
	binary(&p, ADD, 2, 0, 1);
	E(&p, STE, 0, 3, 2, 1, 0, 1, 0); /* sum_to (1,3) */
	E(&p, STE, 1, 4, 3, 1, 1, D4, 1, D2); /* expand to (2,4,3) */
	backward(&p, 4, 4);               /* dy = ones */
	grad(&p, 5, 0);
	grad(&p, 6, 1);
	binary(&p, SUB, 7, 2, 0);
	binary(&p, DIV, 7, 7, 1);
	binary(&p, MAXIMUM, 8, 0, 1);
	binary(&p, MINIMUM, 8, 8, 7);
	E(&p, BW, 2, 8, 5); /* a dy of the wrong shape: TG_ESHAPE */
	clear_error(&p);
	E(&p, BW, 2, 8, 8); /* dy = y */
	write_seed("fuzz_expr", "broadcasting", p.b, p.n);

	/* errors: mixed dtypes, NULL, bad shapes, huge shapes, bad axes and indices */
	p = (buf){ .n = 0 };
	header(&p, 4, 0);
	leaf(&p, 0, ONES, F32, 2, DIMS(D2, D3), 0, 0);
	leaf(&p, 1, ONES, F64, 2, DIMS(D2, D3), 0, 0);
	binary(&p, ADD, 2, 0, 1); /* TG_EDTYPE */
	clear_error(&p);
	binary(&p, ADD, 2, 0, 9); /* slot 9 is NULL: TG_ENULL */
	clear_error(&p);
	leaf(&p, 3, ZEROS, F32, 5, DIMS(D1, D1, D1, D1, D1), 0, 0);
	clear_error(&p);
	leaf(&p, 3, ZEROS, F32, 2, DIMS(D0, D3), 0, 0);
	clear_error(&p);
	leaf(&p, 3, ZEROS, F64, 2, DIMS(D2_20, D2_20), 0, 0); /* TG_ENOMEM */
	clear_error(&p);
	leaf(&p, 3, ZEROS, F64, 2, DIMS(DMAX, D2), 0, 0);
	clear_error(&p);
	leaf(&p, 3, ZEROS, BAD_DTYPE, 1, DIMS(D2), 0, 0);
	clear_error(&p);
	matmul(&p, 4, 0, 0); /* (2,3) @ (2,3) */
	clear_error(&p);
	reduce(&p, SUM_AXIS, 4, 0, 5, 0);
	clear_error(&p);
	/* an index of 2 rows set to 2 */
	E(&p, GA, 4, GATHER_ROWS, 0, 1, IX_LABELS, 0, 3, 0, 0, 0, 4);
	clear_error(&p);
	E(&p, OH, 4, F32, 2, D4, IX_LABELS, 0, 3, 0, 0, 0, 1); /* a label of INT32_MIN */
	clear_error(&p);
	E(&p, RS, 4, 0, 0, 3, D4, D2); /* (2,3) to (4,2) */
	clear_error(&p);
	E(&p, TR, 4, 0);
	E(&p, TR, 4, 3);
	clear_error(&p);
	E(&p, SM, 0, 4, 9);
	E(&p, CX, 7, 0, 1); /* tensors of two contexts */
	clear_error(&p);
	E(&p, CX, 4, 0); /* tg_set_threads(-1) */
	clear_error(&p);
	write_seed("fuzz_expr", "errors", p.b, p.n);

	/* softmax, log-softmax, gather, pick, one-hot, and their backward */
	p = (buf){ .n = 0 };
	header(&p, 5, 0);
	leaf(&p, 0, RANDN, F32, 2, DIMS(D3, D4), V(0), V(2));
	param(&p, 0, 0);
	E(&p, SM, 0, 1, 0);
	E(&p, SM, 1, 2, 0);
	E(&p, GA, 3, GATHER_ROWS, 0, 2, IX_LABELS, 0, 0, 1); /* rows (i*7+1)%3 of 3 */
	pick(&p, 4, 2, 2);
	E(&p, OH, 5, F32, 2, D4, IX_LABELS, 0, 0, 2);
	binary(&p, MUL, 6, 1, 3);
	reduce(&p, MEAN, 7, 6, 0, 0);
	reduce(&p, SUM, 8, 4, 0, 0);
	binary(&p, ADD, 7, 7, 8);
	backward(&p, 1, 7);
	grad(&p, 9, 0);
	reduce(&p, SUM, 10, 9, 0, 0);
	backward(&p, 0, 10);
	write_seed("fuzz_expr", "softmax_indexing", p.b, p.n);

	/* anomaly mode: log of a negative number is NaN */
	p = (buf){ .n = 0 };
	header(&p, 6, 2);
	leaf(&p, 0, FULL, F64, 2, DIMS(D2, D2), V_MINUS_ONE, 0);
	param(&p, 0, 0);
	unary(&p, LOG, 1, 0);
	clear_error(&p);
	E(&p, CX, 2, 0); /* anomaly off */
	unary(&p, LOG, 1, 0);
	reduce(&p, SUM, 2, 1, 0, 0);
	E(&p, CX, 2, 1); /* on again: the backward meets the NaN */
	backward(&p, 0, 2);
	clear_error(&p);
	leaf(&p, 3, FULL, F32, 1, DIMS(D3), V_HUGE, 0);
	unary(&p, EXP, 4, 3);
	write_seed("fuzz_expr", "anomaly", p.b, p.n);

	/* an in-place change between forward and backward: TG_EVERSION */
	p = (buf){ .n = 0 };
	header(&p, 7, 0);
	leaf(&p, 0, FROM_F64, F64, 2, DIMS(D2, D2), 0, 0);
	param(&p, 0, 0);
	binary(&p, MUL, 1, 0, 0);
	reduce(&p, SUM, 2, 1, 0, 0);
	E(&p, AC, 5, 0, 0, 0, 1, 0, V(0.5)); /* data_mut of x */
	backward(&p, 0, 2);
	clear_error(&p);
	E(&p, AC, 6, 1, 0, 0, 1); /* tg_assign(y, y) */
	backward(&p, 0, 2);
	write_seed("fuzz_expr", "in_place", p.b, p.n);

	/* custom ops through tg_record, their backward rules good and bad */
	p = (buf){ .n = 0 };
	header(&p, 8, 0);
	leaf(&p, 0, RAND, F64, 1, DIMS(D3), V(0), V(1));
	param(&p, 0, 0);
	E(&p, CU, 1, 0, 1 + 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 + 1); /* mode 0 */
	reduce(&p, SUM, 2, 1, 0, 0);
	backward(&p, 0, 2);
	E(&p, CU, 3, 0, 1 + 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1 + 1); /* mode 1 */
	reduce(&p, SUM, 4, 3, 0, 0);
	backward(&p, 0, 4);
	E(&p, CU, 5, 0, 1 + 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1 + 1); /* wrong dtype */
	reduce(&p, SUM, 6, 5, 0, 0);
	backward(&p, 0, 6);
	clear_error(&p);
	E(&p, CU, 7, 2, 1 + 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 + 1); /* no rule */
	clear_error(&p);
	E(&p, AC, 8, 2, 0, 0, 1); /* DOT of the graph */
	write_seed("fuzz_expr", "custom_ops", p.b, p.n);

	/* gradient checks, first and second order, of smooth functions */
	p = (buf){ .n = 0 };
	header(&p, 9, 0);
	E(&p, GC, 0, ADD_K);                /* first order, two inputs */
	gc_input(&p, 2, 2, 1);
	gc_input(&p, 1, 3, 0);
	gc_labels(&p);
	E(&p, GC, 1, MUL_K);                /* second order */
	gc_input(&p, 2, 2, 1);
	gc_input(&p, 1, 3, 0);
	gc_labels(&p);
	E(&p, GC, 0, MATMUL_T_K);
	gc_input(&p, 2, 2, 3);
	gc_input(&p, 2, 2, 3);
	gc_labels(&p);
	E(&p, GC, 2, CROSS_ENTROPY_K);      /* one input */
	gc_input(&p, 2, 2, 3);
	gc_labels(&p);
	E(&p, GC, 3, SOFTMAX_K);
	gc_input(&p, 1, 3, 0);
	E(&p, GC, 1, GATHER_K);
	gc_input(&p, 2, 3, 2);
	gc_input(&p, 0, 0, 0);
	gc_labels(&p);
	/* the ops that take index tensors, first and second order */
	E(&p, GC, 0, INDEX_SELECT_K);
	gc_input(&p, 2, 2, 3);
	gc_input(&p, 1, 3, 0);
	gc_labels(&p);
	E(&p, GC, 1, EMBEDDING_K);
	gc_input(&p, 2, 3, 2);
	gc_input(&p, 0, 0, 0);
	gc_labels(&p);
	E(&p, GC, 1, NLL_K);
	gc_input(&p, 2, 2, 3);
	gc_input(&p, 2, 2, 3);
	gc_labels(&p);
	E(&p, GC, 2, CROSS_ENTROPY_I32_K);
	gc_input(&p, 2, 3, 3);
	gc_labels(&p);
	E(&p, GC, 1, CROSS_ENTROPY_BACKWARD_K);
	gc_input(&p, 2, 2, 3);
	gc_input(&p, 1, 2, 0);
	gc_labels(&p);
	E(&p, GC, 3, PICK_K);
	gc_input(&p, 2, 3, 2);
	gc_labels(&p);
	E(&p, GC, 4, 0, 0, 1, 0, 0, 0, 0); /* misuse: eps 1e-6, no inputs */
	clear_error(&p);
	write_seed("fuzz_expr", "gradcheck", p.b, p.n);

	/* a context whose 6th allocation and all after it fail */
	p = (buf){ .n = 0 };
	header(&p, 10, 0x80 | 0x40);
	E(&p, 5, 0);
	leaf(&p, 0, RANDN, F64, 2, DIMS(D8, D8), V(0), V(1));
	param(&p, 0, 0);
	for (int i = 1; i < 10; i++)
		binary(&p, MUL, i, i - 1, 0);
	reduce(&p, SUM, 10, 9, 0, 0);
	backward(&p, 0, 10);
	reset(&p);
	leaf(&p, 1, ONES, F32, 1, DIMS(D32), 0, 0);
	write_seed("fuzz_expr", "failing_allocator", p.b, p.n);

	/* shapes: reshape, transpose, matmul_t, reductions along axes, max ties */
	p = (buf){ .n = 0 };
	header(&p, 11, 0);
	leaf(&p, 0, RANDN, F64, 3, DIMS(D2, D3, D4), V(0), V(1));
	param(&p, 0, 0);
	E(&p, RS, 1, 0, 1, 0, 1, 1);     /* merge (2,3) -> (6,4), then (6,-1) */
	E(&p, RS, 2, 0, 2, 2, 1, 0);     /* split 4 -> (2,3,2,2) */
	E(&p, TR, 3, 1);
	matmul_t(&p, 4, 1, true, 1, false);
	matmul_t(&p, 5, 3, false, 3, true);
	reduce(&p, SUM_AXIS, 6, 0, -1, 1);
	reduce(&p, MEAN_AXIS, 7, 0, 1, 0);
	reduce(&p, MAX_AXIS, 8, 0, 0, 1);
	leaf(&p, 9, FULL, F64, 2, DIMS(D2, D2), V_TWO, 0);
	requires_grad(&p, 9);
	reduce(&p, MAX, 10, 9, 0, 0);
	backward(&p, 0, 10);
	reduce(&p, SUM, 11, 4, 0, 0);
	backward(&p, 0, 11);
	reduce(&p, SUM, 11, 8, 0, 0);
	backward(&p, 1, 11);
	write_seed("fuzz_expr", "shapes", p.b, p.n);

	/* the accessors, names, DOT export and node accessors */
	p = (buf){ .n = 0 };
	header(&p, 12, 0);
	leaf(&p, 0, FROM_F32, F32, 2, DIMS(D2, D3), 0, 0);
	param(&p, 0, 0);
	E(&p, AC, 7, 0, 0, 0, 4, 'f', 'c', '1', 'W', 0); /* tg_set_name */
	unary(&p, SIGMOID, 1, 0);
	unary(&p, TANH, 2, 1);
	E(&p, AC, 8, 2, 0, 0, 1);          /* DOT */
	E(&p, AC, 1, 2, 20, 0);            /* tg_get(15): out of range */
	clear_error(&p);
	E(&p, AC, 2, 2, 4, 0);             /* tg_dim(-1) */
	E(&p, AC, 3, 2, 0, 0, 6, 0, 0);    /* tg_copy_to_f64 of 6 */
	E(&p, AC, 4, 2, 0, 0, 5);          /* tg_shape_str in 5 bytes */
	E(&p, AC, 9, 2, 0, 0);
	E(&p, AC, 0, 2, 0, 0);             /* tg_item of 6 elements */
	clear_error(&p);
	E(&p, UN, SOFTPLUS, 3, 2, 0);
	E(&p, UN, ELU, 4, 3, V(1));
	E(&p, UN, LEAKY, 5, 4, V(0.125));
	E(&p, UN, ABS, 6, 5, 0);
	E(&p, UN, SQRT, 7, 6, 0);
	binary(&p, SIGMOID_BACKWARD, 8, 7, 1);
	reduce(&p, SUM, 9, 8, 0, 0);
	backward(&p, 1, 9);
	E(&p, AC, 8, 9, 0, 0, 1);
	write_seed("fuzz_expr", "accessors", p.b, p.n);

	/* a tensor kept past tg_reset while the next step makes 300 tensors,
	 * more than the header ring's first 256 slots: it must still be stale */
	p = (buf){ .n = 0 };
	header(&p, 13, 0);
	leaf(&p, 0, FULL, F64, 1, DIMS(D2), V_SEVEN, 0);
	reset(&p);
	for (int i = 0; i < 300; i++)
		leaf(&p, 1, SCALAR, F64, 0, NULL, V(i % 8 - 4), 0);
	unary(&p, NEG, 2, 0);
	item(&p, 2);
	write_seed("fuzz_expr", "stale_after_ring_wraps", p.b, p.n);

	/* index tensors: index_select along two axes, embedding, nll, the
	 * cross-entropy of a plain array and the fused backward, each with
	 * gradients; then every wrong index argument, and index tensors given
	 * to value ops, to tg_param and to backward */
	p = (buf){ .n = 0 };
	header(&p, 14, 0);
	leaf(&p, 0, RANDN, F64, 2, DIMS(D3, D4), V(0), V(1));
	param(&p, 0, 0);
	E(&p, GA, 1, INDEX_SELECT, 0, 1 + 5, 7, IX_LABELS, 0, 0, 1);   /* axis 1, 4 indices */
	E(&p, GA, 2, INDEX_SELECT, 0, -2 + 5, 1, IX_I64, 0, 0, 0);     /* axis -2, i64 */
	E(&p, GA, 3, EMBEDDING, 0, 1, IX_NDIM, 0, 3, 0, 2);            /* idx (2,2) */
	unary(&p, TANH, 3, 3);
	E(&p, SM, 1, 4, 0);                                          /* log_softmax */
	E(&p, PK, NLL, 5, 4, IX_LABELS, 0, 0, 1);
	E(&p, PK, CROSS_ENTROPY_I32, 6, 0, 0, 0, 2);
	leaf(&p, 7, SCALAR, F64, 0, NULL, V_ONE, 0);
	E(&p, PK, CROSS_ENTROPY_BACKWARD, 8, 0, 7, IX_I32, 0, 0, 1);
	reduce(&p, SUM, 9, 1, 0, 0);
	binary(&p, ADD, 9, 9, 5);
	reduce(&p, MEAN, 10, 2, 0, 0);
	binary(&p, ADD, 9, 9, 10);
	reduce(&p, SUM, 10, 3, 0, 0);
	binary(&p, ADD, 9, 9, 10);
	binary(&p, ADD, 9, 9, 6);
	reduce(&p, SUM, 10, 8, 0, 0);
	binary(&p, MUL, 9, 9, 10);
	backward(&p, 1, 9);                                          /* with history */
	grad(&p, 11, 0);
	reduce(&p, SUM, 10, 11, 0, 0);
	backward(&p, 0, 10);                                         /* second order */
	/* an index leaf, i32 (3) {2, 0, 1} (int_value: byte b < 240 is b % 40 - 4),
	 * given to value ops and backward */
	E(&p, LEAF, 1, FROM_INT, I32, 2, D3, 0, 0, 6, 4, 5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	  0);
	binary(&p, ADD, 2, 1, 0);                                    /* TG_EDTYPE */
	clear_error(&p);
	unary(&p, EXP, 2, 1);
	clear_error(&p);
	backward(&p, 0, 1);
	clear_error(&p);
	param(&p, 2, 1);                                             /* no gradient for labels */
	clear_error(&p);
	requires_grad(&p, 1);
	clear_error(&p);
	E(&p, LIFE, 1, 2, 1);                                        /* tg_keep: fine */
	E(&p, AC, 1, 2, 6, 0);                                       /* tg_get(1): 0 */
	clear_error(&p);
	E(&p, AC, 0, 1, 0, 0);                                       /* tg_item of 3 */
	clear_error(&p);
	E(&p, AC, 6, 2, 0, 0, 1);                                    /* tg_assign of labels */
	E(&p, AC, 5, 2, 0, 0, 0, 0, 241);                            /* label 0 set to INT32_MAX */
	E(&p, PK, PICK, 3, 0, IX_SLOT, 0, 2);                        /* out of range */
	clear_error(&p);
	/* every wrong index argument, for pick */
	E(&p, PK, PICK, 3, 0, IX_FLOAT, 0, 0, 0);                     /* TG_EDTYPE */
	clear_error(&p);
	E(&p, PK, PICK, 3, 0, IX_COUNT, 0, 0, 0, 0);                  /* 4 labels: TG_ESHAPE */
	clear_error(&p);
	E(&p, PK, PICK, 3, 0, IX_NDIM, 0, 0, 0, 0);                   /* (1,3): TG_ESHAPE */
	clear_error(&p);
	E(&p, PK, PICK, 3, 0, IX_OTHER_CTX, 0);                      /* TG_ECTX */
	clear_error(&p);
	E(&p, PK, PICK, 3, 0, IX_I64_WRONG, 0, 0, 0, 1, 0, 0);        /* 2^32 as i64: TG_EARG */
	clear_error(&p);
	E(&p, PK, PICK, 3, 0, IX_COUNT, 0, 2, 0, 0);                  /* tg_labels(0): TG_EARG */
	clear_error(&p);
	E(&p, PK, PICK, 3, 0, IX_NULL, 0);                           /* TG_ENULL */
	clear_error(&p);
	E(&p, PK, CROSS_ENTROPY, 3, 0, IX_LABELS, 0, 3, 0, 2, 0, 4);  /* labels[2] = K */
	clear_error(&p);
	E(&p, PK, CROSS_ENTROPY_I32, 3, 0, 5, 0, 0);                  /* 4 labels for 3 rows */
	clear_error(&p);
	E(&p, GA, 3, INDEX_SELECT, 0, 5 + 5, 1, IX_LABELS, 0, 0, 0);  /* axis 5 */
	clear_error(&p);
	E(&p, GA, 3, EMBEDDING, 0, 1, IX_NDIM, 0, 4, 0, 0);           /* idx (1,1,1,2): 4 dims */
	clear_error(&p);
	E(&p, OH, 4, F64, 1, D4, IX_OTHER_CTX, 0);                   /* a one-hot of ctx2 */
	E(&p, OH, 4, F64, 1, D4, IX_LABELS | IX_KEEP, 5, 0, 0);       /* kept in slot 5 */
	reset(&p);
	E(&p, OH, 4, F64, 1, D4, IX_SLOT, 0, 5);                     /* stale: TG_ESTALE */
	clear_error(&p);
	E(&p, GA, 3, GATHER_ROWS, 0, 1, IX_SLOT, 0, 5);              /* stale: TG_ESTALE */
	write_seed("fuzz_expr", "index_tensors", p.b, p.n);
}

/* ---- op programs (the encoding of fuzz_ops.c) --------------------------------------- */

/* fuzz_ops.c's opcodes: the index in its program_ops[] */
enum { O_LEAF = 0, O_CONV = 2, O_POOL = 4, O_NORM = 5, O_PROD = 6, O_SHAPE = 7, O_JOIN = 8,
       O_ELEM = 9, O_BW = 10, O_DERIV = 11, O_CTX = 12 };

/* The byte dim() reads as size d (1 2 3 4 5 6 8 11). */
static int D(int d)
{
	static const int small[] = { 1, 2, 3, 4, 5, 6, 8, 11 };
	for (int i = 0; i < 8; i++)
		if (small[i] == d)
			return i;
	fprintf(stderr, "gen_seeds: no byte for size %d\n", d);
	exit(1);
}

/* A leaf of f32 (f64: dt 6) normal values in slot dst, a parameter if param.
 * op_leaf reads its byte how as: dtype by how % 10 (below 6 f32, below 9
 * f64), fill by how / 10 % 4 (0 normal values), a parameter with 0x80; so a
 * parameter is 160 (f32) or 166 (f64): 0x80 | dt made f32 ones f64. */
static void op_leaf4(buf *p, int dst, bool param, int dt, int nd, const int *dims)
{
	E(p, O_LEAF, dst, param ? 160 + dt : dt, nd + 1);
	for (int i = 0; i < nd; i++)
		E(p, D(dims[i]));
	E(p, 200);
}

/* conv2d of slots x, w (bias b, 15 for none) at stride s, padding pad,
 * dilation 1, groups g (each below 4). */
static void op_conv2d(buf *p, int dst, int x, int w, int b, int s, int pad, int g)
{
	E(p, O_CONV, dst, 0, x, w, b, s, s, pad, pad, 1, 1, g, 0, 0, 0);
}

static void seed_ops(void)
{
	buf p = { .n = 0 };
	/* a CNN layer: conv, pool, backward, the gradients again by hand */
	E(&p, 1, 0);
	op_leaf4(&p, 0, true, 0, 4, (const int[]){ 2, 3, 6, 6 });
	op_leaf4(&p, 1, true, 0, 4, (const int[]){ 4, 3, 3, 3 });
	op_leaf4(&p, 2, true, 0, 1, (const int[]){ 4 });
	op_conv2d(&p, 3, 0, 1, 2, 1, 1, 1);
	E(&p, O_POOL, 4, 1, 3, 1, 1, 0, 1);      /* max, 2x2 */
	E(&p, O_POOL, 5, 0, 3, 2, 0, 1, 0);      /* avg, 3x3 stride 1 pad 1 */
	E(&p, O_BW, 4, 1);
	E(&p, O_CONV, 6, 1, 3, 1, 15, 1, 1, 1, 1, 1, 1, 1, 0, D(6), D(6)); /* input grad */
	E(&p, O_CONV, 7, 2, 0, 3, 15, 1, 1, 1, 1, 1, 1, 1, 0, D(3), D(3)); /* weight grad */
	E(&p, O_BW, 7, 3);
	write_seed("fuzz_ops", "conv_pool", p.b, p.n);

	p.n = 0;
	/* groups, strides and dilation at 2 threads, then a bad geometry */
	E(&p, 2, 4);
	op_leaf4(&p, 0, true, 0, 4, (const int[]){ 2, 4, 8, 8 });
	op_leaf4(&p, 1, true, 0, 4, (const int[]){ 6, 2, 3, 3 });
	E(&p, O_CONV, 2, 0, 0, 1, 15, 2, 1, 1, 0, 2, 1, 2, 0, 0, 0);
	E(&p, O_BW, 2, 1);
	E(&p, O_CTX, 2, 1); /* im2col */
	E(&p, O_CONV, 3, 0, 0, 1, 15, 2, 1, 1, 0, 2, 1, 2, 0, 0, 0);
	E(&p, O_CONV, 4, 0, 0, 1, 15, 1, 1, 0, 0, 1, 1, 3, 0, 0, 0); /* 3 groups of 4 */
	E(&p, O_DERIV, 2, 2, 1, 1, 1, 1, 1, 1, 1, 2, 0, 1, 0, 1); /* hvp of sum(sin(conv)) */
	write_seed("fuzz_ops", "conv_groups", p.b, p.n);

	p.n = 0;
	/* norms, products and the derivative functions */
	E(&p, 3, 0);
	op_leaf4(&p, 0, true, 6, 2, (const int[]){ 4, 5 });
	op_leaf4(&p, 1, true, 6, 1, (const int[]){ 5 });
	op_leaf4(&p, 2, true, 6, 1, (const int[]){ 5 });
	E(&p, O_NORM, 3, 0, 0, 1, 2, 15, 1, 0, 1, 1); /* not relu; mean and var */
	E(&p, O_NORM, 4, 2, 0, 1, 2, 15, 1);
	E(&p, O_NORM, 5, 3, 4, 0, 15, 1, 1);
	E(&p, O_BW, 3, 3);
	op_leaf4(&p, 6, false, 6, 3, (const int[]){ 2, 3, 4 });
	op_leaf4(&p, 7, false, 6, 2, (const int[]){ 4, 5 });
	E(&p, O_PROD, 5, 0, 6, 7, 15, 0, 0);
	E(&p, O_PROD, 5, 1, 6, 6, 15, 0, 1);
	E(&p, O_DERIV, 3, 3, 1, 1, 1, 1, 1, 1, 1, 2, 0, 1, 0, 1); /* jacobian of layer_norm */
	E(&p, O_DERIV, 0, 6, 1, 1, 1, 1, 1, 1, 1, 2, 6, 7, 5, 5); /* vjp of bmm */
	E(&p, O_DERIV, 1, 0, 1, 1, 1, 1, 1, 1, 1, 2, 0, 0, 0, 0); /* jvp */
	E(&p, O_DERIV, 4, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 15, 15, 15); /* hessian */
	write_seed("fuzz_ops", "norms_products", p.b, p.n);

	p.n = 0;
	/* batch_norm_relu over images (f32) and rows (f64), backward plain and
	 * recorded, against relu(batch_norm) */
	E(&p, 1, 0);
	op_leaf4(&p, 0, true, 0, 4, (const int[]){ 4, 3, 6, 6 });
	op_leaf4(&p, 1, true, 0, 1, (const int[]){ 3 });
	op_leaf4(&p, 2, true, 0, 1, (const int[]){ 3 });
	E(&p, O_NORM, 3, 0, 0, 1, 2, 15, 1, 1, 1, 1); /* relu, mean and var */
	E(&p, O_BW, 3, 1);
	op_leaf4(&p, 4, true, 6, 2, (const int[]){ 8, 5 });
	op_leaf4(&p, 5, true, 6, 1, (const int[]){ 5 });
	op_leaf4(&p, 6, true, 6, 1, (const int[]){ 5 });
	E(&p, O_NORM, 7, 0, 4, 5, 6, 15, 1, 1, 0, 0);
	E(&p, O_BW, 7, 3);
	write_seed("fuzz_ops", "batch_norm_relu", p.b, p.n);

	p.n = 0;
	/* relu_max_pool2d: 2x2 windows in AVX2 blocks, then overlapping ones */
	E(&p, 1, 0);
	op_leaf4(&p, 0, true, 0, 4, (const int[]){ 2, 3, 8, 11 });
	E(&p, O_POOL, 1, 1, 0, 1, 1, 0, 3);      /* max of relu, 2x2 */
	E(&p, O_BW, 1, 1);
	E(&p, O_POOL, 2, 1, 0, 2, 1, 1, 2);      /* max of relu, 3x3 stride 2 pad 1 */
	E(&p, O_BW, 2, 3);
	write_seed("fuzz_ops", "relu_max_pool2d", p.b, p.n);

	p.n = 0;
	/* moving elements: permute, slice, pad, squeeze, concat, stack, split */
	E(&p, 4, 0);
	op_leaf4(&p, 0, true, 0, 3, (const int[]){ 2, 3, 4 });
	op_leaf4(&p, 1, true, 0, 3, (const int[]){ 2, 3, 4 });
	E(&p, O_SHAPE, 2, 0, 0, 6, 0, 0, 7, 5, 6, 0, 0, 0, 0, 0, 1, 0); /* rotated */
	E(&p, O_SHAPE, 3, 1, 0, 6, 1, 2);                            /* slice axis 1 */
	E(&p, O_SHAPE, 4, 2, 0, 7, 1, 2);                            /* pad axis 2 */
	E(&p, O_SHAPE, 5, 4, 0, 5);                                  /* unsqueeze 0 */
	E(&p, O_JOIN, 6, 0, 2, 6, 0, 1);                             /* concat axis 1 */
	E(&p, O_JOIN, 7, 1, 3, 5, 0, 1, 0);                          /* stack axis 0 */
	E(&p, O_JOIN, 5, 2, 1, 6, 6, 1, 2, 0, 0, 0, 0, 1, 0);        /* split axis 1 */
	E(&p, O_ELEM, 6, 14, 6, 6, 15, 200, 200, 5);                 /* maximum */
	E(&p, O_BW, 6, 1);
	E(&p, O_ELEM, 3, 8, 3, 15, 15, 200, 200, 5);                 /* elu */
	E(&p, O_ELEM, 4, 21, 3, 3, 15, 200, 200, 5);                 /* gelu_backward */
	E(&p, O_BW, 4, 3);
	E(&p, O_CTX, 0);
	E(&p, O_BW, 0, 1);
	write_seed("fuzz_ops", "shapes", p.b, p.n);
}

/* ---- architecture strings (the encoding of fuzz_model.c) ----------------------------- */

/* mode, ndim and four sizes (bytes of fuzz_model.c's size_of), the string */
static void model_seed(const char *name, int mode, int nd, const int *sizes, const char *arch)
{
	buf p = { .n = 0 };
	E(&p, mode, nd, sizes[0], sizes[1], sizes[2], sizes[3]);
	put(&p, arch, strlen(arch));
	write_seed("fuzz_model", name, p.b, p.n);
}

static void seed_model(void)
{
	/* size_of: 0 1, 1 2, 2 3, 3 4, 4 5, 5 7, 6 8, 7 12, 8 16, 9 28 */
	model_seed("mlp", 0x08, 2, (const int[]){ 3, 7, 0, 0 }, "12-8-3");
	model_seed("full_form", 0x18, 2, (const int[]){ 3, 7, 0, 0 },
		   "linear:12:8,bn:8,relu,dropout:0.5,linear:8:8,ln:8,tanh,linear:8:3");
	model_seed("conv", 0x58, 4, (const int[]){ 1, 2, 6, 6 },
		   "conv:3:4:3:1:1,relu,maxpool:2,conv:4:4:3x1:1:1x0,avgpool:2,flatten,"
		   "linear:8:5");
	model_seed("image", 0x29, 4, (const int[]){ 1, 0, 9, 9 }, "conv4:3p1b-pool2-avgpool2-6-3");
	model_seed("image_f64", 0x0b, 4, (const int[]){ 0, 2, 8, 8 }, "conv4:3s2-conv8:3p1-5");
	model_seed("embedding", 0x08, 2, (const int[]){ 2, 3, 0, 0 },
		   "embedding:10:4,flatten,linear:12:2");
	model_seed("bad_piece", 0x00, 2, (const int[]){ 3, 7, 0, 0 }, "linear:12:8,conv:8:,relu");
	/* evaluation: batch norm of (N,D) and of images, with and without grad mode */
	model_seed("eval_bn", 0x04, 2, (const int[]){ 3, 6, 0, 0 },
		   "linear:8:6,bn:6,relu,linear:6:3");
	model_seed("eval_bn_image", 0x06, 4, (const int[]){ 1, 1, 5, 5 },
		   "conv:2:4:3:1:1,bn:4,relu,flatten,linear:196:3");
	/* the failing allocator's byte (allocation 1 + 2 x 40) before ndim */
	buf p = { .n = 0 };
	E(&p, 0x88, 40, 2, 3, 7, 0, 0);
	put(&p, "12-8-3", 6);
	write_seed("fuzz_model", "failing_allocator", p.b, p.n);
}

/* ---- IDX --------------------------------------------------------------------------- */

static void be32(buf *p, uint32_t v)
{
	unsigned char b[4] = { v >> 24, v >> 16, v >> 8, v };
	put(p, b, 4);
}

static size_t gzip(const void *src, size_t n, unsigned char *dst, size_t cap)
{
	z_stream z = { 0 };
	deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
	z.next_in = (Bytef *)src;
	z.avail_in = (uInt)n;
	z.next_out = dst;
	z.avail_out = (uInt)cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
		fprintf(stderr, "gen_seeds: gzip failed\n");
		exit(1);
	}
	size_t out = z.total_out;
	deflateEnd(&z);
	return out;
}

/* images: n of rows x cols; labels 0..k-1 */
static void idx_pair(buf *im, buf *lb, uint32_t n, uint32_t rows, uint32_t cols, int k)
{
	*im = (buf){ .n = 0 };
	*lb = (buf){ .n = 0 };
	be32(im, 0x803);
	be32(im, n);
	be32(im, rows);
	be32(im, cols);
	for (uint32_t i = 0; i < n * rows * cols; i++) {
		unsigned char px = (unsigned char)((i * 37 + i / 7) & 0xff);
		put(im, &px, 1);
	}
	be32(lb, 0x801);
	be32(lb, n);
	for (uint32_t i = 0; i < n; i++) {
		unsigned char l = (unsigned char)(i % (uint32_t)k);
		put(lb, &l, 1);
	}
}

/* flags byte, u16 split, images, labels */
static void idx_seed(const char *name, int flags, const void *im, size_t im_n, const void *lb,
		     size_t lb_n)
{
	buf p = { .n = 0 };
	E(&p, flags, (int)(im_n & 0xff), (int)(im_n >> 8));
	put(&p, im, im_n);
	put(&p, lb, lb_n);
	write_seed("fuzz_idx", name, p.b, p.n);
}

static void seed_idx(void)
{
	buf im, lb;
	unsigned char zi[8192], zl[8192];
	idx_pair(&im, &lb, 6, 4, 5, 3);
	idx_seed("plain_6x4x5", 0, im.b, im.n, lb.b, lb.n);
	idx_seed("plain_10_classes", 1 << 3, im.b, im.n, lb.b, lb.n);
	idx_seed("harness_gzips_both", 1 | 2, im.b, im.n, lb.b, lb.n);
	idx_seed("mnist_dir", 4 | 1, im.b, im.n, lb.b, lb.n);
	size_t zin = gzip(im.b, im.n, zi, sizeof zi), zln = gzip(lb.b, lb.n, zl, sizeof zl);
	idx_seed("gzip_files", 0, zi, zin, zl, zln);
	idx_seed("gzip_images_only", 3 << 3, zi, zin, lb.b, lb.n);

	idx_pair(&im, &lb, 1, 1, 1, 1);
	idx_seed("one_pixel", 0, im.b, im.n, lb.b, lb.n);

	idx_pair(&im, &lb, 20, 8, 8, 10);
	idx_seed("digits_like", 1 << 3, im.b, im.n, lb.b, lb.n);

	/* labels 0..9 with classes 3: out of range */
	idx_pair(&im, &lb, 12, 2, 2, 10);
	idx_seed("labels_out_of_range", 3 << 3, im.b, im.n, lb.b, lb.n);

	/* the header claims more images than the file holds */
	idx_pair(&im, &lb, 4, 3, 3, 2);
	im.b[7] = 200;
	lb.b[7] = 200;
	idx_seed("truncated", 0, im.b, im.n, lb.b, lb.n);

	/* labels and images swapped: wrong magic */
	idx_pair(&im, &lb, 3, 2, 2, 2);
	idx_seed("swapped", 0, lb.b, lb.n, im.b, im.n);
}

/* ---- CSV ---------------------------------------------------------------------------- */

static void csv_seed(const char *name, int a, int b, const char *text)
{
	buf p = { .n = 0 };
	E(&p, a, b);
	put(&p, text, strlen(text));
	write_seed("fuzz_csv", name, p.b, p.n);
}

static void seed_csv(void)
{
	/* byte 0: label column index (0: -1, 1: 0), header << 3, gzip 32, loader << 6 */
	csv_seed("iris_header", 1 << 6, 0,
		 "150,4,setosa,versicolor,virginica\n"
		 "5.1,3.5,1.4,0.2,0\n4.9,3.0,1.4,0.2,0\n7.0,3.2,4.7,1.4,1\n"
		 "6.4,3.2,4.5,1.5,1\n6.3,3.3,6.0,2.5,2\n5.8,2.7,5.1,1.9,2\n");
	csv_seed("auto_header", 0, 0,
		 "sepal_length,sepal_width,label\n1.5,2.5,0\n-3e2,4.25e-1,1\n\n  7 , 8 ,2\r\n");
	csv_seed("no_header_label_first", 1 | (2 << 3), 1 | (1 << 4),
		 "0,1,2,3\n1,4,5,6\n2,7,8,9\n0,0.5,1e3,-2\n");
	csv_seed("gzipped", 32, 2 | (2 << 4),
		 "x1,x2,x3,y\n0,16,8,3\n1,2,3,4\n5,6,7,8\n9,10,11,0\n");
	csv_seed("default_options", 3 << 6, 0, "1,2,0\n3,4,1\n");
	csv_seed("ragged", 0, 0, "1,2,0\n3,4\n5,6,1\n");
	csv_seed("bad_number", 0, 0, "1,2,0\n3,x,1\n");
	csv_seed("not_finite", 0, 0, "1,2,0\n3,inf,1\nnan,1,0\n1e39,1,1\n");
	csv_seed("label_not_integer", 0, 0, "1,2,0.5\n");
	csv_seed("empty", 0, 0, "");
	csv_seed("header_only", 2 << 3, 0, "a,b,c\n");

	/* the UCI digits layout: 64 pixels 0..16 and the label */
	char text[4096];
	size_t n = 0;
	for (int r = 0; r < 6; r++) {
		for (int c = 0; c < 64; c++)
			n += (size_t)snprintf(text + n, sizeof text - n, "%d,", (r * 5 + c * 3) % 17);
		n += (size_t)snprintf(text + n, sizeof text - n, "%d\n", r % 10);
	}
	csv_seed("digits_rows", 2 << 6, 0, text);
}

/* ---- checkpoints ------------------------------------------------------------------- */

static const struct {
	const char *name;
	tg_dtype dt;
	int ndim;
	int64_t shape[TG_MAX_DIMS];
} model[5] = {
	{ "fc1.W", TG_F32, 2, { 2, 3 } },
	{ "fc1.b", TG_F32, 1, { 3 } },
	{ "bn1.running_mean", TG_F64, 1, { 3 } },
	{ "step", TG_I64, 0, { 0 } },
	{ "img", TG_I32, 8, { 2, 1, 2, 1, 1, 1, 2, 1 } },
};

/* The checkpoint of the tensors in mask, in the order fuzz_checkpoint.c
 * lists them, after its two option bytes; with meta, also the metadata a
 * resumable run saves. */
static void ckpt_seed_meta(const char *name, int a, int use, bool meta)
{
	tg_ctx *ctx = tg_ctx_new(3);
	tg_tensor *t[5];
	size_t n = 0;
	for (int k = 0; k < 5; k++) {
		int i = (a & 32) ? 4 - k : k;
		if (!(a & (1 << i)))
			continue;
		if (model[i].dt == TG_I32 || model[i].dt == TG_I64) {
			tg_tensor *r = tg_full(ctx, model[i].dt, model[i].ndim, model[i].shape, 3);
			t[n++] = tg_set_name(tg_keep(r), model[i].name);
			continue;
		}
		tg_tensor *r = tg_randn(ctx, model[i].dt, model[i].ndim, model[i].shape, 0, 1);
		t[n++] = tg_set_name(tg_param(r), model[i].name);
	}
	tg_state *st = tg_state_new(ctx);
	if (!st || tg_state_add(st, t, n))
		die("tg_state_add");
	if (meta) {
		const double sched[5] = { 5, 3, 0.05, 0.8, 1 };
		const int64_t steps = 42;
		tg_state_set_string(st, "arch", "3-2 relu");
		tg_state_set_i64(st, "optim.steps", &steps, 1);
		tg_state_set_f64(st, "schedule", sched, 5);
		tg_state_rng(st);
	}
	char path[] = "/tmp/gen_seeds_ckpt_XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp");
	close(fd);
	if (tg_checkpoint_save_state(ctx, path, st)) {
		fprintf(stderr, "gen_seeds: %s\n", tg_error(ctx));
		exit(1);
	}
	FILE *f = fopen(path, "rb");
	buf p = { .n = 0 };
	E(&p, a, use);
	unsigned char b[4096];
	size_t got = f ? fread(b, 1, sizeof b, f) : 0;
	if (f)
		fclose(f);
	unlink(path);
	put(&p, b, got);
	write_seed("fuzz_checkpoint", name, p.b, p.n);
	tg_state_free(st);
	tg_ctx_free(ctx);
}

static void ckpt_seed(const char *name, int a, int use)
{
	ckpt_seed_meta(name, a, use, false);
}

static void seed_checkpoint(void)
{
	ckpt_seed("whole_model", 31, 0);
	ckpt_seed("whole_model_fix_crc", 31 | 128, 0);
	ckpt_seed("reversed", 31 | 32 | 128, 0);
	ckpt_seed("weights_only", 3, 0);
	ckpt_seed("f64_tensors", 4 | 8 | 128, 0);
	ckpt_seed("empty_model", 0 | 128, 0);
	ckpt_seed("duplicate_name", 31 | 128, 1);
	ckpt_seed("stale_tensor", 3 | 128, 3);
	ckpt_seed("directory", 1, 6);
	ckpt_seed("other_context", 1 | 128, 9);
	ckpt_seed_meta("resumable_run", 31 | 128, 0, true);
	ckpt_seed_meta("resumable_weights_only", 3 | 128, 0, true);
}

/* ---- command lines ------------------------------------------------------------------ */

static void args_seed(const char *name, int features, int classes, const char *const *argv)
{
	buf p = { .n = 0 };
	E(&p, features, classes);
	for (int i = 0; argv[i]; i++) {
		if (i)
			E(&p, 0);
		put(&p, argv[i], strlen(argv[i]));
	}
	write_seed("fuzz_train_args", name, p.b, p.n);
}

#define ARGS(...) (const char *const[]){ __VA_ARGS__, NULL }

static void seed_args(void)
{
	args_seed("defaults", 63, 8, ARGS("--quiet"));
	args_seed("digits", 63, 8,
		  ARGS("--data", "digits", "--hidden", "100-50", "--act", "tanh", "--optim",
		       "momentum", "--lr", "0.05", "--batch", "32", "--epochs", "20"));
	args_seed("layers", 3, 1, ARGS("--layers=4-10-3", "--init=glorot", "--dtype=f64", "--bn"));
	args_seed("everything", 15, 0,
		  ARGS("--data", "iris", "--hidden", "0", "--act", "leaky_relu:0.2", "--init",
		       "std:0.05", "--dropout", "0.25", "--weight-decay", "1e-4", "--iters", "100",
		       "--replace", "--seed", "7", "--threads", "1", "--anomaly", "--log",
		       "m.csv", "--save", "n.ckpt", "--load", "o.ckpt", "--eval-only"));
	args_seed("elu_adagrad", 10, 3,
		  ARGS("--act=elu:0.5", "--optim=adagrad", "--init=lecun", "--hidden=none"));
	args_seed("usage_error", 1, 1, ARGS("--epochs", "0"));
	args_seed("both_epochs_iters", 1, 1, ARGS("--epochs", "2", "--iters", "3"));
	args_seed("help", 1, 1, ARGS("--help"));
	args_seed("bad_optimizer", 1, 1, ARGS("--optim", "sgdd", "--act", "gelu"));
}

int main(int argc, char **argv)
{
	if (argc > 1)
		root = argv[1];
	seed_expr();
	seed_ops();
	seed_model();
	seed_idx();
	seed_csv();
	seed_checkpoint();
	seed_args();
	return 0;
}
