/*
 * blas_probe.c - chooses OPENBLAS_CORETYPE for the programs started after it.
 *
 * Debian 12's OpenBLAS runs its generic SSE3 kernels (Prescott) on CPUs
 * newer than it knows, silently. tg_blas_advice says which kernel the CPU
 * supports; this program runs the numerical self-check (tg_blas_selfcheck:
 * sgemm and dgemm against plain loops) under that kernel, in a child
 * process started with OPENBLAS_CORETYPE set (OpenBLAS reads it when it
 * loads), and prints the kernel's name on stdout when it passes; nothing
 * when the kernel OpenBLAS chose itself is already right or no better one
 * passes. What it found goes to stderr. A script uses it as
 *
 *	ct=$(blas_probe) && [ -n "$ct" ] && export OPENBLAS_CORETYPE=$ct
 *
 *	blas_probe            choose (exit 1 only if the current kernel fails)
 *	blas_probe --check    self-check the kernel this process runs; prints it
 */
#include "tapegrad.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs "self --check" with OPENBLAS_CORETYPE=core; true when the self-check
 * passed and OpenBLAS ran that kernel. */
static int check_under(const char *self, const char *core)
{
	char cmd[4096 + 128];
	snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE='%s' TG_BLAS_QUIET=1 '%s' --check", core,
		 self);
	FILE *p = popen(cmd, "r");
	if (!p)
		return 0;
	char ran[64] = "";
	if (!fgets(ran, sizeof ran, p))
		ran[0] = 0;
	ran[strcspn(ran, "\n")] = 0;
	int st = pclose(p);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 0;
	if (strcasecmp(ran, core)) {
		fprintf(stderr, "blas_probe: OPENBLAS_CORETYPE=%s gave the kernel %s\n", core, ran);
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	char msg[256];
	if (argc == 2 && !strcmp(argv[1], "--check")) {
		int rc = tg_blas_selfcheck(msg, sizeof msg);
		fprintf(stderr, "blas_probe: %s\n", msg);
		printf("%s\n", openblas_get_corename());
		return rc ? 1 : 0;
	}
	if (argc != 1) {
		fprintf(stderr, "usage: blas_probe [--check]\n");
		return 2;
	}
	const char *advice = tg_blas_advice();
	if (!advice) {
		int rc = tg_blas_selfcheck(msg, sizeof msg);
		fprintf(stderr, "blas_probe: %s suits this CPU; %s\n", tg_blas_info(), msg);
		return rc ? 1 : 0;
	}
	const char *current = openblas_get_corename();
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0 || strchr((self[n] = 0, self), '\'')) {
		fprintf(stderr, "blas_probe: cannot find its own path to rerun itself\n");
		return 0;
	}
	/* the kernel the CPU supports best first, then the AVX2 one */
	const char *try[2] = { advice, strcmp(advice, "Haswell") ? "Haswell" : NULL };
	for (int i = 0; i < 2 && try[i]; i++) {
		if (check_under(self, try[i])) {
			fprintf(stderr,
				"blas_probe: OpenBLAS ran the generic %s kernel; choosing "
				"OPENBLAS_CORETYPE=%s (its sgemm/dgemm self-check passed)\n",
				current, try[i]);
			printf("%s\n", try[i]);
			return 0;
		}
		fprintf(stderr, "blas_probe: the %s kernel failed its self-check\n", try[i]);
	}
	fprintf(stderr, "blas_probe: keeping the generic %s kernel: no better one passed\n",
		current);
	return 0;
}
