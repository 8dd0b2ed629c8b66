/*
 * fuzz_csv.c - libFuzzer target: the CSV reader (tg_load_csv, tg_load_iris,
 * tg_load_digits).
 *
 * Input: two option bytes, then the file's text.
 *   byte 0 bits 0-2: label column; bits 3-4: header mode (3 is not a valid
 *          one); bit 5: gzip the text first; bits 6-7: tg_load_csv, iris,
 *          digits, or tg_load_csv with default options (NULL)
 *   byte 1 bits 0-3: classes; bits 4-7: scale
 *   the input's length: max_rows 2 when it is 3 mod 4, max_bytes 192 KB when
 *          bits 2-3 are set (tg_load_csv's options only)
 * A load either fails with an error naming the file and an empty data set,
 * or gives finite features and labels below classes, rows no more than the
 * text has lines; a loaded set then goes through the data-set functions.
 */
#define _GNU_SOURCE
#include "fuzz_dataset.h"

static fuzz_file file;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fuzz_file_open(&file, "csv")) {
		perror("fuzz_csv: temporary file");
		exit(1);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int label_of[] = { -1, 0, 1, -2, 4, 64, -100, 100 };
	static const int classes_of[] = {
		0, 3, 10, -1, 2, 1, 65536, 65537, 256, 0, 0, 0, 3, 3, 10, 10,
	};
	static const double scale_of[] = {
		0, 1, 16, 255, NAN, INFINITY, -2, 1e-300, 0, 0, 0, 0, 1e300, 0.5, 1, 1,
	};
	if (size < 2)
		return 0;
	unsigned a = data[0], b = data[1];
	const uint8_t *text = data + 2;
	size_t n = size - 2;
	tg_csv_options opt = TG_CSV_DEFAULTS;
	opt.label_column = label_of[a & 7];
	opt.header = (tg_csv_header)((a >> 3) & 3);
	opt.classes = classes_of[b & 15];
	opt.scale = scale_of[b >> 4];
	/* the caps, small, for some input lengths */
	opt.max_rows = (size & 3) == 3 ? 2 : 0;
	opt.max_bytes = (size & 12) == 12 ? 3 << 16 : 0;
	unsigned loader = a >> 6;

	size_t zn = 0;
	unsigned char *z = (a & 32) ? gzip_bytes(text, n, &zn) : NULL;
	require(!fuzz_file_set(&file, z ? z : text, z ? zn : n), "cannot write the input");

	fuzz_alloc al = { 0 };
	tg_ctx *ctx = fuzz_ctx_new(1, &al);
	require(ctx, "no context");
	tg_set_arena_limit(ctx, 64 << 20);
	tg_dataset ds = { 0 };
	int rc;
	switch (loader) {
	case 0: rc = tg_load_csv(ctx, file.path, &opt, &ds); break;
	case 1: rc = tg_load_iris(ctx, file.path, &ds); break;
	case 2: rc = tg_load_digits(ctx, file.path, &ds); break;
	default: rc = tg_load_csv(ctx, file.path, NULL, &ds); break;
	}
	check_loaded(ctx, rc, &ds, file.path, NULL);
	if (loader == 0) {
		bool bad_opt = opt.classes > TG_DATA_MAX_CLASSES || !isfinite(opt.scale) ||
			       opt.scale < 0 ||
			       (unsigned)opt.header > TG_CSV_HEADER_NO;
		if (bad_opt)
			require(rc == -1 && tg_status_of(ctx) == TG_EARG, "bad options accepted");
	}
	if (rc == 0) {
		/* rows come from lines (ended by LF, CR or CRLF); the label column
		 * counts as no feature */
		size_t lines = 1;
		for (size_t i = 0; i < n; i++)
			lines += text[i] == '\n' ||
				 (text[i] == '\r' && (i + 1 == n || text[i + 1] != '\n'));
		if (!z && !(n >= 2 && text[0] == 0x1f && text[1] == 0x8b))
			require((size_t)ds.n <= lines, "%lld rows from %zu lines", (long long)ds.n,
				lines);
		if (loader == 0 && opt.max_rows)
			require(ds.n <= opt.max_rows, "%lld rows, max_rows %lld", (long long)ds.n,
				(long long)opt.max_rows);
		int want = loader == 1 ? 3 : loader == 2 ? 10 : loader == 0 ? opt.classes : 0;
		if (want > 0)
			require(ds.classes == want, "%d classes, asked for %d", (int)ds.classes, want);
		if (loader == 1 || loader == 2)
			require(ds.d == (loader == 1 ? 4 : 64), "%lld features", (long long)ds.d);
		drive_dataset(ctx, &ds, data + size - (size >= 10 ? 8 : 2), size >= 10 ? 8 : 2);
	}
	tg_dataset_free(&ds);
	tg_ctx_free(ctx);
	free(z);
	return 0;
}
