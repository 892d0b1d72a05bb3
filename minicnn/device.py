"""Where arrays live: NumPy arrays on the CPU, CuPy arrays on a CUDA GPU.

CuPy is imported only when a CUDA array is asked for, so the CPU path never
needs it.

MINICNN_CUPY_NO_POOL=1 turns CuPy's memory pool off when this module first imports CuPy:
each array then gets its own cudaMalloc, so compute-sanitizer's memcheck sees every
array's bounds (inside a pool's block an overrun into the neighbouring array goes
unseen). For memcheck runs (scripts/gpu_round.sh); everything else is faster with the pool.
"""

import os

import numpy as np

_pool_setting_applied = False


def apply_cupy_pool_setting():
    """CuPy's memory pool off if MINICNN_CUPY_NO_POOL=1 (once; nothing where CuPy does not import)."""
    global _pool_setting_applied
    if _pool_setting_applied:
        return
    try:
        import cupy
    except ImportError:
        return
    _pool_setting_applied = True
    if os.environ.get("MINICNN_CUPY_NO_POOL") == "1":
        cupy.cuda.set_allocator(None)


def _cupy():
    try:
        import cupy
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise RuntimeError("device 'cuda' needs CuPy (pip install cupy-cuda13x) and an NVIDIA GPU") from e
    apply_cupy_pool_setting()
    return cupy


def cuda_available():
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
        apply_cupy_pool_setting()
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def is_array(obj):
    if isinstance(obj, np.ndarray):
        return True
    return type(obj).__module__.startswith("cupy") and hasattr(obj, "__cuda_array_interface__")


def _on_cpu(array):
    # a NumPy scalar (what arithmetic on a 0-d array gives) is on the CPU too
    return isinstance(array, (np.ndarray, np.generic))


def device_of(array):
    return "cpu" if _on_cpu(array) else "cuda"


def array_module(array):
    """numpy or cupy, whichever holds ``array``."""
    return np if _on_cpu(array) else _cupy()


def check_device_name(device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def to_device(array, device):
    check_device_name(device)
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    cp = _cupy()
    if not cuda_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is available")
    return cp.asarray(array)


def to_numpy(array):
    return np.asarray(array) if _on_cpu(array) else array.get()
