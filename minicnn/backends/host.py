"""The csrc kernels compiled for the CPU (minicnn._host), on NumPy arrays: the CPU default.

When minicnn._host is built this is the CPU backend (``MINICNN_CPU_BACKEND=reference``
or ``mc.set_cpu_backend("reference")`` switches to the NumPy reference). Each
kernel launch runs on OpenMP threads, the host's stand-in for the CUDA grid (see
csrc/common.cuh): ``MINICNN_NUM_THREADS`` threads (default: every core this process
may use), or ``mc.set_num_threads(n)``. With one thread a launch is a plain call
that visits every index in order, so a debugger can step through the very code the
GPU runs; the results are the same, bit for bit, for every thread count.

There is no cuBLAS on the host: the GEMMs are NumPy's matmul, split into as many
column (or row) blocks as there are minicnn threads, each block one single-threaded
BLAS call on its own thread. The BLAS's own threads are kept out of it (threadpoolctl
limits them to one during the call) because they wait for work by spinning: on a
2-core machine the spinning BLAS thread and the kernels' threads took turns on a
core, and a training step took 1.5-10x longer than with the BLAS on one thread.

OMP_WAIT_POLICY is set to PASSIVE (unless it is set already) before the module
loads: an OpenMP thread that has finished its chunk then sleeps at once instead
of spinning for a while. A kernel launch lasts milliseconds and the next thing to
run is usually a GEMM on the BLAS's own threads, which a spinning OpenMP thread
would rob of a core; on a machine shared with other programs spinning is worse
still. (PyTorch, if imported after minicnn, reads the same variable.)
"""

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .kernels import FLOAT_DTYPES, KernelBackend, float_dtype_of

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # read once, when the OpenMP runtime loads
try:
    from .. import _host
except ImportError as e:  # pragma: no cover - depends on the build
    _host = None
    _import_error = e


def missing_extension_message():
    """Why minicnn._host is missing and which command builds it."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkout = os.path.dirname(package)
    if os.path.isfile(os.path.join(checkout, "setup.py")):
        # a source tree on sys.path (the current directory, or a script's folder) hides an installed copy
        return (f"the 'kernels' CPU backend needs the compiled extension minicnn._host, but minicnn was imported "
                f"from the source tree {package}, where it is not built: build it there with "
                f"'pip install -e {checkout}' (or 'python setup.py build_ext --inplace' in {checkout}), or run "
                f"from outside the source tree to use the installed minicnn ({_import_error})")
    return ("the 'kernels' CPU backend needs the compiled extension minicnn._host, which this installation "
            f"lacks: reinstall minicnn with a C++ compiler present ('pip install .' in its source tree) "
            f"({_import_error})")


def available():
    """Whether minicnn._host is built (and the kernels backend can run)."""
    return _host is not None


def _require_host():
    if _host is None:
        raise RuntimeError(missing_extension_message())


def available_cores():
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def set_num_threads(threads):
    """Run each kernel launch of the kernels backend on up to ``threads`` OpenMP threads,
    and each of its GEMMs in up to ``threads`` blocks.

    1 walks every index in order on one thread (for a debugger). Without OpenMP
    (a compiler that has none) every launch runs on one thread whatever this says;
    the GEMMs' blocks still spread (they run on Python threads)."""
    global _gemm_threads
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"set_num_threads: threads must be a positive int, got {threads!r}")
    _require_host()
    _host.set_num_threads(int(threads))
    _gemm_threads = int(threads)


def num_threads():
    """The threads each kernel launch runs on (1 where minicnn._host is missing or has no OpenMP)."""
    return _host.num_threads() if _host is not None else 1


def _threads_from_environment():
    value = os.environ.get("MINICNN_NUM_THREADS", "").strip()
    if not value:
        return available_cores()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"MINICNN_NUM_THREADS must be a positive int, got {value!r}")
    return int(value)


class HostLoader:
    """Runs csrc kernels through minicnn._host (or another module built the same way:
    dev/'s numbered variants); GEMMs through NumPy."""

    name = "host"
    xp = np

    def __init__(self, module=None):
        self.module = module

    def run(self, kernel, count, *args):
        if self.module is None:
            _require_host()
        function = getattr(self.module or _host, f"{kernel}_{FLOAT_DTYPES[float_dtype_of(args)]}")
        function(int(count), *args)

    def gemm(self, a, b, out, trans_a, trans_b):
        """out = op(a) @ op(b); a and b may carry a leading batch axis (a may lack it).

        The output is cut along its longer side into one block per thread (fewer for a
        small product: at least GEMM_GRAIN multiply-adds each); each block is a BLAS call
        on one thread, the last on the calling thread. Blocks are views, never copies."""
        if trans_a:
            a = np.swapaxes(a, -1, -2)
        if trans_b:
            b = np.swapaxes(b, -1, -2)
        rows, cols = out.shape[-2:]
        work = rows * cols * a.shape[-1] * (out.size // max(1, rows * cols))
        blocks = max(1, min(_gemm_threads, work // GEMM_GRAIN, max(rows, cols)))
        with _one_blas_thread():
            if blocks == 1:
                np.matmul(a, b, out=out)
                return
            by_columns = cols >= rows
            length = cols if by_columns else rows
            edges = [length * block // blocks for block in range(blocks + 1)]
            jobs = []
            for start, stop in zip(edges[:-1], edges[1:]):
                if by_columns:      # out[..., :, block] = a @ b[..., :, block]
                    job = (a, b[..., :, start:stop], out[..., :, start:stop])
                else:               # out[..., block, :] = a[..., block, :] @ b
                    job = (a[..., start:stop, :], b, out[..., start:stop, :])
                jobs.append(job)
            pending = [_gemm_pool(blocks - 1).submit(_matmul, *job) for job in jobs[:-1]]
            _matmul(*jobs[-1])
            for job in pending:
                job.result()


# A GEMM block gets at least this many multiply-adds (about 50 microseconds of one core):
# handing a block to another thread costs tens of microseconds.
GEMM_GRAIN = 1 << 22
_gemm_threads = 1
_pool, _pool_workers = None, 0
_blas = None


def _matmul(a, b, out):
    np.matmul(a, b, out=out)


def _gemm_pool(workers):
    """The threads that run GEMM blocks (they sleep while idle), grown to ``workers``."""
    global _pool, _pool_workers
    if _pool_workers < workers:
        _pool, _pool_workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minicnn-gemm"), workers
    return _pool


@contextlib.contextmanager
def _one_blas_thread():
    """A context in which NumPy's BLAS uses one thread. The BLAS libraries are looked up once
    (threadpoolctl); each entry and exit is then one call to the library's own thread setter per
    library, about 3 microseconds, where threadpoolctl's limit() took 13 (a GEMM of fc8 takes 7)."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
    before = [lib.get_num_threads() for lib in _blas]
    for lib in _blas:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in zip(_blas, before):
            lib.set_num_threads(threads)


if _host is not None:
    set_num_threads(_threads_from_environment())
backend = KernelBackend(HostLoader(), "cpu")
