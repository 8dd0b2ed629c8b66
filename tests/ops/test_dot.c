/*
 * test_dot.c - graph export as Graphviz DOT.
 *
 * The apple graph of the seeds (price = apple * count * tax), exported after
 * backward, must show every value and gradient a reader checks by hand;
 * large tensors appear by shape; file errors name the path.
 */
#include "../engine/test_util.h"

#include <stdlib.h>
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

static void apple_graph_shows_values_gradients_and_op_names(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *apple = tg_set_name(tg_param(tg_scalar(ctx, TG_F64, 100)), "apple");
	tg_tensor *count_ = tg_set_name(tg_param(tg_scalar(ctx, TG_F64, 2)), "count");
	tg_tensor *tax = tg_set_name(tg_param(tg_scalar(ctx, TG_F64, 1.1)), "tax");
	tg_tensor *price = tg_mul(tg_mul(apple, count_), tax);
	assert_int_equal(tg_backward(price), 0);
	assert_ctx_ok(ctx);

	char *text = dot_of(price);
	assert_contains(text, "digraph");
	/* leaves by name, each edge with its value and gradient */
	assert_contains(text, "label=\"apple\"");
	assert_contains(text, "label=\"count\"");
	assert_contains(text, "label=\"tax\"");
	assert_contains(text, "label=\"100\\ngrad 2.2\"");
	assert_contains(text, "label=\"2\\ngrad 110\"");
	assert_contains(text, "label=\"1.1\\ngrad 200\"");
	/* apple * count = 200 flows into the second mul with gradient tax = 1.1 */
	assert_contains(text, "label=\"200\\ngrad 1.1\"");
	/* the price reaches the output node */
	assert_contains(text, "-> output [label=\"220\\ngrad 1\"]");
	/* two mul ops, three leaves, four edges into ops and one to the output */
	assert_int_equal(count(text, "label=\"mul\""), 2);
	assert_int_equal(count(text, "shape=ellipse"), 3);
	assert_int_equal(count(text, "->"), 5);
	free(text);
	tg_ctx_free(ctx);
}

static void before_backward_edges_carry_values_only(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_param(tg_scalar(ctx, TG_F64, 3));
	tg_tensor *y = tg_mul_scalar(a, 0.5);
	char *text = dot_of(y);
	assert_contains(text, "label=\"leaf\"");      /* no name given */
	assert_contains(text, "label=\"mul_scalar\"");
	assert_contains(text, "label=\"3\"");
	assert_contains(text, "-> output [label=\"1.5\"]");
	assert_int_equal(count(text, "\\ngrad"), 0);
	free(text);
	tg_ctx_free(ctx);
}

static void small_tensors_in_full_large_ones_by_shape(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *x = tg_set_requires_grad(tg_zeros(ctx, TG_F64, SHAPE(100, 784)), true);
	tg_tensor *b = tg_set_requires_grad(
		tg_from_f64(ctx, TG_F32, SHAPE(4), (double[]){ 0.5, -1, 2.25, 3 }), true);
	tg_tensor *y = tg_sum(x);
	tg_tensor *z = tg_sum(b);
	char *text = dot_of(y);
	assert_contains(text, "label=\"f64 (100,784)\"");
	assert_true(strlen(text) < 1000); /* no 78400 numbers */
	free(text);
	text = dot_of(z);
	assert_contains(text, "label=\"[0.5, -1, 2.25, 3]\"");
	free(text);
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
	char *text = dot_of(y);
	assert_int_equal(count(text, "label=\"mul_scalar\""), 1);
	assert_int_equal(count(text, "label=\"3\""), 2); /* h = 3 on both edges */
	assert_int_equal(count(text, "shape=ellipse"), 1);
	free(text);
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
		cmocka_unit_test(before_backward_edges_carry_values_only),
		cmocka_unit_test(small_tensors_in_full_large_ones_by_shape),
		cmocka_unit_test(a_shared_subgraph_is_drawn_once),
		cmocka_unit_test(a_leaf_alone_is_a_graph_of_one_edge),
		cmocka_unit_test(dot_file_is_written_whole_and_errors_name_the_path),
		cmocka_unit_test(bad_arguments_are_reported),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
