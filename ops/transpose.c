/*
 * transpose.c - the one 2-D transpose of ops/ (transpose.h), behind
 * tg_transpose (matrix.c) and tg_permute (shape.c).
 *
 * Where the CPU has AVX2, whole 8x8 blocks of floats (4x4 of doubles) are
 * transposed in registers, visited in panels of a few KiB so that the lines
 * they write are filled before they leave the cache; the edges that do not
 * fill a block, and every other CPU, go through a buffered tile. Both only
 * move bits: NaN payloads and signed zeros arrive as they were.
 */
#include "transpose.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define TR_X86 1
#include <immintrin.h>
#else
#define TR_X86 0
#endif

/* ---- the buffered tile: any size, any CPU ------------------------------------ */

/* Each TILE x TILE tile goes through a buffer: its rows are read whole from
 * X and written whole to Y. Writing a column of Y at a time instead touches
 * TILE lines a power-of-two stride apart for each element, which share a
 * cache set and evict each other: five times slower for a (2048,2048)
 * float. */
#define TRANSPOSE_TILES(name, T)                                                     \
	static void name(const T *X, T *Y, int64_t rows, int64_t cols, int64_t ldx,  \
			 int64_t ldy)                                                \
	{                                                                            \
		enum { TILE = 16 };                                                  \
		T buf[TILE][TILE];                                                   \
		for (int64_t b0 = 0; b0 < rows; b0 += TILE)                          \
			for (int64_t a0 = 0; a0 < cols; a0 += TILE) {                \
				int64_t nb = rows - b0 < TILE ? rows - b0 : TILE;    \
				int64_t na = cols - a0 < TILE ? cols - a0 : TILE;    \
				const T *xt = X + b0 * ldx + a0;                     \
				T *yt = Y + a0 * ldy + b0;                           \
				for (int64_t b = 0; b < nb; b++)                     \
					for (int64_t a = 0; a < na; a++)             \
						buf[a][b] = xt[b * ldx + a];         \
				for (int64_t a = 0; a < na; a++)                     \
					for (int64_t b = 0; b < nb; b++)             \
						yt[a * ldy + b] = buf[a][b];         \
			}                                                            \
	}

TRANSPOSE_TILES(tiles_8, uint64_t)
TRANSPOSE_TILES(tiles_4, uint32_t)

static void tiles(size_t es, const void *X, void *Y, int64_t rows, int64_t cols, int64_t ldx,
		  int64_t ldy)
{
	if (es == 8)
		tiles_8(X, Y, rows, cols, ldx, ldy);
	else
		tiles_4(X, Y, rows, cols, ldx, ldy);
}

/* ---- whole blocks in AVX2 registers ------------------------------------------ */

#if TR_X86
#define AVX2 __attribute__((target("avx2")))

/* The 8x8 floats at x (rows ldx apart) to y (rows ldy apart). Loads and
 * shuffles of __m256 go through may-alias vector types, so the uint32_t
 * elements are read as they are. */
AVX2 static inline void block_4(const uint32_t *x, uint32_t *y, int64_t ldx, int64_t ldy)
{
#define ROW(i) _mm256_loadu_ps((const float *)(const void *)(x + (i) * ldx))
	__m256 r0 = ROW(0), r1 = ROW(1), r2 = ROW(2), r3 = ROW(3);
	__m256 r4 = ROW(4), r5 = ROW(5), r6 = ROW(6), r7 = ROW(7);
#undef ROW
	/* pairs of rows interleaved, then quads, then the 128-bit halves */
	__m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
	__m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
	__m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
	__m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
	__m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
	__m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
	__m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
	__m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
#define PUT(i, v) _mm256_storeu_ps((float *)(void *)(y + (i) * ldy), v)
	PUT(0, _mm256_permute2f128_ps(s0, s4, 0x20));
	PUT(1, _mm256_permute2f128_ps(s1, s5, 0x20));
	PUT(2, _mm256_permute2f128_ps(s2, s6, 0x20));
	PUT(3, _mm256_permute2f128_ps(s3, s7, 0x20));
	PUT(4, _mm256_permute2f128_ps(s0, s4, 0x31));
	PUT(5, _mm256_permute2f128_ps(s1, s5, 0x31));
	PUT(6, _mm256_permute2f128_ps(s2, s6, 0x31));
	PUT(7, _mm256_permute2f128_ps(s3, s7, 0x31));
#undef PUT
}

/* The 4x4 doubles at x to y, the same way. */
AVX2 static inline void block_8(const uint64_t *x, uint64_t *y, int64_t ldx, int64_t ldy)
{
#define ROW(i) _mm256_loadu_pd((const double *)(const void *)(x + (i) * ldx))
	__m256d r0 = ROW(0), r1 = ROW(1), r2 = ROW(2), r3 = ROW(3);
#undef ROW
	__m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
	__m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
#define PUT(i, v) _mm256_storeu_pd((double *)(void *)(y + (i) * ldy), v)
	PUT(0, _mm256_permute2f128_pd(t0, t2, 0x20));
	PUT(1, _mm256_permute2f128_pd(t1, t3, 0x20));
	PUT(2, _mm256_permute2f128_pd(t0, t2, 0x31));
	PUT(3, _mm256_permute2f128_pd(t1, t3, 0x31));
#undef PUT
}

/* rows x cols, both multiples of the block's side V, in panels of PR rows
 * of X by 128 bytes of its columns: inside a panel the blocks go down X's
 * rows, so that each line of Y they write in part is filled by the next
 * block or two while it is still in L1. Against the tile alone, here
 * (64-byte aligned, one thread): (1024,4096) floats 3.6 -> 1.8 ms,
 * (1000,3000) floats 2.4 -> 0.8 ms, (1024,4096) doubles 5.6 -> 4.7 ms;
 * other panel sizes from 64 to 512 bytes and 64 to 256 rows were no
 * better. */
#define VECTOR_BLOCKS(name, T, V, block)                                             \
	AVX2 static void name(const T *X, T *Y, int64_t rows, int64_t cols, int64_t ldx, \
			      int64_t ldy)                                           \
	{                                                                            \
		enum { PR = 128, PC = 128 / sizeof(T) };                             \
		for (int64_t b0 = 0; b0 < rows; b0 += PR)                            \
			for (int64_t a0 = 0; a0 < cols; a0 += PC) {                  \
				int64_t b1 = rows - b0 < PR ? rows : b0 + PR;        \
				int64_t a1 = cols - a0 < PC ? cols : a0 + PC;        \
				for (int64_t a = a0; a < a1; a += V)                 \
					for (int64_t b = b0; b < b1; b += V)         \
						block(X + b * ldx + a, Y + a * ldy + b, \
						      ldx, ldy);                     \
			}                                                            \
	}

VECTOR_BLOCKS(blocks_4, uint32_t, 8, block_4)
VECTOR_BLOCKS(blocks_8, uint64_t, 4, block_8)
#endif

void tg_transpose_tiles(size_t es, const void *X, void *Y, int64_t rows, int64_t cols,
			int64_t ldx, int64_t ldy)
{
#if TR_X86
	const int64_t V = es == 8 ? 4 : 8; /* the block's side */
	if (rows >= V && cols >= V && __builtin_cpu_supports("avx2")) {
		const int64_t rv = rows / V * V, cv = cols / V * V;
		if (es == 8)
			blocks_8(X, Y, rv, cv, ldx, ldy);
		else
			blocks_4(X, Y, rv, cv, ldx, ldy);
		/* the edges: X's last rows % V rows whole, then the last
		 * cols % V columns of the rows above them */
		const char *x = X;
		char *y = Y;
		tiles(es, x + (size_t)(rv * ldx) * es, y + (size_t)rv * es, rows - rv, cols, ldx,
		      ldy);
		tiles(es, x + (size_t)cv * es, y + (size_t)(cv * ldy) * es, rv, cols - cv, ldx,
		      ldy);
		return;
	}
#endif
	tiles(es, X, Y, rows, cols, ldx, ldy);
}
