/*
 * fuzz_dataset.h - what the IDX and CSV targets check about a loader's
 * result, and the data-set functions they drive with it.
 *
 * A loader either fills the data set (every label below classes, every
 * feature finite) or fails with an error and leaves it empty. A loaded set
 * then goes through head, subset, split and the batcher, whose results are
 * checked against the rows they were cut from.
 */
#ifndef TG_FUZZ_DATASET_H
#define TG_FUZZ_DATASET_H

#include "fuzz_common.h"
#include "tapegrad_io.h"

#include <math.h>

/* After a loader returned rc for path (and path2, the labels of IDX). */
static inline void check_loaded(tg_ctx *ctx, int rc, const tg_dataset *ds, const char *path,
				const char *path2)
{
	const char *msg = tg_error(ctx);
	if (rc != 0) {
		require(rc == -1 && !tg_ok(ctx) && msg[0], "loader: rc %d, %s \"%s\"", rc,
			tg_status_name(tg_status_of(ctx)), msg);
		require(ds->n == 0 && ds->d == 0 && !ds->x && !ds->y,
			"loader failed (%s) but left %lld x %lld data", msg, (long long)ds->n,
			(long long)ds->d);
		if (tg_status_of(ctx) == TG_EFORMAT)
			require(strstr(msg, path) || (path2 && strstr(msg, path2)),
				"a format error that does not name the file: \"%s\"", msg);
		return;
	}
	require(tg_ok(ctx), "loader: 0 with %s \"%s\"", tg_status_name(tg_status_of(ctx)), msg);
	require(ds->n >= 1 && ds->d >= 1 && ds->x && ds->y && ds->classes >= 1 &&
			ds->classes <= TG_DATA_MAX_CLASSES,
		"loaded %lld x %lld, %d classes", (long long)ds->n, (long long)ds->d,
		(int)ds->classes);
	for (int64_t i = 0; i < ds->n; i++)
		require(ds->y[i] >= 0 && ds->y[i] < ds->classes, "label %d at %lld, %d classes",
			(int)ds->y[i], (long long)i, (int)ds->classes);
	for (int64_t i = 0; i < ds->n * ds->d; i++)
		require(isfinite(ds->x[i]), "feature %lld is %g", (long long)i, ds->x[i]);
}

static inline bool same_row(const tg_dataset *a, int64_t i, const tg_dataset *b, int64_t j)
{
	return a->y[i] == b->y[j] &&
	       !memcmp(a->x + i * a->d, b->x + j * b->d, (size_t)a->d * sizeof(float));
}

/* head, subset, split and a few batches of ds, driven by the bytes in
 * p[0..n); each result is checked against ds. ctx must be free of errors. */
static inline void drive_dataset(tg_ctx *ctx, const tg_dataset *ds, const uint8_t *p, size_t n)
{
	uint8_t b[8] = { 0 };
	memcpy(b, p, n < sizeof b ? n : sizeof b);
	tg_dataset out, val;

	int64_t k = (int64_t)b[0] - 2; /* may be 0 or negative */
	int rc = tg_dataset_head(ctx, ds, k, &out);
	if (k < 1) {
		require(rc == -1 && tg_status_of(ctx) == TG_EARG && !out.x, "head(%lld)",
			(long long)k);
		tg_clear_error(ctx);
	} else if (rc == 0) {
		int64_t want = k < ds->n ? k : ds->n;
		require(out.n == want && out.d == ds->d, "head(%lld): %lld rows", (long long)k,
			(long long)out.n);
		for (int64_t i = 0; i < out.n; i++)
			require(same_row(&out, i, ds, i), "head: row %lld differs", (long long)i);
		tg_dataset_free(&out);
	} else {
		require(tg_status_of(ctx) == TG_ENOMEM, "head: %s", tg_error(ctx));
		tg_clear_error(ctx);
	}

	/* rows in a given order, one of them perhaps out of range */
	int64_t idx[16];
	int64_t m = 1 + b[1] % 16;
	for (int64_t i = 0; i < m; i++)
		idx[i] = (int64_t)((uint64_t)(i * 5 + b[2]) % (uint64_t)ds->n);
	bool bad = b[3] & 1;
	if (bad)
		idx[b[3] % m] = b[3] & 2 ? -1 : ds->n;
	rc = tg_dataset_subset(ctx, ds, idx, m, &out);
	if (bad) {
		require(rc == -1 && tg_status_of(ctx) == TG_EARG && !out.x, "subset: bad index");
		tg_clear_error(ctx);
	} else if (rc == 0) {
		require(out.n == m, "subset: %lld rows", (long long)out.n);
		for (int64_t i = 0; i < m; i++)
			require(same_row(&out, i, ds, idx[i]), "subset: row %lld", (long long)i);
		tg_dataset_free(&out);
	} else {
		require(tg_status_of(ctx) == TG_ENOMEM, "subset: %s", tg_error(ctx));
		tg_clear_error(ctx);
	}

	/* a split keeps every row exactly once: compare the label sums */
	int64_t nval = (int64_t)(b[4] % 8) - 1;
	rc = tg_dataset_split(ctx, ds, nval, &out, &val);
	if (nval < 1 || nval >= ds->n) {
		require(rc == -1 && tg_status_of(ctx) == TG_EARG, "split(%lld) of %lld",
			(long long)nval, (long long)ds->n);
		tg_clear_error(ctx);
	} else if (rc == 0) {
		require(out.n + val.n == ds->n && val.n == nval, "split sizes");
		int64_t s0 = 0, s1 = 0;
		for (int64_t i = 0; i < ds->n; i++)
			s0 += ds->y[i];
		for (int64_t i = 0; i < out.n; i++)
			s1 += out.y[i];
		for (int64_t i = 0; i < val.n; i++)
			s1 += val.y[i];
		require(s0 == s1, "split changed the labels: %lld vs %lld", (long long)s0,
			(long long)s1);
		tg_dataset_free(&out);
		tg_dataset_free(&val);
	} else {
		require(tg_status_of(ctx) == TG_ENOMEM, "split: %s", tg_error(ctx));
		tg_clear_error(ctx);
	}

	/* one shuffled epoch visits every row once; with replacement, anything.
	 * Batch sizes include the boundaries of the int64 range: a batch the
	 * batcher accepts must be one it can hold. */
	static const int64_t batches[] = {
		-1, 0, 1, 2, 3, 4, 5, 7, 8, INT64_MAX, ((int64_t)1 << 62) + 1,
	};
	int64_t batch = batches[b[5] % (sizeof batches / sizeof batches[0])];
	unsigned flags = b[6] % 5;
	tg_batcher *bt = tg_batcher_new(ctx, ds, batch, flags);
	if (!bt) {
		require(!tg_ok(ctx), "tg_batcher_new: NULL without an error");
		tg_clear_error(ctx);
		return;
	}
	require(batch >= 1 && flags <= 3, "tg_batcher_new accepted batch %lld, flags %u",
		(long long)batch, flags);
	int64_t seen = 0;
	tg_batch bb;
	for (int step = 0; step < 64 && seen <= ds->n; step++) {
		if (!tg_batch_next(bt, (tg_dtype)(b[7] & 1), &bb)) {
			require(tg_ok(ctx) || tg_status_of(ctx) == TG_ENOMEM, "tg_batch_next: %s",
				tg_error(ctx));
			break;
		}
		/* (n, D), or (n, one sample's shape) for image data */
		int64_t shape[1 + TG_SAMPLE_MAX_DIMS];
		int nd = tg_dataset_batch_shape(ds, bb.n, shape);
		bool same = nd == tg_ndim(bb.x) && tg_numel(bb.x) == (size_t)(bb.n * ds->d);
		for (int k = 0; same && k < nd; k++)
			same = tg_dim(bb.x, k) == shape[k];
		require(bb.n >= 1 && bb.n <= batch && same, "a batch of %lld rows", (long long)bb.n);
		for (int64_t i = 0; i < bb.n; i++)
			require(bb.idx[i] >= 0 && bb.idx[i] < ds->n && bb.y[i] == ds->y[bb.idx[i]],
				"batch row %lld", (long long)i);
		seen += bb.n;
		tg_reset(ctx);
	}
	if (!(flags & TG_BATCH_REPLACE) && tg_ok(ctx) && tg_batcher_epoch(bt) == 1) {
		int64_t want = flags & TG_BATCH_DROP_LAST ? ds->n - ds->n % batch : ds->n;
		require(seen == want, "an epoch of %lld rows saw %lld", (long long)want,
			(long long)seen);
	}
	tg_batcher_free(bt);
	tg_reset(ctx);
	tg_clear_error(ctx);
}

/* ---- gzip --------------------------------------------------------------------------- */

#include <zlib.h>

/* data[0..size) as a gzip stream in a malloc'd buffer; NULL on failure. */
static inline unsigned char *gzip_bytes(const void *data, size_t size, size_t *out_size)
{
	z_stream z = { 0 };
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	uLong cap = deflateBound(&z, (uLong)size) + 32;
	unsigned char *buf = malloc(cap);
	if (!buf) {
		deflateEnd(&z);
		return NULL;
	}
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)size;
	z.next_out = buf;
	z.avail_out = (uInt)cap;
	int rc = deflate(&z, Z_FINISH);
	*out_size = z.total_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(buf);
		return NULL;
	}
	return buf;
}

#endif /* TG_FUZZ_DATASET_H */
