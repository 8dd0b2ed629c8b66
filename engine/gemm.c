/*
 * gemm.c - every matrix product of the library (matmul, addmm, bmm, the
 * convolutions' column products): OpenBLAS at one thread, a large product
 * cut into one part per thread of its context and run on the pool
 * (parallel.h).
 *
 * f32 products of TG_SGEMM_DNNL_MIN multiply-adds or more go to oneDNN's
 * sgemm instead, where the build has oneDNN and the CPU AVX2: on an AVX-512
 * Zen 5 it ran the products of the benchmark's MLPs 1.1 to 2.4 times as
 * fast as OpenBLAS 0.3.21's SkylakeX kernel (a batch of 16 through 784x256:
 * 65 us against 31), while below about 2^19 multiply-adds its call costs
 * more than OpenBLAS's whole product. It runs on OpenMP, kept at one thread
 * for the call; the caller's OpenMP setting is put back after. Its packing
 * buffer is allocated on each call (one malloc at one thread). If it fails
 * (no memory), OpenBLAS computes the product. TG_SGEMM=openblas in the
 * environment when a context is made keeps its f32 products on OpenBLAS.
 *
 * A part is a band of C's rows or of its columns with all of K, each its
 * own GEMM call. The band runs across the side whose operand is the
 * larger: cutting C's rows has every part pack all of op(B), cutting its
 * columns all of op(A), so the smaller one is packed twice. An element
 * may differ from one thread's in the last place, as with OpenBLAS's own
 * threads: its kernels treat the edges of a call by the call's size.
 *
 * A product with a few columns whose A is read transposed (x^T dy of a
 * narrow layer) runs as its transpose, copied back (narrow products,
 * below), through a scratch matrix each thread keeps.
 *
 * The pool and not OpenBLAS's threads: two pools on the same cores each
 * spin while the other works (OpenBLAS's workers in sched_yield), and
 * OpenBLAS's threaded GEMM allocates on every call.
 */
#include "internal.h"
#include "parallel.h"

#include <cblas.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef TG_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#endif

enum {
	/* Parts start on multiples of this many rows or columns: the widest
	 * register block of OpenBLAS's x86 kernels, so that only the last
	 * part has a narrow edge block. */
	BAND_ALIGN = 16,
};

typedef struct product {
	tg_dtype dt;
	bool ta, tb, rows; /* rows: the parts are bands of C's rows */
	bool dnnl;         /* f32 on oneDNN's sgemm */
	int N, M, K, lda, ldb, ldc, parts;
	const char *A, *B;
	char *C;
	double beta;
} product;

#ifdef TG_HAVE_DNNL
/* The CPU's instruction set as oneDNN sees it: 1 with AVX2 or more, 0
 * without, -1 not asked yet. */
static atomic_int dnnl_isa = -1;

static bool dnnl_cpu_ok(void)
{
	int ok = atomic_load_explicit(&dnnl_isa, memory_order_relaxed);
	if (ok < 0) {
		dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
		ok = (isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2;
		atomic_store_explicit(&dnnl_isa, ok, memory_order_relaxed);
	}
	return ok;
}

/* One oneDNN call at one OpenMP thread; false if it failed. */
static bool dnnl_gemm1(bool ta, bool tb, int N, int M, int K, const float *A, int lda,
		       const float *B, int ldb, float beta, float *C, int ldc)
{
	int threads = omp_get_max_threads();
	if (threads != 1)
		omp_set_num_threads(1);
	dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', N, M, K, 1.0f, A, lda, B,
				      ldb, beta, C, ldc);
	if (threads != 1)
		omp_set_num_threads(threads);
	return st == dnnl_success;
}
#endif

bool tg_sgemm_dnnl(const tg_ctx *ctx)
{
#ifdef TG_HAVE_DNNL
	if (ctx ? ctx->sgemm_blas : false)
		return false;
	if (!ctx) {
		const char *env = getenv("TG_SGEMM");
		if (env && !strcmp(env, "openblas"))
			return false;
	}
	return dnnl_cpu_ok();
#else
	(void)ctx;
	return false;
#endif
}

const char *tg_sgemm_dnnl_info(void)
{
#ifdef TG_HAVE_DNNL
	static char info[64];
	static atomic_int done;
	if (!atomic_load(&done)) {
		const dnnl_version_t *v = dnnl_version();
		char buf[sizeof info];
		snprintf(buf, sizeof buf, "oneDNN %d.%d.%d sgemm", v->major, v->minor, v->patch);
		/* racing first callers write the same text */
		memcpy(info, buf, sizeof info);
		atomic_store(&done, 1);
	}
	return info;
#else
	return "";
#endif
}

/* One call: oneDNN's sgemm when dnnl, else (or if it failed) OpenBLAS. */
static void gemm1(tg_dtype dt, bool dnnl, bool ta, bool tb, int N, int M, int K, const void *A,
		  int lda, const void *B, int ldb, double beta, void *C, int ldc)
{
#ifdef TG_HAVE_DNNL
	if (dnnl && dnnl_gemm1(ta, tb, N, M, K, A, lda, B, ldb, (float)beta, C, ldc))
		return;
#else
	(void)dnnl;
#endif
	enum CBLAS_TRANSPOSE fa = ta ? CblasTrans : CblasNoTrans;
	enum CBLAS_TRANSPOSE fb = tb ? CblasTrans : CblasNoTrans;
	if (dt == TG_F64)
		cblas_dgemm(CblasRowMajor, fa, fb, N, M, K, 1.0, A, lda, B, ldb, beta, C, ldc);
	else
		cblas_sgemm(CblasRowMajor, fa, fb, N, M, K, 1.0f, A, lda, B, ldb, (float)beta, C,
			    ldc);
}

/* The band N x M of p at A, B, C. */
static void run(const product *p, int N, int M, const char *A, const char *B, char *C)
{
	gemm1(p->dt, p->dnnl, p->ta, p->tb, N, M, p->K, A, p->lda, B, p->ldb, p->beta, C,
	      p->ldc);
}

/* Where part i of the split side begins: a multiple of BAND_ALIGN. */
static int band_start(const product *p, size_t i)
{
	int n = p->rows ? p->N : p->M;
	if (i >= (size_t)p->parts)
		return n;
	int64_t b = (int64_t)n * (int64_t)i / p->parts;
	return (int)(b / BAND_ALIGN * BAND_ALIGN);
}

/* Parts [lo, hi) as one band: rows (or columns) r0 to r1 of C. */
static void run_parts(void *arg, size_t lo, size_t hi)
{
	const product *p = arg;
	int r0 = band_start(p, lo), r1 = band_start(p, hi);
	if (r0 >= r1)
		return;
	size_t es = tg_dtype_size(p->dt);
	if (p->rows) {
		/* row r of op(A): row r of A, or column r of A^T */
		size_t a_off = p->ta ? (size_t)r0 : (size_t)r0 * (size_t)p->lda;
		run(p, r1 - r0, p->M, p->A + a_off * es, p->B,
		    p->C + (size_t)r0 * (size_t)p->ldc * es);
	} else {
		/* column c of op(B): column c of B, or row c of B^T */
		size_t b_off = p->tb ? (size_t)r0 * (size_t)p->ldb : (size_t)r0;
		run(p, p->N, r1 - r0, p->A, p->B + b_off * es, p->C + (size_t)r0 * es);
	}
}

/* ---- narrow products: C with a few columns, op(A) = A^T ---------------------- */
/* x^T dy, the weight gradient of a layer of few outputs (a classifier's
 * last layer, a regression head), is a C (N, M) of a few long columns.
 * Both libraries run it as it is at a third to a half of the speed they
 * run its transpose, C^T (M, N) = B^T A, rows of N: over widths N from 64
 * to 4096 and batches K from 16 to 4096 at one thread, the transpose into
 * a scratch matrix and copied back took 0.28 to 0.41 of the time with
 * oneDNN's sgemm for M = 2 (up to 0.61 at the largest), 0.58 to 0.76 for
 * M = 10 (a 2048-wide layer at batch 512: 418 us against 234), and 0.4 to
 * 0.7 with OpenBLAS's dgemm for M from 1 to 10 from 2^20 multiply-adds on.
 * Not used where it measured no faster: f64 products below 2^20 (0.9 to
 * 1.1), batches under 32 (1.05 to 1.2), f32 products on OpenBLAS, M = 1 on
 * oneDNN, M past 10, and the other transposes. */
enum { NARROW_MAX_M = 10, NARROW_MIN_N = 64, NARROW_MIN_K = 32 };
#define NARROW_F64_MIN 1048576.0 /* 2^20 multiply-adds */

static bool narrow(tg_dtype dt, bool dnnl, bool ta, bool tb, int N, int M, int K, double size)
{
	if (!ta || tb || M > NARROW_MAX_M || N < NARROW_MIN_N || K < NARROW_MIN_K)
		return false;
	if (dt == TG_F64)
		return M >= 1 && size >= NARROW_F64_MIN;
	return dnnl && M >= 2; /* dnnl: from TG_SGEMM_DNNL_MIN on */
}

/* C (N, M) = T^T + beta C, T (M, N) rows of N: a few rows read side by
 * side, C's rows written whole. */
#define ADD_TRANSPOSED(name, T)                                                      	static void name(const T *restrict X, int N, int M, double beta, T *restrict C, 			 int ldc)                                                    	{                                                                            		for (int i = 0; i < N; i++) {                                        			T *c = C + (size_t)i * (size_t)ldc;                          			if (beta == 0)                                               				for (int j = 0; j < M; j++)                          					c[j] = X[(size_t)j * (size_t)N + (size_t)i]; 			else                                                         				for (int j = 0; j < M; j++)                          					c[j] += X[(size_t)j * (size_t)N + (size_t)i]; 		}                                                                    	}
ADD_TRANSPOSED(add_transposed_f64, double)
ADD_TRANSPOSED(add_transposed_f32, float)

/* Each thread's scratch matrix for the narrow products, kept for the next
 * one (a training step makes the same products each time: no allocation
 * once the first step has made it) and freed when the thread ends. */
typedef struct scratch {
	void *p;
	size_t size;
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_keyed;

static void scratch_free(void *arg)
{
	scratch *s = arg;
	free(s->p);
	free(s);
}

static void scratch_init(void)
{
	scratch_keyed = pthread_key_create(&scratch_key, scratch_free) == 0;
}

/* bytes of this thread's scratch, or NULL when no memory can be had. */
static void *scratch_of(size_t bytes)
{
	pthread_once(&scratch_once, scratch_init);
	if (!scratch_keyed)
		return NULL;
	scratch *s = pthread_getspecific(scratch_key);
	if (!s) {
		if (!(s = calloc(1, sizeof *s)))
			return NULL;
		if (pthread_setspecific(scratch_key, s)) {
			free(s);
			return NULL;
		}
	}
	if (s->size < bytes) {
		free(s->p);
		s->p = malloc(bytes);
		s->size = s->p ? bytes : 0;
	}
	return s->p;
}

/* The narrow product through its transpose; false (nothing written) when
 * the scratch matrix cannot be had, for the caller to run it as it is. */
static bool narrow_product(const tg_ctx *ctx, tg_dtype dt, int N, int M, int K, const void *A,
			   int lda, const void *B, int ldb, double beta, void *C, int ldc)
{
	void *X = scratch_of((size_t)N * (size_t)M * tg_dtype_size(dt));
	if (!X)
		return false;
	/* C^T = op(B)^T op(A)^T = B^T A: B is (K, M), A is (K, N) */
	tg_gemm(ctx, dt, true, false, M, N, K, B, ldb, A, lda, 0, X, N);
	if (dt == TG_F64)
		add_transposed_f64(X, N, M, beta, C, ldc);
	else
		add_transposed_f32(X, N, M, beta, C, ldc);
	return true;
}

/* ---- small products: a loop in place of the BLAS call ------------------------ */
/* Below TG_GEMM_SMALL_MAX multiply-adds a BLAS call costs more than its
 * arithmetic: a batch of 65536 products of 2x2 by 2x2 spent 65% of its
 * time in OpenBLAS's entry, buffer allocation and locks. These loops run
 * each element of C as sum_k op(A)_ik op(B)_kj in order of k, in the
 * dtype (f32 as OpenBLAS sums it), then C = that + beta C, C unread when
 * beta is 0. A row of C is accumulated side by side across its columns
 * (vectors of them where op(B)'s rows are contiguous), so every transpose
 * gives the same bits, and an item's bits do not depend on the thread or
 * the batch it runs in. A row is taken in blocks of SMALL_COLS columns,
 * each of a constant width, so that its sums stay in registers. */
/* SMALL_KM: the most elements op(B) of a small product has */
enum { SMALL_COLS = 8, SMALL_KM = (int)TG_GEMM_SMALL_MAX };

/* One item's rows of op(A) (rows, K) @ B (K, n) into C: element (i,k) of
 * op(A) at a[i*ai + k*ak], (k,j) of B at b[k*bk + j], rows of C ldc apart;
 * rows in pairs, for twice the independent sums. */
#define SMALL_ITEM(T, n, a, b, bk, c)                                                 \
	do {                                                                           \
		int i = 0;                                                             \
		for (; i + 1 < rows; i += 2) {                                         \
			T acc0[n], acc1[n];                                            \
			for (int j = 0; j < (n); j++)                                  \
				acc0[j] = acc1[j] = 0;                                 \
			for (int k = 0; k < K; k++) {                                  \
				const T x0 = (a)[i * ai + k * ak];                     \
				const T x1 = (a)[(i + 1) * ai + k * ak];               \
				const T *bkj = (b) + k * (bk);                         \
				for (int j = 0; j < (n); j++) {                        \
					acc0[j] += x0 * bkj[j];                        \
					acc1[j] += x1 * bkj[j];                        \
				}                                                      \
			}                                                              \
			SMALL_STORE((c) + i * ldc, acc0, n);                           \
			SMALL_STORE((c) + (i + 1) * ldc, acc1, n);                     \
		}                                                                      \
		if (i < rows) {                                                        \
			T acc0[n];                                                     \
			for (int j = 0; j < (n); j++)                                  \
				acc0[j] = 0;                                           \
			for (int k = 0; k < K; k++) {                                  \
				const T x0 = (a)[i * ai + k * ak];                     \
				const T *bkj = (b) + k * (bk);                         \
				for (int j = 0; j < (n); j++)                          \
					acc0[j] += x0 * bkj[j];                        \
			}                                                              \
			SMALL_STORE((c) + i * ldc, acc0, n);                           \
		}                                                                      \
	} while (0)

/* a row of C: the sums acc, plus C's own values where beta */
#define SMALL_STORE(ci, acc, n)                                                       \
	do {                                                                           \
		if (beta)                                                              \
			for (int j = 0; j < (n); j++)                                  \
				(ci)[j] += (acc)[j];                                   \
		else                                                                   \
			for (int j = 0; j < (n); j++)                                  \
				(ci)[j] = (acc)[j];                                    \
	} while (0)

/* Items t < count, item t's A, B and C sa, sb and sc elements past item
 * t-1's; op(B)'s element (k,j) at B[k*bk + j*bj]. Where op(B)'s rows are
 * not contiguous (trans), each item's op(B) is first copied into rows of
 * its own. C's columns go in blocks of SMALL_COLS, each of a constant
 * width. */
#define SMALL_PRODUCTS(name, T, trans)                                                \
	static TG_HOT_LOOP void name(int rows, int cols, int K, const T *A, ptrdiff_t ai,      \
				     ptrdiff_t ak, const T *B, ptrdiff_t bk, ptrdiff_t bj,    \
				     bool beta, T *C, ptrdiff_t ldc, int64_t count,           \
				     ptrdiff_t sa, ptrdiff_t sb, ptrdiff_t sc)                \
	{                                                                              \
		T rowsof[(trans) ? SMALL_KM : 1];                                      \
		for (int64_t t = 0; t < count; t++) {                                  \
			const T *a = A + t * sa, *b = B + t * sb;                      \
			T *c = C + t * sc;                                             \
			ptrdiff_t kb = bk;                                             \
			if (trans) {                                                   \
				for (int k = 0; k < K; k++)                            \
					for (int j = 0; j < cols; j++)                 \
						rowsof[k * cols + j] = b[k * bk + j * bj]; \
				b = rowsof;                                            \
				kb = cols;                                             \
			}                                                              \
			for (int j0 = 0; j0 < cols; j0 += SMALL_COLS) {                \
				const T *bj0 = b + j0;                                 \
				T *cj0 = c + j0;                                       \
				switch (cols - j0 < SMALL_COLS ? cols - j0 : SMALL_COLS) { \
				case 1: SMALL_ITEM(T, 1, a, bj0, kb, cj0); break;      \
				case 2: SMALL_ITEM(T, 2, a, bj0, kb, cj0); break;      \
				case 3: SMALL_ITEM(T, 3, a, bj0, kb, cj0); break;      \
				case 4: SMALL_ITEM(T, 4, a, bj0, kb, cj0); break;      \
				case 5: SMALL_ITEM(T, 5, a, bj0, kb, cj0); break;      \
				case 6: SMALL_ITEM(T, 6, a, bj0, kb, cj0); break;      \
				case 7: SMALL_ITEM(T, 7, a, bj0, kb, cj0); break;      \
				case 8: SMALL_ITEM(T, 8, a, bj0, kb, cj0); break;      \
				}                                                      \
			}                                                              \
		}                                                                      \
	}
SMALL_PRODUCTS(small_f32, float, false)
SMALL_PRODUCTS(small_f32_bt, float, true)
SMALL_PRODUCTS(small_f64, double, false)
SMALL_PRODUCTS(small_f64_bt, double, true)

void tg_gemm_small(tg_dtype dt, bool ta, bool tb, int N, int M, int K, const void *A, int lda,
		   const void *B, int ldb, double beta, void *C, int ldc, int64_t count,
		   int64_t sa, int64_t sb, int64_t sc)
{
	const ptrdiff_t ai = ta ? 1 : lda, ak = ta ? lda : 1;
	const ptrdiff_t bk = tb ? 1 : ldb, bj = tb ? ldb : 1;
	const bool add = beta != 0;
	if (dt == TG_F64) {
		if (tb)
			small_f64_bt(N, M, K, A, ai, ak, B, bk, bj, add, C, ldc, count, sa, sb, sc);
		else
			small_f64(N, M, K, A, ai, ak, B, bk, bj, add, C, ldc, count, sa, sb, sc);
	} else {
		if (tb)
			small_f32_bt(N, M, K, A, ai, ak, B, bk, bj, add, C, ldc, count, sa, sb, sc);
		else
			small_f32(N, M, K, A, ai, ak, B, bk, bj, add, C, ldc, count, sa, sb, sc);
	}
}

void tg_gemm(const tg_ctx *ctx, tg_dtype dt, bool ta, bool tb, int N, int M, int K,
	     const void *A, int lda, const void *B, int ldb, double beta, void *C, int ldc)
{
	if (tg_gemm_small_fits(N, M, K)) {
		tg_gemm_small(dt, ta, tb, N, M, K, A, lda, B, ldb, beta, C, ldc, 1, 0, 0, 0);
		return;
	}
	if (openblas_get_num_threads() != 1)
		openblas_set_num_threads(1);
	/* cutting rows duplicates op(B)'s packing (K x M), columns op(A)'s (N x K) */
	const bool rows = N >= M;
	const double size = (double)N * (double)M * (double)K;
	const bool dnnl = dt == TG_F32 && size >= TG_SGEMM_DNNL_MIN && tg_sgemm_dnnl(ctx);
	if (narrow(dt, dnnl, ta, tb, N, M, K, size) &&
	    narrow_product(ctx, dt, N, M, K, A, lda, B, ldb, beta, C, ldc))
		return;
	const int t = ctx ? ctx->threads : 1, parts = (rows ? N : M) / BAND_ALIGN;
	if (t < 2 || parts < 2 || size < TG_GEMM_SPLIT_MIN) {
		gemm1(dt, dnnl, ta, tb, N, M, K, A, lda, B, ldb, beta, C, ldc);
		return;
	}
	product p = { .dt = dt, .ta = ta, .tb = tb, .rows = rows, .dnnl = dnnl, .N = N, .M = M,
		      .K = K, .lda = lda, .ldb = ldb, .ldc = ldc, .parts = parts < t ? parts : t,
		      .A = A, .B = B, .C = C, .beta = beta };
	tg_parallel_for(ctx, (size_t)p.parts, 1, 1, run_parts, &p);
}
