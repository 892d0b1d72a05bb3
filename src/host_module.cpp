// host_module.cpp: minicnn._host, every csrc kernel compiled for the CPU.
//
// common.cuh's shim turns each kernel into a plain C++ function whose grid-stride
// loop, walked by one "thread", visits every index in order. This module exposes
// each kernel twice, as <name>_float32 and <name>_float64, taking NumPy arrays
// where the kernel takes pointers and Python numbers where it takes scalars, in
// the kernel's own argument order (the first argument is always the count of
// loop indices). Run it under a debugger to step through a kernel line by line.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "kernels.cuh"

namespace py = pybind11;

// How a Python argument becomes a kernel argument: scalars pass through ...
template <typename A>
struct Arg {
    using Py = A;
    static A get(A value, const char*) { return value; }
};

// ... and a pointer comes from a NumPy array, checked so that a wrong dtype, a
// non-contiguous view or a read-only output raises instead of corrupting memory.
template <typename E>
struct Arg<E*> {
    using Py = py::array;
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
};

// Bind one instantiation of a kernel: the Python signature mirrors the kernel's.
template <typename... K>
void def_kernel(py::module_& m, const std::string& pyname, const char* name, void (*kernel)(K...)) {
    m.def(pyname.c_str(), [name, kernel](typename Arg<K>::Py... args) {
        kernel(Arg<K>::get(args, name)...);   // one thread runs the whole grid-stride loop
    });
}

#define MC_BIND(kernel)                                                 \
    def_kernel(m, #kernel "_float32", #kernel, &kernel<float>);         \
    def_kernel(m, #kernel "_float64", #kernel, &kernel<double>)

PYBIND11_MODULE(_host, m) {
    m.doc() = "minicnn's csrc kernels compiled for the CPU (host emulation of the CUDA grid)";
    MC_FOR_EACH_KERNEL(MC_BIND);
    // the hash itself, so tests can hold it against backends/reference.py bit for bit
    m.def("dropout_hash", [](unsigned int seed, unsigned long long index) {
        return mc_dropout_hash(seed, index);
    });
}
