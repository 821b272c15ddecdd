// Pipelined binary GEMM on 1-bit tensor cores (sm_80 / sm_90), built like CUTLASS's sm80 b1 GEMM: a large
// CTA tile, 64x64 warp tiles, a multi-stage cp.async shared-memory pipeline, ldmatrix fragment loads and
// 128-bit global accesses. It computes exactly what b1_tc_gemm (b1_tensorcore.cu) computes:
//
//   C[m, n] = K - 2 (popA[m] + popB[n]) + 4 sum_w popc(A[m, w] AND B[n, w])      (int32, C is M x N row-major)
//
// A (M, W) and B (N, W) are uint32 words packed LSB-first along K (qnnlib/bitpack.py layout), popA / popB
// their row popcounts, padding bits 0. Any M, N, W >= 0: out-of-range rows and words are loaded as 0 (cp.async
// zero-fill) and out-of-range stores are skipped. See b1_tensorcore.cu for the AND-popc identity and the
// m16n8k256 fragment layout (PTX ISA "Matrix Fragments for mma.m16n8k256"), with g = lane >> 2, t = lane & 3 and
// one 256-bit k-step = 8 consecutive words w0..w7 of a row:
//   A: a0 = row g, word t;  a1 = row g+8, word t;  a2 = row g, word t+4;  a3 = row g+8, word t+4
//   B: b0 = (our) row n = g, word t;  b1 = row g, word t+4
//   C: c0 = (g, 2t), c1 = (g, 2t+1), c2 = (g+8, 2t), c3 = (g+8, 2t+1)
//
// Tiles. A 256-thread block (8 warps: 2 along M x 4 along N) computes a 128 x 256 tile of C; each warp a 64 x 64
// tile = 4 (m16) x 8 (n8) mma tiles, 128 int32 accumulators per thread. The K loop runs over k-tiles of
// B1P_BKW = 8 words (256 bits = one m16n8k256 k-step) with a B1P_STAGES = 4 stage ring in static shared memory:
// per stage 128 x 8 words of A (4 KiB) + 256 x 8 words of B (8 KiB) = 12 KiB, 48 KiB in all (= the static
// shared-memory limit, so no dynamic shared memory and no cudaFuncSetAttribute). (CUTLASS's 128x256x512-bit,
// 3-stage configuration needs 72 KiB of dynamic shared memory; here the k-tile is halved and the ring deepened
// instead, which keeps the same bytes in flight -- 3 k-tiles of 256 bits ahead -- with one barrier per k-step.)
//
// Pipeline (standard multistage, one __syncthreads per k-tile):
//   prologue: for s < STAGES-1: issue k-tile s into stage s; commit            (one group per k-tile, empty ok)
//   for kt:   cp.async.wait_group STAGES-2      -> this thread's copies of k-tile kt have landed
//             __syncthreads                     -> everyone's have, and everyone finished computing k-tile kt-1
//             issue k-tile kt+STAGES-1 into stage (kt-1) % STAGES (free since the barrier); commit
//             ldmatrix + 32 mma on stage kt % STAGES
//   At iteration kt, STAGES-1+kt groups were committed before the wait and groups 0..kt must be complete, so
//   at most STAGES-2 may still be pending.
//
// Global -> shared (cp.async.cg, 16 bytes = 4 words, L2 only). Per stage a row of a k-tile is 32 bytes = two
// 16-byte chunks; thread tid copies chunk (tid & 1) of A row (tid >> 1) and of B rows (tid >> 1) and
// 128 + (tid >> 1): 3 cp.async per thread per stage, each pair of threads reading a row's 32 bytes (one full
// sector when W % 8 == 0).
// Out-of-range rows/words: src-size 0 (zero-fill; the source pointer is then the operand's base, always valid).
// The 16-byte path needs 16-byte aligned sources: W % 4 == 0 and A, B 16-byte aligned (CuPy allocations are
// 256-byte aligned). Otherwise (checked in the kernel, uniformly) every chunk is copied as four 4-byte
// cp.async.ca with src-size 4 or 0: still exact, just more instructions. The host may pad rows to a multiple
// of 4 words with zero words (exact: zero bits add nothing to popc(A AND B) nor to popA / popB, and K is
// passed separately) to get the fast path.
//
// Shared layout (per stage and operand, 16-byte units, XOR swizzle, no padding): row r, chunk c (0 or 1) is
//   unit(r, c) = 8 (r >> 2) + ((2 (r & 3) + c) XOR ((r >> 2) & 1)),   word offset 4 unit(r, c).
// A 128-byte line (all 32 banks) holds rows 4q..4q+3; the XOR with the parity of q makes the 8 rows r0..r0+7
// (r0 % 8 == 0) of one chunk c hit 8 distinct 16-byte bank groups: slots {c, 2+c, 4+c, 6+c} in line q and
// {1-c, 3-c, 5-c, 7-c} in line q+1. Each 8-address phase of an ldmatrix is therefore conflict-free, and each
// warp's cp.async writes fill whole lines.
//
// ldmatrix mapping (PTX ISA "Warp-level matrix load instruction: ldmatrix", m8n8.x4.b16): lanes 8j..8j+7
// supply the addresses of rows 0..7 of 8x8 b16 matrix j; a matrix row is 8 b16 = 128 bits = 4 words; lane
// i = 4 g + t receives in d_j the 32-bit word t of row g of matrix j. An 8x8 b16 matrix is thus 8 rows x 4
// words of a k-step, and d_j of lane (g, t) is word t of row g -- exactly the mma fragment registers:
//   A, m16 tile at row R (of the stage), lane l, j = l >> 3, r = l & 7:
//     address = row R + 8 (j & 1) + r, chunk j >> 1  (words 4 (j >> 1) .. +3)
//     -> d0 = (row R+g, word t) = a0, d1 = (R+8+g, t) = a1, d2 = (R+g, t+4) = a2, d3 = (R+8+g, t+4) = a3.
//   B, two n8 tiles at rows N0 and N0+8 (of the stage), lane l, q = l >> 3, r = l & 7:
//     address = row N0 + 8 (q >> 1) + r, chunk q & 1
//     -> d0 = (N0+g, t) = b0 and d1 = (N0+g, t+4) = b1 of tile N0; d2, d3 = b0, b1 of tile N0+8.
// Per warp and k-tile: 4 ldmatrix.x4 for A (one per m16 tile), 4 for B (one per pair of n8 tiles), 32 mma.
//
// Launch: block (256), grid (ceil(M / 128), ceil(N / 256)) -- M tiles on gridDim.x (up to 2^31-1), N tiles on
// gridDim.y (<= 65535, i.e. N <= 16.7 M); 48 KiB static shared memory, no dynamic shared memory; compute
// capability >= 8.0 (cp.async, ldmatrix and the b1 mma). nvcc 13.0 `-Xptxas -v`: 186 registers, 0 spills,
// 49152 bytes smem on sm_80 and sm_90 -> one 256-thread block (8 warps) per SM, as with CUTLASS's 128x256 tiles.

#define B1P_BM 128
#define B1P_BN 256
#define B1P_BKW 8  // words per k-tile = 256 bits = one m16n8k256 k-step
#define B1P_STAGES 4
#define B1P_THREADS 256
#define B1P_A_WORDS (B1P_BM * B1P_BKW)
#define B1P_B_WORDS (B1P_BN * B1P_BKW)

// Word offset of (row, 16-byte chunk) in a stage of one operand (XOR swizzle, see above).
__device__ __forceinline__ int b1p_swz(int row, int chunk)
{
    return (((row >> 2) << 3) | ((((row & 3) << 1) | chunk) ^ ((row >> 2) & 1))) << 2;
}

// ---- PTX wrappers; the QNNLIB_HOST_EMULATION branches run the same kernel on the CPU
// (kernels/host_emulation.h, force-included by qnnlib/runtime/cuda_host.py; never seen by nvcc/NVRTC).

__device__ __forceinline__ void b1p_cp_async16(void* smem, const void* gmem, int src_bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes)
                 : "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::cp_async(smem, gmem, 16, src_bytes);
#else
    __trap();
#endif
}

__device__ __forceinline__ void b1p_cp_async4(void* smem, const void* gmem, int src_bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes)
                 : "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::cp_async(smem, gmem, 4, src_bytes);
#else
    __trap();
#endif
}

__device__ __forceinline__ void b1p_cp_async_commit()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::cp_async_commit_group();
#else
    __trap();
#endif
}

template <int N>
__device__ __forceinline__ void b1p_cp_async_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::cp_async_wait_group(N);
#else
    __trap();
#endif
}

__device__ __forceinline__ void b1p_ldmatrix_x4(unsigned int (&d)[4], const unsigned int* smem_row)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned int s = (unsigned int)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(s));
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::ldmatrix_m8n8_b16(4, d, smem_row);
#else
    __trap();
#endif
}

__device__ __forceinline__ void b1p_mma(int (&d)[4], const unsigned int (&a)[4], unsigned int b0, unsigned int b1)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#elif defined(QNNLIB_HOST_EMULATION)
    const unsigned int b[2] = {b0, b1};
    qnnlib_emu::mma_m16n8k256_and_popc(d, a, b, d);
#else
    __trap();
#endif
}

// Issue the cp.async of k-tile kt into stage buffers as / bs (one thread's 3 chunks, see the top).
__device__ __forceinline__ void b1p_load_tile(unsigned int* as, unsigned int* bs, const unsigned int* A,
                                              const unsigned int* B, const unsigned int* a_row,
                                              const unsigned int* b_row0, const unsigned int* b_row1, int a_dst,
                                              int b_dst0, int b_dst1, int chunk, int kt, int W, bool vec)
{
    const int w0 = kt * B1P_BKW + chunk * 4;  // first word of this thread's chunk
    if (vec) {                                // W % 4 == 0: a chunk is wholly in range or wholly out
        const bool kin = w0 < W;
        b1p_cp_async16(as + a_dst, (a_row && kin) ? a_row + w0 : A, (a_row && kin) ? 16 : 0);
        b1p_cp_async16(bs + b_dst0, (b_row0 && kin) ? b_row0 + w0 : B, (b_row0 && kin) ? 16 : 0);
        b1p_cp_async16(bs + b_dst1, (b_row1 && kin) ? b_row1 + w0 : B, (b_row1 && kin) ? 16 : 0);
    } else {
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const bool kin = w0 + q < W;
            b1p_cp_async4(as + a_dst + q, (a_row && kin) ? a_row + w0 + q : A, (a_row && kin) ? 4 : 0);
            b1p_cp_async4(bs + b_dst0 + q, (b_row0 && kin) ? b_row0 + w0 + q : B, (b_row0 && kin) ? 4 : 0);
            b1p_cp_async4(bs + b_dst1 + q, (b_row1 && kin) ? b_row1 + w0 + q : B, (b_row1 && kin) ? 4 : 0);
        }
    }
}

extern "C" __global__ void __launch_bounds__(B1P_THREADS)
b1_tc_gemm_pipelined(const unsigned int* __restrict__ A, const unsigned int* __restrict__ B,
                     const int* __restrict__ popA, const int* __restrict__ popB, int* __restrict__ C,
                     int M, int N, int W, int K)
{
    __shared__ __align__(128) unsigned int As[B1P_STAGES][B1P_A_WORDS];
    __shared__ __align__(128) unsigned int Bs[B1P_STAGES][B1P_B_WORDS];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3;  // warp position: 2 along M (64 rows) x 4 along N (64 columns)
    const int g = lane >> 2, t = lane & 3;
    const int m0 = blockIdx.x * B1P_BM, n0 = blockIdx.y * B1P_BN;
    const int ktiles = (W + B1P_BKW - 1) / B1P_BKW;
    const bool vec = ((W & 3) == 0) &&
                     ((((unsigned long long)A) | ((unsigned long long)B)) & 15ull) == 0ull;

    // Producer: this thread's rows (null when out of range) and swizzled destinations.
    const int lrow = tid >> 1, lchunk = tid & 1;
    const unsigned int* a_row = (m0 + lrow < M) ? A + (long long)(m0 + lrow) * W : 0;
    const unsigned int* b_row0 = (n0 + lrow < N) ? B + (long long)(n0 + lrow) * W : 0;
    const unsigned int* b_row1 = (n0 + 128 + lrow < N) ? B + (long long)(n0 + 128 + lrow) * W : 0;
    const int a_dst = b1p_swz(lrow, lchunk), b_dst0 = b1p_swz(lrow, lchunk), b_dst1 = b1p_swz(128 + lrow, lchunk);

    // Consumer: the row / chunk whose address this lane supplies to ldmatrix (see the mapping at the top).
    const int lm = lane >> 3, lr = lane & 7;
    int a_off[4], b_off[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) a_off[i] = b1p_swz(wm * 64 + i * 16 + (lm & 1) * 8 + lr, lm >> 1);
#pragma unroll
    for (int p = 0; p < 4; ++p) b_off[p] = b1p_swz(wn * 64 + p * 16 + (lm >> 1) * 8 + lr, lm & 1);

    int acc[4][8][4];  // [m16 tile][n8 tile][c register]
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[i][j][c] = 0;

#pragma unroll
    for (int s = 0; s < B1P_STAGES - 1; ++s) {
        if (s < ktiles)
            b1p_load_tile(As[s], Bs[s], A, B, a_row, b_row0, b_row1, a_dst, b_dst0, b_dst1, lchunk, s, W, vec);
        b1p_cp_async_commit();
    }

    for (int kt = 0; kt < ktiles; ++kt) {
        b1p_cp_async_wait<B1P_STAGES - 2>();  // k-tile kt (this thread's part) has landed
        __syncthreads();                      // all parts landed; stage (kt-1) % STAGES is no longer read
        const int pf = kt + B1P_STAGES - 1;
        if (pf < ktiles) {
            const int ps = pf % B1P_STAGES;
            b1p_load_tile(As[ps], Bs[ps], A, B, a_row, b_row0, b_row1, a_dst, b_dst0, b_dst1, lchunk, pf, W, vec);
        }
        b1p_cp_async_commit();

        const int st = kt % B1P_STAGES;
        unsigned int a[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i) b1p_ldmatrix_x4(a[i], &As[st][a_off[i]]);
#pragma unroll
        for (int p = 0; p < 4; ++p) {
            unsigned int b[4];  // b0, b1 of n8 tile 2p, then of tile 2p + 1
            b1p_ldmatrix_x4(b, &Bs[st][b_off[p]]);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                b1p_mma(acc[i][2 * p], a[i], b[0], b[1]);
                b1p_mma(acc[i][2 * p + 1], a[i], b[2], b[3]);
            }
        }
    }
    b1p_cp_async_wait<0>();  // nothing real is in flight here (only empty groups); leave none behind

    // Epilogue (as b1_tc_gemm): C = K - 2 (popA + popB) + 4 acc, guarded; c0/c1 (and c2/c3) are adjacent
    // columns, stored as one 8-byte int2 when both are in range and the address is 8-byte aligned.
    const bool pair_ok = ((N & 1) == 0) && ((((unsigned long long)C) & 7ull) == 0ull);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int m = m0 + wm * 64 + i * 16 + g + 8 * h;
            if (m >= M) continue;
            const int pa = K - 2 * popA[m];
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const int n = n0 + wn * 64 + j * 8 + 2 * t;
                int* dst = C + (long long)m * N + n;
                if (pair_ok && n + 1 < N) {
                    int2 v;
                    v.x = pa - 2 * popB[n] + 4 * acc[i][j][2 * h];
                    v.y = pa - 2 * popB[n + 1] + 4 * acc[i][j][2 * h + 1];
                    *reinterpret_cast<int2*>(dst) = v;
                } else {
                    if (n < N) dst[0] = pa - 2 * popB[n] + 4 * acc[i][j][2 * h];
                    if (n + 1 < N) dst[1] = pa - 2 * popB[n + 1] + 4 * acc[i][j][2 * h + 1];
                }
            }
        }
}
