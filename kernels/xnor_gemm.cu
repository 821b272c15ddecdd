// XNOR-popcount binary GEMM on CUDA cores (Hubara et al., NIPS 2016 §4, Eq. 7):
//
//   C[m, n] = sum_k a[m, k] b[n, k] = K - 2 * sum_w popc(A[m, w] XOR B[n, w])      (a, b in {-1, +1})
//
// A (M, W) and B (N, W) are packed along K into uint32 words (qnnlib/bitpack.py layout: bit 1 = +1,
// LSB first, zero padding bits, so padding words/bits XOR to 0 and K is exact). C is int32 (M, N).
// As in the authors' xnor_gemm the kernel counts mismatches with XOR (no explicit XNOR).
//
// Register tiling: a 16x16 thread block computes a 64x64 tile of C; each thread owns a 4x4 grid of
// outputs (rows ty + 16i, columns tx + 16j), so one shared-memory word feeds four popcounts.
// Shared memory holds XBK words of K for the 64 rows of A and the 64 rows of B, stored k-major
// (+1 padding column against bank conflicts). Out-of-range loads read 0 (exact, see above) and
// out-of-range stores are skipped, so any M, N, W works.
// Launch: block (16, 16), a 1-D grid of ceil(M/64) * ceil(N/64) blocks: block b computes tile
// (b / ceil(N/64), b % ceil(N/64)) of C. The tiles are on gridDim.x (up to 2^31 - 1), not on gridDim.y,
// whose 65535 would cap M at about 4M rows; the order (N tiles fastest) is that of a 2-D grid.

#define XBM 64
#define XBN 64
#define XBK 16
#define XTHREADS 256

extern "C" __global__ void __launch_bounds__(XTHREADS)
xnor_gemm_u32(const unsigned int* __restrict__ A, const unsigned int* __restrict__ B,
              int* __restrict__ C, int M, int N, int W, int K)
{
    __shared__ unsigned int As[XBK][XBM + 1];
    __shared__ unsigned int Bs[XBK][XBN + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * 16 + tx;
    const unsigned int tiles_n = (N + XBN - 1) / XBN;
    const int m0 = (int)(blockIdx.x / tiles_n) * XBM, n0 = (int)(blockIdx.x % tiles_n) * XBN;

    int acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0;

    for (int k0 = 0; k0 < W; k0 += XBK) {
        // 64 rows x 16 words per operand: 4 words per thread; consecutive threads read consecutive words.
        for (int e = tid; e < XBM * XBK; e += XTHREADS) {
            const int r = e / XBK, c = e % XBK, gk = k0 + c;
            const int gm = m0 + r, gn = n0 + r;
            As[c][r] = (gm < M && gk < W) ? A[(long long)gm * W + gk] : 0u;
            Bs[c][r] = (gn < N && gk < W) ? B[(long long)gn * W + gk] : 0u;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < XBK; ++kk) {
            unsigned int a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                a[i] = As[kk][ty + 16 * i];
                b[i] = Bs[kk][tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += __popc(a[i] ^ b[j]);  // Eq. 7, 32 connections
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + tx + 16 * j;
            if (m < M && n < N) C[(long long)m * N + n] = K - 2 * acc[i][j];
        }
    }
}
