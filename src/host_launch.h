// host_launch.h: running a csrc kernel on the CPU, from Python (pybind11, NumPy arrays).
//
// A GPU launch runs the kernel function once on every thread of the grid. Here a
// launch runs it once on every OpenMP thread of a parallel region, and each thread's
// MC_GRID_LOOP (csrc/common.cuh) walks its own contiguous chunk of the indices.
// With one thread (MINICNN_NUM_THREADS=1, or a compiler without OpenMP) the kernel
// is a plain function call that visits every index in order: step through it with gdb.
//
// Included by src/host_module.cpp (minicnn._host) and by the modules dev/common.py
// builds for numbered kernel variants, so both launch kernels the same way.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <type_traits>

#include "common.cuh"

namespace py = pybind11;

// The most threads of a launch, set from Python (backends/host.py) at import, and the
// indices that earn a launch one more thread (MC_HOST_GRAIN; tests lower it to 1).
static int mc_launch_threads = 1;
static long long mc_launch_grain = MC_HOST_GRAIN;

inline bool mc_have_openmp() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

// ---------------------------------------------------------------------------
// The size checks (host_module.cpp's table) see each array as the number of elements it
// holds, and raise SizeError; the binding adds the kernel's name.
struct SizeError {
    std::string message;
};
struct Size {
    mc_index elements;
};

// How a Python argument becomes a kernel argument: scalars pass through ...
template <typename A>
struct Arg {
    using Py = A;
    using Sized = A;   // what the size check gets in its place
    static A get(A value, const char*) { return value; }
    static A size(A value) { return value; }
    static mc_index elements(A) { return 0; }
};

// ... and a pointer comes from a NumPy array, checked so that a wrong dtype, a
// non-contiguous view or a read-only output raises instead of corrupting memory.
template <typename E>
struct Arg<E*> {
    using Py = py::array;
    using Sized = Size;
    static E* get(py::array a, const char* kernel) {
        using V = typename std::remove_const<E>::type;
        py::dtype want = py::dtype::of<V>();
        if (!a.dtype().is(want) && !a.dtype().equal(want))
            throw py::type_error(std::string("minicnn._host.") + kernel + ": expected a " +
                                 std::string(py::str(want)) + " array, got " +
                                 std::string(py::str(a.dtype())));
        if (!(a.flags() & py::array::c_style))
            throw py::value_error(std::string("minicnn._host.") + kernel +
                                  ": expected a C-contiguous array");
        if (!std::is_const<E>::value && !a.writeable())
            throw py::value_error(std::string("minicnn._host.") + kernel +
                                  ": output array is read-only");
        return static_cast<E*>(const_cast<void*>(a.data()));
    }
    static Size size(const py::array& a) { return Size{(mc_index)a.size()}; }
    static mc_index elements(const py::array& a) { return (mc_index)a.size(); }
};

// ---------------------------------------------------------------------------
// The threads of a launch that touches ``work`` elements: one per grain of them, at least
// one, at most mc_launch_threads (the host's version of the GPU loaders' block count).
inline int mc_threads_for(long long work) {
    long long wanted = (work + mc_launch_grain - 1) / mc_launch_grain;
    return wanted < 1 ? 1 : (wanted < mc_launch_threads ? (int)wanted : mc_launch_threads);
}

// One launch: every thread runs the whole kernel function; the loop header splits the work.
// A kernel's first argument is its count of indices. ``work`` is the size of the largest array
// it touches (at least the count): a kernel with one index per row or per column of an image
// (LRN, pooling, im2col) does a whole row's work for each index, so counting indices alone
// would run a large launch on one thread.
template <typename... K>
void mc_launch(void (*kernel)(K...), const std::tuple<K...>& args, long long work) {
    int threads = mc_threads_for(work);
    if (threads == 1) {
        std::apply(kernel, args);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    std::apply(kernel, args);
}

// Bind one instantiation of a kernel: the Python signature mirrors the kernel's. The
// arrays' sizes are checked first (sizes: the kernel's MC_SIZES function; dev/'s variants,
// called only by their drivers with arrays they sized, pass nullptr), then the arrays
// become pointers, the GIL is released (kernels touch no Python object) and it runs.
template <typename... K>
void def_kernel(py::module_& m, const std::string& pyname, const char* name, void (*kernel)(K...),
                void (*sizes)(typename Arg<K>::Sized...)) {
    m.def(pyname.c_str(), [name, kernel, sizes](typename Arg<K>::Py... args) {
        if (sizes != nullptr) {
            try {
                sizes(Arg<K>::size(args)...);
            } catch (const SizeError& e) {
                throw py::value_error(std::string("minicnn._host.") + name + ": " + e.message);
            }
        }
        std::tuple<K...> pointers{Arg<K>::get(args, name)...};
        long long work = std::max({(long long)std::get<0>(pointers), (long long)Arg<K>::elements(args)...});
        py::gil_scoped_release unlocked;
        mc_launch(kernel, pointers, work);
    });
}

// Both instantiations of a kernel, size-checked by kernel##_sizes (host_module.cpp) ...
#define MC_BIND(kernel)                                                                      \
    def_kernel(m, #kernel "_float32", #kernel, &kernel<float>, &kernel##_sizes<float>);      \
    def_kernel(m, #kernel "_float64", #kernel, &kernel<double>, &kernel##_sizes<double>)
// ... or unchecked (dev/ variants)
#define MC_BIND_UNCHECKED(kernel)                                                            \
    def_kernel(m, #kernel "_float32", #kernel, &kernel<float>, nullptr);                     \
    def_kernel(m, #kernel "_float64", #kernel, &kernel<double>, nullptr)

// ---------------------------------------------------------------------------
// Which thread computes each index (owner[i]): lets tests see the grid split.
MC_KERNEL mc_grid_owner(mc_index count, mc_index* owner) {
    // each i is one index of the grid
    MC_GRID_LOOP(i, count) {
        owner[i] = mc_host_thread();
    }
}
inline void mc_grid_owner_sizes(mc_index count, Size owner) {
    if (count > owner.elements)
        throw SizeError{"array 'owner' holds " + std::to_string(owner.elements) + " elements, but count is " +
                        std::to_string(count)};
}

// What every host module offers besides its kernels: the thread count, the grain, the grid test.
inline void def_launch_settings(py::module_& m) {
    m.attr("openmp") = mc_have_openmp();
    m.def("set_num_threads", [](int threads) {
        if (threads < 1) throw py::value_error("the number of threads must be >= 1, got " + std::to_string(threads));
        mc_launch_threads = mc_have_openmp() ? threads : 1;
    }, "Run each kernel launch on up to this many OpenMP threads (1 without OpenMP).");
    m.def("num_threads", [] { return mc_launch_threads; });
    m.def("set_grain", [](long long grain) {
        if (grain < 1) throw py::value_error("the grain must be >= 1, got " + std::to_string(grain));
        mc_launch_grain = grain;
    }, "A launch gets one thread per this many indices (default MC_HOST_GRAIN); tests set 1.");
    m.def("grain", [] { return mc_launch_grain; });
    def_kernel(m, "grid_owner", "grid_owner", &mc_grid_owner, &mc_grid_owner_sizes);
}
