/*
 * transpose.c - the one permute kernel of ops/ (transpose.h), behind
 * tg_permute (shape.c) and tg_transpose (matrix.c).
 *
 * A permutation is simplified first (plan_of): what remains is either
 * copies of contiguous runs or, for each index of the other axes, a 2-D
 * transpose. Large copies are split across the context's threads, in whole
 * runs or in column strips of the transposes; every element is copied by
 * one thread, so any split gives the same bytes.
 *
 * The 2-D transpose: where the CPU has AVX-512, whole 16x16 blocks of
 * floats (8x8 of doubles) in registers, each row of a block one cache line
 * when the blocks' grid is shifted to X's and Y's line boundaries, so that
 * every line is read or written once, whole; where it has AVX2, 8x8 blocks
 * (4x4 of doubles) visited in panels, so that the lines they write are
 * filled before they leave the cache; the edges, and every other CPU, go
 * through a buffered tile. A large output (TG_STREAM_MIN bytes or more) is
 * written past the cache, with non-temporal stores, which do not read each
 * line in before writing it whole. All of them only move bits: NaN payloads
 * and signed zeros arrive as they were.
 *
 * Each also adds instead (tg_permute_grad_sum, a gradient taking a permuted
 * one): Y + X element by element as the accumulate of a permuted copy
 * would, so the sum has its bits, in one pass where the copy and the
 * accumulate made two (and the copy's output went to memory and back).
 */
#include "transpose.h"
#include "parallel.h"

#include <string.h>

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
#define TRANSPOSE_TILES(name, T, PUT)                                                \
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
						PUT(yt[a * ldy + b], buf[a][b]);     \
			}                                                            \
	}

#define COPY(y, v) ((y) = (v))
#define ADD(y, v) ((y) = (y) + (v))
TRANSPOSE_TILES(tiles_8, uint64_t, COPY)
TRANSPOSE_TILES(tiles_4, uint32_t, COPY)
TRANSPOSE_TILES(tiles_add_8, double, ADD)
TRANSPOSE_TILES(tiles_add_4, float, ADD)
#undef COPY
#undef ADD

static void tiles(size_t es, bool add, const void *X, void *Y, int64_t rows, int64_t cols,
		  int64_t ldx, int64_t ldy)
{
	if (add && es == 8)
		tiles_add_8(X, Y, rows, cols, ldx, ldy);
	else if (add)
		tiles_add_4(X, Y, rows, cols, ldx, ldy);
	else if (es == 8)
		tiles_8(X, Y, rows, cols, ldx, ldy);
	else
		tiles_4(X, Y, rows, cols, ldx, ldy);
}

/* ---- whole blocks in AVX2 registers ------------------------------------------ */

#if TR_X86
#define AVX2 __attribute__((target("avx2")))

/* The 8x8 floats at x (rows ldx apart) to y (rows ldy apart), or added to
 * it. Loads and shuffles of __m256 go through may-alias vector types, so
 * the uint32_t elements are read as they are. */
AVX2 static inline __attribute__((always_inline)) void
block_4(const uint32_t *x, uint32_t *y, int64_t ldx, int64_t ldy, bool add)
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
#define PUT(i, v)                                                                        \
	do {                                                                             \
		float *at_ = (float *)(void *)(y + (i) * ldy);                          \
		_mm256_storeu_ps(at_, add ? _mm256_add_ps(_mm256_loadu_ps(at_), v) : v); \
	} while (0)
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
AVX2 static inline __attribute__((always_inline)) void
block_8(const uint64_t *x, uint64_t *y, int64_t ldx, int64_t ldy, bool add)
{
#define ROW(i) _mm256_loadu_pd((const double *)(const void *)(x + (i) * ldx))
	__m256d r0 = ROW(0), r1 = ROW(1), r2 = ROW(2), r3 = ROW(3);
#undef ROW
	__m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
	__m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
#define PUT(i, v)                                                                        \
	do {                                                                             \
		double *at_ = (double *)(void *)(y + (i) * ldy);                        \
		_mm256_storeu_pd(at_, add ? _mm256_add_pd(_mm256_loadu_pd(at_), v) : v); \
	} while (0)
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
#define VECTOR_BLOCKS(name, T, V, block, add)                                        \
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
						      ldx, ldy, add);                \
			}                                                            \
	}

VECTOR_BLOCKS(blocks_4, uint32_t, 8, block_4, false)
VECTOR_BLOCKS(blocks_8, uint64_t, 4, block_8, false)
VECTOR_BLOCKS(blocks_add_4, uint32_t, 8, block_4, true)
VECTOR_BLOCKS(blocks_add_8, uint64_t, 4, block_8, true)

/* ---- whole lines in AVX-512 registers ----------------------------------------- */

#define AVX512 __attribute__((target("avx512f")))

/* Y's row i of a block: added to what it holds (add), or stored past the
 * cache (nt) or through it. */
#define PUT512(T, i, v)                                                                  \
	do {                                                                             \
		T *at_ = (T *)(void *)(y + (i) * ldy);                                  \
		if (add)                                                                 \
			STORE(at_, SUM(LOAD(at_), v));                                   \
		else if (nt)                                                             \
			STREAM(at_, v);                                                  \
		else                                                                     \
			STORE(at_, v);                                                   \
	} while (0)

/* v transposed: lane i of v[j] becomes lane j of v[i] (pairs of rows
 * interleaved, then quads, then the 128-bit quarters twice) */
AVX512 static inline __attribute__((always_inline)) void transpose16(__m512 v[16])
{
	__m512 t[16];
	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
		t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
	}
	/* v[4g + j], quarter q: column 4q + j of rows 4g to 4g + 3 */
	for (int i = 0; i < 16; i += 4) {
		v[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
		v[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
		v[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
		v[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
	}
	for (int j = 0; j < 4; j++) {
		/* quarters 0 and 2 of groups 0, 1 (v0) and 2, 3 (v2); 1 and 3 in v1, v3 */
		__m512 v0 = _mm512_shuffle_f32x4(v[j], v[4 + j], 0x88);
		__m512 v1 = _mm512_shuffle_f32x4(v[j], v[4 + j], 0xdd);
		__m512 v2 = _mm512_shuffle_f32x4(v[8 + j], v[12 + j], 0x88);
		__m512 v3 = _mm512_shuffle_f32x4(v[8 + j], v[12 + j], 0xdd);
		t[j] = _mm512_shuffle_f32x4(v0, v2, 0x88);
		t[4 + j] = _mm512_shuffle_f32x4(v1, v3, 0x88);
		t[8 + j] = _mm512_shuffle_f32x4(v0, v2, 0xdd);
		t[12 + j] = _mm512_shuffle_f32x4(v1, v3, 0xdd);
	}
	for (int i = 0; i < 16; i++)
		v[i] = t[i];
}

/* The 16x16 floats at x to y. */
AVX512 static inline __attribute__((always_inline)) void
line_block_4(const uint32_t *x, uint32_t *y, int64_t ldx, int64_t ldy, bool nt, bool add)
{
#define STREAM _mm512_stream_ps
#define STORE _mm512_storeu_ps
#define LOAD _mm512_loadu_ps
#define SUM _mm512_add_ps
	__m512 r[16];
	for (int i = 0; i < 16; i++)
		r[i] = _mm512_loadu_ps((const float *)(const void *)(x + i * ldx));
	transpose16(r);
	for (int i = 0; i < 16; i++)
		PUT512(float, i, r[i]);
#undef STREAM
#undef STORE
#undef LOAD
#undef SUM
}

/* The 8x8 doubles at x to y, the same way from the pairs on. */
AVX512 static inline __attribute__((always_inline)) void
line_block_8(const uint64_t *x, uint64_t *y, int64_t ldx, int64_t ldy, bool nt, bool add)
{
#define STREAM _mm512_stream_pd
#define STORE _mm512_storeu_pd
#define LOAD _mm512_loadu_pd
#define SUM _mm512_add_pd
	__m512d r[8], t[8];
	for (int i = 0; i < 8; i++)
		r[i] = _mm512_loadu_pd((const double *)(const void *)(x + i * ldx));
	/* t[2g + h], quarter q: column 2q + h of rows 2g, 2g + 1 */
	for (int i = 0; i < 8; i += 2) {
		t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
	}
	for (int h = 0; h < 2; h++) {
		__m512d v0 = _mm512_shuffle_f64x2(t[h], t[2 + h], 0x88);
		__m512d v1 = _mm512_shuffle_f64x2(t[h], t[2 + h], 0xdd);
		__m512d v2 = _mm512_shuffle_f64x2(t[4 + h], t[6 + h], 0x88);
		__m512d v3 = _mm512_shuffle_f64x2(t[4 + h], t[6 + h], 0xdd);
		PUT512(double, h, _mm512_shuffle_f64x2(v0, v2, 0x88));
		PUT512(double, 2 + h, _mm512_shuffle_f64x2(v1, v3, 0x88));
		PUT512(double, 4 + h, _mm512_shuffle_f64x2(v0, v2, 0xdd));
		PUT512(double, 6 + h, _mm512_shuffle_f64x2(v1, v3, 0xdd));
	}
#undef STREAM
#undef STORE
#undef LOAD
#undef SUM
}
#undef PUT512

/* rows x cols, multiples of the block's side V (one line of elements),
 * in panels of pr rows of X (a multiple of V), a column of a panel's
 * blocks at a time: its V rows of Y are written in order, and every line
 * of X and Y is touched once. */
#define LINE_BLOCKS(name, T, V, block, add)                                          \
	AVX512 static void name(const T *X, T *Y, int64_t rows, int64_t cols, int64_t ldx, \
				int64_t ldy, bool nt, int64_t pr)                    \
	{                                                                            \
		for (int64_t b0 = 0; b0 < rows; b0 += pr) {                          \
			int64_t b1 = rows - b0 < pr ? rows : b0 + pr;                \
			for (int64_t a = 0; a < cols; a += V)                        \
				for (int64_t b = b0; b < b1; b += V)                 \
					block(X + b * ldx + a, Y + a * ldy + b, ldx, ldy, nt, \
					      add);                                  \
		}                                                                    \
		if (nt)                                                              \
			_mm_sfence(); /* ordered before any later store */          \
	}

LINE_BLOCKS(lines_4, uint32_t, 16, line_block_4, false)
LINE_BLOCKS(lines_8, uint64_t, 8, line_block_8, false)
LINE_BLOCKS(lines_add_4, uint32_t, 16, line_block_4, true)
LINE_BLOCKS(lines_add_8, uint64_t, 8, line_block_8, true)

/* Elements from p to its next line boundary (0 when p is not on an
 * element boundary of its own). */
static int64_t to_line(const void *p, size_t es)
{
	uintptr_t off = (uintptr_t)p % 64;
	return off % es == 0 ? (int64_t)((64 - off) % 64 / es) : 0;
}
#endif

/* ---- the 2-D transpose ----------------------------------------------------------- */

/* Y[a * ldy + b] = X[b * ldx + a] (add: Y[a * ldy + b] += X[b * ldx + a])
 * through the AVX2 blocks and the tile. */
static void blocks_or_tiles(size_t es, bool add, const char *X, char *Y, int64_t rows,
			    int64_t cols, int64_t ldx, int64_t ldy)
{
#if TR_X86
	const int64_t V = es == 8 ? 4 : 8; /* the block's side */
	if (rows >= V && cols >= V && __builtin_cpu_supports("avx2")) {
		const int64_t rv = rows / V * V, cv = cols / V * V;
		const void *x = X;
		void *y = Y;
		if (es == 8)
			(add ? blocks_add_8 : blocks_8)(x, y, rv, cv, ldx, ldy);
		else
			(add ? blocks_add_4 : blocks_4)(x, y, rv, cv, ldx, ldy);
		/* the edges: X's last rows % V rows whole, then the last
		 * cols % V columns of the rows above them */
		tiles(es, add, X + (size_t)(rv * ldx) * es, Y + (size_t)rv * es, rows - rv, cols,
		      ldx, ldy);
		tiles(es, add, X + (size_t)cv * es, Y + (size_t)(cv * ldy) * es, rv, cols - cv,
		      ldx, ldy);
		return;
	}
#endif
	tiles(es, add, X, Y, rows, cols, ldx, ldy);
}

/* The same, with AVX-512 where the CPU has it and rows of X and Y are
 * whole lines apart: the line blocks cover rows [b0, b1) and columns
 * [a0, a1) of X, b0 and a0 the first that start lines of Y and X; the four
 * strips around them go through blocks_or_tiles. Other row lengths keep
 * the AVX2 panels, which were faster for them: the line blocks of
 * (1000,3000) floats took 4.7 ms against 3.9, of (300,300) 59 us against
 * 38. */
static void transpose_2d(size_t es, bool add, const char *X, char *Y, int64_t rows,
			 int64_t cols, int64_t ldx, int64_t ldy, bool stream)
{
#if TR_X86
	const int64_t V = (int64_t)(64 / es);
	if (rows >= 2 * V && cols >= 2 * V && (ldx * (int64_t)es) % 64 == 0 &&
	    (ldy * (int64_t)es) % 64 == 0 && __builtin_cpu_supports("avx512f")) {
		const int64_t b0 = to_line(Y, es), a0 = to_line(X, es);
		const int64_t b1 = b0 + (rows - b0) / V * V, a1 = a0 + (cols - a0) / V * V;
		/* past the cache only when every row of a block is a whole line */
		const bool nt = stream && (uintptr_t)(Y + (size_t)b0 * es) % 64 == 0;
		const char *x = X + (size_t)(b0 * ldx + a0) * es;
		char *y = Y + (size_t)(a0 * ldy + b0) * es;
		/* X's rows a page or more apart: whole columns of blocks walked a
		 * page of X for every line they read, from top to bottom for each
		 * 64 bytes of its columns; panels of 512 rows, here (an AMD EPYC
		 * with AVX-512, one thread, streamed, medians of 7 runs of 21):
		 * (4096,1024) floats 1.29 -> 0.82 ms, (2048,2048) 1.12 -> 0.87,
		 * (2048,1024) doubles 1.42 -> 0.99, (1024,4096) floats the same.
		 * Shorter rows keep whole columns: panels made the forward and
		 * backward of a (8192,256) or (4096,512) transpose 5 to 8%
		 * slower. */
		const int64_t pr = ldx * (int64_t)es >= 4096 ? 512 : b1 - b0;
		if (es == 8)
			(add ? lines_add_8 : lines_8)((const void *)x, (void *)y, b1 - b0, a1 - a0,
						      ldx, ldy, nt, pr);
		else
			(add ? lines_add_4 : lines_4)((const void *)x, (void *)y, b1 - b0, a1 - a0,
						      ldx, ldy, nt, pr);
		blocks_or_tiles(es, add, X, Y, b0, cols, ldx, ldy);
		blocks_or_tiles(es, add, X + (size_t)(b1 * ldx) * es, Y + (size_t)b1 * es,
				rows - b1, cols, ldx, ldy);
		blocks_or_tiles(es, add, X + (size_t)(b0 * ldx) * es, Y + (size_t)b0 * es,
				b1 - b0, a0, ldx, ldy);
		blocks_or_tiles(es, add, X + (size_t)(b0 * ldx + a1) * es,
				Y + (size_t)(a1 * ldy + b0) * es, b1 - b0, cols - a1, ldx, ldy);
		return;
	}
#endif
	(void)stream;
	blocks_or_tiles(es, add, X, Y, rows, cols, ldx, ldy);
}

/* ---- many small transposes: channel blocks ------------------------------------------ */

/* Y_i (cols, rows) = X_i^T for count matrices X_i (rows, cols) one after
 * the other, on the calling thread: the layouts of a convolution's blocked
 * channels (conv_dnnl.c), rows or cols being the block of channels. A
 * block of 16 floats is one cache line, and AVX-512's line blocks take 16
 * lines whole on both sides; other sizes go through the 2-D transpose. */
void tg_transpose_batch(size_t es, const void *X, void *Y, int64_t count, int64_t rows,
			int64_t cols)
{
	const size_t each = (size_t)(rows * cols) * es;
#if TR_X86
	enum { V = 16 };
	const bool lines = es == 4 && (rows == V || cols == V) && rows >= V && cols >= V &&
			   __builtin_cpu_supports("avx512f");
#else
	const bool lines = false;
#endif
	for (int64_t i = 0; i < count; i++) {
		const char *x = (const char *)X + (size_t)i * each;
		char *y = (char *)Y + (size_t)i * each;
		if (!lines) {
			transpose_2d(es, false, x, y, rows, cols, cols, rows, false);
			continue;
		}
#if TR_X86
		/* the long side in steps of V, its last V - 1 or fewer by the tile */
		const int64_t n = rows == V ? cols : rows, nv = n / V * V;
		if (rows == V) {
			lines_4((const void *)x, (void *)y, V, nv, cols, V, false, V);
			tiles(es, false, x + (size_t)nv * es, y + (size_t)(nv * V) * es, V,
			      cols - nv, cols, V);
		} else {
			lines_4((const void *)x, (void *)y, nv, V, V, rows, false, nv);
			tiles(es, false, x + (size_t)(nv * V) * es, y + (size_t)nv * es, rows - nv,
			      V, V, rows);
		}
#endif
	}
}

/* ---- a last, padded block of channels ------------------------------------------------ */

/* The r planes x (r, hw) into y (hw, B), lanes r.. zero (a NaN there
 * would reach a convolution's sums through the zero weights of its padded
 * channels), from position p0; out: back, the padding left out. */
static void pad_in(const float *restrict x, float *restrict y, int64_t r, int64_t B, int64_t hw,
		   int64_t p0)
{
	for (int64_t p = p0; p < hw; p++) {
		float *o = y + p * B;
		for (int64_t c = 0; c < r; c++)
			o[c] = x[c * hw + p];
		for (int64_t c = r; c < B; c++)
			o[c] = 0;
	}
}

static void pad_out(const float *restrict y, float *restrict x, int64_t r, int64_t B, int64_t hw,
		    int64_t p0)
{
	for (int64_t p = p0; p < hw; p++)
		for (int64_t c = 0; c < r; c++)
			x[c * hw + p] = y[p * B + c];
}

#if TR_X86
/* the same for B = 16, 16 positions at a time in registers (one at a time
 * was no faster than oneDNN's reorder) */
AVX512 static void pad16_in(const float *x, float *y, int64_t r, int64_t hw)
{
	int64_t p = 0;
	for (; p + 16 <= hw; p += 16) {
		__m512 v[16];
		for (int c = 0; c < 16; c++)
			v[c] = c < r ? _mm512_loadu_ps(x + c * hw + p) : _mm512_setzero_ps();
		transpose16(v);
		for (int q = 0; q < 16; q++)
			_mm512_storeu_ps(y + (p + q) * 16, v[q]);
	}
	pad_in(x, y, r, 16, hw, p);
}

AVX512 static void pad16_out(const float *y, float *x, int64_t r, int64_t hw)
{
	int64_t p = 0;
	for (; p + 16 <= hw; p += 16) {
		__m512 v[16];
		for (int q = 0; q < 16; q++)
			v[q] = _mm512_loadu_ps(y + (p + q) * 16);
		transpose16(v);
		for (int c = 0; c < r; c++)
			_mm512_storeu_ps(x + c * hw + p, v[c]);
	}
	pad_out(y, x, r, 16, hw, p);
}
#endif

void tg_transpose_pad(bool in, const float *from, float *to, int64_t r, int64_t B, int64_t hw)
{
#if TR_X86
	if (B == 16 && __builtin_cpu_supports("avx512f")) {
		(in ? pad16_in : pad16_out)(from, to, r, hw);
		return;
	}
#endif
	(in ? pad_in : pad_out)(from, to, r, B, hw, 0);
}

/* ---- permute: the plan ----------------------------------------------------------- */
/* Axes of size 1 are dropped, and two axes that are neighbours in both x
 * and out, in the same order, are merged. What remains is either a copy of
 * contiguous runs (x's last axis stays last: (B,N,M) -> (N,B,M)) or, for
 * each index of the other axes, a 2-D transpose between x's last axis A
 * and out's last axis B ((N,M) -> (M,N), (B,N,M) -> (B,M,N)). */

typedef struct plan {
	int k;                   /* axes left, in x's order */
	int64_t n[TG_MAX_DIMS];  /* sizes */
	int64_t sx[TG_MAX_DIMS]; /* element strides in x */
	int64_t sy[TG_MAX_DIMS]; /* element strides in out */
} plan;

static plan plan_of(const tg_tensor *x, const int *perm)
{
	int64_t sx[TG_MAX_DIMS], sy[TG_MAX_DIMS];
	int64_t s = 1;
	for (int i = x->ndim - 1; i >= 0; i--) {
		sx[i] = s;
		s *= x->shape[i];
	}
	s = 1;
	for (int j = x->ndim - 1; j >= 0; j--) {
		sy[perm[j]] = s;
		s *= x->shape[perm[j]];
	}
	plan p = { 0 };
	for (int i = 0; i < x->ndim; i++) {
		if (x->shape[i] == 1)
			continue;
		int k = p.k;
		if (k > 0 && p.sx[k - 1] == x->shape[i] * sx[i] &&
		    p.sy[k - 1] == x->shape[i] * sy[i]) {
			p.n[k - 1] *= x->shape[i]; /* contiguous in both: one axis */
			p.sx[k - 1] = sx[i];
			p.sy[k - 1] = sy[i];
			continue;
		}
		p.n[k] = x->shape[i];
		p.sx[k] = sx[i];
		p.sy[k] = sy[i];
		p.k++;
	}
	return p;
}

/* ---- permute: the copies, split into units ----------------------------------------- */

/* Y[i] = Y[i] + X[i] for a run of n floats or doubles: the accumulate's
 * sum, in its order. */
#define ADD_RUN(name, T)                                                             \
	TG_HOT_LOOP static void name(const T *X, T *Y, size_t n)                     \
	{                                                                            \
		for (size_t i = 0; i < n; i++)                                       \
			Y[i] = Y[i] + X[i];                                          \
	}

ADD_RUN(add_run_8, double)
ADD_RUN(add_run_4, float)

static void add_run(size_t es, const void *X, void *Y, size_t n)
{
	if (es == 8)
		add_run_8(X, Y, n);
	else
		add_run_4(X, Y, n);
}
/* A unit is one run, or one column strip of one index's transpose; units
 * go index by index, strip by strip. */

typedef struct permute_job {
	plan p;
	size_t es;
	const char *X;
	char *Y;
	int m, ax[TG_MAX_DIMS]; /* the axes walked outside the copies, outermost first */
	int A, B;               /* x's last axis; out's last (-1: runs) */
	int64_t strips, width;  /* per index: strips of width columns of A */
	int64_t bands, height;  /* per strip: bands of height rows of B */
	bool stream;
	bool add;               /* Y += the permuted X */
} permute_job;

/* The element offsets in x and out of index i of the walked axes, with
 * its digits in cnt. */
static void seek(const permute_job *j, int64_t i, int64_t *cnt, int64_t *xo, int64_t *yo)
{
	*xo = *yo = 0;
	for (int d = j->m - 1; d >= 0; d--) {
		int a = j->ax[d];
		cnt[d] = i % j->p.n[a];
		i /= j->p.n[a];
		*xo += cnt[d] * j->p.sx[a];
		*yo += cnt[d] * j->p.sy[a];
	}
}

/* The next index's offsets, the last axis fastest. */
static void step(const permute_job *j, int64_t *cnt, int64_t *xo, int64_t *yo)
{
	for (int d = j->m - 1; d >= 0; d--) {
		int a = j->ax[d];
		*xo += j->p.sx[a];
		*yo += j->p.sy[a];
		if (++cnt[d] < j->p.n[a])
			return;
		*xo -= j->p.sx[a] * j->p.n[a];
		*yo -= j->p.sy[a] * j->p.n[a];
		cnt[d] = 0;
	}
}

static void permute_part(void *arg, size_t lo, size_t hi)
{
	const permute_job *j = arg;
	const plan *p = &j->p;
	const size_t es = j->es;
	int64_t cnt[TG_MAX_DIMS], xo, yo;
	if (j->B < 0) {
		const size_t run = (size_t)p->n[j->A] * es;
		seek(j, (int64_t)lo, cnt, &xo, &yo);
		for (size_t u = lo; u < hi; u++) {
			if (j->add)
				add_run(es, j->X + (size_t)xo * es, j->Y + (size_t)yo * es,
					(size_t)p->n[j->A]);
			else
				memcpy(j->Y + (size_t)yo * es, j->X + (size_t)xo * es, run);
			step(j, cnt, &xo, &yo);
		}
		return;
	}
	const int64_t na = p->n[j->A], nb = p->n[j->B], per = j->strips * j->bands;
	int64_t s = (int64_t)lo % per;
	seek(j, (int64_t)lo / per, cnt, &xo, &yo);
	for (size_t u = lo; u < hi; u++) {
		int64_t a0 = s / j->bands * j->width, w = na - a0 < j->width ? na - a0 : j->width;
		int64_t b0 = s % j->bands * j->height, h = nb - b0 < j->height ? nb - b0 : j->height;
		transpose_2d(es, j->add, j->X + (size_t)(xo + b0 * p->sx[j->B] + a0) * es,
			     j->Y + (size_t)(yo + a0 * p->sy[j->A] + b0) * es, h, w, p->sx[j->B],
			     p->sy[j->A], j->stream);
		if (++s == per) {
			s = 0;
			step(j, cnt, &xo, &yo);
		}
	}
}

static void permute_into(const tg_tensor *x, const int *perm, tg_tensor *out, bool add)
{
	permute_job j = { .p = plan_of(x, perm), .es = tg_dtype_size(x->dtype),
			  .X = x->data, .Y = out->data, .B = -1, .strips = 1, .bands = 1,
			  .add = add };
	const plan *p = &j.p;
	if (p->k == 0) { /* one element, or none */
		if (add)
			add_run(j.es, j.X, j.Y, (size_t)x->numel);
		else
			memcpy(j.Y, j.X, x->numel * j.es);
		return;
	}
	j.A = p->k - 1; /* stride 1 in x */
	if (p->sy[j.A] != 1) {
		j.B = 0;
		while (p->sy[j.B] != 1)
			j.B++;
	}
	for (int i = 0; i < j.A; i++)
		if (i != j.B)
			j.ax[j.m++] = i;
	size_t indices = 1;
	for (int d = 0; d < j.m; d++)
		indices *= (size_t)p->n[j.ax[d]];
	size_t units = indices;
	if (j.B >= 0) {
		const int64_t na = p->n[j.A], nb = p->n[j.B];
		j.stream = !add && x->numel * j.es >= TG_STREAM_MIN; /* an add reads Y */
		j.width = na;
		j.height = nb;
		/* strips of whole lines, enough for every thread to take a few;
		 * when A is too short for that (a (1000000,4) transpose), bands
		 * of whole lines of B in each strip instead */
		int parts = tg_parallel_parts(x->ctx, x->numel, TG_PAR_MIN);
		if (parts > 1 && indices < 4 * (size_t)parts) {
			int64_t want = (int64_t)((4 * (size_t)parts + indices - 1) / indices);
			int64_t w = ((na + want - 1) / want + 63) / 64 * 64;
			if (w < na)
				j.width = w;
		}
		j.strips = (na + j.width - 1) / j.width;
		if (parts > 1 && indices * (size_t)j.strips < 4 * (size_t)parts) {
			size_t have = indices * (size_t)j.strips;
			int64_t want = (int64_t)((4 * (size_t)parts + have - 1) / have);
			int64_t h = ((nb + want - 1) / want + 63) / 64 * 64;
			if (h < nb)
				j.height = h;
		}
		j.bands = (nb + j.height - 1) / j.height;
		units = indices * (size_t)(j.strips * j.bands);
	}
	size_t per_unit = x->numel / units ? x->numel / units : 1;
	size_t min_units = (TG_PAR_MIN + per_unit - 1) / per_unit;
	tg_parallel_for(x->ctx, units, min_units > 1 ? min_units : 2, 1, permute_part, &j);
}

tg_tensor *tg_permuted(tg_tensor *x, const int *perm, const char *who)
{
	int64_t shape[TG_MAX_DIMS];
	for (int j = 0; j < x->ndim; j++)
		shape[j] = x->shape[perm[j]];
	/* one axis left once those of size 1 go and neighbours merge: the
	 * elements keep their order */
	tg_tensor *out = tg_tensor_alias(x, who, plan_of(x, perm).k <= 1, 0, x->ndim, shape);
	if (out && !out->shares)
		permute_into(x, perm, out, false);
	return out;
}

bool tg_permute_grad_sum(tg_node *n, tg_tensor *dout, const int *perm)
{
	tg_tensor *x = n->in[0];
	if (x->numel < TG_GRAD_INTO_MIN || !tg_ok(x->ctx))
		return false;
	tg_tensor *sum = tg_node_grad_sum_buffer(n, 0);
	if (!sum || sum->data == dout->data || dout->dtype != sum->dtype)
		return false;
	permute_into(dout, perm, sum, true);
	tg_node_grad_summed(n, 0);
	return true;
}
