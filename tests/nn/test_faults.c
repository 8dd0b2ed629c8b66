/*
 * test_faults.c - one full training step (forward, backward, optimizer,
 * reset) with the N-th allocation failing, for every N, and with the arena
 * limit at every size: each failure is a clean TG_ENOMEM, nothing leaks,
 * and the context trains again once the error is cleared. Where the linker
 * wraps the C library's allocation functions (TG_WRAP_ALLOC), saving and
 * reading a checkpoint with the N-th of those failing, likewise.
 */
#include "../engine/test_util.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "tapegrad_io.h"
#include "tapegrad_nn.h"

#ifdef TG_WRAP_ALLOC
/* malloc and friends as the library calls them, linked through ld's --wrap
 * (tests/meson.build): counted, and the call numbered libc_fail_at fails as
 * malloc fails (0: none). */
static long libc_calls, libc_fail_at;

static bool libc_fails(void)
{
	libc_calls++;
	if (libc_fail_at && libc_calls == libc_fail_at) {
		errno = ENOMEM;
		return true;
	}
	return false;
}

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t size)
{
	return libc_fails() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return libc_fails() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	return libc_fails() ? NULL : __real_realloc(p, size);
}

char *__wrap_strdup(const char *s)
{
	return libc_fails() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	return libc_fails() ? NULL : __real_strndup(s, n);
}
#endif

enum { N = 8, D = 6, K = 3 };

/* A net with every kind of module: affine, batch norm, ReLU, dropout. */
static tg_mlp *make_net(tg_ctx *ctx)
{
	tg_mlp_opts o = tg_mlp_defaults();
	o.batchnorm = true;
	o.dropout = 0.25;
	return tg_mlp_new(ctx, "6-5-4-3", &o);
}

/* forward, backward, Adam, reset; 0 when the whole step succeeded */
static int train_step(tg_ctx *ctx, tg_mlp *net, tg_optim *opt)
{
	static const int32_t labels[N] = { 0, 1, 2, 0, 1, 2, 0, 1 };
	tg_tensor *x = tg_randn(ctx, TG_F32, SHAPE(N, D), 0, 1);
	tg_tensor *loss = tg_cross_entropy_i32(tg_mlp_forward(net, x), labels, N);
	int rc = tg_backward(loss);
	if (rc == 0)
		rc = tg_optim_step(opt);
	tg_reset(ctx);
	return rc;
}

/* Builds everything and runs two steps with the fail_at-th allocation
 * failing. Returns whether anything failed. */
static bool run_with_failure(long fail_at, long *calls)
{
	counting c = { .fail_at = fail_at };
	tg_allocator a = { counting_alloc, counting_free, &c };
	tg_ctx *ctx = tg_ctx_new_with(3, &a);
	if (!ctx) {
		assert_int_equal(c.live, 0);
		*calls = c.calls;
		return true;
	}
	tg_mlp *net = make_net(ctx);
	size_t n = 0;
	tg_tensor *const *params = net ? tg_mlp_params(net, &n) : NULL;
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	tg_optim *opt = net ? tg_optim_new(ctx, params, n, &oo) : NULL;
	bool failed = !net || !opt;
	for (int step = 0; step < 2 && !failed; step++)
		failed = train_step(ctx, net, opt) != 0;
	if (failed) {
		assert_error(ctx, TG_ENOMEM, "out of memory");
		tg_clear_error(ctx);
		tg_reset(ctx);
		/* a backward that failed may have left gradients partly accumulated */
		tg_optim_zero_grad(opt);
		if (net && opt) { /* the same net trains on once memory is back */
			c.fail_at = 0;
			assert_int_equal(train_step(ctx, net, opt), 0);
			assert_ctx_ok(ctx);
		}
	} else {
		assert_ctx_ok(ctx);
	}
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_ctx_free(ctx);
	if (c.live != 0)
		fail_msg("failing allocation %ld: %ld allocations not freed", fail_at, c.live);
	*calls = c.calls;
	return failed;
}

static void every_failing_allocation_in_a_training_step_is_a_clean_enomem(void **state)
{
	(void)state;
	long total = 0;
	run_with_failure(0, &total);
	assert_true(total > 5);
	long failures = 0;
	for (long n = 1; n <= total; n++) {
		long calls;
		failures += run_with_failure(n, &calls);
	}
	print_message("%ld allocations in two steps; each failed in turn: %ld clean failures\n",
		      total, failures);
	assert_int_equal(failures, total);
}

static void every_arena_limit_gives_a_clean_enomem(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(3);
	tg_mlp *net = make_net(ctx);
	size_t n;
	tg_tensor *const *params = tg_mlp_params(net, &n);
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	tg_optim *opt = tg_optim_new(ctx, params, n, &oo);
	assert_int_equal(train_step(ctx, net, opt), 0);
	size_t need = tg_arena_high_water(ctx);
	long failures = 0;
	for (size_t limit = 16; limit < need; limit += 16) {
		tg_set_arena_limit(ctx, limit);
		if (train_step(ctx, net, opt) != 0) {
			assert_error(ctx, TG_ENOMEM, "step arena limit");
			tg_clear_error(ctx);
			tg_optim_zero_grad(opt); /* refused until then if partly accumulated */
			failures++;
		}
	}
	tg_set_arena_limit(ctx, need);
	assert_int_equal(train_step(ctx, net, opt), 0);
	assert_ctx_ok(ctx);
	print_message("a step needs %zu arena bytes; %ld smaller limits each failed cleanly\n",
		      need, failures);
	assert_true(failures > 0);
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_ctx_free(ctx);
}

#ifdef TG_WRAP_ALLOC
/* Save a state (tensors and metadata), read it, load it, export it; 0 when
 * all of it succeeded. */
static int save_and_read(tg_ctx *ctx, const char *path, const char *npz, tg_tensor *const *t)
{
	tg_state *s = tg_state_new(ctx);
	int64_t epoch = 3;
	int rc = s ? tg_state_add(s, t, 2) : -1;
	if (rc == 0)
		rc = tg_state_set_string(s, "arch", "3-2");
	if (rc == 0)
		rc = tg_state_set_i64(s, "epoch", &epoch, 1);
	if (rc == 0)
		rc = tg_checkpoint_save_state(ctx, path, s);
	tg_state_free(s);
	tg_state *r = NULL;
	if (rc == 0)
		rc = tg_checkpoint_read(ctx, path, &r);
	if (rc == 0 && !tg_state_string(r, "arch"))
		rc = -1;
	tg_state_free(r);
	if (rc == 0)
		rc = tg_checkpoint_load(ctx, path, t, 2);
	if (rc == 0)
		rc = tg_export_npz(ctx, npz, t, 2);
	return rc;
}

static void every_failing_libc_allocation_in_a_checkpoint_save_is_a_clean_enomem(void **state)
{
	(void)state;
	char dir[] = "/tmp/tg_faults_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], npz[256];
	snprintf(path, sizeof path, "%s/model.ckpt", dir);
	snprintf(npz, sizeof npz, "%s/model.npz", dir);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *t[2] = {
		tg_set_name(tg_param(tg_randn(ctx, TG_F32, SHAPE(3, 2), 0, 1)), "fc1.W"),
		tg_set_name(tg_param(tg_randn(ctx, TG_F32, SHAPE(2), 0, 1)), "fc1.b"),
	};
	float w0 = tg_get(t[0], 4);
	libc_calls = 0;
	assert_int_equal(save_and_read(ctx, path, npz, t), 0);
	long total = libc_calls;
	assert_true(total > 10);
	long failures = 0;
	for (long n = 1; n <= total; n++) {
		libc_calls = 0;
		libc_fail_at = n;
		int rc = save_and_read(ctx, path, npz, t);
		libc_fail_at = 0;
		if (rc != 0) {
			assert_error(ctx, TG_ENOMEM, "out of memory");
			tg_clear_error(ctx);
			failures++;
		}
		assert_ctx_ok(ctx);
		/* the file saved before is whole, and the next save goes through */
		((float *)tg_data_mut(t[0]))[4] = 0;
		assert_int_equal(tg_checkpoint_load(ctx, path, t, 2), 0);
		assert_float_equal(tg_get(t[0], 4), w0, 0);
		assert_int_equal(save_and_read(ctx, path, npz, t), 0);
	}
	print_message("%ld C library allocations in a save and read; %ld failed cleanly\n", total,
		      failures);
	assert_true(failures > 0);
	tg_ctx_free(ctx);
	unlink(path);
	unlink(npz);
	assert_int_equal(rmdir(dir), 0);
}
#else
static void every_failing_libc_allocation_in_a_checkpoint_save_is_a_clean_enomem(void **state)
{
	(void)state;
	skip(); /* the linker cannot wrap malloc here */
}
#endif

/* The failing calls of round, made once: constructors that fail partway,
 * after making some parameters or state. */
static void failing_constructors(tg_ctx *ctx, tg_optim_opts *oo, tg_tensor *const *p, size_t n,
				 counting *c)
{
	assert_null(tg_model_parse(ctx, "linear:4:8,relu,bn:8,bogus:3", NULL));
	assert_error(ctx, TG_EARG, "unknown kind \"bogus\"");
	tg_clear_error(ctx);
	assert_null(tg_model_parse(ctx, "linear:4:8,relu,linear:8:x", NULL));
	assert_error(ctx, TG_EARG, "must be an integer");
	tg_clear_error(ctx);
	assert_null(tg_model_parse_image(ctx, "conv4:3-pool2-8-bogus", 1, 8, 8, NULL));
	tg_clear_error(ctx);
	assert_null(tg_mlp_new(ctx, "4-8-x", NULL));
	tg_clear_error(ctx);
	/* the state of the second parameter cannot be made */
	c->fail_at = c->calls + 3;
	assert_null(tg_optim_new(ctx, p, n, oo));
	c->fail_at = 0;
	assert_error(ctx, TG_ENOMEM, "out of memory");
	tg_clear_error(ctx);
	tg_reset(ctx);
}

/* Context tensors live until tg_ctx_free, so the parameters and state of a
 * constructor that failed partway are freed by it: repeated failures leave
 * the context's memory as it was, where they once grew it without bound. */
static void failed_constructors_leave_no_context_tensors(void **state)
{
	(void)state;
	counting c = { 0 };
	tg_allocator a = { counting_alloc, counting_free, &c };
	tg_ctx *ctx = tg_ctx_new_with(3, &a);
	assert_non_null(ctx);
	tg_module *m = tg_model_parse(ctx, "linear:4:3", NULL);
	assert_non_null(m);
	tg_tensor *p[2];
	size_t n = tg_module_params(m, p, 2);
	assert_int_equal(n, 2);
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	failing_constructors(ctx, &oo, p, n, &c); /* the arena's first blocks */
	long live = c.live;
	for (int i = 0; i < 200; i++)
		failing_constructors(ctx, &oo, p, n, &c);
	if (c.live != live)
		fail_msg("200 rounds of failed constructors left %ld allocations of the context",
			 c.live - live);
	tg_module_free(m);
	tg_ctx_free(ctx);
	assert_int_equal(c.live, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_failing_allocation_in_a_training_step_is_a_clean_enomem),
		cmocka_unit_test(every_arena_limit_gives_a_clean_enomem),
		cmocka_unit_test(failed_constructors_leave_no_context_tensors),
		cmocka_unit_test(every_failing_libc_allocation_in_a_checkpoint_save_is_a_clean_enomem),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
