/*
 * test_data.c - data loaders, subsets and mini-batches: the shipped iris and
 * digits files read back to known rows; IDX and CSV files written here, good
 * and broken, each broken one rejected with the code and the message that
 * names the problem; splits and batches checked sample by sample.
 */
#define _GNU_SOURCE
#include "../engine/test_util.h"

#include "tapegrad_io.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* ---- helpers ---------------------------------------------------------------- */

typedef struct tmpdir {
	char path[64];
} tmpdir;

static void tmp_make(tmpdir *d)
{
	snprintf(d->path, sizeof d->path, "/tmp/tg_data_XXXXXX");
	assert_non_null(mkdtemp(d->path));
}

static void tmp_remove(tmpdir *d)
{
	DIR *dir = opendir(d->path);
	assert_non_null(dir);
	struct dirent *e;
	char p[512];
	while ((e = readdir(dir))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof p, "%s/%s", d->path, e->d_name);
		unlink(p);
	}
	closedir(dir);
	rmdir(d->path);
}

static const char *tmp_file(const tmpdir *d, const char *name, char *buf)
{
	snprintf(buf, 256, "%s/%s", d->path, name);
	return buf;
}

/* Writes bytes to path, gzipped when the name ends in ".gz". */
static void write_bytes(const char *path, const void *p, size_t n)
{
	size_t len = strlen(path);
	if (len > 3 && !strcmp(path + len - 3, ".gz")) {
		gzFile f = gzopen(path, "wb");
		assert_non_null(f);
		if (n)
			assert_int_equal(gzwrite(f, p, (unsigned)n), (int)n);
		assert_int_equal(gzclose(f), Z_OK);
	} else {
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		if (n)
			assert_int_equal(fwrite(p, 1, n, f), n);
		assert_int_equal(fclose(f), 0);
	}
}

static void write_text(const char *path, const char *text)
{
	write_bytes(path, text, strlen(text));
}

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* An IDX file: magic, ndim big-endian sizes, then nbytes of data (which may
 * disagree with the sizes, to make broken files). */
static void write_idx(const char *path, uint32_t magic, int ndim, const uint32_t *dims,
		      const unsigned char *data, size_t nbytes)
{
	size_t head = 4 + 4 * (size_t)ndim;
	unsigned char *buf = malloc(head + nbytes);
	assert_non_null(buf);
	put_be32(buf, magic);
	for (int i = 0; i < ndim; i++)
		put_be32(buf + 4 + 4 * i, dims[i]);
	if (nbytes)
		memcpy(buf + head, data, nbytes);
	write_bytes(path, buf, head + nbytes);
	free(buf);
}

/* Three 2x2 images (pixels 0, 51, 102, 153, ... 255 scaled by 1/255) and
 * labels 2, 0, 9, in files named "img<ext>" and "lbl<ext>". */
static const unsigned char PIXELS[12] = { 0, 51, 102, 153, 204, 255, 255, 204, 153, 102, 51, 0 };
static const unsigned char LABELS[3] = { 2, 0, 9 };

static void write_good_idx(const tmpdir *d, const char *ext, char *img, char *lbl)
{
	char name[32];
	snprintf(name, sizeof name, "img%s", ext);
	tmp_file(d, name, img);
	snprintf(name, sizeof name, "lbl%s", ext);
	tmp_file(d, name, lbl);
	write_idx(img, 0x803, 3, (uint32_t[]){ 3, 2, 2 }, PIXELS, 12);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 3 }, LABELS, 3);
}

/* The data set must be empty after a failed load. */
static void assert_empty(const tg_dataset *ds)
{
	assert_null(ds->x);
	assert_null(ds->y);
	assert_int_equal(ds->n, 0);
}

/* Valgrind runs the program in its own address space: a limit on it there
 * binds valgrind, not the code under test. */
#if defined(__SANITIZE_ADDRESS__)
/* ASan's allocator ends the process when a malloc meets the address-space
 * limit of running_out_of_memory_while_loading_is_an_error_not_a_crash,
 * where malloc returns NULL; the test is of what the loader does then. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}
#endif

static bool under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");
	return p && strstr(p, "vgpreload");
}

static const char *source_root(void)
{
	const char *root = getenv("TG_SOURCE_ROOT");
	return root ? root : ".";
}

/* ---- the shipped CSV files ---------------------------------------------------- */

static void iris_loads_150_rows_of_4_features_and_3_classes(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	char path[512];
	snprintf(path, sizeof path, "%s/demos/data/iris.csv", source_root());
	tg_dataset ds;
	assert_int_equal(tg_load_iris(ctx, path, &ds), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(ds.n, 150);
	assert_int_equal(ds.d, 4);
	assert_int_equal(ds.classes, 3);
	/* the first row, after the header: 5.1,3.5,1.4,0.2,0 */
	const double row0[4] = { 5.1, 3.5, 1.4, 0.2 };
	for (int j = 0; j < 4; j++)
		assert_near(ds.x[j], row0[j], 1e-6);
	assert_int_equal(ds.y[0], 0);
	/* the seeds' softmax sample 6.3,2.7,4.9,1.8 (virginica): line 125 of
	 * the file, row 123 counting from 0 after the header */
	const double row123[4] = { 6.3, 2.7, 4.9, 1.8 };
	for (int j = 0; j < 4; j++)
		assert_near(ds.x[123 * 4 + j], row123[j], 1e-6);
	assert_int_equal(ds.y[123], 2);
	/* the last row: 5.9,3.0,5.1,1.8,2 */
	assert_near(ds.x[149 * 4 + 0], 5.9, 1e-6);
	assert_near(ds.x[149 * 4 + 3], 1.8, 1e-6);
	/* 50 flowers of each species, in blocks */
	int count[3] = { 0 };
	for (int i = 0; i < 150; i++) {
		assert_in_range(ds.y[i], 0, 2);
		count[ds.y[i]]++;
		assert_int_equal(ds.y[i], i / 50);
	}
	assert_int_equal(count[0], 50);
	assert_int_equal(count[1], 50);
	assert_int_equal(count[2], 50);
	tg_dataset_free(&ds);
	assert_null(ds.x);
	tg_ctx_free(ctx);
}

static void digits_loads_1797_images_of_64_pixels_scaled_by_16(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	char path[512];
	snprintf(path, sizeof path, "%s/demos/data/digits.csv.gz", source_root());
	tg_dataset ds;
	assert_int_equal(tg_load_digits(ctx, path, &ds), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(ds.n, 1797);
	assert_int_equal(ds.d, 64);
	assert_int_equal(ds.classes, 10);
	assert_int_equal(ds.ndim, 3); /* 8x8 images of one channel */
	assert_int_equal(ds.shape[0], 1);
	assert_int_equal(ds.shape[1], 8);
	assert_int_equal(ds.shape[2], 8);
	/* first row: 0,0,5,13,9,1,0,0, ... label 0 */
	const int first[8] = { 0, 0, 5, 13, 9, 1, 0, 0 };
	for (int j = 0; j < 8; j++)
		assert_near(ds.x[j], first[j] / 16.0, 1e-7);
	assert_int_equal(ds.y[0], 0);
	/* second row ends ...,0,11,16,10,0,0 and is a 1 */
	assert_near(ds.x[64 + 60], 16 / 16.0, 1e-7);
	assert_near(ds.x[64 + 61], 10 / 16.0, 1e-7);
	assert_int_equal(ds.y[1], 1);
	/* every pixel in [0,1], every label used */
	int seen[10] = { 0 };
	for (int64_t i = 0; i < ds.n * ds.d; i++)
		if (ds.x[i] < 0 || ds.x[i] > 1)
			fail_msg("pixel %lld is %g, outside [0,1]", (long long)i, ds.x[i]);
	for (int64_t i = 0; i < ds.n; i++)
		seen[ds.y[i]]++;
	for (int c = 0; c < 10; c++)
		if (seen[c] < 170)
			fail_msg("digit %d appears %d times, expected about 180", c, seen[c]);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
}

/* ---- IDX files -------------------------------------------------------------- */

static void check_good_idx(const char *ext)
{
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256];
	write_good_idx(&d, ext, img, lbl);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	assert_int_equal(tg_load_idx(ctx, img, lbl, 10, &ds), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(ds.n, 3);
	assert_int_equal(ds.d, 4);
	assert_int_equal(ds.classes, 10);
	assert_int_equal(ds.ndim, 3); /* each image (1,2,2), a batch (B,1,2,2) */
	assert_int_equal(ds.shape[0], 1);
	assert_int_equal(ds.shape[1], 2);
	assert_int_equal(ds.shape[2], 2);
	for (int i = 0; i < 12; i++)
		assert_near(ds.x[i], PIXELS[i] / 255.0, 1e-7);
	assert_near(ds.x[1], 0.2, 1e-7);
	assert_near(ds.x[5], 1.0, 0);
	assert_int_equal(ds.y[0], 2);
	assert_int_equal(ds.y[1], 0);
	assert_int_equal(ds.y[2], 9);
	tg_dataset_free(&ds);
	/* classes 0: derived as max label + 1 */
	assert_int_equal(tg_load_idx(ctx, img, lbl, 0, &ds), 0);
	assert_int_equal(ds.classes, 10);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void idx_files_read_back_plain_and_gzipped(void **state)
{
	(void)state;
	check_good_idx("");
	check_good_idx(".gz");
}

/* Loads img/lbl and expects code and text in the error. */
static void expect_idx_error(const char *img, const char *lbl, int classes, tg_status code,
			     const char *text)
{
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds = { .n = 7 };
	assert_int_equal(tg_load_idx(ctx, img, lbl, classes, &ds), -1);
	assert_error(ctx, code, text);
	assert_empty(&ds);
	tg_ctx_free(ctx);
}

static void idx_with_a_wrong_magic_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256], want[512];
	write_good_idx(&d, ".gz", img, lbl);
	write_idx(img, 0, 3, (uint32_t[]){ 3, 2, 2 }, PIXELS, 12);
	snprintf(want, sizeof want,
		 "%s: wrong magic 0x00000000, expected 0x00000803 (IDX ubyte images)", img);
	expect_idx_error(img, lbl, 10, TG_EFORMAT, want);
	/* images and labels swapped: each has the other's magic */
	write_good_idx(&d, "", img, lbl);
	snprintf(want, sizeof want, "%s: wrong magic 0x00000801, expected 0x00000803", lbl);
	expect_idx_error(lbl, img, 10, TG_EFORMAT, want);
	tmp_remove(&d);
}

static void idx_with_truncated_images_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	const char *exts[2] = { "", ".gz" };
	for (int k = 0; k < 2; k++) {
		char img[256], lbl[256], want[512];
		write_good_idx(&d, exts[k], img, lbl);
		write_idx(img, 0x803, 3, (uint32_t[]){ 3, 2, 2 }, PIXELS, 5);
		snprintf(want, sizeof want, "%s: truncated: expected 12 bytes of pixels, got 5",
			 img);
		expect_idx_error(img, lbl, 10, TG_EFORMAT, want);
		/* a header cut short */
		write_bytes(img, "\0\0\x08\x03\0\0", 6);
		expect_idx_error(img, lbl, 10, TG_EFORMAT, "truncated: expected a 16-byte header");
	}
	tmp_remove(&d);
}

static void idx_with_truncated_labels_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256], want[512];
	write_good_idx(&d, ".gz", img, lbl);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 3 }, LABELS, 2);
	snprintf(want, sizeof want, "%s: truncated: expected 3 bytes of labels, got 2", lbl);
	expect_idx_error(img, lbl, 10, TG_EFORMAT, want);
	tmp_remove(&d);
}

static void a_gzip_stream_cut_short_reads_as_truncated(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256];
	write_good_idx(&d, ".gz", img, lbl);
	/* 600 images of 28x28, compressed, then the compressed file cut in half */
	static unsigned char pix[600 * 784];
	for (size_t i = 0; i < sizeof pix; i++)
		pix[i] = (unsigned char)(i * 7919 % 251);
	write_idx(img, 0x803, 3, (uint32_t[]){ 600, 28, 28 }, pix, sizeof pix);
	FILE *f = fopen(img, "rb");
	assert_non_null(f);
	static unsigned char gz[600 * 784 + 1024];
	size_t n = fread(gz, 1, sizeof gz, f);
	fclose(f);
	f = fopen(img, "wb");
	assert_int_equal(fwrite(gz, 1, n / 2, f), n / 2);
	fclose(f);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 600 }, pix, 600);
	expect_idx_error(img, lbl, 0, TG_EFORMAT, "truncated: expected 470400 bytes of pixels");
	tmp_remove(&d);
}

static void idx_with_unequal_counts_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256], want[600];
	write_good_idx(&d, "", img, lbl);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 2 }, LABELS, 2);
	snprintf(want, sizeof want, "%s has 3 images but %s has 2 labels", img, lbl);
	expect_idx_error(img, lbl, 10, TG_EFORMAT, want);
	tmp_remove(&d);
}

static void idx_with_a_label_out_of_range_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256], want[512];
	write_good_idx(&d, "", img, lbl);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 3 }, (unsigned char[]){ 1, 2, 10 }, 3);
	snprintf(want, sizeof want, "%s: label 10 at index 2 is out of range [0,10)", lbl);
	expect_idx_error(img, lbl, 10, TG_EFORMAT, want);
	/* the same file is fine for 11 classes */
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	assert_int_equal(tg_load_idx(ctx, img, lbl, 11, &ds), 0);
	assert_int_equal(ds.y[2], 10);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void idx_with_trailing_bytes_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256];
	write_good_idx(&d, "", img, lbl);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 3 }, (unsigned char[]){ 1, 2, 3, 4 }, 4);
	expect_idx_error(img, lbl, 10, TG_EFORMAT, "unexpected data after the 3 bytes of labels");
	tmp_remove(&d);
}

static void idx_with_a_zero_dimension_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256], want[512];
	write_good_idx(&d, "", img, lbl);
	write_idx(img, 0x803, 3, (uint32_t[]){ 0, 28, 28 }, NULL, 0);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 0 }, NULL, 0);
	snprintf(want, sizeof want, "%s: zero dimension in (0,28,28)", img);
	expect_idx_error(img, lbl, 10, TG_EFORMAT, want);
	write_idx(img, 0x803, 3, (uint32_t[]){ 3, 2, 0 }, NULL, 0);
	expect_idx_error(img, lbl, 10, TG_EFORMAT, "zero dimension in (3,2,0)");
	tmp_remove(&d);
}

/* In a child, limits the address space to "extra" bytes above its size now. */
static bool limit_address_space(size_t extra)
{
	long pages = 0, page = sysconf(_SC_PAGESIZE);
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return false;
	bool ok = fscanf(f, "%ld", &pages) == 1;
	fclose(f);
	struct rlimit rl = { (rlim_t)pages * (rlim_t)page + extra,
			     (rlim_t)pages * (rlim_t)page + extra };
	return ok && setrlimit(RLIMIT_AS, &rl) == 0;
}

static void idx_with_absurd_dimensions_is_rejected_without_allocating(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256], want[512];
	write_good_idx(&d, ".gz", img, lbl);
	write_idx(img, 0x803, 3, (uint32_t[]){ 100000, 100000, 100000 }, PIXELS, 12);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 100000 }, LABELS, 3);
	snprintf(want, sizeof want, "%s: dimensions (100000,100000,100000) make 1e+15 values", img);
	expect_idx_error(img, lbl, 10, TG_EFORMAT, want);
	write_idx(img, 0x803, 3, (uint32_t[]){ 0xffffffffu, 0xffffffffu, 0xffffffffu }, NULL, 0);
	expect_idx_error(img, lbl, 10, TG_EFORMAT,
			 "dimensions (4294967295,4294967295,4294967295)");

	/* Under the count cap but 8 GB as floats, more than a data set may
	 * take: refused from the header alone. */
	write_idx(img, 0x803, 3, (uint32_t[]){ 2000, 1000, 1000 }, PIXELS, 12);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 2000 }, LABELS, 3);
	snprintf(want, sizeof want,
		 "%s: 2000 images of 1000x1000 would take 7.45 GiB as floats, more than the", img);
	if (tg_data_max_bytes() < ((int64_t)8 << 30))
		expect_idx_error(img, lbl, 10, TG_EFORMAT, want);

	/* 5e7 pixels (200 MB as floats) claimed by a 12-byte file: with the
	 * address space limited to 128 MB more than now, the reader must still
	 * report the truncation, not run out of memory. */
	write_idx(img, 0x803, 3, (uint32_t[]){ 50, 1000, 1000 }, PIXELS, 12);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 50 }, LABELS, 3);
	if (under_valgrind()) {
		tmp_remove(&d);
		return;
	}
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (!limit_address_space((size_t)128 << 20))
			_exit(3);
		tg_ctx *ctx = tg_ctx_new(1);
		tg_dataset ds;
		int rc = tg_load_idx(ctx, img, lbl, 10, &ds);
		bool ok =
		    rc == -1 && tg_status_of(ctx) == TG_EFORMAT &&
		    strstr(tg_error(ctx), "truncated: expected 50000000 bytes of pixels, got 12");
		if (!ok)
			fprintf(stderr, "child: rc %d, %s: %s\n", rc,
				tg_status_name(tg_status_of(ctx)), tg_error(ctx));
		tg_ctx_free(ctx);
		_exit(ok ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	tmp_remove(&d);
}

static void running_out_of_memory_while_loading_is_an_error_not_a_crash(void **state)
{
	(void)state;
	if (under_valgrind())
		skip();
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256];
	write_good_idx(&d, ".gz", img, lbl);
	/* 3000 images of 100x100: 30 MB of pixels, 120 MB as floats */
	enum { N = 3000, R = 100, C = 100 };
	unsigned char *pix = calloc((size_t)N * R * C, 1);
	assert_non_null(pix);
	write_idx(img, 0x803, 3, (uint32_t[]){ N, R, C }, pix, (size_t)N * R * C);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ N }, pix, N);
	free(pix);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (!limit_address_space((size_t)48 << 20))
			_exit(3);
		tg_ctx *ctx = tg_ctx_new(1);
		tg_dataset ds = { .n = 7 };
		int rc = tg_load_idx(ctx, img, lbl, 10, &ds);
		bool ok = rc == -1 && tg_status_of(ctx) == TG_ENOMEM &&
			  strstr(tg_error(ctx), "out of memory for") && !ds.x && ds.n == 0;
		if (!ok)
			fprintf(stderr, "child: rc %d, %s: %s\n", rc,
				tg_status_name(tg_status_of(ctx)), tg_error(ctx));
		tg_ctx_free(ctx);
		_exit(ok ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* without the limit the same files load */
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	assert_int_equal(tg_load_idx(ctx, img, lbl, 10, &ds), 0);
	assert_int_equal(ds.n, N);
	assert_int_equal(ds.d, R * C);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void a_missing_idx_file_is_an_io_error(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256], want[512];
	write_good_idx(&d, "", img, lbl);
	char missing[256];
	tmp_file(&d, "nothing-here", missing);
	snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
	expect_idx_error(missing, lbl, 10, TG_EIO, want);
	expect_idx_error(img, missing, 10, TG_EIO, want);
	/* a directory is not a data file */
	expect_idx_error(d.path, lbl, 10, TG_EIO, d.path);
	/* an empty path names the problem, and an empty directory is not "/" */
	expect_idx_error(img, "", 10, TG_EARG, "cannot read a data file: the path is empty");
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset train = { .n = 7 }, test = { .n = 7 };
	assert_int_equal(tg_load_csv(ctx, "", NULL, &train), -1);
	assert_error(ctx, TG_EARG, "cannot read a data file: the path is empty");
	tg_clear_error(ctx);
	assert_int_equal(tg_load_mnist(ctx, "", &train, &test), -1);
	assert_error(ctx, TG_EARG, "tg_load_mnist: dir is empty");
	assert_empty(&train);
	assert_empty(&test);
	tg_clear_error(ctx);
	/* one data set for both would keep the test set and lose the other */
	assert_int_equal(tg_load_mnist(ctx, d.path, &train, &train), -1);
	assert_error(ctx, TG_EARG, "tg_load_mnist: train and test are the same data set");
	assert_empty(&train);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void the_mnist_loader_prefers_gz_and_falls_back_to_plain(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256];
	write_idx(tmp_file(&d, "train-images-idx3-ubyte.gz", p), 0x803, 3,
		  (uint32_t[]){ 3, 2, 2 }, PIXELS, 12);
	write_idx(tmp_file(&d, "train-labels-idx1-ubyte", p), 0x801, 1, (uint32_t[]){ 3 },
		  LABELS, 3);
	write_idx(tmp_file(&d, "t10k-images-idx3-ubyte", p), 0x803, 3, (uint32_t[]){ 1, 2, 2 },
		  PIXELS + 4, 4);
	write_idx(tmp_file(&d, "t10k-labels-idx1-ubyte.gz", p), 0x801, 1, (uint32_t[]){ 1 },
		  LABELS + 2, 1);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset train, test;
	assert_int_equal(tg_load_mnist(ctx, d.path, &train, &test), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(train.n, 3);
	assert_int_equal(test.n, 1);
	assert_int_equal(test.d, 4);
	assert_near(test.x[0], 204 / 255.0, 1e-7);
	assert_int_equal(test.y[0], 9);
	assert_int_equal(train.classes, 10); /* labels up to 9: MNIST's ten */
	assert_int_equal(test.classes, 10);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	/* test labels up to 26 (EMNIST's letters): 27 classes for both sets */
	write_idx(tmp_file(&d, "t10k-labels-idx1-ubyte.gz", p), 0x801, 1, (uint32_t[]){ 1 },
		  (const unsigned char[]){ 26 }, 1);
	assert_int_equal(tg_load_mnist(ctx, d.path, &train, &test), 0);
	assert_int_equal(train.classes, 27);
	assert_int_equal(test.classes, 27);
	assert_int_equal(test.y[0], 26);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	/* without the test labels: the error names the missing file, nothing leaks */
	unlink(tmp_file(&d, "t10k-labels-idx1-ubyte.gz", p));
	assert_int_equal(tg_load_mnist(ctx, d.path, &train, &test), -1);
	assert_error(ctx, TG_EIO, "t10k-labels-idx1-ubyte: cannot open");
	assert_empty(&train);
	assert_empty(&test);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void fashion_mnist_loads_60000_and_10000_images_when_installed(void **state)
{
	(void)state;
	if (access(TG_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
		skip();
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset train, test;
	assert_int_equal(tg_load_mnist(ctx, NULL, &train, &test), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(train.n, 60000);
	assert_int_equal(test.n, 10000);
	assert_int_equal(train.d, 784);
	assert_int_equal(test.d, 784);
	assert_int_equal(train.classes, 10);
	/* Fashion-MNIST is balanced: 6000 and 1000 images per class */
	int ntrain[10] = { 0 }, ntest[10] = { 0 };
	for (int64_t i = 0; i < train.n; i++)
		ntrain[train.y[i]]++;
	for (int64_t i = 0; i < test.n; i++)
		ntest[test.y[i]]++;
	for (int c = 0; c < 10; c++) {
		assert_int_equal(ntrain[c], 6000);
		assert_int_equal(ntest[c], 1000);
	}
	/* the first training image is an ankle boot (9), the first test image too */
	assert_int_equal(train.y[0], 9);
	assert_int_equal(test.y[0], 9);
	float lo = 1, hi = 0;
	for (int64_t i = 0; i < train.n * train.d; i++) {
		lo = train.x[i] < lo ? train.x[i] : lo;
		hi = train.x[i] > hi ? train.x[i] : hi;
	}
	assert_near(lo, 0.0, 0);
	assert_near(hi, 1.0, 0);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	tg_ctx_free(ctx);
}

/* ---- CSV files ---------------------------------------------------------------- */

static void expect_csv_error(const char *path, const tg_csv_options *opt, tg_status code,
			     const char *text)
{
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds = { .n = 7 };
	assert_int_equal(tg_load_csv(ctx, path, opt, &ds), -1);
	assert_error(ctx, code, text);
	assert_empty(&ds);
	tg_ctx_free(ctx);
}

static void csv_reads_numbers_labels_and_an_auto_detected_header(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256];
	const char *exts[2] = { "a.csv", "a.csv.gz" };
	for (int k = 0; k < 2; k++) {
		tmp_file(&d, exts[k], p);
		write_text(p, "x1, x2, class\r\n1.5, -2, 1\r\n\n  0.25,1e3,0\r\n3,4,2\n\n");
		tg_ctx *ctx = tg_ctx_new(1);
		tg_dataset ds;
		assert_int_equal(tg_load_csv(ctx, p, NULL, &ds), 0);
		assert_ctx_ok(ctx);
		assert_int_equal(ds.n, 3);
		assert_int_equal(ds.d, 2);
		assert_int_equal(ds.classes, 3);
		const double x[6] = { 1.5, -2, 0.25, 1000, 3, 4 };
		for (int i = 0; i < 6; i++)
			assert_near(ds.x[i], x[i], 0);
		assert_int_equal(ds.y[0], 1);
		assert_int_equal(ds.y[1], 0);
		assert_int_equal(ds.y[2], 2);
		tg_dataset_free(&ds);
		tg_ctx_free(ctx);
	}
	tmp_remove(&d);
}

static void csv_options_pick_the_label_column_scale_and_header(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256];
	tmp_file(&d, "b.csv", p);
	write_text(p, "4,8,16\n2,0,4\n");
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	/* label first, features divided by 4, 5 classes, no header */
	tg_csv_options opt = { .label_column = 0, .header = TG_CSV_HEADER_NO, .classes = 5,
			       .scale = 4 };
	assert_int_equal(tg_load_csv(ctx, p, &opt, &ds), 0);
	assert_int_equal(ds.n, 2);
	assert_int_equal(ds.d, 2);
	assert_int_equal(ds.classes, 5);
	assert_int_equal(ds.y[0], 4);
	assert_int_equal(ds.y[1], 2);
	assert_near(ds.x[0], 2, 0);
	assert_near(ds.x[1], 4, 0);
	assert_near(ds.x[2], 0, 0);
	assert_near(ds.x[3], 1, 0);
	tg_dataset_free(&ds);
	/* the middle column as label (-2), and a numeric first line skipped as asked */
	opt = (tg_csv_options){ .label_column = -2, .header = TG_CSV_HEADER_YES };
	assert_int_equal(tg_load_csv(ctx, p, &opt, &ds), 0);
	assert_int_equal(ds.n, 1);
	assert_int_equal(ds.y[0], 0);
	assert_int_equal(ds.classes, 1);
	assert_near(ds.x[0], 2, 0);
	assert_near(ds.x[1], 4, 0);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	/* a label column beyond the row */
	opt = (tg_csv_options){ .label_column = 3 };
	expect_csv_error(p, &opt, TG_EARG, "label column 3 out of range for 3 columns");
	/* a negative scale, and a cap below what a load takes, are refused */
	opt = (tg_csv_options){ .label_column = -1, .scale = -4 };
	expect_csv_error(p, &opt, TG_EARG, "tg_load_csv: scale -4 is negative");
	opt = (tg_csv_options){ .label_column = -1, .max_bytes = 1000 };
	expect_csv_error(p, &opt, TG_EARG,
			 "tg_load_csv: max_bytes 1000 is below 131072, the least a CSV load takes");
	opt.max_bytes = TG_CSV_MIN_BYTES;
	ctx = tg_ctx_new(1);
	assert_int_equal(tg_load_csv(ctx, p, &opt, &ds), 0);
	assert_int_equal(ds.n, 2);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void csv_with_a_ragged_row_names_the_line(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256], want[512];
	tmp_file(&d, "ragged.csv", p);
	write_text(p, "a,b,label\n1,2,0\n\n3,4,1\n5,1\n6,7,0\n");
	snprintf(want, sizeof want, "%s: line 5: 2 columns, expected 3 (as on line 2)", p);
	expect_csv_error(p, NULL, TG_EFORMAT, want);
	write_text(p, "1,2,0\n3,4,1,9\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 2: 4 columns, expected 3 (as on line 1)");
	tmp_remove(&d);
}

static void csv_with_a_non_numeric_field_names_line_and_column(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256], want[512];
	tmp_file(&d, "text.csv.gz", p);
	write_text(p, "1,2,0\n3,four,1\n");
	snprintf(want, sizeof want, "%s: line 2, column 2: \"four\" is not a number", p);
	expect_csv_error(p, NULL, TG_EFORMAT, want);
	write_text(p, "1,2,0\n3,,1\n");
	expect_csv_error(p, NULL, TG_EFORMAT,
			 "line 2, column 2: \"\" is not a number (empty field)");
	write_text(p, "1,2,0\n3,1.5x,1\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 2, column 2: \"1.5x\" is not a number");
	/* numbers, but no use as features or labels */
	write_text(p, "1,2,0\n3,nan,1\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 2, column 2: \"nan\" is not finite");
	write_text(p, "1,1e39,0\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 1, column 2: \"1e39\" is not finite");
	write_text(p, "1,2,inf\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 1, column 3: \"inf\" is not finite");
	/* a finite number that the scale makes overflow: the scale is named */
	write_text(p, "1,2,0\n");
	tg_csv_options tiny = TG_CSV_DEFAULTS;
	tiny.scale = 1e-300;
	expect_csv_error(p, &tiny, TG_EFORMAT,
			 "line 1, column 1: \"1\" divided by scale 1e-300 is not finite");
	tmp_remove(&d);
}

static void csv_with_a_bad_label_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256];
	tmp_file(&d, "labels.csv", p);
	write_text(p, "1,2,0\n3,4,3\n");
	tg_csv_options opt = TG_CSV_DEFAULTS;
	opt.classes = 3;
	expect_csv_error(p, &opt, TG_EFORMAT, "line 2, column 3: label \"3\" is out of range [0,3)");
	write_text(p, "1,2,0\n3,4,-1\n");
	expect_csv_error(p, &opt, TG_EFORMAT, "line 2, column 3: label \"-1\" is out of range [0,3)");
	write_text(p, "1,2,0.5\n");
	expect_csv_error(p, &opt, TG_EFORMAT, "line 1, column 3: label \"0.5\" is not an integer");
	/* the label as written, not rounded to 6 digits (1.0000001 is not 1),
	 * and its column when it is not the last */
	write_text(p, "1,0,2\n3,1.0000001,4\n");
	opt.label_column = 1;
	expect_csv_error(p, &opt, TG_EFORMAT,
			 "line 2, column 2: label \"1.0000001\" is not an integer");
	/* derived classes are capped too */
	write_text(p, "1,2,1e9\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "label \"1e9\" is out of range [0,65536)");
	tmp_remove(&d);
}

static void an_empty_csv_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256], want[512];
	tmp_file(&d, "empty.csv", p);
	write_text(p, "");
	snprintf(want, sizeof want, "%s: empty file", p);
	expect_csv_error(p, NULL, TG_EFORMAT, want);
	write_text(p, "\n  \n\r\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "empty file");
	write_text(p, "sepal,petal,class\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "no data rows after the header");
	write_text(p, "1\n2\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 1: 1 column; a row needs features and a label");
	tmp_remove(&d);
}

static void the_iris_loader_checks_the_feature_count(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256];
	tmp_file(&d, "iris.csv", p);
	write_text(p, "2,3,a,b,c\n1,2,3,0\n4,5,6,1\n");
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	assert_int_equal(tg_load_iris(ctx, p, &ds), -1);
	assert_error(ctx, TG_EFORMAT, "3 features per row, iris has 4");
	assert_empty(&ds);
	tg_clear_error(ctx);
	/* without the header line no sample is taken for it */
	write_text(p, "5.1,3.5,1.4,0.2,0\n7,3.2,4.7,1.4,1\n6.3,3.3,6,2.5,2\n");
	assert_int_equal(tg_load_iris(ctx, p, &ds), 0);
	assert_int_equal(ds.n, 3);
	assert_near(ds.x[0], 5.1f, 0);
	assert_int_equal(ds.y[0], 0);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

/* ---- subsets ------------------------------------------------------------------ */

/* n rows of 2 features: row i is (i, -i), label i % 3. */
static tg_dataset numbered(int64_t n)
{
	tg_dataset ds = { .n = n, .d = 2, .classes = 3 };
	ds.x = malloc((size_t)n * 2 * sizeof(float));
	ds.y = malloc((size_t)n * sizeof(int32_t));
	assert_non_null(ds.x);
	assert_non_null(ds.y);
	for (int64_t i = 0; i < n; i++) {
		ds.x[2 * i] = (float)i;
		ds.x[2 * i + 1] = (float)-i;
		ds.y[i] = (int32_t)(i % 3);
	}
	return ds;
}

/* Each row of ds must be a row of numbered(): (i, -i) with label i % 3. */
static void assert_rows_intact(const tg_dataset *ds)
{
	for (int64_t r = 0; r < ds->n; r++) {
		int64_t i = (int64_t)ds->x[2 * r];
		if (ds->x[2 * r + 1] != -(float)i || ds->y[r] != i % 3)
			fail_msg("row %lld is (%g,%g) label %d, not a row of the source",
				 (long long)r, ds->x[2 * r], ds->x[2 * r + 1], (int)ds->y[r]);
	}
}

static void split_partitions_the_rows_deterministically_for_a_seed(void **state)
{
	(void)state;
	tg_dataset src = numbered(100);
	tg_dataset tr[3], va[3];
	uint64_t seeds[3] = { 42, 42, 7 };
	for (int k = 0; k < 3; k++) {
		tg_ctx *ctx = tg_ctx_new(seeds[k]);
		assert_int_equal(tg_dataset_split(ctx, &src, 20, &tr[k], &va[k]), 0);
		assert_ctx_ok(ctx);
		tg_ctx_free(ctx);
		assert_int_equal(tr[k].n, 80);
		assert_int_equal(va[k].n, 20);
		assert_int_equal(tr[k].d, 2);
		assert_int_equal(va[k].classes, 3);
		assert_rows_intact(&tr[k]);
		assert_rows_intact(&va[k]);
		/* every source row exactly once across the two */
		int seen[100] = { 0 };
		for (int64_t i = 0; i < 80; i++)
			seen[(int)tr[k].x[2 * i]]++;
		for (int64_t i = 0; i < 20; i++)
			seen[(int)va[k].x[2 * i]]++;
		for (int i = 0; i < 100; i++)
			if (seen[i] != 1)
				fail_msg("row %d appears %d times in the split", i, seen[i]);
	}
	/* the same seed, the same split; another seed, another split */
	assert_memory_equal(va[0].x, va[1].x, 20 * 2 * sizeof(float));
	assert_memory_equal(tr[0].y, tr[1].y, 80 * sizeof(int32_t));
	assert_memory_not_equal(va[0].x, va[2].x, 20 * 2 * sizeof(float));
	/* and it is shuffled: the validation rows are not rows 0..19 in order */
	int in_order = 0;
	for (int i = 0; i < 20; i++)
		in_order += va[0].x[2 * i] == (float)i;
	assert_true(in_order < 20);
	for (int k = 0; k < 3; k++) {
		tg_dataset_free(&tr[k]);
		tg_dataset_free(&va[k]);
	}
	tg_ctx *ctx = tg_ctx_new(1);
	assert_int_equal(tg_dataset_split(ctx, &src, 100, &tr[0], &va[0]), -1);
	assert_error(ctx, TG_EARG, "tg_dataset_split: 100 validation rows of 100; need 1..99");
	assert_empty(&tr[0]);
	tg_ctx_free(ctx);
	tg_dataset_free(&src);
}

/* The flags of the mapping that holds address a, from /proc/self/smaps
 * ("" when not found): " hg" among them is MADV_HUGEPAGE's advice. */
static void vma_flags(const void *a, char *flags, size_t size)
{
	flags[0] = 0;
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return;
	char line[512];
	bool inside = false;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			inside = (uintptr_t)a >= lo && (uintptr_t)a < hi;
		else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
			snprintf(flags, size, "%s", line + 8);
			break;
		}
	}
	fclose(f);
}

/* Whether the kernel takes MADV_HUGEPAGE advice at all. */
static bool huge_advice_taken(void)
{
	size_t len = 4 << 20;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return false;
	bool ok = madvise(p, len, MADV_HUGEPAGE) == 0;
	munmap(p, len);
	return ok;
}

/* A whole 2 MiB grain of x's rows lies in memory advised for huge pages. */
static void assert_huge_advised(const float *x, size_t bytes)
{
	uintptr_t grain = 2 << 20, a = ((uintptr_t)x + grain - 1) & ~(grain - 1);
	assert_true(a + grain <= (uintptr_t)x + bytes);
	char flags[512];
	vma_flags((const void *)a, flags, sizeof flags);
	if (!flags[0] || !huge_advice_taken())
		return; /* no smaps, or no transparent huge pages in this kernel */
	if (!strstr(flags, " hg")) {
		print_error("the mapping of %p has flags%s", (void *)a, flags);
		fail();
	}
}

/* Batches gather rows from all over a data set, and on a virtual machine a
 * TLB miss can cost microseconds a page: the loaders and subsets put a big
 * x where it may have 2 MiB pages, each value as read. */
static void big_data_sets_lie_on_huge_page_advice_with_their_values(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256], csv[256];
	tmp_file(&d, "img", img);
	tmp_file(&d, "lbl", lbl);
	tmp_file(&d, "big.csv", csv);
	enum { N = 2000, SIDE = 28, D = SIDE * SIDE };
	unsigned char *pix = malloc((size_t)N * D), lab[N];
	assert_non_null(pix);
	for (size_t i = 0; i < (size_t)N * D; i++)
		pix[i] = (unsigned char)(i * 7 % 256);
	for (int i = 0; i < N; i++)
		lab[i] = (unsigned char)(i % 10);
	write_idx(img, 0x803, 3, (uint32_t[]){ N, SIDE, SIDE }, pix, (size_t)N * D);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ N }, lab, N);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds, sub;
	assert_int_equal(tg_load_idx(ctx, img, lbl, 10, &ds), 0);
	assert_int_equal(ds.n, N);
	for (size_t i = 0; i < (size_t)N * D; i++)
		if (ds.x[i] != (float)(pix[i] / 255.0)) {
			print_error("x[%zu] = %.9g, pixel %d\n", i, ds.x[i], pix[i]);
			fail();
		}
	assert_int_equal(ds.y[N - 1], (N - 1) % 10);
	assert_huge_advised(ds.x, (size_t)N * D * sizeof(float));
	/* a subset of most rows, backwards */
	int64_t idx[N - 100];
	for (int i = 0; i < N - 100; i++)
		idx[i] = N - 1 - i;
	assert_int_equal(tg_dataset_subset(ctx, &ds, idx, N - 100, &sub), 0);
	assert_true(memcmp(sub.x, ds.x + (size_t)(N - 1) * D, D * sizeof(float)) == 0);
	assert_true(memcmp(sub.x + (size_t)(N - 101) * D, ds.x + (size_t)100 * D,
			   D * sizeof(float)) == 0);
	assert_huge_advised(sub.x, (size_t)(N - 100) * D * sizeof(float));
	tg_dataset_free(&sub);
	tg_dataset_free(&ds);
	/* a CSV of 22 000 rows of 50 features and a label: 4.4 MB of floats */
	enum { R = 22000, C = 50 };
	FILE *f = fopen(csv, "w");
	assert_non_null(f);
	for (int r = 0; r < R; r++) {
		for (int c = 0; c < C; c++)
			fprintf(f, "%d.25,", (r * 31 + c) % 1000);
		fprintf(f, "%d\n", r % 3);
	}
	assert_int_equal(fclose(f), 0);
	assert_int_equal(tg_load_csv(ctx, csv, NULL, &ds), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(ds.n, R);
	assert_int_equal(ds.d, C);
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C; c++)
			if (ds.x[(size_t)r * C + c] != (float)((r * 31 + c) % 1000) + 0.25f) {
				print_error("row %d column %d: %.9g\n", r, c, ds.x[(size_t)r * C + c]);
				fail();
			}
	assert_int_equal(ds.y[R - 1], (R - 1) % 3);
	assert_huge_advised(ds.x, (size_t)R * C * sizeof(float));
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	free(pix);
	tmp_remove(&d);
}

static void head_and_subset_copy_the_chosen_rows(void **state)
{
	(void)state;
	tg_dataset src = numbered(10);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset h, s;
	assert_int_equal(tg_dataset_head(ctx, &src, 4, &h), 0);
	assert_int_equal(h.n, 4);
	for (int i = 0; i < 4; i++)
		assert_near(h.x[2 * i], i, 0);
	tg_dataset_free(&h);
	assert_int_equal(tg_dataset_head(ctx, &src, 1000, &h), 0);
	assert_int_equal(h.n, 10);
	tg_dataset_free(&h);
	assert_int_equal(tg_dataset_subset(ctx, &src, (int64_t[]){ 7, 2, 7 }, 3, &s), 0);
	assert_int_equal(s.n, 3);
	assert_near(s.x[0], 7, 0);
	assert_near(s.x[3], -2, 0);
	assert_near(s.x[4], 7, 0);
	assert_int_equal(s.y[1], 2);
	tg_dataset_free(&s);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_dataset_subset(ctx, &src, (int64_t[]){ 1, 10 }, 2, &s), -1);
	assert_error(ctx, TG_EARG, "index 10 at 1 is out of range [0,10)");
	assert_empty(&s);
	tg_clear_error(ctx);
	/* a NULL index list empties out like every other error */
	s = (tg_dataset){ .n = 5, .d = 2 };
	assert_int_equal(tg_dataset_subset(ctx, &src, NULL, 1, &s), -1);
	assert_error(ctx, TG_ENULL, "tg_dataset_subset: idx is NULL");
	assert_empty(&s);
	tg_clear_error(ctx);
	assert_int_equal(tg_dataset_subset(ctx, &src, (int64_t[]){ 1, 10 }, 2, &s), -1);
	/* while an error is set, loaders and subsets do nothing */
	assert_int_equal(tg_dataset_head(ctx, &src, 2, &h), -1);
	assert_error(ctx, TG_EARG, "index 10 at 1");
	tg_clear_error(ctx);
	/* in place: out is src, whose rows are replaced (the old ones freed;
	 * the sanitizer build sees a leak otherwise); on error src stays */
	assert_int_equal(tg_dataset_subset(ctx, &src, (int64_t[]){ 9, 1, 8 }, 3, &src), 0);
	assert_int_equal(src.n, 3);
	assert_near(src.x[0], 9, 0);
	assert_int_equal(src.y[2], 8 % 3);
	assert_int_equal(tg_dataset_head(ctx, &src, 2, &src), 0);
	assert_int_equal(src.n, 2);
	assert_near(src.x[2], 1, 0);
	assert_int_equal(tg_dataset_subset(ctx, &src, (int64_t[]){ 5 }, 1, &src), -1);
	assert_error(ctx, TG_EARG, "index 5 at 0 is out of range [0,2)");
	tg_clear_error(ctx);
	assert_int_equal(src.n, 2);
	assert_near(src.x[0], 9, 0);
	tg_dataset_free(&src);
	src = numbered(10);
	tg_dataset val;
	assert_int_equal(tg_dataset_split(ctx, &src, 3, &src, &val), 0);
	assert_int_equal(src.n, 7);
	assert_int_equal(val.n, 3);
	tg_dataset_free(&val);
	/* one struct for both parts would lose one of them */
	assert_int_equal(tg_dataset_split(ctx, &src, 3, &val, &val), -1);
	assert_error(ctx, TG_EARG, "tg_dataset_split: train and val are the same data set");
	assert_int_equal(src.n, 7);
	tg_ctx_free(ctx);
	tg_dataset_free(&src);
}

/* ---- mini-batches --------------------------------------------------------------- */

static void a_batch_gathers_rows_and_labels_in_either_dtype(void **state)
{
	(void)state;
	tg_dataset src = numbered(10);
	tg_ctx *ctx = tg_ctx_new(1);
	int32_t labels[3];
	tg_tensor *x = tg_dataset_batch(ctx, &src, (int64_t[]){ 4, 0, 8 }, 3, TG_F64, labels);
	assert_non_null(x);
	assert_int_equal(tg_dtype_of(x), TG_F64);
	assert_int_equal(tg_dim(x, 0), 3);
	assert_int_equal(tg_dim(x, 1), 2);
	const double want[6] = { 4, -4, 0, 0, 8, -8 };
	for (int i = 0; i < 6; i++)
		assert_near(tg_get(x, (size_t)i), want[i], 0);
	assert_int_equal(labels[0], 1);
	assert_int_equal(labels[1], 0);
	assert_int_equal(labels[2], 2);
	x = tg_dataset_batch(ctx, &src, (int64_t[]){ 9 }, 1, TG_F32, NULL);
	assert_int_equal(tg_dtype_of(x), TG_F32);
	assert_near(tg_get(x, 1), -9, 0);
	assert_ctx_ok(ctx);
	assert_null(tg_dataset_batch(ctx, &src, (int64_t[]){ -1 }, 1, TG_F32, NULL));
	assert_error(ctx, TG_EARG, "tg_dataset_batch: index -1 at 0 is out of range [0,10)");
	tg_clear_error(ctx);
	/* a dtype of indices is named, not numbered */
	assert_null(tg_dataset_batch(ctx, &src, (int64_t[]){ 1 }, 1, TG_I32, NULL));
	assert_error(ctx, TG_EDTYPE, "tg_dataset_batch: dtype i32; a batch of features is f32 or f64");
	tg_ctx_free(ctx);
	tg_dataset_free(&src);
}

/* Samples shaped (1,3,2): a batch is (B,1,3,2) holding the same rows, and
 * the shape travels through subsets and splits; a shape that does not hold
 * D features is refused. */
static void image_samples_come_in_batches_of_their_shape(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset src = { .n = 4, .d = 6, .classes = 2 };
	src.x = malloc(24 * sizeof(float));
	src.y = calloc(4, sizeof(int32_t));
	assert_non_null(src.x);
	assert_non_null(src.y);
	for (int i = 0; i < 24; i++)
		src.x[i] = (float)i;
	assert_int_equal(tg_dataset_reshape(ctx, &src, 3, (int64_t[]){ 1, 3, 2 }), 0);
	int64_t shape[4];
	assert_int_equal(tg_dataset_batch_shape(&src, 5, shape), 4);
	assert_int_equal(shape[0], 5);
	assert_int_equal(shape[3], 2);
	tg_tensor *x = tg_dataset_batch(ctx, &src, (int64_t[]){ 2, 0 }, 2, TG_F32, NULL);
	assert_non_null(x);
	assert_int_equal(tg_ndim(x), 4);
	const int64_t want[4] = { 2, 1, 3, 2 };
	for (int i = 0; i < 4; i++)
		assert_int_equal(tg_dim(x, i), want[i]);
	assert_near(tg_get(x, 0), 12, 0); /* row 2 starts at 12 */
	assert_near(tg_get(x, 11), 5, 0); /* row 0 ends at 5 */
	tg_dataset head, train, val;
	assert_int_equal(tg_dataset_head(ctx, &src, 2, &head), 0);
	assert_int_equal(tg_dataset_split(ctx, &src, 1, &train, &val), 0);
	assert_int_equal(head.ndim, 3);
	assert_int_equal(train.shape[1], 3);
	assert_int_equal(val.shape[2], 2);
	tg_dataset_free(&head);
	tg_dataset_free(&train);
	tg_dataset_free(&val);
	/* back to flat rows */
	assert_int_equal(tg_dataset_reshape(ctx, &src, 0, NULL), 0);
	x = tg_dataset_batch(ctx, &src, (int64_t[]){ 1 }, 1, TG_F64, NULL);
	assert_int_equal(tg_ndim(x), 2);
	assert_int_equal(tg_dim(x, 1), 6);
	assert_ctx_ok(ctx);
	assert_int_equal(tg_dataset_reshape(ctx, &src, 3, (int64_t[]){ 1, 4, 2 }), -1);
	assert_error(ctx, TG_ESHAPE,
		     "tg_dataset_reshape: samples of shape (1,4,2) do not hold the 6 features");
	assert_int_equal(src.ndim, 0); /* unchanged */
	tg_clear_error(ctx);
	/* negative sizes are named as such, even when their product fits */
	assert_int_equal(tg_dataset_reshape(ctx, &src, 2, (int64_t[]){ -2, -3 }), -1);
	assert_error(ctx, TG_ESHAPE,
		     "tg_dataset_reshape: sample size -2 at dimension 0 is not positive");
	tg_clear_error(ctx);
	assert_int_equal(tg_dataset_reshape(ctx, &src, 2, (int64_t[]){ 6, 0 }), -1);
	assert_error(ctx, TG_ESHAPE, "sample size 0 at dimension 1 is not positive");
	assert_int_equal(src.ndim, 0);
	tg_clear_error(ctx);
	src.ndim = 2; /* a shape set by hand that does not fit */
	src.shape[0] = 5;
	src.shape[1] = 5;
	assert_null(tg_dataset_batch(ctx, &src, (int64_t[]){ 0 }, 1, TG_F32, NULL));
	assert_error(ctx, TG_ESHAPE, "samples of shape (5,5) do not hold the 6 features");
	tg_ctx_free(ctx);
	tg_dataset_free(&src);
}

static void batches_with_replacement_draw_valid_rows_deterministically(void **state)
{
	(void)state;
	tg_dataset src = numbered(50);
	int64_t drawn[2][20 * 8];
	for (int k = 0; k < 2; k++) {
		tg_ctx *ctx = tg_ctx_new(5);
		tg_batcher *b = tg_batcher_new(ctx, &src, 8, TG_BATCH_REPLACE);
		assert_non_null(b);
		for (int step = 0; step < 20; step++) {
			tg_batch batch;
			assert_true(tg_batch_next(b, TG_F32, &batch));
			assert_int_equal(batch.n, 8);
			const float *x = tg_data(batch.x);
			for (int i = 0; i < 8; i++) {
				int64_t r = batch.idx[i];
				assert_in_range(r, 0, 49);
				assert_near(x[2 * i], (double)r, 0);
				assert_near(x[2 * i + 1], -(double)r, 0);
				assert_int_equal(batch.y[i], r % 3);
				drawn[k][step * 8 + i] = r;
			}
			tg_reset(ctx);
		}
		assert_int_equal(tg_batcher_epoch(b), 0);
		tg_batcher_free(b);
		tg_ctx_free(ctx);
	}
	assert_memory_equal(drawn[0], drawn[1], sizeof drawn[0]);
	/* 160 draws from 50 rows with replacement: some row must repeat, and
	 * many distinct rows are hit */
	int seen[50] = { 0 }, distinct = 0, repeated = 0;
	for (int i = 0; i < 160; i++)
		seen[drawn[0][i]]++;
	for (int r = 0; r < 50; r++) {
		distinct += seen[r] > 0;
		repeated += seen[r] > 1;
	}
	assert_true(repeated > 0);
	assert_true(distinct > 30);
	tg_dataset_free(&src);
}

/* Runs epochs of batch size B over n rows; checks each sample comes once. */
static void check_epochs(int64_t n, int64_t B, unsigned flags, int64_t want_batches,
			 int64_t want_last)
{
	tg_dataset src = numbered(n);
	tg_ctx *ctx = tg_ctx_new(9);
	tg_batcher *b = tg_batcher_new(ctx, &src, B, flags);
	assert_non_null(b);
	int64_t *first = calloc((size_t)n, sizeof *first);
	for (int epoch = 0; epoch < 3; epoch++) {
		int *seen = calloc((size_t)n, sizeof *seen);
		int64_t batches = 0, pos = 0;
		tg_batch batch;
		bool differs = false;
		while (tg_batch_next(b, TG_F64, &batch)) {
			batches++;
			bool last = batches == want_batches;
			assert_int_equal(batch.n, last ? want_last : B);
			for (int64_t i = 0; i < batch.n; i++) {
				int64_t r = batch.idx[i];
				seen[r]++;
				assert_near(tg_get(batch.x, (size_t)(2 * i)), (double)r, 0);
				assert_int_equal(batch.y[i], r % 3);
				if (epoch == 0)
					first[pos] = r;
				else
					differs |= first[pos] != r;
				pos++;
			}
			tg_reset(ctx);
		}
		assert_ctx_ok(ctx);
		assert_int_equal(batches, want_batches);
		assert_int_equal(tg_batcher_epoch(b), epoch + 1);
		int64_t covered = 0;
		for (int64_t r = 0; r < n; r++) {
			if (seen[r] > 1)
				fail_msg("epoch %d: sample %lld came %d times", epoch, (long long)r,
					 seen[r]);
			covered += seen[r];
		}
		int64_t dropped = (flags & TG_BATCH_DROP_LAST) ? n % B : 0;
		assert_int_equal(covered, n - dropped);
		if (epoch > 0)
			assert_true(differs); /* a new permutation each epoch */
		free(seen);
	}
	free(first);
	tg_batcher_free(b);
	tg_ctx_free(ctx);
	tg_dataset_free(&src);
}

static void shuffled_epochs_deliver_each_sample_exactly_once(void **state)
{
	(void)state;
	check_epochs(103, 10, 0, 11, 3);  /* the short last batch is kept */
	check_epochs(100, 10, 0, 10, 10); /* an exact division */
	check_epochs(7, 50, 0, 1, 7);     /* one batch of everything */
	check_epochs(7, INT64_MAX, 0, 1, 7); /* however large the batch asked for */
}

static void drop_last_drops_the_short_batch(void **state)
{
	(void)state;
	check_epochs(103, 10, TG_BATCH_DROP_LAST, 10, 10);
	tg_dataset src = numbered(5);
	tg_ctx *ctx = tg_ctx_new(1);
	assert_null(tg_batcher_new(ctx, &src, 6, TG_BATCH_DROP_LAST));
	assert_error(ctx, TG_EARG, "batch size 6 > 5 samples with TG_BATCH_DROP_LAST");
	tg_clear_error(ctx);
	assert_null(tg_batcher_new(ctx, &src, 0, 0));
	assert_error(ctx, TG_EARG, "batch size 0 is not positive");
	tg_clear_error(ctx);
	/* drawn with replacement, a batch is as large as asked */
	assert_null(tg_batcher_new(ctx, &src, INT64_MAX, TG_BATCH_REPLACE));
	assert_error(ctx, TG_EARG, "tg_batcher_new: a batch of 9223372036854775807 rows");
	tg_ctx_free(ctx);
	tg_dataset_free(&src);
}

/* Sharded batchers of the same seed cover each epoch once between them, and
 * a batch too small to give every part a row is refused at tg_batcher_shard,
 * not when an epoch reaches it. */
static void shards_of_a_batcher_cover_each_epoch_once(void **state)
{
	(void)state;
	tg_dataset src = numbered(10);
	int seen[10] = { 0 };
	for (int64_t part = 0; part < 3; part++) {
		tg_ctx *ctx = tg_ctx_new(3);
		tg_batcher *b = tg_batcher_new(ctx, &src, 6, 0); /* batches of 6 and 4 */
		assert_int_equal(tg_batcher_shard(b, part, 3), 0);
		tg_batch bt;
		for (int epoch = 0; epoch < 2; epoch++) {
			while (tg_batch_next(b, TG_F32, &bt)) {
				assert_true(bt.n >= 1);
				for (int64_t i = 0; i < bt.n; i++)
					seen[bt.idx[i]]++;
				tg_reset(ctx);
			}
			assert_true(tg_ok(ctx));
		}
		tg_batcher_free(b);
		tg_ctx_free(ctx);
	}
	for (int i = 0; i < 10; i++)
		assert_int_equal(seen[i], 2);

	tg_ctx *ctx = tg_ctx_new(3);
	tg_batcher *b = tg_batcher_new(ctx, &src, 4, 0); /* 4, 4 and 2 */
	assert_int_equal(tg_batcher_shard(b, 0, 3), -1);
	assert_error(ctx, TG_EARG, "tg_batcher_shard: the short last batch of an epoch of 2 "
				   "rows cannot give each of 3 parts a row");
	tg_clear_error(ctx);
	tg_batcher_free(b);
	b = tg_batcher_new(ctx, &src, 4, TG_BATCH_DROP_LAST);
	assert_int_equal(tg_batcher_shard(b, 2, 3), 0);
	assert_int_equal(tg_batcher_shard(b, 0, 5), -1);
	assert_error(ctx, TG_EARG, "a batch of 4 rows cannot give each of 5 parts a row");
	tg_batcher_free(b);
	tg_ctx_free(ctx);
	tg_dataset_free(&src);
}

/* ---- special files, gzip edges, memory bounds --------------------------------- */

static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void a_fifo_or_a_device_is_refused_at_once(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256], fifo[256], want[512];
	write_good_idx(&d, "", img, lbl);
	tmp_file(&d, "pipe", fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(want, sizeof want, "%s: is a FIFO (named pipe), not a regular file", fifo);
	alarm(10); /* a reader blocked on the FIFO fails the suite, not hangs it */
	double t0 = seconds_now();
	expect_idx_error(fifo, lbl, 10, TG_EIO, want);
	expect_idx_error(img, fifo, 10, TG_EIO, want);
	expect_csv_error(fifo, NULL, TG_EIO, want);
	double took = seconds_now() - t0;
	alarm(0);
	if (took > 1.0)
		fail_msg("refusing the FIFO three times took %.3f s", took);
	/* /dev/zero would grow without end */
	expect_csv_error("/dev/zero", NULL, TG_EIO, "/dev/zero: is a character device");
	expect_idx_error("/dev/zero", lbl, 10, TG_EIO, "/dev/zero: is a character device");
	expect_csv_error(d.path, NULL, TG_EIO, "is a directory");
	tmp_remove(&d);
}

/* Appends raw bytes to a file. */
static void append_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "ab");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void gzip_edges_are_errors_that_name_the_file_once(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char img[256], lbl[256], csv[256], want[512];
	/* garbage after a whole gzip stream */
	write_good_idx(&d, ".gz", img, lbl);
	append_bytes(lbl, "junk", 4);
	snprintf(want, sizeof want, "%s: bad gzip data: bytes that are not gzip after the end", lbl);
	expect_idx_error(img, lbl, 10, TG_EFORMAT, want);
	tmp_file(&d, "a.csv.gz", csv);
	write_text(csv, "1,2,0\n3,4,1\n");
	append_bytes(csv, "\0\0\0\0", 4);
	expect_csv_error(csv, NULL, TG_EFORMAT, "bytes that are not gzip after the end");
	/* two gzip members are one stream (as gzip -c a b > c makes) */
	write_text(csv, "1,2,0\n");
	gzFile g = gzopen(csv, "ab");
	assert_non_null(g);
	assert_int_equal(gzputs(g, "3,4,1\n"), 6);
	assert_int_equal(gzclose(g), Z_OK);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	assert_int_equal(tg_load_csv(ctx, csv, NULL, &ds), 0);
	assert_int_equal(ds.n, 2);
	assert_near(ds.x[2], 3, 0);
	tg_dataset_free(&ds);
	/* a corrupted stream: the path appears once in the message */
	write_text(csv, "1,2,0\n3,4,1\n");
	FILE *f = fopen(csv, "r+b");
	assert_non_null(f);
	fseek(f, 12, SEEK_SET);
	fputc(0xff, f);
	fputc(0xff, f);
	fclose(f);
	assert_int_equal(tg_load_csv(ctx, csv, NULL, &ds), -1);
	assert_error(ctx, TG_EFORMAT, "bad gzip data");
	const char *msg = tg_error(ctx), *first = strstr(msg, csv);
	if (!first || strstr(first + 1, csv) || strstr(msg, "<fd:"))
		fail_msg("the path should appear once: %s", msg);
	tg_clear_error(ctx);
	/* a CSV whose gzip stream is cut short is an error, not fewer rows */
	write_text(csv, "1,2,0\n3,4,1\n5,6,0\n");
	{
		FILE *t = fopen(csv, "rb");
		unsigned char buf[256];
		size_t n = fread(buf, 1, sizeof buf, t);
		fclose(t);
		FILE *w = fopen(csv, "wb");
		fwrite(buf, 1, n - 6, w);
		fclose(w);
	}
	assert_int_equal(tg_load_csv(ctx, csv, NULL, &ds), -1);
	assert_error(ctx, TG_EFORMAT, "the gzip stream is cut short");
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void a_dangling_gz_link_is_named_as_such(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256], want[512];
	write_idx(tmp_file(&d, "train-images-idx3-ubyte", p), 0x803, 3, (uint32_t[]){ 3, 2, 2 },
		  PIXELS, 12);
	assert_int_equal(symlink("/nonexistent/train-images.gz",
				 tmp_file(&d, "train-images-idx3-ubyte.gz", p)), 0);
	write_idx(tmp_file(&d, "train-labels-idx1-ubyte", p), 0x801, 1, (uint32_t[]){ 3 },
		  LABELS, 3);
	snprintf(want, sizeof want,
		 "%s/train-images-idx3-ubyte.gz: cannot open: a symbolic link to a file that "
		 "does not exist", d.path);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset train, test;
	assert_int_equal(tg_load_mnist(ctx, d.path, &train, &test), -1);
	assert_error(ctx, TG_EIO, want);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void mnist_headers_are_checked_before_any_pixel_is_read(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256], want[512];
	write_idx(tmp_file(&d, "train-images-idx3-ubyte", p), 0x803, 3, (uint32_t[]){ 3, 2, 2 },
		  PIXELS, 12);
	write_idx(tmp_file(&d, "train-labels-idx1-ubyte", p), 0x801, 1, (uint32_t[]){ 3 },
		  LABELS, 3);
	write_idx(tmp_file(&d, "t10k-labels-idx1-ubyte", p), 0x801, 1, (uint32_t[]){ 32768 },
		  NULL, 0);
	/* test images claiming 32768 x 256 x 256, 2 GiB of pixels that are not there */
	write_idx(tmp_file(&d, "t10k-images-idx3-ubyte.gz", p), 0x803, 3,
		  (uint32_t[]){ 32768, 256, 256 }, PIXELS, 12);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset train, test;
	double t0 = seconds_now();
	assert_int_equal(tg_load_mnist(ctx, d.path, &train, &test), -1);
	/* 8 GiB as floats: over the memory bound on any machine, else the size */
	snprintf(want, sizeof want, "%s: 32768 images of 256x256 would take 8.00 GiB", p);
	assert_error(ctx, TG_EFORMAT, want);
	tg_clear_error(ctx);
	/* within the bound but of another size than the training images */
	write_idx(tmp_file(&d, "t10k-labels-idx1-ubyte", p), 0x801, 1, (uint32_t[]){ 64 }, NULL,
		  0);
	write_idx(tmp_file(&d, "t10k-images-idx3-ubyte.gz", p), 0x803, 3,
		  (uint32_t[]){ 64, 256, 256 }, PIXELS, 12);
	assert_int_equal(tg_load_mnist(ctx, d.path, &train, &test), -1);
	snprintf(want, sizeof want, "%s: images of 256x256, the training set's are 2x2", p);
	assert_error(ctx, TG_EFORMAT, want);
	assert_empty(&train);
	assert_empty(&test);
	double took = seconds_now() - t0;
	if (took > 0.5)
		fail_msg("refusing from the headers took %.3f s", took);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

/* Peak resident memory of this process, in bytes. */
static int64_t peak_rss(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)ru.ru_maxrss * 1024;
}

/* Writes `lines` lines of `line` as one gzip stream: a bomb of a few hundred
 * KB. */
static void write_bomb(const char *path, const char *line, int64_t lines)
{
	gzFile g = gzopen(path, "wb9");
	assert_non_null(g);
	enum { BLOCK = 1 << 20 };
	char *buf = malloc(BLOCK);
	assert_non_null(buf);
	size_t len = strlen(line), per = BLOCK / len;
	for (size_t i = 0; i < per; i++)
		memcpy(buf + i * len, line, len);
	for (int64_t done = 0; done < lines; done += (int64_t)per) {
		int64_t k = lines - done < (int64_t)per ? lines - done : (int64_t)per;
		assert_int_equal(gzwrite(g, buf, (unsigned)(k * (int64_t)len)), (int)(k * (int64_t)len));
	}
	free(buf);
	assert_int_equal(gzclose(g), Z_OK);
}

/* Seconds a bomb may take to be refused: 5 to 10 times what it takes on
 * two busy cores, and more under the sanitizers (several times slower). */
#if defined(__SANITIZE_ADDRESS__)
#define TIME_LIMIT 180.0
#else
#define TIME_LIMIT 30.0
#endif

/* In a child: loads path as CSV with opt (or as an IDX pair with labels
 * lbl), expects an error containing text, a peak RSS less than limit bytes
 * above the RSS before the load, and a time under TIME_LIMIT. */
static void bomb_must_fail(const char *path, const char *lbl, const tg_csv_options *opt,
			   const char *text, int64_t limit, const char *what)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int64_t before = peak_rss();
		tg_ctx *ctx = tg_ctx_new(1);
		tg_dataset ds;
		double t0 = seconds_now();
		int rc = lbl ? tg_load_idx(ctx, path, lbl, 10, &ds)
			     : tg_load_csv(ctx, path, opt, &ds);
		double took = seconds_now() - t0;
		int64_t peak = peak_rss();
		/* the growth: a sanitizer's shadow memory is there before */
		bool ok = rc == -1 && strstr(tg_error(ctx), text) && peak - before < limit &&
			  took < TIME_LIMIT;
		fprintf(stderr,
			"%s: %.2f s, peak RSS %.1f MB, %.1f MB more than before (bound %.1f MB): "
			"%s\n",
			what, took, (double)peak / 1e6, (double)(peak - before) / 1e6,
			(double)limit / 1e6, tg_error(ctx));
		tg_ctx_free(ctx);
		_exit(ok ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("%s: not refused in time and memory (see above)", what);
}

static void gzip_bombs_fail_fast_in_bounded_memory(void **state)
{
	(void)state;
	if (under_valgrind())
		skip();
	tmpdir d;
	tmp_make(&d);
	char csv[256], img[256], lbl[256];
	const int64_t MB = 1000 * 1000;
	/* 2^25 rows "0,1" (134 MB of text) in about 130 KB of gzip */
	tmp_file(&d, "bomb.csv.gz", csv);
	write_bomb(csv, "0,1\n", (int64_t)1 << 25);
	struct stat st;
	assert_int_equal(stat(csv, &st), 0);
	print_message("CSV bomb: %lld bytes of gzip\n", (long long)st.st_size);
	/* default options: stopped at TG_CSV_MAX_ROWS rows, whose real size is
	 * 8 bytes a row (a feature and a label) */
	int64_t real = TG_CSV_MAX_ROWS * 8;
	bomb_must_fail(csv, NULL, NULL, "more than 16777216 rows, the most a CSV may have",
		       2 * real + 64 * MB, "CSV bomb, default caps");
	/* a byte cap of 32 MB: stopped there */
	tg_csv_options opt = TG_CSV_DEFAULTS;
	opt.max_bytes = 32 * MB;
	bomb_must_fail(csv, NULL, &opt, "the data set would take more than 0.03 GiB (max_bytes",
		       2 * opt.max_bytes + 64 * MB, "CSV bomb, max_bytes 32 MB");
	opt.max_rows = 1000;
	bomb_must_fail(csv, NULL, &opt, "more than 1000 rows", 64 * MB, "CSV bomb, max_rows 1000");
	/* an IDX whose header claims 60000 images of 28x28 (188 MB as floats)
	 * and whose gzip stream runs on with 500 MB more */
	tmp_file(&d, "img.gz", img);
	tmp_file(&d, "lbl", lbl);
	write_idx(lbl, 0x801, 1, (uint32_t[]){ 60000 }, NULL, 0);
	gzFile g = gzopen(img, "wb9");
	assert_non_null(g);
	unsigned char head[16];
	put_be32(head, 0x803);
	put_be32(head + 4, 60000);
	put_be32(head + 8, 28);
	put_be32(head + 12, 28);
	assert_int_equal(gzwrite(g, head, 16), 16);
	static unsigned char zeros[1 << 20];
	for (int i = 0; i < 47 + 500; i++)
		assert_int_equal(gzwrite(g, zeros, sizeof zeros), (int)sizeof zeros);
	assert_int_equal(gzclose(g), Z_OK);
	real = 60000 * 784 * 4;
	bomb_must_fail(img, lbl, NULL, "unexpected data after the 47040000 bytes of pixels",
		       2 * real + 64 * MB, "IDX bomb");
	tmp_remove(&d);
}

/* ---- CSV text: marks, line ends, guesses, odd bytes -------------------------------- */

/* Loads text as a CSV (options NULL) and checks it gives rows x (n rows of
 * 2 features) and labels y. */
static void expect_rows(const char *path, const char *text, int n, const double *x,
			const int *y)
{
	write_bytes(path, text, strlen(text));
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	if (tg_load_csv(ctx, path, NULL, &ds) != 0)
		fail_msg("%s", tg_error(ctx));
	if (ds.n != n)
		fail_msg("%lld rows, expected %d", (long long)ds.n, n);
	assert_int_equal(ds.d, 2);
	for (int i = 0; i < n; i++) {
		assert_near(ds.x[2 * i], x[2 * i], 0);
		assert_near(ds.x[2 * i + 1], x[2 * i + 1], 0);
		assert_int_equal(ds.y[i], y[i]);
	}
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
}

static void csv_line_ends_and_a_byte_order_mark_read_alike(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256];
	const double x[6] = { 1, 2, 3, 4, 5, 6 };
	const int y[3] = { 0, 1, 0 };
	const char *texts[] = {
		"1,2,0\n3,4,1\n5,6,0\n",
		"1,2,0\r\n3,4,1\r\n5,6,0\r\n",
		"1,2,0\r3,4,1\r5,6,0\r",
		"1,2,0\r3,4,1\n5,6,0",
		"\xef\xbb\xbf" "1,2,0\n3,4,1\n5,6,0\n",
		"\xef\xbb\xbf" "1,2,0\r3,4,1\r5,6,0",
	};
	const char *names[] = { "a.csv", "a.csv.gz" };
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < LEN(texts); i++)
			expect_rows(tmp_file(&d, names[k], p), texts[i], 3, x, y);
	/* a header after a mark is still a header */
	expect_rows(tmp_file(&d, "h.csv", p), "\xef\xbb\xbf" "a,b,c\r1,2,0\r3,4,1\r5,6,0\r", 3, x,
		    y);
	/* a CRLF split across the reader's 64 KB chunks counts once: line numbers
	 * stay right */
	size_t n = 65536 * 2;
	char *big = malloc(n + 64);
	assert_non_null(big);
	size_t k = 0;
	while (k + 8 < 65535)
		k += (size_t)sprintf(big + k, "1,2,0\r\n");
	while (k < 65535)
		big[k++] = '\n';
	k += (size_t)sprintf(big + k, "\r\n3,x,1\r\n");
	big[k] = '\0';
	int lines = 0;
	for (size_t i = 0; i < k; i++)
		lines += big[i] == '\n';
	char want[64];
	snprintf(want, sizeof want, "line %d, column 2: \"x\" is not a number", lines);
	tmp_file(&d, "split.csv", p);
	write_bytes(p, big, k);
	expect_csv_error(p, NULL, TG_EFORMAT, want);
	free(big);
	tmp_remove(&d);
}

static void a_wrong_header_guess_is_explained(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256];
	tmp_file(&d, "guess.csv", p);
	/* line 1 is data with a missing value; line 2 has one too */
	write_text(p, "1,?,0\n3,NA,1\n");
	expect_csv_error(p, NULL, TG_EFORMAT,
			 "line 2, column 2: \"NA\" is not a number (line 1 was taken for a header: "
			 "its column 2 \"?\" is not a number; TG_CSV_HEADER_NO reads it as data)");
	/* only one line, taken for a header */
	write_text(p, "5,x,1\n");
	expect_csv_error(p, NULL, TG_EFORMAT,
			 "no data rows after the header (line 1 was taken for a header: its "
			 "column 2 \"x\" is not a number");
	/* said as asked, no guess to explain */
	tg_csv_options opt = TG_CSV_DEFAULTS;
	opt.header = TG_CSV_HEADER_NO;
	expect_csv_error(p, &opt, TG_EFORMAT, "line 1, column 2: \"x\" is not a number");
	/* an empty field names no column: line 1 with a missing value (or only
	 * blanks there) is data and its gap an error, not a header dropped
	 * without a word; a header with an empty name is still one */
	write_text(p, "1,,0\n3,4,1\n");
	expect_csv_error(p, NULL, TG_EFORMAT,
			 "line 1, column 2: \"\" is not a number (empty field)");
	write_text(p, "1,2, \t\n3,4,1\n");
	expect_csv_error(p, NULL, TG_EFORMAT,
			 "line 1, column 3: \"\" is not a number (empty field)");
	write_text(p, ",x,y\n3,4,1\n");
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	assert_int_equal(tg_load_csv(ctx, p, NULL, &ds), 0);
	assert_int_equal(ds.n, 1);
	assert_near(ds.x[0], 3, 0);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void long_fields_and_odd_bytes_give_whole_messages(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256], text[1024];
	tmp_file(&d, "odd.csv", p);
	/* a first field of 300 digits is a number (not a header) */
	int k = sprintf(text, "1.25");
	for (int i = 0; i < 296; i++)
		text[k++] = '0';
	k += sprintf(text + k, ",2,1\n3,4,0\n");
	write_text(p, text);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	assert_int_equal(tg_load_csv(ctx, p, NULL, &ds), 0);
	assert_int_equal(ds.n, 2);
	assert_near(ds.x[0], 1.25, 0);
	assert_near(ds.x[2], 3, 0);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	/* a long word: shown cut at 40 characters with "...", the message whole */
	k = 0;
	for (int i = 0; i < 300; i++)
		text[k++] = 'a' + i % 26;
	sprintf(text + k, ",2,1\n");
	char full[1100];
	snprintf(full, sizeof full, "1,2,0\n%s", text);
	write_text(p, full);
	expect_csv_error(p, NULL, TG_EFORMAT,
			 "line 2, column 1: \"abcdefghijklmnopqrstuvwxyzabcdefghijklmn...\" is not "
			 "a number");
	/* a NUL inside a field: shown as \x00, the message goes on to the end */
	static const char nul[] = "1,2,0\n3,4\0" "5,1\n";
	write_bytes(p, nul, sizeof nul - 1);
	expect_csv_error(p, NULL, TG_EFORMAT, "line 2, column 2: \"4\\x005\" is not a number");
	/* a line longer than a quarter of max_bytes, and a first line of more
	 * columns than max_bytes holds, stop before they are taken in */
	enum { WIDE = 600000 };
	char *wide = malloc(WIDE + 2);
	assert_non_null(wide);
	for (int i = 0; i < WIDE; i += 2) {
		wide[i] = '1';
		wide[i + 1] = ',';
	}
	wide[WIDE - 1] = '\n';
	write_bytes(p, wide, WIDE);
	tg_csv_options opt = TG_CSV_DEFAULTS;
	opt.max_bytes = 1 << 20;
	expect_csv_error(p, &opt, TG_EFORMAT, "line 1 is longer than 262144 bytes");
	opt.max_bytes = 4 << 20;
	expect_csv_error(p, &opt, TG_EFORMAT,
			 "line 1: 300000 columns would take more than 0.00 GiB (max_bytes)");
	free(wide);
	tmp_remove(&d);
}

/* ---- float targets ------------------------------------------------------------ */

static void csv_float_targets_by_name_and_by_index(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256];
	tmp_file(&d, "r.csv", p);
	write_text(p, "a, y1, b, y2\n1, 0.5, 2, -3\n4, 1.25, 5, 6.5\n7, 2, 8, 9\n");
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	tg_csv_options o = TG_CSV_DEFAULTS;
	o.float_targets = true;
	o.target_names = (const char *const[]){ "y2", "y1" }; /* in this order */
	o.ntargets = 2;
	assert_int_equal(tg_load_csv(ctx, p, &o, &ds), 0);
	assert_int_equal(ds.n, 3);
	assert_int_equal(ds.d, 2);
	assert_int_equal(ds.tdim, 2);
	assert_null(ds.y);
	assert_int_equal(ds.classes, 0);
	const float want_x[] = { 1, 2, 4, 5, 7, 8 }, want_t[] = { -3, 0.5, 6.5, 1.25, 9, 2 };
	for (int i = 0; i < 6; i++) {
		assert_near(ds.x[i], want_x[i], 0);
		assert_near(ds.t[i], want_t[i], 0);
	}
	tg_dataset_free(&ds);
	/* the same columns by index, one from the end; scale leaves targets alone */
	o.target_names = NULL;
	o.target_columns = (const int[]){ -1, 1 };
	o.scale = 2;
	assert_int_equal(tg_load_csv(ctx, p, &o, &ds), 0);
	assert_near(ds.x[0], 0.5, 0);
	assert_near(ds.t[0], -3, 0);
	assert_near(ds.t[1], 0.5, 0);
	tg_dataset_free(&ds);
	/* one float target as label_column (the default: last) */
	tg_csv_options one = TG_CSV_DEFAULTS;
	one.float_targets = true;
	assert_int_equal(tg_load_csv(ctx, p, &one, &ds), 0);
	assert_int_equal(ds.d, 3);
	assert_int_equal(ds.tdim, 1);
	assert_near(ds.t[2], 9, 0);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);

	o.target_columns = NULL;
	o.scale = 0;
	o.target_names = (const char *const[]){ "y1", "nope" };
	expect_csv_error(p, &o, TG_EARG, "no column named \"nope\" in the header");
	o.target_names = (const char *const[]){ "y1", "y1" };
	expect_csv_error(p, &o, TG_EARG, "column 2 is named as a target twice");
	/* a name the header gives two columns does not pick one of them */
	tmp_file(&d, "dup.csv", p);
	write_text(p, "a,y1,y1,y2\n1,2,3,4\n");
	o.target_names = (const char *const[]){ "y2", "y1" };
	expect_csv_error(p, &o, TG_EARG,
			 "columns 2 and 3 are both named \"y1\" in the header; choose by index");
	/* a header that names one column more or fewer than the rows hold
	 * would put each name on another column: y1 on a, or y2 off the row */
	tmp_file(&d, "short.csv", p);
	write_text(p, "y1,b,y2\n1,2,3,4\n5,6,7,8\n");
	o.target_names = (const char *const[]){ "y2", "y1" };
	expect_csv_error(p, &o, TG_EFORMAT,
			 "line 2: 4 columns, but the header (line 1) names 3: the target names "
			 "cannot be matched to columns");
	tmp_file(&d, "long.csv", p);
	write_text(p, "\n a,y1,b,y2 \n1,2,3\n");
	expect_csv_error(p, &o, TG_EFORMAT,
			 "line 3: 3 columns, but the header (line 2) names 4");
	/* empty fields at the header's end (a trailing comma) name no column */
	tmp_file(&d, "trail.csv", p);
	write_text(p, "a,y1,b,y2,,\n1,2,3,4\n");
	{
		tg_ctx *tc = tg_ctx_new(1);
		tg_dataset td;
		assert_int_equal(tg_load_csv(tc, p, &o, &td), 0);
		assert_int_equal(td.d, 2);
		assert_near(td.t[0], 4, 0);
		assert_near(td.t[1], 2, 0);
		tg_dataset_free(&td);
		tg_ctx_free(tc);
	}
	tmp_file(&d, "r.csv", p);
	o.target_names = NULL;
	o.target_columns = (const int[]){ 1, 9 };
	expect_csv_error(p, &o, TG_EARG, "target column 9 out of range for 4 columns");
	tg_csv_options labels = TG_CSV_DEFAULTS; /* two class-label columns: no */
	labels.target_columns = (const int[]){ 1, 3 };
	labels.ntargets = 2;
	expect_csv_error(p, &labels, TG_EARG,
			 "tg_load_csv: ntargets 2: a class label is 1 column; several targets "
			 "need float_targets");
	/* columns and names at once could disagree: neither is taken */
	tg_csv_options both = o;
	both.target_columns = (const int[]){ 1, 3 };
	both.target_names = (const char *const[]){ "y2", "y1" };
	expect_csv_error(p, &both, TG_EARG,
			 "tg_load_csv: target_columns and target_names both given");
	/* each bad option is named, with what it may be */
	tg_csv_options bad = TG_CSV_DEFAULTS;
	bad.ntargets = 2;
	expect_csv_error(p, &bad, TG_EARG,
			 "tg_load_csv: ntargets 2 without target_columns or target_names");
	bad = TG_CSV_DEFAULTS;
	bad.classes = TG_DATA_MAX_CLASSES + 1;
	expect_csv_error(p, &bad, TG_EARG, "tg_load_csv: classes 65537: at most 65536");
	bad = TG_CSV_DEFAULTS;
	bad.scale = INFINITY;
	expect_csv_error(p, &bad, TG_EARG, "tg_load_csv: scale inf is not finite; features are divided");
	bad = TG_CSV_DEFAULTS;
	bad.max_rows = -1;
	expect_csv_error(p, &bad, TG_EARG, "tg_load_csv: max_rows -1 is negative");
	bad = TG_CSV_DEFAULTS;
	bad.header = (tg_csv_header)7;
	expect_csv_error(p, &bad, TG_EARG, "tg_load_csv: header 7: not TG_CSV_HEADER_AUTO");
	tg_csv_options noheader = TG_CSV_DEFAULTS;
	noheader.header = TG_CSV_HEADER_NO;
	noheader.float_targets = true;
	noheader.target_names = (const char *const[]){ "y1" };
	noheader.ntargets = 1;
	tmp_file(&d, "n.csv", p);
	write_text(p, "1,2,3\n4,5,6\n");
	expect_csv_error(p, &noheader, TG_EARG, "asked for by name, but the file has no header");
	/* a label by name: a class label column chosen from the header, its
	 * name in quotes as spreadsheets write it */
	tmp_file(&d, "l.csv", p);
	write_text(p, "\"kind\",\"w\"\n1,0.5\n0,2\n");
	tg_csv_options byname = TG_CSV_DEFAULTS;
	byname.target_names = (const char *const[]){ "kind" };
	byname.ntargets = 1;
	ctx = tg_ctx_new(1);
	assert_int_equal(tg_load_csv(ctx, p, &byname, &ds), 0);
	assert_int_equal(ds.classes, 2);
	assert_int_equal(ds.y[0], 1);
	assert_near(ds.x[1], 2, 0);
	assert_null(ds.t);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

/* Quoted fields as RFC 4180 writes them: a comma inside is part of the
 * field, "" is one quote, in the header and in data rows alike. */
static void csv_quoted_fields_hold_commas_and_escaped_quotes(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char p[256];
	tmp_file(&d, "q.csv", p);
	write_text(p, "\"a,b\", \"say \"\"hi\"\"\" ,y\n1,\"2.5\",0\n3, \"4\" ,1\n");
	tg_csv_options o = TG_CSV_DEFAULTS;
	o.target_names = (const char *const[]){ "say \"hi\"" };
	o.ntargets = 1;
	o.float_targets = true;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	assert_int_equal(tg_load_csv(ctx, p, &o, &ds), 0);
	assert_int_equal(ds.n, 2);
	assert_int_equal(ds.d, 2);
	assert_near(ds.t[0], 2.5, 0);
	assert_near(ds.t[1], 4, 0);
	assert_near(ds.x[0], 1, 0);
	assert_near(ds.x[3], 1, 0);
	tg_dataset_free(&ds);
	o.target_names = (const char *const[]){ "a,b" };
	assert_int_equal(tg_load_csv(ctx, p, &o, &ds), 0);
	assert_near(ds.t[1], 3, 0);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	/* the default label column of a three-column header */
	write_text(p, "\"a,b\",c,y\n1,2,0\n3,4,1\n");
	ctx = tg_ctx_new(1);
	assert_int_equal(tg_load_csv(ctx, p, NULL, &ds), 0);
	assert_int_equal(ds.d, 2);
	assert_int_equal(ds.y[1], 1);
	tg_dataset_free(&ds);
	/* blanks inside the quotes around a number, as around an unquoted one */
	write_text(p, "x,z,y\n\" 1.5\",\"-2e3 \",\"\t1 \"\n");
	assert_int_equal(tg_load_csv(ctx, p, NULL, &ds), 0);
	assert_near(ds.x[0], 1.5, 0);
	assert_near(ds.x[1], -2000, 0);
	assert_int_equal(ds.y[0], 1);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	write_text(p, "x,y\n1,0\n\"  \",1\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 3, column 1: \"  \" is not a number");
	/* quoting gone wrong names the line and column */
	write_text(p, "x,\"y\n1,0\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 1, column 2: a quoted field with no closing");
	write_text(p, "x,y\n1,0\n\"2\"3,1\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 3, column 1: text after the closing quote");
	write_text(p, "1,\"\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 1, column 2: a quoted field with no closing");
	write_text(p, "\"\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 1, column 1: a quoted field with no closing");
	write_text(p, "x,y\n\"1,5\",1\n");
	expect_csv_error(p, NULL, TG_EFORMAT, "line 2, column 1: \"1,5\" is not a number");
	tmp_remove(&d);
}

/* 5 samples of 2 features and 3 targets: row i is (i, 10 i), (i, -i, 0.5 i). */
static tg_dataset target_set(void)
{
	tg_dataset ds = { .n = 5, .d = 2, .tdim = 3 };
	ds.x = malloc(10 * sizeof(float));
	ds.t = malloc(15 * sizeof(float));
	for (int i = 0; i < 5; i++) {
		ds.x[2 * i] = (float)i;
		ds.x[2 * i + 1] = 10.0f * (float)i;
		ds.t[3 * i] = (float)i;
		ds.t[3 * i + 1] = -(float)i;
		ds.t[3 * i + 2] = 0.5f * (float)i;
	}
	return ds;
}

static void float_targets_travel_through_subsets_splits_and_batches(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(5);
	tg_dataset ds = target_set(), sub, head, tr, va;
	assert_int_equal(tg_dataset_subset(ctx, &ds, (const int64_t[]){ 4, 1, 4 }, 3, &sub), 0);
	assert_int_equal(sub.tdim, 3);
	assert_null(sub.y);
	assert_near(sub.t[0], 4, 0);
	assert_near(sub.t[4], -1, 0);
	assert_near(sub.t[8], 2, 0);
	assert_int_equal(tg_dataset_head(ctx, &ds, 2, &head), 0);
	assert_near(head.t[5], 0.5, 0);
	assert_int_equal(tg_dataset_split(ctx, &ds, 2, &tr, &va), 0);
	/* every row keeps its own targets: t = (x0, -x0, x0 / 2) */
	for (int64_t i = 0; i < tr.n; i++) {
		assert_near(tr.t[3 * i], tr.x[2 * i], 0);
		assert_near(tr.t[3 * i + 1], -tr.x[2 * i], 0);
	}
	assert_near(va.t[3 * 1 + 2], 0.5 * va.x[2], 0);

	/* batches: t as a (B,3) step tensor of the batch dtype, no labels */
	tg_batcher *b = tg_batcher_new(ctx, &ds, 2, 0);
	assert_non_null(b);
	tg_batch bt;
	int64_t rows = 0;
	while (tg_batch_next(b, TG_F64, &bt)) {
		assert_null(bt.y);
		assert_null(bt.labels);
		assert_non_null(bt.t);
		assert_int_equal(tg_dtype_of(bt.t), TG_F64);
		assert_int_equal(tg_shape(bt.t)[0], bt.n);
		assert_int_equal(tg_shape(bt.t)[1], 3);
		const double *t = tg_data(bt.t), *x = tg_data(bt.x);
		for (int64_t i = 0; i < bt.n; i++) {
			assert_near(t[3 * i], (double)bt.idx[i], 0);
			assert_near(t[3 * i + 2], 0.5 * (double)bt.idx[i], 0);
			assert_near(x[2 * i + 1], 10.0 * (double)bt.idx[i], 0);
		}
		rows += bt.n;
		tg_reset(ctx);
	}
	assert_ctx_ok(ctx);
	assert_int_equal(rows, 5);
	tg_batcher_free(b);
	tg_tensor *t = tg_dataset_targets(ctx, &ds, (const int64_t[]){ 3 }, 1, TG_F32);
	assert_near(((const float *)tg_data(t))[1], -3, 0);
	tg_reset(ctx);

	/* a labelled set's batches carry the labels as an i32 index tensor */
	tg_dataset lab = { .n = 3, .d = 1, .classes = 4 };
	lab.x = (float[]){ 0, 1, 2 };
	lab.y = (int32_t[]){ 3, 0, 2 };
	b = tg_batcher_new(ctx, &lab, 3, 0);
	assert_true(tg_batch_next(b, TG_F32, &bt));
	assert_null(bt.t);
	assert_int_equal(tg_dtype_of(bt.labels), TG_I32);
	const int32_t *l = tg_data(bt.labels);
	for (int i = 0; i < 3; i++)
		assert_int_equal(l[i], lab.y[bt.idx[i]]);
	tg_batcher_free(b);
	tg_reset(ctx);
	assert_null(tg_dataset_targets(ctx, &lab, (const int64_t[]){ 0 }, 1, TG_F32));
	assert_error(ctx, TG_EARG, "tg_dataset_targets: the data set has class labels");
	tg_clear_error(ctx);

	tg_dataset_free(&ds);
	tg_dataset_free(&sub);
	tg_dataset_free(&head);
	tg_dataset_free(&tr);
	tg_dataset_free(&va);
	tg_ctx_free(ctx);
}

/* A batcher's arrays are sized for its data set's rows: a set replaced in
 * place (a subset into itself) with another number of rows, emptied, or given
 * labels it did not have is refused at the next batch, never walked with the
 * old sizes. Drawn with replacement, a batch draws from the rows there are. */
static void a_batcher_refuses_a_data_set_changed_under_it(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(4);
	tg_dataset src = numbered(10);
	tg_batcher *b = tg_batcher_new(ctx, &src, 4, 0);
	tg_batch batch;
	int batches = 0;
	while (tg_batch_next(b, TG_F32, &batch)) {
		batches++;
		tg_reset(ctx);
	}
	assert_int_equal(batches, 3);
	int64_t idx[1000];
	for (int i = 0; i < 1000; i++)
		idx[i] = i % 10;
	assert_int_equal(tg_dataset_subset(ctx, &src, idx, 1000, &src), 0);
	assert_false(tg_batch_next(b, TG_F32, &batch));
	assert_error(ctx, TG_EARG,
		     "tg_batch_next: the data set has 1000 rows, the batcher was made for 10");
	assert_null(batch.x);
	tg_clear_error(ctx);
	tg_batcher_free(b);
	/* shrunk in the middle of an epoch */
	b = tg_batcher_new(ctx, &src, 4, 0);
	assert_true(tg_batch_next(b, TG_F32, &batch));
	tg_reset(ctx);
	assert_int_equal(tg_dataset_head(ctx, &src, 3, &src), 0);
	assert_false(tg_batch_next(b, TG_F32, &batch));
	assert_error(ctx, TG_EARG, "the data set has 3 rows, the batcher was made for 1000");
	tg_clear_error(ctx);
	tg_batcher_free(b);
	/* with replacement any number of rows will do, but not none */
	b = tg_batcher_new(ctx, &src, 4, TG_BATCH_REPLACE);
	for (int i = 0; i < 1000; i++)
		idx[i] = i % 3;
	assert_int_equal(tg_dataset_subset(ctx, &src, idx, 1000, &src), 0);
	for (int k = 0; k < 20; k++) {
		assert_true(tg_batch_next(b, TG_F32, &batch));
		for (int64_t i = 0; i < batch.n; i++)
			assert_true(batch.idx[i] >= 0 && batch.idx[i] < 1000);
		tg_reset(ctx);
	}
	tg_dataset_free(&src);
	assert_false(tg_batch_next(b, TG_F32, &batch));
	assert_error(ctx, TG_EARG, "tg_batch_next: empty data set");
	tg_clear_error(ctx);
	tg_batcher_free(b);
	/* float targets replaced by class labels: the batcher has no room for them */
	tg_dataset ts = target_set();
	b = tg_batcher_new(ctx, &ts, 2, 0);
	tg_dataset_free(&ts);
	ts = numbered(5);
	assert_false(tg_batch_next(b, TG_F32, &batch));
	assert_error(ctx, TG_EARG, "the data set has class labels, the batcher was made for "
				   "float targets");
	tg_batcher_free(b);
	tg_dataset_free(&ts);
	tg_ctx_free(ctx);
}

static void the_standardiser_uses_the_training_split_only(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset train = target_set(), test = target_set();
	for (int i = 0; i < 5; i++)
		train.x[2 * i + 1] = 7; /* a constant feature */
	for (int i = 0; i < 10; i++)
		test.x[i] += 100; /* the test set's numbers must not move the fit */
	tg_standardiser st;
	assert_int_equal(tg_standardiser_fit(ctx, &train, true, &st), 0);
	assert_int_equal(st.d, 2);
	assert_int_equal(st.tdim, 3);
	/* feature 0 is 0..4: mean 2, population std sqrt(2); feature 1 constant: std 1 */
	const double *mean = tg_data(st.mean), *sd = tg_data(st.std);
	assert_near(mean[0], 2, 1e-12);
	assert_near(sd[0], sqrt(2.0), 1e-12);
	assert_near(mean[1], 7, 1e-12);
	assert_near(sd[1], 1, 0);
	assert_near(((const double *)tg_data(st.target_std))[2], 0.5 * sqrt(2.0), 1e-12);
	/* a column of small numbers varies: it is scaled, not taken for constant */
	{
		tg_dataset tiny = { .n = 4, .d = 1, .classes = 1,
				    .x = (float[]){ -2e-14f, 2e-14f, -2e-14f, 2e-14f },
				    .y = (int32_t[]){ 0, 0, 0, 0 } };
		tg_standardiser ts;
		assert_int_equal(tg_standardiser_fit(ctx, &tiny, false, &ts), 0);
		assert_near(((const double *)tg_data(ts.std))[0], 2e-14, 1e-20);
		assert_int_equal(tg_standardiser_apply(ctx, &ts, &tiny), 0);
		assert_near(tiny.x[0], -1, 1e-6);
		assert_near(tiny.x[1], 1, 1e-6);
		/* a value so far out that its standard score overflows: an error,
		 * the data set unchanged */
		tg_dataset far = { .n = 2, .d = 1, .classes = 1, .x = (float[]){ 0, 1e30f },
				   .y = (int32_t[]){ 0, 0 } };
		assert_int_equal(tg_standardiser_apply(ctx, &ts, &far), -1);
		assert_error(ctx, TG_EARG, "row 1, feature 0: (1e+30 - mean 0) / std 2e-14 is "
					   "not finite in single precision");
		assert_near(far.x[0], 0, 0);
		tg_clear_error(ctx);
	}
	assert_string_equal(tg_name(st.mean), "standardiser.mean");
	assert_string_equal(tg_name(st.std), "standardiser.std");
	assert_string_equal(tg_name(st.target_mean), "standardiser.target_mean");
	assert_string_equal(tg_name(st.target_std), "standardiser.target_std");
	tg_tensor *list[4];
	assert_int_equal(tg_standardiser_tensors(&st, list), 4);
	assert_ptr_equal(list[0], st.mean);
	tg_reset(ctx); /* ctx tensors: they outlive the step */
	assert_near(((const double *)tg_data(st.mean))[0], 2, 1e-12);

	assert_int_equal(tg_standardiser_apply(ctx, &st, &train), 0);
	assert_int_equal(tg_standardiser_apply(ctx, &st, &test), 0);
	assert_near(train.x[0], -2 / sqrt(2.0), 1e-6);
	assert_near(train.x[1], 0, 0);
	assert_near(train.t[3 * 4 + 1], (-4 - -2) / sqrt(2.0), 1e-6);
	/* the test set with the training split's numbers: (0 + 100 - 2) / sqrt 2 */
	assert_near(test.x[0], 98 / sqrt(2.0), 1e-4);
	assert_near(test.x[1], 100 + 0 - 7 + 0, 1e-4); /* (100 - 7) / 1 */

	/* features only: no target tensors */
	tg_standardiser fo;
	assert_int_equal(tg_standardiser_fit(ctx, &train, false, &fo), 0);
	assert_null(fo.target_mean);
	assert_int_equal(tg_standardiser_tensors(&fo, NULL), 2);
	tg_dataset narrow = { .n = 1, .d = 3, .tdim = 3, .x = (float[]){ 1, 2, 3 },
			      .t = (float[]){ 1, 2, 3 } };
	assert_int_equal(tg_standardiser_apply(ctx, &st, &narrow), -1);
	assert_error(ctx, TG_ESHAPE, "fitted on 2 features and 3 targets; the data set has 3 "
				     "features and 3 targets");
	tg_clear_error(ctx);
	/* a NaN or an Inf in what is fitted is named by its row and column at
	 * the fit, not found later as a mean of NaN that every apply refuses */
	tg_dataset holes = { .n = 3, .d = 2, .tdim = 2, .x = (float[]){ 1, 2, 3, NAN, 5, 6 },
			     .t = (float[]){ 1, 2, 3, 4, -INFINITY, 6 } };
	assert_int_equal(tg_standardiser_fit(ctx, &holes, false, &fo), -1);
	assert_error(ctx, TG_EARG, "tg_standardiser_fit: row 1, feature 1 is nan; data must be "
				   "finite");
	assert_null(fo.mean);
	tg_clear_error(ctx);
	holes.x[3] = 4;
	assert_int_equal(tg_standardiser_fit(ctx, &holes, false, &fo), 0); /* targets not fitted */
	assert_int_equal(tg_standardiser_fit(ctx, &holes, true, &fo), -1);
	assert_error(ctx, TG_EARG, "tg_standardiser_fit: row 2, target 0 is -inf");
	tg_clear_error(ctx);
	tg_dataset lab = { .n = 1, .d = 2, .classes = 2, .x = (float[]){ 1, 2 },
			   .y = (int32_t[]){ 1 } };
	assert_int_equal(tg_standardiser_fit(ctx, &lab, true, &fo), -1);
	assert_error(ctx, TG_EARG, "targets asked for, but the data set has class labels");
	tg_clear_error(ctx);
	/* numbers loaded from a damaged checkpoint, or set by hand: a deviation
	 * of 0, a NaN, a tensor of another size, one freed by tg_reset are
	 * errors, and the data set stays as it was */
	tg_dataset two = { .n = 1, .d = 2, .classes = 2, .x = (float[]){ 5, 6 },
			   .y = (int32_t[]){ 1 } };
	assert_int_equal(tg_standardiser_fit(ctx, &train, false, &fo), 0);
	double *dev = tg_data_mut(fo.std);
	dev[1] = 0;
	assert_int_equal(tg_standardiser_apply(ctx, &fo, &two), -1);
	assert_error(ctx, TG_EARG, "tg_standardiser_apply: standardiser.std[1] is 0; a deviation "
				   "must be positive and finite");
	tg_clear_error(ctx);
	dev[1] = 1;
	((double *)tg_data_mut(fo.mean))[0] = NAN;
	assert_int_equal(tg_standardiser_apply(ctx, &fo, &two), -1);
	assert_error(ctx, TG_EARG, "standardiser.mean[0] is nan; a mean must be finite");
	tg_clear_error(ctx);
	assert_near(two.x[0], 5, 0);
	assert_near(two.x[1], 6, 0);
	((double *)tg_data_mut(fo.mean))[0] = 0;
	tg_standardiser bad = fo;
	bad.std = tg_keep(tg_ones(ctx, TG_F32, 1, (int64_t[]){ 2 }));
	assert_int_equal(tg_standardiser_apply(ctx, &bad, &two), -1);
	assert_error(ctx, TG_EARG, "tg_standardiser_apply: std is f32 with 2 values; expected 2 f64");
	tg_clear_error(ctx);
	bad.std = tg_ones(ctx, TG_F64, 1, (int64_t[]){ 2 });
	tg_reset(ctx);
	assert_int_equal(tg_standardiser_apply(ctx, &bad, &two), -1);
	assert_int_equal(tg_status_of(ctx), TG_ESTALE);
	tg_clear_error(ctx);
	/* numbers taken back from a file that lacks some (tg_state_tensor gave
	 * NULL), or of another context: named, not a -1 with no error, nor a
	 * read of another context's tensor */
	assert_int_equal(tg_standardiser_fit(ctx, &train, true, &bad), 0);
	bad.target_std = NULL;
	tg_dataset narrow3 = target_set();
	float before = narrow3.x[2];
	assert_int_equal(tg_standardiser_apply(ctx, &bad, &narrow3), -1);
	assert_error(ctx, TG_ENULL, "tg_standardiser_apply: target_std is NULL");
	assert_near(narrow3.x[2], before, 0);
	tg_clear_error(ctx);
	tg_ctx *other = tg_ctx_new(2);
	bad = fo;
	bad.mean = tg_set_name(tg_keep(tg_zeros(other, TG_F64, 1, (int64_t[]){ 2 })), "m2");
	assert_int_equal(tg_standardiser_apply(ctx, &bad, &two), -1);
	assert_error(ctx, TG_ECTX, "tg_standardiser_apply: m2 belongs to another context");
	assert_near(two.x[0], 5, 0);
	tg_clear_error(ctx);
	tg_ctx_free(other);
	tg_dataset_free(&narrow3);
	tg_dataset_free(&train);
	tg_dataset_free(&test);
	tg_ctx_free(ctx);
}

static void the_shipped_regression_and_binary_data_load(void **state)
{
	(void)state;
	const char *root = getenv("TG_SOURCE_ROOT");
	char p[512];
	tg_ctx *ctx = tg_ctx_new(1);
	tg_dataset ds;
	tg_csv_options o = TG_CSV_DEFAULTS;
	o.header = TG_CSV_HEADER_YES;
	o.float_targets = true;
	o.target_names = (const char *const[]){ "progression" };
	o.ntargets = 1;
	snprintf(p, sizeof p, "%s/demos/data/diabetes.csv", root ? root : ".");
	assert_int_equal(tg_load_csv(ctx, p, &o, &ds), 0);
	assert_int_equal(ds.n, 442);
	assert_int_equal(ds.d, 10);
	/* first row: 59,2,32.1,101.0,157,93.2,38.0,4.0,4.8598,87,151 */
	assert_near(ds.x[0], 59, 0);
	assert_near(ds.x[9], 87, 0);
	assert_near(ds.t[0], 151, 0);
	for (int64_t i = 0; i < ds.n; i++)
		assert_in_range((int)ds.t[i], 25, 346);
	tg_dataset_free(&ds);
	tg_csv_options b = TG_CSV_DEFAULTS;
	b.header = TG_CSV_HEADER_YES;
	b.float_targets = true;
	snprintf(p, sizeof p, "%s/demos/data/breast_cancer.csv", root ? root : ".");
	assert_int_equal(tg_load_csv(ctx, p, &b, &ds), 0);
	assert_int_equal(ds.n, 569);
	assert_int_equal(ds.d, 30);
	int benign = 0;
	for (int64_t i = 0; i < ds.n; i++) {
		assert_true(ds.t[i] == 0 || ds.t[i] == 1);
		benign += ds.t[i] == 1;
	}
	assert_int_equal(benign, 357);
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(iris_loads_150_rows_of_4_features_and_3_classes),
		cmocka_unit_test(digits_loads_1797_images_of_64_pixels_scaled_by_16),
		cmocka_unit_test(idx_files_read_back_plain_and_gzipped),
		cmocka_unit_test(idx_with_a_wrong_magic_is_rejected),
		cmocka_unit_test(idx_with_truncated_images_is_rejected),
		cmocka_unit_test(idx_with_truncated_labels_is_rejected),
		cmocka_unit_test(a_gzip_stream_cut_short_reads_as_truncated),
		cmocka_unit_test(idx_with_unequal_counts_is_rejected),
		cmocka_unit_test(idx_with_a_label_out_of_range_is_rejected),
		cmocka_unit_test(idx_with_trailing_bytes_is_rejected),
		cmocka_unit_test(idx_with_a_zero_dimension_is_rejected),
		cmocka_unit_test(idx_with_absurd_dimensions_is_rejected_without_allocating),
		cmocka_unit_test(running_out_of_memory_while_loading_is_an_error_not_a_crash),
		cmocka_unit_test(a_missing_idx_file_is_an_io_error),
		cmocka_unit_test(the_mnist_loader_prefers_gz_and_falls_back_to_plain),
		cmocka_unit_test(fashion_mnist_loads_60000_and_10000_images_when_installed),
		cmocka_unit_test(csv_reads_numbers_labels_and_an_auto_detected_header),
		cmocka_unit_test(csv_options_pick_the_label_column_scale_and_header),
		cmocka_unit_test(csv_with_a_ragged_row_names_the_line),
		cmocka_unit_test(csv_with_a_non_numeric_field_names_line_and_column),
		cmocka_unit_test(csv_with_a_bad_label_is_rejected),
		cmocka_unit_test(an_empty_csv_is_rejected),
		cmocka_unit_test(the_iris_loader_checks_the_feature_count),
		cmocka_unit_test(split_partitions_the_rows_deterministically_for_a_seed),
		cmocka_unit_test(head_and_subset_copy_the_chosen_rows),
		cmocka_unit_test(big_data_sets_lie_on_huge_page_advice_with_their_values),
		cmocka_unit_test(a_batch_gathers_rows_and_labels_in_either_dtype),
		cmocka_unit_test(image_samples_come_in_batches_of_their_shape),
		cmocka_unit_test(batches_with_replacement_draw_valid_rows_deterministically),
		cmocka_unit_test(shuffled_epochs_deliver_each_sample_exactly_once),
		cmocka_unit_test(drop_last_drops_the_short_batch),
		cmocka_unit_test(shards_of_a_batcher_cover_each_epoch_once),
		cmocka_unit_test(a_batcher_refuses_a_data_set_changed_under_it),
		cmocka_unit_test(a_fifo_or_a_device_is_refused_at_once),
		cmocka_unit_test(gzip_edges_are_errors_that_name_the_file_once),
		cmocka_unit_test(a_dangling_gz_link_is_named_as_such),
		cmocka_unit_test(mnist_headers_are_checked_before_any_pixel_is_read),
		cmocka_unit_test(gzip_bombs_fail_fast_in_bounded_memory),
		cmocka_unit_test(csv_line_ends_and_a_byte_order_mark_read_alike),
		cmocka_unit_test(a_wrong_header_guess_is_explained),
		cmocka_unit_test(long_fields_and_odd_bytes_give_whole_messages),
		cmocka_unit_test(csv_float_targets_by_name_and_by_index),
		cmocka_unit_test(csv_quoted_fields_hold_commas_and_escaped_quotes),
		cmocka_unit_test(float_targets_travel_through_subsets_splits_and_batches),
		cmocka_unit_test(the_standardiser_uses_the_training_split_only),
		cmocka_unit_test(the_shipped_regression_and_binary_data_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
