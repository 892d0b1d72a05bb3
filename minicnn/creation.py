"""Making tensors: mc.zeros, ones, full, rand, randn, arange (PyTorch's names), and mc.from_dlpack.

The default dtype is float32, as for a Tensor made from Python numbers; random
tensors draw from minicnn's generator (mc.manual_seed), so they repeat.
"""

import numpy as np

from . import device as _device
from . import random as _random
from .tensor import Tensor


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(s, (int, np.integer)) and s >= 0 for s in shape):
        raise ValueError(f"a shape must be non-negative ints, got {shape}")
    return tuple(int(s) for s in shape)


def _make(array, dtype, device, requires_grad):
    return Tensor(_device.to_device(array.astype(dtype or np.float32, copy=False), device),
                  requires_grad=requires_grad)


def zeros(*shape, dtype=None, device="cpu", requires_grad=False):
    return _make(np.zeros(_shape(shape)), dtype, device, requires_grad)


def ones(*shape, dtype=None, device="cpu", requires_grad=False):
    return _make(np.ones(_shape(shape)), dtype, device, requires_grad)


def full(shape, value, dtype=None, device="cpu", requires_grad=False):
    return _make(np.full(_shape((shape,)), value), dtype, device, requires_grad)


def rand(*shape, dtype=None, device="cpu", requires_grad=False):
    """Uniform in [0, 1)."""
    return _make(_random.generator().random(_shape(shape)), dtype, device, requires_grad)


def randn(*shape, dtype=None, device="cpu", requires_grad=False):
    """Standard normal."""
    return _make(_random.generator().standard_normal(_shape(shape)), dtype, device, requires_grad)


def arange(start, stop=None, step=1, dtype=None, device="cpu", requires_grad=False):
    """start, start + step, ... below stop (numpy.arange): int64 when every bound is an int
    (as PyTorch), float32 otherwise, unless dtype says."""
    values = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is None and values.dtype.kind in "iu":
        dtype = np.int64
    return _make(values, dtype, device, requires_grad)


DLPACK_CPU, DLPACK_CUDA = 1, 2      # DLPack's device types (kDLCPU, kDLCUDA)


def from_dlpack(obj, requires_grad=False):
    """A Tensor sharing the memory of ``obj`` (a torch tensor, a NumPy or CuPy array, anything
    with __dlpack__): changes through one are seen through the other."""
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        raise TypeError(f"from_dlpack: {type(obj).__name__} does not support the DLPack protocol")
    device_type = obj.__dlpack_device__()[0]
    if device_type == DLPACK_CPU:
        array = np.from_dlpack(obj)
    elif device_type == DLPACK_CUDA:
        array = _device._cupy().from_dlpack(obj)
    else:
        raise ValueError(f"from_dlpack: DLPack device type {device_type} is neither the CPU (1) nor CUDA (2)")
    return Tensor(array, requires_grad=requires_grad)
