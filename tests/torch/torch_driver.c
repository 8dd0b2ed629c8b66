/*
 * torch_driver.c - runs expressions written by check_torch.py through
 * tapegrad and prints what came out, for comparison with PyTorch.
 *
 * Input (stdin or the file named as argument): cases, one token stream per
 * line, each case ending with E.
 *	T f64 <grad 0|1> <ndim> <dims...> <values...>   a float tensor: a slot
 *	T i64|i32 <ndim> <dims...> <values...>          an index tensor: a slot
 *	O <op> <nargs> <slots...> <nattrs> <attrs...>   an op: its outputs are slots
 *	R <slot>                                        the expression's result y
 *	W <values...>                                   w, of y's shape
 *	V <k> <values...>                               direction v_k for input k
 *	F <flags>                                       1: Jacobian, 2: Hessian
 *	E                                               run the case
 * Slots are numbered in order of appearance, inputs and op outputs alike;
 * the float tensors with grad 1 are the inputs x_k, k in order.
 *
 * Output, one line each, "<key> <count> <values as %.17g...>", for y = f(x)
 * and L = sum(y * w):
 *	value      y
 *	grad k     dL/dx_k by tg_backward (leaf gradients)
 *	bwex k     the same by tg_backward_ex(y, w, TG_CREATE_GRAPH)
 *	hvpbw k    d<bwex, v>/dx_k (when bwex has history)
 *	gradof k   the same by tg_grad_of(y, douts = w), TG_CREATE_GRAPH
 *	hvp k      d<gradof, v>/dx_k, gradof differentiated again
 *	fhvp k     tg_hvp of L with v
 *	vjp k      tg_vjp of f with w
 *	jvp        tg_jvp of f with tangents v
 *	jac k      tg_jacobian of f (flag 1)
 *	hess i j   tg_hessian of L (flag 2)
 * then "end". A failure prints "error <message>" in place of what failed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

enum { MAX_SLOTS = 256, MAX_OPS = 128, MAX_ARGS = 16, MAX_ATTRS = 16, MAX_X = 16 };

typedef struct {
	char name[32];
	int nargs, args[MAX_ARGS];
	int nattrs;
	double attrs[MAX_ATTRS];
	int first; /* its first output slot */
} op_line;

typedef struct {
	int kind; /* 0: f64 constant, 1: input x_k, 2: index (i32/i64), 3: op output */
	int k;    /* x index for kind 1 */
	tg_tensor *t; /* the constant / index tensor / leaf */
} slot_info;

typedef struct {
	slot_info slot[MAX_SLOTS];
	int nslots;
	op_line op[MAX_OPS];
	int nops;
	int result;
	int nx;
	tg_tensor *x[MAX_X]; /* leaves requiring a gradient */
	tg_tensor *v[MAX_X];
	double *w;
	size_t nw;
	int flags;
	tg_tensor *vals[MAX_SLOTS]; /* during an evaluation */
} program;

static size_t numel_of(int ndim, const int64_t *shape)
{
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	return n;
}

static void print_tensor(const char *key, const tg_tensor *t)
{
	if (!t) {
		printf("%s none\n", key);
		return;
	}
	size_t n = tg_numel(t);
	printf("%s %zu", key, n);
	for (size_t i = 0; i < n; i++)
		printf(" %.17g", tg_get(t, i));
	printf("\n");
}

/* One op on vals[]; its outputs go to vals[o.first..]. Returns the number
 * of outputs, or -1 for an unknown op. */
static int run_op(tg_ctx *ctx, const op_line *o, tg_tensor **vals)
{
	tg_tensor *a[MAX_ARGS] = { 0 };
	for (int i = 0; i < o->nargs; i++)
		a[i] = vals[o->args[i]];
	const double *at = o->attrs;
	tg_tensor **out = vals + o->first;
	const char *n = o->name;
	int64_t dims[TG_MAX_DIMS];
	for (int i = 0; i + 1 < o->nattrs && i < TG_MAX_DIMS; i++)
		dims[i] = (int64_t)at[i + 1];

#define UN(name_, call_) if (!strcmp(n, name_)) { out[0] = call_; return 1; }
	UN("add", tg_add(a[0], a[1]))
	UN("sub", tg_sub(a[0], a[1]))
	UN("mul", tg_mul(a[0], a[1]))
	UN("div", tg_div(a[0], a[1]))
	UN("maximum", tg_maximum(a[0], a[1]))
	UN("minimum", tg_minimum(a[0], a[1]))
	UN("where", tg_where(a[0], a[1], a[2]))
	UN("pow", tg_pow(a[0], at[0]))
	UN("add_scalar", tg_add_scalar(a[0], at[0]))
	UN("mul_scalar", tg_mul_scalar(a[0], at[0]))
	UN("neg", tg_neg(a[0]))
	UN("exp", tg_exp(a[0]))
	UN("log", tg_log(a[0]))
	UN("sqrt", tg_sqrt(a[0]))
	UN("abs", tg_abs(a[0]))
	UN("sigmoid", tg_sigmoid(a[0]))
	UN("tanh", tg_tanh(a[0]))
	UN("relu", tg_relu(a[0]))
	UN("leaky_relu", tg_leaky_relu(a[0], at[0]))
	UN("elu", tg_elu(a[0], at[0]))
	UN("softplus", tg_softplus(a[0]))
	UN("log1p", tg_log1p(a[0]))
	UN("expm1", tg_expm1(a[0]))
	UN("sin", tg_sin(a[0]))
	UN("cos", tg_cos(a[0]))
	UN("erf", tg_erf(a[0]))
	UN("gelu", tg_gelu(a[0]))
	UN("silu", tg_silu(a[0]))
	UN("clamp", tg_clamp(a[0], at[0], at[1]))
	UN("sigmoid_backward", tg_sigmoid_backward(a[0], a[1]))
	UN("relu_backward", tg_relu_backward(a[0], a[1]))
	UN("tanh_backward", tg_tanh_backward(a[0], a[1]))
	UN("leaky_relu_backward", tg_leaky_relu_backward(a[0], a[1], at[0]))
	UN("elu_backward", tg_elu_backward(a[0], a[1], at[0]))
	UN("gelu_backward", tg_gelu_backward(a[0], a[1]))
	UN("pow_backward", tg_pow_backward(a[0], a[1], at[0]))
	UN("softplus_backward", tg_softplus_backward(a[0], a[1]))
	UN("silu_backward", tg_silu_backward(a[0], a[1]))
	UN("addmm", tg_addmm(a[0], a[1], a[2]))
	UN("addmm_relu", tg_addmm_relu(a[0], a[1], a[2]))
	UN("detach", tg_detach(a[0]))
	UN("sum", tg_sum(a[0]))
	UN("mean", tg_mean(a[0]))
	UN("max", tg_max(a[0]))
	UN("sum_axis", tg_sum_axis(a[0], (int)at[0], at[1] != 0))
	UN("mean_axis", tg_mean_axis(a[0], (int)at[0], at[1] != 0))
	UN("max_axis", tg_max_axis(a[0], (int)at[0], at[1] != 0))
	UN("sum_to", tg_sum_to(a[0], (int)at[0], dims))
	UN("expand", tg_expand(a[0], (int)at[0], dims))
	UN("reshape", tg_reshape(a[0], (int)at[0], dims))
	UN("matmul", tg_matmul(a[0], a[1]))
	UN("matmul_t", tg_matmul_t(a[0], at[0] != 0, a[1], at[1] != 0))
	UN("transpose", tg_transpose(a[0]))
	UN("bmm", tg_bmm(a[0], a[1]))
	UN("bmm_t", tg_bmm_t(a[0], at[0] != 0, a[1], at[1] != 0))
	UN("squeeze", tg_squeeze(a[0], (int)at[0]))
	UN("unsqueeze", tg_unsqueeze(a[0], (int)at[0]))
	UN("slice", tg_slice(a[0], (int)at[0], (int64_t)at[1], (int64_t)at[2]))
	UN("pad_axis", tg_pad_axis(a[0], (int)at[0], (int64_t)at[1], (int64_t)at[2]))
	UN("concat", tg_concat(ctx, o->nargs, a, (int)at[0]))
	UN("stack", tg_stack(ctx, o->nargs, a, (int)at[0]))
	UN("index_select", tg_index_select(a[0], (int)at[0], a[1]))
	UN("gather_rows", tg_gather_rows(a[0], a[1]))
	UN("embedding", tg_embedding(a[0], a[1]))
	UN("pick", tg_pick(a[0], a[1]))
	UN("one_hot", tg_one_hot(a[0], TG_F64, (int64_t)at[0]))
	UN("softmax", tg_softmax(a[0]))
	UN("log_softmax", tg_log_softmax(a[0]))
	UN("softmax_axis", tg_softmax_axis(a[0], (int)at[0]))
	UN("log_softmax_axis", tg_log_softmax_axis(a[0], (int)at[0]))
	UN("logsumexp", tg_logsumexp(a[0], (int)at[0], at[1] != 0))
	UN("cross_entropy", tg_cross_entropy(a[0], a[1]))
	UN("nll", tg_nll(a[0], a[1]))
	UN("cross_entropy_backward", tg_cross_entropy_backward(a[0], a[1], a[2]))
	UN("mse", tg_mse(a[0], a[1]))
	UN("l1", tg_l1(a[0], a[1]))
	UN("huber", tg_huber(a[0], a[1], at[0]))
	UN("bce_with_logits", tg_bce_with_logits(a[0], a[1]))
	UN("batch_norm_backward", tg_batch_norm_backward(a[0], a[1], a[2], at[0]))
	UN("layer_norm", tg_layer_norm(a[0], a[1], a[2], at[0]))
	UN("layer_norm_backward", tg_layer_norm_backward(a[0], a[1], a[2], at[0]))
	UN("max_pool2d", tg_max_pool2d(a[0], (int)at[0], (int)at[1], (int)at[2]))
	UN("relu_max_pool2d", tg_relu_max_pool2d(a[0], (int)at[0], (int)at[1], (int)at[2]))
	UN("avg_pool2d", tg_avg_pool2d(a[0], (int)at[0], (int)at[1], (int)at[2]))
#undef UN
	if (!strcmp(n, "permute")) {
		int perm[TG_MAX_DIMS];
		for (int i = 0; i < o->nattrs && i < TG_MAX_DIMS; i++)
			perm[i] = (int)at[i];
		out[0] = tg_permute(a[0], perm);
		return 1;
	}
	if (!strcmp(n, "cross_entropy_i32")) {
		/* the labels come as an index tensor; passed on as a plain array */
		size_t m = a[1] ? tg_numel(a[1]) : 0;
		int32_t *lab = malloc((m ? m : 1) * sizeof *lab);
		for (size_t i = 0; lab && i < m; i++)
			lab[i] = (int32_t)tg_get(a[1], i);
		out[0] = lab ? tg_cross_entropy_i32(a[0], lab, (int64_t)m) : NULL;
		free(lab);
		return 1;
	}
	if (!strcmp(n, "split")) {
		/* attrs: axis, parts, then the sizes (none: equal parts) */
		int parts = (int)at[1];
		int64_t sizes[MAX_ATTRS];
		for (int i = 0; i < parts && i + 2 < o->nattrs; i++)
			sizes[i] = (int64_t)at[i + 2];
		if (tg_split(a[0], (int)at[0], parts, o->nattrs > 2 ? sizes : NULL, out) != 0)
			for (int i = 0; i < parts; i++)
				out[i] = NULL;
		return parts;
	}
	if (!strncmp(n, "conv2d", 6)) {
		/* attrs: two sizes for the gradient ops (H W, KH KW), then stride,
		 * padding and dilation (h w each) and groups */
		int k = strcmp(n, "conv2d") && strcmp(n, "conv2d_relu") ? 2 : 0;
		tg_conv_opts co = { { (int)at[k], (int)at[k + 1] }, { (int)at[k + 2], (int)at[k + 3] },
				    { (int)at[k + 4], (int)at[k + 5] }, (int)at[k + 6] };
		if (!strcmp(n, "conv2d"))
			out[0] = tg_conv2d(a[0], a[1], o->nargs > 2 ? a[2] : NULL, &co);
		else if (!strcmp(n, "conv2d_relu"))
			out[0] = tg_conv2d_relu(a[0], a[1], o->nargs > 2 ? a[2] : NULL, &co);
		else if (!strcmp(n, "conv2d_input_grad"))
			out[0] = tg_conv2d_input_grad(a[0], a[1], (int64_t)at[0], (int64_t)at[1], &co);
		else
			out[0] = tg_conv2d_weight_grad(a[0], a[1], (int64_t)at[0], (int64_t)at[1], &co);
		return 1;
	}
	if (!strcmp(n, "batch_norm") || !strcmp(n, "batch_norm_relu")) {
		/* three outputs: y, then the batch's mean and variance */
		bool relu = !strcmp(n, "batch_norm_relu");
		out[0] = relu ? tg_batch_norm_relu(a[0], a[1], a[2], at[0], &out[1], &out[2])
			      : tg_batch_norm(a[0], a[1], a[2], at[0], &out[1], &out[2]);
		return 3;
	}
	return -1;
}

static int outputs_of(const char *name, const double *attrs)
{
	if (!strcmp(name, "split"))
		return (int)attrs[1];
	if (!strcmp(name, "batch_norm") || !strcmp(name, "batch_norm_relu"))
		return 3;
	return 1;
}

/* The expression as a tg_fn: in[k] stands for x_k. */
static tg_tensor *eval(tg_tensor *const *in, void *user)
{
	program *p = user;
	for (int s = 0; s < p->nslots; s++) {
		const slot_info *si = &p->slot[s];
		p->vals[s] = si->kind == 1 ? in[si->k] : si->kind == 3 ? NULL : si->t;
	}
	for (int i = 0; i < p->nops; i++)
		if (run_op(tg_ctx_of(in[0] ? in[0] : p->slot[0].t), &p->op[i], p->vals) < 0)
			return NULL;
	return p->vals[p->result];
}

/* L = sum(f * w), for tg_hvp and tg_hessian. */
static tg_tensor *weighted(tg_tensor *const *in, void *user)
{
	program *p = user;
	tg_tensor *y = eval(in, user);
	if (!y)
		return NULL;
	tg_tensor *w = tg_from_f64(tg_ctx_of(y), TG_F64, tg_ndim(y), tg_shape(y), p->w);
	return tg_sum(tg_mul(y, w));
}

static int report_error(tg_ctx *ctx, const char *what)
{
	if (tg_ok(ctx))
		return 0;
	printf("error %s: %s\n", what, tg_error(ctx));
	tg_clear_error(ctx);
	return 1;
}

static void run_case(tg_ctx *ctx, program *p)
{
	int nx = p->nx;
	char key[64];
	tg_tensor *y = eval(p->x, p);
	if (!y) {
		if (!report_error(ctx, "forward"))
			printf("error forward: unknown op\n");
		return;
	}
	print_tensor("value", y);
	if (tg_numel(y) != p->nw) {
		printf("error w has %zu values, y %zu\n", p->nw, tg_numel(y));
		return;
	}
	tg_tensor *w = tg_from_f64(ctx, TG_F64, tg_ndim(y), tg_shape(y), p->w);
	if (nx == 0)
		return;

	/* first order by tg_backward into the leaves */
	tg_tensor *L = tg_sum(tg_mul(y, w));
	if (tg_backward(L) == 0) {
		for (int k = 0; k < nx; k++) {
			snprintf(key, sizeof key, "grad %d", k);
			tg_tensor *g = tg_grad(p->x[k]);
			if (g)
				print_tensor(key, g);
			else
				printf("%s none\n", key);
		}
	}
	report_error(ctx, "backward");

	/* again by tg_backward_ex with y's upstream gradient w, recorded
	 * (TG_CREATE_GRAPH), and the leaf gradients differentiated once more */
	for (int k = 0; k < nx; k++)
		tg_zero_grad(p->x[k]);
	if (tg_backward_ex(y, w, TG_CREATE_GRAPH) == 0) {
		tg_tensor *s = NULL, *h2[MAX_X];
		for (int k = 0; k < nx; k++) {
			snprintf(key, sizeof key, "bwex %d", k);
			tg_tensor *g = tg_grad(p->x[k]);
			print_tensor(key, g);
			if (g && tg_requires_grad(g)) {
				tg_tensor *d = tg_sum(tg_mul(g, p->v[k]));
				s = s ? tg_add(s, d) : d;
			}
		}
		if (!s) /* no gradient has history: f is linear in x */
			for (int k = 0; k < nx; k++)
				h2[k] = tg_zeros(ctx, TG_F64, tg_ndim(p->x[k]), tg_shape(p->x[k]));
		if (!s || tg_grad_of(1, &s, NULL, nx, p->x, h2, TG_ALLOW_UNUSED) == 0)
			for (int k = 0; k < nx; k++) {
				snprintf(key, sizeof key, "hvpbw %d", k);
				print_tensor(key, h2[k]);
			}
	}
	report_error(ctx, "backward_ex");

	/* first and second order by tg_grad_of, the backward recorded */
	tg_tensor *g[MAX_X], *h[MAX_X];
	if (tg_grad_of(1, &y, &w, nx, p->x, g, TG_CREATE_GRAPH | TG_ALLOW_UNUSED) == 0) {
		tg_tensor *s = NULL;
		for (int k = 0; k < nx; k++) {
			snprintf(key, sizeof key, "gradof %d", k);
			print_tensor(key, g[k]);
			tg_tensor *d = tg_sum(tg_mul(g[k], p->v[k]));
			s = s ? tg_add(s, d) : d;
		}
		if (s && tg_requires_grad(s)) {
			if (tg_grad_of(1, &s, NULL, nx, p->x, h, TG_ALLOW_UNUSED) == 0)
				for (int k = 0; k < nx; k++) {
					snprintf(key, sizeof key, "hvp %d", k);
					print_tensor(key, h[k]);
				}
		} else if (s) {
			/* the gradient has no history: f is linear in x */
			for (int k = 0; k < nx; k++) {
				snprintf(key, sizeof key, "hvp %d", k);
				print_tensor(key, tg_zeros(ctx, TG_F64, tg_ndim(p->x[k]),
							   tg_shape(p->x[k])));
			}
		}
	}
	report_error(ctx, "grad_of");

	/* the functional forms */
	if (tg_hvp(ctx, weighted, p, nx, p->x, p->v, NULL, h) == 0)
		for (int k = 0; k < nx; k++) {
			snprintf(key, sizeof key, "fhvp %d", k);
			print_tensor(key, h[k]);
		}
	report_error(ctx, "tg_hvp");
	if (tg_vjp(ctx, eval, p, nx, p->x, w, NULL, h) == 0)
		for (int k = 0; k < nx; k++) {
			snprintf(key, sizeof key, "vjp %d", k);
			print_tensor(key, h[k]);
		}
	report_error(ctx, "tg_vjp");
	tg_tensor *jv;
	if (tg_jvp(ctx, eval, p, nx, p->x, p->v, NULL, &jv) == 0)
		print_tensor("jvp", jv);
	report_error(ctx, "tg_jvp");
	if (p->flags & 1) {
		if (tg_jacobian(ctx, eval, p, nx, p->x, h) == 0)
			for (int k = 0; k < nx; k++) {
				snprintf(key, sizeof key, "jac %d", k);
				print_tensor(key, h[k]);
			}
		report_error(ctx, "tg_jacobian");
	}
	if (p->flags & 2) {
		tg_tensor *hs[MAX_X * MAX_X];
		if (tg_hessian(ctx, weighted, p, nx, p->x, hs) == 0)
			for (int i = 0; i < nx; i++)
				for (int j = 0; j < nx; j++) {
					snprintf(key, sizeof key, "hess %d %d", i, j);
					print_tensor(key, hs[i * nx + j]);
				}
		report_error(ctx, "tg_hessian");
	}
}

/* ---- reading --------------------------------------------------------------- */

static char *next_tok(char **save)
{
	return strtok_r(NULL, " \t\r\n", save);
}

static double num(char **save)
{
	char *t = next_tok(save);
	if (!t) {
		fprintf(stderr, "torch_driver: a line ends early\n");
		exit(2);
	}
	return strtod(t, NULL);
}

static void read_tensor(tg_ctx *ctx, program *p, char **save)
{
	char *dt = next_tok(save);
	int fl = dt && !strcmp(dt, "f64");
	int grad = fl ? (int)num(save) : 0;
	int ndim = (int)num(save);
	int64_t shape[TG_MAX_DIMS];
	for (int i = 0; i < ndim; i++)
		shape[i] = (int64_t)num(save);
	size_t n = numel_of(ndim, shape);
	double *v = malloc((n ? n : 1) * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = num(save);
	slot_info *si = &p->slot[p->nslots++];
	if (fl) {
		si->t = tg_from_f64(ctx, TG_F64, ndim, shape, v);
		si->kind = grad ? 1 : 0;
		if (grad) {
			si->k = p->nx;
			p->x[p->nx++] = tg_set_requires_grad(si->t, true);
		}
	} else if (dt && !strcmp(dt, "i32")) {
		int32_t *iv = malloc((n ? n : 1) * sizeof *iv);
		for (size_t i = 0; i < n; i++)
			iv[i] = (int32_t)v[i];
		si->t = tg_from_i32(ctx, ndim, shape, iv);
		si->kind = 2;
		free(iv);
	} else {
		int64_t *iv = malloc((n ? n : 1) * sizeof *iv);
		for (size_t i = 0; i < n; i++)
			iv[i] = (int64_t)v[i];
		si->t = tg_from_i64(ctx, ndim, shape, iv);
		si->kind = 2;
		free(iv);
	}
	free(v);
}

int main(int argc, char **argv)
{
	FILE *in = argc > 1 ? fopen(argv[1], "r") : stdin;
	if (!in) {
		perror(argv[1]);
		return 2;
	}
	size_t cap = 0;
	char *line = NULL;
	program *p = calloc(1, sizeof *p);
	tg_ctx *ctx = tg_ctx_new(1);
	while (getline(&line, &cap, in) > 0) {
		char *save;
		char *t = strtok_r(line, " \t\r\n", &save);
		if (!t)
			continue;
		switch (t[0]) {
		case 'T':
			read_tensor(ctx, p, &save);
			break;
		case 'O': {
			op_line *o = &p->op[p->nops++];
			snprintf(o->name, sizeof o->name, "%s", next_tok(&save));
			o->nargs = (int)num(&save);
			for (int i = 0; i < o->nargs; i++)
				o->args[i] = (int)num(&save);
			o->nattrs = (int)num(&save);
			for (int i = 0; i < o->nattrs; i++)
				o->attrs[i] = num(&save);
			o->first = p->nslots;
			int nout = outputs_of(o->name, o->attrs);
			for (int i = 0; i < nout; i++)
				p->slot[p->nslots++] = (slot_info){ .kind = 3 };
			break;
		}
		case 'R':
			p->result = (int)num(&save);
			break;
		case 'W': {
			size_t n = 0, wc = 64;
			p->w = malloc(wc * sizeof *p->w);
			for (char *s; (s = next_tok(&save));) {
				if (n == wc)
					p->w = realloc(p->w, (wc *= 2) * sizeof *p->w);
				p->w[n++] = strtod(s, NULL);
			}
			p->nw = n;
			break;
		}
		case 'V': {
			int k = (int)num(&save);
			tg_tensor *x = p->x[k];
			size_t n = tg_numel(x);
			double *v = malloc((n ? n : 1) * sizeof *v);
			for (size_t i = 0; i < n; i++)
				v[i] = num(&save);
			p->v[k] = tg_from_f64(ctx, TG_F64, tg_ndim(x), tg_shape(x), v);
			free(v);
			break;
		}
		case 'F':
			p->flags = (int)num(&save);
			break;
		case 'E':
			if (report_error(ctx, "reading the case") == 0)
				run_case(ctx, p);
			printf("end\n");
			fflush(stdout);
			free(p->w);
			memset(p, 0, sizeof *p);
			tg_ctx_free(ctx);
			ctx = tg_ctx_new(1);
			break;
		default:
			fprintf(stderr, "torch_driver: unknown line '%s'\n", t);
			return 2;
		}
	}
	free(line);
	free(p);
	tg_ctx_free(ctx);
	if (in != stdin)
		fclose(in);
	return 0;
}
