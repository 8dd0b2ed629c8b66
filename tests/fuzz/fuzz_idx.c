/*
 * fuzz_idx.c - libFuzzer target: the IDX reader (tg_load_idx, tg_load_mnist).
 *
 * Input: a flags byte, a little-endian u16 splitting the rest into the
 * images file and the labels file, then the two files' bytes.
 *   flags bit 0, 1: gzip the images, the labels before writing them (the
 *                   bytes may also be gzip data already: both paths run)
 *   flags bit 2:    write them as the four files of an MNIST directory and
 *                   call tg_load_mnist instead
 *   flags bits 3-5: the classes argument
 * A load either fails with an error naming the file and an empty data set,
 * or gives exactly the pixels / 255 and labels the files hold; a loaded set
 * then goes through the data-set functions (fuzz_dataset.h).
 */
#define _GNU_SOURCE
#include "fuzz_dataset.h"

#include <sys/stat.h>

static fuzz_file images, labels;
static char dir[4096]; /* for tg_load_mnist; on tmpfs when there is one */

static void remove_dir(void)
{
	static const char *const names[] = {
		"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
		"t10k-labels-idx1-ubyte",
	};
	char path[4200];
	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
		snprintf(path, sizeof path, "%s/%s.gz", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fuzz_file_open(&images, "images") || fuzz_file_open(&labels, "labels")) {
		perror("fuzz_idx: temporary file");
		exit(1);
	}
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof dir, "%s/tg_fuzz_idx_XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("fuzz_idx: temporary directory");
		exit(1);
	}
	atexit(remove_dir);
	return 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Writes dir/name (with ".gz" when gz), removing the other spelling. */
static void write_named(const char *name, bool gz, const void *p, size_t n)
{
	char path[4200], other[4200];
	snprintf(path, sizeof path, "%s/%s%s", dir, name, gz ? ".gz" : "");
	snprintf(other, sizeof other, "%s/%s%s", dir, name, gz ? "" : ".gz");
	unlink(other);
	FILE *f = fopen(path, "wb");
	require(f, "cannot write %s", path);
	require(fwrite(p, 1, n, f) == n || n == 0, "cannot write %s", path);
	fclose(f);
}

/* A loaded set against the plain file contents it came from (when the
 * fuzzer knows them: not when the bytes were gzip data themselves). */
static void check_contents(const tg_dataset *ds, const uint8_t *im, size_t im_n,
			   const uint8_t *lb, size_t lb_n, int classes, bool mnist)
{
	require(im_n >= 16 && lb_n >= 8, "loaded from %zu + %zu bytes", im_n, lb_n);
	int64_t n = be32(im + 4), d = (int64_t)be32(im + 8) * be32(im + 12);
	require(ds->n == n && ds->d == d && (size_t)(n * d) == im_n - 16 &&
			(size_t)n == lb_n - 8 && be32(lb + 4) == (uint32_t)n,
		"loaded %lld x %lld from a header of %lld x %lld", (long long)ds->n,
		(long long)ds->d, (long long)n, (long long)d);
	int maxl = 0;
	for (int64_t i = 0; i < n * d; i++)
		require(ds->x[i] == (float)im[16 + i] / 255.0f, "pixel %lld: %g for %u",
			(long long)i, ds->x[i], im[16 + i]);
	for (int64_t i = 0; i < n; i++) {
		require(ds->y[i] == lb[8 + i], "label %lld: %d for %u", (long long)i, (int)ds->y[i],
			lb[8 + i]);
		if (lb[8 + i] > maxl)
			maxl = lb[8 + i];
	}
	/* tg_load_mnist: ten at least, more when a label asks for them */
	int want = classes > 0 && !(mnist && maxl + 1 > classes) ? classes : maxl + 1;
	require(ds->classes == want, "%d classes (asked %d)", (int)ds->classes, classes);
}

static bool is_gzip(const uint8_t *p, size_t n)
{
	return n >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int classes_of[] = { 0, 10, 1, 3, 256, -1, 65536, 65537 };
	if (size < 3)
		return 0;
	unsigned flags = data[0];
	size_t rest = size - 3, split = (size_t)(data[1] | data[2] << 8);
	if (split > rest)
		split = rest;
	const uint8_t *im = data + 3, *lb = data + 3 + split;
	size_t im_n = split, lb_n = rest - split;
	bool gz_im = flags & 1, gz_lb = flags & 2, mnist = flags & 4;
	int classes = mnist ? 10 : classes_of[(flags >> 3) & 7];

	size_t zi_n = 0, zl_n = 0;
	unsigned char *zi = gz_im ? gzip_bytes(im, im_n, &zi_n) : NULL;
	unsigned char *zl = gz_lb ? gzip_bytes(lb, lb_n, &zl_n) : NULL;
	const void *fi = zi ? zi : im, *fl = zl ? zl : lb;
	size_t fi_n = zi ? zi_n : im_n, fl_n = zl ? zl_n : lb_n;

	fuzz_alloc al = { 0 };
	tg_ctx *ctx = fuzz_ctx_new(1, &al);
	require(ctx, "no context");
	tg_set_arena_limit(ctx, 64 << 20);
	tg_dataset ds = { 0 }, test = { 0 };
	int rc;
	if (mnist) {
		write_named("train-images-idx3-ubyte", gz_im, fi, fi_n);
		write_named("train-labels-idx1-ubyte", gz_lb, fl, fl_n);
		write_named("t10k-images-idx3-ubyte", gz_im, fi, fi_n);
		write_named("t10k-labels-idx1-ubyte", gz_lb, fl, fl_n);
		rc = tg_load_mnist(ctx, dir, &ds, &test);
		check_loaded(ctx, rc, &ds, dir, NULL);
		check_loaded(ctx, rc, &test, dir, NULL);
		if (rc == 0)
			require(test.n == ds.n && test.d == ds.d &&
					!memcmp(test.x, ds.x, (size_t)(ds.n * ds.d) * sizeof(float)),
				"the same files gave a different test set");
	} else {
		require(!fuzz_file_set(&images, fi, fi_n) && !fuzz_file_set(&labels, fl, fl_n),
			"cannot write the input files");
		rc = tg_load_idx(ctx, images.path, labels.path, classes, &ds);
		if (classes > TG_DATA_MAX_CLASSES)
			require(rc == -1 && tg_status_of(ctx) == TG_EARG, "%d classes accepted", classes);
		check_loaded(ctx, rc, &ds, images.path, labels.path);
	}
	if (rc == 0) {
		if (!is_gzip(fi, fi_n) || zi) {
			if (!is_gzip(fl, fl_n) || zl)
				check_contents(&ds, im, im_n, lb, lb_n, classes, mnist);
		}
		drive_dataset(ctx, &ds, size >= 8 ? data + size - 8 : data, size >= 8 ? 8 : size);
	}
	tg_dataset_free(&ds);
	tg_dataset_free(&test);
	require(!ds.x && !ds.n, "tg_dataset_free left data");
	tg_ctx_free(ctx);
	free(zi);
	free(zl);
	return 0;
}
