/*
 * checkpoint.c - saving and loading named tensors (a model's parameters and
 * running statistics), atomically and with a CRC32.
 *
 * Format, version 1 (integers little-endian):
 *	"TGCKPT\0\0"                    8 bytes of magic
 *	u32 version                     1
 *	u32 count                       number of tensors
 *	count times:
 *	    u16 name length, name bytes (no terminating NUL)
 *	    u8 dtype                    0 f32, 1 f64
 *	    u8 ndim                     0..4
 *	    u64 shape[ndim]
 *	    data                        numel values of the dtype, little-endian
 *	u32 CRC32 (zlib's crc32) of every byte before it
 *
 * Save writes a temporary of its own ("<path>.tmp.<pid>.<random>", created
 * with O_EXCL, so threads and processes saving to one path never share one),
 * fsyncs it, renames it over path and fsyncs the directory: the file at path
 * is always either an old checkpoint or a whole new one. Temporaries left by
 * writers that died are removed by the next save to that path. A path that
 * is a symbolic link is written through: the link's target is replaced.
 * Load reads only regular files and the whole file, and checks all of it
 * against the model (NaN and Inf included) before it writes a single value;
 * a file never makes it allocate more than its size.
 * Tensors are matched by name, in any order.
 */
#include "tapegrad.h"
#include "tapegrad_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static const unsigned char MAGIC[8] = { 'T', 'G', 'C', 'K', 'P', 'T', 0, 0 };

/* Smallest file: magic, version, count, CRC. Smallest entry: name length 1,
 * one name byte, dtype, ndim. */
enum { HEAD_BYTES = 16, MIN_FILE = 20, MIN_ENTRY = 5, NAME_MAX_LEN = 65535 };

static bool usable(const tg_ctx *ctx)
{
	return ctx && tg_ok(ctx);
}

static bool little_endian(void)
{
	const uint16_t one = 1;
	return *(const unsigned char *)&one == 1;
}

static size_t dtype_size(int dt)
{
	return dt == TG_F64 ? sizeof(double) : sizeof(float);
}

static const char *dtype_name(int dt)
{
	return dt == TG_F64 ? "f64" : "f32";
}

/* Reverses the bytes of each of the n elements of size es in p. */
static void swap_bytes(unsigned char *p, size_t n, size_t es)
{
	for (size_t i = 0; i < n; i++, p += es)
		for (size_t a = 0, b = es - 1; a < b; a++, b--) {
			unsigned char c = p[a];
			p[a] = p[b];
			p[b] = c;
		}
}

static char *shape_str(int ndim, const int64_t *shape, char *buf, size_t size)
{
	int k = snprintf(buf, size, "(");
	for (int i = 0; i < ndim && k > 0 && (size_t)k < size; i++)
		k += snprintf(buf + k, size - (size_t)k, "%s%lld", i ? "," : "",
			      (long long)shape[i]);
	if (k > 0 && (size_t)k < size)
		snprintf(buf + k, size - (size_t)k, "%s)", ndim == 1 ? "," : "");
	return buf;
}

/* Checks the tensor list of a save or a load: every tensor alive, of ctx,
 * named, the names unique. */
static int check_list(tg_ctx *ctx, const char *who, const char *path, tg_tensor *const *t,
		      size_t n)
{
	if (!path || (n && !t)) {
		tg_fail(ctx, TG_ENULL, "%s: %s is NULL", who, !path ? "path" : "the tensor list");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!t[i]) {
			tg_fail(ctx, TG_ENULL, "%s: tensor %zu is NULL", who, i);
			return -1;
		}
		tg_ctx *owner = tg_ctx_of(t[i]);
		if (owner != ctx) {
			tg_fail(ctx, owner ? TG_ECTX : TG_ESTALE, "%s: tensor %zu %s", who, i,
				owner ? "belongs to another context"
				      : "was freed by tg_reset (or is not a tensor)");
			return -1;
		}
		const char *name = tg_name(t[i]);
		if (!name || !*name) {
			char buf[96];
			tg_fail(ctx, TG_EARG, "%s: tensor %zu %s has no name (tg_set_name)", who, i,
				shape_str(tg_ndim(t[i]), tg_shape(t[i]), buf, sizeof buf));
			return -1;
		}
		if (strlen(name) > NAME_MAX_LEN) {
			tg_fail(ctx, TG_EARG, "%s: tensor %zu has a name of %zu bytes, at most %d",
				who, i, strlen(name), NAME_MAX_LEN);
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(name, tg_name(t[j]))) {
				tg_fail(ctx, TG_EARG, "%s: tensors %zu and %zu are both named %s",
					who, j, i, name);
				return -1;
			}
	}
	return 0;
}

/* ---- save ------------------------------------------------------------------- */

typedef struct writer {
	FILE *f;
	uLong crc;
	int err; /* errno of the first failed write; 0 while all is well */
} writer;

static void put(writer *w, const void *p, size_t n)
{
	if (w->err || n == 0)
		return;
	errno = 0;
	if (fwrite(p, 1, n, w->f) != n) {
		w->err = errno ? errno : EIO;
		return;
	}
	w->crc = crc32_z(w->crc, p, n);
}

static void put_le(writer *w, uint64_t v, int bytes)
{
	unsigned char b[8];
	for (int i = 0; i < bytes; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	put(w, b, (size_t)bytes);
}

static void put_tensor(writer *w, const tg_tensor *t)
{
	const char *name = tg_name(t);
	size_t len = strlen(name);
	int ndim = tg_ndim(t);
	const int64_t *shape = tg_shape(t);
	tg_dtype dt = tg_dtype_of(t);
	size_t es = dtype_size(dt), bytes = tg_numel(t) * es;
	put_le(w, len, 2);
	put(w, name, len);
	put_le(w, (uint64_t)dt, 1);
	put_le(w, (uint64_t)ndim, 1);
	for (int i = 0; i < ndim; i++)
		put_le(w, (uint64_t)shape[i], 8);
	const unsigned char *data = tg_data(t);
	if (little_endian()) {
		put(w, data, bytes);
		return;
	}
	unsigned char buf[4096];
	for (size_t off = 0; off < bytes; off += sizeof buf) {
		size_t k = bytes - off < sizeof buf ? bytes - off : sizeof buf;
		memcpy(buf, data + off, k);
		swap_bytes(buf, k / es, es);
		put(w, buf, k);
	}
}

/* ---- where the bytes go ----------------------------------------------------- */

/* The file a save writes: path itself, or, when path is a symbolic link, the
 * file it finally points at (which may not exist yet), so the link stays a
 * link. malloc'd; NULL with errno set (ELOOP after too many links). */
static char *resolve_links(const char *path)
{
	char *p = strdup(path);
	for (int hops = 0; p && hops < 40; hops++) {
		struct stat st;
		if (lstat(p, &st) != 0 || !S_ISLNK(st.st_mode))
			return p; /* a file, a directory, or nothing yet */
		char target[PATH_MAX];
		ssize_t k = readlink(p, target, sizeof target - 1);
		if (k < 0) {
			free(p);
			return NULL;
		}
		target[k] = '\0';
		const char *slash = strrchr(p, '/');
		char *next;
		if (target[0] == '/' || !slash) {
			next = strdup(target);
		} else {
			size_t dir = (size_t)(slash - p) + 1;
			next = malloc(dir + (size_t)k + 1);
			if (next) {
				memcpy(next, p, dir);
				memcpy(next + dir, target, (size_t)k + 1);
			}
		}
		free(p);
		p = next;
	}
	if (p) {
		free(p);
		errno = ELOOP;
	}
	return NULL;
}

/* The directory part of path ("." when there is none); malloc'd. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
}

static const char *base_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* Removes the temporary files "<base>.tmp.<pid>[.<any>]" in dir whose writer
 * process no longer exists: what a save killed mid-write leaves behind.
 * Temporaries of live processes (this one's other threads included) stay.
 * A writer in another PID namespace sharing the directory looks dead from
 * here; such writers should save to paths of their own. */
static void remove_leftovers(const char *dir, const char *base)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	size_t blen = strlen(base);
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *s = e->d_name;
		if (strncmp(s, base, blen) != 0 || strncmp(s + blen, ".tmp.", 5) != 0)
			continue;
		char *end;
		errno = 0;
		long pid = strtol(s + blen + 5, &end, 10);
		if (errno || end == s + blen + 5 || pid <= 0 || pid > INT_MAX ||
		    (*end != '\0' && *end != '.'))
			continue;
		if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		unlinkat(dirfd(d), s, 0);
	}
	closedir(d);
}

/* Creates "<final>.tmp.<pid>.<6 hex digits>", a name no other thread or
 * process uses, like mkstemp but with the usual 0666 & ~umask permissions.
 * Fills tmp (size bytes); the fd, or -1 with errno set. */
static int create_temp(const char *final, char *tmp, size_t size)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t r = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^ (uintptr_t)tmp ^
		     (uint64_t)ts.tv_sec << 20;
	for (int tries = 0; tries < 100; tries++) {
		r = r * 6364136223846793005u + 1442695040888963407u;
		int k = snprintf(tmp, size, "%s.tmp.%ld.%06x", final, (long)getpid(),
				 (unsigned)(r >> 40) & 0xffffff);
		if (k < 0 || (size_t)k >= size) {
			errno = ENAMETOOLONG;
			return -1;
		}
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	errno = EEXIST;
	return -1;
}

/* Makes the rename durable: fsync of the directory that holds the file.
 * Filesystems that cannot sync a directory (EINVAL) are let be. 0 or errno. */
static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int err = fsync(fd) != 0 && errno != EINVAL && errno != EROFS ? errno : 0;
	close(fd);
	return err;
}

/* Writes the whole file to the open fd; 0 ok, else the errno of the failure.
 * Closes fd. */
static int write_file(int fd, tg_tensor *const *t, size_t n)
{
	FILE *f = fdopen(fd, "wb");
	if (!f) {
		int err = errno;
		close(fd);
		return err;
	}
	writer w = { .f = f, .crc = crc32(0, NULL, 0) };
	put(&w, MAGIC, sizeof MAGIC);
	put_le(&w, TG_CHECKPOINT_VERSION, 4);
	put_le(&w, n, 4);
	for (size_t i = 0; i < n; i++)
		put_tensor(&w, t[i]);
	put_le(&w, w.crc, 4);
	errno = 0;
	if (!w.err && fflush(f) != 0)
		w.err = errno ? errno : EIO;
	if (!w.err && fsync(fileno(f)) != 0)
		w.err = errno ? errno : EIO;
	errno = 0;
	if (fclose(f) != 0 && !w.err)
		w.err = errno ? errno : EIO;
	return w.err;
}

int tg_checkpoint_save(tg_ctx *ctx, const char *path, tg_tensor *const *t, size_t n)
{
	if (!usable(ctx))
		return -1;
	if (check_list(ctx, "tg_checkpoint_save", path, t, n))
		return -1;
	if (n > UINT32_MAX) {
		tg_fail(ctx, TG_EARG, "tg_checkpoint_save: %zu tensors, at most %u", n, UINT32_MAX);
		return -1;
	}
	char *final = resolve_links(path);
	if (!final) {
		tg_fail(ctx, TG_EIO, "%s: cannot resolve the path: %s", path, strerror(errno));
		return -1;
	}
	char *dir = dir_of(final);
	size_t size = strlen(final) + 48;
	char *tmp = malloc(size);
	int rc = -1;
	if (!dir || !tmp) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", path);
		goto out_free;
	}
	remove_leftovers(dir, base_of(final));
	int fd = create_temp(final, tmp, size);
	if (fd < 0) {
		tg_fail(ctx, TG_EIO, "%s: cannot write checkpoint (creating a temporary in %s): %s",
			path, dir, strerror(errno));
		goto out_free;
	}
	struct stat st;
	if (stat(final, &st) == 0 && S_ISREG(st.st_mode))
		fchmod(fd, st.st_mode & 07777); /* the old file's permissions carry over */
	int err = write_file(fd, t, n);
	if (!err && rename(tmp, final) != 0)
		err = errno;
	if (err) {
		unlink(tmp);
		tg_fail(ctx, TG_EIO, "%s: cannot write checkpoint (via %s): %s", path, tmp,
			strerror(err));
		goto out_free;
	}
	err = sync_dir(dir);
	if (err) {
		tg_fail(ctx, TG_EIO, "%s: written, but syncing its directory %s failed: %s", path,
			dir, strerror(err));
		goto out_free;
	}
	rc = 0;
out_free:
	free(tmp);
	free(dir);
	free(final);
	return rc;
}

/* ---- load ------------------------------------------------------------------- */

/* One tensor as the file describes it; data points into the file's bytes. */
typedef struct entry {
	const char *name; /* not NUL-terminated */
	int len;
	int dtype;
	int ndim;
	int64_t shape[TG_MAX_DIMS];
	const unsigned char *data;
	size_t bytes;
} entry;

typedef struct reader {
	const unsigned char *p, *end;
} reader;

static uint64_t get_le(reader *r, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)r->p[i] << (8 * i);
	r->p += bytes;
	return v;
}

static size_t left(const reader *r)
{
	return (size_t)(r->end - r->p);
}

/* What a non-regular file is, for the message that refuses it. */
static const char *file_kind(mode_t m)
{
	return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO (named pipe)" :
	       S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" :
	       S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* The whole file in a malloc'd buffer. Only a regular file is read: the open
 * does not block (a FIFO without a writer would wait forever) and fstat
 * refuses anything else before a byte is read. NULL after recording the
 * error. */
static unsigned char *read_file(tg_ctx *ctx, const char *path, size_t *size)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		tg_fail(ctx, TG_EIO, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	unsigned char *buf = NULL;
	if (fstat(fd, &st) != 0) {
		tg_fail(ctx, TG_EIO, "%s: cannot stat: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		tg_fail(ctx, TG_EIO, "%s: is %s, not a regular file; a checkpoint is a file", path,
			file_kind(st.st_mode));
		goto out_close;
	}
	if (st.st_size < MIN_FILE) {
		tg_fail(ctx, TG_EFORMAT, "%s: truncated: %lld bytes, a checkpoint has at least %d",
			path, (long long)st.st_size, MIN_FILE);
		goto out_close;
	}
	if ((uint64_t)st.st_size > SIZE_MAX / 2) {
		tg_fail(ctx, TG_EFORMAT, "%s: %lld bytes is too large", path,
			(long long)st.st_size);
		goto out_close;
	}
	*size = (size_t)st.st_size;
	buf = malloc(*size);
	if (!buf) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory reading %zu bytes", path, *size);
		goto out_close;
	}
	size_t got = 0;
	while (got < *size) {
		ssize_t r = read(fd, buf + got, *size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			tg_fail(ctx, TG_EIO, "%s: read failed: %s", path,
				r < 0 ? strerror(errno) : "the file shrank while being read");
			free(buf);
			buf = NULL;
			break;
		}
		got += (size_t)r;
	}
out_close:
	close(fd);
	return buf;
}

/* Reads entry i from r, checking every size against the bytes left. */
static int parse_entry(tg_ctx *ctx, const char *path, uint32_t i, reader *r, entry *e)
{
	if (left(r) < 2)
		goto out_short;
	e->len = (int)get_le(r, 2);
	if (e->len == 0) {
		tg_fail(ctx, TG_EFORMAT, "%s: tensor %u has an empty name", path, i);
		return -1;
	}
	if (left(r) < (size_t)e->len + 2)
		goto out_short;
	e->name = (const char *)r->p;
	r->p += e->len;
	e->dtype = (int)get_le(r, 1);
	e->ndim = (int)get_le(r, 1);
	if (e->dtype != TG_F32 && e->dtype != TG_F64) {
		tg_fail(ctx, TG_EFORMAT, "%s: tensor %.*s has unknown dtype %d", path, e->len,
			e->name, e->dtype);
		return -1;
	}
	if (e->ndim > TG_MAX_DIMS) {
		tg_fail(ctx, TG_EFORMAT, "%s: tensor %.*s has %d dimensions, at most %d", path,
			e->len, e->name, e->ndim, TG_MAX_DIMS);
		return -1;
	}
	if (left(r) < 8 * (size_t)e->ndim)
		goto out_short;
	/* numel * size may not exceed the bytes left: no overflow, no absurd size. */
	size_t es = dtype_size(e->dtype), bytes = es, room = left(r) - 8 * (size_t)e->ndim;
	bool fits = true;
	for (int k = 0; k < e->ndim; k++) {
		uint64_t dim = get_le(r, 8);
		e->shape[k] = dim > INT64_MAX ? -1 : (int64_t)dim;
		if (dim && bytes > room / dim)
			fits = false;
		else
			bytes *= dim;
	}
	if (!fits || bytes > room) {
		char buf[128];
		tg_fail(ctx, TG_EFORMAT,
			"%s: truncated or corrupted: tensor %.*s of shape %s does not fit in the "
			"%zu bytes left",
			path, e->len, e->name, shape_str(e->ndim, e->shape, buf, sizeof buf), room);
		return -1;
	}
	e->data = r->p;
	e->bytes = bytes;
	r->p += bytes;
	return 0;

out_short:
	tg_fail(ctx, TG_EFORMAT, "%s: truncated: tensor %u of the file ends early", path, i);
	return -1;
}

/* Checks the file's framing and CRC and lists its tensors. */
static entry *parse_file(tg_ctx *ctx, const char *path, const unsigned char *buf, size_t size,
			 uint32_t *count)
{
	if (memcmp(buf, MAGIC, sizeof MAGIC) != 0) {
		tg_fail(ctx, TG_EFORMAT, "%s: not a tapegrad checkpoint (wrong magic)", path);
		return NULL;
	}
	reader r = { buf + sizeof MAGIC, buf + size - 4 };
	uint32_t version = (uint32_t)get_le(&r, 4);
	if (version != TG_CHECKPOINT_VERSION) {
		tg_fail(ctx, TG_EFORMAT, "%s: format version %u, this library reads version %d",
			path, version, TG_CHECKPOINT_VERSION);
		return NULL;
	}
	*count = (uint32_t)get_le(&r, 4);
	if (*count > left(&r) / MIN_ENTRY) {
		tg_fail(ctx, TG_EFORMAT,
			"%s: truncated or corrupted: %u tensors cannot fit in %zu bytes", path,
			*count, size);
		return NULL;
	}
	entry *e = calloc(*count ? *count : 1, sizeof *e);
	if (!e) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory for %u tensors", path, *count);
		return NULL;
	}
	for (uint32_t i = 0; i < *count; i++)
		if (parse_entry(ctx, path, i, &r, &e[i]))
			goto out_free;
	if (left(&r)) {
		tg_fail(ctx, TG_EFORMAT, "%s: %zu unexpected bytes after the last tensor", path,
			left(&r));
		goto out_free;
	}
	reader tail = { buf + size - 4, buf + size };
	uint32_t stored = (uint32_t)get_le(&tail, 4);
	uint32_t actual = (uint32_t)crc32_z(crc32(0, NULL, 0), buf, size - 4);
	if (stored != actual) {
		tg_fail(ctx, TG_EFORMAT,
			"%s: CRC32 mismatch: the file says 0x%08x, its contents give 0x%08x "
			"(corrupted)",
			path, (unsigned)stored, (unsigned)actual);
		goto out_free;
	}
	return e;

out_free:
	free(e);
	return NULL;
}

static bool same_name(const entry *e, const char *name)
{
	return strlen(name) == (size_t)e->len && !memcmp(e->name, name, (size_t)e->len);
}

/* Pairs each target with its entry (by name) and checks dtype and shape;
 * fills match[i] with the entry index for t[i]. */
static int match_entries(tg_ctx *ctx, const char *path, const entry *e, uint32_t count,
			 tg_tensor *const *t, size_t n, uint32_t *match)
{
	if (count != n) {
		tg_fail(ctx, TG_EFORMAT, "%s: the file has %u tensors, the model %zu", path, count,
			n);
		return -1;
	}
	for (uint32_t j = 0; j < count; j++)
		for (uint32_t k = 0; k < j; k++)
			if (e[k].len == e[j].len &&
			    !memcmp(e[k].name, e[j].name, (size_t)e[j].len)) {
				tg_fail(ctx, TG_EFORMAT,
					"%s: tensor %.*s appears twice in the file", path, e[j].len,
					e[j].name);
				return -1;
			}
	for (size_t i = 0; i < n; i++) {
		const char *name = tg_name(t[i]);
		uint32_t j = 0;
		while (j < count && !same_name(&e[j], name))
			j++;
		if (j == count) {
			tg_fail(ctx, TG_EFORMAT, "%s: tensor %s is not in the file", path, name);
			return -1;
		}
		tg_dtype dt = tg_dtype_of(t[i]);
		if (e[j].dtype != (int)dt) {
			tg_fail(ctx, TG_EFORMAT, "%s: tensor %s is %s in the file, %s in the model",
				path, name, dtype_name(e[j].dtype), dtype_name(dt));
			return -1;
		}
		int ndim = tg_ndim(t[i]);
		const int64_t *shape = tg_shape(t[i]);
		bool same = e[j].ndim == ndim;
		for (int k = 0; same && k < ndim; k++)
			same = e[j].shape[k] == shape[k];
		if (!same) {
			char a[128], b[128];
			tg_fail(ctx, TG_EFORMAT,
				"%s: tensor %s has shape %s in the file, %s in the model", path,
				name, shape_str(e[j].ndim, e[j].shape, a, sizeof a),
				shape_str(ndim, shape, b, sizeof b));
			return -1;
		}
		match[i] = j;
	}
	return 0;
}

/* The index of the first NaN or Inf among an entry's values, or -1. */
static int64_t first_nonfinite(const entry *e)
{
	size_t es = dtype_size(e->dtype), n = e->bytes / es;
	for (size_t i = 0; i < n; i++) {
		unsigned char b[8];
		memcpy(b, e->data + i * es, es);
		if (!little_endian())
			swap_bytes(b, 1, es);
		double v;
		if (es == sizeof(double)) {
			memcpy(&v, b, sizeof v);
		} else {
			float f;
			memcpy(&f, b, sizeof f);
			v = f;
		}
		if (!isfinite(v))
			return (int64_t)i;
	}
	return -1;
}

/* A model of NaN or Inf would only make NaN: refused unless asked for. */
static int check_finite(tg_ctx *ctx, const char *path, const entry *e, const uint32_t *match,
			size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const entry *src = &e[match[i]];
		int64_t k = first_nonfinite(src);
		if (k < 0)
			continue;
		size_t es = dtype_size(src->dtype);
		double v;
		if (es == sizeof(double)) {
			memcpy(&v, src->data + (size_t)k * es, es);
		} else {
			float f;
			memcpy(&f, src->data + (size_t)k * es, es);
			v = f;
		}
		tg_fail(ctx, TG_EFORMAT,
			"%s: tensor %.*s holds %s at index %lld of %zu (saved from a run that "
			"diverged?); load it anyway with TG_CHECKPOINT_NONFINITE",
			path, src->len, src->name, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf",
			(long long)k, src->bytes / es);
		return -1;
	}
	return 0;
}

int tg_checkpoint_load(tg_ctx *ctx, const char *path, tg_tensor *const *t, size_t n)
{
	return tg_checkpoint_load_flags(ctx, path, t, n, 0);
}

int tg_checkpoint_load_flags(tg_ctx *ctx, const char *path, tg_tensor *const *t, size_t n,
			     unsigned flags)
{
	if (!usable(ctx))
		return -1;
	if (check_list(ctx, "tg_checkpoint_load", path, t, n))
		return -1;
	if (flags & ~(unsigned)TG_CHECKPOINT_NONFINITE) {
		tg_fail(ctx, TG_EARG, "tg_checkpoint_load_flags: unknown flags 0x%x", flags);
		return -1;
	}
	size_t size;
	uint32_t count;
	uint32_t *match = NULL;
	entry *e = NULL;
	int rc = -1;
	unsigned char *buf = read_file(ctx, path, &size);
	if (!buf)
		return -1;
	e = parse_file(ctx, path, buf, size, &count);
	if (!e)
		goto out_free;
	match = malloc((n ? n : 1) * sizeof *match);
	if (!match) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", path);
		goto out_free;
	}
	if (match_entries(ctx, path, e, count, t, n, match))
		goto out_free;
	if (!(flags & TG_CHECKPOINT_NONFINITE) && check_finite(ctx, path, e, match, n))
		goto out_free;
	/* Everything checked: only now touch the model. */
	for (size_t i = 0; i < n; i++) {
		const entry *src = &e[match[i]];
		unsigned char *dst = tg_data_mut(t[i]);
		if (!dst)
			goto out_free;
		memcpy(dst, src->data, src->bytes);
		if (!little_endian())
			swap_bytes(dst, src->bytes / dtype_size(src->dtype),
				   dtype_size(src->dtype));
	}
	rc = 0;
out_free:
	free(match);
	free(e);
	free(buf);
	return rc;
}
