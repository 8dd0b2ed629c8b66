/*
 * data.c - data sets from files: IDX (MNIST, Fashion-MNIST) and CSV readers,
 * subsets and splits, and mini-batches as step tensors.
 *
 * The one place where a file's bytes become samples. Every reader opens only
 * regular files (without blocking, so a FIFO cannot hang it), inflates gzip
 * itself (plain files pass through), checks what the file claims against
 * caps, memory and the data actually there before allocating for it, and
 * reports a wrong file as an error naming the file and the problem; nothing
 * here aborts or reaches into the engine's internals.
 *
 * Shapes: N = samples, D = features, B = batch.
 */
#include "tapegrad.h"
#include "tapegrad_io.h"
#include "c_locale.h"
#include "engine_errors.h"
#include "parallel.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

enum { CHUNK = 1 << 16 }; /* TG_CSV_MIN_BYTES is two of them */

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
	free(ds->t);
	*ds = (tg_dataset){ 0 };
}

/* ---- where a data set's arrays live ----------------------------------------- */

/* A batch gathers rows from all over x, each in a page of its own, and on a
 * virtual machine a page the TLB misses can cost microseconds: W3's 512 rows
 * of Fashion-MNIST took 2.1 ms a step on 4 KiB pages and 0.4 ms on 2 MiB
 * ones. So an array of BIG bytes or more is placed where the system may
 * back it with transparent huge pages (madvise, before a byte is written);
 * it stays an ordinary malloc'd block that free() releases. */
enum { GRAIN = 2 << 20, BIG = 2 * GRAIN };

static uintptr_t grain_up(uintptr_t a)
{
	return (a + GRAIN - 1) & ~(uintptr_t)(GRAIN - 1);
}

static uintptr_t grain_down(uintptr_t a)
{
	return a & ~(uintptr_t)(GRAIN - 1);
}

/* malloc(bytes), with the whole grains inside it advised for huge pages. */
static void *big_alloc(size_t bytes)
{
	void *p = malloc(bytes);
#ifdef MADV_HUGEPAGE
	if (p && bytes >= BIG) {
		uintptr_t a = grain_up((uintptr_t)p), e = grain_down((uintptr_t)p + bytes);
		if (e > a)
			madvise((void *)a, e - a, MADV_HUGEPAGE); /* advice: failure is fine */
	}
#endif
	return p;
}

/* The final home of a loaded array p of bytes: a big one moves into
 * big_alloc'd memory, grain by grain, each grain of p given back to the
 * system once copied so that the two together take little more than one; a
 * small one is shrunk to bytes. p itself when that fails (or bytes is 0). */
static void *settle(void *p, size_t bytes)
{
	if (!p || !bytes)
		return p;
	if (bytes < BIG) {
		void *q = realloc(p, bytes);
		return q ? q : p;
	}
	char *q = big_alloc(bytes);
	if (!q)
		return p;
	const char *src = p;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	for (size_t at = 0; at < bytes; at += GRAIN) {
		size_t len = bytes - at < GRAIN ? bytes - at : GRAIN;
		memcpy(q + at, src + at, len);
		/* whole pages of this piece, never the block's first or last page
		 * (the allocator's own words may share them) */
		uintptr_t a = ((uintptr_t)src + at + page - 1) / page * page;
		uintptr_t e = ((uintptr_t)src + at + len) / page * page;
		if (a > (uintptr_t)src + page && e + page < (uintptr_t)src + bytes && e > a)
			madvise((void *)a, e - a, MADV_DONTNEED);
	}
	free(p);
	return q;
}

/* ---- memory a file may claim ------------------------------------------------ */

int64_t tg_data_max_bytes(void)
{
	const int64_t most = (int64_t)4 << 30;
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	if (pages <= 0 || page <= 0)
		return most;
	int64_t quarter = (int64_t)pages / 4 * (int64_t)page;
	return quarter < most ? quarter : most;
}

static double gib(int64_t bytes)
{
	return (double)bytes / (double)((int64_t)1 << 30);
}

/* ---- reading files, plain or gzipped ------------------------------------------ */
/* zlib's inflate on a file descriptor of our own: only regular files are
 * opened, and without blocking; concatenated gzip members are read as one
 * stream, anything else after the last member is an error; a stream cut
 * short reads as ended and is flagged, for the caller to report. */

typedef struct src {
	tg_ctx *ctx;
	const char *path;
	int fd;
	bool gz;             /* the file starts with gzip's magic bytes */
	bool eof;            /* no more bytes in the file */
	bool done;           /* no more bytes to deliver */
	bool cut;            /* a gzip stream ended before its trailer */
	z_stream z;          /* next_in/avail_in: undelivered bytes of in[] */
	unsigned char *in;   /* (CHUNK) bytes read from the file */
} src;

static const char *file_kind(mode_t m)
{
	return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO (named pipe)" :
	       S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" :
	       S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* Reads more of the file into in[], after the bytes not yet used. */
static int refill(src *s)
{
	if (s->eof)
		return 0;
	if (s->z.avail_in && s->z.next_in != s->in)
		memmove(s->in, s->z.next_in, s->z.avail_in);
	s->z.next_in = s->in;
	ssize_t r;
	do
		r = read(s->fd, s->in + s->z.avail_in, CHUNK - s->z.avail_in);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		tg_fail(s->ctx, TG_EIO, "%s: read failed: %s", s->path, strerror(errno));
		return -1;
	}
	if (r == 0)
		s->eof = true;
	s->z.avail_in += (uInt)r;
	return 0;
}

/* Opens path for reading: a regular file, checked before a byte is read. 0
 * ok; -1 after recording the error. */
static int src_open(tg_ctx *ctx, const char *path, src *s)
{
	*s = (src){ .ctx = ctx, .path = path, .fd = -1 };
	if (!*path) { /* open("") would say only "No such file" of a name not shown */
		tg_fail(ctx, TG_EARG, "cannot read a data file: the path is empty");
		return -1;
	}
	s->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (s->fd < 0) {
		int err = errno;
		struct stat st;
		if (err == ENOENT && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
			tg_fail(ctx, TG_EIO,
				"%s: cannot open: a symbolic link to a file that does not exist",
				path);
		else
			tg_fail(ctx, TG_EIO, "%s: cannot open: %s", path, strerror(err));
		return -1;
	}
	struct stat st;
	if (fstat(s->fd, &st) != 0) {
		tg_fail(ctx, TG_EIO, "%s: cannot stat: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		tg_fail(ctx, TG_EIO, "%s: is %s, not a regular file; data is read from files",
			path, file_kind(st.st_mode));
		goto out_close;
	}
	fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) & ~O_NONBLOCK);
	s->in = malloc(CHUNK);
	if (!s->in) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", path);
		goto out_close;
	}
	s->z.next_in = s->in;
	while (s->z.avail_in < 2 && !s->eof)
		if (refill(s))
			goto out_free;
	s->gz = s->z.avail_in >= 2 && s->in[0] == 0x1f && s->in[1] == 0x8b;
	if (s->gz) {
		unsigned char *next = s->z.next_in;
		uInt avail = s->z.avail_in;
		int rc = inflateInit2(&s->z, 15 + 16);
		s->z.next_in = next;
		s->z.avail_in = avail;
		if (rc != Z_OK) {
			tg_fail(ctx, TG_ENOMEM, "%s: out of memory for the gzip reader", path);
			s->gz = false;
			goto out_free;
		}
	}
	return 0;

out_free:
	free(s->in);
	s->in = NULL;
out_close:
	close(s->fd);
	s->fd = -1;
	return -1;
}

static void src_close(src *s)
{
	if (s->gz)
		inflateEnd(&s->z);
	free(s->in);
	if (s->fd >= 0)
		close(s->fd);
	s->in = NULL;
	s->fd = -1;
	s->gz = false;
}

/* After a gzip member's trailer: another member may follow; anything else is
 * an error. 0 ok (s->done when nothing follows), -1 after the error. */
static int next_member(src *s)
{
	while (s->z.avail_in < 2 && !s->eof)
		if (refill(s))
			return -1;
	if (s->z.avail_in == 0) {
		s->done = true;
		return 0;
	}
	if (s->z.avail_in >= 2 && s->z.next_in[0] == 0x1f && s->z.next_in[1] == 0x8b) {
		inflateReset(&s->z);
		return 0;
	}
	tg_fail(s->ctx, TG_EFORMAT, "%s: bad gzip data: bytes that are not gzip after the end "
		"of the compressed stream", s->path);
	return -1;
}

/* Reads up to n bytes; fewer means the data ended (s->cut when a gzip stream
 * was cut short). The count, or -1 after recording the error. */
static int64_t read_some(src *s, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n && !s->done) {
		if (s->z.avail_in == 0 && refill(s))
			return -1;
		if (!s->gz) {
			if (s->z.avail_in == 0) {
				s->done = true;
				break;
			}
			size_t k = n - got < s->z.avail_in ? n - got : s->z.avail_in;
			memcpy((char *)buf + got, s->z.next_in, k);
			s->z.next_in += k;
			s->z.avail_in -= (uInt)k;
			got += k;
			continue;
		}
		size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
		s->z.next_out = (unsigned char *)buf + got;
		s->z.avail_out = (uInt)want;
		int rc = inflate(&s->z, Z_NO_FLUSH);
		got += want - s->z.avail_out;
		if (rc == Z_STREAM_END) {
			if (next_member(s))
				return -1;
		} else if (rc == Z_OK || rc == Z_BUF_ERROR) {
			if (s->z.avail_in == 0 && s->eof && s->z.avail_out > 0) {
				s->cut = true; /* the file ended inside the stream */
				s->done = true;
			}
		} else if (rc != Z_OK) {
			tg_fail(s->ctx, rc == Z_MEM_ERROR ? TG_ENOMEM : TG_EFORMAT,
				"%s: bad gzip data: %s", s->path,
				s->z.msg ? s->z.msg : rc == Z_MEM_ERROR ? "out of memory"
								      : "corrupted stream");
			return -1;
		}
	}
	return (int64_t)got;
}

/* True if the file has at least one more byte, or after recording a read
 * error: either way the data did not end cleanly. */
static bool has_more(src *s)
{
	unsigned char c;
	return read_some(s, &c, 1) != 0;
}

/* ---- IDX files -------------------------------------------------------------- */
/* Big-endian: u32 magic (0x0000 type ndim; type 0x08 = unsigned byte), ndim
 * u32 sizes, then the values. */

enum { IDX_IMAGES = 0x00000803, IDX_LABELS = 0x00000801 };

typedef struct idx_file {
	src f;
	bool open;
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

static void idx_close(idx_file *idx)
{
	if (idx->open)
		src_close(&idx->f);
	idx->open = false;
}

/* Opens an IDX file and checks its header: magic, no zero size, and a total
 * size within TG_DATA_MAX_ELEMS. 0 ok (idx open), -1 after the error. */
static int idx_open(tg_ctx *ctx, const char *path, uint32_t magic, int ndim, const char *what,
		    idx_file *idx)
{
	*idx = (idx_file){ .path = path, .ndim = ndim };
	if (src_open(ctx, path, &idx->f))
		return -1;
	idx->open = true;
	unsigned char head[16];
	size_t need = 4 + 4 * (size_t)ndim;
	int64_t got = read_some(&idx->f, head, need);
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
	idx_close(idx);
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
 * claims more than the file holds costs no more memory than the file; no
 * byte past the count is decompressed but one, and that one is an error
 * (data after the data, or a gzip stream that runs on). NULL after
 * recording the error. */
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
		int64_t r = read_some(&idx->f, chunk, (size_t)want);
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
		tg_fail(ctx, TG_EFORMAT, "%s: truncated: expected %lld bytes of %s, got %lld%s",
			idx->path, (long long)idx->count, what, (long long)got,
			idx->f.cut ? " (the gzip stream is cut short)" : "");
		goto out_free;
	}
	if (has_more(&idx->f)) {
		if (tg_ok(ctx))
			tg_fail(ctx, TG_EFORMAT, "%s: unexpected data after the %lld bytes of %s",
				idx->path, (long long)idx->count, what);
		goto out_free;
	}
	if (idx->f.cut) {
		tg_fail(ctx, TG_EFORMAT, "%s: the gzip stream is cut short after the %s",
			idx->path, what);
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

/* An images file and its labels, headers read and checked. */
typedef struct idx_pair {
	idx_file im, lb;
} idx_pair;

static void pair_close(idx_pair *p)
{
	idx_close(&p->im);
	idx_close(&p->lb);
}

/* The bytes a pair's data set takes as floats and labels. */
static int64_t pair_bytes(const idx_pair *p)
{
	return p->im.count * (int64_t)sizeof(float) + p->lb.count * (int64_t)sizeof(int32_t);
}

/* Opens both files and checks their headers against each other and the
 * memory they would take against `budget` bytes, before any pixel is read. */
static int pair_open(tg_ctx *ctx, const char *images, const char *labels, int64_t budget,
		     idx_pair *p)
{
	*p = (idx_pair){ 0 };
	if (idx_open(ctx, images, IDX_IMAGES, 3, "IDX ubyte images", &p->im))
		return -1;
	if (idx_open(ctx, labels, IDX_LABELS, 1, "IDX ubyte labels", &p->lb))
		goto out_close;
	if (p->im.dim[0] != p->lb.dim[0]) {
		tg_fail(ctx, TG_EFORMAT, "%s has %lld images but %s has %lld labels", images,
			(long long)p->im.dim[0], labels, (long long)p->lb.dim[0]);
		goto out_close;
	}
	if (pair_bytes(p) > budget) {
		tg_fail(ctx, TG_EFORMAT,
			"%s: %lld images of %lldx%lld would take %.2f GiB as floats, more than "
			"the %.2f GiB a data set may take (tg_data_max_bytes: a quarter of the "
			"memory, at most 4 GiB)",
			images, (long long)p->im.dim[0], (long long)p->im.dim[1],
			(long long)p->im.dim[2], gib(pair_bytes(p)), gib(budget));
		goto out_close;
	}
	return 0;

out_close:
	pair_close(p);
	return -1;
}

/* Reads an opened pair's data and closes it. */
static int pair_read(tg_ctx *ctx, idx_pair *p, int classes, tg_dataset *out)
{
	float *x = idx_read_data(ctx, &p->im, sizeof(float), widen_pixels, "pixels");
	int32_t *y = x ? idx_read_data(ctx, &p->lb, sizeof(int32_t), widen_labels, "labels")
		       : NULL;
	if (!y || check_labels(ctx, p->lb.path, y, p->lb.count, &classes)) {
		free(x);
		free(y);
		pair_close(p);
		return -1;
	}
	x = settle(x, (size_t)p->im.count * sizeof(float));
	*out = (tg_dataset){
		.n = p->im.dim[0], .d = p->im.dim[1] * p->im.dim[2], .classes = classes,
		.x = x, .y = y, .ndim = 3, .shape = { 1, p->im.dim[1], p->im.dim[2] },
	};
	pair_close(p);
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
	idx_pair p;
	if (pair_open(ctx, images, labels, tg_data_max_bytes(), &p))
		return -1;
	return pair_read(ctx, &p, classes, out);
}

/* DIR/name.gz if it is there (even as a link to nothing: then its open
 * names it), else DIR/name. -1 if the path does not fit. */
static int idx_path(tg_ctx *ctx, const char *dir, const char *name, char *buf, size_t size)
{
	struct stat st;
	int k = snprintf(buf, size, "%s/%s.gz", dir, name);
	if (k < 0 || (size_t)k >= size) {
		tg_fail(ctx, TG_EARG, "tg_load_mnist: directory name too long: %s", dir);
		return -1;
	}
	if (lstat(buf, &st) != 0)
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
	if (train == test) {
		tg_fail(ctx, TG_EARG, "tg_load_mnist: train and test are the same data set; "
				      "the files hold two");
		return -1;
	}
	if (!dir)
		dir = TG_FASHION_MNIST_DIR;
	if (!*dir) { /* not the root directory that "/train-images-idx3-ubyte" is in */
		tg_fail(ctx, TG_EARG,
			"tg_load_mnist: dir is empty; give a directory (NULL means %s)",
			TG_FASHION_MNIST_DIR);
		return -1;
	}
	/* All four headers are read and checked before any pixel. */
	char im[2][4096], lb[2][4096];
	idx_pair p[2];
	int64_t budget = tg_data_max_bytes();
	if (idx_path(ctx, dir, "train-images-idx3-ubyte", im[0], sizeof im[0]) ||
	    idx_path(ctx, dir, "train-labels-idx1-ubyte", lb[0], sizeof lb[0]) ||
	    idx_path(ctx, dir, "t10k-images-idx3-ubyte", im[1], sizeof im[1]) ||
	    idx_path(ctx, dir, "t10k-labels-idx1-ubyte", lb[1], sizeof lb[1]) ||
	    pair_open(ctx, im[0], lb[0], budget, &p[0]))
		return -1;
	if (pair_open(ctx, im[1], lb[1], budget - pair_bytes(&p[0]), &p[1])) {
		pair_close(&p[0]);
		return -1;
	}
	if (p[1].im.dim[1] != p[0].im.dim[1] || p[1].im.dim[2] != p[0].im.dim[2]) {
		tg_fail(ctx, TG_EFORMAT, "%s: images of %lldx%lld, the training set's are %lldx%lld",
			im[1], (long long)p[1].im.dim[1], (long long)p[1].im.dim[2],
			(long long)p[0].im.dim[1], (long long)p[0].im.dim[2]);
		pair_close(&p[0]);
		pair_close(&p[1]);
		return -1;
	}
	/* ten classes at least (MNIST's, whatever labels a set holds), more
	 * when a label of either set asks for them (EMNIST's letters) */
	if (pair_read(ctx, &p[0], 0, train)) {
		pair_close(&p[1]);
		return -1;
	}
	if (pair_read(ctx, &p[1], 0, test)) {
		tg_dataset_free(train);
		return -1;
	}
	int classes = train->classes > test->classes ? train->classes : test->classes;
	train->classes = test->classes = classes > 10 ? classes : 10;
	return 0;
}

/* ---- CSV files -------------------------------------------------------------- */
/* Read as a stream: a chunk of text at a time, each whole line parsed into
 * the growing arrays, so the text is never held whole. Lines end in LF, CR or
 * CRLF; a UTF-8 byte-order mark at the start is skipped. */

/* The longest line: 256 MiB, so a line's fields always count in an int. */
#define MAX_LINE ((size_t)1 << 28)

/* One field, trimmed: [s, e). A quoted field is the text between its
 * quotes, where "" still stands for one quote. */
typedef struct field {
	const char *s, *e;
	bool quoted;
} field;

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* What is wrong with a field's quoting, as split_fields reports it. */
typedef struct quoting {
	int col;         /* the first column (1-based) quoted wrongly; 0: none */
	const char *why; /* what is wrong with it */
} quoting;

/* Reads the field that starts at s into *f and returns where it ends: at
 * the comma after it, or at e. A field whose first non-blank byte is a
 * double quote runs to the closing quote ("" inside is an escaped quote),
 * commas and all; *why says what is wrong when that quote is missing or
 * something other than blanks follows it. */
static const char *next_field(const char *s, const char *e, field *f, const char **why)
{
	while (s < e && is_blank(*s))
		s++;
	if (s < e && *s == '"') {
		const char *a = ++s, *q;
		while ((q = memchr(s, '"', (size_t)(e - s))) && q + 1 < e && q[1] == '"')
			s = q + 2;
		if (!q) {
			*f = (field){ a, e, true };
			*why = "a quoted field with no closing quote (on this line)";
			return e;
		}
		*f = (field){ a, q, true };
		for (s = q + 1; s < e && is_blank(*s);)
			s++;
		if (s == e || *s == ',')
			return s;
		*why = "text after the closing quote (a quote inside a quoted field is "
		       "written \"\")";
		const char *c = memchr(s, ',', (size_t)(e - s));
		return c ? c : e;
	}
	const char *c = memchr(s, ',', (size_t)(e - s));
	if (!c)
		c = e;
	const char *b = c;
	while (b > s && is_blank(b[-1]))
		b--;
	*f = (field){ s, b, false };
	return c;
}

/* Splits the line [s, e) into fields f[0..max); returns the number of
 * fields (it may exceed max: the extra ones are only counted). *q, when
 * not NULL, gets the first field quoted wrongly. */
static int split_fields(const char *s, const char *e, field *f, int max, quoting *q)
{
	int n = 0;
	if (q)
		*q = (quoting){ 0 };
	for (;;) {
		field g;
		const char *why = NULL;
		const char *c = next_field(s, e, &g, &why);
		if (n < max)
			f[n] = g;
		n++;
		if (why && q && !q->col)
			*q = (quoting){ n, why };
		if (c == e)
			return n;
		s = c + 1;
	}
}

/* True if the field's text is name (a quoted field's "" read as one quote). */
static bool field_is(field f, const char *name)
{
	const char *c = f.s;
	for (; *name; name++, c++) {
		if (c == f.e || *c != *name)
			return false;
		if (f.quoted && *c == '"')
			c++; /* the second quote of "" */
	}
	return c == f.e;
}

/* Parses a field as a number (possibly inf or nan); false if it is not one.
 * Blanks inside a quoted field's quotes (" 1.5 ") are trimmed as blanks
 * around an unquoted one are. A field of any length: the byte after a field
 * is a comma, a blank, a quote, a line end or the NUL after the text, none
 * of which continues a number. */
static bool parse_number(field f, double *v)
{
	for (; f.quoted && f.s < f.e && is_blank(*f.s); f.s++)
		;
	for (; f.quoted && f.e > f.s && is_blank(f.e[-1]); f.e--)
		;
	if (f.e == f.s || is_blank(*f.s))
		return false;
	char *end;
	*v = tg_c_strtod(f.s, &end);
	return end == f.e;
}

/* The field as a message shows it: at most 40 characters (then "..."), and
 * bytes that are not printable as \xHH, so a NUL or a control character
 * cannot cut the message short or garble it. */
static const char *show_field(field f, char *buf, size_t size)
{
	size_t k = 0;
	const char *c = f.s;
	for (int shown = 0; c < f.e && shown < 40 && k + 8 < size; c++, shown++) {
		unsigned char u = (unsigned char)*c;
		if (u >= 0x20 && u < 0x7f && u != '"')
			buf[k++] = (char)u;
		else
			k += (size_t)snprintf(buf + k, size - k, "\\x%02x", u);
	}
	if (c < f.e)
		k += (size_t)snprintf(buf + k, size - k, "...");
	buf[k] = '\0';
	return buf;
}

/* Growing arrays of a CSV's samples. */
typedef struct csv_rows {
	float *x;   /* (cap, d) */
	int32_t *y; /* (cap) class labels, or NULL with float targets */
	float *t;   /* (cap, tdim) float targets, or NULL with labels */
	int64_t n, cap, d, tdim;
} csv_rows;

typedef struct csv_parse {
	tg_ctx *ctx;
	const char *path;
	tg_csv_options opt;
	int64_t max_rows;
	int64_t max_bytes;
	int64_t text_cap;    /* bytes of the line buffer, counted against max_bytes */
	int ncol;            /* columns per row, from the first data row */
	long long ncol_line; /* the line that set ncol */
	int *role;           /* (ncol) -1: a feature; k >= 0: target k (the label when 0 of 1) */
	int ntarget;         /* target columns: 1 with a class label */
	double max_label;
	field *f;            /* (ncol) */
	bool first;          /* no line with content seen yet */
	char *head;          /* the header line as read, when one was skipped; malloc'd */
	long long head_line; /* its line */
	char header[256];    /* why line 1 was taken for a header, when it was guessed */
} csv_parse;

/* Records a format error; when the first line was skipped as a guessed
 * header, says why, since a wrong guess is a likely cause. */
static int csv_fail(csv_parse *p, tg_status code, const char *fmt, ...)
#ifdef __GNUC__
	__attribute__((format(printf, 3, 4)))
#endif
	;
static int csv_fail(csv_parse *p, tg_status code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (p->header[0])
		tg_fail(p->ctx, code, "%s: %s (%s)", p->path, msg, p->header);
	else
		tg_fail(p->ctx, code, "%s: %s", p->path, msg);
	return -1;
}

static int csv_grow(csv_parse *p, csv_rows *r)
{
	if (r->n >= p->max_rows)
		return csv_fail(p, TG_EFORMAT,
				"more than %lld rows, the most a CSV may have (max_rows)",
				(long long)p->max_rows);
	int64_t row = (r->d + p->ntarget) * (int64_t)sizeof(float); /* features, targets */
	int64_t room = (p->max_bytes - p->text_cap) / row;
	int64_t most = TG_DATA_MAX_ELEMS / r->d < room ? TG_DATA_MAX_ELEMS / r->d : room;
	most = most < p->max_rows ? most : p->max_rows;
	int64_t ncap = r->cap ? r->cap * 2 : 256;
	ncap = ncap < most ? ncap : most;
	if (ncap <= r->n)
		return csv_fail(p, TG_EFORMAT,
				"%lld rows of %lld feature%s and more: the data set would take "
				"more than %.2f GiB (max_bytes; a gzip bomb?)",
				(long long)r->n, (long long)r->d, r->d == 1 ? "" : "s",
				gib(p->max_bytes));
	float *x = realloc(r->x, (size_t)(ncap * r->d) * sizeof(float));
	if (x)
		r->x = x;
	bool ok = x != NULL;
	if (ok && p->opt.float_targets) {
		float *t = realloc(r->t, (size_t)(ncap * r->tdim) * sizeof(float));
		if (t)
			r->t = t;
		ok = t != NULL;
	} else if (ok) {
		int32_t *y = realloc(r->y, (size_t)ncap * sizeof(int32_t));
		if (y)
			r->y = y;
		ok = y != NULL;
	}
	if (!ok) {
		tg_fail(p->ctx, TG_ENOMEM, "%s: out of memory for %lld rows", p->path,
			(long long)ncap);
		return -1;
	}
	r->cap = ncap;
	return 0;
}

/* Parses one data line into row r->n. */
static int csv_row(csv_parse *p, csv_rows *r, const char *s, const char *e, long long line)
{
	quoting q;
	int n = split_fields(s, e, p->f, p->ncol, &q);
	if (q.col)
		return csv_fail(p, TG_EFORMAT, "line %lld, column %d: %s", line, q.col, q.why);
	if (n != p->ncol)
		return csv_fail(p, TG_EFORMAT, "line %lld: %d column%s, expected %d (as on line %lld)",
				line, n, n == 1 ? "" : "s", p->ncol, p->ncol_line);
	if (r->n == r->cap && csv_grow(p, r))
		return -1;
	float *x = r->x + r->n * r->d;
	double scale = p->opt.scale != 0 ? p->opt.scale : 1.0;
	for (int c = 0; c < n; c++) {
		double v = 0;
		field f = p->f[c];
		bool number = parse_number(f, &v);
		int role = p->role[c];
		float xv = role >= 0 ? (float)v : (float)(v / scale);
		if (!number || !isfinite(v) || !isfinite(xv)) {
			const char *why = "not finite (in single precision)";
			if (!number)
				why = f.e == f.s ? "not a number (empty field)" : "not a number";
			char shown[400];
			show_field(f, shown, sizeof shown);
			if (number && isfinite((float)v)) /* the scale made it overflow */
				return csv_fail(p, TG_EFORMAT,
						"line %lld, column %d: \"%s\" divided by scale %g is "
						"not finite (in single precision)",
						line, c + 1, shown, scale);
			return csv_fail(p, TG_EFORMAT, "line %lld, column %d: \"%s\" is %s", line,
					c + 1, shown, why);
		}
		if (role < 0) {
			*x++ = xv;
			continue;
		}
		if (p->opt.float_targets) {
			r->t[r->n * r->tdim + role] = xv;
			continue;
		}
		int limit = p->opt.classes > 0 ? p->opt.classes : TG_DATA_MAX_CLASSES;
		if (v != floor(v) || v < 0 || v >= limit) {
			/* the field as written: %g would show 1.0000001 as 1 */
			char shown[400];
			show_field(f, shown, sizeof shown);
			if (v != floor(v))
				return csv_fail(p, TG_EFORMAT,
						"line %lld, column %d: label \"%s\" is not an integer",
						line, c + 1, shown);
			return csv_fail(p, TG_EFORMAT,
					"line %lld, column %d: label \"%s\" is out of range [0,%d)",
					line, c + 1, shown, limit);
		}
		r->y[r->n] = (int32_t)v;
		if (v > p->max_label)
			p->max_label = v;
	}
	r->n++;
	return 0;
}

/* The 0-based column of target k: by name from the header line, or by index
 * (negative from the end); -1 and an error when there is none. */
static int target_column(csv_parse *p, int k)
{
	const tg_csv_options *o = &p->opt;
	if (o->target_names) {
		const char *want = o->target_names[k];
		if (!want) {
			tg_fail(p->ctx, TG_ENULL, "%s: target name %d is NULL", p->path, k);
			return -1;
		}
		if (!p->head) {
			tg_fail(p->ctx, TG_EARG,
				"%s: target column \"%s\" asked for by name, but the file has no "
				"header line",
				p->path, want);
			return -1;
		}
		const char *s = p->head, *e = s + strlen(s);
		int found = -1;
		for (int col = 0; col < p->ncol; col++) {
			field f;
			const char *why = NULL;
			const char *c = next_field(s, e, &f, &why);
			if (field_is(f, want)) {
				if (found >= 0) { /* either could be meant */
					tg_fail(p->ctx, TG_EARG,
						"%s: columns %d and %d are both named \"%s\" in the "
						"header; choose by index (target_columns)",
						p->path, found + 1, col + 1, want);
					return -1;
				}
				found = col;
			}
			if (c == e)
				break;
			s = c + 1;
		}
		if (found >= 0)
			return found;
		tg_fail(p->ctx, TG_EARG, "%s: no column named \"%s\" in the header", p->path,
			want);
		return -1;
	}
	int lc = o->target_columns ? o->target_columns[k] : o->label_column;
	int col = lc < 0 ? p->ncol + lc : lc;
	if (col < 0 || col >= p->ncol) {
		tg_fail(p->ctx, TG_EARG, "%s: %s column %d out of range for %d column%s", p->path,
			o->float_targets ? "target" : "label", lc, p->ncol, p->ncol == 1 ? "" : "s");
		return -1;
	}
	return col;
}

/* The columns a header line names: its fields up to the last that is not
 * empty (none of them are quoted wrongly: the header was checked). */
static int header_width(const char *s)
{
	const char *e = s + strlen(s);
	int n = 0, named = 0;
	for (;;) {
		field f;
		const char *why = NULL;
		const char *c = next_field(s, e, &f, &why);
		n++;
		if (f.s != f.e)
			named = n;
		if (c == e)
			return named;
		s = c + 1;
	}
}

/* The first data line fixes the column count and the target columns. */
static int csv_first(csv_parse *p, csv_rows *r, const char *s, const char *e, long long line)
{
	quoting q;
	p->ncol = split_fields(s, e, NULL, 0, &q);
	if (q.col)
		return csv_fail(p, TG_EFORMAT, "line %lld, column %d: %s", line, q.col, q.why);
	p->ncol_line = line;
	if (p->ncol <= p->ntarget && !p->opt.float_targets)
		return csv_fail(p, TG_EFORMAT, "line %lld: %d column; a row needs features and a label",
				line, p->ncol);
	if (p->ncol <= p->ntarget)
		return csv_fail(p, TG_EFORMAT,
				"line %lld: %d column%s; a row needs features and %d target%s", line,
				p->ncol, p->ncol == 1 ? "" : "s", p->ntarget,
				p->ntarget == 1 ? "" : "s");
	if ((int64_t)p->ncol * (int64_t)(sizeof *p->f + sizeof *p->role + sizeof(float)) >
	    p->max_bytes - p->text_cap)
		return csv_fail(p, TG_EFORMAT,
				"line %lld: %d columns would take more than %.2f GiB (max_bytes)",
				line, p->ncol, gib(p->max_bytes));
	p->f = malloc((size_t)p->ncol * sizeof *p->f);
	p->role = malloc((size_t)p->ncol * sizeof *p->role);
	if (!p->f || !p->role) {
		tg_fail(p->ctx, TG_ENOMEM, "%s: out of memory for %d columns", p->path, p->ncol);
		return -1;
	}
	for (int c = 0; c < p->ncol; c++)
		p->role[c] = -1;
	/* names pick columns only when the header names every column: one more
	 * or fewer would shift every name onto another column, or off the row
	 * (empty fields at the header's end, a trailing comma, name none) */
	if (p->opt.target_names && p->head) {
		int nh = header_width(p->head);
		if (nh != p->ncol)
			return csv_fail(p, TG_EFORMAT,
					"line %lld: %d column%s, but the header (line %lld) names "
					"%d: the target names cannot be matched to columns",
					line, p->ncol, p->ncol == 1 ? "" : "s", p->head_line, nh);
	}
	for (int k = 0; k < p->ntarget; k++) {
		int col = target_column(p, k);
		if (col < 0)
			return -1;
		if (p->role[col] >= 0) {
			tg_fail(p->ctx, TG_EARG, "%s: column %d is named as a target twice", p->path,
				col + 1);
			return -1;
		}
		p->role[col] = k;
	}
	r->d = p->ncol - p->ntarget;
	r->tdim = p->opt.float_targets ? p->ntarget : 0;
	return 0;
}

/* True if some field of the line is neither a number nor empty; then why[]
 * says which. An empty field names no column: in a line of numbers it is a
 * missing value, which the line read as data reports, not a header to skip
 * without a word. */
static bool is_header(const char *s, const char *e, long long line, char *why, size_t size)
{
	for (int col = 1;; col++) {
		field f;
		const char *bad = NULL;
		const char *c = next_field(s, e, &f, &bad);
		double v;
		if (f.s != f.e && !parse_number(f, &v)) {
			char shown[400];
			snprintf(why, size,
				 "line %lld was taken for a header: its column %d \"%.60s\" is not "
				 "a number; TG_CSV_HEADER_NO reads it as data",
				 line, col, show_field(f, shown, sizeof shown));
			return true;
		}
		if (c == e)
			return false;
		s = c + 1;
	}
}

/* One line [s, e) of the file, terminator excluded. */
static int csv_line(csv_parse *p, csv_rows *r, const char *s, const char *e, long long line)
{
	const char *t = s;
	while (t < e && is_blank(*t))
		t++;
	if (t == e)
		return 0; /* blank */
	bool first = p->first;
	p->first = false;
	if (first && (p->opt.header == TG_CSV_HEADER_YES ||
		      (p->opt.header == TG_CSV_HEADER_AUTO &&
		       is_header(s, e, line, p->header, sizeof p->header)))) {
		quoting q;
		split_fields(s, e, NULL, 0, &q);
		if (q.col)
			return csv_fail(p, TG_EFORMAT, "line %lld, column %d: %s", line, q.col,
					q.why);
		p->head = strndup(s, (size_t)(e - s));
		p->head_line = line;
		if (!p->head) {
			tg_fail(p->ctx, TG_ENOMEM, "%s: out of memory for the header", p->path);
			return -1;
		}
		return 0;
	}
	if (r->d == 0 && csv_first(p, r, s, e, line))
		return -1;
	return csv_row(p, r, s, e, line);
}

/* Reads and parses the whole stream. The buffer holds the unparsed tail of
 * the text and one NUL after it (so a number at the very end stops). */
static int csv_parse_stream(csv_parse *p, csv_rows *r, src *f)
{
	size_t cap = CHUNK, len = 0, total = 0;
	char *buf = malloc(cap + 1);
	if (!buf) {
		tg_fail(p->ctx, TG_ENOMEM, "%s: out of memory", p->path);
		return -1;
	}
	p->text_cap = (int64_t)cap;
	long long line = 0;
	bool start = true, end = false;
	int rc = -1;
	while (!end) {
		if (len == cap) { /* one line fills the buffer */
			if ((int64_t)cap * 2 > p->max_bytes / 4 || cap * 2 > MAX_LINE) {
				csv_fail(p, TG_EFORMAT, "line %lld is longer than %zu bytes",
					 line + 1, cap);
				goto out_free;
			}
			char *grown = realloc(buf, cap * 2 + 1);
			if (!grown) {
				tg_fail(p->ctx, TG_ENOMEM, "%s: out of memory for a line of %zu bytes",
					p->path, cap);
				goto out_free;
			}
			buf = grown;
			cap *= 2;
			p->text_cap = (int64_t)cap;
		}
		int64_t got = read_some(f, buf + len, cap - len);
		if (got < 0)
			goto out_free;
		end = (size_t)got < cap - len;
		if (f->cut) {
			csv_fail(p, TG_EFORMAT, "the gzip stream is cut short (a truncated file)");
			goto out_free;
		}
		total += (size_t)got;
		if ((int64_t)total > p->max_bytes) {
			csv_fail(p, TG_EFORMAT,
				 "more than %.2f GiB of text, the most a CSV may have (max_bytes; a "
				 "gzip bomb?)",
				 gib(p->max_bytes));
			goto out_free;
		}
		len += (size_t)got;
		buf[len] = '\0';
		const char *s = buf, *stop = buf + len;
		if (start && len >= 3 && !memcmp(s, "\xef\xbb\xbf", 3))
			s += 3; /* UTF-8 byte-order mark */
		if (start && (len >= 3 || end))
			start = false;
		else if (start)
			continue; /* fewer than 3 bytes: maybe half a mark */
		for (;;) {
			const char *e = s;
			while (e < stop && *e != '\n' && *e != '\r')
				e++;
			if (e == stop && !end)
				break; /* the line goes on in the next chunk */
			if (e + 1 == stop && *e == '\r' && !end)
				break; /* a CR that may be half a CRLF */
			if (e == stop && s == stop)
				break;
			if (csv_line(p, r, s, e, ++line))
				goto out_free;
			if (e == stop)
				break;
			s = e + (*e == '\r' && e + 1 < stop && e[1] == '\n' ? 2 : 1);
		}
		len = (size_t)(stop - s);
		memmove(buf, s, len);
	}
	if (r->n == 0) {
		csv_fail(p, TG_EFORMAT, "%s", p->first ? "empty file" : "no data rows after the header");
		goto out_free;
	}
	rc = 0;
out_free:
	free(buf);
	return rc;
}

/* The options make sense together; else TG_EARG naming the one that does
 * not and why. */
static int csv_check_options(tg_ctx *ctx, const tg_csv_options *o)
{
	const char *what = "tg_load_csv: ";
	bool listed = o->target_columns || o->target_names;
	if (!isfinite(o->scale) || o->scale < 0)
		tg_fail(ctx, TG_EARG, "%sscale %g is %s; features are divided by it (0 means 1)",
			what, o->scale, o->scale < 0 ? "negative" : "not finite");
	else if (o->max_bytes < 0 || (o->max_bytes > 0 && o->max_bytes < TG_CSV_MIN_BYTES))
		tg_fail(ctx, TG_EARG,
			"%smax_bytes %lld is below %lld, the least a CSV load takes "
			"(0: tg_data_max_bytes())",
			what, (long long)o->max_bytes, (long long)TG_CSV_MIN_BYTES);
	else if (o->classes > TG_DATA_MAX_CLASSES)
		tg_fail(ctx, TG_EARG, "%sclasses %d: at most %d (<= 0: the largest label + 1)",
			what, o->classes, TG_DATA_MAX_CLASSES);
	else if ((unsigned)o->header > TG_CSV_HEADER_NO)
		tg_fail(ctx, TG_EARG,
			"%sheader %d: not TG_CSV_HEADER_AUTO, TG_CSV_HEADER_YES or TG_CSV_HEADER_NO",
			what, (int)o->header);
	else if (o->max_rows < 0)
		tg_fail(ctx, TG_EARG, "%smax_rows %lld is negative (0: TG_CSV_MAX_ROWS)", what,
			(long long)o->max_rows);
	else if (o->ntargets < 0 || o->ntargets > TG_CSV_MAX_TARGETS)
		tg_fail(ctx, TG_EARG, "%sntargets %d: from 0 to %d", what, o->ntargets,
			TG_CSV_MAX_TARGETS);
	else if (o->target_columns && o->target_names)
		tg_fail(ctx, TG_EARG,
			"%starget_columns and target_names both given; choose the targets by "
			"index or by name",
			what);
	else if (listed && o->ntargets < 1)
		tg_fail(ctx, TG_EARG, "%sntargets %d with %s: it lists at least 1", what,
			o->ntargets, o->target_names ? "target_names" : "target_columns");
	else if (!listed && o->ntargets > 1)
		tg_fail(ctx, TG_EARG,
			"%sntargets %d without target_columns or target_names to list them", what,
			o->ntargets);
	else if (!o->float_targets && o->ntargets > 1)
		tg_fail(ctx, TG_EARG,
			"%sntargets %d: a class label is 1 column; several targets need "
			"float_targets",
			what, o->ntargets);
	else
		return 0;
	return -1;
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
	csv_parse p = { .ctx = ctx, .path = path, .opt = opt ? *opt : TG_CSV_DEFAULTS,
			.first = true };
	if (csv_check_options(ctx, &p.opt))
		return -1;
	p.ntarget = p.opt.ntargets > 0 ? p.opt.ntargets : 1;
	p.max_rows = p.opt.max_rows ? p.opt.max_rows : TG_CSV_MAX_ROWS;
	p.max_bytes = p.opt.max_bytes ? p.opt.max_bytes : tg_data_max_bytes();
	if (p.max_bytes < TG_CSV_MIN_BYTES)
		p.max_bytes = TG_CSV_MIN_BYTES;
	src f;
	if (src_open(ctx, path, &f))
		return -1;
	csv_rows r = { 0 };
	int rc = csv_parse_stream(&p, &r, &f);
	src_close(&f);
	free(p.f);
	free(p.role);
	free(p.head);
	if (rc) {
		free(r.x);
		free(r.y);
		free(r.t);
		return -1;
	}
	/* Give back the slack of the last doubling. */
	*out = (tg_dataset){ .n = r.n, .d = r.d,
			     .x = settle(r.x, (size_t)(r.n * r.d) * sizeof(float)) };
	if (p.opt.float_targets) {
		out->t = settle(r.t, (size_t)(r.n * r.tdim) * sizeof(float));
		out->tdim = r.tdim;
	} else {
		out->y = settle(r.y, (size_t)r.n * sizeof(int32_t));
		out->classes = p.opt.classes > 0 ? p.opt.classes : (int32_t)p.max_label + 1;
	}
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
	tg_csv_options opt = TG_CSV_DEFAULTS; /* the header is found, not assumed: a file
					       * without it keeps its first sample */
	opt.classes = 3;
	return load_known(ctx, path, &opt, 4, "iris", out);
}

int tg_load_digits(tg_ctx *ctx, const char *path, tg_dataset *out)
{
	tg_csv_options opt = TG_CSV_DEFAULTS;
	opt.header = TG_CSV_HEADER_NO;
	opt.classes = 10;
	opt.scale = 16;
	if (load_known(ctx, path, &opt, 64, "digits", out))
		return -1;
	out->ndim = 3; /* 8x8 images */
	out->shape[0] = 1;
	out->shape[1] = out->shape[2] = 8;
	return 0;
}

/* ---- subsets ---------------------------------------------------------------- */

/* A sample shape of ndim sizes whose product is d; else an error naming both. */
static int check_sample_shape(tg_ctx *ctx, const char *who, int64_t d, int ndim,
			      const int64_t *shape)
{
	if (ndim < 0 || ndim > TG_SAMPLE_MAX_DIMS) {
		tg_fail(ctx, TG_ESHAPE, "%s: a sample of %d dimensions; 0 to %d", who, ndim,
			TG_SAMPLE_MAX_DIMS);
		return -1;
	}
	for (int i = 0; i < ndim; i++)
		if (shape[i] < 1) {
			tg_fail(ctx, TG_ESHAPE, "%s: sample size %lld at dimension %d is not positive",
				who, (long long)shape[i], i);
			return -1;
		}
	char text[128];
	int len = snprintf(text, sizeof text, "(");
	int64_t prod = 1;
	bool ok = true;
	for (int i = 0; i < ndim; i++) {
		ok = ok && shape[i] >= 1 && shape[i] <= d;
		prod = ok ? prod * shape[i] : 0;
		ok = ok && prod <= d;
		len += snprintf(text + len, sizeof text - (size_t)len, "%s%lld", i ? "," : "",
				(long long)shape[i]);
	}
	snprintf(text + len, sizeof text - (size_t)len, ")");
	if (ndim && (!ok || prod != d)) {
		tg_fail(ctx, TG_ESHAPE, "%s: samples of shape %s do not hold the %lld features", who,
			text, (long long)d);
		return -1;
	}
	return 0;
}

static int check_dataset(tg_ctx *ctx, const char *who, const tg_dataset *ds)
{
	if (!ds) {
		tg_fail(ctx, TG_ENULL, "%s: data set is NULL", who);
		return -1;
	}
	if (ds->n < 1 || ds->d < 1 || !ds->x || (!ds->y && !ds->t)) {
		tg_fail(ctx, TG_EARG, "%s: empty data set (%lld x %lld)", who, (long long)ds->n,
			(long long)ds->d);
		return -1;
	}
	if (ds->y && ds->t) {
		tg_fail(ctx, TG_EARG, "%s: the data set has both class labels and float targets",
			who);
		return -1;
	}
	if (ds->t && (ds->tdim < 1 || ds->tdim > TG_DATA_MAX_ELEMS / ds->n)) {
		tg_fail(ctx, TG_EARG, "%s: float targets of width %lld", who, (long long)ds->tdim);
		return -1;
	}
	return check_sample_shape(ctx, who, ds->d, ds->ndim, ds->shape);
}

/* A new data set of n rows shaped like src (labels or targets), or -1. */
static int alloc_like(tg_ctx *ctx, const char *who, const tg_dataset *src, int64_t n,
		      tg_dataset *out)
{
	float *x = big_alloc((size_t)(n * src->d) * sizeof(float));
	int32_t *y = src->y ? malloc((size_t)n * sizeof(int32_t)) : NULL;
	float *t = src->t ? big_alloc((size_t)(n * src->tdim) * sizeof(float)) : NULL;
	if (!x || (src->y && !y) || (src->t && !t)) {
		free(x);
		free(y);
		free(t);
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory for %lld rows", who, (long long)n);
		return -1;
	}
	*out = (tg_dataset){ .n = n, .d = src->d, .classes = src->classes, .x = x, .y = y,
			     .tdim = src->t ? src->tdim : 0, .t = t, .ndim = src->ndim };
	memcpy(out->shape, src->shape, sizeof out->shape);
	return 0;
}

/* Ends a call that made a data set from src: on success *made goes to out,
 * which may be src itself (src's old memory is freed then: a subset in
 * place); on failure out is empty, unless it is src, which stays as it
 * was. Returns rc. */
static int replace_out(tg_dataset *out, const tg_dataset *src, tg_dataset *made, int rc)
{
	if (rc) {
		if (out != src)
			*out = (tg_dataset){ 0 };
		return rc;
	}
	if (out == src)
		tg_dataset_free(out);
	*out = *made;
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
	if (alloc_like(ctx, who, src, n, out))
		return -1;
	size_t row = (size_t)src->d * sizeof(float), trow = (size_t)src->tdim * sizeof(float);
	for (int64_t i = 0; i < n; i++) {
		memcpy(out->x + i * src->d, src->x + idx[i] * src->d, row);
		if (src->y)
			out->y[i] = src->y[idx[i]];
		if (src->t)
			memcpy(out->t + i * src->tdim, src->t + idx[i] * src->tdim, trow);
	}
	return 0;
}

int tg_dataset_subset(tg_ctx *ctx, const tg_dataset *src, const int64_t *idx, int64_t n,
		      tg_dataset *out)
{
	if (!usable(ctx))
		return -1;
	tg_dataset made = { 0 };
	if (!out || !idx) {
		tg_fail(ctx, TG_ENULL, "tg_dataset_subset: %s is NULL", !out ? "out" : "idx");
		return out ? replace_out(out, src, &made, -1) : -1;
	}
	int rc = check_dataset(ctx, "tg_dataset_subset", src);
	if (!rc && n < 1) {
		tg_fail(ctx, TG_EARG, "tg_dataset_subset: %lld rows; need at least 1",
			(long long)n);
		rc = -1;
	}
	if (!rc)
		rc = gather(ctx, "tg_dataset_subset", src, idx, n, &made);
	return replace_out(out, src, &made, rc);
}

int tg_dataset_head(tg_ctx *ctx, const tg_dataset *src, int64_t n, tg_dataset *out)
{
	if (!usable(ctx))
		return -1;
	if (!out) {
		tg_fail(ctx, TG_ENULL, "tg_dataset_head: out is NULL");
		return -1;
	}
	tg_dataset made = { 0 };
	int rc = check_dataset(ctx, "tg_dataset_head", src);
	if (!rc && n < 1) {
		tg_fail(ctx, TG_EARG, "tg_dataset_head: %lld rows; need at least 1", (long long)n);
		rc = -1;
	}
	if (!rc && n > src->n)
		n = src->n;
	if (!rc)
		rc = alloc_like(ctx, "tg_dataset_head", src, n, &made);
	if (!rc) {
		memcpy(made.x, src->x, (size_t)(n * src->d) * sizeof(float));
		if (src->y)
			memcpy(made.y, src->y, (size_t)n * sizeof(int32_t));
		if (src->t)
			memcpy(made.t, src->t, (size_t)(n * src->tdim) * sizeof(float));
	}
	return replace_out(out, src, &made, rc);
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
	if (train == val) {
		tg_fail(ctx, TG_EARG, "tg_dataset_split: train and val are the same data set; "
				      "the split needs two");
		return -1;
	}
	/* either may be src (a split in place): both are made before src goes */
	tg_dataset t = { 0 }, v = { 0 };
	int rc = check_dataset(ctx, "tg_dataset_split", src);
	if (!rc && (n_val < 1 || n_val >= src->n)) {
		tg_fail(ctx, TG_EARG,
			"tg_dataset_split: %lld validation rows of %lld; need 1..%lld",
			(long long)n_val, (long long)src->n, (long long)src->n - 1);
		rc = -1;
	}
	int64_t *perm = rc ? NULL : malloc((size_t)src->n * sizeof *perm);
	if (!rc && !perm) {
		tg_fail(ctx, TG_ENOMEM, "tg_dataset_split: out of memory for %lld indices",
			(long long)src->n);
		rc = -1;
	}
	if (!rc) {
		for (int64_t i = 0; i < src->n; i++)
			perm[i] = i;
		shuffle(ctx, perm, src->n);
		rc = gather(ctx, "tg_dataset_split", src, perm, n_val, &v);
		if (!rc) {
			rc = gather(ctx, "tg_dataset_split", src, perm + n_val, src->n - n_val, &t);
			if (rc)
				tg_dataset_free(&v);
		}
	}
	free(perm);
	replace_out(train, src, &t, rc);
	replace_out(val, src, &v, rc);
	return rc;
}

/* ---- sample shapes ------------------------------------------------------------ */

int tg_dataset_reshape(tg_ctx *ctx, tg_dataset *ds, int ndim, const int64_t *shape)
{
	if (!usable(ctx))
		return -1;
	if (!ds || (ndim > 0 && !shape)) {
		tg_fail(ctx, TG_ENULL, "tg_dataset_reshape: %s is NULL", !ds ? "ds" : "shape");
		return -1;
	}
	if (ds->d < 1) {
		tg_fail(ctx, TG_EARG, "tg_dataset_reshape: empty data set (%lld x %lld)",
			(long long)ds->n, (long long)ds->d);
		return -1;
	}
	if (check_sample_shape(ctx, "tg_dataset_reshape", ds->d, ndim, shape))
		return -1;
	ds->ndim = ndim;
	memset(ds->shape, 0, sizeof ds->shape);
	for (int i = 0; i < ndim; i++)
		ds->shape[i] = shape[i];
	return 0;
}

int tg_dataset_batch_shape(const tg_dataset *ds, int64_t n, int64_t *out)
{
	out[0] = n;
	if (!ds || ds->ndim < 1 || ds->ndim > TG_SAMPLE_MAX_DIMS) {
		out[1] = ds ? ds->d : 0;
		return 2;
	}
	for (int i = 0; i < ds->ndim; i++)
		out[1 + i] = ds->shape[i];
	return 1 + ds->ndim;
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

/* Rows [lo, hi) of a batch: the part of tg_dataset_batch (src the
 * features, d = ds->d, with the labels) or tg_dataset_targets (src the
 * targets, d = ds->tdim) one thread copies. */
typedef struct batch_rows {
	const float *src; /* rows of d floats */
	int64_t d;
	const int32_t *y; /* the labels to copy, or NULL */
	const int64_t *idx;
	tg_dtype dt;
	void *data;
	int32_t *labels;
} batch_rows;

static void batch_rows_part(void *arg, size_t lo, size_t hi)
{
	const batch_rows *g = arg;
	int64_t d = g->d;
	for (int64_t i = (int64_t)lo; i < (int64_t)hi; i++) {
		const float *row = g->src + g->idx[i] * d;
		if (i + PREFETCH_AHEAD < (int64_t)hi)
			prefetch_row(g->src + g->idx[i + PREFETCH_AHEAD] * d, d);
		if (g->dt == TG_F32) {
			memcpy((float *)g->data + i * d, row, (size_t)d * sizeof(float));
		} else {
			double *out = (double *)g->data + i * d;
			for (int64_t j = 0; j < d; j++)
				out[j] = row[j];
		}
		if (g->labels && g->y)
			g->labels[i] = g->y[g->idx[i]];
	}
}

/* The rows idx[0..n) of src into a new tensor of dt and the given shape
 * (n rows of d), copied by the context's threads; the labels too when y
 * and labels are given. */
static tg_tensor *gather_rows(tg_ctx *ctx, const float *src, int64_t d, const int32_t *y,
			      const int64_t *idx, int64_t n, tg_dtype dt, int nd,
			      const int64_t *shape, int32_t *labels)
{
	tg_tensor *x = tg_empty(ctx, dt, nd, shape); /* every row is copied in */
	void *data = x ? tg_data_mut(x) : NULL;
	if (!data)
		return NULL;
	batch_rows g = { src, d, y, idx, dt, data, labels };
	/* rows wait on memory, not on arithmetic: split like a plain loop */
	tg_parallel_for(ctx, (size_t)n, TG_PAR_MIN / (size_t)d + 1, 1, batch_rows_part, &g);
	return x;
}

/* A dtype's name for a message: "i32", or "unknown". */
static const char *batch_dtype_name(tg_dtype dt)
{
	static const char *const names[] = { "f32", "f64", "i32", "i64" };
	return (unsigned)dt < sizeof names / sizeof names[0] ? names[dt] : "unknown";
}

/* The checks of tg_dataset_batch and tg_dataset_targets (targets: the
 * data set must have float targets). 0 ok, -1 after recording why. */
static int batch_args(tg_ctx *ctx, const char *who, const tg_dataset *ds, const int64_t *idx,
		      int64_t n, tg_dtype dt, bool targets)
{
	if (!usable(ctx))
		return -1;
	if (!idx) {
		tg_fail(ctx, TG_ENULL, "%s: idx is NULL", who);
		return -1;
	}
	if (check_dataset(ctx, who, ds))
		return -1;
	if (targets && !ds->t) {
		tg_fail(ctx, TG_EARG, "%s: the data set has class labels, not float targets", who);
		return -1;
	}
	if (n < 1) {
		tg_fail(ctx, TG_EARG, "%s: batch of %lld rows", who, (long long)n);
		return -1;
	}
	if (dt != TG_F32 && dt != TG_F64) {
		tg_fail(ctx, TG_EDTYPE, "%s: dtype %s; a batch of features is f32 or f64", who,
			batch_dtype_name(dt));
		return -1;
	}
	for (int64_t i = 0; i < n; i++)
		if (idx[i] < 0 || idx[i] >= ds->n) {
			tg_fail(ctx, TG_EARG, "%s: index %lld at %lld is out of range [0,%lld)", who,
				(long long)idx[i], (long long)i, (long long)ds->n);
			return -1;
		}
	return 0;
}

tg_tensor *tg_dataset_batch(tg_ctx *ctx, const tg_dataset *ds, const int64_t *idx, int64_t n,
			    tg_dtype dt, int32_t *labels)
{
	if (batch_args(ctx, "tg_dataset_batch", ds, idx, n, dt, false))
		return NULL;
	int64_t shape[1 + TG_SAMPLE_MAX_DIMS];
	int nd = tg_dataset_batch_shape(ds, n, shape);
	return gather_rows(ctx, ds->x, ds->d, ds->y, idx, n, dt, nd, shape, labels);
}

tg_tensor *tg_dataset_targets(tg_ctx *ctx, const tg_dataset *ds, const int64_t *idx, int64_t n,
			      tg_dtype dt)
{
	if (batch_args(ctx, "tg_dataset_targets", ds, idx, n, dt, true))
		return NULL;
	return gather_rows(ctx, ds->t, ds->tdim, NULL, idx, n, dt, 2,
			   (const int64_t[]){ n, ds->tdim }, NULL);
}

struct tg_batcher {
	tg_ctx *ctx;
	const tg_dataset *ds; /* borrowed */
	int64_t batch;        /* B */
	int64_t n;            /* the data set's rows when made: order's size in epochs */
	unsigned flags;
	int64_t *order;       /* (N) this epoch's permutation, or (B) draws with replacement */
	int64_t pos;          /* next position in order; -1 before an epoch */
	int64_t epoch;        /* epochs completed */
	int32_t *y;           /* (B) labels of the current batch */
	int64_t part, parts;  /* the shard of each batch delivered: 0 of 1 */
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
	if (flags & ~(unsigned)(TG_BATCH_REPLACE | TG_BATCH_DROP_LAST))
		return tg_fail(ctx, TG_EARG, "tg_batcher_new: unknown flags 0x%x", flags);
	bool replace = flags & TG_BATCH_REPLACE;
	/* shuffled epochs: a batch larger than the data set is all of it */
	if ((replace || batch <= ds->n) && batch > TG_DATA_MAX_ELEMS / ds->d)
		return tg_fail(ctx, TG_EARG,
			       "tg_batcher_new: a batch of %lld rows of %lld features exceeds %lld "
			       "values",
			       (long long)batch, (long long)ds->d, (long long)TG_DATA_MAX_ELEMS);
	if (!replace && (flags & TG_BATCH_DROP_LAST) && batch > ds->n)
		return tg_fail(ctx, TG_EARG,
			       "tg_batcher_new: batch size %lld > %lld samples with "
			       "TG_BATCH_DROP_LAST leaves every epoch empty",
			       (long long)batch, (long long)ds->n);
	int64_t norder = replace ? batch : ds->n;
	int64_t most = replace || batch < ds->n ? batch : ds->n; /* rows in a batch */
	tg_batcher *b = malloc(sizeof *b);
	int64_t *order = malloc((size_t)norder * sizeof *order);
	int32_t *y = ds->y ? malloc((size_t)most * sizeof *y) : NULL;
	if (!b || !order || (ds->y && !y)) {
		free(b);
		free(order);
		free(y);
		return tg_fail(ctx, TG_ENOMEM, "tg_batcher_new: out of memory for %lld indices",
			       (long long)norder);
	}
	*b = (tg_batcher){ .ctx = ctx, .ds = ds, .batch = batch, .n = ds->n, .flags = flags,
			   .order = order, .pos = -1, .y = y, .part = 0, .parts = 1 };
	return b;
}

int tg_batcher_shard(tg_batcher *b, int64_t part, int64_t parts)
{
	if (!b || !usable(b->ctx))
		return -1;
	if (parts < 1 || part < 0 || part >= parts) {
		tg_fail(b->ctx, TG_EARG, "tg_batcher_shard: part %lld of %lld", (long long)part,
			(long long)parts);
		return -1;
	}
	/* every batch must give each part a row: the full ones and an epoch's
	 * short last one (found now, not when an epoch reaches it) */
	const tg_dataset *ds = b->ds;
	bool replace = b->flags & TG_BATCH_REPLACE;
	int64_t most = replace || b->batch < ds->n ? b->batch : ds->n;
	int64_t last = replace || (b->flags & TG_BATCH_DROP_LAST) || b->batch >= ds->n
			       ? 0
			       : ds->n % b->batch;
	int64_t rows = last ? last : most;
	if (rows < parts) {
		tg_fail(b->ctx, TG_EARG,
			"tg_batcher_shard: %s of %lld row%s cannot give each of %lld parts a "
			"row; choose another batch%s",
			last ? "the short last batch of an epoch" : "a batch", (long long)rows,
			rows == 1 ? "" : "s", (long long)parts,
			last ? " or drop it (TG_BATCH_DROP_LAST)" : "");
		return -1;
	}
	b->part = part;
	b->parts = parts;
	return 0;
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
	/* the arrays are sized for the data set the batcher was made for: one
	 * replaced in place since (a subset into itself, a free) is refused */
	if (check_dataset(b->ctx, "tg_batch_next", ds))
		return false;
	if (!(b->flags & TG_BATCH_REPLACE) && ds->n != b->n) {
		tg_fail(b->ctx, TG_EARG,
			"tg_batch_next: the data set has %lld rows, the batcher was made for %lld; "
			"make a new batcher for it",
			(long long)ds->n, (long long)b->n);
		return false;
	}
	if (ds->y && !b->y) {
		tg_fail(b->ctx, TG_EARG,
			"tg_batch_next: the data set has class labels, the batcher was made for "
			"float targets; make a new batcher for it");
		return false;
	}
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
	int64_t total = m, lo = m * b->part / b->parts, hi = m * (b->part + 1) / b->parts;
	if (hi == lo) {
		tg_fail(b->ctx, TG_EARG,
			"tg_batch_next: a batch of %lld rows leaves part %lld of %lld none",
			(long long)m, (long long)b->part, (long long)b->parts);
		return false;
	}
	idx += lo;
	m = hi - lo;
	tg_tensor *x = tg_dataset_batch(b->ctx, ds, idx, m, dt, b->y);
	tg_tensor *labels = x && ds->y ? tg_from_i32(b->ctx, 1, (int64_t[]){ m }, b->y) : NULL;
	tg_tensor *t = x && ds->t ? tg_dataset_targets(b->ctx, ds, idx, m, dt) : NULL;
	if (!x || (ds->y && !labels) || (ds->t && !t))
		return false;
	if (!(b->flags & TG_BATCH_REPLACE))
		b->pos += total;
	*out = (tg_batch){ .x = x, .y = b->y, .labels = labels, .t = t, .idx = idx, .n = m,
			   .total = total };
	return true;
}

/* ---- standardising -------------------------------------------------------------- */

/* Per-column mean and population standard deviation of a (n, w) array, in
 * double; a constant column gets std 1, so it becomes 0 and stays finite.
 * Constant means a spread within rounding of the mean, relative to it: a
 * column whose numbers are all small (around 1e-14, say) still varies and
 * is scaled like any other. */
static void column_stats(const float *a, int64_t n, int64_t w, double *mean, double *std)
{
	for (int64_t j = 0; j < w; j++)
		mean[j] = std[j] = 0;
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < w; j++)
			mean[j] += a[i * w + j];
	for (int64_t j = 0; j < w; j++)
		mean[j] /= (double)n;
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < w; j++) {
			double e = a[i * w + j] - mean[j];
			std[j] += e * e;
		}
	for (int64_t j = 0; j < w; j++) {
		std[j] = sqrt(std[j] / (double)n);
		if (!(std[j] > 1e-12 * fabs(mean[j])))
			std[j] = 1;
	}
}

/* The index of the first of a[0..n) that is not finite, or -1. */
static int64_t first_nonfinite(const float *a, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(a[i]))
			return i;
	return -1;
}

/* A named (w) f64 ctx tensor of v. */
static tg_tensor *stat_tensor(tg_ctx *ctx, const double *v, int64_t w, const char *name)
{
	return tg_set_name(tg_keep(tg_from_f64(ctx, TG_F64, 1, (int64_t[]){ w }, v)), name);
}

int tg_standardiser_fit(tg_ctx *ctx, const tg_dataset *train, bool targets,
			tg_standardiser *out)
{
	if (!usable(ctx))
		return -1;
	if (!out) {
		tg_fail(ctx, TG_ENULL, "tg_standardiser_fit: out is NULL");
		return -1;
	}
	*out = (tg_standardiser){ 0 };
	if (check_dataset(ctx, "tg_standardiser_fit", train))
		return -1;
	if (targets && !train->t) {
		tg_fail(ctx, TG_EARG,
			"tg_standardiser_fit: targets asked for, but the data set has class labels");
		return -1;
	}
	int64_t d = train->d, w = targets ? train->tdim : 0;
	/* a NaN or an Inf would make its column's mean and std NaN, which
	 * every apply then refuses without saying which row was at fault */
	for (int k = 0; k < (w ? 2 : 1); k++) {
		int64_t cols = k ? w : d, at = first_nonfinite(k ? train->t : train->x, train->n * cols);
		if (at >= 0) {
			tg_fail(ctx, TG_EARG, "tg_standardiser_fit: row %lld, %s %lld is %g; data must be "
				"finite", (long long)(at / cols), k ? "target" : "feature",
				(long long)(at % cols), (double)(k ? train->t : train->x)[at]);
			return -1;
		}
	}
	double *v = malloc((size_t)(2 * (d > w ? d : w)) * sizeof *v);
	if (!v) {
		tg_fail(ctx, TG_ENOMEM, "tg_standardiser_fit: out of memory for %lld columns",
			(long long)d);
		return -1;
	}
	tg_standardiser s = { .d = d, .tdim = w };
	int64_t most = d > w ? d : w;
	column_stats(train->x, train->n, d, v, v + most);
	s.mean = stat_tensor(ctx, v, d, "standardiser.mean");
	s.std = stat_tensor(ctx, v + most, d, "standardiser.std");
	if (w) {
		column_stats(train->t, train->n, w, v, v + most);
		s.target_mean = stat_tensor(ctx, v, w, "standardiser.target_mean");
		s.target_std = stat_tensor(ctx, v + most, w, "standardiser.target_std");
	}
	free(v);
	if (!tg_ok(ctx))
		return -1;
	*out = s;
	return 0;
}

/* The first value of a (n, w) array that (x - mean) / std takes beyond
 * single precision (a test value far out on a column of small spread), as
 * its flat index; -1 when there is none. */
static int64_t first_overflow(const float *a, int64_t n, int64_t w, const tg_tensor *mean,
			      const tg_tensor *std)
{
	const double *m = tg_data(mean), *s = tg_data(std);
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < w; j++)
			if (!isfinite((float)((a[i * w + j] - m[j]) / s[j])))
				return i * w + j;
	return -1;
}

/* (x - mean) / std over every row of a (n, w) array, in place. */
static void standardise(float *a, int64_t n, int64_t w, const tg_tensor *mean,
			const tg_tensor *std)
{
	const double *m = tg_data(mean), *s = tg_data(std);
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < w; j++)
			a[i * w + j] = (float)((a[i * w + j] - m[j]) / s[j]);
}

/* mean and std (the targets' with targets) hold w finite f64 numbers, each
 * std positive (they may come from a checkpoint or the caller's hands);
 * TG_EARG naming the first that does not (TG_ENULL for one missing, TG_ECTX
 * for one of another context), else 0. */
static int check_stats(tg_ctx *ctx, const tg_tensor *mean, const tg_tensor *std, int64_t w,
		       bool targets)
{
	static const char *const field[2][2] = { { "mean", "std" },
						 { "target_mean", "target_std" } };
	const tg_tensor *t[2] = { mean, std };
	for (int k = 0; k < 2; k++) {
		if (!t[k]) {
			tg_fail(ctx, TG_ENULL, "tg_standardiser_apply: %s is NULL",
				field[targets][k]);
			return -1;
		}
		if (!tg_tensor_check("tg_standardiser_apply", t[k])) {
			tg_stale_elsewhere(ctx, "tg_standardiser_apply", t[k], "%s",
					   field[targets][k]);
			return -1;
		}
		const char *name = tg_name(t[k]) ? tg_name(t[k]) : field[targets][k];
		tg_ctx *owner = tg_ctx_of(t[k]);
		if (owner && owner != ctx) {
			tg_fail(ctx, TG_ECTX, "tg_standardiser_apply: %s belongs to another context",
				name);
			return -1;
		}
		if (tg_dtype_of(t[k]) != TG_F64 || (int64_t)tg_numel(t[k]) != w) {
			tg_fail(ctx, TG_EARG,
				"tg_standardiser_apply: %s is %s with %zu values; expected %lld f64",
				name, (const char *[]){ "f32", "f64", "i32", "i64" }[tg_dtype_of(t[k]) & 3],
				tg_numel(t[k]), (long long)w);
			return -1;
		}
		const double *v = tg_data(t[k]);
		if (!v)
			return -1;
		for (int64_t j = 0; j < w; j++)
			if (!isfinite(v[j]) || (k && !(v[j] > 0))) {
				tg_fail(ctx, TG_EARG,
					"tg_standardiser_apply: %s[%lld] is %g; %s", name, (long long)j,
					v[j], k ? "a deviation must be positive and finite"
						: "a mean must be finite");
				return -1;
			}
	}
	return 0;
}

int tg_standardiser_apply(tg_ctx *ctx, const tg_standardiser *s, tg_dataset *ds)
{
	if (!usable(ctx))
		return -1;
	if (!s || !s->mean || !s->std) {
		tg_fail(ctx, TG_ENULL, "tg_standardiser_apply: the standardiser is %s",
			!s ? "NULL" : "not fitted");
		return -1;
	}
	if (check_dataset(ctx, "tg_standardiser_apply", ds))
		return -1;
	if (ds->d != s->d || (s->tdim && ds->tdim != s->tdim)) {
		tg_fail(ctx, TG_ESHAPE,
			"tg_standardiser_apply: fitted on %lld features and %lld targets; the data "
			"set has %lld features and %lld targets",
			(long long)s->d, (long long)s->tdim, (long long)ds->d,
			(long long)ds->tdim);
		return -1;
	}
	if (check_stats(ctx, s->mean, s->std, s->d, false) ||
	    (s->tdim && check_stats(ctx, s->target_mean, s->target_std, s->tdim, true)))
		return -1;
	for (int k = 0; k < (s->tdim ? 2 : 1); k++) {
		const float *a = k ? ds->t : ds->x;
		int64_t w = k ? ds->tdim : ds->d;
		int64_t at = first_overflow(a, ds->n, w, k ? s->target_mean : s->mean,
					    k ? s->target_std : s->std);
		if (at >= 0) {
			int64_t j = at % w;
			tg_fail(ctx, TG_EARG,
				"tg_standardiser_apply: row %lld, %s %lld: (%g - mean %g) / std %g "
				"is not finite in single precision",
				(long long)(at / w), k ? "target" : "feature", (long long)j,
				(double)a[at], ((const double *)tg_data(k ? s->target_mean : s->mean))[j],
				((const double *)tg_data(k ? s->target_std : s->std))[j]);
			return -1;
		}
	}
	standardise(ds->x, ds->n, ds->d, s->mean, s->std);
	if (s->tdim)
		standardise(ds->t, ds->n, ds->tdim, s->target_mean, s->target_std);
	return 0;
}

size_t tg_standardiser_tensors(const tg_standardiser *s, tg_tensor **out)
{
	size_t n = 0;
	if (!s || !s->mean)
		return 0;
	tg_tensor *all[4] = { s->mean, s->std, s->target_mean, s->target_std };
	for (int i = 0; i < 4; i++)
		if (all[i] && out)
			out[n++] = all[i];
		else if (all[i])
			n++;
	return n;
}
