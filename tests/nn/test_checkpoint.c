/*
 * test_checkpoint.c - checkpoints: values survive a round trip exactly; a
 * file built by hand from the documented format loads; every kind of bad
 * file is rejected with the model untouched; a failed save leaves the file
 * that was at the path as it was.
 */
#define _GNU_SOURCE /* unshare, for the full-device test */
#include "../engine/test_util.h"

#include "tapegrad_io.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <signal.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* ---- helpers ---------------------------------------------------------------- */

typedef struct tmpdir {
	char path[64];
} tmpdir;

static void tmp_make(tmpdir *d)
{
	snprintf(d->path, sizeof d->path, "/tmp/tg_ckpt_XXXXXX");
	assert_non_null(mkdtemp(d->path));
}

/* Number of entries in the directory (temporary files left behind show up). */
static int tmp_count(const tmpdir *d)
{
	DIR *dir = opendir(d->path);
	assert_non_null(dir);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(dir)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(dir);
	return n;
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

typedef struct bytes {
	unsigned char *p;
	size_t n;
} bytes;

static bytes slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	bytes b = { malloc(1 << 20), 0 };
	assert_non_null(b.p);
	b.n = fread(b.p, 1, 1 << 20, f);
	fclose(f);
	return b;
}

static void spit(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* A small model: Affine weights and bias, a batch-norm running mean, a
 * scalar and a 4-D tensor, all named, values from the context's generator. */
enum { NT = 5 };
static const char *const NAMES[NT] = { "fc1.W", "fc1.b", "bn1.running_mean", "step", "conv.k" };

static void make_model(tg_ctx *ctx, tg_dtype dt, tg_tensor **t)
{
	t[0] = tg_param(tg_randn(ctx, dt, SHAPE(3, 4), 0, 1));
	t[1] = tg_param(tg_randn(ctx, dt, SHAPE(4), 0, 1));
	t[2] = tg_keep(tg_randn(ctx, dt, SHAPE(4), 0, 1));
	t[3] = tg_keep(tg_randn(ctx, dt, 0, NULL, 0, 1));
	t[4] = tg_param(tg_randn(ctx, dt, SHAPE(2, 1, 3, 2), 0, 1));
	for (int i = 0; i < NT; i++) {
		assert_non_null(t[i]);
		tg_set_name(t[i], NAMES[i]);
	}
	assert_ctx_ok(ctx);
}

/* All values of the tensors, flattened, as doubles (enough for this model). */
typedef struct snapshot {
	double v[64];
	size_t n;
} snapshot;

static snapshot snap(tg_tensor *const *t, int n)
{
	snapshot s = { .n = 0 };
	for (int i = 0; i < n; i++) {
		size_t k = tg_numel(t[i]);
		assert_true(s.n + k <= 64);
		assert_int_equal(tg_copy_to_f64(t[i], s.v + s.n, k), 0);
		s.n += k;
	}
	return s;
}

static void assert_same_values(const snapshot *a, const snapshot *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i] != b->v[i])
			fail_msg("value %zu is %.17g, expected %.17g", i, b->v[i], a->v[i]);
}

/* Saves a model of this dtype made with seed 1 to path; its values in *s. */
static void save_model(const char *path, tg_dtype dt, snapshot *s)
{
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *t[NT];
	make_model(ctx, dt, t);
	assert_int_equal(tg_checkpoint_save(ctx, path, t, NT), 0);
	assert_ctx_ok(ctx);
	if (s)
		*s = snap(t, NT);
	tg_ctx_free(ctx);
}

/* Loads path into the list t (of ctx) and expects code and text; the
 * tensors' values must not change. */
static void expect_load_error(tg_ctx *ctx, const char *path, tg_tensor *const *t, size_t n,
			      tg_status code, const char *text)
{
	snapshot before = snap(t, (int)n);
	assert_int_equal(tg_checkpoint_load(ctx, path, t, n), -1);
	assert_error(ctx, code, text);
	snapshot after = snap(t, (int)n);
	assert_same_values(&before, &after);
	tg_clear_error(ctx);
}

/* Loads path into a fresh model (seed 2) and expects code and text. */
static void expect_bad_file(const char *path, tg_status code, const char *text)
{
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *t[NT];
	make_model(ctx, TG_F32, t);
	expect_load_error(ctx, path, t, NT, code, text);
	tg_ctx_free(ctx);
}

/* ---- round trips ---------------------------------------------------------------- */

static void values_survive_a_round_trip_exactly_in_f32_and_f64(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	tg_dtype dts[2] = { TG_F32, TG_F64 };
	for (int k = 0; k < 2; k++) {
		snapshot saved;
		save_model(path, dts[k], &saved);
		assert_int_equal(tmp_count(&d), 1); /* no temporary file left */
		tg_ctx *ctx = tg_ctx_new(2);
		tg_tensor *t[NT];
		make_model(ctx, dts[k], t);
		snapshot other = snap(t, NT);
		assert_true(other.v[0] != saved.v[0]); /* a different model before */
		assert_int_equal(tg_checkpoint_load(ctx, path, t, NT), 0);
		assert_ctx_ok(ctx);
		snapshot loaded = snap(t, NT);
		assert_same_values(&saved, &loaded);
		assert_int_equal(tg_dim(t[4], 2), 3);
		tg_ctx_free(ctx);
	}
	tmp_remove(&d);
}

static void tensors_are_matched_by_name_in_any_order(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	snapshot saved;
	save_model(path, TG_F64, &saved);
	tg_ctx *ctx = tg_ctx_new(3);
	tg_tensor *t[NT], *rev[NT];
	make_model(ctx, TG_F64, t);
	for (int i = 0; i < NT; i++)
		rev[i] = t[NT - 1 - i];
	assert_int_equal(tg_checkpoint_load(ctx, path, rev, NT), 0);
	snapshot loaded = snap(t, NT);
	assert_same_values(&saved, &loaded);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void a_file_written_by_hand_to_the_documented_format_loads(void **state)
{
	(void)state;
	/* one f64 tensor "w" of shape (2,) holding 1.5 and -2 */
	unsigned char f[64];
	size_t n = 0;
	memcpy(f, "TGCKPT\0\0", 8);
	n = 8;
	const unsigned char head[] = { 1, 0, 0, 0,         /* version */
				       1, 0, 0, 0,         /* count */
				       1, 0, 'w',          /* name */
				       1,                  /* dtype f64 */
				       1,                  /* ndim */
				       2, 0, 0, 0, 0, 0, 0, 0 };
	memcpy(f + n, head, sizeof head);
	n += sizeof head;
	const double v[2] = { 1.5, -2 }; /* little-endian on this machine */
	memcpy(f + n, v, sizeof v);
	n += sizeof v;
	uint32_t crc = (uint32_t)crc32(0, f, (uInt)n);
	for (int i = 0; i < 4; i++)
		f[n++] = (unsigned char)(crc >> (8 * i));

	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "hand.ckpt", path);
	spit(path, f, n);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_set_name(tg_param(tg_zeros(ctx, TG_F64, SHAPE(2))), "w");
	assert_int_equal(tg_checkpoint_load(ctx, path, &w, 1), 0);
	assert_ctx_ok(ctx);
	assert_near(tg_get(w, 0), 1.5, 0);
	assert_near(tg_get(w, 1), -2, 0);
	/* saving it again writes version 2: the same tensor after a count of 0
	 * metadata entries */
	unsigned char v2[64];
	size_t n2 = 0;
	memcpy(v2, f, 8 + 8);
	v2[8] = 2;
	n2 = 16;
	memset(v2 + n2, 0, 4);
	n2 += 4;
	memcpy(v2 + n2, f + 16, n - 4 - 16);
	n2 += n - 4 - 16;
	crc = (uint32_t)crc32(0, v2, (uInt)n2);
	for (int i = 0; i < 4; i++)
		v2[n2++] = (unsigned char)(crc >> (8 * i));
	char again[256];
	tmp_file(&d, "again.ckpt", again);
	assert_int_equal(tg_checkpoint_save(ctx, again, &w, 1), 0);
	bytes b = slurp(again);
	assert_int_equal(b.n, n2);
	assert_memory_equal(b.p, v2, n2);
	free(b.p);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

/* ---- bad files -------------------------------------------------------------------- */

static void a_corrupted_byte_fails_the_crc(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	save_model(path, TG_F32, NULL);
	bytes b = slurp(path);
	assert_int_equal(b.n, 276);
	/* the middle of the file: a letter of the name bn1.running_mean */
	b.p[b.n / 2] ^= 0x10;
	spit(path, b.p, b.n);
	expect_bad_file(path, TG_EFORMAT, "CRC32 mismatch");
	b.p[b.n / 2] ^= 0x10;
	/* a bit of fc1.W's values (bytes 45..92: after 20 bytes of header and
	 * its own 25-byte description) */
	b.p[60] ^= 0x01;
	spit(path, b.p, b.n);
	expect_bad_file(path, TG_EFORMAT, "CRC32 mismatch");
	b.p[60] ^= 0x01;
	/* a flipped bit in the stored CRC itself */
	b.p[b.n - 1] ^= 0x01;
	spit(path, b.p, b.n);
	expect_bad_file(path, TG_EFORMAT, "model.ckpt: CRC32 mismatch");
	free(b.p);
	tmp_remove(&d);
}

static void a_truncated_file_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	save_model(path, TG_F32, NULL);
	bytes b = slurp(path);
	spit(path, b.p, b.n / 2);
	expect_bad_file(path, TG_EFORMAT, "truncated");
	spit(path, b.p, b.n - 1);
	expect_bad_file(path, TG_EFORMAT, "model.ckpt: truncated");
	spit(path, b.p, 10);
	expect_bad_file(path, TG_EFORMAT, "truncated: 10 bytes, a checkpoint has at least 20");
	spit(path, b.p, 0);
	expect_bad_file(path, TG_EFORMAT, "truncated: 0 bytes");
	/* a short file that is not the start of one is no checkpoint */
	spit(path, "hello\n", 6);
	expect_bad_file(path, TG_EFORMAT, "model.ckpt: not a tapegrad checkpoint (wrong magic)");
	free(b.p);
	tmp_remove(&d);
}

static void a_shape_mismatch_is_named_and_nothing_is_loaded(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256], want[512];
	tmp_file(&d, "model.ckpt", path);
	save_model(path, TG_F32, NULL);
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *t[NT];
	make_model(ctx, TG_F32, t);
	/* the last tensor differs: the four before it must stay as they were */
	t[4] = tg_set_name(tg_param(tg_zeros(ctx, TG_F32, SHAPE(2, 1, 3, 3))), "conv.k");
	snprintf(want, sizeof want,
		 "%s: tensor conv.k has shape (2,1,3,2) in the file, (2,1,3,3) in the model", path);
	expect_load_error(ctx, path, t, NT, TG_EFORMAT, want);
	t[4] = tg_set_name(tg_param(tg_zeros(ctx, TG_F32, SHAPE(12))), "conv.k");
	expect_load_error(ctx, path, t, NT, TG_EFORMAT,
			  "(2,1,3,2) in the file, (12,) in the model");
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void a_wrong_name_dtype_or_count_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	save_model(path, TG_F32, NULL);
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *t[NT];
	make_model(ctx, TG_F32, t);
	tg_set_name(t[2], "bn1.running_var");
	expect_load_error(ctx, path, t, NT, TG_EFORMAT,
			  "tensor bn1.running_var is not in the file");
	tg_set_name(t[2], "bn1.running_mean");
	expect_load_error(ctx, path, t, NT - 1, TG_EFORMAT, "the file has 5 tensors, the model 4");
	tg_tensor *d64 = tg_set_name(tg_param(tg_zeros(ctx, TG_F64, SHAPE(4))), "fc1.b");
	tg_tensor *mixed[NT] = { t[0], d64, t[2], t[3], t[4] };
	expect_load_error(ctx, path, mixed, NT, TG_EFORMAT,
			  "tensor fc1.b is f32 in the file, f64 in the model");
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void a_wrong_magic_or_version_is_rejected(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	save_model(path, TG_F64, NULL);
	bytes b = slurp(path);
	b.p[0] = 'X';
	spit(path, b.p, b.n);
	expect_bad_file(path, TG_EFORMAT, "model.ckpt: not a tapegrad checkpoint (wrong magic)");
	b.p[0] = 'T';
	b.p[8] = 3;
	spit(path, b.p, b.n);
	expect_bad_file(path, TG_EFORMAT, "format version 3, this library reads versions 1 to 2");
	free(b.p);
	/* some other file altogether */
	spit(path, "P6\n2 2\n255\n0123456789abcdef", 27);
	expect_bad_file(path, TG_EFORMAT, "wrong magic");
	/* a checkpoint gzipped after its save, whole or its first bytes only:
	 * the message says what it is, unlike the data readers' zlib */
	save_model(path, TG_F32, NULL);
	b = slurp(path);
	uLong zn = compressBound(b.n) + 32;
	unsigned char *z = malloc(zn);
	z_stream zs = { .next_in = b.p, .avail_in = (uInt)b.n, .next_out = z,
			.avail_out = (uInt)zn };
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	size_t gz = zs.total_out;
	deflateEnd(&zs);
	const char *says = "model.ckpt: not a tapegrad checkpoint but gzip-compressed data; a "
			   "checkpoint is read as it was saved (gunzip it first)";
	spit(path, z, gz);
	expect_bad_file(path, TG_EFORMAT, says);
	spit(path, z, 10);
	expect_bad_file(path, TG_EFORMAT, says);
	free(z);
	free(b.p);
	tmp_remove(&d);
}

static void an_absurd_size_in_the_file_is_rejected_without_allocating(void **state)
{
	(void)state;
	/* a valid frame and CRC around one f64 tensor claiming 2^40 x 2^20
	 * elements with 16 bytes of data */
	unsigned char f[128];
	memcpy(f, "TGCKPT\0\0", 8);
	size_t n = 8;
	const unsigned char head[] = { 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 'w', 1, 2,
				       0, 0, 0, 0, 0, 1, 0, 0,  /* 2^40 */
				       0, 0, 0x10, 0, 0, 0, 0, 0 /* 2^20 */ };
	memcpy(f + n, head, sizeof head);
	n += sizeof head;
	memset(f + n, 0, 16);
	n += 16;
	uint32_t crc = (uint32_t)crc32(0, f, (uInt)n);
	for (int i = 0; i < 4; i++)
		f[n++] = (unsigned char)(crc >> (8 * i));
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "absurd.ckpt", path);
	spit(path, f, n);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = tg_set_name(tg_param(tg_ones(ctx, TG_F64, SHAPE(2))), "w");
	expect_load_error(
	    ctx, path, &w, 1, TG_EFORMAT,
	    "tensor w of shape (1099511627776,1048576) does not fit in the 16 bytes left");
	/* a count of 2^32 - 1 tensors in a small file */
	memset(f + 12, 0xff, 4);
	spit(path, f, n);
	expect_load_error(ctx, path, &w, 1, TG_EFORMAT, "4294967295 tensors cannot fit");
	/* sizes no tensor has: 0, and one past int64 (with a 0 beside it, so
	 * that the product fits the bytes present) */
	static const unsigned char dims[][16] = {
		{ 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0 },
	};
	static const char *const want[] = { "tensor w has shape (2,0); every size is 1 to",
					    "tensor w has shape (-1,0); every size is 1 to" };
	for (int k = 0; k < 2; k++) {
		n = 8 + sizeof head - 16;
		memcpy(f + 8, head, sizeof head - 16);
		memcpy(f + n, dims[k], 16);
		n += 16;
		uint32_t c = (uint32_t)crc32(0, f, (uInt)n);
		for (int i = 0; i < 4; i++)
			f[n++] = (unsigned char)(c >> (8 * i));
		spit(path, f, n);
		expect_load_error(ctx, path, &w, 1, TG_EFORMAT, want[k]);
	}
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void a_missing_file_is_an_io_error(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256], want[512];
	tmp_file(&d, "never-saved.ckpt", path);
	snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
	expect_bad_file(path, TG_EIO, want);
	expect_bad_file(d.path, TG_EIO, "is a directory, not a regular file");
	expect_bad_file("/dev/zero", TG_EIO, "/dev/zero: is a character device");
	tmp_remove(&d);
}

static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void a_fifo_is_refused_at_once_not_waited_on(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256], want[512];
	tmp_file(&d, "model.ckpt", path);
	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(10); /* a reader that blocks on the FIFO fails the suite, not hangs it */
	double t0 = seconds_now();
	snprintf(want, sizeof want, "%s: is a FIFO (named pipe), not a regular file", path);
	expect_bad_file(path, TG_EIO, want);
	double took = seconds_now() - t0;
	alarm(0);
	if (took > 1.0)
		fail_msg("the load took %.3f s to refuse the FIFO", took);
	tmp_remove(&d);
}

/* ---- values that are not numbers ------------------------------------------------ */

static void nonfinite_weights_are_refused_unless_asked_for(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256], want[512];
	tmp_file(&d, "model.ckpt", path);
	tg_dtype dts[2] = { TG_F32, TG_F64 };
	double bad[3] = { NAN, INFINITY, -INFINITY };
	const char *bad_name[3] = { "NaN", "+Inf", "-Inf" };
	for (int k = 0; k < 6; k++) {
		tg_ctx *ctx = tg_ctx_new(1);
		tg_tensor *t[NT];
		make_model(ctx, dts[k % 2], t);
		/* a valid file (its CRC is right) whose bias holds one bad value */
		if (dts[k % 2] == TG_F32)
			((float *)tg_data_mut(t[1]))[2] = (float)bad[k / 2];
		else
			((double *)tg_data_mut(t[1]))[2] = bad[k / 2];
		assert_int_equal(tg_checkpoint_save(ctx, path, t, NT), 0);
		tg_ctx_free(ctx);
		snprintf(want, sizeof want, "%s: tensor fc1.b holds %s at index 2 of 4", path,
			 bad_name[k / 2]);
		ctx = tg_ctx_new(2);
		make_model(ctx, dts[k % 2], t);
		expect_load_error(ctx, path, t, NT, TG_EFORMAT, want);
		/* asked for, it loads */
		assert_int_equal(tg_checkpoint_load_flags(ctx, path, t, NT, TG_CHECKPOINT_NONFINITE),
				 0);
		double v = tg_get(t[1], 2);
		if (!(isnan(bad[k / 2]) ? isnan(v) : v == bad[k / 2]))
			fail_msg("fc1.b[2] loaded as %g, saved as %g", v, bad[k / 2]);
		assert_int_equal(tg_checkpoint_load_flags(ctx, path, t, NT, 8), -1);
		assert_error(ctx, TG_EARG, "tg_checkpoint_load_flags: unknown flags 0x8");
		tg_clear_error(ctx);
		/* the load is strict already: asking for it changes nothing */
		assert_int_equal(tg_checkpoint_load_flags(ctx, path, t, NT,
							  TG_CHECKPOINT_NONFINITE |
							      TG_CHECKPOINT_STRICT),
				 0);
		tg_ctx_free(ctx);
	}
	tmp_remove(&d);
}

static void unnamed_or_duplicate_tensors_are_refused(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *t[2] = { tg_param(tg_ones(ctx, TG_F32, SHAPE(2, 3))),
			    tg_param(tg_ones(ctx, TG_F32, SHAPE(3))) };
	assert_int_equal(tg_checkpoint_save(ctx, path, t, 2), -1);
	assert_error(ctx, TG_EARG, "tg_checkpoint_save: tensor 0 (2,3) has no name (tg_set_name)");
	tg_clear_error(ctx);
	tg_set_name(t[0], "b");
	tg_set_name(t[1], "b");
	assert_int_equal(tg_checkpoint_load(ctx, path, t, 2), -1);
	assert_error(ctx, TG_EARG, "tg_checkpoint_load: tensors 0 and 1 are both named b");
	tg_clear_error(ctx);
	tg_tensor *withnull[2] = { t[0], NULL };
	assert_int_equal(tg_checkpoint_save(ctx, path, withnull, 2), -1);
	assert_error(ctx, TG_ENULL, "tg_checkpoint_save: tensor 1 is NULL");
	assert_int_equal(tmp_count(&d), 0);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

/* ---- failed saves ------------------------------------------------------------------- */

static void saving_into_a_missing_directory_fails_and_touches_nothing(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char good[256], bad[512], want[600];
	tmp_file(&d, "good.ckpt", good);
	save_model(good, TG_F32, NULL);
	bytes before = slurp(good);
	snprintf(bad, sizeof bad, "%s/no/such/dir/model.ckpt", d.path);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *t[NT];
	make_model(ctx, TG_F64, t);
	assert_int_equal(tg_checkpoint_save(ctx, bad, t, NT), -1);
	snprintf(want, sizeof want, "%s: cannot write checkpoint", bad);
	assert_error(ctx, TG_EIO, want);
	assert_error(ctx, TG_EIO, "No such file or directory");
	tg_clear_error(ctx);
	/* nor is an empty path a place */
	assert_int_equal(tg_checkpoint_save(ctx, "", t, NT), -1);
	assert_error(ctx, TG_EARG, "cannot write checkpoint: the path is empty");
	tg_clear_error(ctx);
	assert_int_equal(tg_export_npz(ctx, "", t, NT), -1);
	assert_error(ctx, TG_EARG, "cannot write the .npz file: the path is empty");
	tg_clear_error(ctx);
	/* an empty path is not read either, and the error says why */
	tg_state *st = NULL;
	assert_int_equal(tg_checkpoint_read(ctx, "", &st), -1);
	assert_null(st);
	assert_error(ctx, TG_EARG, "cannot read checkpoint: the path is empty");
	tg_ctx_free(ctx);
	bytes after = slurp(good);
	assert_int_equal(after.n, before.n);
	assert_memory_equal(after.p, before.p, before.n);
	assert_int_equal(tmp_count(&d), 1);
	free(before.p);
	free(after.p);
	tmp_remove(&d);
}

static void a_good_checkpoint_survives_a_refused_save_at_its_path(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	snapshot saved;
	save_model(path, TG_F32, &saved);
	bytes before = slurp(path);
	tg_ctx *ctx = tg_ctx_new(5);
	tg_tensor *t[NT];
	make_model(ctx, TG_F32, t);
	tg_set_name(t[3], "fc1.W");
	assert_int_equal(tg_checkpoint_save(ctx, path, t, NT), -1);
	assert_error(ctx, TG_EARG, "tensors 0 and 3 are both named fc1.W");
	bytes after = slurp(path);
	assert_int_equal(after.n, before.n);
	assert_memory_equal(after.p, before.p, before.n);
	assert_int_equal(tmp_count(&d), 1);
	/* and it still loads */
	tg_clear_error(ctx);
	tg_set_name(t[3], "step");
	assert_int_equal(tg_checkpoint_load(ctx, path, t, NT), 0);
	snapshot loaded = snap(t, NT);
	assert_same_values(&saved, &loaded);
	tg_ctx_free(ctx);
	free(before.p);
	free(after.p);
	tmp_remove(&d);
}

static void a_good_checkpoint_survives_a_write_that_fails(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	save_model(path, TG_F32, NULL);
	bytes before = slurp(path);
	/* In a child, limit file sizes to 100 bytes: writing the f64 model (over
	 * 300 bytes) fails with EFBIG part way through the temporary file. */
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = { 100, 100 };
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(3);
		tg_ctx *ctx = tg_ctx_new(9);
		tg_tensor *t[NT];
		make_model(ctx, TG_F64, t);
		int rc = tg_checkpoint_save(ctx, path, t, NT);
		bool ok = rc == -1 && tg_status_of(ctx) == TG_EIO &&
			  strstr(tg_error(ctx), "File too large") && strstr(tg_error(ctx), path);
		if (!ok)
			fprintf(stderr, "child: rc %d, %s: %s\n", rc,
				tg_status_name(tg_status_of(ctx)), tg_error(ctx));
		tg_ctx_free(ctx);
		free(before.p);
		_exit(ok ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	bytes after = slurp(path);
	assert_int_equal(after.n, before.n);
	assert_memory_equal(after.p, before.p, before.n);
	assert_int_equal(tmp_count(&d), 1); /* the temporary file was removed */
	free(before.p);
	free(after.p);
	tmp_remove(&d);
}

/* Runs fn(path) in a child process; returns its exit status. */
static int in_child(void (*fn)(const char *path), const char *path)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fn(path);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Saves the f64 model to path and exits 0 if the save fails with TG_EIO
 * naming the reason, 1 if it does not fail, 77 if fn could not set up. */
static void save_must_fail(const char *path, const char *reason)
{
	tg_ctx *ctx = tg_ctx_new(9);
	tg_tensor *t[NT];
	make_model(ctx, TG_F64, t);
	int rc = tg_checkpoint_save(ctx, path, t, NT);
	bool ok = rc == -1 && tg_status_of(ctx) == TG_EIO && strstr(tg_error(ctx), reason);
	if (!ok)
		fprintf(stderr, "child: rc %d, %s: %s\n", rc, tg_status_name(tg_status_of(ctx)),
			tg_error(ctx));
	tg_ctx_free(ctx);
	_exit(ok ? 0 : 1);
}

static void save_as_nobody(const char *path)
{
	if (geteuid() == 0 && setuid(65534) != 0)
		_exit(77);
	save_must_fail(path, "Permission denied");
}

static void a_read_only_directory_refuses_the_save(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	save_model(path, TG_F32, NULL);
	bytes before = slurp(path);
	/* read-only for everyone but root; the save runs as nobody when the
	 * suite runs as root */
	assert_int_equal(chmod(d.path, 0555), 0);
	int rc = in_child(save_as_nobody, path);
	assert_int_equal(chmod(d.path, 0700), 0);
	if (rc == 77)
		skip();
	assert_int_equal(rc, 0);
	bytes after = slurp(path);
	assert_memory_equal(after.p, before.p, before.n);
	assert_int_equal(tmp_count(&d), 1);
	free(before.p);
	free(after.p);
	tmp_remove(&d);
}

/* ---- files that lose nothing ------------------------------------------------------ */

static void every_flipped_byte_is_rejected_and_loads_nothing(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	save_model(path, TG_F32, NULL);
	bytes good = slurp(path);
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *t[NT];
	make_model(ctx, TG_F32, t);
	for (size_t i = 0; i < good.n; i++) {
		good.p[i] ^= 0xff;
		spit(path, good.p, good.n);
		good.p[i] ^= 0xff;
		snapshot before = snap(t, NT);
		if (tg_checkpoint_load(ctx, path, t, NT) == 0)
			fail_msg("byte %zu of %zu flipped, and the checkpoint still loaded", i,
				 good.n);
		tg_status code = tg_status_of(ctx);
		if (code != TG_EFORMAT)
			fail_msg("byte %zu: %s \"%s\"", i, tg_status_name(code), tg_error(ctx));
		snapshot after = snap(t, NT);
		assert_same_values(&before, &after);
		tg_clear_error(ctx);
	}
	print_message("all %zu flipped bytes rejected\n", good.n);
	tg_ctx_free(ctx);
	free(good.p);
	tmp_remove(&d);
}

/* A model of ~64 MB: one (4096,4096) f32 tensor; every value the seed. */
static tg_tensor *big_model(tg_ctx *ctx, double seed)
{
	tg_tensor *w = tg_keep(tg_full(ctx, TG_F32, SHAPE(4096, 4096), seed));
	tg_set_name(w, "big.W");
	tg_reset(ctx);
	return w;
}

static void save_big_forever(const char *path)
{
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = big_model(ctx, 2.0);
	for (;;)
		tg_checkpoint_save(ctx, path, &w, 1);
}

static void a_save_killed_mid_write_leaves_a_whole_checkpoint(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "big.ckpt", path);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w = big_model(ctx, 1.0);
	assert_int_equal(tg_checkpoint_save(ctx, path, &w, 1), 0);
	for (int delay_ms = 5; delay_ms <= 205; delay_ms += 50) {
		fflush(NULL);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			save_big_forever(path);
		usleep((useconds_t)delay_ms * 1000);
		kill(pid, SIGKILL);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		/* the file at path is either the old model or the new, whole */
		assert_int_equal(tg_checkpoint_load(ctx, path, &w, 1), 0);
		const float *v = tg_data(w);
		float first = v[0];
		assert_true(first == 1.0f || first == 2.0f);
		for (size_t i = 0; i < tg_numel(w); i += 4099)
			if (v[i] != first)
				fail_msg("value %zu is %g, value 0 is %g: a mixed file", i, v[i],
					 first);
	}
	/* the killed writers' temporaries go with the next save */
	print_message("%d files after the kills\n", tmp_count(&d));
	assert_int_equal(tg_checkpoint_save(ctx, path, &w, 1), 0);
	assert_int_equal(tmp_count(&d), 1);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

/* In a private mount namespace, a 64 KB tmpfs filled to the last byte. */
static void save_on_a_full_device(const char *dir)
{
	if (unshare(CLONE_NEWNS) != 0 ||
	    mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tg_full", dir, "tmpfs", 0, "size=64k") != 0)
		_exit(77);
	char path[256], fill[256];
	snprintf(path, sizeof path, "%s/model.ckpt", dir);
	snprintf(fill, sizeof fill, "%s/filler", dir);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *t[NT];
	make_model(ctx, TG_F32, t);
	if (tg_checkpoint_save(ctx, path, t, NT) != 0)
		_exit(2);
	bytes before = slurp(path);
	FILE *f = fopen(fill, "wb");
	if (!f)
		_exit(3);
	static const char block[512];
	while (fwrite(block, 1, sizeof block, f) == sizeof block && fflush(f) == 0)
		;
	fclose(f);
	if (tg_checkpoint_save(ctx, path, t, NT) == 0)
		_exit(4);
	if (tg_status_of(ctx) != TG_EIO || !strstr(tg_error(ctx), "No space left on device"))
		_exit(5);
	bytes after = slurp(path);
	if (after.n != before.n || memcmp(after.p, before.p, before.n) != 0)
		_exit(6);
	tg_ctx_free(ctx);
	_exit(0);
}

static void a_full_device_fails_the_save_and_keeps_the_old_file(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	int rc = in_child(save_on_a_full_device, d.path);
	tmp_remove(&d);
	if (rc == 77)
		skip(); /* no permission to mount a small tmpfs here */
	if (rc != 0)
		fail_msg("full-device child failed at step %d", rc);
}

/* ---- leftovers, links and threads ------------------------------------------------ */

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static void touch(const char *path)
{
	spit(path, "partial", 7);
}

static void leftovers_of_dead_writers_are_removed_by_the_next_save(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256], dead[300], live1[300], live2[300], other[300], user[3][300];
	tmp_file(&d, "model.ckpt", path);
	/* a child makes temporaries as a killed save would leave them, and exits */
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char a[300];
		snprintf(a, sizeof a, "%s.tmp.%ld.a1b2c3", path, (long)getpid());
		touch(a);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(kill(pid, 0), -1); /* reaped: no such process */
	assert_int_equal(errno, ESRCH);
	snprintf(dead, sizeof dead, "%s.tmp.%ld.a1b2c3", path, (long)pid);
	assert_true(exists(dead));
	/* the user's files that only begin as a temporary's name does, with the
	 * dead writer's number in them, stay */
	snprintf(user[0], sizeof user[0], "%s.tmp.%ld", path, (long)pid);
	snprintf(user[1], sizeof user[1], "%s.tmp.%ld.txt", path, (long)pid);
	snprintf(user[2], sizeof user[2], "%s.tmp.%ld.a1b2c3.orig", path, (long)pid);
	for (int i = 0; i < 3; i++)
		touch(user[i]);
	/* temporaries of live writers (this process, init) and other names stay */
	snprintf(live1, sizeof live1, "%s.tmp.%ld.ffffff", path, (long)getpid());
	snprintf(live2, sizeof live2, "%s.tmp.1.000000", path);
	snprintf(other, sizeof other, "%s/other.ckpt.tmp.%ld", d.path, (long)pid);
	touch(live1);
	touch(live2);
	touch(other);
	save_model(path, TG_F32, NULL);
	if (exists(dead))
		fail_msg("a dead writer's temporary is still there: %s", dead);
	assert_true(exists(live1) && exists(live2) && exists(other));
	for (int i = 0; i < 3; i++)
		if (!exists(user[i]))
			fail_msg("the save removed %s", user[i]);
	assert_int_equal(tmp_count(&d), 7);
	tmp_remove(&d);
}

static void a_name_of_255_bytes_is_saved_and_its_dead_leftovers_removed(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	/* the longest name a directory entry may have: the temporary's name
	 * must fit too, though it cannot be this name with more added */
	char name[256], path[400], npz[400], dead[700];
	memset(name, 'a', 255);
	name[255] = '\0';
	snprintf(path, sizeof path, "%s/%s", d.path, name);
	name[250] = '\0';
	snprintf(npz, sizeof npz, "%s/%s.npz", d.path, name);
	/* what a save of path killed mid-write left: its temporary's name
	 * starts with as much of path's name as fits */
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	snprintf(dead, sizeof dead, "%s/%.*s.tmp.%ld.a1b2c3", d.path, NAME_MAX - 32, name,
		 (long)pid);
	touch(dead);
	snapshot a, b;
	save_model(path, TG_F32, &a);
	if (exists(dead))
		fail_msg("a dead writer's temporary is still there: %s", dead);
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *t[NT];
	make_model(ctx, TG_F32, t);
	assert_int_equal(tg_checkpoint_load(ctx, path, t, NT), 0);
	b = snap(t, NT);
	assert_same_values(&a, &b);
	assert_int_equal(tg_export_npz(ctx, npz, t, NT), 0);
	assert_ctx_ok(ctx);
	assert_true(exists(npz));
	assert_int_equal(tmp_count(&d), 2); /* no temporary is left */
	/* once more, over the files that are there */
	assert_int_equal(tg_checkpoint_save(ctx, path, t, NT), 0);
	assert_int_equal(tg_export_npz(ctx, npz, t, NT), 0);
	assert_ctx_ok(ctx);
	assert_int_equal(tmp_count(&d), 2);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void saving_onto_a_symbolic_link_writes_its_target(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char link_path[256], target[256], sub[256], far_link[256];
	tmp_file(&d, "latest.ckpt", link_path);
	tmp_file(&d, "run1.ckpt", target);
	snapshot a, b;
	save_model(target, TG_F32, &a);
	assert_int_equal(symlink("run1.ckpt", link_path), 0); /* relative, as ln -s makes */
	/* a model of another seed, saved through the link */
	tg_ctx *ctx = tg_ctx_new(7);
	tg_tensor *t[NT];
	make_model(ctx, TG_F32, t);
	b = snap(t, NT);
	assert_true(a.v[0] != b.v[0]);
	assert_int_equal(tg_checkpoint_save(ctx, link_path, t, NT), 0);
	struct stat st;
	assert_int_equal(lstat(link_path, &st), 0);
	assert_true(S_ISLNK(st.st_mode)); /* still a link */
	tg_ctx_free(ctx);
	ctx = tg_ctx_new(2);
	make_model(ctx, TG_F32, t);
	assert_int_equal(tg_checkpoint_load(ctx, target, t, NT), 0); /* the target is new */
	snapshot got = snap(t, NT);
	assert_same_values(&b, &got);
	tg_ctx_free(ctx);
	assert_int_equal(tmp_count(&d), 2);
	/* a dangling link: its target is created */
	tmp_file(&d, "sub", sub);
	tmp_file(&d, "far.ckpt", far_link);
	assert_int_equal(symlink("sub/new.ckpt", far_link), 0);
	assert_int_equal(mkdir(sub, 0700), 0);
	save_model(far_link, TG_F64, NULL);
	assert_int_equal(lstat(far_link, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	char made[300];
	snprintf(made, sizeof made, "%s/new.ckpt", sub);
	assert_int_equal(stat(made, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(made);
	rmdir(sub);
	tmp_remove(&d);
}

/* A save at path fails naming what is there, and leaves it as it was, of
 * type `type` (S_IFIFO, ...), with no temporary beside it. */
static void expect_save_refused(const tmpdir *d, const char *path, mode_t type, const char *want)
{
	tg_ctx *ctx = tg_ctx_new(3);
	tg_tensor *t[NT];
	make_model(ctx, TG_F32, t);
	int before = tmp_count(d);
	assert_int_equal(tg_checkpoint_save(ctx, path, t, NT), -1);
	assert_error(ctx, TG_EIO, want);
	tg_clear_error(ctx);
	assert_int_equal(tg_export_npz(ctx, path, t, NT), -1);
	assert_error(ctx, TG_EIO, "cannot write the .npz file");
	tg_ctx_free(ctx);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	if ((st.st_mode & S_IFMT) != type)
		fail_msg("%s is of type 0%o after the save, was 0%o", path,
			 (unsigned)(st.st_mode & S_IFMT), (unsigned)type);
	assert_int_equal(tmp_count(d), before);
}

static void saving_never_replaces_what_is_not_a_regular_file(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256], link_path[256], want[640];
	/* a FIFO, and a link to it */
	tmp_file(&d, "fifo.ckpt", path);
	assert_int_equal(mkfifo(path, 0600), 0);
	snprintf(want, sizeof want,
		 "%s: cannot write checkpoint: it is a FIFO (named pipe), not a regular file", path);
	expect_save_refused(&d, path, S_IFIFO, want);
	tmp_file(&d, "link.ckpt", link_path);
	assert_int_equal(symlink("fifo.ckpt", link_path), 0);
	snprintf(want, sizeof want,
		 "%s: cannot write checkpoint: the link leads to %s, which is a FIFO (named "
		 "pipe), not a regular file",
		 link_path, path);
	expect_save_refused(&d, link_path, S_IFIFO, want);
	struct stat st;
	assert_int_equal(lstat(link_path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	/* a socket */
	tmp_file(&d, "sock.ckpt", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	assert_true(strlen(path) < sizeof sa.sun_path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	snprintf(want, sizeof want, "%s: cannot write checkpoint: it is a socket", path);
	expect_save_refused(&d, path, S_IFSOCK, want);
	close(fd);
	/* a device node, as mknod nulldev c 1 3 makes (where this may make one) */
	tmp_file(&d, "nulldev", path);
	if (mknod(path, S_IFCHR | 0600, makedev(1, 3)) == 0) {
		snprintf(want, sizeof want,
			 "%s: cannot write checkpoint: it is a character device", path);
		expect_save_refused(&d, path, S_IFCHR, want);
	} else {
		printf("(no device node: mknod %s: %s)\n", path, strerror(errno));
	}
	tmp_remove(&d);
}

/* A net of 784-2048-2048-10 (23 MB of f32): big enough that one save is
 * still writing when the other thread's begins. */
enum { SAVES = 20, NBIG = 3 };
static const int64_t BIG[NBIG][2] = { { 784, 2048 }, { 2048, 2048 }, { 2048, 10 } };

typedef struct saver {
	const char *path;
	double value;      /* every weight of this thread's net */
	int failed_saves;
	int bad_loads;
	char first_error[512];
} saver;

static void *save_and_reload(void *arg)
{
	saver *s = arg;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *w[NBIG], *r[NBIG];
	char name[16];
	for (int i = 0; i < NBIG; i++) {
		snprintf(name, sizeof name, "fc%d.W", i + 1);
		w[i] = tg_set_name(tg_keep(tg_full(ctx, TG_F32, 2, BIG[i], s->value)), name);
		r[i] = tg_set_name(tg_keep(tg_zeros(ctx, TG_F32, 2, BIG[i])), name);
	}
	tg_reset(ctx);
	for (int k = 0; k < SAVES; k++) {
		if (tg_checkpoint_save(ctx, s->path, w, NBIG) != 0) {
			if (!s->failed_saves++)
				snprintf(s->first_error, sizeof s->first_error, "save: %s",
					 tg_error(ctx));
			tg_clear_error(ctx);
			continue;
		}
		/* whatever is at path now must be one thread's whole net */
		bool whole = tg_checkpoint_load(ctx, s->path, r, NBIG) == 0;
		float first = whole ? ((const float *)tg_data(r[0]))[0] : 0;
		for (int i = 0; whole && i < NBIG; i++) {
			const float *v = tg_data(r[i]);
			for (size_t j = 0; whole && j < tg_numel(r[i]); j += 997)
				whole = v[j] == first && (first == 1.0f || first == 2.0f);
		}
		if (!whole && !s->bad_loads++)
			snprintf(s->first_error, sizeof s->first_error, "load: %s",
				 tg_ok(ctx) ? "a mixed file" : tg_error(ctx));
		tg_clear_error(ctx);
	}
	tg_ctx_free(ctx);
	return NULL;
}

static void two_threads_saving_to_one_path_always_leave_a_whole_file(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "shared.ckpt", path);
	saver s[2] = { { .path = path, .value = 1.0 }, { .path = path, .value = 2.0 } };
	pthread_t th[2];
	double t0 = seconds_now();
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, save_and_reload, &s[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	print_message("2 threads x %d saves of 23 MB in %.1f s\n", SAVES, seconds_now() - t0);
	for (int i = 0; i < 2; i++)
		if (s[i].failed_saves || s[i].bad_loads)
			fail_msg("thread %d: %d failed saves, %d bad loads; first: %s", i,
				 s[i].failed_saves, s[i].bad_loads, s[i].first_error);
	assert_int_equal(tmp_count(&d), 1); /* no temporary left behind */
	tmp_remove(&d);
}

/* A checkpoint written when the format was made: values by formula. */
static void fixture_model(tg_ctx *ctx, tg_tensor **t)
{
	double w[12], b[4];
	for (int i = 0; i < 12; i++)
		w[i] = i * 0.25 - 1.0;
	for (int i = 0; i < 4; i++)
		b[i] = 1.0 / (i + 1);
	t[0] = tg_set_name(tg_param(tg_from_f64(ctx, TG_F32, SHAPE(3, 4), w)), "fc1.W");
	t[1] = tg_set_name(tg_param(tg_from_f64(ctx, TG_F64, SHAPE(4), b)), "fc1.b");
	t[2] = tg_set_name(tg_keep(tg_scalar(ctx, TG_F64, -7.5)), "bn1.running_var");
}

static void the_committed_fixture_still_loads(void **state)
{
	(void)state;
	const char *root = getenv("TG_SOURCE_ROOT");
	assert_non_null(root);
	char path[512];
	snprintf(path, sizeof path, "%s/tests/nn/fixtures/model-v1.ckpt", root);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *want[3], *got[3];
	fixture_model(ctx, want);
	bytes f = slurp(path);
	assert_int_equal(f.p[8], 1); /* written by the version-1 writer */
	free(f.p);
	for (int i = 0; i < 3; i++) {
		got[i] = tg_keep(tg_zeros(ctx, tg_dtype_of(want[i]), tg_ndim(want[i]),
					  tg_shape(want[i])));
		tg_set_name(got[i], tg_name(want[i]));
	}
	if (tg_checkpoint_load(ctx, path, got, 3) != 0)
		fail_msg("%s", tg_error(ctx));
	for (int i = 0; i < 3; i++)
		for (size_t j = 0; j < tg_numel(want[i]); j++)
			assert_near(tg_get(got[i], j), tg_get(want[i], j), 0);
	/* read whole: the same tensors and no metadata */
	tg_state *st;
	assert_int_equal(tg_checkpoint_read(ctx, path, &st), 0);
	assert_int_equal(tg_state_count(st), 3);
	assert_null(tg_state_string(st, "arch"));
	assert_int_equal(tg_state_i64(st, "epoch", NULL, 0), -1);
	tg_tensor *b = tg_state_tensor(st, "fc1.b");
	assert_non_null(b);
	assert_near(tg_get(b, 3), 0.25, 0);
	tg_state_free(st);
	tg_ctx_free(ctx);
}

/* ---- version 2: states ------------------------------------------------------------- */

/* One tensor of each dtype, one of them 8-D, values from i (exact in every
 * dtype), named "<prefix><dtype>". */
static void make_typed(tg_ctx *ctx, double seed, tg_tensor **t)
{
	static const tg_dtype dts[4] = { TG_F32, TG_F64, TG_I32, TG_I64 };
	static const char *const names[4] = { "w.f32", "w.f64", "idx.i32", "idx.i64" };
	static const int64_t shapes[4][TG_MAX_DIMS] = {
		{ 2, 1, 2, 1, 1, 3, 1, 2 }, { 3, 2 }, { 5 }, { 0 } };
	static const int ndims[4] = { 8, 2, 1, 0 };
	for (int k = 0; k < 4; k++) {
		double v[24];
		for (int i = 0; i < 24; i++)
			v[i] = dts[k] >= TG_I32 ? seed * 1000 - i * 7 : seed + i * 0.375 - 4;
		tg_tensor *z = tg_from_f64(ctx, dts[k], ndims[k], shapes[k], v);
		t[k] = tg_set_name(dts[k] >= TG_I32 ? tg_keep(z) : tg_param(z), names[k]);
		assert_non_null(t[k]);
	}
	assert_ctx_ok(ctx);
}

static void assert_same_tensor(const tg_tensor *a, const tg_tensor *b)
{
	assert_int_equal(tg_dtype_of(a), tg_dtype_of(b));
	assert_int_equal(tg_ndim(a), tg_ndim(b));
	assert_memory_equal(tg_shape(a), tg_shape(b), (size_t)tg_ndim(a) * sizeof(int64_t));
	size_t es = tg_dtype_of(a) == TG_F64 || tg_dtype_of(a) == TG_I64 ? 8 : 4;
	if (memcmp(tg_data(a), tg_data(b), tg_numel(a) * es))
		for (size_t i = 0; i < tg_numel(a); i++)
			if (tg_get(a, i) != tg_get(b, i))
				fail_msg("%s[%zu] = %.17g, expected %.17g", tg_name(a), i,
					 tg_get(b, i), tg_get(a, i));
}

/* Saves the typed tensors (seed 1) and some metadata to path. */
static void save_typed_state(const char *path)
{
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *t[4];
	make_typed(ctx, 1, t);
	tg_state *st = tg_state_new(ctx);
	assert_int_equal(tg_state_add(st, t, 4), 0);
	assert_int_equal(tg_state_set_string(st, "arch", "784-100-10"), 0);
	const int64_t steps = 1234;
	assert_int_equal(tg_state_set_i64(st, "optim.steps", &steps, 1), 0);
	assert_int_equal(tg_checkpoint_save_state(ctx, path, st), 0);
	tg_state_free(st);
	tg_ctx_free(ctx);
}

static void every_dtype_and_eight_dims_and_metadata_survive_a_round_trip(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "state.ckpt", path);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *t[4], *u[4];
	make_typed(ctx, 1, t);
	make_typed(ctx, 2, u); /* other values, same names */
	tg_state *st = tg_state_new(ctx);
	assert_int_equal(tg_state_add(st, t, 2), 0);
	assert_int_equal(tg_state_add(st, t + 2, 2), 0);
	assert_int_equal(tg_state_set_string(st, "arch", "784-100-10"), 0);
	assert_int_equal(tg_state_set_string(st, "arch", "affine(4,3) relu affine(3,2)"), 0);
	assert_int_equal(tg_state_set_string(st, "empty", ""), 0);
	const double f[4] = { 0.1, -0.0, INFINITY, NAN };
	const int64_t i[3] = { INT64_MIN, -1, INT64_MAX };
	assert_int_equal(tg_state_set_f64(st, "schedule", f, 4), 0);
	assert_int_equal(tg_state_set_i64(st, "rng", i, 3), 0);
	assert_int_equal(tg_state_set_i64(st, "none", NULL, 0), 0);
	assert_int_equal(tg_checkpoint_save_state(ctx, path, st), 0);
	tg_state_free(st);

	assert_int_equal(tg_checkpoint_read(ctx, path, &st), 0);
	assert_string_equal(tg_state_string(st, "arch"), "affine(4,3) relu affine(3,2)");
	assert_string_equal(tg_state_string(st, "empty"), "");
	assert_null(tg_state_string(st, "schedule")); /* numbers, not a string */
	double g[8];
	int64_t j[8];
	assert_int_equal(tg_state_f64(st, "schedule", g, 8), 4);
	assert_memory_equal(g, f, sizeof f); /* bit for bit: -0, Inf, NaN */
	assert_int_equal(tg_state_i64(st, "rng", j, 2), 3); /* holds 3, copied 2 */
	assert_int_equal(j[0], INT64_MIN);
	assert_int_equal(j[1], -1);
	assert_int_equal(tg_state_i64(st, "none", j, 8), 0);
	assert_int_equal(tg_state_f64(st, "rng", g, 8), -1); /* not f64 */
	assert_int_equal(tg_state_count(st), 4);
	assert_string_equal(tg_state_name(st, 0), "w.f32");
	assert_string_equal(tg_state_name(st, 3), "idx.i64");
	assert_null(tg_state_name(st, 4));
	/* in another order, strictly */
	tg_tensor *rev[4] = { u[3], u[1], u[0], u[2] };
	assert_int_equal(tg_state_load_into(st, rev, 4, TG_CHECKPOINT_STRICT, NULL, 0), 4);
	assert_ctx_ok(ctx);
	for (int k = 0; k < 4; k++)
		assert_same_tensor(t[k], u[k]);
	/* and as step copies */
	tg_tensor *c = tg_state_tensor(st, "w.f32");
	assert_non_null(c);
	assert_string_equal(tg_name(c), "w.f32");
	assert_same_tensor(t[0], c);
	assert_int_equal(tg_ndim(c), 8);
	tg_state_free(st);
	/* the plain load reads version 2 too */
	make_typed(ctx, 3, u);
	assert_int_equal(tg_checkpoint_load(ctx, path, u, 4), 0);
	for (int k = 0; k < 4; k++)
		assert_same_tensor(t[k], u[k]);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

/* A model saved with an optimizer's state: a model-only list is missing
 * nothing but the file has more. */
static void a_strict_load_names_every_missing_and_unexpected_tensor(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	save_typed_state(path);
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *t[4];
	make_typed(ctx, 2, t);
	tg_state *st;
	assert_int_equal(tg_checkpoint_read(ctx, path, &st), 0);
	snapshot before = snap(t, 4);
	/* two fewer targets */
	assert_int_equal(tg_state_load_into(st, t, 2, TG_CHECKPOINT_STRICT, NULL, 0), -1);
	assert_error(ctx, TG_EFORMAT, "model.ckpt: the file has 4 tensors, the model 2: "
				      "tensors idx.i32, idx.i64 are in the file but not in the model");
	tg_clear_error(ctx);
	/* same count, one name differs both ways */
	tg_set_name(t[1], "w.f64.m");
	assert_int_equal(tg_state_load_into(st, t, 4, TG_CHECKPOINT_STRICT, NULL, 0), -1);
	assert_error(ctx, TG_EFORMAT, "model.ckpt: tensor w.f64.m is not in the file; tensor "
				      "w.f64 is in the file but not in the model");
	tg_clear_error(ctx);
	snapshot after = snap(t, 4);
	assert_same_values(&before, &after);
	/* tg_checkpoint_load is strict */
	assert_int_equal(tg_checkpoint_load(ctx, path, t, 4), -1);
	assert_error(ctx, TG_EFORMAT, "tensor w.f64.m is not in the file");
	tg_clear_error(ctx);
	tg_state_free(st);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void a_loose_load_reports_the_names_and_loads_the_rest(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	save_typed_state(path);
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *want[4], *t[4];
	make_typed(ctx, 1, want);
	make_typed(ctx, 2, t);
	tg_tensor *extra = tg_set_name(tg_param(tg_ones(ctx, TG_F32, SHAPE(2))), "bn1.gamma");
	tg_tensor *list[4] = { t[0], extra, t[3], t[2] }; /* no w.f64 */
	tg_state *st;
	assert_int_equal(tg_checkpoint_read(ctx, path, &st), 0);
	char report[256];
	memset(report, 'x', sizeof report);
	assert_int_equal(tg_state_load_into(st, list, 4, 0, report, sizeof report), 3);
	assert_ctx_ok(ctx);
	assert_string_equal(report, "tensor bn1.gamma is not in the file; tensor w.f64 is in "
				    "the file but not in the model");
	assert_same_tensor(want[0], t[0]);
	assert_same_tensor(want[2], t[2]);
	assert_same_tensor(want[3], t[3]);
	assert_near(tg_get(extra, 0), 1, 0); /* untouched */
	assert_near(tg_get(t[1], 0), 2 - 4, 0); /* not in the list: untouched */
	/* a report cut to its buffer, and "" when everything matched */
	assert_int_equal(tg_state_load_into(st, list, 4, 0, report, 10), 3);
	assert_string_equal(report, "tensor bn");
	assert_int_equal(tg_state_load_into(st, t, 4, 0, report, sizeof report), 4);
	assert_string_equal(report, "");
	assert_int_equal(tg_state_load_into(st, NULL, 0, 0, report, sizeof report), 0);
	assert_non_null(strstr(report, "tensors w.f32, w.f64, idx.i32, idx.i64 are in the file"));
	assert_ctx_ok(ctx);
	tg_state_free(st);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void a_mismatch_among_the_matched_fails_even_a_loose_load(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "model.ckpt", path);
	save_typed_state(path);
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *t[4];
	make_typed(ctx, 2, t);
	tg_state *st;
	assert_int_equal(tg_checkpoint_read(ctx, path, &st), 0);
	tg_tensor *i32 = tg_set_name(tg_keep(tg_zeros(ctx, TG_I64, SHAPE(5))), "idx.i32");
	tg_tensor *l1[2] = { t[0], i32 };
	snapshot before = snap(t, 1);
	assert_int_equal(tg_state_load_into(st, l1, 2, 0, NULL, 0), -1);
	assert_error(ctx, TG_EFORMAT, "model.ckpt: tensor idx.i32 is i32 in the file, i64 in the "
				      "model");
	tg_clear_error(ctx);
	tg_tensor *w = tg_set_name(tg_param(tg_zeros(ctx, TG_F32, SHAPE(2, 1, 2, 1, 1, 3, 2, 1))),
				   "w.f32");
	tg_tensor *l2[2] = { t[3], w };
	assert_int_equal(tg_state_load_into(st, l2, 2, 0, NULL, 0), -1);
	assert_error(ctx, TG_EFORMAT, "tensor w.f32 has shape (2,1,2,1,1,3,1,2) in the file, "
				      "(2,1,2,1,1,3,2,1) in the model");
	tg_clear_error(ctx);
	assert_int_equal(tg_state_load_into(st, l1, 2, 8, NULL, 0), -1);
	assert_error(ctx, TG_EARG, "tg_state_load_into: unknown flags 0x8");
	tg_clear_error(ctx);
	snapshot after = snap(t, 1);
	assert_same_values(&before, &after);
	assert_near(tg_get(t[3], 0), 2000, 0);
	tg_state_free(st);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

/* Reads path and loads it loosely into t; must fail with TG_EFORMAT and
 * leave t as it was. */
static void expect_refused(tg_ctx *ctx, const char *path, tg_tensor *const *t, size_t at,
			   size_t size)
{
	snapshot before = snap(t, 4);
	tg_state *st = (tg_state *)1;
	int rc = tg_checkpoint_read(ctx, path, &st);
	if (rc == 0) {
		tg_state_load_into(st, t, 4, 0, NULL, 0);
		tg_state_free(st);
		fail_msg("byte %zu of %zu changed, and the file still read", at, size);
	}
	assert_null(st);
	if (tg_status_of(ctx) != TG_EFORMAT || !strstr(tg_error(ctx), path))
		fail_msg("byte %zu: %s \"%s\"", at, tg_status_name(tg_status_of(ctx)),
			 tg_error(ctx));
	snapshot after = snap(t, 4);
	assert_same_values(&before, &after);
	tg_clear_error(ctx);
}

static void every_flipped_byte_of_a_v2_file_is_refused(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "state.ckpt", path);
	save_typed_state(path);
	bytes good = slurp(path);
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *t[4];
	make_typed(ctx, 2, t);
	for (size_t i = 0; i < good.n; i++) {
		good.p[i] ^= 0xff;
		spit(path, good.p, good.n);
		good.p[i] ^= 0xff;
		expect_refused(ctx, path, t, i, good.n);
	}
	print_message("all %zu flipped bytes rejected\n", good.n);
	tg_ctx_free(ctx);
	free(good.p);
	tmp_remove(&d);
}

static void every_truncation_of_a_v2_file_is_refused(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "state.ckpt", path);
	save_typed_state(path);
	bytes good = slurp(path);
	tg_ctx *ctx = tg_ctx_new(2);
	tg_tensor *t[4];
	make_typed(ctx, 2, t);
	for (size_t n = 0; n < good.n; n++) {
		spit(path, good.p, n);
		expect_refused(ctx, path, t, n, good.n);
	}
	/* and one byte more */
	good.p[good.n] = 0;
	spit(path, good.p, good.n + 1);
	expect_refused(ctx, path, t, good.n, good.n);
	tg_ctx_free(ctx);
	free(good.p);
	tmp_remove(&d);
}

static void the_generator_resumes_where_it_was_saved(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "run.ckpt", path);
	tg_ctx *ctx = tg_ctx_new(7);
	for (int i = 0; i < 5; i++)
		tg_random_u64(ctx);
	tg_state *st = tg_state_new(ctx);
	tg_state_rng(st);
	assert_int_equal(tg_checkpoint_save_state(ctx, path, st), 0);
	tg_state_free(st);
	uint64_t straight[6];
	for (int i = 0; i < 6; i++)
		straight[i] = tg_random_u64(ctx);
	tg_ctx_free(ctx);

	ctx = tg_ctx_new(99); /* another seed */
	assert_int_equal(tg_checkpoint_read(ctx, path, &st), 0);
	assert_int_equal(tg_state_restore_rng(st, ctx), 0);
	tg_state_free(st);
	for (int i = 0; i < 6; i++) {
		uint64_t r = tg_random_u64(ctx);
		if (r != straight[i])
			fail_msg("draw %d after restoring: %llu, straight on: %llu", i,
				 (unsigned long long)r, (unsigned long long)straight[i]);
	}
	/* tg_rng_state / tg_rng_set_state directly */
	uint64_t s[4], a = 0, b = 0;
	tg_rng_state(ctx, s);
	a = tg_random_u64(ctx);
	assert_int_equal(tg_rng_set_state(ctx, s), 0);
	b = tg_random_u64(ctx);
	assert_true(a == b);
	const uint64_t zero[4] = { 0 };
	assert_int_equal(tg_rng_set_state(ctx, zero), -1);
	assert_error(ctx, TG_EARG, "four zeros");
	tg_clear_error(ctx);
	/* a state without "rng" */
	st = tg_state_new(ctx);
	assert_int_equal(tg_state_restore_rng(st, ctx), -1);
	assert_error(ctx, TG_EARG, "holds no generator state");
	tg_state_free(st);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

/* The system's Python with NumPy, or NULL. */
static const char *numpy_python(void)
{
	static const char *const cands[] = { "/usr/bin/python3", "python3" };
	for (size_t i = 0; i < LEN(cands); i++) {
		char cmd[256];
		snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", cands[i]);
		if (system(cmd) == 0)
			return cands[i];
	}
	return NULL;
}

static void numpy_reads_the_npz_export(void **state)
{
	(void)state;
	tmpdir d;
	tmp_make(&d);
	char path[256];
	tmp_file(&d, "weights.npz", path);
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *t[6];
	make_typed(ctx, 1, t);
	t[4] = tg_set_name(tg_param(tg_randn(ctx, TG_F32, SHAPE(3, 4), 0, 1)), "fc1.W");
	/* a name beyond ASCII: "fc1.bé" in UTF-8 */
	t[5] = tg_set_name(tg_keep(tg_full(ctx, TG_F64, SHAPE(3), -0.5)), "fc1.b\xc3\xa9");
	assert_int_equal(tg_export_npz(ctx, path, t, 6), 0);
	assert_ctx_ok(ctx);
	/* a zip whose members are the .npy files, an ASCII name's flags 0 */
	bytes z = slurp(path);
	assert_memory_equal(z.p, "PK\x03\x04", 4);
	assert_memory_equal(z.p + 6, "\x00\x00", 2);
	assert_memory_equal(z.p + 30, "w.f32.npy\x93NUMPY\x01\x00", 17);
	free(z.p);
	/* the UTF-8 flag (bit 11) on a UTF-8 name beyond ASCII, so that it is
	 * not read as CP437; a directory in a name is a member in it */
	static const char *const names[] = { "b\xc3\xa9ta", "\xe2\x82\xac", "enc/fc1.W", "..W" };
	static const unsigned char flag[] = { 0x08, 0x08, 0, 0 };
	/* bytes that are no UTF-8 would come back garbled, and a name that
	 * leaves the directory an extractor unpacks into is refused */
	static const char *const refused[] = { "\xff", "\xc0\xaf", "\xed\xa0\x80", "b\xc3",
					       "../../evil", "a/../../b", "/etc/x", "a\\b", ".." };
	for (size_t i = 0; i < LEN(refused); i++) {
		tg_tensor *u = tg_set_name(tg_keep(tg_zeros(ctx, TG_F32, SHAPE(1))), refused[i]);
		assert_int_equal(tg_export_npz(ctx, path, &u, 1), -1);
		assert_error(ctx, TG_EARG, i < 4 ? "it is not UTF-8" : "a member's name may not");
		tg_clear_error(ctx);
	}
	for (size_t i = 0; i < LEN(names); i++) {
		tg_tensor *u = tg_set_name(tg_keep(tg_zeros(ctx, TG_F32, SHAPE(1))), names[i]);
		assert_int_equal(tg_export_npz(ctx, path, &u, 1), 0);
		z = slurp(path);
		assert_int_equal(z.p[6], 0);
		assert_int_equal(z.p[7], flag[i]);
		size_t central = z.n - 22 - 46 - strlen(names[i]) - 4;
		assert_memory_equal(z.p + central, "PK\x01\x02", 4);
		assert_int_equal(z.p[central + 9], flag[i]);
		free(z.p);
	}
	assert_int_equal(tg_export_npz(ctx, path, t, 6), 0);
	const char *py = numpy_python();
	if (!py) {
		print_message("numpy_reads_the_npz_export: skipped, no python3 with numpy "
			      "(apt-get install python3-numpy)\n");
		tg_ctx_free(ctx);
		tmp_remove(&d);
		skip();
	}
	/* numpy prints, per array in the archive's order: name, dtype, shape
	 * and the values' bytes in hex */
	char out[256], cmd[1024];
	tmp_file(&d, "numpy.txt", out);
	snprintf(cmd, sizeof cmd,
		 "PYTHONIOENCODING=utf-8 %s -c 'import sys, numpy\n"
		 "z = numpy.load(sys.argv[1])\n"
		 "for k in z.files:\n"
		 "    a = z[k]\n"
		 "    print(k, a.dtype, \",\".join(map(str, a.shape)) or \"()\", a.tobytes().hex())\n"
		 "' %s > %s",
		 py, path, out);
	assert_int_equal(system(cmd), 0);
	FILE *f = fopen(out, "r");
	assert_non_null(f);
	static const char *const npname[] = { "float32", "float64", "int32", "int64" };
	for (int k = 0; k < 6; k++) {
		char name[64], dt[16], shape[64], hex[1024];
		assert_int_equal(fscanf(f, "%63s %15s %63s %1023s", name, dt, shape, hex), 4);
		assert_string_equal(name, tg_name(t[k]));
		assert_string_equal(dt, npname[tg_dtype_of(t[k])]);
		char want[64] = "";
		for (int i = 0; i < tg_ndim(t[k]); i++)
			snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld",
				 i ? "," : "", (long long)tg_shape(t[k])[i]);
		assert_string_equal(shape, *want ? want : "()");
		size_t es = tg_dtype_of(t[k]) == TG_F64 || tg_dtype_of(t[k]) == TG_I64 ? 8 : 4;
		size_t nb = tg_numel(t[k]) * es;
		char wh[1024] = "";
		for (size_t i = 0; i < nb; i++)
			snprintf(wh + 2 * i, 3, "%02x", ((const unsigned char *)tg_data(t[k]))[i]);
		assert_string_equal(hex, wh);
	}
	fclose(f);
	print_message("%s: numpy read 6 arrays back exactly\n", py);
	tg_ctx_free(ctx);
	tmp_remove(&d);
}

static void states_refuse_misuse(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *t[4];
	make_typed(ctx, 1, t);
	tg_state *st = tg_state_new(ctx);
	assert_int_equal(tg_state_add(st, t, 2), 0);
	assert_int_equal(tg_state_add(st, t + 1, 1), -1);
	assert_error(ctx, TG_EARG, "the state already holds a tensor named w.f64");
	tg_clear_error(ctx);
	assert_int_equal(tg_state_set_string(st, "", "x"), -1);
	assert_error(ctx, TG_EARG, "tg_state_set_string: a key of 0 bytes");
	tg_clear_error(ctx);
	assert_int_equal(tg_state_set_f64(st, "x", NULL, 2), -1);
	assert_error(ctx, TG_ENULL, "tg_state_set_f64: the value is NULL");
	tg_clear_error(ctx);
	/* a step tensor added, then freed by tg_reset */
	tg_tensor *step = tg_set_name(tg_zeros(ctx, TG_F32, SHAPE(2)), "step");
	assert_int_equal(tg_state_add(st, &step, 1), 0);
	tg_reset(ctx);
	assert_int_equal(tg_checkpoint_save_state(ctx, "/tmp/never-written.ckpt", st), -1);
	assert_error(ctx, TG_ESTALE, "tensor step was freed by tg_reset after tg_state_add");
	tg_clear_error(ctx);
	assert_null(tg_state_tensor(st, "nothing"));
	assert_error(ctx, TG_EARG, "the state holds no tensor nothing");
	tg_clear_error(ctx);
	tg_state_free(st);
	tg_state *out = (tg_state *)1;
	assert_int_equal(tg_checkpoint_read(ctx, NULL, &out), -1);
	assert_null(out);
	assert_error(ctx, TG_ENULL, "tg_checkpoint_read: path is NULL");
	tg_clear_error(ctx);
	assert_int_equal(tg_export_npz(ctx, "/tmp/x.npz", NULL, 1), -1);
	assert_error(ctx, TG_ENULL, "tg_export_npz: the tensor list is NULL");
	tg_state_free(NULL);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(values_survive_a_round_trip_exactly_in_f32_and_f64),
		cmocka_unit_test(tensors_are_matched_by_name_in_any_order),
		cmocka_unit_test(a_file_written_by_hand_to_the_documented_format_loads),
		cmocka_unit_test(a_corrupted_byte_fails_the_crc),
		cmocka_unit_test(a_truncated_file_is_rejected),
		cmocka_unit_test(a_shape_mismatch_is_named_and_nothing_is_loaded),
		cmocka_unit_test(a_wrong_name_dtype_or_count_is_rejected),
		cmocka_unit_test(a_wrong_magic_or_version_is_rejected),
		cmocka_unit_test(an_absurd_size_in_the_file_is_rejected_without_allocating),
		cmocka_unit_test(a_missing_file_is_an_io_error),
		cmocka_unit_test(a_fifo_is_refused_at_once_not_waited_on),
		cmocka_unit_test(saving_never_replaces_what_is_not_a_regular_file),
		cmocka_unit_test(nonfinite_weights_are_refused_unless_asked_for),
		cmocka_unit_test(unnamed_or_duplicate_tensors_are_refused),
		cmocka_unit_test(saving_into_a_missing_directory_fails_and_touches_nothing),
		cmocka_unit_test(a_good_checkpoint_survives_a_refused_save_at_its_path),
		cmocka_unit_test(a_good_checkpoint_survives_a_write_that_fails),
		cmocka_unit_test(a_read_only_directory_refuses_the_save),
		cmocka_unit_test(every_flipped_byte_is_rejected_and_loads_nothing),
		cmocka_unit_test(a_save_killed_mid_write_leaves_a_whole_checkpoint),
		cmocka_unit_test(a_full_device_fails_the_save_and_keeps_the_old_file),
		cmocka_unit_test(leftovers_of_dead_writers_are_removed_by_the_next_save),
		cmocka_unit_test(a_name_of_255_bytes_is_saved_and_its_dead_leftovers_removed),
		cmocka_unit_test(saving_onto_a_symbolic_link_writes_its_target),
		cmocka_unit_test(two_threads_saving_to_one_path_always_leave_a_whole_file),
		cmocka_unit_test(the_committed_fixture_still_loads),
		cmocka_unit_test(every_dtype_and_eight_dims_and_metadata_survive_a_round_trip),
		cmocka_unit_test(a_strict_load_names_every_missing_and_unexpected_tensor),
		cmocka_unit_test(a_loose_load_reports_the_names_and_loads_the_rest),
		cmocka_unit_test(a_mismatch_among_the_matched_fails_even_a_loose_load),
		cmocka_unit_test(every_flipped_byte_of_a_v2_file_is_refused),
		cmocka_unit_test(every_truncation_of_a_v2_file_is_refused),
		cmocka_unit_test(the_generator_resumes_where_it_was_saved),
		cmocka_unit_test(numpy_reads_the_npz_export),
		cmocka_unit_test(states_refuse_misuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
