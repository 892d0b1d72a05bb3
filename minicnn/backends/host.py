"""The csrc kernels compiled for the CPU (minicnn._host), on NumPy arrays.

Selected with ``MINICNN_CPU_BACKEND=kernels`` or ``mc.set_cpu_backend("kernels")``.
Each kernel runs its grid-stride loop with a single thread (see csrc/common.cuh),
so this is the CUDA code, executed on the CPU: slow, but a debugger can step
through every line, and CI tests every kernel's index arithmetic with it.

There is no cuBLAS on the host: the GEMMs are NumPy's matmul (batched over the
images of a chunk, never one call per image from Python).
"""

import os

import numpy as np

from .kernels import KernelBackend, float_dtype_of

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


class HostLoader:
    """Runs csrc kernels through minicnn._host; GEMMs through NumPy."""

    name = "host"
    xp = np

    def run(self, kernel, count, *args):
        if _host is None:
            raise RuntimeError(missing_extension_message())
        function = getattr(_host, f"{kernel}_{float_dtype_of(args).name}")
        function(int(count), *args)

    def gemm(self, a, b, out, trans_a, trans_b):
        """out = op(a) @ op(b); a and b may carry a leading batch axis (a may lack it)."""
        if trans_a:
            a = np.swapaxes(a, -1, -2)
        if trans_b:
            b = np.swapaxes(b, -1, -2)
        np.matmul(a, b, out=out)


backend = KernelBackend(HostLoader(), "cpu")
