/*
 * demo.c - what the demos share (demo.h): the command line, the opening, the
 * data folder, the clock, the output folder with gnuplot, and the end (what
 * was written to stdout was written whole).
 */
#include "demo.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the command line ------------------------------------------------------------- */

demo_cli demo_cli_begin(const char *prog, const char *usage, int argc, char **argv)
{
	return (demo_cli){ .prog = prog, .usage = usage, .argc = argc, .argv = argv, .i = 0 };
}

void demo_usage_error(const demo_cli *c, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", c->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n\n%s", c->usage);
	exit(2);
}

void demo_unknown(const demo_cli *c)
{
	demo_usage_error(c, "unknown option '%s'", c->argv[c->i]);
}

bool demo_cli_next(demo_cli *c)
{
	if (++c->i >= c->argc)
		return false;
	const char *a = c->argv[c->i];
	if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
		fputs(c->usage, stdout);
		if (fflush(stdout) || ferror(stdout)) {
			fprintf(stderr, "%s: writing --help to stdout failed: %s\n", c->prog,
				strerror(errno));
			exit(1);
		}
		exit(0);
	}
	return true;
}

/* The current argument is `name` ("name V" or "name=V"): true, with *value
 * V; a missing or empty value is a usage error. */
static bool match(demo_cli *c, const char *name, const char **value)
{
	const char *a = c->argv[c->i];
	size_t len = strlen(name);
	if (strncmp(a, name, len) != 0 || (a[len] != '\0' && a[len] != '='))
		return false;
	if (a[len] == '=') {
		*value = a + len + 1;
	} else if (c->i + 1 < c->argc) {
		*value = c->argv[++c->i];
	} else {
		demo_usage_error(c, "%s needs a value", name);
	}
	if (!**value)
		demo_usage_error(c, "%s needs a value, not an empty string", name);
	return true;
}

bool demo_int(demo_cli *c, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
	const char *v;
	if (!match(c, name, &v))
		return false;
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (end == v || *end || errno == ERANGE || x < lo || x > hi)
		demo_usage_error(c, "%s needs a whole number from %lld to %lld, not '%s'", name,
				 (long long)lo, (long long)hi, v);
	*out = x;
	return true;
}

bool demo_real(demo_cli *c, const char *name, double lo, double hi, double *out)
{
	const char *v;
	if (!match(c, name, &v))
		return false;
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (end == v || *end || errno == ERANGE || !isfinite(x) || x < lo || x > hi)
		demo_usage_error(c, "%s needs a number from %g to %g, not '%s'", name, lo, hi, v);
	*out = x;
	return true;
}

bool demo_str(demo_cli *c, const char *name, const char **out)
{
	return match(c, name, out);
}

bool demo_flag(demo_cli *c, const char *name)
{
	const char *a = c->argv[c->i];
	size_t len = strlen(name);
	if (strncmp(a, name, len) != 0)
		return false;
	if (a[len] == '=')
		demo_usage_error(c, "%s takes no value", name);
	return a[len] == '\0';
}

/* ---- the opening -------------------------------------------------------------------- */

int demo_cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > DEMO_MAX_THREADS ? DEMO_MAX_THREADS : (int)n;
}

int demo_threads(const char *prog, int64_t threads)
{
	int cores = demo_cores();
	if (threads < 1)
		threads = 1;
	if (threads > cores) {
		fprintf(stderr, "%s: --threads %lld: this machine has %d core%s; using %d\n", prog,
			(long long)threads, cores, cores == 1 ? "" : "s", cores);
		threads = cores;
	}
	return (int)threads;
}

tg_ctx *demo_open(const char *prog, uint64_t seed, int64_t threads)
{
	int n = demo_threads(prog, threads);
	tg_ctx *ctx = tg_ctx_new(seed);
	if (!ctx) {
		fprintf(stderr, "%s: out of memory for a context\n", prog);
		return NULL;
	}
	tg_set_threads(ctx, n);
	return ctx;
}

/* ---- data and time ------------------------------------------------------------------ */

const char *demo_find_data(const char *name, char *buf, size_t size)
{
	char dir[3][PATH_MAX] = { "." };
	ssize_t n = readlink("/proc/self/exe", dir[1], sizeof dir[1] - 16);
	char *slash = n > 0 ? (dir[1][n] = 0, strrchr(dir[1], '/')) : NULL;
	if (slash)
		strcpy(slash, "/../..");
	else
		dir[1][0] = 0;
	const char *root = getenv("TG_SOURCE_ROOT");
	snprintf(dir[2], sizeof dir[2], "%s", root ? root : "");
	for (int i = 0; i < 3; i++) {
		if (!dir[i][0])
			continue;
		int len = snprintf(buf, size, "%s/demos/data/%s", dir[i], name);
		if (len > 0 && (size_t)len < size && access(buf, R_OK) == 0)
			return buf;
	}
	snprintf(buf, size, "demos/data/%s", name);
	return buf;
}

double demo_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the output folder and gnuplot -------------------------------------------------- */

demo_plot demo_plot_args(int argc, char **argv, const char *prog, const char *what,
			 const char *quick)
{
	char usage[1024];
	snprintf(usage, sizeof usage,
		 "%s - %s\n"
		 "usage: %s [--out DIR]%s\n"
		 "  --out DIR  where the CSV, the gnuplot script and the PNG go\n"
		 "             (default experiments_out)\n"
		 "%s%s%s",
		 prog, what, prog, quick ? " [--quick]" : "",
		 quick ? "  --quick    a short run, to check that everything works: " : "",
		 quick ? quick : "", quick ? "\n" : "");
	demo_plot p = { .out = "experiments_out" };
	demo_cli c = demo_cli_begin(prog, usage, argc, argv);
	while (demo_cli_next(&c)) {
		if (demo_str(&c, "--out", &p.out))
			continue;
		if (quick && demo_flag(&c, "--quick")) {
			p.quick = true;
			continue;
		}
		demo_unknown(&c);
	}
	demo_prove_out(prog, p.out);
	return p;
}

int demo_make_dir(const char *dir)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0777) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0777) != 0 && errno != EEXIST)
		return -1;
	struct stat st;
	if (stat(buf, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/* The longest DIR whose files' paths all fit in PATH_MAX with their final
 * NUL: DIR/.<name>.tmp.<pid>, name up to DEMO_FILE_MAX, pid up to 20 digits. */
static const size_t dir_max = PATH_MAX - 1 - (sizeof "/." - 1) - DEMO_FILE_MAX -
			      (sizeof ".tmp." - 1) - 20;

void demo_prove_out(const char *prog, const char *dir)
{
	size_t len = strlen(dir);
	if (len > dir_max) {
		fprintf(stderr,
			"%s: --out %s: too long: %zu characters, and the paths of the files in it "
			"need it to have at most %zu\n",
			prog, dir, len, dir_max);
		exit(1);
	}
	if (demo_make_dir(dir) != 0) {
		fprintf(stderr, "%s: --out %s: cannot make the directory: %s\n", prog, dir,
			strerror(errno));
		exit(1);
	}
	char probe[PATH_MAX];
	int fd = -1;
	if (demo_path(probe, sizeof probe, dir, ".probe-XXXXXX") == 0)
		fd = mkstemp(probe);
	if (fd < 0) {
		fprintf(stderr, "%s: --out %s: cannot write in it: %s\n", prog, dir,
			strerror(errno));
		exit(1);
	}
	close(fd);
	unlink(probe);
}

int demo_path(char *buf, size_t size, const char *dir, const char *file)
{
	int n = snprintf(buf, size, "%s/%s", dir, file);
	if (n < 0 || (size_t)n >= size) {
		if (size)
			buf[0] = '\0';
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* DIR/.file.tmp.<pid>: where DIR/file is written until it is whole. The
 * name is this process's alone; one there already was left by a process of
 * the same number that is gone. 0, or -1 when the name does not fit. */
static int temp_name(char *buf, size_t size, const char *dir, const char *file)
{
	int n = snprintf(buf, size, "%s/.%s.tmp.%ld", dir, file, (long)getpid());
	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

FILE *demo_create(const char *dir, const char *file)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	if (demo_path(path, sizeof path, dir, file) != 0 ||
	    temp_name(tmp, sizeof tmp, dir, file) != 0) {
		fprintf(stderr, "cannot write %s/%s: %s\n", dir, file, strerror(errno));
		return NULL;
	}
	if (demo_make_dir(dir) != 0) {
		fprintf(stderr, "cannot make %s: %s\n", dir, strerror(errno));
		return NULL;
	}
	FILE *f = NULL;
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd >= 0 && !(f = fdopen(fd, "w"))) {
		int err = errno;
		close(fd);
		unlink(tmp);
		errno = err;
	}
	if (!f)
		fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
	return f;
}

int demo_close(FILE *f, const char *dir, const char *file)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	/* both fitted in demo_create */
	demo_path(path, sizeof path, dir, file);
	temp_name(tmp, sizeof tmp, dir, file);
	bool bad = ferror(f);
	int err = fflush(f) != 0 ? errno : 0; /* a full disk shows here, or below */
	if (fclose(f) != 0 && !err)
		err = errno;
	/* whole: in the place of the file; else gone, and the file as it was */
	if (!bad && !err && rename(tmp, path) != 0)
		err = errno;
	if (bad || err) {
		unlink(tmp);
		fprintf(stderr, "could not write %s: %s\n", path,
			err ? strerror(err) : "a write failed");
	}
	return bad || err ? -1 : 0;
}

void demo_gp_begin(FILE *gp, const char *name, int w, int h)
{
	fprintf(gp,
		"# %s.gp - draws %s.png from the CSV beside it: gnuplot %s.gp\n"
		"set terminal pngcairo size %d,%d font 'sans,10'\n"
		"if (!exists('png')) { png = '%s.png' }\n"
		"set output png\n"
		"set datafile separator ','\n"
		"set datafile columnheaders\n",
		name, name, name, w, h, name);
}

char *demo_shell_quote(const char *s)
{
	size_t n = 3;
	for (const char *p = s; *p; p++)
		n += *p == '\'' ? 4 : 1;
	char *out = malloc(n);
	if (!out)
		return NULL;
	size_t o = 0;
	out[o++] = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			memcpy(out + o, "'\\''", 4);
			o += 4;
		} else {
			out[o++] = *s;
		}
	}
	out[o++] = '\'';
	out[o] = '\0';
	return out;
}

int demo_render(const char *dir, const char *name)
{
	if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
		printf("gnuplot is not installed: %s/%s.csv and %s.gp are written; "
		       "install gnuplot-nox and run 'gnuplot %s.gp' in %s for the picture\n",
		       dir, name, name, name, dir);
		return 0;
	}
	/* the picture goes to a temporary (the script's png, set here) that
	 * takes the place of DIR/name.png when gnuplot has drawn it whole */
	char gp[DEMO_FILE_MAX + 8], file[DEMO_FILE_MAX + 8], set[DEMO_FILE_MAX + 64];
	char tmp[PATH_MAX], png[PATH_MAX];
	snprintf(gp, sizeof gp, "%s.gp", name);
	snprintf(file, sizeof file, "%s.png", name);
	if (strlen(name) + 4 > DEMO_FILE_MAX || demo_path(png, sizeof png, dir, file) != 0 ||
	    temp_name(tmp, sizeof tmp, dir, file) != 0) {
		fprintf(stderr, "could not write %s/%s.png: %s\n", dir, name,
			strerror(ENAMETOOLONG));
		return -1;
	}
	snprintf(set, sizeof set, "png = '%s'", strrchr(tmp, '/') + 1);
	char *qdir = demo_shell_quote(dir), *qset = demo_shell_quote(set);
	char *qgp = demo_shell_quote(gp), *cmd = NULL;
	size_t n = qdir && qset && qgp ? strlen(qdir) + strlen(qset) + strlen(qgp) + 32 : 0;
	if (n && (cmd = malloc(n)))
		snprintf(cmd, n, "cd %s && gnuplot -e %s %s", qdir, qset, qgp);
	free(qdir);
	free(qset);
	free(qgp);
	if (!cmd) {
		fprintf(stderr, "could not draw %s: out of memory\n", png);
		return -1;
	}
	fflush(NULL);
	unlink(tmp);
	int st = system(cmd);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		unlink(tmp);
		fprintf(stderr, "'%s' failed (status %d)\n", cmd, st);
		free(cmd);
		return -1;
	}
	free(cmd);
	if (rename(tmp, png) != 0) {
		fprintf(stderr, "could not write %s: %s\n", png, strerror(errno));
		unlink(tmp);
		return -1;
	}
	printf("picture: %s\n", png);
	return 1;
}

/* ---- the end ------------------------------------------------------------------------- */

int demo_end(const char *prog, int rc)
{
	int err = fflush(stdout) != 0 ? errno : 0;
	if (err || ferror(stdout)) {
		fprintf(stderr, "%s: writing the results to stdout failed: %s\n", prog,
			err ? strerror(err) : "a write failed");
		return 1;
	}
	return rc;
}
