// Packing kernels for the binary GEMMs (Hubara et al., "Quantized Neural Networks", §"Run-time";
// the analogue of concatenate_rows_kernel in the authors' Theano Run-time/binary_kernels.cu).
//
// Layout contract (same as qnnlib/bitpack.py): a row of K real values becomes ceil(K/32) uint32
// words; element j goes to bit j % 32 of word j / 32 (LSB first); bit 1 means x >= 0 (+1, with
// sign(0) = +1 and -0.0 >= 0), bit 0 means x < 0 (-1); padding bits past K are 0. NaN has no sign:
// its bit is 0 and the kernel sets *nan_flag = 1, which the host reads to raise ValueError as
// bitpack.pack does (qnnlib/runtime/gemm_cuda.py: pack_cuda).
//
// Self-contained (no #include) so that CuPy's NVRTC, nvcc and the host emulator all compile it.

// One warp per output word: lane j tests element 32*w + j, and __ballot_sync returns a word whose
// bit j is lane j's predicate -- exactly the LSB-first packing, with coalesced reads. The comparison
// is done in the input's own type (pack_rows_f64 reads doubles), so no value changes sign on the way:
// a float64 in [-2^-150, 0) would round to -0.0f, i.e. +1, in float32.
// A grid-stride loop over the words (warp-uniform: blockDim.x is a multiple of 32, so every lane of a
// warp has the same `warp`) lets any grid cover any rows * words. Launch with blockDim.x a multiple of 32.
template <typename T>
__device__ __forceinline__ void pack_rows(const T* __restrict__ x, unsigned int* __restrict__ out,
                                          int* __restrict__ nan_flag, int rows, int k, int words)
{
    const long long total = (long long)rows * words;
    const long long stride = ((long long)gridDim.x * blockDim.x) >> 5;
    const int lane = threadIdx.x & 31;
    for (long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; warp < total; warp += stride) {
        const long long r = warp / words;
        const int w = (int)(warp % words);
        const int col = w * 32 + lane;
        const bool inside = col < k;  // padding bits (col >= k) are 0
        const T v = inside ? x[r * k + col] : T(0);
        const unsigned int word = __ballot_sync(0xffffffffu, inside && v >= T(0));
        const unsigned int nan = __ballot_sync(0xffffffffu, v != v);  // NaN is the one value unequal to itself
        if (lane == 0) {
            out[r * words + w] = word;
            if (nan) *nan_flag = 1;  // every writer stores the same 1: a benign race, read once by the host
        }
    }
}

extern "C" __global__ void pack_rows_f32(const float* __restrict__ x, unsigned int* __restrict__ out,
                                         int* __restrict__ nan_flag, int rows, int k, int words)
{
    pack_rows<float>(x, out, nan_flag, rows, k, words);
}

extern "C" __global__ void pack_rows_f64(const double* __restrict__ x, unsigned int* __restrict__ out,
                                         int* __restrict__ nan_flag, int rows, int k, int words)
{
    pack_rows<double>(x, out, nan_flag, rows, k, words);
}

// Row popcounts, popc(a) summed over a row of packed words (needed by the tensor-core GEMM, which
// recovers popc(a XOR b) = popc(a) + popc(b) - 2 popc(a AND b)). One warp per row (grid-stride, warp-
// uniform as above): the lanes stride over the words (coalesced) and the partial counts are reduced with
// warp shuffles.
extern "C" __global__ void row_popcount_u32(const unsigned int* __restrict__ x, int* __restrict__ out,
                                            int rows, int words)
{
    const long long stride = ((long long)gridDim.x * blockDim.x) >> 5;
    const int lane = threadIdx.x & 31;
    for (long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < rows; row += stride) {
        int count = 0;
        for (int w = lane; w < words; w += 32) count += __popc(x[row * words + w]);
        for (int offset = 16; offset > 0; offset >>= 1) count += __shfl_down_sync(0xffffffffu, count, offset);
        if (lane == 0) out[row] = count;
    }
}
