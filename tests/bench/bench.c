/*
 * bench.c - the tapegrad side of tests/bench: one workload per process.
 *
 * Runs one training or tiny-graph workload, or the GEMM floor of a training
 * workload (its forward and backward matrix products alone, through
 * cblas_?gemm with the shapes and transpose flags tapegrad's matmul uses),
 * and prints one line "RESULT key=value ..." for tests/bench/bench.py.
 * Data loading is outside the timed loop; the loop includes drawing each
 * batch, forward, backward, the optimizer step and tg_reset.
 *
 * Memory is counted three ways:
 *   - the context's own allocations, through a counting tg_allocator given
 *     to tg_ctx_new_with (arena blocks, header slots, ctx tensors, names);
 *   - every malloc, calloc, realloc, posix_memalign, aligned_alloc and
 *     memalign call of the process, shared libraries (OpenBLAS, oneDNN,
 *     libc) included: this program defines them, counting, over glibc's;
 *   - resident memory: VmRSS when the loop starts, the peak during the loop
 *     (VmHWM after resetting it through /proc/self/clear_refs) and the
 *     process's peak (getrusage ru_maxrss).
 * Allocation counts are taken over the steady state: from the end of the
 * first WARM iterations to the end of the loop.
 *
 *	tg_bench WORKLOAD [--iters N] [--epochs E] [--threads T] [--seed S]
 *	         [--data DIR] [--losses FILE]
 *
 * --losses writes every iteration's loss as a C99 hexadecimal float, one per
 * line, so that two builds can be compared bit for bit (cmp).
 */
#include "tapegrad.h"
#include "tapegrad_io.h"
#include "tapegrad_nn.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#ifdef TG_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

enum { WARM = 5 }; /* iterations before the allocation counters are read */

/* The workload functions stay out of line so that a profiler can collect
 * exactly them: valgrind --tool=callgrind --toggle-collect=train ... */
#define NOINLINE __attribute__((noinline))

/* ---- counting every allocation of the process ------------------------------ */
/* This program defines malloc and its kin, so every call in the process goes
 * through them: this program's, libtapegrad.a's, and those of the shared
 * libraries (OpenBLAS, oneDNN and its C++ runtime, libc itself), since the
 * executable's definitions come first in symbol lookup. Each counts and hands
 * the call to glibc's own entry points. Worker threads allocate too, so the
 * counters are atomic. */

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void __libc_free(void *p);
void *__libc_memalign(size_t align, size_t size);

static struct {
	unsigned long long malloc, calloc, realloc, memalign, free;
} wrapped;

#define COUNT(field) __atomic_add_fetch(&wrapped.field, 1, __ATOMIC_RELAXED)

void *malloc(size_t size)
{
	COUNT(malloc);
	return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
	COUNT(calloc);
	return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
	COUNT(realloc);
	return __libc_realloc(p, size);
}

void free(void *p)
{
	if (p)
		COUNT(free);
	__libc_free(p);
}

int posix_memalign(void **p, size_t align, size_t size)
{
	if (align < sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	COUNT(memalign);
	void *m = __libc_memalign(align, size);
	if (!m && size)
		return ENOMEM;
	*p = m;
	return 0;
}

void *aligned_alloc(size_t align, size_t size)
{
	COUNT(memalign);
	return __libc_memalign(align, size);
}

void *memalign(size_t align, size_t size)
{
	COUNT(memalign);
	return __libc_memalign(align, size);
}

static unsigned long long wrapped_allocs(void)
{
	return __atomic_load_n(&wrapped.malloc, __ATOMIC_RELAXED) +
	       __atomic_load_n(&wrapped.calloc, __ATOMIC_RELAXED) +
	       __atomic_load_n(&wrapped.realloc, __ATOMIC_RELAXED) +
	       __atomic_load_n(&wrapped.memalign, __ATOMIC_RELAXED);
}

/* ---- timing every GEMM of libtapegrad.a ----------------------------------- */
/* cblas_sgemm and cblas_dgemm are wrapped as malloc is
 * (-Wl,--wrap=cblas_sgemm,--wrap=cblas_dgemm): the wall time during which
 * at least one call made by the library runs is added up here, so the GEMM
 * share of a workload is measured in the run itself (two clock reads and
 * two lock round trips per call, well under a microsecond). A product
 * split across threads runs as concurrent calls, one per part: the time
 * counts once. Every oneDNN primitive the library runs (its convolutions,
 * and the reorders it leaves to oneDNN) is timed the same way, apart: the
 * kernel time is the two added (no GEMM runs inside a primitive, and the
 * ops that make them run one at a time). */

static double now(clockid_t clock);

typedef struct timer {
	pthread_mutex_t lock;
	int running;  /* calls in progress */
	double since; /* when running last went from 0 to 1 */
	double sec;
	unsigned long long calls;
} timer;

static timer gemm_time = { .lock = PTHREAD_MUTEX_INITIALIZER };
static timer prim_time = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void timer_enter(timer *t)
{
	pthread_mutex_lock(&t->lock);
	if (t->running++ == 0)
		t->since = now(CLOCK_MONOTONIC);
	pthread_mutex_unlock(&t->lock);
}

static void timer_leave(timer *t)
{
	pthread_mutex_lock(&t->lock);
	if (--t->running == 0)
		t->sec += now(CLOCK_MONOTONIC) - t->since;
	t->calls++;
	pthread_mutex_unlock(&t->lock);
}

static void gemm_enter(void) { timer_enter(&gemm_time); }
static void gemm_leave(void) { timer_leave(&gemm_time); }

/* seconds in GEMMs and oneDNN primitives so far */
static double kernel_sec(void) { return gemm_time.sec + prim_time.sec; }

void __real_cblas_sgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
			int m, int n, int k, float alpha, const float *a, int lda, const float *b,
			int ldb, float beta, float *c, int ldc);
void __real_cblas_dgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
			int m, int n, int k, double alpha, const double *a, int lda,
			const double *b, int ldb, double beta, double *c, int ldc);
void __wrap_cblas_sgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
			int m, int n, int k, float alpha, const float *a, int lda, const float *b,
			int ldb, float beta, float *c, int ldc);
void __wrap_cblas_dgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
			int m, int n, int k, double alpha, const double *a, int lda,
			const double *b, int ldb, double beta, double *c, int ldc);

void __wrap_cblas_sgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
			int m, int n, int k, float alpha, const float *a, int lda, const float *b,
			int ldb, float beta, float *c, int ldc)
{
	gemm_enter();
	__real_cblas_sgemm(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	gemm_leave();
}

void __wrap_cblas_dgemm(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
			int m, int n, int k, double alpha, const double *a, int lda,
			const double *b, int ldb, double beta, double *c, int ldc)
{
	gemm_enter();
	__real_cblas_dgemm(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	gemm_leave();
}

#ifdef TG_HAVE_DNNL
/* oneDNN's sgemm, which the library calls for large f32 products */
dnnl_status_t __real_dnnl_sgemm(char ta, char tb, dnnl_dim_t m, dnnl_dim_t n, dnnl_dim_t k,
				float alpha, const float *a, dnnl_dim_t lda, const float *b,
				dnnl_dim_t ldb, float beta, float *c, dnnl_dim_t ldc);
dnnl_status_t __wrap_dnnl_sgemm(char ta, char tb, dnnl_dim_t m, dnnl_dim_t n, dnnl_dim_t k,
				float alpha, const float *a, dnnl_dim_t lda, const float *b,
				dnnl_dim_t ldb, float beta, float *c, dnnl_dim_t ldc);

dnnl_status_t __wrap_dnnl_sgemm(char ta, char tb, dnnl_dim_t m, dnnl_dim_t n, dnnl_dim_t k,
				float alpha, const float *a, dnnl_dim_t lda, const float *b,
				dnnl_dim_t ldb, float beta, float *c, dnnl_dim_t ldc)
{
	gemm_enter();
	dnnl_status_t st = __real_dnnl_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	gemm_leave();
	return st;
}

/* every oneDNN primitive the library runs: convolutions, reorders */
dnnl_status_t __real_dnnl_primitive_execute(const_dnnl_primitive_t p, dnnl_stream_t s, int n,
					    const dnnl_exec_arg_t *args);
dnnl_status_t __wrap_dnnl_primitive_execute(const_dnnl_primitive_t p, dnnl_stream_t s, int n,
					    const dnnl_exec_arg_t *args);

dnnl_status_t __wrap_dnnl_primitive_execute(const_dnnl_primitive_t p, dnnl_stream_t s, int n,
					    const dnnl_exec_arg_t *args)
{
	timer_enter(&prim_time);
	dnnl_status_t st = __real_dnnl_primitive_execute(p, s, n, args);
	timer_leave(&prim_time);
	return st;
}
#endif

/* ---- counting the context's own allocations ------------------------------ */

static struct {
	unsigned long long allocs, frees, bytes;
} counted;

static void *count_alloc(size_t size, void *user)
{
	(void)user;
	counted.allocs++;
	counted.bytes += size;
	return malloc(size);
}

static void count_free(void *p, void *user)
{
	(void)user;
	if (p)
		counted.frees++;
	free(p);
}

static const tg_allocator counting = { count_alloc, count_free, NULL };

/* ---- clocks and memory --------------------------------------------------- */

static double now(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A "Vm...:" line of /proc/self/status in kB, -1 if absent. */
static long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	size_t n = strlen(key);
	while (f && fgets(line, sizeof line, f)) {
		if (!strncmp(line, key, n) && line[n] == ':') {
			kb = strtol(line + n + 1, NULL, 10);
			break;
		}
	}
	if (f)
		fclose(f);
	return kb;
}

/* Resets VmHWM to the current RSS; false if the kernel refuses. */
static int reset_peak(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	if (!f)
		return 0;
	int ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok;
}

static long maxrss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* ---- the measurement ----------------------------------------------------- */

typedef struct run {
	const char *workload;
	const char *dtype;
	int threads;
	long long iters; /* done */
	double wall, cpu; /* of the loop, seconds */
	long rss_start_kb, loop_peak_kb;
	int peak_reset;
	unsigned long long ctx0, ctx1, ctxb0, ctxb1, w0, w1; /* counters at WARM and end */
	unsigned long long wf0, wf1, cf0, cf1;
	size_t arena_hw;
	double gemm0, gemm1; /* GEMM seconds at the loop's start and end */
	/* clocks from iteration WARM on to the loop's end: the steady state,
	 * without first calls' one-time costs (oneDNN's code generation) */
	double kernel0, kernel1; /* GEMM and oneDNN seconds, the same */
	double steady_w0, steady_c0, steady_w1, steady_c1, steady_gemm0, steady_kernel0;
	unsigned long long gcalls0, gcalls1;
	double loss; /* mean over the last iterations; NAN when none */
	const char *error;
} run;

static run R;
static FILE *losses;             /* --losses: every iteration's loss, exactly */
static const char *losses_path;  /* its name, for the messages */
static int losses_errno;         /* the first failed write's errno; 0 when none */

/* --losses: one iteration's loss; a failed write is reported by close_losses */
static void log_loss(const tg_tensor *loss)
{
	if (losses && loss && fprintf(losses, "%a\n", tg_item(loss)) < 0 && !losses_errno)
		losses_errno = errno ? errno : EIO;
}

/* Closes the --losses file: 0, or -1 after saying which write failed. */
static int close_losses(void)
{
	if (!losses)
		return 0;
	if (ferror(losses) && !losses_errno)
		losses_errno = EIO;
	errno = 0;
	if (fclose(losses) && !losses_errno)
		losses_errno = errno ? errno : EIO;
	losses = NULL;
	if (!losses_errno)
		return 0;
	fprintf(stderr, "tg_bench: writing --losses %s: %s\n", losses_path, strerror(losses_errno));
	return -1;
}

static void mark_start(void)
{
	R.rss_start_kb = status_kb("VmRSS");
	R.peak_reset = reset_peak();
	R.gemm0 = gemm_time.sec;
	R.gcalls0 = gemm_time.calls;
	R.kernel0 = kernel_sec();
}

static void mark_warm(void)
{
	R.steady_w0 = now(CLOCK_MONOTONIC);
	R.steady_c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	R.steady_gemm0 = gemm_time.sec;
	R.steady_kernel0 = kernel_sec();
	R.ctx0 = counted.allocs;
	R.ctxb0 = counted.bytes;
	R.cf0 = counted.frees;
	R.w0 = wrapped_allocs();
	R.wf0 = __atomic_load_n(&wrapped.free, __ATOMIC_RELAXED);
}

static void mark_end(void)
{
	R.steady_w1 = now(CLOCK_MONOTONIC);
	R.steady_c1 = now(CLOCK_PROCESS_CPUTIME_ID);
	R.ctx1 = counted.allocs;
	R.ctxb1 = counted.bytes;
	R.cf1 = counted.frees;
	R.w1 = wrapped_allocs();
	R.wf1 = __atomic_load_n(&wrapped.free, __ATOMIC_RELAXED);
	R.loop_peak_kb = status_kb("VmHWM");
	R.gemm1 = gemm_time.sec;
	R.gcalls1 = gemm_time.calls;
	R.kernel1 = kernel_sec();
}

static const char *env_or(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : "unset";
}

static void report(void)
{
	long long steady = R.iters > WARM ? R.iters - WARM : 0;
	double per = steady ? 1.0 / (double)steady : NAN;
	char corename[64];
	snprintf(corename, sizeof corename, "%s", openblas_get_corename());
	for (char *p = corename; *p; p++)
		if (*p == ' ')
			*p = '_';
	printf("RESULT side=tapegrad workload=%s dtype=%s threads=%d iters=%lld wall=%.9g "
	       "cpu=%.9g sec_per_iter=%.9g rss_start_kb=%ld loop_peak_kb=%ld peak_reset=%d "
	       "maxrss_kb=%ld ctx_allocs_per_iter=%.6g ctx_bytes_per_iter=%.6g "
	       "ctx_frees_per_iter=%.6g wrap_allocs_per_iter=%.6g wrap_frees_per_iter=%.6g "
	       "ctx_allocs_total=%llu wrap_allocs_total=%llu arena_high_water=%zu loss=%.6g "
	       "blas_threads=%d tg_threads=%d openblas_corename=%s openblas_parallel=%d "
	       "env_OPENBLAS_NUM_THREADS=%s env_OMP_NUM_THREADS=%s env_OPENBLAS_CORETYPE=%s "
	       "env_OPENBLAS_THREAD_TIMEOUT=%s gemm_sec_per_iter=%.9g gemm_calls_per_iter=%.6g gemm_share=%.4f "
	       "steady_sec_per_iter=%.9g steady_cpu_per_iter=%.9g steady_gemm_share=%.4f "
	       "kernel_sec_per_iter=%.9g steady_kernel_share=%.4f error=%s\n",
	       R.workload, R.dtype, R.threads, R.iters, R.wall, R.cpu,
	       R.iters ? R.wall / (double)R.iters : NAN, R.rss_start_kb, R.loop_peak_kb,
	       R.peak_reset, maxrss_kb(), (double)(R.ctx1 - R.ctx0) * per,
	       (double)(R.ctxb1 - R.ctxb0) * per, (double)(R.cf1 - R.cf0) * per,
	       (double)(R.w1 - R.w0) * per, (double)(R.wf1 - R.wf0) * per, counted.allocs,
	       wrapped_allocs(), R.arena_hw, R.loss, openblas_get_num_threads(), R.threads,
	       corename, openblas_get_parallel(), env_or("OPENBLAS_NUM_THREADS"),
	       env_or("OMP_NUM_THREADS"), env_or("OPENBLAS_CORETYPE"),
	       env_or("OPENBLAS_THREAD_TIMEOUT"),
	       R.iters ? (R.gemm1 - R.gemm0) / (double)R.iters : NAN,
	       R.iters ? (double)(R.gcalls1 - R.gcalls0) / (double)R.iters : NAN,
	       R.wall > 0 ? (R.gemm1 - R.gemm0) / R.wall : NAN,
	       steady ? (R.steady_w1 - R.steady_w0) * per : NAN,
	       steady ? (R.steady_c1 - R.steady_c0) * per : NAN,
	       steady && R.steady_w1 > R.steady_w0
		       ? (R.gemm1 - R.steady_gemm0) / (R.steady_w1 - R.steady_w0)
		       : NAN,
	       R.iters ? (R.kernel1 - R.kernel0) / (double)R.iters : NAN,
	       steady && R.steady_w1 > R.steady_w0
		       ? (R.kernel1 - R.steady_kernel0) / (R.steady_w1 - R.steady_w0)
		       : NAN,
	       R.error ? "yes" : "none");
	fflush(stdout);
}

/* ---- the training workloads ---------------------------------------------- */

typedef struct train_spec {
	const char *spec;
	tg_mlp_opts mlp;
	tg_optim_opts opt;
	int64_t batch;
	unsigned flags;    /* TG_BATCH_REPLACE: iters draws; else epochs */
	long long iters;   /* with replacement; else a cap (0: none) */
	long long epochs;
} train_spec;

/* Mean loss of the last LAST_LOSS iterations, read with tg_item. */
enum { LAST_LOSS = 50 };

static NOINLINE int train(tg_ctx *ctx, const tg_dataset *ds, const train_spec *s)
{
	tg_mlp *net = tg_mlp_new(ctx, s->spec, &s->mlp);
	size_t np;
	tg_tensor *const *params = tg_mlp_params(net, &np);
	tg_optim *opt = net ? tg_optim_new(ctx, params, np, &s->opt) : NULL;
	tg_batcher *b = tg_batcher_new(ctx, ds, s->batch, s->flags);
	if (!net || !opt || !b) {
		tg_batcher_free(b);
		tg_optim_free(opt);
		tg_mlp_free(net);
		return -1;
	}
	bool replace = s->flags & TG_BATCH_REPLACE;
	long long total = replace ? s->iters
				  : s->epochs * ((ds->n + s->batch - 1) / s->batch);
	if (!replace && s->iters > 0 && s->iters < total)
		total = s->iters;
	double loss_sum = 0;
	long long loss_n = 0, it = 0;
	mark_start();
	double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	while (it < total && tg_ok(ctx)) {
		tg_batch batch;
		if (!tg_batch_next(b, s->mlp.dtype, &batch))
			continue; /* the end of an epoch; the next call starts one */
		if (it == WARM)
			mark_warm();
		tg_tensor *loss = tg_cross_entropy_i32(tg_mlp_forward(net, batch.x), batch.y, batch.n);
		tg_optim_zero_grad(opt);
		tg_backward(loss);
		tg_optim_step(opt);
		log_loss(loss);
		if (it >= total - LAST_LOSS && loss) {
			loss_sum += tg_item(loss);
			loss_n++;
		}
		tg_reset(ctx);
		it++;
	}
	R.wall = now(CLOCK_MONOTONIC) - w0;
	R.cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	if (it <= WARM)
		mark_warm();
	mark_end();
	R.iters = it;
	R.loss = loss_n ? loss_sum / (double)loss_n : NAN;
	R.arena_hw = tg_arena_high_water(ctx);
	tg_batcher_free(b);
	tg_optim_free(opt);
	tg_mlp_free(net);
	return tg_ok(ctx) ? 0 : -1;
}

/* ---- the workload suite: many shapes, activations, optimizers, losses ---- */
/* Each suite workload trains an MLP of affine layers (tg_affine_forward)
 * and one activation on synthetic data made here and, the same numbers, in
 * torch_bench.py: N_SUITE samples x_ij in [-1, 1) from an LCG; class labels,
 * float targets for MSE, or 0/1 targets for BCE derived from the features.
 * Batches are drawn with replacement by tg_batcher; the timed loop is the
 * same as train()'s. The table is mirrored in torch_bench.py (SUITE). */

enum { N_SUITE = 4096 };

typedef enum { L_CE, L_MSE, L_BCE } suite_loss;

typedef struct suite_spec {
	const char *name;
	const char *arch;  /* widths, "in-h1-...-out" */
	const char *act;   /* relu sigmoid tanh leaky_relu elu gelu silu softplus */
	tg_optim_kind opt;
	int64_t batch;
	tg_dtype dt;
	suite_loss loss;
	long long iters;   /* default iterations */
} suite_spec;

static const suite_spec SUITE[] = {
	{ "s-tanh-w5", "784-300-100-10", "tanh", TG_MOMENTUM, 64, TG_F32, L_CE, 200 },
	{ "s-relu-sgd", "784-256-10", "relu", TG_SGD, 16, TG_F32, L_CE, 500 },
	{ "s-sigmoid-mom", "784-128-10", "sigmoid", TG_MOMENTUM, 128, TG_F32, L_CE, 250 },
	{ "s-lrelu-nest", "512-512-512-10", "leaky_relu", TG_NESTEROV, 256, TG_F32, L_CE, 30 },
	{ "s-elu-adagrad", "256-1024-10", "elu", TG_ADAGRAD, 32, TG_F32, L_CE, 200 },
	{ "s-gelu-adam", "784-512-256-10", "gelu", TG_ADAM, 128, TG_F32, L_CE, 40 },
	{ "s-relu-rms-2048", "100-2048-10", "relu", TG_RMSPROP, 512, TG_F32, L_CE, 30 },
	{ "s-tanh-mse-f64", "50-50-50-1", "tanh", TG_ADAM, 16, TG_F64, L_MSE, 3000 },
	{ "s-gelu-bce-f64", "64-128-128-1", "gelu", TG_RMSPROP, 256, TG_F64, L_BCE, 80 },
	{ "s-relu-sgd-f64", "784-128-10", "relu", TG_SGD, 512, TG_F64, L_CE, 40 },
	{ "s-sigmoid-bce", "20-64-64-1", "sigmoid", TG_SGD, 32, TG_F32, L_BCE, 3000 },
	{ "s-elu-mse-adam", "128-256-256-8", "elu", TG_ADAM, 64, TG_F32, L_MSE, 250 },
	{ "s-lrelu-mom-2048", "1024-2048-10", "leaky_relu", TG_MOMENTUM, 64, TG_F32, L_CE, 25 },
};

/* A workload of the command line (--spec), beside the table's. */
static suite_spec custom;
static char custom_text[256];
/* --fused-relu: each hidden layer and its relu as one op, tg_addmm_relu, as
 * a sequential or tg_mlp runs them, instead of tg_affine_forward and then
 * tg_relu */
static bool fused_relu;

static const suite_spec *suite_find(const char *name)
{
	if (custom.name && !strcmp(custom.name, name))
		return &custom;
	for (size_t i = 0; i < sizeof SUITE / sizeof SUITE[0]; i++)
		if (!strcmp(SUITE[i].name, name))
			return &SUITE[i];
	return NULL;
}

static int parse_arch(const char *arch, int64_t *w)
{
	int n = 0;
	for (const char *p = arch; *p && n <= TG_MLP_MAX_LAYERS;) {
		char *end;
		w[n++] = strtoll(p, &end, 10);
		p = *end == '-' ? end + 1 : end;
	}
	return n;
}

static const char *const ACTS[] = { "relu", "sigmoid", "tanh", "leaky_relu", "elu",
				    "gelu", "silu", "softplus" };
static const char *const OPTS[] = { "sgd",     "momentum", "nesterov", "adagrad",
				    "rmsprop", "adam",     "adamw" };
static const char *const LOSSES[] = { "ce", "mse", "bce" };

/* The index of word in names, or of the number it spells; -1 if neither. */
static int word_index(const char *word, const char *const *names, int n)
{
	char *end;
	long v = strtol(word, &end, 10);
	if (end != word && !*end)
		return v >= 0 && v < n ? (int)v : -1;
	for (int i = 0; i < n; i++)
		if (!strcmp(word, names[i]))
			return i;
	return -1;
}

/* --spec "NAME ARCH ACT OPTIMIZER BATCH DTYPE LOSS [ITERATIONS]", the
 * fields of suite-list's lines, the optimizer and loss by name or number:
 * custom, or a message on stderr and -1. */
static int parse_spec(const char *line)
{
	static const char *const field[] = { "name", "arch", "act", "optimizer", "batch",
					     "dtype", "loss", "iterations" };
	char *tok[9] = { 0 };
	int n = 0;
	if (strlen(line) >= sizeof custom_text) {
		fprintf(stderr, "tg_bench: --spec: longer than %zu characters\n",
			sizeof custom_text - 1);
		return -1;
	}
	strcpy(custom_text, line);
	for (char *t = strtok(custom_text, " \t"); t && n < 9; t = strtok(NULL, " \t"))
		tok[n++] = t;
	if (n < 7 || n > 8) {
		fprintf(stderr, "tg_bench: --spec needs 7 or 8 fields (%s), not %d\n",
			"NAME ARCH ACT OPTIMIZER BATCH DTYPE LOSS [ITERATIONS]", n);
		return -1;
	}
	int64_t w[TG_MLP_MAX_LAYERS + 3];
	int nw = parse_arch(tok[1], w);
	int dashes = 0;
	for (const char *c = tok[1]; *c; c++)
		dashes += *c == '-';
	bool arch_ok = nw >= 2 && nw <= TG_MLP_MAX_LAYERS + 1 && dashes == nw - 1 &&
		       strspn(tok[1], "0123456789-") == strlen(tok[1]);
	for (int i = 0; arch_ok && i < nw; i++)
		arch_ok = w[i] >= 1 && w[i] <= 1 << 16;
	int act = word_index(tok[2], ACTS, (int)(sizeof ACTS / sizeof ACTS[0]));
	int opt = word_index(tok[3], OPTS, (int)(sizeof OPTS / sizeof OPTS[0]));
	int loss = word_index(tok[6], LOSSES, (int)(sizeof LOSSES / sizeof LOSSES[0]));
	char *end;
	long long batch = strtoll(tok[4], &end, 10);
	bool batch_ok = end != tok[4] && !*end && batch >= 1 && batch <= N_SUITE;
	long long iters = 100;
	bool iters_ok = true;
	if (n == 8) {
		errno = 0;
		iters = strtoll(tok[7], &end, 10);
		iters_ok = end != tok[7] && !*end && !errno && iters >= 1 && iters <= INT_MAX;
	}
	bool dt_ok = !strcmp(tok[5], "f32") || !strcmp(tok[5], "f64");
	const bool ok[] = { *tok[0] != 0, arch_ok, act >= 0, opt >= 0, batch_ok, dt_ok, loss >= 0,
			    iters_ok };
	for (int i = 0; i < n; i++)
		if (!ok[i]) {
			fprintf(stderr, "tg_bench: --spec: bad %s \"%s\"\n", field[i], tok[i]);
			return -1;
		}
	custom = (suite_spec){ tok[0], tok[1], ACTS[act], (tg_optim_kind)opt, batch,
			       !strcmp(tok[5], "f64") ? TG_F64 : TG_F32, (suite_loss)loss, iters };
	return 0;
}

/* The synthetic data set, the same numbers as torch_bench.py's suite_data. */
static int suite_data(const suite_spec *s, const int64_t *w, int nw, tg_dataset *ds)
{
	int64_t d = w[0], out = w[nw - 1];
	memset(ds, 0, sizeof *ds);
	ds->n = N_SUITE;
	ds->d = d;
	ds->x = malloc((size_t)(N_SUITE * d) * sizeof(float));
	if (!ds->x)
		return -1;
	uint32_t seed = 12345u;
	for (int64_t i = 0; i < N_SUITE * d; i++) {
		seed = seed * 1664525u + 1013904223u;
		ds->x[i] = (float)((double)(seed >> 8) / 8388608.0 - 1.0);
	}
	if (s->loss == L_CE) {
		ds->classes = (int32_t)out;
		ds->y = malloc(N_SUITE * sizeof(int32_t));
		if (!ds->y)
			return -1;
		for (int64_t i = 0; i < N_SUITE; i++) {
			double a = 0;
			for (int64_t j = 0; j < d; j++)
				a += ds->x[i * d + j] * (double)((j % 7) - 3);
			ds->y[i] = (int32_t)((int64_t)floor(fabs(a) * 4) % out);
		}
	} else {
		ds->tdim = out;
		ds->t = malloc((size_t)(N_SUITE * out) * sizeof(float));
		if (!ds->t)
			return -1;
		for (int64_t i = 0; i < N_SUITE; i++)
			for (int64_t k = 0; k < out; k++) {
				double a = 0;
				for (int64_t j = k % d; j < d; j += 3)
					a += ds->x[i * d + j];
				ds->t[i * out + k] = s->loss == L_MSE ? (float)sin(a) : (float)(a > 0);
			}
	}
	return 0;
}

static tg_tensor *suite_act(const char *act, tg_tensor *x)
{
	if (!strcmp(act, "relu"))
		return tg_relu(x);
	if (!strcmp(act, "sigmoid"))
		return tg_sigmoid(x);
	if (!strcmp(act, "tanh"))
		return tg_tanh(x);
	if (!strcmp(act, "leaky_relu"))
		return tg_leaky_relu(x, 0.01);
	if (!strcmp(act, "elu"))
		return tg_elu(x, 1.0);
	if (!strcmp(act, "silu"))
		return tg_silu(x);
	if (!strcmp(act, "softplus"))
		return tg_softplus(x);
	return tg_gelu(x);
}

static NOINLINE int suite_train(tg_ctx *ctx, const suite_spec *s, long long total)
{
	int64_t w[TG_MLP_MAX_LAYERS + 2];
	int nw = parse_arch(s->arch, w), L = nw - 1;
	tg_dataset ds;
	if (suite_data(s, w, nw, &ds)) {
		tg_dataset_free(&ds);
		return -1;
	}
	tg_affine layer[TG_MLP_MAX_LAYERS];
	tg_tensor *params[2 * TG_MLP_MAX_LAYERS];
	char name[16];
	for (int l = 0; l < L; l++) {
		snprintf(name, sizeof name, "fc%d", l + 1);
		tg_init init = { !strcmp(s->act, "relu") || !strcmp(s->act, "leaky_relu") ||
					     !strcmp(s->act, "gelu") || !strcmp(s->act, "elu")
					 ? TG_INIT_HE
					 : TG_INIT_GLOROT,
				 0 };
		if (tg_affine_init(&layer[l], ctx, s->dt, w[l], w[l + 1], init, name)) {
			tg_dataset_free(&ds);
			return -1;
		}
		params[2 * l] = layer[l].W;
		params[2 * l + 1] = layer[l].b;
	}
	tg_optim_opts oo = tg_optim_defaults(s->opt);
	if (s->opt == TG_SGD)
		oo.lr = 0.05;
	tg_optim *opt = tg_optim_new(ctx, params, (size_t)(2 * L), &oo);
	/* float targets: the batcher draws the rows (from dummy labels) and
	 * the targets of those rows are copied here, as tg_batch_next does x */
	float *targets = ds.t;
	int64_t tdim = ds.tdim;
	if (targets) {
		ds.t = NULL;
		ds.tdim = 0;
		ds.classes = 1;
		ds.y = calloc(N_SUITE, sizeof(int32_t));
	}
	tg_batcher *b = ds.y ? tg_batcher_new(ctx, &ds, s->batch, TG_BATCH_REPLACE) : NULL;
	if (!opt || !b) {
		tg_batcher_free(b);
		tg_optim_free(opt);
		tg_dataset_free(&ds);
		free(targets);
		return -1;
	}
	double loss_sum = 0;
	long long loss_n = 0, it = 0;
	mark_start();
	double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	while (it < total && tg_ok(ctx)) {
		tg_batch batch;
		if (!tg_batch_next(b, s->dt, &batch))
			continue;
		if (it == WARM)
			mark_warm();
		tg_tensor *h = batch.x;
		for (int l = 0; l < L; l++) {
			if (fused_relu && l < L - 1 && !strcmp(s->act, "relu")) {
				h = tg_addmm_relu(h, layer[l].W, layer[l].b);
				continue;
			}
			h = tg_affine_forward(&layer[l], h);
			if (l < L - 1)
				h = suite_act(s->act, h);
		}
		tg_tensor *t = NULL;
		if (targets) {
			t = tg_empty(ctx, s->dt, 2, (int64_t[]){ batch.n, tdim });
			if (!t)
				break;
			size_t k = 0;
			if (s->dt == TG_F64) {
				double *T = tg_data_mut(t);
				for (int64_t r = 0; r < batch.n; r++)
					for (int64_t j = 0; j < tdim; j++)
						T[k++] = targets[batch.idx[r] * tdim + j];
			} else {
				float *T = tg_data_mut(t);
				for (int64_t r = 0; r < batch.n; r++)
					for (int64_t j = 0; j < tdim; j++)
						T[k++] = targets[batch.idx[r] * tdim + j];
			}
		}
		tg_tensor *loss = s->loss == L_CE    ? tg_cross_entropy_i32(h, batch.y, batch.n)
				  : s->loss == L_MSE ? tg_mse(h, t)
						     : tg_bce_with_logits(h, t);
		tg_optim_zero_grad(opt);
		tg_backward(loss);
		tg_optim_step(opt);
		log_loss(loss);
		if (it >= total - LAST_LOSS && loss) {
			loss_sum += tg_item(loss);
			loss_n++;
		}
		tg_reset(ctx);
		it++;
	}
	R.wall = now(CLOCK_MONOTONIC) - w0;
	R.cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	if (it <= WARM)
		mark_warm();
	mark_end();
	R.iters = it;
	R.loss = loss_n ? loss_sum / (double)loss_n : NAN;
	R.arena_hw = tg_arena_high_water(ctx);
	tg_batcher_free(b);
	tg_optim_free(opt);
	tg_dataset_free(&ds);
	free(targets);
	return tg_ok(ctx) ? 0 : -1;
}

/* ---- the CNN: conv 32 3x3 p1 - ReLU - pool 2 - conv 64 3x3 p1 - ReLU - pool 2
 *      - fc 128 - ReLU - fc 10, Adam 1e-3, batch 64 -------------------------- */
/* The model is tg_model_parse_image's "cnn" (He init, zero biases) on
 * (B,1,28,28) f32 images: Fashion-MNIST's training set, or, when it is not
 * installed, N_CNN_SYNTH synthetic images (LCG pixels in [0,1), labels from
 * the pixel sum) of the same shape. Batches of 64 drawn with replacement
 * inside the timed loop, as in train(). Mirrored by torch_bench.py's cnn. */

enum { N_CNN_SYNTH = 4096 };

static int cnn_synthetic(tg_dataset *ds)
{
	memset(ds, 0, sizeof *ds);
	ds->n = N_CNN_SYNTH;
	ds->d = 28 * 28;
	ds->classes = 10;
	ds->x = malloc((size_t)(ds->n * ds->d) * sizeof(float));
	ds->y = malloc((size_t)ds->n * sizeof(int32_t));
	if (!ds->x || !ds->y)
		return -1;
	uint32_t seed = 12345u;
	for (int64_t i = 0; i < ds->n; i++) {
		double sum = 0;
		for (int64_t j = 0; j < ds->d; j++) {
			seed = seed * 1664525u + 1013904223u;
			float v = (float)((double)(seed >> 8) / 16777216.0);
			ds->x[i * ds->d + j] = v;
			sum += v * (double)((j % 7) - 3);
		}
		ds->y[i] = (int32_t)((int64_t)floor(fabs(sum)) % 10);
	}
	return 0;
}

static NOINLINE int cnn_train(tg_ctx *ctx, const tg_dataset *ds, long long total)
{
	tg_mlp_opts mo = tg_mlp_defaults();
	tg_module *net = tg_model_parse_image(ctx, "cnn", 1, 28, 28, &mo);
	size_t np = net ? tg_module_params(net, NULL, 0) : 0;
	tg_tensor **params = np ? malloc(np * sizeof *params) : NULL;
	if (params)
		tg_module_params(net, params, np);
	tg_optim_opts oo = tg_optim_defaults(TG_ADAM);
	oo.lr = 1e-3;
	tg_optim *opt = params ? tg_optim_new(ctx, params, np, &oo) : NULL;
	tg_batcher *b = tg_batcher_new(ctx, ds, 64, TG_BATCH_REPLACE);
	if (!net || !opt || !b) {
		tg_batcher_free(b);
		tg_optim_free(opt);
		free(params);
		tg_module_free(net);
		return -1;
	}
	double loss_sum = 0;
	long long loss_n = 0, it = 0;
	mark_start();
	double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	while (it < total && tg_ok(ctx)) {
		tg_batch batch;
		if (!tg_batch_next(b, TG_F32, &batch))
			continue;
		if (it == WARM)
			mark_warm();
		tg_tensor *x = tg_reshape(batch.x, 4, (int64_t[]){ batch.n, 1, 28, 28 });
		tg_tensor *loss = tg_cross_entropy_i32(tg_forward(net, x), batch.y, batch.n);
		tg_optim_zero_grad(opt);
		tg_backward(loss);
		tg_optim_step(opt);
		log_loss(loss);
		if (it >= total - LAST_LOSS && loss) {
			loss_sum += tg_item(loss);
			loss_n++;
		}
		tg_reset(ctx);
		it++;
	}
	R.wall = now(CLOCK_MONOTONIC) - w0;
	R.cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	if (it <= WARM)
		mark_warm();
	mark_end();
	R.iters = it;
	R.loss = loss_n ? loss_sum / (double)loss_n : NAN;
	R.arena_hw = tg_arena_high_water(ctx);
	tg_batcher_free(b);
	tg_optim_free(opt);
	free(params);
	tg_module_free(net);
	return tg_ok(ctx) ? 0 : -1;
}

/* ---- two CNNs of (B,3,32,32) images: batch norm, strides, groups --------- */
/* Each layer is conv (padding k/2) -> [batch norm per channel] -> ReLU; then
 * the mean over each channel's plane (global average pooling) -> fc 10,
 * cross-entropy. Weights N(0, 2/fan_in) (fan_in = C/groups k k, or the fc's
 * inputs), biases 0, gamma 1, beta 0, eps 1e-5; Momentum 0.9, lr 0.01,
 * batch 32 drawn with replacement inside the timed loop from N_IMG
 * synthetic images (pixel i: the top 24 bits of i * 2654435761 mod 2^32
 * over 2^24; label i: 7 i mod 10). Mirrored by torch_bench.py's IMG_CNNS.
 *	cnn-bn:  conv 3->32 3x3 +BN, conv 32->64 3x3 s2, conv 64->128 3x3 s2
 *	cnn-dws: conv 3->32 3x3 s2 +BN, then depthwise-separable pairs:
 *		 depthwise 3x3 (groups 32) +BN, pointwise 32->128 +BN,
 *		 depthwise 3x3 s2 (groups 128) +BN, pointwise 128->256 +BN
 *		 (no conv biases: batch norm's beta takes their place) */

enum { N_IMG = 1024, IMG_BATCH = 32, IMG_SIDE = 32 };

typedef struct img_conv {
	int c_in, c_out, k, stride, groups;
	bool bias, bn;
} img_conv;

static const img_conv CNN_BN[] = {
	{ 3, 32, 3, 1, 1, true, true },
	{ 32, 64, 3, 2, 1, true, false },
	{ 64, 128, 3, 2, 1, true, false },
};
static const img_conv CNN_DWS[] = {
	{ 3, 32, 3, 2, 1, false, true },      { 32, 32, 3, 1, 32, false, true },
	{ 32, 128, 1, 1, 1, false, true },    { 128, 128, 3, 2, 128, false, true },
	{ 128, 256, 1, 1, 1, false, true },
};

static int img_synthetic(tg_dataset *ds)
{
	memset(ds, 0, sizeof *ds);
	ds->n = N_IMG;
	ds->d = 3 * IMG_SIDE * IMG_SIDE;
	ds->classes = 10;
	ds->x = malloc((size_t)(ds->n * ds->d) * sizeof(float));
	ds->y = malloc((size_t)ds->n * sizeof(int32_t));
	if (!ds->x || !ds->y)
		return -1;
	for (int64_t i = 0; i < ds->n * ds->d; i++)
		ds->x[i] = (float)((double)(((uint32_t)i * 2654435761u) >> 8) / 16777216.0);
	for (int64_t i = 0; i < ds->n; i++)
		ds->y[i] = (int32_t)(i * 7 % 10);
	return 0;
}

enum { IMG_MAX_LAYERS = 8, IMG_MAX_PARAMS = 4 * IMG_MAX_LAYERS + 2 };

static NOINLINE int img_cnn_train(tg_ctx *ctx, const img_conv *L, int nl, long long total)
{
	tg_tensor *p[IMG_MAX_PARAMS], *w[IMG_MAX_LAYERS], *b[IMG_MAX_LAYERS];
	tg_tensor *gamma[IMG_MAX_LAYERS], *beta[IMG_MAX_LAYERS];
	size_t np = 0;
	for (int l = 0; l < nl; l++) {
		int64_t cg = L[l].c_in / L[l].groups, fan_in = cg * L[l].k * L[l].k;
		w[l] = tg_param(tg_randn(ctx, TG_F32, 4,
					 (int64_t[]){ L[l].c_out, cg, L[l].k, L[l].k }, 0,
					 sqrt(2.0 / (double)fan_in)));
		p[np++] = w[l];
		b[l] = gamma[l] = beta[l] = NULL;
		int64_t o = L[l].c_out;
		if (L[l].bias)
			p[np++] = b[l] = tg_param(tg_zeros(ctx, TG_F32, 1, &o));
		if (L[l].bn) {
			p[np++] = gamma[l] = tg_param(tg_ones(ctx, TG_F32, 1, &o));
			p[np++] = beta[l] = tg_param(tg_zeros(ctx, TG_F32, 1, &o));
		}
	}
	int64_t feat = L[nl - 1].c_out;
	tg_tensor *fw = tg_param(tg_randn(ctx, TG_F32, 2, (int64_t[]){ feat, 10 }, 0,
					  sqrt(2.0 / (double)feat)));
	tg_tensor *fb = tg_param(tg_zeros(ctx, TG_F32, 1, (int64_t[]){ 10 }));
	p[np++] = fw;
	p[np++] = fb;
	tg_dataset ds = { 0 };
	if (!tg_ok(ctx) || img_synthetic(&ds)) {
		tg_dataset_free(&ds);
		return -1;
	}
	tg_optim_opts oo = tg_optim_defaults(TG_MOMENTUM);
	oo.lr = 0.01;
	tg_optim *opt = tg_optim_new(ctx, p, np, &oo);
	tg_batcher *bt = tg_batcher_new(ctx, &ds, IMG_BATCH, TG_BATCH_REPLACE);
	if (!opt || !bt) {
		tg_batcher_free(bt);
		tg_optim_free(opt);
		tg_dataset_free(&ds);
		return -1;
	}
	double loss_sum = 0;
	long long loss_n = 0, it = 0;
	mark_start();
	double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	while (it < total && tg_ok(ctx)) {
		tg_batch batch;
		if (!tg_batch_next(bt, TG_F32, &batch))
			continue;
		if (it == WARM)
			mark_warm();
		tg_tensor *h = tg_reshape(batch.x, 4,
					  (int64_t[]){ batch.n, 3, IMG_SIDE, IMG_SIDE });
		for (int l = 0; l < nl; l++) {
			int s = L[l].stride, pad = L[l].k / 2;
			tg_conv_opts o = { { s, s }, { pad, pad }, { 1, 1 }, L[l].groups };
			/* conv-ReLU and BN-ReLU as one op each, as tg_model_parse's
			 * modules run them */
			h = L[l].bn ? tg_batch_norm_relu(tg_conv2d(h, w[l], b[l], &o), gamma[l],
							 beta[l], 1e-5, NULL, NULL)
				    : tg_conv2d_relu(h, w[l], b[l], &o);
		}
		const int64_t *s = h ? tg_shape(h) : NULL;
		h = s ? tg_mean_axis(tg_reshape(h, 3, (int64_t[]){ s[0], s[1], s[2] * s[3] }), 2,
				     false)
		      : NULL;
		tg_tensor *loss = tg_cross_entropy_i32(tg_addmm(h, fw, fb), batch.y, batch.n);
		tg_optim_zero_grad(opt);
		tg_backward(loss);
		tg_optim_step(opt);
		log_loss(loss);
		if (it >= total - LAST_LOSS && loss) {
			loss_sum += tg_item(loss);
			loss_n++;
		}
		tg_reset(ctx);
		it++;
	}
	R.wall = now(CLOCK_MONOTONIC) - w0;
	R.cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	if (it <= WARM)
		mark_warm();
	mark_end();
	R.iters = it;
	R.loss = loss_n ? loss_sum / (double)loss_n : NAN;
	R.arena_hw = tg_arena_high_water(ctx);
	tg_batcher_free(bt);
	tg_optim_free(opt);
	tg_dataset_free(&ds);
	return tg_ok(ctx) ? 0 : -1;
}

/* ---- the CNN's two convolutions alone ------------------------------------ */
/* conv1 (64,1,28,28) -> 32 channels and conv2 (64,32,14,14) -> 64 channels,
 * 3x3, padding 1, with bias: forward, then backward from fixed upstream
 * gradients: dw and db of both, dx of conv2 only (the CNN needs no gradient
 * for its images). Nothing else runs, so the time is the convolutions'
 * own, as torch_bench.py's conv-layers times PyTorch's (oneDNN, or its
 * im2col path with --no-mkldnn). */
static NOINLINE int conv_layers(tg_ctx *ctx, long long total)
{
	tg_conv_opts o = { { 1, 1 }, { 1, 1 }, { 1, 1 }, 1 };
	tg_tensor *x = tg_keep(tg_rand(ctx, TG_F32, 4, (int64_t[]){ 64, 1, 28, 28 }, 0, 1));
	tg_tensor *h = tg_param(tg_randn(ctx, TG_F32, 4, (int64_t[]){ 64, 32, 14, 14 }, 0, 1));
	tg_tensor *w1 = tg_param(tg_randn(ctx, TG_F32, 4, (int64_t[]){ 32, 1, 3, 3 }, 0, 0.47));
	tg_tensor *b1 = tg_param(tg_zeros(ctx, TG_F32, 1, (int64_t[]){ 32 }));
	tg_tensor *w2 = tg_param(tg_randn(ctx, TG_F32, 4, (int64_t[]){ 64, 32, 3, 3 }, 0, 0.083));
	tg_tensor *b2 = tg_param(tg_zeros(ctx, TG_F32, 1, (int64_t[]){ 64 }));
	tg_tensor *g1 = tg_keep(tg_randn(ctx, TG_F32, 4, (int64_t[]){ 64, 32, 28, 28 }, 0, 1));
	tg_tensor *g2 = tg_keep(tg_randn(ctx, TG_F32, 4, (int64_t[]){ 64, 64, 14, 14 }, 0, 1));
	if (!tg_ok(ctx))
		return -1;
	mark_start();
	double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	long long it = 0;
	for (; it < total && tg_ok(ctx); it++) {
		if (it == WARM)
			mark_warm();
		tg_zero_grads(ctx);
		tg_backward_ex(tg_conv2d(x, w1, b1, &o), g1, 0);
		tg_backward_ex(tg_conv2d(h, w2, b2, &o), g2, 0);
		tg_reset(ctx);
	}
	R.wall = now(CLOCK_MONOTONIC) - w0;
	R.cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	if (it <= WARM)
		mark_warm();
	mark_end();
	R.iters = it;
	R.loss = tg_ok(ctx) ? tg_get(tg_grad(b2), 0) : NAN;
	R.arena_hw = tg_arena_high_water(ctx);
	return tg_ok(ctx) ? 0 : -1;
}

/* ---- the GEMM floor: the same products, nothing else --------------------- */
/* For layer l with input A_l (B, n_l), weight W_l (n_l, n_l+1), output
 * C_l (B, n_l+1), tapegrad's matmul and its backward call
 *	forward  C_l  = A_l @ W_l                 NoTrans, NoTrans
 *	backward dW_l = A_l^T @ dC_l              Trans,   NoTrans
 *	         dA_l = dC_l @ W_l^T  (l > 0)     NoTrans, Trans
 * and no product for the input batch's gradient (it needs none). Each
 * operand has its own buffer, as in the arena. */

typedef struct floor_spec {
	int nlayers;
	int64_t width[TG_MLP_MAX_LAYERS + 1];
	int64_t batch;
	int64_t n;         /* samples per epoch; 0: every batch is full */
	long long iters;
} floor_spec;

/* The library's own product (engine/gemm.c: OpenBLAS, or oneDNN's sgemm
 * for large f32 products where it runs, cut across the context's threads),
 * so that the floor is the products tapegrad runs. */
void tg_gemm(const tg_ctx *ctx, tg_dtype dt, bool ta, bool tb, int N, int M, int K,
	     const void *A, int lda, const void *B, int ldb, double beta, void *C, int ldc);

static void gemm(const tg_ctx *ctx, bool f64, bool ta, bool tb, int64_t m, int64_t n,
		 int64_t k, const void *a, int64_t lda, const void *b, int64_t ldb, void *c)
{
	tg_gemm(ctx, f64 ? TG_F64 : TG_F32, ta, tb, (int)m, (int)n, (int)k, a, (int)lda, b,
		(int)ldb, 0.0, c, (int)n);
}

static void *filled(size_t n, bool f64, unsigned *seed)
{
	size_t es = f64 ? sizeof(double) : sizeof(float);
	void *p = malloc(n * es);
	for (size_t i = 0; p && i < n; i++) {
		*seed = *seed * 1103515245u + 12345u;
		double v = ((double)(*seed >> 8 & 0xffff) / 65536.0 - 0.5) * 0.1;
		if (f64)
			((double *)p)[i] = v;
		else
			((float *)p)[i] = (float)v;
	}
	return p;
}

static NOINLINE int gemm_floor(const tg_ctx *ctx, const floor_spec *s, bool f64)
{
	int L = s->nlayers;
	void *A[TG_MLP_MAX_LAYERS + 1], *W[TG_MLP_MAX_LAYERS], *dW[TG_MLP_MAX_LAYERS];
	void *dC[TG_MLP_MAX_LAYERS], *dA[TG_MLP_MAX_LAYERS];
	unsigned seed = 1;
	int64_t B = s->batch;
	for (int l = 0; l <= L; l++)
		A[l] = filled((size_t)(B * s->width[l]), f64, &seed);
	for (int l = 0; l < L; l++) {
		W[l] = filled((size_t)(s->width[l] * s->width[l + 1]), f64, &seed);
		dW[l] = filled((size_t)(s->width[l] * s->width[l + 1]), f64, &seed);
		dC[l] = filled((size_t)(B * s->width[l + 1]), f64, &seed);
		dA[l] = filled((size_t)(B * s->width[l]), f64, &seed);
	}
	long long per_epoch = s->n ? (s->n + B - 1) / B : 0;
	mark_start();
	double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	for (long long it = 0; it < s->iters; it++) {
		if (it == WARM)
			mark_warm();
		int64_t b = B;
		if (per_epoch && it % per_epoch == per_epoch - 1 && s->n % B)
			b = s->n % B; /* the short last batch of an epoch */
		for (int l = 0; l < L; l++)
			gemm(ctx, f64, false, false, b, s->width[l + 1], s->width[l], A[l], s->width[l],
			     W[l], s->width[l + 1], A[l + 1]);
		for (int l = L - 1; l >= 0; l--) {
			gemm(ctx, f64, true, false, s->width[l], s->width[l + 1], b, A[l], s->width[l],
			     dC[l], s->width[l + 1], dW[l]);
			if (l > 0)
				gemm(ctx, f64, false, true, b, s->width[l], s->width[l + 1], dC[l],
				     s->width[l + 1], W[l], s->width[l + 1], dA[l]);
		}
	}
	R.wall = now(CLOCK_MONOTONIC) - w0;
	R.cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	if (s->iters <= WARM)
		mark_warm();
	mark_end();
	R.iters = s->iters;
	R.loss = NAN;
	for (int l = 0; l <= L; l++)
		free(A[l]);
	for (int l = 0; l < L; l++) {
		free(W[l]);
		free(dW[l]);
		free(dC[l]);
		free(dA[l]);
	}
	return 0;
}

/* ---- tiny graphs: forward, backward and reset, over and over ------------- */

static NOINLINE int tiny_scalar(tg_ctx *ctx, long long reps)
{
	tg_tensor *x = tg_param(tg_scalar(ctx, TG_F32, 2.0));
	tg_tensor *y = tg_param(tg_scalar(ctx, TG_F32, 3.0));
	tg_tensor *z = tg_param(tg_scalar(ctx, TG_F32, 4.0));
	if (!tg_ok(ctx))
		return -1;
	mark_start();
	double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	for (long long r = 0; r < reps; r++) {
		if (r == WARM)
			mark_warm();
		tg_tensor *f = tg_mul(tg_add(x, y), z);
		tg_backward(f);
		tg_reset(ctx);
	}
	R.wall = now(CLOCK_MONOTONIC) - w0;
	R.cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	if (reps <= WARM)
		mark_warm();
	mark_end();
	R.iters = reps;
	/* dz accumulates x + y = 5 per repetition */
	R.loss = tg_item(tg_grad(z)) / (double)reps;
	return tg_ok(ctx) ? 0 : -1;
}

static NOINLINE int tiny_sigmoid(tg_ctx *ctx, long long reps)
{
	/* fixed values, the same in torch_bench.py, so the outputs can be compared */
	int64_t n = 64;
	double wv[64], xv[64];
	for (int i = 0; i < 64; i++) {
		wv[i] = 0.1 * ((i % 7) - 3) / 3.0;
		xv[i] = ((i % 5) - 2) / 2.0;
	}
	tg_tensor *w = tg_param(tg_from_f64(ctx, TG_F32, 1, &n, wv));
	tg_tensor *x = tg_keep(tg_from_f64(ctx, TG_F32, 1, &n, xv));
	tg_tensor *b = tg_param(tg_scalar(ctx, TG_F32, 0.25));
	if (!tg_ok(ctx))
		return -1;
	tg_tensor *y = NULL;
	double last = NAN;
	mark_start();
	double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	for (long long r = 0; r < reps; r++) {
		if (r == WARM)
			mark_warm();
		y = tg_sigmoid(tg_add(tg_sum(tg_mul(w, x)), b));
		tg_backward(y);
		if (r == reps - 1)
			last = tg_item(y);
		tg_reset(ctx);
	}
	R.wall = now(CLOCK_MONOTONIC) - w0;
	R.cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	if (reps <= WARM)
		mark_warm();
	mark_end();
	R.iters = reps;
	R.loss = last;
	return tg_ok(ctx) ? 0 : -1;
}

/* ---- main ---------------------------------------------------------------- */

static const char usage_text[] =
	"usage: tg_bench WORKLOAD [--iters N] [--epochs E] [--threads T] [--seed S] [--data DIR]\n"
	"                [--losses FILE] [--spec LINE] [--fused-relu]\n"
	"\n"
	"WORKLOAD: w1 w1-f64 w2 w3 w4-scalar w4-sigmoid cnn cnn-bn cnn-dws conv-layers\n"
	"          floor-w1 floor-w1-f64 floor-w2 floor-w3\n"
	"w1: 784-50-10 sigmoid, init std 0.01, SGD 0.1, batch 100 with replacement,\n"
	"    N iterations (10000); w2: 784-100x5-10, affine-BN-ReLU, He, Adam 0.001,\n"
	"    batch 100, E epochs (3); w3: 784-1024-1024-10 ReLU, He, Momentum 0.9\n"
	"    lr 0.01, batch 512, E epochs (2); w4-*: N repetitions (1000000) of\n"
	"    (x+y)*z on scalars or sigmoid(w.x + b) on 64-vectors. --iters caps the\n"
	"    epoch workloads. floor-*: the workload's GEMMs alone.\n"
	"cnn: conv32 3x3 p1-ReLU-pool2-conv64 3x3 p1-ReLU-pool2-128-10, He, Adam 1e-3,\n"
	"    batch 64 with replacement of (64,1,28,28) Fashion-MNIST images (synthetic\n"
	"    ones when --data has none), N iterations (100).\n"
	"cnn-bn: (32,3,32,32) synthetic images, conv32 3x3-BN-ReLU, conv64 3x3 s2-ReLU,\n"
	"    conv128 3x3 s2-ReLU, global average pool, fc 10, Momentum 0.9 lr 0.01,\n"
	"    N iterations (60); cnn-dws: the same images, conv32 3x3 s2-BN-ReLU, then\n"
	"    depthwise 3x3 / pointwise 1x1 pairs to 128 and (s2) 256 channels, each\n"
	"    BN-ReLU, global average pool, fc 10, Momentum, N (60).\n"
	"conv-layers: the CNN's two convolutions alone, forward and backward, N (100).\n"
	"s-*: the workload suite (tg_bench suite-list: name arch act optimizer batch\n"
	"    dtype loss iterations), synthetic data, batches with replacement.\n"
	"--spec \"NAME ARCH ACT OPTIMIZER BATCH DTYPE LOSS [ITERATIONS]\" adds a suite\n"
	"    workload NAME, e.g. \"x-silu 784-64-64-10 silu adam 32 f32 ce 300\":\n"
	"    ACT relu sigmoid tanh leaky_relu elu gelu silu softplus, OPTIMIZER sgd\n"
	"    momentum nesterov adagrad rmsprop adam adamw, DTYPE f32 f64, LOSS ce mse bce;\n"
	"    suite-list then prints its line alone.\n"
	"--losses FILE writes each training iteration's loss as a hexadecimal float.\n"
	"--fused-relu runs a relu suite workload's hidden layers as tg_addmm_relu, as\n"
	"    a sequential or tg_mlp does (tg_affine_forward and tg_relu without it).\n"
	"--iters and --epochs take 1 to 2147483647, --threads 1 to 64, --seed 0 or more.\n";

/* The value of option opt, a whole number from lo to hi; exits 2 otherwise. */
static long long number(const char *opt, const char *s, long long lo, long long hi)
{
	char *end;
	errno = 0;
	long long v = s ? strtoll(s, &end, 10) : 0;
	if (!s || end == s || *end || errno || v < lo || v > hi) {
		fprintf(stderr, "tg_bench: %s needs a whole number from %lld to %lld%s%s%s\n\n%s",
			opt, lo, hi, s ? ", not '" : "", s ? s : "", s ? "'" : "", usage_text);
		exit(2);
	}
	return v;
}

/* The workloads main runs, but for the suite's (suite_find) */
static const char *const WORKLOAD_NAMES[] = {
	"w1", "w1-f64", "w2", "w3", "w4-scalar", "w4-sigmoid", "cnn", "cnn-bn", "cnn-dws",
	"conv-layers", "floor-w1", "floor-w1-f64", "floor-w2", "floor-w3", "suite-list",
};

static bool known_workload(const char *w)
{
	if (suite_find(w))
		return true;
	for (size_t i = 0; i < sizeof WORKLOAD_NAMES / sizeof WORKLOAD_NAMES[0]; i++)
		if (!strcmp(w, WORKLOAD_NAMES[i]))
			return true;
	return false;
}

/* The end of a run: closes --losses, prints the RESULT line; the exit status. */
static int finish(int rc)
{
	if (close_losses())
		rc = 1;
	R.error = rc ? "yes" : NULL;
	report();
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	/* --spec LINE, anywhere after the workload: taken out of argv here */
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--spec")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "tg_bench: --spec needs a workload's line\n");
				return 2;
			}
			if (parse_spec(argv[i + 1]))
				return 2;
			memmove(argv + i, argv + i + 2, (size_t)(argc - i - 1) * sizeof *argv);
			argc -= 2;
			i--;
		}
	if (!strcmp(argv[1], "suite-data") && argc == 4 && suite_find(argv[2])) {
		/* the data set of a suite workload, for torch_bench.py: int64 n, d,
		 * classes, tdim, then x (float32), then y (int32) or t (float32) */
		const suite_spec *s = suite_find(argv[2]);
		int64_t aw[TG_MLP_MAX_LAYERS + 2];
		int nw = parse_arch(s->arch, aw);
		tg_dataset ds;
		FILE *f = fopen(argv[3], "wb");
		int bad = !f || suite_data(s, aw, nw, &ds);
		if (!bad) {
			int64_t head[4] = { ds.n, ds.d, ds.classes, ds.tdim };
			bad = fwrite(head, sizeof head, 1, f) != 1 ||
			      fwrite(ds.x, sizeof(float), (size_t)(ds.n * ds.d), f) !=
				  (size_t)(ds.n * ds.d) ||
			      (ds.y && fwrite(ds.y, sizeof(int32_t), (size_t)ds.n, f) != (size_t)ds.n) ||
			      (ds.t && fwrite(ds.t, sizeof(float), (size_t)(ds.n * ds.tdim), f) !=
					   (size_t)(ds.n * ds.tdim));
			tg_dataset_free(&ds);
		}
		if (f && fclose(f))
			bad = 1;
		if (bad)
			fprintf(stderr, "tg_bench: writing %s failed\n", argv[3]);
		return bad ? 1 : 0;
	}
	const char *w = argv[1];
	long long iters = -1, epochs = -1, threads = 1, seed = 42;
	const char *dir = TG_FASHION_MNIST_DIR;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--iters"))
			iters = number(a, v, 1, INT_MAX), i++;
		else if (!strcmp(a, "--epochs"))
			epochs = number(a, v, 1, INT_MAX), i++;
		else if (!strcmp(a, "--threads"))
			threads = number(a, v, 1, TG_MAX_THREADS), i++;
		else if (!strcmp(a, "--fused-relu"))
			fused_relu = true;
		else if (!strcmp(a, "--seed"))
			seed = number(a, v, 0, LLONG_MAX), i++;
		else if (!strcmp(a, "--data") || !strcmp(a, "--losses")) {
			if (!v) {
				fprintf(stderr, "tg_bench: %s needs a value\n\n%s", a, usage_text);
				return 2;
			}
			*(!strcmp(a, "--data") ? &dir : &losses_path) = v;
			i++;
		} else {
			fprintf(stderr, "tg_bench: unknown option %s\n\n%s", a, usage_text);
			return 2;
		}
	}
	if (!known_workload(w)) {
		fprintf(stderr, "tg_bench: unknown workload %s\n\n%s", w, usage_text);
		return 2;
	}
	if (fused_relu && (!suite_find(w) || strcmp(suite_find(w)->act, "relu"))) {
		fprintf(stderr, "tg_bench: --fused-relu needs a suite workload with relu; %s %s\n", w,
			suite_find(w) ? "has another activation" : "is not a suite workload");
		return 2;
	}
	if (!strcmp(w, "suite-list")) {
		/* the table, or only --spec's workload when there is one */
		size_t n = custom.name ? 1 : sizeof SUITE / sizeof SUITE[0];
		for (size_t i = 0; i < n; i++) {
			const suite_spec *s = custom.name ? &custom : &SUITE[i];
			printf("%s %s %s %d %lld %s %d %lld\n", s->name, s->arch, s->act,
			       (int)s->opt, (long long)s->batch, s->dt == TG_F64 ? "f64" : "f32",
			       (int)s->loss, s->iters);
		}
		return 0;
	}
	/* opened only now that the arguments are known good: a mistake in them
	 * leaves the file as it was */
	if (losses_path) {
		losses = fopen(losses_path, "w");
		if (!losses) {
			fprintf(stderr, "tg_bench: --losses %s: %s\n", losses_path, strerror(errno));
			return 2;
		}
	}
	R.workload = w;
	R.dtype = strstr(w, "f64") ? "f64" : "f32";
	R.threads = (int)threads;
	R.loss = NAN;

	const suite_spec *ss = suite_find(w);
	if (ss) {
		R.dtype = ss->dt == TG_F64 ? "f64" : "f32";
		tg_ctx *ctx = tg_ctx_new_with((uint64_t)seed, &counting);
		if (!ctx)
			return 1;
		tg_set_threads(ctx, (int)threads);
		int rc = suite_train(ctx, ss, iters >= 0 ? iters : ss->iters);
		if (rc)
			fprintf(stderr, "tg_bench: %s: %s\n", w, tg_error(ctx));
		tg_ctx_free(ctx);
		return finish(rc);
	}
	if (!strcmp(w, "cnn")) {
		tg_ctx *ctx = tg_ctx_new_with((uint64_t)seed, &counting);
		if (!ctx)
			return 1;
		tg_set_threads(ctx, (int)threads);
		tg_dataset train_set, test_set;
		int rc = 0;
		if (tg_load_mnist(ctx, dir, &train_set, &test_set)) {
			fprintf(stderr, "tg_bench: cnn: %s; synthetic images instead\n", tg_error(ctx));
			tg_clear_error(ctx);
			rc = cnn_synthetic(&train_set);
		} else {
			tg_dataset_free(&test_set);
		}
		if (!rc)
			rc = cnn_train(ctx, &train_set, iters >= 0 ? iters : 100);
		if (rc)
			fprintf(stderr, "tg_bench: cnn: %s\n", tg_error(ctx));
		tg_dataset_free(&train_set);
		tg_ctx_free(ctx);
		return finish(rc);
	}
	if (!strcmp(w, "cnn-bn") || !strcmp(w, "cnn-dws")) {
		tg_ctx *ctx = tg_ctx_new_with((uint64_t)seed, &counting);
		if (!ctx)
			return 1;
		tg_set_threads(ctx, (int)threads);
		bool bn = !strcmp(w, "cnn-bn");
		int rc = img_cnn_train(ctx, bn ? CNN_BN : CNN_DWS,
				       bn ? (int)(sizeof CNN_BN / sizeof CNN_BN[0])
					  : (int)(sizeof CNN_DWS / sizeof CNN_DWS[0]),
				       iters >= 0 ? iters : 60);
		if (rc)
			fprintf(stderr, "tg_bench: %s: %s\n", w, tg_error(ctx));
		tg_ctx_free(ctx);
		return finish(rc);
	}
	if (!strcmp(w, "conv-layers")) {
		tg_ctx *ctx = tg_ctx_new_with((uint64_t)seed, &counting);
		if (!ctx)
			return 1;
		tg_set_threads(ctx, (int)threads);
		int rc = conv_layers(ctx, iters >= 0 ? iters : 100);
		if (rc)
			fprintf(stderr, "tg_bench: conv-layers: %s\n", tg_error(ctx));
		tg_ctx_free(ctx);
		return finish(rc);
	}

	bool is_floor = !strncmp(w, "floor-", 6);
	bool is_tiny = !strncmp(w, "w4-", 3);
	const char *base = is_floor ? w + 6 : w;
	train_spec ts = { 0 };
	floor_spec fs = { 0 };
	ts.mlp = tg_mlp_defaults();
	if (!strcmp(base, "w1") || !strcmp(base, "w1-f64")) {
		ts.spec = "784-50-10";
		ts.mlp.act = (tg_act){ TG_ACT_SIGMOID, 0 };
		ts.mlp.init = (tg_init){ TG_INIT_STD, 0.01 };
		ts.mlp.dtype = strstr(base, "f64") ? TG_F64 : TG_F32;
		ts.opt = tg_optim_defaults(TG_SGD);
		ts.opt.lr = 0.1;
		ts.batch = 100;
		ts.flags = TG_BATCH_REPLACE;
		ts.iters = iters >= 0 ? iters : 10000;
		fs = (floor_spec){ 2, { 784, 50, 10 }, 100, 0, ts.iters };
	} else if (!strcmp(base, "w2")) {
		ts.spec = "784-100-100-100-100-100-10";
		ts.mlp.batchnorm = true;
		ts.opt = tg_optim_defaults(TG_ADAM);
		ts.batch = 100;
		ts.epochs = epochs >= 0 ? epochs : 3;
		ts.iters = iters >= 0 ? iters : 0;
		fs = (floor_spec){ 6, { 784, 100, 100, 100, 100, 100, 10 }, 100, 60000, 0 };
	} else if (!strcmp(base, "w3")) {
		ts.spec = "784-1024-1024-10";
		ts.opt = tg_optim_defaults(TG_MOMENTUM);
		ts.opt.lr = 0.01;
		ts.opt.momentum = 0.9;
		ts.batch = 512;
		ts.epochs = epochs >= 0 ? epochs : 2;
		ts.iters = iters >= 0 ? iters : 0;
		fs = (floor_spec){ 3, { 784, 1024, 1024, 10 }, 512, 60000, 0 };
	} else if (!is_tiny || is_floor) {
		fprintf(stderr, "tg_bench: unknown workload %s\n\n%s", w, usage_text);
		return 2;
	}

	int rc;
	if (is_floor) {
		if (!fs.iters) {
			long long per = (fs.n + fs.batch - 1) / fs.batch;
			fs.iters = ts.epochs * per;
			if (ts.iters > 0 && ts.iters < fs.iters)
				fs.iters = ts.iters;
		}
		tg_ctx *ctx = tg_ctx_new((uint64_t)seed);
		if (!ctx)
			return 1;
		tg_set_threads(ctx, (int)threads);
		rc = gemm_floor(ctx, &fs, ts.mlp.dtype == TG_F64);
		tg_ctx_free(ctx);
	} else {
		tg_ctx *ctx = tg_ctx_new_with((uint64_t)seed, &counting);
		if (!ctx)
			return 1;
		tg_set_threads(ctx, (int)threads);
		if (is_tiny) {
			long long reps = iters >= 0 ? iters : 1000000;
			if (!strcmp(w, "w4-scalar"))
				rc = tiny_scalar(ctx, reps);
			else if (!strcmp(w, "w4-sigmoid"))
				rc = tiny_sigmoid(ctx, reps);
			else {
				fprintf(stderr, "tg_bench: unknown workload %s\n\n%s", w, usage_text);
				tg_ctx_free(ctx);
				return 2;
			}
			R.arena_hw = tg_arena_high_water(ctx);
		} else {
			tg_dataset train_set, test_set;
			if (tg_load_mnist(ctx, dir, &train_set, &test_set)) {
				fprintf(stderr, "tg_bench: %s\n", tg_error(ctx));
				tg_ctx_free(ctx);
				return 1;
			}
			tg_dataset_free(&test_set);
			rc = train(ctx, &train_set, &ts);
			tg_dataset_free(&train_set);
		}
		if (rc)
			fprintf(stderr, "tg_bench: %s: %s\n", w, tg_error(ctx));
		tg_ctx_free(ctx);
	}
	return finish(rc);
}
