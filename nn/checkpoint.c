/*
 * checkpoint.c - saving and loading named tensors and the numbers and strings
 * a run needs to resume, atomically and with a CRC32; and an export of
 * tensors as NumPy's .npz.
 *
 * Format, version 2 (integers little-endian):
 *	"TGCKPT\0\0"                    8 bytes of magic
 *	u32 version                     2
 *	u32 count                       number of tensors
 *	u32 entries                     number of metadata entries
 *	entries times:
 *	    u16 key length, key bytes (no terminating NUL)
 *	    u8 kind                     0 f64 numbers, 1 i64 numbers, 2 a string
 *	    u32 n                       numbers, or string bytes (no NUL in them)
 *	    n * 8 bytes, or n bytes
 *	count times:
 *	    u16 name length, name bytes (no terminating NUL)
 *	    u8 dtype                    0 f32, 1 f64, 2 i32, 3 i64
 *	    u8 ndim                     0..8
 *	    u64 shape[ndim]
 *	    data                        numel values of the dtype, little-endian
 *	u32 CRC32 (zlib's crc32) of every byte before it
 * Version 1 is the same without the metadata (no entries field), with f32
 * and f64 tensors of at most 4 dimensions; it still loads.
 *
 * Save writes a temporary of its own ("<path>.tmp.<pid>.<random>", the
 * name cut short to fit in NAME_MAX, created with O_EXCL, so threads and processes saving to one path never share one),
 * fsyncs it, renames it over path and fsyncs the directory: the file at path
 * is always either an old checkpoint or a whole new one. Temporaries left by
 * writers that died are removed by the next save to that path. A path that
 * is a symbolic link is written through: the link's target is replaced.
 * Read takes only regular files and the whole file, and checks all of it
 * before it returns anything; loading into a model checks every match
 * (NaN and Inf included) before it writes a single value; a file never
 * makes it allocate more than a small multiple of its size.
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
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static const unsigned char MAGIC[8] = { 'T', 'G', 'C', 'K', 'P', 'T', 0, 0 };

/* Smallest file: magic, version, count, CRC. Smallest entry: name length 1,
 * one name byte, dtype, ndim; smallest metadata entry: key length, one key
 * byte, kind, n. */
enum {
	HEAD_BYTES = 16,
	MIN_FILE = 20,
	MIN_ENTRY = 5,
	MIN_META = 8,
	NAME_MAX_LEN = 65535,
	V1_MAX_DIMS = 4,
};

enum { META_F64, META_I64, META_STR };

static bool usable(const tg_ctx *ctx)
{
	return ctx && tg_ok(ctx);
}

static bool little_endian(void)
{
	const uint16_t one = 1;
	return *(const unsigned char *)&one == 1;
}

static bool known_dtype(int dt)
{
	return dt == TG_F32 || dt == TG_F64 || dt == TG_I32 || dt == TG_I64;
}

static size_t dtype_size(int dt)
{
	return dt == TG_F64 || dt == TG_I64 ? 8 : 4;
}

static const char *dtype_name(int dt)
{
	return dt == TG_F64 ? "f64" : dt == TG_I32 ? "i32" : dt == TG_I64 ? "i64" : "f32";
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

/* Checks one tensor of a list: alive, of ctx, named, the name not too long. */
static int check_tensor(tg_ctx *ctx, const char *who, const tg_tensor *t, size_t i)
{
	if (!t) {
		tg_fail(ctx, TG_ENULL, "%s: tensor %zu is NULL", who, i);
		return -1;
	}
	tg_ctx *owner = tg_ctx_of(t);
	if (owner != ctx) {
		tg_fail(ctx, owner ? TG_ECTX : TG_ESTALE, "%s: tensor %zu %s", who, i,
			owner ? "belongs to another context"
			      : "was freed by tg_reset (or is not a tensor)");
		return -1;
	}
	const char *name = tg_name(t);
	if (!name || !*name) {
		char buf[96];
		tg_fail(ctx, TG_EARG, "%s: tensor %zu %s has no name (tg_set_name)", who, i,
			shape_str(tg_ndim(t), tg_shape(t), buf, sizeof buf));
		return -1;
	}
	if (strlen(name) > NAME_MAX_LEN) {
		tg_fail(ctx, TG_EARG, "%s: tensor %zu has a name of %zu bytes, at most %d", who, i,
			strlen(name), NAME_MAX_LEN);
		return -1;
	}
	return 0;
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
		if (check_tensor(ctx, who, t[i], i))
			return -1;
		const char *name = tg_name(t[i]);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(name, tg_name(t[j]))) {
				tg_fail(ctx, TG_EARG, "%s: tensors %zu and %zu are both named %s",
					who, j, i, name);
				return -1;
			}
	}
	return 0;
}

/* ---- states: named tensors, numbers and strings ------------------------------ */

typedef struct item {
	char *name;                 /* malloc'd */
	tg_tensor *t;               /* an added tensor (borrowed), or NULL: read */
	int dtype;
	int ndim;
	int64_t shape[TG_MAX_DIMS];
	const unsigned char *data;  /* read: into the state's buffer, little-endian */
	size_t bytes;
} item;

typedef struct meta {
	char *key;   /* malloc'd */
	int kind;    /* META_F64, META_I64, META_STR */
	size_t n;    /* numbers, or the string's bytes */
	void *v;     /* malloc'd: n doubles, n int64_t, or n + 1 chars */
} meta;

struct tg_state {
	tg_ctx *ctx;
	char *path;          /* the file it was read from; NULL when built */
	unsigned char *buf;  /* the file's bytes, which read items point into */
	item *items;
	size_t n, cap;
	meta *meta;
	size_t nmeta, cmeta;
};

tg_state *tg_state_new(tg_ctx *ctx)
{
	if (!usable(ctx))
		return NULL;
	tg_state *s = calloc(1, sizeof *s);
	if (!s)
		return tg_fail(ctx, TG_ENOMEM, "tg_state_new: out of memory");
	s->ctx = ctx;
	return s;
}

void tg_state_free(tg_state *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->items[i].name);
	for (size_t i = 0; i < s->nmeta; i++) {
		free(s->meta[i].key);
		free(s->meta[i].v);
	}
	free(s->items);
	free(s->meta);
	free(s->buf);
	free(s->path);
	free(s);
}

static item *find_item(const tg_state *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->items[i].name, name))
			return &s->items[i];
	return NULL;
}

static meta *find_meta(const tg_state *s, const char *key)
{
	for (size_t i = 0; s && key && i < s->nmeta; i++)
		if (!strcmp(s->meta[i].key, key))
			return &s->meta[i];
	return NULL;
}

/* Room for one more item or metadata entry; false on out of memory. */
static bool grow(void **p, size_t *cap, size_t n, size_t es)
{
	if (n < *cap)
		return true;
	size_t c = *cap ? 2 * *cap : 16;
	void *q = realloc(*p, c * es);
	if (!q)
		return false;
	*p = q;
	*cap = c;
	return true;
}

int tg_state_add(tg_state *s, tg_tensor *const *t, size_t n)
{
	if (!s || !usable(s->ctx))
		return -1;
	tg_ctx *ctx = s->ctx;
	if (check_list(ctx, "tg_state_add", "", t, n))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (find_item(s, tg_name(t[i]))) {
			tg_fail(ctx, TG_EARG, "tg_state_add: tensor %zu: the state already holds "
					      "a tensor named %s", i, tg_name(t[i]));
			return -1;
		}
	if (s->n + n > UINT32_MAX) {
		tg_fail(ctx, TG_EARG, "tg_state_add: %zu tensors, at most %u", s->n + n,
			UINT32_MAX);
		return -1;
	}
	size_t n0 = s->n;
	for (size_t i = 0; i < n; i++) {
		char *name = strdup(tg_name(t[i]));
		if (!name || !grow((void **)&s->items, &s->cap, s->n, sizeof *s->items)) {
			free(name);
			while (s->n > n0)
				free(s->items[--s->n].name);
			tg_fail(ctx, TG_ENOMEM, "tg_state_add: out of memory");
			return -1;
		}
		item *it = &s->items[s->n++];
		*it = (item){ .name = name, .t = t[i], .dtype = (int)tg_dtype_of(t[i]),
			      .ndim = tg_ndim(t[i]) };
		memcpy(it->shape, tg_shape(t[i]), (size_t)it->ndim * sizeof *it->shape);
	}
	return 0;
}

/* Sets key to n values of kind (copied), replacing what it held. */
static int set_meta(tg_state *s, const char *who, const char *key, int kind, const void *v,
		    size_t n)
{
	if (!s || !usable(s->ctx))
		return -1;
	tg_ctx *ctx = s->ctx;
	if (!key || (!v && (n || kind == META_STR))) {
		tg_fail(ctx, TG_ENULL, "%s: %s is NULL", who, !key ? "key" : "the value");
		return -1;
	}
	if (!*key || strlen(key) > NAME_MAX_LEN) {
		tg_fail(ctx, TG_EARG, "%s: a key of %zu bytes; 1 to %d", who, strlen(key),
			NAME_MAX_LEN);
		return -1;
	}
	if (n > UINT32_MAX / 8) {
		tg_fail(ctx, TG_EARG, "%s: %s: %zu values, at most %u", who, key, n,
			UINT32_MAX / 8);
		return -1;
	}
	size_t bytes = kind == META_STR ? n + 1 : n * 8;
	void *copy = malloc(bytes ? bytes : 1);
	if (!copy) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", who);
		return -1;
	}
	if (n)
		memcpy(copy, v, kind == META_STR ? n : bytes);
	if (kind == META_STR)
		((char *)copy)[n] = '\0';
	meta *m = find_meta(s, key);
	if (!m) {
		char *k = strdup(key);
		if (!k || !grow((void **)&s->meta, &s->cmeta, s->nmeta, sizeof *s->meta)) {
			free(k);
			free(copy);
			tg_fail(ctx, TG_ENOMEM, "%s: out of memory", who);
			return -1;
		}
		m = &s->meta[s->nmeta++];
		*m = (meta){ .key = k };
	}
	free(m->v);
	m->kind = kind;
	m->n = n;
	m->v = copy;
	return 0;
}

int tg_state_set_string(tg_state *s, const char *key, const char *value)
{
	return set_meta(s, "tg_state_set_string", key, META_STR, value, value ? strlen(value) : 0);
}

int tg_state_set_f64(tg_state *s, const char *key, const double *v, size_t n)
{
	return set_meta(s, "tg_state_set_f64", key, META_F64, v, n);
}

int tg_state_set_i64(tg_state *s, const char *key, const int64_t *v, size_t n)
{
	return set_meta(s, "tg_state_set_i64", key, META_I64, v, n);
}

const char *tg_state_string(const tg_state *s, const char *key)
{
	const meta *m = find_meta(s, key);
	return m && m->kind == META_STR ? m->v : NULL;
}

static int64_t get_meta(const tg_state *s, const char *key, int kind, void *out, size_t n)
{
	const meta *m = find_meta(s, key);
	if (!m || m->kind != kind)
		return -1;
	if (out)
		memcpy(out, m->v, 8 * (m->n < n ? m->n : n));
	return (int64_t)m->n;
}

int64_t tg_state_f64(const tg_state *s, const char *key, double *out, size_t n)
{
	return get_meta(s, key, META_F64, out, n);
}

int64_t tg_state_i64(const tg_state *s, const char *key, int64_t *out, size_t n)
{
	return get_meta(s, key, META_I64, out, n);
}

size_t tg_state_count(const tg_state *s)
{
	return s ? s->n : 0;
}

const char *tg_state_name(const tg_state *s, size_t i)
{
	return s && i < s->n ? s->items[i].name : NULL;
}

/* An item's bytes: an added tensor's current data, or the file's. */
static const unsigned char *item_data(const item *it)
{
	return it->t ? tg_data(it->t) : it->data;
}

static size_t item_bytes(const item *it)
{
	return it->t ? tg_numel(it->t) * dtype_size(it->dtype) : it->bytes;
}

/* Checks that the added tensors are still alive, as they were when added. */
static int check_items(const tg_state *s, const char *who)
{
	for (size_t i = 0; i < s->n; i++) {
		const item *it = &s->items[i];
		if (it->t && tg_ctx_of(it->t) != s->ctx) {
			tg_fail(s->ctx, TG_ESTALE,
				"%s: tensor %s was freed by tg_reset after tg_state_add", who,
				it->name);
			return -1;
		}
	}
	return 0;
}

tg_tensor *tg_state_tensor(tg_state *s, const char *name)
{
	if (!s || !usable(s->ctx))
		return NULL;
	if (!name)
		return tg_fail(s->ctx, TG_ENULL, "tg_state_tensor: name is NULL");
	const item *it = find_item(s, name);
	if (!it)
		return tg_fail(s->ctx, TG_EARG, "tg_state_tensor: %s holds no tensor %s",
			       s->path ? s->path : "the state", name);
	if (check_items(s, "tg_state_tensor"))
		return NULL;
	tg_tensor *t = tg_empty(s->ctx, (tg_dtype)it->dtype, it->ndim, it->shape);
	unsigned char *dst = t ? tg_data_mut(t) : NULL;
	if (!dst)
		return NULL;
	size_t bytes = item_bytes(it);
	memcpy(dst, item_data(it), bytes);
	if (!it->t && !little_endian())
		swap_bytes(dst, bytes / dtype_size(it->dtype), dtype_size(it->dtype));
	return tg_set_name(t, name);
}

void tg_state_rng(tg_state *s)
{
	if (!s || !usable(s->ctx))
		return;
	uint64_t r[4];
	tg_rng_state(s->ctx, r);
	int64_t v[4];
	for (int i = 0; i < 4; i++)
		v[i] = (int64_t)r[i];
	tg_state_set_i64(s, "rng", v, 4);
}

int tg_state_restore_rng(const tg_state *s, tg_ctx *ctx)
{
	if (!usable(ctx))
		return -1;
	if (!s) {
		tg_fail(ctx, TG_ENULL, "tg_state_restore_rng: the state is NULL");
		return -1;
	}
	int64_t v[4];
	if (tg_state_i64(s, "rng", v, 4) != 4) {
		tg_fail(ctx, TG_EARG, "tg_state_restore_rng: %s holds no generator state "
				      "(\"rng\", 4 integers)", s->path ? s->path : "the state");
		return -1;
	}
	uint64_t r[4];
	for (int i = 0; i < 4; i++)
		r[i] = (uint64_t)v[i];
	return tg_rng_set_state(ctx, r);
}

/* ---- save ------------------------------------------------------------------- */

typedef struct writer {
	FILE *f;
	uLong crc;
	uint64_t pos; /* bytes written */
	int err;      /* errno of the first failed write; 0 while all is well */
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
	w->pos += n;
}

static void put_le(writer *w, uint64_t v, int bytes)
{
	unsigned char b[8];
	for (int i = 0; i < bytes; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	put(w, b, (size_t)bytes);
}

/* Calls fn on the bytes of data (elements of es bytes) in little-endian
 * order: as they are on a little-endian machine, else swapped in pieces. */
static void le_chunks(const unsigned char *data, size_t bytes, size_t es,
		      void (*fn)(void *arg, const unsigned char *p, size_t n), void *arg)
{
	if (little_endian()) {
		fn(arg, data, bytes);
		return;
	}
	unsigned char buf[4096];
	for (size_t off = 0; off < bytes; off += sizeof buf) {
		size_t k = bytes - off < sizeof buf ? bytes - off : sizeof buf;
		memcpy(buf, data + off, k);
		swap_bytes(buf, k / es, es);
		fn(arg, buf, k);
	}
}

static void put_chunk(void *arg, const unsigned char *p, size_t n)
{
	put(arg, p, n);
}

/* A tensor as the file stores it; read items are little-endian already. */
static void put_item(writer *w, const item *it)
{
	size_t len = strlen(it->name);
	put_le(w, len, 2);
	put(w, it->name, len);
	put_le(w, (uint64_t)it->dtype, 1);
	put_le(w, (uint64_t)it->ndim, 1);
	for (int i = 0; i < it->ndim; i++)
		put_le(w, (uint64_t)it->shape[i], 8);
	if (it->t)
		le_chunks(item_data(it), item_bytes(it), dtype_size(it->dtype), put_chunk, w);
	else
		put(w, it->data, it->bytes);
}

static void put_meta(writer *w, const meta *m)
{
	size_t len = strlen(m->key);
	put_le(w, len, 2);
	put(w, m->key, len);
	put_le(w, (uint64_t)m->kind, 1);
	put_le(w, m->n, 4);
	if (m->kind == META_STR)
		put(w, m->v, m->n);
	else
		le_chunks(m->v, 8 * m->n, 8, put_chunk, w);
}

static void write_state(writer *w, const void *arg)
{
	const tg_state *s = arg;
	put(w, MAGIC, sizeof MAGIC);
	put_le(w, TG_CHECKPOINT_VERSION, 4);
	put_le(w, s->n, 4);
	put_le(w, s->nmeta, 4);
	for (size_t i = 0; i < s->nmeta; i++)
		put_meta(w, &s->meta[i]);
	for (size_t i = 0; i < s->n; i++)
		put_item(w, &s->items[i]);
	put_le(w, w->crc, 4);
}

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

/* The bytes of a file's name that its temporaries' names begin with: all
 * of them, or the first TEMP_STEM of a longer one, so that the temporary's
 * name (".tmp.<pid>.<6 hex digits>" added) fits in NAME_MAX, as the final
 * name does. */
enum { TEMP_STEM = NAME_MAX - 32 };

static size_t temp_stem(const char *base)
{
	size_t n = strlen(base);
	return n < TEMP_STEM ? n : TEMP_STEM;
}

/* The writer's pid of s when s is a temporary's name as create_temp makes
 * them, "<stem>.tmp.<pid>.<6 hex digits>" with stem the first blen bytes
 * of base; else 0. */
static long temp_writer(const char *s, const char *base, size_t blen)
{
	if (strncmp(s, base, blen) != 0 || strncmp(s + blen, ".tmp.", 5) != 0)
		return 0;
	s += blen + 5;
	long pid = 0;
	const char *digits = s;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (pid > INT_MAX / 10)
			return 0;
		pid = pid * 10 + (*s - '0');
	}
	if (s == digits || *s != '.')
		return 0;
	s++;
	for (int i = 0; i < 6; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[6] == '\0' && pid <= INT_MAX ? pid : 0;
}

/* Removes the temporary files in dir whose writer process no longer
 * exists: what a save killed mid-write leaves behind. Only regular files
 * named exactly as create_temp names them go; a file of the user's that
 * only begins so ("<stem>.tmp.3.txt") stays. Temporaries of live processes
 * (this one's other threads included) stay. A writer in another PID
 * namespace sharing the directory looks dead from here; such writers
 * should save to paths of their own. */
static void remove_leftovers(const char *dir, const char *base)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	size_t blen = temp_stem(base);
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *s = e->d_name;
		long pid = temp_writer(s, base, blen);
		if (pid <= 0)
			continue;
		if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), s, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
			unlinkat(dirfd(d), s, 0);
	}
	closedir(d);
}

/* Creates "<stem>.tmp.<pid>.<6 hex digits>" beside final (temp_stem), a
 * name no other thread or process uses, like mkstemp but with the usual
 * 0666 & ~umask permissions.
 * Fills tmp (size bytes); the fd, or -1 with errno set. */
static int create_temp(const char *final, char *tmp, size_t size)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t r = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^ (uintptr_t)tmp ^
		     (uint64_t)ts.tv_sec << 20;
	const char *base = base_of(final);
	int keep = (int)(base - final + (ptrdiff_t)temp_stem(base));
	for (int tries = 0; tries < 100; tries++) {
		r = r * 6364136223846793005u + 1442695040888963407u;
		int k = snprintf(tmp, size, "%.*s.tmp.%ld.%06x", keep, final, (long)getpid(),
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

/* Writes the whole file to the open fd with body; 0 ok, else the errno of
 * the failure. Closes fd. */
static int write_file(int fd, void (*body)(writer *w, const void *arg), const void *arg)
{
	FILE *f = fdopen(fd, "wb");
	if (!f) {
		int err = errno;
		close(fd);
		return err;
	}
	writer w = { .f = f, .crc = crc32(0, NULL, 0) };
	body(&w, arg);
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

/* What a non-regular file is, for the message that refuses it. */
static const char *file_kind(mode_t m)
{
	return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO (named pipe)" :
	       S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" :
	       S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* Writes a file at path atomically: body writes its bytes into a temporary
 * of its own, which is synced and renamed over path. What is written is
 * named in errors as `what` ("checkpoint"). Only a regular file is replaced:
 * the rename would put the file in the place of a FIFO, a device node or a
 * socket, and that is lost. 0 ok, -1 on error. */
static int save_atomic(tg_ctx *ctx, const char *path, const char *what,
		       void (*body)(writer *w, const void *arg), const void *arg)
{
	if (!*path) {
		tg_fail(ctx, TG_EARG, "cannot write %s: the path is empty", what);
		return -1;
	}
	char *final = resolve_links(path);
	if (!final) {
		if (errno == ENOMEM)
			tg_fail(ctx, TG_ENOMEM, "%s: out of memory", path);
		else
			tg_fail(ctx, TG_EIO, "%s: cannot resolve the path: %s", path,
				strerror(errno));
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
	/* final is no link (resolve_links followed them all), so lstat sees
	 * what the rename would replace */
	struct stat st;
	bool existed = lstat(final, &st) == 0;
	if (existed && !S_ISREG(st.st_mode)) {
		if (strcmp(final, path))
			tg_fail(ctx, TG_EIO,
				"%s: cannot write %s: the link leads to %s, which is %s, not a "
				"regular file",
				path, what, final, file_kind(st.st_mode));
		else
			tg_fail(ctx, TG_EIO, "%s: cannot write %s: it is %s, not a regular file",
				path, what, file_kind(st.st_mode));
		goto out_free;
	}
	remove_leftovers(dir, base_of(final));
	int fd = create_temp(final, tmp, size);
	if (fd < 0) {
		tg_fail(ctx, TG_EIO, "%s: cannot write %s (creating a temporary in %s): %s",
			path, what, dir, strerror(errno));
		goto out_free;
	}
	if (existed)
		fchmod(fd, st.st_mode & 07777); /* the old file's permissions carry over */
	int err = write_file(fd, body, arg);
	if (!err && rename(tmp, final) != 0)
		err = errno;
	if (err) {
		unlink(tmp);
		tg_fail(ctx, TG_EIO, "%s: cannot write %s (via %s): %s", path, what, tmp,
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

int tg_checkpoint_save_state(tg_ctx *ctx, const char *path, const tg_state *s)
{
	if (!usable(ctx))
		return -1;
	if (!path || !s) {
		tg_fail(ctx, TG_ENULL, "tg_checkpoint_save_state: %s is NULL",
			!path ? "path" : "the state");
		return -1;
	}
	if (s->ctx != ctx) {
		tg_fail(ctx, TG_ECTX, "tg_checkpoint_save_state: the state belongs to another "
				      "context");
		return -1;
	}
	if (check_items(s, "tg_checkpoint_save_state"))
		return -1;
	return save_atomic(ctx, path, "checkpoint", write_state, s);
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
	tg_state *s = tg_state_new(ctx);
	int rc = s && tg_state_add(s, t, n) == 0 ? tg_checkpoint_save_state(ctx, path, s) : -1;
	tg_state_free(s);
	return rc;
}

/* A file that does not start with MAGIC; a gzipped one (a checkpoint
 * compressed after it was saved, say) is told apart, as the data readers
 * would take it: checkpoints are read as they were written. */
static void wrong_magic(tg_ctx *ctx, const char *path, const unsigned char *head, size_t n)
{
	if (n >= 2 && head[0] == 0x1f && head[1] == 0x8b)
		tg_fail(ctx, TG_EFORMAT,
			"%s: not a tapegrad checkpoint but gzip-compressed data; a checkpoint is "
			"read as it was saved (gunzip it first)",
			path);
	else
		tg_fail(ctx, TG_EFORMAT, "%s: not a tapegrad checkpoint (wrong magic)", path);
}

/* The whole file in a malloc'd buffer. Only a regular file is read: the open
 * does not block (a FIFO without a writer would wait forever) and fstat
 * refuses anything else before a byte is read. NULL after recording the
 * error. */
static unsigned char *read_file(tg_ctx *ctx, const char *path, size_t *size)
{
	if (!*path) {
		tg_fail(ctx, TG_EARG, "cannot read checkpoint: the path is empty");
		return NULL;
	}
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
		/* a short file that does not even start as one is no checkpoint */
		unsigned char head[sizeof MAGIC];
		ssize_t k = pread(fd, head, sizeof head, 0);
		if (k > 0 && memcmp(head, MAGIC, (size_t)k) != 0)
			wrong_magic(ctx, path, head, (size_t)k);
		else
			tg_fail(ctx, TG_EFORMAT,
				"%s: truncated: %lld bytes, a checkpoint has at least %d", path,
				(long long)st.st_size, MIN_FILE);
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

/* A name of len bytes from the file as a C string; NULL if it holds a NUL
 * (it could not be asked for by name) or memory runs out. */
static char *name_copy(const unsigned char *p, size_t len)
{
	if (memchr(p, 0, len))
		return NULL;
	return strndup((const char *)p, len);
}

/* Reads tensor i from r into it, checking every size against the bytes
 * left. */
static int parse_item(tg_ctx *ctx, const char *path, uint32_t version, uint32_t i, reader *r,
		      item *it)
{
	if (left(r) < 2)
		goto out_short;
	size_t len = (size_t)get_le(r, 2);
	if (len == 0) {
		tg_fail(ctx, TG_EFORMAT, "%s: tensor %u has an empty name", path, i);
		return -1;
	}
	if (left(r) < len + 2)
		goto out_short;
	const char *name = (const char *)r->p;
	it->name = name_copy(r->p, len);
	if (!it->name) {
		tg_fail(ctx, memchr(r->p, 0, len) ? TG_EFORMAT : TG_ENOMEM,
			"%s: tensor %u: %s", path, i,
			memchr(r->p, 0, len) ? "a NUL byte in its name" : "out of memory");
		return -1;
	}
	r->p += len;
	it->dtype = (int)get_le(r, 1);
	it->ndim = (int)get_le(r, 1);
	int max_dims = version == 1 ? V1_MAX_DIMS : TG_MAX_DIMS;
	if (!known_dtype(it->dtype) || (version == 1 && it->dtype > TG_F64)) {
		tg_fail(ctx, TG_EFORMAT, "%s: tensor %.*s has unknown dtype %d", path, (int)len,
			name, it->dtype);
		return -1;
	}
	if (it->ndim > max_dims) {
		tg_fail(ctx, TG_EFORMAT, "%s: tensor %.*s has %d dimensions, at most %d", path,
			(int)len, name, it->ndim, max_dims);
		return -1;
	}
	if (left(r) < 8 * (size_t)it->ndim)
		goto out_short;
	/* numel * size may not exceed the bytes left: no overflow, no absurd size. */
	size_t es = dtype_size(it->dtype), bytes = es, room = left(r) - 8 * (size_t)it->ndim;
	bool fits = true;
	for (int k = 0; k < it->ndim; k++) {
		uint64_t dim = get_le(r, 8);
		it->shape[k] = dim > INT64_MAX ? -1 : (int64_t)dim;
		if (dim && bytes > room / dim)
			fits = false;
		else
			bytes *= dim;
	}
	for (int k = 0; k < it->ndim; k++)
		if (it->shape[k] < 1) { /* a size tapegrad never writes */
			char buf[160];
			tg_fail(ctx, TG_EFORMAT,
				"%s: corrupted: tensor %.*s has shape %s; every size is 1 to %lld",
				path, (int)len, name, shape_str(it->ndim, it->shape, buf, sizeof buf),
				(long long)INT64_MAX);
			return -1;
		}
	if (!fits || bytes > room) {
		char buf[160];
		tg_fail(ctx, TG_EFORMAT,
			"%s: truncated or corrupted: tensor %.*s of shape %s does not fit in the "
			"%zu bytes left",
			path, (int)len, name, shape_str(it->ndim, it->shape, buf, sizeof buf),
			room);
		return -1;
	}
	it->data = r->p;
	it->bytes = bytes;
	r->p += bytes;
	return 0;

out_short:
	tg_fail(ctx, TG_EFORMAT, "%s: truncated: tensor %u of the file ends early", path, i);
	return -1;
}

/* Reads metadata entry i from r into m (values copied, in this machine's
 * byte order). */
static int parse_meta(tg_ctx *ctx, const char *path, uint32_t i, reader *r, meta *m)
{
	if (left(r) < 2)
		goto out_short;
	size_t len = (size_t)get_le(r, 2);
	if (len == 0) {
		tg_fail(ctx, TG_EFORMAT, "%s: metadata entry %u has an empty key", path, i);
		return -1;
	}
	if (left(r) < len + 5)
		goto out_short;
	if (memchr(r->p, 0, len)) {
		tg_fail(ctx, TG_EFORMAT, "%s: metadata entry %u: a NUL byte in its key", path, i);
		return -1;
	}
	const char *key = (const char *)r->p;
	r->p += len;
	m->kind = (int)get_le(r, 1);
	m->n = (size_t)get_le(r, 4);
	if (m->kind != META_F64 && m->kind != META_I64 && m->kind != META_STR) {
		tg_fail(ctx, TG_EFORMAT, "%s: metadata %.*s has unknown kind %d", path, (int)len,
			key, m->kind);
		return -1;
	}
	size_t bytes = m->kind == META_STR ? m->n : 8 * m->n;
	if (bytes > left(r)) {
		tg_fail(ctx, TG_EFORMAT,
			"%s: truncated or corrupted: metadata %.*s of %zu bytes does not fit in "
			"the %zu bytes left",
			path, (int)len, key, bytes, left(r));
		return -1;
	}
	if (m->kind == META_STR && memchr(r->p, 0, bytes)) {
		tg_fail(ctx, TG_EFORMAT, "%s: metadata %.*s: a NUL byte in the string", path,
			(int)len, key);
		return -1;
	}
	m->key = strndup(key, len);
	m->v = malloc(bytes + 1);
	if (!m->key || !m->v) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", path);
		return -1;
	}
	memcpy(m->v, r->p, bytes);
	if (m->kind == META_STR)
		((char *)m->v)[bytes] = '\0';
	else if (!little_endian())
		swap_bytes(m->v, m->n, 8);
	r->p += bytes;
	return 0;

out_short:
	tg_fail(ctx, TG_EFORMAT, "%s: truncated: metadata entry %u of the file ends early", path,
		i);
	return -1;
}

/* Checks the file's framing and CRC and fills s with its tensors and
 * metadata (s->buf holds the bytes). */
static int parse_file(tg_ctx *ctx, const char *path, tg_state *s, size_t size)
{
	const unsigned char *buf = s->buf;
	if (memcmp(buf, MAGIC, sizeof MAGIC) != 0) {
		wrong_magic(ctx, path, buf, size);
		return -1;
	}
	reader r = { buf + sizeof MAGIC, buf + size - 4 };
	uint32_t version = (uint32_t)get_le(&r, 4);
	if (version != 1 && version != TG_CHECKPOINT_VERSION) {
		tg_fail(ctx, TG_EFORMAT, "%s: format version %u, this library reads versions 1 "
					 "to %d",
			path, version, TG_CHECKPOINT_VERSION);
		return -1;
	}
	uint32_t count = (uint32_t)get_le(&r, 4), nmeta = 0;
	if (version >= 2) {
		if (left(&r) < 4) {
			tg_fail(ctx, TG_EFORMAT, "%s: truncated: %zu bytes", path, size);
			return -1;
		}
		nmeta = (uint32_t)get_le(&r, 4);
	}
	if (count > left(&r) / MIN_ENTRY) {
		tg_fail(ctx, TG_EFORMAT,
			"%s: truncated or corrupted: %u tensors cannot fit in %zu bytes", path,
			count, size);
		return -1;
	}
	if (nmeta > left(&r) / MIN_META) {
		tg_fail(ctx, TG_EFORMAT,
			"%s: truncated or corrupted: %u metadata entries cannot fit in %zu bytes",
			path, nmeta, size);
		return -1;
	}
	s->items = calloc(count ? count : 1, sizeof *s->items);
	s->meta = calloc(nmeta ? nmeta : 1, sizeof *s->meta);
	if (!s->items || !s->meta) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory for %u tensors", path, count);
		return -1;
	}
	s->cap = count ? count : 1;
	s->cmeta = nmeta ? nmeta : 1;
	for (uint32_t i = 0; i < nmeta; i++) {
		s->nmeta = i + 1; /* freed with the state, whole or not */
		if (parse_meta(ctx, path, i, &r, &s->meta[i]))
			return -1;
		for (uint32_t k = 0; k < i; k++)
			if (!strcmp(s->meta[k].key, s->meta[i].key)) {
				tg_fail(ctx, TG_EFORMAT, "%s: metadata %s appears twice in the file",
					path, s->meta[i].key);
				return -1;
			}
	}
	for (uint32_t i = 0; i < count; i++) {
		s->n = i + 1;
		if (parse_item(ctx, path, version, i, &r, &s->items[i]))
			return -1;
	}
	if (left(&r)) {
		tg_fail(ctx, TG_EFORMAT, "%s: %zu unexpected bytes after the last tensor", path,
			left(&r));
		return -1;
	}
	reader tail = { buf + size - 4, buf + size };
	uint32_t stored = (uint32_t)get_le(&tail, 4);
	uint32_t actual = (uint32_t)crc32_z(crc32(0, NULL, 0), buf, size - 4);
	if (stored != actual) {
		tg_fail(ctx, TG_EFORMAT,
			"%s: CRC32 mismatch: the file says 0x%08x, its contents give 0x%08x "
			"(corrupted)",
			path, (unsigned)stored, (unsigned)actual);
		return -1;
	}
	/* duplicates last: the CRC vouches for the names first */
	for (uint32_t j = 0; j < count; j++)
		for (uint32_t k = 0; k < j; k++)
			if (!strcmp(s->items[k].name, s->items[j].name)) {
				tg_fail(ctx, TG_EFORMAT,
					"%s: tensor %s appears twice in the file", path,
					s->items[j].name);
				return -1;
			}
	return 0;
}

int tg_checkpoint_read(tg_ctx *ctx, const char *path, tg_state **out)
{
	if (out)
		*out = NULL;
	if (!usable(ctx))
		return -1;
	if (!path || !out) {
		tg_fail(ctx, TG_ENULL, "tg_checkpoint_read: %s is NULL", !path ? "path" : "out");
		return -1;
	}
	tg_state *s = tg_state_new(ctx);
	if (!s)
		return -1;
	size_t size;
	s->path = strdup(path);
	if (!s->path) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", path);
		goto out_free;
	}
	s->buf = read_file(ctx, path, &size);
	if (!s->buf || parse_file(ctx, path, s, size))
		goto out_free;
	*out = s;
	return 0;
out_free:
	tg_state_free(s);
	return -1;
}

/* ---- loading into tensors ------------------------------------------------------ */

/* A growing text, for the names a load could not match. */
typedef struct text {
	char *p;
	size_t n, cap;
	bool oom;
} text;

static void text_add(text *t, const char *fmt, ...)
{
	if (t->oom)
		return;
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	size_t need = t->n + (size_t)k + 1;
	if (k < 0) {
		t->oom = true;
		return;
	}
	if (need > t->cap) {
		size_t cap = 2 * t->cap > need ? 2 * t->cap : need + 64;
		char *q = realloc(t->p, cap);
		if (!q) {
			t->oom = true;
			return;
		}
		t->p = q;
		t->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(t->p + t->n, t->cap - t->n, fmt, ap);
	va_end(ap);
	t->n += (size_t)k;
}

/* Appends "tensor a is ..." or "tensors a, b are ..." for the k names. */
static void list_names(text *out, const char *const *names, size_t k, const char *what)
{
	if (!k)
		return;
	text_add(out, "%s%s ", out->n ? "; " : "", k == 1 ? "tensor" : "tensors");
	for (size_t i = 0; i < k; i++)
		text_add(out, "%s%s", i ? ", " : "", names[i]);
	text_add(out, " %s %s", k == 1 ? "is" : "are", what);
}

/* The index of the first NaN or Inf among n float values, or -1. */
static int64_t first_nonfinite(const unsigned char *data, size_t n, int dtype, bool swap,
			       double *bad)
{
	size_t es = dtype_size(dtype);
	for (size_t i = 0; i < n; i++) {
		unsigned char b[8];
		memcpy(b, data + i * es, es);
		if (swap)
			swap_bytes(b, 1, es);
		double v;
		if (es == sizeof(double)) {
			memcpy(&v, b, sizeof v);
		} else {
			float f;
			memcpy(&f, b, sizeof f);
			v = f;
		}
		if (!isfinite(v)) {
			*bad = v;
			return (int64_t)i;
		}
	}
	return -1;
}

static int load_into(const tg_state *s, const char *who, tg_tensor *const *t, size_t n,
		     unsigned flags, char *report, size_t size)
{
	tg_ctx *ctx = s->ctx;
	const char *path = s->path ? s->path : "the state";
	if (report && size)
		report[0] = '\0';
	if (check_list(ctx, who, path, t, n))
		return -1;
	if (flags & ~(unsigned)(TG_CHECKPOINT_NONFINITE | TG_CHECKPOINT_STRICT)) {
		tg_fail(ctx, TG_EARG, "%s: unknown flags 0x%x", who, flags);
		return -1;
	}
	if (check_items(s, who))
		return -1;
	int rc = -1;
	const item **match = calloc(n ? n : 1, sizeof *match);
	bool *used = calloc(s->n ? s->n : 1, sizeof *used);
	const char **missing = malloc((n ? n : 1) * sizeof *missing);
	const char **unexpected = malloc((s->n ? s->n : 1) * sizeof *unexpected);
	text msg = { 0 };
	if (!match || !used || !missing || !unexpected) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", path);
		goto out_free;
	}
	size_t nmiss = 0, nunexp = 0, loaded = 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = tg_name(t[i]);
		for (size_t j = 0; j < s->n && !match[i]; j++)
			if (!used[j] && !strcmp(s->items[j].name, name)) {
				match[i] = &s->items[j];
				used[j] = true;
			}
		if (!match[i])
			missing[nmiss++] = name;
	}
	for (size_t j = 0; j < s->n; j++)
		if (!used[j])
			unexpected[nunexp++] = s->items[j].name;
	list_names(&msg, missing, nmiss, "not in the file");
	list_names(&msg, unexpected, nunexp, "in the file but not in the model");
	if (msg.oom) {
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", path);
		goto out_free;
	}
	if ((flags & TG_CHECKPOINT_STRICT) && (nmiss || nunexp)) {
		if (s->n != n)
			tg_fail(ctx, TG_EFORMAT, "%s: the file has %zu tensors, the model %zu: %s",
				path, s->n, n, msg.p);
		else
			tg_fail(ctx, TG_EFORMAT, "%s: %s", path, msg.p);
		goto out_free;
	}
	for (size_t i = 0; i < n; i++) {
		const item *it = match[i];
		if (!it)
			continue;
		const char *name = it->name;
		tg_dtype dt = tg_dtype_of(t[i]);
		if (it->dtype != (int)dt) {
			tg_fail(ctx, TG_EFORMAT, "%s: tensor %s is %s in the file, %s in the model",
				path, name, dtype_name(it->dtype), dtype_name(dt));
			goto out_free;
		}
		int ndim = tg_ndim(t[i]);
		const int64_t *shape = tg_shape(t[i]);
		bool same = it->ndim == ndim;
		for (int k = 0; same && k < ndim; k++)
			same = it->shape[k] == shape[k];
		if (!same) {
			char a[160], b[160];
			tg_fail(ctx, TG_EFORMAT,
				"%s: tensor %s has shape %s in the file, %s in the model", path,
				name, shape_str(it->ndim, it->shape, a, sizeof a),
				shape_str(ndim, shape, b, sizeof b));
			goto out_free;
		}
	}
	/* A model of NaN or Inf would only make NaN: refused unless asked for. */
	for (size_t i = 0; i < n && !(flags & TG_CHECKPOINT_NONFINITE); i++) {
		const item *it = match[i];
		if (!it || it->dtype == TG_I32 || it->dtype == TG_I64)
			continue;
		size_t es = dtype_size(it->dtype), cnt = item_bytes(it) / es;
		double v = 0;
		int64_t k = first_nonfinite(item_data(it), cnt, it->dtype,
					    !it->t && !little_endian(), &v);
		if (k < 0)
			continue;
		tg_fail(ctx, TG_EFORMAT,
			"%s: tensor %s holds %s at index %lld of %zu (saved from a run that "
			"diverged?); load it anyway with TG_CHECKPOINT_NONFINITE",
			path, it->name, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf", (long long)k,
			cnt);
		goto out_free;
	}
	/* Everything checked: only now touch the model. */
	for (size_t i = 0; i < n; i++) {
		const item *it = match[i];
		if (!it || it->t == t[i])
			continue;
		unsigned char *dst = tg_data_mut(t[i]);
		if (!dst)
			goto out_free;
		size_t bytes = item_bytes(it);
		memmove(dst, item_data(it), bytes);
		if (!it->t && !little_endian())
			swap_bytes(dst, bytes / dtype_size(it->dtype), dtype_size(it->dtype));
	}
	for (size_t i = 0; i < n; i++)
		loaded += match[i] != NULL;
	if (report && size && msg.p)
		snprintf(report, size, "%s", msg.p);
	rc = loaded > INT_MAX ? INT_MAX : (int)loaded;
out_free:
	free(msg.p);
	free(match);
	free(used);
	free(missing);
	free(unexpected);
	return rc;
}

int tg_state_load_into(const tg_state *s, tg_tensor *const *t, size_t n, unsigned flags,
		       char *report, size_t size)
{
	if (report && size)
		report[0] = '\0';
	if (!s || !usable(s->ctx))
		return -1;
	return load_into(s, "tg_state_load_into", t, n, flags, report, size);
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
	if (flags & ~(unsigned)(TG_CHECKPOINT_NONFINITE | TG_CHECKPOINT_STRICT)) {
		tg_fail(ctx, TG_EARG, "tg_checkpoint_load_flags: unknown flags 0x%x", flags);
		return -1;
	}
	tg_state *s;
	if (tg_checkpoint_read(ctx, path, &s))
		return -1;
	int rc = load_into(s, "tg_checkpoint_load", t, n, flags | TG_CHECKPOINT_STRICT, NULL, 0);
	tg_state_free(s);
	return rc < 0 ? -1 : 0;
}

/* ---- NumPy's .npz ------------------------------------------------------------- */
/* A zip archive of stored (uncompressed) members "<name>.npy", each a .npy
 * file of format version 1.0: "\x93NUMPY", 1, 0, u16 header length, then a
 * Python dict literal padded with spaces and a newline to a multiple of 64
 * bytes, then the data in C order. numpy.load(path)[name] gives the array. */

enum { NPY_ALIGN = 64, ZIP_LOCAL = 30, ZIP_CENTRAL = 46, ZIP_END = 22 };

/* The .npy header of t (magic to newline) into buf; its length. */
static size_t npy_header(const tg_tensor *t, char *buf, size_t size)
{
	static const char *const descr[] = { "<f4", "<f8", "<i4", "<i8" };
	char dict[400];
	int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
			 descr[tg_dtype_of(t)]);
	int ndim = tg_ndim(t);
	const int64_t *shape = tg_shape(t);
	for (int i = 0; i < ndim; i++)
		k += snprintf(dict + k, sizeof dict - (size_t)k, "%s%lld", i ? ", " : "",
			      (long long)shape[i]);
	k += snprintf(dict + k, sizeof dict - (size_t)k, "%s), }", ndim == 1 ? "," : "");
	size_t total = 10 + (size_t)k + 1; /* magic, version, length; dict; newline */
	total = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
	size_t hlen = total - 10;
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	buf[8] = (char)(hlen & 0xff);
	buf[9] = (char)(hlen >> 8);
	memcpy(buf + 10, dict, (size_t)k);
	memset(buf + 10 + k, ' ', total - 10 - (size_t)k - 1);
	buf[total - 1] = '\n';
	(void)size;
	return total;
}

static void crc_chunk(void *arg, const unsigned char *p, size_t n)
{
	uLong *crc = arg;
	*crc = crc32_z(*crc, p, n);
}

typedef struct npz {
	tg_tensor *const *t;
	size_t n;
	uint32_t *crc;
	uint32_t *offset;
	uint32_t *size;
} npz;

/* 1 when name has a byte above 0x7f and is well-formed UTF-8 (no overlong
 * form, surrogate or code point above U+10FFFF), 0 when it is ASCII, -1
 * when it is not UTF-8: a zip member's name is read as CP437 unless its
 * flag says UTF-8, so "été" would come back from numpy.load as "├⌐t├⌐". */
static int utf8_kind(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;
	int beyond = 0;
	while (*p) {
		unsigned c = *p++;
		if (c < 0x80)
			continue;
		beyond = 1;
		int more = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2
			   : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
		if (more < 0)
			return -1;
		unsigned lo = 0x80, hi = 0xbf; /* the second byte's range */
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
		else if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
		for (int k = 0; k < more; k++, p++) {
			if (*p < (k ? 0x80u : lo) || *p > (k ? 0xbfu : hi))
				return -1;
		}
	}
	return beyond;
}

/* Why name cannot be a member's name in a .npz, or NULL: an extractor
 * would write "/etc/x.npy" or "../x.npy" outside the directory it unpacks
 * into, and a name that is not UTF-8 comes back garbled. */
static const char *npz_name_wrong(const char *name)
{
	if (utf8_kind(name) < 0)
		return "it is not UTF-8";
	if (name[0] == '/' || strchr(name, '\\'))
		return "a member's name may not start with '/' or hold '\\'";
	for (const char *s = name; s; s = strchr(s, '/'), s = s ? s + 1 : NULL)
		if (!strncmp(s, "..", 2) && (s[2] == '/' || s[2] == '\0'))
			return "a member's name may not hold a '..' step";
	return NULL;
}

/* Fixed date and time (1980-01-01 00:00) so the same tensors give the same
 * bytes. Flag bit 11 says the name is UTF-8. */
static void put_zip_common(writer *w, uint32_t crc, uint32_t size, const char *name)
{
	size_t name_len = strlen(name);
	put_le(w, 20, 2);     /* version needed: 2.0 */
	put_le(w, utf8_kind(name) > 0 ? 0x800 : 0, 2); /* flags */
	put_le(w, 0, 2);      /* stored */
	put_le(w, 0, 2);      /* time */
	put_le(w, 0x21, 2);   /* date */
	put_le(w, crc, 4);
	put_le(w, size, 4);   /* compressed */
	put_le(w, size, 4);   /* uncompressed */
	put_le(w, name_len + 4, 2);
	put_le(w, 0, 2);      /* extra field length */
}

static void write_npz(writer *w, const void *arg)
{
	const npz *z = arg;
	char head[512];
	for (size_t i = 0; i < z->n; i++) {
		const tg_tensor *t = z->t[i];
		const char *name = tg_name(t);
		size_t hl = npy_header(t, head, sizeof head);
		size_t es = dtype_size(tg_dtype_of(t)), bytes = tg_numel(t) * es;
		uLong crc = crc32_z(crc32(0, NULL, 0), (const unsigned char *)head, hl);
		le_chunks(tg_data(t), bytes, es, crc_chunk, &crc);
		z->crc[i] = (uint32_t)crc;
		z->size[i] = (uint32_t)(hl + bytes);
		z->offset[i] = (uint32_t)w->pos;
		put_le(w, 0x04034b50, 4);
		put_zip_common(w, z->crc[i], z->size[i], name);
		put(w, name, strlen(name));
		put(w, ".npy", 4);
		put(w, head, hl);
		le_chunks(tg_data(t), bytes, es, put_chunk, w);
	}
	uint64_t central = w->pos;
	for (size_t i = 0; i < z->n; i++) {
		const char *name = tg_name(z->t[i]);
		put_le(w, 0x02014b50, 4);
		put_le(w, 20, 2); /* made by: 2.0 */
		put_zip_common(w, z->crc[i], z->size[i], name);
		put_le(w, 0, 2);  /* comment length */
		put_le(w, 0, 2);  /* disk */
		put_le(w, 0, 2);  /* internal attributes */
		put_le(w, 0, 4);  /* external attributes */
		put_le(w, z->offset[i], 4);
		put(w, name, strlen(name));
		put(w, ".npy", 4);
	}
	uint64_t end = w->pos;
	put_le(w, 0x06054b50, 4);
	put_le(w, 0, 2);
	put_le(w, 0, 2);
	put_le(w, z->n, 2);
	put_le(w, z->n, 2);
	put_le(w, end - central, 4);
	put_le(w, central, 4);
	put_le(w, 0, 2); /* comment length */
}

int tg_export_npz(tg_ctx *ctx, const char *path, tg_tensor *const *t, size_t n)
{
	if (!usable(ctx))
		return -1;
	if (check_list(ctx, "tg_export_npz", path, t, n))
		return -1;
	/* A zip without its 64-bit extension: at most 65535 members and 4 GiB. */
	if (n > 65535) {
		tg_fail(ctx, TG_EARG, "tg_export_npz: %zu tensors, at most 65535", n);
		return -1;
	}
	uint64_t total = ZIP_END;
	for (size_t i = 0; i < n; i++) {
		const char *wrong = npz_name_wrong(tg_name(t[i]));
		if (wrong) {
			tg_fail(ctx, TG_EARG, "tg_export_npz: tensor %zu's name \"%s\": %s", i,
				tg_name(t[i]), wrong);
			return -1;
		}
		size_t name = strlen(tg_name(t[i])) + 4;
		if (name > 65535) {
			tg_fail(ctx, TG_EARG, "tg_export_npz: tensor %s: a name of %zu bytes, at "
					      "most 65531", tg_name(t[i]), name - 4);
			return -1;
		}
		total += ZIP_LOCAL + ZIP_CENTRAL + 2 * name + 512 +
			 (uint64_t)tg_numel(t[i]) * dtype_size(tg_dtype_of(t[i]));
	}
	if (total > UINT32_MAX) {
		tg_fail(ctx, TG_EARG, "tg_export_npz: %llu bytes of tensors; a .npz without "
				      "zip64 holds at most 4 GiB", (unsigned long long)total);
		return -1;
	}
	npz z = { .t = t, .n = n };
	z.crc = calloc(n ? n : 1, sizeof *z.crc);
	z.offset = calloc(n ? n : 1, sizeof *z.offset);
	z.size = calloc(n ? n : 1, sizeof *z.size);
	int rc = -1;
	if (!z.crc || !z.offset || !z.size)
		tg_fail(ctx, TG_ENOMEM, "%s: out of memory", path);
	else
		rc = save_atomic(ctx, path, "the .npz file", write_npz, &z);
	free(z.crc);
	free(z.offset);
	free(z.size);
	return rc;
}
