"""What the op-family tests share: the backends every case runs on, and the stand-ins
that run the CUDA loaders' Python side without a GPU.

The ``backend`` fixture (tests/conftest.py) runs a test once on each of BACKENDS,
as Chainer's inject_backend_tests and Caffe's TestDtypesAndDevices do:

    reference        the NumPy reference (backends/reference.py): the definition
    kernels          the csrc kernels compiled for the CPU (minicnn._host)
    fake-rawkernel   backends/cuda.py's RawKernelLoader, with NumPy dressed as CuPy
                     and the host build standing in for the GPU (FakeRawModule)
    fake-pybind11    backends/cuda.py's Pybind11Loader, likewise (FakeCudaExtension,
                     GEMMs through CublasModel, the cuBLAS call it makes)
    cuda-rawkernel   the GPU through CuPy's RawModule          (marked gpu)
    cuda-pybind11    the GPU through minicnn._cuda              (marked gpu)

``kernel_backend`` is the same without "reference", for the cases that compare a
backend's methods with the ReferenceBackend; ``gpu_backend`` the two CUDA ones only
(cases at AlexNet's sizes, which would only slow CI down on the host build, and what
only a GPU has: arrays on another device). Tests marked gpu are skipped with the
reason "no CUDA device" where CuPy sees no GPU; cuda-pybind11 is skipped with its
reason where minicnn._cuda is not built.
"""

import contextlib
import ctypes
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import minicnn as mc
from minicnn import backends
from minicnn.device import to_numpy
from minicnn.shapes import output_size

_for_array = backends.for_array          # the real one (the fake backends replace it while they run)

# --------------------------------------------------------------------------- dtypes, tolerances, arrays
DTYPES = [np.float32, np.float64]

# results that differ from the reference only by rounding (GEMMs, pow, exp, sums in
# another order); copies and comparisons are held bit for bit instead
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
# on a GPU (cuBLAS and the CUDA math library round differently from NumPy)
GPU_TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def tie_free(rng, shape, dtype=np.float64):
    """A shuffled linspace: every value distinct, so a max has one winner."""
    values = np.linspace(-1, 1, int(np.prod(shape)), dtype=dtype)
    rng.shuffle(values)
    return values.reshape(shape)


def scaled(tol, factor):
    return {name: value * factor for name, value in tol.items()}


# for cheap cases (a kernel, or a backend's method, against the reference): many examples
MANY_EXAMPLES = settings(max_examples=150, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@st.composite
def window_case(draw, max_groups=1):
    """(N, C, H, W), kernel, stride, padding with padding <= kernel/2 and a non-empty output."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    groups = draw(st.integers(1, max_groups))
    n, c = draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    return dict(shape=(n, c, h, w), kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), groups=groups,
                seed=draw(st.integers(0, 2**31)), dtype=draw(st.sampled_from(DTYPES)))


def geometry(case):
    """The kernels' window arguments (H, W, kH, kW, sH, sW, pH, pW, OH, OW) of a window_case."""
    (n, c, h, w), (kh, kw), (sh, sw), (ph, pw) = case["shape"], case["kernel"], case["stride"], case["padding"]
    return (h, w, kh, kw, sh, sw, ph, pw, output_size(h, kh, sh, ph), output_size(w, kw, sw, pw))


def host_module():
    """minicnn._host, the csrc kernels compiled for the CPU (the test is skipped without the build)."""
    return pytest.importorskip("minicnn._host", reason="minicnn._host is not built (pip install -e .)")


def host_kernel(name, dtype):
    """minicnn._host's binding of one csrc kernel for dtype."""
    return getattr(host_module(), f"{name}_{np.dtype(dtype).name}")


# --------------------------------------------------------------------------- NumPy as CuPy, the host build as the GPU
def fake_cupy():
    """NumPy dressed as CuPy, for the parts of CuPy the loaders use."""
    fake = types.ModuleType("fake_cupy")
    fake.__dict__.update({k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    stream = types.SimpleNamespace(ptr=0, synchronize=lambda: None)
    fake.cuda = types.SimpleNamespace(driver=types.SimpleNamespace(CUDADriverError=RuntimeError),
                                      get_current_stream=lambda: stream)
    return fake


class FakeRawModule:
    """cupy.RawModule's stand-in: get_function("im2col<float>") gives a launcher that checks
    the arguments are typed as the kernel declares them (CuPy passes no type information)
    and runs the host build of that kernel."""

    launched = set()

    def get_function(self, expression):
        name, ctype = expression[:-1].split("<")
        t = {"float": np.float32, "double": np.float64}[ctype]
        function = host_kernel(name, t)

        def launch(grid, block, args):
            assert grid[0] >= 1 and block[0] >= 1
            assert isinstance(args[0], np.int64), "count must be an int64 (mc_index)"
            # a thread per element of the largest array (a row loop counts rows), up to the most blocks
            from minicnn.backends.cuda import MAX_BLOCKS
            elements = max([int(args[0])] + [a.size for a in args[1:] if isinstance(a, np.ndarray)])
            assert grid[0] * block[0] >= min(elements, MAX_BLOCKS * block[0]), f"{expression}: too small a grid"
            for a in args[1:]:
                assert isinstance(a, (np.ndarray, np.int64, np.uint32, t)), f"{expression}: badly typed {a!r}"
                assert not isinstance(a, np.floating) or isinstance(a, t), f"{expression}: {a!r} is not a {ctype}"
            FakeRawModule.launched.add(name)
            function(*args)
        return launch


class CublasModel:
    """minicnn._cuda's gemm_<dtype>, modelled in NumPy on raw host pointers, down to the
    column-major cublas<T>gemmStridedBatched call it makes (operands swapped, ops kept)."""

    def __init__(self, dtype):
        self.ctype = {np.float32: "c_float", np.float64: "c_double"}[dtype]

    def _matrix(self, address, rows, cols, ld):
        """A column-major rows x cols matrix with leading dimension ld, as a writable NumPy view."""
        span = (cols - 1) * ld + rows
        flat = np.ctypeslib.as_array((getattr(ctypes, self.ctype) * span).from_address(address))
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (flat.itemsize, flat.itemsize * ld))

    def cublas(self, op_a, op_b, m, n, k, A, lda, sa, B, ldb, sb, C, ldc, sc, batch):
        size = np.dtype(getattr(np, "float32" if self.ctype == "c_float" else "float64")).itemsize
        for i in range(batch):
            a = self._matrix(A + i * sa * size, *((k, m) if op_a else (m, k)), lda)
            b = self._matrix(B + i * sb * size, *((n, k) if op_b else (k, n)), ldb)
            c = self._matrix(C + i * sc * size, m, n, ldc)
            c[...] = (a.T if op_a else a) @ (b.T if op_b else b)

    def gemm(self, trans_a, trans_b, M, N, K, A, lda, sa, B, ldb, sb, C, ldc, sc, batch, stream):
        # src/cuda_module.cu: row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T
        self.cublas(trans_b, trans_a, N, M, K, B, ldb, sb, A, lda, sa, C, ldc, sc, batch)


class FakeCudaExtension:
    """minicnn._cuda's stand-in: pointers (host addresses here) are mapped back to the
    arrays they came from, and the host build of the kernel runs; GEMMs use the cuBLAS model."""

    def __init__(self):
        self.arrays = {}

    def pointer(self, a):
        self.arrays[a.ctypes.data] = a       # the latest array at an address is the one passed now
        return a.ctypes.data

    def __getattr__(self, name):
        if name.startswith("gemm_"):
            return CublasModel(np.dtype(name[5:]).type).gemm
        function = getattr(host_module(), name)

        def call(*args):
            *args, blocks, stream = args
            assert stream == 0 and blocks >= 1        # backends/cuda.py's grid, then the stream
            function(*[self.arrays[a] if isinstance(a, int) and a in self.arrays else a for a in args])
        return call


def fake_cuda_backend(loader_name):
    """A KernelBackend on backends/cuda.py's loader ``loader_name`` ("rawkernel" or "pybind11"),
    with NumPy for CuPy and the host build for the GPU."""
    from minicnn.backends import cuda, kernels
    fake = fake_cupy()
    if loader_name == "rawkernel":
        loader = object.__new__(cuda.RawKernelLoader)
        loader.module, loader.functions = FakeRawModule(), {}
    else:
        loader = object.__new__(cuda.Pybind11Loader)
        loader.ext = FakeCudaExtension()
        loader.pointer = loader.ext.pointer
    loader.cp = loader.xp = fake
    return kernels.KernelBackend(loader, "cuda")


# --------------------------------------------------------------------------- the backends a test runs on
GPU_BACKENDS = [pytest.param("cuda-rawkernel", marks=pytest.mark.gpu),
                pytest.param("cuda-pybind11", marks=pytest.mark.gpu)]
KERNEL_BACKENDS = ["kernels", "fake-rawkernel", "fake-pybind11"] + GPU_BACKENDS
BACKENDS = ["reference"] + KERNEL_BACKENDS


class BackendUnderTest:
    """One backend as a test sees it.

    name       one of BACKENDS
    impl       the Backend object (minicnn/backends/base.py) that runs the ops of this case
    device     where this case's arrays live: "cpu" or "cuda" (the fake CUDA backends keep
               NumPy arrays: their "GPU" is the host build)
    array(a)   a NumPy array put on that device; numpy(a): one of its arrays read back
    tensor(a, requires_grad=False): a Tensor on that device
    assert_close(actual, expected, ...), assert_equal(actual, expected): actual read back from
               the device and compared with a NumPy array
    """

    def __init__(self, name, impl, device):
        self.name, self.impl, self.device = name, impl, device

    def __repr__(self):
        return f"<backend under test {self.name}>"

    def array(self, a):
        if a is None:
            return None
        if self.device == "cuda":
            import cupy
            return cupy.asarray(a)
        return np.asarray(a)

    def numpy(self, a):
        if a is None:
            return None
        return np.asarray(a) if isinstance(a, (int, float)) else to_numpy(a)

    def tensor(self, a, requires_grad=False):
        return mc.Tensor(self.array(a), requires_grad=requires_grad)

    def assert_close(self, actual, expected, rtol=1e-7, atol=0.0, gpu_scale=1.0):
        """actual (an array of this device) against expected (NumPy) within rtol and atol; on a GPU,
        whose libraries round differently, within at least GPU_TOL of actual's dtype times gpu_scale."""
        actual = self.numpy(actual)
        if self.device == "cuda":
            gpu = GPU_TOL[actual.dtype.type]
            rtol, atol = max(rtol, gpu["rtol"] * gpu_scale), max(atol, gpu["atol"] * gpu_scale)
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)

    def assert_equal(self, actual, expected):
        """Bit for bit: copies, comparisons, and the same arithmetic in the same order."""
        np.testing.assert_array_equal(self.numpy(actual), expected)

    def assert_same_arithmetic(self, actual, expected):
        """The same operations in the same order as the reference: bit for bit on the CPU; on a
        GPU within GPU_TOL, as nvcc and NVRTC may fuse a multiply and an add (one rounding fewer)."""
        if self.device == "cuda":
            self.assert_close(actual, expected)
        else:
            self.assert_equal(actual, expected)


@contextlib.contextmanager
def backend_selected(name, monkeypatch):
    """Make minicnn's ops run on backend ``name`` inside the block; yields its BackendUnderTest."""
    cpu_backend, cuda_loader = mc.get_cpu_backend(), mc.get_cuda_loader()
    try:
        if not name.startswith("fake-"):
            monkeypatch.setattr(backends, "for_array", _for_array)     # undoes a fake one selected before
        if name == "reference":
            mc.set_cpu_backend("reference")
            yield BackendUnderTest(name, backends.reference_backend(), "cpu")
        elif name == "kernels":
            host_module()
            mc.set_cpu_backend("kernels")
            yield BackendUnderTest(name, backends.host_backend(), "cpu")
        elif name.startswith("fake-"):
            host_module()
            impl = fake_cuda_backend(name[len("fake-"):])
            # the arrays stay NumPy arrays; every op asks backends.for_array which backend runs it
            monkeypatch.setattr(backends, "for_array", lambda array: impl)
            yield BackendUnderTest(name, impl, "cpu")
        else:
            loader = name[len("cuda-"):]
            pytest.importorskip("cupy", reason="CuPy is not installed")
            if loader == "pybind11":
                try:
                    import minicnn._cuda  # noqa: F401
                except ImportError as e:
                    pytest.skip(f"minicnn._cuda is not built (MINICNN_BUILD_CUDA=1 pip install -e .): {e}")
            mc.set_cuda_loader(loader)
            yield BackendUnderTest(name, backends.cuda_backend(loader), "cuda")
    finally:
        mc.set_cpu_backend(cpu_backend)
        mc.set_cuda_loader(cuda_loader)


def on_reference(function, *args):
    """function(the reference's BackendUnderTest, *args), run on the NumPy reference whatever
    backend the test itself runs on; what it returns."""
    with pytest.MonkeyPatch.context() as monkeypatch, backend_selected("reference", monkeypatch) as reference:
        return function(reference, *args)
