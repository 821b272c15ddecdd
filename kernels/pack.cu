// Packing kernels for the binary GEMMs (Hubara et al., "Quantized Neural Networks", §"Run-time";
// the analogue of concatenate_rows_kernel in the authors' Theano Run-time/binary_kernels.cu).
//
// Layout contract (same as qnnlib/bitpack.py): a row of K real values becomes ceil(K/32) uint32
// words; element j goes to bit j % 32 of word j / 32 (LSB first); bit 1 means x >= 0 (+1, with
// sign(0) = +1), bit 0 means x < 0 (-1, and NaN); padding bits past K are 0.
//
// Self-contained (no #include) so that CuPy's NVRTC and nvcc both compile it.

// One warp per output word: lane j tests element 32*w + j, and __ballot_sync returns a word whose
// bit j is lane j's predicate -- exactly the LSB-first packing, with coalesced 128-byte reads.
// Launch with blockDim.x a multiple of 32 and at least rows*words*32 threads in total.
extern "C" __global__ void pack_rows_f32(const float* __restrict__ x, unsigned int* __restrict__ out,
                                         int rows, int k, int words)
{
    const long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (warp >= (long long)rows * words) return;  // warp-uniform: every lane of a warp shares `warp`
    const long long r = warp / words;
    const int w = (int)(warp % words);
    const int col = w * 32 + lane;
    const bool bit = col < k && x[r * k + col] >= 0.0f;
    const unsigned int word = __ballot_sync(0xffffffffu, bit);
    if (lane == 0) out[r * words + w] = word;
}

// Row popcounts, popc(a) summed over a row of packed words (needed by the tensor-core GEMM, which
// recovers popc(a XOR b) = popc(a) + popc(b) - 2 popc(a AND b)). One warp per row: the lanes stride
// over the words (coalesced) and the partial counts are reduced with warp shuffles.
extern "C" __global__ void row_popcount_u32(const unsigned int* __restrict__ x, int* __restrict__ out,
                                            int rows, int words)
{
    const long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;  // warp-uniform
    int count = 0;
    for (int w = lane; w < words; w += 32) count += __popc(x[row * words + w]);
    for (int offset = 16; offset > 0; offset >>= 1) count += __shfl_down_sync(0xffffffffu, count, offset);
    if (lane == 0) out[row] = count;
}
