// Binary GEMM on Hopper's warpgroup tensor cores (sm_90a): wgmma.mma_async ... .b1.b1.and.popc fed by the TMA
// unit's bulk copies (cp.async.bulk) through an mbarrier pipeline. It computes exactly what b1_tc_gemm
// (b1_tensorcore.cu) computes:
//
//   C[m, n] = K - 2 (popA[m] + popB[n]) + 4 sum_k popc(A[m, k] AND B[n, k])      (int32, C is M x N row-major)
//
// but on operands laid out for the tensor cores by b1_wgmma_layout (below) instead of plain packed rows.
// Built like CUTLASS's sm90 "warp-specialized cooperative" GEMM: a producer issues the loads, two consumer
// warpgroups only multiply. Only sm_90a (H100/H200) has these instructions: for every other target this file
// compiles to kernels that __trap(), and the host code (qnnlib/runtime/gemm_cuda.py) runs it only on compute
// capability 9.0, compiled by NVRTC for sm_90a.
//
// ---- Operand layout (b1_wgmma_layout; PTX ISA "Asynchronous Warpgroup Level Matrix Shared Memory Layout") ----
// wgmma reads B1 operands from shared memory K-major, as "core matrices" of 8 rows x 16 bytes (128 bits of K),
// each stored as 128 contiguous bytes (row r of the core matrix at byte 16 r). A matrix descriptor gives the
// start address, the byte distance between core matrices adjacent along K (the leading-dimension byte offset,
// LBO) and along M/N (the stride-dimension byte offset, SBO); no swizzle here.
// b1_wgmma_layout rewrites packed rows X (R, W) (uint32 words, LSB-first along K, the qnnlib/bitpack.py layout)
// into k-slabs of 16 words (512 bits, one pipeline stage): slab kt holds every row (R padded to Rp, a multiple
// of 256) with, for row r and 16-byte chunk c (words 4c..4c+3 of the slab),
//   word index  kt * 16 Rp + 128 (r >> 3) + 32 c + 4 (r & 7) + q      (q = 0..3; rows >= R, words >= W: zero)
// i.e. core matrix (row group r >> 3, chunk c) at byte 512 (r >> 3) + 128 c of the slab: LBO = 128, SBO = 512.
// So 128 (A) or 256 (B) consecutive rows of one slab are ONE contiguous block of 8 or 16 KiB: a stage is two
// bulk copies. Zero rows and words add nothing to popc(A AND B), to popA or popB (K is passed separately), so
// the kernel needs no bounds checks on its loads. A constant operand (a layer's weights) is laid out once.
//
// ---- Tiles and pipeline ----
// CTA tile 128 x 256, 384 threads = 3 warpgroups. Warpgroup 0 is the producer: its thread 0 alone issues the
// bulk copies; warpgroups 1 and 2 are the consumers, each computing 64 rows x 256 columns with one
// wgmma.mma_async.m64n256k256 per 256-bit k-step (128 int32 accumulators per thread, in registers).
// Stages: B1W_STAGES = 4 slots of (A 8 KiB + B 16 KiB) = 96 KiB of dynamic shared memory; mbarriers full[s]
// (1 arrival: the producer's arrive.expect_tx of the 24 KiB the copies then complete) and empty[s]
// (8 arrivals: lane 0 of each consumer warp, once its wgmma reading slot s have completed).
//   producer, k-tile kt, slot s = kt % 4, round u = kt / 4:
//     wait empty[s] parity (u & 1) ^ 1 (passes at once in round 0: the "preceding phase" of a fresh barrier)
//     arrive.expect_tx(full[s], 24576); bulk-copy the A block and the B block, both completing on full[s]
//   consumer:
//     wait full[s] parity u & 1; wgmma.fence; 2 x wgmma (k-steps 0, 1 of the slot); commit_group;
//     wgmma.wait_group 1 (-> the group of k-tile kt-1 is complete) ; lane 0: arrive empty[(kt-1) % 4]
//   So one k-tile's wgmma are in flight while the next is issued, and up to 4 k-tiles of loads run ahead.
// Descriptors (PTX ISA "Matrix Descriptor Format"): bits 0-13 start address >> 4 (shared window address),
// 16-29 LBO >> 4, 32-45 SBO >> 4, 49-51 base offset 0, 62-63 swizzle 0 (none). The 64 A rows of consumer
// warpgroup g (1 or 2) start at byte 4096 (g - 1) of the slot's A block, B at the slot's B block; k-step j
// (0 or 1) adds 256 bytes to both (two core matrices along K).
// Accumulators (PTX ISA "Register Fragments" of wgmma .m64nNk*, D): thread t of the warpgroup, warp w = t / 32,
// lane l: d[i] is row 16 w + (l >> 2) + 8 ((i >> 1) & 1), column 8 (i >> 2) + 2 (l & 3) + (i & 1).
//
// Launch: block (384), grid (ceil(M / 128), ceil(N / 256)), dynamic shared memory B1W_SMEM_BYTES (the host sets
// the kernel's max dynamic shared memory attribute first). Arguments: the laid-out A (Mp rows) and B (Np rows),
// popA, popB, C, M, N, K, the number of k-slabs, Mp, Np. nvcc 13.0 -arch=sm_90a -Xptxas -v: 154 registers,
// 0 spills (384 x 154 fits the 64K-register file: one CTA per SM). Never yet run on a GPU: the CPU emulator
// (kernels/host_emulation.h) executes it bit-exact, and `python -m qnnlib bench gpu` checks it before timing it.

#define B1W_BM 128
#define B1W_BN 256
#define B1W_SLAB_WORDS 16  // words per row and k-slab = 512 bits = one stage = two m64n256k256 k-steps
#define B1W_STAGES 4
#define B1W_THREADS 384
#define B1W_ROW_ALIGN 256  // laid-out operands have a multiple of this many rows
#define B1W_A_BYTES (B1W_BM * B1W_SLAB_WORDS * 4)  // 8192
#define B1W_B_BYTES (B1W_BN * B1W_SLAB_WORDS * 4)  // 16384
#define B1W_STAGE_BYTES (B1W_A_BYTES + B1W_B_BYTES)
#define B1W_SMEM_BYTES (B1W_STAGES * B1W_STAGE_BYTES)  // 98304: dynamic shared memory per block
#define B1W_LBO 128
#define B1W_SBO 512

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define B1W_SM90A 1
#endif

// ---- operand layout: X (R, W) packed rows -> k-slabs (see the top). One thread per 16-byte unit. ----
extern "C" __global__ void b1_wgmma_layout(const unsigned int* __restrict__ X, unsigned int* __restrict__ Y, int R,
                                           int W, int Rp, int slabs)
{
    const long long units = (long long)slabs * Rp * (B1W_SLAB_WORDS / 4);
    for (long long u = (long long)blockIdx.x * blockDim.x + threadIdx.x; u < units;
         u += (long long)gridDim.x * blockDim.x) {
        // u enumerates the output in order: slab, row group, chunk, row in group
        const int r8 = (int)(u & 7);
        const long long rest = u >> 3;
        const int c = (int)(rest & 3);
        const long long gs = rest >> 2;  // slab * (Rp / 8) + row group
        const int group = (int)(gs % (Rp >> 3));
        const int kt = (int)(gs / (Rp >> 3));
        const int r = group * 8 + r8;
        const int w0 = kt * B1W_SLAB_WORDS + 4 * c;
        unsigned int v[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) v[q] = (r < R && w0 + q < W) ? X[(long long)r * W + w0 + q] : 0u;
        unsigned int* dst = Y + 4 * u;
        dst[0] = v[0];
        dst[1] = v[1];
        dst[2] = v[2];
        dst[3] = v[3];
    }
}

// ---- PTX wrappers; the QNNLIB_HOST_EMULATION branches run the same kernel on the CPU
// (kernels/host_emulation.h, force-included by qnnlib/runtime/cuda_host.py; never seen by nvcc/NVRTC).

__device__ __forceinline__ void b1w_mbar_init(unsigned long long* bar, unsigned int count)
{
#if defined(B1W_SM90A)
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"((unsigned int)__cvta_generic_to_shared(bar)),
                 "r"(count)
                 : "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::mbarrier_init(bar, count);
#else
    __trap();
#endif
}

// Make the initialised barriers visible to the async proxy (the bulk copies) before anyone uses them.
__device__ __forceinline__ void b1w_fence_barrier_init()
{
#if defined(B1W_SM90A)
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#elif defined(QNNLIB_HOST_EMULATION)
#else
    __trap();
#endif
}

__device__ __forceinline__ void b1w_mbar_arrive_expect_tx(unsigned long long* bar, unsigned int bytes)
{
#if defined(B1W_SM90A)
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                     (unsigned int)__cvta_generic_to_shared(bar)),
                 "r"(bytes)
                 : "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::mbarrier_arrive_expect_tx(bar, bytes);
#else
    __trap();
#endif
}

__device__ __forceinline__ void b1w_mbar_arrive(unsigned long long* bar)
{
#if defined(B1W_SM90A)
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"((unsigned int)__cvta_generic_to_shared(bar))
                 : "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::mbarrier_arrive(bar);
#else
    __trap();
#endif
}

// Wait until the phase of parity `parity` of `bar` has completed.
__device__ __forceinline__ void b1w_mbar_wait(unsigned long long* bar, unsigned int parity)
{
#if defined(B1W_SM90A)
    const unsigned int addr = (unsigned int)__cvta_generic_to_shared(bar);
    unsigned int done = 0;
    do {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n"
            "}\n"
            : "=r"(done)
            : "r"(addr), "r"(parity)
            : "memory");
    } while (!done);
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::mbarrier_wait_parity(bar, parity);
#else
    __trap();
#endif
}

// Bulk copy (TMA) of `bytes` (a multiple of 16, both addresses 16-byte aligned) global -> shared, completing
// `bytes` transactions on `bar`.
__device__ __forceinline__ void b1w_bulk_copy(void* smem, const void* gmem, unsigned int bytes,
                                              unsigned long long* bar)
{
#if defined(B1W_SM90A)
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
            (unsigned int)__cvta_generic_to_shared(smem)),
        "l"(gmem), "r"(bytes), "r"((unsigned int)__cvta_generic_to_shared(bar))
        : "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::bulk_copy_g2s(smem, gmem, bytes, bar);
#else
    __trap();
#endif
}

// Matrix descriptor of a no-swizzle K-major operand starting at `smem` (see the top).
__device__ __forceinline__ unsigned long long b1w_desc(const void* smem)
{
    const unsigned long long addr = (unsigned long long)__cvta_generic_to_shared(smem);
    return ((addr & 0x3FFFFull) >> 4) | ((unsigned long long)(B1W_LBO >> 4) << 16) |
           ((unsigned long long)(B1W_SBO >> 4) << 32);
}

__device__ __forceinline__ void b1w_wgmma_fence()
{
#if defined(B1W_SM90A)
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::wgmma_fence();
#else
    __trap();
#endif
}

__device__ __forceinline__ void b1w_wgmma_commit()
{
#if defined(B1W_SM90A)
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::wgmma_commit_group();
#else
    __trap();
#endif
}

template <int N>
__device__ __forceinline__ void b1w_wgmma_wait(int (&d)[128])
{
#if defined(B1W_SM90A)
    // The accumulators are operands ("+r") so that the compiler does not move their reads above the wait.
    asm volatile("wgmma.wait_group.sync.aligned %128;\n"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
                   "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]),
                   "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]),
                   "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]),
                   "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]),
                   "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]),
                   "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]),
                   "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]),
                   "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]),
                   "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]),
                   "+r"(d[71]), "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]),
                   "+r"(d[78]), "+r"(d[79]), "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]),
                   "+r"(d[85]), "+r"(d[86]), "+r"(d[87]), "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]),
                   "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]), "+r"(d[96]), "+r"(d[97]), "+r"(d[98]),
                   "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]), "+r"(d[104]),
                   "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]),
                   "+r"(d[111]), "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]),
                   "+r"(d[117]), "+r"(d[118]), "+r"(d[119]), "+r"(d[120]), "+r"(d[121]), "+r"(d[122]),
                   "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
                 : "n"(N)
                 : "memory");
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::wgmma_wait_group(N);
    (void)d;
#else
    (void)d;
    __trap();
#endif
}

// d += popc(A AND B) over one 256-bit k-step: A 64 x 256 bits at desc_a, B 256 x 256 bits at desc_b.
__device__ __forceinline__ void b1w_wgmma(int (&d)[128], unsigned long long desc_a, unsigned long long desc_b)
{
#if defined(B1W_SM90A)
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k256.s32.b1.b1.and.popc "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
        "%128, %129, p;\n"
        "}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
          "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
          "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
          "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
          "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
          "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
          "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
          "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]),
          "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]),
          "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]),
          "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]),
          "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]),
          "+r"(d[96]), "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]),
          "+r"(d[103]), "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]),
          "+r"(d[110]), "+r"(d[111]), "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]),
          "+r"(d[117]), "+r"(d[118]), "+r"(d[119]), "+r"(d[120]), "+r"(d[121]), "+r"(d[122]), "+r"(d[123]),
          "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
        : "l"(desc_a), "l"(desc_b), "r"(1));
#elif defined(QNNLIB_HOST_EMULATION)
    qnnlib_emu::wgmma_m64nNk256_b1_and_popc(d, 256, desc_a, desc_b, 1);
#else
    (void)d;
    (void)desc_a;
    (void)desc_b;
    __trap();
#endif
}

__device__ __forceinline__ unsigned char* b1w_dynamic_smem()
{
#if defined(QNNLIB_HOST_EMULATION)
    return qnnlib_emu::dynamic_shared();
#else
    extern __shared__ __align__(1024) unsigned char b1w_smem[];
    return b1w_smem;
#endif
}

extern "C" __global__ void __launch_bounds__(B1W_THREADS, 1)
b1_wgmma_gemm(const unsigned int* __restrict__ At, const unsigned int* __restrict__ Bt,
              const int* __restrict__ popA, const int* __restrict__ popB, int* __restrict__ C, int M, int N, int K,
              int slabs, int Mp, int Np)
{
    __shared__ __align__(8) unsigned long long full[B1W_STAGES];
    __shared__ __align__(8) unsigned long long empty[B1W_STAGES];
    unsigned char* smem = b1w_dynamic_smem();
    const int tid = threadIdx.x, wg = tid >> 7;
    const int m0 = blockIdx.x * B1W_BM, n0 = blockIdx.y * B1W_BN;

    if (tid == 0) {
        for (int s = 0; s < B1W_STAGES; ++s) {
            b1w_mbar_init(&full[s], 1);
            b1w_mbar_init(&empty[s], 8);  // lane 0 of each of the 8 consumer warps
        }
        b1w_fence_barrier_init();
    }
    __syncthreads();

    if (wg == 0) {  // ---- producer: one thread issues every copy ----
        if (tid == 0) {
            const unsigned char* a_src = reinterpret_cast<const unsigned char*>(At) + (long long)m0 * 64;
            const unsigned char* b_src = reinterpret_cast<const unsigned char*>(Bt) + (long long)n0 * 64;
            for (int kt = 0; kt < slabs; ++kt) {
                const int s = kt % B1W_STAGES;
                const unsigned int round = (unsigned int)(kt / B1W_STAGES);
                b1w_mbar_wait(&empty[s], (round & 1u) ^ 1u);
                unsigned char* slot = smem + s * B1W_STAGE_BYTES;
                b1w_mbar_arrive_expect_tx(&full[s], B1W_STAGE_BYTES);
                b1w_bulk_copy(slot, a_src + (long long)kt * Mp * 64, B1W_A_BYTES, &full[s]);
                b1w_bulk_copy(slot + B1W_A_BYTES, b_src + (long long)kt * Np * 64, B1W_B_BYTES, &full[s]);
            }
        }
        return;
    }

    // ---- consumers: warpgroup 1 -> rows m0 .. m0+63, warpgroup 2 -> rows m0+64 .. m0+127 ----
    const int cw = wg - 1;
    const int t = tid & 127, warp = t >> 5, lane = t & 31;
    int acc[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) acc[i] = 0;

    for (int kt = 0; kt < slabs; ++kt) {
        const int s = kt % B1W_STAGES;
        b1w_mbar_wait(&full[s], (unsigned int)(kt / B1W_STAGES) & 1u);
        const unsigned char* slot = smem + s * B1W_STAGE_BYTES;
        b1w_wgmma_fence();
#pragma unroll
        for (int j = 0; j < 2; ++j)
            b1w_wgmma(acc, b1w_desc(slot + cw * (B1W_A_BYTES / 2) + 256 * j),
                      b1w_desc(slot + B1W_A_BYTES + 256 * j));
        b1w_wgmma_commit();
        b1w_wgmma_wait<1>(acc);  // the wgmma of k-tile kt-1 have completed: its slot may be refilled
        if (kt > 0 && lane == 0) b1w_mbar_arrive(&empty[(kt - 1) % B1W_STAGES]);
    }
    b1w_wgmma_wait<0>(acc);

    // Epilogue (as b1_tc_gemm): C = K - 2 (popA + popB) + 4 acc, guarded; d[4q], d[4q+1] (and d[4q+2],
    // d[4q+3]) are adjacent columns, stored as one 8-byte int2 when both are in range and 8-byte aligned.
    const bool pair_ok = ((N & 1) == 0) && ((((unsigned long long)C) & 7ull) == 0ull);
    const int g = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int m = m0 + 64 * cw + 16 * warp + g + 8 * h;
        if (m >= M) continue;
        const int pa = K - 2 * popA[m];
#pragma unroll
        for (int q = 0; q < 32; ++q) {
            const int n = n0 + 8 * q + 2 * tq;
            int* dst = C + (long long)m * N + n;
            const int v0 = acc[4 * q + 2 * h], v1 = acc[4 * q + 2 * h + 1];
            if (pair_ok && n + 1 < N) {
                int2 v;
                v.x = pa - 2 * popB[n] + 4 * v0;
                v.y = pa - 2 * popB[n + 1] + 4 * v1;
                *reinterpret_cast<int2*>(dst) = v;
            } else {
                if (n < N) dst[0] = pa - 2 * popB[n] + 4 * v0;
                if (n + 1 < N) dst[1] = pa - 2 * popB[n + 1] + 4 * v1;
            }
        }
    }
}
