"""Which backend runs an op: chosen by where the arrays live and two switches.

- CPU arrays run through the csrc kernels compiled for the host ("kernels", the
  default wherever minicnn._host is built: the kernels a student studies are the
  ones that train, on OpenMP threads, see ``set_num_threads``) or through the NumPy
  reference ("reference", the readable definition; the default only where
  minicnn._host is missing). Switch with ``MINICNN_CPU_BACKEND=reference|kernels``
  or ``set_cpu_backend(name)``.
- CUDA arrays run through the csrc kernels, loaded either by CuPy's RawModule
  (``MINICNN_CUDA_LOADER=rawkernel``, the default) or by the pybind11 extension
  ``minicnn._cuda`` (``MINICNN_CUDA_LOADER=pybind11`` or ``set_cuda_loader``).

Every backend is an object with the interface of backends/base.py:

    reference_backend()      ReferenceBackend, NumPy (backends/reference.py)
    host_backend()           KernelBackend on HostLoader (backends/host.py)
    cuda_backend(loader)     KernelBackend on RawKernelLoader or Pybind11Loader (backends/cuda.py)
    for_array(array)         the one of those that runs ops on ``array`` now
"""

import os
import warnings

from .. import device as _device
from . import cuda          # the loaders' names; CuPy itself is imported when a loader is made
from .base import Backend  # noqa: F401 (the interface, for readers and type hints)
from .reference import ReferenceBackend

CPU_BACKENDS = ("reference", "kernels")
CUDA_LOADERS = tuple(cuda.LOADERS)      # each loader class's own name: "rawkernel", "pybind11"


def _checked(value, allowed, what):
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    return value


def _default_cpu_backend():
    """"kernels" where minicnn._host is built, else "reference", said once: a user who runs a
    checkout that was installed without -e imports its unbuilt source tree, not the install."""
    from . import host
    if host.available():
        return "kernels"
    warnings.warn("minicnn runs CPU ops on the NumPy reference (set MINICNN_CPU_BACKEND=reference to say so "
                  "and silence this): " + host.missing_extension_message(), RuntimeWarning, stacklevel=2)
    return "reference"


_cpu_backend = _checked(os.environ.get("MINICNN_CPU_BACKEND") or _default_cpu_backend(), CPU_BACKENDS,
                        "MINICNN_CPU_BACKEND")
_cuda_loader = _checked(os.environ.get("MINICNN_CUDA_LOADER", cuda.RawKernelLoader.name), CUDA_LOADERS,
                        "MINICNN_CUDA_LOADER")
_reference = ReferenceBackend()


def set_cpu_backend(name):
    """Run CPU ops through "reference" (NumPy) or "kernels" (csrc compiled for the host)."""
    global _cpu_backend
    _cpu_backend = _checked(name, CPU_BACKENDS, "cpu backend")


def get_cpu_backend():
    return _cpu_backend


def set_num_threads(threads):
    """Run each kernel launch of the "kernels" CPU backend on this many threads
    (default: MINICNN_NUM_THREADS, else every core this process may use)."""
    from . import host
    host.set_num_threads(threads)


def get_num_threads():
    """The threads each kernel launch of the "kernels" CPU backend runs on."""
    from . import host
    return host.num_threads()


def set_cuda_loader(name):
    """Load CUDA kernels through "rawkernel" (CuPy NVRTC) or "pybind11" (minicnn._cuda)."""
    global _cuda_loader
    _cuda_loader = _checked(name, CUDA_LOADERS, "cuda loader")


def get_cuda_loader():
    return _cuda_loader


def describe(device="cpu"):
    """Which backend runs ops on ``device`` now, in words: "kernels (2 threads)",
    "reference" or "cuda-rawkernel" / "cuda-pybind11" (what metrics.json records)."""
    if device != "cpu":
        return f"cuda-{_cuda_loader}"
    if _cpu_backend == "reference":
        return "reference"
    threads = get_num_threads()
    return f"kernels ({threads} thread{'s' if threads > 1 else ''})"


def reference_backend():
    """The NumPy reference: the readable definition every other backend is checked against."""
    return _reference


def host_backend():
    """The csrc kernels compiled for the CPU (needs minicnn._host)."""
    from . import host
    return host.backend


def cuda_backend(loader=None):
    """The csrc kernels on the GPU through ``loader`` (default: the current one); needs CuPy."""
    return cuda.backend(loader or _cuda_loader)


def for_array(array):
    """The backend that runs ops on ``array``'s device, as the switches are set now."""
    if _device.device_of(array) == "cpu":
        return _reference if _cpu_backend == "reference" else host_backend()
    return cuda_backend()
