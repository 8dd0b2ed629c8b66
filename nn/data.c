/*
 * data.c - data sets from files: IDX (MNIST, Fashion-MNIST) and CSV readers,
 * subsets and splits, and mini-batches as step tensors.
 *
 * The one place where a file's bytes become samples. Every reader goes
 * through zlib (gzopen reads plain files too), checks what the file claims
 * against caps and against the data actually there before allocating for it,
 * and reports a wrong file as an error naming the file and the problem;
 * nothing here aborts or reaches into the engine's internals.
 *
 * Shapes: N = samples, D = features, B = batch.
 */
#include "tapegrad.h"
#include "tapegrad_io.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

enum { CHUNK = 1 << 16 };

/* Like ops, these functions do nothing while the context holds an error. */
static bool usable(const tg_ctx *ctx)
{
	return ctx && tg_ok(ctx);
}

void tg_dataset_free(tg_dataset *ds)
{
	if (!ds)
		return;
	free(ds->x);
	free(ds->y);
	*ds = (tg_dataset){ 0 };
}

/* ---- reading files through zlib ------------------------------------------- */

static gzFile open_read(tg_ctx *ctx, const char *path)
{
	errno = 0;
	gzFile f = gzopen(path, "rb");
	if (!f)
		tg_fail(ctx, TG_EIO, "%s: cannot open: %s", path,
			errno ? strerror(errno) : "out of memory");
	else
		gzbuffer(f, 1 << 17);
	return f;
}

/* Reads up to n bytes; fewer means the file ended (a gzip stream cut short
 * counts as ended: the caller reports the short count as truncation).
 * Returns the count, or -1 after recording a read error. */
static int64_t read_some(tg_ctx *ctx, gzFile f, const char *path, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		size_t left = n - got;
		unsigned chunk = left > (1u << 30) ? (1u << 30) : (unsigned)left;
		int r = gzread(f, (char *)buf + got, chunk);
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		int err = Z_OK;
		const char *msg = gzerror(f, &err);
		if (err == Z_ERRNO) {
			tg_fail(ctx, TG_EIO, "%s: read failed: %s", path, strerror(errno));
			return -1;
		}
		if (err != Z_OK && err != Z_BUF_ERROR) {
			tg_fail(ctx, TG_EFORMAT, "%s: bad gzip data: %s", path, msg);
			return -1;
		}
		break;
	}
	return (int64_t)got;
}

/* True if the file has at least one more byte, or after recording a read
 * error: either way the data did not end cleanly. */
static bool has_more(tg_ctx *ctx, gzFile f, const char *path)
{
	unsigned char c;
	return read_some(ctx, f, path, &c, 1) != 0;
}

/* ---- IDX files -------------------------------------------------------------- */
/* Big-endian: u32 magic (0x0000 type ndim; type 0x08 = unsigned byte), ndim
 * u32 sizes, then the values. */

enum { IDX_IMAGES = 0x00000803, IDX_LABELS = 0x00000801 };

typedef struct idx_file {
	gzFile f;
	const char *path;
	int ndim;
	int64_t dim[3];
	int64_t count; /* product of the sizes */
} idx_file;

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static char *dims_str(const idx_file *idx, char *buf, size_t size)
{
	int k = snprintf(buf, size, "(");
	for (int i = 0; i < idx->ndim && k > 0 && (size_t)k < size; i++)
		k += snprintf(buf + k, size - (size_t)k, "%s%lld", i ? "," : "",
			      (long long)idx->dim[i]);
	if (k > 0 && (size_t)k < size)
		snprintf(buf + k, size - (size_t)k, "%s)", idx->ndim == 1 ? "," : "");
	return buf;
}

/* Opens an IDX file and checks its header: magic, no zero size, and a total
 * size within TG_DATA_MAX_ELEMS. 0 ok (idx->f open), -1 after the error. */
static int idx_open(tg_ctx *ctx, const char *path, uint32_t magic, int ndim, const char *what,
		    idx_file *idx)
{
	*idx = (idx_file){ .path = path, .ndim = ndim };
	idx->f = open_read(ctx, path);
	if (!idx->f)
		return -1;
	unsigned char head[16];
	size_t need = 4 + 4 * (size_t)ndim;
	int64_t got = read_some(ctx, idx->f, path, head, need);
	if (got < 0)
		goto out_close;
	if (got >= 4 && be32(head) != magic) {
		tg_fail(ctx, TG_EFORMAT, "%s: wrong magic 0x%08x, expected 0x%08x (%s)", path,
			(unsigned)be32(head), (unsigned)magic, what);
		goto out_close;
	}
	if ((size_t)got < need) {
		tg_fail(ctx, TG_EFORMAT,
			"%s: truncated: expected a %zu-byte header, got %lld bytes", path, need,
			(long long)got);
		goto out_close;
	}
	char buf[96];
	idx->count = 1;
	for (int i = 0; i < ndim; i++)
		idx->dim[i] = be32(head + 4 + 4 * i);
	for (int i = 0; i < ndim; i++) {
		if (idx->dim[i] == 0) {
			tg_fail(ctx, TG_EFORMAT, "%s: zero dimension in %s", path,
				dims_str(idx, buf, sizeof buf));
			goto out_close;
		}
		if (idx->count > TG_DATA_MAX_ELEMS / idx->dim[i]) {
			double total = 1;
			for (int j = 0; j < ndim; j++)
				total *= (double)idx->dim[j];
			tg_fail(ctx, TG_EFORMAT,
				"%s: dimensions %s make %.4g values, more than the %lld allowed",
				path, dims_str(idx, buf, sizeof buf), total,
				(long long)TG_DATA_MAX_ELEMS);
			goto out_close;
		}
		idx->count *= idx->dim[i];
	}
	return 0;

out_close:
	gzclose(idx->f);
	idx->f = NULL;
	return -1;
}

/* p / 255 through a table of the 256 quotients: the same floats as the
 * division, several times faster on 47 million pixels. */
static void widen_pixels(void *dst, const unsigned char *src, size_t n)
{
	float scaled[256];
	for (int p = 0; p < 256; p++)
		scaled[p] = (float)p / 255.0f;
	float *x = dst;
	for (size_t i = 0; i < n; i++)
		x[i] = scaled[src[i]];
}

static void widen_labels(void *dst, const unsigned char *src, size_t n)
{
	int32_t *y = dst;
	for (size_t i = 0; i < n; i++)
		y[i] = src[i];
}

/* Reads the idx->count data bytes, widening each into an elem-size slot of a
 * malloc'd array. The array grows as the data arrives, so a header that
 * claims more than the file holds costs no more memory than the file. Extra
 * bytes after the data are an error too. NULL after recording the error. */
static void *idx_read_data(tg_ctx *ctx, idx_file *idx, size_t elem,
			   void (*widen)(void *, const unsigned char *, size_t), const char *what)
{
	unsigned char *chunk = malloc(CHUNK);
	size_t cap = 0;
	char *out = NULL;
	int64_t got = 0;
	if (!chunk) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", idx->path);
		return NULL;
	}
	while (got < idx->count) {
		int64_t want = idx->count - got < CHUNK ? idx->count - got : CHUNK;
		int64_t r = read_some(ctx, idx->f, idx->path, chunk, (size_t)want);
		if (r < 0)
			goto out_free;
		if (r == 0)
			break; /* truncated: reported below */
		if ((size_t)(got + r) > cap) {
			size_t ncap = cap ? cap * 2 : (size_t)1 << 20;
			if (ncap > (size_t)idx->count)
				ncap = (size_t)idx->count;
			if (ncap < (size_t)(got + r))
				ncap = (size_t)(got + r);
			char *grown = ncap <= SIZE_MAX / elem ? realloc(out, ncap * elem) : NULL;
			if (!grown) {
				tg_fail(ctx, TG_ENOMEM, "%s: out of memory for %zu %s", idx->path,
					ncap, what);
				goto out_free;
			}
			out = grown;
			cap = ncap;
		}
		widen(out + (size_t)got * elem, chunk, (size_t)r);
		got += r;
		if (r < want)
			break;
	}
	if (got < idx->count) {
		tg_fail(ctx, TG_EFORMAT, "%s: truncated: expected %lld bytes of %s, got %lld",
			idx->path, (long long)idx->count, what, (long long)got);
		goto out_free;
	}
	if (has_more(ctx, idx->f, idx->path)) {
		tg_fail(ctx, TG_EFORMAT, "%s: unexpected data after the %lld bytes of %s",
			idx->path, (long long)idx->count, what);
		goto out_free;
	}
	free(chunk);
	return out;

out_free:
	free(chunk);
	free(out);
	return NULL;
}

/* Labels must lie in [0, *classes); *classes <= 0 becomes max + 1. */
static int check_labels(tg_ctx *ctx, const char *path, const int32_t *y, int64_t n,
			int *classes)
{
	if (*classes > 0) {
		for (int64_t i = 0; i < n; i++)
			if (y[i] < 0 || y[i] >= *classes) {
				tg_fail(ctx, TG_EFORMAT,
					"%s: label %d at index %lld is out of range [0,%d)", path,
					(int)y[i], (long long)i, *classes);
				return -1;
			}
		return 0;
	}
	int32_t max = 0;
	for (int64_t i = 0; i < n; i++)
		if (y[i] > max)
			max = y[i];
	*classes = max + 1;
	return 0;
}

int tg_load_idx(tg_ctx *ctx, const char *images, const char *labels, int classes,
		tg_dataset *out)
{
	if (!usable(ctx))
		return -1;
	if (!out || !images || !labels) {
		tg_fail(ctx, TG_ENULL, "tg_load_idx: %s is NULL",
			!out ? "out" : !images ? "images" : "labels");
		return -1;
	}
	*out = (tg_dataset){ 0 };
	if (classes > TG_DATA_MAX_CLASSES) {
		tg_fail(ctx, TG_EARG, "tg_load_idx: %d classes, at most %d", classes,
			TG_DATA_MAX_CLASSES);
		return -1;
	}
	idx_file im, lb;
	float *x = NULL;
	int32_t *y = NULL;
	if (idx_open(ctx, images, IDX_IMAGES, 3, "IDX ubyte images", &im))
		return -1;
	if (idx_open(ctx, labels, IDX_LABELS, 1, "IDX ubyte labels", &lb))
		goto out_close_images;
	if (im.dim[0] != lb.dim[0]) {
		tg_fail(ctx, TG_EFORMAT, "%s has %lld images but %s has %lld labels", images,
			(long long)im.dim[0], labels, (long long)lb.dim[0]);
		goto out_close;
	}
	x = idx_read_data(ctx, &im, sizeof(float), widen_pixels, "pixels");
	if (!x)
		goto out_close;
	y = idx_read_data(ctx, &lb, sizeof(int32_t), widen_labels, "labels");
	if (!y)
		goto out_close;
	if (check_labels(ctx, labels, y, lb.count, &classes))
		goto out_close;
	gzclose(im.f);
	gzclose(lb.f);
	*out = (tg_dataset){
		.n = im.dim[0], .d = im.dim[1] * im.dim[2], .classes = classes, .x = x, .y = y,
	};
	return 0;

out_close:
	free(x);
	free(y);
	gzclose(lb.f);
out_close_images:
	gzclose(im.f);
	return -1;
}

/* DIR/name.gz if it exists, else DIR/name. -1 if the path does not fit. */
static int idx_path(tg_ctx *ctx, const char *dir, const char *name, char *buf, size_t size)
{
	struct stat st;
	int k = snprintf(buf, size, "%s/%s.gz", dir, name);
	if (k < 0 || (size_t)k >= size) {
		tg_fail(ctx, TG_EARG, "tg_load_mnist: directory name too long: %s", dir);
		return -1;
	}
	if (stat(buf, &st) != 0)
		buf[k - 3] = '\0';
	return 0;
}

int tg_load_mnist(tg_ctx *ctx, const char *dir, tg_dataset *train, tg_dataset *test)
{
	if (!usable(ctx))
		return -1;
	if (!train || !test) {
		tg_fail(ctx, TG_ENULL, "tg_load_mnist: %s is NULL", !train ? "train" : "test");
		return -1;
	}
	*train = (tg_dataset){ 0 };
	*test = (tg_dataset){ 0 };
	if (!dir)
		dir = TG_FASHION_MNIST_DIR;
	char im[4096], lb[4096];
	if (idx_path(ctx, dir, "train-images-idx3-ubyte", im, sizeof im) ||
	    idx_path(ctx, dir, "train-labels-idx1-ubyte", lb, sizeof lb) ||
	    tg_load_idx(ctx, im, lb, 10, train))
		return -1;
	if (idx_path(ctx, dir, "t10k-images-idx3-ubyte", im, sizeof im) ||
	    idx_path(ctx, dir, "t10k-labels-idx1-ubyte", lb, sizeof lb) ||
	    tg_load_idx(ctx, im, lb, 10, test)) {
		tg_dataset_free(train);
		return -1;
	}
	if (train->d != test->d) {
		tg_fail(ctx, TG_EFORMAT, "%s: %lld features per image, the training set has %lld",
			im, (long long)test->d, (long long)train->d);
		tg_dataset_free(train);
		tg_dataset_free(test);
		return -1;
	}
	return 0;
}

/* ---- CSV files -------------------------------------------------------------- */

/* The whole (decompressed) file as a NUL-terminated string; *len bytes. */
static char *read_text(tg_ctx *ctx, const char *path, size_t *len)
{
	gzFile f = open_read(ctx, path);
	if (!f)
		return NULL;
	size_t cap = CHUNK, n = 0;
	char *buf = malloc(cap + 1);
	if (!buf) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", path);
		goto out_close;
	}
	for (;;) {
		int64_t r = read_some(ctx, f, path, buf + n, cap - n);
		if (r < 0)
			goto out_free;
		n += (size_t)r;
		if (n < cap)
			break;
		char *grown = cap < SIZE_MAX / 4 ? realloc(buf, cap * 2 + 1) : NULL;
		if (!grown) {
			tg_fail(ctx, TG_ENOMEM, "%s: out of memory reading %zu bytes", path,
				cap * 2);
			goto out_free;
		}
		buf = grown;
		cap *= 2;
	}
	gzclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;

out_free:
	free(buf);
out_close:
	gzclose(f);
	return NULL;
}

/* One field, trimmed: [s, e). */
typedef struct field {
	const char *s, *e;
} field;

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Splits the line [s, e) at commas into f[0..max); returns the number of
 * fields (it may exceed max: the extra ones are only counted). */
static int split_fields(const char *s, const char *e, field *f, int max)
{
	int n = 0;
	for (;;) {
		const char *c = s;
		while (c < e && *c != ',')
			c++;
		if (n < max) {
			const char *a = s, *b = c;
			while (a < b && is_blank(*a))
				a++;
			while (b > a && is_blank(b[-1]))
				b--;
			f[n] = (field){ a, b };
		}
		n++;
		if (c == e)
			return n;
		s = c + 1;
	}
}

/* Parses a field as a number (possibly inf or nan); false if it is not one. */
static bool parse_number(field f, double *v)
{
	char buf[128];
	size_t n = (size_t)(f.e - f.s);
	if (n == 0 || n >= sizeof buf)
		return false;
	memcpy(buf, f.s, n);
	buf[n] = '\0';
	char *end;
	errno = 0;
	*v = strtod(buf, &end);
	return end == buf + n;
}

/* Growing arrays of a CSV's samples. */
typedef struct csv_rows {
	float *x;   /* (cap, d) */
	int32_t *y; /* (cap) */
	int64_t n, cap, d;
} csv_rows;

static int csv_grow(tg_ctx *ctx, const char *path, csv_rows *r)
{
	int64_t ncap = r->cap ? r->cap * 2 : 256;
	if (ncap * r->d > TG_DATA_MAX_ELEMS)
		ncap = TG_DATA_MAX_ELEMS / r->d;
	if (ncap <= r->n) {
		tg_fail(ctx, TG_EFORMAT, "%s: more than %lld values", path,
			(long long)TG_DATA_MAX_ELEMS);
		return -1;
	}
	float *x = realloc(r->x, (size_t)(ncap * r->d) * sizeof(float));
	if (x)
		r->x = x;
	int32_t *y = x ? realloc(r->y, (size_t)ncap * sizeof(int32_t)) : NULL;
	if (!y) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory for %lld rows", path, (long long)ncap);
		return -1;
	}
	r->y = y;
	r->cap = ncap;
	return 0;
}

typedef struct csv_parse {
	tg_ctx *ctx;
	const char *path;
	tg_csv_options opt;
	int ncol;           /* columns per row, from the first data row */
	long long ncol_line; /* the line that set ncol */
	int label;          /* label column, resolved */
	double max_label;
	field *f;           /* (ncol) */
} csv_parse;

/* Parses one data line into row r->n. */
static int csv_row(csv_parse *p, csv_rows *r, const char *s, const char *e, long long line)
{
	int n = split_fields(s, e, p->f, p->ncol);
	if (n != p->ncol) {
		tg_fail(p->ctx, TG_EFORMAT,
			"%s: line %lld: %d columns, expected %d (as on line %lld)", p->path, line,
			n, p->ncol, p->ncol_line);
		return -1;
	}
	if (r->n == r->cap && csv_grow(p->ctx, p->path, r))
		return -1;
	float *x = r->x + r->n * r->d;
	double scale = p->opt.scale != 0 ? p->opt.scale : 1.0;
	for (int c = 0; c < n; c++) {
		double v = 0;
		field f = p->f[c];
		bool number = parse_number(f, &v);
		float xv = c == p->label ? 0.0f : (float)(v / scale);
		if (!number || !isfinite(v) || !isfinite(xv)) {
			const char *why = "not finite (in single precision)";
			if (!number)
				why = f.e == f.s ? "not a number (empty field)" : "not a number";
			int len = (int)(f.e - f.s) > 40 ? 40 : (int)(f.e - f.s);
			tg_fail(p->ctx, TG_EFORMAT, "%s: line %lld, column %d: \"%.*s\" is %s",
				p->path, line, c + 1, len, f.s, why);
			return -1;
		}
		if (c != p->label) {
			*x++ = xv;
			continue;
		}
		int limit = p->opt.classes > 0 ? p->opt.classes : TG_DATA_MAX_CLASSES;
		if (v != floor(v)) {
			tg_fail(p->ctx, TG_EFORMAT, "%s: line %lld: label %g is not an integer",
				p->path, line, v);
			return -1;
		}
		if (v < 0 || v >= limit) {
			tg_fail(p->ctx, TG_EFORMAT,
				"%s: line %lld: label %g is out of range [0,%d)", p->path, line, v,
				limit);
			return -1;
		}
		r->y[r->n] = (int32_t)v;
		if (v > p->max_label)
			p->max_label = v;
	}
	r->n++;
	return 0;
}

/* The first data line fixes the column count and the label column. */
static int csv_first(csv_parse *p, csv_rows *r, const char *s, const char *e, long long line)
{
	p->ncol = split_fields(s, e, NULL, 0);
	p->ncol_line = line;
	if (p->ncol < 2) {
		tg_fail(p->ctx, TG_EFORMAT,
			"%s: line %lld: %d column; a row needs features and a label", p->path, line,
			p->ncol);
		return -1;
	}
	int lc = p->opt.label_column;
	p->label = lc < 0 ? p->ncol + lc : lc;
	if (p->label < 0 || p->label >= p->ncol) {
		tg_fail(p->ctx, TG_EARG, "%s: label column %d out of range for %d columns", p->path,
			lc, p->ncol);
		return -1;
	}
	r->d = p->ncol - 1;
	p->f = malloc((size_t)p->ncol * sizeof *p->f);
	if (!p->f) {
		tg_fail(p->ctx, TG_ENOMEM, "%s: out of memory for %d columns", p->path, p->ncol);
		return -1;
	}
	return 0;
}

/* True if some field of the line is not a number. */
static bool is_header(const char *s, const char *e)
{
	for (;;) {
		const char *c = s;
		while (c < e && *c != ',')
			c++;
		field f;
		split_fields(s, c, &f, 1);
		double v;
		if (!parse_number(f, &v))
			return true;
		if (c == e)
			return false;
		s = c + 1;
	}
}

static int csv_parse_text(csv_parse *p, csv_rows *r, const char *text, size_t len)
{
	const char *end = text + len;
	bool first = true;
	long long line = 0;
	for (const char *s = text; s < end;) {
		const char *e = memchr(s, '\n', (size_t)(end - s));
		if (!e)
			e = end;
		line++;
		const char *t = s;
		while (t < e && is_blank(*t))
			t++;
		if (t < e) {
			bool skip = false;
			if (first && p->opt.header != TG_CSV_HEADER_NO)
				skip = p->opt.header == TG_CSV_HEADER_YES || is_header(s, e);
			if (!skip && r->d == 0 && csv_first(p, r, s, e, line))
				return -1;
			if (!skip && csv_row(p, r, s, e, line))
				return -1;
			first = false;
		}
		s = e + 1;
	}
	if (r->n == 0) {
		tg_fail(p->ctx, TG_EFORMAT, "%s: %s", p->path,
			first ? "empty file" : "no data rows after the header");
		return -1;
	}
	return 0;
}

int tg_load_csv(tg_ctx *ctx, const char *path, const tg_csv_options *opt, tg_dataset *out)
{
	if (!usable(ctx))
		return -1;
	if (!out || !path) {
		tg_fail(ctx, TG_ENULL, "tg_load_csv: %s is NULL", !out ? "out" : "path");
		return -1;
	}
	*out = (tg_dataset){ 0 };
	csv_parse p = { .ctx = ctx, .path = path, .opt = opt ? *opt : TG_CSV_DEFAULTS };
	if (p.opt.classes > TG_DATA_MAX_CLASSES || !isfinite(p.opt.scale) ||
	    (unsigned)p.opt.header > TG_CSV_HEADER_NO) {
		tg_fail(ctx, TG_EARG, "tg_load_csv: bad option (classes %d, scale %g, header %d)",
			p.opt.classes, p.opt.scale, (int)p.opt.header);
		return -1;
	}
	size_t len;
	char *text = read_text(ctx, path, &len);
	if (!text)
		return -1;
	csv_rows r = { 0 };
	int rc = csv_parse_text(&p, &r, text, len);
	free(text);
	free(p.f);
	if (rc) {
		free(r.x);
		free(r.y);
		return -1;
	}
	/* Give back the slack of the last doubling. */
	float *x = realloc(r.x, (size_t)(r.n * r.d) * sizeof(float));
	int32_t *y = realloc(r.y, (size_t)r.n * sizeof(int32_t));
	*out = (tg_dataset){
		.n = r.n,
		.d = r.d,
		.classes = p.opt.classes > 0 ? p.opt.classes : (int32_t)p.max_label + 1,
		.x = x ? x : r.x,
		.y = y ? y : r.y,
	};
	return 0;
}

/* Loads a CSV and checks it has the features a named data set has. */
static int load_known(tg_ctx *ctx, const char *path, const tg_csv_options *opt, int64_t d,
		      const char *name, tg_dataset *out)
{
	if (tg_load_csv(ctx, path, opt, out))
		return -1;
	if (out->d != d) {
		tg_fail(ctx, TG_EFORMAT, "%s: %lld features per row, %s has %lld", path,
			(long long)out->d, name, (long long)d);
		tg_dataset_free(out);
		return -1;
	}
	return 0;
}

int tg_load_iris(tg_ctx *ctx, const char *path, tg_dataset *out)
{
	tg_csv_options opt = TG_CSV_DEFAULTS;
	opt.header = TG_CSV_HEADER_YES;
	opt.classes = 3;
	return load_known(ctx, path, &opt, 4, "iris", out);
}

int tg_load_digits(tg_ctx *ctx, const char *path, tg_dataset *out)
{
	tg_csv_options opt = TG_CSV_DEFAULTS;
	opt.header = TG_CSV_HEADER_NO;
	opt.classes = 10;
	opt.scale = 16;
	return load_known(ctx, path, &opt, 64, "digits", out);
}

/* ---- subsets ---------------------------------------------------------------- */

static int check_dataset(tg_ctx *ctx, const char *who, const tg_dataset *ds)
{
	if (!ds) {
		tg_fail(ctx, TG_ENULL, "%s: data set is NULL", who);
		return -1;
	}
	if (ds->n < 1 || ds->d < 1 || !ds->x || !ds->y) {
		tg_fail(ctx, TG_EARG, "%s: empty data set (%lld x %lld)", who, (long long)ds->n,
			(long long)ds->d);
		return -1;
	}
	return 0;
}

/* Copies rows idx[0..n) (checked) into a new data set. */
static int gather(tg_ctx *ctx, const char *who, const tg_dataset *src, const int64_t *idx,
		  int64_t n, tg_dataset *out)
{
	for (int64_t i = 0; i < n; i++)
		if (idx[i] < 0 || idx[i] >= src->n) {
			tg_fail(ctx, TG_EARG, "%s: index %lld at %lld is out of range [0,%lld)",
				who, (long long)idx[i], (long long)i, (long long)src->n);
			return -1;
		}
	if (n > TG_DATA_MAX_ELEMS / src->d) {
		tg_fail(ctx, TG_EARG, "%s: %lld rows of %lld features exceed %lld values", who,
			(long long)n, (long long)src->d, (long long)TG_DATA_MAX_ELEMS);
		return -1;
	}
	float *x = malloc((size_t)(n * src->d) * sizeof(float));
	int32_t *y = malloc((size_t)n * sizeof(int32_t));
	if (!x || !y) {
		free(x);
		free(y);
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory for %lld rows", who, (long long)n);
		return -1;
	}
	size_t row = (size_t)src->d * sizeof(float);
	for (int64_t i = 0; i < n; i++) {
		memcpy(x + i * src->d, src->x + idx[i] * src->d, row);
		y[i] = src->y[idx[i]];
	}
	*out = (tg_dataset){ .n = n, .d = src->d, .classes = src->classes, .x = x, .y = y };
	return 0;
}

int tg_dataset_subset(tg_ctx *ctx, const tg_dataset *src, const int64_t *idx, int64_t n,
		      tg_dataset *out)
{
	if (!usable(ctx))
		return -1;
	if (!out || !idx) {
		tg_fail(ctx, TG_ENULL, "tg_dataset_subset: %s is NULL", !out ? "out" : "idx");
		return -1;
	}
	*out = (tg_dataset){ 0 };
	if (check_dataset(ctx, "tg_dataset_subset", src))
		return -1;
	if (n < 1) {
		tg_fail(ctx, TG_EARG, "tg_dataset_subset: %lld rows; need at least 1",
			(long long)n);
		return -1;
	}
	return gather(ctx, "tg_dataset_subset", src, idx, n, out);
}

int tg_dataset_head(tg_ctx *ctx, const tg_dataset *src, int64_t n, tg_dataset *out)
{
	if (!usable(ctx))
		return -1;
	if (!out) {
		tg_fail(ctx, TG_ENULL, "tg_dataset_head: out is NULL");
		return -1;
	}
	*out = (tg_dataset){ 0 };
	if (check_dataset(ctx, "tg_dataset_head", src))
		return -1;
	if (n < 1) {
		tg_fail(ctx, TG_EARG, "tg_dataset_head: %lld rows; need at least 1", (long long)n);
		return -1;
	}
	if (n > src->n)
		n = src->n;
	float *x = malloc((size_t)(n * src->d) * sizeof(float));
	int32_t *y = malloc((size_t)n * sizeof(int32_t));
	if (!x || !y) {
		free(x);
		free(y);
		tg_fail(ctx, TG_ENOMEM, "tg_dataset_head: out of memory for %lld rows",
			(long long)n);
		return -1;
	}
	memcpy(x, src->x, (size_t)(n * src->d) * sizeof(float));
	memcpy(y, src->y, (size_t)n * sizeof(int32_t));
	*out = (tg_dataset){ .n = n, .d = src->d, .classes = src->classes, .x = x, .y = y };
	return 0;
}

/* A uniform integer in [0, n), n >= 1, without modulo bias. */
static uint64_t below(tg_ctx *ctx, uint64_t n)
{
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t r;
	do
		r = tg_random_u64(ctx);
	while (r >= limit);
	return r % n;
}

/* Fisher-Yates over p[0..n). */
static void shuffle(tg_ctx *ctx, int64_t *p, int64_t n)
{
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)below(ctx, (uint64_t)i + 1);
		int64_t t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
}

int tg_dataset_split(tg_ctx *ctx, const tg_dataset *src, int64_t n_val, tg_dataset *train,
		     tg_dataset *val)
{
	if (!usable(ctx))
		return -1;
	if (!train || !val) {
		tg_fail(ctx, TG_ENULL, "tg_dataset_split: %s is NULL", !train ? "train" : "val");
		return -1;
	}
	*train = (tg_dataset){ 0 };
	*val = (tg_dataset){ 0 };
	if (check_dataset(ctx, "tg_dataset_split", src))
		return -1;
	if (n_val < 1 || n_val >= src->n) {
		tg_fail(ctx, TG_EARG,
			"tg_dataset_split: %lld validation rows of %lld; need 1..%lld",
			(long long)n_val, (long long)src->n, (long long)src->n - 1);
		return -1;
	}
	int64_t *perm = malloc((size_t)src->n * sizeof *perm);
	if (!perm) {
		tg_fail(ctx, TG_ENOMEM, "tg_dataset_split: out of memory for %lld indices",
			(long long)src->n);
		return -1;
	}
	for (int64_t i = 0; i < src->n; i++)
		perm[i] = i;
	shuffle(ctx, perm, src->n);
	int rc = gather(ctx, "tg_dataset_split", src, perm, n_val, val);
	if (!rc) {
		rc = gather(ctx, "tg_dataset_split", src, perm + n_val, src->n - n_val, train);
		if (rc)
			tg_dataset_free(val);
	}
	free(perm);
	return rc;
}

/* ---- mini-batches ------------------------------------------------------------ */

/* A batch's rows lie scattered through a set far larger than the caches, so
 * each row's copy waits on memory. Asking for the row PREFETCH_AHEAD places on
 * while this one is copied overlaps those waits: a fifth off the batch of
 * W1 (100 random rows of Fashion-MNIST). */
enum { PREFETCH_AHEAD = 2, CACHE_LINE = 64 };

static void prefetch_row(const float *row, int64_t d)
{
	const char *p = (const char *)row, *end = (const char *)(row + d);
	for (; p < end; p += CACHE_LINE)
		__builtin_prefetch(p);
	__builtin_prefetch(end - 1); /* the last line, when the row starts mid-line */
}

tg_tensor *tg_dataset_batch(tg_ctx *ctx, const tg_dataset *ds, const int64_t *idx, int64_t n,
			    tg_dtype dt, int32_t *labels)
{
	if (!usable(ctx))
		return NULL;
	if (!idx)
		return tg_fail(ctx, TG_ENULL, "tg_dataset_batch: idx is NULL");
	if (check_dataset(ctx, "tg_dataset_batch", ds))
		return NULL;
	if (n < 1)
		return tg_fail(ctx, TG_EARG, "tg_dataset_batch: batch of %lld rows", (long long)n);
	if (dt != TG_F32 && dt != TG_F64)
		return tg_fail(ctx, TG_EDTYPE, "tg_dataset_batch: unknown dtype %d", (int)dt);
	for (int64_t i = 0; i < n; i++)
		if (idx[i] < 0 || idx[i] >= ds->n)
			return tg_fail(
			    ctx, TG_EARG,
			    "tg_dataset_batch: index %lld at %lld is out of range [0,%lld)",
			    (long long)idx[i], (long long)i, (long long)ds->n);
	tg_tensor *x = tg_empty(ctx, dt, 2, (int64_t[]){ n, ds->d }); /* every row is copied in */
	void *data = x ? tg_data_mut(x) : NULL;
	if (!data)
		return NULL;
	int64_t d = ds->d;
	for (int64_t i = 0; i < n; i++) {
		const float *row = ds->x + idx[i] * d;
		if (i + PREFETCH_AHEAD < n)
			prefetch_row(ds->x + idx[i + PREFETCH_AHEAD] * d, d);
		if (dt == TG_F32) {
			memcpy((float *)data + i * d, row, (size_t)d * sizeof(float));
		} else {
			double *out = (double *)data + i * d;
			for (int64_t j = 0; j < d; j++)
				out[j] = row[j];
		}
		if (labels)
			labels[i] = ds->y[idx[i]];
	}
	return x;
}

struct tg_batcher {
	tg_ctx *ctx;
	const tg_dataset *ds; /* borrowed */
	int64_t batch;        /* B */
	unsigned flags;
	int64_t *order;       /* (N) this epoch's permutation, or (B) draws with replacement */
	int64_t pos;          /* next position in order; -1 before an epoch */
	int64_t epoch;        /* epochs completed */
	int32_t *y;           /* (B) labels of the current batch */
};

tg_batcher *tg_batcher_new(tg_ctx *ctx, const tg_dataset *ds, int64_t batch, unsigned flags)
{
	if (!usable(ctx))
		return NULL;
	if (check_dataset(ctx, "tg_batcher_new", ds))
		return NULL;
	if (batch < 1)
		return tg_fail(ctx, TG_EARG, "tg_batcher_new: batch size %lld is not positive",
			       (long long)batch);
	if (batch > TG_DATA_MAX_ELEMS / ds->d)
		return tg_fail(ctx, TG_EARG,
			       "tg_batcher_new: a batch of %lld rows of %lld features exceeds %lld "
			       "values",
			       (long long)batch, (long long)ds->d, (long long)TG_DATA_MAX_ELEMS);
	if (flags & ~(unsigned)(TG_BATCH_REPLACE | TG_BATCH_DROP_LAST))
		return tg_fail(ctx, TG_EARG, "tg_batcher_new: unknown flags 0x%x", flags);
	bool replace = flags & TG_BATCH_REPLACE;
	if (!replace && (flags & TG_BATCH_DROP_LAST) && batch > ds->n)
		return tg_fail(ctx, TG_EARG,
			       "tg_batcher_new: batch size %lld > %lld samples with "
			       "TG_BATCH_DROP_LAST leaves every epoch empty",
			       (long long)batch, (long long)ds->n);
	int64_t norder = replace ? batch : ds->n;
	int64_t most = replace || batch < ds->n ? batch : ds->n; /* rows in a batch */
	tg_batcher *b = malloc(sizeof *b);
	int64_t *order = malloc((size_t)norder * sizeof *order);
	int32_t *y = malloc((size_t)most * sizeof *y);
	if (!b || !order || !y) {
		free(b);
		free(order);
		free(y);
		return tg_fail(ctx, TG_ENOMEM, "tg_batcher_new: out of memory for %lld indices",
			       (long long)norder);
	}
	*b = (tg_batcher){ .ctx = ctx, .ds = ds, .batch = batch, .flags = flags,
			   .order = order, .pos = -1, .y = y };
	return b;
}

void tg_batcher_free(tg_batcher *b)
{
	if (!b)
		return;
	free(b->order);
	free(b->y);
	free(b);
}

int64_t tg_batcher_epoch(const tg_batcher *b)
{
	return b ? b->epoch : 0;
}

bool tg_batch_next(tg_batcher *b, tg_dtype dt, tg_batch *out)
{
	if (!b || !usable(b->ctx))
		return false;
	if (!out) {
		tg_fail(b->ctx, TG_ENULL, "tg_batch_next: out is NULL");
		return false;
	}
	*out = (tg_batch){ 0 };
	const tg_dataset *ds = b->ds;
	const int64_t *idx;
	int64_t m;
	if (b->flags & TG_BATCH_REPLACE) {
		for (int64_t i = 0; i < b->batch; i++)
			b->order[i] = (int64_t)below(b->ctx, (uint64_t)ds->n);
		idx = b->order;
		m = b->batch;
	} else {
		if (b->pos < 0) {
			for (int64_t i = 0; i < ds->n; i++)
				b->order[i] = i;
			shuffle(b->ctx, b->order, ds->n);
			b->pos = 0;
		}
		int64_t left = ds->n - b->pos;
		m = left < b->batch ? left : b->batch;
		if (m == 0 || (m < b->batch && (b->flags & TG_BATCH_DROP_LAST))) {
			b->pos = -1;
			b->epoch++;
			return false;
		}
		idx = b->order + b->pos;
	}
	tg_tensor *x = tg_dataset_batch(b->ctx, ds, idx, m, dt, b->y);
	if (!x)
		return false;
	if (!(b->flags & TG_BATCH_REPLACE))
		b->pos += m;
	*out = (tg_batch){ .x = x, .y = b->y, .idx = idx, .n = m };
	return true;
}
