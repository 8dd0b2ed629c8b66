/*
 * matrix.c - matrix products through OpenBLAS (plain, with a bias row, with a
 * bias row and its relu, and batched), transpose and reshape.
 *
 * matmul_t multiplies op(a) @ op(b), op a transpose or not, with the BLAS
 * transpose flags: no transpose is ever materialised, forward or backward.
 * bmm does the same for stacks of matrices whose batch axes broadcast.
 * Backward rules are written with ops, so they record under TG_CREATE_GRAPH.
 * Shape legend: op(a) (N,K) @ op(b) (K,M) -> (N,M).
 */
#include "fused.h"
#include "internal.h"
#include "parallel.h"
#include "transpose.h"

#include <limits.h>
#include <string.h>

/* ---- matmul_t: C = op(A) op(B) ---------------------------------------------- */
/* With C = op(A) op(B) and dout = dC:
 *   dA = dC op(B)^T        if !ta;   dA = op(B) dC^T        if ta;
 *   dB = op(A)^T dC        if !tb;   dB = dC^T op(A)        if tb;
 * each a matmul_t of the saved inputs with flags, so nothing is transposed
 * in memory. Attributes: [0] ta, [1] tb. */

static tg_tensor *matmul_into(tg_tensor *out, tg_tensor *a, bool ta, tg_tensor *b, bool tb);

/* Input i's gradient, op(x) op(y), written into the input's own gradient
 * buffer when the engine offers it (its first gradient of a training step:
 * no step tensor to fill and then copy). */
static void grad_product(tg_node *n, int i, tg_tensor *x, bool tx, tg_tensor *y, bool ty)
{
	tg_tensor *buf = tg_node_grad_buffer(n, i);
	tg_node_grad(n, i, buf ? matmul_into(buf, x, tx, y, ty) : tg_matmul_t(x, tx, y, ty));
}

static void matmul_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *a = tg_node_input(n, 0), *b = tg_node_input(n, 1);
	bool ta = tg_node_attr(n, 0) != 0, tb = tg_node_attr(n, 1) != 0;
	if (tg_node_needs_grad(n, 0)) {
		if (ta)
			grad_product(n, 0, b, tb, dout, true);
		else
			grad_product(n, 0, dout, false, b, !tb);
	}
	if (tg_node_needs_grad(n, 1)) {
		if (tb)
			grad_product(n, 1, dout, true, a, ta);
		else
			grad_product(n, 1, a, !ta, dout, false);
	}
}

/* the transposes matmul_t reads its operands with: "a^T @ b" */
static int matmul_describe(const tg_node *n, char *buf, size_t size)
{
	bool ta = tg_node_attr(n, 0) != 0, tb = tg_node_attr(n, 1) != 0;
	if (!ta && !tb)
		return 0;
	return snprintf(buf, size, "a%s @ b%s", ta ? "^T" : "", tb ? "^T" : "");
}

static const tg_op matmul_op = { .name = "matmul", .backward = matmul_backward,
				 .inputs = (const char *const[]){ "a", "b" },
				 .describe = matmul_describe };
TG_OP_REGISTER(matmul_op);

/* "(2,3)" or "(2,3)^T" into buf (TG_SHAPE_STR + 2 bytes). */
static char *operand_fmt(const tg_tensor *t, bool trans, char *buf)
{
	tg_shape_fmt(t->ndim, t->shape, buf);
	if (trans)
		strcat(buf, "^T");
	return buf;
}

/* out (N,M) = op(a) @ op(b) + beta out, shapes already checked; beta is 0
 * (out's contents unread) or 1 (added to). */
static void product(tg_tensor *out, const tg_tensor *a, bool ta, const tg_tensor *b, bool tb,
		    double beta)
{
	int N = (int)out->shape[0], M = (int)out->shape[1];
	int K = (int)(ta ? a->shape[0] : a->shape[1]);
	tg_gemm(out->ctx, a->dtype, ta, tb, N, M, K, a->data, (int)a->shape[1], b->data,
		(int)b->shape[1], beta, out->data, M);
}

static tg_tensor *matmul(const char *who, tg_tensor *a, bool ta, tg_tensor *b, bool tb)
{
	tg_tensor *in[2] = { a, b };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	char sa[TG_SHAPE_STR + 2], sb[TG_SHAPE_STR + 2];
	if (a->ndim != 2 || b->ndim != 2)
		return tg_fail(ctx, TG_ESHAPE, "%s: %s @ %s: both inputs must be 2-D", who,
			       operand_fmt(a, ta, sa), operand_fmt(b, tb, sb));
	int64_t N = ta ? a->shape[1] : a->shape[0];
	int64_t K = ta ? a->shape[0] : a->shape[1];
	int64_t Kb = tb ? b->shape[1] : b->shape[0];
	int64_t M = tb ? b->shape[0] : b->shape[1];
	if (K != Kb)
		return tg_fail(ctx, TG_ESHAPE, "%s: %s @ %s: inner sizes %lld and %lld differ",
			       who, operand_fmt(a, ta, sa), operand_fmt(b, tb, sb), (long long)K,
			       (long long)Kb);
	if (N > INT_MAX || K > INT_MAX || M > INT_MAX)
		return tg_fail(ctx, TG_ESHAPE, "%s: %s @ %s: a size exceeds the BLAS limit %d",
			       who, operand_fmt(a, ta, sa), operand_fmt(b, tb, sb), INT_MAX);
	tg_tensor *out = tg_tensor_new(ctx, who, a->dtype, 2, (int64_t[]){ N, M });
	if (!out)
		return NULL;
	product(out, a, ta, b, tb, 0);
	const double attr[2] = { ta, tb };
	return tg_op_end(&matmul_op, out, 2, in, attr, 2, NULL);
}

/* The product into a gradient buffer (matmul_backward): the operands are
 * those of a recorded product's rule, so their shapes fit; out is returned
 * unless the context already failed. */
static tg_tensor *matmul_into(tg_tensor *out, tg_tensor *a, bool ta, tg_tensor *b, bool tb)
{
	if (!a || !b || !tg_ok(out->ctx))
		return NULL;
	product(out, a, ta, b, tb, 0);
	out->version++;
	return out;
}

tg_tensor *tg_matmul_t(tg_tensor *a, bool ta, tg_tensor *b, bool tb)
{
	return matmul("tg_matmul_t", a, ta, b, tb);
}

tg_tensor *tg_matmul(tg_tensor *a, tg_tensor *b)
{
	return matmul("tg_matmul", a, false, b, false);
}

/* ---- addmm: C = b + A B, the affine layer's product and bias in one ---------- */
/* b, a (M,) or (1,M) row, is written into every row of C and the GEMM adds
 * A B to it (beta = 1). As tg_add(tg_matmul(a, w), b) it would cost a
 * second pass over C, which OpenBLAS first zeroes for beta = 0 anyway:
 * reading and writing the layer's whole output once more. The sums differ
 * from that form only in where b's rounding falls (OpenBLAS adds its
 * partial sums over blocks of K into C).
 *   dA = dC B^T, dB = A^T dC (matmul's rules), db = dC summed over rows. */

/* the gradients of a, w and b for the gradient g of the product's output,
 * db given (or NULL: made from g here) */
static void addmm_grads(tg_node *n, tg_tensor *g, tg_tensor *db)
{
	tg_tensor *a = tg_node_input(n, 0), *w = tg_node_input(n, 1), *b = tg_node_input(n, 2);
	if (tg_node_needs_grad(n, 0))
		grad_product(n, 0, g, false, w, true);
	if (tg_node_needs_grad(n, 1))
		grad_product(n, 1, a, true, g, false);
	if (tg_node_needs_grad(n, 2))
		tg_node_grad(n, 2, db ? db : tg_sum_to(g, b->ndim, b->shape));
}

static void addmm_backward(tg_node *n, tg_tensor *dout)
{
	addmm_grads(n, dout, NULL);
}

static const tg_op addmm_op = { .name = "addmm", .backward = addmm_backward,
				.inputs = (const char *const[]){ "a", "w", "b" } };
TG_OP_REGISTER(addmm_op);

/* ---- addmm_relu: y = relu(b + A B), an affine layer and its relu in one ------- */
/* addmm's output made relu in place, with the bits of tg_relu(tg_addmm(a,
 * w, b)) but not its second tensor of the layer's size. The mask of the
 * backward, [y > 0], is relu's [x > 0] read from y. With g = dout [y > 0]
 * the gradients are addmm's for g; where nothing is recorded, g and its
 * sum over rows (b's gradient) are made in one pass (tg_relu_backward_rows).
 * Under TG_CREATE_GRAPH g is tg_relu_backward's node, whose rule gives y no
 * gradient, as relu's gives x none past the mask. */

static void addmm_relu_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *y = tg_node_output(n), *b = tg_node_input(n, 2), *g = NULL, *db = NULL;
	if (tg_fused_sums_ok(dout) && y->shape[1] > 1 && tg_node_needs_grad(n, 2))
		db = tg_relu_backward_rows(dout, y, b, &g);
	else
		g = tg_relu_backward(dout, y);
	if (g)
		addmm_grads(n, g, db);
}

static const tg_op addmm_relu_op = { .name = "addmm_relu", .backward = addmm_relu_backward,
				     .inputs = (const char *const[]){ "a", "w", "b" } };
TG_OP_REGISTER(addmm_relu_op);

/* rows [lo, hi) of out = the row b, for tg_parallel_for */
typedef struct fill_job {
	void *out;
	const void *row;
	size_t bytes;
} fill_job;

static void fill_rows(void *arg, size_t lo, size_t hi)
{
	const fill_job *j = arg;
	for (size_t i = lo; i < hi; i++)
		memcpy((char *)j->out + i * j->bytes, j->row, j->bytes);
}

/* b + a w, and its relu with relu */
static tg_tensor *addmm(const tg_op *op, const char *who, tg_tensor *a, tg_tensor *w,
			tg_tensor *b, bool relu)
{
	tg_tensor *in[3] = { a, w, b };
	tg_ctx *ctx = tg_op_begin(who, 3, in);
	if (!ctx)
		return NULL;
	char sa[TG_SHAPE_STR], sw[TG_SHAPE_STR], sb[TG_SHAPE_STR];
	if (a->ndim != 2 || w->ndim != 2 || a->shape[1] != w->shape[0])
		return tg_fail(ctx, TG_ESHAPE,
			       "%s: a %s @ w %s: both must be 2-D with a's columns w's rows", who,
			       tg_shape_fmt(a->ndim, a->shape, sa), tg_shape_fmt(w->ndim, w->shape, sw));
	int64_t N = a->shape[0], K = a->shape[1], M = w->shape[1];
	if (!((b->ndim == 1 && b->shape[0] == M) ||
	      (b->ndim == 2 && b->shape[0] == 1 && b->shape[1] == M)))
		return tg_fail(ctx, TG_ESHAPE, "%s: b %s must be a row (%lld,) or (1,%lld) for w %s",
			       who, tg_shape_fmt(b->ndim, b->shape, sb), (long long)M, (long long)M,
			       tg_shape_fmt(w->ndim, w->shape, sw));
	if (N > INT_MAX || K > INT_MAX || M > INT_MAX)
		return tg_fail(ctx, TG_ESHAPE, "%s: a %s @ w %s: a size exceeds the BLAS limit %d",
			       who, tg_shape_fmt(a->ndim, a->shape, sa),
			       tg_shape_fmt(w->ndim, w->shape, sw), INT_MAX);
	tg_tensor *out = tg_tensor_new(ctx, who, a->dtype, 2, (int64_t[]){ N, M });
	if (!out)
		return NULL;
	fill_job fj = { out->data, b->data, (size_t)M * tg_dtype_size(a->dtype) };
	size_t min = (size_t)((TG_PAR_MIN + M - 1) / M);
	tg_parallel_for(ctx, (size_t)N, min > 2 ? min : 2, 1, fill_rows, &fj);
	product(out, a, false, w, false, 1);
	if (relu)
		tg_relu_in_place(out);
	return tg_op_end(op, out, 3, in, NULL, 0, NULL);
}

tg_tensor *tg_addmm(tg_tensor *a, tg_tensor *w, tg_tensor *b)
{
	return addmm(&addmm_op, "tg_addmm", a, w, b, false);
}

tg_tensor *tg_addmm_relu(tg_tensor *a, tg_tensor *w, tg_tensor *b)
{
	return addmm(&addmm_relu_op, "tg_addmm_relu", a, w, b, true);
}

/* ---- bmm: batched C = op(A) op(B), batch axes broadcast ---------------------- */
/* a (..., N, K) @ b (..., K, M) -> (..., N, M), op transposing the last two
 * axes. The batch axes (all but the last two) broadcast NumPy-style, so
 * (2,1,3,4) @ (5,4,2) -> (2,5,3,2). One GEMM per batch item; when b has one
 * matrix for every item and a is not transposed, the items of a are rows of
 * one (batch N, K) matrix and a single GEMM does all. The rule is matmul_t's,
 * batched, each gradient summed back over the batch axes its input was
 * broadcast along: da = sum_to(dout op(b)^T), db = sum_to(op(a)^T dout).
 * Attributes: [0] ta, [1] tb. */

static tg_tensor *bmm(const char *who, tg_tensor *a, bool ta, tg_tensor *b, bool tb);

/* dx summed down to x's shape (its batch axes), or dx itself when it has it. */
static tg_tensor *sum_to_input(tg_tensor *dx, const tg_tensor *x)
{
	return !dx || tg_same_shape(dx, x) ? dx : tg_sum_to(dx, x->ndim, x->shape);
}

static void bmm_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *a = tg_node_input(n, 0), *b = tg_node_input(n, 1);
	bool ta = tg_node_attr(n, 0) != 0, tb = tg_node_attr(n, 1) != 0;
	const char *who = "tg_bmm_t";
	if (tg_node_needs_grad(n, 0))
		TG_NODE_GRAD_INTO(n, 0, sum_to_input(ta ? bmm(who, b, tb, dout, true)
							 : bmm(who, dout, false, b, !tb), a));
	if (tg_node_needs_grad(n, 1))
		TG_NODE_GRAD_INTO(n, 1, sum_to_input(tb ? bmm(who, dout, true, a, ta)
							 : bmm(who, a, !ta, dout, false), b));
}

static const tg_op bmm_op = { .name = "bmm", .backward = bmm_backward };
TG_OP_REGISTER(bmm_op);

/* Where each batch item's matrices sit: the output's batch axes, and the
 * element offsets of a's and b's matrices along them (0 where broadcast). */
typedef struct batch {
	int nb;                        /* batch axes of out */
	int64_t dim[TG_MAX_DIMS];      /* their sizes */
	int64_t sa[TG_MAX_DIMS];       /* a's element stride along each, or 0 */
	int64_t sb[TG_MAX_DIMS];
	int64_t items, items_a, items_b;
} batch;

/* What batch_of found wrong, if anything. */
typedef enum { BATCH_OK, BATCH_MISMATCH, BATCH_TOO_MANY } batch_fit;

/* Right-aligns the batch axes of a and b: whether they broadcast, and
 * whether the broadcast batch's item count fits in int64. */
static batch_fit batch_of(const tg_tensor *a, const tg_tensor *b, batch *bt)
{
	const int na = a->ndim - 2, nb = b->ndim - 2;
	bt->nb = na > nb ? na : nb;
	bt->items = bt->items_a = bt->items_b = 1;
	int64_t stride_a = a->shape[na] * a->shape[na + 1];
	int64_t stride_b = b->shape[nb] * b->shape[nb + 1];
	for (int d = bt->nb - 1; d >= 0; d--) {
		int back = bt->nb - 1 - d;
		int64_t da = back < na ? a->shape[na - 1 - back] : 1;
		int64_t db = back < nb ? b->shape[nb - 1 - back] : 1;
		if (da != db && da != 1 && db != 1)
			return BATCH_MISMATCH;
		bt->dim[d] = da > db ? da : db;
		bt->sa[d] = da == 1 ? 0 : stride_a;
		bt->sb[d] = db == 1 ? 0 : stride_b;
		stride_a *= da;
		stride_b *= db;
		/* the inputs' own counts fit (they exist); their broadcast may not */
		if (__builtin_mul_overflow(bt->items, bt->dim[d], &bt->items))
			return BATCH_TOO_MANY;
		bt->items_a *= da;
		bt->items_b *= db;
	}
	return BATCH_OK;
}

/* The GEMM of one item: C (N,M) = op(A) op(B), row major. */
typedef struct gemm {
	const tg_ctx *ctx;
	bool ta, tb;
	int N, M, K, lda, ldb;
} gemm;

static void gemm_run(const gemm *g, tg_dtype dt, const void *A, const void *B, void *C)
{
	tg_gemm(g->ctx, dt, g->ta, g->tb, g->N, g->M, g->K, A, g->lda, B, g->ldb, 0, C, g->M);
}

/* The GEMMs of items [lo, hi) of a batch, each on its caller's thread. */
typedef struct items_job {
	const batch *bt;
	gemm g;
	tg_dtype dt;
	bool small; /* tg_gemm_small's loops, a run of items at a time */
	const char *A, *B;
	char *C;
} items_job;

/* count items along the last batch axis: a, b and c advance by sa, sb and
 * one item of C (elements) */
static void run_run(const items_job *j, int64_t count, const char *A, int64_t sa, const char *B,
		    int64_t sb, char *C)
{
	const gemm *g = &j->g;
	const int64_t sc = (int64_t)g->N * g->M;
	if (j->small) {
		tg_gemm_small(j->dt, g->ta, g->tb, g->N, g->M, g->K, A, g->lda, B, g->ldb, 0, C,
			      g->M, count, sa, sb, sc);
		return;
	}
	const size_t es = tg_dtype_size(j->dt);
	for (int64_t t = 0; t < count; t++)
		gemm_run(g, j->dt, A + (size_t)(t * sa) * es, B + (size_t)(t * sb) * es,
			 C + (size_t)(t * sc) * es);
}

static void run_items(void *arg, size_t lo, size_t hi)
{
	const items_job *j = arg;
	const batch *bt = j->bt;
	const int nb = bt->nb, last = nb - 1;
	const size_t es = tg_dtype_size(j->dt);
	const size_t c_item = (size_t)j->g.N * (size_t)j->g.M * es;
	/* item lo's index along each batch axis, the last the fastest */
	int64_t cnt[TG_MAX_DIMS] = { 0 }, oa = 0, ob = 0, rest = (int64_t)lo;
	for (int d = last; d >= 0; d--) {
		cnt[d] = rest % bt->dim[d];
		rest /= bt->dim[d];
		oa += cnt[d] * bt->sa[d];
		ob += cnt[d] * bt->sb[d];
	}
	for (size_t t = lo; t < hi;) {
		/* the items left along the last axis, a run of even strides */
		int64_t n = (int64_t)(hi - t);
		if (nb > 0 && n > bt->dim[last] - cnt[last])
			n = bt->dim[last] - cnt[last];
		run_run(j, n, j->A + (size_t)oa * es, nb > 0 ? bt->sa[last] : 0,
			j->B + (size_t)ob * es, nb > 0 ? bt->sb[last] : 0, j->C + t * c_item);
		t += (size_t)n;
		if (nb == 0)
			break;
		/* the next run, like an odometer */
		cnt[last] += n;
		oa += n * bt->sa[last];
		ob += n * bt->sb[last];
		for (int d = last; d > 0 && cnt[d] == bt->dim[d]; d--) {
			oa += bt->sa[d - 1] - bt->sa[d] * bt->dim[d];
			ob += bt->sb[d - 1] - bt->sb[d] * bt->dim[d];
			cnt[d] = 0;
			cnt[d - 1]++;
		}
	}
}

/* Items smaller than this run one after the other on the caller: some of
 * OpenBLAS's calls take a lock for their buffers (a row-major a @ b^T of
 * small items, for one), and from two threads at once tiny items spent
 * their time waiting for it: 4096 products of 8x8 took 1.8 ms on two
 * threads, 0.5 ms on one. From 32x32x32 on they share out well (0.24
 * against 0.52 ms for 512 of them). Items of tg_gemm_small's loops take
 * no lock: they are shared out from SMALL_SHARE_MIN multiply-adds in all,
 * an item counted as SMALL_ITEM_COST more for its set-up. */
enum { ITEM_SHARE_MIN = 32768, SMALL_SHARE_MIN = 65536, SMALL_ITEM_COST = 16 };

/* Every item's GEMM. Items of a that share one b are the rows of one
 * product; a large item is split across the threads by itself; small and
 * middling ones are shared out whole among the threads once there are
 * enough of them. */
static void bmm_items(const batch *bt, gemm g, tg_dtype dt, const char *A, const char *B,
		      char *C)
{
	if (!g.ta && bt->items_b == 1 && bt->items_a == bt->items &&
	    (int64_t)g.N * bt->items <= INT_MAX) {
		g.N *= (int)bt->items; /* the items of a are rows of one matrix */
		gemm_run(&g, dt, A, B, C);
		return;
	}
	double macs = (double)g.N * (double)g.M * (double)g.K;
	items_job j = { bt, g, dt, tg_gemm_small_fits(g.N, g.M, g.K), A, B, C };
	if (j.small) {
		/* as many items as make SMALL_SHARE_MIN */
		size_t min = (size_t)(SMALL_SHARE_MIN / (macs + SMALL_ITEM_COST)) + 1;
		tg_parallel_for(g.ctx, (size_t)bt->items, min, 1, run_items, &j);
		return;
	}
	if (macs >= TG_GEMM_SPLIT_MIN || macs < ITEM_SHARE_MIN) {
		run_items(&j, 0, (size_t)bt->items); /* tg_gemm splits the large ones */
		return;
	}
	j.g.ctx = NULL;
	/* as many items as make TG_GEMM_SPLIT_MIN multiply-adds (2 to 8) */
	size_t min = (size_t)(TG_GEMM_SPLIT_MIN / macs) + 1;
	tg_parallel_for(g.ctx, (size_t)bt->items, min, 1, run_items, &j);
}

static tg_tensor *bmm(const char *who, tg_tensor *a, bool ta, tg_tensor *b, bool tb)
{
	tg_tensor *in[2] = { a, b };
	tg_ctx *ctx = tg_op_begin(who, 2, in);
	if (!ctx)
		return NULL;
	char sa[TG_SHAPE_STR + 2], sb[TG_SHAPE_STR + 2];
	if (a->ndim < 2 || b->ndim < 2)
		return tg_fail(ctx, TG_ESHAPE,
			       "%s: %s @ %s: both inputs need at least 2 dimensions (..., rows, "
			       "columns)",
			       who, operand_fmt(a, ta, sa), operand_fmt(b, tb, sb));
	const int la = a->ndim - 2, lb = b->ndim - 2;
	int64_t N = a->shape[la + (ta ? 1 : 0)], K = a->shape[la + (ta ? 0 : 1)];
	int64_t Kb = b->shape[lb + (tb ? 1 : 0)], M = b->shape[lb + (tb ? 0 : 1)];
	if (K != Kb)
		return tg_fail(ctx, TG_ESHAPE, "%s: %s @ %s: inner sizes %lld and %lld differ",
			       who, operand_fmt(a, ta, sa), operand_fmt(b, tb, sb), (long long)K,
			       (long long)Kb);
	batch bt;
	batch_fit fit = batch_of(a, b, &bt);
	if (fit == BATCH_MISMATCH)
		return tg_fail(ctx, TG_ESHAPE, "%s: %s @ %s: the batch axes (all but the last "
					       "two) do not broadcast",
			       who, operand_fmt(a, ta, sa), operand_fmt(b, tb, sb));
	if (fit == BATCH_TOO_MANY)
		return tg_fail(ctx, TG_ESHAPE, "%s: %s @ %s: the batch axes broadcast to more "
					       "than 2^63 matrices",
			       who, operand_fmt(a, ta, sa), operand_fmt(b, tb, sb));
	if (N > INT_MAX || K > INT_MAX || M > INT_MAX)
		return tg_fail(ctx, TG_ESHAPE, "%s: %s @ %s: a size exceeds the BLAS limit %d",
			       who, operand_fmt(a, ta, sa), operand_fmt(b, tb, sb), INT_MAX);
	int64_t shape[TG_MAX_DIMS];
	memcpy(shape, bt.dim, (size_t)bt.nb * sizeof *shape);
	shape[bt.nb] = N;
	shape[bt.nb + 1] = M;
	tg_tensor *out = tg_tensor_new(ctx, who, a->dtype, bt.nb + 2, shape);
	if (!out)
		return NULL;
	gemm g = { ctx, ta, tb, (int)N, (int)M, (int)K, (int)a->shape[la + 1], (int)b->shape[lb + 1] };
	bmm_items(&bt, g, a->dtype, a->data, b->data, out->data);
	const double attr[2] = { ta, tb };
	return tg_op_end(&bmm_op, out, 2, in, attr, 2, NULL);
}

tg_tensor *tg_bmm_t(tg_tensor *a, bool ta, tg_tensor *b, bool tb)
{
	return bmm("tg_bmm_t", a, ta, b, tb);
}

tg_tensor *tg_bmm(tg_tensor *a, tg_tensor *b)
{
	return bmm("tg_bmm", a, false, b, false);
}

/* ---- transpose: (N,M) -> (M,N) copy; dx = dout^T -------------------------------- */

static void transpose_backward(tg_node *n, tg_tensor *dout)
{
	if (!tg_permute_grad_sum(n, dout, (const int[]){ 1, 0 }))
		TG_NODE_GRAD_INTO(n, 0, tg_transpose(dout));
}

static const tg_op transpose_op = { .name = "transpose", .backward = transpose_backward,
				    .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(transpose_op);

tg_tensor *tg_transpose(tg_tensor *x)
{
	const char *who = "tg_transpose";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	if (x->ndim != 2) {
		char buf[TG_SHAPE_STR];
		return tg_fail(ctx, TG_ESHAPE, "%s: x is %s; expected a 2-D (N,M)", who,
			       tg_shape_fmt(x->ndim, x->shape, buf));
	}
	tg_tensor *out = tg_permuted(x, (const int[]){ 1, 0 }, who);
	if (!out)
		return NULL;
	return tg_op_end(&transpose_op, out, 1, &x, NULL, 0, NULL);
}

/* ---- reshape: same elements, new shape; dx = reshape(dout) -------------------- */
/* The output shares x's data where x is a step tensor that nothing writes
 * in place (tg_tensor_alias), as dx shares dout's: no copy either way. A
 * write to either through tg_data_mut or tg_assign gives the one written a
 * copy of its own first, so each reads as if reshape had copied. Other
 * tensors (a parameter, data lent writable, a gradient buffer) are
 * copied. */

static void reshape_backward(tg_node *n, tg_tensor *dout)
{
	tg_tensor *x = tg_node_input(n, 0);
	TG_NODE_GRAD_INTO(n, 0, tg_reshape(dout, x->ndim, x->shape));
}

static int reshape_describe(const tg_node *n, char *buf, size_t size)
{
	const tg_tensor *y = tg_node_output(n);
	char s[TG_SHAPE_STR];
	return snprintf(buf, size, "to %s", tg_shape_fmt(y->ndim, y->shape, s));
}

static const tg_op reshape_op = { .name = "reshape", .backward = reshape_backward,
				  .describe = reshape_describe, .unread = TG_UNREAD_ALL };
TG_OP_REGISTER(reshape_op);

/* Resolves shape (one entry may be -1) for x's element count into out;
 * false after recording why. */
static bool resolve_shape(tg_ctx *ctx, const char *who, const tg_tensor *x, int ndim,
			  const int64_t *shape, int64_t *out)
{
	char sx[TG_SHAPE_STR], ss[TG_SHAPE_STR];
	const int64_t numel = (int64_t)x->numel;
	int64_t known = 1;
	int infer = -1;
	bool too_many = false;
	for (int i = 0; i < ndim; i++) {
		int64_t s = shape[i];
		if (s == -1 && infer < 0) {
			infer = i;
			continue;
		}
		if (s == -1 || s <= 0) {
			tg_fail(ctx, TG_ESHAPE,
				"%s: cannot reshape %s to %s: dimension %d is %lld; sizes must be "
				"positive, and at most one may be -1",
				who, tg_shape_fmt(x->ndim, x->shape, sx),
				tg_shape_fmt(ndim, shape, ss), i, (long long)s);
			return false;
		}
		if (known > numel / s)
			too_many = true; /* known * s > numel; stop before it overflows */
		else
			known *= s;
	}
	if (too_many || (infer < 0 ? known != numel : numel % known != 0)) {
		tg_fail(ctx, TG_ESHAPE, "%s: cannot reshape %s (%lld elements) to %s", who,
			tg_shape_fmt(x->ndim, x->shape, sx), (long long)numel,
			tg_shape_fmt(ndim, shape, ss));
		return false;
	}
	for (int i = 0; i < ndim; i++)
		out[i] = i == infer ? numel / known : shape[i];
	return true;
}

tg_tensor *tg_reshape(tg_tensor *x, int ndim, const int64_t *shape)
{
	const char *who = "tg_reshape";
	tg_ctx *ctx = tg_op_begin(who, 1, &x);
	if (!ctx)
		return NULL;
	if (ndim < 0 || ndim > TG_MAX_DIMS)
		return tg_fail(ctx, TG_ESHAPE, "%s: %d dimensions; a tensor has 0 to %d", who,
			       ndim, TG_MAX_DIMS);
	if (ndim > 0 && !shape)
		return tg_fail(ctx, TG_ENULL, "%s: shape is NULL for %d dimensions", who, ndim);
	int64_t s[TG_MAX_DIMS];
	if (!resolve_shape(ctx, who, x, ndim, shape, s))
		return NULL;
	tg_tensor *out = tg_tensor_as(x, who, ndim, s);
	if (!out)
		return NULL;
	return tg_op_end(&reshape_op, out, 1, &x, NULL, 0, NULL);
}
