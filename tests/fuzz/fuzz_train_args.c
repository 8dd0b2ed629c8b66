/*
 * fuzz_train_args.c - libFuzzer target: the command line of demos/train.
 *
 * demos/train.c is compiled into this file with its main renamed, its exit
 * turned into a jump back here and its output sent to /dev/null, so that its
 * static parse_args can be called without loading data or training. Then
 * the option values go through the parsers main hands them to
 * (tg_act_parse, tg_init_parse, tg_optim_parse) and the net spec through
 * make_spec and tg_mlp_new, for a data set of the sizes the input gives.
 *
 * Input: two bytes (features, classes of the pretend data set), then the
 * arguments separated by NUL bytes.
 * Rules: parse_args either exits with status 2 (a usage error) or 0 (--help),
 * or returns a config whose values are in their documented ranges; a net
 * built from it, as main builds it (make_spec, tg_mlp_new, check_net_fits),
 * has the data's input and output sizes.
 */
#define _GNU_SOURCE
#include "fuzz_common.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static jmp_buf exit_jump;
static int exit_status;
static FILE *devnull;

static _Noreturn void train_exit(int status)
{
	exit_status = status;
	longjmp(exit_jump, 1);
}

/* demos/train.c, with exit, main, stdout and stderr replaced */
#define exit(status) train_exit(status)
#define main tg_train_demo_main
#undef stdout
#undef stderr
#define stdout devnull
#define stderr devnull
#include "../../demos/train.c"
#undef stdout
#undef stderr
#define stdout stdout
#define stderr stderr
#undef main
#undef exit

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	devnull = fopen("/dev/null", "w");
	if (!devnull) {
		perror("fuzz_train_args: /dev/null");
		abort();
	}
	return 0;
}

enum { MAX_ARGS = 48 };

/* The net from the config, as main makes it after loading data of in
 * features and out classes. */
static void build_net(const config *c, int64_t in, int64_t out)
{
	fuzz_alloc al = { .live_limit = 8 << 20 };
	tg_ctx *ctx = fuzz_ctx_new(c->seed, &al);
	require(ctx, "no context");
	tg_mlp_opts mo = tg_mlp_defaults();
	tg_optim_kind kind;
	struct {
		const char *s;
		int rc;
	} parsed[3] = {
		{ c->act, tg_act_parse(ctx, c->act, &mo.act) },
		{ c->init, tg_init_parse(ctx, c->init, &mo.init) },
		{ c->optim, tg_optim_parse(ctx, c->optim, &kind) },
	};
	/* the first failure is kept; each parser reports TG_EARG naming itself */
	for (int i = 0; i < 3; i++) {
		if (parsed[i].rc == 0)
			continue;
		require(parsed[i].rc == -1 && tg_status_of(ctx) == TG_EARG && tg_error(ctx)[0],
			"a bad value \"%s\": rc %d, %s", parsed[i].s, parsed[i].rc,
			tg_status_name(tg_status_of(ctx)));
		tg_ctx_free(ctx);
		return;
	}
	require(tg_ok(ctx), "parsers succeeded with %s set", tg_error(ctx));
	char buf[64];
	require(strlen(tg_act_str(mo.act, buf, sizeof buf)) < sizeof buf, "tg_act_str");
	require(strlen(tg_init_str(mo.init, buf, sizeof buf)) < sizeof buf, "tg_init_str");
	require(tg_optim_name(kind) && tg_optim_name(kind)[0], "tg_optim_name");
	mo.dtype = strcmp(c->dtype, "f64") ? TG_F32 : TG_F64;
	mo.batchnorm = c->bn;
	mo.dropout = c->dropout;

	data d = { .name = "fuzz" };
	d.train.d = d.test.d = in;
	d.train.classes = d.test.classes = (int32_t)out;
	char spec[256];
	/* as main: the spec, the net, and the check that it fits the data (a
	 * usage error, exit 2, when it does not) */
	static tg_mlp *net;
	net = NULL;
	if (setjmp(exit_jump)) {
		require(exit_status == 2, "check_net_fits exited with %d", exit_status);
		tg_mlp_free(net);
		tg_ctx_free(ctx);
		return;
	}
	make_spec(c, &d, spec, sizeof spec);
	net = tg_mlp_new(ctx, spec, &mo);
	if (!net) {
		tg_status st = tg_status_of(ctx);
		require(st == TG_EARG || st == TG_ENOMEM || st == TG_ESHAPE,
			"tg_mlp_new(\"%s\"): %s \"%s\"", spec, tg_status_name(st), tg_error(ctx));
		tg_ctx_free(ctx);
		return;
	}
	check_net_fits(net, &d, spec);
	/* what main then relies on: a net that fits the data */
	int depth = tg_mlp_depth(net);
	require(tg_mlp_width(net, 0) == in && tg_mlp_width(net, depth) == out,
		"the spec \"%s\" from --layers \"%s\" / --hidden \"%s\" makes a %lld-...-%lld net "
		"for data of %lld features and %lld classes",
		spec, c->layers ? c->layers : "(none)", c->hidden,
		(long long)tg_mlp_width(net, 0), (long long)tg_mlp_width(net, depth),
		(long long)in, (long long)out);
	tg_mlp_free(net);
	tg_ctx_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int64_t in = 1 + data[0] % 64, out = 2 + data[1] % 16;
	const char *p = (const char *)data + 2;
	/* the arguments, each NUL-terminated, in one buffer */
	size_t n = size - 2;
	char *text = malloc(n + 1);
	require(text, "out of memory");
	memcpy(text, p, n);
	text[n] = 0;
	char *argv[MAX_ARGS + 2] = { "train" };
	int argc = 1;
	for (char *s = text; s <= text + n && argc <= MAX_ARGS; s += strlen(s) + 1)
		argv[argc++] = s;
	argv[argc] = NULL;

	config c;
	if (setjmp(exit_jump)) {
		require(exit_status == 0 || exit_status == 2, "train exited with %d", exit_status);
		free(text);
		return 0;
	}
	c = parse_args(argc, argv);
	require(!(c.layers && c.hidden), "--layers with --hidden");
	/* the net, batch and epochs of --resume and --load come from the file;
	 * otherwise the data set's defaults fill what was not given */
	bool from_file = c.resume || c.load;
	if (!from_file)
		apply_preset(&c);
	require(c.data && c.act && c.init && c.optim && c.dtype && c.schedule, "a NULL option");
	require(c.threads >= 1 && c.threads <= 256, "--threads %d", c.threads);
	require(c.dropout >= 0 && c.dropout < 1, "--dropout %g", c.dropout);
	require(c.lr >= 0 && isfinite(c.lr), "--lr %g", c.lr);
	require(c.weight_decay >= 0 && isfinite(c.weight_decay), "--weight-decay %g", c.weight_decay);
	require(from_file || (c.hidden && c.batch >= 1 && c.epochs >= 1 && c.iters >= 0),
		"--batch %lld --epochs %lld", (long long)c.batch, (long long)c.epochs);
	require(!strcmp(c.dtype, "f32") || !strcmp(c.dtype, "f64"), "--dtype %s", c.dtype);
	require(!c.eval_only || c.load, "--eval-only without --load");
	require(!(c.iters && c.epochs_given), "--iters with --epochs");
	if (!from_file)
		build_net(&c, in, out);
	free(text);
	return 0;
}
