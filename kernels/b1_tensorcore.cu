// Binary GEMM on tensor cores with the 1-bit MMA (PTX ISA "mma", shape m16n8k256, .b1 operands):
//
//   mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc  d, a, b, c
//   computes d[m][n] = c[m][n] + sum_{k<256} popc(a[m][k] AND b[k][n]).
//
// The kernel uses the AND-popc form (PTX ISA, "Warp-level matrix instructions": the .and operation of
// single-bit mma requires sm_80 or higher). The XOR-popc form (.xor.popc) is not used; it is not needed,
// not because it is unavailable: ptxas 13.0 also assembles mma...b1.b1.s32.xor.popc for sm_90 without a
// warning. With AND-popc,
//   popc(a XOR b) = popc(a) + popc(b) - 2 popc(a AND b), hence the ±1 dot product (Eq. 7)
//   C[m, n] = K - 2 popc(a XOR b) = K - 2 (popA[m] + popB[n]) + 4 sum_w popc(A[m, w] AND B[n, w]),
// with popA/popB the row popcounts (row_popcount_u32 in pack.cu). Padding bits are 0 in both operands,
// so they add nothing to either popcount and K is exact.
//
// Operands: A (M, W) and B (N, W), uint32 words packed along K (qnnlib/bitpack.py layout: bit j%32 of
// word j/32, LSB first). "row.col" means A is M x K row-major and B is K x N column-major, i.e. each
// column n of B is a packed row of our (N, W) array -- both operands are read the same way.
//
// Fragment layout (PTX ISA, "Matrix Fragments for mma.m16n8k256"), with g = laneid >> 2 and
// t = laneid % 4, for one 256-bit k-step = 8 consecutive words w0..w7 of a row:
//   A: a0 = row g,   word t;   a1 = row g+8, word t;   a2 = row g, word t+4;   a3 = row g+8, word t+4
//      (register a_i bit j <-> k = 32 t + j, +128 for a2/a3: exactly our LSB-first words)
//   B: b0 = column (our row) g, word t;   b1 = column g, word t+4
//   C: c0 = (g, 2t), c1 = (g, 2t+1), c2 = (g+8, 2t), c3 = (g+8, 2t+1)
//
// Tiling: a 256-thread block (8 warps, 2 along M x 4 along N) computes a 128x128 tile of C; each warp
// a 64x32 tile = 4 x 4 mma tiles of 16x8. Per stage, TBK = 16 words (512 bits, two k-steps) of the
// 128 A rows and 128 B rows are staged in shared memory with a padded row stride of 20 words, which
// makes the fragment loads bank-conflict free (rows g = 0..7 land on banks 20g + t mod 32, all distinct).
// Out-of-range loads read 0, out-of-range stores are skipped, so any M, N, W works.
// Launch: block 256, a 1-D grid of ceil(M/128) * ceil(N/128) blocks: block b computes tile
// (b / ceil(N/128), b % ceil(N/128)) of C. The tiles are on gridDim.x (up to 2^31 - 1), not on gridDim.y,
// whose 65535 would cap M at about 8M rows. Needs compute capability >= 8.0.

#define TBM 128
#define TBN 128
#define TBK 16
#define TLD (TBK + 4)
#define TTHREADS 256

__device__ __forceinline__ void mma_b1_and_popc(int (&d)[4], const unsigned int (&a)[4],
                                                const unsigned int (&b)[2])
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(QNNLIB_HOST_EMULATION)
    // CPU emulation of the same instruction as a warp collective with the PTX ISA fragment layout
    // (kernels/host_emulation.h, force-included by qnnlib/runtime/cuda_host.py; never seen by nvcc/NVRTC).
    qnnlib_emu::mma_m16n8k256_and_popc(d, a, b, d);
#else
    __trap();  // the host (qnnlib/binary_gemm.py) only launches this kernel on sm_80 and newer
#endif
}

extern "C" __global__ void __launch_bounds__(TTHREADS)
b1_tc_gemm(const unsigned int* __restrict__ A, const unsigned int* __restrict__ B,
           const int* __restrict__ popA, const int* __restrict__ popB, int* __restrict__ C,
           int M, int N, int W, int K)
{
    __shared__ __align__(16) unsigned int As[TBM * TLD];
    __shared__ __align__(16) unsigned int Bs[TBN * TLD];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3;  // warp position: 2 along M (64 rows) x 4 along N (32 cols)
    const int g = lane >> 2, t = lane & 3;
    const unsigned int tiles_n = (N + TBN - 1) / TBN;
    const int m0 = (int)(blockIdx.x / tiles_n) * TBM, n0 = (int)(blockIdx.x % tiles_n) * TBN;

    int acc[4][4][4];  // [m16 tile][n8 tile][c register]
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[i][j][c] = 0;

    for (int k0 = 0; k0 < W; k0 += TBK) {
        for (int e = tid; e < TBM * TBK; e += TTHREADS) {
            const int r = e / TBK, c = e % TBK, gk = k0 + c;
            const int gm = m0 + r, gn = n0 + r;
            As[r * TLD + c] = (gm < M && gk < W) ? A[(long long)gm * W + gk] : 0u;
            Bs[r * TLD + c] = (gn < N && gk < W) ? B[(long long)gn * W + gk] : 0u;
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < TBK; ks += 8) {  // one m16n8k256 k-step = 256 bits = 8 words
            unsigned int a[4][4], b[4][2];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int r = wm * 64 + i * 16 + g;
                a[i][0] = As[r * TLD + ks + t];
                a[i][1] = As[(r + 8) * TLD + ks + t];
                a[i][2] = As[r * TLD + ks + t + 4];
                a[i][3] = As[(r + 8) * TLD + ks + t + 4];
            }
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int n = wn * 32 + j * 8 + g;
                b[j][0] = Bs[n * TLD + ks + t];
                b[j][1] = Bs[n * TLD + ks + t + 4];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) mma_b1_and_popc(acc[i][j], a[i], b[j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int m = m0 + wm * 64 + i * 16 + g + ((c & 2) ? 8 : 0);
                const int n = n0 + wn * 32 + j * 8 + 2 * t + (c & 1);
                if (m < M && n < N)
                    C[(long long)m * N + n] = K - 2 * (popA[m] + popB[n]) + 4 * acc[i][j][c];
            }
}
