// The paper's baseline kernel: a plain tiled float GEMM, 16x16 threads per block, 16x16 shared-memory
// tiles, one output element per thread (the "gemm" kernel of the authors' Theano
// Run-time/binary_kernels.cu, itself the CUDA programming guide's shared-memory matmul; docs/paper.md §3.3).
//
//   C[M, N] = A[M, K] . B[K, N],   all float32, row-major.
//
// Unlike the original (which needs K to be a multiple of 16), out-of-range loads read 0 and
// out-of-range stores are skipped, so any M, N, K works. Launch: block (16, 16), a 1-D grid of
// ceil(M/16) * ceil(N/16) blocks: block b computes tile (b / ceil(N/16), b % ceil(N/16)) of C. The tiles
// are on gridDim.x (up to 2^31 - 1), not on gridDim.y, whose 65535 would cap M at about 1M rows; the
// order (N tiles fastest) is the one a (ceil(N/16), ceil(M/16)) grid would run.

#define GEMM_TILE 16

extern "C" __global__ void gemm_f32_tiled(const float* __restrict__ A, const float* __restrict__ B,
                                          float* __restrict__ C, int M, int N, int K)
{
    __shared__ float As[GEMM_TILE][GEMM_TILE];
    __shared__ float Bs[GEMM_TILE][GEMM_TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const unsigned int tiles_n = (N + GEMM_TILE - 1) / GEMM_TILE;
    const int row = (int)(blockIdx.x / tiles_n) * GEMM_TILE + ty;
    const int col = (int)(blockIdx.x % tiles_n) * GEMM_TILE + tx;
    float acc = 0.0f;
    for (int t = 0; t < K; t += GEMM_TILE) {
        As[ty][tx] = (row < M && t + tx < K) ? A[(long long)row * K + t + tx] : 0.0f;
        Bs[ty][tx] = (t + ty < K && col < N) ? B[(long long)(t + ty) * N + col] : 0.0f;
        __syncthreads();
#pragma unroll
        for (int e = 0; e < GEMM_TILE; ++e) acc += As[ty][e] * Bs[e][tx];
        __syncthreads();
    }
    if (row < M && col < N) C[(long long)row * N + col] = acc;
}
