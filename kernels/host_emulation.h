// Host emulation of the CUDA built-ins used by kernels/*.cu, so that the SAME kernel sources run on a CPU.
//
// Force-included by g++ (qnnlib/runtime/cuda_host.py):
//   g++ -O2 -std=c++20 -DQNNLIB_HOST_EMULATION -include kernels/host_emulation.h -x c++ ...
// Not for nvcc/NVRTC (the kernels stay self-contained; their PTX wrappers have an
// `#elif defined(QNNLIB_HOST_EMULATION)` branch that calls the emulation below instead of inline PTX).
//
// Execution model. A launch runs its blocks on a few OS worker threads (one block at a time per worker).
// Inside a block every CUDA thread is a cooperative fiber (ucontext), so:
//   - `__shared__` is `static thread_local`: one copy per worker OS thread = per block being run. It is NOT
//     cleared between the blocks one worker runs (uninitialised on hardware too; reading it before writing
//     is not detected).
//   - `__syncthreads()` is a barrier over all the threads of the block: no fiber continues before every
//     thread has arrived. A barrier that some threads skip or exit before (divergent `__syncthreads`,
//     undefined behaviour in CUDA) is reported as a deadlock.
//   - warp collectives (__ballot_sync, __shfl*_sync, __any/__all_sync, __syncwarp, and the warp-wide
//     mma.sync) are warp barriers: the 32 lanes (the lanes of `mask`) deposit their operand, the last one to
//     arrive completes the operation, then every lane reads its result. Lanes of one warp arriving at
//     different collectives (divergence), a lane of `mask` that exited, or a barrier nobody can pass is
//     reported as an error (deadlock) instead of hanging. Divergent code without collectives simply runs
//     per thread (no lock-step SIMT model, no independent-thread-scheduling subtleties).
//   - mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc: the lanes' fragments are gathered into the
//     full 16x256 A, 256x8 B and 16x8 C matrices with the fragment layout of the PTX ISA (section
//     9.7.14.5.13 "Matrix Fragments for mma.m16n8k256", docs.nvidia.com/cuda/parallel-thread-execution/
//     #warp-level-matrix-fragment-mma-168256), D = C + popc(A AND B) is computed per (m, n) and scattered
//     back; a kernel whose fragments disagree with the ISA therefore gets a wrong product. With
//     g = laneid >> 2, t = laneid % 4 the ISA gives: A element a_i (registers a0..a3, 32 elements each, LSB
//     first): row g for registers a0, a2 and g + 8 for a1, a3; column 32 t + (i & 31), + 128 for a2, a3
//     (the ISA text prints "+ i" for i < 64, which would overlap a3 and leave columns 0..31 of rows g + 8
//     uncovered: a typo for "+ (i & 0x1F)", as in m16n8k128 and the figure). B element b_i: row (k)
//     32 t + (i & 31), + 128 for b1; column g. C/D: c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1).
//   - ldmatrix.sync.aligned.m8n8.{x1,x2,x4}.shared.b16 (qnnlib_emu::ldmatrix_m8n8_b16; PTX ISA section
//     9.7.14.5.15 "Warp-level matrix load instruction: ldmatrix", docs.nvidia.com/cuda/parallel-thread-execution/
//     #warp-level-matrix-instructions-ldmatrix) is a warp collective: lanes 8j .. 8j+7 supply the addresses of
//     rows 0..7 of matrix j (lanes 0-7 for .x1, 0-15 for .x2, all 32 for .x4; the other lanes' addresses are
//     ignored); each row is 8 b16 elements = 16 contiguous bytes and must be 16-byte aligned (reported
//     otherwise); lane i receives in its register d_j the elements (row i / 4, columns 2 (i % 4) and 2 (i % 4) + 1)
//     of matrix j, i.e. the 32-bit word i % 4 of row i / 4. (.trans and the m16n16 / m8n16 shapes are not
//     emulated.) Shared memory is plain host memory here, so kernels pass generic pointers.
//   - cp.async.{ca,cg}.shared.global [dst], [src], cp-size{, src-size} with cp.async.commit_group,
//     cp.async.wait_group N and cp.async.wait_all (qnnlib_emu::cp_async*; PTX ISA section "Data Movement and
//     Conversion Instructions: cp.async", "cp.async.commit_group", "cp.async.wait_group"): cp-size must be 4, 8
//     or 16 and both addresses aligned to it, 0 <= src-size <= cp-size (all reported otherwise). A copy is
//     DEFERRED, as on hardware it is asynchronous: cp.async only records it in the issuing thread's open group,
//     commit_group closes that group, and the copy happens (src-size bytes copied, the rest of cp-size
//     zero-filled) only when the ISSUING thread's wait_group N / wait_all completes its group (all but the N most
//     recently committed groups; copies never committed are never completed by wait_group). So a kernel that
//     reads a stage before waiting reads stale shared memory. In addition every 4-byte granule a cp.async
//     targets is tracked per block, and ldmatrix (the shared-memory reads the emulator sees; plain C++ loads are
//     not seen) reports as an error: reading bytes whose cp.async is still in flight (a missing / too weak
//     wait_group, a missing commit, or a stage refilled while another warp still reads it and the refill was
//     issued first), and reading bytes that a cp.async of ANOTHER thread landed with no __syncthreads() since
//     (the wait makes the data visible to the issuing thread only). Two cp.async in flight to the same bytes
//     are reported too. Copies still in flight when a thread exits are dropped.
//   - Dynamic shared memory (qnnlib_emu::dynamic_shared(), what `extern __shared__` gives a kernel): one
//     1024-byte aligned buffer per block of the launch's sharedMem bytes (at most 227 KiB, sm_90's opt-in
//     limit), filled with 0xA5 before every block. __cvta_generic_to_shared of a pointer into it gives an
//     emulated shared-window address (kSharedWindowBase + offset), as the wgmma matrix descriptors need.
//   - mbarrier (qnnlib_emu::mbarrier_*; PTX ISA "Parallel Synchronization and Communication Instructions:
//     mbarrier"): init with an arrival count; a phase completes when all its arrivals came AND its transaction
//     count (raised by arrive.expect_tx, lowered by the bulk copies that complete on it) is back to 0; then the
//     next phase expects `count` arrivals again. try_wait.parity P (in a loop: mbarrier_wait_parity) returns
//     once the phase of parity P has completed, i.e. while the current phase has the other parity (so on a
//     fresh barrier parity 1 passes at once: the "preceding phase"). Reported: use of an uninitialised barrier,
//     use by another thread with no __syncthreads() since its init, more transaction bytes completed than
//     announced; a wait that can never end shows as a deadlock.
//   - cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes (qnnlib_emu::bulk_copy_g2s): size a
//     nonzero multiple of 16, both addresses 16-byte aligned (reported otherwise). The bytes land at once, but
//     the transaction completes on the barrier only when a thread next waits on it; a wgmma that reads bytes
//     of a copy whose barrier nobody waited on yet is reported (read before the full-barrier wait), and so is a
//     copy into shared memory an issued, not yet completed wgmma reads (a slot released too early), or into
//     bytes another bulk copy has in flight. A block that exits with copies never waited on is reported.
//   - wgmma.fence / wgmma.mma_async.sync.aligned.m64nNk256.s32.b1.b1.and.popc / wgmma.commit_group /
//     wgmma.wait_group (qnnlib_emu::wgmma_*; PTX ISA "Asynchronous Warpgroup Level Matrix Multiply-Accumulate
//     Instructions") are warpgroup collectives (the 128 threads 128 w .. 128 w + 127 must all arrive; the block
//     must be whole warpgroups). mma_async only records the operation (all threads must pass the same
//     descriptors, N and scale-d) in the warpgroup's open group; commit_group closes the group; wait_group N
//     EXECUTES every committed group but the N most recent, in order -- so reading the accumulators before the
//     wait reads their old values, as on hardware. Execution reads A (64 x 256 bits) and B (N x 256 bits) from
//     shared memory through the matrix descriptors (bits 0-13 start address >> 4 in the shared window, 16-29
//     leading-dimension byte offset >> 4 = distance between the two 128-bit core matrices along K, 32-45
//     stride-dimension byte offset >> 4 = distance between 8-row groups; a core matrix is 8 rows x 16 bytes,
//     row r at byte 16 r, element k of a row at bit k % 8 of byte k / 8; only the no-swizzle mode with base
//     offset 0 is emulated, others are reported) and computes D = (scale-d ? D : 0) + popc(A AND B) into each
//     thread's registers with the accumulator fragment of the PTX ISA ("Register Fragments", D of
//     wgmma .m64nNk*): thread t, register i holds row 16 (t / 32) + (t % 32) / 4 + 8 ((i / 2) % 2), column
//     8 (i / 4) + 2 (t % 4) + i % 2. A block exiting with wgmma not completed by a wait is reported.
//   - Scheduling: by default the fibers of a block run round-robin (each runs until it blocks, then the next),
//     so all warps advance about one collective per sweep and stay nearly in step. With the environment variable
//     QNNLIB_CUDA_HOST_SCHEDULE=depth-first (read at each launch) the scheduler always resumes the
//     lowest-numbered runnable fiber instead: warp 0 runs ahead to its next __syncthreads before warp 1 starts,
//     which exposes write-after-read races that round-robin hides (e.g. a cp.async refill of a pipeline stage
//     issued before the barrier that guarantees every warp finished reading it). Results of race-free kernels
//     do not depend on the schedule.
// Not modelled: timing, memory model/ordering and races beyond the barriers (blocks of one launch may run
// concurrently on the workers), shared-memory bank conflicts, caches/__restrict__/__ldg (plain loads),
// register limits and occupancy, TMA tensor maps and swizzled wgmma layouts, clusters and multicast,
// setmaxnreg, the async proxy's fences (fence.proxy.async) beyond the checks above, __constant__ memory
// written from the host, streams,
// FMA contraction (nvcc contracts a*b+c into fma by default; this build uses -ffp-contract=off, so float
// kernels give the results of separate IEEE multiply and add), device-side printf/malloc. Launch
// configuration errors that CUDA reports (block > 1024 threads or over __launch_bounds__, a zero or too
// large grid/block dimension) are reported as errors.

#pragma once

#include <ucontext.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
#include <array>
#include <deque>
#include <unordered_map>

struct uint3 {
    unsigned int x, y, z;
};
struct __attribute__((aligned(8))) int2 {
    int x, y;
};
inline int2 make_int2(int x, int y) { return int2{x, y}; }
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace qnnlib_emu {

constexpr int kWarpSize = 32;
constexpr size_t kStackBytes = 128 * 1024;  // per emulated CUDA thread (fiber)

enum class Wait : int { none, block, warp, mbarrier, warpgroup };
enum class Op : int { none, syncwarp, ballot, any, all, shfl, shfl_up, shfl_down, shfl_xor, mma_b1_and,
                      ldmatrix, wgmma_fence, wgmma_mma, wgmma_commit, wgmma_wait };

struct Fiber {
    ucontext_t ctx;
    uint3 tid;
    int linear = 0, lane = 0, warp = 0;
    bool done = false;
    Wait wait = Wait::none;
    unsigned long long wait_gen = 0;
};

struct CollectiveBuf {  // one warp collective's operands and results
    unsigned long long in[kWarpSize];
    unsigned long long out[kWarpSize];
    int arg[kWarpSize];
    unsigned int a[kWarpSize][4];
    unsigned int b[kWarpSize][2];
    int c[kWarpSize][4];
    int d[kWarpSize][4];
    unsigned int r[kWarpSize][4];  // ldmatrix results
};

struct WarpState {
    unsigned long long gen = 0;  // completed collectives
    unsigned int arrived = 0;    // lanes arrived at the pending collective
    unsigned int mask = 0;
    Op op = Op::none;
    CollectiveBuf buf[2];  // double-buffered by gen parity: collective n+2 can only start once n+1 completed
};

struct LaunchInfo {
    dim3 grid, block;
    const char* kernel;
    bool depth_first = false;  // QNNLIB_CUDA_HOST_SCHEDULE=depth-first (see the top of this file)
    unsigned long long shared_bytes = 0;  // dynamic shared memory per block (the launch's sharedMem)
};

// The emulated shared window: dynamic shared memory starts at this "shared address" (as a 32-bit
// __cvta_generic_to_shared would give on hardware, where it is never 0), so wgmma descriptors built from it hold
// real 18-bit window addresses.
constexpr unsigned long long kSharedWindowBase = 0x1000;
constexpr unsigned long long kMaxDynamicShared = 232448;  // 227 KiB: sm_90's opt-in maximum per block

// mbarrier (see the top of this file): one per 8-byte shared address the kernel initialised.
struct MBarrier {
    unsigned int count = 0;     // expected arrivals per phase
    long long pending = 0;      // arrivals still missing in the current phase
    long long tx = 0;           // transaction bytes still expected in the current phase
    unsigned long long phase = 0;  // completed phases
    int init_thread = -1;           // who ran mbarrier.init, and the block barrier generation then
    unsigned long long init_gen = 0;
};
struct BulkCopy {  // a cp.async.bulk whose bytes landed but whose complete_tx is not yet observed
    const unsigned char* dst;
    unsigned int bytes;
    std::uintptr_t bar;
};
struct WgmmaOp {  // one wgmma.mma_async of a warpgroup, executed at the wgmma.wait_group that completes it
    int* d[128];
    unsigned long long desc_a, desc_b;
    int n, scale_d;
};
struct WarpgroupState {
    unsigned long long gen = 0;  // completed warpgroup collectives
    int arrived = 0;
    Op op = Op::none;
    unsigned long long args[128][3];  // each thread's operands of the wgmma being issued
    int* dptr[128];
    std::vector<WgmmaOp> open;                  // issued, not yet committed
    std::deque<std::vector<WgmmaOp>> groups;    // committed, not yet complete
};

// cp.async bookkeeping of one block (see the top of this file).
struct AsyncCopy {
    unsigned char* dst;
    const unsigned char* src;
    int cp_size, src_size;
};
struct AsyncShadow {  // one 4-byte granule of shared memory that a cp.async wrote
    int writer = -1;  // linear thread id of the issuing thread
    bool pending = false;
    unsigned long long landed_gen = 0;  // block barrier generation when the copy landed
};
struct AsyncState {
    bool used = false;
    std::vector<std::vector<AsyncCopy>> open;               // per thread: issued, not yet committed
    std::vector<std::deque<std::vector<AsyncCopy>>> groups;  // per thread: committed, not yet completed
    std::unordered_map<std::uintptr_t, AsyncShadow> shadow;  // granule address / 4 -> state
    void reset(size_t threads) {
        if (!used && open.size() == threads) return;
        open.assign(threads, {});
        groups.assign(threads, {});
        shadow.clear();
        used = false;
    }
};

struct Block {
    uint3 block_idx;
    const LaunchInfo* launch = nullptr;
    std::vector<Fiber> fibers;
    std::vector<WarpState> warps;
    int live = 0, bar_count = 0;
    unsigned long long bar_gen = 0;
    ucontext_t sched;
    std::function<void()> entry;
    bool failed = false;
    std::string error;
    AsyncState async;
    unsigned char* dyn = nullptr;  // dynamic shared memory of the block (launch.shared_bytes)
    std::unordered_map<std::uintptr_t, MBarrier> mbars;
    std::vector<BulkCopy> bulk;  // in flight
    std::vector<WarpgroupState> wgroups;
    unsigned long long mbar_epoch = 0;  // counts completed mbarrier phases (wakes waiting fibers)
};

inline thread_local Block* tl_block = nullptr;
inline thread_local Fiber* tl_fiber = nullptr;

inline std::string where() {
    const Fiber& f = *tl_fiber;
    const Block& b = *tl_block;
    return std::string(b.launch->kernel) + ", block (" + std::to_string(b.block_idx.x) + ", " +
           std::to_string(b.block_idx.y) + ", " + std::to_string(b.block_idx.z) + "), thread (" +
           std::to_string(f.tid.x) + ", " + std::to_string(f.tid.y) + ", " + std::to_string(f.tid.z) + ")";
}

[[noreturn]] inline void fail(const std::string& msg) {
    Block& b = *tl_block;
    if (!b.failed) {
        b.failed = true;
        b.error = msg;
    }
    swapcontext(&tl_fiber->ctx, &b.sched);  // never resumed
    std::abort();
}

inline void yield() { swapcontext(&tl_fiber->ctx, &tl_block->sched); }

inline void release_block_barrier_if_complete(Block& b) {
    if (b.bar_count > 0 && b.bar_count == (int)b.fibers.size()) {
        b.bar_count = 0;
        ++b.bar_gen;
    }
}

__attribute__((noinline)) inline void syncthreads() {
    Block& b = *tl_block;
    Fiber& f = *tl_fiber;
    const unsigned long long gen = b.bar_gen;
    ++b.bar_count;
    asm volatile("" ::: "memory");
    if (b.bar_count == (int)b.fibers.size()) {
        release_block_barrier_if_complete(b);
        return;
    }
    f.wait = Wait::block;
    f.wait_gen = gen;
    yield();
    f.wait = Wait::none;
    asm volatile("" ::: "memory");
}

// Arrive at a warp collective: deposit with `deposit(buf, lane)` before, `complete(buf)` runs once, by the
// last lane to arrive; returns the buffer to read the results from.
template <class Deposit, class Complete>
__attribute__((noinline)) CollectiveBuf& warp_collective(Op op, unsigned int mask, Deposit&& deposit,
                                                         Complete&& complete) {
    Block& b = *tl_block;
    Fiber& f = *tl_fiber;
    WarpState& w = b.warps[f.warp];
    const unsigned int bit = 1u << f.lane;
    if (!(mask & bit))
        fail("warp collective called by lane " + std::to_string(f.lane) + " that is not in its mask (" +
             where() + ")");
    // Lanes that do not exist in a partial last warp cannot take part.
    const int warp_first = f.warp * kWarpSize;
    const int lanes_here = std::min<int>(kWarpSize, (int)b.fibers.size() - warp_first);
    const unsigned int existing = lanes_here == kWarpSize ? 0xffffffffu : ((1u << lanes_here) - 1u);
    if (mask & ~existing)
        fail("warp collective mask names lanes that do not exist in this (partial) warp (" + where() + ")");
    if (w.arrived == 0) {
        w.op = op;
        w.mask = mask;
    } else if (w.op != op || w.mask != mask) {
        fail("warp divergence: lanes of one warp reached different warp collectives (or masks) at the same "
             "time (" + where() + ")");
    }
    CollectiveBuf& buf = w.buf[w.gen & 1];
    deposit(buf, f.lane);
    w.arrived |= bit;
    if (w.arrived == mask) {
        complete(buf);
        w.arrived = 0;
        w.op = Op::none;
        ++w.gen;
    } else {
        f.wait = Wait::warp;
        f.wait_gen = w.gen;
        yield();
        f.wait = Wait::none;
    }
    return buf;
}

template <class T>
unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffle of a type over 8 bytes");
    unsigned long long r = 0;
    std::memcpy(&r, &v, sizeof(T));
    return r;
}
template <class T>
T from_bits(unsigned long long r) {
    T v;
    std::memcpy(&v, &r, sizeof(T));
    return v;
}

inline unsigned int ballot(Op op, unsigned int mask, int pred) {
    CollectiveBuf& buf = warp_collective(
        op, mask, [&](CollectiveBuf& bb, int lane) { bb.in[lane] = pred ? 1u : 0u; },
        [&](CollectiveBuf& bb) {
            unsigned int word = 0;
            for (int l = 0; l < kWarpSize; ++l)
                if ((mask >> l) & 1u) word |= (unsigned int)bb.in[l] << l;
            for (int l = 0; l < kWarpSize; ++l) bb.out[l] = word;
        });
    return (unsigned int)buf.out[tl_fiber->lane];
}

// Every shuffle: lane reads `var` of src lane (computed per CUDA's definition) within segments of `width`.
template <class T>
T shuffle(Op op, unsigned int mask, T var, int arg, int width) {
    if (width < 1 || width > kWarpSize || (width & (width - 1)))
        fail("__shfl*_sync width must be a power of 2 in [1, 32] (" + where() + ")");
    CollectiveBuf& buf = warp_collective(
        op, mask,
        [&](CollectiveBuf& bb, int lane) {
            bb.in[lane] = to_bits(var);
            bb.arg[lane] = arg;
        },
        [&](CollectiveBuf& bb) {
            for (int l = 0; l < kWarpSize; ++l) {
                if (!((mask >> l) & 1u)) continue;
                const int base = l & ~(width - 1), in_seg = l - base, a = bb.arg[l];
                int src = l;
                if (op == Op::shfl) src = base + (a & (width - 1));
                else if (op == Op::shfl_up) src = in_seg - a >= 0 ? l - a : l;
                else if (op == Op::shfl_down) src = in_seg + a < width ? l + a : l;
                else if (op == Op::shfl_xor) src = (l ^ a) < base + width ? (l ^ a) : l;
                // Reading a lane outside the mask is undefined in CUDA: it reads a 0xdeadbeef pattern here.
                if (!((mask >> src) & 1u)) src = -1;
                bb.out[l] = src < 0 ? 0xdeadbeefdeadbeefull : bb.in[src];
            }
        });
    return from_bits<T>(buf.out[tl_fiber->lane]);
}

// mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc {d0..d3}, {a0..a3}, {b0, b1}, {c0..c3}
// as a warp collective, fragment layout per the PTX ISA (see the top of this file).
inline void mma_m16n8k256_and_popc(int (&d)[4], const unsigned int (&a)[4], const unsigned int (&b)[2],
                                   const int (&c)[4]) {
    CollectiveBuf& buf = warp_collective(
        Op::mma_b1_and, 0xffffffffu,
        [&](CollectiveBuf& bb, int lane) {
            for (int i = 0; i < 4; ++i) bb.a[lane][i] = a[i], bb.c[lane][i] = c[i];
            for (int i = 0; i < 2; ++i) bb.b[lane][i] = b[i];
        },
        [&](CollectiveBuf& bb) {
            unsigned int A[16][8];  // A[m][chunk]: bits 32 chunk .. 32 chunk + 31 of row m (LSB first)
            unsigned int B[8][8];   // B[n][chunk]: column n of the 256 x 8 B, same packing along k
            int C[16][8], D[16][8];
            int seenA[16][8] = {}, seenB[8][8] = {}, seenC[16][8] = {};
            for (int lane = 0; lane < kWarpSize; ++lane) {
                const int g = lane >> 2, t = lane & 3;
                for (int r = 0; r < 4; ++r) {  // a_r: row g (r = 0, 2) or g + 8 (r = 1, 3); chunk t (+ 4 for r >= 2)
                    const int row = g + ((r & 1) ? 8 : 0), chunk = t + (r >= 2 ? 4 : 0);
                    A[row][chunk] = bb.a[lane][r];
                    ++seenA[row][chunk];
                }
                for (int r = 0; r < 2; ++r) {  // b_r: column g; k chunk t (+ 4 for r = 1)
                    B[g][t + 4 * r] = bb.b[lane][r];
                    ++seenB[g][t + 4 * r];
                }
                for (int r = 0; r < 4; ++r) {  // c_r: row g (+ 8 for r >= 2), column 2t + (r & 1)
                    const int row = g + (r >= 2 ? 8 : 0), col = 2 * t + (r & 1);
                    C[row][col] = bb.c[lane][r];
                    ++seenC[row][col];
                }
            }
            for (int m = 0; m < 16; ++m)
                for (int n = 0; n < 8; ++n) {
                    if (seenA[m][n] != 1 || seenC[m][n] != 1 || (m < 8 && seenB[m][n] != 1))
                        fail("mma emulation: fragment layout does not cover the matrices exactly once");
                    int acc = C[m][n];
                    for (int w = 0; w < 8; ++w) acc += std::popcount(A[m][w] & B[n][w]);
                    D[m][n] = acc;
                }
            for (int lane = 0; lane < kWarpSize; ++lane) {
                const int g = lane >> 2, t = lane & 3;
                for (int r = 0; r < 4; ++r) bb.d[lane][r] = D[g + (r >= 2 ? 8 : 0)][2 * t + (r & 1)];
            }
        });
    for (int r = 0; r < 4; ++r) d[r] = buf.d[tl_fiber->lane][r];
}

// ---- cp.async and ldmatrix (see the top of this file) -------------------------------------------------

inline std::string hex_ptr(const void* p) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%p", p);
    return buf;
}

// cp.async.{ca,cg}.shared.global [dst], [src], cp_size, src_size: recorded in the thread's open group.
inline void cp_async(void* dst, const void* src, int cp_size, int src_size) {
    Block& b = *tl_block;
    Fiber& f = *tl_fiber;
    if (cp_size != 4 && cp_size != 8 && cp_size != 16)
        fail("cp.async cp-size must be 4, 8 or 16, got " + std::to_string(cp_size) + " (" + where() + ")");
    if (src_size < 0 || src_size > cp_size)
        fail("cp.async src-size " + std::to_string(src_size) + " outside [0, cp-size " + std::to_string(cp_size) +
             "] (" + where() + ")");
    if (((std::uintptr_t)dst | (std::uintptr_t)src) % (std::uintptr_t)cp_size)
        fail("cp.async addresses must be aligned to cp-size " + std::to_string(cp_size) + ": dst " + hex_ptr(dst) +
             ", src " + hex_ptr(src) + " (" + where() + ")");
    b.async.used = true;
    for (int o = 0; o < cp_size; o += 4) {
        AsyncShadow& s = b.async.shadow[((std::uintptr_t)dst + o) / 4];
        if (s.pending)
            fail("cp.async writes shared memory " + hex_ptr((char*)dst + o) + " that another cp.async (of thread " +
                 std::to_string(s.writer) + ") still has in flight (" + where() + ")");
        s.writer = f.linear;
        s.pending = true;
    }
    b.async.open[(size_t)f.linear].push_back(
        AsyncCopy{static_cast<unsigned char*>(dst), static_cast<const unsigned char*>(src), cp_size, src_size});
}

inline void cp_async_commit_group() {
    Block& b = *tl_block;
    const size_t me = (size_t)tl_fiber->linear;
    b.async.groups[me].push_back(std::move(b.async.open[me]));  // an empty group is a valid group
    b.async.open[me].clear();
}

// cp.async.wait_group n: complete (perform) every committed group of this thread but the n most recent.
inline void cp_async_wait_group(int n) {
    Block& b = *tl_block;
    if (n < 0) fail("cp.async.wait_group needs N >= 0 (" + where() + ")");
    auto& groups = b.async.groups[(size_t)tl_fiber->linear];
    while (groups.size() > (size_t)n) {
        for (const AsyncCopy& c : groups.front()) {
            std::memcpy(c.dst, c.src, (size_t)c.src_size);
            std::memset(c.dst + c.src_size, 0, (size_t)(c.cp_size - c.src_size));
            for (int o = 0; o < c.cp_size; o += 4) {
                AsyncShadow& s = b.async.shadow[((std::uintptr_t)c.dst + o) / 4];
                s.pending = false;
                s.landed_gen = b.bar_gen;
            }
        }
        groups.pop_front();
    }
}

inline void cp_async_wait_all() {  // = cp.async.commit_group + cp.async.wait_group 0
    cp_async_commit_group();
    cp_async_wait_group(0);
}

// ldmatrix.sync.aligned.m8n8.x{num}.shared.b16 {d0..d(num-1)}, [row_addr] as a warp collective.
inline void ldmatrix_m8n8_b16(int num, unsigned int* d, const void* row_addr) {
    if (num != 1 && num != 2 && num != 4) fail("ldmatrix .num must be x1, x2 or x4 (" + where() + ")");
    const int warp = tl_fiber->warp;
    CollectiveBuf& buf = warp_collective(
        Op::ldmatrix, 0xffffffffu,
        [&](CollectiveBuf& bb, int lane) {
            bb.in[lane] = (unsigned long long)(std::uintptr_t)row_addr;
            bb.arg[lane] = num;
        },
        [&](CollectiveBuf& bb) {
            Block& b = *tl_block;
            for (int l = 1; l < kWarpSize; ++l)
                if (bb.arg[l] != bb.arg[0]) fail("ldmatrix: lanes of one warp disagree on .num (" + where() + ")");
            for (int j = 0; j < num; ++j)
                for (int row = 0; row < 8; ++row) {
                    const int src_lane = 8 * j + row;
                    const std::uintptr_t addr = (std::uintptr_t)bb.in[src_lane];
                    if (addr % 16)
                        fail("ldmatrix: row address of lane " + std::to_string(src_lane) + " (" +
                             hex_ptr((void*)addr) + ") is not 16-byte aligned (" + where() + ")");
                    if (b.async.used)
                        for (int o = 0; o < 16; o += 4) {
                            auto it = b.async.shadow.find((addr + o) / 4);
                            if (it == b.async.shadow.end()) continue;
                            const AsyncShadow& s = it->second;
                            const int reader = warp * kWarpSize + src_lane;
                            if (s.pending)
                                fail("ldmatrix (lane " + std::to_string(src_lane) + ") reads shared memory " +
                                     hex_ptr((void*)(addr + o)) + " while the cp.async of thread " +
                                     std::to_string(s.writer) + " that writes it is still in flight (missing or "
                                     "too weak cp.async.wait_group / commit_group, or the stage was refilled too "
                                     "early) (" + where() + ")");
                            if (s.writer != reader && s.landed_gen == b.bar_gen)
                                fail("ldmatrix (lane " + std::to_string(src_lane) + ") reads shared memory " +
                                     hex_ptr((void*)(addr + o)) + " that the cp.async of thread " +
                                     std::to_string(s.writer) + " completed with no __syncthreads() since (" +
                                     where() + ")");
                        }
                    for (int w = 0; w < 4; ++w)  // lane 4 row + w receives word w of the row
                        std::memcpy(&bb.r[4 * row + w][j], reinterpret_cast<const void*>(addr + 4 * w), 4);
                }
        });
    for (int j = 0; j < num; ++j) d[j] = buf.r[tl_fiber->lane][j];
}

// ---- dynamic shared memory, mbarrier, cp.async.bulk, wgmma (see the top of this file) -----------------

inline unsigned char* dynamic_shared() {
    Block& b = *tl_block;
    if (!b.dyn)
        fail("the kernel uses dynamic shared memory but was launched with sharedMem = 0 (" + where() + ")");
    return b.dyn;
}

inline MBarrier& mbarrier_at(const void* bar, const char* what) {
    Block& b = *tl_block;
    auto it = b.mbars.find((std::uintptr_t)bar);
    if (it == b.mbars.end())
        fail(std::string(what) + " on " + hex_ptr(bar) + ", which is not an initialised mbarrier (mbarrier.init "
                                 "missing) (" + where() + ")");
    if (it->second.init_thread != tl_fiber->linear && it->second.init_gen == b.bar_gen)
        fail(std::string(what) + " on an mbarrier that thread " + std::to_string(it->second.init_thread) +
             " initialised with no __syncthreads() since: the init is not yet visible to this thread (" + where() +
             ")");
    return it->second;
}

inline void mbarrier_complete_if_done(MBarrier& m) {
    if (m.pending == 0 && m.tx == 0) {
        ++m.phase;
        m.pending = m.count;
        ++tl_block->mbar_epoch;
    }
}

// mbarrier.init.shared::cta.b64 [bar], count
inline void mbarrier_init(void* bar, unsigned int count) {
    if ((std::uintptr_t)bar % 8) fail("mbarrier.init: the barrier must be 8-byte aligned (" + where() + ")");
    if (count < 1 || count > (1u << 20) - 1)
        fail("mbarrier.init: count must be in [1, 2^20 - 1], got " + std::to_string(count) + " (" + where() + ")");
    MBarrier& m = tl_block->mbars[(std::uintptr_t)bar];
    m = MBarrier{count, (long long)count, 0, 0, tl_fiber->linear, tl_block->bar_gen};
}

// An arrival; the phase completes with the count-th arrival once no transaction bytes are outstanding, and the
// next phase expects `count` arrivals again.
inline void mbarrier_arrive_impl(MBarrier& m) {
    --m.pending;
    mbarrier_complete_if_done(m);
}

// mbarrier.arrive.shared::cta.b64 _, [bar]
inline void mbarrier_arrive(void* bar) { mbarrier_arrive_impl(mbarrier_at(bar, "mbarrier.arrive")); }

// mbarrier.arrive.expect_tx.shared::cta.b64 _, [bar], bytes: expect `bytes` more transaction bytes, then arrive.
inline void mbarrier_arrive_expect_tx(void* bar, unsigned int bytes) {
    MBarrier& m = mbarrier_at(bar, "mbarrier.arrive.expect_tx");
    m.tx += bytes;
    mbarrier_arrive_impl(m);
}

// The bulk copies on `bar` complete their transactions (lazily: when somebody looks at the barrier).
inline void bulk_complete(std::uintptr_t bar) {
    Block& b = *tl_block;
    MBarrier& m = b.mbars[bar];
    bool any = false;
    for (size_t i = 0; i < b.bulk.size();) {
        if (b.bulk[i].bar == bar) {
            m.tx -= b.bulk[i].bytes;
            b.bulk[i] = b.bulk.back();
            b.bulk.pop_back();
            any = true;
        } else {
            ++i;
        }
    }
    if (any) {
        if (m.tx < 0)
            fail("mbarrier: bulk copies completed more transaction bytes than arrive.expect_tx announced (" +
                 where() + ")");
        mbarrier_complete_if_done(m);
    }
}

// mbarrier.try_wait.parity.shared::cta.b64 in a loop: return once the phase of parity `parity` has completed
// (i.e. the current phase has the other parity).
inline void mbarrier_wait_parity(void* bar, unsigned int parity) {
    Block& b = *tl_block;
    Fiber& f = *tl_fiber;
    if (parity > 1) fail("mbarrier.try_wait.parity: parity must be 0 or 1 (" + where() + ")");
    for (;;) {
        mbarrier_at(bar, "mbarrier.try_wait.parity");
        bulk_complete((std::uintptr_t)bar);
        if ((b.mbars[(std::uintptr_t)bar].phase & 1u) != parity) return;
        f.wait = Wait::mbarrier;
        f.wait_gen = b.mbar_epoch;
        yield();
        f.wait = Wait::none;
    }
}

// A 128-byte-chunk list of the shared memory one wgmma operand reads (no-swizzle K-major, see wgmma below).
struct SmemSpan {
    const unsigned char* p;
    size_t bytes;
};
inline bool overlaps(const unsigned char* a, size_t na, const unsigned char* b, size_t nb) {
    return a < b + nb && b < a + na;
}

struct Descriptor {
    const unsigned char* start;
    unsigned long long lbo, sbo;
};

// Decode a wgmma matrix descriptor (PTX ISA "Matrix Descriptor Format"): bits 0-13 start address >> 4, 16-29
// leading-dimension byte offset >> 4, 32-45 stride-dimension byte offset >> 4, 49-51 base offset, 62-63
// swizzle mode. Only the no-swizzle mode with base offset 0 is emulated; the start must be in the block's
// dynamic shared memory, and `rows` x 256 bits from it must stay inside it.
inline Descriptor decode_descriptor(unsigned long long desc, int rows, const char* which) {
    Block& b = *tl_block;
    const unsigned long long start = (desc & 0x3FFFull) << 4, lbo = ((desc >> 16) & 0x3FFFull) << 4,
                             sbo = ((desc >> 32) & 0x3FFFull) << 4;
    if ((desc >> 62) != 0 || ((desc >> 49) & 7ull) != 0)
        fail(std::string("wgmma: descriptor of ") + which + " uses a swizzle mode or base offset; only the "
             "no-swizzle layout (bits 62-63 = 0, base offset 0) is emulated (" + where() + ")");
    if (!b.dyn || start < kSharedWindowBase || start - kSharedWindowBase >= b.launch->shared_bytes)
        fail(std::string("wgmma: descriptor of ") + which + " starts at shared address " + std::to_string(start) +
             ", outside the block's dynamic shared memory (" + where() + ")");
    const unsigned long long off = start - kSharedWindowBase;
    const unsigned long long last = off + (unsigned long long)(rows / 8 - 1) * sbo + lbo + 128;
    if (last > b.launch->shared_bytes)
        fail(std::string("wgmma: ") + which + " (" + std::to_string(rows) + " rows from the descriptor) reaches "
             "past the dynamic shared memory (" + where() + ")");
    return Descriptor{b.dyn + off, lbo, sbo};
}

// Row `row` (256 bits along K) of a no-swizzle K-major operand: core matrix (row / 8, k / 128) is 8 rows x 16
// bytes at start + (row / 8) SBO + (k / 128) LBO, row r of it at byte 16 r; bit k % 8 of byte (k % 128) / 8.
inline void load_row256(const Descriptor& d, int row, unsigned long long (&out)[4]) {
    for (int kc = 0; kc < 2; ++kc)
        std::memcpy(&out[2 * kc], d.start + (size_t)(row >> 3) * d.sbo + (size_t)kc * d.lbo + 16 * (row & 7), 16);
}

inline void operand_spans(const Descriptor& d, int rows, std::vector<SmemSpan>& out) {
    for (int g = 0; g < rows / 8; ++g)
        for (int kc = 0; kc < 2; ++kc) out.push_back(SmemSpan{d.start + (size_t)g * d.sbo + (size_t)kc * d.lbo, 128});
}

// Execute one wgmma.mma_async.m64nNk256.s32.b1.b1.and.popc: D (= scale_d ? D : 0) + popc(A AND B), the
// accumulator fragment of the PTX ISA ("Register Fragments", wgmma D matrix): thread t of the warpgroup holds
// in d[i] the element (16 (t / 32) + (t % 32) / 4 + 8 ((i / 2) % 2), 8 (i / 4) + 2 (t % 4) + i % 2).
inline void wgmma_execute(const WgmmaOp& op) {
    const Descriptor da = decode_descriptor(op.desc_a, 64, "A"), db = decode_descriptor(op.desc_b, op.n, "B");
    std::vector<std::array<unsigned long long, 4>> A(64), B((size_t)op.n);
    for (int r = 0; r < 64; ++r) {
        unsigned long long row[4];
        load_row256(da, r, row);
        std::memcpy(A[(size_t)r].data(), row, sizeof row);
    }
    for (int r = 0; r < op.n; ++r) {
        unsigned long long row[4];
        load_row256(db, r, row);
        std::memcpy(B[(size_t)r].data(), row, sizeof row);
    }
    for (int t = 0; t < 128; ++t) {
        const int w = t >> 5, g = (t & 31) >> 2, q = t & 3;
        for (int i = 0; i < op.n / 2; ++i) {
            const int m = 16 * w + g + 8 * ((i >> 1) & 1), n = 8 * (i >> 2) + 2 * q + (i & 1);
            int acc = op.scale_d ? op.d[t][i] : 0;
            for (int x = 0; x < 4; ++x) acc += std::popcount(A[(size_t)m][(size_t)x] & B[(size_t)n][(size_t)x]);
            op.d[t][i] = acc;
        }
    }
}

// Arrive at a warpgroup collective (128 threads, warpgroup = linear thread id / 128): `deposit(state, t)` for
// every thread, `complete(state)` once by the last one.
template <class Deposit, class Complete>
__attribute__((noinline)) void warpgroup_collective(Op op, Deposit&& deposit, Complete&& complete) {
    Block& b = *tl_block;
    Fiber& f = *tl_fiber;
    if (b.fibers.size() % 128)
        fail("wgmma instructions need whole warpgroups: the block has " + std::to_string(b.fibers.size()) +
             " threads, not a multiple of 128 (" + where() + ")");
    WarpgroupState& w = b.wgroups[(size_t)(f.linear / 128)];
    if (w.arrived == 0) w.op = op;
    else if (w.op != op)
        fail("warpgroup divergence: threads of one warpgroup reached different wgmma instructions (" + where() + ")");
    deposit(w, f.linear % 128);
    if (++w.arrived == 128) {
        complete(w);
        w.arrived = 0;
        w.op = Op::none;
        ++w.gen;
    } else {
        f.wait = Wait::warpgroup;
        f.wait_gen = w.gen;
        yield();
        f.wait = Wait::none;
    }
}

// wgmma.fence.sync.aligned: orders the warpgroup's register accesses before the next wgmma (nothing to do here;
// checked as a warpgroup collective).
inline void wgmma_fence() {
    warpgroup_collective(Op::wgmma_fence, [](WarpgroupState&, int) {}, [](WarpgroupState&) {});
}

// wgmma.mma_async.sync.aligned.m64nNk256.s32.b1.b1.and.popc d, desc_a, desc_b, scale_d: recorded in the
// warpgroup's open group; executed only by the wgmma.wait_group that completes its group.
inline void wgmma_m64nNk256_b1_and_popc(int* d, int n, unsigned long long desc_a, unsigned long long desc_b,
                                        int scale_d) {
    if (n < 8 || n > 256 || n % 8)
        fail("wgmma .m64nNk256 .b1: N must be a multiple of 8 in [8, 256], got " + std::to_string(n) + " (" +
             where() + ")");
    warpgroup_collective(
        Op::wgmma_mma,
        [&](WarpgroupState& w, int t) {
            w.args[t][0] = desc_a;
            w.args[t][1] = desc_b;
            w.args[t][2] = ((unsigned long long)n << 1) | (scale_d ? 1u : 0u);
            w.dptr[t] = d;
        },
        [&](WarpgroupState& w) {
            Block& b = *tl_block;
            for (int t = 1; t < 128; ++t)
                if (w.args[t][0] != w.args[0][0] || w.args[t][1] != w.args[0][1] || w.args[t][2] != w.args[0][2])
                    fail("wgmma: the threads of a warpgroup disagree on the descriptors, N or scale-d (" + where() +
                         ")");
            WgmmaOp op{};
            for (int t = 0; t < 128; ++t) op.d[t] = w.dptr[t];
            op.desc_a = desc_a;
            op.desc_b = desc_b;
            op.n = n;
            op.scale_d = scale_d ? 1 : 0;
            std::vector<SmemSpan> spans;
            operand_spans(decode_descriptor(desc_a, 64, "A"), 64, spans);
            operand_spans(decode_descriptor(desc_b, n, "B"), n, spans);
            for (const SmemSpan& s : spans)
                for (const BulkCopy& c : b.bulk)
                    if (overlaps(s.p, s.bytes, c.dst, c.bytes))
                        fail("wgmma reads shared memory that a cp.async.bulk is still writing: its mbarrier phase "
                             "was not waited on before the wgmma (" + where() + ")");
            w.open.push_back(op);
        });
}

// wgmma.commit_group.sync.aligned: the open wgmma become one group.
inline void wgmma_commit_group() {
    warpgroup_collective(Op::wgmma_commit, [](WarpgroupState&, int) {}, [](WarpgroupState& w) {
        w.groups.push_back(std::move(w.open));
        w.open.clear();
    });
}

// wgmma.wait_group.sync.aligned n: every committed group but the n most recent is complete (executed now).
inline void wgmma_wait_group(int n) {
    if (n < 0 || n > 7) fail("wgmma.wait_group N must be in [0, 7] (" + where() + ")");
    warpgroup_collective(Op::wgmma_wait, [](WarpgroupState&, int) {}, [&](WarpgroupState& w) {
        while (w.groups.size() > (size_t)n) {
            for (const WgmmaOp& op : w.groups.front()) wgmma_execute(op);
            w.groups.pop_front();
        }
    });
}

// cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [dst], [src], bytes, [bar]. The bytes land
// at once (so a slot refilled while a wgmma still has to read it gives a wrong product), but the transaction
// completes on `bar` only when a thread next waits on it (so reading the slot before waiting is caught).
inline void bulk_copy_g2s(void* dst, const void* src, unsigned int bytes, void* bar) {
    Block& b = *tl_block;
    if (bytes == 0 || bytes % 16 || ((std::uintptr_t)dst | (std::uintptr_t)src) % 16)
        fail("cp.async.bulk: size must be a nonzero multiple of 16 and both addresses 16-byte aligned (dst " +
             hex_ptr(dst) + ", src " + hex_ptr(src) + ", " + std::to_string(bytes) + " bytes) (" + where() + ")");
    mbarrier_at(bar, "cp.async.bulk (its mbarrier)");
    const auto* d = static_cast<const unsigned char*>(dst);
    for (const BulkCopy& c : b.bulk)
        if (overlaps(d, bytes, c.dst, c.bytes))
            fail("cp.async.bulk writes shared memory another bulk copy still has in flight (" + where() + ")");
    for (const WarpgroupState& w : b.wgroups) {
        std::vector<SmemSpan> spans;
        auto add = [&](const WgmmaOp& op) {
            operand_spans(decode_descriptor(op.desc_a, 64, "A"), 64, spans);
            operand_spans(decode_descriptor(op.desc_b, op.n, "B"), op.n, spans);
        };
        for (const WgmmaOp& op : w.open) add(op);
        for (const auto& g : w.groups)
            for (const WgmmaOp& op : g) add(op);
        for (const SmemSpan& s : spans)
            if (overlaps(d, bytes, s.p, s.bytes))
                fail("cp.async.bulk overwrites shared memory that an issued wgmma has not finished reading (the "
                     "slot was released before wgmma.wait_group completed it) (" + where() + ")");
    }
    std::memcpy(dst, src, bytes);
    b.bulk.push_back(BulkCopy{d, bytes, (std::uintptr_t)bar});
}

// ---- the launcher -----------------------------------------------------------------------------------

struct Stacks {
    char* base = nullptr;
    size_t each = 0, count = 0, total = 0;
    explicit Stacks(size_t n) : count(n) {
        const size_t page = (size_t)sysconf(_SC_PAGESIZE);
        each = kStackBytes + page;  // + a guard page below each stack: an overflow faults, it cannot corrupt
        total = each * n;
        void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) return;
        base = static_cast<char*>(p);
        for (size_t i = 0; i < n; ++i) mprotect(base + i * each, page, PROT_NONE);
    }
    ~Stacks() {
        if (base) munmap(base, total);
    }
    char* stack(size_t i) const { return base + i * each + (each - kStackBytes); }
};

inline void fiber_main() {
    Block& b = *tl_block;
    Fiber& f = *tl_fiber;
    b.entry();
    f.done = true;
    --b.live;
    // returning resumes uc_link = the scheduler
}

inline std::string describe_deadlock(const Block& b) {
    int at_bar = 0, at_warp = 0, at_mbar = 0, at_wg = 0, done = 0;
    std::string warps;
    for (const Fiber& f : b.fibers) {
        if (f.done) ++done;
        else if (f.wait == Wait::block) ++at_bar;
        else if (f.wait == Wait::warp) ++at_warp;
        else if (f.wait == Wait::mbarrier) ++at_mbar;
        else if (f.wait == Wait::warpgroup) ++at_wg;
    }
    for (size_t w = 0; w < b.warps.size(); ++w)
        if (b.warps[w].arrived) {
            char hex[16];
            std::snprintf(hex, sizeof hex, "%08x", b.warps[w].arrived);
            warps += " warp " + std::to_string(w) + " lanes 0x" + hex + " arrived;";
        }
    return std::string("deadlock in ") + b.launch->kernel + ", block (" + std::to_string(b.block_idx.x) + ", " +
           std::to_string(b.block_idx.y) + ", " + std::to_string(b.block_idx.z) + "): " + std::to_string(at_bar) +
           " threads wait at __syncthreads, " + std::to_string(at_warp) + " at a warp collective," + warps + " " +
           std::to_string(at_mbar) + " on an mbarrier phase that never completes, " + std::to_string(at_wg) +
           " at a warpgroup (wgmma) collective, " + std::to_string(done) +
           " exited (divergent barrier, a collective whose mask names an exited lane, or a missing arrival)";
}

// Run one block to completion; false (and b.error) on a kernel error.
inline bool run_block(Block& b, const Stacks& stacks) {
    const dim3 bd = b.launch->block;
    const int n = (int)(bd.x * bd.y * bd.z);
    for (int i = 0; i < n; ++i) {
        Fiber& f = b.fibers[i];
        f = Fiber{};
        f.linear = i;
        f.tid = uint3{(unsigned)i % bd.x, ((unsigned)i / bd.x) % bd.y, (unsigned)i / (bd.x * bd.y)};
        f.lane = i % kWarpSize;
        f.warp = i / kWarpSize;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stacks.stack(i);
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = &b.sched;
        makecontext(&f.ctx, fiber_main, 0);
    }
    for (WarpState& w : b.warps) w.gen = 0, w.arrived = 0, w.mask = 0, w.op = Op::none;
    b.live = n;
    b.bar_count = 0;
    b.bar_gen = 0;
    b.failed = false;
    b.async.reset((size_t)n);
    b.mbars.clear();
    b.bulk.clear();
    b.mbar_epoch = 0;
    for (WarpgroupState& w : b.wgroups) w.gen = 0, w.arrived = 0, w.op = Op::none, w.open.clear(), w.groups.clear();
    if (b.dyn) std::memset(b.dyn, 0xA5, b.launch->shared_bytes);  // uninitialised on hardware too
    int remaining = n;
    while (remaining > 0) {
        bool ran = false;
        for (int i = 0; i < n; ++i) {
            Fiber& f = b.fibers[i];
            if (f.done) continue;
            const bool runnable = f.wait == Wait::none ||
                                  (f.wait == Wait::block && b.bar_gen != f.wait_gen) ||
                                  (f.wait == Wait::warp && b.warps[f.warp].gen != f.wait_gen) ||
                                  (f.wait == Wait::mbarrier && b.mbar_epoch != f.wait_gen) ||
                                  (f.wait == Wait::warpgroup && b.wgroups[(size_t)(i / 128)].gen != f.wait_gen);
            if (!runnable) continue;
            tl_fiber = &f;
            swapcontext(&b.sched, &f.ctx);
            ran = true;
            if (b.failed) return false;
            if (f.done) --remaining;
            if (b.launch->depth_first) break;  // restart from the lowest-numbered runnable fiber
        }
        if (!ran && remaining > 0) {
            b.failed = true;
            b.error = describe_deadlock(b);
            return false;
        }
    }
    std::string where_block = std::string(b.launch->kernel) + ", block (" + std::to_string(b.block_idx.x) + ", " +
                              std::to_string(b.block_idx.y) + ", " + std::to_string(b.block_idx.z) + ")";
    for (const WarpgroupState& w : b.wgroups)
        if (!w.open.empty() || !w.groups.empty()) {
            b.failed = true;
            b.error = "the block exited with wgmma still in flight (no wgmma.commit_group / wgmma.wait_group that "
                      "completes them) (" + where_block + ")";
            return false;
        }
    if (!b.bulk.empty()) {
        b.failed = true;
        b.error = "the block exited with cp.async.bulk copies whose mbarrier was never waited on (" + where_block + ")";
        return false;
    }
    return true;
}

template <class T>
constexpr long long pointee_size() {
    if constexpr (std::is_pointer_v<T> && !std::is_void_v<std::remove_cv_t<std::remove_pointer_t<T>>>)
        return (long long)sizeof(std::remove_pointer_t<T>);
    else
        return 0;
}

// Parameter table of a kernel for the Python side: 3 numbers per parameter (bytes, is pointer, bytes of
// the pointee); returns the parameter count (or -1 if `cap` is too small).
template <class... P>
int kernel_params(void (*)(P...), long long* out, int cap) {
    constexpr int n = (int)sizeof...(P);
    if (cap < 3 * n) return -1;
    int i = 0;
    ((out[3 * i] = (long long)sizeof(P), out[3 * i + 1] = std::is_pointer_v<P> ? 1 : 0,
      out[3 * i + 2] = pointee_size<P>(), ++i),
     ...);
    return n;
}

template <class... P, size_t... I>
void call_kernel(void (*k)(P...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_reference_t<P>*>(args[I])...);
}

inline int report(char* err, int errlen, const std::string& msg) {
    if (err && errlen > 0) {
        std::strncpy(err, msg.c_str(), (size_t)errlen - 1);
        err[errlen - 1] = '\0';
    }
    return 1;
}

// Launch `kernel` on grid x block with cudaLaunchKernel-style `args` (one pointer to each argument).
// Returns 0, or 1 with a message in `err`.
template <class... P>
int launch(void (*kernel)(P...), const char* name, long long launch_bound, const unsigned int* grid,
           const unsigned int* block, unsigned long long shared_bytes, void** args, int workers, char* err,
           int errlen) {
    LaunchInfo info{dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), name};
    info.shared_bytes = shared_bytes;
    if (shared_bytes > kMaxDynamicShared)
        return report(err, errlen, std::string(name) + ": too many resources requested for launch (" +
                                       std::to_string(shared_bytes) + " bytes of dynamic shared memory, over the " +
                                       std::to_string(kMaxDynamicShared) + " a block may have)");
    if (const char* sched = std::getenv("QNNLIB_CUDA_HOST_SCHEDULE"))
        info.depth_first = std::string(sched) == "depth-first";
    const unsigned long long nthreads = (unsigned long long)block[0] * block[1] * block[2];
    const unsigned long long nblocks = (unsigned long long)grid[0] * grid[1] * grid[2];
    if (nthreads == 0 || nblocks == 0)
        return report(err, errlen, std::string(name) + ": invalid configuration argument (a grid or block "
                                                       "dimension is 0)");
    if (block[0] > 1024 || block[1] > 1024 || block[2] > 64 || nthreads > 1024)
        return report(err, errlen, std::string(name) + ": invalid configuration argument (block (" +
                                       std::to_string(block[0]) + ", " + std::to_string(block[1]) + ", " +
                                       std::to_string(block[2]) + ") exceeds 1024 threads or the per-axis limits)");
    if (launch_bound > 0 && (long long)nthreads > launch_bound)
        return report(err, errlen, std::string(name) + ": too many resources requested for launch (" +
                                       std::to_string(nthreads) + " threads per block, __launch_bounds__(" +
                                       std::to_string(launch_bound) + "))");
    if (grid[0] > 2147483647u || grid[1] > 65535u || grid[2] > 65535u)
        return report(err, errlen, std::string(name) + ": invalid configuration argument (grid too large)");
    const std::function<void()> entry = [&] { call_kernel(kernel, args, std::index_sequence_for<P...>{}); };
    std::atomic<unsigned long long> next{0};
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::string first_error;
    auto worker = [&] {
        Stacks stacks((size_t)nthreads);
        if (!stacks.base) {
            std::lock_guard<std::mutex> lock(mu);
            if (first_error.empty()) first_error = std::string(name) + ": could not map fiber stacks";
            stop = true;
            return;
        }
        Block b;
        b.launch = &info;
        b.entry = entry;
        b.fibers.resize((size_t)nthreads);
        b.warps.resize((size_t)((nthreads + kWarpSize - 1) / kWarpSize));
        b.wgroups.resize((size_t)((nthreads + 127) / 128));
        std::vector<unsigned char> dyn_store(shared_bytes ? (size_t)shared_bytes + 1024 : 0);
        if (shared_bytes)  // 1024-byte aligned, as the largest alignment a kernel may declare for it
            b.dyn = dyn_store.data() + ((1024 - (std::uintptr_t)dyn_store.data() % 1024) % 1024);
        tl_block = &b;
        for (;;) {
            if (stop) break;
            const unsigned long long id = next.fetch_add(1);
            if (id >= nblocks) break;
            b.block_idx = uint3{(unsigned)(id % grid[0]), (unsigned)((id / grid[0]) % grid[1]),
                                (unsigned)(id / ((unsigned long long)grid[0] * grid[1]))};
            if (!run_block(b, stacks)) {
                std::lock_guard<std::mutex> lock(mu);
                if (first_error.empty()) first_error = b.error;
                stop = true;
                break;
            }
        }
        tl_block = nullptr;
        tl_fiber = nullptr;
    };
    const unsigned long long nw = std::max<unsigned long long>(1, std::min<unsigned long long>(workers, nblocks));
    if (nw == 1) {
        worker();
    } else {
        std::vector<std::thread> pool;
        for (unsigned long long i = 0; i < nw; ++i) pool.emplace_back(worker);
        for (auto& t : pool) t.join();
    }
    if (!first_error.empty()) return report(err, errlen, first_error);
    return 0;
}

}  // namespace qnnlib_emu

// ---- the CUDA vocabulary, mapped onto the above -------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ static thread_local
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define threadIdx (::qnnlib_emu::tl_fiber->tid)
#define blockIdx (::qnnlib_emu::tl_block->block_idx)
#define blockDim (::qnnlib_emu::tl_block->launch->block)
#define gridDim (::qnnlib_emu::tl_block->launch->grid)
#define warpSize 32

inline void __syncthreads() { ::qnnlib_emu::syncthreads(); }
[[noreturn]] inline void __trap() { ::qnnlib_emu::fail("__trap() called (" + ::qnnlib_emu::where() + ")"); }
inline int __popc(unsigned int x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero((unsigned int)x); }
inline int __clzll(long long x) { return std::countl_zero((unsigned long long)x); }
inline int __ffs(int x) { return x ? std::countr_zero((unsigned int)x) + 1 : 0; }
inline unsigned int __brev(unsigned int x) {
    unsigned int r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
inline unsigned int __float_as_uint(float x) { return std::bit_cast<unsigned int>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __uint_as_float(unsigned int x) { return std::bit_cast<float>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
template <class T>
inline T __ldg(const T* p) { return *p; }

inline void __syncwarp(unsigned int mask = 0xffffffffu) {
    ::qnnlib_emu::warp_collective(
        ::qnnlib_emu::Op::syncwarp, mask, [](::qnnlib_emu::CollectiveBuf&, int) {},
        [](::qnnlib_emu::CollectiveBuf&) {});
}
inline unsigned int __ballot_sync(unsigned int mask, int pred) {
    return ::qnnlib_emu::ballot(::qnnlib_emu::Op::ballot, mask, pred);
}
inline int __any_sync(unsigned int mask, int pred) {
    return (::qnnlib_emu::ballot(::qnnlib_emu::Op::any, mask, pred) & mask) != 0;
}
inline int __all_sync(unsigned int mask, int pred) {
    return (::qnnlib_emu::ballot(::qnnlib_emu::Op::all, mask, pred) & mask) == mask;
}
template <class T>
inline T __shfl_sync(unsigned int mask, T var, int src_lane, int width = warpSize) {
    return ::qnnlib_emu::shuffle(::qnnlib_emu::Op::shfl, mask, var, src_lane, width);
}
template <class T>
inline T __shfl_up_sync(unsigned int mask, T var, unsigned int delta, int width = warpSize) {
    return ::qnnlib_emu::shuffle(::qnnlib_emu::Op::shfl_up, mask, var, (int)delta, width);
}
template <class T>
inline T __shfl_down_sync(unsigned int mask, T var, unsigned int delta, int width = warpSize) {
    return ::qnnlib_emu::shuffle(::qnnlib_emu::Op::shfl_down, mask, var, (int)delta, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned int mask, T var, int lane_mask, int width = warpSize) {
    return ::qnnlib_emu::shuffle(::qnnlib_emu::Op::shfl_xor, mask, var, lane_mask, width);
}
template <class T>
    requires std::is_integral_v<T>
inline T atomicAdd(T* address, T val) { return __atomic_fetch_add(address, val, __ATOMIC_SEQ_CST); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
// Shared memory is host memory in the emulator. A pointer into the block's dynamic shared memory converts to
// its emulated shared-window address (qnnlib_emu::kSharedWindowBase + offset, as wgmma descriptors need); any
// other pointer (a static __shared__ array, which lives in thread_local host memory) converts to itself.
inline std::size_t __cvta_generic_to_shared(const void* p) {
    const ::qnnlib_emu::Block* b = ::qnnlib_emu::tl_block;
    const auto* q = static_cast<const unsigned char*>(p);
    if (b && b->dyn && q >= b->dyn && q < b->dyn + b->launch->shared_bytes)
        return (std::size_t)(::qnnlib_emu::kSharedWindowBase + (unsigned long long)(q - b->dyn));
    return (std::size_t)(std::uintptr_t)p;
}
