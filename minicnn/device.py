"""Where arrays live: NumPy arrays on the CPU, CuPy arrays on a CUDA GPU.

CuPy is imported only when a CUDA array is asked for, so the CPU path never
needs it.
"""

import numpy as np


def _cupy():
    try:
        import cupy
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise RuntimeError("device 'cuda' needs CuPy (pip install cupy-cuda13x) and an NVIDIA GPU") from e
    return cupy


def cuda_available():
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
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
