/*
 * test_stale.c - a step tensor kept past its tg_reset is TG_ESTALE however
 * long it was kept: header addresses are not reused, pages given back read
 * as zeros and are traced to their context, and the memory stays bounded.
 * TG_HEADER_SPACE (read at tg_ctx_new) gives a small range, to make the
 * cursor wrap, or 0 for the fallback ring.
 */
#include "test_util.h"

#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Pages of this process in memory (/proc/self/statm, second field). */
static long resident_pages(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size = 0, rss = -1;
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &rss) != 2)
			rss = -1;
		fclose(f);
	}
	return rss;
}

/* Lines of /proc/self/maps: the mappings of this process. */
static int mapping_count(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;
	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* Pages in memory among the len bytes of the header range from its start. */
static long range_resident_pages(const tg_ctx *ctx, size_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t n = (len + (size_t)page - 1) / (size_t)page;
	unsigned char *in = malloc(n);
	long count = -1;
	if (in && mincore(ctx->arena.hdr.base, n * (size_t)page, in) == 0) {
		count = 0;
		for (size_t i = 0; i < n; i++)
			count += in[i] & 1;
	}
	free(in);
	return count;
}

/* True when every anonymous mapping gets huge pages, asked or not. */
static bool huge_pages_always(void)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	char line[128] = "";
	if (f) {
		if (!fgets(line, sizeof line, f))
			line[0] = 0;
		fclose(f);
	}
	return strstr(line, "[always]") != NULL;
}

/* True when ctx hands out headers from a reserved range, not the ring. */
static bool has_range(const tg_ctx *ctx)
{
	return ctx->arena.hdr.base != NULL;
}

/* The first word of a header, read whatever state it is in. */
static uint64_t magic_of(const tg_tensor *t)
{
	return t->magic;
}

/* Runs one step of n scalar tensors, values base + i, and checks them. */
static void step_of(tg_ctx *ctx, int n, double base)
{
	tg_reset(ctx);
	for (int i = 0; i < n; i++) {
		tg_tensor *t = tg_scalar(ctx, TG_F64, base + i);
		assert_non_null(t);
		assert_near(tg_item(t), base + i, 0);
	}
}

/* Reading t (tg_item, tg_get, tg_data, tg_numel) and using it in an op are
 * TG_ESTALE in ctx, each naming the function; tg_shape_str says "(stale)". */
static void assert_stale(tg_ctx *ctx, tg_tensor *t)
{
	assert_ctx_ok(ctx);
	double v = tg_item(t);
	if (!isnan(v))
		fail_msg("tg_item of a stale tensor read %g", v);
	assert_error(ctx, TG_ESTALE, "tg_item: tensor");
	assert_error(ctx, TG_ESTALE, "freed by tg_reset");
	tg_clear_error(ctx);
	assert_true(isnan(tg_get(t, 0)));
	assert_error(ctx, TG_ESTALE, "tg_get: tensor");
	tg_clear_error(ctx);
	assert_null(tg_data(t));
	assert_error(ctx, TG_ESTALE, "tg_data: tensor");
	tg_clear_error(ctx);
	assert_int_equal(tg_numel(t), 0);
	/* not the shape its header held (zeros where the page was given back) */
	char buf[32];
	assert_string_equal(tg_shape_str(t, buf, sizeof buf), "(stale)");
	assert_ctx_ok(ctx);
	assert_null(tg_neg(t));
	assert_error(ctx, TG_ESTALE, "tg_neg: tensor");
	tg_clear_error(ctx);
	tg_tensor *live = tg_scalar(ctx, TG_F64, 1);
	assert_null(tg_add(live, t));
	assert_error(ctx, TG_ESTALE, "tg_add: tensor");
	tg_clear_error(ctx);
}

/* ---- the cases of the report ---------------------------------------------- */

static void a_tensor_kept_over_4_resets_of_64_tensors_is_stale(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *kept = tg_scalar(ctx, TG_F64, 42);
	assert_near(tg_item(kept), 42, 0);
	for (int r = 0; r < 4; r++)
		step_of(ctx, 64, 1000 + 64 * r);
	assert_stale(ctx, kept);
	tg_ctx_free(ctx);
}

/* loss = sum(w * x) with w a parameter of 3 ones; x of this step. */
static tg_tensor *loss_of(tg_tensor *w, double x0)
{
	tg_ctx *ctx = tg_ctx_of(w);
	tg_tensor *x = tg_from_f64(ctx, TG_F64, SHAPE(3), (double[]){ x0, x0 + 1, x0 + 2 });
	return tg_sum(tg_mul(w, x));
}

static void a_loss_kept_over_4096_resets_does_not_reach_the_live_graph(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_param(tg_ones(ctx, TG_F64, SHAPE(3)));
	tg_tensor *kept = loss_of(w, 10);
	assert_near(tg_item(kept), 33, 0);
	tg_tensor *live = NULL;
	for (int r = 0; r < 4096; r++) {
		tg_reset(ctx);
		live = loss_of(w, 1);
	}
	assert_near(tg_item(live), 6, 0);
	assert_ctx_ok(ctx);
	assert_int_not_equal(tg_backward(kept), 0);
	assert_error(ctx, TG_ESTALE, "tg_backward");
	tg_clear_error(ctx);
	/* nothing reached w: its gradient is unset or zero */
	tg_tensor *g = tg_grad(w);
	for (int i = 0; g && i < 3; i++)
		assert_near(tg_get(g, (size_t)i), 0, 0);
	/* the live graph still gives its own gradient, x = (1, 2, 3) */
	assert_int_equal(tg_backward(live), 0);
	for (int i = 0; i < 3; i++)
		assert_near(tg_get(tg_grad(w), (size_t)i), 1 + i, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void a_handle_kept_over_200k_resets_of_varied_steps_is_stale(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	enum { KEEP = 6 };
	tg_tensor *kept[KEEP];
	int at[KEEP] = { 0, 1, 97, 4099, 65536, 199998 };
	int k = 0;
	uint64_t seed = 12345;
	for (int r = 0; r < 200000; r++) {
		tg_reset(ctx);
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		int n = (int)(seed >> 58); /* 0 to 63 tensors */
		int64_t len = 1 + (int64_t)((seed >> 40) & 7);
		for (int i = 0; i < n; i++)
			assert_non_null(tg_full(ctx, TG_F32, SHAPE(len), r));
		if (k < KEEP && r == at[k])
			kept[k++] = tg_full(ctx, TG_F64, SHAPE(2), 42);
	}
	/* a last step larger than two of the others: a reused slot would now
	 * hold a live header */
	step_of(ctx, 5000, 0);
	assert_int_equal(k, KEEP);
	for (int i = 0; i < KEEP; i++)
		assert_stale(ctx, kept[i]);
	tg_ctx_free(ctx);
}

static void a_handle_into_pages_given_back_is_stale_naming_the_function(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *kept = tg_full(ctx, TG_F64, SHAPE(2, 3), 42);
	tg_set_name(kept, "kept");
	/* 100 steps of 500 headers: several MiB, far past a batch */
	for (int r = 0; r < 99; r++)
		step_of(ctx, 500, r);
	step_of(ctx, 3000, 99);
	if (has_range(ctx) && magic_of(kept) != 0)
		fail_msg("the header's page was not given back: magic %#llx",
			 (unsigned long long)magic_of(kept));
	assert_stale(ctx, kept);
	assert_null(tg_relu(kept));
	assert_error(ctx, TG_ESTALE, "tg_relu: tensor");
	assert_error(ctx, TG_ESTALE, "now step 101");
	tg_clear_error(ctx);
	tg_ctx_free(ctx);
}

static void functions_without_a_live_argument_find_the_context(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *labels = tg_from_f64(ctx, TG_I64, SHAPE(3), (double[]){ 0, 2, 1 });
	tg_tensor *x = tg_param(tg_ones(ctx, TG_F64, SHAPE(3)));
	tg_tensor *z = tg_mul(x, x);
	tg_tensor *y = tg_sum(z);
	assert_ctx_ok(ctx);
	for (int r = 0; r < 99; r++)
		step_of(ctx, 500, r);
	if (has_range(ctx) && (magic_of(labels) != 0 || magic_of(y) != 0))
		fail_msg("the first headers were not given back");
	assert_null(tg_one_hot(labels, TG_F64, 3));
	assert_error(ctx, TG_ESTALE, "tg_one_hot: tensor");
	tg_clear_error(ctx);
	tg_tensor *g = NULL;
	/* no argument alive: the context is found by address */
	assert_int_equal(tg_grad_of(1, &y, NULL, 1, &z, &g, 0), -1);
	assert_error(ctx, TG_ESTALE, "tg_grad_of: tensor");
	assert_null(g);
	tg_clear_error(ctx);
	tg_ctx_free(ctx);
}

static void the_previous_step_is_stale_with_its_shape_and_name(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	for (int r = 0; r < 3000; r++) {
		tg_tensor *old = tg_full(ctx, TG_F64, SHAPE(2, 3), r);
		tg_set_name(old, "old");
		step_of(ctx, 1 + r % 200, r);
		assert_null(tg_exp(old));
		assert_error(ctx, TG_ESTALE, "tg_exp: tensor (2,3) old was freed by tg_reset");
		tg_clear_error(ctx);
	}
	tg_ctx_free(ctx);
}

/* ---- contexts side by side -------------------------------------------------- */

static void two_contexts_interleaved_each_report_their_own(void **state)
{
	(void)state;
	tg_ctx *a = tg_ctx_new(1);
	tg_ctx *b = tg_ctx_new(2);
	tg_tensor *a_new = tg_scalar(a, TG_F64, 1);
	tg_tensor *b_new = tg_scalar(b, TG_F64, 2);
	tg_tensor *a_old = NULL, *b_old = NULL;
	for (int r = 0; r < 300; r++) {
		if (r == 150) {
			a_old = tg_full(a, TG_F64, SHAPE(4), 1.5);
			b_old = tg_full(b, TG_F64, SHAPE(5), 2.5);
		}
		step_of(a, 100 + r % 7, r);
		step_of(b, 90 + r % 11, -r);
	}
	/* a_new and b_new were given back, a_old and b_old are still in memory */
	if (has_range(a) && (magic_of(a_new) != 0 || magic_of(b_new) != 0))
		fail_msg("the first headers were not given back");
	tg_tensor *handles[4] = { a_new, b_new, a_old, b_old };
	tg_ctx *owner[4] = { a, b, a, b };
	for (int i = 0; i < 4; i++) {
		tg_ctx *other = owner[i] == a ? b : a;
		assert_true(isnan(tg_item(handles[i])));
		assert_error(owner[i], TG_ESTALE, "tg_item: tensor");
		assert_ctx_ok(other);
		tg_clear_error(owner[i]);
		assert_stale(owner[i], handles[i]);
		assert_ctx_ok(other);
	}
	/* a live tensor of a next to a stale one of b (its header given back):
	 * the stale use is b's error, the foreign argument a's */
	assert_null(tg_add(tg_scalar(a, TG_F64, 1), b_new));
	assert_error(b, TG_ESTALE, "tg_add: tensor");
	assert_error(a, TG_ECTX, "tg_add: argument 1 belongs to another context, whose tg_reset");
	tg_clear_error(a);
	tg_clear_error(b);
	tg_ctx_free(a);
	/* b goes on alone, a new context beside it */
	tg_ctx *c = tg_ctx_new(3);
	tg_tensor *c_old = tg_scalar(c, TG_F64, 3);
	for (int r = 0; r < 200; r++) {
		step_of(c, 100, r);
		step_of(b, 100, r);
	}
	assert_stale(c, c_old);
	assert_ctx_ok(b);
	assert_stale(b, b_new);
	assert_ctx_ok(c);
	tg_ctx_free(b);
	tg_ctx_free(c);
}

/* Each thread runs its own context, makes a stale handle into pages given
 * back and checks it while the other creates and frees contexts. */
static void *stale_in_a_thread(void *arg)
{
	int *fails = arg;
	for (int round = 0; round < 4; round++) {
		tg_ctx *ctx = tg_ctx_new((uint64_t)round);
		tg_tensor *kept = tg_scalar(ctx, TG_F64, 42);
		for (int r = 0; r < 60; r++) {
			tg_reset(ctx);
			for (int i = 0; i < 500; i++)
				tg_scalar(ctx, TG_F64, i);
		}
		if (!isnan(tg_item(kept)) || tg_status_of(ctx) != TG_ESTALE)
			(*fails)++;
		tg_ctx_free(ctx);
	}
	return NULL;
}

static void threads_find_their_own_contexts_stale_tensors(void **state)
{
	(void)state;
	pthread_t th[2];
	int fails[2] = { 0, 0 };
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, stale_in_a_thread, &fails[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	if (fails[0] || fails[1])
		fail_msg("stale handles not reported: %d and %d of 4", fails[0], fails[1]);
}

/* ---- memory ----------------------------------------------------------------- */

static void memory_stays_bounded_over_a_long_run_of_resets(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	for (int r = 0; r < 1000; r++)
		step_of(ctx, 30, r);
	long before = resident_pages();
	/* 300k steps of 30 headers: about 1.5 GB of header addresses */
	for (int r = 0; r < 300000; r++) {
		tg_reset(ctx);
		for (int i = 0; i < 30; i++)
			tg_scalar(ctx, TG_F32, i);
	}
	long after = resident_pages();
	long page = sysconf(_SC_PAGESIZE);
	long grew = (after - before) * page;
	assert_true(before > 0);
	if (grew > 64l << 20)
		fail_msg("resident memory grew by %ld bytes over 300k steps (%ld to %ld pages)",
			 grew, before, after);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* Each piece given back leaves a fresh mapping behind (and, with huge pages,
 * one that asks for them): it must join its neighbours, or every give-back
 * adds a mapping until the process's limit (65530) makes mmap fail. */
static void mappings_stay_few_over_a_long_run_of_resets(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	for (int r = 0; r < 1000; r++)
		step_of(ctx, 30, r);
	int before = mapping_count();
	uint64_t given = ctx->arena.hdr.given_back;
	/* 100k steps of 30 headers: 550 MB of headers, 260 pieces of 2 MiB */
	for (int r = 0; r < 100000; r++) {
		tg_reset(ctx);
		for (int i = 0; i < 30; i++)
			tg_scalar(ctx, TG_F32, i);
	}
	int after = mapping_count();
	assert_true(before > 0);
	if (after > before + 8)
		fail_msg("mappings grew from %d to %d over 100k steps", before, after);
	if (has_range(ctx) && ctx->arena.hdr.given_back - given < (uint64_t)200 << 20)
		fail_msg("only %llu bytes were given back over 100k steps",
			 (unsigned long long)(ctx->arena.hdr.given_back - given));
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* Huge pages are asked for once the cursor has passed 1 MiB: before, a
 * context holds in memory no more header pages than it has filled. */
static void a_context_of_few_headers_stays_on_small_pages(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	if (!has_range(ctx)) {
		tg_ctx_free(ctx);
		skip();
	}
	tg_headers *h = &ctx->arena.hdr;
	tg_tensor *first = tg_scalar(ctx, TG_F64, 1);
	/* 20 steps of 200 headers: 4001 headers, 736 KB */
	for (int r = 0; r < 20; r++)
		step_of(ctx, 200, r);
	size_t filled = (size_t)((char *)h->next - (char *)h->base);
	assert_true(filled < (1 << 20));
	assert_false(h->huge_asked);
	long page = sysconf(_SC_PAGESIZE);
	long resident = range_resident_pages(ctx, 4 << 20);
	long most = (long)(filled + (size_t)page - 1) / page;
	if (!huge_pages_always() && resident > most)
		fail_msg("%ld pages of the range in memory for %zu bytes of headers (%ld pages)",
			 resident, filled, most);
	/* past 1 MiB: asked at the next reset; the small pages in use then are
	 * dropped when given back, up to the end of their 2 MiB grain */
	for (int r = 0; r < 10; r++)
		step_of(ctx, 200, r);
	assert_true(h->huge_asked);
	if (h->huge)
		assert_int_equal(h->small_end, 2 << 20);
	/* 60 steps of 1000 headers: 11 MB, the small pages given back */
	for (int r = 0; r < 60; r++)
		step_of(ctx, 1000, r);
	assert_true(h->released >= 2 << 20);
	assert_stale(ctx, first);
	tg_ctx_free(ctx);
}

/* ---- the knob: a small range that wraps, and the ring ------------------------- */

static void a_small_range_wraps_and_still_catches_recent_handles(void **state)
{
	(void)state;
	setenv("TG_HEADER_SPACE", "1048576", 1);
	tg_ctx *ctx = tg_ctx_new(1);
	unsetenv("TG_HEADER_SPACE");
	assert_true(has_range(ctx));
	assert_int_equal(ctx->arena.hdr.bytes, 1048576);
	enum { BACK = 8 };
	tg_tensor *old[BACK] = { 0 };
	/* 3000 steps of up to 400 headers: about 25 laps of 1 MiB */
	for (int r = 0; r < 3000; r++) {
		int n = 1 + (r * 37) % 400;
		step_of(ctx, n, r);
		for (int i = 0; i < BACK; i++) {
			if (!old[i])
				continue;
			assert_true(isnan(tg_item(old[i])));
			assert_error(ctx, TG_ESTALE, "tg_item: tensor");
			tg_clear_error(ctx);
		}
		for (int i = BACK - 1; i > 0; i--)
			old[i] = old[i - 1];
		old[0] = tg_full(ctx, TG_F64, SHAPE(3), r);
	}
	assert_true(ctx->arena.hdr.lap >= 20);
	tg_ctx_free(ctx);
}

static void a_step_larger_than_a_small_range_is_enomem(void **state)
{
	(void)state;
	setenv("TG_HEADER_SPACE", "65536", 1);
	tg_ctx *ctx = tg_ctx_new(1);
	unsetenv("TG_HEADER_SPACE");
	assert_true(has_range(ctx));
	size_t fit = 65536 / sizeof(tg_tensor);
	size_t made = 0;
	while (made <= fit && tg_scalar(ctx, TG_F64, 1))
		made++;
	/* one step may fill the whole range, not more */
	assert_int_equal(made, fit);
	assert_error(ctx, TG_ENOMEM, "out of tensor header space");
	tg_clear_error(ctx);
	/* the step after has no room either: the full one is now the previous
	 * step, whose headers are not overwritten */
	tg_reset(ctx);
	assert_null(tg_scalar(ctx, TG_F64, 1));
	assert_error(ctx, TG_ENOMEM, "out of tensor header space");
	tg_clear_error(ctx);
	/* from the next, steps go on */
	for (int r = 0; r < 50; r++)
		step_of(ctx, 100, r);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void the_fallback_ring_catches_a_tensor_kept_past_one_reset(void **state)
{
	(void)state;
	setenv("TG_HEADER_SPACE", "0", 1);
	tg_ctx *ctx = tg_ctx_new(1);
	unsetenv("TG_HEADER_SPACE");
	assert_false(has_range(ctx));
	for (int r = 0; r < 500; r++) {
		tg_tensor *old = tg_full(ctx, TG_F64, SHAPE(2), 7.0);
		step_of(ctx, 1 + (r * 13) % 300, r);
		assert_null(tg_neg(old));
		assert_error(ctx, TG_ESTALE, "tg_neg: tensor (2,) was freed by tg_reset");
		tg_clear_error(ctx);
	}
	/* values and gradients as with the range */
	tg_tensor *w = tg_param(tg_ones(ctx, TG_F64, SHAPE(3)));
	tg_tensor *l = loss_of(w, 1);
	assert_int_equal(tg_backward(l), 0);
	for (int i = 0; i < 3; i++)
		assert_near(tg_get(tg_grad(w), (size_t)i), 1 + i, 0);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_tensor_kept_over_4_resets_of_64_tensors_is_stale),
		cmocka_unit_test(a_loss_kept_over_4096_resets_does_not_reach_the_live_graph),
		cmocka_unit_test(a_handle_kept_over_200k_resets_of_varied_steps_is_stale),
		cmocka_unit_test(a_handle_into_pages_given_back_is_stale_naming_the_function),
		cmocka_unit_test(functions_without_a_live_argument_find_the_context),
		cmocka_unit_test(the_previous_step_is_stale_with_its_shape_and_name),
		cmocka_unit_test(two_contexts_interleaved_each_report_their_own),
		cmocka_unit_test(threads_find_their_own_contexts_stale_tensors),
		cmocka_unit_test(memory_stays_bounded_over_a_long_run_of_resets),
		cmocka_unit_test(mappings_stay_few_over_a_long_run_of_resets),
		cmocka_unit_test(a_context_of_few_headers_stays_on_small_pages),
		cmocka_unit_test(a_small_range_wraps_and_still_catches_recent_handles),
		cmocka_unit_test(a_step_larger_than_a_small_range_is_enomem),
		cmocka_unit_test(the_fallback_ring_catches_a_tensor_kept_past_one_reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
