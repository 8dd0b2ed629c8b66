/*
 * demo.h - what the demos share: their command line, their opening (a
 * context with a thread count the machine has), the data in demos/data, a
 * clock, the output folder the experiments write their CSV files,
 * gnuplot scripts and pictures to, and the end every main returns through
 * (demo_end: results lost on stdout are a failure).
 *
 * A command line is read one argument at a time; each option is tried in
 * turn and the first that matches consumes it (and its value):
 *
 *	demo_cli c = demo_cli_begin("two_layer", usage_text, argc, argv);
 *	int64_t iters = 10000, threads = 1;
 *	const char *dir = TG_FASHION_MNIST_DIR;
 *	while (demo_cli_next(&c)) {
 *		if (demo_int(&c, "--iters", 1, INT32_MAX, &iters) ||
 *		    demo_int(&c, "--threads", 1, DEMO_MAX_THREADS, &threads) ||
 *		    demo_str(&c, "--data", &dir))
 *			continue;
 *		demo_unknown(&c);
 *	}
 *	tg_ctx *ctx = demo_open("two_layer", 42, threads);
 *
 * Options take their value as "--iters 5" or "--iters=5". --help and -h
 * print the usage text to stdout and exit 0. A usage error (an unknown
 * option, a missing value, a value that is not a number or is out of its
 * range) prints one line naming the option and what is wrong, then the usage
 * text, to stderr, and exits 2; nothing has been allocated by then.
 */
#ifndef TG_DEMO_H
#define TG_DEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tapegrad.h"

/* The most --threads any demo accepts; above the machine's cores the count
 * is capped with a warning (demo_open). */
enum { DEMO_MAX_THREADS = 256 };

/* ---- the command line ------------------------------------------------------------- */

typedef struct demo_cli {
	const char *prog;  /* names the program in every message */
	const char *usage; /* the usage text, ending in a newline */
	int argc;
	char **argv;
	int i;             /* the argument being read */
} demo_cli;

demo_cli demo_cli_begin(const char *prog, const char *usage, int argc, char **argv);
/* Moves to the next argument; false after the last. Handles --help and -h. */
bool demo_cli_next(demo_cli *c);
/* The current argument, when it is `name`: true, and *out its value as an
 * integer in [lo, hi]. */
bool demo_int(demo_cli *c, const char *name, int64_t lo, int64_t hi, int64_t *out);
/* Likewise a finite real number in [lo, hi]. */
bool demo_real(demo_cli *c, const char *name, double lo, double hi, double *out);
/* Likewise any non-empty string (borrowed from argv). */
bool demo_str(demo_cli *c, const char *name, const char **out);
/* The current argument is the flag `name` (no value). */
bool demo_flag(demo_cli *c, const char *name);
/* The current argument is no option the program knows: a usage error. */
_Noreturn void demo_unknown(const demo_cli *c);
/* A usage error of the program's own: "prog: <message>", the usage, exit 2. */
_Noreturn void demo_usage_error(const demo_cli *c, const char *fmt, ...)
#ifdef __GNUC__
	__attribute__((format(printf, 2, 3)))
#endif
	;

/* ---- the opening -------------------------------------------------------------------- */

/* Cores this machine has online (at least 1). */
int demo_cores(void);
/* threads capped at the machine's cores; a request above them says so on
 * stderr ("prog: --threads 99: this machine has 2 cores; using 2"). */
int demo_threads(const char *prog, int64_t threads);
/* A context seeded with seed, running demo_threads(prog, threads) BLAS
 * threads. NULL (and a message) when it cannot be made. */
tg_ctx *demo_open(const char *prog, uint64_t seed, int64_t threads);

/* ---- data and time ------------------------------------------------------------------ */

/* demos/data/<name>: from the working directory, from beside the build
 * tree the program sits in (build/demos/), or under $TG_SOURCE_ROOT; the
 * first that can be read. When none can, "demos/data/<name>", so that the
 * loader's error names the path. Written to buf (size bytes). */
const char *demo_find_data(const char *name, char *buf, size_t size);
/* Seconds on a monotonic clock. */
double demo_now(void);

/* ---- the output folder and gnuplot -------------------------------------------------- */

/* The longest name of a file a demo writes into --out DIR
 * ("simple_convnet_filters.csv", "gate_max_tie.png"): demo_prove_out takes
 * only a DIR in which every such name, and its temporary, makes a path
 * shorter than PATH_MAX, so that no path is ever cut short. */
enum { DEMO_FILE_MAX = 64 };

/* The experiments' command line: [--out DIR] [--quick] [--help]. */
typedef struct demo_plot {
	const char *out; /* --out DIR: where the CSV, the gnuplot script and the PNG go */
	bool quick;      /* --quick: a short run, to check the pipeline */
} demo_plot;

/* Reads [--out DIR] [--quick] and proves DIR (demo_prove_out); `what` says
 * in a line what the program does, `quick` what --quick shortens ("3
 * epochs instead of 20"), both for --help. quick NULL: the run is short
 * already and there is no --quick. Default folder: experiments_out. */
demo_plot demo_plot_args(int argc, char **argv, const char *prog, const char *what,
			 const char *quick);
/* mkdir -p DIR: 0 when DIR is (now) a directory, else -1 with errno set. */
int demo_make_dir(const char *dir);
/* --out DIR is short enough for its files (DEMO_FILE_MAX), is made (with
 * its parents) and a file can be created in it: checked before the work
 * whose results go there. Else prints "prog: --out DIR: <reason>" and exits
 * 1; a DIR too long is refused before anything is made. */
void demo_prove_out(const char *prog, const char *dir);
/* DIR/file into buf (size bytes): 0, or -1 with errno ENAMETOOLONG when it
 * does not fit (never a path cut short). */
int demo_path(char *buf, size_t size, const char *dir, const char *file);
/* s as one word for sh: in single quotes, each quote inside escaped. The
 * caller frees it; NULL when out of memory. */
char *demo_shell_quote(const char *s);
/* A new file for DIR/file, making DIR (and its parents) first: a temporary
 * beside it (DIR/.file.tmp.<pid>) until demo_close. Prints the reason and
 * returns NULL on failure. */
FILE *demo_create(const char *dir, const char *file);
/* Closes f and puts it in the place of DIR/file; if anything failed to
 * write, removes it instead (DIR/file stays as it was), prints the reason
 * and returns -1. */
int demo_close(FILE *f, const char *dir, const char *file);
/* The gnuplot preamble every script starts with: a PNG terminal of w x h
 * pixels writing name.png (or the file named by the variable png, when it
 * is set before), CSV input with a header line. */
void demo_gp_begin(FILE *gp, const char *name, int w, int h);
/* Runs gnuplot on DIR/name.gp inside DIR, which makes DIR/name.png: drawn
 * into a temporary that replaces it when gnuplot succeeds. 1 made, 0
 * gnuplot is not installed (says so), -1 gnuplot failed. */
int demo_render(const char *dir, const char *name);

/* ---- the end ------------------------------------------------------------------------- */

/* How each demo's main returns: rc, or 1 when anything written to stdout
 * was lost (a full disk under a redirection), after saying so on stderr
 * ("prog: writing the results to stdout failed: No space left on device").
 * The figures on stdout are the run's result: losing them is no success. */
int demo_end(const char *prog, int rc);

#endif /* TG_DEMO_H */
