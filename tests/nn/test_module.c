/*
 * test_module.c - the module interface: a user's own module trained inside a
 * sequential, parameter and state lists, train/eval, architecture strings
 * both ways, weight decay as a property of the tensor, and nothing leaked
 * when building fails half way.
 */
#include "../engine/test_util.h"
#include "tapegrad_nn.h"

#include <stdlib.h>

enum { SEED = 4321 };

static tg_tensor *f64(tg_ctx *ctx, int ndim, const int64_t *shape, const double *v)
{
	return tg_from_f64(ctx, TG_F64, ndim, shape, v);
}

static void assert_values(const tg_tensor *t, const double *want, size_t n, double tol)
{
	assert_non_null(t);
	assert_int_equal(tg_numel(t), n);
	for (size_t i = 0; i < n; i++) {
		double got = tg_get(t, i);
		if (!(fabs(got - want[i]) <= tol))
			fail_msg("element %zu = %.12g, expected %.12g (tolerance %g)", i, got,
				 want[i], tol);
	}
}

/* Bitwise equality of two tensors' values. */
static void assert_same_bits(const tg_tensor *a, const tg_tensor *b)
{
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(tg_numel(a), tg_numel(b));
	assert_int_equal(tg_dtype_of(a), tg_dtype_of(b));
	size_t bytes = tg_numel(a) * (tg_dtype_of(a) == TG_F64 ? 8 : 4);
	if (memcmp(tg_data(a), tg_data(b), bytes))
		fail_msg("%s and %s differ: %.17g vs %.17g at 0", tg_name(a) ? tg_name(a) : "a",
			 tg_name(b) ? tg_name(b) : "b", tg_get(a, 0), tg_get(b, 0));
}

/* ---- a module of one's own: y = x * s, s learned ------------------------------------ */

static tg_tensor *scale_forward(tg_module *m, tg_tensor *x)
{
	return tg_mul(x, m->params[0]);
}

static const tg_module_vt scale_vt = {.kind = "scale", .forward = scale_forward};

/* a forward that answers with a tensor of another context, or a freed one */
static tg_ctx *stray_ctx;

static tg_tensor *stray_forward(tg_module *m, tg_tensor *x)
{
	(void)m;
	if (stray_ctx)
		return tg_ones(stray_ctx, TG_F64, 1, (int64_t[]){2});
	tg_tensor *y = tg_ones(tg_ctx_of(x), TG_F64, 1, (int64_t[]){2});
	tg_reset(tg_ctx_of(x));
	return y;
}

static const tg_module_vt stray_vt = {.kind = "stray", .forward = stray_forward};

static tg_module *scale_new(tg_ctx *ctx, int64_t d, const char *name)
{
	tg_module *m = tg_module_new(ctx, &scale_vt, name, NULL);
	if (m && !tg_module_add_param(m, tg_ones(ctx, TG_F64, 1, (int64_t[]){d}), "s", false)) {
		tg_module_free(m);
		return NULL;
	}
	return m;
}

/* L = sum((s x - 2 x)^2): dL/ds_i = 2 x_i^2 (s_i - 2), so SGD with lr keeps
 * s_i - 2 = (1 - 2 lr x_i^2)^k (s0 - 2) after k steps. */
static void a_users_module_trains_inside_a_sequential(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *seq = tg_sequential(ctx, "net");
	assert_int_equal(tg_module_add(seq, scale_new(ctx, 3, "scale")), 0);
	tg_tensor *p[2];
	assert_int_equal(tg_module_params(seq, p, 2), 1);
	assert_string_equal(tg_name(p[0]), "scale.s");
	assert_true(tg_requires_grad(p[0]));
	assert_false(tg_decays(p[0]));
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = 0.01;
	tg_optim *opt = tg_optim_new(ctx, p, 1, &oo);
	const double x0[3] = {1, 2, 3};
	enum { STEPS = 3 };
	for (int k = 0; k < STEPS; k++) {
		tg_tensor *x = f64(ctx, SHAPE(3), x0);
		tg_tensor *d = tg_sub(tg_forward(seq, x), tg_mul_scalar(x, 2));
		tg_optim_zero_grad(opt);
		assert_int_equal(tg_backward(tg_sum(tg_mul(d, d))), 0);
		assert_int_equal(tg_optim_step(opt), 0);
		tg_reset(ctx);
	}
	double want[3];
	for (int i = 0; i < 3; i++)
		want[i] = 2 - pow(1 - 2 * oo.lr * x0[i] * x0[i], STEPS);
	assert_values(p[0], want, 3, 1e-12);
	/* a module of one's own has no spec */
	char buf[64];
	assert_int_equal(tg_module_spec(seq, buf, sizeof buf), -1);
	assert_error(ctx, TG_EARG, "module \"scale\" of kind scale has no spec");
	tg_clear_error(ctx);
	tg_optim_free(opt);
	tg_module_free(seq);
	tg_ctx_free(ctx);
}

/* ---- lists: order and names; the same draws as tg_mlp_new --------------------------- */

static void params_and_tensors_come_in_order_with_the_mlps_names(void **state)
{
	(void)state;
	tg_mlp_opts o = tg_mlp_defaults();
	o.batchnorm = true;
	tg_ctx *a = tg_ctx_new(SEED), *b = tg_ctx_new(SEED);
	tg_module *m = tg_model_parse(a, "4-3-2", &o);
	tg_mlp *net = tg_mlp_new(b, "4-3-2", &o);
	assert_non_null(m);
	assert_non_null(net);
	static const char *const names[] = {
	    "fc1.W", "fc1.b", "bn1.gamma",	  "bn1.beta",
	    "fc2.W", "fc2.b", "bn1.running_mean", "bn1.running_var"};
	tg_tensor *t[8] = {0};
	assert_int_equal(tg_module_params(m, NULL, 0), 6);
	assert_int_equal(tg_module_tensors(m, t, 8), 8);
	size_t ns;
	tg_tensor *const *st = tg_mlp_state(net, &ns);
	assert_int_equal(ns, 8);
	for (int i = 0; i < 8; i++) {
		assert_string_equal(tg_name(t[i]), names[i]);
		assert_string_equal(tg_name(st[i]), names[i]);
		assert_same_bits(t[i], st[i]); /* same seed, same draws in the same order */
		assert_int_equal(tg_requires_grad(t[i]), i < 6);
	}
	/* a short out: the count still, only cap written */
	tg_tensor *two[3] = {0};
	assert_int_equal(tg_module_params(m, two, 2), 6);
	assert_ptr_equal(two[0], t[0]);
	assert_ptr_equal(two[1], t[1]);
	assert_null(two[2]);
	assert_ptr_equal(tg_mlp_module(net)->children[0]->params[0], st[0]);
	tg_module_free(m);
	tg_mlp_free(net);
	tg_ctx_free(a);
	tg_ctx_free(b);
}

/* ---- train/eval reaches every child --------------------------------------------------- */

/* A decoder using the encoder's weight transposed: y = (x W) W^T. */
static tg_tensor *tied_forward(tg_module *m, tg_tensor *x)
{
	return tg_matmul_t(x, false, m->params[0], true);
}

static const tg_module_vt tied_vt = {.kind = "tied", .forward = tied_forward};

static void a_weight_two_modules_share_is_one_parameter(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *m = tg_sequential(ctx, "ae");
	tg_module *enc = tg_linear(ctx, TG_F64, 3, 2, (tg_init){TG_INIT_STD, 0.5}, "enc");
	tg_module_add(m, enc);
	tg_module *dec = tg_module_new(ctx, &tied_vt, "dec", NULL);
	tg_tensor *W = enc->params[0];
	assert_ptr_equal(tg_module_add_param(dec, W, "W", true), W);
	tg_module_add(m, dec);
	assert_ctx_ok(ctx);
	/* W, enc.b: W once, where first met */
	tg_tensor *p[4], *t[4];
	assert_int_equal(tg_module_params(m, NULL, 0), 2);
	assert_int_equal(tg_module_params(m, p, 4), 2);
	assert_ptr_equal(p[0], W);
	assert_ptr_equal(p[1], enc->params[1]);
	assert_int_equal(tg_module_tensors(m, t, 4), 2);
	/* an optimizer takes the list as it is (each tensor once) */
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = 0.1;
	tg_optim *opt = tg_optim_new(ctx, p, 2, &oo);
	assert_non_null(opt);
	/* one SGD step moves W by lr times the gradient of both of its uses */
	double x0[3] = {1, -2, 0.5};
	tg_tensor *x = f64(ctx, SHAPE(1, 3), x0);
	tg_tensor *ref = tg_param(tg_from_f64(ctx, TG_F64, 2, tg_shape(W), tg_data(W)));
	tg_tensor *b = tg_detach(enc->params[1]);
	tg_tensor *want = tg_sum(tg_mul(tg_matmul_t(tg_add(tg_matmul(x, ref), b), false, ref, true), x));
	tg_backward(want);
	tg_tensor *loss = tg_sum(tg_mul(tg_forward(m, x), x));
	tg_optim_zero_grad(opt);
	tg_backward(loss);
	assert_ctx_ok(ctx);
	double w1[6];
	for (size_t i = 0; i < 6; i++)
		w1[i] = tg_get(ref, i) - 0.1 * tg_get(tg_grad(ref), i);
	tg_optim_step(opt);
	assert_values(W, w1, 6, 1e-15);
	assert_ctx_ok(ctx);
	tg_optim_free(opt);
	tg_module_free(m);
	tg_ctx_free(ctx);
}

static void train_and_eval_reach_every_child(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *seq = tg_sequential(ctx, NULL);
	tg_module *inner = tg_sequential(ctx, "inner");
	tg_module_add(inner, tg_batchnorm1d(ctx, TG_F64, 2, 1e-5, 0.9, "bn"));
	tg_module_add(seq, inner);
	tg_module_add(seq, tg_dropout_layer(ctx, 0.5, "drop"));
	assert_ctx_ok(ctx);
	tg_module *bn = inner->children[0], *drop = seq->children[1];
	assert_true(bn->training && drop->training);
	tg_module_train(seq, false);
	assert_false(seq->training || inner->training || bn->training || drop->training);
	/* eval: dropout is the identity, batch norm uses the running statistics */
	tg_tensor *x = f64(ctx, SHAPE(2, 2), (double[]){3, 5, 1, 11});
	assert_ptr_equal(tg_forward(drop, x), x);
	tg_assign(bn->state[0], f64(ctx, SHAPE(2), (double[]){1, 2}));
	tg_assign(bn->state[1], f64(ctx, SHAPE(2), (double[]){4, 9}));
	double s0 = sqrt(4 + 1e-5), s1 = sqrt(9 + 1e-5);
	assert_values(tg_forward(seq, x), (double[]){2 / s0, 3 / s1, 0 / s0, 9 / s1}, 4, 1e-12);
	assert_values(bn->state[0], (double[]){1, 2}, 2, 0); /* unchanged */
	/* training: batch statistics (mean 2, 8; biased var 1, 9), running ones move */
	tg_module_train(seq, true);
	assert_true(bn->training && drop->training);
	tg_tensor *y = tg_forward(inner, x);
	double e0 = sqrt(1 + 1e-5), e1 = sqrt(9 + 1e-5);
	assert_values(y, (double[]){1 / e0, -3 / e1, -1 / e0, 3 / e1}, 4, 1e-12);
	assert_values(bn->state[0], (double[]){0.9 * 1 + 0.1 * 2, 0.9 * 2 + 0.1 * 8}, 2, 1e-12);
	/* training dropout: every element 0 or doubled */
	tg_tensor *z = tg_forward(drop, x);
	for (size_t i = 0; i < 4; i++)
		if (tg_get(z, i) != 0 && tg_get(z, i) != 2 * tg_get(x, i))
			fail_msg("dropout element %zu = %g of %g", i, tg_get(z, i), tg_get(x, i));
	assert_ctx_ok(ctx);
	tg_module_free(seq);
	tg_ctx_free(ctx);
}

/* ---- specs ---------------------------------------------------------------------------- */

static void every_builtin_module_writes_a_spec_that_reads_back(void **state)
{
	(void)state;
	static const char *const arch =
	    "embedding:10:6,flatten,linear:6:4,bn:4,relu,leaky_relu:0.1,elu:0.5,sigmoid,tanh,"
	    "identity,dropout:0.25,ln:4,ln:4:1e-06,bn:4:0.001:0.5,linear:4:3";
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *m = tg_model_parse(ctx, arch, NULL);
	assert_non_null(m);
	assert_int_equal(m->nchildren, 15);
	char buf[512], again[512];
	int n = tg_module_spec(m, buf, sizeof buf);
	assert_int_equal(n, (int)strlen(arch));
	assert_string_equal(buf, arch);
	/* a short buffer: snprintf's contract */
	char small[8];
	assert_int_equal(tg_module_spec(m, small, sizeof small), n);
	assert_string_equal(small, "embeddi");
	assert_int_equal(tg_module_spec(m, NULL, 0), n);
	/* round trip: the same architecture and tensor names */
	tg_module *r = tg_model_parse(ctx, buf, NULL);
	assert_non_null(r);
	assert_int_equal(tg_module_spec(r, again, sizeof again), n);
	assert_string_equal(again, arch);
	tg_tensor *t1[32], *t2[32];
	size_t k = tg_module_tensors(m, t1, 32);
	assert_int_equal(tg_module_tensors(r, t2, 32), k);
	assert_int_equal(k, 1 + 2 + 4 + 2 + 2 + 4 + 2);
	for (size_t i = 0; i < k; i++)
		assert_string_equal(tg_name(t1[i]), tg_name(t2[i]));
	assert_string_equal(tg_name(t1[0]), "emb1.weight");
	/* it runs: indices (5) -> (5,6) -> ... -> (5,3) */
	tg_tensor *y = tg_forward(r, tg_from_i32(ctx, SHAPE(5), (int32_t[]){0, 9, 3, 3, 1}));
	assert_ctx_ok(ctx);
	assert_int_equal(tg_ndim(y), 2);
	assert_int_equal(tg_dim(y, 0), 5);
	assert_int_equal(tg_dim(y, 1), 3);
	tg_module_free(m);
	tg_module_free(r);
	/* an MLP's module writes the full form, which reads back with its names */
	tg_mlp_opts o = tg_mlp_defaults();
	o.batchnorm = true;
	o.dropout = 0.25;
	o.act = (tg_act){TG_ACT_TANH, 0};
	tg_mlp *net = tg_mlp_new(ctx, "4-3-2", &o);
	static const char *const mlp_arch = "linear:4:3,bn:3,tanh,dropout:0.25,linear:3:2";
	assert_int_equal(tg_module_spec(tg_mlp_module(net), buf, sizeof buf),
			 (int)strlen(mlp_arch));
	assert_string_equal(buf, mlp_arch);
	r = tg_model_parse(ctx, buf, NULL);
	size_t ns;
	tg_tensor *const *st = tg_mlp_state(net, &ns);
	assert_int_equal(tg_module_tensors(r, t2, 32), ns);
	for (size_t i = 0; i < ns; i++)
		assert_string_equal(tg_name(t2[i]), tg_name(st[i]));
	tg_module_free(r);
	tg_mlp_free(net);
	tg_ctx_free(ctx);
}

/* With opts whose batch-norm eps and avg_decay are not TG_BN_EPS and
 * TG_BN_AVG_DECAY, a piece "bn:D" takes the opts' values, and a piece that
 * states TG_BN_EPS and TG_BN_AVG_DECAY keeps them: its spec says so, so that
 * the model read back with the same opts is the model written. */
static void a_batch_norms_stated_defaults_read_back_under_other_opts(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_mlp_opts o = tg_mlp_defaults();
	o.bn_eps = 1e-3;
	o.bn_avg_decay = 0.5;
	tg_module *m = tg_model_parse(ctx, "linear:4:3,bn:3:1e-06:0.9,bn:3", &o);
	assert_non_null(m);
	const tg_batchnorm *b1 = m->children[1]->self, *b2 = m->children[2]->self;
	assert_near(b1->eps, TG_BN_EPS, 0);
	assert_near(b1->avg_decay, TG_BN_AVG_DECAY, 0);
	assert_near(b2->eps, 1e-3, 0);
	assert_near(b2->avg_decay, 0.5, 0);
	char buf[128], again[128];
	assert_true(tg_module_spec(m, buf, sizeof buf) > 0);
	tg_module *r = tg_model_parse(ctx, buf, &o);
	assert_non_null(r);
	for (size_t i = 1; i < 3; i++) {
		const tg_batchnorm *a = m->children[i]->self, *b = r->children[i]->self;
		assert_near(b->eps, a->eps, 0);
		assert_near(b->avg_decay, a->avg_decay, 0);
	}
	assert_true(tg_module_spec(r, again, sizeof again) > 0);
	assert_string_equal(again, buf);
	tg_module_free(r);
	tg_module_free(m);
	/* under the default opts the defaults are still left out */
	m = tg_model_parse(ctx, "bn:3:1e-06:0.9", NULL);
	assert_true(tg_module_spec(m, buf, sizeof buf) > 0);
	assert_string_equal(buf, "bn:3");
	assert_ctx_ok(ctx);
	tg_module_free(m);
	tg_ctx_free(ctx);
}

/* An alpha of many digits is written in all of them: the model read back
 * from its spec (a checkpoint's "arch") computes what the model did. */
static void an_activations_alpha_reads_back_exactly(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *m = tg_sequential(ctx, NULL);
	tg_module_add(m, tg_activation(ctx, (tg_act){TG_ACT_LEAKY_RELU, 0.123456789}, "a1"));
	tg_module_add(m, tg_activation(ctx, (tg_act){TG_ACT_ELU, 1.0 / 3}, "a2"));
	char buf[128];
	assert_true(tg_module_spec(m, buf, sizeof buf) > 0);
	assert_string_equal(buf, "leaky_relu:0.123456789,elu:0.3333333333333333");
	tg_module *r = tg_model_parse(ctx, buf, NULL);
	assert_non_null(r);
	for (size_t i = 0; i < 2; i++) {
		const tg_act *a = m->children[i]->self, *b = r->children[i]->self;
		if (a->alpha != b->alpha)
			fail_msg("child %zu: alpha %.17g read back as %.17g", i, a->alpha, b->alpha);
	}
	tg_tensor *x = f64(ctx, SHAPE(3), (double[]){-1.5, -0.25, 2});
	assert_same_bits(tg_forward(m, x), tg_forward(r, x));
	assert_ctx_ok(ctx);
	tg_module_free(m);
	tg_module_free(r);
	tg_ctx_free(ctx);
}

static void parse_errors_name_the_bad_piece(void **state)
{
	(void)state;
	static const struct {
		const char *arch, *why;
	} rows[] = {
	    {"linear:784", "piece 1 \"linear:784\": size 2 is missing"},
	    {"linear:784:100,deconv:3", "piece 2 \"deconv:3\": unknown kind \"deconv\""},
	    {"linear:0:10", "piece 1 \"linear:0:10\": size 1 \"0\" must be an integer"},
	    {"relu,bn:0", "piece 2 \"bn:0\": size 1 \"0\""},
	    {"embedding:10:x", "piece 1 \"embedding:10:x\": size 2 \"x\""},
	    {"relu:3", "relu takes at most 0 values"},
	    {"linear:3:4:5", "linear takes at most 2 values"},
	    {"relu,,relu", "piece 2 \"\": the kind is empty"},
	    {"dropout", "the probability is missing"},
	    {"dropout:1.5", "piece 1 \"dropout:1.5\": the drop probability must be in [0, 1)"},
	    {"ln:4:-1", "eps = -1 is not a positive normal number in f32"},
	    /* an eps that rounds to 0 in the model's dtype would give 0 / 0 */
	    {"linear:3:2,bn:2:1e-300:0",
	     "piece 2 \"bn:2:1e-300:0\": eps = 1e-300 is not a positive normal number in f32"},
	    {"ln:4:1e-40", "eps = 1e-40 is not a positive normal number in f32"},
	    {"bn:4:1e40", "eps = 1e+40 is not a positive normal number in f32"},
	    {"leaky_relu:abc", "\"abc\" is not a number"},
	    {"784-0-10", "size 2 is 0"},
	    {"", "size 1 \"\""},
	    /* parameters larger than a tensor can be: the layer's words */
	    {"3372712-23372712-8-3",
	     "\"3372712-23372712-8-3\": tg_linear: \"fc1\": a parameter of shape "
	     "(3372712,23372712) would hold more than 2^40 elements"},
	    {"relu,embedding:2147483647:1000", "tg_embedding_table: \"emb1\": a parameter of "
					       "shape (2147483647,1000) would hold"},
	    {"conv:65536:65536:1000:1000", "tg_conv2d_layer: \"conv1\": a parameter of shape "
					   "(65536,65536,1000,1000) would hold"},
	};
	tg_ctx *ctx = tg_ctx_new(SEED);
	for (size_t i = 0; i < LEN(rows); i++) {
		assert_null(tg_model_parse(ctx, rows[i].arch, NULL));
		assert_error(ctx, TG_EARG, "tg_model_parse");
		assert_error(ctx, TG_EARG, rows[i].why);
		tg_clear_error(ctx);
	}
	assert_null(tg_model_parse(ctx, NULL, NULL));
	assert_error(ctx, TG_ENULL, "tg_model_parse");
	tg_clear_error(ctx);
	tg_mlp_opts o = tg_mlp_defaults();
	o.dtype = TG_I32;
	assert_null(tg_model_parse(ctx, "linear:2:2", &o));
	assert_error(ctx, TG_EARG, "dtype");
	tg_clear_error(ctx);
	assert_null(tg_linear(ctx, TG_F32, 784, 0, o.init, "fc"));
	assert_error(ctx, TG_EARG, "tg_linear: \"fc\": sizes 784 and 0 must be positive");
	tg_ctx_free(ctx);
}

/* ---- weight decay is a property of the tensor ---------------------------------------- */

static void decay_is_set_by_the_module_and_read_by_the_optimizer(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *m = tg_model_parse(ctx, "embedding:5:3,linear:3:3,bn:3,ln:3,linear:3:2", NULL);
	tg_tensor *p[16];
	size_t n = tg_module_params(m, p, 16);
	assert_int_equal(n, 9);
	for (size_t i = 0; i < n; i++) {
		const char *s = tg_name(p[i]);
		bool weight = strlen(s) > 2 && !strcmp(s + strlen(s) - 2, ".W");
		if (tg_decays(p[i]) != weight)
			fail_msg("%s: decays %d", s, tg_decays(p[i]));
	}
	tg_affine l;
	assert_int_equal(tg_affine_init(&l, ctx, TG_F64, 2, 2, (tg_init){TG_INIT_HE, 0}, "a"), 0);
	assert_true(tg_decays(l.W));
	assert_false(tg_decays(l.b));
	tg_mlp *net = tg_mlp_new(ctx, "3-2-2", NULL);
	size_t np;
	tg_tensor *const *mp = tg_mlp_params(net, &np);
	assert_true(tg_decays(mp[0]) && !tg_decays(mp[1]) && tg_decays(mp[2]) && !tg_decays(mp[3]));
	/* the optimizer follows the flag, not the name: SGD lr 1, decay 1, grad 1 */
	tg_tensor *q[2] = {
	    tg_set_name(tg_param(tg_ones(ctx, TG_F64, SHAPE(1))), "looks.W"),
	    tg_set_decay(tg_set_name(tg_param(tg_ones(ctx, TG_F64, SHAPE(1))), "q"), true),
	};
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = 0.5;
	oo.weight_decay = 1;
	tg_optim *opt = tg_optim_new(ctx, q, 2, &oo);
	assert_int_equal(tg_backward(tg_add(tg_sum(q[0]), tg_sum(q[1]))), 0);
	assert_int_equal(tg_optim_step(opt), 0);
	assert_near(tg_get(q[0], 0), 1 - 0.5 * 1, 1e-12);
	assert_near(tg_get(q[1], 0), 1 - 0.5 * (1 + 1), 1e-12);
	/* so does the penalty: 0.5 * 0.2 * (1 - 0)^2 from q alone */
	tg_tensor *pen = tg_weight_penalty(q, 2, 0.2);
	assert_near(tg_item(pen), 0.5 * 0.2 * 0, 1e-12);
	tg_assign(q[1], tg_ones(ctx, TG_F64, SHAPE(1)));
	assert_near(tg_item(tg_weight_penalty(q, 2, 0.2)), 0.1, 1e-12);
	assert_ctx_ok(ctx);
	tg_optim_free(opt);
	tg_mlp_free(net);
	tg_module_free(m);
	tg_ctx_free(ctx);
}

/* ---- a sequential is its ops ---------------------------------------------------------- */

static void linear_relu_linear_equals_the_ops_bit_for_bit(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *seq = tg_sequential(ctx, NULL);
	tg_module_add(seq, tg_linear(ctx, TG_F32, 5, 4, (tg_init){TG_INIT_HE, 0}, "fc1"));
	tg_module_add(seq, tg_activation(ctx, (tg_act){TG_ACT_RELU, 0}, "act1"));
	tg_module_add(seq, tg_linear(ctx, TG_F32, 4, 3, (tg_init){TG_INIT_HE, 0}, "fc2"));
	tg_tensor *p[4];
	assert_int_equal(tg_module_params(seq, p, 4), 4);
	tg_tensor *x = tg_randn(ctx, TG_F32, SHAPE(7, 5), 0, 1);
	tg_tensor *hand = tg_add(tg_matmul(tg_relu(tg_add(tg_matmul(x, p[0]), p[1])), p[2]), p[3]);
	assert_int_equal(tg_backward(tg_sum(hand)), 0);
	tg_tensor *g[4];
	for (int i = 0; i < 4; i++)
		g[i] = tg_detach(tg_grad(p[i]));
	for (int i = 0; i < 4; i++)
		tg_zero_grad(p[i]);
	tg_tensor *y = tg_forward(seq, x);
	assert_same_bits(y, hand);
	assert_int_equal(tg_backward(tg_sum(y)), 0);
	for (int i = 0; i < 4; i++)
		assert_same_bits(tg_grad(p[i]), g[i]);
	assert_ctx_ok(ctx);
	tg_module_free(seq);
	tg_ctx_free(ctx);
}

/* An input of another dtype than a layer's parameters is named at the layer,
 * with both dtypes, not at the op the layer runs. */
static void an_input_of_the_wrong_dtype_names_the_layer(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *m = tg_model_parse(ctx, "linear:3:2,bn:2,relu,linear:2:2", NULL);
	assert_non_null(m);
	assert_null(tg_forward(m, tg_ones(ctx, TG_F64, SHAPE(4, 3))));
	assert_error(ctx, TG_EDTYPE, "linear \"fc1\": input is f64, the layer's parameters f32");
	tg_clear_error(ctx);
	tg_module_free(m);
	tg_mlp_opts o = tg_mlp_defaults();
	o.dtype = TG_F64;
	const char *const specs[] = {"bn:3", "ln:3", "conv:3:2:1"};
	const char *const want[] = {"bn \"bn1\": input is f32, the layer's parameters f64",
				    "ln \"ln1\": input is f32, the layer's parameters f64",
				    "conv \"conv1\": input is f32, the layer's parameters f64"};
	for (int i = 0; i < 3; i++) {
		m = tg_model_parse(ctx, specs[i], &o);
		assert_non_null(m);
		tg_tensor *x = i < 2 ? tg_ones(ctx, TG_F32, SHAPE(4, 3))
				     : tg_ones(ctx, TG_F32, SHAPE(1, 3, 4, 4));
		assert_null(tg_forward(m, x));
		assert_error(ctx, TG_EDTYPE, want[i]);
		tg_clear_error(ctx);
		tg_module_free(m);
	}
	tg_ctx_free(ctx);
}

/* ---- embedding -------------------------------------------------------------------------- */

static void embedding_looks_up_rows_of_an_index_tensor(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *e = tg_embedding_table(ctx, TG_F64, 5, 3, "tok");
	assert_non_null(e);
	tg_tensor *table = e->params[0];
	assert_string_equal(tg_name(table), "tok.weight");
	tg_tensor *idx = tg_from_i32(ctx, SHAPE(2, 2), (int32_t[]){0, 4, 4, 1});
	tg_tensor *y = tg_forward(e, idx);
	assert_int_equal(tg_ndim(y), 3);
	assert_int_equal(tg_dim(y, 2), 3);
	static const int rows[4] = {0, 4, 4, 1};
	for (int r = 0; r < 4; r++)
		for (int j = 0; j < 3; j++)
			assert_near(tg_get(y, (size_t)(r * 3 + j)),
				    tg_get(table, (size_t)(rows[r] * 3 + j)), 0);
	assert_int_equal(tg_backward(tg_sum(y)), 0);
	assert_values(tg_grad(table), (double[]){1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 2, 2, 2}, 15,
		      0);
	/* a float input is refused by the op, named */
	assert_null(tg_forward(e, tg_zeros(ctx, TG_F64, SHAPE(2))));
	assert_false(tg_ok(ctx));
	tg_module_free(e);
	tg_ctx_free(ctx);
}

/* ---- failure half way leaks nothing (ASan's leak check) ------------------------------ */

static void a_partly_built_sequential_frees_cleanly(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *seq = tg_sequential(ctx, "net");
	assert_int_equal(
	    tg_module_add(seq, tg_linear(ctx, TG_F32, 4, 3, (tg_init){TG_INIT_HE, 0}, "fc1")), 0);
	assert_int_equal(tg_module_add(seq, tg_batchnorm1d(ctx, TG_F32, 3, 1e-5, 0.9, "bn1")), 0);
	assert_int_equal(
	    tg_module_add(seq, tg_linear(ctx, TG_F32, 3, 0, (tg_init){TG_INIT_HE, 0}, "fc2")), -1);
	assert_error(ctx, TG_EARG, "tg_linear: \"fc2\"");
	/* a child built before the error is freed by the failing add */
	tg_clear_error(ctx);
	tg_module *late = tg_dropout_layer(ctx, 0.5, "late");
	tg_fail(ctx, TG_EARG, "some earlier failure");
	assert_int_equal(tg_module_add(seq, late), -1);
	assert_int_equal(seq->nchildren, 2);
	tg_module_free(seq);
	tg_clear_error(ctx);
	/* the parser frees what it built before the bad piece */
	assert_null(tg_model_parse(ctx, "linear:4:3,bn:3,relu,ln:3,bogus", NULL));
	assert_error(ctx, TG_EARG, "piece 5 \"bogus\"");
	tg_clear_error(ctx);
	/* self-containment is refused without freeing */
	tg_module *s = tg_sequential(ctx, "s");
	assert_int_equal(tg_module_add(s, s), -1);
	assert_error(ctx, TG_EARG, "cannot contain itself");
	tg_module_free(s);
	tg_module_free(NULL);
	tg_ctx_free(ctx);
}

/* ---- a module has one parent ---------------------------------------------------------- */

static void a_child_has_one_parent_and_no_cycle_is_made(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_init he = {TG_INIT_HE, 0};
	/* twice into one sequential: one copy of its parameters, freed once */
	tg_module *seq = tg_sequential(ctx, "seq");
	tg_module *fc = tg_linear(ctx, TG_F32, 4, 4, he, "fc");
	assert_int_equal(tg_module_add(seq, fc), 0);
	assert_int_equal(tg_module_add(seq, fc), -1);
	assert_error(ctx, TG_EARG,
		     "tg_module_add: module \"seq\": child \"fc\" belongs to module \"seq\" "
		     "already");
	assert_int_equal(seq->nchildren, 1);
	assert_int_equal(tg_module_params(seq, NULL, 0), 2);
	tg_clear_error(ctx);
	/* into a second sequential: refused, even when the context has failed */
	tg_module *other = tg_sequential(ctx, "other");
	assert_int_equal(tg_module_add(other, fc), -1);
	assert_error(ctx, TG_EARG, "child \"fc\" belongs to module \"seq\" already");
	assert_int_equal(tg_module_add(other, fc), -1);
	assert_int_equal(tg_module_add(NULL, fc), -1);
	assert_int_equal(other->nchildren, 0);
	tg_clear_error(ctx);
	/* a holds b: b cannot hold a, nor a's parent */
	tg_module *a = tg_sequential(ctx, "a"), *b = tg_sequential(ctx, "b");
	assert_int_equal(tg_module_add(a, b), 0);
	assert_int_equal(tg_module_add(seq, a), 0);
	assert_int_equal(tg_module_add(b, a), -1);
	assert_error(ctx, TG_EARG, "child \"a\" belongs to module \"seq\" already");
	tg_clear_error(ctx);
	assert_int_equal(tg_module_add(b, seq), -1);
	assert_error(ctx, TG_EARG,
		     "tg_module_add: module \"b\": child \"seq\" holds it; adding it would "
		     "make a cycle");
	assert_int_equal(b->nchildren, 0);
	tg_clear_error(ctx);
	tg_module_train(seq, false);
	assert_false(b->training);
	/* a child is its parent's to free: freeing it alone frees nothing */
	tg_module_free(b);
	assert_error(ctx, TG_EARG,
		     "tg_module_free: module \"b\" belongs to module \"a\"; free the model "
		     "it is part of");
	assert_int_equal(a->nchildren, 1);
	tg_clear_error(ctx);
	tg_module_free(seq);
	tg_module_free(other);
	tg_ctx_free(ctx);
}

/* ---- misuse is reported, named ------------------------------------------------------- */

static void misuse_is_a_named_error(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED), *other = tg_ctx_new(SEED);
	tg_tensor *x = tg_ones(ctx, TG_F64, SHAPE(2, 2));
	assert_null(tg_forward(NULL, x));
	assert_error(ctx, TG_ENULL, "tg_forward: the module is NULL");
	tg_clear_error(ctx);
	assert_null(tg_module_new(ctx, NULL, "m", NULL));
	assert_error(ctx, TG_ENULL, "tg_module_new: module \"m\": vt is NULL");
	tg_clear_error(ctx);
	tg_module *m = tg_sequential(ctx, "m");
	assert_null(tg_module_add_param(m, NULL, "w", true));
	assert_error(ctx, TG_ENULL, "tg_module_add_param: module \"m\": the tensor is NULL");
	tg_clear_error(ctx);
	assert_null(tg_module_add_state(m, tg_ones(other, TG_F64, SHAPE(2)), "s"));
	assert_error(ctx, TG_ECTX,
		     "tg_module_add_state: module \"m\": tensor for s belongs to "
		     "another context");
	tg_clear_error(ctx);
	/* a step tensor freed by tg_reset is stale, not of another context */
	tg_tensor *gone = tg_ones(ctx, TG_F64, SHAPE(2));
	tg_reset(ctx);
	assert_null(tg_module_add_param(m, gone, "g", false));
	assert_int_equal(tg_status_of(ctx), TG_ESTALE);
	tg_clear_error(ctx);
	/* a field or a child name twice: refused when added, not at the save */
	tg_module *d = tg_sequential(ctx, "d");
	assert_non_null(tg_module_add_param(d, tg_ones(ctx, TG_F64, SHAPE(2)), "w", true));
	assert_null(tg_module_add_param(d, tg_ones(ctx, TG_F64, SHAPE(2)), "w", true));
	assert_error(ctx, TG_EARG, "tg_module_add_param: module \"d\" has a parameter named w "
				   "already");
	tg_clear_error(ctx);
	assert_null(tg_module_add_state(d, tg_ones(ctx, TG_F64, SHAPE(2)), "w"));
	assert_error(ctx, TG_EARG, "has a parameter named w already");
	tg_clear_error(ctx);
	tg_init he = { TG_INIT_HE, 0 };
	assert_int_equal(tg_module_add(d, tg_linear(ctx, TG_F64, 2, 2, he, "fc")), 0);
	assert_int_equal(tg_module_add(d, tg_linear(ctx, TG_F64, 2, 3, he, "fc")), -1);
	assert_error(ctx, TG_EARG, "tg_module_add: module \"d\" has a child named \"fc\" already");
	tg_clear_error(ctx);
	/* modules without tensors may share a name */
	assert_int_equal(tg_module_add(d, tg_flatten(ctx, "f")), 0);
	assert_int_equal(tg_module_add(d, tg_flatten(ctx, "f")), 0);
	tg_module_free(d);
	x = tg_ones(ctx, TG_F64, SHAPE(2, 2));
	assert_int_equal(tg_module_add(m, tg_flatten(other, "f")), -1);
	assert_error(ctx, TG_ECTX, "child \"f\" belongs to another context");
	tg_clear_error(ctx);
	tg_module *o = tg_sequential(other, "o");
	assert_null(tg_forward(o, x));
	assert_error(ctx, TG_ECTX, "module \"o\" (sequential) and its input belong to different");
	tg_clear_error(ctx);
	/* nor may its output: named at the forward, not at the loss after it */
	tg_module *s = tg_module_new(ctx, &stray_vt, "s", NULL);
	stray_ctx = other;
	assert_null(tg_forward(s, x));
	assert_error(ctx, TG_ECTX,
		     "tg_forward: module \"s\" (stray) returned a tensor of another context "
		     "than its input's");
	tg_clear_error(ctx);
	stray_ctx = NULL;
	assert_null(tg_forward(s, x));
	assert_error(ctx, TG_ESTALE, "module \"s\" (stray) returned a tensor that is no longer "
				     "valid (a tg_reset freed it)");
	tg_clear_error(ctx);
	tg_module_free(s);
	x = tg_ones(ctx, TG_F64, SHAPE(2, 2));
	/* an activation is named for what is wrong with it: its kind or its alpha */
	assert_null(tg_activation(ctx, (tg_act){TG_ACT_LEAKY_RELU, NAN}, "a"));
	assert_error(ctx, TG_EARG, "tg_activation: \"a\": leaky_relu:nan: alpha must be finite");
	tg_clear_error(ctx);
	assert_null(tg_activation(ctx, (tg_act){(tg_act_kind)42, 0}, "a"));
	assert_error(ctx, TG_EARG, "tg_activation: \"a\": unknown activation 42");
	tg_clear_error(ctx);
	/* a state tensor is a copy without a gradient, named */
	tg_tensor *st = tg_module_add_state(m, tg_ones(ctx, TG_F64, SHAPE(2)), "count");
	assert_string_equal(tg_name(st), "m.count");
	assert_false(tg_requires_grad(st));
	assert_int_equal(tg_module_tensors(m, NULL, 0), 1);
	assert_int_equal(tg_module_params(NULL, NULL, 0), 0);
	assert_int_equal(tg_module_spec(NULL, NULL, 0), -1);
	tg_module_train(NULL, false);
	assert_ctx_ok(ctx);
	tg_module_free(o);
	tg_module_free(m);
	tg_ctx_free(other);
	tg_ctx_free(ctx);
}

/* ---- convolution and pooling modules ------------------------------------------------ */

static void conv_and_pool_modules_equal_the_ops_they_wrap(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_init he = {TG_INIT_HE, 0};
	tg_conv_opts o = {{2, 1}, {1, 0}, {1, 2}, 2};
	tg_module *c = tg_conv2d_layer(ctx, TG_F64, 4, 6, 3, 2, &o, he, "c");
	assert_non_null(c);
	tg_tensor *W = c->params[0], *b = c->params[1];
	assert_int_equal(c->nparams, 2);
	assert_int_equal(tg_ndim(W), 4);
	int64_t wshape[4] = {6, 2, 3, 2};
	for (int i = 0; i < 4; i++)
		assert_int_equal(tg_dim(W, i), wshape[i]);
	assert_string_equal(tg_name(W), "c.W");
	assert_string_equal(tg_name(b), "c.b");
	assert_true(tg_decays(W));
	assert_false(tg_decays(b));
	assert_true(tg_requires_grad(W) && tg_requires_grad(b));
	double zeros[6] = {0};
	assert_values(b, zeros, 6, 0);
	tg_tensor *x = tg_randn(ctx, TG_F64, SHAPE(2, 4, 7, 6), 0.0, 1.0);
	tg_tensor *y = tg_forward(c, x);
	assert_ctx_ok(ctx);
	/* H: (7 + 2 - 3) / 2 + 1 = 4; W: (6 - 2*(2-1) - 1) / 1 + 1 = 4 */
	assert_int_equal(tg_dim(y, 1), 6);
	assert_int_equal(tg_dim(y, 2), 4);
	assert_int_equal(tg_dim(y, 3), 4);
	assert_same_bits(y, tg_conv2d(x, W, b, &o));
	char buf[64];
	tg_module_spec(c, buf, sizeof buf);
	assert_string_equal(buf, "conv:4:6:3x2:2x1:1x0:1x2:2");

	/* He by fan-in C/groups*kH*kW = 16*3*3 = 144: std sqrt(2/144) = 0.11785 */
	tg_module *big = tg_conv2d_layer(ctx, TG_F64, 16, 64, 3, 3, NULL, he, "big");
	tg_tensor *bw = big->params[0];
	double ss = 0;
	for (size_t i = 0; i < tg_numel(bw); i++)
		ss += tg_get(bw, i) * tg_get(bw, i);
	assert_int_equal(tg_numel(bw), 64 * 16 * 9);
	assert_near(sqrt(ss / (double)tg_numel(bw)), sqrt(2.0 / 144), 0.03 * sqrt(2.0 / 144));
	tg_module_spec(big, buf, sizeof buf);
	assert_string_equal(buf, "conv:16:64:3");

	/* pooling: the ops, and hand-computed values */
	tg_module *mp = tg_maxpool2d_layer(ctx, 2, 0, 0, "p");
	tg_module *ap = tg_avgpool2d_layer(ctx, 3, 1, 1, "q");
	assert_int_equal(mp->nparams + ap->nparams, 0);
	assert_same_bits(tg_forward(mp, x), tg_max_pool2d(x, 2, 2, 0));
	assert_same_bits(tg_forward(ap, x), tg_avg_pool2d(x, 3, 1, 1));
	tg_tensor *s = f64(ctx, SHAPE(1, 1, 2, 2), (double[]){1, 2, 3, 4});
	assert_values(tg_forward(mp, s), (double[]){4}, 1, 0);
	/* 3x3 windows padded by 1, divided by 9: each corner sees all four */
	assert_values(tg_forward(ap, s), (double[]){10.0 / 9, 10.0 / 9, 10.0 / 9, 10.0 / 9}, 4,
		      1e-15);
	tg_module_spec(mp, buf, sizeof buf);
	assert_string_equal(buf, "maxpool:2");
	tg_module_spec(ap, buf, sizeof buf);
	assert_string_equal(buf, "avgpool:3:1:1");
	assert_ctx_ok(ctx);
	tg_module_free(c);
	tg_module_free(big);
	tg_module_free(mp);
	tg_module_free(ap);
	tg_ctx_free(ctx);
}

static void a_cnn_spec_reads_back_with_its_names(void **state)
{
	(void)state;
	static const char *const arch = "conv:4:6:3x2:2:1:1:2,relu,maxpool:2,avgpool:3:1:1,"
					"conv:6:8:3:1:1:2,flatten,linear:8:3";
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	tg_module *m = tg_model_parse(ctx, arch, &mo);
	assert_non_null(m);
	char buf[256], again[256];
	assert_int_equal(tg_module_spec(m, buf, sizeof buf), (int)strlen(arch));
	assert_string_equal(buf, arch);
	tg_module *r = tg_model_parse(ctx, buf, &mo);
	tg_module_spec(r, again, sizeof again);
	assert_string_equal(again, arch);
	static const char *const names[] = {"conv1.W", "conv1.b", "conv2.W",
					    "conv2.b", "fc1.W",	  "fc1.b"};
	tg_tensor *t1[8], *t2[8];
	assert_int_equal(tg_module_tensors(m, t1, 8), LEN(names));
	assert_int_equal(tg_module_tensors(r, t2, 8), LEN(names));
	for (size_t i = 0; i < LEN(names); i++) {
		assert_string_equal(tg_name(t1[i]), names[i]);
		assert_string_equal(tg_name(t2[i]), names[i]);
		assert_int_equal(tg_decays(t1[i]), i % 2 == 0);
	}
	assert_string_equal(m->children[2]->name, "pool1");
	assert_string_equal(m->children[3]->name, "pool2");
	/* (2,4,12,12) -> conv (2,6,6,7) -> maxpool (2,6,3,3) -> avgpool (2,6,3,3)
	 * -> conv dilation 2 (2,8,1,1) -> (2,8) -> (2,3) */
	tg_tensor *y = tg_forward(r, tg_randn(ctx, TG_F64, SHAPE(2, 4, 12, 12), 0, 1));
	assert_ctx_ok(ctx);
	assert_int_equal(tg_ndim(y), 2);
	assert_int_equal(tg_dim(y, 0), 2);
	assert_int_equal(tg_dim(y, 1), 3);
	tg_module_free(m);
	tg_module_free(r);
	/* sizes past 65535, which the layers take, are written and read back:
	 * a 1-D signal's long kernel, a pool's long stride */
	tg_conv_opts wide = {{1, 70000}, {0, 35000}, {1, 1}, 1};
	m = tg_sequential(ctx, "s");
	tg_module_add(m, tg_conv2d_layer(ctx, TG_F64, 1, 2, 1, 70001, &wide,
					     (tg_init){TG_INIT_HE, 0}, "conv1"));
	tg_module_add(m, tg_maxpool2d_layer(ctx, 1, 100000, 0, "pool1"));
	assert_ctx_ok(ctx);
	static const char *const wide_arch = "conv:1:2:1x70001:1x70000:0x35000,maxpool:1:100000";
	assert_int_equal(tg_module_spec(m, buf, sizeof buf), (int)strlen(wide_arch));
	assert_string_equal(buf, wide_arch);
	r = tg_model_parse(ctx, buf, &mo);
	assert_ctx_ok(ctx);
	tg_module_spec(r, again, sizeof again);
	assert_string_equal(again, wide_arch);
	tg_module_free(m);
	tg_module_free(r);
	tg_ctx_free(ctx);
}

static void the_short_cnn_form_builds_the_recipe(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_module *m = tg_model_parse_image(ctx, "cnn", 1, 28, 28, NULL);
	tg_module *same = tg_model_parse_image(ctx, "conv32:3p1-pool2-conv64:3p1-pool2-128-10", 1,
					       28, 28, NULL);
	assert_non_null(m);
	assert_non_null(same);
	static const char *const full =
	    "conv:1:32:3:1:1,relu,maxpool:2,conv:32:64:3:1:1,relu,maxpool:2,flatten,"
	    "linear:3136:128,relu,linear:128:10";
	char buf[256];
	tg_module_spec(m, buf, sizeof buf);
	assert_string_equal(buf, full);
	tg_module_spec(same, buf, sizeof buf);
	assert_string_equal(buf, full);
	static const struct {
		const char *name;
		int nd;
		int64_t shape[4];
	} want[] = {
	    {"conv1.W", 4, {32, 1, 3, 3}}, {"conv1.b", 1, {32}},  {"conv2.W", 4, {64, 32, 3, 3}},
	    {"conv2.b", 1, {64}},	   {"fc1.W", 2, {3136, 128}}, {"fc1.b", 1, {128}},
	    {"fc2.W", 2, {128, 10}},	   {"fc2.b", 1, {10}},
	};
	tg_tensor *p[16];
	assert_int_equal(tg_module_params(m, p, 16), LEN(want));
	for (size_t i = 0; i < LEN(want); i++) {
		assert_string_equal(tg_name(p[i]), want[i].name);
		assert_int_equal(tg_ndim(p[i]), want[i].nd);
		for (int d = 0; d < want[i].nd; d++)
			assert_int_equal(tg_dim(p[i], d), want[i].shape[d]);
	}
	tg_tensor *y = tg_forward(m, tg_randn(ctx, TG_F32, SHAPE(3, 1, 28, 28), 0, 1));
	assert_ctx_ok(ctx);
	assert_int_equal(tg_ndim(y), 2);
	assert_int_equal(tg_dim(y, 0), 3);
	assert_int_equal(tg_dim(y, 1), 10);
	for (size_t i = 0; i < 30; i++)
		assert_true(isfinite(tg_get(y, i)));
	/* stride, average pooling, a single linear layer with no relu after it */
	tg_module *s = tg_model_parse_image(ctx, "conv8:5s2-avgpool2-16", 3, 9, 9, NULL);
	tg_module_spec(s, buf, sizeof buf);
	assert_string_equal(buf, "conv:3:8:5:2,relu,avgpool:2,flatten,linear:8:16");
	assert_ctx_ok(ctx);
	tg_module_free(s);
	/* b: batch norm over the conv's channels, before its relu, in any order
	 * among the options; the same model as its full form */
	static const char *const with_bn[] = { "conv8:3p1b-pool2-conv4:3bs2-10",
					       "conv8:3bp1-pool2-conv4:3s2b-10" };
	for (size_t i = 0; i < LEN(with_bn); i++) {
		s = tg_model_parse_image(ctx, with_bn[i], 3, 8, 8, NULL);
		assert_non_null(s);
		tg_module_spec(s, buf, sizeof buf);
		assert_string_equal(buf, "conv:3:8:3:1:1,bn:8,relu,maxpool:2,conv:8:4:3:2,bn:4,"
					 "relu,flatten,linear:4:10");
		tg_tensor *bp[16];
		assert_int_equal(tg_module_params(s, bp, 16), 10);
		assert_string_equal(tg_name(bp[2]), "bn1.gamma");
		assert_int_equal(tg_dim(bp[2], 0), 8);
		assert_string_equal(tg_name(bp[7]), "bn2.beta");
		assert_int_equal(tg_dim(bp[7], 0), 4);
		tg_tensor *out = tg_forward(s, tg_randn(ctx, TG_F32, SHAPE(2, 3, 8, 8), 0, 1));
		assert_ctx_ok(ctx);
		assert_int_equal(tg_dim(out, 1), 10);
		tg_module_free(s);
	}
	tg_module_free(m);
	tg_module_free(same);
	tg_ctx_free(ctx);
}

/* N noisy (N,1,S,S) f64 images (kept) and their labels: class 0 when the
 * left half of an image is bright, class 1 when the right is. */
enum { LR_N = 8, LR_S = 6 };
static void left_right_images(tg_ctx *ctx, tg_tensor **x, tg_tensor **y)
{
	enum { N = LR_N, S = LR_S };
	double px[N * S * S];
	int32_t lab[N];
	tg_tensor *noise = tg_randn(ctx, TG_F64, SHAPE(N * S * S), 0, 0.1);
	for (int n = 0; n < N; n++) {
		lab[n] = n % 2;
		for (int i = 0; i < S * S; i++) {
			bool left = i % S < S / 2;
			px[n * S * S + i] = (left == (lab[n] == 0) ? 1.0 : 0.0) +
					    tg_get(noise, (size_t)(n * S * S + i));
		}
	}
	*x = tg_keep(f64(ctx, SHAPE(N, 1, S, S), px));
	*y = tg_keep(tg_from_i32(ctx, SHAPE(N), lab));
}

/* 30 SGD steps (lr 0.1) of m's np parameters on x, y, which must at least
 * halve the loss; its first value. */
static double train_halves_the_loss(tg_ctx *ctx, tg_module *m, size_t np, tg_tensor *x,
				    tg_tensor *y)
{
	tg_tensor *p[8];
	assert_int_equal(tg_module_params(m, p, 8), np);
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	oo.lr = 0.1;
	tg_optim *opt = tg_optim_new(ctx, p, np, &oo);
	double first = 0, last = 0;
	for (int step = 0; step < 30; step++) {
		tg_tensor *loss = tg_cross_entropy(tg_forward(m, x), y);
		last = tg_item(loss);
		if (step == 0)
			first = last;
		tg_optim_zero_grad(opt);
		tg_backward(loss);
		tg_optim_step(opt);
		tg_reset(ctx);
	}
	assert_ctx_ok(ctx);
	/* two balanced classes start near ln 2 */
	if (!(first > 0.3 && last < 0.5 * first))
		fail_msg("loss went from %g to %g; expected it at least halved", first, last);
	tg_optim_free(opt);
	return first;
}

static void a_tiny_cnn_learns_left_from_right(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_tensor *x, *y;
	left_right_images(ctx, &x, &y);
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	tg_module *m = tg_model_parse_image(ctx, "conv4:3p1-pool2-2", 1, LR_S, LR_S, &mo);
	assert_non_null(m);
	train_halves_the_loss(ctx, m, 4, x, y);
	tg_module_free(m);
	tg_ctx_free(ctx);
}

static void a_cnn_with_batch_norm_reads_back_trains_and_evaluates(void **state)
{
	(void)state;
	static const char *const arch = "conv:1:4:3:1:1,bn:4,relu,maxpool:2,flatten,linear:36:2";
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_mlp_opts mo = tg_mlp_defaults();
	mo.dtype = TG_F64;
	tg_module *m = tg_model_parse(ctx, arch, &mo);
	assert_non_null(m);
	char buf[256];
	assert_int_equal(tg_module_spec(m, buf, sizeof buf), (int)strlen(arch));
	assert_string_equal(buf, arch);
	/* eps and avg_decay of its own read back too */
	tg_module *r = tg_model_parse(ctx, "conv:3:8:3,bn:8:1e-05:0.8,relu", &mo);
	assert_non_null(r);
	tg_module_spec(r, buf, sizeof buf);
	assert_string_equal(buf, "conv:3:8:3,bn:8:1e-05:0.8,relu");
	tg_module_free(r);
	static const char *const names[] = {"conv1.W", "conv1.b", "bn1.gamma",
					    "bn1.beta", "fc1.W",   "fc1.b",
					    "bn1.running_mean", "bn1.running_var"};
	tg_tensor *t[10];
	assert_int_equal(tg_module_tensors(m, t, 10), LEN(names));
	for (size_t i = 0; i < LEN(names); i++)
		assert_string_equal(tg_name(t[i]), names[i]);
	tg_tensor *gamma = t[2], *beta = t[3], *rmean = t[6], *rvar = t[7];
	tg_tensor *x, *y;
	left_right_images(ctx, &x, &y);
	double first = train_halves_the_loss(ctx, m, 6, x, y);
	/* the running statistics moved off their start, one per channel */
	assert_int_equal(tg_numel(rmean), 4);
	for (size_t c = 0; c < 4; c++) {
		assert_true(tg_get(rmean, c) != 0);
		assert_true(tg_get(rvar, c) != 1 && tg_get(rvar, c) > 0);
	}
	/* one image trains (36 values per channel) ... */
	assert_non_null(tg_forward(m, tg_slice(x, 0, 0, 1)));
	assert_ctx_ok(ctx);
	tg_reset(ctx);
	/* ... and evaluation classifies the training images, gamma and beta
	 * still getting gradients */
	tg_module_train(m, false);
	double rm0 = tg_get(rmean, 0);
	tg_tensor *loss = tg_cross_entropy(tg_forward(m, x), y);
	assert_int_equal(tg_backward(loss), 0);
	assert_ctx_ok(ctx);
	assert_true(tg_item(loss) < 0.5 * first);
	assert_non_null(tg_grad(gamma));
	assert_non_null(tg_grad(beta));
	assert_true(tg_get(rmean, 0) == rm0);
	tg_reset(ctx);
	tg_module_free(m);
	tg_ctx_free(ctx);
}

/* ---- a batch norm and the relu after it run as one op ------------------------------ */

/* The loss of m on x, y: through tg_forward(m) (a container takes a
 * training batch norm and the relu after it as one op) or child by child,
 * each through tg_forward alone (two ops). */
static tg_tensor *forward_of(tg_module *m, tg_tensor *x, bool whole)
{
	tg_tensor *out = x;
	if (whole)
		out = tg_forward(m, x);
	else
		for (size_t i = 0; i < m->nchildren; i++)
			out = tg_forward(m->children[i], out);
	return out;
}

static tg_tensor *loss_of(tg_module *m, tg_tensor *x, tg_tensor *y, bool whole)
{
	return tg_cross_entropy(forward_of(m, x, whole), y);
}

/* How many nodes of the op named op made t: the op nodes of its DOT text
 * (n<k> [label="...", each line of the label a word) with op as a line. */
static int nodes_of(const tg_tensor *t, const char *op)
{
	char *text = dot_text(t);
	int n = 0;
	size_t oplen = strlen(op);
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char *label = strstr(line, "[label=\"");
		if (strncmp(line, "  n", 3) || strstr(line, "->") || !label)
			continue;
		/* the label's lines, separated by the two characters \ and n */
		for (char *w = label + 8; *w && *w != '"';) {
			if (!strncmp(w, op, oplen) && (w[oplen] == '"' || w[oplen] == '\\')) {
				n++;
				break;
			}
			char *next = strstr(w, "\\n");
			if (!next)
				break;
			w = next + 2;
		}
	}
	free(text);
	return n;
}

/* Two steps of training give the same bits either way: the loss, every
 * parameter's gradient and the running statistics, in f32 and f64; the
 * tape holds one batch_norm_relu per bn,relu pair, one relu_max_pool2d
 * per relu,maxpool pair, one addmm_relu per linear,relu pair and one
 * conv2d_relu per conv,relu pair whose relu has no max pool after it, and
 * the plain ops where a bn is followed by
 * something else or evaluates. */
static void fused_pairs_of_modules_give_the_bits_of_the_two_ops(void **state)
{
	(void)state;
	static const char *const arch =
	    "conv:2:6:3:1:1,bn:6,relu,maxpool:2,conv:6:4:3:1:1,relu,maxpool:2,conv:4:4:1,relu,"
	    "conv:4:4:1,bn:4,"
	    "leaky_relu,flatten,linear:16:12,relu,linear:12:12,bn:12,relu,linear:12:3";
	for (int f64 = 0; f64 < 2; f64++) {
		tg_ctx *ctx[2];
		tg_module *m[2];
		tg_optim *opt[2];
		tg_mlp_opts mo = tg_mlp_defaults();
		mo.dtype = f64 ? TG_F64 : TG_F32;
		tg_optim_opts oo = tg_optim_defaults(TG_SGD);
		for (int k = 0; k < 2; k++) {
			ctx[k] = tg_ctx_new(SEED);
			m[k] = tg_model_parse(ctx[k], arch, &mo);
			assert_non_null(m[k]);
			tg_tensor *p[24];
			assert_int_equal(tg_module_params(m[k], p, 24), 20);
			opt[k] = tg_optim_new(ctx[k], p, 20, &oo);
			assert_non_null(opt[k]);
		}
		for (int step = 0; step < 2; step++) {
			tg_tensor *loss[2];
			for (int k = 0; k < 2; k++) {
				tg_tensor *x = tg_randn(ctx[k], mo.dtype, SHAPE(5, 2, 8, 8), 0, 1);
				tg_tensor *y = tg_from_i32(ctx[k], SHAPE(5), (int32_t[]){ 0, 2, 1, 1, 0 });
				loss[k] = loss_of(m[k], x, y, k == 0);
				assert_int_equal(tg_backward(loss[k]), 0);
				assert_ctx_ok(ctx[k]);
			}
			assert_int_equal(nodes_of(loss[0], "batch_norm_relu"), 2);
			assert_int_equal(nodes_of(loss[1], "batch_norm_relu"), 0);
			assert_int_equal(nodes_of(loss[0], "batch_norm"), 1); /* before leaky_relu */
			assert_int_equal(nodes_of(loss[1], "batch_norm"), 3);
			assert_int_equal(nodes_of(loss[0], "relu_max_pool2d"), 1);
			assert_int_equal(nodes_of(loss[0], "max_pool2d"), 1); /* after bn,relu */
			assert_int_equal(nodes_of(loss[1], "relu_max_pool2d"), 0);
			assert_int_equal(nodes_of(loss[1], "max_pool2d"), 2);
			assert_int_equal(nodes_of(loss[0], "conv2d_relu"), 1);
			assert_int_equal(nodes_of(loss[1], "conv2d_relu"), 0);
			assert_int_equal(nodes_of(loss[0], "conv2d"), 3);
			assert_int_equal(nodes_of(loss[1], "conv2d"), 4);
			assert_int_equal(nodes_of(loss[0], "addmm_relu"), 1);
			assert_int_equal(nodes_of(loss[1], "addmm_relu"), 0);
			assert_int_equal(nodes_of(loss[0], "addmm"), 2);
			assert_int_equal(nodes_of(loss[1], "addmm"), 3);
			assert_same_bits(loss[0], loss[1]);
			tg_tensor *t[2][28];
			size_t n = tg_module_tensors(m[0], t[0], 28);
			assert_int_equal(n, 26); /* 20 parameters, 6 running statistics */
			assert_int_equal(tg_module_tensors(m[1], t[1], 28), n);
			for (size_t i = 0; i < n; i++) {
				assert_same_bits(t[0][i], t[1][i]);
				if (tg_grad(t[0][i]) || tg_grad(t[1][i]))
					assert_same_bits(tg_grad(t[0][i]), tg_grad(t[1][i]));
			}
			for (int k = 0; k < 2; k++) {
				/* a step, so that the second starts elsewhere */
				assert_int_equal(tg_optim_step(opt[k]), 0);
				tg_optim_zero_grad(opt[k]);
				tg_reset(ctx[k]);
			}
		}
		/* evaluating, a bn is the composition of ops, and its relu goes
		 * with the max pool after it or stands alone */
		tg_module_train(m[0], false);
		tg_tensor *x = tg_randn(ctx[0], mo.dtype, SHAPE(5, 2, 8, 8), 0, 1);
		tg_tensor *y = tg_from_i32(ctx[0], SHAPE(5), (int32_t[]){ 0, 2, 1, 1, 0 });
		tg_tensor *loss = loss_of(m[0], x, y, true);
		assert_non_null(loss);
		assert_int_equal(nodes_of(loss, "batch_norm_relu"), 0);
		assert_int_equal(nodes_of(loss, "relu_max_pool2d"), 2);
		assert_int_equal(nodes_of(loss, "relu"), 1);
		assert_int_equal(nodes_of(loss, "addmm_relu"), 1);
		assert_int_equal(nodes_of(loss, "conv2d_relu"), 1);
		/* with no gradient wanted, bn,relu (not before a max pool) is one
		 * pass: the bits of the children run one by one, of the ops with
		 * the gradient wanted, and of the two passes apart */
		tg_tensor *ops = forward_of(m[0], x, false);
		bool was = tg_set_grad_enabled(ctx[0], false);
		tg_tensor *whole = forward_of(m[0], x, true);
		tg_tensor *apart = forward_of(m[0], x, false);
		tg_set_grad_enabled(ctx[0], was);
		assert_ctx_ok(ctx[0]);
		assert_false(tg_requires_grad(whole));
		assert_same_bits(whole, apart);
		assert_same_bits(whole, ops);
		for (int k = 0; k < 2; k++) {
			tg_optim_free(opt[k]);
			tg_module_free(m[k]);
			tg_ctx_free(ctx[k]);
		}
	}
}

/* m's two hidden activations, of widths 5 and 4, are the outputs of the
 * fused op named op (its i-th node is activation i's) and hold no negative
 * value. */
static void assert_fused_activations(const tg_mlp *m, const char *op)
{
	for (int i = 1; i <= 2; i++) {
		tg_tensor *a = tg_mlp_activation(m, i);
		assert_non_null(a);
		assert_int_equal(tg_dim(a, 1), i == 1 ? 5 : 4);
		assert_int_equal(nodes_of(a, op), i);
		for (size_t k = 0; k < tg_numel(a); k++)
			assert_true(tg_get(a, k) >= 0);
	}
}

/* tg_mlp's hidden activation is the output of the fused op of its layer
 * and relu: addmm_relu, or batch_norm_relu after a batch norm. */
static void an_mlps_relu_activation_is_the_fused_layers_output(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_mlp_opts o = tg_mlp_defaults();
	tg_mlp *m = tg_mlp_new(ctx, "6-5-4-3", &o);
	assert_non_null(m);
	tg_tensor *x = tg_randn(ctx, TG_F32, SHAPE(8, 6), 0, 1);
	tg_tensor *out = tg_mlp_forward(m, x);
	assert_non_null(out);
	assert_int_equal(nodes_of(out, "addmm_relu"), 2);
	assert_int_equal(nodes_of(out, "relu"), 0);
	assert_fused_activations(m, "addmm_relu");
	assert_ctx_ok(ctx);
	tg_mlp_free(m);
	tg_ctx_free(ctx);
}

/* tg_mlp's hidden activation is the fused op's output when the layer has
 * a batch norm, as it is the relu's without; evaluating too. */
static void an_mlps_activation_with_batch_norm_is_the_relus_output(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_mlp_opts o = tg_mlp_defaults();
	o.batchnorm = true;
	tg_mlp *m = tg_mlp_new(ctx, "6-5-4-3", &o);
	assert_non_null(m);
	tg_tensor *x = tg_randn(ctx, TG_F32, SHAPE(8, 6), 0, 1);
	tg_tensor *out = tg_mlp_forward(m, x);
	assert_non_null(out);
	assert_fused_activations(m, "batch_norm_relu");
	/* evaluating, with and without a gradient wanted: the relu's output */
	tg_mlp_train(m, false);
	for (int grad = 0; grad < 2; grad++) {
		bool was = tg_set_grad_enabled(ctx, grad);
		assert_non_null(tg_mlp_forward(m, x));
		tg_set_grad_enabled(ctx, was);
		for (int i = 1; i <= 2; i++) {
			tg_tensor *a = tg_mlp_activation(m, i);
			assert_non_null(a);
			assert_int_equal(tg_dim(a, 1), i == 1 ? 5 : 4);
			bool negative = false;
			for (size_t k = 0; k < tg_numel(a); k++)
				negative = negative || !(tg_get(a, k) >= 0);
			assert_false(negative);
		}
	}
	assert_ctx_ok(ctx);
	tg_mlp_free(m);
	tg_ctx_free(ctx);
}

static void cnn_misuse_is_a_named_error(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_init he = {TG_INIT_HE, 0};
	tg_conv_opts g3 = {{1, 1}, {0, 0}, {1, 1}, 3};
	assert_null(tg_conv2d_layer(ctx, TG_F32, 4, 6, 3, 3, &g3, he, "c"));
	assert_error(ctx, TG_EARG, "tg_conv2d_layer: \"c\": groups 3 must divide c_in 4");
	tg_clear_error(ctx);
	tg_conv_opts s0 = {{0, 1}, {0, 0}, {1, 1}, 1};
	assert_null(tg_conv2d_layer(ctx, TG_F32, 4, 6, 3, 3, &s0, he, "c"));
	assert_error(ctx, TG_EARG, "stride (0,1)");
	tg_clear_error(ctx);
	assert_null(tg_conv2d_layer(ctx, TG_F32, 4, 6, 0, 3, NULL, he, "c"));
	assert_error(ctx, TG_EARG, "sizes 0 and 3 must be positive");
	tg_clear_error(ctx);
	/* fans too large for int64 are refused, not overflowed */
	assert_null(tg_conv2d_layer(ctx, TG_F32, INT64_MAX / 2, 4, 3, 3, NULL, he, "c"));
	assert_error(ctx, TG_EARG, "too many to count");
	tg_clear_error(ctx);
	assert_null(tg_conv2d_layer(ctx, TG_F32, 4, INT64_MAX, 2, 1, NULL, he, "c"));
	assert_error(ctx, TG_EARG, "too many to count");
	tg_clear_error(ctx);
	assert_null(tg_maxpool2d_layer(ctx, 2, 2, 2, "p"));
	assert_error(ctx, TG_EARG, "tg_maxpool2d_layer: \"p\": kernel 2 and stride 2");
	tg_clear_error(ctx);
	assert_null(tg_avgpool2d_layer(ctx, 0, 1, 0, "q"));
	assert_error(ctx, TG_EARG, "tg_avgpool2d_layer");
	tg_clear_error(ctx);
	/* a wrong input reaches the op's own error */
	tg_module *c = tg_conv2d_layer(ctx, TG_F32, 4, 6, 3, 3, NULL, he, "c");
	assert_null(tg_forward(c, tg_ones(ctx, TG_F32, SHAPE(2, 3, 8, 8))));
	assert_error(ctx, TG_ESHAPE, "tg_conv2d");
	tg_clear_error(ctx);
	tg_module_free(c);

	static const struct {
		const char *arch, *why;
	} full[] = {
	    {"conv:1:8", "piece 1 \"conv:1:8\": the kernel size is missing"},
	    {"conv:1:8:0", "value 3 \"0\" must be an integer from 1"},
	    {"conv:1:8:3x", "value 3 \"3x\""},
	    {"conv:4:8:3:1:0:1:3", "groups must divide both channel counts"},
	    {"conv:1:8:3:1:0:1:1:9", "too many values"},
	    {"maxpool", "the window size is missing"},
	    {"maxpool:3:1:2", "padding must be at most half the window"},
	    {"avgpool:2x3", "square windows"},
	    /* numbers written plainly: no white space or sign for strtol to skip */
	    {"conv:4:6: 3", "value 3 \" 3\" must be an integer from 1"},
	    {"conv:4:6:3x 5", "value 3 \"3x 5\""},
	    {"conv:4:6:3x+5", "value 3 \"3x+5\""},
	    {"conv:4:6:+3", "value 3 \"+3\""},
	    {"conv:4:6:3:1:-0", "value 5 \"-0\" must be an integer from 0"},
	    {"maxpool:\t2", "must be an integer from 1"},
	    {"linear: 4:6", "size 1 \" 4\" must be an integer from 1"},
	    {"linear:4:6,bn:6: 1e-5", "\" 1e-5\" is not a number"},
	};
	for (size_t i = 0; i < LEN(full); i++) {
		assert_null(tg_model_parse(ctx, full[i].arch, NULL));
		assert_error(ctx, TG_EARG, full[i].why);
		tg_clear_error(ctx);
	}
	/* a value that takes one number is not offered the "3x5" form */
	static const char *const single[] = {"maxpool:0", "avgpool:2:0", "maxpool:2:1:-1",
					     "conv:3:6:3:1:0:1:0"};
	for (size_t i = 0; i < LEN(single); i++) {
		assert_null(tg_model_parse(ctx, single[i], NULL));
		assert_error(ctx, TG_EARG, "must be an integer from");
		printf("%s: %s\n", single[i], tg_error(ctx));
		assert_null(strstr(tg_error(ctx), "3x5"));
		tg_clear_error(ctx);
	}
	static const struct {
		const char *arch, *why;
	} shortf[] = {
	    {"conv32:3-pool8-10", "piece 2 \"pool8\" on input (N,32,4,4): a 8x8 window does not fit"},
	    {"conv8:7-10", "piece 1 \"conv8:7\" on input (N,1,6,6): a 7x7 kernel with padding 0"},
	    {"16-conv8:3", "piece 2 \"conv8:3\" on input (N,16): a convolution must come before"},
	    {"16-pool2", "a pooling must come before"},
	    {"conv8", "expected convO:K"},
	    {"conv8:3q1", "only pP (padding), sS (stride) and b (batch norm)"},
	    {"conv8:3b2", "only pP (padding), sS (stride) and b"},
	    {"conv8:3bp1b-10", "piece 1 \"conv8:3bp1b\" on input (N,1,6,6): pP (padding), sS (stride) and b (batch norm) may each be given once"},
	    {"conv8:3s0", "the stride S of sS is 1 to 65535"},
	    {"conv8:3p99999-10", "the padding P of pP is 0 to 65535"},
	    {"conv99999999999:3-10", "the channels O of convO:K are 1 to 65535"},
	    {"conv8:0", "the kernel size K of convO:K is 1 to 65535"},
	    {"pool0-10", "the window K of poolK is 1 to 65535"},
	    {"conv8:3-70000", "a layer size is 1 to 65535"},
	    {"-10", "piece 1 \"\" on input (N,1,6,6): an empty piece (a '-' too many)"},
	    {"conv8:3p1p2-10", "piece 1 \"conv8:3p1p2\" on input (N,1,6,6): pP (padding), sS"},
	    {"conv8:3s1p0s2", "may each be given once"},
	    {"pool2x", "expected poolK"},
	    {"conv8:3--10", "piece 2 \"\" on input (N,8,4,4): an empty piece"},
	    {"conv8:3-1x0", "piece 2 \"1x0\" on input (N,8,4,4): expected convO:K[pP][sS][b]"},
	    {"mlp", "piece 1 \"mlp\""},
	};
	for (size_t i = 0; i < LEN(shortf); i++) {
		assert_null(tg_model_parse_image(ctx, shortf[i].arch, 1, 6, 6, NULL));
		assert_error(ctx, TG_EARG, "tg_model_parse_image");
		assert_error(ctx, TG_EARG, shortf[i].why);
		tg_clear_error(ctx);
	}
	assert_null(tg_model_parse_image(ctx, "cnn", 1, 0, 28, NULL));
	assert_error(ctx, TG_EARG, "image shape (1,0,28): each size must be 1 to 2147483647");
	tg_clear_error(ctx);
	assert_null(tg_model_parse_image(ctx, "cnn", 1, INT64_MAX, 28, NULL));
	assert_error(ctx, TG_EARG, "each size must be 1 to 2147483647");
	tg_clear_error(ctx);
	/* an image too large to flatten into a linear layer is named by its
	 * piece, with no product overflowed on the way */
	assert_null(tg_model_parse_image(ctx, "10", INT32_MAX, INT32_MAX, INT32_MAX, NULL));
	assert_error(ctx, TG_EARG, "piece 1 \"10\" on input (N,2147483647,2147483647,2147483647): "
				   "flattens to more than 2147483647 features");
	tg_clear_error(ctx);
	assert_null(tg_model_parse_image(ctx, "pool2-10", 1, 131072, 65536, NULL));
	assert_error(ctx, TG_EARG, "piece 2 \"10\" on input (N,1,65536,32768): flattens");
	tg_clear_error(ctx);
	assert_null(tg_model_parse_image(ctx, NULL, 1, 28, 28, NULL));
	assert_error(ctx, TG_ENULL, "tg_model_parse_image");
	tg_clear_error(ctx);
	tg_ctx_free(ctx);
}

/* ---- every failing allocation while building and running one ------------------------ */

static void *small_blocks_only(size_t size, void *user)
{
	(void)user;
	return size > (4u << 20) ? NULL : malloc(size);
}

static void free_block(void *p, void *user)
{
	(void)user;
	free(p);
}

/* A layer whose weights the allocator cannot give names the parameter and
 * its size, not only the op that ran out. */
static void a_layer_out_of_memory_names_its_parameter(void **state)
{
	(void)state;
	tg_allocator a = { small_blocks_only, free_block, NULL };
	tg_ctx *ctx = tg_ctx_new_with(7, &a);
	assert_non_null(ctx);
	assert_null(tg_model_parse(ctx, "4-400000-2", NULL));
	assert_error(ctx, TG_ENOMEM, "tg_init_weight: fc1.W (4,400000) f32, 0.0064 GB: out of "
				     "memory: tg_randn: ");
	tg_clear_error(ctx);
	assert_null(tg_model_parse(ctx, "4-2-1600000", NULL));
	assert_error(ctx, TG_ENOMEM, "fc2.W (2,1600000) f32");
	tg_ctx_free(ctx);
}

/* Builds a model of every built-in kind and runs a step; whether it failed. */
static bool build_and_step(long fail_at, long *calls, bool cnn)
{
	counting c = {.fail_at = fail_at};
	tg_allocator a = {counting_alloc, counting_free, &c};
	tg_ctx *ctx = tg_ctx_new_with(7, &a);
	bool failed = !ctx;
	if (ctx) {
		tg_module *m =
		    cnn ? tg_model_parse_image(ctx, "conv2:3p1-pool2-avgpool1-3", 1, 4, 4, NULL)
			: tg_model_parse(ctx,
					 "embedding:5:4,flatten,linear:4:3,bn:3,relu,ln:3,"
					 "dropout:0.5,linear:3:2",
					 NULL);
		tg_tensor *idx = cnn ? tg_randn(ctx, TG_F32, SHAPE(2, 1, 4, 4), 0, 1)
				     : tg_from_i32(ctx, SHAPE(4), (int32_t[]){0, 1, 4, 2});
		failed = !m || tg_backward(tg_sum(tg_forward(m, idx))) != 0;
		if (failed)
			assert_error(ctx, TG_ENOMEM, "out of memory");
		else
			assert_ctx_ok(ctx);
		tg_module_free(m);
		tg_ctx_free(ctx);
	}
	if (c.live != 0)
		fail_msg("failing allocation %ld: %ld allocations not freed", fail_at, c.live);
	*calls = c.calls;
	return failed;
}

static void every_failing_allocation_is_a_clean_enomem(void **state)
{
	(void)state;
	for (int cnn = 0; cnn < 2; cnn++) {
		long total, calls, failures = 0;
		assert_false(build_and_step(0, &total, cnn));
		assert_true(total > 10);
		for (long n = 1; n <= total; n++)
			failures += build_and_step(n, &calls, cnn);
		assert_int_equal(failures, total);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_users_module_trains_inside_a_sequential),
	    cmocka_unit_test(params_and_tensors_come_in_order_with_the_mlps_names),
	    cmocka_unit_test(a_weight_two_modules_share_is_one_parameter),
	    cmocka_unit_test(train_and_eval_reach_every_child),
	    cmocka_unit_test(every_builtin_module_writes_a_spec_that_reads_back),
	    cmocka_unit_test(a_batch_norms_stated_defaults_read_back_under_other_opts),
	    cmocka_unit_test(an_activations_alpha_reads_back_exactly),
	    cmocka_unit_test(parse_errors_name_the_bad_piece),
	    cmocka_unit_test(decay_is_set_by_the_module_and_read_by_the_optimizer),
	    cmocka_unit_test(linear_relu_linear_equals_the_ops_bit_for_bit),
	    cmocka_unit_test(an_input_of_the_wrong_dtype_names_the_layer),
	    cmocka_unit_test(embedding_looks_up_rows_of_an_index_tensor),
	    cmocka_unit_test(a_partly_built_sequential_frees_cleanly),
	    cmocka_unit_test(a_child_has_one_parent_and_no_cycle_is_made),
	    cmocka_unit_test(misuse_is_a_named_error),
	    cmocka_unit_test(conv_and_pool_modules_equal_the_ops_they_wrap),
	    cmocka_unit_test(a_cnn_spec_reads_back_with_its_names),
	    cmocka_unit_test(the_short_cnn_form_builds_the_recipe),
	    cmocka_unit_test(a_tiny_cnn_learns_left_from_right),
	    cmocka_unit_test(a_cnn_with_batch_norm_reads_back_trains_and_evaluates),
	    cmocka_unit_test(fused_pairs_of_modules_give_the_bits_of_the_two_ops),
	    cmocka_unit_test(an_mlps_relu_activation_is_the_fused_layers_output),
	    cmocka_unit_test(an_mlps_activation_with_batch_norm_is_the_relus_output),
	    cmocka_unit_test(cnn_misuse_is_a_named_error),
	    cmocka_unit_test(every_failing_allocation_is_a_clean_enomem),
	    cmocka_unit_test(a_layer_out_of_memory_names_its_parameter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
