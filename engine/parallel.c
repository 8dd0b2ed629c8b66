/*
 * parallel.c - the worker pool behind tg_parallel_for (parallel.h).
 *
 * One pool per process: workers start when a loop first needs them (as
 * many as the largest split so far asks, less the caller) and are joined
 * at exit, or dropped in a forked child. A loop is posted by writing its
 * fields and bumping a generation counter; each worker runs its part,
 * then counts itself out. Waiting is a short spin and then a condition
 * variable, both ways: a worker that finds no new loop soon sleeps, so an
 * idle pool takes no CPU from the BLAS threads or other processes.
 */
#include "internal.h"
#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

enum {
	MAX_WORKERS = 63,
	SPIN = 2000, /* polls (a few us) before sleeping on a condition variable */
};

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static struct {
	pthread_mutex_t submit; /* one loop at a time */
	pthread_mutex_t lock;	/* sleeping, waiting and the two conditions */
	pthread_cond_t wake;	/* a new loop was posted, or stop */
	pthread_cond_t done;	/* the last worker finished its part */
	atomic_uint gen;	/* loops posted so far */
	atomic_int pending;	/* workers yet to count out of the current loop */
	atomic_bool stop;
	int sleeping, waiting;
	int nworkers;
	pthread_t tid[MAX_WORKERS];
	unsigned born[MAX_WORKERS]; /* gen when each started */
	/* the current loop, written before gen is bumped */
	tg_range_fn fn;
	void *arg;
	size_t n, align;
	int parts;
} pool = {
	.submit = PTHREAD_MUTEX_INITIALIZER,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wake = PTHREAD_COND_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER,
};

/* The start of part p of parts over [0, n): a multiple of align. */
static size_t bound(size_t n, size_t align, int p, int parts)
{
	if (p >= parts)
		return n;
	size_t q = (size_t)parts, b = n / q * (size_t)p + n % q * (size_t)p / q; /* n p / q */
	return b / align * align;
}

static void run_part(int p)
{
	size_t lo = bound(pool.n, pool.align, p, pool.parts);
	size_t hi = bound(pool.n, pool.align, p + 1, pool.parts);
	if (lo < hi)
		pool.fn(pool.arg, lo, hi);
}

static void *worker(void *argp)
{
	int w = (int)(intptr_t)argp;
	unsigned seen = pool.born[w];
	for (;;) {
		unsigned g;
		for (int s = 0; (g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen &&
				s < SPIN;
		     s++)
			relax();
		if (g == seen) {
			pthread_mutex_lock(&pool.lock);
			while ((g = atomic_load(&pool.gen)) == seen) {
				pool.sleeping++;
				pthread_cond_wait(&pool.wake, &pool.lock);
				pool.sleeping--;
			}
			pthread_mutex_unlock(&pool.lock);
		}
		seen = g;
		if (atomic_load(&pool.stop))
			return NULL;
		if (w + 1 < pool.parts)
			run_part(w + 1);
		if (atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel) == 1) {
			pthread_mutex_lock(&pool.lock);
			if (pool.waiting)
				pthread_cond_signal(&pool.done);
			pthread_mutex_unlock(&pool.lock);
		}
	}
}

/* Posts the loop in pool's fields to every worker (stop set or not). */
static void post(void)
{
	atomic_store_explicit(&pool.pending, pool.nworkers, memory_order_relaxed);
	atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release);
	pthread_mutex_lock(&pool.lock);
	if (pool.sleeping)
		pthread_cond_broadcast(&pool.wake);
	pthread_mutex_unlock(&pool.lock);
}

static void wait_workers(void)
{
	for (int s = 0; atomic_load_explicit(&pool.pending, memory_order_acquire) && s < SPIN; s++)
		relax();
	if (!atomic_load_explicit(&pool.pending, memory_order_acquire))
		return;
	pthread_mutex_lock(&pool.lock);
	while (atomic_load(&pool.pending)) {
		pool.waiting++;
		pthread_cond_wait(&pool.done, &pool.lock);
		pool.waiting--;
	}
	pthread_mutex_unlock(&pool.lock);
}

/* ---- starting, stopping, forking --------------------------------------------- */

static void fork_prepare(void) { pthread_mutex_lock(&pool.submit); }
static void fork_parent(void) { pthread_mutex_unlock(&pool.submit); }

/* The child has only the forking thread: it forgets the workers and starts
 * its own when it needs them. */
static void fork_child(void)
{
	pthread_mutex_init(&pool.submit, NULL);
	pthread_mutex_init(&pool.lock, NULL);
	pthread_cond_init(&pool.wake, NULL);
	pthread_cond_init(&pool.done, NULL);
	pool.nworkers = pool.sleeping = pool.waiting = 0;
	atomic_store(&pool.pending, 0);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void register_fork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

/* At least want workers running (fewer if threads cannot start); with the
 * submit lock held. */
static void grow(int want)
{
	pthread_once(&once, register_fork);
	while (pool.nworkers < want) {
		int w = pool.nworkers;
		pool.born[w] = atomic_load(&pool.gen);
		if (pthread_create(&pool.tid[w], NULL, worker, (void *)(intptr_t)w))
			return;
		pool.nworkers++;
	}
}

/* At exit, or when the library is unloaded: every worker leaves and is
 * joined, so leak checkers and ThreadSanitizer see no thread left. */
__attribute__((destructor)) static void pool_shutdown(void)
{
	pthread_mutex_lock(&pool.submit);
	if (pool.nworkers) {
		atomic_store(&pool.stop, true);
		post();
		for (int w = 0; w < pool.nworkers; w++)
			pthread_join(pool.tid[w], NULL);
		pool.nworkers = 0;
		atomic_store(&pool.stop, false);
	}
	pthread_mutex_unlock(&pool.submit);
}

/* ---- the loop ------------------------------------------------------------------- */

int tg_parallel_parts(const tg_ctx *ctx, size_t n, size_t min)
{
	int t = ctx ? ctx->threads : 1;
	if (t <= 1 || n < min || n < 2)
		return 1;
	if (t > MAX_WORKERS + 1)
		t = MAX_WORKERS + 1;
	/* parts of at least min / 2 elements */
	size_t most = min > 1 ? n / (min / 2) : n;
	return most < (size_t)t ? (int)most : t;
}

void tg_parallel_for(const tg_ctx *ctx, size_t n, size_t min, size_t align, tg_range_fn fn,
		     void *arg)
{
	int parts = tg_parallel_parts(ctx, n, min);
	if (parts <= 1 || pthread_mutex_trylock(&pool.submit)) {
		fn(arg, 0, n);
		return;
	}
	grow(parts - 1);
	if (pool.nworkers < parts - 1)
		parts = pool.nworkers + 1;
	if (parts <= 1) {
		pthread_mutex_unlock(&pool.submit);
		fn(arg, 0, n);
		return;
	}
	pool.fn = fn;
	pool.arg = arg;
	pool.n = n;
	pool.align = align ? align : 1;
	pool.parts = parts;
	post();
	run_part(0);
	wait_workers();
	pthread_mutex_unlock(&pool.submit);
}
