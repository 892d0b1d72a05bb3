// cuda_module.cu: minicnn._cuda, every csrc kernel compiled ahead of time by nvcc,
// plus cuBLAS GEMMs, on device pointers.
//
// Python passes CuPy arrays as integers (array.data.ptr) and CuPy's current
// stream (cupy.cuda.get_current_stream().ptr), so these launches queue behind
// CuPy's own work in order. Each kernel is exposed as <name>_float32 and
// <name>_float64 with the kernel's argument order (the first argument is the
// count of loop indices) plus two more: the grid's `blocks` (backends/cuda.py's
// blocks(): one thread per element of the largest array, which the pointers here
// cannot tell) and the `stream`.
// A failed launch raises RuntimeError naming the kernel. With the environment
// variable MINICNN_CUDA_DEBUG=1 every launch is also synchronized, so an error
// inside a kernel (a bad address) is reported by the kernel that caused it.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels.cuh"

namespace py = pybind11;


static bool debug_sync() {
    static const bool on = [] {
        const char* v = std::getenv("MINICNN_CUDA_DEBUG");
        return v != nullptr && v[0] != '\0' && v[0] != '0';
    }();
    return on;
}

static void check_cuda(cudaError_t err, const char* what, cudaStream_t stream) {
    if (err == cudaSuccess && debug_sync()) err = cudaStreamSynchronize(stream);
    if (err != cudaSuccess)
        throw std::runtime_error(std::string("minicnn._cuda: kernel '") + what +
                                 "' failed: " + cudaGetErrorString(err));
}

// How a Python argument becomes a kernel argument: scalars pass through ...
template <typename A>
struct Arg {
    using Py = A;
    static A get(A value) { return value; }
};

// ... and a pointer arrives as an integer address in device memory.
template <typename E>
struct Arg<E*> {
    using Py = std::uintptr_t;
    static E* get(std::uintptr_t address) { return reinterpret_cast<E*>(address); }
};

// Bind one instantiation of a kernel: the Python signature mirrors the kernel's, plus the grid and the stream.
template <typename... K>
void def_kernel(py::module_& m, const std::string& pyname, const char* name, void (*kernel)(K...)) {
    m.def(pyname.c_str(), [name, kernel](typename Arg<K>::Py... args, long long blocks, std::uintptr_t stream_ptr) {
        if (blocks <= 0) return;                  // a grid of 0 blocks is an invalid launch
        if (blocks > MC_MAX_BLOCKS) blocks = MC_MAX_BLOCKS;
        cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_ptr);
        kernel<<<(unsigned int)blocks, MC_THREADS_PER_BLOCK, 0, stream>>>(Arg<K>::get(args)...);
        check_cuda(cudaGetLastError(), name, stream);
    });
}

#define MC_BIND(kernel)                                                 \
    def_kernel(m, #kernel "_float32", #kernel, &kernel<float>);         \
    def_kernel(m, #kernel "_float64", #kernel, &kernel<double>)

// ----- cuBLAS -----
// One handle per device, created at first use and kept for the life of the process.
static cublasHandle_t cublas_handle() {
    static cublasHandle_t handles[64] = {};
    int device = 0;
    check_cuda(cudaGetDevice(&device), "cudaGetDevice", 0);
    if (device < 0 || device >= 64) throw std::runtime_error("minicnn._cuda: device id out of range");
    if (handles[device] == nullptr) {
        if (cublasCreate(&handles[device]) != CUBLAS_STATUS_SUCCESS)
            throw std::runtime_error("minicnn._cuda: cublasCreate failed");
    }
    return handles[device];
}

static void check_cublas(cublasStatus_t status, const char* what, cudaStream_t stream) {
    if (status != CUBLAS_STATUS_SUCCESS)
        throw std::runtime_error(std::string("minicnn._cuda: ") + what + " failed with cuBLAS status " +
                                 std::to_string((int)status));
    check_cuda(cudaGetLastError(), what, stream);
}

// Row-major C (M, N) = op(A) @ op(B), for `batch` matrices spaced by the given strides
// (a stride of 0 reuses one matrix for the whole batch, e.g. a conv weight).
// cuBLAS is column-major, and a row-major matrix is its transpose in column-major,
// so we ask cuBLAS for C^T = op(B)^T @ op(A)^T: swap the operands, keep the ops.
template <typename T>
static void gemm(bool trans_a, bool trans_b, long long M, long long N, long long K,
                 std::uintptr_t A, long long lda, long long stride_a,
                 std::uintptr_t B, long long ldb, long long stride_b,
                 std::uintptr_t C, long long ldc, long long stride_c, long long batch,
                 std::uintptr_t stream_ptr) {
    if (M == 0 || N == 0 || batch == 0) return;
    const long long int_max = 2147483647LL;    // cuBLAS takes sizes and leading dimensions as int
    if (M > int_max || N > int_max || K > int_max || lda > int_max || ldb > int_max || ldc > int_max ||
        batch > int_max)
        throw std::runtime_error("minicnn._cuda: gemm sizes exceed cuBLAS's 32-bit int arguments");
    cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_ptr);
    cublasHandle_t handle = cublas_handle();
    check_cublas(cublasSetStream(handle, stream), "cublasSetStream", stream);
    const T one = 1, zero = 0;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const T* a = reinterpret_cast<const T*>(A);
    const T* b = reinterpret_cast<const T*>(B);
    T* c = reinterpret_cast<T*>(C);
    cublasStatus_t status;
    if constexpr (sizeof(T) == 4) {
        status = cublasSgemmStridedBatched(handle, op_b, op_a, (int)N, (int)M, (int)K, &one,
                                           b, (int)ldb, stride_b, a, (int)lda, stride_a, &zero,
                                           c, (int)ldc, stride_c, (int)batch);
    } else {
        status = cublasDgemmStridedBatched(handle, op_b, op_a, (int)N, (int)M, (int)K, &one,
                                           b, (int)ldb, stride_b, a, (int)lda, stride_a, &zero,
                                           c, (int)ldc, stride_c, (int)batch);
    }
    check_cublas(status, sizeof(T) == 4 ? "cublasSgemmStridedBatched" : "cublasDgemmStridedBatched", stream);
}

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "minicnn's csrc kernels compiled by nvcc, and cuBLAS GEMMs, on device pointers";
    MC_FOR_EACH_KERNEL(MC_BIND);
    m.def("gemm_float32", &gemm<float>);
    m.def("gemm_float64", &gemm<double>);
    m.def("synchronize", [] { check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize", 0); });
}
