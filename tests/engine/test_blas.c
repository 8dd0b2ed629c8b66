/*
 * test_blas.c - the BLAS the products run on: sgemm and dgemm through
 * tg_matmul / tg_matmul_t against plain loops on odd shapes, the library's
 * own self-check, the advice rule and the one-time warning for a generic
 * OpenBLAS kernel on a CPU that could run a fast one (checked in a child
 * process started with OPENBLAS_CORETYPE=Prescott), and blas_probe's rules
 * (which kernels it times, which it chooses) on given names, CPU flags and
 * figures. No timings: every rule is a function of the flags it is given,
 * so the tables hold on any CPU.
 */
#include "test_util.h"
#include "../bench/blas_choose.h"
#include "internal.h" /* tg_gemm */

#include <cblas.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef TG_HAVE_DNNL
#include <omp.h>
#endif

enum { SEED = 77 };

static tg_tensor *random_matrix(tg_ctx *ctx, tg_dtype dt, int64_t r, int64_t c)
{
	tg_tensor *t = tg_empty(ctx, dt, SHAPE(r, c));
	void *p = tg_data_mut(t);
	for (size_t i = 0; p && i < (size_t)(r * c); i++) {
		double v = tg_random_uniform(ctx) * 2 - 1;
		if (dt == TG_F64)
			((double *)p)[i] = v;
		else
			((float *)p)[i] = (float)v;
	}
	return t;
}

/* C = op(A) op(B) on a context of the given threads against a long double
 * triple loop: each element within 4 K eps sum_k |a_ik b_kj|, the rounding
 * bound of any summation order. */
static void check_product(tg_dtype dt, int64_t N, int64_t K, int64_t M, bool ta, bool tb,
			  int threads)
{
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_set_threads(ctx, threads);
	tg_tensor *a = random_matrix(ctx, dt, ta ? K : N, ta ? N : K);
	tg_tensor *b = random_matrix(ctx, dt, tb ? M : K, tb ? K : M);
	tg_tensor *c = ta || tb ? tg_matmul_t(a, ta, b, tb) : tg_matmul(a, b);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_shape(c)[0], N);
	assert_int_equal(tg_shape(c)[1], M);
	double eps = dt == TG_F64 ? 0x1p-52 : 0x1p-23;
	for (int64_t i = 0; i < N; i++)
		for (int64_t j = 0; j < M; j++) {
			long double ref = 0, mag = 0;
			for (int64_t k = 0; k < K; k++) {
				long double x = tg_get(a, (size_t)(ta ? k * N + i : i * K + k));
				long double y = tg_get(b, (size_t)(tb ? j * K + k : k * M + j));
				ref += x * y;
				mag += fabsl(x * y);
			}
			double got = tg_get(c, (size_t)(i * M + j));
			if (!(fabsl(got - ref) <= 4 * K * eps * mag))
				fail_msg("%s %lldx%lldx%lld ta=%d tb=%d, %d threads: C[%lld,%lld] = "
					 "%.17g, loops give %.17Lg (bound %.3g)",
					 dt == TG_F64 ? "f64" : "f32", (long long)N, (long long)K, (long long)M, ta,
					 tb, threads, (long long)i, (long long)j, got, ref,
					 (double)(4 * K * eps * mag));
		}
	tg_ctx_free(ctx);
}

static void sgemm_and_dgemm_match_plain_loops_on_odd_shapes(void **state)
{
	(void)state;
	static const int64_t shapes[][3] = {
		{ 1, 1, 1 }, { 7, 13, 5 }, { 33, 65, 17 }, { 1, 300, 2 }, { 71, 3, 129 },
		/* 2^19 multiply-adds and more: f32 on oneDNN's sgemm where it runs */
		{ 130, 61, 67 }, { 17, 513, 77 },
	};
	for (int d = 0; d < 2; d++)
		for (size_t s = 0; s < LEN(shapes); s++)
			for (int f = 0; f < 4; f++)
				check_product(d ? TG_F64 : TG_F32, shapes[s][0], shapes[s][1],
					      shapes[s][2], f & 1, f & 2, 1);
}

/* A product of 2^18 multiply-adds or more is cut into one band of C's rows
 * (N >= M) or columns per thread (engine/gemm.c), each its own GEMM: on 2
 * and 3 threads every element is right. Bands of rows and of columns,
 * bands of unequal size (3 threads), a side long enough for two bands only
 * (40 columns: 16 + 24), one too short to cut (31), a long K, every
 * transpose. */
static void products_split_across_threads_match_plain_loops(void **state)
{
	(void)state;
	static const int64_t shapes[][3] = {
		{ 257, 67, 129 }, { 33, 300, 515 }, { 1000, 20, 17 }, { 17, 1000, 40 }, { 31, 1024, 31 },
	};
	for (int d = 0; d < 2; d++)
		for (size_t s = 0; s < LEN(shapes); s++)
			for (int f = 0; f < 4; f++)
				for (int t = 2; t <= 3; t++)
					check_product(d ? TG_F64 : TG_F32, shapes[s][0], shapes[s][1],
						      shapes[s][2], f & 1, f & 2, t);
}

/* A product with a few columns whose A is read transposed (x^T dy, the
 * weight gradient of a layer of few outputs) runs as its transpose into a
 * scratch matrix, copied back (engine/gemm.c, narrow products): from 1 to
 * 11 columns (11: one past the rule), odd sizes on both sides of 2^19 and
 * 2^20 multiply-adds and of the rule's least N and K, at 1, 2 and 3
 * threads, f32 and f64. */
static void narrow_weight_gradients_match_plain_loops(void **state)
{
	(void)state;
	static const int64_t shapes[][3] = {
		{ 2049, 257, 1 }, { 4099, 257, 1 }, { 1031, 263, 2 }, { 717, 251, 3 },
		{ 301, 199, 10 }, { 521, 211, 10 }, { 129, 410, 10 }, { 301, 199, 11 },
		{ 63, 1031, 10 }, { 1000, 40, 10 }, { 5003, 31, 10 },
	};
	for (int d = 0; d < 2; d++)
		for (size_t s = 0; s < LEN(shapes); s++)
			for (int t = 1; t <= 3; t++)
				check_product(d ? TG_F64 : TG_F32, shapes[s][0], shapes[s][1],
					      shapes[s][2], true, false, t);
}

/* tg_gemm itself on a narrow product inside larger matrices (lda, ldb and
 * ldc past the rows' lengths): beta 1 adds to C, beta 0 never reads it (NaN
 * there does not come through), and the columns of C past M are left as
 * they were. */
static void narrow_products_keep_beta_and_leading_dimensions(void **state)
{
	(void)state;
	enum { N = 700, K = 300, M = 6, LDA = N + 5, LDB = M + 3, LDC = M + 4 };
	tg_ctx *ctx = tg_ctx_new(SEED);
	for (int d = 0; d < 2; d++)
		for (int beta = 0; beta <= 1; beta++) {
			tg_dtype dt = d ? TG_F64 : TG_F32;
			double eps = d ? 0x1p-52 : 0x1p-23;
			tg_tensor *a = random_matrix(ctx, dt, K, LDA);
			tg_tensor *b = random_matrix(ctx, dt, K, LDB);
			tg_tensor *c = random_matrix(ctx, dt, N, LDC);
			assert_ctx_ok(ctx);
			double *c0 = malloc((size_t)N * LDC * sizeof *c0);
			for (size_t i = 0; i < (size_t)N * LDC; i++) {
				if (!beta && i % LDC < M) {
					if (d)
						((double *)tg_data_mut(c))[i] = NAN;
					else
						((float *)tg_data_mut(c))[i] = NAN;
				}
				c0[i] = tg_get(c, i);
			}
			tg_gemm(ctx, dt, true, false, N, M, K, tg_data(a), LDA, tg_data(b), LDB, beta,
				tg_data_mut(c), LDC);
			for (int64_t i = 0; i < N; i++)
				for (int64_t j = 0; j < LDC; j++) {
					double got = tg_get(c, (size_t)(i * LDC + j));
					if (j >= M) {
						if (memcmp(&got, &c0[i * LDC + j], sizeof got))
							fail_msg("%s beta %d: C[%lld,%lld] past M changed "
								 "to %.17g from %.17g",
								 d ? "f64" : "f32", beta, (long long)i,
								 (long long)j, got, c0[i * LDC + j]);
						continue;
					}
					long double ref = beta ? c0[i * LDC + j] : 0, mag = fabsl(ref);
					for (int64_t k = 0; k < K; k++) {
						long double x = tg_get(a, (size_t)(k * LDA + i));
						long double y = tg_get(b, (size_t)(k * LDB + j));
						ref += x * y;
						mag += fabsl(x * y);
					}
					if (!(fabsl(got - ref) <= 4 * (K + 1) * eps * mag))
						fail_msg("%s beta %d: C[%lld,%lld] = %.17g, loops give "
							 "%.17Lg",
							 d ? "f64" : "f32", beta, (long long)i,
							 (long long)j, got, ref);
				}
			free(c0);
		}
	tg_ctx_free(ctx);
}

static void the_library_self_check_passes(void **state)
{
	(void)state;
	char msg[256] = "";
	int rc = tg_blas_selfcheck(msg, sizeof msg);
	if (rc)
		fail_msg("tg_blas_selfcheck: %s", msg);
	assert_non_null(strstr(msg, "agree"));
}

static void blas_info_names_the_library_and_kernel(void **state)
{
	(void)state;
	const char *info = tg_blas_info();
	assert_non_null(strstr(info, "OpenBLAS"));
	assert_non_null(strstr(info, "core"));
	assert_ptr_equal(tg_blas_info(), info);
}

/* The f32 product of a context made with TG_SGEMM=openblas is OpenBLAS's
 * own, bit for bit; one made without it says in tg_blas_info which sgemm
 * its large products run on, and the caller's OpenMP thread count is the
 * same after them. */
static void tg_sgemm_openblas_keeps_f32_products_on_openblas(void **state)
{
	(void)state;
	enum { N = 96, K = 130, M = 70 }; /* 873 600 multiply-adds */
	float want[N * M];
	for (int mode = 0; mode < 2; mode++) {
		tg_ctx *ctx = mode ? ctx_made_with("TG_SGEMM", "openblas", SEED) : tg_ctx_new(SEED);
		tg_tensor *a = random_matrix(ctx, TG_F32, N, K);
		tg_tensor *b = random_matrix(ctx, TG_F32, K, M);
		tg_tensor *c = tg_matmul(a, b);
		assert_ctx_ok(ctx);
		if (mode) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, M, K, 1.0f,
				    tg_data(a), K, tg_data(b), M, 0.0f, want, M);
			assert_memory_equal(tg_data(c), want, sizeof want);
		}
		tg_ctx_free(ctx);
	}
#ifdef TG_HAVE_DNNL
	assert_non_null(strstr(tg_blas_info(), "f32 products from 2^19 multiply-adds: oneDNN"));
	omp_set_num_threads(3);
	tg_ctx *ctx = tg_ctx_new(SEED);
	tg_matmul(random_matrix(ctx, TG_F32, N, K), random_matrix(ctx, TG_F32, K, M));
	assert_ctx_ok(ctx);
	assert_int_equal(omp_get_max_threads(), 3);
	tg_ctx_free(ctx);
	omp_set_num_threads(1);
#endif
}

static void a_generic_or_avx2_kernel_gets_advice_where_a_wider_one_runs(void **state)
{
	(void)state;
	static const struct {
		const char *core;
		bool avx2, avx512;
		const char *want;
	} rows[] = {
		{ "Prescott", true, true, "SkylakeX" }, { "Prescott", true, false, "Haswell" },
		{ "Core2", true, false, "Haswell" },	{ "Atom", true, true, "SkylakeX" },
		{ "Sandybridge", true, false, "Haswell" }, { "Prescott", false, false, NULL },
		{ "SkylakeX", true, true, NULL },	{ "Cooperlake", true, true, NULL },
		{ "skylakex", true, true, NULL },	{ "SapphireRapids", true, true, NULL },
		{ "Zen", true, false, NULL },		{ "Haswell", true, false, NULL },
		{ "Excavator", true, false, NULL },	{ NULL, true, true, NULL },
		/* an AVX2 kernel on an AVX-512 CPU: SkylakeX is the one to time */
		{ "Haswell", true, true, "SkylakeX" },	{ "Zen", true, true, "SkylakeX" },
		{ "Excavator", true, true, "SkylakeX" }, { "haswell", true, true, "SkylakeX" },
	};
	for (size_t i = 0; i < LEN(rows); i++) {
		const char *got = tg_blas_advice_for(rows[i].core, rows[i].avx2, rows[i].avx512);
		if (!got != !rows[i].want || (got && strcmp(got, rows[i].want)))
			fail_msg("tg_blas_advice_for(%s, avx2 %d, avx512 %d) = %s, expected %s",
				 rows[i].core ? rows[i].core : "NULL", rows[i].avx2, rows[i].avx512,
				 got ? got : "NULL", rows[i].want ? rows[i].want : "NULL");
	}
}

static void the_probe_times_the_current_kernel_and_one_of_each_wider_class(void **state)
{
	(void)state;
	static const struct {
		const char *core;
		bool avx2, avx512;
		const char *want[3];
	} rows[] = {
		{ "Haswell", true, true, { "Haswell", "SkylakeX" } },
		{ "Zen", true, true, { "Zen", "SkylakeX" } },
		{ "Prescott", true, true, { "Prescott", "SkylakeX", "Haswell" } },
		{ "Prescott", true, false, { "Prescott", "Haswell" } },
		{ "Cooperlake", true, true, { "Cooperlake", "Haswell" } },
		{ "SkylakeX", true, true, { "SkylakeX", "Haswell" } },
		{ "Zen", true, false, { "Zen" } },
		{ "Haswell", true, false, { "Haswell" } },
		{ "Prescott", false, false, { "Prescott" } },
	};
	for (size_t i = 0; i < LEN(rows); i++) {
		const char *got[3] = { 0 };
		int n = blas_candidates(rows[i].core, rows[i].avx2, rows[i].avx512, got);
		int want_n = 0;
		while (want_n < 3 && rows[i].want[want_n])
			want_n++;
		bool same = n == want_n;
		for (int j = 0; same && j < n; j++)
			same = !strcmp(got[j], rows[i].want[j]);
		if (!same)
			fail_msg("blas_candidates(%s, avx2 %d, avx512 %d) = %d: %s %s %s, expected %d: "
				 "%s %s %s",
				 rows[i].core, rows[i].avx2, rows[i].avx512, n, n > 0 ? got[0] : "",
				 n > 1 ? got[1] : "", n > 2 ? got[2] : "", want_n,
				 rows[i].want[0] ? rows[i].want[0] : "",
				 rows[i].want[1] ? rows[i].want[1] : "",
				 rows[i].want[2] ? rows[i].want[2] : "");
	}
}

/* blas_choose on figures given in GFLOP/s (sgemm, dgemm), runs[0] the
 * kernel OpenBLAS chose; margin 1.1 as blas_probe uses it */
static void the_probe_chooses_the_fastest_passing_kernel_by_a_clear_margin(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		int n;
		blas_run runs[3];
		int want;
	} rows[] = {
		{ "SkylakeX twice Haswell's speed (an AVX-512 EPYC)", 2,
		  { { "Haswell", true, 108, 52 }, { "SkylakeX", true, 207, 100 } }, 1 },
		{ "SkylakeX 5% faster (AVX-512 in halves)", 2,
		  { { "Haswell", true, 100, 50 }, { "SkylakeX", true, 105, 52.5 } }, 0 },
		{ "SkylakeX 8% faster: within the margin", 2,
		  { { "Haswell", true, 100, 50 }, { "SkylakeX", true, 108, 54 } }, 0 },
		{ "SkylakeX 12% faster: past the margin", 2,
		  { { "Haswell", true, 100, 50 }, { "SkylakeX", true, 112, 56 } }, 1 },
		{ "sgemm twice as fast, dgemm 0.8: geometric mean 1.26", 2,
		  { { "Haswell", true, 100, 50 }, { "SkylakeX", true, 200, 40 } }, 1 },
		{ "sgemm 1.3, dgemm 0.8: geometric mean 1.02", 2,
		  { { "Haswell", true, 100, 50 }, { "SkylakeX", true, 130, 40 } }, 0 },
		{ "a slower candidate", 2,
		  { { "Cooperlake", true, 150, 50 }, { "Haswell", true, 95, 27 } }, 0 },
		{ "the AVX2 kernel faster than the AVX-512 one OpenBLAS chose", 2,
		  { { "SkylakeX", true, 90, 45 }, { "Haswell", true, 110, 55 } }, 1 },
		{ "generic current: the fastest of three", 3,
		  { { "Prescott", true, 40, 20 }, { "SkylakeX", true, 200, 100 },
		    { "Haswell", true, 100, 50 } }, 1 },
		{ "the fastest failed its self-check: the next one", 3,
		  { { "Prescott", true, 40, 20 }, { "SkylakeX", false, 200, 100 },
		    { "Haswell", true, 100, 50 } }, 2 },
		{ "the current kernel failed: any passing one, even slower", 2,
		  { { "Haswell", false, 100, 50 }, { "SkylakeX", true, 90, 45 } }, 1 },
		{ "a run without figures does not count", 2,
		  { { "Haswell", true, 100, 50 }, { "SkylakeX", true, 0, 0 } }, 0 },
		{ "nothing passed", 2,
		  { { "Haswell", false, 100, 50 }, { "SkylakeX", false, 200, 100 } }, -1 },
		{ "the current kernel alone", 1, { { "Zen", true, 100, 50 } }, 0 },
	};
	for (size_t i = 0; i < LEN(rows); i++) {
		int got = blas_choose(rows[i].runs, rows[i].n, 1.1);
		if (got != rows[i].want)
			fail_msg("%s: blas_choose = %d (%s), expected %d (%s)", rows[i].what, got,
				 got >= 0 ? rows[i].runs[got].name : "none", rows[i].want,
				 rows[i].want >= 0 ? rows[i].runs[rows[i].want].name : "none");
	}
}

/* Runs this program as "--child" (two contexts, then tg_blas_info on stdout)
 * with the environment prefix env; stdout and stderr into out. */
static void run_child(const char *env, char *out, size_t size)
{
	char self[1024], cmd[1400];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	assert_true(n > 0);
	self[n] = 0;
	snprintf(cmd, sizeof cmd, "env -u TG_BLAS_QUIET %s '%s' --child 2>&1", env, self);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t got = fread(out, 1, size - 1, p);
	out[got] = 0;
	assert_int_equal(pclose(p), 0);
}

static int count(const char *s, const char *what)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

static void a_generic_kernel_is_warned_about_once(void **state)
{
	(void)state;
	char out[4096];
	run_child("OPENBLAS_CORETYPE=Prescott", out, sizeof out);
	if (!strstr(out, "Prescott"))
		skip(); /* an OpenBLAS that ignores OPENBLAS_CORETYPE: nothing to see */
	__builtin_cpu_init();
	bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
	const char *want = avx512 ? "OPENBLAS_CORETYPE=SkylakeX" : "OPENBLAS_CORETYPE=Haswell";
	int warnings = count(out, "tapegrad: OpenBLAS runs its generic Prescott kernel");
	if (warnings != (avx2 ? 1 : 0) || (avx2 && !strstr(out, want)))
		fail_msg("with OPENBLAS_CORETYPE=Prescott (avx2 %d, avx512 %d) the child said:\n%s",
			 avx2, avx512, out);
	/* quiet when asked, and when the kernel suits the CPU */
	run_child("OPENBLAS_CORETYPE=Prescott TG_BLAS_QUIET=1", out, sizeof out);
	if (strstr(out, "tapegrad:"))
		fail_msg("with TG_BLAS_QUIET=1 the child said:\n%s", out);
	if (avx2) {
		run_child("OPENBLAS_CORETYPE=Haswell", out, sizeof out);
		if (strstr(out, "tapegrad:") || !strstr(out, "Haswell"))
			fail_msg("with OPENBLAS_CORETYPE=Haswell the child said:\n%s", out);
	}
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--child")) {
		tg_ctx *a = tg_ctx_new(1), *b = tg_ctx_new(2);
		printf("%s\n", tg_blas_info());
		tg_ctx_free(a);
		tg_ctx_free(b);
		return 0;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sgemm_and_dgemm_match_plain_loops_on_odd_shapes),
	    cmocka_unit_test(products_split_across_threads_match_plain_loops),
	    cmocka_unit_test(narrow_weight_gradients_match_plain_loops),
	    cmocka_unit_test(narrow_products_keep_beta_and_leading_dimensions),
	    cmocka_unit_test(the_library_self_check_passes),
	    cmocka_unit_test(blas_info_names_the_library_and_kernel),
	    cmocka_unit_test(tg_sgemm_openblas_keeps_f32_products_on_openblas),
	    cmocka_unit_test(a_generic_or_avx2_kernel_gets_advice_where_a_wider_one_runs),
	    cmocka_unit_test(the_probe_times_the_current_kernel_and_one_of_each_wider_class),
	    cmocka_unit_test(the_probe_chooses_the_fastest_passing_kernel_by_a_clear_margin),
	    cmocka_unit_test(a_generic_kernel_is_warned_about_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
