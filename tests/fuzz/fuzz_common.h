/*
 * fuzz_common.h - what the libFuzzer targets in tests/fuzz share: the rule
 * check that aborts, a reader of program bytes and the check that a message
 * names its function, a context allocator that can fail on purpose, and a
 * way to hand the fuzz input to a loader as a file.
 *
 * Header-only (static functions): each target is one translation unit
 * compiled with the library's sources, without a build system.
 */
#ifndef TG_FUZZ_COMMON_H
#define TG_FUZZ_COMMON_H

#include "tapegrad.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A broken rule: say which and abort, which libFuzzer reports as a crash. */
#define require(cond, ...)                                                           \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "fuzz: broken rule: %s\n  ", #cond);         \
			fprintf(stderr, __VA_ARGS__);                                \
			fputc('\n', stderr);                                         \
			abort();                                                     \
		}                                                                    \
	} while (0)

/* ---- reading a program ------------------------------------------------------------ */
/* The program targets (fuzz_expr, fuzz_ops) read their input a byte at a
 * time; past the end every read is 0. */

typedef struct reader {
	const uint8_t *p, *end;
} reader;

static inline bool at_end(const reader *r) { return r->p >= r->end; }

static inline unsigned u8(reader *r) { return r->p < r->end ? *r->p++ : 0; }

/* Little-endian; one read per statement, so the order is defined. */
static inline unsigned u16(reader *r)
{
	unsigned lo = u8(r);
	return lo | u8(r) << 8;
}

static inline bool bit(reader *r) { return u8(r) & 1; }

/* Whether an error message names who; who may list the names that count,
 * separated by '|' (a function whose checks run in one it calls). */
static inline bool mentions(const char *msg, const char *who)
{
	char name[64];
	while (*who) {
		size_t n = strcspn(who, "|");
		snprintf(name, sizeof name, "%.*s", (int)n, who);
		if (strstr(msg, name))
			return true;
		who += n + (who[n] == '|');
	}
	return false;
}

/* ---- a context allocator ------------------------------------------------------ */
/* Refuses the fail_at-th allocation (sticky: that one and every later one),
 * any single allocation above limit bytes, and any that would take the
 * bytes in use above live_limit (0: no limit). Everything goes through
 * malloc so that LeakSanitizer sees leaks. Blocks of FUZZ_BIG bytes or more
 * (arena blocks, header slots) are kept on free and handed out again for
 * the same size: under ASan each large malloc is a fresh mmap, and in a VM
 * the TLB flushes that come with it cost more than the rest of a run. */

typedef struct fuzz_alloc {
	unsigned long n;       /* allocations so far */
	unsigned long fail_at; /* 0: never */
	bool sticky;
	size_t limit;
	size_t live;           /* bytes in use */
	size_t live_limit;
} fuzz_alloc;

enum { FUZZ_BIG = 16 << 10, FUZZ_CACHE = 16 };

static struct {
	void *p;
	size_t size;
} fuzz_cache[FUZZ_CACHE];

/* Each block carries its size in front, for the cache. */
static inline void *fuzz_alloc_fn(size_t size, void *user)
{
	fuzz_alloc *a = user;
	a->n++;
	if (a->fail_at && (a->n == a->fail_at || (a->sticky && a->n > a->fail_at)))
		return NULL;
	if (a->limit && size > a->limit)
		return NULL;
	if (a->live_limit && size > a->live_limit - a->live)
		return NULL;
	if (size >= FUZZ_BIG) {
		for (int i = 0; i < FUZZ_CACHE; i++) {
			if (fuzz_cache[i].p && fuzz_cache[i].size == size) {
				void *p = fuzz_cache[i].p;
				fuzz_cache[i].p = NULL;
				a->live += size;
				return (char *)p + 16;
			}
		}
	}
	char *p = size <= SIZE_MAX - 16 ? malloc(size + 16) : NULL;
	if (!p)
		return NULL;
	memcpy(p, &size, sizeof size);
	a->live += size;
	return p + 16;
}

static inline void fuzz_free_fn(void *ptr, void *user)
{
	fuzz_alloc *a = user;
	if (!ptr)
		return;
	char *p = (char *)ptr - 16;
	size_t size;
	memcpy(&size, p, sizeof size);
	a->live -= size;
	if (size >= FUZZ_BIG) {
		for (int i = 0; i < FUZZ_CACHE; i++) {
			if (!fuzz_cache[i].p) {
				fuzz_cache[i].p = p;
				fuzz_cache[i].size = size;
				return;
			}
		}
	}
	free(p);
}

/* A context using a (the caller keeps it alive as long as the context). */
static inline tg_ctx *fuzz_ctx_new(uint64_t seed, fuzz_alloc *a)
{
	tg_allocator al = { fuzz_alloc_fn, fuzz_free_fn, a };
	return tg_ctx_new_with(seed, &al);
}

/* ---- the input as a file ------------------------------------------------------- */
/* A memory-backed file (memfd) reached through /proc/self/fd/N: loaders open
 * it by name like any file, and nothing touches the disk. Falls back to a
 * file under $TMPDIR or /tmp. */

typedef struct fuzz_file {
	int fd;
	char path[4096];
	bool temp; /* unlink path at the end */
} fuzz_file;

static inline int fuzz_file_open(fuzz_file *f, const char *tag)
{
	f->temp = false;
	f->fd = memfd_create(tag, 0);
	if (f->fd >= 0) {
		snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
		if (access(f->path, R_OK) == 0)
			return 0;
		close(f->fd);
	}
	const char *dir = getenv("TMPDIR");
	snprintf(f->path, sizeof f->path, "%s/tg_fuzz_%s_XXXXXX", dir && *dir ? dir : "/tmp",
		 tag);
	f->fd = mkstemp(f->path);
	if (f->fd < 0)
		return -1;
	f->temp = true;
	return 0;
}

/* Makes the file hold exactly data[0..size). */
static inline int fuzz_file_set(fuzz_file *f, const void *data, size_t size)
{
	if (ftruncate(f->fd, 0) != 0)
		return -1;
	size_t done = 0;
	while (done < size) {
		ssize_t w = pwrite(f->fd, (const char *)data + done, size - done, (off_t)done);
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}

static inline void fuzz_file_close(fuzz_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->temp)
		unlink(f->path);
	f->fd = -1;
}

#endif /* TG_FUZZ_COMMON_H */
