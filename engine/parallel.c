/*
 * parallel.c - the worker pool behind tg_parallel_for (parallel.h).
 *
 * One pool per process: workers start when a loop first needs them (as
 * many as the largest split so far asks, less the caller) and are joined
 * at exit, or dropped in a forked child. A loop is cut into a fixed number
 * of parts and posted as a ticket, (generation, threads, parts, the set
 * of parts claimed); the caller and every worker claim parts from it until
 * none is left, so a worker that wakes late (a busy machine) finds the
 * work done by the caller instead of holding it up, and the caller waits
 * only for parts that a worker has claimed. Each thread claims from its
 * own share first (the caller from part 0, worker w from the (w+1)-th of
 * the context's threads' shares) and then goes on past it, so loops over
 * tensors of one size give each thread the same elements as the loop
 * before, which it may still hold in its cache, when every thread is on
 * time: on a 2-core VM, where the cores share no cache, claiming in turn
 * made sum(c * c) over a concat 2 times slower at 2 threads than at 1.
 * Waiting is a short spin and then a condition variable, both ways: an
 * idle pool takes no CPU from the BLAS threads or other processes.
 */
#include "internal.h"
#include "parallel.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

enum {
	MAX_WORKERS = TG_MAX_THREADS - 1,
	MAX_PARTS = 32, /* one bit of the ticket each */
	PER_THREAD = 4, /* parts per thread, so that a late worker leaves less to wait for */
	SPIN = 2000,	/* polls (a few us) before sleeping on a condition variable */
};

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* The ticket: generation << 45 | threads << 38 | parts << 32 | the parts
 * claimed, bit p for part p. The generation wraps after 2^19 loops; a
 * worker only compares it with the one it saw last. */
#define GEN(t) ((uint32_t)((t) >> 45))
#define THREADS(t) ((unsigned)((t) >> 38) & 0x7fu)
#define PARTS(t) ((unsigned)((t) >> 32) & 0x3fu)
#define CLAIMED(t, p) ((t) >> (p) & 1u)
#define TICKET(gen, threads, parts) \
	((uint64_t)((gen) & 0x7ffffu) << 45 | (uint64_t)(threads) << 38 | (uint64_t)(parts) << 32)

static struct {
	pthread_mutex_t submit; /* one loop at a time */
	pthread_mutex_t lock;	/* sleeping, waiting and the two conditions */
	pthread_cond_t wake;	/* a new loop was posted, or stop */
	pthread_cond_t done;	/* a worker finished a part */
	_Atomic uint64_t ticket;
	atomic_uint finished; /* parts of this loop that workers finished */
	atomic_bool stop;
	int sleeping, waiting;
	int nworkers;
	pthread_t tid[MAX_WORKERS];
	/* the current loop, written before its ticket is posted */
	tg_range_fn fn;
	void *arg;
	size_t n, align;
} pool = {
	.submit = PTHREAD_MUTEX_INITIALIZER,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wake = PTHREAD_COND_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER,
};

/* The start of part p of parts over [0, n): a multiple of align. */
static size_t bound(size_t n, size_t align, unsigned p, unsigned parts)
{
	if (p >= parts)
		return n;
	size_t q = parts, b = n / q * p + n % q * p / q; /* n p / q */
	return b / align * align;
}

/* Claims and runs parts of the loop of generation gen until none is left,
 * from the first of the share of thread `me` (0 the caller, w + 1 worker
 * w) on, round to the part before it; the number run. Only the caller and
 * the first threads - 1 workers take part: a pool grown by a context of
 * more threads leaves its other workers idle, so that a loop runs on its
 * context's threads. The loop's fields stay put while a claimed part
 * runs: the caller waits for it. */
static unsigned claim(uint32_t gen, unsigned me)
{
	unsigned ran = 0;
	uint64_t t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
	if (GEN(t) != gen || !PARTS(t) || me >= THREADS(t))
		return 0;
	const unsigned parts = PARTS(t), threads = THREADS(t);
	const unsigned first = me % threads * parts / threads;
	for (unsigned i = 0; i < parts && GEN(t) == gen;) {
		unsigned p = (first + i) % parts;
		if (CLAIMED(t, p)) {
			i++;
			continue;
		}
		if (!atomic_compare_exchange_weak_explicit(&pool.ticket, &t, t | (uint64_t)1 << p,
							   memory_order_acq_rel,
							   memory_order_acquire))
			continue;
		size_t lo = bound(pool.n, pool.align, p, parts);
		size_t hi = bound(pool.n, pool.align, p + 1, parts);
		if (lo < hi)
			pool.fn(pool.arg, lo, hi);
		ran++;
		i++;
		t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
	}
	return ran;
}

static void *worker(void *argp)
{
	/* the generation when it started << 8 | its index */
	uint32_t seen = (uint32_t)((uintptr_t)argp >> 8);
	unsigned me = (unsigned)((uintptr_t)argp & 0xffu) + 1;
	for (;;) {
		uint32_t g;
		for (int s = 0;
		     (g = GEN(atomic_load_explicit(&pool.ticket, memory_order_acquire))) == seen &&
		     s < SPIN;
		     s++)
			relax();
		if (g == seen) {
			pthread_mutex_lock(&pool.lock);
			while ((g = GEN(atomic_load(&pool.ticket))) == seen) {
				pool.sleeping++;
				pthread_cond_wait(&pool.wake, &pool.lock);
				pool.sleeping--;
			}
			pthread_mutex_unlock(&pool.lock);
		}
		seen = g;
		if (atomic_load(&pool.stop))
			return NULL;
		unsigned ran = claim(g, me);
		if (ran) {
			atomic_fetch_add_explicit(&pool.finished, ran, memory_order_release);
			pthread_mutex_lock(&pool.lock);
			if (pool.waiting)
				pthread_cond_signal(&pool.done);
			pthread_mutex_unlock(&pool.lock);
		}
	}
}

/* Posts a new generation with parts parts shared by threads threads (0 and
 * 0 with stop set); its number. */
static uint32_t post(unsigned threads, unsigned parts)
{
	atomic_store_explicit(&pool.finished, 0, memory_order_relaxed);
	uint32_t gen = (GEN(atomic_load(&pool.ticket)) + 1) & 0x7ffffu;
	atomic_store_explicit(&pool.ticket, TICKET(gen, threads, parts), memory_order_release);
	pthread_mutex_lock(&pool.lock);
	if (pool.sleeping)
		pthread_cond_broadcast(&pool.wake);
	pthread_mutex_unlock(&pool.lock);
	return gen;
}

/* Until workers have finished `want` parts. */
static void wait_workers(unsigned want)
{
	for (int s = 0;
	     atomic_load_explicit(&pool.finished, memory_order_acquire) < want && s < SPIN; s++)
		relax();
	if (atomic_load_explicit(&pool.finished, memory_order_acquire) >= want)
		return;
	pthread_mutex_lock(&pool.lock);
	while (atomic_load(&pool.finished) < want) {
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
		uintptr_t gen = GEN(atomic_load(&pool.ticket));
		if (pthread_create(&pool.tid[w], NULL, worker, (void *)(gen << 8 | (uintptr_t)w)))
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
		post(0, 0);
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
	/* PER_THREAD parts a thread, MAX_PARTS in all, each of at least min / 4
	 * elements */
	size_t most = min >= 4 ? n / (min / 4) : n, want = (size_t)t * PER_THREAD;
	if (want > MAX_PARTS)
		want = MAX_PARTS;
	if (most < 2)
		most = 2;
	return (int)(most < want ? most : want);
}

/* ---- sums of long runs ------------------------------------------------------------- */

typedef struct block_sum_job {
	tg_block_sum_fn fn;
	void *arg;
	size_t n, block;
	double *partial; /* one sum per block */
} block_sum_job;

static void block_sum_part(void *arg, size_t lo, size_t hi)
{
	const block_sum_job *j = arg;
	for (size_t b = lo; b < hi; b++) {
		size_t s = b * j->block, m = j->n - s < j->block ? j->n - s : j->block;
		j->partial[b] = j->fn(j->arg, s, m);
	}
}

double tg_parallel_sum(const tg_ctx *ctx, size_t n, tg_block_sum_fn fn, void *arg)
{
	if (n <= TG_SUM_BLOCK)
		return fn(arg, 0, n);
	size_t block = (n + TG_SUM_BLOCKS - 1) / TG_SUM_BLOCKS;
	block = block > TG_SUM_BLOCK ? (block + 255) / 256 * 256 : TG_SUM_BLOCK;
	double partial[TG_SUM_BLOCKS];
	block_sum_job j = { fn, arg, n, block, partial };
	size_t nb = (n + block - 1) / block;
	tg_parallel_for(ctx, nb, 2, 1, block_sum_part, &j);
	double s = 0;
	for (size_t b = 0; b < nb; b++)
		s += partial[b];
	return s;
}

typedef struct column_sums_job {
	tg_rows_sum_fn fn;
	void *arg;
	size_t rows, block;
	double *partial; /* TG_SUM_NARROW doubles per block */
} column_sums_job;

static void column_sums_part(void *arg, size_t lo, size_t hi)
{
	const column_sums_job *j = arg;
	for (size_t b = lo; b < hi; b++) {
		size_t r = b * j->block, m = j->rows - r < j->block ? j->rows - r : j->block;
		double *p = j->partial + b * TG_SUM_NARROW;
		memset(p, 0, TG_SUM_NARROW * sizeof *p);
		j->fn(j->arg, r, m, p);
	}
}

void tg_parallel_column_sums(const tg_ctx *ctx, size_t rows, size_t w, tg_rows_sum_fn fn,
			     void *arg, double *acc)
{
	assert(w >= 1 && w < TG_SUM_NARROW);
	if (rows * w <= TG_SUM_BLOCK) {
		fn(arg, 0, rows, acc);
		return;
	}
	size_t least = (TG_SUM_BLOCK + w - 1) / w; /* rows of a block */
	size_t block = (rows + TG_SUM_BLOCKS - 1) / TG_SUM_BLOCKS;
	block = block > least ? (block + 255) / 256 * 256 : (least + 255) / 256 * 256;
	double partial[TG_SUM_BLOCKS * TG_SUM_NARROW];
	column_sums_job j = { fn, arg, rows, block, partial };
	size_t nb = (rows + block - 1) / block;
	tg_parallel_for(ctx, nb, 2, 1, column_sums_part, &j);
	for (size_t b = 0; b < nb; b++)
		for (size_t c = 0; c < w; c++)
			acc[c] += partial[b * TG_SUM_NARROW + c];
}

/* The parts of a loop one after another on the calling thread, cut as the
 * pool cuts them: a loop whose parts do sums of their own (a product's
 * bands, engine/gemm.c) gives the same bits whether the pool ran it or
 * another thread's loop held the pool. */
static void run_alone(size_t n, size_t align, unsigned parts, tg_range_fn fn, void *arg)
{
	for (unsigned p = 0; p < parts; p++) {
		size_t lo = bound(n, align, p, parts), hi = bound(n, align, p + 1, parts);
		if (lo < hi)
			fn(arg, lo, hi);
	}
}

void tg_parallel_split(const tg_ctx *ctx, size_t n, size_t min, size_t align, tg_range_fn fn,
		       void *arg)
{
	int parts = tg_parallel_parts(ctx, n, min);
	align = align ? align : 1;
	if (parts <= 1) {
		fn(arg, 0, n);
		return;
	}
	if (pthread_mutex_trylock(&pool.submit)) {
		run_alone(n, align, (unsigned)parts, fn, arg);
		return;
	}
	grow(ctx->threads - 1 < MAX_WORKERS ? ctx->threads - 1 : MAX_WORKERS);
	if (!pool.nworkers) {
		pthread_mutex_unlock(&pool.submit);
		run_alone(n, align, (unsigned)parts, fn, arg);
		return;
	}
	pool.fn = fn;
	pool.arg = arg;
	pool.n = n;
	pool.align = align;
	int threads = ctx->threads < MAX_WORKERS + 1 ? ctx->threads : MAX_WORKERS + 1;
	uint32_t gen = post((unsigned)threads, (unsigned)parts);
	unsigned mine = claim(gen, 0);
	wait_workers((unsigned)parts - mine);
	pthread_mutex_unlock(&pool.submit);
}
