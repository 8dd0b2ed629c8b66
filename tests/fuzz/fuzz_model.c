/*
 * fuzz_model.c - libFuzzer target: models built from architecture strings,
 * run, trained a step, saved and loaded.
 *
 * Input: a mode byte (bit 0: tg_model_parse_image instead of
 * tg_model_parse; bit 1: f64; bit 2: evaluation mode; bit 3: a checkpoint
 * round trip; bits 4-6: the optimizer; bit 7: a failing allocator, whose
 * allocation number is the next byte), the input's ndim and four sizes,
 * then the architecture string (to the end or a NUL byte).
 *
 * Rules:
 * - a string that does not parse is NULL with TG_EARG (or TG_ENOMEM) and a
 *   message naming the parser (a layer's own refusal included);
 * - a model's spec (tg_module_spec) parses again to a model with the same
 *   spec, the same tensors (names, dtypes, shapes) and so a checkpoint of
 *   the first loads into the second, bit for bit;
 * - tg_forward either gives a tensor or NULL with an error set; from a
 *   tensor, a backward pass and an optimizer step either succeed or fail
 *   with the error set, and every parameter keeps its shape;
 * - in evaluation mode, a forward with grad mode off (which runs batch
 *   norm in one pass) gives the bits of one with it on (the ops), or fails
 *   as that one does;
 * - nothing leaks (LeakSanitizer) whatever fails.
 * Parameters are limited (a failing allocator above 32 MB in use) and the
 * forward pass is skipped when parameters times batch pass a budget, so a
 * run stays short. TG_FUZZ_TRACE=1 prints the string and how each stage
 * ended.
 */
#define _GNU_SOURCE
#include "internal.h"

#include "fuzz_common.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_ARCH = 600, MAX_TENSORS = 256, ARENA_LIMIT = 16 << 20 };

static const double WORK_BUDGET = 2e7; /* parameters x batch of one forward */

static char ckpt_path[4096];
static bool trace; /* TG_FUZZ_TRACE=1: the string and how each stage ended */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	trace = getenv("TG_FUZZ_TRACE") != NULL;
	const char *dir = getenv("TMPDIR");
	char tmpl[4096];
	snprintf(tmpl, sizeof tmpl, "%s/tg_fuzz_model_XXXXXX", dir && *dir ? dir : "/tmp");
	if (!mkdtemp(tmpl))
		return 0;
	snprintf(ckpt_path, sizeof ckpt_path, "%s/model.tgc", tmpl);
	return 0;
}

static int64_t size_of(uint8_t b)
{
	static const int64_t small[] = { 1, 2, 3, 4, 5, 7, 8, 12, 16, 28 };
	static const int64_t odd[] = { 0, -1, 100, 1 << 20 };
	return b < 240 ? small[b % 10] : odd[b % 4];
}

static bool names_parser(const char *msg)
{
	return strstr(msg, "tg_model_parse") != NULL;
}

/* The tensors of m with their count; each has a name. */
static size_t tensors_of(const tg_module *m, tg_tensor **t)
{
	size_t n = tg_module_tensors(m, t, MAX_TENSORS);
	require(n <= MAX_TENSORS, "a model of %zu tensors from %d bytes of spec", n, MAX_ARCH);
	return n;
}

static const char *name_of(const tg_tensor *t) { return tg_name(t) ? tg_name(t) : ""; }

static bool same_meta(const tg_tensor *a, const tg_tensor *b)
{
	if (tg_dtype_of(a) != tg_dtype_of(b) || tg_ndim(a) != tg_ndim(b) ||
	    strcmp(name_of(a), name_of(b)))
		return false;
	for (int i = 0; i < tg_ndim(a); i++)
		if (tg_dim(a, i) != tg_dim(b, i))
			return false;
	return true;
}

/* The spec of m parses again to a model of the same spec and tensors; a
 * checkpoint of m loads into it to the same bits. */
static void round_trip(tg_ctx *ctx, tg_module *m, const tg_mlp_opts *opts, bool ckpt)
{
	char spec[8192], again[8192];
	int n = tg_module_spec(m, spec, sizeof spec);
	require(n >= 0 || !tg_ok(ctx), "tg_module_spec: -1 with no error");
	if (n < 0 || (size_t)n >= sizeof spec) {
		tg_clear_error(ctx);
		return;
	}
	tg_module *m2 = tg_model_parse(ctx, spec, opts);
	if (!m2) {
		require(tg_status_of(ctx) == TG_ENOMEM, "the spec \"%s\" of a model does not parse: %s",
			spec, tg_error(ctx));
		tg_clear_error(ctx);
		return;
	}
	int n2 = tg_module_spec(m2, again, sizeof again);
	require(n2 == n && !strcmp(spec, again), "spec \"%s\" parses to a model of spec \"%s\"",
		spec, again);
	static tg_tensor *t1[MAX_TENSORS], *t2[MAX_TENSORS];
	size_t k1 = tensors_of(m, t1), k2 = tensors_of(m2, t2);
	require(k1 == k2, "spec \"%s\": %zu tensors, %zu after parsing it again", spec, k1, k2);
	for (size_t i = 0; i < k1; i++)
		require(same_meta(t1[i], t2[i]), "spec \"%s\": tensor %zu (%s) differs after parsing",
			spec, i, name_of(t1[i]));
	if (ckpt && ckpt_path[0] && k1 > 0) {
		if (tg_checkpoint_save(ctx, ckpt_path, t1, k1) == 0) {
			int rc = tg_checkpoint_load_flags(ctx, ckpt_path, t2, k2,
							  TG_CHECKPOINT_NONFINITE);
			if (trace)
				fprintf(stderr, "checkpoint of %zu tensors: %d\n", k1, rc);
			require(rc == 0 || tg_status_of(ctx) == TG_ENOMEM,
				"a checkpoint of \"%s\" does not load into its own spec: %s", spec,
				tg_error(ctx));
			for (size_t i = 0; rc == 0 && i < k1; i++) {
				size_t bytes = tg_numel(t1[i]) * tg_dtype_size(tg_dtype_of(t1[i]));
				require(!memcmp(tg_data(t1[i]), tg_data(t2[i]), bytes),
					"tensor %s changed through a checkpoint", name_of(t1[i]));
			}
		}
		tg_clear_error(ctx);
	}
	tg_module_free(m2);
}

/* Whether a forward of m on x stays within the work budget: up to
 * MAX_TENSORS parameters (left in p, their count in *np), whose sizes
 * times x's batch are WORK_BUDGET or less. */
static bool within_budget(tg_module *m, tg_tensor *x, tg_tensor **p, size_t *np)
{
	*np = tg_module_params(m, p, MAX_TENSORS);
	if (*np > MAX_TENSORS)
		return false;
	double params = 0;
	for (size_t i = 0; i < *np; i++)
		params += (double)tg_numel(p[i]);
	return params * (double)tg_dim(x, 0) <= WORK_BUDGET;
}

static void train_step(tg_ctx *ctx, tg_module *m, tg_tensor *x, unsigned optim)
{
	static tg_tensor *p[MAX_TENSORS];
	size_t np;
	if (!within_budget(m, x, p, &np))
		return;
	tg_tensor *y = tg_forward(m, x);
	if (trace)
		fprintf(stderr, "forward: %s %s\n", tg_status_name(tg_status_of(ctx)), tg_error(ctx));
	if (!y) {
		require(!tg_ok(ctx) && tg_error(ctx)[0], "tg_forward: NULL with no error");
		return;
	}
	require(tg_ok(ctx), "tg_forward: a result with %s set", tg_status_name(tg_status_of(ctx)));
	tg_tensor *loss = tg_mean(tg_mul(y, y));
	if (!loss || tg_backward(loss) != 0) {
		require(!tg_ok(ctx), "a failed backward with no error");
		return;
	}
	tg_optim_opts oo = tg_optim_defaults((tg_optim_kind)(optim % (TG_ADAMW + 1)));
	tg_optim *opt = tg_optim_new(ctx, p, np, &oo);
	if (!opt) {
		require(!tg_ok(ctx), "tg_optim_new: NULL with no error");
		return;
	}
	int rc = tg_optim_step(opt);
	if (trace)
		fprintf(stderr, "step: %d %s\n", rc, tg_error(ctx));
	require((rc == 0) == tg_ok(ctx), "tg_optim_step: %d with %s", rc,
		tg_status_name(tg_status_of(ctx)));
	tg_optim_free(opt);
}

/* An evaluating m's output on x with grad mode on and with it off: the
 * same bits, or the same failure. Every tensor of m (parameters, running
 * statistics) is drawn again from [0.5, 2) first, so that a scale of 1,
 * a mean of 0 or a variance of 1 does not hide the order of roundings. */
static void eval_same_bits(tg_ctx *ctx, tg_module *m, tg_tensor *x)
{
	static tg_tensor *p[MAX_TENSORS];
	size_t np;
	if (!within_budget(m, x, p, &np))
		return;
	size_t nt = tg_module_tensors(m, p, MAX_TENSORS);
	for (size_t i = 0; i < nt && i < MAX_TENSORS; i++)
		tg_assign(p[i], tg_rand(ctx, tg_dtype_of(p[i]), tg_ndim(p[i]), tg_shape(p[i]),
					0.5, 2));
	tg_clear_error(ctx);
	tg_tensor *on = tg_forward(m, x);
	tg_status st_on = tg_status_of(ctx);
	tg_clear_error(ctx);
	bool was = tg_set_grad_enabled(ctx, false);
	tg_tensor *off = tg_forward(m, x);
	tg_status st_off = tg_status_of(ctx);
	tg_set_grad_enabled(ctx, was);
	if (trace)
		fprintf(stderr, "eval: %s with grad mode, %s without\n", tg_status_name(st_on),
			tg_status_name(st_off));
	/* running out of memory may strike either alone */
	if (st_on == TG_ENOMEM || st_off == TG_ENOMEM) {
		tg_clear_error(ctx);
		return;
	}
	require(st_on == st_off, "evaluation: %s with grad mode, %s without",
		tg_status_name(st_on), tg_status_name(st_off));
	if (on && off) {
		require(tg_numel(on) == tg_numel(off) && tg_dtype_of(on) == tg_dtype_of(off),
			"evaluation: outputs of other sizes with and without grad mode");
		size_t es = tg_dtype_of(on) == TG_F64 ? 8 : 4;
		require(!memcmp(tg_data(on), tg_data(off), tg_numel(on) * es),
			"evaluation: other bits with and without grad mode");
	}
	tg_clear_error(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 6)
		return 0;
	unsigned mode = data[0];
	size_t at = 1;
	fuzz_alloc al = { .live_limit = 32u << 20 };
	if (mode & 0x80)
		al.fail_at = 1 + data[at++] * 2u, al.sticky = true;
	if (size < at + 5)
		return 0;
	int nd = data[at] % 6;
	int64_t shape[5];
	for (int i = 0; i < 4; i++)
		shape[i] = size_of(data[at + 1 + i]);
	at += 5;
	char arch[MAX_ARCH + 1];
	size_t n = 0;
	while (at < size && n < MAX_ARCH && data[at])
		arch[n++] = (char)data[at++];
	arch[n] = 0;

	tg_ctx *ctx = fuzz_ctx_new(1, &al);
	if (!ctx)
		return 0;
	tg_set_arena_limit(ctx, ARENA_LIMIT);
	tg_mlp_opts opts = tg_mlp_defaults();
	opts.dtype = mode & 2 ? TG_F64 : TG_F32;
	bool image = mode & 1;
	tg_module *m = image ? tg_model_parse_image(ctx, arch, shape[1], shape[2], shape[3], &opts)
			     : tg_model_parse(ctx, arch, &opts);
	if (trace)
		fprintf(stderr, "\"%s\": %s %s\n", arch, tg_status_name(tg_status_of(ctx)),
			tg_error(ctx));
	if (!m) {
		tg_status st = tg_status_of(ctx);
		require(st == TG_EARG || st == TG_ENOMEM,
			"\"%s\" does not parse with %s \"%s\" (TG_EARG expected)", arch,
			tg_status_name(st), tg_error(ctx));
		require(st == TG_ENOMEM || names_parser(tg_error(ctx)),
			"\"%s\": the message \"%s\" does not name the parser", arch, tg_error(ctx));
		tg_ctx_free(ctx);
		return 0;
	}
	require(tg_ok(ctx), "a model with %s set", tg_status_name(tg_status_of(ctx)));
	round_trip(ctx, m, &opts, mode & 8);
	if (mode & 4)
		tg_module_train(m, false);
	/* an image model takes (N,c,h,w); the other the ndim the input says */
	int xd = image ? 4 : nd;
	tg_tensor *x = tg_randn(ctx, opts.dtype, xd, shape, 0, 1);
	if (x && tg_numel(x) > 0 && xd > 0 && (mode & 4))
		eval_same_bits(ctx, m, x);
	if (x && tg_numel(x) > 0 && xd > 0)
		train_step(ctx, m, x, mode >> 4);
	tg_clear_error(ctx);
	static tg_tensor *p[MAX_TENSORS];
	size_t np = tg_module_params(m, p, MAX_TENSORS);
	for (size_t i = 0; i < np && i < MAX_TENSORS; i++) {
		tg_tensor *g = tg_grad(p[i]);
		tg_clear_error(ctx);
		require(!g || (tg_ndim(g) == tg_ndim(p[i]) && tg_numel(g) == tg_numel(p[i])),
			"the gradient of %s has another shape", name_of(p[i]));
	}
	tg_reset(ctx);
	tg_module_free(m);
	tg_ctx_free(ctx);
	return 0;
}
