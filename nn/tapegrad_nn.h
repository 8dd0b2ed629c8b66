/*
 * tapegrad_nn.h - modules, initialisers and optimizers built on tapegrad.h.
 *
 * A module is one expression of ops: its forward pass records nodes on the
 * tape like any other expression, and tg_backward differentiates it. Nothing
 * here holds gradient code. Parameters are named tg_param tensors ("fc1.W",
 * "fc1.b", "bn1.gamma", "bn1.beta") and state without a gradient is named
 * tg_keep tensors ("bn1.running_mean", "bn1.running_var", "fc1.W.m").
 *
 * A two-layer network trained one step, the seeds' TwoLayerNet in C:
 *
 *	tg_ctx *ctx = tg_ctx_new(42);
 *	tg_mlp_opts mo = tg_mlp_defaults();          // ReLU, He init, f32
 *	tg_mlp *net = tg_mlp_new(ctx, "784-50-10", &mo);
 *	size_t np;
 *	tg_tensor *const *params = tg_mlp_params(net, &np);
 *	tg_optim_opts oo = tg_optim_defaults(TG_SGD); // lr 0.01
 *	oo.lr = 0.1;
 *	tg_optim *opt = tg_optim_new(ctx, params, np, &oo);
 *	// per step: x (100,784) f32 and labels[100]
 *	tg_tensor *loss = tg_cross_entropy(tg_mlp_forward(net, x), labels);
 *	tg_optim_zero_grad(opt);
 *	tg_backward(loss);
 *	tg_optim_step(opt);
 *	tg_reset(ctx);
 *	...
 *	if (!tg_ok(ctx))
 *		fprintf(stderr, "%s\n", tg_error(ctx));
 *	tg_optim_free(opt);
 *	tg_mlp_free(net);
 *	tg_ctx_free(ctx);
 *
 * Lifetimes are written on every declaration as in tapegrad.h: step, ctx,
 * borrowed. The tg_mlp and tg_optim objects are malloc'd and freed by their
 * _free functions; the tensors they hold belong to the context, so the rule
 * is: free a net and an optimizer before their context (as above). After
 * tg_ctx_free(ctx), the only call allowed on them is their _free function;
 * any other (tg_optim_step, tg_mlp_forward, ...) would read freed memory,
 * and nothing can report it since the context that would is gone. Errors follow
 * tapegrad.h: the first one is kept in the context, functions return NULL or
 * -1, and while an error is set nothing is computed or updated.
 *
 * Shapes: N = batch, D = features in, M = features out, K = classes.
 */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include "tapegrad.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- initialisers --------------------------------------------------------- */
/* Named for what they compute. The book's "Xavier" is lecun; Glorot and
 * Bengio's is glorot. Weights are drawn from N(0, std^2) with the context's
 * generator; biases start at 0, gamma at 1, beta at 0. */

typedef enum {
	TG_INIT_STD,	/* a given std (the seeds' weight_init_std = 0.01) */
	TG_INIT_LECUN,	/* sqrt(1 / n_in) */
	TG_INIT_GLOROT, /* sqrt(2 / (n_in + n_out)) */
	TG_INIT_HE,	/* sqrt(2 / n_in) */
} tg_init_kind;

typedef struct tg_init {
	tg_init_kind kind;
	double std; /* TG_INIT_STD only */
} tg_init;

/* "std" (0.01), "std:0.05", "lecun", "glorot", "he". 0 ok; on a bad name -1
 * and TG_EARG in ctx naming the string. */
TG_API int tg_init_parse(tg_ctx *ctx, const char *s, tg_init *out);
/* Writes "he", "std:0.01", ... into buf; returns buf. */
TG_API char *tg_init_str(tg_init init, char *buf, size_t size);
/* The standard deviation init gives an (n_in, n_out) weight. */
TG_API double tg_init_std(tg_init init, int64_t n_in, int64_t n_out);
/* An (n_in, n_out) parameter drawn from N(0, std^2), named name (may be NULL);
 * not marked for weight decay: the module that uses it decides (tg_set_decay). */
TG_API tg_tensor *tg_init_weight(tg_ctx *ctx, tg_dtype dt, int64_t n_in, int64_t n_out,
				 tg_init init, const char *name); /* ctx */
/* An (n) vector filled with value (finite), named name: a parameter when
 * param, else state kept without a gradient (running statistics). */
TG_API tg_tensor *tg_init_vector(tg_ctx *ctx, tg_dtype dt, int64_t n, double value, bool param,
				 const char *name); /* ctx */

/* ---- affine: x @ W + b ------------------------------------------------------ */

typedef struct tg_affine {
	tg_tensor *W; /* (D,M) param "<name>.W"; ctx */
	tg_tensor *b; /* (M) param "<name>.b", zeros; ctx */
} tg_affine;

/* Makes W with init (marked for weight decay) and b = 0. 0 ok, -1 on error
 * (in ctx). */
TG_API int tg_affine_init(tg_affine *l, tg_ctx *ctx, tg_dtype dt, int64_t n_in, int64_t n_out,
			  tg_init init, const char *name);
/* x (N,D) -> (N,M). An x of more than two dimensions is flattened to (N,-1)
 * first (images (N,1,28,28) -> (N,784)); a 1-D x (D) gives (M), as the
 * seeds' np.dot(X, W) + B. */
TG_API tg_tensor *tg_affine_forward(const tg_affine *l, tg_tensor *x); /* step */

/* ---- activations ------------------------------------------------------------ */

typedef enum {
	TG_ACT_IDENTITY,   /* x */
	TG_ACT_RELU,	   /* max(x, 0) */
	TG_ACT_SIGMOID,	   /* 1 / (1 + e^-x) */
	TG_ACT_TANH,	   /* tanh x */
	TG_ACT_LEAKY_RELU, /* x > 0 ? x : alpha x; alpha 0.01 unless given */
	TG_ACT_ELU,	   /* x > 0 ? x : alpha (e^x - 1); alpha 1 unless given */
} tg_act_kind;

typedef struct tg_act {
	tg_act_kind kind;
	double alpha; /* leaky_relu and elu */
} tg_act;

/* "identity" (or "none"), "relu", "sigmoid", "tanh", "leaky_relu",
 * "leaky_relu:0.1", "elu", "elu:0.5". 0 ok; -1 and TG_EARG in ctx. */
TG_API int tg_act_parse(tg_ctx *ctx, const char *s, tg_act *out);
/* "leaky_relu:0.1" into buf; returns buf. alpha is written in as few digits
 * as read back exactly, so tg_act_parse of the string gives act again. */
TG_API char *tg_act_str(tg_act act, char *buf, size_t size);
/* act applied elementwise. Identity returns x itself. */
TG_API tg_tensor *tg_act_forward(tg_act act, tg_tensor *x); /* step (or x) */

/* ---- losses ------------------------------------------------------------------- */
/* With integer labels use tg_cross_entropy (tapegrad.h): mean over the batch of
 * -ln softmax(logits)[i, label_i]. */

/* With one-hot or soft targets t (N,K), rows summing to 1:
 * -sum(t * log_softmax(logits)) / N. d logits = (softmax(logits) - t) / N,
 * the seeds' SoftmaxWithLoss backward. An element outside [0, 1] (or NaN),
 * or a row whose sum is off 1 by more than TG_SOFT_TARGET_TOL (a row of
 * zeros, two ones, counts; not probabilities written with a few decimals),
 * is TG_EARG naming it; t of another dtype than the logits is TG_EDTYPE. */
#define TG_SOFT_TARGET_TOL 1e-2
TG_API tg_tensor *tg_cross_entropy_soft(tg_tensor *logits, tg_tensor *t); /* step */
/* 0.5 lambda sum(W^2) over the params marked for decay (tg_decays: the
 * weights tg_linear, tg_affine_init and tg_mlp_new make): the seeds'
 * weight-decay term of the loss. Its gradient lambda W is what an optimizer
 * with weight_decay = lambda adds instead (tg_optim_opts). A scalar of the
 * first param's dtype; 0 when none decays. A lambda that is negative or not
 * finite is TG_EARG. */
TG_API tg_tensor *tg_weight_penalty(tg_tensor *const *params, size_t n, double lambda); /* step */
/* The index of the largest value of each row of x (N,K), f32 or f64, into
 * out[N]: the predicted class; the first NaN of a row counts as its
 * largest, as in torch.argmax. 0 ok, -1 on error. */
TG_API int tg_argmax_rows(const tg_tensor *x, int32_t *out);

/* ---- batch normalisation over the features of (N,D) or channels of (N,C,...) ------ */
/* Training: y = (x - mean) / sqrt(var + eps) * gamma + beta with the batch's
 * per-feature mean and BIASED variance (divided by N, as the book), all made
 * of ops; then, outside the graph, the running statistics move towards the
 * batch's:
 *	running = avg_decay * running + (1 - avg_decay) * batch
 * (running_var takes the biased batch variance, as the book; PyTorch's
 * takes the unbiased one, larger by m / (m - 1) for m values a feature).
 * Evaluation uses the running statistics instead and updates nothing.
 *
 * x (N,C,...), e.g. images (N,C,H,W) as PyTorch's BatchNorm2d, is
 * normalised per channel over N and the axes after C (tg_batch_norm), with
 * gamma, beta and the statistics (C): m = N times the sizes after C, the
 * running variance again biased; evaluation broadcasts them per channel.
 *
 * avg_decay is the weight of the OLD value: the book's and Keras's
 * momentum = 0.9. PyTorch's momentum = 0.1 is 1 - avg_decay. Defaults are
 * the book's: eps = 1e-6 (written 10e-7 there; PyTorch uses 1e-5) and
 * avg_decay = 0.9. A batch of one in training mode is TG_ESHAPE: its
 * variance is 0, every output would be beta, and the running variance would
 * be dragged towards 0 (PyTorch refuses it likewise). For (N,C,...) the
 * same holds of a channel with one value (a batch of one 1x1 image); one image
 * of 2 pixels or more trains. */

#define TG_BN_EPS 1e-6
#define TG_BN_AVG_DECAY 0.9

typedef struct tg_batchnorm {
	tg_tensor *gamma;	 /* (D) or (C) param "<name>.gamma", ones; ctx */
	tg_tensor *beta;	 /* (D) or (C) param "<name>.beta", zeros; ctx */
	tg_tensor *running_mean; /* (D) or (C) state "<name>.running_mean", zeros; ctx */
	tg_tensor *running_var;	 /* (D) or (C) state "<name>.running_var", ones; ctx */
	double eps;		 /* TG_BN_EPS */
	double avg_decay;	 /* TG_BN_AVG_DECAY */
	bool training;		 /* starts true */
} tg_batchnorm;

/* 0 ok, -1 on error (in ctx). */
TG_API int tg_batchnorm_init(tg_batchnorm *bn, tg_ctx *ctx, tg_dtype dt, int64_t d,
			     const char *name);
/* x (N,D) -> (N,D), or (N,C,...) -> (N,C,...) per channel; another shape
 * is TG_ESHAPE. Updates the running statistics when training. Evaluating,
 * (x - running_mean) / sqrt(running_var + eps) * gamma + beta is recorded
 * as those ops when a gradient is wanted through x, gamma, beta or the
 * statistics; else (grad mode off, or none of them requiring a gradient,
 * anomaly mode off) it is computed in one pass, to the same bits. A
 * running_var holding a negative value (a file's, never training's) is
 * TG_EARG naming it and the element, in either mode. */
TG_API tg_tensor *tg_batchnorm_forward(tg_batchnorm *bn, tg_tensor *x); /* step */

/* ---- dropout, inverted ------------------------------------------------------------ */
/* Training: element i is kept when the i-th draw u_i of tg_random_uniform
 * (row-major order) is >= p, so with probability 1 - p, and kept elements are
 * scaled by 1 / (1 - p); the mask is a constant of the graph. Evaluation: the
 * identity. p in [0, 1), else TG_EARG. */

typedef struct tg_dropout {
	double p;      /* probability of dropping */
	bool training; /* starts true */
} tg_dropout;

/* Returns x itself when not training or p = 0. */
TG_API tg_tensor *tg_dropout_forward(const tg_dropout *d, tg_tensor *x); /* step (or x) */
/* x * mask / (1 - p) with a given 0/1 mask of x's shape and dtype, taken as a
 * constant (its history, if any, is ignored): a fixed mask for tests. */
TG_API tg_tensor *tg_dropout_apply(tg_tensor *x, tg_tensor *mask, double p); /* step */

/* ---- multi-layer perceptron ------------------------------------------------------- */
/* From a spec "784-100-100-10": layer sizes, input first, logits last, 2 to
 * TG_MLP_MAX_LAYERS + 1 positive sizes. Each hidden layer i (from 1) is
 *	fc<i> -> [bn<i>] -> act -> [dropout]
 * and the last is fc<L> alone, giving logits. */

enum { TG_MLP_MAX_LAYERS = 16 }; /* affine layers */

typedef struct tg_mlp_opts {
	tg_act act;	     /* TG_ACT_RELU */
	tg_init init;	     /* TG_INIT_HE */
	tg_dtype dtype;	     /* TG_F32 */
	bool batchnorm;	     /* false */
	double bn_eps;	     /* TG_BN_EPS */
	double bn_avg_decay; /* TG_BN_AVG_DECAY */
	double dropout;	     /* p; 0: no dropout layers */
} tg_mlp_opts;

typedef struct tg_mlp tg_mlp;
typedef struct tg_module tg_module;

TG_API tg_mlp_opts tg_mlp_defaults(void);
/* NULL on a bad spec or option (TG_EARG naming the spec) or without memory.
 * The net starts in training mode. opts may be NULL for the defaults. */
TG_API tg_mlp *tg_mlp_new(tg_ctx *ctx, const char *spec,
			  const tg_mlp_opts *opts); /* free with tg_mlp_free */
/* Frees m (not its tensors); safe before or after tg_ctx_free, every other
 * call on m must come before it. */
TG_API void tg_mlp_free(tg_mlp *m);
/* Training (batch statistics, dropout on) or evaluation (running
 * statistics, dropout off) for every layer. */
TG_API void tg_mlp_train(tg_mlp *m, bool on);
TG_API bool tg_mlp_training(const tg_mlp *m);
/* x (N,D0) or (N,...) flattening to D0 -> logits (N,K). */
TG_API tg_tensor *tg_mlp_forward(tg_mlp *m, tg_tensor *x); /* step */
/* The parameters in layer order: fc1.W, fc1.b, bn1.gamma, bn1.beta, fc2.W ... */
TG_API tg_tensor *const *tg_mlp_params(const tg_mlp *m, size_t *n); /* borrowed */
/* What a checkpoint must hold: the parameters, then each batch norm's
 * running_mean and running_var, in layer order. */
TG_API tg_tensor *const *tg_mlp_state(const tg_mlp *m, size_t *n); /* borrowed */
TG_API int tg_mlp_depth(const tg_mlp *m);			   /* affine layers */
/* Size i of the spec, 0..depth; 0 and TG_EARG for another i. */
TG_API int64_t tg_mlp_width(const tg_mlp *m, int i);
TG_API const char *tg_mlp_spec(const tg_mlp *m);     /* "784-100-10"; borrowed */
TG_API tg_ctx *tg_mlp_ctx(const tg_mlp *m);	     /* borrowed */
/* The output of hidden layer i's activation (1..depth-1) in the last forward
 * (before dropout), for histograms as in the seeds' init experiment. NULL
 * before a forward. */
TG_API tg_tensor *tg_mlp_activation(const tg_mlp *m, int i); /* step, borrowed */
/* The sequential the net runs (tg_model_parse of its spec): its modules,
 * for code that works on any module. Freed by tg_mlp_free. */
TG_API tg_module *tg_mlp_module(const tg_mlp *m); /* borrowed */

/* ---- modules -------------------------------------------------------------------------- */
/* A module is a forward function of tensors plus what it owns: parameters
 * (ctx tensors that require a gradient, named "<name>.W", each marked with
 * tg_set_decay where weight decay applies), state (ctx tensors without a
 * gradient, such as running statistics), children, a train/eval flag and a
 * name that prefixes its tensors' names. Built-in modules and containers
 * are made below; a user writes a module of their own by filling in a
 * tg_module_vt and calling tg_module_new:
 *
 *	static tg_tensor *scale_forward(tg_module *m, tg_tensor *x)
 *	{
 *		return tg_mul(x, m->params[0]);            // made of ops only
 *	}
 *	static const tg_module_vt scale_vt = { .kind = "scale", .forward = scale_forward };
 *	tg_module *m = tg_module_new(ctx, &scale_vt, "scale", NULL);
 *	tg_module_add_param(m, tg_ones(ctx, TG_F32, 1, (int64_t[]){ 10 }), "s", false);
 *
 * Ownership: a module is malloc'd and freed by tg_module_free, which frees
 * its children too (a container owns what was added to it) and calls the
 * vt's free for the module's own data; its tensors belong to the context
 * and live until tg_ctx_free. A module must be freed before its context. */

typedef struct tg_module_vt {
	const char *kind; /* "linear", "relu", ...: also the module's word in a spec */
	/* x -> y, made of ops; m->training says which mode. step */
	tg_tensor *(*forward)(tg_module *m, tg_tensor *x);
	/* Frees m->self; NULL when there is nothing to free. */
	void (*free)(tg_module *m);
	/* Writes the module's part of an architecture string (as tg_model_parse
	 * reads it back) into buf like snprintf; NULL: the module cannot be
	 * rebuilt from a string (a user's own). */
	int (*spec)(const tg_module *m, char *buf, size_t size);
} tg_module_vt;

struct tg_module {
	const tg_module_vt *vt;
	tg_ctx *ctx;            /* borrowed */
	char *name;             /* prefix of its tensors' names; owned */
	tg_tensor **params;     /* ctx tensors, nparams of them */
	size_t nparams;
	tg_tensor **state;      /* ctx tensors, nstate of them */
	size_t nstate;
	tg_module **children;   /* owned, nchildren of them */
	size_t nchildren;
	tg_module *parent;      /* the module that owns this one; NULL for a root */
	bool training;          /* starts true */
	void *self;             /* the module's own data */
};

/* A module of kind vt named name (copied; may be NULL for ""), owning self.
 * NULL and an error in ctx on a bad argument or without memory; self then
 * stays the caller's. malloc'd */
TG_API tg_module *tg_module_new(tg_ctx *ctx, const tg_module_vt *vt, const char *name,
				void *self);
/* Frees m, its children and (through vt->free) its own data; NULL is fine.
 * A module added to another is its parent's to free: freeing it alone is
 * TG_EARG naming the parent, and nothing is freed. */
TG_API void tg_module_free(tg_module *m);
/* Makes a parameter of t (tg_param; a t that is a parameter already is used
 * as it is) named "<module name>.<field>" ("<field>" when the module has no
 * name), marks it for weight decay or not (tg_set_decay), and adds it to m.
 * Returns it, or NULL. A field m has already (as a parameter or state) is
 * TG_EARG: two tensors of one name could not be saved. ctx */
TG_API tg_tensor *tg_module_add_param(tg_module *m, tg_tensor *t, const char *field,
				      bool decay);
/* Likewise for state kept without a gradient (tg_keep). ctx */
TG_API tg_tensor *tg_module_add_state(tg_module *m, tg_tensor *t, const char *field);
/* Adds child to m (m then owns it). 0 ok; -1 and an error in ctx (child is
 * freed then, so that nothing leaks: tg_module_add(seq, tg_linear(...)) needs
 * no check between the two). A module has one parent: a child added already
 * (to m or to another module) and a child that is m or holds m, which would
 * make a cycle, are refused without freeing, as their owner frees them. A
 * child NULL from a failed builder gives -1 with that builder's error. A
 * child holding tensors whose name a sibling holding tensors has already
 * is TG_EARG (and freed), as its tensors' names would repeat. */
TG_API int tg_module_add(tg_module *m, tg_module *child);
/* m's forward: y = m->vt->forward(m, x). NULL in, NULL out. step */
TG_API tg_tensor *tg_forward(tg_module *m, tg_tensor *x);
/* Training or evaluation mode for m and every module below it. */
TG_API void tg_module_train(tg_module *m, bool on);
/* Every parameter of m and the modules below it, depth first in the order
 * they were added, into out[0..cap); returns how many there are (call with
 * cap 0 to count). A tensor that several modules hold (tied weights) is
 * listed once, where it is first met, as an optimizer and a checkpoint
 * need it. */
TG_API size_t tg_module_params(const tg_module *m, tg_tensor **out, size_t cap);
/* Everything a checkpoint holds of m: the parameters, then the state, in
 * the same order, each once. */
TG_API size_t tg_module_tensors(const tg_module *m, tg_tensor **out, size_t cap);
/* m's architecture string (see tg_model_parse) into buf; returns its
 * length as snprintf, -1 (and an error) when a module has no spec. */
TG_API int tg_module_spec(const tg_module *m, char *buf, size_t size);

/* Built-in modules. Each returns a new module or NULL (error in ctx; sizes
 * that are not positive, or parameters beyond a tensor's 2^40 elements, are
 * TG_EARG naming the module). Names prefix the tensors: tg_linear(...,
 * "fc1") owns "fc1.W" and "fc1.b". */
/* Runs its children in order; a tg_batchnorm1d module in training mode
 * followed by a relu module runs as one op, tg_batch_norm_relu (tg_mlp's
 * hidden layers likewise), and a relu module followed by a max pool module
 * as tg_relu_max_pool2d, each giving the bits of the two. Evaluating with
 * no gradient wanted, a batch norm and the relu after it are one pass,
 * unless a max pool follows the relu (which then goes with the pool). */
TG_API tg_module *tg_sequential(tg_ctx *ctx, const char *name);
/* x (N,D) @ W (D,M) + b (M) as tg_affine_forward; an x of more than 2 dims
 * is flattened to (N,-1). W drawn with init (the draws of tg_affine_init), b
 * zeros; W decays, b does not. Spec "linear:D:M". */
TG_API tg_module *tg_linear(tg_ctx *ctx, tg_dtype dt, int64_t n_in, int64_t n_out,
			    tg_init init, const char *name);
/* act elementwise; no parameters. Spec tg_act_str's: "relu", "leaky_relu:0.1". */
TG_API tg_module *tg_activation(tg_ctx *ctx, tg_act act, const char *name);
/* Batch norm over the features of (N,D), or the channels of (N,C,...) such
 * as a convolution's (N,C,H,W) output (BatchNorm2d), as
 * tg_batchnorm_forward: gamma, beta parameters (no decay), running_mean,
 * running_var state; the module's train/eval flag picks batch or running
 * statistics. Spec "bn:D", or "bn:D:eps:avg_decay" when those are not
 * TG_BN_EPS and TG_BN_AVG_DECAY.
 * eps must be a positive normal number in dt (1e-300 is 0 in f32), else
 * TG_EARG; avg_decay in [0, 1]. */
TG_API tg_module *tg_batchnorm1d(tg_ctx *ctx, tg_dtype dt, int64_t d, double eps,
				 double avg_decay, const char *name);
/* tg_layer_norm over the last axis, gamma (ones) and beta (zeros) (D)
 * parameters without decay. Spec "ln:D", or "ln:D:eps" when eps is not
 * TG_LN_EPS; eps as tg_batchnorm1d's. */
#define TG_LN_EPS 1e-5
TG_API tg_module *tg_layernorm(tg_ctx *ctx, tg_dtype dt, int64_t d, double eps,
			       const char *name);
/* Inverted dropout with probability p while training (tg_dropout_forward,
 * drawing from the context's generator); identity in eval. Spec "dropout:p". */
TG_API tg_module *tg_dropout_layer(tg_ctx *ctx, double p, const char *name);
/* Rows of a (V,D) table "<name>.weight" (tg_embedding): the input is an
 * index tensor (i32/i64) of any shape -> (..., D). Table N(0,1), without
 * decay. Spec "embedding:V:D". */
TG_API tg_module *tg_embedding_table(tg_ctx *ctx, tg_dtype dt, int64_t v, int64_t d,
				     const char *name);
/* (N, ...) -> (N, prod(...)); a (N,M) input is returned as it is. Spec "flatten". */
TG_API tg_module *tg_flatten(tg_ctx *ctx, const char *name);
/* Convolution as tg_conv2d: x (N,C,H,W) -> (N,O,OH,OW) with W (O, C/groups,
 * kh, kw) drawn from N(0, std^2), std = tg_init_std(init, fan_in, fan_out)
 * with fan_in = C/groups*kh*kw and fan_out = O/groups*kh*kw (He: sqrt(2 /
 * fan_in)), b (O) zeros; W decays, b does not. opts NULL: TG_CONV_DEFAULTS.
 * Spec "conv:C:O:k[:s[:p[:d[:g]]]]" (trailing defaults left out; a side pair
 * that differs is written "3x5"). */
TG_API tg_module *tg_conv2d_layer(tg_ctx *ctx, tg_dtype dt, int64_t c_in, int64_t c_out, int kh,
				  int kw, const tg_conv_opts *opts, tg_init init,
				  const char *name);
/* tg_max_pool2d / tg_avg_pool2d over k x k windows; stride 0 means k,
 * padding in [0, k/2]. No parameters. Spec "maxpool:k[:s[:p]]",
 * "avgpool:k[:s[:p]]" (s left out when it is k, p when 0). */
TG_API tg_module *tg_maxpool2d_layer(tg_ctx *ctx, int k, int stride, int padding,
				     const char *name);
TG_API tg_module *tg_avgpool2d_layer(tg_ctx *ctx, int k, int stride, int padding,
				     const char *name);

/* An architecture string, as tg_module_spec writes it and checkpoints keep
 * it, back into a model (a sequential without a name): "784-100-10" (a string
 * starting with a digit: an MLP with the given options, exactly as tg_mlp_new
 * builds it) or the full form a model writes, pieces joined by ',', e.g.
 * "linear:784:100,bn:100,relu,dropout:0.5,linear:100:10". In the full form
 * opts gives only the parameters' dtype and init and batch norm's default
 * eps and avg_decay; modules are named by kind and count as tg_mlp_new
 * names them: linear fc1, fc2, ...; bn bn1, ...; ln ln1, ...; embedding
 * emb1, ...; activations act1, ...; dropout dropout1, ...; flatten
 * flatten1, ...; conv conv1, ...; maxpool and avgpool pool1, .... So
 * tg_model_parse(tg_module_spec(m)) rebuilds a model that
 * tg_model_parse made with the same architecture and tensor names (fresh
 * values). NULL and TG_EARG naming the piece and what is wrong with it, or
 * the layer (its name and the shape) whose parameters would pass the 2^40
 * elements of a tensor. opts may be NULL for tg_mlp_defaults. malloc'd:
 * tg_module_free */
TG_API tg_module *tg_model_parse(tg_ctx *ctx, const char *arch, const tg_mlp_opts *opts);
/* A small CNN for images (N,c,h,w) from a short form, pieces joined by '-':
 *	convO:K[pP][sS][b]  convolution to O channels, K x K kernel, padding
 *	                 P and stride S (0 and 1 unless given), with b batch
 *	                 norm over its O channels (bn:O); then relu. Each
 *	                 option at most once, in any order
 *	poolK            max pooling K x K at stride K
 *	avgpoolK         average pooling likewise
 *	M                a linear layer to M features; flatten is put before the
 *	                 first, relu after every one but the last piece
 * or "cnn", which is "conv32:3p1-pool2-conv64:3p1-pool2-128-10" (for 1x28x28
 * images). The linear layers' input sizes and each conv's input channels
 * come from the shapes. The model is the same as tg_model_parse of the full
 * form it writes (tg_module_spec), e.g. "conv:1:32:3:1:1,relu,maxpool:2,
 * ...,flatten,linear:3136:128,relu,linear:128:10", with the same names
 * (conv1, act1, pool1, ..., fc1). opts as tg_model_parse. NULL and TG_EARG
 * naming the bad piece and the shape it gets, e.g. a pooling window larger
 * than the image. malloc'd: tg_module_free */
TG_API tg_module *tg_model_parse_image(tg_ctx *ctx, const char *arch, int64_t c, int64_t h,
				       int64_t w, const tg_mlp_opts *opts);

/* ---- optimizers ---------------------------------------------------------------------- */
/* Update rules, as the book's common/optimizer.py (g the gradient, p the
 * parameter; state starts at 0):
 *	SGD       p -= lr g
 *	Momentum  v = momentum v - lr g;  p += v
 *	Nesterov  v = momentum v - lr g;  p += momentum^2 v - (1 + momentum) lr g
 *	          (the book's code, whose v in the second step is the new v:
 *	          p += momentum^3 v_old - (1 + momentum + momentum^2) lr g. It
 *	          is not PyTorch's nesterov=True, which is Bengio's form
 *	          p += momentum^2 v_old - (1 + momentum) lr g with the v of the
 *	          step before: their steps differ from the first one on, by
 *	          momentum^2 lr g there)
 *	AdaGrad   h += g^2;  p -= lr g / (sqrt(h) + eps)
 *	RMSprop   h = rho h + (1 - rho) g^2;  p -= lr g / (sqrt(h) + eps)
 *	Adam      t += 1;  lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)
 *	          (t counts the steps that updated this parameter);
 *	          m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *	          (the book's m += (1 - beta1)(g - m), v likewise, in the form
 *	          of torch.optim.Adam: a g^2 that overflows makes v = inf and
 *	          the element's updates 0, where v += (1 - beta2)(g^2 - v)
 *	          would make inf - inf, a NaN parameter, at the next step);
 *	          p -= lr_t m / (sqrt(v) + eps)
 *	AdamW     p *= 1 - lr weight_decay (decoupled decay, for the params
 *	          marked for it); then Adam's update with g alone, as
 *	          torch.optim.AdamW (whose eps is outside sqrt(v / (1 - beta2^t)),
 *	          as for Adam). Without decay its updates are Adam's, bit for bit.
 * Before the rule, g becomes the gradient of the regularised loss
 * g = grad + weight_decay p for the params marked for decay (tg_decays,
 * set by the module that made them; changeable per parameter): the same as adding 0.5 weight_decay sum(W^2) to the loss
 * (tg_weight_penalty); but for AdamW, whose g is grad. Then, if clip_norm > 0
 * and the global L2 norm of all those g exceeds it, every g is scaled by
 * clip_norm / norm. The gradient
 * tensors themselves are left unchanged. Parameters are written through
 * tg_data_mut, so a backward through a graph recorded before the step
 * reports TG_EVERSION. A parameter whose gradient is NULL is skipped
 * (until its first update: see tg_state_optim below). State
 * tensors are tg_keep tensors named "<param>.v" (Momentum, Nesterov),
 * "<param>.h" (AdaGrad, RMSprop), "<param>.m" and "<param>.v" (Adam, AdamW). */

typedef enum {
	TG_SGD,
	TG_MOMENTUM,
	TG_NESTEROV,
	TG_ADAGRAD,
	TG_RMSPROP,
	TG_ADAM,
	TG_ADAMW
} tg_optim_kind;

typedef struct tg_optim_opts {
	tg_optim_kind kind;
	double lr;	     /* 0.01; Adam, AdamW 0.001 */
	double momentum;     /* Momentum, Nesterov: 0.9 */
	double rho;	     /* RMSprop's decay_rate: 0.99 */
	double beta1;	     /* Adam, AdamW: 0.9 */
	double beta2;	     /* Adam, AdamW: 0.999 */
	double eps;	     /* AdaGrad, RMSprop, Adam, AdamW: 1e-7 */
	double weight_decay; /* lambda; 0 (AdamW too, not torch's 0.01) */
	double clip_norm;    /* 0: no clipping */
} tg_optim_opts;

typedef struct tg_optim tg_optim;

/* The book's defaults for kind. */
TG_API tg_optim_opts tg_optim_defaults(tg_optim_kind kind);
/* "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw". 0 ok; -1 and
 * TG_EARG in ctx. */
TG_API int tg_optim_parse(tg_ctx *ctx, const char *s, tg_optim_kind *out);
TG_API const char *tg_optim_name(tg_optim_kind kind); /* "adam"; static */
/* Over params[0..n) (the array is copied). TG_EARG naming the tensor if one
 * does not require a gradient, for a bad option, or for n = 0 (params may
 * then be NULL); NULL then. The updates run in each parameter's dtype: an
 * eps (AdaGrad, RMSprop, Adam, AdamW) that is not a positive normal number there
 * (1e-50 is 0 in f32, and a zero gradient would give 0 / 0), or an lr or
 * weight_decay past its largest number, is TG_EARG naming the parameter;
 * tg_optim_set_lr checks its lr likewise. */
TG_API tg_optim *tg_optim_new(tg_ctx *ctx, tg_tensor *const *params, size_t n,
			      const tg_optim_opts *opts); /* free with tg_optim_free */
/* Frees o (not its tensors: they are the context's). Safe before or after
 * tg_ctx_free; every other call on o must come before it. */
TG_API void tg_optim_free(tg_optim *o);
/* One update of every parameter that has a gradient. 0 ok, -1 on error;
 * does nothing while the context holds an error. */
TG_API int tg_optim_step(tg_optim *o);
TG_API void tg_optim_zero_grad(tg_optim *o); /* tg_zero_grad of each param */
TG_API double tg_optim_lr(const tg_optim *o); /* NAN for a NULL o */
/* For schedules. An lr below 0, not finite or past the parameters' dtype's
 * largest number is TG_EARG in o's context, and the rate stays. */
TG_API void tg_optim_set_lr(tg_optim *o, double lr);
/* Whether weight decay applies to params[i] (default: tg_decays(params[i])).
 * An i past the parameters is TG_EARG. */
TG_API void tg_optim_set_decay(tg_optim *o, size_t i, bool on);
/* Global L2 norm of the (decayed; AdamW's: plain) gradients at the last
 * step, before clipping; 0 before the first step. Without clipping or weight
 * decay added to the gradients the
 * step does not compute it: this call reads the gradients still present, so
 * ask before tg_optim_zero_grad or the next tg_backward changes them. */
TG_API double tg_optim_grad_norm(const tg_optim *o);
TG_API int64_t tg_optim_steps(const tg_optim *o);	/* steps taken */
/* When resuming; t >= 0, else TG_EARG and nothing changes. Sets every
 * parameter's count (below) to t too. */
TG_API void tg_optim_set_steps(tg_optim *o, int64_t t);
/* The steps that updated params[i] (Adam's and AdamW's t for it): tg_optim_steps but
 * for the steps that skipped it (no gradient: frozen or unused), as
 * PyTorch's per-parameter step; -1 for a bad i. A run resumed with
 * tg_optim_set_steps alone counts every parameter as updated at every step;
 * set a parameter's own count after it (0 to tg_optim_steps, else TG_EARG)
 * when it was skipped. */
TG_API int64_t tg_optim_param_steps(const tg_optim *o, size_t i);
TG_API void tg_optim_set_param_steps(tg_optim *o, size_t i, int64_t t);
/* The state tensors, for checkpoints; none for SGD. */
TG_API tg_tensor *const *tg_optim_state(const tg_optim *o, size_t *n); /* borrowed */

/* A frozen parameter (tg_set_requires_grad off) is skipped, whatever
 * gradient it holds: a backward run after it was frozen gives it none, and
 * one from before goes unread (nor does it count in the norm). One that
 * requires a gradient but got none (a branch the step did not use) is
 * skipped until its first update; after it (tg_optim_param_steps > 0) it
 * takes a gradient of zeros, as tg_grad reads for a leaf that had a
 * gradient, so its state and weight decay move on: the same updates in a
 * run resumed in a new process (with its counts restored) as in one that
 * never stopped.
 *
 * What a checkpoint (tapegrad_io.h) needs of o beside its state tensors:
 * tg_state_optim puts its kind ("optim", tg_optim_name), its step count
 * ("optim.steps") and each parameter's count ("optim.param_steps", i64 x n
 * in params order) into s; tg_state_restore_optim sets them back into an
 * optimizer over the same parameters. A state of another kind, of another
 * number of parameters, or whose counts are negative or above the steps
 * taken is TG_EFORMAT naming it, and o is left as it was; a state without
 * "optim.steps" is TG_EARG. A state saved before per-parameter counts (no
 * "optim.param_steps") counts every parameter as updated at every step.
 * 0 ok, -1. */
typedef struct tg_state tg_state;
TG_API int tg_state_optim(tg_state *s, const tg_optim *o);
TG_API int tg_state_restore_optim(const tg_state *s, tg_optim *o);

#ifdef __cplusplus
}
#endif
#endif /* TAPEGRAD_NN_H */
