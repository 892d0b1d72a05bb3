// common.cuh: what every kernel in csrc/ shares.
//
// The same kernel source is compiled three ways:
//   nvcc    (minicnn._cuda, ahead of time)           __CUDACC__ is defined
//   NVRTC   (CuPy RawModule, at first use)           __CUDACC_RTC__ is defined
//   g++     (minicnn._host, the host build)          neither is defined
// On the GPU a launch runs the kernel function once per thread of the grid, and
// the grid-stride loop (MC_GRID_LOOP) hands each thread its indices. The host
// build does the same with OpenMP threads: src/host_launch.h runs the kernel
// function once on each thread of a parallel region, and the host MC_GRID_LOOP
// below hands each thread one contiguous chunk of 0 .. count-1 (neighbouring
// threads would otherwise share cache lines). Only the loop header differs
// between the builds; the kernel bodies are the same code. That is why the kernels
// use no shared memory, no warp intrinsics and no __syncthreads: each index is
// computed by one thread, on its own, so the result cannot depend on how many
// threads there are (MINICNN_NUM_THREADS=1 walks every index in order on one
// thread, for stepping through with a debugger).
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define MC_DEVICE_BUILD 1
#else
// ----- host shim (g++): the CUDA keywords vanish -----
#include <cmath>
#include <limits>
#ifdef _OPENMP
#include <omp.h>
#endif
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#endif

// 64-bit indices everywhere: AlexNet's im2col buffer at batch 128 has more than
// 2^31 entries, and an int index would silently wrap.
typedef long long mc_index;

// The launch shape of both GPU loaders: threads per block, and the most blocks a
// launch uses (the grid-stride loop covers the rest). src/cuda_module.cu uses these
// macros and backends/cuda.py reads these two lines, so they are written once.
#define MC_THREADS_PER_BLOCK 256
#define MC_MAX_BLOCKS 65536

// The floating-point flags of both GPU builds, written once: setup.py passes them to
// nvcc (minicnn._cuda) and backends/cuda.py to NVRTC (the RawKernel loader).
//   --fmad=false   no fused multiply-add: a * b + c is rounded twice, as the host build
//                  (g++ -ffp-contract=off) and NumPy round it, so a kernel that calls no
//                  exp/log/pow computes the same bits on the GPU as on the CPU
//   --ftz=true     float32 denormals (|x| < 2^-126, about 1.2e-38) are read and written
//                  as 0 on the GPU. CuPy's RawModule appends -ftz=true after our options
//                  (the last one wins), so nvcc is given the same: both loaders agree.
//                  float64 has no flush; the host build keeps denormals.
//   --prec-div=true --prec-sqrt=true   IEEE-rounded division and square root (the defaults,
//                  said here because Adam's bit-for-bit agreement rests on them)
// docs/kernels.md, "Floating point on each runner", says what holds where.
#define MC_CUDA_MATH_FLAGS "--fmad=false --ftz=true --prec-div=true --prec-sqrt=true"

// The host build's launch shape: a launch gets one OpenMP thread per MC_HOST_GRAIN
// indices, up to the thread count (src/host_launch.h). Starting a thread and waiting
// for it costs microseconds, and far more when another program holds a core, so a
// small launch runs on fewer threads (PyTorch's at::parallel_for uses this grain too).
#define MC_HOST_GRAIN 32768

// A kernel finds its coordinates by dividing its index, innermost axis first:
//     mc_index x = i % W, rest = i / W;     (one division gives quotient and remainder)
//     mc_index y = rest % H, plane = rest / H;
// An integer division costs more than all the rest of a simple kernel's work on a
// CPU (and is slow on a GPU too), so kernels divide as few times as they can.

// A kernel is a template on the element type T (float or double).
#define MC_KERNEL __global__ void
#define MC_HD __host__ __device__ __forceinline__

#ifdef MC_DEVICE_BUILD
// Caffe's CUDA_KERNEL_LOOP: thread t handles indices t, t + S, t + 2S, ... where
// S is the number of threads in the grid. Any grid size covers any count.
#define MC_GRID_LOOP(i, count)                                                        \
    for (mc_index i = (mc_index)blockIdx.x * blockDim.x + threadIdx.x; i < (count); \
         i += (mc_index)blockDim.x * gridDim.x)
#else
// The host grid: OpenMP thread t of T takes the t-th of T contiguous chunks of
// 0 .. count-1 (the first count % T chunks one index longer). Outside a parallel
// region (or without OpenMP) there is one thread, and it walks every index in order.
inline int mc_host_thread() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
inline int mc_host_threads() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
inline mc_index mc_chunk_start(mc_index count, int thread, int threads) {
    mc_index base = count / threads, extra = count % threads;
    return base * thread + (thread < extra ? thread : extra);
}
#define MC_GRID_LOOP(i, count)                                                         \
    for (mc_index i = mc_chunk_start((count), mc_host_thread(), mc_host_threads()),    \
                  i##_end = mc_chunk_start((count), mc_host_thread() + 1, mc_host_threads()); \
         i < i##_end; ++i)
#endif

// A kernel whose outputs form rows (the pixels of a plane, the columns of a matrix row) loops
// with MC_ROW_LOOP(row, rows, col, width) { ... }: the body is written for one element (row, col)
// and reads the same in both builds. The GPU gives every element its own thread, exactly as
// MC_GRID_LOOP over rows * width (neighbouring threads take neighbouring columns, so a warp
// reads and writes consecutive addresses). The host gives each thread whole rows and walks
// each row in an inner loop: what the body works out from `row` alone (the divisions that find
// a row's channel and image) the compiler computes once per row, and the inner loop runs along
// contiguous memory, where it can use vector instructions. A per-element division chain cost
// more than the rest of these kernels on a CPU.
#ifdef MC_DEVICE_BUILD
// the inner "loop" runs once: it only names the element's row and column
#define MC_ROW_LOOP(row, rows, col, width)                                                    \
    MC_GRID_LOOP(row##_and_##col, (rows) * (width))                                         \
        for (mc_index row = row##_and_##col / (width), col = row##_and_##col % (width),       \
                      row##_once = 1; row##_once; row##_once = 0)
#else
// (omp simd: the columns are independent, as the GPU's threads are, so the compiler may run
// several at once in vector lanes, each computing exactly what it would alone)
#define MC_ROW_LOOP(row, rows, col, width) \
    MC_GRID_LOOP(row, rows) _Pragma("omp simd") for (mc_index col = 0; col < (width); ++col)
#endif

// MC_PLANE_LOOP(plane, planes, y, height, x, width): MC_ROW_LOOP for outputs that form planes of
// height rows of width elements, when the rows are short (a 6x6 feature map): on the GPU every
// element (plane, y, x) is a thread; on the host a thread takes whole planes, so the divisions
// that decode `plane` are paid once per plane, not once per row.
#ifdef MC_DEVICE_BUILD
#define MC_PLANE_LOOP(plane, planes, y, height, x, width)                                     \
    MC_GRID_LOOP(plane##_y_##x, (planes) * (height) * (width))                                \
        for (mc_index x = plane##_y_##x % (width), y = plane##_y_##x / (width) % (height),    \
                      plane = plane##_y_##x / (width) / (height), plane##_once = 1;           \
             plane##_once; plane##_once = 0)
#else
// (the test of height and width first tells the compiler that once a plane starts, every row and
// element of it runs, so it may compute what depends on the plane alone once, before the loops)
#define MC_PLANE_LOOP(plane, planes, y, height, x, width)                                     \
    MC_GRID_LOOP(plane, planes) if ((height) > 0 && (width) > 0)                              \
        for (mc_index y = 0; y < (height); ++y)                                               \
            _Pragma("omp simd") for (mc_index x = 0; x < (width); ++x)
#endif

// ----- math helpers: one name for float and double on every compiler -----
#ifdef MC_DEVICE_BUILD
// kernels call these, so on the GPU they need only be __device__
#define MC_DEV __device__ __forceinline__
MC_DEV float mc_exp(float x) { return expf(x); }
MC_DEV double mc_exp(double x) { return exp(x); }
MC_DEV float mc_log(float x) { return logf(x); }
MC_DEV double mc_log(double x) { return log(x); }
MC_DEV float mc_pow(float x, float y) { return powf(x, y); }
MC_DEV double mc_pow(double x, double y) { return pow(x, y); }
MC_DEV float mc_sqrt(float x) { return sqrtf(x); }
MC_DEV double mc_sqrt(double x) { return sqrt(x); }
template <typename T> MC_DEV T mc_neg_inf();
template <> MC_DEV float mc_neg_inf<float>() { return __int_as_float(0xff800000); }
template <> MC_DEV double mc_neg_inf<double>() { return __longlong_as_double(0xfff0000000000000ULL); }
template <typename T> MC_DEV T mc_nan();
template <> MC_DEV float mc_nan<float>() { return __int_as_float(0x7fc00000); }
template <> MC_DEV double mc_nan<double>() { return __longlong_as_double(0x7ff8000000000000ULL); }
#else
template <typename T> inline T mc_exp(T x) { return std::exp(x); }
template <typename T> inline T mc_log(T x) { return std::log(x); }
template <typename T> inline T mc_pow(T x, T y) { return std::pow(x, y); }
template <typename T> inline T mc_sqrt(T x) { return std::sqrt(x); }
template <typename T> inline T mc_neg_inf() { return -std::numeric_limits<T>::infinity(); }
template <typename T> inline T mc_nan() { return std::numeric_limits<T>::quiet_NaN(); }
#endif

// Along one axis: the outputs o whose window [o*s - p, o*s - p + k) holds position
// pos are first <= o < end. The gathering backward passes
// (col2im, max and average pooling) sum over exactly these outputs.
MC_HD void mc_covering_outputs(mc_index pos, mc_index k, mc_index s, mc_index p, mc_index out,
                               mc_index* first, mc_index* end) {
    mc_index last = s == 1 ? pos + p : (pos + p) / s;             // stride 1 needs no division
    *first = (pos + p < k) ? 0 : (s == 1 ? pos + p - k : (pos + p - k) / s) + 1;
    *end = last + 1 < out ? last + 1 : out;
}

// ----- the dropout hash: ONE definition for the GPU, the host build and (in
// NumPy) backends/reference.py:dropout_hash, so every device draws the same mask.
// MurmurHash3's 32-bit finalizer: every input bit flips about half the output bits.
MC_HD unsigned int mc_fmix32(unsigned int h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

// hash(i) = fmix32(seed ^ fmix32(lo(i) + 0x9E3779B9 * (hi(i) + 1))): counter-based,
// so element i's draw depends only on (seed, i), never on which thread computes it.
// All arithmetic is unsigned 32-bit, wrapping mod 2^32 exactly as NumPy's uint32.
MC_HD unsigned int mc_dropout_hash(unsigned int seed, unsigned long long index) {
    unsigned int lo = (unsigned int)(index & 0xFFFFFFFFull);
    unsigned int hi = (unsigned int)(index >> 32);
    return mc_fmix32(seed ^ mc_fmix32(lo + 0x9E3779B9u * (hi + 1u)));
}
