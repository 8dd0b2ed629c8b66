/*
 * test_dot.c - graph export as Graphviz DOT.
 *
 * The exported text is parsed back into boxes, ellipses and edges, and each
 * is checked whole: the seeds' apple graphs must show every value and every
 * per-edge gradient a reader checks by hand, the names given to
 * intermediates, each op's constants and the roles of its operands; large
 * tensors appear by shape; file errors name the path. Walking the op table,
 * every op's edges carry exactly the gradient its backward handed each input.
 */
#include "../engine/test_util.h"
#include "internal.h"
#include "op_table.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The DOT text of y's graph, malloc'd. */
static char *dot_of(const tg_tensor *y)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	int rc = tg_write_dot(y, f);
	fclose(f);
	if (rc)
		fail_msg("tg_write_dot failed: %s", tg_error(tg_ctx_of(y)));
	return text;
}

static int count(const char *text, const char *s)
{
	int n = 0;
	for (const char *p = strstr(text, s); p; p = strstr(p + 1, s))
		n++;
	return n;
}

#define assert_contains(text, s)                                                         \
	do {                                                                             \
		if (!strstr((text), (s)))                                                \
			fail_msg("expected \"%s\" in:\n%s", (s), (text));                \
	} while (0)

/* ---- the DOT text parsed back: boxes and ellipses by label, edges ------------------ */

enum { MAX_ITEMS = 64, ID = 16, LABEL = 512 };

typedef struct dot {
	char *text;
	int nnodes, nedges;
	struct {
		char id[ID];
		char label[LABEL]; /* as written, escapes kept: "y = pow\\n^ 2" */
	} node[MAX_ITEMS];
	struct {
		char from[ID], to[ID];
		char label[LABEL];
	} edge[MAX_ITEMS];
} dot;

/* The quoted string at p (just past its opening quote) into out, escapes
 * kept; returns the position after the closing quote. */
static const char *quoted(const char *p, char *out)
{
	size_t n = 0;
	while (*p && *p != '"') {
		if (*p == '\\' && p[1]) {
			if (n + 2 < LABEL) {
				out[n++] = p[0];
				out[n++] = p[1];
			}
			p += 2;
			continue;
		}
		if (n + 1 < LABEL)
			out[n++] = *p;
		p++;
	}
	out[n] = '\0';
	return *p ? p + 1 : p;
}

/* Parses the lines "  id [label=...]" and "  a -> b [label=...]". */
static dot *parse(char *text)
{
	dot *g = calloc(1, sizeof *g);
	assert_non_null(g);
	g->text = text;
	for (const char *line = text; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : "") {
		char a[ID], b[ID];
		int used = 0;
		if (sscanf(line, " %15[a-z0-9] -> %15[a-z0-9] [label=\"%n", a, b, &used) == 2 && used) {
			assert_true(g->nedges < MAX_ITEMS);
			strcpy(g->edge[g->nedges].from, a);
			strcpy(g->edge[g->nedges].to, b);
			quoted(line + used, g->edge[g->nedges].label);
			g->nedges++;
		} else if (sscanf(line, " %15[a-z0-9] [label=\"%n", a, &used) == 1 && used) {
			assert_true(g->nnodes < MAX_ITEMS);
			strcpy(g->node[g->nnodes].id, a);
			quoted(line + used, g->node[g->nnodes].label);
			g->nnodes++;
		}
	}
	return g;
}

static dot *graph_of(const tg_tensor *y)
{
	return parse(dot_of(y));
}

static void dot_free(dot *g)
{
	free(g->text);
	free(g);
}

/* The id of the one box or ellipse labelled label; "output" for the output. */
static const char *id_of(const dot *g, const char *label)
{
	if (strcmp(label, "output") == 0)
		return "output";
	const char *id = NULL;
	for (int i = 0; i < g->nnodes; i++) {
		if (strcmp(g->node[i].label, label) == 0) {
			if (id)
				fail_msg("two nodes labelled \"%s\" in:\n%s", label, g->text);
			id = g->node[i].id;
		}
	}
	if (!id)
		fail_msg("no node labelled \"%s\" in:\n%s", label, g->text);
	return id;
}

/* The labels of the edges from the node labelled from to the one labelled
 * to, in the order written; returns their number. */
static int edges(const dot *g, const char *from, const char *to, const char **labels, int max)
{
	const char *a = id_of(g, from), *b = id_of(g, to);
	int n = 0;
	for (int i = 0; i < g->nedges; i++)
		if (strcmp(g->edge[i].from, a) == 0 && strcmp(g->edge[i].to, b) == 0 && n < max)
			labels[n++] = g->edge[i].label;
	return n;
}

/* The one edge from -> to must carry exactly label. */
#define assert_edge(g, from, to, want)                                                   \
	do {                                                                             \
		const char *got_[4];                                                     \
		int n_ = edges((g), (from), (to), got_, 4);                              \
		if (n_ != 1 || strcmp(got_[0], (want)) != 0)                             \
			fail_msg("edge %s -> %s: expected one labelled \"%s\", found %d (%s) in:\n%s", \
				 (from), (to), (want), n_, n_ ? got_[0] : "", (g)->text); \
	} while (0)

/* the number after "grad " in an edge label */
static double grad_in(const char *label)
{
	const char *p = strstr(label, "\\ngrad ");
	if (!p)
		fail_msg("no gradient in edge label \"%s\"", label);
	return strtod(p + 7, NULL);
}

static tg_tensor *named_param(tg_ctx *ctx, const char *name, double v)
{
	return tg_set_name(tg_param(tg_scalar(ctx, TG_F64, v)), name);
}

/* ---- the seeds' graphs ------------------------------------------------------------- */

static void apple_graph_shows_values_gradients_and_op_names(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *apple = named_param(ctx, "apple", 100);
	tg_tensor *count_ = named_param(ctx, "count", 2);
	tg_tensor *tax = named_param(ctx, "tax", 1.1);
	tg_tensor *price = tg_mul(tg_mul(apple, count_), tax);
	assert_int_equal(tg_backward(price), 0);
	assert_ctx_ok(ctx);

	dot *g = graph_of(price);
	assert_contains(g->text, "digraph");
	/* unnamed intermediates: two boxes "mul", told apart by their edges */
	assert_int_equal(count(g->text, "label=\"mul\""), 2);
	assert_int_equal(count(g->text, "shape=ellipse"), 3);
	assert_int_equal(g->nedges, 5); /* four into ops, one to the output */
	/* each number in full: 1.1 * 100 is 110.00000000000001 in doubles */
	assert_contains(g->text, "l0 -> n0 [label=\"100\\ngrad 2.2\"]");
	assert_contains(g->text, "l1 -> n0 [label=\"2\\ngrad 110.00000000000001\"]");
	assert_contains(g->text, "n0 -> n1 [label=\"200\\ngrad 1.1\"]");
	assert_contains(g->text, "l2 -> n1 [label=\"1.1\\ngrad 200\"]");
	assert_contains(g->text, "n1 -> output [label=\"220.00000000000003\\ngrad 1\"]");
	dot_free(g);
	tg_ctx_free(ctx);
}

/* "" is no name: the box reads "mul", not " = mul", the leaf "leaf" */
static void an_empty_name_is_no_name(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = named_param(ctx, "", 3);
	tg_tensor *y = tg_set_name(tg_mul(x, x), "");
	assert_null(tg_name(y));
	assert_int_equal(tg_backward(y), 0);
	dot *g = graph_of(y);
	assert_int_equal(count(g->text, "label=\"mul\""), 1);
	assert_int_equal(count(g->text, " = "), 0);
	assert_int_equal(count(g->text, "label=\"leaf\""), 1);
	dot_free(g);
	tg_ctx_free(ctx);
}

/* seed 001: (apple 100 * 2 + orange 150 * 3) * tax 1.1 = 715, every edge with
 * the share its consumer sends back */
static void apple_orange_edges_carry_their_own_gradients(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *apple = named_param(ctx, "apple", 100);
	tg_tensor *apple_num = named_param(ctx, "apple_num", 2);
	tg_tensor *orange = named_param(ctx, "orange", 150);
	tg_tensor *orange_num = named_param(ctx, "orange_num", 3);
	tg_tensor *tax = named_param(ctx, "tax", 1.1);
	tg_tensor *apple_price = tg_set_name(tg_mul(apple, apple_num), "apple_price");
	tg_tensor *orange_price = tg_set_name(tg_mul(orange, orange_num), "orange_price");
	tg_tensor *all_price = tg_set_name(tg_add(apple_price, orange_price), "all_price");
	tg_tensor *price = tg_set_name(tg_mul(all_price, tax), "price");
	assert_int_equal(tg_backward(price), 0);

	dot *g = graph_of(price);
	/* the names of the intermediates and of the output, on their boxes */
	assert_edge(g, "apple", "apple_price = mul", "100\\ngrad 2.2");
	assert_edge(g, "apple_num", "apple_price = mul", "2\\ngrad 110.00000000000001");
	assert_edge(g, "orange", "orange_price = mul", "150\\ngrad 3.3000000000000003");
	assert_edge(g, "orange_num", "orange_price = mul", "3\\ngrad 165");
	assert_edge(g, "apple_price = mul", "all_price = add", "200\\ngrad 1.1");
	assert_edge(g, "orange_price = mul", "all_price = add", "450\\ngrad 1.1");
	assert_edge(g, "all_price = add", "price = mul", "650\\ngrad 1.1");
	assert_edge(g, "tax", "price = mul", "1.1\\ngrad 650");
	assert_edge(g, "price = mul", "output", "715.0000000000001\\ngrad 1");
	assert_int_equal(g->nedges, 9);
	dot_free(g);
	tg_ctx_free(ctx);
}

/* y = x * x + x at x = 3: x feeds three edges, with shares 3, 3 and 1 that
 * add up to dy/dx = 2x + 1 = 7; the total appears on no edge. */
static void a_tensor_used_twice_has_one_share_per_edge(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = named_param(ctx, "x", 3);
	tg_tensor *sq = tg_set_name(tg_mul(x, x), "sq");
	tg_tensor *y = tg_set_name(tg_add(sq, x), "y");
	assert_int_equal(tg_backward(y), 0);

	dot *g = graph_of(y);
	const char *into_mul[4];
	assert_int_equal(edges(g, "x", "sq = mul", into_mul, 4), 2);
	assert_string_equal(into_mul[0], "3\\ngrad 3");
	assert_string_equal(into_mul[1], "3\\ngrad 3");
	assert_edge(g, "x", "y = add", "3\\ngrad 1");
	assert_edge(g, "sq = mul", "y = add", "9\\ngrad 1");
	const char *into_add[1] = { NULL };
	assert_int_equal(edges(g, "x", "y = add", into_add, 1), 1);
	double shares = grad_in(into_mul[0]) + grad_in(into_mul[1]) + grad_in(into_add[0]);
	assert_near(shares, tg_item(tg_grad(x)), 0);
	assert_near(shares, 7, 0);
	assert_int_equal(count(g->text, "grad 7"), 0);
	dot_free(g);

	/* z = x w + x with x = 3, w = 5: the shares differ, 5 and 1 */
	tg_tensor *w = named_param(ctx, "w", 5);
	tg_tensor *z = tg_set_name(tg_add(tg_set_name(tg_mul(x, w), "xw"), x), "z");
	tg_zero_grads(ctx);
	assert_int_equal(tg_backward(z), 0);
	g = graph_of(z);
	assert_edge(g, "x", "xw = mul", "3\\ngrad 5");
	assert_edge(g, "w", "xw = mul", "5\\ngrad 3");
	assert_edge(g, "x", "z = add", "3\\ngrad 1");
	assert_near(tg_item(tg_grad(x)), 6, 0);
	dot_free(g);
	tg_ctx_free(ctx);
}

/* y = sum(A + b), A (2,3), b (3): b's edge carries its gradient summed back
 * to b's shape, [2, 2, 2], not the (2,3) gradient of the sum. */
static void a_broadcast_input_gets_its_gradient_in_its_own_shape(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *A = tg_set_name(tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 3),
							 (double[]){ 1, 2, 3, 4, 5, 6 })),
				   "A");
	tg_tensor *b = tg_set_name(tg_param(tg_from_f64(ctx, TG_F64, SHAPE(3),
							 (double[]){ 0.5, -1, 2 })),
				   "b");
	tg_tensor *y = tg_sum(tg_add(A, b));
	assert_int_equal(tg_backward(y), 0);
	dot *g = graph_of(y);
	assert_edge(g, "b", "add", "[0.5, -1, 2]\\ngrad [2, 2, 2]");
	assert_edge(g, "A", "add", "f64 (2,3) [1, 2, 3, 4, ...]\\ngrad f64 (2,3) [1, 1, 1, 1, ...]");
	assert_edge(g, "add", "sum", "f64 (2,3) [1.5, 1, 5, 4.5, ...]\\ngrad f64 (2,3) [1, 1, 1, 1, ...]");
	dot_free(g);
	tg_ctx_free(ctx);
}

/* ---- the ops as written: constants and operand roles --------------------------------- */

static void ops_show_their_constants(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_set_name(tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 3),
							 (double[]){ 1, -2, 3, -4, 5, -6 })),
				   "x");
	tg_tensor *t = tg_pow(x, 2);
	t = tg_add_scalar(t, 3);
	t = tg_add_scalar(t, -0.5);
	t = tg_mul_scalar(t, 1.1);
	t = tg_leaky_relu(t, 0.01);
	t = tg_elu(t, 1.5);
	tg_tensor *s1 = tg_sum_axis(t, 1, true);     /* (2,1) */
	tg_tensor *s0 = tg_mean_axis(t, 0, false);   /* (3) */
	tg_tensor *m = tg_max_axis(t, -1, false);    /* (2), axis 1 */
	tg_tensor *r = tg_reshape(t, 2, (int64_t[]){ 3, 2 });
	tg_tensor *e = tg_expand(s1, 2, (int64_t[]){ 2, 3 });
	tg_tensor *st = tg_sum_to(e, 1, (int64_t[]){ 3 });
	tg_tensor *mm = tg_matmul_t(r, true, r, false); /* (2,3)^T... r is (3,2): r^T r (2,2) */
	tg_tensor *pk = tg_pick(mm, tg_labels(ctx, 2, (int32_t[]){ 1, 0 }));
	tg_tensor *gr = tg_gather_rows(t, tg_labels(ctx, 3, (int32_t[]){ 1, 1, 0 }));
	tg_tensor *ce = tg_cross_entropy(gr, tg_labels(ctx, 3, (int32_t[]){ 2, 0, 1 }));
	tg_tensor *y = tg_add(tg_add(tg_add(tg_sum(s0), tg_sum(m)), tg_add(tg_sum(st), tg_sum(pk))),
			      ce);
	assert_ctx_ok(ctx);

	dot *g = graph_of(y);
	id_of(g, "pow\\n^ 2");
	id_of(g, "add_scalar\\n+ 3");
	id_of(g, "add_scalar\\n- 0.5");
	id_of(g, "mul_scalar\\n* 1.1");
	id_of(g, "leaky_relu\\nalpha 0.01");
	id_of(g, "elu\\nalpha 1.5");
	id_of(g, "sum_axis\\naxis 1, keepdim");
	id_of(g, "mean_axis\\naxis 0");
	id_of(g, "max_axis\\naxis 1");
	id_of(g, "reshape\\nto (3,2)");
	id_of(g, "expand\\nto (2,3)");
	id_of(g, "sum_to\\nto (3,)");
	id_of(g, "matmul\\na^T @ b");
	id_of(g, "pick\\nidx [1, 0]");
	id_of(g, "index_select\\naxis 0, idx [1, 1, 0]");
	id_of(g, "cross_entropy\\nlabels [2, 0, 1]");
	/* whole-tensor reductions and plain matmul have no constants */
	assert_int_equal(count(g->text, "label=\"sum\""), 4);
	/* the edge into pow is its base; matmul's operands are a and b */
	assert_edge(g, "x", "pow\\n^ 2",
		    "base: f64 (2,3) [1, -2, 3, -4, ...]");
	const char *ab[4];
	assert_int_equal(edges(g, "reshape\\nto (3,2)", "matmul\\na^T @ b", ab, 4), 2);
	assert_true(strncmp(ab[0], "a: ", 3) == 0 && strncmp(ab[1], "b: ", 3) == 0);
	dot_free(g);

	/* batch norm: eps, and its three inputs by role */
	tg_tensor *bx = tg_param(tg_from_f64(ctx, TG_F64, SHAPE(2, 2), (double[]){ 1, 2, 3, 5 }));
	tg_tensor *gamma = tg_set_name(tg_param(tg_ones(ctx, TG_F64, SHAPE(2))), "gamma");
	tg_tensor *beta = tg_set_name(tg_param(tg_zeros(ctx, TG_F64, SHAPE(2))), "beta");
	tg_tensor *bn = tg_batch_norm(tg_set_name(bx, "x"), gamma, beta, 1e-5, NULL, NULL);
	g = graph_of(bn);
	assert_edge(g, "x", "batch_norm\\neps 1e-05", "x: (2,2) [1, 2, 3, 5]");
	assert_edge(g, "gamma", "batch_norm\\neps 1e-05", "gamma: [1, 1]");
	assert_edge(g, "beta", "batch_norm\\neps 1e-05", "beta: [0, 0]");
	dot_free(g);
	tg_ctx_free(ctx);
}

static void sub_and_div_mark_their_operands(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = named_param(ctx, "a", 6);
	tg_tensor *b = named_param(ctx, "b", 4);
	tg_tensor *d = tg_set_name(tg_sub(a, b), "d");
	tg_tensor *q = tg_set_name(tg_div(b, d), "q"); /* 4 / 2 */
	assert_int_equal(tg_backward(q), 0);
	dot *g = graph_of(q);
	/* dq/dd = -b / d^2 = -1; d's edges: +1 and -1 times that */
	assert_edge(g, "a", "d = sub", "minuend: 6\\ngrad -1");
	assert_edge(g, "b", "d = sub", "subtrahend: 4\\ngrad 1");
	assert_edge(g, "b", "q = div", "numerator: 4\\ngrad 0.5");
	assert_edge(g, "d = sub", "q = div", "denominator: 2\\ngrad -1");
	assert_edge(g, "q = div", "output", "2\\ngrad 1");
	/* b's two shares add up to its gradient */
	assert_near(tg_item(tg_grad(b)), 1.5, 0);
	dot_free(g);
	tg_ctx_free(ctx);
}

/* a custom op of two inputs that names no roles: its edges show the numbers */
static void diff_backward(tg_node *n, tg_tensor *dout)
{
	tg_node_grad(n, 0, dout);
	tg_node_grad(n, 1, tg_neg(dout));
}

static int diff_describe(const tg_node *n, char *buf, size_t size)
{
	return snprintf(buf, size, "offset %g \"quoted\"", tg_node_attr(n, 0));
}

static void custom_ops_get_input_numbers_and_their_own_constants(void **state)
{
	(void)state;
	static const tg_op diff_op = { .name = "diff", .backward = diff_backward,
				       .describe = diff_describe };
	static const tg_op plain_op = { .name = "plain", .backward = diff_backward };
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *in[2] = { named_param(ctx, "u", 5), named_param(ctx, "v", 2) };
	tg_set_grad_enabled(ctx, false);
	tg_tensor *out = tg_sub(in[0], in[1]);
	tg_tensor *out2 = tg_sub(in[0], in[1]);
	tg_set_grad_enabled(ctx, true);
	const double attr = 0.25;
	tg_tensor *y = tg_set_name(tg_record(&diff_op, out, 2, in, &attr, 1), "y \"new\"\nline");
	tg_tensor *y2 = tg_record(&plain_op, out2, 2, in, NULL, 0);
	assert_int_equal(tg_backward(y), 0);
	dot *g = graph_of(y);
	/* quotes and newlines in names and constants are escaped */
	const char *box = "y \\\"new\\\"\\nline = diff\\noffset 0.25 \\\"quoted\\\"";
	assert_edge(g, "u", box, "#0: 5\\ngrad 1");
	assert_edge(g, "v", box, "#1: 2\\ngrad -1");
	dot_free(g);
	g = graph_of(y2); /* no backward through it: values only */
	assert_edge(g, "u", "plain", "#0: 5");
	assert_edge(g, "v", "plain", "#1: 2");
	dot_free(g);
	tg_ctx_free(ctx);
}

/* ---- which backward the edges show ----------------------------------------------------- */

static void before_backward_edges_carry_values_only(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_param(tg_scalar(ctx, TG_F64, 3));
	tg_tensor *c = tg_scalar(ctx, TG_F64, 2);
	tg_tensor *y = tg_mul(tg_mul_scalar(a, 0.5), c);
	dot *g = graph_of(y);
	id_of(g, "leaf");     /* no name given */
	id_of(g, "constant"); /* nor here, and no gradient wanted */
	assert_edge(g, "leaf", "mul_scalar\\n* 0.5", "3");
	assert_edge(g, "mul", "output", "3");
	assert_int_equal(count(g->text, "\\ngrad"), 0);
	dot_free(g);

	/* after backward, an input that wants no gradient gets none on its edge */
	assert_int_equal(tg_backward(y), 0);
	g = graph_of(y);
	assert_edge(g, "constant", "mul", "2");
	assert_edge(g, "mul_scalar\\n* 0.5", "mul", "1.5\\ngrad 2");
	assert_edge(g, "leaf", "mul_scalar\\n* 0.5", "3\\ngrad 1");
	dot_free(g);
	tg_ctx_free(ctx);
}

/* The edges show the latest backward: one from another output clears the
 * shares of the ops it does not reach. */
static void a_later_backward_replaces_the_shares(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = named_param(ctx, "a", 3);
	tg_tensor *u = tg_set_name(tg_mul_scalar(a, 2), "u");
	tg_tensor *v = tg_set_name(tg_mul_scalar(a, 5), "v");
	assert_int_equal(tg_backward(u), 0);
	dot *g = graph_of(u);
	assert_edge(g, "a", "u = mul_scalar\\n* 2", "3\\ngrad 2");
	dot_free(g);

	assert_int_equal(tg_backward(v), 0);
	g = graph_of(u);
	assert_edge(g, "a", "u = mul_scalar\\n* 2", "3");
	assert_edge(g, "u = mul_scalar\\n* 2", "output", "6");
	dot_free(g);
	g = graph_of(v);
	assert_edge(g, "a", "v = mul_scalar\\n* 5", "3\\ngrad 5");
	dot_free(g);
	tg_ctx_free(ctx);
}

/* tg_grad_of keeps its gradients to itself: the edges still show the
 * latest backward's shares, as tg_grad does. */
static void a_grad_of_walk_leaves_the_shares_of_the_backward(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = named_param(ctx, "a", 3);
	tg_tensor *u = tg_set_name(tg_mul_scalar(a, 2), "u");
	assert_int_equal(tg_backward(u), 0);
	tg_tensor *w = tg_scalar(ctx, TG_F64, 100), *g_a;
	assert_int_equal(tg_grad_of(1, &u, &w, 1, &a, &g_a, 0), 0);
	assert_near(tg_item(g_a), 200, 0);
	dot *g = graph_of(u);
	assert_edge(g, "a", "u = mul_scalar\\n* 2", "3\\ngrad 2");
	dot_free(g);
	tg_ctx_free(ctx);
}

/* ---- values ----------------------------------------------------------------------------- */

static void small_tensors_in_full_large_ones_by_shape(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_set_requires_grad(tg_zeros(ctx, TG_F64, SHAPE(100, 784)), true);
	tg_tensor *b = tg_set_requires_grad(
		tg_from_f64(ctx, TG_F32, SHAPE(4), (double[]){ 0.5, -1, 2.25, 3 }), true);
	tg_tensor *m = tg_set_requires_grad(
		tg_from_f64(ctx, TG_F64, SHAPE(3, 5),
			    (double[]){ 1.0 / 3, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 }),
		true);
	tg_tensor *s = tg_set_requires_grad(tg_scalar(ctx, TG_F32, 1.1), true);
	char *text = dot_of(tg_sum(x));
	assert_contains(text, "l0 -> n0 [label=\"f64 (100,784)\"]");
	assert_true(strlen(text) < 1000); /* no 78400 numbers */
	free(text);
	text = dot_of(tg_sum(b));
	assert_contains(text, "[label=\"[0.5, -1, 2.25, 3]\"]");
	free(text);
	/* a few more elements: the shape and the first four, to 6 digits */
	text = dot_of(tg_sum(m));
	assert_contains(text, "[label=\"f64 (3,5) [0.333333, 2, 3, 4, ...]\"]");
	free(text);
	/* one f32 value in full as a float: 1.1, not 1.10000002384 */
	dot *g = graph_of(tg_mul_scalar(s, 2));
	assert_edge(g, "leaf", "mul_scalar\\n* 2", "1.1");
	assert_edge(g, "mul_scalar\\n* 2", "output", "2.2");
	dot_free(g);
	tg_ctx_free(ctx);
}

/* y = h * h with h = 2 x: h's op is drawn once and feeds two edges. */
static void a_shared_subgraph_is_drawn_once(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_param(tg_scalar(ctx, TG_F64, 1.5));
	tg_tensor *h = tg_mul_scalar(x, 2);
	tg_tensor *y = tg_mul(h, h);
	assert_int_equal(tg_backward(y), 0);
	dot *g = graph_of(y);
	assert_int_equal(count(g->text, "label=\"mul_scalar\\n* 2\""), 1);
	const char *both[4];
	assert_int_equal(edges(g, "mul_scalar\\n* 2", "mul", both, 4), 2);
	assert_string_equal(both[0], "3\\ngrad 3");
	assert_string_equal(both[1], "3\\ngrad 3");
	assert_edge(g, "leaf", "mul_scalar\\n* 2", "1.5\\ngrad 12"); /* 2 (3 + 3) */
	assert_int_equal(count(g->text, "shape=ellipse"), 1);
	dot_free(g);
	tg_ctx_free(ctx);
}

static void a_leaf_alone_is_a_graph_of_one_edge(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_set_name(tg_scalar(ctx, TG_F64, 4), "x");
	char *text = dot_of(x);
	assert_contains(text, "l0 [label=\"x\", shape=ellipse]");
	assert_contains(text, "l0 -> output [label=\"4\"]");
	free(text);
	tg_ctx_free(ctx);
}

/* ---- every op: its edges carry what its backward handed each input --------------------- */

/* For every op of the table and every variant: the gradient on each edge
 * into the op is the gradient its inputs (leaves used once) received, and
 * the export draws the op's box under its name. */
static void every_op_draws_its_edges_with_the_gradients_handed_back(void **state)
{
	(void)state;
	int checked = 0;
	for (size_t r = 0; r < op_table_len; r++) {
		const op_row *row = &op_table[r];
		for (const op_variant *v = row->v; v->name; v++) {
			tg_ctx *ctx = tg_ctx_new(7);
			tg_tensor *in[TG_MAX_INPUTS];
			assert_int_equal(op_table_inputs(ctx, row, v, in), 0);
			for (int j = 0; j < row->nin; j++)
				in[j] = tg_set_requires_grad(in[j], true);
			tg_tensor *y = op_table_apply(row, v, in);
			assert_non_null(y);
			tg_tensor *w = tg_randn(ctx, TG_F64, tg_ndim(y), tg_shape(y), 0, 1);
			assert_int_equal(tg_backward(tg_sum(tg_mul(y, w))), 0);
			const tg_node *n = tg_producer(y);
			assert_non_null(n);
			char *text = dot_of(y);
			char box[64];
			snprintf(box, sizeof box, "[label=\"%s", row->op);
			if (!strstr(text, box))
				fail_msg("%s, %s: no box for the op in:\n%s", row->op, v->name, text);
			free(text);
			for (int j = 0; j < n->nin; j++) {
				const tg_tensor *x = n->in[j], *share = n->in_grad[j];
				if (x->node) /* an input made by another op (index_add's row) */
					continue;
				bool repeated = false; /* one tensor in two slots */
				for (int k = 0; k < n->nin; k++)
					repeated = repeated || (k != j && n->in[k] == x);
				if (repeated) {
					/* its gradient is the sum of its edges' shares */
					for (size_t i = 0; i < tg_numel(x); i++) {
						double sum = 0;
						for (int k = 0; k < n->nin; k++)
							if (n->in[k] == x && n->in_grad[k])
								sum += tg_get(n->in_grad[k], i);
						assert_near(sum, tg_get(tg_grad(x), i),
							    1e-12 * (1 + fabs(sum)));
					}
					checked++;
					continue;
				}
				const tg_tensor *total = tg_grad(x);
				if (!share && !total) /* a constant input: relu_backward's x */
					continue;
				char a[64] = "none", b[64] = "none", c[64];
				if (share)
					tg_shape_str(share, a, sizeof a);
				if (total)
					tg_shape_str(total, b, sizeof b);
				if (!share || !total || !tg_same_shape(share, x))
					fail_msg("%s, %s: input %d %s: edge gradient %s, input's %s",
						 row->op, v->name, j, tg_shape_str(x, c, sizeof c), a, b);
				for (size_t i = 0; i < tg_numel(x); i++)
					if (tg_get(share, i) != tg_get(total, i))
						fail_msg("%s, %s: input %d [%zu]: edge %.17g, grad %.17g",
							 row->op, v->name, j, i, tg_get(share, i),
							 tg_get(total, i));
				checked++;
			}
			tg_ctx_free(ctx);
		}
	}
	assert_true(checked > 50);
}

/* ---- files and errors ------------------------------------------------------------------- */

static void dot_file_is_written_whole_and_errors_name_the_path(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_param(tg_scalar(ctx, TG_F64, 3));
	tg_tensor *y = tg_exp(a);

	char dir[] = "/tmp/tg_dot_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], tmp[260];
	snprintf(path, sizeof path, "%s/graph.dot", dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	assert_int_equal(tg_write_dot_file(y, path), 0);
	assert_ctx_ok(ctx);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char buf[512] = { 0 };
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	assert_true(n > 0);
	assert_contains(buf, "digraph");
	assert_contains(buf, "label=\"exp\"");
	assert_contains(buf, "}\n");
	assert_int_equal(access(tmp, F_OK), -1); /* the temporary was renamed */
	unlink(path);
	rmdir(dir);

	const char *missing = "/tmp/tg_no_such_dir_4f1a/graph.dot";
	assert_int_equal(tg_write_dot_file(y, missing), -1);
	assert_error(ctx, TG_EIO, missing);
	assert_error(ctx, TG_EIO, "No such file or directory");
	tg_clear_error(ctx);
	tg_ctx_free(ctx);
}

static void dot_file_of_a_255_byte_name_is_written(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *y = tg_exp(tg_param(tg_scalar(ctx, TG_F64, 3)));
	char dir[] = "/tmp/tg_dot_XXXXXX";
	assert_non_null(mkdtemp(dir));
	/* the longest legal name: the temporary beside it must still fit */
	char name[256], path[400];
	memset(name, 'g', 255);
	name[255] = '\0';
	snprintf(path, sizeof path, "%s/%s", dir, name);
	for (int i = 0; i < 2; i++) { /* made, then replaced */
		if (tg_write_dot_file(y, path) != 0)
			fail_msg("tg_write_dot_file: %s", tg_error(ctx));
		assert_int_equal(access(path, R_OK), 0);
	}
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	assert_int_equal(n, 1); /* no temporary is left */
	unlink(path);
	rmdir(dir);
	tg_ctx_free(ctx);
}

static void dot_file_replaces_only_a_regular_file_and_follows_a_link(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *y = tg_exp(tg_param(tg_scalar(ctx, TG_F64, 3)));
	char dir[] = "/tmp/tg_dot_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char fifo[256], link[256], file[256];
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	snprintf(link, sizeof link, "%s/link.dot", dir);
	snprintf(file, sizeof file, "%s/file.dot", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);

	/* a FIFO (a device, a socket) is not replaced by a regular file */
	assert_int_equal(tg_write_dot_file(y, fifo), -1);
	assert_error(ctx, TG_EIO, "it is a FIFO, not a regular file");
	tg_clear_error(ctx);
	struct stat st;
	assert_int_equal(lstat(fifo, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	assert_int_equal(tg_write_dot_file(y, dir), -1);
	assert_error(ctx, TG_EIO, "it is a directory");
	tg_clear_error(ctx);

	/* through a link: the file it leads to is written and the link stays */
	assert_int_equal(symlink("file.dot", link), 0);
	assert_int_equal(tg_write_dot_file(y, link), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(stat(file, &st), 0);
	assert_true(S_ISREG(st.st_mode) && st.st_size > 0);
	unlink(link);
	unlink(file);
	unlink(fifo);
	assert_int_equal(rmdir(dir), 0); /* no temporary left */
	tg_ctx_free(ctx);
}

static void bad_arguments_are_reported(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *y = tg_scalar(ctx, TG_F64, 1);
	assert_int_equal(tg_write_dot(NULL, stdout), -1);
	assert_int_equal(tg_write_dot_file(NULL, "/tmp/x.dot"), -1);
	assert_true(tg_ok(ctx));
	assert_int_equal(tg_write_dot(y, NULL), -1);
	assert_error(ctx, TG_ENULL, "tg_write_dot");
	tg_clear_error(ctx);
	assert_int_equal(tg_write_dot_file(y, NULL), -1);
	assert_error(ctx, TG_ENULL, "path");
	tg_clear_error(ctx);

	/* a tensor freed by tg_reset is reported, not read */
	tg_reset(ctx);
	assert_int_equal(tg_write_dot(y, stdout), -1);
	assert_error(ctx, TG_ESTALE, "tg_write_dot");
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(apple_graph_shows_values_gradients_and_op_names),
		cmocka_unit_test(apple_orange_edges_carry_their_own_gradients),
		cmocka_unit_test(an_empty_name_is_no_name),
		cmocka_unit_test(a_tensor_used_twice_has_one_share_per_edge),
		cmocka_unit_test(a_broadcast_input_gets_its_gradient_in_its_own_shape),
		cmocka_unit_test(ops_show_their_constants),
		cmocka_unit_test(sub_and_div_mark_their_operands),
		cmocka_unit_test(custom_ops_get_input_numbers_and_their_own_constants),
		cmocka_unit_test(before_backward_edges_carry_values_only),
		cmocka_unit_test(a_later_backward_replaces_the_shares),
		cmocka_unit_test(a_grad_of_walk_leaves_the_shares_of_the_backward),
		cmocka_unit_test(small_tensors_in_full_large_ones_by_shape),
		cmocka_unit_test(a_shared_subgraph_is_drawn_once),
		cmocka_unit_test(a_leaf_alone_is_a_graph_of_one_edge),
		cmocka_unit_test(every_op_draws_its_edges_with_the_gradients_handed_back),
		cmocka_unit_test(dot_file_is_written_whole_and_errors_name_the_path),
		cmocka_unit_test(dot_file_of_a_255_byte_name_is_written),
		cmocka_unit_test(dot_file_replaces_only_a_regular_file_and_follows_a_link),
		cmocka_unit_test(bad_arguments_are_reported),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
