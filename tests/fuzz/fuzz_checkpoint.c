/*
 * fuzz_checkpoint.c - libFuzzer target: the checkpoint loader
 * (tg_checkpoint_load), with a save and reload of whatever loaded.
 *
 * Input: two option bytes, then the file.
 *   byte 0 bits 0-4: which of the five model tensors are in the list;
 *          bit 5: list them in reverse order; bit 6: the first tensor gets a
 *          long name from the input; bit 7: put a correct CRC32 at the end of
 *          the file, so that mutations get past the checksum
 *   byte 1: a misuse of the API, or none (see misuse[])
 * The model: fc1.W f32 (2,3), fc1.b f32 (3), bn1.running_mean f64 (3),
 * step i64 (), img i32 (2,1,2,1,1,1,2,1) - what tests/fuzz/gen_seeds.c
 * saves (some seeds with metadata: an architecture string, numbers).
 * A load either fills every listed tensor (and a save of them loads back to
 * the same bytes), or fails with an error naming the file and leaves every
 * tensor's values as they were; a file refused only for a NaN or an Inf
 * loads with TG_CHECKPOINT_NONFINITE. The same file read whole
 * (tg_checkpoint_read) is read when the strict load worked; a loose load of
 * it into the list fills the matched tensors or changes nothing; a state
 * that was read saves, reads back and saves again to the same bytes.
 */
#define _GNU_SOURCE
#include "fuzz_common.h"
#include "tapegrad_io.h"

#include <zlib.h>

static fuzz_file file;
static char dir[4096], saved[4200], saved2[4200];

static void remove_dir(void)
{
	unlink(saved);
	unlink(saved2);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fuzz_file_open(&file, "ckpt")) {
		perror("fuzz_checkpoint: temporary file");
		exit(1);
	}
	/* tmpfs when there is one: a save fsyncs */
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof dir, "%s/tg_fuzz_ckpt_XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("fuzz_checkpoint: temporary directory");
		exit(1);
	}
	snprintf(saved, sizeof saved, "%s/saved.ckpt", dir);
	snprintf(saved2, sizeof saved2, "%s/saved2.ckpt", dir);
	atexit(remove_dir);
	return 0;
}

enum { NT = 5 };

static const struct {
	const char *name;
	tg_dtype dt;
	int ndim;
	int64_t shape[TG_MAX_DIMS];
} model[NT] = {
	{ "fc1.W", TG_F32, 2, { 2, 3 } },
	{ "fc1.b", TG_F32, 1, { 3 } },
	{ "bn1.running_mean", TG_F64, 1, { 3 } },
	{ "step", TG_I64, 0, { 0 } },
	{ "img", TG_I32, 8, { 2, 1, 2, 1, 1, 1, 2, 1 } },
};

/* The ways to misuse the API that byte 1 picks (0 and 7..255: none). */
enum {
	OK_USE,
	DUP_NAME,    /* two tensors of one name: TG_EARG */
	NO_NAME,     /* a tensor without a name: TG_EARG */
	STALE,       /* a step tensor freed by tg_reset: TG_ESTALE */
	NULL_ENTRY,  /* a NULL in the list: TG_ENULL */
	NULL_PATH,   /* TG_ENULL */
	DIR_PATH,    /* a directory: TG_EIO */
	NO_FILE,     /* a path that does not exist: TG_EIO */
	NULL_LIST,   /* the list NULL with n > 0: TG_ENULL */
	OTHER_CTX,   /* a tensor of another context: TG_ECTX */
	ERROR_SET,   /* an error already set: nothing happens */
	NMISUSE
};

/* Parameters (ctx tensors) for the listed model tensors, filled with a
 * pattern. Returns how many. */
static size_t make_model(tg_ctx *ctx, unsigned mask, bool reverse, const char *long_name,
			 tg_tensor **t)
{
	size_t n = 0;
	for (int k = 0; k < NT; k++) {
		int i = reverse ? NT - 1 - k : k;
		if (!(mask & (1u << i)))
			continue;
		bool index = model[i].dt == TG_I32 || model[i].dt == TG_I64;
		tg_tensor *z = tg_full(ctx, model[i].dt, model[i].ndim, model[i].shape,
				       index ? -7 - i : -7.25 - i);
		z = index ? tg_keep(z) : tg_param(z);
		t[n] = tg_set_name(z, n == 0 && long_name ? long_name : model[i].name);
		require(t[n], "cannot make the model: %s", tg_error(ctx));
		n++;
	}
	return n;
}

static size_t bytes_of(const tg_tensor *t)
{
	tg_dtype dt = tg_dtype_of(t);
	return tg_numel(t) * (dt == TG_F64 || dt == TG_I64 ? 8 : 4);
}

/* The live tensors' values, one after the other, in a malloc'd buffer
 * (reading a dead one would record an error). */
static unsigned char *values(tg_tensor *const *t, size_t n, size_t *total)
{
	size_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += t[i] ? bytes_of(t[i]) : 0;
	unsigned char *buf = malloc(sum ? sum : 1), *p = buf;
	require(buf, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (!t[i] || tg_ndim(t[i]) < 0)
			continue;
		memcpy(p, tg_data(t[i]), bytes_of(t[i]));
		p += bytes_of(t[i]);
	}
	*total = sum;
	return buf;
}

static unsigned char *file_bytes(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	require(f, "cannot open %s", path);
	require(fseek(f, 0, SEEK_END) == 0, "cannot seek %s", path);
	long size = ftell(f);
	rewind(f);
	unsigned char *b = malloc(size > 0 ? (size_t)size : 1);
	require(b, "out of memory");
	*n = fread(b, 1, (size_t)size, f);
	fclose(f);
	return b;
}

/* The file read whole: read exactly when the strict load worked (or was
 * refused only for its values); a loose load fills or changes nothing; a
 * state read saves, reads and saves again to the same bytes. */
static void check_state(tg_ctx *ctx, const char *path, tg_tensor *const *t, size_t nt,
			bool loaded)
{
	tg_clear_error(ctx);
	tg_state *st;
	int rc = tg_checkpoint_read(ctx, path, &st);
	if (loaded)
		require(rc == 0, "loaded, but not read: %s", tg_error(ctx));
	if (rc != 0) {
		require(!st && tg_status_of(ctx) != TG_OK && strstr(tg_error(ctx), path),
			"read failed: %s", tg_error(ctx));
		tg_clear_error(ctx);
		return;
	}
	size_t before_n, after_n;
	unsigned char *before = values(t, nt, &before_n);
	char report[256];
	int k = tg_state_load_into(st, t, nt, 0, report, sizeof report);
	unsigned char *after = values(t, nt, &after_n);
	if (k < 0) {
		require(tg_status_of(ctx) == TG_EFORMAT && strstr(tg_error(ctx), path),
			"a loose load failed with %s: %s", tg_status_name(tg_status_of(ctx)),
			tg_error(ctx));
		require(!memcmp(before, after, before_n), "a failed loose load changed values");
		tg_clear_error(ctx);
	} else {
		require((size_t)k <= nt && (k == (int)nt || report[0]),
			"loaded %d of %zu with the report \"%s\"", k, nt, report);
	}
	require(tg_checkpoint_save_state(ctx, saved, st) == 0, "save of a state read: %s",
		tg_error(ctx));
	tg_state_free(st);
	require(tg_checkpoint_read(ctx, saved, &st) == 0, "read of a state saved: %s",
		tg_error(ctx));
	require(tg_checkpoint_save_state(ctx, saved2, st) == 0, "second save: %s",
		tg_error(ctx));
	tg_state_free(st);
	size_t n1, n2;
	unsigned char *b1 = file_bytes(saved, &n1), *b2 = file_bytes(saved2, &n2);
	require(n1 == n2 && !memcmp(b1, b2, n1), "a state read and saved again changed");
	free(b1);
	free(b2);
	free(before);
	free(after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	unsigned a = data[0], use = data[1] < NMISUSE ? data[1] : OK_USE;
	const uint8_t *body = data + 2;
	size_t n = size - 2;

	/* a long name: the bytes after the file's first 16, up to a NUL */
	char *long_name = NULL;
	if ((a & 64) && n > 16) {
		size_t len = strnlen((const char *)body + 16, n - 16);
		long_name = malloc(len + 1);
		require(long_name, "out of memory");
		memcpy(long_name, body + 16, len);
		long_name[len] = 0;
		if (!len) {
			free(long_name);
			long_name = NULL;
		}
	}

	unsigned char *copy = malloc(n ? n : 1);
	require(copy, "out of memory");
	memcpy(copy, body, n);
	if ((a & 128) && n >= 4) {
		uint32_t crc = (uint32_t)crc32_z(crc32(0, NULL, 0), copy, n - 4);
		for (int i = 0; i < 4; i++)
			copy[n - 4 + i] = (unsigned char)(crc >> (8 * i));
	}
	require(!fuzz_file_set(&file, copy, n), "cannot write the input");

	fuzz_alloc al = { 0 }, al2 = { 0 };
	tg_ctx *ctx = fuzz_ctx_new(1, &al);
	require(ctx, "no context");
	tg_ctx *ctx2 = NULL;
	tg_tensor *t[NT + 1];
	size_t nt = make_model(ctx, a & 31, a & 32, long_name, t);
	const char *path = file.path;
	tg_tensor *const *list = t;
	tg_status want = TG_OK;
	switch (use) {
	case DUP_NAME:
		if (nt >= 1) {
			t[nt] = t[0];
			nt++;
			want = TG_EARG;
		}
		break;
	case NO_NAME:
		t[nt++] = tg_param(tg_zeros(ctx, TG_F32, 1, (int64_t[]){ 2 }));
		want = TG_EARG;
		break;
	case STALE:
		t[nt++] = tg_set_name(tg_zeros(ctx, TG_F32, 1, (int64_t[]){ 2 }), "stale");
		tg_reset(ctx);
		want = TG_ESTALE;
		break;
	case NULL_ENTRY:
		t[nt++] = NULL;
		want = TG_ENULL;
		break;
	case NULL_PATH:
		path = NULL;
		want = TG_ENULL;
		break;
	case DIR_PATH:
		path = dir;
		want = TG_EIO;
		break;
	case NO_FILE:
		path = "/nonexistent/tapegrad/fuzz.ckpt";
		want = TG_EIO;
		break;
	case NULL_LIST:
		if (nt) {
			list = NULL;
			want = TG_ENULL;
		}
		break;
	case OTHER_CTX: {
		ctx2 = fuzz_ctx_new(2, &al2);
		require(ctx2, "no second context");
		t[nt++] = tg_set_name(tg_param(tg_zeros(ctx2, TG_F32, 0, NULL)), "other");
		want = TG_ECTX;
		break;
	}
	case ERROR_SET:
		tg_fail(ctx, TG_EARG, "an earlier error");
		want = TG_EARG;
		break;
	}
	/* a long name from the input may repeat another tensor's name: check_list
	 * then reports TG_EARG at that tensor, before any misuse added after it */
	bool dup = false;
	for (size_t i = 1; long_name && i < nt && t[i] && tg_ndim(t[i]) >= 0; i++)
		dup = dup || (tg_name(t[i]) && !strcmp(tg_name(t[i]), long_name));
	if (dup && use != NULL_PATH && use != NULL_LIST && use != ERROR_SET)
		want = TG_EARG;
	size_t before_n;
	unsigned char *before = values(t, nt, &before_n);
	int rc = tg_checkpoint_load(ctx, path, list, nt);
	const char *msg = tg_error(ctx);
	tg_status st = tg_status_of(ctx);
	if (want != TG_OK)
		require(rc == -1 && st == want, "misuse %u: rc %d, %s \"%s\" (expected %s)", use, rc,
			tg_status_name(st), msg, tg_status_name(want));
	if (use == ERROR_SET)
		require(!strcmp(msg, "an earlier error"), "the first error was replaced: %s", msg);
	size_t after_n;
	unsigned char *after = values(t, nt, &after_n);
	if (rc != 0) {
		require(rc == -1 && st != TG_OK && msg[0], "rc %d, %s \"%s\"", rc, tg_status_name(st),
			msg);
		require(before_n == after_n && !memcmp(before, after, before_n),
			"a failed load (%s) changed the model's values", msg);
		if (st == TG_EFORMAT || st == TG_EIO)
			require(path && strstr(msg, path), "an error that does not name the file: %s",
				msg);
		/* refused only for a NaN or Inf: asked for, the same file loads (the
		 * message ends so; a name from the input may hold the words too) */
		const char *tail = "load it anyway with TG_CHECKPOINT_NONFINITE";
		size_t len = strlen(msg), tlen = strlen(tail);
		if (st == TG_EFORMAT && len >= tlen && !strcmp(msg + len - tlen, tail)) {
			tg_clear_error(ctx);
			require(tg_checkpoint_load_flags(ctx, path, list, nt,
							 TG_CHECKPOINT_NONFINITE) == 0,
				"refused for a non-finite value, then: %s", tg_error(ctx));
		}
	} else {
		require(st == TG_OK, "0 with %s", tg_status_name(st));
		require(use == OK_USE || use >= NMISUSE || (use == NULL_LIST && !nt) ||
				(use == DUP_NAME && !nt),
			"misuse %u loaded", use);
		/* whatever loaded saves and loads back to the same bytes */
		tg_tensor *u[NT];
		for (size_t i = 0; i < nt; i++) {
			tg_tensor *z = tg_zeros(ctx, tg_dtype_of(t[i]), tg_ndim(t[i]), tg_shape(t[i]));
			u[i] = tg_set_name(tg_keep(z), tg_name(t[i]));
		}
		require(tg_checkpoint_save(ctx, saved, t, nt) == 0, "save: %s", tg_error(ctx));
		require(tg_checkpoint_load(ctx, saved, u, nt) == 0, "reload: %s", tg_error(ctx));
		size_t back_n;
		unsigned char *back = values(u, nt, &back_n);
		require(back_n == after_n && !memcmp(back, after, back_n),
			"a save and reload changed the values");
		free(back);
	}
	if (use == OK_USE || use >= NMISUSE)
		check_state(ctx, path, t, nt, rc == 0);
	free(before);
	free(after);
	tg_ctx_free(ctx2);
	tg_ctx_free(ctx);
	free(copy);
	free(long_name);
	return 0;
}
