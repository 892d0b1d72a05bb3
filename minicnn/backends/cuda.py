"""The GPU backend: the csrc kernels on CuPy arrays, through one of two loaders.

- "rawkernel" (default): CuPy's RawModule compiles csrc/ with NVRTC at first use
  (CuPy caches the binary on disk, so later runs start fast). No build step is
  needed: only CuPy and an NVIDIA driver. GEMMs are cupy.matmul, i.e. cuBLAS.
- "pybind11": minicnn._cuda, the same sources compiled ahead of time by nvcc
  (``MINICNN_BUILD_CUDA=1 pip install -e .``), with cuBLAS strided-batched GEMMs.

Choose with ``MINICNN_CUDA_LOADER=rawkernel|pybind11`` or ``mc.set_cuda_loader``.
Both launch on CuPy's current stream. With ``MINICNN_CUDA_DEBUG=1`` every launch
is synchronized and checked, so an error inside a kernel is reported (as a
RuntimeError) by the kernel that caused it rather than by a later call.

CuPy is imported only when a CUDA backend is first asked for, so importing
minicnn never needs it. Both loaders serve a KernelBackend (backends/kernels.py).
"""

import os
import re
from pathlib import Path

import numpy as np

from .kernels import KernelBackend, float_dtype_of
from .sources import csrc_define, csrc_dir, kernel_names, nvrtc_options

# each kernel is instantiated for float and double
CTYPES = {"float32": "float", "float64": "double"}


def _debug():
    return os.environ.get("MINICNN_CUDA_DEBUG", "0") not in ("", "0")


def _cupy():
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError("the CUDA backend needs CuPy (pip install cupy-cuda13x) and an NVIDIA GPU") from e
    return cupy


# --------------------------------------------------------------------------- kernel sources
def kernel_source(header=None):
    """csrc/kernels.cuh (or another ``header``, a path) with its local #includes pasted
    in, as one string for NVRTC. An include is looked up beside the file that names
    it, then in csrc/ (so dev/ variants can include csrc's headers).

    Inlining (instead of passing -I to NVRTC) makes the source text itself the
    cache key of CuPy's compile cache: editing a .cuh file recompiles.
    """
    header = Path(header) if header is not None else csrc_dir() / "kernels.cuh"
    seen = set()

    def expand(path):
        if path.resolve() in seen:  # every header has #pragma once
            return ""
        seen.add(path.resolve())
        lines = []
        for line in path.read_text().splitlines():
            match = re.match(r'\s*#include\s+"([^"]+)"', line)
            if match:
                beside = path.parent / match.group(1)
                line = expand(beside if beside.is_file() else csrc_dir() / match.group(1))
            lines.append(line)
        return "\n".join(lines)

    return expand(header)


# --------------------------------------------------------------------------- loaders
THREADS = csrc_define("MC_THREADS_PER_BLOCK")
MAX_BLOCKS = csrc_define("MC_MAX_BLOCKS")


def blocks(count, args=()):
    """A launch's grid: one thread per element of the largest array it touches (at least one per
    index of count), at most MAX_BLOCKS blocks (the grid-stride loop covers the rest). A kernel in
    MC_ROW_LOOP counts rows but runs a thread per element of them on the GPU (csrc/common.cuh);
    the host build gives a launch its OpenMP threads from the same size (src/host_launch.h)."""
    elements = max([count] + [a.size for a in args if hasattr(a, "size") and hasattr(a, "dtype")])
    return int(min((elements + THREADS - 1) // THREADS, MAX_BLOCKS))


class _CupyLoader:
    """What both loaders share: CuPy arrays, and failures reported by kernel name."""

    def __init__(self):
        self.cp = _cupy()
        self.xp = self.cp

    def _check(self, kernel):
        if _debug():
            try:
                self.cp.cuda.get_current_stream().synchronize()
            except Exception as e:
                raise RuntimeError(f"CUDA kernel '{kernel}' failed: {e}") from e


class RawKernelLoader(_CupyLoader):
    """csrc/ compiled by NVRTC through cupy.RawModule; GEMMs by cupy.matmul (cuBLAS)."""

    name = "rawkernel"

    def __init__(self, header=None, kernels=None):
        """Every kernel of csrc/ by default; or the ``kernels`` (names) of another
        ``header`` (dev/'s numbered variants use this)."""
        super().__init__()
        names = [f"{k}<{t}>" for k in (kernels or kernel_names()) for t in CTYPES.values()]
        # compiled lazily by CuPy on the first get_function
        self.module = self.cp.RawModule(code=kernel_source(header), options=nvrtc_options(), name_expressions=names)
        self.functions = {}

    def function(self, kernel, dtype):
        key = (kernel, dtype.name)
        if key not in self.functions:
            try:
                self.functions[key] = self.module.get_function(f"{kernel}<{CTYPES[dtype.name]}>")
            except Exception as e:
                raise RuntimeError(f"compiling CUDA kernel '{kernel}' with NVRTC failed: {e}") from e
        return self.functions[key]

    def run(self, kernel, count, *args):
        if count <= 0:
            return
        dtype = float_dtype_of(args)
        typed = [np.int64(count)]
        # RawKernel arguments carry no C types: give each scalar the type the kernel declares
        for a in args:
            if isinstance(a, self.cp.ndarray) or isinstance(a, np.uint32):
                typed.append(a)
            elif isinstance(a, (int, np.integer)):
                typed.append(np.int64(a))          # mc_index
            elif isinstance(a, float):
                typed.append(dtype.type(a))         # T
            else:
                raise TypeError(f"kernel '{kernel}': unexpected argument {a!r}")
        try:
            self.function(kernel, dtype)((blocks(count, args),), (THREADS,), tuple(typed))
        except self.cp.cuda.driver.CUDADriverError as e:
            raise RuntimeError(f"CUDA kernel '{kernel}' failed: {e}") from e
        self._check(kernel)

    def gemm(self, a, b, out, trans_a, trans_b):
        """out = op(a) @ op(b) with cupy.matmul (cuBLAS), batched over a leading axis."""
        if trans_a:
            a = self.cp.swapaxes(a, -1, -2)
        if trans_b:
            b = self.cp.swapaxes(b, -1, -2)
        if out.flags.c_contiguous:
            self.cp.matmul(a, b, out=out)
        else:                       # a group's slice of a larger array
            out[...] = self.cp.matmul(a, b)


class Pybind11Loader(_CupyLoader):
    """minicnn._cuda: the kernels compiled by nvcc, and cuBLAS strided-batched GEMMs."""

    name = "pybind11"

    def __init__(self):
        super().__init__()
        try:
            from .. import _cuda
        except ImportError as e:
            raise RuntimeError("MINICNN_CUDA_LOADER=pybind11 needs the extension minicnn._cuda; build it with "
                               "MINICNN_BUILD_CUDA=1 pip install --no-build-isolation -e . "
                               f"(needs nvcc and cuBLAS): {e}") from e
        self.ext = _cuda

    def stream(self):
        return self.cp.cuda.get_current_stream().ptr

    @staticmethod
    def pointer(a):
        return a.data.ptr

    def run(self, kernel, count, *args):
        if count <= 0:
            return                                  # a grid of 0 blocks is an invalid launch
        dtype = float_dtype_of(args)
        plain = [self.pointer(a) if isinstance(a, self.cp.ndarray) else (int(a) if isinstance(a, np.integer) else a)
                 for a in args]
        getattr(self.ext, f"{kernel}_{dtype.name}")(int(count), *plain, blocks(count, args), self.stream())
        self._check(kernel)

    @staticmethod
    def _layout(a):
        """(rows, cols, leading dimension, batch stride) of a row-major matrix or batch of them,
        in elements; rows must be contiguous (the last stride is one element)."""
        item = a.itemsize
        rows, cols = a.shape[-2:]
        if a.strides[-1] != item and cols > 1:
            raise ValueError("gemm: rows of a matrix must be contiguous")
        ld = a.strides[-2] // item if rows > 1 else cols
        batch_stride = a.strides[0] // item if a.ndim == 3 else 0     # 0: the same matrix for every batch entry
        return rows, cols, max(ld, 1), batch_stride

    def gemm(self, a, b, out, trans_a, trans_b):
        """out = op(a) @ op(b) with cublas<S|D>gemmStridedBatched, straight on the views' strides."""
        dtype = float_dtype_of((a,))
        ar, ac, lda, sa = self._layout(a)
        br, bc, ldb, sb = self._layout(b)
        m, n, ldc, sc = self._layout(out)
        k = ar if trans_a else ac
        batch = out.shape[0] if out.ndim == 3 else 1
        if k == 0:                  # an empty sum (e.g. dw of an empty batch) is 0
            out.fill(0)
            return
        getattr(self.ext, f"gemm_{dtype.name}")(
            bool(trans_a), bool(trans_b), m, n, k,
            self.pointer(a), lda, sa, self.pointer(b), ldb, sb, self.pointer(out), ldc, sc, batch, self.stream())
        self._check("gemm")


# --------------------------------------------------------------------------- the backends
LOADERS = {loader.name: loader for loader in (RawKernelLoader, Pybind11Loader)}
_backends = {}


def synchronize():
    """Wait until the GPU has done the work queued through every CUDA backend made so far (on
    CuPy's current stream). Only mc.trace calls it, to time each launch; a training step never waits."""
    for made in _backends.values():
        made.loader.xp.cuda.get_current_stream().synchronize()


def backend(loader=RawKernelLoader.name):
    """The KernelBackend of one loader ("rawkernel" or "pybind11"), made at first use."""
    if loader not in LOADERS:
        raise ValueError(f"cuda loader must be one of {tuple(LOADERS)}, got {loader!r}")
    if loader not in _backends:
        _backends[loader] = KernelBackend(LOADERS[loader](), "cuda")
    return _backends[loader]
