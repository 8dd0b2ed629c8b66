/*
 * blas_probe.c - chooses OPENBLAS_CORETYPE for the programs started after it.
 *
 * OpenBLAS picks a kernel when it loads and may pick a slow one: Debian
 * 12's 0.3.21 runs its generic SSE3 kernel (Prescott) on CPUs newer than it
 * knows, and an AVX2 kernel (Haswell) runs at half the speed of the
 * AVX-512 one (SkylakeX) on some AVX-512 CPUs but as fast on others (AMD
 * Zen 4 executes AVX-512 in two halves; older Intel parts slow their clock
 * for it). So this program measures rather than trusting a table: each
 * candidate (blas_candidates: the current kernel, SkylakeX on an AVX-512
 * CPU, Haswell on an AVX2 one) runs in a child process started with
 * OPENBLAS_CORETYPE set (OpenBLAS reads it when it loads), which runs the
 * numerical self-check (tg_blas_selfcheck: sgemm and dgemm against plain
 * loops) and times sgemm and dgemm at one thread on the shapes of the
 * products the demos run (the median of several repetitions; a few tenths
 * of a second per kernel, twice, in interleaved rounds). It prints the name of the kernel to set on
 * stdout when one passes and beats the current kernel by 10% or more on
 * the geometric mean of the figures (blas_choose), or when the current
 * kernel fails; nothing when the current kernel stays. The figures and the
 * choice go to stderr. A script uses it as
 *
 *	ct=$(blas_probe) && [ -n "$ct" ] && export OPENBLAS_CORETYPE=$ct
 *
 *	blas_probe            choose (exit 1 only if no kernel passes)
 *	blas_probe --check    self-check the kernel this process runs; prints it
 *	blas_probe --measure  self-check and time it; prints "kernel pass sgemm dgemm"
 */
#include "tapegrad.h"
#include "internal.h"
#include "blas_choose.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { REPS = 9 };
static const double MARGIN = 1.10;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* GFLOP/s of C = op(A) op(B), (N,K) @ (K,M), row-major as tg_matmul_t calls
 * it: the median of REPS runs after one to warm the caches; 0 without memory. */
static double time_gemm(bool f64, int N, int K, int M, bool ta, bool tb)
{
	size_t es = f64 ? sizeof(double) : sizeof(float);
	char *a = malloc((size_t)N * K * es), *b = malloc((size_t)K * M * es);
	char *c = malloc((size_t)N * M * es);
	double t[REPS + 1], gflops = 0;
	if (!a || !b || !c)
		goto out;
	for (size_t i = 0; i < (size_t)N * K; i++)
		if (f64)
			((double *)a)[i] = (double)(i % 7) / 7 - 0.5;
		else
			((float *)a)[i] = (float)(i % 7) / 7 - 0.5f;
	for (size_t i = 0; i < (size_t)K * M; i++)
		if (f64)
			((double *)b)[i] = (double)(i % 5) / 5 - 0.5;
		else
			((float *)b)[i] = (float)(i % 5) / 5 - 0.5f;
	enum CBLAS_TRANSPOSE fa = ta ? CblasTrans : CblasNoTrans;
	enum CBLAS_TRANSPOSE fb = tb ? CblasTrans : CblasNoTrans;
	int lda = ta ? N : K, ldb = tb ? K : M;
	for (int r = 0; r <= REPS; r++) {
		double t0 = now();
		if (f64)
			cblas_dgemm(CblasRowMajor, fa, fb, N, M, K, 1.0, (double *)a, lda,
				    (double *)b, ldb, 0.0, (double *)c, M);
		else
			cblas_sgemm(CblasRowMajor, fa, fb, N, M, K, 1.0f, (float *)a, lda,
				    (float *)b, ldb, 0.0f, (float *)c, M);
		t[r] = now() - t0;
	}
	qsort(t + 1, REPS, sizeof t[0], by_value);
	if (t[1 + REPS / 2] > 0)
		gflops = 2.0 * N * K * M / t[1 + REPS / 2] * 1e-9;
out:
	free(a);
	free(b);
	free(c);
	return gflops;
}

/* sgemm (f64 false) or dgemm speed: the geometric mean over the products of
 * a step of the MLP 784-256-128-10 (batch 128: the first layer's
 * forward, its dW = x^T dout and a dx = dout W^T) and of a convolution of
 * --net cnn (64 filters of 3x3x32 over 16 images of 14x14, through im2col). */
static double measure(bool f64)
{
	static const struct {
		int N, K, M;
		bool ta, tb;
	} shapes[] = {
		{ 128, 784, 256, false, false },
		{ 784, 128, 256, true, false },
		{ 128, 256, 784, false, true },
		{ 64, 288, 3136, false, false },
	};
	double log_sum = 0;
	int n = (int)(sizeof shapes / sizeof shapes[0]);
	for (int i = 0; i < n; i++) {
		double g = time_gemm(f64, shapes[i].N, shapes[i].K, shapes[i].M, shapes[i].ta,
				     shapes[i].tb);
		if (!(g > 0))
			return 0;
		log_sum += log(g);
	}
	return exp(log_sum / n);
}

/* Runs "self --measure" with OPENBLAS_CORETYPE=run->name and fills in the
 * rest of run: passed only when the self-check passed and OpenBLAS ran
 * that kernel. */
static void measure_under(const char *self, blas_run *run)
{
	char cmd[4096 + 128];
	snprintf(cmd, sizeof cmd,
		 "OPENBLAS_CORETYPE='%s' OPENBLAS_NUM_THREADS=1 TG_BLAS_QUIET=1 '%s' --measure",
		 run->name, self);
	run->passed = false;
	run->sgemm = run->dgemm = 0;
	FILE *p = popen(cmd, "r");
	if (!p)
		return;
	char ran[64] = "";
	int pass = 0;
	if (fscanf(p, "%63s %d %lf %lf", ran, &pass, &run->sgemm, &run->dgemm) != 4)
		pass = 0;
	int st = pclose(p);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || !pass)
		return;
	if (strcasecmp(ran, run->name)) {
		fprintf(stderr, "blas_probe: OPENBLAS_CORETYPE=%s gave the kernel %s\n", run->name,
			ran);
		return;
	}
	run->passed = true;
}

static const char usage[] =
	"usage: blas_probe [--check | --measure]\n"
	"  blas_probe            print the OPENBLAS_CORETYPE to set, nothing to keep the\n"
	"                        current kernel (exit 1 only if no kernel passes)\n"
	"  blas_probe --check    self-check the kernel this process runs; print it\n"
	"  blas_probe --measure  self-check and time it; print \"kernel pass sgemm dgemm\"\n";

static int probe(int argc, char **argv)
{
	char msg[256];
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc == 2 && (!strcmp(argv[1], "--check") || !strcmp(argv[1], "--measure"))) {
		int rc = tg_blas_selfcheck(msg, sizeof msg);
		if (!strcmp(argv[1], "--check")) {
			fprintf(stderr, "blas_probe: %s\n", msg);
			printf("%s\n", openblas_get_corename());
			return rc ? 1 : 0;
		}
		if (rc)
			fprintf(stderr, "blas_probe: %s\n", msg);
		openblas_set_num_threads(1);
		double s = rc ? 0 : measure(false), d = rc ? 0 : measure(true);
		printf("%s %d %.6g %.6g\n", openblas_get_corename(), !rc, s, d);
		return 0;
	}
	if (argc != 1) {
		fputs(usage, stderr);
		return 2;
	}
	const char *current = openblas_get_corename();
	const char *names[3];
	int n = blas_candidates(current, tg_cpu_has(false), tg_cpu_has(true), names);
	if (n == 1) { /* nothing to compare: the self-check alone */
		int rc = tg_blas_selfcheck(msg, sizeof msg);
		fprintf(stderr, "blas_probe: %s is the one kernel to try on this CPU; %s\n",
			tg_blas_info(), msg);
		return rc ? 1 : 0;
	}
	char self[4096];
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	if (len <= 0 || strchr((self[len] = 0, self), '\'')) {
		fprintf(stderr, "blas_probe: cannot find its own path to rerun itself\n");
		return 0;
	}
	/* two rounds, the second in reverse order, each kernel keeping its
	 * faster round: on a shared machine the load slows a run, never speeds
	 * it, and a burst of it falls on one round of a kernel, not both */
	blas_run runs[3];
	for (int i = 0; i < n; i++)
		runs[i] = (blas_run){ .name = names[i], .passed = true };
	for (int r = 0; r < 2 * n; r++) {
		blas_run *run = &runs[r < n ? r : 2 * n - 1 - r], got = { .name = run->name };
		measure_under(self, &got);
		run->passed = run->passed && got.passed;
		if (got.sgemm * got.dgemm > run->sgemm * run->dgemm) {
			run->sgemm = got.sgemm;
			run->dgemm = got.dgemm;
		}
	}
	/* what was measured, in one line: "SkylakeX 205/98, Haswell 108/52 (current)" */
	char line[512] = "";
	size_t used = 0;
	for (int i = 0; i < n && used < sizeof line; i++) {
		if (runs[i].passed)
			used += (size_t)snprintf(line + used, sizeof line - used, "%s%s %.0f/%.0f%s",
						 i ? ", " : "", runs[i].name, runs[i].sgemm,
						 runs[i].dgemm, i ? "" : " (current)");
		else
			used += (size_t)snprintf(line + used, sizeof line - used,
						 "%s%s failed its self-check%s", i ? ", " : "",
						 runs[i].name, i ? "" : " (current)");
	}
	fprintf(stderr, "blas_probe: GFLOP/s sgemm/dgemm at 1 thread: %s\n", line);
	int k = blas_choose(runs, n, MARGIN);
	if (k < 0) {
		fprintf(stderr, "blas_probe: no kernel passed its self-check\n");
		return 1;
	}
	if (k == 0) {
		fprintf(stderr, "blas_probe: keeping %s: no kernel is %.0f%% faster\n", current,
			(MARGIN - 1) * 100);
		return 0;
	}
	if (runs[0].passed)
		fprintf(stderr,
			"blas_probe: %s %.0f GFLOP/s sgemm, %.0f dgemm against %s %.0f, %.0f: "
			"chose %s\n",
			runs[k].name, runs[k].sgemm, runs[k].dgemm, current, runs[0].sgemm,
			runs[0].dgemm, runs[k].name);
	else
		fprintf(stderr, "blas_probe: %s failed its self-check: chose %s\n", current,
			runs[k].name);
	printf("%s\n", runs[k].name);
	return 0;
}

int main(int argc, char **argv)
{
	int rc = probe(argc, argv);
	/* stdout is the answer a script reads: one lost must not pass for
	 * "keep the current kernel" */
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "blas_probe: writing to stdout: %s\n", strerror(errno));
		return 1;
	}
	return rc;
}
