/*
 * test_misuse.c - NULL everywhere a pointer is taken: every public function
 * of the engine, the ops and the nn layer, given NULL for each pointer
 * argument, returns its failure value and records a clear error when a
 * context is at hand. Nothing crashes (the sanitizer pass watches too).
 */
#include "../engine/test_util.h"

#include <math.h>

#include "tapegrad_dist.h"
#include "tapegrad_io.h"
#include "tapegrad_train.h"
#include "tapegrad_nn.h"

/* expr must fail (NULL or -1 or false) and leave an error in ctx that
 * contains text; the error is then cleared. */
#define FAILS_WITH(ctx, expr, text)                                                       \
	do {                                                                              \
		bool failed_ = !(expr);                                                   \
		if (!failed_)                                                             \
			fail_msg("%s did not fail", #expr);                               \
		if (tg_ok(ctx) || !strstr(tg_error(ctx), (text)))                         \
			fail_msg("%s: error \"%s\", expected one containing \"%s\"", #expr,   \
				 tg_error(ctx), (text));                                  \
		tg_clear_error(ctx);                                                      \
	} while (0)

/* expr gets no context (all its pointers are NULL): it must fail quietly. */
#define FAILS_QUIETLY(expr)                                                               \
	do {                                                                              \
		if (expr)                                                                 \
			fail_msg("%s did not fail", #expr);                               \
	} while (0)

static void every_op_given_a_null_tensor_fails_and_names_the_argument(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_ones(ctx, TG_F64, SHAPE(2, 2));
	/* binary ops name the NULL argument */
	FAILS_WITH(ctx, tg_add(a, NULL), "tg_add: argument 1 is NULL");
	FAILS_WITH(ctx, tg_sub(NULL, a), "tg_sub: argument 0 is NULL");
	FAILS_WITH(ctx, tg_mul(a, NULL), "argument 1 is NULL");
	FAILS_WITH(ctx, tg_div(a, NULL), "argument 1 is NULL");
	FAILS_WITH(ctx, tg_maximum(a, NULL), "argument 1 is NULL");
	FAILS_WITH(ctx, tg_minimum(NULL, a), "argument 0 is NULL");
	FAILS_WITH(ctx, tg_matmul(a, NULL), "argument 1 is NULL");
	FAILS_WITH(ctx, tg_matmul_t(NULL, false, a, true), "argument 0 is NULL");
	FAILS_WITH(ctx, tg_sigmoid_backward(a, NULL), "argument 1 is NULL");
	FAILS_WITH(ctx, tg_assign(a, NULL) == 0, "argument 1 is NULL");
	FAILS_WITH(ctx, tg_backward_ex(a, NULL, 0) == 0, "");
	/* index arrays and shapes */
	FAILS_WITH(ctx, tg_gather_rows(a, NULL), "NULL");
	FAILS_WITH(ctx, tg_pick(a, NULL), "NULL");
	FAILS_WITH(ctx, tg_cross_entropy(a, NULL), "NULL");
	FAILS_WITH(ctx, tg_cross_entropy_i32(a, NULL, 2), "NULL");
	FAILS_WITH(ctx, tg_index_select(a, 0, NULL), "NULL");
	FAILS_WITH(ctx, tg_nll(a, NULL), "NULL");
	FAILS_WITH(ctx, tg_reshape(a, 2, NULL), "NULL");
	FAILS_WITH(ctx, tg_sum_to(a, 2, NULL), "NULL");
	FAILS_WITH(ctx, tg_expand(a, 2, NULL), "NULL");
	FAILS_WITH(ctx, tg_zeros(ctx, TG_F64, 2, NULL), "shape is NULL");
	FAILS_WITH(ctx, tg_from_f32(ctx, TG_F32, SHAPE(2), NULL), "values is NULL");
	FAILS_WITH(ctx, tg_record(NULL, tg_ones(ctx, TG_F64, SHAPE(1)), 1, &a, NULL, 0), "NULL");
	FAILS_WITH(ctx, tg_copy_to_f64(a, NULL, 4) == 0, "output");
	FAILS_WITH(ctx, tg_gradcheck(ctx, NULL, NULL, 1, &a, NULL, NULL) == 0, "NULL");
	FAILS_WITH(ctx, tg_write_dot(tg_add(a, a), NULL) == 0, "NULL");
	FAILS_WITH(ctx, tg_write_dot_file(tg_add(a, a), NULL) == 0, "NULL");
	/* with only NULLs there is no context to tell: NULL out, no crash */
	FAILS_QUIETLY(tg_neg(NULL) || tg_exp(NULL) || tg_log(NULL) || tg_sqrt(NULL));
	FAILS_QUIETLY(tg_abs(NULL) || tg_sigmoid(NULL) || tg_tanh(NULL) || tg_relu(NULL));
	FAILS_QUIETLY(tg_leaky_relu(NULL, 0.1) || tg_elu(NULL, 1) || tg_softplus(NULL));
	FAILS_QUIETLY(tg_sum(NULL) || tg_mean(NULL) || tg_max(NULL) || tg_transpose(NULL));
	FAILS_QUIETLY(tg_sum_axis(NULL, 0, 0) || tg_mean_axis(NULL, 0, 1) || tg_max_axis(NULL, 0, 0));
	FAILS_QUIETLY(tg_softmax(NULL) || tg_log_softmax(NULL) || tg_pow(NULL, 2));
	FAILS_QUIETLY(tg_add_scalar(NULL, 1) || tg_mul_scalar(NULL, 1) || tg_detach(NULL));
	FAILS_QUIETLY(tg_keep(NULL) || tg_set_requires_grad(NULL, true) || tg_set_name(NULL, "x"));
	FAILS_QUIETLY(tg_zeros(NULL, TG_F64, SHAPE(1)) || tg_scalar(NULL, TG_F64, 1));
	FAILS_QUIETLY(tg_randn(NULL, TG_F64, SHAPE(1), 0, 1) || tg_rand(NULL, TG_F64, SHAPE(1), 0, 1));
	FAILS_QUIETLY(tg_data(NULL) || tg_data_mut(NULL) || tg_shape(NULL) || tg_name(NULL));
	FAILS_QUIETLY(tg_numel(NULL) || tg_requires_grad(NULL) || tg_is_param(NULL));
	FAILS_QUIETLY(tg_ctx_of(NULL) || tg_producer(NULL) || tg_node_input(NULL, 0));
	FAILS_QUIETLY(tg_node_output(NULL) || tg_node_op(NULL) || tg_node_needs_grad(NULL, 0));
	FAILS_QUIETLY(tg_grad_enabled(NULL) || tg_threads(NULL) || tg_arena_used(NULL));
	FAILS_QUIETLY(tg_gradcheck(NULL, NULL, NULL, 0, NULL, 0, NULL) == 0);
	FAILS_QUIETLY(tg_write_dot(NULL, stdout) == 0);
	assert_true(isnan(tg_item(NULL)) && isnan(tg_get(NULL, 0)) && isnan(tg_node_attr(NULL, 0)));
	tg_node_grad(NULL, 0, a);
	tg_zero_grad(NULL);
	tg_zero_grads(NULL);
	tg_reset(NULL);
	tg_set_anomaly(NULL, true);
	tg_set_threads(NULL, 2);
	tg_seed(NULL, 1);
	tg_clear_error(NULL);
	char buf[16];
	assert_string_equal(tg_shape_str(NULL, buf, sizeof buf), "(null)");
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void nn_functions_given_null_fail_cleanly(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_init init;
	tg_act act;
	tg_optim_kind kind;
	tg_affine l;
	tg_batchnorm bn;
	tg_dataset ds = { 0 }, other = { 0 };
	tg_tensor *p = tg_param(tg_ones(ctx, TG_F32, SHAPE(2)));
	FAILS_WITH(ctx, tg_init_parse(ctx, NULL, &init) == 0, "NULL");
	FAILS_WITH(ctx, tg_init_parse(ctx, "he", NULL) == 0, "NULL");
	FAILS_WITH(ctx, tg_act_parse(ctx, NULL, &act) == 0, "NULL");
	FAILS_WITH(ctx, tg_optim_parse(ctx, NULL, &kind) == 0, "NULL");
	FAILS_WITH(ctx, tg_affine_init(NULL, ctx, TG_F32, 2, 2, init, "fc1") == 0, "NULL");
	FAILS_WITH(ctx, tg_batchnorm_init(NULL, ctx, TG_F32, 2, "bn1") == 0, "NULL");
	FAILS_WITH(ctx, tg_mlp_new(ctx, NULL, NULL), "NULL");
	FAILS_WITH(ctx, tg_optim_new(ctx, NULL, 1, NULL), "NULL");
	/* an empty list is named as such, its pointer NULL or not */
	tg_optim_opts sgd = tg_optim_defaults(TG_SGD);
	FAILS_WITH(ctx, tg_optim_new(ctx, NULL, 0, &sgd), "no parameters to optimize");
	FAILS_WITH(ctx, tg_optim_new(ctx, &p, 0, &sgd), "no parameters to optimize");
	FAILS_QUIETLY(tg_weight_penalty(NULL, 1, 0.1)); /* no tensor, no context */
	FAILS_WITH(ctx, tg_cross_entropy_soft(p, NULL), "NULL");
	FAILS_WITH(ctx, tg_dropout_apply(p, NULL, 0.5), "NULL");
	FAILS_WITH(ctx, tg_argmax_rows(tg_ones(ctx, TG_F32, SHAPE(2, 2)), NULL) == 0, "NULL");
	FAILS_WITH(ctx, tg_load_idx(ctx, NULL, "labels", 10, &ds) == 0, "NULL");
	FAILS_WITH(ctx, tg_load_idx(ctx, "images", "labels", 10, NULL) == 0, "NULL");
	FAILS_WITH(ctx, tg_load_csv(ctx, NULL, NULL, &ds) == 0, "NULL");
	FAILS_WITH(ctx, tg_load_mnist(ctx, "/nonexistent", NULL, NULL) == 0, "NULL");
	FAILS_WITH(ctx, tg_load_iris(ctx, NULL, NULL) == 0, "NULL");
	FAILS_WITH(ctx, tg_dataset_head(ctx, NULL, 1, &ds) == 0, "NULL");
	FAILS_WITH(ctx, tg_dataset_split(ctx, &ds, 1, NULL, &other) == 0, "");
	FAILS_WITH(ctx, tg_dataset_batch(ctx, NULL, NULL, 1, TG_F32, NULL), "NULL");
	FAILS_WITH(ctx, tg_batcher_new(ctx, NULL, 10, 0), "NULL");
	FAILS_WITH(ctx, tg_checkpoint_save(ctx, NULL, &p, 1) == 0, "NULL");
	FAILS_WITH(ctx, tg_checkpoint_load(ctx, "x.ckpt", NULL, 1) == 0, "NULL");
	/* no context at all */
	FAILS_WITH(ctx, tg_affine_forward(NULL, p), "tg_affine_forward: the layer or its W or b is NULL");
	FAILS_WITH(ctx, tg_mlp_forward(NULL, p), "NULL");
	FAILS_QUIETLY(tg_batchnorm_forward(NULL, NULL));
	FAILS_QUIETLY(tg_dropout_forward(NULL, NULL) || tg_act_forward((tg_act){ TG_ACT_RELU, 0 }, NULL));
	FAILS_QUIETLY(tg_mlp_params(NULL, NULL) || tg_mlp_state(NULL, NULL));
	FAILS_QUIETLY(tg_mlp_spec(NULL) || tg_mlp_ctx(NULL) || tg_mlp_activation(NULL, 1));
	FAILS_QUIETLY(tg_optim_step(NULL) == 0 || tg_optim_state(NULL, NULL));
	/* a NULL model or module, another argument's context at hand */
	tg_optim *o = tg_optim_new(ctx, &p, 1, &sgd);
	assert_non_null(o);
	FAILS_WITH(ctx, tg_fit(NULL, o, NULL, &ds, NULL, NULL, NULL, NULL) == 0,
		   "tg_fit: the model is NULL");
	FAILS_WITH(ctx, tg_train(NULL, o, &ds, NULL, NULL, NULL) == 0, "tg_train: the MLP is NULL");
	FAILS_WITH(ctx, tg_module_add_param(NULL, p, "w", false),
		   "tg_module_add_param: the module is NULL");
	FAILS_WITH(ctx, tg_module_add_state(NULL, p, "s"), "tg_module_add_state: the module is NULL");
	tg_optim_free(o);
	FAILS_QUIETLY(tg_batch_next(NULL, TG_F32, NULL));
	FAILS_QUIETLY(tg_mlp_new(NULL, "2-2", NULL) || tg_optim_new(NULL, &p, 1, NULL));
	tg_mlp_free(NULL);
	tg_mlp_train(NULL, true);
	tg_optim_free(NULL);
	tg_optim_zero_grad(NULL);
	tg_optim_set_lr(NULL, 0.1);
	tg_batcher_free(NULL);
	tg_dataset_free(NULL);
	tg_dataset_free(&ds);
	(void)l;
	(void)bn;
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

/* A stale tensor given to the nn layer is TG_ESTALE naming the function
 * the user called (not the accessor the layer read it with); one of
 * another context is TG_ECTX in the module's or optimizer's context too. */
static void nn_functions_given_a_stale_tensor_name_themselves(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1), *other = tg_ctx_new(2);
	tg_module *m = tg_model_parse(ctx, "2-2", NULL);
	assert_non_null(m);
	tg_tensor *x = tg_ones(ctx, TG_F32, SHAPE(1, 2));
	tg_tensor *far = tg_ones(other, TG_F32, SHAPE(2));
	tg_affine l = { tg_param(tg_ones(ctx, TG_F32, SHAPE(2, 2))),
			tg_param(tg_zeros(ctx, TG_F32, SHAPE(2))) };
	tg_optim_opts sgd = tg_optim_defaults(TG_SGD);
	tg_reset(ctx);
	tg_reset(other);
	FAILS_WITH(ctx, tg_forward(m, x), "tg_forward: tensor (1,2) was freed by tg_reset");
	FAILS_WITH(ctx, tg_affine_forward(&l, x), "tg_affine_forward: tensor (1,2) was freed");
	FAILS_WITH(ctx, tg_dropout_apply(x, x, 0.5), "tg_dropout_apply: tensor (1,2) was freed");
	int32_t arg[1];
	FAILS_WITH(ctx, tg_argmax_rows(x, arg) == 0, "tg_argmax_rows: tensor (1,2) was freed");
	FAILS_WITH(ctx, tg_module_add_param(m, x, "w2", false),
		   "tg_module_add_param: tensor (1,2) was freed");
	FAILS_WITH(ctx, tg_optim_new(ctx, &x, 1, &sgd), "tg_optim_new: tensor (1,2) was freed");
	/* another context's stale tensor: its context says so, and so does ours */
	FAILS_WITH(ctx, tg_module_add_state(m, far, "s"),
		   "tensor for s belongs to another context, whose tg_reset freed it");
	FAILS_WITH(other, tg_ok(other), "tg_module_add_state: tensor (2,) was freed");
	FAILS_WITH(ctx, tg_optim_new(ctx, &far, 1, &sgd),
		   "tg_optim_new: params[0] belongs to another context, whose tg_reset freed it");
	FAILS_WITH(other, tg_ok(other), "tg_optim_new: tensor (2,) was freed");
	tg_module_free(m);
	tg_ctx_free(other);
	tg_ctx_free(ctx);
}

/* tapegrad_dist.h given a NULL tg_dist (as a build without MPI always
 * has): -1 or NULL from every call, never a crash, and TG_ENULL naming it
 * where a module or tensor reaches a context; the same with and without
 * MPI in the build (no MPI call is made: no mpirun needed). */
static void dist_functions_given_null_fail_cleanly(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_mlp_opts mo = tg_mlp_defaults();
	tg_mlp *net = tg_mlp_new(ctx, "2-2", &mo);
	tg_module *m = tg_mlp_module(net);
	tg_tensor *t = tg_keep(tg_zeros(ctx, TG_F64, SHAPE(2)));
	FAILS_WITH(ctx, tg_dist_attach(NULL, m) == 0, "tg_dist_attach: the tg_dist is NULL");
	FAILS_WITH(ctx, tg_dist_sync_bn(NULL, m) == 0, "tg_dist_sync_bn: the tg_dist is NULL");
	FAILS_WITH(ctx, tg_dist_broadcast(NULL, &t, 1) == 0,
		   "tg_dist_broadcast: the tg_dist is NULL");
	FAILS_WITH(ctx, tg_dist_allreduce(NULL, t), "tg_dist_allreduce: the tg_dist is NULL");
	FAILS_QUIETLY(tg_dist_attach(NULL, NULL) == 0 || tg_dist_sync_bn(NULL, NULL) == 0);
	FAILS_QUIETLY(tg_dist_broadcast(NULL, NULL, 1) == 0 || tg_dist_broadcast(NULL, NULL, 0) == 0);
	FAILS_QUIETLY(tg_dist_allreduce(NULL, NULL) || tg_dist_sync_buffers(NULL) == 0);
	double v[2] = { 1, 2 }, global = 7, seed = 7;
	FAILS_QUIETLY(tg_dist_sum(NULL, v, 2) == 0 || tg_dist_sum(NULL, NULL, 2) == 0);
	FAILS_QUIETLY(tg_dist_agree(NULL, true) != -1 || tg_dist_agree(NULL, false) != -1);
	FAILS_QUIETLY(tg_dist_sync_rng(NULL) == 0 || tg_dist_step_begin(NULL) == 0);
	FAILS_QUIETLY(tg_dist_step_end(NULL, false) == 0 || tg_dist_step_end(NULL, true) == 0);
	FAILS_QUIETLY(tg_dist_loss(NULL, 1.0, 3, false, &global, &seed) == 0);
	assert_true(isnan(global));
	assert_true(seed == 0);
	FAILS_QUIETLY(tg_dist_loss(NULL, 1.0, 3, false, NULL, NULL) == 0);
	FAILS_QUIETLY(tg_dist_new(NULL, NULL, NULL, NULL));
	assert_int_equal(tg_dist_rank(NULL), 0);
	assert_int_equal(tg_dist_size(NULL), 1);
	tg_dist_stats st = { .steps = 5 };
	tg_dist_stats_get(NULL, &st);
	assert_int_equal(st.steps, 0);
	tg_dist_stats_get(NULL, NULL);
	tg_dist_stats_clear(NULL);
	tg_dist_fork_rng(NULL);
	tg_dist_free(NULL);
	assert_true(v[0] == 1 && v[1] == 2);
	assert_ctx_ok(ctx);
	tg_mlp_free(net);
	tg_ctx_free(ctx);
}

/* Values a spec or a resumed run could not carry are refused where given:
 * an infinite batch-norm eps (its spec would not parse back), a negative
 * step count. */
static void values_no_run_could_resume_are_refused(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	assert_null(tg_batchnorm1d(ctx, TG_F32, 3, INFINITY, 0.9, "bn"));
	assert_error(ctx, TG_EARG,
		     "tg_batchnorm1d: \"bn\": eps = inf is not a positive normal number in f32");
	tg_clear_error(ctx);
	/* one that f32 rounds to 0 is refused there, while f64 holds it */
	assert_null(tg_batchnorm1d(ctx, TG_F32, 3, 1e-300, 0.9, "bn"));
	assert_error(ctx, TG_EARG, "eps = 1e-300 is not a positive normal number in f32");
	tg_clear_error(ctx);
	assert_null(tg_layernorm(ctx, TG_F32, 3, 1e-39, "ln"));
	assert_error(ctx, TG_EARG, "tg_layernorm: \"ln\": eps = 1e-39 is not a positive normal");
	tg_clear_error(ctx);
	tg_module *bn64 = tg_batchnorm1d(ctx, TG_F64, 3, 1e-300, 0.9, "bn");
	assert_non_null(bn64);
	tg_module_free(bn64);
	assert_null(tg_batchnorm1d(ctx, TG_F64, 3, 0.5, 1.5, "bn"));
	assert_error(ctx, TG_EARG, "tg_batchnorm1d: \"bn\": avg_decay = 1.5 is not in [0, 1]");
	tg_clear_error(ctx);
	tg_tensor *w = tg_param(tg_ones(ctx, TG_F32, SHAPE(2)));
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	tg_optim *o = tg_optim_new(ctx, &w, 1, &oo);
	assert_non_null(o);
	tg_optim_set_steps(o, 7);
	assert_ctx_ok(ctx);
	tg_optim_set_steps(o, -5);
	assert_error(ctx, TG_EARG, "tg_optim_set_steps: -5 steps; a count is >= 0");
	tg_optim_free(o);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_op_given_a_null_tensor_fails_and_names_the_argument),
		cmocka_unit_test(nn_functions_given_null_fail_cleanly),
		cmocka_unit_test(nn_functions_given_a_stale_tensor_name_themselves),
		cmocka_unit_test(values_no_run_could_resume_are_refused),
		cmocka_unit_test(dist_functions_given_null_fail_cleanly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
