/*
 * context.c - the context: options, the error state, the allocator, the
 * random generator.
 *
 * Everything a program does with tapegrad goes through one tg_ctx. Errors
 * enter through one function, tg_failv: the first one wins and stays until
 * tg_clear_error (a single place for a breakpoint, as cairo's _cairo_error).
 */
#include "internal.h"
#include "random.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static void tg_blas_warn_once(void);

/* TG_CONV's kernels: im2col, winograd, or (onednn, unset or empty) the
 * default; any other value is named on stderr once and keeps the default. */
static tg_conv_kernels conv_from_env(void)
{
	const char *conv = getenv("TG_CONV");
	if (!conv || !*conv || !strcmp(conv, "onednn"))
		return TG_CONV_ONEDNN;
	if (!strcmp(conv, "im2col"))
		return TG_CONV_IM2COL;
	if (!strcmp(conv, "winograd"))
		return TG_CONV_WINOGRAD;
	static atomic_int warned;
	if (!atomic_exchange(&warned, 1))
		fprintf(stderr,
			"tapegrad: TG_CONV=%s is none of onednn, im2col and winograd; conv2d "
			"keeps its default kernels\n",
			conv);
	return TG_CONV_ONEDNN;
}

static void *default_alloc(size_t size, void *user)
{
	(void)user;
	return malloc(size);
}

static void default_free(void *p, void *user)
{
	(void)user;
	free(p);
}

tg_ctx *tg_ctx_new(uint64_t seed)
{
	return tg_ctx_new_with(seed, NULL);
}

tg_ctx *tg_ctx_new_with(uint64_t seed, const tg_allocator *a)
{
	tg_allocator al = { default_alloc, default_free, NULL };
	if (a && a->alloc && a->free)
		al = *a;
	tg_ctx *ctx = al.alloc(sizeof *ctx, al.user);
	if (!ctx)
		return NULL;
	memset(ctx, 0, sizeof *ctx);
	ctx->alloc = al;
	ctx->gen = 1;
	ctx->grad_enabled = true;
	ctx->threads = 1;
	ctx->conv = conv_from_env();
	const char *sgemm = getenv("TG_SGEMM");
	ctx->sgemm_blas = sgemm && !strcmp(sgemm, "openblas");
	tg_arena_init(ctx);
	tg_seed(ctx, seed);
	tg_blas_warn_once();
	return ctx;
}

void tg_ctx_free(tg_ctx *ctx)
{
	if (!ctx)
		return;
	tg_tensor *t = ctx->kept;
	while (t) {
		tg_tensor *next = t->next_kept;
		t->magic = 0;
		tg_ctx_release(ctx, t->name);
		tg_ctx_release(ctx, t);
		t = next;
	}
	if (ctx->kernel_cache_free)
		ctx->kernel_cache_free(ctx, ctx->kernel_cache);
	tg_arena_free(ctx);
	ctx->alloc.free(ctx, ctx->alloc.user);
}

void *tg_ctx_alloc(tg_ctx *ctx, size_t size)
{
	void *p = ctx->alloc.alloc(size ? size : 1, ctx->alloc.user);
	if (!p)
		tg_fail(ctx, TG_ENOMEM, "out of memory allocating %zu bytes", size);
	return p;
}

void tg_ctx_release(tg_ctx *ctx, void *p)
{
	if (p)
		ctx->alloc.free(p, ctx->alloc.user);
}

/* ---- options ------------------------------------------------------------- */

bool tg_set_grad_enabled(tg_ctx *ctx, bool on)
{
	if (!ctx)
		return false;
	bool old = ctx->grad_enabled;
	ctx->grad_enabled = on;
	return old;
}

bool tg_grad_enabled(const tg_ctx *ctx) { return ctx && ctx->grad_enabled; }
void tg_set_anomaly(tg_ctx *ctx, bool on) { if (ctx) ctx->anomaly = on; }
bool tg_anomaly(const tg_ctx *ctx) { return ctx && ctx->anomaly; }
void tg_set_abort_on_error(tg_ctx *ctx, bool on) { if (ctx) ctx->abort_on_error = on; }

void tg_set_grad_ready(tg_ctx *ctx, tg_grad_ready_fn fn, void *user)
{
	if (ctx) {
		ctx->grad_ready = fn;
		ctx->grad_ready_user = user;
	}
}
int tg_threads(const tg_ctx *ctx) { return ctx ? ctx->threads : 0; }
void tg_set_arena_limit(tg_ctx *ctx, size_t bytes) { if (ctx) ctx->arena.limit = bytes; }
size_t tg_arena_used(const tg_ctx *ctx) { return ctx ? ctx->arena.used : 0; }

size_t tg_arena_high_water(const tg_ctx *ctx)
{
	if (!ctx)
		return 0;
	/* tg_arena_reset folds each step in; the current one counts too */
	const tg_arena *a = &ctx->arena;
	return a->used > a->high_water ? a->used : a->high_water;
}

void tg_set_threads(tg_ctx *ctx, int n)
{
	if (!ctx)
		return;
	if (n < 1) {
		tg_fail(ctx, TG_EARG, "tg_set_threads: thread count %d is not positive", n);
		return;
	}
	ctx->threads = n < TG_MAX_THREADS ? n : TG_MAX_THREADS;
}

void tg_set_conv_kernels(tg_ctx *ctx, tg_conv_kernels k)
{
	if (!ctx)
		return;
	if (k != TG_CONV_ONEDNN && k != TG_CONV_IM2COL && k != TG_CONV_WINOGRAD) {
		tg_fail(ctx, TG_EARG,
			"tg_set_conv_kernels: %d is not TG_CONV_ONEDNN, TG_CONV_IM2COL or "
			"TG_CONV_WINOGRAD",
			(int)k);
		return;
	}
	ctx->conv = k;
}

tg_conv_kernels tg_get_conv_kernels(const tg_ctx *ctx)
{
	return ctx ? ctx->conv : TG_CONV_ONEDNN;
}

/* ---- which BLAS kernel runs ---------------------------------------------- */

/* OpenBLAS 0.3.21's kernels by the widest vectors their sgemm and dgemm
 * use; any other name is a generic kernel (SSE2, SSE3, AVX) that leaves
 * half the speed or more unused on a CPU with AVX2 (Debian 12's 0.3.21
 * picks Prescott on CPUs newer than it knows). Cooperlake is SkylakeX's
 * sgemm and dgemm plus bf16 products; SapphireRapids is a later name. */
static const char *const avx512_kernels[] = { "SkylakeX", "Cooperlake", "SapphireRapids" };
static const char *const avx2_kernels[] = { "Haswell", "Zen", "Excavator" };

static bool is_one_of(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcasecmp(name, list[i]))
			return true;
	return false;
}
#define IS_ONE_OF(name, list) is_one_of(name, list, sizeof list / sizeof list[0])

const char *tg_blas_advice_for(const char *corename, bool avx2, bool avx512)
{
	if (!corename || !avx2 || IS_ONE_OF(corename, avx512_kernels))
		return NULL;
	if (avx512) /* a generic or an AVX2 kernel: SkylakeX runs here */
		return "SkylakeX";
	return IS_ONE_OF(corename, avx2_kernels) ? NULL : "Haswell";
}

bool tg_cpu_has(bool avx512)
{
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	if (avx512) /* what OpenBLAS's SkylakeX kernels use */
		return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		       __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
	(void)avx512;
	return false;
#endif
}

const char *tg_blas_advice(void)
{
	return tg_blas_advice_for(openblas_get_corename(), tg_cpu_has(false), tg_cpu_has(true));
}

const char *tg_blas_info(void)
{
	static char info[192];
	static atomic_int done;
	if (atomic_load(&done))
		return info;
	/* openblas_get_config: "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell ..." */
	char name[16] = "BLAS", version[32] = "";
	const char *config = openblas_get_config();
	if (config && sscanf(config, "%15s %31s", name, version) < 2)
		version[0] = 0;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	char buf[sizeof info];
	int n = snprintf(buf, sizeof buf, "%s%s%s %s, %ld core%s", name, version[0] ? " " : "",
			 version, openblas_get_corename(), cores, cores == 1 ? "" : "s");
	if (tg_sgemm_dnnl(NULL) && n > 0 && (size_t)n < sizeof buf)
		snprintf(buf + n, sizeof buf - (size_t)n, "; f32 products from 2^19 multiply-adds: %s",
			 tg_sgemm_dnnl_info());
	/* racing first callers write the same text */
	memcpy(info, buf, sizeof info);
	atomic_store(&done, 1);
	return info;
}

/* Once per process, at the first context: a generic kernel on a CPU with
 * AVX2 is said on stderr, with the variable to set. An AVX2 kernel on an
 * AVX-512 CPU is not: whether SkylakeX is faster there depends on the CPU
 * (twice as fast on some, maybe no faster where AVX-512 runs in halves
 * or at a lower clock), and the library cannot time another
 * kernel than the one loaded; blas_probe measures it. */
static void tg_blas_warn_once(void)
{
	static atomic_int warned;
	if (atomic_load_explicit(&warned, memory_order_relaxed) || atomic_exchange(&warned, 1))
		return;
	const char *core = openblas_get_corename();
	const char *advice = tg_blas_advice();
	const char *quiet = getenv("TG_BLAS_QUIET");
	if (advice && !IS_ONE_OF(core, avx2_kernels) && !(quiet && *quiet))
		fprintf(stderr,
			"tapegrad: OpenBLAS runs its generic %s kernel on a CPU with %s; matrix "
			"products may take twice as long or more. Set OPENBLAS_CORETYPE=%s in the "
			"environment before the program starts.\n",
			core, strcmp(advice, "SkylakeX") ? "AVX2" : "AVX-512", advice);
}

/* The self-check: C = op(A) op(B) through tg_gemm (cblas_?gemm, row-major
 * with the flags tg_matmul_t passes), for f32 and f64, all four transpose flags, on
 * odd shapes (edges of every kernel's blocking), against a plain triple
 * loop in long double. An element may differ by 4 K eps sum_k |a_ik b_kj|
 * (the bound of any summation order, doubled). Returns the worst error as
 * a share of that bound, or -1 without memory. */
static double check_one(tg_ctx *ctx, bool f64, int N, int K, int M, bool ta, bool tb)
{
	size_t es = f64 ? sizeof(double) : sizeof(float);
	char *a = malloc((size_t)(N * K) * es), *b = malloc((size_t)(K * M) * es);
	char *c = malloc((size_t)(N * M) * es);
	double worst = -1;
	if (!a || !b || !c)
		goto out;
	for (int i = 0; i < N * K + K * M; i++) {
		double v = tg_random_uniform(ctx) * 2 - 1;
		char *p = i < N * K ? a : b;
		int j = i < N * K ? i : i - N * K;
		if (f64)
			((double *)p)[j] = v;
		else
			((float *)p)[j] = (float)v;
	}
#define AT(p, i) (f64 ? (long double)((const double *)(p))[i] : (long double)((const float *)(p))[i])
	int lda = ta ? N : K, ldb = tb ? K : M;
	tg_gemm(ctx, f64 ? TG_F64 : TG_F32, ta, tb, N, M, K, a, lda, b, ldb, 0, c, M);
	double eps = f64 ? 0x1p-52 : 0x1p-23;
	worst = 0;
	for (int i = 0; i < N; i++)
		for (int j = 0; j < M; j++) {
			long double ref = 0, mag = 0;
			for (int k = 0; k < K; k++) {
				long double x = AT(a, ta ? k * N + i : i * K + k);
				long double y = AT(b, tb ? j * K + k : k * M + j);
				ref += x * y;
				mag += fabsl(x * y);
			}
			double err = (double)fabsl(AT(c, i * M + j) - ref);
			double bound = 4 * (double)K * eps * (double)mag + 1e-300;
			if (!(err / bound <= worst))
				worst = err / bound; /* NaN sticks */
		}
#undef AT
out:
	free(a);
	free(b);
	free(c);
	return worst;
}

int tg_blas_selfcheck(char *msg, size_t size)
{
	static const int shapes[][3] = {
		{ 1, 1, 1 }, { 3, 5, 7 }, { 17, 33, 9 }, { 64, 65, 63 }, { 129, 37, 255 },
		{ 2, 300, 1 }, { 31, 1, 47 },
		/* TG_SGEMM_DNNL_MIN multiply-adds and more: oneDNN's sgemm where it runs */
		{ 130, 67, 61 }, { 17, 513, 77 },
	};
	tg_ctx *ctx = tg_ctx_new(20261201);
	if (!ctx) {
		snprintf(msg, size, "tg_blas_selfcheck: no memory");
		return -1;
	}
	double worst = 0;
	int rc = 0;
	for (int d = 0; d < 2 && !rc; d++)
		for (size_t s = 0; s < sizeof shapes / sizeof shapes[0] && !rc; s++)
			for (int f = 0; f < 4 && !rc; f++) {
				const int *sh = shapes[s];
				double w = check_one(ctx, d, sh[0], sh[1], sh[2], f & 1, f & 2);
				if (w < 0) {
					rc = -1;
				} else if (!(w <= 1)) {
					bool dnnl = !d && tg_sgemm_dnnl(ctx) &&
						    (double)sh[0] * sh[1] * sh[2] >= TG_SGEMM_DNNL_MIN;
					snprintf(msg, size,
						 "%cgemm (%s) %s%dx%d @ %s%dx%d: an element is off by "
						 "%.3g of the error bound",
						 d ? 'd' : 's',
						 dnnl ? tg_sgemm_dnnl_info() : openblas_get_corename(),
						 f & 1 ? "T " : "",
						 sh[0], sh[1], f & 2 ? "T " : "", sh[1], sh[2], w);
					rc = 1;
				}
				if (w > worst)
					worst = w;
			}
	if (rc < 0)
		snprintf(msg, size, "tg_blas_selfcheck: no memory");
	else if (!rc)
		snprintf(msg, size,
			 "sgemm and dgemm (%s%s%s) agree with the reference loops: worst error "
			 "%.3g of the bound",
			 openblas_get_corename(), tg_sgemm_dnnl(ctx) ? ", large sgemm " : "",
			 tg_sgemm_dnnl(ctx) ? tg_sgemm_dnnl_info() : "", worst);
	tg_ctx_free(ctx);
	return rc ? -1 : 0;
}

/* ---- errors -------------------------------------------------------------- */

bool tg_ok(const tg_ctx *ctx) { return ctx && ctx->status == TG_OK; }
tg_status tg_status_of(const tg_ctx *ctx) { return ctx ? ctx->status : TG_ENULL; }

const char *tg_error(const tg_ctx *ctx)
{
	if (!ctx)
		return "no context (NULL)";
	return ctx->status == TG_OK ? "" : ctx->message;
}

void tg_clear_error(tg_ctx *ctx)
{
	if (!ctx)
		return;
	ctx->status = TG_OK;
	ctx->message[0] = '\0';
}

const char *tg_status_name(tg_status s)
{
	static const char *const names[] = {
		"TG_OK", "TG_ESHAPE", "TG_EDTYPE", "TG_ENULL", "TG_EARG",
		"TG_ENOMEM", "TG_ESTALE", "TG_EVERSION", "TG_ECTX",
		"TG_EANOMALY", "TG_EIO", "TG_EFORMAT",
	};
	if ((unsigned)s < sizeof names / sizeof names[0])
		return names[s];
	return "TG_E?";
}

/* The n bytes of text in room bytes at m (room > 16): its start, " ... " and
 * its end, each cut between UTF-8 characters. */
static void elide(char *m, size_t room, const char *text, size_t n)
{
	static const char gap[] = " ... ";
	size_t keep = room - sizeof gap, head = keep / 2, tail = keep - head;
	while (head > 0 && ((unsigned char)text[head] & 0xC0) == 0x80)
		head--;
	size_t from = n - tail;
	while (from < n && ((unsigned char)text[from] & 0xC0) == 0x80)
		from++;
	memcpy(m, text, head);
	memcpy(m + head, gap, sizeof gap - 1);
	memcpy(m + head + sizeof gap - 1, text + from, n - from);
	m[head + sizeof gap - 1 + n - from] = '\0';
}

/* The message at ctx->message + at: whole when it fits, else its start and
 * its end, so that a long path inside it does not push the reason, which
 * comes last, out of it. */
static void put_message(tg_ctx *ctx, size_t at, const char *fmt, va_list ap)
{
	char *m = ctx->message + at;
	size_t room = sizeof ctx->message - at;
	va_list again;
	va_copy(again, ap);
	int n = vsnprintf(m, room, fmt, ap);
	char *all = n >= 0 && (size_t)n >= room && room > 16 ? malloc((size_t)n + 1) : NULL;
	if (all) { /* else the start alone, as vsnprintf left it */
		vsnprintf(all, (size_t)n + 1, fmt, again);
		elide(m, room, all, (size_t)n);
		free(all);
	}
	va_end(again);
}

void *tg_failv(tg_ctx *ctx, tg_status code, const char *fmt, va_list ap)
{
	if (!ctx || ctx->status != TG_OK)
		return NULL;
	if (code <= TG_OK || code > TG_EFORMAT) {
		/* a code that is no error would leave the caller's NULL unexplained */
		int n = snprintf(ctx->message, sizeof ctx->message,
				 "tg_fail: code %d is not an error status; the message: ", (int)code);
		if (n > 0 && (size_t)n < sizeof ctx->message)
			put_message(ctx, (size_t)n, fmt ? fmt : "(NULL)", ap);
		code = TG_EARG;
	} else {
		put_message(ctx, 0, fmt ? fmt : "(NULL)", ap);
	}
	ctx->status = code;
	if (ctx->abort_on_error) {
		fprintf(stderr, "tapegrad: %s: %s\n", tg_status_name(code), ctx->message);
		abort();
	}
	return NULL;
}

void *tg_fail(tg_ctx *ctx, tg_status code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tg_failv(ctx, code, fmt, ap);
	va_end(ap);
	return NULL;
}

/* nn/engine_errors.h: the words, then ": ", then the kept message, as one
 * message that put_message elides like any other. */
void tg_fail_again(tg_ctx *ctx, const char *fmt, ...)
{
	if (!ctx || ctx->status == TG_OK)
		return;
	tg_status code = ctx->status;
	char *was = strdup(ctx->message);
	va_list ap, again;
	va_start(ap, fmt);
	va_copy(again, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	char *words = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (words)
		vsnprintf(words, (size_t)n + 1, fmt, again);
	va_end(again);
	va_end(ap);
	ctx->status = TG_OK;
	if (words && was)
		tg_fail(ctx, code, "%s: %s", words, was);
	else /* the op's message stays, unprefixed */
		ctx->status = code;
	free(words);
	free(was);
}

/* ---- random numbers: xoshiro256** seeded by splitmix64 -------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void tg_seed(tg_ctx *ctx, uint64_t seed)
{
	if (!ctx)
		return;
	for (int i = 0; i < 4; i++)
		ctx->rng[i] = splitmix64(&seed);
}

void tg_rng_state(const tg_ctx *ctx, uint64_t out[4])
{
	if (!ctx || !out)
		return;
	memcpy(out, ctx->rng, sizeof ctx->rng);
}

int tg_rng_set_state(tg_ctx *ctx, const uint64_t state[4])
{
	if (!ctx)
		return -1;
	if (!state) {
		tg_fail(ctx, TG_ENULL, "tg_rng_set_state: state is NULL");
		return -1;
	}
	if (!(state[0] | state[1] | state[2] | state[3])) {
		tg_fail(ctx, TG_EARG, "tg_rng_set_state: a state of four zeros (the generator "
				      "would only give zeros)");
		return -1;
	}
	memcpy(ctx->rng, state, sizeof ctx->rng);
	return 0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* One step of xoshiro256** on the state s. */
static inline uint64_t next_u64(uint64_t s[4])
{
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t tg_random_u64(tg_ctx *ctx)
{
	if (!ctx)
		return 0;
	return next_u64(ctx->rng);
}

void tg_random_u64_fill(tg_ctx *ctx, uint64_t *out, size_t n)
{
	if (!ctx) {
		memset(out, 0, n * sizeof *out);
		return;
	}
	/* the state in locals, where the compiler keeps it in registers
	 * (through ctx->rng every step stores and reloads it) */
	uint64_t s[4];
	memcpy(s, ctx->rng, sizeof s);
	for (size_t i = 0; i < n; i++)
		out[i] = next_u64(s);
	memcpy(ctx->rng, s, sizeof s);
}

double tg_random_uniform(tg_ctx *ctx)
{
	if (!ctx)
		return NAN;
	return (double)(tg_random_u64(ctx) >> 11) * 0x1.0p-53;
}

double tg_random_normal(tg_ctx *ctx)
{
	/* Box-Muller; one of the pair is dropped so the stream stays stateless. */
	if (!ctx)
		return NAN;
	double u1 = tg_random_uniform(ctx);
	double u2 = tg_random_uniform(ctx);
	return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}
